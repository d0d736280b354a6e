/* st_model_open: format dispatch, file mapping, tensor roles and the
 * validation of every tensor the forward pass reads against the
 * hyper-parameters; sizes for the planner and `strata model`. */
#include "model/model-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- names of the roles in each format ------------------------------------ */

static const char *const gguf_layer_names[ST_T_LAYER_ROLES] = {
    [ST_T_ATTN_NORM] = "attn_norm.weight", [ST_T_WQ] = "attn_q.weight", [ST_T_WK] = "attn_k.weight",
    [ST_T_WV] = "attn_v.weight", [ST_T_BQ] = "attn_q.bias", [ST_T_BK] = "attn_k.bias", [ST_T_BV] = "attn_v.bias",
    [ST_T_WO] = "attn_output.weight", [ST_T_BO] = "attn_output.bias", [ST_T_Q_NORM] = "attn_q_norm.weight",
    [ST_T_K_NORM] = "attn_k_norm.weight", [ST_T_FFN_NORM] = "ffn_norm.weight", [ST_T_W_GATE] = "ffn_gate.weight",
    [ST_T_W_UP] = "ffn_up.weight", [ST_T_W_DOWN] = "ffn_down.weight",
};
static const char *const hf_layer_names[ST_T_LAYER_ROLES] = {
    [ST_T_ATTN_NORM] = "input_layernorm.weight", [ST_T_WQ] = "self_attn.q_proj.weight",
    [ST_T_WK] = "self_attn.k_proj.weight", [ST_T_WV] = "self_attn.v_proj.weight", [ST_T_BQ] = "self_attn.q_proj.bias",
    [ST_T_BK] = "self_attn.k_proj.bias", [ST_T_BV] = "self_attn.v_proj.bias", [ST_T_WO] = "self_attn.o_proj.weight",
    [ST_T_BO] = "self_attn.o_proj.bias", [ST_T_Q_NORM] = "self_attn.q_norm.weight",
    [ST_T_K_NORM] = "self_attn.k_norm.weight", [ST_T_FFN_NORM] = "post_attention_layernorm.weight",
    [ST_T_W_GATE] = "mlp.gate_proj.weight", [ST_T_W_UP] = "mlp.up_proj.weight", [ST_T_W_DOWN] = "mlp.down_proj.weight",
};
static const char *const layer_role_desc[ST_T_LAYER_ROLES] = {
    "attention norm", "query projection", "key projection", "value projection", "query bias", "key bias",
    "value bias", "output projection", "output projection bias", "query norm", "key norm", "MLP norm",
    "MLP gate projection", "MLP up projection", "MLP down projection",
};
static const char *const gguf_global_names[ST_T_GLOBAL_ROLES] = {
    "token_embd.weight", "output_norm.weight", "output.weight", "rope_freqs.weight"};
static const char *const hf_global_names[ST_T_GLOBAL_ROLES] = {
    "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", NULL};
static const char *const global_role_desc[ST_T_GLOBAL_ROLES] = {
    "token embedding", "final norm", "output (lm_head)", "llama3 RoPE frequency factors"};

char *st_model_role_name(st_model_format format, int64_t layer, int role, bool global, char *buf, size_t n) {
    if (global) {
        const char *nm = role < 0 || role >= ST_T_GLOBAL_ROLES ? NULL
                       : format == ST_MODEL_GGUF ? gguf_global_names[role] : hf_global_names[role];
        snprintf(buf, n, "%s", nm ? nm : "?");
    } else if (role < 0 || role >= ST_T_LAYER_ROLES) {
        snprintf(buf, n, "?");
    } else if (format == ST_MODEL_GGUF) {
        snprintf(buf, n, "blk.%lld.%s", (long long)layer, gguf_layer_names[role]);
    } else {
        snprintf(buf, n, "model.layers.%lld.%s", (long long)layer, hf_layer_names[role]);
    }
    return buf;
}

static void role_name(const st_model *m, int64_t layer, int role, bool global, char *buf, size_t n) {
    st_model_role_name(m->format, layer, role, global, buf, n);
}

/* ---- files and tensor table ------------------------------------------------ */

