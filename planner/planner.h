/* planner/planner.h — where every layer goes, in which precision, with which
 * attention kernel, how much memory each device needs and how fast the result
 * will decode and prefill.
 *
 * The planner is a pure function of plain descriptions: a model's shapes and
 * byte counts (struct st_plan_model), devices (struct st_plan_device, built
 * from st_device_info whether real or from the catalog), a link matrix and a
 * request. It never calls a device, so a dry run on a laptop gives the same
 * plan as the real box. docs/planner.md documents the memory formula, the cost
 * model and its efficiency factors, and the partitioner.
 *
 * Lifecycle: fill a model (st_plan_model_from_preset / _from_model), devices
 * (st_plan_device_init), a request (st_plan_request_defaults), call
 * st_plan_make, print/write the plan, st_plan_free it. */
#ifndef STRATA_PLANNER_H
#define STRATA_PLANNER_H

#include "base/base.h"
#include "devices/device.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the model, as the planner sees it ---------------------------------- */

struct st_plan_model {
    char name[64];               /* "qwen2.5-7b" or the model file's name */
    char weights[24];            /* stored weight format for reports: "f16", "bf16", "q4_k_m", "mixed" */
    st_arch arch;
    int64_t n_layer;
    int64_t n_embd, n_ff, n_vocab, n_head, n_head_kv, head_dim;
    int64_t n_ctx_train;         /* trained context (0 when unknown) */
    bool tied_embeddings;        /* lm_head is the token embedding table */
    bool qkv_bias, qk_norm;
    st_dtype matrix_dtype;       /* dtype of every block matrix, ST_DTYPE_COUNT when mixed */
    uint8_t *mat_dtypes;         /* (n_layer x ST_PLAN_N_MATRICES) stored st_dtype of each block matrix, in
                                    st_plan_matrix_roles order; NULL (a hand-built model, a plan file's):
                                    every one is matrix_dtype, unknown when that is ST_DTYPE_COUNT */
    st_dtype embd_dtype;         /* token embedding table */
    st_dtype lm_head_dtype;      /* lm_head (the embedding's when tied) */
    st_model_format names;       /* how its tensors are named in messages: GGUF (presets too) or HF */
    uint64_t *layer_bytes;       /* (n_layer) exact stored bytes of each block, quant blocks included */
    double *layer_flops;         /* (n_layer) matmul flops per token of each block: 2 x matrix elements */
    uint64_t embd_bytes;         /* token embedding table */
    uint64_t output_norm_bytes;  /* final RMSNorm weight */
    uint64_t lm_head_bytes;      /* lm_head matrix (equals embd_bytes when tied: a stage without the
                                    embedding that holds the output keeps its own copy) */
    uint64_t shared_bytes;       /* tensors every stage keeps a copy of (llama 3 rope_freqs) */
    double output_flops;         /* 2 x n_vocab x n_embd per token */
    uint64_t max_matrix_elems;   /* largest block matrix (sizes the dequantisation scratch) */
    uint64_t total_bytes;        /* every tensor counted once: the file's tensor bytes */
};

/* The block matrices whose dtypes st_plan_model.mat_dtypes holds, in order: q, k, v, o, gate, up, down. */
#define ST_PLAN_N_MATRICES 7
extern const enum st_layer_role st_plan_matrix_roles[ST_PLAN_N_MATRICES];

/* Presets: architecture shapes for dry runs (configs/presets.yaml lists them
 * with their sources). quant is a stored format: "f32", "f16", "bf16", "q8_0",
 * "q6_k", "q5_k_m", "q4_k_m", "q4_0" ("" = bf16). Byte counts are exact for a
 * GGUF written by llama.cpp's quantizer with that mix (docs/planner.md §Presets
 * lists the per-tensor rule); 1-D tensors (norms, biases) are f32. Unknown names
 * are ST_ERR_CONFIG with the nearest name as hint. */
st_status st_plan_model_from_preset(const char *preset, const char *quant, struct st_plan_model *out);
/* From an opened model file: exact bytes of each stored tensor. */
st_status st_plan_model_from_model(const st_model *m, struct st_plan_model *out);
/* The same shapes stored in another format (for "a quantized file would fit"). */
st_status st_plan_model_requant(const struct st_plan_model *m, const char *quant, struct st_plan_model *out);
void st_plan_model_free(struct st_plan_model *m);   /* frees the arrays; accepts NULL */

