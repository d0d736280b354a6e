/* Deployment: config → devices → plan → engine. */
#include "orchestrator/deploy.h"
#include "orchestrator/cli.h"
#include "orchestrator/mpi.h"
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
        if (st_device_host_memory(&inv->devices[i])) continue;
        char sel[32];
        size_t n = strlen(text);
        snprintf(text + n, sizeof text - n, "  - %s\n", st_device_selector(&inv->devices[i], sel, sizeof sel));
        n_gpu++;
    }
    if (n_gpu == 0) strcat(text, "  - cpu\n");
    return st_config_parse(text, strlen(text), "(command line)", out);
}

/* The GPU a `cuda:N` or `cuda:GPU-...` entry names; *n_match counts the GPUs a
 * UUID prefix fits (more than one is ambiguous). The config's selector syntax
 * names CUDA devices (orchestrator/config.c): a new backend adds its own form. */
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
                                const st_inventory *inv, const char *where, struct st_plan_device *pd) {
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
            st_error_set(ST_ERR_CONFIG, "%s:%d:%d: devices: '%s' fits %d GPUs of %s", cfg->source,
                         cd->selector_pos.line, cd->selector_pos.column, cd->selector, n_match, where);
            return st_error_hint("write more of the UUID ('strata inventory' lists them) or use cuda:N");
        }
        if (!d) {
            int n_gpu = inv->n_devices - 1;
            st_error_set(ST_ERR_CONFIG, "%s:%d:%d: devices: '%s' is not on %s (%d GPU%s visible%s%s)",
                         cfg->source, cd->selector_pos.line, cd->selector_pos.column, cd->selector, where, n_gpu,
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
    if (cd->caps.weight_dtypes) info.caps.weight_dtypes = cd->caps.weight_dtypes;

    st_plan_device_init(pd, &info);
    snprintf(pd->select, sizeof pd->select, "%.63s", cd->selector);
    if (cd->name[0]) snprintf(pd->label, sizeof pd->label, "%s", cd->name);
    else if (cd->emulate[0]) snprintf(pd->label, sizeof pd->label, "%.47s as %.40s", cd->selector, cd->emulate);
    pd->max_memory_bytes = cd->max_memory_bytes;
    pd->reserve_bytes = cd->reserve_bytes;
    pd->force_prec = cd->precision != ST_CONFIG_AUTO ? cd->precision : cfg->placement.precision;
    pd->force_attn = cd->attention != ST_CONFIG_AUTO ? cd->attention : cfg->placement.attention;
    pd->force_kv = cd->kv_dtype != ST_CONFIG_AUTO ? cd->kv_dtype : cfg->placement.kv_dtype;
    pd->rank = cd->rank;
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
        if (d->devs[i].rank != st_mpi_rank()) continue;   /* another host: its rank applied its own profile */
        n += st_profile_apply(prof, &d->devs[i].info, 1);
    }
    /* another rank's inventory goes to rank 0 with this host's measured figures */
    if (st_mpi_rank() != 0) n += st_profile_apply(prof, d->inv->devices, d->inv->n_devices);
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
            (dev->force_attn >= 0 && dev->force_attn != (int)ps->attn) ||
            (dev->force_kv >= 0 && dev->force_kv != (int)ps->kv_dtype)) {
            s = st_error_set(ST_ERR_CONFIG, "%s: device '%s' holds stages with different precision, attention or KV "
                             "cache type, or the deployment forces another", path, sel);
            st_error_hint("plan again with 'strata plan -o FILE'");
            break;
        }
        dev->force_prec = (int)ps->prec;
        dev->force_attn = (int)ps->attn;
        dev->force_kv = (int)ps->kv_dtype;   /* the saved plan's cache type, q8_0 included */
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

/* What every rank tells rank 0 when the ranks load: its status and inventory. */
struct rank_load {
    int32_t status;
    int32_t n_devices;
    int32_t has_p2p;
    uint32_t info_bytes;         /* sizeof(struct st_device_info): every rank runs the same build */
    char version[160];
    char no_gpu_reason[256];
    char msg[4096];
};   /* then n_devices struct st_device_info, then n_devices^2 struct st_p2p when has_p2p */

