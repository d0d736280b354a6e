/* orchestrator/session.h — generation: one sequence's state (a session) and
 * the scheduler that runs every active session through one engine.
 *
 * A session owns a KV slot of the engine and the tokens that slot holds; a
 * closed session's slot keeps them, for the next session that starts with
 * the same tokens (st_session_open_for). A
 * generation starts from a whole token sequence (a prompt, or a chat's
 * rendered conversation): the longest prefix the slot already holds is kept
 * (st_engine_seq_rewind), the rest is prefilled. Then every scheduler step
 * decodes one token of every active session in one batched engine step
 * (split into the engine's micro-batches, which stay in flight so that
 * stages on different devices work at once), chooses each next token on the
 * device (argmax, or a seeded draw) or on the host (penalties), detokenizes
 * it, looks for stop strings and reports it to the session's callback.
 *
 *   strata generate: one session, st_session_run until it finishes;
 *   strata serve:    a session per request, st_sched_step in a loop.
 *
 * Stopping: a stop token of the model (end of turn/text) ends the generation
 * without being reported as text; a stop string ends it where the string
 * begins (the string and what follows are never reported: text that could be
 * the start of a stop string is held back until it cannot); max_tokens; the
 * context being full; st_session_cancel.
 *
 * Threads: a scheduler and its sessions belong to one thread (the engine's);
 * callbacks run on it, inside st_sched_step. Nothing is allocated per step:
 * sessions allocate at open (vocabulary- and context-sized buffers) and at
 * start (the prompt). */
#ifndef STRATA_SESSION_H
#define STRATA_SESSION_H

#include "base/base.h"
#include "model/tokenizer.h"
#include "orchestrator/engine.h"
#include "orchestrator/sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_sched st_sched;
typedef struct st_session st_session;

#define ST_GEN_MAX_STOP 16           /* stop strings per generation */
#define ST_GEN_STOP_MAX_BYTES 256    /* bytes per stop string */

/* How a generation ends. */
typedef enum st_finish {
    ST_FINISH_NONE = 0,      /* still running */
    ST_FINISH_STOP,          /* a stop token or a stop string */
    ST_FINISH_LENGTH,        /* max_tokens reached */
    ST_FINISH_CONTEXT,       /* the context is full */
    ST_FINISH_CANCEL,        /* st_session_cancel */
    ST_FINISH_ERROR,         /* a failure (status and st_last_error() at the event) */
} st_finish;
/* "stop", "length", "context", "cancel", "error", "" for NONE. */
const char *st_finish_name(st_finish f);

struct st_gen_params {
    struct st_sampler_params sp;     /* temperature <= 0 and no penalties: greedy */
    int64_t max_tokens;              /* new tokens at most; <= 0: until a stop or the context is full */
    const char *stop[ST_GEN_MAX_STOP];   /* stop strings (copied at start) */
    int n_stop;
    bool ignore_eos;                 /* the model's stop tokens do not end the generation */
    bool logprobs;                   /* report each token's log-probability (st_gen_event.lp) */
    int top_logprobs;                /*   and that many best alternatives, 0 .. ST_GEN_MAX_TOP_LOGPROBS */
    const int32_t *bias_ids;         /* logit_bias: bias[i] added to the logit of bias_ids[i] before sampling */
    const float *bias;               /*   (greedy too; copied at start) */
    int n_bias;                      /*   0 .. ST_SAMPLER_MAX_BIAS */
};
/* Greedy, no limit, no stop strings. */
void st_gen_params_default(struct st_gen_params *p);

#define ST_GEN_MAX_TOP_LOGPROBS 20
/* A generated token's log-probability under the model: the log-softmax of
 * the raw logits (before a logit bias, penalties and temperature), in double
 * precision; the alternatives best first (lower id on ties). */
struct st_gen_logprob {
    float logprob;                   /* of the chosen token */
    int n_top;
    int32_t top_ids[ST_GEN_MAX_TOP_LOGPROBS];
    float top[ST_GEN_MAX_TOP_LOGPROBS];
};

/* One report to a session's callback. Every generated token gives one event
 * (text may be empty: bytes held back for UTF-8 or a possible stop string);
 * the last event has finish != NONE (token -1 when it carries no new token). */
