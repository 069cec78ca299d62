// swiglu.wgsl: g = silu(g) * u = g / (1 + exp(-g)) * u, elementwise over n rows, with
// the CPU's exp (exact.wgsl: exp_f32) and its correctly rounded division.
// ACT = 1 (gemma's GeGLU): g = gelu(g) * u as core/batch.c's geglu(): 0 at or below -10,
// g at or above 10, else gelu's tanh form of g rounded to f16, rounded to f16 (ggml's
// table over f16 inputs), computed here with the core's tanh (exact.wgsl: tanh_rt).
// Bindings: 0 params, 1 step, 2 G (f32, in/out), 3 U (f32).
//#include common.wgsl
//#include exact.wgsl

override WG: u32 = 64u;
override ACT: u32 = 0u;   // 0: SwiGLU, 1: GeGLU

struct Params {
    F: u32,     // elements per row
    gs: u32,    // row stride of G and U (floats)
    zero: u32,  // 0 (read at run time: see opaque)
    _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read_write> G: array<f32>;
@group(0) @binding(3) var<storage, read> U: array<f32>;

fn opaque(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) | P.zero); }

// 0.5f * x * (1.0f + rt_tanhf(0.79788456f * x * (1.0f + 0.044715f * x * x))) of f16(g), rounded to f16
fn gelu_f16(g: f32) -> f32 {
    if (g <= -10.0) { return 0.0; }
    if (g >= 10.0) { return g; }
    let x = f16_round(g);
    let c = opaque(1.0 + opaque(opaque(bitcast<f32>(0x3d372713u) * x) * x));
    let t = tanh_rt(opaque(opaque(bitcast<f32>(0x3f4c422au) * x) * c));
    return f16_round(opaque(opaque(0.5 * x) * opaque(1.0 + t)));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    if (t >= S.n || gid.x >= P.F) { return; }
    let i = t * P.gs + gid.x;
    let g = G[i];
    if (ACT == 1u) {
        G[i] = opaque(gelu_f16(g) * U[i]);
        return;
    }
    G[i] = opaque(div_rn(g, opaque(1.0 + exp_f32(-g))) * U[i]);
}