static void build_version(char *buf, size_t cap) {
    snprintf(buf, cap, "%s (commit %s; %s)", st_version_string(), st_build_commit(), st_build_options());
}

/* Every rank's status and inventory at rank 0; rank 0 then knows the devices of every rank. */
static st_status gather_ranks(st_deploy *d, st_status local) {
    const int n = st_mpi_size();
    const st_inventory *inv = d ? d->inv : NULL;
    const int nd = inv ? inv->n_devices : 0;
    const bool p2p = inv && inv->p2p;
    size_t bytes = sizeof(struct rank_load) + (size_t)nd * sizeof(struct st_device_info) +
                   (p2p ? (size_t)nd * (size_t)nd * sizeof(struct st_p2p) : 0);
    struct rank_load *mine = st_calloc(1, bytes, "inventory for rank 0");
    if (!mine) return ST_ERR_NOMEM;   /* the others wait in the gather; mpirun ends them when this rank exits */
    mine->status = (int32_t)local;
    mine->n_devices = nd;
    mine->has_p2p = p2p;
    mine->info_bytes = (uint32_t)sizeof(struct st_device_info);
    build_version(mine->version, sizeof mine->version);
    if (inv) snprintf(mine->no_gpu_reason, sizeof mine->no_gpu_reason, "%s", inv->no_gpu_reason);
    if (local) snprintf(mine->msg, sizeof mine->msg, "%s", st_last_error());
    if (nd) memcpy(mine + 1, inv->devices, (size_t)nd * sizeof(struct st_device_info));
    if (p2p) memcpy((char *)(mine + 1) + (size_t)nd * sizeof(struct st_device_info), inv->p2p,
                    (size_t)nd * (size_t)nd * sizeof(struct st_p2p));
    void **all = NULL;
    size_t *sizes = NULL;
    st_status s = st_mpi_gather(mine, bytes, &all, &sizes);
    free(mine);
    if (s || st_mpi_rank() != 0) return s ? s : local;
    /* rank 0: its own failure first, then the first rank that failed */
    s = local;
    char version[160];
    build_version(version, sizeof version);
    for (int r = 1; r < n && !s; r++) {
        const struct rank_load *rl = all[r];
        if (sizes[r] < sizeof *rl) {
            s = st_error_set(ST_ERR_INTERNAL, "%s sent a %zu-byte inventory", st_mpi_where(r), sizes[r]);
        } else if (rl->status != ST_OK) {
            char msg[sizeof rl->msg];
            snprintf(msg, sizeof msg, "%s", rl->msg);
            s = st_error_set((st_status)rl->status, "%s: %s", st_mpi_where(r), msg);
        } else if (strcmp(rl->version, version) || rl->info_bytes != sizeof(struct st_device_info)) {
            s = st_error_set(ST_ERR_CONFIG, "%s runs strata %s, rank 0 runs %s", st_mpi_where(r), rl->version, version);
            st_error_hint("install the same strata build on every host (docs/multihost.md)");
        }
    }
    if (!s) {
        d->rank_inv = st_calloc((size_t)n, sizeof *d->rank_inv, "ranks' inventories");
        if (!d->rank_inv) s = ST_ERR_NOMEM;
    }
    for (int r = 1; r < n && !s; r++) {
        const struct rank_load *rl = all[r];
        const size_t need = sizeof *rl + (size_t)rl->n_devices * sizeof(struct st_device_info) +
                            (rl->has_p2p ? (size_t)rl->n_devices * (size_t)rl->n_devices * sizeof(struct st_p2p) : 0);
        st_inventory *ri = st_calloc(1, sizeof *ri, "a rank's inventory");
        if (!ri || sizes[r] != need || rl->n_devices < 1) {
            free(ri);
            s = ri ? st_error_set(ST_ERR_INTERNAL, "%s sent an inventory of %zu bytes, expected %zu", st_mpi_where(r),
                                  sizes[r], need)
                   : ST_ERR_NOMEM;
            break;
        }
        d->rank_inv[r] = ri;
        ri->n_devices = rl->n_devices;
        ri->devices = st_malloc((size_t)rl->n_devices * sizeof *ri->devices, "a rank's devices");
        if (rl->has_p2p) ri->p2p = st_malloc((size_t)rl->n_devices * (size_t)rl->n_devices * sizeof *ri->p2p, "P2P");
        if (!ri->devices || (rl->has_p2p && !ri->p2p)) { s = ST_ERR_NOMEM; break; }
        memcpy(ri->devices, rl + 1, (size_t)rl->n_devices * sizeof *ri->devices);
        if (ri->p2p) memcpy(ri->p2p, (const char *)(rl + 1) + (size_t)rl->n_devices * sizeof *ri->devices,
                            (size_t)rl->n_devices * (size_t)rl->n_devices * sizeof *ri->p2p);
        snprintf(ri->no_gpu_reason, sizeof ri->no_gpu_reason, "%s", rl->no_gpu_reason);
        snprintf(ri->host, sizeof ri->host, "%s", st_mpi_host(r));
    }
    for (int r = 0; r < n; r++) free(all[r]);
    free(all);
    free(sizes);
    return s;
}

