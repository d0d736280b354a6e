/* strata bench — builds a deployment's engine and measures it end to end:
 * prefill and batch-1 greedy decode tok/s (median of --repeat runs), the time
 * of every stage and link in a decode step (engine timing mode, backend
 * events), memory in use per device against the plan's estimate, and the
 * bandwidth roofline (weight bytes per token / a copy bandwidth measured in
 * the same run). docs/bench.md explains every figure. */
#include "orchestrator/cli.h"
#include "orchestrator/mpi.h"
#include "orchestrator/deploy.h"
#include "orchestrator/session.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MEM_TOL_FRAC 0.05                       /* memory in use vs estimate: 5% ... */
#define MEM_TOL_BYTES (256ull << 20)            /* ... + 256 MiB */

static void usage(FILE *f) {
    fprintf(f,
        "usage: strata bench [-m MODEL [--cpu] | -c deploy.yaml] [options]\n\n"
        "Builds the deployment's engine and measures it: prefill tok/s over a prompt of random valid\n"
        "token ids, batch-1 greedy decode tok/s (the choice made on the device), the time of every\n"
        "stage and link in a decode step, memory in use per device against the plan's estimate, and\n"
        "the bandwidth roofline (weight bytes per token over a copy bandwidth measured in this run).\n\n"
        "options:\n"
        "  -c, --config FILE      deployment config (docs/config.md)\n"
        "  -m, --model PATH       GGUF file or Hugging Face directory (overrides the config's model;\n"
        "                         without -m and -c: the bundled model, " ST_CLI_BUNDLED_MODEL ")\n"
        "  --cpu                  without -c: use the CPU even when GPUs are present\n"
        "  --prompt-tokens N      prompt length for prefill, 1..16777216 (default 512)\n"
        "  --decode-tokens N      greedy tokens decoded per run, 0..16777216 (default 128)\n"
        "  --repeat R             measured runs, 1..64; the median is reported (default 3)\n"
        "  --ctx N                context (KV cache tokens), 1..16777216; default the deployment's\n"
        "  --threads N            CPU worker threads, 0..4096 (0 = all cores)\n"
        "  --seed S               seed of the random prompt, 0..2^63-1 (default 1)\n"
        "  --bw-bytes SIZE        array size of the bandwidth measurement (default: CPU 512 MiB or\n"
        "                         2 x last-level cache, GPU 256 MiB)\n"
        "  --profile FILE         probe profile for the plan (default: the saved one, if any)\n"
        "  --probe                under mpirun: measure the network between ranks for the plan\n"
        "                         (else the config's network:, docs/multihost.md)\n"
        "  --concurrency LIST     serving throughput instead: for each count C (e.g. 1,4,16,64), C sequences\n"
        "                         of --prompt-tokens random ids are prefilled, then decode --decode-tokens each\n"
        "                         in batched steps; aggregate and per-sequence decode tok/s, time to first token\n"
        "  --json                 one JSON object instead of tables\n"
        "  -h, --help             this text\n\n"
        "exit codes: 0 ok, 1 runtime failure or invalid generated tokens, 2 usage or configuration\n");
}

/* ---- small helpers ---------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, int n) {
    double tmp[64];
    int m = ST_MIN(n, (int)ST_ARRAY_LEN(tmp));
    memcpy(tmp, v, (size_t)m * sizeof *tmp);
    qsort(tmp, (size_t)m, sizeof *tmp, cmp_double);
    return m % 2 ? tmp[m / 2] : 0.5 * (tmp[m / 2 - 1] + tmp[m / 2]);
}

/* splitmix64: the prompt depends on the seed only */
static uint64_t next_rand(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* "  [process RSS]", "  [cudaMemGetInfo]": how the memory in use of a device was read */
static const char *mem_tag(const struct st_device_info *info) {
    static char tag[64];
    const struct st_backend_reg *be = st_backend_reg_of(info);
    snprintf(tag, sizeof tag, "  [%s]", be ? be->mem_method : "?");
    return tag;
}

static const char *dev_label(const st_plan *p, int dev) {
    return p->devices[dev].label[0] ? p->devices[dev].label : p->devices[dev].select;
}

/* A physical device in the memory and bandwidth rows: its selector ("cpu", "cuda:1"). */
static const char *phys_label(const st_plan *p, int dev) {
    return p->devices[dev].select[0] ? p->devices[dev].select : dev_label(p, dev);
}

/* ---- measurement state ---------------------------------------------------------- */

/* One physical device (plan devices that name the same CPU or GPU share one). */
struct dev_bench {
    bool used;                   /* some stage runs here; false for plan devices folded into another */
    int phys;                    /* the plan device index that represents this physical device */
    bool mem_known;
    struct st_device_mem_reading before, after;
    uint64_t in_use_bytes;       /* CPU: resident set after warm-up; CUDA: free before - free after */
    uint64_t estimate_bytes;     /* plan: sum of its stages' mem.total (+ the runtime overhead, once, on a GPU) */
    bool mem_flag;               /* outside 5% + 256 MiB of the estimate */
    double copy_gbps, read_gbps; /* measured in this run (read: CPU only) */
    char bw_note[160];           /* why bandwidth is missing, or "" */
    char mem_note[160];
};

struct bench {
    st_deploy *d;
    st_engine *e;
    int n_stages;
    int64_t n_prompt, n_decode, repeat, n_vocab;
    uint64_t seed, bw_bytes;
    int32_t *prompt;             /* (n_prompt) */
    int32_t *gen, *gen_first;    /* (n_decode + 1) tokens of the current / first run */
    double *prefill_tok_s, *decode_tok_s;  /* (repeat) */
    bool tokens_valid, tokens_repeatable;
    int64_t bad_token_at;
    int32_t bad_token;
    /* timed run */
    double *stage_decode_ms, *link_decode_ms;    /* (n_stages) means over the timed steps */
    double *stage_prefill_ms, *link_prefill_ms;  /* (n_stages) of the timed prefill */
    double timed_step_ms;                        /* host wall time of a timed step, mean */
    double init_s, ttft_s;                       /* engine build (weights loaded); build + the first prompt's first token */
    double *h2d_gbps;                            /* (n_stages) pinned host-to-device bandwidth of a GPU stage's device, 0 = n/a */
    double *tmp_stage, *tmp_link;                /* (n_stages) scratch */
    struct dev_bench *devs;                      /* (plan n_devices) */
};

static void bench_free(struct bench *b) {
    free(b->prompt);
    free(b->gen);
    free(b->gen_first);
    free(b->prefill_tok_s);
    free(b->decode_tok_s);
    free(b->stage_decode_ms);
    free(b->link_decode_ms);
    free(b->stage_prefill_ms);
    free(b->link_prefill_ms);
    free(b->tmp_stage);
    free(b->tmp_link);
    free(b->h2d_gbps);
    free(b->devs);
    st_engine_free(b->e);
    st_deploy_free(b->d);
}

static bool check_tokens(struct bench *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (b->gen[i] < 0 || b->gen[i] >= b->n_vocab) {
            if (b->tokens_valid) {
                b->bad_token_at = i;
                b->bad_token = b->gen[i];
            }
            b->tokens_valid = false;
            return false;
        }
    }
    return true;
}

