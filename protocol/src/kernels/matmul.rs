//! f32 matrix multiplication: the tiled WGSL kernel, a naive one to measure it against, and
//! their CPU reference.

use super::Kernel;
use crate::wire::MatmulShape;

/// Tiled matmul, the kernel the relay hands out (`matmul_tiled.wgsl`).
///
/// Each workgroup of 8 x 4 invocations computes a 32 x 64 block of C (32 rows, 64 columns), and
/// each invocation an 8 x 8 block of that in registers (sixteen vec4 accumulators: rows
/// `8 ly .. 8 ly + 7`, columns `4 lx .. 4 lx + 3` and the four 32 columns on). The workgroup
/// walks along k in steps of 16, staging a 32 x 16 panel of A (transposed, four rows per vec4)
/// and a 16 x 64 panel of B in workgroup memory, 6 KB in all. An inner step reads two vec4s of A
/// and two of B from workgroup memory for 64 multiply-adds, and each value read from global
/// memory serves 64 (A) or 32 (B) multiply-adds. Panels that lie wholly inside the matrices are
/// loaded without bounds checks (one branch per panel, uniform across the workgroup); at the
/// edges out-of-range reads become zeros and out-of-range writes are skipped, so any m, n, k
/// works.
///
/// Within WebGPU's downlevel limits (32 invocations, 6 KB of workgroup memory) and short per
/// dispatch. Why this shape, from `crate/benches/kernels.rs` and `tests/bench/browser.mjs` on
/// lavapipe and SwiftShader (CPU implementations, which run workgroups on their threads): 32 x 64
/// splits the relay's 64 x 64 x 256 unit into two workgroups, so two cores (or two GPU compute
/// units) share it, where a 64 x 64 block left it to one and ran it 30-50% slower on two cores.
/// With `cargo xtask bench browser` and `cargo xtask bench kernels` it ran at 5.0-5.8x the naive
/// kernel at 64 x 64 x 256 and 6.2-6.3x at 256^3 on SwiftShader, 7.8-7.9x and 7.4-7.6x on
/// lavapipe (two runs each). Variants, each side by side with the naive kernel in one run
/// (SwiftShader: the WGSL dispatched from JS in headless Chromium, timed as `Gpu::time_matmul`
/// does; lavapipe: `Gpu::time_matmul`), tiled/naive at 64 x 64 x 256 and 256^3, ranges over 1-9
/// runs on a shared, noisy machine:
///
/// | variant | SwiftShader | lavapipe |
/// | --- | --- | --- |
/// | 64 x 32, 8 x 8 invocations, 8 x 4 each (before) | 3.1-4.2x, 3.8-4.0x | 5.4-5.6x, 6.3-6.5x |
/// | the same, the bounds check once per panel, not per slot | 3.9-4.5x, 4.3-4.6x | 5.4-5.9x, 6.4-6.5x |
/// | 32 x 64, 8 x 4 invocations, 8 x 8 each (this) | 4.9-5.4x, 6.1-6.4x | 5.7-6.2x, 7.1-7.5x |
/// | 64 x 32, 4 x 8 invocations, 8 x 8 each | 5.2-5.7x, 6.1-6.2x | 4.3-4.4x, 4.8-4.9x |
/// | 64 x 32, 8 x 4 invocations, 16 x 4 each | 5.0-5.1x, 5.6-5.9x | 5.8-6.0x, 7.0-7.1x |
/// | 32 x 32, 8 x 8 invocations, 4 x 4 each | 2.5-2.9x, 3.0-3.3x | |
/// | 32 x 32, 8 x 4 invocations, 8 x 4 each | 4.1x, 3.6x | |
///
/// Panels 32 deep were no faster on either (they halve the barriers), nor was unrolling the
/// inner loop by 2 or 4 beyond the noise; a layout with every access sequential across
/// neighbouring invocations (scalar panels, each invocation's columns 8 apart) was no faster on
/// SwiftShader and slower on lavapipe. An earlier try at 8 x 8 outputs per invocation made
/// SwiftShader's shader compiler stall for minutes; unrolling the panel loads by hand alone took
/// the kernel before's pipeline from 0.5 s to 8 s there, so they stay loops, and this kernel's
/// pipeline builds in about 0.6 s, as the one before did.
///
/// `tile` must match the WGSL's block size: `[columns, rows]`, and the dispatch is
/// `ceil(n / 64) x ceil(m / 32)` workgroups.
pub const TILED: Kernel = Kernel {
    id: "matmul-f32-tiled32x64-r8x8",
    entry_point: "main",
    wgsl: include_str!("matmul_tiled.wgsl"),
    tile: [64, 32],
};

