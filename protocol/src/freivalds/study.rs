//! The study behind Freivalds' tolerances, shared by the check's tests and
//! `protocol/benches/tolerance.rs`: kinds of data, honest summation orders (those tier 2 simulates
//! and some it does not), the cheats the check must catch, and the residual that compares them.
//! Not part of the relay's API.

use super::UNIT_ROUNDOFF;
pub use super::envelope::{Order, family, simulate};
use crate::wire::MatmulShape;

/// SplitMix64: small, reproducible, good enough for test data.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (1.0 - self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// 32 bytes for a check's seed.
    pub fn seed(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        for chunk in s.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        s
    }
}

/// Kinds of input data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// Uniform in [−1, 1): zero mean, errors a random walk.
    Uniform,
    /// Uniform in [0, 1): partial sums drift, c grows like k.
    Positive,
    /// Standard normal.
    Normal,
    /// Every entry 0.1 (rounded to f32): the rounding errors are systematic, not random.
    Constant,
    /// Random sign times exp(2·N(0, 1)): scales spread over about five decades.
    LogNormal,
}

impl Data {
    pub const ALL: [Data; 5] = [
        Data::Uniform,
        Data::Positive,
        Data::Normal,
        Data::Constant,
        Data::LogNormal,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Data::Uniform => "uniform[-1,1)",
            Data::Positive => "uniform[0,1)",
            Data::Normal => "normal",
            Data::Constant => "constant 0.1",
            Data::LogNormal => "±lognormal(σ=2)",
        }
    }

    pub fn matrix(self, len: usize, rng: &mut Rng) -> Vec<f32> {
        (0..len)
            .map(|_| match self {
                Data::Uniform => (rng.unit() * 2.0 - 1.0) as f32,
                Data::Positive => rng.unit() as f32,
                Data::Normal => rng.normal() as f32,
                Data::Constant => 0.1,
                Data::LogNormal => {
                    let v = (2.0 * rng.normal()).exp() as f32;
                    if rng.next_u64() & 1 == 1 { -v } else { v }
                }
            })
            .collect()
    }
}

/// An honest way to compute the product: the simulated family, and orders outside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Honest {
    /// One of the orders tier 2 simulates.
    Family(Order),
    /// Sequential from l = k − 1 down to 0.
    Reverse,
    /// Kahan's compensated summation, in f32.
    Kahan,
    /// A fresh random permutation of the terms for every element, summed sequentially.
    Random,
}

impl Honest {
    pub fn label(self) -> String {
        match self {
            Honest::Family(Order::Sequential) => "sequential".into(),
            Honest::Family(Order::SequentialFma) => "sequential, FMA".into(),
            Honest::Family(Order::Pairwise) => "pairwise".into(),
            Honest::Family(Order::Blocked { depth, pairwise }) => format!(
                "blocked {depth}, {}",
                if pairwise { "pairwise" } else { "sequential" }
            ),
            Honest::Family(Order::Strided { lanes }) => format!("{lanes} strided lanes"),
            Honest::Reverse => "reverse".into(),
            Honest::Kahan => "Kahan".into(),
            Honest::Random => "random order (not simulated)".into(),
        }
    }

    /// The product in this order.
    pub fn product(self, a: &[f32], b: &[f32], shape: MatmulShape, rng: &mut Rng) -> Vec<f32> {
        let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
        let mut c = Vec::with_capacity(m * n);
        for i in 0..m {
            let a_row = &a[i * k..(i + 1) * k];
            match self {
                Honest::Family(order) => c.extend(simulate(order, a_row, b, n)),
                _ => {
                    let mut perm: Vec<usize> = (0..k).collect();
                    for j in 0..n {
                        let term = |l: usize| a_row[l] * b[l * n + j];
                        c.push(match self {
                            Honest::Reverse => (0..k).rev().fold(0f32, |s, l| s + term(l)),
                            Honest::Kahan => {
                                let (mut sum, mut carry) = (0f32, 0f32);
                                for l in 0..k {
                                    let y = term(l) - carry;
                                    let t = sum + y;
                                    carry = (t - sum) - y;
                                    sum = t;
                                }
                                sum
                            }
                            _ => {
                                for x in (1..k).rev() {
                                    perm.swap(x, rng.below(x + 1));
                                }
                                perm.iter().fold(0f32, |s, &l| s + term(l))
                            }
                        });
                    }
                }
            }
        }
        c
    }
}

/// The honest orders of the study: the simulated family's kinds and the ones outside it.
pub fn honest_orders() -> Vec<Honest> {
    vec![
        Honest::Family(Order::Sequential),
        Honest::Family(Order::SequentialFma),
        Honest::Reverse,
        Honest::Family(Order::Pairwise),
        Honest::Family(Order::Blocked {
            depth: 16,
            pairwise: false,
        }),
        Honest::Family(Order::Blocked {
            depth: 256,
            pairwise: true,
        }),
        Honest::Family(Order::Strided { lanes: 32 }),
        Honest::Kahan,
        Honest::Random,
    ]
}

/// Number formats a cheater might compute in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// bfloat16: 8 significant bits, f32's exponent range.
    Bf16,
    /// IEEE half: 11 significant bits, largest 65504, subnormals below 2⁻¹⁴.
    Fp16,
    /// fp8 E4M3: 4 significant bits, largest 448, subnormals below 2⁻⁶.
    Fp8E4M3,
    /// 3 mantissa bits (4 significant), f32's range.
    Mantissa3,
    /// The nearest power of two (1 significant bit).
    PowerOfTwo,
}

