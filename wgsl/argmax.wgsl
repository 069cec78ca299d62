//#if SUBGROUPS_ENABLE
enable subgroups;
//#endif
// argmax.wgsl: greedy sampling on the GPU. OUT[0] = the index of the first
// largest logit of the last logits row (the CPU sampler's std::max_element
// rule), OUT[1] = its value (f32 bits). One workgroup; only 8 bytes go back.
// Bindings: 0 params, 1 step (head), 2 L (f32 logits), 3 OUT (u32).
//#include common.wgsl

override WG: u32 = 256u;

struct Params {
    V: u32,     // n_vocab (row length)
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> L: array<f32>;
@group(0) @binding(3) var<storage, read_write> OUT: array<u32>;

var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;

// (v, i) beats (w, j): larger value, or the same value at a smaller index
fn better(v: f32, i: u32, w: f32, j: u32) -> bool { return v > w || (v == w && i < j); }

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    let row = (S.n - 1u) * P.V;
    var best = LOWEST;
    var bidx = 0xffffffffu;
    for (var i = lid; i < P.V; i += WG) {
        let v = L[row + i];
        if (v > best || bidx == 0xffffffffu) { best = v; bidx = i; }  // strided: first max of this lane
    }
    bv[lid] = best;
    bi[lid] = bidx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (lid < s && better(bv[lid + s], bi[lid + s], bv[lid], bi[lid])) {
            bv[lid] = bv[lid + s];
            bi[lid] = bi[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        OUT[0] = bi[0];
        OUT[1] = bitcast<u32>(bv[0]);
    }
}
