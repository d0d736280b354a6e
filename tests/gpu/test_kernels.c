/* Every CUDA op through the ops table against the CPU backend (the fp32
 * reference, st_device_ops_cpu()) on fresh random data, on three stage
 * configurations of the same GPU:
 *   bf16     matmul_prec BF16, flash attention (cc >= 8.0; eager below)
 *   f16      matmul_prec F16, flash attention (cc >= 8.0; eager below)
 *   maxwell  maxwell_path = true: fp32 math, eager attention, sm_52 code only
 * Tolerance is ||gpu - cpu|| / ||cpu|| (double): 1e-5 where the GPU computes
 * in fp32 over the same inputs, 5e-3 where bf16 enters the tensor cores
 * (6e-3 for flash attention, which rounds Q, K, V and P), 2e-3 where fp16
 * does (fp32 accumulation everywhere); tests/gpu/kernel_bound.py derives them. Outputs are poisoned
 * with NaN before every run; a NaN or an unwritten element never passes.
 * matmul_multi and matmul_swiglu (the grouped decode GEMVs) against the CPU
 * backend's matmul (and swiglu) per matrix, also captured in a graph.
 * Quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q4_K, Q5_K, Q6_K):
 * matmul (GEMV and GEMM, odd row counts; GEMMs over a whole matrix, in row
 * tiles and in column tiles),
 * matmul_multi (uniform and mixed dtypes) and matmul_swiglu (same and mixed
 * gate/up dtypes) on all three configurations, and a decode layer of a
 * Q4_K_M-like mix captured in a graph and replayed. Tolerances: the Maxwell
 * path (and every GEMV without dp4a) is fp32: 1e-5. The dp4a GEMV (cc >= 6.1,
 * not Maxwell) quantizes x to 8 bits per 32 elements: every output must lie
 * within sum_i |A_ri| d_b(i) / 2 of the CPU's (A: the weights without their
 * min term, d_b: max |x| of x's 32-element block / 127; kernels/cuda/quant.cuh)
 * plus 1e-5 sum |w x|. GEMMs on tensor cores round the dequantized weights and
 * x to bf16 (5e-3) or f16 (2e-3).
 * Also: argmax ties and NaN, seeded sampling against a brute-force host
 * implementation of the contract in devices/device.h, graph capture/replay
 * with positions read on the device, import_host, out-of-memory and bad-input
 * errors. Exit 77 (skip) when no GPU is visible, unless --require-gpu. */
#include "check.h"
#include "devices/device.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- random data ------------------------------------------------------------ */

static uint64_t rng_s = 0x2545F4914F6CDD1Dull;
static uint64_t rng_u64(void) {
    rng_s ^= rng_s >> 12; rng_s ^= rng_s << 25; rng_s ^= rng_s >> 27;
    return rng_s * 2685821657736338717ull;
}
static float rng_f(void) { return (float)((double)(rng_u64() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }
static float *rand_f32(int64_t n, float scale) {
    float *p = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = scale * rng_f();
    return p;
}

/* n elements of dtype t with random values of magnitude ~scale (valid scales in quant blocks) */
static void *rand_dtype(st_dtype t, int64_t n, float scale) {
    size_t bytes = st_dtype_row_bytes(t, n);
    uint8_t *p = malloc(bytes ? bytes : 1);
    if (t == ST_DTYPE_F32) { for (int64_t i = 0; i < n; i++) ((float *)p)[i] = scale * rng_f(); return p; }
    if (t == ST_DTYPE_F16) { for (int64_t i = 0; i < n; i++) ((uint16_t *)p)[i] = st_f32_to_f16(scale * rng_f()); return p; }
    if (t == ST_DTYPE_BF16) { for (int64_t i = 0; i < n; i++) ((uint16_t *)p)[i] = st_f32_to_bf16(scale * rng_f()); return p; }
    for (size_t i = 0; i < bytes; i++) p[i] = (uint8_t)rng_u64();
    const size_t bb = st_dtype_block_bytes(t);
    const size_t nb = bytes / bb;
    for (size_t b = 0; b < nb; b++) {
        uint8_t *blk = p + b * bb;
        uint16_t d = st_f32_to_f16(scale * (0.01f + 0.02f * fabsf(rng_f())));
        uint16_t m = st_f32_to_f16(scale * 0.01f * rng_f());
        size_t d_off = t == ST_DTYPE_Q6_K ? 208 : 0;
        memcpy(blk + d_off, &d, 2);
        if (t == ST_DTYPE_Q4_1 || t == ST_DTYPE_Q5_1 || t == ST_DTYPE_Q4_K || t == ST_DTYPE_Q5_K) memcpy(blk + 2, &m, 2);
    }
    return p;
}

/* ---- the GPU under test ------------------------------------------------------- */

struct gpu {
    const char *name;
    const struct st_device_ops *ops;
    st_backend *be;
    struct st_backend_config cfg;
    int cc_major;
    bool flash;          /* attention runs the tensor-core kernel */
    int cc_minor;
};

static const struct st_device_ops *cpu_ops;
static st_backend *cpu_be;
static bool g_fatal;

static void *gput(struct gpu *g, const void *h, size_t bytes) {
    void *d = NULL;
    st_status s = g->ops->alloc(g->be, bytes ? bytes : 4, ST_BUF_WORKSPACE, &d);
    if (s != ST_OK) { fprintf(stderr, "alloc: %s\n", st_last_error()); g_fatal = true; return NULL; }
    if (h && bytes) CHECK_OK(g->ops->upload(g->be, d, h, bytes));
    return d;
}
/* NaN-filled device buffer (0xff bytes: a quiet NaN in every float) */
static float *gpoison(struct gpu *g, size_t n_floats) {
    size_t bytes = n_floats * sizeof(float);
    uint8_t *h = malloc(bytes ? bytes : 4);
    memset(h, 0xff, bytes);
    float *d = gput(g, h, bytes);
    free(h);
    return d;
}
static void gget(struct gpu *g, void *h, const void *d, size_t bytes) { CHECK_OK(g->ops->download(g->be, h, d, bytes)); }
static void gfree(struct gpu *g, void *d) { g->ops->dealloc(g->be, d); }

/* ---- comparison ---------------------------------------------------------------- */

static int n_cases, n_failed_cases;

static void expect_close(struct gpu *g, const char *what, const float *out, const float *ref, int64_t n, double tol) {
    double num = 0.0, den = 0.0, maxabs = 0.0;
    int64_t nan_out = 0, first_nan = -1;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(out[i]) && !isnan(ref[i])) { if (first_nan < 0) first_nan = i; nan_out++; continue; }
        if (isnan(ref[i])) continue;
        const double d = (double)out[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
        if (fabs(d) > maxabs) maxabs = fabs(d);
    }
    const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    const bool ok = nan_out == 0 && rel <= tol && n > 0;
    n_cases++;
    if (!ok) n_failed_cases++;
    printf("%s %-8s %-52s rel %.2e (tol %.0e) max|d| %.2e%s\n", ok ? "ok  " : "FAIL", g->name, what, rel, tol, maxabs,
           nan_out ? " NaN/unwritten!" : "");
    if (nan_out) printf("     %lld NaN outputs, first at %lld\n", (long long)nan_out, (long long)first_nan);
    CHECK_MSG(ok, "%s %s: rel %.3e tol %.1e, %lld NaN", g->name, what, rel, tol, (long long)nan_out);
}

/* As expect_close, but an error within 1e-6 of mag (per output: sum_c |w_rc x_c|,
 * the scale of a dot product's rounding error; 16 fp32 ulps of it) also passes:
 * a row whose terms cancel to a small value is not held to tol of that value
 * (the CPU's and the GPU's summation orders differ). */
static void expect_close_mag(struct gpu *g, const char *what, const float *out, const float *ref, const double *mag,
                             int64_t n, double tol) {
    double den = 0.0, dm = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (!isnan(ref[i])) den += (double)ref[i] * (double)ref[i];
        dm += mag[i] * mag[i];
    }
    const double floor_rel = den > 0 ? 1e-6 * sqrt(dm / den) : 1e-6 * sqrt(dm);
    expect_close(g, what, out, ref, n, floor_rel > tol ? floor_rel : tol);
}

static void expect_equal_i(struct gpu *g, const char *what, int64_t got, int64_t want) {
    n_cases++;
    if (got != want) n_failed_cases++;
    printf("%s %-8s %-52s got %lld want %lld\n", got == want ? "ok  " : "FAIL", g->name, what, (long long)got, (long long)want);
    CHECK_MSG(got == want, "%s %s: got %lld want %lld", g->name, what, (long long)got, (long long)want);
}

/* ---- ops ----------------------------------------------------------------------- */

static void test_embed(struct gpu *g) {
    const st_dtype types[] = {ST_DTYPE_F32, ST_DTYPE_F16, ST_DTYPE_BF16, ST_DTYPE_Q8_0, ST_DTYPE_Q4_0, ST_DTYPE_Q4_1,
                              ST_DTYPE_Q5_0, ST_DTYPE_Q5_1, ST_DTYPE_IQ4_NL, ST_DTYPE_Q4_K, ST_DTYPE_Q5_K, ST_DTYPE_Q6_K};
    const int64_t V = 1000, E = 512, T = 7;
    for (size_t k = 0; k < ST_ARRAY_LEN(types); k++) {
        const st_dtype t = types[k];
        void *tab = rand_dtype(t, V * E, 1.0f);
        int32_t ids[7];
        for (int i = 0; i < T; i++) ids[i] = (int32_t)(rng_u64() % V);
        ids[T - 1] = (int32_t)(V - 1);
        float *ref = malloc(sizeof(float) * T * E), *out = malloc(sizeof(float) * T * E);
        struct st_weight wc = {tab, t, V, E};
        CHECK_OK(cpu_ops->embed(cpu_be, &wc, ids, T, ref));
        void *dtab = gput(g, tab, st_dtype_row_bytes(t, V * E));
        int32_t *dids = gput(g, ids, sizeof ids);
        float *dout = gpoison(g, (size_t)(T * E));
        struct st_weight wg = {dtab, t, V, E};
        CHECK_OK(g->ops->embed(g->be, &wg, dids, T, dout));
        gget(g, out, dout, sizeof(float) * T * E);
        char what[96];
        snprintf(what, sizeof what, "embed %s %lldx%lld t=%lld", st_dtype_name(t), (long long)V, (long long)E, (long long)T);
        expect_close(g, what, out, ref, T * E, 1e-5);
        gfree(g, dtab); gfree(g, dids); gfree(g, dout);
        free(tab); free(ref); free(out);
    }
    /* an id outside the vocabulary: NaN row and an error at the next sync */
    {
        void *tab = rand_dtype(ST_DTYPE_F32, 16 * 64, 1.0f);
        int32_t ids[2] = {3, 16};
        void *dtab = gput(g, tab, 16 * 64 * 4);
        int32_t *dids = gput(g, ids, sizeof ids);
        float *dout = gpoison(g, 128);
        struct st_weight wg = {dtab, ST_DTYPE_F32, 16, 64};
        CHECK_OK(g->ops->embed(g->be, &wg, dids, 2, dout));
        CHECK_ERR(g->ops->sync(g->be), ST_ERR_USAGE, "outside the vocabulary");
        CHECK_OK(g->ops->sync(g->be));   /* reported once */
        gfree(g, dtab); gfree(g, dids); gfree(g, dout);
        free(tab);
    }
}

static void test_rmsnorm(struct gpu *g) {
    const int64_t shapes[][2] = {{5, 3584}, {28, 128}, {3, 896}, {2, 18944}, {1, 100}};
    for (size_t k = 0; k < ST_ARRAY_LEN(shapes); k++) {
        const int64_t R = shapes[k][0], N = shapes[k][1];
        float *x = rand_f32(R * N, 3.0f), *w = rand_f32(N, 1.0f);
        float *ref = malloc(sizeof(float) * R * N), *out = malloc(sizeof(float) * R * N);
        cpu_ops->rmsnorm(cpu_be, x, w, R, N, 1e-6f, ref);
        float *dx = gput(g, x, sizeof(float) * R * N), *dw = gput(g, w, sizeof(float) * N);
        float *dout = gpoison(g, (size_t)(R * N));
        CHECK_OK(g->ops->rmsnorm(g->be, dx, dw, R, N, 1e-6f, dout));
        gget(g, out, dout, sizeof(float) * R * N);
        char what[96];
        snprintf(what, sizeof what, "rmsnorm %lld rows x %lld", (long long)R, (long long)N);
        expect_close(g, what, out, ref, R * N, 1e-5);
        /* in place (x aliases out) */
        CHECK_OK(g->ops->rmsnorm(g->be, dx, dw, R, N, 1e-6f, dx));
        gget(g, out, dx, sizeof(float) * R * N);
        snprintf(what, sizeof what, "rmsnorm %lld rows x %lld in place", (long long)R, (long long)N);
        expect_close(g, what, out, ref, R * N, 1e-5);
        gfree(g, dx); gfree(g, dw); gfree(g, dout);
        free(x); free(w); free(ref); free(out);
    }
}

/* the tolerance the stage's matmul path earns */
static double matmul_tol(const struct gpu *g, st_dtype t, int64_t n_tok) {
    if (n_tok <= 8 || t == ST_DTYPE_F32 || g->cfg.maxwell_path) return 1e-5;
    if (t == ST_DTYPE_BF16 && g->cfg.matmul_prec == ST_PREC_BF16 && g->cc_major >= 8) return 5e-3;
    if (t == ST_DTYPE_F16 && g->cfg.matmul_prec == ST_PREC_F16 && g->cc_major >= 7) return 2e-3;
    return 1e-5;
}

