/* kernels/cuda/attn_eager.cuh — causal GQA attention with the scores
 * materialised in fp32 (any architecture from sm_52; the Maxwell path).
 * q, out: (n_tok, n_head, head_dim) fp32; the caches (n_slots, n_ctx,
 * n_head_kv, head_dim) in F32, F16, BF16 or Q8_0 (each element widened to
 * fp32 as it is read: q * d, the fp16 scale from its bits; rows of a multiple
 * of 32 values). Query head h reads kv head h /
 * (n_head / n_head_kv); token t sees rows 0..pos[t] of sequence slot[t] (pos
 * and slot on the device; slot NULL = slot 0). Every (head, token) is its own
 * block, so tokens of different sequences may share a call.
 * score = (q . k) * scale, softmax in fp32 over chunks of 1024 keys with a
 * running max (so shared memory stays bounded at any context length).
 * A position outside [0, n_ctx) or a slot outside [0, n_slots) yields NaN
 * for that token's rows.
 * head_dim <= 1024. */
#ifndef STRATA_KERNELS_CUDA_ATTN_EAGER_CUH
#define STRATA_KERNELS_CUDA_ATTN_EAGER_CUH
#include "kernels/cuda/common.cuh"

st_status st_attn_eager_cuda(const void *k_cache, const void *v_cache, st_dtype kv_dtype, int64_t n_slots,
                             int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, const float *q, int64_t n_tok,
                             int64_t n_head, const int32_t *pos, const int32_t *slot, float scale, float *out,
                             cudaStream_t stream);
#endif
