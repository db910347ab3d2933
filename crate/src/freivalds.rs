//! Freivalds' check of a matrix product: is C = A * B, without recomputing it?
//!
//! Pick a secret random vector r (entries in [1, 2)), compute A (B r) and C r in f64, and compare
//! row by row: O(k (m + n) + m n) work instead of O(m n k). Because every entry of r is at least 1,
//! a single wrong element of C shifts its row of C r by at least its own error, so one round always
//! catches an error larger than the tolerance; several wrong elements cancel only with probability
//! zero, since r is continuous and unknown to the contributor.
//!
//! Floats differ between GPUs (summation order, fused multiply-add, flushed subnormals), so the
//! comparison allows, per row i, `(k + 2) * eps_f32 * (|A| (|B| r))_i` plus a subnormal allowance:
//! the rigorous bound on rounding error of a length-k f32 dot product in any summation order,
//! weighted by r and summed over the row. An honest result is therefore never rejected; the price is
//! that a wrong element is caught only when its error exceeds that row bound (for values in [-1, 1)
//! and k = 256, about 1e-3 relative to the row's magnitude): smaller errors are indistinguishable
//! from rounding and buy a cheater nothing, since the product must still be computed.

use crate::wire::MatmulShape;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FreivaldsError {
    #[error("{name} has {got} elements, expected {expected} for shape {m}x{n}x{k}", m = shape.m, n = shape.n, k = shape.k)]
    WrongLength {
        name: &'static str,
        got: usize,
        expected: usize,
        shape: MatmulShape,
    },
    #[error("output element {index} is not a finite number")]
    NonFinite { index: usize },
    #[error(
        "row {row} of the product is off by {deviation:e}, more than the tolerance {tolerance:e}"
    )]
    Mismatch {
        row: usize,
        deviation: f64,
        tolerance: f64,
    },
}

