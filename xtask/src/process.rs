//! Running child processes with clear errors.

use anyhow::{Context, Result, bail};
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

pub fn step(title: &str) {
    println!("\n==> {title}");
}

pub fn cargo(args: &[&str]) -> Result<()> {
    cargo_with_env(args, &[])
}

pub fn cargo_with_env(args: &[&str], env: &[(&str, &OsStr)]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_checked(Path::new(&cargo), args, env)
}

/// Runs a program to completion; fails naming it if it cannot start or exits non-zero.
pub fn run_checked<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    env: &[(&str, &OsStr)],
) -> Result<()> {
    let mut command = Command::new(program);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let status = command
        .status()
        .with_context(|| format!("could not start {}", program.display()))?;
    if !status.success() {
        let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
        bail!(
            "`{} {}` failed ({status})",
            program.display(),
            shown.join(" ")
        );
    }
    Ok(())
}

/// True when `program --version` runs.
pub fn available(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
