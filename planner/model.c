/* The model as the planner sees it: presets (shapes from config.json), the
 * exact stored bytes of every tensor for a stored format (GGUF quant mixes as
 * llama.cpp's quantizer writes them), and the KV cache formula. */
#include "planner/planner-impl.h"

#include <stdlib.h>
#include <string.h>

/* Shapes from each model's config.json on Hugging Face (configs/presets.yaml
 * repeats them with the same sources; tests/planner/test_presets.c keeps the
 * two equal). */
static const struct st_plan_preset presets[] = {
    /* name            arch           L   E     F      H   Hkv D    V       ctx     tied  bias  qknorm */
    {"qwen2.5-0.5b", ST_ARCH_QWEN2, 24, 896, 4864, 14, 2, 64, 151936, 32768, true, true, false,
     "huggingface.co/Qwen/Qwen2.5-0.5B-Instruct/blob/main/config.json"},
    {"qwen2.5-1.5b", ST_ARCH_QWEN2, 28, 1536, 8960, 12, 2, 128, 151936, 32768, true, true, false,
     "huggingface.co/Qwen/Qwen2.5-1.5B-Instruct/blob/main/config.json"},
    {"qwen2.5-3b", ST_ARCH_QWEN2, 36, 2048, 11008, 16, 2, 128, 151936, 32768, true, true, false,
     "huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/config.json"},
    {"qwen2.5-7b", ST_ARCH_QWEN2, 28, 3584, 18944, 28, 4, 128, 152064, 32768, false, true, false,
     "huggingface.co/Qwen/Qwen2.5-7B-Instruct/blob/main/config.json"},
    {"qwen2.5-14b", ST_ARCH_QWEN2, 48, 5120, 13824, 40, 8, 128, 152064, 32768, false, true, false,
     "huggingface.co/Qwen/Qwen2.5-14B-Instruct/blob/main/config.json"},
    {"qwen2.5-32b", ST_ARCH_QWEN2, 64, 5120, 27648, 40, 8, 128, 152064, 32768, false, true, false,
     "huggingface.co/Qwen/Qwen2.5-32B-Instruct/blob/main/config.json"},
    {"qwen2.5-72b", ST_ARCH_QWEN2, 80, 8192, 29568, 64, 8, 128, 152064, 32768, false, true, false,
     "huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/config.json"},
    {"qwen3-0.6b", ST_ARCH_QWEN3, 28, 1024, 3072, 16, 8, 128, 151936, 40960, true, false, true,
     "huggingface.co/Qwen/Qwen3-0.6B/blob/main/config.json"},
    {"qwen3-1.7b", ST_ARCH_QWEN3, 28, 2048, 6144, 16, 8, 128, 151936, 40960, true, false, true,
     "huggingface.co/Qwen/Qwen3-1.7B/blob/main/config.json"},
    {"qwen3-4b", ST_ARCH_QWEN3, 36, 2560, 9728, 32, 8, 128, 151936, 40960, true, false, true,
     "huggingface.co/Qwen/Qwen3-4B/blob/main/config.json"},
    {"qwen3-8b", ST_ARCH_QWEN3, 36, 4096, 12288, 32, 8, 128, 151936, 40960, false, false, true,
     "huggingface.co/Qwen/Qwen3-8B/blob/main/config.json"},
    {"qwen3-14b", ST_ARCH_QWEN3, 40, 5120, 17408, 40, 8, 128, 151936, 40960, false, false, true,
     "huggingface.co/Qwen/Qwen3-14B/blob/main/config.json"},
    {"qwen3-32b", ST_ARCH_QWEN3, 64, 5120, 25600, 64, 8, 128, 151936, 40960, false, false, true,
     "huggingface.co/Qwen/Qwen3-32B/blob/main/config.json"},
    {"llama-2-7b", ST_ARCH_LLAMA, 32, 4096, 11008, 32, 32, 128, 32000, 4096, false, false, false,
     "huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json"},
    {"llama-3.1-8b", ST_ARCH_LLAMA, 32, 4096, 14336, 32, 8, 128, 128256, 131072, false, false, false,
     "huggingface.co/meta-llama/Llama-3.1-8B-Instruct/blob/main/config.json"},
    {"llama-3.1-70b", ST_ARCH_LLAMA, 80, 8192, 28672, 64, 8, 128, 128256, 131072, false, false, false,
     "huggingface.co/meta-llama/Llama-3.1-70B-Instruct/blob/main/config.json"},
    {"llama-3.3-70b", ST_ARCH_LLAMA, 80, 8192, 28672, 64, 8, 128, 128256, 131072, false, false, false,
     "huggingface.co/meta-llama/Llama-3.3-70B-Instruct/blob/main/config.json"},
};

