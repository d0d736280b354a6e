/* The engine: stages over the device ops table, the transformer block written
 * once, chunked prefill, decode (one sequence, or one token of many sequences
 * per step, several steps in flight) and token choice on the device. */
#include "orchestrator/engine.h"
#include "orchestrator/mpi.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOGIT_ROWS 16   /* lm_head rows per pass when every position's logits are wanted */
#define MAX_MICRO 8     /* decode micro-batches in flight */
#define FUSED_MAX_TOK 8 /* passes this small (decode steps) use the grouped q/k/v and gate/up ops, larger ones
                          * too where the backend says they pay (grouped_any_tokens) */

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
    bool local;                              /* runs in this process (else: no backend, nothing below) */
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
    st_link *link_next;                      /* to the next stage: a local link or a send endpoint */
    st_link *link_in;                        /* from the previous stage on another rank: a receive endpoint */
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
    int32_t *in[MAX_MICRO + 1];              /* (IO_N, T) host: each set's pass inputs, copied to the local stages */
    /* several processes (st_engine_connect, st_engine_follow) */
    int rank;                                /* this process */
    bool multi;                              /* some stage runs in another process */
    int *part;                               /* (n_part) ranks other than 0 that run stages (rank 0) */
    int n_part;
    void *hdr;                               /* a pass header with its inputs and rows (hdr_bytes) */
    size_t hdr_bytes;
    void *stat;                              /* ((n_micro + 1) x n_part) statuses of stat_bytes (rank 0); one (others) */
    size_t stat_bytes;
    st_mpi_req *stat_req;                    /* ((n_micro + 1) x n_part) */
    st_mpi_req ids_req[MAX_MICRO + 1], lg_req[MAX_MICRO + 1];   /* a remote last stage's picks */
    double *remote_busy;                     /* ((n_micro + 1) x n_stages) busy ms of other ranks' stages */
    float *fwd_logits;                       /* (logit_rows, V) a follower's last stage: rows on their way to rank 0 */
    int64_t fwd_rows_sent;                   /* rows of the pass sent so far (a failed pass still sends them all) */
};

#define TRY(expr) do { st_status _rc = (expr); if (_rc != ST_OK) return _rc; } while (0)

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

/* Rows of the lm_head per pass on the last stage (the same on every rank). */
static int64_t stage_logit_rows(const st_engine *e, const struct stage *s) {
    return s->d.has_output ? ST_MAX(ST_MIN(e->T, LOGIT_ROWS), e->step_rows) : 0;
}

/* Another rank's stage: what a decode step reads there, counted as stage_build would, nothing loaded. */
static void stage_describe_remote(st_engine *e, struct stage *s) {
    const st_model *m = e->m;
    s->ops = s->d.ops;
    s->n_layers = s->d.last_layer >= s->d.first_layer ? s->d.last_layer - s->d.first_layer + 1 : 0;
    s->logit_rows = stage_logit_rows(e, s);
    for (int64_t l = s->d.first_layer; l < s->d.first_layer + s->n_layers; l++)
        for (int r = 0; r < ST_T_LAYER_ROLES; r++) {
            const struct st_tensor *t = layer_tensor(m, l, (enum st_layer_role)r);
            if (t) s->weight_bytes += t->bytes;
        }
    const struct st_tensor *emb = global_tensor(m, ST_T_TOK_EMBD), *out = global_tensor(m, ST_T_OUTPUT);
    const struct st_tensor *norm = global_tensor(m, ST_T_OUTPUT_NORM);
    if (s->d.has_embedding && emb) s->weight_bytes += st_dtype_row_bytes(emb->dtype, emb->ne[0]);
    if (s->d.has_output && out) s->weight_bytes += out->bytes;
    if (s->d.has_output && norm) s->weight_bytes += norm->bytes;
}