/// Naive matmul (`matmul_naive.wgsl`): one invocation per element of C, reading its row of A and
/// column of B straight from global memory, with no reuse between invocations.
///
/// It exists only as the baseline for benchmarks (`crate/benches/kernels.rs` and the browser
/// benchmark) and is deliberately NOT in [`catalogue`](super::catalogue): the relay never hands
/// it out.
pub const NAIVE: Kernel = Kernel {
    id: "matmul-f32-naive",
    entry_point: "main",
    wgsl: include_str!("matmul_naive.wgsl"),
    tile: [16, 16],
};

/// CPU reference: C = A * B with f64 accumulation, rounded to f32.
pub fn reference(a: &[f32], b: &[f32], shape: MatmulShape) -> Vec<f32> {
    let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
    assert_eq!(a.len(), m * k, "A must be m x k");
    assert_eq!(b.len(), k * n, "B must be k x n");
    let mut c = vec![0f64; m * n];
    for i in 0..m {
        for l in 0..k {
            let x = a[i * k + l] as f64;
            let b_row = &b[l * n..(l + 1) * n];
            for (cj, bj) in c[i * n..(i + 1) * n].iter_mut().zip(b_row) {
                *cj += x * *bj as f64;
            }
        }
    }
    c.into_iter().map(|v| v as f32).collect()
}

/// How far two honest products of `a` and `b` may differ, for comparing replicas
/// ([`crate::compare`]): each element of an f32 dot product of length k, summed in any order, is
/// within (k + 2)·eps·(|A||B|)_ij of the exact value (the bound Freivalds' check uses), so two
/// honest results are within twice that. (|A||B|)_ij is bounded per row by the row's sum of
/// |a| times the largest |b|, which costs one pass over the inputs.
pub fn replica_tolerance(a: &[f32], b: &[f32], shape: MatmulShape) -> crate::compare::Tolerance {
    let (n, k) = (shape.n as usize, shape.k as usize);
    let eps = f32::EPSILON as f64 / 2.0;
    let b_max = b.iter().fold(0f64, |max, v| max.max((*v as f64).abs()));
    let rows = a
        .chunks(k.max(1))
        .map(|row| {
            let row_abs: f64 = row.iter().map(|v| (*v as f64).abs()).sum();
            // Plus a few subnormals' worth, for products that underflow.
            2.0 * (k as f64 + 2.0) * eps * row_abs * b_max + k as f64 * f32::MIN_POSITIVE as f64
        })
        .collect();
    crate::compare::Tolerance::PerRow { row_len: n, rows }
}

/// `len` reproducible pseudo-random values in [-1, 1) (SplitMix64), for demo jobs and tests.
pub fn sample_matrix(len: u32, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_matches_a_hand_computed_product() {
        // [1 2; 3 4] * [5 6; 7 8] = [19 22; 43 50]
        let c = reference(
            &[1., 2., 3., 4.],
            &[5., 6., 7., 8.],
            MatmulShape { m: 2, n: 2, k: 2 },
        );
        assert_eq!(c, vec![19., 22., 43., 50.]);
    }

    /// Two honest results summed in different orders (forwards in f32, backwards in f32) agree
    /// within the replica tolerance; a result with one element off by 0.1 (about 1% of a typical
    /// element here; the bound is the worst case of f32 rounding, so much smaller errors pass) does not.
    #[test]
    fn replicas_in_different_summation_orders_agree() {
        let shape = MatmulShape {
            m: 8,
            n: 16,
            k: 512,
        };
        let a = sample_matrix(shape.m * shape.k, 1);
        let b = sample_matrix(shape.k * shape.n, 2);
        let in_order = |reverse: bool| {
            let (n, k) = (shape.n as usize, shape.k as usize);
            let mut c = vec![0f32; shape.m as usize * n];
            for (i, ci) in c.chunks_mut(n).enumerate() {
                for (j, cij) in ci.iter_mut().enumerate() {
                    let mut ls: Vec<usize> = (0..k).collect();
                    if reverse {
                        ls.reverse();
                    }
                    *cij = ls
                        .iter()
                        .fold(0f32, |s, &l| s + a[i * k + l] * b[l * n + j]);
                }
            }
            crate::encoding::f32s_to_bytes(&c)
        };
        let (forwards, backwards) = (in_order(false), in_order(true));
        assert_ne!(forwards, backwards, "the orders round differently");
        let tolerance = replica_tolerance(&a, &b, shape);
        crate::compare::agree(&forwards, &backwards, &tolerance).unwrap();
        let mut wrong = crate::encoding::bytes_to_f32s(&forwards).unwrap();
        wrong[37] += 0.1;
        let wrong = crate::encoding::f32s_to_bytes(&wrong);
        assert!(crate::compare::agree(&forwards, &wrong, &tolerance).is_err());
    }

    #[test]
    fn sample_matrices_are_reproducible_and_bounded() {
        let x = sample_matrix(1000, 4);
        assert_eq!(x, sample_matrix(1000, 4));
        assert_ne!(x, sample_matrix(1000, 5));
        assert!(x.iter().all(|v| (-1.0..1.0).contains(v)));
    }
}
