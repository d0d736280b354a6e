/* matmul: y[t][r] = W[r] . x[t] (+ bias[r]), W in any stored dtype, fp32 accumulation.
 *
 * Every (row, token) dot product accumulates in 16 fp32 lanes (column c goes
 * to lane c % 16), then folds them in one fixed tree, then adds the columns
 * past the last multiple of 16 in order, then the bias. The lanes live in
 * registers while a tile of R rows x T tokens streams its weight rows once;
 * which R and T a tile uses changes nothing in any single lane's order, so the
 * result does not depend on n_tok, the token blocking or the thread split. */
#include "kernels/cpu/kernels_cpu.h"

#include <string.h>

#define LANES 16
#define SPAN 256          /* columns dequantized at a time for the generic quant path */
#define TBLOCK 4          /* tokens per register tile */
#define TSUPER 64         /* tokens per pass of the generic quant path */

static bool force_portable;

void st_cpu_kernels_force_portable(bool on) { force_portable = on; }

static bool have_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    return have && !force_portable;
#else
    return false;
#endif
}

const char *st_cpu_kernels_simd(void) { return have_avx2() ? "avx2+fma+f16c" : "portable"; }

/* Folds 16 lanes in the fixed order shared by both paths. */
static inline float fold_lanes(const float *l) {
    float v[8];
    for (int i = 0; i < 8; i++) v[i] = l[i] + l[i + 8];
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

/* Columns [cols16, cols) of a float-type row, in order, after the lanes. */
static float tail_dot(const void *row, st_dtype dt, int64_t c0, int64_t cols, const float *x, float s) {
    for (int64_t c = c0; c < cols; c++) {
        float w;
        if (dt == ST_DTYPE_F32) w = ((const float *)row)[c];
        else if (dt == ST_DTYPE_F16) w = st_f16_to_f32(((const uint16_t *)row)[c]);
        else w = st_bf16_to_f32(((const uint16_t *)row)[c]);
        s += w * x[c];
    }
    return s;
}

static void finish_row(const void *row, st_dtype dt, int64_t cols, int64_t cols16, const float *lanes,
                       const float *x, float bias, float *y) {
    float s = fold_lanes(lanes);
    if (cols16 < cols) s = tail_dot(row, dt, cols16, cols, x, s);
    *y = s + bias;
}

/* ---- portable path --------------------------------------------------------- */

static st_status matmul_portable(const uint8_t *w, st_dtype dt, size_t row_bytes, int64_t cols,
                                 const float *bias, const float *x, int64_t n_tok, float *y,
                                 int64_t rows, int64_t r0, int64_t r1) {
    float buf[SPAN];
    float lanes[TSUPER][LANES];
    const bool is_float = dt == ST_DTYPE_F32 || dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16;
    const int64_t cols16 = is_float ? cols & ~(int64_t)(LANES - 1) : cols;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * row_bytes;
        for (int64_t t0 = 0; t0 < n_tok; t0 += TSUPER) {
            int64_t nt = ST_MIN(TSUPER, n_tok - t0);
            memset(lanes, 0, sizeof lanes);
            for (int64_t c0 = 0; c0 < cols16; c0 += SPAN) {
                int64_t n = ST_MIN(SPAN, cols16 - c0);
                size_t off = st_dtype_row_bytes(dt, c0);
                if (st_dtype_to_f32(dt, row + off, buf, n) != ST_OK) return st_error_prefix("matmul");
                for (int64_t t = 0; t < nt; t++) {
                    const float *xt = x + (t0 + t) * cols + c0;
                    for (int64_t c = 0; c < n; c += LANES)
                        for (int l = 0; l < LANES; l++) lanes[t][l] += buf[c + l] * xt[c + l];
                }
            }
            for (int64_t t = 0; t < nt; t++)
                finish_row(row, dt, cols, cols16, lanes[t], x + (t0 + t) * cols, bias ? bias[r] : 0.0f,
                           y + (t0 + t) * rows + r);
        }
    }
    return ST_OK;
}

/* ---- AVX2 + FMA + F16C path ------------------------------------------------ */
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INL static inline __attribute__((always_inline)) TGT

