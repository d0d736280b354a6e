/* Plan files: st_plan_write_yaml writes everything a plan holds (model sizes,
 * devices, links, stages, predictions, reasons) so that st_plan_read_yaml can
 * load it back and `generate --plan` reproduces a deployment. Numbers are
 * written with 17 significant digits: a write-read-write round trip is
 * byte-identical (tests/planner/test_io.c). */
#include "planner/planner-impl.h"
#include "planner/yaml-impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ---- writer --------------------------------------------------------------- */

static const char *yb(bool b) { return b ? "true" : "false"; }
static const char *force_name(int v, bool attn) {
    if (v < 0) return "auto";
    return attn ? st_attn_name((st_attn_kind)v) : st_prec_name((st_prec)v);
}

static void w_link(FILE *f, const struct st_plan_link *l) {
    fprintf(f, "{kind: ");
    pl_yaml_quote(f, pl_link_name(l->kind));
    fprintf(f, ", via_host: %s, latency_us: %.17g, bandwidth_gbps: %.17g}", yb(l->via_host), l->latency_us,
            l->bandwidth_gbps);
}

st_status st_plan_write_yaml(FILE *f, const st_plan *p) {
    const struct st_plan_model *m = &p->model;
    fprintf(f, "# strata plan: written by `strata plan -o`, read by `strata generate --plan` (docs/planner.md)\n");
    fprintf(f, "version: 1\nfeasible: %s\n", yb(p->feasible));
    fprintf(f, "model:\n  name: "); pl_yaml_quote(f, m->name);
    fprintf(f, "\n  weights: "); pl_yaml_quote(f, m->weights);
    fprintf(f, "\n  arch: %s\n", st_arch_name(m->arch));
    fprintf(f, "  n_layer: %lld\n  n_embd: %lld\n  n_ff: %lld\n  n_vocab: %lld\n  n_head: %lld\n  n_head_kv: %lld\n"
            "  head_dim: %lld\n  n_ctx_train: %lld\n", (long long)m->n_layer, (long long)m->n_embd,
            (long long)m->n_ff, (long long)m->n_vocab, (long long)m->n_head, (long long)m->n_head_kv,
            (long long)m->head_dim, (long long)m->n_ctx_train);
    fprintf(f, "  tied_embeddings: %s\n  qkv_bias: %s\n  qk_norm: %s\n", yb(m->tied_embeddings), yb(m->qkv_bias),
            yb(m->qk_norm));
    fprintf(f, "  matrix_dtype: %s\n", m->matrix_dtype < ST_DTYPE_COUNT ? st_dtype_name(m->matrix_dtype) : "mixed");
    fprintf(f, "  total_bytes: %llu\n  embd_bytes: %llu\n  output_norm_bytes: %llu\n  lm_head_bytes: %llu\n"
            "  shared_bytes: %llu\n  max_matrix_elems: %llu\n  output_flops: %.17g\n",
            (unsigned long long)m->total_bytes, (unsigned long long)m->embd_bytes,
            (unsigned long long)m->output_norm_bytes, (unsigned long long)m->lm_head_bytes,
            (unsigned long long)m->shared_bytes, (unsigned long long)m->max_matrix_elems, m->output_flops);
    fprintf(f, "  layer_bytes: [");
    for (int64_t l = 0; l < m->n_layer; l++) fprintf(f, "%s%llu", l ? ", " : "", (unsigned long long)m->layer_bytes[l]);
    fprintf(f, "]\n  layer_flops: [");
    for (int64_t l = 0; l < m->n_layer; l++) fprintf(f, "%s%.17g", l ? ", " : "", m->layer_flops[l]);
    fprintf(f, "]\nrequest:\n  context: %lld\n  batch: %lld\n  prefill_chunk: %lld\n  prompt_tokens: %lld\n"
            "  decode_at: %lld\n  objective: %s\n  manual: %s\n", (long long)p->context, (long long)p->batch,
            (long long)p->prefill_chunk, (long long)p->prompt_tokens, (long long)p->decode_at,
            st_plan_objective_name(p->objective), yb(p->manual));
    fprintf(f, "devices:\n");
    for (int i = 0; i < p->n_devices; i++) {
        const struct st_plan_device *d = &p->devices[i];
        const struct st_device_info *in = &d->info;
        const struct st_caps *c = &in->caps;
        const struct st_perf *pf = &in->perf;
        fprintf(f, "  - select: "); pl_yaml_quote(f, d->select);
        fprintf(f, "\n    label: "); pl_yaml_quote(f, d->label);
        fprintf(f, "\n    name: "); pl_yaml_quote(f, in->name);
        fprintf(f, "\n    kind: %s\n    rank: %d\n    index: %d\n    uuid: ", st_device_kind_name(in->kind), d->rank, in->index);
        pl_yaml_quote(f, in->uuid);
        fprintf(f, "\n    catalog: "); pl_yaml_quote(f, in->catalog);
        fprintf(f, "\n    cc: [%d, %d]\n", c->cc_major, c->cc_minor);
        char wd[160];
        fprintf(f, "    caps: {fp16_arith: %s, fp32_accum_fp16: %s, bf16: %s, tensor_cores: %s, flash_attn: %s, "
                "weight_dtypes: [%s]}\n", yb(c->fp16_arith), yb(c->fp32_accum_fp16), yb(c->bf16), yb(c->tensor_cores),
                yb(c->flash_attn), st_dtype_mask_text(c->weight_dtypes ? c->weight_dtypes : ST_DTYPE_ALL, ", ", wd,
                                                      sizeof wd));
        fprintf(f, "    sm_count: %d\n    threads: %d\n    pcie: [%d, %d]\n", in->sm_count, in->threads, in->pcie_gen,
                in->pcie_width);
        fprintf(f, "    memory_bytes: %llu\n    free_bytes: %llu\n    max_memory_bytes: %llu\n    reserve_bytes: %llu\n"
                "    overhead_bytes: %llu\n    usable_bytes: %llu\n", (unsigned long long)in->mem_total_bytes,
                (unsigned long long)in->mem_free_bytes, (unsigned long long)d->max_memory_bytes,
                (unsigned long long)d->reserve_bytes, (unsigned long long)d->overhead_bytes,
                (unsigned long long)st_plan_device_usable(d));
        fprintf(f, "    perf: {mem_bw_gbps: %.17g, fp32_tflops: %.17g, fp16_tflops: %.17g, bf16_tflops: %.17g, "
                "launch_us: %.17g, measured: %s}\n", pf->mem_bw_gbps, pf->fp32_tflops, pf->fp16_tflops,
                pf->bf16_tflops, pf->launch_us, yb(pf->measured));
        fprintf(f, "    precision: %s\n    attention: %s\n", force_name(d->force_prec, false),
                force_name(d->force_attn, true));
    }
    fprintf(f, "links:\n");
    for (int a = 0; a < p->n_devices; a++) {
        fprintf(f, "  - [");
        for (int b = 0; b < p->n_devices; b++) {
            if (b) fprintf(f, ", ");
            w_link(f, &p->links[a * p->n_devices + b]);
        }
        fprintf(f, "]\n");
    }
    fprintf(f, "stages:%s\n", p->n_stages ? "" : " []");
    for (int s = 0; s < p->n_stages; s++) {
        const struct st_plan_stage *st = &p->stages[s];
        fprintf(f, "  - device: %d\n    label: ", st->device); pl_yaml_quote(f, p->devices[st->device].label);
        fprintf(f, "\n    layers: [%lld, %lld]\n    embedding: %s\n    output: %s\n", (long long)st->first,
                (long long)st->last, yb(st->has_embedding), yb(st->has_output));
        fprintf(f, "    precision: %s\n    attention: %s\n    kv_dtype: %s\n", st_prec_name(st->prec),
                st_attn_name(st->attn), st_dtype_name(st->kv_dtype));
        fprintf(f, "    memory: {weights: %llu, kv: %llu, workspace: %llu, total: %llu, usable: %llu, overhead: %llu, "
                "reserve: %llu}\n", (unsigned long long)st->mem.weights, (unsigned long long)st->mem.kv,
                (unsigned long long)st->mem.workspace, (unsigned long long)st->mem.total,
                (unsigned long long)st->mem.usable, (unsigned long long)st->mem.overhead,
                (unsigned long long)st->mem.reserve);
        fprintf(f, "    decode_ms: %.17g\n    prefill_ms: %.17g\n    bound: %s\n", st->decode_ms, st->prefill_ms,
                st->bound[0] ? st->bound : "none");
    }
    fprintf(f, "hops:%s\n", p->n_hops ? "" : " []");
    for (int h = 0; h < p->n_hops; h++) {
        const struct st_plan_hop *hp = &p->hops[h];
        fprintf(f, "  - link: "); w_link(f, &hp->link);
        fprintf(f, "\n    decode_bytes: %llu\n    prefill_bytes: %llu\n    decode_ms: %.17g\n    prefill_ms: %.17g\n",
                (unsigned long long)hp->decode_bytes, (unsigned long long)hp->prefill_bytes, hp->decode_ms,
                hp->prefill_ms);
    }
    fprintf(f, "predicted:\n  decode_ms: %.17g\n  decode_tok_s: %.17g\n  prefill_tok_s: %.17g\n  bottleneck_ms: %.17g\n"
            "  bottleneck: ", p->decode_ms, p->decode_tok_s, p->prefill_tok_s, p->bottleneck_ms);
    pl_yaml_quote(f, p->bottleneck);
    fprintf(f, "\nreasons:%s\n", p->n_reasons ? "" : " []");
    for (int i = 0; i < p->n_reasons; i++) { fprintf(f, "  - "); pl_yaml_quote(f, p->reasons[i]); fputc('\n', f); }
    const struct st_plan_shortfall *sf = &p->shortfall;
    fprintf(f, "shortfall:\n  bytes_needed: %llu\n  bytes_usable: %llu\n  bytes_missing: %llu\n  detail: ",
            (unsigned long long)sf->bytes_needed, (unsigned long long)sf->bytes_usable,
            (unsigned long long)sf->bytes_missing);
    pl_yaml_quote(f, sf->detail);
    fprintf(f, "\n  suggestions:%s\n", sf->n_suggestions ? "" : " []");
    for (int i = 0; i < sf->n_suggestions; i++) {
        const struct st_plan_suggestion *g = &sf->suggestions[i];
        fprintf(f, "    - {what: "); pl_yaml_quote(f, g->what);
        fprintf(f, ", fits: %s, decode_tok_s: %.17g, bytes_short: %llu}\n", yb(g->fits), g->decode_tok_s,
                (unsigned long long)g->bytes_short);
    }
    if (ferror(f)) return st_error_set(ST_ERR_IO, "plan: writing YAML failed: %s", strerror(errno));
    return ST_OK;
}

