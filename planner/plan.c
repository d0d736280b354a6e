/* st_plan_make: validate the request, partition (or check a manual placement),
 * fill the stages, links, predictions and the reasons; when nothing fits, say
 * by how much and which change would fit, each found by planning again. */
#include "planner/planner-impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void pl_reason(st_plan *p, const char *fmt, ...) {
    char buf[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **r = realloc(p->reasons, (size_t)(p->n_reasons + 1) * sizeof *r);
    if (!r) return;
    p->reasons = r;
    size_t n = strlen(buf) + 1;
    char *s = malloc(n);
    if (!s) return;
    memcpy(s, buf, n);
    p->reasons[p->n_reasons++] = s;
}

void st_plan_free(st_plan *p) {
    if (!p) return;
    st_plan_model_free(&p->model);
    free(p->devices);
    free(p->links);
    free(p->stages);
    free(p->hops);
    for (int i = 0; i < p->n_reasons; i++) free(p->reasons[i]);
    free(p->reasons);
    free(p);
}

static const char *fmtb(uint64_t b, char *buf) { return st_format_bytes(b, buf, 24); }

static st_status check_request(const struct st_plan_model *m, int n_dev, const struct st_plan_request *r) {
    if (m->n_layer <= 0 || !m->layer_bytes)
        return st_error_set(ST_ERR_INTERNAL, "planner: model '%s' has no layers", m->name);
    if (n_dev <= 0) {
        st_error_set(ST_ERR_CONFIG, "plan: no devices to place '%s' on", m->name);
        return st_error_hint("list at least one device under devices: (cpu, cuda:0 or {catalog: NAME})");
    }
    if (n_dev > 64) {
        st_error_set(ST_ERR_CONFIG, "plan: %d devices; the planner takes at most 64", n_dev);
        return st_error_hint("plan one host or one group of cards at a time");
    }
    if (r->context < 1 || r->batch < 1 || r->prefill_chunk < 1) {
        st_error_set(ST_ERR_CONFIG, "plan: context (%lld), batch (%lld) and prefill chunk (%lld) must be >= 1",
                     (long long)r->context, (long long)r->batch, (long long)r->prefill_chunk);
        return st_error_hint("set context: 4096, batch: 1, prefill_chunk: 512 or similar");
    }
    if (r->force_prec > ST_PREC_BF16 || r->force_attn > ST_ATTN_FLASH)
        return st_error_set(ST_ERR_INTERNAL, "planner: forced precision/attention out of range");
    return ST_OK;
}

static bool kv_type_ok(int t) {
    return t < 0 || t == ST_DTYPE_F32 || t == ST_DTYPE_F16 || t == ST_DTYPE_BF16 || t == ST_DTYPE_Q8_0;
}

/* A forced KV type the runtime has, and a q8_0 cache only where the rows are whole blocks. */
static st_status check_kv(const struct st_plan_model *m, const struct st_plan_device *devs, int n_dev,
                          const struct st_plan_request *r) {
    for (int i = -1; i < n_dev; i++) {
        int fk = i < 0 ? r->force_kv : devs[i].force_kv >= 0 ? devs[i].force_kv : r->force_kv;
        if (!kv_type_ok(fk))
            return st_error_set(ST_ERR_INTERNAL, "planner: forced KV cache dtype %d out of range", fk);
        if (fk == ST_DTYPE_Q8_0 && !st_plan_kv_q8_ok(m)) {
            st_error_set(ST_ERR_CONFIG, "plan: kv_dtype q8_0%s%s: %s has KV rows of %lld values (%lld kv heads x "
                         "head_dim %lld), not whole 32-value q8_0 blocks", i < 0 ? "" : " on ",
                         i < 0 ? "" : devs[i].label, m->name, (long long)(m->n_head_kv * m->head_dim),
                         (long long)m->n_head_kv, (long long)m->head_dim);
            return st_error_hint("use kv_dtype: f16 (or auto) for this model");
        }
    }
    return ST_OK;
}

/* The dtypes some device of devs runs. */
static uint32_t dtypes_run(const struct st_plan_device *devs, int n_dev) {
    uint32_t can = 0;
    for (int i = 0; i < n_dev; i++) can |= pl_dev_dtypes(&devs[i]);
    return can;
}

/* Stored formats (st_plan_quants) whose every tensor some device runs, for "a Q8_0 or F16 file of
 * the model": the most compact quantized one first, then a float one. "" when none. */
static void runnable_files(const struct st_plan_model *m, uint32_t can, char *buf, size_t cap) {
    static const char *const quants[] = {"q4_k_m", "q4_0", "q5_k_m", "q6_k", "q8_0"};
    static const char *const floats[] = {"f16", "bf16", "f32"};
    const char *pick[2] = {NULL, NULL};
    for (int g = 0; g < 2; g++) {
        const char *const *list = g ? floats : quants;
        size_t n = g ? ST_ARRAY_LEN(floats) : ST_ARRAY_LEN(quants);
        for (size_t i = 0; i < n && !pick[g]; i++) {
            struct st_plan_model q;
            if (st_plan_model_requant(m, list[i], &q) != ST_OK) { st_error_clear(); continue; }
            if (!(st_plan_model_dtypes(&q) & ~can)) pick[g] = list[i];
            st_plan_model_free(&q);
        }
    }
    buf[0] = 0;
    for (int g = 0; g < 2; g++) {
        if (!pick[g]) continue;
        size_t n = strlen(buf);
        snprintf(buf + n, cap - n, "%s", n ? " or " : "");
        for (const char *c = pick[g]; *c && strlen(buf) + 1 < cap; c++) {   /* Q4_K_M, as llama.cpp names files */
            n = strlen(buf);
            buf[n] = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
            buf[n + 1] = 0;
        }
    }
}

/* Every tensor must have a device whose backend runs its dtype; otherwise no plan can exist, and
 * the error names the first such tensor, its dtype, the devices and what each runs, and a file
 * type that would run. Which device may hold what is the partitioner's business after that. */
static st_status check_dtypes(const struct st_plan_model *m, const struct st_plan_device *devs, int n_dev) {
    const uint32_t can = dtypes_run(devs, n_dev), missing = st_plan_model_dtypes(m) & ~can;
    if (!missing) return ST_OK;
    char name[128], others[160] = "", devices[512] = "", files[64], miss[96];
    st_dtype t = ST_DTYPE_COUNT;
    int n = pl_tensors_of(m, missing, 0, m->n_layer - 1, true, true, name, sizeof name, &t);
    st_dtype_mask_text(missing, ", ", miss, sizeof miss);
    if (n > 1) snprintf(others, sizeof others, " (and %d more tensor%s of %s)", n - 1, n == 2 ? "" : "s", miss);
    for (int i = 0; i < n_dev; i++) {
        char runs[160];
        size_t k = strlen(devices);
        snprintf(devices + k, sizeof devices - k, "%s%s runs %s", i ? "; " : "", devs[i].label,
                 st_dtype_mask_text(pl_dev_dtypes(&devs[i]), " ", runs, sizeof runs));
    }
    st_error_set(ST_ERR_CONFIG, "plan: no device can run %s, stored as %s%s; devices considered: %s", name,
                 st_dtype_name(t), others, devices);
    runnable_files(m, can, files, sizeof files);
    if (files[0])
        return st_error_hint("use %s %s file of the model (weight types these devices run), or add a device whose "
                             "backend runs %s", files[0] == 'F' ? "an" : "a", files, miss);
    return st_error_hint("add a device whose backend runs %s, or convert the model to weight types these devices "
                         "run", miss);
}