/* Where a device (not in host memory) sits in an inventory: the entry of its kind and index; -1 when none. */
static int inv_position(const st_inventory *inv, const struct st_device_info *dev) {
    if (!inv || st_device_host_memory(dev) || dev->kind == ST_DEVICE_CATALOG) return -1;
    for (int i = 0; i < inv->n_devices; i++)
        if (inv->devices[i].kind == dev->kind && inv->devices[i].index == dev->index) return i;
    return -1;
}

/* The link between two devices: P2P facts of one rank's inventory, or the network between two ranks. */
static struct st_plan_link pair_link(const st_deploy *d, int a, int b) {
    const struct st_plan_device *da = &d->devs[a], *db = &d->devs[b];
    if (da->rank != db->rank) {
        double bw = d->cfg->network.set ? d->cfg->network.bandwidth_gbps : 0, lat = d->cfg->network.latency_us;
        if (d->net_bw_gbps && da->rank < d->n_ranks && db->rank < d->n_ranks) {
            bw = d->net_bw_gbps[da->rank * d->n_ranks + db->rank];
            lat = d->net_lat_us[da->rank * d->n_ranks + db->rank];
        }
        if (!(bw > 0)) {
            const struct st_plan_network_preset *np = st_plan_network_find(ST_PLAN_NETWORK_DEFAULT);
            bw = np->bandwidth_gbps;
            lat = np->latency_us;
        }
        return st_plan_link_network(da, db, bw, lat);
    }
    const st_inventory *inv = da->rank == 0 || !d->rank_inv ? d->inv : d->rank_inv[da->rank];
    const struct st_p2p *p2p = NULL;
    const int pa = inv_position(inv, &da->info), pb = inv_position(inv, &db->info);
    if (inv && inv->p2p && pa >= 0 && pb >= 0 && da->info.kind == db->info.kind) p2p = &inv->p2p[pa * inv->n_devices + pb];
    return st_plan_link_default(da, db, p2p);
}

