//! Tier 2 of Freivalds' check: one row of the product recomputed exactly, and each element
//! judged against an envelope of the error honest f32 arithmetic can make (see the module doc
//! of `freivalds`). Also the f32 summation orders a GPU may use, simulated one row at a time
//! (every column of the row at once, so the inner loops run along rows of B and vectorise).

// Loops over columns index several per-column vectors at once; j reads better than zips.
#![allow(clippy::needless_range_loop)]

use super::{LAMBDA, SAFETY, UNIT_ROUNDOFF, within};

/// An element outside its envelope.
pub(super) struct Outlier {
    pub column: usize,
    pub deviation: f64,
    pub envelope: f64,
}

/// A summation order for an f32 dot product of length k.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// l = 0, 1, ..., k − 1 into one accumulator: `acc += a * b`, the product rounded first.
    Sequential,
    /// The same with a fused multiply-add: `acc = fma(a, b, acc)`.
    SequentialFma,
    /// Recursive halving: a binary tree over the products.
    Pairwise,
    /// Blocks of `depth` terms each summed sequentially from zero, the block sums then added
    /// sequentially (`pairwise: false`, split-k) or pairwise.
    Blocked { depth: usize, pairwise: bool },
    /// `lanes` accumulators, lane q summing the terms l ≡ q (mod lanes) sequentially, then
    /// combined by halving (lane q += lane q + lanes/2, ...), as SIMD or subgroup reductions do.
    Strided { lanes: usize },
}

/// The orders tier 2 simulates for a dot product of length `k` (blocked orders only where a
/// block is shorter than k: otherwise they are the sequential order).
pub fn family(k: usize) -> Vec<Order> {
    let mut orders = vec![Order::Sequential, Order::SequentialFma, Order::Pairwise];
    for depth in [16, 64, 256, 1024, 4096] {
        if depth < k {
            for pairwise in [false, true] {
                orders.push(Order::Blocked { depth, pairwise });
            }
        }
    }
    for lanes in [4, 8, 16, 32, 64] {
        if lanes < k {
            orders.push(Order::Strided { lanes });
        }
    }
    orders
}

/// Exact figures of one row of the product, per column j: the value (f64, exact to far below
/// f32 rounding), the probabilistic scale sqrt(Σ_l S_l² + Σ_l t_l²) of the sequential error
/// (exact prefix sums S_l, products t_l), and Σ_l |t_l|.
pub(super) struct Exact {
    pub value: Vec<f64>,
    pub scale: Vec<f64>,
    pub abs_sum: Vec<f64>,
}

pub(super) fn exact_row(a: &[f32], b: &[f32], n: usize) -> Exact {
    let mut value = vec![0f64; n];
    let mut squares = vec![0f64; n];
    let mut abs_sum = vec![0f64; n];
    for (l, x) in a.iter().enumerate() {
        let x = *x as f64;
        let row = &b[l * n..(l + 1) * n];
        for j in 0..n {
            let t = x * row[j] as f64;
            value[j] += t;
            squares[j] += value[j] * value[j] + t * t;
            abs_sum[j] += t.abs();
        }
    }
    Exact {
        value,
        scale: squares.into_iter().map(f64::sqrt).collect(),
        abs_sum,
    }
}

/// Checks one row: `a` (length k) times `b` (k x n) against the submitted row `c`.
pub(super) fn check_row(
    a: &[f32],
    b: &[f32],
    c: &[f32],
    n: usize,
    k: usize,
) -> Result<(), Outlier> {
    let exact = exact_row(a, b, n);
    let subnormals = 4.0 * (k + 1) as f64 * f32::MIN_POSITIVE as f64;
    let cap = (k + 2) as f64 * f32::EPSILON as f64;
    let deviation: Vec<f64> = c
        .iter()
        .zip(&exact.value)
        .map(|(c, e)| (*c as f64 - e).abs())
        .collect();
    let floor = |j: usize| LAMBDA * UNIT_ROUNDOFF * exact.scale[j];
    let rigorous = |j: usize| cap * exact.abs_sum[j];
    // Elements within the floor (and the cap) pass, and elements over the cap fail, without
    // simulating anything; the others wait for the family's worst error.
    let mut pending = Vec::new();
    for j in 0..n {
        let d = deviation[j];
        if d <= floor(j).min(rigorous(j)) + subnormals {
            continue;
        }
        if !within(d, rigorous(j) + subnormals) {
            return Err(Outlier {
                column: j,
                deviation: d,
                envelope: rigorous(j) + subnormals,
            });
        }
        pending.push(j);
    }
    if pending.is_empty() {
        return Ok(());
    }
    let mut worst = vec![0f64; n];
    for order in family(k) {
        let simulated = simulate(order, a, b, n);
        for j in 0..n {
            worst[j] = worst[j].max((simulated[j] as f64 - exact.value[j]).abs());
        }
        pending.retain(|&j| deviation[j] > SAFETY * worst[j] + subnormals);
        if pending.is_empty() {
            return Ok(());
        }
    }
    let j = pending[0];
    Err(Outlier {
        column: j,
        deviation: deviation[j],
        envelope: (SAFETY * worst[j]).max(floor(j)).min(rigorous(j)) + subnormals,
    })
}

