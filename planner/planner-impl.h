/* planner/planner-impl.h — internals shared by the planner's files. */
#ifndef STRATA_PLANNER_IMPL_H
#define STRATA_PLANNER_IMPL_H

#include "planner/planner.h"

/* Efficiency factors applied to catalog (peak) figures; docs/planner.md
 * explains each. A probe profile's measured bandwidth replaces PL_EFF_BW. */
#define PL_EFF_BW_GPU      0.75   /* decode GEMV streams weights at 75% of peak */
#define PL_EFF_BW_CPU      0.70
#define PL_EFF_FP32_GPU    0.70   /* SGEMM on CUDA cores */
#define PL_EFF_TENSOR_GPU  0.50   /* fp16/bf16 tensor-core GEMM incl. dequantisation */
#define PL_EFF_FP32_CPU    0.50
#define PL_LAUNCH_US_GPU   4.0    /* per kernel in a captured decode step */
#define PL_LAUNCH_US_CPU   2.0    /* per op: thread-pool fork/join */
#define PL_OVERHEAD_GPU    (512ull << 20)
#define PL_OVERHEAD_CPU    (256ull << 20)
#define PL_GEMV_MAX_BATCH  8      /* decode batches up to this use the fp32 GEMV path */

#define PL_N_PREC 3

/* Effective rates of one device. */
struct pl_rates {
    double bw_gbps;              /* KV, activations */
    double weight_bw_gbps;       /* streaming the stored weights (a probed GEMV rate when known) */
    double fp32_tflops;
    double prec_tflops[PL_N_PREC];  /* matmul rate at each stage precision */
    double launch_us;
};

/* What a device can do at precision p under the request. */
struct pl_mode {
    st_prec prec;
    bool allowed;                /* caps and forced settings permit p */
    bool need_safe;              /* p == F16 chosen by the planner: every layer must be fp16-safe */
    st_attn_kind attn;
    st_dtype kv;
    char why_not[160];           /* when !allowed */
};

void pl_rates_of(const struct st_plan_device *d, const struct st_plan_model *m, struct pl_rates *r);
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
st_status st_plan_model_copy(const struct st_plan_model *src, struct st_plan_model *dst);

/* The exact partitioner (partition.c). Fills ranges (device, first, last) in
 * layer order and returns the number of stages, 0 when nothing fits, -1 on
 * error (message set). best_out: the optimal objective value (ms). */
int pl_partition(const struct st_plan_model *m, const struct st_plan_device *devs, int n_dev,
                 const struct st_plan_link *links, const struct st_plan_request *req,
                 struct st_plan_range *ranges, double *best_out);

/* Reasons list (plan.c) */
void pl_reason(st_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
