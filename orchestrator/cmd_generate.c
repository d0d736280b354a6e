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
#include "orchestrator/mpi.h"
#include "orchestrator/sampler.h"
#include "orchestrator/session.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <limits.h>
#include <math.h>
#include <fcntl.h>
#include <poll.h>
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
    int kv_dtype;            /* -1 = the config's kv_dtype (auto: the planner's choice) */
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
        "  --stop TEXT            stop where the output would contain TEXT, which is not printed\n"
        "                         (repeatable; the model's end-of-turn tokens always stop)\n"
        "  --logits FILE          write the logits of every prompt position and step as .npy float32\n"
        "                         (n_prompt + N - 1, n_vocab)\n"
        "  --stats                print prefill and decode speed to stderr at the end\n\n"
        "sampling (defaults from the config's generation block; llama.cpp's order, docs/sampling.md);\n"
        "the ranges are the config's, each \"off\" value is inside its range, others are refused:\n"
        "  --temp T               0..100 (0 = greedy, as --greedy); also --temperature T\n"
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
        "  --kv-dtype T           KV cache type on every stage: auto, f32, f16, bf16 or q8_0 (default: the\n"
        "                         config's kv_dtype, else auto: the planner's choice); the plan is made with it\n"
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
        if (!strcmp(a, "--temperature")) a = "--temp";   /* the config's and the OpenAI API's name */
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
            else if (!strcmp(v, "q8_0")) o->kv_dtype = ST_DTYPE_Q8_0;
            else if (!strcmp(v, "auto")) o->kv_dtype = -2;
            else return st_cli_usage_error("generate", "--kv-dtype wants auto, f32, f16, bf16 or q8_0, got '%s'", v);
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
    st_sched *sched;
    st_session *ss;
    struct st_gen_params gp;
    float *logits;                /* (n_vocab) host row (--logits) */
    st_sampler_t *sampler;        /* --logits with sampling: the host sampler */
    int64_t n_vocab;
    bool ids_mode;                /* print ids, not text */
    int64_t n_printed;            /* ids printed */
    char *reply;                  /* --chat: the reply's text as shown */
    size_t reply_len, reply_cap;
    st_finish finish;
    st_status status;
    int64_t n_prompt_tokens, n_gen_tokens;
    double prefill_s, decode_s;
};

/* Ctrl-C during a reply stops the reply, not the program (--chat). */
static volatile sig_atomic_t interrupted;
static int sigint_pipe[2] = {-1, -1};   /* the chat prompt's wake-up (prompt_wait) */
static void on_sigint(int sig) {
    (void)sig;
    int e = errno;
    interrupted = 1;
    if (sigint_pipe[1] >= 0 && write(sigint_pipe[1], "c", 1) < 0) {}
    errno = e;
}

/* The session's reports: text (or ids) to stdout as they come. */
static void on_event(void *user, st_session *ss, const struct st_gen_event *ev) {
    struct gen *g = user;
    if (interrupted) st_session_cancel(ss);
    if (g->ids_mode) {
        if (ev->token >= 0) printf("%s%d", g->n_printed++ ? "," : "", ev->token);
    } else if (ev->len) {
        fwrite(ev->text, 1, ev->len, stdout);
        if (g->reply) {
            if (g->reply_len + ev->len + 1 > g->reply_cap) {   /* a reply longer than its reservation */
                size_t cap = 2 * (g->reply_len + ev->len + 1);
                char *r = realloc(g->reply, cap);
                if (r) { g->reply = r; g->reply_cap = cap; }
            }
            if (g->reply_len + ev->len + 1 <= g->reply_cap) {
                memcpy(g->reply + g->reply_len, ev->text, ev->len);
                g->reply_len += ev->len;
                g->reply[g->reply_len] = 0;
            }
        }
    }
    fflush(stdout);
    if (ev->finish) {
        g->finish = ev->finish;
        g->status = ev->status;
    }
}

