/* The CPU backend: host memory, the kernels of kernels/cpu/ spread over a
 * persistent hwloc-bound thread pool. Every op is synchronous, so sync is a
 * no-op and "device pointers" are host pointers. Weights are imported zero
 * copy: import_host returns the mmap'ed pointer itself. */
#include "devices/cpu/cpu-impl.h"
#include "kernels/cpu/kernels_cpu.h"

#include <stdatomic.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BIG_ALLOC_BYTES (1u << 20)   /* from here on: anonymous mmap (zeroed lazily) */

struct cpu_alloc { void *ptr; size_t bytes; bool mapped; };

struct st_backend {
    struct st_device_info info;
    struct st_backend_config cfg;
    st_cpu_pool *pool;
    struct cpu_alloc *allocs;    /* (n_allocs) live allocations; imports are not listed */
    size_t n_allocs, cap_allocs;
    uint64_t bytes_live;
};

static const char *buf_use_name(st_buf_use u) {
    switch (u) {
    case ST_BUF_WEIGHTS: return "weights";
    case ST_BUF_KV: return "KV cache";
    case ST_BUF_WORKSPACE: return "workspace";
    case ST_BUF_STAGING: return "staging";
    }
    return "buffer";
}

/* ---- lifecycle and memory ---------------------------------------------------- */

static st_status cpu_init(const struct st_device_info *dev, const struct st_backend_config *cfg, st_backend **out) {
    *out = NULL;
    st_backend *be = st_calloc(1, sizeof *be, "cpu backend");
    if (!be) return ST_ERR_NOMEM;
    if (dev) be->info = *dev;
    else { be->info.kind = ST_DEVICE_CPU; be->info.numa_node = -1; snprintf(be->info.name, sizeof be->info.name, "cpu"); }
    if (cfg) be->cfg = *cfg;
    if (be->cfg.n_threads < 0) {
        st_error_set(ST_ERR_CONFIG, "cpu: thread count %d is negative", be->cfg.n_threads);
        free(be);
        return st_error_hint("use 0 for one thread per core, or a positive count");
    }
    st_status s = st_cpu_pool_init(be->cfg.n_threads, be->info.numa_node, be->info.cpuset, &be->pool);
    if (s != ST_OK) {
        free(be);
        return st_error_prefix("cpu backend");
    }
    ST_INFO("cpu: %d threads (%s kernels)", st_cpu_pool_threads(be->pool), st_cpu_kernels_simd());
    *out = be;
    return ST_OK;
}

static void cpu_free(st_backend *be) {
    if (!be) return;
    st_cpu_pool_free(be->pool);
    for (size_t i = 0; i < be->n_allocs; i++) {
        if (be->allocs[i].mapped) munmap(be->allocs[i].ptr, be->allocs[i].bytes);
        else free(be->allocs[i].ptr);
    }
    free(be->allocs);
    free(be);
}

static st_status cpu_alloc(st_backend *be, size_t bytes, st_buf_use use, void **out) {
    *out = NULL;
    if (bytes == 0) bytes = 64;
    if (be->n_allocs == be->cap_allocs) {
        size_t cap = be->cap_allocs ? 2 * be->cap_allocs : 32;
        struct cpu_alloc *a = st_realloc(be->allocs, cap * sizeof *a, "the CPU allocation table");
        if (!a) return ST_ERR_NOMEM;
        be->allocs = a;
        be->cap_allocs = cap;
    }
    void *p = NULL;
    bool mapped = bytes >= BIG_ALLOC_BYTES;
    if (st_fault_hit(ST_FAULT_DEV_ALLOC, buf_use_name(use))) {     /* STRATA_FAULT=dev_alloc:N: as if memory ran out */
        p = NULL;
    } else if (mapped) {
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) p = NULL;
    } else if (posix_memalign(&p, 64, bytes) == 0) {
        memset(p, 0, bytes);
    } else {
        p = NULL;
    }
    if (!p) {
        char want[32], avail[32];
        uint64_t free_bytes = (uint64_t)sysconf(_SC_AVPHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE);
        st_error_set(ST_ERR_DEVICE_OOM, "%s: out of memory allocating %s for the %s (%s available)", be->info.name,
                     st_format_bytes(bytes, want, sizeof want), buf_use_name(use),
                     st_format_bytes(free_bytes, avail, sizeof avail));
        return st_error_hint("use a shorter context (--ctx), a smaller prefill chunk, or a quantized model");
    }
    be->allocs[be->n_allocs++] = (struct cpu_alloc){p, bytes, mapped};
    be->bytes_live += bytes;
    *out = p;
    return ST_OK;
}

/* Frees what alloc gave; pointers from import_host are not ours and are ignored. */
static void cpu_dealloc(st_backend *be, void *ptr) {
    if (!be || !ptr) return;
    for (size_t i = 0; i < be->n_allocs; i++) {
        if (be->allocs[i].ptr != ptr) continue;
        if (be->allocs[i].mapped) munmap(ptr, be->allocs[i].bytes);
        else free(ptr);
        be->bytes_live -= be->allocs[i].bytes;
        be->allocs[i] = be->allocs[--be->n_allocs];
        return;
    }
}

