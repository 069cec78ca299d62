// quant.wgsl: reading ggml weight blocks straight out of the GGUF bytes.
//
// The including kernel declares the weights as `W: array<u32>` (raw GGUF
// tensor bytes, little-endian, uploaded without repacking). Block layouts are
// ggml's (ggml-common.h; summarised in core/quant_impl.h). A group is 32
// consecutive elements: the whole block of the 32-element types, one eighth
// of a super-block of the K-quants. qgroup() returns a group's quants packed
// four per word (element 4i + k in byte k of word i) as small non-negative
// bytes; q_offset() is what to subtract from each to get the signed value.

const T_F32: u32 = 0u;
const T_F16: u32 = 1u;
const T_Q4_0: u32 = 2u;
const T_Q4_1: u32 = 3u;
const T_Q5_0: u32 = 6u;
const T_Q5_1: u32 = 7u;
const T_Q8_0: u32 = 8u;
const T_Q8_1: u32 = 9u;
const T_Q2_K: u32 = 10u;
const T_Q3_K: u32 = 11u;
const T_Q4_K: u32 = 12u;
const T_Q5_K: u32 = 13u;
const T_Q6_K: u32 = 14u;
const T_Q8_K: u32 = 15u;
const T_BF16: u32 = 30u;

fn is_float_type(t: u32) -> bool { return t == T_F32 || t == T_F16 || t == T_BF16; }
fn is_k_type(t: u32) -> bool { return t >= T_Q2_K && t <= T_Q8_K; }

// Elements per block and bytes per block.
fn block_elems(t: u32) -> u32 {
    if (is_float_type(t)) { return 1u; }
    if (is_k_type(t)) { return 256u; }
    return 32u;
}
fn block_bytes(t: u32) -> u32 {
    switch t {
        case 0u: { return 4u; }
        case 1u, 30u: { return 2u; }
        case 2u: { return 18u; }
        case 3u: { return 20u; }
        case 6u: { return 22u; }
        case 7u: { return 24u; }
        case 8u: { return 34u; }
        case 9u: { return 36u; }
        case 10u: { return 84u; }
        case 11u: { return 110u; }
        case 12u: { return 144u; }
        case 13u: { return 176u; }
        case 14u: { return 210u; }
        default: { return 292u; }  // Q8_K
    }
}

// ------------------------------------------------------------ byte access
fn wbyte(off: u32) -> u32 { return (W[off >> 2u] >> ((off & 3u) * 8u)) & 0xffu; }
// 16 bits at an even byte offset
fn w16(off: u32) -> u32 { return (W[off >> 2u] >> ((off & 2u) * 8u)) & 0xffffu; }
// 32 bits at any byte offset
fn w32(off: u32) -> u32 {
    let i = off >> 2u;
    let s = (off & 3u) * 8u;
    if (s == 0u) { return W[i]; }
    return (W[i] >> s) | (W[i + 1u] << (32u - s));
}
fn wf16(off: u32) -> f32 { return f16_to_f32(w16(off)); }

// What to subtract from qgroup()'s bytes.
fn q_offset(t: u32) -> i32 {
    switch t {
        case 2u: { return 8; }
        case 6u: { return 16; }
        case 11u: { return 4; }
        case 14u: { return 32; }
        default: { return 0; }
    }
}

