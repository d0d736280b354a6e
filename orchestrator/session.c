/* Sessions and the scheduler: one generation loop for the CLI and the server. */
#include "orchestrator/session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HOLD_CAP (4 * ST_GEN_STOP_MAX_BYTES)   /* text held back for stop strings; > 2 x the longest */

enum sess_state { SS_IDLE = 0, SS_PREFILL, SS_DECODE };

struct st_session {
    st_sched *sch;
    int slot;
    bool open;                   /* held by a caller (st_session_open .. _close) */
    bool closing;                /* closed while its row was in flight: free the slot when the row ends */
    enum sess_state state;
    bool cancel;
    int mb;                      /* micro-batch it decodes in, or -1 */
    bool in_flight;              /* its row is in an engine step that has not ended */
    int32_t *toks;               /* (n_ctx + 1) the sequence: KV slot contents, then the prompt's rest / last token */
    int64_t n_toks;
    int64_t n_prompt;            /* toks[0, n_prompt) is the prompt of the running generation */
    int32_t next;                /* SS_DECODE: the token to feed (generated, not yet in the KV slot) */
    bool next_unfed;             /* the last reported token is not in the KV slot */
    struct st_gen_params p;
    char stops[ST_GEN_MAX_STOP][ST_GEN_STOP_MAX_BYTES + 1];
    size_t stop_len[ST_GEN_MAX_STOP];
    struct st_gen_logprob lp;    /* with p.logprobs: the chosen token's, until its first event */
    bool lp_pending;
    struct st_engine_row pick;   /* how its tokens are chosen (slot, id filled per step) */
    st_sampler_t *sampler;       /* host sampler when pick is LOGITS */
    float *logits;               /* (n_vocab) the last prompt token's logits (host pick) */
    st_detok_stream_t *detok;
    char hold[HOLD_CAP];         /* reported text not yet emitted: it may begin a stop string */
    size_t hold_len;
    st_gen_cb cb;
    void *user;
    int64_t n_gen;
    struct st_session_stats stats;
    double t_start;
    uint64_t last_used;          /* when it was last closed (the scheduler's clock): free slots are reused oldest first */
};

struct mbatch {
    bool in_flight;
    int n;                       /* rows in flight */
    st_session **sess;           /* (step_rows) the sessions of the rows in flight */
    struct st_engine_row *rows;  /* (step_rows) */
    int32_t *ids;                /* (step_rows) */
    const float **logits;        /* (step_rows) */
    int assigned;                /* sessions decoding in this micro-batch */
    double t_begin;              /* host clock when its step began */
};

struct st_sched {
    st_engine *e;
    st_tokenizer_t *tok;
    int64_t n_slots, n_ctx, n_vocab, step_rows;
    int n_micro, n_stages;
    int64_t prefill_budget;
    struct st_session *sess;     /* (n_slots): session i owns KV slot i */
    struct mbatch mbs[8];
    double *busy_ms, *busy_step;   /* (n_stages) totals, and one step's */
    int64_t prompt_tokens, generated_tokens, steps;
    int64_t rr;                  /* where the prefill round robin starts */
    uint64_t clock;              /* counts closes, for least-recently-used slots */
};

const char *st_finish_name(st_finish f) {
    switch (f) {
    case ST_FINISH_NONE: return "";
    case ST_FINISH_STOP: return "stop";
    case ST_FINISH_LENGTH: return "length";
    case ST_FINISH_CONTEXT: return "context";
    case ST_FINISH_CANCEL: return "cancel";
    case ST_FINISH_ERROR: return "error";
    }
    return "";
}

void st_gen_params_default(struct st_gen_params *p) {
    memset(p, 0, sizeof *p);
    st_sampler_params_default(&p->sp);
    p->sp.temperature = 0.0f;
}

/* ---- scheduler lifecycle ------------------------------------------------------------ */

