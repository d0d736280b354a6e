/* bench_cpu_matmul — the CPU matmul kernels against this machine's limits,
 * measured in the same run (the kernel lab behind bench/cpu_vs_llamacpp.sh):
 *
 *   bench_cpu_matmul [--threads N] [--dtype all|f16,q8_0,...] [--reps R] [--gemv-mib M]
 *                    [--tokens T] [--isa avx512|avx2|portable] [--json FILE]
 *                    [--min-gemv F] [--min-gemm F]
 *
 * Limits (N threads):
 *   read   streaming read of a 1 GiB array on huge pages, as the packed weights
 *          (SIMD loads, 4 accumulators), GB/s
 *   fma    fp32 FMA peak: every thread runs 12 independent FMA chains in
 *          registers (zmm with AVX-512, ymm otherwise), GFLOP/s
 * Kernels, through the CPU backend (its thread pool and scratch; the weights
 * imported as the engine imports them, so quantized ones run packed), per dtype:
 *   gemv   decode: 1 token x (4864 x 896) matrices, a set of --gemv-mib MiB
 *          rotated so every call streams its weights from DRAM; weight GB/s and
 *          the fraction of the read bandwidth: "of read" against the best read
 *          of the run, "paired" the best over the reps of a GEMV against the
 *          better of the two reads measured right before and after it (the
 *          dev box's two vCPUs read 34-36 GB/s or 59-61 GB/s together,
 *          switching every few seconds, so the best read of a run may come
 *          from the other state than a kernel's best rep)
 *   gemm   prefill: T tokens (default 128) x (4864 x E) and (E x 4864), E = 896
 *          (1024 for the K types, which need whole 256-column blocks);
 *          GFLOP/s (2 * rows * cols * T) and the fraction of the fma peak
 *   blas   (when built with a BLAS) cblas_sgemm on the same fp32 tiles with N
 *          threads, and whether its rows are batch invariant (a token alone
 *          gives the same bits as inside the batch)
 * Each limit and kernel is measured --reps times, interleaved, best kept.
 * --clock cpu (with --threads 1) times by the process's CPU time instead of
 * the wall clock: on a shared machine the time the thread was descheduled
 * then does not count (cache and memory contention still do).
 * Correctness inside: every dtype's GEMM and GEMV outputs equal the portable
 * path's on the same data bit for bit (exit 1 otherwise); --min-gemv /
 * --min-gemm fractions make a missed target exit 1 too. */
#include "base/base.h"
#include "devices/cpu/cpu-impl.h"
#include "devices/device.h"
#include "kernels/cpu/kernels_cpu.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef STRATA_BENCH_BLAS
#include <cblas.h>
#endif

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* ---- limits ---------------------------------------------------------------------- */

#define FMA_ITERS 20000000L

static bool g_cpu_clock;   /* --clock cpu: process CPU time (one thread) */

static double clk(void) {
    if (!g_cpu_clock) return st_time_s();
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#if defined(__x86_64__)
__attribute__((target("avx512f"), noinline)) static float fma_zmm(long n) {
    __m512 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(0.001f * (float)i);
    const __m512 b = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(1e-6f);
    for (long i = 0; i < n; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) a[j] = _mm512_fmadd_ps(a[j], b, c);
    }
    __m512 s = a[0];
    for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, a[j]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"), noinline)) static float fma_ymm(long n) {
    __m256 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(0.001f * (float)i);
    const __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-6f);
    for (long i = 0; i < n; i++) {
#pragma GCC unroll 12
        for (int j = 0; j < 12; j++) a[j] = _mm256_fmadd_ps(a[j], b, c);
    }
    float t[8], s = 0;
    for (int j = 0; j < 12; j++) {
        _mm256_storeu_ps(t, a[j]);
        s += t[0];
    }
    return s;
}

__attribute__((target("avx512f"), noinline)) static uint64_t read_zmm(const uint8_t *p, size_t n) {
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 256 <= n; i += 256) {
        s0 = _mm512_add_epi64(s0, _mm512_load_si512(p + i));
        s1 = _mm512_add_epi64(s1, _mm512_load_si512(p + i + 64));
        s2 = _mm512_add_epi64(s2, _mm512_load_si512(p + i + 128));
        s3 = _mm512_add_epi64(s3, _mm512_load_si512(p + i + 192));
    }
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3)));
}

