/* Sampler: the distribution after each filter against hand-computed values,
 * the chain order (temperature last), penalties, greedy ties, the PRNG
 * against a reference implementation (splitmix64 + xoshiro256**, values
 * computed independently in Python), fixed seed -> fixed tokens, and the
 * empirical distribution of many draws. */
#include <math.h>

#include "check.h"
#include "orchestrator/sampler.h"

#define NEAR(a, b) (fabs((double)(a) - (double)(b)) < 1e-6)

static struct st_token_prob buf[64];

/* probabilities 0.1, 0.4, 0.2, 0.3 for ids 0..3 */
static void base(struct st_candidates *c) {
    const float l[4] = {logf(1), logf(4), logf(2), logf(3)};
    c->data = buf;
    st_cand_from_logits(c, l, 4);
}

static bool is(const struct st_candidates *c, int n, const int *ids, const double *p) {
    struct st_candidates x = *c;
    st_cand_softmax(&x);
    if (x.n != n) { fprintf(stderr, "n = %lld, want %d\n", (long long)x.n, n); return false; }
    for (int i = 0; i < n; i++) {
        if (x.data[i].id != ids[i] || !NEAR(x.data[i].p, p[i])) {
            fprintf(stderr, "candidate %d: id %d p %.7f, want id %d p %.7f\n", i, x.data[i].id, x.data[i].p, ids[i], p[i]);
            return false;
        }
    }
    return true;
}

static void test_filters(void) {
    struct st_candidates c;
    base(&c);
    CHECK(is(&c, 4, (int[]){0, 1, 2, 3}, (double[]){0.1, 0.4, 0.2, 0.3}));
    base(&c); st_cand_top_k(&c, 2);
    CHECK(is(&c, 2, (int[]){1, 3}, (double[]){4 / 7., 3 / 7.}));
    base(&c); st_cand_top_k(&c, 0);
    CHECK(is(&c, 4, (int[]){0, 1, 2, 3}, (double[]){0.1, 0.4, 0.2, 0.3}));
    base(&c); st_cand_top_k(&c, 10);     /* k > n: all, sorted */
    CHECK(is(&c, 4, (int[]){1, 3, 2, 0}, (double[]){0.4, 0.3, 0.2, 0.1}));
    base(&c); st_cand_top_p(&c, 0.5f);   /* 0.4 < 0.5 <= 0.7 */
    CHECK(is(&c, 2, (int[]){1, 3}, (double[]){4 / 7., 3 / 7.}));
    base(&c); st_cand_top_p(&c, 0.75f);  /* 0.7 < 0.75 <= 0.9 */
    CHECK(is(&c, 3, (int[]){1, 3, 2}, (double[]){4 / 9., 3 / 9., 2 / 9.}));
    base(&c); st_cand_top_p(&c, 0.01f);  /* at least one */
    CHECK(is(&c, 1, (int[]){1}, (double[]){1}));
    base(&c); st_cand_top_p(&c, 1.0f);
    CHECK(is(&c, 4, (int[]){0, 1, 2, 3}, (double[]){0.1, 0.4, 0.2, 0.3}));
    base(&c); st_cand_min_p(&c, 0.6f);   /* p >= 0.24: order kept */
    CHECK(is(&c, 2, (int[]){1, 3}, (double[]){4 / 7., 3 / 7.}));
    base(&c); st_cand_min_p(&c, 0.45f);  /* p >= 0.18 */
    CHECK(is(&c, 3, (int[]){1, 2, 3}, (double[]){4 / 9., 2 / 9., 3 / 9.}));
    base(&c); st_cand_temperature(&c, 2.0f);   /* p ~ sqrt(x) */
    double z = 1 + 2 + sqrt(2) + sqrt(3);
    CHECK(is(&c, 4, (int[]){0, 1, 2, 3}, (double[]){1 / z, 2 / z, sqrt(2) / z, sqrt(3) / z}));
    base(&c); st_cand_temperature(&c, 0.5f);   /* p ~ x^2 */
    CHECK(is(&c, 4, (int[]){0, 1, 2, 3}, (double[]){1 / 30., 16 / 30., 4 / 30., 9 / 30.}));

    /* draw: running sums 0.1, 0.5, 0.7, 1.0 in id order */
    base(&c);
    CHECK(st_cand_draw(&c, 0.0) == 0 && st_cand_draw(&c, 0.09) == 0 && st_cand_draw(&c, 0.11) == 1);
    CHECK(st_cand_draw(&c, 0.49) == 1 && st_cand_draw(&c, 0.51) == 2 && st_cand_draw(&c, 0.71) == 3);
    CHECK(st_cand_draw(&c, 0.999999) == 3);
}