struct st_plan_preset {
    const char *name;            /* "qwen2.5-7b" */
    st_arch arch;
    int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab, n_ctx_train;
    bool tied_embeddings, qkv_bias, qk_norm;
    const char *source;          /* the config.json the shapes come from */
};
int st_plan_preset_count(void);
const struct st_plan_preset *st_plan_preset_at(int i);   /* NULL when out of range */
/* The stored formats presets accept, NULL-terminated. */
extern const char *const st_plan_quants[];

/* True when the model's KV rows (n_head_kv x head_dim values) are whole Q8_0 blocks of 32. */
bool st_plan_kv_q8_ok(const struct st_plan_model *m);
/* KV cache bytes: layers x context x batch x 2 (K and V) x the bytes of a row of
 * n_head_kv x head_dim values in dtype (Q8_0: 34 bytes per 32 values). */
uint64_t st_plan_kv_bytes(const struct st_plan_model *m, st_dtype kv, int64_t n_layers, int64_t context,
                          int64_t batch);

/* ---- devices and links ---------------------------------------------------- */

struct st_plan_device {
    struct st_device_info info;  /* identity, capabilities, memory, performance */
    char select[64];             /* how the deployment names it: "cpu", "cuda:0", "catalog:tesla-m40" */
    char label[ST_DEVICE_NAME_MAX];  /* short name in tables: the config's name:, else the catalog key or
                                    the device name */
    uint64_t max_memory_bytes;   /* cap on everything strata puts there; 0 = the device's memory */
    uint64_t reserve_bytes;      /* kept free for others */
    uint64_t overhead_bytes;     /* runtime: CUDA context and modules, cuBLAS workspace; CPU: process */
    int force_prec;              /* -1 = choose, else an st_prec the stage must use */
    int force_attn;              /* -1 = choose, else an st_attn_kind */
    int force_kv;                /* -1 = choose (kv_dtype: auto), else the st_dtype of its KV caches:
                                    F32, F16, BF16 or Q8_0 */
    bool is_cpu;
    int rank;                    /* MPI rank (host) that owns the device; 0 in one process. Hops between
                                    devices of different ranks cross the network (st_plan_link_network) */
};

/* Fills d from info with the documented defaults (docs/planner.md): runtime
 * overhead 512 MiB per GPU and 256 MiB for the CPU, no cap, no reserve, nothing
 * forced; an unprobed CPU without figures gets 25 GB/s and 32 fp32 flop/cycle/core
 * at 2.5 GHz. */
void st_plan_device_init(struct st_plan_device *d, const struct st_device_info *info);
/* Bytes the planner may fill: min(memory, max_memory) - overhead - reserve (0 if negative).
 * The CPU's memory is its free memory when known. */
uint64_t st_plan_device_usable(const struct st_plan_device *d);

/* How activations move between two devices. */
struct st_plan_link {
    st_link_kind kind;           /* PCIE, NVLINK, SAME; HOST when staged through host memory */
    bool via_host;               /* a CPU end, or GPUs without P2P: two copies through pinned memory */
    double latency_us;           /* per transfer */
    double bandwidth_gbps;       /* effective, GB/s */
};
/* Default link between a and b: p2p (from the inventory, may be NULL) tells
 * NVLink from PCIe and whether P2P works; otherwise PCIe at the lower
 * generation of the two ends, peer-to-peer for two GPUs, via host for a CPU end. */
struct st_plan_link st_plan_link_default(const struct st_plan_device *a, const struct st_plan_device *b,
                                         const struct st_p2p *p2p);
/* Fills an n x n matrix (row-major, out[a * n + b]) with st_plan_link_default without P2P facts. */
void st_plan_links_default(const struct st_plan_device *devs, int n, struct st_plan_link *out);

/* ---- networks between hosts (devices of different MPI ranks) ---------------
 * A hop between ranks moves the fp32 residual over the network: a GPU end
 * first copies it to host memory (and the receiving GPU back), which adds
 * PCIe latency; NCCL between two GPUs and MPI for a CPU end both see the
 * network's bandwidth. Presets are effective figures (about 94% of the line
 * rate for TCP, 96% for InfiniBand) and typical one-way small-message latency;
 * docs/multihost.md lists them with their sources. */