__attribute__((target("avx2"), noinline)) static uint64_t read_ymm(const uint8_t *p, size_t n) {
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        s0 = _mm256_add_epi64(s0, _mm256_load_si256((const __m256i *)(p + i)));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3)));
    return t[0] + t[1] + t[2] + t[3];
}
#endif

static float fma_scalar(long n) {
    float a[12];
    for (int i = 0; i < 12; i++) a[i] = 0.001f * (float)i;
    for (long i = 0; i < n; i++)
        for (int j = 0; j < 12; j++) a[j] = fmaf(a[j], 0.9999f, 1e-6f);
    float s = 0;
    for (int j = 0; j < 12; j++) s += a[j];
    return s;
}

static uint64_t read_scalar(const uint8_t *p, size_t n) {
    const uint64_t *q = (const uint64_t *)p;
    uint64_t s = 0;
    for (size_t i = 0; i < n / 8; i++) s += q[i];
    return s;
}

struct lim_job {
    int op;                 /* 0 fma, 1 read */
    int cpu;                /* CPU to bind to, -1 none */
    st_cpu_isa isa;
    const uint8_t *p;
    size_t n;
    double sink;
};

static void *lim_thread(void *arg) {
    struct lim_job *j = arg;
    if (j->cpu >= 0) {   /* one thread per allowed CPU, as the backend's pool binds its workers */
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(j->cpu, &one);
        (void)pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    }
#if defined(__x86_64__)
    if (j->isa == ST_CPU_ISA_AVX512) j->sink = j->op == 0 ? fma_zmm(FMA_ITERS) : (double)read_zmm(j->p, j->n);
    else if (j->isa == ST_CPU_ISA_AVX2) j->sink = j->op == 0 ? fma_ymm(FMA_ITERS) : (double)read_ymm(j->p, j->n);
    else
#endif
        j->sink = j->op == 0 ? fma_scalar(FMA_ITERS / 8) : (double)read_scalar(j->p, j->n);
    return NULL;
}

