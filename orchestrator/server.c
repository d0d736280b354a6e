/* The OpenAI-compatible server: libmicrohttpd connections feed a queue that
 * the engine thread admits into scheduler sessions (orchestrator/server.h). */
#include "orchestrator/server.h"
#include "orchestrator/session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 100                 /* how often waiting threads look for a vanished client */
#define STREAM_BLOCK (16 * 1024)

enum endpoint { EP_CHAT = 0, EP_COMPLETION, EP_MODELS, EP_HEALTH, EP_METRICS, EP_OTHER, EP_COUNT };
static const char *const ep_names[EP_COUNT] = {"chat_completions", "completions", "models", "health", "metrics", "other"};

/* One completion request, shared by its connection thread and the engine
 * thread (every field after `lock-protected` under srv->mu). */
struct server;

struct req {
    struct server *srv;
    enum endpoint ep;
    struct st_server_request q;     /* what the body asks for (st_server_request_read) */
    int32_t *reply_ids;             /* with q.return_ids: (reply_n) */
    int64_t reply_n;
    char id[48];
    long long created;
    double t0;
    char peer[64];
    int fd;                         /* the client's socket, for noticing that it went away */
    struct req *next;               /* queue link */
    /* lock-protected */
    int refs;                       /* the connection and (once queued) the engine */
    st_session *ss;                 /* engine thread: its session while running */
    char *out;                      /* the generated text so far */
    size_t out_len, out_cap;
    bool done, cancelled;
    st_finish finish;
    st_status err_status;
    char err[1024];
    int64_t prompt_tokens, completion_tokens, reused_tokens;
    /* the streaming writer (connection thread only) */
    char *pend;                     /* SSE bytes built and not yet handed to MHD */
    size_t pend_len, pend_off, pend_cap;
    size_t sent;                    /* of out, bytes already in events */
    json_t *lp;                     /* lock-protected: with logprobs, the tokens' entries (chat form) not yet
                                       in a chunk (streaming) or all of them */
    size_t lp_offset;               /* completions: text_offset of the next token (the echo, then token bytes) */
    int phase;                      /* 0 nothing sent, 1 streaming, 2 the end is built */
};

struct server {
    const st_deploy *d;
    st_engine *e;
    st_tokenizer_t *tok;
    const struct st_server_options *o;
    st_sched *sched;
    st_chat_kind chat_kind;
    int64_t n_ctx, n_slots;
    struct st_server_request_ctx rx; /* what reading a request needs */
    struct MHD_Daemon *mhd;
    pthread_mutex_t mu;             /* everything below, and the requests' shared fields */
    pthread_cond_t cv_engine;       /* new work for the engine thread */
    pthread_cond_t cv_out;          /* some request has new output */
    pthread_mutex_t tok_mu;         /* the tokenizer encodes one text at a time */
    struct req *queue_head, *queue_tail;
    int64_t queued;
    struct req **running;           /* (n_slots) requests holding a session */
    bool stopping, broken;
    char broken_msg[512];
    /* metrics */
    int64_t requests[EP_COUNT][6];  /* by endpoint and status class: 2xx 4xx(400) 401 404 413/429 5xx */
    int64_t prompt_tokens, completion_tokens, reused_tokens;
    int64_t cancelled_total;
    struct st_sched_stats sst;
    double *busy_s;                 /* (n_stages) */
};

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

/* ---- small helpers ----------------------------------------------------------------- */

static double now_s(void) { return st_time_s(); }

static void cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(cv, mu, &ts);
}

/* True when the client has closed its end (or the socket failed). */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

static int status_class(unsigned status) {
    if (status < 400) return 0;
    if (status == 401) return 2;
    if (status == 404) return 3;
    if (status == 413 || status == 429) return 4;
    if (status >= 500) return 5;
    return 1;
}
static const char *const class_names[6] = {"2xx", "400", "401", "404", "413_429", "5xx"};

static void count_request(struct server *s, enum endpoint ep, unsigned status) {
    pthread_mutex_lock(&s->mu);
    s->requests[ep][status_class(status)]++;
    pthread_mutex_unlock(&s->mu);
}

static void log_line(struct server *s, const char *peer, const char *method, const char *url, unsigned status,
                     int64_t prompt, int64_t completion, double secs, const char *extra) {
    if (s->o->quiet) return;
    fprintf(stderr, "%s %s %s %u prompt=%lld completion=%lld %.3fs%s%s\n", peer, method, url, status, (long long)prompt,
            (long long)completion, secs, extra && *extra ? " " : "", extra ? extra : "");
}

static enum MHD_Result send_buffer(struct MHD_Connection *c, unsigned status, const char *type, const char *body,
                                   size_t len, const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j, const char *retry_after) {
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text) return MHD_NO;
    enum MHD_Result rc = send_buffer(c, status, "application/json", text, strlen(text), retry_after);
    free(text);
    return rc;
}

static const char *error_type(unsigned status) {
    switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "server_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static json_t *error_object(unsigned status, const char *message, const char *param, const char *code) {
    json_t *e = json_pack("{s:s, s:s, s:o, s:o}", "message", message, "type", error_type(status), "param",
                          param ? json_string(param) : json_null(), "code", code ? json_string(code) : json_null());
    return json_pack("{s:o}", "error", e);
}

