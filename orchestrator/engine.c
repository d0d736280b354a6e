/* The engine: stages over the device ops table, the transformer block written
 * once, chunked prefill, decode (one sequence, or one token of many sequences
 * per step, several steps in flight) and token choice on the device. */
#include "orchestrator/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOGIT_ROWS 16   /* lm_head rows per pass when every position's logits are wanted */
#define MAX_MICRO 8     /* decode micro-batches in flight */
#define FUSED_MAX_TOK 8 /* passes this small (decode steps) use the grouped q/k/v and gate/up ops */

struct stage_layer {
    const float *attn_norm, *ffn_norm;       /* (E) */
    const float *q_norm, *k_norm;            /* (D) or NULL (Qwen3 only) */
    const float *bq, *bk, *bv, *bo;          /* (H*D), (Hkv*D), (Hkv*D), (E) or NULL */
    struct st_weight wq, wk, wv, wo;         /* (H*D, E), (Hkv*D, E), (Hkv*D, E), (E, H*D) */
    struct st_weight gate, up, down;         /* (F, E), (F, E), (E, F) */
    struct st_kv_layer kv;                   /* (n_seq, n_ctx, Hkv, D) each of k and v */
};

struct imported { int64_t tensor; void *ptr; };

/* A timing mark: a backend event, or the host clock after a sync where the backend has no events. */
struct tmark { st_event *ev; double host_s; };

/* The per-pass inputs of a stage, in one device array and a host staging copy
 * per set (micro-batches 0..n_micro-1, then the synchronous set): the host
 * writes a set only after the pass that last read it has ended. */
enum { IO_POS = 0, IO_SLOT, IO_GPOS, IO_IDS, IO_N };

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
    /* workspace views, T = the engine's largest pass */
    float *x;                                /* (T, E) residual stream; the link target */
    float *h;                                /* (T, E) normed input, o_proj and down outputs */
    float *q, *att;                          /* (T, H*D) */
    float *k, *v;                            /* (T, Hkv*D) */
    float *gate, *up;                        /* (T, F) */
    float *logits;                           /* (logit_rows, V) on the last stage */
    int32_t *io;                             /* (IO_N, T): pos, slot, gen pos (pos + 1), ids */
    int32_t *next_id;                        /* (T) picks of the last stage */
    int32_t *io_host[MAX_MICRO + 1];         /* staging (ST_BUF_STAGING) per set: (IO_N, T) */
    int64_t logit_rows;
    st_link *link_next;
    uint64_t weight_bytes;
    struct tmark t_start, t_end;             /* timing: the stage's work */
    struct tmark t_in_start, t_in_end;       /* timing: the link from the previous stage arriving here */
    st_event *busy_start[MAX_MICRO], *busy_end[MAX_MICRO];   /* device time of each micro-batch's step */
    int graph_state;                         /* decode graph: 0 none, 1 one uncaptured step run, 2 captured */
    /* loading */
    int index;                               /* stage number, for progress reports */
    const struct st_engine_params *prm;      /* the progress callback (during st_engine_init only) */
    uint64_t load_total, load_done;          /* bytes of tensors this stage imports / imported so far */
    double load_s;                           /* wall time of its build, the weights' arrival included */
};

/* What a pass leaves for the host on the last stage, per set. */
struct out_set {
    int32_t *ids;                            /* staging (rows): the picks */
    float *logits;                           /* staging (rows_max, V): LOGITS rows, packed */
    st_event *done;                          /* recorded after the downloads (NULL: none, they waited) */
    int n_rows;                              /* rows of the pass in flight (0: none) */
    struct st_engine_row *rows;              /* (rows_max) copy of the pass's rows */
    int64_t tok0;                            /* first pass row the picks belong to */
    int64_t T;                               /* tokens of the pass */
};