/* Runs one generation on the session and adds its statistics. */
static st_status run_session(struct gen *g, const int32_t *ids, int64_t n, int64_t max_new) {
    g->gp.max_tokens = max_new;
    g->finish = ST_FINISH_NONE;
    g->status = ST_OK;
    st_status s = st_session_start(g->ss, ids, n, &g->gp, on_event, g);
    if (!s) s = st_session_run(g->ss);
    struct st_session_stats st;
    st_session_stats(g->ss, &st);
    g->prefill_s += st.prefill_s;
    g->decode_s += st.decode_s;
    g->n_prompt_tokens += st.prefilled_tokens;
    g->n_gen_tokens += st.decode_steps;
    if (!s && g->finish == ST_FINISH_ERROR) s = g->status;   /* st_last_error() holds the message */
    return s;
}

/* Says why a generation stopped early, when that is not obvious from the text. */
static void note_finish(const struct gen *g) {
    if (g->finish == ST_FINISH_CONTEXT)
        fprintf(stderr, "\n%sgenerate: stopped: the context of %lld tokens is full%s\n"
                "hint: raise --ctx (or 'context:' in the config) for longer output\n",
                st_color(stderr, "33"), (long long)st_engine_n_ctx(g->e), st_color_reset(stderr));
}

/* Samples the next id from g->logits and adds it to the sampler's history. */
static st_status sample_host(struct gen *g, int32_t *next) {
    *next = st_sampler_sample(g->sampler, g->logits);
    if (*next < 0) return st_last_status();
    st_sampler_accept(g->sampler, *next);
    return ST_OK;
}

/* Non-finite logits never become a token on the host either. */
static st_status check_finite(const float *lg, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(lg[i])) {
            st_error_set(ST_ERR_NUMERIC, "generate: logit %lld is %s", (long long)i, isnan(lg[i]) ? "NaN" : "infinite");
            return st_error_hint("run without --logits to learn which layer produces it");
        }
    }
    return ST_OK;
}

/* --tokens with --logits (or -n 0): ids in, ids out, every row's logits to a
 * .npy file; the engine's single-sequence calls, the host choosing. */
static st_status run_ids_logits(struct gen *g, const int32_t *ids, int64_t n, int64_t n_new) {
    const struct gen_opts *o = g->o;
    const int64_t V = g->n_vocab;
    FILE *npy = NULL;
    float *rows = NULL;
    st_status s = ST_OK;
    if (!o->logits) return n_new > 0 ? ST_OK : st_engine_prefill(g->e, ids, n, NULL, false);
    if (g->sampler) {   /* the prompt counts for the penalties, as in text mode */
        for (int64_t i = 0; i < n; i++) st_sampler_accept(g->sampler, ids[i]);
    }
    rows = st_malloc((size_t)(n * V) * sizeof(float), "prompt logits");
    if (!rows) return ST_ERR_NOMEM;
    if ((s = npy_open(o->logits, n + (n_new > 0 ? n_new - 1 : 0), V, &npy))) goto done;
    int32_t next = 0;
    double t0 = st_time_s();
    if ((s = st_engine_prefill(g->e, ids, n, rows, true))) goto done;
    if ((s = npy_rows(npy, o->logits, rows, n, V))) goto done;
    memcpy(g->logits, rows + (n - 1) * V, (size_t)V * sizeof(float));
    g->prefill_s += st_time_s() - t0;
    g->n_prompt_tokens += n;
    for (int64_t i = 0; i < n_new; i++) {
        if ((s = check_finite(g->logits, V))) goto done;
        if (!g->sampler) next = st_cpu_argmax(g->logits, V);
        else if ((s = sample_host(g, &next))) goto done;
        printf("%s%d", i ? "," : "", next);
        fflush(stdout);
        if (i + 1 == n_new) break;
        double t1 = st_time_s();
        if ((s = st_engine_decode(g->e, next, g->logits))) goto done;
        if ((s = npy_rows(npy, o->logits, g->logits, 1, V))) goto done;
        g->decode_s += st_time_s() - t1;
        g->n_gen_tokens++;
    }
    if (n_new > 0) putchar('\n');
done:
    if (npy && fclose(npy) != 0 && !s) s = st_error_set(ST_ERR_IO, "%s: cannot finish the logits file: %s", o->logits, strerror(errno));
    free(rows);
    return s;
}

