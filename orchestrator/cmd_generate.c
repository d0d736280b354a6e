/* strata generate — greedy generation on one device (the CPU for now).
 *
 *   strata generate -m MODEL --tokens 1,2,3 [-n N] [--logits FILE.npy]
 *                   [--threads N] [--ctx N] [--batch N] [--kv-dtype T]
 *
 * The flow is: options → model → engine → prompt ids → prefill → decode loop
 * → each new token goes to an output sink. Prompt ids come from --tokens; text
 * prompts (-p) will come from the tokenizer in prompt_ids(), and text output
 * from a sink that detokenizes, without touching the loop.
 *
 * --logits writes a NumPy .npy file (format 1.0, little-endian float32, C
 * order) of shape (n_prompt + N - 1, n_vocab): row r holds the logits after
 * the model has read tokens 0..r of prompt + generated tokens, so row
 * n_prompt - 1 + i predicts generated token i. */
#include "orchestrator/cli.h"
#include "orchestrator/engine.h"
#include "kernels/cpu/kernels_cpu.h"
#include "devices/device.h"
#include "model/model.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define GEN_DEFAULT_N 16
#define GEN_DEFAULT_CTX 4096
#define GEN_DEFAULT_BATCH 512

struct gen_opts {
    const char *model;
    const char *tokens;      /* "1,2,3" */
    const char *prompt;      /* -p text (needs the tokenizer) */
    const char *logits;      /* .npy path or NULL */
    int64_t n_new;
    int64_t n_ctx;           /* 0 = default */
    int64_t batch;
    int threads;             /* 0 = one per core */
    st_dtype kv_dtype;
};

static void usage(FILE *f) {
    fprintf(f,
        "usage: strata generate -m MODEL --tokens ID,ID,... [options]\n\n"
        "Greedy generation on the CPU: reads the prompt token ids, prints the next N\n"
        "token ids on one line, comma separated.\n\n"
        "  -m, --model PATH     GGUF file or Hugging Face directory\n"
        "  --tokens LIST        prompt token ids, e.g. 151644,872,198\n"
        "  -p, --prompt TEXT    text prompt (needs the tokenizer; not in this build yet)\n"
        "  -n, --n-predict N    tokens to generate (default %d)\n"
        "  --logits FILE        write the logits of every prompt position and every\n"
        "                       generation step as a .npy float32 array of shape\n"
        "                       (n_prompt + N - 1, n_vocab)\n"
        "  --threads N          CPU threads (default: one per core of the NUMA node)\n"
        "  --ctx N              KV cache length in tokens (default: min(model context, %d),\n"
        "                       grown to fit the prompt and N)\n"
        "  --batch N            prefill chunk in tokens (default %d)\n"
        "  --kv-dtype T         KV cache element type: f32 (default), f16 or bf16\n"
        "  -h, --help           this text\n\n"
        "exit codes: 0 ok, 1 runtime failure, 2 usage error\n",
        GEN_DEFAULT_N, GEN_DEFAULT_CTX, GEN_DEFAULT_BATCH);
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

/* Returns -1 to continue, else the exit code. */
static int parse_args(int argc, char **argv, struct gen_opts *o) {
    *o = (struct gen_opts){.n_new = GEN_DEFAULT_N, .batch = GEN_DEFAULT_BATCH, .kv_dtype = ST_DTYPE_F32};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        static const char *const with_value[] = {"-m", "--model", "--tokens", "-p", "--prompt", "-n", "--n-predict",
                                                 "--logits", "--threads", "--ctx", "--batch", "--kv-dtype", "-c", "--config"};
        bool known = false;
        for (size_t k = 0; k < ST_ARRAY_LEN(with_value); k++) known |= !strcmp(a, with_value[k]);
        if (!known) {
            const char *near = st_nearest_word(a, with_value, ST_ARRAY_LEN(with_value));
            if (near) return st_cli_usage_error("generate", "unknown option '%s' (did you mean '%s'?)", a, near);
            return st_cli_usage_error("generate", "unknown option '%s'", a);
        }
        if (i + 1 >= argc) return st_cli_usage_error("generate", "option %s needs a value", a);
        const char *v = argv[++i];
        int64_t n;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--tokens")) o->tokens = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "--logits")) o->logits = v;
        else if (!strcmp(a, "-c") || !strcmp(a, "--config")) return st_cli_not_built("generate", "running a deployment config (-c)");
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!parse_i64(v, 0, 1 << 24, &o->n_new)) return st_cli_usage_error("generate", "-n wants a count >= 0, got '%s'", v);
        } else if (!strcmp(a, "--threads")) {
            if (!parse_i64(v, 0, 4096, &n)) return st_cli_usage_error("generate", "--threads wants 0..4096, got '%s'", v);
            o->threads = (int)n;
        } else if (!strcmp(a, "--ctx")) {
            if (!parse_i64(v, 1, 1 << 24, &o->n_ctx)) return st_cli_usage_error("generate", "--ctx wants a token count >= 1, got '%s'", v);
        } else if (!strcmp(a, "--batch")) {
            if (!parse_i64(v, 1, 1 << 20, &o->batch)) return st_cli_usage_error("generate", "--batch wants a token count >= 1, got '%s'", v);
        } else if (!strcmp(a, "--kv-dtype")) {
            if (!strcmp(v, "f32")) o->kv_dtype = ST_DTYPE_F32;
            else if (!strcmp(v, "f16")) o->kv_dtype = ST_DTYPE_F16;
            else if (!strcmp(v, "bf16")) o->kv_dtype = ST_DTYPE_BF16;
            else return st_cli_usage_error("generate", "--kv-dtype wants f32, f16 or bf16, got '%s'", v);
        }
    }
    if (o->prompt) return st_cli_not_built("generate", "text prompts (tokenizer)");
    if (!o->model) return st_cli_usage_error("generate", "name a model with -m FILE|DIR");
    if (!o->tokens) return st_cli_usage_error("generate", "give the prompt as token ids with --tokens 1,2,3");
    return -1;
}

