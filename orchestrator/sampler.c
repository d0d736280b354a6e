/* orchestrator/sampler.c — the host sampler (docs/sampling.md). Every float
 * operation here is an IEEE-754 basic operation in a fixed order, so the
 * result does not depend on the machine; FMA contraction is switched off for
 * this file because a fused multiply-add rounds differently. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "orchestrator/sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- PRNG: splitmix64 -> xoshiro256** ------------------------------------ */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void st_rng_seed(struct st_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t st_rng_next(struct st_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double st_rng_uniform(struct st_rng *r) {
    return (double)(st_rng_next(r) >> 11) * 0x1.0p-53;
}

/* ---- deterministic exp / log ------------------------------------------------ */

double st_det_exp(double x) {
    if (x != x) return x;
    if (x > 709.0) return INFINITY;
    if (x < -745.2) return 0.0;
    /* x = k ln2 + r, |r| <= ln2 / 2 (Cody-Waite split of ln2) */
    const double inv_ln2 = 1.4426950408889634, ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    double kd = floor(x * inv_ln2 + 0.5);
    double r = (x - kd * ln2_hi) - kd * ln2_lo;
    /* Taylor series to r^13 (error < 1e-17 on |r| <= 0.347), Horner */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    return ldexp(p, (int)kd);   /* exact scaling (subnormal results round once) */
}

double st_det_log(double x) {
    if (!(x > 0)) return x == 0 ? -INFINITY : NAN;
    if (x == INFINITY) return x;
    int e;
    double m = frexp(x, &e);           /* x = m 2^e, m in [0.5, 1) */
    if (m < 0.70710678118654752) { m *= 2; e--; }   /* m in [0.707, 1.414) */
    /* ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172 */
    double s = (m - 1) / (m + 1), s2 = s * s, term = s, sum = 0;
    for (int k = 1; k <= 41; k += 2) {
        sum += term / k;
        term *= s2;
    }
    return 2 * sum + e * 6.93147180559945309417e-01;
}

/* ---- candidate stages --------------------------------------------------------- */

static inline bool better(const struct st_token_prob *a, const struct st_token_prob *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_better(const void *x, const void *y) {
    const struct st_token_prob *a = x, *b = y;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

static inline void swap_tp(struct st_token_prob *a, struct st_token_prob *b) {
    struct st_token_prob t = *a;
    *a = *b;
    *b = t;
}

/* Partial selection: afterwards a[0, k) hold the k best (in some order).
 * The order is total (ids are distinct), so the set is unique. */
static void select_top(struct st_token_prob *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1;
    while (hi > lo) {
        int64_t mid = lo + (hi - lo) / 2;
        if (better(&a[mid], &a[lo])) swap_tp(&a[mid], &a[lo]);
        if (better(&a[hi], &a[lo])) swap_tp(&a[hi], &a[lo]);
        if (better(&a[hi], &a[mid])) swap_tp(&a[hi], &a[mid]);
        struct st_token_prob pivot = a[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (better(&a[i], &pivot)) i++;
            while (better(&pivot, &a[j])) j--;
            if (i <= j) { swap_tp(&a[i], &a[j]); i++; j--; }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
}

void st_cand_from_logits(struct st_candidates *c, const float *logits, int64_t n_vocab) {
    for (int64_t i = 0; i < n_vocab; i++) {
        float l = logits[i];
        if (l != l) l = -INFINITY;
        else if (l == INFINITY) l = FLT_MAX;
        c->data[i] = (struct st_token_prob){(int32_t)i, l, 0.0f};
    }
    c->n = n_vocab;
    c->sorted = false;
}

void st_cand_penalties(struct st_candidates *c, const int32_t *recent, int64_t n_recent, const int32_t *counts,
                       float repeat, float frequency, float presence) {
    for (int64_t k = 0; k < n_recent; k++) {
        int32_t id = recent[k];
        if (id < 0 || id >= c->n) continue;
        int32_t cnt = counts[id];
        if (cnt <= 0) continue;
        float l = c->data[id].logit;
        l = l <= 0 ? l * repeat : l / repeat;
        l = l - ((float)cnt * frequency + presence);
        c->data[id].logit = l;
    }
}

/* Top k for small k: a min-heap of the k best (worst at the root) built in
 * place over data[0, k), one comparison per remaining token. */
static void heap_down(struct st_token_prob *h, int64_t k, int64_t i) {
    for (;;) {
        int64_t l = 2 * i + 1, w = i;
        if (l < k && better(&h[w], &h[l])) w = l;
        if (l + 1 < k && better(&h[w], &h[l + 1])) w = l + 1;
        if (w == i) return;
        swap_tp(&h[i], &h[w]);
        i = w;
    }
}

static void heap_top(struct st_token_prob *a, int64_t n, int64_t k) {
    for (int64_t i = k / 2; i-- > 0;) heap_down(a, k, i);
    for (int64_t i = k; i < n; i++) {
        if (better(&a[i], &a[0])) {
            a[0] = a[i];
            heap_down(a, k, 0);
        }
    }
}

void st_cand_top_k(struct st_candidates *c, int64_t k) {
    if (k <= 0 || c->n == 0) return;
    if (k < c->n) {
        if (k <= 4096) heap_top(c->data, c->n, k);
        else select_top(c->data, c->n, k);
        c->n = k;
    }
    qsort(c->data, (size_t)c->n, sizeof *c->data, cmp_better);
    c->sorted = true;
}

static float max_logit(const struct st_candidates *c) {
    if (c->sorted) return c->data[0].logit;
    float m = -INFINITY;
    for (int64_t i = 0; i < c->n; i++) m = c->data[i].logit > m ? c->data[i].logit : m;
    return m;
}

void st_cand_top_p(struct st_candidates *c, float p) {
    if (!(p < 1.0f) || c->n <= 1) return;
    double m = max_logit(c), total = 0;
    /* weights rounded to float once, then every sum adds those same values */
    for (int64_t i = 0; i < c->n; i++) {
        c->data[i].p = (float)st_det_exp((double)c->data[i].logit - m);
        total += (double)c->data[i].p;
    }
    double target = (double)p * total;
    /* sort only as far as needed: the best K, then 8K, ... */
    int64_t k = c->sorted ? c->n : ST_MIN(c->n, 64);
    for (;;) {
        if (!c->sorted) {
            if (k < c->n) {
                if (k <= 4096) heap_top(c->data, c->n, k);
                else select_top(c->data, c->n, k);
            }
            qsort(c->data, (size_t)k, sizeof *c->data, cmp_better);
            if (k == c->n) c->sorted = true;
        }
        double cum = 0;
        for (int64_t i = 0; i < k; i++) {
            cum += (double)c->data[i].p;
            if (cum >= target) {
                c->n = i + 1;
                c->sorted = true;
                return;
            }
        }
        if (k == c->n) return;   /* rounding: keep everything */
        k = ST_MIN(c->n, k * 8);
    }
}

void st_cand_min_p(struct st_candidates *c, float p) {
    if (!(p > 0.0f) || c->n <= 1) return;
    double thr = (double)max_logit(c) + st_det_log((double)p);
    int64_t k = 0;
    for (int64_t i = 0; i < c->n; i++)
        if ((double)c->data[i].logit >= thr) c->data[k++] = c->data[i];
    if (k > 0) c->n = k;
}

void st_cand_temperature(struct st_candidates *c, float t) {
    for (int64_t i = 0; i < c->n; i++) c->data[i].logit = c->data[i].logit / t;
}

void st_cand_softmax(struct st_candidates *c) {
    double m = max_logit(c), total = 0;
    for (int64_t i = 0; i < c->n; i++) total += st_det_exp((double)c->data[i].logit - m);
    for (int64_t i = 0; i < c->n; i++) c->data[i].p = (float)(st_det_exp((double)c->data[i].logit - m) / total);
}

int64_t st_cand_draw(struct st_candidates *c, double u) {
    if (c->n <= 0) return -1;
    double m = max_logit(c), total = 0;
    for (int64_t i = 0; i < c->n; i++) {
        c->data[i].p = (float)st_det_exp((double)c->data[i].logit - m);
        total += (double)c->data[i].p;
    }
    /* the running sum repeats the same additions with the same values */
    double target = u * total, acc = 0;
    for (int64_t i = 0; i < c->n; i++) {
        acc += (double)c->data[i].p;
        if (acc > target) return i;
    }
    return c->n - 1;
}

/* ---- the sampler ---------------------------------------------------------------- */

struct st_sampler {
    struct st_sampler_params p;
    int64_t n_vocab;
    struct st_rng rng;
    uint64_t draws;
    struct st_token_prob *cand;      /* (n_vocab) */
    struct st_candidates c;
    int64_t window;                  /* penalty window in tokens, 0 = penalties off */
    int32_t *ring;                   /* (window) accepted tokens, oldest at ring_head when full */
    int64_t ring_n, ring_head;
    int32_t *counts;                 /* (n_vocab) occurrences in the window */
    uint32_t *stamp;                 /* (n_vocab) dedup marks per step */
    uint32_t step;
    int32_t *recent;                 /* (window) distinct ids of the window, per step */
    int32_t *bias_id;                /* (n_bias) logit_bias: ids and what is added to their logits */
    float *bias;
    int n_bias;
};

void st_sampler_params_default(struct st_sampler_params *p) {
    *p = (struct st_sampler_params){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                                    .repeat_penalty = 1.0f, .frequency_penalty = 0.0f, .presence_penalty = 0.0f,
                                    .penalty_last_n = 64, .seed = 0};
}

st_status st_sampler_init(const struct st_sampler_params *p, int64_t n_vocab, int64_t history_cap,
                          st_sampler_t **out) {
    *out = NULL;
    if (n_vocab <= 0 || n_vocab > INT32_MAX)
        return st_error_set(ST_ERR_USAGE, "sampler: vocabulary size %lld is out of range", (long long)n_vocab);
    const char *bad = NULL;
    if (p->temperature != p->temperature) bad = "temperature is NaN";
    else if (!(p->top_p > 0)) bad = "top_p must be > 0";
    else if (!(p->min_p < 1) || p->min_p != p->min_p) bad = "min_p must be < 1";
    else if (!(p->repeat_penalty > 0)) bad = "repeat_penalty must be > 0";
    else if (p->frequency_penalty != p->frequency_penalty || p->presence_penalty != p->presence_penalty) bad = "a penalty is NaN";
    else if (p->penalty_last_n < -1) bad = "penalty_last_n must be >= -1";
    else if (p->penalty_last_n == -1 && history_cap <= 0) bad = "penalty_last_n = -1 needs a history capacity (the context length)";
    if (bad) {
        st_error_set(ST_ERR_CONFIG, "sampler: %s", bad);
        return st_error_hint("see docs/sampling.md for the parameters and their ranges");
    }
    st_sampler_t *s = st_calloc(1, sizeof *s, "sampler");
    if (!s) return ST_ERR_NOMEM;
    s->p = *p;
    s->n_vocab = n_vocab;
    bool penalties = p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f;
    s->window = !penalties ? 0 : p->penalty_last_n == -1 ? history_cap : p->penalty_last_n;
    s->cand = st_malloc((size_t)n_vocab * sizeof *s->cand, "sampler candidates");
    if (s->window > 0) {
        s->ring = st_malloc((size_t)s->window * sizeof *s->ring, "sampler history");
        s->recent = st_malloc((size_t)s->window * sizeof *s->recent, "sampler history");
        s->counts = st_calloc((size_t)n_vocab, sizeof *s->counts, "sampler counts");
        s->stamp = st_calloc((size_t)n_vocab, sizeof *s->stamp, "sampler counts");
    }
    if (!s->cand || (s->window > 0 && (!s->ring || !s->recent || !s->counts || !s->stamp))) {
        st_sampler_free(s);
        return ST_ERR_NOMEM;
    }
    s->c.data = s->cand;
    st_sampler_reset(s);
    *out = s;
    return ST_OK;
}

void st_sampler_free(st_sampler_t *s) {
    if (!s) return;
    free(s->cand);
    free(s->ring);
    free(s->recent);
    free(s->counts);
    free(s->stamp);
    free(s->bias_id);
    free(s->bias);
    free(s);
}

st_status st_sampler_set_bias(st_sampler_t *s, const int32_t *ids, const float *bias, int n) {
    if (n < 0 || n > ST_SAMPLER_MAX_BIAS)
        return st_error_set(ST_ERR_USAGE, "sampler: %d logit biases (at most %d)", n, ST_SAMPLER_MAX_BIAS);
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->n_vocab)
            return st_error_set(ST_ERR_USAGE, "sampler: logit bias for token id %d, outside the vocabulary [0, %lld)",
                                ids[i], (long long)s->n_vocab);
        if (!isfinite(bias[i]))
            return st_error_set(ST_ERR_USAGE, "sampler: the logit bias of token id %d is not finite", ids[i]);
    }
    free(s->bias_id);
    free(s->bias);
    s->bias_id = NULL;
    s->bias = NULL;
    s->n_bias = 0;
    if (n == 0) return ST_OK;
    s->bias_id = st_malloc((size_t)n * sizeof *s->bias_id, "logit bias");
    s->bias = st_malloc((size_t)n * sizeof *s->bias, "logit bias");
    if (!s->bias_id || !s->bias) {
        free(s->bias_id);
        free(s->bias);
        s->bias_id = NULL;
        s->bias = NULL;
        return ST_ERR_NOMEM;
    }
    memcpy(s->bias_id, ids, (size_t)n * sizeof *ids);
    memcpy(s->bias, bias, (size_t)n * sizeof *bias);
    s->n_bias = n;
    return ST_OK;
}

void st_sampler_reset(st_sampler_t *s) {
    st_rng_seed(&s->rng, s->p.seed);
    s->draws = 0;
    if (s->window > 0) {
        memset(s->counts, 0, (size_t)s->n_vocab * sizeof *s->counts);
        s->ring_n = s->ring_head = 0;
    }
}

void st_sampler_accept(st_sampler_t *s, int32_t id) {
    if (s->window <= 0 || id < 0 || id >= s->n_vocab) return;
    if (s->ring_n == s->window) {
        int32_t old = s->ring[s->ring_head];
        s->counts[old]--;
        s->ring[s->ring_head] = id;
        s->ring_head = (s->ring_head + 1) % s->window;
    } else {
        s->ring[(s->ring_head + s->ring_n) % s->window] = id;
        s->ring_n++;
    }
    s->counts[id]++;
}

uint64_t st_sampler_draws(const st_sampler_t *s) { return s->draws; }

static inline float sane(float l) { return l != l ? -INFINITY : l == INFINITY ? FLT_MAX : l; }

/* Without penalties, greedy and top-k read the logits directly instead of
 * building all n_vocab candidates first; the result is the same set in the
 * same order (the order is total). */
static bool direct_path(st_sampler_t *s, const float *logits, bool greedy) {
    struct st_candidates *c = &s->c;
    int64_t n = s->n_vocab, k = s->p.top_k;
    if (greedy) {
        int64_t best = 0;
        float bl = sane(logits[0]);
        for (int64_t i = 1; i < n; i++) {
            float l = sane(logits[i]);
            if (l > bl) { bl = l; best = i; }
        }
        c->data[0] = (struct st_token_prob){(int32_t)best, bl, 1.0f};
        c->n = 1;
        c->sorted = true;
        return true;
    }
    if (k <= 0 || k > 4096 || k >= n) return false;
    struct st_token_prob *h = c->data;
    for (int64_t i = 0; i < k; i++) h[i] = (struct st_token_prob){(int32_t)i, sane(logits[i]), 0.0f};
    for (int64_t i = k / 2; i-- > 0;) heap_down(h, k, i);
    for (int64_t i = k; i < n; i++) {
        struct st_token_prob t = {(int32_t)i, sane(logits[i]), 0.0f};
        if (better(&t, &h[0])) {
            h[0] = t;
            heap_down(h, k, 0);
        }
    }
    c->n = k;
    qsort(c->data, (size_t)k, sizeof *c->data, cmp_better);
    c->sorted = true;
    return true;
}

/* logit bias → penalties → greedy or (top-k → top-p → min-p → temperature); c ready to draw */
static st_status run_chain(st_sampler_t *s, const float *logits, bool *greedy) {
    struct st_candidates *c = &s->c;
    c->data = s->cand;
    *greedy = !(s->p.temperature > 0);
    bool penalised = s->window > 0 && s->ring_n > 0;
    if (!penalised && !s->n_bias && direct_path(s, logits, *greedy)) {
        if (c->data[0].logit == -INFINITY) {
            st_error_set(ST_ERR_USAGE, "sampler: no finite logit among %lld", (long long)s->n_vocab);
            return st_error_hint("the logits are all NaN or -inf: the forward pass overflowed");
        }
        if (*greedy) return ST_OK;
        st_cand_top_p(c, s->p.top_p);
        st_cand_min_p(c, s->p.min_p);
        st_cand_temperature(c, s->p.temperature);
        return ST_OK;
    }
    st_cand_from_logits(c, logits, s->n_vocab);
    for (int i = 0; i < s->n_bias; i++)   /* ids in id order: data[id].id == id */
        c->data[s->bias_id[i]].logit += s->bias[i];
    if (penalised) {
        if (++s->step == 0) {   /* stamp wrap-around: clear the marks once every 2^32 steps */
            memset(s->stamp, 0, (size_t)s->n_vocab * sizeof *s->stamp);
            s->step = 1;
        }
        int64_t nr = 0;
        for (int64_t k = 0; k < s->ring_n; k++) {
            int32_t id = s->ring[(s->ring_head + k) % s->window];
            if (s->stamp[id] != s->step) { s->stamp[id] = s->step; s->recent[nr++] = id; }
        }
        st_cand_penalties(c, s->recent, nr, s->counts, s->p.repeat_penalty, s->p.frequency_penalty,
                          s->p.presence_penalty);
    }
    int64_t best = 0;
    for (int64_t i = 1; i < c->n; i++)
        if (c->data[i].logit > c->data[best].logit) best = i;
    if (c->data[best].logit == -INFINITY) {
        st_error_set(ST_ERR_USAGE, "sampler: no finite logit among %lld", (long long)c->n);
        return st_error_hint("the logits are all NaN or -inf: the forward pass overflowed");
    }
    if (*greedy) {
        c->data[0] = c->data[best];
        c->n = 1;
        c->sorted = true;
        return ST_OK;
    }
    st_cand_top_k(c, s->p.top_k);
    st_cand_top_p(c, s->p.top_p);
    st_cand_min_p(c, s->p.min_p);
    st_cand_temperature(c, s->p.temperature);
    return ST_OK;
}

int32_t st_sampler_sample(st_sampler_t *s, const float *logits) {
    bool greedy;
    if (run_chain(s, logits, &greedy)) return -1;
    if (greedy) return s->c.data[0].id;
    double u = st_rng_uniform(&s->rng);
    s->draws++;
    int64_t i = st_cand_draw(&s->c, u);
    return s->c.data[i].id;
}

st_status st_sampler_candidates(st_sampler_t *s, const float *logits, const struct st_candidates **out) {
    bool greedy;
    st_status st = run_chain(s, logits, &greedy);
    if (st) return st;
    st_cand_softmax(&s->c);
    *out = &s->c;
    return ST_OK;
}
