/* The KV cache type in planning (issue 11 item 4):
 *  - exact bytes: a Q8_0 row of n_head_kv x head_dim values is 34 bytes per 32
 *    (written out by hand for Qwen2.5-7B: 4 x 128 = 512 values = 544 bytes);
 *  - kv_dtype auto gives a stage q8_0 only when its float cache does not fit:
 *    an M40 with a Q4_K_M 14B keeps f32 up to the longest context that fits
 *    in f32 (found here by its own search with the cache forced to f32) and
 *    takes q8_0 just past it; per stage in a manual placement;
 *  - a forced type is what every stage gets; q8_0 on rows that are not whole
 *    32-value blocks is a positioned error with a hint;
 *  - the "kv cache reach" figures are the longest contexts that fit with each
 *    type forced (checked by planning again at them and 256 tokens past them),
 *    and q8_0 reaches further than f16 on the M40 + 3050 Ti 14B what-if. */
#include "check.h"
#include "planner/planner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void catalog(struct st_plan_device *d, const char *name, const char *label) {
    struct st_device_info in;
    CHECK_OK(st_catalog_lookup(name, &in));
    st_plan_device_init(d, &in);
    snprintf(d->label, sizeof d->label, "%s", label);
}

static st_plan *plan(const struct st_plan_model *m, struct st_plan_device *d, int n, struct st_plan_request *r) {
    st_plan *p = NULL;
    st_status s = st_plan_make(m, d, n, NULL, r, &p);
    if (s != ST_OK) st_error_clear();
    if (p && !p->feasible) { st_plan_free(p); p = NULL; }
    return p;
}

static bool fits_kv(const struct st_plan_model *m, struct st_plan_device *d, int n, struct st_plan_request *r,
                    int64_t ctx, int kv) {
    struct st_plan_request q = *r;
    struct st_plan_device dd[4];
    memcpy(dd, d, sizeof *d * (size_t)n);
    for (int i = 0; i < n; i++) dd[i].force_kv = kv;
    q.force_kv = kv;
    q.context = ctx;
    q.no_suggestions = true;
    st_plan *p = plan(m, dd, n, &q);
    bool ok = p != NULL;
    st_plan_free(p);
    return ok;
}

static void test_bytes(void) {
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("qwen2.5-7b", "q4_k_m", &m));
    CHECK(m.n_head_kv == 4 && m.head_dim == 128 && m.n_layer == 28);
    CHECK(st_plan_kv_q8_ok(&m));
    CHECK(st_plan_kv_bytes(&m, ST_DTYPE_Q8_0, 28, 4096, 2) == 28ull * 4096 * 2 * 2 * 544);
    CHECK(st_plan_kv_bytes(&m, ST_DTYPE_F16, 28, 4096, 2) == 28ull * 4096 * 2 * 2 * 1024);
    CHECK(st_plan_kv_bytes(&m, ST_DTYPE_F32, 3, 1000, 1) == 3ull * 1000 * 2 * 2048);
    /* a forced q8_0 cache: the stage's figure is that, in the total */
    struct st_plan_device h;
    catalog(&h, "h100-sxm", "h100");
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    r.context = 8192;
    r.batch = 3;
    r.force_kv = ST_DTYPE_Q8_0;
    st_plan *p = plan(&m, &h, 1, &r);
    CHECK(p && p->n_stages == 1);
    if (p) {
        const struct st_plan_stage *s = &p->stages[0];
        CHECK(s->kv_dtype == ST_DTYPE_Q8_0);
        CHECK(s->mem.kv == 28ull * 8192 * 3 * 2 * 544);
        CHECK(s->mem.total == s->mem.weights + s->mem.kv + s->mem.workspace);
        /* a saved plan keeps the type (deploy's replay forces it again) */
        char path[] = "/tmp/strata-kvq8-XXXXXX";
        int fd = mkstemp(path);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        CHECK(f != NULL);
        if (f) {
            CHECK_OK(st_plan_write_yaml(f, p));
            fclose(f);
            st_plan *back = NULL;
            CHECK_OK(st_plan_read_yaml(path, &back));
            CHECK(back && back->stages[0].kv_dtype == ST_DTYPE_Q8_0 && back->stages[0].mem.kv == s->mem.kv);
            st_plan_free(back);
            remove(path);
        }
    }
    st_plan_free(p);
    /* a device's own type wins over the request's */
    h.force_kv = ST_DTYPE_F32;
    p = plan(&m, &h, 1, &r);
    CHECK(p && p->stages[0].kv_dtype == ST_DTYPE_F32 && p->stages[0].mem.kv == 28ull * 8192 * 3 * 2 * 2048);
    st_plan_free(p);
    /* rows that are not whole blocks: forcing q8_0 is an error naming the shape */
    m.n_head_kv = 1;
    m.head_dim = 24;
    h.force_kv = -1;
    CHECK(!st_plan_kv_q8_ok(&m));
    st_plan *bad = NULL;
    CHECK_ERR(st_plan_make(&m, &h, 1, NULL, &r, &bad), ST_ERR_CONFIG,
              "kv_dtype q8_0: qwen2.5-7b has KV rows of 24 values (1 kv heads x head_dim 24), not whole 32-value");
    CHECK(strstr(st_last_error(), "hint: use kv_dtype: f16 (or auto)") != NULL);
    st_plan_free(bad);
    h.force_kv = ST_DTYPE_Q8_0;
    r.force_kv = -1;
    CHECK_ERR(st_plan_make(&m, &h, 1, NULL, &r, &bad), ST_ERR_CONFIG, "kv_dtype q8_0 on h100: ");
    st_plan_free(bad);
    /* ... and auto never falls back to q8_0 there: a context too long for f32/bf16 does not fit */
    h.force_kv = -1;
    r.context = 1 << 20;
    r.batch = 64;
    r.no_suggestions = true;
    CHECK(st_plan_make(&m, &h, 1, NULL, &r, &bad) == ST_ERR_CONFIG);
    st_error_clear();
    st_plan_free(bad);
    st_plan_model_free(&m);
}

