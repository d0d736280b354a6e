/* strata serve — an OpenAI-compatible HTTP API over the planned devices,
 * many sequences in flight (orchestrator/server.h, docs/serve.md).
 *
 *   strata serve -m MODEL [--port 8080] [--parallel N]
 *   strata serve -c deploy.yaml --host 0.0.0.0 --api-key KEY */
#include "orchestrator/cli.h"
#include "orchestrator/config.h"
#include "orchestrator/deploy.h"
#include "orchestrator/mpi.h"
#include "orchestrator/server.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: strata serve [-m MODEL | -c deploy.yaml] [options]\n\n"
        "Serves the model over an OpenAI-compatible HTTP API: POST /v1/chat/completions and\n"
        "/v1/completions (streaming or not), GET /v1/models, /health and /metrics (Prometheus).\n"
        "Every running request decodes in one batched step; with several stages and the\n"
        "throughput objective, micro-batches keep every device busy. docs/serve.md has examples.\n\n"
        "model and devices:\n"
        "  -m, --model PATH       GGUF file or Hugging Face directory (overrides the config's model;\n"
        "                         without -m and -c: the bundled model, models/tiny-kjv)\n"
        "  -c, --config FILE      deployment config (devices, placement, batch, generation defaults)\n"
        "  --cpu                  without -c: run on the CPU even when GPUs are present\n"
        "  --threads N            CPU worker threads\n"
        "  --ctx N                context per sequence in tokens (default: the config's, else at most\n"
        "                         4096 and the trained context)\n"
        "  --parallel N           sequences decoded at once, each with its own KV cache (default: the\n"
        "                         config's batch when above 1, else 8); the plan sizes memory for it\n\n"
        "HTTP:\n"
        "  --host ADDR            address to listen on (default 127.0.0.1; 0.0.0.0 or :: for all)\n"
        "  --port N               port (default 8080; 0 picks a free one, see --port-file)\n"
        "  --port-file FILE       write the port listened on to FILE\n"
        "  --api-key KEY          require 'Authorization: Bearer KEY' (or set STRATA_API_KEY)\n"
        "  --alias NAME           model id in /v1/models and requests (default: the model's name)\n"
        "  --max-queue N          requests waiting for a free sequence before 429 (default 256)\n"
        "  --max-body BYTES       larger request bodies get 413 (default 4MiB; units as '1MiB')\n"
        "  --max-tokens N         new tokens when a request gives no max_tokens (default: the\n"
        "                         config's max_tokens, 256)\n"
        "  --shutdown-grace S     seconds running requests may finish after SIGINT/SIGTERM (default 10)\n"
        "  -q, --quiet            no line per request on stderr (a global flag)\n"
        "  -h, --help             this text\n\n"
        "exit codes: 0 stopped by SIGINT/SIGTERM, 1 runtime failure, 2 usage or configuration error\n");
}

