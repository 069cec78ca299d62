//#if SUBGROUPS_ENABLE
enable subgroups;
//#endif
// matmul.wgsl: y[t][y_off + r] (+)= sum_k W[r][k] * x[t][k] for the rows r of one
// weight tensor (or of one part of a split tensor) and the n tokens of a step,
// for every weight type the CPU core runs. Matrix-vector (n = 1) and
// matrix-matrix (n > 1) are the same kernel with other overrides.
//
// Weights: raw GGUF blocks (quant.wgsl). Activations: as the CPU core has them,
// already converted by quantize.wgsl to the weight type's vec_dot type, so the
// integer block sums are exact and the float combination is ggml's:
//   F32/F16/BF16  x in f32 (F16/BF16: rounded to f16/bf16), sum of w * x
//   Q4_0 Q5_0 Q8_0   d_w * d_x * isum                 (Q8_0 activations)
//   Q4_1 Q5_1 Q8_1   d_w * d_x * isum + m_w * s_x     (Q8_1 activations)
//   K-quants        d * d_x * sum_j sc_j isum_j - dmin * d_x * sum_j m_j bsum_j  (Q8_K)
// Activation row layout (u32 words, row stride P.xs):
//   float kinds: K f32
//   Q8_0 / Q8_1: K/4 words of packed i8 quants | K/32 f32 d | (Q8_1) K/32 f32 s
//   Q8_K:        K/4 words of packed i8 quants | K/256 f32 d | K/16 i32 bsums of 16
//
// Float sums follow the CPU kernels (core/quant_q.c, quant_k.c, quant_float.c)
// operation for operation, so every result is the CPU's bit for bit: 32-element
// blocks add one f32 term per block (the block's exact integer sum times
// d_w * d_x) in block order, K-quants one per super-block (then subtract the
// mins' term), float weights keep eight f32 lanes (k mod 8) and end with the
// CPU's horizontal sum and the scalar tail. opq() hides each intermediate from
// the compiler (a bit-or with a runtime zero) so nothing is fused into a
// multiply-add or reassociated.
//
// Work split: a workgroup of WG invocations computes WG/TPR rows.
//   TPR = 1: an invocation computes a whole row for TT tokens (weights decoded
//            once per TT tokens): the matrix-matrix kernel, and the matrix-vector
//            one on CPU adapters.
//   TPR > 1 (TT = 1, the matrix-vector kernel on GPUs): the TPR invocations of a
//            row compute TPR blocks' terms at a time in parallel, and the row's
//            first invocation adds them in block order (passing them through
//            workgroup memory, or with subgroup shuffles under SUBGROUPS when
//            TPR is at most the adapter's minimum subgroup size). Float weights
//            use TPR = 8: invocation j owns the CPU's lane j.
// The order of the float additions is the CPU's either way.
//
// EXPERTS (mixture of experts; TT = 1): W holds experts e0 .. e0 + ne - 1 of a 3-D expert
// tensor (N rows each); workgroup (y = j, z = t) computes slot s = t * KU + j: the expert
// SEL[s] (the router's j-th choice for token t; other parts' experts compute nothing
// stored) on activation row s / xdiv, into output row s.
// Bindings: 0 params, 1 step, 2 W (weights), 3 X (activations), 4 Y (f32 out), 5 SEL (EXPERTS).
//#include common.wgsl
//#include quant.wgsl

override QT: u32 = 3u;   // ggml type of W
override WG: u32 = 64u;  // invocations per workgroup
override TPR: u32 = 1u;  // invocations per row (power of two, divides WG)
override TT: u32 = 1u;   // tokens per invocation (1..8)

