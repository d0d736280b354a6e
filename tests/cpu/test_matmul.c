/* The CPU matmul, every weight dtype, every SIMD level this machine has:
 *  1. each vector path equals the portable (scalar) reference bit for bit,
 *     for decode (1 token), small batches (register tiles) and prefill
 *     (blocked GEMM: several column blocks, row and token tails, more tokens
 *     than one token block), odd row counts, column tails (float types) and
 *     an odd number of 32-column groups (a half pair);
 *  2. a token alone, any token count, any row split gives the same bits;
 *  3. every path is within the error bound kernels_cpu.h documents of a
 *     double-precision sum over the weights as st_dtype_to_f32 dequantizes
 *     them (model/dtype.c: code written independently of the kernels);
 *  4. Inf/NaN activations give NaN, bad shapes and a missing scratch are errors. */
#include "check.h"
#include "rng.h"
#include "weights.h"
#include "kernels/cpu/kernels_cpu.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct problem {
    st_dtype dt;
    int64_t rows, cols, n_tok;
    uint8_t *w;
    float *wf;      /* (rows, cols) dequantized */
    float *bf;      /* (rows, cols) the min term b of each weight (0 for types without one) */
    float *x, *bias;
};

/* Clears the code bits of every block, so dequantizing gives b alone. */
static void zero_codes(st_dtype dt, uint8_t *w, size_t bytes) {
    const size_t bb = st_dtype_block_bytes(dt);
    for (size_t o = 0; o < bytes; o += bb) {
        uint8_t *b = w + o;
        switch (dt) {
        case ST_DTYPE_Q4_1: memset(b + 4, 0, 16); break;
        case ST_DTYPE_Q5_1: memset(b + 4, 0, 20); break;
        case ST_DTYPE_Q4_K: memset(b + 16, 0, 128); break;
        case ST_DTYPE_Q5_K: memset(b + 16, 0, 160); break;
        default: break;
        }
    }
}

static bool has_min(st_dtype dt) {
    return dt == ST_DTYPE_Q4_1 || dt == ST_DTYPE_Q5_1 || dt == ST_DTYPE_Q4_K || dt == ST_DTYPE_Q5_K;
}

static void problem_init(struct problem *p, st_dtype dt, int64_t rows, int64_t cols, int64_t n_tok) {
    p->dt = dt; p->rows = rows; p->cols = cols; p->n_tok = n_tok;
    size_t wb = st_dtype_row_bytes(dt, cols) * (size_t)rows;
    p->w = malloc(wb);
    p->wf = malloc(sizeof(float) * (size_t)(rows * cols));
    p->bf = calloc((size_t)(rows * cols), sizeof(float));
    p->x = malloc(sizeof(float) * (size_t)(n_tok * cols));
    p->bias = malloc(sizeof(float) * (size_t)rows);
    make_weights(dt, rows, cols, p->w);
    CHECK_OK(st_dtype_to_f32(dt, p->w, p->wf, rows * cols));
    if (has_min(dt)) {
        uint8_t *z = malloc(wb);
        memcpy(z, p->w, wb);
        zero_codes(dt, z, wb);
        CHECK_OK(st_dtype_to_f32(dt, z, p->bf, rows * cols));
        free(z);
    }
    /* activations of mixed magnitude: most ~1, a few outliers, some exact zeros */
    for (int64_t i = 0; i < n_tok * cols; i++) {
        float v = rng_f();
        uint64_t r = rng_u64() % 64;
        p->x[i] = r == 0 ? 8.0f * v : r == 1 ? 0.0f : v;
    }
    for (int64_t i = 0; i < rows; i++) p->bias[i] = rng_f();
}

static void problem_free(struct problem *p) {
    free(p->w); free(p->wf); free(p->bf); free(p->x); free(p->bias);
}

static bool is_float(st_dtype dt) { return dt == ST_DTYPE_F32 || dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16; }