/* One run: prefill the prompt (greedy first token), then n_decode greedy steps. */
static st_status run_once(struct bench *b, double *prefill_s, double *decode_s) {
    st_status s;
    st_engine_reset(b->e);
    double t0 = st_time_s();
    if ((s = st_engine_prefill_greedy(b->e, b->prompt, b->n_prompt, &b->gen[0])) != ST_OK) return s;
    double t1 = st_time_s();
    for (int64_t i = 0; i < b->n_decode; i++) {
        if ((s = st_engine_decode_greedy(b->e, b->gen[i], &b->gen[i + 1])) != ST_OK) return s;
        if (b->gen[i + 1] < 0 || b->gen[i + 1] >= b->n_vocab) break;   /* reported by check_tokens */
    }
    double t2 = st_time_s();
    *prefill_s = t1 - t0;
    *decode_s = t2 - t1;
    return ST_OK;
}

/* The same with timing on: per-stage and per-link times of the prefill and of every decode step. */
static st_status run_timed(struct bench *b) {
    st_status s;
    const int S = b->n_stages;
    if ((s = st_engine_set_timing(b->e, true)) != ST_OK) return s;
    st_engine_reset(b->e);
    if ((s = st_engine_prefill_greedy(b->e, b->prompt, b->n_prompt, &b->gen[0])) != ST_OK) goto done;
    if ((s = st_engine_stage_times(b->e, b->stage_prefill_ms, b->link_prefill_ms)) != ST_OK) goto done;
    double wall = 0;
    int64_t steps = 0;
    for (int64_t i = 0; i < b->n_decode; i++) {
        double t0 = st_time_s();
        if ((s = st_engine_decode_greedy(b->e, b->gen[i], &b->gen[i + 1])) != ST_OK) goto done;
        wall += st_time_s() - t0;
        if ((s = st_engine_stage_times(b->e, b->tmp_stage, b->tmp_link)) != ST_OK) goto done;
        for (int k = 0; k < S; k++) {
            b->stage_decode_ms[k] += b->tmp_stage[k];
            if (k + 1 < S) b->link_decode_ms[k] += b->tmp_link[k];
        }
        steps++;
        if (b->gen[i + 1] < 0 || b->gen[i + 1] >= b->n_vocab) break;
    }
    for (int k = 0; k < S && steps; k++) {
        b->stage_decode_ms[k] /= (double)steps;
        b->link_decode_ms[k] /= (double)steps;
    }
    b->timed_step_ms = steps ? wall * 1e3 / (double)steps : 0;
    check_tokens(b, steps + 1);
done:;
    st_status s2 = st_engine_set_timing(b->e, false);
    return s != ST_OK ? s : s2;
}

/* Memory readings of every device that holds a stage. */
static void read_mem(struct bench *b, bool after) {
    const st_plan *p = b->d->plan;
    for (int i = 0; i < p->n_devices; i++) {
        struct dev_bench *db = &b->devs[i];
        if (!db->used) continue;
        if (p->devices[i].rank != st_mpi_rank()) {   /* another host's memory is read there, not here */
            db->mem_known = false;
            snprintf(db->mem_note, sizeof db->mem_note, "n/a: on %s", st_mpi_where(p->devices[i].rank));
            continue;
        }
        struct st_device_mem_reading *r = after ? &db->after : &db->before;
        if (st_device_mem_read(&p->devices[i].info, r) != ST_OK) {
            db->mem_known = false;
            snprintf(db->mem_note, sizeof db->mem_note, "n/a: %.140s", st_last_error());
            continue;
        }
        if (!after) { db->mem_known = true; continue; }
        if (!db->mem_known) continue;
        if (p->devices[i].is_cpu) {   /* host memory: what this process came to hold with the engine */
            db->in_use_bytes = r->process_bytes > db->before.process_bytes ? r->process_bytes - db->before.process_bytes : 0;
        } else {
            db->in_use_bytes = db->before.free_bytes > r->free_bytes ? db->before.free_bytes - r->free_bytes : 0;
        }
        double est = (double)db->estimate_bytes, got = (double)db->in_use_bytes;
        db->mem_flag = fabs(got - est) > MEM_TOL_FRAC * est + (double)MEM_TOL_BYTES;
    }
}

static void measure_bandwidth(struct bench *b, int threads) {
    const st_plan *p = b->d->plan;
    for (int i = 0; i < p->n_devices; i++) {
        struct dev_bench *db = &b->devs[i];
        const struct st_device_info *info = &p->devices[i].info;
        if (!db->used) continue;
        if (p->devices[i].rank != st_mpi_rank()) {
            snprintf(db->bw_note, sizeof db->bw_note, "n/a: on %s", st_mpi_where(p->devices[i].rank));
            continue;
        }
        st_status s = ST_OK;
        const struct st_backend_reg *be = st_backend_reg_find(info->kind);   /* NULL for a catalog card */
        uint64_t bytes = b->bw_bytes;
        if (!bytes && p->devices[i].is_cpu) {   /* host memory: arrays past the last-level cache */
            bytes = 512ull << 20;
            if (b->d->inv && 2 * b->d->inv->llc_bytes > bytes) bytes = 2 * b->d->inv->llc_bytes;
        }
        if (be && !be->bandwidth) {
            s = st_error_set(ST_ERR_NOT_BUILT, "this build has no %s backend", be->title);
        } else if (be) {
            /* as many threads as a CPU stage runs (st_deploy_engine gives it info->threads); reps as before:
             * 3 for host memory (large arrays), 10 on a GPU */
            s = be->bandwidth(info, threads, bytes, p->devices[i].is_cpu ? 3 : 10, &db->copy_gbps, &db->read_gbps);
        }
        if (s != ST_OK) {
            snprintf(db->bw_note, sizeof db->bw_note, "n/a: %.150s", st_last_error());
            ST_WARN("bench: bandwidth of %s not measured: %s", phys_label(p, i), st_last_error());
        }
    }
}