/* ---- --chat ------------------------------------------------------------------ */

#define CHAT_MAX_MSGS 4096

struct chat {
    struct gen *g;
    st_chat_kind kind;
    const char *system;           /* NULL: the template's default */
    struct st_chat_msg *msgs;     /* (CHAT_MAX_MSGS) */
    char **owned;                 /* (CHAT_MAX_MSGS) contents, owned */
    size_t n_msgs, first;         /* msgs[0] is the system prompt when there is one; turns start at first */
    int32_t *ids;                 /* rendered conversation (or raw history) */
    int64_t n_ids, ids_cap;
    char *prev;                   /* the text the last reply followed (its prompt, rendered) + the reply, or NULL */
    size_t prev_len;
    int turn;
    bool tty;
};

static void chat_drop(struct chat *c, size_t from, size_t n) {
    for (size_t i = from; i < from + n; i++) free(c->owned[i]);
    memmove(c->msgs + from, c->msgs + from + n, (c->n_msgs - from - n) * sizeof *c->msgs);
    memmove(c->owned + from, c->owned + from + n, (c->n_msgs - from - n) * sizeof *c->owned);
    c->n_msgs -= n;
}

static st_status chat_push(struct chat *c, const char *role, const char *content, size_t len) {
    if (c->n_msgs == CHAT_MAX_MSGS) chat_drop(c, c->first, 2);   /* the oldest exchange makes room */
    char *t = st_malloc(len + 1, "chat message");
    if (!t) return ST_ERR_NOMEM;
    memcpy(t, content, len);
    t[len] = 0;
    c->owned[c->n_msgs] = t;
    c->msgs[c->n_msgs++] = (struct st_chat_msg){.role = role, .content = t};
    return ST_OK;
}

/* The conversation as tokens, ready for the next reply. With a template the
 * whole conversation is rendered; the oldest exchanges go (never the system
 * prompt) until it leaves `room` tokens for the reply. Raw: the history so far
 * and the new text; the oldest tokens go. */
