/* `strata inventory --probe` of the CPU (the CPU backend's probe hook,
 * devices/cpu/register.c): streaming bandwidth with the backend's own bound
 * thread pool (read, STREAM copy and triad over arrays far larger than the
 * last-level cache, counting bytes read + written), batch-1 GEMV per weight
 * dtype, a prefill GEMM and the cost of one tiny op, all through the CPU
 * backend's ops table. Best of N. */
#include "devices/cpu/cpu-impl.h"
#include "kernels/cpu/kernels_cpu.h"

#include <stdlib.h>
#include <string.h>

#define GEMV_COLS 4096          /* the hidden size of a 7B-class model */
#define LAUNCH_OPS 2000         /* tiny ops per launch-overhead sample */
#define GEMM_ROWS 1024          /* CPU prefill GEMM: (GEMM_ROWS x GEMV_COLS) weights ... */
#define GEMM_TOKENS 128         /* ... times GEMM_TOKENS tokens (a prefill chunk's order) */

/* ---- CPU: bandwidth ----------------------------------------------------------- */

enum bw_kernel { BW_INIT = 0, BW_READ, BW_COPY, BW_TRIAD };

struct bw_job {
    enum bw_kernel kernel;
    double *a, *b, *c;      /* (n) each */
    size_t n;
    uint64_t *sink;         /* (n_threads) read results, so the reads are not optimised away */
};

static void bw_task(void *arg, int ith, int nth) {
    struct bw_job *j = arg;
    size_t lo = j->n * (size_t)ith / (size_t)nth, hi = j->n * (size_t)(ith + 1) / (size_t)nth;
    double *restrict a = j->a, *restrict b = j->b, *restrict c = j->c;
    switch (j->kernel) {
    case BW_INIT:   /* first touch by the thread that will stream it: pages land on its NUMA node */
        for (size_t i = lo; i < hi; i++) { a[i] = 1.0; b[i] = 2.0; c[i] = 0.5; }
        break;
    case BW_READ: {
        /* integer sum: associative, so the compiler vectorises it freely */
        const uint64_t *restrict p = (const uint64_t *)a;
        uint64_t s = 0;
        for (size_t i = lo; i < hi; i++) s += p[i];
        j->sink[ith] += s;
        break;
    }
    case BW_COPY:
        for (size_t i = lo; i < hi; i++) c[i] = a[i];
        break;
    case BW_TRIAD:
        for (size_t i = lo; i < hi; i++) a[i] = b[i] + 3.0 * c[i];
        break;
    }
}

static uint64_t default_probe_bytes(const st_inventory *inv) {
    uint64_t b = 512ull << 20;
    if (2 * inv->llc_bytes > b) b = 2 * inv->llc_bytes;
    return b;
}

st_status st_cpu_stream_measure(const struct st_device_info *cpu, int n_threads, uint64_t bytes, int reps,
                                struct st_cpu_stream *out) {
    st_cpu_pool *pool = NULL;
    struct bw_job job = {0};
    memset(out, 0, sizeof *out);
    if (reps <= 0) reps = 1;
    st_status s = st_cpu_pool_init(n_threads, cpu->numa_node, cpu->cpuset, &pool);
    if (s != ST_OK) return st_error_prefix("cpu bandwidth");
    out->n_threads = st_cpu_pool_threads(pool);
    job.n = (size_t)(bytes / sizeof(double));
    /* on huge pages, as the CPU backend keeps its weights (devices/cpu/cpu-impl.h) */
    job.a = st_cpu_huge_alloc(job.n * sizeof(double));
    job.b = st_cpu_huge_alloc(job.n * sizeof(double));
    job.c = st_cpu_huge_alloc(job.n * sizeof(double));
    job.sink = calloc((size_t)out->n_threads, sizeof *job.sink);
    if (!job.n || !job.a || !job.b || !job.c || !job.sink) {
        char want[32];
        s = st_error_set(ST_ERR_NOMEM, "cpu bandwidth: cannot allocate 3 x %s for the bandwidth test",
                         st_format_bytes(bytes, want, sizeof want));
        st_error_hint("use smaller arrays ('inventory --probe-bytes', 'bench --bw-bytes')");
        goto done;
    }
    job.kernel = BW_INIT;
    st_cpu_pool_run(pool, bw_task, &job);
    static const struct { enum bw_kernel k; int arrays; } kernels[] = {{BW_READ, 1}, {BW_COPY, 2}, {BW_TRIAD, 3}};
    double best[3] = {0};
    for (size_t k = 0; k < ST_ARRAY_LEN(kernels); k++) {
        job.kernel = kernels[k].k;
        st_cpu_pool_run(pool, bw_task, &job);   /* warm-up */
        for (int r = 0; r < reps; r++) {
            double t0 = st_time_s();
            st_cpu_pool_run(pool, bw_task, &job);
            double dt = st_time_s() - t0;
            double gbps = (double)kernels[k].arrays * (double)job.n * sizeof(double) / dt / 1e9;
            if (gbps > best[k]) best[k] = gbps;
        }
    }
    out->read_gbps = best[0];
    out->copy_gbps = best[1];
    out->triad_gbps = best[2];
done:
    st_cpu_huge_free(job.a, job.n * sizeof(double));
    st_cpu_huge_free(job.b, job.n * sizeof(double));
    st_cpu_huge_free(job.c, job.n * sizeof(double));
    free(job.sink);
    st_cpu_pool_free(pool);
    return s;
}

