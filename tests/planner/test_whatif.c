/* The what-if deployments in configs/what-if-*.yaml, loaded with the real
 * config parser and planned (the CPU is a fixed description so the test does
 * not depend on the machine). Each plan's shape is asserted; the 2 x H100 case
 * does not fit, and every suggestion it prints is checked here by planning the
 * change again independently. Manual placements are validated. */
#include "check.h"
#include "orchestrator/config.h"
#include "planner/planner.h"

#include <stdlib.h>
#include <string.h>

struct scenario {
    struct st_plan_model m;
    struct st_plan_device d[8];
    int n;
    struct st_plan_request r;
    st_plan *p;
    st_status s;
};

static void cpu_device(struct st_plan_device *d) {
    struct st_device_info in = {0};
    in.kind = ST_DEVICE_CPU;
    in.numa_node = -1;
    snprintf(in.name, sizeof in.name, "test CPU (2 cores, 8 GiB)");
    in.caps = st_caps_cpu();
    in.sm_count = 2;
    in.threads = 2;
    in.mem_total_bytes = in.mem_free_bytes = 8ull << 30;
    st_plan_device_init(d, &in);
}

static void load(const char *path, struct scenario *sc) {
    memset(sc, 0, sizeof *sc);
    struct st_deploy_config *cfg = NULL;
    CHECK_MSG(st_config_load(path, &cfg) == ST_OK, "%s: %s", path, st_last_error());
    if (!cfg) return;
    CHECK_OK(st_plan_model_from_preset(cfg->model.preset, cfg->model.quant, &sc->m));
    sc->n = cfg->n_devices;
    for (int i = 0; i < cfg->n_devices && i < 8; i++) {
        const struct st_config_device *cd = &cfg->devices[i];
        if (cd->kind == ST_CONFIG_DEV_CATALOG) {
            struct st_device_info in;
            CHECK_OK(st_catalog_lookup(cd->catalog, &in));
            st_plan_device_init(&sc->d[i], &in);
        } else {
            CHECK(cd->kind == ST_CONFIG_DEV_CPU);
            cpu_device(&sc->d[i]);
        }
        if (cd->name[0]) snprintf(sc->d[i].label, sizeof sc->d[i].label, "%s", cd->name);
        sc->d[i].max_memory_bytes = cd->max_memory_bytes;
        sc->d[i].reserve_bytes = cd->reserve_bytes;
        sc->d[i].force_prec = cd->precision;
        sc->d[i].force_attn = cd->attention;
        sc->d[i].force_kv = cd->kv_dtype;
    }
    st_plan_request_defaults(&sc->r);
    sc->r.context = cfg->context;
    sc->r.batch = cfg->batch;
    sc->r.prefill_chunk = cfg->prefill_chunk;
    sc->r.objective = cfg->placement.objective == ST_CONFIG_OBJECTIVE_THROUGHPUT ? ST_PLAN_THROUGHPUT : ST_PLAN_LATENCY;
    sc->r.force_prec = cfg->placement.precision;
    sc->r.force_attn = cfg->placement.attention;
    sc->r.force_kv = cfg->placement.kv_dtype;
    st_config_free(cfg);
    sc->s = st_plan_make(&sc->m, sc->d, sc->n, NULL, &sc->r, &sc->p);
    if (sc->p && getenv("STRATA_PLAN_PRINT")) st_plan_print(stdout, sc->p, true);
}

static void done(struct scenario *sc) { st_plan_free(sc->p); st_plan_model_free(&sc->m); }

static int stage_on(const st_plan *p, const char *label) {
    for (int i = 0; i < p->n_stages; i++) if (!strcmp(p->devices[p->stages[i].device].label, label)) return i;
    return -1;
}

static bool fits(const struct st_plan_model *m, const struct st_plan_device *d, int n, const struct st_plan_request *r) {
    struct st_plan_request q = *r;
    q.no_suggestions = true;
    st_plan *p = NULL;
    st_status s = st_plan_make(m, d, n, NULL, &q, &p);
    bool ok = s == ST_OK && p && p->feasible;
    st_plan_free(p);
    st_error_clear();
    return ok;
}

