/* matmul: y[t][r] = W[r] . x[t] (+ bias[r]), W in any stored dtype, fp32 accumulation.
 *
 * This file holds the entry points, the run-time choice of the SIMD level,
 * the packing of quantized matrices into 16-row blocks (matmul-impl.h), and
 * the portable path: the plain-C statement of the arithmetic that
 * kernels_cpu.h specifies and every SIMD path (matmul_avx2.c,
 * matmul_avx512.c) reproduces bit for bit. It is written for clarity, not
 * speed: one output element at a time, in column order. */
#include "kernels/cpu/matmul-impl.h"

#include <float.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

const int8_t mm_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* ---- activations ------------------------------------------------------------------ */

/* Groups whose max|x| is below this count as zero (127 / max|x| would overflow). */
#define MM_TINY 1e-30f

void mm_portable_quantize(const float *x, int64_t cols, void *qrow) {
    memset(qrow, 0, qx_row_bytes(cols));
    const struct qx_row q = qx_at(qrow, cols, 0);
    int8_t *v = (int8_t *)q.v;
    int32_t *s16 = (int32_t *)q.s16, *s32 = (int32_t *)q.s32;
    float *s32f = (float *)q.s32f, *dg = (float *)q.dg;
    for (int64_t g = 0; g < cols / MM_GROUP; g++) {
        const float *xg = x + g * MM_GROUP;
        float amax = 0.0f;
        bool bad = false;
        for (int j = 0; j < MM_GROUP; j++) {
            float a = fabsf(xg[j]);
            if (!(a <= FLT_MAX)) bad = true;
            else if (a > amax) amax = a;
        }
        float d = 0.0f, id = 0.0f;
        if (bad) d = NAN;
        else if (amax >= MM_TINY) { d = amax / 127.0f; id = 127.0f / amax; }
        int32_t h[2] = {0, 0};
        for (int j = 0; j < MM_GROUP; j++) {
            v[g * MM_GROUP + j] = (int8_t)(bad ? 0 : (int)rintf(xg[j] * id));
            h[j / 16] += v[g * MM_GROUP + j];
        }
        s16[2 * g] = h[0];
        s16[2 * g + 1] = h[1];
        s32[g] = h[0] + h[1];
        s32f[g] = (float)s32[g];
        dg[g] = d;
    }
}

/* ---- weights: one group of 32 columns as codes and scales ---------------------------- */

struct qgroup {
    uint8_t u[MM_GROUP];   /* codes; the weight is a * (u - o) + b */
    float a[8];            /* scale of each lane (4 columns) */
    float b;               /* 0 unless the dtype has a min */
};

static inline uint32_t rd_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* Group g (columns 32g .. 32g+31) of a row, straight from the block layouts
 * (model/dtype.c, ggml-common.h). */
