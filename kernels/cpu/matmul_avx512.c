/* matmul, AVX-512 path (F, BW, VL, DQ, VNNI: Ice Lake, Sapphire Rapids, Zen 4
 * and later). Matrices are read in packed 16-row blocks (matmul-impl.h): one
 * zmm lane per row, one fp32 accumulator per (row, token) running through the
 * columns in order, exactly as kernels_cpu.h specifies, so results equal the
 * portable path (matmul.c) bit for bit and do not depend on the token count.
 *
 * Float weights: one sweep, 4 row blocks (a packed quad) x up to 6 tokens,
 * each column widened in registers and multiplied with the tokens' x[c]
 * broadcast. Few tokens (decode, small batches) run it over all columns;
 * many (prefill) as a GEMM: per quad and 512 columns (F16/BF16 widened to
 * fp32 once into a 128 KiB stack tile, L2 resident) every 6-token tile in
 * turn, its 24 accumulators in registers, and a stack buffer of running
 * totals between the 512-column partial sums (reloading an fp32 sum changes
 * no bit); y is written once. Decode sweeps prefetch MM_PF_AHEAD bytes on.
 * Quantized weights: per 32-column group the codes of 16 rows are unpacked
 * once, then vpdpbusd per token (see qblock). Without a packed copy the
 * blocks are packed column segment by segment into a stack buffer. */
#include "kernels/cpu/matmul-impl.h"

#if defined(__x86_64__)
#include <float.h>
#include <immintrin.h>
#include <math.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT


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

/* ---- float weights -------------------------------------------------------------------- */

#define FB 4              /* row blocks of a sweep: a packed quad */
#define GT 6              /* tokens of a sweep */
#define KC MM_KP          /* columns of a sweep = the partial-sum span of kernels_cpu.h */
#define SEG_BYTES 65536   /* stack buffer of the on-the-fly packing paths */