/// Checks that `c` (m x n, row-major) is `a` (m x k) times `b` (k x n) within float tolerance.
/// `seed` must be secret and fresh for each check: the relay draws it from its random source.
pub fn check(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    shape: MatmulShape,
    seed: [u8; 32],
) -> Result<(), FreivaldsError> {
    let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
    for (name, got, expected) in [
        ("A", a.len(), m * k),
        ("B", b.len(), k * n),
        ("C", c.len(), m * n),
    ] {
        if got != expected {
            return Err(FreivaldsError::WrongLength {
                name,
                got,
                expected,
                shape,
            });
        }
    }
    // C r first: a row sum is finite exactly when its row is (r is finite and at least 1), so
    // this pass also finds a non-finite element without a separate scan.
    let mut rng = ChaCha20Rng::from_seed(seed);
    let r: Vec<f64> = (0..n)
        .map(|_| 1.0 + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
        .collect();
    let mut cr = vec![0f64; m];
    for (i, sum) in cr.iter_mut().enumerate() {
        let row = &c[i * n..(i + 1) * n];
        *sum = dot(row, &r);
        if !sum.is_finite() {
            let column = row.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(FreivaldsError::NonFinite {
                index: i * n + column,
            });
        }
    }

    // B r, and |B| r for the tolerance.
    let mut br = vec![0f64; k];
    let mut abs_br = vec![0f64; k];
    for l in 0..k {
        (br[l], abs_br[l]) = dot_and_abs(&b[l * n..(l + 1) * n], &r);
    }

    let eps = f32::EPSILON as f64;
    let subnormals = (n * k) as f64 * f32::MIN_POSITIVE as f64 * 2.0;
    for (i, cr) in cr.into_iter().enumerate() {
        let (abr, magnitude) = dot_and_abs_weighted(&a[i * k..(i + 1) * k], &br, &abs_br);
        let deviation = (cr - abr).abs();
        let tolerance = (k + 2) as f64 * eps * magnitude + subnormals;
        if deviation > tolerance {
            return Err(FreivaldsError::Mismatch {
                row: i,
                deviation,
                tolerance,
            });
        }
    }
    Ok(())
}

/// Independent partial sums per loop: enough for the compiler to keep two f64 SIMD lanes (or
/// four) busy without waiting on each addition, since floating-point sums are not reordered
/// for it. The order of summation does not matter here: every sum is f64 over f32 inputs, far
/// inside the f32 tolerance the check allows.
const LANES: usize = 8;

/// Σ x_j r_j in f64.
fn dot(x: &[f32], r: &[f64]) -> f64 {
    let mut sums = [0f64; LANES];
    let (x_chunks, r_chunks) = (x.chunks_exact(LANES), r.chunks_exact(LANES));
    let tail: f64 = x_chunks
        .remainder()
        .iter()
        .zip(r_chunks.remainder())
        .map(|(x, r)| *x as f64 * r)
        .sum();
    for (x, r) in x_chunks.zip(r_chunks) {
        for lane in 0..LANES {
            sums[lane] += x[lane] as f64 * r[lane];
        }
    }
    sums.iter().sum::<f64>() + tail
}

/// (Σ x_j r_j, Σ |x_j| r_j) in f64.
fn dot_and_abs(x: &[f32], r: &[f64]) -> (f64, f64) {
    dot_and_abs_weighted(x, r, r)
}

/// (Σ x_j w_j, Σ |x_j| v_j) in f64.
fn dot_and_abs_weighted(x: &[f32], w: &[f64], v: &[f64]) -> (f64, f64) {
    let (mut sums, mut abs_sums) = ([0f64; LANES], [0f64; LANES]);
    let (x_chunks, w_chunks, v_chunks) = (
        x.chunks_exact(LANES),
        w.chunks_exact(LANES),
        v.chunks_exact(LANES),
    );
    let (mut tail, mut abs_tail) = (0f64, 0f64);
    for ((x, w), v) in x_chunks
        .remainder()
        .iter()
        .zip(w_chunks.remainder())
        .zip(v_chunks.remainder())
    {
        tail += *x as f64 * w;
        abs_tail += (*x as f64).abs() * v;
    }
    for ((x, w), v) in x_chunks.zip(w_chunks).zip(v_chunks) {
        for lane in 0..LANES {
            let x = x[lane] as f64;
            sums[lane] += x * w[lane];
            abs_sums[lane] += x.abs() * v[lane];
        }
    }
    (
        sums.iter().sum::<f64>() + tail,
        abs_sums.iter().sum::<f64>() + abs_tail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::matmul::{reference, sample_matrix};

    const SHAPE: MatmulShape = MatmulShape {
        m: 48,
        n: 40,
        k: 96,
    };

    fn product() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let a = sample_matrix(SHAPE.m * SHAPE.k, 1);
        let b = sample_matrix(SHAPE.k * SHAPE.n, 2);
        let c = reference(&a, &b, SHAPE);
        (a, b, c)
    }

    #[test]
    fn accepts_a_correct_product() {
        let (a, b, c) = product();
        for seed in 0..20u8 {
            assert_eq!(check(&a, &b, &c, SHAPE, [seed; 32]), Ok(()));
        }
    }

    #[test]
    fn accepts_a_product_summed_in_another_order_in_f32() {
        // What a different GPU might return: f32 accumulation, reversed order.
        let (a, b, _) = product();
        let (m, n, k) = (SHAPE.m as usize, SHAPE.n as usize, SHAPE.k as usize);
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).rev().map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        assert_eq!(check(&a, &b, &c, SHAPE, [9; 32]), Ok(()));
    }

    #[test]
    fn rejects_a_single_wrong_element() {
        let (a, b, c) = product();
        for (index, delta) in [
            (0usize, 0.05f32),
            (777, -0.1),
            (SHAPE.m as usize * SHAPE.n as usize - 1, 1.0),
        ] {
            let mut bad = c.clone();
            bad[index] += delta;
            let err = check(&a, &b, &bad, SHAPE, [3; 32]).unwrap_err();
            assert!(
                matches!(err, FreivaldsError::Mismatch { row, .. } if row == index / SHAPE.n as usize),
                "{err}"
            );
        }
    }

    #[test]
    fn rejects_nan_wrong_lengths_and_zeros() {
        let (a, b, c) = product();
        let mut nan = c.clone();
        nan[5] = f32::NAN;
        assert_eq!(
            check(&a, &b, &nan, SHAPE, [0; 32]),
            Err(FreivaldsError::NonFinite { index: 5 })
        );
        assert!(matches!(
            check(&a, &b, &c[1..], SHAPE, [0; 32]),
            Err(FreivaldsError::WrongLength { name: "C", .. })
        ));
        let zeros = vec![0f32; c.len()];
        assert!(check(&a, &b, &zeros, SHAPE, [0; 32]).is_err());

        // Infinities of both signs in one later row: found where they are.
        let mut infinite = c.clone();
        let row = 30 * SHAPE.n as usize;
        infinite[row + 7] = f32::INFINITY;
        infinite[row + 9] = f32::NEG_INFINITY;
        assert_eq!(
            check(&a, &b, &infinite, SHAPE, [0; 32]),
            Err(FreivaldsError::NonFinite { index: row + 7 })
        );
    }

    /// Sizes that are not multiples of the sums' lanes: the tails count too.
    #[test]
    fn checks_every_element_of_odd_shapes() {
        for shape in [
            MatmulShape { m: 13, n: 11, k: 7 },
            MatmulShape { m: 1, n: 1, k: 1 },
            MatmulShape { m: 5, n: 17, k: 9 },
        ] {
            let a = sample_matrix(shape.m * shape.k, 3);
            let b = sample_matrix(shape.k * shape.n, 4);
            let c = reference(&a, &b, shape);
            assert_eq!(check(&a, &b, &c, shape, [1; 32]), Ok(()));
            for index in 0..c.len() {
                let mut wrong = c.clone();
                wrong[index] += 0.5;
                assert!(
                    matches!(
                        check(&a, &b, &wrong, shape, [2; 32]),
                        Err(FreivaldsError::Mismatch { row, .. }) if row == index / shape.n as usize
                    ),
                    "element {index} of {shape:?} changed by 0.5 is caught in its row"
                );
            }
        }
    }
}