st_status st_sched_init(st_engine *e, st_tokenizer_t *tok, const struct st_sched_params *p, st_sched **out) {
    *out = NULL;
    st_sched *s = st_calloc(1, sizeof *s, "scheduler");
    if (!s) return ST_ERR_NOMEM;
    s->e = e;
    s->tok = tok;
    s->n_slots = st_engine_n_seq(e);
    s->n_ctx = st_engine_n_ctx(e);
    s->n_vocab = st_engine_n_vocab(e);
    s->n_micro = st_engine_n_micro(e);
    s->n_stages = st_engine_n_stages(e);
    s->step_rows = (s->n_slots + s->n_micro - 1) / s->n_micro;
    s->prefill_budget = p && p->prefill_budget > 0 ? p->prefill_budget : 512;
    st_status rc = ST_OK;
    s->sess = st_calloc((size_t)s->n_slots, sizeof *s->sess, "sessions");
    s->busy_ms = st_calloc((size_t)s->n_stages, sizeof(double), "stage busy times");
    s->busy_step = st_calloc((size_t)s->n_stages, sizeof(double), "stage busy times");
    if (!s->sess || !s->busy_ms || !s->busy_step) { rc = ST_ERR_NOMEM; goto fail; }
    if ((size_t)s->n_micro > ST_ARRAY_LEN(s->mbs)) {
        rc = st_error_set(ST_ERR_INTERNAL, "scheduler: %d micro-batches (at most %zu)", s->n_micro, ST_ARRAY_LEN(s->mbs));
        goto fail;
    }
    for (int m = 0; m < s->n_micro; m++) {
        struct mbatch *b = &s->mbs[m];
        b->sess = st_calloc((size_t)s->step_rows, sizeof *b->sess, "step sessions");
        b->rows = st_calloc((size_t)s->step_rows, sizeof *b->rows, "step rows");
        b->ids = st_calloc((size_t)s->step_rows, sizeof *b->ids, "step ids");
        b->logits = st_calloc((size_t)s->step_rows, sizeof *b->logits, "step logits");
        if (!b->sess || !b->rows || !b->ids || !b->logits) { rc = ST_ERR_NOMEM; goto fail; }
    }
    for (int64_t i = 0; i < s->n_slots; i++) {
        struct st_session *ss = &s->sess[i];
        ss->sch = s;
        ss->slot = (int)i;
        ss->mb = -1;
        ss->toks = st_malloc((size_t)(s->n_ctx + 1) * sizeof(int32_t), "session tokens");
        ss->logits = st_malloc((size_t)s->n_vocab * sizeof(float), "session logits");
        if (!ss->toks || !ss->logits) { rc = ST_ERR_NOMEM; goto fail; }
        if (tok && (rc = st_detok_stream_init(tok, ST_DETOK_SKIP_SPECIAL, &ss->detok))) goto fail;
    }
    *out = s;
    return ST_OK;
fail:
    st_sched_free(s);
    return rc;
}

void st_sched_free(st_sched *s) {
    if (!s) return;
    /* steps still in flight end before their buffers go */
    for (int m = 0; m < s->n_micro; m++) {
        if (s->mbs[m].in_flight) (void)st_engine_step_end(s->e, m, s->mbs[m].ids, s->mbs[m].logits, NULL);
        free(s->mbs[m].sess);
        free(s->mbs[m].rows);
        free(s->mbs[m].ids);
        free(s->mbs[m].logits);
    }
    for (int64_t i = 0; s->sess && i < s->n_slots; i++) {
        free(s->sess[i].toks);
        free(s->sess[i].logits);
        st_sampler_free(s->sess[i].sampler);
        st_detok_stream_free(s->sess[i].detok);
    }
    free(s->sess);
    free(s->busy_ms);
    free(s->busy_step);
    free(s);
}

/* ---- sessions ---------------------------------------------------------------------- */

/* Tokens a free slot still holds in its KV cache that begin ids. */
static int64_t held_prefix(const st_sched *s, const st_session *ss, const int32_t *ids, int64_t n) {
    const int64_t kv = st_engine_seq_len(s->e, ss->slot);
    int64_t c = 0;
    while (c < kv && c < n && ss->toks[c] == ids[c]) c++;
    return c;
}

st_status st_session_open_for(st_sched *s, const int32_t *ids, int64_t n, st_session **out) {
    *out = NULL;
    st_session *best = NULL;
    int64_t best_common = -1;
    for (int64_t i = 0; i < s->n_slots; i++) {
        struct st_session *ss = &s->sess[i];
        if (ss->open || ss->closing) continue;
        const int64_t c = ids ? held_prefix(s, ss, ids, n) : 0;
        /* the longest shared beginning; among equals the slot closed longest ago (its cache is least likely wanted) */
        if (c > best_common || (c == best_common && ss->last_used < best->last_used)) { best = ss; best_common = c; }
    }
    if (!best) {
        st_error_set(ST_ERR_BUSY, "all %lld sequence slots are in use", (long long)s->n_slots);
        return st_error_hint("wait for a sequence to finish, or raise the deployment's batch (more KV memory)");
    }
    best->open = true;
    best->state = SS_IDLE;
    best->next_unfed = false;
    best->cancel = false;
    if (best_common <= 0) {   /* nothing to keep: an empty sequence */
        best->n_toks = 0;
        (void)st_engine_seq_rewind(s->e, best->slot, 0);
    }
    *out = best;
    return ST_OK;
}

