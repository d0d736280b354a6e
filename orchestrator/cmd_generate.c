/* strata generate — text (or token ids) from a model spread over the planned
 * devices.
 *
 *   strata generate -m MODEL -p "text" [sampling options]        text in, streamed text out
 *   strata generate -c deploy.yaml -p - < prompt.txt             prompt from stdin
 *   strata generate -m MODEL --chat [--system TEXT]               interactive, KV cache kept between turns
 *   strata generate -m MODEL --tokens 1,2,3 [-n N] [--logits F]   ids in, greedy ids out
 *
 * Flow: options → deployment (config or -m; devices; plan) → engine → prompt
 * ids → prefill → decode loop (greedy on the device, or logits to the host
 * sampler) → streaming detokenizer → stdout. Nothing is allocated inside the
 * decode loop.
 *
 * --logits writes a NumPy .npy file (format 1.0, little-endian float32, C
 * order) of shape (n_prompt + N - 1, n_vocab): row r holds the logits after
 * the model has read tokens 0..r of prompt + generated tokens, so row
 * n_prompt - 1 + i predicts generated token i. */
#include "kernels/cpu/kernels_cpu.h"
#include "model/tokenizer.h"
#include "orchestrator/cli.h"
#include "orchestrator/deploy.h"
#include "orchestrator/sampler.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GEN_DEFAULT_N 16

struct gen_opts {
    struct st_deploy_options dep;
    const char *tokens;      /* "1,2,3": ids in, ids out */
    const char *prompt;      /* -p text, "-" = stdin */
    const char *system;      /* --system */
    const char *logits;      /* .npy path or NULL */
    bool chat;               /* --chat: interactive */
    bool raw;                /* --raw: no chat template with --chat */
    bool thinking;           /* Qwen3: enable_thinking */
    bool stats;
    int64_t n_new;           /* -1 = config's max_tokens (text) or 16 (ids) */
    int kv_dtype;            /* -1 = plan's */
    const char *stop[16]; int n_stop;
    /* sampling overrides: NAN / -1 = from the config */
    float temp, top_p, min_p, repeat_penalty, freq_penalty, presence_penalty;
    int64_t top_k, repeat_last_n;
    int64_t seed; bool has_seed;
};

static void usage(FILE *f) {
    fprintf(f,
        "usage: strata generate [-m MODEL | -c deploy.yaml] (-p TEXT | --chat | --tokens ID,ID,...) [options]\n\n"
        "Generates with the model on the planned devices: without -c, every GPU of this machine\n"
        "(the CPU when there is none). Text is streamed as it is produced. Without -m and -c the\n"
        "model is the bundled one (" ST_CLI_BUNDLED_MODEL ", a 4.7M-parameter Qwen3 trained on the King\n"
        "James Bible), found next to the binary, in <prefix>/share/strata or in the source tree.\n\n"
        "input and output:\n"
        "  -m, --model PATH       GGUF file or Hugging Face directory (overrides the config's model)\n"
        "  -c, --config FILE      deployment config: devices, placement, generation settings\n"
        "  --plan FILE            run a plan saved by 'strata plan -o FILE' (checked again against the\n"
        "                         devices and memory of this deployment)\n"
        "  -p, --prompt TEXT      text to continue ('-' reads it from stdin); fed raw, no chat template\n"
        "  --chat                 interactive chat: one user turn per line on stdin (-p: the first\n"
        "                         turn); the model's chat template; the KV cache is kept between turns\n"
        "  --raw                  with --chat: no template; each line continues the text as it stands\n"
        "  --system TEXT          system prompt for --chat (default: the config's, else the template's)\n"
        "  --no-think             Qwen3: ask for an answer without a thinking block\n"
        "  --tokens LIST          prompt as token ids (e.g. 151644,872,198); prints ids, greedy unless\n"
        "                         --temp is given\n"
        "  -n, --n-predict N      tokens to generate, 0..16777216 (default: the config's max_tokens, 256;\n"
        "                         16 with --tokens)\n"
        "  --stop TEXT            stop when the output contains TEXT (repeatable; the model's end-of-turn\n"
        "                         tokens always stop)\n"
        "  --logits FILE          write the logits of every prompt position and step as .npy float32\n"
        "                         (n_prompt + N - 1, n_vocab)\n"
        "  --stats                print prefill and decode speed to stderr at the end\n\n"
        "sampling (defaults from the config's generation block; llama.cpp's order, docs/sampling.md);\n"
        "the ranges are the config's, each \"off\" value is inside its range, others are refused:\n"
        "  --temp T               0..100 (0 = greedy, as --greedy)\n"
        "  --top-k K              0..2147483647 (0 = off)\n"
        "  --top-p P              (0, 1] (1 = off)\n"
        "  --min-p P              [0, 1) (0 = off)\n"
        "  --repeat-penalty R     (0, 100] (1 = off)\n"
        "  --repeat-last-n N      -1..16777216 (0 = off, -1 = the whole context)\n"
        "  --frequency-penalty F  -2..2 (0 = off)\n"
        "  --presence-penalty P   -2..2 (0 = off)\n"
        "  --seed S               0..18446744073709551615 (-1 = from the clock)\n\n"
        "devices:\n"
        "  --cpu                  without -c: run on the CPU even when GPUs are present\n"
        "  --threads N            CPU worker threads, 0..4096 (0 = all cores)\n"
        "  --ctx N                context (KV cache tokens), 1..16777216 (default: the config's, at most\n"
        "                         the trained context, grown to fit prompt + N)\n"
        "  --batch N              prefill chunk in tokens, 1..16777216\n"
        "  --kv-dtype T           KV cache type on every stage: f32, f16 or bf16 (default: the plan's;\n"
        "                         the plan's memory figures assume its own choice)\n"
        "  -h, --help             this text\n\n"
        "exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error\n");
}

