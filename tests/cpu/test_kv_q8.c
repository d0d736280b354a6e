/* The Q8_0 KV cache on the CPU: kv_store writes GGUF Q8_0 blocks (checked
 * byte by byte on hand-computed blocks and by the per-element rounding bound
 * on random rows); attention over it matches a double-precision softmax over
 * the dequantized cache (2e-6, as the float caches), and matches attention
 * over the unquantized fp32 K/V within the bound derived in docs/numerics.md
 * ("Q8_0 KV cache"), computed here per output from the data. Odd positions
 * (tile edges at 256), GQA, heads that share a block (head_dim 16), batched
 * slots, both the AVX2 and the portable path. */
#include "check.h"
#include "rng.h"
#include "kernels/cpu/kernels_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float blk_d(const uint8_t *b) { return st_f16_to_f32((uint16_t)(b[0] | (b[1] << 8))); }

/* Largest error of one element of a block of max|x| = amax: round to nearest
 * of x / d (d = amax / 127; 1/d taken in fp32: +1e-4 of a step), the fp16
 * rounding of d (2^-11 relative, 127 q at most; 2^-25 absolute when d is
 * subnormal in fp16). */
static double q8_elem_bound(double amax) {
    return amax * (0.5001 / 127.0 + 1.0 / 2048.0) + 127.0 * ldexp(1.0, -25);
}

static void test_store_blocks(void) {
    /* one row of 2 kv heads x 32: block 0 = i - 16, block 1 = zeros */
    float k[64] = {0}, v[64] = {0};
    for (int i = 0; i < 32; i++) { k[i] = (float)(i - 16); v[i] = 0.5f * (float)(i - 16); }
    uint8_t kc[2 * 68], vc[2 * 68];
    memset(kc, 0xAB, sizeof kc);
    memset(vc, 0xAB, sizeof vc);
    int32_t pos = 1;
    CHECK_OK(st_cpu_kv_store(kc, vc, ST_DTYPE_Q8_0, 1, 2, 2, 32, k, v, 1, &pos, NULL));
    const uint8_t *b = kc + 68;   /* row 1 */
    /* d = 16 / 127 as fp16; q = round((i - 16) * 127 / 16) half away from zero */
    uint16_t d16 = st_f32_to_f16(16.0f / 127.0f);
    CHECK(b[0] == (d16 & 0xff) && b[1] == (d16 >> 8));
    const int8_t want[8] = {-127, -119, -111, -103, -95, -87, -79, -71};   /* i = 0..7: (i-16)*7.9375 */
    for (int i = 0; i < 8; i++) CHECK_MSG((int8_t)b[2 + i] == want[i], "q[%d] = %d, want %d", i, (int8_t)b[2 + i], want[i]);
    CHECK((int8_t)b[2 + 16] == 0 && (int8_t)b[2 + 17] == 8 && (int8_t)b[2 + 18] == 16 && (int8_t)b[2 + 31] == 119);
    /* an all-zero block: d = 0, q = 0 */
    for (int i = 0; i < 34; i++) CHECK_MSG(b[34 + i] == 0, "zero block byte %d is %u", i, b[34 + i]);
    /* row 0 untouched */
    CHECK(kc[0] == 0xAB && kc[67] == 0xAB);
    /* v: d = 8 / 127, the same q */
    CHECK(blk_d(vc + 68) == st_f16_to_f32(st_f32_to_f16(8.0f / 127.0f)) && (int8_t)vc[68 + 2] == -127);
    /* a block holding NaN or inf reads back as NaN, never as a finite number */
    k[3] = NAN;
    v[40] = INFINITY;
    pos = 0;
    CHECK_OK(st_cpu_kv_store(kc, vc, ST_DTYPE_Q8_0, 1, 2, 2, 32, k, v, 1, &pos, NULL));
    float back[64];
    CHECK_OK(st_dtype_to_f32(ST_DTYPE_Q8_0, kc, back, 64));
    CHECK(isnan(back[0]) && isnan(back[31]) && back[32] == 0.0f);
    CHECK_OK(st_dtype_to_f32(ST_DTYPE_Q8_0, vc, back, 64));
    CHECK(isnan(back[32]) && !isnan(back[0]));
    /* rows that are not whole blocks */
    CHECK_ERR(st_cpu_kv_store(kc, vc, ST_DTYPE_Q8_0, 1, 2, 1, 24, k, v, 1, &pos, NULL), ST_ERR_UNSUPPORTED,
              "multiple of 32 values (1 kv heads x head_dim 24)");
    float q[24] = {0}, out[24];
    CHECK_ERR(st_cpu_attention(kc, vc, ST_DTYPE_Q8_0, 1, 2, 1, 24, q, 1, 1, &pos, NULL, 1.0f, out), ST_ERR_UNSUPPORTED,
              "multiple of 32 values");
}

