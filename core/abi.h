/* abi.h: the host ABI of realm.wasm (generated from core/abi.json by tools/abigen.py: do not edit).
 * Every export is declared here; a definition that differs fails to compile. */
#ifndef REALM_ABI_H
#define REALM_ABI_H
#include <stdint.h>

#define REALM_ABI_VERSION 5

#define REALM_EVAL_BATCH 64 /* prompt tokens per forward pass (matrix-matrix kernels); longer evals run in batches of this many */
#define REALM_DEFAULT_CTX 4096 /* context a host gives a new session when the caller names none (at most the model's n_ctx_train) */
#define REALM_GPU_OPTIONS_VERSION 1 /* word 0 of GpuOptions */
#define REALM_MAX_TOPK 256 /* largest k realm_sampler_need asks the GPU for */
#define REALM_MAX_LOGPROBS 20 /* most top log-probabilities realm_session_set_logprobs records per sample (OpenAI's top_logprobs limit) */

/* realm_last_error_kind() */
enum {
    REALM_ERR_NONE = 0, /* no error */
    REALM_ERR_INVALID_ARGUMENT = 1, /* a bad argument: a null or wrong handle, an id out of range, a size or option out of range */
    REALM_ERR_FORMAT = 2, /* the file is not a GGUF this core can read: truncated, bad magic or version, hostile sizes */
    REALM_ERR_UNSUPPORTED = 3, /* a well-formed GGUF whose architecture, tensor type or tokenizer this core cannot run */
    REALM_ERR_CONTEXT_FULL = 4, /* the tokens do not fit in the session's context */
    REALM_ERR_OUT_OF_MEMORY = 5, /* linear memory could not grow */
};

/* ggml type ids (ggml.h) and block layouts (ggml-common.h) */
enum {
    GGML_TYPE_F32 = 0, /* f32 */
    GGML_TYPE_F16 = 1, /* f16 */
    GGML_TYPE_Q4_0 = 2, /* f16 d | u8 qs[16]: x = d * (q - 8), low nibbles are elements 0..15 */
    GGML_TYPE_Q4_1 = 3, /* f16 d, m | u8 qs[16]: x = d * q + m */
    GGML_TYPE_Q4_2 = 4, /* removed from ggml in 2023 */
    GGML_TYPE_Q4_3 = 5, /* removed from ggml in 2023 */
    GGML_TYPE_Q5_0 = 6, /* f16 d | u8 qh[4] | u8 qs[16]: x = d * (q - 16), fifth bits in qh */
    GGML_TYPE_Q5_1 = 7, /* f16 d, m | u8 qh[4] | u8 qs[16]: x = d * q + m */
    GGML_TYPE_Q8_0 = 8, /* f16 d | i8 qs[32]: x = d * q */
    GGML_TYPE_Q8_1 = 9, /* f16 d, s (d * sum q) | i8 qs[32] */
    GGML_TYPE_Q2_K = 10, /* u8 scales[16] (4-bit scale, 4-bit min) | u8 qs[64] | f16 d, dmin */
    GGML_TYPE_Q3_K = 11, /* u8 hmask[32] | u8 qs[64] | u8 scales[12] (6-bit) | f16 d */
    GGML_TYPE_Q4_K = 12, /* f16 d, dmin | u8 scales[12] (6-bit scales and mins) | u8 qs[128] */
    GGML_TYPE_Q5_K = 13, /* f16 d, dmin | u8 scales[12] | u8 qh[32] | u8 qs[128] */
    GGML_TYPE_Q6_K = 14, /* u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d */
    GGML_TYPE_Q8_K = 15, /* f32 d | i8 qs[256] | i16 bsums[16] */
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30, /* bf16 */
    GGML_TYPE_Q4_0_4_4 = 31, /* repacked layout, not stored in GGUF files */
    GGML_TYPE_Q4_0_4_8 = 32, /* repacked layout, not stored in GGUF files */
    GGML_TYPE_Q4_0_8_8 = 33, /* repacked layout, not stored in GGUF files */
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    GGML_TYPE_IQ4_NL_4_4 = 36, /* repacked layout, not stored in GGUF files */
    GGML_TYPE_IQ4_NL_4_8 = 37, /* repacked layout, not stored in GGUF files */
    GGML_TYPE_IQ4_NL_8_8 = 38, /* repacked layout, not stored in GGUF files */
    GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_NVFP4 = 40,
    GGML_TYPE_Q1_0 = 41,
    GGML_TYPE_Q2_0 = 42,
    GGML_TYPE_COUNT = 43
};
/* X(id, name, elements per block, bytes per block, runs here) */
#define REALM_GGML_TYPES(X) \
    X(0, "F32", 1, 4, true) \
    X(1, "F16", 1, 2, true) \
    X(2, "Q4_0", 32, 18, true) \
    X(3, "Q4_1", 32, 20, true) \
    X(4, "Q4_2", 16, 10, false) \
    X(5, "Q4_3", 16, 12, false) \
    X(6, "Q5_0", 32, 22, true) \
    X(7, "Q5_1", 32, 24, true) \
    X(8, "Q8_0", 32, 34, true) \
    X(9, "Q8_1", 32, 36, true) \
    X(10, "Q2_K", 256, 84, true) \
    X(11, "Q3_K", 256, 110, true) \
    X(12, "Q4_K", 256, 144, true) \
    X(13, "Q5_K", 256, 176, true) \
    X(14, "Q6_K", 256, 210, true) \
    X(15, "Q8_K", 256, 292, true) \
    X(16, "IQ2_XXS", 256, 66, false) \
    X(17, "IQ2_XS", 256, 74, false) \
    X(18, "IQ3_XXS", 256, 98, false) \
    X(19, "IQ1_S", 256, 50, false) \
    X(20, "IQ4_NL", 32, 18, false) \
    X(21, "IQ3_S", 256, 110, false) \
    X(22, "IQ2_S", 256, 82, false) \
    X(23, "IQ4_XS", 256, 136, false) \
    X(24, "I8", 1, 1, false) \
    X(25, "I16", 1, 2, false) \
    X(26, "I32", 1, 4, false) \
    X(27, "I64", 1, 8, false) \
    X(28, "F64", 1, 8, false) \
    X(29, "IQ1_M", 256, 56, false) \
    X(30, "BF16", 1, 2, true) \
    X(31, "Q4_0_4_4", 32, 18, false) \
    X(32, "Q4_0_4_8", 32, 18, false) \
    X(33, "Q4_0_8_8", 32, 18, false) \
    X(34, "TQ1_0", 256, 54, false) \
    X(35, "TQ2_0", 256, 66, false) \
    X(36, "IQ4_NL_4_4", 32, 18, false) \
    X(37, "IQ4_NL_4_8", 32, 18, false) \
    X(38, "IQ4_NL_8_8", 32, 18, false) \
    X(39, "MXFP4", 32, 17, false) \
    X(40, "NVFP4", 64, 36, false) \
    X(41, "Q1_0", 128, 18, false) \
    X(42, "Q2_0", 64, 18, false) \


