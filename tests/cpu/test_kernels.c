/* CPU kernels against straightforward double-precision references on random
 * data: rmsnorm, rope (both layouts vs an explicit rotate_half, and NORM ==
 * NEOX under the llama row permutation), attention vs a naive softmax,
 * kv_store, embed, swiglu, argmax. Also: results do not depend on n_tok
 * (bit-identical). The matmul has its own test (test_matmul.c). */
#include "check.h"
#include "rng.h"
#include "weights.h"
#include "kernels/cpu/expf-impl.h"
#include "kernels/cpu/kernels_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_rmsnorm(void) {
    const int64_t rows = 5, n = 67;
    float x[5 * 67], w[67], out[5 * 67];
    for (int i = 0; i < rows * n; i++) x[i] = 3.0f * rng_f();
    for (int i = 0; i < n; i++) w[i] = 1.0f + 0.3f * rng_f();
    st_cpu_rmsnorm(x, w, rows, n, 1e-6f, out);
    double worst = 0;
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i];
        double sc = 1.0 / sqrt(ss / n + 1e-6);
        for (int i = 0; i < n; i++) {
            double ref = w[i] * x[r * n + i] * sc;
            worst = fmax(worst, fabs(out[r * n + i] - ref) / (fabs(ref) + 1e-6));
        }
    }
    CHECK_MSG(worst < 1e-6, "rmsnorm worst relative error %.3g", worst);
    /* in place */
    memcpy(out, x, sizeof x);
    float ref2[5 * 67];
    st_cpu_rmsnorm(x, w, rows, n, 1e-6f, ref2);
    st_cpu_rmsnorm(out, w, rows, n, 1e-6f, out);
    CHECK(!memcmp(out, ref2, sizeof out));
}

/* rmsnorm on every SIMD level gives the portable path's bits (every length
 * from 1 to 70, the lane tails, and 896) */
static void test_rmsnorm_paths(void) {
    static float x[3 * 896], w[896], ref[3 * 896], out[3 * 896];
    for (int i = 0; i < 3 * 896; i++) x[i] = 4.0f * rng_f();
    for (int i = 0; i < 896; i++) w[i] = 1.0f + 0.5f * rng_f();
    for (int isa = ST_CPU_ISA_AVX2; isa <= (int)st_cpu_isa_best(); isa++) {
        bool same = true;
        for (int64_t n = 1; n <= 896 && same; n = n < 70 ? n + 1 : n + 826) {
            CHECK_OK(st_cpu_isa_force(ST_CPU_ISA_PORTABLE));
            st_cpu_rmsnorm(x, w, 3, n, 1e-6f, ref);
            CHECK_OK(st_cpu_isa_force((st_cpu_isa)isa));
            st_cpu_rmsnorm(x, w, 3, n, 1e-6f, out);
            same = !memcmp(out, ref, sizeof(float) * (size_t)(3 * n));
            if (!same) CHECK_MSG(same, "rmsnorm on %s differs from the portable path for n = %lld",
                                 st_cpu_isa_name((st_cpu_isa)isa), (long long)n);
        }
    }
    st_cpu_kernels_force_portable(false);
}

/* HF: q' = q*cos + rotate_half(q)*sin, emb = concat(freqs, freqs), in double */
static void rope_ref(double *v, int64_t D, int32_t pos, double theta, const float *ff) {
    double tmp[256], c[256], s[256];
    for (int64_t i = 0; i < D; i++) {
        int64_t k = i % (D / 2);
        double inv = 1.0 / pow(theta, 2.0 * (double)k / (double)D);
        if (ff) inv /= ff[k];
        c[i] = cos(pos * inv);
        s[i] = sin(pos * inv);
    }
    for (int64_t i = 0; i < D; i++) {
        double rh = i < D / 2 ? -v[i + D / 2] : v[i - D / 2];   /* rotate_half */
        tmp[i] = v[i] * c[i] + rh * s[i];
    }
    memcpy(v, tmp, sizeof(double) * (size_t)D);
}