/* Worst |y - exact| / bound over all outputs (must be <= 1). */
static double bound_ratio(const struct problem *p, const float *y, bool with_bias, double *worst_rel_out) {
    double worst = 0, worst_rel = 0;
    for (int64_t t = 0; t < p->n_tok; t++)
        for (int64_t r = 0; r < p->rows; r++) {
            const float *w = p->wf + r * p->cols, *b = p->bf + r * p->cols, *x = p->x + t * p->cols;
            const double bias = with_bias ? p->bias[r] : 0.0;
            double ref = bias, mag = 0, qerr = 0;
            for (int64_t c = 0; c < p->cols; c++) {
                ref += (double)w[c] * x[c];
                mag += (fabs((double)w[c] - b[c]) + fabs((double)b[c])) * fabs((double)x[c]);
            }
            if (!is_float(p->dt))
                for (int64_t g = 0; g < p->cols / 32; g++) {
                    double amax = 0, sw = 0;
                    for (int j = 0; j < 32; j++) {
                        amax = fmax(amax, fabs((double)x[32 * g + j]));
                        sw += fabs((double)w[32 * g + j]);
                    }
                    qerr += amax / 254.0 * sw;
                }
            const double acc = is_float(p->dt) ? (ST_MIN(p->cols, 512) + p->cols / 512 + 2) * 0x1p-24
                                               : (p->cols / 16.0 + 8) * 0x1p-23;
            const double bound = qerr * (1 + 0x1p-10) + acc * mag + 0x1p-23 * (fabs(bias) + fabs(ref)) + 1e-30;
            const double err = fabs(y[t * p->rows + r] - ref);
            worst = fmax(worst, err / bound);
            worst_rel = fmax(worst_rel, err / (mag + fabs(bias) + 1e-30));
        }
    if (worst_rel_out) *worst_rel_out = worst_rel;
    return worst;
}

static void check_dtype(st_dtype dt, int64_t rows, int64_t cols, int64_t n_tok) {
    struct problem p;
    problem_init(&p, dt, rows, cols, n_tok);
    const size_t ny = (size_t)(n_tok * rows);
    float *ref = malloc(sizeof(float) * ny), *y = malloc(sizeof(float) * ny), *y1 = malloc(sizeof(float) * (size_t)rows);
    char what[160];
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        const float *bias = with_bias ? p.bias : NULL;
        CHECK_OK(st_cpu_isa_force(ST_CPU_ISA_PORTABLE));
        CHECK_OK(st_cpu_matmul(p.w, dt, rows, cols, bias, p.x, n_tok, ref));
        for (int isa = ST_CPU_ISA_PORTABLE; isa <= (int)st_cpu_isa_best(); isa++) {
            CHECK_OK(st_cpu_isa_force((st_cpu_isa)isa));
            snprintf(what, sizeof what, "%s %lldx%lld, %lld tokens%s, %s", st_dtype_name(dt), (long long)rows,
                     (long long)cols, (long long)n_tok, bias ? ", bias" : "", st_cpu_kernels_simd());
            memset(y, 0xff, sizeof(float) * ny);
            CHECK_OK(st_cpu_matmul(p.w, dt, rows, cols, bias, p.x, n_tok, y));
            CHECK_MSG(!memcmp(y, ref, sizeof(float) * ny), "%s: differs from the portable path", what);
            double rel = 0, ratio = bound_ratio(&p, y, with_bias, &rel);
            CHECK_MSG(ratio <= 1.0, "%s: error %.3g x the documented bound", what, ratio);
            if (with_bias && isa == (int)st_cpu_isa_best())
                printf("  %-58s error/bound %.3f, error/sum|w*x| %.2e\n", what, ratio, rel);
            /* each token alone (a decode step) */
            bool same = true;
            for (int64_t t = 0; t < n_tok; t++) {
                CHECK_OK(st_cpu_matmul(p.w, dt, rows, cols, bias, p.x + t * cols, 1, y1));
                if (memcmp(y1, ref + t * rows, sizeof(float) * (size_t)rows)) same = false;
            }
            CHECK_MSG(same, "%s: a token alone differs from the same token in the batch", what);
            /* an odd row split, through the prepared-scratch interface */
            size_t sb = st_cpu_matmul_scratch_bytes(dt, cols, n_tok);
            void *scratch = NULL;
            if (sb) {
                CHECK(posix_memalign(&scratch, 64, sb) == 0);
                st_cpu_matmul_prepare_part(dt, p.x, cols, n_tok, scratch, 0, n_tok / 2);
                st_cpu_matmul_prepare_part(dt, p.x, cols, n_tok, scratch, n_tok / 2, n_tok);
            }
            memset(y, 0xff, sizeof(float) * ny);
            const int64_t cut1 = rows / 3, cut2 = rows / 3 * 2 + 1;
            CHECK_OK(st_cpu_matmul_part(p.w, dt, rows, cols, bias, p.x, scratch, NULL, n_tok, y, 0, cut1));
            CHECK_OK(st_cpu_matmul_part(p.w, dt, rows, cols, bias, p.x, scratch, NULL, n_tok, y, cut1, cut2));
            CHECK_OK(st_cpu_matmul_part(p.w, dt, rows, cols, bias, p.x, scratch, NULL, n_tok, y, cut2, rows));
            CHECK_MSG(!memcmp(y, ref, sizeof(float) * ny), "%s: a row split changes the result", what);
            /* the same from a packed copy (packed in two parts), on 16-row and odd boundaries */
            size_t pb = st_cpu_matmul_packed_bytes(dt, rows, cols);
            CHECK(pb > 0);
            if (pb) {
                void *packed = NULL;
                CHECK(posix_memalign(&packed, 64, pb) == 0);
                const int64_t nb = (rows + 15) / 16;
                st_cpu_matmul_pack_part(p.w, dt, rows, cols, packed, 0, nb / 2);
                st_cpu_matmul_pack_part(p.w, dt, rows, cols, packed, nb / 2, nb);
                memset(y, 0xff, sizeof(float) * ny);
                const int64_t c16 = ST_MIN(16, rows);
                CHECK_OK(st_cpu_matmul_part(p.w, dt, rows, cols, bias, p.x, scratch, packed, n_tok, y, 0, c16));
                CHECK_OK(st_cpu_matmul_part(p.w, dt, rows, cols, bias, p.x, scratch, packed, n_tok, y, c16, cut2));
                CHECK_OK(st_cpu_matmul_part(p.w, dt, rows, cols, bias, p.x, scratch, packed, n_tok, y, cut2, rows));
                CHECK_MSG(!memcmp(y, ref, sizeof(float) * ny), "%s: the packed copy changes the result", what);
                free(packed);
            }
            free(scratch);
        }
    }
    st_cpu_kernels_force_portable(false);
    free(ref); free(y); free(y1);
    problem_free(&p);
}