static st_status chat_tokens(struct chat *c, const char *user, int64_t room) {
    struct gen *g = c->g;
    const int64_t n_ctx = st_engine_n_ctx(g->e);
    const int64_t budget = n_ctx - room;
    st_status s;
    if (c->kind == ST_CHAT_NONE) {
        int64_t n_hist = 0;
        const int32_t *hist = st_session_tokens(g->ss, &n_hist);
        int32_t *tmp = NULL;
        int64_t n_tmp = 0, cap = 0;
        unsigned flags = n_hist ? 0 : ST_TOK_DEFAULT;
        if ((s = st_tokenizer_encode_alloc(g->tok, user, strlen(user), flags, &tmp, &n_tmp, &cap))) return s;
        int64_t keep = n_hist;
        if (n_hist + n_tmp > budget) {
            keep = ST_MAX(0, budget - n_tmp);
            fprintf(stderr, "%schat: the text no longer fits the context of %lld tokens; the oldest %lld tokens are "
                    "dropped%s\n", st_color(stderr, "33"), (long long)n_ctx, (long long)(n_hist - keep),
                    st_color_reset(stderr));
        }
        if (n_tmp > budget) {
            free(tmp);
            st_error_set(ST_ERR_USAGE, "chat: this text (%lld tokens) does not fit the context of %lld tokens with room "
                         "for a reply", (long long)n_tmp, (long long)n_ctx);
            return st_error_hint("send a shorter text, or start again with a larger --ctx");
        }
        if (keep + n_tmp > c->ids_cap) {
            int32_t *p = realloc(c->ids, (size_t)(keep + n_tmp) * sizeof *p);
            if (!p) { free(tmp); return st_error_set(ST_ERR_NOMEM, "chat: out of memory for the history"); }
            c->ids = p;
            c->ids_cap = keep + n_tmp;
        }
        memmove(c->ids, hist + (n_hist - keep), (size_t)keep * sizeof(int32_t));
        memcpy(c->ids + keep, tmp, (size_t)n_tmp * sizeof(int32_t));
        c->n_ids = keep + n_tmp;
        free(tmp);
        return ST_OK;
    }
    if ((s = chat_push(c, "user", user, strlen(user)))) return s;
    int dropped = 0;
    for (;;) {
        char *text = NULL;
        size_t len = 0;
        if ((s = st_chat_render(c->kind, c->msgs, c->n_msgs, true, g->o->thinking, &text, &len))) return s;
        /* The text so far, the last reply as its exact tokens (re-encoding a
         * reply need not give the ids the model chose, and the KV cache holds
         * those), then the new part. When the template rewrote the history
         * (dropped turns, stripped thinking) the whole text is encoded again. */
        int64_t n_hist = 0;
        const int32_t *hist = st_session_tokens(g->ss, &n_hist);
        if (c->prev && n_hist > 0 && len >= c->prev_len && !memcmp(text, c->prev, c->prev_len)) {
            int32_t *tail = NULL;
            int64_t n_tail = 0, cap = 0;
            s = st_tokenizer_encode_alloc(g->tok, text + c->prev_len, len - c->prev_len, ST_TOK_PARSE_SPECIAL, &tail,
                                          &n_tail, &cap);
            if (!s && n_hist + n_tail > c->ids_cap) {
                int32_t *p = realloc(c->ids, (size_t)(n_hist + n_tail) * sizeof *p);
                if (!p) s = st_error_set(ST_ERR_NOMEM, "chat: out of memory for the conversation");
                else { c->ids = p; c->ids_cap = n_hist + n_tail; }
            }
            if (!s) {
                memcpy(c->ids, hist, (size_t)n_hist * sizeof(int32_t));
                memcpy(c->ids + n_hist, tail, (size_t)n_tail * sizeof(int32_t));
                c->n_ids = n_hist + n_tail;
            }
            free(tail);
        } else {
            c->n_ids = 0;   /* encode_alloc appends */
            s = st_tokenizer_encode_alloc(g->tok, text, len, ST_TOK_PARSE_SPECIAL, &c->ids, &c->n_ids, &c->ids_cap);
        }
        if (s) { free(text); return s; }
        /* once the conversation must shrink, it shrinks to half the budget, so the
         * next turns append to the cache again instead of prefilling it anew */
        if (c->n_ids <= (dropped ? budget / 2 : budget) || (dropped && c->n_msgs - c->first <= 1 && c->n_ids <= budget)) {
            free(c->prev);
            c->prev = text;   /* the reply is appended to it after the turn */
            c->prev_len = len;
            break;
        }
        free(text);
        free(c->prev);
        c->prev = NULL;
        if (c->n_msgs - c->first <= 1) {
            chat_drop(c, c->n_msgs - 1, 1);
            st_error_set(ST_ERR_USAGE, "chat: this message (%lld tokens with the template) does not fit the context of "
                         "%lld tokens with room for a reply", (long long)c->n_ids, (long long)n_ctx);
            return st_error_hint("send a shorter message, or start again with a larger --ctx");
        }
        chat_drop(c, c->first, c->n_msgs - c->first >= 3 ? 2 : 1);   /* the oldest user turn and its reply */
        dropped++;
    }
    if (dropped)
        fprintf(stderr, "%schat: the conversation reached the context of %lld tokens; the oldest %d exchange%s dropped "
                "(the system prompt is kept)%s\n", st_color(stderr, "33"), (long long)n_ctx, dropped,
                dropped == 1 ? " was" : "s were", st_color_reset(stderr));
    return ST_OK;
}