/* ---- reader --------------------------------------------------------------- */

#define PL_MAX_REASONS 4096     /* a plan writes a few per device and stage */
#define PL_REASON_MAX 640       /* pl_reason's buffer (planner/plan.c) */

/* every key of map must be in keys (NULL-terminated) */
static st_status rd_keys(struct pl_yaml *r, yaml_node_t *map, const char *path, const char *const *keys) {
    if (!map || map->type != YAML_MAPPING_NODE) return pl_yaml_err(r, map, path, "expected a mapping");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&r->doc, p->key);
        const char *ks = k && k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        bool ok = false;
        for (const char *const *x = keys; *x && !ok; x++) ok = !strcmp(*x, ks);
        if (!ok) return pl_yaml_err(r, k, path, "unknown key '%s'", ks);
    }
    return ST_OK;
}

static st_status rd_scalar(struct pl_yaml *r, yaml_node_t *map, const char *key, const char *path, const char **out) {
    yaml_node_t *n;
    st_status s = pl_yaml_scalar(r, map, key, path, &n);
    if (s == ST_OK) *out = (const char *)n->data.scalar.value;
    return s;
}

static st_status scalar_u64(struct pl_yaml *r, yaml_node_t *n, const char *path, uint64_t *out) {
    if (!n || n->type != YAML_SCALAR_NODE) return pl_yaml_err(r, n, path, "expected an integer");
    const char *s = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return pl_yaml_err(r, n, path, "'%s' is not a non-negative integer", s);
    *out = v;
    return ST_OK;
}