/* Every token count 1..n on one shape: the tile / GEMM switch and every tail. */
static void check_token_counts(st_dtype dt, int64_t rows, int64_t cols, int64_t n) {
    struct problem p;
    problem_init(&p, dt, rows, cols, n);
    float *all = malloc(sizeof(float) * (size_t)(n * rows)), *y = malloc(sizeof(float) * (size_t)(n * rows));
    CHECK_OK(st_cpu_matmul(p.w, dt, rows, cols, p.bias, p.x, n, all));
    bool same = true;
    for (int64_t k = 1; k < n; k++) {
        for (int64_t t0 = 0; t0 < n; t0 += k) {
            int64_t m = ST_MIN(k, n - t0);
            CHECK_OK(st_cpu_matmul(p.w, dt, rows, cols, p.bias, p.x + t0 * cols, m, y));
            if (memcmp(y, all + t0 * rows, sizeof(float) * (size_t)(m * rows))) same = false;
        }
    }
    CHECK_MSG(same, "%s %lldx%lld (%s): chunks of 1..%lld tokens differ from one call of %lld", st_dtype_name(dt),
              (long long)rows, (long long)cols, st_cpu_kernels_simd(), (long long)n - 1, (long long)n);
    free(all); free(y);
    problem_free(&p);
}

static void check_nonfinite(void) {
    /* an Inf in one group of x: that token's outputs are NaN for quantized
     * weights (the group's scale is NaN), untouched tokens stay finite */
    const int64_t rows = 5, cols = 64, n = 2;
    for (int isa = ST_CPU_ISA_PORTABLE; isa <= (int)st_cpu_isa_best(); isa++) {
        CHECK_OK(st_cpu_isa_force((st_cpu_isa)isa));
        for (int dt = ST_DTYPE_Q8_0; dt < ST_DTYPE_COUNT; dt++) {
            int64_t c = st_dtype_block_elems((st_dtype)dt) == 256 ? 256 : cols;
            for (int k = 0; k < 2; k++) {
                struct problem p;
                problem_init(&p, (st_dtype)dt, rows, c, n);
                p.x[c + 37] = k ? NAN : -INFINITY;   /* token 1, second group */
                float y[10];
                CHECK_OK(st_cpu_matmul(p.w, (st_dtype)dt, rows, c, NULL, p.x, n, y));
                bool ok = true;
                for (int r = 0; r < rows; r++) ok = ok && isfinite(y[r]) && isnan(y[rows + r]);
                CHECK_MSG(ok, "%s (%s): %s in x must give NaN for its token only", st_dtype_name((st_dtype)dt),
                          st_cpu_kernels_simd(), k ? "NaN" : "-Inf");
                problem_free(&p);
            }
        }
    }
    st_cpu_kernels_force_portable(false);
}

