//! Custom kernels through `Gpu::run_dispatch` on wgpu's native backend (lavapipe without a GPU:
//! `apt-get install mesa-vulkan-drivers`): the SAXPY and conv1d samples against their CPU
//! references, and dispatches the device refuses coming back as errors, not panics.

use glowworm_contributor::gpu::{Gpu, GpuError};
use glowworm_protocol::encoding::{bytes_to_f32s, f32s_to_bytes};
use glowworm_protocol::hash::ContentHash;
use glowworm_protocol::kernels::custom::{samples, validate};
use glowworm_protocol::kernels::matmul::sample_matrix;
use glowworm_protocol::wire::{KernelSource, KernelSpec};

fn gpu() -> Gpu {
    pollster::block_on(Gpu::new()).unwrap_or_else(|e| {
        panic!(
            "{e}\nThese tests need a Vulkan driver; on Debian: apt-get install mesa-vulkan-drivers"
        )
    })
}

/// The kernel source a contributor would fetch for `spec` (its `tile` means nothing here).
fn source(spec: &KernelSpec) -> KernelSource {
    KernelSource {
        id: spec.name.clone().unwrap_or_else(|| "custom".into()),
        hash: ContentHash::of(spec.wgsl.as_bytes()),
        entry_point: spec.entry_point.clone(),
        wgsl: spec.wgsl.clone(),
        tile: [0, 0],
    }
}

/// Runs one unit of `spec` with `inputs` in its declared order.
fn run(gpu: &Gpu, spec: &KernelSpec, inputs: &[&[f32]]) -> Result<Vec<f32>, GpuError> {
    let bytes: Vec<Vec<u8>> = inputs.iter().map(|v| f32s_to_bytes(v)).collect();
    let bound: Vec<(u32, &[u8])> = spec
        .inputs
        .iter()
        .zip(&bytes)
        .map(|(input, b)| (input.binding, &b[..]))
        .collect();
    let out = pollster::block_on(gpu.run_dispatch(
        &source(spec),
        &bound,
        spec.output.binding,
        spec.output.bytes,
        spec.workgroups,
    ))?;
    Ok(bytes_to_f32s(&out).expect("whole f32s"))
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{what}: element {i} is {g}, the CPU reference says {w}"
        );
    }
}

#[test]
fn samples_match_their_cpu_references() {
    let gpu = gpu();

    // 1000 elements: not a whole number of 64-wide workgroups, so the bounds check matters.
    let n = 1000;
    let spec = samples::saxpy_spec(n, 1);
    validate(&spec).expect("the SAXPY sample is valid");
    let (x, y) = (sample_matrix(n, 1), sample_matrix(n, 2));
    let got = run(&gpu, &spec, &[&x, &y]).expect("SAXPY runs");
    assert_close(&got, &samples::saxpy_reference(&x, &y), "saxpy");

    let (len, taps) = (515, 16);
    let spec = samples::conv1d_spec(len, taps, 1);
    validate(&spec).expect("the conv1d sample is valid");
    let (signal, weights) = (sample_matrix(len, 3), sample_matrix(taps, 4));
    let got = run(&gpu, &spec, &[&signal, &weights]).expect("conv1d runs");
    assert_close(
        &got,
        &samples::conv1d_reference(&signal, &weights),
        "conv1d",
    );
}

#[test]
fn odd_sized_inputs_are_padded_and_outputs_zeroed() {
    let gpu = gpu();
    // Writes out[0] only: the rest of the output must read back as zeros.
    let wgsl = "@group(0) @binding(0) var<storage, read> bytes: array<u32>;\n\
                @group(0) @binding(1) var<storage, read_write> out: array<u32>;\n\
                @compute @workgroup_size(1) fn main() { out[0] = bytes[0] + arrayLength(&bytes); }\n";
    let kernel = KernelSource {
        id: "odd".into(),
        hash: ContentHash::of(wgsl.as_bytes()),
        entry_point: "main".into(),
        wgsl: wgsl.into(),
        tile: [0, 0],
    };
    let out =
        pollster::block_on(gpu.run_dispatch(&kernel, &[(0, &[1, 2, 3][..])], 1, 12, [1, 1, 1]))
            .expect("runs");
    let word = u32::from_le_bytes([1, 2, 3, 0]) + 1;
    let mut want = word.to_le_bytes().to_vec();
    want.extend([0; 8]);
    assert_eq!(out, want);
}