struct st_engine {
    const st_model *m;
    struct st_hparams hp;
    int n_stages;
    struct stage *st;                        /* (n_stages) */
    int64_t n_ctx, max_batch, n_seq, T;      /* T: largest pass (prefill chunk or a decode step) */
    int n_micro;
    int64_t step_rows;                       /* most rows of one decode step */
    int64_t *n_past;                         /* (n_seq) tokens in each sequence's KV cache */
    struct out_set out[MAX_MICRO + 1];       /* micro-batches, then the synchronous set */
    float *check_row;                        /* (max(E, V)) host row for locating non-finite values */
    bool timing;
    double *stage_ms, *link_ms;              /* (n_stages) each: times of the last call */
    st_engine_tap_fn tap;                    /* observation hook (CPU stages), or NULL */
    void *tap_user;
    /* Greedy decode of one sequence on GPUs: each stage's step is a captured
     * graph, and the sampled id goes from the last stage back to the first
     * over tok_link, so the host uploads only the position and waits only to
     * read the id. */
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

static void stage_progress(struct stage *s, uint64_t bytes) {
    s->load_done += bytes;
    if (s->prm && s->prm->progress)
        s->prm->progress(s->prm->progress_user, s->index, s->d.info.name, s->load_done, s->load_total);
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
        stage_progress(s, t->bytes);
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
        stage_progress(s, t->bytes);
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
    const int64_t V = hp->n_vocab, T = e->T;
    st_status rc;

    s->ops = s->d.ops;
    s->d.cfg.max_tokens = T;
    if ((rc = s->ops->init(&s->d.info, &s->d.cfg, &s->be)) != ST_OK)
        return st_error_prefix("stage on %s", s->d.info.name);

    s->n_layers = s->d.last_layer >= s->d.first_layer ? s->d.last_layer - s->d.first_layer + 1 : 0;
    const double t_load = st_time_s();
    for (int64_t l = s->d.first_layer; l <= s->d.last_layer; l++)
        for (int r = 0; r < ST_T_LAYER_ROLES; r++) {
            const struct st_tensor *t = layer_tensor(m, l, (enum st_layer_role)r);
            if (t) s->load_total += t->bytes;
        }
    const struct st_tensor *te = global_tensor(m, ST_T_TOK_EMBD), *to = global_tensor(m, ST_T_OUTPUT),
                           *tn = global_tensor(m, ST_T_OUTPUT_NORM);
    if (s->d.has_embedding && te) s->load_total += te->bytes;
    if (s->d.has_output && to && !(s->d.has_embedding && to == te)) s->load_total += to->bytes;
    if (s->d.has_output && tn) s->load_total += tn->bytes;
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

    /* KV cache: one allocation for the stage's layers, a plane of n_ctx rows per sequence */
    st_dtype kvt = s->d.cfg.kv_dtype;
    if (kvt != ST_DTYPE_F32 && kvt != ST_DTYPE_F16 && kvt != ST_DTYPE_BF16) {
        st_error_set(ST_ERR_CONFIG, "stage on %s: KV cache dtype %s is not supported", s->d.info.name, st_dtype_name(kvt));
        return st_error_hint("use f32, f16 or bf16 for the KV cache");
    }
    if (s->n_layers > 0) {
        size_t plane = align64(st_dtype_row_bytes(kvt, Hkv * D) * (size_t)e->n_ctx * (size_t)e->n_seq);
        if ((rc = s->ops->alloc(s->be, plane * 2 * (size_t)s->n_layers, ST_BUF_KV, &s->kv_mem)) != ST_OK)
            return st_error_prefix("stage on %s: KV cache for %lld sequence%s of %lld tokens", s->d.info.name,
                                   (long long)e->n_seq, e->n_seq == 1 ? "" : "s", (long long)e->n_ctx);
        for (int64_t i = 0; i < s->n_layers; i++) {
            uint8_t *base = (uint8_t *)s->kv_mem + (size_t)i * 2 * plane;
            s->layers[i].kv = (struct st_kv_layer){.k = base, .v = base + plane, .dtype = kvt, .n_ctx = e->n_ctx,
                                                   .n_head_kv = Hkv, .head_dim = D, .n_slots = e->n_seq};
        }
    }

    /* workspace: one allocation, views carved in order */
    s->logit_rows = s->d.has_output ? ST_MAX(ST_MIN(T, LOGIT_ROWS), e->step_rows) : 0;
    size_t fsz = sizeof(float);
    size_t sizes[11] = {
        align64((size_t)(T * E) * fsz), align64((size_t)(T * E) * fsz),
        align64((size_t)(T * H * D) * fsz), align64((size_t)(T * H * D) * fsz),
        align64((size_t)(T * Hkv * D) * fsz), align64((size_t)(T * Hkv * D) * fsz),
        align64((size_t)(T * F) * fsz), align64((size_t)(T * F) * fsz),
        align64((size_t)(s->logit_rows * V) * fsz),
        align64((size_t)(IO_N * T) * sizeof(int32_t)), align64((size_t)T * sizeof(int32_t)),
    };
    size_t total = 0;
    for (int i = 0; i < 11; i++) total += sizes[i];
    if ((rc = s->ops->alloc(s->be, total, ST_BUF_WORKSPACE, &s->work_mem)) != ST_OK)
        return st_error_prefix("stage on %s: workspace for %lld-token passes", s->d.info.name, (long long)T);
    uint8_t *p = s->work_mem;
    void **views[11] = {(void **)&s->x, (void **)&s->h, (void **)&s->q, (void **)&s->att, (void **)&s->k,
                        (void **)&s->v, (void **)&s->gate, (void **)&s->up, (void **)&s->logits,
                        (void **)&s->io, (void **)&s->next_id};
    for (int i = 0; i < 11; i++) { *views[i] = p; p += sizes[i]; }

    /* host staging of the pass inputs, one per set (pinned on GPUs: uploads stay asynchronous) */
    for (int k = 0; k <= e->n_micro; k++) {
        if ((rc = s->ops->alloc(s->be, (size_t)(IO_N * T) * sizeof(int32_t), ST_BUF_STAGING, (void **)&s->io_host[k])))
            return st_error_prefix("stage on %s: input staging", s->d.info.name);
        memset(s->io_host[k], 0, (size_t)(IO_N * T) * sizeof(int32_t));
    }
    if ((rc = s->ops->sync(s->be)) != ST_OK) return st_error_prefix("stage on %s: loading the weights", s->d.info.name);
    s->load_s = st_time_s() - t_load;
    const bool events = s->ops->event_create && s->ops->event_record && s->ops->event_elapsed_ms && s->ops->event_free;
    for (int k = 0; events && k < e->n_micro; k++) {
        if ((rc = s->ops->event_create(s->be, &s->busy_start[k])) || (rc = s->ops->event_create(s->be, &s->busy_end[k])))
            return st_error_prefix("stage on %s: step events", s->d.info.name);
    }
    return ST_OK;
}

/* The last stage's per-set results on the host. */
static st_status out_sets_build(st_engine *e) {
    struct stage *s = &e->st[e->n_stages - 1];
    const int64_t V = e->hp.n_vocab;
    for (int k = 0; k <= e->n_micro; k++) {
        struct out_set *o = &e->out[k];
        const int64_t rows = k < e->n_micro ? e->step_rows : 1;
        st_status rc;
        if ((rc = s->ops->alloc(s->be, (size_t)e->T * sizeof(int32_t), ST_BUF_STAGING, (void **)&o->ids)) ||
            (rc = s->ops->alloc(s->be, (size_t)(rows * V) * sizeof(float), ST_BUF_STAGING, (void **)&o->logits)))
            return st_error_prefix("stage on %s: output staging", s->d.info.name);
        o->rows = st_calloc((size_t)e->T, sizeof *o->rows, "step rows");
        if (!o->rows) return ST_ERR_NOMEM;
        if (s->ops->event_create && s->ops->event_sync && s->ops->download_async &&
            (rc = s->ops->event_create(s->be, &o->done)))
            return st_error_prefix("stage on %s: step events", s->d.info.name);
    }
    e->check_row = st_malloc((size_t)ST_MAX(e->hp.n_embd, V) * sizeof(float), "check row");
    return e->check_row ? ST_OK : ST_ERR_NOMEM;
}

static void tmark_free(struct stage *s, struct tmark *m) {
    if (m->ev) s->ops->event_free(s->be, m->ev);
    m->ev = NULL;
}

static void stage_release(st_engine *e, struct stage *s, bool last) {
    if (s->be) {
        tmark_free(s, &s->t_start);
        tmark_free(s, &s->t_end);
        tmark_free(s, &s->t_in_start);
        tmark_free(s, &s->t_in_end);
        for (int k = 0; k < MAX_MICRO; k++) {
            if (s->busy_start[k]) s->ops->event_free(s->be, s->busy_start[k]);
            if (s->busy_end[k]) s->ops->event_free(s->be, s->busy_end[k]);
        }
        if (last) {
            for (int k = 0; k <= MAX_MICRO; k++) {
                struct out_set *o = &e->out[k];
                if (o->done) s->ops->event_free(s->be, o->done);
                if (o->ids) s->ops->dealloc(s->be, o->ids);
                if (o->logits) s->ops->dealloc(s->be, o->logits);
            }
        }
        for (int k = 0; k <= MAX_MICRO; k++)
            if (s->io_host[k]) s->ops->dealloc(s->be, s->io_host[k]);
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
    const int64_t n_seq = params->n_seq > 0 ? params->n_seq : 1;
    const int n_micro = params->n_micro > 0 ? params->n_micro : 1;
    if (params->n_ctx <= 0 || params->max_batch_tokens <= 0) {
        st_error_set(ST_ERR_USAGE, "engine: context %lld and prefill chunk %lld must both be positive",
                     (long long)params->n_ctx, (long long)params->max_batch_tokens);
        return st_error_hint("pass --ctx N with N >= 1");
    }
    if (n_seq > INT32_MAX || n_micro > MAX_MICRO || n_micro > n_seq) {
        st_error_set(ST_ERR_USAGE, "engine: %lld sequences in %d micro-batches (at most %d micro-batches, each with "
                     "at least one sequence)", (long long)n_seq, n_micro, MAX_MICRO);
        return st_error_hint("lower the number of micro-batches, or raise the batch");
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
    e->n_seq = n_seq;
    e->n_micro = n_micro;
    e->step_rows = (n_seq + n_micro - 1) / n_micro;
    e->T = ST_MAX(e->max_batch, e->step_rows);
    e->n_stages = n_stages;
    float *ff = NULL;
    e->n_past = st_calloc((size_t)n_seq, sizeof *e->n_past, "sequence lengths");
    e->st = st_calloc((size_t)n_stages, sizeof *e->st, "stages");
    if (!e->n_past || !e->st) { rc = ST_ERR_NOMEM; goto fail; }
    if ((rc = rope_factors(m, &ff)) != ST_OK) goto fail;
    for (int i = 0; i < n_stages; i++) {
        e->st[i].d = stages[i];
        e->st[i].index = i;
        e->st[i].prm = params;
        rc = stage_build(e, &e->st[i], ff);
        e->st[i].prm = NULL;
        if (rc != ST_OK) {
            st_error_prefix("stage %d", i);
            goto fail;
        }
    }
    if ((rc = out_sets_build(e)) != ST_OK) goto fail;
    for (int i = 0; i + 1 < n_stages; i++) {
        struct stage *a = &e->st[i], *b = &e->st[i + 1];
        rc = st_link_init(a->d.link_to_next, a->be, a->ops, &a->d.info, b->be, b->ops, &b->d.info,
                          (size_t)(e->T * hp->n_embd) * sizeof(float), &a->link_next);
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
        for (int i = 0; i < e->n_stages; i++) stage_release(e, &e->st[i], i + 1 == e->n_stages);
    for (int k = 0; k <= MAX_MICRO; k++) free(e->out[k].rows);
    free(e->st);
    free(e->n_past);
    free(e->check_row);
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

enum out_mode { OUT_NONE, OUT_LAST, OUT_ALL, OUT_PICK };

/* One pass of T tokens through every stage. The inputs (positions, slots,
 * ids) are in e's host staging of set `set` on every stage. */
struct pass {
    int set;                 /* staging and output set: a micro-batch, or e->n_micro (synchronous calls) */
    int64_t T;               /* tokens */
    int64_t n_seq;           /* 1: one sequence (a prefill chunk, one decode token); T: a decode step of T sequences */
    enum out_mode mode;
    float *logits_out;       /* OUT_ALL (T rows), OUT_LAST (1 row): host */
    const struct st_engine_row *rows;   /* OUT_PICK: how to choose the tokens after the last n_rows rows */
    int n_rows;
    bool graph;              /* one greedy token through each stage's captured graph */
    bool check;              /* locate non-finite values: inspect every layer's output (slow; after a failure) */
};

/* Scans n floats of device memory at x on stage s (row by row through e->check_row). */
static st_status check_rows(st_engine *e, struct stage *s, const float *x, int64_t rows, int64_t width,
                            const char *what, int64_t layer) {
    for (int64_t r = 0; r < rows; r++) {
        TRY(s->ops->download(s->be, e->check_row, x + r * width, (size_t)width * sizeof(float)));
        for (int64_t c = 0; c < width; c++) {
            if (isfinite(e->check_row[c])) continue;
            const int si = (int)(s - e->st);
            char where[64];
            if (layer >= 0) snprintf(where, sizeof where, "layer %lld", (long long)layer);
            else snprintf(where, sizeof where, "%s", what);
            st_error_set(ST_ERR_NUMERIC, "stage %d (%s): the output of %s holds %s (token row %lld of the pass, "
                         "element %lld): the logits are not finite", si, s->d.info.name, where,
                         isnan(e->check_row[c]) ? "NaN" : "an infinity", (long long)r, (long long)c);
            return st_error_hint("the model file holds weights or hyper-parameters that fp32 cannot carry, or this "
                                 "stage's precision overflows: try 'precision: f32' for the stage, or re-convert the model");
        }
    }
    return ST_OK;
}

static st_status stage_layers(st_engine *e, struct stage *s, const struct pass *f) {
    const struct st_hparams *hp = &e->hp;
    const struct st_device_ops *o = s->ops;
    st_backend *be = s->be;
    const int64_t T = f->T;
    const int64_t E = hp->n_embd, F = hp->n_ff, H = hp->n_head, Hkv = hp->n_head_kv, D = hp->head_dim;
    const float eps = hp->rms_eps;
    const float scale = (float)(1.0 / sqrt((double)D));
    const int32_t *pos = s->io + IO_POS * e->T, *slot = s->io + IO_SLOT * e->T;
    struct st_engine_tap tp = {.n_tok = T, .pos0 = s->io_host[f->set][IO_POS * e->T]};
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
        if (T <= FUSED_MAX_TOK && o->matmul_multi) {   /* decode: q, k, v in one launch */
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
        TRY(o->rope(be, s->q, T, H, D, pos, &s->rope));
        TRY(o->rope(be, s->k, T, Hkv, D, pos, &s->rope));
        TAP(ST_TAP_KV_IN, ST_T_WK, NULL, s->k, s->v, Hkv * D);
        TRY(o->kv_store(be, &L->kv, s->k, s->v, T, pos, slot));
        TRY(o->attention(be, &L->kv, s->q, T, H, pos, slot, f->n_seq, scale, s->att));
        TAP(ST_TAP_MATMUL_IN, ST_T_WO, &L->wo, s->att, NULL, H * D);
        TRY(o->matmul(be, &L->wo, L->bo, s->att, T, s->h));
        TRY(o->add(be, s->x, s->h, T * E));
        TRY(o->rmsnorm(be, s->x, L->ffn_norm, T, E, eps, s->h));
        TAP(ST_TAP_MATMUL_IN, ST_T_W_GATE, &L->gate, s->h, NULL, E);
        if (T <= FUSED_MAX_TOK && o->matmul_swiglu) {   /* decode: gate, up and silu(gate) * up in one launch */
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
        if (f->check) TRY(check_rows(e, s, s->x, T, E, NULL, s->d.first_layer + i));
    }
#undef TAP
    return ST_OK;
}

/* The head on the last stage for the last n rows of the pass: final norm and lm_head into s->logits. */
static st_status stage_head_rows(st_engine *e, struct stage *s, int64_t T, int64_t n) {
    const struct st_device_ops *o = s->ops;
    const int64_t E = e->hp.n_embd;
    TRY(o->rmsnorm(s->be, s->x + (T - n) * E, s->out_norm, n, E, e->hp.rms_eps, s->h));
    return o->matmul(s->be, &s->output, NULL, s->h, n, s->logits);
}

/* One greedy token: the head, then the id into s->next_id. */
static st_status stage_head_greedy(st_engine *e, struct stage *s, int64_t T) {
    TRY(stage_head_rows(e, s, T, 1));
    return s->ops->argmax(s->be, s->logits, e->hp.n_vocab, s->next_id);
}

/* One greedy decode step of a stage as a graph: the first step runs as usual,
 * the second is captured (the workspace sizes are known by then) and every
 * step after it replays. Positions and the token are read on the device. */
static st_status stage_graph_step(st_engine *e, struct stage *s, const struct pass *f, bool last) {
    const struct st_device_ops *o = s->ops;
    if (s->graph_state == 2) return o->replay(s->be);
    const bool capture = s->graph_state == 1;
    if (capture) TRY(o->capture_begin(s->be));
    st_status rc = ST_OK;
    if (s->d.has_embedding) rc = o->embed(s->be, &s->tok_embd, s->io + IO_IDS * e->T, 1, s->x);
    if (!rc) rc = stage_layers(e, s, f);
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

/* The picks on the last stage: one id per row (argmax or a draw) or the row's
 * logits, then the copies to the host and the set's done event. */
static st_status stage_picks(st_engine *e, struct stage *s, const struct pass *f) {
    const struct st_device_ops *o = s->ops;
    const int64_t V = e->hp.n_vocab, n = f->n_rows, r0 = f->T - n;
    struct out_set *out = &e->out[f->set];
    const bool async = out->done != NULL;
    if (!f->graph) TRY(stage_head_rows(e, s, f->T, n));
    if (f->check) TRY(check_rows(e, s, s->logits, n, V, "the output head (final norm and lm_head)", -1));
    int64_t k = 0;
    for (int64_t j = 0; j < n && !f->graph; j++) {
        const struct st_engine_row *r = &f->rows[j];
        const float *lg = s->logits + j * V;
        if (r->pick == ST_PICK_LOGITS) {
            float *dst = out->logits + (k++) * V;
            TRY(async ? o->download_async(s->be, dst, lg, (size_t)V * sizeof(float))
                      : o->download(s->be, dst, lg, (size_t)V * sizeof(float)));
        } else if (r->pick == ST_PICK_SAMPLE && r->sp.temperature > 0.0f) {
            if (!o->sample) {
                st_error_set(ST_ERR_INTERNAL, "stage %d (%s): a row asks for sampling on a device without it",
                             e->n_stages - 1, s->d.info.name);
                return st_error_hint("check st_engine_can_sample before asking; please report it");
            }
            TRY(o->sample(s->be, lg, V, &r->sp, s->io + IO_GPOS * e->T + r0 + j, s->next_id + j));
        } else {
            TRY(o->argmax(s->be, lg, V, s->next_id + j));
        }
    }
    if (async) {
        TRY(o->download_async(s->be, out->ids, s->next_id, (size_t)n * sizeof(int32_t)));
        return o->event_record(s->be, out->done);
    }
    return o->download(s->be, out->ids, s->next_id, (size_t)n * sizeof(int32_t));
}

/* A synchronous single greedy token goes back to the first stage over the token link. */
static bool token_back(const st_engine *e, const struct pass *f) {
    return e->tok_link && f->set == e->n_micro && f->mode == OUT_PICK && f->T == 1 && f->rows[0].pick == ST_PICK_GREEDY;
}

static st_status forward_pass(st_engine *e, const struct pass *f) {
    const int64_t E = e->hp.n_embd, V = e->hp.n_vocab, T = f->T;
    const bool timing = e->timing && f->set == e->n_micro;
    const int mb = f->set < e->n_micro ? f->set : -1;
    /* the first stage's ids: skip the upload when the token link already put it there */
    const bool ids_ready = f->graph && e->tok_on_device && e->tok_id == e->st[0].io_host[f->set][IO_IDS * e->T];
    for (int i = 0; i < e->n_stages; i++) {
        struct stage *s = &e->st[i];
        const struct st_device_ops *o = s->ops;
        const bool last = i + 1 == e->n_stages;
        if (timing) TRY(tmark_record(s, &s->t_start));
        else if (mb >= 0 && s->busy_start[mb]) TRY(o->event_record(s->be, s->busy_start[mb]));
        const int io_rows = s->d.has_embedding && !ids_ready ? IO_N : IO_IDS;
        TRY(o->upload(s->be, s->io, s->io_host[f->set], (size_t)(io_rows * e->T) * sizeof(int32_t)));
        if (s->d.has_embedding && !ids_ready) e->tok_on_device = false;
        if (f->graph) {
            TRY(stage_graph_step(e, s, f, last));
        } else {
            if (s->d.has_embedding) {
                TRY(o->embed(s->be, &s->tok_embd, s->io + IO_IDS * e->T, T, s->x));
                if (f->check) TRY(check_rows(e, s, s->x, T, E, "the token embedding", -1));
            }
            TRY(stage_layers(e, s, f));
        }
        if (!last) {
            struct stage *nx = &e->st[i + 1];
            if (timing) {
                /* the sender is done before the link's clock starts on the receiver */
                TRY(tmark_record(s, &s->t_end));
                TRY(o->sync(s->be));
                TRY(tmark_record(nx, &nx->t_in_start));
            } else if (mb >= 0 && s->busy_end[mb]) {
                TRY(o->event_record(s->be, s->busy_end[mb]));
            }
            TRY(st_link_send(s->link_next, s->x, nx->x, (size_t)(T * E) * sizeof(float)));
            if (timing) TRY(tmark_record(nx, &nx->t_in_end));
            continue;
        }
        if (f->mode == OUT_ALL) {
            const float eps = e->hp.rms_eps;
            TRY(o->rmsnorm(s->be, s->x, s->out_norm, T, E, eps, s->h));
            for (int64_t r0 = 0; r0 < T; r0 += s->logit_rows) {
                int64_t nr = ST_MIN(s->logit_rows, T - r0);
                TRY(o->matmul(s->be, &s->output, NULL, s->h + r0 * E, nr, s->logits));
                TRY(o->download(s->be, f->logits_out + r0 * V, s->logits, (size_t)(nr * V) * sizeof(float)));
            }
        } else if (f->mode == OUT_LAST) {
            TRY(stage_head_rows(e, s, T, 1));
            TRY(o->download(s->be, f->logits_out, s->logits, (size_t)V * sizeof(float)));
        } else if (f->mode == OUT_PICK) {
            TRY(stage_picks(e, s, f));
            /* one sequence's greedy id goes back to the first stage on the devices */
            if (token_back(e, f)) TRY(st_link_send(e->tok_link, s->next_id, e->st[0].io + IO_IDS * e->T, sizeof(int32_t)));
        }
        if (timing) TRY(tmark_record(s, &s->t_end));
        else if (mb >= 0 && s->busy_end[mb]) TRY(o->event_record(s->be, s->busy_end[mb]));
    }
    if (timing) TRY(timing_collect(e));
    return ST_OK;
}

/* Writes a pass's inputs into set `set` of every stage's staging: token r
 * goes at position pos0[r] of sequence slot[r] (or slot0 and pos0 + r). */
static void fill_inputs(st_engine *e, int set, int64_t T, const int32_t *ids, const int32_t *slots, int32_t slot0,
                        int64_t pos0) {
    int32_t *in = e->st[0].io_host[set];
    for (int64_t r = 0; r < T; r++) {
        const int32_t sl = slots ? slots[r] : slot0;
        const int64_t p = slots ? e->n_past[sl] : pos0 + r;
        in[IO_POS * e->T + r] = (int32_t)p;
        in[IO_SLOT * e->T + r] = sl;
        in[IO_GPOS * e->T + r] = (int32_t)(p + 1);
        in[IO_IDS * e->T + r] = ids[r];
    }
    for (int i = 1; i < e->n_stages; i++) memcpy(e->st[i].io_host[set], in, (size_t)(IO_N * e->T) * sizeof(int32_t));
}

/* Waits for a set's picks; a pick of -1 (or a LOGITS row that is not finite)
 * means non-finite logits: the pass runs again inspecting every layer to say
 * where they first appear (the same inputs rewrite the same KV rows). */
static st_status pass_wait(st_engine *e, const struct pass *f) {
    struct stage *s = &e->st[e->n_stages - 1];
    struct out_set *out = &e->out[f->set];
    const int64_t V = e->hp.n_vocab;
    if (out->done) TRY(s->ops->event_sync(s->be, out->done));
    bool bad = false;
    int64_t k = 0;
    for (int j = 0; j < f->n_rows && !bad; j++) {
        if (f->rows[j].pick != ST_PICK_LOGITS) { bad = out->ids[j] < 0 || out->ids[j] >= V; continue; }
        const float *lg = out->logits + (k++) * V;
        for (int64_t c = 0; c < V && !bad; c++) bad = !isfinite(lg[c]);
    }
    if (!bad) return ST_OK;
    struct pass chk = *f;
    chk.graph = false;
    chk.check = true;
    st_status rc = forward_pass(e, &chk);
    if (rc == ST_OK) {
        st_error_set(ST_ERR_NUMERIC, "stage %d (%s): the token choice saw non-finite logits, but a second pass "
                     "found every layer finite", e->n_stages - 1, s->d.info.name);
        rc = st_error_hint("the device gives different results for the same input: suspect the device or a "
                           "kernel bug, and please report it");
    }
    return rc;
}

static st_status check_tokens(st_engine *e, const int32_t *ids, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= e->hp.n_vocab) {
            st_error_set(ST_ERR_USAGE, "engine: token id %d (input position %lld) is outside the vocabulary [0, %lld)",
                         ids[i], (long long)i, (long long)e->hp.n_vocab);
            return st_error_hint("token ids must come from this model's tokenizer");
        }
    }
    return ST_OK;
}

static st_status check_slot(const st_engine *e, int slot) {
    if (slot >= 0 && slot < e->n_seq) return ST_OK;
    st_error_set(ST_ERR_USAGE, "engine: sequence %d is outside the %lld the engine holds", slot, (long long)e->n_seq);
    return st_error_hint("the deployment's batch sets how many sequences run at once");
}

/* n tokens of sequence `slot` in chunks; the last chunk ends as `mode` says. */
static st_status run_tokens(st_engine *e, int slot, const int32_t *ids, int64_t n, enum out_mode mode,
                            float *logits_out, const struct st_engine_row *pick, int32_t *next_id) {
    TRY(check_slot(e, slot));
    if (n <= 0) {
        st_error_set(ST_ERR_USAGE, "engine: no tokens to process");
        return st_error_hint("give at least one prompt token");
    }
    if (n > e->n_ctx - e->n_past[slot]) {
        st_error_set(ST_ERR_USAGE, "engine: %lld more tokens do not fit: %lld of the %lld-token context are used",
                     (long long)n, (long long)e->n_past[slot], (long long)e->n_ctx);
        return st_error_hint("run with a larger context (--ctx) or start a new sequence");
    }
    TRY(check_tokens(e, ids, n));
    const int64_t V = e->hp.n_vocab;
    if (e->timing) {
        memset(e->stage_ms, 0, (size_t)e->n_stages * sizeof(double));
        memset(e->link_ms, 0, (size_t)e->n_stages * sizeof(double));
    }
    const int set = e->n_micro;
    for (int64_t c0 = 0; c0 < n; c0 += e->max_batch) {
        const int64_t T = ST_MIN(e->max_batch, n - c0);
        const bool last = c0 + T == n;
        struct pass f = {.set = set, .T = T, .n_seq = 1, .mode = OUT_NONE};
        if (mode == OUT_ALL) { f.mode = OUT_ALL; f.logits_out = logits_out + c0 * V; }
        else if (last) { f.mode = mode; f.logits_out = logits_out; }
        if (f.mode == OUT_PICK) {
            f.rows = pick;
            f.n_rows = 1;
            f.graph = e->graphs && T == 1 && pick->pick == ST_PICK_GREEDY && !e->timing && !e->tap;
        }
        fill_inputs(e, set, T, ids + c0, NULL, slot, e->n_past[slot]);
        TRY(forward_pass(e, &f));
        if (f.mode == OUT_PICK) {
            TRY(pass_wait(e, &f));
            if (pick->pick == ST_PICK_LOGITS) memcpy(logits_out, e->out[set].logits, (size_t)V * sizeof(float));
            else *next_id = e->out[set].ids[0];
            if (token_back(e, &f)) {
                e->tok_on_device = true;
                e->tok_id = *next_id;
            }
        }
        e->n_past[slot] += T;
    }
    return ST_OK;
}

static const struct st_engine_row greedy_row = {.pick = ST_PICK_GREEDY};

st_status st_engine_prefill(st_engine *e, const int32_t *ids, int64_t n, float *logits_out, bool all_rows) {
    return run_tokens(e, 0, ids, n, all_rows && logits_out ? OUT_ALL : logits_out ? OUT_LAST : OUT_NONE, logits_out,
                      NULL, NULL);
}

st_status st_engine_prefill_greedy(st_engine *e, const int32_t *ids, int64_t n, int32_t *next_id) {
    return run_tokens(e, 0, ids, n, OUT_PICK, NULL, &greedy_row, next_id);
}

st_status st_engine_decode(st_engine *e, int32_t id, float *logits_out) {
    return run_tokens(e, 0, &id, 1, logits_out ? OUT_LAST : OUT_NONE, logits_out, NULL, NULL);
}

st_status st_engine_decode_greedy(st_engine *e, int32_t id, int32_t *next_id) {
    return run_tokens(e, 0, &id, 1, OUT_PICK, NULL, &greedy_row, next_id);
}

st_status st_engine_seq_prefill(st_engine *e, int slot, const int32_t *ids, int64_t n,
                                const struct st_engine_row *pick, int32_t *next_id, float *logits_out) {
    if (!pick) return run_tokens(e, slot, ids, n, OUT_NONE, NULL, NULL, NULL);
    if (pick->pick == ST_PICK_LOGITS && !logits_out)
        return st_error_set(ST_ERR_INTERNAL, "engine: a LOGITS pick without a logits buffer");
    if (pick->pick == ST_PICK_SAMPLE && pick->sp.temperature > 0.0f && !st_engine_can_sample(e, &pick->sp))
        return st_error_set(ST_ERR_INTERNAL, "engine: a device draw the last stage cannot make");
    return run_tokens(e, slot, ids, n, OUT_PICK, logits_out, pick, next_id);
}

/* ---- batched decode steps ------------------------------------------------------- */

st_status st_engine_step_begin(st_engine *e, int mb, const struct st_engine_row *rows, int n) {
    if (mb < 0 || mb >= e->n_micro) {
        st_error_set(ST_ERR_USAGE, "engine: micro-batch %d (the engine has %d)", mb, e->n_micro);
        return st_error_hint("micro-batches are numbered 0 .. n_micro - 1");
    }
    struct out_set *out = &e->out[mb];
    if (out->n_rows) {
        st_error_set(ST_ERR_USAGE, "engine: micro-batch %d begins again before it ended", mb);
        return st_error_hint("call st_engine_step_end for it first");
    }
    if (n < 1 || n > e->step_rows) {
        st_error_set(ST_ERR_USAGE, "engine: a step of %d sequences (1 to %lld per micro-batch)", n, (long long)e->step_rows);
        return st_error_hint("split the batch over the micro-batches");
    }
    for (int i = 0; i < n; i++) {
        TRY(check_slot(e, rows[i].slot));
        for (int j = 0; j < i; j++) {
            if (rows[j].slot == rows[i].slot) {
                st_error_set(ST_ERR_USAGE, "engine: sequence %d appears twice in one step", rows[i].slot);
                return st_error_hint("a step takes one token per sequence");
            }
        }
        if (e->n_past[rows[i].slot] >= e->n_ctx) {
            st_error_set(ST_ERR_USAGE, "engine: sequence %d has filled its %lld-token context", rows[i].slot,
                         (long long)e->n_ctx);
            return st_error_hint("end the sequence or make room (st_engine_seq_rewind)");
        }
        TRY(check_tokens(e, &rows[i].id, 1));
        if (rows[i].pick == ST_PICK_SAMPLE && rows[i].sp.temperature > 0.0f && !st_engine_can_sample(e, &rows[i].sp))
            return st_error_set(ST_ERR_INTERNAL, "engine: a device draw the last stage cannot make");
    }
    int32_t *in = e->st[0].io_host[mb];
    for (int i = 0; i < n; i++) {
        const int32_t sl = rows[i].slot;
        const int64_t p = e->n_past[sl];
        in[IO_POS * e->T + i] = (int32_t)p;
        in[IO_SLOT * e->T + i] = sl;
        in[IO_GPOS * e->T + i] = (int32_t)(p + 1);
        in[IO_IDS * e->T + i] = rows[i].id;
    }
    for (int i = 1; i < e->n_stages; i++) memcpy(e->st[i].io_host[mb], in, (size_t)(IO_N * e->T) * sizeof(int32_t));
    memcpy(out->rows, rows, (size_t)n * sizeof *rows);
    struct pass f = {.set = mb, .T = n, .n_seq = n, .mode = OUT_PICK, .rows = out->rows, .n_rows = n};
    /* one sequence's greedy step replays the captured graphs, as a single-sequence decode does */
    f.graph = e->graphs && n == 1 && rows[0].pick == ST_PICK_GREEDY && !e->timing && !e->tap;
    TRY(forward_pass(e, &f));
    for (int i = 0; i < n; i++) e->n_past[rows[i].slot]++;
    out->n_rows = n;
    return ST_OK;
}

st_status st_engine_step_end(st_engine *e, int mb, int32_t *next_ids, const float **logits, double *busy_ms) {
    if (mb < 0 || mb >= e->n_micro || !e->out[mb].n_rows) {
        st_error_set(ST_ERR_USAGE, "engine: micro-batch %d has no step in flight", mb);
        return st_error_hint("call st_engine_step_begin first");
    }
    struct out_set *out = &e->out[mb];
    const int n = out->n_rows;
    const int64_t V = e->hp.n_vocab;
    out->n_rows = 0;
    struct pass f = {.set = mb, .T = n, .n_seq = n, .mode = OUT_PICK, .rows = out->rows, .n_rows = n};
    st_status rc = pass_wait(e, &f);
    if (rc != ST_OK) {
        for (int i = 0; i < n; i++) e->n_past[out->rows[i].slot]--;   /* the step did not happen */
        return rc;
    }
    int64_t k = 0;
    for (int i = 0; i < n; i++) {
        const bool lg = out->rows[i].pick == ST_PICK_LOGITS;
        next_ids[i] = lg ? -1 : out->ids[i];
        if (logits) logits[i] = lg ? out->logits + (k++) * V : NULL;
    }
    for (int i = 0; busy_ms && i < e->n_stages; i++) {
        struct stage *s = &e->st[i];
        busy_ms[i] = 0;
        if (s->busy_start[mb]) TRY(s->ops->event_elapsed_ms(s->be, s->busy_start[mb], s->busy_end[mb], &busy_ms[i]));
    }
    return ST_OK;
}

/* ---- sequences -------------------------------------------------------------------- */

void st_engine_reset(st_engine *e) { e->n_past[0] = 0; }

st_status st_engine_rewind(st_engine *e, int64_t n_past) { return st_engine_seq_rewind(e, 0, n_past); }

st_status st_engine_seq_rewind(st_engine *e, int slot, int64_t n) {
    TRY(check_slot(e, slot));
    if (n < 0 || n > e->n_past[slot]) {
        st_error_set(ST_ERR_USAGE, "engine: cannot rewind to %lld tokens: the sequence has %lld",
                     (long long)n, (long long)e->n_past[slot]);
        return st_error_hint("rewind only to a length between 0 and the current one");
    }
    e->n_past[slot] = n;
    return ST_OK;
}

int64_t st_engine_seq_len(const st_engine *e, int slot) {
    return slot >= 0 && slot < e->n_seq ? e->n_past[slot] : 0;
}

bool st_engine_can_sample(const st_engine *e, const struct st_sample_params *sp) {
    if (!e->st[e->n_stages - 1].ops->sample) return false;
    if (!sp || sp->top_p >= 1.0f) return true;
    return sp->top_k >= 1 && sp->top_k <= ST_SAMPLE_TOPK_MAX;   /* the device keeps at most that many candidates */
}

int64_t st_engine_n_seq(const st_engine *e) { return e->n_seq; }
int st_engine_n_micro(const st_engine *e) { return e->n_micro; }
int64_t st_engine_n_past(const st_engine *e) { return e->n_past[0]; }
int64_t st_engine_n_ctx(const st_engine *e) { return e->n_ctx; }
int64_t st_engine_n_vocab(const st_engine *e) { return e->hp.n_vocab; }
int st_engine_n_stages(const st_engine *e) { return e->n_stages; }

st_link_type st_engine_link_type(const st_engine *e, int i) {
    return i >= 0 && i + 1 < e->n_stages && e->st[i].link_next ? st_link_get_type(e->st[i].link_next) : ST_LINK_T_AUTO;
}

st_status st_engine_load_stats(const st_engine *e, int stage, uint64_t *bytes, double *seconds) {
    if (stage < 0 || stage >= e->n_stages) return st_error_set(ST_ERR_USAGE, "engine: no stage %d", stage);
    *bytes = e->st[stage].load_done;
    *seconds = e->st[stage].load_s;
    return ST_OK;
}

uint64_t st_engine_stage_weight_bytes(const st_engine *e, int stage) {
    return stage >= 0 && stage < e->n_stages ? e->st[stage].weight_bytes : 0;
}
