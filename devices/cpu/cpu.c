/* The CPU backend: host memory, the kernels of kernels/cpu/ spread over a
 * persistent hwloc-bound thread pool. Every op is synchronous, so sync is a
 * no-op and "device pointers" are host pointers. Weights are imported zero
 * copy: import_host returns the mmap'ed pointer itself.
 *
 * Placement: before the first op after weights were imported, the backend
 * looks where their pages are (hwloc, sampled) and pins its threads, one per
 * core, to that NUMA node (st_cpu_numa_choose: else the device's node, else
 * on a multi-node machine the largest node, whose threads then fault the
 * weights in locally). With threads: 0 the pool gets one thread per core of
 * that node; an explicit count (threads: N, --threads N) is kept. */
#include "devices/cpu/cpu-impl.h"
#include "kernels/cpu/kernels_cpu.h"

#include <stdatomic.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define BIG_ALLOC_BYTES (1u << 20)   /* from here on: anonymous mmap (zeroed lazily) */
#define HUGE_BYTES ((size_t)2 << 20)  /* a transparent huge page (x86-64, arm64 with 4 KiB pages) */
#define PK_CHUNK_BYTES ((size_t)64 << 20)   /* packed weights are carved from chunks of this size */

struct cpu_alloc { void *ptr; size_t bytes; bool mapped; };

struct st_backend {
    struct st_device_info info;
    struct st_backend_config cfg;
    st_cpu_pool *pool;
    struct cpu_alloc *allocs;    /* (n_allocs) live allocations; imports are not listed */
    size_t n_allocs, cap_allocs;
    uint64_t bytes_live;
    void *mm_scratch;            /* (mm_scratch_bytes) quantized activations of the matmul being run */
    size_t mm_scratch_bytes;
    float *up_buf;               /* (up_buf_bytes) the up projection inside matmul_swiglu */
    size_t up_buf_bytes;
    struct st_cpu_area *wareas;  /* (n_wareas) imported weights, for the NUMA placement */
    int n_wareas, cap_wareas;
    bool place_pending;          /* weights imported since the threads were last placed */
    int weights_node;            /* NUMA node the placement found the weights on, -1 = unknown */
    struct pk_entry *pk;         /* (cap_pk) open-addressing table: imported quantized weights -> packed copy */
    int n_pk, cap_pk;
    uint64_t pk_bytes;           /* bytes of packed copies */
    struct pk_chunk *chunks;     /* (n_chunks) huge-page mappings the packed copies are carved from */
    int n_chunks, cap_chunks;
};

/* A mapping of packed weights: [base, base + used) given out, the rest free. */
struct pk_chunk { uint8_t *base; size_t used, bytes; };

/* A quantized weight matrix packed in 16-row blocks for the SIMD kernels
 * (st_cpu_matmul_pack_part), made on its first use and kept for the
 * backend's life. Only weights that came through import_host are packed:
 * their memory outlives the backend, so a pointer cannot be reused for other
 * data behind the cache's back. */
struct pk_entry { const void *w; st_dtype dt; int64_t rows, cols; void *packed; size_t bytes; };

