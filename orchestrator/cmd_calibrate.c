/* strata calibrate — the numerics profile: for every layer, whether running
 * its matmul inputs (and its KV cache) in fp16 is safe. docs/numerics.md.
 *
 * Two passes of the CPU engine (fp32 everywhere) over the calibration tokens,
 * observed through the engine's tap (orchestrator/engine.h), so the block
 * logic is the engine's own:
 *   1. fp32: the largest |x| entering each matmul, the values beyond fp16's
 *      range, and the residual stream entering every layer (and leaving the
 *      last), kept for pass 2.
 *   2. fp16, every layer in isolation: at each layer's entry the residual is
 *      reset to its pass-1 value, then the layer's matmul inputs and K/V are
 *      rounded to fp16 (st_f32_to_f16, round to nearest even; overflow gives
 *      inf); at its exit the change of the layer's update against pass 1 is
 *      measured. One pass measures every layer, each as if it alone ran in fp16. */
#include "model/tokenizer.h"
#include "orchestrator/cli.h"
#include "orchestrator/config.h"
#include "orchestrator/deploy.h"
#include "orchestrator/engine.h"
#include "planner/planner.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_TOKENS 512
#define DEFAULT_MAX_ABS (ST_FP16_MAX / 8.0)   /* 3 bits of headroom below fp16's largest value */
#define DEFAULT_MAX_ERROR 1e-3                /* relative error of a layer's update (docs/numerics.md) */
#define MAX_CHUNK 512

/* Built-in calibration text: prose, code, numbers, tables and several scripts,
 * so that typical activation ranges show up without a file. */
static const char builtin_text[] =
    "The committee met on Tuesday, 14 March 2023, to review the quarterly figures. Revenue rose 12.5% to "
    "$4.87 million, while operating costs fell from 3,120,000 to 2,964,500 euros; the board approved a "
    "dividend of 0.42 per share. Several members asked why the warehouse in Rotterdam had been closed, and "
    "the chair replied that shipping volumes no longer justified it.\n\n"
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; and "
    "darkness was upon the face of the deep.\n\n"
    "def fibonacci(n: int) -> list[int]:\n"
    "    \"\"\"Return the first n Fibonacci numbers.\"\"\"\n"
    "    seq = [0, 1]\n"
    "    while len(seq) < n:\n"
    "        seq.append(seq[-1] + seq[-2])\n"
    "    return seq[:n]\n\n"
    "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; if (sum > LIMIT) break; }\n\n"
    "| city | population | area (km^2) |\n|---|---:|---:|\n| Tokyo | 13,960,000 | 2,194 |\n"
    "| Lagos | 15,388,000 | 1,171 |\n| Lima | 10,719,000 | 2,672 |\n\n"
    "Q: What is the derivative of x^3 * sin(x)? A: 3x^2 sin(x) + x^3 cos(x).\n"
    "Die Sonne geht im Osten auf und im Westen unter. Le chat dort sur le canapé depuis ce matin. "
    "El tren sale a las 7:45 desde la estación central.\n"
    "今天天气很好，我们去公园散步吧。東京は日本の首都です。서울은 한국의 수도입니다. "
    "Москва — столица России. Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.\n\n"
    "<html><body><h1>Release notes</h1><ul><li>Fixed a crash when the config file is empty.</li>"
    "<li>Faster startup (about 30 ms instead of 210 ms).</li></ul></body></html>\n"
    "{\"id\": 9137, \"name\": \"sensor-7\", \"values\": [0.001, -273.15, 1e6, 42], \"ok\": true}\n\n"
    "She had always thought the lighthouse keeper was lonely, but when she finally climbed the spiral stairs "
    "she found him surrounded by radios, maps and a cat named Ptolemy, listening to ships talk to each other "
    "across the dark water. \"They never stop,\" he said. \"Not even at three in the morning.\"\n";

