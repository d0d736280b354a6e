/* matmul, AVX-512 path (F, BW, VL, DQ, VNNI: Ice Lake, Sapphire Rapids, Zen 4
 * and later). The arithmetic of every output element is the one kernels_cpu.h
 * specifies, so results equal the portable path (matmul.c) bit for bit: a zmm
 * holds the 16 lanes of one (row, token) pair.
 *
 * Few tokens (decode, small batches): register tiles of R rows x T tokens run
 * over the whole row, the weights widened or unpacked in registers, the
 * activations reused from L1. Many tokens (prefill): a blocked GEMM. A panel
 * of MR rows x KC columns is packed once (fp32 for F32/F16/BF16; for
 * quantized types the signed codes, their lane sums and the scales, so the
 * unpacking is paid once per panel, not once per token), then swept by MR x NT
 * register tiles over a block of TB tokens; the 16 lanes of each (row, token)
 * pair persist in a lanes block between column blocks (reloading an fp32
 * partial sum changes no bit) and are folded once at the end. */
#include "kernels/cpu/matmul-impl.h"

#if defined(__x86_64__)
#include <float.h>
#include <immintrin.h>
#include <math.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

#define GEMV_MAX_T 4      /* up to this many tokens: register tiles, no packing */
#define MR 4              /* GEMM tile rows */
#define NT 6              /* GEMM tile tokens (float weights) */
#define KC 64             /* GEMM column block: 64 chunks of 16 = 1024 columns (16 pairs) */
#define MC 16             /* GEMM rows per lanes block */
#define TB 128            /* GEMM tokens per lanes block */

/* ---- activations ------------------------------------------------------------------- */

TGT void mm_avx512_quantize(const float *x, int64_t cols, void *qrow) {
    const int64_t ng = cols / MM_GROUP;
    const struct qx_row q = qx_at(qrow, cols, 0);
    int8_t *v = (int8_t *)q.v;
    int32_t *s16 = (int32_t *)q.s16, *s32 = (int32_t *)q.s32;
    float *s32f = (float *)q.s32f, *dg = (float *)q.dg;
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    const __m128i ones = _mm_set1_epi8(1);
    for (int64_t g = 0; g < ng; g++) {
        __m512 x0 = _mm512_loadu_ps(x + g * 32), x1 = _mm512_loadu_ps(x + g * 32 + 16);
        __m512 a0 = _mm512_abs_ps(x0), a1 = _mm512_abs_ps(x1);
        const bool bad = (_mm512_cmp_ps_mask(a0, big, _CMP_NLE_UQ) | _mm512_cmp_ps_mask(a1, big, _CMP_NLE_UQ)) != 0;
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
        float d = 0.0f, id = 0.0f;
        if (bad) d = NAN;
        else if (amax >= 1e-30f) { d = amax / 127.0f; id = 127.0f / amax; }
        __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, _mm512_set1_ps(id)));
        __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, _mm512_set1_ps(id)));
        if (bad) i0 = i1 = _mm512_setzero_si512();
        _mm_storeu_si128((__m128i *)(v + g * 32), _mm512_cvtepi32_epi8(i0));
        _mm_storeu_si128((__m128i *)(v + g * 32 + 16), _mm512_cvtepi32_epi8(i1));
        const int32_t h0 = _mm512_reduce_add_epi32(i0), h1 = _mm512_reduce_add_epi32(i1);
        (void)ones;
        s16[2 * g] = h0;
        s16[2 * g + 1] = h1;
        s32[g] = h0 + h1;
        s32f[g] = (float)(h0 + h1);
        dg[g] = d;
    }
    /* zero past cols (the padding of the last 64 columns and of every part) */
    const size_t P = (size_t)qx_pad(cols);
    memset(v + ng * 32, 0, P - (size_t)ng * 32);
    memset(s16 + 2 * ng, 0, qx_part(P / 4) - (size_t)ng * 8);
    memset(s32 + ng, 0, qx_part(P / 8) - (size_t)ng * 4);
    memset(s32f + ng, 0, qx_part(P / 8) - (size_t)ng * 4);
    memset(dg + ng, 0, qx_part(P / 8) - (size_t)ng * 4);
}

