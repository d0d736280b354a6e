/* kernels/cuda/rope.cuh — rotary embedding in place on x (n_tok, n_heads,
 * head_dim) at positions pos[t] (device array, so a captured decode step
 * replays at the new position). Pair i of [0, head_dim/2) turns by
 * angle = pos * inv_freq[i], inv_freq[i] = theta^(-2i/head_dim) / freq_factors[i]
 * (freq_factors: device array or NULL). NEOX pairs (x[i], x[i+D/2]) — HF
 * rotate_half and Qwen GGUF; NORM pairs (x[2i], x[2i+1]) — llama GGUF.
 * inv_freq and the angle are fp32 computed exactly as kernels/cpu/rope.c (HF),
 * cos/sin of that fp32 angle in double. head_dim even, <= 1024. */
#ifndef STRATA_KERNELS_CUDA_ROPE_CUH
#define STRATA_KERNELS_CUDA_ROPE_CUH
#include "kernels/cuda/common.cuh"

st_status st_rope_cuda(float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                       float theta, st_rope_layout layout, const float *freq_factors, cudaStream_t stream);

/* The pieces of a rope block, for kernels that rotate as one of their steps
 * (kv_store.cu's rope + store). A block handles one token; tab is
 * shared memory of head_dim / 2 floats per table. */
#define ST_ROPE_MAX_HALF 512
/* What a launch of rope blocks takes: an even head_dim up to 2 *
 * ST_ROPE_MAX_HALF, a grid of n_tok blocks. */
st_status st_rope_check(int64_t n_tok, int64_t head_dim);
/* tab[i] = inv_freq[i] (needs no earlier kernel's output: before the PDL wait).
 * Exactly kernels/cpu/rope.c (HF): 1 / theta^(2i/D) in fp32, theta^e
 * correctly rounded (pow in double, then rounded). */
__device__ __forceinline__ void st_rope_inv_freq(float *tab, int head_dim, float theta, const float *freq_factors) {
    for (int i = threadIdx.x; i < head_dim / 2; i += blockDim.x) {
        const float e = (float)(2 * i) / (float)head_dim;
        float inv = 1.0f / (float)pow((double)theta, (double)e);
        if (freq_factors) inv = inv / freq_factors[i];
        tab[i] = inv;
    }
}
/* cs, sn = cos, sin of the fp32 angle p * inv_freq (cs holds inv_freq on entry:
 * each thread turns its own entries), in double, rounded; then a barrier */
__device__ __forceinline__ void st_rope_angles(float *cs, float *sn, int head_dim, float p) {
    for (int i = threadIdx.x; i < head_dim / 2; i += blockDim.x) {
        const float ang = __fmul_rn(p, cs[i]);
        double s, c;
        sincos((double)ang, &s, &c);
        cs[i] = (float)c;
        sn[i] = (float)s;
    }
    __syncthreads();
}
/* rotates the n_heads heads at xt (one token) by the table */
__device__ __forceinline__ void st_rope_rotate(float *xt, int64_t n_heads, int head_dim, bool neox, const float *cs,
                                               const float *sn) {
    const int half = head_dim / 2;
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
#endif
