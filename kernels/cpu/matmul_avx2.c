/* matmul, AVX2 + FMA + F16C path (Haswell / Zen 1 and later). The 16 lanes of
 * one (row, token) pair are two ymm (lanes 0-7 and 8-15); the arithmetic is
 * the one kernels_cpu.h specifies, so results equal the portable path
 * (matmul.c) bit for bit. Register tiles of R rows x T tokens run over the
 * whole row for every token count (each weight row is read once per 4 tokens).
 *
 * Integer dot products without VNNI: vpmaddubsw multiplies unsigned codes by
 * signed activations into saturating 16-bit pair sums. Codes of at most 6
 * bits (< 64) cannot saturate (2 * 63 * 127 < 32767); the 8-bit types (Q8_0,
 * IQ4_NL) use the signed weight w = u - o instead: |w| and v with w's sign,
 * 2 * 128 * 127 < 32767. Either way the 32-bit lane sum is the exact integer
 * sum (u - o) * v of the specification. */
#include "kernels/cpu/matmul-impl.h"

#if defined(__x86_64__)
#include <float.h>
#include <immintrin.h>
#include <math.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

#define TMAX 4

/* ---- activations ------------------------------------------------------------------- */

TGT void mm_avx2_quantize(const float *x, int64_t cols, void *qrow) {
    const int64_t P = qx_pad(cols), ng = cols / MM_GROUP;
    uint8_t *base = qrow;
    int8_t *v = (int8_t *)base;
    int32_t *xs = (int32_t *)(base + P);
    float *xsf = (float *)(base + 2 * P), *dv = (float *)(base + 3 * P), *dg = (float *)(base + 4 * P);
    const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(FLT_MAX);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t g = 0; g < ng; g++) {
        __m256 xv[4], m = _mm256_setzero_ps();
        int bad = 0;
        for (int k = 0; k < 4; k++) {
            xv[k] = _mm256_loadu_ps(x + g * 32 + 8 * k);
            __m256 ab = _mm256_andnot_ps(sign, xv[k]);
            bad |= _mm256_movemask_ps(_mm256_cmp_ps(ab, big, _CMP_NLE_UQ));
            m = _mm256_max_ps(m, ab);
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h);
        float d = 0.0f, id = 0.0f;
        if (bad) d = NAN;
        else if (amax >= 1e-30f) { d = amax / 127.0f; id = 127.0f / amax; }
        __m256i i[4];
        for (int k = 0; k < 4; k++) i[k] = bad ? _mm256_setzero_si256() : _mm256_cvtps_epi32(_mm256_mul_ps(xv[k], _mm256_set1_ps(id)));
        __m256i q = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
        q = _mm256_permutevar8x32_epi32(q, perm);
        _mm256_storeu_si256((__m256i *)(v + g * 32), q);
        __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
        _mm256_storeu_si256((__m256i *)(xs + g * 8), s);
        _mm256_storeu_ps(xsf + g * 8, _mm256_cvtepi32_ps(s));
        _mm256_storeu_ps(dv + g * 8, _mm256_set1_ps(d));
        dg[g] = d;
    }
    const int64_t c0 = ng * MM_GROUP;
    memset(v + c0, 0, (size_t)(P - c0));
    memset(xs + c0 / 4, 0, (size_t)(P - c0));
    memset(xsf + c0 / 4, 0, (size_t)(P - c0));
    memset(dv + c0 / 4, 0, (size_t)(P - c0));
    memset(dg + ng, 0, qx_dg_bytes(cols) - (size_t)ng * sizeof(float));
}

/* ---- shared ---------------------------------------------------------------------------- */

/* lanes 0-7 in lo, 8-15 in hi, folded in the fixed tree (mm_fold) */
INL float fold(__m256 lo, __m256 hi) {
    __m256 v = _mm256_add_ps(lo, hi);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}

INL float widen1(st_dtype dt, const uint8_t *row, int64_t c) {
    if (dt == ST_DTYPE_F32) { float f; memcpy(&f, row + 4 * c, 4); return f; }
    uint16_t h;
    memcpy(&h, row + 2 * c, 2);
    if (dt == ST_DTYPE_F16) return _cvtsh_ss(h);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- float weights ------------------------------------------------------------------- */

/* The 16 weights of chunk c of a row as two vectors. */
INL void ldw(st_dtype dt, const uint8_t *row, int64_t c, __m256 *w0, __m256 *w1) {
    if (dt == ST_DTYPE_F32) {
        *w0 = _mm256_loadu_ps((const float *)row + 16 * c);
        *w1 = _mm256_loadu_ps((const float *)row + 16 * c + 8);
        return;
    }
    const __m128i *p = (const __m128i *)(row + 32 * c);
    __m128i h0 = _mm_loadu_si128(p), h1 = _mm_loadu_si128(p + 1);
    if (dt == ST_DTYPE_F16) {
        *w0 = _mm256_cvtph_ps(h0);
        *w1 = _mm256_cvtph_ps(h1);
    } else {
        *w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h0), 16));
        *w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h1), 16));
    }
}

