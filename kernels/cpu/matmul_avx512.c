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
#define NTQ 4             /* GEMM tile tokens (quantized weights; at most NT) */
#define KC 64             /* GEMM column block: 64 chunks of 16 = 1024 columns (16 pairs) */
#define MC 16             /* GEMM rows per lanes block */
#define TB 128            /* GEMM tokens per lanes block */

/* ---- activations ------------------------------------------------------------------- */

TGT void mm_avx512_quantize(const float *x, int64_t cols, void *qrow) {
    const int64_t P = qx_pad(cols), ng = cols / MM_GROUP;
    uint8_t *base = qrow;
    int8_t *v = (int8_t *)base;
    int32_t *xs = (int32_t *)(base + P);
    float *xsf = (float *)(base + 2 * P), *dv = (float *)(base + 3 * P), *dg = (float *)(base + 4 * P);
    const __m512 big = _mm512_set1_ps(FLT_MAX);
    const __m256i ones = _mm256_set1_epi8(1);
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
        __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm512_cvtepi32_epi8(i0)), _mm512_cvtepi32_epi8(i1), 1);
        _mm256_storeu_si256((__m256i *)(v + g * 32), q);
        __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q);   /* lane sums of 4 */
        _mm256_storeu_si256((__m256i *)(xs + g * 8), s);
        _mm256_storeu_ps(xsf + g * 8, _mm256_cvtepi32_ps(s));
        _mm256_storeu_ps(dv + g * 8, _mm256_set1_ps(d));
        dg[g] = d;
    }
    /* the rest of the last pair: zero codes, sums and scales */
    const int64_t c0 = ng * MM_GROUP;
    memset(v + c0, 0, (size_t)(P - c0));
    memset(xs + c0 / 4, 0, (size_t)(P - c0));
    memset(xsf + c0 / 4, 0, (size_t)(P - c0));
    memset(dv + c0 / 4, 0, (size_t)(P - c0));
    memset(dg + ng, 0, qx_dg_bytes(cols) - (size_t)ng * sizeof(float));
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

/* ---- quantized weights ------------------------------------------------------------------
 * A pair p of a row = groups 2p and 2p+1 = 64 columns = one zmm of codes u
 * (byte i = column 64p + i), the lane scales a (16 floats) and mins b. */

/* Two f16 scales -> [s0, s1, 0, 0] (s1 = 0 for a half pair). */
INL __m128 pair_scales(const uint8_t *p0, const uint8_t *p1) {
    uint16_t h0, h1 = 0;
    memcpy(&h0, p0, 2);
    if (p1) memcpy(&h1, p1, 2);
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)((uint32_t)h0 | (uint32_t)h1 << 16)));
}

/* Two groups' 16 nibble bytes -> 64 codes: [lo(q0) | hi(q0) | lo(q1) | hi(q1)]
 * (q1 = NULL: a half pair, zero codes). */
INL __m512i nib_pair(const uint8_t *q0, const uint8_t *q1) {
    __m512i t = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)q0));
    t = q1 ? _mm512_mask_broadcast_i32x4(t, 0xff00, _mm_loadu_si128((const __m128i *)q1))
           : _mm512_maskz_mov_epi32(0x00ff, t);
    return _mm512_and_si512(_mm512_mask_blend_epi64(0xcc, t, _mm512_srli_epi16(t, 4)), _mm512_set1_epi8(0x0f));
}

/* 16 nibble bytes -> 32 codes of a group: low nibbles then high nibbles. */
INL __m256i nib32(__m128i q) {
    const __m128i m = _mm_set1_epi8(0x0f);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(q, m)),
                                   _mm_and_si128(_mm_srli_epi16(q, 4), m), 1);
}