struct st_plan_network_preset {
    const char *name;            /* "10gbe", "ib-edr", ... */
    const char *what;            /* "10 Gbit/s Ethernet (TCP)" */
    double bandwidth_gbps;       /* effective GB/s (1e9 bytes/s), one way */
    double latency_us;           /* one small message, one way */
};
/* The preset named (case-insensitive; "10GbE" == "10gbe"), or NULL. */
const struct st_plan_network_preset *st_plan_network_find(const char *name);
int st_plan_network_count(void);
const struct st_plan_network_preset *st_plan_network_at(int i);   /* NULL when out of range */
#define ST_PLAN_NETWORK_DEFAULT "10gbe"   /* assumed when the config has no network: and nothing was probed */
/* The link between a (rank ra) and b (rank rb) on different hosts over a
 * network of that bandwidth and latency: kind NETWORK, via_host when an end
 * is a GPU (its PCIe copy's latency is added; the bandwidth is the lower of
 * the network's and the PCIe link's). */
struct st_plan_link st_plan_link_network(const struct st_plan_device *a, const struct st_plan_device *b,
                                         double bandwidth_gbps, double latency_us);

/* ---- the request ------------------------------------------------------- */

typedef enum st_plan_objective {
    ST_PLAN_LATENCY = 0,         /* one stream: minimise sum of stage decode times + hops */
    ST_PLAN_THROUGHPUT,          /* pipelined batches: minimise the slowest stage or hop */
} st_plan_objective;
const char *st_plan_objective_name(st_plan_objective o);   /* "latency", "throughput" */

struct st_plan_range { int device; int64_t first, last; };   /* layers first..last inclusive */

struct st_plan_request {
    int64_t context;             /* KV cache tokens per sequence (default 4096) */
    int64_t batch;               /* sequences decoded together (default 1) */
    int64_t prefill_chunk;       /* prompt tokens per prefill step (default 512) */
    int64_t prompt_tokens;       /* prompt length for the prefill estimate (0 = prefill_chunk) */
    int64_t decode_at;           /* KV length at which decode is costed (0 = context / 2) */
    st_plan_objective objective;
    int force_prec;              /* -1 or an st_prec for every stage (a device's own force wins) */
    int force_attn;              /* -1 or an st_attn_kind for every stage */
    int force_kv;                /* -1 or the KV cache st_dtype of every stage (a device's own force wins) */
    bool kv_q8_fallback;         /* set by st_plan_make itself: a stage on a device whose KV type is
                                    chosen may take q8_0 when its float cache does not fit */
    const struct st_plan_range *manual;  /* manual placement in layer order, or NULL for auto */
    int n_manual;
    const bool *fp16_safe;       /* numerics profile: (n_layer) true where fp16 activations are safe; NULL = none */
    const char *numerics_source; /* where the profile came from, for the reasons */
    const struct st_plan_device *offload_cpu; /* the host CPU "CPU offload" suggestions may add; NULL = a
                                                 generic host with 64 GiB (said so in the suggestion) */
    bool no_suggestions;         /* skip the what-would-fit search (set internally while searching) */
};
void st_plan_request_defaults(struct st_plan_request *r);

/* ---- the plan ---------------------------------------------------------- */

struct st_plan_mem {
    uint64_t weights;            /* stored tensors of the stage, exact */
    uint64_t kv;                 /* KV cache: layers x context x batch x 2 x row of n_head_kv x head_dim
                                    values in kv_dtype (Q8_0: 34 bytes per 32) */
    uint64_t workspace;          /* activations of a prefill chunk, eager scores, dequant scratch,
                                    logits (last stage), link buffers */
    uint64_t total;              /* weights + kv + workspace */
    uint64_t usable;             /* what the device offers the stage (st_plan_device_usable) */
    uint64_t overhead, reserve;  /* the device's runtime overhead and reserve (outside usable) */
};

struct st_plan_stage {
    int device;                  /* index into st_plan.devices */
    int64_t first, last;         /* layers, inclusive */
    bool has_embedding, has_output;
    st_prec prec;                /* matmul inputs of prefill GEMMs; accumulation is always fp32 */
    st_attn_kind attn;
    st_dtype kv_dtype;           /* F32, F16, BF16 or Q8_0 */
    struct st_plan_mem mem;
    double decode_ms;            /* one decode step (all `batch` sequences) through this stage */
    double prefill_ms;           /* one prefill chunk through this stage */
    char bound[16];              /* what limits its decode: "bandwidth", "instructions" (quantized GEMVs'
                                    dequantization), "compute", "launches" */
};

