/* bench_planner — how long the exact planner takes on 16 devices x 128 layers.
 *
 *   bench_planner [--reps N] [--json FILE] [--limit-ms MS]
 *
 * Cases (a 128-layer model with Llama-70B-sized blocks, bf16, 8K context):
 *   mixed-16     4x H100 SXM, 4x A100 80GB, 4x L40S, 2x RTX 4090, 1x P40, 1x CPU
 *                (6 kinds of device: the exact DP runs over counts per kind)
 *   same-16      16x H100 SXM (one kind)
 *   distinct-N   N different catalog cards (the DP is exponential in the number
 *                of *distinct* devices: 16 is refused with a message, so N = 10, 12)
 * each with the latency and the throughput objective. Each plan is checked
 * (layers covered once, in order; memory within usable; the reported objective
 * equals the sum / max of its stages and hops); the program exits 1 when a
 * check fails or mixed-16 takes longer than --limit-ms (default 50) of CPU time
 * for either objective. */
#include "planner/planner.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU time of this process: the dev box is shared, wall time swings with load */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int failures = 0;

static void dev(struct st_plan_device *d, const char *key) {
    struct st_device_info in;
    if (st_catalog_lookup(key, &in) != ST_OK) { fprintf(stderr, "%s\n", st_last_error()); exit(1); }
    st_plan_device_init(d, &in);
}

