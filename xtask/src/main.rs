//! Build, run and test automation for Glowworm.
//!
//! - `cargo xtask run`: builds the browser module and the relay, then starts the relay with its
//!   SQLite database and the page (the README's first command).
//! - `cargo xtask test`: installs what the tests need, builds, and runs every test: Rust unit and
//!   integration tests (kernels on lavapipe), the Python client's tests (pytest in
//!   `target/python-venv`, against the built relay and worker) and the headless-Chromium
//!   end-to-end tests, then fuzzes each decoder of outside input for a few seconds.
//! - `cargo xtask test-python`: only the Python client's tests.
//! - `cargo xtask bench [relay|kernels|freivalds|verification|browser|faults]`: benchmarks, each printing a table
//!   and writing it to `target/bench/<name>.md`.
//! - `cargo xtask fuzz [--seconds N] [TARGET...]`: the fuzz targets in `fuzz/`, each for N
//!   seconds, printing a table and writing it to `target/bench/fuzz.md`. `cargo xtask test` ends
//!   with a short run of each.
//! - `cargo xtask lint`: rustfmt and clippy, natively and for wasm32 (CI runs it too).
//! - `cargo xtask contracts`: installs contracts/'s npm packages and recompiles the payout
//!   contract into `contracts/out/*.json` (committed; the Rust bindings are generated from them).
//! - `cargo xtask build`: only builds the modules, the contributor's into `www/pkg/` and the
//!   kernel benchmark page's into `www/pkg-bench/`, and prints their sizes.

mod bench;
mod contracts;
mod deps;
mod fuzz;
mod process;
mod python;
mod wasm;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(about = "Glowworm build, run and test automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the WebAssembly modules into www/pkg and www/pkg-bench (the bench page's, with the
    /// `bench` feature) (release profile, wasm-bindgen --target web).
    Build,
    /// Build everything and start the relay serving the page; extra arguments go to the relay.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        relay_args: Vec<String>,
    },
    /// rustfmt and clippy (-D warnings) over the workspace, natively and for wasm32.
    Lint,
    /// Run the benchmarks; each prints a table and writes it to target/bench/<name>.md.
    Bench {
        /// Which to run (default: all): relay, kernels, freivalds, verification, browser, faults,
        /// load.
        #[arg(value_enum)]
        which: Vec<bench::Which>,
    },
    /// Install test dependencies, build, and run every test, then fuzz each target briefly.
    Test {
        /// Skip the headless-Chromium end-to-end tests.
        #[arg(long)]
        no_browser: bool,
        /// Skip the short fuzzing run at the end.
        #[arg(long)]
        no_fuzz: bool,
        /// Skip the Python client's tests.
        #[arg(long)]
        no_python: bool,
    },
    /// Recompile the payout contract with npm's solc into contracts/out/*.json (commit the result).
    Contracts,
    /// Only the Python client's tests: pip install ./python[test] into target/python-venv, then
    /// pytest against the built relay and native worker.
    TestPython,
    /// Run the fuzz targets (cargo-fuzz, installed if missing), each for a bounded time; prints
    /// a table and writes it to target/bench/fuzz.md.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u32,
        /// Which to run (default: all): protocol, npy, siwe, wgsl.
        targets: Vec<String>,
    },
}

