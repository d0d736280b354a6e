/* The engine: stages over the device ops table, the transformer block written
 * once, chunked prefill, decode and greedy choice on the device. */
#include "orchestrator/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOGIT_ROWS 16   /* lm_head rows per pass when every position's logits are wanted */

struct stage_layer {
    const float *attn_norm, *ffn_norm;       /* (E) */
    const float *q_norm, *k_norm;            /* (D) or NULL (Qwen3 only) */
    const float *bq, *bk, *bv, *bo;          /* (H*D), (Hkv*D), (Hkv*D), (E) or NULL */
    struct st_weight wq, wk, wv, wo;         /* (H*D, E), (Hkv*D, E), (Hkv*D, E), (E, H*D) */
    struct st_weight gate, up, down;         /* (F, E), (F, E), (E, F) */
    struct st_kv_layer kv;                   /* (n_ctx, Hkv, D) each of k and v */
};

struct imported { int64_t tensor; void *ptr; };

/* A timing mark: a backend event, or the host clock after a sync where the backend has no events. */
struct tmark { st_event *ev; double host_s; };

struct stage {
    struct st_engine_stage_desc d;
    const struct st_device_ops *ops;
    st_backend *be;
    int64_t n_layers;
    struct stage_layer *layers;              /* (n_layers) */
    struct st_weight tok_embd, output;       /* (V, E) when has_embedding / has_output */
    const float *out_norm;                   /* (E) */
    const float *rope_ff;                    /* (D/2) device or NULL */
    struct st_rope_params rope;
    struct imported *imp;                    /* tensors on this device, for reuse and release */
    int n_imp, cap_imp;
    void *kv_mem, *work_mem, *rope_mem;      /* device allocations */
    /* workspace views, T = max_batch_tokens */
    float *x;                                /* (T, E) residual stream; the link target */
    float *h;                                /* (T, E) normed input, o_proj and down outputs */
    float *q, *att;                          /* (T, H*D) */
    float *k, *v;                            /* (T, Hkv*D) */
    float *gate, *up;                        /* (T, F) */
    float *logits;                           /* (logit_rows, V) on the last stage */
    int32_t *ids, *pos, *next_id;            /* (T), (T), (1) */
    int64_t logit_rows;
    st_link *link_next;
    uint64_t weight_bytes;
    struct tmark t_start, t_end;             /* timing: the stage's work */
    struct tmark t_in_start, t_in_end;       /* timing: the link from the previous stage arriving here */
    int graph_state;                         /* decode graph: 0 none, 1 one uncaptured step run, 2 captured */
};

struct st_engine {
    const st_model *m;
    struct st_hparams hp;
    int n_stages;
    struct stage *st;                        /* (n_stages) */
    int64_t n_ctx, max_batch, n_past;
    int32_t *pos_host;                       /* (max_batch) */
    bool timing;
    double *stage_ms, *link_ms;              /* (n_stages) each: times of the last call */
    st_engine_tap_fn tap;                    /* observation hook (CPU stages), or NULL */
    void *tap_user;
    /* Greedy decode on GPUs: each stage's step is a captured graph, and the
     * sampled id goes from the last stage back to the first over tok_link, so
     * the host uploads only the position and waits only to read the id. */
    bool graphs;                             /* every stage can capture and replay */
    st_link *tok_link;                       /* last stage's next_id -> first stage's ids, or NULL */
    bool tok_on_device;                      /* first stage's ids[0] holds tok_id already */
    int32_t tok_id;
};

/* ---- weights on a stage ----------------------------------------------------------- */

static void *stage_find_import(struct stage *s, int64_t ti) {
    for (int i = 0; i < s->n_imp; i++)
        if (s->imp[i].tensor == ti) return s->imp[i].ptr;
    return NULL;
}

static st_status stage_note(struct stage *s, int64_t ti, void *ptr) {
    if (s->n_imp == s->cap_imp) {
        int cap = s->cap_imp ? 2 * s->cap_imp : 64;
        struct imported *p = realloc(s->imp, (size_t)cap * sizeof *p);
        if (!p) return st_error_set(ST_ERR_NOMEM, "engine: out of memory for the weight table");
        s->imp = p;
        s->cap_imp = cap;
    }
    s->imp[s->n_imp++] = (struct imported){ti, ptr};
    return ST_OK;
}

static st_status stage_alloc_upload(struct stage *s, const void *host, size_t bytes, void **out) {
    st_status rc = s->ops->alloc(s->be, bytes, ST_BUF_WEIGHTS, out);
    if (rc != ST_OK) return rc;
    rc = s->ops->upload(s->be, *out, host, bytes);
    if (rc != ST_OK) { s->ops->dealloc(s->be, *out); *out = NULL; }
    return rc;
}

/* A matrix in its stored dtype. */
static st_status stage_matrix(struct stage *s, const st_model *m, const struct st_tensor *t, struct st_weight *w) {
    int64_t ti = t - m->tensors;
    void *p = stage_find_import(s, ti);
    if (!p) {
        st_status rc = s->ops->import_host ? s->ops->import_host(s->be, t->data, t->bytes, ST_BUF_WEIGHTS, &p)
                                           : stage_alloc_upload(s, t->data, t->bytes, &p);
        if (rc != ST_OK) return st_error_prefix("stage on %s: weight %s", s->d.info.name, t->name);
        if ((rc = stage_note(s, ti, p)) != ST_OK) { s->ops->dealloc(s->be, p); return rc; }
        s->weight_bytes += t->bytes;
    }
    *w = (struct st_weight){.data = p, .dtype = t->dtype, .rows = t->ne[1], .cols = t->ne[0]};
    return ST_OK;
}

