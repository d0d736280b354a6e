/* devices/cuda/cuda-impl.h — the CUDA backend's runtime state, shared by the
 * ops table (backend_cuda.cu), the links (link_cuda.cu) and the probe
 * (probe_cuda.cu). Not a public header. */
#ifndef STRATA_CUDA_IMPL_H
#define STRATA_CUDA_IMPL_H

#include "devices/device.h"
#include "devices/cuda/check.h"
#include "kernels/cuda/gemm.cuh"

#include <cuda_runtime.h>
#include <cublas_v2.h>

#ifdef __cplusplus
extern "C" {
#endif

struct st_cuda_alloc { void *ptr; size_t bytes; st_buf_use use; };

struct st_backend {
    int ordinal;                 /* CUDA device ordinal */
    char label[300];             /* "cuda:0 (NVIDIA H100 80GB HBM3)" for messages */
    int cc_major, cc_minor;
    int sm_count;
    struct st_backend_config cfg;
    bool sm52_only;              /* Maxwell path: real cc 5.x or cfg.maxwell_path (emulation) */
    bool gemm_bf16, gemm_f16;    /* cuBLAS may take bf16 / f16 inputs (tensor cores, fp32 accumulation) */
    bool flash;                  /* flash attention chosen and possible */
    cudaStream_t stream;         /* every op of this backend runs here (never the default stream) */
    cublasHandle_t cublas;
    void *cublas_ws;             /* cuBLAS workspace (cublas_ws_bytes), set once so graphs capture */
    size_t cublas_ws_bytes;
    void *scratch;               /* sized at init from cfg.max_tokens (st_cuda_scratch_bytes), never grown
                                    by an op: decode: x quantized for the integer GEMV, split-KV attention
                                    partials; prefill: x converted and dequantized weight tiles (GEMM),
                                    the up-projection rows of matmul_swiglu */
    size_t scratch_bytes;
    /* rmsnorm's output also quantized for the integer GEMV (st_q8x, at scratch
     * offset 0) by the same launch: valid for the very next op only, and only
     * if that op is a matmul of xq_src with xq_rows tokens of xq_cols columns;
     * every other op forgets it (xq_forget). Fused only once a matmul has
     * quantized its x (saw_quant_x), so float stages never pay for it. */
    const float *xq_src;
    int64_t xq_rows, xq_cols;
    bool saw_quant_x;
    /* past the GEMV's token count: x converted to 16 bits that the last GEMM
     * left at the scratch's start, for the next one if it is of the same x
     * (kernels/cuda/gemm.cuh); forgotten with xq_src */
    struct st_gemm_xconv gemm_x;
    volatile int *flags;         /* mapped pinned host ints the kernels write on bad input:
                                    [0] embed: token index + 1 of an id outside the vocabulary
                                    [1] kv_store: token index + 1 of a position outside the cache */
    int *flags_dev;              /* the same memory as seen by the device */
    cudaGraph_t graph;
    cudaGraphExec_t graph_exec;
    bool capturing;
    struct st_cuda_alloc *allocs;  /* (n_allocs) live buffers, for dealloc and accounting */
    int n_allocs, cap_allocs;
    size_t used_bytes[4];        /* live bytes per st_buf_use */
    /* weight loading: two pinned staging buffers used as a ring. The host
     * fills one (several threads copying from the mmap'ed file), each piece's
     * DMA queued as soon as it is there, while the other one's DMAs run */
    void *load_stage[2];         /* (ST_CUDA_LOAD_CHUNK) each, pinned; allocated at the first large import */
    cudaEvent_t load_done[2];    /* the last DMA out of load_stage[i] has finished */
    bool load_stage_tried;       /* both were asked for once (no pinned memory: the pageable path) */
    int load_cur;                /* the buffer being filled */
    size_t load_fill;            /* its bytes in use */
    st_host_copy *host_copy;     /* threads that fill the ring (base.h); made with it */
};

#define ST_CUDA_LOAD_CHUNK ((size_t)64 << 20)
#define ST_CUDA_LOAD_LARGE ((size_t)4 << 20)   /* an import that pins the ring */
#define ST_CUDA_COPY_PART ((size_t)1 << 20)    /* the least a copy thread takes of a piece */

/* Creates a backend for a CUDA ordinal (what ops->init does with dev->index). */
st_status st_cuda_backend_init_ordinal(int ordinal, const struct st_backend_config *cfg, st_backend **out);
/* The scratch of a stage configured by cfg (max_tokens 0: a 512-token
 * prefill chunk), its dequantized weights elem_bytes each: max(16 MiB, for
 * more than ST_GEMV_MAX_TOK tokens the GEMM's x conversion and weight tile,
 * st_gemm_ws_bytes(T, cfg->widen_elems, cfg->widen_cols, elem_bytes), plus
 * T x 4096 fp32 up-projection rows of matmul_swiglu). */
size_t st_cuda_scratch_bytes(const struct st_backend_config *cfg, size_t elem_bytes);
/* Grows the scratch buffer to at least `bytes`, outside any forward pass (the
 * probe's setup; not while capturing). The ops never call it. */
st_status st_cuda_scratch_reserve(st_backend *be, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_CUDA_IMPL_H */
