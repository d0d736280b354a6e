/* matmul, AVX2 + FMA + F16C path (Haswell / Zen 1 and later). Matrices are
 * read in packed 16-row blocks (matmul-impl.h) as two ymm halves of 8 rows;
 * one fp32 accumulator per (row, token) runs through the columns in order,
 * as kernels_cpu.h specifies, so results equal the portable path (matmul.c)
 * bit for bit. A block is swept for up to 4 tokens at a time (each block is
 * read once per 4 tokens); without a packed copy it is packed column segment
 * by segment into a stack buffer.
 *
 * Integer dot products without VNNI: vpmaddubsw multiplies unsigned codes by
 * signed activations into saturating 16-bit pair sums. Codes of at most 6
 * bits (< 64) cannot saturate (2 * 63 * 127 < 32767); the 8-bit types (Q8_0,
 * IQ4_NL) use the signed weight w = u - o instead: |w| and v with w's sign,
 * 2 * 128 * 127 < 32767. Either way the 32-bit sum is the exact integer
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
    const int64_t ng = cols / MM_GROUP;
    const struct qx_row qr = qx_at(qrow, cols, 0);
    int8_t *v = (int8_t *)qr.v;
    int32_t *s16 = (int32_t *)qr.s16, *s32 = (int32_t *)qr.s32;
    float *s32f = (float *)qr.s32f, *dg = (float *)qr.dg;
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
        __m256i s4 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
        int32_t t[8];
        _mm256_storeu_si256((__m256i *)t, s4);
        const int32_t h0 = t[0] + t[1] + t[2] + t[3], h1 = t[4] + t[5] + t[6] + t[7];
        s16[2 * g] = h0;
        s16[2 * g + 1] = h1;
        s32[g] = h0 + h1;
        s32f[g] = (float)(h0 + h1);
        dg[g] = d;
    }
    const size_t P = (size_t)qx_pad(cols);
    memset(v + ng * 32, 0, P - (size_t)ng * 32);
    memset(s16 + 2 * ng, 0, qx_part(P / 4) - (size_t)ng * 8);
    memset(s32 + ng, 0, qx_part(P / 8) - (size_t)ng * 4);
    memset(s32f + ng, 0, qx_part(P / 8) - (size_t)ng * 4);
    memset(dg + ng, 0, qx_part(P / 8) - (size_t)ng * 4);
}

/* ---- float weights ---------------------------------------------------------------------- */

#define SEG_BYTES 65536

/* Column c of half h of a packed float block (columns cs bytes apart): 8 rows widened. */
INL __m256 ldcol(st_dtype dt, const uint8_t *blk, size_t cs, int64_t c, int h) {
    if (dt == ST_DTYPE_F32) return _mm256_loadu_ps((const float *)(blk + cs * c + 32 * h));
    __m128i v = _mm_loadu_si128((const __m128i *)(blk + cs * c + 16 * h));
    if (dt == ST_DTYPE_F16) return _mm256_cvtph_ps(v);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
}

INL void fsweep(st_dtype dt, const uint8_t *blk, size_t cs, const float *x, int64_t ld, int T, int64_t n,
                __m256 io[TMAX][2]) {
    __m256 acc[TMAX][2];
    for (int t = 0; t < T; t++) acc[t][0] = io[t][0], acc[t][1] = io[t][1];
    for (int64_t c = 0; c < n; c++) {
        const __m256 w0 = ldcol(dt, blk, cs, c, 0), w1 = ldcol(dt, blk, cs, c, 1);
        for (int t = 0; t < T; t++) {
            const __m256 xb = _mm256_set1_ps(x[t * ld + c]);
            acc[t][0] = _mm256_fmadd_ps(w0, xb, acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(w1, xb, acc[t][1]);
        }
    }
    for (int t = 0; t < T; t++) io[t][0] = acc[t][0], io[t][1] = acc[t][1];
}

#define FSWEEP_CASES(DT) \
    static TGT void fsweep_##DT(const uint8_t *blk, size_t cs, const float *x, int64_t ld, int T, int64_t n, \
                                __m256 acc[TMAX][2]) { \
        if (T == 1) fsweep(DT, blk, cs, x, ld, 1, n, acc); \
        else if (T == 2) fsweep(DT, blk, cs, x, ld, 2, n, acc); \
        else if (T == 3) fsweep(DT, blk, cs, x, ld, 3, n, acc); \
        else fsweep(DT, blk, cs, x, ld, 4, n, acc); \
    }