impl Format {
    /// `x` rounded to this format (to nearest, ties to even; overflow saturates).
    pub fn round(self, x: f32) -> f32 {
        let (bits, min_exp, max) = match self {
            Format::Bf16 => (8, -126, f32::MAX as f64),
            Format::Fp16 => (11, -14, 65504.0),
            Format::Fp8E4M3 => (4, -6, 448.0),
            Format::Mantissa3 => (4, -126, f32::MAX as f64),
            Format::PowerOfTwo => (1, -126, f32::MAX as f64),
        };
        let x = x as f64;
        if x == 0.0 || !x.is_finite() {
            return x as f32;
        }
        let exp = (x.abs().log2().floor() as i32).max(min_exp);
        let spacing = 2f64.powi(exp - (bits - 1));
        let r = (x / spacing).round_ties_even() * spacing;
        r.clamp(-max, max) as f32
    }
}

/// Ways to return a wrong product cheaply.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cheat {
    /// 1% of the tile's m·n·k multiply-adds left out, at random (at least one).
    SkipMacs,
    /// Only the first ⌊7k/8⌋ terms of each dot product (at least one left out).
    SevenEighths,
    /// Inputs rounded to the format, products summed sequentially in f32.
    Inputs(Format),
    /// Products in f32, the accumulator rounded to the format after every addition.
    Accumulate(Format),
    /// The true product (sequential f32), one random element moved by this share of the RMS of
    /// its row's correct values.
    OneElement(f64),
}

impl Cheat {
    pub const ALL: [Cheat; 9] = [
        Cheat::SkipMacs,
        Cheat::SevenEighths,
        Cheat::Inputs(Format::Bf16),
        Cheat::Inputs(Format::Fp16),
        Cheat::Inputs(Format::Fp8E4M3),
        Cheat::Inputs(Format::Mantissa3),
        Cheat::Inputs(Format::PowerOfTwo),
        Cheat::Accumulate(Format::Bf16),
        Cheat::Accumulate(Format::Fp16),
    ];

    pub fn label(self) -> String {
        match self {
            Cheat::SkipMacs => "1% of multiply-adds skipped".into(),
            Cheat::SevenEighths => "7/8 of each dot product".into(),
            Cheat::Inputs(f) => format!("{f:?} inputs"),
            Cheat::Accumulate(f) => format!("{f:?} accumulation"),
            Cheat::OneElement(share) => format!("one element off by {share:e} of its row's RMS"),
        }
    }

    /// The wrong product.
    pub fn product(self, a: &[f32], b: &[f32], shape: MatmulShape, rng: &mut Rng) -> Vec<f32> {
        let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
        let sequential = |a: &[f32], b: &[f32], skip: &dyn Fn(usize, usize, usize) -> bool| {
            let mut c = vec![0f32; m * n];
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0f32;
                    for l in 0..k {
                        if !skip(i, j, l) {
                            s += a[i * k + l] * b[l * n + j];
                        }
                    }
                    c[i * n + j] = s;
                }
            }
            c
        };
        match self {
            Cheat::SkipMacs => {
                let count = ((m * n * k) as f64 * 0.01).round().max(1.0) as usize;
                let mut skipped = std::collections::HashSet::new();
                while skipped.len() < count {
                    skipped.insert((rng.below(m), rng.below(n), rng.below(k)));
                }
                sequential(a, b, &|i, j, l| skipped.contains(&(i, j, l)))
            }
            Cheat::SevenEighths => {
                let kept = (7 * k / 8).min(k - 1);
                sequential(a, b, &|_, _, l| l >= kept)
            }
            Cheat::Inputs(format) => {
                let a: Vec<f32> = a.iter().map(|x| format.round(*x)).collect();
                let b: Vec<f32> = b.iter().map(|x| format.round(*x)).collect();
                sequential(&a, &b, &|_, _, _| false)
            }
            Cheat::Accumulate(format) => {
                let mut c = vec![0f32; m * n];
                for i in 0..m {
                    for j in 0..n {
                        let mut s = 0f32;
                        for l in 0..k {
                            s = format.round(s + a[i * k + l] * b[l * n + j]);
                        }
                        c[i * n + j] = s;
                    }
                }
                c
            }
            Cheat::OneElement(share) => {
                let mut c = sequential(a, b, &|_, _, _| false);
                let exact = crate::kernels::matmul::reference(a, b, shape);
                let i = rng.below(m);
                let row = &exact[i * n..(i + 1) * n];
                let rms = (row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64).sqrt();
                let j = rng.below(n);
                let sign = if rng.next_u64() & 1 == 1 { -1.0 } else { 1.0 };
                c[i * n + j] = (c[i * n + j] as f64 + sign * share * rms) as f32;
                c
            }
        }
    }
}

/// The largest error of `c` over its elements in units of the probabilistic scale of honest
/// error, u·sqrt(Σ_l S_l² + Σ_l t_l²) (exact prefix sums and products): what tier 2's floor
/// measures in, comparable across k and data.
pub fn residual(a: &[f32], b: &[f32], c: &[f32], shape: MatmulShape) -> f64 {
    let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
    let mut worst = 0f64;
    for i in 0..m {
        let exact = super::envelope::exact_row(&a[i * k..(i + 1) * k], b, n);
        for j in 0..n {
            let scale = UNIT_ROUNDOFF * exact.scale[j] + f32::MIN_POSITIVE as f64;
            worst = worst.max((c[i * n + j] as f64 - exact.value[j]).abs() / scale);
        }
    }
    worst
}
