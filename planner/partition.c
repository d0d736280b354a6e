/* The exact partitioner.
 *
 * Layers stay in order; each stage is a contiguous range on one device; each
 * device hosts at most one stage; the device order is free. Dynamic programming
 * over (layers placed, devices used, device of the last stage):
 *
 *   V(i, S, d) = best objective with layers [0, i) on the devices S, the last on d.
 *
 * Identical devices (same description and same links to every other device)
 * are interchangeable, so S is kept as a count per class of identical devices:
 * exact by symmetry, and a box of eight equal GPUs costs 9 states, not 256.
 *
 * Latency (sum of stage times and hops): the cost of a stage [i, j] on d is
 * P_d(j+1) - P_d(i) + fixed, and the starts i whose stage can still reach j
 * (memory, fp16-safe runs) form a window that only moves right as j grows, so
 * min over i is a sliding-window minimum: O(L) per (S, d, d', precision).
 * States are pruned without losing the optimum: those the remaining devices
 * cannot finish (h below), those that cannot beat the best plan known even
 * with every remaining layer at its fastest anywhere, those reached as cheaply
 * with one device fewer; rows no transition reaches are never touched.
 *
 * Throughput (the slowest stage or hop): the answer is one of the stage and hop
 * times. Without hops, "is there a plan whose every stage takes <= B" has a
 * monotone structure (see the relaxation below) and is decided by one number
 * per multiset of devices, O(K x C) per test; when B is at least every hop
 * that can occur, that test is exact, so the optimum is the smallest double B
 * that passes it: a bisection over the bit patterns of doubles, <= 64 tests.
 * (When hops may be the bottleneck, a binary search over the sorted candidate
 * values runs the exact DP as its test.) One capped DP run at the optimal T
 * then picks the lowest latency among the throughput-optimal plans. */
#include "planner/planner-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PL_MAX_STATES (48u << 20)   /* K x C x (L+1) entries; beyond it the search is refused */

struct pl_cls {
    int n;                       /* devices in the class */
    int *members;                /* device indices, ascending */
    uint64_t usable;
    int n_modes;
    struct pl_mode modes[PL_N_MODE];   /* a precision with its float KV cache, and with q8_0 where the
                                          request lets a short stage fall back to it */
    double *pt[PL_N_MODE];       /* (L+1) prefix sums of layer decode ms */
    uint64_t *pm[PL_N_MODE];     /* (L+1) prefix sums of layer bytes (weights + KV) */
    double ft[PL_N_MODE][2][2];  /* fixed decode ms [first][last] */
    uint64_t fm[PL_N_MODE][2][2];/* fixed bytes [first][last]: embedding/output weights + workspace */
    int32_t *bad;                /* (L+1) prefix counts of layers holding a weight dtype the class cannot run */
    bool no_first, no_last;      /* it cannot run the embedding table / the output head */
};

/* The class can run every tensor of the stage [i, j] (the embedding with f, the output head with t). */
static inline bool runs(const struct pl_cls *K, int i, int j, int f, int t) {
    return K->bad[j + 1] == K->bad[i] && !(f && K->no_first) && !(t && K->no_last);
}

struct pl_ctx {
    const struct st_plan_model *m;
    const struct st_plan_request *req;
    int L, C;
    struct pl_cls *cls;
    double *hop;                 /* (C x C) decode hop ms between classes */
    int64_t *safe_end;           /* (L) last layer of the fp16-safe run starting at l, l-1 if unsafe */
    size_t K;                    /* count vectors */
    size_t *stride;              /* (C) mixed-radix strides */
    /* DP arrays, (K x C x (L+1)) */
    double *V;
    int32_t *par_i;              /* start layer of the last stage */
    int8_t *par_c;               /* class of the previous stage, -1 for the first */
    int8_t *par_p;               /* mode of the last stage */
    /* scratch (L) */
    double *A;
    int64_t *jmax;
    int32_t *dq;
    uint8_t *cnt;                /* (K x C) devices of each class in count vector k */
    uint8_t *live;               /* (K x C) the row V[k][c][.] is initialised in this run */
    size_t kfull;                /* the count vector "every device used" */
    double hop_max;              /* slowest hop between classes that may follow each other; INFINITY when a
                                    pair cannot be linked at all */
    double *lb;                  /* (L+1) lower bound on the latency still to come after layers [0, i) */
    /* reach tables of the relaxation without hops, for one bound B on stage times (bound_tables) */
    int32_t *rm;                 /* (C x (L+1)) middle stage from i >= 1: furthest exclusive end, i when none */
    int32_t *lm;                 /* (C x (L+1)) middle stage ending at e - 1: nearest start >= 1, e when none */
    int32_t *rf;                 /* (C) first stage [0, j], j <= L - 2: furthest exclusive end, 0 when none */
    int32_t *tl;                 /* (C) nearest start >= 1 of a last stage [i, L - 1], L when none */
    bool *whole;                 /* (C) one device of the class can hold every layer */
    int32_t *g;                  /* (K) furthest position a sub-multiset of k reaches from layer 0 */
    int32_t *h;                  /* (K) nearest start >= 1 from which a sub-multiset of k reaches the end */
};

static bool link_eq(const struct st_plan_link *a, const struct st_plan_link *b) {
    return a->kind == b->kind && a->via_host == b->via_host && a->latency_us == b->latency_us &&
           a->bandwidth_gbps == b->bandwidth_gbps;
}