/* ---- output ------------------------------------------------------------------------- */

struct roof {
    uint64_t weight_bytes;       /* per decode token, all stages */
    double roofline_ms;          /* sum over stages of weight bytes / the device's copy bandwidth */
    bool known;                  /* every device's bandwidth measured */
};

static struct roof roofline(const struct bench *b) {
    struct roof r = {0, 0, true};
    const st_plan *p = b->d->plan;
    for (int k = 0; k < b->n_stages; k++) {
        uint64_t w = st_engine_stage_weight_bytes(b->e, k);
        const struct dev_bench *db = &b->devs[b->devs[p->stages[k].device].phys];
        r.weight_bytes += w;
        if (db->copy_gbps > 0) r.roofline_ms += (double)w / (db->copy_gbps * 1e9) * 1e3;
        else r.known = false;
    }
    return r;
}


static json_t *bytes_or_null(bool known, uint64_t v) { return known ? json_integer((json_int_t)v) : json_null(); }
static json_t *real_or_null(bool known, double v) { return known ? json_real(v) : json_null(); }

static void print_json(const struct bench *b, double prefill, double decode) {
    const st_plan *p = b->d->plan;
    const st_deploy *d = b->d;
    struct roof rf = roofline(b);
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(d->model->path));
    json_object_set_new(o, "model_name", json_string(d->pm.name));
    json_object_set_new(o, "weights", json_string(d->pm.weights));
    json_object_set_new(o, "n_layer", json_integer(d->pm.n_layer));
    json_object_set_new(o, "strata_version", json_string(st_version_string()));
    json_object_set_new(o, "commit", json_string(st_build_commit()));
    json_object_set_new(o, "context", json_integer(st_engine_n_ctx(b->e)));
    json_object_set_new(o, "prompt_tokens", json_integer(b->n_prompt));
    json_object_set_new(o, "decode_tokens", json_integer(b->n_decode));
    json_object_set_new(o, "repeat", json_integer(b->repeat));
    json_object_set_new(o, "seed", json_integer((json_int_t)b->seed));
    json_object_set_new(o, "prefill_tok_s", json_real(prefill));
    json_object_set_new(o, "decode_tok_s", json_real(decode));
    json_object_set_new(o, "decode_ms_per_token", json_real(decode > 0 ? 1e3 / decode : 0));
    json_t *pr = json_array(), *dr = json_array();
    for (int64_t r = 0; r < b->repeat; r++) {
        json_array_append_new(pr, json_real(b->prefill_tok_s[r]));
        json_array_append_new(dr, json_real(b->decode_tok_s[r]));
    }
    json_object_set_new(o, "prefill_tok_s_runs", pr);
    json_object_set_new(o, "decode_tok_s_runs", dr);
    json_t *plan = json_object();
    json_object_set_new(plan, "decode_tok_s", json_real(p->decode_tok_s));
    json_object_set_new(plan, "prefill_tok_s", json_real(p->prefill_tok_s));
    json_object_set_new(plan, "decode_ms", json_real(p->decode_ms));
    json_object_set_new(o, "plan", plan);
    json_object_set_new(o, "tokens_valid", json_boolean(b->tokens_valid));
    json_object_set_new(o, "tokens_repeatable", json_boolean(b->tokens_repeatable));
    json_t *gen = json_array();
    for (int64_t i = 0; i <= b->n_decode; i++) json_array_append_new(gen, json_integer(b->gen_first[i]));
    json_object_set_new(o, "generated", gen);

    double ssum = 0, lsum = 0;
    json_t *stages = json_array();
    for (int k = 0; k < b->n_stages; k++) {
        const struct st_plan_stage *ps = &p->stages[k];
        const struct dev_bench *db = &b->devs[b->devs[ps->device].phys];
        uint64_t w = st_engine_stage_weight_bytes(b->e, k);
        bool bw = db->copy_gbps > 0;
        double roof_ms = bw ? (double)w / (db->copy_gbps * 1e9) * 1e3 : 0;
        json_t *s = json_object();
        json_object_set_new(s, "index", json_integer(k));
        json_object_set_new(s, "device", json_string(dev_label(p, ps->device)));
        json_t *layers = json_array();
        json_array_append_new(layers, json_integer(ps->first));
        json_array_append_new(layers, json_integer(ps->last));
        json_object_set_new(s, "layers", layers);
        json_object_set_new(s, "precision", json_string(st_prec_name(ps->prec)));
        json_object_set_new(s, "decode_ms", json_real(b->stage_decode_ms[k]));
        json_object_set_new(s, "prefill_ms", json_real(b->stage_prefill_ms[k]));
        json_object_set_new(s, "plan_decode_ms", json_real(ps->decode_ms));
        json_object_set_new(s, "weight_bytes", json_integer((json_int_t)w));
        json_object_set_new(s, "copy_gbps", real_or_null(bw, db->copy_gbps));
        json_object_set_new(s, "roofline_ms", real_or_null(bw, roof_ms));
        json_object_set_new(s, "roofline_fraction",
                            real_or_null(bw && b->stage_decode_ms[k] > 0, roof_ms / b->stage_decode_ms[k]));
        json_array_append_new(stages, s);
        ssum += b->stage_decode_ms[k];
    }
    json_object_set_new(o, "stages", stages);
    json_t *links = json_array();
    for (int k = 0; k + 1 < b->n_stages; k++) {
        json_t *l = json_object();
        json_object_set_new(l, "from_stage", json_integer(k));
        json_object_set_new(l, "to_stage", json_integer(k + 1));
        json_object_set_new(l, "type", json_string(st_link_type_name(st_engine_link_type(b->e, k))));
        json_object_set_new(l, "from_rank", json_integer(st_engine_stage_rank(b->e, k)));
        json_object_set_new(l, "to_rank", json_integer(st_engine_stage_rank(b->e, k + 1)));
        json_object_set_new(l, "decode_ms", json_real(b->link_decode_ms[k]));
        json_object_set_new(l, "prefill_ms", json_real(b->link_prefill_ms[k]));
        json_object_set_new(l, "plan_decode_ms", json_real(p->hops[k].decode_ms));
        json_array_append_new(links, l);
        lsum += b->link_decode_ms[k];
    }
    json_object_set_new(o, "links", links);
    json_t *step = json_object();
    json_object_set_new(step, "timed_step_ms", json_real(b->timed_step_ms));
    json_object_set_new(step, "stages_ms", json_real(ssum));
    json_object_set_new(step, "links_ms", json_real(lsum));
    json_object_set_new(o, "decode_step", step);

    json_t *devs = json_array();
    for (int i = 0; i < p->n_devices; i++) {
        const struct dev_bench *db = &b->devs[i];
        if (!db->used) continue;
        const struct st_plan_device *pd = &p->devices[i];
        json_t *v = json_object();
        json_object_set_new(v, "device", json_string(phys_label(p, i)));
        json_object_set_new(v, "kind", json_string(st_device_kind_name(pd->info.kind)));
        json_object_set_new(v, "name", json_string(pd->info.name));
        json_object_set_new(v, "mem_in_use_bytes", bytes_or_null(db->mem_known, db->in_use_bytes));
        char how[96];
        const struct st_backend_reg *be = st_backend_reg_of(&pd->info);
        if (pd->is_cpu) snprintf(how, sizeof how, "process resident set after warm-up");
        else snprintf(how, sizeof how, "%s free before engine init - after warm-up", be ? be->mem_method : "?");
        json_object_set_new(v, "mem_method", json_string(how));
        json_object_set_new(v, "mem_estimate_bytes", json_integer((json_int_t)db->estimate_bytes));
        json_object_set_new(v, "mem_ratio", real_or_null(db->mem_known && db->estimate_bytes,
                                                         (double)db->in_use_bytes / (double)db->estimate_bytes));
        json_object_set_new(v, "mem_flag", json_boolean(db->mem_known && db->mem_flag));
        if (db->mem_note[0]) json_object_set_new(v, "mem_note", json_string(db->mem_note));
        json_object_set_new(v, "copy_gbps", real_or_null(db->copy_gbps > 0, db->copy_gbps));
        if (pd->is_cpu) json_object_set_new(v, "read_gbps", real_or_null(db->read_gbps > 0, db->read_gbps));
        if (db->bw_note[0]) json_object_set_new(v, "bandwidth_note", json_string(db->bw_note));
        json_array_append_new(devs, v);
    }
    json_object_set_new(o, "devices", devs);

    json_t *r = json_object();
    json_object_set_new(r, "weight_bytes_per_token", json_integer((json_int_t)rf.weight_bytes));
    json_object_set_new(r, "roofline_ms", real_or_null(rf.known, rf.roofline_ms));
    json_object_set_new(r, "roofline_tok_s", real_or_null(rf.known && rf.roofline_ms > 0, 1e3 / rf.roofline_ms));
    json_object_set_new(r, "fraction", real_or_null(rf.known && decode > 0, rf.roofline_ms * decode / 1e3));
    json_object_set_new(o, "roofline", r);
    json_t *load = json_object(), *ls = json_array();
    json_object_set_new(load, "engine_build_s", json_real(b->init_s));
    json_object_set_new(load, "ttft_s", json_real(b->ttft_s));
    for (int k = 0; k < b->n_stages; k++) {
        uint64_t bytes = 0;
        double secs = 0;
        st_engine_load_stats(b->e, k, &bytes, &secs);
        const double gbps = secs > 0 ? (double)bytes / secs / 1e9 : 0;
        json_array_append_new(ls, json_pack("{s:i, s:I, s:f, s:f, s:o, s:o}", "stage", k, "bytes", (json_int_t)bytes,
                                            "seconds", secs, "gbps", gbps, "h2d_gbps",
                                            real_or_null(b->h2d_gbps && b->h2d_gbps[k] > 0, b->h2d_gbps ? b->h2d_gbps[k] : 0),
                                            "h2d_fraction", real_or_null(b->h2d_gbps && b->h2d_gbps[k] > 0,
                                                                         b->h2d_gbps && b->h2d_gbps[k] > 0 ? gbps / b->h2d_gbps[k] : 0)));
    }
    json_object_set_new(load, "stages", ls);
    json_object_set_new(o, "load", load);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (text) puts(text);
    free(text);
    json_decref(o);
}

