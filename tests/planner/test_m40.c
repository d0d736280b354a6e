/* The seed's pair: Tesla M40 24 GB (Maxwell, cc 5.2, 288 GB/s) beside an RTX
 * 3050 Ti Laptop 4 GB (Ampere, cc 8.6, 192 GB/s) with Qwen2.5-7B, F16 and
 * Q4_K_M sizes, both objectives, with and without a memory cap on the M40.
 * Every plan: no bf16 and no fp16 activations (matmul inputs or KV) on the M40
 * stage, flash attention only on the 3050 Ti stage, every stage within usable
 * memory; under the latency objective the card that decodes a layer faster
 * carries as many layers as can fit on it. */
#include "check.h"
#include "planner/planner.h"

#include <string.h>

enum { M40 = 0, TI = 1 };

static void devices(struct st_plan_device d[2], uint64_t m40_cap) {
    struct st_device_info a, b;
    CHECK_OK(st_catalog_lookup("tesla-m40", &a));
    CHECK_OK(st_catalog_lookup("rtx-3050-ti-laptop", &b));
    st_plan_device_init(&d[M40], &a);
    st_plan_device_init(&d[TI], &b);
    d[M40].max_memory_bytes = m40_cap;
}

/* the largest contiguous run of layers (with embedding/output where it
 * reaches the ends) that fits on dev on its own */
static int64_t max_fit(const struct st_plan_model *m, const struct st_plan_device *dev,
                       const struct st_plan_request *r) {
    int64_t best = 0;
    for (int64_t i = 0; i < m->n_layer; i++)
        for (int64_t j = i; j < m->n_layer; j++)
            if (j - i + 1 > best && st_plan_stage_eval(m, dev, r, i, j, NULL, NULL, 0)) best = j - i + 1;
    return best;
}

static int plans = 0, split_plans = 0;

static void check_plan(const char *quant, st_plan_objective obj, uint64_t m40_cap, const bool *safe) {
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("qwen2.5-7b", quant, &m));
    struct st_plan_device d[2];
    devices(d, m40_cap);
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    r.context = 8192;
    r.objective = obj;
    r.fp16_safe = safe;
    st_plan *p = NULL;
    st_status s = st_plan_make(&m, d, 2, NULL, &r, &p);
    CHECK_MSG(s == ST_OK, "%s %s cap %llu: %s", quant, st_plan_objective_name(obj), (unsigned long long)m40_cap,
              st_last_error());
    if (s != ST_OK) { st_plan_free(p); st_plan_model_free(&m); return; }
    plans++;
    if (p->n_stages == 2) split_plans++;
    int64_t on[2] = {0, 0};
    for (int i = 0; i < p->n_stages; i++) {
        const struct st_plan_stage *st = &p->stages[i];
        on[st->device] += st->last - st->first + 1;
        CHECK_MSG(st->mem.total <= st_plan_device_usable(&d[st->device]), "stage %d over usable memory", i);
        if (st->device == M40) {
            CHECK_MSG(st->prec == ST_PREC_F32, "M40 stage runs %s", st_prec_name(st->prec));
            CHECK_MSG(st->kv_dtype == ST_DTYPE_F32, "M40 KV cache is %s", st_dtype_name(st->kv_dtype));
            CHECK(st->attn == ST_ATTN_EAGER);
        } else {
            CHECK(st->attn == ST_ATTN_FLASH);
            CHECK(st->prec == (safe ? ST_PREC_F16 : ST_PREC_BF16));
        }
        if (st->attn == ST_ATTN_FLASH) CHECK(st->device == TI);
    }
    CHECK(on[M40] + on[TI] == m.n_layer);
    if (obj == ST_PLAN_LATENCY) {
        /* which card decodes one layer faster, as the cost model sees it */
        struct st_plan_stage a, b;
        CHECK(st_plan_stage_eval(&m, &d[M40], &r, 10, 10, &a, NULL, 0));
        CHECK(st_plan_stage_eval(&m, &d[TI], &r, 10, 10, &b, NULL, 0));
        int fast = a.decode_ms < b.decode_ms ? M40 : TI;
        /* F16 weights stream at the memory's rate on both cards: the M40's 288 GB/s beat the 3050 Ti's 192.
         * Q4_K_M on the M40 is the Maxwell path (no dp4a), bound by its SMs' instruction rate: no rule. */
        if (!strcmp(quant, "f16"))
            CHECK_MSG(fast == M40, "the M40 (288 GB/s) should decode an F16 layer faster than the 3050 Ti (192 GB/s): "
                      "%.3f vs %.3f ms", a.decode_ms, b.decode_ms);
        /* the faster card is full: its stage cannot take one more layer from its neighbour */
        for (int i = 0; i < p->n_stages; i++) {
            const struct st_plan_stage *st = &p->stages[i];
            if (st->device != fast) continue;
            if (p->n_stages == 1) { CHECK(on[fast] == m.n_layer); continue; }
            int64_t f = st->first, l = st->last;
            if (i == 0) l++; else f--;
            char why[320] = "";
            bool more = st_plan_stage_eval(&m, &d[fast], &r, f, l, NULL, why, sizeof why);
            CHECK_MSG(!more && strstr(why, "needs"), "%s cap %llu: the faster card holds %lld layers and could hold "
                      "one more", quant, (unsigned long long)m40_cap, (long long)on[fast]);
            CHECK(on[fast] <= max_fit(&m, &d[fast], &r));
        }
    }
    st_plan_free(p);
    st_plan_model_free(&m);
}

