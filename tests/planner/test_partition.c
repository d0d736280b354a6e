/* The partitioner against brute force: on random small cases (<= 4 devices,
 * <= 12 layers, random memory, speeds, capabilities, links, forced settings,
 * numerics profiles and objectives) the DP's optimum equals the best of every
 * device order, every subset and every set of cut points, evaluated stage by
 * stage with st_plan_stage_eval — and its stages respect memory. A second set
 * of throughput cases (<= 5 devices, often repeated, links from negligible to
 * slower than a stage, so that either search of the partitioner runs) also
 * checks the tie-break: among the plans with the optimal bottleneck, the
 * lowest latency. Cases that fit only when kv_dtype auto lets short stages
 * take a q8_0 cache: a plan exists iff brute force with that fallback finds
 * one, every stage fits and one holds q8_0. Weight types: models whose layers,
 * embedding and lm_head hold random dtypes beside devices whose backends run a
 * random subset; the DP still equals brute force, no stage holds a tensor its
 * device cannot run (checked here from the model's own dtype table), and a
 * model some tensor of which no device runs is refused before planning. */
#include "check.h"
#include "planner/planner.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_u64(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}
static double unif(double a, double b) { return a + (b - a) * (double)(next_u64() >> 11) / 9007199254740992.0; }
static int irange(int a, int b) { return a + (int)(next_u64() % (uint64_t)(b - a + 1)); }

struct bf {
    const struct st_plan_model *m;
    const struct st_plan_device *devs;
    int n;
    const struct st_plan_link *links;
    const struct st_plan_request *req;
    double best;
    int64_t plans;
    double tie_max, tie_sum;     /* throughput: best bottleneck, least latency among plans with it */
};

/* every ordered sequence of distinct devices with every composition of the layers */
static void search(struct bf *b, int64_t start, int *seq, int k, bool *used, double acc_sum, double acc_max,
                   int prev) {
    int64_t L = b->m->n_layer;
    for (int d = 0; d < b->n; d++) {
        if (used[d]) continue;
        double hop = prev >= 0 ? st_plan_hop_decode_ms(b->m, b->req, &b->links[prev * b->n + d]) : 0;
        for (int64_t end = start; end < L; end++) {
            struct st_plan_stage st;
            if (!st_plan_stage_eval(b->m, &b->devs[d], b->req, start, end, &st, NULL, 0)) continue;
            double sum = acc_sum + hop + st.decode_ms;
            double mx = fmax(acc_max, fmax(hop, st.decode_ms));
            if (end == L - 1) {
                b->plans++;
                double v = b->req->objective == ST_PLAN_LATENCY ? sum : mx;
                if (v < b->best) b->best = v;
                double tol = 1e-9 * b->tie_max;
                if (!(b->tie_max < INFINITY) || mx < b->tie_max - tol) { b->tie_max = mx; b->tie_sum = sum; }
                else if (mx <= b->tie_max + tol && sum < b->tie_sum) b->tie_sum = sum;
            } else {
                used[d] = true;
                seq[k] = d;
                search(b, end + 1, seq, k + 1, used, sum, mx, d);
                used[d] = false;
            }
        }
    }
}

static const int ccs[][2] = {{5, 2}, {6, 0}, {6, 1}, {7, 0}, {7, 5}, {8, 0}, {8, 6}, {8, 9}, {9, 0}};

/* the dtypes random models mix and random devices may lack */
static const st_dtype palette[] = {ST_DTYPE_Q8_0, ST_DTYPE_Q4_K, ST_DTYPE_Q6_K, ST_DTYPE_F16};
static st_dtype random_dtype(void) { return palette[next_u64() % ST_ARRAY_LEN(palette)]; }