static void decode_group(st_dtype dt, const uint8_t *row, int64_t g, struct qgroup *q) {
    const size_t bb = st_dtype_block_bytes(dt);
    q->b = 0.0f;
    if (st_dtype_block_elems(dt) == 32) {
        const uint8_t *b = row + (size_t)g * bb;
        float d = mm_f16(b);
        for (int l = 0; l < 8; l++) q->a[l] = d;
        const uint8_t *qs = NULL;
        uint32_t h = 0;
        switch (dt) {
        case ST_DTYPE_Q8_0:
            for (int j = 0; j < 32; j++) q->u[j] = (uint8_t)((int8_t)b[2 + j] + 128);
            return;
        case ST_DTYPE_Q4_0: qs = b + 2; break;
        case ST_DTYPE_Q4_1: q->b = mm_f16(b + 2); qs = b + 4; break;
        case ST_DTYPE_Q5_0: h = rd_u32(b + 2); qs = b + 6; break;
        case ST_DTYPE_Q5_1: q->b = mm_f16(b + 2); h = rd_u32(b + 4); qs = b + 8; break;
        case ST_DTYPE_IQ4_NL:
            for (int j = 0; j < 16; j++) {
                q->u[j] = (uint8_t)(mm_iq4nl_values[b[2 + j] & 0xf] + 128);
                q->u[j + 16] = (uint8_t)(mm_iq4nl_values[b[2 + j] >> 4] + 128);
            }
            return;
        default: return;
        }
        for (int j = 0; j < 16; j++) {
            q->u[j] = (uint8_t)((qs[j] & 0xf) | (((h >> j) & 1) << 4));
            q->u[j + 16] = (uint8_t)((qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4));
        }
        return;
    }
    const uint8_t *b = row + (size_t)(g / 8) * bb;
    const int j = (int)(g % 8);
    if (dt == ST_DTYPE_Q6_K) {
        const uint8_t *L = b + 64 * (j / 4), *H = b + 128 + 32 * (j / 4);
        const int8_t *sc = (const int8_t *)(b + 192);
        const float d = mm_f16(b + 208);
        for (int l = 0; l < 32; l++) {
            switch (j % 4) {
            case 0: q->u[l] = (uint8_t)((L[l] & 0xf) | ((H[l] & 3) << 4)); break;
            case 1: q->u[l] = (uint8_t)((L[l + 32] & 0xf) | (((H[l] >> 2) & 3) << 4)); break;
            case 2: q->u[l] = (uint8_t)((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)); break;
            default: q->u[l] = (uint8_t)((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)); break;
            }
        }
        for (int l = 0; l < 8; l++) q->a[l] = d * (float)sc[2 * j + l / 4];
        return;
    }
    /* Q4_K, Q5_K */
    const float d = mm_f16(b), dmin = mm_f16(b + 2);
    int sc, m;
    mm_scale_min_k4(j, b + 4, &sc, &m);
    for (int l = 0; l < 8; l++) q->a[l] = d * (float)sc;
    q->b = -(dmin * (float)m);
    const uint8_t *qs = dt == ST_DTYPE_Q4_K ? b + 16 : b + 48, *qh = b + 16;
    for (int l = 0; l < 32; l++) {
        int nib = j % 2 ? qs[32 * (j / 2) + l] >> 4 : qs[32 * (j / 2) + l] & 0xf;
        if (dt == ST_DTYPE_Q5_K) nib += 16 * ((qh[l] >> j) & 1);
        q->u[l] = (uint8_t)nib;
    }
}

/* ---- the portable path ---------------------------------------------------------------- */

static float widen(st_dtype dt, const uint8_t *row, int64_t c) {
    if (dt == ST_DTYPE_F32) { float f; memcpy(&f, row + 4 * c, 4); return f; }
    uint16_t h;
    memcpy(&h, row + 2 * c, 2);
    return dt == ST_DTYPE_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
}

/* The canonical sum of kernels_cpu.h for float weights: per 512 columns one
 * fp32 accumulator through them in order, fused; the partial sums added in
 * order. */
static float dot_float(const struct mm_args *a, const uint8_t *row, const float *x) {
    float total = 0.0f;
    for (int64_t c0 = 0; c0 < a->cols; c0 += MM_KP) {
        float acc = 0.0f;
        for (int64_t c = c0; c < ST_MIN(c0 + MM_KP, a->cols); c++) acc = fmaf(widen(a->dt, row, c), x[c], acc);
        total = c0 ? total + acc : acc;
    }
    return total;
}

/* The canonical sum of kernels_cpu.h: per group (Q6_K: per 16 columns) in
 * column order, the exact integer sum of (u - o) * v, then
 * acc += (a * d_g) * i and, with a min, acc += (b * d_g) * sum_g v (fused). */
static float dot_quant(const struct mm_args *a, const uint8_t *row, struct qx_row q) {
    const int o = mm_q_offset(a->dt);
    const bool has_b = mm_q_has_min(a->dt);
    const int units = a->dt == ST_DTYPE_Q6_K ? 2 : 1, span = MM_GROUP / units;
    float acc = 0.0f;
    struct qgroup w;
    for (int64_t g = 0; g < a->cols / MM_GROUP; g++) {
        decode_group(a->dt, row, g, &w);
        for (int h = 0; h < units; h++) {
            int32_t i = 0;
            for (int j = h * span; j < (h + 1) * span; j++) i += ((int32_t)w.u[j] - o) * q.v[g * MM_GROUP + j];
            acc = fmaf(w.a[h * span / 4] * q.dg[g], (float)i, acc);
        }
        if (has_b) acc = fmaf(w.b * q.dg[g], q.s32f[g], acc);
    }
    return acc;
}

/* ---- packing into 16-row blocks ------------------------------------------------------------ */