INL __m512i cat256(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

/* Per-superblock scales of the K types into ks[16]:
 * Q4_K/Q5_K: [d*sc_0..7 | -dmin*m_0..7]; Q6_K: [d*sc_0..15]. */
INL void kscales(st_dtype dt, const uint8_t *b, float *ks) {
    if (dt == ST_DTYPE_Q6_K) {
        __m512 s = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b + 192))));
        uint16_t h;
        memcpy(&h, b + 208, 2);
        _mm512_storeu_ps(ks, _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(h)), s));
        return;
    }
    uint32_t u[4], k[3];
    memcpy(k, b + 4, 12);
    /* 12 bytes -> 8 six-bit scales then 8 six-bit mins (mm_scale_min_k4) */
    u[0] = k[0] & 0x3f3f3f3f;
    u[1] = (k[2] & 0x0f0f0f0f) | (((k[0] >> 6) & 0x03030303) << 4);
    u[2] = k[1] & 0x3f3f3f3f;
    u[3] = ((k[2] >> 4) & 0x0f0f0f0f) | (((k[1] >> 6) & 0x03030303) << 4);
    __m512 s = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)u)));
    uint16_t hd, hm;
    memcpy(&hd, b, 2);
    memcpy(&hm, b + 2, 2);
    const __m512 f = _mm512_insertf32x8(_mm512_set1_ps(_cvtsh_ss(hd)), _mm256_set1_ps(-_cvtsh_ss(hm)), 1);
    _mm512_storeu_ps(ks, _mm512_mul_ps(f, s));
}

/* Expansion of compact scales to the 16 lanes of a pair. */
static const int32_t idx_two[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
static const int32_t idx_four[16] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};

INL __m512 expand(st_dtype dt, __m128 s) {
    return _mm512_permutexvar_ps(_mm512_loadu_si512(dt == ST_DTYPE_Q6_K ? idx_four : idx_two), _mm512_castps128_ps512(s));
}

INL __m128 ld2(const float *p) { return _mm_castpd_ps(_mm_load_sd((const double *)p)); }

/* Unpacks pair p of a row: codes u and the compact scales a, mins b: one per
 * group ([s0, s1]) or, for Q6_K, one per 16 columns ([s0..s3]); expand()
 * spreads them over the lanes. full = both groups exist (false only for the
 * last pair of an odd group count, 32-blocks only). ks: the superblock's
 * kscales (K types). */
