/* kernels/cuda/gemm.cuh — prefill matrix products y (n_tok, rows) = x (n_tok,
 * cols) · W^T (+ bias), W (rows, cols) in its stored dtype, fp32 accumulation.
 *
 * Two paths:
 *  - st_gemm_cublas_cuda: cublasGemmEx with CUBLAS_COMPUTE_32F (never TF32).
 *    F32 weights multiply fp32 x directly. F16/BF16 weights multiply x
 *    converted to the weights' dtype (x16: a device buffer of n_tok * cols
 *    16-bit elements) — tensor cores on cc >= 7.0 (F16) / 8.0 (BF16).
 *  - st_gemm_simt_cuda: a tiled fp32 kernel that widens F32/F16/BF16 weights
 *    in shared memory and multiplies in fp32: no tensor cores, no fp16/bf16
 *    arithmetic, any architecture from sm_52 (the Maxwell path). */
#ifndef STRATA_KERNELS_CUDA_GEMM_CUH
#define STRATA_KERNELS_CUDA_GEMM_CUH
#include "kernels/cuda/common.cuh"

st_status st_gemm_cublas_cuda(cublasHandle_t h, const void *w, st_dtype dtype, int64_t rows, int64_t cols,
                              const float *bias, const float *x, int64_t n_tok, float *y, void *x16,
                              cudaStream_t stream);
st_status st_gemm_simt_cuda(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                            const float *x, int64_t n_tok, float *y, cudaStream_t stream);
/* dst[i] = round(src[i]) to F16 or BF16 (nearest even), n elements. */
st_status st_convert_f32_cuda(const float *src, st_dtype dst_dtype, void *dst, int64_t n, cudaStream_t stream);
#endif