static void put_f16(uint8_t *dst, int r, const uint8_t *src) { memcpy(dst + 2 * r, src, 2); }

void mm_pack_cols(st_dtype dt, const uint8_t *w, int64_t rows, int64_t cols, int64_t r0, int64_t c0, int64_t c1,
                  uint8_t *out) {
    const int nr = (int)ST_MAX(0, ST_MIN(MM_RB, rows - r0));
    if (dt == ST_DTYPE_F32) {
        const float *src = (const float *)w + r0 * cols;
        float *dst = (float *)out;
        for (int64_t c = c0; c < c1; c++, dst += MM_RB) {
            for (int r = 0; r < nr; r++) dst[r] = src[r * cols + c];
            for (int r = nr; r < MM_RB; r++) dst[r] = 0.0f;
        }
        return;
    }
    const uint16_t *src = (const uint16_t *)w + r0 * cols;
    uint16_t *dst = (uint16_t *)out;
    for (int64_t c = c0; c < c1; c++, dst += MM_RB) {
        for (int r = 0; r < nr; r++) dst[r] = src[r * cols + c];
        for (int r = nr; r < MM_RB; r++) dst[r] = 0;
    }
}

/* The 32 stored codes of group g of a row, as the packed layout keeps them:
 * the code-book index for IQ4_NL, q + 128 for Q8_0, the 4/5/6-bit value else. */
static void group_raw(st_dtype dt, const uint8_t *row, int64_t g, uint8_t *u) {
    const size_t bb = st_dtype_block_bytes(dt);
    const uint8_t *b = row + (size_t)(st_dtype_block_elems(dt) == 32 ? g : g / 8) * bb;
    const int j = (int)(g % 8);
    uint32_t h = 0;
    const uint8_t *qs = b + 2;
    switch (dt) {
    case ST_DTYPE_Q8_0:
        for (int k = 0; k < 32; k++) u[k] = (uint8_t)(b[2 + k] ^ 0x80);
        return;
    case ST_DTYPE_Q4_1: qs = b + 4; break;
    case ST_DTYPE_Q5_0: h = rd_u32(b + 2); qs = b + 6; break;
    case ST_DTYPE_Q5_1: h = rd_u32(b + 4); qs = b + 8; break;
    case ST_DTYPE_Q4_K: case ST_DTYPE_Q5_K: {
        const uint8_t *q = b + (dt == ST_DTYPE_Q4_K ? 16 : 48) + 32 * (j / 2), *qh = b + 16;
        for (int l = 0; l < 32; l++) {
            u[l] = (uint8_t)(j % 2 ? q[l] >> 4 : q[l] & 0xf);
            if (dt == ST_DTYPE_Q5_K) u[l] |= (uint8_t)(((qh[l] >> j) & 1) << 4);
        }
        return;
    }
    case ST_DTYPE_Q6_K: {
        const uint8_t *L = b + 64 * (j / 4), *H = b + 128 + 32 * (j / 4);
        const int m = j % 4, lo = m & 1 ? 32 : 0, sh = m < 2 ? 0 : 4;
        for (int l = 0; l < 32; l++) u[l] = (uint8_t)(((L[l + lo] >> sh) & 0xf) | (((H[l] >> (2 * m)) & 3) << 4));
        return;
    }
    default: break;   /* Q4_0, IQ4_NL: qs = b + 2 */
    }
    for (int k = 0; k < 16; k++) {
        u[k] = (uint8_t)((qs[k] & 0xf) | (((h >> k) & 1) << 4));
        u[k + 16] = (uint8_t)((qs[k] >> 4) | (((h >> (k + 16)) & 1) << 4));
    }
}