/* /save FILE: the conversation as JSON {"model", "template", "messages": [{role, content}]}. */
static st_status chat_save(const struct chat *c, const char *path) {
    json_t *root = json_object(), *arr = json_array();
    if (!root || !arr) { json_decref(root); json_decref(arr); return st_error_set(ST_ERR_NOMEM, "chat: /save"); }
    json_object_set_new(root, "model", json_string(c->g->d->model->path));
    json_object_set_new(root, "template", json_string(st_chat_kind_name(c->kind)));
    for (size_t i = 0; i < c->n_msgs; i++) {
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string(c->msgs[i].role));
        json_object_set_new(m, "content", json_string(c->msgs[i].content));
        json_array_append_new(arr, m);
    }
    if (c->kind == ST_CHAT_NONE) {   /* raw: the text as it stands */
        int64_t n = 0;
        const int32_t *t = st_session_tokens(c->g->ss, &n);
        size_t len = 0;
        char *text = NULL;
        if (!st_tokenizer_decode(c->g->tok, t, n, ST_DETOK_SKIP_SPECIAL, NULL, 0, &len) &&
            (text = malloc(len + 1)) &&
            !st_tokenizer_decode(c->g->tok, t, n, ST_DETOK_SKIP_SPECIAL, text, len + 1, &len))
            json_object_set_new(root, "text", json_stringn(text, len));
        free(text);
    }
    json_object_set_new(root, "messages", arr);
    int rc = json_dump_file(root, path, JSON_INDENT(2));
    json_decref(root);
    if (rc != 0) {
        st_error_set(ST_ERR_IO, "chat: cannot write %s: %s", path, strerror(errno));
        return st_error_hint("check that the directory exists and is writable");
    }
    return ST_OK;
}

static void chat_help(void) {
    fprintf(stderr, "commands: /reset (forget the conversation, keep the system prompt), /save FILE (the "
                    "conversation as JSON), /exit (or Ctrl-D); Ctrl-C stops a reply\n");
}

/* Shows the prompt and waits until a line can be read; true when Ctrl-C came
 * first. The SIGINT handler may run on any thread (CPU workers, CUDA and MPI
 * threads), so it also writes a byte to a pipe that is polled beside stdin: a
 * Ctrl-C typed just as the prompt appears is never lost in the gap before the
 * read. stdin is unbuffered at a terminal, so a readable descriptor is the
 * whole story. */
static bool prompt_wait(void) {
    char drain[64];
    while (read(sigint_pipe[0], drain, sizeof drain) > 0) {}
    interrupted = 0;
    fprintf(stderr, "%s> %s", st_color(stderr, "1;32"), st_color_reset(stderr));
    struct pollfd p[2] = {{.fd = fileno(stdin), .events = POLLIN}, {.fd = sigint_pipe[0], .events = POLLIN}};
    int r;
    do {
        r = poll(p, 2, -1);
    } while (r < 0 && errno == EINTR && !interrupted);
    return interrupted && !(r > 0 && (p[0].revents & POLLIN));
}

/* Interactive chat: one user turn per line on stdin; the KV cache keeps what
 * the next turn shares with the last. */