static void test_matmul(struct gpu *g) {
    /* rows, cols, tokens: decode GEMV shapes of a 7B layer, the multi-token GEMV,
     * a column count that forces the scalar GEMV, and prefill GEMMs */
    const int64_t shapes[][3] = {{512, 3584, 1}, {3584, 3584, 1}, {2000, 18944, 1}, {1000, 1024, 3}, {777, 640, 8},
                                 {300, 1000, 2}, {301, 1003, 1}, {256, 512, 37}, {1000, 3584, 64}, {96, 200, 9}};
    const st_dtype types[] = {ST_DTYPE_F32, ST_DTYPE_F16, ST_DTYPE_BF16};
    for (size_t k = 0; k < ST_ARRAY_LEN(shapes); k++) {
        const int64_t R = shapes[k][0], C = shapes[k][1], T = shapes[k][2];
        for (size_t ti = 0; ti < ST_ARRAY_LEN(types); ti++) {
            const st_dtype t = types[ti];
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                if (with_bias && k % 2) continue;
                void *w = rand_dtype(t, R * C, 0.05f);
                float *x = rand_f32(T * C, 1.0f), *b = with_bias ? rand_f32(R, 1.0f) : NULL;
                float *ref = malloc(sizeof(float) * T * R), *out = malloc(sizeof(float) * T * R);
                struct st_weight wc = {w, t, R, C};
                CHECK_OK(cpu_ops->matmul(cpu_be, &wc, b, x, T, ref));
                void *dw = gput(g, w, st_dtype_row_bytes(t, R * C));
                float *dx = gput(g, x, sizeof(float) * T * C), *db = b ? gput(g, b, sizeof(float) * R) : NULL;
                float *dy = gpoison(g, (size_t)(T * R));
                struct st_weight wg = {dw, t, R, C};
                CHECK_OK(g->ops->matmul(g->be, &wg, db, dx, T, dy));
                gget(g, out, dy, sizeof(float) * T * R);
                char what[96];
                snprintf(what, sizeof what, "matmul %s %lldx%lld t=%lld%s", st_dtype_name(t), (long long)R, (long long)C,
                         (long long)T, b ? " +bias" : "");
                expect_close(g, what, out, ref, T * R, matmul_tol(g, t, T));
                if (T == 1 && with_bias && g->ops->matmul_adds_in_place) {
                    /* bias == y: y += W x in place (the engine's residual); the CPU's y = W x + b is the reference */
                    float *dr = gput(g, b, sizeof(float) * R);
                    CHECK_OK(g->ops->matmul(g->be, &wg, dr, dx, 1, dr));
                    gget(g, out, dr, sizeof(float) * R);
                    snprintf(what, sizeof what, "matmul %s %lldx%lld t=1 in place", st_dtype_name(t), (long long)R,
                             (long long)C);
                    expect_close(g, what, out, ref, R, matmul_tol(g, t, 1));
                    gfree(g, dr);
                }
                gfree(g, dw); gfree(g, dx); gfree(g, db); gfree(g, dy);
                free(w); free(x); free(b); free(ref); free(out);
            }
        }
    }
}

/* matmul_add (y += x W^T + b) against the same GPU's matmul and a host add:
 * the GEMV epilogue (one token), the GEMV and an add (a few), the GEMM
 * accumulating in y (more), every path's weight types, with and without bias. */
static void test_matmul_add(struct gpu *g) {
    if (!g->ops->matmul_add) return;
    const int64_t shapes[][3] = {{3584, 3584, 1}, {513, 1024, 1}, {777, 512, 4}, {1000, 3584, 16}, {301, 512, 40}, {96, 256, 9}};
    const st_dtype types[] = {ST_DTYPE_F32, ST_DTYPE_F16, ST_DTYPE_BF16, ST_DTYPE_Q8_0, ST_DTYPE_Q4_K};
    for (size_t k = 0; k < ST_ARRAY_LEN(shapes); k++)
        for (size_t ti = 0; ti < ST_ARRAY_LEN(types); ti++)
            for (int with_bias = 0; with_bias < 2; with_bias++) {
                const int64_t R = shapes[k][0], C = shapes[k][1], T = shapes[k][2];
                const st_dtype t = types[ti];
                void *w = rand_dtype(t, R * C, 0.05f);
                float *x = rand_f32(T * C, 1.0f), *y0 = rand_f32(T * R, 1.0f), *b = with_bias ? rand_f32(R, 1.0f) : NULL;
                float *ref = malloc(sizeof(float) * T * R), *out = malloc(sizeof(float) * T * R);
                void *dw = gput(g, w, st_dtype_row_bytes(t, R * C));
                float *dx = gput(g, x, sizeof(float) * T * C), *db = b ? gput(g, b, sizeof(float) * R) : NULL;
                float *dh = gpoison(g, (size_t)(T * R)), *dy = gput(g, y0, sizeof(float) * T * R);
                struct st_weight wg = {dw, t, R, C};
                CHECK_OK(g->ops->matmul(g->be, &wg, db, dx, T, dh));
                gget(g, ref, dh, sizeof(float) * T * R);
                for (int64_t i = 0; i < T * R; i++) ref[i] += y0[i];
                CHECK_OK(g->ops->matmul_add(g->be, &wg, db, dx, T, dy));
                gget(g, out, dy, sizeof(float) * T * R);
                char what[96];
                snprintf(what, sizeof what, "matmul_add %s %lldx%lld t=%lld%s", st_dtype_name(t), (long long)R, (long long)C,
                         (long long)T, b ? " +bias" : "");
                expect_close(g, what, out, ref, T * R, 1e-5);
                gfree(g, dw); gfree(g, dx); gfree(g, db); gfree(g, dh); gfree(g, dy);
                free(w); free(x); free(y0); free(b); free(ref); free(out);
            }
}

/* GEMMs of one x back to back share its 16-bit conversion (the scratch keeps
 * it): the same bits as when each converts x itself (an upload between them
 * makes the backend forget it); after a product written over its own x (y ==
 * x, a square W) the next GEMM of x reads the new x. */
static void test_gemm_shared_x(struct gpu *g) {
    const st_dtype types[] = {ST_DTYPE_BF16, ST_DTYPE_F16, ST_DTYPE_Q8_0};
    const int64_t T = 16, C = 1024, rows[3] = {1024, 256, 256};
    for (size_t ti = 0; ti < ST_ARRAY_LEN(types); ti++) {
        const st_dtype t = types[ti];
        void *w[3], *dw[3];
        float *dy[3], *dr[3];
        struct st_weight wg[3];
        for (int i = 0; i < 3; i++) {
            w[i] = rand_dtype(t, rows[i] * C, 0.05f);
            dw[i] = gput(g, w[i], st_dtype_row_bytes(t, rows[i] * C));
            wg[i] = (struct st_weight){dw[i], t, rows[i], C};
            dy[i] = gpoison(g, (size_t)(T * rows[i]));
            dr[i] = gpoison(g, (size_t)(T * rows[i]));
        }
        float *x = rand_f32(T * C, 1.0f);
        float *dx = gput(g, x, sizeof(float) * T * C);
        int32_t one = 1;
        int32_t *dtmp = gput(g, &one, sizeof one);
        for (int i = 0; i < 3; i++) {   /* each converting x: an upload in between */
            CHECK_OK(g->ops->upload(g->be, dtmp, &one, sizeof one));
            CHECK_OK(g->ops->matmul(g->be, &wg[i], NULL, dx, T, dr[i]));
        }
        for (int i = 0; i < 3; i++) CHECK_OK(g->ops->matmul(g->be, &wg[i], NULL, dx, T, dy[i]));
        bool same = true;
        for (int i = 0; i < 3; i++) {
            float *a = malloc(sizeof(float) * T * rows[i]), *c = malloc(sizeof(float) * T * rows[i]);
            gget(g, a, dy[i], sizeof(float) * T * rows[i]);
            gget(g, c, dr[i], sizeof(float) * T * rows[i]);
            same = same && memcmp(a, c, sizeof(float) * T * rows[i]) == 0;
            free(a); free(c);
        }
        char what[96];
        snprintf(what, sizeof what, "3 GEMMs of one x (%s, t=16): as 3 conversions", st_dtype_name(t));
        expect_equal_i(g, what, same, 1);
        float *nx = malloc(sizeof(float) * T * C), *a = malloc(sizeof(float) * T * rows[1]), *c = malloc(sizeof(float) * T * rows[1]);
        float *dnx = gput(g, x, sizeof(float) * T * C);
        /* y = x W^T written over x (y == x), then the next GEMM of x must read the new x */
        CHECK_OK(g->ops->matmul(g->be, &wg[0], NULL, dx, T, dx));
        CHECK_OK(g->ops->matmul(g->be, &wg[1], NULL, dx, T, dr[1]));
        gget(g, nx, dx, sizeof(float) * T * C);
        CHECK_OK(g->ops->upload(g->be, dnx, nx, sizeof(float) * T * C));
        CHECK_OK(g->ops->matmul(g->be, &wg[1], NULL, dnx, T, dy[1]));
        gget(g, a, dy[1], sizeof(float) * T * rows[1]);
        gget(g, c, dr[1], sizeof(float) * T * rows[1]);
        snprintf(what, sizeof what, "GEMM after a product over its own x (%s, t=16)", st_dtype_name(t));
        expect_equal_i(g, what, memcmp(a, c, sizeof(float) * T * rows[1]) == 0, 1);
        free(nx); free(a); free(c); free(x);
        gfree(g, dx); gfree(g, dnx); gfree(g, dtmp);
        for (int i = 0; i < 3; i++) { gfree(g, dw[i]); gfree(g, dy[i]); gfree(g, dr[i]); free(w[i]); }
    }
}

/* true when the GUARD floats after n floats of dev are still the poison (0xff bytes) */
#define GUARD 64
static bool guard_intact(struct gpu *g, const float *dev, int64_t n) {
    uint32_t h[GUARD];
    gget(g, h, dev + n, sizeof h);
    for (int i = 0; i < GUARD; i++)
        if (h[i] != 0xffffffffu) return false;
    return true;
}

/* matmul_multi and matmul_swiglu (optional ops) against the CPU backend's
 * matmul (and swiglu) per matrix: groups of odd row counts, 1..4 matrices,
 * with and without biases, every weight dtype, decode and several-token
 * batches (GEMV), prefill batches (GEMM path), a column count that forces
 * the scalar kernel; outputs poisoned, a poisoned guard after each output
 * must survive. */