void mm_pack_groups(st_dtype dt, const uint8_t *w, int64_t rows, int64_t cols, int64_t r0, int64_t g0, int64_t g1,
                    uint8_t *out) {
    const size_t rb = st_dtype_row_bytes(dt, cols), bb = st_dtype_block_bytes(dt);
    const bool k = pk_header_bytes(dt) != 0, five = dt == ST_DTYPE_Q5_0 || dt == ST_DTYPE_Q5_1 || dt == ST_DTYPE_Q5_K;
    memset(out, 0, pk_offset(dt, g1) - pk_offset(dt, g0));
    for (int r = 0; r < MM_RB && r0 + r < rows; r++) {
        const uint8_t *row = w + (size_t)(r0 + r) * rb;
        for (int64_t g = g0; g < g1; g++) {
            uint8_t *hd = k ? out + pk_offset(dt, g / 8 * 8) - pk_offset(dt, g0) : NULL;
            uint8_t *rec = out + pk_rec_offset(dt, g) - pk_offset(dt, g0);
            if (!k && dt != ST_DTYPE_Q8_0) {
                /* 32-blocks of nibbles: the stored byte j already holds codes j and j + 16,
                 * the packed layout's byte; the fifth bits come straight from qh */
                const uint8_t *blk = row + (size_t)g * bb;
                const size_t qo = dt == ST_DTYPE_Q4_1 ? 4 : dt == ST_DTYPE_Q5_0 ? 6 : dt == ST_DTYPE_Q5_1 ? 8 : 2;
                for (int c = 0; c < 4; c++) memcpy(rec + 64 * c + 4 * r, blk + qo + 4 * c, 4);
                uint8_t *extra = rec + 256;
                if (five) {
                    const uint32_t h = rd_u32(blk + qo - 4);
                    for (int c = 0; c < 4; c++)
                        for (int half = 0; half < 2; half++) {
                            uint64_t m;
                            memcpy(&m, extra + 8 * (2 * c + half), 8);
                            m |= (uint64_t)((h >> (16 * half + 4 * c)) & 0xf) << (4 * r);
                            memcpy(extra + 8 * (2 * c + half), &m, 8);
                        }
                    extra += 64;
                }
                put_f16(extra, r, blk);
                if (dt == ST_DTYPE_Q4_1 || dt == ST_DTYPE_Q5_1) put_f16(extra + 32, r, blk + 2);
                continue;
            }
            if (k) {
                /* K types, four codes at a time as 32-bit words: codes j and j + 16
                 * of the group make one packed byte, as for the 32-blocks */
                const uint8_t *blk = row + (size_t)(g / 8) * bb;
                const int j = (int)(g % 8);
                const uint8_t *q = dt == ST_DTYPE_Q6_K ? blk + 64 * (j / 4) + 32 * ((j % 4) & 1)
                                                       : blk + (dt == ST_DTYPE_Q4_K ? 16 : 48) + 32 * (j / 2);
                const int sh = dt == ST_DTYPE_Q6_K ? (j % 4 < 2 ? 0 : 4) : (j % 2 ? 4 : 0);
                for (int c = 0; c < 4; c++) {
                    const uint32_t lo = (rd_u32(q + 4 * c) >> sh) & 0x0f0f0f0fu, hi = (rd_u32(q + 16 + 4 * c) >> sh) & 0x0f0f0f0fu;
                    const uint32_t v = lo | hi << 4;
                    memcpy(rec + 64 * c + 4 * r, &v, 4);
                }
                if (dt == ST_DTYPE_Q5_K) {
                    const uint8_t *qh = blk + 16;
                    for (int c = 0; c < 4; c++)
                        for (int half = 0; half < 2; half++) {
                            const uint32_t x = (rd_u32(qh + 16 * half + 4 * c) >> j) & 0x01010101u;
                            const uint64_t bits = (x & 1) | (x >> 7 & 2) | (x >> 14 & 4) | (x >> 21 & 8);
                            uint64_t m;
                            memcpy(&m, rec + 256 + 8 * (2 * c + half), 8);
                            m |= bits << (4 * r);
                            memcpy(rec + 256 + 8 * (2 * c + half), &m, 8);
                        }
                } else if (dt == ST_DTYPE_Q6_K) {
                    const uint8_t *H = blk + 128 + 32 * (j / 4);
                    for (int half = 0; half < 2; half++) {
                        uint32_t two;
                        memcpy(&two, rec + 256 + 64 * half + 4 * r, 4);
                        for (int c = 0; c < 4; c++)
                            two |= ((rd_u32(H + 16 * half + 4 * c) >> (2 * (j % 4))) & 0x03030303u) << (2 * c);
                        memcpy(rec + 256 + 64 * half + 4 * r, &two, 4);
                    }
                }
                if (g % 8) continue;   /* the header, once per superblock */
                if (dt == ST_DTYPE_Q6_K) {
                    put_f16(hd, r, blk + 208);
                    for (int s6 = 0; s6 < 16; s6++) hd[32 + 16 * s6 + r] = blk[192 + s6];
                } else {
                    put_f16(hd, r, blk);
                    put_f16(hd + 32, r, blk + 2);
                    for (int jj = 0; jj < 8; jj++) {
                        int sc, m;
                        mm_scale_min_k4(jj, blk + 4, &sc, &m);
                        hd[64 + 16 * jj + r] = (uint8_t)sc;
                        hd[192 + 16 * jj + r] = (uint8_t)m;
                    }
                }
                continue;
            }
            uint8_t u[32];
            group_raw(dt, row, g, u);
            if (dt == ST_DTYPE_Q8_0) {
                for (int m = 0; m < 8; m++) memcpy(rec + 64 * m + 4 * r, u + 4 * m, 4);
                put_f16(rec + 512, r, row + (size_t)g * bb);
                continue;
            }
            for (int c = 0; c < 4; c++)
                for (int b = 0; b < 4; b++)
                    rec[64 * c + 4 * r + b] = (uint8_t)((u[4 * c + b] & 0xf) | (u[16 + 4 * c + b] & 0xf) << 4);
            uint8_t *extra = rec + 256;
            if (five) {
                for (int c = 0; c < 4; c++)
                    for (int half = 0; half < 2; half++) {
                        uint64_t m;
                        memcpy(&m, extra + 8 * (2 * c + half), 8);
                        for (int b = 0; b < 4; b++) m |= (uint64_t)((u[16 * half + 4 * c + b] >> 4) & 1) << (4 * r + b);
                        memcpy(extra + 8 * (2 * c + half), &m, 8);
                    }
                extra += 64;
            } else if (dt == ST_DTYPE_Q6_K) {
                for (int c = 0; c < 4; c++)
                    for (int b = 0; b < 4; b++)
                        for (int half = 0; half < 2; half++)
                            extra[64 * half + 4 * r + b] |= (uint8_t)(((u[16 * half + 4 * c + b] >> 4) & 3) << (2 * c));
                extra += 128;
            }
            if (!k) {   /* a (and b) as the block stores them */
                const uint8_t *blk = row + (size_t)g * bb;
                put_f16(extra, r, blk);
                if (dt == ST_DTYPE_Q4_1 || dt == ST_DTYPE_Q5_1) put_f16(extra + 32, r, blk + 2);
                continue;
            }
            if (g % 8) continue;   /* the header, once per superblock */
            const uint8_t *blk = row + (size_t)(g / 8) * bb;
            if (dt == ST_DTYPE_Q6_K) {
                put_f16(hd, r, blk + 208);
                for (int s6 = 0; s6 < 16; s6++) hd[32 + 16 * s6 + r] = blk[192 + s6];
            } else {
                put_f16(hd, r, blk);
                put_f16(hd + 32, r, blk + 2);
                for (int jj = 0; jj < 8; jj++) {
                    int sc, m;
                    mm_scale_min_k4(jj, blk + 4, &sc, &m);
                    hd[64 + 16 * jj + r] = (uint8_t)sc;
                    hd[192 + 16 * jj + r] = (uint8_t)m;
                }
            }
        }
    }
}