/* Predictions, hops and the bottleneck from the stages. */
static void finish_totals(st_plan *p) {
    const struct st_plan_model *m = &p->model;
    struct st_plan_request rq;
    st_plan_request_defaults(&rq);
    rq.context = p->context; rq.batch = p->batch; rq.prefill_chunk = p->prefill_chunk;
    rq.prompt_tokens = p->prompt_tokens; rq.decode_at = p->decode_at;
    double dec = 0, worst = 0, pre_sum = 0, pre_max = 0;
    int worst_at = 0;
    bool worst_is_hop = false;
    for (int s = 0; s < p->n_stages; s++) {
        const struct st_plan_stage *st = &p->stages[s];
        dec += st->decode_ms;
        pre_sum += st->prefill_ms;
        pre_max = ST_MAX(pre_max, st->prefill_ms);
        if (st->decode_ms > worst) { worst = st->decode_ms; worst_at = s; worst_is_hop = false; }
        if (s + 1 < p->n_stages) {
            struct st_plan_hop *h = &p->hops[s];
            const struct st_plan_link *l = &p->links[st->device * p->n_devices + p->stages[s + 1].device];
            struct st_plan_link same;
            if (st->device == p->stages[s + 1].device) {
                same = st_plan_link_default(&p->devices[st->device], &p->devices[st->device], NULL);
                l = &same;
            }
            h->link = *l;
            h->decode_bytes = (uint64_t)p->batch * (uint64_t)m->n_embd * 4;
            h->prefill_bytes = (uint64_t)p->prefill_chunk * (uint64_t)m->n_embd * 4;
            h->decode_ms = pl_hop_ms(m, &rq, l, false);
            h->prefill_ms = pl_hop_ms(m, &rq, l, true);
            dec += h->decode_ms;
            pre_sum += h->prefill_ms;
            pre_max = ST_MAX(pre_max, h->prefill_ms);
            if (h->decode_ms > worst) { worst = h->decode_ms; worst_at = s; worst_is_hop = true; }
        }
    }
    p->n_hops = p->n_stages > 0 ? p->n_stages - 1 : 0;
    p->decode_ms = dec;
    p->bottleneck_ms = worst;
    p->decode_tok_s = p->objective == ST_PLAN_THROUGHPUT ? (double)p->batch * 1e3 / worst
                                                          : (double)p->batch * 1e3 / dec;
    int64_t prompt = p->prompt_tokens > 0 ? p->prompt_tokens : p->prefill_chunk;
    double chunks = ceil((double)prompt / (double)p->prefill_chunk);
    double pre_ms = pre_sum + (chunks - 1) * pre_max;
    p->prefill_tok_s = (double)prompt * 1e3 / pre_ms;
    if (worst_is_hop) {
        const struct st_plan_hop *h = &p->hops[worst_at];
        snprintf(p->bottleneck, sizeof p->bottleneck, "hop %d->%d (%s%s): %.3f ms per step", worst_at, worst_at + 1,
                 pl_link_name(h->link.kind), h->link.via_host ? " via host" : "", h->decode_ms);
    } else {
        const struct st_plan_stage *st = &p->stages[worst_at];
        snprintf(p->bottleneck, sizeof p->bottleneck, "stage %d (%s, layers %lld-%lld): %.2f ms per step, %s-bound",
                 worst_at, p->devices[st->device].label, (long long)st->first, (long long)st->last, st->decode_ms,
                 st->bound);
    }
}

static void perf_reasons(st_plan *p, const struct st_plan_request *req) {
    for (int d = 0; d < p->n_devices; d++) {
        const struct st_plan_device *dv = &p->devices[d];
        struct pl_rates r;
        pl_rates_of(dv, &p->model, &r);
        const struct st_caps *c = &dv->info.caps;
        const struct st_perf *pf = &dv->info.perf;
        char u[24];
        if (dv->is_cpu) {
            pl_reason(p, "device %s (%s): CPU, fp32 math and eager attention; %s %.0f GB/s and %.2f TFLOPS fp32 "
                      "-> %.1f GB/s, %.2f TFLOPS effective; usable %s", dv->label, dv->info.name,
                      pf->measured ? "probed" : "unprobed defaults", pf->mem_bw_gbps, pf->fp32_tflops, r.bw_gbps,
                      r.fp32_tflops, fmtb(st_plan_device_usable(dv), u));
            continue;
        }
        pl_reason(p, "device %s (%s): cc %d.%d -> fp16 arithmetic %s, bf16 %s, tensor cores %s, flash attention %s; "
                  "%s %.0f GB/s, %.2f TFLOPS fp32 -> %.0f GB/s, %.2f TFLOPS fp32, %.1f TFLOPS %s effective; usable %s",
                  dv->label, dv->info.name, c->cc_major, c->cc_minor, c->fp16_arith ? "yes" : "no",
                  c->bf16 ? "yes" : "no", c->tensor_cores ? "yes" : "no", c->flash_attn ? "yes" : "no",
                  pf->measured ? "probed" : "catalog peak", pf->mem_bw_gbps, pf->fp32_tflops, r.bw_gbps, r.fp32_tflops,
                  c->bf16 ? r.prec_tflops[ST_PREC_BF16] : r.prec_tflops[ST_PREC_F16],
                  c->bf16 ? "bf16" : c->tensor_cores ? "f16" : "f32 (no tensor cores)",
                  fmtb(st_plan_device_usable(dv), u));
    }
    if (req->objective == ST_PLAN_LATENCY)
        pl_reason(p, "objective latency: minimise one decode step = sum of stage times + hops (batch %lld, KV at "
                  "%lld tokens); a device is worth adding only when its layers run faster than the hop costs",
                  (long long)p->batch, (long long)p->decode_at);
    else
        pl_reason(p, "objective throughput: minimise the slowest stage or hop with the pipeline kept full "
                  "(>= %d batches of %lld in flight); among equally slow plans the lowest latency wins",
                  p->n_stages, (long long)p->batch);
}

static bool replan(st_plan *owner, const struct st_plan_model *m, const struct st_plan_device *devs, int n,
                   const struct st_plan_link *links, const struct st_plan_request *req, double *tok_s, uint64_t *missing);

/* "0-3, 5, 9-27": the layers holding a dtype of `dtypes`, as ranges; returns how many layers. */
static int64_t layer_ranges(const struct st_plan_model *m, uint32_t dtypes, char *buf, size_t cap) {
    int64_t n = 0;
    buf[0] = 0;
    for (int64_t l = 0; l < m->n_layer; l++) {
        if (!(st_plan_model_layer_dtypes(m, l) & dtypes)) continue;
        int64_t e = l;
        while (e + 1 < m->n_layer && (st_plan_model_layer_dtypes(m, e + 1) & dtypes)) e++;
        size_t k = strlen(buf);
        if (e > l) snprintf(buf + k, cap - k, "%s%lld-%lld", k ? ", " : "", (long long)l, (long long)e);
        else snprintf(buf + k, cap - k, "%s%lld", k ? ", " : "", (long long)l);
        n += e - l + 1;
        l = e;
    }
    return n;
}