static st_status scalar_i64(struct pl_yaml *r, yaml_node_t *n, const char *path, int64_t *out) {
    if (!n || n->type != YAML_SCALAR_NODE) return pl_yaml_err(r, n, path, "expected an integer");
    const char *s = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return pl_yaml_err(r, n, path, "'%s' is not an integer", s);
    *out = v;
    return ST_OK;
}

static st_status scalar_dbl(struct pl_yaml *r, yaml_node_t *n, const char *path, double *out) {
    if (!n || n->type != YAML_SCALAR_NODE) return pl_yaml_err(r, n, path, "expected a number");
    const char *s = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end) return pl_yaml_err(r, n, path, "'%s' is not a number", s);
    *out = v;
    return ST_OK;
}

static st_status scalar_bool(struct pl_yaml *r, yaml_node_t *n, const char *path, bool *out) {
    if (!n || n->type != YAML_SCALAR_NODE) return pl_yaml_err(r, n, path, "expected true or false");
    const char *s = (const char *)n->data.scalar.value;
    if (!strcmp(s, "true")) *out = true;
    else if (!strcmp(s, "false")) *out = false;
    else return pl_yaml_err(r, n, path, "'%s' is not true or false", s);
    return ST_OK;
}

static st_status need(struct pl_yaml *r, yaml_node_t *map, const char *key, const char *path, yaml_node_t **out) {
    *out = pl_yaml_get(r, map, key);
    if (!*out) return pl_yaml_err(r, map, path, "missing key '%s'", key);
    return ST_OK;
}

#define U64(map, key, dst, path) do { yaml_node_t *_n; uint64_t _v; \
    if ((s = need(r, map, key, path, &_n)) || (s = scalar_u64(r, _n, path "." key, &_v))) return s; \
    (dst) = _v; } while (0)
#define I64(map, key, dst, path) do { yaml_node_t *_n; int64_t _v; \
    if ((s = need(r, map, key, path, &_n)) || (s = scalar_i64(r, _n, path "." key, &_v))) return s; \
    (dst) = _v; } while (0)
#define DBL(map, key, dst, path) do { yaml_node_t *_n; \
    if ((s = need(r, map, key, path, &_n)) || (s = scalar_dbl(r, _n, path "." key, &(dst)))) return s; } while (0)
#define BOOL(map, key, dst, path) do { yaml_node_t *_n; \
    if ((s = need(r, map, key, path, &_n)) || (s = scalar_bool(r, _n, path "." key, &(dst)))) return s; } while (0)
#define STR(map, key, dst, path) do { const char *_v; \
    if ((s = rd_scalar(r, map, key, path, &_v))) return s; \
    if (strlen(_v) >= sizeof(dst)) return pl_yaml_err(r, pl_yaml_get(r, map, key), path "." key, \
        "'%.40s...' is longer than the %zu characters this field holds", _v, sizeof(dst) - 1); \
    snprintf((dst), sizeof(dst), "%s", _v); } while (0)

static int seq_len(yaml_node_t *n) {
    return n && n->type == YAML_SEQUENCE_NODE ? (int)(n->data.sequence.items.top - n->data.sequence.items.start) : -1;
}
static yaml_node_t *seq_at(struct pl_yaml *r, yaml_node_t *n, int i) {
    return yaml_document_get_node(&r->doc, n->data.sequence.items.start[i]);
}

static st_status enum_of(struct pl_yaml *r, yaml_node_t *map, const char *key, const char *path,
                         const char *const *names, int n, int auto_value, int *out) {
    const char *v = "";
    st_status s = rd_scalar(r, map, key, path, &v);
    if (s) return s;
    if (auto_value != -2 && !strcmp(v, "auto")) { *out = auto_value; return ST_OK; }
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) { *out = i; return ST_OK; }
    return pl_yaml_err(r, pl_yaml_get(r, map, key), path, "'%s' is not a valid %s", v, key);
}