/// Seconds per fuzz target in `cargo xtask test`.
const TEST_FUZZ_SECONDS: u32 = 10;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match cli.command {
        Command::Build => {
            wasm::build(&root)?;
        }
        Command::Run { relay_args } => run(&root, relay_args)?,
        Command::Test {
            no_browser,
            no_fuzz,
            no_python,
        } => test(&root, no_browser, no_fuzz, no_python)?,
        Command::TestPython => {
            deps::require_vulkan_driver()?;
            python::test(&root, &deps::runtime_dir()?)?;
        }
        Command::Fuzz { seconds, targets } => fuzz::run(&root, seconds, &targets)?,
        Command::Lint => lint()?,
        Command::Contracts => contracts::build(&root)?,
        Command::Bench { which } => bench::run(&root, &which)?,
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn run(root: &Path, relay_args: Vec<String>) -> Result<()> {
    // The modules first: the relay carries the copy of www/ (www/pkg included) it is built with.
    wasm::build(root)?;
    process::cargo(&["build", "--release", "-p", "glowworm-relay"])?;
    let relay = root.join("target/release/glowworm-relay");
    grant_demo_budget(&relay, &relay_args)?;
    let mut args = vec!["serve".to_string()];
    args.extend(relay_args);
    println!("Starting the relay (Ctrl-C stops it)...");
    // In the foreground: Ctrl-C reaches the relay directly and it shuts down cleanly.
    process::run_checked(&root.join("target/release/glowworm-relay"), &args, &[])
}

/// Credits a development relay's demo budget holds when `cargo xtask run` finds it empty.
const DEV_DEMO_BUDGET: &str = "1000000000000000";

/// The development relay pays its demo jobs: when the demo budget of the database the relay
/// will use (`--config`/`--database` among `relay_args`, else the defaults and GLOWWORM_*) is
/// empty, grants it [`DEV_DEMO_BUDGET`], as an operator would (`glowworm-relay budget grant`).
fn grant_demo_budget(relay: &Path, relay_args: &[String]) -> Result<()> {
    // Only the settings that name the database go to the budget command.
    let mut database_args = Vec::new();
    let mut args = relay_args.iter();
    while let Some(arg) = args.next() {
        if arg == "--database" || arg == "--config" {
            database_args.push(arg.clone());
            database_args.extend(args.next().cloned());
        } else if arg.starts_with("--database=") || arg.starts_with("--config=") {
            database_args.push(arg.clone());
        }
    }
    let shown = std::process::Command::new(relay)
        .args(["budget", "show", "demo"])
        .args(&database_args)
        .output()
        .context("running glowworm-relay budget show")?;
    anyhow::ensure!(
        shown.status.success(),
        "glowworm-relay budget show demo failed: {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let empty = String::from_utf8_lossy(&shown.stdout)
        .split_whitespace()
        .nth(1)
        .is_none_or(|credits| credits == "0");
    if empty {
        process::run_checked(
            relay,
            &[
                &["budget", "grant", "demo", DEV_DEMO_BUDGET, "--memo"],
                &["cargo xtask run: the development relay's demo budget"][..],
                &database_args.iter().map(String::as_str).collect::<Vec<_>>()[..],
            ]
            .concat(),
            &[],
        )?;
    }
    Ok(())
}

fn test(root: &Path, no_browser: bool, no_fuzz: bool, no_python: bool) -> Result<()> {
    deps::require_vulkan_driver()?;
    if !no_browser {
        // Everything the browser tests need, checked before the long Rust tests run.
        deps::require_wasm_target()?;
        deps::require_chromium()?;
        deps::require_node_packages(&root.join("tests/e2e"), "the browser tests")?;
    }
    // The protocol crate's earnings tree is checked against @openzeppelin/merkle-tree in Node.
    deps::require_node_packages(
        &root.join("protocol/tests/oz-merkle"),
        "the earnings tree's tests (protocol/tests/oz-merkle)",
    )?;
    if !no_fuzz {
        deps::require_cargo_fuzz()?;
    }
    // glowworm-chain's tests and the browser test of claims (tests/e2e/claim.test.mjs) run a
    // real chain (anvil), and the former compare the committed contract artifacts with a fresh
    // compile: both come from contracts/node_modules.
    deps::require_contract_packages(&root.join("contracts"))?;
    if !no_python {
        deps::require_python_venv()?;
    }
    let runtime_dir = deps::runtime_dir()?;
    if !no_browser {
        // Before the relay is built, so the copy of www/ it carries has the module (the
        // end-to-end tests use the contributor module only).
        wasm::build_module(root, wasm::Module::Contributor)?;
    }

    process::step("Rust tests (crate, relay, kernels on the native GPU backend)");
    process::cargo_with_env(
        // Unit and integration tests; not doc-tests (there are none) nor the benchmarks.
        &[
            "test",
            "--workspace",
            "--exclude",
            "xtask",
            "--lib",
            "--bins",
            "--tests",
        ],
        &[("XDG_RUNTIME_DIR", runtime_dir.as_os_str())],
    )?;

    if !no_python {
        python::test(root, &runtime_dir)?;
    }

    if !no_browser {
        // Both binaries: the relay, and the requester's client `glowworm` (requester.test.mjs).
        process::cargo(&[
            "build",
            "-p",
            "glowworm-relay",
            "-p",
            "glowworm-cli",
            "--bins",
        ])?;
        process::step("End-to-end tests in headless Chromium with WebGPU");
        process::run_checked(
            Path::new("node"),
            &["--test", "--test-reporter=spec", "tests/e2e/"],
            &[
                (
                    "GLOWWORM_RELAY_BIN",
                    root.join("target/debug/glowworm-relay").as_os_str(),
                ),
                (
                    "GLOWWORM_CLI_BIN",
                    root.join("target/debug/glowworm").as_os_str(),
                ),
                ("GLOWWORM_WWW", root.join("www").as_os_str()),
            ],
        )?;
    }
    if !no_fuzz {
        // Every decoder of outside input, briefly: the seeds and the corpus grown by earlier runs.
        fuzz::run(root, TEST_FUZZ_SECONDS, &[])?;
    }
    println!("\nAll tests passed.");
    Ok(())
}

fn lint() -> Result<()> {
    deps::require_wasm_target()?;
    process::step("rustfmt");
    process::cargo(&["fmt", "--all", "--check"])?;
    process::step("clippy (native)");
    process::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    process::step("clippy (wasm32 browser module, and with the bench page's exports)");
    for features in [&[][..], &["--features", "bench"][..]] {
        let mut args = vec![
            "clippy",
            "-p",
            "glowworm-contributor",
            "--target",
            deps::WASM_TARGET,
            "--target-dir",
            "target/wasm",
        ];
        args.extend(features);
        args.extend(["--", "-D", "warnings"]);
        process::cargo(&args)?;
    }
    Ok(())
}