st_status st_model_map_file(st_model *m, const char *path, int *idx) {
    if (m->n_files >= ST_MODEL_MAX_FILES) {
        st_error_set(ST_ERR_FORMAT, "%s: the model is spread over more than %d files", m->path, ST_MODEL_MAX_FILES);
        return st_error_hint("strata reads at most %d safetensors shards (docs/limits.md)", ST_MODEL_MAX_FILES);
    }
    struct st_model_file *nf = st_realloc(m->files, sizeof *m->files * (size_t)(m->n_files + 1), "the file table");
    if (!nf) return ST_ERR_NOMEM;
    m->files = nf;
    struct st_model_file *f = &m->files[m->n_files];
    memset(f, 0, sizeof *f);
    f->path = st_strdup(path, "a path");
    if (!f->path) return ST_ERR_NOMEM;
    m->n_files++;
    int fd = st_fault_hit(ST_FAULT_READ, path) ? (errno = EIO, -1) : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st_error_set(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return st_error_hint("check the path and its permissions");
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return st_error_set(ST_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            f->size = 0;
            return st_error_set(ST_ERR_IO, "%s: cannot map %zu bytes: %s", path, (size_t)st.st_size, strerror(e));
        }
        f->map = p;
        st_status rc = st_filemap_add(p, f->size, fd, path);   /* a backend may pread it (base.h) */
        if (rc != ST_OK) {
            munmap(p, f->size);
            f->map = NULL;
            f->size = 0;
            close(fd);
            return rc;
        }
    }
    close(fd);
    *idx = m->n_files - 1;
    return ST_OK;
}

st_status st_model_add_tensor(st_model *m, const struct st_tensor *t) {
    /* capacity is 16 up to 16 tensors, then the next power of two */
    int64_t n = m->n_tensors;
    if (n >= ST_MODEL_MAX_TENSORS) {
        st_error_set(ST_ERR_FORMAT, "%s: tensor '%s': the model holds more than %d tensors", m->files[t->file].path,
                     t->name, ST_MODEL_MAX_TENSORS);
        return st_error_hint("strata reads at most %d tensors (docs/limits.md); is this a language model?",
                             ST_MODEL_MAX_TENSORS);
    }
    if (n == 0 || (n >= 16 && (n & (n - 1)) == 0)) {
        struct st_tensor *nt = st_realloc(m->tensors, sizeof *nt * (size_t)(n ? 2 * n : 16), "the tensor table");
        if (!nt) return ST_ERR_NOMEM;
        m->tensors = nt;
    }
    m->tensors[n] = *t;
    m->n_tensors = n + 1;
    return ST_OK;
}

/* Tensor indices sorted by name (caller frees). */
static _Thread_local const st_model *sort_model;
static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(sort_model->tensors[*(const int64_t *)a].name, sort_model->tensors[*(const int64_t *)b].name);
}

static st_status sorted_names(const st_model *m, int64_t **out) {
    int64_t *idx = st_malloc(sizeof(int64_t) * (size_t)(m->n_tensors ? m->n_tensors : 1), "tensor name index");
    if (!idx) return ST_ERR_NOMEM;
    for (int64_t i = 0; i < m->n_tensors; i++) idx[i] = i;
    sort_model = m;
    qsort(idx, (size_t)m->n_tensors, sizeof *idx, cmp_tensor_name);
    *out = idx;
    return ST_OK;
}

/* Same name twice (across shards; one file's duplicates are caught by its reader). */
static st_status check_duplicates(const st_model *m) {
    int64_t *idx;
    st_status s = sorted_names(m, &idx);
    if (s) return s;
    for (int64_t i = 1; i < m->n_tensors; i++) {
        const struct st_tensor *a = &m->tensors[idx[i - 1]], *b = &m->tensors[idx[i]];
        if (!strcmp(a->name, b->name)) {
            st_error_set(ST_ERR_FORMAT, "%s: tensor '%s' appears twice (also in %s)", m->files[b->file].path, b->name,
                         m->files[a->file].path);
            s = st_error_hint("the shards overlap; download the model again");
            break;
        }
    }
    free(idx);
    return s;
}

st_status st_model_find_all(const st_model *m, const char *const *names, size_t n, size_t *first_missing) {
    int64_t *idx;
    st_status s = sorted_names(m, &idx);
    if (s) return s;
    *first_missing = n;
    for (size_t i = 0; i < n && *first_missing == n; i++) {
        int64_t lo = 0, hi = m->n_tensors;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            int c = strcmp(m->tensors[idx[mid]].name, names[i]);
            if (c == 0) { lo = hi = -1; break; }
            if (c < 0) lo = mid + 1; else hi = mid;
        }
        if (lo != -1) *first_missing = i;
    }
    free(idx);
    return ST_OK;
}