/* ---- shared pieces ------------------------------------------------------------------ */

/* The 16 lanes folded in the fixed tree (mm_fold). */
INL float fold16(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    __m128 p = _mm_add_ps(q, _mm_movehl_ps(q, q));             /* u0+u2, u1+u3 */
    return _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)));
}

/* 16 lane vectors a[0..15] folded at once, each in the fixed tree:
 * returns [fold(a[0]), ..., fold(a[15])]. Every add pairs the same two
 * partial sums as fold16 does, so the bits are the same. */
INL __m512 fold16x16(const __m512 *a) {
    __m512 b[8], c[4], d[2];
    for (int m = 0; m < 8; m++)   /* lanes i + (i + 8) */
        b[m] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0x44),
                             _mm512_shuffle_f32x4(a[2 * m], a[2 * m + 1], 0xee));
    for (int p = 0; p < 4; p++)   /* i + (i + 4) */
        c[p] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * p], b[2 * p + 1], 0x88),
                             _mm512_shuffle_f32x4(b[2 * p], b[2 * p + 1], 0xdd));
    for (int r = 0; r < 2; r++)   /* i + (i + 2) */
        d[r] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * r], c[2 * r + 1], 0x44),
                             _mm512_shuffle_ps(c[2 * r], c[2 * r + 1], 0xee));
    /* i + (i + 1): lane 4q + k holds a[q + 4k] */
    __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xdd));
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(idx, e);
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

/* Folded lanes, then the columns past the last 16 (float dtypes), then the bias. */
INL float finish(st_dtype dt, const uint8_t *row, int64_t cols, __m512 lanes, const float *x, float bias) {
    float s = fold16(lanes);
    if (dt == ST_DTYPE_F32 || dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16)
        for (int64_t c = cols / 16 * 16; c < cols; c++) s = fmaf(widen1(dt, row, c), x[c], s);
    return s + bias;
}

/* ---- float weights ------------------------------------------------------------------ */

/* Chunk c (columns 16c .. 16c+15) of a row, widened. */
INL __m512 ldw(st_dtype dt, const uint8_t *row, int64_t c) {
    if (dt == ST_DTYPE_F32) return _mm512_loadu_ps(row + 64 * c);
    __m256i h = _mm256_loadu_si256((const __m256i *)(row + 32 * c));
    if (dt == ST_DTYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* R rows x T tokens over the whole row; y written. */
INL void ftile(st_dtype dt, const struct mm_args *a, int64_t r, int R, int64_t t, int T) {
    const int64_t n16 = a->cols / 16, ld = a->cols;
    const uint8_t *w = a->w + (size_t)r * a->row_bytes;
    const size_t rb = a->row_bytes;
    const float *x = a->x + t * ld;
    __m512 acc[8][GEMV_MAX_T];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < T; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t c = 0; c < n16; c++) {
        for (int i = 0; i < R; i++) {
            __m512 wv = ldw(dt, w + i * rb, c);
            for (int j = 0; j < T; j++) acc[i][j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + j * ld + 16 * c), acc[i][j]);
        }
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < T; j++)
            a->y[(t + j) * a->rows + r + i] =
                finish(dt, w + i * rb, a->cols, acc[i][j], x + j * ld, a->bias ? a->bias[r + i] : 0.0f);
}

#define FTILE_CASES(DT) \
    static TGT void ftile_##DT(const struct mm_args *a, int64_t r, int R, int64_t t, int T) { \
        if (T == 1) { \
            if (R == 8) ftile(DT, a, r, 8, t, 1); \
            else if (R == 4) ftile(DT, a, r, 4, t, 1); \
            else if (R == 2) ftile(DT, a, r, 2, t, 1); \
            else ftile(DT, a, r, 1, t, 1); \
        } else if (T == 2) { \
            if (R == 4) ftile(DT, a, r, 4, t, 2); else ftile(DT, a, r, 1, t, 2); \
        } else if (T == 3) { \
            if (R == 4) ftile(DT, a, r, 4, t, 3); else ftile(DT, a, r, 1, t, 3); \
        } else { \
            if (R == 4) ftile(DT, a, r, 4, t, 4); else ftile(DT, a, r, 1, t, 4); \
        } \
    }
