// exact.wgsl: double-f32 arithmetic (included after common.wgsl by rmsnorm.wgsl and
// attention.wgsl; the including kernel defines opaque()).
// ---------------------------------------------------------------- exact sums
// The CPU core sums some things in double (RMSNorm's squares, the softmax
// denominator). Here: pairs of f32 (hi, lo) with error-free transformations.
// `opaque` (from the including kernel: x with a runtime zero or-ed into its
// bits) keeps the compiler from simplifying (s - a) - b and friends away.
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opaque(a + b);
    let bb = opaque(s - a);
    return vec2<f32>(s, opaque(opaque(a - opaque(s - bb)) + opaque(b - bb)));
}
// (hi, lo) + x
fn dd_add(a: vec2<f32>, x: f32) -> vec2<f32> {
    let t = two_sum(a.x, x);
    return vec2<f32>(t.x, opaque(a.y + t.y));
}
// (hi, lo) + (hi, lo)
fn dd_add2(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let t = two_sum(a.x, b.x);
    return vec2<f32>(t.x, opaque(opaque(a.y + b.y) + t.y));
}
// a * b exactly as hi + lo (Veltkamp/Dekker; no fused multiply-add needed)
fn split(a: f32) -> vec2<f32> {
    let c = opaque(4097.0 * a);
    let h = opaque(c - opaque(c - a));
    return vec2<f32>(h, opaque(a - h));
}
fn two_prod(a: f32, b: f32) -> vec2<f32> {
    let p = opaque(a * b);
    let x = split(a);
    let y = split(b);
    let e = opaque(opaque(opaque(opaque(x.x * y.x) - p) + opaque(x.x * y.y)) + opaque(x.y * y.x));
    return vec2<f32>(p, opaque(e + opaque(x.y * y.y)));
}
// f32 nearest to (hi + lo) / n
fn dd_div(a: vec2<f32>, n: f32) -> f32 {
    let q = opaque(a.x / n);
    let p = two_prod(q, n);
    let r = opaque(opaque(opaque(a.x - p.x) - p.y) + a.y);
    return opaque(q + opaque(r / n));
}