int st_cmd_serve(int argc, char **argv) {
    struct st_deploy_options dep = {.progress = true};
    struct st_server_options so = {.host = "127.0.0.1", .port = 8080, .max_queue = 256, .max_body_bytes = 4u << 20,
                                   .shutdown_grace_s = 10.0};
    int64_t parallel = 0, max_tokens = -1, n;
    const char *alias = NULL;
    char bundled[4096];
    so.api_key = getenv("STRATA_API_KEY");
    if (so.api_key && !*so.api_key) so.api_key = NULL;
    static const char *const opts[] = {"-m", "--model", "-c", "--config", "--cpu", "--threads", "--ctx", "--parallel",
                                       "--host", "--port", "--port-file", "--api-key", "--alias", "--max-queue",
                                       "--max-body", "--max-tokens", "--shutdown-grace", "-h", "--help"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc, g = st_cli_global(a);
        if (g == ST_CLI_GLOBAL_VERSION) { st_cli_print_version(); return 0; }
        if (g) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--cpu")) { dep.cpu_only = true; continue; }
        bool known = false;
        for (size_t k = 0; k < ST_ARRAY_LEN(opts); k++) known |= !strcmp(a, opts[k]);
        if (!known) {
            const char *near = st_nearest_word(a, opts, ST_ARRAY_LEN(opts));
            if (near) return st_cli_usage_error("serve", "unknown option '%s' (did you mean '%s'?)", a, near);
            return st_cli_usage_error("serve", "unknown option '%s'", a);
        }
        if (!v) return st_cli_usage_error("serve", "option %s needs a value", a);
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) dep.model_path = v;
        else if (!strcmp(a, "-c") || !strcmp(a, "--config")) dep.config_path = v;
        else if (!strcmp(a, "--host")) so.host = v;
        else if (!strcmp(a, "--port-file")) so.port_file = v;
        else if (!strcmp(a, "--alias")) alias = v;
        else if (!strcmp(a, "--api-key")) {
            if (!*v) return st_cli_usage_error("serve", "--api-key wants a non-empty key");
            so.api_key = v;
        } else if (!strcmp(a, "--threads")) {
            if ((rc = st_cli_int("serve", a, v, 0, ST_CONFIG_MAX_THREADS, "a thread count", "0 = all cores", &n)) >= 0) return rc;
            dep.threads = (int)n;
        } else if (!strcmp(a, "--ctx")) {
            if ((rc = st_cli_int("serve", a, v, 1, ST_CONFIG_MAX_CONTEXT, "a token count", NULL, &dep.context)) >= 0) return rc;
        } else if (!strcmp(a, "--parallel")) {
            if ((rc = st_cli_int("serve", a, v, 1, 4096, "a number of sequences", NULL, &parallel)) >= 0) return rc;
        } else if (!strcmp(a, "--port")) {
            if ((rc = st_cli_int("serve", a, v, 0, 65535, "a port", "0 = any free port", &n)) >= 0) return rc;
            so.port = (int)n;
        } else if (!strcmp(a, "--max-queue")) {
            if ((rc = st_cli_int("serve", a, v, 0, 1 << 20, "a number of requests", NULL, &so.max_queue)) >= 0) return rc;
        } else if (!strcmp(a, "--max-tokens")) {
            if ((rc = st_cli_int("serve", a, v, 0, ST_CONFIG_MAX_CONTEXT, "a token count", "0 = until a stop", &max_tokens)) >= 0)
                return rc;
        } else if (!strcmp(a, "--max-body")) {
            uint64_t b;
            if (st_parse_size(v, &b) != ST_OK || b < 1024 || b > (1ull << 30))
                return st_cli_usage_error("serve", "--max-body wants a size from 1KiB to 1GiB, got '%s'", v);
            so.max_body_bytes = (size_t)b;
        } else if (!strcmp(a, "--shutdown-grace")) {
            double gr;
            if ((rc = st_cli_real("serve", a, v, 0, false, 3600, false, NULL, &gr)) >= 0) return rc;
            so.shutdown_grace_s = gr;
        }
        i++;
    }
    if (st_cli_json()) return st_cli_no_json("serve", "it answers HTTP requests in JSON; its log is text");
    so.quiet = st_log_get_level() < ST_LOG_WARN;   /* -q: no line per request */
    st_status ms = ST_OK;
    if (dep.model_path) ms = st_cli_model_exists(NULL, dep.model_path);
    else if (!dep.config_path && !(ms = st_cli_bundled_model(bundled, sizeof bundled))) dep.model_path = bundled;
    if (ms) return st_cli_report(ms);
    if (st_mpi_rank() > 0) return st_deploy_follow(&dep);   /* under mpirun: the HTTP server lives on rank 0 */

    st_deploy *d = NULL;
    st_engine *e = NULL;
    st_tokenizer_t *tok = NULL;
    st_status s = st_deploy_load(&dep, &d);
    if (s) goto done;
    if (parallel > 0) d->req.batch = parallel;
    else if (d->req.batch <= 1) d->req.batch = 8;
    if ((s = st_deploy_plan(d))) goto done;
    if (!d->model) {
        s = st_deploy_engine(d, &e);   /* says that a preset cannot run */
        goto done;
    }
    if (d->model->tok_source == ST_TOKSRC_NONE) {
        s = st_error_set(ST_ERR_UNSUPPORTED, "serve: %s has no tokenizer", d->model->path);
        st_error_hint("serve a model with a tokenizer (tokenizer.json beside the weights, or a GGUF with its vocabulary)");
        goto done;
    }
    if (st_log_get_level() >= ST_LOG_INFO) st_plan_print(stderr, d->plan, false);
    if ((s = st_tokenizer_from_model(d->model, &tok))) goto done;
    if ((s = st_deploy_engine(d, &e))) goto done;
    so.model_name = alias ? alias : d->pm.name;
    so.default_max_tokens = max_tokens >= 0 ? max_tokens : d->cfg->generation.max_tokens;
    s = st_server_run(d, e, tok, &so);
done:
    st_engine_free(e);
    st_tokenizer_free(tok);
    st_deploy_free(d);
    return s == ST_OK ? 0 : st_cli_report(s);
}
