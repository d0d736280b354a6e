/* model/model.h — model files (GGUF v3, Hugging Face safetensors directories),
 * the architecture description shared by every folder, and the tokenizer.
 *
 * Opening a model reads headers only: hyper-parameters and, for every tensor,
 * its name, dtype, shape and where its bytes live. Files are mmap'ed read-only;
 * st_tensor.data points into the mapping and nothing is copied. Every offset,
 * size, count and string length read from a file is checked before use: a
 * truncated or hostile file is ST_ERR_FORMAT naming the file, the tensor or key
 * and the byte offset. */
#ifndef STRATA_MODEL_H
#define STRATA_MODEL_H

#include "base/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits (docs/limits.md) ------------------------------------------- */

/* What a model file may declare. A value outside these bounds is refused as
 * ST_ERR_FORMAT naming the key and the limit, before anything it would size
 * is allocated; real models stay far inside them. */
#define ST_MODEL_MAX_LAYERS     4096
#define ST_MODEL_MAX_EMBD       (1 << 18)     /* hidden size */
#define ST_MODEL_MAX_FF         (1 << 20)     /* MLP width */
#define ST_MODEL_MAX_HEADS      4096          /* query heads (and KV heads) */
#define ST_MODEL_MAX_HEAD_DIM   4096
#define ST_MODEL_MAX_VOCAB      (1 << 21)     /* token ids, also for tokenizers */
#define ST_MODEL_MAX_CONTEXT    (1 << 24)     /* trained context, tokens */
#define ST_MODEL_MAX_TENSORS    65536
#define ST_MODEL_MAX_FILES      1024          /* safetensors shards */
#define ST_MODEL_MAX_KV         65536         /* GGUF metadata records */
#define ST_MODEL_MAX_JSON_BYTES (64u << 20)   /* config.json, tokenizer_config.json, index */
/* Hyper-parameters that are finite but absurd make garbage, not an error, at
 * run time; they are refused at load. */
#define ST_MODEL_MIN_RMS_EPS    1e-12
#define ST_MODEL_MAX_RMS_EPS    0.1
#define ST_MODEL_MAX_ROPE_THETA 1e12          /* and > 1 */
#define ST_MODEL_MAX_ROPE_FACTOR 1024.0       /* and > 0 */

/* ---- element types ---------------------------------------------------- */
typedef enum st_dtype {
    ST_DTYPE_F32 = 0,
    ST_DTYPE_F16,
    ST_DTYPE_BF16,
    ST_DTYPE_Q8_0,
    ST_DTYPE_Q4_0,
    ST_DTYPE_Q4_1,
    ST_DTYPE_Q5_0,
    ST_DTYPE_Q5_1,
    ST_DTYPE_IQ4_NL,
    ST_DTYPE_Q4_K,
    ST_DTYPE_Q5_K,
    ST_DTYPE_Q6_K,
    ST_DTYPE_COUNT
} st_dtype;

const char *st_dtype_name(st_dtype t);        /* "f32", "bf16", "q4_k", ... */
int64_t st_dtype_block_elems(st_dtype t);     /* 1 for float types, 32 / 256 for quants */
size_t st_dtype_block_bytes(st_dtype t);      /* bytes per block (4, 2, 34, 144, ...) */
/* Bytes of a row of n elements; n must be a multiple of the block size. */
size_t st_dtype_row_bytes(st_dtype t, int64_t n);
/* True when the loaders and st_dtype_to_f32 support t (every listed type). */
bool st_dtype_supported(st_dtype t);

/* Scalar conversions (exact IEEE semantics, subnormals, inf, NaN). */
float st_f16_to_f32(uint16_t h);
uint16_t st_f32_to_f16(float f);              /* round to nearest even */
float st_bf16_to_f32(uint16_t b);
uint16_t st_f32_to_bf16(float f);             /* round to nearest even, NaN kept */

/* Dequantize/widen n elements (n a multiple of the block size) to fp32. */
st_status st_dtype_to_f32(st_dtype t, const void *src, float *dst, int64_t n);

/* ---- architecture ----------------------------------------------------- */
typedef enum st_arch { ST_ARCH_LLAMA = 0, ST_ARCH_QWEN2, ST_ARCH_QWEN3 } st_arch;
const char *st_arch_name(st_arch a);

/* How RoPE pairs dimensions: NEOX rotates (x[i], x[i+D/2]) (HF and Qwen GGUF);
 * NORM rotates (x[2i], x[2i+1]) (llama GGUF, whose Q/K rows are permuted). */
