/* Reading a completion request (orchestrator/server.h): the body's JSON,
 * every field's type and range, the messages through the chat template and
 * the prompt through the tokenizer. The server calls it from a connection
 * thread; tests/fuzz/fuzz_serve_request.c calls it without a socket or an
 * engine, so this file needs neither. */
#include "orchestrator/server.h"
#include "orchestrator/sampler.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CHAT_MAX_MESSAGES 4096      /* docs/limits.md */

static bool bad_set(struct st_server_request_error *b, unsigned status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Cuts s (n bytes) back to whole UTF-8 characters and terminates it; returns the new length. */
static size_t utf8_cut(char *s, size_t n) {
    size_t k = n, back = 0;
    while (k > 0 && back < 4 && ((unsigned char)s[k - 1] & 0xC0) == 0x80) { k--; back++; }
    if (k > 0) {
        unsigned char c = (unsigned char)s[k - 1];
        size_t want = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        if (want > 1 && back + 1 < want) n = k - 1;   /* the last character lost its tail */
    }
    s[n] = 0;
    return n;
}

/* Makes buf (cap bytes) valid UTF-8: a message becomes a JSON string, and
 * jansson refuses anything else (the client would get no answer at all). It
 * quotes the client's own bytes (a role, a model name, jansson's "near '...'")
 * and vsnprintf may have cut a character in two. */
static void utf8_fit(char *buf, size_t cap) {
    size_t n = utf8_cut(buf, strlen(buf));
    if (st_utf8_valid(buf, n)) return;
    char fixed[3 * 512 + 4];
    size_t m = st_utf8_lossy(buf, n, fixed, sizeof fixed - 1);
    if (m > cap - 1) m = cap - 1;
    memcpy(buf, fixed, m);
    buf[m] = 0;
    utf8_cut(buf, m);
}

static bool bad_set(struct st_server_request_error *b, unsigned status, const char *param, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->msg, sizeof b->msg, fmt, ap);
    va_end(ap);
    utf8_fit(b->msg, sizeof b->msg);
    snprintf(b->param, sizeof b->param, "%s", param ? param : "");
    b->status = status;
    return false;
}

/* Optional number field within [lo, hi]; false with b set on a wrong type or range. */
static bool get_num(json_t *body, const char *key, double lo, double hi, bool have_lo_open, double *out, bool *given,
                    struct st_server_request_error *b) {
    json_t *v = json_object_get(body, key);
    *given = false;
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) return bad_set(b, 400, key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi || (have_lo_open && x <= lo))
        return bad_set(b, 400, key, "'%s' is %g; it must be %s %g and at most %g", key, x,
                       have_lo_open ? "above" : "at least", lo, hi);
    *out = x;
    *given = true;
    return true;
}

static bool get_int(json_t *body, const char *key, long long lo, long long hi, long long *out, bool *given,
                    struct st_server_request_error *b) {
    json_t *v = json_object_get(body, key);
    *given = false;
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v)) return bad_set(b, 400, key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return bad_set(b, 400, key, "'%s' is %lld; it must be between %lld and %lld", key, x, lo, hi);
    *out = x;
    *given = true;
    return true;
}

static bool get_bool(json_t *body, const char *key, bool *out, struct st_server_request_error *b) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return bad_set(b, 400, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return true;
}

/* "logit_bias": {"token id": bias in [-100, 100], ...}, as OpenAI's: added
 * to those logits before sampling (greedy too). */
