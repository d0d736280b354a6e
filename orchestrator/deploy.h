/* orchestrator/deploy.h — from a deployment (a config file, or a model and the
 * devices of this machine) to a plan and a running engine.
 *
 *   config / -m MODEL ──► model desc or preset ──┐
 *   inventory + catalog + emulate + caps ────────┼──► planner ──► plan ──► engine stages
 *   probe profile (when present) ────────────────┘
 *
 * One mechanism serves `plan`, `generate`, `bench` and `calibrate`: each calls
 * st_deploy_open, then reads the plan or builds the engine. */
#ifndef STRATA_DEPLOY_H
#define STRATA_DEPLOY_H

#include "base/base.h"
#include "devices/device.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "orchestrator/config.h"
#include "orchestrator/engine.h"
#include "planner/planner.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the command line adds to (or uses instead of) a config file. */
struct st_deploy_options {
    const char *config_path;     /* -c FILE, or NULL */
    const char *model_path;      /* -m MODEL: overrides the config's model; without -c, the devices
                                    are every GPU of this machine, else the CPU */
    const char *plan_path;       /* --plan plan.yaml: run this plan instead of planning again */
    const char *profile_path;    /* probe profile; NULL = the default path when that file exists */
    bool cpu_only;               /* --cpu: without -c, use the CPU even when GPUs exist */
    int threads;                 /* --threads N for CPU devices (0 = config or all cores) */
    int64_t context;             /* --ctx N (0 = config or default) */
    int64_t prefill_chunk;       /* --batch N: prompt tokens per prefill step (0 = config or default) */
    bool progress;               /* a loading progress bar on stderr when it is a terminal */
    bool probe_network;          /* --probe under mpirun: measure the links between ranks instead of
                                    assuming the config's network: entry */
};

typedef struct st_deploy {
    struct st_deploy_config *cfg;        /* the config (a default one when none was given); owned */
    st_model *model;                     /* opened model, or NULL for a preset (dry run only) */
    struct st_plan_model pm;             /* the model as the planner sees it */
    st_inventory *inv;                   /* this machine (NULL when every device is a catalog card) */
    struct st_plan_device *devs;         /* (n_devs) in config order */
    int n_devs;
    struct st_plan_link *links;          /* (n_devs x n_devs) */
    struct st_plan_request req;
    struct st_plan_device host_cpu;      /* this machine's CPU, for "CPU offload" suggestions */
    st_plan *plan;                       /* feasible unless st_deploy_open said ST_ERR_CONFIG */
    char profile_used[512];              /* the probe profile applied, or "" */
    bool *fp16_safe;                     /* (n_layer) from placement.numerics, or NULL; req.fp16_safe points here */
    struct st_plan_range *ranges;        /* manual or replayed placement, or NULL; req.manual points here */
    bool context_fixed;                  /* the user chose the context (--ctx or a config file) */
    bool progress;                       /* st_deploy_options.progress */
    /* several ranks (mpirun, docs/multihost.md) */
    int n_ranks;                         /* ranks running (1 without mpirun) */
    st_inventory **rank_inv;             /* (n_ranks) rank 0: every rank's inventory ([0] is inv), else NULL */
    double *net_lat_us, *net_bw_gbps;    /* (n_ranks x n_ranks) measured by --probe on rank 0, or NULL */
    char network[96];                    /* how hops between ranks are costed: "10gbe (default)", "probe", ... */
} st_deploy;

/* Loads the config (or builds the default deployment), opens the model,
 * resolves every device (inventory, catalog, emulate, caps overrides, memory
 * caps), applies a probe profile and plans.
 *
 * Under mpirun with several ranks every rank runs the same command: rank 0
 * asks the others to load (each takes its own inventory and opens the model),
 * gathers their inventories (a rank's failure is rank 0's error, "rank R
 * (host): ..."), resolves each device on the inventory of its rank, plans
 * with the network between ranks, and st_deploy_engine sends the plan to
 * every rank. The other ranks run st_deploy_follow instead of the command. When nothing fits, the status is
 * ST_ERR_CONFIG and *out is still set, with plan->feasible == false, so the
 * caller can print the shortfall. Other errors leave *out NULL. */
st_status st_deploy_open(const struct st_deploy_options *opt, st_deploy **out);

/* st_deploy_open in two steps, for callers that learn something the plan needs
 * (the prompt's length) from the opened model: st_deploy_load does everything
 * but planning and fills d->req; the caller may change d->req (e.g. the
 * context) and then calls st_deploy_plan, as often as it likes. st_deploy_plan
 * replaces d->plan and returns what st_deploy_open would: ST_ERR_CONFIG with
 * an infeasible d->plan when nothing fits; other errors leave d->plan NULL. */
st_status st_deploy_load(const struct st_deploy_options *opt, st_deploy **out);
st_status st_deploy_plan(st_deploy *d);
void st_deploy_free(st_deploy *d);       /* accepts NULL */

/* A config's model.path that does not exist: ST_ERR_CONFIG at the key's
 * position (the same error, and exit code 2, with and without --check). ST_OK
 * for a preset or an existing path. */
st_status st_deploy_check_model_path(const struct st_deploy_config *cfg);

/* The other ranks' side of every command under mpirun: waits for rank 0's
 * requests (load, plan + engine, passes) until it stops, and returns the exit
 * code rank 0 ended with (errors are rank 0's to print). Rank 0: returns 0. */
int st_deploy_follow(const struct st_deploy_options *opt);

/* True when every stage runs on a device of this machine (or of the rank that owns it). */
bool st_deploy_runnable(const st_deploy *d);

/* Builds the engine stages from the plan (the backend of each device, the
 * stage precision, attention and KV dtype, the link kind from `transport`).
 * Catalog devices are dry-run only: ST_ERR_CONFIG naming the device. */
st_status st_deploy_engine(const st_deploy *d, st_engine **out);

/* The chat template to use: the config's generation.chat_template, refined by
 * the model's own template (a Qwen3 file under 'chatml' keeps its <think>
 * handling); ST_CHAT_NONE when neither names one. */
st_chat_kind st_deploy_chat_kind(const st_deploy *d);

/* Sampler settings from the config's generation block. */
struct st_sampler_params;
void st_deploy_sampler_params(const st_deploy *d, struct st_sampler_params *out);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_DEPLOY_H */
