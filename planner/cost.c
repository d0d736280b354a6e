/* Memory estimator and cost model: what a stage needs and how long it takes.
 * The formulas and factors are documented in docs/planner.md. */
#include "planner/planner-impl.h"

#include <math.h>
#include <string.h>
#include <strings.h>

/* ---- devices ------------------------------------------------------------ */

void st_plan_device_init(struct st_plan_device *d, const struct st_device_info *info) {
    memset(d, 0, sizeof *d);
    d->info = *info;
    d->force_prec = -1;
    d->force_attn = -1;
    d->force_kv = -1;
    d->is_cpu = st_device_host_memory(info);   /* its backend computes in host memory */
    d->overhead_bytes = d->is_cpu ? PL_OVERHEAD_CPU : PL_OVERHEAD_GPU;
    st_device_selector(info, d->select, sizeof d->select);
    if (info->catalog[0]) snprintf(d->label, sizeof d->label, "%s", info->catalog);
    else if (d->is_cpu) snprintf(d->label, sizeof d->label, "cpu");
    else snprintf(d->label, sizeof d->label, "%s", info->name[0] ? info->name : d->select);
    if (d->is_cpu) {
        struct st_perf *pf = &d->info.perf;
        int cores = info->sm_count > 0 ? info->sm_count : (info->threads > 0 ? info->threads : 1);
        if (pf->mem_bw_gbps <= 0) pf->mem_bw_gbps = 25.0;
        if (pf->fp32_tflops <= 0) pf->fp32_tflops = cores * 32.0 * 2.5e9 / 1e12;
    }
}

uint64_t st_plan_device_usable(const struct st_plan_device *d) {
    uint64_t base = d->info.mem_total_bytes;
    if (d->is_cpu && d->info.mem_free_bytes > 0) base = d->info.mem_free_bytes;
    if (d->max_memory_bytes > 0 && d->max_memory_bytes < base) base = d->max_memory_bytes;
    uint64_t take = d->overhead_bytes + d->reserve_bytes;
    return base > take ? base - take : 0;
}

struct pl_eff pl_eff_of(const struct st_plan_device *d) {
    int cc = d->info.caps.cc_major * 10 + d->info.caps.cc_minor;
    struct pl_eff e = pl_eff_table[0];             /* the CPU row */
    if (!d->is_cpu) {
        e = pl_eff_table[1];                       /* older than Maxwell: the oldest generation's row */
        for (int i = 1; i < PL_N_EFF; i++)
            if (pl_eff_table[i].cc_min > 0 && pl_eff_table[i].cc_min <= cc) e = pl_eff_table[i];
    }
    if (!d->info.catalog[0]) return e;
    for (int i = 0; i < PL_N_EFF; i++) {
        const struct pl_eff *c = &pl_eff_table[i];
        if (c->cc_min >= 0 || strcmp(c->key, d->info.catalog) != 0) continue;
        if (c->copy > 0) e.copy = c->copy;
        for (int k = 0; k < PL_N_WC; k++) if (c->gemv[k] > 0) e.gemv[k] = c->gemv[k];
        if (c->kv > 0) e.kv = c->kv;
        if (c->kernel_us > 0) e.kernel_us = c->kernel_us;
        if (c->gap_us > 0) e.gap_us = c->gap_us;
        if (c->stage_us > 0) e.stage_us = c->stage_us;
        if (c->sgemm > 0) e.sgemm = c->sgemm;
        if (c->tensor > 0) e.tensor = c->tensor;
        if (c->attn > 0) e.attn = c->attn;
    }
    return e;
}

enum pl_wclass pl_wclass_of(double bytes, double elems) {
    if (elems <= 0) return PL_WC_F16;
    double bits = 8.0 * bytes / elems;
    return bits >= 24.0 ? PL_WC_F32 : bits >= 12.0 ? PL_WC_F16 : bits >= 7.5 ? PL_WC_Q8 : bits >= 6.0 ? PL_WC_K6
                                                                                        : PL_WC_K4;
}

enum pl_wclass pl_wclass_dtype(st_dtype t) {
    switch (t) {
    case ST_DTYPE_F32: return PL_WC_F32;
    case ST_DTYPE_F16: case ST_DTYPE_BF16: return PL_WC_F16;
    case ST_DTYPE_Q8_0: return PL_WC_Q8;
    case ST_DTYPE_Q4_K: case ST_DTYPE_Q5_K: return PL_WC_K4;
    case ST_DTYPE_Q6_K: return PL_WC_K6;
    default: return PL_WC_Q4;   /* q4_0, q4_1, q5_0, q5_1, iq4_nl */
    }
}

const char *pl_wclass_name(enum pl_wclass c) {
    static const char *const n[PL_N_WC] = {"f32", "f16/bf16", "q8_0", "q4_k/q5_k", "q6_k", "q4_0..q5_1"};
    return (unsigned)c < PL_N_WC ? n[c] : "?";
}