/* ---- roles ------------------------------------------------------------------- */

/* Parses "<prefix><digits>.<rest>"; returns rest or NULL. */
static const char *layer_suffix(const char *name, const char *prefix, int64_t *layer) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl)) return NULL;
    const char *p = name + pl;
    if (*p < '0' || *p > '9') return NULL;
    int64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        if (v > (1 << 24)) return NULL;
        p++;
    }
    if (*p != '.') return NULL;
    *layer = v;
    return p + 1;
}

static st_status assign_roles(st_model *m) {
    const int64_t L = m->hp.n_layer;
    m->layer_tensors = st_malloc(sizeof(int32_t) * (size_t)(L * ST_T_LAYER_ROLES), "layer tensor table");
    if (!m->layer_tensors) return ST_ERR_NOMEM;
    for (int64_t i = 0; i < L * ST_T_LAYER_ROLES; i++) m->layer_tensors[i] = -1;
    for (int r = 0; r < ST_T_GLOBAL_ROLES; r++) m->global_tensors[r] = -1;
    bool gguf = m->format == ST_MODEL_GGUF;
    const char *prefix = gguf ? "blk." : "model.layers.";
    const char *const *lnames = gguf ? gguf_layer_names : hf_layer_names;
    const char *const *gnames = gguf ? gguf_global_names : hf_global_names;
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const char *name = m->tensors[i].name;
        bool known = false;
        for (int r = 0; r < ST_T_GLOBAL_ROLES; r++) {
            if (gnames[r] && !strcmp(name, gnames[r])) { m->global_tensors[r] = (int32_t)i; known = true; }
        }
        int64_t layer;
        const char *rest = layer_suffix(name, prefix, &layer);
        if (rest) {
            for (int r = 0; r < ST_T_LAYER_ROLES; r++) {
                if (strcmp(rest, lnames[r])) continue;
                if (layer >= L) {
                    st_error_set(ST_ERR_FORMAT, "%s: tensor '%s' belongs to layer %lld but the model has %lld layers",
                                 m->files[m->tensors[i].file].path, name, (long long)layer, (long long)L);
                    return st_error_hint("the layer count in the metadata/config.json does not match the tensors");
                }
                m->layer_tensors[layer * ST_T_LAYER_ROLES + r] = (int32_t)i;
                known = true;
            }
        }
        if (!known) ST_INFO("%s: tensor '%s' is not used by the forward pass", m->path, name);
    }
    return ST_OK;
}

/* ---- validation ---------------------------------------------------------------- */

static void fmt_shape(const st_model *m, int n_dims, const int64_t *ne, char *buf, size_t n) {
    /* GGUF lists ne0 first; safetensors lists the slowest dimension first */
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int d = 0; d < n_dims && o < n; d++) {
        int k = m->format == ST_MODEL_GGUF ? d : n_dims - 1 - d;
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", d ? ", " : "", (long long)ne[k]);
    }
    if (o < n) snprintf(buf + o, n - o, "]");
}

static st_status check_tensor(const st_model *m, int32_t idx, const char *desc, int n_dims, int64_t ne0, int64_t ne1,
                              const char *why) {
    const struct st_tensor *t = &m->tensors[idx];
    int64_t want[4] = {ne0, ne1, 1, 1};
    bool ok = true;
    for (int d = 0; d < 4; d++) ok = ok && t->ne[d] == want[d];
    if (!ok) {
        char have[96], exp[96];
        fmt_shape(m, t->n_dims, t->ne, have, sizeof have);
        fmt_shape(m, n_dims, want, exp, sizeof exp);
        st_error_set(ST_ERR_FORMAT, "%s: tensor '%s' (%s) has shape %s, expected %s (%s)",
                     m->files[t->file].path, t->name, desc, have, exp, why);
        return st_error_hint("the hyper-parameters (%s) do not match the weights; the file is corrupt or mislabelled",
                             m->format == ST_MODEL_GGUF ? "GGUF metadata" : "config.json");
    }
    if (!st_dtype_supported(t->dtype)) {
        st_error_set(ST_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s, which this build cannot compute with",
                     m->files[t->file].path, t->name, st_dtype_name(t->dtype));
        return st_error_hint("use a file quantized to f32, f16, bf16, q8_0, q4_k, q5_k or q6_k");
    }
    return ST_OK;
}

