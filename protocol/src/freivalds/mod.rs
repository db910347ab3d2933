//! Freivalds' check of a matrix product: is C = A * B, without recomputing it?
//!
//! # Tier 1: two random-sign vectors, a probabilistic tolerance (every result)
//!
//! Two independent secret vectors r (from the 32-byte seed, ChaCha20) with entries
//! `r_j = ±(1 + U[0, 1))`: a random sign and a continuous magnitude of at least 1. Per row i and
//! vector, in f64, the deviation `D_i = (C r)_i − (A (B r))_i`. Work: O(k (m + n) + m n), three
//! passes (C, B, A), each with four sums per element.
//!
//! - |r_j| ≥ 1: one wrong element shifts its row's D by at least its own error.
//! - Random signs: honest rounding errors e_ij enter D as a random-sign sum, so by Hoeffding
//!   |D_i| ≤ μ' · sqrt(Σ_j r_j² e_ij²) except with probability 2·exp(−μ'²/2), where a
//!   positive r would add them up (n instead of √n).
//! - Continuous magnitudes: several wrong elements cancel in D only on a set of small measure;
//!   two independent vectors square the chance that a ± pair escapes.
//!
//! The tolerance per row and vector is
//!
//! ```text
//! T_i = μ · u · sqrt( (k/2 + 1) · Σ_j r_j² c_ij²  +  Σ_l a_il² w_l ) + subnormals,
//!       u = 2⁻²⁴,  w_l = Σ_j r_j² b_lj²
//! ```
//!
//! Under the standard model the error of a sequential f32 dot product is Σ_l δ_l S_l + Σ_l ε_l t_l
//! (partial sums S_l, products t_l = a_il b_lj, independent rounding errors |δ|, |ε| ≤ u), of
//! variance at most u²/3 · (Σ_l S_l² + Σ_l t_l²); Σ_l S_l² ≈ (k/2) c² both for zero-mean data (a
//! random walk) and for drifting positive data (k/3 c² there). The first term is that, summed
//! over the row with the weights r_j²; the second is the products' rounding, and both cost
//! nothing extra: Σ r² c² is summed in the pass that forms C r, w in the pass that forms B r,
//! Σ a² w in the pass that forms A (B r). Using the submitted c is safe: inflating c by Δ raises
//! T by about μ·u·√(k/2)·|Δ|, far less than the |Δ| it adds to D. A row passes tier 1 when
//! |D_i| ≤ T_i for both vectors; non-finite output and wrong lengths are rejected as before.
//!
//! Tier 1 never rejects anything by itself: a row that fails it goes to tier 2. μ only sets how
//! often honest rows need tier 2 (its cost) and how small an error tier 1 notices.
//!
//! # Tier 2: the row recomputed, an envelope per element (rows that fail tier 1)
//!
//! 1. If the row's deviation exceeds the rigorous bound of any summation order under faithful
//!    rounding, `(k + 2)·2⁻²³·(|A| (|B| |r|))_i` plus subnormals (the bound the check used alone
//!    before), the result is rejected at once: no f32 arithmetic could have produced it.
//! 2. Otherwise the row is recomputed exactly (f64, O(n k)) and every element is judged against
//!    an envelope of honest error (`envelope.rs`):
//!    `min(γ, max(F · worst, λ · u · sqrt(Σ_l S_l² + Σ_l t_l²))) + subnormals`, where `worst` is
//!    the largest |simulated − exact| over a family of f32 summation orders a GPU may use
//!    (sequential with and without FMA, pairwise, blocked with depths 16 to 4096 combined
//!    sequentially or pairwise, strided lanes 4 to 64 combined by a tree), S_l are the exact
//!    prefix sums, and γ = (k + 2)·2⁻²³·Σ_l |t_l| is the rigorous any-order bound (no honest
//!    order exceeds it). An element outside rejects the result (row, column, deviation,
//!    envelope); the first bad row ends the check, so a cheater costs at most one row's
//!    recomputation beyond tier 1.
//!
//! # False rejection
//!
//! An honest GPU whose order is in the family reproduces one simulated value bit for bit, so
//! its elements are within `worst` ≤ the envelope: never rejected. For any other order with
//! round-to-nearest, the error is a martingale Σ δ_l X_l with increments bounded by u|X_l|, and
//! (Azuma, the argument of Higham and Mary 2019) exceeds λ·u·sqrt(Σ X_l²) with probability at
//! most 2·exp(−λ²/2): with λ = [`LAMBDA`] = 8 that is 2.5·10⁻¹⁴ per element, for orders whose
//! partial sums are no larger in square sum than the sequential prefix sums the floor uses. That
//! holds for zero-mean and drifting data in every order measured, but not for heavy-tailed data
//! summed in another order: reverse order on ± lognormal (σ = 2) data reached 17 floor units at
//! k = 1024 (`target/bench/tolerance.md`, margin table), so there the factor F = [`SAFETY`] = 4
//! over the family's worst (and tier 1, which such rows passed) carries the guarantee; orders
//! with systematic error outside the family (constant data) rely on F too. Measured:
//! `cargo xtask bench verification` (`protocol/benches/tolerance.rs`) ran nine orders on five kinds
//! of data, 1.3·10⁷ element trials, and rejected none. The relay's tiled kernel keeps one
//! accumulator per element along k, so it is the sequential order (with FMA where the driver
//! contracts); it was not run on lavapipe in the study. Not covered: GPUs that round by
//! truncation (systematic errors growing like k, within γ only for small k) and GPUs that flush
//! subnormal *inputs* whose partner is huge.
//!
//! # What it catches
//!
//! For data of one scale, tier 1 notices a row whose errors have norm above about
//! `μ·u·sqrt(k/2)·‖c_i‖` (the deviation is a random-sign sum, so a little above that only most
//! of the time, and two vectors and every row of the tile must all miss): at k = 16384 that is
//! 2·10⁻⁵ of the row's norm, so fp16 or bf16 inputs or accumulation, 1% of multiply-adds skipped
//! and fp8 inputs are caught, and one element off by 10⁻³ of its row's RMS while n·k stays below
//! about 1.5·10⁷ (an 8 × 8 × 16384 tile, the relay's 64 × 64 × 256 unit).