static st_status read_link(struct pl_yaml *r, yaml_node_t *n, const char *path, struct st_plan_link *l) {
    static const char *const keys[] = {"kind", "via_host", "latency_us", "bandwidth_gbps", NULL};
    const char *kinds[6];
    for (int k = 0; k < 6; k++) kinds[k] = pl_link_name((st_link_kind)k);   /* 4: "unknown", 5: "network" */
    int nk = 6;
    st_status s;
    if ((s = rd_keys(r, n, path, keys))) return s;
    int k = 0;
    if ((s = enum_of(r, n, "kind", path, kinds, nk, -2, &k))) return s;
    l->kind = (st_link_kind)k;
    BOOL(n, "via_host", l->via_host, "link");
    DBL(n, "latency_us", l->latency_us, "link");
    DBL(n, "bandwidth_gbps", l->bandwidth_gbps, "link");
    return ST_OK;
}

static st_status read_model(struct pl_yaml *r, yaml_node_t *n, struct st_plan_model *m) {
    static const char *const keys[] = {"name", "weights", "arch", "n_layer", "n_embd", "n_ff", "n_vocab", "n_head",
        "n_head_kv", "head_dim", "n_ctx_train", "tied_embeddings", "qkv_bias", "qk_norm", "matrix_dtype",
        "total_bytes", "embd_bytes", "output_norm_bytes", "lm_head_bytes", "shared_bytes", "max_matrix_elems",
        "output_flops", "layer_bytes", "layer_flops", NULL};
    st_status s;
    if ((s = rd_keys(r, n, "model", keys))) return s;
    STR(n, "name", m->name, "model");
    STR(n, "weights", m->weights, "model");
    static const char *const archs[] = {"llama", "qwen2", "qwen3"};
    int a = 0;
    if ((s = enum_of(r, n, "arch", "model", archs, 3, -2, &a))) return s;
    m->arch = (st_arch)a;
    I64(n, "n_layer", m->n_layer, "model");
    I64(n, "n_embd", m->n_embd, "model");
    I64(n, "n_ff", m->n_ff, "model");
    I64(n, "n_vocab", m->n_vocab, "model");
    I64(n, "n_head", m->n_head, "model");
    I64(n, "n_head_kv", m->n_head_kv, "model");
    I64(n, "head_dim", m->head_dim, "model");
    I64(n, "n_ctx_train", m->n_ctx_train, "model");
    BOOL(n, "tied_embeddings", m->tied_embeddings, "model");
    BOOL(n, "qkv_bias", m->qkv_bias, "model");
    BOOL(n, "qk_norm", m->qk_norm, "model");
    const char *md;
    if ((s = rd_scalar(r, n, "matrix_dtype", "model", &md))) return s;
    m->matrix_dtype = ST_DTYPE_COUNT;
    for (int t = 0; t < ST_DTYPE_COUNT; t++) if (!strcmp(md, st_dtype_name((st_dtype)t))) m->matrix_dtype = (st_dtype)t;
    if (m->matrix_dtype == ST_DTYPE_COUNT && strcmp(md, "mixed"))
        return pl_yaml_err(r, pl_yaml_get(r, n, "matrix_dtype"), "model.matrix_dtype", "'%s' is not a dtype or 'mixed'",
                           md);
    U64(n, "total_bytes", m->total_bytes, "model");
    U64(n, "embd_bytes", m->embd_bytes, "model");
    U64(n, "output_norm_bytes", m->output_norm_bytes, "model");
    U64(n, "lm_head_bytes", m->lm_head_bytes, "model");
    U64(n, "shared_bytes", m->shared_bytes, "model");
    U64(n, "max_matrix_elems", m->max_matrix_elems, "model");
    DBL(n, "output_flops", m->output_flops, "model");
    if (m->n_layer < 1 || m->n_layer > 100000)
        return pl_yaml_err(r, pl_yaml_get(r, n, "n_layer"), "model.n_layer", "%lld layers is out of range",
                           (long long)m->n_layer);
    if (m->n_embd < 1 || m->n_head < 1 || m->n_head_kv < 1 || m->head_dim < 1 || m->n_vocab < 1)
        return pl_yaml_err(r, n, "model", "shapes must be positive");
    yaml_node_t *lb = pl_yaml_get(r, n, "layer_bytes"), *lf = pl_yaml_get(r, n, "layer_flops");
    if (seq_len(lb) != m->n_layer) return pl_yaml_err(r, lb ? lb : n, "model.layer_bytes", "expected %lld entries",
                                                      (long long)m->n_layer);
    if (seq_len(lf) != m->n_layer) return pl_yaml_err(r, lf ? lf : n, "model.layer_flops", "expected %lld entries",
                                                      (long long)m->n_layer);
    if ((s = st_plan_model_alloc(m, m->n_layer))) return s;
    for (int64_t l = 0; l < m->n_layer; l++) {
        if ((s = scalar_u64(r, seq_at(r, lb, (int)l), "model.layer_bytes", &m->layer_bytes[l]))) return s;
        if ((s = scalar_dbl(r, seq_at(r, lf, (int)l), "model.layer_flops", &m->layer_flops[l]))) return s;
    }
    return ST_OK;
}

/* caps.weight_dtypes: a list of dtype names; plans written before it have none: what the device's
 * backend runs at its compute capability. */