st_status st_session_open(st_sched *s, st_session **out) { return st_session_open_for(s, NULL, 0, out); }

static void mb_unassign(st_session *ss) {
    if (ss->mb >= 0) ss->sch->mbs[ss->mb].assigned--;
    ss->mb = -1;
}

void st_session_close(st_session *ss) {
    if (!ss || !ss->open) return;
    ss->open = false;
    ss->last_used = ++ss->sch->clock;
    ss->cb = NULL;
    ss->state = SS_IDLE;
    mb_unassign(ss);
    if (ss->in_flight) ss->closing = true;   /* the slot is freed when its row ends */
}

bool st_session_running(const st_session *ss) { return ss->state != SS_IDLE; }
int st_session_slot(const st_session *ss) { return ss->slot; }

const int32_t *st_session_tokens(const st_session *ss, int64_t *n) {
    *n = ss->n_toks;
    return ss->toks;
}

void st_session_stats(const st_session *ss, struct st_session_stats *out) { *out = ss->stats; }

void st_session_cancel(st_session *ss) {
    if (ss->state != SS_IDLE) ss->cancel = true;
}

static bool penalties_on(const struct st_sampler_params *p) {
    return p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f;
}

st_status st_session_start(st_session *ss, const int32_t *ids, int64_t n, const struct st_gen_params *p,
                           st_gen_cb cb, void *user) {
    st_sched *s = ss->sch;
    if (!ss->open) return st_error_set(ST_ERR_INTERNAL, "session: start on a closed session");
    if (ss->state != SS_IDLE) {
        st_error_set(ST_ERR_USAGE, "session: a generation is already running in slot %d", ss->slot);
        return st_error_hint("wait for it to finish or cancel it first");
    }
    if (n < 1) {
        st_error_set(ST_ERR_USAGE, "the prompt is empty");
        return st_error_hint("give at least one token of prompt");
    }
    if (n > s->n_ctx) {
        st_error_set(ST_ERR_USAGE, "the prompt (%lld tokens) does not fit the context of %lld tokens",
                     (long long)n, (long long)s->n_ctx);
        return st_error_hint("shorten the prompt, or raise the context ('context:' in the config, or --ctx)");
    }
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->n_vocab) {
            st_error_set(ST_ERR_USAGE, "token id %d (input position %lld) is outside the vocabulary [0, %lld)",
                         ids[i], (long long)i, (long long)s->n_vocab);
            return st_error_hint("token ids must come from this model's tokenizer");
        }
    }
    if (p->n_stop < 0 || p->n_stop > ST_GEN_MAX_STOP) {
        st_error_set(ST_ERR_USAGE, "%d stop strings (at most %d)", p->n_stop, ST_GEN_MAX_STOP);
        return st_error_hint("give fewer stop strings");
    }
    for (int i = 0; i < p->n_stop; i++) {
        size_t l = p->stop[i] ? strlen(p->stop[i]) : 0;
        if (l == 0 || l > ST_GEN_STOP_MAX_BYTES) {
            st_error_set(ST_ERR_USAGE, "stop string %d is %zu bytes long (1 to %d)", i + 1, l, ST_GEN_STOP_MAX_BYTES);
            return st_error_hint("give non-empty stop strings of at most %d bytes", ST_GEN_STOP_MAX_BYTES);
        }
    }
    /* how tokens are chosen: greedy or a draw on the device; penalties, logit
     * biases (or a draw the device cannot make) bring the logits to the host sampler */
    struct st_engine_row pick = {.slot = ss->slot, .pick = ST_PICK_GREEDY};
    st_sampler_t *sampler = NULL;
    if (p->top_logprobs < 0 || p->top_logprobs > ST_GEN_MAX_TOP_LOGPROBS) {
        st_error_set(ST_ERR_USAGE, "session: %d top log-probabilities asked (0 to %d)", p->top_logprobs,
                     ST_GEN_MAX_TOP_LOGPROBS);
        return st_error_hint("ask for at most %d alternatives", ST_GEN_MAX_TOP_LOGPROBS);
    }
    const bool host_only = penalties_on(&p->sp) || p->n_bias > 0 || p->logprobs;
    if (p->sp.temperature > 0.0f || host_only) {
        struct st_sample_params dsp = {.temperature = p->sp.temperature,
                                       .top_k = (int32_t)ST_MIN(p->sp.top_k, (int64_t)INT32_MAX),
                                       .top_p = p->sp.top_p, .min_p = p->sp.min_p, .seed = p->sp.seed};
        if (!host_only && st_engine_can_sample(s->e, &dsp)) {
            pick.pick = ST_PICK_SAMPLE;
            pick.sp = dsp;
        } else {
            pick.pick = ST_PICK_LOGITS;
        }
        /* the host sampler also checks the settings' ranges for the device draw */
        st_status rc = st_sampler_init(&p->sp, s->n_vocab, s->n_ctx + 1, &sampler);
        if (rc) return rc;
        if (p->n_bias > 0 && (rc = st_sampler_set_bias(sampler, p->bias_ids, p->bias, p->n_bias)) != ST_OK) {
            st_sampler_free(sampler);
            return rc;
        }
        if (pick.pick != ST_PICK_LOGITS) {
            st_sampler_free(sampler);
            sampler = NULL;
        }
    }
    st_sampler_free(ss->sampler);
    ss->sampler = sampler;
    if (sampler)
        for (int64_t i = 0; i < n; i++) st_sampler_accept(sampler, ids[i]);   /* the prompt counts for the penalties */

    /* reuse what the slot holds of the sequence */
    const int64_t kv = st_engine_seq_len(s->e, ss->slot);
    int64_t common = 0;
    while (common < kv && common < n && ss->toks[common] == ids[common]) common++;
    if (common == n) common--;                                  /* at least one token to prefill */
    st_status rc = st_engine_seq_rewind(s->e, ss->slot, common);
    if (rc) return rc;
    memcpy(ss->toks + common, ids + common, (size_t)(n - common) * sizeof(int32_t));
    ss->n_toks = n;
    ss->n_prompt = n;
    ss->next_unfed = false;
    ss->p = *p;
    for (int i = 0; i < p->n_stop; i++) {
        ss->stop_len[i] = strlen(p->stop[i]);
        memcpy(ss->stops[i], p->stop[i], ss->stop_len[i] + 1);
        ss->p.stop[i] = ss->stops[i];
    }
    ss->pick = pick;
    ss->cb = cb;
    ss->user = user;
    ss->cancel = false;
    ss->n_gen = 0;
    ss->hold_len = 0;
    if (ss->detok) st_detok_stream_reset(ss->detok);
    ss->stats = (struct st_session_stats){.prompt_tokens = n, .reused_tokens = common, .prefilled_tokens = n - common};
    ss->t_start = st_time_s();
    ss->state = SS_PREFILL;
    s->prompt_tokens += n;
    return ST_OK;
}

