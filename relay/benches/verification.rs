//! Verification under attack: a simulation of many contributors, some of them cheating, against
//! the real relay (its router in-process, a real SQLite file, real signatures, the crate's
//! protocol code), printed as a table and written to `target/bench/verification.md`.
//!
//! For each share of cheating contributors (1%, 10%, 50% of 100) it runs replicated matmul jobs
//! (16 x 16 x 32 units, quorum 2, canaries, adaptive replication with the relay's default
//! settings) until 10,000 units of job output are verified. Cheaters alternate between two
//! strategies: random output from the start, and honest for 15 units (long enough to be
//! trusted) then random output. It reports the share of bad results caught (invalid or withheld),
//! bad units that reached a job output (each done job's output is compared with the CPU
//! reference), bad results still waiting for replicas when the run ends, the bad results a cheater sent before it was quarantined, and the verification
//! overhead: results computed beyond one per useful unit (replicas, canaries, rejected work), as
//! a share of useful units, over the whole run and over its second half (steady state).
//!
//! Run: `cargo xtask bench verification` (or `cargo bench -p glowworm-relay --bench
//! verification`); about a minute and a half. Override the unit count with GLOWWORM_SIM_UNITS.

// The relay tests' helpers (in-process relay, protocol transport); it allows its own dead code.
#[path = "../tests/common/mod.rs"]
mod common;

use common::{InProcess, TestRelay};
use glowworm_protocol::compare::agree;
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::protocol::{self, ProtocolError};
use glowworm_protocol::signing::ContributorKey;
use glowworm_protocol::wire::MatmulShape;
use std::collections::HashSet;
use std::fmt::Write as _;

const CONTRIBUTORS: usize = 100;
const JOB: MatmulShape = MatmulShape {
    m: 64,
    n: 64,
    k: 32,
};
/// Units a sleeper computes honestly before it cheats.
const SLEEPER_HONEST_UNITS: u32 = 15;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Honest,
    /// Random output, correctly signed, from the start.
    Random,
    /// Honest until trusted, then random output.
    Sleeper,
}

struct Sim {
    key: ContributorKey,
    ip: std::net::IpAddr,
    strategy: Strategy,
    done: u32,
    bad_sent: u32,
    /// Bad results sent when the relay first refused it as quarantined.
    quarantined_after: Option<u32>,
}

#[derive(Default)]
struct Counts {
    results: i64,
    useful_units: i64,
}

struct Row {
    cheat_share: u32,
    cheaters: usize,
    bad_sent: u64,
    bad_caught: u64,
    bad_pending: u64,
    bad_in_output: u64,
    quarantined: usize,
    median_bad_before_quarantine: Option<u32>,
    overhead_all: f64,
    overhead_steady: f64,
    results: i64,
    useful: i64,
}

/// A small deterministic generator for the simulation's choices (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

async fn counts(relay: &TestRelay) -> Counts {
    Counts {
        results: relay.count("SELECT COUNT(*) FROM results").await,
        useful_units: relay
            .count(
                "SELECT COUNT(*) FROM units JOIN jobs ON jobs.id = units.job_id
                 WHERE units.state = 'verified' AND units.canary_of IS NULL",
            )
            .await,
    }
}

