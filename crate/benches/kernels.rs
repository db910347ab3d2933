//! Tiled against naive WGSL matmul on the native adapter (lavapipe on a machine without a GPU).
//!
//! For each size both kernels are first checked against the CPU reference, then timed side by side
//! in alternating rounds (so a noisy neighbour slows both alike): dispatches only, inputs resident
//! on the device, warm-up excluded, several dispatches per timed batch when they are short. The
//! figure is the median over all batches. Prints a Markdown table and writes it to
//! `target/bench/kernels-native.md`.
//!
//! Run: `cargo xtask bench kernels` (or `cargo bench -p glowworm-contributor --bench kernels`).

#[path = "../../protocol/benches/common/mod.rs"]
mod common;

use glowworm_contributor::gpu::Gpu;
use glowworm_protocol::kernels::{Kernel, matmul};
use glowworm_protocol::wire::MatmulShape;
use std::fmt::Write as _;

/// Timed batches per kernel and round.
const SAMPLES: u32 = 3;
/// Rounds of (naive, tiled), alternating.
const ROUNDS: u32 = 3;
/// Each timed batch lasts at least about this long.
const MIN_SAMPLE_MS: f64 = 40.0;

const SIZES: [MatmulShape; 4] = [
    // The relay's unit: one 64x64 tile of C over the full k.
    MatmulShape {
        m: 64,
        n: 64,
        k: 256,
    },
    MatmulShape {
        m: 256,
        n: 256,
        k: 256,
    },
    MatmulShape {
        m: 512,
        n: 512,
        k: 512,
    },
    // Ragged: not a multiple of any tile, so the bounds-checked paths are timed too.
    MatmulShape {
        m: 300,
        n: 200,
        k: 301,
    },
];

fn main() {
    let gpu = match pollster::block_on(Gpu::new()) {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!(
                "{e}\nThis benchmark needs a GPU or a Vulkan driver (apt-get install mesa-vulkan-drivers)."
            );
            std::process::exit(1);
        }
    };
    let adapter = gpu.adapter().description.clone();
    println!("Adapter: {adapter}");

    let kernels = [matmul::NAIVE, matmul::TILED];
    let mut rows = Vec::new();
    for shape in SIZES {
        let a = matmul::sample_matrix(shape.m * shape.k, 1);
        let b = matmul::sample_matrix(shape.k * shape.n, 2);
        let want = matmul::reference(&a, &b, shape);
        for kernel in &kernels {
            let got = pollster::block_on(gpu.run_matmul(&kernel.source(), &a, &b, shape))
                .unwrap_or_else(|e| panic!("{}: {e}", kernel.id));
            check(kernel, shape, &got, &want);
        }

        let mut ms: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut batch = [0u32; 2];
        for _ in 0..ROUNDS {
            for (i, kernel) in kernels.iter().enumerate() {
                let timing = pollster::block_on(gpu.time_matmul(
                    &kernel.source(),
                    &a,
                    &b,
                    shape,
                    SAMPLES,
                    MIN_SAMPLE_MS,
                ))
                .unwrap_or_else(|e| panic!("{}: {e}", kernel.id));
                check(kernel, shape, &timing.output, &want);
                ms[i].extend(timing.dispatch_ms);
                batch[i] = timing.batch;
            }
        }
        let flop = 2.0 * shape.m as f64 * shape.n as f64 * shape.k as f64;
        let [naive_ms, tiled_ms] = ms.map(|mut v| common::median(&mut v));
        let (naive, tiled) = (flop / naive_ms / 1e6, flop / tiled_ms / 1e6);
        let row = Row {
            shape,
            naive_ms,
            tiled_ms,
            naive,
            tiled,
            batch,
        };
        println!(
            "{}x{}x{}: naive {:.2} GFLOP/s, tiled {:.2} GFLOP/s, tiled/naive {:.2}x",
            shape.m,
            shape.n,
            shape.k,
            naive,
            tiled,
            tiled / naive
        );
        rows.push(row);
    }

    common::publish(&table(&adapter, &rows), "kernels-native.md");
}

struct Row {
    shape: MatmulShape,
    naive_ms: f64,
    tiled_ms: f64,
    naive: f64,
    tiled: f64,
    batch: [u32; 2],
}

fn table(adapter: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Matmul kernels on the native adapter\n");
    let _ = writeln!(out, "Adapter: {adapter}\n");
    let _ = writeln!(
        out,
        "Tiled: `{}` ({} rows × {} columns of C per workgroup). Naive: `{}` (one invocation \
         per output, global memory only; not in the catalogue). Both checked against the CPU \
         reference before timing. Median of {} timed batches per kernel, taken in {} \
         alternating rounds; dispatches only (inputs resident, warm-up excluded).\n",
        matmul::TILED.id,
        matmul::TILED.tile[1],
        matmul::TILED.tile[0],
        matmul::NAIVE.id,
        SAMPLES * ROUNDS,
        ROUNDS,
    );
    let _ = writeln!(
        out,
        "| m×n×k | naive GFLOP/s | tiled GFLOP/s | tiled/naive | naive ms/dispatch | tiled ms/dispatch | dispatches per batch (naive, tiled) |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        let _ = writeln!(
            out,
            "| {}×{}×{} | {:.2} | {:.2} | **{:.2}×** | {:.2} | {:.2} | {}, {} |",
            r.shape.m,
            r.shape.n,
            r.shape.k,
            r.naive,
            r.tiled,
            r.tiled / r.naive,
            r.naive_ms,
            r.tiled_ms,
            r.batch[0],
            r.batch[1],
        );
    }
    out
}

/// Fails the benchmark if a kernel's output is not the product.
fn check(kernel: &Kernel, shape: MatmulShape, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{}: output length", kernel.id);
    // Inputs lie in [-1, 1): an f32 dot product of length k is off by at most about k * eps.
    let tol = 4.0 * shape.k as f32 * f32::EPSILON;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{} on {}x{}x{}: element {i} is {g}, the CPU reference says {w}",
            kernel.id,
            shape.m,
            shape.n,
            shape.k
        );
    }
}