static bool dev_eq(const struct st_plan_device *a, const struct st_plan_device *b) {
    const struct st_caps *x = &a->info.caps, *y = &b->info.caps;
    const struct st_perf *p = &a->info.perf, *q = &b->info.perf;
    return a->is_cpu == b->is_cpu && st_plan_device_usable(a) == st_plan_device_usable(b) &&
           a->force_prec == b->force_prec && a->force_attn == b->force_attn && a->force_kv == b->force_kv &&
           x->fp16_arith == y->fp16_arith && x->fp32_accum_fp16 == y->fp32_accum_fp16 && x->bf16 == y->bf16 &&
           x->tensor_cores == y->tensor_cores && x->flash_attn == y->flash_attn &&
           pl_dev_dtypes(a) == pl_dev_dtypes(b) &&
           p->mem_bw_gbps == q->mem_bw_gbps && p->fp32_tflops == q->fp32_tflops &&
           p->fp16_tflops == q->fp16_tflops && p->bf16_tflops == q->bf16_tflops && p->launch_us == q->launch_us &&
           p->measured == q->measured;
}

static bool swappable(const struct st_plan_device *devs, int n, const struct st_plan_link *L, int a, int b) {
    if (!dev_eq(&devs[a], &devs[b])) return false;
    if (!link_eq(&L[a * n + b], &L[b * n + a])) return false;
    for (int k = 0; k < n; k++) {
        if (k == a || k == b) continue;
        if (!link_eq(&L[a * n + k], &L[b * n + k]) || !link_eq(&L[k * n + a], &L[k * n + b])) return false;
    }
    return true;
}

static int uf_find(int *p, int x) {
    while (p[x] != x) x = p[x] = p[p[x]];
    return x;
}

static void ctx_free(struct pl_ctx *c) {
    if (c->cls) {
        for (int k = 0; k < c->C; k++) {
            free(c->cls[k].members);
            free(c->cls[k].bad);
            for (int p = 0; p < PL_N_MODE; p++) { free(c->cls[k].pt[p]); free(c->cls[k].pm[p]); }
        }
    }
    free(c->cls); free(c->hop); free(c->safe_end); free(c->stride);
    free(c->V); free(c->par_i); free(c->par_c); free(c->par_p);
    free(c->A); free(c->jmax); free(c->dq);
    free(c->cnt); free(c->live); free(c->lb); free(c->rm); free(c->lm); free(c->rf); free(c->tl); free(c->whole); free(c->g); free(c->h);
}