FTILE_CASES(ST_DTYPE_F32)
FTILE_CASES(ST_DTYPE_F16)
FTILE_CASES(ST_DTYPE_BF16)

typedef void (*tile_fn)(const struct mm_args *a, int64_t r, int R, int64_t t, int T);

/* Rows [r0, r1) x all tokens with register tiles. */
static TGT void run_tiles(tile_fn fn, const struct mm_args *a, int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < a->n_tok; t += GEMV_MAX_T) {
        const int T = (int)ST_MIN(GEMV_MAX_T, a->n_tok - t);
        const int Rmax = T == 1 ? 8 : 4;
        int64_t r = r0;
        for (; r + Rmax <= r1; r += Rmax) fn(a, r, Rmax, t, T);
        if (T == 1)
            for (; r + 2 <= r1; r += 2) fn(a, r, 2, t, T);
        for (; r < r1; r++) fn(a, r, 1, t, T);
    }
}

/* Where a GEMM tile goes: its lanes block (more column blocks follow), or,
 * after the last column block, y itself: y[j * ldy + i] for tile token j,
 * row i (+ bias[i]). */
struct tout {
    float *lanes;            /* (R, TB, 16) at the tile's first row and token */
    bool first, fold;        /* start from zero; fold into y instead of storing lanes */
    float *y;
    int64_t ldy;
    const float *bias;       /* (R) or NULL */
};

/* The fixed-tree fold of up to 4 lane vectors (rows of one token) -> y[0..R). */
INL void fold4_store(int R, const __m512 *a, float *y, const float *bias) {
    const __m512 z = _mm512_setzero_ps();
    __m512 a0 = a[0], a1 = R > 1 ? a[1] : z, a2 = R > 2 ? a[2] : z, a3 = R > 3 ? a[3] : z;
    __m512 b0 = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xee));
    __m512 b1 = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, 0x44), _mm512_shuffle_f32x4(a2, a3, 0xee));
    __m512 c = _mm512_add_ps(_mm512_shuffle_f32x4(b0, b1, 0x88), _mm512_shuffle_f32x4(b0, b1, 0xdd));
    __m512 d = _mm512_add_ps(c, _mm512_permute_ps(c, 0x4e));   /* (u0 + u2), (u1 + u3) */
    __m512 e = _mm512_add_ps(d, _mm512_permute_ps(d, 0xb1));   /* lane 4q: sum of a[q] */
    __m128 s = _mm512_castps512_ps128(_mm512_maskz_compress_ps(0x1111, e));
    const __mmask8 k = (__mmask8)((1u << R) - 1);
    if (bias) s = _mm_add_ps(s, _mm_maskz_loadu_ps(k, bias));
    else s = _mm_add_ps(s, _mm_setzero_ps());
    _mm_mask_storeu_ps(y, k, s);
}

INL void tile_out(int R, int T, __m512 acc[][NT], const struct tout *o) {
    if (o->fold) {
        for (int j = 0; j < T; j++) {
            __m512 col[MR];
            for (int i = 0; i < R; i++) col[i] = acc[i][j];
            fold4_store(R, col, o->y + j * o->ldy, o->bias);
        }
    } else {
        for (int i = 0; i < R; i++)
            for (int j = 0; j < T; j++) _mm512_store_ps(o->lanes + ((size_t)i * TB + j) * 16, acc[i][j]);
    }
}

/* GEMM micro-kernel: R rows of a packed fp32 panel (per chunk: MR vectors)
 * x T tokens of x, kn chunks. */
