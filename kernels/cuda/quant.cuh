/* kernels/cuda/quant.cuh — the per-block math of GGUF quantized weights,
 * written once for the host and the device (__host__ __device__), so that a
 * CPU test (tests/engine/test_quant_math.cu) checks exactly what the kernels
 * run: dequantization bit for bit against model/dtype.c, and the two dot
 * products against a float64 reference.
 *
 * A row of quantized weights is cut into 32-weight *units*: a whole block of
 * the 32-element types (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL), an eighth of a
 * 256-element super-block (Q4_K, Q5_K, Q6_K). A unit has two halves of 16
 * weights; weight i of half k is
 *
 *     w = dw[k] * (q - OFF) + mw[k]          (mw only for types with a min)
 *
 * with q a small integer packed as bytes in qw[4k .. 4k+3] (unsigned 0..63,
 * or two's complement int8 for SIGNED types), and lies at element xo[k] + i of
 * the block. st_q_unit_values() evaluates that formula with the same float
 * operations as dtype.c, so the values are identical (no contraction into FMA).
 *
 * Two dot products of a unit with activations x:
 *  - st_q_dot_f32: fp32 x, weights widened to fp32 in registers (the magic
 *    number 2^23 turns a byte into an exact float without an I2F), fp32
 *    accumulation: dw * sum (q - OFF) x + mw * sum x per half. Any GPU from
 *    sm_52; the Maxwell path. No fp16, no integer dot products.
 *  - st_q_dot_i8: x quantized to 8 bits per 32 elements (st_q8x, like
 *    llama.cpp's q8_1), integer dot products (dp4a on sm_61+, a portable loop
 *    below) and the scales applied in fp32. Error bound: see st_q8x.
 *
 * Layout facts (formats.md 1.6, ggml-common.h): every field is little endian;
 * Q6_K stores d last; K-quant scales/mins are 6-bit packed (get_scale_min_k4).
 * Blocks are 2-byte aligned at least (BB is even); ALIGN is the alignment every
 * block has when the row starts 16-byte aligned (Q4_K and Q5_K: 16). */
#ifndef STRATA_KERNELS_CUDA_QUANT_CUH
#define STRATA_KERNELS_CUDA_QUANT_CUH

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>

#include "model/model.h"

#define ST_QHD __host__ __device__ __forceinline__
/* unroll in device code (the host compiler does not know the pragma) */
#ifdef __CUDA_ARCH__
#define ST_Q_UNROLL _Pragma("unroll")
#else
#define ST_Q_UNROLL
#endif

/* ---- scalar helpers ----------------------------------------------------------- */

/* IEEE products and sums that the compiler may not fuse, so that host, device
 * and dtype.c round the same way. */