void pl_rates_of(const struct st_plan_device *d, const struct st_plan_model *m, struct pl_rates *r) {
    const struct st_perf *pf = &d->info.perf;
    struct pl_eff e = pl_eff_of(d);
    memset(r, 0, sizeof *r);
    r->row = e.key;
    /* a probe measured the copy itself; the catalog gives the datasheet figure */
    r->bw_gbps = pf->mem_bw_gbps * (pf->measured ? 1.0 : e.copy);
    if (r->bw_gbps <= 0) r->bw_gbps = 1.0;      /* unknown: a figure that makes the device unattractive */
    for (int k = 0; k < PL_N_WC; k++) r->gemv_gbps[k] = r->bw_gbps * e.gemv[k];
    /* probed GEMV rates (weight bytes/s through the backend's own matmul) win for the float classes */
    if (pf->gemv_gbps[ST_PREC_F32] > 0) r->gemv_gbps[PL_WC_F32] = pf->gemv_gbps[ST_PREC_F32];
    double g16 = m && m->matrix_dtype == ST_DTYPE_F16 ? pf->gemv_gbps[ST_PREC_F16]
               : m && m->matrix_dtype == ST_DTYPE_BF16 ? pf->gemv_gbps[ST_PREC_BF16]
               : ST_MIN(pf->gemv_gbps[ST_PREC_F16] > 0 ? pf->gemv_gbps[ST_PREC_F16] : INFINITY,
                        pf->gemv_gbps[ST_PREC_BF16] > 0 ? pf->gemv_gbps[ST_PREC_BF16] : INFINITY);
    if (g16 > 0 && isfinite(g16)) r->gemv_gbps[PL_WC_F16] = g16;
    if (pf->gemv_gbps[ST_DTYPE_Q8_0] > 0) r->gemv_gbps[PL_WC_Q8] = pf->gemv_gbps[ST_DTYPE_Q8_0];
    r->kv_gbps = r->bw_gbps * e.kv;
    /* a probed GEMM rate is the rate at prefill sizes already */
    double e32 = pf->measured ? 1.0 : e.sgemm, etc = pf->measured ? 1.0 : e.tensor;
    r->fp32_tflops = pf->fp32_tflops > 0 ? pf->fp32_tflops * e32 : 0.05;
    r->prec_tflops[ST_PREC_F32] = r->fp32_tflops;
    r->prec_tflops[ST_PREC_F16] = pf->fp16_tflops > 0 && d->info.caps.tensor_cores && etc > 0
                                      ? pf->fp16_tflops * etc : r->fp32_tflops;
    r->prec_tflops[ST_PREC_BF16] = pf->bf16_tflops > 0 && etc > 0 ? pf->bf16_tflops * etc : r->fp32_tflops;
    const double q8 = pf->gemm_tflops[ST_DTYPE_Q8_0] > 0 ? pf->gemm_tflops[ST_DTYPE_Q8_0] : r->fp32_tflops;
    for (int k = 0; k < ST_DTYPE_COUNT; k++) {
        const bool quant = st_dtype_block_elems((st_dtype)k) > 1;
        r->gemm_dt[k] = pf->gemm_tflops[k] > 0 && d->is_cpu ? pf->gemm_tflops[k] : quant ? q8 : r->fp32_tflops;
        if (quant) r->gemv_dt[k] = pf->gemv_gbps[k];
    }
    for (int p = 0; p < PL_N_PREC; p++)
        r->attn_tflops[p] = p == ST_PREC_F32 || e.tensor <= 0 ? r->fp32_tflops
                                                              : r->prec_tflops[p] * e.attn / e.tensor;
    const int cc = d->info.caps.cc_major * 10 + d->info.caps.cc_minor;
    r->fp32_peak_tflops = pf->fp32_tflops > 0 ? pf->fp32_tflops : 0.05;
    /* cuBLAS on tensor cores (the CUDA backend: f16 from cc 7.0, bf16 from 8.0; the Maxwell path, cc < 6.0,
     * has none): quantized weights are dequantized to the stage precision, else to fp32 */
    r->tensor[ST_PREC_F16] = !d->is_cpu && cc >= 70 && r->prec_tflops[ST_PREC_F16] > r->fp32_tflops;
    r->tensor[ST_PREC_BF16] = !d->is_cpu && cc >= 80 && r->prec_tflops[ST_PREC_BF16] > r->fp32_tflops;
    r->sm = !d->is_cpu && d->info.sm_count > 0 ? (double)d->info.sm_count : 0;
    r->launch_us = pf->launch_us > 0 ? pf->launch_us : e.kernel_us;
    r->gap_us = d->is_cpu ? r->launch_us : e.gap_us;
    r->stage_us = e.stage_us;
    r->cpu = d->is_cpu;
    r->dp4a = !d->is_cpu && cc >= 61;
}

void pl_mode_of(const struct st_plan_device *d, const struct st_plan_request *req, st_prec p, struct pl_mode *out) {
    const struct st_caps *c = &d->info.caps;
    memset(out, 0, sizeof *out);
    out->prec = p;
    int fp = d->force_prec >= 0 ? d->force_prec : req->force_prec;
    int fa = d->force_attn >= 0 ? d->force_attn : req->force_attn;
    int fk = d->force_kv >= 0 ? d->force_kv : req->force_kv;
    out->kv = fk >= 0 ? (st_dtype)fk : p == ST_PREC_F32 ? ST_DTYPE_F32 : p == ST_PREC_F16 ? ST_DTYPE_F16 : ST_DTYPE_BF16;
    out->kv_auto = fk < 0;
    out->allowed = true;
    if (fp >= 0 && fp != (int)p) {
        out->allowed = false;
        snprintf(out->why_not, sizeof out->why_not, "precision %s is forced", st_prec_name((st_prec)fp));
        return;
    }
    if (p == ST_PREC_BF16 && !c->bf16) {
        out->allowed = false;
        if (d->is_cpu)   /* the CPU's reasons speak of the CPU, not of a compute capability */
            snprintf(out->why_not, sizeof out->why_not, "the CPU backend multiplies in fp32 (bf16 weights are widened)");
        else
            snprintf(out->why_not, sizeof out->why_not, "no bf16 (cc %d.%d < 8.0)", c->cc_major, c->cc_minor);
        return;
    }
    if (p == ST_PREC_F16 && !(c->fp16_arith && c->fp32_accum_fp16)) {
        out->allowed = false;
        if (d->is_cpu)
            snprintf(out->why_not, sizeof out->why_not, "the CPU backend has no fp16 arithmetic (f16 weights are "
                     "widened to fp32)");
        else if (!c->fp16_arith)
            snprintf(out->why_not, sizeof out->why_not, "no fast fp16 arithmetic (cc %d.%d)", c->cc_major, c->cc_minor);
        else
            snprintf(out->why_not, sizeof out->why_not, "no fp16 GEMM with fp32 accumulation (cc %d.%d < 7.0)",
                     c->cc_major, c->cc_minor);
        return;
    }
    if (p == ST_PREC_F16 && fp < 0) {
        if (!req->fp16_safe) {
            out->allowed = false;
            snprintf(out->why_not, sizeof out->why_not, "fp16 activations need a numerics profile marking layers safe");
            return;
        }
        out->need_safe = true;
    }
    bool flash_ok = c->flash_attn && p != ST_PREC_F32 && !d->is_cpu;
    if (fa == ST_ATTN_FLASH && !flash_ok) {
        out->allowed = false;
        if (d->is_cpu)
            snprintf(out->why_not, sizeof out->why_not, "flash attention is forced but is a GPU kernel (cc >= 8.0); "
                     "the CPU runs eager attention");
        else if (!c->flash_attn)
            snprintf(out->why_not, sizeof out->why_not, "flash attention is forced but needs cc >= 8.0 (has %d.%d)",
                     c->cc_major, c->cc_minor);
        else
            snprintf(out->why_not, sizeof out->why_not, "flash attention runs on tensor cores, not in f32");
        return;
    }
    out->attn = fa == ST_ATTN_EAGER ? ST_ATTN_EAGER : flash_ok ? ST_ATTN_FLASH : ST_ATTN_EAGER;
}

