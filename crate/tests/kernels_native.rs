//! Every catalogue kernel against its CPU reference on wgpu's native backend (lavapipe on a
//! machine without a GPU: `apt-get install mesa-vulkan-drivers`, which `cargo xtask test` does).

use glowworm_contributor::gpu::{Gpu, GpuError};
use glowworm_protocol::kernels::{catalogue, matmul};
use glowworm_protocol::wire::{KernelSource, MatmulShape};

fn gpu() -> Gpu {
    match pollster::block_on(Gpu::new()) {
        Ok(gpu) => gpu,
        Err(e) => panic!(
            "{e}\nThe kernel tests need a Vulkan driver; on Debian: apt-get install mesa-vulkan-drivers"
        ),
    }
}

fn assert_close(got: &[f32], want: &[f32], k: u32) {
    assert_eq!(got.len(), want.len());
    let tol = 4.0 * k as f32 * f32::EPSILON;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()) * 4.0,
            "element {i}: GPU {g}, CPU {w}"
        );
    }
}

#[test]
fn tiled_matmul_matches_the_cpu_reference_for_many_shapes() {
    let gpu = gpu();
    let kernel = matmul::TILED.source();
    // Square, ragged (not multiples of the kernel's block), thin and the relay's unit size.
    for shape in [
        MatmulShape {
            m: 16,
            n: 16,
            k: 16,
        },
        MatmulShape {
            m: 37,
            n: 23,
            k: 41,
        },
        MatmulShape { m: 1, n: 70, k: 5 },
        MatmulShape {
            m: 64,
            n: 64,
            k: 256,
        },
    ] {
        let a = matmul::sample_matrix(shape.m * shape.k, 11);
        let b = matmul::sample_matrix(shape.k * shape.n, 12);
        let got = pollster::block_on(gpu.run_matmul(&kernel, &a, &b, shape)).unwrap();
        assert_close(&got, &matmul::reference(&a, &b, shape), shape.k);
    }
}

#[test]
fn every_catalogue_kernel_compiles_on_the_device() {
    let gpu = gpu();
    for kernel in catalogue() {
        pollster::block_on(gpu.prepare(&kernel.source()))
            .unwrap_or_else(|e| panic!("{}: {e}", kernel.id));
    }
}

#[test]
fn broken_wgsl_is_reported_not_run() {
    let gpu = gpu();
    let mut bad: KernelSource = matmul::TILED.source();
    bad.wgsl = bad
        .wgsl
        .replace("workgroupBarrier();", "workgroupBarrier(;");
    bad.hash = glowworm_protocol::hash::ContentHash::of(bad.wgsl.as_bytes());
    let err = pollster::block_on(gpu.prepare(&bad)).unwrap_err();
    assert!(matches!(err, GpuError::Shader { .. }), "{err}");
}

#[test]
fn mismatched_inputs_are_refused() {
    let gpu = gpu();
    let shape = MatmulShape { m: 4, n: 4, k: 4 };
    let err =
        pollster::block_on(gpu.run_matmul(&matmul::TILED.source(), &[0.0; 15], &[0.0; 16], shape))
            .unwrap_err();
    assert!(matches!(err, GpuError::Shape(_)), "{err}");
}