static st_status ctx_init(struct pl_ctx *c, const struct st_plan_model *m, const struct st_plan_device *devs,
                          int n_dev, const struct st_plan_link *links, const struct st_plan_request *req) {
    memset(c, 0, sizeof *c);
    c->m = m;
    c->req = req;
    c->L = (int)m->n_layer;
    int L = c->L;
    int parent[64];
    for (int i = 0; i < n_dev; i++) parent[i] = i;
    for (int a = 0; a < n_dev; a++)
        for (int b = a + 1; b < n_dev; b++)
            if (uf_find(parent, a) != uf_find(parent, b) && swappable(devs, n_dev, links, a, b))
                parent[uf_find(parent, b)] = uf_find(parent, a);
    int cls_of[64], root_cls[64];
    for (int i = 0; i < n_dev; i++) root_cls[i] = -1;
    for (int i = 0; i < n_dev; i++) {
        int r = uf_find(parent, i);
        if (root_cls[r] < 0) root_cls[r] = c->C++;
        cls_of[i] = root_cls[r];
    }
    c->cls = st_calloc((size_t)c->C, sizeof *c->cls, "planner: classes");
    c->hop = st_calloc((size_t)c->C * (size_t)c->C, sizeof *c->hop, "planner: hops");
    c->safe_end = st_calloc((size_t)L, sizeof *c->safe_end, "planner: safe runs");
    c->stride = st_calloc((size_t)c->C, sizeof *c->stride, "planner: strides");
    if (!c->cls || !c->hop || !c->safe_end || !c->stride) return ST_ERR_NOMEM;
    for (int i = 0; i < n_dev; i++) {
        struct pl_cls *k = &c->cls[cls_of[i]];
        if (!k->members) {
            k->members = st_calloc((size_t)n_dev, sizeof *k->members, "planner: class members");
            if (!k->members) return ST_ERR_NOMEM;
        }
        k->members[k->n++] = i;
    }
    /* hop times between classes: a representative pair of distinct devices */
    for (int a = 0; a < c->C; a++) {
        for (int b = 0; b < c->C; b++) {
            int da = c->cls[a].members[0];
            int db = a == b ? (c->cls[b].n > 1 ? c->cls[b].members[1] : -1) : c->cls[b].members[0];
            c->hop[a * c->C + b] = db < 0 ? INFINITY : pl_hop_ms(m, req, &links[da * n_dev + db], false);
        }
    }
    for (int l = L - 1; l >= 0; l--) {
        bool safe = req->fp16_safe && req->fp16_safe[l];
        c->safe_end[l] = !safe ? l - 1 : (l + 1 < L && c->safe_end[l + 1] >= l + 1 ? c->safe_end[l + 1] : l);
    }
    /* per class and precision: prefix sums of layer time and memory, fixed parts */
    for (int k = 0; k < c->C; k++) {
        struct pl_cls *K = &c->cls[k];
        const struct st_plan_device *d = &devs[K->members[0]];
        struct pl_rates r;
        pl_rates_of(d, m, &r);
        K->usable = st_plan_device_usable(d);
        const uint32_t lacks = ~pl_dev_dtypes(d) & ST_DTYPE_ALL;
        K->bad = st_calloc((size_t)L + 1, sizeof *K->bad, "planner: weight types");
        if (!K->bad) return ST_ERR_NOMEM;
        for (int l = 0; l < L; l++) K->bad[l + 1] = K->bad[l] + ((st_plan_model_layer_dtypes(m, l) & lacks) != 0);
        K->no_first = m->embd_dtype < ST_DTYPE_COUNT && (lacks & ST_DTYPE_BIT(m->embd_dtype));
        K->no_last = m->lm_head_dtype < ST_DTYPE_COUNT && (lacks & ST_DTYPE_BIT(m->lm_head_dtype));
        for (int mi = 0; mi < PL_N_MODE; mi++) {
            struct pl_mode md;
            pl_mode_of(d, req, (st_prec)(mi / 2), &md);
            if (!md.allowed) continue;
            if (mi % 2) {               /* the same precision with a q8_0 cache */
                if (!req->kv_q8_fallback || !md.kv_auto) continue;
                md.kv = ST_DTYPE_Q8_0;
            }
            int j = K->n_modes++;
            K->modes[j] = md;
            K->pt[j] = st_calloc((size_t)L + 1, sizeof(double), "planner: prefix times");
            K->pm[j] = st_calloc((size_t)L + 1, sizeof(uint64_t), "planner: prefix bytes");
            if (!K->pt[j] || !K->pm[j]) return ST_ERR_NOMEM;
            for (int l = 0; l < L; l++) {
                K->pt[j][l + 1] = K->pt[j][l] + pl_layer_decode_ms(m, req, &r, &md, l, NULL);
                K->pm[j][l + 1] = K->pm[j][l] + pl_layer_mem(m, req, &md, l);
            }
            for (int f = 0; f < 2; f++)
                for (int t = 0; t < 2; t++) {
                    K->ft[j][f][t] = pl_fixed_decode_ms(m, req, &r, f, t);
                    K->fm[j][f][t] = pl_fixed_weights(m, f, t) + pl_workspace(m, req, d, md.prec, &md, f, t);
                }
        }
        /* drop a precision that another one beats everywhere: no slower on every layer and every fixed part,
         * no more memory, no stricter fp16-safe condition (e.g. f32 + eager next to bf16 + flash) */
        for (int q = 0; q < K->n_modes; q++) {
            for (int p2 = 0; p2 < K->n_modes; p2++) {
                if (p2 == q || (K->modes[p2].need_safe && !K->modes[q].need_safe)) continue;
                bool dom = true;
                for (int l = 0; l < L && dom; l++)
                    dom = K->pt[p2][l + 1] - K->pt[p2][l] <= K->pt[q][l + 1] - K->pt[q][l] &&
                          K->pm[p2][l + 1] - K->pm[p2][l] <= K->pm[q][l + 1] - K->pm[q][l];
                for (int f = 0; f < 2 && dom; f++)
                    for (int t = 0; t < 2 && dom; t++)
                        dom = K->ft[p2][f][t] <= K->ft[q][f][t] && K->fm[p2][f][t] <= K->fm[q][f][t];
                if (!dom) continue;
                free(K->pt[q]);
                free(K->pm[q]);
                for (int x = q; x + 1 < K->n_modes; x++) {
                    K->modes[x] = K->modes[x + 1];
                    K->pt[x] = K->pt[x + 1];
                    K->pm[x] = K->pm[x + 1];
                    memcpy(K->ft[x], K->ft[x + 1], sizeof K->ft[x]);
                    memcpy(K->fm[x], K->fm[x + 1], sizeof K->fm[x]);
                }
                K->n_modes--;
                K->pt[K->n_modes] = NULL;
                K->pm[K->n_modes] = NULL;
                q = -1;                 /* start over: indices moved */
                break;
            }
        }
    }
    c->K = 1;
    for (int k = 0; k < c->C; k++) {
        c->stride[k] = c->K;
        c->K *= (size_t)c->cls[k].n + 1;
    }
    double states = (double)c->K * c->C * (L + 1);
    if (states > PL_MAX_STATES) {
        st_error_set(ST_ERR_UNSUPPORTED,
                     "planner: %d devices in %d distinct kinds give %.3g search states (limit %u)", n_dev, c->C,
                     states, PL_MAX_STATES);
        return st_error_hint("the exact search grows with the number of *distinct* devices; give the layers "
                             "by hand (placement: manual) or plan a subset of the devices");
    }
    size_t n = c->K * (size_t)c->C * (size_t)(L + 1);
    const int C_ = c->C;
    c->V = malloc(n * sizeof *c->V);
    c->par_i = malloc(n * sizeof *c->par_i);
    c->par_c = malloc(n * sizeof *c->par_c);
    c->par_p = malloc(n * sizeof *c->par_p);
    c->A = malloc((size_t)L * sizeof *c->A);
    c->jmax = malloc((size_t)L * sizeof *c->jmax);
    c->dq = malloc((size_t)L * sizeof *c->dq);
    c->lb = malloc((size_t)(L + 1) * sizeof *c->lb);
    c->rm = malloc((size_t)C_ * (size_t)(L + 1) * sizeof *c->rm);
    c->lm = malloc((size_t)C_ * (size_t)(L + 1) * sizeof *c->lm);
    c->rf = malloc((size_t)C_ * sizeof *c->rf);
    c->tl = malloc((size_t)C_ * sizeof *c->tl);
    c->whole = malloc((size_t)C_ * sizeof *c->whole);
    c->g = malloc(c->K * sizeof *c->g);
    c->h = malloc(c->K * sizeof *c->h);
    c->cnt = malloc(c->K * (size_t)C_);
    c->live = malloc(c->K * (size_t)C_);
    if (!c->V || !c->par_i || !c->par_c || !c->par_p || !c->A || !c->jmax || !c->dq || !c->lb || !c->rm ||
        !c->lm || !c->rf || !c->tl || !c->whole || !c->g || !c->h || !c->cnt || !c->live)
        return st_error_set(ST_ERR_NOMEM, "planner: out of memory for %zu search states", n);
    for (size_t k = 0; k < c->K; k++)
        for (int b = 0; b < C_; b++)
            c->cnt[k * (size_t)C_ + (size_t)b] = (uint8_t)((k / c->stride[b]) % (size_t)(c->cls[b].n + 1));
    c->kfull = 0;
    for (int k = 0; k < C_; k++) c->kfull += (size_t)c->cls[k].n * c->stride[k];
    /* hops that can occur: between two classes, or two members of one class */
    c->hop_max = 0;
    double hop_min = INFINITY;
    for (int a = 0; a < C_; a++)
        for (int b = 0; b < C_; b++) {
            if (a == b && c->cls[a].n < 2) continue;
            c->hop_max = ST_MAX(c->hop_max, c->hop[a * C_ + b]);
            hop_min = ST_MIN(hop_min, c->hop[a * C_ + b]);
        }
    /* the rest of a plan after layers [0, i), 0 < i < L: every layer at its fastest anywhere, the cheapest
     * output, one hop at least */
    double ft_min = INFINITY;
    c->lb[L] = 0;
    for (int l = L - 1; l >= 0; l--) {
        double t = INFINITY;
        for (int k = 0; k < C_; k++)
            for (int p = 0; p < c->cls[k].n_modes; p++) {
                t = ST_MIN(t, c->cls[k].pt[p][l + 1] - c->cls[k].pt[p][l]);
                if (l == 0) ft_min = ST_MIN(ft_min, c->cls[k].ft[p][0][1]);
            }
        c->lb[l] = c->lb[l + 1] + (t < INFINITY ? t : 0);
    }
    for (int l = 1; l < L; l++) c->lb[l] += (ft_min < INFINITY ? ft_min : 0) + (hop_min < INFINITY ? hop_min : 0);
    return ST_OK;
}