static st_status run_chat(struct gen *g, int64_t max_new) {
    const struct gen_opts *o = g->o;
    const int64_t n_ctx = st_engine_n_ctx(g->e);
    struct chat c = {.g = g, .kind = o->raw ? ST_CHAT_NONE : st_deploy_chat_kind(g->d), .tty = isatty(fileno(stdin))};
    c.msgs = st_calloc(CHAT_MAX_MSGS, sizeof *c.msgs, "chat history");
    c.owned = st_calloc(CHAT_MAX_MSGS, sizeof *c.owned, "chat history");
    g->reply_cap = (size_t)n_ctx * 16 + 1024;
    g->reply = st_malloc(g->reply_cap, "chat reply");
    char *line = NULL;
    size_t line_cap = 0;
    st_status s = ST_OK;
    struct sigaction sa = {.sa_handler = on_sigint}, old_sa;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    if (!c.msgs || !c.owned || !g->reply) { s = ST_ERR_NOMEM; goto done; }
    c.system = o->system ? o->system : g->d->cfg->generation.system;
    if (c.system && c.kind != ST_CHAT_NONE) {
        if ((s = chat_push(&c, "system", c.system, strlen(c.system)))) goto done;
    }
    c.first = c.n_msgs;
    if (c.tty) {   /* see prompt_wait */
        setvbuf(stdin, NULL, _IONBF, 0);
        if (pipe2(sigint_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
            s = st_error_set(ST_ERR_IO, "chat: pipe: %s", strerror(errno));
            goto done;
        }
    }
    if (c.tty)
        fprintf(stderr, "chat with %s (template: %s)%s; /help lists the commands, Ctrl-D or /exit ends\n",
                g->d->model->path, c.kind == ST_CHAT_NONE ? "none, raw text" : st_chat_kind_name(c.kind),
                c.system && c.kind != ST_CHAT_NONE ? ", with a system prompt" : "");
    const char *first = o->prompt;
    const int64_t room = max_new > 0 ? ST_MIN(max_new, n_ctx / 2) : n_ctx / 4;
    for (;;) {
        const char *user;
        if (first) {
            user = first;
            first = NULL;
        } else {
            if (c.tty && prompt_wait()) {   /* Ctrl-C at the prompt, before a line: a new prompt */
                fprintf(stderr, "^C (Ctrl-D or /exit ends the chat)\n");
                continue;
            }
            if (!c.tty) interrupted = 0;
            errno = 0;
            ssize_t got = getline(&line, &line_cap, stdin);
            if (got < 0 && errno == EINTR) {   /* Ctrl-C at the prompt: a new prompt */
                clearerr(stdin);
                fprintf(stderr, "^C (Ctrl-D or /exit ends the chat)\n");
                continue;
            }
            if (got <= 0) break;
            while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
            if (!got) {
                if (c.tty) continue;   /* an empty line at a terminal: ask again */
                break;
            }
            user = line;
        }
        if (user[0] == '/') {
            if (!strcmp(user, "/exit") || !strcmp(user, "/quit")) break;
            if (!strcmp(user, "/help")) { chat_help(); continue; }
            if (!strcmp(user, "/reset")) {
                chat_drop(&c, c.first, c.n_msgs - c.first);
                free(c.prev);
                c.prev = NULL;
                st_session_close(g->ss);
                if ((s = st_session_open(g->sched, &g->ss))) goto done;   /* an empty slot */
                fprintf(stderr, "chat: the conversation is reset%s\n", c.first ? " (the system prompt is kept)" : "");
                continue;
            }
            if (!strncmp(user, "/save", 5) && (user[5] == ' ' || !user[5])) {
                const char *path = user + 5;
                while (*path == ' ') path++;
                if (!*path) { fprintf(stderr, "chat: /save needs a file name: /save FILE\n"); continue; }
                if (chat_save(&c, path)) st_cli_report(st_last_status());
                else fprintf(stderr, "wrote %s\n", path);
                continue;
            }
            if (strncmp(user, "//", 2)) {
                fprintf(stderr, "chat: unknown command '%s'; /help lists them (start a message with // to send a "
                                "slash)\n", user);
                continue;
            }
            user++;   /* "//text" sends "/text" */
        }
        c.turn++;
        if ((s = chat_tokens(&c, user, room))) {
            if (s != ST_ERR_USAGE) goto done;
            st_cli_report(s);   /* this turn cannot run; the chat goes on */
            s = ST_OK;
            continue;
        }
        g->reply_len = 0;
        g->reply[0] = 0;
        /* a Ctrl-C since the prompt was shown (typed after Enter) stops this reply */
        if ((s = run_session(g, c.ids, c.n_ids, ST_MIN(max_new > 0 ? max_new : n_ctx, n_ctx)))) goto done;
        putchar('\n');
        fflush(stdout);
        if (g->finish == ST_FINISH_CANCEL) fprintf(stderr, "[reply stopped]\n");
        if (g->finish == ST_FINISH_CONTEXT)
            fprintf(stderr, "%schat: the reply filled the context of %lld tokens; the next turn drops the oldest "
                    "exchanges%s\n", st_color(stderr, "33"), (long long)n_ctx, st_color_reset(stderr));
        if (o->stats || st_log_get_level() >= ST_LOG_INFO) {
            struct st_session_stats st;
            st_session_stats(g->ss, &st);
            fprintf(stderr, "chat turn %d: %lld prompt tokens, %lld reused from the KV cache, %lld prefilled; "
                    "%lld generated\n", c.turn, (long long)st.prompt_tokens, (long long)st.reused_tokens,
                    (long long)st.prefilled_tokens, (long long)st.generated_tokens);
        }
        if (c.kind != ST_CHAT_NONE) {
            if ((s = chat_push(&c, "assistant", g->reply, g->reply_len))) goto done;
            /* the reply's tokens follow the prompt only when no stop string cut them */
            char *p = g->finish != ST_FINISH_STOP || !g->gp.n_stop ? realloc(c.prev, c.prev_len + g->reply_len + 1) : NULL;
            if (p) {
                memcpy(p + c.prev_len, g->reply, g->reply_len);
                c.prev = p;
                c.prev_len += g->reply_len;
            } else {
                free(c.prev);
                c.prev = NULL;
            }
        }
    }
done:
    sigaction(SIGINT, &old_sa, NULL);
    for (int i = 0; i < 2; i++) {
        if (sigint_pipe[i] >= 0) close(sigint_pipe[i]);
        sigint_pipe[i] = -1;
    }
    for (size_t i = 0; c.owned && i < c.n_msgs; i++) free(c.owned[i]);
    free(c.owned);
    free(c.msgs);
    free(c.ids);
    free(c.prev);
    free(line);
    return s;
}

/* Sampling settings: config, then command-line overrides. */
static void gen_params(struct gen *g, bool ids_mode) {
    const struct gen_opts *o = g->o;
    struct st_sampler_params *p = &g->gp.sp;
    st_gen_params_default(&g->gp);
    st_deploy_sampler_params(g->d, p);
    if (ids_mode && isnan(o->temp)) p->temperature = 0.0f;   /* --tokens: greedy unless asked */
    if (!isnan(o->temp)) p->temperature = o->temp;
    if (o->top_k >= 0) p->top_k = o->top_k;
    if (!isnan(o->top_p)) p->top_p = o->top_p;
    if (!isnan(o->min_p)) p->min_p = o->min_p;
    if (!isnan(o->repeat_penalty)) p->repeat_penalty = o->repeat_penalty;
    if (!isnan(o->freq_penalty)) p->frequency_penalty = o->freq_penalty;
    if (!isnan(o->presence_penalty)) p->presence_penalty = o->presence_penalty;
    if (o->repeat_last_n >= -1) p->penalty_last_n = o->repeat_last_n;
    if (o->has_seed) p->seed = (uint64_t)o->seed;
    g->gp.ignore_eos = ids_mode;   /* ids out: exactly the count asked for */
}

/* --logits chooses on the host: a sampler unless greedy. */
static st_status make_host_sampler(struct gen *g) {
    const struct st_sampler_params *p = &g->gp.sp;
    bool penalties = p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f;
    if (p->temperature <= 0.0f && !penalties) return ST_OK;
    return st_sampler_init(p, g->n_vocab, st_engine_n_ctx(g->e), &g->sampler);
}

int st_cmd_generate(int argc, char **argv) {
    struct gen_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    if (st_mpi_rank() > 0) return st_deploy_follow(&o.dep);   /* under mpirun: prompt and output live on rank 0 */

    struct gen g = {.o = &o};
    o.dep.progress = true;
    int32_t *ids = NULL;
    int64_t n_ids = 0, ids_cap = 0;
    char *stdin_text = NULL;
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
        if (!g.d->context_fixed) {
            g.d->req.context = need;
        } else if (n_ids > g.d->req.context) {
            s = st_error_set(ST_ERR_USAGE, "generate: the prompt (%lld tokens) does not fit the context of %lld tokens",
                             (long long)n_ids, (long long)g.d->req.context);
            st_error_hint("raise --ctx (or 'context:' in the config), or shorten the prompt");
            goto done;
        }
        /* else: the output stops when the context is full, and says so */
    }
    g.d->req.batch = 1;   /* one sequence: the plan's KV memory is what runs */
    if (o.kv_dtype != -1) {   /* --kv-dtype: every stage's cache, planned with it (auto: the planner picks) */
        const int kv = o.kv_dtype == -2 ? -1 : o.kv_dtype;
        g.d->req.force_kv = kv;
        for (int i = 0; i < g.d->n_devs; i++) g.d->devs[i].force_kv = kv;
    }
    if ((s = st_deploy_plan(g.d))) goto done;
    if (!st_deploy_runnable(g.d)) {
        s = st_deploy_engine(g.d, &g.e);   /* says which device cannot run */
        goto done;
    }
    if (st_log_get_level() >= ST_LOG_INFO) st_plan_print(stderr, g.d->plan, false);
    if ((s = st_deploy_engine(g.d, &g.e))) goto done;
    g.n_vocab = st_engine_n_vocab(g.e);
    g.logits = st_malloc((size_t)g.n_vocab * sizeof(float), "logits row");
    if (!g.logits) { s = ST_ERR_NOMEM; goto done; }
    gen_params(&g, o.tokens != NULL);
    if (o.tokens && (o.logits || n_new == 0)) {
        if ((s = make_host_sampler(&g))) goto done;
        s = run_ids_logits(&g, ids, n_ids, n_new);
        goto stats;
    }
    struct st_sched_params sp = {.prefill_budget = g.d->plan->prefill_chunk};
    if ((s = st_sched_init(g.e, g.tok, &sp, &g.sched))) goto done;
    if ((s = st_session_open(g.sched, &g.ss))) goto done;
    for (int i = 0; i < o.n_stop; i++) g.gp.stop[g.gp.n_stop++] = o.stop[i];
    for (int i = 0; i < gen->n_stop && g.gp.n_stop < ST_GEN_MAX_STOP; i++) g.gp.stop[g.gp.n_stop++] = gen->stop[i];
    if (o.tokens) {
        g.ids_mode = true;
        g.gp.n_stop = 0;
        if ((s = run_session(&g, ids, n_ids, n_new))) goto done;
        putchar('\n');
        note_finish(&g);
    } else if (o.chat) {
        s = run_chat(&g, n_new);
    } else {
        fwrite(o.prompt, 1, strlen(o.prompt), stdout);
        s = run_session(&g, ids, n_ids, n_new);
        putchar('\n');
        fflush(stdout);
        if (!s) note_finish(&g);
    }
stats:
    if (!s && (o.stats || st_log_get_level() >= ST_LOG_INFO)) {
        fflush(stdout);
        fprintf(stderr, "prefill: %lld tokens in %.3f s (%.1f tok/s); decode: %lld tokens in %.3f s (%.2f tok/s)\n",
                (long long)g.n_prompt_tokens, g.prefill_s, g.prefill_s > 0 ? (double)g.n_prompt_tokens / g.prefill_s : 0.0,
                (long long)g.n_gen_tokens, g.decode_s, g.decode_s > 0 ? (double)g.n_gen_tokens / g.decode_s : 0.0);
    }
done:
    st_session_close(g.ss);
    st_sched_free(g.sched);
    st_sampler_free(g.sampler);
    free(g.reply);
    free(g.logits);
    st_tokenizer_free(g.tok);
    st_engine_free(g.e);
    st_deploy_free(g.d);
    free(ids);
    free(stdin_text);
    return s == ST_OK ? 0 : st_cli_report(s);
}
