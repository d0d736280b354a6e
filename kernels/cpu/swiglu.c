/* swiglu: silu(gate) * up = g / (1 + exp(-g)) * up, with the kernels' own
 * exp (expf-impl.h): 16 or 8 lanes where the CPU has them, the plain C
 * function elsewhere and for the tail, every element the same bits on every
 * path. */
#include "kernels/cpu/expf-impl.h"
#include "kernels/cpu/kernels_cpu.h"

static inline float silu_mul(float g, float u) {
    const float e = st_expf(-g);
    const float d = 1.0f + e;
    return g / d * u;
}

#if defined(__x86_64__)
/* -g as the scalar path computes it: the sign flipped (also of 0 and NaN) */
static inline __attribute__((always_inline, target("avx512f"))) __m512 neg16(__m512 g) {
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(g), _mm512_set1_epi32(INT32_MIN)));
}

static __attribute__((target("avx512f"))) int64_t swiglu16(const float *gate, const float *up, float *out, int64_t i0,
                                                          int64_t i1) {
    int64_t i = i0;
    for (; i + 16 <= i1; i += 16) {
        const __m512 g = _mm512_loadu_ps(gate + i);
        const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), st_expf16(neg16(g)));
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_div_ps(g, d), _mm512_loadu_ps(up + i)));
    }
    return i;
}

static __attribute__((target("avx2,fma"))) int64_t swiglu8(const float *gate, const float *up, float *out, int64_t i0,
                                                          int64_t i1) {
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 d = _mm256_add_ps(_mm256_set1_ps(1.0f), st_expf8(_mm256_xor_ps(g, _mm256_set1_ps(-0.0f))));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, d), _mm256_loadu_ps(up + i)));
    }
    return i;
}
#endif

void st_cpu_swiglu_part(const float *gate, const float *up, float *out, int64_t i0, int64_t i1) {
    int64_t i = i0;
#if defined(__x86_64__)
    const st_cpu_isa isa = st_cpu_isa_current();
    if (isa == ST_CPU_ISA_AVX512) i = swiglu16(gate, up, out, i0, i1);
    else if (isa == ST_CPU_ISA_AVX2) i = swiglu8(gate, up, out, i0, i1);
#endif
    for (; i < i1; i++) out[i] = silu_mul(gate[i], up[i]);
}

void st_cpu_swiglu(const float *gate, const float *up, int64_t n, float *out) {
    st_cpu_swiglu_part(gate, up, out, 0, n);
}