static inline size_t vidx(const struct pl_ctx *c, size_t k, int cls, int i) {
    return ((k * (size_t)c->C) + (size_t)cls) * (size_t)(c->L + 1) + (size_t)i;
}

static inline int cnt_of(const struct pl_ctx *c, size_t k, int cls) {
    return c->cnt[k * (size_t)c->C + (size_t)cls];
}

/* The row V[k][cls][0..L], set to INFINITY the first time a run writes it:
 * rows no transition reaches are never touched (nor their memory pages). */
static inline double *row_w(struct pl_ctx *c, size_t k, int cls) {
    size_t r = k * (size_t)c->C + (size_t)cls;
    double *V = &c->V[r * (size_t)(c->L + 1)];
    if (!c->live[r]) {
        for (int i = 0; i <= c->L; i++) V[i] = INFINITY;
        c->live[r] = 1;
    }
    return V;
}

static inline void relax(struct pl_ctx *c, size_t at, double v, int i, int pc, int pp) {
    if (v < c->V[at]) {
        c->V[at] = v;
        c->par_i[at] = i;
        c->par_c[at] = (int8_t)pc;
        c->par_p[at] = (int8_t)pp;
    }
}

/* ---- the relaxation without hops -------------------------------------------
 *
 * Drop the hop constraints and "is there a plan whose every stage takes <= B"
 * has a monotone structure: a stage that fits (memory, time <= B, fp16-safe
 * run) still fits on any sub-range with the same first/last flags. So from
 * two positions i <= i' (both >= 1) reached with the same devices, whatever
 * finishes from i also finishes from i' (each later stage shrinks to its part
 * beyond i'; stages left empty are dropped, which only hops could forbid). One
 * number per multiset of used devices then says everything:
 *
 *   g[k] = furthest position reachable from layer 0 with devices from k,
 *   h[k] = nearest start >= 1 from which devices from k reach the end,
 *
 * each an O(K x C) pass over tables of "furthest end from i" / "nearest start
 * to e" per class (two pointers, O(L) per class and precision). Without hops
 * in the way (B >= every hop) g decides feasibility exactly; with them it is
 * still a relaxation: infeasible there means infeasible. h prunes the exact
 * DP: a state (k, a, i) with i < h[all - k] cannot be finished. */

static inline bool stage_fits(const struct pl_ctx *c, const struct pl_cls *K, int p, int i, int j, int f, int t,
                              double B) {
    if (K->modes[p].need_safe && c->safe_end[i] < j) return false;
    if (!runs(K, i, j, f, t)) return false;
    if (K->pm[p][j + 1] - K->pm[p][i] + K->fm[p][f][t] > K->usable) return false;
    return K->pt[p][j + 1] - K->pt[p][i] + K->ft[p][f][t] <= B;
}