FSWEEP_CASES(ST_DTYPE_F32)
FSWEEP_CASES(ST_DTYPE_F16)
FSWEEP_CASES(ST_DTYPE_BF16)
typedef void (*fsweep_fn)(const uint8_t *, size_t, const float *, int64_t, int, int64_t, __m256 (*)[2]);

/* One token, NB <= 4 blocks of a packed quad (bstride bytes apart, columns cs apart): one stream. */
INL void fsweep_quad(st_dtype dt, const uint8_t *blk, size_t bstride, size_t cs, int NB, const float *x, int64_t n,
                     __m256 io[4][2]) {
    __m256 acc[4][2];
    for (int b = 0; b < NB; b++) acc[b][0] = io[b][0], acc[b][1] = io[b][1];
    for (int64_t c = 0; c < n; c++) {
        for (size_t o = 0; o < cs; o += 64) mm_pf_decode(blk + cs * c + MM_PF_AHEAD + o);
        const __m256 xb = _mm256_set1_ps(x[c]);
        for (int b = 0; b < NB; b++) {
            acc[b][0] = _mm256_fmadd_ps(ldcol(dt, blk + (size_t)b * bstride, cs, c, 0), xb, acc[b][0]);
            acc[b][1] = _mm256_fmadd_ps(ldcol(dt, blk + (size_t)b * bstride, cs, c, 1), xb, acc[b][1]);
        }
    }
    for (int b = 0; b < NB; b++) io[b][0] = acc[b][0], io[b][1] = acc[b][1];
}

static TGT void fquad_any(st_dtype dt, const uint8_t *blk, size_t bstride, size_t cs, int NB, const float *x, int64_t n,
                          __m256 io[4][2]) {
#define FQ(DT) \
    do { \
        if (NB == 4) fsweep_quad(DT, blk, bstride, cs, 4, x, n, io); \
        else if (NB == 3) fsweep_quad(DT, blk, bstride, cs, 3, x, n, io); \
        else if (NB == 2) fsweep_quad(DT, blk, bstride, cs, 2, x, n, io); \
        else fsweep_quad(DT, blk, bstride, cs, 1, x, n, io); \
    } while (0)
    if (dt == ST_DTYPE_F32) FQ(ST_DTYPE_F32);
    else if (dt == ST_DTYPE_F16) FQ(ST_DTYPE_F16);
    else FQ(ST_DTYPE_BF16);
#undef FQ
}

/* Decode on a packed copy: the blocks of each quad that are in [r0, r1) in one sweep. */
static TGT void fquads(const struct mm_args *a, int64_t r0, int64_t r1) {
    const st_dtype dt = a->dt;
    const size_t es = dt == ST_DTYPE_F32 ? 4 : 2, bb = pk_block_bytes(dt, a->cols), bs = MM_RB * es;
    const int64_t nblk = (a->rows + MM_RB - 1) / MM_RB, blk1 = (r1 + MM_RB - 1) / MM_RB;
    for (int64_t blk = r0 / MM_RB; blk < blk1;) {
        const int qn = pk_quad_n(nblk, blk);
        const int NB = (int)(ST_MIN(blk / 4 * 4 + qn, blk1) - blk);
        const size_t cs = (size_t)qn * bs;
        const uint8_t *src = a->packed + (size_t)(blk / 4 * 4) * bb + (size_t)(blk % 4) * bs;
        __m256 acc[4][2], part[4][2];
        for (int64_t k = 0; k < a->cols; k += MM_KP) {   /* one partial sum per 512 columns */
            for (int b = 0; b < NB; b++) part[b][0] = part[b][1] = _mm256_setzero_ps();
            fquad_any(dt, src + (size_t)k * cs, bs, cs, NB, a->x + k, ST_MIN(MM_KP, a->cols - k), part);
            for (int b = 0; b < NB; b++)
                for (int h = 0; h < 2; h++) acc[b][h] = k ? _mm256_add_ps(acc[b][h], part[b][h]) : part[b][h];
        }
        for (int b = 0; b < NB; b++) {
            const int64_t b0 = (blk + b) * MM_RB, lo = ST_MAX(r0, b0), hi = ST_MIN(r1, b0 + MM_RB);
            _Alignas(32) float v[16];
            _mm256_store_ps(v, acc[b][0]);
            _mm256_store_ps(v + 8, acc[b][1]);
            for (int64_t r = lo; r < hi; r++) a->y[r] = v[r - b0] + (a->bias ? a->bias[r] : 0.0f);
        }
        blk += NB;
    }
}

