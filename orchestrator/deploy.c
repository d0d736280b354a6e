/* Deployment: config → devices → plan → engine. */
#include "orchestrator/deploy.h"
#include "orchestrator/cli.h"
#include "orchestrator/sampler.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Appends a YAML double-quoted scalar of s to buf. */
static void yaml_quote(char *buf, size_t cap, const char *s) {
    size_t n = strlen(buf);
    if (n + 2 >= cap) return;
    buf[n++] = '"';
    for (; *s && n + 3 < cap; s++) {
        if (*s == '"' || *s == '\\') buf[n++] = '\\';
        buf[n++] = *s;
    }
    buf[n++] = '"';
    buf[n] = 0;
}

/* Without -c: the model on every GPU of this machine, else on the CPU. The
 * config goes through the same parser as a file, so defaults stay in one place. */
static st_status default_config(const struct st_deploy_options *opt, const st_inventory *inv,
                                struct st_deploy_config **out) {
    char text[8192] = "version: 1\nmodel:\n  path: ";
    yaml_quote(text, sizeof text, opt->model_path);
    strcat(text, "\ndevices:\n");
    int n_gpu = 0;
    for (int i = 1; i < inv->n_devices && !opt->cpu_only; i++) {
        if (inv->devices[i].kind != ST_DEVICE_CUDA) continue;
        size_t n = strlen(text);
        snprintf(text + n, sizeof text - n, "  - cuda:%d\n", inv->devices[i].index);
        n_gpu++;
    }
    if (n_gpu == 0) strcat(text, "  - cpu\n");
    return st_config_parse(text, strlen(text), "(command line)", out);
}

/* The GPU a `cuda:N` or `cuda:GPU-...` entry names; *n_match counts the GPUs a
 * UUID prefix fits (more than one is ambiguous). */
static const struct st_device_info *find_cuda(const st_inventory *inv, const struct st_config_device *cd,
                                              int *n_match) {
    const struct st_device_info *found = NULL;
    *n_match = 0;
    for (int i = 1; i < inv->n_devices; i++) {
        const struct st_device_info *d = &inv->devices[i];
        if (d->kind != ST_DEVICE_CUDA) continue;
        bool hit = cd->kind == ST_CONFIG_DEV_CUDA_INDEX ? d->index == cd->index
                                                        : !strncmp(d->uuid, cd->uuid, strlen(cd->uuid));
        if (hit && !found) found = d;
        *n_match += hit;
    }
    return found;
}

static void apply_tri(bool *field, st_config_tri t) {
    if (t == ST_CONFIG_TRI_TRUE) *field = true;
    else if (t == ST_CONFIG_TRI_FALSE) *field = false;
}