static void print_table(const struct bench *b, double prefill, double decode) {
    const st_plan *p = b->d->plan;
    const st_deploy *d = b->d;
    char a[32], c[32];
    struct roof rf = roofline(b);
    printf("strata bench: %s (%s, %lld layers, %s), %d stage%s, context %lld\n", d->model->path,
           st_arch_name(d->model->hp.arch), (long long)d->pm.n_layer, d->pm.weights, b->n_stages,
           b->n_stages == 1 ? "" : "s", (long long)st_engine_n_ctx(b->e));
    printf("prompt %lld random tokens (seed %llu), %lld decode tokens, median of %lld run%s\n\n",
           (long long)b->n_prompt, (unsigned long long)b->seed, (long long)b->n_decode, (long long)b->repeat,
           b->repeat == 1 ? "" : "s");
    printf("  prefill  %10.1f tok/s  (%8.2f ms for %lld tokens; plan %.1f tok/s)\n", prefill,
           prefill > 0 ? 1e3 * (double)b->n_prompt / prefill : 0, (long long)b->n_prompt, p->prefill_tok_s);
    printf("  decode   %10.1f tok/s  (%8.3f ms per token; plan %.1f tok/s)\n", decode, decode > 0 ? 1e3 / decode : 0,
           p->decode_tok_s);
    printf("  runs     prefill");
    for (int64_t r = 0; r < b->repeat; r++) printf(" %.1f", b->prefill_tok_s[r]);
    printf(" | decode");
    for (int64_t r = 0; r < b->repeat; r++) printf(" %.1f", b->decode_tok_s[r]);
    printf(" tok/s\n\n");

    printf("decode step, timed (mean of %lld steps; the host waits at each stage boundary): %.3f ms\n",
           (long long)b->n_decode, b->timed_step_ms);
    printf("  %-5s %-24s %-9s %-5s %10s %10s %11s %10s %8s\n", "stage", "device", "layers", "prec", "decode ms",
           "plan ms", "weights", "roof ms", "of roof");
    double ssum = 0;
    for (int k = 0; k < b->n_stages; k++) {
        const struct st_plan_stage *ps = &p->stages[k];
        const struct dev_bench *db = &b->devs[b->devs[ps->device].phys];
        uint64_t w = st_engine_stage_weight_bytes(b->e, k);
        char layers[32];
        snprintf(layers, sizeof layers, "%lld-%lld", (long long)ps->first, (long long)ps->last);
        printf("  %-5d %-24.24s %-9s %-5s %10.3f %10.3f %11s", k, dev_label(p, ps->device), layers,
               st_prec_name(ps->prec), b->stage_decode_ms[k], ps->decode_ms, st_format_bytes(w, a, sizeof a));
        if (db->copy_gbps > 0) {
            double roof = (double)w / (db->copy_gbps * 1e9) * 1e3;
            printf(" %10.3f %7.1f%%\n", roof, b->stage_decode_ms[k] > 0 ? 100.0 * roof / b->stage_decode_ms[k] : 0);
        } else {
            printf(" %10s %8s\n", "n/a", "n/a");
        }
        ssum += b->stage_decode_ms[k];
    }
    double lsum = 0;
    for (int k = 0; k + 1 < b->n_stages; k++) {
        const int ra = st_engine_stage_rank(b->e, k), rb = st_engine_stage_rank(b->e, k + 1);
        char across[40] = "";
        if (ra != rb) snprintf(across, sizeof across, ", rank %d -> %d", ra, rb);
        printf("  link  %d -> %d %-17s %27.3f %10.3f   (prefill %.3f ms%s)\n", k, k + 1,
               st_link_type_name(st_engine_link_type(b->e, k)), b->link_decode_ms[k], p->hops[k].decode_ms,
               b->link_prefill_ms[k], across);
        lsum += b->link_decode_ms[k];
    }
    printf("  stages %.3f ms + links %.3f ms = %.3f ms of the %.3f ms step\n\n", ssum, lsum, ssum + lsum,
           b->timed_step_ms);

    printf("memory per device (in use vs the plan's estimate: stages' total, + the runtime overhead on a GPU)\n");
    for (int i = 0; i < p->n_devices; i++) {
        const struct dev_bench *db = &b->devs[i];
        if (!db->used) continue;
        printf("  %-24.24s ", phys_label(p, i));
        if (!db->mem_known) {
            printf("%s\n", db->mem_note);
            continue;
        }
        double dev = db->estimate_bytes ? 100.0 * ((double)db->in_use_bytes / (double)db->estimate_bytes - 1.0) : 0;
        printf("%11s in use, estimate %11s (%+.1f%%)%s%s\n", st_format_bytes(db->in_use_bytes, a, sizeof a),
               st_format_bytes(db->estimate_bytes, c, sizeof c), dev,
               db->mem_flag ? "  OUTSIDE 5% + 256 MiB" : "  ok",
               mem_tag(&p->devices[i].info));
    }
    printf("\nbandwidth roofline: %s of weights per decode token (all but the token-embedding table)\n",
           st_format_bytes(rf.weight_bytes, a, sizeof a));
    for (int i = 0; i < p->n_devices; i++) {
        const struct dev_bench *db = &b->devs[i];
        if (!db->used) continue;
        if (db->copy_gbps > 0) {
            printf("  %-24.24s copy %.1f GB/s (bytes read + written)", phys_label(p, i), db->copy_gbps);
            if (db->read_gbps > 0) printf(", read %.1f GB/s", db->read_gbps);
            printf("\n");
        } else {
            printf("  %-24.24s %s\n", phys_label(p, i), db->bw_note);
        }
    }
    if (rf.known && rf.roofline_ms > 0)
        printf("  roofline %.3f ms = %.1f tok/s; measured %.1f tok/s = %.1f%% of it\n", rf.roofline_ms,
               1e3 / rf.roofline_ms, decode, 100.0 * rf.roofline_ms * decode / 1e3);
    printf("\nloading (warm page cache): engine built in %.3f s; first token of the %lld-token prompt %.3f s after the start\n",
           b->init_s, (long long)b->n_prompt, b->ttft_s);
    for (int k = 0; k < b->n_stages; k++) {
        uint64_t bytes = 0;
        double secs = 0;
        st_engine_load_stats(b->e, k, &bytes, &secs);
        const double gbps = secs > 0 ? (double)bytes / secs / 1e9 : 0;
        printf("  stage %d %-24.24s %11s in %7.3f s = %6.2f GB/s", k, dev_label(p, p->stages[k].device),
               st_format_bytes(bytes, a, sizeof a), secs, gbps);
        if (b->h2d_gbps && b->h2d_gbps[k] > 0)
            printf("  (host-to-device %.1f GB/s: %.0f%%)", b->h2d_gbps[k], 100.0 * gbps / b->h2d_gbps[k]);
        printf("\n");
    }
    if (!b->tokens_repeatable) printf("\nnote: the greedy tokens differed between runs (non-deterministic kernels?)\n");
}

