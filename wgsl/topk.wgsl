// topk.wgsl: the k largest logits of the last logits row, for sampling with
// top-k on the GPU: only k (index, value) pairs go back, and the core's
// sampler finishes (top-p, min-p, temperature, the draw) on them.
// Radix select over order-preserving keys of the f32 values (4 passes of 8
// bits) finds the k-th largest value; then every larger value and as many
// equal ones as needed are written out (in no particular order: the core
// sorts them). OUT[0] = count (= min(k, V)), OUT[2 + 2i] = index, OUT[3 + 2i] = value bits.
// One workgroup. Bindings: 0 params, 1 step (head; S.k = k), 2 L (f32), 3 OUT (u32).
//#include common.wgsl

override WG: u32 = 256u;

struct Params {
    V: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> L: array<f32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<u32>;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> sel: array<u32, 2>;       // prefix found so far, how many equal ones are still wanted
var<workgroup> counts: array<atomic<u32>, 2>;  // written, equal ones taken

fn key(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    let row = (S.n - 1u) * P.V;
    let k = min(S.k, P.V);
    if (lid == 0u) {
        sel[0] = 0u;
        sel[1] = k;
        atomicStore(&counts[0], 0u);
        atomicStore(&counts[1], 0u);
    }
    var mask = 0u;
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        for (var b = lid; b < 256u; b += WG) { atomicStore(&hist[b], 0u); }
        workgroupBarrier();
        let prefix = sel[0];
        for (var i = lid; i < P.V; i += WG) {
            let kk = key(L[row + i]);
            if ((kk & mask) == prefix) { atomicAdd(&hist[(kk >> shift) & 255u], 1u); }
        }
        workgroupBarrier();
        if (lid == 0u) {
            var want = sel[1];
            var b = 255u;
            loop {
                let c = atomicLoad(&hist[b]);
                if (c >= want || b == 0u) { break; }
                want -= c;
                b -= 1u;
            }
            sel[0] = prefix | (b << shift);
            sel[1] = want;
        }
        mask |= 255u << shift;
        workgroupBarrier();
    }
    let kth = sel[0];
    let n_eq = sel[1];
    for (var i = lid; i < P.V; i += WG) {
        let v = L[row + i];
        let kk = key(v);
        var take = kk > kth;
        if (kk == kth) { take = atomicAdd(&counts[1], 1u) < n_eq; }
        if (take) {
            let slot = atomicAdd(&counts[0], 1u);
            OUT[2u + 2u * slot] = i;
            OUT[3u + 2u * slot] = bitcast<u32>(v);
        }
    }
    workgroupBarrier();
    if (lid == 0u) { OUT[0] = atomicLoad(&counts[0]); }
}