/* Resolves one config entry into a planner device. */
static st_status resolve_device(const struct st_deploy_config *cfg, const struct st_config_device *cd,
                                const st_inventory *inv, struct st_plan_device *pd) {
    struct st_device_info info;
    memset(&info, 0, sizeof info);
    if (cd->kind == ST_CONFIG_DEV_CATALOG) {
        st_status s = st_catalog_lookup(cd->catalog, &info);
        if (s) return st_error_prefix("%s:%d:%d", cfg->source, cd->selector_pos.line, cd->selector_pos.column);
        info.kind = ST_DEVICE_CATALOG;
    } else if (cd->kind == ST_CONFIG_DEV_CPU) {
        info = inv->devices[0];
        if (cd->threads > 0) info.threads = cd->threads;
    } else {
        int n_match;
        const struct st_device_info *d = find_cuda(inv, cd, &n_match);
        if (n_match > 1) {
            st_error_set(ST_ERR_CONFIG, "%s:%d:%d: devices: '%s' fits %d GPUs of this machine", cfg->source,
                         cd->selector_pos.line, cd->selector_pos.column, cd->selector, n_match);
            return st_error_hint("write more of the UUID ('strata inventory' lists them) or use cuda:N");
        }
        if (!d) {
            int n_gpu = inv->n_devices - 1;
            st_error_set(ST_ERR_CONFIG, "%s:%d:%d: devices: '%s' is not on this machine (%d GPU%s visible%s%s)",
                         cfg->source, cd->selector_pos.line, cd->selector_pos.column, cd->selector, n_gpu,
                         n_gpu == 1 ? "" : "s", inv->no_gpu_reason[0] ? ": " : "", inv->no_gpu_reason);
            return st_error_hint("'strata inventory' lists this machine's devices; for a dry run on hardware "
                                 "you do not have, write '{catalog: NAME}'");
        }
        info = *d;
        if (cd->emulate[0]) {
            /* The catalog card's capabilities, performance and memory (capped by the real card's). */
            struct st_device_info cat;
            st_status s = st_catalog_lookup(cd->emulate, &cat);
            if (s) return st_error_prefix("%s:%d:%d", cfg->source, cd->emulate_pos.line, cd->emulate_pos.column);
            info.caps = cat.caps;
            info.perf = cat.perf;
            info.sm_count = cat.sm_count;
            info.mem_total_bytes = ST_MIN(info.mem_total_bytes, cat.mem_total_bytes);
            info.mem_free_bytes = ST_MIN(info.mem_free_bytes, info.mem_total_bytes);
            snprintf(info.catalog, sizeof info.catalog, "%s", cd->emulate);
        }
    }
    apply_tri(&info.caps.fp16_arith, cd->caps.fp16_arith);
    apply_tri(&info.caps.fp32_accum_fp16, cd->caps.fp32_accum_fp16);
    apply_tri(&info.caps.bf16, cd->caps.bf16);
    apply_tri(&info.caps.tensor_cores, cd->caps.tensor_cores);
    apply_tri(&info.caps.flash_attn, cd->caps.flash_attn);

    st_plan_device_init(pd, &info);
    snprintf(pd->select, sizeof pd->select, "%.63s", cd->selector);
    if (cd->name[0]) snprintf(pd->label, sizeof pd->label, "%s", cd->name);
    else if (cd->emulate[0]) snprintf(pd->label, sizeof pd->label, "%.47s as %.40s", cd->selector, cd->emulate);
    pd->max_memory_bytes = cd->max_memory_bytes;
    pd->reserve_bytes = cd->reserve_bytes;
    pd->force_prec = cd->precision != ST_CONFIG_AUTO ? cd->precision : cfg->placement.precision;
    pd->force_attn = cd->attention != ST_CONFIG_AUTO ? cd->attention : cfg->placement.attention;
    return ST_OK;
}

/* A profile named on the command line must load; the default one is used when
 * it exists and loads, else skipped with a warning. */
static st_status apply_profile(st_deploy *d, const char *path, bool required) {
    char buf[512];
    if (!path) {
        path = st_profile_default_path(buf, sizeof buf);
        struct stat st;
        if (!path || stat(path, &st) != 0) return ST_OK;
    }
    st_profile *prof = NULL;
    st_status s = st_profile_load(path, &prof);
    if (s) {
        if (required) return s;
        ST_WARN("ignoring probe profile: %s", st_last_error());
        return ST_OK;
    }
    int n = 0;
    for (int i = 0; i < d->n_devs; i++) {
        if (d->devs[i].info.kind == ST_DEVICE_CATALOG || d->devs[i].info.catalog[0]) continue;
        n += st_profile_apply(prof, &d->devs[i].info, 1);
    }
    if (n) snprintf(d->profile_used, sizeof d->profile_used, "%s", path);
    st_profile_free(prof);
    return ST_OK;
}

/* A saved plan (`strata plan -o`) becomes a manual placement with each stage's
 * precision and attention forced, then goes through the planner again, so it is
 * checked against this machine's devices and memory like any placement. */
