//! Job outputs are assembled off the database writer thread, streamed into the blob store in
//! bounded memory (relay/src/assembly.rs): byte-exact outputs of matmul jobs of several tile
//! rows and columns and of multi-unit kernel jobs, the relay's memory while a big output is
//! assembled, results of other jobs accepted meanwhile, and recovery at start-up of a job whose
//! last unit was verified but whose output was never written.

mod common;

use axum::http::StatusCode;
use common::{Contributor, TestRelay, accepted};
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::wire::{KernelInput, KernelOutput, KernelSpec, Lease, MatmulShape};
use glowworm_relay::{AppState, app};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The tests of this file run one at a time: one of them measures the process's memory.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

/// Test settings, without rate limits (the tests are many contributors' worth of requests),
/// canaries or trust (every kernel unit is replicated).
fn adjust(config: &mut glowworm_relay::Config) {
    config.rate_per_address = 0;
    config.rate_per_key = 0;
    config.canary_permille = 0;
    config.trust_after = 1_000_000;
}

/// A kernel whose unit i writes `offset[0] + j` to element j of its output: "offset" (binding
/// 0) holds 4 f32 per unit, split between the units; the output (binding 1) is `n` f32 per
/// unit. Its outputs are big while its inputs are tiny.
const RAMP_WGSL: &str = r#"
@group(0) @binding(0) var<storage, read> offset: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i < arrayLength(&out)) {
        out[i] = offset[0] + f32(i);
    }
}
"#;

fn ramp_spec(n: u32, units: u32) -> KernelSpec {
    KernelSpec {
        name: Some("ramp".into()),
        wgsl: RAMP_WGSL.into(),
        entry_point: "main".into(),
        inputs: vec![KernelInput {
            name: "offset".into(),
            binding: 0,
            shared: false,
        }],
        output: KernelOutput {
            binding: 1,
            bytes: 4 * n as u64,
        },
        workgroups: [n.div_ceil(64), 1, 1],
        units,
        replicas: 2,
        tolerance_ulps: 0,
        price_per_unit: None,
    }
}

/// The offsets of a ramp job's units: unit u starts at 1000 u.
fn ramp_offsets(units: u32) -> Vec<u8> {
    f32s_to_bytes(
        &(0..units)
            .flat_map(|u| [1000.0 * u as f32, 0.0, 0.0, 0.0])
            .collect::<Vec<f32>>(),
    )
}

/// What [`RAMP_WGSL`] computes for one unit of `n` elements, on the CPU.
fn ramp(offset: f32, n: usize) -> Vec<u8> {
    f32s_to_bytes(&(0..n).map(|j| offset + j as f32).collect::<Vec<f32>>())
}

/// A ramp job's whole output: every unit's in unit order.
fn ramp_reference(n: usize, units: u32) -> Vec<u8> {
    (0..units)
        .flat_map(|u| ramp(1000.0 * u as f32, n))
        .collect()
}

/// Computes a ramp lease on the CPU from its input as the relay serves it.
async fn compute_ramp(relay: &TestRelay, lease: &Lease, n: usize) -> Vec<u8> {
    let reply = relay
        .get(&format!("/v1/blobs/{}", lease.inputs[0].hash))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let offset = bytes_to_f32s(&reply.body).unwrap()[0];
    ramp(offset, n)
}

/// A leased replica, computed and not yet submitted.
struct Held {
    contributor: usize,
    lease: Lease,
    output: Vec<u8>,
}

/// Two contributors (returned) replicate every unit of the queued ramp jobs (`n` elements a
/// unit), the newest `hold_back` replicas excepted, which are returned leased and computed but
/// not submitted.
async fn replicate_ramps(
    relay: &TestRelay,
    n: usize,
    hold_back: usize,
) -> ([Contributor; 2], Vec<Held>) {
    let pair = [Contributor::new(), Contributor::new()];
    let mut held = Vec::new();
    loop {
        let mut leased = false;
        for (i, contributor) in pair.iter().enumerate() {
            if let Some(lease) = contributor.lease(relay).await {
                let output = compute_ramp(relay, &lease, n).await;
                held.push(Held {
                    contributor: i,
                    lease,
                    output,
                });
                leased = true;
            }
        }
        if !leased {
            break;
        }
        while held.len() > hold_back {
            let Held {
                contributor,
                lease,
                output,
            } = held.remove(0);
            accepted(&pair[contributor].submit(relay, &lease, &output).await);
        }
    }
    (pair, held)
}

