//! `cargo xtask fuzz`: runs the fuzz targets in `fuzz/` (cargo-fuzz and libFuzzer), each for a
//! bounded time, prints a table of what each tried and found, and writes it to
//! `target/bench/fuzz.md`. `cargo xtask test` ends with a short run of every target.
//!
//! The targets are built on the toolchain that runs xtask, stable included, without a sanitizer
//! (`--sanitizer none`): the code they exercise is safe Rust, whose bugs are panics, and those
//! libFuzzer catches by itself. With debug assertions and overflow checks, as cargo-fuzz builds
//! by default. AddressSanitizer needs nightly: `cargo +nightly fuzz run <target>` (README,
//! "Fuzzing").
//!
//! Each target grows its corpus in `fuzz/corpus/<target>/` (kept between runs, not committed)
//! from the seeds in `fuzz/seeds/<target>/`; an input that crashes is written to
//! `fuzz/artifacts/<target>/`. libFuzzer's own output goes to `target/fuzz/<target>.log`.

use crate::{deps, process};
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Every fuzz target, as named in `fuzz/Cargo.toml`.
pub const TARGETS: &[&str] = &["protocol", "npy", "siwe", "wgsl"];

/// The build settings, the same for `cargo fuzz build` and `cargo fuzz run` so that running
/// reuses the build (in `fuzz/target`). Several codegen units: the build is much faster on few
/// cores, the fuzzing a little slower.
const BUILD_ARGS: &[&str] = &["--sanitizer", "none", "--codegen-units", "16"];

/// Longest one input may take before libFuzzer reports it as a timeout (a slow input is a way
/// to tie up the relay too).
const TIMEOUT_SECONDS: u32 = 10;

/// What one target's run found.
struct Outcome {
    target: String,
    seconds: u32,
    executions: u64,
    per_second: u64,
    new_inputs: u64,
    /// Inputs that crashed, timed out or ran out of memory, as libFuzzer wrote them.
    crashes: Vec<String>,
    /// libFuzzer stopped without saying why (it did not start, say).
    failed: bool,
}

/// Builds the chosen targets (all when `chosen` is empty), runs each for `seconds`, prints and
/// writes the table; fails if any target found a crash.
pub fn run(root: &Path, seconds: u32, chosen: &[String]) -> Result<()> {
    for target in chosen {
        if !TARGETS.contains(&target.as_str()) {
            bail!(
                "no fuzz target {target:?}; the targets are {}",
                TARGETS.join(", ")
            );
        }
    }
    let targets: Vec<String> = if chosen.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        chosen.to_vec()
    };
    deps::require_cargo_fuzz()?;

    process::step("Building the fuzz targets (fuzz/target, kept between runs)");
    let mut build = vec!["fuzz", "build"];
    build.extend(BUILD_ARGS);
    if let [one] = &targets[..] {
        build.push(one);
    }
    process::cargo(&build)?;

    let logs = root.join("target/fuzz");
    std::fs::create_dir_all(&logs)?;
    let mut outcomes = Vec::new();
    for target in &targets {
        process::step(&format!("Fuzzing {target} for {seconds} s"));
        let log = logs.join(format!("{target}.log"));
        let outcome = run_target(root, target, seconds, &log)?;
        if !outcome.crashes.is_empty() || outcome.failed {
            print_failure(&log);
        }
        outcomes.push(outcome);
    }

    let table = table(&outcomes);
    println!("\n{table}");
    let bench = root.join("target/bench");
    std::fs::create_dir_all(&bench)?;
    std::fs::write(bench.join("fuzz.md"), &table)?;
    println!("Table written to target/bench/fuzz.md; libFuzzer's output is in target/fuzz/.");

    let bad: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !o.crashes.is_empty() || o.failed)
        .collect();
    if !bad.is_empty() {
        let mut message = String::from("fuzzing found crashes:");
        for outcome in bad {
            let _ = write!(message, "\n  {}: ", outcome.target);
            if outcome.crashes.is_empty() {
                let _ = write!(
                    message,
                    "libFuzzer failed, see target/fuzz/{}.log",
                    outcome.target
                );
            }
            for crash in &outcome.crashes {
                let _ = write!(
                    message,
                    "{crash}\n    reproduce: cargo fuzz run {} {} {crash}",
                    BUILD_ARGS.join(" "),
                    outcome.target
                );
            }
        }
        bail!(message);
    }
    Ok(())
}

/// Runs one target for `seconds` from its corpus and seeds, its output into `log`.
fn run_target(root: &Path, target: &str, seconds: u32, log: &Path) -> Result<Outcome> {
    let corpus = root.join("fuzz/corpus").join(target);
    let seeds = root.join("fuzz/seeds").join(target);
    std::fs::create_dir_all(&corpus)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = File::create(log).with_context(|| format!("cannot write {}", log.display()))?;
    let status = Command::new(cargo)
        .args(["fuzz", "run"])
        .args(BUILD_ARGS)
        .arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-timeout={TIMEOUT_SECONDS}"))
        .arg("-print_final_stats=1")
        .stdout(output.try_clone()?)
        .stderr(output)
        .stdin(Stdio::null())
        .status()
        .context("could not run cargo fuzz")?;
    let text = read_lossy(log);
    let stat = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .and_then(|v| v.trim().parse().ok())
    };
    let crashes: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()))
        .map(|p| relative(root, Path::new(p)))
        .collect();
    let executions = stat("number_of_executed_units");
    Ok(Outcome {
        target: target.to_string(),
        seconds,
        executions: executions.unwrap_or(0),
        per_second: stat("average_exec_per_sec").unwrap_or(0),
        new_inputs: stat("new_units_added").unwrap_or(0),
        failed: crashes.is_empty() && (!status.success() || executions.is_none()),
        crashes,
    })
}

/// `path` relative to the repository root, for messages.
fn relative(root: &Path, path: &Path) -> String {
    let absolute: PathBuf = if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join("fuzz").join(path)
    };
    absolute
        .strip_prefix(root)
        .unwrap_or(&absolute)
        .display()
        .to_string()
}

/// A log's text; libFuzzer may write bytes of the input that are not UTF-8.
fn read_lossy(log: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned()
}

/// What went wrong, from libFuzzer's log: the panic or the sanitizer's report if there is one,
/// else the log's end.
fn print_failure(log: &Path) {
    let text = read_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("panicked at") || l.contains("ERROR:"))
        .unwrap_or(lines.len().saturating_sub(30));
    println!("... from {}:", log.display());
    for line in lines.iter().skip(start).take(30) {
        println!("{line}");
    }
}

fn table(outcomes: &[Outcome]) -> String {
    let mut out = String::from(
        "| Target | Seconds | Executions | Executions/s | New corpus inputs | Crashes |\n\
         |---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        let crashes = if o.failed {
            "libFuzzer failed".to_string()
        } else if o.crashes.is_empty() {
            "0".to_string()
        } else {
            format!("{} ({})", o.crashes.len(), o.crashes.join(", "))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {crashes} |",
            o.target, o.seconds, o.executions, o.per_second, o.new_inputs
        );
    }
    out
}