/* Devices whose backend cannot run some of the model's weight types: which tensors stay off them. */
static void dtype_reasons(st_plan *p) {
    const struct st_plan_model *m = &p->model;
    const uint32_t need = st_plan_model_dtypes(m);
    for (int d = 0; d < p->n_devices; d++) {
        const struct st_plan_device *dv = &p->devices[d];
        const uint32_t lacks = need & ~pl_dev_dtypes(dv);
        if (!lacks) continue;
        char runs[160], miss[96], ranges[200], eg[128], held[320] = "";
        int64_t nl = layer_ranges(m, lacks, ranges, sizeof ranges);
        pl_tensors_of(m, lacks, 0, m->n_layer - 1, true, true, eg, sizeof eg, NULL);
        const bool embd = m->embd_dtype < ST_DTYPE_COUNT && (lacks & ST_DTYPE_BIT(m->embd_dtype));
        const bool out = m->lm_head_dtype < ST_DTYPE_COUNT && (lacks & ST_DTYPE_BIT(m->lm_head_dtype));
        if (nl == m->n_layer) snprintf(held, sizeof held, "every layer");
        else if (nl) snprintf(held, sizeof held, "%lld of %lld layers (%s)", (long long)nl, (long long)m->n_layer, ranges);
        if (embd || out) {
            size_t k = strlen(held);
            snprintf(held + k, sizeof held - k, "%s%s", k ? " and " : "",
                     embd && out ? "the embedding and the output head" : embd ? "the embedding" : "the output head");
        }
        pl_reason(p, "device %s (%s) runs weight types %s, not %s: no stage there holds %s (e.g. %s)", dv->label,
                  dv->info.name, st_dtype_mask_text(pl_dev_dtypes(dv), " ", runs, sizeof runs),
                  st_dtype_mask_text(lacks, " ", miss, sizeof miss), held, eg);
    }
}

/* A layer the device runs (weight types) to time it by: prefer if it does, else the first middle layer
 * that does, else any; -1 when none. */
static int64_t runnable_layer(const struct st_plan_model *m, const struct st_plan_device *dv, int64_t prefer) {
    if (pl_stage_runs(m, dv, prefer, prefer, NULL, 0)) return prefer;
    for (int64_t l = 1; l + 1 < m->n_layer; l++)
        if (pl_stage_runs(m, dv, l, l, NULL, 0)) return l;
    for (int64_t l = 0; l < m->n_layer; l++)
        if (pl_stage_runs(m, dv, l, l, NULL, 0)) return l;
    return -1;
}

