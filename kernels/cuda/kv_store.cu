/* KV cache append: grid.y = token, threads over the row of n_head_kv * head_dim. */
#include "kernels/cuda/kv_store.cuh"

namespace {

template <int DT>
__global__ void kv_store_kernel(void *kc, void *vc, int64_t n_slots, int64_t n_ctx, int64_t row, const float *k,
                                const float *v, const int32_t *pos, const int32_t *slot, int *bad_pos) {
    st_pdl_launch_next();
    st_pdl_wait();
    const int64_t t = blockIdx.y;
    const int32_t p = pos[t];
    const int32_t sl = slot ? slot[t] : 0;
    if (p < 0 || p >= n_ctx || sl < 0 || sl >= n_slots) {
        if (bad_pos && threadIdx.x == 0 && blockIdx.x == 0) *(volatile int *)bad_pos = (int)t + 1;   /* host-mapped: a plain store */
        return;
    }
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < row; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t at = ((int64_t)sl * n_ctx + p) * row + i;
        st_elem<DT>::store(kc, at, k[t * row + i]);
        st_elem<DT>::store(vc, at, v[t * row + i]);
    }
}

/* Q8_0: a warp per block of 32 values (grid.x over the row's blocks, grid.y =
 * token), lane = element: d = max|x| / 127 stored fp16, q = round(x * (1/d))
 * half away from zero (IEEE division and a single multiply: the same bytes as
 * kernels/cpu/kv_store.c and ggml's reference quantizer). A block holding a NaN
 * or an infinity stores d = NaN (attention over it is NaN, as with f16). */
__global__ void kv_store_q8_0_kernel(uint8_t *kc, uint8_t *vc, int64_t n_slots, int64_t n_ctx, int64_t row,
                                     const float *k, const float *v, const int32_t *pos, const int32_t *slot,
                                     int *bad_pos) {
    st_pdl_launch_next();
    st_pdl_wait();
    const int64_t t = blockIdx.y;
    const int32_t p = pos[t];
    const int32_t sl = slot ? slot[t] : 0;
    if (p < 0 || p >= n_ctx || sl < 0 || sl >= n_slots) {
        if (bad_pos && threadIdx.x == 0 && blockIdx.x == 0) *(volatile int *)bad_pos = (int)t + 1;
        return;
    }
    const int lane = threadIdx.x & 31;
    const int64_t nb = row / 32;
    const int64_t wpb = blockDim.x / 32;
    const int64_t rbase = ((int64_t)sl * n_ctx + p) * nb * 34;   /* the row's first block */
    for (int64_t b = blockIdx.x * wpb + (threadIdx.x >> 5); b < 2 * nb; b += (int64_t)gridDim.x * wpb) {
        const bool is_v = b >= nb;
        const int64_t bb = is_v ? b - nb : b;
        const float x = (is_v ? v : k)[t * row + bb * 32 + lane];
        const bool finite = __all_sync(0xffffffffu, isfinite(x));
        const float amax = st_warp_max(fabsf(x));
        uint8_t *dst = (is_v ? vc : kc) + rbase + bb * 34;
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        dst[2 + lane] = finite ? (uint8_t)(int8_t)roundf(x * id) : 0;
        if (lane == 0) *(uint16_t *)dst = finite ? st_f32_to_f16_bits(d) : (uint16_t)0x7e00;
    }
}

} // namespace

st_status st_kv_store_cuda(void *k_cache, void *v_cache, st_dtype kv_dtype, int64_t n_slots, int64_t n_ctx,
                           int64_t n_head_kv, int64_t head_dim, const float *k, const float *v, int64_t n_tok,
                           const int32_t *pos, const int32_t *slot, int *bad_pos, cudaStream_t stream) {
    if (n_tok <= 0) return ST_OK;
    if (n_tok > 65535)
        return st_error_set(ST_ERR_UNSUPPORTED, "kv_store: %lld tokens in one call (at most 65535)", (long long)n_tok);
    const int64_t row = n_head_kv * head_dim;
    const int threads = 256;
    dim3 grid(st_cuda_blocks(row, threads, 64), (unsigned)n_tok);
    if (kv_dtype == ST_DTYPE_Q8_0) {
        if (row % 32)
            return st_error_set(ST_ERR_UNSUPPORTED, "kv_store: a q8_0 KV cache needs rows of a multiple of 32 values "
                                "(%lld kv heads x head_dim %lld)", (long long)n_head_kv, (long long)head_dim);
        const int64_t warps = 2 * (row / 32);     /* one per block of k and of v */
        dim3 qgrid(st_cuda_blocks(warps * 32, threads, 64), (unsigned)n_tok);
        st_launch(kv_store_q8_0_kernel, qgrid, threads, 0, stream, (uint8_t *)k_cache, (uint8_t *)v_cache, n_slots, n_ctx, row,
                                                            k, v, pos, slot, bad_pos);
        ST_CUDA_LAUNCH_CHECK();
        return ST_OK;
    }
    switch (kv_dtype) {
    case ST_DTYPE_F32:
        st_launch(kv_store_kernel<ST_DTYPE_F32>, grid, threads, 0, stream, k_cache, v_cache, n_slots, n_ctx, row, k, v, pos, slot, bad_pos);
        break;
    case ST_DTYPE_F16:
        st_launch(kv_store_kernel<ST_DTYPE_F16>, grid, threads, 0, stream, k_cache, v_cache, n_slots, n_ctx, row, k, v, pos, slot, bad_pos);
        break;
    case ST_DTYPE_BF16:
        st_launch(kv_store_kernel<ST_DTYPE_BF16>, grid, threads, 0, stream, k_cache, v_cache, n_slots, n_ctx, row, k, v, pos, slot, bad_pos);
        break;
    default:
        return st_error_set(ST_ERR_UNSUPPORTED, "kv_store: KV cache dtype %s (F32, F16, BF16 or Q8_0 only)", st_dtype_name(kv_dtype));
    }
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}
