//! Cheaters who compute part of the work, or compute it in lower precision, against a real
//! relay (a real SQLite file, real ed25519 signatures): at every depth k from 1 to 16,384 each
//! such result is refused (422 `verification_failed`), never credited, and the job then
//! completes from an honest contributor with an output within the honest rounding bound.
//!
//! The cheats are those tried against the landed relay, where several of them were credited:
//! 7/8 of each dot product, 1% of the multiply-adds skipped, inputs rounded to bf16, fp16,
//! fp8 (e4m3), 3 mantissa bits or powers of two, accumulation in bf16, and one element off by
//! 10^-3 of its row's magnitude (the RMS of that row of the true product).

use crate::common::{Contributor, TestRelay};
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm_protocol::wire::{Lease, MatmulShape};

const DEPTHS: [u32; 6] = [1, 16, 256, 1024, 4096, 16384];
const SIDE: u32 = 16;

/// `x` rounded to nearest with `bits` bits of mantissa kept (of f32's 23).
fn keep_mantissa(x: f32, bits: u32) -> f32 {
    let drop = 23 - bits;
    let raw = x.to_bits();
    let half = 1u32 << (drop - 1);
    f32::from_bits((raw + half) & !((1u32 << drop) - 1))
}

/// `x` as fp8 e4m3 would hold it: 3 mantissa bits, exponents from 2^-6 (subnormals below, in
/// steps of 2^-9), largest 448.
fn fp8_e4m3(x: f32) -> f32 {
    let clamped = x.clamp(-448.0, 448.0);
    if clamped.abs() < 2f32.powi(-6) {
        (clamped / 2f32.powi(-9)).round() * 2f32.powi(-9)
    } else {
        keep_mantissa(clamped, 3)
    }
}

/// `x` rounded to the nearest power of two (keeping its sign).
fn power_of_two(x: f32) -> f32 {
    if x == 0.0 {
        0.0
    } else {
        x.signum() * 2f32.powf(x.abs().log2().round())
    }
}

/// C = A B with A and B mapped by `input`, each product term kept when `keep(l)` and summed
/// with `add` from 0.
fn product(
    a: &[f32],
    b: &[f32],
    shape: MatmulShape,
    input: impl Fn(f32) -> f32,
    keep: impl Fn(usize, usize) -> bool,
    add: impl Fn(f32, f32) -> f32,
) -> Vec<f32> {
    let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
    let (a, b): (Vec<f32>, Vec<f32>) = (
        a.iter().map(|&x| input(x)).collect(),
        b.iter().map(|&x| input(x)).collect(),
    );
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0f32;
            for l in 0..k {
                if keep(i * n + j, l) {
                    sum = add(sum, a[i * k + l] * b[l * n + j]);
                }
            }
            c[i * n + j] = sum;
        }
    }
    c
}

/// The exact product in f64, with each element's absolute sum Σ|a b|.
fn exact(a: &[f32], b: &[f32], shape: MatmulShape) -> (Vec<f64>, Vec<f64>) {
    let (m, n, k) = (shape.m as usize, shape.n as usize, shape.k as usize);
    let mut c = vec![0f64; m * n];
    let mut magnitude = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            for l in 0..k {
                let t = a[i * k + l] as f64 * b[l * n + j] as f64;
                c[i * n + j] += t;
                magnitude[i * n + j] += t.abs();
            }
        }
    }
    (c, magnitude)
}

