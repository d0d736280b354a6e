/* The plan as JSON (jansson), the same facts as the YAML file, for tools. */
#include "planner/planner-impl.h"

#include <jansson.h>

static json_t *link_json(const struct st_plan_link *l) {
    return json_pack("{s:s, s:b, s:f, s:f}", "kind", pl_link_name(l->kind), "via_host", l->via_host,
                     "latency_us", l->latency_us, "bandwidth_gbps", l->bandwidth_gbps);
}

/* ["f32", "q4_k", ...] */
static json_t *dtypes_json(uint32_t mask) {
    json_t *a = json_array();
    for (int t = 0; t < ST_DTYPE_COUNT; t++)
        if (mask & ST_DTYPE_BIT(t)) json_array_append_new(a, json_string(st_dtype_name((st_dtype)t)));
    return a;
}

static json_t *mem_json(const struct st_plan_mem *m) {
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "weights", (json_int_t)m->weights, "kv",
                     (json_int_t)m->kv, "workspace", (json_int_t)m->workspace, "total", (json_int_t)m->total,
                     "usable", (json_int_t)m->usable, "overhead", (json_int_t)m->overhead, "reserve",
                     (json_int_t)m->reserve);
}

st_status st_plan_write_json(FILE *f, const st_plan *p) {
    const struct st_plan_model *m = &p->model;
    json_t *root = json_object();
    json_t *lb = json_array();
    for (int64_t l = 0; l < m->n_layer; l++) json_array_append_new(lb, json_integer((json_int_t)m->layer_bytes[l]));
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "feasible", json_boolean(p->feasible));
    json_object_set_new(root, "model", json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}",
        "name", m->name, "weights", m->weights, "arch", st_arch_name(m->arch), "n_layer", (json_int_t)m->n_layer,
        "n_embd", (json_int_t)m->n_embd, "n_vocab", (json_int_t)m->n_vocab, "n_head_kv", (json_int_t)m->n_head_kv,
        "head_dim", (json_int_t)m->head_dim, "total_bytes", (json_int_t)m->total_bytes, "layer_bytes", lb,
        "weight_dtypes", dtypes_json(st_plan_model_dtypes(m))));
    json_object_set_new(root, "request", json_pack("{s:I, s:I, s:I, s:I, s:I, s:s, s:b}",
        "context", (json_int_t)p->context, "batch", (json_int_t)p->batch, "prefill_chunk", (json_int_t)p->prefill_chunk,
        "prompt_tokens", (json_int_t)p->prompt_tokens, "decode_at", (json_int_t)p->decode_at,
        "objective", st_plan_objective_name(p->objective), "manual", p->manual));
    json_t *devs = json_array();
    for (int i = 0; i < p->n_devices; i++) {
        const struct st_plan_device *d = &p->devices[i];
        const struct st_caps *c = &d->info.caps;
        json_array_append_new(devs, json_pack("{s:s, s:s, s:i, s:s, s:s, s:[i,i], s:{s:b,s:b,s:b,s:b,s:b,s:o}, s:I, "
            "s:I, s:{s:f,s:f,s:f,s:f,s:b}}",
            "select", d->select, "label", d->label, "rank", d->rank, "name", d->info.name, "catalog", d->info.catalog,
            "cc", c->cc_major, c->cc_minor, "caps", "fp16_arith", c->fp16_arith, "fp32_accum_fp16", c->fp32_accum_fp16,
            "bf16", c->bf16, "tensor_cores", c->tensor_cores, "flash_attn", c->flash_attn,
            "weight_dtypes", dtypes_json(pl_dev_dtypes(d)),
            "memory_bytes", (json_int_t)d->info.mem_total_bytes, "usable_bytes", (json_int_t)st_plan_device_usable(d),
            "perf", "mem_bw_gbps", d->info.perf.mem_bw_gbps, "fp32_tflops", d->info.perf.fp32_tflops,
            "fp16_tflops", d->info.perf.fp16_tflops, "bf16_tflops", d->info.perf.bf16_tflops,
            "measured", d->info.perf.measured));
    }
    json_object_set_new(root, "devices", devs);
    json_t *st = json_array();
    for (int s = 0; s < p->n_stages; s++) {
        const struct st_plan_stage *x = &p->stages[s];
        json_array_append_new(st, json_pack("{s:i, s:s, s:[I,I], s:b, s:b, s:s, s:s, s:s, s:o, s:f, s:f, s:s}",
            "device", x->device, "label", p->devices[x->device].label, "layers", (json_int_t)x->first,
            (json_int_t)x->last, "embedding", x->has_embedding, "output", x->has_output, "precision",
            st_prec_name(x->prec), "attention", st_attn_name(x->attn), "kv_dtype", st_dtype_name(x->kv_dtype),
            "memory", mem_json(&x->mem), "decode_ms", x->decode_ms, "prefill_ms", x->prefill_ms, "bound", x->bound));
    }
    json_object_set_new(root, "stages", st);
    json_t *hops = json_array();
    for (int h = 0; h < p->n_hops; h++) {
        const struct st_plan_hop *x = &p->hops[h];
        json_array_append_new(hops, json_pack("{s:i, s:i, s:o, s:I, s:I, s:f, s:f}", "from", h, "to", h + 1,
            "link", link_json(&x->link), "decode_bytes", (json_int_t)x->decode_bytes, "prefill_bytes",
            (json_int_t)x->prefill_bytes, "decode_ms", x->decode_ms, "prefill_ms", x->prefill_ms));
    }
    json_object_set_new(root, "hops", hops);
    if (p->feasible)
        json_object_set_new(root, "predicted", json_pack("{s:f, s:f, s:f, s:f, s:s}", "decode_ms", p->decode_ms,
            "decode_tok_s", p->decode_tok_s, "prefill_tok_s", p->prefill_tok_s, "bottleneck_ms", p->bottleneck_ms,
            "bottleneck", p->bottleneck));
    if (p->kv_reach.known)
        json_object_set_new(root, "kv_reach", json_pack("{s:I, s:I, s:I, s:I}", "batch", (json_int_t)p->batch,
            "f16_context", (json_int_t)p->kv_reach.f16_ctx, "q8_0_context", (json_int_t)p->kv_reach.q8_ctx,
            "limit", (json_int_t)p->kv_reach.limit));
    json_t *rs = json_array();
    for (int i = 0; i < p->n_reasons; i++) json_array_append_new(rs, json_string(p->reasons[i]));
    json_object_set_new(root, "reasons", rs);
    if (!p->feasible) {
        const struct st_plan_shortfall *sf = &p->shortfall;
        json_t *sg = json_array();
        for (int i = 0; i < sf->n_suggestions; i++)
            json_array_append_new(sg, json_pack("{s:s, s:b, s:f, s:I}", "what", sf->suggestions[i].what, "fits",
                sf->suggestions[i].fits, "decode_tok_s", sf->suggestions[i].decode_tok_s, "bytes_short",
                (json_int_t)sf->suggestions[i].bytes_short));
        json_object_set_new(root, "shortfall", json_pack("{s:I, s:I, s:I, s:s, s:o}", "bytes_needed",
            (json_int_t)sf->bytes_needed, "bytes_usable", (json_int_t)sf->bytes_usable, "bytes_missing",
            (json_int_t)sf->bytes_missing, "detail", sf->detail, "suggestions", sg));
    }
    int rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(root);
    fputc('\n', f);
    if (rc != 0 || ferror(f)) return st_error_set(ST_ERR_IO, "plan: writing JSON failed");
    return ST_OK;
}
