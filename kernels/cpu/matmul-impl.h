/* kernels/cpu/matmul-impl.h — internals of the CPU matmul shared by the
 * portable reference (matmul.c) and the SIMD paths (matmul_avx2.c,
 * matmul_avx512.c). The arithmetic every path must reproduce bit for bit is
 * specified in kernels_cpu.h; matmul.c implements it in plain C. */
#ifndef STRATA_KERNELS_CPU_MATMUL_IMPL_H
#define STRATA_KERNELS_CPU_MATMUL_IMPL_H

#include "kernels/cpu/kernels_cpu.h"

#include <string.h>

#define MM_LANES 16      /* fp32 accumulators per output element */
#define MM_GROUP 32      /* activation quantization group (columns) */
#define MM_PAIR 64       /* two groups: the 16 lanes of an integer step */

/* ---- prepared activations (one token row of the scratch) -------------------------
 * cols rounded up to a whole pair (P = qx_pad(cols)), each part 64-byte aligned:
 *   v   int8  [P]      quantized x; zero past cols
 *   xs  int32 [P / 4]  lane sums of v: xs[16p + l] = sum v[64p + 4l .. 64p + 4l + 3]
 *   xsf float [P / 4]  the same as floats (exact)
 *   dv  float [P / 4]  the group scale d of each lane: dv[8g + l] = d_g; zero past cols
 *   dg  float [P / 32] the group scales once: dg[g] = d_g; zero past cols */
static inline int64_t qx_pad(int64_t cols) { return (cols + MM_PAIR - 1) / MM_PAIR * MM_PAIR; }
static inline size_t qx_dg_bytes(int64_t cols) { return ((size_t)qx_pad(cols) / 8 + 63) / 64 * 64; }
static inline size_t qx_row_bytes(int64_t cols) { return 4 * (size_t)qx_pad(cols) + qx_dg_bytes(cols); }

struct qx_row {
    const int8_t *v;
    const int32_t *xs;
    const float *xsf, *dv, *dg;
};

static inline struct qx_row qx_at(const void *scratch, int64_t cols, int64_t t) {
    const uint8_t *b = (const uint8_t *)scratch + (size_t)t * qx_row_bytes(cols);
    const size_t p = (size_t)qx_pad(cols);
    return (struct qx_row){(const int8_t *)b, (const int32_t *)(b + p), (const float *)(b + 2 * p),
                           (const float *)(b + 3 * p), (const float *)(b + 4 * p)};
}

/* ---- quantized weight groups --------------------------------------------------------
 * Offset o of the integer codes u (w = a * (u - o) + b) and whether b exists. */
static inline int mm_q_offset(st_dtype dt) {
    switch (dt) {
    case ST_DTYPE_Q8_0: case ST_DTYPE_IQ4_NL: return 128;
    case ST_DTYPE_Q4_0: return 8;
    case ST_DTYPE_Q5_0: return 16;
    case ST_DTYPE_Q6_K: return 32;
    default: return 0;
    }
}
static inline bool mm_q_has_min(st_dtype dt) {
    return dt == ST_DTYPE_Q4_1 || dt == ST_DTYPE_Q5_1 || dt == ST_DTYPE_Q4_K || dt == ST_DTYPE_Q5_K;
}
static inline bool mm_is_float(st_dtype dt) {
    return dt == ST_DTYPE_F32 || dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16;
}

/* IQ4_NL's code book (ggml), and shifted by +128 as unsigned codes. */
extern const int8_t mm_iq4nl_values[16];

static inline float mm_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return st_f16_to_f32(h);
}

/* Q4_K / Q5_K: 6-bit scale and min of group j (0..7) from the 12 packed bytes. */
static inline void mm_scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* ---- one call ------------------------------------------------------------------------ */
struct mm_args {
    const uint8_t *w;        /* (rows, row_bytes) */
    st_dtype dt;
    int64_t rows, cols;
    size_t row_bytes;
    const float *bias;       /* (rows) or NULL */
    const float *x;          /* (n_tok, cols) fp32 */
    const void *qx;          /* prepared activations (quantized dtypes) */
    int64_t n_tok;
    float *y;                /* (n_tok, rows) */
};

/* The folding tree of the 16 lanes (kernels_cpu.h). */
static inline float mm_fold(const float *l) {
    float v[8], u[4];
    for (int i = 0; i < 8; i++) v[i] = l[i] + l[i + 8];
    for (int i = 0; i < 4; i++) u[i] = v[i] + v[i + 4];
    return (u[0] + u[2]) + (u[1] + u[3]);
}

/* One SIMD level: quantize one token's x into its scratch row, and compute
 * rows [r0, r1) of every token. */
struct mm_isa {
    void (*quantize)(const float *x, int64_t cols, void *qrow);
    void (*run)(const struct mm_args *a, int64_t r0, int64_t r1);
};

void mm_portable_quantize(const float *x, int64_t cols, void *qrow);
void mm_portable_run(const struct mm_args *a, int64_t r0, int64_t r1);
#if defined(__x86_64__)
void mm_avx2_quantize(const float *x, int64_t cols, void *qrow);
void mm_avx2_run(const struct mm_args *a, int64_t r0, int64_t r1);
void mm_avx512_quantize(const float *x, int64_t cols, void *qrow);
void mm_avx512_run(const struct mm_args *a, int64_t r0, int64_t r1);
#endif

#endif /* STRATA_KERNELS_CPU_MATMUL_IMPL_H */