/* Returns -1 to continue, else the exit code. Numbers follow one rule
 * (docs/sampling.md): the config's range for the same setting, the "off"
 * value inside it, anything outside refused with the range in the message. */
static int parse_args(int argc, char **argv, struct gen_opts *o) {
    *o = (struct gen_opts){.n_new = -1, .kv_dtype = -1, .thinking = true, .temp = NAN, .top_p = NAN, .min_p = NAN,
                           .repeat_penalty = NAN, .freq_penalty = NAN, .presence_penalty = NAN, .top_k = -1,
                           .repeat_last_n = -2};
    static char bundled[4096];
    static const char *const flags[] = {"--chat", "--raw", "--no-think", "--stats", "--cpu", "--greedy"};
    static const char *const with_value[] = {
        "-m", "--model", "-c", "--config", "--tokens", "-p", "--prompt", "-n", "--n-predict", "--logits",
        "--threads", "--ctx", "--batch", "--kv-dtype", "--system", "--stop", "--temp", "--top-k", "--top-p", "--plan",
        "--min-p", "--repeat-penalty", "--repeat-last-n", "--frequency-penalty", "--presence-penalty", "--seed"};
    static const struct { const char *flag; double lo; bool lo_open; double hi; bool hi_open; const char *note; } reals[] = {
        {"--temp", 0, false, 100, false, "0 = greedy"},
        {"--top-p", 0, true, 1, false, "1 = off"},
        {"--min-p", 0, false, 1, true, "0 = off"},
        {"--repeat-penalty", 0, true, 100, false, "1 = off"},
        {"--frequency-penalty", -2, false, 2, false, "0 = off"},
        {"--presence-penalty", -2, false, 2, false, "0 = off"},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int g = st_cli_global(a);
        if (g == ST_CLI_GLOBAL_VERSION) { st_cli_print_version(); return 0; }
        if (g) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--chat")) { o->chat = true; continue; }
        if (!strcmp(a, "--raw")) { o->raw = true; continue; }
        if (!strcmp(a, "--no-think")) { o->thinking = false; continue; }
        if (!strcmp(a, "--stats")) { o->stats = true; continue; }
        if (!strcmp(a, "--cpu")) { o->dep.cpu_only = true; continue; }
        if (!strcmp(a, "--greedy")) { o->temp = 0.0f; continue; }
        bool known = false;
        for (size_t k = 0; k < ST_ARRAY_LEN(with_value); k++) known |= !strcmp(a, with_value[k]);
        if (!known) {
            const char *all[ST_ARRAY_LEN(flags) + ST_ARRAY_LEN(with_value)];
            size_t n = 0;
            for (size_t k = 0; k < ST_ARRAY_LEN(flags); k++) all[n++] = flags[k];
            for (size_t k = 0; k < ST_ARRAY_LEN(with_value); k++) all[n++] = with_value[k];
            const char *near = st_nearest_word(a, all, n);
            if (near) return st_cli_usage_error("generate", "unknown option '%s' (did you mean '%s'?)", a, near);
            return st_cli_usage_error("generate", "unknown option '%s'", a);
        }
        if (i + 1 >= argc) return st_cli_usage_error("generate", "option %s needs a value", a);
        const char *v = argv[++i];
        int64_t n;
        int rc = -1;
        double x;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) o->dep.model_path = v;
        else if (!strcmp(a, "-c") || !strcmp(a, "--config")) o->dep.config_path = v;
        else if (!strcmp(a, "--plan")) o->dep.plan_path = v;
        else if (!strcmp(a, "--tokens")) o->tokens = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) o->prompt = v;
        else if (!strcmp(a, "--logits")) o->logits = v;
        else if (!strcmp(a, "--system")) o->system = v;
        else if (!strcmp(a, "--stop")) {
            if (o->n_stop == (int)ST_ARRAY_LEN(o->stop)) return st_cli_usage_error("generate", "at most 16 --stop strings");
            if (!*v) return st_cli_usage_error("generate", "--stop wants a non-empty text");
            o->stop[o->n_stop++] = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            rc = st_cli_int("generate", a, v, 0, ST_CONFIG_MAX_CONTEXT, "a token count", "0 = the prompt only",
                            &o->n_new);
        } else if (!strcmp(a, "--threads")) {
            if ((rc = st_cli_int("generate", a, v, 0, ST_CONFIG_MAX_THREADS, "a thread count", "0 = all cores", &n)) < 0)
                o->dep.threads = (int)n;
        } else if (!strcmp(a, "--ctx")) {
            rc = st_cli_int("generate", a, v, 1, ST_CONFIG_MAX_CONTEXT, "a token count", NULL, &o->dep.context);
        } else if (!strcmp(a, "--batch")) {
            rc = st_cli_int("generate", a, v, 1, ST_CONFIG_MAX_CONTEXT, "a token count", NULL, &o->dep.prefill_chunk);
        } else if (!strcmp(a, "--kv-dtype")) {
            if (!strcmp(v, "f32")) o->kv_dtype = ST_DTYPE_F32;
            else if (!strcmp(v, "f16")) o->kv_dtype = ST_DTYPE_F16;
            else if (!strcmp(v, "bf16")) o->kv_dtype = ST_DTYPE_BF16;
            else return st_cli_usage_error("generate", "--kv-dtype wants f32, f16 or bf16, got '%s'", v);
        } else if (!strcmp(a, "--top-k")) {
            rc = st_cli_int("generate", a, v, 0, INT32_MAX, "a whole number", "0 = off", &o->top_k);
        } else if (!strcmp(a, "--repeat-last-n")) {
            rc = st_cli_int("generate", a, v, -1, ST_CONFIG_MAX_CONTEXT, "a token count",
                            "0 = off, -1 = the whole context", &o->repeat_last_n);
        } else if (!strcmp(a, "--seed")) {
            /* the config's range: 0..2^64-1, or -1 for a seed from the clock */
            char *end;
            errno = 0;
            unsigned long long u = strtoull(v, &end, 10);
            if (!strcmp(v, "-1")) u = (unsigned long long)(st_time_s() * 1e9);
            else if (errno || end == v || *end || v[0] == '-')
                return st_cli_usage_error("generate", "--seed wants a whole number from 0 to 18446744073709551615 "
                                          "(-1 = from the clock), got '%s'", v);
            o->seed = (int64_t)u;   /* the bits; make_sampler reads them back as uint64_t */
            o->has_seed = true;
        } else {
            size_t k = 0;
            while (k < ST_ARRAY_LEN(reals) && strcmp(a, reals[k].flag)) k++;
            if ((rc = st_cli_real("generate", a, v, reals[k].lo, reals[k].lo_open, reals[k].hi, reals[k].hi_open,
                                  reals[k].note, &x)) < 0) {
                float *dst = !strcmp(a, "--temp") ? &o->temp : !strcmp(a, "--top-p") ? &o->top_p
                           : !strcmp(a, "--min-p") ? &o->min_p : !strcmp(a, "--repeat-penalty") ? &o->repeat_penalty
                           : !strcmp(a, "--frequency-penalty") ? &o->freq_penalty : &o->presence_penalty;
                *dst = (float)x;
            }
        }
        if (rc >= 0) return rc;
    }
    if (st_cli_json())
        return st_cli_no_json("generate", "generate streams text and token ids, not JSON; 'strata tokenize --json' "
                              "gives a prompt's ids");
    if (o->dep.model_path) {
        st_status s = st_cli_model_exists(NULL, o->dep.model_path);
        if (s) return st_cli_report(s);
    } else if (!o->dep.config_path) {   /* neither -m nor -c: the bundled model */
        st_status s = st_cli_bundled_model(bundled, sizeof bundled);
        if (s) return st_cli_report(s);
        o->dep.model_path = bundled;
    }
    int modes = (o->tokens != NULL) + (o->prompt != NULL && !o->chat) + o->chat;
    if (modes == 0) return st_cli_usage_error("generate", "give a prompt: -p TEXT, --chat, or --tokens 1,2,3");
    if (modes > 1 || (o->tokens && o->prompt)) return st_cli_usage_error("generate", "choose one of -p, --chat and --tokens");
    if (o->logits && !o->tokens) return st_cli_usage_error("generate", "--logits goes with --tokens");
    if (o->chat && o->prompt && !strcmp(o->prompt, "-"))
        return st_cli_usage_error("generate", "--chat reads its turns from stdin already; give the first turn as -p TEXT");
    if (!o->chat && (o->system || o->raw || !o->thinking))
        ST_WARN("generate: --system, --raw and --no-think apply to --chat only; ignored");
    if (o->tokens && o->n_stop) ST_WARN("generate: --stop applies to text output; ignored with --tokens");
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