static st_status cpu_import_host(st_backend *be, const void *host_ptr, size_t bytes, st_buf_use use, void **out) {
    *out = (void *)host_ptr;
    return ST_OK;
}

static st_status cpu_upload(st_backend *be, void *dst, const void *src_host, size_t bytes) {
    if (bytes && dst != src_host) memmove(dst, src_host, bytes);
    return ST_OK;
}

static st_status cpu_download(st_backend *be, void *dst_host, const void *src, size_t bytes) {
    if (bytes && dst_host != src) memmove(dst_host, src, bytes);
    return ST_OK;
}

static st_status cpu_sync(st_backend *be) { return ST_OK; }

/* ---- parallel dispatch ----------------------------------------------------------- */

enum job_op { JOB_EMBED, JOB_RMSNORM, JOB_MATMUL, JOB_ROPE, JOB_ATTN, JOB_SWIGLU, JOB_ADD };

struct job {
    enum job_op op;
    int64_t n_units;              /* split evenly over the threads */
    /* arguments (a superset; each op reads its own) */
    const void *w; st_dtype dt; int64_t rows, cols, n, n_tok, n_head, n_head_kv, head_dim, n_ctx, n_slots;
    const float *bias, *cx, *cy; float *x, *y; const int32_t *ids, *pos, *slot;
    float eps, scale, theta; st_rope_layout layout; const float *ff;
    const void *kc, *vc;
    /* first failure on any thread */
    _Atomic int failed;
    st_status status;
    char msg[512];
};

static void job_task(void *arg, int chunk, int n_chunks) {
    struct job *j = arg;
    int64_t b = j->n_units * chunk / n_chunks, e = j->n_units * (chunk + 1) / n_chunks;
    if (b >= e) return;
    st_status s = ST_OK;
    switch (j->op) {
    case JOB_EMBED: s = st_cpu_embed_part(j->w, j->dt, j->rows, j->cols, j->ids, j->n_tok, j->y, b, e); break;
    case JOB_RMSNORM: st_cpu_rmsnorm_part(j->cx, j->cy, j->rows, j->n, j->eps, j->y, b, e); break;
    case JOB_MATMUL: s = st_cpu_matmul_part(j->w, j->dt, j->rows, j->cols, j->bias, j->cx, j->n_tok, j->y, b, e); break;
    case JOB_ROPE:
        s = st_cpu_rope_part(j->x, j->n_tok, j->n_head, j->head_dim, j->pos, j->theta, j->layout, j->ff, b, e);
        break;
    case JOB_ATTN:
        s = st_cpu_attention_part(j->kc, j->vc, j->dt, j->n_slots, j->n_ctx, j->n_head_kv, j->head_dim, j->cx,
                                  j->n_tok, j->n_head, j->pos, j->slot, j->scale, j->y, b, e);
        break;
    case JOB_SWIGLU: st_cpu_swiglu_part(j->cx, j->cy, j->y, b, e); break;
    case JOB_ADD: st_cpu_add_part(j->x, j->cy, b, e); break;
    }
    if (s != ST_OK) {
        int expect = 0;
        if (atomic_compare_exchange_strong(&j->failed, &expect, 1)) {
            j->status = s;
            snprintf(j->msg, sizeof j->msg, "%s", st_last_error());
        }
    }
}

/* Runs the job on the pool when it is worth waking the workers, else inline. */
static st_status run_job(st_backend *be, struct job *j, int64_t work) {
    atomic_store(&j->failed, 0);
    if (work >= (1 << 15) && j->n_units > 1)
        st_cpu_pool_run_chunks(be->pool, job_task, j, (int)ST_MIN(j->n_units, 4 * (int64_t)st_cpu_pool_threads(be->pool)));
    else
        job_task(j, 0, 1);
    if (atomic_load(&j->failed)) return st_error_set(j->status, "%s: %s", be->info.name, j->msg);
    return ST_OK;
}

/* ---- ops ------------------------------------------------------------------------- */

static st_status cpu_embed(st_backend *be, const struct st_weight *table, const int32_t *ids, int64_t n_tok, float *out) {
    struct job j = {.op = JOB_EMBED, .n_units = n_tok, .w = table->data, .dt = table->dtype, .rows = table->rows,
                    .cols = table->cols, .ids = ids, .n_tok = n_tok, .y = out};
    return run_job(be, &j, n_tok * table->cols);
}

static st_status cpu_rmsnorm(st_backend *be, const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out) {
    struct job j = {.op = JOB_RMSNORM, .n_units = rows, .cx = x, .cy = w, .rows = rows, .n = n, .eps = eps, .y = out};
    return run_job(be, &j, rows * n);
}

static st_status cpu_matmul(st_backend *be, const struct st_weight *w, const float *bias, const float *x,
                            int64_t n_tok, float *y) {
    struct job j = {.op = JOB_MATMUL, .n_units = w->rows, .w = w->data, .dt = w->dtype, .rows = w->rows,
                    .cols = w->cols, .bias = bias, .cx = x, .n_tok = n_tok, .y = y};
    return run_job(be, &j, w->rows * w->cols * ST_MAX(n_tok, 1));
}