/* Everything but the plan, in this process: config, model, this rank's devices. */
static st_status load_local(const struct st_deploy_options *opt, st_deploy *d) {
    st_status s = ST_OK;
    const int me = st_mpi_rank();
    if (!opt->config_path && !opt->model_path) {
        s = st_error_set(ST_ERR_USAGE, "no model: give -m MODEL or -c deploy.yaml");
        st_error_hint("e.g. 'strata generate -m models/tiny-kjv -p \"In the beginning\"'");
        return s;
    }
    if ((s = st_inventory_init(&d->inv))) return s;
    if (opt->config_path) {
        if ((s = st_config_load(opt->config_path, &d->cfg))) return s;
    } else if ((s = default_config(opt, d->inv, &d->cfg))) {
        return s;
    }
    const struct st_deploy_config *cfg = d->cfg;
    /* ranks: under mpirun every rank must exist; without it, only what-if (catalog) devices sit elsewhere */
    if ((s = st_config_check_ranks(cfg, st_mpi_launched() ? st_mpi_size() : 0))) return s;

    const char *model_path = opt->model_path ? opt->model_path : cfg->model.path;
    if (model_path) {
        struct stat st;
        if (opt->model_path && stat(opt->model_path, &st) != 0) {   /* exit code 2, as for a config's model.path */
            s = st_error_set(ST_ERR_USAGE, "model '%s' does not exist", opt->model_path);
            return st_error_hint("-m takes a GGUF file or a Hugging Face model directory (config.json + *.safetensors)");
        }
        if (!opt->model_path && (s = st_deploy_check_model_path(cfg))) return s;
        if ((s = st_model_open(model_path, &d->model))) return s;
        if ((s = st_plan_model_from_model(d->model, &d->pm))) return s;
    } else if ((s = st_plan_model_from_preset(cfg->model.preset, cfg->model.quant, &d->pm))) {
        return st_error_prefix("%s:%d:%d: model.preset", cfg->source, cfg->model.pos.line, cfg->model.pos.column);
    }

    d->n_devs = cfg->n_devices;
    d->devs = st_calloc((size_t)d->n_devs, sizeof *d->devs, "plan devices");
    d->links = st_calloc((size_t)d->n_devs * (size_t)d->n_devs, sizeof *d->links, "plan links");
    if (!d->devs || !d->links) return ST_ERR_NOMEM;
    const char *here = st_mpi_size() > 1 ? st_mpi_where(me) : "this machine";
    for (int i = 0; i < d->n_devs; i++) {
        const struct st_config_device *cd = &cfg->devices[i];
        d->devs[i].rank = cd->rank;
        if (cd->rank != me && cd->kind != ST_CONFIG_DEV_CATALOG) continue;   /* resolved by rank 0 after the gather */
        if ((s = resolve_device(cfg, cd, d->inv, here, &d->devs[i]))) return s;
        if (d->devs[i].is_cpu && opt->threads > 0) d->devs[i].info.threads = opt->threads;
    }
    return apply_profile(d, opt->profile_path, opt->profile_path != NULL);
}

/* Rank 0: the other ranks' devices from their inventories. */
static st_status resolve_remote(const struct st_deploy_options *opt, st_deploy *d) {
    const struct st_deploy_config *cfg = d->cfg;
    for (int i = 0; i < d->n_devs; i++) {
        const struct st_config_device *cd = &cfg->devices[i];
        if (cd->rank == 0 || cd->kind == ST_CONFIG_DEV_CATALOG) continue;
        st_status s = resolve_device(cfg, cd, d->rank_inv[cd->rank], st_mpi_where(cd->rank), &d->devs[i]);
        if (s) return s;
        if (d->devs[i].is_cpu && opt->threads > 0) d->devs[i].info.threads = opt->threads;
    }
    return ST_OK;
}

