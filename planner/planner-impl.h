/* planner/planner-impl.h — internals shared by the planner's files. */
#ifndef STRATA_PLANNER_IMPL_H
#define STRATA_PLANNER_IMPL_H

#include "planner/planner.h"

/* ---- the cost model's calibration: one table -------------------------------
 *
 * Catalog (peak) figures become effective ones through the rows below;
 * docs/planner.md §Cost model says where each number comes from and
 * bench/measured.yaml holds the measurements they are checked against
 * (tests/planner/test_measured.c: every prediction within 10%). Re-calibrating
 * after a kernel change = editing a row here and adding the new measurement
 * to bench/measured.yaml.
 *
 * A device takes the generation row of its compute capability (the CPU row
 * for the CPU), then a card row with its catalog key overrides the fields it
 * sets (non-zero). A probe profile replaces what it measured: copy bandwidth,
 * GEMV rates per dtype, GEMM rates, launch cost. */

/* Stored weights as a decode GEMV sees them: one class per kernel family. */
enum pl_wclass {
    PL_WC_F32 = 0,               /* fp32: one FMA per 4 bytes */
    PL_WC_F16,                   /* f16 / bf16: widened in registers */
    PL_WC_Q8,                    /* q8_0 (8.5 bits): int8 + a scale per 32 */
    PL_WC_K4,                    /* q4_k, q5_k (4.5, 5.5 bits): 256-weight super-blocks, 6-bit sub-scales */
    PL_WC_K6,                    /* q6_k (6.56 bits) */
    PL_WC_Q4,                    /* q4_0, q4_1, q5_0, q5_1, iq4_nl: 32-weight blocks of 4-5 bits */
    PL_N_WC
};

struct pl_eff {
    const char *key;             /* generation ("hopper"), "cpu", or a catalog key for a card row */
    int cc_min;                  /* generation rows: lowest 10 * major + minor they cover; -1 card row; 0 CPU */
    double copy;                 /* copy bandwidth (bytes read + written) / datasheet bandwidth */
    double gemv[PL_N_WC];        /* batch-1 GEMVs of a decode layer in one graph (their launches included),
                                    weight bytes per second / copy bandwidth, per class, where memory binds
                                    them; GPU quantized classes are mostly bound by their instructions
                                    instead (pl_gemv_ops) */
    double kv;                   /* decode attention reading the KV cache / copy bandwidth */
    double kernel_us;            /* per kernel of a decode step other than the GEMVs (GPU: a node of the
                                    stage's CUDA graph, its gap and a small kernel's run); CPU: fork/join of one op */
    double gap_us;               /* per kernel of a prefill chunk (GPU, launched one after another: the end of
                                    one kernel to the start of the next); CPU: 0, kernel_us applies */
    double stage_us;             /* per stage and step: graph launch, events, the stage's host work */
    double sgemm;                /* fp32 GEMM: a full wave of 128 x 128 output tiles / fp32 peak */
    double tensor;               /* f16/bf16 tensor-core GEMM: a full wave of 128 x 128 output tiles / tensor peak */
    double attn;                 /* flash attention's two matmuls (prefill) / the same tensor peak */
};

/* The table. Generation rows in order of cc_min; card rows after them.
 * Measured (docs/planner.md §Calibration): the hopper row (H100,
 * bench/measured.yaml, gpu_gemv, gpu_gemm_peak) and the h200 card row's copy.
 * The other rows copy Hopper's kernel factors (the same kernels run
 * everywhere) and assume their memory's copy efficiency, the decode
 * attention's and a small kernel's cost at their clocks: defaults until a
 * card of that generation is measured. */
static const struct pl_eff pl_eff_table[] = {
    /*  key     cc_min  copy   gemv: f32   f16   q8    k4    k6    q4     kv   kernel gap stage sgemm tensor attn */
    {"cpu",        0, 0.70,  {1.00, 0.90, 0.80, 0.70, 0.70, 0.70}, 1.00, 2.0, 0.0,  10.0, 0.50, 0.00, 0.000},
    {"maxwell",   50, 0.80,  {1.00, 0.99, 0.99, 0.99, 0.99, 0.99}, 0.50, 7.6, 2.6,  34.0, 0.70, 0.00, 0.000},
    {"pascal",    60, 0.80,  {1.00, 0.99, 0.99, 0.99, 0.99, 0.99}, 0.50, 6.7, 2.3,  34.0, 0.75, 0.00, 0.000},
    {"volta",     70, 0.87,  {1.00, 0.99, 0.99, 0.99, 0.99, 0.99}, 0.50, 5.7, 2.0,  34.0, 0.75, 0.79, 0.069},
    {"turing",    75, 0.80,  {1.00, 0.99, 0.99, 0.99, 0.99, 0.99}, 0.50, 5.7, 2.0,  34.0, 0.75, 0.79, 0.069},
    {"ampere",    80, 0.87,  {1.00, 0.99, 0.99, 0.99, 0.99, 0.99}, 0.50, 4.8, 1.6,  34.0, 0.75, 0.79, 0.069},
    {"ada",       89, 0.87,  {1.00, 0.99, 0.99, 0.99, 0.99, 0.99}, 0.50, 4.2, 1.5,  34.0, 0.75, 0.79, 0.069},
    {"hopper",    90, 0.876, {1.00, 0.99, 0.99, 0.99, 0.99, 0.99}, 0.19, 4.0, 1.4,  34.0, 0.75, 0.79, 0.069},
    /* cards whose memory reaches another fraction of its datasheet bandwidth than their generation's row */
    {"h200",      -1, 0.84,  {0, 0, 0, 0, 0, 0}, 0, 0, 0, 0, 0, 0, 0},
};
#define PL_N_EFF ((int)(sizeof pl_eff_table / sizeof pl_eff_table[0]))