// The 32 quants of group g of the block starting at byte blk.
fn qgroup(t: u32, blk: u32, g: u32) -> array<u32, 8> {
    var q: array<u32, 8>;
    switch t {
        case 2u, 3u: {  // Q4_0, Q4_1: nibbles, low halves first
            let qs = blk + select(2u, 4u, t == T_Q4_1);
            for (var i = 0u; i < 4u; i++) {
                let v = w32(qs + 4u * i);
                q[i] = v & 0x0f0f0f0fu;
                q[i + 4u] = (v >> 4u) & 0x0f0f0f0fu;
            }
        }
        case 6u, 7u: {  // Q5_0, Q5_1: nibbles plus a fifth bit from qh
            let one = t == T_Q5_1;
            let qh = w32(blk + select(2u, 4u, one));
            let qs = blk + select(6u, 8u, one);
            for (var i = 0u; i < 4u; i++) {
                let v = w32(qs + 4u * i);
                q[i] = (v & 0x0f0f0f0fu) | (spread4((qh >> (4u * i)) & 15u) << 4u);
                q[i + 4u] = ((v >> 4u) & 0x0f0f0f0fu) | (spread4((qh >> (16u + 4u * i)) & 15u) << 4u);
            }
        }
        case 8u, 9u: {  // Q8_0, Q8_1: bytes
            let qs = blk + select(2u, 4u, t == T_Q8_1);
            for (var i = 0u; i < 8u; i++) { q[i] = w32(qs + 4u * i); }
        }
        case 10u: {  // Q2_K
            let qs = blk + 16u + 32u * (g >> 2u);
            let sh = 2u * (g & 3u);
            for (var i = 0u; i < 8u; i++) { q[i] = (w32(qs + 4u * i) >> sh) & 0x03030303u; }
        }
        case 11u: {  // Q3_K: two low bits from qs, the third from hmask
            let qs = blk + 32u + 32u * (g >> 2u);
            let sh = 2u * (g & 3u);
            let hs = 4u * (g >> 2u) + (g & 3u);
            for (var i = 0u; i < 8u; i++) {
                let lo = (w32(qs + 4u * i) >> sh) & 0x03030303u;
                let hb = (w32(blk + 4u * i) >> hs) & 0x01010101u;
                q[i] = lo | (hb << 2u);
            }
        }
        case 12u: {  // Q4_K
            let qs = blk + 16u + 32u * (g >> 1u);
            let sh = 4u * (g & 1u);
            for (var i = 0u; i < 8u; i++) { q[i] = (w32(qs + 4u * i) >> sh) & 0x0f0f0f0fu; }
        }
        case 13u: {  // Q5_K
            let qs = blk + 48u + 32u * (g >> 1u);
            let sh = 4u * (g & 1u);
            for (var i = 0u; i < 8u; i++) {
                let hb = (w32(blk + 16u + 4u * i) >> g) & 0x01010101u;
                q[i] = ((w32(qs + 4u * i) >> sh) & 0x0f0f0f0fu) | (hb << 4u);
            }
        }
        case 14u: {  // Q6_K
            let h = g >> 2u;
            let j = g & 3u;
            let ql = blk + 64u * h + 32u * (j & 1u);
            let qh = blk + 128u + 32u * h;
            let sl = 4u * (j >> 1u);
            let sh = 2u * j;
            for (var i = 0u; i < 8u; i++) {
                let lo = (w32(ql + 4u * i) >> sl) & 0x0f0f0f0fu;
                let hi = (w32(qh + 4u * i) >> sh) & 0x03030303u;
                q[i] = lo | (hi << 4u);
            }
        }
        default: {  // Q8_K
            for (var i = 0u; i < 8u; i++) { q[i] = w32(blk + 4u + 32u * g + 4u * i); }
        }
    }
    return q;
}

// ------------------------------------------------------ K-quant scales
// Integer scales of the two 16-element halves of group g (the same for both
// halves of Q4_K / Q5_K; 1 for Q8_K), and the group's integer min (Q4_K, Q5_K)
// or the two halves' mins (Q2_K) packed as min_a | min_b << 16.
fn k_scale(t: u32, blk: u32, half: u32) -> i32 {
    switch t {
        case 10u: { return i32(wbyte(blk + half) & 15u); }           // half = 0..15
        case 11u: {                                                   // Q3_K, scales_q3k
            let j = half;
            let s = blk + 96u;
            var lo: u32;
            if (j < 8u) { lo = wbyte(s + j) & 15u; } else { lo = wbyte(s + j - 8u) >> 4u; }
            let hi = (wbyte(s + 8u + (j & 3u)) >> (2u * (j >> 2u))) & 3u;
            return i32(lo | (hi << 4u)) - 32;
        }
        case 12u, 13u: {                                              // half = group 0..7
            let j = half;
            let q = blk + 4u;
            if (j < 4u) { return i32(wbyte(q + j) & 63u); }
            return i32((wbyte(q + j + 4u) & 15u) | ((wbyte(q + j - 4u) >> 6u) << 4u));
        }
        case 14u: {                                                   // Q6_K: i8 scales
            let v = wbyte(blk + 192u + half);
            return i32(v) - select(0, 256, v >= 128u);
        }
        default: { return 1; }
    }
}
// Q2_K min of 16-element half j; Q4_K/Q5_K min of group j.
fn k_min(t: u32, blk: u32, j: u32) -> i32 {
    if (t == T_Q2_K) { return i32(wbyte(blk + j) >> 4u); }
    let q = blk + 4u;
    if (j < 4u) { return i32(wbyte(q + j + 4u) & 63u); }
    return i32((wbyte(q + j + 4u) >> 4u) | ((wbyte(q + j) >> 6u) << 4u));
}
// Super-block scale d and min scale dmin.
fn k_d(t: u32, blk: u32) -> f32 {
    switch t {
        case 10u: { return wf16(blk + 80u); }
        case 11u: { return wf16(blk + 108u); }
        case 12u, 13u: { return wf16(blk); }
        case 14u: { return wf16(blk + 208u); }
        default: { return bitcast<f32>(w32(blk)); }
    }
}
fn k_dmin(t: u32, blk: u32) -> f32 {
    if (t == T_Q2_K) { return wf16(blk + 82u); }
    return wf16(blk + 2u);
}