static void usage(FILE *f) {
    fprintf(f,
        "usage: strata calibrate [-m MODEL | -c deploy.yaml] [-f TEXT_FILE | --ids FILE] [--tokens N]\n"
        "                        [-o profile.yaml] [--json]\n\n"
        "Measures, layer by layer, whether fp16 activations are safe: runs the model on the CPU in fp32\n"
        "over calibration text, records the largest |x| entering each matmul and the share beyond fp16's\n"
        "range (65504), and the relative error of each layer's update when its matmul inputs and K/V are\n"
        "rounded to fp16. A layer is fp16-safe when max |x| <= --max-abs and the error <= --max-error.\n"
        "Give the profile to the planner with 'placement: {numerics: FILE}' (docs/numerics.md).\n\n"
        "options:\n"
        "  -m, --model PATH     GGUF file or Hugging Face directory (default without -c: the bundled\n"
        "                       model, " ST_CLI_BUNDLED_MODEL ")\n"
        "  -c, --config FILE    deployment config: calibrate its model (always on the CPU)\n"
        "  -f, --file FILE      UTF-8 calibration text (default: a built-in mix of prose, code, numbers\n"
        "                       and scripts)\n"
        "  --ids FILE           token ids instead of text (integers separated by spaces, commas or\n"
        "                       newlines), for models without a tokenizer\n"
        "  --tokens N           use at most N tokens, 1..1048576 (default %d)\n"
        "  -o, --output FILE    write the profile there and print a table; default: the YAML to stdout\n"
        "  --json               print the profile as JSON (with -o too: the file stays YAML)\n"
        "  --max-abs X          largest safe |x| entering a matmul (default %.1f = 65504 / 8)\n"
        "  --max-error E        largest safe relative error of a layer's update (default %g)\n"
        "  --threads N          CPU worker threads, 0..4096 (0 = all cores)\n"
        "  -h, --help           this text\n",
        DEFAULT_TOKENS, DEFAULT_MAX_ABS, DEFAULT_MAX_ERROR);
}

/* ---- measurement ------------------------------------------------------------------- */

enum { IN_QKV = 0, IN_O, IN_GATE_UP, IN_DOWN, N_INPUTS };
static const char *const input_names[N_INPUTS] = {"qkv", "o", "gate_up", "down"};

struct layer_acc {
    double max_abs[N_INPUTS];
    double n_above, n_values;    /* matmul input values beyond fp16's range, and all of them */
    double err2, upd2;           /* pass 2: sum (y16 - y32)^2, sum (y32 - x)^2 */
    bool nonfinite;              /* pass 2 produced inf/NaN */
};

struct calib {
    int64_t n_layer, n_embd, n_tok;
    int pass;                    /* 1: fp32 statistics and snapshots; 2: fp16 rounding per layer */
    float *snap;                 /* (n_layer + 1, n_tok, n_embd): residual entering layer l; [n_layer] leaves */
    struct layer_acc *acc;       /* (n_layer) */
};

static int input_of(enum st_layer_role r) {
    switch (r) {
    case ST_T_WQ: return IN_QKV;
    case ST_T_WO: return IN_O;
    case ST_T_W_GATE: return IN_GATE_UP;
    case ST_T_W_DOWN: return IN_DOWN;
    default: return -1;       /* k, v, up: the same buffer as q or gate, already seen */
    }
}

static void round_f16(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = st_f16_to_f32(st_f32_to_f16(x[i]));
}

static float *snap_rows(struct calib *c, int64_t l, int64_t pos0) {
    return c->snap + ((size_t)l * (size_t)c->n_tok + (size_t)pos0) * (size_t)c->n_embd;
}

