/* Element types: block tables, exact f16/bf16 conversions, dequantization
 * (block layouts from ggml-common.h / ggml-quants.c, formats.md §1.6). */
#include "model/model-impl.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    int64_t block_elems;
    size_t block_bytes;
    uint32_t ggml_code;
} dtype_table[ST_DTYPE_COUNT] = {
    [ST_DTYPE_F32]    = {"f32",    1,   4,   0},
    [ST_DTYPE_F16]    = {"f16",    1,   2,   1},
    [ST_DTYPE_BF16]   = {"bf16",   1,   2,   30},
    [ST_DTYPE_Q8_0]   = {"q8_0",   32,  34,  8},
    [ST_DTYPE_Q4_0]   = {"q4_0",   32,  18,  2},
    [ST_DTYPE_Q4_1]   = {"q4_1",   32,  20,  3},
    [ST_DTYPE_Q5_0]   = {"q5_0",   32,  22,  6},
    [ST_DTYPE_Q5_1]   = {"q5_1",   32,  24,  7},
    [ST_DTYPE_IQ4_NL] = {"iq4_nl", 32,  18,  20},
    [ST_DTYPE_Q4_K]   = {"q4_k",   256, 144, 12},
    [ST_DTYPE_Q5_K]   = {"q5_k",   256, 176, 13},
    [ST_DTYPE_Q6_K]   = {"q6_k",   256, 210, 14},
};

const char *st_dtype_name(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? dtype_table[t].name : "invalid";
}

int64_t st_dtype_block_elems(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? dtype_table[t].block_elems : 0;
}

size_t st_dtype_block_bytes(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? dtype_table[t].block_bytes : 0;
}

size_t st_dtype_row_bytes(st_dtype t, int64_t n) {
    if ((unsigned)t >= ST_DTYPE_COUNT || n < 0) return 0;
    return (size_t)(n / dtype_table[t].block_elems) * dtype_table[t].block_bytes;
}

bool st_dtype_supported(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT;   /* every listed type dequantizes (tests/model) */
}

/* ggml type codes that exist but strata cannot read, for a precise message. */
static const struct { uint32_t code; const char *name; } ggml_other[] = {
    {9, "Q8_1"}, {10, "Q2_K"}, {11, "Q3_K"}, {15, "Q8_K"}, {16, "IQ2_XXS"}, {17, "IQ2_XS"},
    {18, "IQ3_XXS"}, {19, "IQ1_S"}, {21, "IQ3_S"}, {22, "IQ2_S"}, {23, "IQ4_XS"}, {24, "I8"},
    {25, "I16"}, {26, "I32"}, {27, "I64"}, {28, "F64"}, {29, "IQ1_M"}, {34, "TQ1_0"},
    {35, "TQ2_0"}, {39, "MXFP4"}, {40, "NVFP4"}, {41, "Q1_0"}, {42, "Q2_0"},
};

/* ST_OK with *out set; ST_ERR_UNSUPPORTED with *known_name for a real ggml
 * type strata lacks; ST_ERR_FORMAT for an unknown code. No message is set. */
st_status st_dtype_from_ggml(uint32_t code, st_dtype *out, const char **known_name) {
    *known_name = NULL;
    for (int t = 0; t < ST_DTYPE_COUNT; t++) {
        if (dtype_table[t].ggml_code == code) { *out = (st_dtype)t; return ST_OK; }
    }
    for (size_t i = 0; i < ST_ARRAY_LEN(ggml_other); i++) {
        if (ggml_other[i].code == code) { *known_name = ggml_other[i].name; return ST_ERR_UNSUPPORTED; }
    }
    return ST_ERR_FORMAT;
}

/* ---- scalar conversions ------------------------------------------------ */

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ffu;
    uint32_t out;
    if (exp == 0x1f) {
        out = sign | 0x7f800000u | (man << 13);       /* inf / NaN, payload kept */
    } else if (exp != 0) {
        out = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        out = sign;
    } else {
        /* subnormal: normalise the mantissa */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400u));
        out = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    return bits_f32(out);
}

uint16_t st_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t exp = (x >> 23) & 0xff;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xff) {
        if (man == 0) return sign | 0x7c00u;
        return sign | 0x7e00u | (uint16_t)(man >> 13);  /* quiet NaN, top payload bits */
    }
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 0x1f) return sign | 0x7c00u;               /* overflow (before rounding) */
    if (e <= 0) {
        /* subnormal or zero in f16: shift the full mantissa, round to nearest even */
        if (e < -10) return sign;                       /* below half the smallest subnormal */
        uint32_t m = man | 0x800000u;
        int shift = 14 - e;                             /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;                      /* q may carry into the exponent: correct */
    }
    uint32_t q = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1))) q++; /* carry may reach inf: correct */
    return sign | (uint16_t)q;
}