static void test_rope(void) {
    const int64_t T = 4, Hh = 3, D = 24;
    int32_t pos[4] = {0, 1, 17, 255};
    float x[4 * 3 * 24], y[4 * 3 * 24], perm[4 * 3 * 24], ff[12];
    for (int i = 0; i < 12; i++) ff[i] = 1.0f + (float)i * 0.7f;
    for (int use_ff = 0; use_ff < 2; use_ff++) {
        for (int i = 0; i < T * Hh * D; i++) x[i] = rng_f();
        memcpy(y, x, sizeof x);
        CHECK_OK(st_cpu_rope(y, T, Hh, D, pos, 10000.0f, ST_ROPE_NEOX, use_ff ? ff : NULL));
        double worst = 0;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hh; h++) {
                double v[24];
                for (int i = 0; i < D; i++) v[i] = x[(t * Hh + h) * D + i];
                rope_ref(v, D, pos[t], 10000.0, use_ff ? ff : NULL);
                for (int i = 0; i < D; i++) worst = fmax(worst, fabs(y[(t * Hh + h) * D + i] - v[i]));
            }
        /* fp32 angles at position 255 are off by up to ~255 ulp(1) ~ 3e-5 */
        CHECK_MSG(worst < 5e-5, "rope NEOX (factors %d) worst abs error %.3g", use_ff, worst);
        /* NORM on llama-permuted rows (GGUF row 2i+s = HF row s*D/2+i) == permuted NEOX */
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hh; h++)
                for (int i = 0; i < D / 2; i++)
                    for (int s = 0; s < 2; s++)
                        perm[(t * Hh + h) * D + 2 * i + s] = x[(t * Hh + h) * D + s * D / 2 + i];
        CHECK_OK(st_cpu_rope(perm, T, Hh, D, pos, 10000.0f, ST_ROPE_NORM, use_ff ? ff : NULL));
        bool same = true;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hh; h++)
                for (int i = 0; i < D / 2; i++)
                    for (int s = 0; s < 2; s++)
                        if (perm[(t * Hh + h) * D + 2 * i + s] != y[(t * Hh + h) * D + s * D / 2 + i]) same = false;
        CHECK_MSG(same, "rope NORM on permuted rows differs from NEOX (factors %d)", use_ff);
    }
    CHECK_ERR(st_cpu_rope(x, 1, 1, 7, pos, 1e4f, ST_ROPE_NEOX, NULL), ST_ERR_UNSUPPORTED, "head_dim 7");
}