static bool get_logit_bias(const struct st_server_request_ctx *s, json_t *body, struct st_server_request *r,
                           struct st_server_request_error *b) {
    json_t *lb = json_object_get(body, "logit_bias");
    if (!lb || json_is_null(lb)) return true;
    if (!json_is_object(lb))
        return bad_set(b, 400, "logit_bias", "'logit_bias' must be an object mapping token ids to numbers");
    const size_t n = json_object_size(lb);
    if (n == 0) return true;
    if (n > ST_SAMPLER_MAX_BIAS)
        return bad_set(b, 400, "logit_bias", "'logit_bias' has %zu entries; at most %d", n, ST_SAMPLER_MAX_BIAS);
    r->bias_ids = malloc(n * sizeof *r->bias_ids);
    r->bias = malloc(n * sizeof *r->bias);
    if (!r->bias_ids || !r->bias) return bad_set(b, 500, NULL, "out of memory");
    const char *key;
    json_t *v;
    int k = 0;
    json_object_foreach(lb, key, v) {
        char *end;
        errno = 0;
        const long long id = strtoll(key, &end, 10);
        if (!*key || *end || errno || key[0] == '-' || key[0] == '+' || key[0] == ' ' || id < 0 || id >= s->n_vocab)
            return bad_set(b, 400, "logit_bias", "'logit_bias' key '%.40s' is not a token id in [0, %lld)", key,
                           (long long)s->n_vocab);
        if (!json_is_number(v) || !isfinite(json_number_value(v)) || fabs(json_number_value(v)) > 100.0)
            return bad_set(b, 400, "logit_bias", "'logit_bias' of token %lld must be a number from -100 to 100", id);
        for (int i = 0; i < k; i++)
            if (r->bias_ids[i] == (int32_t)id)
                return bad_set(b, 400, "logit_bias", "'logit_bias' names token %lld twice", id);
        r->bias_ids[k] = (int32_t)id;
        r->bias[k] = (float)json_number_value(v);
        k++;
    }
    r->gp.bias_ids = r->bias_ids;
    r->gp.bias = r->bias;
    r->gp.n_bias = k;
    return true;
}

/* Chat: "logprobs": true and "top_logprobs": 0..20. Completions (the legacy
 * form): "logprobs": 0..20, the number of alternatives. */
