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
// exp(x) rounded to nearest f32, as the CPU's rt_expf (computed in double there;
// here in double-f32 to about 2^-44, which rounds the same but for ties that close).
// Results below 2^-126 come back as 0 (the uses here add them to 1 or scale them away).
fn exp_rn(x: f32) -> f32 {
    if (x != x) { return x; }
    if (x > 88.8) { return bitcast<f32>(0x7f800000u | bitcast<u32>(opaque(0.0))); }  // +inf (not a constant: Tint rejects those)
    if (x < -87.33) { return 0.0; }
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
    return ldexp(h.x, i32(k));
}