INL void fkern(int R, int T, const float *panel, const float *x, int64_t ld, int64_t kn, const struct tout *o) {
    __m512 acc[MR][NT];
    if (o->first) {
        for (int i = 0; i < R; i++)
            for (int j = 0; j < T; j++) acc[i][j] = _mm512_setzero_ps();
    } else {
        for (int i = 0; i < R; i++)
            for (int j = 0; j < T; j++) acc[i][j] = _mm512_load_ps(o->lanes + ((size_t)i * TB + j) * 16);
    }
    for (int64_t c = 0; c < kn; c++) {
        __m512 wv[MR];
        for (int i = 0; i < R; i++) wv[i] = _mm512_load_ps(panel + (c * MR + i) * 16);
        for (int j = 0; j < T; j++) {
            __m512 xv = _mm512_loadu_ps(x + j * ld + 16 * c);
            for (int i = 0; i < R; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
        }
    }
    tile_out(R, T, acc, o);
}

#define FK(R, T) \
    static TGT void fk_##R##_##T(const float *p, const float *x, int64_t ld, int64_t kn, const struct tout *o) { \
        fkern(R, T, p, x, ld, kn, o); \
    }
#define FK_R(R) FK(R, 1) FK(R, 2) FK(R, 3) FK(R, 4) FK(R, 5) FK(R, 6)
FK_R(1) FK_R(2) FK_R(3) FK_R(4)
typedef void (*fk_fn)(const float *, const float *, int64_t, int64_t, const struct tout *);
static const fk_fn fk_table[MR][NT] = {
    {fk_1_1, fk_1_2, fk_1_3, fk_1_4, fk_1_5, fk_1_6}, {fk_2_1, fk_2_2, fk_2_3, fk_2_4, fk_2_5, fk_2_6},
    {fk_3_1, fk_3_2, fk_3_3, fk_3_4, fk_3_5, fk_3_6}, {fk_4_1, fk_4_2, fk_4_3, fk_4_4, fk_4_5, fk_4_6},
};

/* Packs chunks [c0, c0 + kn) of R rows as fp32, chunk-major (MR vectors per chunk). */
INL void fpack(st_dtype dt, const uint8_t *w, size_t rb, int R, int64_t c0, int64_t kn, float *panel) {
    for (int64_t c = 0; c < kn; c++)
        for (int i = 0; i < R; i++) _mm512_store_ps(panel + (c * MR + i) * 16, ldw(dt, w + i * rb, c0 + c));
}

static TGT void fpack_any(st_dtype dt, const uint8_t *w, size_t rb, int R, int64_t c0, int64_t kn, float *panel) {
    if (dt == ST_DTYPE_F32) fpack(ST_DTYPE_F32, w, rb, R, c0, kn, panel);
    else if (dt == ST_DTYPE_F16) fpack(ST_DTYPE_F16, w, rb, R, c0, kn, panel);
    else fpack(ST_DTYPE_BF16, w, rb, R, c0, kn, panel);
}

/* ---- quantized weights: packed 16-row blocks (matmul-impl.h) -----------------------------
 * One zmm lane = one row. Per group the codes are unpacked once into up to
 * eight 64-byte vectors (lane r = 4 consecutive codes of row r), then for each
 * token: vpdpbusd against the token's 4 activation bytes broadcast, the exact
 * integer per group, and one fused multiply-add per group (Q6_K: two) into
 * the 16 row accumulators. */

#define NTQ 8             /* tokens per pass over a block (register accumulators) */
#define TBQ 256           /* tokens per lanes pass of the on-the-fly packing path */
#define SEG_BYTES 65536   /* stack buffer of the on-the-fly packing path */

INL bool is_k(st_dtype dt) { return dt == ST_DTYPE_Q4_K || dt == ST_DTYPE_Q5_K || dt == ST_DTYPE_Q6_K; }

INL __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* The codes of one group: c[0..3] the low halves (columns 4k..4k+3 of each
 * row in chunk k), c[4..7] the high halves (16 + 4k ..); Q8_0: c[m] columns 4m... */