/* Kernels bound by their instructions rather than by memory, in fp32 operations
 * per weight: a card's fp32 peak (its SMs x lanes x clock) sets their rate.
 * The same code runs everywhere; measured on an H100 (docs/planner.md
 * §Calibration: gpu_gemv's rates / the H100's 67 TFLOPS).
 * Decode GEMVs (their x quantization included; 0: memory-bound, the float
 * classes): with dp4a (cc >= 6.1, int8 x), and without (the Maxwell path,
 * cc < 6.1: each weight dequantized and multiplied in fp32). */
static const double pl_gemv_ops_dp4a[PL_N_WC] = {0, 0, 34.8, 22.2, 35.4, 27.3};
static const double pl_gemv_ops_fp32[PL_N_WC] = {0, 0, 94.0, 50.2, 61.3, 50.2};
/* Prefill GEMM over quantized weights: a weight dequantized into the GEMM's scratch (the whole matrix). */
#define PL_DEQUANT_OPS 115.0

#define PL_OVERHEAD_GPU    (512ull << 20)
#define PL_OVERHEAD_CPU    (256ull << 20)
#define PL_GEMV_MAX_BATCH  8      /* decode batches up to this use the fp32 GEMV path */

#define PL_N_PREC 3
#define PL_N_MODE (2 * PL_N_PREC)   /* partition modes: each precision with its float or a q8_0 KV cache */

/* Effective rates of one device (GB/s, TFLOPS, microseconds). */
struct pl_rates {
    const char *row;             /* the generation row used ("hopper"), for reasons */
    double bw_gbps;              /* copy bandwidth: activations, scores, dequantized tiles */
    double gemv_gbps[PL_N_WC];   /* decode GEMV streaming each weight class (a probed GEMV rate when known;
                                    without dp4a the quantized classes' instruction-bound rate) */
    double kv_gbps;              /* decode attention reading the KV cache */
    double fp32_tflops;          /* fp32 GEMM rate (a full wave of tiles) */
    double fp32_peak_tflops;     /* fp32 peak: the rate of instruction-bound kernels (dequantization) */
    double prec_tflops[PL_N_PREC];  /* GEMM rate of a full wave of tiles at each stage precision */
    double attn_tflops[PL_N_PREC];  /* flash attention's matmuls at each precision */
    double gemv_dt[ST_DTYPE_COUNT];      /* a quantized dtype's own probed GEMV rate (the CPU's; 0: not
                                            measured, gemv_gbps of its class) */
    double gemm_dt[ST_DTYPE_COUNT];      /* CPU: its GEMM over weights of each dtype: the dtype's probed
                                            rate; unprobed, a float dtype the fp32 rate (they are widened
                                            to fp32), a quantized one q8_0's (the integer path: 8-bit
                                            activations, integer dot products), else the fp32 rate */
    bool tensor[PL_N_PREC];      /* the precision's GEMMs run on tensor cores (cuBLAS f16 from cc 7.0, bf16 from
                                    8.0; not on the Maxwell path): quantized weights are dequantized to it */
    double sm;                   /* streaming multiprocessors (0: unknown, no wave quantization) */
    double launch_us;            /* per kernel of a decode step */
    double gap_us;               /* per kernel of a prefill chunk */
    double stage_us;             /* per stage and step */
    bool cpu;
    bool dp4a;                   /* quantized GEMVs run dp4a on int8 x (cc >= 6.1) */
};

/* The row a device uses, merged (generation row, then its card row). */
struct pl_eff pl_eff_of(const struct st_plan_device *d);
/* Weight class of bytes holding elems weights (bits per weight), for a model without matrix dtypes. */
enum pl_wclass pl_wclass_of(double bytes, double elems);
/* Weight class of a stored dtype. */
enum pl_wclass pl_wclass_dtype(st_dtype t);
const char *pl_wclass_name(enum pl_wclass c);