static st_status stage_build(st_engine *e, struct stage *s, const float *rope_ff_host) {
    const st_model *m = e->m;
    const struct st_hparams *hp = &e->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff, H = hp->n_head, Hkv = hp->n_head_kv, D = hp->head_dim;
    const int64_t V = hp->n_vocab, T = e->T;
    st_status rc;

    s->ops = s->d.ops;
    s->d.cfg.max_tokens = T;
    s->n_layers = s->d.last_layer >= s->d.first_layer ? s->d.last_layer - s->d.first_layer + 1 : 0;
    /* one walk over the stage's layer tensors: the bytes to load, and the largest quantized matrix
     * (a GPU's prefill dequantizes one whole; the plan's workspace counts it: pl_workspace) */
    s->d.cfg.widen_elems = s->d.cfg.widen_cols = 0;
    for (int64_t l = s->d.first_layer; l <= s->d.last_layer; l++)
        for (int r = 0; r < ST_T_LAYER_ROLES; r++) {
            const struct st_tensor *t = layer_tensor(m, l, (enum st_layer_role)r);
            if (!t) continue;
            s->load_total += t->bytes;
            if (st_dtype_block_elems(t->dtype) == 1 || t->ne[1] < 2) continue;
            s->d.cfg.widen_elems = ST_MAX(s->d.cfg.widen_elems, t->ne[0] * t->ne[1]);
            s->d.cfg.widen_cols = ST_MAX(s->d.cfg.widen_cols, t->ne[0]);
        }
    if ((rc = s->ops->init(&s->d.info, &s->d.cfg, &s->be)) != ST_OK)
        return st_error_prefix("stage on %s", s->d.info.name);

    const double t_load = st_time_s();
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
    if (kvt != ST_DTYPE_F32 && kvt != ST_DTYPE_F16 && kvt != ST_DTYPE_BF16 && kvt != ST_DTYPE_Q8_0) {
        st_error_set(ST_ERR_CONFIG, "stage on %s: KV cache dtype %s is not supported", s->d.info.name, st_dtype_name(kvt));
        return st_error_hint("use f32, f16, bf16 or q8_0 for the KV cache");
    }
    if (kvt == ST_DTYPE_Q8_0 && (Hkv * D) % 32) {
        st_error_set(ST_ERR_CONFIG, "stage on %s: a q8_0 KV cache needs rows of a multiple of 32 values (the model "
                     "has %lld kv heads x head_dim %lld)", s->d.info.name, (long long)Hkv, (long long)D);
        return st_error_hint("use f16 or bf16 for the KV cache of this model ('kv_dtype: f16')");
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
    s->logit_rows = stage_logit_rows(e, s);
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

/* The last stage's per-set results on the host: its backend's staging when
 * it runs here, plain memory on rank 0 when the picks come from another rank. */
static st_status out_sets_build(st_engine *e) {
    struct stage *s = &e->st[e->n_stages - 1];
    const int64_t V = e->hp.n_vocab;
    for (int k = 0; k <= e->n_micro; k++) {
        struct out_set *o = &e->out[k];
        const int64_t rows = k < e->n_micro ? e->step_rows : 1;
        st_status rc;
        o->rows = st_calloc((size_t)e->T, sizeof *o->rows, "step rows");
        e->in[k] = st_calloc((size_t)(IO_N * e->T), sizeof(int32_t), "pass inputs");
        if (!o->rows || !e->in[k]) return ST_ERR_NOMEM;
        if (!s->local) {
            if (e->rank != 0) continue;
            o->ids = st_malloc((size_t)e->T * sizeof(int32_t), "picks from another rank");
            o->logits = st_malloc((size_t)(rows * V) * sizeof(float), "logits from another rank");
            if (!o->ids || !o->logits) return ST_ERR_NOMEM;
            continue;
        }
        if ((rc = s->ops->alloc(s->be, (size_t)e->T * sizeof(int32_t), ST_BUF_STAGING, (void **)&o->ids)) ||
            (rc = s->ops->alloc(s->be, (size_t)(rows * V) * sizeof(float), ST_BUF_STAGING, (void **)&o->logits)))
            return st_error_prefix("stage on %s: output staging", s->d.info.name);
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
    if (!s->local && last) {
        for (int k = 0; k <= MAX_MICRO; k++) {
            free(e->out[k].ids);
            free(e->out[k].logits);
        }
    }
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

static st_status multi_build(st_engine *e);
static void multi_quit(st_engine *e);

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
    e->rank = params->rank;
    e->multi = params->rank != 0;   /* another rank follows rank 0, even holding every stage */
    for (int i = 0; i < n_stages; i++) e->multi |= stages[i].rank != params->rank;
    float *ff = NULL;
    e->n_past = st_calloc((size_t)n_seq, sizeof *e->n_past, "sequence lengths");
    e->st = st_calloc((size_t)n_stages, sizeof *e->st, "stages");
    if (!e->n_past || !e->st) { rc = ST_ERR_NOMEM; goto fail; }
    if ((rc = rope_factors(m, &ff)) != ST_OK) goto fail;
    for (int i = 0; i < n_stages; i++) {
        e->st[i].d = stages[i];
        e->st[i].index = i;
        e->st[i].local = stages[i].rank == params->rank;
        if (!e->st[i].local) {
            stage_describe_remote(e, &e->st[i]);
            continue;
        }
        e->st[i].prm = params;
        rc = stage_build(e, &e->st[i], ff);
        e->st[i].prm = NULL;
        if (rc != ST_OK) {
            st_error_prefix("stage %d", i);
            goto fail;
        }
    }
    if ((rc = out_sets_build(e)) != ST_OK) goto fail;
    if (e->multi && (rc = multi_build(e)) != ST_OK) goto fail;
    for (int i = 0; i + 1 < n_stages; i++) {
        struct stage *a = &e->st[i], *b = &e->st[i + 1];
        if (!a->local || !b->local) continue;   /* an endpoint: st_engine_connect */
        rc = st_link_init(a->d.link_to_next, a->be, a->ops, &a->d.info, b->be, b->ops, &b->d.info,
                          (size_t)(e->T * hp->n_embd) * sizeof(float), &a->link_next);
        if (rc != ST_OK) { st_error_prefix("link stage %d -> %d", i, i + 1); goto fail; }
    }
    e->graphs = !e->multi;   /* across ranks the token goes back through rank 0 */
    for (int i = 0; e->graphs && i < n_stages; i++) {
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
    const struct st_backend_reg *b = st_backend_reg_by_name(ops->name);
    if (info) d.info = *info;
    else {   /* the ops' own backend, its first device */
        d.info.kind = b ? b->kind : ST_DEVICE_CPU;
        d.info.numa_node = -1;
        snprintf(d.info.name, sizeof d.info.name, "%s", ops->name);
    }
    if (cfg) d.cfg = *cfg;
    return st_engine_init(m, &d, 1, params, out);
}

void st_engine_free(st_engine *e) {
    if (!e) return;
    if (e->multi && e->rank == 0) multi_quit(e);
    /* links first: a link's teardown uses the backends at both of its ends */
    st_link_free(e->tok_link);
    for (int i = 0; e->st && i < e->n_stages; i++) {
        st_link_free(e->st[i].link_next);
        st_link_free(e->st[i].link_in);
        e->st[i].link_next = NULL;
        e->st[i].link_in = NULL;
    }
    if (e->st)
        for (int i = 0; i < e->n_stages; i++) stage_release(e, &e->st[i], i + 1 == e->n_stages);
    for (int k = 0; k <= MAX_MICRO; k++) {
        free(e->out[k].rows);
        free(e->in[k]);
    }
    free(e->part);
    free(e->hdr);
    free(e->stat);
    free(e->stat_req);
    free(e->remote_busy);
    free(e->fwd_logits);
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
            if (!s->local) continue;
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
        if (!s->local || !has_events(s)) continue;
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
        if (!s->local) continue;   /* its rank sends its times (multi_collect) */
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
        if (!e->st[i].local) {
            st_error_set(ST_ERR_UNSUPPORTED, "engine: stage %d runs on %s: activations can be observed only in "
                         "this process", i, st_mpi_where(e->st[i].d.rank));
            return st_error_hint("calibrate in one process (without mpirun)");
        }
        const struct st_backend_reg *b = st_backend_reg_by_name(e->st[i].ops->name);
        if (!st_device_host_memory(&e->st[i].d.info) || !b || !b->host_memory) {
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
    bool timing;             /* measure stage and link times (synchronous passes with timing on) */
};

/* several processes (the end of this file) */
static st_status multi_begin(st_engine *e, const struct pass *f);
static st_status multi_collect(st_engine *e, const struct pass *f, st_status local);
static st_status follower_send_rows(st_engine *e, const struct pass *f, int64_t rows);

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
    /* one token: the residual adds happen in the output projections' epilogues */
    const bool in_place = T == 1 && o->matmul_adds_in_place;
    /* one token: k lives right after q in q's buffer (room for e->T >= 2 tokens), so that q's and
     * k's heads are one (H + Hkv, D) tensor for the rope */
    const bool qk_joint = T == 1 && e->T >= 2;
    const bool grouped = T <= FUSED_MAX_TOK || o->grouped_any_tokens;
    float *const kb = qk_joint ? s->q + H * D : s->k;
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
        if (grouped && o->matmul_multi) {   /* q, k, v in one launch (one x preparation) */
            const struct st_matmul_job qkv[3] = {{&L->wq, L->bq, s->q}, {&L->wk, L->bk, kb}, {&L->wv, L->bv, s->v}};
            TAP(ST_TAP_MATMUL_IN, ST_T_WQ, &L->wq, s->h, NULL, E);
            TAP(ST_TAP_MATMUL_IN, ST_T_WK, &L->wk, s->h, NULL, E);
            TAP(ST_TAP_MATMUL_IN, ST_T_WV, &L->wv, s->h, NULL, E);
            TRY(o->matmul_multi(be, qkv, 3, s->h, T));
        } else {
            TAP(ST_TAP_MATMUL_IN, ST_T_WQ, &L->wq, s->h, NULL, E);
            TRY(o->matmul(be, &L->wq, L->bq, s->h, T, s->q));
            TAP(ST_TAP_MATMUL_IN, ST_T_WK, &L->wk, s->h, NULL, E);
            TRY(o->matmul(be, &L->wk, L->bk, s->h, T, kb));
            TAP(ST_TAP_MATMUL_IN, ST_T_WV, &L->wv, s->h, NULL, E);
            TRY(o->matmul(be, &L->wv, L->bv, s->h, T, s->v));
        }
        if (L->q_norm) TRY(o->rmsnorm(be, s->q, L->q_norm, T * H, D, eps, s->q));
        if (L->k_norm) TRY(o->rmsnorm(be, kb, L->k_norm, T * Hkv, D, eps, kb));
        if (o->rope_kv_store && !e->tap) {   /* rope of q and k and the cache append in one launch */
            TRY(o->rope_kv_store(be, &L->kv, s->q, kb, s->v, T, H, pos, slot, &s->rope));
        } else {
            if (qk_joint) {
                TRY(o->rope(be, s->q, 1, H + Hkv, D, pos, &s->rope));
            } else {
                TRY(o->rope(be, s->q, T, H, D, pos, &s->rope));
                TRY(o->rope(be, kb, T, Hkv, D, pos, &s->rope));
            }
            TAP(ST_TAP_KV_IN, ST_T_WK, NULL, kb, s->v, Hkv * D);
            TRY(o->kv_store(be, &L->kv, kb, s->v, T, pos, slot));
        }
        TRY(o->attention(be, &L->kv, s->q, T, H, pos, slot, f->n_seq, scale, s->att));
        TAP(ST_TAP_MATMUL_IN, ST_T_WO, &L->wo, s->att, NULL, H * D);
        if (in_place && !L->bo) {   /* x += Wo att in the GEMV's epilogue */
            TRY(o->matmul(be, &L->wo, s->x, s->att, T, s->x));
        } else if (o->matmul_add) {   /* x += Wo att (+ bo) in one op */
            TRY(o->matmul_add(be, &L->wo, L->bo, s->att, T, s->x));
        } else {
            TRY(o->matmul(be, &L->wo, L->bo, s->att, T, s->h));
            TRY(o->add(be, s->x, s->h, T * E));
        }
        TRY(o->rmsnorm(be, s->x, L->ffn_norm, T, E, eps, s->h));
        TAP(ST_TAP_MATMUL_IN, ST_T_W_GATE, &L->gate, s->h, NULL, E);
        if (grouped && o->matmul_swiglu) {   /* gate, up and silu(gate) * up in one launch */
            TAP(ST_TAP_MATMUL_IN, ST_T_W_UP, &L->up, s->h, NULL, E);
            TRY(o->matmul_swiglu(be, &L->gate, NULL, &L->up, NULL, s->h, T, s->gate));
        } else {
            TRY(o->matmul(be, &L->gate, NULL, s->h, T, s->gate));
            TAP(ST_TAP_MATMUL_IN, ST_T_W_UP, &L->up, s->h, NULL, E);
            TRY(o->matmul(be, &L->up, NULL, s->h, T, s->up));
            TRY(o->swiglu(be, s->gate, s->up, T * F, s->gate));
        }
        TAP(ST_TAP_MATMUL_IN, ST_T_W_DOWN, &L->down, s->gate, NULL, F);
        if (in_place) {
            TRY(o->matmul(be, &L->down, s->x, s->gate, T, s->x));
        } else if (o->matmul_add) {
            TRY(o->matmul_add(be, &L->down, NULL, s->gate, T, s->x));
        } else {
            TRY(o->matmul(be, &L->down, NULL, s->gate, T, s->h));
            TRY(o->add(be, s->x, s->h, T * E));
        }
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

static bool row_greedy(const struct st_engine_row *r) {
    return r->pick == ST_PICK_GREEDY || (r->pick == ST_PICK_SAMPLE && !(r->sp.temperature > 0.0f));
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
        int64_t run = 0;   /* greedy rows from j on: one launch for all of them where the backend can */
        while (o->argmax_rows && j + run < n && row_greedy(&f->rows[j + run])) run++;
        if (run > 1) {
            TRY(o->argmax_rows(s->be, lg, run, V, s->next_id + j));
            j += run - 1;
            continue;
        }
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

/* One stage's part of a pass: its inputs, the embedding on the first stage,
 * its layers; on the last stage the head and what the pass's mode wants. */
static st_status stage_pass(st_engine *e, struct stage *s, const struct pass *f, bool ids_ready, bool timing, int mb) {
    const int64_t E = e->hp.n_embd, V = e->hp.n_vocab, T = f->T;
    const struct st_device_ops *o = s->ops;
    const bool last = s == &e->st[e->n_stages - 1];
    const bool remote_out = last && e->rank != 0;   /* a follower's last stage: rows go to rank 0 */
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
    if (!last) return ST_OK;
    if (f->mode == OUT_ALL) {
        const float eps = e->hp.rms_eps;
        TRY(o->rmsnorm(s->be, s->x, s->out_norm, T, E, eps, s->h));
        for (int64_t r0 = 0; r0 < T; r0 += s->logit_rows) {
            int64_t nr = ST_MIN(s->logit_rows, T - r0);
            TRY(o->matmul(s->be, &s->output, NULL, s->h + r0 * E, nr, s->logits));
            float *dst = remote_out ? e->fwd_logits : f->logits_out + r0 * V;
            TRY(o->download(s->be, dst, s->logits, (size_t)(nr * V) * sizeof(float)));
            if (remote_out) TRY(follower_send_rows(e, f, nr));
        }
    } else if (f->mode == OUT_LAST) {
        TRY(stage_head_rows(e, s, T, 1));
        TRY(o->download(s->be, remote_out ? e->fwd_logits : f->logits_out, s->logits, (size_t)V * sizeof(float)));
        if (remote_out) TRY(follower_send_rows(e, f, 1));
    } else if (f->mode == OUT_PICK) {
        TRY(stage_picks(e, s, f));
        /* one sequence's greedy id goes back to the first stage on the devices */
        if (token_back(e, f)) TRY(st_link_send(e->tok_link, s->next_id, e->st[0].io + IO_IDS * e->T, sizeof(int32_t)));
    }
    if (timing) TRY(tmark_record(s, &s->t_end));
    else if (mb >= 0 && s->busy_end[mb]) TRY(o->event_record(s->be, s->busy_end[mb]));
    return ST_OK;
}

/* A link's failure across ranks cannot be carried by the pass (the other
 * side waits for bytes that will not come): it ends every rank. */
static st_status link_failed(st_engine *e, st_status rc, int i) {
    if (!e->multi) return rc;
    st_error_prefix("link stage %d -> %d", i, i + 1);
    st_mpi_abort(rc);
    return rc;
}

/* This process's part of a pass: its stages in order, with the links between
 * them and the endpoints to and from other ranks. In one process the first
 * failure returns at once. Across ranks a stage that fails skips its work
 * but the pass's transfers still happen (the others wait for them), so every
 * rank ends the pass and the failure travels to rank 0 in this rank's status. */
static st_status forward_local(st_engine *e, const struct pass *f) {
    const int64_t E = e->hp.n_embd, T = f->T;
    const bool timing = f->timing;
    const int mb = f->set < e->n_micro ? f->set : -1;
    const size_t bytes = (size_t)(T * E) * sizeof(float);
    /* the first stage's ids: skip the upload when the token link already put it there */
    const bool ids_ready = f->graph && e->tok_on_device && e->tok_id == e->in[f->set][IO_IDS * e->T];
    st_status first = ST_OK;
    for (int i = 0; i < e->n_stages; i++) {
        struct stage *s = &e->st[i];
        if (!s->local) continue;
        const struct st_device_ops *o = s->ops;
        const bool last = i + 1 == e->n_stages;
        if (s->link_in) {   /* the previous stage is another rank's */
            st_status rc = ST_OK;
            if (timing) {   /* the clock starts when the sender says it is done */
                int32_t ready = 0;
                rc = st_mpi_recv(e->st[i - 1].d.rank, ST_MPI_TAG_READY + i - 1, &ready, sizeof ready, NULL);
                if (!rc) rc = tmark_record(s, &s->t_in_start);
            }
            if (!rc) rc = st_link_send(s->link_in, NULL, s->x, bytes);
            if (!rc && timing) rc = tmark_record(s, &s->t_in_end);
            if (rc) return link_failed(e, rc, i - 1);
        }
        if (!first) {
            first = stage_pass(e, s, f, ids_ready, timing, mb);
            if (first && !e->multi) return first;
        }
        if (last) continue;
        struct stage *nx = &e->st[i + 1];
        st_status rc = ST_OK;
        if (timing) {
            /* the sender is done before the link's clock starts on the receiver */
            if (!first) rc = tmark_record(s, &s->t_end);
            if (!rc && !first) rc = o->sync(s->be);
            if (rc && !e->multi) return rc;
            if (rc && !first) first = rc;
        } else if (mb >= 0 && s->busy_end[mb] && !first) {
            first = o->event_record(s->be, s->busy_end[mb]);
            if (first && !e->multi) return first;
        }
        if (nx->local) {
            if (timing && (rc = tmark_record(nx, &nx->t_in_start))) return link_failed(e, rc, i);
            if ((rc = st_link_send(s->link_next, s->x, nx->x, bytes))) return link_failed(e, rc, i);
            if (timing && (rc = tmark_record(nx, &nx->t_in_end))) return link_failed(e, rc, i);
        } else {
            if (timing) {
                int32_t ready = 1;
                if ((rc = st_mpi_send(nx->d.rank, ST_MPI_TAG_READY + i, &ready, sizeof ready))) return link_failed(e, rc, i);
            }
            if ((rc = st_link_send(s->link_next, s->x, NULL, bytes))) return link_failed(e, rc, i);
        }
    }
    if (timing && !first) first = timing_collect(e);
    return first;
}

/* A pass through every stage. Across ranks, rank 0 first tells the others
 * (header, posted receives), runs its own stages, and for a synchronous pass
 * collects the results at once; a micro-batch's are collected by step_end. */
static st_status forward_pass(st_engine *e, const struct pass *f) {
    if (!e->multi) return forward_local(e, f);
    TRY(multi_begin(e, f));
    st_status rc = forward_local(e, f);
    if (f->set == e->n_micro) rc = multi_collect(e, f, rc);
    return rc;
}

/* The set's inputs into every local stage's staging. */
static void inputs_to_stages(st_engine *e, int set) {
    for (int i = 0; i < e->n_stages; i++)
        if (e->st[i].local) memcpy(e->st[i].io_host[set], e->in[set], (size_t)(IO_N * e->T) * sizeof(int32_t));
}

/* Writes a pass's inputs into set `set` of every stage's staging: token r
 * goes at position pos0[r] of sequence slot[r] (or slot0 and pos0 + r). */
static void fill_inputs(st_engine *e, int set, int64_t T, const int32_t *ids, const int32_t *slots, int32_t slot0,
                        int64_t pos0) {
    int32_t *in = e->in[set];
    for (int64_t r = 0; r < T; r++) {
        const int32_t sl = slots ? slots[r] : slot0;
        const int64_t p = slots ? e->n_past[sl] : pos0 + r;
        in[IO_POS * e->T + r] = (int32_t)p;
        in[IO_SLOT * e->T + r] = sl;
        in[IO_GPOS * e->T + r] = (int32_t)(p + 1);
        in[IO_IDS * e->T + r] = ids[r];
    }
    inputs_to_stages(e, set);
}

/* Waits for a set's picks; a pick of -1 (or a LOGITS row that is not finite)
 * means non-finite logits: the pass runs again inspecting every layer to say
 * where they first appear (the same inputs rewrite the same KV rows). */
static st_status pass_wait(st_engine *e, const struct pass *f) {
    struct stage *s = &e->st[e->n_stages - 1];
    struct out_set *out = &e->out[f->set];
    const int64_t V = e->hp.n_vocab;
    if (e->multi && f->set < e->n_micro) TRY(multi_collect(e, f, ST_OK));   /* a synchronous pass collected already */
    if (out->done && s->local) TRY(s->ops->event_sync(s->be, out->done));
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
    chk.timing = false;
    st_status rc = forward_pass(e, &chk);
    if (e->multi && chk.set < e->n_micro) rc = multi_collect(e, &chk, rc);
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
        struct pass f = {.set = set, .T = T, .n_seq = 1, .mode = OUT_NONE, .timing = e->timing};
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
    int32_t *in = e->in[mb];
    for (int i = 0; i < n; i++) {
        const int32_t sl = rows[i].slot;
        const int64_t p = e->n_past[sl];
        in[IO_POS * e->T + i] = (int32_t)p;
        in[IO_SLOT * e->T + i] = sl;
        in[IO_GPOS * e->T + i] = (int32_t)(p + 1);
        in[IO_IDS * e->T + i] = rows[i].id;
    }
    inputs_to_stages(e, mb);
    memcpy(out->rows, rows, (size_t)n * sizeof *rows);
    struct pass f = {.set = mb, .T = n, .n_seq = n, .mode = OUT_PICK, .rows = out->rows, .n_rows = n};
    /* one sequence's greedy step replays the captured graphs, as a single-sequence decode does */
    f.graph = e->graphs && n == 1 && rows[0].pick == ST_PICK_GREEDY && !e->timing && !e->tap;
    st_status rc = forward_pass(e, &f);
    if (rc && e->multi) rc = multi_collect(e, &f, rc);   /* the other ranks' answers to a step that ends here */
    if (rc) return rc;
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
        if (!s->local) busy_ms[i] = e->remote_busy ? e->remote_busy[mb * e->n_stages + i] : 0;
        else if (s->busy_start[mb]) TRY(s->ops->event_elapsed_ms(s->be, s->busy_start[mb], s->busy_end[mb], &busy_ms[i]));
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
    if (i < 0 || i + 1 >= e->n_stages) return ST_LINK_T_AUTO;
    if (e->st[i].link_next) return st_link_get_type(e->st[i].link_next);
    if (e->st[i + 1].link_in) return st_link_get_type(e->st[i + 1].link_in);
    const struct st_engine_stage_desc *a = &e->st[i].d, *b = &e->st[i + 1].d;
    if (a->rank != b->rank) {   /* between two other ranks: what their endpoints pick */
        /* two devices of a backend that links its devices with NCCL (link_mpi.c picks the same) */
        const struct st_backend_reg *r = st_backend_reg_find(a->info.kind);
        const bool nccl = a->info.kind == b->info.kind && r && !r->host_memory &&
                          (r->link_types & (1u << ST_LINK_T_NCCL));
        if (nccl && (a->link_to_next == ST_LINK_T_AUTO || a->link_to_next == ST_LINK_T_NCCL)) return ST_LINK_T_NCCL;
        return ST_LINK_T_MPI;
    }
    if (a->link_to_next != ST_LINK_T_AUTO) return a->link_to_next;
    return st_device_host_memory(&a->info) && st_device_host_memory(&b->info) ? ST_LINK_T_LOCAL : ST_LINK_T_HOST;
}

st_status st_engine_load_stats(const st_engine *e, int stage, uint64_t *bytes, double *seconds) {
    if (stage < 0 || stage >= e->n_stages) return st_error_set(ST_ERR_USAGE, "engine: no stage %d", stage);
    *bytes = e->st[stage].load_done;
    *seconds = e->st[stage].load_s;
    return ST_OK;
}

bool st_engine_stage_local(const st_engine *e, int i) { return i >= 0 && i < e->n_stages && e->st[i].local; }
int st_engine_stage_rank(const st_engine *e, int i) { return i >= 0 && i < e->n_stages ? e->st[i].d.rank : -1; }

uint64_t st_engine_stage_weight_bytes(const st_engine *e, int stage) {
    return stage >= 0 && stage < e->n_stages ? e->st[stage].weight_bytes : 0;
}

/* ---- several processes ------------------------------------------------------------
 * Rank 0 drives. Before a pass it sends each rank that runs stages ("part")
 * a header with the pass's inputs and rows; every such rank answers each
 * pass with a status (its stages' error, times and busy time); the rank of
 * the last stage also sends the picks and logits rows. Messages of one kind
 * and set arrive in the order sent, so a micro-batch's answers are its own. */

struct pass_hdr {
    int32_t kind;                /* ST_MPI_MSG_PASS or ST_MPI_MSG_QUIT */
    int32_t set;
    int64_t T, n_seq;
    int32_t mode, n_rows;
    int32_t check, timing;
};   /* then int32 inputs (IO_N, T), then n_rows struct st_engine_row */

struct stat_hdr {
    int32_t status;              /* st_status of the rank's stages in the pass */
    int32_t n_stages;
};   /* then double stage_ms, link_ms (into the stage), busy_ms: n_stages each; then the message */

#define STAT_MSG 1024

static double *stat_times(void *stat) { return (double *)((char *)stat + sizeof(struct stat_hdr)); }
static char *stat_msg(const st_engine *e, void *stat) {
    return (char *)stat + sizeof(struct stat_hdr) + 3 * (size_t)e->n_stages * sizeof(double);
}
static void *stat_slot(st_engine *e, int set, int p) { return (char *)e->stat + (size_t)(set * e->n_part + p) * e->stat_bytes; }

/* Rows of a pass whose logits come back (LOGITS picks). */
static int64_t logits_rows(const struct pass *f) {
    int64_t k = 0;
    for (int j = 0; j < f->n_rows; j++) k += f->rows[j].pick == ST_PICK_LOGITS;
    return k;
}

static st_status multi_build(st_engine *e) {
    const int S = e->n_stages, sets = e->n_micro + 1;
    e->hdr_bytes = sizeof(struct pass_hdr) + (size_t)(IO_N * e->T) * sizeof(int32_t) +
                   (size_t)e->T * sizeof(struct st_engine_row);
    e->stat_bytes = sizeof(struct stat_hdr) + 3 * (size_t)S * sizeof(double) + STAT_MSG;
    e->hdr = st_calloc(1, e->hdr_bytes, "pass header");
    if (!e->hdr) return ST_ERR_NOMEM;
    if (e->rank == 0) {
        e->part = st_calloc((size_t)S, sizeof *e->part, "ranks of the stages");
        if (!e->part) return ST_ERR_NOMEM;
        for (int i = 0; i < S; i++) {
            const int r = e->st[i].d.rank;
            bool seen = r == 0;
            for (int p = 0; p < e->n_part && !seen; p++) seen = e->part[p] == r;
            if (!seen) e->part[e->n_part++] = r;
        }
        e->stat = st_calloc((size_t)(sets * ST_MAX(e->n_part, 1)), e->stat_bytes, "rank statuses");
        e->stat_req = st_calloc((size_t)(sets * ST_MAX(e->n_part, 1)), sizeof *e->stat_req, "rank status requests");
        e->remote_busy = st_calloc((size_t)(sets * S), sizeof(double), "busy times of other ranks");
        if (!e->stat || !e->stat_req || !e->remote_busy) return ST_ERR_NOMEM;
    } else {
        e->stat = st_calloc(1, e->stat_bytes, "rank status");
        if (!e->stat) return ST_ERR_NOMEM;
        const struct stage *last = &e->st[S - 1];
        if (last->local) {
            e->fwd_logits = st_malloc((size_t)(last->logit_rows * e->hp.n_vocab) * sizeof(float), "logits for rank 0");
            if (!e->fwd_logits) return ST_ERR_NOMEM;
        }
    }
    if (!e->stage_ms) {   /* other ranks' times arrive with every timed pass */
        e->stage_ms = st_calloc((size_t)S, sizeof(double), "stage times");
        e->link_ms = st_calloc((size_t)S, sizeof(double), "link times");
        if (!e->stage_ms || !e->link_ms) return ST_ERR_NOMEM;
    }
    return ST_OK;
}

st_status st_engine_connect(st_engine *e) {
    if (!e->multi) return ST_OK;
    const size_t bytes = (size_t)(e->T * e->hp.n_embd) * sizeof(float);
    for (int i = 0; i + 1 < e->n_stages; i++) {
        struct stage *a = &e->st[i], *b = &e->st[i + 1];
        if (a->local == b->local) continue;   /* a local link (made by init), or two other ranks' */
        const struct stage *other = a->local ? b : a;
        struct st_link_peer peer = {.rank = other->d.rank, .tag = ST_MPI_TAG_LINK + i, .setup_tag = ST_MPI_TAG_NCCL_ID + i,
                                    .kind = other->d.info.kind, .n_bufs = e->n_micro + 1,
                                    .timeout_s = st_mpi_timeout_s(), .where = st_mpi_where(other->d.rank)};
        st_status rc = a->local
            ? st_link_init_send(a->d.link_to_next, a->be, a->ops, &a->d.info, &peer, bytes, &a->link_next)
            : st_link_init_recv(a->d.link_to_next, b->be, b->ops, &b->d.info, &peer, bytes, &b->link_in);
        if (rc) return st_error_prefix("link stage %d (%s) -> %d (%s)", i, st_mpi_where(a->d.rank), i + 1,
                                       st_mpi_where(b->d.rank));
    }
    return ST_OK;
}

/* Rank 0, before its own part: the other ranks' answers are posted, then the header goes out. */
static st_status multi_begin(st_engine *e, const struct pass *f) {
    const struct stage *last = &e->st[e->n_stages - 1];
    st_status rc = ST_OK;
    for (int p = 0; p < e->n_part && !rc; p++)
        rc = st_mpi_irecv(e->part[p], ST_MPI_TAG_STATUS + f->set, stat_slot(e, f->set, p), e->stat_bytes,
                          &e->stat_req[f->set * e->n_part + p]);
    if (!rc && !last->local && f->mode == OUT_PICK) {
        struct out_set *out = &e->out[f->set];
        const int64_t k = logits_rows(f);
        rc = st_mpi_irecv(last->d.rank, ST_MPI_TAG_IDS + f->set, out->ids, (size_t)f->n_rows * sizeof(int32_t),
                          &e->ids_req[f->set]);
        if (!rc && k)
            rc = st_mpi_irecv(last->d.rank, ST_MPI_TAG_LOGITS + f->set, out->logits,
                              (size_t)(k * e->hp.n_vocab) * sizeof(float), &e->lg_req[f->set]);
    }
    struct pass_hdr *h = e->hdr;
    *h = (struct pass_hdr){.kind = ST_MPI_MSG_PASS, .set = f->set, .T = f->T, .n_seq = f->n_seq, .mode = f->mode,
                           .n_rows = f->n_rows, .check = f->check, .timing = f->timing};
    int32_t *in = (int32_t *)(h + 1);
    for (int k = 0; k < IO_N; k++) memcpy(in + k * f->T, e->in[f->set] + k * e->T, (size_t)f->T * sizeof(int32_t));
    struct st_engine_row *rows = (struct st_engine_row *)(in + IO_N * f->T);
    if (f->n_rows) memcpy(rows, f->rows, (size_t)f->n_rows * sizeof *rows);
    const size_t n = (size_t)((char *)(rows + f->n_rows) - (char *)h);
    for (int p = 0; p < e->n_part && !rc; p++) rc = st_mpi_send(e->part[p], ST_MPI_TAG_CTRL, h, n);
    if (rc) {
        st_error_prefix("pass header");
        st_mpi_abort(rc);
    }
    return rc;
}

/* Rank 0, after its own part: the last stage's rows and every rank's status.
 * The pass's error is this rank's own (local), else the first rank's that failed. */
static st_status multi_collect(st_engine *e, const struct pass *f, st_status local) {
    const struct stage *last = &e->st[e->n_stages - 1];
    const int64_t V = e->hp.n_vocab;
    st_status rc = ST_OK, first = local;
    if (!last->local) {
        if (f->mode == OUT_PICK) {
            rc = st_mpi_wait(&e->ids_req[f->set]);
            if (!rc) rc = st_mpi_wait(&e->lg_req[f->set]);
        } else if (f->mode == OUT_ALL) {
            for (int64_t r0 = 0; r0 < f->T && !rc; r0 += last->logit_rows) {
                const int64_t nr = ST_MIN(last->logit_rows, f->T - r0);
                rc = st_mpi_recv(last->d.rank, ST_MPI_TAG_LOGITS + f->set, f->logits_out + r0 * V,
                                 (size_t)(nr * V) * sizeof(float), NULL);
            }
        } else if (f->mode == OUT_LAST) {
            rc = st_mpi_recv(last->d.rank, ST_MPI_TAG_LOGITS + f->set, f->logits_out, (size_t)V * sizeof(float), NULL);
        }
    }
    for (int p = 0; p < e->n_part && !rc; p++) {
        if ((rc = st_mpi_wait(&e->stat_req[f->set * e->n_part + p]))) break;
        void *st = stat_slot(e, f->set, p);
        const struct stat_hdr *h = st;
        const double *t = stat_times(st);
        for (int i = 0; i < e->n_stages; i++) {
            if (e->st[i].d.rank != e->part[p]) continue;
            if (f->timing) {
                e->stage_ms[i] += t[i];
                if (i > 0) e->link_ms[i - 1] += t[e->n_stages + i];
            }
            e->remote_busy[f->set * e->n_stages + i] = t[2 * e->n_stages + i];
        }
        if (h->status != ST_OK && first == ST_OK) {
            char *msg = stat_msg(e, st);
            msg[STAT_MSG - 1] = 0;
            first = st_error_set((st_status)h->status, "%s: %s", st_mpi_where(e->part[p]), msg);
        }
    }
    if (rc) {
        st_error_prefix("the answers to a pass");
        st_mpi_abort(rc);
        return rc;
    }
    return first;
}

static st_status follower_send_rows(st_engine *e, const struct pass *f, int64_t rows) {
    st_status rc = st_mpi_send(0, ST_MPI_TAG_LOGITS + f->set, e->fwd_logits, (size_t)(rows * e->hp.n_vocab) * sizeof(float));
    if (rc) {
        st_error_prefix("logits to rank 0");
        st_mpi_abort(rc);
    }
    e->fwd_rows_sent += rows;
    return rc;
}

/* What rank 0 waits for from the last stage, sent even when the pass failed here. */
static void follower_outputs(st_engine *e, const struct pass *f, st_status *first) {
    struct stage *s = &e->st[e->n_stages - 1];
    struct out_set *out = &e->out[f->set];
    const int64_t V = e->hp.n_vocab;
    if (f->mode == OUT_ALL || f->mode == OUT_LAST) {
        const int64_t want = f->mode == OUT_ALL ? f->T : 1;
        while (e->fwd_rows_sent < want) follower_send_rows(e, f, ST_MIN(s->logit_rows, want - e->fwd_rows_sent));
        return;
    }
    if (f->mode != OUT_PICK) return;
    if (!*first && out->done) *first = s->ops->event_sync(s->be, out->done);
    st_status rc = st_mpi_send(0, ST_MPI_TAG_IDS + f->set, out->ids, (size_t)f->n_rows * sizeof(int32_t));
    const int64_t k = logits_rows(f);
    if (!rc && k) rc = st_mpi_send(0, ST_MPI_TAG_LOGITS + f->set, out->logits, (size_t)(k * V) * sizeof(float));
    if (rc) {
        st_error_prefix("picks to rank 0");
        st_mpi_abort(rc);
    }
}

static void multi_quit(st_engine *e) {
    /* steps still in flight: take their answers so that nothing is left half-received */
    for (int mb = 0; mb < e->n_micro; mb++) {
        struct out_set *out = &e->out[mb];
        if (!out->n_rows) continue;
        struct pass f = {.set = mb, .T = out->n_rows, .n_seq = out->n_rows, .mode = OUT_PICK, .rows = out->rows,
                         .n_rows = out->n_rows};
        (void)multi_collect(e, &f, ST_OK);
        out->n_rows = 0;
    }
    int32_t quit[2] = {ST_MPI_MSG_QUIT, 0};
    for (int r = 1; r < st_mpi_size(); r++) {
        st_status rc = st_mpi_send(r, ST_MPI_TAG_CTRL, quit, sizeof quit);
        if (rc) st_mpi_abort(rc);
    }
}

st_status st_engine_follow(st_engine *e) {
    if (e->rank == 0) return st_error_set(ST_ERR_INTERNAL, "engine: rank 0 drives; it does not follow");
    const int S = e->n_stages;
    for (;;) {
        size_t got = 0;
        st_status rc = st_mpi_recv_idle(0, ST_MPI_TAG_CTRL, e->hdr, e->hdr_bytes, &got);
        const struct pass_hdr *h = e->hdr;
        if (!rc && (got < sizeof(int32_t) || (h->kind == ST_MPI_MSG_PASS && got < sizeof *h)))
            rc = st_error_set(ST_ERR_INTERNAL, "a %zu-byte message from rank 0 is no request", got);
        if (!rc && h->kind == ST_MPI_MSG_QUIT) return ST_OK;
        if (!rc && h->kind != ST_MPI_MSG_PASS)
            rc = st_error_set(ST_ERR_INTERNAL, "rank 0 sent request %08x while an engine runs", (unsigned)h->kind);
        if (!rc && (h->set < 0 || h->set > e->n_micro || h->T < 1 || h->T > e->T || h->n_rows < 0 || h->n_rows > h->T ||
                    got < sizeof *h + (size_t)(IO_N * h->T) * sizeof(int32_t) + (size_t)h->n_rows * sizeof(struct st_engine_row)))
            rc = st_error_set(ST_ERR_INTERNAL, "a pass header from rank 0 does not fit this engine (set %d, %lld tokens)",
                              h->set, (long long)h->T);
        if (rc) {
            st_error_prefix("following rank 0");
            st_mpi_abort(rc);
            return rc;
        }
        /* the pass as rank 0 described it */
        const int32_t *in = (const int32_t *)(h + 1);
        for (int k = 0; k < IO_N; k++) memcpy(e->in[h->set] + k * e->T, in + k * h->T, (size_t)h->T * sizeof(int32_t));
        inputs_to_stages(e, h->set);
        struct out_set *out = &e->out[h->set];
        if (h->n_rows) memcpy(out->rows, in + IO_N * h->T, (size_t)h->n_rows * sizeof *out->rows);
        struct pass f = {.set = h->set, .T = h->T, .n_seq = h->n_seq, .mode = (enum out_mode)h->mode,
                         .rows = out->rows, .n_rows = h->n_rows, .check = h->check, .timing = h->timing};
        st_status first = ST_OK;
        if (f.timing != e->timing) first = st_engine_set_timing(e, f.timing);
        if (f.timing) {
            memset(e->stage_ms, 0, (size_t)S * sizeof(double));
            memset(e->link_ms, 0, (size_t)S * sizeof(double));
        }
        e->fwd_rows_sent = 0;
        if (!first) first = forward_local(e, &f);
        else f.timing = false;   /* the transfers still happen, untimed */
        if (e->st[S - 1].local) follower_outputs(e, &f, &first);
        /* the rank's status: its error, its stages' times */
        void *st = e->stat;
        struct stat_hdr *sh = st;
        double *t = stat_times(st);
        memset(t, 0, 3 * (size_t)S * sizeof(double));
        for (int i = 0; i < S; i++) {
            struct stage *s = &e->st[i];
            if (!s->local) continue;
            if (!first) first = s->ops->sync(s->be);
            if (f.timing) {
                t[i] = e->stage_ms[i];
                if (i > 0) t[S + i] = e->link_ms[i - 1];
            }
            if (!first && f.set < e->n_micro && s->busy_start[f.set])
                first = s->ops->event_elapsed_ms(s->be, s->busy_start[f.set], s->busy_end[f.set], &t[2 * S + i]);
        }
        sh->status = (int32_t)first;
        sh->n_stages = S;
        snprintf(stat_msg(e, st), STAT_MSG, "%s", first ? st_last_error() : "");
        if ((rc = st_mpi_send(0, ST_MPI_TAG_STATUS + f.set, st, e->stat_bytes))) {
            st_error_prefix("status to rank 0");
            st_mpi_abort(rc);
            return rc;
        }
    }
}
