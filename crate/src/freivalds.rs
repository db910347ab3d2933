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
    if let Some(index) = c.iter().position(|v| !v.is_finite()) {
        return Err(FreivaldsError::NonFinite { index });
    }

    let mut rng = ChaCha20Rng::from_seed(seed);
    // Entries in [1, 2): 52 random mantissa bits.
    let r: Vec<f64> = (0..n)
        .map(|_| 1.0 + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
        .collect();

    // y = B r and |B| r (k entries).
    let mut br = vec![0f64; k];
    let mut abs_br = vec![0f64; k];
    for l in 0..k {
        let row = &b[l * n..(l + 1) * n];
        let (mut s, mut sa) = (0f64, 0f64);
        for (x, rj) in row.iter().zip(&r) {
            s += *x as f64 * rj;
            sa += (*x as f64).abs() * rj;
        }
        br[l] = s;
        abs_br[l] = sa;
    }

    let eps = f32::EPSILON as f64;
    for i in 0..m {
        let a_row = &a[i * k..(i + 1) * k];
        let (mut abr, mut magnitude) = (0f64, 0f64);
        for l in 0..k {
            abr += a_row[l] as f64 * br[l];
            magnitude += (a_row[l] as f64).abs() * abs_br[l];
        }
        let cr: f64 = c[i * n..(i + 1) * n]
            .iter()
            .zip(&r)
            .map(|(x, rj)| *x as f64 * rj)
            .sum();
        let deviation = (cr - abr).abs();
        let subnormals = (n * k) as f64 * f32::MIN_POSITIVE as f64 * 2.0;
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
    }
}
