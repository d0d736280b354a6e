/* The CUDA backend: struct st_device_ops over kernels/cuda. One stream per
 * backend (stage), a cuBLAS handle with a fixed workspace, buffers by use,
 * graph capture of the decode step. Every entry sets its device first.
 *
 * Precision per stage (DESIGN.md):
 *  - sm52_only (a real cc 5.x card, a device whose caps say cc 5.x — emulate:
 *    tesla-m40 — or cfg.maxwell_path): fp32
 *    math over the stored weights (GEMV, SIMT GEMM, fp32 cuBLAS; quantized
 *    weights widened to fp32 in registers, or dequantized to fp32 tiles for
 *    cuBLAS), eager attention, nothing beyond sm_52.
 *  - otherwise: decode GEMVs widen float weights in registers (fp32
 *    activations); quantized weights use integer dot products over x
 *    quantized to 8 bits per 32 (cc >= 6.1; error bound in
 *    kernels/cuda/quant.cuh). Prefill GEMMs feed cuBLAS bf16 (f16) inputs when
 *    matmul_prec names the weights' own dtype — or the weights are quantized,
 *    dequantized tile by tile — and the card has tensor cores for it, fp32
 *    otherwise; flash attention when cfg.attention asks for it (cc >= 8.0).
 *
 * No op allocates: the scratch is sized at init from cfg.max_tokens
 * (st_cuda_scratch_bytes) and the GEMMs cut their work to fit it. */
#include "devices/cuda/cuda-impl.h"
#include "kernels/cuda/add.cuh"
#include "kernels/cuda/attn_eager.cuh"
#include "kernels/cuda/attn_flash.cuh"
#include "kernels/cuda/embed.cuh"
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/gemv.cuh"
#include "kernels/cuda/quant.cuh"
#include "kernels/cuda/kv_store.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/sample.cuh"
#include "kernels/cuda/swiglu.cuh"

#include <stdlib.h>
#include <string.h>

#define CUBLAS_WS_BYTES ((size_t)32 << 20)
#define SCRATCH_MIN_BYTES ((size_t)16 << 20)   /* split-KV partials and the quantized x of decode steps */
#define SCRATCH_DEFAULT_TOKENS 512             /* cfg.max_tokens 0: the default prefill chunk */
#define SWIGLU_ROWS 4096                       /* up-projection rows matmul_swiglu keeps per pass */

static const char *use_name(st_buf_use u) {
    switch (u) {
    case ST_BUF_WEIGHTS: return "weights";
    case ST_BUF_KV: return "the KV cache";
    case ST_BUF_WORKSPACE: return "workspace";
    case ST_BUF_STAGING: return "pinned staging";
    }
    return "a buffer";
}

/* rmsnorm's quantized output is for the next op alone (cuda-impl.h) */
static void xq_forget(st_backend *be) {
    be->xq_src = NULL;
    be->gemm_x.x = NULL;
}

/* Adds the op name (and the device, unless a check macro already named it). */
static st_status op_fail(st_backend *be, const char *op, st_status s) {
    if (s == ST_ERR_DEVICE || s == ST_ERR_DEVICE_OOM) return st_error_prefix("%s", op);
    return st_error_prefix("%s %s", be->label, op);
}
#define OP(be, name, expr) do { st_status s_ = (expr); if (s_ != ST_OK) return op_fail((be), (name), s_); } while (0)

/* ---- lifecycle ------------------------------------------------------------- */

static void backend_free(st_backend *be) {
    if (!be) return;
    ST_CUDA_IGNORE(cudaSetDevice(be->ordinal));
    if (be->stream) ST_CUDA_IGNORE(cudaStreamSynchronize(be->stream));
    for (int i = 0; i < be->n_allocs; i++) {
        if (be->allocs[i].use == ST_BUF_STAGING) ST_CUDA_IGNORE(cudaFreeHost(be->allocs[i].ptr));
        else ST_CUDA_IGNORE(cudaFree(be->allocs[i].ptr));
    }
    free(be->allocs);
    if (be->graph_exec) ST_CUDA_IGNORE(cudaGraphExecDestroy(be->graph_exec));
    if (be->graph) ST_CUDA_IGNORE(cudaGraphDestroy(be->graph));
    if (be->cublas) cublasDestroy(be->cublas);
    if (be->cublas_ws) ST_CUDA_IGNORE(cudaFree(be->cublas_ws));
    if (be->scratch) ST_CUDA_IGNORE(cudaFree(be->scratch));
    if (be->flags) ST_CUDA_IGNORE(cudaFreeHost((void *)be->flags));
    for (int i = 0; i < 2; i++) {
        if (be->load_stage[i]) ST_CUDA_IGNORE(cudaFreeHost(be->load_stage[i]));
        if (be->load_done[i]) ST_CUDA_IGNORE(cudaEventDestroy(be->load_done[i]));
    }
    st_host_copy_free(be->host_copy);
    if (be->stream) ST_CUDA_IGNORE(cudaStreamDestroy(be->stream));
    cudaGetLastError();
    free(be);
}

/* The inputs of prefill GEMMs over quantized weights: the stage's 16-bit
 * precision where tensor cores take it, else fp32 (exact dequantized values). */
static st_dtype quant_compute(const st_backend *be) {
    if (!be->sm52_only) {
        if (be->cfg.matmul_prec == ST_PREC_BF16 && be->gemm_bf16) return ST_DTYPE_BF16;
        if (be->cfg.matmul_prec == ST_PREC_F16 && be->gemm_f16) return ST_DTYPE_F16;
    }
    return ST_DTYPE_F32;
}

