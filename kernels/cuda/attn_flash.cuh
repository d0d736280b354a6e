/* kernels/cuda/attn_flash.cuh — causal GQA flash attention on tensor cores
 * (mma.sync m16n8k16, cc >= 8.0): tiled online softmax, never materialising
 * the score matrix. Same contract as st_attn_eager_cuda (q, out (n_tok,
 * n_head, head_dim) fp32; caches (n_slots, n_ctx, n_head_kv, head_dim)
 * F32/F16/BF16/Q8_0; token t sees rows 0..pos[t] of sequence slot[t]), and n_seq
 * says how the tokens are grouped: 1 = one sequence (slot[0]; query rows of
 * several tokens share tiles: prefill), n_tok = a batched decode step (each
 * token's GQA group is its own tile, reading its own sequence; at most 64
 * query heads per kv head).
 *
 * Precision: scores, softmax statistics and the output accumulate in fp32;
 * q, k, v and the probabilities enter the tensor cores as bf16 (f16 when the
 * cache is F16; a Q8_0 cache is widened to q * d in fp32 while its tile is
 * copied to shared memory, then rounded to bf16, whose range holds any
 * q * d). The query rows of one kv head (tokens x the heads sharing it)
 * are packed into 16-row MMA tiles, so a decode step of one token fills a tile
 * with its GQA group.
 *
 * Split-KV: the key range is cut into n_splits pieces run by separate blocks
 * (decode: one token cannot fill the GPU otherwise); each writes unnormalised
 * partials to `part` and a second kernel merges them. st_attn_flash_cuda picks
 * n_splits from sm_count, n_ctx and part_bytes (0 or a NULL part: one split).
 *
 * head_dim 64 or 128 (st_attn_flash_supported). Device code exists only for
 * sm_80 and newer; calling it on an older device is an error. */
#ifndef STRATA_KERNELS_CUDA_ATTN_FLASH_CUH
#define STRATA_KERNELS_CUDA_ATTN_FLASH_CUH
#include "kernels/cuda/common.cuh"

bool st_attn_flash_supported(int64_t head_dim, st_dtype kv_dtype);
/* Bytes of `part` that n_splits splits need (for sizing a workspace). */
size_t st_attn_flash_part_bytes(int64_t n_tok, int64_t n_head, int64_t head_dim, int n_splits);

st_status st_attn_flash_cuda(const void *k_cache, const void *v_cache, st_dtype kv_dtype, int64_t n_slots,
                             int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, const float *q, int64_t n_tok,
                             int64_t n_head, const int32_t *pos, const int32_t *slot, int64_t n_seq, float scale,
                             float *out, float *part, size_t part_bytes, int sm_count, int cc_major,
                             cudaStream_t stream);
#endif