/* ---- reporting ----------------------------------------------------------------------- */

static void emit(st_session *ss, int32_t token, const char *text, size_t len, st_finish finish, st_status status) {
    struct st_gen_event ev = {.token = token, .text = text, .len = len, .finish = finish, .status = status};
    if (token >= 0 && ss->lp_pending) {
        ev.lp = &ss->lp;
        ss->lp_pending = false;
    }
    if (ss->cb) ss->cb(ss->user, ss, &ev);
}

/* The longest suffix of h that is a proper prefix of a stop string. */
static size_t stop_prefix_len(const st_session *ss, const char *h, size_t n) {
    size_t best = 0;
    for (int i = 0; i < ss->p.n_stop; i++) {
        const size_t sl = ss->stop_len[i];
        for (size_t k = ST_MIN(n, sl - 1); k > best; k--) {
            if (!memcmp(h + n - k, ss->stops[i], k)) { best = k; break; }
        }
    }
    return best;
}

/* Adds generated text: emits what can no longer start a stop string; true when
 * a stop string appeared (the text before it is emitted, the rest dropped). */
static bool add_text(st_session *ss, int32_t token, const char *text, size_t len) {
    if (!ss->p.n_stop) {
        emit(ss, token, text, len, ST_FINISH_NONE, ST_OK);
        return false;
    }
    do {
        const size_t take = ST_MIN(len, HOLD_CAP - ss->hold_len);
        memcpy(ss->hold + ss->hold_len, text, take);
        ss->hold_len += take;
        text += take;
        len -= take;
        /* the earliest stop string in the held text */
        size_t at = SIZE_MAX;
        for (int i = 0; i < ss->p.n_stop; i++) {
            const char *hit = memmem(ss->hold, ss->hold_len, ss->stops[i], ss->stop_len[i]);
            if (hit && (size_t)(hit - ss->hold) < at) at = (size_t)(hit - ss->hold);
        }
        if (at != SIZE_MAX) {
            emit(ss, token, ss->hold, at, ST_FINISH_NONE, ST_OK);
            ss->hold_len = 0;
            return true;
        }
        const size_t keep = stop_prefix_len(ss, ss->hold, ss->hold_len);
        const size_t out = ss->hold_len - keep;
        if (out || !len) emit(ss, token, ss->hold, out, ST_FINISH_NONE, ST_OK);
        memmove(ss->hold, ss->hold + out, keep);
        ss->hold_len = keep;
    } while (len);
    return false;
}