struct st_plan_hop {             /* between stage i and i + 1 */
    struct st_plan_link link;
    uint64_t decode_bytes;       /* per decode step: batch x n_embd x 4 (fp32 residual) */
    uint64_t prefill_bytes;      /* per prefill chunk */
    double decode_ms, prefill_ms;
};

struct st_plan_suggestion {
    char what[160];              /* "context 8192", "a q4_k_m file", "one more tesla-m40", "CPU offload" */
    bool fits;                   /* re-running the planner with the change gives a plan */
    double decode_tok_s;         /* of that plan (0 when it does not fit) */
    uint64_t bytes_short;        /* still missing when it does not fit */
};

struct st_plan_shortfall {
    uint64_t bytes_needed;       /* weights + KV + one stage's workspace */
    uint64_t bytes_usable;       /* summed over the devices */
    uint64_t bytes_missing;      /* needed - usable, or what the best split lacks on its tightest device */
    char detail[640];            /* where it does not fit */
    struct st_plan_suggestion suggestions[8];
    int n_suggestions;
};

/* The longest context (in steps of 256 tokens, the batch and devices of the
 * plan, every device's cache of that type; found by planning again) that fits
 * with a float cache and with a q8_0 cache, so `plan` can say how much longer
 * a context q8_0 buys. 0 = not even 256 tokens fit; searched up to `limit`
 * (1M tokens, past the model's trained context: `plan` says where that is):
 * a value equal to it means "at least". */
struct st_plan_kv_reach {
    bool known;                  /* computed (not for plans made while searching, nor for a model whose
                                    KV rows are not whole 32-value blocks) */
    int64_t f16_ctx;             /* longest context with an f16 cache on every stage */
    int64_t q8_ctx;              /* longest context with a q8_0 cache on every stage */
    int64_t limit;
};

typedef struct st_plan {
    struct st_plan_model model;  /* copy (owned) */
    struct st_plan_device *devices; int n_devices;       /* copies of the inputs (owned) */
    struct st_plan_link *links;                          /* (n_devices x n_devices) */
    int64_t context, batch, prefill_chunk, prompt_tokens, decode_at;
    st_plan_objective objective;
    bool manual;
    bool feasible;
    struct st_plan_stage *stages; int n_stages;
    struct st_plan_hop *hops; int n_hops;                /* n_stages - 1 */
    double decode_ms;            /* latency of one decode step: stages + hops */
    double decode_tok_s;         /* latency objective: batch / decode_ms; throughput: batch / bottleneck */
    double prefill_tok_s;        /* prompt_tokens / (pipelined chunks through stages and hops) */
    double bottleneck_ms;        /* the slowest stage or hop (decode) */
    char bottleneck[160];        /* which one and why */
    char **reasons; int n_reasons;                       /* the reason for every choice */
    struct st_plan_shortfall shortfall;                  /* when !feasible */
    struct st_plan_kv_reach kv_reach;                    /* longest contexts per KV cache type */
    st_status replan_status;                             /* the first error (not a misfit) of a plan made again for
                                                            reasons, suggestions or the kv reach: st_plan_make fails with it */
} st_plan;

/* Plans model on devs. links is an n_dev x n_dev matrix or NULL (defaults).
 * On success *out is a feasible plan. When nothing fits, or a manual placement
 * or forced choice is invalid, the status is ST_ERR_CONFIG with a message and
 * hint, and *out is still set to a plan with feasible == false whose shortfall
 * says by how much and which changes would fit (each found by re-running the
 * planner) — print it with st_plan_print. Other errors leave *out NULL. */
st_status st_plan_make(const struct st_plan_model *model, const struct st_plan_device *devs, int n_dev,
                       const struct st_plan_link *links, const struct st_plan_request *req, st_plan **out);
void st_plan_free(st_plan *p);   /* accepts NULL */

/* The cost of one stage, as the partitioner sees it: device dev holds layers
 * first..last (with the embedding when first == 0, the output when last ==
 * n_layer - 1); chooses precision and attention; fills memory and times. false
 * when the device cannot hold it (memory, or a forced precision/attention the
 * device lacks); why (may be NULL) says which. Used by the tests' brute force. */
bool st_plan_stage_eval(const struct st_plan_model *m, const struct st_plan_device *dev,
                        const struct st_plan_request *req, int64_t first, int64_t last,
                        struct st_plan_stage *out, char *why, size_t why_len);