static void random_device(struct st_plan_device *d, uint64_t layer_bytes_avg) {
    struct st_device_info in = {0};
    bool cpu = next_u64() % 6 == 0;
    in.kind = cpu ? ST_DEVICE_CPU : ST_DEVICE_CATALOG;
    in.numa_node = -1;
    if (cpu) {
        in.caps = st_caps_cpu();
        snprintf(in.name, sizeof in.name, "cpu");
        in.sm_count = irange(2, 32);
        in.perf.mem_bw_gbps = unif(10, 200);
        in.perf.fp32_tflops = unif(0.1, 3);
    } else {
        int c = irange(0, (int)ST_ARRAY_LEN(ccs) - 1);
        in.caps = st_caps_from_cc(ccs[c][0], ccs[c][1]);
        snprintf(in.name, sizeof in.name, "gpu cc%d.%d", ccs[c][0], ccs[c][1]);
        snprintf(in.catalog, sizeof in.catalog, "rnd%d", irange(0, 999));
        in.perf.mem_bw_gbps = unif(100, 3000);
        in.perf.fp32_tflops = unif(4, 60);
        in.perf.fp16_tflops = in.caps.tensor_cores ? unif(20, 900) : (in.caps.fp16_arith ? unif(5, 20) : 0);
        in.perf.bf16_tflops = in.caps.bf16 ? in.perf.fp16_tflops : 0;
        in.perf.launch_us = next_u64() % 2 ? unif(1, 8) : 0;
        in.pcie_gen = irange(3, 5);
        in.pcie_width = next_u64() % 3 ? 16 : 8;
    }
    /* capacity from "a couple of layers" to "everything" */
    uint64_t mem = (uint64_t)(unif(0.5, 14.0) * (double)layer_bytes_avg) + (600ull << 20);
    in.mem_total_bytes = in.mem_free_bytes = mem;
    st_plan_device_init(d, &in);
    if (next_u64() % 10 == 0) d->force_prec = irange(0, 2);
    if (next_u64() % 12 == 0) d->force_attn = irange(0, 1);
    if (next_u64() % 5 == 0) d->reserve_bytes = (uint64_t)(unif(0, 1) * (double)layer_bytes_avg);
    if (next_u64() % 3 == 0) {   /* a backend that runs only some of the palette */
        uint32_t w = ST_DTYPE_BIT(ST_DTYPE_F32);
        for (size_t k = 0; k < ST_ARRAY_LEN(palette); k++)
            if (next_u64() % 3) w |= ST_DTYPE_BIT(palette[k]);
        d->info.caps.weight_dtypes = w;
    }
}

static void random_model(struct st_plan_model *m, int L) {
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "random-%d", L);
    snprintf(m->weights, sizeof m->weights, "mixed");
    m->arch = ST_ARCH_QWEN2;
    m->n_layer = L;
    m->n_embd = 64 * irange(8, 64);
    m->n_ff = m->n_embd * irange(2, 5);
    m->n_head = irange(4, 32);
    m->n_head_kv = irange(1, 8);
    m->head_dim = 64 * irange(1, 2);
    m->n_vocab = irange(1000, 160000);
    m->tied_embeddings = next_u64() % 2;
    m->matrix_dtype = next_u64() % 2 ? ST_DTYPE_F16 : ST_DTYPE_COUNT;
    m->layer_bytes = calloc((size_t)L, sizeof *m->layer_bytes);
    m->layer_flops = calloc((size_t)L, sizeof *m->layer_flops);
    uint64_t avg = (uint64_t)unif(50, 1500) << 20;
    for (int l = 0; l < L; l++) {
        m->layer_bytes[l] = (uint64_t)(unif(0.6, 1.5) * (double)avg);
        m->layer_flops[l] = (double)m->layer_bytes[l] * unif(0.8, 4.0);
        m->total_bytes += m->layer_bytes[l];
    }
    m->embd_bytes = (uint64_t)m->n_vocab * (uint64_t)m->n_embd * 2;
    m->lm_head_bytes = m->embd_bytes;
    m->output_norm_bytes = (uint64_t)m->n_embd * 4;
    m->output_flops = 2.0 * (double)m->n_vocab * (double)m->n_embd;
    m->max_matrix_elems = (uint64_t)m->n_ff * (uint64_t)m->n_embd;
    m->embd_dtype = m->lm_head_dtype = ST_DTYPE_F16;
    if (next_u64() % 2) {   /* stored dtypes per matrix: mostly q8_0, some layers with others */
        m->mat_dtypes = malloc((size_t)L * ST_PLAN_N_MATRICES);
        for (int l = 0; l < L; l++) {
            bool mixed = next_u64() % 3 == 0;
            for (int k = 0; k < ST_PLAN_N_MATRICES; k++)
                m->mat_dtypes[l * ST_PLAN_N_MATRICES + k] = (uint8_t)(mixed ? random_dtype() : ST_DTYPE_Q8_0);
        }
        m->embd_dtype = next_u64() % 2 ? ST_DTYPE_Q8_0 : random_dtype();
        m->lm_head_dtype = m->tied_embeddings ? m->embd_dtype : next_u64() % 2 ? ST_DTYPE_Q8_0 : random_dtype();
    }
    m->total_bytes += m->embd_bytes + m->output_norm_bytes + (m->tied_embeddings ? 0 : m->lm_head_bytes);
}

struct tally {
    int cases, feasible, multi_stage, with_classes, throughput, hop_bound, q8_fallback, dtype_limited, no_runner;
    int64_t plans;
};