void mm_portable_run(const struct mm_args *a, int64_t r0, int64_t r1) {
    const bool fl = mm_is_float(a->dt);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = a->w + (size_t)r * a->row_bytes;
        const float bias = a->bias ? a->bias[r] : 0.0f;
        for (int64_t t = 0; t < a->n_tok; t++) {
            float s = fl ? dot_float(a, row, a->x + t * a->cols) : dot_quant(a, row, qx_at(a->qx, a->cols, t));
            a->y[t * a->rows + r] = s + bias;
        }
    }
}

/* ---- run-time choice of the SIMD level -------------------------------------------------- */

static const struct mm_isa isa_table[ST_CPU_ISA_COUNT] = {
    [ST_CPU_ISA_PORTABLE] = {mm_portable_quantize, mm_portable_run},
#if defined(__x86_64__)
    [ST_CPU_ISA_AVX2] = {mm_avx2_quantize, mm_avx2_run},
    [ST_CPU_ISA_AVX512] = {mm_avx512_quantize, mm_avx512_run},
#endif
};

#if defined(__x86_64__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

/* cpuid feature bits and the OS's register-state support (xgetbv): what the
 * compiler's __builtin_cpu_supports does, written out because clang 14 does
 * not know every feature name gcc does (f16c). */
static st_cpu_isa detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return ST_CPU_ISA_PORTABLE;
    const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!osxsave || !avx) return ST_CPU_ISA_PORTABLE;
    const uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return ST_CPU_ISA_PORTABLE;           /* xmm + ymm state */
    if (__get_cpuid_max(0, NULL) < 7) return ST_CPU_ISA_PORTABLE;
    __cpuid_count(7, 0, a, b, c, d);
    const bool avx2 = b & (1u << 5);
    if (!(avx2 && fma && f16c)) return ST_CPU_ISA_PORTABLE;
    const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
    const bool vnni = c & (1u << 11);
    if (f && dq && bw && vl && vnni && (xcr0 & 0xe6) == 0xe6)      /* + opmask and zmm state */
        return ST_CPU_ISA_AVX512;
    return ST_CPU_ISA_AVX2;
}
#else
static st_cpu_isa detect(void) { return ST_CPU_ISA_PORTABLE; }
#endif