static void test_matmul_grouped(struct gpu *g) {
    if (!g->ops->matmul_multi || !g->ops->matmul_swiglu) {
        CHECK_MSG(false, "%s: the CUDA backend lacks matmul_multi/matmul_swiglu", g->name);
        return;
    }
    /* cols, tokens, rows of up to 4 matrices (0 = fewer matrices) */
    const int64_t cases[][6] = {{3584, 1, 3584, 512, 512, 0}, {3584, 1, 77, 513, 1, 0}, {1024, 3, 513, 77, 300, 129},
                                {640, 8, 777, 0, 0, 0},       {1003, 1, 301, 77, 0, 0}, {200, 2, 96, 33, 0, 0},
                                {512, 12, 256, 77, 0, 0},     {1003, 9, 65, 130, 0, 0}, {8, 1, 5, 3, 0, 0}};
    const st_dtype types[] = {ST_DTYPE_F32, ST_DTYPE_F16, ST_DTYPE_BF16};
    for (size_t ci = 0; ci < ST_ARRAY_LEN(cases); ci++) {
        const int64_t C = cases[ci][0], T = cases[ci][1];
        int n = 0;
        int64_t R[4];
        for (int i = 0; i < 4 && cases[ci][2 + i]; i++) R[n++] = cases[ci][2 + i];
        for (size_t ti = 0; ti < ST_ARRAY_LEN(types); ti++) {
            const st_dtype t = types[ti];
            const bool with_bias = (ci + ti) % 2 == 0;
            const double tol = matmul_tol(g, t, T);
            float *x = rand_f32(T * C, 1.0f), *dx = gput(g, x, sizeof(float) * T * C);
            void *w[4], *dw[4];
            float *b[4], *db[4], *dy[4], *ref[4], *out[4];
            struct st_weight wg[4];
            struct st_matmul_job jobs[4];
            for (int i = 0; i < n; i++) {
                w[i] = rand_dtype(t, R[i] * C, 0.05f);
                dw[i] = gput(g, w[i], st_dtype_row_bytes(t, R[i] * C));
                b[i] = with_bias && i != 1 ? rand_f32(R[i], 1.0f) : NULL;   /* job 1 never has a bias */
                db[i] = b[i] ? gput(g, b[i], sizeof(float) * R[i]) : NULL;
                dy[i] = gpoison(g, (size_t)(T * R[i] + GUARD));
                ref[i] = malloc(sizeof(float) * T * R[i]);
                out[i] = malloc(sizeof(float) * T * R[i]);
                struct st_weight wc = {w[i], t, R[i], C};
                CHECK_OK(cpu_ops->matmul(cpu_be, &wc, b[i], x, T, ref[i]));
                wg[i] = (struct st_weight){dw[i], t, R[i], C};
                jobs[i] = (struct st_matmul_job){&wg[i], db[i], dy[i]};
            }
            CHECK_OK(g->ops->matmul_multi(g->be, jobs, n, dx, T));
            bool guards = true;
            for (int i = 0; i < n; i++) {
                gget(g, out[i], dy[i], sizeof(float) * T * R[i]);
                guards = guards && guard_intact(g, dy[i], T * R[i]);
                char what[96];
                snprintf(what, sizeof what, "matmul_multi %s %d/%d: %lldx%lld t=%lld%s", st_dtype_name(t), i + 1, n,
                         (long long)R[i], (long long)C, (long long)T, b[i] ? " +bias" : "");
                float *wf = malloc(sizeof(float) * (size_t)(R[i] * C));
                double *mag = malloc(sizeof(double) * (size_t)(T * R[i]));
                CHECK_OK(st_dtype_to_f32(t, w[i], wf, R[i] * C));
                for (int64_t tt = 0; tt < T; tt++)
                    for (int64_t r = 0; r < R[i]; r++) {
                        double m = 0;
                        for (int64_t c = 0; c < C; c++) m += fabs((double)wf[r * C + c] * x[tt * C + c]);
                        mag[tt * R[i] + r] = m;
                    }
                expect_close_mag(g, what, out[i], ref[i], mag, T * R[i], tol);
                free(wf);
                free(mag);
            }
            char what[96];
            snprintf(what, sizeof what, "matmul_multi %s %lld cols t=%lld: guards intact", st_dtype_name(t), (long long)C,
                     (long long)T);
            expect_equal_i(g, what, guards, 1);

            /* gate = matrix 0, up = a second matrix of the same shape */
            if (n >= 1) {
                const int64_t F = R[0];
                void *wu = rand_dtype(t, F * C, 0.05f), *dwu = gput(g, wu, st_dtype_row_bytes(t, F * C));
                float *bu = with_bias ? rand_f32(F, 1.0f) : NULL, *dbu = bu ? gput(g, bu, sizeof(float) * F) : NULL;
                float *gate = ref[0], *up = malloc(sizeof(float) * T * F), *sref = malloc(sizeof(float) * T * F);
                struct st_weight wuc = {wu, t, F, C}, wug = {dwu, t, F, C};
                CHECK_OK(cpu_ops->matmul(cpu_be, &wuc, bu, x, T, up));
                CHECK_OK(cpu_ops->swiglu(cpu_be, gate, up, T * F, sref));
                float *dout = gpoison(g, (size_t)(T * F + GUARD));
                CHECK_OK(g->ops->matmul_swiglu(g->be, &wg[0], db[0], &wug, dbu, dx, T, dout));
                gget(g, out[0], dout, sizeof(float) * T * F);
                /* silu(g) * u carries the error of both products */
                snprintf(what, sizeof what, "matmul_swiglu %s %lldx%lld t=%lld%s", st_dtype_name(t), (long long)F,
                         (long long)C, (long long)T, b[0] ? " +gate bias" : "");
                expect_close(g, what, out[0], sref, T * F, tol > 1e-5 ? 2 * tol : tol);
                snprintf(what, sizeof what, "matmul_swiglu %s %lldx%lld t=%lld: guard intact", st_dtype_name(t),
                         (long long)F, (long long)C, (long long)T);
                expect_equal_i(g, what, guard_intact(g, dout, T * F), 1);
                gfree(g, dwu); gfree(g, dbu); gfree(g, dout);
                free(wu); free(bu); free(up); free(sref);
            }
            for (int i = 0; i < n; i++) {
                gfree(g, dw[i]); gfree(g, db[i]); gfree(g, dy[i]);
                free(w[i]); free(b[i]); free(ref[i]); free(out[i]);
            }
            gfree(g, dx);
            free(x);
        }
    }
    /* bad calls: an internal error naming the problem */
    {
        const int64_t C = 256;
        void *w = rand_dtype(ST_DTYPE_BF16, 64 * C, 0.05f), *dw = gput(g, w, st_dtype_row_bytes(ST_DTYPE_BF16, 64 * C));
        float *dx = gpoison(g, (size_t)C), *dy = gpoison(g, 256);
        struct st_weight a = {dw, ST_DTYPE_BF16, 64, C}, narrow = {dw, ST_DTYPE_BF16, 32, C / 2}, shorter = {dw, ST_DTYPE_BF16, 32, C};
        struct st_matmul_job jobs[5] = {{&a, NULL, dy}, {&narrow, NULL, dy + 64}, {&a, NULL, dy}, {&a, NULL, dy}, {&a, NULL, dy}};
        CHECK_ERR(g->ops->matmul_multi(g->be, jobs, 2, dx, 1), ST_ERR_INTERNAL, "columns");
        CHECK_ERR(g->ops->matmul_multi(g->be, jobs + 1, 0, dx, 1), ST_ERR_INTERNAL, "matrices");
        CHECK_ERR(g->ops->matmul_multi(g->be, jobs, ST_MATMUL_MULTI_MAX + 1, dx, 1), ST_ERR_INTERNAL, "matrices");
        CHECK_ERR(g->ops->matmul_swiglu(g->be, &a, NULL, &shorter, NULL, dx, 1, dy), ST_ERR_INTERNAL, "gate is 64 x 256");
        /* a row length that is not a whole number of blocks */
        struct st_weight q = {dw, ST_DTYPE_Q4_K, 8, 200};
        struct st_matmul_job qj[1] = {{&q, NULL, dy}};
        CHECK_ERR(g->ops->matmul_multi(g->be, qj, 1, dx, 1), ST_ERR_INTERNAL, "200 columns of q4_k");
        CHECK_ERR(g->ops->matmul_swiglu(g->be, &q, NULL, &q, NULL, dx, 1, dy), ST_ERR_INTERNAL, "200 columns of q4_k");
        CHECK_OK(g->ops->sync(g->be));
        gfree(g, dw); gfree(g, dx); gfree(g, dy);
        free(w);
    }
}

/* A decode layer's grouped products captured in a graph and replayed on new
 * input: the job table travels with the captured launch. */
static void test_matmul_grouped_graph(struct gpu *g) {
    const int64_t C = 512, Rq = 512, Rk = 64, F = 1000;
    void *wq = rand_dtype(ST_DTYPE_BF16, Rq * C, 0.05f), *wk = rand_dtype(ST_DTYPE_BF16, Rk * C, 0.05f);
    void *wgt = rand_dtype(ST_DTYPE_BF16, F * C, 0.05f), *wup = rand_dtype(ST_DTYPE_BF16, F * C, 0.05f);
    float *bq = rand_f32(Rq, 1.0f);
    struct st_weight cq = {wq, ST_DTYPE_BF16, Rq, C}, ck = {wk, ST_DTYPE_BF16, Rk, C};
    struct st_weight cg = {wgt, ST_DTYPE_BF16, F, C}, cu = {wup, ST_DTYPE_BF16, F, C};
    struct st_weight gq = {gput(g, wq, (size_t)(Rq * C) * 2), ST_DTYPE_BF16, Rq, C};
    struct st_weight gk = {gput(g, wk, (size_t)(Rk * C) * 2), ST_DTYPE_BF16, Rk, C};
    struct st_weight gg = {gput(g, wgt, (size_t)(F * C) * 2), ST_DTYPE_BF16, F, C};
    struct st_weight gu = {gput(g, wup, (size_t)(F * C) * 2), ST_DTYPE_BF16, F, C};
    float *dbq = gput(g, bq, sizeof(float) * Rq), *dx = gput(g, NULL, sizeof(float) * C);
    float *dq = gpoison(g, (size_t)Rq), *dk = gpoison(g, (size_t)Rk), *dff = gpoison(g, (size_t)F);
    const struct st_matmul_job jobs[2] = {{&gq, dbq, dq}, {&gk, NULL, dk}};
    CHECK_OK(g->ops->capture_begin(g->be));
    CHECK_OK(g->ops->matmul_multi(g->be, jobs, 2, dx, 1));
    CHECK_OK(g->ops->matmul_swiglu(g->be, &gg, NULL, &gu, NULL, dx, 1, dff));
    CHECK_OK(g->ops->capture_end(g->be));
    float *q = malloc(sizeof(float) * Rq), *k = malloc(sizeof(float) * Rk), *ff = malloc(sizeof(float) * F);
    float *rq = malloc(sizeof(float) * Rq), *rk = malloc(sizeof(float) * Rk);
    float *rg = malloc(sizeof(float) * F), *ru = malloc(sizeof(float) * F), *rff = malloc(sizeof(float) * F);
    for (int step = 0; step < 2; step++) {
        float *x = rand_f32(C, 1.0f);
        CHECK_OK(g->ops->upload(g->be, dx, x, sizeof(float) * C));
        CHECK_OK(g->ops->replay(g->be));
        gget(g, q, dq, sizeof(float) * Rq);
        gget(g, k, dk, sizeof(float) * Rk);
        gget(g, ff, dff, sizeof(float) * F);
        cpu_ops->matmul(cpu_be, &cq, bq, x, 1, rq);
        cpu_ops->matmul(cpu_be, &ck, NULL, x, 1, rk);
        cpu_ops->matmul(cpu_be, &cg, NULL, x, 1, rg);
        cpu_ops->matmul(cpu_be, &cu, NULL, x, 1, ru);
        cpu_ops->swiglu(cpu_be, rg, ru, F, rff);
        char what[96];
        snprintf(what, sizeof what, "graph replay %d: matmul_multi q (+bias)", step);
        expect_close(g, what, q, rq, Rq, 1e-5);
        snprintf(what, sizeof what, "graph replay %d: matmul_multi k", step);
        expect_close(g, what, k, rk, Rk, 1e-5);
        snprintf(what, sizeof what, "graph replay %d: matmul_swiglu", step);
        expect_close(g, what, ff, rff, F, 1e-5);
        free(x);
    }
    gfree(g, (void *)gq.data); gfree(g, (void *)gk.data); gfree(g, (void *)gg.data); gfree(g, (void *)gu.data);
    gfree(g, dbq); gfree(g, dx); gfree(g, dq); gfree(g, dk); gfree(g, dff);
    free(wq); free(wk); free(wgt); free(wup); free(bq);
    free(q); free(k); free(ff); free(rq); free(rk); free(rg); free(ru); free(rff);
}

/* ---- quantized weights ------------------------------------------------------------ */

static const st_dtype qtypes[] = {ST_DTYPE_Q8_0, ST_DTYPE_Q4_0, ST_DTYPE_Q4_1, ST_DTYPE_Q5_0, ST_DTYPE_Q5_1,
                                  ST_DTYPE_IQ4_NL, ST_DTYPE_Q4_K, ST_DTYPE_Q5_K, ST_DTYPE_Q6_K};

/* A quantized matrix on host and device, with what the checks need. */
struct qmat {
    st_dtype t;
    int64_t R, C;
    void *h;             /* blocks */
    float *w;            /* (R, C) dequantized (st_dtype_to_f32) */
    float *a;            /* (R, C) the same without the min term: what multiplies quantized x */
    void *d;             /* device copy of h */
};

static void qmat_make(struct gpu *g, struct qmat *m, st_dtype t, int64_t R, int64_t C) {
    m->t = t; m->R = R; m->C = C;
    m->h = rand_dtype(t, R * C, 0.05f);
    const size_t bytes = st_dtype_row_bytes(t, R * C), bb = st_dtype_block_bytes(t);
    m->w = malloc(sizeof(float) * (size_t)(R * C));
    m->a = malloc(sizeof(float) * (size_t)(R * C));
    CHECK_OK(st_dtype_to_f32(t, m->h, m->w, R * C));
    uint8_t *z = malloc(bytes);
    memcpy(z, m->h, bytes);
    if (t == ST_DTYPE_Q4_1 || t == ST_DTYPE_Q5_1 || t == ST_DTYPE_Q4_K || t == ST_DTYPE_Q5_K)
        for (size_t b = 0; b < bytes / bb; b++) z[b * bb + 2] = z[b * bb + 3] = 0;   /* m / dmin */
    CHECK_OK(st_dtype_to_f32(t, z, m->a, R * C));
    free(z);
    m->d = gput(g, m->h, bytes);
}
static void qmat_drop(struct gpu *g, struct qmat *m) {
    gfree(g, m->d);
    free(m->h); free(m->w); free(m->a);
}

/* The references of the quantized cases are the CPU backend's fp32 product
 * with the dequantized weights (qmat.w), not its quantized matmul: that one
 * rounds x to 8 bits per block for its integer dot products (docs/cpu-kernels.md),
 * an error of its own that the bounds below are not written against. */

/* true where the stage's decode GEMV takes the integer (dp4a) path */
static bool q_int8(const struct gpu *g, int64_t n_tok) {
    return n_tok <= 8 && !g->cfg.maxwell_path && (g->cc_major > 6 || (g->cc_major == 6 && g->cc_minor >= 1));
}
/* the tensor-core GEMM tolerance, 0 where the product is fp32 (compared at 1e-5) */
static double q_gemm_tol(const struct gpu *g, int64_t n_tok) {
    if (n_tok <= 8 || g->cfg.maxwell_path) return 0;
    if (g->cfg.matmul_prec == ST_PREC_BF16 && g->cc_major >= 8) return 5e-3;
    if (g->cfg.matmul_prec == ST_PREC_F16 && g->cc_major >= 7) return 2e-3;
    return 0;
}

/* lim[t][r]: how far the integer path may be from the exact product */
static void q_bound(const struct qmat *m, const float *x, int64_t T, float *lim) {
    const int64_t R = m->R, C = m->C, nb = C / 32;
    double *dh = malloc(sizeof(double) * (size_t)nb);
    for (int64_t t = 0; t < T; t++) {
        const float *xt = x + t * C;
        for (int64_t b = 0; b < nb; b++) {
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xt[32 * b + i]));
            dh[b] = (double)amax / 127.0 * 0.50005;
        }
        for (int64_t r = 0; r < R; r++) {
            const float *ar = m->a + r * C, *wr = m->w + r * C;
            double s = 0, sw = 0;
            for (int64_t b = 0; b < nb; b++) {
                double sa = 0;
                for (int i = 0; i < 32; i++) {
                    sa += fabs((double)ar[32 * b + i]);
                    sw += fabs((double)wr[32 * b + i] * xt[32 * b + i]);
                }
                s += sa * dh[b];
            }
            lim[t * R + r] = (float)(s + 1e-5 * sw + 1e-30);
        }
    }
    free(dh);
}

