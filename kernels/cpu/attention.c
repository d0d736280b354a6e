/* attention: causal GQA over the KV cache, fp32 scores and softmax.
 * A Q8_0 cache (blocks of 32: fp16 scale + 32 int8) is widened to fp32 in
 * registers, k = q * d; its error bound is derived in docs/numerics.md.
 * Keys are visited in tiles of ATT_TILE: the tile's scores are materialised,
 * then folded into a running max / sum / output (the same result as one
 * softmax over all scores up to rounding, with no scratch beyond the stack). */
#include "kernels/cpu/expf-impl.h"
#include "kernels/cpu/kernels_cpu.h"

#include <math.h>
#include <string.h>

#define ATT_TILE 256
#define ATT_MAX_DIM 1024

static inline const float *kv_row(const void *cache, st_dtype dt, size_t row_bytes, int64_t j, int64_t g,
                                   int64_t head_dim, float *buf) {
    if (dt == ST_DTYPE_Q8_0) {   /* the blocks tile the whole row: head g may start inside one */
        const uint8_t *r = (const uint8_t *)cache + (size_t)j * row_bytes;
        for (int64_t i = 0, e = g * head_dim; i < head_dim; i++, e++) {
            const uint8_t *b = r + (size_t)(e / 32) * 34;
            buf[i] = (float)(int8_t)b[2 + e % 32] * st_f16_to_f32((uint16_t)(b[0] | (b[1] << 8)));
        }
        return buf;
    }
    const uint8_t *p = (const uint8_t *)cache + (size_t)j * row_bytes + st_dtype_row_bytes(dt, g * head_dim);
    if (dt == ST_DTYPE_F32) return (const float *)p;
    st_dtype_to_f32(dt, p, buf, head_dim);
    return buf;
}