/* Decode-step time of a hop over link l, ms. */
double st_plan_hop_decode_ms(const struct st_plan_model *m, const struct st_plan_request *req,
                             const struct st_plan_link *l);

/* ---- numerics profile (`strata calibrate`, docs/numerics.md) -------------- */

#define ST_NUMERICS_VERSION 1
#define ST_FP16_MAX 65504.0

/* One layer's measurements over the calibration text (fp32 run on the CPU). */
struct st_numerics_layer {
    bool fp16_safe;              /* max_abs <= max_abs_limit and rel_error <= rel_error_limit */
    double max_abs;              /* largest |x| entering any matmul of the layer */
    double frac_above_fp16;      /* fraction of those inputs with |x| > 65504 (fp16 overflow) */
    double rel_error;            /* ||y16 - y32|| / ||y32 - x||: error of the layer's update when its
                                    matmul inputs and K/V are rounded to fp16 (Frobenius over tokens) */
    char worst[8];               /* whose input held max_abs: "qkv", "o", "gate_up" or "down" */
};

struct st_numerics {
    char model[64];              /* the planner's model name */
    char model_path[512];
    int64_t n_layer;
    int64_t tokens;              /* calibration tokens run */
    char text[256];              /* where they came from: a file, "built-in", "ids:FILE" */
    double max_abs_limit;        /* a layer is unsafe above this |x| (default 65504 / 8) */
    double rel_error_limit;      /* ... or above this relative error (default 1e-3) */
    struct st_numerics_layer *layers;  /* (n_layer) */
};

/* YAML that st_numerics_read loads back (numbers with 17 digits). */
st_status st_numerics_write(FILE *f, const struct st_numerics *n);
/* Reads a profile. Errors are ST_ERR_CONFIG "FILE:LINE:COLUMN: key: what" with a hint. */
st_status st_numerics_read(const char *path, struct st_numerics **out);
/* The same on text in memory (len bytes; name is used in messages). */
st_status st_numerics_parse(const char *text, size_t len, const char *name, struct st_numerics **out);
void st_numerics_free(struct st_numerics *n);   /* accepts NULL */
/* Reads a profile for a model of n_layer layers into a new array of n_layer
 * flags (the planner's req.fp16_safe; free() it). A profile written for
 * another layer count is ST_ERR_CONFIG naming both counts. */
st_status st_numerics_load(const char *path, int64_t n_layer, bool **fp16_safe);

/* ---- YAML limits (docs/limits.md) ------------------------------------- */

/* Every YAML file strata reads (deployment config, plan, numerics profile) is
 * held to a size and a nesting depth before libyaml builds its document. */
#define ST_YAML_MAX_DEPTH 64                  /* nested mappings and lists */
#define ST_YAML_MAX_PLAN_BYTES (16u << 20)    /* plan files and numerics profiles */

/* ST_ERR_CONFIG "path: the file is N bytes, more than the M-byte limit" or
 * "path:line:column: nesting is deeper than 64 levels", each with hint; ST_OK
 * otherwise (syntax errors are left to the loader, which names them). */
st_status st_yaml_check_limits(const char *path, const char *text, size_t len, size_t max_bytes, const char *hint);

/* ---- output ------------------------------------------------------------ */

/* The plan as a table (stage, device, layers, precision, attention, weights /
 * KV / workspace / total against usable), the links, predicted tok/s and the
 * bottleneck; with explain, the reason for every choice. Colour only on a TTY. */
void st_plan_print(FILE *f, const st_plan *p, bool explain);

/* YAML that st_plan_read_yaml loads back (docs/planner.md §Plan file). */
st_status st_plan_write_yaml(FILE *f, const st_plan *p);
/* Reads a plan written by st_plan_write_yaml. Errors are ST_ERR_CONFIG
 * "FILE:LINE:COLUMN: key: what" with a hint. */
st_status st_plan_read_yaml(const char *path, st_plan **out);
/* The same on text in memory (len bytes; name is used in messages). */
st_status st_plan_parse_yaml(const char *text, size_t len, const char *name, st_plan **out);
st_status st_plan_write_json(FILE *f, const st_plan *p);
/* A drawing: layers coloured by device, a memory bar per device, the links. */
st_status st_plan_write_svg(FILE *f, const st_plan *p);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_PLANNER_H */