/// One row of the product, `a` (length k) times `b` (k x n), summed in f32 in `order`.
#[doc(hidden)]
pub fn simulate(order: Order, a: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    let k = a.len();
    let row = |l: usize| &b[l * n..(l + 1) * n];
    match order {
        Order::Sequential => sequential(a, b, n, 0..k, false),
        Order::SequentialFma => sequential(a, b, n, 0..k, true),
        Order::Pairwise => {
            let mut tree = Tree::default();
            for (l, x) in a.iter().enumerate() {
                tree.push(row(l).iter().map(|y| x * y).collect());
            }
            tree.finish(n)
        }
        Order::Blocked { depth, pairwise } => {
            let mut tree = Tree::default();
            let mut total = vec![0f32; n];
            for start in (0..k).step_by(depth.max(1)) {
                let block = sequential(a, b, n, start..(start + depth).min(k), false);
                if pairwise {
                    tree.push(block);
                } else {
                    add(&mut total, &block);
                }
            }
            if pairwise { tree.finish(n) } else { total }
        }
        Order::Strided { lanes } => {
            let mut acc = vec![vec![0f32; n]; lanes];
            for (l, x) in a.iter().enumerate() {
                for (s, y) in acc[l % lanes].iter_mut().zip(row(l)) {
                    *s += x * y;
                }
            }
            let mut stride = lanes / 2;
            while stride > 0 {
                for q in 0..stride {
                    let (low, high) = acc.split_at_mut(stride);
                    add(&mut low[q], &high[q]);
                }
                stride /= 2;
            }
            acc.swap_remove(0)
        }
    }
}

/// Σ over `range` of a_l b_l·, sequentially in f32, with or without FMA.
fn sequential(
    a: &[f32],
    b: &[f32],
    n: usize,
    range: std::ops::Range<usize>,
    fma: bool,
) -> Vec<f32> {
    let mut acc = vec![0f32; n];
    for l in range {
        let x = a[l];
        let row = &b[l * n..(l + 1) * n];
        if fma {
            for (s, y) in acc.iter_mut().zip(row) {
                *s = x.mul_add(*y, *s);
            }
        } else {
            for (s, y) in acc.iter_mut().zip(row) {
                *s += x * y;
            }
        }
    }
    acc
}

fn add(acc: &mut [f32], v: &[f32]) {
    for (s, x) in acc.iter_mut().zip(v) {
        *s += x;
    }
}

/// Pairwise summation of vectors fed one at a time: a binary counter of partial sums, each
/// level holding the sum of 2^level leaves; the leftovers are combined smallest first.
#[derive(Default)]
struct Tree {
    levels: Vec<(usize, Vec<f32>)>,
}

impl Tree {
    fn push(&mut self, mut v: Vec<f32>) {
        let mut size = 1;
        while let Some((top, _)) = self.levels.last() {
            if *top != size {
                break;
            }
            let (_, mut left) = self.levels.pop().expect("a level");
            add(&mut left, &v);
            v = left;
            size *= 2;
        }
        self.levels.push((size, v));
    }

    fn finish(mut self, n: usize) -> Vec<f32> {
        let mut acc = match self.levels.pop() {
            Some((_, v)) => v,
            None => return vec![0f32; n],
        };
        while let Some((_, mut left)) = self.levels.pop() {
            add(&mut left, &acc);
            acc = left;
        }
        acc
    }
}
