/* strata plan — reads a deployment config (or a model and this machine's
 * devices), places layers, precision and attention per device, and prints,
 * writes or draws the plan. --check runs every check that needs no device. */
#include "orchestrator/cli.h"
#include "orchestrator/config.h"
#include "orchestrator/deploy.h"
#include "orchestrator/mpi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void plan_usage(FILE *f) {
    fprintf(f,
        "usage: strata plan -c FILE [--check] [--explain] [-o plan.yaml] [--json] [--svg FILE]\n"
        "       strata plan [-m MODEL] [--cpu] [--ctx N] [...]   (this machine's GPUs, else its CPU)\n\n"
        "Places the model's layers on the devices of a deployment config: which layers on which\n"
        "device, the precision and attention kernel of every stage, memory per device and the\n"
        "predicted prefill/decode speed. Catalog devices ({catalog: NAME}) plan for hardware you\n"
        "do not have; nothing touches a GPU.\n\n"
        "options:\n"
        "  -c, --config FILE    deployment config (YAML; every key is in docs/config.md)\n"
        "  -m, --model PATH     GGUF file or Hugging Face directory (overrides the config's model;\n"
        "                       without -m and -c: the bundled model, " ST_CLI_BUNDLED_MODEL ")\n"
        "  --cpu                without -c: plan on the CPU even when GPUs are present\n"
        "  --ctx N              context (KV cache tokens), 1..16777216, instead of the config's\n"
        "  --profile FILE       probe profile to use (default: the one 'strata inventory --probe' saved)\n"
        "  --probe              under mpirun: measure the network between the ranks' hosts (else the\n"
        "                       config's network: entry, or 10gbe; docs/multihost.md)\n"
        "  --check              every check that needs no device: the config, the model (headers),\n"
        "                       the numerics profile and manual stages against it; plans nothing\n"
        "  --explain            the reasons behind every choice (cut points, precision, attention, links)\n"
        "  -o, --output FILE    write the plan as YAML, to be fed back with 'strata generate --plan FILE'\n"
        "  --json               print the plan as JSON (the same as --format json)\n"
        "  --format table|json  how the plan is printed (default table)\n"
        "  --svg FILE           draw the plan (devices, layer ranges, memory bars with a colour key) as SVG\n"
        "  -h, --help           this text\n\n"
        "When nothing fits, the plan says by how much and which changes would fit, each found by\n"
        "planning again (shorter context, a quantized file, one more device, CPU offload).\n"
        "exit codes: 0 ok, 1 runtime failure, 2 invalid config, usage, or nothing fits\n");
}

/* A model path that is missing is a config error at the position of model.path. */
static st_status check_model_path(const struct st_deploy_config *cfg) {
    if (!cfg->model.path) return ST_OK;
    struct stat st;
    if (stat(cfg->model.path, &st) == 0) return ST_OK;
    st_error_set(ST_ERR_CONFIG, "%s:%d:%d: model.path: '%s' %s", cfg->source, cfg->model.pos.line,
                 cfg->model.pos.column, cfg->model.path,
                 errno == ENOENT ? "does not exist" : strerror(errno));
    return st_error_hint("a relative path is taken from the config file's directory; "
                         "for a dry run without the file use 'preset:' instead of 'path:'");
}

/* --check: every check `plan` makes that needs no device, each error at the
 * config position it is about. The model is opened (headers only) or the
 * preset looked up; the numerics profile is read and matched to the model's
 * layer count; manual stages must end at the model's last layer; a probe
 * profile given with --profile must load. *n_layer receives the layer count. */