/* Random rows (scales from 1e-4 to 1e3): every element within q8_elem_bound of its block's max. */
static void test_store_bound(void) {
    const int64_t W = 8 * 32;
    float x[8 * 32], y[8 * 32], back[8 * 32];
    uint8_t kc[8 * 34], vc[8 * 34];
    int32_t pos = 0;
    double worst_ratio = 0;
    for (int rep = 0; rep < 200; rep++) {
        for (int64_t i = 0; i < W; i++) {
            double mag = pow(10.0, -4.0 + 7.0 * (double)((rng_u64() >> 11) % 1000) / 1000.0);
            x[i] = (float)(rng_f() * mag);
            y[i] = rng_f();
        }
        CHECK_OK(st_cpu_kv_store(kc, vc, ST_DTYPE_Q8_0, 1, 1, 4, 64, x, y, 1, &pos, NULL));
        CHECK_OK(st_dtype_to_f32(ST_DTYPE_Q8_0, kc, back, W));
        for (int64_t b = 0; b < W / 32; b++) {
            double amax = 0;
            for (int i = 0; i < 32; i++) amax = fmax(amax, fabs(x[b * 32 + i]));
            for (int i = 0; i < 32; i++) {
                double err = fabs((double)back[b * 32 + i] - x[b * 32 + i]);
                worst_ratio = fmax(worst_ratio, err / q8_elem_bound(amax));
            }
        }
    }
    CHECK_MSG(worst_ratio <= 1.0, "q8_0 store: an element is %.3fx its rounding bound", worst_ratio);
    CHECK_MSG(worst_ratio > 0.5, "q8_0 store: the worst element is only %.3fx its bound (not rounding at all?)", worst_ratio);
}

/* softmax(q K^T * scale) V in double over fp32 K, V (n_keys rows of Hkv x D at stride Hkv*D, head g) */
static void ref_attn(const float *q, const float *K, const float *V, int64_t n_keys, int64_t Hkv, int64_t D, int64_t g,
                     double scale, double *sc, double *out) {
    double mx = -1e300, sum = 0;
    for (int64_t j = 0; j < n_keys; j++) {
        double d = 0;
        for (int64_t i = 0; i < D; i++) d += (double)q[i] * K[(j * Hkv + g) * D + i];
        sc[j] = d * scale;
        mx = fmax(mx, sc[j]);
    }
    for (int64_t j = 0; j < n_keys; j++) { sc[j] = exp(sc[j] - mx); sum += sc[j]; }
    for (int64_t i = 0; i < D; i++) {
        double o = 0;
        for (int64_t j = 0; j < n_keys; j++) o += sc[j] / sum * V[(j * Hkv + g) * D + i];
        out[i] = o;
    }
}

/* The bound of docs/numerics.md for output element i of query q over keys 0..n_keys-1 of head g:
 *   Delta = scale * max_j sum_i |q_i| E(K_j, block of i)     (score error)
 *   |o' - o|_i <= (exp(2 Delta) - 1) max_j |V_ji| + max_j E(V_j, block of i) + 4e-6 (fp32 of both sides) */
static void q8_bound(const float *q, const float *K, const float *V, int64_t n_keys, int64_t Hkv, int64_t D, int64_t g,
                     double scale, double *bound) {
    const int64_t W = Hkv * D;
    double delta = 0;
    for (int64_t j = 0; j < n_keys; j++) {
        double s = 0;
        for (int64_t i = 0; i < D; i++) {
            int64_t e = g * D + i, b0 = e / 32 * 32;
            double amax = 0;
            for (int k = 0; k < 32; k++) amax = fmax(amax, fabs(K[j * W + b0 + k]));
            s += fabs(q[i]) * q8_elem_bound(amax);
        }
        delta = fmax(delta, s * scale);
    }
    for (int64_t i = 0; i < D; i++) {
        int64_t e = g * D + i, b0 = e / 32 * 32;
        double vmax = 0, ev = 0;
        for (int64_t j = 0; j < n_keys; j++) {
            double amax = 0;
            for (int k = 0; k < 32; k++) amax = fmax(amax, fabs(V[j * W + b0 + k]));
            vmax = fmax(vmax, fabs(V[j * W + e]));
            ev = fmax(ev, q8_elem_bound(amax));
        }
        bound[i] = expm1(2.0 * delta) * vmax + ev + 4e-6;
    }
}

