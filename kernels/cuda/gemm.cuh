/* kernels/cuda/gemm.cuh — prefill matrix products y (n_tok, rows; row stride
 * ldy) = x (n_tok, cols) · W^T (+ bias), W (rows, cols) in its stored dtype,
 * fp32 accumulation. Nothing here allocates: every entry works in the
 * caller's scratch (struct st_gemm_ws) and cuts the product into pieces that
 * fit it, so the backend sizes its scratch once, before the first token.
 *
 * Three paths:
 *  - st_gemm_cublas_cuda: F32/F16/BF16 weights, cublasGemmEx with
 *    CUBLAS_COMPUTE_32F (never TF32). F32 weights multiply fp32 x directly;
 *    F16/BF16 weights multiply x converted to the weights' dtype in the
 *    scratch, a block of tokens at a time — tensor cores on cc >= 7.0 (F16) /
 *    8.0 (BF16).
 *  - st_gemm_quant_cuda: quantized weights (Q8_0 ... Q6_K), dequantized into
 *    the scratch in `compute` (BF16 or F16: tensor cores; F32: the Maxwell
 *    path, exact fp32 values) and multiplied by cuBLAS. The whole matrix in
 *    one tile when the scratch holds it (a stage sizes its scratch for its
 *    largest quantized matrix: st_gemm_ws_bytes), so one GEMM covers every
 *    row — small tiles leave most SMs idle (a 1,024-row tile of 512 tokens is
 *    32 output tiles of 128 x 128 for 132 SMs); else tiles of up to
 *    ST_GEMM_TILE_COLS columns and as many rows as fit, column tiles
 *    accumulating in y (beta 1, fp32). x is converted to `compute` once per
 *    column tile. Dequantized values are bit-identical to model/dtype.c
 *    before rounding to `compute` (kernels/cuda/quant.cuh).
 *  - st_gemm_simt_cuda: a tiled fp32 kernel that widens F32/F16/BF16 weights
 *    in shared memory and multiplies in fp32: no tensor cores, no fp16/bf16
 *    arithmetic, any architecture from sm_52 (the Maxwell path). */
#ifndef STRATA_KERNELS_CUDA_GEMM_CUH
#define STRATA_KERNELS_CUDA_GEMM_CUH
#include "kernels/cuda/common.cuh"

#define ST_GEMM_TILE_COLS 8192   /* columns of a dequantized weight tile (a multiple of 256) */

/* x converted to 16 bits, whole (every token and column), at the start of a
 * scratch: what a GEMM left there, so that the next GEMM of the same x skips
 * its conversion (q, k and v; gate and up). x NULL: nothing. */
struct st_gemm_xconv {
    const float *x;
    int64_t n_tok, cols;
    st_dtype dtype;
};

/* Scratch a GEMM may use: 256-byte aligned device memory, and what it holds
 * (in and out: each entry updates it; the caller clears it when x's memory
 * or the scratch may have changed). */
struct st_gemm_ws {
    void *ptr;
    size_t bytes;
    struct st_gemm_xconv conv;
};

/* The scratch with which the entries run n_tok tokens in one pass: x
 * converted to 16 bits for max(ST_GEMM_TILE_COLS, widen_cols) columns and a
 * weight tile of max(ST_GEMM_W_TILE_BYTES, widen_elems x elem_bytes). With a
 * stage's largest quantized matrix as widen_elems (and the most columns of
 * its quantized matrices as widen_cols), each of its GEMMs dequantizes a
 * matrix whole; 0, 0: tiles of ST_GEMM_W_TILE_BYTES. Less scratch still
 * works, in more pieces. */
#define ST_GEMM_W_TILE_BYTES ((size_t)16 << 20)
size_t st_gemm_ws_bytes(int64_t n_tok, int64_t widen_elems, int64_t widen_cols, size_t elem_bytes);

/* acc: y += x W^T (+ bias) instead of y = ...: the residual add of an output
 * projection in its GEMM (cuBLAS beta 1; the SIMT kernel's epilogue). */
st_status st_gemm_cublas_cuda(cublasHandle_t h, const void *w, st_dtype dtype, int64_t rows, int64_t cols,
                              const float *bias, const float *x, int64_t n_tok, float *y, int64_t ldy, bool acc,
                              struct st_gemm_ws *ws, cudaStream_t stream);
st_status st_gemm_quant_cuda(cublasHandle_t h, const void *w, st_dtype dtype, int64_t rows, int64_t cols,
                             const float *bias, const float *x, int64_t n_tok, float *y, int64_t ldy, bool acc,
                             st_dtype compute, struct st_gemm_ws *ws, cudaStream_t stream);
st_status st_gemm_simt_cuda(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                            const float *x, int64_t n_tok, float *y, int64_t ldy, bool acc, cudaStream_t stream);

/* dst (rows, cols; row stride ld_dst elements) = W's rows r0 .. r0 + rows - 1,
 * columns c0 .. c0 + cols - 1 dequantized (c0 and cols multiples of the block
 * size) to F32 (exact), F16 or BF16 (round to nearest even). */
st_status st_dequant_cuda(const void *w, st_dtype dtype, int64_t w_cols, int64_t r0, int64_t rows, int64_t c0,
                          int64_t cols, st_dtype dst_dtype, void *dst, int64_t ld_dst, cudaStream_t stream);
/* dst[i] = round(src[i]) to F16 or BF16 (nearest even), n elements. */
st_status st_convert_f32_cuda(const float *src, st_dtype dst_dtype, void *dst, int64_t n, cudaStream_t stream);
/* out[t][r] = silu(out[t][r] + bg[r]) * (up[t][r] + bu[r]) for r < rows, t <
 * n_tok; out and up have row strides ld_out and ld_up; biases may be NULL. */
st_status st_swiglu_rows_cuda(float *out, int64_t ld_out, const float *up, int64_t ld_up, const float *bg, const float *bu,
                              int64_t n_tok, int64_t rows, cudaStream_t stream);
#endif