const char *const st_plan_quants[] = {"f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", NULL};

const enum st_layer_role st_plan_matrix_roles[ST_PLAN_N_MATRICES] = {ST_T_WQ, ST_T_WK, ST_T_WV, ST_T_WO,
                                                                     ST_T_W_GATE, ST_T_W_UP, ST_T_W_DOWN};

st_status pl_model_alloc_dtypes(struct st_plan_model *m) {
    m->mat_dtypes = st_calloc((size_t)m->n_layer * ST_PLAN_N_MATRICES, 1, "planner: matrix dtypes");
    if (!m->mat_dtypes) return ST_ERR_NOMEM;
    memset(m->mat_dtypes, ST_DTYPE_COUNT, (size_t)m->n_layer * ST_PLAN_N_MATRICES);
    return ST_OK;
}

int st_plan_preset_count(void) { return (int)ST_ARRAY_LEN(presets); }

const struct st_plan_preset *st_plan_preset_at(int i) {
    return i >= 0 && i < st_plan_preset_count() ? &presets[i] : NULL;
}

bool st_plan_kv_q8_ok(const struct st_plan_model *m) {
    return m->n_head_kv > 0 && m->head_dim > 0 && (m->n_head_kv * m->head_dim) % 32 == 0;
}

uint64_t st_plan_kv_bytes(const struct st_plan_model *m, st_dtype kv, int64_t n_layers, int64_t context,
                          int64_t batch) {
    /* a row of n_head_kv x head_dim values: 34 bytes per 32 in Q8_0 (whole blocks: st_plan_kv_q8_ok) */
    const uint64_t row = kv == ST_DTYPE_Q8_0 ? (uint64_t)st_dtype_row_bytes(kv, m->n_head_kv * m->head_dim)
                                             : (uint64_t)m->n_head_kv * (uint64_t)m->head_dim * st_dtype_block_bytes(kv);
    return (uint64_t)n_layers * (uint64_t)context * (uint64_t)batch * 2u * row;
}

/* ---- quant mixes ------------------------------------------------------ */

enum mix { MIX_F32, MIX_F16, MIX_BF16, MIX_Q8_0, MIX_Q6_K, MIX_Q5_K_M, MIX_Q4_K_M, MIX_Q4_0 };
enum tkind { T_EMBD, T_OUTPUT, T_Q, T_K, T_V, T_O, T_GATE, T_UP, T_DOWN };