struct Params {
    K: u32,          // row length (elements)
    N: u32,          // rows of W in this binding
    row_bytes: u32,  // bytes per row of W
    xs: u32,         // activation row stride (words)
    ys: u32,         // output row stride (floats)
    y_off: u32,      // output column of row 0 (first row of this part)
    accum: u32,      // 1: add to Y instead of overwriting it (residual connections)
    _pad: u32,
//#if EXPERTS
    e0: u32,         // first expert in this binding
    ne: u32,         // experts in this binding
    KU: u32,         // experts used per token (slots)
    xdiv: u32,       // activation row of slot s: s / xdiv
//#endif
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<uniform> S: Step;
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read> X: array<u32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
//#if EXPERTS
@group(0) @binding(5) var<storage, read> SEL: array<u32>;
//#endif

var<workgroup> termA: array<vec4<f32>, 256>;   // TPR > 1: one block's terms per invocation
var<workgroup> termB: array<vec4<f32>, 256>;

// A value the compiler cannot see through (P._pad is 0 at run time).
fn opq(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) | P._pad); }
fn opaque(x: f32) -> f32 { return opq(x); }
fn opq4(x: vec4<f32>) -> vec4<f32> { return bitcast<vec4<f32>>(bitcast<vec4<u32>>(x) | vec4<u32>(P._pad)); }

fn xf(i: u32) -> f32 { return bitcast<f32>(X[i]); }

// Sum of q . x over the words [i0, i1) of a 32-element group (4 elements per word).
fn dot_words(q: array<u32, 8>, xq: u32, i0: u32, i1: u32) -> i32 {
    var s = 0;
    for (var i = i0; i < i1; i++) { s += dot4(q[i], X[xq + i]); }
    return s;
}

struct Acc {
    a: array<vec4<f32>, 8>,   // lanes 0..3 per token
    b: array<vec4<f32>, 8>,   // float weights: lanes 4..7
    m: array<f32, 8>,         // Q4_1 / Q5_1: sum of m * s
}

// Float weights: elements [32u, 32u + 32) of row r that fall in the 8-wide body
// (the CPU's two f32x4 accumulators); the tail past K & ~7 is added at the end.
fn unit_float(r: u32, u: u32, t0: u32, nt: u32, acc: ptr<function, Acc>) {
    let rb = r * P.row_bytes;
    let k0 = 32u * u;
    let ke = min(k0 + 32u, P.K & ~7u);
    for (var k8 = k0; k8 < ke; k8 += 8u) {
        let w0 = vec4<f32>(wfloat(QT, rb, k8), wfloat(QT, rb, k8 + 1u), wfloat(QT, rb, k8 + 2u), wfloat(QT, rb, k8 + 3u));
        let w1 = vec4<f32>(wfloat(QT, rb, k8 + 4u), wfloat(QT, rb, k8 + 5u), wfloat(QT, rb, k8 + 6u), wfloat(QT, rb, k8 + 7u));
        for (var tt = 0u; tt < TT; tt++) {
            if (tt < nt) {
                let xb = (t0 + tt) * P.xs + k8;
                let x0 = vec4<f32>(xf(xb), xf(xb + 1u), xf(xb + 2u), xf(xb + 3u));
                let x1 = vec4<f32>(xf(xb + 4u), xf(xb + 5u), xf(xb + 6u), xf(xb + 7u));
                (*acc).a[tt] = opq4((*acc).a[tt] + opq4(w0 * x0));
                (*acc).b[tt] = opq4((*acc).b[tt] + opq4(w1 * x1));
            }
        }
    }
}

// 32-element block types: block u of row r.
fn unit_q(r: u32, u: u32, t0: u32, nt: u32, acc: ptr<function, Acc>) {
    let blk = r * P.row_bytes + u * block_bytes(QT);
    let q = qgroup(QT, blk, 0u);
    let d = wf16(blk);
    let has_m = QT == T_Q4_1 || QT == T_Q5_1;
    let m = select(0.0, wf16(blk + 2u), has_m);
    let off = q_offset(QT);
    let nb = P.K / 32u;
    for (var tt = 0u; tt < TT; tt++) {
        if (tt < nt) {
            let xr = (t0 + tt) * P.xs;
            let xq = xr + 8u * u;
            var is = 0;  // the block's whole integer sum, then one float step (core/quant_q.c)
            for (var i = 0u; i < 8u; i++) { is += dot4(q[i], X[xq + i]); }
            if (off != 0) {
                var sx = 0;
                for (var i = 0u; i < 8u; i++) { sx += sum4(X[xq + i]); }
                is -= off * sx;
            }
            let dd = opq(d * xf(xr + P.K / 4u + u));
            (*acc).a[tt].x = opq((*acc).a[tt].x + opq(f32(is) * dd));
            if (has_m) { (*acc).m[tt] = opq((*acc).m[tt] + opq(m * xf(xr + P.K / 4u + nb + u))); }
        }
    }
}

