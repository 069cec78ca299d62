// rope.wgsl: one rotated element (included by rope_kv.wgsl and attention.wgsl).
// The including kernel defines src(i) (the unrotated vector, a flat f32 array)
// and binds ROPE: array<vec2<f32>>, the core's table of (cos, sin) (times the
// YaRN magnitude scale) for each position and pair, nd/2 pairs per position, and
// opaque() (products kept apart from the subtraction: no fused multiply-add).

// Element e (flat index within the row starting at `row`; heads of D elements)
// of the rotated row at position pos, as core/batch.c's rope():
//   a = x0 * cos - x1 * sin,  b = x0 * sin + x1 * cos
// for the pairs (2i, 2i+1) (normal) or (i, i + nd/2) (NEOX).
fn rope_elem(row: u32, e: u32, D: u32, nd: u32, neox: u32, pos: u32) -> f32 {
    let h0 = row + (e / D) * D;
    let d = e % D;
    if (d >= nd) { return src(row + e); }
    var i: u32;
    var a: u32;
    var first: bool;
    if (neox != 0u) {
        let half = nd / 2u;
        first = d < half;
        i = select(d - half, d, first);
        a = i;
        let x0 = src(h0 + a);
        let x1 = src(h0 + a + half);
        let cs = ROPE[pos * half + i];
        if (first) { return opaque(opaque(x0 * cs.x) - opaque(x1 * cs.y)); }
        return opaque(opaque(x0 * cs.y) + opaque(x1 * cs.x));
    }
    i = d / 2u;
    a = d & ~1u;
    first = (d & 1u) == 0u;
    let x0 = src(h0 + a);
    let x1 = src(h0 + a + 1u);
    let cs = ROPE[pos * (nd / 2u) + i];
    if (first) { return opaque(opaque(x0 * cs.x) - opaque(x1 * cs.y)); }
    return opaque(opaque(x0 * cs.y) + opaque(x1 * cs.x));
}
