/* orchestrator/server.h — `strata serve`: an OpenAI-compatible HTTP API over
 * the scheduler (orchestrator/session.h), built on libmicrohttpd and jansson.
 *
 *   POST /v1/chat/completions   messages → the model's chat template → a reply
 *   POST /v1/completions        prompt (text or token ids) → a continuation
 *   GET  /v1/models             the one model this server runs
 *   GET  /health                {"status": "ok"|"error", slots}
 *   GET  /metrics               Prometheus text: requests, tokens, queue, slots,
 *                               per-stage busy time
 *
 * Both completion endpoints stream by server-sent events ("stream": true,
 * "stream_options": {"include_usage": true}) or answer once; they take
 * max_tokens (max_completion_tokens), temperature, top_p, top_k, min_p,
 * seed, stop, presence/frequency/repeat penalties; usage counts come back.
 * Errors are OpenAI error objects ({"error": {"message", "type", "param",
 * "code"}}) with 400 (bad JSON, a field of the wrong type or out of range, a
 * prompt longer than the context), 401 (--api-key without a matching
 * "Authorization: Bearer"), 404 (unknown path or model), 413 (a body over the
 * limit, refused before it is read whole), 429 with Retry-After (the queue is
 * full), 503 (shutting down).
 *
 * Threads: libmicrohttpd runs a thread per connection, which parses, renders
 * and tokenizes the request and then waits for its output; the thread that
 * calls st_server_run owns the engine and the scheduler: it admits queued
 * requests into free KV slots and steps every running one. A client that
 * disconnects cancels its sequence, which frees its slot at the next step.
 * SIGINT/SIGTERM stop accepting connections, let running requests finish
 * within the grace period (then cancel them), refuse the queued ones (503)
 * and return ST_OK. */
#ifndef STRATA_SERVER_H
#define STRATA_SERVER_H

#include "base/base.h"
#include "model/tokenizer.h"
#include "orchestrator/deploy.h"
#include "orchestrator/engine.h"
#include "orchestrator/session.h"

#include <pthread.h>

#ifdef __cplusplus
extern "C" {
#endif

struct st_server_options {
    const char *host;            /* address to listen on: "127.0.0.1" (default), "0.0.0.0", "::" */
    int port;                    /* 8080 by default; 0 = a free port (written to port_file) */
    const char *api_key;         /* required as "Authorization: Bearer KEY" when not NULL */
    const char *model_name;      /* the id in /v1/models; requests naming another model get 404 */
    int64_t max_queue;           /* requests waiting for a free slot before 429 */
    size_t max_body_bytes;       /* larger request bodies get 413 */
    double shutdown_grace_s;     /* how long running requests may finish after SIGINT/SIGTERM */
    int64_t default_max_tokens;  /* when a request gives none (0 = until a stop or the context is full) */
    const char *port_file;       /* when not NULL: the port listened on is written there */
    bool quiet;                  /* no line per request on stderr */
};

/* ---- reading a completion request (the server's own code, callable without
 * a socket or an engine: tests/fuzz/fuzz_serve_request.c) ------------------- */

/* What reading a request needs from the server. */
struct st_server_request_ctx {
    const char *model_name;              /* "model" must be this (or absent) */
    struct st_sampler_params sampler;    /* the deployment's sampling, which fields override */
    int64_t default_max_tokens;          /* without max_tokens (0 = no limit) */
    st_tokenizer_t *tok;                 /* encodes prompts, decodes ids for echo */
    pthread_mutex_t *tok_mu;             /* held around the tokenizer; NULL: none */
    st_chat_kind chat_kind;              /* ST_CHAT_NONE: messages joined by newlines */
    int64_t n_vocab;                     /* token ids in prompts must be below it */
    int64_t n_ctx;                       /* longer prompts are refused */
};

/* A completion request as read from its body. */
struct st_server_request {
    bool stream, include_usage, echo;
    bool return_ids;                     /* extension "return_token_ids" */
    int32_t *ids;                        /* the prompt, tokenized (n_ids, 1..n_ctx) */
    int64_t n_ids;
    struct st_gen_params gp;             /* sampling, max_tokens, stop strings, ignore_eos */
    char *stops[ST_GEN_MAX_STOP];        /* owned copies behind gp.stop */
    char *echo_text;                     /* completions with echo: the prompt text */
    int32_t *bias_ids;                   /* owned arrays behind gp.bias_ids and gp.bias (logit_bias) */
    float *bias;
};

/* Why a request was refused: an OpenAI error object's fields. */
struct st_server_request_error {
    char msg[512];
    char param[64];                      /* the field at fault, "" when none */
    unsigned status;                     /* HTTP: 400 bad field or JSON, 404 unknown model, 500 out of memory */
    char code[32];                       /* "" or e.g. "context_length_exceeded", "model_not_found" */
};

/* Reads a POST /v1/chat/completions (chat) or /v1/completions body of len
 * bytes (any bytes). Returns 200 with *req filled (release it with
 * st_server_request_clear), or the HTTP status with *err filled and *req
 * empty. */
unsigned st_server_request_read(const struct st_server_request_ctx *ctx, bool chat, const char *body, size_t len,
                                struct st_server_request *req, struct st_server_request_error *err);
void st_server_request_clear(struct st_server_request *req);

/* Serves until SIGINT or SIGTERM (then ST_OK). The deployment, engine and
 * tokenizer must outlive the call. Errors: the address cannot be bound
 * (ST_ERR_IO with the address and a hint), out of memory. */
st_status st_server_run(const st_deploy *d, st_engine *e, st_tokenizer_t *tok, const struct st_server_options *o);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_SERVER_H */