static void bound_tables(struct pl_ctx *c, double B) {
    const int L = c->L;
    for (int b = 0; b < c->C; b++) {
        const struct pl_cls *K = &c->cls[b];
        int32_t *rm = &c->rm[(size_t)b * (size_t)(L + 1)], *lm = &c->lm[(size_t)b * (size_t)(L + 1)];
        for (int i = 0; i <= L; i++) rm[i] = lm[i] = i;
        c->rf[b] = 0;
        c->tl[b] = L;
        c->whole[b] = false;
        for (int p = 0; p < K->n_modes; p++) {
            int e = 0;
            while (e <= L - 2 && stage_fits(c, K, p, 0, e, 1, 0, B)) e++;
            if (e > c->rf[b]) c->rf[b] = e;
            if (stage_fits(c, K, p, 0, L - 1, 1, 1, B)) c->whole[b] = true;
            for (int i = L - 1; i >= 1 && stage_fits(c, K, p, i, L - 1, 0, 1, B); i--)
                if (i < c->tl[b]) c->tl[b] = i;
            /* middle stages [i, e - 1], 1 <= i, e - 1 <= L - 2 */
            e = 1;
            for (int i = 1; i <= L - 2; i++) {
                if (e < i) e = i;
                while (e <= L - 2 && stage_fits(c, K, p, i, e, 0, 0, B)) e++;
                if (e > rm[i]) rm[i] = e;
            }
            int st = 1;
            for (e = 2; e <= L - 1; e++) {
                while (st <= e - 1 && !stage_fits(c, K, p, st, e - 1, 0, 0, B)) st++;
                if (st < lm[e]) lm[e] = st;
            }
        }
    }
}

/* Forward pass: true when the relaxation has a plan (needs bound_tables). */
static bool relaxed_feasible(struct pl_ctx *c) {
    const int L = c->L, C = c->C;
    for (int b = 0; b < C; b++) if (c->whole[b]) return true;
    c->g[0] = 0;
    for (size_t k = 1; k < c->K; k++) {
        int32_t v = 0;
        for (int b = 0; b < C; b++) {
            if (cnt_of(c, k, b) == 0) continue;
            int32_t gp = c->g[k - c->stride[b]];
            v = ST_MAX(v, ST_MAX(gp, c->rf[b]));
            if (gp >= 1) v = ST_MAX(v, c->rm[(size_t)b * (size_t)(L + 1) + (size_t)gp]);
        }
        c->g[k] = v;
        if (v >= 1)
            for (int b = 0; b < C; b++)
                if (cnt_of(c, k, b) < c->cls[b].n && v >= c->tl[b]) return true;
    }
    return false;
}

/* Backward pass: h[k] (needs bound_tables). */
static void relaxed_backward(struct pl_ctx *c) {
    const int L = c->L, C = c->C;
    c->h[0] = L;
    for (size_t k = 1; k < c->K; k++) {
        int32_t v = L;
        for (int b = 0; b < C; b++) {
            if (cnt_of(c, k, b) == 0) continue;
            int32_t hp = c->h[k - c->stride[b]];
            v = ST_MIN(v, ST_MIN(hp, c->tl[b]));
            if (hp < L) v = ST_MIN(v, c->lm[(size_t)b * (size_t)(L + 1) + (size_t)hp]);
        }
        c->h[k] = v;
    }
}

/* Latency DP with every stage time and hop <= cap (INFINITY: no cap).
 * Returns the best value (INFINITY when nothing fits) and its end state.
 * States no better than the best complete plan found so far are skipped (all
 * costs are >= 0); with any_plan the search stops at the first complete plan
 * (a feasibility probe of the throughput search). */
/* A quick feasible plan for an upper bound: kinds from the fastest per layer,
 * each device filling as many layers as fit in its first mode. INFINITY when
 * the greedy order does not reach the end. */
static double greedy_bound(const struct pl_ctx *c, double cap) {
    const int L = c->L, C = c->C;
    int order[64], used[64] = {0};
    for (int a = 0; a < C; a++) order[a] = a;
    for (int a = 0; a < C; a++)         /* insertion sort by whole-model decode time in mode 0 */
        for (int b = a; b > 0; b--) {
            const struct pl_cls *x = &c->cls[order[b]], *y = &c->cls[order[b - 1]];
            double tx = x->n_modes ? x->pt[0][L] : INFINITY, ty = y->n_modes ? y->pt[0][L] : INFINITY;
            if (tx < ty) { int t = order[b]; order[b] = order[b - 1]; order[b - 1] = t; }
        }
    double total = 0;
    int i = 0, prev = -1;
    for (int o = 0; o < C && i < L; o++) {
        int a = order[o];
        const struct pl_cls *K = &c->cls[a];
        if (!K->n_modes || K->modes[0].need_safe) continue;
        while (used[a] < K->n && i < L) {
            double hop = prev >= 0 ? c->hop[prev * C + a] : 0;
            if (!(hop <= cap)) break;
            int first = i == 0;
            /* the whole rest, with the output? */
            if (runs(K, i, L - 1, first, 1) && K->pm[0][L] - K->pm[0][i] + K->fm[0][first][1] <= K->usable &&
                K->pt[0][L] - K->pt[0][i] + K->ft[0][first][1] <= cap)
                return total + hop + K->pt[0][L] - K->pt[0][i] + K->ft[0][first][1];
            int j = i - 1;
            while (j + 1 <= L - 2 && runs(K, i, j + 1, first, 0) &&
                   K->pm[0][j + 2] - K->pm[0][i] + K->fm[0][first][0] <= K->usable &&
                   K->pt[0][j + 2] - K->pt[0][i] + K->ft[0][first][0] <= cap)
                j++;
            if (j < i) break;
            total += hop + K->pt[0][j + 1] - K->pt[0][i] + K->ft[0][first][0];
            used[a]++;
            prev = a;
            i = j + 1;
        }
    }
    return INFINITY;
}

