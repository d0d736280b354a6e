/* kernels/cuda/gemv_quant.cuh — the decode GEMV for quantized weights (Q8_0,
 * Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q4_K, Q5_K, Q6_K), behind the entries of
 * kernels/cuda/gemv.cuh (which dispatch here on the dtype). Internal to
 * kernels/cuda.
 *
 * A warp group owns rows_per_warp = R consecutive rows (1, 2 or 4 for one
 * token; KS warps split their columns) and streams them one after the other
 * in windows of 64 32-weight units: the window's bytes come in with 16-byte loads (any block
 * alignment, coalesced), go through the warp's slice of shared memory, and
 * every lane decodes up to two units (kernels/cuda/quant.cuh) while the next
 * window's loads (the next row's first, after a row's last) are in flight.
 * Two variants:
 *   xq == NULL: fp32 x, weights widened in registers, fp32 accumulation (the
 *               Maxwell path; any GPU from sm_52);
 *   xq set:     x quantized by st_gemv_quantize_x_cuda, integer dot products
 *               (dp4a on sm_61+), scales in fp32 (error bound in quant.cuh).
 * The 16-byte-aligned types (Q4_K, Q5_K) on aligned data have a second
 * kernel, the direct one (st_gemv_shape.unroll = U > 0): no shared memory;
 * a warp group owns rows_per_warp = R rows (1, 2 or 4; a gate/up pair R of
 * each), each lane loads the fields of U units of every one of them straight
 * from global memory, all of a batch's loads issued before any is decoded,
 * and x is read once per unit for all of the group's rows.
 * Same job table, PAIR (gate/up + SwiGLU) and graph-capture rules as the
 * float kernel: everything by value, no allocation, no host sync. */
#ifndef STRATA_KERNELS_CUDA_GEMV_QUANT_CUH
#define STRATA_KERNELS_CUDA_GEMV_QUANT_CUH
#include "kernels/cuda/gemv.cuh"

/* The shape the quantized kernel runs: k_split (1, 2, 4, 8; at most 4 for
 * pairs in the window kernel) warps per row; vectorized = every block is
 * ALIGN-aligned (16-byte loads of K-quant fields), else the 2-byte-aligned
 * reader; unroll = 0 for the window kernel, else the direct kernel (where the
 * type and alignment allow it) with unroll units per lane per batch and
 * rows_per_warp rows per warp group: one token (U, R) = (2, 1), (4, 1),
 * (1, 2), (2, 2) or (1, 4) (other values round to one of these), several
 * tokens (2, 1). The window kernel: R = 1, 2 or 4 for one token, 1 for
 * several. int8: the launch will get xq (dp4a); false = the fp32 Maxwell
 * path, whose best R differs (its per-unit work is larger). */
struct st_gemv_shape st_gemvq_pick(const void *const *ws, int n_w, st_dtype dtype, int64_t rows, int64_t cols,
                                   int64_t n_tok, bool pair, bool int8, int sm_count);

/* One launch over n_jobs matrices (pair: jobs[0] gate, jobs[1] up, one output
 * jobs[0].y). cols must be a multiple of the block size. */
st_status st_gemvq_launch(const struct st_gemv_job *jobs, int n_jobs, bool pair, st_dtype dtype, int64_t cols,
                          const float *x, const void *xq, int64_t n_tok, const struct st_gemv_shape *shape,
                          cudaStream_t stream);
#endif