static st_status tap(void *user, const struct st_engine_tap *t) {
    struct calib *c = user;
    struct layer_acc *a = &c->acc[t->layer];
    const int64_t n = t->n_tok * t->width;
    if (c->pass == 1) {
        switch (t->point) {
        case ST_TAP_LAYER_IN:
            memcpy(snap_rows(c, t->layer, t->pos0), t->x, (size_t)n * sizeof(float));
            break;
        case ST_TAP_LAYER_OUT:
            if (t->layer == c->n_layer - 1) memcpy(snap_rows(c, c->n_layer, t->pos0), t->x, (size_t)n * sizeof(float));
            break;
        case ST_TAP_MATMUL_IN: {
            int k = input_of(t->role);
            if (k < 0) break;
            double mx = a->max_abs[k];
            int64_t above = 0;
            for (int64_t i = 0; i < n; i++) {
                double v = fabs((double)t->x[i]);
                if (!(v <= mx)) mx = v;          /* NaN propagates */
                above += v > ST_FP16_MAX;
            }
            a->max_abs[k] = mx;
            a->n_above += (double)above;
            a->n_values += (double)n;
            break;
        }
        case ST_TAP_KV_IN:
            break;
        }
        return ST_OK;
    }
    switch (t->point) {
    case ST_TAP_LAYER_IN:      /* every layer starts from its exact fp32 input */
        memcpy(t->x, snap_rows(c, t->layer, t->pos0), (size_t)n * sizeof(float));
        break;
    case ST_TAP_MATMUL_IN:
        round_f16(t->x, n);
        break;
    case ST_TAP_KV_IN:
        round_f16(t->x, n);
        round_f16(t->x2, n);
        break;
    case ST_TAP_LAYER_OUT: {
        const float *in = snap_rows(c, t->layer, t->pos0), *out = snap_rows(c, t->layer + 1, t->pos0);
        double e2 = 0, u2 = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = (double)t->x[i] - (double)out[i], u = (double)out[i] - (double)in[i];
            e2 += d * d;
            u2 += u * u;
        }
        if (!isfinite(e2)) a->nonfinite = true;
        else a->err2 += e2;
        a->upd2 += u2;
        break;
    }
    }
    return ST_OK;
}

/* ---- input ------------------------------------------------------------------------- */

static st_status read_ids(const char *path, int32_t **ids, int64_t *n_ids, int64_t n_vocab) {
    char *text = NULL;
    size_t len = 0;
    st_status s = st_read_file(path, &text, &len);
    if (s != ST_OK) return s;
    int64_t n = 0, cap = 256, line = 1;
    int32_t *v = st_malloc((size_t)cap * sizeof *v, "calibration ids");
    if (!v) { free(text); return ST_ERR_NOMEM; }
    for (char *p = text; *p;) {
        if (*p == '\n') { line++; p++; continue; }
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == ',') { p++; continue; }
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < 0 || x >= n_vocab) {
            char tok[24];
            size_t k = 0;
            while (p[k] && p[k] != ' ' && p[k] != ',' && p[k] != '\n' && k + 1 < sizeof tok) { tok[k] = p[k]; k++; }
            tok[k] = 0;
            s = st_error_set(ST_ERR_USAGE, "%s:%lld: '%s' is not a token id in [0, %lld)", path, (long long)line, tok,
                             (long long)n_vocab);
            st_error_hint("write the ids as 'strata tokenize' prints them: integers separated by spaces or commas");
            free(v);
            free(text);
            return s;
        }
        if (n == cap) {
            cap *= 2;
            int32_t *w = realloc(v, (size_t)cap * sizeof *w);
            if (!w) { free(v); free(text); return st_error_set(ST_ERR_NOMEM, "out of memory reading %s", path); }
            v = w;
        }
        v[n++] = (int32_t)x;
        p = end;
    }
    free(text);
    *ids = v;
    *n_ids = n;
    return ST_OK;
}

/* ---- output ------------------------------------------------------------------------ */