// K-quants: super-block u of row r.
fn unit_k(r: u32, u: u32, t0: u32, nt: u32, acc: ptr<function, Acc>) {
    let blk = r * P.row_bytes + u * block_bytes(QT);
    let off = q_offset(QT);
    let nsb = P.K / 256u;
    var isum: array<i32, 8>;
    for (var g = 0u; g < 8u; g++) {
        let q = qgroup(QT, blk, g);
        var sa: i32;
        var sb: i32;
        if (QT == T_Q4_K || QT == T_Q5_K) {
            sa = k_scale(QT, blk, g);
            sb = sa;
        } else {
            sa = k_scale(QT, blk, 2u * g);
            sb = k_scale(QT, blk, 2u * g + 1u);
        }
        for (var tt = 0u; tt < TT; tt++) {
            if (tt < nt) {
                let xr = (t0 + tt) * P.xs;
                let xq = xr + 64u * u + 8u * g;
                var la = dot_words(q, xq, 0u, 4u);
                var lb = dot_words(q, xq, 4u, 8u);
                if (off != 0) {  // the activations' sums of 16 (bsums) carry the offset
                    let bs = xr + P.K / 4u + nsb + 16u * u + 2u * g;
                    la -= off * bitcast<i32>(X[bs]);
                    lb -= off * bitcast<i32>(X[bs + 1u]);
                }
                isum[tt] += sa * la + sb * lb;
            }
        }
    }
    let d = k_d(QT, blk);
    let has_min = QT == T_Q2_K || QT == T_Q4_K || QT == T_Q5_K;
    let dmin = select(0.0, k_dmin(QT, blk), has_min);
    for (var tt = 0u; tt < TT; tt++) {
        if (tt < nt) {
            let xr = (t0 + tt) * P.xs;
            let dy = xf(xr + P.K / 4u + u);
            (*acc).a[tt].x = opq((*acc).a[tt].x + opq(f32(isum[tt]) * opq(d * dy)));
            if (has_min) {
                let mi = k_msum(blk, xr + P.K / 4u + nsb + 16u * u);
                (*acc).a[tt].x = opq((*acc).a[tt].x - opq(f32(mi) * opq(dmin * dy)));
            }
        }
    }
}

// sum_j m_j * bsum_j of a super-block (exact): Q2_K per 16 elements, Q4_K / Q5_K per 32.
fn k_msum(blk: u32, bs: u32) -> i32 {
    var mi = 0;
    if (QT == T_Q2_K) {
        for (var j = 0u; j < 16u; j++) { mi += k_min(QT, blk, j) * bitcast<i32>(X[bs + j]); }
    } else {
        for (var j = 0u; j < 8u; j++) {
            mi += k_min(QT, blk, j) * (bitcast<i32>(X[bs + 2u * j]) + bitcast<i32>(X[bs + 2u * j + 1u]));
        }
    }
    return mi;
}

// The CPU's horizontal sum (qi_hsum_f32): (l0 + l2) + (l1 + l3).
fn hsum(v: vec4<f32>) -> f32 { return opq(opq(v.x + v.z) + opq(v.y + v.w)); }

// The terms block u of row r adds to the row's accumulators for token t: the
// pieces of unit_q / unit_k, for the TPR > 1 split. A: main term (legacy: x =
// f32(isum) * d_w d_x, y = m_w * s_x; K-quants: x = f32(isum) * d d_x), B: K-quants: x = f32(msum) * dmin d_x.
fn block_terms(r: u32, u: u32, t: u32, ta: ptr<function, vec4<f32>>, tb: ptr<function, vec4<f32>>) {
    var acc: Acc;
    if (is_k_type(QT)) {
        unit_k_terms(r, u, t, ta, tb);
    } else {
        unit_q(r, u, t, 1u, &acc);
        *ta = vec4<f32>(acc.a[0].x, acc.m[0], 0.0, 0.0);   // 0 + term: exact
        *tb = vec4<f32>(0.0);
    }
}