static st_status read_weight_dtypes(struct pl_yaml *r, yaml_node_t *caps, struct st_device_info *in) {
    yaml_node_t *w = pl_yaml_get(r, caps, "weight_dtypes");
    if (!w) {
        const struct st_backend_reg *b = st_backend_reg_of(in);
        in->caps.weight_dtypes = b ? b->caps(in->caps.cc_major, in->caps.cc_minor).weight_dtypes : ST_DTYPE_ALL;
        return ST_OK;
    }
    int nw = seq_len(w);
    if (nw < 1) return pl_yaml_err(r, w, "devices[].caps.weight_dtypes", "expected a list of weight types");
    uint32_t mask = 0;
    for (int i = 0; i < nw; i++) {
        yaml_node_t *x = seq_at(r, w, i);
        int t = ST_DTYPE_COUNT;
        if (x->type == YAML_SCALAR_NODE)
            for (t = 0; t < ST_DTYPE_COUNT && strcmp((const char *)x->data.scalar.value, st_dtype_name((st_dtype)t)); t++) {}
        if (t == ST_DTYPE_COUNT)
            return pl_yaml_err(r, x, "devices[].caps.weight_dtypes", "'%s' is not a weight type",
                               x->type == YAML_SCALAR_NODE ? (const char *)x->data.scalar.value : "(not a scalar)");
        mask |= ST_DTYPE_BIT(t);
    }
    in->caps.weight_dtypes = mask;
    return ST_OK;
}

static st_status read_device(struct pl_yaml *r, yaml_node_t *n, struct st_plan_device *d) {
    static const char *const keys[] = {"select", "label", "name", "kind", "rank", "index", "uuid", "catalog", "cc", "caps",
        "sm_count", "threads", "pcie", "memory_bytes", "free_bytes", "max_memory_bytes", "reserve_bytes",
        "overhead_bytes", "usable_bytes", "perf", "precision", "attention", NULL};
    static const char *const precs[] = {"f32", "f16", "bf16"};
    static const char *const attns[] = {"eager", "flash"};
    st_status s;
    if ((s = rd_keys(r, n, "devices[]", keys))) return s;
    memset(d, 0, sizeof *d);
    struct st_device_info *in = &d->info;
    in->numa_node = -1;
    STR(n, "select", d->select, "device");
    STR(n, "label", d->label, "device");
    STR(n, "name", in->name, "device");
    STR(n, "uuid", in->uuid, "device");
    STR(n, "catalog", in->catalog, "device");
    const char *kv = "";
    if ((s = rd_scalar(r, n, "kind", "devices[]", &kv))) return s;
    if (!st_device_kind_parse(kv, &in->kind))
        return pl_yaml_err(r, pl_yaml_get(r, n, "kind"), "devices[].kind", "'%s' is not a valid kind", kv);
    d->is_cpu = st_device_host_memory(in);
    int64_t v;
    if (pl_yaml_get(r, n, "rank")) {   /* plans written before multi-host runs have none: rank 0 */
        I64(n, "rank", v, "device");
        if (v < 0 || v > 65535)
            return pl_yaml_err(r, pl_yaml_get(r, n, "rank"), "devices[].rank", "%lld is not an MPI rank", (long long)v);
        d->rank = (int)v;
    }
    I64(n, "index", v, "device"); in->index = (int)v;
    I64(n, "sm_count", v, "device"); in->sm_count = (int)v;
    I64(n, "threads", v, "device"); in->threads = (int)v;
    yaml_node_t *cc = pl_yaml_get(r, n, "cc"), *pc = pl_yaml_get(r, n, "pcie");
    if (seq_len(cc) != 2) return pl_yaml_err(r, cc ? cc : n, "devices[].cc", "expected [major, minor]");
    if (seq_len(pc) != 2) return pl_yaml_err(r, pc ? pc : n, "devices[].pcie", "expected [generation, width]");
    int64_t a, b;
    if ((s = scalar_i64(r, seq_at(r, cc, 0), "devices[].cc", &a)) || (s = scalar_i64(r, seq_at(r, cc, 1), "devices[].cc", &b)))
        return s;
    in->caps.cc_major = (int)a; in->caps.cc_minor = (int)b;
    if ((s = scalar_i64(r, seq_at(r, pc, 0), "devices[].pcie", &a)) || (s = scalar_i64(r, seq_at(r, pc, 1), "devices[].pcie", &b)))
        return s;
    in->pcie_gen = (int)a; in->pcie_width = (int)b;
    yaml_node_t *caps;
    if ((s = need(r, n, "caps", "devices[]", &caps))) return s;
    static const char *const ck[] = {"fp16_arith", "fp32_accum_fp16", "bf16", "tensor_cores", "flash_attn",
                                     "weight_dtypes", NULL};
    if ((s = rd_keys(r, caps, "devices[].caps", ck))) return s;
    BOOL(caps, "fp16_arith", in->caps.fp16_arith, "caps");
    BOOL(caps, "fp32_accum_fp16", in->caps.fp32_accum_fp16, "caps");
    BOOL(caps, "bf16", in->caps.bf16, "caps");
    BOOL(caps, "tensor_cores", in->caps.tensor_cores, "caps");
    BOOL(caps, "flash_attn", in->caps.flash_attn, "caps");
    if ((s = read_weight_dtypes(r, caps, in))) return s;
    U64(n, "memory_bytes", in->mem_total_bytes, "device");
    U64(n, "free_bytes", in->mem_free_bytes, "device");
    U64(n, "max_memory_bytes", d->max_memory_bytes, "device");
    U64(n, "reserve_bytes", d->reserve_bytes, "device");
    U64(n, "overhead_bytes", d->overhead_bytes, "device");
    uint64_t usable;
    U64(n, "usable_bytes", usable, "device");
    yaml_node_t *pf;
    if ((s = need(r, n, "perf", "devices[]", &pf))) return s;
    static const char *const pk[] = {"mem_bw_gbps", "fp32_tflops", "fp16_tflops", "bf16_tflops", "launch_us",
                                     "measured", NULL};
    if ((s = rd_keys(r, pf, "devices[].perf", pk))) return s;
    DBL(pf, "mem_bw_gbps", in->perf.mem_bw_gbps, "perf");
    DBL(pf, "fp32_tflops", in->perf.fp32_tflops, "perf");
    DBL(pf, "fp16_tflops", in->perf.fp16_tflops, "perf");
    DBL(pf, "bf16_tflops", in->perf.bf16_tflops, "perf");
    DBL(pf, "launch_us", in->perf.launch_us, "perf");
    BOOL(pf, "measured", in->perf.measured, "perf");
    if ((s = enum_of(r, n, "precision", "devices[].precision", precs, 3, -1, &d->force_prec))) return s;
    if ((s = enum_of(r, n, "attention", "devices[].attention", attns, 2, -1, &d->force_attn))) return s;
    if (usable != st_plan_device_usable(d))
        return pl_yaml_err(r, pl_yaml_get(r, n, "usable_bytes"), "devices[].usable_bytes",
                           "%llu does not equal memory - overhead - reserve (%llu)", (unsigned long long)usable,
                           (unsigned long long)st_plan_device_usable(d));
    return ST_OK;
}