static void finish(st_session *ss, st_finish why, st_status status, bool flush) {
    char buf[HOLD_CAP + 64];
    size_t n = 0;
    if (flush) {
        memcpy(buf, ss->hold, ss->hold_len);
        n = ss->hold_len;
    }
    const char *rest = NULL;
    size_t rest_len = 0;
    if (ss->detok) rest = st_detok_stream_flush(ss->detok, &rest_len);   /* flushes the UTF-8 it held */
    ss->hold_len = 0;
    ss->lp_pending = false;   /* a stop token's: not reported */
    ss->state = SS_IDLE;
    ss->cancel = false;
    mb_unassign(ss);
    ss->stats.finish = why;
    ss->stats.generated_tokens = ss->n_gen;
    if (flush && rest_len) {
        /* the tail of a multi-byte character: short by construction */
        if (n + rest_len <= sizeof buf) { memcpy(buf + n, rest, rest_len); n += rest_len; }
    }
    emit(ss, -1, buf, n, why, status);
}

/* A chosen token: report it or end the generation. */
static void take_token(st_session *ss, int32_t id) {
    st_sched *s = ss->sch;
    if (ss->cancel) { finish(ss, ST_FINISH_CANCEL, ST_OK, true); return; }
    if (ss->n_gen == 0) ss->stats.ttft_s = st_time_s() - ss->t_start;
    if (!ss->p.ignore_eos && s->tok && st_tokenizer_is_stop(s->tok, id)) {
        finish(ss, ST_FINISH_STOP, ST_OK, true);
        return;
    }
    ss->toks[ss->n_toks++] = id;
    ss->next_unfed = true;
    ss->n_gen++;
    s->generated_tokens++;
    if (ss->sampler) st_sampler_accept(ss->sampler, id);
    size_t len = 0;
    const char *text = ss->detok ? st_detok_stream_push(ss->detok, id, &len) : "";
    if (add_text(ss, id, text, len)) { finish(ss, ST_FINISH_STOP, ST_OK, false); return; }
    if (ss->p.max_tokens > 0 && ss->n_gen >= ss->p.max_tokens) { finish(ss, ST_FINISH_LENGTH, ST_OK, true); return; }
    if (st_engine_seq_len(s->e, ss->slot) >= s->n_ctx) { finish(ss, ST_FINISH_CONTEXT, ST_OK, true); return; }
    ss->next = id;
    ss->state = SS_DECODE;
}

