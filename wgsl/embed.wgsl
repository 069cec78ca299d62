// embed.wgsl: embedding lookup. x[t] = the dequantized row ids[t] of the token
// embedding (any weight type; bit-exact with core/quant_dequant.c up to fused
// multiply-adds). A tensor split across bindings is looked up part by part:
// each part writes the rows it holds. gemma: the rows times scale (sqrt(n_embd)), as the
// core scales them after the lookup.
// One invocation per 32 elements. Bindings: 0 params, 1 step, 2 W, 3 IDS (u32), 4 X (f32 out).
//#include common.wgsl
//#include quant.wgsl

override QT: u32 = 3u;
override WG: u32 = 64u;

struct Params {
    E: u32,          // row length
    row_bytes: u32,
    row0: u32,       // first row (token id) held by this part
    rows: u32,       // rows held by this part
    xs: u32,         // output row stride (floats)
    zero: u32,       // 0 (read at run time: see opaque)
    scale: u32,      // f32 bits: the embeddings' scale, 0: none
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read> IDS: array<u32>;
@group(0) @binding(4) var<storage, read_write> X: array<f32>;

fn opaque(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) | P.zero); }
fn scaled(x: f32) -> f32 {
    if (P.scale == 0u) { return x; }
    return opaque(opaque(x) * bitcast<f32>(P.scale));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    if (t >= S.n) { return; }
    let id = IDS[t];
    if (id < P.row0 || id >= P.row0 + P.rows) { return; }
    let k0 = 32u * gid.x;
    if (k0 >= P.E) { return; }
    let rb = (id - P.row0) * P.row_bytes;
    let out = t * P.xs;
    if (is_float_type(QT)) {
        for (var k = k0; k < min(k0 + 32u, P.E); k++) { X[out + k] = scaled(wfloat(QT, rb, k)); }
        return;
    }
    let be = block_elems(QT);
    let blk = rb + (k0 / be) * block_bytes(QT);
    let y = dequant_group(QT, blk, (k0 % be) / 32u);
    for (var e = 0u; e < 32u; e++) { X[out + k0 + e] = scaled(y[e]); }
}
