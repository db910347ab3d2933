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
//! weighted by r and summed over the row. That magnitude would cost two more passes over the
//! inputs; cheaper lower bounds of it settle almost every row (see `RowBounds`), so an honest
//! result costs three passes: C r, B r and A (B r). An honest result is therefore never rejected; the price is
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
    let r = random_vector(seed, n);
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

    // B r, for A (B r).
    let br: Vec<f64> = (0..k).map(|l| dot(&b[l * n..(l + 1) * n], &r)).collect();

    let mut bounds = RowBounds::new(Tolerance::new(k, n), &br, b, &r);
    for (i, cr) in cr.into_iter().enumerate() {
        let row = &a[i * k..(i + 1) * k];
        let abr = dot(row, &br);
        let deviation = (cr - abr).abs();
        if let Some(tolerance) = bounds.exceeded(deviation, abr, row) {
            return Err(FreivaldsError::Mismatch {
                row: i,
                deviation,
                tolerance,
            });
        }
    }
    Ok(())
}

/// `n` secret random entries in [1, 2), from `seed`.
fn random_vector(seed: [u8; 32], n: usize) -> Vec<f64> {
    let mut rng = ChaCha20Rng::from_seed(seed);
    (0..n)
        .map(|_| 1.0 + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
        .collect()
}

/// The tolerance of a row, from its magnitude (|A| (|B| r))_i: the rounding bound of f32 dot
/// products of length k, plus an allowance for products that underflow to subnormals.
struct Tolerance {
    per_magnitude: f64,
    subnormals: f64,
}

impl Tolerance {
    fn new(k: usize, n: usize) -> Self {
        Tolerance {
            per_magnitude: (k + 2) as f64 * f32::EPSILON as f64,
            subnormals: (n * k) as f64 * f32::MIN_POSITIVE as f64 * 2.0,
        }
    }

    fn of(&self, magnitude: f64) -> f64 {
        self.per_magnitude * magnitude + self.subnormals
    }
}

/// Decides whether a row's deviation exceeds its tolerance, computing the row's magnitude
/// (|A| (|B| r))_i only when it must. The magnitude costs two more passes over the inputs
/// (|B| r, then row i of |A| times that), and most rows never need it, because for r >= 1
///
/// ```text
/// |(A (B r))_i|  <=  (|A| |B r|)_i  <=  (|A| (|B| r))_i        (triangle inequality)
/// ```
///
/// so a deviation within the tolerance of either lower bound is within the row's tolerance.
/// The first bound is free (A (B r) is computed anyway); the second costs one pass over the
/// row, for the few rows where A (B r) happens to be near zero; the exact magnitude is computed
/// only when a row's deviation exceeds both, that is, almost only for a wrong result, and |B| r
/// the first time a row needs it. The verdict is the one the exact magnitude gives for every
/// row. All three are f64 sums of f32 inputs, each within about k·2⁻⁵³ of its exact value
/// relative, far inside the f32 rounding the tolerance allows.
struct RowBounds<'a> {
    tolerance: Tolerance,
    br: &'a [f64],
    b: &'a [f32],
    r: &'a [f64],
    /// |B r|, computed on first use.
    abs_br: Option<Vec<f64>>,
    /// |B| r, computed on first use.
    abs_b_r: Option<Vec<f64>>,
}

impl<'a> RowBounds<'a> {
    fn new(tolerance: Tolerance, br: &'a [f64], b: &'a [f32], r: &'a [f64]) -> Self {
        RowBounds {
            tolerance,
            br,
            b,
            r,
            abs_br: None,
            abs_b_r: None,
        }
    }

    /// The row's tolerance if `deviation` exceeds it, for the row `a_row` of A whose product
    /// with B r is `abr`; `None` if the row is within its tolerance.
    fn exceeded(&mut self, deviation: f64, abr: f64, a_row: &[f32]) -> Option<f64> {
        let tolerance = &self.tolerance;
        if deviation <= tolerance.of(abr.abs()) {
            return None;
        }
        let br = self.br;
        let abs_br = self
            .abs_br
            .get_or_insert_with(|| br.iter().map(|v| v.abs()).collect());
        if deviation <= tolerance.of(dot_abs(a_row, abs_br)) {
            return None;
        }
        let (b, r) = (self.b, self.r);
        let abs_b_r = self.abs_b_r.get_or_insert_with(|| {
            let n = r.len();
            (0..a_row.len())
                .map(|l| dot_abs(&b[l * n..(l + 1) * n], r))
                .collect()
        });
        let tolerance = tolerance.of(dot_abs(a_row, abs_b_r));
        (deviation > tolerance).then_some(tolerance)
    }
}

