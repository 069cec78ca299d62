// quantize.wgsl: activations (f32 rows) -> the vec_dot type of a weight type,
// exactly as core/quant_act.c (llama.cpp's reference rounding):
//   KIND 1  F16:  round to nearest even, kept as f32
//   KIND 2  BF16: round to nearest even (NaN quieted), kept as f32
//   KIND 3  Q8_0: d = amax/127 (stored as f16), q = round-half-even(x * (127/amax))
//           (llama.cpp's x86 rounding, which the core follows)
//   KIND 4  Q8_1: as Q8_0, plus s = f16(d * sum q) with the unrounded d
//   KIND 5  Q8_K: max = first x of largest |x|, iscale = -127/max,
//                 q = min(127, round-half-even(iscale * x)), d = 1/iscale, bsums of 16
// Output row layouts: matmul.wgsl. One invocation per block (32 elements, 256 for Q8_K).
// Rows: t = workgroup z, or with rpt > 0 (the slots of mixture-of-experts tokens) z * rpt + y.
// Bindings: 0 params, 1 step, 2 IN (f32), 3 OUT (u32 words).
//#include common.wgsl
//#include exact.wgsl

override KIND: u32 = 3u;
override WG: u32 = 64u;

struct Params {
    K: u32,     // elements per row
    xs: u32,    // input row stride (floats)
    os: u32,    // output row stride (words)
    zero: u32,  // 0 (read at run time: see opaque)
    rpt: u32,   // rows per step row (experts' slots: workgroup y = the row within), 0: one
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> IN: array<f32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<u32>;

fn opaque(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) | P.zero); }

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    if (wid.z >= S.n) { return; }
    let t = wid.z * max(P.rpt, 1u) + wid.y;
    let b = gid.x;
    let x0 = t * P.xs;
    let o0 = t * P.os;
    if (KIND == 1u || KIND == 2u) {
        let k0 = 32u * b;
        if (k0 >= P.K) { return; }
        for (var k = k0; k < min(k0 + 32u, P.K); k++) {
            let v = IN[x0 + k];
            var r: f32;
            if (KIND == 1u) { r = f16_round(v); } else { r = bf16_to_f32(f32_to_bf16(v)); }
            OUT[o0 + k] = bitcast<u32>(r);
        }
        return;
    }
    if (KIND == 3u || KIND == 4u) {
        let nb = P.K / 32u;
        if (b >= nb) { return; }
        let xb = x0 + 32u * b;
        var amax = 0.0;
        for (var j = 0u; j < 32u; j++) { amax = max(amax, abs(IN[xb + j])); }
        let d = div_rn(amax, 127.0);
        let id = select(0.0, div_rn(127.0, amax), amax != 0.0);
        var sum = 0;
        for (var w = 0u; w < 8u; w++) {
            var q: array<i32, 4>;
            for (var k = 0u; k < 4u; k++) {
                q[k] = i32(round(opaque(IN[xb + 4u * w + k] * id)));
                sum += q[k];
            }
            OUT[o0 + 8u * b + w] = pack4(q[0], q[1], q[2], q[3]);
        }
        OUT[o0 + P.K / 4u + b] = bitcast<u32>(f16_round(d));
        if (KIND == 4u) { OUT[o0 + P.K / 4u + nb + b] = bitcast<u32>(f16_round(opaque(f32(sum) * d))); }
        return;
    }
    // Q8_K
    let nb = P.K / 256u;
    if (b >= nb) { return; }
    let xb = x0 + 256u * b;
    var amax = 0.0;
    var mx = 0.0;
    for (var j = 0u; j < 256u; j++) {
        let v = IN[xb + j];
        if (abs(v) > amax) { amax = abs(v); mx = v; }
    }
    let bs = o0 + P.K / 4u + nb + 16u * b;
    if (!(amax > 0.0)) {
        OUT[o0 + P.K / 4u + b] = 0u;
        for (var w = 0u; w < 64u; w++) { OUT[o0 + 64u * b + w] = 0u; }
        for (var j = 0u; j < 16u; j++) { OUT[bs + j] = 0u; }
        return;
    }
    let iscale = div_rn(-127.0, mx);
    for (var j = 0u; j < 16u; j++) {
        var s = 0;
        for (var w = 0u; w < 4u; w++) {
            var q: array<i32, 4>;
            for (var k = 0u; k < 4u; k++) {
                q[k] = min(127, i32(round(opaque(iscale * IN[xb + 16u * j + 4u * w + k]))));
                s += q[k];
            }
            OUT[o0 + 64u * b + 4u * j + w] = pack4(q[0], q[1], q[2], q[3]);
        }
        OUT[bs + j] = bitcast<u32>(s);
    }
    OUT[o0 + P.K / 4u + b] = bitcast<u32>(div_rn(1.0, iscale));
}