static st_status replay_plan(st_deploy *d, const char *path, int64_t context, struct st_plan_range **out) {
    *out = NULL;
    st_plan *saved = NULL;
    st_status s = st_plan_read_yaml(path, &saved);
    if (s) return s;
    if (!saved->feasible || saved->n_stages == 0) {
        st_plan_free(saved);
        st_error_set(ST_ERR_CONFIG, "%s: the saved plan is not feasible: it has no stages to run", path);
        return st_error_hint("save a plan that fits ('strata plan ... -o FILE' prints 'does not fit' otherwise)");
    }
    if (saved->model.n_layer != d->pm.n_layer || saved->model.n_embd != d->pm.n_embd ||
        saved->model.n_vocab != d->pm.n_vocab) {
        st_error_set(ST_ERR_CONFIG, "%s: the plan is for %s (%lld layers, hidden %lld, vocab %lld), the model is %s "
                     "(%lld layers, hidden %lld, vocab %lld)", path, saved->model.name, (long long)saved->model.n_layer,
                     (long long)saved->model.n_embd, (long long)saved->model.n_vocab, d->pm.name,
                     (long long)d->pm.n_layer, (long long)d->pm.n_embd, (long long)d->pm.n_vocab);
        st_plan_free(saved);
        return st_error_hint("plan this model again with 'strata plan -m MODEL -o FILE'");
    }
    struct st_plan_range *r = st_calloc((size_t)saved->n_stages, sizeof *r, "saved placement");
    if (!r) { st_plan_free(saved); return ST_ERR_NOMEM; }
    for (int i = 0; i < saved->n_stages && !s; i++) {
        const struct st_plan_stage *ps = &saved->stages[i];
        const char *sel = saved->devices[ps->device].select, *label = saved->devices[ps->device].label;
        int found = -1;
        /* the entry with the same selector and label (a device listed twice, e.g. cuda:0 as
         * "fast" and "exact", holds each stage on its own entry), else the first with the selector */
        for (int k = 0; k < d->n_devs && found < 0; k++) {
            if (!strcmp(d->devs[k].select, sel) && !strcmp(d->devs[k].label, label)) found = k;
        }
        for (int k = 0; k < d->n_devs && found < 0; k++) {
            if (!strcmp(d->devs[k].select, sel)) found = k;
        }
        if (found < 0) {
            s = st_error_set(ST_ERR_CONFIG, "%s: stage %d runs on '%s', which this deployment does not list", path, i, sel);
            st_error_hint("run the plan with the deployment it was made for (-c), or plan again on these devices");
            break;
        }
        struct st_plan_device *dev = &d->devs[found];
        if ((dev->force_prec >= 0 && dev->force_prec != (int)ps->prec) ||
            (dev->force_attn >= 0 && dev->force_attn != (int)ps->attn)) {
            s = st_error_set(ST_ERR_CONFIG, "%s: device '%s' holds stages with different precision or attention, "
                             "or the deployment forces another", path, sel);
            st_error_hint("plan again with 'strata plan -o FILE'");
            break;
        }
        dev->force_prec = (int)ps->prec;
        dev->force_attn = (int)ps->attn;
        r[i] = (struct st_plan_range){.device = found, .first = ps->first, .last = ps->last};
    }
    if (!s) {
        d->req.manual = r;
        d->req.n_manual = saved->n_stages;
        d->req.context = context > 0 ? context : saved->context;   /* --ctx still wins */
        d->req.batch = saved->batch;
        d->req.prefill_chunk = saved->prefill_chunk;
        d->req.objective = saved->objective;
        *out = r;
    } else {
        free(r);
    }
    st_plan_free(saved);
    return s;
}

st_status st_deploy_check_model_path(const struct st_deploy_config *cfg) {
    struct stat st;
    if (!cfg->model.path || stat(cfg->model.path, &st) == 0) return ST_OK;
    st_error_set(ST_ERR_CONFIG, "%s:%d:%d: model.path: '%s' %s", cfg->source, cfg->model.pos.line,
                 cfg->model.pos.column, cfg->model.path, errno == ENOENT ? "does not exist" : strerror(errno));
    return st_error_hint("a relative path is taken from the config file's directory; "
                         "for a dry run without the file use 'preset:' instead of 'path:'");
}

