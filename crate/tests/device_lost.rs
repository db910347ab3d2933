//! A lost GPU device is noticed through wgpu's device-lost callback and reported as
//! `GpuError::DeviceLost`, not as whatever the failed work ran into; a new `Gpu` works again.
//! On wgpu's native backend (lavapipe without a GPU: `apt-get install mesa-vulkan-drivers`).

use glowworm_contributor::gpu::{Gpu, GpuError};
use glowworm_protocol::kernels::matmul;
use glowworm_protocol::wire::MatmulShape;

fn open_gpu() -> Gpu {
    pollster::block_on(Gpu::new()).unwrap_or_else(|e| {
        panic!(
            "{e}\nThese tests need a Vulkan driver; on Debian: apt-get install mesa-vulkan-drivers"
        )
    })
}

#[test]
fn a_lost_device_is_noticed_and_reported_as_lost() {
    let kernel = matmul::TILED.source();
    let shape = MatmulShape { m: 8, n: 8, k: 8 };
    let a = matmul::sample_matrix(64, 1);
    let b = matmul::sample_matrix(64, 2);
    let is_lost =
        |err: &GpuError| matches!(err, GpuError::DeviceLost(l) if l.reason == "destroyed");

    let gpu = open_gpu();
    assert_eq!(gpu.lost(), None);
    pollster::block_on(gpu.run_matmul(&kernel, &a, &b, shape)).expect("a healthy device runs");

    gpu.destroy();
    let loss = gpu.lost().expect("the device-lost callback has fired");
    assert_eq!(loss.reason, "destroyed");
    let err = pollster::block_on(gpu.run_matmul(&kernel, &a, &b, shape)).unwrap_err();
    assert!(is_lost(&err), "{err}");
    assert!(
        err.to_string()
            .starts_with("the GPU device was lost (destroyed)"),
        "{err}"
    );

    // What its owner does next: open a new device, which works.
    let again = open_gpu();
    let got = pollster::block_on(again.run_matmul(&kernel, &a, &b, shape)).unwrap();
    assert_eq!(got.len(), 64);
    assert_eq!(again.lost(), None);
}