/* Everything one generation needs, allocated before the first token. */
struct gen {
    const struct gen_opts *o;
    st_deploy *d;
    st_engine *e;
    st_tokenizer_t *tok;          /* NULL in --tokens mode without a tokenizer */
    st_sampler_t *sampler;        /* NULL when greedy */
    st_detok_stream_t *detok;
    float *logits;                /* (n_vocab) host row for the sampler, or prompt rows for --logits */
    int64_t n_vocab;
    const char **stop; int n_stop;
    char *tail;                   /* last bytes of output, for stop strings */
    size_t tail_len, tail_cap;
    int64_t n_prompt_tokens, n_gen_tokens;
    double prefill_s, decode_s;
};

/* Appends text to the stop-string window; true when a stop string appeared. */
static bool stop_seen(struct gen *g, const char *text, size_t len) {
    if (!g->n_stop) return false;
    for (size_t i = 0; i < len; i++) {
        if (g->tail_len == g->tail_cap) {
            memmove(g->tail, g->tail + g->tail_cap / 2, g->tail_cap - g->tail_cap / 2);
            g->tail_len = g->tail_cap - g->tail_cap / 2;
        }
        g->tail[g->tail_len++] = text[i];
    }
    for (int k = 0; k < g->n_stop; k++) {
        size_t sl = strlen(g->stop[k]);
        if (sl <= g->tail_len && memmem(g->tail, g->tail_len, g->stop[k], sl)) return true;
    }
    return false;
}