// ------------------------------------------------------ dequantization
// Element e (0..31) of group g as f32, bit-exact with core/quant_dequant.c. The
// including kernel defines opaque() (keeps a product out of a fused multiply-add).
fn qbyte(q: array<u32, 8>, e: u32) -> i32 { return i32((q[e >> 2u] >> (8u * (e & 3u))) & 0xffu); }

fn dequant_group(t: u32, blk: u32, g: u32) -> array<f32, 32> {
    var y: array<f32, 32>;
    let q = qgroup(t, blk, g);
    switch t {
        case 2u, 6u: {  // Q4_0, Q5_0: (q - off) * d
            let d = wf16(blk);
            let off = q_offset(t);
            for (var e = 0u; e < 32u; e++) { y[e] = f32(qbyte(q, e) - off) * d; }
        }
        case 3u, 7u: {  // Q4_1, Q5_1: q * d + m
            let d = wf16(blk);
            let m = wf16(blk + 2u);
            for (var e = 0u; e < 32u; e++) { y[e] = opaque(f32(qbyte(q, e)) * d) + m; }
        }
        case 8u, 9u: {
            let d = wf16(blk);
            for (var e = 0u; e < 32u; e++) { y[e] = f32(i32(qbyte(q, e) << 24u) >> 24u) * d; }
        }
        case 10u: {  // Q2_K: (d * sc) * q - dmin * m, per 16
            let d = k_d(t, blk);
            let dmin = k_dmin(t, blk);
            for (var e = 0u; e < 32u; e++) {
                let s = 2u * g + (e >> 4u);
                let dl = d * f32(k_scale(t, blk, s));
                let ml = dmin * f32(k_min(t, blk, s));
                y[e] = opaque(dl * f32(qbyte(q, e))) - ml;
            }
        }
        case 11u, 14u: {  // Q3_K, Q6_K: (d * sc) * (q - off)
            let d = k_d(t, blk);
            let off = q_offset(t);
            for (var e = 0u; e < 32u; e++) {
                let sc = k_scale(t, blk, 2u * g + (e >> 4u));
                y[e] = (d * f32(sc)) * f32(qbyte(q, e) - off);
            }
        }
        case 12u, 13u: {  // Q4_K, Q5_K: (d * sc) * q - dmin * m, per 32
            let dl = k_d(t, blk) * f32(k_scale(t, blk, g));
            let ml = k_dmin(t, blk) * f32(k_min(t, blk, g));
            for (var e = 0u; e < 32u; e++) { y[e] = opaque(dl * f32(qbyte(q, e))) - ml; }
        }
        default: {  // Q8_K: q * d (f32 d)
            let d = k_d(t, blk);
            for (var e = 0u; e < 32u; e++) { y[e] = f32(i32(qbyte(q, e) << 24u) >> 24u) * d; }
        }
    }
    return y;
}

// Element k of a float-typed row starting at byte off.
fn wfloat(t: u32, off: u32, k: u32) -> f32 {
    if (t == T_F32) { return bitcast<f32>(w32(off + 4u * k)); }
    let h = w16(off + 2u * k);
    if (t == T_F16) { return f16_to_f32(h); }
    return bf16_to_f32(h);
}
