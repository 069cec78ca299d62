// add.wgsl: y[t][i] += b[i] (biases, BIAS = 1) or y[t][i] += x[t][i] (residual adds,
// BIAS = 0), over n rows: biases, and the residual adds after attn_output and
// ffn_down (after their LoRA hooks: the CPU's order, core/batch.c).
// Bindings: 0 params, 1 step, 2 Y (f32, in/out), 3 B (f32).
//#include common.wgsl

override WG: u32 = 64u;
override BIAS: u32 = 1u;

struct Params {
    N: u32,     // elements per row
    ys: u32,    // row stride of Y (floats)
    bs: u32,    // row stride of B (residual) (floats)
    _p: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    if (t >= S.n || gid.x >= P.N) { return; }
    let i = t * P.ys + gid.x;
    if (BIAS == 1u) { Y[i] = Y[i] + B[gid.x]; } else { Y[i] = Y[i] + B[t * P.bs + gid.x]; }
}