static void stage_reasons(st_plan *p, const struct st_plan_request *req) {
    const struct st_plan_model *m = &p->model;
    for (int s = 0; s < p->n_stages; s++) {
        const struct st_plan_stage *st = &p->stages[s];
        const struct st_plan_device *dv = &p->devices[st->device];
        char a[24], b[24];
        /* precision */
        char alts[320] = "";
        for (int q = ST_PREC_BF16; q >= ST_PREC_F32; q--) {
            if (q == (int)st->prec) continue;
            struct pl_mode md;
            pl_mode_of(dv, req, (st_prec)q, &md);
            size_t n = strlen(alts);
            if (!md.allowed)
                snprintf(alts + n, sizeof alts - n, "%s%s not used: %s", n ? "; " : "", st_prec_name((st_prec)q),
                         md.why_not);
            else if (q == ST_PREC_F16 && md.need_safe)
                snprintf(alts + n, sizeof alts - n, "%sf16 not used: the numerics profile marks not all of "
                         "layers %lld-%lld fp16-safe", n ? "; " : "", (long long)st->first, (long long)st->last);
            else
                snprintf(alts + n, sizeof alts - n, "%s%s allowed but not faster", n ? "; " : "",
                         st_prec_name((st_prec)q));
        }
        const char *wname = m->matrix_dtype < ST_DTYPE_COUNT ? st_dtype_name(m->matrix_dtype) : m->weights;
        if (st->prec == ST_PREC_F32)
            pl_reason(p, "stage %d (%s) precision f32: matmuls in fp32 over the stored %s weights (widened in "
                      "registers), fp32 accumulation, KV cache %s; %s", s, dv->label, wname, st_dtype_name(st->kv_dtype), alts);
        else if (st->prec == ST_PREC_BF16)
            pl_reason(p, "stage %d (%s) precision bf16: prefill GEMM inputs bf16 on tensor cores (fp32 range), fp32 "
                      "accumulation, decode GEMVs fp32 over the stored %s weights, KV cache %s; %s", s, dv->label,
                      wname, st_dtype_name(st->kv_dtype), alts);
        else
            pl_reason(p, "stage %d (%s) precision f16: %s, fp32 accumulation, KV cache %s; %s", s, dv->label,
                      (dv->force_prec == ST_PREC_F16 || req->force_prec == ST_PREC_F16)
                          ? "forced by the deployment"
                          : "every layer of the stage is marked fp16-safe by the numerics profile",
                      st_dtype_name(st->kv_dtype), alts);
        /* KV cache type */
        {
            struct pl_mode md;
            pl_mode_of(dv, req, st->prec, &md);
            if (!md.kv_auto)
                pl_reason(p, "stage %d (%s) KV cache %s: set by kv_dtype (%s)", s, dv->label, st_dtype_name(st->kv_dtype),
                          dv->force_kv >= 0 ? "on the device" : "for every stage");
            else if (st->kv_dtype == ST_DTYPE_Q8_0) {
                uint64_t fkv = st_plan_kv_bytes(m, md.kv, st->last - st->first + 1, p->context, p->batch);
                pl_reason(p, "stage %d (%s) KV cache q8_0 (kv_dtype: auto): the %s cache of %s would need %s in all, "
                          "%s usable; q8_0 (34 bytes per 32 values) holds it in %s. K and V are rounded to 8 bits "
                          "per value with a scale per 32 (docs/numerics.md)", s, dv->label, st_dtype_name(md.kv),
                          fmtb(fkv, a), fmtb(st->mem.total - st->mem.kv + fkv, b), fmtb(st->mem.usable, (char[24]){0}),
                          fmtb(st->mem.kv, (char[24]){0}));
            }
        }
        /* attention */
        if (st->attn == ST_ATTN_FLASH)
            pl_reason(p, "stage %d (%s) attention flash: tensor-core kernel (cc >= 8.0), online softmax, no score "
                      "matrix", s, dv->label);
        else {
            const char *why = dv->is_cpu ? "the CPU backend's kernel"
                            : (dv->force_attn == ST_ATTN_EAGER || req->force_attn == ST_ATTN_EAGER) ? "forced"
                            : !dv->info.caps.flash_attn ? "the flash kernel needs tensor cores of cc >= 8.0"
                                                        : "the stage runs f32";
            uint64_t sc = (uint64_t)m->n_head * (uint64_t)p->prefill_chunk * (uint64_t)p->context * 4;
            pl_reason(p, "stage %d (%s) attention eager: %s; scores in fp32 (%s of workspace for a %lld-token chunk)",
                      s, dv->label, why, fmtb(sc, a), (long long)p->prefill_chunk);
        }
        /* layers */
        int64_t nl = st->last - st->first + 1;
        char more[400] = "";
        if (!p->manual) {
            struct st_plan_stage probe;
            char why[320];
            if (st->last + 1 < m->n_layer &&
                !st_plan_stage_eval(m, dv, req, st->first, st->last + 1, &probe, why, sizeof why))
                snprintf(more, sizeof more, "; one more layer does not fit (%s)", why);
            else if (st->last + 1 < m->n_layer)
                snprintf(more, sizeof more, "; it could hold more, the cost model places them elsewhere");
        }
        pl_reason(p, "stage %d (%s) layers %lld-%lld (%lld)%s%s: weights %s + KV %s + workspace %s = %s of %s usable%s",
                  s, dv->label, (long long)st->first, (long long)st->last, (long long)nl,
                  st->has_embedding ? " + embedding" : "", st->has_output ? " + output head" : "",
                  fmtb(st->mem.weights, a), fmtb(st->mem.kv, b), fmtb(st->mem.workspace, (char[24]){0}),
                  fmtb(st->mem.total, (char[24]){0}), fmtb(st->mem.usable, (char[24]){0}), more);
    }
    /* per-layer decode time on each device, best precision, to show who is faster */
    char line[600] = "";
    for (int d = 0; d < p->n_devices; d++) {
        struct st_plan_stage one;
        int64_t mid = m->n_layer > 2 ? m->n_layer / 2 : 0;
        if (!st_plan_stage_eval(m, &p->devices[d], req, mid, mid, &one, NULL, 0)) continue;
        size_t n = strlen(line);
        snprintf(line + n, sizeof line - n, "%s%s %.3f ms (%s)", n ? ", " : "", p->devices[d].label, one.decode_ms,
                 one.bound);
    }
    if (line[0]) pl_reason(p, "decode time of one layer: %s", line);
    /* the fastest layer among the devices that hold stages, to say why another stays idle */
    int64_t mid = m->n_layer > 2 ? m->n_layer / 2 : 0;
    double used_ms = 0;
    int used_dev = -1;
    for (int s = 0; s < p->n_stages; s++) {
        struct st_plan_stage one;
        int d = p->stages[s].device;
        if (st_plan_stage_eval(m, &p->devices[d], req, mid, mid, &one, NULL, 0) &&
            (used_dev < 0 || one.decode_ms < used_ms)) {
            used_ms = one.decode_ms;
            used_dev = d;
        }
    }
    for (int d = 0; d < p->n_devices; d++) {
        bool used = false;
        for (int s = 0; s < p->n_stages; s++) used |= p->stages[s].device == d;
        if (used) continue;
        struct st_plan_stage one;
        char why[320];
        const int64_t at = runnable_layer(m, &p->devices[d], mid);
        if (at < 0) {
            pl_stage_runs(m, &p->devices[d], mid, mid, why, sizeof why);
            pl_reason(p, "device %s unused: every layer holds a weight type it cannot run (%s)", p->devices[d].label,
                      why);
        } else if (!st_plan_stage_eval(m, &p->devices[d], req, at, at, &one, why, sizeof why))
            pl_reason(p, "device %s unused: it cannot hold a single layer (%s)", p->devices[d].label, why);
        else if (p->manual)
            pl_reason(p, "device %s unused: the manual placement does not name it", p->devices[d].label);
        else if (used_dev >= 0 && one.decode_ms >= used_ms && p->objective == ST_PLAN_LATENCY)
            pl_reason(p, "device %s unused: a layer takes %.3f ms there and %.3f ms on %s, so every layer moved there "
                      "would make each decode step slower, and the hop between them adds latency too; for one stream "
                      "(objective latency) leaving %s idle is the fastest plan. With objective: throughput the cards "
                      "work on different batches at once and both may carry layers", p->devices[d].label,
                      one.decode_ms, used_ms, p->devices[used_dev].label, p->devices[d].label);
        else if (used_dev >= 0 && one.decode_ms >= used_ms)
            pl_reason(p, "device %s unused: a layer takes %.3f ms there and %.3f ms on %s; a stage there would be the "
                      "slowest of the pipeline", p->devices[d].label, one.decode_ms, used_ms,
                      p->devices[used_dev].label);
        else
            pl_reason(p, "device %s unused: its layers are faster (%.3f ms each) but every plan that includes it is "
                      "slower under the %s objective: the hops, the embedding or the output head cost more than its "
                      "layers save", p->devices[d].label, one.decode_ms, st_plan_objective_name(p->objective));
    }
    /* a pipeline against the best single device: why spreading over several pays */
    if (p->objective == ST_PLAN_THROUGHPUT && p->n_stages > 1 && !p->manual) {
        double best = 0;
        int best_dev = -1;
        for (int d = 0; d < p->n_devices; d++) {
            struct st_plan_link self = st_plan_link_default(&p->devices[d], &p->devices[d], NULL);
            double t;
            if (replan(p, m, &p->devices[d], 1, &self, req, &t, NULL) && t > best) { best = t; best_dev = d; }
        }
        if (best_dev >= 0)
            pl_reason(p, "spreading pays: with the pipeline full every stage works on another batch and the slowest "
                      "stage sets the pace, %.1f tok/s; the best single device, %s alone, would give %.1f tok/s "
                      "(%.2fx)", p->decode_tok_s, p->devices[best_dev].label, best, p->decode_tok_s / best);
        else
            pl_reason(p, "spreading is needed: no single device holds the model with this context and batch");
    }
    for (int h = 0; h < p->n_hops; h++) {
        const struct st_plan_hop *hp = &p->hops[h];
        char a[24];
        const int ra = p->devices[p->stages[h].device].rank, rb = p->devices[p->stages[h + 1].device].rank;
        char across[96] = "";
        if (ra != rb) snprintf(across, sizeof across, " from rank %d to rank %d over the network", ra, rb);
        pl_reason(p, "hop %d->%d (%s -> %s)%s: %s%s, %.2f GB/s, %.0f us latency: %s per decode step (%.4f ms), "
                  "%s per prefill chunk (%.3f ms); the residual stream crosses in fp32", h, h + 1,
                  p->devices[p->stages[h].device].label, p->devices[p->stages[h + 1].device].label, across,
                  pl_link_name(hp->link.kind), hp->link.via_host ? " via host" : "", hp->link.bandwidth_gbps,
                  hp->link.latency_us, fmtb(hp->decode_bytes, a), hp->decode_ms, fmtb(hp->prefill_bytes, (char[24]){0}),
                  hp->prefill_ms);
    }
    if (p->n_stages > 1)
        pl_reason(p, "the sampled token returns from stage %d to stage 0 (4 bytes per sequence, one link latency); "
                  "it is not part of the objective", p->n_stages - 1);
}

