// swiglu.wgsl: g = silu(g) * u = g / (1 + exp(-g)) * u, elementwise over n rows, with
// exp and the division rounded as the CPU's (exact.wgsl).
// Bindings: 0 params, 1 step, 2 G (f32, in/out), 3 U (f32).
//#include common.wgsl
//#include exact.wgsl

override WG: u32 = 64u;

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

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    if (t >= S.n || gid.x >= P.F) { return; }
    let i = t * P.gs + gid.x;
    let g = G[i];
    G[i] = opaque(div_rn(g, opaque(1.0 + exp_rn(-g))) * U[i]);
}
