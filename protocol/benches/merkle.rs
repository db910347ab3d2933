//! The earnings tree's costs at the sizes an epoch reaches: building an [`EarningsTree`] of 10^5
//! and 10^6 addresses, writing and reading its dump (the public file), and one proof.
//!
//! Run: `cargo bench -p glowworm-protocol --bench merkle`; writes `target/bench/merkle.md`.

#[allow(dead_code)] // `median` is the other benchmarks'.
mod common;

use glowworm_protocol::merkle::{Address, Amount, EarningsTree};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::fmt::Write as _;
use std::time::Instant;

fn main() {
    let mut table = String::from(
        "| leaves | build | dump to JSON | JSON size | load from JSON | 1,000 proofs |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    let mut rng = ChaCha8Rng::seed_from_u64(19);
    for n in [100_000usize, 1_000_000] {
        let values: Vec<(Address, Amount)> = (0..n)
            .map(|_| {
                let mut a = [0u8; 20];
                rng.fill_bytes(&mut a);
                let mut b = [0u8; 32];
                rng.fill_bytes(&mut b[16..]);
                (Address(a), Amount::from_be_bytes(b))
            })
            .collect();
        let t = Instant::now();
        let tree = EarningsTree::new(values.clone()).unwrap();
        let build = t.elapsed();
        let t = Instant::now();
        let json = tree.to_json();
        let dump = t.elapsed();
        let t = Instant::now();
        let loaded = EarningsTree::from_json(&json).unwrap();
        let load = t.elapsed();
        assert_eq!(loaded.root(), tree.root());
        let t = Instant::now();
        for (address, _) in values.iter().take(1000) {
            std::hint::black_box(tree.proof(address).unwrap());
        }
        let proofs = t.elapsed();
        writeln!(
            table,
            "| {n} | {build:.2?} | {dump:.2?} | {:.1} MB | {load:.2?} | {proofs:.2?} |",
            json.len() as f64 / 1e6
        )
        .unwrap();
    }
    common::publish(&table, "merkle.md");
}