/* ---- requests --------------------------------------------------------------------- */

static void req_free(struct req *r) {
    if (!r) return;
    st_server_request_clear(&r->q);
    free(r->reply_ids);
    free(r->out);
    free(r->pend);
    json_decref(r->lp);
    free(r);
}

/* Drops one reference (under s->mu); the last one frees the request. */
static void req_release(struct req *r) {
    if (--r->refs == 0) req_free(r);
}

/* ---- the engine side --------------------------------------------------------------- */

/* A JSON string of possibly invalid UTF-8 (replacement characters where needed). */
static json_t *json_text(const char *t, size_t len) {
    json_t *j = json_stringn(t ? t : "", t ? len : 0);
    if (j) return j;
    char *fixed = malloc(3 * len + 1);
    if (!fixed) return json_string("");
    size_t n = st_utf8_lossy(t, len, fixed, 3 * len + 1);
    j = json_stringn(fixed, n);
    free(fixed);
    return j ? j : json_string("");
}

/* {"token", "logprob", "bytes"} of one id (jansson takes no infinity: -9999 as OpenAI's "never") */
static json_t *lp_token(const struct server *s, int32_t id, float logprob) {
    size_t n = 0;
    const char *b = st_tokenizer_token_bytes(s->tok, id, &n);
    json_t *bytes = json_array();
    for (size_t i = 0; b && i < n; i++) json_array_append_new(bytes, json_integer((unsigned char)b[i]));
    return json_pack("{s:o, s:f, s:o}", "token", json_text(b, b ? n : 0), "logprob",
                     isfinite(logprob) ? (double)logprob : -9999.0, "bytes", bytes);
}

/* One generated token's entry, as OpenAI's chat logprobs.content[i] */
static json_t *lp_entry(const struct server *s, int32_t id, const struct st_gen_logprob *lp) {
    json_t *e = lp_token(s, id, lp->logprob), *top = json_array();
    for (int i = 0; i < lp->n_top; i++) json_array_append_new(top, lp_token(s, lp->top_ids[i], lp->top[i]));
    json_object_set_new(e, "top_logprobs", top);
    return e;
}

/* The scheduler's reports (engine thread). */
static void on_event(void *user, st_session *ss, const struct st_gen_event *ev) {
    struct req *r = user;
    struct server *s = r->srv;
    pthread_mutex_lock(&s->mu);
    if (ev->lp) {
        if (!r->lp) r->lp = json_array();
        json_array_append_new(r->lp, lp_entry(s, ev->token, ev->lp));
    }
    if (ev->len) {
        if (r->out_len + ev->len + 1 > r->out_cap) {
            size_t cap = ST_MAX(2 * r->out_cap, r->out_len + ev->len + 1);
            char *p = realloc(r->out, cap);
            if (p) { r->out = p; r->out_cap = cap; }
        }
        if (r->out_len + ev->len + 1 <= r->out_cap) {
            memcpy(r->out + r->out_len, ev->text, ev->len);
            r->out_len += ev->len;
            r->out[r->out_len] = 0;
        }
    }
    if (ev->finish) {
        struct st_session_stats st;
        st_session_stats(ss, &st);
        r->completion_tokens = st.generated_tokens;
        r->reused_tokens = st.reused_tokens;
        s->completion_tokens += r->completion_tokens;   /* counted before the answer can leave */
        s->reused_tokens += r->reused_tokens;
        if (r->q.return_ids && st.generated_tokens > 0) {
            int64_t n = 0;
            const int32_t *t = st_session_tokens(ss, &n);
            if ((r->reply_ids = malloc((size_t)st.generated_tokens * sizeof(int32_t)))) {
                memcpy(r->reply_ids, t + n - st.generated_tokens, (size_t)st.generated_tokens * sizeof(int32_t));
                r->reply_n = st.generated_tokens;
            }
        }
        r->finish = ev->finish;
        if (ev->finish == ST_FINISH_ERROR) {
            r->err_status = ev->status;
            snprintf(r->err, sizeof r->err, "%s", st_last_error());
        }
        r->done = true;
    }
    pthread_cond_broadcast(&s->cv_out);
    pthread_mutex_unlock(&s->mu);
}

/* Finishes a request that never ran (under s->mu). */
static void req_fail(struct server *s, struct req *r, st_status status, const char *msg) {
    r->done = true;
    r->finish = ST_FINISH_ERROR;
    r->err_status = status;
    snprintf(r->err, sizeof r->err, "%s", msg);
    pthread_cond_broadcast(&s->cv_out);
}