/* Samples the next id from g->logits and adds it to the sampler's history. */
static st_status sample_host(struct gen *g, int32_t *next) {
    *next = st_sampler_sample(g->sampler, g->logits);
    if (*next < 0) return st_last_status();
    st_sampler_accept(g->sampler, *next);
    return ST_OK;
}

/* Next token after the logits in g->logits (sampled) or on the device (greedy). */
static st_status next_token(struct gen *g, const int32_t *ids, int64_t n, bool prefill, int32_t *next) {
    double t0 = st_time_s();
    st_status s;
    if (!g->sampler) {
        s = prefill ? st_engine_prefill_greedy(g->e, ids, n, next) : st_engine_decode_greedy(g->e, ids[0], next);
    } else {
        s = prefill ? st_engine_prefill(g->e, ids, n, g->logits, false) : st_engine_decode(g->e, ids[0], g->logits);
        if (!s) s = sample_host(g, next);
    }
    double dt = st_time_s() - t0;
    if (prefill) { g->prefill_s += dt; g->n_prompt_tokens += n; }
    else { g->decode_s += dt; g->n_gen_tokens++; }
    return s;
}

/* Streams up to max_new tokens after the prompt ids. The ids of the reply
 * (stop token excluded) are appended to reply when it is not NULL. */