static bool get_logprobs(bool chat, json_t *body, struct st_server_request *r, struct st_server_request_error *b) {
    long long k = 0;
    bool given = false;
    if (chat) {
        if (!get_bool(body, "logprobs", &r->gp.logprobs, b)) return false;
        if (!get_int(body, "top_logprobs", 0, ST_GEN_MAX_TOP_LOGPROBS, &k, &given, b)) return false;
        if (given && k > 0 && !r->gp.logprobs)
            return bad_set(b, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
    } else {
        json_t *lp = json_object_get(body, "logprobs");
        if (json_is_boolean(lp))   /* as some clients send it: false is off, true the chosen token's alone */
            r->gp.logprobs = json_is_true(lp);
        else if (!get_int(body, "logprobs", 0, ST_GEN_MAX_TOP_LOGPROBS, &k, &given, b))
            return false;
        r->gp.logprobs = r->gp.logprobs || given;
    }
    r->gp.top_logprobs = (int)k;
    return true;
}

/* The settings every completion takes. */
static bool parse_common(const struct st_server_request_ctx *s, bool chat, json_t *body, struct st_server_request *r,
                         struct st_server_request_error *b) {
    json_t *m = json_object_get(body, "model");
    if (m && !json_is_null(m)) {
        if (!json_is_string(m)) return bad_set(b, 400, "model", "'model' must be a string");
        if (strcmp(json_string_value(m), s->model_name)) {
            bad_set(b, 404, "model", "the model '%s' does not exist; this server runs '%s'", json_string_value(m),
                    s->model_name);
            snprintf(b->code, sizeof b->code, "model_not_found");
            return false;
        }
    }
    long long n = 1;
    bool given;
    if (!get_int(body, "n", 1, 1, &n, &given, b)) {
        snprintf(b->msg, sizeof b->msg, "'n' must be 1: this server returns one choice per request");
        return false;
    }
    if (!get_bool(body, "stream", &r->stream, b)) return false;
    /* extensions (as vLLM): ignore the model's end-of-text, return the reply's token ids */
    if (!get_bool(body, "ignore_eos", &r->gp.ignore_eos, b)) return false;
    if (!get_bool(body, "return_token_ids", &r->return_ids, b)) return false;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) return bad_set(b, 400, "stream_options", "'stream_options' must be an object");
        if (!get_bool(so, "include_usage", &r->include_usage, b)) {
            snprintf(b->param, sizeof b->param, "stream_options.include_usage");
            return false;
        }
    }
    if (!get_logprobs(chat, body, r, b)) return false;
    json_t *tools = json_object_get(body, "tools");
    if (tools && !json_is_null(tools) && !(json_is_array(tools) && json_array_size(tools) == 0))
        return bad_set(b, 400, "tools", "'tools' (function calling) is not supported by this server");
    json_t *rf = json_object_get(body, "response_format");
    if (rf && !json_is_null(rf)) {
        json_t *type = json_is_object(rf) ? json_object_get(rf, "type") : NULL;
        if (!json_is_string(type))
            return bad_set(b, 400, "response_format", "'response_format' must be an object with a string 'type'");
        if (strcmp(json_string_value(type), "text"))
            return bad_set(b, 400, "response_format", "'response_format' of type '%s' is not supported by this server "
                           "(only 'text': the output is not constrained to JSON)", json_string_value(type));
    }
    if (!get_logit_bias(s, body, r, b)) return false;

    struct st_sampler_params *sp = &r->gp.sp;
    *sp = s->sampler;
    double x;
    long long i;
    if (!get_num(body, "temperature", 0.0, 2.0, false, &x, &given, b)) return false;
    if (given) sp->temperature = (float)x;
    if (!get_num(body, "top_p", 0.0, 1.0, true, &x, &given, b)) return false;
    if (given) sp->top_p = (float)x;
    if (!get_int(body, "top_k", 0, INT32_MAX, &i, &given, b)) return false;
    if (given) sp->top_k = i;
    if (!get_num(body, "min_p", 0.0, 1.0, false, &x, &given, b)) return false;
    if (given) sp->min_p = (float)x;
    if (!get_num(body, "presence_penalty", -2.0, 2.0, false, &x, &given, b)) return false;
    if (given) sp->presence_penalty = (float)x;
    if (!get_num(body, "frequency_penalty", -2.0, 2.0, false, &x, &given, b)) return false;
    if (given) sp->frequency_penalty = (float)x;
    if (!get_num(body, "repeat_penalty", 0.0, 10.0, true, &x, &given, b)) return false;
    if (given) sp->repeat_penalty = (float)x;
    if (!get_int(body, "seed", INT64_MIN, INT64_MAX, &i, &given, b)) return false;
    if (given) sp->seed = (uint64_t)i;
    long long mt = 0;
    bool mt_given = false;
    if (!get_int(body, "max_completion_tokens", 1, 1LL << 31, &mt, &mt_given, b)) return false;
    if (!mt_given && !get_int(body, "max_tokens", 1, 1LL << 31, &mt, &mt_given, b)) return false;
    r->gp.max_tokens = mt_given ? mt : s->default_max_tokens;
    json_t *stop = json_object_get(body, "stop");
    if (stop && !json_is_null(stop)) {
        json_t *one[1] = {stop};
        size_t n_stop = json_is_array(stop) ? json_array_size(stop) : 1;
        if (!json_is_string(stop) && !json_is_array(stop))
            return bad_set(b, 400, "stop", "'stop' must be a string or an array of strings");
        if (n_stop > ST_GEN_MAX_STOP) return bad_set(b, 400, "stop", "'stop' has %zu strings (at most %d)", n_stop, ST_GEN_MAX_STOP);
        for (size_t k = 0; k < n_stop; k++) {
            json_t *v = json_is_array(stop) ? json_array_get(stop, k) : one[0];
            if (!json_is_string(v)) return bad_set(b, 400, "stop", "'stop[%zu]' must be a string", k);
            size_t len = json_string_length(v);
            if (len == 0 || len > ST_GEN_STOP_MAX_BYTES)
                return bad_set(b, 400, "stop", "'stop[%zu]' is %zu bytes (1 to %d)", k, len, ST_GEN_STOP_MAX_BYTES);
            r->stops[k] = st_strdup(json_string_value(v), "a stop string");
            if (!r->stops[k]) return bad_set(b, 500, NULL, "out of memory");
            r->gp.stop[r->gp.n_stop++] = r->stops[k];
        }
    }
    return true;
}

/* Tokenizes text (the tokenizer is not reentrant). */
static bool encode(const struct st_server_request_ctx *s, const char *text, size_t len, unsigned flags,
                   struct st_server_request *r, struct st_server_request_error *b) {
    int64_t cap = 0;
    if (s->tok_mu) pthread_mutex_lock(s->tok_mu);
    st_status rc = st_tokenizer_encode_alloc(s->tok, text, len, flags, &r->ids, &r->n_ids, &cap);
    if (s->tok_mu) pthread_mutex_unlock(s->tok_mu);
    if (rc) return bad_set(b, 400, NULL, "the prompt cannot be tokenized: %s", st_last_error());
    return true;
}

