// C = A * B, f32, row-major, one invocation per output: NAIVE in crate/src/kernels/matmul.rs.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.y;
    let col = gid.x;
    if (row >= params.m || col >= params.n) {
        return;
    }
    var acc = 0.0;
    for (var l = 0u; l < params.k; l = l + 1u) {
        acc = acc + a[row * params.k + l] * b[l * params.n + col];
    }
    c[row * params.n + col] = acc;
}
