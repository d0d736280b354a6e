/* kernels/cuda/gemv_jobs.cuh — what the float (gemv.cu) and quantized
 * (gemv_quant.cu) decode GEMV kernels share: the job table of a launch (up to
 * ST_GEMV_MAX_JOBS matrices over one x; job i owns the blocks from begin[i],
 * every field passed by value so that a graph capture records it) and the
 * SwiGLU epilogue of a gate/up pair. Internal to kernels/cuda. */
#ifndef STRATA_KERNELS_CUDA_GEMV_JOBS_CUH
#define STRATA_KERNELS_CUDA_GEMV_JOBS_CUH
#include "kernels/cuda/gemv.cuh"

namespace st_gemv_jobs {

constexpr int MAXJ = ST_GEMV_MAX_JOBS;

/* a[j] with compile-time indices only: a run-time index into a kernel
 * parameter array would copy the table to local memory */
template <typename T> __device__ __forceinline__ T pick(const T (&a)[MAXJ], int j) {
    T v = a[0];
#pragma unroll
    for (int i = 1; i < MAXJ; i++)
        if (j == i) v = a[i];
    return v;
}

/* the job whose rows this block computes (Args: n_jobs, begin[MAXJ]) */
template <class Args> __device__ __forceinline__ int block_job(const Args &a) {
    int j = 0;
#pragma unroll
    for (int i = 1; i < MAXJ; i++)
        if (i < a.n_jobs && blockIdx.x >= a.begin[i]) j = i;
    return j;
}

__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

} // namespace st_gemv_jobs
#endif