static bool use_more_bits(int64_t i, int64_t n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

static bool is_k_quant(st_dtype t) { return t == ST_DTYPE_Q4_K || t == ST_DTYPE_Q5_K || t == ST_DTYPE_Q6_K; }

/* The stored type of a 2-D tensor, following llama.cpp's llama_tensor_get_type
 * for the mixes strata presets offer (src/llama-quant.cpp). ne0 is the row
 * length (in_features); layer/n_layer index the block; tied: no output.weight. */
static st_dtype mix_type(enum mix mix, enum tkind k, int64_t ne0, int64_t layer, int64_t n_layer, bool tied,
                         bool is_70b) {
    switch (mix) {
    case MIX_F32: return ST_DTYPE_F32;
    case MIX_F16: return ST_DTYPE_F16;
    case MIX_BF16: return ST_DTYPE_BF16;
    default: break;
    }
    st_dtype base = mix == MIX_Q8_0 ? ST_DTYPE_Q8_0 : mix == MIX_Q6_K ? ST_DTYPE_Q6_K
                  : mix == MIX_Q5_K_M ? ST_DTYPE_Q5_K : mix == MIX_Q4_K_M ? ST_DTYPE_Q4_K : ST_DTYPE_Q4_0;
    st_dtype t = base;
    if (k == T_OUTPUT || (k == T_EMBD && tied)) {
        /* output.weight, or token_embd when it doubles as the output */
        if (ne0 % 256 != 0) t = ST_DTYPE_Q8_0;
        else if (base != ST_DTYPE_Q8_0) t = ST_DTYPE_Q6_K;
    } else if (k == T_V) {
        if ((mix == MIX_Q4_K_M || mix == MIX_Q5_K_M) && use_more_bits(layer, n_layer)) t = ST_DTYPE_Q6_K;
        if (is_70b && t == ST_DTYPE_Q4_K) t = ST_DTYPE_Q5_K;
    } else if (k == T_DOWN) {
        if ((mix == MIX_Q4_K_M || mix == MIX_Q5_K_M) && use_more_bits(layer, n_layer)) t = ST_DTYPE_Q6_K;
    }
    /* rows that are not a multiple of 256 cannot hold k-quant blocks */
    if (is_k_quant(t) && ne0 % 256 != 0) {
        t = t == ST_DTYPE_Q4_K ? ST_DTYPE_Q5_0 : t == ST_DTYPE_Q5_K ? ST_DTYPE_Q5_1 : ST_DTYPE_Q8_0;
    }
    if (ne0 % st_dtype_block_elems(t) != 0) t = ST_DTYPE_F16;
    return t;
}

static bool parse_mix(const char *quant, enum mix *out) {
    static const struct { const char *name; enum mix mix; } names[] = {
        {"f32", MIX_F32}, {"f16", MIX_F16}, {"bf16", MIX_BF16}, {"q8_0", MIX_Q8_0},
        {"q6_k", MIX_Q6_K}, {"q5_k_m", MIX_Q5_K_M}, {"q4_k_m", MIX_Q4_K_M}, {"q4_0", MIX_Q4_0},
    };
    char low[24];
    size_t n = strlen(quant);
    if (n >= sizeof low) return false;
    for (size_t i = 0; i <= n; i++) low[i] = (char)(quant[i] >= 'A' && quant[i] <= 'Z' ? quant[i] + 32 : quant[i]);
    for (size_t i = 0; i < ST_ARRAY_LEN(names); i++) {
        if (!strcmp(low, names[i].name)) { *out = names[i].mix; return true; }
    }
    return false;
}

static uint64_t mat_bytes(st_dtype t, int64_t rows, int64_t cols) {
    return (uint64_t)rows * st_dtype_row_bytes(t, cols);
}

st_status st_plan_model_alloc(struct st_plan_model *m, int64_t n_layer) {
    m->layer_bytes = st_calloc((size_t)n_layer, sizeof *m->layer_bytes, "planner: layer bytes");
    m->layer_flops = st_calloc((size_t)n_layer, sizeof *m->layer_flops, "planner: layer flops");
    if (!m->layer_bytes || !m->layer_flops) {
        st_plan_model_free(m);
        return ST_ERR_NOMEM;
    }
    return ST_OK;
}

/* Builds the byte and flop counts of a model with the preset's shapes in a mix. */
static st_status build_from_shapes(const struct st_plan_preset *p, const char *name, enum mix mix,
                                   const char *quant_name, struct st_plan_model *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    snprintf(out->weights, sizeof out->weights, "%s", quant_name);
    out->arch = p->arch;
    out->n_layer = p->n_layer;
    out->n_embd = p->n_embd;
    out->n_ff = p->n_ff;
    out->n_vocab = p->n_vocab;
    out->n_head = p->n_head;
    out->n_head_kv = p->n_head_kv;
    out->head_dim = p->head_dim;
    out->n_ctx_train = p->n_ctx_train;
    out->tied_embeddings = p->tied_embeddings;
    out->qkv_bias = p->qkv_bias;
    out->qk_norm = p->qk_norm;
    if (st_plan_model_alloc(out, p->n_layer) != ST_OK) return ST_ERR_NOMEM;
    if (pl_model_alloc_dtypes(out) != ST_OK) { st_plan_model_free(out); return ST_ERR_NOMEM; }
    out->names = ST_MODEL_GGUF;

    const int64_t E = p->n_embd, F = p->n_ff, L = p->n_layer, qd = p->n_head * p->head_dim,
                  kvd = p->n_head_kv * p->head_dim, V = p->n_vocab;
    const bool is_70b = L == 80 && p->arch != ST_ARCH_QWEN3;
    const uint64_t f32 = 4;
    bool uniform = true;
    st_dtype first_t = ST_DTYPE_COUNT;
    uint64_t total = 0;
    for (int64_t l = 0; l < L; l++) {
        const struct { enum tkind k; int64_t rows, cols; } mats[] = {
            {T_Q, qd, E}, {T_K, kvd, E}, {T_V, kvd, E}, {T_O, E, qd},
            {T_GATE, F, E}, {T_UP, F, E}, {T_DOWN, E, F},
        };
        uint64_t b = 2 * E * f32;                                  /* attn_norm, ffn_norm */
        if (p->qkv_bias) b += (uint64_t)(qd + 2 * kvd) * f32;
        if (p->qk_norm) b += 2 * (uint64_t)p->head_dim * f32;
        double flops = 0;
        for (size_t i = 0; i < ST_ARRAY_LEN(mats); i++) {
            st_dtype t = mix_type(mix, mats[i].k, mats[i].cols, l, L, p->tied_embeddings, is_70b);
            out->mat_dtypes[l * ST_PLAN_N_MATRICES + (int64_t)i] = (uint8_t)t;   /* mats[] is in role order */
            if (first_t == ST_DTYPE_COUNT) first_t = t;
            if (t != first_t) uniform = false;
            b += mat_bytes(t, mats[i].rows, mats[i].cols);
            flops += 2.0 * (double)mats[i].rows * (double)mats[i].cols;
            uint64_t elems = (uint64_t)mats[i].rows * (uint64_t)mats[i].cols;
            if (elems > out->max_matrix_elems) out->max_matrix_elems = elems;
        }
        out->layer_bytes[l] = b;
        out->layer_flops[l] = flops;
        total += b;
    }
    out->matrix_dtype = uniform ? first_t : ST_DTYPE_COUNT;
    out->embd_dtype = mix_type(mix, T_EMBD, E, 0, L, p->tied_embeddings, is_70b);
    out->lm_head_dtype = p->tied_embeddings ? out->embd_dtype : mix_type(mix, T_OUTPUT, E, 0, L, false, is_70b);
    out->embd_bytes = mat_bytes(out->embd_dtype, V, E);
    out->output_norm_bytes = (uint64_t)E * f32;
    out->lm_head_bytes = p->tied_embeddings ? out->embd_bytes : mat_bytes(out->lm_head_dtype, V, E);
    out->output_flops = 2.0 * (double)V * (double)E;
    /* llama 3.1+ GGUFs carry rope_freqs.weight (head_dim / 2 f32 factors) */
    out->shared_bytes = p->arch == ST_ARCH_LLAMA && p->n_ctx_train > 8192 ? (uint64_t)p->head_dim / 2 * f32 : 0;
    out->total_bytes = total + out->embd_bytes + out->output_norm_bytes + out->shared_bytes +
                       (p->tied_embeddings ? 0 : out->lm_head_bytes);
    return ST_OK;
}

st_status st_plan_model_from_preset(const char *preset, const char *quant, struct st_plan_model *out) {
    memset(out, 0, sizeof *out);
    const struct st_plan_preset *p = NULL;
    for (int i = 0; preset && i < st_plan_preset_count(); i++) {
        if (!strcmp(presets[i].name, preset)) p = &presets[i];
    }
    if (!p) {
        const char *names[ST_ARRAY_LEN(presets)];
        for (size_t i = 0; i < ST_ARRAY_LEN(presets); i++) names[i] = presets[i].name;
        const char *near = preset ? st_nearest_word(preset, names, ST_ARRAY_LEN(names)) : NULL;
        st_error_set(ST_ERR_CONFIG, "model preset '%s' is not known", preset ? preset : "(null)");
        if (near) return st_error_hint("did you mean '%s'? configs/presets.yaml lists the presets", near);
        return st_error_hint("presets: qwen2.5-0.5b ... qwen2.5-72b, qwen3-0.6b ... qwen3-32b, llama-2-7b, "
                             "llama-3.1-8b, llama-3.1-70b, llama-3.3-70b (configs/presets.yaml)");
    }
    if (!quant || !quant[0]) quant = "bf16";
    enum mix mix;
    if (!parse_mix(quant, &mix)) {
        st_error_set(ST_ERR_CONFIG, "model quant '%s' is not a stored format presets know", quant);
        return st_error_hint("use one of f32, f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m, q4_0");
    }
    char low[24];
    size_t n = strlen(quant);
    for (size_t i = 0; i <= n; i++) low[i] = (char)(quant[i] >= 'A' && quant[i] <= 'Z' ? quant[i] + 32 : quant[i]);
    return build_from_shapes(p, p->name, mix, low, out);
}

st_status st_plan_model_requant(const struct st_plan_model *m, const char *quant, struct st_plan_model *out) {
    enum mix mix;
    if (!parse_mix(quant, &mix)) {
        st_error_set(ST_ERR_CONFIG, "model quant '%s' is not a stored format presets know", quant);
        return st_error_hint("use one of f32, f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m, q4_0");
    }
    struct st_plan_preset p = {
        .name = m->name, .arch = m->arch, .n_layer = m->n_layer, .n_embd = m->n_embd, .n_ff = m->n_ff,
        .n_head = m->n_head, .n_head_kv = m->n_head_kv, .head_dim = m->head_dim, .n_vocab = m->n_vocab,
        .n_ctx_train = m->n_ctx_train, .tied_embeddings = m->tied_embeddings, .qkv_bias = m->qkv_bias,
        .qk_norm = m->qk_norm,
    };
    return build_from_shapes(&p, m->name, mix, quant, out);
}

void st_plan_model_free(struct st_plan_model *m) {
    if (!m) return;
    free(m->layer_bytes);
    free(m->layer_flops);
    free(m->mat_dtypes);
    m->layer_bytes = NULL;
    m->layer_flops = NULL;
    m->mat_dtypes = NULL;
}

st_status st_plan_model_copy(const struct st_plan_model *src, struct st_plan_model *dst) {
    *dst = *src;
    dst->layer_bytes = NULL;
    dst->layer_flops = NULL;
    dst->mat_dtypes = NULL;
    if (st_plan_model_alloc(dst, src->n_layer) != ST_OK) return ST_ERR_NOMEM;
    memcpy(dst->layer_bytes, src->layer_bytes, (size_t)src->n_layer * sizeof *dst->layer_bytes);
    memcpy(dst->layer_flops, src->layer_flops, (size_t)src->n_layer * sizeof *dst->layer_flops);
    if (src->mat_dtypes) {
        if (pl_model_alloc_dtypes(dst) != ST_OK) { st_plan_model_free(dst); return ST_ERR_NOMEM; }
        memcpy(dst->mat_dtypes, src->mat_dtypes, (size_t)src->n_layer * ST_PLAN_N_MATRICES);
    }
    return ST_OK;
}