/* A vector as fp32 (norms and biases may be stored f16/bf16). */
static st_status stage_vector(struct stage *s, const st_model *m, const struct st_tensor *t, const float **out) {
    *out = NULL;
    if (!t) return ST_OK;
    int64_t ti = t - m->tensors;
    void *p = stage_find_import(s, ti);
    if (!p) {
        int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        st_status rc;
        if (t->dtype == ST_DTYPE_F32) {
            rc = s->ops->import_host ? s->ops->import_host(s->be, t->data, t->bytes, ST_BUF_WEIGHTS, &p)
                                     : stage_alloc_upload(s, t->data, t->bytes, &p);
        } else {
            float *tmp = st_malloc((size_t)n * sizeof(float), "weight conversion buffer");
            if (!tmp) return ST_ERR_NOMEM;
            rc = st_dtype_to_f32(t->dtype, t->data, tmp, n);
            if (rc == ST_OK) rc = stage_alloc_upload(s, tmp, (size_t)n * sizeof(float), &p);
            free(tmp);
        }
        if (rc != ST_OK) return st_error_prefix("stage on %s: weight %s", s->d.info.name, t->name);
        if ((rc = stage_note(s, ti, p)) != ST_OK) { s->ops->dealloc(s->be, p); return rc; }
        s->weight_bytes += t->bytes;
    }
    *out = p;
    return ST_OK;
}

static const struct st_tensor *layer_tensor(const st_model *m, int64_t l, enum st_layer_role r) {
    int32_t i = m->layer_tensors[l * ST_T_LAYER_ROLES + r];
    return i >= 0 ? &m->tensors[i] : NULL;
}

static const struct st_tensor *global_tensor(const st_model *m, enum st_global_role r) {
    int32_t i = m->global_tensors[r];
    if (i < 0 && r == ST_T_OUTPUT) i = m->global_tensors[ST_T_TOK_EMBD];   /* tied lm_head */
    return i >= 0 ? &m->tensors[i] : NULL;
}

/* RoPE frequency factors: rope_freqs.weight (GGUF llama3), else computed from
 * hparams as convert_hf_to_gguf.py does; NULL when the model has no scaling. */
static st_status rope_factors(const st_model *m, float **out) {
    const struct st_hparams *hp = &m->hp;
    const int64_t half = hp->head_dim / 2;
    *out = NULL;
    const struct st_tensor *t = global_tensor(m, ST_T_ROPE_FREQS);
    if (!t && hp->rope_scaling == ST_ROPE_SCALING_NONE) return ST_OK;
    float *f = st_malloc((size_t)half * sizeof(float), "rope factors");
    if (!f) return ST_ERR_NOMEM;
    if (t) {
        int64_t n = t->ne[0] * t->ne[1];
        if (n != half) {
            free(f);
            st_error_set(ST_ERR_FORMAT, "%s: tensor %s has %lld values, the model needs head_dim/2 = %lld",
                         m->path, t->name, (long long)n, (long long)half);
            return st_error_hint("the file was written for another head size; re-convert it");
        }
        st_status rc = st_dtype_to_f32(t->dtype, t->data, f, half);
        if (rc != ST_OK) { free(f); return rc; }
    } else if (hp->rope_scaling == ST_ROPE_SCALING_LINEAR) {
        for (int64_t i = 0; i < half; i++) f[i] = hp->rope_factor;
    } else {
        const double factor = hp->rope_factor, lo = hp->rope_low_freq_factor, hi = hp->rope_high_freq_factor;
        const double orig = (double)hp->rope_orig_ctx;
        const double lo_wl = orig / lo, hi_wl = orig / hi;
        for (int64_t i = 0; i < half; i++) {
            double freq = pow((double)hp->rope_theta, -2.0 * (double)i / (double)hp->head_dim);
            double wl = 2.0 * M_PI / freq;
            double r;
            if (wl < hi_wl) r = 1.0;
            else if (wl > lo_wl) r = factor;
            else {
                double smooth = (orig / wl - lo) / (hi - lo);
                r = 1.0 / ((1.0 - smooth) / factor + smooth);
            }
            f[i] = (float)r;
        }
    }
    *out = f;
    return ST_OK;
}