/* realm_model_info's output: the model's hyperparameters and special tokens (64 bytes) */
typedef struct RealmModelInfo {
    uint32_t n_vocab;
    uint32_t n_ctx_train;
    uint32_t n_embd;
    uint32_t n_layer;
    uint32_t n_head;
    uint32_t n_head_kv;
    uint32_t head_dim;
    uint32_t n_ff;
    int32_t bos; /* -1: none */
    int32_t eos; /* -1: none */
    uint32_t add_bos; /* 0/1 */
    uint32_t add_eos; /* 0/1 */
    uint32_t rope_type; /* 0 normal, 2 neox */
    uint32_t rope_dim;
    float rope_base;
    float rms_eps;
} RealmModelInfo;
_Static_assert(sizeof(RealmModelInfo) == 64, "RealmModelInfo layout");

/* one GGUF metadata entry (realm_model_meta_entry); the pointers point inside the model (48 bytes) */
typedef struct RealmMetaEntry {
    uint64_t key_ptr;
    uint64_t key_len;
    uint32_t type; /* GGUF value type */
    uint32_t arr_type; /* element type when type is array (9), else 0 */
    uint64_t arr_len;
    uint64_t val_ptr; /* the raw GGUF value bytes (a string: u64 length then bytes; an array: its elements) */
    uint64_t val_len; /* bytes at val_ptr */
} RealmMetaEntry;
_Static_assert(sizeof(RealmMetaEntry) == 48, "RealmMetaEntry layout");

/* one tensor of the GGUF's table (realm_model_tensor_entry) (80 bytes) */
typedef struct RealmTensorEntry {
    uint64_t name_ptr;
    uint64_t name_len;
    uint64_t type; /* ggml type id */
    uint64_t n_dims;
    uint64_t ne0; /* innermost (row) dimension */
    uint64_t ne1;
    uint64_t ne2;
    uint64_t ne3;
    uint64_t offset; /* from the start of the tensor data section */
    uint64_t nbytes;
} RealmTensorEntry;
_Static_assert(sizeof(RealmTensorEntry) == 80, "RealmTensorEntry layout");

