/* kernels/cuda/rmsnorm.cuh — out[r] = w * (x[r] / sqrt(mean(x[r]^2) + eps)) for
 * `rows` rows of length n (fp32). Also the per-head q/k norm (rows = tokens x
 * heads, n = head_dim). x and out may alias. Sum of squares in fp32 with a
 * tree reduction. */
#ifndef STRATA_KERNELS_CUDA_RMSNORM_CUH
#define STRATA_KERNELS_CUDA_RMSNORM_CUH
#include "kernels/cuda/common.cuh"

st_status st_rmsnorm_cuda(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out,
                          cudaStream_t stream);

/* The same launch also writing out quantized for the integer GEMV (st_q8x,
 * the layout and values of st_gemv_quantize_x_cuda except the order of the
 * fp32 sums s0/s1) into xq, st_gemv_xq_bytes(rows, n) bytes, 16-byte aligned.
 * Only where st_rmsnorm_can_quantize says so (the vectorized block kernel:
 * n > 512, n % 32 == 0, x, w, out 16-byte aligned). */
bool st_rmsnorm_can_quantize(const float *x, const float *w, int64_t rows, int64_t n, const float *out, const void *xq);
st_status st_rmsnorm_quantize_cuda(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out,
                                   void *xq, cudaStream_t stream);
#endif