/* The profile as one JSON object (the YAML's keys; a non-finite error is null). */
static st_status print_json(const struct st_numerics *nm) {
    json_t *o = json_object(), *th = json_object(), *layers = json_array();
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "model", json_string(nm->model));
    json_object_set_new(o, "model_path", json_string(nm->model_path));
    json_object_set_new(o, "n_layer", json_integer(nm->n_layer));
    json_object_set_new(o, "tokens", json_integer(nm->tokens));
    json_object_set_new(o, "text", json_string(nm->text));
    json_object_set_new(th, "max_abs_limit", json_real(nm->max_abs_limit));
    json_object_set_new(th, "rel_error_limit", json_real(nm->rel_error_limit));
    json_object_set_new(o, "thresholds", th);
    for (int64_t l = 0; l < nm->n_layer; l++) {
        const struct st_numerics_layer *L = &nm->layers[l];
        json_t *e = json_object();
        json_object_set_new(e, "layer", json_integer(l));
        json_object_set_new(e, "fp16_safe", json_boolean(L->fp16_safe));
        json_object_set_new(e, "max_abs", isfinite(L->max_abs) ? json_real(L->max_abs) : json_null());
        json_object_set_new(e, "frac_above_fp16", json_real(L->frac_above_fp16));
        json_object_set_new(e, "rel_error", isfinite(L->rel_error) ? json_real(L->rel_error) : json_null());
        json_object_set_new(e, "worst", json_string(L->worst));
        json_array_append_new(layers, e);
    }
    json_object_set_new(o, "layers", layers);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (!text) return st_error_set(ST_ERR_NOMEM, "out of memory writing JSON");
    puts(text);
    free(text);
    return ST_OK;
}

static void print_table(const struct st_numerics *nm) {
    int n_safe = 0;
    printf("numerics profile of %s: %lld tokens (%s), layer safe when max |x| <= %.6g and error <= %.3g\n",
           nm->model_path, (long long)nm->tokens, nm->text, nm->max_abs_limit, nm->rel_error_limit);
    printf("  %5s  %-5s  %12s  %-7s  %14s  %11s\n", "layer", "fp16", "max |x|", "where", "beyond 65504", "rel error");
    for (int64_t l = 0; l < nm->n_layer; l++) {
        const struct st_numerics_layer *L = &nm->layers[l];
        n_safe += L->fp16_safe;
        printf("  %5lld  %-5s  %12.6g  %-7s  %13.4g%%  %11.3e\n", (long long)l, L->fp16_safe ? "safe" : "NO",
               L->max_abs, L->worst, 100.0 * L->frac_above_fp16, L->rel_error);
    }
    printf("%d of %lld layers fp16-safe\n", n_safe, (long long)nm->n_layer);
}

/* ---- the command --------------------------------------------------------------------- */