/* every |out - ref| <= lim (no NaN) */
static void expect_within(struct gpu *g, const char *what, const float *out, const float *ref, const float *lim, int64_t n) {
    int64_t bad = 0, first = -1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)out[i] - (double)ref[i]);
        if (isnan(out[i]) || d > lim[i]) { if (first < 0) first = i; bad++; }
        else if (d / lim[i] > worst) worst = d / lim[i];
    }
    const bool ok = bad == 0 && n > 0;
    n_cases++;
    if (!ok) n_failed_cases++;
    printf("%s %-8s %-52s worst |d|/bound %.2f%s\n", ok ? "ok  " : "FAIL", g->name, what, worst, bad ? " OUT OF BOUND" : "");
    if (bad) printf("     %lld outputs outside, first %lld: got %.6g want %.6g bound %.3g\n", (long long)bad, (long long)first,
                    out[first], ref[first], lim[first]);
    CHECK_MSG(ok, "%s %s: %lld outputs outside the bound", g->name, what, (long long)bad);
}

/* the check that applies to a product of m over x on this configuration */
static void q_expect(struct gpu *g, const char *what, const struct qmat *m, const float *x, int64_t T, const float *out,
                     const float *ref) {
    const int64_t n = T * m->R;
    if (q_int8(g, T)) {
        float *lim = malloc(sizeof(float) * (size_t)n);
        q_bound(m, x, T, lim);
        expect_within(g, what, out, ref, lim, n);
        free(lim);
        return;
    }
    const double tol = q_gemm_tol(g, T);
    expect_close(g, what, out, ref, n, tol > 0 ? tol : 1e-5);
}

static void test_matmul_quant(struct gpu *g) {
    /* rows, cols, tokens: odd rows, one to many windows, the multi-token
     * GEMV, GEMMs dequantizing the matrix whole, in tiles of whole rows (1100 x
     * 9216 exceeds the 18 MiB scratch of a 64-token stage) and in column tiles
     * (64 rows of 139264 columns exceed it: 8192 columns a tile, accumulated),
     * 32-element-only widths */
    const int64_t shapes[][3] = {{129, 256, 1},    {1001, 768, 1},    {513, 3584, 1}, {77, 1024, 3}, {300, 512, 2},
                                 {255, 2048, 8},   {33, 18944, 1},    {96, 256, 9},   {257, 4096, 37}, {700, 1536, 64},
                                 {1100, 9216, 12}, {65, 139264, 12}, {17, 96, 1},    {40, 160, 10},  {31, 32, 5},
                                 {17001, 256, 1},  {8707, 512, 1}};   /* 4 and 2 rows a warp group (one token) */
    for (size_t k = 0; k < ST_ARRAY_LEN(shapes); k++) {
        const int64_t R = shapes[k][0], C = shapes[k][1], T = shapes[k][2];
        for (size_t ti = 0; ti < ST_ARRAY_LEN(qtypes); ti++) {
            const st_dtype t = qtypes[ti];
            if (C % st_dtype_block_elems(t)) continue;
            const bool with_bias = (k + ti) % 2 == 0;
            struct qmat m;
            qmat_make(g, &m, t, R, C);
            float *x = rand_f32(T * C, 1.0f), *b = with_bias ? rand_f32(R, 1.0f) : NULL;
            if (k % 3 == 1) for (int64_t i = 0; i < T * C; i += 7) x[i] *= 30.0f;   /* outliers widen the x blocks */
            float *ref = malloc(sizeof(float) * T * R), *out = malloc(sizeof(float) * T * R);
            struct st_weight wc = {m.w, ST_DTYPE_F32, R, C};   /* exact fp32 product (see q_ref) */
            CHECK_OK(cpu_ops->matmul(cpu_be, &wc, b, x, T, ref));
            float *dx = gput(g, x, sizeof(float) * T * C), *db = b ? gput(g, b, sizeof(float) * R) : NULL;
            float *dy = gpoison(g, (size_t)(T * R + GUARD));
            struct st_weight wg = {m.d, t, R, C};
            CHECK_OK(g->ops->matmul(g->be, &wg, db, dx, T, dy));
            gget(g, out, dy, sizeof(float) * T * R);
            char what[96];
            snprintf(what, sizeof what, "matmul %s %lldx%lld t=%lld%s%s", st_dtype_name(t), (long long)R, (long long)C,
                     (long long)T, b ? " +bias" : "", q_int8(g, T) ? " dp4a" : "");
            q_expect(g, what, &m, x, T, out, ref);
            if (T == 1 && b && g->ops->matmul_adds_in_place) {   /* bias == y: y += W x in place */
                float *dr = gput(g, b, sizeof(float) * R);
                CHECK_OK(g->ops->matmul(g->be, &wg, dr, dx, 1, dr));
                gget(g, out, dr, sizeof(float) * R);
                snprintf(what, sizeof what, "matmul %s %lldx%lld t=1 in place%s", st_dtype_name(t), (long long)R,
                         (long long)C, q_int8(g, T) ? " dp4a" : "");
                q_expect(g, what, &m, x, T, out, ref);
                gfree(g, dr);
            }
            if (!guard_intact(g, dy, T * R)) {
                snprintf(what, sizeof what, "matmul %s %lldx%lld t=%lld: guard", st_dtype_name(t), (long long)R,
                         (long long)C, (long long)T);
                expect_equal_i(g, what, 0, 1);
            }
            gfree(g, dx); gfree(g, db); gfree(g, dy);
            free(x); free(b); free(ref); free(out);
            qmat_drop(g, &m);
        }
    }
}

/* rmsnorm then a quantized matmul of its output: on the integer path the
 * norm's launch quantizes the row for the matmul (once a matmul has quantized
 * an x). Checked against the CPU's norm and fp32 product within the integer
 * bound, for every consumer (matmul, matmul_multi, matmul_swiglu); and an op
 * between the norm and the matmul that changes the row (add) or the scratch (a
 * prefill GEMM) must not leave the matmul a stale quantization. */
static void test_rmsnorm_quant(struct gpu *g) {
    const int64_t R = 300, C = 1024;
    for (int T = 1; T <= 3; T += 2) {
        struct qmat m;
        qmat_make(g, &m, ST_DTYPE_Q4_K, R, C);
        float *x = rand_f32(T * C, 2.0f), *nw = rand_f32(C, 1.0f), *y = rand_f32(T * C, 1.0f);
        float *h = malloc(sizeof(float) * T * C), *h2 = malloc(sizeof(float) * T * C);
        float *ref = malloc(sizeof(float) * T * R), *ref2 = malloc(sizeof(float) * T * R);
        float *ref_sw = malloc(sizeof(float) * T * R), *out = malloc(sizeof(float) * T * R);
        cpu_ops->rmsnorm(cpu_be, x, nw, T, C, 1e-6f, h);
        for (int64_t i = 0; i < T * C; i++) h2[i] = h[i] + y[i];
        struct st_weight wc = {m.w, ST_DTYPE_F32, R, C};
        CHECK_OK(cpu_ops->matmul(cpu_be, &wc, NULL, h, T, ref));
        CHECK_OK(cpu_ops->matmul(cpu_be, &wc, NULL, h2, T, ref2));
        for (int64_t i = 0; i < T * R; i++) {
            const float gg = ref[i];
            ref_sw[i] = gg / (1.0f + expf(-gg)) * gg;   /* gate == up == W */
        }
        float *dx = gput(g, x, sizeof(float) * T * C), *dnw = gput(g, nw, sizeof(float) * C);
        float *dy = gput(g, y, sizeof(float) * T * C), *dh = gpoison(g, (size_t)(T * C));
        float *dout = gpoison(g, (size_t)(T * R));
        struct st_weight wg = {m.d, ST_DTYPE_Q4_K, R, C};
        CHECK_OK(g->ops->matmul(g->be, &wg, NULL, dx, T, dout));   /* a quantized matmul first: fusion on from here */
        char what[96];
        uint8_t *nan_bytes = malloc(sizeof(float) * T * R);
        memset(nan_bytes, 0xff, sizeof(float) * T * R);
        for (int consumer = 0; consumer < 3; consumer++) {
            CHECK_OK(g->ops->upload(g->be, dout, nan_bytes, sizeof(float) * T * R));   /* poisoned before the norm */
            CHECK_OK(g->ops->rmsnorm(g->be, dx, dnw, T, C, 1e-6f, dh));
            if (consumer == 0) {
                CHECK_OK(g->ops->matmul(g->be, &wg, NULL, dh, T, dout));
            } else if (consumer == 1) {
                const struct st_matmul_job j = {&wg, NULL, dout};
                CHECK_OK(g->ops->matmul_multi(g->be, &j, 1, dh, T));
            } else {
                CHECK_OK(g->ops->matmul_swiglu(g->be, &wg, NULL, &wg, NULL, dh, T, dout));
            }
            gget(g, out, dout, sizeof(float) * T * R);
            snprintf(what, sizeof what, "rmsnorm -> %s q4_k %lldx%lld t=%d",
                     consumer == 0 ? "matmul" : consumer == 1 ? "matmul_multi" : "matmul_swiglu", (long long)R, (long long)C, T);
            if (consumer < 2) {
                q_expect(g, what, &m, h, T, out, ref);
            } else {
                /* silu(g) g, gate == up: the bound of g carried through the epilogue */
                float *lim = malloc(sizeof(float) * T * R);
                if (q_int8(g, T)) {
                    q_bound(&m, h, T, lim);
                } else {   /* fp32 products: 1e-5 of sum |w h| */
                    for (int64_t t = 0; t < T; t++)
                        for (int64_t r = 0; r < R; r++) {
                            double a = 0;
                            for (int64_t c = 0; c < C; c++) a += fabs((double)m.w[r * C + c] * h[t * C + c]);
                            lim[t * R + r] = (float)(1e-5 * a + 1e-30);
                        }
                }
                /* |f(G + e) - f(G)| <= |e| (2 (|G| + |e|) + 0.5) for f(t) = silu(t) t */
                for (int64_t i = 0; i < T * R; i++)
                    lim[i] = lim[i] * (2.0f * (fabsf(ref[i]) + lim[i]) + 0.5f) + 1e-5f * fabsf(ref_sw[i]) + 1e-30f;
                expect_within(g, what, out, ref_sw, lim, T * R);
                free(lim);
            }
        }
        /* a prefill GEMM (its work in the scratch) between the norm and the matmul */
        {
            const int64_t TG = 20;   /* past the GEMV's 8 tokens: the GEMM */
            float *xg = rand_f32(TG * C, 1.0f);
            float *dxg = gput(g, xg, sizeof(float) * TG * C), *dyg = gpoison(g, (size_t)(TG * R));
            CHECK_OK(g->ops->upload(g->be, dout, nan_bytes, sizeof(float) * T * R));
            CHECK_OK(g->ops->rmsnorm(g->be, dx, dnw, T, C, 1e-6f, dh));
            CHECK_OK(g->ops->matmul(g->be, &wg, NULL, dxg, TG, dyg));
            CHECK_OK(g->ops->matmul(g->be, &wg, NULL, dh, T, dout));
            gget(g, out, dout, sizeof(float) * T * R);
            snprintf(what, sizeof what, "rmsnorm, %lld-token GEMM, matmul q4_k t=%d (fresh x)", (long long)TG, T);
            q_expect(g, what, &m, h, T, out, ref);
            gfree(g, dxg); gfree(g, dyg);
            free(xg);
        }
        /* the row changes between the norm and the matmul */
        CHECK_OK(g->ops->upload(g->be, dout, nan_bytes, sizeof(float) * T * R));
        free(nan_bytes);
        CHECK_OK(g->ops->rmsnorm(g->be, dx, dnw, T, C, 1e-6f, dh));
        CHECK_OK(g->ops->add(g->be, dh, dy, T * C));
        CHECK_OK(g->ops->matmul(g->be, &wg, NULL, dh, T, dout));
        gget(g, out, dout, sizeof(float) * T * R);
        snprintf(what, sizeof what, "rmsnorm, add, matmul q4_k %lldx%lld t=%d (fresh x)", (long long)R, (long long)C, T);
        q_expect(g, what, &m, h2, T, out, ref2);
        gfree(g, dx); gfree(g, dnw); gfree(g, dy); gfree(g, dh); gfree(g, dout);
        free(x); free(nw); free(y); free(h); free(h2); free(ref); free(ref2); free(ref_sw); free(out);
        qmat_drop(g, &m);
    }
}

/* matmul_multi over quantized jobs of one or several dtypes, and matmul_swiglu
 * with gate and up of one or two dtypes, decode (GEMV) and prefill (GEMM). */