static ST_QHD float st_q_mul(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
static ST_QHD float st_q_add(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
static ST_QHD float st_q_f16(uint16_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(h));
#else
    return st_f16_to_f32(h);
#endif
}
static ST_QHD uint32_t st_q_byte_perm(uint32_t x, uint32_t y, uint32_t s) {
#ifdef __CUDA_ARCH__
    return __byte_perm(x, y, s);
#else
    const uint64_t v = (uint64_t)y << 32 | x;
    uint32_t r = 0;
    for (int k = 0; k < 4; k++) r |= (uint32_t)((v >> (8 * ((s >> (4 * k)) & 7))) & 0xff) << (8 * k);
    return r;
#endif
}
/* sum of the four signed byte products of a and b, plus c (dp4a) */
static ST_QHD int st_q_dp4a(uint32_t a, uint32_t b, int c) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 610
    return __dp4a((int)a, (int)b, c);
#else
    for (int k = 0; k < 4; k++) c += (int)(int8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    return c;
#endif
}
static ST_QHD float st_q_u2f(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}
/* Byte i of w as an exact float: 2^23 + byte built in the mantissa, minus
 * 2^23 + bias (bias = OFF for unsigned bytes, 128 for int8 after ^ 0x80). */
static ST_QHD float st_q_byte_f32(uint32_t w, int i, float bias_magic) {
    return st_q_u2f(st_q_byte_perm(w, 0x4B000000u, 0x7440u + (uint32_t)i)) - bias_magic;
}
/* bits 0..3 of b spread to bit 0 of each byte */
static ST_QHD uint32_t st_q_spread4(uint32_t b) { return (b * 0x00204081u) & 0x01010101u; }

/* ---- reading block bytes ------------------------------------------------------- */

static ST_QHD uint16_t st_q_rd16(const uint8_t *p) {
#ifdef __CUDA_ARCH__
    return *(const uint16_t *)p;
#else
    return (uint16_t)(p[0] | p[1] << 8);
#endif
}

/* N little-endian 32-bit words starting at p, which is A-byte aligned (2, 4,
 * 8 or 16). SLACK (A == 2): on the device, the 4 bytes after the last word may
 * be read (shared memory with a margin); without it only the field's own
 * bytes are (16-bit loads). */
template <int A, bool SLACK, int N>
static ST_QHD void st_q_rdw(const uint8_t *p, uint32_t (&w)[N]) {
#ifdef __CUDA_ARCH__
    if (A >= 16 && N % 4 == 0) {
ST_Q_UNROLL
        for (int i = 0; i < N / 4; i++) {
            const uint4 v = ((const uint4 *)p)[i];
            w[4 * i] = v.x; w[4 * i + 1] = v.y; w[4 * i + 2] = v.z; w[4 * i + 3] = v.w;
        }
    } else if (A >= 8 && N % 2 == 0) {
ST_Q_UNROLL
        for (int i = 0; i < N / 2; i++) {
            const uint2 v = ((const uint2 *)p)[i];
            w[2 * i] = v.x; w[2 * i + 1] = v.y;
        }
    } else if (A >= 4) {
ST_Q_UNROLL
        for (int i = 0; i < N; i++) w[i] = ((const uint32_t *)p)[i];
    } else if (SLACK) {
        /* two aligned words and a funnel shift per word (p is 2- or 4-aligned) */
        const uint32_t *b = (const uint32_t *)((uintptr_t)p & ~(uintptr_t)3);
        const uint32_t sh = ((uint32_t)(uintptr_t)p & 2u) * 8u;
        uint32_t lo = b[0];
ST_Q_UNROLL
        for (int i = 0; i < N; i++) {
            const uint32_t hi = b[i + 1];
            w[i] = __funnelshift_r(lo, hi, sh);
            lo = hi;
        }
    } else {
        const uint16_t *h = (const uint16_t *)p;
ST_Q_UNROLL
        for (int i = 0; i < N; i++) w[i] = (uint32_t)h[2 * i] | (uint32_t)h[2 * i + 1] << 16;
    }
#else
    for (int i = 0; i < N; i++)
        w[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
               (uint32_t)p[4 * i + 3] << 24;
#endif
}

/* ---- units -------------------------------------------------------------------- */

struct st_q_unit {
    uint32_t qw[8];   /* 32 q values as bytes: [0..3] half 0, [4..7] half 1 */
    float dw[2];      /* per half: scale */
    float mw[2];      /* per half: min (types with HAS_MIN; 0 otherwise) */
    int xo[2];        /* per half: element offset in the block of its 16 weights (a multiple of 16) */
};

/* Block traits: QK elements in BB bytes; UPB = QK / 32 units per block. */
template <int DT> struct st_qt;

template <> struct st_qt<ST_DTYPE_Q8_0> {
    static constexpr int QK = 32, BB = 34, ALIGN = 2, OFF = 0;
    static constexpr bool SIGNED = true, HAS_MIN = false;
    template <int A, bool S> static ST_QHD void unit(const uint8_t *b, int, st_q_unit &u) {
        u.dw[0] = u.dw[1] = st_q_f16(st_q_rd16(b));
        u.mw[0] = u.mw[1] = 0.0f;
        st_q_rdw<A, S>(b + 2, u.qw);
        u.xo[0] = 0; u.xo[1] = 16;
    }
};

template <> struct st_qt<ST_DTYPE_Q4_0> {
    static constexpr int QK = 32, BB = 18, ALIGN = 2, OFF = 8;
    static constexpr bool SIGNED = false, HAS_MIN = false;
    template <int A, bool S> static ST_QHD void unit(const uint8_t *b, int, st_q_unit &u) {
        u.dw[0] = u.dw[1] = st_q_f16(st_q_rd16(b));
        u.mw[0] = u.mw[1] = 0.0f;
        uint32_t w[4];
        st_q_rdw<A, S>(b + 2, w);
ST_Q_UNROLL
        for (int j = 0; j < 4; j++) { u.qw[j] = w[j] & 0x0F0F0F0Fu; u.qw[4 + j] = (w[j] >> 4) & 0x0F0F0F0Fu; }
        u.xo[0] = 0; u.xo[1] = 16;
    }
};

template <> struct st_qt<ST_DTYPE_Q4_1> {
    static constexpr int QK = 32, BB = 20, ALIGN = 4, OFF = 0;
    static constexpr bool SIGNED = false, HAS_MIN = true;
    template <int A, bool S> static ST_QHD void unit(const uint8_t *b, int, st_q_unit &u) {
        u.dw[0] = u.dw[1] = st_q_f16(st_q_rd16(b));
        u.mw[0] = u.mw[1] = st_q_f16(st_q_rd16(b + 2));
        uint32_t w[4];
        st_q_rdw<A, S>(b + 4, w);
ST_Q_UNROLL
        for (int j = 0; j < 4; j++) { u.qw[j] = w[j] & 0x0F0F0F0Fu; u.qw[4 + j] = (w[j] >> 4) & 0x0F0F0F0Fu; }
        u.xo[0] = 0; u.xo[1] = 16;
    }
};

template <> struct st_qt<ST_DTYPE_Q5_0> {
    static constexpr int QK = 32, BB = 22, ALIGN = 2, OFF = 16;
    static constexpr bool SIGNED = false, HAS_MIN = false;
    template <int A, bool S> static ST_QHD void unit(const uint8_t *b, int, st_q_unit &u) {
        u.dw[0] = u.dw[1] = st_q_f16(st_q_rd16(b));
        u.mw[0] = u.mw[1] = 0.0f;
        uint32_t h[1], w[4];
        st_q_rdw<A, S>(b + 2, h);
        st_q_rdw<A, S>(b + 6, w);
ST_Q_UNROLL
        for (int j = 0; j < 4; j++) {
            u.qw[j] = (w[j] & 0x0F0F0F0Fu) | st_q_spread4((h[0] >> (4 * j)) & 0xFu) << 4;
            u.qw[4 + j] = ((w[j] >> 4) & 0x0F0F0F0Fu) | st_q_spread4((h[0] >> (16 + 4 * j)) & 0xFu) << 4;
        }
        u.xo[0] = 0; u.xo[1] = 16;
    }
};

template <> struct st_qt<ST_DTYPE_Q5_1> {
    static constexpr int QK = 32, BB = 24, ALIGN = 8, OFF = 0;
    static constexpr bool SIGNED = false, HAS_MIN = true;
    template <int A, bool S> static ST_QHD void unit(const uint8_t *b, int, st_q_unit &u) {
        u.dw[0] = u.dw[1] = st_q_f16(st_q_rd16(b));
        u.mw[0] = u.mw[1] = st_q_f16(st_q_rd16(b + 2));
        uint32_t h[1], w[4];
        st_q_rdw<(A < 4 ? A : 4), S>(b + 4, h);
        st_q_rdw<A, S>(b + 8, w);
ST_Q_UNROLL
        for (int j = 0; j < 4; j++) {
            u.qw[j] = (w[j] & 0x0F0F0F0Fu) | st_q_spread4((h[0] >> (4 * j)) & 0xFu) << 4;
            u.qw[4 + j] = ((w[j] >> 4) & 0x0F0F0F0Fu) | st_q_spread4((h[0] >> (16 + 4 * j)) & 0xFu) << 4;
        }
        u.xo[0] = 0; u.xo[1] = 16;
    }
};

/* The IQ4_NL code book as four little-endian words (bytes -127, -104, ... 113). */
#define ST_IQ4NL_W0 0xBFAD9881u
#define ST_IQ4NL_W1 0xF6EADDCFu
#define ST_IQ4NL_W2 0x26190D01u
#define ST_IQ4NL_W3 0x71594535u

/* Four nibbles (bytes 0..15) to their IQ4_NL int8 values, one byte each. */
static ST_QHD uint32_t st_q_iq4nl_lut(uint32_t n) {
    const uint32_t lo3 = n & 0x07070707u;
    const uint32_t t = lo3 | (lo3 >> 4);
    const uint32_t sel = (t & 0xFFu) | ((t >> 8) & 0xFF00u);
    const uint32_t a = st_q_byte_perm(ST_IQ4NL_W0, ST_IQ4NL_W1, sel);
    const uint32_t c = st_q_byte_perm(ST_IQ4NL_W2, ST_IQ4NL_W3, sel);
    const uint32_t m = ((n >> 3) & 0x01010101u) * 0xFFu;
    return (a & ~m) | (c & m);
}

template <> struct st_qt<ST_DTYPE_IQ4_NL> {
    static constexpr int QK = 32, BB = 18, ALIGN = 2, OFF = 0;
    static constexpr bool SIGNED = true, HAS_MIN = false;
    template <int A, bool S> static ST_QHD void unit(const uint8_t *b, int, st_q_unit &u) {
        u.dw[0] = u.dw[1] = st_q_f16(st_q_rd16(b));
        u.mw[0] = u.mw[1] = 0.0f;
        uint32_t w[4];
        st_q_rdw<A, S>(b + 2, w);
ST_Q_UNROLL
        for (int j = 0; j < 4; j++) {
            u.qw[j] = st_q_iq4nl_lut(w[j] & 0x0F0F0F0Fu);
            u.qw[4 + j] = st_q_iq4nl_lut((w[j] >> 4) & 0x0F0F0F0Fu);
        }
        u.xo[0] = 0; u.xo[1] = 16;
    }
};

/* get_scale_min_k4 (ggml) for sub-blocks 2c and 2c + 1 over the 12 packed
 * bytes as three words, without a branch (the lanes of a warp hold different
 * c): both forms computed on two bytes at a time, then a select. */
static ST_QHD void st_q_scale_min_k4_pair(int c, const uint32_t (&sc)[3], int &s0, int &m0, int &s1, int &m1) {
    const uint32_t sh = 16u * (uint32_t)(c & 1);
    const uint32_t a = sc[0] >> sh, b = sc[1] >> sh, t = sc[2] >> sh;
    const uint32_t hi = 0u - (uint32_t)(c >= 2);   /* all ones for sub-blocks 4..7 (a mask, not a branch) */
    const uint32_t sv = (((t & 0x0F0Fu) | ((a >> 2) & 0x3030u)) & hi) | (a & 0x3F3Fu & ~hi);
    const uint32_t mv = ((((t >> 4) & 0x0F0Fu) | ((b >> 2) & 0x3030u)) & hi) | (b & 0x3F3Fu & ~hi);
    s0 = (int)(sv & 0xFFu);
    s1 = (int)((sv >> 8) & 0xFFu);
    m0 = (int)(mv & 0xFFu);
    m1 = (int)((mv >> 8) & 0xFFu);
}

/* Q4_K / Q5_K: the element offset in the block of half k of unit ui = 2c + h
 * (chunk c of 64 elements, its halves 32 apart, h which 16 of each) */
static ST_QHD int st_q_k4_xoff(int ui, int k) { return 64 * (ui >> 1) + 32 * k + 16 * (ui & 1); }

/* Q4_K unit ui = 2c + h (c: 64-element chunk, h: which 16 of its 32 qs bytes):
 * half 0 = low nibbles (sub-block 2c), half 1 = high nibbles (sub-block 2c+1).
 * The 16-byte-aligned types (Q4_K, Q5_K) also give a unit's fields as NLD
 * 16-byte pieces at block offsets ld_off(ui, l), and the unit from those
 * words (from_words): a kernel then issues the loads itself, straight from
 * global memory (gemv_quant.cu's direct kernel); unit() is the two together. */
template <> struct st_qt<ST_DTYPE_Q4_K> {
    static constexpr int QK = 256, BB = 144, ALIGN = 16, OFF = 0, NLD = 2;
    static constexpr bool SIGNED = false, HAS_MIN = true;
    /* l 0: d, dmin, scales[12]; l 1: the unit's 16 qs bytes */
    static ST_QHD int ld_off(int ui, int l) { return l == 0 ? 0 : 16 + 32 * (ui >> 1) + 16 * (ui & 1); }
    static ST_QHD int xoff(int ui, int k) { return st_q_k4_xoff(ui, k); }
    static ST_QHD void from_words(const uint32_t (&r)[NLD][4], int ui, st_q_unit &u) {
        const int c = ui >> 1;
        const float d = st_q_f16((uint16_t)r[0][0]), dmin = st_q_f16((uint16_t)(r[0][0] >> 16));
        const uint32_t sc[3] = {r[0][1], r[0][2], r[0][3]};
        int s0, m0, s1, m1;
        st_q_scale_min_k4_pair(c, sc, s0, m0, s1, m1);
        u.dw[0] = st_q_mul(d, (float)s0);
        u.dw[1] = st_q_mul(d, (float)s1);
        u.mw[0] = -st_q_mul(dmin, (float)m0);
        u.mw[1] = -st_q_mul(dmin, (float)m1);
ST_Q_UNROLL
        for (int j = 0; j < 4; j++) { u.qw[j] = r[1][j] & 0x0F0F0F0Fu; u.qw[4 + j] = (r[1][j] >> 4) & 0x0F0F0F0Fu; }
        u.xo[0] = st_q_k4_xoff(ui, 0);
        u.xo[1] = st_q_k4_xoff(ui, 1);
    }
    template <int A, bool S> static ST_QHD void unit(const uint8_t *b, int ui, st_q_unit &u) {
        uint32_t r[NLD][4];
ST_Q_UNROLL
        for (int l = 0; l < NLD; l++) st_q_rdw<A, S>(b + ld_off(ui, l), r[l]);
        from_words(r, ui, u);
    }
};

/* Q5_K: Q4_K plus the fifth bit of element 64c + l in bit 2c (low) / 2c+1 (high) of qh[l]. */
template <> struct st_qt<ST_DTYPE_Q5_K> {
    static constexpr int QK = 256, BB = 176, ALIGN = 16, OFF = 0, NLD = 3;
    static constexpr bool SIGNED = false, HAS_MIN = true;
    /* l 0: d, dmin, scales[12]; l 1: the 16 qh bytes of half h; l 2: the unit's 16 qs bytes */
    static ST_QHD int ld_off(int ui, int l) {
        return l == 0 ? 0 : l == 1 ? 16 + 16 * (ui & 1) : 48 + 32 * (ui >> 1) + 16 * (ui & 1);
    }
    static ST_QHD int xoff(int ui, int k) { return st_q_k4_xoff(ui, k); }
    static ST_QHD void from_words(const uint32_t (&r)[NLD][4], int ui, st_q_unit &u) {
        const int c = ui >> 1;
        const float d = st_q_f16((uint16_t)r[0][0]), dmin = st_q_f16((uint16_t)(r[0][0] >> 16));
        const uint32_t sc[3] = {r[0][1], r[0][2], r[0][3]};
        int s0, m0, s1, m1;
        st_q_scale_min_k4_pair(c, sc, s0, m0, s1, m1);
        u.dw[0] = st_q_mul(d, (float)s0);
        u.dw[1] = st_q_mul(d, (float)s1);
        u.mw[0] = -st_q_mul(dmin, (float)m0);
        u.mw[1] = -st_q_mul(dmin, (float)m1);
ST_Q_UNROLL
        for (int j = 0; j < 4; j++) {
            u.qw[j] = (r[2][j] & 0x0F0F0F0Fu) | ((r[1][j] >> (2 * c)) & 0x01010101u) << 4;
            u.qw[4 + j] = ((r[2][j] >> 4) & 0x0F0F0F0Fu) | ((r[1][j] >> (2 * c + 1)) & 0x01010101u) << 4;
        }
        u.xo[0] = st_q_k4_xoff(ui, 0);
        u.xo[1] = st_q_k4_xoff(ui, 1);
    }
    template <int A, bool S> static ST_QHD void unit(const uint8_t *b, int ui, st_q_unit &u) {
        uint32_t r[NLD][4];
ST_Q_UNROLL
        for (int l = 0; l < NLD; l++) st_q_rdw<A, S>(b + ld_off(ui, l), r[l]);
        from_words(r, ui, u);
    }
};

/* Q6_K unit ui = 4H + 2p + g (H: 128-element half, p: ql[l] or ql[l + 32],
 * g: l in 16g..16g+15): half 0 = low nibbles (element 128H + 32p + l),
 * half 1 = high nibbles (element 128H + 64 + 32p + l); scales int8, d last. */
template <> struct st_qt<ST_DTYPE_Q6_K> {
    static constexpr int QK = 256, BB = 210, ALIGN = 2, OFF = 32;
    static constexpr bool SIGNED = false, HAS_MIN = false;
    template <int A, bool S> static ST_QHD void unit(const uint8_t *b, int ui, st_q_unit &u) {
        const int H = ui >> 2, p = (ui >> 1) & 1, g = ui & 1;
        const float d = st_q_f16(st_q_rd16(b + 208));
        const int is = 8 * H + g + 2 * p;
        const uint16_t s01 = st_q_rd16(b + 192 + (is & ~1));
        const uint16_t s45 = st_q_rd16(b + 192 + ((is + 4) & ~1));
        const int8_t sc0 = (int8_t)(is & 1 ? s01 >> 8 : s01 & 0xff);
        const int8_t sc1 = (int8_t)(is & 1 ? s45 >> 8 : s45 & 0xff);
        u.dw[0] = st_q_mul(d, (float)sc0);
        u.dw[1] = st_q_mul(d, (float)sc1);
        u.mw[0] = u.mw[1] = 0.0f;
        uint32_t l[4], hh[4];
        st_q_rdw<A, S>(b + 64 * H + 32 * p + 16 * g, l);
        st_q_rdw<A, S>(b + 128 + 32 * H + 16 * g, hh);
ST_Q_UNROLL
        for (int j = 0; j < 4; j++) {
            u.qw[j] = (l[j] & 0x0F0F0F0Fu) | ((hh[j] >> (2 * p)) & 0x03030303u) << 4;
            u.qw[4 + j] = ((l[j] >> 4) & 0x0F0F0F0Fu) | ((hh[j] >> (4 + 2 * p)) & 0x03030303u) << 4;
        }
        u.xo[0] = 128 * H + 32 * p + 16 * g;
        u.xo[1] = 128 * H + 64 + 32 * p + 16 * g;
    }
};

static ST_QHD bool st_q_is_quant(st_dtype t) { return t >= ST_DTYPE_Q8_0 && t <= ST_DTYPE_Q6_K; }

/* The unit's 32 weights in half order (out[16k + i] = element xo[k] + i),
 * bit-identical to st_dtype_to_f32. */
template <class Tr> static ST_QHD void st_q_unit_values(const st_q_unit &u, float (&out)[32]) {
    const float bias = 8388608.0f + (Tr::SIGNED ? 128.0f : (float)Tr::OFF);
ST_Q_UNROLL
    for (int k = 0; k < 2; k++)
ST_Q_UNROLL
        for (int i = 0; i < 16; i++) {
            uint32_t w = u.qw[4 * k + i / 4];
            if (Tr::SIGNED) w ^= 0x80808080u;
            const float q = st_q_byte_f32(w, i & 3, bias);
            const float v = st_q_mul(u.dw[k], q);
            out[16 * k + i] = Tr::HAS_MIN ? st_q_add(v, u.mw[k]) : v;
        }
}

/* ---- fp32 dot (the Maxwell path) ----------------------------------------------- */

/* Half k of a unit's activations, loaded once and used for every row that
 * reads the same columns (the direct kernel runs several rows per warp): the
 * 16 fp32 values at element xo of the block (16-byte aligned) and their sum. */
struct st_q_xf {
    float4 v[4];
    float sx;
};
static ST_QHD void st_q_load_xf(const float *x, int xo, st_q_xf &o) {
    const float4 *xp = (const float4 *)(x + xo);
    float sx = 0.0f;
ST_Q_UNROLL
    for (int j = 0; j < 4; j++) {
#ifdef __CUDA_ARCH__
        const float4 v = __ldg(xp + j);
#else
        const float4 v = xp[j];
#endif
        o.v[j] = v;
        sx += (v.x + v.y) + (v.z + v.w);
    }
    o.sx = sx;
}

/* r + the unit's half k times x: dw * sum (q - OFF) x + mw * sum x (fp32
 * weights widened in registers, fp32 accumulation). */
template <class Tr> static ST_QHD float st_q_dot_xf(const st_q_unit &u, int k, const st_q_xf &x, float r) {
    const float bias = 8388608.0f + (Tr::SIGNED ? 128.0f : (float)Tr::OFF);
    float s = 0.0f;
ST_Q_UNROLL
    for (int j = 0; j < 4; j++) {
        const float4 v = x.v[j];
        uint32_t w = u.qw[4 * k + j];
        if (Tr::SIGNED) w ^= 0x80808080u;
        s = fmaf(st_q_byte_f32(w, 0, bias), v.x, s);
        s = fmaf(st_q_byte_f32(w, 1, bias), v.y, s);
        s = fmaf(st_q_byte_f32(w, 2, bias), v.z, s);
        s = fmaf(st_q_byte_f32(w, 3, bias), v.w, s);
    }
    r = fmaf(u.dw[k], s, r);
    if (Tr::HAS_MIN) r = fmaf(u.mw[k], x.sx, r);
    return r;
}

/* the same with x read here: x = the block's activations (element 0, 16-byte aligned) */
template <class Tr> static ST_QHD float st_q_dot_f32(const st_q_unit &u, const float *x) {
    float r = 0.0f;
ST_Q_UNROLL
    for (int k = 0; k < 2; k++) {
        st_q_xf xf;
        st_q_load_xf(x, u.xo[k], xf);
        r = st_q_dot_xf<Tr>(u, k, xf, r);
    }
    return r;
}

/* ---- activations quantized to 8 bits (the integer path) --------------------------
 *
 * st_q8x: for every token, its cols int8 values, then one st_q8x_meta per 32
 * (the row is 1.5 * cols bytes; cols a multiple of 32, so every part is
 * 16-byte aligned). For a 32-element block of x with amax = max |x_i|:
 *   d = amax / 127, q_i = rint(x_i * (127 / amax)) in [-127, 127] (all 0 when
 *   amax is 0), so |x_i - d q_i| <= d / 2 (to within 1e-4 relative: the
 *   quotient is an fp32 product);
 *   s0, s1 = the exact fp32 sums of x over elements 0..15 and 16..31 (the min
 *   terms of Q4_1/Q5_1/Q4_K/Q5_K use them, so mins add no error);
 *   q01 = sum q_i over 0..15 (low 16 bits, signed) and 16..31 (high 16 bits)
 *   (the offsets of Q4_0/Q5_0/Q6_K are applied to the integer sums, exactly).
 * A unit's integer-path result differs from the exact dot of the same
 * weights with x by at most sum_i |dw (q_i - OFF)| * d_i / 2 (d_i the scale of
 * x_i's block), plus fp32 rounding; tests/gpu/test_kernels.c checks exactly
 * that bound per output, and tests/engine/test_quant_math.cu on the host. */
struct st_q8x_meta {
    float d, s0, s1;
    int q01;
};
static_assert(sizeof(struct st_q8x_meta) == 16, "st_q8x_meta is one 16-byte load");

static ST_QHD size_t st_q8x_row_bytes(int64_t cols) { return (size_t)cols + (size_t)(cols / 32) * sizeof(struct st_q8x_meta); }

/* Quantizes one block of 32 values the way the device kernel does (the sums
 * s0/s1 are added in a different order there; everything else is identical). */
static ST_QHD void st_q8x_block(const float *x, int8_t *q, struct st_q8x_meta *m) {
    float amax = 0.0f;
    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    int q0 = 0, q1 = 0;
    float s0 = 0.0f, s1 = 0.0f;
    for (int i = 0; i < 32; i++) {
        const float v = rintf(st_q_mul(x[i], id));
        const int qi = v > 127.0f ? 127 : v < -127.0f ? -127 : (int)v;
        q[i] = (int8_t)qi;
        if (i < 16) { q0 += qi; s0 += x[i]; } else { q1 += qi; s1 += x[i]; }
    }
    m->d = amax / 127.0f;
    m->s0 = s0;
    m->s1 = s1;
    m->q01 = (int)((uint32_t)(q0 & 0xffff) | (uint32_t)q1 << 16);
}

/* Half k of a unit's 8-bit activations, loaded once for several rows: the
 * 16 int8 values at element xo of the block, the scale d of their 32-element
 * x block, the sum of x over the half (for the mins) and the sum of its q
 * (for the offsets). */
struct st_q_xi8 {
    uint4 v;
    float d, s;
    int qs;
};
static ST_QHD void st_q_load_xi8(const int8_t *xq, const struct st_q8x_meta *meta, int xo, st_q_xi8 &o) {
#ifdef __CUDA_ARCH__
    o.v = __ldg((const uint4 *)(xq + xo));
    const float4 mf = __ldg((const float4 *)(meta + (xo >> 5)));
    const struct st_q8x_meta m = {mf.x, mf.y, mf.z, __float_as_int(mf.w)};
#else
    memcpy(&o.v, xq + xo, 16);
    const struct st_q8x_meta m = meta[xo >> 5];
#endif
    const bool hi = (xo & 16) != 0;
    o.d = m.d;
    o.s = hi ? m.s1 : m.s0;
    o.qs = hi ? (m.q01 >> 16) : (int)(int16_t)(m.q01 & 0xffff);
}

/* r + the unit's half k times x (integer dot products, scales in fp32) */
template <class Tr> static ST_QHD float st_q_dot_xi8(const st_q_unit &u, int k, const st_q_xi8 &x, float r) {
    int s = st_q_dp4a(u.qw[4 * k + 0], x.v.x, 0);
    s = st_q_dp4a(u.qw[4 * k + 1], x.v.y, s);
    s = st_q_dp4a(u.qw[4 * k + 2], x.v.z, s);
    s = st_q_dp4a(u.qw[4 * k + 3], x.v.w, s);
    if (Tr::OFF) s -= Tr::OFF * x.qs;
    r = fmaf(u.dw[k] * x.d, (float)s, r);
    if (Tr::HAS_MIN) r = fmaf(u.mw[k], x.s, r);
    return r;
}

/* sum over the unit of w * x with x from st_q8x: xq / meta at the block's
 * element 0 and first 32-element x block. */
template <class Tr>
static ST_QHD float st_q_dot_i8(const st_q_unit &u, const int8_t *xq, const struct st_q8x_meta *meta) {
    if (Tr::QK == 32) {
        /* a 32-element block: both halves share dw, mw and x's block (xo 0 and 16) */
#ifdef __CUDA_ARCH__
        const uint4 v0 = __ldg((const uint4 *)xq), v1 = __ldg((const uint4 *)(xq + 16));
        const float4 mf = __ldg((const float4 *)meta);
        const struct st_q8x_meta m = {mf.x, mf.y, mf.z, __float_as_int(mf.w)};
#else
        uint4 v0, v1;
        memcpy(&v0, xq, 16);
        memcpy(&v1, xq + 16, 16);
        const struct st_q8x_meta m = meta[0];
#endif
        int s = st_q_dp4a(u.qw[0], v0.x, 0);
        s = st_q_dp4a(u.qw[1], v0.y, s);
        s = st_q_dp4a(u.qw[2], v0.z, s);
        s = st_q_dp4a(u.qw[3], v0.w, s);
        s = st_q_dp4a(u.qw[4], v1.x, s);
        s = st_q_dp4a(u.qw[5], v1.y, s);
        s = st_q_dp4a(u.qw[6], v1.z, s);
        s = st_q_dp4a(u.qw[7], v1.w, s);
        if (Tr::OFF) s -= Tr::OFF * ((int)(int16_t)(m.q01 & 0xffff) + (m.q01 >> 16));
        float r = u.dw[0] * m.d * (float)s;
        if (Tr::HAS_MIN) r = fmaf(u.mw[0], m.s0 + m.s1, r);
        return r;
    }
    float r = 0.0f;
ST_Q_UNROLL
    for (int k = 0; k < 2; k++) {
        st_q_xi8 x;
        st_q_load_xi8(xq, meta, u.xo[k], x);
        r = st_q_dot_xi8<Tr>(u, k, x, r);
    }
    return r;
}

#endif /* STRATA_KERNELS_CUDA_QUANT_CUH */