struct st_gen_event {
    int32_t token;
    const char *text;                /* not NUL-terminated; valid during the callback */
    size_t len;
    st_finish finish;
    st_status status;                /* finish == ERROR: what failed (st_last_error() has the message) */
    const struct st_gen_logprob *lp; /* with logprobs: on the first event of each token, else NULL */
};
typedef void (*st_gen_cb)(void *user, st_session *ss, const struct st_gen_event *ev);

struct st_sched_params {
    int64_t prefill_budget;          /* prompt tokens prefilled per step across sessions (0: the engine's chunk) */
};

/* A scheduler over an engine and its tokenizer (both must outlive it). */
st_status st_sched_init(st_engine *e, st_tokenizer_t *tok, const struct st_sched_params *p, st_sched **out);
void st_sched_free(st_sched *s);     /* closes every session; accepts NULL */

/* Takes a free KV slot, empty. ST_ERR_BUSY when every slot is taken. */
st_status st_session_open(st_sched *s, st_session **out);
/* Takes the free slot whose KV cache still holds the longest beginning of ids
 * (n tokens), keeping it, so that a start with ids prefills only the rest
 * (a client that sends the whole conversation again each turn); an empty
 * slot when none shares anything. ST_ERR_BUSY when every slot is taken. */
st_status st_session_open_for(st_sched *s, const int32_t *ids, int64_t n, st_session **out);
/* Ends a running generation without a callback and frees the slot. Accepts NULL. */
void st_session_close(st_session *ss);

/* Starts generating after the token sequence ids (n >= 1): what the slot
 * already holds of it is reused, the rest is prefilled over the next steps.
 * ST_ERR_USAGE when a generation is running, when ids do not fit the
 * context (with the numbers and a hint) or an id is outside the vocabulary;
 * ST_ERR_CONFIG for sampler settings out of range. Nothing changes on error. */
st_status st_session_start(st_session *ss, const int32_t *ids, int64_t n, const struct st_gen_params *p,
                           st_gen_cb cb, void *user);
/* The generation ends with ST_FINISH_CANCEL at the next step (its callback says so). */
void st_session_cancel(st_session *ss);
bool st_session_running(const st_session *ss);
/* The tokens of the sequence: what the KV slot holds, then the last
 * generated token when it was not fed back (a generation's final token). */
const int32_t *st_session_tokens(const st_session *ss, int64_t *n);
int st_session_slot(const st_session *ss);

struct st_session_stats {
    int64_t prompt_tokens;           /* tokens of the last start */
    int64_t reused_tokens;           /* of them, already in the KV slot */
    int64_t prefilled_tokens;        /* of them, prefilled */
    int64_t generated_tokens;        /* new tokens reported (the stop token excluded) */
    int64_t decode_steps;            /* engine steps that fed one of its tokens (the first token comes from the prefill) */
    double prefill_s, decode_s;      /* wall time in prefill passes and in decode steps */
    double ttft_s;                   /* start to the first token's event */
    st_finish finish;
};
void st_session_stats(const st_session *ss, struct st_session_stats *out);

/* One step: prefill chunks of waiting sessions (within the budget), then one
 * token of every decoding session (the engine's micro-batches stay in flight
 * from one step to the next). Callbacks run here. A session's own failure
 * (non-finite logits, its sampler) ends that session with ST_FINISH_ERROR; a
 * failure of the engine itself ends every running session and is returned. */
st_status st_sched_step(st_sched *s);
/* True while some session is generating (or a step is in flight). */
bool st_sched_busy(const st_sched *s);
/* Steps until ss's generation has finished (its final callback ran). */
st_status st_session_run(st_session *ss);

struct st_sched_stats {
    int64_t slots, slots_used;       /* KV slots, and those held by open sessions */
    int64_t running;                 /* sessions generating */
    int64_t prompt_tokens, generated_tokens;   /* totals since init */
    int64_t steps;                   /* decode steps (engine passes) */
    double *stage_busy_ms;           /* (n_stages) device time per stage in decode steps; owned by the scheduler */
    int n_stages;
};
void st_sched_stats(const st_sched *s, struct st_sched_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_SESSION_H */
