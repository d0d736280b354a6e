/* devices/device.h — what a device is (identity, capabilities, memory,
 * performance), the inventory of this machine, the GPU catalog used for
 * what-if planning, and the table of operations every backend implements.
 *
 * The planner reads only the plain structs at the top of this header; the
 * orchestrator drives computation only through struct st_device_ops. A new
 * backend is one folder under devices/ plus its kernels, and one entry in the
 * backend registry (struct st_backend_reg at the end of this header). */
#ifndef STRATA_DEVICE_H
#define STRATA_DEVICE_H

#include "base/base.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Each real kind is the devices of one backend (st_backend_reg_find). */
typedef enum st_device_kind {
    ST_DEVICE_CPU = 0,
    ST_DEVICE_CUDA,
    ST_DEVICE_CATALOG,       /* a hypothetical card from the catalog (dry runs only) */
} st_device_kind;

/* Stored weight dtypes as a set: bit t is st_dtype t (model/model.h). */
#define ST_DTYPE_BIT(t) (1u << (unsigned)(t))
#define ST_DTYPE_ALL ((1u << (unsigned)ST_DTYPE_COUNT) - 1u)   /* every dtype strata reads */

/* Capabilities, derived from the compute capability (DESIGN.md) and
 * overridable in the deployment YAML. */
struct st_caps {
    int cc_major, cc_minor;  /* 0.0 for the CPU */
    bool fp16_arith;         /* fast fp16 math: cc >= 5.3 except 6.1 */
    bool fp32_accum_fp16;    /* fp16 inputs with fp32 accumulation in GEMM (cc >= 7.0 tensor cores, or the CPU) */
    bool bf16;               /* cc >= 8.0 */
    bool tensor_cores;       /* cc >= 7.0 */
    bool flash_attn;         /* strata's tensor-core flash kernel: cc >= 8.0 */
    uint32_t weight_dtypes;  /* ST_DTYPE_BIT of each stored weight dtype the backend's matmul and embedding
                                run on this device: its path's declaration (struct st_backend_path);
                                0 = not stated (caps filled by hand), taken as ST_DTYPE_ALL */
};

/* Capabilities of a CUDA card of compute capability major.minor (devices/cuda/register.c:
 * the path that cc runs gives weight_dtypes; also for catalog cards and builds without CUDA). */
struct st_caps st_caps_from_cc(int cc_major, int cc_minor);
/* Capabilities of the CPU backend (devices/cpu/register.c). */
struct st_caps st_caps_cpu(void);
/* The names of the dtypes in mask, in st_dtype order, joined by sep ("f32 f16 q8_0");
 * "none" for 0. Writes into buf and returns it. */
char *st_dtype_mask_text(uint32_t mask, const char *sep, char *buf, size_t buf_len);

/* The weight dtypes a probe rates, indexed by st_dtype: F32, F16, BF16 (whose indexes are
 * also st_prec's, the matmul precisions), then every quantized dtype, each with its own
 * decode and prefill rate on the CPU (a Q4_K weight takes more instructions per byte than
 * a Q8_0 one). */
enum { ST_N_RATES = ST_DTYPE_COUNT };
/* The profile's (and inventory JSON's) key of rate k: the dtype's name ("f32", "q4_k"). */
const char *st_rate_key(int k);

/* Performance figures: peak from the catalog or properties, effective from a probe. */
struct st_perf {
    double mem_bw_gbps;      /* memory bandwidth, GB/s (1e9 bytes/s) */
    double fp32_tflops;
    double fp16_tflops;      /* with fp32 accumulation where the card has it */
    double bf16_tflops;      /* 0 when unsupported */
    double launch_us;        /* per-kernel launch overhead; 0 = unknown */
    bool measured;           /* true when it came from `strata inventory --probe` */
    /* Measured rates per stored weight dtype (indexed by st_dtype; 0 = not measured),
     * filled only by st_profile_apply: the batch-1 GEMV in weight bytes streamed per
     * second (GB/s), and the prefill GEMM in TFLOP/s (the float dtypes' are also
     * fp32/fp16/bf16_tflops above; the quantized ones are the CPU's integer path). */
    double gemv_gbps[ST_N_RATES];
    double gemm_tflops[ST_N_RATES];
};

#define ST_DEVICE_NAME_MAX 96

struct st_device_info {
    st_device_kind kind;
    int index;                           /* cuda ordinal (after CUDA_VISIBLE_DEVICES), 0 for cpu */
    char name[ST_DEVICE_NAME_MAX];       /* "NVIDIA H100 80GB HBM3", "AMD EPYC ...", "Tesla M40 24GB" */
    char uuid[48];                       /* "GPU-xxxxxxxx-..." or "" */
    char pci_bus_id[32];                 /* "0000:3b:00.0" or "" */
    int numa_node;                       /* -1 when unknown */
    char cpuset[128];                    /* local CPUs as a list ("0-15,32-47") or "" */
    struct st_caps caps;
    int sm_count;                        /* SMs (GPU) or cores (CPU) */
    int threads;                         /* CPU: hardware threads; GPU: 0 */
    uint64_t mem_total_bytes;
    uint64_t mem_free_bytes;
    uint64_t l2_bytes;
    int mem_bus_width_bits;
    int mem_clock_khz;
    int pcie_gen, pcie_width;            /* 0 when unknown */
    char catalog[48];                    /* catalog key when kind == CATALOG or emulated, else "" */
    struct st_perf perf;
};

/* ---- inventory --------------------------------------------------------- */

/* How two GPUs are connected. PCIE also covers pairs without P2P access (copies
 * are staged through host memory over PCIe). UNKNOWN: P2P works but NVML was not
 * available to tell NVLink from PCIe. NETWORK: the devices are on different
 * hosts (MPI ranks); activations cross the network (docs/multihost.md). */