INL void codes(st_dtype dt, const uint8_t *rec, __m512i *c) {
    if (dt == ST_DTYPE_Q8_0) {
        for (int m = 0; m < 8; m++) c[m] = _mm512_loadu_si512(rec + 64 * m);
        return;
    }
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (int k = 0; k < 4; k++) {
        const __m512i z = _mm512_loadu_si512(rec + 64 * k);
        c[k] = _mm512_and_si512(z, m4);
        c[4 + k] = _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
    }
    if (dt == ST_DTYPE_IQ4_NL) {
        const __m512i tab = _mm512_broadcast_i32x4(_mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141,
                                                                 (char)153, (char)166, (char)181, (char)197, (char)217,
                                                                 (char)241));
        for (int k = 0; k < 8; k++) c[k] = _mm512_shuffle_epi8(tab, c[k]);
    } else if (dt == ST_DTYPE_Q5_0 || dt == ST_DTYPE_Q5_1 || dt == ST_DTYPE_Q5_K) {
        const __m512i sixteen = _mm512_set1_epi8(16);
        for (int k = 0; k < 4; k++) {
            uint64_t lo, hi;
            memcpy(&lo, rec + 256 + 16 * k, 8);
            memcpy(&hi, rec + 256 + 16 * k + 8, 8);
            c[k] = _mm512_mask_add_epi8(c[k], (__mmask64)lo, c[k], sixteen);
            c[4 + k] = _mm512_mask_add_epi8(c[4 + k], (__mmask64)hi, c[4 + k], sixteen);
        }
    } else if (dt == ST_DTYPE_Q6_K) {
        const __m512i t0 = _mm512_loadu_si512(rec + 256), t1 = _mm512_loadu_si512(rec + 320), m3 = _mm512_set1_epi8(3);
        for (int k = 0; k < 4; k++) {
            const __m512i h0 = _mm512_and_si512(_mm512_srli_epi16(t0, 2 * k), m3);
            const __m512i h1 = _mm512_and_si512(_mm512_srli_epi16(t1, 2 * k), m3);
            c[k] = _mm512_or_si512(c[k], _mm512_slli_epi16(h0, 4));
            c[4 + k] = _mm512_or_si512(c[4 + k], _mm512_slli_epi16(h1, 4));
        }
    }
}

/* sum over the group (or its two 16-column halves) of u * v, exact */
INL void isums(st_dtype dt, const __m512i *c, const int8_t *v, __m512i *lo, __m512i *hi) {
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    if (dt == ST_DTYPE_Q8_0) {
        for (int m = 0; m < 8; m += 2) {
            a = _mm512_dpbusd_epi32(a, c[m], bcast4(v + 4 * m));
            b = _mm512_dpbusd_epi32(b, c[m + 1], bcast4(v + 4 * m + 4));
        }
    } else {
        for (int k = 0; k < 4; k++) {
            a = _mm512_dpbusd_epi32(a, c[k], bcast4(v + 4 * k));
            b = _mm512_dpbusd_epi32(b, c[4 + k], bcast4(v + 16 + 4 * k));
        }
    }
    *lo = a;
    *hi = b;
}

/* Groups [g0, g1) of one block (pk points at g0's part of the block) for T
 * tokens, into acc[T] (16 rows each). */
INL void qblock(st_dtype dt, const uint8_t *pk, int64_t g0, int64_t g1, const struct qx_row *q, int T, __m512 *acc) {
    const int o = mm_q_offset(dt);
    const bool hb = mm_q_has_min(dt);
    const uint8_t *base = pk - pk_offset(dt, g0);
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 kd = a, kmin = a;
    for (int64_t g = g0; g < g1; g++) {
        const uint8_t *rec = base + pk_rec_offset(dt, g);
        if (is_k(dt)) {
            const uint8_t *hd = base + pk_offset(dt, g / 8 * 8);
            if (g % 8 == 0 || g == g0) {
                kd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)hd));
                if (dt != ST_DTYPE_Q6_K)
                    kmin = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(hd + 32))));
            }
            const int j = (int)(g % 8);
            if (dt == ST_DTYPE_Q6_K) {
                a = _mm512_mul_ps(kd, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(hd + 32 + 32 * j)))));
                a1 = _mm512_mul_ps(kd, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(hd + 48 + 32 * j)))));
            } else {
                a = _mm512_mul_ps(kd, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(hd + 64 + 16 * j)))));
                b = _mm512_mul_ps(kmin, _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(hd + 192 + 16 * j)))));
            }
        } else {
            const size_t so = pk_group_bytes(dt) - (hb ? 64 : 32);
            a = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(rec + so)));
            if (hb) b = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(rec + so + 32)));
        }
        __m512i c[8];
        codes(dt, rec, c);
        for (int t = 0; t < T; t++) {
            __m512i lo, hi;
            isums(dt, c, q[t].v + g * MM_GROUP, &lo, &hi);
            const __m512 dx = _mm512_set1_ps(q[t].dg[g]);
            if (dt == ST_DTYPE_Q6_K) {   /* two units of 16 columns, each with its scale */
                lo = _mm512_sub_epi32(lo, _mm512_set1_epi32(32 * q[t].s16[2 * g]));
                hi = _mm512_sub_epi32(hi, _mm512_set1_epi32(32 * q[t].s16[2 * g + 1]));
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(a, dx), _mm512_cvtepi32_ps(lo), acc[t]);
                acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(a1, dx), _mm512_cvtepi32_ps(hi), acc[t]);
                continue;
            }
            __m512i i = _mm512_add_epi32(lo, hi);
            if (o) i = _mm512_sub_epi32(i, _mm512_set1_epi32(o * q[t].s32[g]));
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(a, dx), _mm512_cvtepi32_ps(i), acc[t]);
            if (hb) acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(b, dx), _mm512_set1_ps(q[t].s32f[g]), acc[t]);
        }
    }
}

