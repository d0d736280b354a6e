/* kernels/cuda/rmsnorm.cuh — out[r] = w * (x[r] / sqrt(mean(x[r]^2) + eps)) for
 * `rows` rows of length n (fp32). Also the per-head q/k norm (rows = tokens x
 * heads, n = head_dim). x and out may alias. Sum of squares in fp32 with a
 * tree reduction. */
#ifndef STRATA_KERNELS_CUDA_RMSNORM_CUH
#define STRATA_KERNELS_CUDA_RMSNORM_CUH
#include "kernels/cuda/common.cuh"

st_status st_rmsnorm_cuda(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out,
                          cudaStream_t stream);
#endif