static void test_matmul_quant_grouped(struct gpu *g) {
    struct mcase { int64_t C, T; int n; st_dtype t[4]; int64_t R[4]; };
    const struct mcase cases[] = {
        {3584, 1, 3, {ST_DTYPE_Q4_K, ST_DTYPE_Q4_K, ST_DTYPE_Q6_K}, {3584, 512, 512}},   /* Q4_K_M q/k/v */
        {1024, 1, 4, {ST_DTYPE_Q8_0, ST_DTYPE_Q4_0, ST_DTYPE_IQ4_NL, ST_DTYPE_Q5_1}, {129, 77, 300, 33}},
        {2048, 5, 2, {ST_DTYPE_Q5_K, ST_DTYPE_Q5_K}, {513, 65}},
        {512, 8, 3, {ST_DTYPE_Q4_1, ST_DTYPE_Q5_0, ST_DTYPE_Q4_1}, {96, 31, 255}},
        {768, 1, 2, {ST_DTYPE_Q6_K, ST_DTYPE_Q8_0}, {1001, 3}},
        {1024, 20, 3, {ST_DTYPE_Q4_K, ST_DTYPE_Q4_K, ST_DTYPE_Q6_K}, {256, 64, 64}},   /* prefill */
        /* tall groups: the direct kernel's four-row warp groups, the jobs' row counts not multiples of 4 */
        {512, 1, 2, {ST_DTYPE_Q4_K, ST_DTYPE_Q4_K}, {17003, 4229}},
        {256, 1, 3, {ST_DTYPE_Q5_K, ST_DTYPE_Q5_K, ST_DTYPE_Q5_K}, {9001, 3, 4099}},
        {256, 1, 2, {ST_DTYPE_Q8_0, ST_DTYPE_Q8_0}, {16999, 5}},   /* the window kernel's 4-row groups */
    };
    for (size_t ci = 0; ci < ST_ARRAY_LEN(cases); ci++) {
        const struct mcase *c = &cases[ci];
        const int64_t C = c->C, T = c->T;
        float *x = rand_f32(T * C, 1.0f), *dx = gput(g, x, sizeof(float) * T * C);
        struct qmat m[4];
        float *b[4], *db[4], *dy[4], *ref[4], *out[4];
        struct st_weight wg[4];
        struct st_matmul_job jobs[4];
        for (int i = 0; i < c->n; i++) {
            qmat_make(g, &m[i], c->t[i], c->R[i], C);
            b[i] = i != 1 ? rand_f32(c->R[i], 1.0f) : NULL;
            db[i] = b[i] ? gput(g, b[i], sizeof(float) * c->R[i]) : NULL;
            dy[i] = gpoison(g, (size_t)(T * c->R[i] + GUARD));
            ref[i] = malloc(sizeof(float) * T * c->R[i]);
            out[i] = malloc(sizeof(float) * T * c->R[i]);
            struct st_weight wc = {m[i].w, ST_DTYPE_F32, c->R[i], C};
            CHECK_OK(cpu_ops->matmul(cpu_be, &wc, b[i], x, T, ref[i]));
            wg[i] = (struct st_weight){m[i].d, c->t[i], c->R[i], C};
            jobs[i] = (struct st_matmul_job){&wg[i], db[i], dy[i]};
        }
        CHECK_OK(g->ops->matmul_multi(g->be, jobs, c->n, dx, T));
        bool guards = true;
        for (int i = 0; i < c->n; i++) {
            gget(g, out[i], dy[i], sizeof(float) * T * c->R[i]);
            guards = guards && guard_intact(g, dy[i], T * c->R[i]);
            char what[96];
            snprintf(what, sizeof what, "matmul_multi %s %d/%d: %lldx%lld t=%lld%s", st_dtype_name(c->t[i]), i + 1, c->n,
                     (long long)c->R[i], (long long)C, (long long)T, b[i] ? " +bias" : "");
            q_expect(g, what, &m[i], x, T, out[i], ref[i]);
        }
        char what[96];
        snprintf(what, sizeof what, "matmul_multi quant case %zu: guards intact", ci);
        expect_equal_i(g, what, guards, 1);
        for (int i = 0; i < c->n; i++) {
            qmat_drop(g, &m[i]);
            gfree(g, db[i]); gfree(g, dy[i]);
            free(b[i]); free(ref[i]); free(out[i]);
        }
        gfree(g, dx);
        free(x);
    }

    /* gate/up: every type with itself, and the mixes of Q4_K_M-like files */
    struct scase { st_dtype tg, tu; int64_t F, C, T; };
    struct scase sc[ST_ARRAY_LEN(qtypes) + 7];
    int n_sc = 0;
    for (size_t ti = 0; ti < ST_ARRAY_LEN(qtypes); ti++)
        sc[n_sc++] = (struct scase){qtypes[ti], qtypes[ti], ti % 2 ? 777 : 1000, ti % 3 ? 1024 : 2048, ti % 4 == 3 ? 4 : 1};
    sc[n_sc++] = (struct scase){ST_DTYPE_Q4_K, ST_DTYPE_Q6_K, 513, 1024, 1};
    sc[n_sc++] = (struct scase){ST_DTYPE_Q8_0, ST_DTYPE_Q4_K, 300, 512, 6};
    sc[n_sc++] = (struct scase){ST_DTYPE_Q4_K, ST_DTYPE_Q4_K, 1500, 1024, 24};   /* prefill */
    /* tall enough for the direct kernel's two-row warp groups (odd rows: the last group half empty) */
    sc[n_sc++] = (struct scase){ST_DTYPE_Q4_K, ST_DTYPE_Q4_K, 8711, 512, 1};
    sc[n_sc++] = (struct scase){ST_DTYPE_Q5_K, ST_DTYPE_Q5_K, 8711, 256, 1};
    /* and the window kernel's (2-byte-aligned types): 4 and 2 rows a warp group */
    sc[n_sc++] = (struct scase){ST_DTYPE_Q8_0, ST_DTYPE_Q8_0, 8711, 512, 1};
    sc[n_sc++] = (struct scase){ST_DTYPE_Q6_K, ST_DTYPE_Q6_K, 4001, 256, 1};
    for (int si = 0; si < n_sc; si++) {
        const struct scase *c = &sc[si];
        const int64_t F = c->F, C = c->C, T = c->T;
        struct qmat mg, mu;
        qmat_make(g, &mg, c->tg, F, C);
        qmat_make(g, &mu, c->tu, F, C);
        float *x = rand_f32(T * C, 1.0f), *bg = si % 2 ? rand_f32(F, 1.0f) : NULL, *bu = rand_f32(F, 1.0f);
        float *gr = malloc(sizeof(float) * T * F), *ur = malloc(sizeof(float) * T * F), *sref = malloc(sizeof(float) * T * F);
        float *out = malloc(sizeof(float) * T * F);
        struct st_weight gc = {mg.w, ST_DTYPE_F32, F, C}, uc = {mu.w, ST_DTYPE_F32, F, C};
        CHECK_OK(cpu_ops->matmul(cpu_be, &gc, bg, x, T, gr));
        CHECK_OK(cpu_ops->matmul(cpu_be, &uc, bu, x, T, ur));
        CHECK_OK(cpu_ops->swiglu(cpu_be, gr, ur, T * F, sref));
        float *dx = gput(g, x, sizeof(float) * T * C), *dbg = bg ? gput(g, bg, sizeof(float) * F) : NULL;
        float *dbu = gput(g, bu, sizeof(float) * F), *dout = gpoison(g, (size_t)(T * F + GUARD));
        struct st_weight gw = {mg.d, c->tg, F, C}, uw = {mu.d, c->tu, F, C};
        CHECK_OK(g->ops->matmul_swiglu(g->be, &gw, dbg, &uw, dbu, dx, T, dout));
        gget(g, out, dout, sizeof(float) * T * F);
        char what[96];
        snprintf(what, sizeof what, "matmul_swiglu %s/%s %lldx%lld t=%lld", st_dtype_name(c->tg), st_dtype_name(c->tu),
                 (long long)F, (long long)C, (long long)T);
        if (q_int8(g, T)) {
            /* silu(g) u moves by at most 1.1 |u| dg + |silu(g)| du + 1.1 dg du (silu' <= 1.1) */
            float *lg = malloc(sizeof(float) * T * F), *lu = malloc(sizeof(float) * T * F);
            q_bound(&mg, x, T, lg);
            q_bound(&mu, x, T, lu);
            for (int64_t i = 0; i < T * F; i++) {
                const double gv = gr[i], sg = gv / (1 + exp(-gv));
                lg[i] = (float)(1.1 * fabs(ur[i]) * lg[i] + fabs(sg) * lu[i] + 1.1 * (double)lg[i] * lu[i] + 1e-5 * fabs(sref[i]));
            }
            expect_within(g, what, out, sref, lg, T * F);
            free(lg); free(lu);
        } else {
            const double tol = q_gemm_tol(g, T);
            expect_close(g, what, out, sref, T * F, tol > 0 ? 2 * tol : 1e-5);
        }
        snprintf(what, sizeof what, "matmul_swiglu %s/%s t=%lld: guard intact", st_dtype_name(c->tg), st_dtype_name(c->tu),
                 (long long)T);
        expect_equal_i(g, what, guard_intact(g, dout, T * F), 1);
        gfree(g, dx); gfree(g, dbg); gfree(g, dbu); gfree(g, dout);
        free(x); free(bg); free(bu); free(gr); free(ur); free(sref); free(out);
        qmat_drop(g, &mg);
        qmat_drop(g, &mu);
    }
}

/* A Q4_K_M-like decode layer (q/k Q4_K, v Q6_K grouped; gate/up Q4_K fused;
 * down Q6_K) captured in a graph, replayed on new input: the quantized x and
 * every job table travel with the captured launches. */
static void test_matmul_quant_graph(struct gpu *g) {
    const int64_t C = 1024, Rq = 1024, Rkv = 256, F = 2816;
    struct qmat q, k, v, gt, up, dn;
    qmat_make(g, &q, ST_DTYPE_Q4_K, Rq, C);
    qmat_make(g, &k, ST_DTYPE_Q4_K, Rkv, C);
    qmat_make(g, &v, ST_DTYPE_Q6_K, Rkv, C);
    qmat_make(g, &gt, ST_DTYPE_Q4_K, F, C);
    qmat_make(g, &up, ST_DTYPE_Q4_K, F, C);
    qmat_make(g, &dn, ST_DTYPE_Q6_K, C, F);
    float *bq = rand_f32(Rq, 1.0f);
    float *dbq = gput(g, bq, sizeof(float) * Rq), *dx = gput(g, NULL, sizeof(float) * C), *dff_in = gput(g, NULL, sizeof(float) * F);
    float *dq = gpoison(g, (size_t)Rq), *dk = gpoison(g, (size_t)Rkv), *dv = gpoison(g, (size_t)Rkv);
    float *dff = gpoison(g, (size_t)F), *ddn = gpoison(g, (size_t)C);
    struct st_weight wq = {q.d, q.t, Rq, C}, wk = {k.d, k.t, Rkv, C}, wv = {v.d, v.t, Rkv, C};
    struct st_weight wgt = {gt.d, gt.t, F, C}, wup = {up.d, up.t, F, C}, wdn = {dn.d, dn.t, C, F};
    const struct st_matmul_job jobs[3] = {{&wq, dbq, dq}, {&wk, NULL, dk}, {&wv, NULL, dv}};
    CHECK_OK(g->ops->capture_begin(g->be));
    CHECK_OK(g->ops->matmul_multi(g->be, jobs, 3, dx, 1));
    CHECK_OK(g->ops->matmul_swiglu(g->be, &wgt, NULL, &wup, NULL, dx, 1, dff));
    CHECK_OK(g->ops->matmul(g->be, &wdn, NULL, dff_in, 1, ddn));
    CHECK_OK(g->ops->capture_end(g->be));
    const struct qmat *mats[6] = {&q, &k, &v, &gt, &up, &dn};
    for (int step = 0; step < 2; step++) {
        float *x = rand_f32(C, 1.0f), *xf = rand_f32(F, 2.0f);
        CHECK_OK(g->ops->upload(g->be, dx, x, sizeof(float) * C));
        CHECK_OK(g->ops->upload(g->be, dff_in, xf, sizeof(float) * F));
        CHECK_OK(g->ops->replay(g->be));
        float *outs[4] = {dq, dk, dv, ddn};
        const int idx[4] = {0, 1, 2, 5};
        for (int i = 0; i < 4; i++) {
            const struct qmat *m = mats[idx[i]];
            const float *xi = i == 3 ? xf : x;
            float *got = malloc(sizeof(float) * m->R), *ref = malloc(sizeof(float) * m->R);
            gget(g, got, outs[i], sizeof(float) * m->R);
            struct st_weight wc = {m->w, ST_DTYPE_F32, m->R, m->C};
            CHECK_OK(cpu_ops->matmul(cpu_be, &wc, i == 0 ? bq : NULL, xi, 1, ref));
            char what[96];
            snprintf(what, sizeof what, "graph replay %d: %s %s %lldx%lld", step, i == 3 ? "matmul" : "matmul_multi",
                     st_dtype_name(m->t), (long long)m->R, (long long)m->C);
            q_expect(g, what, m, xi, 1, got, ref);
            free(got); free(ref);
        }
        /* gate/up: compared after SwiGLU with the same composition bound */
        {
            float *got = malloc(sizeof(float) * F), *gr = malloc(sizeof(float) * F), *ur = malloc(sizeof(float) * F);
            float *sref = malloc(sizeof(float) * F);
            gget(g, got, dff, sizeof(float) * F);
            struct st_weight gc = {gt.w, ST_DTYPE_F32, F, C}, uc = {up.w, ST_DTYPE_F32, F, C};
            CHECK_OK(cpu_ops->matmul(cpu_be, &gc, NULL, x, 1, gr));
            CHECK_OK(cpu_ops->matmul(cpu_be, &uc, NULL, x, 1, ur));
            CHECK_OK(cpu_ops->swiglu(cpu_be, gr, ur, F, sref));
            char what[96];
            snprintf(what, sizeof what, "graph replay %d: matmul_swiglu q4_k", step);
            if (q_int8(g, 1)) {
                float *lg = malloc(sizeof(float) * F), *lu = malloc(sizeof(float) * F);
                q_bound(&gt, x, 1, lg);
                q_bound(&up, x, 1, lu);
                for (int64_t i = 0; i < F; i++) {
                    const double gv = gr[i], sg = gv / (1 + exp(-gv));
                    lg[i] = (float)(1.1 * fabs(ur[i]) * lg[i] + fabs(sg) * lu[i] + 1.1 * (double)lg[i] * lu[i] + 1e-5 * fabs(sref[i]));
                }
                expect_within(g, what, got, sref, lg, F);
                free(lg); free(lu);
            } else {
                expect_close(g, what, got, sref, F, 1e-5);
            }
            free(got); free(gr); free(ur); free(sref);
        }
        free(x); free(xf);
    }
    for (int i = 0; i < 6; i++) qmat_drop(g, (struct qmat *)mats[i]);
    gfree(g, dbq); gfree(g, dx); gfree(g, dff_in); gfree(g, dq); gfree(g, dk); gfree(g, dv); gfree(g, dff); gfree(g, ddn);
    free(bq);
}