INL void unpack(st_dtype dt, const uint8_t *row, int64_t p, bool full, const float *ks, __m512i *u, __m128 *a, __m128 *b) {
    switch (dt) {
    case ST_DTYPE_Q8_0: {
        const uint8_t *b0 = row + (size_t)p * 68, *b1 = b0 + 34;
        __m256i q0 = _mm256_loadu_si256((const __m256i *)(b0 + 2));
        __m256i q1 = full ? _mm256_loadu_si256((const __m256i *)(b1 + 2)) : _mm256_set1_epi8((char)0x80);
        *u = _mm512_xor_si512(cat256(q0, q1), _mm512_set1_epi8((char)0x80));
        *a = pair_scales(b0, full ? b1 : NULL);
        return;
    }
    case ST_DTYPE_Q4_0: case ST_DTYPE_Q4_1: case ST_DTYPE_IQ4_NL: {
        const size_t bb = dt == ST_DTYPE_Q4_1 ? 20 : 18, qo = dt == ST_DTYPE_Q4_1 ? 4 : 2;
        const uint8_t *b0 = row + (size_t)p * 2 * bb, *b1 = b0 + bb;
        __m512i n = nib_pair(b0 + qo, full ? b1 + qo : NULL);
        if (dt == ST_DTYPE_IQ4_NL) {
            const __m512i tab = _mm512_broadcast_i32x4(_mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129,
                                                                     (char)141, (char)153, (char)166, (char)181,
                                                                     (char)197, (char)217, (char)241));
            n = _mm512_shuffle_epi8(tab, n);
            if (!full) n = _mm512_maskz_mov_epi64(0x0f, n);
        }
        *u = n;
        *a = pair_scales(b0, full ? b1 : NULL);
        if (dt == ST_DTYPE_Q4_1) *b = pair_scales(b0 + 2, full ? b1 + 2 : NULL);
        return;
    }
    case ST_DTYPE_Q5_0: case ST_DTYPE_Q5_1: {
        const size_t bb = dt == ST_DTYPE_Q5_1 ? 24 : 22, ho = dt == ST_DTYPE_Q5_1 ? 4 : 2;
        const uint8_t *b0 = row + (size_t)p * 2 * bb, *b1 = b0 + bb;
        uint32_t h0, h1 = 0;
        memcpy(&h0, b0 + ho, 4);
        if (full) memcpy(&h1, b1 + ho, 4);
        __m512i n = nib_pair(b0 + ho + 4, full ? b1 + ho + 4 : NULL);
        *u = _mm512_mask_add_epi8(n, (__mmask64)((uint64_t)h0 | (uint64_t)h1 << 32), n, _mm512_set1_epi8(16));
        *a = pair_scales(b0, full ? b1 : NULL);
        if (dt == ST_DTYPE_Q5_1) *b = pair_scales(b0 + 2, full ? b1 + 2 : NULL);
        return;
    }
    case ST_DTYPE_Q4_K: case ST_DTYPE_Q5_K: {
        const size_t bb = dt == ST_DTYPE_Q4_K ? 144 : 176;
        const uint8_t *blk = row + (size_t)(p / 4) * bb;
        const int c = (int)(p % 4);
        const uint8_t *qs = blk + (dt == ST_DTYPE_Q4_K ? 16 : 48) + 32 * c;
        const __m512i sh = _mm512_setr_epi64(0, 0, 0, 0, 0x0004000400040004, 0x0004000400040004, 0x0004000400040004,
                                             0x0004000400040004);
        __m512i y = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qs));
        __m512i n = _mm512_and_si512(_mm512_srlv_epi16(y, sh), _mm512_set1_epi8(0x0f));
        if (dt == ST_DTYPE_Q5_K) {
            __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 16)));
            const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))),
                                                   _mm256_set1_epi8((char)(1 << (2 * c + 1))), 1);
            n = _mm512_mask_add_epi8(n, _mm512_test_epi8_mask(qh, bit), n, _mm512_set1_epi8(16));
        }
        *u = n;
        *a = ld2(ks + 2 * c);
        *b = ld2(ks + 8 + 2 * c);
        return;
    }
    case ST_DTYPE_Q6_K: {
        const uint8_t *blk = row + (size_t)(p / 4) * 210;
        const int c = (int)(p % 4), h = c / 2;
        __m512i L = _mm512_loadu_si512(blk + 64 * h);
        __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h)));
        const __m512i m3 = _mm512_set1_epi8(3), m15 = _mm512_set1_epi8(0x0f);
        __m512i lo, hs;
        if (c % 2 == 0) {
            lo = _mm512_and_si512(L, m15);
            hs = _mm512_mask_blend_epi64(0xf0, H, _mm512_srli_epi16(H, 2));
        } else {
            lo = _mm512_and_si512(_mm512_srli_epi16(L, 4), m15);
            hs = _mm512_mask_blend_epi64(0xf0, _mm512_srli_epi16(H, 4), _mm512_srli_epi16(H, 6));
        }
        *u = _mm512_or_si512(lo, _mm512_slli_epi16(_mm512_and_si512(hs, m3), 4));
        *a = _mm_loadu_ps(ks + 4 * c);
        return;
    }
    default: return;
    }
}

INL bool is_k(st_dtype dt) { return dt == ST_DTYPE_Q4_K || dt == ST_DTYPE_Q5_K || dt == ST_DTYPE_Q6_K; }

/* -o * xs as the dpbusd start: turns sum u*v into sum (u - o) * v. */
INL __m512i neg_off(int o, const int32_t *xs) {
    if (!o) return _mm512_setzero_si512();
    const int sh = o == 8 ? 3 : o == 16 ? 4 : o == 32 ? 5 : 7;
    return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_loadu_si512(xs), (unsigned)sh));
}

/* One pair of R rows x T tokens into acc. The scale products a * d and
 * b * d are formed on the compact scales (one multiply per group, the same
 * fp32 products as lane by lane) and spread over the lanes afterwards. */
