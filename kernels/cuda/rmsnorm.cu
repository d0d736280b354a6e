/* RMSNorm: a warp per row for short rows (per-head norms), a block per row otherwise. */
#include "kernels/cuda/rmsnorm.cuh"

namespace {

__global__ void rmsnorm_warp_kernel(const float *x, const float *w, int64_t rows, int n, float eps, float *out) {
    const int64_t r = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    st_pdl_launch_next();
    st_pdl_wait();
    if (r >= rows) return;
    const float *xr = x + r * n;
    float ss = 0.0f;
    for (int i = lane; i < n; i += 32) ss += xr[i] * xr[i];
    ss = st_warp_sum(ss);
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    float *o = out + r * n;
    for (int i = lane; i < n; i += 32) o[i] = w[i] * (xr[i] * scale);
}

/* A block per row; every thread keeps its loads in flight (unrolled, 16-byte
 * loads when the row allows), since a decode row is a single latency-bound
 * pass: a serial load-then-add loop made a 3584-wide row cost ~9 us on an H100. */
__global__ void rmsnorm_block_kernel(const float *x, const float *w, int64_t n, float eps, float *out) {
    __shared__ float red[32];
    const float *xr = x + (int64_t)blockIdx.x * n;
    st_pdl_launch_next();
    st_pdl_wait();
    float ss = 0.0f;
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
    ss = st_block_sum(ss, red);
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    float *o = out + (int64_t)blockIdx.x * n;
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = w[i] * (xr[i] * scale);
}

/* The same for rows of n4 float4s (n % 4 == 0, every pointer 16-byte aligned). */
__global__ void rmsnorm_block4_kernel(const float4 *x, const float4 *w, int n4, float eps, float *out) {
    __shared__ float red[32];
    const float4 *xr = x + (int64_t)blockIdx.x * n4;
    st_pdl_launch_next();
    st_pdl_wait();
    float ss = 0.0f;
#pragma unroll 2
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        const float4 v = xr[i];
        ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    ss = st_block_sum(ss, red);
    const float scale = 1.0f / sqrtf(ss / (float)(4 * n4) + eps);
    float4 *o = (float4 *)out + (int64_t)blockIdx.x * n4;
#pragma unroll 2
    for (int i = threadIdx.x; i < n4; i += blockDim.x) {
        const float4 v = xr[i], g = w[i];
        o[i] = make_float4(g.x * (v.x * scale), g.y * (v.y * scale), g.z * (v.z * scale), g.w * (v.w * scale));
    }
}

} // namespace

st_status st_rmsnorm_cuda(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out,
                          cudaStream_t stream) {
    if (rows <= 0 || n <= 0) return ST_OK;
    if (n <= 512) {
        const int warps = 8;
        st_launch(rmsnorm_warp_kernel, st_cuda_blocks(rows, warps, INT32_MAX), warps * 32, 0, stream, x, w, rows, (int)n,
                  eps, out);
        ST_CUDA_LAUNCH_CHECK();
    } else {
        if (rows > INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "rmsnorm: %lld rows in one call", (long long)rows);
        const bool vec = n % 4 == 0 && n / 4 <= INT32_MAX && st_is_aligned(x, 16) && st_is_aligned(w, 16) &&
                         st_is_aligned(out, 16);
        const int64_t work = vec ? n / 4 : n;
        const int threads = work >= 768 ? 1024 : work >= 384 ? 512 : 256;
        if (vec) {
            st_launch(rmsnorm_block4_kernel, (unsigned)rows, threads, 0, stream, (const float4 *)x, (const float4 *)w,
                      (int)(n / 4), eps, out);
        } else {
            st_launch(rmsnorm_block_kernel, (unsigned)rows, threads, 0, stream, x, w, n, eps, out);
        }
        ST_CUDA_LAUNCH_CHECK();
    }
    return ST_OK;
}