/* Plans again with a changed input; returns true when it fits. */
static bool replan(st_plan *owner, const struct st_plan_model *m, const struct st_plan_device *devs, int n,
                   const struct st_plan_link *links, const struct st_plan_request *req, double *tok_s, uint64_t *missing) {
    struct st_plan_request r = *req;
    r.no_suggestions = true;
    r.manual = NULL;
    r.n_manual = 0;
    st_plan *q = NULL;
    if (owner->replan_status) return false;   /* an error already: st_plan_make reports it */
    st_status s = st_plan_make(m, devs, n, links, &r, &q);
    bool ok = s == ST_OK && q && q->feasible;
    if (tok_s) *tok_s = ok ? q->decode_tok_s : 0;
    if (missing) *missing = q && !ok ? q->shortfall.bytes_missing : 0;
    st_plan_free(q);
    if (s != ST_OK && s != ST_ERR_CONFIG) {   /* out of memory and the like, not "does not fit": keep the message */
        owner->replan_status = s;
        return false;
    }
    st_error_clear();
    return ok;
}

/* Plans again with extra appended to p's devices (default links to it) and
 * records the outcome as the next suggestion; NULL when out of memory. */
static struct st_plan_suggestion *suggest_one_more(st_plan *p, const struct st_plan_device *extra,
                                                   const struct st_plan_request *req) {
    struct st_plan_suggestion *g = NULL;
    int n = p->n_devices + 1;
    struct st_plan_device *devs = calloc((size_t)n, sizeof *devs);
    struct st_plan_link *links = calloc((size_t)n * (size_t)n, sizeof *links);
    if (devs && links) {
        memcpy(devs, p->devices, (size_t)p->n_devices * sizeof *devs);
        devs[n - 1] = *extra;
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++)
                links[a * n + b] = a < n - 1 && b < n - 1 ? p->links[a * p->n_devices + b]
                                                          : st_plan_link_default(&devs[a], &devs[b], NULL);
        g = &p->shortfall.suggestions[p->shortfall.n_suggestions++];
        double t;
        g->fits = replan(p, &p->model, devs, n, links, req, &t, &g->bytes_short);
        g->decode_tok_s = g->fits ? t : 0;
    }
    free(devs);
    free(links);
    return g;
}

/* Why an added device does not make the model fit: how many layers it could
 * hold on its own (a middle range: no embedding, no head) and what a layer
 * costs there; appended to the suggestion's text. */
static void capacity_note(const st_plan *p, const struct st_plan_device *dv, const struct st_plan_request *req,
                          char *buf, size_t cap) {
    buf[0] = 0;
    const struct st_plan_model *m = &p->model;
    int64_t first = m->n_layer > 2 ? 1 : 0, last_ok = first - 1;
    int64_t end = m->n_layer > 2 ? m->n_layer - 2 : m->n_layer - 1;
    struct st_plan_stage st, best;
    char why[320] = "";
    memset(&best, 0, sizeof best);
    for (int64_t l = first; l <= end; l++) {
        if (!st_plan_stage_eval(m, dv, req, first, l, &st, last_ok < first ? why : NULL, sizeof why)) break;
        best = st;
        last_ok = l;
    }
    int64_t k = last_ok - first + 1;
    char a[24], b[24];
    if (k <= 0) snprintf(buf, cap, ": it cannot hold one layer (%s)", why);
    else snprintf(buf, cap, ": at most %lld of %lld layers fit it (%s KV %s a layer, workspace %s), too few",
                  (long long)k, (long long)m->n_layer, st_dtype_name(best.kv_dtype),
                  fmtb(best.mem.kv / (uint64_t)k, a), fmtb(best.mem.workspace, b));
}

/* what + note in a suggestion's text; a short form of what when both do not fit. */
static void with_note(struct st_plan_suggestion *g, const char *short_what, const char *note) {
    size_t a = strlen(g->what), b = strlen(note), cap = sizeof g->what;
    if (a + b >= cap) {
        a = strlen(short_what);
        memmove(g->what, short_what, a);
    }
    if (a + b >= cap) b = cap - 1 - a;
    memcpy(g->what + a, note, b);
    g->what[a + b] = 0;
}

/* The longest context, in steps of 256 tokens up to limit, that fits with every device's KV cache forced
 * to kv (planned again, auto placement); 0 when not even 256 tokens fit. */
static int64_t longest_context(st_plan *p, const struct st_plan_request *req, st_dtype kv, int64_t limit) {
    struct st_plan_device *devs = calloc((size_t)p->n_devices, sizeof *devs);
    if (!devs) {
        if (!p->replan_status) p->replan_status = st_error_set(ST_ERR_NOMEM, "planner: the kv cache reach");
        return 0;
    }
    memcpy(devs, p->devices, (size_t)p->n_devices * sizeof *devs);
    for (int d = 0; d < p->n_devices; d++) devs[d].force_kv = kv;
    struct st_plan_request r = *req;
    r.force_kv = kv;
    r.context = limit;
    int64_t best = 0;
    if (replan(p, &p->model, devs, p->n_devices, p->links, &r, NULL, NULL)) {
        best = limit;
    } else {
        int64_t lo = 0, hi = (limit + 255) / 256;     /* in units of 256; hi * 256 >= limit does not fit */
        while (hi - lo > 1) {
            int64_t mid = (lo + hi) / 2;
            r.context = mid * 256;
            if (replan(p, &p->model, devs, p->n_devices, p->links, &r, NULL, NULL)) lo = mid;
            else hi = mid;
        }
        best = lo * 256;
    }
    free(devs);
    return best;
}

/* How much longer a context a q8_0 cache buys than an f16 one (issue 11): both searched. */
static void kv_reach(st_plan *p, const struct st_plan_request *req) {
    struct st_plan_kv_reach *k = &p->kv_reach;
    if (!st_plan_kv_q8_ok(&p->model)) return;
    k->limit = (int64_t)1 << 20;    /* past the trained context too: the line says where that is */
    k->f16_ctx = longest_context(p, req, ST_DTYPE_F16, k->limit);
    k->q8_ctx = longest_context(p, req, ST_DTYPE_Q8_0, k->limit);
    k->known = true;
}