INL void qstep(st_dtype dt, const uint8_t *w, size_t rb, int R, const struct qx_row *q, int T, int64_t p, bool full,
               float (*ks)[16], __m512 acc[][GEMV_MAX_T]) {
    const int o = mm_q_offset(dt);
    const bool hb = mm_q_has_min(dt);
    __m512i u[8];
    __m128 a[8], b[8];
    for (int i = 0; i < R; i++) unpack(dt, w + i * rb, p, full, ks[i], &u[i], &a[i], &b[i]);
    for (int j = 0; j < T; j++) {
        const __m512i v = _mm512_loadu_si512(q[j].v + 64 * p);
        __m128 dg = ld2(q[j].dg + 2 * p);
        if (dt == ST_DTYPE_Q6_K) dg = _mm_unpacklo_ps(dg, dg);
        const __m512i init = neg_off(o, q[j].xs + 16 * p);
        const __m512 xsf = hb ? _mm512_loadu_ps(q[j].xsf + 16 * p) : _mm512_setzero_ps();
        for (int i = 0; i < R; i++) {
            __m512i ip = _mm512_dpbusd_epi32(init, u[i], v);
            acc[i][j] = _mm512_fmadd_ps(expand(dt, _mm_mul_ps(a[i], dg)), _mm512_cvtepi32_ps(ip), acc[i][j]);
            if (hb) acc[i][j] = _mm512_fmadd_ps(expand(dt, _mm_mul_ps(b[i], dg)), xsf, acc[i][j]);
        }
    }
}

INL void qtile(st_dtype dt, const struct mm_args *a, int64_t r, int R, int64_t t, int T) {
    const int64_t ng = a->cols / MM_GROUP, np = ng / 2;
    const uint8_t *w = a->w + (size_t)r * a->row_bytes;
    const size_t rb = a->row_bytes;
    struct qx_row q[GEMV_MAX_T];
    for (int j = 0; j < T; j++) q[j] = qx_at(a->qx, a->cols, t + j);
    __m512 acc[8][GEMV_MAX_T];
    _Alignas(64) float ks[8][16];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < T; j++) acc[i][j] = _mm512_setzero_ps();
    if (is_k(dt)) {
        const size_t bb = st_dtype_block_bytes(dt);
        for (int64_t sb = 0; sb < ng / 8; sb++) {
            for (int i = 0; i < R; i++) kscales(dt, w + i * rb + sb * bb, ks[i]);
            for (int c = 0; c < 4; c++) qstep(dt, w, rb, R, q, T, 4 * sb + c, true, ks, acc);
        }
    } else {
        for (int64_t p = 0; p < np; p++) qstep(dt, w, rb, R, q, T, p, true, ks, acc);
        if (ng % 2) qstep(dt, w, rb, R, q, T, np, false, ks, acc);
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < T; j++)
            a->y[(t + j) * a->rows + r + i] = fold16(acc[i][j]) + (a->bias ? a->bias[r + i] : 0.0f);
}

#define QTILE_CASES(DT) \
    static TGT void qtile_##DT(const struct mm_args *a, int64_t r, int R, int64_t t, int T) { \
        if (T == 1) { \
            if (R == 4) qtile(DT, a, r, 4, t, 1); \
            else if (R == 2) qtile(DT, a, r, 2, t, 1); \
            else qtile(DT, a, r, 1, t, 1); \
        } else if (T == 2) { \
            if (R >= 2) qtile(DT, a, r, 2, t, 2); else qtile(DT, a, r, 1, t, 2); \
        } else if (T == 3) { \
            if (R >= 2) qtile(DT, a, r, 2, t, 3); else qtile(DT, a, r, 1, t, 3); \
        } else { \
            if (R >= 2) qtile(DT, a, r, 2, t, 4); else qtile(DT, a, r, 1, t, 4); \
        } \
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

/* Rows [r0, r1) x all tokens with quantized register tiles (R <= 4 for T = 1, else 2). */
static TGT void run_qtiles(tile_fn fn, const struct mm_args *a, int64_t r0, int64_t r1) {
    for (int64_t t = 0; t < a->n_tok; t += GEMV_MAX_T) {
        const int T = (int)ST_MIN(GEMV_MAX_T, a->n_tok - t);
        const int Rmax = T == 1 ? 4 : 2;
        int64_t r = r0;
        for (; r + Rmax <= r1; r += Rmax) fn(a, r, Rmax, t, T);
        if (Rmax == 4)
            for (; r + 2 <= r1; r += 2) fn(a, r, 2, t, T);
        for (; r < r1; r++) fn(a, r, 1, t, T);
    }
}