/* The model's dtypes (from its own table), and those of layer l / the embedding / the lm_head, as sets. */
static uint32_t bit(unsigned t) { return 1u << t; }
static uint32_t layer_set(const struct st_plan_model *m, int64_t l) {
    uint32_t w = 0;
    for (int k = 0; k < ST_PLAN_N_MATRICES; k++)
        w |= m->mat_dtypes ? bit(m->mat_dtypes[l * ST_PLAN_N_MATRICES + k]) : bit(m->matrix_dtype);
    return m->mat_dtypes || m->matrix_dtype < ST_DTYPE_COUNT ? w : 0;
}
static uint32_t runs_set(const struct st_plan_device *d) {
    return d->info.caps.weight_dtypes ? d->info.caps.weight_dtypes : (1u << ST_DTYPE_COUNT) - 1;
}

/* One random case; set 0: the mixed set, set 1: throughput with up to 5 devices and chosen link regimes. */
static void one_case(int set, int it, struct tally *t) {
    int n = set == 0 ? 0 : irange(1, 5);
    int L = set == 0 ? irange(1, 12) : irange(1, n == 5 ? 9 : 13);
    if (set == 0) n = irange(1, 4);
    struct st_plan_model m;
    random_model(&m, L);
    uint64_t avg = m.total_bytes / (uint64_t)L;
    struct st_plan_device devs[5];
    for (int d = 0; d < n; d++) random_device(&devs[d], avg);
    /* sometimes repeat a device: identical cards form a class in the DP */
    if (n >= 2 && next_u64() % 3 == 0) { devs[n - 1] = devs[0]; t->with_classes++; }
    if (n >= 3 && next_u64() % 4 == 0) devs[n - 2] = devs[0];
    if (set == 1 && n >= 4 && next_u64() % 2 == 0) devs[n - 3] = devs[1];
    int regime = set == 0 ? 1 : it % 3;      /* 0: default links, 1: some random, 2: every link slow */
    struct st_plan_link links[25];
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++) {
            links[a * n + b] = st_plan_link_default(&devs[a], &devs[b], NULL);
            if (a == b) continue;
            if (regime == 1 && next_u64() % 2) {
                links[a * n + b].latency_us = unif(1, 400);
                links[a * n + b].bandwidth_gbps = unif(0.5, 300);
            } else if (regime == 2) {
                links[a * n + b].latency_us = unif(100, 20000);
                links[a * n + b].bandwidth_gbps = unif(0.01, 2);
            }
        }
    if (regime == 2 && n >= 2 && next_u64() % 4 == 0) {   /* a pair that cannot be linked: an infinite hop */
        int x = irange(0, n - 1), y = (x + irange(1, n - 1)) % n;
        links[x * n + y].bandwidth_gbps = 0;
    }
    if (next_u64() % 2) /* make identical devices' links symmetric so that they really are a class */
        for (int a = 0; a < n; a++)
            for (int b = 0; b < n; b++) links[a * n + b] = links[ST_MIN(a, b) * n + ST_MAX(a, b)];
    struct st_plan_request req;
    st_plan_request_defaults(&req);
    req.context = 64 * irange(1, 256);
    req.batch = irange(1, 3) == 3 ? irange(1, 32) : 1;
    req.prefill_chunk = 32 * irange(1, 16);
    req.objective = set == 1 || next_u64() % 2 ? ST_PLAN_THROUGHPUT : ST_PLAN_LATENCY;
    req.no_suggestions = true;
    bool safe[16];
    if (next_u64() % 3 == 0) {
        for (int l = 0; l < L; l++) safe[l] = next_u64() % 4 != 0;
        req.fp16_safe = safe;
    }
    if (next_u64() % 10 == 0) req.force_prec = irange(0, 2);

    struct bf b = {&m, devs, n, links, &req, INFINITY, 0, INFINITY, INFINITY};
    int seq[5];
    bool used[5] = {0};
    search(&b, 0, seq, 0, used, 0, 0, -1);
    t->plans += b.plans;

    st_plan *p = NULL;
    st_status s = st_plan_make(&m, devs, n, links, &req, &p);
    t->cases++;
    uint32_t need = bit(m.embd_dtype) | bit(m.lm_head_dtype), can = 0;
    for (int l = 0; l < L; l++) need |= layer_set(&m, l);
    for (int d = 0; d < n; d++) can |= runs_set(&devs[d]);
    bool limited = false;
    for (int d = 0; d < n; d++) limited |= (need & ~runs_set(&devs[d])) != 0;
    if (need & ~can) {
        /* a tensor no device runs: refused before any partition (brute force finds nothing either) */
        CHECK(b.best == INFINITY);
        CHECK_MSG(s == ST_ERR_CONFIG && !p && strstr(st_last_error(), "no device can run"),
                  "set %d case %d: no device runs some tensor, planner says %s: %s", set, it, st_status_name(s),
                  st_last_error());
        t->no_runner++;
    } else if (b.best == INFINITY) {
        /* no plan with float KV caches: kv_dtype auto lets stages whose float cache does not fit take
         * q8_0 (the model's rows are whole blocks); a plan exists iff brute force with that per-stage
         * fallback finds one, and then every stage fits and some stage holds a q8_0 cache */
        struct st_plan_request rq8 = req;
        rq8.kv_q8_fallback = true;
        struct bf b8 = {&m, devs, n, links, &rq8, INFINITY, 0, INFINITY, INFINITY};
        int seq8[5];
        bool used8[5] = {0};
        search(&b8, 0, seq8, 0, used8, 0, 0, -1);
        if (b8.best == INFINITY) {
            CHECK_MSG(s == ST_ERR_CONFIG && p && !p->feasible, "set %d case %d: brute force finds nothing, planner says %s",
                      set, it, st_status_name(s));
        } else {
            CHECK_MSG(s == ST_OK && p && p->feasible, "set %d case %d: brute force with q8_0 fallback %.6f, planner %s: %s",
                      set, it, b8.best, st_status_name(s), st_last_error());
            bool any_q8 = false;
            for (int i = 0; s == ST_OK && p && i < p->n_stages; i++) {
                any_q8 |= p->stages[i].kv_dtype == ST_DTYPE_Q8_0;
                CHECK(p->stages[i].mem.total <= p->stages[i].mem.usable);
            }
            CHECK_MSG(s != ST_OK || any_q8, "set %d case %d: only a q8_0 fallback fits, the plan has none", set, it);
            t->q8_fallback++;
        }
    } else {
        CHECK_MSG(s == ST_OK && p && p->feasible, "set %d case %d: brute force %.6f, planner %s: %s", set, it, b.best,
                  st_status_name(s), st_last_error());
        if (s == ST_OK && p) {
            t->feasible++;
            if (limited) t->dtype_limited++;
            if (p->n_stages > 1) t->multi_stage++;
            double got = req.objective == ST_PLAN_LATENCY ? p->decode_ms : p->bottleneck_ms;
            CHECK_MSG(fabs(got - b.best) <= 1e-9 * fmax(1.0, b.best),
                      "set %d case %d (%s, L=%d, n=%d): planner %.12f ms, brute force %.12f ms", set, it,
                      st_plan_objective_name(req.objective), L, n, got, b.best);
            if (req.objective == ST_PLAN_THROUGHPUT) {
                t->throughput++;
                /* a hop is the bottleneck, or some hop is slower than the optimum (the exact-DP search) */
                bool slow_hop = false;
                for (int a = 0; a < n; a++)
                    for (int c = 0; c < n; c++)
                        if (a != c && st_plan_hop_decode_ms(&m, &req, &links[a * n + c]) >= b.best) slow_hop = true;
                if (slow_hop) t->hop_bound++;
                CHECK_MSG(fabs(p->decode_ms - b.tie_sum) <= 1e-9 * fmax(1.0, b.tie_sum),
                          "set %d case %d: latency among throughput-optimal plans: planner %.12f, brute force %.12f",
                          set, it, p->decode_ms, b.tie_sum);
            }
            int64_t next = 0;
            bool dev_used[5] = {0};
            for (int i = 0; i < p->n_stages; i++) {
                const struct st_plan_stage *st = &p->stages[i];
                CHECK(st->first == next);
                next = st->last + 1;
                CHECK(!dev_used[st->device]);
                dev_used[st->device] = true;
                CHECK_MSG(st->mem.total <= st_plan_device_usable(&devs[st->device]),
                          "set %d case %d stage %d: %llu > %llu", set, it, i, (unsigned long long)st->mem.total,
                          (unsigned long long)st_plan_device_usable(&devs[st->device]));
                CHECK(st->mem.total == st->mem.weights + st->mem.kv + st->mem.workspace);
                /* capability constraints */
                const struct st_caps *c = &devs[st->device].info.caps;
                if (st->prec == ST_PREC_BF16) CHECK(c->bf16);
                if (st->prec == ST_PREC_F16) CHECK(c->fp16_arith && c->fp32_accum_fp16);
                if (st->attn == ST_ATTN_FLASH) CHECK(c->flash_attn && st->prec != ST_PREC_F32);
                if (st->prec == ST_PREC_F16 && devs[st->device].force_prec < 0 && req.force_prec < 0)
                    for (int64_t l = st->first; l <= st->last; l++) CHECK(req.fp16_safe && req.fp16_safe[l]);
                /* weight types: every tensor of the stage is one its device runs */
                const uint32_t lacks = ~runs_set(&devs[st->device]);
                for (int64_t l = st->first; l <= st->last; l++)
                    CHECK_MSG(!(layer_set(&m, l) & lacks), "set %d case %d stage %d: layer %lld holds a dtype device "
                              "%d cannot run", set, it, i, (long long)l, st->device);
                if (st->has_embedding) CHECK(!(bit(m.embd_dtype) & lacks));
                if (st->has_output) CHECK(!(bit(m.lm_head_dtype) & lacks));
            }
            CHECK(next == L);
        }
    }
    st_plan_free(p);
    st_plan_model_free(&m);
}