async fn simulate(cheat_percent: u32, target_units: i64) -> Row {
    let relay = TestRelay::with_config(|c| {
        c.unit_size = 16;
        c.lease_seconds = 3600;
    });
    let cheaters = (CONTRIBUTORS * cheat_percent as usize).div_ceil(100);
    let mut sims: Vec<Sim> = (0..CONTRIBUTORS)
        .map(|i| Sim {
            key: ContributorKey::generate().unwrap(),
            ip: format!("10.{}.{}.1", i / 256, i % 256).parse().unwrap(),
            strategy: match i {
                i if i >= cheaters => Strategy::Honest,
                i if i % 2 == 0 => Strategy::Sleeper,
                _ => Strategy::Random,
            },
            done: 0,
            bad_sent: 0,
            quarantined_after: None,
        })
        .collect();
    let mut rng = Rng(0x5EED ^ cheat_percent as u64);
    let mut jobs = Vec::new();
    let mut bad_results: HashSet<String> = HashSet::new();
    let mut half: Option<Counts> = None;
    let mut seed = 0;

    loop {
        let now = counts(&relay).await;
        if half.is_none() && now.useful_units >= target_units / 2 {
            half = Some(now);
            continue;
        }
        if now.useful_units >= target_units {
            break;
        }
        let i = rng.below(sims.len());
        if sims[i].quarantined_after.is_some() {
            continue;
        }
        let transport = InProcess {
            relay: &relay,
            ip: Some(sims[i].ip),
        };
        let lease = match protocol::lease(&transport, &sims[i].key, None, relay.clock_now()).await {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                seed += 2;
                jobs.push(relay.queue_job(JOB, Some(2), seed).await);
                continue;
            }
            Err(ProtocolError::Transport(e)) if e.code == "quarantined" => {
                sims[i].quarantined_after = Some(sims[i].bad_sent);
                continue;
            }
            Err(e) => panic!("lease: {e}"),
        };
        let sim = &mut sims[i];
        let cheats = match sim.strategy {
            Strategy::Honest => false,
            Strategy::Random => true,
            Strategy::Sleeper => sim.done >= SLEEPER_HONEST_UNITS,
        };
        let output = if cheats {
            matmul::sample_matrix(
                lease.work.shape().unwrap().m * lease.work.shape().unwrap().n,
                rng.next(),
            )
        } else {
            let a = protocol::input::<common::RelayError>(&lease, "a").unwrap();
            let b = protocol::input::<common::RelayError>(&lease, "b").unwrap();
            let (a, _) = protocol::fetch_f32_blob(&transport, a).await.unwrap();
            let (b, _) = protocol::fetch_f32_blob(&transport, b).await.unwrap();
            matmul::reference(&a, &b, lease.work.shape().unwrap())
        };
        let submission = protocol::submission(&sim.key, &lease, &output);
        sim.done += 1;
        if cheats {
            sim.bad_sent += 1;
            bad_results.insert(lease.lease_id.clone());
        }
        match protocol::submit(&transport, &submission).await {
            Ok(_) => {}
            Err(ProtocolError::Transport(e))
                if e.code == "verification_failed" || e.code == "quarantined" => {}
            Err(e) => panic!("submit: {e}"),
        }
    }
    let end = counts(&relay).await;
    let half = half.unwrap_or_default();

    // Bad results caught: their final state.
    let states: Vec<(String, String)> = relay
        .state
        .db
        .call(|conn| {
            let mut stmt = conn.prepare("SELECT lease_id, state FROM results")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
        .unwrap();
    let bad_caught = states
        .iter()
        .filter(|(lease, state)| {
            bad_results.contains(lease) && (state == "invalid" || state == "withheld")
        })
        .count() as u64;
    let bad_pending = states
        .iter()
        .filter(|(lease, state)| bad_results.contains(lease) && state == "pending")
        .count() as u64;

    // Bad units in job outputs: every done job's output against the CPU reference, tile by tile.
    let mut bad_in_output = 0;
    for (job_id, a, b) in &jobs {
        let status = relay.job(*job_id).await;
        if status.state != "done" {
            continue;
        }
        let output = relay
            .get(&format!("/v1/blobs/{}", status.output_hash.unwrap()))
            .await
            .body;
        let expected = matmul::reference(a, b, JOB);
        let got = bytes_to_f32s(&output).unwrap();
        let tolerance = matmul::replica_tolerance(a, b, JOB);
        for tile_row in (0..JOB.m as usize).step_by(16) {
            for tile_col in (0..JOB.n as usize).step_by(16) {
                let pick = |c: &[f32]| {
                    let mut tile = Vec::new();
                    for r in tile_row..tile_row + 16 {
                        let start = r * JOB.n as usize + tile_col;
                        tile.extend_from_slice(&c[start..start + 16]);
                    }
                    f32s_to_bytes(&tile)
                };
                let rows = match &tolerance {
                    glowworm_protocol::compare::Tolerance::PerRow { rows, .. } => {
                        rows[tile_row..tile_row + 16].to_vec()
                    }
                    other => panic!("{other:?}"),
                };
                let tile_tolerance =
                    glowworm_protocol::compare::Tolerance::PerRow { row_len: 16, rows };
                if agree(&pick(&expected), &pick(&got), &tile_tolerance).is_err() {
                    bad_in_output += 1;
                }
            }
        }
    }

    let mut before: Vec<u32> = sims.iter().filter_map(|s| s.quarantined_after).collect();
    before.sort_unstable();
    let overhead = |results: i64, useful: i64| {
        if useful == 0 {
            0.0
        } else {
            (results - useful) as f64 / useful as f64
        }
    };
    Row {
        cheat_share: cheat_percent,
        cheaters,
        bad_sent: bad_results.len() as u64,
        bad_caught,
        bad_pending,
        bad_in_output,
        quarantined: before.len(),
        median_bad_before_quarantine: before.get(before.len() / 2).copied(),
        overhead_all: overhead(end.results, end.useful_units),
        overhead_steady: overhead(
            end.results - half.results,
            end.useful_units - half.useful_units,
        ),
        results: end.results,
        useful: end.useful_units,
    }
}

fn main() {
    let units: i64 = std::env::var("GLOWWORM_SIM_UNITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut table = String::new();
    writeln!(
        table,
        "Verification under attack: {CONTRIBUTORS} contributors, replicated 16x16x32 units \
         (quorum 2), relay defaults (canaries 2%, trusted after 10 valid results, trusted units \
         replicated 5% of the time, quarantine at 3 strikes), until {units} units of job output \
         are verified.\n"
    )
    .unwrap();
    writeln!(
        table,
        "| cheaters | bad results sent | caught | still waiting at the end | bad units in job outputs | cheaters quarantined | \
         median bad results before quarantine | overhead (whole run) | overhead (second half) | \
         results / useful units |"
    )
    .unwrap();
    writeln!(table, "|---|---|---|---|---|---|---|---|---|---|").unwrap();
    for percent in [1, 10, 50] {
        let row = runtime.block_on(simulate(percent, units));
        let caught = if row.bad_sent == 0 {
            "-".to_string()
        } else {
            format!(
                "{} ({:.1}%)",
                row.bad_caught,
                100.0 * row.bad_caught as f64 / row.bad_sent as f64
            )
        };
        writeln!(
            table,
            "| {}% ({}) | {} | {} | {} | {} | {}/{} | {} | {:.1}% | {:.1}% | {} / {} |",
            row.cheat_share,
            row.cheaters,
            row.bad_sent,
            caught,
            row.bad_pending,
            row.bad_in_output,
            row.quarantined,
            row.cheaters,
            row.median_bad_before_quarantine
                .map_or("-".to_string(), |n| n.to_string()),
            100.0 * row.overhead_all,
            100.0 * row.overhead_steady,
            row.results,
            row.useful,
        )
        .unwrap();
    }
    println!("{table}");
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench/verification.md");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &table).unwrap();
    println!("written to {}", path.display());
}