/* The model's log-probability of id and the k best tokens (st_gen_logprob). */
static void logprobs_of(const float *l, int64_t n_vocab, int32_t id, int k, struct st_gen_logprob *out) {
    double m = -INFINITY, sum = 0.0;
    for (int64_t i = 0; i < n_vocab; i++)
        if (isfinite(l[i]) && l[i] > m) m = l[i];
    for (int64_t i = 0; i < n_vocab; i++)
        if (isfinite(l[i])) sum += exp((double)l[i] - m);
    const double lse = m + log(sum);
    out->logprob = isfinite(l[id]) ? (float)((double)l[id] - lse) : -INFINITY;
    int n = 0;
    for (int64_t i = 0; i < n_vocab && k > 0; i++) {
        if (!isfinite(l[i]) || (n == k && l[i] <= l[out->top_ids[n - 1]])) continue;
        int at = n < k ? n++ : k - 1;   /* insert, best first; an equal logit stays behind the lower id */
        while (at > 0 && l[out->top_ids[at - 1]] < l[i]) {
            out->top_ids[at] = out->top_ids[at - 1];
            at--;
        }
        out->top_ids[at] = (int32_t)i;
    }
    out->n_top = n;
    for (int j = 0; j < n; j++) out->top[j] = (float)((double)l[out->top_ids[j]] - lse);
}

/* The host's choice from a row of logits (pick LOGITS). */
static void take_logits(st_session *ss, const float *logits) {
    int32_t id = st_sampler_sample(ss->sampler, logits);
    if (id < 0) { finish(ss, ST_FINISH_ERROR, st_last_status(), true); return; }
    if (ss->p.logprobs) {
        logprobs_of(logits, ss->sch->n_vocab, id, ss->p.top_logprobs, &ss->lp);
        ss->lp_pending = true;
    }
    take_token(ss, id);
}

/* Errors that belong to one sequence end it; others end the step. */
static bool session_error(st_status rc) { return rc == ST_ERR_NUMERIC || rc == ST_ERR_USAGE; }

static void fail_all(st_sched *s, st_status rc) {
    char msg[4096];
    snprintf(msg, sizeof msg, "%s", st_last_error());
    for (int64_t i = 0; i < s->n_slots; i++) {
        st_session *ss = &s->sess[i];
        if (ss->state == SS_IDLE) continue;
        st_error_set(rc, "%s", msg);
        finish(ss, ST_FINISH_ERROR, rc, true);
    }
    st_error_set(rc, "%s", msg);
}

/* ---- steps ------------------------------------------------------------------------- */

static st_status prefill_phase(st_sched *s) {
    int64_t budget = s->prefill_budget;
    for (int64_t k = 0; k < s->n_slots && budget > 0; k++) {
        st_session *ss = &s->sess[(s->rr + k) % s->n_slots];
        if (ss->state != SS_PREFILL) continue;
        if (ss->cancel) { finish(ss, ST_FINISH_CANCEL, ST_OK, true); continue; }
        const int64_t at = st_engine_seq_len(s->e, ss->slot);
        const int64_t left = ss->n_prompt - at;
        const int64_t n = ST_MIN(left, budget);
        const bool last = n == left;
        int32_t id = -1;
        const double t0 = st_time_s();
        st_status rc = st_engine_seq_prefill(s->e, ss->slot, ss->toks + at, n, last ? &ss->pick : NULL, &id, ss->logits);
        ss->stats.prefill_s += st_time_s() - t0;
        budget -= n;
        if (rc != ST_OK) {
            if (!session_error(rc)) return rc;
            finish(ss, ST_FINISH_ERROR, rc, true);
            continue;
        }
        if (!last) continue;
        if (ss->pick.pick == ST_PICK_LOGITS) take_logits(ss, ss->logits);
        else take_token(ss, id);
    }
    s->rr = (s->rr + 1) % (s->n_slots ? s->n_slots : 1);
    return ST_OK;
}

/* Ends micro-batch m's step and hands each row its token. */
static st_status mb_end(st_sched *s, int m) {
    struct mbatch *b = &s->mbs[m];
    b->in_flight = false;
    st_status rc = st_engine_step_end(s->e, m, b->ids, b->logits, s->busy_step);
    const double dt = st_time_s() - b->t_begin;   /* the step's latency, issue to result */
    for (int i = 0; i < b->n; i++) b->sess[i]->in_flight = false;
    if (rc == ST_OK) {
        for (int i = 0; i < s->n_stages; i++) s->busy_ms[i] += s->busy_step[i];
    }
    for (int i = 0; i < b->n; i++) {
        st_session *ss = b->sess[i];
        if (ss->closing) { ss->closing = false; continue; }   /* closed meanwhile: the slot is free now */
        if (ss->state != SS_DECODE) continue;
        ss->stats.decode_s += dt;
        ss->stats.decode_steps++;
        if (rc != ST_OK) continue;
        ss->next_unfed = false;   /* the fed token is in the KV slot now */
        if (b->rows[i].pick == ST_PICK_LOGITS) take_logits(ss, b->logits[i]);
        else take_token(ss, b->ids[i]);
    }
    if (rc == ST_OK) return ST_OK;
    if (!session_error(rc)) return rc;
    /* a sequence's own failure (non-finite logits): those rows end, the others carry on */
    char msg[4096];
    snprintf(msg, sizeof msg, "%s", st_last_error());
    for (int i = 0; i < b->n; i++) {
        st_session *ss = b->sess[i];
        if (ss->state != SS_DECODE || !ss->open) continue;
        st_error_set(rc, "%s", msg);
        finish(ss, ST_FINISH_ERROR, rc, true);
    }
    return ST_OK;
}