/* sampler settings (realm_session_set_sampler, realm_sampler_new/_set); setting them reseeds the RNG (40 bytes) */
typedef struct SamplerParams {
    float temperature; /* <= 0: greedy */
    float top_p; /* 1: off */
    float min_p; /* 0: off */
    float repeat_penalty; /* 1: off */
    float frequency_penalty; /* 0: off */
    float presence_penalty; /* 0: off */
    int32_t top_k; /* <= 0: off */
    int32_t repeat_last_n; /* history the penalties see; -1: the whole context */
    uint64_t seed;
} SamplerParams;
_Static_assert(sizeof(SamplerParams) == 40, "SamplerParams layout");

/* what the WebGPU adapter offers (realm_gpu_plan; docs/GPU.md); 0 in a limit means the WebGPU default (64 bytes) */
typedef struct RealmGpuOptions {
    uint32_t version; /* GPU_OPTIONS_VERSION */
    uint32_t flags; /* 1 shader-f16, 2 subgroups, 4 software adapter (lavapipe, SwiftShader) */
    uint64_t max_binding; /* maxStorageBufferBindingSize */
    uint64_t max_buffer; /* maxBufferSize */
    uint32_t max_invocations; /* maxComputeInvocationsPerWorkgroup */
    uint32_t max_wg_x; /* maxComputeWorkgroupSizeX */
    uint32_t max_groups; /* maxComputeWorkgroupsPerDimension */
    uint32_t max_wg_storage; /* maxComputeWorkgroupStorageSize */
    uint32_t subgroup_min; /* minimum subgroup size (0: unknown) */
    uint32_t max_batch; /* tokens per body run (0: 64; at most 256) */
    uint32_t force_tpr; /* threads per row of the matrix-vector kernel (0: the plan's choice; tests) */
    uint32_t reserved0;
    uint32_t reserved1;
    uint32_t reserved2;
} RealmGpuOptions;
_Static_assert(sizeof(RealmGpuOptions) == 64, "RealmGpuOptions layout");

typedef struct Model Model;
typedef struct Session Session;
typedef struct Sampler Sampler;
typedef struct Grammar Grammar;
typedef struct GrammarState GrammarState;
typedef struct Lora Lora;

#define REALM_EXPORT __attribute__((visibility("default")))