extern "C" st_status st_cuda_backend_init_ordinal(int ordinal, const struct st_backend_config *cfg, st_backend **out) {
    *out = NULL;
    st_status st = ST_OK;
    int n = 0;
    ST_CUDA_CHECK(cudaGetDeviceCount(&n));
    if (ordinal < 0 || ordinal >= n) {
        st_error_set(ST_ERR_CONFIG, "cuda:%d: no such device (%d CUDA device%s visible)", ordinal, n, n == 1 ? "" : "s");
        return st_error_hint("run 'strata inventory' to list devices; check CUDA_VISIBLE_DEVICES");
    }
    st_backend *be = (st_backend *)st_calloc(1, sizeof *be, "CUDA backend");
    if (!be) return ST_ERR_NOMEM;
    be->ordinal = ordinal;
    be->cfg = *cfg;
    struct cudaDeviceProp prop;
    ST_CUDA_CHECK_GOTO(cudaSetDevice(ordinal), st, fail);
    ST_CUDA_CHECK_GOTO(cudaGetDeviceProperties(&prop, ordinal), st, fail);
    snprintf(be->label, sizeof be->label, "cuda:%d (%s)", ordinal, prop.name);
    be->cc_major = prop.major;
    be->cc_minor = prop.minor;
    be->sm_count = prop.multiProcessorCount;
    be->sm52_only = cfg->maxwell_path || prop.major < 6;
    {
        /* programmatic dependent launch: Hopper and newer, captured into graphs from CUDA 12.3 */
        int drv = 0;
        const char *env = getenv("STRATA_PDL");
        if (cudaDriverGetVersion(&drv) != cudaSuccess) { cudaGetLastError(); drv = 0; }
        st_cuda_pdl_set(ordinal, !be->sm52_only && prop.major >= 9 && drv >= 12030 && CUDART_VERSION >= 12030 &&
                                     !(env && strcmp(env, "0") == 0));
    }
    be->gemm_bf16 = !be->sm52_only && prop.major >= 8;
    be->gemm_f16 = !be->sm52_only && prop.major >= 7;
    if (cfg->attention == ST_ATTN_FLASH) {
        if (be->sm52_only || prop.major < 8) {
            st = st_error_set(ST_ERR_CONFIG, "%s: flash attention needs compute capability 8.0 or newer (%s cc %d.%d)",
                              be->label, be->sm52_only && prop.major >= 6 ? "emulating a Maxwell card on" : "device has",
                              prop.major, prop.minor);
            st_error_hint("use attention: eager for this stage");
            goto fail;
        }
        be->flash = true;
    }
    if (cfg->kv_dtype != ST_DTYPE_F32 && cfg->kv_dtype != ST_DTYPE_F16 && cfg->kv_dtype != ST_DTYPE_BF16 &&
        cfg->kv_dtype != ST_DTYPE_Q8_0) {
        st = st_error_set(ST_ERR_CONFIG, "%s: KV cache dtype %s (F32, F16, BF16 or Q8_0)", be->label, st_dtype_name(cfg->kv_dtype));
        goto fail;
    }
    ST_CUDA_CHECK_GOTO(cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking), st, fail);
    ST_CUBLAS_CHECK_GOTO(cublasCreate(&be->cublas), st, fail);
    ST_CUBLAS_CHECK_GOTO(cublasSetStream(be->cublas, be->stream), st, fail);
    /* default math with CUBLAS_COMPUTE_32F: fp32 GEMMs stay fp32 (TF32 only with
     * COMPUTE_32F_FAST_TF32), 16-bit inputs may use tensor cores with fp32 accumulation */
    ST_CUBLAS_CHECK_GOTO(cublasSetMathMode(be->cublas, CUBLAS_DEFAULT_MATH), st, fail);
    be->cublas_ws_bytes = CUBLAS_WS_BYTES;
    ST_CUDA_CHECK_GOTO(cudaMalloc(&be->cublas_ws, be->cublas_ws_bytes), st, fail);
    ST_CUBLAS_CHECK_GOTO(cublasSetWorkspace(be->cublas, be->cublas_ws, be->cublas_ws_bytes), st, fail);
    be->scratch_bytes = st_cuda_scratch_bytes(cfg, st_dtype_block_bytes(quant_compute(be)));
    {
        const cudaError_t e = cudaMalloc(&be->scratch, be->scratch_bytes);
        if (e != cudaSuccess) {
            cudaGetLastError();
            size_t fr = 0, tot = 0;
            ST_CUDA_IGNORE(cudaMemGetInfo(&fr, &tot));
            char a[32], f[32];
            st = st_error_set(e == cudaErrorMemoryAllocation ? ST_ERR_DEVICE_OOM : ST_ERR_DEVICE,
                              "%s: out of memory allocating %s of scratch for %lld-token passes (%s free): %s", be->label,
                              st_format_bytes(be->scratch_bytes, a, sizeof a), (long long)cfg->max_tokens,
                              st_format_bytes(fr, f, sizeof f), cudaGetErrorString(e));
            st_error_hint("use a smaller prefill chunk or fewer layers on this device");
            be->scratch = NULL;
            goto fail;
        }
    }
    ST_CUDA_CHECK_GOTO(cudaHostAlloc((void **)&be->flags, 4 * sizeof(int), cudaHostAllocMapped | cudaHostAllocPortable), st, fail);
    memset((void *)be->flags, 0, 4 * sizeof(int));
    ST_CUDA_CHECK_GOTO(cudaHostGetDevicePointer((void **)&be->flags_dev, (void *)be->flags, 0), st, fail);
    *out = be;
    return ST_OK;
fail:
    backend_free(be);
    return st;
}

static st_status backend_init(const struct st_device_info *dev, const struct st_backend_config *cfg, st_backend **out) {
    if (dev->kind != ST_DEVICE_CUDA) {
        *out = NULL;
        return st_error_set(ST_ERR_INTERNAL, "CUDA backend asked to drive %s, which is not a CUDA device", dev->name);
    }
    /* the Maxwell path for a device described with cc < 6.0: a real cc 5.x card (the ordinal says so too)
     * or a newer one emulating a Maxwell catalog card (emulate: tesla-m40 gives it the card's caps) */
    struct st_backend_config c = *cfg;
    if (dev->caps.cc_major > 0 && dev->caps.cc_major < 6) c.maxwell_path = true;
    return st_cuda_backend_init_ordinal(dev->index, &c, out);
}

