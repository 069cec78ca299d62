// rmsnorm.wgsl: y[t] = (x[t0 + t] * scale) * w, scale = 1 / sqrt(mean(x^2) + eps), as
// core/batch.c's rmsnorm() is written. The CPU sums the f32 squares in double; here
// they are summed as (hi, lo) pairs of f32 (exact.wgsl), and mean = f32(sum / n)
// rounds once; the square root and the division are correctly rounded.
// With GATHER (the head of a batch of several sessions) input row t is X row ROWS[t].
// With HEADS (qwen3's per-head q/k norms) workgroup (y = h, z = t) normalises the E floats at
// X[(t0 + t) * xs + h * E] in place (no Y).
// One workgroup per row. Bindings: 0 params, 1 step, 2 X (f32), 3 NW (f32 weights), 4 Y (f32 out;
// not with HEADS), 5 ROWS (u32 batch rows; GATHER only).
//#include common.wgsl
//#include exact.wgsl

override WG: u32 = 64u;

struct Params {
    E: u32,
    eps: u32,   // f32 bits
    xs: u32,    // input row stride (floats)
    ys: u32,    // output row stride (floats)
    zero: u32,  // 0 (read at run time: see opaque)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
//#if HEADS
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
//#else
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
//#endif
@group(0) @binding(3) var<storage, read> NW: array<f32>;
//#if GATHER
@group(0) @binding(5) var<storage, read> ROWS: array<u32>;
//#endif

var<workgroup> red: array<vec2<f32>, 256>;

fn opaque(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) | P.zero); }

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wid.z;
    if (t >= S.n) { return; }
//#if GATHER
    let xr = ROWS[t] * P.xs;
//#else
//#if HEADS
    let xr = (S.t0 + t) * P.xs + wid.y * P.E;
//#else
    let xr = (S.t0 + t) * P.xs;
//#endif
//#endif
    var ss = vec2<f32>(0.0, 0.0);
    for (var i = lid; i < P.E; i += WG) {
        let v = X[xr + i];
        ss = dd_add(ss, opaque(v * v));
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (lid < s) { red[lid] = dd_add2(red[lid], red[lid + s]); }
        workgroupBarrier();
    }
    let mean = dd_div(red[0], f32(P.E));
    let scale = div_rn(1.0, sqrt_rn(opaque(mean + bitcast<f32>(P.eps))));
//#if HEADS
    for (var i = lid; i < P.E; i += WG) { X[xr + i] = opaque(opaque(X[xr + i] * scale) * NW[i]); }
//#else
    let yr = t * P.ys;
    for (var i = lid; i < P.E; i += WG) { Y[yr + i] = opaque(opaque(X[xr + i] * scale) * NW[i]); }
//#endif
}
