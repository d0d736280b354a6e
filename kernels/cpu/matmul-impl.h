/* kernels/cpu/matmul-impl.h — internals of the CPU matmul shared by the
 * portable reference (matmul.c) and the SIMD paths (matmul_avx2.c,
 * matmul_avx512.c). The arithmetic every path must reproduce bit for bit is
 * specified in kernels_cpu.h; matmul.c implements it in plain C. */
#ifndef STRATA_KERNELS_CPU_MATMUL_IMPL_H
#define STRATA_KERNELS_CPU_MATMUL_IMPL_H

#include "kernels/cpu/kernels_cpu.h"

#include <string.h>

#define MM_GROUP 32      /* activation quantization group (columns) */
#define MM_RB 16         /* rows per block of a packed matrix */
#define MM_KP 512        /* float weights: columns per partial sum (kernels_cpu.h) */
/* Decode (one or two tokens) streams each thread's rows from DRAM, and the
 * hardware prefetchers alone keep too few lines in flight for one core, more
 * so where a weight byte takes more instructions (the K-quants' scales, the 5-
 * and 6-bit planes). The SIMD paths request each line MM_PF_AHEAD bytes ahead
 * of the sweep. Batch-1 GEMV on a 2-vCPU Xeon, % of the read bandwidth
 * (bench_cpu_matmul, AVX-512): q4_k 60 -> 77, q6_k 63 -> 83, q5_0 71 -> 86,
 * q8_0 87 -> 95, f16 83 -> 90; 1 KiB and 4 KiB ahead did worse than 2 KiB. */
#define MM_PF_AHEAD 2048
/* Each line is requested a second time MM_PF_FAR bytes ahead into L2 only
 * (_MM_HINT_T1): L2 keeps more misses in flight than L1's fill buffers, so
 * the stream runs deeper. Same box, `strata bench --cpu --threads 2` decode of
 * the issue-18 files, median of 3 interleaved runs, none -> 4 KiB: F16 34.6 ->
 * 38.7, Q4_K_M 98.7 -> 109.3, Q8_0 63.6-64.9 -> 65.1-68.5 tok/s (8 and 16 KiB
 * gained less on Q4_K_M, as much on F16). */
#define MM_PF_FAR 4096

/* The decode prefetch of one line: p is MM_PF_AHEAD bytes past the sweep
 * (into L1); the line MM_PF_FAR past it goes into L2 only. */
static inline void mm_pf_decode(const void *p) {
    __builtin_prefetch(p, 0, 3);
    __builtin_prefetch((const char *)p + (MM_PF_FAR - MM_PF_AHEAD), 0, 2);
}

/* ---- prepared activations (one token row of the scratch) -------------------------
 * P = cols rounded up to 64; every part 64-byte aligned, zero past cols:
 *   v    int8  [P]       quantized x
 *   s16  int32 [P / 16]  sums of v over 16 columns (the units of Q6_K)
 *   s32  int32 [P / 32]  sums of v over each group
 *   s32f float [P / 32]  the same as floats (exact)
 *   dg   float [P / 32]  the group scale d_g */
static inline int64_t qx_pad(int64_t cols) { return (cols + 63) / 64 * 64; }
static inline size_t qx_part(size_t bytes) { return (bytes + 63) / 64 * 64; }
static inline size_t qx_row_bytes(int64_t cols) {
    const size_t P = (size_t)qx_pad(cols);
    return P + qx_part(P / 4) + 3 * qx_part(P / 8);
}

struct qx_row {
    const int8_t *v;
    const int32_t *s16, *s32;
    const float *s32f, *dg;
};

static inline struct qx_row qx_at(const void *scratch, int64_t cols, int64_t t) {
    const uint8_t *b = (const uint8_t *)scratch + (size_t)t * qx_row_bytes(cols);
    const size_t P = (size_t)qx_pad(cols), o1 = P, o2 = o1 + qx_part(P / 4), o3 = o2 + qx_part(P / 8),
                 o4 = o3 + qx_part(P / 8);
    return (struct qx_row){(const int8_t *)b, (const int32_t *)(b + o1), (const int32_t *)(b + o2),
                           (const float *)(b + o3), (const float *)(b + o4)};
}