/* Rank 0: links, the request, a saved or manual placement. */
static st_status load_finish(const struct st_deploy_options *opt, st_deploy *d) {
    const struct st_deploy_config *cfg = d->cfg;
    st_status s;
    for (int a = 0; a < d->n_devs; a++)
        for (int b = 0; b < d->n_devs; b++) d->links[a * d->n_devs + b] = pair_link(d, a, b);
    bool multi = false;
    for (int i = 0; i < d->n_devs; i++) multi |= d->devs[i].rank != d->devs[0].rank;
    if (multi) {
        if (d->net_bw_gbps) snprintf(d->network, sizeof d->network, "measured between the ranks (--probe)");
        else if (cfg->network.set && cfg->network.preset[0])
            snprintf(d->network, sizeof d->network, "%s (the config's network:)", cfg->network.preset);
        else if (cfg->network.set) snprintf(d->network, sizeof d->network, "the config's network: figures");
        else snprintf(d->network, sizeof d->network, "%s (assumed: the config has no network:)", ST_PLAN_NETWORK_DEFAULT);
    }

    st_plan_request_defaults(&d->req);
    d->req.context = opt->context > 0 ? opt->context : cfg->context;
    if (!opt->config_path && opt->context <= 0 && d->pm.n_ctx_train > 0) {
        d->req.context = ST_MIN(d->req.context, d->pm.n_ctx_train);  /* no longer than it was trained for */
    }
    if (d->pm.n_ctx_train > 0 && d->req.context > d->pm.n_ctx_train)
        ST_WARN("a context of %lld tokens is beyond the %lld the model was trained for (%s): positions past it "
                "give text of unknown quality", (long long)d->req.context, (long long)d->pm.n_ctx_train,
                d->model->format == ST_MODEL_GGUF ? "GGUF context_length" : "config.json max_position_embeddings");
    d->req.batch = cfg->batch;
    d->req.prefill_chunk = opt->prefill_chunk > 0 ? opt->prefill_chunk : cfg->prefill_chunk;
    d->req.objective = cfg->placement.objective == ST_CONFIG_OBJECTIVE_THROUGHPUT ? ST_PLAN_THROUGHPUT
                                                                                  : ST_PLAN_LATENCY;
    if (cfg->placement.numerics) {
        /* fp16 activations only where the numerics profile (strata calibrate) says they are safe */
        if ((s = st_numerics_load(cfg->placement.numerics, d->pm.n_layer, &d->fp16_safe)))
            return st_error_prefix("%s:%d:%d: placement.numerics", cfg->source, cfg->placement.numerics_pos.line,
                                   cfg->placement.numerics_pos.column);
        d->req.fp16_safe = d->fp16_safe;
        d->req.numerics_source = cfg->placement.numerics;
    }
    d->req.force_prec = cfg->placement.precision;
    d->req.force_attn = cfg->placement.attention;
    d->req.force_kv = cfg->placement.kv_dtype;
    st_plan_device_init(&d->host_cpu, &d->inv->devices[0]);
    snprintf(d->host_cpu.select, sizeof d->host_cpu.select, "cpu");
    d->req.offload_cpu = &d->host_cpu;
    if (opt->plan_path) {
        if ((s = replay_plan(d, opt->plan_path, opt->context, &d->ranges))) return s;
    } else if (cfg->placement.strategy == ST_CONFIG_STRATEGY_MANUAL) {
        d->ranges = st_calloc((size_t)cfg->placement.n_manual, sizeof *d->ranges, "manual placement");
        if (!d->ranges) return ST_ERR_NOMEM;
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
    return ST_OK;
}

st_status st_deploy_load(const struct st_deploy_options *opt, st_deploy **out) {
    *out = NULL;
    const int n = st_mpi_size(), me = st_mpi_rank();
    st_status s = ST_OK;
    if (n > 1 && me == 0 && (s = st_mpi_tell_all(ST_MPI_MSG_LOAD, 0))) return s;
    st_deploy *d = st_calloc(1, sizeof *d, "deployment");
    if (!d) {
        if (n > 1) (void)st_mpi_agree(gather_ranks(NULL, ST_ERR_NOMEM));   /* the others wait for this rank's part */
        return ST_ERR_NOMEM;
    }
    d->n_ranks = n;
    s = load_local(opt, d);
    if (n > 1) {
        s = st_mpi_agree(gather_ranks(d, s));   /* rank 0's verdict on every rank's part, everywhere */
        if (!s && opt->probe_network) s = st_mpi_agree(st_mpi_probe_links(&d->net_lat_us, &d->net_bw_gbps));
        if (me != 0) {   /* the other ranks plan nothing: rank 0 sends the plan */
            if (s) { st_deploy_free(d); return s; }
            *out = d;
            return ST_OK;
        }
        if (!s) s = resolve_remote(opt, d);
    } else if (!s && opt->probe_network) {
        ST_WARN("--probe measures the network between ranks: without mpirun there is none to measure");
    }
    if (!s) s = load_finish(opt, d);
    if (s) {
        st_deploy_free(d);
        return s;
    }
    *out = d;
    return ST_OK;
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
    for (int r = 1; d->rank_inv && r < d->n_ranks; r++) st_inventory_free(d->rank_inv[r]);
    free(d->rank_inv);
    free(d->net_lat_us);
    free(d->net_bw_gbps);
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

/* Two stages on one device: LOCAL; on two devices of one GPU backend: the config's transport
 * (peer by default); otherwise through host memory. */
static st_link_type link_type(const struct st_deploy_config *cfg, const struct st_device_info *a,
                              const struct st_device_info *b) {
    if (a->kind == b->kind && a->index == b->index) return ST_LINK_T_LOCAL;
    if (a->kind != b->kind || st_device_host_memory(a)) return ST_LINK_T_HOST;
    switch (cfg->transport) {
    case ST_CONFIG_TRANSPORT_PEER: return ST_LINK_T_PEER;
    case ST_CONFIG_TRANSPORT_NCCL: return ST_LINK_T_NCCL;
    case ST_CONFIG_TRANSPORT_HOST: return ST_LINK_T_HOST;
    default: return ST_LINK_T_PEER;
    }
}

/* Rank 0: the plan to every rank, as the YAML a plan file holds. */
static st_status send_plan(const st_plan *p) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return st_error_set(ST_ERR_NOMEM, "plan for the other ranks");
    int32_t kind = ST_MPI_MSG_PLAN;
    fwrite(&kind, sizeof kind, 1, f);
    st_status s = st_plan_write_yaml(f, p);
    if (fclose(f) && !s) s = st_error_set(ST_ERR_NOMEM, "plan for the other ranks");
    for (int r = 1; r < st_mpi_size() && !s; r++) s = st_mpi_send(r, ST_MPI_TAG_CTRL, text, len);
    free(text);
    return s;
}

static st_status build_engine(const st_deploy *d, st_engine **out);

/* Between ranks: NCCL for two GPUs unless the config says host (MPI through host memory). */
static st_link_type cross_link_type(const struct st_deploy_config *cfg) {
    switch (cfg->transport) {
    case ST_CONFIG_TRANSPORT_NCCL: return ST_LINK_T_NCCL;
    case ST_CONFIG_TRANSPORT_HOST: return ST_LINK_T_MPI;
    default: return ST_LINK_T_AUTO;
    }
}

st_status st_deploy_engine(const st_deploy *d, st_engine **out) {
    *out = NULL;
    if (st_mpi_size() <= 1) return build_engine(d, out);
    /* every rank builds its part; then all agree, and only then join the links between them */
    st_status s = ST_OK;
    if (st_mpi_rank() == 0 && d->plan && d->plan->feasible && (s = send_plan(d->plan))) {
        st_mpi_abort(s);
        return s;
    }
    if (st_mpi_rank() == 0 && (!d->plan || !d->plan->feasible)) return build_engine(d, out);   /* nothing sent: says why */
    s = build_engine(d, out);
    if ((s = st_mpi_agree(s))) {
        st_engine_free(*out);
        *out = NULL;
        return s;
    }
    if ((s = st_engine_connect(*out))) {   /* the peer may wait in its half of a link: this ends every rank */
        st_mpi_abort(s);
        return s;
    }
    return ST_OK;
}

static st_status build_engine(const st_deploy *d, st_engine **out) {
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
        /* this rank's own devices as it resolved them (NUMA node, cpuset: what the plan file does not carry) */
        if (pd->rank == st_mpi_rank() && p->n_devices == d->n_devs && pd->info.kind != ST_DEVICE_CATALOG &&
            d->devs[ps->device].info.kind == pd->info.kind && d->devs[ps->device].info.index == pd->info.index)
            pd = &d->devs[ps->device];
        if (pd->info.kind == ST_DEVICE_CATALOG) {
            s = st_error_set(ST_ERR_CONFIG, "%s: stage %d is on catalog device '%s', which is not on this machine",
                             d->cfg->source, i, pd->label);
            st_error_hint("catalog devices are for dry runs ('strata plan'); use a real selector "
                          "(cuda:N, cpu) to run, or 'emulate: %s' on a real GPU", pd->info.catalog);
            goto done;
        }
        if ((s = st_device_ops_of(&pd->info, &st[i].ops)) != ST_OK) {
            st_error_prefix("stage %d is on %s", i, pd->select);
            goto done;
        }
        st[i].info = pd->info;
        st[i].cfg.matmul_prec = ps->prec;
        st[i].cfg.attention = ps->attn;
        st[i].cfg.kv_dtype = ps->kv_dtype;
        st[i].cfg.n_threads = pd->is_cpu ? pd->info.threads : 0;
        /* the backend picks its path from pd->info's capabilities (an emulated Maxwell card's included) */
        st[i].first_layer = ps->first;
        st[i].last_layer = ps->last;
        st[i].has_embedding = ps->has_embedding;
        st[i].has_output = ps->has_output;
        st[i].rank = pd->rank;
        st[i].link_to_next = ST_LINK_T_AUTO;
        if (i + 1 < p->n_stages) {
            const struct st_plan_device *nx = &p->devices[p->stages[i + 1].device];
            st[i].link_to_next = nx->rank != pd->rank ? cross_link_type(d->cfg)
                                                      : link_type(d->cfg, &pd->info, &nx->info);
        }
    }
    /* the plan's batch is the sequences held at once; with the throughput
     * objective, micro-batches keep every device of a pipeline busy: one per
     * GPU (stages that share a GPU take turns on it, and a split batch there
     * only reads its weights twice per token) and one per CPU stage (each has
     * its own worker threads) */
    const int64_t n_seq = p->batch > 0 ? p->batch : 1;
    int n_phys = 0;
    for (int i = 0; i < p->n_stages; i++) {
        const struct st_plan_device *pd = &p->devices[p->stages[i].device];
        bool seen = false;
        for (int j = 0; j < i && !seen; j++) {
            const struct st_plan_device *pj = &p->devices[p->stages[j].device];
            seen = !pd->is_cpu && pj->rank == pd->rank && !strcmp(pj->select, pd->select);
        }
        n_phys += !seen;
    }
    const int n_micro = p->objective == ST_PLAN_THROUGHPUT && n_phys > 1 ? (int)ST_MIN(ST_MIN(n_phys, n_seq), 8) : 1;
    struct st_engine_params ep = {.n_ctx = p->context, .max_batch_tokens = p->prefill_chunk, .n_seq = n_seq,
                                  .n_micro = n_micro, .rank = st_mpi_rank(),
                                  .progress = d->progress ? st_cli_load_progress : NULL};
    s = st_engine_init(d->model, st, p->n_stages, &ep, out);
done:
    free(st);
    return s;
}