static void check_h100(void) {
    struct scenario sc;
    load("configs/what-if-2xh100-qwen72b-bf16.yaml", &sc);
    st_plan *p = sc.p;
    CHECK(sc.s == ST_ERR_CONFIG && p && !p->feasible);
    if (!p) { done(&sc); return; }
    CHECK(strstr(st_last_error(), "short") != NULL);
    const struct st_plan_shortfall *sf = &p->shortfall;
    CHECK(sf->bytes_missing > 0 && sf->bytes_needed == sf->bytes_usable + sf->bytes_missing);
    /* needed = 135.43 GiB of weights + 4 x 32768 x 80 layers x 2 x 8 x 128 x 2 bytes (40 GiB) + workspace */
    CHECK(sf->bytes_needed > sc.m.total_bytes + (40ull << 30));
    int n_fit = 0;
    bool saw_ctx = false, saw_batch = false, saw_quant = false, saw_dev = false, saw_cpu = false;
    for (int i = 0; i < sf->n_suggestions; i++) {
        const struct st_plan_suggestion *g = &sf->suggestions[i];
        n_fit += g->fits;
        long long v;
        char q[16];
        if (sscanf(g->what, "context %lld", &v) == 1) {
            saw_ctx = true;
            struct st_plan_request r = sc.r;
            r.context = v;
            CHECK_MSG(g->fits && fits(&sc.m, sc.d, 2, &r), "context %lld should fit", v);
            r.context = v + 256;
            CHECK_MSG(!fits(&sc.m, sc.d, 2, &r), "context %lld is not the longest that fits", v);
        } else if (sscanf(g->what, "batch %lld", &v) == 1) {
            saw_batch = true;
            struct st_plan_request r = sc.r;
            r.batch = v;
            CHECK(g->fits && fits(&sc.m, sc.d, 2, &r));
            r.batch = v + 1;
            CHECK(!fits(&sc.m, sc.d, 2, &r));
        } else if (sscanf(g->what, "a %15s file", q) == 1) {
            saw_quant = true;
            struct st_plan_model m2;
            CHECK_OK(st_plan_model_from_preset("qwen2.5-72b", q, &m2));
            CHECK_MSG(g->fits && fits(&m2, sc.d, 2, &sc.r), "%s should fit", q);
            st_plan_model_free(&m2);
        } else if (!strncmp(g->what, "one more h100", 13)) {
            saw_dev = true;
            struct st_plan_device d3[3] = {sc.d[0], sc.d[1], sc.d[0]};
            CHECK(g->fits == fits(&sc.m, d3, 3, &sc.r));
        } else if (!strncmp(g->what, "CPU offload", 11)) {
            saw_cpu = true;
            struct st_plan_device d3[3] = {sc.d[0], sc.d[1]};
            struct st_device_info ci = {0};
            ci.kind = ST_DEVICE_CPU;
            ci.caps = st_caps_cpu();
            snprintf(ci.name, sizeof ci.name, "host CPU");
            ci.sm_count = 8;
            ci.threads = 16;
            ci.mem_total_bytes = ci.mem_free_bytes = 64ull << 30;
            st_plan_device_init(&d3[2], &ci);
            CHECK(g->fits == fits(&sc.m, d3, 3, &sc.r));
            /* a "no" says why: how many layers the CPU could take */
            if (!g->fits) CHECK_MSG(strstr(g->what, "): at most ") && strstr(g->what, " of 80 layers fit it ("),
                                    "%s", g->what);
        }
    }
    CHECK(saw_ctx && saw_batch && saw_quant && saw_dev && saw_cpu);
    CHECK(n_fit >= 3);
    done(&sc);
}

/* The reason that contains needle, or NULL. */
static const char *reason_with(const st_plan *p, const char *needle) {
    for (int i = 0; p && i < p->n_reasons; i++)
        if (strstr(p->reasons[i], needle)) return p->reasons[i];
    return NULL;
}

/* Why mixing pays (README): the F16 7B stays on the M40 for one stream and the
 * reasons say why; the 14B Q4_K_M with the throughput objective puts layers on
 * both cards and decodes faster than the M40 alone, planned independently. */