double pl_kv_value_bytes(st_dtype kv) {
    return (double)st_dtype_block_bytes(kv) / (double)st_dtype_block_elems(kv);
}

/* ---- weight types --------------------------------------------------------- */

uint32_t pl_dev_dtypes(const struct st_plan_device *d) {
    return d->info.caps.weight_dtypes ? d->info.caps.weight_dtypes : ST_DTYPE_ALL;
}

static bool in_set(uint32_t dtypes, unsigned t) { return t < ST_DTYPE_COUNT && (dtypes & ST_DTYPE_BIT(t)); }

int pl_tensors_of(const struct st_plan_model *m, uint32_t dtypes, int64_t first, int64_t last, bool embd, bool out,
                  char *name, size_t name_len, st_dtype *dt) {
    int n = 0;
    char nm[128] = "";
    st_dtype t0 = ST_DTYPE_COUNT;
    if (embd && in_set(dtypes, m->embd_dtype)) {
        n++;
        st_model_role_name(m->names, 0, ST_T_TOK_EMBD, true, nm, sizeof nm);
        t0 = m->embd_dtype;
    }
    for (int64_t l = first; l <= last; l++) {
        if (!(st_plan_model_layer_dtypes(m, l) & dtypes)) continue;
        for (int k = 0; k < ST_PLAN_N_MATRICES; k++) {
            unsigned t = m->mat_dtypes ? m->mat_dtypes[l * ST_PLAN_N_MATRICES + k] : (unsigned)m->matrix_dtype;
            if (!in_set(dtypes, t)) continue;
            if (!n++) {
                st_model_role_name(m->names, l, st_plan_matrix_roles[k], false, nm, sizeof nm);
                t0 = (st_dtype)t;
            }
        }
    }
    if (out && in_set(dtypes, m->lm_head_dtype) && !(embd && m->tied_embeddings)) {   /* tied: counted once */
        if (!n++) {
            /* tied: the output head is the embedding table (a copy on the last stage) */
            st_model_role_name(m->names, 0, m->tied_embeddings ? ST_T_TOK_EMBD : ST_T_OUTPUT, true, nm, sizeof nm);
            if (m->tied_embeddings) strncat(nm, " as the output head", sizeof nm - strlen(nm) - 1);
            t0 = m->lm_head_dtype;
        }
    }
    if (name && name_len) snprintf(name, name_len, "%s", nm);
    if (dt) *dt = t0;
    return n;
}

bool pl_stage_runs(const struct st_plan_model *m, const struct st_plan_device *d, int64_t first, int64_t last,
                   char *why, size_t why_len) {
    const uint32_t lacks = ~pl_dev_dtypes(d) & ST_DTYPE_ALL;
    const bool embd = first == 0, out = last == m->n_layer - 1;
    bool ok = !(embd && in_set(lacks, m->embd_dtype)) && !(out && in_set(lacks, m->lm_head_dtype));
    for (int64_t l = first; l <= last && ok; l++) ok = !(st_plan_model_layer_dtypes(m, l) & lacks);
    if (ok || !why || !why_len) return ok;
    char nm[128], runs[160];
    st_dtype t = ST_DTYPE_COUNT;
    pl_tensors_of(m, lacks, first, last, embd, out, nm, sizeof nm, &t);
    snprintf(why, why_len, "it cannot run %s weights (%s): its backend runs %s", st_dtype_name(t), nm,
             st_dtype_mask_text(pl_dev_dtypes(d), " ", runs, sizeof runs));
    return false;
}

/* ---- per-layer costs ---------------------------------------------------- */

int64_t pl_decode_at(const struct st_plan_request *req) {
    return req->decode_at > 0 ? ST_MIN(req->decode_at, req->context) : ST_MAX(req->context / 2, 1);
}

int64_t pl_prompt(const struct st_plan_request *req) {
    return req->prompt_tokens > 0 ? req->prompt_tokens : req->prefill_chunk;
}

/* fp32 elements of one token's activations written and read inside a block */
static double act_elems(const struct st_plan_model *m) {
    return 6.0 * m->n_embd + 3.0 * m->n_ff + 2.0 * (m->n_head + 2 * m->n_head_kv) * m->head_dim;
}

#define PL_GEMM_OUT_TILE 128.0             /* a GEMM's output tile (rows x tokens) per SM and wave */

/* One matmul of a block: rows = output features, cols = input features. */
struct pl_mat {
    double rows, cols, bytes;
    st_dtype dt;
};

/* A dtype of each class, for weights known only by their bits per weight. */
static const st_dtype class_dtype[PL_N_WC] = {ST_DTYPE_F32, ST_DTYPE_F16, ST_DTYPE_Q8_0, ST_DTYPE_Q4_K, ST_DTYPE_Q6_K,
                                              ST_DTYPE_Q4_0};

/* The matmuls of block l (q, k, v, o, gate, up, down) with their stored dtypes and bytes. A model
 * without matrix dtypes (built by hand, or read from a plan file): one matrix of the block's
 * weights in the dtype its bits per weight suggest. Returns the count. */
