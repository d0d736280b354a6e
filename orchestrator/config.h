/* orchestrator/config.h — the deployment config (deploy.yaml): which model,
 * which devices, how to place layers, how activations move, and how to
 * generate. The schema is documented key by key in docs/config.md.
 *
 * Loading reads the whole YAML file (libyaml), checks every key, type and
 * range, and fills a plain struct whose fields are all visible. Every error is
 * ST_ERR_CONFIG (exit code 2) and reads
 *
 *     FILE:LINE:COL: key.path: what is wrong
 *     hint: the likely fix
 *
 * with 1-based line and column of the offending key or value. Unknown keys,
 * wrong types, out-of-range values and duplicate keys are all errors: nothing
 * in the file is silently ignored.
 *
 * Defaults apply to every key that is left out (docs/config.md lists them;
 * the ST_CONFIG_DEFAULT_* macros below are the same numbers). */
#ifndef STRATA_CONFIG_H
#define STRATA_CONFIG_H

#include "base/base.h"
#include "devices/device.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ST_CONFIG_VERSION 1

/* "auto": the planner chooses. Used in the int fields that otherwise hold an
 * st_prec or st_attn_kind. */
#define ST_CONFIG_AUTO (-1)

#define ST_CONFIG_DEFAULT_CONTEXT        4096
#define ST_CONFIG_DEFAULT_BATCH          1
#define ST_CONFIG_DEFAULT_PREFILL_CHUNK  512
#define ST_CONFIG_DEFAULT_MAX_TOKENS     256
#define ST_CONFIG_DEFAULT_TEMPERATURE    0.8f
#define ST_CONFIG_DEFAULT_TOP_K          40
#define ST_CONFIG_DEFAULT_TOP_P          0.95f
#define ST_CONFIG_DEFAULT_MIN_P          0.05f
#define ST_CONFIG_DEFAULT_REPEAT_PENALTY 1.0f
#define ST_CONFIG_DEFAULT_REPEAT_LAST_N  64

/* Upper bounds checked at load time (anything larger is surely a typo). */
#define ST_CONFIG_MAX_CONTEXT   (1 << 24)   /* tokens */
#define ST_CONFIG_MAX_BATCH     4096        /* sequences */
#define ST_CONFIG_MAX_THREADS   4096
#define ST_CONFIG_MAX_DEVICES   64
#define ST_CONFIG_MAX_STAGES    64          /* placement.manual entries */
#define ST_CONFIG_MAX_STOP      16          /* generation.stop strings (= ST_GEN_MAX_STOP, session.h) */
#define ST_CONFIG_MAX_STOP_BYTES 256        /* one stop string (= ST_GEN_STOP_MAX_BYTES) */
#define ST_CONFIG_MAX_TEXT_BYTES (64 << 10) /* generation.system */
#define ST_CONFIG_MAX_PATH      4096        /* model.path, placement.numerics */
#define ST_CONFIG_MAX_BYTES     (1 << 20)   /* the file; nesting is at most ST_YAML_MAX_DEPTH (planner.h) */
#define ST_CONFIG_MAX_RANKS     1024        /* `rank:` values 0 .. ST_CONFIG_MAX_RANKS - 1 */

/* Where something was written in the YAML: 1-based; 0 when not from a file. */
struct st_config_pos {
    int line, column;
};

/* A capability override: left out, forced on, or forced off. */
typedef enum st_config_tri {
    ST_CONFIG_TRI_UNSET = 0,
    ST_CONFIG_TRI_FALSE,
    ST_CONFIG_TRI_TRUE,
} st_config_tri;

/* `caps:` under a device: overrides of struct st_caps (devices/device.h).
 * UNSET keeps what the device (or the emulated catalog card) reports. */
struct st_config_caps {
    st_config_tri fp16_arith;
    st_config_tri fp32_accum_fp16;
    st_config_tri bf16;
    st_config_tri tensor_cores;
    st_config_tri flash_attn;
    uint32_t weight_dtypes;      /* `weight_dtypes: [f16, bf16, q8_0]`: the stored weight dtypes the device
                                    may hold (ST_DTYPE_BIT set, devices/device.h); 0 = left out (what its
                                    backend runs) */
};

/* How a device entry names its device. */
typedef enum st_config_device_kind {
    ST_CONFIG_DEV_CPU = 0,       /* `cpu`: the host CPU (all packages) */
    ST_CONFIG_DEV_CUDA_INDEX,    /* `cuda:N`: ordinal after CUDA_VISIBLE_DEVICES */
    ST_CONFIG_DEV_CUDA_UUID,     /* `cuda:GPU-xxxxxxxx-...` (a unique prefix is enough) */
    ST_CONFIG_DEV_CATALOG,       /* `{catalog: NAME}`: a hypothetical card, dry runs only */
} st_config_device_kind;

/* One entry of `devices:`, in the order written (the order is a hint to the
 * planner only; it picks the stage order). */