static void test_attention_dtype(st_dtype kvt, int64_t D) {
    const int64_t n_ctx = 600, Hkv = 2, H = 6, T = 5;
    int32_t pos[5] = {0, 3, 255, 256, 590};       /* tiles of 256 keys: 1, 1, 1, 2, 3 */
    size_t rb = st_dtype_row_bytes(kvt, Hkv * D);
    uint8_t *kc = calloc(n_ctx, rb), *vc = calloc(n_ctx, rb);
    float *kr = malloc(sizeof(float) * (size_t)(n_ctx * Hkv * D)), *vr = malloc(sizeof(float) * (size_t)(n_ctx * Hkv * D));
    float *q = malloc(sizeof(float) * (size_t)(T * H * D)), *out = malloc(sizeof(float) * (size_t)(T * H * D));
    int32_t all[600];
    for (int i = 0; i < n_ctx; i++) all[i] = i;
    for (int64_t i = 0; i < n_ctx * Hkv * D; i++) { kr[i] = 2.0f * rng_f(); vr[i] = rng_f(); }
    for (int64_t i = 0; i < T * H * D; i++) q[i] = rng_f();
    CHECK_OK(st_cpu_kv_store(kc, vc, kvt, 1, n_ctx, Hkv, D, kr, vr, n_ctx, all, NULL));
    /* the reference reads what the cache holds (rounded to its dtype) */
    CHECK_OK(st_dtype_to_f32(kvt, kc, kr, n_ctx * Hkv * D));
    CHECK_OK(st_dtype_to_f32(kvt, vc, vr, n_ctx * Hkv * D));
    const float scale = 1.0f / sqrtf((float)D);
    CHECK_OK(st_cpu_attention(kc, vc, kvt, 1, n_ctx, Hkv, D, q, T, H, pos, NULL, scale, out));
    double worst = 0;
    double *sc = malloc(sizeof(double) * (size_t)n_ctx);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            int64_t g = h / (H / Hkv);
            double mx = -1e300, sum = 0;
            for (int64_t j = 0; j <= pos[t]; j++) {
                double d = 0;
                for (int64_t i = 0; i < D; i++) d += (double)q[(t * H + h) * D + i] * kr[(j * Hkv + g) * D + i];
                sc[j] = d * scale;
                mx = fmax(mx, sc[j]);
            }
            for (int64_t j = 0; j <= pos[t]; j++) { sc[j] = exp(sc[j] - mx); sum += sc[j]; }
            for (int64_t i = 0; i < D; i++) {
                double o = 0;
                for (int64_t j = 0; j <= pos[t]; j++) o += sc[j] / sum * vr[(j * Hkv + g) * D + i];
                worst = fmax(worst, fabs(out[(t * H + h) * D + i] - o));
            }
        }
    CHECK_MSG(worst < 2e-6, "attention (kv %s, D %lld, %s) worst abs error %.3g (|v| <= 1)", st_dtype_name(kvt), (long long)D,
              st_cpu_kernels_simd(), worst);
    /* one token at a time (decode) gives the same bits */
    float one[6 * 40] = {0};
    bool same = true;
    for (int64_t t = 0; t < T; t++) {
        CHECK_OK(st_cpu_attention(kc, vc, kvt, 1, n_ctx, Hkv, D, q + t * H * D, 1, H, &pos[t], NULL, scale, one));
        if (memcmp(one, out + t * H * D, sizeof(float) * (size_t)(H * D))) same = false;
    }
    CHECK(same);
    int32_t bad = 600;
    CHECK_ERR(st_cpu_attention(kc, vc, kvt, 1, n_ctx, Hkv, D, q, 1, H, &bad, NULL, scale, out), ST_ERR_USAGE, "outside the KV cache");
    CHECK_ERR(st_cpu_kv_store(kc, vc, kvt, 1, n_ctx, Hkv, D, kr, vr, 1, &bad, NULL), ST_ERR_USAGE, "the context is full");
    int32_t p0 = 0, slot1 = 1;
    CHECK_ERR(st_cpu_attention(kc, vc, kvt, 1, n_ctx, Hkv, D, q, 1, H, &p0, &slot1, scale, out), ST_ERR_USAGE,
              "slot 1 is outside the 1 slots");
    CHECK_ERR(st_cpu_kv_store(kc, vc, kvt, 1, n_ctx, Hkv, D, kr, vr, 1, &p0, &slot1), ST_ERR_USAGE, "slot 1 is outside");
    free(sc); free(kc); free(vc); free(kr); free(vr); free(q); free(out);
}