static st_status missing(const st_model *m, int64_t layer, int role, bool global) {
    char name[128];
    role_name(m, layer, role, global, name, sizeof name);
    if (global) st_error_set(ST_ERR_FORMAT, "%s: tensor '%s' (%s) is missing", m->path, name, global_role_desc[role]);
    else st_error_set(ST_ERR_FORMAT, "%s: tensor '%s' (layer %lld %s) is missing", m->path, name, (long long)layer,
                      layer_role_desc[role]);
    return st_error_hint("the file is incomplete or is not a %s model; download or convert it again", st_arch_name(m->hp.arch));
}

/* Where each hyper-parameter is written: the GGUF key (after "<arch>.") and
 * the config.json field, so that messages name what the user can look up. */
enum hp_field { HP_EMBD, HP_FF, HP_LAYER, HP_HEAD, HP_HEAD_KV, HP_HEAD_DIM, HP_CTX, HP_EPS, HP_THETA, HP_FACTOR,
                HP_ORIG_CTX, HP_VOCAB };
static const char *const hp_gguf_key[] = {
    "embedding_length", "feed_forward_length", "block_count", "attention.head_count", "attention.head_count_kv",
    "attention.key_length", "context_length", "attention.layer_norm_rms_epsilon", "rope.freq_base",
    "rope.scaling.factor", "rope.scaling.original_context_length", NULL};
static const char *const hp_hf_key[] = {
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
    "max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling.factor",
    "rope_scaling.original_max_position_embeddings", "vocab_size"};

static const char *hp_key(const st_model *m, enum hp_field f, char *buf, size_t n) {
    if (m->format == ST_MODEL_HF_DIR) snprintf(buf, n, "%s", hp_hf_key[f]);
    else if (f == HP_VOCAB) snprintf(buf, n, "token_embd.weight rows");
    else snprintf(buf, n, "%s.%s", st_arch_name(m->hp.arch), hp_gguf_key[f]);
    return buf;
}

/* "<file>: <metadata key | config.json field> '<key>' = " for messages. */
static void hp_where(const st_model *m, enum hp_field f, char *buf, size_t n) {
    char k[96];
    hp_key(m, f, k, sizeof k);
    if (m->format == ST_MODEL_HF_DIR) snprintf(buf, n, "%s/config.json: field '%s'", m->path, k);
    else if (f == HP_VOCAB) snprintf(buf, n, "%s: %s", m->path, k);
    else snprintf(buf, n, "%s: metadata key '%s'", m->path, k);
}

static st_status hp_int_range(const st_model *m, enum hp_field f, int64_t v, int64_t lo, int64_t hi) {
    if (v >= lo && v <= hi) return ST_OK;
    char w[640];
    hp_where(m, f, w, sizeof w);
    st_error_set(ST_ERR_FORMAT, "%s = %lld is out of range: it must be in %lld..%lld", w, (long long)v,
                 (long long)lo, (long long)hi);
    return st_error_hint("the %s is corrupt or not a %s model's; strata's limits are in docs/limits.md",
                         m->format == ST_MODEL_GGUF ? "GGUF metadata" : "config.json", st_arch_name(m->hp.arch));
}

st_status st_model_hp_float(const char *where, double v, double lo, bool lo_open, double hi, const char *src) {
    if (isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi) return ST_OK;
    st_error_set(ST_ERR_FORMAT, "%s = %g is not a finite number in %s%g, %g]", where, v, lo_open ? "(" : "[", lo, hi);
    return st_error_hint("a model with this value computes garbage (NaN or all-zero logits); the %s is corrupt", src);
}

/* lo_open: the bound itself is refused. */
static st_status hp_float_range(const st_model *m, enum hp_field f, double v, double lo, bool lo_open, double hi) {
    char w[640];
    hp_where(m, f, w, sizeof w);
    return st_model_hp_float(w, v, lo, lo_open, hi, m->format == ST_MODEL_GGUF ? "GGUF metadata" : "config.json");
}