/// Σ x_j w_j in f64.
fn dot(x: &[f32], w: &[f64]) -> f64 {
    lane_sum(x, w, |x| x)
}

/// Σ |x_j| w_j in f64.
fn dot_abs(x: &[f32], w: &[f64]) -> f64 {
    lane_sum(x, w, f64::abs)
}

/// Independent partial sums per loop: enough for the compiler to keep two f64 SIMD lanes (or
/// four) busy without waiting on each addition, since floating-point sums are not reordered
/// for it. The order of summation does not matter here: every sum is f64 over f32 inputs, far
/// inside the f32 tolerance the check allows.
const LANES: usize = 8;

/// Σ f(x_j) w_j in f64, in [`LANES`] partial sums.
#[inline(always)]
fn lane_sum(x: &[f32], w: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let mut sums = [0f64; LANES];
    let (x_chunks, w_chunks) = (x.chunks_exact(LANES), w.chunks_exact(LANES));
    let tail: f64 = x_chunks
        .remainder()
        .iter()
        .zip(w_chunks.remainder())
        .map(|(x, w)| f(*x as f64) * w)
        .sum();
    for (x, w) in x_chunks.zip(w_chunks) {
        for lane in 0..LANES {
            sums[lane] += f(x[lane] as f64) * w[lane];
        }
    }
    sums.iter().sum::<f64>() + tail
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

    /// A row's three magnitudes computed plainly, as the check's doc states them:
    /// (|A (B r)|, |A| |B r|, |A| (|B| r)), and its deviation C r - A (B r).
    fn row_figures(a: &[f32], b: &[f32], c: &[f32], r: &[f64], i: usize) -> ([f64; 3], f64) {
        let (n, k) = (SHAPE.n as usize, SHAPE.k as usize);
        let b_r = |l: usize, abs: bool| -> f64 {
            (0..n)
                .map(|j| {
                    let v = b[l * n + j] as f64;
                    (if abs { v.abs() } else { v }) * r[j]
                })
                .sum()
        };
        let a_il = |l: usize| a[i * k + l] as f64;
        let abr: f64 = (0..k).map(|l| a_il(l) * b_r(l, false)).sum();
        let abs_br: f64 = (0..k).map(|l| a_il(l).abs() * b_r(l, false).abs()).sum();
        let abs_b_r: f64 = (0..k).map(|l| a_il(l).abs() * b_r(l, true)).sum();
        let cr: f64 = (0..n).map(|j| c[i * n + j] as f64 * r[j]).sum();
        ([abr.abs(), abs_br, abs_b_r], cr - abr)
    }

    /// Deviations placed below each lower bound, between the bounds, and above the exact
    /// tolerance: the check accepts exactly those within the exact magnitude's tolerance, so
    /// the cheap bounds never reject an honest row nor accept a wrong one.
    #[test]
    fn verdicts_are_those_of_the_exact_magnitude() {
        let (a, b, c) = product();
        let n = SHAPE.n as usize;
        let seed = [7; 32];
        let r = random_vector(seed, n);
        let tolerance = Tolerance::new(SHAPE.k as usize, n);
        let mut landed = [0usize; 4];
        for i in [0usize, 11, 47] {
            let ([lb1, lb2, exact], _) = row_figures(&a, &b, &c, &r, i);
            let [t1, t2, t3] = [lb1, lb2, exact].map(|m| tolerance.of(m));
            assert!(
                t1 <= t2 && t2 <= t3,
                "the bounds are ordered: {t1} {t2} {t3}"
            );
            for (target, j) in [
                (t1 * 0.5, 3),
                ((t1 + t2) / 2.0, 5),
                ((t2 + t3) / 2.0, 8),
                (t3 * 1.5, 13),
            ] {
                // Set C r - A (B r) to `target` through one element of the row.
                let (_, before) = row_figures(&a, &b, &c, &r, i);
                let mut moved = c.clone();
                moved[i * n + j] += ((target - before) / r[j]) as f32;
                let (_, deviation) = row_figures(&a, &b, &moved, &r, i);
                let deviation = deviation.abs();
                let interval = [t1, t2, t3].iter().filter(|t| deviation > **t).count();
                landed[interval] += 1;
                let verdict = check(&a, &b, &moved, SHAPE, seed);
                if deviation > t3 {
                    assert!(
                        matches!(verdict, Err(FreivaldsError::Mismatch { row, .. }) if row == i),
                        "row {i}: deviation {deviation:e} over {t3:e} must be caught: {verdict:?}"
                    );
                } else {
                    assert_eq!(
                        verdict,
                        Ok(()),
                        "row {i}: deviation {deviation:e} within {t3:e}"
                    );
                }
            }
        }
        assert_eq!(landed, [3, 3, 3, 3], "each interval tried in each row");
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