static void test_kv_store(void) {
    float k[2 * 8], v[2 * 8], kc[4 * 8] = {0}, vc[4 * 8] = {0};
    for (int i = 0; i < 16; i++) { k[i] = (float)i; v[i] = (float)-i; }
    int32_t pos[2] = {3, 1};
    CHECK_OK(st_cpu_kv_store(kc, vc, ST_DTYPE_F32, 1, 4, 2, 4, k, v, 2, pos, NULL));
    CHECK(!memcmp(kc + 3 * 8, k, 32) && !memcmp(kc + 1 * 8, k + 8, 32));
    CHECK(!memcmp(vc + 3 * 8, v, 32) && !memcmp(vc + 1 * 8, v + 8, 32));
    CHECK(kc[0] == 0 && kc[2 * 8] == 0);
    CHECK_ERR(st_cpu_kv_store(kc, vc, ST_DTYPE_Q4_K, 1, 4, 2, 4, k, v, 2, pos, NULL), ST_ERR_UNSUPPORTED, "q4_k");
    /* slots: token t goes to plane slot[t] (3 planes of 4 rows) */
    float kc3[3 * 4 * 8] = {0}, vc3[3 * 4 * 8] = {0};
    int32_t slot[2] = {2, 0};
    CHECK_OK(st_cpu_kv_store(kc3, vc3, ST_DTYPE_F32, 3, 4, 2, 4, k, v, 2, pos, slot));
    CHECK(!memcmp(kc3 + (2 * 4 + 3) * 8, k, 32) && !memcmp(kc3 + (0 * 4 + 1) * 8, k + 8, 32));
    CHECK(!memcmp(vc3 + (2 * 4 + 3) * 8, v, 32) && !memcmp(vc3 + (0 * 4 + 1) * 8, v + 8, 32));
    CHECK(kc3[(1 * 4 + 3) * 8] == 0 && kc3[(2 * 4 + 1) * 8] == 0);
}

/* A batched decode step: tokens of different sequences in one call, each over
 * its own plane of the cache, against one call per sequence (same bits) and a
 * brute-force double reference over that sequence's rows only. */
static void test_attention_slots(st_dtype kvt) {
    const int64_t n_slots = 4, n_ctx = 300, Hkv = 2, H = 4, D = 16, T = 4;
    const size_t rb = st_dtype_row_bytes(kvt, Hkv * D);
    uint8_t *kc = calloc((size_t)(n_slots * n_ctx), rb), *vc = calloc((size_t)(n_slots * n_ctx), rb);
    float *kr = malloc(sizeof(float) * (size_t)(n_ctx * Hkv * D)), *vr = malloc(sizeof(float) * (size_t)(n_ctx * Hkv * D));
    int32_t all[300], slot_of[300];
    for (int i = 0; i < n_ctx; i++) all[i] = i;
    for (int sl = 0; sl < n_slots; sl++) {   /* every plane different */
        for (int64_t i = 0; i < n_ctx * Hkv * D; i++) { kr[i] = 2.0f * rng_f(); vr[i] = rng_f(); }
        for (int i = 0; i < n_ctx; i++) slot_of[i] = sl;
        CHECK_OK(st_cpu_kv_store(kc, vc, kvt, n_slots, n_ctx, Hkv, D, kr, vr, n_ctx, all, slot_of));
    }
    float *q = malloc(sizeof(float) * (size_t)(T * H * D)), *out = malloc(sizeof(float) * (size_t)(T * H * D));
    float one[4 * 16];
    for (int64_t i = 0; i < T * H * D; i++) q[i] = rng_f();
    int32_t pos[4] = {299, 0, 130, 257}, slot[4] = {3, 1, 0, 2};
    const float scale = 0.25f;
    CHECK_OK(st_cpu_attention(kc, vc, kvt, n_slots, n_ctx, Hkv, D, q, T, H, pos, slot, scale, out));
    float *kf = malloc(sizeof(float) * (size_t)(n_ctx * Hkv * D)), *vf = malloc(sizeof(float) * (size_t)(n_ctx * Hkv * D));
    double *sc = malloc(sizeof(double) * (size_t)n_ctx), worst = 0;
    bool same = true;
    for (int64_t t = 0; t < T; t++) {
        CHECK_OK(st_cpu_attention(kc, vc, kvt, n_slots, n_ctx, Hkv, D, q + t * H * D, 1, H, &pos[t], &slot[t], scale, one));
        if (memcmp(one, out + t * H * D, sizeof one)) same = false;
        CHECK_OK(st_dtype_to_f32(kvt, kc + (size_t)(slot[t] * n_ctx) * rb, kf, n_ctx * Hkv * D));
        CHECK_OK(st_dtype_to_f32(kvt, vc + (size_t)(slot[t] * n_ctx) * rb, vf, n_ctx * Hkv * D));
        for (int64_t h = 0; h < H; h++) {
            const int64_t g = h / (H / Hkv);
            double mx = -1e300, sum = 0;
            for (int64_t j = 0; j <= pos[t]; j++) {
                double d = 0;
                for (int64_t i = 0; i < D; i++) d += (double)q[(t * H + h) * D + i] * kf[(j * Hkv + g) * D + i];
                sc[j] = d * scale;
                mx = fmax(mx, sc[j]);
            }
            for (int64_t j = 0; j <= pos[t]; j++) { sc[j] = exp(sc[j] - mx); sum += sc[j]; }
            for (int64_t i = 0; i < D; i++) {
                double o = 0;
                for (int64_t j = 0; j <= pos[t]; j++) o += sc[j] / sum * vf[(j * Hkv + g) * D + i];
                worst = fmax(worst, fabs(out[(t * H + h) * D + i] - o));
            }
        }
    }
    CHECK_MSG(same, "attention over slots (kv %s): a batched call differs from per-sequence calls", st_dtype_name(kvt));
    CHECK_MSG(worst < 2e-6, "attention over slots (kv %s): worst abs error %.3g", st_dtype_name(kvt), worst);
    free(sc); free(kf); free(vf); free(kc); free(vc); free(kr); free(vr); free(q); free(out);
}