/* Loads the 16 weights of chunk c (columns 16c .. 16c+15) of a row as two vectors. */
INL void load_w(st_dtype dt, const uint8_t *row, int64_t c, __m256 *w0, __m256 *w1) {
    if (dt == ST_DTYPE_F32) {
        const float *p = (const float *)row + c * LANES;
        *w0 = _mm256_loadu_ps(p);
        *w1 = _mm256_loadu_ps(p + 8);
    } else if (dt == ST_DTYPE_F16) {
        const __m128i *p = (const __m128i *)(row + (size_t)c * 32);
        *w0 = _mm256_cvtph_ps(_mm_loadu_si128(p));
        *w1 = _mm256_cvtph_ps(_mm_loadu_si128(p + 1));
    } else if (dt == ST_DTYPE_BF16) {
        const __m128i *p = (const __m128i *)(row + (size_t)c * 32);
        *w0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p)), 16));
        *w1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(p + 1)), 16));
    } else { /* Q8_0: 34-byte blocks of 32, f16 scale first; y = q * d as in the dequantizer */
        const uint8_t *b = row + (size_t)(c >> 1) * 34;
        uint16_t dh;
        memcpy(&dh, b, 2);
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(dh));
        const uint8_t *q = b + 2 + (c & 1) * 16;
        __m128i q16 = _mm_loadu_si128((const __m128i *)q);
        *w0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q16)), d);
        *w1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q16, 8))), d);
    }
}

/* R rows x T tokens over chunks [0, n16); lanes (R, T, 16) are loaded and stored
 * around the loop so spans can continue a row. */
INL void tile(st_dtype dt, const uint8_t *row, size_t row_bytes, int R, int64_t n16, const float *x,
              int64_t ldx, int T, float *lanes) {
    __m256 a[4][TBLOCK][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            a[r][t][0] = _mm256_loadu_ps(lanes + (r * T + t) * LANES);
            a[r][t][1] = _mm256_loadu_ps(lanes + (r * T + t) * LANES + 8);
        }
    /* bytes of one 16-column chunk, for prefetching the rows after this tile */
    const size_t cb = dt == ST_DTYPE_F32 ? 64 : dt == ST_DTYPE_Q8_0 ? 17 : 32;
    for (int64_t c = 0; c < n16; c++) {
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m256 w0, w1;
            if (row_bytes) _mm_prefetch((const char *)row + (size_t)(r + R) * row_bytes + (size_t)c * cb, _MM_HINT_T0);
            load_w(dt, row + (size_t)r * row_bytes, c, &w0, &w1);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const float *xt = x + t * ldx + c * LANES;
                a[r][t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xt), a[r][t][0]);
                a[r][t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xt + 8), a[r][t][1]);
            }
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            _mm256_storeu_ps(lanes + (r * T + t) * LANES, a[r][t][0]);
            _mm256_storeu_ps(lanes + (r * T + t) * LANES + 8, a[r][t][1]);
        }
}

#define TILE_FOR(DT) \
    static TGT void tile_##DT(const uint8_t *row, size_t rb, int R, int64_t n16, const float *x, int64_t ldx, \
                              int T, float *lanes) { \
        if (R == 4 && T == 1) tile(DT, row, rb, 4, n16, x, ldx, 1, lanes); \
        else if (R == 2 && T == 1) tile(DT, row, rb, 2, n16, x, ldx, 1, lanes); \
        else if (T == 4) tile(DT, row, rb, 1, n16, x, ldx, 4, lanes); \
        else if (T == 3) tile(DT, row, rb, 1, n16, x, ldx, 3, lanes); \
        else if (T == 2) tile(DT, row, rb, 1, n16, x, ldx, 2, lanes); \
        else tile(DT, row, rb, 1, n16, x, ldx, 1, lanes); \
    }
TILE_FOR(ST_DTYPE_F32)
TILE_FOR(ST_DTYPE_F16)
TILE_FOR(ST_DTYPE_BF16)
TILE_FOR(ST_DTYPE_Q8_0)

typedef void (*tile_fn)(const uint8_t *, size_t, int, int64_t, const float *, int64_t, int, float *);

