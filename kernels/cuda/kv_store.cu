/* KV cache append: grid.y = token, threads over the row of n_head_kv * head_dim. */
#include "kernels/cuda/kv_store.cuh"

namespace {

template <int DT>
__global__ void kv_store_kernel(void *kc, void *vc, int64_t n_slots, int64_t n_ctx, int64_t row, const float *k,
                                const float *v, const int32_t *pos, const int32_t *slot, int *bad_pos) {
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
    switch (kv_dtype) {
    case ST_DTYPE_F32:
        kv_store_kernel<ST_DTYPE_F32><<<grid, threads, 0, stream>>>(k_cache, v_cache, n_slots, n_ctx, row, k, v, pos, slot, bad_pos);
        break;
    case ST_DTYPE_F16:
        kv_store_kernel<ST_DTYPE_F16><<<grid, threads, 0, stream>>>(k_cache, v_cache, n_slots, n_ctx, row, k, v, pos, slot, bad_pos);
        break;
    case ST_DTYPE_BF16:
        kv_store_kernel<ST_DTYPE_BF16><<<grid, threads, 0, stream>>>(k_cache, v_cache, n_slots, n_ctx, row, k, v, pos, slot, bad_pos);
        break;
    default:
        return st_error_set(ST_ERR_UNSUPPORTED, "kv_store: KV cache dtype %s (F32, F16 or BF16 only)", st_dtype_name(kv_dtype));
    }
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}
