//! Building the browser modules: cargo for wasm32 (its own target directory, so native and wasm
//! builds do not evict each other), then wasm-bindgen as a library, which keeps the bindings
//! generator at exactly the version of the wasm-bindgen crate in Cargo.lock. wasm-bindgen also
//! drops the `name` and `producers` custom sections: function names are 40 KB of the contributor
//! module gzipped, and nothing needs them at run time (a trap's stack trace then shows
//! `wasm-function[N]` instead of the Rust function).

use crate::{deps, process};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::Path;

/// A browser module: the contributor module every visitor downloads, or the one for the kernel
/// benchmark page (`www/bench.html`), which adds the `bench` feature's exports.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Module {
    Contributor,
    Bench,
}

impl Module {
    /// Where under `www/` it is written.
    fn dir(self) -> &'static str {
        match self {
            Module::Contributor => "pkg",
            Module::Bench => "pkg-bench",
        }
    }
}

/// The most the contributor module may weigh gzipped (issue 7: 200 KB, decimal kilobytes),
/// in bytes. `tests/bench/browser.mjs` judges the module against the same number.
pub const CONTRIBUTOR_TARGET_GZIPPED_BYTES: usize = 200_000;

/// Builds both modules: `www/pkg/` (the contributor's) and `www/pkg-bench/` (the bench page's).
pub fn build(root: &Path) -> Result<()> {
    build_module(root, Module::Contributor)?;
    build_module(root, Module::Bench)
}

/// Builds one module into its folder under `www/` and prints its size.
pub fn build_module(root: &Path, module: Module) -> Result<()> {
    deps::require_wasm_target()?;
    let dir = module.dir();
    process::step(&format!(
        "Building the browser module for www/{dir}/ (wasm32, profile wasm-release)"
    ));
    let mut args = vec![
        "build",
        "-p",
        "glowworm-contributor",
        "--lib",
        "--target",
        deps::WASM_TARGET,
        "--profile",
        "wasm-release",
        "--target-dir",
        "target/wasm",
    ];
    if module == Module::Bench {
        args.extend(["--features", "bench"]);
    }
    process::cargo(&args)?;
    let input =
        root.join("target/wasm/wasm32-unknown-unknown/wasm-release/glowworm_contributor.wasm");
    let out_dir = root.join("www").join(dir);
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&input)
        .web(true)?
        .out_name("glowworm")
        .typescript(false)
        .omit_default_module_path(false)
        .remove_name_section(true)
        .remove_producers_section(true)
        .generate(&out_dir)
        .with_context(|| format!("wasm-bindgen failed on {}", input.display()))?;

    let wasm_name = fingerprint_wasm(&out_dir)?;

    let wasm = std::fs::read(out_dir.join(&wasm_name))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&wasm)?;
    let gzipped = gz.finish()?.len();
    println!(
        "Browser module: www/{dir}/{wasm_name}, {} B raw, {} B gzipped (level 9)",
        thousands(wasm.len()),
        thousands(gzipped)
    );
    if module == Module::Contributor {
        let target = CONTRIBUTOR_TARGET_GZIPPED_BYTES;
        if gzipped <= target {
            println!("  within the target of {} B gzipped", thousands(target));
        } else {
            println!(
                "  warning: over the target of {} B gzipped, by {} B",
                thousands(target),
                thousands(gzipped - target)
            );
        }
    }
    Ok(())
}

/// `1234567` as `1,234,567`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Renames the wasm file to carry its content hash (`glowworm_bg.<hash>.wasm`) and points
/// `glowworm.js` at it, so static hosting can cache the module forever while `glowworm.js`
/// (small, revalidated) always names the current build. Older fingerprinted files are removed.
fn fingerprint_wasm(out_dir: &Path) -> Result<String> {
    use sha2::Digest;
    let plain = out_dir.join("glowworm_bg.wasm");
    let bytes = std::fs::read(&plain)?;
    let hash = hex::encode(&sha2::Sha256::digest(&bytes)[..8]);
    let name = format!("glowworm_bg.{hash}.wasm");
    for entry in std::fs::read_dir(out_dir)? {
        let path = entry?.path();
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if file.starts_with("glowworm_bg.") && file.ends_with(".wasm") && file != "glowworm_bg.wasm"
        {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::rename(&plain, out_dir.join(&name))?;

    let js_path = out_dir.join("glowworm.js");
    let js = std::fs::read_to_string(&js_path)?;
    let reference = "'glowworm_bg.wasm'";
    anyhow::ensure!(
        js.contains(reference),
        "glowworm.js no longer names {reference}; update xtask/src/wasm.rs"
    );
    std::fs::write(&js_path, js.replace(reference, &format!("'{name}'")))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_groups_digits_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(200_000), "200,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
