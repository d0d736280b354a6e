/* KV cache append (grid.y = token, threads over the row of n_head_kv *
 * head_dim), and the same after the rope of q and k in one launch. */
#include "kernels/cuda/kv_store.cuh"
#include "kernels/cuda/rope.cuh"

namespace {

/* false (and the bad position recorded) where token t's row is outside the cache */
__device__ __forceinline__ bool kv_row_ok(int64_t t, int32_t p, int32_t sl, int64_t n_ctx, int64_t n_slots, int *bad_pos) {
    if (p >= 0 && p < n_ctx && sl >= 0 && sl < n_slots) return true;
    if (bad_pos && threadIdx.x == 0 && blockIdx.x == 0) *(volatile int *)bad_pos = (int)t + 1;   /* host-mapped: a plain store */
    return false;
}

/* Token t's k and v into cache row (sl, p), by the threads i0, i0 + di, ...
 * (di a multiple of 32): an element each for F32/F16/BF16 (round to nearest
 * even); for Q8_0 a warp per block of 32 (k's blocks, then v's), lane =
 * element: d = max|x| / 127 stored fp16, q = round(x * (1/d)) half away from
 * zero (IEEE division and a single multiply: the same bytes as
 * kernels/cpu/kv_store.c and ggml's reference quantizer); a block holding a
 * NaN or an infinity stores d = NaN (attention over it is NaN, as with f16). */
template <int DT> struct kv_put {
    static __device__ __forceinline__ void row(void *kc, void *vc, int64_t n_ctx, int64_t row, const float *k,
                                               const float *v, int64_t t, int32_t p, int32_t sl, int64_t i0, int64_t di) {
        for (int64_t i = i0; i < row; i += di) {
            const int64_t at = ((int64_t)sl * n_ctx + p) * row + i;
            st_elem<DT>::store(kc, at, k[t * row + i]);
            st_elem<DT>::store(vc, at, v[t * row + i]);
        }
    }
};
template <> struct kv_put<ST_DTYPE_Q8_0> {
    static __device__ __forceinline__ void row(void *kc, void *vc, int64_t n_ctx, int64_t row, const float *k,
                                               const float *v, int64_t t, int32_t p, int32_t sl, int64_t i0, int64_t di) {
        const int lane = threadIdx.x & 31;
        const int64_t nb = row / 32;
        const int64_t rbase = ((int64_t)sl * n_ctx + p) * nb * 34;   /* the row's first block */
        for (int64_t b = i0 >> 5; b < 2 * nb; b += di >> 5) {
            const bool is_v = b >= nb;
            const int64_t bb = is_v ? b - nb : b;
            const float x = (is_v ? v : k)[t * row + bb * 32 + lane];
            const bool finite = __all_sync(0xffffffffu, isfinite(x));
            const float amax = st_warp_max(fabsf(x));
            uint8_t *dst = (uint8_t *)(is_v ? vc : kc) + rbase + bb * 34;
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            dst[2 + lane] = finite ? (uint8_t)(int8_t)roundf(x * id) : 0;
            if (lane == 0) *(uint16_t *)dst = finite ? st_f32_to_f16_bits(d) : (uint16_t)0x7e00;
        }
    }
};

/* grid.y = token, threads over the row of n_head_kv * head_dim (Q8_0: warps over its blocks) */
template <int DT>
__global__ void kv_store_kernel(void *kc, void *vc, int64_t n_slots, int64_t n_ctx, int64_t row, const float *k,
                                const float *v, const int32_t *pos, const int32_t *slot, int *bad_pos) {
    st_pdl_launch_next();
    st_pdl_wait();
    const int64_t t = blockIdx.y;
    const int32_t p = pos[t], sl = slot ? slot[t] : 0;
    if (!kv_row_ok(t, p, sl, n_ctx, n_slots, bad_pos)) return;
    kv_put<DT>::row(kc, vc, n_ctx, row, k, v, t, p, sl, blockIdx.x * (int64_t)blockDim.x + threadIdx.x,
                    (int64_t)gridDim.x * blockDim.x);
}

/* rope on token t's q and k heads, then its k and v into the cache: one
 * block per token (rope.cu's block, then kv_store_kernel's work) */
template <int DT>
__global__ void __launch_bounds__(256) rope_kv_store_kernel(float *q, float *k, const float *v, int64_t n_head,
                                                            int64_t n_head_kv, int head_dim, const int32_t *pos,
                                                            const int32_t *slot, float theta, int neox,
                                                            const float *freq_factors, void *kc, void *vc,
                                                            int64_t n_slots, int64_t n_ctx, int *bad_pos) {
    __shared__ float cs[ST_ROPE_MAX_HALF], sn[ST_ROPE_MAX_HALF];
    st_rope_inv_freq(cs, head_dim, theta, freq_factors);
    st_pdl_launch_next();
    st_pdl_wait();
    const int64_t t = blockIdx.x;
    const int32_t p = pos[t], sl = slot ? slot[t] : 0;
    const int64_t row = n_head_kv * head_dim;
    st_rope_angles(cs, sn, head_dim, (float)p);
    st_rope_rotate(q + t * n_head * head_dim, n_head, head_dim, neox != 0, cs, sn);
    st_rope_rotate(k + t * row, n_head_kv, head_dim, neox != 0, cs, sn);
    __syncthreads();   /* the rotated k, written by other threads of the block */
    if (!kv_row_ok(t, p, sl, n_ctx, n_slots, bad_pos)) return;
    kv_put<DT>::row(kc, vc, n_ctx, row, k, v, t, p, sl, threadIdx.x, blockDim.x);
}

} // namespace