static TGT st_status matmul_avx2(const uint8_t *w, st_dtype dt, size_t row_bytes, int64_t cols,
                                 const float *bias, const float *x, int64_t n_tok, float *y,
                                 int64_t rows, int64_t r0, int64_t r1) {
    tile_fn fn = NULL;
    switch (dt) {
    case ST_DTYPE_F32: fn = tile_ST_DTYPE_F32; break;
    case ST_DTYPE_F16: fn = tile_ST_DTYPE_F16; break;
    case ST_DTYPE_BF16: fn = tile_ST_DTYPE_BF16; break;
    case ST_DTYPE_Q8_0: fn = tile_ST_DTYPE_Q8_0; break;
    default: break;
    }
    const bool is_float = dt == ST_DTYPE_F32 || dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16;
    const int64_t cols16 = is_float ? cols & ~(int64_t)(LANES - 1) : cols;
    float lanes[TSUPER][LANES];

    if (fn) {
        int64_t r = r0;
        if (n_tok == 1) {      /* decode: four rows at a time: eight FMA chains, four memory streams */
            for (; r + 4 <= r1; r += 4) {
                memset(lanes, 0, 4 * LANES * sizeof(float));
                fn(w + (size_t)r * row_bytes, row_bytes, 4, cols16 / LANES, x, cols, 1, &lanes[0][0]);
                for (int k = 0; k < 4; k++)
                    finish_row(w + (size_t)(r + k) * row_bytes, dt, cols, cols16, lanes[k], x,
                               bias ? bias[r + k] : 0.0f, y + r + k);
            }
        }
        for (; r < r1; r++) {
            const uint8_t *row = w + (size_t)r * row_bytes;
            for (int64_t t0 = 0; t0 < n_tok; t0 += TBLOCK) {
                int T = (int)ST_MIN(TBLOCK, n_tok - t0);
                memset(lanes, 0, (size_t)T * LANES * sizeof(float));
                fn(row, row_bytes, 1, cols16 / LANES, x + t0 * cols, cols, T, &lanes[0][0]);
                for (int t = 0; t < T; t++)
                    finish_row(row, dt, cols, cols16, lanes[t], x + (t0 + t) * cols, bias ? bias[r] : 0.0f,
                               y + (t0 + t) * rows + r);
            }
        }
        return ST_OK;
    }

    /* other quant types: dequantize a span of the row, then the f32 tile on it */
    float buf[SPAN];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * row_bytes;
        for (int64_t s0 = 0; s0 < n_tok; s0 += TSUPER) {
            int64_t ns = ST_MIN(TSUPER, n_tok - s0);
            memset(lanes, 0, (size_t)ns * LANES * sizeof(float));
            for (int64_t c0 = 0; c0 < cols; c0 += SPAN) {
                int64_t n = ST_MIN(SPAN, cols - c0);
                if (st_dtype_to_f32(dt, row + st_dtype_row_bytes(dt, c0), buf, n) != ST_OK)
                    return st_error_prefix("matmul");
                for (int64_t t0 = 0; t0 < ns; t0 += TBLOCK) {
                    int T = (int)ST_MIN(TBLOCK, ns - t0);
                    tile_ST_DTYPE_F32((const uint8_t *)buf, 0, 1, n / LANES, x + (s0 + t0) * cols + c0, cols, T,
                                      &lanes[t0][0]);
                }
            }
            for (int64_t t = 0; t < ns; t++)
                finish_row(row, dt, cols, cols, lanes[t], NULL, bias ? bias[r] : 0.0f, y + (s0 + t) * rows + r);
        }
    }
    return ST_OK;
}
#endif

/* ---- entry points ------------------------------------------------------------ */

st_status st_cpu_matmul_part(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                             const float *x, int64_t n_tok, float *y, int64_t r0, int64_t r1) {
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
    size_t row_bytes = st_dtype_row_bytes(dtype, cols);
#if defined(__x86_64__) || defined(__i386__)
    if (have_avx2())
        return matmul_avx2(w, dtype, row_bytes, cols, bias, x, n_tok, y, rows, r0, r1);
#endif
    return matmul_portable(w, dtype, row_bytes, cols, bias, x, n_tok, y, rows, r0, r1);
}

st_status st_cpu_matmul(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                        const float *x, int64_t n_tok, float *y) {
    return st_cpu_matmul_part(w, dtype, rows, cols, bias, x, n_tok, y, 0, rows);
}
