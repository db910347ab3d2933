// C (m x n) = A (m x k) * B (k x n), f32, row-major: 64x32 of C per workgroup, 8x4 per
// invocation. Explained beside TILED in crate/src/kernels/matmul.rs.

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

// a_s[kk * 16 + q]: rows 4q .. 4q + 3 of the A panel at its column kk.
var<workgroup> a_s: array<vec4<f32>, 256>;
// b_s[kk * 8 + q]: columns 4q .. 4q + 3 of the B panel at its row kk.
var<workgroup> b_s: array<vec4<f32>, 128>;

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

@compute @workgroup_size(8, 8, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row0 = wid.y * 64u;
    let col0 = wid.x * 32u;
    let inside = row0 + 64u <= params.m && col0 + 32u <= params.n;
    let t = lid.y * 8u + lid.x;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0);
    var c5 = vec4<f32>(0.0);
    var c6 = vec4<f32>(0.0);
    var c7 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < params.k; k0 = k0 + TK) {
        // 64 invocations fill the 256 vec4 slots of the A panel, four each: slot s holds column
        // k0 + s % 16, rows from row0 + 4 (s / 16).
        for (var h = 0u; h < 4u; h = h + 1u) {
            let s = h * 64u + t;
            let ar = row0 + 4u * (s / 16u);
            let ac = k0 + s % 16u;
            if (inside && k0 + TK <= params.k) {
                let ai = ar * params.k + ac;
                a_s[(s % 16u) * 16u + s / 16u] =
                    vec4<f32>(a[ai], a[ai + params.k], a[ai + 2u * params.k], a[ai + 3u * params.k]);
            } else {
                a_s[(s % 16u) * 16u + s / 16u] =
                    vec4<f32>(a_at(ar, ac), a_at(ar + 1u, ac), a_at(ar + 2u, ac), a_at(ar + 3u, ac));
            }
        }
        // And the 128 of the B panel, two each: slot s holds row k0 + s / 8, columns from
        // col0 + 4 (s % 8).
        for (var h = 0u; h < 2u; h = h + 1u) {
            let s = h * 64u + t;
            let br = k0 + s / 8u;
            let bc = col0 + 4u * (s % 8u);
            if (inside && k0 + TK <= params.k) {
                let bi = br * params.n + bc;
                b_s[s] = vec4<f32>(b[bi], b[bi + 1u], b[bi + 2u], b[bi + 3u]);
            } else {
                b_s[s] = vec4<f32>(b_at(br, bc), b_at(br, bc + 1u), b_at(br, bc + 2u), b_at(br, bc + 3u));
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk = kk + 1u) {
            let a0 = a_s[kk * 16u + 2u * lid.y];
            let a1 = a_s[kk * 16u + 2u * lid.y + 1u];
            let bv = b_s[kk * 8u + lid.x];
            c0 = c0 + a0.x * bv;
            c1 = c1 + a0.y * bv;
            c2 = c2 + a0.z * bv;
            c3 = c3 + a0.w * bv;
            c4 = c4 + a1.x * bv;
            c5 = c5 + a1.y * bv;
            c6 = c6 + a1.z * bv;
            c7 = c7 + a1.w * bv;
        }
        workgroupBarrier();
    }
    let row = row0 + 8u * lid.y;
    let col = col0 + 4u * lid.x;
    store(row, col, c0);
    store(row + 1u, col, c1);
    store(row + 2u, col, c2);
    store(row + 3u, col, c3);
    store(row + 4u, col, c4);
    store(row + 5u, col, c5);
    store(row + 6u, col, c6);
    store(row + 7u, col, c7);
}