static void test_rope(struct gpu *g) {
    const int64_t T = 5, H = 4, dims[] = {128, 64, 80};
    for (size_t di = 0; di < ST_ARRAY_LEN(dims); di++) {
        const int64_t D = dims[di];
        for (int layout = 0; layout < 2; layout++) {
            for (int ff = 0; ff < 2; ff++) {
                float *x = rand_f32(T * H * D, 2.0f);
                float *factors = NULL;
                if (ff) { factors = malloc(sizeof(float) * D / 2); for (int64_t i = 0; i < D / 2; i++) factors[i] = 1.0f + 7.0f * fabsf(rng_f()); }
                int32_t pos[5];
                for (int i = 0; i < T; i++) pos[i] = (int32_t)(rng_u64() % 32768);
                pos[0] = 0;
                float *ref = malloc(sizeof(float) * T * H * D), *out = malloc(sizeof(float) * T * H * D);
                memcpy(ref, x, sizeof(float) * T * H * D);
                struct st_rope_params rc = {1e6f, layout ? ST_ROPE_NORM : ST_ROPE_NEOX, factors};
                CHECK_OK(cpu_ops->rope(cpu_be, ref, T, H, D, pos, &rc));
                float *dx = gput(g, x, sizeof(float) * T * H * D);
                int32_t *dpos = gput(g, pos, sizeof pos);
                float *dff = factors ? gput(g, factors, sizeof(float) * D / 2) : NULL;
                struct st_rope_params rg = {1e6f, rc.layout, dff};
                CHECK_OK(g->ops->rope(g->be, dx, T, H, D, dpos, &rg));
                gget(g, out, dx, sizeof(float) * T * H * D);
                char what[96];
                snprintf(what, sizeof what, "rope %s D=%lld pos<32768%s", layout ? "norm" : "neox", (long long)D,
                         ff ? " freq_factors" : "");
                expect_close(g, what, out, ref, T * H * D, 1e-5);
                gfree(g, dx); gfree(g, dpos); gfree(g, dff);
                free(x); free(factors); free(ref); free(out);
            }
        }
    }
}

/* fills both caches identically with random values in dtype */
struct kv_pair { struct st_kv_layer cpu, gpu; void *hk, *hv; size_t bytes; };

static void kv_make_slots(struct gpu *g, struct kv_pair *p, st_dtype t, int64_t n_slots, int64_t n_ctx, int64_t Hkv,
                          int64_t D) {
    /* q8_0: |values| up to 1.14 like the float caches' (at scale 1 up to 3.8, a softmax so sharp that the
     * roundings outweigh a missed key: tests/gpu/kernel_bound.py) */
    const float scale = t == ST_DTYPE_Q8_0 ? 0.3f : 1.0f;
    p->bytes = st_dtype_row_bytes(t, n_slots * n_ctx * Hkv * D);
    p->hk = rand_dtype(t, n_slots * n_ctx * Hkv * D, scale);
    p->hv = rand_dtype(t, n_slots * n_ctx * Hkv * D, scale);
    p->cpu = (struct st_kv_layer){p->hk, p->hv, t, n_ctx, Hkv, D, n_slots};
    p->gpu = (struct st_kv_layer){gput(g, p->hk, p->bytes), gput(g, p->hv, p->bytes), t, n_ctx, Hkv, D, n_slots};
}
static void kv_make(struct gpu *g, struct kv_pair *p, st_dtype t, int64_t n_ctx, int64_t Hkv, int64_t D) {
    kv_make_slots(g, p, t, 1, n_ctx, Hkv, D);
}
static void kv_drop(struct gpu *g, struct kv_pair *p) {
    gfree(g, p->gpu.k); gfree(g, p->gpu.v);
    free(p->hk); free(p->hv);
}

static void test_kv_store(struct gpu *g) {
    const st_dtype types[] = {ST_DTYPE_F32, ST_DTYPE_F16, ST_DTYPE_BF16, ST_DTYPE_Q8_0};
    const int64_t n_ctx = 64, Hkv = 2, D = 128, T = 3;
    for (size_t ti = 0; ti < ST_ARRAY_LEN(types); ti++) {
        struct kv_pair p;
        kv_make(g, &p, types[ti], n_ctx, Hkv, D);
        float *k = rand_f32(T * Hkv * D, 3.0f), *v = rand_f32(T * Hkv * D, 3.0f);
        int32_t pos[3] = {5, 6, 63};
        CHECK_OK(cpu_ops->kv_store(cpu_be, &p.cpu, k, v, T, pos, NULL));
        float *dk = gput(g, k, sizeof(float) * T * Hkv * D), *dv = gput(g, v, sizeof(float) * T * Hkv * D);
        int32_t *dpos = gput(g, pos, sizeof pos);
        CHECK_OK(g->ops->kv_store(g->be, &p.gpu, dk, dv, T, dpos, NULL));
        uint8_t *hk = malloc(p.bytes), *hv = malloc(p.bytes);
        gget(g, hk, p.gpu.k, p.bytes);
        gget(g, hv, p.gpu.v, p.bytes);
        const bool same = memcmp(hk, p.hk, p.bytes) == 0 && memcmp(hv, p.hv, p.bytes) == 0;
        char what[96];
        snprintf(what, sizeof what, "kv_store %s: caches bit-identical", st_dtype_name(types[ti]));
        expect_equal_i(g, what, same, 1);
        /* a position past the cache: skipped, reported at the next sync */
        int32_t bad[1] = {64};
        CHECK_OK(g->ops->upload(g->be, dpos, bad, sizeof bad));
        CHECK_OK(g->ops->kv_store(g->be, &p.gpu, dk, dv, 1, dpos, NULL));
        CHECK_ERR(g->ops->sync(g->be), ST_ERR_USAGE, "context is full");
        gfree(g, dk); gfree(g, dv); gfree(g, dpos);
        free(k); free(v); free(hk); free(hv);
        kv_drop(g, &p);
    }
}

/* rope_kv_store against the three calls it replaces (rope of q, rope of k,
 * kv_store), on the GPU: the same q, k and cache bytes, bit for bit; each of
 * those is checked against the CPU backend above. One token with k right
 * after q in one buffer (the engine's decode step) and several tokens in
 * sequence slots (a batched step), every KV dtype, both layouts. */
static void test_rope_kv_store(struct gpu *g) {
    if (!g->ops->rope_kv_store) return;
    const st_dtype types[] = {ST_DTYPE_F32, ST_DTYPE_F16, ST_DTYPE_BF16, ST_DTYPE_Q8_0};
    const int64_t n_ctx = 48, n_slots = 3, H = 6, Hkv = 2, D = 128;
    for (size_t ti = 0; ti < ST_ARRAY_LEN(types); ti++)
        for (int layout = 0; layout < 2; layout++)
            for (int T = 1; T <= 5; T += 4) {
                struct kv_pair a, b;
                kv_make_slots(g, &a, types[ti], n_slots, n_ctx, Hkv, D);
                b = a;   /* a second device copy of the same caches */
                b.gpu.k = gput(g, a.hk, a.bytes);
                b.gpu.v = gput(g, a.hv, a.bytes);
                const int64_t nq = T * H * D, nk = T * Hkv * D;
                float *qk = rand_f32(nq + nk, 2.0f), *v = rand_f32(nk, 2.0f);
                float *factors = malloc(sizeof(float) * D / 2);
                for (int64_t i = 0; i < D / 2; i++) factors[i] = 1.0f + 3.0f * fabsf(rng_f());
                int32_t pos[5], slot[5];
                const int32_t p0 = (int32_t)(rng_u64() % n_ctx);   /* distinct rows: two tokens on one row would race */
                for (int i = 0; i < T; i++) { pos[i] = (int32_t)((p0 + 7 * i) % n_ctx); slot[i] = (int32_t)((i * 2 + 1) % n_slots); }
                float *d1 = gput(g, qk, sizeof(float) * (nq + nk)), *d2 = gput(g, qk, sizeof(float) * (nq + nk));
                float *dv = gput(g, v, sizeof(float) * nk), *dff = gput(g, factors, sizeof(float) * D / 2);
                int32_t *dpos = gput(g, pos, sizeof pos), *dslot = gput(g, slot, sizeof slot);
                const struct st_rope_params rp = {1e6f, layout ? ST_ROPE_NORM : ST_ROPE_NEOX, layout ? dff : NULL};
                /* the three calls, then the one */
                CHECK_OK(g->ops->rope(g->be, d1, T, H, D, dpos, &rp));
                CHECK_OK(g->ops->rope(g->be, d1 + nq, T, Hkv, D, dpos, &rp));
                CHECK_OK(g->ops->kv_store(g->be, &a.gpu, d1 + nq, dv, T, dpos, dslot));
                CHECK_OK(g->ops->rope_kv_store(g->be, &b.gpu, d2, d2 + nq, dv, T, H, dpos, dslot, &rp));
                float *o1 = malloc(sizeof(float) * (nq + nk)), *o2 = malloc(sizeof(float) * (nq + nk));
                uint8_t *c1 = malloc(2 * a.bytes), *c2 = malloc(2 * a.bytes);
                gget(g, o1, d1, sizeof(float) * (nq + nk));
                gget(g, o2, d2, sizeof(float) * (nq + nk));
                gget(g, c1, a.gpu.k, a.bytes); gget(g, c1 + a.bytes, a.gpu.v, a.bytes);
                gget(g, c2, b.gpu.k, b.bytes); gget(g, c2 + a.bytes, b.gpu.v, b.bytes);
                char what[96];
                snprintf(what, sizeof what, "rope_kv_store %s %s T=%d: q, k, caches as 3 calls", st_dtype_name(types[ti]),
                         layout ? "norm" : "neox", T);
                expect_equal_i(g, what, memcmp(o1, o2, sizeof(float) * (nq + nk)) == 0 && memcmp(c1, c2, 2 * a.bytes) == 0, 1);
                /* a slot past the cache: skipped and reported, as kv_store does */
                int32_t bad[1] = {(int32_t)n_slots};
                CHECK_OK(g->ops->upload(g->be, dslot, bad, sizeof bad));
                CHECK_OK(g->ops->rope_kv_store(g->be, &b.gpu, d2, d2 + nq, dv, 1, H, dpos, dslot, &rp));
                CHECK_ERR(g->ops->sync(g->be), ST_ERR_USAGE, "context is full");
                gfree(g, d1); gfree(g, d2); gfree(g, dv); gfree(g, dff); gfree(g, dpos); gfree(g, dslot);
                gfree(g, b.gpu.k); gfree(g, b.gpu.v);
                free(qk); free(v); free(factors); free(o1); free(o2); free(c1); free(c2);
                kv_drop(g, &a);
            }
}

/* tests/gpu/kernel_bound.py; a q8_0 cache holds the same values for both backends (the CPU
 * widens q * d to fp32, eager too): flash rounds them to bf16 as it does an f32 cache */
static double attn_tol(const struct gpu *g, st_dtype t, int64_t D) {
    const bool flash = g->flash && (D == 64 || D == 128);
    return !flash ? 1e-5 : t == ST_DTYPE_F16 ? 2e-3 : 6e-3;
}

/* A batched decode step: T tokens, each of its own sequence (slot) of a
 * cache of n_slots planes, in one call (n_seq = T) against the CPU backend;
 * kv_store with slots writes the same bytes. */
static void test_attention_slots(struct gpu *g) {
    const st_dtype types[] = {ST_DTYPE_F32, ST_DTYPE_F16, ST_DTYPE_BF16, ST_DTYPE_Q8_0};
    /* n_slots, n_ctx, Hkv, H, D, n_tok */
    const int64_t cases[][6] = {{4, 300, 2, 8, 128, 4}, {16, 600, 4, 28, 128, 16}, {8, 200, 8, 64, 64, 8},
                                {64, 64, 2, 14, 64, 64}, {5, 130, 1, 4, 80, 3},    {33, 96, 4, 32, 128, 33}};
    for (size_t ci = 0; ci < ST_ARRAY_LEN(cases); ci++) {
        const int64_t NS = cases[ci][0], n_ctx = cases[ci][1], Hkv = cases[ci][2], H = cases[ci][3], D = cases[ci][4];
        const int64_t T = cases[ci][5];
        for (size_t ti = 0; ti < ST_ARRAY_LEN(types); ti++) {
            const st_dtype t = types[ti];
            if (t == ST_DTYPE_Q8_0 && (Hkv * D) % 32) continue;   /* q8_0 rows are whole blocks of 32 */
            struct kv_pair p;
            kv_make_slots(g, &p, t, NS, n_ctx, Hkv, D);
            float *q = rand_f32(T * H * D, 2.0f);
            int32_t *pos = malloc(sizeof(int32_t) * T), *slot = malloc(sizeof(int32_t) * T);
            for (int64_t i = 0; i < T; i++) {
                slot[i] = (int32_t)((i * 7 + 3) % NS);   /* distinct while T <= NS and gcd(7, NS) = 1 */
                pos[i] = (int32_t)((i * 37 + 11) % n_ctx);
            }
            bool distinct = true;
            for (int64_t i = 0; i < T; i++)
                for (int64_t j = 0; j < i; j++) distinct &= slot[i] != slot[j];
            if (!distinct) for (int64_t i = 0; i < T; i++) slot[i] = (int32_t)i;
            const float scale = 1.0f / sqrtf((float)D);
            float *ref = malloc(sizeof(float) * T * H * D), *out = malloc(sizeof(float) * T * H * D);
            CHECK_OK(cpu_ops->attention(cpu_be, &p.cpu, q, T, H, pos, slot, T, scale, ref));
            float *dq = gput(g, q, sizeof(float) * T * H * D);
            int32_t *dpos = gput(g, pos, sizeof(int32_t) * T), *dslot = gput(g, slot, sizeof(int32_t) * T);
            float *dout = gpoison(g, (size_t)(T * H * D));
            CHECK_OK(g->ops->attention(g->be, &p.gpu, dq, T, H, dpos, dslot, T, scale, dout));
            gget(g, out, dout, sizeof(float) * T * H * D);
            const bool flash = g->flash && (D == 64 || D == 128);
            const double tol = attn_tol(g, t, D);
            char what[128];
            snprintf(what, sizeof what, "attention %s %s slots=%lld ctx=%lld H=%lld/%lld D=%lld t=%lld (batched)",
                     flash ? "flash" : "eager", st_dtype_name(t), (long long)NS, (long long)n_ctx, (long long)H,
                     (long long)Hkv, (long long)D, (long long)T);
            expect_close(g, what, out, ref, T * H * D, tol);
            /* kv_store into the slots: the same bytes as the CPU's */
            float *k = rand_f32(T * Hkv * D, 3.0f), *v = rand_f32(T * Hkv * D, 3.0f);
            CHECK_OK(cpu_ops->kv_store(cpu_be, &p.cpu, k, v, T, pos, slot));
            float *dk = gput(g, k, sizeof(float) * T * Hkv * D), *dv = gput(g, v, sizeof(float) * T * Hkv * D);
            CHECK_OK(g->ops->kv_store(g->be, &p.gpu, dk, dv, T, dpos, dslot));
            uint8_t *hk = malloc(p.bytes), *hv = malloc(p.bytes);
            gget(g, hk, p.gpu.k, p.bytes);
            gget(g, hv, p.gpu.v, p.bytes);
            snprintf(what, sizeof what, "kv_store %s into %lld slots: caches bit-identical", st_dtype_name(t), (long long)NS);
            expect_equal_i(g, what, memcmp(hk, p.hk, p.bytes) == 0 && memcmp(hv, p.hv, p.bytes) == 0, 1);
            gfree(g, dk); gfree(g, dv); free(k); free(v); free(hk); free(hv);
            gfree(g, dq); gfree(g, dpos); gfree(g, dslot); gfree(g, dout);
            free(q); free(pos); free(slot); free(ref); free(out);
            kv_drop(g, &p);
        }
    }
}