/* Queued requests into free KV slots (engine thread, under s->mu). */
static void admit(struct server *s) {
    while (s->queue_head) {
        struct req *r = s->queue_head;
        if (r->cancelled) {   /* its client left while it waited */
            s->queue_head = r->next;
            if (!s->queue_head) s->queue_tail = NULL;
            s->queued--;
            r->done = true;
            r->finish = ST_FINISH_CANCEL;
            s->cancelled_total++;
            req_release(r);
            continue;
        }
        st_session *ss = NULL;
        /* the slot that still holds the longest part of this prompt (a chat client resends the conversation) */
        if (st_session_open_for(s->sched, r->q.ids, r->q.n_ids, &ss) != ST_OK) break;   /* every slot is taken */
        s->queue_head = r->next;
        if (!s->queue_head) s->queue_tail = NULL;
        s->queued--;
        st_status rc = st_session_start(ss, r->q.ids, r->q.n_ids, &r->q.gp, on_event, r);
        if (rc) {
            req_fail(s, r, rc, st_last_error());
            st_session_close(ss);
            req_release(r);
            continue;
        }
        r->ss = ss;
        r->prompt_tokens = r->q.n_ids;
        s->prompt_tokens += r->q.n_ids;
        s->running[st_session_slot(ss)] = r;
    }
}

/* After a step (engine thread, under s->mu): finished requests give their
 * slots back; those whose client left are cancelled. */
static void settle(struct server *s) {
    for (int64_t i = 0; i < s->n_slots; i++) {
        struct req *r = s->running[i];
        if (!r) continue;
        if (r->done) {
            if (r->finish == ST_FINISH_CANCEL) s->cancelled_total++;

            st_session_close(r->ss);
            r->ss = NULL;
            s->running[i] = NULL;
            req_release(r);
        } else if (r->cancelled) {
            st_session_cancel(r->ss);
        }
    }
    st_sched_stats(s->sched, &s->sst);
    for (int i = 0; i < s->sst.n_stages; i++) s->busy_s[i] = s->sst.stage_busy_ms[i] * 1e-3;
}

static int64_t n_running(const struct server *s) {
    int64_t n = 0;
    for (int64_t i = 0; i < s->n_slots; i++) n += s->running[i] != NULL;
    return n;
}

/* ---- responses -------------------------------------------------------------------- */

static const char *finish_reason(st_finish f) {
    switch (f) {
    case ST_FINISH_LENGTH:
    case ST_FINISH_CONTEXT: return "length";
    default: return "stop";
    }
}

static json_t *usage_object(const struct req *r) {
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)r->prompt_tokens, "completion_tokens",
                     (json_int_t)r->completion_tokens, "total_tokens", (json_int_t)(r->prompt_tokens + r->completion_tokens));
}

/* A choice's "logprobs" for the entries (taken; NULL: null): chat {"content": [...]}; completions the legacy
 * arrays, text_offset counted on from *offset. */
static json_t *logprobs_object(enum endpoint ep, json_t *entries, size_t *offset) {
    if (!entries) return json_null();
    if (ep == EP_CHAT) return json_pack("{s:o, s:n}", "content", entries, "refusal");
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        json_array_append(tokens, json_object_get(e, "token"));
        json_array_append(lps, json_object_get(e, "logprob"));
        json_t *top = json_object(), *t;
        size_t k;
        json_array_foreach(json_object_get(e, "top_logprobs"), k, t)
            json_object_set(top, json_string_value(json_object_get(t, "token")), json_object_get(t, "logprob"));
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)*offset));
        *offset += json_array_size(json_object_get(e, "bytes"));
    }
    json_decref(entries);
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops,
                     "text_offset", offs);
}

/* The whole answer of a request that ran without streaming (under s->mu). */
static json_t *full_response(struct server *s, struct req *r) {
    json_t *choice;
    json_t *lp = r->lp ? r->lp : r->q.gp.logprobs ? json_array() : NULL;   /* asked, no token: an empty list */
    r->lp = NULL;
    if (r->ep == EP_CHAT) {
        json_t *msg = json_pack("{s:s, s:o}", "role", "assistant", "content", json_text(r->out, r->out_len));
        choice = json_pack("{s:i, s:o, s:o, s:s}", "index", 0, "message", msg, "logprobs",
                           logprobs_object(r->ep, lp, &r->lp_offset), "finish_reason", finish_reason(r->finish));
    } else {
        size_t el = r->q.echo_text ? strlen(r->q.echo_text) : 0;
        char *all = malloc(el + r->out_len + 1);
        if (all) {
            memcpy(all, r->q.echo_text ? r->q.echo_text : "", el);
            memcpy(all + el, r->out ? r->out : "", r->out_len);
        }
        choice = json_pack("{s:i, s:o, s:o, s:s}", "index", 0, "text", json_text(all, all ? el + r->out_len : 0),
                           "logprobs", logprobs_object(r->ep, lp, &r->lp_offset), "finish_reason",
                           finish_reason(r->finish));
        free(all);
    }
    if (r->q.return_ids) {
        json_t *ids = json_array();
        for (int64_t i = 0; i < r->reply_n; i++) json_array_append_new(ids, json_integer(r->reply_ids[i]));
        json_object_set_new(choice, "token_ids", ids);
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:[o], s:o}", "id", r->id, "object",
                     r->ep == EP_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)r->created,
                     "model", s->o->model_name, "choices", choice, "usage", usage_object(r));
}