extern "C" size_t st_cuda_scratch_bytes(const struct st_backend_config *cfg, size_t elem_bytes) {
    const int64_t T = cfg->max_tokens > 0 ? cfg->max_tokens : SCRATCH_DEFAULT_TOKENS;
    size_t b = SCRATCH_MIN_BYTES;
    if (T > ST_GEMV_MAX_TOK) {
        const size_t gemm = st_gemm_ws_bytes(T, cfg->widen_elems, cfg->widen_cols, elem_bytes) +
                            (((size_t)T * SWIGLU_ROWS * sizeof(float) + 255) & ~(size_t)255);
        if (gemm > b) b = gemm;
    }
    return b;
}

extern "C" st_status st_cuda_scratch_reserve(st_backend *be, size_t bytes) {
    xq_forget(be);
    if (bytes <= be->scratch_bytes) return ST_OK;
    if (be->capturing) {
        st_error_set(ST_ERR_INTERNAL, "%s: workspace of %zu bytes needed while capturing a graph (%zu reserved)",
                     be->label, bytes, be->scratch_bytes);
        return st_error_hint("run one uncaptured step of the same shape before capturing");
    }
    size_t want = bytes + bytes / 4;
    ST_CUDA_CHECK(cudaStreamSynchronize(be->stream));
    ST_CUDA_CHECK(cudaFree(be->scratch));
    be->scratch = NULL;
    be->scratch_bytes = 0;
    cudaError_t e = cudaMalloc(&be->scratch, want);
    if (e != cudaSuccess) {
        cudaGetLastError();
        size_t fr = 0, tot = 0;
        ST_CUDA_IGNORE(cudaMemGetInfo(&fr, &tot));
        char a[32], f[32];
        st_error_set(ST_ERR_DEVICE_OOM, "%s: out of memory growing the workspace to %s (%s free)", be->label,
                     st_format_bytes(want, a, sizeof a), st_format_bytes(fr, f, sizeof f));
        return st_error_hint("use a smaller prefill chunk or fewer layers on this device");
    }
    be->scratch_bytes = want;
    return ST_OK;
}

/* ---- memory ---------------------------------------------------------------- */

static st_status be_alloc(st_backend *be, size_t bytes, st_buf_use use, void **out) {
    xq_forget(be);
    *out = NULL;
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (be->n_allocs == be->cap_allocs) {
        int cap = be->cap_allocs ? be->cap_allocs * 2 : 64;
        struct st_cuda_alloc *a = (struct st_cuda_alloc *)realloc(be->allocs, (size_t)cap * sizeof *a);
        if (!a) return st_error_set(ST_ERR_NOMEM, "%s: out of host memory tracking buffers", be->label);
        be->allocs = a;
        be->cap_allocs = cap;
    }
    void *p = NULL;
    const size_t asked = bytes ? bytes : 1;
    /* STRATA_FAULT=dev_alloc:N (tests/gpu/faults.sh) fails it as an out-of-memory would */
    cudaError_t e = st_fault_hit(ST_FAULT_DEV_ALLOC, use_name(use)) ? cudaErrorMemoryAllocation
                  : use == ST_BUF_STAGING ? cudaHostAlloc(&p, asked, cudaHostAllocPortable) : cudaMalloc(&p, asked);
    if (e != cudaSuccess) {
        cudaGetLastError();   /* allocation failures are not sticky: the device stays usable */
        char a[32], f[32], t[32];
        if (use == ST_BUF_STAGING) {
            st_error_set(ST_ERR_NOMEM, "%s: cannot pin %s of host memory for %s: %s", be->label,
                         st_format_bytes(asked, a, sizeof a), use_name(use), cudaGetErrorString(e));
            return st_error_hint("pinned memory is limited by RAM and 'ulimit -l'; use smaller link buffers");
        }
        size_t fr = 0, tot = 0;
        ST_CUDA_IGNORE(cudaMemGetInfo(&fr, &tot));
        cudaGetLastError();
        st_error_set(e == cudaErrorMemoryAllocation ? ST_ERR_DEVICE_OOM : ST_ERR_DEVICE,
                     "%s: out of memory allocating %s for %s: %s free of %s (%s)", be->label,
                     st_format_bytes(asked, a, sizeof a), use_name(use), st_format_bytes(fr, f, sizeof f),
                     st_format_bytes(tot, t, sizeof t), cudaGetErrorString(e));
        return st_error_hint("put fewer layers on this device, shorten the context, or lower its memory cap in the deployment");
    }
    be->allocs[be->n_allocs++] = (struct st_cuda_alloc){p, asked, use};
    be->used_bytes[use] += asked;
    *out = p;
    return ST_OK;
}

static void be_dealloc(st_backend *be, void *ptr) {
    xq_forget(be);
    if (!ptr) return;
    ST_CUDA_IGNORE(cudaSetDevice(be->ordinal));
    for (int i = 0; i < be->n_allocs; i++) {
        if (be->allocs[i].ptr != ptr) continue;
        /* the stream may still read it */
        ST_CUDA_IGNORE(cudaStreamSynchronize(be->stream));
        if (be->allocs[i].use == ST_BUF_STAGING) ST_CUDA_IGNORE(cudaFreeHost(ptr));
        else ST_CUDA_IGNORE(cudaFree(ptr));
        be->used_bytes[be->allocs[i].use] -= be->allocs[i].bytes;
        be->allocs[i] = be->allocs[--be->n_allocs];
        return;
    }
    ST_WARN("%s: dealloc of %p, which this backend did not allocate (ignored)", be->label, ptr);
}

/* Reports what the kernels flagged on bad input since the last check. */
static st_status check_flags(st_backend *be) {
    const int bad_id = be->flags[0], bad_pos = be->flags[1];
    if (!bad_id && !bad_pos) return ST_OK;
    be->flags[0] = be->flags[1] = 0;
    if (bad_id) {
        st_error_set(ST_ERR_USAGE, "%s embed: token id outside the vocabulary at token index %d of a batch", be->label,
                     bad_id - 1);
        return st_error_hint("the ids come from a tokenizer of another model, or the model's vocab size is wrong");
    }
    st_error_set(ST_ERR_USAGE, "%s kv_store: position outside the KV cache at token index %d of a batch: the context is full",
                 be->label, bad_pos - 1);
    return st_error_hint("raise the context length in the deployment (generation.context) or shorten the prompt");
}