static void check_errors(void) {
    uint8_t w[34 * 2] = {0};
    float x[64] = {0}, y[2];
    CHECK_ERR(st_cpu_matmul(w, ST_DTYPE_Q8_0, 2, 48, NULL, x, 1, y), ST_ERR_UNSUPPORTED,
              "not a whole number of 32-element blocks");
    CHECK_ERR(st_cpu_matmul_part(w, ST_DTYPE_Q8_0, 2, 32, NULL, x, NULL, NULL, 1, y, 0, 2), ST_ERR_USAGE, "scratch is NULL");
    CHECK_ERR(st_cpu_matmul(w, ST_DTYPE_COUNT, 2, 32, NULL, x, 1, y), ST_ERR_UNSUPPORTED, "not supported");
    CHECK(st_cpu_matmul_scratch_bytes(ST_DTYPE_F16, 896, 7) == 0);
    CHECK(st_cpu_matmul_scratch_bytes(ST_DTYPE_Q4_K, 896, 7) == 7 * (896 + 256 + 3 * 128));
    CHECK(st_cpu_matmul_scratch_bytes(ST_DTYPE_Q8_0, 32, 1) == 64 + 64 + 3 * 64);
    /* packed sizes: the stored size, K types + 4 bytes per row and superblock for the unpacked 6-bit scales */
    CHECK(st_cpu_matmul_packed_bytes(ST_DTYPE_Q5_0, 32, 896) == st_dtype_row_bytes(ST_DTYPE_Q5_0, 896) * 32);
    CHECK(st_cpu_matmul_packed_bytes(ST_DTYPE_Q4_K, 17, 512) == 2 * (16 * 2 * 144 + 2 * 64));
    CHECK(st_cpu_matmul_packed_bytes(ST_DTYPE_Q6_K, 16, 256) == 16 * 210);
    CHECK(st_cpu_matmul_packed_bytes(ST_DTYPE_F16, 17, 256) == 2 * 16 * 256 * 2);
    /* forcing a level this CPU lacks is refused; the best is always allowed */
    CHECK_OK(st_cpu_isa_force(st_cpu_isa_best()));
    if (st_cpu_isa_best() < ST_CPU_ISA_AVX512)
        CHECK_ERR(st_cpu_isa_force(ST_CPU_ISA_AVX512), ST_ERR_UNSUPPORTED, "cannot run the avx512 path");
    CHECK_ERR(st_cpu_isa_force(ST_CPU_ISA_COUNT), ST_ERR_UNSUPPORTED, NULL);
    st_cpu_kernels_force_portable(false);
}

int main(void) {
    rng_seed(3);
    printf("best matmul path here: %s\n", st_cpu_isa_name(st_cpu_isa_best()));
    /* float types: column tails, a column count below one chunk, more than one
     * column block (512) with a tail; decode, a tile batch, GEMM batches with
     * row/token tails and two token blocks (> 128) */
    const st_dtype fl[3] = {ST_DTYPE_F32, ST_DTYPE_F16, ST_DTYPE_BF16};
    for (int k = 0; k < 3; k++) {
        check_dtype(fl[k], 37, 200, 9);
        check_dtype(fl[k], 5, 7, 3);
        check_dtype(fl[k], 19, 1000, 1);
        check_dtype(fl[k], 35, 600, 131);
        check_dtype(fl[k], 21, 1100, 300);   /* two token blocks of the GEMM (256 + 44), three panels */
        check_dtype(fl[k], 83, 520, 40);     /* GEMM over a whole quad and a partial one (6 blocks, the last 3 rows) */
        check_token_counts(fl[k], 13, 264, 12);
    }
    /* quantized types: one group, an odd group count (a half pair), several
     * column blocks (8 pairs each) with a half pair at the end, many tokens */
    for (int dt = ST_DTYPE_Q8_0; dt < ST_DTYPE_COUNT; dt++) {
        if (st_dtype_block_elems((st_dtype)dt) == 32) {
            check_dtype((st_dtype)dt, 13, 32, 5);
            check_dtype((st_dtype)dt, 21, 32 * 13, 9);
            check_dtype((st_dtype)dt, 35, 32 * 35, 131);
            check_dtype((st_dtype)dt, 9, 32 * 3, 1);
            check_dtype((st_dtype)dt, 5, 32 * 251, 2);   /* several on-the-fly segments, an odd last one */
            check_token_counts((st_dtype)dt, 11, 32 * 5, 12);
        } else {
            check_dtype((st_dtype)dt, 13, 256, 5);
            check_dtype((st_dtype)dt, 21, 256 * 3, 9);
            check_dtype((st_dtype)dt, 35, 256 * 5, 131);
            check_dtype((st_dtype)dt, 9, 256, 1);
            check_token_counts((st_dtype)dt, 11, 256 * 2, 12);
        }
    }
    check_nonfinite();
    check_errors();
    return st_test_finish("cpu_matmul");
}