static st_status probe_cpu_bandwidth(const struct st_device_info *cpu, const struct st_probe_options *opt,
                                     uint64_t bytes, int reps, struct st_profile_device *out, int *n_threads) {
    struct st_cpu_stream bw;
    st_status s = st_cpu_stream_measure(cpu, opt->n_threads, bytes, reps, &bw);
    if (s != ST_OK) return st_error_prefix("probe: cpu");
    *n_threads = bw.n_threads;
    ST_INFO("probe: cpu: read %.1f GB/s, copy %.1f GB/s, triad %.1f GB/s", bw.read_gbps, bw.copy_gbps, bw.triad_gbps);
    /* the best streaming rate the memory system reached (the planner's bandwidth);
     * decode's own rate per weight dtype is gemv_gbps */
    out->mem_bw_gbps = ST_MAX(bw.read_gbps, ST_MAX(bw.copy_gbps, bw.triad_gbps));
    out->read_gbps = bw.read_gbps;
    out->copy_gbps = bw.copy_gbps;
    out->triad_gbps = bw.triad_gbps;
    return ST_OK;
}

/* ---- CPU: GEMV, GEMM and one tiny op through the ops table ------------------------- */

/* Values in [1, 2) in each float dtype: no subnormals, no NaN, nothing that could make one path
 * faster. Quantized dtypes: codes and sub-block scales from a hash (the integer path's cost does
 * not depend on them), every block's f16 scale 2^-7 and min 2^-8, so no product is subnormal. */
static void fill_pattern(st_dtype dt, void *buf, size_t n_elems) {
    const int64_t be = st_dtype_block_elems(dt);
    if (be > 1) {
        const size_t bb = st_dtype_block_bytes(dt), n = n_elems / (size_t)be * bb;
        uint8_t *b = buf;
        for (size_t i = 0; i < n; i++) b[i] = (uint8_t)((i * 2654435761u) >> 13);
        const uint8_t d[2] = {0x00, 0x20}, m[2] = {0x00, 0x1c};   /* f16 2^-7, 2^-8, little-endian */
        const bool has_min = dt == ST_DTYPE_Q4_1 || dt == ST_DTYPE_Q5_1 || dt == ST_DTYPE_Q4_K || dt == ST_DTYPE_Q5_K;
        for (size_t o = 0; o < n; o += bb) {
            memcpy(b + o + (dt == ST_DTYPE_Q6_K ? bb - 2 : 0), d, 2);   /* Q6_K's d is its block's last field */
            if (has_min) memcpy(b + o + 2, m, 2);
        }
        return;
    }
    for (size_t i = 0; i < n_elems; i++) {
        unsigned v = (unsigned)(i * 2654435761u) >> 7;
        if (dt == ST_DTYPE_F32) ((uint32_t *)buf)[i] = 0x3F800000u | (v & 0x7FFFFFu);
        else if (dt == ST_DTYPE_F16) ((uint16_t *)buf)[i] = (uint16_t)(0x3C00u | (v & 0x3FFu));
        else ((uint16_t *)buf)[i] = (uint16_t)(0x3F80u | (v & 0x7Fu));
    }
}