static int layer_mats(const struct st_plan_model *m, int64_t l, struct pl_mat *out) {
    const double elems = m->layer_flops[l] / 2.0;
    if (!m->mat_dtypes) {
        const st_dtype dt = m->matrix_dtype < ST_DTYPE_COUNT
                                ? m->matrix_dtype
                                : class_dtype[pl_wclass_of((double)m->layer_bytes[l], elems)];
        const double cols = m->n_embd > 0 ? (double)m->n_embd : 1.0;
        out[0] = (struct pl_mat){.rows = ST_MAX(elems / cols, 1.0), .cols = cols, .bytes = (double)m->layer_bytes[l],
                                 .dt = dt};
        return 1;
    }
    const double E = (double)m->n_embd, F = (double)m->n_ff, qd = (double)(m->n_head * m->head_dim),
                 kvd = (double)(m->n_head_kv * m->head_dim);
    const double shape[ST_PLAN_N_MATRICES][2] = {{qd, E}, {kvd, E}, {kvd, E}, {E, qd}, {F, E}, {F, E}, {E, F}};
    int n = 0;
    for (int k = 0; k < ST_PLAN_N_MATRICES; k++) {
        const unsigned t = m->mat_dtypes[l * ST_PLAN_N_MATRICES + k];
        if (t >= ST_DTYPE_COUNT) continue;
        const st_dtype dt = (st_dtype)t;
        out[n++] = (struct pl_mat){.rows = shape[k][0], .cols = shape[k][1], .dt = dt,
                                   .bytes = shape[k][0] * shape[k][1] * (double)st_dtype_block_bytes(dt) /
                                            (double)st_dtype_block_elems(dt)};
    }
    return n;
}

/* Bytes of block l that are not matmul weights (norms, biases): read by the small kernels. */
static double layer_rest_bytes(const struct st_plan_model *m, int64_t l, const struct pl_mat *mt, int n) {
    double w = 0;
    for (int i = 0; i < n; i++) w += mt[i].bytes;
    return ST_MAX((double)m->layer_bytes[l] - w, 0.0);
}

/* A batch-1 GEMV (a few tokens) streaming one matrix, or on the CPU a matmul's weight read. A GPU's
 * quantized GEMV is bound by its memory or by its instructions, whichever is slower: pl_gemv_ops
 * per weight (dp4a on int8 x from cc 6.1, else the fp32 Maxwell path) at the card's fp32 peak. */
static double gemv_ms(const struct pl_rates *r, const struct pl_mat *mt, bool gemv, double *mem_ms) {
    const enum pl_wclass wc = pl_wclass_dtype(mt->dt);
    const double g = r->gemv_dt[mt->dt] > 0 ? r->gemv_dt[mt->dt] : r->gemv_gbps[wc];
    const double t = mt->bytes / (gemv ? g : r->bw_gbps) * 1e-6;
    const double ops = r->dp4a ? pl_gemv_ops_dp4a[wc] : pl_gemv_ops_fp32[wc];
    if (mem_ms) *mem_ms += t;
    if (!gemv || r->cpu || ops <= 0) return t;
    return ST_MAX(t, mt->rows * mt->cols * ops / (r->fp32_peak_tflops * 1e9));
}

/* A cuBLAS GEMM of rows x T x k at precision p: its output in 128 x 128 tiles, one per SM at a
 * time, so it takes whole waves of them (a partial wave costs a full one), and it reads its
 * weights (wbytes) at least once. cuBLAS = false: the SIMT kernel, at the fp32 rate. */
static double gemm_ms(const struct pl_rates *r, st_prec p, double rows, double T, double k, double wbytes,
                      bool cublas) {
    double rate = cublas ? r->prec_tflops[p] : r->fp32_tflops;
    if (cublas && r->sm > 0) {
        const double tiles = ceil(rows / PL_GEMM_OUT_TILE) * ceil(T / PL_GEMM_OUT_TILE);
        rate *= tiles / (ceil(tiles / r->sm) * r->sm);
    }
    return ST_MAX(2.0 * rows * T * k / (rate * 1e9), wbytes / r->bw_gbps * 1e-6);
}

/* A matrix over T > 8 tokens on a GPU, as the CUDA backend runs it (kernels/cuda/gemm.cu; gate and
 * up are two such products and a SwiGLU pass: the engine groups them only for decode); *nk counts
 * its kernels.
 *   f32 weights, or f16/bf16 weights at their own precision on tensor cores: x converted to the
 *     weights' dtype (16-bit), one cuBLAS GEMM;
 *   other float weights (bf16 at f32, the Maxwell path): the SIMT kernel;
 *   quantized: the whole matrix dequantized to the compute dtype (the stage precision on tensor
 *     cores, else fp32) into the stage's scratch, which pl_workspace sizes for its largest
 *     quantized matrix: one dequantize kernel (instruction-bound: PL_DEQUANT_OPS per weight at the
 *     fp32 peak, or its write at the copy rate), x converted (16-bit), one GEMM. */
static double gpu_matmul_ms(const struct pl_rates *r, st_prec p, const struct pl_mat *mt, double T, int *nk) {
    const double rows = mt->rows;
    const double K = mt->cols;   /* (x's conversions stream activations: act_elems) */
    if (st_dtype_block_elems(mt->dt) == 1) {
        const bool f32 = mt->dt == ST_DTYPE_F32;
        const bool tc = !f32 && ((mt->dt == ST_DTYPE_BF16 && p == ST_PREC_BF16) ||
                                 (mt->dt == ST_DTYPE_F16 && p == ST_PREC_F16)) && r->tensor[p];
        const double wb = rows * K * (double)st_dtype_block_bytes(mt->dt);
        if (!f32 && !tc) {
            *nk += 1;
            return gemm_ms(r, ST_PREC_F32, rows, T, K, wb, false);
        }
        *nk += tc ? 2 : 1;
        return gemm_ms(r, tc ? p : ST_PREC_F32, rows, T, K, wb, true);
    }
    const st_prec cp = r->tensor[p] ? p : ST_PREC_F32;
    const double es = cp == ST_PREC_F32 ? 4.0 : 2.0;
    *nk += 2 + (es == 2.0);
    return gemm_ms(r, cp, rows, T, K, rows * K * es, true) +
           ST_MAX(rows * K * PL_DEQUANT_OPS / (r->fp32_peak_tflops * 1e9), rows * K * es / r->bw_gbps * 1e-6);
}