// unit_k's two terms for one token, without adding them up.
fn unit_k_terms(r: u32, u: u32, t: u32, ta: ptr<function, vec4<f32>>, tb: ptr<function, vec4<f32>>) {
    let blk = r * P.row_bytes + u * block_bytes(QT);
    let off = q_offset(QT);
    let nsb = P.K / 256u;
    var isum = 0;
    for (var g = 0u; g < 8u; g++) {
        let q = qgroup(QT, blk, g);
        var sa: i32;
        var sb: i32;
        if (QT == T_Q4_K || QT == T_Q5_K) {
            sa = k_scale(QT, blk, g);
            sb = sa;
        } else {
            sa = k_scale(QT, blk, 2u * g);
            sb = k_scale(QT, blk, 2u * g + 1u);
        }
        let xq = t * P.xs + 64u * u + 8u * g;
        var la = dot_words(q, xq, 0u, 4u);
        var lb = dot_words(q, xq, 4u, 8u);
        if (off != 0) {
            let bs = t * P.xs + P.K / 4u + nsb + 16u * u + 2u * g;
            la -= off * bitcast<i32>(X[bs]);
            lb -= off * bitcast<i32>(X[bs + 1u]);
        }
        isum += sa * la + sb * lb;
    }
    let xr = t * P.xs;
    let dy = xf(xr + P.K / 4u + u);
    *ta = vec4<f32>(opq(f32(isum) * opq(k_d(QT, blk) * dy)), 0.0, 0.0, 0.0);
    *tb = vec4<f32>(0.0);
    if (QT == T_Q2_K || QT == T_Q4_K || QT == T_Q5_K) {
        let mi = k_msum(blk, xr + P.K / 4u + nsb + 16u * u);
        *tb = vec4<f32>(opq(f32(mi) * opq(k_dmin(QT, blk) * dy)), 0.0, 0.0, 0.0);
    }
}

// Add one block's terms to the row's accumulators (token 0), as the CPU does.
fn add_terms(acc: ptr<function, Acc>, ta: vec4<f32>, tb: vec4<f32>) {
    if (is_k_type(QT)) {
        (*acc).a[0].x = opq(opq((*acc).a[0].x + ta.x) - tb.x);
    } else {
        (*acc).a[0].x = opq((*acc).a[0].x + ta.x);
        (*acc).m[0] = opq((*acc).m[0] + ta.y);
    }
}

// The row's result for token tt from its accumulators (float weights: plus the tail).
fn finish(acc: ptr<function, Acc>, rr: u32, t: u32, tt: u32) -> f32 {
    if (is_float_type(QT)) {
        var y = hsum(opq4((*acc).a[tt] + (*acc).b[tt]));
        let xb = t * P.xs;
        for (var k = P.K & ~7u; k < P.K; k++) {  // the tail, in order, as the CPU
            y = opq(y + opq(wfloat(QT, rr * P.row_bytes, k) * xf(xb + k)));
        }
        return y;
    }
    return opq(hsum((*acc).a[tt]) + (*acc).m[tt]);
}