/* The best time of one (rows x cols) dt weight times n_tok tokens, the way the
 * engine runs it: the weights are host memory handed over by import_host (the
 * engine's mmap'ed file), so the backend streams its packed copy, made on the
 * warm-up run, exactly as a stage does (memory from alloc is never packed:
 * that path is the slow fallback). A backend of its own per measurement, so
 * the packed copy is gone when it returns. */
static st_status probe_matmul(const struct st_device_info *cpu, const struct st_backend_config *cfg, st_dtype dt,
                              int64_t rows, int64_t cols, int64_t n_tok, int reps, double *best_s) {
    const struct st_device_ops *ops = st_device_ops_cpu();
    const size_t w_bytes = (size_t)rows * st_dtype_row_bytes(dt, cols);
    void *host = st_cpu_huge_alloc(w_bytes), *w = NULL, *x = NULL, *y = NULL;
    float *hx = malloc((size_t)(n_tok * cols) * sizeof(float));
    st_backend *be = NULL;
    st_status s = ST_OK;
    *best_s = 0;
    if (!host || !hx) { s = st_error_set(ST_ERR_NOMEM, "probe: out of host memory for %zu bytes of weights", w_bytes); goto done; }
    fill_pattern(dt, host, (size_t)(rows * cols));
    fill_pattern(ST_DTYPE_F32, hx, (size_t)(n_tok * cols));
    if ((s = ops->init(cpu, cfg, &be)) != ST_OK) goto done;
    if ((s = ops->import_host(be, host, w_bytes, ST_BUF_WEIGHTS, &w)) != ST_OK) goto done;
    if ((s = ops->alloc(be, (size_t)(n_tok * cols) * sizeof(float), ST_BUF_WORKSPACE, &x)) != ST_OK) goto done;
    if ((s = ops->alloc(be, (size_t)(n_tok * rows) * sizeof(float), ST_BUF_WORKSPACE, &y)) != ST_OK) goto done;
    if ((s = ops->upload(be, x, hx, (size_t)(n_tok * cols) * sizeof(float))) != ST_OK) goto done;
    struct st_weight wt = {.data = w, .dtype = dt, .rows = rows, .cols = cols};
    for (int r = 0; r <= reps; r++) {          /* r == 0 warms up (and packs) */
        double t0 = st_time_s();
        if ((s = ops->matmul(be, &wt, NULL, x, n_tok, y)) != ST_OK) goto done;
        if ((s = ops->sync(be)) != ST_OK) goto done;
        double t = st_time_s() - t0;
        if (r > 0 && (*best_s == 0 || t < *best_s)) *best_s = t;
    }
done:
    if (be) ops->free(be);   /* its buffers and the packed copy with it */
    st_cpu_huge_free(host, w_bytes);
    free(hx);
    return s;
}

/* batch-1 GEMV streaming `bytes` of dt weights: GB/s of weights */
static st_status probe_gemv(const struct st_device_info *cpu, const struct st_backend_config *cfg, st_dtype dt,
                            uint64_t bytes, int reps, double *out_gbps) {
    const int64_t cols = GEMV_COLS;
    const size_t row_bytes = st_dtype_row_bytes(dt, cols);
    const int64_t rows = ST_MAX((int64_t)(bytes / row_bytes), 1);
    double t;
    st_status s = probe_matmul(cpu, cfg, dt, rows, cols, 1, reps, &t);
    *out_gbps = s == ST_OK && t > 0 ? (double)rows * (double)row_bytes / t / 1e9 : 0;
    return s;
}

/* dt weights times GEMM_TOKENS tokens: the CPU's prefill rate (float weights: fp32 arithmetic;
 * quantized: 8-bit activations and integer dot products) */
static st_status probe_gemm(const struct st_device_info *cpu, const struct st_backend_config *cfg, st_dtype dt,
                            int reps, double *out_tflops) {
    double t;
    st_status s = probe_matmul(cpu, cfg, dt, GEMM_ROWS, GEMV_COLS, GEMM_TOKENS, reps, &t);
    *out_tflops = s == ST_OK && t > 0 ? 2.0 * GEMM_ROWS * GEMV_COLS * GEMM_TOKENS / t / 1e12 : 0;
    return s;
}

