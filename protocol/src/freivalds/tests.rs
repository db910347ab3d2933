// Loops over columns index several per-column vectors at once.
#![allow(clippy::needless_range_loop)]

use super::study::{Cheat, Data, Format, Honest, Rng, honest_orders};
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

/// Tiles per k for the cheat and order tests: small at large k, since the tests run unoptimised.
fn shape_for(k: u32) -> MatmulShape {
    let side = match k {
        0..=16 => 16,
        17..=256 => 12,
        257..=1024 => 8,
        _ => 4,
    };
    MatmulShape {
        m: side,
        n: side,
        k,
    }
}

const KS: [u32; 6] = [1, 16, 256, 1024, 4096, 16384];

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

/// Every honest order of the study, on every kind of data, at every k of the study: accepted.
#[test]
fn accepts_every_honest_order_on_every_kind_of_data() {
    let mut rng = Rng::new(11);
    for k in KS {
        let shape = shape_for(k);
        for data in Data::ALL {
            let a = data.matrix((shape.m * shape.k) as usize, &mut rng);
            let b = data.matrix((shape.k * shape.n) as usize, &mut rng);
            for order in honest_orders() {
                let c = order.product(&a, &b, shape, &mut rng);
                for _ in 0..2 {
                    let seed = rng.seed();
                    assert_eq!(
                        check(&a, &b, &c, shape, seed),
                        Ok(()),
                        "{} on {} at k = {k}",
                        order.label(),
                        data.label()
                    );
                }
            }
        }
    }
}

/// Constant data makes rounding errors systematic: rows fail tier 1 and pass tier 2.
#[test]
fn constant_data_goes_to_tier_two_and_passes() {
    let shape = MatmulShape {
        m: 4,
        n: 4,
        k: 4096,
    };
    let a = vec![0.1f32; (shape.m * shape.k) as usize];
    let b = vec![0.1f32; (shape.k * shape.n) as usize];
    let c = Honest::Family(study::Order::Sequential).product(&a, &b, shape, &mut Rng::new(1));
    let mut tier2 = Tier2Rows::default();
    assert_eq!(
        check_counting(&a, &b, &c, shape, [5; 32], &mut tier2),
        Ok(())
    );
    assert!(
        tier2.rows > 0,
        "systematic errors exceed tier 1's random model"
    );
}

/// Every cheat of the study at every k: rejected, with several seeds.
#[test]
fn rejects_every_cheat_at_every_k() {
    let mut rng = Rng::new(7);
    let cheats = Cheat::ALL.into_iter().chain([Cheat::OneElement(1e-3)]);
    for cheat in cheats {
        for k in KS {
            let shape = shape_for(k);
            let a = Data::Uniform.matrix((shape.m * shape.k) as usize, &mut rng);
            let b = Data::Uniform.matrix((shape.k * shape.n) as usize, &mut rng);
            let c = cheat.product(&a, &b, shape, &mut rng);
            for _ in 0..3 {
                let verdict = check(&a, &b, &c, shape, rng.seed());
                assert!(
                    verdict.as_ref().is_err_and(|e| e.row().is_some()),
                    "{} at k = {k} must be rejected: {verdict:?}",
                    cheat.label()
                );
            }
        }
    }
}