typedef enum st_link_kind {
    ST_LINK_NONE = 0, ST_LINK_PCIE, ST_LINK_NVLINK, ST_LINK_SAME, ST_LINK_UNKNOWN, ST_LINK_NETWORK
} st_link_kind;
/* "none", "pcie", "nvlink", "same", "pcie/nvlink unknown", "network". Never NULL. */
const char *st_link_kind_name(st_link_kind k);

struct st_p2p {
    bool access;             /* cudaDeviceCanAccessPeer */
    bool native_atomics;
    int perf_rank;           /* cudaDevP2PAttrPerformanceRank */
    st_link_kind link;
};

struct st_numa_node {
    int os_index;
    uint64_t mem_bytes;      /* local memory of the node */
    char cpuset[128];        /* its CPUs as a list ("0-15,32-47") */
    int package;             /* os_index of the package holding it, -1 when it spans packages */
};
struct st_cpu_package { int os_index; char name[ST_DEVICE_NAME_MAX]; int n_cores; int n_threads; };

typedef struct st_inventory {
    struct st_cpu_package *packages; int n_packages;
    struct st_numa_node *numa; int n_numa;
    int n_cores, n_threads;
    uint64_t host_mem_bytes;
    struct st_device_info *devices; int n_devices;  /* devices[0] is the CPU, then GPUs */
    struct st_p2p *p2p;                             /* (n_devices x n_devices), CPU row/col unused */
    char no_gpu_reason[256];                        /* why no GPU is listed, "" when some are */
    uint64_t llc_bytes;                             /* last-level cache, summed over the machine */
    char host[64];                                  /* host name */
    char hwloc_version[16];                         /* hwloc library version, "2.9.0" */
} st_inventory;

/* Discovers the topology (hwloc) and the CUDA devices (cudart, when built).
 * Never fails for lack of a GPU: no_gpu_reason explains. */
st_status st_inventory_init(st_inventory **out);
void st_inventory_free(st_inventory *inv);

/* Selector of a device as used in deployment YAML and printed by `strata
 * inventory`: "cpu" or "cuda:N". Writes into buf (>= 16 bytes), returns buf. */
char *st_device_selector(const struct st_device_info *dev, char *buf, size_t buf_len);

/* ---- catalog ----------------------------------------------------------- */

/* Fills info with a catalog card ("tesla-m40", "rtx-3050-ti-laptop", ...).
 * Unknown names return ST_ERR_CONFIG with the nearest name as a hint. */
st_status st_catalog_lookup(const char *name, struct st_device_info *info);
/* Number of entries and the i-th key, for listings and hints. */
int st_catalog_count(void);
const char *st_catalog_key(int i);

/* One catalog card with the datasheet figures and where each figure comes from.
 * The table lives in devices/catalog.c and is kept equal to configs/catalog.yaml
 * (tests/planner/test_catalog.c checks every field). Peak figures, not measured. */
struct st_catalog_entry {
    const char *key;             /* "tesla-m40" */
    const char *name;            /* "Tesla M40 24GB" */
    const char *arch;            /* "maxwell", "pascal", ... */
    int cc_major, cc_minor;
    double memory_gib;           /* on-board memory, GiB (vendor "24 GB" = 24 GiB) */
    double bandwidth_gbps;       /* peak memory bandwidth, GB/s */
    double fp32_tflops;          /* peak fp32 (FMA = 2 flops) at boost clock */
    double fp16_tflops;          /* fp16 matmul peak, fp32 accumulation where the card has it; 0 = no fp16 math */
    double bf16_tflops;          /* 0 = no bf16 */
    int pcie_gen, pcie_width;
    int sm_count, bus_width_bits;
    const char *src_memory, *src_bandwidth, *src_fp32, *src_fp16, *src_bf16, *src_cc, *src_pcie;
};
/* i-th entry (0 <= i < st_catalog_count()), NULL otherwise. */
const struct st_catalog_entry *st_catalog_entry_at(int i);

/* ---- runtime: the device operations table ------------------------------- */

typedef struct st_backend st_backend;   /* one device's runtime state; opaque */
typedef struct st_event st_event;       /* a timing mark in a backend's stream; opaque */

typedef enum st_prec { ST_PREC_F32 = 0, ST_PREC_F16, ST_PREC_BF16 } st_prec;
const char *st_prec_name(st_prec p);
typedef enum st_attn_kind { ST_ATTN_EAGER = 0, ST_ATTN_FLASH } st_attn_kind;
const char *st_attn_name(st_attn_kind a);

typedef enum st_buf_use { ST_BUF_WEIGHTS = 0, ST_BUF_KV, ST_BUF_WORKSPACE, ST_BUF_STAGING } st_buf_use;

/* Settings a backend is created with: from the plan's stage. */
struct st_backend_config {
    st_prec matmul_prec;     /* inputs of prefill GEMMs; accumulation is always fp32 */
    st_attn_kind attention;
    st_dtype kv_dtype;       /* F32, F16 or BF16 */
    int n_threads;           /* CPU: worker threads (0 = all cores of the device's NUMA node) */
    bool maxwell_path;       /* restrict to sm_52 code paths; a CUDA device whose caps say cc < 6.0 (a real
                                cc 5.x card, or emulate: tesla-m40) takes them anyway */
    int64_t max_tokens;      /* most tokens one forward pass sends (prefill chunk or decode batch) */
    int64_t widen_elems;     /* the stage's largest quantized weight matrix (elements) and the most columns */
    int64_t widen_cols;      /*   of any: a GPU's prefill GEMMs dequantize a matrix whole (0: in tiles) */
};