/* Memory and errors */
REALM_EXPORT void *realm_alloc(uint64_t n);
REALM_EXPORT void realm_free(void *p);
REALM_EXPORT const char *realm_last_error(void);
REALM_EXPORT uint32_t realm_last_error_kind(void);
REALM_EXPORT uint64_t realm_heap_bytes(void);
REALM_EXPORT uint32_t realm_abi_version(void);
/* Models */
REALM_EXPORT Model *realm_model_open(uint8_t *buf, uint64_t len, uint64_t file_size);
REALM_EXPORT uint64_t realm_model_need(void);
REALM_EXPORT uint64_t realm_model_data_offset(Model *m);
REALM_EXPORT uint64_t realm_model_data_size(Model *m);
REALM_EXPORT uint8_t *realm_model_weights(Model *m);
REALM_EXPORT uint32_t realm_model_load(Model *m, uint32_t vocab_only);
REALM_EXPORT void realm_model_free(Model *m);
REALM_EXPORT uint32_t realm_model_info(Model *m, RealmModelInfo *out);
REALM_EXPORT uint64_t realm_model_meta_count(Model *m);
REALM_EXPORT uint32_t realm_model_meta_entry(Model *m, uint64_t i, RealmMetaEntry *out);
REALM_EXPORT uint64_t realm_model_tensor_count(Model *m);
REALM_EXPORT uint32_t realm_model_tensor_entry(Model *m, uint64_t i, RealmTensorEntry *out);
REALM_EXPORT uint64_t realm_model_gguf_version(Model *m);
REALM_EXPORT uint64_t realm_model_alignment(Model *m);
/* Tokens */
REALM_EXPORT int64_t realm_tokenize(Model *m, const uint8_t *text, uint64_t len, uint32_t add_special, uint32_t parse_special, int32_t *out, int64_t cap);
REALM_EXPORT int64_t realm_token_piece(Model *m, int32_t id, uint32_t special, uint8_t *out, int64_t cap);
REALM_EXPORT uint32_t realm_token_is_eog(Model *m, int32_t id);
/* Sessions */
REALM_EXPORT Session *realm_session_new(Model *m, uint32_t n_ctx);
REALM_EXPORT Session *realm_session_new_kv(Model *m, uint32_t n_ctx, uint32_t type_k, uint32_t type_v);
REALM_EXPORT void realm_session_free(Session *s);
REALM_EXPORT uint32_t realm_session_eval(Session *s, const int32_t *ids, uint32_t n, uint32_t all_logits);
REALM_EXPORT float *realm_session_logits(Session *s);
REALM_EXPORT uint32_t realm_session_logits_rows(Session *s);
REALM_EXPORT uint32_t realm_session_n_past(Session *s);
REALM_EXPORT uint32_t realm_session_n_ctx(Session *s);
REALM_EXPORT const int32_t *realm_session_tokens(Session *s);
REALM_EXPORT uint32_t realm_session_truncate(Session *s, uint32_t n);
REALM_EXPORT const uint16_t *realm_session_kv(Session *s, uint32_t which);
REALM_EXPORT uint64_t realm_session_kv_bytes(Session *s);
REALM_EXPORT uint32_t realm_session_embed(Session *s, const int32_t *ids, uint32_t n, float *acc);
REALM_EXPORT uint32_t realm_session_set_sampler(Session *s, const SamplerParams *p);
REALM_EXPORT int32_t realm_session_sample(Session *s);
REALM_EXPORT uint32_t realm_session_set_logprobs(Session *s, int32_t n);
REALM_EXPORT int32_t realm_session_logprobs(Session *s, int32_t *ids, float *logprobs, uint32_t cap);
REALM_EXPORT int32_t realm_session_step(Session *s, int32_t id);
/* Batches: one forward pass for several sessions */
REALM_EXPORT uint32_t realm_batch_eval(Model *m, Session *const *sessions, uint32_t n, const int32_t *ids, const uint32_t *counts, const uint32_t *flags);
REALM_EXPORT uint32_t realm_batch_step(Model *m, Session *const *sessions, uint32_t n, const int32_t *ids, const uint32_t *counts, const uint32_t *flags, int32_t *out);
REALM_EXPORT int32_t realm_batch_failed(void);
REALM_EXPORT uint32_t realm_batch_max_tokens(void);
/* Speculative decoding */
REALM_EXPORT int32_t realm_session_verify(Session *s, const int32_t *ids, uint32_t n, int32_t *out);
REALM_EXPORT int32_t realm_session_draft_ngram(Session *s, int32_t last, uint32_t ngram_min, uint32_t ngram_max, int32_t *out, uint32_t k);
/* LoRA adapters (llama.cpp's GGUF format), merge-free */
REALM_EXPORT Lora *realm_lora_load(Model *m, uint8_t *buf, uint64_t len);
REALM_EXPORT void realm_lora_free(Lora *a);
REALM_EXPORT uint32_t realm_lora_info(Lora *a, uint32_t *out);
REALM_EXPORT uint32_t realm_session_set_lora(Session *s, Lora *const *adapters, const float *scales, uint32_t n);
/* Grammars: constrained decoding (GBNF, llama.cpp's syntax) */
REALM_EXPORT Grammar *realm_grammar_new(Model *m, const uint8_t *text, uint64_t len, const char *root);
REALM_EXPORT void realm_grammar_free(Grammar *g);
REALM_EXPORT GrammarState *realm_grammar_state_new(Model *m, const Grammar *g);
REALM_EXPORT void realm_grammar_state_free(GrammarState *st);
REALM_EXPORT int32_t realm_sampler_sample_grammar(Sampler *s, GrammarState *st, float *logits, uint32_t n_vocab, const int32_t *hist, uint32_t n_hist);
REALM_EXPORT uint32_t realm_session_set_grammar(Session *s, const Grammar *g);
REALM_EXPORT int64_t realm_session_grammar_mask(Session *s, uint32_t *bits, uint32_t words);
REALM_EXPORT uint32_t realm_session_grammar_accept(Session *s, int32_t id);
REALM_EXPORT char *realm_json_schema_gbnf(const uint8_t *json, uint64_t len, const char *prefix, uint64_t *out_len);
REALM_EXPORT int32_t realm_session_grammar_state(Session *s);
/* A standalone sampler */
REALM_EXPORT Sampler *realm_sampler_new(const SamplerParams *p);
REALM_EXPORT uint32_t realm_sampler_set(Sampler *s, const SamplerParams *p);
REALM_EXPORT int32_t realm_sampler_sample(Sampler *s, float *logits, uint32_t n_vocab, const int32_t *hist, uint32_t n_hist);
REALM_EXPORT uint32_t realm_sampler_need(Sampler *s, uint32_t n_vocab, uint32_t n_hist);
REALM_EXPORT int32_t realm_sampler_sample_top(Sampler *s, uint32_t *cand, uint32_t n);
REALM_EXPORT uint32_t realm_sampler_set_logprobs(Sampler *s, int32_t n);
REALM_EXPORT int32_t realm_sampler_logprobs(Sampler *s, int32_t *ids, float *logprobs, uint32_t cap);
REALM_EXPORT void realm_sampler_free(Sampler *s);
/* The GPU plan (docs/GPU.md) */
REALM_EXPORT uint32_t realm_gpu_prepare(Model *m);
REALM_EXPORT char *realm_gpu_plan(Model *m, const RealmGpuOptions *opts, uint64_t *len);
REALM_EXPORT char *realm_gpu_lora_plan(Model *m, const RealmGpuOptions *opts, Lora *const *adapters, const float *scales, uint32_t n, uint64_t *len);
REALM_EXPORT uint32_t realm_gpu_rope_table(Model *m, uint32_t pos0, uint32_t n, const float *freqs, float *out);
REALM_EXPORT uint32_t realm_gpu_rope_table_layer(Model *m, uint32_t swa, uint32_t pos0, uint32_t n, const float *freqs, float *out);
/* Threads (realm-mt.wasm; no-ops in realm.wasm) */
REALM_EXPORT uint32_t realm_thread_run(uint32_t index);
REALM_EXPORT uint32_t realm_threads_live(void);
REALM_EXPORT uint32_t realm_threads_use(uint32_t n, uint32_t may_wait);
REALM_EXPORT void realm_threads_stop(void);
REALM_EXPORT uint32_t realm_threads_supported(void);
/* Kernels (tests, benchmarks, the GPU backend's reference) */
REALM_EXPORT const char *realm_quant_type_name(uint32_t type);
REALM_EXPORT int32_t realm_quant_type_info(uint32_t type, uint32_t *out);
REALM_EXPORT uint64_t realm_quant_row_bytes(uint32_t type, uint64_t n);
REALM_EXPORT int32_t realm_quant_dequant(uint32_t type, const void *src, float *dst, uint64_t n);
REALM_EXPORT uint64_t realm_quant_act_bytes(uint32_t type, uint64_t K, uint64_t T);
REALM_EXPORT int32_t realm_quant_act_quantize(uint32_t type, const float *x, uint64_t K, uint64_t T, void *xq);
REALM_EXPORT uint64_t realm_quant_act_export_bytes(uint32_t type, uint64_t K, uint64_t T);
REALM_EXPORT int32_t realm_quant_act_export(uint32_t type, const void *xq, uint64_t K, uint64_t T, void *out);
REALM_EXPORT int32_t realm_quant_matmul_q(uint32_t type, const void *W, uint64_t K, uint64_t r0, uint64_t r1, const void *xq, uint64_t T, float *y, uint64_t y_stride);
REALM_EXPORT int32_t realm_quant_matmul(uint32_t type, const void *W, uint64_t K, uint64_t rows, const float *x, uint64_t T, float *y);
REALM_EXPORT int32_t realm_quant_matmul_rows(uint32_t type, const void *W, uint64_t K, uint64_t r0, uint64_t r1, const float *x, uint64_t T, float *y, uint64_t y_stride);
REALM_EXPORT int32_t realm_quant_attn_f16(const float *q, uint32_t nh, const uint16_t *k, const uint16_t *v, uint64_t kv_stride, uint32_t n, uint32_t D, float scale, float cap, float *scores, uint64_t scores_stride, float *out);
REALM_EXPORT int32_t realm_quant_geglu(float *g, const float *u, uint64_t n);
REALM_EXPORT int32_t realm_quant_swiglu(float *g, const float *u, uint64_t n);
REALM_EXPORT int32_t realm_quant_softcap(float *y, uint64_t n, float cap);
REALM_EXPORT uint32_t realm_quant_repack_x4(uint32_t type, void *W, uint64_t K, uint64_t rows);
REALM_EXPORT int32_t realm_quant_get_row(uint32_t type, const void *W, uint64_t K, uint64_t r, float *dst);
REALM_EXPORT int32_t realm_quant_bench(uint32_t type, const void *W, uint64_t K, uint64_t rows, const void *xq, uint64_t T, float *y, uint32_t reps);

#endif