static inline float dot8(const float *a, const float *b, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += a[i + l] * b[i + l];
    float r = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

/* AVX2 + FMA + F16C versions of the two inner loops (head_dim % 8 == 0): the
 * same 8-lane structure as dot8, the key/value row widened in registers.
 * ld8 reads elements i..i+7 of a cache row (i % 8 == 0: one Q8_0 block). */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TGT __attribute__((target("avx2,fma,f16c")))

#define AINL static inline __attribute__((always_inline)) TGT
AINL __m256 ld8(st_dtype dt, const uint8_t *p, int64_t i) {
    if (dt == ST_DTYPE_F32) return _mm256_loadu_ps((const float *)p + i);
    if (dt == ST_DTYPE_Q8_0) {   /* 8 values of block i / 32: int8 -> fp32, times the block's fp16 scale */
        const uint8_t *b = p + (size_t)(i / 32) * 34;
        __m128i q = _mm_loadl_epi64((const __m128i *)(b + 2 + i % 32));
        __m256 d = _mm256_cvtph_ps(_mm_set1_epi16((short)(b[0] | (b[1] << 8))));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
    }
    __m128i h = _mm_loadu_si128((const __m128i *)(p + 2 * i));
    if (dt == ST_DTYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

AINL float hsum8(__m256 a) {
    float l[8];
    _mm256_storeu_ps(l, a);
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* ((a[0]+a[4])+(a[2]+a[6]))+((a[1]+a[5])+(a[3]+a[7])) of eight vectors a_k at
 * once, lane k = a_k's sum (hsum8's order): an 8x8 transpose, then vector adds */
AINL __m256 hsum8x8(const __m256 *a) {
    const __m256 t0 = _mm256_unpacklo_ps(a[0], a[1]), t1 = _mm256_unpackhi_ps(a[0], a[1]);
    const __m256 t2 = _mm256_unpacklo_ps(a[2], a[3]), t3 = _mm256_unpackhi_ps(a[2], a[3]);
    const __m256 t4 = _mm256_unpacklo_ps(a[4], a[5]), t5 = _mm256_unpackhi_ps(a[4], a[5]);
    const __m256 t6 = _mm256_unpacklo_ps(a[6], a[7]), t7 = _mm256_unpackhi_ps(a[6], a[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    /* v_j: lane k = element j of a_k */
    const __m256 v0 = _mm256_permute2f128_ps(u0, u4, 0x20), v4 = _mm256_permute2f128_ps(u0, u4, 0x31);
    const __m256 v1 = _mm256_permute2f128_ps(u1, u5, 0x20), v5 = _mm256_permute2f128_ps(u1, u5, 0x31);
    const __m256 v2 = _mm256_permute2f128_ps(u2, u6, 0x20), v6 = _mm256_permute2f128_ps(u2, u6, 0x31);
    const __m256 v3 = _mm256_permute2f128_ps(u3, u7, 0x20), v7 = _mm256_permute2f128_ps(u3, u7, 0x31);
    return _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(v0, v4), _mm256_add_ps(v2, v6)),
                         _mm256_add_ps(_mm256_add_ps(v1, v5), _mm256_add_ps(v3, v7)));
}

/* scores s[jj] = (q . k_j) * scale for the tile; returns the tile max. Eight,
 * then four keys at a time (independent chains, each key's sum as for one). */
AINL float tile_scores(const float *qv, const uint8_t *kbase, int64_t e0, size_t row_bytes, st_dtype dt,
                       int64_t head_dim, int64_t nj, float scale, float *s) {
    float mt = -INFINITY;
    int64_t jj = 0;
    for (; jj + 8 <= nj; jj += 8) {
        const uint8_t *kr = kbase + (size_t)jj * row_bytes;
        __m256 a[8];
        for (int k = 0; k < 8; k++) a[k] = _mm256_setzero_ps();
        for (int64_t i = 0; i < head_dim; i += 8) {
            const __m256 qi = _mm256_loadu_ps(qv + i);
            for (int k = 0; k < 8; k++) a[k] = _mm256_fmadd_ps(qi, ld8(dt, kr + (size_t)k * row_bytes, e0 + i), a[k]);
        }
        _mm256_storeu_ps(s + jj, _mm256_mul_ps(hsum8x8(a), _mm256_set1_ps(scale)));
    }
    for (; jj + 4 <= nj; jj += 4) {
        const uint8_t *kr = kbase + (size_t)jj * row_bytes;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < head_dim; i += 8) {
            const __m256 qi = _mm256_loadu_ps(qv + i);
            a0 = _mm256_fmadd_ps(qi, ld8(dt, kr, e0 + i), a0);
            a1 = _mm256_fmadd_ps(qi, ld8(dt, kr + row_bytes, e0 + i), a1);
            a2 = _mm256_fmadd_ps(qi, ld8(dt, kr + 2 * row_bytes, e0 + i), a2);
            a3 = _mm256_fmadd_ps(qi, ld8(dt, kr + 3 * row_bytes, e0 + i), a3);
        }
        s[jj] = hsum8(a0) * scale;
        s[jj + 1] = hsum8(a1) * scale;
        s[jj + 2] = hsum8(a2) * scale;
        s[jj + 3] = hsum8(a3) * scale;
    }
    for (; jj < nj; jj++) {
        const uint8_t *kr = kbase + (size_t)jj * row_bytes;
        __m256 a = _mm256_setzero_ps();
        for (int64_t i = 0; i < head_dim; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(qv + i), ld8(dt, kr, e0 + i), a);
        s[jj] = hsum8(a) * scale;
    }
    for (jj = 0; jj < nj; jj++)
        if (s[jj] > mt) mt = s[jj];
    return mt;
}

/* s[jj] = exp(s[jj] - m), 8 at a time (the same bits as st_expf; the tail
 * through a zero-padded vector), and their sum into eight lanes l8 (lane k
 * the keys jj = k mod 8, in order): no scalar chain of additions */
static TGT void tile_exp_avx2(float *s, int64_t nj, float m, float *l8) {
    __m256 l = _mm256_loadu_ps(l8);
    const __m256 mv = _mm256_set1_ps(m);
    int64_t jj = 0;
    for (; jj + 8 <= nj; jj += 8) {
        const __m256 e = st_expf8(_mm256_sub_ps(_mm256_loadu_ps(s + jj), mv));
        _mm256_storeu_ps(s + jj, e);
        l = _mm256_add_ps(l, e);
    }
    if (jj < nj) {
        float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t k = jj; k < nj; k++) t[k - jj] = s[k];
        __m256 e = st_expf8(_mm256_sub_ps(_mm256_loadu_ps(t), mv));
        e = _mm256_blendv_ps(_mm256_setzero_ps(), e,   /* lanes past the tile add nothing */
                             _mm256_cmp_ps(_mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_ps((float)(nj - jj)), _CMP_LT_OQ));
        _mm256_storeu_ps(t, e);
        for (int64_t k = jj; k < nj; k++) s[k] = t[k - jj];
        l = _mm256_add_ps(l, e);
    }
    _mm256_storeu_ps(l8, l);
}

/* acc += sum_jj e[jj] * v_j, every element in key order; 64 elements (eight
 * independent chains) at a time, then 8 at a time */
AINL void tile_values(float *acc, const uint8_t *vbase, int64_t e0, size_t row_bytes, st_dtype dt,
                      int64_t head_dim, int64_t nj, const float *e) {
    int64_t i = 0;
    for (; i + 64 <= head_dim; i += 64) {
        __m256 a[8];
        for (int k = 0; k < 8; k++) a[k] = _mm256_loadu_ps(acc + i + 8 * k);
        for (int64_t jj = 0; jj < nj; jj++) {
            const __m256 ej = _mm256_set1_ps(e[jj]);
            const uint8_t *vr = vbase + (size_t)jj * row_bytes;
            for (int k = 0; k < 8; k++) a[k] = _mm256_fmadd_ps(ej, ld8(dt, vr, e0 + i + 8 * k), a[k]);
        }
        for (int k = 0; k < 8; k++) _mm256_storeu_ps(acc + i + 8 * k, a[k]);
    }
    for (; i < head_dim; i += 8) {
        __m256 a = _mm256_loadu_ps(acc + i);
        for (int64_t jj = 0; jj < nj; jj++)
            a = _mm256_fmadd_ps(_mm256_set1_ps(e[jj]), ld8(dt, vbase + (size_t)jj * row_bytes, e0 + i), a);
        _mm256_storeu_ps(acc + i, a);
    }
}

/* The two loops specialised per cache dtype (the widening inlined, no branch per load). */
static TGT float tile_scores_avx2(const float *qv, const uint8_t *kbase, int64_t e0, size_t row_bytes, st_dtype dt,
                                  int64_t head_dim, int64_t nj, float scale, float *s) {
    switch (dt) {
    case ST_DTYPE_F32: return tile_scores(qv, kbase, e0, row_bytes, ST_DTYPE_F32, head_dim, nj, scale, s);
    case ST_DTYPE_F16: return tile_scores(qv, kbase, e0, row_bytes, ST_DTYPE_F16, head_dim, nj, scale, s);
    case ST_DTYPE_BF16: return tile_scores(qv, kbase, e0, row_bytes, ST_DTYPE_BF16, head_dim, nj, scale, s);
    default: return tile_scores(qv, kbase, e0, row_bytes, ST_DTYPE_Q8_0, head_dim, nj, scale, s);
    }
}

static TGT void tile_values_avx2(float *acc, const uint8_t *vbase, int64_t e0, size_t row_bytes, st_dtype dt,
                                 int64_t head_dim, int64_t nj, const float *e) {
    switch (dt) {
    case ST_DTYPE_F32: tile_values(acc, vbase, e0, row_bytes, ST_DTYPE_F32, head_dim, nj, e); break;
    case ST_DTYPE_F16: tile_values(acc, vbase, e0, row_bytes, ST_DTYPE_F16, head_dim, nj, e); break;
    case ST_DTYPE_BF16: tile_values(acc, vbase, e0, row_bytes, ST_DTYPE_BF16, head_dim, nj, e); break;
    default: tile_values(acc, vbase, e0, row_bytes, ST_DTYPE_Q8_0, head_dim, nj, e); break;
    }
}
#endif

st_status st_cpu_attention_part(const void *k_cache, const void *v_cache, st_dtype kv_dtype, int64_t n_slots,
                                int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, const float *q, int64_t n_tok,
                                int64_t n_head, const int32_t *pos, const int32_t *slot, float scale, float *out,
                                int64_t task0, int64_t task1) {
    if (head_dim <= 0 || head_dim > ATT_MAX_DIM || n_head_kv <= 0 || n_head % n_head_kv) {
        return st_error_set(ST_ERR_UNSUPPORTED,
                            "attention: %lld query heads over %lld kv heads of dim %lld is not supported "
                            "(heads must be a multiple of kv heads, dim at most %d)",
                            (long long)n_head, (long long)n_head_kv, (long long)head_dim, ATT_MAX_DIM);
    }
    if (!st_cpu_kv_dtype_ok(kv_dtype))
        return st_error_set(ST_ERR_UNSUPPORTED, "attention: KV cache dtype %s is not supported", st_dtype_name(kv_dtype));
    if (kv_dtype == ST_DTYPE_Q8_0 && (n_head_kv * head_dim) % 32)
        return st_error_set(ST_ERR_UNSUPPORTED, "attention: a q8_0 KV cache needs rows of a multiple of 32 values "
                            "(%lld kv heads x head_dim %lld)", (long long)n_head_kv, (long long)head_dim);
    const int64_t group = n_head / n_head_kv;
    const bool simd = head_dim % 8 == 0 && strcmp(st_cpu_kernels_simd(), "portable") != 0;
    const size_t row_bytes = st_dtype_row_bytes(kv_dtype, n_head_kv * head_dim);
    float acc[ATT_MAX_DIM], kbuf[ATT_MAX_DIM], s[ATT_TILE];
    for (int64_t task = task0; task < task1; task++) {
        const int64_t t = task / n_head, h = task % n_head, g = h / group;
        const int64_t p = pos[t];
        if (p < 0 || p >= n_ctx) {
            st_error_set(ST_ERR_USAGE, "attention: position %lld is outside the KV cache of %lld tokens",
                         (long long)p, (long long)n_ctx);
            return st_error_hint("start a new sequence or run with a larger context (--ctx)");
        }
        const int64_t sl = slot ? slot[t] : 0;
        if (sl < 0 || sl >= n_slots) {
            st_error_set(ST_ERR_USAGE, "attention: sequence slot %lld is outside the %lld slots of the KV cache",
                         (long long)sl, (long long)n_slots);
            return st_error_hint("this is a scheduler bug; please report it");
        }
        const uint8_t *kc = (const uint8_t *)k_cache + (size_t)(sl * n_ctx) * row_bytes;
        const uint8_t *vc = (const uint8_t *)v_cache + (size_t)(sl * n_ctx) * row_bytes;
        const float *qv = q + (t * n_head + h) * head_dim;
        float m = -INFINITY, l = 0.0f, l8[8] = {0, 0, 0, 0, 0, 0, 0, 0};   /* l8: the SIMD path's sum in lanes */
        memset(acc, 0, (size_t)head_dim * sizeof(float));
        for (int64_t j0 = 0; j0 <= p; j0 += ATT_TILE) {
            const int64_t nj = ST_MIN(ATT_TILE, p + 1 - j0);
            const int64_t e0 = g * head_dim;   /* the head's first element in the row */
            float mt = -INFINITY;
            if (simd) {
#if defined(__x86_64__) || defined(__i386__)
                mt = tile_scores_avx2(qv, kc + (size_t)j0 * row_bytes, e0, row_bytes, kv_dtype,
                                      head_dim, nj, scale, s);
#endif
            } else {
                for (int64_t jj = 0; jj < nj; jj++) {
                    const float *kr = kv_row(kc, kv_dtype, row_bytes, j0 + jj, g, head_dim, kbuf);
                    s[jj] = dot8(qv, kr, head_dim) * scale;
                    if (s[jj] > mt) mt = s[jj];
                }
            }
            const float mn = mt > m ? mt : m;
            if (mn != m && j0 > 0) {   /* earlier tiles (whose sum is > 0: their max key gave 1) */
                const float corr = st_expf(m - mn);
                l *= corr;
                for (int k = 0; k < 8; k++) l8[k] *= corr;
                for (int64_t i = 0; i < head_dim; i++) acc[i] *= corr;
            }
            m = mn;
            if (simd) {
#if defined(__x86_64__) || defined(__i386__)
                tile_exp_avx2(s, nj, m, l8);
#endif
            } else {
                for (int64_t jj = 0; jj < nj; jj++) s[jj] = st_expf(s[jj] - m);
                for (int64_t jj = 0; jj < nj; jj++) l += s[jj];
            }
            if (simd) {
#if defined(__x86_64__) || defined(__i386__)
                tile_values_avx2(acc, vc + (size_t)j0 * row_bytes, e0, row_bytes, kv_dtype,
                                 head_dim, nj, s);
#endif
            } else {
                for (int64_t jj = 0; jj < nj; jj++) {
                    const float *vr = kv_row(vc, kv_dtype, row_bytes, j0 + jj, g, head_dim, kbuf);
                    for (int64_t i = 0; i < head_dim; i++) acc[i] += s[jj] * vr[i];
                }
            }
        }
        if (simd) l = ((l8[0] + l8[4]) + (l8[2] + l8[6])) + ((l8[1] + l8[5]) + (l8[3] + l8[7]));
        float *o = out + (t * n_head + h) * head_dim;
        for (int64_t i = 0; i < head_dim; i++) o[i] = acc[i] / l;
    }
    return ST_OK;
}

st_status st_cpu_attention(const void *k_cache, const void *v_cache, st_dtype kv_dtype, int64_t n_slots,
                           int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, const float *q, int64_t n_tok,
                           int64_t n_head, const int32_t *pos, const int32_t *slot, float scale, float *out) {
    return st_cpu_attention_part(k_cache, v_cache, kv_dtype, n_slots, n_ctx, n_head_kv, head_dim, q, n_tok, n_head,
                                 pos, slot, scale, out, 0, n_tok * n_head);
}