/* One server-sent event carrying a chunk (text may be NULL: a role or final chunk), with the logprob
 * entries of the tokens generated since the last chunk (the text may lag behind them: held for a stop string). */
static json_t *chunk(struct server *s, struct req *r, const char *text, size_t len, bool role, const char *finish) {
    json_t *c;
    json_t *lp = logprobs_object(r->ep, r->lp, &r->lp_offset);
    r->lp = NULL;
    if (r->ep == EP_CHAT) {
        json_t *delta = json_object();
        if (role) json_object_set_new(delta, "role", json_string("assistant"));
        if (text || role) json_object_set_new(delta, "content", json_text(text, len));
        c = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "delta", delta, "logprobs", lp, "finish_reason",
                      finish ? json_string(finish) : json_null());
    } else {
        c = json_pack("{s:i, s:o, s:o, s:o}", "index", 0, "text", json_text(text, len), "logprobs", lp, "finish_reason",
                      finish ? json_string(finish) : json_null());
    }
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", r->id, "object",
                          r->ep == EP_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)r->created, "model", s->o->model_name, "choices", c);
    if (r->q.include_usage) json_object_set_new(j, "usage", json_null());
    return j;
}

/* Appends "data: <json>\n\n" (or data: [DONE]) to the request's pending bytes. */
static bool pend_event(struct req *r, json_t *j, const char *raw) {
    char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    const char *body = text ? text : raw;
    if (!body) return false;
    size_t need = r->pend_len + strlen(body) + 9;   /* "data: " body "\n\n" NUL */
    if (need > r->pend_cap) {
        char *p = realloc(r->pend, need * 2);
        if (!p) { free(text); return false; }
        r->pend = p;
        r->pend_cap = need * 2;
    }
    r->pend_len += (size_t)sprintf(r->pend + r->pend_len, "data: %s\n\n", body);
    free(text);
    return true;
}

/* The streaming body: waits for new text, sends it as chunks, then the end. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    struct req *r = cls;
    struct server *s = r->srv;
    (void)pos;
    if (r->pend_off == r->pend_len) {
        r->pend_off = r->pend_len = 0;
        if (r->phase == 2) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&s->mu);
        while (r->phase == 1 && !r->done && r->sent == r->out_len && !r->cancelled) {
            cond_wait_ms(&s->cv_out, &s->mu, WAIT_MS);
            if (client_gone(r->fd)) {
                r->cancelled = true;
                pthread_cond_signal(&s->cv_engine);
            }
        }
        if (r->cancelled && !r->done) {
            pthread_mutex_unlock(&s->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        bool ok = true;
        if (r->phase == 0) {
            if (r->ep == EP_CHAT) ok = pend_event(r, chunk(s, r, NULL, 0, true, NULL), NULL);
            if (r->q.echo_text) ok = ok && pend_event(r, chunk(s, r, r->q.echo_text, strlen(r->q.echo_text), false, NULL), NULL);
            r->phase = 1;
        }
        if (ok && r->sent < r->out_len) {
            ok = pend_event(r, chunk(s, r, r->out + r->sent, r->out_len - r->sent, false, NULL), NULL);
            r->sent = r->out_len;
        }
        if (ok && r->done && r->phase == 1) {
            if (r->finish == ST_FINISH_ERROR) {
                ok = pend_event(r, error_object(500, r->err, NULL, st_status_name(r->err_status)), NULL);
            } else {
                ok = pend_event(r, chunk(s, r, NULL, 0, false, finish_reason(r->finish)), NULL);
                if (ok && r->q.include_usage) {
                    json_t *u = json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", r->id, "object",
                                          r->ep == EP_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                                          (json_int_t)r->created, "model", s->o->model_name, "choices", "usage",
                                          usage_object(r));
                    ok = pend_event(r, u, NULL);
                }
            }
            ok = ok && pend_event(r, NULL, "[DONE]");
            r->phase = 2;
        }
        pthread_mutex_unlock(&s->mu);
        if (!ok) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (r->pend_len == 0) return r->phase == 2 ? MHD_CONTENT_READER_END_OF_STREAM : 0;
    }
    size_t n = ST_MIN(max, r->pend_len - r->pend_off);
    memcpy(buf, r->pend + r->pend_off, n);
    r->pend_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    struct req *r = cls;
    struct server *s = r->srv;
    pthread_mutex_lock(&s->mu);
    const bool complete = r->done && r->phase == 2 && r->pend_off == r->pend_len;
    if (!r->done) {
        r->cancelled = true;   /* the client went away mid-stream: its slot is freed at the next step */
        pthread_cond_signal(&s->cv_engine);
    }
    const int64_t p = r->prompt_tokens, c = r->completion_tokens;
    pthread_mutex_unlock(&s->mu);
    log_line(s, r->peer, "POST", r->ep == EP_CHAT ? "/v1/chat/completions" : "/v1/completions", 200, p, c,
             now_s() - r->t0, complete ? "stream" : "stream cancelled: the client disconnected");
    pthread_mutex_lock(&s->mu);
    req_release(r);
    pthread_mutex_unlock(&s->mu);
}

/* ---- the HTTP side ------------------------------------------------------------------- */