static void suggest(st_plan *p, const struct st_plan_request *req) {
    struct st_plan_shortfall *sf = &p->shortfall;
    const struct st_plan_model *m = &p->model;
    struct st_plan_suggestion *g;
    /* shorter context */
    if (req->context > 256 && sf->n_suggestions < 8) {
        g = &sf->suggestions[sf->n_suggestions++];
        int64_t lo = 0, hi = req->context / 256;       /* in units of 256 tokens; hi is known not to fit */
        /* never suggest more than the model was trained for: hi is then only never tried */
        if (m->n_ctx_train > 0 && m->n_ctx_train / 256 + 1 < hi) hi = m->n_ctx_train / 256 + 1;
        double ts = 0;
        while (hi - lo > 1) {
            int64_t mid = (lo + hi) / 2;
            struct st_plan_request r = *req;
            r.context = mid * 256;
            double t;
            if (replan(p, m, p->devices, p->n_devices, p->links, &r, &t, NULL)) { lo = mid; ts = t; }
            else hi = mid;
        }
        if (lo > 0) {
            snprintf(g->what, sizeof g->what, "context %lld (instead of %lld)", (long long)(lo * 256),
                     (long long)req->context);
            g->fits = true;
            g->decode_tok_s = ts;
        } else {
            struct st_plan_request r = *req;
            r.context = 256;
            replan(p, m, p->devices, p->n_devices, p->links, &r, NULL, &g->bytes_short);
            snprintf(g->what, sizeof g->what, "a shorter context: even 256 tokens do not fit");
        }
    }
    /* fewer sequences */
    if (req->batch > 1 && sf->n_suggestions < 8) {
        g = &sf->suggestions[sf->n_suggestions++];
        int64_t lo = 0, hi = req->batch;
        double ts = 0;
        while (hi - lo > 1) {
            int64_t mid = (lo + hi) / 2;
            struct st_plan_request r = *req;
            r.batch = mid;
            double t;
            if (replan(p, m, p->devices, p->n_devices, p->links, &r, &t, NULL)) { lo = mid; ts = t; }
            else hi = mid;
        }
        g->fits = lo > 0;
        g->decode_tok_s = ts;
        if (lo > 0) snprintf(g->what, sizeof g->what, "batch %lld (instead of %lld)", (long long)lo, (long long)req->batch);
        else snprintf(g->what, sizeof g->what, "a smaller batch: even 1 sequence does not fit");
    }
    /* a q8_0 KV cache, where the caches are held at a float type (kv_dtype) */
    bool forced_float = req->force_kv >= 0 && req->force_kv != ST_DTYPE_Q8_0;
    for (int d = 0; d < p->n_devices; d++)
        forced_float |= p->devices[d].force_kv >= 0 && p->devices[d].force_kv != ST_DTYPE_Q8_0;
    if (forced_float && st_plan_kv_q8_ok(m) && sf->n_suggestions < 8) {
        struct st_plan_device *devs = calloc((size_t)p->n_devices, sizeof *devs);
        if (devs) {
            memcpy(devs, p->devices, (size_t)p->n_devices * sizeof *devs);
            for (int d = 0; d < p->n_devices; d++) devs[d].force_kv = ST_DTYPE_Q8_0;
            struct st_plan_request r = *req;
            r.force_kv = ST_DTYPE_Q8_0;
            g = &sf->suggestions[sf->n_suggestions++];
            double t;
            g->fits = replan(p, m, devs, p->n_devices, p->links, &r, &t, &g->bytes_short);
            g->decode_tok_s = g->fits ? t : 0;
            snprintf(g->what, sizeof g->what, "a q8_0 KV cache (kv_dtype: q8_0, %s instead of %s)",
                     fmtb(st_plan_kv_bytes(m, ST_DTYPE_Q8_0, m->n_layer, req->context, req->batch), (char[24]){0}),
                     fmtb(st_plan_kv_bytes(m, req->force_kv >= 0 ? (st_dtype)req->force_kv : ST_DTYPE_BF16, m->n_layer,
                                           req->context, req->batch), (char[24]){0}));
            free(devs);
        }
    }
    /* a quantized file */
    static const char *const quants[] = {"q8_0", "q6_k", "q5_k_m", "q4_k_m"};
    uint64_t smallest_short = 0;
    bool any_q = false;
    const char *tried = NULL;
    for (size_t i = 0; i < ST_ARRAY_LEN(quants) && sf->n_suggestions < 8; i++) {
        struct st_plan_model q;
        if (st_plan_model_requant(m, quants[i], &q) != ST_OK) { st_error_clear(); continue; }
        if (q.total_bytes >= m->total_bytes || (st_plan_model_dtypes(&q) & ~dtypes_run(p->devices, p->n_devices))) {
            st_plan_model_free(&q);   /* no smaller, or holds a weight type no device runs */
            continue;
        }
        double t;
        uint64_t miss = 0;
        tried = quants[i];
        bool ok = replan(p, &q, p->devices, p->n_devices, p->links, req, &t, &miss);
        char a[24];
        if (ok) {
            g = &sf->suggestions[sf->n_suggestions++];
            snprintf(g->what, sizeof g->what, "a %s file (%s of weights instead of %s)", quants[i],
                     fmtb(q.total_bytes, a), fmtb(m->total_bytes, (char[24]){0}));
            g->fits = true;
            g->decode_tok_s = t;
            any_q = true;
            st_plan_model_free(&q);
            break;
        }
        smallest_short = miss;
        st_plan_model_free(&q);
    }
    if (!any_q && tried && sf->n_suggestions < 8) {
        g = &sf->suggestions[sf->n_suggestions++];
        snprintf(g->what, sizeof g->what, "a quantized file: even %s does not fit", tried);
        g->bytes_short = smallest_short;
    }
    /* one more device: the one with the most usable memory, again (among those that run every weight type
     * of the model: another of a device that cannot would add nothing it can hold) */
    int best = -1;
    for (int d = 0; d < p->n_devices; d++) {
        if (st_plan_model_dtypes(m) & ~pl_dev_dtypes(&p->devices[d])) continue;
        if (best < 0 || st_plan_device_usable(&p->devices[d]) > st_plan_device_usable(&p->devices[best])) best = d;
    }
    if (best >= 0 && sf->n_suggestions < 8 && p->n_devices < 64) {
        if ((g = suggest_one_more(p, &p->devices[best], req))) {
            snprintf(g->what, sizeof g->what, "one more %s (%s usable)", p->devices[best].label,
                     fmtb(st_plan_device_usable(&p->devices[best]), (char[24]){0}));
            if (!g->fits && !g->bytes_short) {
                char note[160];
                capacity_note(p, &p->devices[best], req, note, sizeof note);
                with_note(g, "one more", note);
            }
        }
    }
    /* CPU offload */
    bool have_cpu = false;
    for (int d = 0; d < p->n_devices; d++) have_cpu |= p->devices[d].is_cpu;
    if (!have_cpu && sf->n_suggestions < 8) {
        struct st_plan_device cpu;
        bool assumed = !req->offload_cpu;
        if (req->offload_cpu) cpu = *req->offload_cpu;
        else {
            struct st_device_info ci = {0};
            ci.kind = ST_DEVICE_CPU;
            ci.numa_node = -1;
            snprintf(ci.name, sizeof ci.name, "host CPU");
            ci.caps = st_caps_cpu();
            ci.sm_count = 8;
            ci.threads = 16;
            ci.mem_total_bytes = ci.mem_free_bytes = 64ull << 30;
            st_plan_device_init(&cpu, &ci);
        }
        if ((g = suggest_one_more(p, &cpu, req))) {
            snprintf(g->what, sizeof g->what, "CPU offload to %s (%s usable%s)", cpu.info.name,
                     fmtb(st_plan_device_usable(&cpu), (char[24]){0}),
                     assumed ? ", an assumed host: 64 GiB free, 25 GB/s" : "");
            if (!g->fits && !g->bytes_short) {
                char note[160];
                capacity_note(p, &cpu, req, note, sizeof note);
                with_note(g, "CPU offload", note);
            }
        }
    }
}