static double run_dp(struct pl_ctx *c, double cap, bool any_plan, size_t *end_k, int *end_c) {
    const int L = c->L, C = c->C;
    memset(c->live, 0, c->K * (size_t)C);
    bound_tables(c, cap);
    relaxed_backward(c);
    /* states no better than a known plan are skipped; the margin keeps that plan itself reachable */
    double best = any_plan ? INFINITY : greedy_bound(c, cap) * (1 + 1e-9);
    size_t bk = 0;
    int bc = 0;
    /* first stages: [0, j] */
    for (int b = 0; b < C; b++) {
        struct pl_cls *K = &c->cls[b];
        for (int p = 0; p < K->n_modes; p++) {
            bool ns = K->modes[p].need_safe;
            for (int j = 0; j < L; j++) {
                bool last = j == L - 1;
                if (ns && c->safe_end[0] < j) break;
                if (K->bad[j + 1] != K->bad[0] || K->no_first) break;   /* a weight type it cannot run */
                if (last && K->no_last) continue;
                uint64_t mem = K->pm[p][j + 1] + K->fm[p][1][last];
                double t = K->pt[p][j + 1] - K->pt[p][0] + K->ft[p][1][last];
                if (mem > K->usable || t > cap) continue;
                size_t at = vidx(c, c->stride[b], b, j + 1);
                row_w(c, c->stride[b], b);
                relax(c, at, t, 0, -1, p);
                if (last && t < best) { best = t; bk = c->stride[b]; bc = b; }
            }
        }
    }
    if (any_plan && best < INFINITY) goto done;
    for (size_t k = 1; k < c->K; k++) {
        int hrest = c->h[c->kfull - k];
        for (int a = 0; a < C; a++) {
            if (!c->live[k * (size_t)C + (size_t)a]) continue;
            double *Vk = &c->V[vidx(c, k, a, 0)];
            /* states the remaining devices cannot finish (i < h), or that cannot beat the best plan even
             * with every remaining layer at its fastest (lb; the margin covers rounding) */
            int lo = L, hi = 0;
            for (int i = hrest; i < L; i++)
                if (Vk[i] + c->lb[i] * (1 - 1e-9) < best) { if (i < lo) lo = i; hi = i; }
            if (lo > hi) continue;
            /* dominance: the same position and last kind reached as cheaply with one device fewer
             * (of any kind) leaves a larger pool for the rest, so this state cannot do better */
            for (int e = 0; e < C; e++) {
                int have = cnt_of(c, k, e) - (e == a);
                if (have < 1 || !c->live[(k - c->stride[e]) * (size_t)C + (size_t)a]) continue;
                const double *Vs = &c->V[vidx(c, k - c->stride[e], a, 0)];
                for (int i = lo; i <= hi; i++)
                    if (Vs[i] <= Vk[i]) Vk[i] = INFINITY;
            }
            for (int i = lo; i <= hi; i++)
                if (!(Vk[i] + c->lb[i] * (1 - 1e-9) < best)) Vk[i] = INFINITY;
            while (lo <= hi && Vk[lo] == INFINITY) lo++;
            while (hi >= lo && Vk[hi] == INFINITY) hi--;
            if (lo > hi) continue;
            for (int b = 0; b < C; b++) {
                if (cnt_of(c, k, b) >= c->cls[b].n) continue;
                double hop = c->hop[a * C + b];
                if (!(hop <= cap)) continue;
                size_t k2 = k + c->stride[b];
                struct pl_cls *K = &c->cls[b];
                size_t base = vidx(c, k2, b, 0);
                double *Vo = row_w(c, k2, b);
                for (int p = 0; p < K->n_modes; p++) {
                    const double *PT = K->pt[p];
                    const uint64_t *PM = K->pm[p];
                    const int32_t *BAD = K->bad;
                    bool ns = K->modes[p].need_safe;
                    double ft = K->ft[p][0][0];
                    uint64_t fm = K->fm[p][0][0];
                    /* middle stages [i, j], j <= L - 2: how far each start can reach */
                    int64_t jm = lo - 1, jend = lo - 1;
                    for (int i = lo; i <= hi; i++) {
                        if (jm < i - 1) jm = i - 1;
                        while (jm + 1 <= L - 2) {
                            int64_t j = jm + 1;
                            if (ns && c->safe_end[i] < j) break;
                            if (BAD[j + 1] != BAD[i]) break;
                            if (PM[j + 1] - PM[i] + fm > K->usable) break;
                            if (PT[j + 1] - PT[i] + ft > cap) break;
                            jm = j;
                        }
                        c->jmax[i] = ns && c->safe_end[i] < jm ? c->safe_end[i] : jm;
                        c->A[i] = Vk[i] + hop - PT[i];
                        if (c->jmax[i] > jend) jend = c->jmax[i];
                    }
                    /* sliding-window minimum over the starts that reach j */
                    int head = 0, tail = 0, next = lo;
                    for (int j = lo; j <= jend; j++) {
                        for (; next <= j && next <= hi; next++) {
                            if (!(Vk[next] + hop < best) || c->jmax[next] < next) continue;
                            while (tail > head && c->A[c->dq[tail - 1]] >= c->A[next]) tail--;
                            c->dq[tail++] = next;
                        }
                        while (tail > head && c->jmax[c->dq[head]] < j) head++;
                        if (tail > head) {
                            int i = c->dq[head];
                            double v = c->A[i] + PT[j + 1] + ft;
                            if (v < Vo[j + 1] && v < best) relax(c, base + (size_t)j + 1, v, i, a, p);
                        }
                    }
                    /* last stages [i, L - 1] */
                    double ftl = K->ft[p][0][1];
                    uint64_t fml = K->fm[p][0][1];
                    for (int i = lo; i <= hi; i++) {
                        if (!(Vk[i] < best)) continue;
                        if (ns && c->safe_end[i] < L - 1) continue;
                        if (!runs(K, i, L - 1, 0, 1)) continue;
                        if (PM[L] - PM[i] + fml > K->usable) continue;
                        double t = PT[L] - PT[i] + ftl;
                        if (t > cap) continue;
                        double v = Vk[i] + hop + t;
                        if (v < best) {
                            relax(c, base + (size_t)L, v, i, a, p);
                            best = v; bk = k2; bc = b;
                            if (any_plan) goto done;
                        }
                    }
                }
            }
        }
    }
done:
    *end_k = bk;
    *end_c = bc;
    if (bk == 0) return INFINITY;      /* nothing found below the bound cannot happen when the bound is real */
    return best;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Every value a bottleneck can take that is <= hi: stage times and hop times. */
static double *candidates(const struct pl_ctx *c, double hi, size_t *n_out) {
    const int L = c->L;
    size_t cap = 64, n = 0;
    double *v = malloc(cap * sizeof *v);
    if (!v) return NULL;
#define PUSH(x) do { double _x = (x); if (_x <= hi) { if (n == cap) { cap *= 2; double *_t = realloc(v, cap * sizeof *v); \
        if (!_t) { free(v); return NULL; } v = _t; } v[n++] = _x; } } while (0)
    for (int a = 0; a < c->C * c->C; a++) if (c->hop[a] < INFINITY) PUSH(c->hop[a]);
    for (int b = 0; b < c->C; b++) {
        const struct pl_cls *K = &c->cls[b];
        for (int p = 0; p < K->n_modes; p++)
            for (int i = 0; i < L; i++)
                for (int j = i; j < L; j++) {
                    double base = K->pt[p][j + 1] - K->pt[p][i];
                    if (base > hi) break;
                    PUSH(base + K->ft[p][i == 0][j == L - 1]);
                }
    }