static void test_chain(void) {
    const float l[4] = {logf(1), logf(4), logf(2), logf(3)};
    struct st_sampler_params p = {.temperature = 1, .top_k = 3, .top_p = 0.8f, .min_p = 0.6f, .repeat_penalty = 1};
    st_sampler_t *s = NULL;
    const struct st_candidates *c = NULL;
    /* top-k 3 → {.4,.3,.2}/.9; top-p .8 keeps all three (7/9 < .8); min-p .6 drops 2/9 < .6 x 4/9 */
    CHECK_OK(st_sampler_init(&p, 4, 0, &s));
    CHECK_OK(st_sampler_candidates(s, l, &c));
    CHECK(c && is(c, 2, (int[]){1, 3}, (double[]){4 / 7., 3 / 7.}));
    st_sampler_free(s);
    /* temperature is applied after min-p: min-p sees 0.4/0.3 (kept), then T = 0.5 squares them.
     * Temperature first would give 16/30 and 9/30 < 0.6 x 16/30 and drop id 3. */
    p = (struct st_sampler_params){.temperature = 0.5f, .top_p = 1, .min_p = 0.6f, .repeat_penalty = 1};
    CHECK_OK(st_sampler_init(&p, 4, 0, &s));
    CHECK_OK(st_sampler_candidates(s, l, &c));
    CHECK(c && is(c, 2, (int[]){1, 3}, (double[]){16 / 25., 9 / 25.}));
    st_sampler_free(s);
}

static void test_penalties(void) {
    const float l[3] = {2.0f, -1.0f, 0.5f};
    struct st_sampler_params p = {.temperature = 1, .top_p = 1, .repeat_penalty = 2, .frequency_penalty = 0.5f,
                                  .presence_penalty = 0.25f, .penalty_last_n = 64};
    st_sampler_t *s = NULL;
    const struct st_candidates *c = NULL;
    CHECK_OK(st_sampler_init(&p, 3, 0, &s));
    st_sampler_accept(s, 0);
    st_sampler_accept(s, 0);
    st_sampler_accept(s, 1);
    st_sampler_accept(s, 7);   /* outside the vocabulary: ignored */
    CHECK_OK(st_sampler_candidates(s, l, &c));
    /* id 0: 2 / 2 - (2 x 0.5 + 0.25) = -0.25; id 1: -1 x 2 - (0.5 + 0.25) = -2.75; id 2 untouched */
    CHECK(c && c->n == 3 && c->data[0].logit == -0.25f && c->data[1].logit == -2.75f && c->data[2].logit == 0.5f);
    st_sampler_free(s);
    /* a window of 2 sees only the last two tokens: 0 once, 1 once */
    p.penalty_last_n = 2;
    CHECK_OK(st_sampler_init(&p, 3, 0, &s));
    st_sampler_accept(s, 0);
    st_sampler_accept(s, 0);
    st_sampler_accept(s, 1);
    CHECK_OK(st_sampler_candidates(s, l, &c));
    CHECK(c && c->data[0].logit == 0.25f && c->data[1].logit == -2.75f && c->data[2].logit == 0.5f);
    /* reset forgets */
    st_sampler_reset(s);
    CHECK_OK(st_sampler_candidates(s, l, &c));
    CHECK(c && c->data[0].logit == 2.0f && c->data[1].logit == -1.0f);
    st_sampler_free(s);
    /* -1 = the whole history */
    p.penalty_last_n = -1;
    CHECK_ERR(st_sampler_init(&p, 3, 0, &s), ST_ERR_CONFIG, "penalty_last_n = -1 needs a history capacity");
    CHECK_OK(st_sampler_init(&p, 3, 100, &s));
    for (int i = 0; i < 50; i++) st_sampler_accept(s, 2);
    CHECK_OK(st_sampler_candidates(s, l, &c));
    CHECK(c && c->data[2].logit == 0.25f - (50 * 0.5f + 0.25f));
    st_sampler_free(s);
}