/* op 0: GFLOP/s of the FMA loop on every thread; op 1: GB/s of reading buf. */
static double limit(int op, int threads, st_cpu_isa isa, const uint8_t *buf, size_t bytes) {
    pthread_t th[256];
    struct lim_job jobs[256];
    cpu_set_t allowed;
    int cpus[256], n_cpus = 0;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
        for (int c = 0; c < CPU_SETSIZE && n_cpus < 256; c++)
            if (CPU_ISSET(c, &allowed)) cpus[n_cpus++] = c;
    double t0 = clk();
    for (int i = 0; i < threads; i++) {
        size_t lo = bytes / (size_t)threads * (size_t)i / 256 * 256;
        jobs[i] = (struct lim_job){op, threads <= n_cpus ? cpus[i] : -1, isa, buf + lo,
                                   bytes / (size_t)threads / 256 * 256, 0};
        pthread_create(&th[i], NULL, lim_thread, &jobs[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double dt = clk() - t0;
    if (op == 1) return (double)bytes / dt / 1e9;
    const double lanes = isa == ST_CPU_ISA_AVX512 ? 16 : isa == ST_CPU_ISA_AVX2 ? 8 : 1;
    const long iters = isa == ST_CPU_ISA_PORTABLE ? FMA_ITERS / 8 : FMA_ITERS;
    return 2.0 * lanes * 12.0 * (double)iters * threads / dt / 1e9;
}

/* ---- data ------------------------------------------------------------------------- */

static uint64_t rs = 0x243F6A8885A308D3ull;
static inline uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static inline float rndf(void) { return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }

/* Random weights of a dtype with valid, small scales (as the tests make them). */
static void fill_weights(st_dtype dt, uint8_t *w, int64_t rows, int64_t cols) {
    const size_t bytes = st_dtype_row_bytes(dt, cols) * (size_t)rows;
    if (dt == ST_DTYPE_F32) {
        for (int64_t i = 0; i < rows * cols; i++) ((float *)w)[i] = 0.05f * rndf();
        return;
    }
    if (dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16) {
        for (int64_t i = 0; i < rows * cols; i++)
            ((uint16_t *)w)[i] = dt == ST_DTYPE_F16 ? st_f32_to_f16(0.05f * rndf()) : st_f32_to_bf16(0.05f * rndf());
        return;
    }
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t r = rnd();
        memcpy(w + i, &r, 8);
    }
    const size_t bb = st_dtype_block_bytes(dt);
    for (size_t o = 0; o < bytes; o += bb) {
        uint16_t d = st_f32_to_f16(0.002f + 0.002f * fabsf(rndf())), m = st_f32_to_f16(0.001f * rndf());
        uint8_t *b = w + o;
        if (dt == ST_DTYPE_Q6_K) memcpy(b + 208, &d, 2);
        else memcpy(b, &d, 2);
        if (dt == ST_DTYPE_Q4_1 || dt == ST_DTYPE_Q5_1 || dt == ST_DTYPE_Q4_K || dt == ST_DTYPE_Q5_K) memcpy(b + 2, &m, 2);
    }
}

/* ---- kernels through the backend ----------------------------------------------------- */

struct result {
    st_dtype dt;
    double gemv_gbps, gemm_gflops[2];
    double gemv_paired;   /* best over the reps of the GEMV's GB/s / the better of the reads just before and after it */
    bool exact;
};

/* (rows, cols): gate/up and down of a Qwen2.5-0.5B-wide layer; the K types
 * need whole 256-column blocks, so their narrow side is 1024 */
static void shapes(st_dtype dt, int64_t sh[2][2]) {
    const int64_t e = st_dtype_block_elems(dt) == 256 ? 1024 : 896;
    sh[0][0] = 4864; sh[0][1] = e;
    sh[1][0] = e; sh[1][1] = 4864;
}

static st_status run_dtype(const struct st_device_ops *o, st_backend *be, st_dtype dt, int64_t n_tok, size_t gemv_bytes,
                           int reps, int threads, st_cpu_isa isa, const uint8_t *bwbuf, size_t bwbytes,
                           double *read_best, double *fma_best, struct result *r) {
    st_status s = ST_OK;
    int64_t SHAPES[2][2];
    shapes(dt, SHAPES);
    const int64_t R = SHAPES[0][0], C = SHAPES[0][1];
    const size_t mb = st_dtype_row_bytes(dt, C) * (size_t)R;
    const int nmat = (int)ST_MAX(1, gemv_bytes / mb);
    uint8_t *set = NULL;
    float *x = NULL, *y = NULL, *ref = NULL;
    r->dt = dt;
    r->exact = true;
    if (posix_memalign((void **)&set, 64, mb * (size_t)nmat) != 0) set = NULL;
    x = malloc(sizeof(float) * (size_t)(n_tok * 4864));
    y = malloc(sizeof(float) * (size_t)(n_tok * 4864));
    ref = malloc(sizeof(float) * (size_t)(n_tok * 4864));
    if (!set || !x || !y || !ref) { s = st_error_set(ST_ERR_NOMEM, "bench: out of memory for %s", st_dtype_name(dt)); goto done; }
    fill_weights(dt, set, R, C);
    for (int k = 1; k < nmat; k++) memcpy(set + (size_t)k * mb, set, mb);
    /* imported as weights, as the engine does: quantized matrices are packed on first use */
    void *dev = NULL;
    if ((s = o->import_host(be, set, mb * (size_t)nmat, ST_BUF_WEIGHTS, &dev)) != ST_OK) goto done;
    for (int64_t i = 0; i < n_tok * 4864; i++) x[i] = rndf();

    /* decode GEMV, interleaved with the read bandwidth (a first pass packs) */
    for (int k = 0; k < nmat; k++) {
        struct st_weight w = {set + (size_t)k * mb, dt, R, C};
        if ((s = o->matmul(be, &w, NULL, x, 1, y)) != ST_OK) goto done;
    }
    double rd = limit(1, threads, isa, bwbuf, bwbytes);   /* reads bracket every rep */
    *read_best = fmax(*read_best, rd);
    for (int rep = 0; rep < reps; rep++) {
        double t0 = clk();
        for (int k = 0; k < nmat; k++) {
            struct st_weight w = {set + (size_t)k * mb, dt, R, C};
            if ((s = o->matmul(be, &w, NULL, x, 1, y)) != ST_OK) goto done;
        }
        const double g = (double)mb * nmat / (clk() - t0) / 1e9, rd_after = limit(1, threads, isa, bwbuf, bwbytes);
        *read_best = fmax(*read_best, rd_after);
        r->gemv_gbps = fmax(r->gemv_gbps, g);
        r->gemv_paired = fmax(r->gemv_paired, g / fmax(rd, rd_after));
        rd = rd_after;
    }
    /* prefill GEMMs, interleaved with the FMA peak */
    for (int sh = 0; sh < 2; sh++) {
        const int64_t rows = SHAPES[sh][0], cols = SHAPES[sh][1];
        struct st_weight w = {set, dt, rows, cols};   /* same bytes, either shape */
        if ((s = o->matmul(be, &w, NULL, x, n_tok, y)) != ST_OK) goto done;   /* packs this shape */
        for (int rep = 0; rep < reps; rep++) {
            *fma_best = fmax(*fma_best, limit(0, threads, isa, NULL, 0));
            double t0 = clk();
            if ((s = o->matmul(be, &w, NULL, x, n_tok, y)) != ST_OK) goto done;
            r->gemm_gflops[sh] = fmax(r->gemm_gflops[sh], 2.0 * (double)(rows * cols * n_tok) / (clk() - t0) / 1e9);
        }
        /* the same product on the portable path: bit for bit (first 64 rows) */
        const int64_t rr = 64;
        float *part = malloc(sizeof(float) * (size_t)(n_tok * rows));
        if (!part) { s = st_error_set(ST_ERR_NOMEM, "bench: reference"); goto done; }
        st_cpu_kernels_force_portable(true);
        size_t sb = st_cpu_matmul_scratch_bytes(dt, cols, n_tok);
        void *scr = NULL;
        if (sb && posix_memalign(&scr, 64, sb) != 0) scr = NULL;
        st_cpu_matmul_prepare_part(dt, x, cols, n_tok, scr, 0, n_tok);
        s = st_cpu_matmul_part(w.data, dt, rows, cols, NULL, x, scr, NULL, n_tok, part, 0, rr);
        st_cpu_isa_force(isa);
        free(scr);
        if (s != ST_OK) { free(part); goto done; }
        for (int64_t t = 0; t < n_tok; t++)
            if (memcmp(part + t * rows, y + t * rows, sizeof(float) * (size_t)rr)) r->exact = false;
        free(part);
        if ((s = o->matmul(be, &w, NULL, x, 1, ref)) != ST_OK) goto done;   /* decode row == token 0 */
        if (memcmp(ref, y, sizeof(float) * (size_t)rows)) r->exact = false;
    }
done:
    free(set); free(x); free(y); free(ref);
    return s;
}

#ifdef STRATA_BENCH_BLAS
/* OpenBLAS/BLIS fp32 GEMM on the gemm shapes: best GFLOP/s, and whether a
 * token alone (sgemv) gives the same bits as inside the batch. */
static void run_blas(int64_t n_tok, int reps, int threads, double out[2], bool *invariant) {
    *invariant = true;
#ifdef STRATA_BENCH_OPENBLAS
    openblas_set_num_threads(threads);
#else
    (void)threads;   /* BLIS: BLIS_NUM_THREADS / OMP_NUM_THREADS */
#endif
    int64_t SHAPES[2][2];
    shapes(ST_DTYPE_F32, SHAPES);
    float *x = malloc(sizeof(float) * (size_t)(n_tok * 4864)), *w = malloc(sizeof(float) * 4864 * 896);
    float *y = malloc(sizeof(float) * (size_t)(n_tok * 4864)), *y1 = malloc(sizeof(float) * 4864);
    if (!x || !w || !y || !y1) goto done;
    for (int64_t i = 0; i < n_tok * 4864; i++) x[i] = rndf();
    for (int64_t i = 0; i < 4864 * 896; i++) w[i] = 0.05f * rndf();
    for (int sh = 0; sh < 2; sh++) {
        const int rows = (int)SHAPES[sh][0], cols = (int)SHAPES[sh][1];
        out[sh] = 0;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = clk();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n_tok, rows, cols, 1.0f, x, cols, w, cols, 0.0f, y, rows);
            out[sh] = fmax(out[sh], 2.0 * rows * cols * (double)n_tok / (clk() - t0) / 1e9);
        }
        for (int64_t t = 0; t < n_tok && *invariant; t += 17) {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, w, cols, x + t * cols, 1, 0.0f, y1, 1);
            if (memcmp(y1, y + t * rows, sizeof(float) * (size_t)rows)) *invariant = false;
        }
    }