static TGT void frun(fsweep_fn fn, const struct mm_args *a, int64_t r0, int64_t r1) {
    if (a->packed && a->n_tok == 1) {
        fquads(a, r0, r1);
        return;
    }
    const st_dtype dt = a->dt;
    const size_t es = dt == ST_DTYPE_F32 ? 4 : 2, bb = pk_block_bytes(dt, a->cols);
    const int64_t seg = a->packed ? MM_KP : (int64_t)(SEG_BYTES / (MM_RB * es)) / MM_KP * MM_KP;
    _Alignas(64) uint8_t buf[a->packed ? 64 : SEG_BYTES];
    const int64_t nblk = (a->rows + MM_RB - 1) / MM_RB;
    for (int64_t blk = r0 / MM_RB; blk * MM_RB < r1; blk++) {
        const int64_t b0 = blk * MM_RB, lo = ST_MAX(r0, b0), hi = ST_MIN(r1, b0 + MM_RB);
        /* the packed copy: the block in its quad (matmul-impl.h), columns cs apart */
        const size_t qcs = (size_t)pk_quad_n(nblk, blk) * MM_RB * es;
        for (int64_t t0 = 0; t0 < a->n_tok; t0 += TMAX) {
            const int T = (int)ST_MIN(TMAX, a->n_tok - t0);
            __m256 acc[TMAX][2], part[TMAX][2];
            for (int64_t c0 = 0; c0 < a->cols; c0 += seg) {
                const int64_t n = ST_MIN(seg, a->cols - c0);
                const uint8_t *src = a->packed + (size_t)(blk / 4 * 4) * bb + (size_t)(blk % 4) * MM_RB * es + (size_t)c0 * qcs;
                size_t cs = qcs;
                if (!a->packed) {
                    mm_pack_cols(dt, a->w, a->rows, a->cols, b0, c0, c0 + n, buf);
                    src = buf;
                    cs = MM_RB * es;
                }
                for (int64_t k = 0; k < n; k += MM_KP) {   /* one partial sum per 512 columns */
                    for (int t = 0; t < T; t++) part[t][0] = part[t][1] = _mm256_setzero_ps();
                    fn(src + (size_t)k * cs, cs, a->x + t0 * a->cols + c0 + k, a->cols, T, ST_MIN(MM_KP, n - k), part);
                    for (int t = 0; t < T; t++)
                        for (int h = 0; h < 2; h++) acc[t][h] = c0 + k ? _mm256_add_ps(acc[t][h], part[t][h]) : part[t][h];
                }
            }
            for (int t = 0; t < T; t++) {
                _Alignas(32) float v[16];
                _mm256_store_ps(v, acc[t][0]);
                _mm256_store_ps(v + 8, acc[t][1]);
                for (int64_t r = lo; r < hi; r++)
                    a->y[(t0 + t) * a->rows + r] = v[r - b0] + (a->bias ? a->bias[r] : 0.0f);
            }
        }
    }
}

/* ---- quantized weights: packed 16-row blocks, two halves of 8 rows ------------------------ */

#define NTQ 4
#define TBQ 256

INL bool is_k(st_dtype dt) { return dt == ST_DTYPE_Q4_K || dt == ST_DTYPE_Q5_K || dt == ST_DTYPE_Q6_K; }
INL bool signed_codes(st_dtype dt) { return dt == ST_DTYPE_Q8_0 || dt == ST_DTYPE_IQ4_NL; }

/* bit j of h -> byte j = 16 (llama.cpp's bytes_from_bits_32, scaled) */
INL __m256i bits16(uint32_t h) {
    const __m256i shuf = _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)h), shuf);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit), _mm256_set1_epi8(16));
}

/* The codes of rows 8h .. 8h+7 of one group (c[0..3] low halves, c[4..7]
 * high halves; Q8_0 c[m] = columns 4m..); the 8-bit types as signed weights. */