static _Atomic int isa_best = -1, isa_forced = -1;

st_cpu_isa st_cpu_isa_best(void) {
    int b = atomic_load_explicit(&isa_best, memory_order_relaxed);
    if (b < 0) {
        b = (int)detect();
        atomic_store_explicit(&isa_best, b, memory_order_relaxed);
    }
    return (st_cpu_isa)b;
}

st_cpu_isa st_cpu_isa_current(void) {
    int f = atomic_load_explicit(&isa_forced, memory_order_relaxed);
    return f >= 0 ? (st_cpu_isa)f : st_cpu_isa_best();
}

const char *st_cpu_isa_name(st_cpu_isa isa) {
    switch (isa) {
    case ST_CPU_ISA_PORTABLE: return "portable";
    case ST_CPU_ISA_AVX2: return "avx2+fma+f16c";
    case ST_CPU_ISA_AVX512: return "avx512";
    default: return "unknown";
    }
}

st_status st_cpu_isa_force(st_cpu_isa isa) {
    if ((unsigned)isa >= ST_CPU_ISA_COUNT || isa > st_cpu_isa_best()) {
        st_error_set(ST_ERR_UNSUPPORTED, "cpu kernels: this CPU cannot run the %s path (best: %s)",
                     st_cpu_isa_name(isa), st_cpu_isa_name(st_cpu_isa_best()));
        return st_error_hint("force only a level at or below the best one");
    }
    atomic_store_explicit(&isa_forced, (int)isa, memory_order_relaxed);
    return ST_OK;
}

void st_cpu_kernels_force_portable(bool on) {
    atomic_store_explicit(&isa_forced, on ? (int)ST_CPU_ISA_PORTABLE : -1, memory_order_relaxed);
}

const char *st_cpu_kernels_simd(void) { return st_cpu_isa_name(st_cpu_isa_current()); }

/* ---- entry points ------------------------------------------------------------------------ */

size_t st_cpu_matmul_scratch_bytes(st_dtype dtype, int64_t cols, int64_t n_tok) {
    if (!st_dtype_supported(dtype) || mm_is_float(dtype) || cols <= 0 || n_tok <= 0) return 0;
    return qx_row_bytes(cols) * (size_t)n_tok;
}

void st_cpu_matmul_prepare_part(st_dtype dtype, const float *x, int64_t cols, int64_t n_tok, void *scratch,
                                int64_t t0, int64_t t1) {
    if (!st_dtype_supported(dtype) || mm_is_float(dtype) || !scratch || cols <= 0 || cols % MM_GROUP) return;
    const struct mm_isa *isa = &isa_table[st_cpu_isa_current()];
    for (int64_t t = ST_MAX(t0, 0); t < ST_MIN(t1, n_tok); t++)
        isa->quantize(x + t * cols, cols, (uint8_t *)scratch + (size_t)t * qx_row_bytes(cols));
}

size_t st_cpu_matmul_packed_bytes(st_dtype dtype, int64_t rows, int64_t cols) {
    if (!st_dtype_supported(dtype) || rows <= 0 || cols <= 0 || cols % st_dtype_block_elems(dtype)) return 0;
    return (size_t)((rows + MM_RB - 1) / MM_RB) * pk_block_bytes(dtype, cols);
}