static st_status be_download(st_backend *be, void *dst_host, const void *src, size_t bytes) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (bytes) ST_CUDA_CHECK(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, be->stream));
    ST_CUDA_CHECK(cudaStreamSynchronize(be->stream));
    return check_flags(be);
}

static st_status be_sync(st_backend *be) {
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    ST_CUDA_CHECK(cudaStreamSynchronize(be->stream));
    return check_flags(be);
}

/* The staging ring: two pinned buffers. Every piece of a host copy is
 * copied into the buffer being filled (by the pool's threads, parts of at
 * least ST_CUDA_COPY_PART bytes; pread from the file behind the mapping where
 * fd >= 0) and its DMA queued at
 * once, so the host fills one buffer while the other one's DMAs run. The
 * source may change once this returns: it has been copied. */
struct ring_stats { double t_copy, t_wait; int threads; };
static st_status ring_copy(st_backend *be, void *dst, const void *src, size_t bytes, int fd, uint64_t file_off,
                           struct ring_stats *st) {
    for (size_t off = 0; off < bytes;) {
        if (be->load_fill == ST_CUDA_LOAD_CHUNK) {   /* full: on to the other buffer once its last DMA has read it */
            be->load_cur ^= 1;
            be->load_fill = 0;
            const double tw = st_time_s();
            ST_CUDA_CHECK(cudaEventSynchronize(be->load_done[be->load_cur]));
            st->t_wait += st_time_s() - tw;
        }
        const int k = be->load_cur;
        const size_t n = ST_MIN(ST_CUDA_LOAD_CHUNK - be->load_fill, bytes - off);
        uint8_t *stage = (uint8_t *)be->load_stage[k] + be->load_fill;
        const double tc = st_time_s();
        st->threads = st_host_copy_run(be->host_copy, stage, (const uint8_t *)src + off, n, fd, file_off + off,
                                       ST_CUDA_COPY_PART);
        st->t_copy += st_time_s() - tc;
        ST_CUDA_CHECK(cudaMemcpyAsync((uint8_t *)dst + off, stage, n, cudaMemcpyHostToDevice, be->stream));
        ST_CUDA_CHECK(cudaEventRecord(be->load_done[k], be->stream));
        be->load_fill = ST_MIN(ST_CUDA_LOAD_CHUNK, (be->load_fill + n + 255) & ~(size_t)255);   /* pieces 256-aligned */
        off += n;
    }
    return ST_OK;
}

static bool ring_ready(const st_backend *be) { return be->load_stage[0] && be->load_stage[1] && !be->capturing; }

static st_status be_upload(st_backend *be, void *dst, const void *src_host, size_t bytes) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (!bytes) return ST_OK;
    /* pageable memory through the ring where there is one: a pageable cudaMemcpyAsync waits for
     * the stream, and one per norm or bias drained the weight load's pipeline several times a
     * layer (bench/RESULTS.md, twelfth session); pinned memory (the pass inputs) directly */
    cudaPointerAttributes at;
    if (ring_ready(be) && cudaPointerGetAttributes(&at, src_host) == cudaSuccess && at.type == cudaMemoryTypeUnregistered) {
        struct ring_stats st = {0, 0, 0};
        return ring_copy(be, dst, src_host, bytes, -1, 0, &st);
    }
    cudaGetLastError();
    ST_CUDA_CHECK(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyHostToDevice, be->stream));
    return ST_OK;
}

/* Weights from the (mmap'ed) model file, through the staging ring (loading
 * runs near the host-to-device bandwidth), the file read by pread where the
 * loader registered the mapping. The ring's buffers are pinned at the first
 * large import; before that, and where no pinned memory is to be had, the
 * pageable path. */
static st_status be_import_host(st_backend *be, const void *host_ptr, size_t bytes, st_buf_use use, void **out) {
    xq_forget(be);
    const double t0 = st_time_s();
    st_status s = be_alloc(be, bytes, use, out);
    if (s != ST_OK) return s;
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    const bool large = bytes >= ST_CUDA_LOAD_LARGE;
    /* both buffers, tried once (until 2026-12-07 this loop stopped after the first, so every
     * import took the pageable path: 6-9 GB/s on an H100 host) */
    if (large && !be->load_stage_tried) {
        for (int i = 0; i < 2; i++) {
            if (!be->load_stage[i] && cudaHostAlloc(&be->load_stage[i], ST_CUDA_LOAD_CHUNK, cudaHostAllocPortable) != cudaSuccess) {
                cudaGetLastError();
                be->load_stage[i] = NULL;
            }
            if (be->load_stage[i] && !be->load_done[i]) ST_CUDA_CHECK(cudaEventCreateWithFlags(&be->load_done[i], cudaEventDisableTiming));
        }
        if (ring_ready(be)) be->host_copy = st_host_copy_new(16);   /* NULL: one thread copies */
        be->load_stage_tried = true;
    }
    if (!ring_ready(be)) {
        s = be_upload(be, *out, host_ptr, bytes);
        if (s != ST_OK) { be_dealloc(be, *out); *out = NULL; }
        return s;
    }
    const double t_alloc = st_time_s() - t0;
    int fd = -1;
    uint64_t file_off = 0;
    if (large && !st_filemap_find(host_ptr, bytes, &fd, &file_off)) fd = -1;   /* not a registered file: copy the memory */
    struct ring_stats st = {0, 0, 0};
    s = ring_copy(be, *out, host_ptr, bytes, fd, file_off, &st);
    if (s != ST_OK) { be_dealloc(be, *out); *out = NULL; return s; }
    if (large)   /* where the time goes, at `strata -v -v` */
        ST_DEBUG("%s: import of %zu bytes: allocation %.2f ms, host copies %.2f ms (%.1f GB/s, %d threads, %s), "
                 "waiting for a staging buffer's last DMA %.2f ms", be->label, bytes, 1e3 * t_alloc, 1e3 * st.t_copy,
                 st.t_copy > 0 ? (double)bytes / st.t_copy / 1e9 : 0.0, st.threads, fd >= 0 ? "pread" : "memcpy",
                 1e3 * st.t_wait);
    return ST_OK;
}

