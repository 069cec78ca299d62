// lora.wgsl: the small steps of a LoRA adapter's term (core/api_gpu.c, realm_gpu_lora_plan;
// core/lora.c computes the same on the CPU), around two matmul.wgsl ops (A, then B):
//   MODE 0 gather: OUT[t][k] = IN[t0 + t][k], the step's rows of the adapted matmul's
//          input, from row t0 (a session's first row in a batch), to rows 0..
//   MODE 2 scaled add: Y[t0 + t][j] += s * D[t][j] (s = scale * alpha / rank), the product
//          kept apart from the add (no fused multiply-add), as the CPU's `y += s * t2`.
// Bindings: 0 params, 1 step, 2 A (f32: IN for gathers, Y for the add), 3 B (f32: OUT, D).
//#include common.wgsl

override MODE: u32 = 0u;
override WG: u32 = 64u;

struct Params {
    N: u32,     // elements per row
    xs: u32,   // row stride of binding 2 (floats)
    w2: u32,    // gathers: row stride of binding 3; add: s (f32 bits)
    zero: u32,  // 0 (read at run time: see opaque)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read_write> A: array<f32>;
@group(0) @binding(3) var<storage, read_write> B: array<f32>;

fn opaque(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) | P.zero); }

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    let j = gid.x;
    if (t >= S.n || j >= P.N) { return; }
    let a = (S.t0 + t) * P.xs + j;
    if (MODE == 2u) {
        A[a] = A[a] + opaque(bitcast<f32>(P.w2) * B[t * P.N + j]);
        return;
    }
    B[t * P.w2 + j] = A[a];
}
