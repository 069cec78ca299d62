// moe.wgsl: the mixture-of-experts FFN's own steps, as core/batch.c's moe_ffn() (llama.cpp's
// build_moe_ffn with softmax gating). The experts' matmuls are matmul.wgsl with EXPERTS.
// ROUTE: per token (one invocation; workgroup z = token), the router's logits R (n_expert
//   per row, in place) -> softmax (max subtracted, e = exp, the sum as the core's double:
//   pairs, then times f32(1 / sum)); the KU most probable experts by repeated first-largest
//   into SEL (u32) and their probabilities into WT; norm = 1 (qwen3moe): WT divided by
//   max(f32(their sum), 2^-14).
//   Bindings: 0 params, 1 step, 2 R (f32, in/out), 3 SEL (u32 out), 4 WT (f32 out).
// else (combine), per (element, token): out = sum over slots j in order of Y[t*KU + j] * WT,
//   (SHARED, qwen2moe) plus YS[t] * sigmoid(GS[t]) (1 / (1 + exp(-g))), then X += out.
//   Bindings: 0 params, 1 step, 2 X (f32, in/out), 3 Y (the experts' outputs, KU rows of E
//   per token), 4 WT, 5 YS (the shared expert's output), 6 GS (its gate logit): SHARED only.
//#include common.wgsl
//#include exact.wgsl

override WG: u32 = 64u;

struct Params {
    NE: u32,    // ROUTE: experts; combine: E (elements per row)
    KU: u32,    // experts used per token
    norm: u32,  // ROUTE: 1 = renormalise the chosen weights (qwen3moe)
    zero: u32,  // 0 (read at run time: see opaque)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
//#if ROUTE
@group(0) @binding(2) var<storage, read_write> R: array<f32>;
@group(0) @binding(3) var<storage, read_write> SEL: array<u32>;
@group(0) @binding(4) var<storage, read_write> WT: array<f32>;
//#else
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@group(0) @binding(3) var<storage, read> Y: array<f32>;
@group(0) @binding(4) var<storage, read> WT: array<f32>;
//#if SHARED
@group(0) @binding(5) var<storage, read> YS: array<f32>;
@group(0) @binding(6) var<storage, read> GS: array<f32>;
//#endif
//#endif

fn opaque(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) | P.zero); }

//#if ROUTE
@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    if (t >= S.n) { return; }
    let r0 = t * P.NE;
    var mx = LOWEST;
    for (var e = 0u; e < P.NE; e++) { mx = max(mx, R[r0 + e]); }
    var sum = vec2<f32>(0.0, 0.0);
    for (var e = 0u; e < P.NE; e++) {
        let v = exp_rn(opaque(R[r0 + e] - mx));
        R[r0 + e] = v;
        sum = dd_add(sum, v);
    }
    // inv = f32(1 / (hi + lo)), one Newton step on the pair (as attention.wgsl)
    let q0 = opaque(1.0 / sum.x);
    let pr = two_prod(q0, sum.x);
    let rr = opaque(opaque(opaque(1.0 - pr.x) - pr.y) - opaque(q0 * sum.y));
    let inv = opaque(q0 + opaque(q0 * rr));
    for (var e = 0u; e < P.NE; e++) { R[r0 + e] = opaque(R[r0 + e] * inv); }
    let s0 = t * P.KU;
    var ws = vec2<f32>(0.0, 0.0);
    for (var j = 0u; j < P.KU; j++) {
        var best = 0xffffffffu;
        for (var e = 0u; e < P.NE; e++) {
            var taken = false;
            for (var i = 0u; i < j; i++) { taken = taken || SEL[s0 + i] == e; }
            if (!taken && (best == 0xffffffffu || R[r0 + e] > R[r0 + best])) { best = e; }
        }
        SEL[s0 + j] = best;
        WT[s0 + j] = R[r0 + best];
        ws = dd_add(ws, R[r0 + best]);
    }
    if (P.norm != 0u) {
        let s = max(fast_two_sum(ws.x, ws.y).x, 6.103515625e-05);
        for (var j = 0u; j < P.KU; j++) { WT[s0 + j] = div_rn(WT[s0 + j], s); }
    }
}
//#else
@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    let k = gid.x;
    if (t >= S.n || k >= P.NE) { return; }
    let E = P.NE;
    let yb = t * P.KU * E + k;
    var o = opaque(Y[yb] * WT[t * P.KU]);
    for (var j = 1u; j < P.KU; j++) { o = opaque(o + opaque(Y[yb + j * E] * WT[t * P.KU + j])); }
//#if SHARED
    let gate = div_rn(1.0, opaque(1.0 + exp_rn(-GS[t])));
    o = opaque(o + opaque(YS[t * E + k] * gate));
//#endif
    X[t * E + k] = opaque(X[t * E + k] + o);
}
//#endif