done:
    free(x); free(w); free(y); free(y1);
}
#endif

/* ---- main ---------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    int threads = 0, reps = 5;
    int64_t n_tok = 128;
    size_t gemv_bytes = (size_t)512 << 20;
    const char *which = "all", *json_path = "cpu_matmul.json", *isa_name = NULL;
    double min_gemv = 0, min_gemm = 0;
    for (int i = 1; i < argc; i += 2) {   /* option, value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: bench_cpu_matmul [--threads N] [--dtype all|f16,q8_0,...] [--reps R] [--gemv-mib M]\n"
                   "                        [--tokens T] [--isa avx512|avx2|portable] [--json FILE]\n"
                   "                        [--min-gemv F] [--min-gemm F] [--clock wall|cpu]\n");
            return 0;
        }
        if (!v) { fprintf(stderr, "error: %s needs a value\nhint: bench_cpu_matmul --help\n", a); return 2; }
        if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--dtype")) which = v;
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--gemv-mib")) gemv_bytes = (size_t)atol(v) << 20;
        else if (!strcmp(a, "--tokens")) n_tok = atol(v);
        else if (!strcmp(a, "--isa")) isa_name = v;
        else if (!strcmp(a, "--json")) json_path = v;
        else if (!strcmp(a, "--min-gemv")) min_gemv = atof(v);
        else if (!strcmp(a, "--min-gemm")) min_gemm = atof(v);
        else if (!strcmp(a, "--clock") && (!strcmp(v, "wall") || !strcmp(v, "cpu"))) g_cpu_clock = !strcmp(v, "cpu");
        else { fprintf(stderr, "error: unknown option '%s'\nhint: bench_cpu_matmul --help\n", a); return 2; }
    }
    if (reps < 1 || n_tok < 1 || threads < 0 || gemv_bytes == 0) {
        fprintf(stderr, "error: --reps, --tokens and --gemv-mib must be >= 1, --threads >= 0\n");
        return 2;
    }
    if (g_cpu_clock && threads != 1) {
        fprintf(stderr, "error: --clock cpu times one thread\nhint: add --threads 1\n");
        return 2;
    }
    st_cpu_isa isa = st_cpu_isa_best();
    if (isa_name) {
        int k = -1;
        for (int i = 0; i < ST_CPU_ISA_COUNT; i++)
            if (!strncmp(isa_name, st_cpu_isa_name((st_cpu_isa)i), strlen(isa_name))) k = i;
        if (k < 0 || st_cpu_isa_force((st_cpu_isa)k) != ST_OK) {
            fprintf(stderr, "error: --isa %s: %s\n", isa_name, k < 0 ? "unknown level (avx512, avx2, portable)" : st_last_error());
            return 2;
        }
        isa = (st_cpu_isa)k;
    }

    const struct st_device_ops *o = st_device_ops_cpu();
    struct st_backend_config cfg = {.n_threads = threads};
    st_backend *be = NULL;
    if (o->init(NULL, &cfg, &be) != ST_OK) { fprintf(stderr, "error: %s\n", st_last_error()); return 1; }
    threads = st_cpu_backend_threads(be);

    const size_t bwbytes = (size_t)1 << 30;
    uint8_t *bwbuf = st_cpu_huge_alloc(bwbytes);   /* huge pages, as the backend keeps the packed weights */
    if (!bwbuf) { fprintf(stderr, "error: cannot allocate 1 GiB\n"); return 1; }
    memset(bwbuf, 1, bwbytes);

    struct result res[ST_DTYPE_COUNT];
    int n = 0, rc = 0;
    double read_best = 0, fma_best = 0;
    for (int dt = 0; dt < ST_DTYPE_COUNT; dt++) {
        const char *nm = st_dtype_name((st_dtype)dt);
        if (strcmp(which, "all")) {
            const char *p = strstr(which, nm);
            size_t l = strlen(nm);
            if (!p || (p != which && p[-1] != ',') || (p[l] != ',' && p[l] != 0)) continue;
        }
        fprintf(stderr, "%s ...\n", nm);
        memset(&res[n], 0, sizeof res[n]);
        if (run_dtype(o, be, (st_dtype)dt, n_tok, gemv_bytes, reps, threads, isa, bwbuf, bwbytes, &read_best, &fma_best,
                      &res[n]) != ST_OK) {
            fprintf(stderr, "error: %s\n", st_last_error());
            return 1;
        }
        if (!res[n].exact) { fprintf(stderr, "error: %s: differs from the portable path or across token counts\n", nm); rc = 1; }
        n++;
    }
    double blas[2] = {0, 0};
    bool blas_inv = false, have_blas = false;