#[test]
fn formats_round_as_their_definitions_say() {
    assert_eq!(Format::Bf16.round(1.0 + 1.0 / 512.0), 1.0);
    assert_eq!(Format::Bf16.round(1.0 + 3.0 / 128.0), 1.0 + 3.0 / 128.0);
    assert_eq!(Format::Bf16.round(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
    assert_eq!(Format::Fp16.round(1.0 + 1.0 / 4096.0), 1.0);
    assert_eq!(Format::Fp16.round(1e6), 65504.0);
    assert_eq!(Format::Fp8E4M3.round(0.3), 0.3125);
    assert_eq!(Format::Fp8E4M3.round(1000.0), 448.0);
    assert_eq!(Format::Fp8E4M3.round(2f32.powi(-10)), 0.0);
    assert_eq!(Format::Mantissa3.round(1e-20), 1.5 * 2f32.powi(-67));
    assert_eq!(Format::PowerOfTwo.round(-0.7), -0.5);
    assert_eq!(Format::PowerOfTwo.round(0.8), 1.0);
}

#[test]
fn rejects_a_single_wrong_element() {
    let (a, b, c) = product();
    for (index, delta) in [
        (0usize, 0.05f32),
        (777, -0.1),
        (SHAPE.m as usize * SHAPE.n as usize - 1, 1.0),
        (1000, 1e-4),
    ] {
        let mut bad = c.clone();
        bad[index] += delta;
        let err = check(&a, &b, &bad, SHAPE, [3; 32]).unwrap_err();
        assert_eq!(err.row(), Some(index / SHAPE.n as usize), "{err}");
        if let FreivaldsError::Element { column, .. } = err {
            assert_eq!(column, index % SHAPE.n as usize);
        }
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
    assert!(matches!(
        check(&a, &b, &zeros, SHAPE, [0; 32]),
        Err(FreivaldsError::Mismatch { row: 0, .. })
    ));

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

/// Tier 2 judges elements, not rows: an element moved within its envelope (half the
/// probabilistic floor) passes even where it pushes the row over tier 1's tolerance, and one
/// moved past the rigorous any-order bound is rejected at once.
#[test]
fn tier_two_judges_each_element_against_its_envelope() {
    let shape = MatmulShape {
        m: 2,
        n: 64,
        k: 1024,
    };
    let mut rng = Rng::new(3);
    let a = Data::Uniform.matrix((shape.m * shape.k) as usize, &mut rng);
    let b = Data::Uniform.matrix((shape.k * shape.n) as usize, &mut rng);
    let c = reference(&a, &b, shape);
    let n = shape.n as usize;
    let exact = envelope::exact_row(&a[..shape.k as usize], &b, n);
    // Nudged with the signs of the first vector, so tier 1 sees them add up.
    let probes = probe_vectors([1; 32], n);
    let mut moved = c.clone();
    for j in 0..n {
        let nudge = 0.5 * LAMBDA * UNIT_ROUNDOFF * exact.scale[j] * probes.0[0][j].signum();
        moved[j] = (exact.value[j] + nudge) as f32;
    }
    let mut tier2 = Tier2Rows::default();
    assert_eq!(
        check_counting(&a, &b, &moved, shape, [1; 32], &mut tier2),
        Ok(())
    );
    assert_eq!(tier2.rows, 1, "the moved row needed tier 2");

    let mut far = c.clone();
    far[n + 5] += 100.0;
    assert!(matches!(
        check(&a, &b, &far, shape, [1; 32]),
        Err(FreivaldsError::Mismatch { row: 1, .. })
    ));
    let mut near = c.clone();
    let exact = envelope::exact_row(&a[shape.k as usize..], &b, n);
    near[n + 5] = (exact.value[5] + 30.0 * LAMBDA * UNIT_ROUNDOFF * exact.scale[5]) as f32;
    assert!(matches!(
        check(&a, &b, &near, shape, [1; 32]),
        Err(FreivaldsError::Element {
            row: 1,
            column: 5,
            ..
        })
    ));
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
            let verdict = check(&a, &b, &wrong, shape, [2; 32]);
            assert!(
                verdict
                    .as_ref()
                    .is_err_and(|e| e.row() == Some(index / shape.n as usize)),
                "element {index} of {shape:?} changed by 0.5 is caught in its row: {verdict:?}"
            );
        }
    }
}

/// The simulated orders compute the product: each within the rigorous bound of the exact one,
/// and the pairwise tree and strided lanes on a power of two agree with a plain recursive sum.
#[test]
fn simulated_orders_compute_the_product() {
    let shape = MatmulShape { m: 1, n: 3, k: 64 };
    let mut rng = Rng::new(5);
    let a = Data::Normal.matrix(64, &mut rng);
    let b = Data::Normal.matrix(64 * 3, &mut rng);
    let exact = envelope::exact_row(&a, &b, 3);
    fn recursive(t: &[f32]) -> f32 {
        if t.len() == 1 {
            return t[0];
        }
        let (l, r) = t.split_at(t.len() / 2);
        recursive(l) + recursive(r)
    }
    for order in study::family(shape.k as usize) {
        let row = study::simulate(order, &a, &b, 3);
        for j in 0..3 {
            let bound = 66.0 * f32::EPSILON as f64 * exact.abs_sum[j];
            assert!((row[j] as f64 - exact.value[j]).abs() <= bound, "{order:?}");
        }
        if order == study::Order::Pairwise {
            for j in 0..3 {
                let terms: Vec<f32> = (0..64).map(|l| a[l] * b[l * 3 + j]).collect();
                assert_eq!(row[j], recursive(&terms));
            }
        }
    }
}