static st_status run_text(struct gen *g, const int32_t *ids, int64_t n, int64_t max_new,
                          int32_t *reply, int64_t *n_reply) {
    int64_t room = st_engine_n_ctx(g->e) - st_engine_n_past(g->e) - n;
    if (room < 0) {
        st_error_set(ST_ERR_USAGE, "the prompt (%lld tokens) does not fit the context (%lld tokens, %lld used)",
                     (long long)n, (long long)st_engine_n_ctx(g->e), (long long)st_engine_n_past(g->e));
        return st_error_hint("raise --ctx (or 'context:' in the config), or shorten the prompt");
    }
    if (max_new > room + 1) max_new = room + 1;
    if (g->sampler) {
        for (int64_t i = 0; i < n; i++) st_sampler_accept(g->sampler, ids[i]);
    }
    st_detok_stream_reset(g->detok);
    g->tail_len = 0;
    int32_t next;
    st_status s = next_token(g, ids, n, true, &next);
    for (int64_t i = 0; !s && i < max_new; i++) {
        if (st_tokenizer_is_stop(g->tok, next)) break;
        if (reply) reply[(*n_reply)++] = next;
        size_t len;
        const char *text = st_detok_stream_push(g->detok, next, &len);
        if (len) { fwrite(text, 1, len, stdout); fflush(stdout); }
        if (stop_seen(g, text, len)) break;
        if (i + 1 == max_new) break;
        s = next_token(g, &next, 1, false, &next);
    }
    size_t len;
    const char *text = st_detok_stream_flush(g->detok, &len);
    if (len) fwrite(text, 1, len, stdout);
    fflush(stdout);
    return s;
}

/* --tokens: ids in, ids out, optional logits file. */
static st_status run_ids(struct gen *g, const int32_t *ids, int64_t n, int64_t n_new) {
    const struct gen_opts *o = g->o;
    const int64_t V = g->n_vocab;
    FILE *npy = NULL;
    float *rows = NULL;
    st_status s = ST_OK;
    if (o->logits) {
        rows = st_malloc((size_t)(n * V) * sizeof(float), "prompt logits");
        if (!rows) return ST_ERR_NOMEM;
        if ((s = npy_open(o->logits, n + (n_new > 0 ? n_new - 1 : 0), V, &npy))) goto done;
    }
    if (g->sampler) {   /* the prompt counts for the penalties, as in text mode */
        for (int64_t i = 0; i < n; i++) st_sampler_accept(g->sampler, ids[i]);
    }
    int32_t next = 0;
    double t0 = st_time_s();
    if (rows) {
        if ((s = st_engine_prefill(g->e, ids, n, rows, true))) goto done;
        if ((s = npy_rows(npy, o->logits, rows, n, V))) goto done;
        memcpy(g->logits, rows + (n - 1) * V, (size_t)V * sizeof(float));
        if (!g->sampler) next = st_cpu_argmax(g->logits, V);
        else if ((s = sample_host(g, &next))) goto done;
        g->prefill_s += st_time_s() - t0;
        g->n_prompt_tokens += n;
    } else if (n_new > 0) {
        if ((s = next_token(g, ids, n, true, &next))) goto done;
    } else {
        s = st_engine_prefill(g->e, ids, n, NULL, false);
        goto done;
    }
    for (int64_t i = 0; i < n_new; i++) {
        printf("%s%d", i ? "," : "", next);
        fflush(stdout);
        if (i + 1 == n_new) break;
        if (rows) {
            double t1 = st_time_s();
            if ((s = st_engine_decode(g->e, next, g->logits))) goto done;
            if ((s = npy_rows(npy, o->logits, g->logits, 1, V))) goto done;
            if (!g->sampler) next = st_cpu_argmax(g->logits, V);
            else if ((s = sample_host(g, &next))) goto done;
            g->decode_s += st_time_s() - t1;
            g->n_gen_tokens++;
        } else if ((s = next_token(g, &next, 1, false, &next))) {
            goto done;
        }
    }
    putchar('\n');
done:
    if (npy && fclose(npy) != 0 && !s) s = st_error_set(ST_ERR_IO, "%s: cannot finish the logits file: %s", o->logits, strerror(errno));
    free(rows);
    return s;
}