st_status st_deploy_load(const struct st_deploy_options *opt, st_deploy **out) {
    *out = NULL;
    st_status s = ST_OK;
    st_deploy *d = st_calloc(1, sizeof *d, "deployment");
    if (!d) return ST_ERR_NOMEM;

    if (!opt->config_path && !opt->model_path) {
        s = st_error_set(ST_ERR_USAGE, "no model: give -m MODEL or -c deploy.yaml");
        st_error_hint("e.g. 'strata generate -m models/tiny-kjv -p \"In the beginning\"'");
        goto fail;
    }
    if ((s = st_inventory_init(&d->inv))) goto fail;
    if (opt->config_path) {
        if ((s = st_config_load(opt->config_path, &d->cfg))) goto fail;
    } else if ((s = default_config(opt, d->inv, &d->cfg))) {
        goto fail;
    }
    const struct st_deploy_config *cfg = d->cfg;

    const char *model_path = opt->model_path ? opt->model_path : cfg->model.path;
    if (model_path) {
        struct stat st;
        if (opt->model_path && stat(opt->model_path, &st) != 0) {   /* exit code 2, as for a config's model.path */
            s = st_error_set(ST_ERR_USAGE, "model '%s' does not exist", opt->model_path);
            st_error_hint("-m takes a GGUF file or a Hugging Face model directory (config.json + *.safetensors)");
            goto fail;
        }
        if (!opt->model_path && (s = st_deploy_check_model_path(cfg))) goto fail;
        if ((s = st_model_open(model_path, &d->model))) goto fail;
        if ((s = st_plan_model_from_model(d->model, &d->pm))) goto fail;
    } else if ((s = st_plan_model_from_preset(cfg->model.preset, cfg->model.quant, &d->pm))) {
        st_error_prefix("%s:%d:%d: model.preset", cfg->source, cfg->model.pos.line, cfg->model.pos.column);
        goto fail;
    }

    d->n_devs = cfg->n_devices;
    d->devs = st_calloc((size_t)d->n_devs, sizeof *d->devs, "plan devices");
    d->links = st_calloc((size_t)d->n_devs * (size_t)d->n_devs, sizeof *d->links, "plan links");
    if (!d->devs || !d->links) { s = ST_ERR_NOMEM; goto fail; }
    for (int i = 0; i < d->n_devs; i++) {
        if ((s = resolve_device(cfg, &cfg->devices[i], d->inv, &d->devs[i]))) goto fail;
        if (d->devs[i].is_cpu && opt->threads > 0) d->devs[i].info.threads = opt->threads;
    }
    if ((s = apply_profile(d, opt->profile_path, opt->profile_path != NULL))) goto fail;

    /* Links: P2P facts from the inventory for two real GPUs. */
    for (int a = 0; a < d->n_devs; a++) {
        for (int b = 0; b < d->n_devs; b++) {
            const struct st_p2p *p2p = NULL;
            const struct st_device_info *ia = &d->devs[a].info, *ib = &d->devs[b].info;
            if (ia->kind == ST_DEVICE_CUDA && ib->kind == ST_DEVICE_CUDA && d->inv->p2p) {
                p2p = &d->inv->p2p[(ia->index + 1) * d->inv->n_devices + (ib->index + 1)];
            }
            d->links[a * d->n_devs + b] = st_plan_link_default(&d->devs[a], &d->devs[b], p2p);
        }
    }

    st_plan_request_defaults(&d->req);
    d->req.context = opt->context > 0 ? opt->context : cfg->context;
    if (!opt->config_path && opt->context <= 0 && d->pm.n_ctx_train > 0) {
        d->req.context = ST_MIN(d->req.context, d->pm.n_ctx_train);  /* no longer than it was trained for */
    }
    d->req.batch = cfg->batch;
    d->req.prefill_chunk = opt->prefill_chunk > 0 ? opt->prefill_chunk : cfg->prefill_chunk;
    d->req.objective = cfg->placement.objective == ST_CONFIG_OBJECTIVE_THROUGHPUT ? ST_PLAN_THROUGHPUT
                                                                                  : ST_PLAN_LATENCY;
    if (cfg->placement.numerics) {
        /* fp16 activations only where the numerics profile (strata calibrate) says they are safe */
        if ((s = st_numerics_load(cfg->placement.numerics, d->pm.n_layer, &d->fp16_safe))) {
            st_error_prefix("%s:%d:%d: placement.numerics", cfg->source, cfg->placement.numerics_pos.line,
                            cfg->placement.numerics_pos.column);
            goto fail;
        }
        d->req.fp16_safe = d->fp16_safe;
        d->req.numerics_source = cfg->placement.numerics;
    }
    d->req.force_prec = cfg->placement.precision;
    d->req.force_attn = cfg->placement.attention;
    st_plan_device_init(&d->host_cpu, &d->inv->devices[0]);
    snprintf(d->host_cpu.select, sizeof d->host_cpu.select, "cpu");
    d->req.offload_cpu = &d->host_cpu;
    if (opt->plan_path) {
        if ((s = replay_plan(d, opt->plan_path, opt->context, &d->ranges))) goto fail;
    } else if (cfg->placement.strategy == ST_CONFIG_STRATEGY_MANUAL) {
        d->ranges = st_calloc((size_t)cfg->placement.n_manual, sizeof *d->ranges, "manual placement");
        if (!d->ranges) { s = ST_ERR_NOMEM; goto fail; }
        for (int i = 0; i < cfg->placement.n_manual; i++) {
            d->ranges[i].device = cfg->placement.manual[i].device;
            d->ranges[i].first = cfg->placement.manual[i].first_layer;
            d->ranges[i].last = cfg->placement.manual[i].last_layer;
        }
        d->req.manual = d->ranges;
        d->req.n_manual = cfg->placement.n_manual;
    }
    d->context_fixed = opt->context > 0 || opt->config_path != NULL;
    d->progress = opt->progress;
    *out = d;
    return ST_OK;

fail:
    st_deploy_free(d);
    return s;
}

