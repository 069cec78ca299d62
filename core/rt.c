/* rt.c: memory functions, the allocator, error messages, maths, f16. */
#include "rt.h"
#include <stdarg.h>

/* ------------------------------------------------------------------ memory */
/* The loops below would be turned back into calls to memcpy/memset by clang;
 * the builtins lower to memory.copy / memory.fill under -mbulk-memory. */
void *memcpy(void *dst, const void *src, size_t n) {
    __builtin_memcpy(dst, src, n);
    return dst;
}
void *memmove(void *dst, const void *src, size_t n) {
    __builtin_memmove(dst, src, n);
    return dst;
}
void *memset(void *dst, int c, size_t n) {
    __builtin_memset(dst, c, n);
    return dst;
}
int memcmp(const void *a, const void *b, size_t n) {
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}
size_t strlen(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}
bool rt_str_eq(const char *a, size_t alen, const char *b) {
    size_t blen = strlen(b);
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* --------------------------------------------------------------- allocator
 * Boundary-tag allocator over linear memory, grown with memory.grow.
 * Every block starts with a 64-byte header so payloads stay 64-byte aligned
 * (SIMD loads, and weights that the host copies in). Free blocks sit in
 * power-of-two bins; neighbours are merged on free. */
typedef struct Block {
    uint64_t size;      /* whole block, header included; bit 0 = in use */
    uint64_t prev_size; /* size of the block just below, 0 for the first */
    struct Block *next_free, *prev_free;
    uint8_t pad[64 - 16 - 2 * sizeof(void *)]; /* 64 bytes with 4- or 8-byte pointers (wasm32, wasm64) */
} Block;
_Static_assert(sizeof(Block) == 64, "Block header keeps payloads 64-byte aligned");

#define HDR ((uint64_t)sizeof(Block))
#define NBINS 64
#define USED 1ull
#define BSIZE(b) ((b)->size & ~USED)

static Block *bins[NBINS];
static uint8_t *heap_lo, *heap_hi; /* [lo, hi) holds blocks */
static uint64_t heap_in_use;
static Block *last_block; /* the block that ends at heap_hi */

static int bin_of(uint64_t size) { return 63 - __builtin_clzll(size); }

static void bin_insert(Block *b) {
    int i = bin_of(BSIZE(b));
    b->prev_free = NULL;
    b->next_free = bins[i];
    if (bins[i]) bins[i]->prev_free = b;
    bins[i] = b;
}
static void bin_remove(Block *b) {
    int i = bin_of(BSIZE(b));
    if (b->prev_free) b->prev_free->next_free = b->next_free;
    else bins[i] = b->next_free;
    if (b->next_free) b->next_free->prev_free = b->prev_free;
}
static Block *block_after(Block *b) {
    uint8_t *p = (uint8_t *)b + BSIZE(b);
    return p < heap_hi ? (Block *)p : NULL;
}

#ifdef __wasm__
extern unsigned char __heap_base;
static int heap_grow(uint64_t need) {
    if (!heap_lo) heap_lo = heap_hi = (uint8_t *)RT_ALIGN_UP((uintptr_t)&__heap_base, 64);
    uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) * 65536ull;
    uint64_t want = (uint64_t)(uintptr_t)heap_hi + need;
    if (want - 1 > (uint64_t)UINTPTR_MAX) return 0; /* wasm32: past the 4 GiB address space */
    if (want > have) {
        uint64_t pages = (want - have + 65535) / 65536;
        if ((intptr_t)__builtin_wasm_memory_grow(0, pages) < 0) return 0;
    }
    return 1;
}
#else
#include <sys/mman.h>
static int heap_grow(uint64_t need) {
    static uint64_t reserved;
    if (!heap_lo) { /* native builds: reserve address space once */
        reserved = 64ull << 30;
        void *p = mmap(NULL, reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) return 0;
        heap_lo = heap_hi = p;
    }
    return (uint64_t)(heap_hi - heap_lo) + need <= reserved;
}
#endif

void *rt_malloc(uint64_t n) {
    if (n > (1ull << 46)) return NULL;
    uint64_t need = RT_ALIGN_UP((uint64_t)n, 64) + HDR;
    if (need < 2 * HDR) need = 2 * HDR;
    Block *b = NULL;
    for (int i = bin_of(need); i < NBINS && !b; i++)
        for (Block *c = bins[i]; c; c = c->next_free)
            if (BSIZE(c) >= need) { b = c; break; }
    if (b) {
        bin_remove(b);
        uint64_t rest = BSIZE(b) - need;
        if (rest >= 2 * HDR) { /* split off the tail as a free block */
            Block *t = (Block *)((uint8_t *)b + need);
            t->size = rest;
            t->prev_size = need;
            Block *after = block_after(t);
            if (after) after->prev_size = rest;
            b->size = need;
            if (last_block == b) last_block = t;
            bin_insert(t);
        }
    } else {
        /* extend the heap, reusing a free block at the top if there is one */
        if (!heap_grow(0)) return NULL;
        Block *top = (last_block && !(last_block->size & USED)) ? last_block : NULL;
        uint64_t extra = top ? need - BSIZE(top) : need;
        if (!heap_grow(extra)) return NULL;
        if (top) {
            bin_remove(top);
            b = top;
        } else {
            b = (Block *)heap_hi;
            b->prev_size = last_block ? BSIZE(last_block) : 0;
        }
        heap_hi += extra;
        b->size = need;
        last_block = b;
    }
    b->size |= USED;
    heap_in_use += BSIZE(b);
    return (uint8_t *)b + HDR;
}