/* "1,2,3" → ids; errors name the item and its character offset. */
static st_status parse_token_list(const char *s, int32_t **out, int64_t *n_out) {
    *out = NULL;
    *n_out = 0;
    int64_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *ids = st_malloc((size_t)cap * sizeof(int32_t), "prompt ids");
    if (!ids) return ST_ERR_NOMEM;
    int64_t n = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            st_error_set(ST_ERR_USAGE, "generate: --tokens: item %lld at character %lld is not a token id: '%.*s'",
                         (long long)n + 1, (long long)(p - s), (int)strcspn(p, ","), p);
            return st_error_hint("write the ids as non-negative integers separated by commas, e.g. --tokens 9707,11,1879");
        }
        ids[n++] = (int32_t)v;
        if (!*end) break;
        p = end + 1;
    }
    *out = ids;
    *n_out = n;
    return ST_OK;
}

/* The prompt as ids: from --tokens now; the tokenizer's encode goes here for -p. */
static st_status prompt_ids(const struct gen_opts *o, const st_model *m, int32_t **ids, int64_t *n) {
    (void)m;
    return parse_token_list(o->tokens, ids, n);
}

/* Where generated tokens go: ids on one line now; text when detokenizing. */
struct token_sink {
    FILE *f;
    int64_t count;
};

static void sink_token(struct token_sink *s, int32_t id) {
    fprintf(s->f, "%s%d", s->count ? "," : "", id);
    s->count++;
    fflush(s->f);
}

static void sink_end(struct token_sink *s) { fputc('\n', s->f); fflush(s->f); }

/* .npy (format 1.0) writer: header padded so the data starts at a multiple of 64. */
static st_status npy_open(const char *path, int64_t rows, int64_t cols, FILE **out) {
    *out = NULL;
    FILE *f = fopen(path, "wb");
    if (!f) {
        st_error_set(ST_ERR_IO, "%s: cannot create the logits file: %s", path, strerror(errno));
        return st_error_hint("check that the directory exists and is writable");
    }
    char dict[128];
    int dl = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                      (long long)rows, (long long)cols);
    int total = 10 + dl + 1;
    int pad = (64 - total % 64) % 64;
    uint16_t hl = (uint16_t)(dl + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8)};
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)dl, f) == (size_t)dl;
    for (int i = 0; i < pad && ok; i++) ok = fputc(' ', f) != EOF;
    if (ok) ok = fputc('\n', f) != EOF;
    if (!ok) {
        fclose(f);
        return st_error_set(ST_ERR_IO, "%s: cannot write the .npy header: %s", path, strerror(errno));
    }
    *out = f;
    return ST_OK;
}

static st_status npy_rows(FILE *f, const char *path, const float *rows, int64_t n, int64_t cols) {
    size_t k = (size_t)(n * cols);
    if (fwrite(rows, sizeof(float), k, f) != k)
        return st_error_set(ST_ERR_IO, "%s: cannot write logits: %s", path, strerror(errno));
    return ST_OK;
}