static st_status check_offline(const struct st_deploy_config *cfg, const struct st_deploy_options *opt, int64_t *n_layer) {
    st_status s;
    struct st_plan_model pm;
    memset(&pm, 0, sizeof pm);
    const char *path = opt->model_path ? opt->model_path : cfg->model.path;
    if (path) {
        if (!opt->model_path && (s = check_model_path(cfg))) return s;
        st_model *m = NULL;
        if ((s = st_model_open(path, &m)) == ST_OK) s = st_plan_model_from_model(m, &pm);
        st_model_free(m);
        if (s) {
            if (!opt->model_path) st_error_prefix("%s:%d:%d: model.path", cfg->source, cfg->model.pos.line, cfg->model.pos.column);
            return s;
        }
    } else if ((s = st_plan_model_from_preset(cfg->model.preset, cfg->model.quant, &pm))) {
        return st_error_prefix("%s:%d:%d: model.preset", cfg->source, cfg->model.pos.line, cfg->model.pos.column);
    }
    *n_layer = pm.n_layer;
    st_plan_model_free(&pm);
    const struct st_config_placement *pl = &cfg->placement;
    if (pl->numerics) {
        bool *safe = NULL;
        s = st_numerics_load(pl->numerics, *n_layer, &safe);
        free(safe);
        if (s) return st_error_prefix("%s:%d:%d: placement.numerics", cfg->source, pl->numerics_pos.line, pl->numerics_pos.column);
    }
    for (int i = 0; i < pl->n_manual; i++) {
        const struct st_config_stage *st = &pl->manual[i];
        bool last = i + 1 == pl->n_manual;
        if (st->last_layer < *n_layer && (!last || st->last_layer == *n_layer - 1)) continue;
        st_error_set(ST_ERR_CONFIG, "%s:%d:%d: placement.manual[%d]: layers %lld-%lld %s; the model has %lld layers (0-%lld)",
                     cfg->source, st->pos.line, st->pos.column, i, (long long)st->first_layer, (long long)st->last_layer,
                     st->last_layer >= *n_layer ? "go past its last layer" : "end before its last layer",
                     (long long)*n_layer, (long long)*n_layer - 1);
        return st_error_hint("the stages cover every layer once, in order: the last one ends at layer %lld",
                             (long long)*n_layer - 1);
    }
    if (opt->profile_path) {
        st_profile *prof = NULL;
        if ((s = st_profile_load(opt->profile_path, &prof))) return s;
        st_profile_free(prof);
    }
    return ST_OK;
}

static void print_summary(const struct st_deploy_config *cfg, const char *model_path, int64_t n_layer) {
    printf("%s: ok — %d device%s (", cfg->source, cfg->n_devices, cfg->n_devices == 1 ? "" : "s");
    for (int i = 0; i < cfg->n_devices; i++) {
        const struct st_config_device *d = &cfg->devices[i];
        printf("%s%s", i ? ", " : "", st_config_device_label(d));
        if (d->name[0]) printf("=%s", d->selector);
        if (d->emulate[0]) printf(" as %s", d->emulate);
    }
    printf("), model ");
    if (model_path) printf("%s", model_path);
    else printf("preset %s%s%s", cfg->model.preset, cfg->model.quant[0] ? " " : "", cfg->model.quant);
    printf(" (%lld layers)", (long long)n_layer);
    printf(", placement %s", st_config_strategy_name(cfg->placement.strategy));
    if (cfg->placement.strategy == ST_CONFIG_STRATEGY_MANUAL) {
        printf(" (%d stage%s)", cfg->placement.n_manual, cfg->placement.n_manual == 1 ? "" : "s");
    }
    printf(", objective %s, context %lld, batch %lld\n", st_config_objective_name(cfg->placement.objective),
           (long long)cfg->context, (long long)cfg->batch);
}

