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
#endif
