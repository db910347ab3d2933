//! Comparing two outputs of the same unit, for replication: do two contributors (or a
//! contributor and a known answer) agree?
//!
//! Floats computed by different GPUs, drivers or summation orders differ in their last bits, so
//! an exact comparison would mark honest work invalid. [`agree`] compares f32 outputs within a
//! [`Tolerance`]: units in the last place, or an absolute bound per row that the kernel derives
//! from its inputs (for a matrix product, the rounding bound of a dot product in any order, as
//! Freivalds' check uses). Integer outputs compare exactly.

use crate::encoding::bytes_to_f32s;

/// How far two outputs may differ and still agree.
#[derive(Debug, Clone, PartialEq)]
pub enum Tolerance {
    /// Byte for byte (integer outputs, and f32 kernels that ask for exact agreement): identical
    /// NaN and infinities agree, but NaNs with different bit patterns do not, since the bytes
    /// may not be floats at all.
    Exact,
    /// Each pair of f32 values at most this many units in the last place apart (values on either
    /// side of zero count the distance through it; NaN agrees only with NaN, infinities only with
    /// themselves).
    Ulps(u32),
    /// Row-major f32 rows of `row_len` values: element j of row i may differ by `rows[i]`
    /// (NaN agrees with any NaN, an infinity only with itself).
    PerRow { row_len: usize, rows: Vec<f64> },
}

/// Why two outputs disagree: the first element out of tolerance.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Disagreement {
    #[error("the outputs have {0} and {1} bytes")]
    Length(usize, usize),
    #[error("the outputs are not f32 values: {0}")]
    NotF32(String),
    #[error("byte {index} differs")]
    Byte { index: usize },
    #[error("element {index} differs: {left} vs {right} (allowed {allowed})")]
    Element {
        index: usize,
        left: f32,
        right: f32,
        allowed: String,
    },
}

/// Whether outputs `left` and `right` (bytes as the contributors sent them) agree within `tolerance`.
pub fn agree(left: &[u8], right: &[u8], tolerance: &Tolerance) -> Result<(), Disagreement> {
    if left.len() != right.len() {
        return Err(Disagreement::Length(left.len(), right.len()));
    }
    if let Tolerance::Exact = tolerance {
        return match left.iter().zip(right).position(|(l, r)| l != r) {
            Some(index) => Err(Disagreement::Byte { index }),
            None => Ok(()),
        };
    }
    let decode = |bytes| bytes_to_f32s(bytes).map_err(|e| Disagreement::NotF32(e.to_string()));
    let (l, r) = (decode(left)?, decode(right)?);
    for (index, (&x, &y)) in l.iter().zip(&r).enumerate() {
        let (ok, allowed) = match tolerance {
            Tolerance::Exact => unreachable!("compared above"),
            Tolerance::Ulps(max) => (ulps_apart(x, y) <= u64::from(*max), format!("{max} ulp")),
            Tolerance::PerRow { row_len, rows } => {
                let bound = rows.get(index / row_len.max(&1)).copied().unwrap_or(0.0);
                let ok = x.to_bits() == y.to_bits()
                    || (x.is_nan() && y.is_nan())
                    || (x.is_finite() && y.is_finite() && (x as f64 - y as f64).abs() <= bound);
                (ok, format!("{bound:e}"))
            }
        };
        if !ok {
            return Err(Disagreement::Element {
                index,
                left: x,
                right: y,
                allowed,
            });
        }
    }
    Ok(())
}