float st_bf16_to_f32(uint16_t b) {
    return bits_f32((uint32_t)b << 16);
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- dequantization ------------------------------------------------------ */

static inline float rd_f16(const uint8_t *p) { return st_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

static void deq_q8_0(const uint8_t *b, float *y) {
    float d = rd_f16(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

static void deq_q4_0(const uint8_t *b, float *y) {
    float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0xf) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

static void deq_q4_1(const uint8_t *b, float *y) {
    float d = rd_f16(b), m = rd_f16(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(qs[j] & 0xf) * d + m;
        y[j + 16] = (float)(qs[j] >> 4) * d + m;
    }
}

static void deq_q5_0(const uint8_t *b, float *y) {
    float d = rd_f16(b);
    uint32_t h = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
    const uint8_t *qs = b + 6;
    for (int j = 0; j < 16; j++) {
        int x0 = (int)((qs[j] & 0xf) | (((h >> j) & 1) << 4)) - 16;
        int x1 = (int)((qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4)) - 16;
        y[j] = (float)x0 * d;
        y[j + 16] = (float)x1 * d;
    }
}

static void deq_q5_1(const uint8_t *b, float *y) {
    float d = rd_f16(b), m = rd_f16(b + 2);
    uint32_t h = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
    const uint8_t *qs = b + 8;
    for (int j = 0; j < 16; j++) {
        int x0 = (int)((qs[j] & 0xf) | (((h >> j) & 1) << 4));
        int x1 = (int)((qs[j] >> 4) | (((h >> (j + 16)) & 1) << 4));
        y[j] = (float)x0 * d + m;
        y[j + 16] = (float)x1 * d + m;
    }
}

static const int8_t iq4nl_table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void deq_iq4_nl(const uint8_t *b, float *y) {
    float d = rd_f16(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)iq4nl_table[qs[j] & 0xf];
        y[j + 16] = d * (float)iq4nl_table[qs[j] >> 4];
    }
}

static inline void scale_min_k4(int s, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (s < 4) {
        *sc = q[s] & 63;
        *m = q[s + 4] & 63;
    } else {
        *sc = (uint8_t)((q[s + 4] & 0xf) | ((q[s - 4] >> 6) << 4));
        *m = (uint8_t)((q[s + 4] >> 4) | ((q[s] >> 6) << 4));
    }
}

static void deq_q4_k(const uint8_t *b, float *y) {
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *scales = b + 4, *qs = b + 16;
    for (int c = 0; c < 4; c++) {
        uint8_t sc, m;
        scale_min_k4(2 * c, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(2 * c + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) {
            y[64 * c + l] = d1 * (float)(qs[32 * c + l] & 0xf) - m1;
            y[64 * c + 32 + l] = d2 * (float)(qs[32 * c + l] >> 4) - m2;
        }
    }
}

static void deq_q5_k(const uint8_t *b, float *y) {
    float d = rd_f16(b), dmin = rd_f16(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
    for (int c = 0; c < 4; c++) {
        uint8_t sc, m;
        scale_min_k4(2 * c, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(2 * c + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) {
            int q0 = (qs[32 * c + l] & 0xf) + 16 * ((qh[l] >> (2 * c)) & 1);
            int q1 = (qs[32 * c + l] >> 4) + 16 * ((qh[l] >> (2 * c + 1)) & 1);
            y[64 * c + l] = d1 * (float)q0 - m1;
            y[64 * c + 32 + l] = d2 * (float)q1 - m2;
        }
    }
}

static void deq_q6_k(const uint8_t *b, float *y) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = rd_f16(b + 208);
    for (int h = 0; h < 2; h++) {
        const uint8_t *L = ql + 64 * h, *H = qh + 32 * h;
        const int8_t *S = sc + 8 * h;
        float *Y = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((L[l] & 0xf) | (((H[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((L[l + 32] & 0xf) | (((H[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)) - 32;
            Y[l] = d * (float)S[is + 0] * (float)q1;
            Y[l + 32] = d * (float)S[is + 2] * (float)q2;
            Y[l + 64] = d * (float)S[is + 4] * (float)q3;
            Y[l + 96] = d * (float)S[is + 6] * (float)q4;
        }
    }
}

st_status st_dtype_to_f32(st_dtype t, const void *src, float *dst, int64_t n) {
    if ((unsigned)t >= ST_DTYPE_COUNT) {
        return st_error_set(ST_ERR_UNSUPPORTED, "dtype code %d is not a strata element type", (int)t);
    }
    int64_t be = dtype_table[t].block_elems;
    if (n < 0 || n % be) {
        st_error_set(ST_ERR_INTERNAL, "st_dtype_to_f32: %lld elements of %s is not a whole number of %lld-element blocks",
                     (long long)n, dtype_table[t].name, (long long)be);
        return st_error_hint("rows of block-quantized tensors must be a multiple of the block size");
    }
    const uint8_t *s = src;
    switch (t) {
    case ST_DTYPE_F32:
        memcpy(dst, src, (size_t)n * 4);
        return ST_OK;
    case ST_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) dst[i] = rd_f16(s + 2 * i);
        return ST_OK;
    case ST_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) dst[i] = st_bf16_to_f32((uint16_t)(s[2 * i] | (s[2 * i + 1] << 8)));
        return ST_OK;
    default: break;
    }
    void (*fn)(const uint8_t *, float *) = NULL;
    switch (t) {
    case ST_DTYPE_Q8_0: fn = deq_q8_0; break;
    case ST_DTYPE_Q4_0: fn = deq_q4_0; break;
    case ST_DTYPE_Q4_1: fn = deq_q4_1; break;
    case ST_DTYPE_Q5_0: fn = deq_q5_0; break;
    case ST_DTYPE_Q5_1: fn = deq_q5_1; break;
    case ST_DTYPE_IQ4_NL: fn = deq_iq4_nl; break;
    case ST_DTYPE_Q4_K: fn = deq_q4_k; break;
    case ST_DTYPE_Q5_K: fn = deq_q5_k; break;
    case ST_DTYPE_Q6_K: fn = deq_q6_k; break;
    default: return st_error_set(ST_ERR_INTERNAL, "no dequantizer for %s", dtype_table[t].name);
    }
    size_t bb = dtype_table[t].block_bytes;
    for (int64_t i = 0; i < n / be; i++) fn(s + (size_t)i * bb, dst + i * be);
    return ST_OK;
}

const char *st_arch_name(st_arch a) {
    switch (a) {
    case ST_ARCH_LLAMA: return "llama";
    case ST_ARCH_QWEN2: return "qwen2";
    case ST_ARCH_QWEN3: return "qwen3";
    }
    return "unknown";
}
