//! Helpers shared by the benchmarks of glowworm-protocol and glowworm-contributor (which
//! includes this file by path).

use std::path::Path;

/// The median of `v` (sorted in place); the mean of the middle two for an even count.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// Prints `table` and writes it to `target/bench/<file>` at the workspace root.
pub fn publish(table: &str, file: &str) {
    println!("\n{table}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives one level below the workspace root")
        .join("target/bench");
    std::fs::create_dir_all(&dir).expect("create target/bench");
    let path = dir.join(file);
    std::fs::write(&path, table).expect("write the table");
    println!("Written to {}", path.display());
}