struct conn {
    enum endpoint ep;
    char *body;
    size_t len, cap;
    bool too_big;
    double t0;
};

static enum endpoint route(const char *url) {
    if (!strcmp(url, "/v1/chat/completions")) return EP_CHAT;
    if (!strcmp(url, "/v1/completions")) return EP_COMPLETION;
    if (!strcmp(url, "/v1/models")) return EP_MODELS;
    if (!strcmp(url, "/health")) return EP_HEALTH;
    if (!strcmp(url, "/metrics")) return EP_METRICS;
    return EP_OTHER;
}

static void peer_of(struct MHD_Connection *c, char *out, size_t cap) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, cap, "-");
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof host);
    else if (sa->sa_family == AF_INET6) inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof host);
    snprintf(out, cap, "%s", host);
}

static bool authorized(struct server *s, struct MHD_Connection *c) {
    if (!s->o->api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return false;
    h += 7;
    while (*h == ' ') h++;
    /* compare in constant time */
    const char *k = s->o->api_key;
    size_t hl = strlen(h), kl = strlen(k);
    unsigned char diff = hl != kl;
    for (size_t i = 0; i < kl; i++) diff |= (unsigned char)(k[i] ^ (i < hl ? h[i] : 0));
    return diff == 0;
}

static enum MHD_Result reply_error(struct server *s, struct MHD_Connection *c, enum endpoint ep, const char *method,
                                   const char *url, double t0, unsigned status, const char *param, const char *code,
                                   const char *msg) {
    char peer[64];
    peer_of(c, peer, sizeof peer);
    count_request(s, ep, status);
    log_line(s, peer, method, url, status, 0, 0, now_s() - t0, msg);
    return send_json(c, status, error_object(status, msg, param, code), status == 429 ? "1" : NULL);
}

static enum MHD_Result handle_get(struct server *s, struct MHD_Connection *c, enum endpoint ep, const char *url,
                                  double t0) {
    json_t *j = NULL;
    unsigned status = 200;
    if (ep == EP_MODELS) {
        j = json_pack("{s:s, s:[{s:s, s:s, s:I, s:s}]}", "object", "list", "data", "id", s->o->model_name, "object",
                      "model", "created", (json_int_t)0, "owned_by", "strata");
    } else if (ep == EP_HEALTH) {
        pthread_mutex_lock(&s->mu);
        status = s->broken ? 503 : s->stopping ? 503 : 200;
        j = json_pack("{s:s, s:I, s:I, s:I}", "status", s->broken ? "error" : s->stopping ? "stopping" : "ok",
                      "slots_total", (json_int_t)s->n_slots, "slots_in_use", (json_int_t)s->sst.slots_used,
                      "queue", (json_int_t)s->queued);
        if (s->broken) json_object_set_new(j, "error", json_string(s->broken_msg));
        pthread_mutex_unlock(&s->mu);
    } else {
        /* Prometheus text exposition format */
        size_t cap = 16384, n = 0;
        char *t = malloc(cap);
        if (!t) return MHD_NO;
#define P(...) do { if (n < cap) n += (size_t)snprintf(t + n, cap - n, __VA_ARGS__); } while (0)
        pthread_mutex_lock(&s->mu);
        P("# HELP strata_requests_total Requests answered, by endpoint and status.\n# TYPE strata_requests_total counter\n");
        for (int e = 0; e < EP_COUNT; e++)
            for (int k = 0; k < 6; k++)
                if (s->requests[e][k]) P("strata_requests_total{endpoint=\"%s\",status=\"%s\"} %lld\n", ep_names[e],
                                         class_names[k], (long long)s->requests[e][k]);
        P("# HELP strata_prompt_tokens_total Prompt tokens of the requests admitted.\n# TYPE strata_prompt_tokens_total counter\n");
        P("strata_prompt_tokens_total %lld\n", (long long)s->prompt_tokens);
        P("# HELP strata_prompt_tokens_reused_total Prompt tokens found in a slot's KV cache (not prefilled again).\n"
          "# TYPE strata_prompt_tokens_reused_total counter\n");
        P("strata_prompt_tokens_reused_total %lld\n", (long long)s->reused_tokens);
        P("# HELP strata_generated_tokens_total Tokens generated.\n# TYPE strata_generated_tokens_total counter\n");
        P("strata_generated_tokens_total %lld\n", (long long)s->sst.generated_tokens);
        P("# HELP strata_decode_steps_total Batched decode steps (engine passes).\n# TYPE strata_decode_steps_total counter\n");
        P("strata_decode_steps_total %lld\n", (long long)s->sst.steps);
        P("# HELP strata_requests_cancelled_total Requests whose client went away before the end.\n"
          "# TYPE strata_requests_cancelled_total counter\n");
        P("strata_requests_cancelled_total %lld\n", (long long)s->cancelled_total);
        P("# HELP strata_queue_length Requests waiting for a free sequence slot.\n# TYPE strata_queue_length gauge\n");
        P("strata_queue_length %lld\n", (long long)s->queued);
        P("# HELP strata_kv_slots Sequence slots of the KV cache.\n# TYPE strata_kv_slots gauge\n");
        P("strata_kv_slots %lld\n", (long long)s->n_slots);
        P("# HELP strata_kv_slots_in_use Slots held by a running request.\n# TYPE strata_kv_slots_in_use gauge\n");
        P("strata_kv_slots_in_use %lld\n", (long long)s->sst.slots_used);
        P("# HELP strata_sequences_running Requests generating now.\n# TYPE strata_sequences_running gauge\n");
        P("strata_sequences_running %lld\n", (long long)s->sst.running);
        P("# HELP strata_stage_busy_seconds_total Device time of each pipeline stage in decode steps.\n"
          "# TYPE strata_stage_busy_seconds_total counter\n");
        for (int i = 0; i < s->sst.n_stages; i++) {
            const struct st_plan_stage *ps = &s->d->plan->stages[i];
            P("strata_stage_busy_seconds_total{stage=\"%d\",device=\"%s\"} %.6f\n", i,
              s->d->plan->devices[ps->device].select, s->busy_s[i]);
        }
        pthread_mutex_unlock(&s->mu);
#undef P
        count_request(s, ep, 200);
        enum MHD_Result rc = send_buffer(c, 200, "text/plain; version=0.0.4", t, ST_MIN(n, cap), NULL);
        free(t);
        return rc;
    }
    char peer[64];
    peer_of(c, peer, sizeof peer);
    count_request(s, ep, status);
    if (ep != EP_HEALTH) log_line(s, peer, "GET", url, status, 0, 0, now_s() - t0, NULL);
    return send_json(c, status, j, NULL);
}

static void make_id(struct req *r) {
    static _Atomic unsigned long long counter;
    unsigned long long n = ++counter;
    snprintf(r->id, sizeof r->id, "%s-%llx%06llx", r->ep == EP_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)time(NULL), n & 0xffffff);
}

