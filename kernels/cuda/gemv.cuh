/* kernels/cuda/gemv.cuh — decode matrix-vector products for up to
 * ST_GEMV_MAX_TOK tokens: y[t][r] = sum_c W[r][c] * x[t][c] (+ bias[r]) with W
 * (rows, cols) in F32, F16 or BF16, x and y fp32, fp32 accumulation. Weights
 * are widened in registers (no narrowing of x), read once per call with
 * 16-byte loads, several in flight per thread; x comes through the read-only
 * cache. Written for memory bandwidth; any architecture from sm_52.
 *
 * sm_count sizes the launch (split of a row across warps when rows are few). */
#ifndef STRATA_KERNELS_CUDA_GEMV_CUH
#define STRATA_KERNELS_CUDA_GEMV_CUH
#include "kernels/cuda/common.cuh"

#define ST_GEMV_MAX_TOK 8

st_status st_gemv_cuda(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias, const float *x,
                       int64_t n_tok, float *y, int sm_count, cudaStream_t stream);

/* A launch shape: rows per warp group (1 or 2), warps splitting a row's
 * columns (1, 2, 4 or 8), 16-byte loads in flight per row and lane (2, 4 or 8;
 * single-token launches only), threads per block (256), and whether the
 * 16-byte path applies (cols a multiple of 16 bytes, w and x 16-byte aligned). */
struct st_gemv_shape { int rows_per_warp, k_split, unroll, threads; bool vectorized; };
/* The shape st_gemv_cuda picks. */
struct st_gemv_shape st_gemv_cuda_shape(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *x,
                                        int64_t n_tok, int sm_count);
/* st_gemv_cuda with an explicit shape (the benchmark's sweep). */
st_status st_gemv_cuda_shaped(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias, const float *x,
                              int64_t n_tok, float *y, const struct st_gemv_shape *shape, cudaStream_t stream);
#endif