void st_cpu_matmul_pack_part(const void *w, st_dtype dtype, int64_t rows, int64_t cols, void *packed, int64_t b0,
                             int64_t b1) {
    if (!st_cpu_matmul_packed_bytes(dtype, rows, cols)) return;
    const size_t bb = pk_block_bytes(dtype, cols);
    const int64_t nblk = (rows + MM_RB - 1) / MM_RB;
    for (int64_t b = ST_MAX(b0, 0); b < ST_MIN(b1, nblk); b++) {
        uint8_t *out = (uint8_t *)packed + (size_t)b * bb;
        if (!mm_is_float(dtype)) {
            mm_pack_groups(dtype, w, rows, cols, b * MM_RB, 0, cols / MM_GROUP, out);
            continue;
        }
        /* float: the block's columns into its place in its quad (matmul-impl.h); the
         * quad's other blocks own the other bytes, so blocks pack independently */
        const size_t es = dtype == ST_DTYPE_F32 ? 4 : 2, cs = (size_t)pk_quad_n(nblk, b) * MM_RB * es;
        uint8_t *dst = (uint8_t *)packed + (size_t)(b / 4 * 4) * bb + (size_t)(b % 4) * MM_RB * es;
        _Alignas(64) uint8_t seg[256 * MM_RB * 4];
        for (int64_t c0 = 0; c0 < cols; c0 += 256) {
            const int64_t c1 = ST_MIN(cols, c0 + 256);
            mm_pack_cols(dtype, w, rows, cols, b * MM_RB, c0, c1, seg);
            for (int64_t c = c0; c < c1; c++) memcpy(dst + (size_t)c * cs, seg + (size_t)(c - c0) * MM_RB * es, MM_RB * es);
        }
    }
}

st_status st_cpu_matmul_part(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                             const float *x, const void *scratch, const void *packed, int64_t n_tok, float *y,
                             int64_t r0, int64_t r1) {
    if (!st_dtype_supported(dtype))
        return st_error_set(ST_ERR_UNSUPPORTED, "matmul: weight dtype %s is not supported by the CPU kernels",
                            st_dtype_name(dtype));
    int64_t be = st_dtype_block_elems(dtype);
    if (cols <= 0 || rows <= 0 || cols % be) {
        st_error_set(ST_ERR_UNSUPPORTED, "matmul: a %s weight of %lld x %lld: the row length is not a whole number of %lld-element blocks",
                     st_dtype_name(dtype), (long long)rows, (long long)cols, (long long)be);
        return st_error_hint("the model file is malformed or the tensor shape was read wrongly");
    }
    if (n_tok <= 0 || r0 >= r1) return ST_OK;
    if (!mm_is_float(dtype) && !scratch) {
        st_error_set(ST_ERR_USAGE, "matmul: a %s weight needs the activations prepared (scratch is NULL)",
                     st_dtype_name(dtype));
        return st_error_hint("call st_cpu_matmul_prepare_part into st_cpu_matmul_scratch_bytes() bytes first");
    }
    const struct mm_args a = {.w = w, .dt = dtype, .rows = rows, .cols = cols,
                              .row_bytes = st_dtype_row_bytes(dtype, cols), .bias = bias, .x = x,
                              .qx = scratch, .packed = packed, .n_tok = n_tok, .y = y};
    isa_table[st_cpu_isa_current()].run(&a, ST_MAX(r0, 0), ST_MIN(r1, rows));
    return ST_OK;
}

st_status st_cpu_matmul(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                        const float *x, int64_t n_tok, float *y) {
    size_t bytes = st_cpu_matmul_scratch_bytes(dtype, cols, n_tok);
    void *scratch = NULL;
    if (bytes) {
        if (posix_memalign(&scratch, 64, bytes) != 0)
            return st_error_set(ST_ERR_NOMEM, "matmul: out of memory for %zu bytes of quantized activations", bytes);
        st_cpu_matmul_prepare_part(dtype, x, cols, n_tok, scratch, 0, n_tok);
    }
    st_status s = st_cpu_matmul_part(w, dtype, rows, cols, bias, x, scratch, NULL, n_tok, y, 0, rows);
    free(scratch);
    return s;
}