typedef enum st_rope_layout { ST_ROPE_NEOX = 0, ST_ROPE_NORM } st_rope_layout;

typedef enum st_rope_scaling { ST_ROPE_SCALING_NONE = 0, ST_ROPE_SCALING_LLAMA3, ST_ROPE_SCALING_LINEAR } st_rope_scaling;

struct st_hparams {
    st_arch arch;
    int64_t n_embd;          /* E: hidden size */
    int64_t n_ff;            /* F: MLP intermediate size */
    int64_t n_layer;
    int64_t n_head;          /* H */
    int64_t n_head_kv;       /* Hkv (GQA); divides H */
    int64_t head_dim;        /* D; may differ from E/H (Qwen3) */
    int64_t n_vocab;         /* rows of the embedding / lm_head (padded): config vocab_size; GGUF: token_embd ne[1] */
    int64_t n_ctx_train;     /* max_position_embeddings / context_length */
    float rms_eps;
    float rope_theta;
    st_rope_layout rope_layout;
    st_rope_scaling rope_scaling;
    /* RoPE scaling. HF dirs: rope_factor/low/high/orig from config.json. GGUF
     * llama3: rope_scaling = LLAMA3 when rope_freqs.weight exists, and the
     * per-frequency factors are that tensor (ST_T_ROPE_FREQS: theta_i is divided
     * by factor[i], formats.md §2.4); the scalar fields stay 0 unless the
     * metadata has rope.scaling.* keys. */
    float rope_factor;             /* llama3 / linear factor */
    float rope_low_freq_factor;    /* llama3 */
    float rope_high_freq_factor;   /* llama3 */
    int64_t rope_orig_ctx;         /* llama3 original_max_position_embeddings */
    /* The flags below come from config.json for HF dirs and from which tensors
     * layer 0 holds for GGUF; either way every layer is checked to match. */
    bool qkv_bias;           /* q/k/v projections have biases (Qwen2) */
    bool o_bias;             /* o_proj bias (llama attention_bias) */
    bool qk_norm;            /* per-head RMSNorm of q and k before RoPE (Qwen3) */
    bool tied_embeddings;    /* lm_head shares the token embedding */
};

/* Roles of the tensors the forward pass reads. Index into st_model.tensors or -1. */
enum st_layer_role {
    ST_T_ATTN_NORM = 0, ST_T_WQ, ST_T_WK, ST_T_WV, ST_T_BQ, ST_T_BK, ST_T_BV,
    ST_T_WO, ST_T_BO, ST_T_Q_NORM, ST_T_K_NORM,
    ST_T_FFN_NORM, ST_T_W_GATE, ST_T_W_UP, ST_T_W_DOWN,
    ST_T_LAYER_ROLES
};
enum st_global_role { ST_T_TOK_EMBD = 0, ST_T_OUTPUT_NORM, ST_T_OUTPUT, ST_T_ROPE_FREQS, ST_T_GLOBAL_ROLES };

#define ST_TENSOR_NAME_MAX 96

/* One tensor. Matrices are [rows = out_features][cols = in_features] row-major,
 * the same bytes in GGUF (ne = {in, out}) and safetensors (shape = [out, in]). */
struct st_tensor {
    char name[ST_TENSOR_NAME_MAX]; /* name as stored in the file */
    st_dtype dtype;
    int n_dims;
    int64_t ne[4];           /* ne[0] fastest (row length = in_features), missing dims 1 */
    size_t bytes;            /* exact stored bytes, quant blocks included */
    int file;                /* index into st_model.files */
    uint64_t offset;         /* absolute byte offset in that file */
    const void *data;        /* points into the read-only mapping */
};

struct st_model_file {
    char *path;
    void *map;               /* mmap of the whole file (NULL for an empty file) */
    size_t size;             /* bytes */
};

typedef enum st_model_format { ST_MODEL_GGUF = 0, ST_MODEL_HF_DIR } st_model_format;

/* Where the tokenizer lives. */
typedef enum st_tokenizer_source { ST_TOKSRC_NONE = 0, ST_TOKSRC_HF_JSON, ST_TOKSRC_GGUF } st_tokenizer_source;

struct st_gguf;              /* parsed GGUF header (metadata + tensor infos); opaque */