struct st_config_device {
    st_config_device_kind kind;
    int index;                   /* CUDA_INDEX: the ordinal; else 0 */
    char uuid[48];               /* CUDA_UUID: "GPU-..." as written; else "" */
    char catalog[48];            /* CATALOG: catalog key ("tesla-m40"); else "" */
    char selector[96];           /* as written: "cpu", "cuda:1", "catalog:tesla-m40" */
    char name[48];               /* `name:` label for manual placement and output; "" when not given */
    uint64_t max_memory_bytes;   /* `max_memory:` cap on what strata may use; 0 = all the device has */
    uint64_t reserve_bytes;      /* `reserve:` kept free for others; default 0 */
    int threads;                 /* `threads:` CPU worker threads; 0 = all cores (CPU and catalog only) */
    char emulate[48];            /* `emulate:` catalog key whose capabilities and memory a real CUDA
                                    device takes on ("tesla-m40" runs the Maxwell path); "" = none */
    struct st_config_caps caps;  /* `caps:` overrides */
    int precision;               /* `precision:` ST_CONFIG_AUTO or an st_prec forced for this device */
    int attention;               /* `attention:` ST_CONFIG_AUTO or an st_attn_kind forced for this device */
    int kv_dtype;                /* `kv_dtype:` ST_CONFIG_AUTO or the st_dtype of this device's KV caches
                                    (F32, F16, BF16, Q8_0) */
    int rank;                    /* `rank:` the MPI rank (process, usually one per host) that owns the
                                    device; default 0. docs/multihost.md */
    struct st_config_pos rank_pos;      /* where rank's value is written (0 when left out) */
    struct st_config_pos pos;    /* where the entry starts */
    struct st_config_pos selector_pos;  /* where the selector (or catalog name) is written */
    struct st_config_pos emulate_pos;   /* where emulate's value is written (when given) */
};

/* `model:` exactly one of path and preset. */
struct st_config_model {
    char *path;                  /* GGUF file or Hugging Face directory; relative paths are resolved
                                    against the YAML file's directory. NULL when preset is set. */
    char *preset;                /* architecture preset for dry runs ("qwen2.5-7b"); NULL with path */
    char quant[16];              /* preset only: weight dtype ("f16", "bf16", "q8_0", "q4_k_m", ...);
                                    "" = the preset's own default */
    struct st_config_pos pos;    /* where path or preset is written */
};

typedef enum st_config_strategy {
    ST_CONFIG_STRATEGY_AUTO = 0, /* the planner places layers */
    ST_CONFIG_STRATEGY_MANUAL,   /* placement.manual lists the ranges */
} st_config_strategy;

typedef enum st_config_objective {
    ST_CONFIG_OBJECTIVE_LATENCY = 0,  /* one stream: minimise the sum of stage times and hops */
    ST_CONFIG_OBJECTIVE_THROUGHPUT,   /* pipelined batches: minimise the slowest stage */
} st_config_objective;

/* One manual stage: layers first_layer..last_layer (inclusive) on a device. */
struct st_config_stage {
    int device;                  /* index into st_deploy_config.devices */
    int64_t first_layer;         /* inclusive, >= 0 */
    int64_t last_layer;          /* inclusive, >= first_layer */
    struct st_config_pos pos;    /* where the entry starts */
};

struct st_config_placement {
    st_config_strategy strategy;     /* default AUTO (MANUAL when `manual:` is given) */
    st_config_objective objective;   /* default LATENCY */
    int precision;                   /* ST_CONFIG_AUTO or an st_prec for every device without its own */
    int attention;                   /* ST_CONFIG_AUTO or an st_attn_kind, likewise */
    int kv_dtype;                    /* ST_CONFIG_AUTO (the planner picks per stage: the precision's float type,
                                        q8_0 only where that does not fit) or an st_dtype, likewise */
    struct st_config_stage *manual;  /* (n_manual) ranges in layer order, contiguous from layer 0;
                                        that they end at the model's last layer is the planner's check */
    int n_manual;
    char *numerics;                  /* `numerics:` numerics profile from `strata calibrate` (fp16-safe layers),
                                        resolved like model.path; NULL = none */
    struct st_config_pos numerics_pos;  /* where its value is written */
};

typedef enum st_config_transport {
    ST_CONFIG_TRANSPORT_AUTO = 0,    /* per link: peer where P2P works, host staging for CPU stages */
    ST_CONFIG_TRANSPORT_PEER,        /* cudaMemcpyPeerAsync (staged by the driver without P2P) */
    ST_CONFIG_TRANSPORT_NCCL,        /* ncclSend/ncclRecv */
    ST_CONFIG_TRANSPORT_HOST,        /* pinned host staging */
} st_config_transport;

typedef enum st_config_chat {
    ST_CONFIG_CHAT_AUTO = 0,         /* the model's template: ChatML for Qwen, Llama 3 for Llama */
    ST_CONFIG_CHAT_CHATML,
    ST_CONFIG_CHAT_LLAMA3,
    ST_CONFIG_CHAT_NONE,             /* the prompt is fed raw */
} st_config_chat;