/* A weight matrix resident on a device: (rows = out, cols = in) in its stored dtype. */
struct st_weight {
    const void *data;        /* device pointer */
    st_dtype dtype;
    int64_t rows, cols;
};

/* One layer's KV cache on a device: k and v are (n_slots, n_ctx, n_head_kv,
 * head_dim) in dtype: one plane of n_ctx rows per sequence (slot). */
struct st_kv_layer {
    void *k, *v;
    st_dtype dtype;
    int64_t n_ctx, n_head_kv, head_dim;
    int64_t n_slots;         /* sequences the cache holds (>= 1) */
};

struct st_rope_params {
    float theta;
    st_rope_layout layout;
    const float *freq_factors; /* device pointer (head_dim/2) or NULL: theta_i /= factor[i] */
};

/* One product of a group that shares its input (optional op matmul_multi). */
struct st_matmul_job {
    const struct st_weight *w;   /* (rows, cols); every job of a call has x's width as cols */
    const float *bias;           /* (rows) or NULL */
    float *y;                    /* (n_tok, rows); overlaps neither x nor another job's y */
};
#define ST_MATMUL_MULTI_MAX 4    /* jobs per matmul_multi call */

/* Sampling on the device (optional op `sample`), in llama.cpp's order as
 * orchestrator/sampler.c (without penalties): top-k, top-p, min-p, then
 * temperature and one draw.
 *  - temperature <= 0: greedy, the argmax (lowest id on ties).
 *  - top_k in [1, n_vocab): keep the top_k largest logits (ties at the cut:
 *    lowest ids). <= 0 or >= n_vocab: keep all.
 *  - top_p < 1: order the kept tokens by (logit desc, id asc); keep the
 *    shortest prefix whose softmax mass (untempered) reaches top_p.
 *  - min_p > 0: keep tokens with prob >= min_p * max prob (untempered).
 *  - draw: weights exp((logit - max) / temperature) over the kept tokens;
 *    u = st_sample_uniform(seed, n) with n the position being generated
 *    (pos[0], read on the device, so graph replays draw afresh); pick the
 *    first kept token, in that order, whose running weight sum exceeds
 *    u * total. Without top-k/top-p the order is by id.
 * The uniform is counter-based (not orchestrator/sampler.c's xoshiro stream),
 * so the device and host samplers agree in distribution, not token for token.
 * The CUDA sampler keeps at most ST_SAMPLE_TOPK_MAX candidates: top_p < 1
 * needs 1 <= top_k <= ST_SAMPLE_TOPK_MAX there (else ST_ERR_UNSUPPORTED). */
struct st_sample_params {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
    uint64_t seed;
};
#define ST_SAMPLE_TOPK_MAX 1024

/* The uniform in [0, 1) of draw n under seed: splitmix64 of seed + (n + 1) *
 * golden ratio, top 53 bits / 2^53. The same on every platform and backend. */
