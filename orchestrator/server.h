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

/* Serves until SIGINT or SIGTERM (then ST_OK). The deployment, engine and
 * tokenizer must outlive the call. Errors: the address cannot be bound
 * (ST_ERR_IO with the address and a hint), out of memory. */
st_status st_server_run(const st_deploy *d, st_engine *e, st_tokenizer_t *tok, const struct st_server_options *o);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_SERVER_H */
