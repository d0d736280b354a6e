/* kernels/cuda/kv_store.cuh — writes k and v (n_tok, n_head_kv, head_dim) fp32
 * into rows pos[t] of sequence slot[t] of the caches (n_slots, n_ctx,
 * n_head_kv, head_dim) in F32, F16 or BF16 (round to nearest even, as
 * model/dtype.c) or Q8_0 (GGUF blocks tiling the row of n_head_kv x head_dim
 * values, which must be a multiple of 32; the same bytes as the CPU's
 * st_cpu_kv_store); slot NULL = slot 0. A position outside [0, n_ctx) or a slot
 * outside [0, n_slots) is skipped and recorded in *bad_pos (device int, may be
 * NULL) as token index + 1 (may be host-mapped memory): the host learns it at
 * its next sync. */
#ifndef STRATA_KERNELS_CUDA_KV_STORE_CUH
#define STRATA_KERNELS_CUDA_KV_STORE_CUH
#include "kernels/cuda/common.cuh"

st_status st_kv_store_cuda(void *k_cache, void *v_cache, st_dtype kv_dtype, int64_t n_slots, int64_t n_ctx,
                           int64_t n_head_kv, int64_t head_dim, const float *k, const float *v, int64_t n_tok,
                           const int32_t *pos, const int32_t *slot, int *bad_pos, cudaStream_t stream);

/* st_rope_cuda on q (n_tok, n_head, head_dim) and on k (n_tok, n_head_kv,
 * head_dim), then st_kv_store_cuda of the rotated k and v, in one launch
 * (one block per token): the same values and cache bytes as the three calls. */
st_status st_rope_kv_store_cuda(float *q, float *k, const float *v, int64_t n_tok, int64_t n_head, int64_t n_head_kv,
                                int64_t head_dim, const int32_t *pos, const int32_t *slot, float theta,
                                st_rope_layout layout, const float *freq_factors, void *k_cache, void *v_cache,
                                st_dtype kv_dtype, int64_t n_slots, int64_t n_ctx, int *bad_pos, cudaStream_t stream);
#endif
