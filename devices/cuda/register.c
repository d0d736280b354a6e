/* The CUDA backend's registration (devices/registry.c lists it), compiled into
 * every build: what each code path runs and the capabilities of a card of a
 * compute capability are there even without CUDA, so that a what-if plan of
 * catalog cards (which are CUDA cards) says what they would run. The hooks —
 * ops table, discovery, probes, memory, links, bandwidth — exist only in a
 * CUDA build (STRATA_HAVE_CUDA); without it they are NULL and built is false. */
#include "devices/inventory-impl.h"

#include <string.h>

/* Both paths run every dtype model/model.h names (kernels/cuda: gemv.cu and
 * gemv_quant.cu for decode, gemm.cu for prefill, embed.cu):
 *  - maxwell (cc < 6.0, or emulate: a Maxwell catalog card): sm_52 code only,
 *    fp32 math, quantized weights widened to fp32 in registers (GEMV) or
 *    dequantized to fp32 tiles (GEMM), eager attention, no flash kernel;
 *  - default (cc >= 6.0): integer dot products over 8-bit activations for
 *    quantized weights from cc 6.1, tensor-core GEMMs from 7.0, flash
 *    attention from 8.0 (caps.flash_attn). */
#define CUDA_OPS_COMMON                                                                                             \
    (ST_BACKEND_OP_ARGMAX_ROWS | ST_BACKEND_OP_IMPORT_HOST | ST_BACKEND_OP_GRAPHS | ST_BACKEND_OP_MATMUL_MULTI |     \
     ST_BACKEND_OP_MATMUL_SWIGLU | ST_BACKEND_OP_SAMPLE | ST_BACKEND_OP_EVENTS | ST_BACKEND_OP_PIPELINE |            \
     ST_BACKEND_OP_KV_Q8 | ST_BACKEND_OP_ROPE_KV_STORE | ST_BACKEND_OP_MATMUL_ADD)
static const struct st_backend_path cuda_paths[] = {
    {"maxwell", 0, ST_DTYPE_ALL, CUDA_OPS_COMMON,
     "sm_52 code only: fp32 math, quantized weights widened to fp32, eager attention"},
    {"default", 60, ST_DTYPE_ALL, CUDA_OPS_COMMON | ST_BACKEND_OP_FLASH_ATTN,
     "integer dot products for quantized weights (cc >= 6.1), tensor-core GEMMs (cc >= 7.0), flash attention "
     "(cc >= 8.0)"},
};

struct st_caps st_caps_from_cc(int cc_major, int cc_minor) {
    struct st_caps c = {0};
    int cc = cc_major * 10 + cc_minor;
    c.cc_major = cc_major;
    c.cc_minor = cc_minor;
    /* 6.1 (GP102/104/106/107: P40, GTX 10x0) runs fp16 at 1/64 rate: not "fast" */
    c.fp16_arith = cc >= 53 && cc != 61;
    c.tensor_cores = cc >= 70;
    /* fp16 inputs with fp32 accumulation at tensor-core rate (Volta mma.sync onwards) */
    c.fp32_accum_fp16 = cc >= 70;
    c.bf16 = cc >= 80;
    c.flash_attn = cc >= 80;
    const struct st_backend_path *p = &cuda_paths[0];
    for (size_t i = 1; i < ST_ARRAY_LEN(cuda_paths); i++)
        if (cuda_paths[i].cc_min <= cc) p = &cuda_paths[i];
    c.weight_dtypes = p->weight_dtypes;
    return c;
}

#ifdef STRATA_HAVE_CUDA

static const struct st_device_ops *cuda_ops(void) { return st_device_ops_cuda(); }

static st_status cuda_discover(void *topo, struct st_device_info **devs, int *n_devs, struct st_p2p **p2p,
                               char *reason, size_t reason_len) {
    return st_inventory_cuda_discover((hwloc_topology_t)topo, devs, n_devs, p2p, reason, reason_len);
}

static st_status cuda_probe(const st_inventory *inv, int dev, const struct st_probe_options *opt,
                            struct st_profile_device *out) {
    const struct st_device_info *d = &inv->devices[dev];
    struct st_perf perf = d->perf;
    struct st_cuda_probe_result res;
    memset(&res, 0, sizeof res);
    out->kind = d->kind;
    snprintf(out->name, sizeof out->name, "%s", d->name);
    snprintf(out->uuid, sizeof out->uuid, "%s", d->uuid);
    out->probe_bytes = opt->bytes ? opt->bytes : 256ull << 20;
    st_status s = st_cuda_probe_device(d->index, opt->bytes, opt->reps, &perf, &res);
    if (s != ST_OK) return s;
    out->mem_bw_gbps = res.copy_gbps;
    out->copy_gbps = res.copy_gbps;
    out->launch_us = res.launch_us;
    for (int k = 0; k < 3; k++) {
        out->gemv_gbps[k] = res.gemv_gbps[k];
        out->gemm_tflops[k] = res.gemm_tflops[k];
    }
    snprintf(out->method, sizeof out->method, "ops:cuda, device events, median of %d", opt->reps > 0 ? opt->reps : 20);
    return ST_OK;
}

