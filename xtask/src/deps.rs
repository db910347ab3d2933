//! Finding, and where possible installing, what the build and the tests need on a fresh Debian
//! machine: the wasm32 target, a Vulkan driver (lavapipe), Chromium, the npm packages of the e2e
//! tests, of the earnings tree's comparison with OpenZeppelin's library and of the contracts,
//! Python 3 with venv for the Python client, and cargo-fuzz with a C++ compiler for the fuzz
//! targets.
//! Installing system packages needs root; otherwise we stop with the command to run.

use crate::process;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

pub fn require_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the wasm32 target: install Rust with rustup (https://rustup.rs)")?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    process::step(&format!("Adding the Rust target {WASM_TARGET}"));
    process::run_checked(Path::new("rustup"), &["target", "add", WASM_TARGET], &[]).context(
        "could not add the wasm32 target; check network access to the Rust toolchain server",
    )
}

pub fn require_vulkan_driver() -> Result<()> {
    let icd = Path::new("/usr/share/vulkan/icd.d");
    let has_driver = std::fs::read_dir(icd)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
        })
        .unwrap_or(false);
    if has_driver {
        return Ok(());
    }
    apt_install(
        &["mesa-vulkan-drivers", "libvulkan1"],
        "a Vulkan driver for the native kernel tests",
    )
}

pub fn require_chromium() -> Result<()> {
    if Path::new("/usr/bin/chromium").exists() {
        return Ok(());
    }
    apt_install(&["chromium"], "Chromium for the browser tests")
}

/// `npm ci` in `dir` unless its `node_modules` is current; `purpose` names the tests, such as
/// "the browser tests".
pub fn require_node_packages(dir: &Path, purpose: &str) -> Result<()> {
    npm_ci(dir, purpose, &[])
}

/// contracts/node_modules: solc and OpenZeppelin's contracts to compile the payout contract,
/// @openzeppelin/merkle-tree and the anvil binary for the chain tests. None of them runs an
/// install script (anvil's binary ships inside its package), so none is allowed to.
pub fn require_contract_packages(dir: &Path) -> Result<()> {
    npm_ci(
        dir,
        "the contract build and chain tests",
        &["--ignore-scripts"],
    )
}

/// `npm ci` in `dir` unless its node_modules was installed from the current lock file.
fn npm_ci(dir: &Path, purpose: &str, extra_args: &[&str]) -> Result<()> {
    if !process::available("node") || !process::available("npm") {
        bail!("Node.js and npm are needed for {purpose}: apt-get install nodejs npm");
    }
    if node_modules_current(dir) {
        return Ok(());
    }
    process::step(&format!(
        "Installing the npm packages of {purpose} (npm ci in {})",
        dir.display()
    ));
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .args(extra_args)
        .current_dir(dir)
        .status()
        .context("could not run npm")?;
    if !status.success() {
        bail!("`npm ci` failed in {}", dir.display());
    }
    Ok(())
}

/// Python 3 with the `venv` module and `ensurepip` (Debian splits them into python3-venv), for
/// the Python client's tests.
pub fn require_python_venv() -> Result<()> {
    let has_venv = Command::new("python3")
        .args(["-c", "import venv, ensurepip"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if has_venv {
        return Ok(());
    }
    apt_install(
        &["python3", "python3-venv"],
        "Python 3 with venv for the Python client's tests",
    )
}

/// cargo-fuzz, installed with `cargo install` if it is missing, and the C++ compiler that
/// libFuzzer is built with.
pub fn require_cargo_fuzz() -> Result<()> {
    if !process::available("c++") {
        apt_install(&["g++"], "a C++ compiler for libFuzzer (the fuzz targets)")?;
    }
    if process::available("cargo-fuzz") {
        return Ok(());
    }
    process::step("Installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    process::cargo(&["install", "cargo-fuzz", "--locked"]).context(
        "could not install cargo-fuzz; install it with `cargo install cargo-fuzz --locked` \
         (it needs network access to crates.io)",
    )
}

/// True when `node_modules` was installed from the current `package-lock.json` (npm writes its
/// own copy, `node_modules/.package-lock.json`, at install time).
fn node_modules_current(dir: &Path) -> bool {
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(dir.join("package-lock.json")),
        modified(dir.join("node_modules/.package-lock.json")),
    ) {
        (Some(lock), Some(installed)) => installed >= lock,
        _ => false,
    }
}

/// wgpu's Vulkan loader warns without XDG_RUNTIME_DIR; give the tests a private one.
pub fn runtime_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join("glowworm-xdg");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn apt_install(packages: &[&str], purpose: &str) -> Result<()> {
    let list = packages.join(" ");
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !is_root {
        bail!("{purpose} is missing: run `sudo apt-get update && sudo apt-get install -y {list}`");
    }
    process::step(&format!("Installing {list} ({purpose})"));
    let apt = Path::new("apt-get");
    process::run_checked(apt, &["update", "-qq"], &[])?;
    process::run_checked(
        apt,
        &["install", "-y", "-qq", "--no-install-recommends"]
            .iter()
            .chain(packages)
            .copied()
            .collect::<Vec<_>>(),
        &[("DEBIAN_FRONTEND", "noninteractive".as_ref())],
    )
    .with_context(|| format!("could not install {list}"))
}
