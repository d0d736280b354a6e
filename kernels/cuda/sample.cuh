/* kernels/cuda/sample.cuh — token selection on the device, so a decode step
 * needs no host round trip until the id is printed.
 *
 * st_argmax_cuda: out_id[0] = index of the largest logit, the lowest index on
 * ties; -1 when any logit is NaN or an infinity (the engine reports where the
 * non-finite values came from; they never become a token).
 *
 * st_sample_cuda: one seeded draw after (in this order) top-k, top-p, min-p
 * and temperature (llama.cpp's order, as orchestrator/sampler.c) — the
 * contract is written out at struct st_sample_params in devices/device.h. The uniform is st_sample_uniform(seed, pos[0]) with pos a
 * device int32 (the position being generated), so replays of a captured graph
 * draw fresh numbers; -1 when any logit is non-finite, as argmax. Candidates sort by (logit desc, id asc): the result is
 * deterministic and independent of the launch shape. One block of 1024
 * threads; top_k at most ST_SAMPLE_TOPK_MAX when top_p < 1. */
#ifndef STRATA_KERNELS_CUDA_SAMPLE_CUH
#define STRATA_KERNELS_CUDA_SAMPLE_CUH
#include "kernels/cuda/common.cuh"
#include "devices/device.h"

st_status st_argmax_cuda(const float *logits, int64_t n_vocab, int32_t *out_id, cudaStream_t stream);
st_status st_sample_cuda(const float *logits, int64_t n_vocab, const struct st_sample_params *sp, const int32_t *pos,
                         int32_t *out_id, cudaStream_t stream);
#endif