static void test_embed(void) {
    const int64_t V = 10, E = 64;
    uint8_t tab[10 * 68];
    make_weights(ST_DTYPE_Q8_0, V, E, tab);
    int32_t ids[3] = {9, 0, 4};
    float out[3 * 64], ref[64];
    CHECK_OK(st_cpu_embed(tab, ST_DTYPE_Q8_0, V, E, ids, 3, out));
    bool same = true;
    for (int t = 0; t < 3; t++) {
        st_dtype_to_f32(ST_DTYPE_Q8_0, tab + ids[t] * 68, ref, E);
        if (memcmp(ref, out + t * E, sizeof ref)) same = false;
    }
    CHECK(same);
    int32_t bad[2] = {1, 10};
    CHECK_ERR(st_cpu_embed(tab, ST_DTYPE_Q8_0, V, E, bad, 2, out), ST_ERR_USAGE, "token id 10 at position 1 is outside the vocabulary [0, 10)");
}

static void test_small_ops(void) {
    float g[50], u[50], o[50];
    for (int i = 0; i < 50; i++) { g[i] = 8.0f * rng_f(); u[i] = rng_f(); }
    st_cpu_swiglu(g, u, 50, o);
    double worst = 0;
    for (int i = 0; i < 50; i++) {
        double ref = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        worst = fmax(worst, fabs(o[i] - ref) / (fabs(ref) + 1e-7));
    }
    CHECK_MSG(worst < 1e-6, "swiglu worst relative error %.3g", worst);
    float a[4] = {1, 2, 3, 4}, b[4] = {0.5f, -2, 1, 0};
    st_cpu_add(a, b, 4);
    CHECK(a[0] == 1.5f && a[1] == 0 && a[2] == 4 && a[3] == 4);
    float l[6] = {1, 5, NAN, 5, -1, 2};
    CHECK(st_cpu_argmax(l, 6) == 1);          /* lowest id on ties, NaN never wins */
    float n2[2] = {NAN, -3};
    CHECK(st_cpu_argmax(n2, 2) == 1);
}

/* The kernels' exp (expf-impl.h) against exp in double: every 509th fp32
 * bit pattern of [-86, 88.72] (4.4 million values) within 1.02 ulp of the
 * exact value (the exhaustive sweep measured 1.0103 at most), and its edges. */
