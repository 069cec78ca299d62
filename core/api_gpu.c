/* api_gpu.c: the forward step described as data, for hosts that run it on WebGPU.
 *
 * The core decides what a forward step is; a GPU host only executes it. Given a
 * model (its header is enough: the weights need not be in wasm memory) and what
 * the host's adapter offers, realm_gpu_plan() writes a JSON *plan*:
 *   - the weight tensors to upload: file offset and size of each (raw GGUF
 *     blocks, no repacking), split by rows into parts that fit the adapter's
 *     largest storage binding;
 *   - the session buffers to allocate (activations for a batch of up to
 *     max_batch tokens, the f16 KV cache of each layer, the RoPE table);
 *   - the kernels (a WGSL file from wgsl/, preprocessor defines, override
 *     constants), chosen for the adapter (software or not, shader-f16, subgroups);
 *   - programs: op lists ("body": embedding and every layer; "head": final norm
 *     and output projection; "argmax", "topk", "softmax": sampling helpers).
 *     Each op names a kernel, its static parameter words (uniform binding 0),
 *     which per-step uniform it reads (binding 1), its storage bindings (2..)
 *     and its workgroup grid as a function of the step's row count n.
 * docs/GPU.md documents the format; it is part of the host ABI.
 *
 * Numerics are the CPU's (core/model.c) except for the order of float sums:
 * activations are quantized to the weight type's vec_dot type as on the CPU,
 * the KV cache is f16, attention rounds q and the softmax weights to f16, and
 * RoPE uses the core's own cos/sin (realm_gpu_rope_table).
 *
 * Also here: loading a model for the GPU without its weights in wasm memory
 * (realm_gpu_prepare), the RoPE table, and sampling from the GPU's argmax or
 * top-k candidates with the core's own sampler. */
#include "api.h"
#include "lora.h"
#include "model.h"
#include "quant.h"

#define MAX_TOPK REALM_MAX_TOPK

/* ------------------------------------------------------------ loading */
/* A weight's ggml type as in its file (the GPU reads the file's layout, never the CPU kernels' x4) */
#define GGML_TYPE_OF(t) ((t)->type & ~QUANT_X4)
/* Where tensor data pointers point when the weights are not in wasm memory:
 * model_load only records data + offset; nothing here is ever dereferenced. */
#define NO_WEIGHTS_BASE ((uint8_t *)(uintptr_t)0x40000000u)

static const uint8_t *data_base(const Model *m) { return m->weights ? m->weights : NO_WEIGHTS_BASE; }

/* Read the model's configuration and bind (check) every tensor, without the
 * weights: for a model opened vocab-only (or header-only) whose weights will
 * live on a GPU. The model stays unusable for CPU sessions (realm_session_new
 * refuses it). A model loaded with its weights is left as it is. 1 or 0. */
EXPORT uint32_t realm_gpu_prepare(Model *m) {
    rt_err_clear();
    NEED_MODEL(m, 0);
    if (m->layers) return 1; /* loaded with its weights, or prepared already */
    if (m->weights) {
        rt_err("realm_gpu_prepare: the model has weights in memory; load it with realm_model_load(m, 0)", NULL);
        return 0;
    }
    tokenizer_free(m->tok); /* model_load builds it again */
    m->tok = NULL;
    m->weights = NO_WEIGHTS_BASE;
    m->bind_only = true;
    bool ok = model_load(m, false);
    m->weights = NULL;
    m->vocab_only = true; /* no CPU sessions: there is nothing to run them on */
    if (!ok) {
        rt_free(m->layers); /* a half-bound model is not a prepared one */
        m->layers = NULL;
    }
    return ok ? 1 : 0;
}

/* ------------------------------------------------------------ a JSON writer */
typedef struct {
    char *p;
    uint64_t n, cap;
    bool oom;
} JB;