static st_status check_hparams(st_model *m) {
    struct st_hparams *hp = &m->hp;
    const char *src = m->format == ST_MODEL_GGUF ? "GGUF metadata" : "config.json";
    char ka[96], kb[96];
    st_status s;
    if ((s = hp_int_range(m, HP_LAYER, hp->n_layer, 1, ST_MODEL_MAX_LAYERS)) ||
        (s = hp_int_range(m, HP_EMBD, hp->n_embd, 1, ST_MODEL_MAX_EMBD)) ||
        (s = hp_int_range(m, HP_FF, hp->n_ff, 1, ST_MODEL_MAX_FF)) ||
        (s = hp_int_range(m, HP_HEAD, hp->n_head, 1, ST_MODEL_MAX_HEADS)) ||
        (s = hp_int_range(m, HP_HEAD_KV, hp->n_head_kv, 1, ST_MODEL_MAX_HEADS)) ||
        (s = hp_int_range(m, HP_HEAD_DIM, hp->head_dim, 1, ST_MODEL_MAX_HEAD_DIM)))
        return s;
    /* 0 means "not given" in a GGUF file; given, it must be a real length */
    if (hp->n_ctx_train != 0 || m->format == ST_MODEL_HF_DIR) {
        if ((s = hp_int_range(m, HP_CTX, hp->n_ctx_train, 1, ST_MODEL_MAX_CONTEXT))) return s;
    } else if (m->gguf) {
        char key[96];
        if (st_gguf_find(m->gguf, hp_key(m, HP_CTX, key, sizeof key)) >= 0 &&
            (s = hp_int_range(m, HP_CTX, hp->n_ctx_train, 1, ST_MODEL_MAX_CONTEXT))) return s;
    }
    if (m->format == ST_MODEL_HF_DIR && (s = hp_int_range(m, HP_VOCAB, hp->n_vocab, 1, ST_MODEL_MAX_VOCAB))) return s;
    if (hp->n_layer * 9 > m->n_tensors) {
        st_error_set(ST_ERR_FORMAT, "%s: the %s says %lld layers (%s) but the weights hold only %lld tensors", m->path,
                     src, (long long)hp->n_layer, hp_key(m, HP_LAYER, ka, sizeof ka), (long long)m->n_tensors);
        return st_error_hint("each layer needs at least 9 tensors; fix the layer count or download the full model");
    }
    if (hp->n_head % hp->n_head_kv) {
        st_error_set(ST_ERR_FORMAT, "%s: head count %lld (%s) is not a multiple of the KV head count %lld (%s)",
                     m->path, (long long)hp->n_head, hp_key(m, HP_HEAD, ka, sizeof ka), (long long)hp->n_head_kv,
                     hp_key(m, HP_HEAD_KV, kb, sizeof kb));
        return st_error_hint("fix %s in the %s", kb, src);
    }
    if (hp->head_dim % 2) {
        st_error_set(ST_ERR_FORMAT, "%s: head dimension %lld (%s) is odd", m->path, (long long)hp->head_dim,
                     hp_key(m, HP_HEAD_DIM, ka, sizeof ka));
        return st_error_hint("RoPE rotates pairs of dimensions; fix %s in the %s", ka, src);
    }
    if ((s = hp_float_range(m, HP_EPS, hp->rms_eps, ST_MODEL_MIN_RMS_EPS, false, ST_MODEL_MAX_RMS_EPS)) ||
        (s = hp_float_range(m, HP_THETA, hp->rope_theta, 1.0, true, ST_MODEL_MAX_ROPE_THETA)))
        return s;
    /* the factor is 0 when not given (GGUF llama3 keeps its factors in rope_freqs.weight) */
    if ((hp->rope_factor != 0 || hp->rope_scaling == ST_ROPE_SCALING_LINEAR) &&
        (s = hp_float_range(m, HP_FACTOR, hp->rope_factor, 0, true, ST_MODEL_MAX_ROPE_FACTOR)))
        return s;
    if ((s = hp_int_range(m, HP_ORIG_CTX, hp->rope_orig_ctx, 0, ST_MODEL_MAX_CONTEXT))) return s;
    return ST_OK;
}

