//! Freivalds' check against recomputing the product on the CPU, which is what a relay would do
//! without it.
//!
//! Two recomputations: `glowworm_protocol::kernels::matmul::reference`, the crate's own CPU reference
//! (f64 accumulation, i-l-j loop order so the inner loop vectorises, one thread), and a
//! straightforward f32 triple loop (i-j-l, one dot product per element). Check and
//! recomputations are timed side by side in alternating rounds, the check several times per
//! round with a fresh seed each time (every one must accept); figures are medians. At n = 2048
//! the reference runs once (it is the computation of C itself) and the triple loop is not run:
//! its time is extrapolated from n = 1024 by n³. Prints a Markdown table and writes it to
//! `target/bench/freivalds.md`.
//!
//! Run: `cargo xtask bench freivalds` (or `cargo bench -p glowworm-protocol --bench freivalds`).

mod common;

use glowworm_protocol::freivalds;
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::wire::MatmulShape;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

/// At n = 1024 a check may cost at most this share of a recomputation.
const TARGET_PERCENT: f64 = 1.0;

/// The straightforward f32 triple loop: one dot product per element of C, accumulated in f32.
fn triple_loop(a: &[f32], b: &[f32], shape: MatmulShape) -> Vec<f32> {
    let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f32;
            for l in 0..k {
                acc += a[i * k + l] * b[l * n + j];
            }
            c[i * n + j] = acc;
        }
    }
    c
}

struct Case {
    label: &'static str,
    shape: MatmulShape,
    /// Rounds of (recompute once, check `checks_per_round` times). The recomputation that
    /// produces C counts as the first round's.
    rounds: u32,
    checks_per_round: u32,
    /// Whether the f32 triple loop runs (else it is extrapolated from the case before, by n³).
    triple_loop: bool,
}

const fn square(n: u32) -> MatmulShape {
    MatmulShape { m: n, n, k: n }
}

const CASES: [Case; 5] = [
    Case {
        label: "64×64×256 (the relay's unit)",
        shape: MatmulShape {
            m: 64,
            n: 64,
            k: 256,
        },
        rounds: 9,
        checks_per_round: 9,
        triple_loop: true,
    },
    Case {
        label: "256",
        shape: square(256),
        rounds: 7,
        checks_per_round: 7,
        triple_loop: true,
    },
    Case {
        label: "512",
        shape: square(512),
        rounds: 5,
        checks_per_round: 5,
        triple_loop: true,
    },
    Case {
        label: "1024",
        shape: square(1024),
        rounds: 3,
        checks_per_round: 5,
        triple_loop: true,
    },
    Case {
        label: "2048",
        shape: square(2048),
        rounds: 1,
        checks_per_round: 5,
        triple_loop: false,
    },
];

struct Row {
    label: &'static str,
    check_ms: f64,
    recompute_ms: f64,
    /// Measured, or extrapolated (false) from the row before by n³.
    triple_ms: (f64, bool),
    checks: usize,
    recomputes: usize,
}

fn main() {
    let mut rows = Vec::new();
    let mut seed = 0u8;
    for case in &CASES {
        let shape = case.shape;
        let a = matmul::sample_matrix(shape.m * shape.k, 1);
        let b = matmul::sample_matrix(shape.k * shape.n, 2);

        let mut recompute_ms = Vec::new();
        let mut triple_ms = Vec::new();
        let mut check_ms = Vec::new();
        let started = Instant::now();
        let c = matmul::reference(&a, &b, shape);
        recompute_ms.push(ms_since(started));
        for round in 0..case.rounds {
            if round > 0 {
                let started = Instant::now();
                black_box(matmul::reference(black_box(&a), black_box(&b), shape));
                recompute_ms.push(ms_since(started));
            }
            if case.triple_loop {
                let started = Instant::now();
                let t = black_box(triple_loop(black_box(&a), black_box(&b), shape));
                triple_ms.push(ms_since(started));
                if round == 0 {
                    // The loop computes the product too (to f32 rounding).
                    assert_eq!(freivalds::check(&a, &b, &t, shape, [0xA5; 32]), Ok(()));
                }
            }
            for _ in 0..case.checks_per_round {
                seed = seed.wrapping_add(1);
                let started = Instant::now();
                let verdict = freivalds::check(black_box(&a), black_box(&b), &c, shape, [seed; 32]);
                check_ms.push(ms_since(started));
                assert_eq!(verdict, Ok(()), "the check must accept the true product");
            }
        }
        let triple_ms = if case.triple_loop {
            (common::median(&mut triple_ms), true)
        } else {
            let before: &Row = rows.last().expect("a measured case before");
            let scale = |s: MatmulShape| s.m as f64 * s.n as f64 * s.k as f64;
            let before_shape = CASES[rows.len() - 1].shape;
            (
                before.triple_ms.0 * scale(shape) / scale(before_shape),
                false,
            )
        };
        let row = Row {
            label: case.label,
            check_ms: common::median(&mut check_ms),
            recompute_ms: common::median(&mut recompute_ms),
            triple_ms,
            checks: check_ms.len(),
            recomputes: recompute_ms.len(),
        };
        println!(
            "{}: check {:.3} ms; reference {:.1} ms ({:.3}%); f32 triple loop {:.1} ms{} ({:.3}%)",
            row.label,
            row.check_ms,
            row.recompute_ms,
            100.0 * row.check_ms / row.recompute_ms,
            row.triple_ms.0,
            if row.triple_ms.1 { "" } else { " extrapolated" },
            100.0 * row.check_ms / row.triple_ms.0,
        );
        rows.push(row);
    }

    common::publish(&table(&rows), "freivalds.md");
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Freivalds' check against recomputing the product\n");
    let _ = writeln!(
        out,
        "Check: `glowworm_protocol::freivalds::check` (two secret random-sign vectors, f64; tier 1 only, as for an honest result). Recomputations: \
         `glowworm_protocol::kernels::matmul::reference` (f64 accumulation, i-l-j loop order, vectorised, \
         one thread) and a straightforward f32 triple loop (i-j-l). All on the CPU, release build, \
         side by side in alternating rounds; medians. Square n×n×n unless stated. At n = 2048 \
         the reference is measured once (the computation of C itself) and the triple loop is \
         extrapolated from n = 1024 by n³ (marked *). Target: a check costs at most \
         {TARGET_PERCENT}% of a recomputation at n = 1024.\n"
    );
    let _ = writeln!(
        out,
        "| n | check (ms) | reference (ms) | check / reference | f32 triple loop (ms) | check / triple loop | samples (check, reference) |"
    );
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        let of_reference = 100.0 * r.check_ms / r.recompute_ms;
        let of_triple = 100.0 * r.check_ms / r.triple_ms.0;
        let verdict = |percent: f64| match (r.label, percent <= TARGET_PERCENT) {
            ("1024", true) => " (target met)",
            ("1024", false) => " (**target missed**)",
            _ => "",
        };
        let _ = writeln!(
            out,
            "| {} | {:.3} | {:.1} | **{:.2}%**{} | {:.1}{} | **{:.2}%**{} | {}, {} |",
            r.label,
            r.check_ms,
            r.recompute_ms,
            of_reference,
            verdict(of_reference),
            r.triple_ms.0,
            if r.triple_ms.1 { "" } else { "*" },
            of_triple,
            verdict(of_triple),
            r.checks,
            r.recomputes
        );
    }
    out
}

fn ms_since(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}