static st_status probe_launch(const struct st_device_ops *ops, st_backend *be, int reps, double *out_us) {
    st_status s = ST_OK;
    void *x = NULL, *y = NULL;
    float h[16] = {0};
    if ((s = ops->alloc(be, sizeof h, ST_BUF_WORKSPACE, &x)) != ST_OK) goto done;
    if ((s = ops->alloc(be, sizeof h, ST_BUF_WORKSPACE, &y)) != ST_OK) goto done;
    if ((s = ops->upload(be, x, h, sizeof h)) != ST_OK) goto done;
    if ((s = ops->upload(be, y, h, sizeof h)) != ST_OK) goto done;
    double best = 0;
    for (int r = 0; r <= reps; r++) {
        double t0 = st_time_s();
        for (int i = 0; i < LAUNCH_OPS; i++) {
            if ((s = ops->add(be, x, y, 16)) != ST_OK) goto done;
        }
        if ((s = ops->sync(be)) != ST_OK) goto done;
        double us = (st_time_s() - t0) / LAUNCH_OPS * 1e6;
        if (r > 0 && (best == 0 || us < best)) best = us;
    }
    *out_us = best;
done:
    if (y) ops->dealloc(be, y);
    if (x) ops->dealloc(be, x);
    return s;
}

st_status st_cpu_probe(const st_inventory *inv, int dev, const struct st_probe_options *opt,
                       struct st_profile_device *out) {
    const struct st_device_info *cpu = &inv->devices[dev];
    uint64_t bytes = opt->bytes ? opt->bytes : default_probe_bytes(inv);
    int reps = opt->reps > 0 ? opt->reps : 5, n_threads = 0;
    st_backend *be = NULL;
    const struct st_device_ops *ops = st_device_ops_cpu();
    out->kind = cpu->kind;
    snprintf(out->name, sizeof out->name, "%s", cpu->name);
    out->threads = cpu->threads;
    out->probe_bytes = bytes;

    st_status s = probe_cpu_bandwidth(cpu, opt, bytes, reps, out, &n_threads);
    if (s != ST_OK) return s;

    struct st_backend_config cfg = {.matmul_prec = ST_PREC_F32, .attention = ST_ATTN_EAGER,
                                    .kv_dtype = ST_DTYPE_F32, .n_threads = opt->n_threads};
    /* every dtype the backend runs (the rate index is the dtype), each at its own rate: the CPU
     * widens f16 and bf16 weights to fp32 in registers (its F16 GEMM runs 10-15 % under the f32
     * one on a Xeon with two FMA ports), and unpacks each quantized dtype its own way for the
     * integer path. A GEMM takes milliseconds: four times the runs, so that one of them meets a
     * quiet machine. */
    for (int k = 0; k < ST_N_RATES; k++) {
        const st_dtype dt = (st_dtype)k;
        const uint32_t runs = cpu->caps.weight_dtypes ? cpu->caps.weight_dtypes : ST_DTYPE_ALL;
        if (!(runs & ST_DTYPE_BIT(dt))) continue;
        if ((s = probe_gemv(cpu, &cfg, dt, bytes, reps, &out->gemv_gbps[k])) != ST_OK) goto done;
        if ((s = probe_gemm(cpu, &cfg, dt, 4 * reps, &out->gemm_tflops[k])) != ST_OK) goto done;
        ST_INFO("probe: cpu: %s: gemv %.1f GB/s, gemm %.3f TFLOP/s", st_dtype_name(dt), out->gemv_gbps[k],
                out->gemm_tflops[k]);
    }
    if ((s = ops->init(cpu, &cfg, &be)) != ST_OK) goto done;
    if ((s = probe_launch(ops, be, reps, &out->launch_us)) != ST_OK) goto done;
    ST_INFO("probe: cpu: one tiny op %.2f us", out->launch_us);
    snprintf(out->method, sizeof out->method, "ops:cpu %s, %d threads", st_cpu_kernels_simd(), n_threads);
done:
    ops->free(be);
    if (s != ST_OK) st_error_prefix("probe: cpu");
    return s;
}