/* Quantized GEMM panel: per (pair, row) 256 bytes = signed codes w = u - o
 * (64 x int8), start s = -128 * lane sums of w (16 x int32), a, b (16 x fp32).
 * With vu = v + 128 (unsigned), dpbusd(s, vu, w) = sum (u - o) * v exactly. */
#define QP_BYTES 256

INL void qpack(st_dtype dt, const uint8_t *w, size_t rb, int R, int64_t p0, int64_t pn, int64_t np, bool odd,
               uint8_t *panel) {
    const int o = mm_q_offset(dt);
    const __m512i ones = _mm512_set1_epi8(1), off = _mm512_set1_epi8((char)o);
    const size_t bb = st_dtype_block_bytes(dt);
    for (int i = 0; i < R; i++) {
        const uint8_t *row = w + i * rb;
        _Alignas(64) float ks[16];
        for (int64_t c = 0; c < pn; c++) {
            const int64_t p = p0 + c;
            if (is_k(dt) && (c == 0 || p % 4 == 0)) kscales(dt, row + (size_t)(p / 4) * bb, ks);
            __m512i u;
            __m128 ca, cb = _mm_setzero_ps();
            unpack(dt, row, p, !(odd && p == np), ks, &u, &ca, &cb);
            const __m512 a = expand(dt, ca), b = expand(dt, cb);
            __m512i sw = _mm512_sub_epi8(u, off);
            if (odd && p == np) sw = _mm512_mask_blend_epi64(0xf0, sw, _mm512_setzero_si512());
            __m512i s = _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, sw), 7);
            uint8_t *dst = panel + (size_t)(c * MR + i) * QP_BYTES;
            _mm512_store_si512(dst, sw);
            _mm512_store_si512(dst + 64, _mm512_sub_epi32(_mm512_setzero_si512(), s));
            _mm512_store_ps(dst + 128, a);
            _mm512_store_ps(dst + 192, b);
        }
    }
}

#define QPACK_CASE(DT) \
    static TGT void qpack_##DT(const uint8_t *w, size_t rb, int R, int64_t p0, int64_t pn, int64_t np, bool odd, \
                               uint8_t *panel) { \
        qpack(DT, w, rb, R, p0, pn, np, odd, panel); \
    }
QPACK_CASE(ST_DTYPE_Q8_0)
QPACK_CASE(ST_DTYPE_Q4_0)
QPACK_CASE(ST_DTYPE_Q4_1)
QPACK_CASE(ST_DTYPE_Q5_0)
QPACK_CASE(ST_DTYPE_Q5_1)
QPACK_CASE(ST_DTYPE_IQ4_NL)
QPACK_CASE(ST_DTYPE_Q4_K)
QPACK_CASE(ST_DTYPE_Q5_K)
QPACK_CASE(ST_DTYPE_Q6_K)

/* GEMM micro-kernel for quantized panels: R rows x T tokens, pairs [p0, p0 + pn). */
INL void qkern(int R, int T, bool hb, const uint8_t *panel, const struct qx_row *q, int64_t p0, int64_t pn,
               const struct tout *o) {
    __m512 acc[MR][NT];
    if (o->first) {
        for (int i = 0; i < R; i++)
            for (int j = 0; j < T; j++) acc[i][j] = _mm512_setzero_ps();
    } else {
        for (int i = 0; i < R; i++)
            for (int j = 0; j < T; j++) acc[i][j] = _mm512_load_ps(o->lanes + ((size_t)i * TB + j) * 16);
    }
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int64_t c = 0; c < pn; c++) {
        const int64_t p = p0 + c;
        const uint8_t *pc = panel + (size_t)c * MR * QP_BYTES;
        for (int j = 0; j < T; j++) {
            const __m512i vu = _mm512_xor_si512(_mm512_loadu_si512(q[j].v + 64 * p), flip);
            const __m512 dx = _mm512_loadu_ps(q[j].dv + 16 * p);
            const __m512 xsf = hb ? _mm512_loadu_ps(q[j].xsf + 16 * p) : _mm512_setzero_ps();
            for (int i = 0; i < R; i++) {
                const uint8_t *e = pc + (size_t)i * QP_BYTES;
                __m512i ip = _mm512_dpbusd_epi32(_mm512_load_si512(e + 64), vu, _mm512_load_si512(e));
                acc[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_load_ps(e + 128), dx), _mm512_cvtepi32_ps(ip), acc[i][j]);
                if (hb) acc[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_load_ps(e + 192), dx), xsf, acc[i][j]);
            }
        }
    }
    tile_out(R, T, acc, o);
}