/* The chat template to use: the config's choice, refined by the model's metadata. */
static st_chat_kind chat_kind(const st_deploy *d) {
    st_chat_kind detected = st_chat_detect(d->model->chat_template);
    switch (d->cfg->generation.chat_template) {
    case ST_CONFIG_CHAT_NONE: return ST_CHAT_NONE;
    case ST_CONFIG_CHAT_CHATML:
        return detected >= ST_CHAT_CHATML && detected <= ST_CHAT_QWEN3 ? detected : ST_CHAT_CHATML;
    case ST_CONFIG_CHAT_LLAMA3:
        return detected == ST_CHAT_LLAMA31 ? detected : ST_CHAT_LLAMA3;
    default: return detected;
    }
}

/* Interactive chat: renders the whole conversation each turn and prefills only
 * what differs from the tokens already in the KV cache. */
static st_status run_chat(struct gen *g, int64_t max_new) {
    const struct gen_opts *o = g->o;
    st_chat_kind kind = o->raw ? ST_CHAT_NONE : chat_kind(g->d);
    bool tty = isatty(fileno(stdin));
    int64_t n_ctx = st_engine_n_ctx(g->e);
    int32_t *kv_ids = st_malloc((size_t)n_ctx * sizeof(int32_t), "chat token history");
    struct st_chat_msg *msgs = st_calloc(1024, sizeof *msgs, "chat history");
    char **owned = st_calloc(1024, sizeof *owned, "chat history");
    int32_t *ids = NULL;
    char *rendered = NULL, *line = NULL;
    size_t line_cap = 0;
    int64_t n_kv = 0, n_hist = 0, n_ids = 0, ids_cap = 0;
    size_t n_msgs = 0;
    st_status s = ST_OK;
    if (!kv_ids || !msgs || !owned) { s = ST_ERR_NOMEM; goto done; }
    const char *system = o->system ? o->system : g->d->cfg->generation.system;
    if (system) msgs[n_msgs++] = (struct st_chat_msg){.role = "system", .content = system};
    if (tty) fprintf(stderr, "chat with %s (%s template); an empty line or end of input ends it\n",
                     g->d->model->path, st_chat_kind_name(kind));
    const char *first = o->prompt;
    for (;;) {
        const char *user;
        if (first) {
            user = first;
            first = NULL;
        } else {
            if (tty) fprintf(stderr, "%s> %s", st_color(stderr, "1;32"), st_color_reset(stderr));
            ssize_t got = getline(&line, &line_cap, stdin);
            if (got <= 0) break;
            while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
            if (!got) break;
            user = line;
        }
        if (n_msgs + 2 >= 1024) { s = st_error_set(ST_ERR_USAGE, "chat: more than 1000 turns"); goto done; }
        if (!(owned[n_msgs] = strdup(user))) { s = ST_ERR_NOMEM; goto done; }
        msgs[n_msgs] = (struct st_chat_msg){.role = "user", .content = owned[n_msgs]};
        n_msgs++;
        free(rendered);
        rendered = NULL;
        size_t rlen = 0;
        if (kind == ST_CHAT_NONE) {
            rendered = strdup(user);
            rlen = rendered ? strlen(rendered) : 0;
            if (!rendered) { s = ST_ERR_NOMEM; goto done; }
        } else if ((s = st_chat_render(kind, msgs, n_msgs, true, o->thinking, &rendered, &rlen))) {
            goto done;
        }
        /* kv_ids[0..n_hist) is the conversation so far; the cache holds its
         * first n_kv tokens (a reply's last token is never fed back). With a
         * template the whole conversation is re-rendered and only what differs
         * from the cache is prefilled; in raw mode the new text follows the
         * history, the unfed last reply token included. */
        n_ids = 0;
        unsigned flags = kind == ST_CHAT_NONE ? (n_hist ? 0 : ST_TOK_DEFAULT) : ST_TOK_PARSE_SPECIAL;
        if ((s = st_tokenizer_encode_alloc(g->tok, rendered, rlen, flags, &ids, &n_ids, &ids_cap))) goto done;
        int64_t at = n_hist, from = 0;   /* ids[from..] go to kv_ids[at..] */
        if (kind != ST_CHAT_NONE) {
            int64_t common = 0;
            while (common < n_kv && common < n_ids && kv_ids[common] == ids[common]) common++;
            if (common == n_ids && common > 0) common--;   /* at least one token to prefill */
            if ((s = st_engine_rewind(g->e, common))) goto done;
            n_kv = at = from = common;
        }
        if (at + (n_ids - from) + 1 > n_ctx) {
            s = st_error_set(ST_ERR_USAGE, "chat: the conversation (%lld tokens) has filled the context of %lld tokens",
                             (long long)(at + n_ids - from), (long long)n_ctx);
            st_error_hint("start again with a larger --ctx (or 'context:' in the config)");
            goto done;
        }
        memcpy(kv_ids + at, ids + from, (size_t)(n_ids - from) * sizeof(int32_t));
        n_hist = at + n_ids - from;
        int64_t n_reply = 0, before = n_hist;
        int64_t limit = ST_MIN(max_new, n_ctx - n_hist - 1);
        if ((s = run_text(g, kv_ids + n_kv, n_hist - n_kv, limit, kv_ids + n_hist, &n_reply))) goto done;
        putchar('\n');
        fflush(stdout);
        n_hist += n_reply;
        n_kv = st_engine_n_past(g->e);
        size_t text_len = 0;
        if ((s = st_tokenizer_decode(g->tok, kv_ids + before, n_reply, ST_DETOK_SKIP_SPECIAL, NULL, 0, &text_len))) goto done;
        char *reply_text = st_malloc(text_len + 1, "chat reply");
        if (!reply_text) { s = ST_ERR_NOMEM; goto done; }
        owned[n_msgs] = reply_text;   /* freed with the history, also on the error below */
        if ((s = st_tokenizer_decode(g->tok, kv_ids + before, n_reply, ST_DETOK_SKIP_SPECIAL, reply_text, text_len + 1,
                                     &text_len))) goto done;
        msgs[n_msgs] = (struct st_chat_msg){.role = "assistant", .content = reply_text};
        n_msgs++;
    }
done:
    for (size_t i = 0; owned && i < 1024; i++) free(owned[i]);
    free(owned);
    free(msgs);
    free(kv_ids);
    free(ids);
    free(rendered);
    free(line);
    return s;
}

