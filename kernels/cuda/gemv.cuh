/* kernels/cuda/gemv.cuh — decode matrix-vector products for up to
 * ST_GEMV_MAX_TOK tokens: y[t][r] = sum_c W[r][c] * x[t][c] (+ bias[r]) with W
 * (rows, cols) in F32, F16, BF16 or a GGUF quantized type (Q8_0, Q4_0, Q4_1,
 * Q5_0, Q5_1, IQ4_NL, Q4_K, Q5_K, Q6_K), x and y fp32, fp32 accumulation.
 * Float weights are widened in registers (no narrowing of x), read once per
 * call with 16-byte loads, several in flight per thread; x comes through the
 * read-only cache. Written for memory bandwidth; any architecture from sm_52.
 *
 * Quantized weights (kernels/cuda/gemv_quant.cuh) take an optional xq: x
 * quantized to 8 bits per 32 elements by st_gemv_quantize_x_cuda (once per x,
 * shared by every matrix that reads it). With xq the products are integer
 * dot products (dp4a, sm_61+; never the Maxwell path) with the bound of
 * kernels/cuda/quant.cuh; with xq == NULL the weights are widened to fp32 in
 * registers and multiply the fp32 x (the Maxwell path). Float weights ignore xq.
 *
 * Three entries share one kernel:
 *   st_gemv_cuda         one matrix;
 *   st_gemv_multi_cuda   up to ST_GEMV_MAX_JOBS matrices over the same x in one
 *                        launch (q, k, v of a layer): blocks index a table of
 *                        jobs passed by value, so a captured graph keeps it;
 *   st_gemv_swiglu_cuda  gate and up over the same x in one launch, writing
 *                        silu(gate x + bg) * (up x + bu) (the FFN input).
 * Results do not depend on the launch shape beyond fp32 reassociation.
 * sm_count sizes the launch (see st_gemv_cuda_shape). */
#ifndef STRATA_KERNELS_CUDA_GEMV_CUH
#define STRATA_KERNELS_CUDA_GEMV_CUH
#include "kernels/cuda/common.cuh"

#define ST_GEMV_MAX_TOK 8
#define ST_GEMV_MAX_JOBS 4

st_status st_gemv_cuda(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias, const float *x,
                       const void *xq, int64_t n_tok, float *y, int sm_count, cudaStream_t stream);

/* Bytes of x (n_tok, cols) quantized for the integer path; 0 when cols is not
 * a multiple of 32. */
size_t st_gemv_xq_bytes(int64_t n_tok, int64_t cols);
/* xq (st_gemv_xq_bytes, 16-byte aligned) = x quantized to 8 bits per 32
 * elements (layout and error bound: st_q8x in kernels/cuda/quant.cuh). */
st_status st_gemv_quantize_x_cuda(const float *x, int64_t n_tok, int64_t cols, void *xq, cudaStream_t stream);

/* One matrix of a grouped GEMV: y (n_tok, rows) = x W^T (+ bias); w is a
 * (rows, cols) device matrix of the group's dtype and cols. */
struct st_gemv_job {
    const void *w;
    const float *bias;       /* (rows) or NULL */
    float *y;                /* (n_tok, rows) */
    int64_t rows;
};

/* n_jobs (1..ST_GEMV_MAX_JOBS) matrices of one dtype and column count over
 * the same x: one launch when every w and x are 16-byte aligned and cols is a
 * multiple of 16 bytes, else one scalar launch per job. */
st_status st_gemv_multi_cuda(const struct st_gemv_job *jobs, int n_jobs, st_dtype dtype, int64_t cols, const float *x,
                             const void *xq, int64_t n_tok, int sm_count, cudaStream_t stream);

/* out (n_tok, rows) = silu(Wg x + bg) * (Wu x + bu), silu(g) = g / (1 + e^-g);
 * wg and wu (rows, cols) of one dtype; biases may be NULL. One launch. */
st_status st_gemv_swiglu_cuda(const void *wg, const float *bg, const void *wu, const float *bu, st_dtype dtype,
                              int64_t rows, int64_t cols, const float *x, const void *xq, int64_t n_tok, float *out,
                              int sm_count, cudaStream_t stream);

/* A launch shape: rows per warp group (1 or 2; 1 for swiglu), warps splitting
 * a row's columns (1, 2, 4 or 8; at most 4 for swiglu, whose gate and up rows
 * take one warp group each), 16-byte loads in flight per row and lane (2, 4 or
 * 8; single-token launches only), threads per block (256), and whether the
 * 16-byte path applies (cols a multiple of 16 bytes, w and x 16-byte aligned).
 * Quantized weights: see st_gemvq_pick (kernels/cuda/gemv_quant.cuh) for
 * what rows_per_warp and unroll mean there; vectorized says whether every
 * block is aligned for the type's widest field loads (else the 2-byte-aligned
 * reader). */
struct st_gemv_shape { int rows_per_warp, k_split, unroll, threads; bool vectorized; };

/* The shape the entries pick: see gemv.cu (st_gemv_pick) and bench/gpu_gemv.md
 * for the rule and the H100 measurements behind it. rows counts the rows of
 * all jobs of a group (for swiglu: the rows of one matrix); xq is the
 * quantized x the launch will be given (quantized weights: NULL = the fp32
 * Maxwell path, whose best shape differs). */
struct st_gemv_shape st_gemv_cuda_shape(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *x,
                                        const void *xq, int64_t n_tok, int sm_count);
struct st_gemv_shape st_gemv_multi_cuda_shape(const struct st_gemv_job *jobs, int n_jobs, st_dtype dtype, int64_t cols,
                                              const float *x, const void *xq, int64_t n_tok, int sm_count);
struct st_gemv_shape st_gemv_swiglu_cuda_shape(const void *wg, const void *wu, st_dtype dtype, int64_t rows, int64_t cols,
                                               const float *x, const void *xq, int64_t n_tok, int sm_count);

/* The entries with an explicit shape (the benchmark's sweep). A vectorized
 * shape on data that does not allow it is ST_ERR_INTERNAL; a k_split or
 * rows_per_warp the mode cannot use is clamped to one it can. */
st_status st_gemv_cuda_shaped(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias, const float *x,
                              const void *xq, int64_t n_tok, float *y, const struct st_gemv_shape *shape,
                              cudaStream_t stream);
st_status st_gemv_multi_cuda_shaped(const struct st_gemv_job *jobs, int n_jobs, st_dtype dtype, int64_t cols,
                                    const float *x, const void *xq, int64_t n_tok, const struct st_gemv_shape *shape,
                                    cudaStream_t stream);
st_status st_gemv_swiglu_cuda_shaped(const void *wg, const float *bg, const void *wu, const float *bu, st_dtype dtype,
                                     int64_t rows, int64_t cols, const float *x, const void *xq, int64_t n_tok,
                                     float *out, const struct st_gemv_shape *shape, cudaStream_t stream);
#endif