static st_status validate(st_model *m) {
    st_status s;
    struct st_hparams *hp = &m->hp;
    const bool gguf = m->format == ST_MODEL_GGUF;
    const int64_t E = hp->n_embd, F = hp->n_ff, D = hp->head_dim, H = hp->n_head, Hkv = hp->n_head_kv;
    int32_t *G = m->global_tensors;

    if (G[ST_T_TOK_EMBD] < 0) return missing(m, 0, ST_T_TOK_EMBD, true);
    if (gguf) {
        hp->n_vocab = m->tensors[G[ST_T_TOK_EMBD]].ne[1];
        if ((s = hp_int_range(m, HP_VOCAB, hp->n_vocab, 1, ST_MODEL_MAX_VOCAB))) return s;
        hp->tied_embeddings = G[ST_T_OUTPUT] < 0;
        const int32_t *l0 = m->layer_tensors;
        if (hp->n_layer > 0) {
            hp->qkv_bias = l0[ST_T_BQ] >= 0;
            hp->o_bias = l0[ST_T_BO] >= 0;
            hp->qk_norm = l0[ST_T_Q_NORM] >= 0;
        }
        if (G[ST_T_ROPE_FREQS] >= 0 && hp->rope_scaling == ST_ROPE_SCALING_NONE) hp->rope_scaling = ST_ROPE_SCALING_LLAMA3;
        if (hp->rope_scaling == ST_ROPE_SCALING_LLAMA3 && G[ST_T_ROPE_FREQS] < 0) {
            st_error_set(ST_ERR_FORMAT, "%s: llama3 RoPE scaling without the tensor 'rope_freqs.weight'", m->path);
            return st_error_hint("llama.cpp stores llama3 scaling as rope_freqs.weight; convert the model again");
        }
    } else {
        if (hp->tied_embeddings && G[ST_T_OUTPUT] >= 0) {
            ST_INFO("%s: tie_word_embeddings is true; lm_head.weight is ignored", m->path);
            G[ST_T_OUTPUT] = -1;
        }
    }
    char why[160];
    snprintf(why, sizeof why, "n_embd %lld, n_vocab %lld", (long long)E, (long long)hp->n_vocab);
    if ((s = check_tensor(m, G[ST_T_TOK_EMBD], global_role_desc[ST_T_TOK_EMBD], 2, E, hp->n_vocab, why))) return s;
    if (G[ST_T_OUTPUT_NORM] < 0) return missing(m, 0, ST_T_OUTPUT_NORM, true);
    snprintf(why, sizeof why, "n_embd %lld", (long long)E);
    if ((s = check_tensor(m, G[ST_T_OUTPUT_NORM], global_role_desc[ST_T_OUTPUT_NORM], 1, E, 1, why))) return s;
    if (!hp->tied_embeddings) {
        if (G[ST_T_OUTPUT] < 0) {
            s = missing(m, 0, ST_T_OUTPUT, true);
            return st_error_hint("config.json says tie_word_embeddings is false, so lm_head.weight must be present");
        }
        snprintf(why, sizeof why, "n_embd %lld, n_vocab %lld", (long long)E, (long long)hp->n_vocab);
        if ((s = check_tensor(m, G[ST_T_OUTPUT], global_role_desc[ST_T_OUTPUT], 2, E, hp->n_vocab, why))) return s;
    }
    if (G[ST_T_ROPE_FREQS] >= 0) {
        snprintf(why, sizeof why, "head_dim %lld / 2", (long long)D);
        if ((s = check_tensor(m, G[ST_T_ROPE_FREQS], global_role_desc[ST_T_ROPE_FREQS], 1, D / 2, 1, why))) return s;
        if (m->tensors[G[ST_T_ROPE_FREQS]].dtype != ST_DTYPE_F32) {
            st_error_set(ST_ERR_FORMAT, "%s: tensor 'rope_freqs.weight' has dtype %s; it must be f32", m->path,
                         st_dtype_name(m->tensors[G[ST_T_ROPE_FREQS]].dtype));
            return st_error_hint("convert the model again with a current llama.cpp");
        }
        /* theta_i is divided by each factor: 0, inf or NaN would turn RoPE into garbage */
        const struct st_tensor *rf = &m->tensors[G[ST_T_ROPE_FREQS]];
        for (int64_t i = 0; i < rf->ne[0]; i++) {
            float f;
            memcpy(&f, (const uint8_t *)rf->data + 4 * i, 4);
            if (!isfinite(f) || !(f > 0) || f > ST_MODEL_MAX_ROPE_FACTOR) {
                st_error_set(ST_ERR_FORMAT, "%s: tensor 'rope_freqs.weight' element %lld is %g; each RoPE frequency "
                             "factor must be a finite number in (0, %g]", m->path, (long long)i, f, ST_MODEL_MAX_ROPE_FACTOR);
                return st_error_hint("the file is corrupt; convert the model again with a current llama.cpp");
            }
        }
    }

    bool need[ST_T_LAYER_ROLES];
    for (int r = 0; r < ST_T_LAYER_ROLES; r++) need[r] = true;
    need[ST_T_BQ] = need[ST_T_BK] = need[ST_T_BV] = hp->qkv_bias;
    need[ST_T_BO] = hp->o_bias;
    need[ST_T_Q_NORM] = need[ST_T_K_NORM] = hp->qk_norm;
    struct { int n_dims; int64_t ne0, ne1; const char *why; } shape[ST_T_LAYER_ROLES];
    char w_e[64], w_q[96], w_kv[96], w_d[64], w_f[96];
    snprintf(w_e, sizeof w_e, "n_embd %lld", (long long)E);
    snprintf(w_q, sizeof w_q, "n_embd %lld, n_head %lld x head_dim %lld", (long long)E, (long long)H, (long long)D);
    snprintf(w_kv, sizeof w_kv, "n_embd %lld, n_head_kv %lld x head_dim %lld", (long long)E, (long long)Hkv, (long long)D);
    snprintf(w_d, sizeof w_d, "head_dim %lld", (long long)D);
    snprintf(w_f, sizeof w_f, "n_embd %lld, n_ff %lld", (long long)E, (long long)F);
#define SH(r, nd, a, b, w) shape[r].n_dims = nd, shape[r].ne0 = a, shape[r].ne1 = b, shape[r].why = w
    SH(ST_T_ATTN_NORM, 1, E, 1, w_e);
    SH(ST_T_WQ, 2, E, H * D, w_q);
    SH(ST_T_WK, 2, E, Hkv * D, w_kv);
    SH(ST_T_WV, 2, E, Hkv * D, w_kv);
    SH(ST_T_BQ, 1, H * D, 1, w_q);
    SH(ST_T_BK, 1, Hkv * D, 1, w_kv);
    SH(ST_T_BV, 1, Hkv * D, 1, w_kv);
    SH(ST_T_WO, 2, H * D, E, w_q);
    SH(ST_T_BO, 1, E, 1, w_e);
    SH(ST_T_Q_NORM, 1, D, 1, w_d);
    SH(ST_T_K_NORM, 1, D, 1, w_d);
    SH(ST_T_FFN_NORM, 1, E, 1, w_e);
    SH(ST_T_W_GATE, 2, E, F, w_f);
    SH(ST_T_W_UP, 2, E, F, w_f);
    SH(ST_T_W_DOWN, 2, F, E, w_f);
#undef SH
    for (int64_t l = 0; l < hp->n_layer; l++) {
        int32_t *lt = m->layer_tensors + l * ST_T_LAYER_ROLES;
        for (int r = 0; r < ST_T_LAYER_ROLES; r++) {
            if (!need[r]) {
                if (lt[r] >= 0) {
                    if (gguf) {
                        st_error_set(ST_ERR_FORMAT, "%s: tensor '%s' (%s) is present in layer %lld but not in layer 0",
                                     m->path, m->tensors[lt[r]].name, layer_role_desc[r], (long long)l);
                        return st_error_hint("every layer of a llama/qwen2/qwen3 model has the same tensors; the file is corrupt");
                    }
                    ST_WARN("%s: tensor '%s' is not used: config.json says the model has no %s", m->path,
                            m->tensors[lt[r]].name, layer_role_desc[r]);
                    lt[r] = -1;
                }
                continue;
            }
            if (lt[r] < 0) return missing(m, l, r, false);
            if ((s = check_tensor(m, lt[r], layer_role_desc[r], shape[r].n_dims, shape[r].ne0, shape[r].ne1, shape[r].why))) return s;
        }
    }
    return ST_OK;
}