mod envelope;
#[doc(hidden)]
pub mod study;

use crate::wire::MatmulShape;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// u: the unit roundoff of f32 (round to nearest), 2⁻²⁴.
pub const UNIT_ROUNDOFF: f64 = f32::EPSILON as f64 / 2.0;
/// Tier 1's tolerance in units of u·sqrt(...); see the module doc and `protocol/benches/tolerance.rs`.
pub const MU: f64 = 4.0;
/// Tier 2's probabilistic floor: λ·u·sqrt(Σ S² + Σ t²) per element.
pub const LAMBDA: f64 = 8.0;
/// Tier 2's factor over the largest error of the simulated summation orders.
pub const SAFETY: f64 = 4.0;

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
        "row {row} of the product is off by {deviation:e}, more than any summation order allows ({tolerance:e})"
    )]
    Mismatch {
        row: usize,
        deviation: f64,
        tolerance: f64,
    },
    #[error(
        "element ({row}, {column}) of the product is off by {deviation:e}, outside its honest rounding envelope {envelope:e}"
    )]
    Element {
        row: usize,
        column: usize,
        deviation: f64,
        envelope: f64,
    },
}

impl FreivaldsError {
    /// The row a wrong product was caught in.
    pub fn row(&self) -> Option<usize> {
        match self {
            FreivaldsError::Mismatch { row, .. } | FreivaldsError::Element { row, .. } => {
                Some(*row)
            }
            _ => None,
        }
    }
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
    check_counting(a, b, c, shape, seed, &mut Tier2Rows::default())
}

/// Rows that went to tier 2 during a check (for the study and tests).
#[doc(hidden)]
#[derive(Default, Debug, Clone, Copy)]
pub struct Tier2Rows {
    pub rows: u64,
}

