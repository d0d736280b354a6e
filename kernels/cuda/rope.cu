/* RoPE: one block per token computes the cos/sin table for its position once
 * in shared memory, then rotates every head (the pieces: rope.cuh). */
#include "kernels/cuda/rope.cuh"

namespace {

__global__ void rope_kernel(float *x, int64_t n_heads, int head_dim, const int32_t *pos, float theta,
                            int neox, const float *freq_factors) {
    __shared__ float cs[ST_ROPE_MAX_HALF], sn[ST_ROPE_MAX_HALF];
    st_rope_inv_freq(cs, head_dim, theta, freq_factors);
    st_pdl_launch_next();
    st_pdl_wait();
    const int64_t t = blockIdx.x;
    st_rope_angles(cs, sn, head_dim, (float)pos[t]);
    st_rope_rotate(x + t * n_heads * head_dim, n_heads, head_dim, neox != 0, cs, sn);
}

} // namespace

st_status st_rope_check(int64_t n_tok, int64_t head_dim) {
    if (head_dim <= 0 || head_dim % 2 || head_dim > 2 * ST_ROPE_MAX_HALF)
        return st_error_set(ST_ERR_UNSUPPORTED, "rope: head_dim %lld (must be even and at most %d)", (long long)head_dim,
                            2 * ST_ROPE_MAX_HALF);
    if (n_tok > INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "rope: %lld tokens in one call", (long long)n_tok);
    return ST_OK;
}

st_status st_rope_cuda(float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                       float theta, st_rope_layout layout, const float *freq_factors, cudaStream_t stream) {
    if (n_tok <= 0 || n_heads <= 0) return ST_OK;
    st_status s = st_rope_check(n_tok, head_dim);
    if (s != ST_OK) return s;
    st_launch(rope_kernel, (unsigned)n_tok, 256, 0, stream, x, n_heads, (int)head_dim, pos, theta,
              (int)(layout == ST_ROPE_NEOX), freq_factors);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}
