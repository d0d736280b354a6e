/* kernels/cuda/swiglu.cuh — out[i] = silu(gate[i]) * up[i], silu(z) = z / (1 + e^-z).
 * fp32; out may alias gate or up. */
#ifndef STRATA_KERNELS_CUDA_SWIGLU_CUH
#define STRATA_KERNELS_CUDA_SWIGLU_CUH
#include "kernels/cuda/common.cuh"

st_status st_swiglu_cuda(const float *gate, const float *up, int64_t n, float *out, cudaStream_t stream);
#endif