static st_status cpu_rope(st_backend *be, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                          const int32_t *pos, const struct st_rope_params *rp) {
    struct job j = {.op = JOB_ROPE, .n_units = n_tok, .x = x, .n_tok = n_tok, .n_head = n_heads,
                    .head_dim = head_dim, .pos = pos, .theta = rp->theta, .layout = rp->layout, .ff = rp->freq_factors};
    return run_job(be, &j, n_tok * n_heads * head_dim * 8);
}

static st_status cpu_kv_store(st_backend *be, const struct st_kv_layer *kv, const float *k, const float *v,
                              int64_t n_tok, const int32_t *pos, const int32_t *slot) {
    if (st_cpu_kv_store(kv->k, kv->v, kv->dtype, kv->n_slots, kv->n_ctx, kv->n_head_kv, kv->head_dim, k, v, n_tok, pos,
                        slot) != ST_OK)
        return st_error_prefix("%s", be->info.name);
    return ST_OK;
}

static st_status cpu_attention(st_backend *be, const struct st_kv_layer *kv, const float *q, int64_t n_tok,
                               int64_t n_head, const int32_t *pos, const int32_t *slot, int64_t n_seq, float scale,
                               float *out) {
    (void)n_seq;   /* every (token, head) pair is one task either way */
    struct job j = {.op = JOB_ATTN, .n_units = n_tok * n_head, .kc = kv->k, .vc = kv->v, .dt = kv->dtype,
                    .n_slots = kv->n_slots, .n_ctx = kv->n_ctx, .n_head_kv = kv->n_head_kv,
                    .head_dim = kv->head_dim, .cx = q, .n_tok = n_tok, .n_head = n_head, .pos = pos, .slot = slot,
                    .scale = scale, .y = out};
    int64_t keys = n_tok > 0 ? (int64_t)pos[n_tok - 1] + 1 : 0;
    return run_job(be, &j, n_tok * n_head * kv->head_dim * ST_MAX(keys, 1) * 4);
}

static st_status cpu_swiglu(st_backend *be, const float *gate, const float *up, int64_t n, float *out) {
    struct job j = {.op = JOB_SWIGLU, .n_units = n, .cx = gate, .cy = up, .y = out};
    return run_job(be, &j, n * 4);
}

static st_status cpu_add(st_backend *be, float *x, const float *y, int64_t n) {
    struct job j = {.op = JOB_ADD, .n_units = n, .x = x, .cy = y};
    return run_job(be, &j, n);
}

static st_status cpu_argmax(st_backend *be, const float *logits, int64_t n_vocab, int32_t *out_id) {
    (void)be;
    for (int64_t i = 0; i < n_vocab; i++) {
        if (!isfinite(logits[i])) { *out_id = -1; return ST_OK; }   /* never a token: the engine reports it */
    }
    *out_id = st_cpu_argmax(logits, n_vocab);
    return ST_OK;
}

/* ---- timing: every op has completed when it returns, so the host clock is the event ---- */

struct st_event { double t_s; };

static st_status cpu_event_create(st_backend *be, st_event **out) {
    (void)be;
    *out = st_calloc(1, sizeof **out, "cpu event");
    return *out ? ST_OK : ST_ERR_NOMEM;
}

static void cpu_event_free(st_backend *be, st_event *ev) {
    (void)be;
    free(ev);
}

static st_status cpu_event_record(st_backend *be, st_event *ev) {
    (void)be;
    ev->t_s = st_time_s();
    return ST_OK;
}

static st_status cpu_event_elapsed_ms(st_backend *be, st_event *from, st_event *to, double *ms) {
    (void)be;
    *ms = (to->t_s - from->t_s) * 1e3;
    return ST_OK;
}

/* Every op has completed when it returns: an async download is a copy, an event has passed. */
static st_status cpu_download_async(st_backend *be, void *dst_host, const void *src, size_t bytes) {
    return cpu_download(be, dst_host, src, bytes);
}

static st_status cpu_event_sync(st_backend *be, st_event *ev) {
    (void)be;
    (void)ev;
    return ST_OK;
}

static const struct st_device_ops cpu_ops = {
    .name = "cpu",
    .init = cpu_init,
    .free = cpu_free,
    .alloc = cpu_alloc,
    .dealloc = cpu_dealloc,
    .upload = cpu_upload,
    .download = cpu_download,
    .sync = cpu_sync,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .attention = cpu_attention,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .argmax = cpu_argmax,
    .import_host = cpu_import_host,
    .capture_begin = NULL,
    .capture_end = NULL,
    .replay = NULL,
    .event_create = cpu_event_create,
    .event_free = cpu_event_free,
    .event_record = cpu_event_record,
    .event_elapsed_ms = cpu_event_elapsed_ms,
    .download_async = cpu_download_async,
    .event_sync = cpu_event_sync,
};

const struct st_device_ops *st_device_ops_cpu(void) { return &cpu_ops; }

/* Threads the backend runs (for reports and tests). */
int st_cpu_backend_threads(const st_backend *be) { return st_cpu_pool_threads(be->pool); }