static void cpu(struct st_plan_device *d) {
    struct st_device_info in = {0};
    in.kind = ST_DEVICE_CPU;
    in.numa_node = -1;
    snprintf(in.name, sizeof in.name, "host CPU (64 cores, 256 GiB)");
    in.caps = st_caps_cpu();
    in.sm_count = 64;
    in.threads = 128;
    in.mem_total_bytes = in.mem_free_bytes = 256ull << 30;
    in.perf.mem_bw_gbps = 300;
    st_plan_device_init(d, &in);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static bool check(const st_plan *p, const struct st_plan_model *m) {
    int64_t next = 0;
    double sum = 0, mx = 0;
    for (int s = 0; s < p->n_stages; s++) {
        const struct st_plan_stage *st = &p->stages[s];
        if (st->first != next || st->mem.total > st_plan_device_usable(&p->devices[st->device])) return false;
        next = st->last + 1;
        sum += st->decode_ms;
        mx = fmax(mx, st->decode_ms);
        if (s + 1 < p->n_stages) { sum += p->hops[s].decode_ms; mx = fmax(mx, p->hops[s].decode_ms); }
    }
    if (next != m->n_layer) return false;
    return fabs(sum - p->decode_ms) < 1e-9 * sum && fabs(mx - p->bottleneck_ms) < 1e-9 * mx;
}

struct result { char name[32]; const char *objective; int n_dev; double median_ms, min_ms, cpu_ms; int stages; double tok_s;
                char note[160]; };

static struct result run(const char *name, const struct st_plan_model *m, const struct st_plan_device *d, int n,
                         st_plan_objective obj, int reps) {
    struct result r = {0};
    snprintf(r.name, sizeof r.name, "%s", name);
    r.objective = st_plan_objective_name(obj);
    r.n_dev = n;
    struct st_plan_request req;
    st_plan_request_defaults(&req);
    req.context = 8192;
    req.objective = obj;
    double *t = calloc((size_t)reps, sizeof *t), *tc = calloc((size_t)reps, sizeof *tc);
    for (int i = 0; i < reps; i++) {
        st_plan *p = NULL;
        double t0 = st_time_s(), c0 = cpu_s();
        st_status s = st_plan_make(m, d, n, NULL, &req, &p);
        t[i] = (st_time_s() - t0) * 1e3;
        tc[i] = (cpu_s() - c0) * 1e3;
        if (s != ST_OK) {
            snprintf(r.note, sizeof r.note, "%s", st_last_error());
            char *nl = strchr(r.note, '\n');
            if (nl) *nl = 0;
            st_plan_free(p);
            r.stages = -1;
            break;
        }
        if (i == 0) {
            r.stages = p->n_stages;
            r.tok_s = p->decode_tok_s;
            if (!check(p, m)) { failures++; snprintf(r.note, sizeof r.note, "CHECK FAILED"); }
        }
        st_plan_free(p);
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    qsort(tc, (size_t)reps, sizeof *tc, cmp);
    r.median_ms = t[reps / 2];
    r.min_ms = t[0];
    r.cpu_ms = tc[reps / 2];
    free(t);
    free(tc);
    return r;
}

int main(int argc, char **argv) {
    int reps = 7;
    double limit = 50;
    const char *json = "planner.json";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--limit-ms") && i + 1 < argc) limit = atof(argv[++i]);
        else { fprintf(stderr, "usage: bench_planner [--reps N] [--json FILE] [--limit-ms MS]\n"); return 2; }
    }
    if (reps < 1) reps = 1;
    /* 128 blocks of Llama-70B shape (8192 / 28672 / 64 heads / 8 KV heads), bf16: 217 GiB */
    struct st_plan_model base, m;
    st_plan_model_from_preset("llama-3.1-70b", "bf16", &base);
    base.n_layer = 128;
    snprintf(base.name, sizeof base.name, "llama-128-layer");
    if (st_plan_model_requant(&base, "bf16", &m) != ST_OK) { fprintf(stderr, "%s\n", st_last_error()); return 1; }
    base.n_layer = 80;
    st_plan_model_free(&base);

    struct st_plan_device mixed[16], same[16], distinct[16];
    int k = 0;
    for (int i = 0; i < 4; i++) dev(&mixed[k++], "h100-sxm");
    for (int i = 0; i < 4; i++) dev(&mixed[k++], "a100-80gb");
    for (int i = 0; i < 4; i++) dev(&mixed[k++], "l40s");
    for (int i = 0; i < 2; i++) dev(&mixed[k++], "rtx-4090");
    dev(&mixed[k++], "tesla-p40");
    cpu(&mixed[k++]);
    for (int i = 0; i < 16; i++) dev(&same[i], "h100-sxm");
    const char *keys[16] = {"h200", "h100-sxm", "h100-pcie", "a100-80gb", "a100-40gb", "l40s", "rtx-4090", "a10",
                            "rtx-3090", "tesla-v100", "l4", "tesla-p40", "tesla-t4", "rtx-4060-ti", "tesla-m40",
                            "tesla-p100"};
    for (int i = 0; i < 16; i++) dev(&distinct[i], keys[i]);

    struct result res[16];
    int nr = 0;
    for (int o = 0; o < 2; o++) {
        res[nr++] = run("mixed-16", &m, mixed, 16, (st_plan_objective)o, reps);
        res[nr++] = run("same-16", &m, same, 16, (st_plan_objective)o, reps);
        res[nr++] = run("distinct-10", &m, distinct, 10, (st_plan_objective)o, reps);
        res[nr++] = run("distinct-12", &m, distinct, 12, (st_plan_objective)o, ST_MIN(reps, 3));
        res[nr++] = run("distinct-16", &m, distinct, 16, (st_plan_objective)o, 1);
    }
    printf("planner: %lld layers (%s, %.1f GiB), context 8192; median of %d runs\n\n", (long long)m.n_layer,
           m.weights, (double)m.total_bytes / 1073741824.0, reps);
    printf("%-12s %-10s %4s %10s %10s %10s %6s %9s  %s\n", "case", "objective", "dev", "wall ms", "min ms",
           "cpu ms", "stages", "tok/s", "note");
    for (int i = 0; i < nr; i++) {
        const struct result *r = &res[i];
        if (r->stages < 0)
            printf("%-12s %-10s %4d %10s %10s %10s %6s %9s  %s\n", r->name, r->objective, r->n_dev, "-", "-", "-",
                   "-", "-", r->note);
        else
            printf("%-12s %-10s %4d %10.2f %10.2f %10.2f %6d %9.1f  %s\n", r->name, r->objective, r->n_dev,
                   r->median_ms, r->min_ms, r->cpu_ms, r->stages, r->tok_s, r->note);
    }
    bool over = false;
    for (int i = 0; i < nr; i++) {
        if (strcmp(res[i].name, "mixed-16") != 0) continue;
        bool miss = res[i].stages < 0 || res[i].cpu_ms > limit;
        over |= miss;
        printf("%smixed-16 %s: %.2f ms CPU time, %.2f ms wall (limit %.0f ms on CPU time): %s\n", i == 0 ? "\n" : "",
               res[i].objective, res[i].cpu_ms, res[i].median_ms, limit, miss ? "MISSED" : "ok");
    }
    FILE *f = fopen(json, "w");
    if (f) {
        fprintf(f, "{\n  \"bench\": \"planner\",\n  \"commit\": \"%s\",\n  \"layers\": %lld,\n  \"reps\": %d,\n"
                "  \"limit_ms\": %.1f,\n  \"cases\": [\n", st_build_commit(), (long long)m.n_layer, reps, limit);
        for (int i = 0; i < nr; i++)
            fprintf(f, "    {\"case\": \"%s\", \"objective\": \"%s\", \"devices\": %d, \"median_ms\": %.4f, "
                    "\"min_ms\": %.4f, \"cpu_ms\": %.4f, \"stages\": %d, \"decode_tok_s\": %.3f, \"refused\": %s}%s\n", res[i].name,
                    res[i].objective, res[i].n_dev, res[i].stages < 0 ? 0 : res[i].median_ms,
                    res[i].stages < 0 ? 0 : res[i].min_ms, res[i].stages < 0 ? 0 : res[i].cpu_ms, res[i].stages, res[i].tok_s,
                    res[i].stages < 0 ? "true" : "false", i + 1 < nr ? "," : "");
        fprintf(f, "  ]\n}\n");
        fclose(f);
        printf("JSON: %s\n", json);
    }
    st_plan_model_free(&m);
    if (failures) fprintf(stderr, "%d plan checks failed\n", failures);
    return failures || over ? 1 : 0;
}