/* One sequence: q8_0 attention vs the double reference over the dequantized cache
 * (kernel arithmetic) and over the fp32 K, V (the quantization, within the bound). */
static void test_attention(int64_t Hkv, int64_t D) {
    const int64_t n_ctx = 600, H = 2 * Hkv, T = 6, W = Hkv * D;
    int32_t pos[6] = {0, 3, 255, 256, 511, 599};
    const size_t rb = st_dtype_row_bytes(ST_DTYPE_Q8_0, W);
    uint8_t *kc = calloc((size_t)n_ctx, rb), *vc = calloc((size_t)n_ctx, rb);
    float *K = malloc(sizeof(float) * (size_t)(n_ctx * W)), *V = malloc(sizeof(float) * (size_t)(n_ctx * W));
    float *Kd = malloc(sizeof(float) * (size_t)(n_ctx * W)), *Vd = malloc(sizeof(float) * (size_t)(n_ctx * W));
    float *q = malloc(sizeof(float) * (size_t)(T * H * D)), *out = malloc(sizeof(float) * (size_t)(T * H * D));
    double *sc = malloc(sizeof(double) * (size_t)n_ctx), ref[128], refd[128], bound[128];
    int32_t all[600];
    for (int i = 0; i < n_ctx; i++) all[i] = i;
    /* keys with a per-row outlier channel (as real K caches have), values in [-1, 1) */
    for (int64_t i = 0; i < n_ctx * W; i++) { K[i] = 2.0f * rng_f() + (i % 29 == 0 ? 6.0f : 0.0f); V[i] = rng_f(); }
    for (int64_t i = 0; i < T * H * D; i++) q[i] = rng_f();
    /* store in two calls of odd sizes (prefill chunk + the rest) */
    CHECK_OK(st_cpu_kv_store(kc, vc, ST_DTYPE_Q8_0, 1, n_ctx, Hkv, D, K, V, 257, all, NULL));
    CHECK_OK(st_cpu_kv_store(kc, vc, ST_DTYPE_Q8_0, 1, n_ctx, Hkv, D, K + 257 * W, V + 257 * W, n_ctx - 257, all + 257, NULL));
    CHECK_OK(st_dtype_to_f32(ST_DTYPE_Q8_0, kc, Kd, n_ctx * W));
    CHECK_OK(st_dtype_to_f32(ST_DTYPE_Q8_0, vc, Vd, n_ctx * W));
    const float scale = 1.0f / sqrtf((float)D);
    CHECK_OK(st_cpu_attention(kc, vc, ST_DTYPE_Q8_0, 1, n_ctx, Hkv, D, q, T, H, pos, NULL, scale, out));
    double worst_k = 0, worst_ratio = 0, worst_q = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            const int64_t g = h / (H / Hkv);
            const float *qv = q + (t * H + h) * D;
            ref_attn(qv, Kd, Vd, pos[t] + 1, Hkv, D, g, scale, sc, refd);
            ref_attn(qv, K, V, pos[t] + 1, Hkv, D, g, scale, sc, ref);
            q8_bound(qv, K, V, pos[t] + 1, Hkv, D, g, scale, bound);
            for (int64_t i = 0; i < D; i++) {
                double o = out[(t * H + h) * D + i];
                worst_k = fmax(worst_k, fabs(o - refd[i]));
                worst_q = fmax(worst_q, fabs(o - ref[i]));
                worst_ratio = fmax(worst_ratio, fabs(o - ref[i]) / bound[i]);
            }
        }
    CHECK_MSG(worst_k < 2e-6, "q8_0 attention (Hkv %lld, D %lld, %s) vs the dequantized cache: worst abs error %.3g",
              (long long)Hkv, (long long)D, st_cpu_kernels_simd(), worst_k);
    CHECK_MSG(worst_ratio <= 1.0, "q8_0 attention (Hkv %lld, D %lld, %s) vs the fp32 K/V: %.3g, %.3fx the derived bound",
              (long long)Hkv, (long long)D, st_cpu_kernels_simd(), worst_q, worst_ratio);
    CHECK_MSG(worst_q > 1e-5, "q8_0 attention differs from fp32 by only %.3g: is the cache quantized?", worst_q);
    /* decode (one token per call) gives the same bits */
    float *one = malloc(sizeof(float) * (size_t)(H * D));
    bool same = true;
    for (int64_t t = 0; t < T; t++) {
        CHECK_OK(st_cpu_attention(kc, vc, ST_DTYPE_Q8_0, 1, n_ctx, Hkv, D, q + t * H * D, 1, H, &pos[t], NULL, scale, one));
        if (memcmp(one, out + t * H * D, sizeof(float) * (size_t)(H * D))) same = false;
    }
    CHECK(same);
    free(one); free(sc); free(kc); free(vc); free(K); free(V); free(Kd); free(Vd); free(q); free(out);
}