/* ---- serving throughput (--concurrency) ---------------------------------------------- */

struct conc_result {
    int64_t c;                   /* sequences at once */
    double prefill_s;            /* start to the last sequence's first token */
    double decode_s;             /* from then to the last token */
    double agg_tok_s;            /* tokens decoded after the prefill, all sequences, per second */
    double ttft_mean_ms, ttft_max_ms;
    int64_t steps;               /* engine decode steps */
    bool ok;                     /* every sequence produced its tokens */
};

/* C sequences through the scheduler, as `strata serve` runs them: every
 * prompt prefilled at once, then batched decode steps until each has its tokens. */
static st_status run_concurrency(st_engine *e, int64_t C, int64_t n_prompt, int64_t n_decode, uint64_t seed,
                                 struct conc_result *out) {
    struct st_sched_params sp = {.prefill_budget = C * n_prompt};
    st_sched *sch = NULL;
    st_session **ss = st_calloc((size_t)C, sizeof *ss, "bench sessions");
    int32_t *prompt = st_malloc((size_t)n_prompt * sizeof(int32_t), "bench prompt");
    st_status s = ss && prompt ? st_sched_init(e, NULL, &sp, &sch) : ST_ERR_NOMEM;
    struct st_gen_params gp;
    st_gen_params_default(&gp);
    gp.max_tokens = n_decode;
    gp.ignore_eos = true;
    const int64_t V = st_engine_n_vocab(e);
    *out = (struct conc_result){.c = C, .ok = true};
    double t0 = st_time_s();
    for (int64_t i = 0; !s && i < C; i++) {
        uint64_t rs = seed + (uint64_t)i * 7919;
        for (int64_t k = 0; k < n_prompt; k++) prompt[k] = (int32_t)(next_rand(&rs) % (uint64_t)V);
        if (!(s = st_session_open(sch, &ss[i]))) s = st_session_start(ss[i], prompt, n_prompt, &gp, NULL, NULL);
    }
    while (!s && st_sched_busy(sch)) s = st_sched_step(sch);
    const double t_end = st_time_s();
    double ttft_max = 0, ttft_sum = 0;
    for (int64_t i = 0; !s && i < C; i++) {
        struct st_session_stats st;
        st_session_stats(ss[i], &st);
        ttft_max = ST_MAX(ttft_max, st.ttft_s);
        ttft_sum += st.ttft_s;
        out->ok &= st.finish == ST_FINISH_LENGTH && st.generated_tokens == n_decode;
    }
    if (!s) {
        struct st_sched_stats sst;
        st_sched_stats(sch, &sst);
        out->prefill_s = ttft_max;
        out->decode_s = t_end - t0 - ttft_max;
        out->agg_tok_s = out->decode_s > 0 ? (double)(C * (n_decode - 1)) / out->decode_s : 0;
        out->ttft_mean_ms = 1e3 * ttft_sum / (double)C;
        out->ttft_max_ms = 1e3 * ttft_max;
        out->steps = sst.steps;
    }
    for (int64_t i = 0; ss && i < C; i++) st_session_close(ss[i]);
    st_sched_free(sch);
    free(ss);
    free(prompt);
    return s;
}

