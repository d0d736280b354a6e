/* RMSNorm: a warp per row for short rows (per-head norms), a block per row otherwise. */
#include "kernels/cuda/rmsnorm.cuh"

namespace {

__global__ void rmsnorm_warp_kernel(const float *x, const float *w, int64_t rows, int n, float eps, float *out) {
    const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *xr = x + r * n;
    float ss = 0.0f;
    for (int i = lane; i < n; i += 32) ss += xr[i] * xr[i];
    ss = st_warp_sum(ss);
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    float *o = out + r * n;
    for (int i = lane; i < n; i += 32) o[i] = w[i] * (xr[i] * scale);
}

__global__ void rmsnorm_block_kernel(const float *x, const float *w, int64_t n, float eps, float *out) {
    __shared__ float red[32];
    const float *xr = x + (int64_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = st_block_sum(ss, red);
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    float *o = out + (int64_t)blockIdx.x * n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = w[i] * (xr[i] * scale);
}

} // namespace

st_status st_rmsnorm_cuda(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out,
                          cudaStream_t stream) {
    if (rows <= 0 || n <= 0) return ST_OK;
    if (n <= 512) {
        const int warps = 8;
        rmsnorm_warp_kernel<<<st_cuda_blocks(rows, warps, INT32_MAX), warps * 32, 0, stream>>>(x, w, rows, (int)n, eps, out);
        ST_CUDA_LAUNCH_CHECK();
    } else {
        if (rows > INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "rmsnorm: %lld rows in one call", (long long)rows);
        const int threads = n >= 4096 ? 1024 : 256;
        rmsnorm_block_kernel<<<(unsigned)rows, threads, 0, stream>>>(x, w, n, eps, out);
        ST_CUDA_LAUNCH_CHECK();
    }
    return ST_OK;
}