/* A batched decode step over 3 slots of different contents: same bits as one call per
 * sequence, within the bound of each sequence's fp32 K/V. */
static void test_slots(void) {
    const int64_t n_slots = 3, n_ctx = 300, Hkv = 2, H = 4, D = 64, T = 5, W = Hkv * D;
    const size_t rb = st_dtype_row_bytes(ST_DTYPE_Q8_0, W);
    uint8_t *kc = calloc((size_t)(n_slots * n_ctx), rb), *vc = calloc((size_t)(n_slots * n_ctx), rb);
    float *K = malloc(sizeof(float) * (size_t)(n_slots * n_ctx * W)), *V = malloc(sizeof(float) * (size_t)(n_slots * n_ctx * W));
    int32_t all[300], slot_of[300];
    for (int i = 0; i < n_ctx; i++) all[i] = i;
    for (int sl = 0; sl < n_slots; sl++) {
        float *k = K + sl * n_ctx * W, *v = V + sl * n_ctx * W;
        for (int64_t i = 0; i < n_ctx * W; i++) { k[i] = (float)(sl + 1) * rng_f(); v[i] = rng_f(); }
        for (int i = 0; i < n_ctx; i++) slot_of[i] = sl;
        CHECK_OK(st_cpu_kv_store(kc, vc, ST_DTYPE_Q8_0, n_slots, n_ctx, Hkv, D, k, v, n_ctx, all, slot_of));
    }
    float q[5 * 4 * 64], out[5 * 4 * 64], one[4 * 64];
    for (int64_t i = 0; i < T * H * D; i++) q[i] = rng_f();
    int32_t pos[5] = {299, 0, 131, 257, 77}, slot[5] = {2, 1, 0, 1, 2};
    const float scale = 0.125f;
    CHECK_OK(st_cpu_attention(kc, vc, ST_DTYPE_Q8_0, n_slots, n_ctx, Hkv, D, q, T, H, pos, slot, scale, out));
    double sc[300], ref[64], bound[64], worst_ratio = 0;
    bool same = true;
    for (int64_t t = 0; t < T; t++) {
        CHECK_OK(st_cpu_attention(kc, vc, ST_DTYPE_Q8_0, n_slots, n_ctx, Hkv, D, q + t * H * D, 1, H, &pos[t], &slot[t],
                                  scale, one));
        if (memcmp(one, out + t * H * D, sizeof one)) same = false;
        const float *k = K + slot[t] * n_ctx * W, *v = V + slot[t] * n_ctx * W;
        for (int64_t h = 0; h < H; h++) {
            const int64_t g = h / (H / Hkv);
            ref_attn(q + (t * H + h) * D, k, v, pos[t] + 1, Hkv, D, g, scale, sc, ref);
            q8_bound(q + (t * H + h) * D, k, v, pos[t] + 1, Hkv, D, g, scale, bound);
            for (int64_t i = 0; i < D; i++)
                worst_ratio = fmax(worst_ratio, fabs(out[(t * H + h) * D + i] - ref[i]) / bound[i]);
        }
    }
    CHECK_MSG(same, "q8_0 attention over slots: a batched call differs from per-sequence calls");
    CHECK_MSG(worst_ratio <= 1.0, "q8_0 attention over slots: %.3fx the derived bound", worst_ratio);
    free(kc); free(vc); free(K); free(V);
}

int main(void) {
    rng_seed(7);
    test_store_blocks();
    test_store_bound();
    for (int path = 0; path < 2; path++) {
        st_cpu_kernels_force_portable(path == 1);
        test_attention(2, 16);    /* two heads per block */
        test_attention(2, 32);
        test_attention(1, 64);
        test_attention(2, 128);
        test_slots();
    }
    return st_test_finish("cpu_kv_q8");
}