#define QBLOCK_CASES(DT) \
    static TGT void qblock_##DT(const uint8_t *pk, int64_t g0, int64_t g1, const struct qx_row *q, int T, __m512 *acc) { \
        switch (T) { \
        case 1: qblock(DT, pk, g0, g1, q, 1, acc); break; \
        case 2: qblock(DT, pk, g0, g1, q, 2, acc); break; \
        case 3: qblock(DT, pk, g0, g1, q, 3, acc); break; \
        case 4: qblock(DT, pk, g0, g1, q, 4, acc); break; \
        case 5: qblock(DT, pk, g0, g1, q, 5, acc); break; \
        case 6: qblock(DT, pk, g0, g1, q, 6, acc); break; \
        case 7: qblock(DT, pk, g0, g1, q, 7, acc); break; \
        default: qblock(DT, pk, g0, g1, q, 8, acc); break; \
        } \
    }
QBLOCK_CASES(ST_DTYPE_Q8_0)
QBLOCK_CASES(ST_DTYPE_Q4_0)
QBLOCK_CASES(ST_DTYPE_Q4_1)
QBLOCK_CASES(ST_DTYPE_Q5_0)
QBLOCK_CASES(ST_DTYPE_Q5_1)
QBLOCK_CASES(ST_DTYPE_IQ4_NL)
QBLOCK_CASES(ST_DTYPE_Q4_K)
QBLOCK_CASES(ST_DTYPE_Q5_K)
QBLOCK_CASES(ST_DTYPE_Q6_K)

typedef void (*qblock_fn)(const uint8_t *, int64_t, int64_t, const struct qx_row *, int, __m512 *);

/* Rows [r0, r1) x all tokens of a quantized matrix, block by block. With the
 * packed copy a block is one sweep per 8 tokens; without it, groups are
 * packed segment by segment into a stack buffer and the 16 row sums of every
 * token persist between segments (reloading an fp32 sum changes no bit). */
