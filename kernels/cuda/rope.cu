/* RoPE: one block per token computes the cos/sin table for its position once
 * in shared memory, then rotates every head. */
#include "kernels/cuda/rope.cuh"

namespace {

__global__ void rope_kernel(float *x, int64_t n_heads, int head_dim, const int32_t *pos, float theta,
                            int neox, const float *freq_factors) {
    __shared__ float cs[512], sn[512];
    const int half = head_dim / 2;
    const int64_t t = blockIdx.x;
    /* exactly kernels/cpu/rope.c (HF): inv_freq = 1 / theta^(2i/D) in fp32, where
     * theta^e is correctly rounded (glibc powf; pow in double, then rounded,
     * here); angle = pos * inv_freq in fp32; cos/sin of it in double, rounded.
     * The inverse frequencies need no earlier kernel's output: computed before the wait. */
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float e = (float)(2 * i) / (float)head_dim;
        float inv = 1.0f / (float)pow((double)theta, (double)e);
        if (freq_factors) inv = inv / freq_factors[i];
        cs[i] = inv;
    }
    st_pdl_launch_next();
    st_pdl_wait();
    const float p = (float)pos[t];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        const float ang = __fmul_rn(p, cs[i]);
        double s, c;
        sincos((double)ang, &s, &c);
        cs[i] = (float)c;
        sn[i] = (float)s;
    }
    __syncthreads();
    float *xt = x + t * n_heads * head_dim;
    const int64_t n_pairs = n_heads * half;
    for (int64_t k = threadIdx.x; k < n_pairs; k += blockDim.x) {
        const int64_t h = k / half;
        const int i = (int)(k % half);
        float *xh = xt + h * head_dim;
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float a = xh[i0], b = xh[i1];
        xh[i0] = a * cs[i] - b * sn[i];
        xh[i1] = b * cs[i] + a * sn[i];
    }
}

} // namespace

st_status st_rope_cuda(float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                       float theta, st_rope_layout layout, const float *freq_factors, cudaStream_t stream) {
    if (n_tok <= 0 || n_heads <= 0) return ST_OK;
    if (head_dim <= 0 || head_dim % 2 || head_dim > 1024)
        return st_error_set(ST_ERR_UNSUPPORTED, "rope: head_dim %lld (must be even and at most 1024)", (long long)head_dim);
    if (n_tok > INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "rope: %lld tokens in one call", (long long)n_tok);
    st_launch(rope_kernel, (unsigned)n_tok, 256, 0, stream, x, n_heads, (int)head_dim, pos, theta,
              (int)(layout == ST_ROPE_NEOX), freq_factors);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}
