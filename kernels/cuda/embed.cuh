/* kernels/cuda/embed.cuh — embedding lookup: out[t][:] = table[ids[t]][:] as fp32.
 * Every stored dtype (F32, F16, BF16 and the GGUF block quants) is widened on
 * the device; ids are read from device memory. An id outside [0, n_vocab)
 * writes NaN to its row (the host cannot see ids without a sync; the NaN makes
 * the fault loud in the logits) and sets *bad_id (device int, may be NULL) to
 * an offending token index + 1 (may be host-mapped memory). */
#ifndef STRATA_KERNELS_CUDA_EMBED_CUH
#define STRATA_KERNELS_CUDA_EMBED_CUH
#include "kernels/cuda/common.cuh"

st_status st_embed_cuda(const void *table, st_dtype dtype, int64_t n_vocab, int64_t n_embd,
                        const int32_t *ids, int64_t n_tok, float *out, int *bad_id, cudaStream_t stream);
#endif