#undef PUSH
    qsort(v, n, sizeof *v, cmp_double);
    size_t u = 0;
    for (size_t i = 0; i < n; i++) if (u == 0 || v[i] != v[u - 1]) v[u++] = v[i];
    *n_out = u;
    return v;
}

/* The slowest stage or hop of the plan ending in state (k, a, L). */
static double bottleneck_of(const struct pl_ctx *c, size_t k, int a) {
    double hi = 0;
    int i = c->L;
    while (i > 0) {
        size_t at = vidx(c, k, a, i);
        int i0 = c->par_i[at], pc = c->par_c[at], p = c->par_p[at];
        const struct pl_cls *K = &c->cls[a];
        double t = K->pt[p][i] - K->pt[p][i0] + K->ft[p][i0 == 0][i == c->L];
        hi = ST_MAX(hi, t);
        if (pc >= 0) hi = ST_MAX(hi, c->hop[pc * c->C + a]);
        k -= c->stride[a];
        a = pc;
        i = i0;
    }
    return hi;
}

/* The throughput search where hops may be the bottleneck: binary search over
 * the sorted candidate values <= hi (hi: a bound known to admit a plan, or
 * INFINITY) with the exact DP as the test, the relaxation as a quick no. */
static double min_bottleneck_slow(struct pl_ctx *c, double hi) {
    size_t ek, k2;
    int ec, c2;
    if (!(hi < INFINITY)) {
        if (!(run_dp(c, INFINITY, false, &ek, &ec) < INFINITY)) return INFINITY;
        hi = bottleneck_of(c, ek, ec);       /* the latency-optimal plan's bottleneck */
    }
    size_t nc = 0;
    double *cand = candidates(c, hi, &nc);
    if (!cand) { st_error_set(ST_ERR_NOMEM, "planner: candidates"); return NAN; }
    if (nc == 0) { free(cand); return INFINITY; }
    size_t lo = 0, up = nc - 1;          /* cand[up] admits a plan */
    while (lo < up) {
        size_t mid = lo + (up - lo) / 2;
        bound_tables(c, cand[mid]);
        if (relaxed_feasible(c) && run_dp(c, cand[mid], true, &k2, &c2) < INFINITY) {
            /* the plan found may be better than the cap: jump down to its bottleneck */
            double b = bottleneck_of(c, k2, c2);
            size_t x = mid;
            while (x > lo && cand[x - 1] >= b) x--;
            up = x;
        } else {
            lo = mid + 1;
        }
    }
    double T = cand[up];
    free(cand);
    return T;
}