/* What a device can do at precision p under the request. */
struct pl_mode {
    st_prec prec;
    bool allowed;                /* caps and forced settings permit p */
    bool need_safe;              /* p == F16 chosen by the planner: every layer must be fp16-safe */
    st_attn_kind attn;
    st_dtype kv;                 /* the KV cache: forced (kv_dtype:), else the precision's float type */
    bool kv_auto;                /* kv_dtype: auto: q8_0 may replace kv when the stage is short */
    char why_not[160];           /* when !allowed */
};

void pl_rates_of(const struct st_plan_device *d, const struct st_plan_model *m, struct pl_rates *r);
/* Bytes per KV cache value (Q8_0: 34 / 32). */
double pl_kv_value_bytes(st_dtype kv);
void pl_mode_of(const struct st_plan_device *d, const struct st_plan_request *req, st_prec p, struct pl_mode *out);

/* Per-layer and per-stage pieces; all times in ms, memory in bytes. */
double pl_layer_decode_ms(const struct st_plan_model *m, const struct st_plan_request *req,
                          const struct pl_rates *r, const struct pl_mode *md, int64_t l, const char **bound);
double pl_layer_prefill_ms(const struct st_plan_model *m, const struct st_plan_request *req,
                           const struct pl_rates *r, st_prec p, const struct pl_mode *md, int64_t l);
uint64_t pl_layer_mem(const struct st_plan_model *m, const struct st_plan_request *req, const struct pl_mode *md,
                      int64_t l);
double pl_fixed_decode_ms(const struct st_plan_model *m, const struct st_plan_request *req,
                          const struct pl_rates *r, bool first, bool last);
double pl_fixed_prefill_ms(const struct st_plan_model *m, const struct st_plan_request *req,
                           const struct pl_rates *r, bool first, bool last);
uint64_t pl_fixed_weights(const struct st_plan_model *m, bool first, bool last);
uint64_t pl_workspace(const struct st_plan_model *m, const struct st_plan_request *req,
                      const struct st_plan_device *d, st_prec p, const struct pl_mode *md, bool first, bool last);
int64_t pl_decode_at(const struct st_plan_request *req);
int64_t pl_prompt(const struct st_plan_request *req);
double pl_hop_ms(const struct st_plan_model *m, const struct st_plan_request *req, const struct st_plan_link *l,
                 bool prefill);

/* Link kind names in plan files: "none", "pcie", "nvlink", "same", then
 * "unknown" for any later kind (cost.c). Kept here so plans do not depend on
 * the inventory's naming. */
const char *pl_link_name(st_link_kind k);

/* model helpers (model.c) */
st_status st_plan_model_alloc(struct st_plan_model *m, int64_t n_layer);
/* m->mat_dtypes for m->n_layer layers, every entry ST_DTYPE_COUNT (no matrix). */
st_status pl_model_alloc_dtypes(struct st_plan_model *m);
st_status st_plan_model_copy(const struct st_plan_model *src, struct st_plan_model *dst);

/* The exact partitioner (partition.c). Fills ranges (device, first, last) in
 * layer order and returns the number of stages, 0 when nothing fits, -1 on
 * error (message set). best_out: the optimal objective value (ms). */
int pl_partition(const struct st_plan_model *m, const struct st_plan_device *devs, int n_dev,
                 const struct st_plan_link *links, const struct st_plan_request *req,
                 struct st_plan_range *ranges, double *best_out);

/* ---- weight types (cost.c) ----------------------------------------------------
 * A device holds a tensor only when its backend runs the tensor's stored dtype
 * (caps.weight_dtypes): a stage's block matrices, the embedding table on the
 * first stage, the lm_head on the last. */

/* The dtypes d runs: caps.weight_dtypes, every dtype when not stated. */
uint32_t pl_dev_dtypes(const struct st_plan_device *d);
/* The first tensor of layers first..last (with the embedding table before them, the output head
 * after them, when asked) whose dtype is in `dtypes`: its name into name, its dtype into *dt, and
 * the number of such tensors in the range as the result (0: none). */
int pl_tensors_of(const struct st_plan_model *m, uint32_t dtypes, int64_t first, int64_t last, bool embd, bool out,
                  char *name, size_t name_len, st_dtype *dt);
/* True when d runs every tensor of the stage first..last (the embedding when first == 0, the
 * output head when last == n_layer - 1); else false and, when why, "cannot run q4_k weights
 * (blk.3.ffn_down.weight): its backend runs f32 f16 ...". */
bool pl_stage_runs(const struct st_plan_model *m, const struct st_plan_device *d, int64_t first, int64_t last,
                   char *why, size_t why_len);

/* Reasons list (plan.c) */
void pl_reason(st_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