st_status st_deploy_plan(st_deploy *d) {
    st_plan_free(d->plan);
    d->plan = NULL;
    st_status s = st_plan_make(&d->pm, d->devs, d->n_devs, d->links, &d->req, &d->plan);
    if (s && d->plan) st_error_prefix("%s", d->cfg->source);
    return s;
}

st_status st_deploy_open(const struct st_deploy_options *opt, st_deploy **out) {
    st_status s = st_deploy_load(opt, out);
    if (s) return s;
    s = st_deploy_plan(*out);
    if (s && !(*out)->plan) {
        st_deploy_free(*out);
        *out = NULL;
    }
    return s;
}

void st_deploy_free(st_deploy *d) {
    if (!d) return;
    st_plan_free(d->plan);
    free(d->ranges);
    free(d->fp16_safe);
    free(d->links);
    free(d->devs);
    st_plan_model_free(&d->pm);
    st_model_free(d->model);
    st_inventory_free(d->inv);
    st_config_free(d->cfg);
    free(d);
}

bool st_deploy_runnable(const st_deploy *d) {
    if (!d->plan || !d->plan->feasible || !d->model) return false;
    for (int i = 0; i < d->plan->n_stages; i++) {
        if (d->plan->devices[d->plan->stages[i].device].info.kind == ST_DEVICE_CATALOG) return false;
    }
    return true;
}

static st_link_type link_type(const struct st_deploy_config *cfg, const struct st_device_info *a,
                              const struct st_device_info *b) {
    if (a->kind == b->kind && a->index == b->index) return ST_LINK_T_LOCAL;
    if (a->kind != ST_DEVICE_CUDA || b->kind != ST_DEVICE_CUDA) return ST_LINK_T_HOST;
    switch (cfg->transport) {
    case ST_CONFIG_TRANSPORT_PEER: return ST_LINK_T_PEER;
    case ST_CONFIG_TRANSPORT_NCCL: return ST_LINK_T_NCCL;
    case ST_CONFIG_TRANSPORT_HOST: return ST_LINK_T_HOST;
    default: return ST_LINK_T_PEER;
    }
}