static void test_attention(struct gpu *g) {
    const st_dtype types[] = {ST_DTYPE_F32, ST_DTYPE_F16, ST_DTYPE_BF16, ST_DTYPE_Q8_0};
    /* n_ctx, Hkv, H, D, n_tok, last position */
    const int64_t cases[][6] = {{300, 2, 8, 128, 1, 299},   {300, 2, 8, 128, 5, 150}, {2100, 4, 28, 128, 1, 2050},
                                {4096, 2, 14, 64, 1, 4000}, {97, 1, 4, 64, 40, 96},   {1500, 2, 16, 128, 33, 1400},
                                {64, 2, 4, 80, 3, 20},      {257, 8, 8, 128, 2, 256},
                                /* decode in small caches: 4 and 2 splits, fewer than the merge's eight at once */
                                {100, 2, 8, 128, 1, 99},    {60, 4, 28, 64, 1, 59}};
    for (size_t ci = 0; ci < ST_ARRAY_LEN(cases); ci++) {
        const int64_t n_ctx = cases[ci][0], Hkv = cases[ci][1], H = cases[ci][2], D = cases[ci][3], T = cases[ci][4];
        const int64_t last = cases[ci][5];
        for (size_t ti = 0; ti < ST_ARRAY_LEN(types); ti++) {
            const st_dtype t = types[ti];
            if (t == ST_DTYPE_Q8_0 && (Hkv * D) % 32) continue;   /* q8_0 rows are whole blocks of 32 */
            struct kv_pair p;
            kv_make(g, &p, t, n_ctx, Hkv, D);
            float *q = rand_f32(T * H * D, 2.0f);
            int32_t *pos = malloc(sizeof(int32_t) * T);
            for (int64_t i = 0; i < T; i++) pos[i] = (int32_t)(last - (T - 1) + i);
            const float scale = 1.0f / sqrtf((float)D);
            float *ref = malloc(sizeof(float) * T * H * D), *out = malloc(sizeof(float) * T * H * D);
            CHECK_OK(cpu_ops->attention(cpu_be, &p.cpu, q, T, H, pos, NULL, 1, scale, ref));
            float *dq = gput(g, q, sizeof(float) * T * H * D);
            int32_t *dpos = gput(g, pos, sizeof(int32_t) * T);
            float *dout = gpoison(g, (size_t)(T * H * D));
            CHECK_OK(g->ops->attention(g->be, &p.gpu, dq, T, H, dpos, NULL, 1, scale, dout));
            gget(g, out, dout, sizeof(float) * T * H * D);
            const bool flash = g->flash && (D == 64 || D == 128);
            const double tol = attn_tol(g, t, D);
            char what[96];
            snprintf(what, sizeof what, "attention %s %s ctx=%lld H=%lld/%lld D=%lld t=%lld", flash ? "flash" : "eager",
                     st_dtype_name(t), (long long)n_ctx, (long long)H, (long long)Hkv, (long long)D, (long long)T);
            expect_close(g, what, out, ref, T * H * D, tol);
            gfree(g, dq); gfree(g, dpos); gfree(g, dout);
            free(q); free(pos); free(ref); free(out);
            kv_drop(g, &p);
        }
    }
}

static void test_elementwise(struct gpu *g) {
    const int64_t sizes[] = {18944, 3584 * 5 + 3, 1, 7};
    for (size_t k = 0; k < ST_ARRAY_LEN(sizes); k++) {
        for (int misalign = 0; misalign < 2; misalign++) {
            const int64_t n = sizes[k], off = misalign;
            float *a = rand_f32(n + 1, 6.0f), *b = rand_f32(n + 1, 2.0f);
            float *ref = malloc(sizeof(float) * (n + 1)), *out = malloc(sizeof(float) * (n + 1));
            cpu_ops->swiglu(cpu_be, a + off, b + off, n, ref);
            float *da = gput(g, a, sizeof(float) * (n + 1)), *db = gput(g, b, sizeof(float) * (n + 1));
            float *dout = gpoison(g, (size_t)(n + 1));
            CHECK_OK(g->ops->swiglu(g->be, da + off, db + off, n, dout + off));
            gget(g, out, dout + off, sizeof(float) * n);
            char what[96];
            snprintf(what, sizeof what, "swiglu n=%lld%s", (long long)n, misalign ? " unaligned" : "");
            expect_close(g, what, out, ref, n, 1e-5);
            memcpy(ref, a, sizeof(float) * (n + 1));
            cpu_ops->add(cpu_be, ref + off, b + off, n);
            CHECK_OK(g->ops->add(g->be, da + off, db + off, n));
            gget(g, out, da, sizeof(float) * (n + 1));
            snprintf(what, sizeof what, "add n=%lld%s", (long long)n, misalign ? " unaligned" : "");
            expect_close(g, what, out, ref, n + 1, 1e-5);
            gfree(g, da); gfree(g, db); gfree(g, dout);
            free(a); free(b); free(ref); free(out);
        }
    }
}

static void test_argmax(struct gpu *g) {
    const int64_t V = 151936;
    for (int trial = 0; trial < 4; trial++) {
        float *l = rand_f32(V, 10.0f);
        if (trial == 1) { l[70000] = 50.0f; l[12] = 50.0f; }          /* tie: lowest id wins */
        if (trial == 2) { l[0] = NAN; l[5] = NAN; l[V - 1] = 60.0f; } /* non-finite: no token (-1) */
        if (trial == 3) { for (int64_t i = 0; i < V; i++) l[i] = -INFINITY; l[V / 2] = -1e30f; }
        int32_t want = 0, got = -1;
        CHECK_OK(cpu_ops->argmax(cpu_be, l, V, &want));
        float *dl = gput(g, l, sizeof(float) * V);
        int32_t *did = gput(g, NULL, sizeof(int32_t));
        CHECK_OK(g->ops->argmax(g->be, dl, V, did));
        gget(g, &got, did, sizeof got);
        char what[96];
        snprintf(what, sizeof what, "argmax V=%lld case %d", (long long)V, trial);
        expect_equal_i(g, what, got, want);
        if (trial >= 2) expect_equal_i(g, "argmax of non-finite logits is -1", got, -1);
        gfree(g, dl); gfree(g, did);
        free(l);
    }
    if (!g->ops->argmax_rows) return;
    /* rows in one launch: each row its own answer (a tie, a NaN row, plain rows), odd vocabulary */
    const int64_t R = 67, V2 = 32003;
    float *l = rand_f32(R * V2, 10.0f);
    l[5 * V2 + 900] = 40.0f; l[5 * V2 + 17] = 40.0f;
    l[9 * V2 + 3] = NAN;
    l[(R - 1) * V2 + V2 - 1] = 99.0f;
    int32_t want[67], got[67];
    for (int64_t r = 0; r < R; r++) CHECK_OK(cpu_ops->argmax(cpu_be, l + r * V2, V2, &want[r]));
    float *dl = gput(g, l, sizeof(float) * R * V2);
    int32_t *did = gput(g, NULL, sizeof(int32_t) * R);
    CHECK_OK(g->ops->argmax_rows(g->be, dl, R, V2, did));
    gget(g, got, did, sizeof(int32_t) * R);
    for (int64_t r = 0; r < R; r++) {
        char what[96];
        snprintf(what, sizeof what, "argmax_rows row %lld of %lld (V=%lld)", (long long)r, (long long)R, (long long)V2);
        expect_equal_i(g, what, got[r], want[r]);
    }
    expect_equal_i(g, "argmax_rows: a NaN row is -1", got[9], -1);
    gfree(g, dl); gfree(g, did);
    free(l);
}

/* ---- sampling: a brute-force host implementation of the st_sample_params contract ---- */

struct cand { float z; int id; };
static int cand_cmp(const void *a, const void *b) {
    const struct cand *x = a, *y = b;
    if (x->z != y->z) return x->z > y->z ? -1 : 1;
    return x->id - y->id;
}

static int32_t host_sample(const float *logits, int64_t n, const struct st_sample_params *sp, int32_t pos) {
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++) if (logits[i] > logits[best]) best = (int32_t)i;
    if (!(sp->temperature > 0.0f)) return best;
    const double u = st_sample_uniform(sp->seed, (uint64_t)pos);
    const float inv_t = 1.0f / sp->temperature;
    const int64_t k = sp->top_k <= 0 || sp->top_k >= n ? 0 : sp->top_k;
    if (k == 0 && sp->top_p >= 1.0f) {   /* id order */
        const float vmax = logits[best];
        const float lmin = sp->min_p > 0 ? vmax + logf(sp->min_p) : -INFINITY;
        double tot = 0.0;
        for (int64_t i = 0; i < n; i++) if (logits[i] >= lmin) tot += expf((logits[i] - vmax) * inv_t);
        double c = 0.0;
        int32_t last = best;
        for (int64_t i = 0; i < n; i++) {
            if (!(logits[i] >= lmin)) continue;
            last = (int32_t)i;
            c += expf((logits[i] - vmax) * inv_t);
            if (c > u * tot) return (int32_t)i;
        }
        return last;
    }
    struct cand *c = malloc(sizeof *c * (size_t)n);
    for (int64_t i = 0; i < n; i++) { c[i].z = logits[i]; c[i].id = (int)i; }
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    const int64_t nc = k ? k : n;
    float *p = malloc(sizeof(float) * (size_t)nc);
    double tot = 0.0;
    for (int64_t i = 0; i < nc; i++) { p[i] = expf(c[i].z - c[0].z); tot += p[i]; }
    int64_t keep = nc;
    if (sp->top_p < 1.0f) {
        double s = 0.0;
        for (int64_t i = 0; i < nc; i++) { s += p[i]; if (s >= (double)sp->top_p * tot) { keep = i + 1; break; } }
    }
    if (sp->min_p > 0.0f) { int64_t k2 = 1; while (k2 < keep && p[k2] >= sp->min_p * p[0]) k2++; keep = k2; }
    double kept = 0.0;
    for (int64_t i = 0; i < keep; i++) { p[i] = expf((c[i].z - c[0].z) * inv_t); kept += p[i]; }
    double s = 0.0;
    int32_t pick = c[keep - 1].id;
    for (int64_t i = 0; i < keep; i++) { s += p[i]; if (s > u * kept) { pick = c[i].id; break; } }
    free(c); free(p);
    return pick;
}

static void test_sample(struct gpu *g) {
    const int64_t V = 151936;
    const struct st_sample_params params[] = {
        {0.8f, 40, 0.95f, 0.05f, 42}, {0.7f, 20, 0.8f, 0.0f, 7}, {1.0f, 0, 1.0f, 0.0f, 1234},
        {1.3f, 0, 1.0f, 0.1f, 99},    {0.6f, 1024, 0.95f, 0.0f, 5}, {0.0f, 40, 0.9f, 0.0f, 3}, {2.0f, 5, 1.0f, 0.0f, 11}};
    float *l = rand_f32(V, 4.0f);
    for (int i = 0; i < 50; i++) l[rng_u64() % V] = 9.0f + rng_f();   /* a head of likely tokens */
    l[500] = l[501] = 12.0f;                                          /* a tie at the top */
    float *dl = gput(g, l, sizeof(float) * V);
    int32_t *dpos = gput(g, NULL, sizeof(int32_t)), *did = gput(g, NULL, sizeof(int32_t));
    int n_draw = 0, n_same = 0;
    for (size_t k = 0; k < ST_ARRAY_LEN(params); k++) {
        for (int32_t pos = 3; pos < 3 + 24; pos++) {
            CHECK_OK(g->ops->upload(g->be, dpos, &pos, sizeof pos));
            CHECK_OK(g->ops->sample(g->be, dl, V, &params[k], dpos, did));
            int32_t got = -1;
            gget(g, &got, did, sizeof got);
            n_draw++;
            n_same += got == host_sample(l, V, &params[k], pos);
        }
    }
    /* floating-point sums differ in order between host and device; a draw that
     * lands within ~1e-6 of a boundary may flip, nothing more */
    char what[96];
    snprintf(what, sizeof what, "sample: %d draws equal to the host reference", n_draw);
    expect_equal_i(g, what, n_same >= n_draw - 1, 1);
    struct st_sample_params bad = {0.8f, 0, 0.9f, 0.0f, 1};
    CHECK_ERR(g->ops->sample(g->be, dl, V, &bad, dpos, did), ST_ERR_UNSUPPORTED, "top_k");
    gfree(g, dl); gfree(g, dpos); gfree(g, did);
    free(l);
}