/* Kernels of one block besides the matmuls, for T tokens.
 * GPU (kernels/cuda): rmsnorm x 2, rope (q and k in one launch for one token, else two), kv store,
 * attention, the residual adds (one token: in the output projections' epilogues; else two); q/k
 * norms +2. Decode attention counts two: flash decode is the split-KV kernel and its merge; eager
 * is one kernel whose block per query head walks every key in turn, at least as long (not
 * measured: no eager decode on a card with flash attention to compare). A decode
 * step's GEMV launches and x quantization are in their gemv factor, except where dtypes differ
 * inside a group: a grouped q/k/v launch per dtype, gate and up as two GEMVs and a SwiGLU pass. A
 * prefill chunk adds the SwiGLU pass and, with q/k/v biases, three bias passes (the GEMMs' own
 * kernels: gpu_matmul_ms).
 * CPU: 12 ops (q/k/v one grouped matmul, gate/up/SwiGLU another, at every token count:
 * grouped_any_tokens), +2 q/k norms, +2 eager. */
static int block_kernels(const struct st_plan_model *m, const struct pl_rates *r, const struct pl_mat *mt, int n_mat,
                         double T, st_attn_kind a) {
    if (r->cpu) return 12 + (m->qk_norm ? 2 : 0) + (a == ST_ATTN_EAGER ? 2 : 0);
    const bool one = T <= 1.0, decode = T <= PL_GEMV_MAX_BATCH;
    int k = 2 + (one ? 1 : 2) + 1 + (decode ? 2 : 1) + (one ? 0 : 2);
    if (m->qk_norm) k += 2;
    if (n_mat == ST_PLAN_N_MATRICES && decode) {
        k += (mt[1].dt != mt[0].dt) + (mt[2].dt != mt[0].dt && mt[2].dt != mt[1].dt);
        if (mt[4].dt != mt[5].dt) k += 2;
    } else if (!decode) {
        k += 1;
        if (m->qkv_bias) k += 3;
    }
    return k;
}

/* Decode: the kernels of a step run one after another, so their times add:
 * the GEMVs stream the weights (or compute, for large batches), attention
 * streams the KV cache, the small kernels cost a fixed time each. */
double pl_layer_decode_ms(const struct st_plan_model *m, const struct st_plan_request *req,
                          const struct pl_rates *r, const struct pl_mode *md, int64_t l, const char **bound) {
    double B = (double)req->batch, n = (double)pl_decode_at(req);
    double kvb = pl_kv_value_bytes(md->kv);
    double kv_e = 2.0 * (double)m->n_head_kv * (double)m->head_dim;
    struct pl_mat mt[ST_PLAN_N_MATRICES];
    const int n_mat = layer_mats(m, l, mt);
    bool gemv = req->batch <= PL_GEMV_MAX_BATCH;
    int nk = block_kernels(m, r, mt, n_mat, B, md->attn);
    /* matmuls: weights streamed once per step; fp32 FMAs on the GEMV path; above 8 tokens the GPU's GEMMs */
    double w_ms = 0, w_mem = 0, c_ms;
    if (gemv || r->cpu) {
        for (int i = 0; i < n_mat; i++) w_ms += gemv_ms(r, &mt[i], gemv, &w_mem);
        c_ms = B * m->layer_flops[l] / ((gemv ? r->fp32_tflops : r->prec_tflops[md->prec]) * 1e9);
    } else {
        c_ms = 0;
        for (int i = 0; i < n_mat; i++) c_ms += gpu_matmul_ms(r, md->prec, &mt[i], B, &nk);
    }
    double mm_ms = ST_MAX(w_ms, c_ms);
    /* attention over n keys: the KV cache, and for eager the fp32 scores written and read back */
    double kv_ms = B * (n + 1) * kv_e * kvb / r->kv_gbps * 1e-6;
    if (md->attn == ST_ATTN_EAGER) kv_ms += 2.0 * B * (double)m->n_head * n * 4.0 / r->bw_gbps * 1e-6;
    double at_ms = ST_MAX(kv_ms, B * 4.0 * (double)m->n_head * (double)m->head_dim * n / (r->fp32_tflops * 1e9));
    double act_ms = (B * act_elems(m) * 8.0 + layer_rest_bytes(m, l, mt, n_mat)) / r->bw_gbps * 1e-6;
    double launch_ms = nk * r->launch_us * 1e-3;
    if (bound)   /* instructions: the GEMVs' dequantization (pl_gemv_ops) takes longer than their weight read */
        *bound = launch_ms > mm_ms + at_ms ? "launches" : at_ms > mm_ms ? "bandwidth" : w_ms < c_ms ? "compute"
               : w_ms > 1.1 * w_mem ? "instructions" : "bandwidth";
    return mm_ms + at_ms + act_ms + launch_ms;
}

/* Prefill of one chunk of C tokens (the prefill chunk, or the whole prompt
 * when it is shorter; attention over n = prompt / 2 keys on average). GPU:
 * the matmuls as the CUDA backend runs them (gpu_matmul_ms: cuBLAS GEMMs in
 * whole waves of tiles, quantized weights dequantized tile by tile), flash
 * attention's matmuls at its own rate (eager: fp32 scores), the activations
 * that the elementwise kernels stream, and the gap between kernels. CPU:
 * each matrix at its GEMM rate (fp32 for float weights, the integer rate for
 * quantized ones) or its weight read, eager attention, activations, a fixed
 * cost per op. */