static st_status read_stage(struct pl_yaml *r, yaml_node_t *n, const st_plan *p, struct st_plan_stage *st) {
    static const char *const keys[] = {"device", "label", "layers", "embedding", "output", "precision", "attention",
        "kv_dtype", "memory", "decode_ms", "prefill_ms", "bound", NULL};
    static const char *const precs[] = {"f32", "f16", "bf16"};
    static const char *const attns[] = {"eager", "flash"};
    st_status s;
    if ((s = rd_keys(r, n, "stages[]", keys))) return s;
    int64_t dv;
    I64(n, "device", dv, "stage");
    if (dv < 0 || dv >= p->n_devices)
        return pl_yaml_err(r, pl_yaml_get(r, n, "device"), "stages[].device", "device %lld does not exist (%d devices)",
                           (long long)dv, p->n_devices);
    st->device = (int)dv;
    yaml_node_t *ly = pl_yaml_get(r, n, "layers");
    if (seq_len(ly) != 2) return pl_yaml_err(r, ly ? ly : n, "stages[].layers", "expected [first, last]");
    if ((s = scalar_i64(r, seq_at(r, ly, 0), "stages[].layers", &st->first)) ||
        (s = scalar_i64(r, seq_at(r, ly, 1), "stages[].layers", &st->last)))
        return s;
    if (st->first < 0 || st->last < st->first || st->last >= p->model.n_layer)
        return pl_yaml_err(r, ly, "stages[].layers", "[%lld, %lld] is not a range of the model's %lld layers",
                           (long long)st->first, (long long)st->last, (long long)p->model.n_layer);
    BOOL(n, "embedding", st->has_embedding, "stage");
    BOOL(n, "output", st->has_output, "stage");
    int v = 0;
    if ((s = enum_of(r, n, "precision", "stages[].precision", precs, 3, -2, &v))) return s;
    st->prec = (st_prec)v;
    if ((s = enum_of(r, n, "attention", "stages[].attention", attns, 2, -2, &v))) return s;
    st->attn = (st_attn_kind)v;
    static const char *const kvs[] = {"f32", "f16", "bf16", "q8_0"};
    if ((s = enum_of(r, n, "kv_dtype", "stages[].kv_dtype", kvs, 4, -2, &v))) return s;
    st->kv_dtype = (st_dtype)v;     /* ST_DTYPE_F32, F16, BF16, Q8_0 are 0, 1, 2, 3 */
    yaml_node_t *mem;
    if ((s = need(r, n, "memory", "stages[]", &mem))) return s;
    static const char *const mk[] = {"weights", "kv", "workspace", "total", "usable", "overhead", "reserve", NULL};
    if ((s = rd_keys(r, mem, "stages[].memory", mk))) return s;
    U64(mem, "weights", st->mem.weights, "memory");
    U64(mem, "kv", st->mem.kv, "memory");
    U64(mem, "workspace", st->mem.workspace, "memory");
    U64(mem, "total", st->mem.total, "memory");
    U64(mem, "usable", st->mem.usable, "memory");
    U64(mem, "overhead", st->mem.overhead, "memory");
    U64(mem, "reserve", st->mem.reserve, "memory");
    if (st->mem.total != st->mem.weights + st->mem.kv + st->mem.workspace)
        return pl_yaml_err(r, mem, "stages[].memory", "total is not weights + kv + workspace");
    DBL(n, "decode_ms", st->decode_ms, "stage");
    DBL(n, "prefill_ms", st->prefill_ms, "stage");
    const char *bd;
    if ((s = rd_scalar(r, n, "bound", "stages[]", &bd))) return s;
    if (strlen(bd) >= sizeof st->bound)
        return pl_yaml_err(r, pl_yaml_get(r, n, "bound"), "stages[].bound", "'%.40s' is longer than %zu characters", bd,
                           sizeof st->bound - 1);
    snprintf(st->bound, sizeof st->bound, "%s", strcmp(bd, "none") ? bd : "");
    return ST_OK;
}