// a / b, b > 0 or < 0, rounded to nearest (one correction step on the residual)
fn div_rn(a: f32, b: f32) -> f32 {
    let q = opaque(a / b);
    let big = 0x1.fffffep+127f;
    if (q == 0.0 || !(abs(q) <= big) || !(abs(b) <= big) || !(abs(a) <= big)) { return q; }  // 0, inf, NaN
    let p = two_prod(q, b);
    let r = opaque(opaque(a - p.x) - p.y);
    return opaque(q + opaque(r / b));
}
// sqrt(x), x >= 0, rounded to nearest
fn sqrt_rn(x: f32) -> f32 {
    let s = opaque(sqrt(x));
    if (s == 0.0 || !(s <= 0x1.fffffep+127f)) { return s; }  // 0, inf, NaN
    let p = two_prod(s, s);
    let r = opaque(opaque(x - p.x) - p.y);
    return opaque(s + opaque(r / opaque(2.0 * s)));
}
fn fast_two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opaque(a + b);
    return vec2<f32>(s, opaque(b - opaque(s - a)));
}
fn dd_mul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let p = two_prod(a.x, b.x);
    let e = opaque(p.y + opaque(opaque(a.x * b.y) + opaque(a.y * b.x)));
    return fast_two_sum(p.x, e);
}
// exp(x) in f32 arithmetic, operation for operation the core's qi_expf_x4 (core/simd_exp.h:
// llama.cpp's ggml_v_expf without FMA, within 3 ulp): the softmax of attention and SiLU.
// Below -87.3: 0; above 88.37: inf; NaN: NaN.
fn exp_f32(x: f32) -> f32 {
    if (x != x) { return x; }
    if (x < -87.3) { return 0.0; }
    if (x > 88.37) { return bitcast<f32>(0x7f800000u | bitcast<u32>(opaque(0.0))); }  // +inf (not a constant: Tint rejects those)
    let magic = 0x1.8p23f;
    let z = opaque(opaque(x * 0x1.715476p+0f) + magic);
    let n = opaque(z - magic);
    let r = opaque(opaque(x - opaque(n * 0x1.62e4p-1f)) - opaque(n * 0x1.7f7d1cp-20f));
    var p = bitcast<f32>(0x3ab60b61u);                              // 1 / 720 in f32
    p = opaque(opaque(p * r) + bitcast<f32>(0x3c088889u));           // 1 / 120
    p = opaque(opaque(p * r) + bitcast<f32>(0x3d2aaaabu));           // 1 / 24
    p = opaque(opaque(p * r) + bitcast<f32>(0x3e2aaaabu));           // 1 / 6
    p = opaque(opaque(p * r) + 0.5);
    p = opaque(opaque(p * r) + 1.0);
    p = opaque(opaque(p * r) + 1.0);
    let two_n = bitcast<f32>((bitcast<u32>(z) << 23u) + (127u << 23u));
    return opaque(p * two_n);
}
// exp(x) rounded to nearest f32, as the CPU's rt_expf (computed in double there;
// here in double-f32 to about 2^-44, which rounds the same but for ties that close).
// Results below 2^-126 come back as 0 (the uses here add them to 1 or scale them away).
fn exp_rn(x: f32) -> f32 {
    if (x != x) { return x; }
    if (x > 88.8) { return bitcast<f32>(0x7f800000u | bitcast<u32>(opaque(0.0))); }  // +inf (not a constant: Tint rejects those)
    if (x < -87.33) { return 0.0; }
    let e = exp_parts(x);
    return ldexp(e.x, i32(e.z));
}
// exp(x) = (hi + lo) * 2^k as (hi, lo, k), |x| <= 87
fn exp_parts(x: f32) -> vec3<f32> {
    let k = round(opaque(x * 1.4426950408889634));
    // r = x - k ln2 as a pair; k * ln2_hi is exact (ln2_hi has 16 significant bits)
    let rh = opaque(x - opaque(k * 0.693145751953125));
    let pl = two_prod(k, 1.428606765330187e-06);
    let r0 = two_sum(rh, -pl.x);
    let r = fast_two_sum(r0.x, opaque(r0.y - pl.y));
    // Taylor: high orders in f32, the last five steps in pairs
    var p = 2.5052107943679403e-08;
    p = opaque(opaque(p * r.x) + 2.755731998149713e-07);
    p = opaque(opaque(p * r.x) + 2.7557318844628753e-06);
    p = opaque(opaque(p * r.x) + 2.4801587642286904e-05);
    p = opaque(opaque(p * r.x) + 0.00019841270113829523);
    p = opaque(opaque(p * r.x) + 0.0013888889225199819);
    p = opaque(opaque(p * r.x) + 0.008333333767950535);
    var P = vec2<f32>(p, 0.0);
    P = dd_add2(dd_mul(P, r), vec2<f32>(0.0416666679084301, -1.2417634698280722e-09));
    P = dd_add2(dd_mul(P, r), vec2<f32>(0.1666666716337204, -4.967053879312289e-09));
    P = dd_add2(dd_mul(P, r), vec2<f32>(0.5, 0.0));
    P = dd_add2(dd_mul(P, r), vec2<f32>(1.0, 0.0));
    P = dd_add2(dd_mul(P, r), vec2<f32>(1.0, 0.0));
    let h = fast_two_sum(P.x, P.y);
    return vec3<f32>(h.x, h.y, k);
}

