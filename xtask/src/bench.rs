//! `cargo xtask bench`: the benchmarks that hold Glowworm to its speed targets. Each one prints a
//! table and writes it to `target/bench/<name>.md`; figures are ratios taken side by side in one
//! run, since these machines are shared and noisy.
//!
//! - relay: `relay/benches/throughput.rs`, verified results per second and lease-to-credit latency
//!   with many simulated contributors on loopback.
//! - kernels: `crate/benches/kernels.rs`, tiled against naive WGSL matmul on the native adapter.
//! - freivalds: `protocol/benches/freivalds.rs`, the check against recomputing the product.
//! - verification: `relay/benches/verification.rs`, cheating contributors against replication,
//!   canaries and reputation: what is caught, what reaches job outputs, and the overhead; then
//!   `protocol/benches/tolerance.rs`, Freivalds' tolerances: cheat kind x k -> share caught, honest
//!   summation order x k -> share rejected, the margin between them, and tier 2's cost
//!   (`target/bench/tolerance.md`).
//! - epochs: `relay/benches/epochs.rs`, closing an epoch of 100,000 addresses and the payouts
//!   endpoint's proofs (`target/bench/epochs.md`).
//! - browser: `tests/bench/browser.mjs`, wasm size, kernels in headless Chromium, and the time
//!   from click to first verified result.
//! - faults: `relay/tests/crash`, the relay binary killed with SIGKILL at 50 random points under
//!   load (`GLOWWORM_CRASH_KILLS` changes it) and restarted: kill points tried and invariant
//!   violations found (`target/bench/faults.md`).
//! - load: the relay benchmark held for 5 minutes (`GLOWWORM_LOAD_SECONDS`) with 1,000
//!   simulated contributors: sustained results/s, errors, p99 latency and the relay process's
//!   memory (at the window's start and end, peak, growth per minute; the load generator runs in
//!   a process of its own) (`target/bench/load.md`).
//! - abuse: `relay/benches/abuse.rs`, a soak of the relay binary with its default limits:
//!   honest requesters and contributors alone, then the same honest work beside hoarders,
//!   expirers, garbage senders, key-spenders and silent connections from loopback addresses,
//!   5 minutes each (`GLOWWORM_ABUSE_SECONDS`): honest jobs completed, their completion time
//!   against the quiet run's, the relay's memory, health-check latency, and credits to
//!   attackers (`target/bench/abuse.md`).

use crate::{deps, process, wasm};
use anyhow::Result;
use std::path::Path;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    Relay,
    Kernels,
    Freivalds,
    Verification,
    Epochs,
    Browser,
    Faults,
    Load,
    Abuse,
}

