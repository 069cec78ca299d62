// softmax.wgsl: probabilities of the logits rows, in place:
// p = exp((l - max) / temperature) / sum. One workgroup per row.
// (Attention has its own softmax, fused into attention.wgsl.)
// Bindings: 0 params, 1 step (head), 2 L (f32, in/out).
//#include common.wgsl

override WG: u32 = 256u;

struct Params {
    V: u32,
    inv_temp: u32,   // f32 bits: 1 / temperature
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read_write> L: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wid.z;
    if (t >= S.n) { return; }
    let row = t * P.V;
    let it = bitcast<f32>(P.inv_temp);
    var mx = LOWEST;
    for (var i = lid; i < P.V; i += WG) { mx = max(mx, L[row + i]); }
    red[lid] = mx;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    var sum = 0.0;
    for (var i = lid; i < P.V; i += WG) {
        let e = exp((L[row + i] - m) * it);
        L[row + i] = e;
        sum += e;
    }
    red[lid] = sum;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s /= 2u) {
        if (lid < s) { red[lid] += red[lid + s]; }
        workgroupBarrier();
    }
    let inv = 1.0 / red[0];
    for (var i = lid; i < P.V; i += WG) { L[row + i] = L[row + i] * inv; }
}