/* A message's content: a string, or an array of {"type": "text", "text": ...} parts. */
static bool message_text(json_t *content, size_t k, char **out, struct st_server_request_error *b) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", k);
    if (json_is_string(content)) {
        *out = st_strndup(json_string_value(content), json_string_length(content), "a message");
        return *out ? true : bad_set(b, 500, NULL, "out of memory");
    }
    if (json_is_null(content)) {
        *out = st_strdup("", "a message");
        return *out ? true : bad_set(b, 500, NULL, "out of memory");
    }
    if (!json_is_array(content)) return bad_set(b, 400, param, "'%s' must be a string or an array of text parts", param);
    size_t total = 0, i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) || strcmp(json_string_value(type), "text") || !json_is_string(text))
            return bad_set(b, 400, param, "'%s[%zu]' must be {\"type\": \"text\", \"text\": ...} (images and audio are "
                           "not supported)", param, i);
        total += json_string_length(text);
    }
    char *t = st_malloc(total + 1, "a message");
    if (!t) return bad_set(b, 500, NULL, "out of memory");
    size_t at = 0;
    json_array_foreach(content, i, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(t + at, json_string_value(text), json_string_length(text));
        at += json_string_length(text);
    }
    t[at] = 0;
    *out = t;
    return true;
}

static bool parse_chat(const struct st_server_request_ctx *s, json_t *body, struct st_server_request *r, struct st_server_request_error *b) {
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return bad_set(b, 400, "messages", "'messages' must be a non-empty array of {\"role\", \"content\"}");
    size_t n = json_array_size(msgs);
    if (n > CHAT_MAX_MESSAGES) return bad_set(b, 400, "messages", "'messages' has %zu entries (at most %d)", n, CHAT_MAX_MESSAGES);
    bool thinking = true;
    json_t *kw = json_object_get(body, "chat_template_kwargs");
    if (kw && json_is_object(kw) && !get_bool(kw, "enable_thinking", &thinking, b)) return false;
    struct st_chat_msg *m = st_calloc(n, sizeof *m, "messages");
    char **texts = st_calloc(n, sizeof *texts, "messages");
    bool ok = m && texts;
    if (!ok) bad_set(b, 500, NULL, "out of memory");
    for (size_t k = 0; ok && k < n; k++) {
        json_t *msg = json_array_get(msgs, k);
        json_t *role = json_object_get(msg, "role");
        if (!json_is_object(msg) || !json_is_string(role)) {
            char p[48];
            snprintf(p, sizeof p, "messages[%zu].role", k);
            ok = bad_set(b, 400, p, "'messages[%zu]' must be an object with a string 'role'", k);
            break;
        }
        const char *rv = json_string_value(role);
        if (strcmp(rv, "system") && strcmp(rv, "user") && strcmp(rv, "assistant") && strcmp(rv, "developer")) {
            char p[48];
            snprintf(p, sizeof p, "messages[%zu].role", k);
            ok = bad_set(b, 400, p, "'messages[%zu].role' is '%s'; it must be system, developer, user or assistant", k, rv);
            break;
        }
        if (!(ok = message_text(json_object_get(msg, "content"), k, &texts[k], b))) break;
        m[k] = (struct st_chat_msg){.role = strcmp(rv, "developer") ? rv : "system", .content = texts[k]};
    }
    char *text = NULL;
    size_t len = 0;
    if (ok) {
        if (s->chat_kind == ST_CHAT_NONE) {
            /* no template: the messages' texts, one per line */
            size_t total = 1;
            for (size_t k = 0; k < n; k++) total += strlen(texts[k]) + 1;
            text = st_malloc(total, "the prompt");
            if (!text) ok = bad_set(b, 500, NULL, "out of memory");
            for (size_t k = 0; ok && k < n; k++) {
                size_t l = strlen(texts[k]);
                memcpy(text + len, texts[k], l);
                len += l;
                if (k + 1 < n) text[len++] = '\n';
            }
            if (text) text[len] = 0;
        } else if (st_chat_render(s->chat_kind, m, n, true, thinking, &text, &len)) {
            ok = bad_set(b, 400, "messages", "%s", st_last_error());
        }
    }
    if (ok) ok = encode(s, text, len, s->chat_kind == ST_CHAT_NONE ? ST_TOK_DEFAULT : ST_TOK_PARSE_SPECIAL, r, b);
    free(text);
    for (size_t k = 0; texts && k < n; k++) free(texts[k]);
    free(texts);
    free(m);
    return ok;
}