/* ---- packed matrices (the SIMD paths) ------------------------------------------------------
 * Row blocks of MM_RB = 16 rows (the last one padded with zero rows), so one
 * zmm lane (or one of two ymm halves) holds one row.
 * F32/F16/BF16: column after column, the 16 rows' values of each (64 or 32 B);
 *   in a packed copy (not the on-the-fly segments) four blocks share their
 *   columns: quad j holds column c of blocks 4j .. 4j + 3 side by side
 *   (pk_quad_n), so the decode sweep over four blocks reads one stream
 *   (measured on one Zen 4 core from DRAM: F16 25 -> 30 GB/s against four
 *   separate streams). Quantized types keep each block contiguous.
 * Quantized types, in a block, per 32-column group g (for the K types: per
 * superblock a header, then its 8 groups):
 *   codes, one of
 *     NIB   4 x 64 B: chunk c, byte 4r + b = u(r, 4c+b) | u(r, 16+4c+b) << 4
 *           (u = the low 4 bits of the code; IQ4_NL: the code-book index)
 *     BYTES 8 x 64 B: chunk m, byte 4r + b = u(r, 4m + b)            (Q8_0)
 *   then for 5-bit codes HB 8 x 8 B: masks (chunk c, lo half) at 2c and
 *     (hi half) at 2c+1, bit 4r + b = bit 4 of that code
 *   and for Q6_K TWO 2 x 64 B: (lo half, hi half) byte 4r + b holds bits 4-5
 *     of the code of chunk c in bits 2c, 2c+1
 *   then the scales of the 32-block types: a (16 x f16), for Q4_1/Q5_1 b (16 x f16).
 * K headers: Q4_K/Q5_K d, dmin (16 x f16 each), sc[8][16], m[8][16] (6-bit as
 * bytes); Q6_K d (16 x f16), sc[16][16] (int8, one per 16 columns). */
static inline size_t pk_group_bytes(st_dtype dt) {
    switch (dt) {
    case ST_DTYPE_Q8_0: return 512 + 32;
    case ST_DTYPE_Q4_0: case ST_DTYPE_IQ4_NL: return 256 + 32;
    case ST_DTYPE_Q4_1: return 256 + 64;
    case ST_DTYPE_Q5_0: return 256 + 64 + 32;
    case ST_DTYPE_Q5_1: return 256 + 64 + 64;
    case ST_DTYPE_Q4_K: return 256;
    case ST_DTYPE_Q5_K: return 256 + 64;
    case ST_DTYPE_Q6_K: return 256 + 128;
    default: return 0;
    }
}
static inline size_t pk_header_bytes(st_dtype dt) {
    return dt == ST_DTYPE_Q4_K || dt == ST_DTYPE_Q5_K ? 64 + 256 : dt == ST_DTYPE_Q6_K ? 32 + 256 : 0;
}
/* Offset in a block of group g's record (K types: g a multiple of 8 gives
 * its superblock's header), and the bytes of a block of cols columns. */
static inline size_t pk_offset(st_dtype dt, int64_t g) {
    if (!pk_header_bytes(dt)) return (size_t)g * pk_group_bytes(dt);
    return (size_t)(g / 8) * (pk_header_bytes(dt) + 8 * pk_group_bytes(dt)) +
           (g % 8 ? pk_header_bytes(dt) + (size_t)(g % 8) * pk_group_bytes(dt) : 0);
}
static inline size_t pk_block_bytes(st_dtype dt, int64_t cols) {
    if (dt == ST_DTYPE_F32) return (size_t)cols * MM_RB * 4;
    if (dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16) return (size_t)cols * MM_RB * 2;
    return pk_offset(dt, cols / MM_GROUP);
}
/* Packed float matrices keep their blocks in quads: blocks 4j .. 4j + 3 (fewer
 * at the end) interleaved column by column, so the few-token sweep over four
 * blocks reads one stream (column c of block 4j + m at the quad's start +
 * c * pk_quad_n * 16 * es + m * 16 * es). pk_quad_n: blocks in blk's quad. */
static inline int pk_quad_n(int64_t n_blocks, int64_t blk) { return (int)ST_MIN(4, n_blocks - blk / 4 * 4); }

/* Offset of group g's own record (after the header for the first of a superblock). */
static inline size_t pk_rec_offset(st_dtype dt, int64_t g) {
    return pk_offset(dt, g) + (pk_header_bytes(dt) && g % 8 == 0 ? pk_header_bytes(dt) : 0);
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
    const uint8_t *packed;   /* the same weights packed (quantized dtypes) or NULL */
    int64_t n_tok;
    float *y;                /* (n_tok, rows) */
};

/* Packs columns [c0, c1) of rows [r0, r0 + 16) of a row-major float matrix
 * (rows past `rows` as zeros): (c1 - c0) x 16 values. */
void mm_pack_cols(st_dtype dt, const uint8_t *w, int64_t rows, int64_t cols, int64_t r0, int64_t c0, int64_t c1,
                  uint8_t *out);
/* Packs groups [g0, g1) of rows [r0, r0 + 16) of a row-major quantized
 * matrix (rows past `rows` as zeros) into out, laid out as that part of a
 * block (pk_offset(g1) - pk_offset(g0) bytes; K types: g0, g1 multiples of
 * 8). matmul.c, plain C. */
void mm_pack_groups(st_dtype dt, const uint8_t *w, int64_t rows, int64_t cols, int64_t r0, int64_t g0, int64_t g1,
                    uint8_t *out);

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
