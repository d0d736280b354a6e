/* SwiGLU, 16-byte accesses when all three pointers allow them. */
#include "kernels/cuda/swiglu.cuh"

namespace {

__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

__global__ void swiglu_vec4_kernel(const float4 *gate, const float4 *up, int64_t n4, float4 *out) {
    st_pdl_launch_next();
    st_pdl_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
        const float4 g = gate[i], u = up[i];
        out[i] = make_float4(silu_mul(g.x, u.x), silu_mul(g.y, u.y), silu_mul(g.z, u.z), silu_mul(g.w, u.w));
    }
}

__global__ void swiglu_kernel(const float *gate, const float *up, int64_t i0, int64_t n, float *out) {
    st_pdl_launch_next();
    st_pdl_wait();
    for (int64_t i = i0 + blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = silu_mul(gate[i], up[i]);
}

} // namespace

st_status st_swiglu_cuda(const float *gate, const float *up, int64_t n, float *out, cudaStream_t stream) {
    if (n <= 0) return ST_OK;
    const int threads = 256;
    int64_t done = 0;
    if (st_is_aligned(gate, 16) && st_is_aligned(up, 16) && st_is_aligned(out, 16) && n >= 4) {
        const int64_t n4 = n / 4;
        st_launch(swiglu_vec4_kernel, st_cuda_blocks(n4, threads, 4096), threads, 0, stream, (const float4 *)gate, (const float4 *)up, n4, (float4 *)out);
        ST_CUDA_LAUNCH_CHECK();
        done = n4 * 4;
    }
    if (done < n) {
        st_launch(swiglu_kernel, st_cuda_blocks(n - done, threads, 4096), threads, 0, stream, gate, up, done, n, out);
        ST_CUDA_LAUNCH_CHECK();
    }
    return ST_OK;
}