static st_status write_file(const char *path, const st_plan *p, st_status (*writer)(FILE *, const st_plan *)) {
    FILE *f = fopen(path, "w");
    if (!f) {
        st_error_set(ST_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        return st_error_hint("check that the directory exists and is writable");
    }
    st_status s = writer(f, p);
    if (fclose(f) != 0 && s == ST_OK) s = st_error_set(ST_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return s;
}

static int plan_run(const struct st_deploy_options *opt, bool explain, const char *output, const char *format,
                    const char *svg) {
    st_deploy *d = NULL;
    st_status s = st_deploy_open(opt, &d);
    if (!d) return st_cli_report(s);
    char saved[4096];
    /* The shortfall and its suggestions are printed with the plan; the error line only says so. */
    snprintf(saved, sizeof saved, "%s: %s does not fit these devices; the plan above says by how much and what would "
             "fit", d->cfg->source, d->plan->model.name);
    bool json = format && !strcmp(format, "json");
    if (json) st_plan_write_json(stdout, d->plan);
    else st_plan_print(stdout, d->plan, explain);
    if (!json && d->profile_used[0]) printf("performance figures measured by the probe: %s\n", d->profile_used);
    if (!json && d->network[0]) printf("network between ranks: %s\n", d->network);
    st_status w = ST_OK;
    if (output && !d->plan->feasible)
        ST_WARN("plan: -o %s not written: a plan that does not fit cannot be run", output);
    if (output && d->plan->feasible && !(w = write_file(output, d->plan, st_plan_write_yaml))) st_cli_wrote(output);
    if (!w && svg && !(w = write_file(svg, d->plan, st_plan_write_svg))) st_cli_wrote(svg);
    st_deploy_free(d);
    fflush(stdout);   /* the plan first, then the error line, also through a pipe */
    if (w) return st_cli_report(w);
    if (s) {
        st_error_set(s, "%s", saved);
        return st_cli_report(s);
    }
    return 0;
}

int st_cmd_plan(int argc, char **argv) {
    const char *config = NULL, *output = NULL, *svg = NULL, *format = NULL;
    bool check = false, explain = false;
    struct st_deploy_options opt = {0};
    char bundled[4096];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        int rc, g = st_cli_global(a);
        if (g == ST_CLI_GLOBAL_VERSION) { st_cli_print_version(); return 0; }
        if (g) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            plan_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (!has_value) return st_cli_usage_error("plan", "%s needs a file name", a);
            config = argv[++i];
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!has_value) return st_cli_usage_error("plan", "%s needs a model path", a);
            opt.model_path = argv[++i];
        } else if (!strcmp(a, "--cpu")) {
            opt.cpu_only = true;
        } else if (!strcmp(a, "--ctx")) {
            if ((rc = st_cli_int("plan", a, has_value ? argv[i + 1] : NULL, 1, ST_CONFIG_MAX_CONTEXT, "a token count",
                                 NULL, &opt.context)) >= 0)
                return rc;
            i++;
        } else if (!strcmp(a, "--profile")) {
            if (!has_value) return st_cli_usage_error("plan", "--profile needs a file name");
            opt.profile_path = argv[++i];
        } else if (!strcmp(a, "--check")) {
            check = true;
        } else if (!strcmp(a, "--probe")) {
            opt.probe_network = true;
        } else if (!strcmp(a, "--explain")) {
            explain = true;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!has_value) return st_cli_usage_error("plan", "%s needs a file name", a);
            output = argv[++i];
        } else if (!strcmp(a, "--format")) {
            if (!has_value) return st_cli_usage_error("plan", "--format needs table or json");
            format = argv[++i];
            if (strcmp(format, "table") && strcmp(format, "json")) {
                return st_cli_usage_error("plan", "unknown --format '%s' (table or json)", format);
            }
        } else if (!strcmp(a, "--svg")) {
            if (!has_value) return st_cli_usage_error("plan", "--svg needs a file name");
            svg = argv[++i];
        } else {
            return st_cli_usage_error("plan", "unknown option '%s'", a);
        }
    }
    if (st_cli_json()) {
        if (format && strcmp(format, "json")) return st_cli_usage_error("plan", "--json and --format %s disagree", format);
        format = "json";
    }
    if (check && (explain || output || svg || format)) {
        return st_cli_usage_error("plan", "--check validates only; --explain, -o, --json and --svg need a plan");
    }
    st_status ms = ST_OK;
    if (opt.model_path) ms = st_cli_model_exists(NULL, opt.model_path);
    else if (!config && !check && !(ms = st_cli_bundled_model(bundled, sizeof bundled))) opt.model_path = bundled;
    if (ms) return st_cli_report(ms);
    if (!check) {
        opt.config_path = config;
        if (st_mpi_rank() > 0) return st_deploy_follow(&opt);   /* under mpirun: rank 0 plans and prints */
        return plan_run(&opt, explain, output, format, svg);
    }
    if (!config) return st_cli_usage_error("plan", "--check needs -c FILE");

    struct st_deploy_config *cfg = NULL;
    int64_t n_layer = 0;
    st_status s = st_config_load(config, &cfg);
    if (s == ST_OK) s = check_offline(cfg, &opt, &n_layer);
    if (s != ST_OK) {
        st_config_free(cfg);
        return st_cli_report(s);
    }
    print_summary(cfg, opt.model_path ? opt.model_path : cfg->model.path, n_layer);
    st_config_free(cfg);
    return 0;
}
