// C (m x n) = A (m x k) * B (k x n), all f32, row-major.
// Each 16x16 workgroup computes a 16x16 block of C. It walks along k in steps of 16, staging a
// 16x16 block of A and of B in workgroup memory so each value read from global memory is used 16
// times. Out-of-range reads are replaced by zeros, so any m, n, k works.

const TILE: u32 = 16u;

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

var<workgroup> a_tile: array<array<f32, 16>, 16>;
var<workgroup> b_tile: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    let steps = (params.k + TILE - 1u) / TILE;
    var acc = 0.0;
    for (var t = 0u; t < steps; t = t + 1u) {
        let a_col = t * TILE + lid.x;
        var av = 0.0;
        if (row < params.m && a_col < params.k) {
            av = a[row * params.k + a_col];
        }
        a_tile[lid.y][lid.x] = av;

        let b_row = t * TILE + lid.y;
        var bv = 0.0;
        if (b_row < params.k && col < params.n) {
            bv = b[b_row * params.n + col];
        }
        b_tile[lid.y][lid.x] = bv;

        workgroupBarrier();
        for (var i = 0u; i < TILE; i = i + 1u) {
            acc = acc + a_tile[lid.y][i] * b_tile[i][lid.x];
        }
        workgroupBarrier();
    }
    if (row < params.m && col < params.n) {
        c[row * params.n + col] = acc;
    }
}