/* Sampling settings: config, then command-line overrides. Greedy → NULL sampler. */
static st_status make_sampler(struct gen *g, bool ids_mode) {
    const struct gen_opts *o = g->o;
    struct st_sampler_params p;
    st_deploy_sampler_params(g->d, &p);
    if (ids_mode && isnan(o->temp)) p.temperature = 0.0f;   /* --tokens: greedy unless asked */
    if (!isnan(o->temp)) p.temperature = o->temp;
    if (o->top_k >= 0) p.top_k = o->top_k;
    if (!isnan(o->top_p)) p.top_p = o->top_p;
    if (!isnan(o->min_p)) p.min_p = o->min_p;
    if (!isnan(o->repeat_penalty)) p.repeat_penalty = o->repeat_penalty;
    if (!isnan(o->freq_penalty)) p.frequency_penalty = o->freq_penalty;
    if (!isnan(o->presence_penalty)) p.presence_penalty = o->presence_penalty;
    if (o->repeat_last_n >= -1) p.penalty_last_n = o->repeat_last_n;
    if (o->has_seed) p.seed = (uint64_t)o->seed;
    bool penalties = p.repeat_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
    if (p.temperature <= 0.0f && !penalties) return ST_OK;   /* argmax on the device */
    return st_sampler_init(&p, g->n_vocab, st_engine_n_ctx(g->e), &g->sampler);
}