int st_cmd_generate(int argc, char **argv) {
    struct gen_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;

    st_status s;
    st_model *m = NULL;
    st_engine *e = NULL;
    int32_t *ids = NULL;
    int64_t n_prompt = 0;
    float *logits = NULL;
    FILE *npy = NULL;

    if ((s = st_model_open(o.model, &m)) != ST_OK) goto done;
    if ((s = prompt_ids(&o, m, &ids, &n_prompt)) != ST_OK) goto done;
    const int64_t V = m->hp.n_vocab;
    const int64_t need = n_prompt + (o.n_new > 0 ? o.n_new - 1 : 0);
    int64_t n_ctx = o.n_ctx;
    if (!n_ctx) {
        n_ctx = m->hp.n_ctx_train > 0 ? ST_MIN(m->hp.n_ctx_train, GEN_DEFAULT_CTX) : GEN_DEFAULT_CTX;
        n_ctx = ST_MAX(n_ctx, need);
    } else if (need > n_ctx) {
        s = st_error_set(ST_ERR_USAGE, "generate: %lld prompt tokens + %lld new ones need a context of %lld, --ctx is %lld",
                         (long long)n_prompt, (long long)o.n_new, (long long)need, (long long)n_ctx);
        st_error_hint("raise --ctx or lower -n");
        goto done;
    }

    struct st_device_info cpu = {.kind = ST_DEVICE_CPU, .numa_node = -1};
    snprintf(cpu.name, sizeof cpu.name, "cpu");
    struct st_backend_config cfg = {.matmul_prec = ST_PREC_F32, .attention = ST_ATTN_EAGER, .kv_dtype = o.kv_dtype,
                                    .n_threads = o.threads};
    struct st_engine_params prm = {.n_ctx = n_ctx, .max_batch_tokens = o.batch};
    if ((s = st_engine_init_single(m, st_device_ops_cpu(), &cpu, &cfg, &prm, &e)) != ST_OK) goto done;

    const int64_t rows = n_prompt + (o.n_new > 0 ? o.n_new - 1 : 0);
    if (o.logits) {
        logits = st_malloc((size_t)(n_prompt * V) * sizeof(float), "prompt logits");
        if (!logits) { s = ST_ERR_NOMEM; goto done; }
        if ((s = npy_open(o.logits, rows, V, &npy)) != ST_OK) goto done;
    }

    struct token_sink sink = {.f = stdout};
    double t0 = st_time_s();
    int32_t next = 0;
    if (logits) {
        if ((s = st_engine_prefill(e, ids, n_prompt, logits, true)) != ST_OK) goto done;
        if ((s = npy_rows(npy, o.logits, logits, n_prompt, V)) != ST_OK) goto done;
        next = st_cpu_argmax(logits + (n_prompt - 1) * V, V);
    } else if (o.n_new > 0) {
        if ((s = st_engine_prefill_greedy(e, ids, n_prompt, &next)) != ST_OK) goto done;
    } else {
        if ((s = st_engine_prefill(e, ids, n_prompt, NULL, false)) != ST_OK) goto done;
    }
    double t1 = st_time_s();
    for (int64_t i = 0; i < o.n_new; i++) {
        sink_token(&sink, next);
        if (i + 1 == o.n_new) break;
        if (logits) {
            if ((s = st_engine_decode(e, next, logits)) != ST_OK) goto done;
            if ((s = npy_rows(npy, o.logits, logits, 1, V)) != ST_OK) goto done;
            next = st_cpu_argmax(logits, V);
        } else if ((s = st_engine_decode_greedy(e, next, &next)) != ST_OK) {
            goto done;
        }
    }
    sink_end(&sink);
    double t2 = st_time_s();
    ST_INFO("prefill: %lld tokens in %.3f s (%.1f tok/s); decode: %lld steps in %.3f s (%.2f tok/s)",
            (long long)n_prompt, t1 - t0, (double)n_prompt / (t1 - t0), (long long)(o.n_new > 0 ? o.n_new - 1 : 0),
            t2 - t1, o.n_new > 1 ? (double)(o.n_new - 1) / (t2 - t1) : 0.0);

done:
    if (npy && fclose(npy) != 0 && s == ST_OK)
        s = st_error_set(ST_ERR_IO, "%s: cannot finish the logits file: %s", o.logits, strerror(errno));
    free(logits);
    free(ids);
    st_engine_free(e);
    st_model_free(m);
    return s == ST_OK ? 0 : st_cli_report(s);
}