INL void codes(st_dtype dt, const uint8_t *rec, int h, __m256i *c) {
    if (dt == ST_DTYPE_Q8_0) {
        for (int m = 0; m < 8; m++)
            c[m] = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(rec + 64 * m + 32 * h)), _mm256_set1_epi8((char)0x80));
        return;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int k = 0; k < 4; k++) {
        const __m256i z = _mm256_loadu_si256((const __m256i *)(rec + 64 * k + 32 * h));
        c[k] = _mm256_and_si256(z, m4);
        c[4 + k] = _mm256_and_si256(_mm256_srli_epi16(z, 4), m4);
    }
    if (dt == ST_DTYPE_IQ4_NL) {
        const __m256i tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)mm_iq4nl_values));
        for (int k = 0; k < 8; k++) c[k] = _mm256_shuffle_epi8(tab, c[k]);
    } else if (dt == ST_DTYPE_Q5_0 || dt == ST_DTYPE_Q5_1 || dt == ST_DTYPE_Q5_K) {
        for (int k = 0; k < 4; k++) {
            uint32_t lo, hi;
            memcpy(&lo, rec + 256 + 16 * k + 4 * h, 4);
            memcpy(&hi, rec + 256 + 16 * k + 8 + 4 * h, 4);
            c[k] = _mm256_or_si256(c[k], bits16(lo));
            c[4 + k] = _mm256_or_si256(c[4 + k], bits16(hi));
        }
    } else if (dt == ST_DTYPE_Q6_K) {
        const __m256i t0 = _mm256_loadu_si256((const __m256i *)(rec + 256 + 32 * h));
        const __m256i t1 = _mm256_loadu_si256((const __m256i *)(rec + 320 + 32 * h)), m3 = _mm256_set1_epi8(3);
        for (int k = 0; k < 4; k++) {
            const __m128i n = _mm_cvtsi32_si128(2 * k);
            c[k] = _mm256_or_si256(c[k], _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(t0, n), m3), 4));
            c[4 + k] = _mm256_or_si256(c[4 + k], _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(t1, n), m3), 4));
        }
    }
}

/* sum over 4 columns per row of code * v (v: 4 bytes broadcast), exact */
INL __m256i dot4(st_dtype dt, __m256i c, const int8_t *v) {
    int32_t x;
    memcpy(&x, v, 4);
    const __m256i b = _mm256_set1_epi32(x), ones = _mm256_set1_epi16(1);
    if (signed_codes(dt)) return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(c, c), _mm256_sign_epi8(b, c)), ones);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(c, b), ones);
}

INL void isums(st_dtype dt, const __m256i *c, const int8_t *v, __m256i *lo, __m256i *hi) {
    __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
    if (dt == ST_DTYPE_Q8_0) {
        for (int m = 0; m < 8; m += 2) {
            a = _mm256_add_epi32(a, dot4(dt, c[m], v + 4 * m));
            b = _mm256_add_epi32(b, dot4(dt, c[m + 1], v + 4 * m + 4));
        }
    } else {
        for (int k = 0; k < 4; k++) {
            a = _mm256_add_epi32(a, dot4(dt, c[k], v + 4 * k));
            b = _mm256_add_epi32(b, dot4(dt, c[4 + k], v + 16 + 4 * k));
        }
    }
    *lo = a;
    *hi = b;
}

INL __m256 cvt8u(const uint8_t *p) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p))); }
INL __m256 cvt8s(const uint8_t *p) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p))); }
INL __m256 cvth8(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }

