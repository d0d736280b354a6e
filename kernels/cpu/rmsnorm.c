/* rmsnorm: HF's RMSNorm with ggml's double sum of squares. The sum runs in
 * eight interleaved double lanes (lane l takes the elements i = l mod 8, in
 * order, fused), added as ((0+4)+(2+6))+((1+5)+(3+7)): the same bits on
 * every path, and 8x shorter a dependency chain than one running sum. */
#include "kernels/cpu/kernels_cpu.h"

#include <math.h>

static double sumsq_portable(const float *x, int64_t n) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < n; i++) s[i % 8] = fma((double)x[i], (double)x[i], s[i % 8]);
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

static void scale_portable(const float *x, const float *w, float scale, int64_t n, float *o) {
    for (int64_t i = 0; i < n; i++) o[i] = w[i] * (x[i] * scale);
}

#if defined(__x86_64__)
#include <immintrin.h>

static inline __attribute__((always_inline)) double lanes8(const double *s) {
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

static __attribute__((target("avx512f,avx512vl"))) double sumsq16(const float *x, int64_t n) {
    __m512d s = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 8) {
        const __mmask8 m = (__mmask8)(n - i >= 8 ? 0xff : (1u << (n - i)) - 1);
        const __m512d d = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, x + i));
        s = _mm512_fmadd_pd(d, d, s);   /* masked lanes: fma(0, 0, s) = s */
    }
    double l[8];
    _mm512_storeu_pd(l, s);
    return lanes8(l);
}

static __attribute__((target("avx512f"))) void scale16(const float *x, const float *w, float scale, int64_t n, float *o) {
    const __m512 sc = _mm512_set1_ps(scale);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = (__mmask16)(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(o + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + i),
                                                      _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), sc)));
    }
}

static __attribute__((target("avx2,fma"))) double sumsq8(const float *x, int64_t n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256d d0 = _mm256_cvtps_pd(_mm_loadu_ps(x + i)), d1 = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        s0 = _mm256_fmadd_pd(d0, d0, s0);
        s1 = _mm256_fmadd_pd(d1, d1, s1);
    }
    double l[8];
    _mm256_storeu_pd(l, s0);
    _mm256_storeu_pd(l + 4, s1);
    for (; i < n; i++) l[i % 8] = fma((double)x[i], (double)x[i], l[i % 8]);
    return lanes8(l);
}

static __attribute__((target("avx2"))) void scale8(const float *x, const float *w, float scale, int64_t n, float *o) {
    const __m256 sc = _mm256_set1_ps(scale);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), sc)));
    scale_portable(x + i, w + i, scale, n - i, o + i);
}
#endif

void st_cpu_rmsnorm_part(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out,
                         int64_t r0, int64_t r1) {
    const st_cpu_isa isa = st_cpu_isa_current();
    (void)isa;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * n;
        float *o = out + r * n;
        double ss;
#if defined(__x86_64__)
        if (isa == ST_CPU_ISA_AVX512) ss = sumsq16(xr, n);
        else if (isa == ST_CPU_ISA_AVX2) ss = sumsq8(xr, n);
        else
#endif
            ss = sumsq_portable(xr, n);
        const float var = (float)(ss / (double)n);
        const float scale = 1.0f / sqrtf(var + eps);
#if defined(__x86_64__)
        if (isa == ST_CPU_ISA_AVX512) scale16(xr, w, scale, n, o);
        else if (isa == ST_CPU_ISA_AVX2) scale8(xr, w, scale, n, o);
        else
#endif
            scale_portable(xr, w, scale, n, o);
    }
}

void st_cpu_rmsnorm(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out) {
    st_cpu_rmsnorm_part(x, w, rows, n, eps, out, 0, rows);
}