/* ---- kernels --------------------------------------------------------------- */

static st_status be_embed(st_backend *be, const struct st_weight *table, const int32_t *ids, int64_t n_tok, float *out) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    OP(be, "embed", st_embed_cuda(table->data, table->dtype, table->rows, table->cols, ids, n_tok, out, be->flags_dev,
                                  be->stream));
    return ST_OK;
}

/* Quantized weights on the integer path: sm_61+ (dp4a), never the Maxwell path. */
static bool gemv_int8(const st_backend *be) {
    return !be->sm52_only && (be->cc_major > 6 || (be->cc_major == 6 && be->cc_minor >= 1));
}

static st_status be_rmsnorm(st_backend *be, const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out) {
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    xq_forget(be);
    /* a decode row the next matmul would quantize: done by this launch */
    if (be->saw_quant_x && gemv_int8(be) && rows <= ST_GEMV_MAX_TOK && st_gemv_xq_bytes(rows, n) <= be->scratch_bytes &&
        st_rmsnorm_can_quantize(x, w, rows, n, out, be->scratch)) {
        OP(be, "rmsnorm", st_rmsnorm_quantize_cuda(x, w, rows, n, eps, out, be->scratch, be->stream));
        be->xq_src = out;
        be->xq_rows = rows;
        be->xq_cols = n;
        return ST_OK;
    }
    OP(be, "rmsnorm", st_rmsnorm_cuda(x, w, rows, n, eps, out, be->stream));
    return ST_OK;
}

/* x quantized for the integer GEMV into the scratch (from offset 0), or NULL
 * where the GEMV multiplies fp32 x (float weights, the Maxwell path). */
static st_status decode_xq(st_backend *be, bool any_quant, const float *x, int64_t cols, int64_t n_tok, const void **xq,
                           size_t *used) {
    *xq = NULL;
    *used = 0;
    const bool fused = be->xq_src == x && be->xq_rows == n_tok && be->xq_cols == cols;
    xq_forget(be);
    if (!any_quant || !gemv_int8(be)) return ST_OK;
    const size_t b = st_gemv_xq_bytes(n_tok, cols);
    if (!b || b > be->scratch_bytes) return ST_OK;   /* the fp32 path needs no scratch */
    if (!fused) {
        st_status s = st_gemv_quantize_x_cuda(x, n_tok, cols, be->scratch, be->stream);
        if (s != ST_OK) return s;
    }
    be->saw_quant_x = true;
    *xq = be->scratch;
    *used = (b + 255) & ~(size_t)255;
    return ST_OK;
}

/* y (n_tok, rows r0 .. r0 + rn - 1 of w; row stride ldy) = x W^T (+ bias
 * rows), any token count, in the scratch region ws. */
static st_status gemm_rows(st_backend *be, const struct st_weight *w, int64_t r0, int64_t rn, const float *bias,
                           const float *x, int64_t n_tok, float *y, int64_t ldy, bool acc, struct st_gemm_ws *ws) {
    const void *wp = (const uint8_t *)w->data + (size_t)r0 * st_dtype_row_bytes(w->dtype, w->cols);
    const float *b = bias ? bias + r0 : NULL;
    if (st_q_is_quant(w->dtype))
        return st_gemm_quant_cuda(be->cublas, wp, w->dtype, rn, w->cols, b, x, n_tok, y, ldy, acc, quant_compute(be), ws,
                                  be->stream);
    bool cublas = w->dtype == ST_DTYPE_F32;
    if (!be->sm52_only) {
        if (w->dtype == ST_DTYPE_BF16 && be->cfg.matmul_prec == ST_PREC_BF16 && be->gemm_bf16) cublas = true;
        if (w->dtype == ST_DTYPE_F16 && be->cfg.matmul_prec == ST_PREC_F16 && be->gemm_f16) cublas = true;
    }
    if (!cublas) return st_gemm_simt_cuda(wp, w->dtype, rn, w->cols, b, x, n_tok, y, ldy, acc, be->stream);
    return st_gemm_cublas_cuda(be->cublas, wp, w->dtype, rn, w->cols, b, x, n_tok, y, ldy, acc, ws, be->stream);
}

/* y = x W^T (+ bias), or y += (acc), past the GEMV's token count. The GEMM's
 * work overwrites the scratch, except for x converted to 16 bits, which the
 * next GEMM of the same x (q, k, v; gate, up) takes as it is: nothing but a
 * matmul runs between them (every other op forgets it). */
static st_status gemm_whole(st_backend *be, const struct st_weight *w, const float *bias, const float *x, int64_t n_tok,
                            float *y, bool acc) {
    const struct st_gemm_xconv conv = be->gemm_x;
    xq_forget(be);
    struct st_gemm_ws ws = {be->scratch, be->scratch_bytes, conv};
    OP(be, "matmul", gemm_rows(be, w, 0, w->rows, bias, x, n_tok, y, w->rows, acc, &ws));
    be->gemm_x = ws.conv;
    return ST_OK;
}

static st_status be_matmul(st_backend *be, const struct st_weight *w, const float *bias, const float *x, int64_t n_tok,
                           float *y) {
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (n_tok <= ST_GEMV_MAX_TOK) {
        const void *xq;
        size_t used;
        OP(be, "matmul", decode_xq(be, st_q_is_quant(w->dtype), x, w->cols, n_tok, &xq, &used));
        OP(be, "matmul", st_gemv_cuda(w->data, w->dtype, w->rows, w->cols, bias, x, xq, n_tok, y, be->sm_count, be->stream));
        return ST_OK;
    }
    return gemm_whole(be, w, bias, x, n_tok, y, false);
}

/* y[t][r] += sum_c W[r][c] x[t][c] (+ bias[r]): an output projection and its
 * residual add. One token without a bias: the GEMV's epilogue (it reads y[r]
 * as its bias, then writes y[r], in one thread); a few tokens: the GEMV into
 * the scratch and an add; more: the GEMM accumulating into y. */