int st_cmd_generate(int argc, char **argv) {
    struct gen_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;

    struct gen g = {.o = &o};
    int32_t *ids = NULL;
    int64_t n_ids = 0, ids_cap = 0;
    char *stdin_text = NULL;
    const char *stops[ST_ARRAY_LEN(o.stop) + 64];
    st_status s;

    if (o.tokens && (s = parse_token_list(o.tokens, &ids, &n_ids))) goto done;
    if (o.prompt && !strcmp(o.prompt, "-") && !o.chat) {
        if ((s = st_cli_read_stdin(&stdin_text, NULL))) goto done;
        o.prompt = stdin_text;
    }
    /* The model is opened before planning: the prompt's length decides the context. */
    if ((s = st_deploy_load(&o.dep, &g.d))) goto done;
    const struct st_config_generation *gen = &g.d->cfg->generation;
    int64_t n_new = o.n_new >= 0 ? o.n_new : o.tokens ? GEN_DEFAULT_N : gen->max_tokens;
    if (g.d->model && (!o.tokens || g.d->model->tok_source != ST_TOKSRC_NONE)) {
        if ((s = st_tokenizer_from_model(g.d->model, &g.tok))) goto done;
    }
    if (g.d->model && o.prompt && !o.chat) {
        if ((s = st_tokenizer_encode_alloc(g.tok, o.prompt, strlen(o.prompt), ST_TOK_DEFAULT, &ids, &n_ids, &ids_cap))) goto done;
        if (n_ids == 0) {
            s = st_error_set(ST_ERR_USAGE, "generate: the prompt is empty");
            st_error_hint("give some text with -p, or use --chat");
            goto done;
        }
    }
    /* Grow the context to fit prompt + N unless the user fixed it. */
    int64_t need = n_ids + (n_new > 0 ? n_new - 1 : 0);
    if (need > g.d->req.context) {
        if (g.d->context_fixed) {
            s = st_error_set(ST_ERR_USAGE, "generate: %lld prompt tokens + %lld new ones need a context of %lld, "
                             "the plan has %lld", (long long)n_ids, (long long)n_new, (long long)need,
                             (long long)g.d->req.context);
            st_error_hint("raise --ctx (or 'context:' in the config) or lower -n");
            goto done;
        }
        g.d->req.context = need;
    }
    if ((s = st_deploy_plan(g.d))) goto done;
    if (!st_deploy_runnable(g.d)) {
        s = st_deploy_engine(g.d, &g.e);   /* says which device cannot run */
        goto done;
    }
    /* The KV type is a run-time choice the planner does not take as input; the
     * plan's memory figures keep its own (the help says so). */
    if (o.kv_dtype >= 0) {
        for (int i = 0; i < g.d->plan->n_stages; i++) g.d->plan->stages[i].kv_dtype = (st_dtype)o.kv_dtype;
    }
    if (st_log_get_level() >= ST_LOG_INFO) st_plan_print(stderr, g.d->plan, false);
    if ((s = st_deploy_engine(g.d, &g.e))) goto done;
    g.n_vocab = st_engine_n_vocab(g.e);
    g.logits = st_malloc((size_t)g.n_vocab * sizeof(float), "logits row");
    if (!g.logits) { s = ST_ERR_NOMEM; goto done; }
    if ((s = make_sampler(&g, o.tokens != NULL))) goto done;

    if (o.tokens) {
        s = run_ids(&g, ids, n_ids, n_new);
    } else {
        if ((s = st_detok_stream_init(g.tok, ST_DETOK_SKIP_SPECIAL, &g.detok))) goto done;
        for (int i = 0; i < o.n_stop; i++) stops[g.n_stop++] = o.stop[i];
        for (int i = 0; i < gen->n_stop && g.n_stop < (int)ST_ARRAY_LEN(stops); i++) stops[g.n_stop++] = gen->stop[i];
        g.stop = stops;
        size_t longest = 0;
        for (int i = 0; i < g.n_stop; i++) longest = ST_MAX(longest, strlen(stops[i]));
        g.tail_cap = 2 * longest + 64;
        if (!(g.tail = st_malloc(g.tail_cap, "stop-string window"))) { s = ST_ERR_NOMEM; goto done; }
        if (o.chat) s = run_chat(&g, n_new);
        else {
            fwrite(o.prompt, 1, strlen(o.prompt), stdout);
            s = run_text(&g, ids, n_ids, n_new, NULL, NULL);
            putchar('\n');
        }
    }
    if (!s && (o.stats || st_log_get_level() >= ST_LOG_INFO)) {
        fflush(stdout);
        fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tok/s); decode: %lld tokens in %.3f s (%.2f tok/s)\n",
                (long long)g.n_prompt_tokens, g.prefill_s, g.prefill_s > 0 ? (double)g.n_prompt_tokens / g.prefill_s : 0.0,
                (long long)g.n_gen_tokens, g.decode_s, g.decode_s > 0 ? (double)g.n_gen_tokens / g.decode_s : 0.0);
    }
done:
    free(g.tail);
    st_detok_stream_free(g.detok);
    st_sampler_free(g.sampler);
    free(g.logits);
    st_tokenizer_free(g.tok);
    st_engine_free(g.e);
    st_deploy_free(g.d);
    free(ids);
    free(stdin_text);
    return s == ST_OK ? 0 : st_cli_report(s);
}