INL void ftile(st_dtype dt, const struct mm_args *a, int64_t r, int R, int64_t t, int T) {
    const int64_t n16 = a->cols / 16, ld = a->cols;
    const uint8_t *w = a->w + (size_t)r * a->row_bytes;
    const size_t rb = a->row_bytes;
    const float *x = a->x + t * ld;
    __m256 acc[4][TMAX][2];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < T; j++) acc[i][j][0] = acc[i][j][1] = _mm256_setzero_ps();
    for (int64_t c = 0; c < n16; c++) {
        for (int i = 0; i < R; i++) {
            __m256 w0, w1;
            ldw(dt, w + i * rb, c, &w0, &w1);
            for (int j = 0; j < T; j++) {
                const float *xc = x + j * ld + 16 * c;
                acc[i][j][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xc), acc[i][j][0]);
                acc[i][j][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xc + 8), acc[i][j][1]);
            }
        }
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < T; j++) {
            float s = fold(acc[i][j][0], acc[i][j][1]);
            for (int64_t c = n16 * 16; c < a->cols; c++) s = fmaf(widen1(dt, w + i * rb, c), x[j * ld + c], s);
            a->y[(t + j) * a->rows + r + i] = s + (a->bias ? a->bias[r + i] : 0.0f);
        }
}

#define FTILE_CASES(DT) \
    static TGT void ftile_##DT(const struct mm_args *a, int64_t r, int R, int64_t t, int T) { \
        if (T == 1) { \
            if (R == 4) ftile(DT, a, r, 4, t, 1); \
            else if (R == 2) ftile(DT, a, r, 2, t, 1); \
            else ftile(DT, a, r, 1, t, 1); \
        } \
        else if (T == 2) ftile(DT, a, r, 1, t, 2); \
        else if (T == 3) ftile(DT, a, r, 1, t, 3); \
        else ftile(DT, a, r, 1, t, 4); \
    }
FTILE_CASES(ST_DTYPE_F32)
FTILE_CASES(ST_DTYPE_F16)
FTILE_CASES(ST_DTYPE_BF16)

/* ---- quantized weights ---------------------------------------------------------------- */

/* Group g of a row: codes u (or, for the 8-bit types, the signed weights w =
 * u - o in *u and *sgn = true), lane scales a, mins b. */
struct kcache { int64_t sb; float a[8], b[8], d; const int8_t *s6; };

INL __m256i nib32(__m128i q) {
    const __m128i m = _mm_set1_epi8(0x0f);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(q, m)), _mm_and_si128(_mm_srli_epi16(q, 4), m), 1);
}

/* bit j of h -> byte j = 16 (llama.cpp's bytes_from_bits_32, scaled) */
INL __m256i bits16(uint32_t h) {
    const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit), _mm256_set1_epi8(16));
}

INL void kdecode(st_dtype dt, const uint8_t *blk, struct kcache *k) {
    if (dt == ST_DTYPE_Q6_K) {
        k->d = _cvtsh_ss((uint16_t)(blk[208] | blk[209] << 8));
        k->s6 = (const int8_t *)(blk + 192);
        return;
    }
    const float d = _cvtsh_ss((uint16_t)(blk[0] | blk[1] << 8)), dmin = _cvtsh_ss((uint16_t)(blk[2] | blk[3] << 8));
    for (int j = 0; j < 8; j++) {
        int sc, m;
        mm_scale_min_k4(j, blk + 4, &sc, &m);
        k->a[j] = d * (float)sc;
        k->b[j] = -(dmin * (float)m);
    }
}