/* `network:` how hosts of different ranks are connected, for the planner's
 * hops between them (docs/multihost.md): a preset ("10gbe", "25gbe",
 * "100gbe", "ib-edr", ...: st_plan_network_preset) and/or figures. */
struct st_config_network {
    bool set;                    /* the key was given */
    char preset[24];             /* preset name as written, lower-cased; "" = figures only */
    double bandwidth_gbps;       /* effective GB/s (1e9 bytes/s) one way */
    double latency_us;           /* one small message, one way */
    struct st_config_pos pos;    /* where the value is written */
};

/* `generation:` sampling as in llama.cpp (docs/config.md, reference §6.1). */
struct st_config_generation {
    int64_t max_tokens;          /* tokens to generate, >= 1 */
    float temperature;           /* >= 0; 0 = greedy */
    int top_k;                   /* >= 0; 0 = off */
    float top_p;                 /* (0, 1]; 1 = off */
    float min_p;                 /* [0, 1); 0 = off */
    float repeat_penalty;        /* > 0; 1 = off */
    int64_t repeat_last_n;       /* window of the penalties in tokens; 0 = off, -1 = whole context */
    float frequency_penalty;     /* [-2, 2]; 0 = off */
    float presence_penalty;      /* [-2, 2]; 0 = off */
    bool has_seed;               /* false: seeded from the clock */
    uint64_t seed;               /* when has_seed */
    char **stop;                 /* (n_stop) extra stop strings, UTF-8 */
    int n_stop;
    st_config_chat chat_template;
    char *system;                /* system prompt, or NULL for the template's default */
};

/* A whole deployment. Owned by the caller; free with st_config_free(). */
struct st_deploy_config {
    char *source;                    /* file name used in messages ("deploy.yaml") */
    int version;                     /* always ST_CONFIG_VERSION after a successful load */
    struct st_config_model model;
    struct st_config_device *devices;/* (n_devices) >= 1 */
    int n_devices;
    struct st_config_placement placement;
    st_config_transport transport;   /* default AUTO */
    struct st_config_network network;/* hosts of different ranks; unset = a probe or the default (10gbe) */
    int64_t context;                 /* tokens of KV cache per sequence; default 4096 */
    int64_t batch;                   /* sequences decoded together; default 1 */
    int64_t prefill_chunk;           /* prompt tokens per prefill step; default 512 */
    struct st_config_generation generation;
};

/* Reads and validates a deployment file. On success *out is a new config; on
 * error *out is NULL, the status is ST_ERR_CONFIG (a missing or unreadable
 * file included) and st_last_error() holds "FILE:LINE:COL: key: ..." plus a
 * hint line. */
st_status st_config_load(const char *path, struct st_deploy_config **out);

/* The same on text in memory (len bytes, NUL not required). name is used in
 * messages and as the file's location: a relative model path is resolved
 * against the directory part of name (none when name has no '/'). */
st_status st_config_parse(const char *text, size_t len, const char *name,
                          struct st_deploy_config **out);

/* Checks every catalog name in cfg (devices {catalog: NAME} and emulate:)
 * against the GPU catalog (st_catalog_lookup). st_config_parse calls it; it is
 * public so that a caller holding a hand-built config can run the same check.
 * Errors name the file position of the entry. */
st_status st_config_check_catalog(const struct st_deploy_config *cfg);

/* Checks the devices' `rank:` against the ranks running: n_ranks >= 1 is the
 * size of the MPI world (1 without mpirun), and a rank at or above it is an
 * error at the rank's position; n_ranks 0 is a what-if plan without a
 * launch, where only catalog devices may sit on ranks above 0. Either way the
 * ranks used must count 0, 1, 2, ... without a gap. */
st_status st_config_check_ranks(const struct st_deploy_config *cfg, int n_ranks);

void st_config_free(struct st_deploy_config *cfg);   /* accepts NULL */

/* Names as written in YAML ("latency", "nccl", "fp16", "auto", ...). Never NULL. */
const char *st_config_objective_name(st_config_objective o);
const char *st_config_transport_name(st_config_transport t);
const char *st_config_strategy_name(st_config_strategy s);
const char *st_config_prec_name(int prec);     /* ST_CONFIG_AUTO or an st_prec */
const char *st_config_attn_name(int attn);     /* ST_CONFIG_AUTO or an st_attn_kind */
const char *st_config_kv_name(int kv);         /* ST_CONFIG_AUTO or an st_dtype: "auto", "f32", ..., "q8_0" */
const char *st_config_chat_name(st_config_chat c);
const char *st_config_device_kind_name(st_config_device_kind k);

/* A device's label for messages: its name, else its selector. */
const char *st_config_device_label(const struct st_config_device *d);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_CONFIG_H */