/* logit_bias: added before the chain, greedy included, against brute force */
static void test_logit_bias(void) {
    float l[64];
    for (int i = 0; i < 64; i++) l[i] = (float)((i * 37) % 64) / 8.0f - 4.0f;   /* a permutation: no ties */
    const int32_t ids[3] = {63, 5, 40};
    const float bias[3] = {-100.0f, 9.5f, 0.25f};
    float b[64];
    memcpy(b, l, sizeof b);
    for (int i = 0; i < 3; i++) b[ids[i]] += bias[i];
    int best = 0;
    for (int i = 1; i < 64; i++)
        if (b[i] > b[best]) best = i;
    struct st_sampler_params p;
    st_sampler_params_default(&p);
    p.temperature = 0;
    st_sampler_t *s = NULL;
    CHECK_OK(st_sampler_init(&p, 64, 0, &s));
    int unbiased = st_sampler_sample(s, l);
    CHECK_OK(st_sampler_set_bias(s, ids, bias, 3));
    CHECK_MSG(st_sampler_sample(s, l) == best && best != unbiased, "greedy with bias %d, brute force %d (unbiased %d)",
              st_sampler_sample(s, l), best, unbiased);
    /* the candidates of a draw are the biased logits, top-k over them */
    st_sampler_free(s);
    p.temperature = 1;
    p.top_k = 4;
    p.top_p = 1;
    p.min_p = 0;
    CHECK_OK(st_sampler_init(&p, 64, 0, &s));
    CHECK_OK(st_sampler_set_bias(s, ids, bias, 3));
    const struct st_candidates *c = NULL;
    CHECK_OK(st_sampler_candidates(s, l, &c));
    bool same = c && c->n == 4;
    for (int k = 0; same && k < 4; k++) {   /* the k-th largest of b */
        int rank = 0;
        for (int i = 0; i < 64; i++) rank += b[i] > b[c->data[k].id];
        same = rank == k && c->data[k].logit == b[c->data[k].id];
    }
    CHECK_MSG(same, "top-4 of the biased logits");
    /* n = 0 removes them; bad ids and values are refused */
    CHECK_OK(st_sampler_set_bias(s, NULL, NULL, 0));
    CHECK_OK(st_sampler_candidates(s, l, &c));
    CHECK(c && c->data[0].logit == 3.875f);
    const int32_t bad_id[1] = {64};
    const float one[1] = {1.0f}, inf[1] = {INFINITY};
    CHECK_ERR(st_sampler_set_bias(s, bad_id, one, 1), ST_ERR_USAGE, "token id 64, outside the vocabulary [0, 64)");
    CHECK_ERR(st_sampler_set_bias(s, ids, inf, 1), ST_ERR_USAGE, "logit bias of token id 63 is not finite");
    st_sampler_free(s);
}

static void test_greedy_and_errors(void) {
    const float l[4] = {1, 3, 3, 2};
    struct st_sampler_params p;
    st_sampler_params_default(&p);
    p.temperature = 0;
    st_sampler_t *s = NULL;
    CHECK_OK(st_sampler_init(&p, 4, 0, &s));
    CHECK(st_sampler_sample(s, l) == 1);   /* tie broken by the lower id */
    CHECK(st_sampler_draws(s) == 0);
    const float nan4[4] = {NAN, -INFINITY, NAN, -INFINITY};
    CHECK(st_sampler_sample(s, nan4) == -1);
    CHECK(strstr(st_last_error(), "no finite logit") != NULL);
    const float inf[4] = {0, INFINITY, NAN, 5};
    CHECK(st_sampler_sample(s, inf) == 1);
    st_sampler_free(s);
    st_sampler_params_default(&p);
    p.top_p = 0;
    CHECK_ERR(st_sampler_init(&p, 4, 0, &s), ST_ERR_CONFIG, "top_p must be > 0");
    st_sampler_params_default(&p);
    p.min_p = 1;
    CHECK_ERR(st_sampler_init(&p, 4, 0, &s), ST_ERR_CONFIG, "min_p must be < 1");
    st_sampler_params_default(&p);
    p.repeat_penalty = 0;
    CHECK_ERR(st_sampler_init(&p, 4, 0, &s), ST_ERR_CONFIG, "repeat_penalty must be > 0");
    CHECK(s == NULL);
}