/* ---- open / free ------------------------------------------------------------------ */

st_status st_model_open(const char *path, st_model **out) {
    *out = NULL;
    st_status s;
    struct stat st;
    if (!path || !path[0]) {
        st_error_set(ST_ERR_USAGE, "no model path given");
        return st_error_hint("name a GGUF file or a Hugging Face model directory");
    }
    if (stat(path, &st) != 0) {
        st_error_set(ST_ERR_IO, "%s: %s", path, strerror(errno));
        return st_error_hint("name a GGUF file or a Hugging Face model directory (with config.json and *.safetensors)");
    }
    st_model *m = st_calloc(1, sizeof *m, "model");
    if (!m) return ST_ERR_NOMEM;
    m->path = st_strdup(path, "a path");
    if (!m->path) { s = ST_ERR_NOMEM; goto fail; }
    if (S_ISDIR(st.st_mode)) {
        m->format = ST_MODEL_HF_DIR;
        if ((s = st_model_load_hf(m))) goto fail;
    } else {
        unsigned char magic[8] = {0};
        FILE *f = st_fault_hit(ST_FAULT_READ, path) ? (errno = EIO, NULL) : fopen(path, "rb");
        if (!f) {
            s = st_error_set(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
            goto fail;
        }
        size_t got = fread(magic, 1, sizeof magic, f);
        fclose(f);
        if (got >= 4 && !memcmp(magic, "GGUF", 4)) {
            m->format = ST_MODEL_GGUF;
            if ((s = st_model_load_gguf(m))) goto fail;
        } else {
            size_t n = strlen(path);
            if (n > 12 && !strcmp(path + n - 12, ".safetensors")) {
                s = st_error_set(ST_ERR_USAGE, "%s: a .safetensors file alone does not describe a model", path);
                st_error_hint("pass the directory that holds it together with config.json");
            } else {
                s = st_error_set(ST_ERR_FORMAT, "%s: not a GGUF file (no 'GGUF' magic at byte 0) and not a directory", path);
                st_error_hint("name a .gguf file or a Hugging Face model directory (config.json + *.safetensors)");
            }
            goto fail;
        }
    }
    if ((s = check_duplicates(m))) goto fail;
    if ((s = check_hparams(m))) goto fail;
    if ((s = assign_roles(m))) goto fail;
    if ((s = validate(m))) goto fail;
    *out = m;
    return ST_OK;
fail:
    st_model_free(m);
    return s;
}

void st_model_free(st_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_files; i++) {
        if (m->files[i].map) {
            st_filemap_remove(m->files[i].map);
            munmap(m->files[i].map, m->files[i].size);
        }
        free(m->files[i].path);
    }
    free(m->files);
    free(m->tensors);
    free(m->layer_tensors);
    free(m->tokenizer_path);
    free(m->chat_template);
    st_gguf_free(m->gguf);
    free(m->path);
    free(m);
}

