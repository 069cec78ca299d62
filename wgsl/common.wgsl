// common.wgsl: helpers shared by every kernel (included with `//#include common.wgsl`).
//
// Numerics follow the CPU core (core/rt.c, core/quant_*.c): f16 conversions are
// done with integer operations, so they round to nearest even on every adapter
// whatever its float modes (flush-to-zero, relaxed conversions) are.

// The per-step values every op can read (binding 1): written by the host before
// each submission, one copy for the layers ("body") and one for the output head.
struct Step {
    n: u32,       // rows this op handles: tokens in the batch (body), logits rows (head)
    n_past: u32,  // tokens already in the KV cache before this batch
    t0: u32,      // head: first batch row whose logits are wanted; body: 0, or in a batch of
                  // several sessions a session op's first row (rope_kv, attention)
    k: u32,       // head: top-k candidates wanted (sampling); body: 0
}

// The lowest finite f32: the start of every running maximum (WGSL constants cannot
// be infinite; Tint rejects even a bitcast to -inf).
const LOWEST: f32 = -0x1.fffffep+127f;

// f16 bits (low 16 bits of h) -> f32, exact.
fn f16_to_f32(h: u32) -> f32 { return unpack2x16float(h).x; }

// f32 -> f16 bits, round to nearest even, as rt_f32_to_f16 (ggml's rounding).
fn f32_to_f16(f: f32) -> u32 {
    let x = bitcast<u32>(f);
    let sign = (x >> 16u) & 0x8000u;
    let ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) { return sign | 0x7c00u | select(0u, 0x200u, ax > 0x7f800000u); }
    if (ax >= 0x477ff000u) { return sign | 0x7c00u; }
    if (ax < 0x38800000u) {
        if (ax < 0x33000000u) { return sign; }
        let e = ax >> 23u;
        let m = (ax & 0x7fffffu) | 0x800000u;
        let shift = 126u - e;
        var h = m >> shift;
        let rem = m & ((1u << shift) - 1u);
        let mid = 1u << (shift - 1u);
        if (rem > mid || (rem == mid && (h & 1u) == 1u)) { h += 1u; }
        return sign | h;
    }
    var h = (ax - 0x38000000u) >> 13u;
    let rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)) { h += 1u; }
    return sign | h;
}

// x rounded to f16 and back (llama.cpp's f16 KV cache, f16 attention inputs).
fn f16_round(x: f32) -> f32 { return f16_to_f32(f32_to_f16(x)); }

fn bf16_to_f32(h: u32) -> f32 { return bitcast<f32>((h & 0xffffu) << 16u); }

// f32 -> bf16 bits, round to nearest even, NaN quieted (ggml_compute_fp32_to_bf16).
fn f32_to_bf16(f: f32) -> u32 {
    let u = bitcast<u32>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) { return ((u >> 16u) | 64u) & 0xffffu; }
    return ((u + 0x7fffu + ((u >> 16u) & 1u)) >> 16u) & 0xffffu;
}

// Sum of four signed bytes times four signed bytes.
fn dot4(a: u32, b: u32) -> i32 { return dot4I8Packed(a, b); }

// Sum of the four signed bytes of b.
fn sum4(b: u32) -> i32 { return dot4I8Packed(0x01010101u, b); }

// Pack the low byte of four ints into one word, element 0 in the low byte.
fn pack4(a: i32, b: i32, c: i32, d: i32) -> u32 {
    return (u32(a) & 0xffu) | ((u32(b) & 0xffu) << 8u) | ((u32(c) & 0xffu) << 16u) | ((u32(d) & 0xffu) << 24u);
}

// Bits 0..3 of x spread to the low bit of each byte.
fn spread4(x: u32) -> u32 {
    return (x & 1u) | ((x & 2u) << 7u) | ((x & 4u) << 14u) | ((x & 8u) << 21u);
}