/* ---- graph capture: a decode-like step replayed at a new position ------------- */

static void test_graph(struct gpu *g) {
    const int64_t H = 4, D = 128, E = 512, V = 3000;
    float *x = rand_f32(H * D, 1.0f), *w = rand_f32(E, 1.0f);
    void *wt = rand_dtype(ST_DTYPE_BF16, V * E, 0.05f);
    float *dx0 = gput(g, x, sizeof(float) * H * D), *dx = gput(g, NULL, sizeof(float) * H * D);
    float *dw = gput(g, w, sizeof(float) * E), *dn = gput(g, NULL, sizeof(float) * E);
    void *dwt = gput(g, wt, st_dtype_row_bytes(ST_DTYPE_BF16, V * E));
    float *dlog = gput(g, NULL, sizeof(float) * V);
    int32_t *dpos = gput(g, NULL, sizeof(int32_t)), *did = gput(g, NULL, sizeof(int32_t));
    struct st_rope_params rp = {1e6f, ST_ROPE_NEOX, NULL};
    struct st_weight W = {dwt, ST_DTYPE_BF16, V, E};
    int32_t pos = 7;
    CHECK_OK(g->ops->upload(g->be, dpos, &pos, sizeof pos));
    CHECK_OK(g->ops->sync(g->be));
    /* step: x = rope(x0, pos); n = rmsnorm(x); logits = W n; id = argmax */
    CHECK_OK(g->ops->capture_begin(g->be));
    CHECK_OK(g->ops->rmsnorm(g->be, dx0, dw, 1, E, 1e-6f, dx));   /* x0 -> x (copy through a norm) */
    CHECK_OK(g->ops->rope(g->be, dx, 1, H, D, dpos, &rp));
    CHECK_OK(g->ops->rmsnorm(g->be, dx, dw, 1, E, 1e-6f, dn));
    CHECK_OK(g->ops->matmul(g->be, &W, NULL, dn, 1, dlog));
    CHECK_OK(g->ops->argmax(g->be, dlog, V, did));
    CHECK_OK(g->ops->capture_end(g->be));
    for (int step = 0; step < 3; step++) {
        pos = 100 + 977 * step;
        CHECK_OK(g->ops->upload(g->be, dpos, &pos, sizeof pos));
        CHECK_OK(g->ops->replay(g->be));
        float *logits = malloc(sizeof(float) * V);
        int32_t got = -1;
        gget(g, logits, dlog, sizeof(float) * V);
        gget(g, &got, did, sizeof got);
        /* the same step on the CPU */
        float *cx = malloc(sizeof(float) * E), *cn = malloc(sizeof(float) * E), *cl = malloc(sizeof(float) * V);
        cpu_ops->rmsnorm(cpu_be, x, w, 1, E, 1e-6f, cx);
        cpu_ops->rope(cpu_be, cx, 1, H, D, &pos, &rp);
        cpu_ops->rmsnorm(cpu_be, cx, w, 1, E, 1e-6f, cn);
        struct st_weight Wc = {wt, ST_DTYPE_BF16, V, E};
        cpu_ops->matmul(cpu_be, &Wc, NULL, cn, 1, cl);
        char what[96];
        snprintf(what, sizeof what, "graph replay at pos %d: logits", pos);
        expect_close(g, what, logits, cl, V, 1e-5);
        int32_t want = 0;
        cpu_ops->argmax(cpu_be, cl, V, &want);
        snprintf(what, sizeof what, "graph replay at pos %d: argmax", pos);
        expect_equal_i(g, what, got, want);
        free(logits); free(cx); free(cn); free(cl);
    }
    gfree(g, dx0); gfree(g, dx); gfree(g, dw); gfree(g, dn); gfree(g, dwt); gfree(g, dlog); gfree(g, dpos); gfree(g, did);
    free(x); free(w); free(wt);
}

static void test_memory(struct gpu *g) {
    /* import_host: alloc + upload */
    const size_t n = 1 << 20;
    uint8_t *h = malloc(n), *back = malloc(n);
    for (size_t i = 0; i < n; i++) h[i] = (uint8_t)rng_u64();
    void *d = NULL;
    CHECK_OK(g->ops->import_host(g->be, h, n, ST_BUF_WEIGHTS, &d));
    CHECK(d != NULL && d != (void *)h);
    gget(g, back, d, n);
    expect_equal_i(g, "import_host round trip", memcmp(h, back, n) == 0, 1);
    gfree(g, d);
    /* a large import goes through the two pinned staging buffers, several 64 MiB chunks and a
     * tail: from plain memory (threads copying it) and from a registered file mapping (threads
     * reading the file: base.h st_filemap), byte for byte */
    const size_t big = 3 * ((size_t)64 << 20) + 12345;
    uint8_t *hb = malloc(big), *bb = malloc(big);
    char path[] = "/tmp/strata-import-XXXXXX";
    const int fd = mkstemp(path);
    CHECK(hb && bb && fd >= 0);
    if (hb && bb && fd >= 0) {
        for (size_t i = 0; i < big; i += 8) { const uint64_t r = rng_u64(); memcpy(hb + i, &r, ST_MIN((size_t)8, big - i)); }
        for (int from_file = 0; from_file < 2; from_file++) {
            const uint8_t *src = hb;
            void *map = NULL;
            if (from_file) {
                CHECK(write(fd, hb, big) == (ssize_t)big);
                map = mmap(NULL, big, PROT_READ, MAP_PRIVATE, fd, 0);
                CHECK(map != MAP_FAILED);
                if (map == MAP_FAILED) break;
                CHECK_OK(st_filemap_add(map, big, fd, path));
                src = map;
            }
            void *dbig = NULL;
            CHECK_OK(g->ops->import_host(g->be, src, big, ST_BUF_WEIGHTS, &dbig));
            memset(bb, 0, big);
            if (dbig) gget(g, bb, dbig, big);
            expect_equal_i(g, from_file ? "import_host of a file mapping, 192 MiB" : "import_host, 192 MiB",
                           memcmp(hb, bb, big) == 0, 1);
            gfree(g, dbig);
            if (map) { st_filemap_remove(map); munmap(map, big); }
        }
    }
    if (fd >= 0) { close(fd); unlink(path); }
    free(hb); free(bb);
    /* a model's worth of imports and pageable uploads of every size, one host buffer rewritten
     * between them, nothing synchronized in between (the staging ring: each copy owns its bytes
     * when it returns, a buffer is reused only after its DMAs, pieces cross buffer ends) */
    {
        enum { N = 96 };
        const size_t cap = ((size_t)64 << 20) + 4097;
        uint8_t *src = malloc(cap), *back = malloc(cap);
        void *dst[N] = {0};
        size_t len[N];
        CHECK(src && back);
        for (int i = 0; src && back && i < N; i++) {
            const uint64_t r = rng_u64();
            len[i] = i % 16 == 5 ? cap : i % 4 == 1 ? ((size_t)4 << 20) + (size_t)(r % (9u << 20)) : 1 + (size_t)(r % 300000);
            memset(src, 0x5a ^ i, len[i]);
            for (size_t k = 0; k < len[i]; k += 4093) src[k] = (uint8_t)(i * 7 + k);
            if (i % 3 == 2) {   /* an upload into a buffer of its own */
                CHECK_OK(g->ops->alloc(g->be, len[i], ST_BUF_WEIGHTS, &dst[i]));
                if (dst[i]) CHECK_OK(g->ops->upload(g->be, dst[i], src, len[i]));
            } else {
                CHECK_OK(g->ops->import_host(g->be, src, len[i], ST_BUF_WEIGHTS, &dst[i]));
            }
            memset(src, 0xee, len[i]);   /* the device must not see this */
        }
        int bad = -1;
        for (int i = 0; src && back && i < N && bad < 0; i++) {
            memset(src, 0x5a ^ i, len[i]);
            for (size_t k = 0; k < len[i]; k += 4093) src[k] = (uint8_t)(i * 7 + k);
            if (dst[i]) gget(g, back, dst[i], len[i]);
            if (!dst[i] || memcmp(src, back, len[i]) != 0) bad = i;
        }
        if (bad >= 0) printf("     import %d of %zu bytes differs\n", bad, len[bad]);
        expect_equal_i(g, "96 imports and uploads of 1 B to 64 MiB, back to back", bad, -1);
        for (int i = 0; i < N; i++)
            if (dst[i]) gfree(g, dst[i]);
        free(src); free(back);
    }
    /* pinned staging */
    void *pin = NULL;
    CHECK_OK(g->ops->alloc(g->be, 4096, ST_BUF_STAGING, &pin));
    CHECK(pin != NULL);
    g->ops->dealloc(g->be, pin);
    /* out of memory: recoverable, names device, bytes asked and free */
    void *huge = NULL;
    CHECK_ERR(g->ops->alloc(g->be, (size_t)1 << 50, ST_BUF_KV, &huge), ST_ERR_DEVICE_OOM, "out of memory allocating");
    CHECK(strstr(st_last_error(), "cuda:") && strstr(st_last_error(), "free of") && strstr(st_last_error(), "KV cache"));
    printf("     OOM message: %s\n", st_last_error());
    CHECK(huge == NULL);
    CHECK_OK(g->ops->alloc(g->be, 4096, ST_BUF_WORKSPACE, &d));   /* still usable */
    gfree(g, d);
    free(h); free(back);
}

int main(int argc, char **argv) {
    int ordinal = 0;
    bool require = false;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) ordinal = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--require-gpu")) require = true;
        else { fprintf(stderr, "usage: %s [--device N] [--seed S] [--require-gpu]\n", argv[0]); return 2; }
    }
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("no CUDA device visible: %s\n", require ? "FAIL (--require-gpu)" : "skipped");
        return require ? 1 : 77;
    }
    if (!seed) seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    rng_s = seed * 0x9E3779B97F4A7C15ull + 1;
    printf("seed %llu (rerun with --seed %llu)\n", (unsigned long long)seed, (unsigned long long)seed);

    cpu_ops = st_device_ops_cpu();
    struct st_backend_config ccfg = {ST_PREC_F32, ST_ATTN_EAGER, ST_DTYPE_F32, 0, false, 0, 0, 0};
    if (cpu_ops->init(NULL, &ccfg, &cpu_be) != ST_OK) { fprintf(stderr, "cpu backend: %s\n", st_last_error()); return 1; }

    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, ordinal);
    printf("device cuda:%d %s cc %d.%d, %d SMs\n", ordinal, prop.name, prop.major, prop.minor, prop.multiProcessorCount);
    const bool ampere = prop.major >= 8;
    /* max_tokens 64: the scratch of a 64-token stage; the 24- and 37-token
     * GEMMs fit it in one pass, the 64-token ones as the batched decode sends them */
    struct gpu gpus[3] = {
        {"bf16", NULL, NULL, {ST_PREC_BF16, ampere ? ST_ATTN_FLASH : ST_ATTN_EAGER, ST_DTYPE_BF16, 0, false, 64, 0, 0}, prop.major,
         ampere, prop.minor},
        {"f16", NULL, NULL, {ST_PREC_F16, ampere ? ST_ATTN_FLASH : ST_ATTN_EAGER, ST_DTYPE_F16, 0, false, 64, 0, 0}, prop.major,
         ampere, prop.minor},
        {"maxwell", NULL, NULL, {ST_PREC_F32, ST_ATTN_EAGER, ST_DTYPE_F32, 0, true, 64, 0, 0}, prop.major, false, prop.minor},
    };
    struct st_device_info dev;
    memset(&dev, 0, sizeof dev);
    dev.kind = ST_DEVICE_CUDA;
    dev.index = ordinal;
    snprintf(dev.name, sizeof dev.name, "%s", prop.name);
    for (size_t i = 0; i < ST_ARRAY_LEN(gpus) && !g_fatal; i++) {
        struct gpu *g = &gpus[i];
        g->ops = st_device_ops_cuda();
        if (g->ops->init(&dev, &g->cfg, &g->be) != ST_OK) {
            fprintf(stderr, "cuda backend (%s): %s\n", g->name, st_last_error());
            CHECK(false);
            continue;
        }
        printf("---- stage configuration %s: matmul %s, attention %s%s\n", g->name, st_prec_name(g->cfg.matmul_prec),
               st_attn_name(g->cfg.attention), g->cfg.maxwell_path ? ", maxwell_path" : "");
        test_embed(g);
        test_rmsnorm(g);
        test_matmul(g);
        test_matmul_add(g);
        test_gemm_shared_x(g);
        test_matmul_grouped(g);
        test_matmul_quant(g);
        test_matmul_quant_grouped(g);
        test_rmsnorm_quant(g);
        test_rope(g);
        test_kv_store(g);
        test_rope_kv_store(g);
        test_attention(g);
        test_attention_slots(g);
        test_elementwise(g);
        test_argmax(g);
        test_sample(g);
        test_graph(g);
        test_matmul_grouped_graph(g);
        test_matmul_quant_graph(g);
        test_memory(g);
        g->ops->free(g->be);
    }
    /* flash attention refused where it cannot run */
    {
        struct st_backend_config bad = {ST_PREC_F32, ST_ATTN_FLASH, ST_DTYPE_F32, 0, true, 0, 0, 0};
        st_backend *b = NULL;
        CHECK_ERR(st_device_ops_cuda()->init(&dev, &bad, &b), ST_ERR_CONFIG, "flash attention needs compute capability 8.0");
    }
    cpu_ops->free(cpu_be);
    printf("summary: %d cases, %d failed\n", n_cases, n_failed_cases);
    return st_test_finish("gpu_kernels");
}
