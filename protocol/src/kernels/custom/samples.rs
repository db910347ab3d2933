//! Sample custom kernels with CPU references, for tests (the crate's, the relay's) and as
//! examples for requesters.

use crate::wire::{KernelInput, KernelOutput, KernelSpec};

/// SAXPY, out = A * x + y, with A = [`SAXPY_A`]: inputs "x" (binding 0) and "y" (binding 1),
/// f32 arrays of one length; output (binding 2) of the same length. 64 invocations per
/// workgroup, one per element.
pub const SAXPY_WGSL: &str = include_str!("../../../../examples/saxpy/saxpy.wgsl");

/// The constant A of [`SAXPY_WGSL`].
pub const SAXPY_A: f32 = 2.0;

/// A job of `units` SAXPY units of `n` elements each: "x" and "y" are split between the units.
/// Its inputs must be `units * n` f32 each.
pub fn saxpy_spec(n: u32, units: u32) -> KernelSpec {
    KernelSpec {
        name: Some("saxpy".into()),
        wgsl: SAXPY_WGSL.into(),
        entry_point: "main".into(),
        inputs: vec![input("x", 0, false), input("y", 1, false)],
        output: KernelOutput {
            binding: 2,
            bytes: 4 * n as u64,
        },
        workgroups: [n.div_ceil(64), 1, 1],
        units,
        replicas: 2,
        tolerance_ulps: 0,
        price_per_unit: None,
    }
}

/// What [`SAXPY_WGSL`] computes, on the CPU.
pub fn saxpy_reference(x: &[f32], y: &[f32]) -> Vec<f32> {
    x.iter().zip(y).map(|(x, y)| SAXPY_A * x + y).collect()
}

/// A 1-D convolution without padding ("valid"): out[i] = sum over j of w[j] * signal[i + j].
/// Inputs "signal" (binding 0) and "weights" (binding 1, shared by every unit); the output
/// (binding 2) is `len(signal) - len(weights) + 1` f32. 64 invocations per workgroup.
pub const CONV1D_WGSL: &str = r#"// out[i] = sum_j weights[j] * signal[i + j]
@group(0) @binding(0) var<storage, read> signal: array<f32>;
@group(0) @binding(1) var<storage, read> weights: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn conv(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= arrayLength(&out)) {
        return;
    }
    var sum = 0.0;
    for (var j = 0u; j < arrayLength(&weights); j++) {
        sum += weights[j] * signal[i + j];
    }
    out[i] = sum;
}
"#;

/// A job of `units` conv1d units, each over its own `signal` chunk of `signal_len` f32 with
/// `taps` shared weights.
pub fn conv1d_spec(signal_len: u32, taps: u32, units: u32) -> KernelSpec {
    let outputs = signal_len - taps + 1;
    KernelSpec {
        name: Some("conv1d".into()),
        wgsl: CONV1D_WGSL.into(),
        entry_point: "conv".into(),
        inputs: vec![input("signal", 0, false), input("weights", 1, true)],
        output: KernelOutput {
            binding: 2,
            bytes: 4 * outputs as u64,
        },
        workgroups: [outputs.div_ceil(64), 1, 1],
        units,
        replicas: 2,
        tolerance_ulps: 0,
        price_per_unit: None,
    }
}

/// What [`CONV1D_WGSL`] computes, on the CPU (summing in the same order, in f32).
pub fn conv1d_reference(signal: &[f32], weights: &[f32]) -> Vec<f32> {
    (0..=signal.len() - weights.len())
        .map(|i| {
            weights
                .iter()
                .enumerate()
                .fold(0.0f32, |sum, (j, w)| sum + w * signal[i + j])
        })
        .collect()
}

fn input(name: &str, binding: u32, shared: bool) -> KernelInput {
    KernelInput {
        name: name.into(),
        binding,
        shared,
    }
}