static void shortfall(st_plan *p, const struct st_plan_request *req) {
    struct st_plan_shortfall *sf = &p->shortfall;
    const struct st_plan_model *m = &p->model;
    /* the least any device could need: KV at the narrowest dtype some device allows, one workspace */
    st_dtype kv = ST_DTYPE_F32;
    uint64_t ws = UINT64_MAX;
    for (int d = 0; d < p->n_devices; d++) {
        for (int q = 0; q < PL_N_PREC; q++) {
            struct pl_mode md;
            pl_mode_of(&p->devices[d], req, (st_prec)q, &md);
            if (!md.allowed) continue;
            st_dtype k = md.kv_auto && req->kv_q8_fallback ? ST_DTYPE_Q8_0 : md.kv;
            if (pl_kv_value_bytes(k) < pl_kv_value_bytes(kv)) kv = k;
            uint64_t w = pl_workspace(m, req, &p->devices[d], (st_prec)q, &md, true, true);
            if (w < ws) ws = w;
        }
    }
    if (ws == UINT64_MAX) ws = 0;
    /* devices a forced precision or attention leaves without any allowed mode */
    bool excluded[64] = {0};
    char excl[400] = "";
    for (int d = 0; d < p->n_devices; d++) {
        bool any = false;
        char why[200] = "";
        for (int q = 0; q < PL_N_PREC; q++) {
            struct pl_mode md;
            pl_mode_of(&p->devices[d], req, (st_prec)q, &md);
            any |= md.allowed;
            if (!md.allowed && (!why[0] || p->devices[d].force_prec == q || req->force_prec == q))
                snprintf(why, sizeof why, "%s", md.why_not);
        }
        const uint32_t lacks = st_plan_model_dtypes(m) & ~pl_dev_dtypes(&p->devices[d]);
        if (any && lacks) {   /* it may hold only the layers (and ends) of weight types it runs */
            char miss[96], ranges[160];
            int64_t nl = layer_ranges(m, lacks, ranges, sizeof ranges);
            st_dtype_mask_text(lacks, " ", miss, sizeof miss);
            size_t n = strlen(excl);
            if (runnable_layer(m, &p->devices[d], 0) < 0) {
                excluded[d] = true;
                snprintf(excl + n, sizeof excl - n, "%s is excluded: every layer holds %s, which it cannot run; ",
                         p->devices[d].label, miss);
            } else {
                snprintf(excl + n, sizeof excl - n, "%s cannot run %s (%s%s); ", p->devices[d].label, miss,
                         nl ? "layers " : "the embedding or output head", nl ? ranges : "");
            }
        }
        if (any) continue;
        excluded[d] = true;
        size_t n = strlen(excl);
        snprintf(excl + n, sizeof excl - n, "%s is excluded: %s; ", p->devices[d].label, why);
    }
    sf->bytes_needed = m->total_bytes + st_plan_kv_bytes(m, kv, m->n_layer, req->context, req->batch) + ws;
    sf->bytes_usable = 0;
    for (int d = 0; d < p->n_devices; d++)
        if (!excluded[d]) sf->bytes_usable += st_plan_device_usable(&p->devices[d]);
    char a[24], b[24], c[24];
    if (sf->bytes_needed > sf->bytes_usable) {
        sf->bytes_missing = sf->bytes_needed - sf->bytes_usable;
        snprintf(sf->detail, sizeof sf->detail,
                 "%s (%s) needs %s (weights %s + KV %s at context %lld x batch %lld + workspace) but the %d device%s "
                 "offer %s usable: %s short", m->name, m->weights, fmtb(sf->bytes_needed, a),
                 fmtb(m->total_bytes, b), fmtb(st_plan_kv_bytes(m, kv, m->n_layer, req->context, req->batch), c),
                 (long long)req->context, (long long)req->batch, p->n_devices, p->n_devices == 1 ? "" : "s",
                 fmtb(sf->bytes_usable, (char[24]){0}), fmtb(sf->bytes_missing, (char[24]){0}));
    } else {
        /* enough in total, but not in contiguous pieces, or a forced choice excludes devices */
        uint64_t biggest = 0, largest_usable = 0;
        for (int64_t l = 0; l < m->n_layer; l++) biggest = ST_MAX(biggest, m->layer_bytes[l]);
        for (int d = 0; d < p->n_devices; d++)
            if (!excluded[d]) largest_usable = ST_MAX(largest_usable, st_plan_device_usable(&p->devices[d]));
        sf->bytes_missing = 0;
        snprintf(sf->detail, sizeof sf->detail,
                 "%s (%s) needs %s and the devices offer %s in total, but no split into contiguous layer ranges "
                 "fits each device with its workspace and the embedding/output head (largest block %s, largest "
                 "device %s usable)", m->name, m->weights,
                 fmtb(sf->bytes_needed, a), fmtb(sf->bytes_usable, b), fmtb(biggest, c),
                 fmtb(largest_usable, (char[24]){0}));
    }
    if (excl[0]) {
        char tmp[640];
        snprintf(tmp, sizeof tmp, "%s%s", excl, sf->detail);
        snprintf(sf->detail, sizeof sf->detail, "%s", tmp);
    }
    if (!req->no_suggestions) suggest(p, req);
}