/* Groups [g0, g1) of one block for T tokens into acc[t][h] (8 rows each). */
INL void qblock(st_dtype dt, const uint8_t *pk, int64_t g0, int64_t g1, const struct qx_row *q, int T, __m256 io[][2]) {
    __m256 acc[NTQ][2];
    for (int t = 0; t < T; t++) acc[t][0] = io[t][0], acc[t][1] = io[t][1];
    const int o = signed_codes(dt) ? 0 : mm_q_offset(dt);
    const bool hb = mm_q_has_min(dt);
    const uint8_t *base = pk - pk_offset(dt, g0);
    const uint8_t *pf = (const uint8_t *)((uintptr_t)(pk + MM_PF_AHEAD) & ~(uintptr_t)63);
    for (int64_t g = g0; g < g1; g++) {
        const uint8_t *rec = base + pk_rec_offset(dt, g);
        if (T <= 2)   /* decode: the lines MM_PF_AHEAD bytes past this group, each requested once */
            for (const uint8_t *end = base + pk_offset(dt, g + 1) + MM_PF_AHEAD; pf < end; pf += 64) mm_pf_decode(pf);
        const uint8_t *hd = is_k(dt) ? base + pk_offset(dt, g / 8 * 8) : NULL;
        const int j = (int)(g % 8);
        for (int h = 0; h < 2; h++) {
            __m256 a, b = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            if (dt == ST_DTYPE_Q6_K) {
                const __m256 d = cvth8(hd + 16 * h);
                a = _mm256_mul_ps(d, cvt8s(hd + 32 + 32 * j + 8 * h));
                a1 = _mm256_mul_ps(d, cvt8s(hd + 48 + 32 * j + 8 * h));
            } else if (is_k(dt)) {
                a = _mm256_mul_ps(cvth8(hd + 16 * h), cvt8u(hd + 64 + 16 * j + 8 * h));
                b = _mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), cvth8(hd + 32 + 16 * h)), cvt8u(hd + 192 + 16 * j + 8 * h));
            } else {
                const size_t so = pk_group_bytes(dt) - (hb ? 64 : 32);
                a = cvth8(rec + so + 16 * h);
                if (hb) b = cvth8(rec + so + 32 + 16 * h);
            }
            __m256i c[8];
            codes(dt, rec, h, c);
            for (int t = 0; t < T; t++) {
                __m256i lo, hi;
                isums(dt, c, q[t].v + g * MM_GROUP, &lo, &hi);
                const __m256 dx = _mm256_set1_ps(q[t].dg[g]);
                if (dt == ST_DTYPE_Q6_K) {
                    lo = _mm256_sub_epi32(lo, _mm256_set1_epi32(32 * q[t].s16[2 * g]));
                    hi = _mm256_sub_epi32(hi, _mm256_set1_epi32(32 * q[t].s16[2 * g + 1]));
                    acc[t][h] = _mm256_fmadd_ps(_mm256_mul_ps(a, dx), _mm256_cvtepi32_ps(lo), acc[t][h]);
                    acc[t][h] = _mm256_fmadd_ps(_mm256_mul_ps(a1, dx), _mm256_cvtepi32_ps(hi), acc[t][h]);
                    continue;
                }
                __m256i i = _mm256_add_epi32(lo, hi);
                if (o) i = _mm256_sub_epi32(i, _mm256_set1_epi32(o * q[t].s32[g]));
                acc[t][h] = _mm256_fmadd_ps(_mm256_mul_ps(a, dx), _mm256_cvtepi32_ps(i), acc[t][h]);
                if (hb) acc[t][h] = _mm256_fmadd_ps(_mm256_mul_ps(b, dx), _mm256_set1_ps(q[t].s32f[g]), acc[t][h]);
            }
        }
    }
    for (int t = 0; t < T; t++) io[t][0] = acc[t][0], io[t][1] = acc[t][1];
}

#define QBLOCK_CASES(DT) \
    static TGT void qblock_##DT(const uint8_t *pk, int64_t g0, int64_t g1, const struct qx_row *q, int T, __m256 acc[][2]) { \
        switch (T) { \
        case 1: qblock(DT, pk, g0, g1, q, 1, acc); break; \
        case 2: qblock(DT, pk, g0, g1, q, 2, acc); break; \
        case 3: qblock(DT, pk, g0, g1, q, 3, acc); break; \
        default: qblock(DT, pk, g0, g1, q, 4, acc); break; \
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

typedef void (*qblock_fn)(const uint8_t *, int64_t, int64_t, const struct qx_row *, int, __m256 (*)[2]);

/* As matmul_avx512.c's qrun, with 16 rows as two halves. */
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
                    __m256 acc[NTQ][2];
                    for (int j = 0; j < T; j++)
                        for (int h = 0; h < 2; h++)
                            acc[j][h] = g0 ? _mm256_load_ps(sums[t + j] + 8 * h) : _mm256_setzero_ps();
                    fn(pk, g0, g1, q + t, T, acc);
                    for (int j = 0; j < T; j++)
                        for (int h = 0; h < 2; h++) _mm256_store_ps(sums[t + j] + 8 * h, acc[j][h]);
                }
            }
            for (int64_t t = 0; t < ntb; t++)
                for (int64_t r = lo; r < hi; r++)
                    a->y[(tb + t) * a->rows + r] = sums[t][r - rb0] + (a->bias ? a->bias[r] : 0.0f);
        }
    }
}

typedef void (*tile_fn)(const struct mm_args *a, int64_t r, int R, int64_t t, int T);

TGT void mm_avx2_run(const struct mm_args *a, int64_t r0, int64_t r1) {
    fsweep_fn fn = NULL;
    qblock_fn qf = NULL;
    switch (a->dt) {
    case ST_DTYPE_F32: fn = fsweep_ST_DTYPE_F32; break;
    case ST_DTYPE_F16: fn = fsweep_ST_DTYPE_F16; break;
    case ST_DTYPE_BF16: fn = fsweep_ST_DTYPE_BF16; break;
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
    else frun(fn, a, r0, r1);
}

#endif /* __x86_64__ */
