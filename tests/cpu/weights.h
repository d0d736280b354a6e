/* Random weights of any dtype for the CPU tests: float types uniform in
 * [-1, 1), quantized types random code bytes with sane small f16 scales
 * (d in [0.01, 0.06], mins in [-0.01, 0.01]; the K types' 6-bit scales and
 * mins are random bytes too). */
#ifndef STRATA_TEST_WEIGHTS_H
#define STRATA_TEST_WEIGHTS_H
#include "rng.h"
#include "model/model.h"

#include <math.h>
#include <string.h>

static void make_weights(st_dtype dt, int64_t rows, int64_t cols, uint8_t *buf) {
    size_t rb = st_dtype_row_bytes(dt, cols);
    if (dt == ST_DTYPE_F32) {
        float *f = (float *)buf;
        for (int64_t i = 0; i < rows * cols; i++) f[i] = rng_f();
        return;
    }
    if (dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16) {
        uint16_t *h = (uint16_t *)buf;
        for (int64_t i = 0; i < rows * cols; i++) h[i] = dt == ST_DTYPE_F16 ? st_f32_to_f16(rng_f()) : st_f32_to_bf16(rng_f());
        return;
    }
    for (size_t i = 0; i < rb * (size_t)rows; i++) buf[i] = (uint8_t)rng_u64();
    size_t bb = st_dtype_block_bytes(dt);
    size_t nblk = rb * (size_t)rows / bb;
    for (size_t b = 0; b < nblk; b++) {
        uint8_t *blk = buf + b * bb;
        uint16_t d = st_f32_to_f16(0.01f + 0.05f * fabsf(rng_f()));
        uint16_t m = st_f32_to_f16(0.01f * rng_f());
        switch (dt) {
        case ST_DTYPE_Q6_K: memcpy(blk + 208, &d, 2); break;
        case ST_DTYPE_Q4_1: case ST_DTYPE_Q5_1: case ST_DTYPE_Q4_K: case ST_DTYPE_Q5_K:
            memcpy(blk, &d, 2); memcpy(blk + 2, &m, 2); break;
        default: memcpy(blk, &d, 2); break;
        }
    }
}
#endif