st_status st_plan_make(const struct st_plan_model *model, const struct st_plan_device *devs, int n_dev,
                       const struct st_plan_link *links, const struct st_plan_request *req, st_plan **out) {
    *out = NULL;
    st_status s = check_request(model, n_dev, req);
    if (s != ST_OK) return s;
    if ((s = check_kv(model, devs, n_dev, req)) != ST_OK) return s;
    if ((s = check_dtypes(model, devs, n_dev)) != ST_OK) return s;
    /* kv_dtype auto: a stage whose float cache does not fit may take q8_0 (st_plan_stage_eval
     * prefers any float mode that fits); the partition tries float caches first */
    struct st_plan_request eff = *req;
    eff.kv_q8_fallback = st_plan_kv_q8_ok(model);
    req = &eff;
    st_plan *p = st_calloc(1, sizeof *p, "plan");
    if (!p) return ST_ERR_NOMEM;
    if ((s = st_plan_model_copy(model, &p->model)) != ST_OK) { free(p); return s; }
    p->n_devices = n_dev;
    p->devices = st_calloc((size_t)n_dev, sizeof *p->devices, "plan devices");
    p->links = st_calloc((size_t)n_dev * (size_t)n_dev, sizeof *p->links, "plan links");
    int max_st = req->manual && req->n_manual > n_dev ? req->n_manual : n_dev;
    if (max_st > 64) max_st = 64;
    p->stages = st_calloc((size_t)max_st, sizeof *p->stages, "plan stages");
    p->hops = st_calloc((size_t)max_st, sizeof *p->hops, "plan hops");
    if (!p->devices || !p->links || !p->stages || !p->hops) { st_plan_free(p); return ST_ERR_NOMEM; }
    memcpy(p->devices, devs, (size_t)n_dev * sizeof *devs);
    /* labels name devices in tables and reasons: make repeated ones unique ("h100-sxm#1") */
    for (int i = 0; i < n_dev; i++) {
        int dup = 0, rank = 0;
        for (int j = 0; j < n_dev; j++) {
            if (strcmp(devs[i].label, devs[j].label)) continue;
            dup++;
            if (j < i) rank++;
        }
        if (dup > 1) {
            char buf[ST_DEVICE_NAME_MAX + 8];
            snprintf(buf, sizeof buf, "%s#%d", devs[i].label, rank);
            snprintf(p->devices[i].label, sizeof p->devices[i].label, "%.*s", ST_DEVICE_NAME_MAX - 1, buf);
        }
    }
    if (links) memcpy(p->links, links, (size_t)n_dev * (size_t)n_dev * sizeof *links);
    else st_plan_links_default(devs, n_dev, p->links);
    p->context = req->context;
    p->batch = req->batch;
    p->prefill_chunk = req->prefill_chunk;
    p->prompt_tokens = pl_prompt(req);
    p->decode_at = pl_decode_at(req);
    p->objective = req->objective;
    p->manual = req->manual != NULL;
    const struct st_plan_model *m = &p->model;

    struct st_plan_range ranges[64];
    int n_st = 0;
    if (req->manual) {
        if (req->n_manual < 1 || req->n_manual > 64) {
            st_error_set(ST_ERR_CONFIG, "plan: manual placement has %d stages (1 to 64)", req->n_manual);
            st_error_hint("give one range per stage, e.g. {device: 0, layers: 0-19}");
            st_plan_free(p);
            return ST_ERR_CONFIG;
        }
        int64_t next = 0;
        for (int i = 0; i < req->n_manual; i++) {
            const struct st_plan_range *r = &req->manual[i];
            const char *problem = NULL;
            char buf[200];
            if (r->device < 0 || r->device >= n_dev) {
                snprintf(buf, sizeof buf, "device %d does not exist (there are %d)", r->device, n_dev);
                problem = buf;
            } else if (r->first != next || r->last < r->first || r->last >= m->n_layer) {
                snprintf(buf, sizeof buf, "layers %lld-%lld: expected a range starting at layer %lld and ending at or "
                         "before %lld", (long long)r->first, (long long)r->last, (long long)next,
                         (long long)(m->n_layer - 1));
                problem = buf;
            }
            if (problem) {
                st_error_set(ST_ERR_CONFIG, "plan: manual stage %d: %s", i, problem);
                st_error_hint("manual ranges cover layers 0..%lld in order and contiguous, e.g. "
                              "[{device: 0, layers: 0-13}, {device: 1, layers: 14-%lld}]",
                              (long long)(m->n_layer - 1), (long long)(m->n_layer - 1));
                st_plan_free(p);
                return ST_ERR_CONFIG;
            }
            next = r->last + 1;
            ranges[n_st++] = *r;
        }
        if (next != m->n_layer) {
            st_error_set(ST_ERR_CONFIG, "plan: manual placement ends at layer %lld; %s has %lld layers (0..%lld)",
                         (long long)(next - 1), m->name, (long long)m->n_layer, (long long)(m->n_layer - 1));
            st_error_hint("extend the last range to layer %lld", (long long)(m->n_layer - 1));
            st_plan_free(p);
            return ST_ERR_CONFIG;
        }
        for (int i = 0; i < n_st; i++) {
            char why[320];
            if (!st_plan_stage_eval(m, &p->devices[ranges[i].device], req, ranges[i].first, ranges[i].last,
                                    &p->stages[i], why, sizeof why)) {
                st_error_set(ST_ERR_CONFIG, "plan: manual stage %d (layers %lld-%lld on %s) does not fit: %s", i,
                             (long long)ranges[i].first, (long long)ranges[i].last,
                             p->devices[ranges[i].device].label, why);
                st_error_hint("move layers to another device, shorten the context, or remove a forced "
                              "precision/attention the device lacks ('strata plan' without manual: shows what fits)");
                p->feasible = false;
                p->n_stages = 0;
                *out = p;
                return ST_ERR_CONFIG;
            }
            p->stages[i].device = ranges[i].device;
        }
        /* a device holding several stages must hold all of them */
        for (int d = 0; d < n_dev; d++) {
            uint64_t sum = 0;
            int k = 0;
            for (int i = 0; i < n_st; i++)
                if (p->stages[i].device == d) { sum += p->stages[i].mem.total; k++; }
            uint64_t usable = st_plan_device_usable(&p->devices[d]);
            if (k > 1 && sum > usable) {
                char a[24], b[24];
                st_error_set(ST_ERR_CONFIG, "plan: %s holds %d manual stages needing %s together, usable %s",
                             p->devices[d].label, k, st_format_bytes(sum, a, sizeof a),
                             st_format_bytes(usable, b, sizeof b));
                st_error_hint("move one of its ranges to another device");
                p->feasible = false;
                p->n_stages = 0;
                *out = p;
                return ST_ERR_CONFIG;
            }
        }
    } else {
        double best = 0;
        struct st_plan_request float_only = eff;
        float_only.kv_q8_fallback = false;
        n_st = pl_partition(m, p->devices, n_dev, p->links, &float_only, ranges, &best);
        if (n_st == 0 && eff.kv_q8_fallback)     /* short: let q8_0 caches in where they are chosen */
            n_st = pl_partition(m, p->devices, n_dev, p->links, &eff, ranges, &best);
        if (n_st < 0) { st_plan_free(p); return st_last_status() != ST_OK ? st_last_status() : ST_ERR_INTERNAL; }
        for (int i = 0; i < n_st; i++) {
            char why[320];
            if (!st_plan_stage_eval(m, &p->devices[ranges[i].device], req, ranges[i].first, ranges[i].last,
                                    &p->stages[i], why, sizeof why)) {
                st_plan_free(p);
                return st_error_set(ST_ERR_INTERNAL, "planner: partition stage %d does not re-evaluate: %s", i, why);
            }
            p->stages[i].device = ranges[i].device;
        }
    }
    p->n_stages = n_st;
    if (!req->no_suggestions) kv_reach(p, req);
    if (p->replan_status) {
        const st_status rs = p->replan_status;
        st_plan_free(p);
        return rs;
    }
    if (n_st == 0) {
        p->feasible = false;
        shortfall(p, req);
        if (p->replan_status) {
            const st_status rs = p->replan_status;
            st_plan_free(p);
            return rs;
        }
        st_error_set(ST_ERR_CONFIG, "plan: %s", p->shortfall.detail);
        const struct st_plan_suggestion *fit = NULL;
        for (int i = 0; i < p->shortfall.n_suggestions && !fit; i++)
            if (p->shortfall.suggestions[i].fits) fit = &p->shortfall.suggestions[i];
        if (fit) st_error_hint("%s would fit (planned again: %.1f tok/s); 'strata plan' lists every option",
                               fit->what, fit->decode_tok_s);
        else st_error_hint("add a device, use a smaller or quantized model, or shorten the context");
        *out = p;
        return ST_ERR_CONFIG;
    }
    p->feasible = true;
    finish_totals(p);
    perf_reasons(p, req);
    dtype_reasons(p);
    stage_reasons(p, req);
    if (p->replan_status) {
        const st_status rs = p->replan_status;
        st_plan_free(p);
        return rs;
    }
    *out = p;
    return ST_OK;
}
