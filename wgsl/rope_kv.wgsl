//#if F16
enable f16;
//#endif
// rope_kv.wgsl: RoPE on the new keys, then keys and values into the f16 KV cache
// at positions n_past + t (core/batch.c: rope(), then rt_f32_to_f16); the new rows
// are rows t0 + t of K and V (t0 = 0 alone; a session's first row in a batch). The
// rotation's cos/sin come from the core (realm_gpu_rope_table), so they are
// the CPU's values bit for bit. Queries are rotated inside attention.wgsl.
// One invocation per pair of cache elements (one cache word).
// Bindings: 0 params, 1 step, 2 K (f32), 3 V (f32), 4 KC, 5 VC (cache of one
// layer: n_ctx rows of KVD f16, two per word), 6 ROPE (vec2 f32 per position and pair).
//#include common.wgsl
//#include rope.wgsl

override WG: u32 = 64u;

struct Params {
    KVD: u32,    // n_head_kv * head_dim
    D: u32,      // head_dim
    nd: u32,     // rotated dimensions per head (rope_dim)
    neox: u32,   // 1: rotate (i, i + nd/2) pairs (NEOX); 0: (2i, 2i+1)
    xs: u32,     // row stride of K and V (floats)
    zero: u32,   // 0 (read at run time: see opaque)
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;
//#if F16
@group(0) @binding(4) var<storage, read_write> KC: array<vec2<f16>>;
@group(0) @binding(5) var<storage, read_write> VC: array<vec2<f16>>;
//#else
@group(0) @binding(4) var<storage, read_write> KC: array<u32>;
@group(0) @binding(5) var<storage, read_write> VC: array<u32>;
//#endif
@group(0) @binding(6) var<storage, read> ROPE: array<vec2<f32>>;

fn kval(row: u32, e: u32, pos: u32) -> f32 {
    return rope_elem(row, e, P.D, P.nd, P.neox, pos);
}

fn src(i: u32) -> f32 { return K[i]; }
fn opaque(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) | P.zero); }

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let t = wid.z;
    let w = gid.x;
    if (t >= S.n || 2u * w >= P.KVD) { return; }
    let pos = S.n_past + t;
    let row = (S.t0 + t) * P.xs;
    let k0 = f32_to_f16(kval(row, 2u * w, pos));
    let k1 = f32_to_f16(kval(row, 2u * w + 1u, pos));
    let v0 = f32_to_f16(V[row + 2u * w]);
    let v1 = f32_to_f16(V[row + 2u * w + 1u]);
    let c = pos * (P.KVD / 2u) + w;
//#if F16
    // exact: the values are already f16
    KC[c] = vec2<f16>(unpack2x16float(k0 | (k1 << 16u)));
    VC[c] = vec2<f16>(unpack2x16float(v0 | (v1 << 16u)));
//#else
    KC[c] = k0 | (k1 << 16u);
    VC[c] = v0 | (v1 << 16u);
//#endif
}