static int bench_concurrency(struct st_deploy_options *opt, const int64_t *list, int n_list, int64_t n_prompt,
                             int64_t n_decode, uint64_t seed, bool json) {
    st_deploy *d = NULL;
    st_engine *e = NULL;
    int64_t most = 1;
    for (int i = 0; i < n_list; i++) most = ST_MAX(most, list[i]);
    struct conc_result *res = st_calloc((size_t)n_list, sizeof *res, "bench results");
    st_status s = res ? st_deploy_load(opt, &d) : ST_ERR_NOMEM;
    if (s) goto done;
    d->req.batch = most;   /* the plan sizes the KV cache for the most sequences */
    if (!opt->context && d->req.context < n_prompt + n_decode) d->req.context = n_prompt + n_decode;
    if ((s = st_deploy_plan(d))) goto done;
    if (!st_deploy_runnable(d)) { s = st_deploy_engine(d, &e); if (!s) s = ST_ERR_INTERNAL; goto done; }
    if (n_prompt + n_decode > d->plan->context) {
        s = st_error_set(ST_ERR_USAGE, "bench: %lld prompt + %lld decode tokens do not fit the context of %lld",
                         (long long)n_prompt, (long long)n_decode, (long long)d->plan->context);
        st_error_hint("use --ctx %lld or fewer --prompt-tokens / --decode-tokens", (long long)(n_prompt + n_decode));
        goto done;
    }
    if ((s = st_deploy_engine(d, &e))) goto done;
    struct conc_result warm;
    if ((s = run_concurrency(e, ST_MIN(most, 2), ST_MIN(n_prompt, 16), ST_MIN(n_decode, 4), seed, &warm))) goto done;
    for (int i = 0; i < n_list; i++)
        if ((s = run_concurrency(e, list[i], n_prompt, n_decode, seed, &res[i]))) goto done;
    const st_plan *p = d->plan;
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:i, s:s}", "model", d->model->path, "model_name",
                              d->pm.name, "weights", d->pm.weights, "prompt_tokens", (json_int_t)n_prompt,
                              "decode_tokens", (json_int_t)n_decode, "sequence_slots", (json_int_t)st_engine_n_seq(e),
                              "micro_batches", st_engine_n_micro(e), "objective", st_plan_objective_name(p->objective));
        json_object_set_new(o, "commit", json_string(st_build_commit()));
        json_object_set_new(o, "stages", json_integer(p->n_stages));
        json_t *arr = json_array();
        for (int i = 0; i < n_list; i++) {
            const struct conc_result *r = &res[i];
            json_array_append_new(arr, json_pack("{s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:b}", "concurrency",
                                                 (json_int_t)r->c, "prefill_s", r->prefill_s, "prefill_tok_s",
                                                 r->prefill_s > 0 ? (double)(r->c * n_prompt) / r->prefill_s : 0.0,
                                                 "decode_s", r->decode_s, "aggregate_decode_tok_s", r->agg_tok_s,
                                                 "per_sequence_tok_s", r->agg_tok_s / (double)r->c, "ttft_mean_ms",
                                                 r->ttft_mean_ms, "ttft_max_ms", r->ttft_max_ms, "decode_steps",
                                                 (json_int_t)r->steps, "tokens_ok", r->ok));
        }
        json_object_set_new(o, "runs", arr);
        char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
        if (text) puts(text);
        free(text);
        json_decref(o);
    } else {
        printf("strata bench --concurrency: %s (%s), %d stage%s, %lld sequence slots, %d micro-batch%s, %s objective\n"
               "each sequence: %lld random prompt tokens, then %lld greedy tokens; all prompts prefilled first\n\n",
               d->model->path, d->pm.weights, p->n_stages, p->n_stages == 1 ? "" : "s", (long long)st_engine_n_seq(e),
               st_engine_n_micro(e), st_engine_n_micro(e) == 1 ? "" : "es", st_plan_objective_name(p->objective),
               (long long)n_prompt, (long long)n_decode);
        printf("  %6s %12s %14s %14s %14s %12s %12s %8s\n", "seqs", "prefill s", "prefill tok/s", "decode tok/s",
               "per seq tok/s", "TTFT mean", "TTFT max", "steps");
        for (int i = 0; i < n_list; i++) {
            const struct conc_result *r = &res[i];
            printf("  %6lld %12.3f %14.1f %14.1f %14.2f %10.1fms %10.1fms %8lld%s\n", (long long)r->c, r->prefill_s,
                   r->prefill_s > 0 ? (double)(r->c * n_prompt) / r->prefill_s : 0.0, r->agg_tok_s,
                   r->agg_tok_s / (double)r->c, r->ttft_mean_ms, r->ttft_max_ms, (long long)r->steps,
                   r->ok ? "" : "  SHORT");
        }
        if (n_list > 1 && res[0].c == 1 && res[0].agg_tok_s > 0) {
            printf("\n");
            for (int i = 1; i < n_list; i++)
                printf("  %lld sequences: %.2fx the single-sequence aggregate\n", (long long)res[i].c,
                       res[i].agg_tok_s / res[0].agg_tok_s);
        }
    }
    for (int i = 0; i < n_list && !s; i++) {
        if (!res[i].ok) {
            s = st_error_set(ST_ERR_DEVICE, "bench: a sequence at concurrency %lld ended short of its %lld tokens",
                             (long long)res[i].c, (long long)n_decode);
            st_error_hint("run the same deployment with 'strata generate' to see the error");
        }
    }
