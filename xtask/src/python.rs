//! The Python client's tests (`python/tests`): a virtual environment in `target/python-venv`
//! with the package and pytest installed from `python/` (`pip install ./python[test]`), run
//! against the built relay, native worker and CLI, whose paths are passed in
//! `GLOWWORM_RELAY_BIN`, `GLOWWORM_WORKER_BIN` and `GLOWWORM_CLI_BIN`.

use crate::{deps, process};
use anyhow::{Context, Result};
use std::path::Path;

/// Where the virtual environment lives, relative to the workspace root.
const VENV: &str = "target/python-venv";

pub fn test(root: &Path, runtime_dir: &Path) -> Result<()> {
    // The relay and the CLI as the end-to-end tests build them (the same features: one build
    // for both), and the worker on its own.
    process::cargo(&[
        "build",
        "-p",
        "glowworm-relay",
        "-p",
        "glowworm-cli",
        "--bins",
    ])?;
    process::cargo(&["build", "-p", "glowworm-worker", "--bins"])?;
    let venv = root.join(VENV);
    // A venv made without ensurepip has a python but no pip: made again.
    if !venv.join("bin/pip").exists() {
        deps::require_python_venv()?;
        process::step(&format!("Creating the Python virtual environment {VENV}"));
        process::run_checked(
            Path::new("python3"),
            &[
                "-m".as_ref(),
                "venv".as_ref(),
                "--clear".as_ref(),
                venv.as_os_str(),
            ],
            &[],
        )?;
    }
    let python = venv.join("bin/python");
    process::step("Installing the Python client with its test extra (pip install ./python[test])");
    process::run_checked(
        &python,
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "./python[test]",
        ],
        &[],
    )
    .context("could not install the Python client; pip needs to reach PyPI (or its cache)")?;

    process::step("Python client tests against a real relay and native worker (pytest)");
    let bin = |name: &str| root.join("target/debug").join(name).into_os_string();
    let (relay, worker, cli) = (
        bin("glowworm-relay"),
        bin("glowworm-worker"),
        bin("glowworm"),
    );
    process::run_checked(
        &python,
        &["-m", "pytest", "-q", "python/tests"],
        &[
            ("GLOWWORM_RELAY_BIN", relay.as_os_str()),
            ("GLOWWORM_WORKER_BIN", worker.as_os_str()),
            ("GLOWWORM_CLI_BIN", cli.as_os_str()),
            ("XDG_RUNTIME_DIR", runtime_dir.as_os_str()),
        ],
    )
}
