//! Building the browser module: cargo for wasm32 (its own target directory, so native and wasm
//! builds do not evict each other), then wasm-bindgen as a library, which keeps the bindings
//! generator at exactly the version of the wasm-bindgen crate in Cargo.lock.

use crate::{deps, process};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

pub fn build(root: &Path) -> Result<()> {
    deps::require_wasm_target()?;
    process::step("Building the browser module (wasm32, profile wasm-release)");
    process::cargo(&[
        "build",
        "-p",
        "glowworm",
        "--lib",
        "--target",
        deps::WASM_TARGET,
        "--profile",
        "wasm-release",
        "--target-dir",
        "target/wasm",
    ])?;
    let input = root.join("target/wasm/wasm32-unknown-unknown/wasm-release/glowworm.wasm");
    let out_dir = root.join("www/pkg");
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&input)
        .web(true)?
        .out_name("glowworm")
        .typescript(false)
        .omit_default_module_path(false)
        .generate(&out_dir)
        .with_context(|| format!("wasm-bindgen failed on {}", input.display()))?;

    let wasm = std::fs::read(out_dir.join("glowworm_bg.wasm"))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&wasm)?;
    let gzipped = gz.finish()?.len();
    println!(
        "Browser module: www/pkg/glowworm_bg.wasm, {} KB raw, {} KB gzipped",
        wasm.len() / 1024,
        gzipped / 1024
    );
    Ok(())
}