int st_cmd_calibrate(int argc, char **argv) {
    const char *model_path = NULL, *config_path = NULL, *text_path = NULL, *ids_path = NULL, *out_path = NULL;
    int64_t max_tokens = DEFAULT_TOKENS;
    double max_abs = DEFAULT_MAX_ABS, max_error = DEFAULT_MAX_ERROR;
    int threads = 0;
    char bundled[4096];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc, g = st_cli_global(a);
        if (g == ST_CLI_GLOBAL_VERSION) { st_cli_print_version(); return 0; }
        if (g) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        static const char *const flags[] = {"-m", "--model", "-c", "--config", "-f", "--file", "--ids", "-o", "--output"};
        for (size_t k = 0; k < ST_ARRAY_LEN(flags); k++)
            if (!v && !strcmp(a, flags[k])) return st_cli_usage_error("calibrate", "%s needs a value", a);
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = argv[++i];
        else if (!strcmp(a, "-c") || !strcmp(a, "--config")) config_path = argv[++i];
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) text_path = argv[++i];
        else if (!strcmp(a, "--ids")) ids_path = argv[++i];
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out_path = argv[++i];
        else if (!strcmp(a, "--tokens")) {
            if ((rc = st_cli_int("calibrate", a, v, 1, 1 << 20, "a token count", NULL, &max_tokens)) >= 0) return rc;
            i++;
        } else if (!strcmp(a, "--max-abs")) {
            if ((rc = st_cli_real("calibrate", a, v, 0, true, INFINITY, false, NULL, &max_abs)) >= 0) return rc;
            i++;
        } else if (!strcmp(a, "--max-error")) {
            if ((rc = st_cli_real("calibrate", a, v, 0, true, INFINITY, false, NULL, &max_error)) >= 0) return rc;
            i++;
        } else if (!strcmp(a, "--threads")) {
            int64_t n;
            if ((rc = st_cli_int("calibrate", a, v, 0, ST_CONFIG_MAX_THREADS, "a thread count", "0 = all cores", &n)) >= 0)
                return rc;
            threads = (int)n;
            i++;
        } else {
            static const char *const known[] = {"--model", "--config", "--file", "--ids", "--tokens", "--output",
                                                "--max-abs", "--max-error", "--threads", "--json", "--help"};
            const char *near = a[0] == '-' ? st_nearest_word(a, known, ST_ARRAY_LEN(known)) : NULL;
            if (near) return st_cli_usage_error("calibrate", "unknown option '%s' (did you mean '%s'?)", a, near);
            return st_cli_usage_error("calibrate", "unknown option '%s'", a);
        }
    }
    if (text_path && ids_path) return st_cli_usage_error("calibrate", "give calibration text (-f) or ids (--ids), not both");
    st_status ms = ST_OK;
    if (model_path) ms = st_cli_model_exists(NULL, model_path);
    else if (!config_path && !(ms = st_cli_bundled_model(bundled, sizeof bundled))) model_path = bundled;
    if (ms) return st_cli_report(ms);

    struct st_deploy_config *cfg = NULL;
    st_model *m = NULL;
    st_tokenizer_t *tok = NULL;
    st_engine *e = NULL;
    st_inventory *inv = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0, cap = 0;
    struct calib c = {0};
    struct st_numerics nm = {0};
    struct st_plan_model pm = {0};
    FILE *out = NULL;
    st_status s = ST_OK;

    if (!model_path) {
        if ((s = st_config_load(config_path, &cfg))) goto done;
        if (!cfg->model.path) {
            s = st_error_set(ST_ERR_CONFIG, "%s:%d:%d: model.preset '%s' has shapes but no weights to calibrate",
                             cfg->source, cfg->model.pos.line, cfg->model.pos.column, cfg->model.preset);
            st_error_hint("calibrate a model file: 'model: {path: FILE}' or -m MODEL");
            goto done;
        }
        if ((s = st_deploy_check_model_path(cfg))) goto done;
        model_path = cfg->model.path;
    }
    if ((s = st_model_open(model_path, &m))) goto done;
    if ((s = st_plan_model_from_model(m, &pm))) goto done;

    const char *source = "built-in";
    if (ids_path) {
        if ((s = read_ids(ids_path, &ids, &n_ids, m->hp.n_vocab))) goto done;
        source = ids_path;
    } else {
        size_t len = 0;
        if (text_path) {
            if ((s = st_read_file(text_path, &text, &len))) goto done;
            source = text_path;
        }
        if ((s = st_tokenizer_from_model(m, &tok))) {
            s = st_error_set(ST_ERR_USAGE, "%s: no tokenizer to encode the calibration text", model_path);
            st_error_hint("give token ids with --ids FILE, or a model directory/GGUF file that has a tokenizer");
            goto done;
        }
        const char *t = text ? text : builtin_text;
        if (!text) len = strlen(builtin_text);
        if ((s = st_tokenizer_encode_alloc(tok, t, len, ST_TOK_DEFAULT, &ids, &n_ids, &cap))) goto done;
    }
    if (n_ids < 1) {
        s = st_error_set(ST_ERR_USAGE, "%s: no calibration tokens", source);
        st_error_hint("give a non-empty text (-f) or ids file (--ids)");
        goto done;
    }
    c.n_tok = ST_MIN(n_ids, max_tokens);
    c.n_layer = m->hp.n_layer;
    c.n_embd = m->hp.n_embd;

    /* the CPU engine in fp32, one stage, KV cache as long as the text */
    if ((s = st_inventory_init(&inv))) goto done;
    struct st_backend_config bc = {.matmul_prec = ST_PREC_F32, .attention = ST_ATTN_EAGER, .kv_dtype = ST_DTYPE_F32,
                                   .n_threads = threads};
    struct st_engine_params ep = {.n_ctx = c.n_tok, .max_batch_tokens = ST_MIN(c.n_tok, MAX_CHUNK)};
    if ((s = st_engine_init_single(m, st_device_ops_cpu(), &inv->devices[0], &bc, &ep, &e))) goto done;
    size_t snap_n = (size_t)(c.n_layer + 1) * (size_t)c.n_tok * (size_t)c.n_embd;
    c.snap = st_malloc(snap_n * sizeof(float), "calibration activations");
    c.acc = st_calloc((size_t)c.n_layer, sizeof *c.acc, "calibration statistics");
    nm.layers = st_calloc((size_t)c.n_layer, sizeof *nm.layers, "numerics layers");
    if (!c.snap || !c.acc || !nm.layers) { s = ST_ERR_NOMEM; goto done; }
    if ((s = st_engine_set_tap(e, tap, &c))) goto done;
    for (c.pass = 1; c.pass <= 2; c.pass++) {
        st_engine_reset(e);
        if ((s = st_engine_prefill(e, ids, c.n_tok, NULL, false))) goto done;
    }

    snprintf(nm.model, sizeof nm.model, "%s", pm.name);
    snprintf(nm.model_path, sizeof nm.model_path, "%.*s", (int)sizeof nm.model_path - 1, model_path);
    snprintf(nm.text, sizeof nm.text, "%s%s", ids_path ? "ids:" : "", source);
    nm.n_layer = c.n_layer;
    nm.tokens = c.n_tok;
    nm.max_abs_limit = max_abs;
    nm.rel_error_limit = max_error;
    for (int64_t l = 0; l < c.n_layer; l++) {
        const struct layer_acc *a = &c.acc[l];
        struct st_numerics_layer *L = &nm.layers[l];
        int worst = 0;
        for (int k = 0; k < N_INPUTS; k++)
            if (!(a->max_abs[k] <= a->max_abs[worst])) worst = k;
        L->max_abs = a->max_abs[worst];
        snprintf(L->worst, sizeof L->worst, "%s", input_names[worst]);
        L->frac_above_fp16 = a->n_values > 0 ? a->n_above / a->n_values : 0;
        L->rel_error = a->nonfinite ? INFINITY : a->upd2 > 0 ? sqrt(a->err2 / a->upd2) : (a->err2 > 0 ? INFINITY : 0);
        L->fp16_safe = L->max_abs <= max_abs && L->rel_error <= max_error;
    }
    if (!out_path) {
        s = st_cli_json() ? print_json(&nm) : st_numerics_write(stdout, &nm);
        goto done;
    }
    out = fopen(out_path, "w");
    if (!out) {
        s = st_error_set(ST_ERR_IO, "%s: cannot write the profile: %s", out_path, strerror(errno));
        st_error_hint("check that the directory exists and is writable");
        goto done;
    }
    s = st_numerics_write(out, &nm);
    if (fclose(out) != 0 && s == ST_OK) s = st_error_set(ST_ERR_IO, "%s: write failed: %s", out_path, strerror(errno));
    out = NULL;
    if (s == ST_OK) {
        st_cli_wrote(out_path);
        if (st_cli_json()) s = print_json(&nm);
        else print_table(&nm);
    }
done:
    free(nm.layers);
    free(c.snap);
    free(c.acc);
    st_engine_free(e);
    st_inventory_free(inv);
    free(ids);
    free(text);
    st_tokenizer_free(tok);
    st_plan_model_free(&pm);
    st_model_free(m);
    st_config_free(cfg);
    return s ? st_cli_report(s) : 0;
}