int main(void) {
    bool all_safe[28];
    for (int i = 0; i < 28; i++) all_safe[i] = true;
    const char *quants[] = {"f16", "q4_k_m"};
    /* caps: none (everything fits on the M40), and tight ones that force a split */
    const uint64_t caps[][3] = {{0, 14ull << 30, 15ull << 30}, {0, 3584ull << 20, 4608ull << 20}};
    for (int q = 0; q < 2; q++)
        for (int c = 0; c < 3; c++)
            for (int o = 0; o < 2; o++) {
                check_plan(quants[q], (st_plan_objective)o, caps[q][c], NULL);
                check_plan(quants[q], (st_plan_objective)o, caps[q][c], all_safe);
            }
    /* the uncapped F16 latency plan: all 28 layers on the M40 alone */
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("qwen2.5-7b", "f16", &m));
    struct st_plan_device d[2];
    devices(d, 0);
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    r.context = 8192;
    st_plan *p = NULL;
    CHECK_OK(st_plan_make(&m, d, 2, NULL, &r, &p));
    CHECK(p && p->n_stages == 1 && p->stages[0].device == M40);
    bool said = false;
    for (int i = 0; p && i < p->n_reasons; i++) said |= strstr(p->reasons[i], "rtx-3050-ti-laptop unused") != NULL;
    CHECK_MSG(said, "the reasons explain why the 3050 Ti is unused");
    st_plan_free(p);
    /* forcing bf16 everywhere leaves the M40 out, and a manual M40 stage in bf16 is refused */
    r.force_prec = ST_PREC_BF16;
    CHECK_ERR(st_plan_make(&m, d, 2, NULL, &r, &p), ST_ERR_CONFIG, "tesla-m40 is excluded: no bf16 (cc 5.2 < 8.0)");
    st_plan_free(p);
    struct st_plan_range man[2] = {{M40, 0, 19}, {TI, 20, 27}};
    r.manual = man;
    r.n_manual = 2;
    CHECK_ERR(st_plan_make(&m, d, 2, NULL, &r, &p), ST_ERR_CONFIG, "no bf16 (cc 5.2 < 8.0)");
    st_plan_free(p);
    st_plan_model_free(&m);
    printf("%d plans checked, %d split over both cards\n", plans, split_plans);
    CHECK(split_plans >= 8);
    return st_test_finish("planner_m40_3050ti");
}