pub fn run(root: &Path, which: &[Which]) -> Result<()> {
    let all = [
        Which::Relay,
        Which::Kernels,
        Which::Freivalds,
        Which::Verification,
        Which::Epochs,
        Which::Browser,
        Which::Faults,
        Which::Load,
        Which::Abuse,
    ];
    let chosen = if which.is_empty() { &all[..] } else { which };
    std::fs::create_dir_all(root.join("target/bench"))?;
    let runtime_dir = deps::runtime_dir()?;
    let xdg = [("XDG_RUNTIME_DIR", runtime_dir.as_os_str())];
    for w in chosen {
        match w {
            Which::Relay => {
                process::step("Benchmark: relay throughput and latency");
                process::cargo_with_env(
                    &["bench", "-p", "glowworm-relay", "--bench", "throughput"],
                    &xdg,
                )?;
            }
            Which::Kernels => {
                deps::require_vulkan_driver()?;
                process::step("Benchmark: tiled vs naive matmul on the native adapter");
                process::cargo_with_env(
                    &["bench", "-p", "glowworm-contributor", "--bench", "kernels"],
                    &xdg,
                )?;
            }
            Which::Freivalds => {
                process::step("Benchmark: Freivalds' check vs recomputing the product");
                process::cargo_with_env(
                    &["bench", "-p", "glowworm-protocol", "--bench", "freivalds"],
                    &xdg,
                )?;
            }
            Which::Verification => {
                process::step("Benchmark: verification under attack");
                process::cargo(&["bench", "-p", "glowworm-relay", "--bench", "verification"])?;
                process::step("Benchmark: Freivalds' tolerances (cheats caught, honest orders)");
                process::cargo(&["bench", "-p", "glowworm-protocol", "--bench", "tolerance"])?;
            }
            Which::Epochs => {
                process::step("Benchmark: closing an epoch of 100,000 addresses");
                process::cargo(&["bench", "-p", "glowworm-relay", "--bench", "epochs"])?;
            }
            Which::Faults => {
                process::step("Benchmark: faults survived (SIGKILL under load)");
                let kills = std::env::var_os("GLOWWORM_CRASH_KILLS").unwrap_or_else(|| "50".into());
                let out = root.join("target/bench/faults.md");
                process::cargo_with_env(
                    &[
                        "test",
                        "--release",
                        "-p",
                        "glowworm-relay",
                        "--test",
                        "crash",
                        "--",
                        "--nocapture",
                    ],
                    &[
                        ("GLOWWORM_CRASH_KILLS", kills.as_os_str()),
                        ("GLOWWORM_CRASH_OUT", out.as_os_str()),
                    ],
                )?;
            }
            Which::Load => {
                process::step("Benchmark: load held by 1,000 contributors");
                let seconds =
                    std::env::var_os("GLOWWORM_LOAD_SECONDS").unwrap_or_else(|| "300".into());
                let out = root.join("target/bench/load.md");
                process::cargo_with_env(
                    &["bench", "-p", "glowworm-relay", "--bench", "throughput"],
                    &[
                        ("GLOWWORM_BENCH_SECONDS", seconds.as_os_str()),
                        ("GLOWWORM_BENCH_CONTRIBUTORS", "1000".as_ref()),
                        ("GLOWWORM_BENCH_RATE", "0".as_ref()),
                        ("GLOWWORM_BENCH_SUSTAINED", "0".as_ref()),
                        (
                            "GLOWWORM_BENCH_LABEL",
                            "load held by 1,000 contributors".as_ref(),
                        ),
                        ("GLOWWORM_BENCH_OUT", out.as_os_str()),
                    ],
                )?;
            }
            Which::Abuse => {
                process::step("Benchmark: honest work beside attackers (abuse soak)");
                let seconds =
                    std::env::var_os("GLOWWORM_ABUSE_SECONDS").unwrap_or_else(|| "300".into());
                let out = std::env::var_os("GLOWWORM_ABUSE_OUT")
                    .unwrap_or_else(|| root.join("target/bench/abuse.md").into_os_string());
                process::cargo_with_env(
                    &["bench", "-p", "glowworm-relay", "--bench", "abuse"],
                    &[
                        ("GLOWWORM_ABUSE_SECONDS", seconds.as_os_str()),
                        ("GLOWWORM_ABUSE_OUT", out.as_os_str()),
                    ],
                )?;
            }
            Which::Browser => {
                deps::require_chromium()?;
                deps::require_node_packages(&root.join("tests/e2e"), "the browser benchmark")?;
                wasm::build(root)?;
                process::cargo(&["build", "--release", "-p", "glowworm-relay"])?;
                process::step("Benchmark: the module in headless Chromium");
                process::run_checked(
                    Path::new("node"),
                    &["tests/bench/browser.mjs"],
                    &[
                        (
                            "GLOWWORM_RELAY_BIN",
                            root.join("target/release/glowworm-relay").as_os_str(),
                        ),
                        ("GLOWWORM_WWW", root.join("www").as_os_str()),
                    ],
                )?;
            }
        }
    }
    println!("\nTables written to target/bench/.");
    Ok(())
}