/* Every kind that joins two GPUs (peer, nccl, host), each measured on its own. */
static st_status cuda_probe_pair(const st_inventory *inv, int ia, int ib, const struct st_probe_options *opt,
                                 uint64_t bytes, st_profile *p) {
    const struct st_device_info *a = &inv->devices[ia], *b = &inv->devices[ib];
    char sa[32], sb[32];
    st_device_selector(a, sa, sizeof sa);
    st_device_selector(b, sb, sizeof sb);
    static const st_link_type kinds[] = {ST_LINK_T_PEER, ST_LINK_T_NCCL, ST_LINK_T_HOST};
    for (size_t k = 0; k < ST_ARRAY_LEN(kinds); k++) {
        struct st_cuda_link_probe r;
        st_status s = st_cuda_probe_link(a->index, b->index, kinds[k], bytes, opt->reps, &r);
        if (s != ST_OK) return s;
        if (!r.available) {
            ST_INFO("probe: link %s -> %s %s: not available: %s", sa, sb, st_link_type_name(kinds[k]), r.reason);
            continue;
        }
        struct st_profile_link *l = &p->links[p->n_links++];
        snprintf(l->from, sizeof l->from, "%s", a->uuid);
        snprintf(l->to, sizeof l->to, "%s", b->uuid);
        l->type = kinds[k];
        l->latency_us = r.latency_us;
        l->bw_gbps = r.bw_gbps;
        ST_INFO("probe: link %s -> %s %s: %.1f us, %.1f GB/s", sa, sb, st_link_type_name(kinds[k]), r.latency_us,
                r.bw_gbps);
    }
    return ST_OK;
}

static st_status cuda_mem_read(const struct st_device_info *dev, struct st_device_mem_reading *out) {
    return st_cuda_mem_info(dev->index, &out->free_bytes, &out->total_bytes);
}

static st_status cuda_bandwidth(const struct st_device_info *dev, int n_threads, uint64_t bytes, int reps,
                                double *copy_gbps, double *read_gbps) {
    (void)n_threads;
    *read_gbps = 0;
    return st_cuda_copy_bandwidth(dev->index, bytes, reps, copy_gbps);
}

static st_status cuda_h2d_bandwidth(const struct st_device_info *dev, double *gbps) {
    return st_cuda_h2d_bandwidth(dev->index, 0, 5, gbps);
}

#else

/* No CUDA backend in this build: the ops table is absent. */
const struct st_device_ops *st_device_ops_cuda(void) { return NULL; }

#endif

#ifdef STRATA_HAVE_CUDA
#define CUDA_HOOK(f) f
#else
#define CUDA_HOOK(f) NULL
#endif

#ifdef STRATA_HAVE_NCCL
#define CUDA_NCCL_LINK (1u << ST_LINK_T_NCCL)
#else
#define CUDA_NCCL_LINK 0u
#endif

const struct st_backend_reg st_backend_reg_cuda = {
    .name = "cuda",
    .title = "CUDA",
    .kind = ST_DEVICE_CUDA,
#ifdef STRATA_HAVE_CUDA
    .built = true,
#else
    .built = false,
#endif
    .host_memory = false,
    .catalog_cards = true,
    .not_built = "strata was built without the CUDA backend (-DSTRATA_CUDA=OFF or no CUDA toolkit when it was "
                 "configured)",
    .build_hint = "rebuild with the CUDA toolkit installed (cmake finds nvcc), or plan on 'cpu'",
    .mem_method = "cudaMemGetInfo",
    .paths = cuda_paths,
    .n_paths = (int)ST_ARRAY_LEN(cuda_paths),
    .link_types = (1u << ST_LINK_T_LOCAL) | (1u << ST_LINK_T_PEER) | (1u << ST_LINK_T_HOST) | CUDA_NCCL_LINK,
    .caps = st_caps_from_cc,
    .ops = CUDA_HOOK(cuda_ops),
    .discover = CUDA_HOOK(cuda_discover),
    .probe = CUDA_HOOK(cuda_probe),
    .probe_pair = CUDA_HOOK(cuda_probe_pair),
    .mem_read = CUDA_HOOK(cuda_mem_read),
    .link_init = CUDA_HOOK(st_cuda_link_init),
    .bandwidth = CUDA_HOOK(cuda_bandwidth),
    .h2d_bandwidth = CUDA_HOOK(cuda_h2d_bandwidth),
};