static st_status mb_begin(st_sched *s, int m) {
    struct mbatch *b = &s->mbs[m];
    b->n = 0;
    for (int64_t i = 0; i < s->n_slots && b->n < s->step_rows; i++) {
        st_session *ss = &s->sess[i];
        if (ss->state != SS_DECODE || ss->in_flight) continue;
        if (ss->cancel) { finish(ss, ST_FINISH_CANCEL, ST_OK, true); continue; }
        if (ss->mb < 0) {
            /* a newly decoding session joins the micro-batch with the fewest */
            int best = 0;
            for (int k = 1; k < s->n_micro; k++)
                if (s->mbs[k].assigned < s->mbs[best].assigned) best = k;
            if (best != m) continue;
            ss->mb = m;
            b->assigned++;
        }
        if (ss->mb != m) continue;
        b->rows[b->n] = ss->pick;
        b->rows[b->n].slot = ss->slot;
        b->rows[b->n].id = ss->next;
        b->sess[b->n++] = ss;
    }
    if (!b->n) return ST_OK;
    b->t_begin = st_time_s();
    st_status rc = st_engine_step_begin(s->e, m, b->rows, b->n);
    if (rc != ST_OK) return rc;
    for (int i = 0; i < b->n; i++) b->sess[i]->in_flight = true;
    b->in_flight = true;
    s->steps++;
    return ST_OK;
}

st_status st_sched_step(st_sched *s) {
    st_status rc = prefill_phase(s);
    /* rolling: each micro-batch's last step ends and its next begins, so the
     * others stay in flight on their stages meanwhile */
    for (int m = 0; rc == ST_OK && m < s->n_micro; m++) {
        if (s->mbs[m].in_flight) rc = mb_end(s, m);
        if (rc == ST_OK) rc = mb_begin(s, m);
    }
    if (rc != ST_OK) {
        for (int m = 0; m < s->n_micro; m++) {
            if (!s->mbs[m].in_flight) continue;
            s->mbs[m].in_flight = false;
            char msg[4096];
            snprintf(msg, sizeof msg, "%s", st_last_error());
            (void)st_engine_step_end(s->e, m, s->mbs[m].ids, s->mbs[m].logits, NULL);
            for (int i = 0; i < s->mbs[m].n; i++) s->mbs[m].sess[i]->in_flight = false;
            st_error_set(rc, "%s", msg);
        }
        for (int64_t i = 0; i < s->n_slots; i++) s->sess[i].closing = false;
        fail_all(s, rc);
    }
    return rc;
}

bool st_sched_busy(const st_sched *s) {
    for (int m = 0; m < s->n_micro; m++)
        if (s->mbs[m].in_flight) return true;
    for (int64_t i = 0; i < s->n_slots; i++)
        if (s->sess[i].state != SS_IDLE) return true;
    return false;
}

st_status st_session_run(st_session *ss) {
    while (ss->state != SS_IDLE) {
        st_status rc = st_sched_step(ss->sch);
        if (rc) return rc;
    }
    return ST_OK;
}

void st_sched_stats(const st_sched *s, struct st_sched_stats *out) {
    memset(out, 0, sizeof *out);
    out->slots = s->n_slots;
    for (int64_t i = 0; i < s->n_slots; i++) {
        out->slots_used += s->sess[i].open || s->sess[i].closing;
        out->running += s->sess[i].state != SS_IDLE;
    }
    out->prompt_tokens = s->prompt_tokens;
    out->generated_tokens = s->generated_tokens;
    out->steps = s->steps;
    out->stage_busy_ms = s->busy_ms;
    out->n_stages = s->n_stages;
}