done:
    st_engine_free(e);
    st_deploy_free(d);
    free(res);
    return s ? st_cli_report(s) : 0;
}

/* ---- the command ------------------------------------------------------------------ */

int st_cmd_bench(int argc, char **argv) {
    struct st_deploy_options opt = {.progress = true};
    struct bench b = {0};
    b.n_prompt = 512;
    b.n_decode = 128;
    b.repeat = 3;
    b.seed = 1;
    int64_t conc[32];
    int n_conc = 0;
    char bundled[4096];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t v = 0;
        int rc, g = st_cli_global(a);
        if (g == ST_CLI_GLOBAL_VERSION) { st_cli_print_version(); return 0; }
        if (g) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!val) return st_cli_usage_error("bench", "%s needs a model path", a);
            opt.model_path = argv[++i];
        } else if (!strcmp(a, "-c") || !strcmp(a, "--config")) {
            if (!val) return st_cli_usage_error("bench", "%s needs a file name", a);
            opt.config_path = argv[++i];
        } else if (!strcmp(a, "--cpu")) {
            opt.cpu_only = true;
        } else if (!strcmp(a, "--probe")) {
            opt.probe_network = true;
        } else if (!strcmp(a, "--concurrency")) {
            if (!val) return st_cli_usage_error("bench", "--concurrency needs a list of counts, e.g. 1,4,16,64");
            const char *p = argv[++i];
            n_conc = 0;
            while (*p) {
                char item[32];
                size_t l = strcspn(p, ",");
                snprintf(item, sizeof item, "%.*s", (int)ST_MIN(l, sizeof item - 1), p);
                if (n_conc == (int)ST_ARRAY_LEN(conc) || !st_cli_parse_i64(item, 1, 4096, &conc[n_conc]))
                    return st_cli_usage_error("bench", "--concurrency wants up to %zu counts from 1 to 4096 separated "
                                              "by commas, got '%s'", ST_ARRAY_LEN(conc), argv[i]);
                n_conc++;
                p += l + (p[l] == ',');
            }
        } else if (!strcmp(a, "--profile")) {
            if (!val) return st_cli_usage_error("bench", "--profile needs a file name");
            opt.profile_path = argv[++i];
        } else if (!strcmp(a, "--prompt-tokens") || !strcmp(a, "--ctx")) {
            if ((rc = st_cli_int("bench", a, val, 1, ST_CONFIG_MAX_CONTEXT, "a token count", NULL, &v)) >= 0) return rc;
            i++;
            if (!strcmp(a, "--ctx")) opt.context = v;
            else b.n_prompt = v;
        } else if (!strcmp(a, "--decode-tokens")) {
            if ((rc = st_cli_int("bench", a, val, 0, ST_CONFIG_MAX_CONTEXT, "a token count", NULL, &v)) >= 0) return rc;
            i++;
            b.n_decode = v;
        } else if (!strcmp(a, "--repeat")) {
            if ((rc = st_cli_int("bench", a, val, 1, 64, "a count", NULL, &v)) >= 0) return rc;
            i++;
            b.repeat = v;
        } else if (!strcmp(a, "--threads")) {
            if ((rc = st_cli_int("bench", a, val, 0, ST_CONFIG_MAX_THREADS, "a thread count", "0 = all cores", &v)) >= 0)
                return rc;
            i++;
            opt.threads = (int)v;
        } else if (!strcmp(a, "--seed")) {
            if ((rc = st_cli_int("bench", a, val, 0, INT64_MAX, "a seed", NULL, &v)) >= 0) return rc;
            i++;
            b.seed = (uint64_t)v;
        } else if (!strcmp(a, "--bw-bytes")) {
            if (!val || st_parse_size(val, &b.bw_bytes) != ST_OK || b.bw_bytes < 4096)
                return st_cli_usage_error("bench", "--bw-bytes wants a size of at least 4 KiB (e.g. 256MiB)%s%s%s",
                                          val ? ", got '" : "", val ? val : "", val ? "'" : "");
            i++;
        } else {
            static const char *const known[] = {"--model", "--config", "--cpu", "--json", "--profile", "--concurrency",
                                                "--prompt-tokens", "--decode-tokens", "--repeat", "--ctx",
                                                "--threads", "--seed", "--bw-bytes", "--probe", "--help"};
            const char *near = a[0] == '-' ? st_nearest_word(a, known, ST_ARRAY_LEN(known)) : NULL;
            if (near) return st_cli_usage_error("bench", "unknown option '%s' (did you mean '%s'?)", a, near);
            return st_cli_usage_error("bench", "unknown option '%s'", a);
        }
    }
    bool json = st_cli_json();
    st_status ms = ST_OK;
    if (opt.model_path) ms = st_cli_model_exists(NULL, opt.model_path);
    else if (!opt.config_path && !(ms = st_cli_bundled_model(bundled, sizeof bundled))) opt.model_path = bundled;
    if (ms) return st_cli_report(ms);
    if (st_mpi_rank() > 0) return st_deploy_follow(&opt);   /* under mpirun: rank 0 benches, the others follow */
    if (n_conc) return bench_concurrency(&opt, conc, n_conc, b.n_prompt, b.n_decode, b.seed, json);

    /* planned for this run: the prefill estimate over the prompt's length (its chunks, attention over
     * its keys), decode costed at the mean KV length of the timed steps */
    st_status s = st_deploy_load(&opt, &b.d);
    if (s == ST_OK) {
        b.d->req.prompt_tokens = b.n_prompt;
        b.d->req.decode_at = b.n_prompt + b.n_decode / 2;
        s = st_deploy_plan(b.d);
    }
    if (s != ST_OK) {
        if (b.d && b.d->plan && !b.d->plan->feasible) {   /* the shortfall is printed once, with the plan */
            st_plan_print(stderr, b.d->plan, false);
            st_error_set(s, "%s: %s does not fit these devices; the plan above says by how much and what would fit",
                         b.d->cfg->source, b.d->plan->model.name);
        }
        goto done;
    }
    if (!st_deploy_runnable(b.d)) {
        s = st_deploy_engine(b.d, &b.e);   /* says why (catalog device, preset) */
        if (s == ST_OK) s = st_error_set(ST_ERR_INTERNAL, "bench: deployment not runnable");
        goto done;
    }
    const st_plan *p = b.d->plan;
    if (b.n_prompt + b.n_decode > p->context) {
        s = st_error_set(ST_ERR_USAGE, "bench: %lld prompt + %lld decode tokens do not fit the context of %lld",
                         (long long)b.n_prompt, (long long)b.n_decode, (long long)p->context);
        st_error_hint("use --ctx %lld or fewer --prompt-tokens / --decode-tokens", (long long)(b.n_prompt + b.n_decode));
        goto done;
    }
    b.devs = st_calloc((size_t)p->n_devices, sizeof *b.devs, "bench devices");
    if (!b.devs) { s = ST_ERR_NOMEM; goto done; }
    for (int i = 0; i < p->n_devices; i++) {
        const struct st_device_info *x = &p->devices[i].info;
        b.devs[i].phys = i;
        for (int j = 0; j < i; j++) {
            const struct st_device_info *y = &p->devices[j].info;
            if (x->kind == y->kind && x->index == y->index && p->devices[i].rank == p->devices[j].rank) {
                b.devs[i].phys = b.devs[j].phys;
                break;
            }
        }
    }
    for (int k = 0; k < p->n_stages; k++) {
        struct dev_bench *db = &b.devs[b.devs[p->stages[k].device].phys];
        /* a GPU's reading includes what the runtime adds on it; the CPU's is the process's growth,
         * its baseline (the runtime itself) is not in it */
        if (!db->used && !p->devices[p->stages[k].device].is_cpu) db->estimate_bytes = p->stages[k].mem.overhead;
        db->used = true;
        db->estimate_bytes += p->stages[k].mem.total;
    }

    read_mem(&b, false);
    const double t_init = st_time_s();
    if ((s = st_deploy_engine(b.d, &b.e)) != ST_OK) goto done;
    b.init_s = st_time_s() - t_init;
    b.n_stages = st_engine_n_stages(b.e);
    b.n_vocab = st_engine_n_vocab(b.e);
    const size_t S = (size_t)b.n_stages;
    b.prompt = st_malloc((size_t)b.n_prompt * sizeof(int32_t), "bench prompt");
    b.gen = st_calloc((size_t)b.n_decode + 1, sizeof(int32_t), "bench tokens");
    b.gen_first = st_calloc((size_t)b.n_decode + 1, sizeof(int32_t), "bench tokens");
    b.prefill_tok_s = st_calloc((size_t)b.repeat, sizeof(double), "bench runs");
    b.decode_tok_s = st_calloc((size_t)b.repeat, sizeof(double), "bench runs");
    b.stage_decode_ms = st_calloc(S, sizeof(double), "bench stage times");
    b.link_decode_ms = st_calloc(S, sizeof(double), "bench link times");
    b.stage_prefill_ms = st_calloc(S, sizeof(double), "bench stage times");
    b.link_prefill_ms = st_calloc(S, sizeof(double), "bench link times");
    b.tmp_stage = st_calloc(S, sizeof(double), "bench stage times");
    b.tmp_link = st_calloc(S, sizeof(double), "bench link times");
    if (!b.prompt || !b.gen || !b.gen_first || !b.prefill_tok_s || !b.decode_tok_s || !b.stage_decode_ms ||
        !b.link_decode_ms || !b.stage_prefill_ms || !b.link_prefill_ms || !b.tmp_stage || !b.tmp_link) {
        s = ST_ERR_NOMEM;
        goto done;
    }
    uint64_t rs = b.seed;
    for (int64_t i = 0; i < b.n_prompt; i++) b.prompt[i] = (int32_t)(next_rand(&rs) % (uint64_t)b.n_vocab);
    b.tokens_valid = true;
    b.tokens_repeatable = true;

    /* warm-up: the same shapes once (lazy allocations, caches, clocks) */
    double ps, ds;
    if ((s = run_once(&b, &ps, &ds)) != ST_OK) goto done;
    b.ttft_s = b.init_s + ps;
    read_mem(&b, true);
    if (!(b.h2d_gbps = st_calloc(S, sizeof(double), "bench h2d"))) { s = ST_ERR_NOMEM; goto done; }
    for (int k = 0; k < b.n_stages; k++) {
        const struct st_device_info *info = &p->devices[p->stages[k].device].info;
        const struct st_backend_reg *be = st_backend_reg_find(info->kind);
        if (be && be->h2d_bandwidth && be->h2d_bandwidth(info, &b.h2d_gbps[k]) != ST_OK)
            ST_WARN("bench: host-to-device bandwidth of %s not measured: %s", p->devices[p->stages[k].device].select,
                    st_last_error());
    }
    measure_bandwidth(&b, opt.threads);

    for (int64_t r = 0; r < b.repeat; r++) {
        if ((s = run_once(&b, &ps, &ds)) != ST_OK) goto done;
        b.prefill_tok_s[r] = (double)b.n_prompt / ps;
        b.decode_tok_s[r] = b.n_decode > 0 ? (double)b.n_decode / ds : 0;
        check_tokens(&b, b.n_decode + 1);
        if (r == 0) memcpy(b.gen_first, b.gen, ((size_t)b.n_decode + 1) * sizeof(int32_t));
        else if (memcmp(b.gen_first, b.gen, ((size_t)b.n_decode + 1) * sizeof(int32_t)) != 0) b.tokens_repeatable = false;
    }
    if ((s = run_timed(&b)) != ST_OK) goto done;

    double prefill = median(b.prefill_tok_s, (int)b.repeat), decode = median(b.decode_tok_s, (int)b.repeat);
    if (json) print_json(&b, prefill, decode);
    else print_table(&b, prefill, decode);
    if (!b.tokens_valid) {
        s = st_error_set(ST_ERR_DEVICE, "bench: generated token %lld is %d, outside the vocabulary [0, %lld)",
                         (long long)b.bad_token_at, b.bad_token, (long long)b.n_vocab);
        st_error_hint("the decode path produced garbage: check the device's kernels against the CPU backend "
                      "(tests/gpu) and the stage precision");
    }
done:
    bench_free(&b);
    return s ? st_cli_report(s) : 0;
}