double pl_layer_prefill_ms(const struct st_plan_model *m, const struct st_plan_request *req,
                           const struct pl_rates *r, st_prec p, const struct pl_mode *md, int64_t l) {
    double C = (double)ST_MIN(req->prefill_chunk, pl_prompt(req)), n = (double)pl_prompt(req) / 2.0;
    double kvb = pl_kv_value_bytes(md->kv);
    double kv_e = 2.0 * (double)m->n_head_kv * (double)m->head_dim;
    double w = (double)m->layer_bytes[l];
    struct pl_mat mt[ST_PLAN_N_MATRICES];
    const int n_mat = layer_mats(m, l, mt);
    int nk = block_kernels(m, r, mt, n_mat, C, md->attn);
    double mm_ms = 0;
    if (r->cpu)
        for (int i = 0; i < n_mat; i++) {
            const double rate = r->gemm_dt[mt[i].dt];
            mm_ms += ST_MAX(mt[i].bytes / r->bw_gbps * 1e-6, 2.0 * C * mt[i].rows * mt[i].cols / (rate * 1e9));
        }
    else if (C <= PL_GEMV_MAX_BATCH)
        mm_ms = ST_MAX(w / r->bw_gbps * 1e-6, C * m->layer_flops[l] / (r->prec_tflops[p] * 1e9));
    else
        for (int i = 0; i < n_mat; i++) mm_ms += gpu_matmul_ms(r, p, &mt[i], C, &nk);
    double at_flops = 4.0 * (double)m->n_head * (double)m->head_dim * C * n;
    double at_ms;
    if (md->attn == ST_ATTN_FLASH)      /* the K/V tiles each 64-row block re-reads come from L2: in the rate */
        at_ms = at_flops / (r->attn_tflops[p] * 1e9) + n * kv_e * kvb / r->bw_gbps * 1e-6;
    else                                /* fp32 scores of every head written and read back */
        at_ms = at_flops / (r->fp32_tflops * 1e9) +
                (n * kv_e * kvb + 2.0 * 2.0 * (double)m->n_head * C * n * 4.0) / r->bw_gbps * 1e-6;
    double act_ms = C * act_elems(m) * 8.0 / r->bw_gbps * 1e-6;
    return mm_ms + at_ms + act_ms + nk * r->gap_us * 1e-3;
}

uint64_t pl_layer_mem(const struct st_plan_model *m, const struct st_plan_request *req, const struct pl_mode *md,
                      int64_t l) {
    return m->layer_bytes[l] + st_plan_kv_bytes(m, md->kv, 1, req->context, req->batch);
}

/* Per stage: its fixed cost (graph launch, events); the embedding gather on
 * the first stage; final norm, lm_head GEMV and argmax on the last. */
double pl_fixed_decode_ms(const struct st_plan_model *m, const struct st_plan_request *req,
                          const struct pl_rates *r, bool first, bool last) {
    double B = (double)req->batch, t = r->stage_us * 1e-3;
    if (first) t += (B * (double)m->embd_bytes / (double)m->n_vocab) / r->bw_gbps * 1e-6 + r->launch_us * 1e-3;
    if (last) {
        const double V = (double)m->n_vocab, E = (double)m->n_embd;
        const struct pl_mat lm = {.rows = V, .cols = E, .bytes = (double)m->lm_head_bytes,
                                  .dt = m->mat_dtypes && m->lm_head_dtype < ST_DTYPE_COUNT
                                            ? m->lm_head_dtype
                                            : class_dtype[pl_wclass_of((double)m->lm_head_bytes, V * E)]};
        const bool gemv = req->batch <= PL_GEMV_MAX_BATCH;
        const double mem_ms = (gemv ? gemv_ms(r, &lm, true, NULL) : lm.bytes / r->bw_gbps * 1e-6) +
                              ((double)m->output_norm_bytes + B * V * 4.0) / r->bw_gbps * 1e-6;
        const double comp_ms = B * m->output_flops / (r->fp32_tflops * 1e9);
        /* final norm, lm_head, argmax (GPU, one token: the GEMV's launch is in its factor) */
        const int nk = r->cpu || !gemv ? 3 : 2;
        t += ST_MAX(mem_ms, comp_ms) + nk * r->launch_us * 1e-3;
    }
    return t;
}

double pl_fixed_prefill_ms(const struct st_plan_model *m, const struct st_plan_request *req,
                           const struct pl_rates *r, bool first, bool last) {
    struct st_plan_request one = *req;
    one.batch = 1;                      /* a prefill computes the logits of its last token only */
    double t = r->stage_us * 1e-3;
    if (first) t += ((double)ST_MIN(req->prefill_chunk, pl_prompt(req)) * (double)m->embd_bytes / (double)m->n_vocab) /
                        r->bw_gbps * 1e-6 + r->gap_us * 1e-3;
    if (last) t += pl_fixed_decode_ms(m, &one, r, false, true) - r->stage_us * 1e-3;
    return t;
}

uint64_t pl_fixed_weights(const struct st_plan_model *m, bool first, bool last) {
    uint64_t w = m->shared_bytes;
    if (first) w += m->embd_bytes;
    if (last) w += m->output_norm_bytes + (m->tied_embeddings && first ? 0 : m->lm_head_bytes);
    return w;
}

uint64_t pl_workspace(const struct st_plan_model *m, const struct st_plan_request *req,
                      const struct st_plan_device *d, st_prec p, const struct pl_mode *md, bool first, bool last) {
    uint64_t T = (uint64_t)ST_MAX(req->prefill_chunk, req->batch);
    uint64_t E = (uint64_t)m->n_embd;
    uint64_t per_tok = 2 * E + (uint64_t)(m->n_head + 2 * m->n_head_kv) * (uint64_t)m->head_dim +
                       (uint64_t)m->n_head * (uint64_t)m->head_dim + 2 * (uint64_t)m->n_ff;
    uint64_t ws = T * per_tok * 4;
    if (md->attn == ST_ATTN_EAGER)      /* scores of a chunk against the whole context, all heads, fp32 */
        ws += (uint64_t)m->n_head * (uint64_t)req->prefill_chunk * (uint64_t)req->context * 4;
    st_dtype compute = p == ST_PREC_F32 ? ST_DTYPE_F32 : p == ST_PREC_F16 ? ST_DTYPE_F16 : ST_DTYPE_BF16;
    if (!d->is_cpu && m->matrix_dtype != compute)   /* prefill GEMMs widen one matrix at a time */
        ws += m->max_matrix_elems * st_dtype_block_bytes(compute);
    if (d->is_cpu) {   /* the CPU backend's own: matmul_swiglu's up rows; a quantized matmul's 8-bit x (under
                        * 2 bytes a column: kernels/cpu/matmul-impl.h qx_row_bytes) */
        const uint64_t F = (uint64_t)m->n_ff, widest = ST_MAX(F, E) + 64;
        ws += T * F * 4;
        if (m->matrix_dtype >= ST_DTYPE_COUNT || st_dtype_block_elems(m->matrix_dtype) > 1) ws += T * widest * 2;
    }
    if (last) ws += (uint64_t)req->batch * (uint64_t)m->n_vocab * 4;
    if (!first) ws += T * E * 4;        /* receive buffer of the incoming hop */
    if (!last) ws += T * E * 4;         /* send buffer of the outgoing hop */
    return ws;
}

