/* Residual add and broadcast bias add, 16-byte accesses when aligned. */
#include "kernels/cuda/add.cuh"

namespace {

__global__ void add_vec4_kernel(float4 *x, const float4 *y, int64_t n4) {
    st_pdl_launch_next();
    st_pdl_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
        float4 a = x[i];
        const float4 b = y[i];
        a.x += b.x; a.y += b.y; a.z += b.z; a.w += b.w;
        x[i] = a;
    }
}

__global__ void add_kernel(float *x, const float *y, int64_t i0, int64_t n) {
    st_pdl_launch_next();
    st_pdl_wait();
    for (int64_t i = i0 + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

__global__ void bias_add_kernel(float *y, const float *bias, int64_t total, int64_t rows) {
    st_pdl_launch_next();
    st_pdl_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        y[i] += bias[i % rows];
}

} // namespace

st_status st_add_cuda(float *x, const float *y, int64_t n, cudaStream_t stream) {
    if (n <= 0) return ST_OK;
    const int threads = 256;
    int64_t done = 0;
    if (st_is_aligned(x, 16) && st_is_aligned(y, 16) && n >= 4) {
        const int64_t n4 = n / 4;
        st_launch(add_vec4_kernel, st_cuda_blocks(n4, threads, 4096), threads, 0, stream, (float4 *)x, (const float4 *)y, n4);
        ST_CUDA_LAUNCH_CHECK();
        done = n4 * 4;
    }
    if (done < n) {
        st_launch(add_kernel, st_cuda_blocks(n - done, threads, 4096), threads, 0, stream, x, y, done, n);
        ST_CUDA_LAUNCH_CHECK();
    }
    return ST_OK;
}

st_status st_bias_add_cuda(float *y, const float *bias, int64_t n_tok, int64_t rows, cudaStream_t stream) {
    if (n_tok <= 0 || rows <= 0) return ST_OK;
    const int threads = 256;
    st_launch(bias_add_kernel, st_cuda_blocks(n_tok * rows, threads, 4096), threads, 0, stream, y, bias, n_tok * rows, rows);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}