static void check_mixing(void) {
    struct scenario sc;
    load("configs/what-if-m40-3050ti-f16.yaml", &sc);
    const char *r = reason_with(sc.p, "device laptop unused:");
    CHECK_MSG(r && strstr(r, "on m40") && strstr(r, "leaving laptop idle is the fastest plan") &&
              strstr(r, "objective: throughput"), "%s", r ? r : "(no reason for the unused laptop)");
    done(&sc);

    load("configs/what-if-m40-3050ti-14b-q4km.yaml", &sc);
    CHECK(sc.s == ST_OK && sc.p && sc.p->n_stages == 2 && sc.p->objective == ST_PLAN_THROUGHPUT);
    if (sc.s == ST_OK && sc.p && sc.p->n_stages == 2) {
        int a = stage_on(sc.p, "m40"), b = stage_on(sc.p, "laptop");
        CHECK(a >= 0 && b >= 0);
        if (a >= 0 && b >= 0) {
            CHECK(sc.p->stages[a].prec == ST_PREC_F32 && sc.p->stages[a].attn == ST_ATTN_EAGER);
            CHECK(sc.p->stages[b].prec == ST_PREC_BF16 && sc.p->stages[b].attn == ST_ATTN_FLASH);
        }
        /* the M40 alone, planned on its own: slower than the pair */
        st_plan *alone = NULL;
        CHECK_OK(st_plan_make(&sc.m, &sc.d[0], 1, NULL, &sc.r, &alone));
        CHECK(alone && alone->feasible && sc.p->decode_tok_s > 1.3 * alone->decode_tok_s);
        r = reason_with(sc.p, "spreading pays:");
        char want[64];
        if (alone) snprintf(want, sizeof want, "m40 alone, would give %.1f tok/s", alone->decode_tok_s);
        CHECK_MSG(r && alone && strstr(r, want), "%s (want '%s')", r ? r : "(no 'spreading pays' reason)", want);
        /* one stream: the card whose layer decodes faster is filled first (for Q4_K_M the 3050 Ti's dp4a GEMV
         * against the M40's instruction-bound Maxwell path), and the pair is no slower than the M40 alone */
        st_plan *lat = NULL;
        sc.r.objective = ST_PLAN_LATENCY;
        CHECK_OK(st_plan_make(&sc.m, sc.d, 2, NULL, &sc.r, &lat));
        CHECK(lat && lat->feasible && alone && lat->decode_tok_s >= alone->decode_tok_s * (1 - 1e-9));
        if (lat && lat->feasible) {
            struct st_plan_stage a1, b1;
            CHECK(st_plan_stage_eval(&sc.m, &sc.d[0], &sc.r, 10, 10, &a1, NULL, 0));
            CHECK(st_plan_stage_eval(&sc.m, &sc.d[1], &sc.r, 10, 10, &b1, NULL, 0));
            const char *fast = a1.decode_ms < b1.decode_ms ? "m40" : "laptop";
            int f = stage_on(lat, fast);
            CHECK_MSG(f >= 0, "the faster card (%s) carries no layers", fast);
            if (f >= 0 && lat->n_stages == 2) {   /* full: one more layer from its neighbour does not fit */
                const struct st_plan_stage *st = &lat->stages[f];
                int64_t first = st->first, last = st->last;
                if (f == 0) last++; else first--;
                char why[320] = "";
                CHECK(!st_plan_stage_eval(&sc.m, &lat->devices[st->device], &sc.r, first, last, NULL, why,
                                          sizeof why) && strstr(why, "needs"));
            }
        }
        st_plan_free(lat);
        st_plan_free(alone);
    }
    done(&sc);

    /* a CPU offload that does not fit says how many layers the CPU could take, and that count is right */
    load("configs/what-if-2xh100-qwen72b-bf16.yaml", &sc);
    st_plan_free(sc.p);
    sc.p = NULL;
    struct st_plan_device cpu;
    cpu_device(&cpu);
    struct st_device_info ci = cpu.info;   /* enough memory in total (2 x 79.5 + 23.75 > 175.6 GiB) ... */
    ci.mem_total_bytes = ci.mem_free_bytes = 24ull << 30;
    st_plan_device_init(&cpu, &ci);        /* ... but f32 KV and eager scores leave room for a few layers */
    cpu.force_kv = ST_DTYPE_F32;           /* (the config's bf16 cache would let the CPU take more) */
    sc.r.offload_cpu = &cpu;
    CHECK_ERR(st_plan_make(&sc.m, sc.d, 2, NULL, &sc.r, &sc.p), ST_ERR_CONFIG, "needs");
    const struct st_plan_suggestion *off = NULL;
    for (int i = 0; sc.p && i < sc.p->shortfall.n_suggestions; i++)
        if (!strncmp(sc.p->shortfall.suggestions[i].what, "CPU offload", 11)) off = &sc.p->shortfall.suggestions[i];
    long long k = -1, of = -1;
    const char *at = off ? strstr(off->what, ": at most ") : NULL;
    CHECK_MSG(off && !off->fits && at && sscanf(at, ": at most %lld of %lld layers fit it (", &k, &of) == 2 && of == 80,
              "%s", off ? off->what : "(no CPU offload suggestion)");
    if (k > 0) {
        struct st_plan_stage st;
        CHECK(st_plan_stage_eval(&sc.m, &cpu, &sc.r, 1, k, &st, NULL, 0));
        CHECK(!st_plan_stage_eval(&sc.m, &cpu, &sc.r, 1, k + 1, &st, NULL, 0));
    }
    sc.r.offload_cpu = NULL;
    done(&sc);

    /* the CPU's reasons speak of the CPU, not of a compute capability */
    load("configs/what-if-cpu-qwen0.5b.yaml", &sc);
    for (int i = 0; sc.p && i < sc.p->n_reasons; i++) CHECK_MSG(!strstr(sc.p->reasons[i], "cc 0.0"), "%s", sc.p->reasons[i]);
    r = reason_with(sc.p, "bf16 not used:");
    CHECK_MSG(r && strstr(r, "the CPU backend multiplies in fp32"), "%s", r ? r : "(no bf16 reason)");
    done(&sc);
}