/* ---- stage build ------------------------------------------------------------------ */

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static st_status stage_build(st_engine *e, struct stage *s, const float *rope_ff_host) {
    const st_model *m = e->m;
    const struct st_hparams *hp = &e->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff, H = hp->n_head, Hkv = hp->n_head_kv, D = hp->head_dim;
    const int64_t V = hp->n_vocab, T = e->max_batch;
    st_status rc;

    s->ops = s->d.ops;
    s->d.cfg.max_tokens = T;
    if ((rc = s->ops->init(&s->d.info, &s->d.cfg, &s->be)) != ST_OK)
        return st_error_prefix("stage on %s", s->d.info.name);

    s->n_layers = s->d.last_layer >= s->d.first_layer ? s->d.last_layer - s->d.first_layer + 1 : 0;
    if (s->n_layers > 0) {
        s->layers = st_calloc((size_t)s->n_layers, sizeof *s->layers, "stage layers");
        if (!s->layers) return ST_ERR_NOMEM;
    }
    for (int64_t i = 0; i < s->n_layers; i++) {
        const int64_t l = s->d.first_layer + i;
        struct stage_layer *L = &s->layers[i];
        if ((rc = stage_vector(s, m, layer_tensor(m, l, ST_T_ATTN_NORM), &L->attn_norm)) ||
            (rc = stage_vector(s, m, layer_tensor(m, l, ST_T_FFN_NORM), &L->ffn_norm)) ||
            (rc = stage_vector(s, m, layer_tensor(m, l, ST_T_Q_NORM), &L->q_norm)) ||
            (rc = stage_vector(s, m, layer_tensor(m, l, ST_T_K_NORM), &L->k_norm)) ||
            (rc = stage_vector(s, m, layer_tensor(m, l, ST_T_BQ), &L->bq)) ||
            (rc = stage_vector(s, m, layer_tensor(m, l, ST_T_BK), &L->bk)) ||
            (rc = stage_vector(s, m, layer_tensor(m, l, ST_T_BV), &L->bv)) ||
            (rc = stage_vector(s, m, layer_tensor(m, l, ST_T_BO), &L->bo)))
            return rc;
        static const enum st_layer_role mats[7] = {ST_T_WQ, ST_T_WK, ST_T_WV, ST_T_WO, ST_T_W_GATE, ST_T_W_UP, ST_T_W_DOWN};
        struct st_weight *dst[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (int k = 0; k < 7; k++) {
            const struct st_tensor *t = layer_tensor(m, l, mats[k]);
            if (!t) {
                st_error_set(ST_ERR_FORMAT, "%s: layer %lld has no weight for role %d", m->path, (long long)l, (int)mats[k]);
                return st_error_hint("the model reader should have rejected this file; please report it");
            }
            if ((rc = stage_matrix(s, m, t, dst[k])) != ST_OK) return rc;
        }
        if (!L->attn_norm || !L->ffn_norm || (hp->qk_norm && (!L->q_norm || !L->k_norm))) {
            st_error_set(ST_ERR_FORMAT, "%s: layer %lld lacks a norm weight", m->path, (long long)l);
            return st_error_hint("the model reader should have rejected this file; please report it");
        }
    }
    if (s->d.has_embedding) {
        const struct st_tensor *t = global_tensor(m, ST_T_TOK_EMBD);
        if (!t) return st_error_set(ST_ERR_FORMAT, "%s: no token embedding", m->path);
        if ((rc = stage_matrix(s, m, t, &s->tok_embd)) != ST_OK) return rc;
        s->weight_bytes -= t->bytes;    /* a decode step reads one row of it */
        s->weight_bytes += st_dtype_row_bytes(t->dtype, t->ne[0]);
    }
    if (s->d.has_output) {
        const struct st_tensor *t = global_tensor(m, ST_T_OUTPUT);
        if (!t) return st_error_set(ST_ERR_FORMAT, "%s: no output (lm_head) weight", m->path);
        bool shared = stage_find_import(s, t - m->tensors) != NULL;
        if ((rc = stage_matrix(s, m, t, &s->output)) != ST_OK) return rc;
        if (shared) s->weight_bytes += t->bytes;   /* tied: the lm_head streams the whole table */
        if ((rc = stage_vector(s, m, global_tensor(m, ST_T_OUTPUT_NORM), &s->out_norm)) != ST_OK) return rc;
        if (!s->out_norm) return st_error_set(ST_ERR_FORMAT, "%s: no output norm weight", m->path);
    }

    /* RoPE parameters (factors copied to this device) */
    s->rope.theta = hp->rope_theta;
    s->rope.layout = hp->rope_layout;
    s->rope.freq_factors = NULL;
    if (rope_ff_host && s->n_layers > 0) {
        size_t bytes = (size_t)(D / 2) * sizeof(float);
        if ((rc = s->ops->alloc(s->be, bytes, ST_BUF_WEIGHTS, &s->rope_mem)) != ST_OK) return rc;
        if ((rc = s->ops->upload(s->be, s->rope_mem, rope_ff_host, bytes)) != ST_OK) return rc;
        s->rope.freq_factors = s->rope_mem;
    }

    /* KV cache: one allocation for the stage's layers */
    st_dtype kvt = s->d.cfg.kv_dtype;
    if (kvt != ST_DTYPE_F32 && kvt != ST_DTYPE_F16 && kvt != ST_DTYPE_BF16) {
        st_error_set(ST_ERR_CONFIG, "stage on %s: KV cache dtype %s is not supported", s->d.info.name, st_dtype_name(kvt));
        return st_error_hint("use f32, f16 or bf16 for the KV cache");
    }
    if (s->n_layers > 0) {
        size_t plane = align64(st_dtype_row_bytes(kvt, Hkv * D) * (size_t)e->n_ctx);
        if ((rc = s->ops->alloc(s->be, plane * 2 * (size_t)s->n_layers, ST_BUF_KV, &s->kv_mem)) != ST_OK)
            return st_error_prefix("stage on %s: KV cache for %lld tokens", s->d.info.name, (long long)e->n_ctx);
        for (int64_t i = 0; i < s->n_layers; i++) {
            uint8_t *base = (uint8_t *)s->kv_mem + (size_t)i * 2 * plane;
            s->layers[i].kv = (struct st_kv_layer){.k = base, .v = base + plane, .dtype = kvt, .n_ctx = e->n_ctx,
                                                   .n_head_kv = Hkv, .head_dim = D};
        }
    }

    /* workspace: one allocation, views carved in order */
    s->logit_rows = s->d.has_output ? ST_MIN(T, LOGIT_ROWS) : 0;
    size_t fsz = sizeof(float);
    size_t sizes[12] = {
        align64((size_t)(T * E) * fsz), align64((size_t)(T * E) * fsz),
        align64((size_t)(T * H * D) * fsz), align64((size_t)(T * H * D) * fsz),
        align64((size_t)(T * Hkv * D) * fsz), align64((size_t)(T * Hkv * D) * fsz),
        align64((size_t)(T * F) * fsz), align64((size_t)(T * F) * fsz),
        align64((size_t)(s->logit_rows * V) * fsz),
        align64((size_t)T * sizeof(int32_t)), align64((size_t)T * sizeof(int32_t)), align64(sizeof(int32_t)),
    };
    size_t total = 0;
    for (int i = 0; i < 12; i++) total += sizes[i];
    if ((rc = s->ops->alloc(s->be, total, ST_BUF_WORKSPACE, &s->work_mem)) != ST_OK)
        return st_error_prefix("stage on %s: workspace for %lld-token batches", s->d.info.name, (long long)T);
    uint8_t *p = s->work_mem;
    void **views[12] = {(void **)&s->x, (void **)&s->h, (void **)&s->q, (void **)&s->att, (void **)&s->k,
                        (void **)&s->v, (void **)&s->gate, (void **)&s->up, (void **)&s->logits,
                        (void **)&s->ids, (void **)&s->pos, (void **)&s->next_id};
    for (int i = 0; i < 12; i++) { *views[i] = p; p += sizes[i]; }
    return ST_OK;
}

static void tmark_free(struct stage *s, struct tmark *m) {
    if (m->ev) s->ops->event_free(s->be, m->ev);
    m->ev = NULL;
}

static void stage_release(struct stage *s) {
    if (s->be) {
        tmark_free(s, &s->t_start);
        tmark_free(s, &s->t_end);
        tmark_free(s, &s->t_in_start);
        tmark_free(s, &s->t_in_end);
        for (int i = 0; i < s->n_imp; i++) s->ops->dealloc(s->be, s->imp[i].ptr);
        if (s->rope_mem) s->ops->dealloc(s->be, s->rope_mem);
        if (s->kv_mem) s->ops->dealloc(s->be, s->kv_mem);
        if (s->work_mem) s->ops->dealloc(s->be, s->work_mem);
        s->ops->free(s->be);
    }
    free(s->imp);
    free(s->layers);
}

/* ---- init / free -------------------------------------------------------------- */

static st_status check_ops(const struct st_engine_stage_desc *d, int i) {
    const struct st_device_ops *o = d->ops;
    if (!o) return st_error_set(ST_ERR_CONFIG, "stage %d: no device backend given", i);
    if (!o->init || !o->free || !o->alloc || !o->dealloc || !o->upload || !o->download || !o->sync || !o->embed ||
        !o->rmsnorm || !o->matmul || !o->rope || !o->kv_store || !o->attention || !o->swiglu || !o->add || !o->argmax)
        return st_error_set(ST_ERR_INTERNAL, "stage %d: backend '%s' lacks a mandatory operation", i, o->name);
    return ST_OK;
}

static st_status check_stages(const st_model *m, const struct st_engine_stage_desc *d, int n) {
    if (n <= 0) return st_error_set(ST_ERR_CONFIG, "engine: no stages");
    int64_t next = 0;
    for (int i = 0; i < n; i++) {
        st_status rc = check_ops(&d[i], i);
        if (rc != ST_OK) return rc;
        if (d[i].has_embedding != (i == 0)) {
            st_error_set(ST_ERR_CONFIG, "stage %d: the token embedding belongs to the first stage and only there", i);
            return st_error_hint("set has_embedding on stage 0 alone");
        }
        if (d[i].has_output != (i == n - 1)) {
            st_error_set(ST_ERR_CONFIG, "stage %d: the output (final norm + lm_head) belongs to the last stage and only there", i);
            return st_error_hint("set has_output on the last stage alone");
        }
        if (d[i].last_layer < d[i].first_layer) continue;
        if (d[i].first_layer != next || d[i].last_layer >= m->hp.n_layer) {
            st_error_set(ST_ERR_CONFIG, "stage %d: layers %lld..%lld do not continue the previous stage (next layer is %lld of %lld)",
                         i, (long long)d[i].first_layer, (long long)d[i].last_layer, (long long)next,
                         (long long)m->hp.n_layer);
            return st_error_hint("stages must cover layers 0..%lld in order without gaps or overlap",
                                 (long long)m->hp.n_layer - 1);
        }
        next = d[i].last_layer + 1;
    }
    if (next != m->hp.n_layer) {
        st_error_set(ST_ERR_CONFIG, "engine: the stages cover layers 0..%lld but the model has %lld",
                     (long long)next - 1, (long long)m->hp.n_layer);
        return st_error_hint("give the last stage the remaining layers");
    }
    return ST_OK;
}

st_status st_engine_init(const st_model *m, const struct st_engine_stage_desc *stages, int n_stages,
                         const struct st_engine_params *params, st_engine **out) {
    *out = NULL;
    st_status rc;
    const struct st_hparams *hp = &m->hp;
    if (params->n_ctx <= 0 || params->max_batch_tokens <= 0) {
        st_error_set(ST_ERR_USAGE, "engine: context %lld and prefill chunk %lld must both be positive",
                     (long long)params->n_ctx, (long long)params->max_batch_tokens);
        return st_error_hint("pass --ctx N with N >= 1");
    }
    if (hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv || hp->head_dim <= 0 || hp->head_dim % 2) {
        st_error_set(ST_ERR_UNSUPPORTED, "%s: %lld heads, %lld kv heads, head_dim %lld: not a shape the engine runs",
                     m->path, (long long)hp->n_head, (long long)hp->n_head_kv, (long long)hp->head_dim);
        return st_error_hint("heads must be a multiple of kv heads and head_dim even");
    }
    if ((rc = check_stages(m, stages, n_stages)) != ST_OK) return rc;

    st_engine *e = st_calloc(1, sizeof *e, "engine");
    if (!e) return ST_ERR_NOMEM;
    e->m = m;
    e->hp = *hp;
    e->n_ctx = params->n_ctx;
    e->max_batch = ST_MIN(params->max_batch_tokens, params->n_ctx);
    e->n_stages = n_stages;
    float *ff = NULL;
    e->pos_host = st_malloc((size_t)e->max_batch * sizeof(int32_t), "positions");
    e->st = st_calloc((size_t)n_stages, sizeof *e->st, "stages");
    if (!e->pos_host || !e->st) { rc = ST_ERR_NOMEM; goto fail; }
    if ((rc = rope_factors(m, &ff)) != ST_OK) goto fail;
    for (int i = 0; i < n_stages; i++) {
        e->st[i].d = stages[i];
        if ((rc = stage_build(e, &e->st[i], ff)) != ST_OK) {
            st_error_prefix("stage %d", i);
            goto fail;
        }
    }
    for (int i = 0; i + 1 < n_stages; i++) {
        struct stage *a = &e->st[i], *b = &e->st[i + 1];
        rc = st_link_init(a->d.link_to_next, a->be, a->ops, &a->d.info, b->be, b->ops, &b->d.info,
                          (size_t)(e->max_batch * hp->n_embd) * sizeof(float), &a->link_next);
        if (rc != ST_OK) { st_error_prefix("link stage %d -> %d", i, i + 1); goto fail; }
    }
    e->graphs = true;
    for (int i = 0; i < n_stages; i++) {
        const struct st_device_ops *o = e->st[i].ops;
        e->graphs &= o->capture_begin && o->capture_end && o->replay;
    }
    if (e->graphs) {
        struct stage *a = &e->st[n_stages - 1], *b = &e->st[0];
        rc = st_link_init(ST_LINK_T_AUTO, a->be, a->ops, &a->d.info, b->be, b->ops, &b->d.info, sizeof(int32_t),
                          &e->tok_link);
        if (rc != ST_OK) { st_error_prefix("token link stage %d -> 0", n_stages - 1); goto fail; }
    }
    free(ff);
    *out = e;
    return ST_OK;

fail:
    free(ff);
    st_engine_free(e);
    return rc;
}

st_status st_engine_init_single(const st_model *m, const struct st_device_ops *ops,
                                const struct st_device_info *info, const struct st_backend_config *cfg,
                                const struct st_engine_params *params, st_engine **out) {
    struct st_engine_stage_desc d = {.ops = ops, .first_layer = 0, .last_layer = m->hp.n_layer - 1,
                                     .has_embedding = true, .has_output = true};
    if (info) d.info = *info;
    else { d.info.kind = ST_DEVICE_CPU; d.info.numa_node = -1; snprintf(d.info.name, sizeof d.info.name, "cpu"); }
    if (cfg) d.cfg = *cfg;
    return st_engine_init(m, &d, 1, params, out);
}

void st_engine_free(st_engine *e) {
    if (!e) return;
    /* links first: a link's teardown uses the backends at both of its ends */
    st_link_free(e->tok_link);
    for (int i = 0; e->st && i < e->n_stages; i++) {
        st_link_free(e->st[i].link_next);
        e->st[i].link_next = NULL;
    }
    if (e->st)
        for (int i = 0; i < e->n_stages; i++) stage_release(&e->st[i]);
    free(e->st);
    free(e->pos_host);
    free(e->stage_ms);
    free(e->link_ms);
    free(e);
}

/* ---- timing and observation ------------------------------------------------------ */

static bool has_events(const struct stage *s) {
    const struct st_device_ops *o = s->ops;
    return o->event_create && o->event_free && o->event_record && o->event_elapsed_ms;
}

static st_status tmark_record(struct stage *s, struct tmark *m) {
    if (m->ev) return s->ops->event_record(s->be, m->ev);
    st_status rc = s->ops->sync(s->be);
    m->host_s = st_time_s();
    return rc;
}

static st_status tmark_elapsed(struct stage *s, const struct tmark *a, const struct tmark *b, double *ms) {
    if (a->ev) return s->ops->event_elapsed_ms(s->be, a->ev, b->ev, ms);
    *ms = (b->host_s - a->host_s) * 1e3;
    return ST_OK;
}

st_status st_engine_set_timing(st_engine *e, bool on) {
    if (on == e->timing) return ST_OK;
    if (!on) {
        for (int i = 0; i < e->n_stages; i++) {
            struct stage *s = &e->st[i];
            tmark_free(s, &s->t_start);
            tmark_free(s, &s->t_end);
            tmark_free(s, &s->t_in_start);
            tmark_free(s, &s->t_in_end);
        }
        e->timing = false;
        return ST_OK;
    }
    if (!e->stage_ms) {
        e->stage_ms = st_calloc((size_t)e->n_stages, sizeof(double), "stage times");
        e->link_ms = st_calloc((size_t)e->n_stages, sizeof(double), "link times");
        if (!e->stage_ms || !e->link_ms) return ST_ERR_NOMEM;
    }
    for (int i = 0; i < e->n_stages; i++) {
        struct stage *s = &e->st[i];
        if (!has_events(s)) continue;
        struct tmark *marks[4] = {&s->t_start, &s->t_end, &s->t_in_start, &s->t_in_end};
        for (int k = 0; k < 4; k++) {
            st_status rc = s->ops->event_create(s->be, &marks[k]->ev);
            if (rc != ST_OK) {
                e->timing = true;            /* so that the next line frees what was made */
                st_engine_set_timing(e, false);
                return st_error_prefix("stage %d (%s): timing events", i, s->d.info.name);
            }
        }
    }
    memset(e->stage_ms, 0, (size_t)e->n_stages * sizeof(double));
    memset(e->link_ms, 0, (size_t)e->n_stages * sizeof(double));
    e->timing = true;
    return ST_OK;
}

st_status st_engine_stage_times(const st_engine *e, double *stage_ms, double *link_ms) {
    if (!e->timing) {
        st_error_set(ST_ERR_USAGE, "engine: stage times asked while timing is off");
        return st_error_hint("call st_engine_set_timing(e, true) before the prefill/decode to be timed");
    }
    memcpy(stage_ms, e->stage_ms, (size_t)e->n_stages * sizeof(double));
    if (link_ms && e->n_stages > 1) memcpy(link_ms, e->link_ms, (size_t)(e->n_stages - 1) * sizeof(double));
    return ST_OK;
}

/* Adds the chunk's stage and link times (waits for the last marks). */
static st_status timing_collect(st_engine *e) {
    for (int i = 0; i < e->n_stages; i++) {
        struct stage *s = &e->st[i];
        double ms = 0;
        st_status rc = tmark_elapsed(s, &s->t_start, &s->t_end, &ms);
        if (rc != ST_OK) return rc;
        e->stage_ms[i] += ms;
        if (i > 0) {
            if ((rc = tmark_elapsed(s, &s->t_in_start, &s->t_in_end, &ms)) != ST_OK) return rc;
            e->link_ms[i - 1] += ms;
        }
    }
    return ST_OK;
}

st_status st_engine_set_tap(st_engine *e, st_engine_tap_fn fn, void *user) {
    for (int i = 0; fn && i < e->n_stages; i++) {
        if (e->st[i].d.info.kind != ST_DEVICE_CPU || strcmp(e->st[i].ops->name, "cpu") != 0) {
            st_error_set(ST_ERR_UNSUPPORTED, "engine: stage %d runs on %s: activations can be observed only on the CPU",
                         i, e->st[i].d.info.name);
            return st_error_hint("run the calibration with --cpu (or a config whose devices are all 'cpu')");
        }
    }
    e->tap = fn;
    e->tap_user = user;
    return ST_OK;
}

/* ---- forward -------------------------------------------------------------------- */

#define TRY(expr) do { st_status _rc = (expr); if (_rc != ST_OK) return _rc; } while (0)

static st_status stage_layers(st_engine *e, struct stage *s, int64_t T) {
    const struct st_hparams *hp = &e->hp;
    const struct st_device_ops *o = s->ops;
    st_backend *be = s->be;
    const int64_t E = hp->n_embd, F = hp->n_ff, H = hp->n_head, Hkv = hp->n_head_kv, D = hp->head_dim;
    const float eps = hp->rms_eps;
    const float scale = (float)(1.0 / sqrt((double)D));
    struct st_engine_tap tp = {.n_tok = T, .pos0 = e->n_past};
/* observation points: nothing happens unless a tap is installed */
#define TAP(pt, role_, w_, x_, x2_, width_) \
    do { \
        if (e->tap) { \
            tp.point = (pt); tp.role = (role_); tp.w = (w_); tp.x = (x_); tp.x2 = (x2_); tp.width = (width_); \
            TRY(e->tap(e->tap_user, &tp)); \
        } \
    } while (0)
    for (int64_t i = 0; i < s->n_layers; i++) {
        struct stage_layer *L = &s->layers[i];
        tp.layer = s->d.first_layer + i;
        TAP(ST_TAP_LAYER_IN, ST_T_ATTN_NORM, NULL, s->x, NULL, E);
        TRY(o->rmsnorm(be, s->x, L->attn_norm, T, E, eps, s->h));
        if (T == 1 && o->matmul_multi) {   /* decode: q, k, v in one launch */
            const struct st_matmul_job qkv[3] = {{&L->wq, L->bq, s->q}, {&L->wk, L->bk, s->k}, {&L->wv, L->bv, s->v}};
            TAP(ST_TAP_MATMUL_IN, ST_T_WQ, &L->wq, s->h, NULL, E);
            TAP(ST_TAP_MATMUL_IN, ST_T_WK, &L->wk, s->h, NULL, E);
            TAP(ST_TAP_MATMUL_IN, ST_T_WV, &L->wv, s->h, NULL, E);
            TRY(o->matmul_multi(be, qkv, 3, s->h, T));
        } else {
            TAP(ST_TAP_MATMUL_IN, ST_T_WQ, &L->wq, s->h, NULL, E);
            TRY(o->matmul(be, &L->wq, L->bq, s->h, T, s->q));
            TAP(ST_TAP_MATMUL_IN, ST_T_WK, &L->wk, s->h, NULL, E);
            TRY(o->matmul(be, &L->wk, L->bk, s->h, T, s->k));
            TAP(ST_TAP_MATMUL_IN, ST_T_WV, &L->wv, s->h, NULL, E);
            TRY(o->matmul(be, &L->wv, L->bv, s->h, T, s->v));
        }
        if (L->q_norm) TRY(o->rmsnorm(be, s->q, L->q_norm, T * H, D, eps, s->q));
        if (L->k_norm) TRY(o->rmsnorm(be, s->k, L->k_norm, T * Hkv, D, eps, s->k));
        TRY(o->rope(be, s->q, T, H, D, s->pos, &s->rope));
        TRY(o->rope(be, s->k, T, Hkv, D, s->pos, &s->rope));
        TAP(ST_TAP_KV_IN, ST_T_WK, NULL, s->k, s->v, Hkv * D);
        TRY(o->kv_store(be, &L->kv, s->k, s->v, T, s->pos));
        TRY(o->attention(be, &L->kv, s->q, T, H, s->pos, scale, s->att));
        TAP(ST_TAP_MATMUL_IN, ST_T_WO, &L->wo, s->att, NULL, H * D);
        TRY(o->matmul(be, &L->wo, L->bo, s->att, T, s->h));
        TRY(o->add(be, s->x, s->h, T * E));
        TRY(o->rmsnorm(be, s->x, L->ffn_norm, T, E, eps, s->h));
        TAP(ST_TAP_MATMUL_IN, ST_T_W_GATE, &L->gate, s->h, NULL, E);
        if (T == 1 && o->matmul_swiglu) {   /* decode: gate, up and silu(gate) * up in one launch */
            TAP(ST_TAP_MATMUL_IN, ST_T_W_UP, &L->up, s->h, NULL, E);
            TRY(o->matmul_swiglu(be, &L->gate, NULL, &L->up, NULL, s->h, T, s->gate));
        } else {
            TRY(o->matmul(be, &L->gate, NULL, s->h, T, s->gate));
            TAP(ST_TAP_MATMUL_IN, ST_T_W_UP, &L->up, s->h, NULL, E);
            TRY(o->matmul(be, &L->up, NULL, s->h, T, s->up));
            TRY(o->swiglu(be, s->gate, s->up, T * F, s->gate));
        }
        TAP(ST_TAP_MATMUL_IN, ST_T_W_DOWN, &L->down, s->gate, NULL, F);
        TRY(o->matmul(be, &L->down, NULL, s->gate, T, s->h));
        TRY(o->add(be, s->x, s->h, T * E));
        TAP(ST_TAP_LAYER_OUT, ST_T_W_DOWN, NULL, s->x, NULL, E);
    }
#undef TAP
    return ST_OK;
}

enum out_mode { OUT_NONE, OUT_LAST, OUT_ALL, OUT_GREEDY };

/* The head on the last stage for the last row: final norm and lm_head into s->logits. */
static st_status stage_head_last(st_engine *e, struct stage *s, int64_t T) {
    const struct st_device_ops *o = s->ops;
    const int64_t E = e->hp.n_embd;
    TRY(o->rmsnorm(s->be, s->x + (T - 1) * E, s->out_norm, 1, E, e->hp.rms_eps, s->h));
    return o->matmul(s->be, &s->output, NULL, s->h, 1, s->logits);
}

/* The same, then the greedy id into s->next_id. */
static st_status stage_head_greedy(st_engine *e, struct stage *s, int64_t T) {
    TRY(stage_head_last(e, s, T));
    return s->ops->argmax(s->be, s->logits, e->hp.n_vocab, s->next_id);
}

/* One greedy decode step of a stage as a graph: the first step runs as usual,
 * the second is captured (the workspace sizes are known by then) and every
 * step after it replays. Positions and the token are read on the device. */
static st_status stage_graph_step(st_engine *e, struct stage *s, bool last) {
    const struct st_device_ops *o = s->ops;
    if (s->graph_state == 2) return o->replay(s->be);
    const bool capture = s->graph_state == 1;
    if (capture) TRY(o->capture_begin(s->be));
    st_status rc = ST_OK;
    if (s->d.has_embedding) rc = o->embed(s->be, &s->tok_embd, s->ids, 1, s->x);
    if (!rc) rc = stage_layers(e, s, 1);
    if (!rc && last) rc = stage_head_greedy(e, s, 1);
    if (capture && rc) {
        /* the capture must end; ending one an error invalidated fails too, and the first error is the one to report */
        char msg[4096];
        snprintf(msg, sizeof msg, "%s", st_last_error());
        (void)o->capture_end(s->be);
        st_error_set(rc, "%s", msg);
    } else if (capture) {
        rc = o->capture_end(s->be);
        if (!rc) rc = o->replay(s->be);
    }
    if (!rc) s->graph_state++;
    return rc;
}

/* One chunk of T tokens at positions n_past.. through every stage. */
static st_status forward_chunk(st_engine *e, const int32_t *ids, int64_t T, enum out_mode mode, float *logits_out,
                               int32_t *next_id) {
    const int64_t E = e->hp.n_embd, V = e->hp.n_vocab;
    for (int64_t t = 0; t < T; t++) e->pos_host[t] = (int32_t)(e->n_past + t);
    const bool timing = e->timing;
    const bool graph = e->graphs && T == 1 && mode == OUT_GREEDY && !timing && !e->tap;
    for (int i = 0; i < e->n_stages; i++) {
        struct stage *s = &e->st[i];
        const struct st_device_ops *o = s->ops;
        const bool last = i + 1 == e->n_stages;
        if (timing) TRY(tmark_record(s, &s->t_start));
        TRY(o->upload(s->be, s->pos, e->pos_host, (size_t)T * sizeof(int32_t)));
        if (s->d.has_embedding && !(graph && e->tok_on_device && e->tok_id == ids[0])) {
            TRY(o->upload(s->be, s->ids, ids, (size_t)T * sizeof(int32_t)));
            e->tok_on_device = false;
        }
        if (graph) {
            TRY(stage_graph_step(e, s, last));
        } else {
            if (s->d.has_embedding) TRY(o->embed(s->be, &s->tok_embd, s->ids, T, s->x));
            TRY(stage_layers(e, s, T));
        }
        if (!last) {
            struct stage *nx = &e->st[i + 1];
            if (timing) {
                /* the sender is done before the link's clock starts on the receiver */
                TRY(tmark_record(s, &s->t_end));
                TRY(o->sync(s->be));
                TRY(tmark_record(nx, &nx->t_in_start));
            }
            TRY(st_link_send(s->link_next, s->x, nx->x, (size_t)(T * E) * sizeof(float)));
            if (timing) TRY(tmark_record(nx, &nx->t_in_end));
            continue;
        }
        if (mode == OUT_NONE) {
            if (timing) TRY(tmark_record(s, &s->t_end));
            break;
        }
        const float eps = e->hp.rms_eps;
        if (mode == OUT_ALL) {
            TRY(o->rmsnorm(s->be, s->x, s->out_norm, T, E, eps, s->h));
            for (int64_t r0 = 0; r0 < T; r0 += s->logit_rows) {
                int64_t nr = ST_MIN(s->logit_rows, T - r0);
                TRY(o->matmul(s->be, &s->output, NULL, s->h + r0 * E, nr, s->logits));
                TRY(o->download(s->be, logits_out + r0 * V, s->logits, (size_t)(nr * V) * sizeof(float)));
            }
            if (timing) TRY(tmark_record(s, &s->t_end));
        } else if (mode == OUT_GREEDY) {
            if (!graph) TRY(stage_head_greedy(e, s, T));
            if (timing) TRY(tmark_record(s, &s->t_end));
            /* the id goes back to the first stage on the devices; the host reads it for output */
            if (e->tok_link) TRY(st_link_send(e->tok_link, s->next_id, e->st[0].ids, sizeof(int32_t)));
            TRY(o->download(s->be, next_id, s->next_id, sizeof(int32_t)));
            e->tok_on_device = e->tok_link != NULL;
            e->tok_id = *next_id;
        } else {
            TRY(stage_head_last(e, s, T));
            if (timing) TRY(tmark_record(s, &s->t_end));
            TRY(o->download(s->be, logits_out, s->logits, (size_t)V * sizeof(float)));
        }
    }
    if (timing) TRY(timing_collect(e));
    return ST_OK;
}

static st_status run_tokens(st_engine *e, const int32_t *ids, int64_t n, float *logits_out, bool all_rows,
                            int32_t *next_id) {
    if (n <= 0) {
        st_error_set(ST_ERR_USAGE, "engine: no tokens to process");
        return st_error_hint("give at least one prompt token");
    }
    if (n > e->n_ctx - e->n_past) {
        st_error_set(ST_ERR_USAGE, "engine: %lld more tokens do not fit: %lld of the %lld-token context are used",
                     (long long)n, (long long)e->n_past, (long long)e->n_ctx);
        return st_error_hint("run with a larger context (--ctx) or start a new sequence");
    }
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= e->hp.n_vocab) {
            st_error_set(ST_ERR_USAGE, "engine: token id %d (input position %lld) is outside the vocabulary [0, %lld)",
                         ids[i], (long long)i, (long long)e->hp.n_vocab);
            return st_error_hint("token ids must come from this model's tokenizer");
        }
    }
    const int64_t V = e->hp.n_vocab;
    if (e->timing) {
        memset(e->stage_ms, 0, (size_t)e->n_stages * sizeof(double));
        memset(e->link_ms, 0, (size_t)e->n_stages * sizeof(double));
    }
    for (int64_t c0 = 0; c0 < n; c0 += e->max_batch) {
        const int64_t T = ST_MIN(e->max_batch, n - c0);
        const bool last = c0 + T == n;
        enum out_mode mode = OUT_NONE;
        float *lo = NULL;
        if (all_rows && logits_out) { mode = OUT_ALL; lo = logits_out + c0 * V; }
        else if (last && next_id) mode = OUT_GREEDY;
        else if (last && logits_out) { mode = OUT_LAST; lo = logits_out; }
        TRY(forward_chunk(e, ids + c0, T, mode, lo, next_id));
        e->n_past += T;
    }
    return ST_OK;
}