/* The bottleneck is a lone middle layer on its fastest device: the optimum equals the
 * search's lower bound (the slowest layer at its fastest), which must stay admissible. */
static void lone_layer_case(void) {
    struct st_plan_model m;
    random_model(&m, 5);
    m.layer_bytes[2] *= 12;
    m.layer_flops[2] *= 12;
    m.total_bytes += m.layer_bytes[2] / 12 * 11;
    struct st_plan_device devs[5];
    random_device(&devs[0], m.total_bytes);
    devs[0].info.caps.weight_dtypes = 0;   /* every dtype */
    devs[0].force_prec = -1;
    devs[0].force_attn = -1;
    devs[0].info.perf.launch_us = 0;
    for (int d = 1; d < 5; d++) devs[d] = devs[0];
    struct st_plan_request req;
    st_plan_request_defaults(&req);
    req.objective = ST_PLAN_THROUGHPUT;
    req.no_suggestions = true;
    bool safe[5] = {true, true, true, true, true};   /* every precision allowed: no mode is skipped */
    req.fp16_safe = safe;
    struct bf b = {&m, devs, 5, NULL, &req, INFINITY, 0, INFINITY, INFINITY};
    struct st_plan_link links[25];
    st_plan_links_default(devs, 5, links);
    b.links = links;
    int seq[5];
    bool used[5] = {0};
    search(&b, 0, seq, 0, used, 0, 0, -1);
    st_plan *p = NULL;
    CHECK_OK(st_plan_make(&m, devs, 5, links, &req, &p));
    if (p) {
        struct st_plan_stage lone;
        CHECK(st_plan_stage_eval(&m, &devs[0], &req, 2, 2, &lone, NULL, 0));
        CHECK_MSG(fabs(b.best - lone.decode_ms) <= 1e-12 * b.best, "brute force %.15f, layer 2 alone %.15f", b.best,
                  lone.decode_ms);
        CHECK_MSG(fabs(p->bottleneck_ms - b.best) <= 1e-9 * b.best, "planner %.15f, brute force %.15f",
                  p->bottleneck_ms, b.best);
    }
    st_plan_free(p);
    st_plan_model_free(&m);
}