st_status st_deploy_engine(const st_deploy *d, st_engine **out) {
    *out = NULL;
    const st_plan *p = d->plan;
    if (!p || !p->feasible) return st_error_set(ST_ERR_CONFIG, "the deployment has no feasible plan");
    if (!d->model) {
        st_error_set(ST_ERR_CONFIG, "%s: model.preset '%s' describes shapes only: it can be planned, not run",
                     d->cfg->source, d->cfg->model.preset);
        return st_error_hint("give 'model: {path: FILE}' with a GGUF file or a Hugging Face directory");
    }
    struct st_engine_stage_desc *st = st_calloc((size_t)p->n_stages, sizeof *st, "engine stages");
    if (!st) return ST_ERR_NOMEM;
    st_status s = ST_OK;
    for (int i = 0; i < p->n_stages; i++) {
        const struct st_plan_stage *ps = &p->stages[i];
        const struct st_plan_device *pd = &p->devices[ps->device];
        if (pd->info.kind == ST_DEVICE_CATALOG) {
            s = st_error_set(ST_ERR_CONFIG, "%s: stage %d is on catalog device '%s', which is not on this machine",
                             d->cfg->source, i, pd->label);
            st_error_hint("catalog devices are for dry runs ('strata plan'); use a real selector "
                          "(cuda:N, cpu) to run, or 'emulate: %s' on a real GPU", pd->info.catalog);
            goto done;
        }
        st[i].ops = pd->info.kind == ST_DEVICE_CPU ? st_device_ops_cpu() : st_device_ops_cuda();
        if (!st[i].ops) {
            s = st_error_set(ST_ERR_NOT_BUILT, "stage %d is on %s, but this build has no CUDA backend", i, pd->select);
            st_error_hint("rebuild with the CUDA toolkit installed (cmake finds nvcc), or plan on 'cpu'");
            goto done;
        }
        st[i].info = pd->info;
        st[i].cfg.matmul_prec = ps->prec;
        st[i].cfg.attention = ps->attn;
        st[i].cfg.kv_dtype = ps->kv_dtype;
        st[i].cfg.n_threads = pd->is_cpu ? pd->info.threads : 0;
        /* The Maxwell path: a real cc 5.x card, or one emulating such a card. */
        st[i].cfg.maxwell_path = pd->info.kind == ST_DEVICE_CUDA && pd->info.caps.cc_major > 0 &&
                                 pd->info.caps.cc_major < 6;
        st[i].first_layer = ps->first;
        st[i].last_layer = ps->last;
        st[i].has_embedding = ps->has_embedding;
        st[i].has_output = ps->has_output;
        st[i].link_to_next = ST_LINK_T_AUTO;
        if (i + 1 < p->n_stages) {
            st[i].link_to_next = link_type(d->cfg, &pd->info, &p->devices[p->stages[i + 1].device].info);
        }
    }
    /* the plan's batch is the sequences held at once; with the throughput
     * objective, micro-batches keep every stage of a pipeline busy */
    const int64_t n_seq = p->batch > 0 ? p->batch : 1;
    const int n_micro = p->objective == ST_PLAN_THROUGHPUT && p->n_stages > 1 ? (int)ST_MIN(ST_MIN(p->n_stages, n_seq), 8) : 1;
    struct st_engine_params ep = {.n_ctx = p->context, .max_batch_tokens = p->prefill_chunk, .n_seq = n_seq,
                                  .n_micro = n_micro, .progress = d->progress ? st_cli_load_progress : NULL};
    s = st_engine_init(d->model, st, p->n_stages, &ep, out);
done:
    free(st);
    return s;
}

void st_deploy_sampler_params(const st_deploy *d, struct st_sampler_params *out) {
    const struct st_config_generation *g = &d->cfg->generation;
    st_sampler_params_default(out);
    out->temperature = g->temperature;
    out->top_k = g->top_k;
    out->top_p = g->top_p;
    out->min_p = g->min_p;
    out->repeat_penalty = g->repeat_penalty;
    out->frequency_penalty = g->frequency_penalty;
    out->presence_penalty = g->presence_penalty;
    out->penalty_last_n = g->repeat_last_n;
    out->seed = g->has_seed ? g->seed : (uint64_t)(st_time_s() * 1e9);
}

st_chat_kind st_deploy_chat_kind(const st_deploy *d) {
    st_chat_kind detected = d->model ? st_chat_detect(d->model->chat_template) : ST_CHAT_NONE;
    switch (d->cfg->generation.chat_template) {
    case ST_CONFIG_CHAT_NONE: return ST_CHAT_NONE;
    case ST_CONFIG_CHAT_CHATML:
        return detected >= ST_CHAT_CHATML && detected <= ST_CHAT_QWEN3 ? detected : ST_CHAT_CHATML;
    case ST_CONFIG_CHAT_LLAMA3:
        return detected == ST_CHAT_LLAMA31 ? detected : ST_CHAT_LLAMA3;
    default: return detected;
    }
}