/// A done job's output, from the blob store, checked against its hash; asserts it is a file
/// in the store on disk, not a row of the database.
async fn output_of(relay: &TestRelay, job_id: i64) -> Vec<u8> {
    let status = relay.job(job_id).await;
    assert_eq!(status.state, "done", "{status:?}");
    assert_eq!(status.progress, 1.0);
    let hash = status.output_hash.expect("a done job has an output");
    let reply = relay.get(&format!("/v1/blobs/{hash}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(ContentHash::of(&reply.body), hash);
    assert_eq!(reply.body.len() as u64, status.output_bytes);
    let file = blob_file(relay, &hash);
    assert!(file.exists(), "the output is a file: {}", file.display());
    assert_eq!(
        relay
            .count(&format!("SELECT COUNT(*) FROM blobs WHERE hash = '{hash}'"))
            .await,
        0
    );
    reply.body
}

fn blob_file(relay: &TestRelay, hash: &ContentHash) -> std::path::PathBuf {
    let name = hash.to_string();
    relay
        .state
        .db
        .blob_store()
        .dir()
        .join(&name[..2])
        .join(name)
}

#[tokio::test]
async fn a_matmul_job_of_several_tile_rows_and_columns_is_assembled_byte_exact() {
    let _serial = one_at_a_time().await;
    let relay = TestRelay::with_config(adjust);
    // Tiles of 64: three tile rows (64, 64, 22) by three tile columns (64, 64, 42).
    let shape = MatmulShape {
        m: 150,
        n: 170,
        k: 16,
    };
    let (job_id, a, b) = relay.queue_job(shape, None, 7).await;
    let contributor = Contributor::new();
    let mut units = 0;
    while let Some(lease) = contributor.lease(&relay).await {
        contributor.complete(&relay, &lease).await;
        units += 1;
    }
    assert_eq!(units, 9);
    let output = output_of(&relay, job_id).await;
    // Each tile is the reference over its panels, so the whole is exactly the CPU product.
    assert!(
        output == f32s_to_bytes(&matmul::reference(&a, &b, shape)),
        "C is the tiles put together row by row"
    );
}

#[tokio::test]
async fn a_kernel_job_of_many_units_is_assembled_in_unit_order() {
    let _serial = one_at_a_time().await;
    let relay = TestRelay::with_config(adjust);
    let (n, units) = (1000usize, 7u32);
    let job_id = relay
        .queue_kernel_job(ramp_spec(n as u32, units), vec![ramp_offsets(units)])
        .await;
    assert!(replicate_ramps(&relay, n, 0).await.1.is_empty());
    let output = output_of(&relay, job_id).await;
    assert!(
        output == ramp_reference(n, units),
        "unit outputs in unit order"
    );
}

/// The process's resident memory now, from /proc/self/statm.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Samples the resident memory every millisecond until dropped; `peak` is the highest seen.
struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start() -> PeakRss {
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        PeakRss {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.peak.load(Ordering::Relaxed).max(rss_bytes())
    }
}

/// 64 units of 1 MiB: the relay used to build the whole 64 MiB output in memory on the writer
/// thread. Now its memory grows by about one unit's output while the output is assembled.
/// Prints the figure (`cargo test -p glowworm-relay --test assembly -- --nocapture big`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_kernel_output_is_assembled_in_bounded_memory() {
    let _serial = one_at_a_time().await;
    let relay = TestRelay::with_config(adjust);
    let (n, units) = (256 << 10, 64u32); // 1 MiB of f32 a unit
    let job_id = relay
        .queue_kernel_job(ramp_spec(n as u32, units), vec![ramp_offsets(units)])
        .await;
    // Everything but the last replica, whose submission completes the job.
    let (pair, mut held) = replicate_ramps(&relay, n, 1).await;
    let last = held.pop().expect("the last replica");
    let submission = pair[last.contributor].submission(&last.lease, &last.output);
    let body = serde_json::to_vec(&submission).unwrap();
    drop((submission, last));

    // Memory freed by what came before goes back to the system first, so that what the
    // assembly allocates shows (glibc's malloc would otherwise reuse it unseen).
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
    let before = rss_bytes();
    let sampler = PeakRss::start();
    let started = Instant::now();
    let reply = relay.post_raw("/v1/results", body).await;
    accepted(&reply);
    // Polled as it is (not `relay.job`), so this runs against relays of any version.
    while relay.job_now(job_id).await.state != "done" {
        assert!(started.elapsed() < Duration::from_secs(120), "not done");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let growth = sampler.stop().saturating_sub(before);
    println!(
        "assembling a {units} x 1 MiB kernel output: peak RSS growth {:.1} MiB over {:.1} MiB \
         before, {elapsed:.2?} from the last result to done",
        growth as f64 / (1 << 20) as f64,
        before as f64 / (1 << 20) as f64,
    );
    let output = output_of(&relay, job_id).await;
    assert!(
        output == ramp_reference(n, units),
        "unit outputs in unit order"
    );
    assert!(
        growth < 24 << 20,
        "the relay grew by {growth} bytes assembling a 64 MiB output"
    );
}

/// While a big output is being assembled (held in the middle by the test), the writer goes on:
/// results of another job are accepted and verified, that job completes, and the assembling job
/// is queued with every unit verified and no output, cannot be cancelled, and becomes done once
/// let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)] // the assembler thread waits on it, not this task
async fn results_of_other_jobs_are_accepted_while_an_output_is_assembled() {
    let _serial = one_at_a_time().await;
    let relay = TestRelay::with_config(adjust);
    let (n, units) = (16 << 10, 8u32);
    let big = relay
        .queue_kernel_job(ramp_spec(n as u32, units), vec![ramp_offsets(units)])
        .await;
    let (pair, mut held) = replicate_ramps(&relay, n, 1).await;
    let last = held.pop().expect("the last replica");

    let gate = relay.state.assembler.hold();
    accepted(
        &pair[last.contributor]
            .submit(&relay, &last.lease, &last.output)
            .await,
    );
    let status = relay.job_now(big).await;
    assert_eq!(
        (
            status.state.as_str(),
            status.progress,
            status.units_verified,
            status.output_hash
        ),
        ("queued", 1.0, units as i64, None),
        "every unit verified, the output not yet written"
    );
    assert!(status.waiting.is_empty(), "{:?}", status.waiting);
    assert_eq!(
        relay
            .count(&format!("SELECT assembling FROM jobs WHERE id = {big}"))
            .await,
        1
    );
    // A job whose units are all verified is finished: cancelling it changes nothing.
    relay
        .state
        .db
        .call(move |conn| glowworm_relay::work::jobs::cancel(conn, big, 0))
        .await
        .map(|cancelled| assert!(!cancelled))
        .unwrap();

    // Meanwhile another job is computed and verified, result by result.
    let shape = MatmulShape {
        m: 100,
        n: 100,
        k: 8,
    };
    let (other, a, b) = relay.queue_job(shape, None, 3).await;
    let worker = Contributor::new();
    let mut verified = 0;
    while let Some(lease) = worker.lease(&relay).await {
        let receipt = worker.complete(&relay, &lease).await;
        assert_eq!(receipt.status, "verified");
        verified += 1;
    }
    assert_eq!(verified, 4);
    let status = relay.job_now(other).await;
    assert_eq!((status.state.as_str(), status.progress), ("queued", 1.0));
    assert_eq!(relay.job_now(big).await.state, "queued", "still held");

    drop(gate);
    assert!(output_of(&relay, big).await == ramp_reference(n, units));
    assert!(output_of(&relay, other).await == f32s_to_bytes(&matmul::reference(&a, &b, shape)));
}

/// A crash after the transaction that verified a job's last unit and before its output was
/// written leaves the job assembling: the relay assembles it when it starts again.
#[tokio::test]
async fn a_job_left_assembling_by_a_crash_is_assembled_at_start() {
    let _serial = one_at_a_time().await;
    let relay = TestRelay::with_config(adjust);
    let shape = MatmulShape {
        m: 130,
        n: 70,
        k: 4,
    };
    let (job_id, a, b) = relay.queue_job(shape, None, 11).await;
    let contributor = Contributor::new();
    while let Some(lease) = contributor.lease(&relay).await {
        contributor.complete(&relay, &lease).await;
    }
    let expected = output_of(&relay, job_id).await;
    assert!(expected == f32s_to_bytes(&matmul::reference(&a, &b, shape)));
    let hash = ContentHash::of(&expected);
    let file = blob_file(&relay, &hash);

    // The relay stops; the database is put back as a crash right after the last unit's commit
    // would have left it: the job assembling, its output never written.
    let TestRelay {
        app: router,
        state,
        clock,
        dir,
    } = relay;
    let config = (*state.config).clone();
    drop((router, state));
    let conn = rusqlite::Connection::open(&config.database).unwrap();
    conn.execute(
        "UPDATE jobs SET state = 'queued', output_hash = NULL, assembling = 1 WHERE id = ?1",
        [job_id],
    )
    .unwrap();
    drop(conn);
    std::fs::remove_file(&file).unwrap();

    let state = AppState::open_with_clock(config, Arc::new(clock.clone())).unwrap();
    let relay = TestRelay {
        app: app(state.clone()),
        state,
        clock,
        dir,
    };
    // Nothing else happens on this relay: the assembler finds the job at start.
    let output = output_of(&relay, job_id).await;
    assert!(output == expected);
    assert!(file.exists());
}