static st_status be_matmul_add(st_backend *be, const struct st_weight *w, const float *bias, const float *x, int64_t n_tok,
                               float *y) {
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (n_tok > ST_GEMV_MAX_TOK) return gemm_whole(be, w, bias, x, n_tok, y, true);
    if (n_tok == 1 && !bias) return be_matmul(be, w, y, x, 1, y);
    const void *xq;
    size_t used;
    OP(be, "matmul_add", decode_xq(be, st_q_is_quant(w->dtype), x, w->cols, n_tok, &xq, &used));
    const size_t hb = (size_t)(n_tok * w->rows) * sizeof(float);
    if (used + hb > be->scratch_bytes)
        return st_error_set(ST_ERR_INTERNAL, "%s matmul_add: %lld x %lld outputs do not fit the %zu-byte scratch", be->label,
                            (long long)n_tok, (long long)w->rows, be->scratch_bytes);
    float *h = (float *)((uint8_t *)be->scratch + used);
    OP(be, "matmul_add", st_gemv_cuda(w->data, w->dtype, w->rows, w->cols, bias, x, xq, n_tok, h, be->sm_count, be->stream));
    OP(be, "matmul_add", st_add_cuda(y, h, n_tok * w->rows, be->stream));
    return ST_OK;
}

static_assert(ST_MATMUL_MULTI_MAX <= ST_GEMV_MAX_JOBS, "matmul_multi groups must fit one grouped GEMV launch");

/* Decode: one grouped GEMV launch per weight dtype (one in all for a uniform
 * file; Q4_K_M's q/k and v are two), x quantized once for all of them.
 * Several tokens past the GEMV's reach: matmul per job. */
static st_status be_matmul_multi(st_backend *be, const struct st_matmul_job *jobs, int n_jobs, const float *x, int64_t n_tok) {
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (n_jobs < 1 || n_jobs > ST_MATMUL_MULTI_MAX)
        return st_error_set(ST_ERR_INTERNAL, "%s matmul_multi: %d matrices (1 to %d)", be->label, n_jobs, ST_MATMUL_MULTI_MAX);
    const struct st_weight *w0 = jobs[0].w;
    bool any_quant = false;
    for (int i = 0; i < n_jobs; i++) {
        if (jobs[i].w->cols != w0->cols)
            return st_error_set(ST_ERR_INTERNAL, "%s matmul_multi: matrix %d has %lld columns, matrix 0 has %lld", be->label,
                                i, (long long)jobs[i].w->cols, (long long)w0->cols);
        any_quant = any_quant || st_q_is_quant(jobs[i].w->dtype);
    }
    if (n_tok > ST_GEMV_MAX_TOK) {
        for (int i = 0; i < n_jobs; i++) {
            const st_status s = be_matmul(be, jobs[i].w, jobs[i].bias, x, n_tok, jobs[i].y);
            if (s != ST_OK) return s;
        }
        return ST_OK;
    }
    const void *xq;
    size_t used;
    OP(be, "matmul_multi", decode_xq(be, any_quant, x, w0->cols, n_tok, &xq, &used));
    bool done[ST_MATMUL_MULTI_MAX] = {false};
    for (int i = 0; i < n_jobs; i++) {
        if (done[i]) continue;
        struct st_gemv_job g[ST_GEMV_MAX_JOBS];
        int n = 0;
        for (int k = i; k < n_jobs; k++) {
            if (done[k] || jobs[k].w->dtype != jobs[i].w->dtype) continue;
            g[n++] = (struct st_gemv_job){jobs[k].w->data, jobs[k].bias, jobs[k].y, jobs[k].w->rows};
            done[k] = true;
        }
        OP(be, "matmul_multi", st_gemv_multi_cuda(g, n, jobs[i].w->dtype, w0->cols, x, xq, n_tok, be->sm_count, be->stream));
    }
    return ST_OK;
}

/* Decode: one GEMV launch over gate and up rows with the SwiGLU epilogue
 * (gate and up of different dtypes: two launches, up into the scratch, and a
 * SwiGLU pass). Prefill: gate and up GEMMs over blocks of rows, up into the
 * scratch's last part, the SwiGLU epilogue per block. */