/* ---- links -------------------------------------------------------------- */

const char *pl_link_name(st_link_kind k) {
    switch ((int)k) {
    case ST_LINK_NONE: return "none";
    case ST_LINK_PCIE: return "pcie";
    case ST_LINK_NVLINK: return "nvlink";
    case ST_LINK_SAME: return "same";
    case ST_LINK_NETWORK: return "network";
    default: return "unknown";
    }
}

static double pcie_gbps(int gen, int width) {
    /* effective host<->device copy rates for x16: gen3 ~12, gen4 ~24, gen5 ~48 GB/s */
    double x16 = gen >= 5 ? 48.0 : gen == 4 ? 24.0 : gen == 3 ? 12.0 : gen == 2 ? 6.0 : 12.0;
    if (width > 0 && width < 16) x16 *= width / 16.0;
    return x16;
}

struct st_plan_link st_plan_link_default(const struct st_plan_device *a, const struct st_plan_device *b,
                                         const struct st_p2p *p2p) {
    struct st_plan_link l = {0};
    if (a == b) {
        l.kind = ST_LINK_SAME;
        l.latency_us = 1.0;
        l.bandwidth_gbps = 1000.0;
        return l;
    }
    int ga = a->info.pcie_gen, gb = b->info.pcie_gen;
    int wa = a->info.pcie_width, wb = b->info.pcie_width;
    double bw_a = a->is_cpu ? 1e9 : pcie_gbps(ga, wa), bw_b = b->is_cpu ? 1e9 : pcie_gbps(gb, wb);
    double bw = ST_MIN(bw_a, bw_b);
    if (a->is_cpu && b->is_cpu) bw = ST_MIN(a->info.perf.mem_bw_gbps, b->info.perf.mem_bw_gbps);
    l.kind = ST_LINK_PCIE;
    if (a->is_cpu || b->is_cpu) {
        l.via_host = true;
        l.latency_us = 15.0;
        l.bandwidth_gbps = bw;
    } else if (p2p && p2p->link == ST_LINK_NVLINK) {
        l.kind = ST_LINK_NVLINK;
        l.latency_us = 8.0;
        l.bandwidth_gbps = 150.0;
    } else if (p2p && !p2p->access) {
        l.via_host = true;              /* two copies through pinned host memory */
        l.latency_us = 25.0;
        l.bandwidth_gbps = bw / 2.0;
    } else {
        l.latency_us = 10.0;
        l.bandwidth_gbps = bw;
    }
    return l;
}

void st_plan_links_default(const struct st_plan_device *devs, int n, struct st_plan_link *out) {
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) out[a * n + b] = st_plan_link_default(&devs[a], &devs[b], NULL);
}

/* Effective figures: TCP carries about 94% of the Ethernet line rate, RDMA
 * about 96% of InfiniBand's data rate; latencies are typical one-way
 * small-message times (kernel TCP stack; verbs for InfiniBand). */
static const struct st_plan_network_preset networks[] = {
    {"1gbe", "1 Gbit/s Ethernet (TCP)", 0.1175, 60.0},
    {"10gbe", "10 Gbit/s Ethernet (TCP)", 1.175, 30.0},
    {"25gbe", "25 Gbit/s Ethernet (TCP)", 2.94, 20.0},
    {"40gbe", "40 Gbit/s Ethernet (TCP)", 4.7, 15.0},
    {"100gbe", "100 Gbit/s Ethernet (TCP)", 11.75, 10.0},
    {"ib-edr", "100 Gbit/s InfiniBand EDR (RDMA)", 12.0, 2.0},
    {"ib-hdr", "200 Gbit/s InfiniBand HDR (RDMA)", 24.0, 2.0},
    {"ib-ndr", "400 Gbit/s InfiniBand NDR (RDMA)", 48.0, 2.0},
};

int st_plan_network_count(void) { return (int)ST_ARRAY_LEN(networks); }

const struct st_plan_network_preset *st_plan_network_at(int i) {
    return i >= 0 && i < (int)ST_ARRAY_LEN(networks) ? &networks[i] : NULL;
}

const struct st_plan_network_preset *st_plan_network_find(const char *name) {
    for (size_t i = 0; name && i < ST_ARRAY_LEN(networks); i++)
        if (!strcasecmp(name, networks[i].name)) return &networks[i];
    return NULL;
}

struct st_plan_link st_plan_link_network(const struct st_plan_device *a, const struct st_plan_device *b,
                                         double bandwidth_gbps, double latency_us) {
    struct st_plan_link l = {.kind = ST_LINK_NETWORK, .latency_us = latency_us, .bandwidth_gbps = bandwidth_gbps};
    const struct st_plan_device *ends[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        if (ends[i]->is_cpu) continue;
        l.via_host = true;      /* a GPU end copies through host memory (NCCL over sockets stages too) */
        l.latency_us += 15.0;
        l.bandwidth_gbps = ST_MIN(l.bandwidth_gbps, pcie_gbps(ends[i]->info.pcie_gen, ends[i]->info.pcie_width));
    }
    return l;
}

double pl_hop_ms(const struct st_plan_model *m, const struct st_plan_request *req, const struct st_plan_link *l,
                 bool prefill) {
    double bytes = (double)(prefill ? req->prefill_chunk : req->batch) * (double)m->n_embd * 4.0;
    return l->latency_us * 1e-3 + bytes / (l->bandwidth_gbps * 1e6);
}