/* A model description: shapes, dtypes, offsets; weights stay in the mapping. */
typedef struct st_model {
    char *path;                          /* what the user named (file or directory) */
    st_model_format format;
    struct st_hparams hp;
    struct st_tensor *tensors;           /* (n_tensors) */
    int64_t n_tensors;
    struct st_model_file *files;         /* (n_files) */
    int n_files;
    int32_t *layer_tensors;              /* (n_layer, ST_T_LAYER_ROLES): tensor index or -1 */
    int32_t global_tensors[ST_T_GLOBAL_ROLES];
    st_tokenizer_source tok_source;
    char *tokenizer_path;                /* tokenizer.json for HF dirs, else NULL */
    char *chat_template;                 /* Jinja text from metadata / tokenizer_config.json, or NULL */
    struct st_gguf *gguf;                /* GGUF metadata (GGUF files only), else NULL */
} st_model;

/* Opens a GGUF file or a Hugging Face directory (config.json + model.safetensors
 * or model.safetensors.index.json). Validates every tensor the architecture
 * needs (present, dtype, shape). On error *out is NULL and the message names
 * the file and position. */
st_status st_model_open(const char *path, st_model **out);
void st_model_free(st_model *m);      /* accepts NULL */

/* Tensor for a role (layer ignored for global roles); NULL when absent.
 * ST_T_OUTPUT falls back to the token embedding when embeddings are tied. */
const struct st_tensor *st_model_layer_tensor(const st_model *m, int64_t layer, enum st_layer_role role);
const struct st_tensor *st_model_global_tensor(const st_model *m, enum st_global_role role);
const struct st_tensor *st_model_find_tensor(const st_model *m, const char *name);

/* The name a tensor of a role has in files of a format (role: an st_layer_role, or with global an
 * st_global_role; layer is ignored for global roles): "blk.3.ffn_down.weight" (GGUF),
 * "model.layers.3.mlp.down_proj.weight" (Hugging Face). Writes into buf and returns it. */
char *st_model_role_name(st_model_format format, int64_t layer, int role, bool global, char *buf, size_t buf_len);

/* Sizes used by the planner and `strata model`. */
uint64_t st_model_layer_bytes(const st_model *m, int64_t layer);   /* all tensors of one block */
uint64_t st_model_total_bytes(const st_model *m);                  /* every tensor counted once */
int64_t st_model_param_count(const st_model *m);

/* ---- GGUF metadata access (for the tokenizer and `strata model`) --------- */
typedef enum st_gguf_type {
    ST_GGUF_U8 = 0, ST_GGUF_I8 = 1, ST_GGUF_U16 = 2, ST_GGUF_I16 = 3, ST_GGUF_U32 = 4,
    ST_GGUF_I32 = 5, ST_GGUF_F32 = 6, ST_GGUF_BOOL = 7, ST_GGUF_STRING = 8, ST_GGUF_ARRAY = 9,
    ST_GGUF_U64 = 10, ST_GGUF_I64 = 11, ST_GGUF_F64 = 12,
} st_gguf_type;

/* A string inside the mapping: not NUL-terminated. */
struct st_gguf_str { const char *ptr; uint64_t len; };

/* Index of key or -1. */
int64_t st_gguf_find(const struct st_gguf *g, const char *key);
int64_t st_gguf_n_kv(const struct st_gguf *g);
const char *st_gguf_key(const struct st_gguf *g, int64_t i);       /* NUL-terminated copy */
st_gguf_type st_gguf_kv_type(const struct st_gguf *g, int64_t i);
/* Scalars: any integer type widens; wrong type returns ST_ERR_FORMAT naming the key. */
st_status st_gguf_get_int(const struct st_gguf *g, const char *key, int64_t *out);
st_status st_gguf_get_float(const struct st_gguf *g, const char *key, double *out);
st_status st_gguf_get_bool(const struct st_gguf *g, const char *key, bool *out);
st_status st_gguf_get_str(const struct st_gguf *g, const char *key, struct st_gguf_str *out);
/* Arrays: element type and count; elements read one by one. */
st_status st_gguf_get_arr(const struct st_gguf *g, const char *key, st_gguf_type *elem_type, uint64_t *n);
st_status st_gguf_arr_str(const struct st_gguf *g, const char *key, uint64_t i, struct st_gguf_str *out);
st_status st_gguf_arr_int(const struct st_gguf *g, const char *key, uint64_t i, int64_t *out);
st_status st_gguf_arr_float(const struct st_gguf *g, const char *key, uint64_t i, double *out);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_MODEL_H */