static void check_manual(void) {
    struct scenario sc;
    load("configs/what-if-m40-3050ti-q4km.yaml", &sc);
    st_plan_free(sc.p);
    sc.p = NULL;
    struct st_plan_range ok[2] = {{1, 0, 9}, {0, 10, 27}};
    sc.r.manual = ok;
    sc.r.n_manual = 2;
    CHECK_OK(st_plan_make(&sc.m, sc.d, 2, NULL, &sc.r, &sc.p));
    CHECK(sc.p && sc.p->manual && sc.p->n_stages == 2 && sc.p->stages[0].device == 1 &&
          sc.p->stages[0].attn == ST_ATTN_FLASH && sc.p->stages[1].prec == ST_PREC_F32);
    st_plan_free(sc.p);
    sc.p = NULL;
    struct st_plan_range gap[2] = {{0, 0, 9}, {1, 11, 27}};
    sc.r.manual = gap;
    CHECK_ERR(st_plan_make(&sc.m, sc.d, 2, NULL, &sc.r, &sc.p), ST_ERR_CONFIG,
              "manual stage 1: layers 11-27: expected a range starting at layer 10");
    struct st_plan_range shrt[2] = {{0, 0, 9}, {1, 10, 20}};
    sc.r.manual = shrt;
    CHECK_ERR(st_plan_make(&sc.m, sc.d, 2, NULL, &sc.r, &sc.p), ST_ERR_CONFIG, "ends at layer 20");
    struct st_plan_range dev[1] = {{5, 0, 27}};
    sc.r.manual = dev;
    sc.r.n_manual = 1;
    CHECK_ERR(st_plan_make(&sc.m, sc.d, 2, NULL, &sc.r, &sc.p), ST_ERR_CONFIG, "device 5 does not exist");
    struct st_plan_range big[1] = {{1, 0, 27}};   /* 4.4 GiB of weights on a 4 GiB card */
    sc.r.manual = big;
    st_plan *p = NULL;
    CHECK_ERR(st_plan_make(&sc.m, sc.d, 2, NULL, &sc.r, &p), ST_ERR_CONFIG, "(layers 0-27 on laptop) does not fit: needs");
    st_plan_free(p);
    /* one device holding two stages: allowed, memory summed, a same-device hop */
    struct st_plan_range twice[3] = {{0, 0, 9}, {1, 10, 14}, {0, 15, 27}};
    sc.r.manual = twice;
    sc.r.n_manual = 3;
    CHECK_OK(st_plan_make(&sc.m, sc.d, 2, NULL, &sc.r, &p));
    CHECK(p && p->n_stages == 3 && p->n_hops == 2);
    st_plan_free(p);
    sc.d[0].max_memory_bytes = 4ull << 30;   /* each M40 stage fits alone, not both */
    CHECK_ERR(st_plan_make(&sc.m, sc.d, 2, NULL, &sc.r, &p), ST_ERR_CONFIG, "m40 holds 2 manual stages");
    st_plan_free(p);
    sc.r.manual = NULL;
    done(&sc);
}

