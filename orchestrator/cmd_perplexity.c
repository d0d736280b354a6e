/* strata perplexity — held-out perplexity of a model on a text file, with the
 * recipe tools/train_tiny uses for transformers: the whole file encoded as one
 * string (no BOS/EOS, no special-token parsing), cut into non-overlapping
 * windows of W tokens from the first id (the tail dropped), each window scored
 * on its own at positions 1..W-1; perplexity = exp(mean NLL). */
#include "model/tokenizer.h"
#include "orchestrator/cli.h"
#include "orchestrator/deploy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: strata perplexity [-m MODEL | -c deploy.yaml] -f FILE [--window N] [--max-windows N] [--json]\n\n"
        "Perplexity of the model on a text file: the file is encoded as one string (no BOS/EOS, no\n"
        "special tokens), cut into non-overlapping windows of N tokens, each scored on its own at\n"
        "positions 1..N-1 in fp32 with double-precision sums; perplexity = exp(mean NLL).\n\n"
        "options:\n"
        "  -m, --model PATH     GGUF file or Hugging Face directory (default without -c: the bundled\n"
        "                       model, " ST_CLI_BUNDLED_MODEL ")\n"
        "  -c, --config FILE    deployment config (devices, precision); -m overrides its model\n"
        "  -f, --file FILE      UTF-8 text to score\n"
        "  --window N           tokens per window, 2..16777216 (default 512)\n"
        "  --max-windows N      score only the first N windows (default 0 = all)\n"
        "  --cpu                without -c: run on the CPU even when GPUs are present\n"
        "  --threads N          CPU worker threads, 0..4096 (0 = all cores)\n"
        "  --json               one JSON object instead of text\n"
        "  -h, --help           this text\n");
}

/* NLL of ids[1..n-1] given the logits rows 0..n-2 (each n_vocab floats). */
static double window_nll(const float *logits, const int32_t *ids, int64_t n, int64_t n_vocab) {
    double sum = 0.0;
    for (int64_t t = 0; t + 1 < n; t++) {
        const float *row = logits + t * n_vocab;
        float mx = row[0];
        for (int64_t v = 1; v < n_vocab; v++) mx = row[v] > mx ? row[v] : mx;
        double z = 0.0;
        for (int64_t v = 0; v < n_vocab; v++) z += exp((double)row[v] - mx);
        sum += log(z) + mx - row[ids[t + 1]];
    }
    return sum;
}

int st_cmd_perplexity(int argc, char **argv) {
    struct st_deploy_options opt = {0};
    const char *file = NULL;
    char bundled[4096];
    int64_t window = 512, max_windows = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        int rc, g = st_cli_global(a);
        if (g == ST_CLI_GLOBAL_VERSION) { st_cli_print_version(); return 0; }
        if (g) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        bool value_opt = !strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "-c") || !strcmp(a, "--config") ||
                         !strcmp(a, "-f") || !strcmp(a, "--file");
        if (value_opt && !v) return st_cli_usage_error("perplexity", "%s needs a value", a);
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) opt.model_path = argv[++i];
        else if (!strcmp(a, "-c") || !strcmp(a, "--config")) opt.config_path = argv[++i];
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) file = argv[++i];
        else if (!strcmp(a, "--window")) {
            if ((rc = st_cli_int("perplexity", a, v, 2, ST_CONFIG_MAX_CONTEXT, "a token count", NULL, &window)) >= 0) return rc;
            i++;
        } else if (!strcmp(a, "--max-windows")) {
            if ((rc = st_cli_int("perplexity", a, v, 0, INT64_MAX, "a count", "0 = all", &max_windows)) >= 0) return rc;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if ((rc = st_cli_int("perplexity", a, v, 0, 4096, "a thread count", "0 = all cores", &n)) >= 0) return rc;
            opt.threads = (int)n;
            i++;
        }
        else if (!strcmp(a, "--cpu")) opt.cpu_only = true;
        else return st_cli_usage_error("perplexity", "unknown option '%s'", a);
    }
    bool json = st_cli_json();
    if (!file) return st_cli_usage_error("perplexity", "no text file given (-f FILE)");
    st_status ms = ST_OK;
    if (opt.model_path) ms = st_cli_model_exists(NULL, opt.model_path);
    else if (!opt.config_path && !(ms = st_cli_bundled_model(bundled, sizeof bundled))) opt.model_path = bundled;
    if (ms) return st_cli_report(ms);
    opt.context = window;

    st_deploy *d = NULL;
    st_engine *e = NULL;
    st_tokenizer_t *tok = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    size_t len = 0;
    int64_t n_ids = 0, cap = 0;
    st_status s = st_deploy_open(&opt, &d);
    if (s) goto done;
    if (!st_deploy_runnable(d)) {
        s = st_deploy_engine(d, &e);   /* says why: a preset has no weights, a catalog device is not here */
        goto done;
    }
    if ((s = st_read_file(file, &text, &len))) goto done;
    if ((s = st_tokenizer_from_model(d->model, &tok))) goto done;
    if ((s = st_tokenizer_encode_alloc(tok, text, len, 0, &ids, &n_ids, &cap))) goto done;
    int64_t n_windows = n_ids / window;
    if (max_windows > 0 && max_windows < n_windows) n_windows = max_windows;
    if (n_windows == 0) {
        s = st_error_set(ST_ERR_USAGE, "%s: %lld tokens, fewer than one window of %lld", file,
                         (long long)n_ids, (long long)window);
        st_error_hint("use a longer text or a smaller --window");
        goto done;
    }
    if ((s = st_deploy_engine(d, &e))) goto done;
    int64_t n_vocab = st_engine_n_vocab(e);
    logits = st_malloc((size_t)window * (size_t)n_vocab * sizeof(float), "perplexity logits");
    if (!logits) { s = ST_ERR_NOMEM; goto done; }
    double nll = 0.0, t0 = st_time_s();
    for (int64_t w = 0; w < n_windows; w++) {
        st_engine_reset(e);
        if ((s = st_engine_prefill(e, ids + w * window, window, logits, true))) goto done;
        nll += window_nll(logits, ids + w * window, window, n_vocab);
    }
    double secs = st_time_s() - t0;
    int64_t scored = n_windows * (window - 1);
    double ppl = exp(nll / (double)scored);
    if (json) {
        printf("{\"perplexity\": %.6f, \"mean_nll\": %.8f, \"scored_tokens\": %lld, \"windows\": %lld, "
               "\"window\": %lld, \"file_tokens\": %lld, \"seconds\": %.3f}\n", ppl, nll / (double)scored,
               (long long)scored, (long long)n_windows, (long long)window, (long long)n_ids, secs);
    } else {
        printf("perplexity %.4f (mean NLL %.6f) over %lld tokens in %lld windows of %lld (%lld tokens in %s); "
               "%.1f s, %.0f tok/s\n", ppl, nll / (double)scored, (long long)scored, (long long)n_windows,
               (long long)window, (long long)n_ids, file, secs, (double)(n_windows * window) / secs);
    }
done:
    free(logits);
    free(ids);
    free(text);
    st_tokenizer_free(tok);
    st_engine_free(e);
    st_deploy_free(d);
    return s ? st_cli_report(s) : 0;
}