static TGT void qrun(qblock_fn fn, const struct mm_args *a, int64_t r0, int64_t r1) {
    const st_dtype dt = a->dt;
    const int64_t ng = a->cols / MM_GROUP;
    const size_t bb = pk_block_bytes(dt, a->cols);
    int64_t seg = a->packed ? ng : (int64_t)(SEG_BYTES / (pk_group_bytes(dt) + pk_header_bytes(dt) / 8 + 1));
    if (is_k(dt)) seg = ST_MAX(8, seg / 8 * 8);
    _Alignas(64) uint8_t buf[a->packed ? 64 : SEG_BYTES + 4096];
    _Alignas(64) float sums[TBQ][16];
    struct qx_row q[TBQ];
    for (int64_t blk = r0 / MM_RB; blk * MM_RB < r1; blk++) {
        const int64_t rb0 = blk * MM_RB, lo = ST_MAX(r0, rb0), hi = ST_MIN(r1, rb0 + MM_RB);
        const __mmask16 keep = (__mmask16)(((1u << (hi - rb0)) - 1) & ~((1u << (lo - rb0)) - 1));
        const __m512 bias = a->bias ? _mm512_maskz_loadu_ps(keep, a->bias + rb0) : _mm512_setzero_ps();
        for (int64_t tb = 0; tb < a->n_tok; tb += TBQ) {
            const int64_t ntb = ST_MIN(TBQ, a->n_tok - tb);
            for (int64_t t = 0; t < ntb; t++) q[t] = qx_at(a->qx, a->cols, tb + t);
            for (int64_t g0 = 0; g0 < ng; g0 += seg) {
                const int64_t g1 = ST_MIN(ng, g0 + seg);
                const uint8_t *pk;
                if (a->packed) pk = a->packed + (size_t)blk * bb + pk_offset(dt, g0);
                else {
                    mm_pack_groups(dt, a->w, a->rows, a->cols, rb0, g0, g1, buf);
                    pk = buf;
                }
                for (int64_t t = 0; t < ntb; t += NTQ) {
                    const int T = (int)ST_MIN(NTQ, ntb - t);
                    __m512 acc[NTQ];
                    for (int j = 0; j < T; j++) acc[j] = g0 ? _mm512_load_ps(sums[t + j]) : _mm512_setzero_ps();
                    fn(pk, g0, g1, q + t, T, acc);
                    for (int j = 0; j < T; j++) _mm512_store_ps(sums[t + j], acc[j]);
                }
            }
            for (int64_t t = 0; t < ntb; t++)
                _mm512_mask_storeu_ps(a->y + (tb + t) * a->rows + rb0, keep,
                                      _mm512_add_ps(_mm512_load_ps(sums[t]), bias));
        }
    }
}

/* ---- the blocked GEMM driver ---------------------------------------------------------- */

/* y for rows [m0, m0 + nm) (nm <= MC = 16) x tokens [tb, tb + ntb) from the
 * lanes block: 16 rows of one token folded at once (float columns past the
 * last 16 need the scalar finish). */
static TGT void gemm_fold(const struct mm_args *a, int64_t m0, int64_t nm, int64_t tb, int64_t ntb,
                          const float *lanes) {
    const bool tail = a->cols % 16;
    if (tail) {
        for (int64_t i = 0; i < nm; i++) {
            const int64_t r = m0 + i;
            const uint8_t *row = a->w + (size_t)r * a->row_bytes;
            const float bias = a->bias ? a->bias[r] : 0.0f;
            for (int64_t j = 0; j < ntb; j++)
                a->y[(tb + j) * a->rows + r] = finish(a->dt, row, a->cols, _mm512_load_ps(lanes + ((size_t)i * TB + j) * 16),
                                                      a->x + (tb + j) * a->cols, bias);
        }
        return;
    }
    const __mmask16 k = (__mmask16)((1u << nm) - 1);
    const __m512 bias = a->bias ? _mm512_maskz_loadu_ps(k, a->bias + m0) : _mm512_setzero_ps();
    for (int64_t j = 0; j < ntb; j++) {
        __m512 v[16];
        for (int i = 0; i < 16; i++)
            v[i] = i < nm ? _mm512_load_ps(lanes + ((size_t)i * TB + j) * 16) : _mm512_setzero_ps();
        _mm512_mask_storeu_ps(a->y + (tb + j) * a->rows + m0, k, _mm512_add_ps(fold16x16(v), bias));
    }
}

/* Token tiles: nt wide, the last few balanced (8 = 4 + 4, not 6 + 2). */
static inline int tile_tokens(int64_t left, int nt) {
    if (left >= 2 * nt || left == nt) return nt;
    if (left > nt) return (int)((left + 1) / 2);
    return (int)left;
}