static st_status read_plan(struct pl_yaml *r, st_plan *p) {
    yaml_node_t *root = yaml_document_get_root_node(&r->doc);
    if (!root) return pl_yaml_err(r, NULL, "(file)", "the file is empty");
    static const char *const keys[] = {"version", "feasible", "model", "request", "devices", "links", "stages", "hops",
                                       "predicted", "reasons", "shortfall", NULL};
    st_status s;
    if ((s = rd_keys(r, root, "(top level)", keys))) return s;
    int64_t version;
    I64(root, "version", version, "(top level)");
    if (version != 1)
        return pl_yaml_err(r, pl_yaml_get(r, root, "version"), "version", "version %lld is not 1", (long long)version);
    BOOL(root, "feasible", p->feasible, "(top level)");
    yaml_node_t *n;
    if ((s = need(r, root, "model", "(top level)", &n)) || (s = read_model(r, n, &p->model))) return s;
    if ((s = need(r, root, "request", "(top level)", &n))) return s;
    static const char *const rk[] = {"context", "batch", "prefill_chunk", "prompt_tokens", "decode_at", "objective",
                                     "manual", NULL};
    if ((s = rd_keys(r, n, "request", rk))) return s;
    I64(n, "context", p->context, "request");
    I64(n, "batch", p->batch, "request");
    I64(n, "prefill_chunk", p->prefill_chunk, "request");
    I64(n, "prompt_tokens", p->prompt_tokens, "request");
    I64(n, "decode_at", p->decode_at, "request");
    static const char *const objs[] = {"latency", "throughput"};
    int o = 0;
    if ((s = enum_of(r, n, "objective", "request.objective", objs, 2, -2, &o))) return s;
    p->objective = (st_plan_objective)o;
    BOOL(n, "manual", p->manual, "request");
    if (p->context < 1 || p->batch < 1 || p->prefill_chunk < 1)
        return pl_yaml_err(r, n, "request", "context, batch and prefill_chunk must be >= 1");
    yaml_node_t *dv = pl_yaml_get(r, root, "devices");
    int nd = seq_len(dv);
    if (nd < 1 || nd > 64) return pl_yaml_err(r, dv ? dv : root, "devices", "expected a list of 1 to 64 devices");
    p->n_devices = nd;
    p->devices = st_calloc((size_t)nd, sizeof *p->devices, "plan devices");
    p->links = st_calloc((size_t)nd * (size_t)nd, sizeof *p->links, "plan links");
    p->stages = st_calloc(64, sizeof *p->stages, "plan stages");
    p->hops = st_calloc(64, sizeof *p->hops, "plan hops");
    if (!p->devices || !p->links || !p->stages || !p->hops) return ST_ERR_NOMEM;
    for (int i = 0; i < nd; i++)
        if ((s = read_device(r, seq_at(r, dv, i), &p->devices[i]))) return s;
    yaml_node_t *lk = pl_yaml_get(r, root, "links");
    if (seq_len(lk) != nd) return pl_yaml_err(r, lk ? lk : root, "links", "expected %d rows", nd);
    for (int a = 0; a < nd; a++) {
        yaml_node_t *row = seq_at(r, lk, a);
        if (seq_len(row) != nd) return pl_yaml_err(r, row, "links[]", "expected %d entries", nd);
        for (int b = 0; b < nd; b++)
            if ((s = read_link(r, seq_at(r, row, b), "links[][]", &p->links[a * nd + b]))) return s;
    }
    yaml_node_t *sg = pl_yaml_get(r, root, "stages");
    int ns = seq_len(sg);
    if (ns < 0 || ns > 64) return pl_yaml_err(r, sg ? sg : root, "stages", "expected a list of at most 64 stages");
    p->n_stages = ns;
    int64_t next = 0;
    for (int i = 0; i < ns; i++) {
        yaml_node_t *sn = seq_at(r, sg, i);
        if ((s = read_stage(r, sn, p, &p->stages[i]))) return s;
        if (p->stages[i].first != next)
            return pl_yaml_err(r, sn, "stages[].layers", "stage %d starts at layer %lld, expected %lld", i,
                               (long long)p->stages[i].first, (long long)next);
        next = p->stages[i].last + 1;
    }
    if (p->feasible && next != p->model.n_layer)
        return pl_yaml_err(r, sg, "stages", "the stages end at layer %lld; the model has %lld", (long long)(next - 1),
                           (long long)p->model.n_layer);
    yaml_node_t *hp = pl_yaml_get(r, root, "hops");
    int nh = seq_len(hp);
    if (nh != (ns > 0 ? ns - 1 : 0))
        return pl_yaml_err(r, hp ? hp : root, "hops", "expected %d hops", ns > 0 ? ns - 1 : 0);
    p->n_hops = nh;
    for (int h = 0; h < nh; h++) {
        yaml_node_t *hn = seq_at(r, hp, h), *ln;
        static const char *const hk[] = {"link", "decode_bytes", "prefill_bytes", "decode_ms", "prefill_ms", NULL};
        if ((s = rd_keys(r, hn, "hops[]", hk))) return s;
        if ((s = need(r, hn, "link", "hops[]", &ln)) || (s = read_link(r, ln, "hops[].link", &p->hops[h].link))) return s;
        U64(hn, "decode_bytes", p->hops[h].decode_bytes, "hop");
        U64(hn, "prefill_bytes", p->hops[h].prefill_bytes, "hop");
        DBL(hn, "decode_ms", p->hops[h].decode_ms, "hop");
        DBL(hn, "prefill_ms", p->hops[h].prefill_ms, "hop");
    }
    if ((s = need(r, root, "predicted", "(top level)", &n))) return s;
    static const char *const pk[] = {"decode_ms", "decode_tok_s", "prefill_tok_s", "bottleneck_ms", "bottleneck", NULL};
    if ((s = rd_keys(r, n, "predicted", pk))) return s;
    DBL(n, "decode_ms", p->decode_ms, "predicted");
    DBL(n, "decode_tok_s", p->decode_tok_s, "predicted");
    DBL(n, "prefill_tok_s", p->prefill_tok_s, "predicted");
    DBL(n, "bottleneck_ms", p->bottleneck_ms, "predicted");
    STR(n, "bottleneck", p->bottleneck, "predicted");
    yaml_node_t *rs = pl_yaml_get(r, root, "reasons");
    int nr = seq_len(rs);
    if (nr < 0) return pl_yaml_err(r, rs ? rs : root, "reasons", "expected a list of strings");
    if (nr > PL_MAX_REASONS) return pl_yaml_err(r, rs, "reasons", "%d reasons is more than the %d a plan holds", nr, PL_MAX_REASONS);
    for (int i = 0; i < nr; i++) {
        yaml_node_t *x = seq_at(r, rs, i);
        if (x->type != YAML_SCALAR_NODE) return pl_yaml_err(r, x, "reasons[]", "expected a string");
        if (x->data.scalar.length >= PL_REASON_MAX)
            return pl_yaml_err(r, x, "reasons[]", "a reason of %zu characters is longer than the %d a plan writes",
                               x->data.scalar.length, PL_REASON_MAX - 1);
        pl_reason(p, "%s", (const char *)x->data.scalar.value);
    }
    if ((s = need(r, root, "shortfall", "(top level)", &n))) return s;
    static const char *const sk[] = {"bytes_needed", "bytes_usable", "bytes_missing", "detail", "suggestions", NULL};
    if ((s = rd_keys(r, n, "shortfall", sk))) return s;
    struct st_plan_shortfall *sf = &p->shortfall;
    U64(n, "bytes_needed", sf->bytes_needed, "shortfall");
    U64(n, "bytes_usable", sf->bytes_usable, "shortfall");
    U64(n, "bytes_missing", sf->bytes_missing, "shortfall");
    STR(n, "detail", sf->detail, "shortfall");
    yaml_node_t *sgs = pl_yaml_get(r, n, "suggestions");
    int ng = seq_len(sgs);
    if (ng < 0 || ng > 8) return pl_yaml_err(r, sgs ? sgs : n, "shortfall.suggestions", "expected a list of at most 8");
    sf->n_suggestions = ng;
    for (int i = 0; i < ng; i++) {
        yaml_node_t *g = seq_at(r, sgs, i);
        static const char *const gk[] = {"what", "fits", "decode_tok_s", "bytes_short", NULL};
        if ((s = rd_keys(r, g, "shortfall.suggestions[]", gk))) return s;
        STR(g, "what", sf->suggestions[i].what, "suggestion");
        BOOL(g, "fits", sf->suggestions[i].fits, "suggestion");
        DBL(g, "decode_tok_s", sf->suggestions[i].decode_tok_s, "suggestion");
        U64(g, "bytes_short", sf->suggestions[i].bytes_short, "suggestion");
    }
    return ST_OK;
}