static enum MHD_Result handle_completion(struct server *s, struct MHD_Connection *c, struct conn *cs,
                                         const char *url) {
    struct req *r = st_calloc(1, sizeof *r, "a request");
    if (!r) return reply_error(s, c, cs->ep, "POST", url, cs->t0, 500, NULL, NULL, st_last_error());
    r->srv = s;
    r->ep = cs->ep;
    r->refs = 1;
    r->t0 = cs->t0;
    r->fd = -1;
    r->created = (long long)time(NULL);
    make_id(r);
    peer_of(c, r->peer, sizeof r->peer);
    struct st_server_request_error b;
    if (st_server_request_read(&s->rx, cs->ep == EP_CHAT, cs->body, cs->len, &r->q, &b) != 200) {
        enum MHD_Result rc = reply_error(s, c, cs->ep, "POST", url, cs->t0, b.status, b.param[0] ? b.param : NULL,
                                         b.code[0] ? b.code : NULL, b.msg);
        req_free(r);
        return rc;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->fd = ci ? ci->connect_fd : -1;
    r->lp_offset = r->q.echo_text ? strlen(r->q.echo_text) : 0;   /* text_offset counts the echoed prompt */

    pthread_mutex_lock(&s->mu);
    /* waiting beyond the free slots is the queue */
    const int64_t free_slots = s->n_slots - n_running(s);
    unsigned refuse = s->stopping ? 503 : s->broken ? 503 : s->queued >= free_slots + s->o->max_queue ? 429 : 0;
    if (!refuse) {
        r->refs++;   /* the engine's */
        if (s->queue_tail) s->queue_tail->next = r;
        else s->queue_head = r;
        s->queue_tail = r;
        s->queued++;
        pthread_cond_signal(&s->cv_engine);
    }
    char broken[512];
    snprintf(broken, sizeof broken, "%s", s->broken_msg);
    const int64_t queued = s->queued;
    pthread_mutex_unlock(&s->mu);
    if (refuse) {
        char msg[600];
        if (refuse == 429) snprintf(msg, sizeof msg, "the server is busy: %lld requests are waiting for a free sequence "
                                    "slot; retry later", (long long)queued);
        else snprintf(msg, sizeof msg, "%s", s->stopping ? "the server is shutting down" : broken);
        req_free(r);
        return reply_error(s, c, cs->ep, "POST", url, cs->t0, refuse, NULL, refuse == 429 ? "queue_full" : NULL, msg);
    }

    if (r->q.stream) {
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK, stream_reader, r,
                                                                      stream_free);
        if (!resp) {
            pthread_mutex_lock(&s->mu);
            r->cancelled = true;
            req_release(r);
            pthread_mutex_unlock(&s->mu);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        count_request(s, cs->ep, 200);
        enum MHD_Result rc = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);   /* stream_free releases the connection's reference */
        return rc;
    }

    /* not streaming: wait here for the whole answer, watching for the client leaving */
    pthread_mutex_lock(&s->mu);
    while (!r->done && !r->cancelled) {
        cond_wait_ms(&s->cv_out, &s->mu, WAIT_MS);
        if (!r->done && client_gone(r->fd)) {
            r->cancelled = true;
            pthread_cond_signal(&s->cv_engine);
        }
    }
    enum MHD_Result rc;
    unsigned status = 200;
    const int64_t pt = r->prompt_tokens, ct = r->completion_tokens;
    if (!r->done) {
        rc = MHD_NO;   /* the client is gone: close the connection */
        status = 499;
    } else if (r->finish == ST_FINISH_ERROR) {
        status = r->err_status == ST_ERR_USAGE || r->err_status == ST_ERR_CONFIG ? 400 : 500;
        json_t *e = error_object(status, r->err, NULL, st_status_name(r->err_status));
        pthread_mutex_unlock(&s->mu);
        rc = send_json(c, status, e, NULL);
        pthread_mutex_lock(&s->mu);
    } else {
        json_t *j = full_response(s, r);
        pthread_mutex_unlock(&s->mu);
        rc = send_json(c, 200, j, NULL);
        pthread_mutex_lock(&s->mu);
    }
    req_release(r);
    pthread_mutex_unlock(&s->mu);
    if (status != 499) count_request(s, cs->ep, status);
    char peer[64];
    peer_of(c, peer, sizeof peer);
    log_line(s, peer, "POST", url, status, pt, ct, now_s() - cs->t0, status == 499 ? "cancelled: the client disconnected" : NULL);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    struct server *s = cls;
    struct conn *cs = *con_cls;
    (void)version;
    if (!cs) {
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        cs->t0 = now_s();
        cs->ep = route(url);
        *con_cls = cs;
        const bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        if (cs->ep == EP_OTHER)
            return reply_error(s, c, cs->ep, method, url, cs->t0, 404, NULL, "not_found",
                               "no such endpoint; this server has POST /v1/chat/completions, POST /v1/completions, "
                               "GET /v1/models, GET /health and GET /metrics");
        const bool wants_post = cs->ep == EP_CHAT || cs->ep == EP_COMPLETION;
        if ((wants_post && !post) || (!wants_post && !get)) {
            char msg[160];
            snprintf(msg, sizeof msg, "%s takes %s, not %s", url, wants_post ? "POST" : "GET", method);
            return reply_error(s, c, cs->ep, method, url, cs->t0, 405, NULL, "method_not_allowed", msg);
        }
        if (cs->ep != EP_HEALTH && cs->ep != EP_METRICS && !authorized(s, c))
            return reply_error(s, c, cs->ep, method, url, cs->t0, 401, NULL, "invalid_api_key",
                               "a valid API key is required: send 'Authorization: Bearer KEY'");
        if (!wants_post) return handle_get(s, c, cs->ep, url, cs->t0);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o->max_body_bytes) {
            char msg[160];
            snprintf(msg, sizeof msg, "the request body (%s bytes) is over the limit of %zu bytes", cl, s->o->max_body_bytes);
            cs->too_big = true;
            return reply_error(s, c, cs->ep, method, url, cs->t0, 413, NULL, "request_too_large", msg);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cs->too_big && cs->len + *upload_size > s->o->max_body_bytes) cs->too_big = true;
        if (!cs->too_big) {
            if (cs->len + *upload_size + 1 > cs->cap) {
                size_t cap = ST_MAX(2 * cs->cap, cs->len + *upload_size + 1);
                char *p = realloc(cs->body, cap);
                if (!p) return MHD_NO;
                cs->body = p;
                cs->cap = cap;
            }
            memcpy(cs->body + cs->len, upload, *upload_size);
            cs->len += *upload_size;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->too_big) {
        char msg[160];
        snprintf(msg, sizeof msg, "the request body is over the limit of %zu bytes", s->o->max_body_bytes);
        return reply_error(s, c, cs->ep, method, url, cs->t0, 413, NULL, "request_too_large", msg);
    }
    return handle_completion(s, c, cs, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    struct conn *cs = *con_cls;
    if (!cs) return;
    free(cs->body);
    free(cs);
    *con_cls = NULL;
}

/* ---- the server's life --------------------------------------------------------------- */

static st_status listen_addr(const struct st_server_options *o, struct sockaddr_storage *ss, bool *v6) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int rc = getaddrinfo(o->host, port, &hints, &res);
    if (rc || !res) {
        st_error_set(ST_ERR_CONFIG, "serve: cannot resolve the address '%s': %s", o->host, gai_strerror(rc));
        return st_error_hint("give --host an IP address (127.0.0.1, 0.0.0.0, ::) or a resolvable name");
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return ST_OK;
}

st_status st_server_run(const st_deploy *d, st_engine *e, st_tokenizer_t *tok, const struct st_server_options *o) {
    struct server s = {.d = d, .e = e, .tok = tok, .o = o};
    s.n_ctx = st_engine_n_ctx(e);
    s.n_slots = st_engine_n_seq(e);
    s.chat_kind = st_deploy_chat_kind(d);
    s.rx = (struct st_server_request_ctx){.model_name = o->model_name, .default_max_tokens = o->default_max_tokens,
                                          .tok = tok, .tok_mu = &s.tok_mu, .chat_kind = s.chat_kind,
                                          .n_vocab = st_engine_n_vocab(e), .n_ctx = s.n_ctx};
    st_deploy_sampler_params(d, &s.rx.sampler);
    st_status rc = ST_OK;
    pthread_mutex_init(&s.mu, NULL);
    pthread_mutex_init(&s.tok_mu, NULL);
    pthread_cond_init(&s.cv_engine, NULL);
    pthread_cond_init(&s.cv_out, NULL);
    struct st_sched_params sp = {.prefill_budget = d->plan->prefill_chunk};
    s.running = st_calloc((size_t)s.n_slots, sizeof *s.running, "server slots");
    s.busy_s = st_calloc((size_t)st_engine_n_stages(e), sizeof(double), "stage busy times");
    if (!s.running || !s.busy_s) { rc = ST_ERR_NOMEM; goto out; }
    if ((rc = st_sched_init(e, tok, &sp, &s.sched))) goto out;
    st_sched_stats(s.sched, &s.sst);

    struct sockaddr_storage addr;
    bool v6 = false;
    if ((rc = listen_addr(o, &addr, &v6))) goto out;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (v6) flags |= MHD_USE_IPv6;
    s.mhd = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, &s, MHD_OPTION_SOCK_ADDR,
                             (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)3600, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1024,
                             MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024), MHD_OPTION_END);
    if (!s.mhd) {
        st_error_set(ST_ERR_IO, "serve: cannot listen on %s port %d: %s", o->host, o->port, strerror(errno));
        st_error_hint("another program may use the port: pick another with --port (0 = any free port)");
        rc = ST_ERR_IO;
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s.mhd, MHD_DAEMON_INFO_BIND_PORT);
    const int port = di ? di->port : o->port;
    if (o->port_file) {
        FILE *f = fopen(o->port_file, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0) {
            if (f) fclose(f);
            st_error_set(ST_ERR_IO, "serve: cannot write the port to %s: %s", o->port_file, strerror(errno));
            rc = ST_ERR_IO;
            goto out;
        }
    }
    fprintf(stderr, "strata serve: %s on http://%s%s%s:%d/v1 (%lld sequence%s at once, context %lld, %s template)\n",
            o->model_name, v6 ? "[" : "", o->host, v6 ? "]" : "", port, (long long)s.n_slots, s.n_slots == 1 ? "" : "s",
            (long long)s.n_ctx, s.chat_kind == ST_CHAT_NONE ? "no chat" : st_chat_kind_name(s.chat_kind));
    fflush(stderr);

    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    g_stop = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    double deadline = 0;
    pthread_mutex_lock(&s.mu);
    for (;;) {
        if (g_stop && !s.stopping) {
            s.stopping = true;
            deadline = now_s() + o->shutdown_grace_s;
            pthread_mutex_unlock(&s.mu);
            MHD_socket ls = MHD_quiesce_daemon(s.mhd);   /* no new connections */
            if (ls != MHD_INVALID_SOCKET) close(ls);
            fprintf(stderr, "strata serve: stopping: %lld running request%s may finish within %.0f s\n",
                    (long long)n_running(&s), n_running(&s) == 1 ? "" : "s", o->shutdown_grace_s);
            pthread_mutex_lock(&s.mu);
        }
        if (s.stopping) {
            while (s.queue_head) {   /* what never started is refused */
                struct req *r = s.queue_head;
                s.queue_head = r->next;
                s.queued--;
                req_fail(&s, r, ST_ERR_BUSY, "the server is shutting down");
                req_release(r);
            }
            s.queue_tail = NULL;
            if (now_s() > deadline)
                for (int64_t i = 0; i < s.n_slots; i++)
                    if (s.running[i]) s.running[i]->cancelled = true;
            if (!n_running(&s)) break;
        }
        settle(&s);   /* finished requests give their slots back first: the next may reuse one's cache */
        admit(&s);
        if (st_sched_busy(s.sched)) {
            pthread_mutex_unlock(&s.mu);
            st_status sr = st_sched_step(s.sched);
            pthread_mutex_lock(&s.mu);
            if (sr && !s.broken) {
                s.broken = true;
                snprintf(s.broken_msg, sizeof s.broken_msg, "the engine failed: %s", st_last_error());
                fprintf(stderr, "strata serve: %s\n", s.broken_msg);
            }
            settle(&s);
        } else {
            cond_wait_ms(&s.cv_engine, &s.mu, WAIT_MS);
        }
    }
    pthread_mutex_unlock(&s.mu);
    /* let the connections write their last answers, then stop */
    for (int i = 0; i < 50; i++) {
        pthread_mutex_lock(&s.mu);
        pthread_cond_broadcast(&s.cv_out);
        pthread_mutex_unlock(&s.mu);
        usleep(20000);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    fprintf(stderr, "strata serve: stopped\n");
out:
    if (s.mhd) MHD_stop_daemon(s.mhd);
    st_sched_free(s.sched);
    free(s.running);
    free(s.busy_s);
    pthread_cond_destroy(&s.cv_engine);
    pthread_cond_destroy(&s.cv_out);
    pthread_mutex_destroy(&s.mu);
    pthread_mutex_destroy(&s.tok_mu);
    return rc;
}