static void test_rng_and_seed(void) {
    /* reference values: splitmix64 → xoshiro256**, computed independently */
    struct st_rng r;
    st_rng_seed(&r, 0);
    CHECK(st_rng_next(&r) == 0x99ec5f36cb75f2b4ull && st_rng_next(&r) == 0xbf6e1f784956452aull &&
          st_rng_next(&r) == 0x1a5f849d4933e6e0ull);
    st_rng_seed(&r, 42);
    CHECK(st_rng_next(&r) == 0x15780b2e0c2ec716ull && st_rng_next(&r) == 0x6104d9866d113a7eull &&
          st_rng_next(&r) == 0xae17533239e499a1ull);
    st_rng_seed(&r, 42);
    CHECK(st_rng_uniform(&r) == 0.08386297105988216 && st_rng_uniform(&r) == 0.3789802506626686 &&
          st_rng_uniform(&r) == 0.6800434110281394);

    /* seed 42, probabilities .1 .4 .2 .3 (running sums .1 .5 .7 1): u = .084, .379, .680 → 0, 1, 2 */
    const float l[4] = {logf(1), logf(4), logf(2), logf(3)};
    struct st_sampler_params p = {.temperature = 1, .top_p = 1, .repeat_penalty = 1, .seed = 42};
    st_sampler_t *s = NULL;
    CHECK_OK(st_sampler_init(&p, 4, 0, &s));
    int got[3];
    for (int i = 0; i < 3; i++) got[i] = st_sampler_sample(s, l);
    CHECK(got[0] == 0 && got[1] == 1 && got[2] == 2);
    CHECK(st_sampler_draws(s) == 3);
    st_sampler_reset(s);
    for (int i = 0; i < 3; i++) CHECK(st_sampler_sample(s, l) == got[i]);

    /* 40000 draws follow the distribution */
    st_sampler_free(s);
    p.seed = 7;
    CHECK_OK(st_sampler_init(&p, 4, 0, &s));
    int hist[4] = {0};
    for (int i = 0; i < 40000; i++) hist[st_sampler_sample(s, l)]++;
    const double want[4] = {0.1, 0.4, 0.2, 0.3};
    for (int i = 0; i < 4; i++) CHECK_MSG(fabs(hist[i] / 40000.0 - want[i]) < 0.01, "id %d: %d", i, hist[i]);
    st_sampler_free(s);

    /* a big vocabulary with the default chain: same seed, same tokens */
    enum { NV = 151936 };
    static float big[NV];
    struct st_rng g;
    st_rng_seed(&g, 123);
    for (int i = 0; i < NV; i++) big[i] = (float)(st_rng_uniform(&g) * 20.0 - 10.0);
    st_sampler_params_default(&p);
    p.seed = 99;
    p.repeat_penalty = 1.1f;
    st_sampler_t *a = NULL, *b = NULL;
    CHECK_OK(st_sampler_init(&p, NV, 4096, &a));
    CHECK_OK(st_sampler_init(&p, NV, 4096, &b));
    bool same = true, varied = false;
    int first = -1;
    for (int i = 0; i < 64; i++) {
        int32_t x = st_sampler_sample(a, big), y = st_sampler_sample(b, big);
        same &= x == y && x >= 0;
        if (first < 0) first = x; else varied |= x != first;
        st_sampler_accept(a, x);
        st_sampler_accept(b, y);
    }
    CHECK(same && varied);
    st_sampler_free(a);
    st_sampler_free(b);

    /* the sampler's direct top-k path (no penalties) equals the stage functions on all candidates */
    st_sampler_params_default(&p);
    p.top_k = 300;
    p.top_p = 0.9f;
    p.min_p = 0.02f;
    CHECK_OK(st_sampler_init(&p, NV, 0, &a));
    const struct st_candidates *fast = NULL;
    CHECK_OK(st_sampler_candidates(a, big, &fast));
    static struct st_token_prob all[NV];
    struct st_candidates ref = {all, 0, false};
    st_cand_from_logits(&ref, big, NV);
    st_cand_top_k(&ref, 300);
    st_cand_top_p(&ref, 0.9f);
    st_cand_min_p(&ref, 0.02f);
    st_cand_temperature(&ref, 0.8f);
    st_cand_softmax(&ref);
    bool eq = fast && fast->n == ref.n && fast->n > 1;
    for (int64_t i = 0; eq && i < ref.n; i++)
        eq = fast->data[i].id == ref.data[i].id && fast->data[i].logit == ref.data[i].logit && fast->data[i].p == ref.data[i].p;
    CHECK(eq);
    /* greedy direct path: the argmax, lowest id on ties */
    big[777] = big[1234] = 50.0f;
    st_sampler_free(a);
    p.temperature = 0;
    CHECK_OK(st_sampler_init(&p, NV, 0, &a));
    CHECK(st_sampler_sample(a, big) == 777);
    st_sampler_free(a);
}

static void test_det_math(void) {
    double worst = 0;
    for (double x = -740; x <= 700; x += 0.37) {
        double e = exp(x), d = st_det_exp(x);
        if (e > 1e-300) worst = fmax(worst, fabs(d - e) / e);
    }
    CHECK_MSG(worst < 4e-15, "st_det_exp relative error %g", worst);
    CHECK(st_det_exp(0) == 1.0 && st_det_exp(-800) == 0.0);
    worst = 0;
    for (double x = 1e-30; x < 1e30; x *= 1.7) worst = fmax(worst, fabs(st_det_log(x) - log(x)) / fmax(1, fabs(log(x))));
    CHECK_MSG(worst < 4e-15, "st_det_log relative error %g", worst);
    CHECK(st_det_log(1.0) == 0.0);
}

int main(void) {
    test_filters();
    test_chain();
    test_penalties();
    test_greedy_and_errors();
    test_logit_bias();
    test_rng_and_seed();
    test_det_math();
    return st_test_finish("sampler");
}