void *st_cpu_huge_alloc(size_t bytes) {
    if (!bytes) return NULL;
    const size_t len = (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
    uint8_t *m = mmap(NULL, len + HUGE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return NULL;
    /* keep the 2 MiB-aligned part: a huge page needs an aligned virtual range */
    uint8_t *p = (uint8_t *)(((uintptr_t)m + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
    if (p > m) munmap(m, (size_t)(p - m));
    if (m + len + HUGE_BYTES > p + len) munmap(p + len, (size_t)(m + len + HUGE_BYTES - (p + len)));
#ifdef MADV_HUGEPAGE
    (void)madvise(p, len, MADV_HUGEPAGE);   /* advice: refused (no THP) is fine */
#endif
    return p;
}

void st_cpu_huge_free(void *p, size_t bytes) {
    if (p && bytes) munmap(p, (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES);
}

/* bytes of packed weights from the backend's huge-page chunks (64-byte aligned; freed with the backend) */
static void *pk_carve(st_backend *be, size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    struct pk_chunk *c = be->n_chunks ? &be->chunks[be->n_chunks - 1] : NULL;
    if (!c || c->bytes - c->used < bytes) {
        if (be->n_chunks == be->cap_chunks) {
            int cap = be->cap_chunks ? 2 * be->cap_chunks : 16;
            struct pk_chunk *t = realloc(be->chunks, (size_t)cap * sizeof *t);
            if (!t) return NULL;
            be->chunks = t;
            be->cap_chunks = cap;
        }
        const size_t len = ST_MAX(PK_CHUNK_BYTES, (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES);
        uint8_t *base = st_cpu_huge_alloc(len);
        if (!base) return NULL;
        c = &be->chunks[be->n_chunks++];
        *c = (struct pk_chunk){base, 0, len};
    }
    void *p = c->base + c->used;
    c->used += bytes;
    return p;
}

/* Scratch sized at init so a decode step (and small batches) never allocates;
 * a longer prefill chunk grows it once. */
#define MM_SCRATCH_INIT_BYTES ((size_t)1 << 20)

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
    be->weights_node = -1;
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
    if (posix_memalign(&be->mm_scratch, 64, MM_SCRATCH_INIT_BYTES) != 0) {
        be->mm_scratch = NULL;
        st_cpu_pool_free(be->pool);
        free(be);
        return st_error_set(ST_ERR_NOMEM, "cpu backend: out of memory for the matmul scratch");
    }
    be->mm_scratch_bytes = MM_SCRATCH_INIT_BYTES;
    be->pk = calloc(64, sizeof *be->pk);
    be->cap_pk = be->pk ? 64 : 0;
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
    free(be->mm_scratch);
    free(be->up_buf);
    free(be->wareas);
    for (int i = 0; i < be->n_chunks; i++) st_cpu_huge_free(be->chunks[i].base, be->chunks[i].bytes);
    free(be->chunks);
    free(be->pk);
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
    if (use != ST_BUF_WEIGHTS || !bytes) return ST_OK;
    if (be->n_wareas == be->cap_wareas) {
        int cap = be->cap_wareas ? 2 * be->cap_wareas : 64;
        struct st_cpu_area *a = realloc(be->wareas, (size_t)cap * sizeof *a);
        if (!a) return st_error_set(ST_ERR_NOMEM, "%s: out of memory for the table of imported weights", be->info.name);
        be->wareas = a;
        be->cap_wareas = cap;
    }
    be->wareas[be->n_wareas++] = (struct st_cpu_area){host_ptr, bytes};
    be->place_pending = true;
    return ST_OK;
}

/* Pins the pool to the NUMA node of the weights (see the top of the file).
 * Runs once after imports, before the op that reads them. */
static st_status place_threads(st_backend *be) {
    be->place_pending = false;
    double share = 0;
    be->weights_node = st_cpu_pool_area_node(be->pool, be->wareas, be->n_wareas, &share);
    uint64_t mem[256];
    int nn = st_cpu_pool_node_memory(be->pool, mem, 256);
    int node = st_cpu_numa_choose(be->weights_node, be->info.numa_node, mem, nn);
    if (node < 0) node = nn == 1 ? be->weights_node : -1;   /* one node: pin there all the same */
    if (node < 0) {
        ST_INFO("%s: weights not resident yet and no NUMA node to prefer: %d threads on the device's cores",
                be->info.name, st_cpu_pool_threads(be->pool));
        return ST_OK;
    }
    if (node != st_cpu_pool_node(be->pool)) {
        if (be->cfg.n_threads == 0 && st_cpu_pool_node_cores(be->pool, node) != st_cpu_pool_threads(be->pool)) {
            /* one thread per core of that node */
            st_cpu_pool *np = NULL;
            st_status s = st_cpu_pool_init(0, node, "", &np);
            if (s != ST_OK) return st_error_prefix("%s", be->info.name);
            st_cpu_pool_free(be->pool);
            be->pool = np;
        }
        st_status s = st_cpu_pool_bind_node(be->pool, node);
        if (s != ST_OK) return st_error_prefix("%s", be->info.name);
    }
    if (be->weights_node >= 0)
        ST_INFO("%s: weights on NUMA node %d (%.0f%% of the sampled pages): %d threads pinned to its cores (%d workers bound)",
                be->info.name, be->weights_node, 100 * share, st_cpu_pool_threads(be->pool), st_cpu_pool_bound(be->pool));
    else
        ST_INFO("%s: weights not resident yet: %d threads pinned to the cores of NUMA node %d, which will fault them in",
                be->info.name, st_cpu_pool_threads(be->pool), node);
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

enum job_op { JOB_EMBED, JOB_RMSNORM, JOB_MATMUL, JOB_PREPARE, JOB_PACK, JOB_MATMUL_SWIGLU, JOB_ROPE, JOB_ATTN,
              JOB_SWIGLU, JOB_ADD };

/* One product of a matmul job: the weight, its packed copy (or NULL), bias, output, and
 * the rows of a work unit (mm_unit_rows). */
struct mm_part { const struct st_weight *w; const void *packed; const float *bias; float *y; int64_t unit; };

struct job {
    enum job_op op;
    int64_t n_units;              /* split evenly over the threads */
    /* arguments (a superset; each op reads its own) */
    const void *w; st_dtype dt; int64_t rows, cols, n, n_tok, n_head, n_head_kv, head_dim, n_ctx, n_slots;
    const float *bias, *cx, *cy; float *x, *y; const int32_t *ids, *pos, *slot;
    float eps, scale, theta; st_rope_layout layout; const float *ff;
    const void *kc, *vc;
    void *qx;                     /* prepared activations (quantized weights) */
    struct mm_part mp[ST_MATMUL_MULTI_MAX]; int n_mp;   /* matmul / matmul_multi / matmul_swiglu (gate, up) */
    int64_t unit;                 /* matmul_swiglu: rows per work unit (mm_unit_rows of gate and up) */
    /* first failure on any thread */
    _Atomic int failed;
    st_status status;
    char msg[512];
};

/* Rows [r0, r1) of product m. */
static st_status mm_rows(const struct job *j, const struct mm_part *m, float *y, int64_t r0, int64_t r1) {
    const struct st_weight *w = m->w;
    return st_cpu_matmul_part(w->data, w->dtype, w->rows, w->cols, m->bias, j->cx, j->qx, m->packed, j->n_tok, y, r0,
                              ST_MIN(r1, w->rows));
}

static int64_t mm_units(const struct mm_part *m) { return (m->w->rows + m->unit - 1) / m->unit; }

static void job_task(void *arg, int chunk, int n_chunks) {
    struct job *j = arg;
    int64_t b = j->n_units * chunk / n_chunks, e = j->n_units * (chunk + 1) / n_chunks;
    if (b >= e) return;
    st_status s = ST_OK;
    switch (j->op) {
    case JOB_EMBED: s = st_cpu_embed_part(j->w, j->dt, j->rows, j->cols, j->ids, j->n_tok, j->y, b, e); break;
    case JOB_RMSNORM: st_cpu_rmsnorm_part(j->cx, j->cy, j->rows, j->n, j->eps, j->y, b, e); break;
    case JOB_MATMUL:   /* units: the row blocks of every product, one product after the other */
        for (int k = 0, off = 0; k < j->n_mp && s == ST_OK; off += (int)mm_units(&j->mp[k]), k++) {
            int64_t lo = ST_MAX(b, off), hi = ST_MIN(e, off + mm_units(&j->mp[k]));
            if (lo < hi) s = mm_rows(j, &j->mp[k], j->mp[k].y, (lo - off) * j->mp[k].unit, (hi - off) * j->mp[k].unit);
        }
        break;
    case JOB_PREPARE: st_cpu_matmul_prepare_part(j->dt, j->cx, j->cols, j->n_tok, j->qx, b, e); break;
    case JOB_PACK: st_cpu_matmul_pack_part(j->w, j->dt, j->rows, j->cols, j->x, b, e); break;
    case JOB_MATMUL_SWIGLU: {   /* mp[0] gate into its y, mp[1] up into its y, then gate = silu(gate) * up */
        const int64_t F = j->mp[0].w->rows, r0 = b * j->unit, r1 = ST_MIN(e * j->unit, F);
        s = mm_rows(j, &j->mp[0], j->mp[0].y, r0, r1);
        if (s == ST_OK) s = mm_rows(j, &j->mp[1], j->mp[1].y, r0, r1);
        for (int64_t t = 0; s == ST_OK && t < j->n_tok; t++)
            st_cpu_swiglu_part(j->mp[0].y + t * F, j->mp[1].y + t * F, j->mp[0].y + t * F, r0, r1);
        break;
    }
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
    if (be->place_pending) {
        st_status s = place_threads(be);
        if (s != ST_OK) return s;
    }
    atomic_store(&j->failed, 0);
    /* A long job (a prefill matmul) in more chunks: the last one, run alone, is
     * shorter. A short one (a decode GEMV) in one contiguous range per thread:
     * every chunk start is a cold stream for the prefetchers, and on the 2-core
     * Xeon dev box 4 chunks per thread cost 14 % of the F16 decode rate
     * (33.8 against 38.8 tok/s, bench/RESULTS.md). */
    const int64_t per_thread = work >= ((int64_t)1 << 27) ? 16 : 1;
    if (work >= (1 << 15) && j->n_units > 1)
        st_cpu_pool_run_chunks(be->pool, job_task, j, (int)ST_MIN(j->n_units, per_thread * st_cpu_pool_threads(be->pool)));
    else
        job_task(j, 0, 1);
    if (atomic_load(&j->failed)) return st_error_set(j->status, "%s: %s", be->info.name, j->msg);
    return ST_OK;
}

/* Grows a 64-byte aligned buffer; the decode loop never gets here (MM_SCRATCH_INIT_BYTES). */
static st_status grow(st_backend *be, void **buf, size_t *have, size_t need, const char *what) {
    if (need <= *have) return ST_OK;
    void *p = NULL;
    if (posix_memalign(&p, 64, need) != 0) {
        char b[32];
        st_error_set(ST_ERR_DEVICE_OOM, "%s: out of memory allocating %s for the %s", be->info.name,
                     st_format_bytes(need, b, sizeof b), what);
        return st_error_hint("use a smaller prefill chunk (--batch)");
    }
    free(*buf);
    *buf = p;
    *have = need;
    return ST_OK;
}

/* Quantizes x for the integer matmul of quantized weights (nothing for
 * F32/F16/BF16) into the backend's scratch; *qx = the prepared rows or NULL. */
static st_status prepare_x(st_backend *be, st_dtype dt, const float *x, int64_t cols, int64_t n_tok, void **qx) {
    *qx = NULL;
    const size_t bytes = st_cpu_matmul_scratch_bytes(dt, cols, n_tok);
    if (!bytes) return ST_OK;
    st_status s = grow(be, &be->mm_scratch, &be->mm_scratch_bytes, bytes, "quantized activations");
    if (s != ST_OK) return s;
    *qx = be->mm_scratch;
    if (n_tok < 4) {   /* decode: cheaper on the caller than a wake-up of the pool */
        st_cpu_matmul_prepare_part(dt, x, cols, n_tok, *qx, 0, n_tok);
        return ST_OK;
    }
    struct job j = {.op = JOB_PREPARE, .n_units = n_tok, .dt = dt, .cx = x, .cols = cols, .n_tok = n_tok, .qx = *qx};
    return run_job(be, &j, n_tok * cols);
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

static bool imported(const st_backend *be, const void *p, size_t bytes) {
    for (int i = 0; i < be->n_wareas; i++) {
        const uint8_t *a = be->wareas[i].ptr;
        if ((const uint8_t *)p >= a && (const uint8_t *)p + bytes <= a + be->wareas[i].bytes) return true;
    }
    return false;
}

static size_t pk_slot(const st_backend *be, const void *w) {
    uint64_t h = (uint64_t)(uintptr_t)w * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (size_t)(be->cap_pk - 1);
}

/* The packed copy of an imported quantized weight, made on its first use
 * (packed by the pool; then the original pages are paged out, MADV_PAGEOUT:
 * the kernels never read them again, the data stays (a file mapping drops
 * clean pages, anonymous memory keeps them without swap), and an embedding
 * lookup of the same table faults its rows back in). NULL for float
 * weights, weights that were not imported, or when memory runs out (the
 * kernels then pack block by block on the fly: correct, slower). */
static const void *packed_for(st_backend *be, const struct st_weight *w) {
    const size_t bytes = st_cpu_matmul_packed_bytes(w->dtype, w->rows, w->cols);
    if (!bytes || !be->cap_pk) return NULL;
    for (size_t i = pk_slot(be, w->data);; i = (i + 1) & (size_t)(be->cap_pk - 1)) {
        struct pk_entry *e = &be->pk[i];
        if (!e->w) break;
        if (e->w == w->data && e->dt == w->dtype && e->rows == w->rows && e->cols == w->cols) return e->packed;
    }
    const size_t wb = st_dtype_row_bytes(w->dtype, w->cols) * (size_t)w->rows;
    if (!imported(be, w->data, wb)) return NULL;
    if (2 * (be->n_pk + 1) > be->cap_pk) {   /* grow the table */
        int cap = be->cap_pk * 2;
        struct pk_entry *t = calloc((size_t)cap, sizeof *t);
        if (!t) return NULL;
        for (int i = 0; i < be->cap_pk; i++) {
            if (!be->pk[i].w) continue;
            uint64_t h = (uint64_t)(uintptr_t)be->pk[i].w * 0x9E3779B97F4A7C15ull;
            size_t k = (size_t)(h >> 32) & (size_t)(cap - 1);
            while (t[k].w) k = (k + 1) & (size_t)(cap - 1);
            t[k] = be->pk[i];
        }
        free(be->pk);
        be->pk = t;
        be->cap_pk = cap;
    }
    void *packed = pk_carve(be, bytes);
    if (!packed) {
        ST_WARN("%s: no memory to pack a %s weight (%zu bytes): it runs unpacked, slower", be->info.name,
                st_dtype_name(w->dtype), bytes);
        return NULL;
    }
    struct job j = {.op = JOB_PACK, .n_units = (w->rows + 15) / 16, .w = w->data, .dt = w->dtype, .rows = w->rows,
                    .cols = w->cols, .x = packed};
    atomic_store(&j.failed, 0);
    st_cpu_pool_run_chunks(be->pool, job_task, &j, (int)ST_MIN(j.n_units, 4 * (int64_t)st_cpu_pool_threads(be->pool)));
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const uintptr_t p0 = ((uintptr_t)w->data + page - 1) / page * page, p1 = ((uintptr_t)w->data + wb) / page * page;
#ifdef MADV_PAGEOUT
    if (p1 > p0) (void)madvise((void *)p0, p1 - p0, MADV_PAGEOUT);
#else
    (void)p0; (void)p1;
#endif
    size_t i = pk_slot(be, w->data);
    while (be->pk[i].w) i = (i + 1) & (size_t)(be->cap_pk - 1);
    be->pk[i] = (struct pk_entry){w->data, w->dtype, w->rows, w->cols, packed, bytes};
    be->n_pk++;
    be->pk_bytes += bytes;
    return packed;
}

/* Matmul work is split on the kernels' 16-row blocks, so a thread never
 * computes a block whose rows another one writes; a float matrix on quads of
 * four blocks (kernels/cpu/matmul-impl.h), the unit of its decode sweep and
 * of its GEMM, so no thread streams a quad that another one streams too. */
static int64_t mm_unit_rows(st_dtype dt) {
    return dt == ST_DTYPE_F32 || dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16 ? 64 : 16;
}

static st_status cpu_matmul(st_backend *be, const struct st_weight *w, const float *bias, const float *x,
                            int64_t n_tok, float *y) {
    if (be->place_pending) {
        st_status s = place_threads(be);
        if (s != ST_OK) return s;
    }
    struct job j = {.op = JOB_MATMUL, .cx = x, .n_tok = n_tok, .n_mp = 1};
    const void *pk = packed_for(be, w);
    j.mp[0] = (struct mm_part){w, pk, bias, y, mm_unit_rows(w->dtype)};
    j.n_units = mm_units(&j.mp[0]);
    st_status s = prepare_x(be, w->dtype, x, w->cols, n_tok, &j.qx);
    if (s != ST_OK) return s;
    return run_job(be, &j, w->rows * w->cols * ST_MAX(n_tok, 1));
}

/* The group's products in one dispatch; x is prepared once for all of them.
 * Each product is computed exactly as matmul computes it (same bits). */
static st_status cpu_matmul_multi(st_backend *be, const struct st_matmul_job *jobs, int n_jobs, const float *x,
                                  int64_t n_tok) {
    if (n_jobs < 1 || n_jobs > ST_MATMUL_MULTI_MAX)
        return st_error_set(ST_ERR_USAGE, "%s: matmul_multi takes 1 to %d products, got %d", be->info.name,
                            ST_MATMUL_MULTI_MAX, n_jobs);
    if (be->place_pending) {
        st_status s = place_threads(be);
        if (s != ST_OK) return s;
    }
    struct job j = {.op = JOB_MATMUL, .cx = x, .n_tok = n_tok, .n_mp = n_jobs};
    const int64_t cols = jobs[0].w->cols;
    st_dtype qdt = ST_DTYPE_F32;
    for (int k = 0; k < n_jobs; k++) {
        if (jobs[k].w->cols != cols)
            return st_error_set(ST_ERR_USAGE, "%s: matmul_multi products read %lld and %lld columns", be->info.name,
                                (long long)cols, (long long)jobs[k].w->cols);
        if (st_cpu_matmul_scratch_bytes(jobs[k].w->dtype, cols, 1)) qdt = jobs[k].w->dtype;
        const void *pk = packed_for(be, jobs[k].w);
        j.mp[k] = (struct mm_part){jobs[k].w, pk, jobs[k].bias, jobs[k].y, mm_unit_rows(jobs[k].w->dtype)};
    }
    int64_t work = 0;
    for (int k = 0; k < n_jobs; k++) {
        j.n_units += mm_units(&j.mp[k]);
        work += jobs[k].w->rows * cols;
    }
    st_status s = prepare_x(be, qdt, x, cols, n_tok, &j.qx);
    if (s != ST_OK) return s;
    return run_job(be, &j, work * ST_MAX(n_tok, 1));
}

static st_status cpu_matmul_swiglu(st_backend *be, const struct st_weight *gate, const float *gate_bias,
                                   const struct st_weight *up, const float *up_bias, const float *x, int64_t n_tok,
                                   float *out) {
    if (gate->rows != up->rows || gate->cols != up->cols)
        return st_error_set(ST_ERR_USAGE, "%s: matmul_swiglu: gate is %lld x %lld but up is %lld x %lld", be->info.name,
                            (long long)gate->rows, (long long)gate->cols, (long long)up->rows, (long long)up->cols);
    if (be->place_pending) {
        st_status s = place_threads(be);
        if (s != ST_OK) return s;
    }
    void *ub = be->up_buf;
    st_status s = grow(be, &ub, &be->up_buf_bytes, sizeof(float) * (size_t)(gate->rows * n_tok), "up projection");
    be->up_buf = ub;
    if (s != ST_OK) return s;
    struct job j = {.op = JOB_MATMUL_SWIGLU, .cx = x, .n_tok = n_tok, .n_mp = 2};
    const void *pg = packed_for(be, gate), *pu = packed_for(be, up);
    j.unit = ST_MAX(mm_unit_rows(gate->dtype), mm_unit_rows(up->dtype));
    j.mp[0] = (struct mm_part){gate, pg, gate_bias, out, j.unit};
    j.mp[1] = (struct mm_part){up, pu, up_bias, be->up_buf, j.unit};
    j.n_units = mm_units(&j.mp[0]);
    st_dtype qdt = st_cpu_matmul_scratch_bytes(gate->dtype, gate->cols, 1) ? gate->dtype : up->dtype;
    if ((s = prepare_x(be, qdt, x, gate->cols, n_tok, &j.qx)) != ST_OK) return s;
    return run_job(be, &j, 2 * gate->rows * gate->cols * ST_MAX(n_tok, 1));
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
    .grouped_any_tokens = true,   /* one 8-bit x for q, k, v (and for gate, up), one dispatch */
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
    .matmul_multi = cpu_matmul_multi,
    .matmul_swiglu = cpu_matmul_swiglu,
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

int st_cpu_backend_node(const st_backend *be) { return st_cpu_pool_node(be->pool); }
int st_cpu_backend_weights_node(const st_backend *be) { return be->weights_node; }
int st_cpu_backend_bound(const st_backend *be) { return st_cpu_pool_bound(be->pool); }
uint64_t st_cpu_backend_packed_bytes(const st_backend *be) { return be->pk_bytes; }