/// Units in the last place between two f32 values, counted on the ordered integer line of
/// their bit patterns (so -0.0 and 0.0 are 0 apart). NaN is `u64::MAX` from everything but a
/// NaN; infinities are like the largest finite values' neighbours.
pub fn ulps_apart(x: f32, y: f32) -> u64 {
    if x.is_nan() || y.is_nan() {
        return if x.is_nan() && y.is_nan() {
            0
        } else {
            u64::MAX
        };
    }
    let ordered = |v: f32| {
        let bits = v.to_bits() as i32;
        // Negative values: flip so that the integer order follows the float order.
        let i = if bits < 0 { i32::MIN - bits } else { bits };
        i as i64
    };
    (ordered(x) - ordered(y)).unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::f32s_to_bytes;

    fn bytes(values: &[f32]) -> Vec<u8> {
        f32s_to_bytes(values)
    }

    #[test]
    fn ulps_count_through_zero_and_handle_nan() {
        assert_eq!(ulps_apart(1.0, 1.0), 0);
        assert_eq!(ulps_apart(1.0, f32::from_bits(1.0f32.to_bits() + 3)), 3);
        assert_eq!(ulps_apart(-0.0, 0.0), 0);
        let tiny = f32::from_bits(1);
        assert_eq!(ulps_apart(-tiny, tiny), 2);
        assert_eq!(ulps_apart(f32::NAN, f32::NAN), 0);
        assert_eq!(ulps_apart(f32::NAN, 1.0), u64::MAX);
    }

    #[test]
    fn exact_compares_bytes() {
        assert!(agree(&[1, 2, 3], &[1, 2, 3], &Tolerance::Exact).is_ok());
        assert_eq!(
            agree(&[1, 2, 3], &[1, 2, 4], &Tolerance::Exact),
            Err(Disagreement::Byte { index: 2 })
        );
        assert_eq!(
            agree(&[1, 2], &[1, 2, 3], &Tolerance::Exact),
            Err(Disagreement::Length(2, 3))
        );
    }

    #[test]
    fn ulps_accept_rounding_and_refuse_real_differences() {
        let a = [1.0f32, -2.5, 1e-30, 0.0];
        let nudged: Vec<f32> = a.iter().map(|v| f32::from_bits(v.to_bits() + 2)).collect();
        assert!(agree(&bytes(&a), &bytes(&nudged), &Tolerance::Ulps(4)).is_ok());
        let mut wrong = a;
        wrong[1] = -2.4;
        let err = agree(&bytes(&a), &bytes(&wrong), &Tolerance::Ulps(4)).unwrap_err();
        assert!(
            matches!(err, Disagreement::Element { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn per_row_bounds_apply_to_their_row() {
        let tolerance = Tolerance::PerRow {
            row_len: 2,
            rows: vec![0.1, 0.001],
        };
        let a = bytes(&[1.0, 1.0, 1.0, 1.0]);
        assert!(agree(&a, &bytes(&[1.05, 0.95, 1.0005, 1.0]), &tolerance).is_ok());
        let err = agree(&a, &bytes(&[1.0, 1.0, 1.0, 1.01]), &tolerance).unwrap_err();
        assert!(
            matches!(err, Disagreement::Element { index: 3, .. }),
            "{err}"
        );
        let inf = bytes(&[f32::INFINITY, 1.0, 1.0, 1.0]);
        assert!(agree(&inf, &inf, &tolerance).is_ok());
        assert!(agree(&a, &inf, &tolerance).is_err());
    }

    #[test]
    fn identical_non_finite_outputs_from_two_replicas_agree() {
        let out = bytes(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0]);
        let per_row = Tolerance::PerRow {
            row_len: 2,
            rows: vec![0.1, 0.1],
        };
        for tolerance in [
            Tolerance::Exact,
            Tolerance::Ulps(0),
            Tolerance::Ulps(4),
            per_row,
        ] {
            assert!(
                agree(&out, &out.clone(), &tolerance).is_ok(),
                "{tolerance:?}"
            );
            // An infinity never agrees with the other infinity or a finite value (but the largest
            // float's neighbour, within ulps), nor NaN with a number.
            for other in [
                [f32::NAN, f32::NEG_INFINITY, f32::NEG_INFINITY, 1.0],
                [f32::NAN, 1e30, f32::NEG_INFINITY, 1.0],
                [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::NAN],
                [0.0, f32::INFINITY, f32::NEG_INFINITY, 1.0],
            ] {
                assert!(
                    agree(&out, &bytes(&other), &tolerance).is_err(),
                    "{other:?}"
                );
            }
        }
        // A NaN of another bit pattern (GPUs differ in the NaN they produce) is still NaN to the
        // float tolerances; Exact compares bytes, which may be integers.
        let quiet_negative = f32::from_bits(0xffc0_0000);
        let other_nan = bytes(&[quiet_negative, f32::INFINITY, f32::NEG_INFINITY, 1.0]);
        assert!(agree(&out, &other_nan, &Tolerance::Ulps(0)).is_ok());
        let per_row = Tolerance::PerRow {
            row_len: 2,
            rows: vec![0.0, 0.0],
        };
        assert!(agree(&out, &other_nan, &per_row).is_ok());
        assert!(agree(&out, &other_nan, &Tolerance::Exact).is_err());
    }
}