static st_status kv_dtype_ok(st_dtype kv_dtype, int64_t n_head_kv, int64_t head_dim) {
    if (kv_dtype == ST_DTYPE_Q8_0 && (n_head_kv * head_dim) % 32)
        return st_error_set(ST_ERR_UNSUPPORTED, "kv_store: a q8_0 KV cache needs rows of a multiple of 32 values "
                            "(%lld kv heads x head_dim %lld)", (long long)n_head_kv, (long long)head_dim);
    if (kv_dtype != ST_DTYPE_F32 && kv_dtype != ST_DTYPE_F16 && kv_dtype != ST_DTYPE_BF16 && kv_dtype != ST_DTYPE_Q8_0)
        return st_error_set(ST_ERR_UNSUPPORTED, "kv_store: KV cache dtype %s (F32, F16, BF16 or Q8_0 only)", st_dtype_name(kv_dtype));
    return ST_OK;
}

st_status st_kv_store_cuda(void *k_cache, void *v_cache, st_dtype kv_dtype, int64_t n_slots, int64_t n_ctx,
                           int64_t n_head_kv, int64_t head_dim, const float *k, const float *v, int64_t n_tok,
                           const int32_t *pos, const int32_t *slot, int *bad_pos, cudaStream_t stream) {
    if (n_tok <= 0) return ST_OK;
    if (n_tok > 65535)
        return st_error_set(ST_ERR_UNSUPPORTED, "kv_store: %lld tokens in one call (at most 65535)", (long long)n_tok);
    st_status s = kv_dtype_ok(kv_dtype, n_head_kv, head_dim);
    if (s != ST_OK) return s;
    const int64_t row = n_head_kv * head_dim;
    const int threads = 256;
    /* threads over the row, or a warp per Q8_0 block of k and of v */
    const int64_t work = kv_dtype == ST_DTYPE_Q8_0 ? 2 * (row / 32) * 32 : row;
    const dim3 grid(st_cuda_blocks(work, threads, 64), (unsigned)n_tok);
#define KV_STORE(DT) st_launch(kv_store_kernel<DT>, grid, threads, 0, stream, k_cache, v_cache, n_slots, n_ctx, row, k, v, pos, slot, bad_pos)
    switch (kv_dtype) {
    case ST_DTYPE_F32: KV_STORE(ST_DTYPE_F32); break;
    case ST_DTYPE_F16: KV_STORE(ST_DTYPE_F16); break;
    case ST_DTYPE_BF16: KV_STORE(ST_DTYPE_BF16); break;
    default: KV_STORE(ST_DTYPE_Q8_0); break;
    }
#undef KV_STORE
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

st_status st_rope_kv_store_cuda(float *q, float *k, const float *v, int64_t n_tok, int64_t n_head, int64_t n_head_kv,
                                int64_t head_dim, const int32_t *pos, const int32_t *slot, float theta,
                                st_rope_layout layout, const float *freq_factors, void *k_cache, void *v_cache,
                                st_dtype kv_dtype, int64_t n_slots, int64_t n_ctx, int *bad_pos, cudaStream_t stream) {
    if (n_tok <= 0) return ST_OK;
    st_status s = st_rope_check(n_tok, head_dim);
    if (s == ST_OK) s = kv_dtype_ok(kv_dtype, n_head_kv, head_dim);
    if (s != ST_OK) return s;
    const int neox = layout == ST_ROPE_NEOX;
#define ROPE_KV(DT) st_launch(rope_kv_store_kernel<DT>, (unsigned)n_tok, 256, 0, stream, q, k, v, n_head, n_head_kv, (int)head_dim, \
                              pos, slot, theta, neox, freq_factors, k_cache, v_cache, n_slots, n_ctx, bad_pos)
    switch (kv_dtype) {
    case ST_DTYPE_F32: ROPE_KV(ST_DTYPE_F32); break;
    case ST_DTYPE_F16: ROPE_KV(ST_DTYPE_F16); break;
    case ST_DTYPE_BF16: ROPE_KV(ST_DTYPE_BF16); break;
    default: ROPE_KV(ST_DTYPE_Q8_0); break;
    }
#undef ROPE_KV
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}