/* The smallest bottleneck (slowest stage or hop) of any plan: INFINITY when
 * nothing fits, NAN on error (message set). Above the slowest hop that can
 * occur, the relaxation without hops is exact and costs O(K x C + C x L) per
 * test, so the answer is the smallest double B whose test passes: a bisection
 * over the bit patterns of doubles (positive doubles order like their bits),
 * at most 64 tests, ending on the exact stage time. Below it, the slow search. */
static double min_bottleneck(struct pl_ctx *c) {
    const int L = c->L;
    bound_tables(c, INFINITY);
    if (!relaxed_feasible(c)) return INFINITY;
    if (!(c->hop_max < INFINITY)) return min_bottleneck_slow(c, INFINITY);
    bound_tables(c, c->hop_max);
    if (relaxed_feasible(c)) return min_bottleneck_slow(c, c->hop_max);   /* every hop fits: exact there */
    /* above hop_max: lo admits no plan, hi admits one (every stage time is <= hi) */
    double lo = c->hop_max, hi = c->hop_max, lb = 0;
    for (int l = 0; l < L; l++) {
        double t = INFINITY;
        for (int b = 0; b < c->C; b++) {
            const struct pl_cls *K = &c->cls[b];
            for (int p = 0; p < K->n_modes; p++) {
                t = ST_MIN(t, K->pt[p][l + 1] - K->pt[p][l]);
                for (int f = 0; f < 2; f++)
                    for (int e = 0; e < 2; e++) hi = ST_MAX(hi, K->pt[p][L] + K->ft[p][f][e]);
            }
        }
        if (t < INFINITY) lb = ST_MAX(lb, t);
    }
    hi *= 2;
    lo = ST_MAX(lo, lb * (1 - 1e-9));   /* every plan has a stage holding the slowest-anywhere layer */
    uint64_t lo_b, hi_b;
    memcpy(&lo_b, &lo, sizeof lo_b);
    memcpy(&hi_b, &hi, sizeof hi_b);
    while (hi_b - lo_b > 1) {
        uint64_t mid_b = lo_b + (hi_b - lo_b) / 2;
        double mid;
        memcpy(&mid, &mid_b, sizeof mid);
        bound_tables(c, mid);
        if (relaxed_feasible(c)) hi_b = mid_b;
        else lo_b = mid_b;
    }
    memcpy(&hi, &hi_b, sizeof hi);
    return hi;
}

int pl_partition(const struct st_plan_model *m, const struct st_plan_device *devs, int n_dev,
                 const struct st_plan_link *links, const struct st_plan_request *req,
                 struct st_plan_range *ranges, double *best_out) {
    struct pl_ctx c;
    if (n_dev > 64) {
        st_error_set(ST_ERR_CONFIG, "planner: %d devices; at most 64 are supported", n_dev);
        return -1;
    }
    if (ctx_init(&c, m, devs, n_dev, links, req) != ST_OK) { ctx_free(&c); return -1; }
    size_t ek = 0;
    int ec = 0;
    double best = INFINITY;
    if (req->objective == ST_PLAN_THROUGHPUT) {
        double T = min_bottleneck(&c);
        if (isnan(T)) { ctx_free(&c); return -1; }
        /* among the plans with that bottleneck, the lowest latency; equal stage times summed in another
         * order differ in the last bits (blocks with the same matrices), so the cap takes a 1e-9 margin */
        if (T < INFINITY) {
            best = run_dp(&c, T * (1 + 1e-9), false, &ek, &ec);
            /* T is the least bottleneck, so the plan found under it has that bottleneck (to rounding) */
            if (best < INFINITY && fabs(bottleneck_of(&c, ek, ec) - T) > 1e-9 * T) {
                st_error_set(ST_ERR_INTERNAL, "planner: throughput search ended at %.17g ms, the plan under it has "
                             "bottleneck %.17g ms", T, bottleneck_of(&c, ek, ec));
                ctx_free(&c);
                return -1;
            }
        }
        if (best_out) *best_out = T;
    } else {
        bound_tables(&c, INFINITY);
        if (relaxed_feasible(&c)) best = run_dp(&c, INFINITY, false, &ek, &ec);
        if (best_out) *best_out = best;
    }
    if (!(best < INFINITY)) { ctx_free(&c); return 0; }
    /* walk back: stages in reverse order; members of a class are used in index order */
    int n_st = 0;
    struct st_plan_range tmp[64];
    int cls_seq[64];
    size_t k = ek; int a = ec, i = c.L;
    while (i > 0) {
        size_t at = vidx(&c, k, a, i);
        int i0 = c.par_i[at];
        tmp[n_st].first = i0;
        tmp[n_st].last = i - 1;
        cls_seq[n_st] = a;
        n_st++;
        int pc = c.par_c[at];
        k -= c.stride[a]; a = pc; i = i0;
    }
    int used[64] = {0};
    for (int s = 0; s < n_st; s++) {
        int r = n_st - 1 - s;
        int cl = cls_seq[r];
        ranges[s].device = c.cls[cl].members[used[cl]++];
        ranges[s].first = tmp[r].first;
        ranges[s].last = tmp[r].last;
    }
    ctx_free(&c);
    return n_st;
}