/* Column c of a packed float block (columns cs bytes apart): 16 rows widened to fp32. */
INL __m512 ldcol(st_dtype dt, const uint8_t *blk, size_t cs, int64_t c) {
    if (dt == ST_DTYPE_F32) return _mm512_loadu_ps(blk + cs * c);
    __m256i h = _mm256_loadu_si256((const __m256i *)(blk + cs * c));
    if (dt == ST_DTYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* The sums over columns [0, n) of NB packed blocks (bstride bytes apart,
 * columns cs bytes apart) x T tokens into out (x already offset to the first column). */
INL void fsweep(st_dtype dt, const uint8_t *blk, size_t bstride, size_t cs, int NB, const float *x, int64_t ld, int T,
                int64_t n, __m512 out[FB][GT]) {
    __m512 acc[FB][GT];   /* in registers over the loop, not through the pointer */
    for (int b = 0; b < NB; b++)
        for (int t = 0; t < T; t++) acc[b][t] = _mm512_setzero_ps();
    for (int64_t c = 0; c < n; c++) {
        if (T == 1)   /* decode streams the quad: the columns MM_PF_AHEAD bytes on are requested now */
            for (size_t o = 0; o < cs; o += 64) mm_pf_decode(blk + cs * c + MM_PF_AHEAD + o);
        __m512 w[FB];
        for (int b = 0; b < NB; b++) w[b] = ldcol(dt, blk + (size_t)b * bstride, cs, c);
        for (int t = 0; t < T; t++) {
            const __m512 xb = _mm512_set1_ps(x[t * ld + c]);
            for (int b = 0; b < NB; b++) acc[b][t] = _mm512_fmadd_ps(w[b], xb, acc[b][t]);
        }
    }
    for (int b = 0; b < NB; b++)
        for (int t = 0; t < T; t++) out[b][t] = acc[b][t];
}

#define FSWEEP_T(DT, NB) \
    do { \
        if (T == 1) fsweep(DT, blk, bs, cs, NB, x, ld, 1, n, acc); \
        else if (T == 2) fsweep(DT, blk, bs, cs, NB, x, ld, 2, n, acc); \
        else if (T == 3) fsweep(DT, blk, bs, cs, NB, x, ld, 3, n, acc); \
        else if (T == 4) fsweep(DT, blk, bs, cs, NB, x, ld, 4, n, acc); \
        else if (T == 5) fsweep(DT, blk, bs, cs, NB, x, ld, 5, n, acc); \
        else fsweep(DT, blk, bs, cs, NB, x, ld, 6, n, acc); \
    } while (0)
#define FSWEEP_CASES(DT) \
    static TGT void fsweep_##DT(const uint8_t *blk, size_t bs, size_t cs, int NB, const float *x, int64_t ld, int T, \
                                int64_t n, __m512 acc[FB][GT]) { \
        if (NB == 4) FSWEEP_T(DT, 4); \
        else if (NB == 3) FSWEEP_T(DT, 3); \
        else if (NB == 2) FSWEEP_T(DT, 2); \
        else FSWEEP_T(DT, 1); \
    }
FSWEEP_CASES(ST_DTYPE_F32)
FSWEEP_CASES(ST_DTYPE_F16)
FSWEEP_CASES(ST_DTYPE_BF16)
typedef void (*fsweep_fn)(const uint8_t *, size_t, size_t, int, const float *, int64_t, int, int64_t, __m512 (*)[GT]);

/* Rows of block blk within [r0, r1) as a lane mask. */
INL __mmask16 rows_mask(int64_t blk, int64_t r0, int64_t r1) {
    const int64_t b0 = blk * MM_RB, lo = ST_MAX(r0, b0) - b0, hi = ST_MIN(r1, b0 + MM_RB) - b0;
    return (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

INL void store_rows(const struct mm_args *a, int64_t blk, __mmask16 keep, int64_t t, __m512 acc, bool partial) {
    float *y = a->y + t * a->rows + blk * MM_RB;
    if (!partial) acc = _mm512_add_ps(acc, a->bias ? _mm512_maskz_loadu_ps(keep, a->bias + blk * MM_RB) : _mm512_setzero_ps());
    _mm512_mask_storeu_ps(y, keep, acc);
}

/* Token tiles: GT wide, the last few balanced (8 = 4 + 4, not 6 + 2). */
static inline int tile_tokens(int64_t left) {
    if (left >= 2 * GT || left == GT) return GT;
    if (left > GT) return (int)((left + 1) / 2);
    return (int)left;
}

/* Float weights, any token count: per quad of row blocks (read in place, one
 * stream; without a packed copy, FB blocks packed 512 columns at a time) and
 * block of TBF tokens, the 512-column partial sums of GT-token tiles; each is
 * added to the running totals in a stack buffer (one tile of sums per token,
 * cache-resident), and y is written once, with the bias, after the last
 * columns: the same sums in the same order as adding them in y, without y's
 * round trips to memory. With several tiles (prefill), a quad's 512 columns
 * (64 KiB in F16) stay in L2 for the tiles after the first, and the next ones
 * are prefetched a share per tile; one tile (decode) streams the quad. */
#define TBF 256
static TGT void fmatmul(fsweep_fn fn, const struct mm_args *a, int64_t r0, int64_t r1) {
    const st_dtype dt = a->dt;
    const size_t es = dt == ST_DTYPE_F32 ? 4 : 2, bb = pk_block_bytes(dt, a->cols);
    _Alignas(64) float tot[TBF][FB][16];
    /* several token tiles over 16-bit weights: the quad's 512 columns widened to fp32 once (the
     * same values ldcol gives), then every tile runs the f32 sweep on them from L2: the
     * conversions leave the FMA ports (two per core on a Xeon: f16 GEMM 260 -> f32's 287 GF/s) */
    _Alignas(64) float wide[a->n_tok > GT && es == 2 ? FB * KC * MM_RB : 16];
    _Alignas(64) uint8_t buf[a->packed ? 64 : FB * KC * MM_RB * 4];
    const int64_t blk1 = (r1 + MM_RB - 1) / MM_RB, nblk = (a->rows + MM_RB - 1) / MM_RB;
    for (int64_t blk = r0 / MM_RB; blk < blk1;) {
        const int qn = pk_quad_n(nblk, blk);
        const int NB = a->packed ? (int)(ST_MIN(blk / 4 * 4 + qn, blk1) - blk) : (int)ST_MIN(FB, blk1 - blk);
        __mmask16 keep[FB];
        for (int b = 0; b < NB; b++) keep[b] = rows_mask(blk + b, r0, r1);
        for (int64_t tb = 0; tb < a->n_tok; tb += TBF) {
            const int64_t ntb = ST_MIN(TBF, a->n_tok - tb);
            for (int64_t c0 = 0; c0 < a->cols; c0 += KC) {
                const int64_t n = ST_MIN(KC, a->cols - c0), ntiles = (ntb + GT - 1) / GT;
                const uint8_t *src = buf, *pf = NULL;   /* pf: the next columns this thread sweeps */
                size_t bs = (size_t)n * MM_RB * es, cs = MM_RB * es, pfl = 0;
                if (a->packed) {   /* blk's part of its quad */
                    bs = MM_RB * es;
                    cs = (size_t)qn * MM_RB * es;
                    src = a->packed + (size_t)(blk / 4 * 4) * bb + (size_t)(blk % 4) * bs + (size_t)c0 * cs;
                    const int64_t nc = c0 + KC < a->cols ? c0 + KC : 0;
                    const int64_t nb0 = nc || tb + TBF < a->n_tok ? blk : blk + NB;
                    if (ntiles > 1 && nb0 < blk1) {
                        const size_t ncs = (size_t)pk_quad_n(nblk, nb0) * MM_RB * es;
                        pf = a->packed + (size_t)(nb0 / 4 * 4) * bb + (size_t)nc * ncs;
                        pfl = (size_t)ST_MIN(KC, a->cols - nc) * ncs;
                    }
                } else {   /* FB blocks packed for these columns */
                    for (int b = 0; b < NB; b++)
                        mm_pack_cols(dt, a->w, a->rows, a->cols, (blk + b) * MM_RB, c0, c0 + n, buf + (size_t)b * n * MM_RB * es);
                }
                const size_t step = (pfl / (size_t)ntiles + 63) / 64 * 64;
                fsweep_fn sweep = fn;
                if (ntiles > 1 && es == 2) {
                    for (int64_t c = 0; c < n; c++)
                        for (int b = 0; b < NB; b++)
                            _mm512_store_ps(wide + (c * NB + b) * MM_RB, ldcol(dt, src + (size_t)b * bs, cs, c));
                    src = (const uint8_t *)wide;
                    bs = MM_RB * 4;
                    cs = (size_t)NB * MM_RB * 4;
                    sweep = fsweep_ST_DTYPE_F32;
                }
                for (int64_t t0 = 0, ti = 0; t0 < ntb; ti++) {
                    for (size_t off = (size_t)ti * step; off < ST_MIN(pfl, (size_t)(ti + 1) * step); off += 64)
                        _mm_prefetch((const char *)pf + off, _MM_HINT_T1);
                    const int T = tile_tokens(ntb - t0);
                    __m512 part[FB][GT];
                    sweep(src, bs, cs, NB, a->x + (tb + t0) * a->cols + c0, a->cols, T, n, part);
                    for (int b = 0; b < NB; b++)
                        for (int t = 0; t < T; t++)
                            _mm512_store_ps(tot[t0 + t][b], c0 ? _mm512_add_ps(_mm512_load_ps(tot[t0 + t][b]), part[b][t]) : part[b][t]);
                    t0 += T;
                }
            }
            for (int64_t t = 0; t < ntb; t++)
                for (int b = 0; b < NB; b++) store_rows(a, blk + b, keep[b], tb + t, _mm512_load_ps(tot[t][b]), false);
        }
        blk += NB;
    }
}

/* ---- quantized weights: packed 16-row blocks (matmul-impl.h) -----------------------------
 * One zmm lane = one row. Per group the codes are unpacked once into up to
 * eight 64-byte vectors (lane r = 4 consecutive codes of row r), then for each
 * token: vpdpbusd against the token's 4 activation bytes broadcast, the exact
 * integer per group, and one fused multiply-add per group (Q6_K: two) into
 * the 16 row accumulators. */

#define NTQ 8             /* tokens per pass over a block (register accumulators) */
#define TBQ 256           /* tokens per lanes pass of the on-the-fly packing path */

INL bool is_k(st_dtype dt) { return dt == ST_DTYPE_Q4_K || dt == ST_DTYPE_Q5_K || dt == ST_DTYPE_Q6_K; }

INL __m512i bcast4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* The codes of one group: c[0..3] the low halves (columns 4k..4k+3 of each
 * row in chunk k), c[4..7] the high halves (16 + 4k ..); Q8_0: c[m] columns 4m... */
INL bool four_bit(st_dtype dt) { return dt == ST_DTYPE_Q4_0 || dt == ST_DTYPE_Q4_1 || dt == ST_DTYPE_Q4_K; }

/* hi16 (4-bit codes only): the high halves are left in place, c[4 + k] = 16 u,
 * and isums shifts their exact sum right by 4 instead (one shift per group
 * and token instead of four per group: cheaper for one token) */
INL void codes(st_dtype dt, const uint8_t *rec, __m512i *c, bool hi16) {
    if (dt == ST_DTYPE_Q8_0) {
        for (int m = 0; m < 8; m++) c[m] = _mm512_loadu_si512(rec + 64 * m);
        return;
    }
    const __m512i m4 = _mm512_set1_epi8(0x0f), h4 = _mm512_set1_epi8((char)0xf0);
    for (int k = 0; k < 4; k++) {
        const __m512i z = _mm512_loadu_si512(rec + 64 * k);
        c[k] = _mm512_and_si512(z, m4);
        c[4 + k] = hi16 ? _mm512_and_si512(z, h4) : _mm512_and_si512(_mm512_srli_epi16(z, 4), m4);
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
        /* bits 2k, 2k + 1 of the plane byte become bits 4, 5 of the code: one shift
         * (none for k = 2) and c | (shifted & 0x30) in one ternary-logic op */
        const __m512i t0 = _mm512_loadu_si512(rec + 256), t1 = _mm512_loadu_si512(rec + 320);
        const __m512i m30 = _mm512_set1_epi8(0x30);
#define Q6_TOP(T, K) (K < 2 ? _mm512_slli_epi16(T, 4 - 2 * K) : K == 2 ? T : _mm512_srli_epi16(T, 2))
        c[0] = _mm512_ternarylogic_epi32(c[0], Q6_TOP(t0, 0), m30, 0xf8);
        c[1] = _mm512_ternarylogic_epi32(c[1], Q6_TOP(t0, 1), m30, 0xf8);
        c[2] = _mm512_ternarylogic_epi32(c[2], Q6_TOP(t0, 2), m30, 0xf8);
        c[3] = _mm512_ternarylogic_epi32(c[3], Q6_TOP(t0, 3), m30, 0xf8);
        c[4] = _mm512_ternarylogic_epi32(c[4], Q6_TOP(t1, 0), m30, 0xf8);
        c[5] = _mm512_ternarylogic_epi32(c[5], Q6_TOP(t1, 1), m30, 0xf8);
        c[6] = _mm512_ternarylogic_epi32(c[6], Q6_TOP(t1, 2), m30, 0xf8);
        c[7] = _mm512_ternarylogic_epi32(c[7], Q6_TOP(t1, 3), m30, 0xf8);
#undef Q6_TOP
    }
}

/* acc += dpbusd(code, the 4 bytes at p broadcast): with the broadcast embedded
 * in the instruction's memory operand ({1to16}), one fused micro-op instead of
 * a load and a dot product: more of the weight stream fits the out-of-order
 * window (Q8_0 decode from DRAM, one core: 25.5 -> 28.6-30.6 GB/s). GCC does
 * not fold _mm512_set1_epi32 into the operand itself. */
INL __m512i dpb4(__m512i acc, __m512i code, const int8_t *p) {
#if defined(__GNUC__)
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(code), "m"(*(const int32_t *)(const void *)p));
    return acc;
#else
    return _mm512_dpbusd_epi32(acc, code, bcast4(p));
#endif
}

/* sum over the group (or its two 16-column halves) of u * v, exact */
INL void isums(st_dtype dt, const __m512i *c, const int8_t *v, bool hi16, __m512i *lo, __m512i *hi) {
    __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
    if (dt == ST_DTYPE_Q8_0) {
        for (int m = 0; m < 8; m += 2) {
            a = dpb4(a, c[m], v + 4 * m);
            b = dpb4(b, c[m + 1], v + 4 * m + 4);
        }
    } else {
        for (int k = 0; k < 4; k++) {
            a = dpb4(a, c[k], v + 4 * k);
            b = dpb4(b, c[4 + k], v + 16 + 4 * k);
        }
    }
    *lo = a;
    *hi = hi16 ? _mm512_srai_epi32(b, 4) : b;   /* 16 x the sum: the shift is exact */
}

/* Groups [g0, g1) of one block (pk points at g0's part of the block) for T
 * tokens, into acc[T] (16 rows each). */
INL void qblock(st_dtype dt, const uint8_t *pk, int64_t g0, int64_t g1, const struct qx_row *q, int T, __m512 *io) {
    __m512 acc[NTQ];
    for (int t = 0; t < T; t++) acc[t] = io[t];
    const int o = mm_q_offset(dt);
    const bool hb = mm_q_has_min(dt), hi16 = four_bit(dt) && T == 1;
    const uint8_t *base = pk - pk_offset(dt, g0);
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 kd = a, kmin = a;
    const uint8_t *pf = (const uint8_t *)((uintptr_t)(pk + MM_PF_AHEAD) & ~(uintptr_t)63);
    for (int64_t g = g0; g < g1; g++) {
        const uint8_t *rec = base + pk_rec_offset(dt, g);
        if (T <= 2) {   /* decode: the lines MM_PF_AHEAD bytes past this group, each requested once */
            const uint8_t *end = base + pk_offset(dt, g + 1) + MM_PF_AHEAD;
            for (; pf < end; pf += 64) mm_pf_decode(pf);
        }
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
        codes(dt, rec, c, hi16);
        for (int t = 0; t < T; t++) {
            __m512i lo, hi;
            isums(dt, c, q[t].v + g * MM_GROUP, hi16, &lo, &hi);
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
    for (int t = 0; t < T; t++) io[t] = acc[t];
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

/* ---- entry ------------------------------------------------------------------------------ */

TGT void mm_avx512_run(const struct mm_args *a, int64_t r0, int64_t r1) {
    fsweep_fn ff = NULL;
    qblock_fn qf = NULL;
    switch (a->dt) {
    case ST_DTYPE_F32: ff = fsweep_ST_DTYPE_F32; break;
    case ST_DTYPE_F16: ff = fsweep_ST_DTYPE_F16; break;
    case ST_DTYPE_BF16: ff = fsweep_ST_DTYPE_BF16; break;
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
    else fmatmul(ff, a, r0, r1);
}

#endif /* __x86_64__ */