static void test_expf(void) {
    double worst = 0;
    float wx = 0;
    int64_t n = 0;
    for (uint64_t b = 0; b <= 0xffffffffu; b += 509) {
        const uint32_t u = (uint32_t)b;
        float x;
        memcpy(&x, &u, 4);
        if (!(x >= ST_EXP_LO && x <= ST_EXP_HI)) continue;
        const double ref = exp((double)x);
        int e;
        frexp(ref, &e);
        const double err = fabs((double)st_expf(x) - ref) / ldexp(1.0, e - 24);
        if (err > worst) { worst = err; wx = x; }
        n++;
    }
    CHECK_MSG(n > 4000000 && worst <= 1.02, "expf: %lld values, worst %.4f ulp at %.9g", (long long)n, worst, wx);
    CHECK(st_expf(0.0f) == 1.0f && st_expf(-0.0f) == 1.0f && st_expf(1.0f) == 2.71828183f);
    CHECK(st_expf(88.73f) == INFINITY && st_expf(INFINITY) == INFINITY && st_expf(1e30f) == INFINITY);
    CHECK(st_expf(-86.01f) == 0.0f && st_expf(-INFINITY) == 0.0f && st_expf(-1e30f) == 0.0f);
    CHECK(isnan(st_expf(NAN)) && st_expf(ST_EXP_HI) < INFINITY && st_expf(ST_EXP_LO) > 0.0f);
}

/* swiglu on every SIMD level gives the portable path's bits for every
 * element, whatever its place in a vector or a tail (ranges of every length
 * and start), including the edges of the exp and NaN. */
static void test_swiglu_paths(void) {
    enum { N = 1003 };
    static float g[N], u[N], ref[N], out[N];
    static const float edge[] = {0.0f, -0.0f, 86.0f, 86.01f, -88.7228f, -88.73f, 1e30f, -1e30f, INFINITY, -INFINITY,
                                 NAN, 1e-40f, -1e-40f, 15.9f, -16.1f};
    for (int i = 0; i < N; i++) {
        g[i] = i < (int)(sizeof edge / sizeof *edge) ? edge[i] : 40.0f * rng_f();
        u[i] = i % 7 == 3 ? -1.5f : rng_f();
    }
    CHECK_OK(st_cpu_isa_force(ST_CPU_ISA_PORTABLE));
    st_cpu_swiglu(g, u, N, ref);
    double worst = 0;
    for (int i = 15; i < N; i++) {
        const double r = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        worst = fmax(worst, fabs(ref[i] - r) / (fabs(r) + 1e-30));
    }
    CHECK_MSG(worst < 1e-6, "swiglu (portable) worst relative error %.3g", worst);
    CHECK(ref[0] == 0.0f && ref[2] == 86.0f * u[2] && ref[6] == 1e30f * u[6] && ref[7] == 0.0f && isinf(ref[8]) &&
          isnan(ref[9]) && isnan(ref[10]));
    for (int isa = ST_CPU_ISA_AVX2; isa <= (int)st_cpu_isa_best(); isa++) {
        CHECK_OK(st_cpu_isa_force((st_cpu_isa)isa));
        bool same = true;
        for (int len = 1; len <= 40 && same; len++)
            for (int i0 = 0; i0 + len <= N; i0 += len) {
                memset(out, 0, sizeof out);
                st_cpu_swiglu_part(g, u, out, i0, i0 + len);
                if (memcmp(out + i0, ref + i0, sizeof(float) * (size_t)len)) { same = false; break; }
            }
        CHECK_MSG(same, "swiglu on %s differs from the portable path", st_cpu_isa_name((st_cpu_isa)isa));
    }
    st_cpu_kernels_force_portable(false);
}

int main(void) {
    rng_seed(1);
    test_expf();
    test_swiglu_paths();
    test_rmsnorm();
    test_rmsnorm_paths();
    test_rope();
    for (int path = 0; path < 2; path++) {
        st_cpu_kernels_force_portable(path == 1);
        for (int64_t D = 36; D <= 40; D += 4) {
            test_attention_dtype(ST_DTYPE_F32, D);
            test_attention_dtype(ST_DTYPE_F16, D);
            test_attention_dtype(ST_DTYPE_BF16, D);
        }
    }
    st_cpu_kernels_force_portable(false);
    test_kv_store();
    test_attention_slots(ST_DTYPE_F32);
    test_attention_slots(ST_DTYPE_BF16);
    test_embed();
    test_small_ops();
    return st_test_finish("cpu_kernels");
}