static st_status be_matmul_swiglu(st_backend *be, const struct st_weight *gate, const float *gate_bias,
                                  const struct st_weight *up, const float *up_bias, const float *x, int64_t n_tok,
                                  float *out) {
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (gate->rows != up->rows || gate->cols != up->cols)
        return st_error_set(ST_ERR_INTERNAL, "%s matmul_swiglu: gate is %lld x %lld, up is %lld x %lld", be->label,
                            (long long)gate->rows, (long long)gate->cols, (long long)up->rows, (long long)up->cols);
    const int64_t rows = gate->rows, cols = gate->cols;
    if (n_tok <= 0 || rows <= 0) return ST_OK;
    if (n_tok <= ST_GEMV_MAX_TOK) {
        const void *xq;
        size_t used;
        OP(be, "matmul_swiglu",
           decode_xq(be, st_q_is_quant(gate->dtype) || st_q_is_quant(up->dtype), x, cols, n_tok, &xq, &used));
        if (gate->dtype == up->dtype) {
            OP(be, "matmul_swiglu", st_gemv_swiglu_cuda(gate->data, gate_bias, up->data, up_bias, gate->dtype, rows, cols,
                                                        x, xq, n_tok, out, be->sm_count, be->stream));
            return ST_OK;
        }
        const size_t ub = (size_t)(n_tok * rows) * sizeof(float);
        if (used + ub > be->scratch_bytes)
            return st_error_set(ST_ERR_INTERNAL, "%s matmul_swiglu: %lld up rows do not fit the %zu-byte scratch", be->label,
                                (long long)rows, be->scratch_bytes);
        float *u = (float *)((uint8_t *)be->scratch + used);
        OP(be, "matmul_swiglu", st_gemv_cuda(gate->data, gate->dtype, rows, cols, NULL, x, xq, n_tok, out, be->sm_count,
                                             be->stream));
        OP(be, "matmul_swiglu", st_gemv_cuda(up->data, up->dtype, rows, cols, NULL, x, xq, n_tok, u, be->sm_count,
                                             be->stream));
        OP(be, "matmul_swiglu", st_swiglu_rows_cuda(out, rows, u, rows, gate_bias, up_bias, n_tok, rows, be->stream));
        return ST_OK;
    }
    xq_forget(be);
    /* the scratch: [GEMM work | up rows]; the GEMM keeps what it needs for one pass when it can */
    const size_t gemm_want =
        st_gemm_ws_bytes(n_tok, be->cfg.widen_elems, be->cfg.widen_cols, st_dtype_block_bytes(quant_compute(be)));
    size_t u_bytes = be->scratch_bytes > gemm_want + (size_t)n_tok * 4 * 256 ? be->scratch_bytes - gemm_want
                                                                             : be->scratch_bytes / 2;
    u_bytes &= ~(size_t)255;
    int64_t tc = n_tok, ru = (int64_t)(u_bytes / ((size_t)n_tok * sizeof(float)));
    if (ru < ST_MIN(rows, (int64_t)256)) {
        /* too many tokens for a useful block of rows: fewer tokens per pass */
        ru = ST_MIN(rows, (int64_t)256);
        tc = (int64_t)ST_MAX((size_t)1, u_bytes / ((size_t)ru * sizeof(float)));
    }
    if (ru > rows) ru = rows;
    struct st_gemm_ws ws = {be->scratch, be->scratch_bytes - u_bytes, {NULL, 0, 0, ST_DTYPE_F32}};   /* gate's x serves up */
    float *u = (float *)((uint8_t *)be->scratch + ws.bytes);
    for (int64_t t0 = 0; t0 < n_tok; t0 += tc) {
        const int64_t tn = ST_MIN(tc, n_tok - t0);
        for (int64_t r0 = 0; r0 < rows; r0 += ru) {
            const int64_t rn = ST_MIN(ru, rows - r0);
            float *o = out + t0 * rows + r0;
            OP(be, "matmul_swiglu", gemm_rows(be, gate, r0, rn, NULL, x + t0 * cols, tn, o, rows, false, &ws));
            OP(be, "matmul_swiglu", gemm_rows(be, up, r0, rn, NULL, x + t0 * cols, tn, u, rn, false, &ws));
            OP(be, "matmul_swiglu", st_swiglu_rows_cuda(o, rows, u, rn, gate_bias ? gate_bias + r0 : NULL,
                                                        up_bias ? up_bias + r0 : NULL, tn, rn, be->stream));
        }
    }
    return ST_OK;
}

static st_status be_rope(st_backend *be, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                         const struct st_rope_params *rp) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    OP(be, "rope", st_rope_cuda(x, n_tok, n_heads, head_dim, pos, rp->theta, rp->layout, rp->freq_factors, be->stream));
    return ST_OK;
}

static st_status be_kv_store(st_backend *be, const struct st_kv_layer *kv, const float *k, const float *v, int64_t n_tok,
                             const int32_t *pos, const int32_t *slot) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    OP(be, "kv_store", st_kv_store_cuda(kv->k, kv->v, kv->dtype, kv->n_slots, kv->n_ctx, kv->n_head_kv, kv->head_dim, k, v,
                                        n_tok, pos, slot, be->flags_dev + 1, be->stream));
    return ST_OK;
}

static st_status be_rope_kv_store(st_backend *be, const struct st_kv_layer *kv, float *q, float *k, const float *v,
                                  int64_t n_tok, int64_t n_head, const int32_t *pos, const int32_t *slot,
                                  const struct st_rope_params *rp) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    OP(be, "rope_kv_store", st_rope_kv_store_cuda(q, k, v, n_tok, n_head, kv->n_head_kv, kv->head_dim, pos, slot, rp->theta,
                                                  rp->layout, rp->freq_factors, kv->k, kv->v, kv->dtype, kv->n_slots,
                                                  kv->n_ctx, be->flags_dev + 1, be->stream));
    return ST_OK;
}

static st_status be_attention(st_backend *be, const struct st_kv_layer *kv, const float *q, int64_t n_tok, int64_t n_head,
                              const int32_t *pos, const int32_t *slot, int64_t n_seq, float scale, float *out) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (be->flash && st_attn_flash_supported(kv->head_dim, kv->dtype)) {
        /* decode (one token, or a batched step of one token per sequence): split-KV
         * partials live in the scratch buffer (reserved at init, never grown here) */
        const bool decode = n_tok <= ST_GEMV_MAX_TOK || n_seq > 1;
        const size_t part_bytes = decode ? be->scratch_bytes : 0;
        OP(be, "attention", st_attn_flash_cuda(kv->k, kv->v, kv->dtype, kv->n_slots, kv->n_ctx, kv->n_head_kv,
                                               kv->head_dim, q, n_tok, n_head, pos, slot, n_seq, scale, out,
                                               part_bytes ? (float *)be->scratch : NULL, part_bytes, be->sm_count,
                                               be->cc_major, be->stream));
        return ST_OK;
    }
    OP(be, "attention", st_attn_eager_cuda(kv->k, kv->v, kv->dtype, kv->n_slots, kv->n_ctx, kv->n_head_kv, kv->head_dim, q,
                                           n_tok, n_head, pos, slot, scale, out, be->stream));
    return ST_OK;
}

static st_status be_swiglu(st_backend *be, const float *gate, const float *up, int64_t n, float *out) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    OP(be, "swiglu", st_swiglu_cuda(gate, up, n, out, be->stream));
    return ST_OK;
}

static st_status be_add(st_backend *be, float *x, const float *y, int64_t n) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    OP(be, "add", st_add_cuda(x, y, n, be->stream));
    return ST_OK;
}

static st_status be_argmax(st_backend *be, const float *logits, int64_t n_vocab, int32_t *out_id) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    OP(be, "argmax", st_argmax_cuda(logits, n_vocab, out_id, be->stream));
    return ST_OK;
}