/// Every cheat, by name, for inputs `a` and `b`.
fn cheats(a: &[f32], b: &[f32], shape: MatmulShape) -> Vec<(&'static str, Vec<f32>)> {
    let k = shape.k as usize;
    let plain = |x: f32| x;
    let all = |_: usize, _: usize| true;
    let f32_add = |s: f32, t: f32| s + t;
    // One multiply-add in every `every` (at least one per element where k is smaller), at
    // different depths for different elements.
    let skip = |every: usize| {
        let every = every.min(k);
        move |element: usize, l: usize| !(l + element).is_multiple_of(every)
    };
    let mut list = vec![
        (
            "7/8 of each dot product",
            product(a, b, shape, plain, |_, l| l < k - (k / 8).max(1), f32_add),
        ),
        (
            "1% of multiply-adds skipped",
            product(a, b, shape, plain, skip(100), f32_add),
        ),
        (
            "bf16 inputs",
            product(a, b, shape, |x| keep_mantissa(x, 7), all, f32_add),
        ),
        (
            "fp16 inputs",
            product(a, b, shape, |x| keep_mantissa(x, 10), all, f32_add),
        ),
        (
            "fp8 e4m3 inputs",
            product(a, b, shape, fp8_e4m3, all, f32_add),
        ),
        (
            "3-bit mantissa inputs",
            product(a, b, shape, |x| keep_mantissa(x, 3), all, f32_add),
        ),
        (
            "power-of-two inputs",
            product(a, b, shape, power_of_two, all, f32_add),
        ),
        (
            "bf16 accumulation",
            product(a, b, shape, plain, all, |s, t| keep_mantissa(s + t, 7)),
        ),
    ];
    // One element off by 10^-3 of its row's RMS.
    let (c, _) = exact(a, b, shape);
    let n = shape.n as usize;
    let row = 3 % shape.m as usize;
    let rms = (c[row * n..(row + 1) * n].iter().map(|v| v * v).sum::<f64>() / n as f64).sqrt();
    let mut one_off: Vec<f32> = c.iter().map(|&v| v as f32).collect();
    one_off[row * n + 5 % n] += (1e-3 * rms) as f32;
    list.push(("one element off by 1e-3 of its row's RMS", one_off));
    list
}

/// A one-unit job of depth `k`; returns the relay, its inputs and the shape.
async fn job_of_depth(k: u32) -> (TestRelay, i64, Vec<f32>, Vec<f32>, MatmulShape) {
    let relay = TestRelay::with_config(|c| {
        c.canary_permille = 0;
        c.max_attempts = 100;
    });
    let shape = MatmulShape {
        m: SIDE,
        n: SIDE,
        k,
    };
    let (job_id, a, b) = relay.queue_job(shape, None, u64::from(k) + 7).await;
    (relay, job_id, a, b, shape)
}

#[tokio::test]
async fn partial_and_low_precision_work_is_refused_at_every_depth() {
    for k in DEPTHS {
        let (relay, job_id, a, b, shape) = job_of_depth(k).await;
        let honest_exact = product(&a, &b, shape, |x| x, |_, _| true, |s, t| s + t);
        for (name, output) in cheats(&a, &b, shape) {
            if output == honest_exact {
                // At k = 1 skipping "1%" or accumulating in bf16 may change nothing: no cheat.
                continue;
            }
            // A unit a stranger failed is held a while for keys with a record; the next new
            // key gets it once that has passed.
            relay.pass_holds();
            let cheater = Contributor::new();
            let lease: Lease = cheater.lease(&relay).await.expect("the unit is pending");
            let footprint = relay.footprint().await;
            let reply = cheater
                .submit(&relay, &lease, &f32s_to_bytes(&output))
                .await;
            assert_eq!(
                reply.status.as_u16(),
                422,
                "k = {k}: {name} must be refused, got {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            reply.assert_error(422, "verification_failed");
            assert_eq!(cheater.balance(&relay).await, 0, "k = {k}: {name}");
            let after = relay.footprint().await;
            assert_eq!(
                (after[1], after[2]),
                (footprint[1], footprint[2]),
                "k = {k}: {name}: no ledger row, no credit"
            );
        }

        // An honest contributor completes the job; its output is within the honest bound.
        relay.pass_holds();
        let honest = Contributor::new();
        honest.earn(&relay).await;
        let status = relay.job(job_id).await;
        assert_eq!(status.state, "done", "k = {k}");
        let output = relay
            .get(&format!("/v1/blobs/{}", status.output_hash.unwrap()))
            .await;
        let got = bytes_to_f32s(&output.body).unwrap();
        let (want, magnitude) = exact(&a, &b, shape);
        let gamma = k as f64 * f32::EPSILON as f64 / 2.0 * 1.01;
        for (i, ((g, w), s)) in got.iter().zip(&want).zip(&magnitude).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= gamma * s + 1e-30,
                "k = {k}: element {i}: {g} against the exact {w}"
            );
        }
    }
}
