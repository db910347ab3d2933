//! Closing an epoch at scale: a relay database whose ledger credits N distinct addresses
//! (default 100,000, `GLOWWORM_EPOCH_ADDRESSES`), then `epochs::close` timed step by step as the
//! relay runs it (earnings read on a read connection, the OpenZeppelin-compatible tree built and
//! its JSON written to the blob store, one short write), and the first and later
//! `GET /v1/payouts/{address}` (the first loads the tree into memory). Printed as a table and
//! written to `target/bench/epochs.md`.
//!
//! Run: `cargo xtask bench epochs` (or `cargo bench -p glowworm-relay --bench epochs`).

#[path = "../tests/common/mod.rs"]
mod common;

use common::TestRelay;
use glowworm_relay::accounts::{epochs, ledger};
use std::fmt::Write as _;
use std::time::Instant;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let addresses: usize = std::env::var("GLOWWORM_EPOCH_ADDRESSES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let relay = TestRelay::new();
    let started = Instant::now();
    relay
        .state
        .db
        .call(move |conn| {
            let tx = conn.transaction()?;
            for i in 0..addresses {
                let address = format!("0x{:040x}", i as u64 * 7_919 + 1);
                ledger::post(
                    &tx,
                    "bench",
                    None,
                    &[
                        ledger::Leg {
                            account: ledger::GRANTS.into(),
                            amount: -(1_000 + i as i64),
                            kind: "bench_out",
                            ..Default::default()
                        },
                        ledger::Leg {
                            account: address,
                            amount: 1_000 + i as i64,
                            kind: "bench_in",
                            ..Default::default()
                        },
                    ],
                    0,
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap();
    let seeded = started.elapsed();

    let started = Instant::now();
    let epoch = epochs::close(&relay.state.db, 1, 0)
        .await
        .unwrap()
        .expect("an epoch");
    let closed = started.elapsed();
    let tree_bytes = relay
        .get(&format!("/v1/epochs/{}/tree.json", epoch.epoch))
        .await
        .body
        .len();

    let probe = format!("/v1/payouts/0x{:040x}", 1);
    let started = Instant::now();
    let first = relay.get(&probe).await;
    let first_payout = started.elapsed();
    assert_eq!(first.status, axum::http::StatusCode::OK);
    let started = Instant::now();
    for _ in 0..100 {
        relay.get(&probe).await;
    }
    let later_payout = started.elapsed() / 100;

    let mut table = String::new();
    writeln!(
        table,
        "| addresses | close an epoch | tree JSON | first payout (loads the tree) | later payout |"
    )
    .unwrap();
    writeln!(table, "| ---: | ---: | ---: | ---: | ---: |").unwrap();
    writeln!(
        table,
        "| {addresses} | {:.2} s | {:.1} MiB | {:.2} s | {:.2} ms |",
        closed.as_secs_f64(),
        tree_bytes as f64 / (1 << 20) as f64,
        first_payout.as_secs_f64(),
        later_payout.as_secs_f64() * 1000.0
    )
    .unwrap();
    println!(
        "(seeding {addresses} addresses took {:.1} s)\n",
        seeded.as_secs_f64()
    );
    println!("{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("epochs.md"), table).unwrap();
}
