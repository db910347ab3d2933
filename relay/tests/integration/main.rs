//! The relay's integration tests, in one binary (one link instead of one per file): each
//! module is one area, against a real relay (in process through its router, or on
//! 127.0.0.1:0) with a real SQLite file. The job output assembly tests (`tests/assembly.rs`,
//! which measure the process's memory) and the crash test (`tests/crash/`) are binaries of their
//! own. Run one area with `cargo test -p glowworm-relay --test integration -- strangers::`.

#[path = "../common/mod.rs"]
mod common;

mod abuse;
mod adversaries;
mod chain;
mod cheats;
mod config;
mod contribute;
mod deadlines;
mod kernel_budget;
mod layers;
mod ledger;
mod money;
mod openapi;
mod ops;
mod partners;
mod payouts;
mod refusals;
mod replication;
mod requesters;
mod server;
mod strangers;
mod wallet;