#ifdef STRATA_BENCH_BLAS
    have_blas = true;
    run_blas(n_tok, reps, threads, blas, &blas_inv);
#endif
    st_cpu_huge_free(bwbuf, bwbytes);
    o->free(be);

    printf("bench_cpu_matmul: %s kernels, %d threads, %lld-token GEMM, commit %s\n", st_cpu_isa_name(isa), threads,
           (long long)n_tok, st_build_commit());
    printf("limits (best of %d, interleaved with the kernels): read %.2f GB/s, fp32 FMA peak %.1f GFLOP/s\n\n", reps,
           read_best, fma_best);
    printf("%-7s %12s %8s %8s %16s %16s %8s\n", "dtype", "gemv GB/s", "of read", "paired", "gemm 4864xE", "gemm Ex4864",
           "of fma");
    for (int k = 0; k < n; k++) {
        const double g = fmin(res[k].gemm_gflops[0], res[k].gemm_gflops[1]);
        printf("%-7s %12.2f %7.0f%% %7.0f%% %11.1f GF/s %11.1f GF/s %7.0f%%%s\n", st_dtype_name(res[k].dt), res[k].gemv_gbps,
               100 * res[k].gemv_gbps / read_best, 100 * res[k].gemv_paired, res[k].gemm_gflops[0], res[k].gemm_gflops[1],
               100 * g / fma_best,
               res[k].exact ? "" : "  NOT EXACT");
        if (min_gemv > 0 && res[k].gemv_gbps < min_gemv * read_best) {
            fprintf(stderr, "error: %s gemv reaches %.0f%% of the read bandwidth, below %.0f%%\n", st_dtype_name(res[k].dt),
                    100 * res[k].gemv_gbps / read_best, 100 * min_gemv);
            rc = 1;
        }
        if (min_gemm > 0 && g < min_gemm * fma_best) {
            fprintf(stderr, "error: %s gemm reaches %.0f%% of the fma peak, below %.0f%%\n", st_dtype_name(res[k].dt),
                    100 * g / fma_best, 100 * min_gemm);
            rc = 1;
        }
    }
    if (have_blas)
        printf("\nBLAS cblas_sgemm (fp32): %.1f / %.1f GF/s (%.0f%% of fma); a token alone equals the batch: %s\n",
               blas[0], blas[1], 100 * fmin(blas[0], blas[1]) / fma_best, blas_inv ? "yes" : "no (not batch invariant)");
    FILE *jf = fopen(json_path, "w");
    if (jf) {
        fprintf(jf, "{\"bench\":\"cpu_matmul\",\"commit\":\"%s\",\"isa\":\"%s\",\"threads\":%d,\"tokens\":%lld,"
                    "\"clock\":\"%s\",\"read_gbps\":%.3f,\"fma_gflops\":%.3f,\"results\":[",
                st_build_commit(), st_cpu_isa_name(isa), threads, (long long)n_tok, g_cpu_clock ? "cpu" : "wall",
                read_best, fma_best);
        for (int k = 0; k < n; k++)
            fprintf(jf, "%s{\"dtype\":\"%s\",\"gemv_gbps\":%.3f,\"gemv_of_read\":%.4f,\"gemv_of_read_paired\":%.4f,"
                        "\"gemm_gflops\":[%.3f,%.3f],"
                        "\"gemm_of_fma\":%.4f,\"exact\":%s}",
                    k ? "," : "", st_dtype_name(res[k].dt), res[k].gemv_gbps, res[k].gemv_gbps / read_best, res[k].gemv_paired,
                    res[k].gemm_gflops[0], res[k].gemm_gflops[1],
                    fmin(res[k].gemm_gflops[0], res[k].gemm_gflops[1]) / fma_best, res[k].exact ? "true" : "false");
        fprintf(jf, "]");
        if (have_blas)
            fprintf(jf, ",\"blas\":{\"gemm_gflops\":[%.3f,%.3f],\"batch_invariant\":%s}", blas[0], blas[1],
                    blas_inv ? "true" : "false");
        fprintf(jf, "}\n");
        fclose(jf);
        printf("\nJSON: %s\n", json_path);
    } else {
        fprintf(stderr, "warning: cannot write %s: %s\n", json_path, strerror(errno));
    }
    return rc;
}