st_status st_engine_prefill(st_engine *e, const int32_t *ids, int64_t n, float *logits_out, bool all_rows) {
    return run_tokens(e, ids, n, logits_out, all_rows, NULL);
}

st_status st_engine_prefill_greedy(st_engine *e, const int32_t *ids, int64_t n, int32_t *next_id) {
    return run_tokens(e, ids, n, NULL, false, next_id);
}

st_status st_engine_decode(st_engine *e, int32_t id, float *logits_out) {
    return run_tokens(e, &id, 1, logits_out, false, NULL);
}

st_status st_engine_decode_greedy(st_engine *e, int32_t id, int32_t *next_id) {
    return run_tokens(e, &id, 1, NULL, false, next_id);
}

void st_engine_reset(st_engine *e) { e->n_past = 0; }

st_status st_engine_rewind(st_engine *e, int64_t n_past) {
    if (n_past < 0 || n_past > e->n_past) {
        st_error_set(ST_ERR_USAGE, "engine: cannot rewind to %lld tokens: the sequence has %lld",
                     (long long)n_past, (long long)e->n_past);
        return st_error_hint("rewind only to a length between 0 and the current one");
    }
    e->n_past = n_past;
    return ST_OK;
}

int64_t st_engine_n_past(const st_engine *e) { return e->n_past; }
int64_t st_engine_n_ctx(const st_engine *e) { return e->n_ctx; }
int64_t st_engine_n_vocab(const st_engine *e) { return e->hp.n_vocab; }
int st_engine_n_stages(const st_engine *e) { return e->n_stages; }

st_link_type st_engine_link_type(const st_engine *e, int i) {
    return i >= 0 && i + 1 < e->n_stages && e->st[i].link_next ? st_link_get_type(e->st[i].link_next) : ST_LINK_T_AUTO;
}

uint64_t st_engine_stage_weight_bytes(const st_engine *e, int stage) {
    return stage >= 0 && stage < e->n_stages ? e->st[stage].weight_bytes : 0;
}
