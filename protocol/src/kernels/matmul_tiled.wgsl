// C (m x n) = A (m x k) * B (k x n), f32, row-major: 32x64 of C per workgroup of 8x4
// invocations, 8x8 per invocation. Explained beside TILED in crate/src/kernels/matmul.rs.

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

const TK: u32 = 16u;

// a_s[kk * 8 + q]: rows 4q .. 4q + 3 of the A panel at its column kk.
var<workgroup> a_s: array<vec4<f32>, 128>;
// b_s[kk * 16 + q]: columns 4q .. 4q + 3 of the B panel at its row kk.
var<workgroup> b_s: array<vec4<f32>, 256>;

fn a_at(row: u32, col: u32) -> f32 {
    if (row < params.m && col < params.k) {
        return a[row * params.k + col];
    }
    return 0.0;
}

fn b_at(row: u32, col: u32) -> f32 {
    if (row < params.k && col < params.n) {
        return b[row * params.n + col];
    }
    return 0.0;
}

fn store(row: u32, col: u32, v: vec4<f32>) {
    if (row >= params.m) {
        return;
    }
    let i = row * params.n + col;
    if (col + 3u < params.n) {
        c[i] = v.x;
        c[i + 1u] = v.y;
        c[i + 2u] = v.z;
        c[i + 3u] = v.w;
        return;
    }
    if (col < params.n) {
        c[i] = v.x;
    }
    if (col + 1u < params.n) {
        c[i + 1u] = v.y;
    }
    if (col + 2u < params.n) {
        c[i + 2u] = v.z;
    }
}

@compute @workgroup_size(8, 4, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row0 = wid.y * 32u;
    let col0 = wid.x * 64u;
    let inside = row0 + 32u <= params.m && col0 + 64u <= params.n;
    let t = lid.y * 8u + lid.x;
    // cR_0: row 8 ly + R, columns 4 lx .. 4 lx + 3; cR_1: the same row, 32 columns on.
    var c0_0 = vec4<f32>(0.0);
    var c0_1 = vec4<f32>(0.0);
    var c1_0 = vec4<f32>(0.0);
    var c1_1 = vec4<f32>(0.0);
    var c2_0 = vec4<f32>(0.0);
    var c2_1 = vec4<f32>(0.0);
    var c3_0 = vec4<f32>(0.0);
    var c3_1 = vec4<f32>(0.0);
    var c4_0 = vec4<f32>(0.0);
    var c4_1 = vec4<f32>(0.0);
    var c5_0 = vec4<f32>(0.0);
    var c5_1 = vec4<f32>(0.0);
    var c6_0 = vec4<f32>(0.0);
    var c6_1 = vec4<f32>(0.0);
    var c7_0 = vec4<f32>(0.0);
    var c7_1 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < params.k; k0 = k0 + TK) {
        // 32 invocations fill the 128 vec4 slots of the A panel, four each (slot s holds column
        // k0 + s % 16, rows from row0 + 4 (s / 16)), and the 256 of the B panel, eight each
        // (slot s holds row k0 + s / 16, columns from col0 + 4 (s % 16)). The check is uniform
        // across the workgroup, and made once per panel, not once per slot.
        if (inside && k0 + TK <= params.k) {
            for (var h = 0u; h < 4u; h = h + 1u) {
                let s = h * 32u + t;
                let ai = (row0 + 4u * (s / 16u)) * params.k + k0 + s % 16u;
                a_s[(s % 16u) * 8u + s / 16u] =
                    vec4<f32>(a[ai], a[ai + params.k], a[ai + 2u * params.k], a[ai + 3u * params.k]);
            }
            for (var h = 0u; h < 8u; h = h + 1u) {
                let s = h * 32u + t;
                let bi = (k0 + s / 16u) * params.n + col0 + 4u * (s % 16u);
                b_s[s] = vec4<f32>(b[bi], b[bi + 1u], b[bi + 2u], b[bi + 3u]);
            }
        } else {
            for (var h = 0u; h < 4u; h = h + 1u) {
                let s = h * 32u + t;
                let ar = row0 + 4u * (s / 16u);
                let ac = k0 + s % 16u;
                a_s[(s % 16u) * 8u + s / 16u] =
                    vec4<f32>(a_at(ar, ac), a_at(ar + 1u, ac), a_at(ar + 2u, ac), a_at(ar + 3u, ac));
            }
            for (var h = 0u; h < 8u; h = h + 1u) {
                let s = h * 32u + t;
                let br = k0 + s / 16u;
                let bc = col0 + 4u * (s % 16u);
                b_s[s] = vec4<f32>(b_at(br, bc), b_at(br, bc + 1u), b_at(br, bc + 2u), b_at(br, bc + 3u));
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            let a0 = a_s[kk * 8u + 2u * lid.y];
            let a1 = a_s[kk * 8u + 2u * lid.y + 1u];
            let b0 = b_s[kk * 16u + lid.x];
            let b1 = b_s[kk * 16u + lid.x + 8u];
            c0_0 = c0_0 + a0.x * b0;
            c0_1 = c0_1 + a0.x * b1;
            c1_0 = c1_0 + a0.y * b0;
            c1_1 = c1_1 + a0.y * b1;
            c2_0 = c2_0 + a0.z * b0;
            c2_1 = c2_1 + a0.z * b1;
            c3_0 = c3_0 + a0.w * b0;
            c3_1 = c3_1 + a0.w * b1;
            c4_0 = c4_0 + a1.x * b0;
            c4_1 = c4_1 + a1.x * b1;
            c5_0 = c5_0 + a1.y * b0;
            c5_1 = c5_1 + a1.y * b1;
            c6_0 = c6_0 + a1.z * b0;
            c6_1 = c6_1 + a1.z * b1;
            c7_0 = c7_0 + a1.w * b0;
            c7_1 = c7_1 + a1.w * b1;
        }
        workgroupBarrier();
    }
    let row = row0 + 8u * lid.y;
    let col = col0 + 4u * lid.x;
    store(row, col, c0_0);
    store(row, col + 32u, c0_1);
    store(row + 1u, col, c1_0);
    store(row + 1u, col + 32u, c1_1);
    store(row + 2u, col, c2_0);
    store(row + 2u, col + 32u, c2_1);
    store(row + 3u, col, c3_0);
    store(row + 3u, col + 32u, c3_1);
    store(row + 4u, col, c4_0);
    store(row + 4u, col + 32u, c4_1);
    store(row + 5u, col, c5_0);
    store(row + 5u, col + 32u, c5_1);
    store(row + 6u, col, c6_0);
    store(row + 6u, col + 32u, c6_1);
    store(row + 7u, col, c7_0);
    store(row + 7u, col + 32u, c7_1);
}