#define QK(R, T) \
    static TGT void qk_##R##_##T(const uint8_t *p, const struct qx_row *q, int64_t p0, int64_t pn, const struct tout *o) { \
        qkern(R, T, false, p, q, p0, pn, o); \
    } \
    static TGT void qkb_##R##_##T(const uint8_t *p, const struct qx_row *q, int64_t p0, int64_t pn, const struct tout *o) { \
        qkern(R, T, true, p, q, p0, pn, o); \
    }
#define QK_R(R) QK(R, 1) QK(R, 2) QK(R, 3) QK(R, 4)
QK_R(1) QK_R(2) QK_R(3) QK_R(4)
typedef void (*qk_fn)(const uint8_t *, const struct qx_row *, int64_t, int64_t, const struct tout *);
static const qk_fn qk_table[2][MR][NTQ] = {
    {{qk_1_1, qk_1_2, qk_1_3, qk_1_4}, {qk_2_1, qk_2_2, qk_2_3, qk_2_4},
     {qk_3_1, qk_3_2, qk_3_3, qk_3_4}, {qk_4_1, qk_4_2, qk_4_3, qk_4_4}},
    {{qkb_1_1, qkb_1_2, qkb_1_3, qkb_1_4}, {qkb_2_1, qkb_2_2, qkb_2_3, qkb_2_4},
     {qkb_3_1, qkb_3_2, qkb_3_3, qkb_3_4}, {qkb_4_1, qkb_4_2, qkb_4_3, qkb_4_4}},
};

typedef void (*qpack_fn)(const uint8_t *, size_t, int, int64_t, int64_t, int64_t, bool, uint8_t *);

/* ---- the blocked GEMM driver ---------------------------------------------------------- */

/* y for rows [m0, m0 + nm) (nm <= MC = 16) x tokens [tb, tb + ntb) from the
 * lanes block: 16 rows of one token folded at once (float columns past the
 * last 16 need the scalar finish). */