void rt_free(void *p) {
    if (!p) return;
    Block *b = (Block *)((uint8_t *)p - HDR);
    b->size &= ~USED;
    heap_in_use -= BSIZE(b);
    Block *next = block_after(b);
    if (next && !(next->size & USED)) { /* merge with the block above */
        bin_remove(next);
        if (last_block == next) last_block = b;
        b->size += BSIZE(next);
    }
    if (b->prev_size) { /* merge with the block below */
        Block *prev = (Block *)((uint8_t *)b - b->prev_size);
        if (!(prev->size & USED)) {
            bin_remove(prev);
            if (last_block == b) last_block = prev;
            prev->size += BSIZE(b);
            b = prev;
        }
    }
    Block *after = block_after(b);
    if (after) after->prev_size = BSIZE(b);
    bin_insert(b);
}

void *rt_calloc(uint64_t count, uint64_t size) {
    if (size && count > UINT64_MAX / size) return NULL;
    void *p = rt_malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void *rt_realloc(void *p, uint64_t n) {
    if (!p) return rt_malloc(n);
    Block *b = (Block *)((uint8_t *)p - HDR);
    uint64_t cap = BSIZE(b) - HDR;
    if (n <= cap) return p;
    void *q = rt_malloc(n);
    if (!q) return NULL;
    memcpy(q, p, cap);
    rt_free(p);
    return q;
}

uint64_t rt_heap_bytes(void) { return heap_in_use; }

/* ------------------------------------------------------------------ errors */
static char err_buf[1024];
static size_t err_len;
static uint32_t err_kind;

void rt_err_clear(void) { err_len = 0; err_buf[0] = 0; err_kind = REALM_ERR_NONE; }
void rt_err_set_kind(uint32_t kind) { err_kind = kind; }
uint32_t rt_err_kind(void) {
    if (!err_len) return REALM_ERR_NONE;
    return err_kind ? err_kind : REALM_ERR_INVALID_ARGUMENT;
}
void rt_err_append_n(const char *s, size_t n) {
    if (!s) s = "(null)", n = 6;
    for (size_t i = 0; i < n && err_len + 1 < sizeof err_buf; i++) err_buf[err_len++] = s[i];
    err_buf[err_len] = 0;
}
void rt_err_append(const char *s) { rt_err_append_n(s, s ? strlen(s) : 0); }
void rt_err_append_u64(uint64_t v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) rt_err_append_n(&tmp[--n], 1);
}
void rt_err_append_i64(int64_t v) {
    if (v < 0) { rt_err_append("-"); rt_err_append_u64((uint64_t)0 - (uint64_t)v); }
    else rt_err_append_u64((uint64_t)v);
}
static void err_pieces(uint32_t kind, const char *first, va_list ap) {
    rt_err_clear();
    err_kind = kind;
    for (const char *s = first; s; s = va_arg(ap, const char *)) rt_err_append(s);
}
void rt_err(const char *first, ...) {
    va_list ap;
    va_start(ap, first);
    err_pieces(REALM_ERR_INVALID_ARGUMENT, first, ap);
    va_end(ap);
}
void rt_err_as(uint32_t kind, const char *first, ...) {
    va_list ap;
    va_start(ap, first);
    err_pieces(kind, first, ap);
    va_end(ap);
}
const char *rt_err_message(void) { return err_buf; }

/* ------------------------------------------------------------------- maths
 * Double-precision kernels with Cody-Waite range reduction; the float
 * versions round their results, which keeps them within an ulp of libm. */
static const double LN2_HI = 6.93147180369123816490e-01, LN2_LO = 1.90821492927058770002e-10;
static const double INV_LN2 = 1.44269504088896338700e+00;

static inline double make_pow2(int k) {
    union { uint64_t u; double d; } v = { (uint64_t)(k + 1023) << 52 };
    return v.d;
}

double rt_exp(double x) {
    if (x != x) return x;
    if (x > 709.7) return __builtin_inf();
    if (x < -745.1) return 0.0;
    double kd = __builtin_floor(x * INV_LN2 + 0.5);
    int k = (int)kd;
    double r = (x - kd * LN2_HI) - kd * LN2_LO; /* |r| <= ln2/2 */
    /* Taylor to r^13: error < 1e-17 on |r| <= 0.347 */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    if (k < -1021) return p * make_pow2(k + 600) * make_pow2(-600);
    if (k > 1023) return p * make_pow2(k - 600) * make_pow2(600);
    return p * make_pow2(k);
}