/// [`check`], counting the rows that needed tier 2 into `tier2`.
#[doc(hidden)]
pub fn check_counting(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    shape: MatmulShape,
    seed: [u8; 32],
    tier2: &mut Tier2Rows,
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
    let probes = probe_vectors(seed, n);

    // C r and Σ r² c², per row and vector. A row sum is finite exactly when its row is (r is
    // finite, |r| ≥ 1, and f32 values times 2 summed in f64 cannot overflow), so this pass also
    // finds a non-finite element without a separate scan.
    let mut c_sums = Vec::with_capacity(m);
    for i in 0..m {
        let row = &c[i * n..(i + 1) * n];
        let sums = probe(row, &probes);
        if !sums[0].is_finite() {
            let column = row.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(FreivaldsError::NonFinite {
                index: i * n + column,
            });
        }
        c_sums.push(sums);
    }

    // B r and w = Σ r² b², per row of B and vector: the weights of the A pass.
    let mut weights = Probes(Default::default());
    for l in 0..k {
        let sums = probe(&b[l * n..(l + 1) * n], &probes);
        for (w, s) in weights.0.iter_mut().zip(sums) {
            w.push(s);
        }
    }

    let subnormals = 4.0 * (n * (k + 1)) as f64 * f32::MIN_POSITIVE as f64;
    let spread = k as f64 / 2.0 + 1.0;
    let mut rigorous = None;
    for (i, c_sum) in c_sums.into_iter().enumerate() {
        let a_row = &a[i * k..(i + 1) * k];
        let a_sum = probe(a_row, &weights);
        let deviations = [(c_sum[0] - a_sum[0]).abs(), (c_sum[1] - a_sum[1]).abs()];
        let passes = (0..2).all(|v| {
            let tolerance =
                MU * UNIT_ROUNDOFF * (spread * c_sum[2 + v] + a_sum[2 + v]).sqrt() + subnormals;
            deviations[v] <= tolerance
        });
        if passes {
            continue;
        }

        // Tier 2. First the rigorous bound, |A| (|B| |r|), with |B| |r| computed once.
        tier2.rows += 1;
        let abs_b_r = rigorous.get_or_insert_with(|| {
            (0..k)
                .map(|l| {
                    let row = &b[l * n..(l + 1) * n];
                    let mut sums = [0f64; 2];
                    for (j, x) in row.iter().enumerate() {
                        let x = (*x as f64).abs();
                        sums[0] += x * probes.0[0][j].abs();
                        sums[1] += x * probes.0[1][j].abs();
                    }
                    sums
                })
                .collect::<Vec<_>>()
        });
        let per_magnitude = (k + 2) as f64 * f32::EPSILON as f64;
        for (v, deviation) in deviations.into_iter().enumerate() {
            let magnitude: f64 = a_row
                .iter()
                .zip(abs_b_r.iter())
                .map(|(x, w)| (*x as f64).abs() * w[v])
                .sum();
            let tolerance = per_magnitude * magnitude + subnormals;
            if !within(deviation, tolerance) {
                return Err(FreivaldsError::Mismatch {
                    row: i,
                    deviation,
                    tolerance,
                });
            }
        }
        envelope::check_row(a_row, b, &c[i * n..(i + 1) * n], n, k).map_err(|outlier| {
            FreivaldsError::Element {
                row: i,
                column: outlier.column,
                deviation: outlier.deviation,
                envelope: outlier.envelope,
            }
        })?;
    }
    Ok(())
}

/// Whether `deviation` is at most `tolerance`; false where either is NaN (inputs with NaN: the
/// product is not an f32 computation's).
fn within(deviation: f64, tolerance: f64) -> bool {
    matches!(
        deviation.partial_cmp(&tolerance),
        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
    )
}

/// Four weight vectors over the columns of a row: the probes `[r1, r2, r1², r2²]`, or for the
/// A pass `[B r1, B r2, w1, w2]`.
struct Probes([Vec<f64>; 4]);

/// Two independent secret vectors with entries ±(1 + U[0, 1)), from `seed`, and their squares.
fn probe_vectors(seed: [u8; 32], n: usize) -> Probes {
    let mut rng = ChaCha20Rng::from_seed(seed);
    let mut entry = || {
        let bits = rng.next_u64();
        let magnitude = 1.0 + (bits >> 11) as f64 / (1u64 << 53) as f64;
        if bits & 1 == 1 { -magnitude } else { magnitude }
    };
    let mut p: [Vec<f64>; 4] = Default::default();
    for _ in 0..n {
        let (r1, r2) = (entry(), entry());
        p[0].push(r1);
        p[1].push(r2);
        p[2].push(r1 * r1);
        p[3].push(r2 * r2);
    }
    Probes(p)
}

/// `[Σ x_j p[0]_j, Σ x_j p[1]_j, Σ x_j² p[2]_j, Σ x_j² p[3]_j]` in f64, as four sums over the
/// row (it stays in L1 between them).
///
/// On x86-64 with AVX2 (every server CPU since about 2013) the loops are compiled a second time
/// for 256-bit registers and chosen at run time: at 1024³ the check took 1.6 ms there against
/// 2.5 ms with the baseline's SSE2.
fn probe(x: &[f32], p: &Probes) -> [f64; 4] {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { probe_avx2(x, p) };
    }
    probe_portable(x, p)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn probe_avx2(x: &[f32], p: &Probes) -> [f64; 4] {
    probe_portable(x, p)
}

#[inline(always)]
fn probe_portable(x: &[f32], p: &Probes) -> [f64; 4] {
    let [p0, p1, p2, p3] = &p.0;
    [
        lane_sum(x, p0, |v| v),
        lane_sum(x, p1, |v| v),
        lane_sum(x, p2, |v| v * v),
        lane_sum(x, p3, |v| v * v),
    ]
}

/// Independent partial sums per loop: enough for the compiler to keep SIMD lanes busy without
/// waiting on each addition, since floating-point sums are not reordered for it. One sum per
/// loop: the vectoriser turns that into whole registers, where four sums interleaved per
/// element defeated it (six times slower). The order of summation does not matter here: every
/// sum is f64 over f32 inputs, far inside the f32 tolerance the check allows.
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
mod tests;