int st_deploy_follow(const struct st_deploy_options *opt) {
    if (st_mpi_rank() == 0) return 0;
    st_deploy *d = NULL;
    for (;;) {
        void *msg = NULL;
        size_t len = 0;
        st_status s = st_mpi_recv_alloc(0, ST_MPI_TAG_CTRL, true, &msg, &len);
        if (s) {
            st_deploy_free(d);
            st_mpi_abort(s);
            return st_status_exit_code(s);
        }
        int32_t kind = 0, arg = 0;
        if (len >= sizeof kind) memcpy(&kind, msg, sizeof kind);
        if (len >= 2 * sizeof arg) memcpy(&arg, (char *)msg + sizeof kind, sizeof arg);
        if (kind == ST_MPI_MSG_STOP) {
            free(msg);
            st_deploy_free(d);
            return arg;
        }
        if (kind == ST_MPI_MSG_LOAD) {
            st_deploy_free(d);
            d = NULL;
            (void)st_deploy_load(opt, &d);   /* a failure travels to rank 0 in the gather */
        } else if (kind == ST_MPI_MSG_PLAN && !d) {
            st_error_set(ST_ERR_INTERNAL, "a plan came before the deployment loaded");
            (void)st_mpi_agree(ST_ERR_INTERNAL);
        } else if (kind == ST_MPI_MSG_PLAN) {
            st_plan_free(d->plan);
            d->plan = NULL;
            st_engine *e = NULL;
            s = st_plan_parse_yaml((char *)msg + sizeof kind, len - sizeof kind, "(the plan from rank 0)", &d->plan);
            if (s) {   /* every rank still joins the agreement, which carries this failure to rank 0 */
                (void)st_mpi_agree(s);
            } else if (!st_deploy_engine(d, &e)) {
                st_engine_follow(e);
            }
            st_engine_free(e);
        }
        /* anything else (QUIT of an engine that never started) needs nothing */
        free(msg);
    }
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