/* An M40 alone with a Q4_K_M 14B: f32 (its precision's cache) until that is short, then q8_0. */
static void test_auto_only_when_short(void) {
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("qwen2.5-14b", "q4_k_m", &m));
    m.n_ctx_train = 0;            /* (suggestions stop at the trained context: no cap here) */
    struct st_plan_device d;
    catalog(&d, "tesla-m40", "m40");
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    /* the longest context with an f32 cache, by bisection over steps of 256 */
    int64_t lo = 0, hi = 4096;   /* 1M tokens, known not to fit */
    CHECK(!fits_kv(&m, &d, 1, &r, hi * 256, ST_DTYPE_F32));
    while (hi - lo > 1) {
        int64_t mid = (lo + hi) / 2;
        if (fits_kv(&m, &d, 1, &r, mid * 256, ST_DTYPE_F32)) lo = mid; else hi = mid;
    }
    const int64_t c32 = lo * 256;
    CHECK_MSG(c32 >= 8192, "an f32 cache holds only %lld tokens", (long long)c32);
    r.context = c32;
    st_plan *p = plan(&m, &d, 1, &r);
    CHECK(p && p->stages[0].kv_dtype == ST_DTYPE_F32 && p->stages[0].prec == ST_PREC_F32);
    st_plan_free(p);
    r.context = c32 + 256;        /* f32 is short: q8_0, exact bytes, within the device */
    p = plan(&m, &d, 1, &r);
    CHECK_MSG(p && p->stages[0].kv_dtype == ST_DTYPE_Q8_0, "at %lld tokens: %s", (long long)r.context,
              p ? st_dtype_name(p->stages[0].kv_dtype) : "does not fit");
    if (p) {
        const struct st_plan_stage *s = &p->stages[0];
        CHECK(s->mem.kv == (uint64_t)m.n_layer * (uint64_t)r.context * 2 * (uint64_t)(m.n_head_kv * m.head_dim / 32 * 34));
        CHECK(s->mem.total <= s->mem.usable);
        bool said = false;
        for (int i = 0; i < p->n_reasons; i++)
            said |= strstr(p->reasons[i], "KV cache q8_0 (kv_dtype: auto): the f32 cache of") != NULL;
        CHECK_MSG(said, "no reason explains the q8_0 cache");
    }
    st_plan_free(p);
    /* past what q8_0 holds: does not fit, and the shorter-context suggestion is q8_0's reach, not f32's */
    r.context = 1 << 19;
    st_plan *q = NULL;
    CHECK(st_plan_make(&m, &d, 1, NULL, &r, &q) == ST_ERR_CONFIG);
    st_error_clear();
    long long sug = -1;
    for (int i = 0; q && i < q->shortfall.n_suggestions; i++)
        if (sscanf(q->shortfall.suggestions[i].what, "context %lld", &sug) == 1) break;
    CHECK_MSG(sug > c32, "shorter context suggested: %lld, the f32 cache alone holds %lld", sug, (long long)c32);
    st_plan_free(q);
    st_plan_model_free(&m);
}