INL void unpack(st_dtype dt, const uint8_t *row, int64_t g, struct kcache *k, __m256i *u, __m256 *a, __m256 *b) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const size_t bb = dt == ST_DTYPE_Q8_0 ? 34 : dt == ST_DTYPE_Q4_0 || dt == ST_DTYPE_IQ4_NL ? 18
                    : dt == ST_DTYPE_Q4_1 ? 20 : dt == ST_DTYPE_Q5_0 ? 22 : dt == ST_DTYPE_Q5_1 ? 24
                    : dt == ST_DTYPE_Q4_K ? 144 : dt == ST_DTYPE_Q5_K ? 176 : 210;
    *u = _mm256_setzero_si256();
    if (!(dt == ST_DTYPE_Q4_K || dt == ST_DTYPE_Q5_K || dt == ST_DTYPE_Q6_K)) {
        const uint8_t *blk = row + (size_t)g * bb;
        *a = _mm256_set1_ps(_cvtsh_ss((uint16_t)(blk[0] | blk[1] << 8)));
        switch (dt) {
        case ST_DTYPE_Q8_0: *u = _mm256_loadu_si256((const __m256i *)(blk + 2)); return;
        case ST_DTYPE_Q4_0: *u = nib32(_mm_loadu_si128((const __m128i *)(blk + 2))); return;
        case ST_DTYPE_IQ4_NL: {
            const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)mm_iq4nl_values));
            *u = _mm256_shuffle_epi8(tab, nib32(_mm_loadu_si128((const __m128i *)(blk + 2))));
            return;
        }
        case ST_DTYPE_Q4_1:
            *b = _mm256_set1_ps(_cvtsh_ss((uint16_t)(blk[2] | blk[3] << 8)));
            *u = nib32(_mm_loadu_si128((const __m128i *)(blk + 4)));
            return;
        case ST_DTYPE_Q5_0: case ST_DTYPE_Q5_1: {
            const size_t ho = dt == ST_DTYPE_Q5_1 ? 4 : 2;
            if (dt == ST_DTYPE_Q5_1) *b = _mm256_set1_ps(_cvtsh_ss((uint16_t)(blk[2] | blk[3] << 8)));
            uint32_t h;
            memcpy(&h, blk + ho, 4);
            *u = _mm256_or_si256(nib32(_mm_loadu_si128((const __m128i *)(blk + ho + 4))), bits16(h));
            return;
        }
        default: return;
        }
    }
    const int64_t sb = g / 8;
    const int j = (int)(g % 8);
    const uint8_t *blk = row + (size_t)sb * bb;
    if (k->sb != sb) { kdecode(dt, blk, k); k->sb = sb; }
    if (dt == ST_DTYPE_Q6_K) {
        const int h = j / 4, m = j % 4;
        __m256i L = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32 * (m & 1)));
        __m256i H = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
        __m256i lo = m < 2 ? _mm256_and_si256(L, m4) : _mm256_and_si256(_mm256_srli_epi16(L, 4), m4);
        __m256i hb = _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(H, _mm_cvtsi32_si128(2 * m)), _mm256_set1_epi8(3)), 4);
        *u = _mm256_or_si256(lo, hb);
        *a = _mm256_setr_m128(_mm_set1_ps(k->d * (float)k->s6[2 * j]), _mm_set1_ps(k->d * (float)k->s6[2 * j + 1]));
        return;
    }
    const int c = j / 2;
    __m256i y = _mm256_loadu_si256((const __m256i *)(blk + (dt == ST_DTYPE_Q4_K ? 16 : 48) + 32 * c));
    __m256i n = j % 2 ? _mm256_and_si256(_mm256_srli_epi16(y, 4), m4) : _mm256_and_si256(y, m4);
    if (dt == ST_DTYPE_Q5_K) {
        __m256i qh = _mm256_loadu_si256((const __m256i *)(blk + 16));
        __m256i hb = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(j)), _mm256_set1_epi8(1));
        n = _mm256_or_si256(n, _mm256_slli_epi16(hb, 4));
    }
    *u = n;
    *a = _mm256_set1_ps(k->a[j]);
    *b = _mm256_set1_ps(k->b[j]);
}

/* exact sum (u - o) * v per lane of 4 columns */
INL __m256i idot(st_dtype dt, __m256i u, __m256i v, const int32_t *xs) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (dt == ST_DTYPE_Q8_0 || dt == ST_DTYPE_IQ4_NL)   /* u holds the signed weights */
        return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(u, u), _mm256_sign_epi8(v, u)), ones);
    __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(u, v), ones);
    const int o = mm_q_offset(dt);
    if (!o) return s;
    const int sh = o == 8 ? 3 : o == 16 ? 4 : 5;
    return _mm256_sub_epi32(s, _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)xs), sh));
}