static TGT void gemm_fold(const struct mm_args *a, int64_t m0, int64_t nm, int64_t tb, int64_t ntb, bool quant,
                          const float *lanes) {
    const bool tail = !quant && a->cols % 16;
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

static TGT void gemm(const struct mm_args *a, int64_t r0, int64_t r1, qpack_fn qp) {
    const bool quant = qp != NULL, hb = mm_q_has_min(a->dt);
    const int64_t ng = a->cols / MM_GROUP;
    /* column units: 16-column chunks (float) or 64-column pairs (quant) */
    const int64_t nk = quant ? (ng + 1) / 2 : a->cols / 16;
    const int64_t kc = quant ? KC / 4 : KC;
    const int nt = quant ? NTQ : NT;
    /* the last column block folds straight into y unless float columns past the last 16 remain */
    const bool fold_direct = quant || a->cols % 16 == 0;
    _Alignas(64) float lanes[MC * TB * 16];
    _Alignas(64) uint8_t panel[MR * KC * 64];   /* MR x KC chunks of fp32 = MR x KC/4 pairs x 256 B */
    struct qx_row q[TB];
    for (int64_t tb = 0; tb < a->n_tok; tb += TB) {
        const int64_t ntb = ST_MIN(TB, a->n_tok - tb);
        if (quant)
            for (int64_t j = 0; j < ntb; j++) q[j] = qx_at(a->qx, a->cols, tb + j);
        for (int64_t m0 = r0; m0 < r1; m0 += MC) {
            const int64_t nm = ST_MIN(MC, r1 - m0);
            for (int64_t k0 = 0; k0 < nk; k0 += kc) {
                const int64_t kn = ST_MIN(kc, nk - k0);
                const bool last = k0 + kn == nk && fold_direct;
                for (int64_t i0 = 0; i0 < nm; i0 += MR) {
                    const int R = (int)ST_MIN(MR, nm - i0);
                    const uint8_t *w = a->w + (size_t)(m0 + i0) * a->row_bytes;
                    struct tout o = {.first = k0 == 0, .fold = last, .ldy = a->rows,
                                     .bias = a->bias ? a->bias + m0 + i0 : NULL};
                    if (quant) qp(w, a->row_bytes, R, k0, kn, ng / 2, ng % 2, panel);
                    else fpack_any(a->dt, w, a->row_bytes, R, k0, kn, (float *)panel);
                    /* the next panel's weights stream in from memory while this one is swept */
                    if (m0 + i0 + MR < r1) {
                        const size_t cb = quant ? 2 * st_dtype_row_bytes(a->dt, 32) : (size_t)st_dtype_row_bytes(a->dt, 16);
                        const uint8_t *nx = w + (size_t)MR * a->row_bytes + (size_t)k0 * cb;
                        const size_t span = (size_t)kn * cb;
                        for (int i = 0; i < (int)ST_MIN(MR, r1 - (m0 + i0 + MR)); i++)
                            for (size_t off = 0; off < span; off += 64) _mm_prefetch((const char *)nx + i * a->row_bytes + off, _MM_HINT_T1);
                    }
                    const float *x = a->x + tb * a->cols + k0 * 16;
                    for (int64_t j = 0; j < ntb;) {
                        const int T = tile_tokens(ntb - j, nt);
                        o.lanes = lanes + ((size_t)i0 * TB + j) * 16;
                        o.y = a->y + (tb + j) * a->rows + m0 + i0;
                        if (quant) qk_table[hb][R - 1][T - 1](panel, q + j, k0, kn, &o);
                        else fk_table[R - 1][T - 1]((const float *)panel, x + j * a->cols, a->cols, kn, &o);
                        j += T;
                    }
                }
            }
            if (!fold_direct) {
                if (nk == 0) memset(lanes, 0, sizeof(float) * 16 * TB * (size_t)nm);
                gemm_fold(a, m0, nm, tb, ntb, quant, lanes);
            }
        }
    }
}

/* ---- entry ------------------------------------------------------------------------------ */

TGT void mm_avx512_run(const struct mm_args *a, int64_t r0, int64_t r1) {
    tile_fn tf = NULL;
    qpack_fn qp = NULL;
    switch (a->dt) {
    case ST_DTYPE_F32: tf = ftile_ST_DTYPE_F32; break;
    case ST_DTYPE_F16: tf = ftile_ST_DTYPE_F16; break;
    case ST_DTYPE_BF16: tf = ftile_ST_DTYPE_BF16; break;
    case ST_DTYPE_Q8_0: tf = qtile_ST_DTYPE_Q8_0; qp = qpack_ST_DTYPE_Q8_0; break;
    case ST_DTYPE_Q4_0: tf = qtile_ST_DTYPE_Q4_0; qp = qpack_ST_DTYPE_Q4_0; break;
    case ST_DTYPE_Q4_1: tf = qtile_ST_DTYPE_Q4_1; qp = qpack_ST_DTYPE_Q4_1; break;
    case ST_DTYPE_Q5_0: tf = qtile_ST_DTYPE_Q5_0; qp = qpack_ST_DTYPE_Q5_0; break;
    case ST_DTYPE_Q5_1: tf = qtile_ST_DTYPE_Q5_1; qp = qpack_ST_DTYPE_Q5_1; break;
    case ST_DTYPE_IQ4_NL: tf = qtile_ST_DTYPE_IQ4_NL; qp = qpack_ST_DTYPE_IQ4_NL; break;
    case ST_DTYPE_Q4_K: tf = qtile_ST_DTYPE_Q4_K; qp = qpack_ST_DTYPE_Q4_K; break;
    case ST_DTYPE_Q5_K: tf = qtile_ST_DTYPE_Q5_K; qp = qpack_ST_DTYPE_Q5_K; break;
    case ST_DTYPE_Q6_K: tf = qtile_ST_DTYPE_Q6_K; qp = qpack_ST_DTYPE_Q6_K; break;
    default: return;
    }
    if (a->n_tok > GEMV_MAX_T) gemm(a, r0, r1, qp);
    else if (qp) run_qtiles(tf, a, r0, r1);
    else run_tiles(tf, a, r0, r1);
}

#endif /* __x86_64__ */