static inline double st_sample_uniform(uint64_t seed, uint64_t n) {
    uint64_t z = seed + (n + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* All activations are fp32 device buffers laid out [n_tok][width].
 * The tokens of one call are either one sequence (a prefill chunk, or one
 * decode token) or a batched decode step (one token from each of n_tok
 * sequences). `pos` is a device array of the n_tok absolute positions (within
 * each token's own sequence); `slot` (device, n_tok, or NULL for slot 0) says
 * which sequence of the KV cache each token belongs to. Reading both on the
 * device (not the host) keeps a decode step capturable in a CUDA graph.
 * Every entry returns ST_OK or an error naming the op and the device.
 * Optional entries may be NULL; the wrappers in orchestrator/ fall back. */
struct st_device_ops {
    const char *name;        /* "cpu", "cuda" */
    /* true: matmul with n_tok == 1 may be given bias == y, and then adds into y
     * (y += W x: the residual stream updated in place, without an add launch) */
    bool matmul_adds_in_place;
    /* true: matmul_multi and matmul_swiglu pay at every token count, prefill chunks included (CPU:
     * x is prepared once for the group, one dispatch); false: the engine groups passes of up to
     * 8 tokens only (CUDA: the grouped GEMV launches; its prefill GEMMs take whole matrices) */
    bool grouped_any_tokens;

    st_status (*init)(const struct st_device_info *dev, const struct st_backend_config *cfg, st_backend **out);
    void (*free)(st_backend *be);

    /* memory: device buffers by use; out-of-memory names device, bytes asked, bytes free */
    st_status (*alloc)(st_backend *be, size_t bytes, st_buf_use use, void **out);
    void (*dealloc)(st_backend *be, void *ptr);
    st_status (*upload)(st_backend *be, void *dst, const void *src_host, size_t bytes);
    st_status (*download)(st_backend *be, void *dst_host, const void *src, size_t bytes); /* waits */
    st_status (*sync)(st_backend *be);

    /* kernels */
    st_status (*embed)(st_backend *be, const struct st_weight *table, const int32_t *ids, int64_t n_tok, float *out);
    /* out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for rows r of length n (also the per-head q/k norm) */
    st_status (*rmsnorm)(st_backend *be, const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out);
    /* y[t][r] = sum_c W[r][c] * x[t][c] (+ bias[r]); fp32 accumulation */
    st_status (*matmul)(st_backend *be, const struct st_weight *w, const float *bias, const float *x, int64_t n_tok, float *y);
    /* in place on x: (n_tok, n_heads, head_dim) */
    st_status (*rope)(st_backend *be, float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim,
                      const int32_t *pos, const struct st_rope_params *rp);
    /* writes k, v (n_tok, n_head_kv, head_dim) at rows pos[t] of sequence slot[t] of the cache */
    st_status (*kv_store)(st_backend *be, const struct st_kv_layer *kv, const float *k, const float *v,
                          int64_t n_tok, const int32_t *pos, const int32_t *slot);
    /* causal GQA attention: token t sees rows 0..pos[t] of sequence slot[t]; q, out (n_tok, n_head,
     * head_dim). n_seq is 1 (every token in sequence slot[0] at consecutive positions: a prefill
     * chunk) or n_tok (a batched decode step: each token its own sequence). */
    st_status (*attention)(st_backend *be, const struct st_kv_layer *kv, const float *q, int64_t n_tok,
                           int64_t n_head, const int32_t *pos, const int32_t *slot, int64_t n_seq, float scale,
                           float *out);
    /* out[i] = silu(gate[i]) * up[i] */
    st_status (*swiglu)(st_backend *be, const float *gate, const float *up, int64_t n, float *out);
    /* x[i] += y[i] */
    st_status (*add)(st_backend *be, float *x, const float *y, int64_t n);
    /* out_id[0] = argmax over logits (n_vocab), lowest id on ties; -1 when any logit is NaN or
     * infinite (such logits are an error, never a token) */
    st_status (*argmax)(st_backend *be, const float *logits, int64_t n_vocab, int32_t *out_id);

    /* ---- optional entries (NULL when the backend has none) ---- */
    /* out_ids[j] = argmax of row j of logits (n_rows x n_vocab), as argmax, in
     * one launch (a batched decode step's greedy rows); NULL: argmax per row */
    st_status (*argmax_rows)(st_backend *be, const float *logits, int64_t n_rows, int64_t n_vocab, int32_t *out_ids);
    /* Makes host bytes (e.g. an mmap'ed weight) usable by the device. The CPU
     * returns host_ptr itself (zero copy); a GPU allocates and uploads. */
    st_status (*import_host)(st_backend *be, const void *host_ptr, size_t bytes, st_buf_use use, void **out);
    /* y[t][r] += sum_c W[r][c] * x[t][c] (+ bias[r]): an output projection and the residual
     * add after it, at any token count */
    st_status (*matmul_add)(st_backend *be, const struct st_weight *w, const float *bias, const float *x, int64_t n_tok,
                            float *y);
    /* rope on q (n_tok, n_head, head_dim) and on k (n_tok, kv->n_head_kv, head_dim), then
     * kv_store of the rotated k and v: the same values and cache bytes as rope, rope and
     * kv_store, in one launch */
    st_status (*rope_kv_store)(st_backend *be, const struct st_kv_layer *kv, float *q, float *k, const float *v,
                               int64_t n_tok, int64_t n_head, const int32_t *pos, const int32_t *slot,
                               const struct st_rope_params *rp);
    /* Records the ops issued between capture_begin and capture_end into a
     * replayable graph (CUDA graphs); replay runs it again. One graph per backend. */
    st_status (*capture_begin)(st_backend *be);
    st_status (*capture_end)(st_backend *be);
    st_status (*replay)(st_backend *be);
    /* Several products over the same x: jobs[i].y = x W_i^T (+ bias_i) for
     * n_jobs in 1..ST_MATMUL_MULTI_MAX, what matmul per job computes (fp32
     * accumulation; the order of the sums may differ), in fewer launches (CUDA:
     * one for up to 8 tokens: q, k and v of a decode step).
     * NULL: the engine calls matmul per job. */
    st_status (*matmul_multi)(st_backend *be, const struct st_matmul_job *jobs, int n_jobs, const float *x, int64_t n_tok);
    /* out[t][r] = silu(g) * u, g = (x Wg^T + bg)[t][r], u = (x Wu^T + bu)[t][r],
     * silu(g) = g / (1 + e^-g): matmul, matmul and swiglu in one pass (CUDA:
     * one launch and no gate/up intermediates for up to 8
     * tokens). gate and up have one shape; biases may be NULL; out does not
     * overlap x. NULL: the engine calls matmul twice and swiglu. */
    st_status (*matmul_swiglu)(st_backend *be, const struct st_weight *gate, const float *gate_bias,
                               const struct st_weight *up, const float *up_bias, const float *x, int64_t n_tok,
                               float *out);
    /* out_id[0] = one token drawn from logits (n_vocab) under sp (see struct
     * st_sample_params); pos is the device int32 position being generated,
     * which numbers the draw. Greedy when sp->temperature <= 0. -1 when a logit is non-finite. */
    st_status (*sample)(st_backend *be, const float *logits, int64_t n_vocab, const struct st_sample_params *sp,
                        const int32_t *pos, int32_t *out_id);
    /* Timing (`strata bench`): an event marks the point in the backend's
     * stream after the work issued so far. CUDA: a timing cudaEvent; CPU (ops
     * are synchronous): the host clock when event_record is called.
     * event_elapsed_ms waits for `to` and gives the time from `from` to `to`,
     * both recorded on this backend. Events are created and freed outside any
     * hot loop; recording allocates nothing. All four or none. */
    st_status (*event_create)(st_backend *be, st_event **out);
    void (*event_free)(st_backend *be, st_event *ev);      /* accepts NULL */
    st_status (*event_record)(st_backend *be, st_event *ev);
    st_status (*event_elapsed_ms)(st_backend *be, st_event *from, st_event *to, double *ms);
    /* Pipelining several micro-batches (the scheduler): download_async
     * enqueues a copy of device bytes into host memory from ST_BUF_STAGING
     * (pinned) after the work issued so far and returns at once; event_sync
     * waits on the host until an event recorded on this backend has passed,
     * then reports what the kernels flagged (as sync does). Both or none;
     * NULL: the engine uses download (which waits for everything issued). */
    st_status (*download_async)(st_backend *be, void *dst_host, const void *src, size_t bytes);
    st_status (*event_sync)(st_backend *be, st_event *ev);
};

/* ---- links between consecutive stages ------------------------------------ */

typedef enum st_link_type {
    ST_LINK_T_AUTO = 0,      /* the planner/runtime picks */
    ST_LINK_T_LOCAL,         /* both stages on one physical device: a device copy */
    ST_LINK_T_PEER,          /* cudaMemcpyPeerAsync */
    ST_LINK_T_NCCL,          /* ncclSend / ncclRecv */
    ST_LINK_T_HOST,          /* staged through pinned host memory; works for any pair */
    ST_LINK_T_MPI,           /* across processes: MPI point-to-point through host memory (a CPU end) */
} st_link_type;
const char *st_link_type_name(st_link_type t);

typedef struct st_link st_link;

/* A one-way channel from stage src to stage dst for up to max_bytes per send.
 * Sends are ordered after the work already issued on src and before work issued
 * later on dst (streams and events, no host wait on GPUs). */
st_status st_link_init(st_link_type type, st_backend *src, const struct st_device_ops *src_ops,
                       const struct st_device_info *src_dev, st_backend *dst,
                       const struct st_device_ops *dst_ops, const struct st_device_info *dst_dev,
                       size_t max_bytes, st_link **out);
/* Moves bytes from src_ptr (on src) to dst_ptr (on dst). On an endpoint
 * (below) it does this process's half: a send endpoint reads src_ptr (dst_ptr
 * is ignored), a receive endpoint waits for the bytes and writes dst_ptr
 * (src_ptr is ignored); both ends name the same byte count. */
st_status st_link_send(st_link *l, const void *src_ptr, void *dst_ptr, size_t bytes);
st_link_type st_link_get_type(const st_link *l);
void st_link_free(st_link *l);

/* ---- links between processes (MPI ranks, docs/multihost.md) ----------------
 * When two consecutive stages live in two processes, the link is a pair of
 * endpoints: a send endpoint beside the producing stage and a receive
 * endpoint beside the consuming one, each made in its own process with the
 * same peer description. Between two GPUs the pair is an NCCL communicator of
 * two ranks (the unique id travels over MPI; needs NCCL); when either end is
 * the CPU (or the transport asks for host), MPI point-to-point through host
 * memory (a GPU end downloads or uploads around it). Sends do not wait for
 * the receiver: MPI sends leave from a ring of n_bufs staging buffers, NCCL
 * sends are queued on the stream. A receive waits for its bytes; a peer that
 * stays silent past timeout_s seconds is ST_ERR_IO naming its rank, and so
 * is a failed transfer. Messages of one link arrive in the order sent.
 * Needs a build with MPI (ST_ERR_NOT_BUILT otherwise) and MPI initialised. */
struct st_link_peer {
    int rank;                    /* the other end's MPI rank (MPI_COMM_WORLD) */
    int tag;                     /* this link's message tag, the same at both ends */
    int setup_tag;               /* tag for setting up (the NCCL id), another than every data tag */
    st_device_kind kind;         /* the other end's device */
    int n_bufs;                  /* sends in flight at once (>= 1) */
    double timeout_s;            /* watchdog of a receive; 0 = wait forever */
    const char *where;           /* "rank 1 (host-b)" for messages */
};
/* type: AUTO (NCCL for two GPUs when built, else MPI), NCCL, HOST or MPI (MPI through host memory). */
st_status st_link_init_send(st_link_type type, st_backend *src, const struct st_device_ops *src_ops,
                            const struct st_device_info *src_dev, const struct st_link_peer *peer, size_t max_bytes,
                            st_link **out);
st_status st_link_init_recv(st_link_type type, st_backend *dst, const struct st_device_ops *dst_ops,
                            const struct st_device_info *dst_dev, const struct st_link_peer *peer, size_t max_bytes,
                            st_link **out);

#ifdef STRATA_HAVE_CUDA
/* CUDA link kinds (devices/cuda/): LOCAL, PEER, NCCL, and HOST between GPUs.
 * Called by st_link_init when both ends are CUDA backends. */
st_status st_cuda_link_init(st_link_type type, st_backend *src, st_backend *dst, size_t max_bytes, st_link **out);
#ifdef STRATA_HAVE_NCCL
/* The NCCL side of a cross-process GPU link (devices/cuda/link_cuda.cu): a
 * communicator of two ranks, the sender rank 0 and the receiver rank 1, from
 * an id made by st_cuda_nccl_id on the sender (id_bytes = 128). Joining waits
 * for the other process, at most timeout_s seconds (0: forever). */
#define ST_NCCL_ID_BYTES 128
st_status st_cuda_nccl_id(void *id);
st_status st_cuda_link_init_nccl(bool send, st_backend *be, const void *id, double timeout_s, const char *where,
                                 size_t max_bytes, st_link **out);
#endif

/* ---- GPU probe (devices/cuda/probe_cuda.cu), for `strata inventory --probe` ----
 * Each call creates its own CUDA backend(s), measures with device events
 * (warm-up first, median of `reps` runs, buffers rotated past the L2 cache)
 * and frees everything. Errors name the device; nothing is left allocated. */
struct st_cuda_probe_result {
    double copy_gbps;        /* device-to-device cudaMemcpyAsync: bytes read + written per second (GB/s) */
    double gemv_gbps[3];     /* batch-1 decode GEMV through the backend's matmul, weight bytes per second,
                                indexed by st_prec (F32, F16, BF16); 4096 x 4096 weights, rotated */
    double gemv_vs_copy[3];  /* gemv_gbps / copy_gbps: the fraction of the copy roofline the GEMV reaches */
    double launch_us;        /* per-kernel cost of a stream of small kernels (a tiny add), enqueue to done */
    double gemm_tflops[3];   /* prefill GEMM (4096 x 4096 x 512 tokens) per st_prec; 0 where unsupported */
    int64_t gemv_rows, gemv_cols;
};
/* bytes: size of each copy buffer (0 = 256 MiB); reps: 0 = 20. Fills out->mem_bw_gbps
 * (copy), launch_us, fp32/fp16/bf16_tflops (measured GEMM) and measured = true
 * in *perf (may be NULL), and the detailed figures in *res (may be NULL). */
st_status st_cuda_probe_device(int ordinal, uint64_t bytes, int reps, struct st_perf *perf,
                               struct st_cuda_probe_result *res);

/* One link kind between two CUDA ordinals (equal ordinals: LOCAL/HOST on one GPU). */
struct st_cuda_link_probe {
    bool available;          /* false: this kind cannot join the pair (reason says why) */
    double latency_us;       /* one send of 4 bytes, enqueue to arrival, median */
    double bw_gbps;          /* one send of `bytes`, bytes per second */
    char reason[160];
};
/* bytes: size of the bandwidth send (0 = 64 MiB); reps: 0 = 20. */
st_status st_cuda_probe_link(int src_ordinal, int dst_ordinal, st_link_type type, uint64_t bytes, int reps,
                             struct st_cuda_link_probe *out);
#endif

/* ---- performance profile (`strata inventory --probe`) -------------------- */

/* Measured figures of one device. Devices are matched by uuid (GPUs) or by
 * name and thread count (CPUs), never by index, so a profile survives a change
 * of CUDA_VISIBLE_DEVICES. All rates are in GB/s = 1e9 bytes per second. */
struct st_profile_device {
    st_device_kind kind;                 /* CPU or CUDA */
    char name[ST_DEVICE_NAME_MAX];       /* as in st_device_info.name */
    char uuid[48];                       /* GPUs: "GPU-..."; "" for the CPU */
    int threads;                         /* CPU: hardware threads of the machine (matched; 0 = any); GPU: 0 */
    double mem_bw_gbps;                  /* streaming bandwidth: the best of read, copy and triad; 0 = not measured */
    double read_gbps;                    /* read-only stream (a sum), bytes read */
    double copy_gbps, triad_gbps;        /* STREAM copy / triad, bytes read + written; 0 = not measured */
    double gemv_gbps[ST_N_RATES];        /* batch-1 GEMV per weight dtype (st_dtype index): weight bytes/s;
                                            0 = not measured */
    double launch_us;                    /* one tiny op through the ops table; 0 = not measured */
    double gemm_tflops[ST_N_RATES];      /* prefill GEMM (many tokens) per weight dtype (st_dtype index; the float
                                            ones: per matmul precision); 0 = not measured */
    char method[64];                     /* how GEMV/launch were measured: "ops:cpu", "loop", ... */
    uint64_t probe_bytes;                /* size of each bandwidth array (and GEMV weight) the probe used */
};

/* One direction of one link kind between two devices, named by profile key
 * ("cpu" or the GPU uuid). A pair may have several kinds measured (peer, nccl, host). */
struct st_profile_link {
    char from[48], to[48];
    st_link_type type;                   /* PEER, NCCL, HOST (LOCAL: both ends on one device) */
    double latency_us;                   /* a 4-byte send, enqueue to arrival */
    double bw_gbps;                      /* a large send, bytes per second / 1e9 */
};

typedef struct st_profile {
    struct st_profile_device *devices; int n_devices;
    struct st_profile_link *links; int n_links;
    char host[64];                       /* where it was measured */
    char created[32];                    /* UTC, ISO 8601 */
    char strata_version[64];
} st_profile;

#define ST_PROFILE_VERSION 1

/* The default profile path: $STRATA_PROFILE if set, else
 * $XDG_CACHE_HOME/strata/profile.json, else ~/.cache/strata/profile.json.
 * Writes into buf and returns it; "" when no home directory is known. */
char *st_profile_default_path(char *buf, size_t buf_len);

/* Reads a profile written by st_profile_save. Malformed JSON gives ST_ERR_FORMAT
 * with path:line:column; a wrong or missing key names it (devices[1].mem_bw_gbps)
 * and hints at re-running the probe. A missing file gives ST_ERR_IO. */
st_status st_profile_load(const char *path, st_profile **out);
/* Writes p as JSON (creating missing parent directories). */
st_status st_profile_save(const st_profile *p, const char *path);
void st_profile_free(st_profile *p);

/* Key of a device in a profile: its uuid for GPUs, "cpu" for the CPU. */
const char *st_profile_device_key(const struct st_device_info *dev);
/* The profile entry that describes dev, or NULL. */
const struct st_profile_device *st_profile_find_device(const st_profile *p, const struct st_device_info *dev);
/* The measured link from -> to of that type, or NULL; ST_LINK_T_AUTO: the kind
 * with the highest bandwidth. */
const struct st_profile_link *st_profile_find_link(const st_profile *p, const struct st_device_info *from,
                                                   const struct st_device_info *to, st_link_type type);
/* Copies measured figures into devs[i].perf for every device the profile
 * describes (measured = true; mem_bw_gbps, launch_us, gemv_gbps, and
 * fp32/fp16/bf16_tflops from gemm_tflops). Figures the
 * profile lacks (0) keep their previous value. Returns the number of devices updated. */
int st_profile_apply(const st_profile *p, struct st_device_info *devs, int n_devs);

struct st_probe_options {
    uint64_t bytes;          /* size of each of the 3 bandwidth arrays and of each GEMV weight;
                                0 = max(512 MiB, 2 x LLC), i.e. >= 1.5 GiB and >= 6 x LLC in all */
    int reps;                /* best of N; 0 = 5 */
    int n_threads;           /* CPU threads; 0 = one per core */
    bool cpu_only;           /* skip GPUs and links */
};

/* Measures every device of inv (one function per device kind) and the links
 * between them, and returns a new profile. Takes seconds; logs progress at INFO. */
st_status st_inventory_probe(const st_inventory *inv, const struct st_probe_options *opt, st_profile **out);

/* ---- memory and bandwidth readings (`strata bench`) ---------------------- */

/* A device's memory right now. CUDA: free_bytes and total_bytes from
 * cudaMemGetInfo on that ordinal (the whole device: every process, the CUDA
 * context included; the call creates this process's context if needed).
 * CPU: process_bytes = this process's resident set (/proc/self/statm),
 * total_bytes = physical memory, free_bytes = available memory. A caller
 * measures what it allocated as the difference of two readings. CUDA devices
 * in a build without CUDA: ST_ERR_NOT_BUILT; catalog devices: ST_ERR_USAGE. */
struct st_device_mem_reading {
    uint64_t free_bytes;
    uint64_t total_bytes;
    uint64_t process_bytes;              /* CPU: resident set of this process; CUDA: 0 */
};
st_status st_device_mem_read(const struct st_device_info *dev, struct st_device_mem_reading *out);

/* STREAM-style bandwidth of the CPU with the CPU backend's bound thread pool,
 * exactly what `strata inventory --probe` measures: read (a sum), copy (c = a)
 * and triad (a = b + 3c) over arrays of `bytes` each, bytes read + written per
 * second, best of reps after a warm-up. n_threads 0 = one per core of cpu's
 * NUMA node / cpuset. Needs 3 x bytes of memory. */
struct st_cpu_stream {
    double read_gbps, copy_gbps, triad_gbps;
    int n_threads;
};
st_status st_cpu_stream_measure(const struct st_device_info *cpu, int n_threads, uint64_t bytes, int reps,
                                struct st_cpu_stream *out);

#ifdef STRATA_HAVE_CUDA
/* cudaMemGetInfo of one ordinal (devices/cuda/probe_cuda.cu). */
st_status st_cuda_mem_info(int ordinal, uint64_t *free_bytes, uint64_t *total_bytes);
/* Device-to-device cudaMemcpyAsync of `bytes` (0 = 256 MiB) on a fresh
 * backend, median of reps (0 = 20) after a warm-up, bytes read + written per
 * second (GB/s): the copy roofline that `inventory --probe` reports too. */
st_status st_cuda_copy_bandwidth(int ordinal, uint64_t bytes, int reps, double *gbps);
/* Host-to-device copy of `bytes` (0 = 256 MiB) from pinned memory, median of
 * reps (0 = 10) after a warm-up, GB/s: the ceiling of weight loading. */
st_status st_cuda_h2d_bandwidth(int ordinal, uint64_t bytes, int reps, double *gbps);
#endif

/* The backends' ops tables (CUDA only when compiled with it); the registry below
 * hands out the same pointers (st_backend_reg.ops). */
const struct st_device_ops *st_device_ops_cpu(void);
const struct st_device_ops *st_device_ops_cuda(void);   /* NULL in a CPU-only build */

/* ---- the backend registry ---------------------------------------------------
 *
 * devices/<name>/ holds one backend and one registration entry,
 * devices/<name>/register.c, compiled into every build: its name, the kind of
 * device it runs, how it discovers devices, its ops table, the links and
 * probes it provides and — as plain data — what it supports: per code path,
 * the weight dtypes its matmul (and embedding) runs and which optional ops
 * exist. devices/registry.c lists the entries. Inventory, deploy, links,
 * probes and benchmarks look the backend of a device up here instead of
 * branching on its kind; the planner sees plain data: caps.weight_dtypes and
 * whether a device computes in host memory (st_plan_device.is_cpu).
 *
 * A backend that is not compiled in keeps its descriptive half (built =
 * false, every hook NULL): a what-if plan for a catalog card still says what
 * that card would run. Adding a backend (ROCm, Vulkan): its folder with a
 * register.c, a value of st_device_kind, one line in devices/registry.c
 * (docs/backends.md). */

/* Optional operations of a backend path, as data: the st_device_ops entries
 * that may be NULL, and kernels that only some paths have. */
enum st_backend_op {
    ST_BACKEND_OP_ARGMAX_ROWS = 1u << 0,    /* argmax_rows */
    ST_BACKEND_OP_IMPORT_HOST = 1u << 1,    /* import_host */
    ST_BACKEND_OP_GRAPHS = 1u << 2,         /* capture_begin, capture_end, replay */
    ST_BACKEND_OP_MATMUL_MULTI = 1u << 3,   /* matmul_multi */
    ST_BACKEND_OP_MATMUL_SWIGLU = 1u << 4,  /* matmul_swiglu */
    ST_BACKEND_OP_SAMPLE = 1u << 5,         /* sample */
    ST_BACKEND_OP_EVENTS = 1u << 6,         /* event_create, event_free, event_record, event_elapsed_ms */
    ST_BACKEND_OP_PIPELINE = 1u << 7,       /* download_async, event_sync */
    ST_BACKEND_OP_FLASH_ATTN = 1u << 8,     /* a flash-attention kernel (used where caps.flash_attn) */
    ST_BACKEND_OP_KV_Q8 = 1u << 9,          /* a q8_0 KV cache */
    ST_BACKEND_OP_ROPE_KV_STORE = 1u << 10, /* rope_kv_store */
    ST_BACKEND_OP_MATMUL_ADD = 1u << 11,    /* matmul_add */
};
#define ST_BACKEND_N_OPS 12
/* "argmax_rows", "graphs", ..., for bit 1u << i; "?" for anything else. */
const char *st_backend_op_name(uint32_t op);

/* One code path of a backend. A device runs the last path whose cc_min is at
 * most its compute capability (st_backend_reg_path). */
struct st_backend_path {
    const char *name;            /* "default", "maxwell" */
    int cc_min;                  /* lowest 10 x major + minor it serves; 0 = every device */
    uint32_t weight_dtypes;      /* ST_DTYPE_BIT of each stored weight dtype its matmul and embedding run */
    uint32_t ops;                /* st_backend_op bits */
    const char *what;            /* one line for listings: "fp32 math over the stored weights (sm_52)" */
};

struct st_backend_reg {
    const char *name;            /* "cpu", "cuda": the selector's prefix, the kind's name in plan and profile files */
    const char *title;           /* "CPU", "CUDA": in messages */
    st_device_kind kind;         /* the devices it runs */
    bool built;                  /* compiled into this binary: the hooks below are set */
    bool host_memory;            /* its devices compute in host memory (st_device_host_memory) */
    bool catalog_cards;          /* the GPU catalog's cards are devices of this backend (what-if planning) */
    const char *not_built;       /* why a build lacks it: "strata was built without the CUDA backend (...)" */
    const char *build_hint;      /* how to get a build with it: "rebuild with the CUDA toolkit installed ..." */
    const char *mem_method;      /* how `strata bench` reads its memory in use: "process RSS" (host memory:
                                    the resident set), "cudaMemGetInfo" (free memory before - after) */
    const struct st_backend_path *paths; int n_paths;   /* ascending cc_min; paths[0].cc_min is 0 */
    uint32_t link_types;         /* 1u << st_link_type of each kind of link it makes between two of its
                                    devices (or two stages on one) */
    /* Capabilities of one of its devices of that compute capability (0.0 where it has none);
     * always set, also when !built. */
    struct st_caps (*caps)(int cc_major, int cc_minor);

    /* ---- hooks: NULL when !built; any may be NULL when the backend has none ---- */
    const struct st_device_ops *(*ops)(void);
    /* Lists its devices (CUDA_VISIBLE_DEVICES and the like apply): *devs a malloc'ed array of *n_devs
     * (kind and index set; caps from caps()), *p2p a malloc'ed n x n matrix or NULL. No driver or no
     * device: ST_OK with *n_devs 0 and why in reason. topo is the inventory's hwloc topology. */
    st_status (*discover)(void *topo, struct st_device_info **devs, int *n_devs, struct st_p2p **p2p,
                          char *reason, size_t reason_len);
    /* `inventory --probe` of device dev of inv into out (devices/probe.c calls it). */
    st_status (*probe)(const st_inventory *inv, int dev, const struct st_probe_options *opt,
                       struct st_profile_device *out);
    /* Measures the links of this backend between inv's devices a and b (both its own, a != b): appends
     * one entry to p->links per kind that joins them (p->links has room for 3 per pair). */
    st_status (*probe_pair)(const st_inventory *inv, int a, int b, const struct st_probe_options *opt,
                            uint64_t bytes, st_profile *p);
    /* st_device_mem_read for its devices. */
    st_status (*mem_read)(const struct st_device_info *dev, struct st_device_mem_reading *out);
    /* A link of type (LOCAL, PEER, NCCL, HOST; AUTO: its choice) between two of its backends. */
    st_status (*link_init)(st_link_type type, st_backend *src, st_backend *dst, size_t max_bytes, st_link **out);
    /* Streaming bandwidth for `strata bench`: bytes per array (0 = its default), n_threads (host
     * backends; 0 = the device's), reps; copy (read + written per second, GB/s) and, where measured,
     * a read-only rate (0 otherwise). */
    st_status (*bandwidth)(const struct st_device_info *dev, int n_threads, uint64_t bytes, int reps,
                           double *copy_gbps, double *read_gbps);
    /* Pinned host-to-device copy rate (GB/s), the ceiling of weight loading. */
    st_status (*h2d_bandwidth)(const struct st_device_info *dev, double *gbps);
};

/* The registry: every backend this source tree has, built or not, in a fixed order (cpu first). */
int st_backend_reg_count(void);
const struct st_backend_reg *st_backend_reg_at(int i);            /* NULL when out of range */
const struct st_backend_reg *st_backend_reg_find(st_device_kind kind);   /* NULL for CATALOG */
const struct st_backend_reg *st_backend_reg_by_name(const char *name);   /* NULL when unknown */
/* The backend dev runs on; for a catalog card the backend whose cards the catalog lists (its data
 * only: a catalog card is never run). NULL when none. */
const struct st_backend_reg *st_backend_reg_of(const struct st_device_info *dev);
/* The path a device of these capabilities runs (the last with cc_min <= its cc). */
const struct st_backend_path *st_backend_reg_path(const struct st_backend_reg *b, const struct st_caps *caps);
/* The device's path: st_backend_reg_path of its backend; NULL without a backend. */
const struct st_backend_path *st_device_path(const struct st_device_info *dev);
/* The ops table of dev's backend, or NULL with an error set (catalog card: ST_ERR_CONFIG; a backend
 * this build lacks: ST_ERR_NOT_BUILT naming it, with a hint). */
st_status st_device_ops_of(const struct st_device_info *dev, const struct st_device_ops **out);

/* True when dev's backend computes in host memory (the CPU); false for GPUs and catalog cards. */
bool st_device_host_memory(const struct st_device_info *dev);
/* "cpu", "cuda", "catalog" (files and messages); "?" for anything else. Never NULL. */
const char *st_device_kind_name(st_device_kind k);
/* The kind of that name ("catalog" included); false when unknown. */
bool st_device_kind_parse(const char *name, st_device_kind *out);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_DEVICE_H */