/* The blocked GEMM of float weights (see the top of the file). */
static TGT void gemm(const struct mm_args *a, int64_t r0, int64_t r1) {
    const int64_t nk = a->cols / 16;
    /* the last column block folds straight into y unless columns past the last 16 remain */
    const bool fold_direct = a->cols % 16 == 0;
    _Alignas(64) float lanes[MC * TB * 16];
    _Alignas(64) float panel[MR * KC * 16];
    for (int64_t tb = 0; tb < a->n_tok; tb += TB) {
        const int64_t ntb = ST_MIN(TB, a->n_tok - tb);
        for (int64_t m0 = r0; m0 < r1; m0 += MC) {
            const int64_t nm = ST_MIN(MC, r1 - m0);
            for (int64_t k0 = 0; k0 < nk; k0 += KC) {
                const int64_t kn = ST_MIN(KC, nk - k0);
                const bool last = k0 + kn == nk && fold_direct;
                for (int64_t i0 = 0; i0 < nm; i0 += MR) {
                    const int R = (int)ST_MIN(MR, nm - i0);
                    const uint8_t *w = a->w + (size_t)(m0 + i0) * a->row_bytes;
                    struct tout o = {.first = k0 == 0, .fold = last, .ldy = a->rows,
                                     .bias = a->bias ? a->bias + m0 + i0 : NULL};
                    fpack_any(a->dt, w, a->row_bytes, R, k0, kn, panel);
                    /* the next panel's weights stream in from memory while this one is swept */
                    if (m0 + i0 + MR < r1) {
                        const size_t cb = st_dtype_row_bytes(a->dt, 16);
                        const uint8_t *nx = w + (size_t)MR * a->row_bytes + (size_t)k0 * cb;
                        const size_t span = (size_t)kn * cb;
                        for (int i = 0; i < (int)ST_MIN(MR, r1 - (m0 + i0 + MR)); i++)
                            for (size_t off = 0; off < span; off += 64) _mm_prefetch((const char *)nx + i * a->row_bytes + off, _MM_HINT_T1);
                    }
                    const float *x = a->x + tb * a->cols + k0 * 16;
                    for (int64_t j = 0; j < ntb;) {
                        const int T = tile_tokens(ntb - j, NT);
                        o.lanes = lanes + ((size_t)i0 * TB + j) * 16;
                        o.y = a->y + (tb + j) * a->rows + m0 + i0;
                        fk_table[R - 1][T - 1](panel, x + j * a->cols, a->cols, kn, &o);
                        j += T;
                    }
                }
            }
            if (!fold_direct) {
                if (nk == 0) memset(lanes, 0, sizeof(float) * 16 * TB * (size_t)nm);
                gemm_fold(a, m0, nm, tb, ntb, lanes);
            }
        }
    }
}

/* ---- entry ------------------------------------------------------------------------------ */

TGT void mm_avx512_run(const struct mm_args *a, int64_t r0, int64_t r1) {
    tile_fn tf = NULL;
    qblock_fn qf = NULL;
    switch (a->dt) {
    case ST_DTYPE_F32: tf = ftile_ST_DTYPE_F32; break;
    case ST_DTYPE_F16: tf = ftile_ST_DTYPE_F16; break;
    case ST_DTYPE_BF16: tf = ftile_ST_DTYPE_BF16; break;
    case ST_DTYPE_Q8_0: qf = qblock_ST_DTYPE_Q8_0; break;
    case ST_DTYPE_Q4_0: qf = qblock_ST_DTYPE_Q4_0; break;
    case ST_DTYPE_Q4_1: qf = qblock_ST_DTYPE_Q4_1; break;
    case ST_DTYPE_Q5_0: qf = qblock_ST_DTYPE_Q5_0; break;
    case ST_DTYPE_Q5_1: qf = qblock_ST_DTYPE_Q5_1; break;
    case ST_DTYPE_IQ4_NL: qf = qblock_ST_DTYPE_IQ4_NL; break;
    case ST_DTYPE_Q4_K: qf = qblock_ST_DTYPE_Q4_K; break;
    case ST_DTYPE_Q5_K: qf = qblock_ST_DTYPE_Q5_K; break;
    case ST_DTYPE_Q6_K: qf = qblock_ST_DTYPE_Q6_K; break;
    default: return;
    }
    if (qf) qrun(qf, a, r0, r1);
    else if (a->n_tok > GEMV_MAX_T) gemm(a, r0, r1);
    else run_tiles(tf, a, r0, r1);
}

#endif /* __x86_64__ */
