//! The tiled matmul at the edges of its 64x64 blocks and 16-deep k panels, and the naive
//! benchmark baseline, against the CPU reference on wgpu's native backend (lavapipe without a
//! GPU: `apt-get install mesa-vulkan-drivers`).

use glowworm_contributor::gpu::Gpu;
use glowworm_protocol::kernels::{catalogue, matmul};
use glowworm_protocol::wire::MatmulShape;

fn gpu() -> Gpu {
    pollster::block_on(Gpu::new()).unwrap_or_else(|e| {
        panic!(
            "{e}\nThese tests need a Vulkan driver; on Debian: apt-get install mesa-vulkan-drivers"
        )
    })
}

fn check(gpu: &Gpu, kernel: &glowworm_protocol::kernels::Kernel, shape: MatmulShape) {
    let a = matmul::sample_matrix(shape.m * shape.k, 21);
    let b = matmul::sample_matrix(shape.k * shape.n, 22);
    let got = pollster::block_on(gpu.run_matmul(&kernel.source(), &a, &b, shape))
        .unwrap_or_else(|e| panic!("{} on {shape:?}: {e}", kernel.id));
    let want = matmul::reference(&a, &b, shape);
    let tol = 4.0 * shape.k as f32 * f32::EPSILON;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{} on {shape:?}: element {i} (row {}, column {}) is {g}, the CPU reference says {w}",
            kernel.id,
            i / shape.n as usize,
            i % shape.n as usize
        );
    }
}

/// Shapes on both sides of the block and panel edges, wholly inside blocks, and degenerate.
const SHAPES: [(u32, u32, u32); 10] = [
    (64, 64, 16),
    (63, 65, 15),
    (65, 63, 17),
    (128, 192, 48),
    (129, 130, 33),
    (1, 1, 1),
    (1, 257, 3),
    (200, 1, 40),
    (4, 4, 300),
    (70, 66, 1),
];

#[test]
fn tiled_matmul_is_exact_to_rounding_at_block_and_panel_edges() {
    let gpu = gpu();
    for (m, n, k) in SHAPES {
        check(&gpu, &matmul::TILED, MatmulShape { m, n, k });
    }
}

#[test]
fn naive_matmul_matches_the_reference_and_is_not_in_the_catalogue() {
    let gpu = gpu();
    for (m, n, k) in [(37, 23, 41), (64, 64, 256), (1, 70, 5)] {
        check(&gpu, &matmul::NAIVE, MatmulShape { m, n, k });
    }
    assert!(
        catalogue().iter().all(|k| k.hash() != matmul::NAIVE.hash()),
        "the naive kernel is for benchmarks only"
    );
}