int main(void) {
    struct tally t[2] = {{0}};
    for (int it = 0; it < 400; it++) one_case(0, it, &t[0]);
    for (int it = 0; it < 300; it++) one_case(1, it, &t[1]);
    for (int it = 0; it < 20; it++) lone_layer_case();
    for (int s = 0; s < 2; s++)
        printf("%s: %d random cases (%d feasible, %d with several stages, %d throughput (%d with a hop >= the "
               "optimum), %d with repeated devices, %d fitting only with a q8_0 KV fallback, %d feasible with a "
               "device lacking a weight type of the model, %d refused: no device runs some tensor), %lld complete "
               "plans enumerated by brute force\n",
               s == 0 ? "mixed objectives" : "throughput, <= 5 devices", t[s].cases, t[s].feasible,
               t[s].multi_stage, t[s].throughput, t[s].hop_bound, t[s].with_classes, t[s].q8_fallback,
               t[s].dtype_limited, t[s].no_runner, (long long)t[s].plans);
    CHECK(t[0].feasible >= 200);
    CHECK(t[0].multi_stage >= 50);
    CHECK(t[1].feasible >= 150);
    CHECK(t[1].multi_stage >= 50);
    CHECK(t[1].hop_bound >= 20);
    CHECK(t[0].dtype_limited + t[1].dtype_limited >= 50);
    CHECK(t[0].no_runner + t[1].no_runner >= 10);
    return st_test_finish("planner_partition_brute");
}