static st_status be_argmax_rows(st_backend *be, const float *logits, int64_t n_rows, int64_t n_vocab, int32_t *out_ids) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    OP(be, "argmax", st_argmax_rows_cuda(logits, n_rows, n_vocab, out_ids, be->stream));
    return ST_OK;
}

static st_status be_sample(st_backend *be, const float *logits, int64_t n_vocab, const struct st_sample_params *sp,
                           const int32_t *pos, int32_t *out_id) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    OP(be, "sample", st_sample_cuda(logits, n_vocab, sp, pos, out_id, be->stream));
    return ST_OK;
}

/* ---- graphs ---------------------------------------------------------------- */

static st_status be_capture_begin(st_backend *be) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (be->capturing) return st_error_set(ST_ERR_INTERNAL, "%s: capture_begin while already capturing", be->label);
    ST_CUDA_CHECK(cudaStreamBeginCapture(be->stream, cudaStreamCaptureModeThreadLocal));
    be->capturing = true;
    return ST_OK;
}

static st_status be_capture_end(st_backend *be) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (!be->capturing) return st_error_set(ST_ERR_INTERNAL, "%s: capture_end without capture_begin", be->label);
    be->capturing = false;
    cudaGraph_t g = NULL;
    ST_CUDA_CHECK(cudaStreamEndCapture(be->stream, &g));
    if (be->graph_exec) {
        /* same topology (the usual case: the same step at a new position) updates in place */
#if CUDART_VERSION >= 12000
        cudaGraphExecUpdateResultInfo info;
        const cudaError_t ue = cudaGraphExecUpdate(be->graph_exec, g, &info);
#else
        cudaGraphNode_t err_node;
        cudaGraphExecUpdateResult info;
        const cudaError_t ue = cudaGraphExecUpdate(be->graph_exec, g, &err_node, &info);
#endif
        if (ue == cudaSuccess) {
            if (be->graph) ST_CUDA_IGNORE(cudaGraphDestroy(be->graph));
            be->graph = g;
            return ST_OK;
        }
        cudaGetLastError();
        ST_CUDA_IGNORE(cudaGraphExecDestroy(be->graph_exec));
        be->graph_exec = NULL;
    }
    if (be->graph) ST_CUDA_IGNORE(cudaGraphDestroy(be->graph));
    be->graph = g;
    ST_CUDA_CHECK(cudaGraphInstantiateWithFlags(&be->graph_exec, g, 0));
    return ST_OK;
}

static st_status be_replay(st_backend *be) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (!be->graph_exec) return st_error_set(ST_ERR_INTERNAL, "%s: replay before any capture", be->label);
    ST_CUDA_CHECK(cudaGraphLaunch(be->graph_exec, be->stream));
    return ST_OK;
}

/* ---- timing ------------------------------------------------------------------ */

struct st_event { cudaEvent_t ev; };

static st_status be_event_create(st_backend *be, st_event **out) {
    *out = NULL;
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    st_event *e = (st_event *)st_calloc(1, sizeof *e, "CUDA event");
    if (!e) return ST_ERR_NOMEM;
    cudaError_t err = cudaEventCreate(&e->ev);
    if (err != cudaSuccess) {
        free(e);
        ST_CUDA_CHECK(err);
    }
    *out = e;
    return ST_OK;
}

static void be_event_free(st_backend *be, st_event *ev) {
    if (!ev) return;
    ST_CUDA_IGNORE(cudaSetDevice(be->ordinal));
    ST_CUDA_IGNORE(cudaEventDestroy(ev->ev));
    free(ev);
}

static st_status be_event_record(st_backend *be, st_event *ev) {
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    ST_CUDA_CHECK(cudaEventRecord(ev->ev, be->stream));
    return ST_OK;
}

static st_status be_event_elapsed_ms(st_backend *be, st_event *from, st_event *to, double *ms) {
    float f = 0.0f;
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    ST_CUDA_CHECK(cudaEventSynchronize(to->ev));
    ST_CUDA_CHECK(cudaEventElapsedTime(&f, from->ev, to->ev));
    *ms = f;
    return check_flags(be);
}

/* ---- pipelining -------------------------------------------------------------- */

static st_status be_download_async(st_backend *be, void *dst_host, const void *src, size_t bytes) {
    xq_forget(be);
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    if (bytes) ST_CUDA_CHECK(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDeviceToHost, be->stream));
    return ST_OK;
}

static st_status be_event_sync(st_backend *be, st_event *ev) {
    ST_CUDA_CHECK(cudaSetDevice(be->ordinal));
    ST_CUDA_CHECK(cudaEventSynchronize(ev->ev));
    return check_flags(be);
}

static const struct st_device_ops cuda_ops = {
    .name = "cuda",
    .matmul_adds_in_place = true,   /* every GEMV epilogue reads bias[r] and then writes y[r], in one thread */
    .grouped_any_tokens = false,    /* prefill: whole-matrix GEMMs (cuBLAS), gate and up each one */
    .init = backend_init,
    .free = backend_free,
    .alloc = be_alloc,
    .dealloc = be_dealloc,
    .upload = be_upload,
    .download = be_download,
    .sync = be_sync,
    .embed = be_embed,
    .rmsnorm = be_rmsnorm,
    .matmul = be_matmul,
    .rope = be_rope,
    .kv_store = be_kv_store,
    .attention = be_attention,
    .swiglu = be_swiglu,
    .add = be_add,
    .argmax = be_argmax,
    .argmax_rows = be_argmax_rows,
    .import_host = be_import_host,
    .matmul_add = be_matmul_add,
    .rope_kv_store = be_rope_kv_store,
    .capture_begin = be_capture_begin,
    .capture_end = be_capture_end,
    .replay = be_replay,
    .matmul_multi = be_matmul_multi,
    .matmul_swiglu = be_matmul_swiglu,
    .sample = be_sample,
    .event_create = be_event_create,
    .event_free = be_event_free,
    .event_record = be_event_record,
    .event_elapsed_ms = be_event_elapsed_ms,
    .download_async = be_download_async,
    .event_sync = be_event_sync,
};

extern "C" const struct st_device_ops *st_device_ops_cuda(void) { return &cuda_ops; }