// ---------------------------------------------------------------- tanh
// exp(z) - 1 as a pair, |z| <= 0.5: Taylor, the terms to z^8 in pairs
fn expm1_small(z: f32) -> vec2<f32> {
    var p = 2.505210838544172e-08;                          // 1/11!
    p = opaque(opaque(p * z) + 2.755731998149713e-07);      // 1/10!
    p = opaque(opaque(p * z) + 2.7557318844628753e-06);     // 1/9!
    let r = vec2<f32>(z, 0.0);
    var P = vec2<f32>(p, 0.0);
    P = dd_add2(dd_mul(P, r), vec2<f32>(2.4801587642286904e-05, -3.40699609366682e-13));
    P = dd_add2(dd_mul(P, r), vec2<f32>(0.00019841270113829523, -2.725596874933456e-12));
    P = dd_add2(dd_mul(P, r), vec2<f32>(0.0013888889225199819, -3.3631094437103215e-11));
    P = dd_add2(dd_mul(P, r), vec2<f32>(0.008333333767950535, -4.34617203337595e-10));
    P = dd_add2(dd_mul(P, r), vec2<f32>(0.0416666679084301, -1.2417634698280722e-09));
    P = dd_add2(dd_mul(P, r), vec2<f32>(0.1666666716337204, -4.967053879312289e-09));
    P = dd_add2(dd_mul(P, r), vec2<f32>(0.5, 0.0));
    P = dd_add2(dd_mul(P, r), vec2<f32>(1.0, 0.0));
    return dd_mul(P, r);
}
// a pair rounded to the nearest integer (|a| < 2^48; ties to even)
fn dd_round(a: vec2<f32>) -> vec2<f32> {
    let r = round(a.x);
    let d = opaque(a.x - r);                // exact: |d| <= 0.5 (0 when a.x is an integer)
    var f = round(opaque(d + a.y));
    if (d == 0.5 && a.y > 0.0) { f = 1.0; }   // a.x halfway: the low part decides
    if (d == -0.5 && a.y < 0.0) { f = -1.0; }
    return fast_two_sum(r, f);
}
// (hi, lo) / (hi, lo), rounded to f32
fn dd_div_dd(a: vec2<f32>, b: vec2<f32>) -> f32 {
    let q = opaque(a.x / b.x);
    let p = two_prod(q, b.x);
    let r = opaque(opaque(opaque(opaque(a.x - p.x) - p.y) + a.y) - opaque(q * b.y));
    return opaque(q + opaque(r / b.x));
}
// The core's rt_tanhf: 1 above 20, -1 below -20, else f32((e - 1) / (e + 1)) with
// e = exp(2x) a double. Here e - 1 in pairs (to about 2^-46), put on the grid of the
// double e (the core's e - 1 is a multiple of e's ulp: what tiny x see), then divided.
// Same bits but for ties that close (and for the double roundings of e + 1 and of
// the quotient, which change a result with odds of about 2^-28).
fn tanh_rt(x: f32) -> f32 {
    if (x != x) { return x; }
    if (x > 20.0) { return 1.0; }
    if (x < -20.0) { return -1.0; }
    let z = opaque(2.0 * x);
    var m: vec2<f32>;
    if (abs(z) <= 0.5) {
        m = expm1_small(z);
    } else {
        let e = exp_parts(z);
        m = dd_add(vec2<f32>(ldexp(e.x, i32(e.z)), ldexp(e.y, i32(e.z))), -1.0);
        m = fast_two_sum(m.x, m.y);
    }
    if (abs(m.x) < 0.0625) {
        // e's ulp: 2^-52 for e >= 1, 2^-53 below
        let g = select(9007199254740992.0, 4503599627370496.0, z >= 0.0);
        m = dd_round(vec2<f32>(opaque(m.x * g), opaque(m.y * g)));
        let ig = select(1.1102230246251565e-16, 2.220446049250313e-16, z >= 0.0);
        m = vec2<f32>(opaque(m.x * ig), opaque(m.y * ig));
    }
    if (m.x == 0.0) { return 0.0; }
    return dd_div_dd(m, dd_add2(vec2<f32>(2.0, 0.0), m));
}