static void jb_raw(JB *b, const char *s, uint64_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        uint64_t cap = RT_MAX(b->cap * 2, b->n + n + 4096);
        char *q = rt_realloc(b->p, cap);
        if (!q) { b->oom = true; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void jb_s(JB *b, const char *s) { jb_raw(b, s, strlen(s)); }
static void jb_u(JB *b, uint64_t v) {
    char t[24];
    int n = 0;
    do { t[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    char o[24];
    for (int i = 0; i < n; i++) o[i] = t[n - 1 - i];
    jb_raw(b, o, (uint64_t)n);
}
static void jb_str(JB *b, const char *s, uint64_t n) {
    jb_s(b, "\"");
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') { char e[2] = {'\\', (char)c}; jb_raw(b, e, 2); }
        else if (c < 0x20) { char e[6] = {'\\', 'u', '0', '0', "0123456789abcdef"[c >> 4], "0123456789abcdef"[c & 15]}; jb_raw(b, e, 6); }
        else jb_raw(b, (const char *)&c, 1);
    }
    jb_s(b, "\"");
}
/* k is written as given up to the closing quote: jb_kv(b, ",\"rows", n) -> ,"rows":n */
static void jb_kv(JB *b, const char *k, uint64_t v) { jb_s(b, k); jb_s(b, "\":"); jb_u(b, v); }

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* ------------------------------------------------------------ options */
/* The host's adapter: a RealmGpuOptions (abi.json; docs/GPU.md), 0 = WebGPU's default. */
enum { OPT_F16 = 1, OPT_SUBGROUPS = 2, OPT_SOFTWARE = 4 };

static RealmGpuOptions read_opts(const RealmGpuOptions *in) {
    RealmGpuOptions o = *in;
    if (!o.max_invocations) o.max_invocations = 256;
    if (!o.max_wg_x) o.max_wg_x = 256;
    if (!o.max_groups) o.max_groups = 65535;
    if (!o.max_wg_storage) o.max_wg_storage = 16384;
    o.max_batch = o.max_batch ? RT_MIN(o.max_batch, 256u) : REALM_EVAL_BATCH;
    if (!o.max_binding) o.max_binding = 128u << 20;
    if (!o.max_buffer) o.max_buffer = 256u << 20;
    return o;
}

/* ------------------------------------------------------------ the plan */
#define MAX_KERNELS 128
#define KEY_LEN 160
#define NONE 0xffffffffu

typedef struct { char key[KEY_LEN]; } KernelKey;

typedef struct {
    const uint8_t *data;  /* the bound Tensor's data pointer (identifies it) */
    uint64_t rows_per_part;
} TRef;

typedef struct {
    Model *m;
    RealmGpuOptions o;
    JB out, kernels, prog;
    uint32_t n_tensors, n_kernels, n_ops;
    TRef *trefs;
    uint32_t trefs_cap;
    KernelKey keys[MAX_KERNELS];
    bool software, f16, subgroups;
    uint32_t B;          /* max batch (tokens per body run) */
    uint32_t wg;         /* workgroup size of the simple kernels */
    uint64_t part_limit; /* largest part of a weight tensor (bytes, before padding) */
    bool session_op;     /* the next op reads a session's own state (see op_session) */
    uint32_t hook;       /* the next op ends the matmul of LoRA slot `hook` (lora.h), or NONE */
    uint32_t lora_slot;  /* a LoRA plan (realm_gpu_lora_plan): the slot of the next op, or NONE */
    uint64_t logit_rows; /* rows the logits buffer holds */
    bool too_big;        /* a LoRA tensor larger than one binding */
} Plan;

static bool str_eq0(const char *a, const char *b) {
    while (*a && *a == *b) a++, b++;
    return *a == *b;
}
static void key_append(char *k, const char *s) {
    size_t n = strlen(k), m = strlen(s);
    if (n + m + 1 >= KEY_LEN) m = KEY_LEN - n - 1;
    memcpy(k + n, s, m);
    k[n + m] = 0;
}
static void key_u(char *k, uint64_t v) {
    char t[24], o[24];
    int n = 0;
    do { t[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    for (int i = 0; i < n; i++) o[i] = t[n - 1 - i];
    o[n] = 0;
    key_append(k, o);
}

typedef struct { const char *name; uint32_t v; } Const;
enum { DEF_F16 = 1, DEF_SUBGROUPS = 2, DEF_GATHER = 4, DEF_HEADS = 8, DEF_EXPERTS = 16, DEF_ROUTE = 32, DEF_SHARED = 64 };
#define N_DEFINES 7

/* Index of the kernel (file, defines, constants), listed once. */
static uint32_t kernel(Plan *P, const char *file, uint32_t defines, const Const *c, int nc) {
    static const char *DEF[N_DEFINES] = {"F16", "SUBGROUPS", "GATHER", "HEADS", "EXPERTS", "ROUTE", "SHARED"};
    char key[KEY_LEN] = "";
    key_append(key, file);
    key_append(key, "|");
    key_u(key, defines);
    for (int i = 0; i < nc; i++) { key_append(key, "|"); key_append(key, c[i].name); key_append(key, "="); key_u(key, c[i].v); }
    for (uint32_t i = 0; i < P->n_kernels; i++)
        if (str_eq0(P->keys[i].key, key)) return i;
    if (P->n_kernels >= MAX_KERNELS) { P->kernels.oom = true; return 0; }
    memcpy(P->keys[P->n_kernels].key, key, KEY_LEN);
    JB *b = &P->kernels;
    if (P->n_kernels) jb_s(b, ",\n  ");
    jb_s(b, "{\"file\":");
    jb_str(b, file, strlen(file));
    jb_s(b, ",\"entry\":\"main\",\"defines\":[");
    int nd = 0;
    for (int i = 0; i < N_DEFINES; i++)
        if (defines & (1u << i)) { if (nd++) jb_s(b, ","); jb_str(b, DEF[i], strlen(DEF[i])); }
    jb_s(b, "],\"constants\":{");
    for (int i = 0; i < nc; i++) { jb_s(b, i ? ",\"" : "\""); jb_kv(b, c[i].name, c[i].v); }
    jb_s(b, "}}");
    return P->n_kernels++;
}

/* ---- tensors */
static uint64_t rows_per_part(const Plan *P, const Tensor *t) {
    uint64_t total = t->row_bytes * t->ne1;
    if (total <= P->part_limit) return t->ne1;
    uint64_t r = P->part_limit / t->row_bytes;
    return r ? r : 1;
}

/* The id of a bound tensor in the plan's list (listed on first use); its parts hold a
 * multiple of gran rows (experts: whole experts). */
static uint32_t tensor_id_g(Plan *P, const Tensor *t, const char *name, uint64_t gran) {
    for (uint32_t i = 0; i < P->n_tensors; i++)
        if (P->trefs[i].data == t->data) return i;
    if (P->n_tensors >= P->trefs_cap) { P->out.oom = true; return 0; }
    uint32_t id = P->n_tensors++;
    P->trefs[id].data = t->data;
    uint64_t rpp = rows_per_part(P, t);
    if (gran > 1 && rpp < t->ne1) rpp = RT_MAX(gran, rpp / gran * gran);
    P->trefs[id].rows_per_part = rpp;
    JB *b = &P->out;
    if (id) jb_s(b, ",");
    jb_s(b, "\n  {\"id\":");
    jb_u(b, id);
    jb_s(b, ",\"name\":");
    jb_str(b, name, strlen(name));
    jb_kv(b, ",\"type", GGML_TYPE_OF(t));
    jb_kv(b, ",\"ne0", t->ne0);
    jb_kv(b, ",\"ne1", t->ne1);
    jb_kv(b, ",\"row_bytes", t->row_bytes);
    uint64_t off = P->m->gguf.data_offset + (uint64_t)(t->data - data_base(P->m));
    jb_kv(b, ",\"offset", off);
    jb_kv(b, ",\"nbytes", t->row_bytes * t->ne1);
    jb_s(b, ",\"parts\":[");
    uint32_t np = 0;
    for (uint64_t r0 = 0; r0 < t->ne1; r0 += rpp, np++) {
        uint64_t rows = RT_MIN(rpp, t->ne1 - r0);
        if (np) jb_s(b, ",");
        jb_s(b, "{");
        jb_kv(b, "\"offset", off + r0 * t->row_bytes);
        jb_kv(b, ",\"nbytes", rows * t->row_bytes);
        jb_kv(b, ",\"row0", r0);
        jb_kv(b, ",\"rows", rows);
        jb_s(b, "}");
    }
    jb_s(b, "]}");
    return id;
}
static uint32_t tensor_id(Plan *P, const Tensor *t, const char *name) { return tensor_id_g(P, t, name, 1); }

static uint32_t n_parts(const Plan *P, uint32_t id, const Tensor *t) {
    uint64_t rpp = P->trefs[id].rows_per_part;
    return (uint32_t)((t->ne1 + rpp - 1) / rpp);
}

/* ---- ops */
typedef struct { uint32_t c[3], div[3]; } Grid; /* dim i = c[i] * (div[i] ? ceil(n / div[i]) : 1) */
typedef struct { const char *buf; uint32_t tensor, part; } Bind;
#define BUF(name) ((Bind){name, NONE, 0})
#define TEN(id, p) ((Bind){NULL, id, p})
enum { STEP_BODY = 0, STEP_HEAD = 1, STEP_LORA_HEAD = 2 };

static Grid grid_rows(const Plan *P, uint64_t groups, uint32_t zdiv) {
    Grid g = {{1, 1, 1}, {0, 0, zdiv}};
    uint64_t mx = P->o.max_groups;
    if (groups <= mx) g.c[0] = (uint32_t)groups;
    else {
        g.c[1] = (uint32_t)((groups + mx - 1) / mx);
        g.c[0] = (uint32_t)((groups + g.c[1] - 1) / g.c[1]);
    }
    return g;
}

static void jb_grid(JB *b, Grid g) {
    jb_s(b, "[");
    for (int i = 0; i < 3; i++) {
        if (i) jb_s(b, ",");
        jb_s(b, "[");
        jb_u(b, g.c[i]);
        jb_s(b, ",");
        jb_u(b, g.div[i]);
        jb_s(b, "]");
    }
    jb_s(b, "]");
}

/* One op. k1/g1: the kernel and grid to use instead when the step has one row (decode). */
static void op(Plan *P, const char *label, uint32_t k, Grid g, uint32_t k1, Grid g1, const uint32_t *params,
               int np, int step, const Bind *bind, int nb) {
    JB *b = &P->prog;
    if (P->n_ops++) jb_s(b, ",");
    jb_s(b, "\n   {\"label\":");
    jb_str(b, label, strlen(label));
    jb_kv(b, ",\"k", k);
    jb_s(b, ",\"g\":");
    jb_grid(b, g);
    if (k1 != NONE) {
        jb_kv(b, ",\"k1", k1);
        jb_s(b, ",\"g1\":");
        jb_grid(b, g1);
    }
    jb_kv(b, ",\"step", (uint64_t)step);
    if (P->session_op) jb_s(b, ",\"s\":1");
    P->session_op = false;
    if (P->hook != NONE) jb_kv(b, ",\"hook", P->hook);
    P->hook = NONE;
    if (P->lora_slot != NONE) jb_kv(b, ",\"slot", P->lora_slot);
    jb_s(b, ",\"p\":[");
    for (int i = 0; i < np; i++) { if (i) jb_s(b, ","); jb_u(b, params[i]); }
    jb_s(b, "],\"b\":[");
    for (int i = 0; i < nb; i++) {
        if (i) jb_s(b, ",");
        if (bind[i].buf) jb_str(b, bind[i].buf, strlen(bind[i].buf));
        else { jb_s(b, "["); jb_u(b, bind[i].tensor); jb_s(b, ","); jb_u(b, bind[i].part); jb_s(b, "]"); }
    }
    jb_s(b, "]}");
}

/* An op that reads or writes a session's own state (its KV cache, its RoPE table) at
 * the session's positions: in a batch of several sessions the host runs it once per
 * session, with that session's body step {n_i, n_past_i, t0_i, 0} (its rows are batch
 * rows t0_i .. t0_i + n_i - 1) and that session's "per_session" buffers; every other op
 * runs once over all rows. Alone, a session's body step is {T, n_past, 0, 0}: the same op. */
static void op_session(Plan *P, const char *label, uint32_t k, Grid g, const uint32_t *params, int np,
                       const Bind *bind, int nb) {
    P->session_op = true;
    op(P, label, k, g, NONE, g, params, np, STEP_BODY, bind, nb);
}

static void begin_program(Plan *P, const char *name) {
    JB *b = &P->prog;
    jb_s(b, P->prog.n ? "],\n  \"" : "\n  \"");
    jb_s(b, name);
    jb_s(b, "\":[");
    P->n_ops = 0;
}

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* ---- activation kinds (quant_act: vec_dot types) */
enum { ACT_F32_ = 0, ACT_F16_ = 1, ACT_BF16_ = 2, ACT_Q8_0_ = 3, ACT_Q8_1_ = 4, ACT_Q8_K_ = 5 };
static uint32_t act_kind(uint32_t type) {
    switch (type) {
    case GGML_TYPE_F32: return ACT_F32_;
    case GGML_TYPE_F16: return ACT_F16_;
    case GGML_TYPE_BF16: return ACT_BF16_;
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q5_0: case GGML_TYPE_Q8_0: return ACT_Q8_0_;
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_1: return ACT_Q8_1_;
    default: return ACT_Q8_K_;
    }
}
/* Words per activation row of K elements in quantize.wgsl's layout. */
static uint64_t act_words(uint32_t kind, uint64_t K) {
    switch (kind) {
    case ACT_F32_: case ACT_F16_: case ACT_BF16_: return K;
    case ACT_Q8_0_: return K / 4 + K / 32;
    case ACT_Q8_1_: return K / 4 + 2 * (K / 32);
    default: return K / 4 + K / 256 + K / 16;
    }
}

static const char *ACT_NAME[] = {"f32", "f16", "bf16", "q8_0", "q8_1", "q8_K"};

/* quantize op: `in` (n rows of K floats, stride xs) -> `out` in kind's layout; rpt > 0 (MoE):
 * rpt rows per token, each quantized on its own */
static void op_quantize_rows(Plan *P, const char *label, const char *in, const char *out, uint64_t K, uint64_t xs,
                             uint32_t kind, int step, uint32_t rpt) {
    uint32_t wg = P->wg;
    Const c[] = {{"KIND", kind}, {"WG", wg}};
    uint32_t k = kernel(P, "quantize.wgsl", 0, c, 2);
    uint64_t units = kind <= ACT_BF16_ ? ceil_div(K, 32) : kind == ACT_Q8_K_ ? K / 256 : K / 32;
    Grid g = grid_rows(P, ceil_div(units, wg), 1);
    if (rpt) g.c[1] = rpt; /* (x holds every block: realm_gpu_plan checks the experts' widths) */
    uint32_t p[] = {(uint32_t)K, (uint32_t)xs, (uint32_t)act_words(kind, K), 0, rpt, 0, 0, 0};
    Bind b[] = {BUF(in), BUF(out)};
    char l[KEY_LEN] = "";
    key_append(l, label);
    key_append(l, ":quantize_");
    key_append(l, ACT_NAME[kind]);
    op(P, l, k, g, NONE, g, p, 8, step, b, 2);
}
static void op_quantize_to(Plan *P, const char *label, const char *in, const char *out, uint64_t K, uint64_t xs,
                           uint32_t kind, int step) {
    op_quantize_rows(P, label, in, out, K, xs, kind, step, 0);
}
static void op_quantize(Plan *P, const char *label, const char *in, uint64_t K, uint64_t xs, uint32_t kind, int step) {
    op_quantize_rows(P, label, in, "xq", K, xs, kind, step, 0);
}

/* matmul ops of weight t (tensor id, np_ parts of rpp rows): y[.., y_off + r] (+)= W x;
 * hook: the LoRA slot whose adapters' ops follow the last part (NONE: none) */
static void op_matmul_id(Plan *P, const char *name, const Tensor *t, uint32_t id, uint32_t np_, uint64_t rpp,
                         const char *x, uint64_t xs, const char *y, uint64_t ys, bool accum, int step, uint32_t hook) {
    /* decode (one token): on GPUs TPR invocations share a row (exact order: matmul.wgsl);
     * on CPU adapters one invocation per row. batch: one invocation per row and TT tokens. */
    uint32_t wg1 = 64, tpr1 = 1, wgB = 64, tprB = 1, ttB = 8;
    if (!P->software) wg1 = 128, tpr1 = 16;
    if (P->o.force_tpr) tpr1 = RT_MIN(P->o.force_tpr, 64u), wg1 = 64;
    uint32_t d1 = P->subgroups && tpr1 > 1 && P->o.subgroup_min >= tpr1 ? DEF_SUBGROUPS : 0;
    uint32_t dB = 0;
    Const c1[] = {{"QT", GGML_TYPE_OF(t)}, {"WG", wg1}, {"TPR", tpr1}, {"TT", 1}};
    Const cB[] = {{"QT", GGML_TYPE_OF(t)}, {"WG", wgB}, {"TPR", tprB}, {"TT", ttB}};
    uint32_t k1 = kernel(P, "matmul.wgsl", d1, c1, 4);
    uint32_t kB = kernel(P, "matmul.wgsl", dB, cB, 4);
    for (uint32_t pi = 0; pi < np_; pi++) {
        uint64_t r0 = pi * rpp, rows = RT_MIN(rpp, t->ne1 - r0);
        Grid gB = grid_rows(P, ceil_div(rows, wgB / tprB), ttB);
        Grid g1 = grid_rows(P, ceil_div(rows, wg1 / tpr1), 1);
        uint32_t p[] = {(uint32_t)t->ne0, (uint32_t)rows, (uint32_t)t->row_bytes, (uint32_t)xs, (uint32_t)ys,
                        (uint32_t)r0, accum ? 1u : 0u, 0};
        Bind b[] = {TEN(id, pi), BUF(x), BUF(y)};
        if (pi + 1 == np_) P->hook = hook;
        op(P, name, kB, gB, k1, g1, p, 8, step, b, 3);
    }
}

static void op_matmul(Plan *P, const char *name, const Tensor *t, const char *x, uint64_t xs, const char *y,
                      uint64_t ys, bool accum, int step, uint32_t hook) {
    uint32_t id = tensor_id(P, t, name);
    op_matmul_id(P, name, t, id, n_parts(P, id, t), P->trefs[id].rows_per_part, x, xs, y, ys, accum, step, hook);
}

/* Several weights reading the same input (q/k/v, gate/up): the input is
 * quantized once per activation kind, as the CPU does per matmul. */
typedef struct { const char *name; const Tensor *t; const char *y; uint64_t ys; bool accum; uint32_t slot; } MM;
static void mm_group(Plan *P, const char *label, const char *in, uint64_t K, uint64_t xs, const MM *mm, int n, int step) {
    bool done[8] = {0};
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        uint32_t kind = act_kind(GGML_TYPE_OF(mm[i].t));
        const char *x = in;
        uint64_t xstride = xs;
        if (kind != ACT_F32_) {
            op_quantize(P, label, in, K, xs, kind, step);
            x = "xq";
            xstride = act_words(kind, K);
        }
        for (int j = i; j < n; j++)
            if (!done[j] && act_kind(GGML_TYPE_OF(mm[j].t)) == kind) {
                op_matmul(P, mm[j].name, mm[j].t, x, xstride, mm[j].y, mm[j].ys, mm[j].accum, step, mm[j].slot);
                done[j] = true;
            }
    }
}

static void blk_name(char *out, uint32_t l, const char *what);

/* Expert matmuls (matmul.wgsl EXPERTS): t is a 3-D expert tensor of n_expert matrices of N
 * rows; slot s = t * KU + j of the step computes expert moe_sel[s] on activation row s / xdiv
 * (x already in its vec_dot layout, rows xs words apart) into y row s (ys floats apart).
 * A part holds whole experts; each part's op stores only its experts' slots. */
static void op_matmul_experts(Plan *P, const char *name, const Tensor *t, uint64_t N, const char *x, uint64_t xs,
                              uint32_t xdiv, const char *y, uint64_t ys) {
    uint32_t id = tensor_id_g(P, t, name, N);
    uint32_t np_ = n_parts(P, id, t);
    uint64_t rpp = P->trefs[id].rows_per_part;
    uint32_t KU = P->m->cfg.n_expert_used;
    uint32_t wg = 64, tpr = 1;
    if (!P->software) wg = 128, tpr = 16;
    if (P->o.force_tpr) tpr = RT_MIN(P->o.force_tpr, 64u), wg = 64;
    uint32_t d = DEF_EXPERTS | (P->subgroups && tpr > 1 && P->o.subgroup_min >= tpr ? DEF_SUBGROUPS : 0);
    Const c[] = {{"QT", GGML_TYPE_OF(t)}, {"WG", wg}, {"TPR", tpr}, {"TT", 1}};
    uint32_t k = kernel(P, "matmul.wgsl", d, c, 4);
    for (uint32_t pi = 0; pi < np_; pi++) {
        uint64_t r0 = pi * rpp, rows = RT_MIN(rpp, t->ne1 - r0);
        Grid g = {{(uint32_t)ceil_div(N, wg / tpr), KU, 1}, {0, 0, 1}};
        uint32_t p[] = {(uint32_t)t->ne0, (uint32_t)N, (uint32_t)t->row_bytes, (uint32_t)xs, (uint32_t)ys, 0, 0, 0,
                        (uint32_t)(r0 / N), (uint32_t)(rows / N), KU, xdiv};
        Bind b[] = {TEN(id, pi), BUF(x), BUF(y), BUF("moe_sel")};
        op(P, name, k, g, NONE, g, p, 12, STEP_BODY, b, 4);
    }
}

/* The mixture-of-experts FFN of the normed rows in xb, added to x (core/batch.c moe_ffn):
 * router matmul, softmax / top-KU (moe.wgsl ROUTE), each token's KU experts (gate and up on
 * xb, SwiGLU, down on their KU rows), qwen2moe's shared expert and its gate, then the
 * weighted sum in slot order plus the shared term, into x. */
static void moe_layer(Plan *P, uint32_t l, const Layer *L) {
    const ModelConfig *c = &P->m->cfg;
    uint64_t E = c->n_embd, NE = c->n_expert, KU = c->n_expert_used, Fe = c->n_ff_exp, Fs = c->n_ff_shexp;
    char nm[KEY_LEN], gn[KEY_LEN], un[KEY_LEN], dn[KEY_LEN];
    blk_name(gn, l, "ffn_gate_inp.weight");
    MM r[] = {{gn, &L->gate_inp, "router", NE, false, NONE}};
    blk_name(nm, l, "ffn_router");
    mm_group(P, nm, "xb", E, E, r, 1, STEP_BODY);
    {
        uint32_t p[] = {(uint32_t)NE, (uint32_t)KU, c->moe_norm_w ? 1u : 0u, 0};
        Bind b[] = {BUF("router"), BUF("moe_sel"), BUF("moe_w")};
        Grid g = {{1, 1, 1}, {0, 0, 1}};
        blk_name(nm, l, "moe_route");
        op(P, nm, kernel(P, "moe.wgsl", DEF_ROUTE, NULL, 0), g, NONE, g, p, 4, STEP_BODY, b, 3);
    }
    blk_name(gn, l, "ffn_gate_exps.weight");
    blk_name(un, l, "ffn_up_exps.weight");
    blk_name(dn, l, "ffn_down_exps.weight");
    const Tensor *gu[] = {&L->gate_exps, &L->up_exps};
    const char *gun[] = {gn, un}, *guy[] = {"moe_g", "moe_u"};
    int32_t last = -1;
    for (int i = 0; i < 2; i++) { /* xb quantized once per activation kind, as mm_group */
        uint32_t kind = act_kind(GGML_TYPE_OF(gu[i]));
        const char *x = "xb";
        uint64_t xs = E;
        if (kind != ACT_F32_) {
            if ((int32_t)kind != last) {
                blk_name(nm, l, "ffn_gate_up_exps");
                op_quantize(P, nm, "xb", E, E, kind, STEP_BODY);
            }
            x = "xq", xs = act_words(kind, E);
        }
        last = (int32_t)kind;
        op_matmul_experts(P, gun[i], gu[i], Fe, x, xs, (uint32_t)KU, guy[i], Fe);
    }
    {   /* SwiGLU of every slot: KU rows of Fe per token, one row of KU * Fe */
        uint32_t p[] = {(uint32_t)(KU * Fe), (uint32_t)(KU * Fe), 0, 0};
        Bind b[] = {BUF("moe_g"), BUF("moe_u")};
        Grid g = grid_rows(P, ceil_div(KU * Fe, P->wg), 1);
        Const cs[] = {{"WG", P->wg}, {"ACT", 0}};
        blk_name(nm, l, "moe_swiglu");
        op(P, nm, kernel(P, "swiglu.wgsl", 0, cs, 2), g, NONE, g, p, 4, STEP_BODY, b, 2);
    }
    {
        uint32_t kind = act_kind(GGML_TYPE_OF(&L->down_exps));
        const char *x = "moe_g";
        uint64_t xs = Fe;
        if (kind != ACT_F32_) {
            blk_name(nm, l, "ffn_down_exps");
            op_quantize_rows(P, nm, "moe_g", "xq", Fe, Fe, kind, STEP_BODY, (uint32_t)KU);
            x = "xq", xs = act_words(kind, Fe);
        }
        op_matmul_experts(P, dn, &L->down_exps, E, x, xs, 1, "moe_y", E);
    }
    bool shared = L->gate_shexp.data != NULL;
    if (shared) {
        blk_name(gn, l, "ffn_gate_inp_shexp.weight");
        MM sg[] = {{gn, &L->gate_inp_shexp, "moe_gs", 1, false, NONE}};
        blk_name(nm, l, "ffn_shexp_gate");
        mm_group(P, nm, "xb", E, E, sg, 1, STEP_BODY);
        blk_name(gn, l, "ffn_gate_shexp.weight");
        blk_name(un, l, "ffn_up_shexp.weight");
        blk_name(dn, l, "ffn_down_shexp.weight");
        MM sgu[] = {{gn, &L->gate_shexp, "hb", Fs, false, NONE}, {un, &L->up_shexp, "hb2", Fs, false, NONE}};
        blk_name(nm, l, "ffn_gate_up_shexp");
        mm_group(P, nm, "xb", E, E, sgu, 2, STEP_BODY);
        uint32_t p[] = {(uint32_t)Fs, (uint32_t)Fs, 0, 0};
        Bind b[] = {BUF("hb"), BUF("hb2")};
        Grid g = grid_rows(P, ceil_div(Fs, P->wg), 1);
        Const cs[] = {{"WG", P->wg}, {"ACT", 0}};
        blk_name(nm, l, "shexp_swiglu");
        op(P, nm, kernel(P, "swiglu.wgsl", 0, cs, 2), g, NONE, g, p, 4, STEP_BODY, b, 2);
        MM sd[] = {{dn, &L->down_shexp, "moe_ys", E, false, NONE}};
        blk_name(nm, l, "ffn_down_shexp");
        mm_group(P, nm, "hb", Fs, Fs, sd, 1, STEP_BODY);
    }
    {
        uint32_t p[] = {(uint32_t)E, (uint32_t)KU, 0, 0};
        Bind b[] = {BUF("x"), BUF("moe_y"), BUF("moe_w"), BUF("moe_ys"), BUF("moe_gs")};
        Grid g = grid_rows(P, ceil_div(E, P->wg), 1);
        Const cc[] = {{"WG", P->wg}};
        blk_name(nm, l, "moe_combine");
        op(P, nm, kernel(P, "moe.wgsl", shared ? DEF_SHARED : 0, cc, 1), g, NONE, g, p, 4, STEP_BODY, b, shared ? 5 : 3);
    }
}

/* gather: input row t is batch row rows[t] (the "rows" buffer) instead of t0 + t */
static void op_rmsnorm(Plan *P, const char *name, const Tensor *w, const char *x, const char *y, uint64_t E, int step,
                       bool gather) {
    uint32_t id = tensor_id(P, w, name);
    uint32_t wg = P->software ? 64 : 256;
    Const c[] = {{"WG", wg}};
    uint32_t k = kernel(P, "rmsnorm.wgsl", gather ? DEF_GATHER : 0, c, 1);
    Grid g = {{1, 1, 1}, {0, 0, 1}};
    uint32_t p[] = {(uint32_t)E, fbits(P->m->cfg.rms_eps), (uint32_t)E, (uint32_t)E};
    Bind b[] = {BUF(x), TEN(id, 0), BUF(y), BUF("rows")};
    op(P, name, k, g, NONE, g, p, 4, step, b, gather ? 4 : 3);
}

/* qwen3: each of n_heads heads (D wide, rows `stride` apart) of buffer x RMS-normed in place
 * by w: one workgroup per (head, token) */
static void op_head_norm(Plan *P, const char *name, const Tensor *w, const char *x, uint64_t D, uint32_t n_heads,
                         uint64_t stride) {
    if (!w->data) return;
    uint32_t id = tensor_id(P, w, name);
    Const c[] = {{"WG", P->software ? 64u : 128u}};
    uint32_t k = kernel(P, "rmsnorm.wgsl", DEF_HEADS, c, 1);
    Grid g = {{1, n_heads, 1}, {0, 0, 1}};
    uint32_t p[] = {(uint32_t)D, fbits(P->m->cfg.rms_eps), (uint32_t)stride, (uint32_t)stride};
    Bind b[] = {BUF(x), TEN(id, 0)};
    op(P, name, k, g, NONE, g, p, 4, STEP_BODY, b, 2);
}

static void op_bias(Plan *P, const char *name, const Tensor *bias, const char *y, uint64_t N) {
    if (!bias->data) return;
    uint32_t id = tensor_id(P, bias, name);
    Const c[] = {{"WG", P->wg}, {"BIAS", 1}};
    uint32_t k = kernel(P, "add.wgsl", 0, c, 2);
    Grid g = grid_rows(P, ceil_div(N, P->wg), 1);
    uint32_t p[] = {(uint32_t)N, (uint32_t)N, 0, 0};
    Bind b[] = {BUF(y), TEN(id, 0)};
    op(P, name, k, g, NONE, g, p, 4, STEP_BODY, b, 2);
}

/* residual add: y += x (T rows of N) */
static void op_residual(Plan *P, const char *name, const char *y, const char *x, uint64_t N) {
    Const c[] = {{"WG", P->wg}, {"BIAS", 0}};
    uint32_t k = kernel(P, "add.wgsl", 0, c, 2);
    Grid g = grid_rows(P, ceil_div(N, P->wg), 1);
    uint32_t p[] = {(uint32_t)N, (uint32_t)N, (uint32_t)N, 0};
    Bind b[] = {BUF(y), BUF(x)};
    op(P, name, k, g, NONE, g, p, 4, STEP_BODY, b, 2);
}

/* gemma: a branch's output (E floats per row in xb) RMS-normed in place (the residual add follows) */
static void op_post_norm(Plan *P, const char *name, const Tensor *w, uint64_t E) {
    if (w->data) op_head_norm(P, name, w, "xb", E, 1, E);
}

/* gemma2: the logits rows (V each) soft-capped in place */
static void op_softcap(Plan *P, uint64_t V) {
    float cap = P->m->cfg.final_softcap;
    if (!(cap > 0)) return;
    Const c[] = {{"WG", P->wg}};
    uint32_t k = kernel(P, "softcap.wgsl", 0, c, 1);
    Grid g = grid_rows(P, ceil_div(V, P->wg), 1);
    uint32_t p[] = {(uint32_t)V, (uint32_t)V, fbits(cap), fbits(1.0f / cap), 0, 0, 0, 0};
    Bind b[] = {BUF("logits")};
    op(P, "final_softcap", k, g, NONE, g, p, 8, STEP_HEAD, b, 1);
}

static void blk_name(char *out, uint32_t l, const char *what) {
    out[0] = 0;
    key_append(out, "blk.");
    key_u(out, l);
    key_append(out, ".");
    key_append(out, what);
}

static void emit_programs(Plan *P) {
    Model *m = P->m;
    const ModelConfig *c = &m->cfg;
    uint64_t E = c->n_embd, D = c->head_dim, H = c->n_head, QD = H * D, KVD = (uint64_t)c->n_head_kv * D, F = c->n_ff;
    uint32_t wg = P->wg;
    char nm[KEY_LEN];

    begin_program(P, "body");
    {   /* embedding lookup, part by part */
        uint32_t id = tensor_id(P, &m->tok_embd, "token_embd.weight");
        Const ce[] = {{"QT", GGML_TYPE_OF(&m->tok_embd)}, {"WG", wg}};
        uint32_t k = kernel(P, "embed.wgsl", 0, ce, 2);
        Grid g = grid_rows(P, ceil_div(ceil_div(E, 32), wg), 1);
        uint64_t rpp = P->trefs[id].rows_per_part;
        for (uint32_t pi = 0; pi < n_parts(P, id, &m->tok_embd); pi++) {
            uint64_t r0 = pi * rpp, rows = RT_MIN(rpp, m->tok_embd.ne1 - r0);
            uint32_t p[] = {(uint32_t)E, (uint32_t)m->tok_embd.row_bytes, (uint32_t)r0, (uint32_t)rows, (uint32_t)E, 0,
                            c->embd_scale != 0 ? fbits(c->embd_scale) : 0, 0};
            Bind b[] = {TEN(id, pi), BUF("ids"), BUF("x")};
            op(P, "token_embd.weight", k, g, NONE, g, p, 8, STEP_BODY, b, 3);
        }
    }
    uint32_t awg = P->software ? 64 : 128;
    uint32_t kv_def = P->f16 ? DEF_F16 : 0;
    Const cr[] = {{"WG", wg}};
    uint32_t k_rope = kernel(P, "rope_kv.wgsl", kv_def, cr, 1);
    Const ca[] = {{"WG", awg}};
    uint32_t k_att = kernel(P, "attention.wgsl", kv_def, ca, 1);
    Const cs[] = {{"WG", wg}, {"ACT", c->ffn_gelu ? 1u : 0u}};
    uint32_t k_swi = kernel(P, "swiglu.wgsl", 0, cs, 2);
    /* gemma2, phi3: q times attn_scale after RoPE, the scores unscaled */
    float scale = c->q_prescale ? 1.0f : c->attn_scale;
    uint32_t qscale = c->q_prescale ? fbits(c->attn_scale) : 0;
    uint32_t cap = c->attn_softcap > 0 ? fbits(c->attn_softcap) : 0, icap = cap ? fbits(1.0f / c->attn_softcap) : 0;
    for (uint32_t l = 0; l < c->n_layer; l++) {
        const Layer *L = &m->layers[l];
        char kn[24] = "k.", vn[24] = "v.";
        key_u(kn, l);
        key_u(vn, l);
        blk_name(nm, l, "attn_norm.weight");
        op_rmsnorm(P, nm, &L->attn_norm, "x", "xb", E, STEP_BODY, false);
        char qn[KEY_LEN], kkn[KEY_LEN], vvn[KEY_LEN];
        blk_name(qn, l, "attn_q.weight");
        blk_name(kkn, l, "attn_k.weight");
        blk_name(vvn, l, "attn_v.weight");
        uint32_t ls = l * LORA_PER_LAYER;
        MM qkv[] = {{qn, &L->wq, "q", QD, false, ls + LORA_Q}, {kkn, &L->wk, "k", KVD, false, ls + LORA_K},
                    {vvn, &L->wv, "v", KVD, false, ls + LORA_V}};
        blk_name(nm, l, "attn_qkv");
        mm_group(P, nm, "xb", E, E, qkv, 3, STEP_BODY);
        blk_name(nm, l, "attn_q.bias");
        op_bias(P, nm, &L->bq, "q", QD);
        blk_name(nm, l, "attn_k.bias");
        op_bias(P, nm, &L->bk, "k", KVD);
        blk_name(nm, l, "attn_v.bias");
        op_bias(P, nm, &L->bv, "v", KVD);
        blk_name(nm, l, "attn_q_norm.weight");
        op_head_norm(P, nm, &L->q_norm, "q", D, c->n_head, QD);
        blk_name(nm, l, "attn_k_norm.weight");
        op_head_norm(P, nm, &L->k_norm, "k", D, c->n_head_kv, KVD);
        const char *rope = L->swa ? "rope_swa" : "rope"; /* sliding-window layers: their own RoPE base */
        {   /* RoPE on k; k and v into the cache */
            uint32_t p[] = {(uint32_t)KVD, (uint32_t)D, c->rope_dim, c->rope_type == ROPE_NEOX, (uint32_t)KVD, 0, 0, 0};
            Bind b[] = {BUF("k"), BUF("v"), BUF(kn), BUF(vn), BUF(rope)};
            Grid g = grid_rows(P, ceil_div(KVD / 2, wg), 1);
            blk_name(nm, l, "rope_kv");
            op_session(P, nm, k_rope, g, p, 8, b, 5);
        }
        {   /* attention */
            uint32_t p[] = {(uint32_t)H, c->n_head / c->n_head_kv, (uint32_t)D, c->rope_dim, c->rope_type == ROPE_NEOX,
                            (uint32_t)QD, (uint32_t)QD, (uint32_t)(KVD / 2), fbits(scale), 0, L->swa ? c->n_swa : 0,
                            cap, icap, qscale, 0, 0};
            Bind b[] = {BUF("q"), BUF(kn), BUF(vn), BUF(rope), BUF("att")};
            Grid g = {{(uint32_t)H, 1, 1}, {0, 0, 1}};
            blk_name(nm, l, "attention");
            op_session(P, nm, k_att, g, p, 16, b, 5);
        }
        char on[KEY_LEN];
        blk_name(on, l, "attn_output.weight");
        /* xb = Wo att, (LoRA adapters: xb += their terms,) (gemma: xb normed,) x += xb: the CPU's order */
        MM o[] = {{on, &L->wo, "xb", E, false, ls + LORA_O}};
        blk_name(nm, l, "attn_output");
        mm_group(P, nm, "att", QD, QD, o, 1, STEP_BODY);
        blk_name(nm, l, "post_attention_norm.weight");
        op_post_norm(P, nm, &L->attn_post_norm, E);
        blk_name(nm, l, "attn_residual");
        op_residual(P, nm, "x", "xb", E);
        blk_name(nm, l, "ffn_norm.weight");
        op_rmsnorm(P, nm, &L->ffn_norm, "x", "xb", E, STEP_BODY, false);
        if (c->n_expert) {
            moe_layer(P, l, L);
            continue;
        }
        char gn[KEY_LEN], un[KEY_LEN], dn[KEY_LEN];
        blk_name(gn, l, "ffn_gate.weight");
        blk_name(un, l, "ffn_up.weight");
        blk_name(dn, l, "ffn_down.weight");
        MM gu[] = {{gn, &L->w_gate, "hb", F, false, ls + LORA_GATE}, {un, &L->w_up, "hb2", F, false, ls + LORA_UP}};
        blk_name(nm, l, "ffn_gate_up");
        mm_group(P, nm, "xb", E, E, gu, 2, STEP_BODY);
        {
            uint32_t p[] = {(uint32_t)F, (uint32_t)F, 0, 0};
            Bind b[] = {BUF("hb"), BUF("hb2")};
            Grid g = grid_rows(P, ceil_div(F, wg), 1);
            blk_name(nm, l, c->ffn_gelu ? "geglu" : "swiglu");
            op(P, nm, k_swi, g, NONE, g, p, 4, STEP_BODY, b, 2);
        }
        MM dw[] = {{dn, &L->w_down, "xb", E, false, ls + LORA_DOWN}};
        blk_name(nm, l, "ffn_down");
        mm_group(P, nm, "hb", F, F, dw, 1, STEP_BODY);
        blk_name(nm, l, "post_ffw_norm.weight");
        op_post_norm(P, nm, &L->ffn_post_norm, E);
        blk_name(nm, l, "ffn_residual");
        op_residual(P, nm, "x", "xb", E);
    }

    MM out[] = {{m->output.data == m->tok_embd.data ? "token_embd.weight" : "output.weight", &m->output, "logits",
                 c->n_vocab, false, lora_output_slot(m)}};
    begin_program(P, "head");
    op_rmsnorm(P, "output_norm.weight", &m->output_norm, "x", "xb", E, STEP_HEAD, false);
    mm_group(P, "output", "xb", E, E, out, 1, STEP_HEAD);
    op_softcap(P, c->n_vocab);
    /* the head of the batch rows listed in "rows" (a batch of several sessions: each
     * session's last row, or all its rows), into logits rows 0 .. R-1 */
    begin_program(P, "head_rows");
    op_rmsnorm(P, "output_norm.weight", &m->output_norm, "x", "xb", E, STEP_HEAD, true);
    mm_group(P, "output", "xb", E, E, out, 1, STEP_HEAD);
    op_softcap(P, c->n_vocab);

    uint32_t swg = 256;
    Grid one = {{1, 1, 1}, {0, 0, 0}};
    uint32_t pv[] = {c->n_vocab, 0, 0, 0};
    Bind bs[] = {BUF("logits"), BUF("sample")};
    begin_program(P, "argmax");
    Const cg[] = {{"WG", swg}};
    op(P, "argmax", kernel(P, "argmax.wgsl", 0, cg, 1), one, NONE, one, pv, 4, STEP_HEAD, bs, 2);
    begin_program(P, "topk");
    op(P, "topk", kernel(P, "topk.wgsl", 0, cg, 1), one, NONE, one, pv, 4, STEP_HEAD, bs, 2);
    begin_program(P, "softmax");
    Grid rows = {{1, 1, 1}, {0, 0, 1}};
    uint32_t ps[] = {c->n_vocab, fbits(1.0f), 0, 0};
    Bind bl[] = {BUF("logits")};
    op(P, "softmax", kernel(P, "softmax.wgsl", 0, cg, 1), rows, NONE, rows, ps, 4, STEP_HEAD, bl, 1);
    jb_s(&P->prog, "]");
}

/* per_session: a session's own state (KV cache, RoPE table), which a batch of several
 * sessions binds per session; every other buffer holds one step's rows. */
static void jb_buffer(JB *b, const char *name, uint64_t bytes, uint64_t per_ctx, bool per_session, bool *first) {
    if (!*first) jb_s(b, ",");
    *first = false;
    jb_s(b, "\n  {\"name\":");
    jb_str(b, name, strlen(name));
    jb_kv(b, ",\"bytes", bytes);
    jb_kv(b, ",\"ctx_bytes", per_ctx);
    jb_s(b, per_session ? ",\"per_session\":true}" : ",\"per_session\":false}");
}

/* Words per token of the quantized-activation buffer "xq" (MoE: the chosen experts' rows too). */
static uint64_t xq_words(const ModelConfig *c) {
    uint64_t QD = (uint64_t)c->n_head * c->head_dim, xqw = 0;
    const uint64_t Ks[3] = {c->n_embd, QD, RT_MAX(c->n_ff, c->n_ff_shexp)};
    for (int i = 0; i < 3; i++)
        for (uint32_t kind = 0; kind <= ACT_Q8_K_; kind++) xqw = RT_MAX(xqw, act_words(kind, Ks[i]));
    if (c->n_expert)
        for (uint32_t kind = 0; kind <= ACT_Q8_K_; kind++)
            xqw = RT_MAX(xqw, (uint64_t)c->n_expert_used * act_words(kind, c->n_ff_exp));
    return xqw;
}

/* Floats per token of the widest activation buffer (MoE: router logits, the chosen experts' rows). */
static uint64_t plan_wide(const ModelConfig *c) {
    uint64_t QD = (uint64_t)c->n_head * c->head_dim;
    uint64_t wide = RT_MAX(RT_MAX((uint64_t)c->n_embd, QD), (uint64_t)RT_MAX(c->n_ff, c->n_ff_shexp));
    if (c->n_expert)
        wide = RT_MAX(wide, RT_MAX((uint64_t)c->n_expert,
                                   (uint64_t)c->n_expert_used * RT_MAX((uint64_t)c->n_ff_exp, (uint64_t)c->n_embd)));
    return wide;
}

/* A Plan for m and the adapter opts describes (trefs: room for that many tensors);
 * the batch and the logits rows decided. NULL: out of memory. */
static Plan *plan_new(Model *m, const RealmGpuOptions *opts, uint32_t trefs) {
    Plan *P = rt_calloc(1, sizeof(Plan));
    if (!P) return NULL;
    const ModelConfig *c = &m->cfg;
    P->m = m;
    P->o = read_opts(opts);
    P->software = (P->o.flags & OPT_SOFTWARE) != 0;
    P->f16 = (P->o.flags & OPT_F16) != 0;
    P->subgroups = (P->o.flags & OPT_SUBGROUPS) != 0;
    P->wg = 64;
    P->hook = P->lora_slot = NONE;
    P->trefs_cap = trefs;
    P->trefs = rt_calloc(P->trefs_cap, sizeof(TRef));
    uint64_t lim = RT_MIN(P->o.max_binding, P->o.max_buffer);
    P->part_limit = (lim & ~(uint64_t)255) - 256; /* room for padding after the last row */
    /* the batch: every per-token buffer must fit one binding */
    uint64_t per_tok = RT_MAX(plan_wide(c), xq_words(c)) * 4;
    uint32_t B = P->o.max_batch;
    while (B > 1 && (uint64_t)B * per_tok > lim) B /= 2;
    P->B = B;
    P->logit_rows = RT_MIN((uint64_t)B, RT_MAX((uint64_t)1, lim / ((uint64_t)c->n_vocab * 4)));
    return P;
}

/* The arguments every plan needs (fn names the export in the error): options and a
 * length pointer, a loaded model, options this core speaks. */
static bool plan_args_ok(const char *fn, const Model *m, const RealmGpuOptions *opts, const uint64_t *len) {
    const char *why = !opts || !len ? ": null options or length pointer"
                      : !m->layers  ? ": the model is not loaded (realm_model_load or realm_gpu_prepare first)"
                      : opts->version != REALM_GPU_OPTIONS_VERSION ? ": unknown options version (this core speaks GPU ABI 1)"
                                                                   : NULL;
    if (!why) return true;
    rt_err(fn, NULL);
    rt_err_append(why);
    return false;
}

/* The plan of `m` for an adapter described by 16 u32 words at opts (docs/GPU.md):
 * a NUL-terminated JSON text the caller frees (realm_free); its length at *len.
 * 0 on failure (a model not prepared, memory). */
EXPORT char *realm_gpu_plan(Model *m, const RealmGpuOptions *opts, uint64_t *len) {
    rt_err_clear();
    NEED_MODEL(m, NULL);
    if (!plan_args_ok("realm_gpu_plan", m, opts, len)) return NULL;
    if (m->cfg.n_expert && (m->cfg.n_expert_used > 64 || m->cfg.n_expert > 65535)) { /* what the plan does not run */
        rt_err_as(REALM_ERR_UNSUPPORTED, "realm_gpu_plan: ", NULL);
        rt_err_append_n((const char *)m->arch.ptr, RT_MIN(m->arch.len, 64));
        rt_err_append(" with more than 64 experts per token runs on the CPU core only; use device='cpu'");
        return NULL;
    }
    /* expert matmuls and their activations' quantization keep one grid dimension for rows */
    if (m->cfg.n_expert && RT_MAX((uint64_t)m->cfg.n_ff_exp, (uint64_t)m->cfg.n_embd) > 8ull * 65535) {
        rt_err_as(REALM_ERR_UNSUPPORTED, "realm_gpu_plan: experts wider than 524280 run on the CPU core only", NULL);
        return NULL;
    }
    Plan *P = plan_new(m, opts, 24 * m->cfg.n_layer + 16);
    if (!P) { rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL); return NULL; }
    const ModelConfig *c = &m->cfg;
    uint64_t lim = RT_MIN(P->o.max_binding, P->o.max_buffer);
    uint64_t E = c->n_embd, D = c->head_dim, QD = (uint64_t)c->n_head * D, KVD = (uint64_t)c->n_head_kv * D;
    uint64_t F = RT_MAX(c->n_ff, c->n_ff_shexp); /* (MoE: the shared expert's FFN) */
    uint64_t V = c->n_vocab, NE = c->n_expert, KU = c->n_expert_used, Fe = c->n_ff_exp;
    uint64_t wide = plan_wide(c), xqw = xq_words(c);
    uint32_t B = P->B;
    uint64_t logit_rows = P->logit_rows;
    uint64_t kv_pos = KVD * 2, rope_pos = (uint64_t)c->rope_dim / 2 * 8;
    uint64_t max_ctx = lim / RT_MAX(kv_pos, rope_pos);
    if (!P->trefs || D > 1024 || D / 2 > 16 * 64) {
        rt_err_as(P->trefs ? REALM_ERR_UNSUPPORTED : REALM_ERR_OUT_OF_MEMORY,
                  P->trefs ? "realm_gpu_plan: head dimension over 1024" : "out of memory", NULL);
        rt_free(P->trefs);
        rt_free(P);
        return NULL;
    }
    JB *b = &P->out;
    jb_s(b, "{\"abi\":1,\n \"model\":{");
    jb_kv(b, "\"n_vocab", V);
    jb_kv(b, ",\"n_embd", E);
    jb_kv(b, ",\"n_layer", c->n_layer);
    jb_kv(b, ",\"n_head", c->n_head);
    jb_kv(b, ",\"n_head_kv", c->n_head_kv);
    jb_kv(b, ",\"head_dim", D);
    jb_kv(b, ",\"n_ff", F);
    jb_kv(b, ",\"rope_dim", c->rope_dim);
    jb_kv(b, ",\"n_ctx_train", c->n_ctx_train);
    jb_s(b, "},\n \"max_batch\":");
    jb_u(b, B);
    jb_kv(b, ",\"max_logits_rows", logit_rows);
    jb_kv(b, ",\"max_ctx", max_ctx);
    jb_kv(b, ",\"max_topk", MAX_TOPK);
    jb_s(b, ",\n \"features\":{\"f16\":");
    jb_s(b, P->f16 ? "true" : "false");
    jb_s(b, ",\"subgroups\":");
    jb_s(b, P->subgroups ? "true" : "false");
    jb_s(b, ",\"software\":");
    jb_s(b, P->software ? "true" : "false");
    /* RoPE frequency factors for realm_gpu_rope_table*: rope_freqs.weight, or (phi3's LongRoPE)
     * the short factors, and the long ones for sessions of at least min_ctx tokens
     * (model_rope_factors: contexts past rope.scaling.original_context_length) */
    const Tensor *rf = m->rope_freqs.data ? &m->rope_freqs : &m->rope_short;
    const Tensor *rl = m->rope_freqs.data ? NULL : &m->rope_long;
    jb_s(b, "},\n \"rope_freqs\":");
    for (int i = 0; i < 2; i++) {
        const Tensor *t = i ? rl : rf;
        if (i) jb_s(b, ",\n \"rope_freqs_long\":");
        if (t && t->data) {
            uint64_t off = m->gguf.data_offset + (uint64_t)(t->data - data_base(m));
            jb_s(b, "{");
            jb_kv(b, "\"offset", off);
            jb_kv(b, ",\"nbytes", t->ne0 * 4);
            if (i) jb_kv(b, ",\"min_ctx", (uint64_t)c->rope_n_ctx_orig + 1);
            jb_s(b, "}");
        } else jb_s(b, "null");
    }
    /* the RoPE tables to fill (realm_gpu_rope_table_layer with its swa) */
    jb_s(b, ",\n \"ropes\":[{\"buffer\":\"rope\",\"swa\":0}");
    if (c->n_swa) jb_s(b, ",{\"buffer\":\"rope_swa\",\"swa\":1}");
    jb_s(b, "]");
    jb_s(b, ",\n \"buffers\":[");
    bool first = true;
    jb_buffer(b, "ids", (uint64_t)B * 4, 0, false, &first);
    jb_buffer(b, "rows", (uint64_t)B * 4, 0, false, &first);
    jb_buffer(b, "x", (uint64_t)B * E * 4, 0, false, &first);
    jb_buffer(b, "xb", (uint64_t)B * wide * 4, 0, false, &first);
    jb_buffer(b, "xq", (uint64_t)B * xqw * 4, 0, false, &first);
    jb_buffer(b, "q", (uint64_t)B * QD * 4, 0, false, &first);
    jb_buffer(b, "k", (uint64_t)B * KVD * 4, 0, false, &first);
    jb_buffer(b, "v", (uint64_t)B * KVD * 4, 0, false, &first);
    jb_buffer(b, "att", (uint64_t)B * QD * 4, 0, false, &first);
    jb_buffer(b, "hb", (uint64_t)B * F * 4, 0, false, &first);
    jb_buffer(b, "hb2", (uint64_t)B * F * 4, 0, false, &first);
    jb_buffer(b, "logits", logit_rows * V * 4, 0, false, &first);
    jb_buffer(b, "sample", (2 + 2 * MAX_TOPK) * 4, 0, false, &first);
    if (NE) { /* mixture of experts: router logits, choices, weights, the slots' FFN, the shared expert */
        jb_buffer(b, "router", (uint64_t)B * NE * 4, 0, false, &first);
        jb_buffer(b, "moe_sel", (uint64_t)B * KU * 4, 0, false, &first);
        jb_buffer(b, "moe_w", (uint64_t)B * KU * 4, 0, false, &first);
        jb_buffer(b, "moe_g", (uint64_t)B * KU * Fe * 4, 0, false, &first);
        jb_buffer(b, "moe_u", (uint64_t)B * KU * Fe * 4, 0, false, &first);
        jb_buffer(b, "moe_y", (uint64_t)B * KU * E * 4, 0, false, &first);
        jb_buffer(b, "moe_ys", (uint64_t)B * E * 4, 0, false, &first);
        jb_buffer(b, "moe_gs", (uint64_t)B * 4, 0, false, &first);
    }
    jb_buffer(b, "rope", 0, rope_pos, true, &first);
    if (c->n_swa) jb_buffer(b, "rope_swa", 0, rope_pos, true, &first);
    for (uint32_t l = 0; l < c->n_layer; l++) {
        char kn[24] = "k.", vn[24] = "v.";
        key_u(kn, l);
        key_u(vn, l);
        jb_buffer(b, kn, 0, kv_pos, true, &first);
        jb_buffer(b, vn, 0, kv_pos, true, &first);
    }
    jb_s(b, "],\n \"tensors\":[");
    emit_programs(P); /* lists tensors into out, kernels and ops into their own texts */
    jb_s(b, "],\n \"kernels\":[\n  ");
    jb_raw(b, P->kernels.p ? P->kernels.p : "", P->kernels.n);
    jb_s(b, "],\n \"programs\":{");
    jb_raw(b, P->prog.p ? P->prog.p : "", P->prog.n);
    jb_s(b, "}}\n");
    bool oom = b->oom || P->kernels.oom || P->prog.oom;
    char *res = b->p;
    if (len) *len = b->n;
    rt_free(P->kernels.p);
    rt_free(P->prog.p);
    rt_free(P->trefs);
    rt_free(P);
    if (oom) {
        rt_free(res);
        rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory writing the GPU plan", NULL);
        return NULL;
    }
    return res;
}

/* ------------------------------------------------------------ LoRA adapters */
/* The plan's ops that apply a session's adapters (lora.h) after the base matmuls they
 * adapt: the base plan marks the last op of each adaptable matmul with "hook": slot (the
 * slot numbering of lora.h: layer * 7 + q,k,v,o,gate,up,down; n_layer * 7 the output head);
 * this plan's ops carry "slot" and run right after that op, in order. Per adapter (in the
 * session's order) and adapted slot, as core/lora.c's lora_apply:
 *   gather   the step's rows of the matmul's input into "lora_x" (rows 0..)
 *   quantize "lora_x" -> "lora_q" when A is Q8_0 (Q8_0 activations) or F16 (f16-rounded)
 *   matmul   A -> "lora_t" (rank values per row)
 *   quantize "lora_t" -> "lora_q" when B is Q8_0 (Q8_0 activations) or F16 (f16-rounded)
 *   matmul   B -> "lora_y"
 *   add      y[t0 + t] += s * lora_y[t], s = scale * alpha / rank (alpha 0: scale)
 * Scale 0 emits nothing (the base model exactly). Body ops read the body step (its t0: the
 * session's first row in a batch); the output head's read step 2, {R, 0, r0, 0}: logits
 * rows r0.. of the head (a session alone: {R, 0, 0, 0}). */

/* A LoRA half in the plan's "tensors": the adapter file's bytes the core holds at wasm
 * address ptr; listed once. */
static uint32_t lora_tensor_id(Plan *P, const Tensor *t, uint32_t adapter, const char *name) {
    for (uint32_t i = 0; i < P->n_tensors; i++)
        if (P->trefs[i].data == t->data) return i;
    uint64_t nbytes = t->row_bytes * t->ne1;
    if (nbytes > P->part_limit) { P->too_big = true; return 0; }
    if (P->n_tensors >= P->trefs_cap) { P->out.oom = true; return 0; }
    uint32_t id = P->n_tensors++;
    P->trefs[id] = (TRef){t->data, t->ne1};
    JB *b = &P->out;
    if (id) jb_s(b, ",");
    jb_kv(b, "\n  {\"id", id);
    jb_kv(b, ",\"adapter", adapter);
    jb_s(b, ",\"name\":");
    jb_str(b, name, strlen(name));
    jb_kv(b, ",\"type", GGML_TYPE_OF(t));
    jb_kv(b, ",\"ne0", t->ne0);
    jb_kv(b, ",\"ne1", t->ne1);
    jb_kv(b, ",\"row_bytes", t->row_bytes);
    jb_kv(b, ",\"ptr", (uint64_t)(uintptr_t)t->data);
    jb_kv(b, ",\"nbytes", nbytes);
    jb_s(b, "}");
    return id;
}

/* Where slot's matmul reads and writes in the base plan: input buffer, K, its row stride,
 * output buffer, N, its row stride. */
typedef struct { const char *x; uint64_t K, xs; const char *y; uint64_t N, ys; int step; } LoraSite;
static LoraSite lora_site(const Model *m, uint32_t slot) {
    const ModelConfig *c = &m->cfg;
    uint64_t E = c->n_embd, QD = (uint64_t)c->n_head * c->head_dim, KVD = (uint64_t)c->n_head_kv * c->head_dim, F = c->n_ff;
    if (slot == lora_output_slot(m)) return (LoraSite){"xb", E, E, "logits", c->n_vocab, c->n_vocab, STEP_LORA_HEAD};
    switch (slot % LORA_PER_LAYER) {
    case LORA_Q: return (LoraSite){"xb", E, E, "q", QD, QD, STEP_BODY};
    case LORA_K: return (LoraSite){"xb", E, E, "k", KVD, KVD, STEP_BODY};
    case LORA_V: return (LoraSite){"xb", E, E, "v", KVD, KVD, STEP_BODY};
    case LORA_O: return (LoraSite){"att", QD, QD, "xb", E, E, STEP_BODY};
    case LORA_GATE: return (LoraSite){"xb", E, E, "hb", F, F, STEP_BODY};
    case LORA_UP: return (LoraSite){"xb", E, E, "hb2", F, F, STEP_BODY};
    default: return (LoraSite){"hb", F, F, "xb", E, E, STEP_BODY};
    }
}

static void lora_name(char *out, const Model *m, uint32_t slot, const char *what) {
    static const char *const names[LORA_PER_LAYER] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    out[0] = 0;
    if (slot == lora_output_slot(m)) key_append(out, "output");
    else {
        key_append(out, "blk.");
        key_u(out, slot / LORA_PER_LAYER);
        key_append(out, ".");
        key_append(out, names[slot % LORA_PER_LAYER]);
    }
    key_append(out, ".weight.");
    key_append(out, what);
}

/* lora.wgsl: MODE 0 gather, 1 gather rounded to f16, 2 scaled add */
static void op_lora_kernel(Plan *P, const char *label, uint32_t mode, uint64_t N, const uint32_t *p, int step,
                           const char *a, const char *b) {
    Const c[] = {{"MODE", mode}, {"WG", P->wg}};
    uint32_t k = kernel(P, "lora.wgsl", 0, c, 2);
    Grid g = grid_rows(P, ceil_div(N, P->wg), 1);
    Bind bs[] = {BUF(a), BUF(b)};
    op(P, label, k, g, NONE, g, p, 4, step, bs, 2);
}

static void emit_lora_slot(Plan *P, uint32_t ai, const Lora *a, float scale, uint32_t slot) {
    const LoraPair *pr = &a->pairs[slot];
    LoraSite st = lora_site(P->m, slot);
    uint64_t rank = pr->a.ne1;
    float sc = a->alpha != 0 ? scale * a->alpha / (float)rank : scale; /* as lora_apply */
    char nm[KEY_LEN], an[KEY_LEN], bn[KEY_LEN];
    lora_name(an, P->m, slot, "lora_a");
    lora_name(bn, P->m, slot, "lora_b");
    uint32_t ida = lora_tensor_id(P, &pr->a, ai, an), idb = lora_tensor_id(P, &pr->b, ai, bn);
    P->lora_slot = slot;
    {   /* the step's rows of the input, from row t0 */
        uint32_t p[] = {(uint32_t)st.K, (uint32_t)st.xs, (uint32_t)st.K, 0};
        lora_name(nm, P->m, slot, "lora_gather");
        op_lora_kernel(P, nm, 0, st.K, p, st.step, st.x, "lora_x");
    }
    /* each half's activations in its type's vec_dot type (F16: rounded to f16; Q8_0), as lora_apply */
    const char *x = "lora_x";
    uint64_t xs = st.K;
    uint32_t kind = act_kind(pr->a.type);
    if (kind != ACT_F32_) {
        lora_name(nm, P->m, slot, "lora_a");
        op_quantize_to(P, nm, "lora_x", "lora_q", st.K, st.K, kind, st.step);
        x = "lora_q", xs = act_words(kind, st.K);
    }
    op_matmul_id(P, an, &pr->a, ida, 1, pr->a.ne1, x, xs, "lora_t", rank, false, st.step, NONE);
    x = "lora_t", xs = rank;
    kind = act_kind(pr->b.type);
    if (kind != ACT_F32_) {
        lora_name(nm, P->m, slot, "lora_b");
        op_quantize_to(P, nm, "lora_t", "lora_q", rank, rank, kind, st.step);
        x = "lora_q", xs = act_words(kind, rank);
    }
    op_matmul_id(P, bn, &pr->b, idb, 1, pr->b.ne1, x, xs, "lora_y", st.N, false, st.step, NONE);
    {
        uint32_t p[] = {(uint32_t)st.N, (uint32_t)st.ys, fbits(sc), 0};
        lora_name(nm, P->m, slot, "lora_add");
        op_lora_kernel(P, nm, 2, st.N, p, st.step, st.y, "lora_y");
    }
    P->lora_slot = NONE;
}

/* The ops and tensors that apply adapters[0..n) with scales[0..n) (a session's set, as
 * realm_session_set_lora takes them) on top of m's plan for the same opts: JSON (docs/GPU.md,
 * "LoRA adapters"), NUL-terminated, *len bytes, the caller frees it; 0 on failure. */
EXPORT char *realm_gpu_lora_plan(Model *m, const RealmGpuOptions *opts, Lora *const *adapters, const float *scales,
                                 uint32_t n, uint64_t *len) {
    rt_err_clear();
    NEED_MODEL(m, NULL);
    if (!plan_args_ok("realm_gpu_lora_plan", m, opts, len) || !lora_check_adapters(m, adapters, scales, n)) return NULL;
    uint32_t n_slots = m->cfg.n_layer * LORA_PER_LAYER + 1, n_pairs = 0;
    for (uint32_t i = 0; i < n; i++) n_pairs += adapters[i]->n_pairs;
    Plan *P = plan_new(m, opts, 2 * n_pairs + 2);
    if (!P || !P->trefs) {
        if (P) rt_free(P);
        rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory", NULL);
        return NULL;
    }
    /* scratch sizes: the widest input, rank and output of the adapted slots */
    uint64_t max_k = 1, max_q = 1, max_r = 1, max_y = 1;
    JB *b = &P->out;
    jb_s(b, "{\"abi\":1,\n \"tensors\":[");
    begin_program(P, "ops");
    for (uint32_t i = 0; i < n; i++) {
        if (scales[i] == 0) continue; /* scale 0 is the base, exactly */
        const Lora *a = adapters[i];
        for (uint32_t slot = 0; slot < n_slots; slot++) {
            const LoraPair *pr = &a->pairs[slot];
            if (!pr->a.data) continue;
            LoraSite st = lora_site(m, slot);
            uint64_t rows = st.step == STEP_LORA_HEAD ? P->logit_rows : P->B, rank = pr->a.ne1;
            max_k = RT_MAX(max_k, rows * st.K);
            max_q = RT_MAX(max_q, rows * RT_MAX(act_words(act_kind(pr->a.type), st.K), act_words(act_kind(pr->b.type), rank)));
            max_r = RT_MAX(max_r, rows * rank);
            max_y = RT_MAX(max_y, rows * st.N);
            emit_lora_slot(P, i, a, scales[i], slot);
        }
    }
    jb_s(&P->prog, "]");
    bool too_big = P->too_big;
    jb_s(b, "],\n \"buffers\":[");
    bool first = true;
    jb_buffer(b, "lora_x", max_k * 4, 0, false, &first);
    jb_buffer(b, "lora_q", max_q * 4, 0, false, &first);
    jb_buffer(b, "lora_t", max_r * 4, 0, false, &first);
    jb_buffer(b, "lora_y", max_y * 4, 0, false, &first);
    jb_s(b, "],\n \"kernels\":[\n  ");
    jb_raw(b, P->kernels.p ? P->kernels.p : "", P->kernels.n);
    jb_s(b, "],\n ");
    jb_raw(b, P->prog.p ? P->prog.p : "", P->prog.n);
    jb_s(b, "}\n");
    bool oom = b->oom || P->kernels.oom || P->prog.oom || too_big;
    char *res = b->p;
    *len = b->n;
    rt_free(P->kernels.p);
    rt_free(P->prog.p);
    rt_free(P->trefs);
    rt_free(P);
    if (oom) {
        rt_free(res);
        if (too_big) rt_err_as(REALM_ERR_UNSUPPORTED, "realm_gpu_lora_plan: an adapter tensor is larger than the adapter's largest storage binding", NULL);
        else rt_err_as(REALM_ERR_OUT_OF_MEMORY, "out of memory writing the GPU LoRA plan", NULL);
        return NULL;
    }
    return res;
}

/* ------------------------------------------------------------ RoPE table */
/* out[(p - pos0) * rope_dim/2 + i] = (cos, sin) * mscale of pair i at position p,
 * for p in [pos0, pos0 + n): the CPU forward pass's own table (rope_table in
 * core/model.c). freqs: the model's rope_freqs.weight values (rope_dim/2 f32,
 * read from the file by the host), or 0. */
EXPORT uint32_t realm_gpu_rope_table(Model *m, uint32_t pos0, uint32_t n, const float *freqs, float *out) {
    NEED_MODEL(m, 0);
    rope_table(m, pos0, n, freqs, out);
    return 1;
}

/* The same for one kind of layer: swa 1 = the sliding-window layers' table (their own
 * RoPE base: gemma2/3), 0 = every other layer's (= realm_gpu_rope_table). The plan's
 * "ropes" say which buffer holds which. */
EXPORT uint32_t realm_gpu_rope_table_layer(Model *m, uint32_t swa, uint32_t pos0, uint32_t n, const float *freqs,
                                           float *out) {
    NEED_MODEL(m, 0);
    rope_table_layer(m, swa != 0 && m->cfg.n_swa, pos0, n, freqs, out);
    return 1;
}