fn store(r: u32, t: u32, y: f32) {
    let i = t * P.ys + P.y_off + r;
    if (P.accum != 0u) { Y[i] = Y[i] + y; } else { Y[i] = y; }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32
//#if SUBGROUPS
        , @builtin(subgroup_invocation_id) sgi: u32
//#endif
        ) {
    let rows_per_wg = WG / TPR;
    let lane = lid % TPR;
//#if EXPERTS
    let r = wid.x * rows_per_wg + lid / TPR;
    let slot = wid.z * P.KU + wid.y;
    let e = SEL[min(slot, arrayLength(&SEL) - 1u)];
    let valid = wid.z < S.n && e >= P.e0 && e < P.e0 + P.ne;  // else: compute, store nothing
    let t0 = slot / P.xdiv;      // activation row
    let yt = slot;               // output row
    let nt = select(0u, 1u, valid);
    let rr = min(r, P.N - 1u);
    let wr = min(e - P.e0, P.ne - 1u) * P.N + rr;  // the expert's row in this binding
//#else
    let r = (wid.x + wid.y * nwg.x) * rows_per_wg + lid / TPR;
    let t0 = wid.z * TT;
    let yt = t0;
    let valid = true;
    let nt = min(TT, S.n - min(t0, S.n));
    let rr = min(r, P.N - 1u);  // rows past the end compute row N-1 and write nothing
    let wr = rr;
//#endif
    var acc: Acc;
    var units: u32;
    if (is_float_type(QT)) {
        units = (P.K + 31u) / 32u;
    } else {
        units = P.K / block_elems(QT);
    }
    if (TPR == 1u) {
        for (var u = 0u; u < units; u++) {
            if (is_float_type(QT)) {
                unit_float(wr, u, t0, nt, &acc);
            } else if (is_k_type(QT)) {
                unit_k(wr, u, t0, nt, &acc);
            } else {
                unit_q(wr, u, t0, nt, &acc);
            }
        }
        if (r < P.N && valid) {
            for (var tt = 0u; tt < TT; tt++) {
                if (tt < nt) { store(r, yt + tt, finish(&acc, wr, t0 + tt, tt)); }
            }
        }
        return;
    }
    // TPR > 1: one token (t0); TT is 1
    if (is_float_type(QT)) {
        // invocation `lane` sums the CPU's lanes j = lane, lane + TPR, ... (< 8): elements
        // k = j (mod 8) of the 8-wide body, in order; the row's lane 0 gathers the eight.
        var a: array<f32, 8>;
        let rb = wr * P.row_bytes;
        let xb = t0 * P.xs;
        for (var j = lane; j < 8u; j += TPR) {
            var s = 0.0;
            for (var k = j; k < (P.K & ~7u); k += 8u) {
                s = opq(s + opq(wfloat(QT, rb, k) * xf(xb + k)));
            }
            a[j] = s;
        }
        termA[lid] = vec4<f32>(a[0], a[1], a[2], a[3]);
        termB[lid] = vec4<f32>(a[4], a[5], a[6], a[7]);
        workgroupBarrier();
        if (lane == 0u && r < P.N && valid) {
            var la = vec4<f32>(0.0);
            var lb = vec4<f32>(0.0);
            for (var i = 0u; i < min(TPR, 8u); i++) {  // each lane is nonzero in one invocation only: exact
                la += termA[lid + i];
                lb += termB[lid + i];
            }
            acc.a[0] = la;
            acc.b[0] = lb;
            store(r, yt, finish(&acc, wr, t0, 0u));
        }
        return;
    }
    let nchunks = (units + TPR - 1u) / TPR;
    for (var c = 0u; c < nchunks; c++) {
        let u = c * TPR + lane;
        var ta = vec4<f32>(0.0);
        var tb = vec4<f32>(0.0);
        if (u < units) { block_terms(wr, u, t0, &ta, &tb); }
        let cnt = min(TPR, units - c * TPR);
//#if SUBGROUPS
        let first = sgi - lane;  // the row's lane 0 in this subgroup
        for (var j = 0u; j < TPR; j++) {
            let a = subgroupShuffle(ta, first + j);
            let b = subgroupShuffle(tb, first + j);
            if (lane == 0u && j < cnt) { add_terms(&acc, a, b); }
        }
//#else
        termA[lid] = ta;
        termB[lid] = tb;
        workgroupBarrier();
        if (lane == 0u) {
            for (var j = 0u; j < cnt; j++) { add_terms(&acc, termA[lid + j], termB[lid + j]); }
        }
        workgroupBarrier();
//#endif
    }
    if (lane == 0u && r < P.N && valid) { store(r, yt, finish(&acc, wr, t0, 0u)); }
}
