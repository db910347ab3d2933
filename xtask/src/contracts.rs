//! The payout contract's build: `contracts/build.mjs` compiles `contracts/src/*.sol` (and the
//! test token) with npm's solc into `contracts/out/*.json`. Those artifacts are committed, so
//! building the Rust crates needs no Node.js; glowworm-chain's tests fail when they go stale.

use crate::{deps, process};
use anyhow::Result;
use std::path::Path;

pub fn build(root: &Path) -> Result<()> {
    deps::require_contract_packages(&root.join("contracts"))?;
    process::step("Compiling the payout contract (contracts/build.mjs)");
    process::run_checked(Path::new("node"), &["contracts/build.mjs"], &[])?;
    println!("Commit contracts/out/*.json with the Solidity change.");
    Ok(())
}