/* Manual placement: the stage that is short takes q8_0, the other keeps its float cache. */
static void test_per_stage(void) {
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("qwen2.5-14b", "q4_k_m", &m));
    struct st_plan_device d[2];
    catalog(&d[0], "tesla-m40", "m40");
    catalog(&d[1], "rtx-3050-ti-laptop", "laptop");
    struct st_plan_range rg[2] = {{0, 0, 37}, {1, 38, m.n_layer - 1}};
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    r.manual = rg;
    r.n_manual = 2;
    r.no_suggestions = true;
    int64_t at = -1;
    for (int64_t ctx = 1024; ctx <= 65536 && at < 0; ctx += 1024) {
        r.context = ctx;
        st_plan *p = plan(&m, d, 2, &r);
        if (p && p->stages[1].kv_dtype == ST_DTYPE_Q8_0) {
            at = ctx;
            CHECK(p->stages[0].kv_dtype == ST_DTYPE_F32);            /* the M40 is not short */
            CHECK(p->stages[1].mem.total <= p->stages[1].mem.usable);
        } else if (p) {
            CHECK(p->stages[1].kv_dtype == ST_DTYPE_BF16 && p->stages[0].kv_dtype == ST_DTYPE_F32);
        }
        st_plan_free(p);
    }
    CHECK_MSG(at > 0, "the laptop's stage never took q8_0");
    if (at > 0) {   /* there, its bf16 cache does not fit (the fallback was needed) */
        d[1].force_kv = ST_DTYPE_BF16;
        r.context = at;
        st_plan *p = NULL;
        CHECK_ERR(st_plan_make(&m, d, 2, NULL, &r, &p), ST_ERR_CONFIG, "manual stage 1 (layers 38-47 on laptop) does not fit");
        st_plan_free(p);
    }
    st_plan_model_free(&m);
}

/* configs/what-if-m40-3050ti-14b-q4km.yaml: the reach figures, checked by planning again. */
static void test_reach(void) {
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("qwen2.5-14b", "q4_k_m", &m));
    struct st_plan_device d[2];
    catalog(&d[0], "tesla-m40", "m40");
    catalog(&d[1], "rtx-3050-ti-laptop", "laptop");
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    r.objective = ST_PLAN_THROUGHPUT;
    r.context = 8192;
    st_plan *p = NULL;
    CHECK_OK(st_plan_make(&m, d, 2, NULL, &r, &p));
    CHECK(p && p->kv_reach.known);
    if (p && p->kv_reach.known) {
        const struct st_plan_kv_reach *k = &p->kv_reach;
        printf("m40 + 3050 Ti, qwen2.5-14b q4_k_m: f16 cache %lld tokens, q8_0 %lld tokens\n", (long long)k->f16_ctx,
               (long long)k->q8_ctx);
        CHECK(k->q8_ctx > k->f16_ctx && k->f16_ctx >= 8192 && k->q8_ctx < k->limit);
        CHECK(fits_kv(&m, d, 2, &r, k->f16_ctx, ST_DTYPE_F16) && !fits_kv(&m, d, 2, &r, k->f16_ctx + 256, ST_DTYPE_F16));
        CHECK(fits_kv(&m, d, 2, &r, k->q8_ctx, ST_DTYPE_Q8_0) && !fits_kv(&m, d, 2, &r, k->q8_ctx + 256, ST_DTYPE_Q8_0));
    }
    st_plan_free(p);
    /* the M40 alone (the case): q8_0 reaches further too */
    CHECK_OK(st_plan_make(&m, d, 1, NULL, &r, &p));
    CHECK(p && p->kv_reach.known && p->kv_reach.q8_ctx > p->kv_reach.f16_ctx);
    if (p) printf("m40 alone: f16 cache %lld tokens, q8_0 %lld tokens\n", (long long)p->kv_reach.f16_ctx,
                  (long long)p->kv_reach.q8_ctx);
    st_plan_free(p);
    st_plan_model_free(&m);
}

int main(void) {
    test_bytes();
    test_auto_only_when_short();
    test_per_stage();
    test_reach();
    return st_test_finish("planner_kv_q8");
}
