//#if F16
enable f16;
//#endif
// attention.wgsl: causal grouped-query attention of the n new tokens (positions
// n_past + t) over one layer's f16 KV cache, for prompts and decode alike,
// as core/batch.c's attention_head(): q is rotated (RoPE) and rounded to f16,
// scores = q.k * scale, softmax with the max subtracted, weights rounded to f16
// before meeting the f16 values; the weighted sum runs over positions in order.
// One workgroup per (head, token), three passes over the keys (max, sum,
// weighted values), no scratch memory beyond the workgroup's. Token t's q and output
// are rows t0 + t (t0 = 0 alone; the session's first row in a batch of several).
// window > 0 (sliding-window layers): a token sees the last `window` positions only.
// qscale (gemma2, phi3): q times it after RoPE, before the f16 rounding.
// cap > 0 (gemma2): scores soft-capped, tanh(s * (1 / cap)) * cap (the core's tanh).
// Bindings: 0 params, 1 step, 2 Q (f32), 3 KC, 4 VC (f16 cache), 5 ROPE, 6 OUT (f32).
//#include common.wgsl
//#include exact.wgsl
//#include rope.wgsl

override WG: u32 = 64u;   // power of two, at most 256

struct Params {
    H: u32,       // query heads
    G: u32,       // query heads per KV head
    D: u32,       // head_dim (<= 1024)
    nd: u32,      // rope_dim
    neox: u32,
    qs: u32,      // row stride of Q (floats)
    os: u32,      // row stride of OUT (floats)
    kvw: u32,     // cache words per position (KVD / 2)
    scale: u32,   // f32 bits: 1 / sqrt(head_dim)
    zero: u32,    // 0 (read at run time: see opaque)
    window: u32,  // positions a token sees (sliding-window layers), 0: all
    cap: u32,     // f32 bits: soft-capping of the scores, 0: none
    icap: u32,    // f32 bits: 1 / cap
    qscale: u32,  // f32 bits: q times this after RoPE (gemma2, phi3: then scale is 1), 0: none
    _p2: u32,
    _p3: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> Q: array<f32>;
//#if F16
@group(0) @binding(3) var<storage, read> KC: array<vec2<f16>>;
@group(0) @binding(4) var<storage, read> VC: array<vec2<f16>>;
//#else
@group(0) @binding(3) var<storage, read> KC: array<u32>;
@group(0) @binding(4) var<storage, read> VC: array<u32>;
//#endif
@group(0) @binding(5) var<storage, read> ROPE: array<vec2<f32>>;
@group(0) @binding(6) var<storage, read_write> OUT: array<f32>;

var<workgroup> qh: array<f32, 1024>;
var<workgroup> red: array<vec2<f32>, 256>;
var<workgroup> ps: array<f32, 256>;

fn src(i: u32) -> f32 { return Q[i]; }

fn kpair(i: u32) -> vec2<f32> {
//#if F16
    return vec2<f32>(KC[i]);
//#else
    return unpack2x16float(KC[i]);
//#endif
}
fn vpair(i: u32) -> vec2<f32> {
//#if F16
    return vec2<f32>(VC[i]);
//#else
    return unpack2x16float(VC[i]);
//#endif
}

fn opaque(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) | P.zero); }
fn opaque2(x: vec2<f32>) -> vec2<f32> { return bitcast<vec2<f32>>(bitcast<vec2<u32>>(x) | vec2<u32>(P.zero)); }
fn opaque4(x: vec4<f32>) -> vec4<f32> { return bitcast<vec4<f32>>(bitcast<vec4<u32>>(x) | vec4<u32>(P.zero)); }