#[test]
fn refused_dispatches_are_errors() {
    let gpu = gpu();
    let spec = samples::saxpy_spec(64, 1);
    let kernel = source(&spec);
    let x = f32s_to_bytes(&[1.0; 64]);
    let run = |inputs: &[(u32, &[u8])], output_binding, workgroups| {
        pollster::block_on(gpu.run_dispatch(&kernel, inputs, output_binding, 256, workgroups))
    };

    // An empty input: WebGPU has no empty buffers.
    let err = run(&[(0, &x), (1, &[])], 2, [1, 1, 1]).unwrap_err();
    assert!(matches!(err, GpuError::Dispatch(_)), "{err}");

    // A binding the shader does not have.
    let err = run(&[(0, &x), (5, &x)], 2, [1, 1, 1]).unwrap_err();
    assert!(matches!(err, GpuError::Validation(_)), "{err}");

    // More workgroups than the device allows along x.
    let err = run(&[(0, &x), (1, &x)], 2, [70_000, 1, 1]).unwrap_err();
    assert!(matches!(err, GpuError::Validation(_)), "{err}");

    // A shader that does not compile.
    let mut broken = kernel.clone();
    broken.wgsl = "fn main( {".into();
    broken.hash = ContentHash::of(broken.wgsl.as_bytes());
    let err =
        pollster::block_on(gpu.run_dispatch(&broken, &[(0, &x)], 2, 256, [1, 1, 1])).unwrap_err();
    assert!(matches!(err, GpuError::Shader { .. }), "{err}");

    // The device still works afterwards.
    let y = f32s_to_bytes(&[0.5; 64]);
    let out = run(&[(0, &x), (1, &y)], 2, [1, 1, 1]).expect("a good dispatch still runs");
    assert_eq!(bytes_to_f32s(&out).unwrap(), vec![2.5; 64]);
}

#[test]
fn run_work_runs_matmul_and_dispatch_units_alike() {
    use glowworm_protocol::kernels::matmul;
    use glowworm_protocol::protocol::Work;
    use glowworm_protocol::wire::MatmulShape;
    let gpu = gpu();

    let shape = MatmulShape { m: 8, n: 8, k: 8 };
    let (a, b) = (sample_matrix(64, 5), sample_matrix(64, 6));
    let kernel = matmul::TILED.source();
    let want = pollster::block_on(gpu.run_matmul(&kernel, &a, &b, shape)).unwrap();
    let (a, b) = (f32s_to_bytes(&a), f32s_to_bytes(&b));
    let got = pollster::block_on(gpu.run_work(&kernel, &Work::Matmul(shape), &[&a, &b])).unwrap();
    assert_eq!(got, f32s_to_bytes(&want));

    let spec = samples::saxpy_spec(64, 1);
    let work = Work::Dispatch {
        // y first: bindings follow the lease's order of inputs, whatever it is.
        bindings: vec![1, 0],
        output_binding: 2,
        output_bytes: spec.output.bytes,
        workgroups: spec.workgroups,
    };
    let (x, y) = (sample_matrix(64, 7), sample_matrix(64, 8));
    let (xb, yb) = (f32s_to_bytes(&x), f32s_to_bytes(&y));
    let got = pollster::block_on(gpu.run_work(&source(&spec), &work, &[&yb, &xb])).unwrap();
    assert_close(
        &bytes_to_f32s(&got).unwrap(),
        &samples::saxpy_reference(&x, &y),
        "saxpy",
    );
}
