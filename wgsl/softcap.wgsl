// softcap.wgsl: y = tanh(y * (1 / cap)) * cap, elementwise over n rows (gemma2's final
// logit soft-capping, core/batch.c softcap_rows), with the core's tanh (exact.wgsl).
// Bindings: 0 params, 1 step, 2 Y (f32, in/out).
//#include common.wgsl
//#include exact.wgsl

override WG: u32 = 64u;

struct Params {
    N: u32,     // elements per row
    ys: u32,    // row stride of Y (floats)
    cap: u32,   // f32 bits
    icap: u32,  // f32 bits: 1 / cap
    zero: u32,  // 0 (read at run time: see opaque)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;

fn opaque(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) | P.zero); }

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    let i = gid.x;
    if (t >= S.n || i >= P.N) { return; }
    let k = t * P.ys + i;
    Y[k] = opaque(tanh_rt(opaque(Y[k] * bitcast<f32>(P.icap))) * bitcast<f32>(P.cap));
}