// q.k * scale, summed as the CPU does (core/quant_attn.c: one f32x4 accumulator,
// q[d..d+3] k[d..d+3] then q[d+4..d+7] k[d+4..d+7] added for d = 0, 8, ..; then
// lane0 + lane1 + lane2 + lane3; in order when head_dim is not a multiple of 8).
fn score(first: u32, j: u32, kbase: u32) -> f32 {
    let k0 = (first + j) * P.kvw + kbase;
    var s = 0.0;
    if (P.D % 8u == 0u) {
        var a = vec4<f32>(0.0);
        for (var d = 0u; d < P.D; d += 8u) {
            let w = k0 + d / 2u;
            let k01 = kpair(w);
            let k23 = kpair(w + 1u);
            let k45 = kpair(w + 2u);
            let k67 = kpair(w + 3u);
            a = opaque4(a + opaque4(vec4<f32>(qh[d], qh[d + 1u], qh[d + 2u], qh[d + 3u]) * vec4<f32>(k01, k23)));
            a = opaque4(a + opaque4(vec4<f32>(qh[d + 4u], qh[d + 5u], qh[d + 6u], qh[d + 7u]) * vec4<f32>(k45, k67)));
        }
        s = opaque(opaque(opaque(a.x + a.y) + a.z) + a.w);
    } else {
        for (var i = 0u; i < P.D / 2u; i++) {
            let kk = kpair(k0 + i);
            s = opaque(s + opaque(qh[2u * i] * kk.x));
            s = opaque(s + opaque(qh[2u * i + 1u] * kk.y));
        }
    }
    let sc = opaque(s * bitcast<f32>(P.scale));
    if (P.cap == 0u) { return sc; }
    return opaque(tanh_rt(opaque(sc * bitcast<f32>(P.icap))) * bitcast<f32>(P.cap));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.z;
    if (t >= S.n || h >= P.H) { return; }
    let pos = S.n_past + t;
    var n = pos + 1u;                       // positions this token sees: first ..
    var first = 0u;
    if (P.window != 0u && n > P.window) {
        first = n - P.window;
        n = P.window;
    }
    let kbase = (h / P.G) * (P.D / 2u);     // the KV head's first word in a cache row
    let qrow = (S.t0 + t) * P.qs;
    for (var d = lid; d < P.D; d += WG) {
        var qv = rope_elem(qrow, h * P.D + d, P.D, P.nd, P.neox, pos);
        if (P.qscale != 0u) { qv = opaque(qv * bitcast<f32>(P.qscale)); }
        qh[d] = f16_round(qv);
    }
    workgroupBarrier();
    // pass 1: the largest score
    var mx = LOWEST;
    for (var j = lid; j < n; j += WG) { mx = max(mx, score(first, j, kbase)); }
    red[lid] = vec2<f32>(mx, 0.0);
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (lid < s) { red[lid].x = max(red[lid].x, red[lid + s].x); }
        workgroupBarrier();
    }
    let m = red[0].x;
    workgroupBarrier();
    // pass 2: the softmax denominator (the CPU sums in double: here (hi, lo) pairs)
    var sum = vec2<f32>(0.0, 0.0);
    for (var j = lid; j < n; j += WG) { sum = dd_add(sum, exp_f32(opaque(score(first, j, kbase) - m))); }
    red[lid] = sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (lid < s) { red[lid] = dd_add2(red[lid], red[lid + s]); }
        workgroupBarrier();
    }
    let tot = red[0];
    // inv = f32(1 / (hi + lo)), one Newton step on the pair
    let q0 = opaque(1.0 / tot.x);
    let pr = two_prod(q0, tot.x);
    let rr = opaque(opaque(opaque(1.0 - pr.x) - pr.y) - opaque(q0 * tot.y));
    let inv = opaque(q0 + opaque(q0 * rr));
    // pass 3: weights (rounded to f16) times values, WG positions at a time
    var acc: array<vec2<f32>, 8>;   // this invocation's pairs of dims: lid, lid + WG, ...
    let npairs = P.D / 2u;
    for (var c0 = 0u; c0 < n; c0 += WG) {
        let j = c0 + lid;
        var p = 0.0;
        if (j < n) { p = f16_round(opaque(exp_f32(opaque(score(first, j, kbase) - m)) * inv)); }
        ps[lid] = p;
        workgroupBarrier();
        let cnt = min(WG, n - c0);
        for (var pi = 0u; pi < 8u; pi++) {
            let pr = lid + pi * WG;
            if (pr < npairs) {
                var a = acc[pi];
                for (var jj = 0u; jj < cnt; jj++) {
                    let vv = vpair((first + c0 + jj) * P.kvw + kbase + pr);
                    a = opaque2(a + opaque2(ps[jj] * vv));
                }
                acc[pi] = a;
            }
        }
        workgroupBarrier();
    }
    let orow = (S.t0 + t) * P.os + h * P.D;
    for (var pi = 0u; pi < 8u; pi++) {
        let pr = lid + pi * WG;
        if (pr < npairs) {
            OUT[orow + 2u * pr] = acc[pi].x;
            OUT[orow + 2u * pr + 1u] = acc[pi].y;
        }
    }
}