static bool parse_completion(const struct st_server_request_ctx *s, json_t *body, struct st_server_request *r, struct st_server_request_error *b) {
    json_t *p = json_object_get(body, "prompt");
    if (!get_bool(body, "echo", &r->echo, b)) return false;
    json_t *suffix = json_object_get(body, "suffix");
    if (suffix && !json_is_null(suffix)) return bad_set(b, 400, "suffix", "'suffix' is not supported by this server");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) p = json_array_get(p, 0);
    if (json_is_string(p)) {
        if (!encode(s, json_string_value(p), json_string_length(p), ST_TOK_DEFAULT, r, b)) return false;
        if (r->echo && !(r->echo_text = st_strndup(json_string_value(p), json_string_length(p), "the echoed prompt")))
            return bad_set(b, 500, NULL, "out of memory");
        return true;
    }
    if (json_is_array(p) && json_array_size(p) > 0 && json_is_integer(json_array_get(p, 0))) {
        size_t n = json_array_size(p), i;
        json_t *v;
        r->ids = st_malloc(n * sizeof *r->ids, "the prompt ids");
        if (!r->ids) return bad_set(b, 500, NULL, "out of memory");
        json_array_foreach(p, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= s->n_vocab)
                return bad_set(b, 400, "prompt", "'prompt[%zu]' must be a token id in [0, %lld)", i,
                               (long long)s->n_vocab);
            r->ids[i] = (int32_t)json_integer_value(v);
        }
        r->n_ids = (int64_t)n;
        if (r->echo) {
            size_t len = 0;
            if (s->tok_mu) pthread_mutex_lock(s->tok_mu);
            st_status rc = st_tokenizer_decode(s->tok, r->ids, r->n_ids, ST_DETOK_SKIP_SPECIAL, NULL, 0, &len);
            if (!rc && (r->echo_text = st_malloc(len + 1, "the echoed prompt")))
                rc = st_tokenizer_decode(s->tok, r->ids, r->n_ids, ST_DETOK_SKIP_SPECIAL, r->echo_text, len + 1, &len);
            if (s->tok_mu) pthread_mutex_unlock(s->tok_mu);
            if (rc || !r->echo_text) return bad_set(b, 400, "prompt", "the prompt's ids cannot be decoded for 'echo'");
        }
        return true;
    }
    if (json_is_array(p) && json_array_size(p) > 1)
        return bad_set(b, 400, "prompt", "'prompt' with several prompts is not supported: send one request per prompt");
    return bad_set(b, 400, "prompt", "'prompt' must be a string or an array of token ids");
}

/* Reads a completion request's body as the server does, without a socket or
 * an engine (server.h; tests/fuzz/fuzz_serve_request.c feeds it any bytes). */
unsigned st_server_request_read(const struct st_server_request_ctx *x, bool chat, const char *body, size_t len,
                                struct st_server_request *r, struct st_server_request_error *b) {
    memset(r, 0, sizeof *r);
    memset(b, 0, sizeof *b);
    st_gen_params_default(&r->gp);
    json_error_t je;
    json_t *j = json_loadb(body ? body : "", len, 0, &je);
    bool ok = j != NULL;
    if (!ok)
        bad_set(b, 400, NULL, "the request body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                je.column);
    else if (!json_is_object(j))
        ok = bad_set(b, 400, NULL, "the request body must be a JSON object");
    ok = ok && parse_common(x, chat, j, r, b) && (chat ? parse_chat(x, j, r, b) : parse_completion(x, j, r, b));
    json_decref(j);
    if (ok && r->n_ids == 0) ok = bad_set(b, 400, chat ? "messages" : "prompt", "the prompt is empty");
    if (ok && r->n_ids > x->n_ctx) {
        ok = bad_set(b, 400, chat ? "messages" : "prompt",
                     "this model's context is %lld tokens, but the prompt has %lld tokens", (long long)x->n_ctx,
                     (long long)r->n_ids);
        snprintf(b->code, sizeof b->code, "context_length_exceeded");
    }
    if (ok) return 200;
    st_server_request_clear(r);
    if (!b->status) b->status = 400;
    return b->status;
}

void st_server_request_clear(struct st_server_request *r) {
    if (!r) return;
    for (int i = 0; i < ST_GEN_MAX_STOP; i++) free(r->stops[i]);
    free(r->ids);
    free(r->echo_text);
    free(r->bias_ids);
    free(r->bias);
    memset(r, 0, sizeof *r);
    st_gen_params_default(&r->gp);
}

