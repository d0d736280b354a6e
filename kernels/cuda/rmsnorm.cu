/* RMSNorm: a warp per row for short rows (per-head norms), a block per row otherwise. */
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/quant.cuh"

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

/* The 32 values of an 8-thread group (4 each, o = this thread's, element
 * 4 k of its x block) as an st_q8x block: the rule of quantize_x_kernel
 * (gemv_quant.cu), the sums over 4-thread halves. */
__device__ __forceinline__ void quantize_group(float4 o, int k, uint8_t *xq_row, int64_t n, int64_t blk) {
    const unsigned gm = 0xFFu << (threadIdx.x & 24);
    float amax = fmaxf(fmaxf(fabsf(o.x), fabsf(o.y)), fmaxf(fabsf(o.z), fabsf(o.w)));
#pragma unroll
    for (int m = 4; m > 0; m >>= 1) amax = fmaxf(amax, __shfl_xor_sync(gm, amax, m));
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    const float v[4] = {o.x, o.y, o.z, o.w};
    uint32_t packed = 0;
    int qs = 0;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const float qf = rintf(__fmul_rn(v[e], id));
        const int q = qf > 127.0f ? 127 : qf < -127.0f ? -127 : (int)qf;
        packed |= (uint32_t)(uint8_t)(int8_t)q << (8 * e);
        qs += q;
    }
    ((uint32_t *)xq_row)[blk * 8 + k] = packed;
    float s = (o.x + o.y) + (o.z + o.w);
#pragma unroll
    for (int m = 2; m > 0; m >>= 1) {
        s += __shfl_xor_sync(gm, s, m);
        qs += __shfl_xor_sync(gm, qs, m);
    }
    const int src = (threadIdx.x & 24) + 4;   /* the second half's first thread */
    const float s1 = __shfl_sync(gm, s, src);
    const int q1 = __shfl_sync(gm, qs, src);
    if (k == 0) {
        struct st_q8x_meta meta;
        meta.d = amax / 127.0f;
        meta.s0 = s;
        meta.s1 = s1;
        meta.q01 = (int)((uint32_t)(qs & 0xffff) | (uint32_t)q1 << 16);
        ((struct st_q8x_meta *)(xq_row + n))[blk] = meta;
    }
}

/* The same for rows of n4 float4s (n % 4 == 0, every pointer 16-byte aligned);
 * xq set (n % 32 == 0, blockDim a multiple of 32): also the row quantized. */
__global__ void rmsnorm_block4_kernel(const float4 *x, const float4 *w, int n4, float eps, float *out, uint8_t *xq) {
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
        const float4 r = make_float4(g.x * (v.x * scale), g.y * (v.y * scale), g.z * (v.z * scale), g.w * (v.w * scale));
        o[i] = r;
        if (xq) quantize_group(r, i & 7, xq + (size_t)blockIdx.x * st_q8x_row_bytes(4 * (int64_t)n4), 4 * (int64_t)n4, i >> 3);
    }
}

} // namespace

namespace {
bool block4_ok(const float *x, const float *w, int64_t n, const float *out) {
    return n % 4 == 0 && n / 4 <= INT32_MAX && st_is_aligned(x, 16) && st_is_aligned(w, 16) && st_is_aligned(out, 16);
}
int block_threads(int64_t work) { return work >= 768 ? 1024 : work >= 384 ? 512 : 256; }
} // namespace

bool st_rmsnorm_can_quantize(const float *x, const float *w, int64_t rows, int64_t n, const float *out, const void *xq) {
    return rows > 0 && rows <= INT32_MAX && n > 512 && n % 32 == 0 && block4_ok(x, w, n, out) && st_is_aligned(xq, 16);
}

st_status st_rmsnorm_quantize_cuda(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out,
                                   void *xq, cudaStream_t stream) {
    if (!st_rmsnorm_can_quantize(x, w, rows, n, out, xq))
        return st_error_set(ST_ERR_INTERNAL, "rmsnorm: %lld x %lld cannot be quantized in the same launch", (long long)rows,
                            (long long)n);
    st_launch(rmsnorm_block4_kernel, (unsigned)rows, block_threads(n / 4), 0, stream, (const float4 *)x, (const float4 *)w,
              (int)(n / 4), eps, out, (uint8_t *)xq);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

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
        const bool vec = block4_ok(x, w, n, out);
        const int threads = block_threads(vec ? n / 4 : n);
        if (vec) {
            st_launch(rmsnorm_block4_kernel, (unsigned)rows, threads, 0, stream, (const float4 *)x, (const float4 *)w,
                      (int)(n / 4), eps, out, (uint8_t *)NULL);
        } else {
            st_launch(rmsnorm_block_kernel, (unsigned)rows, threads, 0, stream, x, w, n, eps, out);
        }
        ST_CUDA_LAUNCH_CHECK();
    }
    return ST_OK;
}