double st_plan_hop_decode_ms(const struct st_plan_model *m, const struct st_plan_request *req,
                             const struct st_plan_link *l) {
    return pl_hop_ms(m, req, l, false);
}

/* ---- one stage ---------------------------------------------------------- */

void st_plan_request_defaults(struct st_plan_request *r) {
    memset(r, 0, sizeof *r);
    r->context = 4096;
    r->batch = 1;
    r->prefill_chunk = 512;
    r->objective = ST_PLAN_LATENCY;
    r->force_prec = -1;
    r->force_attn = -1;
    r->force_kv = -1;
}

const char *st_plan_objective_name(st_plan_objective o) {
    return o == ST_PLAN_THROUGHPUT ? "throughput" : "latency";
}

/* Preference among equally fast precisions: f16 (safe layers, more mantissa
 * than bf16), then bf16 (fp32 range), then f32. */
static const st_prec pref_order[PL_N_PREC] = {ST_PREC_F16, ST_PREC_BF16, ST_PREC_F32};

bool st_plan_stage_eval(const struct st_plan_model *m, const struct st_plan_device *dev,
                        const struct st_plan_request *req, int64_t first, int64_t last,
                        struct st_plan_stage *out, char *why, size_t why_len) {
    bool has_first = first == 0, has_last = last == m->n_layer - 1;
    if (!pl_stage_runs(m, dev, first, last, why, why_len)) return false;   /* a weight type it cannot run */
    struct pl_rates r;
    pl_rates_of(dev, m, &r);
    uint64_t usable = st_plan_device_usable(dev);
    bool found = false;
    struct st_plan_stage best = {0};
    char why_buf[320] = "", caps_buf[320] = "";
    /* each precision with its float cache; with q8_0 only where that does not fit (kv_q8_fallback),
     * and a q8_0 candidate wins only when no float one fits at all */
    bool found_q8 = false;
    struct st_plan_stage best_q8 = {0};
    for (int k2 = 0; k2 < 2 * PL_N_PREC; k2++) {
        const int k = k2 / 2;
        st_prec p = pref_order[k];
        struct pl_mode md;
        pl_mode_of(dev, req, p, &md);
        const bool q8 = k2 % 2 == 1;
        if (q8) {
            if (!md.allowed || !req->kv_q8_fallback || !md.kv_auto || !st_plan_kv_q8_ok(m)) continue;
            md.kv = ST_DTYPE_Q8_0;
        }
        if (!md.allowed && !q8) {
            size_t n = strlen(caps_buf);
            snprintf(caps_buf + n, sizeof caps_buf - n, "%s%s: %s", n ? "; " : "", st_prec_name(p), md.why_not);
            continue;
        }
        if (md.need_safe) {
            bool safe = true;
            for (int64_t l = first; l <= last; l++) safe &= req->fp16_safe[l];
            if (!safe) {
                if (q8) continue;
                size_t n = strlen(caps_buf);
                snprintf(caps_buf + n, sizeof caps_buf - n, "%sf16: layers not all fp16-safe", n ? "; " : "");
                continue;
            }
        }
        struct st_plan_stage s = {0};
        s.first = first;
        s.last = last;
        s.has_embedding = has_first;
        s.has_output = has_last;
        s.prec = p;
        s.attn = md.attn;
        s.kv_dtype = md.kv;
        s.mem.weights = pl_fixed_weights(m, has_first, has_last);
        double t = pl_fixed_decode_ms(m, req, &r, has_first, has_last);
        double tp = pl_fixed_prefill_ms(m, req, &r, has_first, has_last);
        double worst = -1;
        for (int64_t l = first; l <= last; l++) {
            const char *b = NULL;
            double tl = pl_layer_decode_ms(m, req, &r, &md, l, &b);
            if (tl > worst) { worst = tl; snprintf(s.bound, sizeof s.bound, "%s", b); }
            t += tl;
            tp += pl_layer_prefill_ms(m, req, &r, p, &md, l);
            s.mem.weights += m->layer_bytes[l];
        }
        s.mem.kv = st_plan_kv_bytes(m, md.kv, last - first + 1, req->context, req->batch);
        s.mem.workspace = pl_workspace(m, req, dev, p, &md, has_first, has_last);
        s.mem.total = s.mem.weights + s.mem.kv + s.mem.workspace;
        s.mem.usable = usable;
        s.mem.overhead = dev->overhead_bytes;
        s.mem.reserve = dev->reserve_bytes;
        s.decode_ms = t;
        s.prefill_ms = tp;
        if (s.mem.total > usable) {
            char a[24], b[24];
            if (!why_buf[0])
                snprintf(why_buf, sizeof why_buf, "needs %s in %s (KV %s), usable %s",
                         st_format_bytes(s.mem.total, a, sizeof a), st_prec_name(p), st_dtype_name(md.kv),
                         st_format_bytes(usable, b, sizeof b));
            continue;
        }
        if (!q8 && md.kv_auto) k2++;    /* its float cache fits: never q8_0 for this precision */
        /* fastest decode; on a tie faster prefill, then less memory, then the preference order */
        bool better = !found;
        if (found) {
            double eps = 1e-9 * ST_MAX(best.decode_ms, 1e-9);
            if (s.decode_ms < best.decode_ms - eps) better = true;
            else if (s.decode_ms <= best.decode_ms + eps) {
                double epp = 1e-9 * ST_MAX(best.prefill_ms, 1e-9);
                if (s.prefill_ms < best.prefill_ms - epp) better = true;
                else if (s.prefill_ms <= best.prefill_ms + epp && s.mem.total < best.mem.total) better = true;
            }
        }
        if (q8) {
            if (!found_q8 || s.decode_ms < best_q8.decode_ms) { best_q8 = s; found_q8 = true; }
            continue;
        }
        if (better) { best = s; found = true; }
    }
    if (!found && found_q8) { best = best_q8; found = true; }
    if (!found) {
        if (why && why_len) snprintf(why, why_len, "%s", why_buf[0] ? why_buf : caps_buf);
        return false;
    }
    if (out) *out = best;
    return true;
}
