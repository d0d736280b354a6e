/* kernels/cpu/expf-impl.h — the exponential of the CPU kernels (swiglu's
 * silu, attention's softmax): one algorithm written three times, in plain C
 * (the reference) and for 8 and 16 lanes, with the same fp32 operations in
 * the same order, so every lane of every path gives the same bits as the
 * scalar function, wherever the value sits in a buffer (batch invariance).
 *
 * exp(x) = 2^n * e^r, n = rint(x * log2 e), r = x - n ln 2 (two fused steps,
 * Cody-Waite), e^r by Cephes' degree-7 polynomial on |r| <= ln2/2. Measured
 * against the exact exp over every fp32 in [-86, 88.72]: at most 1 ulp
 * (tests/cpu/test_kernels.c). x > 88.7228 gives +inf, x < -86 gives +0 (the
 * exact value is below 4.5e-38, where nothing the kernels add it to can see
 * it), NaN gives NaN. glibc's expf (the previous implementation) is
 * correctly rounded but scalar: 3.5 ns per value, 4% of a prefill. */
#ifndef STRATA_KERNELS_CPU_EXPF_IMPL_H
#define STRATA_KERNELS_CPU_EXPF_IMPL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define ST_EXP_HI 88.7228f
#define ST_EXP_LO (-86.0f)
#define ST_EXP_LOG2E 1.44269504088896341f
#define ST_EXP_LN2A 0.693359375f        /* ln 2 = LN2A - LN2B, LN2A exact in 9 bits */
#define ST_EXP_LN2B (-2.12194440e-4f)
#define ST_EXP_P0 1.9875691500e-4f
#define ST_EXP_P1 1.3981999507e-3f
#define ST_EXP_P2 8.3334519073e-3f
#define ST_EXP_P3 4.1665795894e-2f
#define ST_EXP_P4 1.6666665459e-1f
#define ST_EXP_P5 5.0000001201e-1f

/* One operation per statement and fmaf() where a multiply-add is meant, so
 * no compiler contraction can make this differ from the vector versions. */
static inline float st_expf(float x) {
    if (x != x) return x;
    if (x > ST_EXP_HI) return INFINITY;
    if (x < ST_EXP_LO) return 0.0f;
    const float t = x * ST_EXP_LOG2E;
    const float n = rintf(t);
    float r = fmaf(n, -ST_EXP_LN2A, x);
    r = fmaf(n, -ST_EXP_LN2B, r);
    float p = fmaf(ST_EXP_P0, r, ST_EXP_P1);
    p = fmaf(p, r, ST_EXP_P2);
    p = fmaf(p, r, ST_EXP_P3);
    p = fmaf(p, r, ST_EXP_P4);
    p = fmaf(p, r, ST_EXP_P5);
    const float r2 = r * r;
    float y = fmaf(p, r2, r);
    y = y + 1.0f;
    y = y + y;                                   /* 2 e^r, exact: n - 1 >= -125 stays a normal exponent */
    const uint32_t bits = (uint32_t)((int32_t)n - 1 + 127) << 23;
    float s;
    memcpy(&s, &bits, 4);
    return y * s;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

static inline __attribute__((always_inline, target("avx2,fma"))) __m256 st_expf8(__m256 x) {
    const __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(ST_EXP_LOG2E));
    const __m256 n = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-ST_EXP_LN2A), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-ST_EXP_LN2B), r);
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(ST_EXP_P0), r, _mm256_set1_ps(ST_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ST_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ST_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ST_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(ST_EXP_P5));
    const __m256 r2 = _mm256_mul_ps(r, r);
    __m256 y = _mm256_fmadd_ps(p, r2, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    y = _mm256_add_ps(y, y);
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(126)), 23);
    __m256 v = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    v = _mm256_blendv_ps(v, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(ST_EXP_LO), _CMP_LT_OQ));
    v = _mm256_blendv_ps(v, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, _mm256_set1_ps(ST_EXP_HI), _CMP_GT_OQ));
    return _mm256_blendv_ps(v, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

static inline __attribute__((always_inline, target("avx512f"))) __m512 st_expf16(__m512 x) {
    const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(ST_EXP_LOG2E));
    const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-ST_EXP_LN2A), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-ST_EXP_LN2B), r);
    __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(ST_EXP_P0), r, _mm512_set1_ps(ST_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ST_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ST_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ST_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(ST_EXP_P5));
    const __m512 r2 = _mm512_mul_ps(r, r);
    __m512 y = _mm512_fmadd_ps(p, r2, r);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    y = _mm512_add_ps(y, y);
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(126)), 23);
    __m512 v = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(x, _mm512_set1_ps(ST_EXP_LO), _CMP_LT_OQ), _mm512_setzero_ps());
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(x, _mm512_set1_ps(ST_EXP_HI), _CMP_GT_OQ), _mm512_set1_ps(INFINITY));
    return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}
#endif

#endif /* STRATA_KERNELS_CPU_EXPF_IMPL_H */