#define PLAN_HINT "plan files are written by 'strata plan -o FILE'; write it again rather than editing it"

st_status st_plan_parse_yaml(const char *text, size_t len, const char *name, st_plan **out) {
    *out = NULL;
    st_status s = st_yaml_check_limits(name, text, len, ST_YAML_MAX_PLAN_BYTES, PLAN_HINT);
    if (s) return s;
    yaml_parser_t parser;
    struct pl_yaml r = {.path = name, .hint = PLAN_HINT};
    if (!yaml_parser_initialize(&parser)) return st_error_set(ST_ERR_NOMEM, "%s: out of host memory parsing YAML", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &r.doc)) {
        s = parser.error == YAML_MEMORY_ERROR ? st_error_set(ST_ERR_NOMEM, "%s: out of host memory parsing YAML", name)
                                              : pl_yaml_syntax_err(&r, &parser);
        yaml_parser_delete(&parser);
        return s;
    }
    st_plan *p = st_calloc(1, sizeof *p, "plan");
    if (!p) s = ST_ERR_NOMEM;
    else s = read_plan(&r, p);
    yaml_document_delete(&r.doc);
    yaml_parser_delete(&parser);
    if (s != ST_OK) { st_plan_free(p); return s; }
    *out = p;
    return ST_OK;
}

st_status st_plan_read_yaml(const char *path, st_plan **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    st_status s = st_read_file_limit(path, ST_YAML_MAX_PLAN_BYTES, &text, &len);
    if (s != ST_OK) {
        if (s == ST_ERR_NOMEM) return s;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", st_last_error());   /* the message buffer is reused by st_error_set */
        char *hint = strstr(msg, "\nhint: ");
        if (hint) *hint = 0;
        st_error_set(ST_ERR_CONFIG, "plan file: %s", msg);
        return st_error_hint("%s", hint ? hint + 7 : PLAN_HINT);
    }
    s = st_plan_parse_yaml(text, len, path, out);
    free(text);
    return s;
}