double rt_log(double x) {
    if (x != x || x < 0) return __builtin_nan("");
    if (x == 0) return -__builtin_inf();
    if (x == __builtin_inf()) return x;
    union { double d; uint64_t u; } v = { x };
    int e = (int)((v.u >> 52) & 0x7ff);
    if (e == 0) { v.d = x * 18014398509481984.0; e = (int)((v.u >> 52) & 0x7ff) - 54; }
    e -= 1023;
    v.u = (v.u & 0x000fffffffffffffull) | 0x3ff0000000000000ull; /* m in [1,2) */
    double m = v.d;
    if (m > 1.4142135623730951) { m *= 0.5; e++; }
    /* log(m) = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.1716 */
    double s = (m - 1.0) / (m + 1.0), s2 = s * s, t = 0, term = s;
    for (int i = 1; i <= 41; i += 2) { t += term / i; term *= s2; }
    return 2.0 * t + e * LN2_HI + e * LN2_LO;
}

double rt_pow(double x, double y) {
    if (y == 0) return 1.0;
    if (x == 1.0) return 1.0;
    if (x < 0) {
        double yi = __builtin_floor(y);
        if (yi != y) return __builtin_nan("");
        double r = rt_exp(y * rt_log(-x));
        long long n = (long long)yi;
        return (n & 1) ? -r : r;
    }
    return rt_exp(y * rt_log(x));
}

/* sin/cos: reduce by pi/2 with a three-part constant (fine for |x| < 1e9). */
static const double PIO2_1 = 1.57079632673412561417e+00, PIO2_2 = 6.07710050650619224932e-11,
                    PIO2_3 = 2.02226624879595063154e-21, INV_PIO2 = 6.36619772367581382433e-01;
static double sin_poly(double r) {
    double r2 = r * r, t = r, s = r;
    for (int i = 1; i < 12; i++) { t *= -r2 / ((2 * i) * (2 * i + 1)); s += t; }
    return s;
}
static double cos_poly(double r) {
    double r2 = r * r, t = 1, s = 1;
    for (int i = 1; i < 12; i++) { t *= -r2 / ((2 * i - 1) * (2 * i)); s += t; }
    return s;
}
static void sincos_reduce(double x, double *sn, double *cs) {
    double kd = __builtin_floor(x * INV_PIO2 + 0.5);
    long long k = (long long)kd;
    double r = ((x - kd * PIO2_1) - kd * PIO2_2) - kd * PIO2_3;
    double s = sin_poly(r), c = cos_poly(r);
    switch (k & 3) {
    case 0: *sn = s; *cs = c; break;
    case 1: *sn = c; *cs = -s; break;
    case 2: *sn = -s; *cs = -c; break;
    default: *sn = -c; *cs = s; break;
    }
}
double rt_sin(double x) { double s, c; sincos_reduce(x, &s, &c); return s; }
double rt_cos(double x) { double s, c; sincos_reduce(x, &s, &c); return c; }

float rt_expf(float x) { return (float)rt_exp(x); }
float rt_logf(float x) { return (float)rt_log(x); }
float rt_powf(float x, float y) { return (float)rt_pow(x, y); }
float rt_sinf(float x) { return (float)rt_sin(x); }
float rt_cosf(float x) { return (float)rt_cos(x); }
float rt_tanhf(float x) {
    if (x > 20) return 1.0f;
    if (x < -20) return -1.0f;
    double e = rt_exp(2.0 * x);
    return (float)((e - 1.0) / (e + 1.0));
}
int rt_isfinite(float x) {
    union { float f; uint32_t u; } v = { x };
    return (v.u & 0x7f800000u) != 0x7f800000u;
}

/* -------------------------------------------------------------------- f16 */
float rt_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            man &= 0x3ff;
            u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    union { uint32_t u; float f; } v = { u };
    return v.f;
}

uint16_t rt_f32_to_f16(float f) { /* round to nearest even, as ggml does */
    union { float f; uint32_t u; } v = { f };
    uint32_t x = v.u, sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow to inf */
    if (ax < 0x38800000u) { /* subnormal or zero in f16 */
        if (ax < 0x33000000u) return (uint16_t)sign;
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14 + (113 - e) ... */
        shift = 113 - e + 13;
        uint32_t half = m >> shift, rem = m & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((ax - 0x38000000u) >> 13);
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

/* ------------------------------------------------------- compiler support
 * clang turns 64-bit division by a constant into a 128-bit multiply, which
 * it lowers to a call to __multi3; with no compiler-rt for wasm64 we bring it. */
typedef union {
    __int128 all;
    struct { uint64_t lo, hi; } s;
} TwoWords;

__int128 __multi3(__int128 a, __int128 b) {
    TwoWords x = {a}, y = {b}, r;
    uint64_t a0 = x.s.lo & 0xffffffffu, a1 = x.s.lo >> 32, b0 = y.s.lo & 0xffffffffu, b1 = y.s.lo >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffu) + (p10 & 0xffffffffu);
    r.s.lo = (p00 & 0xffffffffu) | (mid << 32);
    r.s.hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32) + x.s.lo * y.s.hi + x.s.hi * y.s.lo;
    return r.all;
}