int main(void) {
    struct scenario sc;

    load("configs/what-if-m40-3050ti-f16.yaml", &sc);
    CHECK(sc.s == ST_OK && sc.p && sc.p->n_stages == 1);
    if (sc.p && sc.p->n_stages == 1) {
        CHECK(!strcmp(sc.p->devices[sc.p->stages[0].device].label, "m40"));
        CHECK(sc.p->stages[0].prec == ST_PREC_F32 && sc.p->stages[0].attn == ST_ATTN_EAGER);
    }
    done(&sc);

    load("configs/what-if-m40-3050ti-q4km.yaml", &sc);
    CHECK(sc.s == ST_OK && sc.p && sc.p->n_stages == 2);
    if (sc.p && sc.p->n_stages == 2) {
        int a = stage_on(sc.p, "m40"), b = stage_on(sc.p, "laptop");
        CHECK(a >= 0 && b >= 0);
        if (a >= 0 && b >= 0) {
            CHECK(sc.p->stages[a].prec == ST_PREC_F32 && sc.p->stages[a].kv_dtype == ST_DTYPE_F32 &&
                  sc.p->stages[a].attn == ST_ATTN_EAGER);
            CHECK(sc.p->stages[b].prec == ST_PREC_BF16 && sc.p->stages[b].attn == ST_ATTN_FLASH);
        }
        CHECK(sc.p->objective == ST_PLAN_THROUGHPUT && sc.p->bottleneck_ms > 0);
    }
    done(&sc);

    load("configs/what-if-p40-3090-qwen32b.yaml", &sc);
    CHECK(sc.s == ST_OK && sc.p && sc.p->n_stages == 2);
    if (sc.p && sc.p->n_stages == 2) {
        int a = stage_on(sc.p, "p40"), b = stage_on(sc.p, "rtx3090");
        CHECK(a >= 0 && b >= 0);
        if (a >= 0 && b >= 0) {
            CHECK(sc.p->stages[a].prec == ST_PREC_F32 && sc.p->stages[a].attn == ST_ATTN_EAGER);
            CHECK(sc.p->stages[b].prec == ST_PREC_BF16 && sc.p->stages[b].attn == ST_ATTN_FLASH);
            CHECK(sc.p->stages[b].last - sc.p->stages[b].first > sc.p->stages[a].last - sc.p->stages[a].first);
        }
    }
    done(&sc);

    load("configs/what-if-cpu-qwen0.5b.yaml", &sc);
    CHECK(sc.s == ST_OK && sc.p && sc.p->n_stages == 1);
    if (sc.p && sc.p->n_stages == 1)
        CHECK(sc.p->stages[0].prec == ST_PREC_F32 && sc.p->stages[0].attn == ST_ATTN_EAGER &&
              sc.p->stages[0].has_embedding && sc.p->stages[0].has_output && sc.p->decode_tok_s > 0);
    done(&sc);

    check_h100();
    check_manual();
    check_mixing();
    return st_test_finish("planner_whatif");
}