/* ---- lookups and sizes ----------------------------------------------------------- */

const struct st_tensor *st_model_layer_tensor(const st_model *m, int64_t layer, enum st_layer_role role) {
    if (!m || layer < 0 || layer >= m->hp.n_layer || (unsigned)role >= ST_T_LAYER_ROLES || !m->layer_tensors) return NULL;
    int32_t i = m->layer_tensors[layer * ST_T_LAYER_ROLES + role];
    return i >= 0 ? &m->tensors[i] : NULL;
}

const struct st_tensor *st_model_global_tensor(const st_model *m, enum st_global_role role) {
    if (!m || (unsigned)role >= ST_T_GLOBAL_ROLES) return NULL;
    int32_t i = m->global_tensors[role];
    if (i < 0 && role == ST_T_OUTPUT && m->hp.tied_embeddings) i = m->global_tensors[ST_T_TOK_EMBD];
    return i >= 0 ? &m->tensors[i] : NULL;
}

const struct st_tensor *st_model_find_tensor(const st_model *m, const char *name) {
    if (!m || !name) return NULL;
    for (int64_t i = 0; i < m->n_tensors; i++) {
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    }
    return NULL;
}

uint64_t st_model_layer_bytes(const st_model *m, int64_t layer) {
    uint64_t b = 0;
    for (int r = 0; r < ST_T_LAYER_ROLES; r++) {
        const struct st_tensor *t = st_model_layer_tensor(m, layer, (enum st_layer_role)r);
        if (t) b += t->bytes;
    }
    return b;
}

uint64_t st_model_total_bytes(const st_model *m) {
    uint64_t b = 0;
    for (int64_t i = 0; m && i < m->n_tensors; i++) b += m->tensors[i].bytes;
    return b;
}

int64_t st_model_param_count(const st_model *m) {
    int64_t n = 0;
    for (int64_t i = 0; m && i < m->n_tensors; i++) {
        const struct st_tensor *t = &m->tensors[i];
        n += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    }
    return n;
}
