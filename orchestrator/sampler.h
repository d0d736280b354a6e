/* orchestrator/sampler.h — the token sampler on the host: penalties, top-k,
 * top-p, min-p, temperature and a seeded draw (docs/sampling.md).
 *
 * Reproducible by construction: its own PRNG (xoshiro256** seeded through
 * splitmix64 from a u64 seed, uniform = top 53 bits / 2^53, exactly one draw
 * per sampled token, none for greedy), its own exp/log made of IEEE-754
 * additions and multiplications (no libm, no FMA contraction), candidates
 * ordered by (logit descending, id ascending) wherever an order matters, and
 * sums in a fixed order. The same logits and seed give the same tokens on
 * every machine.
 *
 * Memory: everything is allocated in st_sampler_init (n_vocab-sized arrays);
 * st_sampler_sample and st_sampler_accept never allocate. */
#ifndef STRATA_SAMPLER_H
#define STRATA_SAMPLER_H

#include "base/base.h"

#ifdef __cplusplus
extern "C" {
#endif

struct st_sampler_params {
    float temperature;        /* <= 0: greedy (argmax, lowest id on ties) */
    int64_t top_k;            /* <= 0: off */
    float top_p;              /* >= 1: off */
    float min_p;              /* <= 0: off */
    float repeat_penalty;     /* 1: off; logit > 0 divided, logit <= 0 multiplied */
    float frequency_penalty;  /* 0: off; minus count x this */
    float presence_penalty;   /* 0: off; minus this once a token occurred */
    int64_t penalty_last_n;   /* window of accepted tokens the penalties see; 0: off; -1: the whole history */
    uint64_t seed;
};

/* llama.cpp's defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05,
 * penalties off (repeat 1, frequency 0, presence 0), window 64, seed 0. */
void st_sampler_params_default(struct st_sampler_params *p);

typedef struct st_sampler st_sampler_t;

/* n_vocab: length of the logits rows (e.g. 151936). history_cap: most tokens
 * the penalties may look back at (the context length; used when
 * penalty_last_n is -1). ST_ERR_CONFIG for out-of-range parameters (a
 * negative temperature is greedy, not an error; NaN is an error). */
st_status st_sampler_init(const struct st_sampler_params *p, int64_t n_vocab, int64_t history_cap,
                          st_sampler_t **out);
void st_sampler_free(st_sampler_t *s);            /* accepts NULL */
/* Forgets the accepted tokens and restarts the PRNG from the seed. */
void st_sampler_reset(st_sampler_t *s);
/* Records a token for the penalties (call it for each generated token, and
 * for the prompt tokens if they should count). Ids outside the vocabulary
 * are ignored. */
void st_sampler_accept(st_sampler_t *s, int32_t id);
/* Adds bias[i] to the logit of ids[i] before every other stage of the chain
 * (OpenAI's logit_bias, llama.cpp's order), greedy included; copies both
 * arrays (n <= ST_SAMPLER_MAX_BIAS). ST_ERR_USAGE for an id outside the
 * vocabulary or a bias that is not finite; n = 0 removes the biases. */
#define ST_SAMPLER_MAX_BIAS 1024
st_status st_sampler_set_bias(st_sampler_t *s, const int32_t *ids, const float *bias, int n);
/* Samples one token from logits (n_vocab floats; not modified). Does not
 * accept it. Returns -1 with ST_ERR_USAGE set when no logit is finite. */
int32_t st_sampler_sample(st_sampler_t *s, const float *logits);
/* Number of uniforms drawn so far (one per non-greedy sample). */
uint64_t st_sampler_draws(const st_sampler_t *s);

/* ---- the chain's stages, public for tests and diagnostics -------------- */

struct st_token_prob {
    int32_t id;
    float logit;
    float p;            /* filled by st_cand_softmax */
};

/* A candidate set viewing caller memory (data has room for every token). */
struct st_candidates {
    struct st_token_prob *data;
    int64_t n;
    bool sorted;        /* data is in (logit desc, id asc) order */
};

/* All tokens in id order; NaN logits become -inf. */
void st_cand_from_logits(struct st_candidates *c, const float *logits, int64_t n_vocab);
/* Penalties from counts[id] (occurrences in the window), for ids in `recent`
 * (each distinct id once; n_recent entries). Candidates must be in id order
 * with data[i].id == i (as st_cand_from_logits leaves them). */
void st_cand_penalties(struct st_candidates *c, const int32_t *recent, int64_t n_recent, const int32_t *counts,
                       float repeat, float frequency, float presence);
/* Keeps the k best (logit desc, id asc); leaves them sorted. k <= 0 or k >= n: sorts only when asked by later stages. */
void st_cand_top_k(struct st_candidates *c, int64_t k);
/* Keeps the shortest prefix of the sorted candidates whose probability
 * reaches p (at least one). p >= 1: no-op. */
void st_cand_top_p(struct st_candidates *c, float p);
/* Keeps tokens with logit >= max_logit + ln(p), i.e. probability >= p x the
 * largest; order kept. p <= 0: no-op. */
void st_cand_min_p(struct st_candidates *c, float p);
/* logit /= t (t > 0). */
void st_cand_temperature(struct st_candidates *c, float t);
/* p = softmax(logit) over the candidates, summed in their current order. */
void st_cand_softmax(struct st_candidates *c);
/* Index (into data) drawn with uniform u in [0, 1): the first candidate, in
 * current order, whose running sum of exp(logit - max) exceeds u x total. */
int64_t st_cand_draw(struct st_candidates *c, double u);   /* overwrites p */

/* The PRNG alone: splitmix64(seed) -> xoshiro256** state; uniform in [0, 1). */
struct st_rng { uint64_t s[4]; };
void st_rng_seed(struct st_rng *r, uint64_t seed);
uint64_t st_rng_next(struct st_rng *r);
double st_rng_uniform(struct st_rng *r);

/* Deterministic exp (x <= 0 .. any) and log (x > 0) made of IEEE-754 basic operations. */
double st_det_exp(double x);
double st_det_log(double x);

/* Runs the chain without drawing and returns the final candidates with
 * probabilities (views the sampler's memory until the next call). For
 * diagnostics (--probs) and tests. Greedy gives the argmax alone, p = 1. */
st_status st_sampler_candidates(st_sampler_t *s, const float *logits, const struct st_candidates **out);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_SAMPLER_H */