INL void qtile(st_dtype dt, const struct mm_args *a, int64_t r, int R, int64_t t, int T) {
    const int64_t ng = a->cols / MM_GROUP;
    const uint8_t *w = a->w + (size_t)r * a->row_bytes;
    const size_t rb = a->row_bytes;
    const bool hb = mm_q_has_min(dt);
    struct qx_row q[TMAX];
    for (int j = 0; j < T; j++) q[j] = qx_at(a->qx, a->cols, t + j);
    struct kcache kc[2] = {{.sb = -1}, {.sb = -1}};
    __m256 acc[2][TMAX][2];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < T; j++) acc[i][j][0] = acc[i][j][1] = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const int h = (int)(g % 2);
        __m256i u[2];
        __m256 sa[2], sb[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int i = 0; i < R; i++) unpack(dt, w + i * rb, g, &kc[i], &u[i], &sa[i], &sb[i]);
        for (int j = 0; j < T; j++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(q[j].v + 32 * g));
            const __m256 dx = _mm256_loadu_ps(q[j].dv + 8 * g);
            for (int i = 0; i < R; i++) {
                __m256i ip = idot(dt, u[i], v, q[j].xs + 8 * g);
                acc[i][j][h] = _mm256_fmadd_ps(_mm256_mul_ps(sa[i], dx), _mm256_cvtepi32_ps(ip), acc[i][j][h]);
                if (hb)
                    acc[i][j][h] = _mm256_fmadd_ps(_mm256_mul_ps(sb[i], dx), _mm256_loadu_ps(q[j].xsf + 8 * g), acc[i][j][h]);
            }
        }
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < T; j++)
            a->y[(t + j) * a->rows + r + i] = fold(acc[i][j][0], acc[i][j][1]) + (a->bias ? a->bias[r + i] : 0.0f);
}

#define QTILE_CASES(DT) \
    static TGT void qtile_##DT(const struct mm_args *a, int64_t r, int R, int64_t t, int T) { \
        if (T == 1) { if (R == 2) qtile(DT, a, r, 2, t, 1); else qtile(DT, a, r, 1, t, 1); } \
        else if (T == 2) qtile(DT, a, r, 1, t, 2); \
        else if (T == 3) qtile(DT, a, r, 1, t, 3); \
        else qtile(DT, a, r, 1, t, 4); \
    }
QTILE_CASES(ST_DTYPE_Q8_0)
QTILE_CASES(ST_DTYPE_Q4_0)
QTILE_CASES(ST_DTYPE_Q4_1)
QTILE_CASES(ST_DTYPE_Q5_0)
QTILE_CASES(ST_DTYPE_Q5_1)
QTILE_CASES(ST_DTYPE_IQ4_NL)
QTILE_CASES(ST_DTYPE_Q4_K)
QTILE_CASES(ST_DTYPE_Q5_K)
QTILE_CASES(ST_DTYPE_Q6_K)

typedef void (*tile_fn)(const struct mm_args *a, int64_t r, int R, int64_t t, int T);

TGT void mm_avx2_run(const struct mm_args *a, int64_t r0, int64_t r1) {
    tile_fn fn = NULL;
    int rmax = 2;
    switch (a->dt) {
    case ST_DTYPE_F32: fn = ftile_ST_DTYPE_F32; rmax = 4; break;
    case ST_DTYPE_F16: fn = ftile_ST_DTYPE_F16; rmax = 4; break;
    case ST_DTYPE_BF16: fn = ftile_ST_DTYPE_BF16; rmax = 4; break;
    case ST_DTYPE_Q8_0: fn = qtile_ST_DTYPE_Q8_0; break;
    case ST_DTYPE_Q4_0: fn = qtile_ST_DTYPE_Q4_0; break;
    case ST_DTYPE_Q4_1: fn = qtile_ST_DTYPE_Q4_1; break;
    case ST_DTYPE_Q5_0: fn = qtile_ST_DTYPE_Q5_0; break;
    case ST_DTYPE_Q5_1: fn = qtile_ST_DTYPE_Q5_1; break;
    case ST_DTYPE_IQ4_NL: fn = qtile_ST_DTYPE_IQ4_NL; break;
    case ST_DTYPE_Q4_K: fn = qtile_ST_DTYPE_Q4_K; break;
    case ST_DTYPE_Q5_K: fn = qtile_ST_DTYPE_Q5_K; break;
    case ST_DTYPE_Q6_K: fn = qtile_ST_DTYPE_Q6_K; break;
    default: return;
    }
    for (int64_t t = 0; t < a->n_tok; t += TMAX) {
        const int T = (int)ST_MIN(TMAX, a->n_tok - t);
        int64_t r = r0;
        if (T == 1) {
            for (; r + rmax <= r1; r += rmax) fn(a, r, rmax, t, 1);
            for (; r + 2 <= r1; r += 2) fn(a, r, 2, t, 1);
        }
        for (; r < r1; r++) fn(a, r, 1, t, T);
    }
}

#endif /* __x86_64__ */
