/* kernels/cuda/add.cuh — residual add x[i] += y[i] (fp32), and the broadcast
 * bias add y[t][r] += bias[r] used after cuBLAS GEMMs. */
#ifndef STRATA_KERNELS_CUDA_ADD_CUH
#define STRATA_KERNELS_CUDA_ADD_CUH
#include "kernels/cuda/common.cuh"

st_status st_add_cuda(float *x, const float *y, int64_t n, cudaStream_t stream);
/* y (n_tok, rows) += bias (rows) broadcast over tokens */
st_status st_bias_add_cuda(float *y, const float *bias, int64_t n_tok, int64_t rows, cudaStream_t stream);
#endif
