/* strata bench --json on the CPU: the JSON parses, every figure is present and
 * positive, per-stage (+ per-link) times add up to the timed step within a
 * loose bound, the weight bytes per token equal the model's tensor bytes
 * counted independently, the generated tokens equal a greedy run of the
 * engine on the same documented prompt (splitmix64 of the seed, id = r mod
 * n_vocab), and the "plan" figures are the planner's for this run (its
 * prompt length, decode costed at the mean KV length of the timed steps),
 * not for a default request. No timing assertions beyond "positive" and
 * "adds up". */
#include "check.h"
#include "orchestrator/cli.h"
#include "orchestrator/deploy.h"
#include "orchestrator/engine.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs `strata bench ARGS --json` with stdout captured; returns the parsed JSON or NULL. */
static json_t *run_bench(char **argv, int argc, int *rc) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/strata-bench-%d.json", (int)getpid());
    fflush(stdout);
    int saved = dup(1);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    dup2(fileno(f), 1);
    *rc = st_cmd_bench(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    fclose(f);
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    if (!j) fprintf(stderr, "bench JSON: %s at line %d\n", err.text, err.line);
    unlink(path);
    return j;
}

static double num(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    CHECK_MSG(v && json_is_number(v), "key '%s' missing or not a number", key);
    return v ? json_number_value(v) : NAN;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* bytes a decode step reads: every tensor but the embedding table, plus one
 * embedding row; the table itself when the lm_head is tied to it */
static uint64_t expected_weight_bytes(const st_model *m) {
    const struct st_tensor *emb = st_model_global_tensor(m, ST_T_TOK_EMBD);
    const struct st_tensor *out = st_model_global_tensor(m, ST_T_OUTPUT);
    uint64_t sum = 0;
    for (int64_t i = 0; i < m->n_tensors; i++) {
        const struct st_tensor *t = &m->tensors[i];
        if (t == emb || !strcmp(t->name, "rope_freqs.weight")) continue;
        sum += t->bytes;
    }
    sum += st_dtype_row_bytes(emb->dtype, emb->ne[0]);
    if (!out || out == emb) sum += emb->bytes;   /* tied: the lm_head streams the table */
    return sum;
}

/* The same deployment as the bench run (-m MODEL --cpu --threads 2) planned with the given prompt
 * length and KV length (0: the request's defaults); predictions into dec, pre. */
static void plan_for(const char *model, int64_t n_prompt, int64_t decode_at, double *dec, double *pre) {
    struct st_deploy_options o = {.model_path = model, .cpu_only = true, .threads = 2};
    st_deploy *d = NULL;
    *dec = *pre = NAN;
    CHECK_OK(st_deploy_load(&o, &d));
    if (!d) return;
    d->req.prompt_tokens = n_prompt;
    d->req.decode_at = decode_at;
    CHECK_OK(st_deploy_plan(d));
    if (d->plan) {
        *dec = d->plan->decode_tok_s;
        *pre = d->plan->prefill_tok_s;
    }
    st_deploy_free(d);
}

static void check_model(const char *model, int64_t n_prompt, int64_t n_decode, uint64_t seed) {
    char np[16], nd[16], sd[16];
    snprintf(np, sizeof np, "%lld", (long long)n_prompt);
    snprintf(nd, sizeof nd, "%lld", (long long)n_decode);
    snprintf(sd, sizeof sd, "%llu", (unsigned long long)seed);
    char *argv[] = {"bench", "-m", (char *)model, "--cpu", "--prompt-tokens", np, "--decode-tokens", nd,
                    "--repeat", "2", "--seed", sd, "--bw-bytes", "16MiB", "--threads", "2", "--json", NULL};
    int rc = -1;
    json_t *j = run_bench(argv, 17, &rc);
    CHECK_MSG(rc == 0, "%s: bench exit %d", model, rc);
    CHECK(j != NULL);
    if (!j) return;
    CHECK(num(j, "prefill_tok_s") > 0);
    CHECK(num(j, "decode_tok_s") > 0);
    CHECK(num(j, "decode_ms_per_token") > 0);
    CHECK(num(j, "prompt_tokens") == (double)n_prompt);
    CHECK(json_array_size(json_object_get(j, "prefill_tok_s_runs")) == 2);
    CHECK(json_is_true(json_object_get(j, "tokens_valid")));
    CHECK(json_is_true(json_object_get(j, "tokens_repeatable")));
    json_t *plan = json_object_get(j, "plan");
    CHECK(plan && num(plan, "decode_tok_s") > 0);
    if (plan) {
        /* planned for this run: the prompt's prefill, decode at prompt + decode tokens / 2 of KV (the JSON
         * carries 6 significant digits) */
        double dec, pre, dec0, pre0;
        plan_for(model, n_prompt, n_prompt + n_decode / 2, &dec, &pre);
        plan_for(model, 0, 0, &dec0, &pre0);
        CHECK_MSG(fabs(num(plan, "decode_tok_s") - dec) <= 1e-5 * dec &&
                      fabs(num(plan, "prefill_tok_s") - pre) <= 1e-5 * pre,
                  "%s: bench's plan %.17g / %.17g tok/s, the plan for %lld prompt tokens and %lld of KV %.17g / %.17g",
                  model, num(plan, "decode_tok_s"), num(plan, "prefill_tok_s"), (long long)n_prompt,
                  (long long)(n_prompt + n_decode / 2), dec, pre);
        /* the run's request is not the default one (else the check above could not tell them apart) */
        CHECK_MSG(fabs(pre - pre0) > 1e-3 * pre && fabs(dec - dec0) > 1e-3 * dec,
                  "%s: the default request plans the same figures", model);
    }

    json_t *stages = json_object_get(j, "stages");
    CHECK(json_array_size(stages) == 1);
    double ssum = 0;
    for (size_t k = 0; k < json_array_size(stages); k++) {
        json_t *s = json_array_get(stages, k);
        CHECK(num(s, "decode_ms") > 0);
        CHECK(num(s, "prefill_ms") > 0);
        CHECK(num(s, "weight_bytes") > 0);
        CHECK(num(s, "copy_gbps") > 0);
        CHECK(num(s, "roofline_ms") > 0);
        CHECK(num(s, "roofline_fraction") > 0);
        ssum += num(s, "decode_ms");
    }
    json_t *step = json_object_get(j, "decode_step");
    double step_ms = num(step, "timed_step_ms");
    CHECK(step_ms > 0);
    CHECK_MSG(fabs(num(step, "stages_ms") - ssum) < 1e-9 * (1 + ssum), "stages_ms is not the sum of the stages");
    /* the stages cover the step but the host's own work (position upload, id download) */
    CHECK_MSG(ssum <= step_ms * 1.05 + 0.05 && ssum >= 0.5 * step_ms, "%s: stages %.4f ms vs step %.4f ms", model,
              ssum, step_ms);

    json_t *devs = json_object_get(j, "devices");
    CHECK(json_array_size(devs) == 1);
    json_t *d0 = json_array_get(devs, 0);
    CHECK(!strcmp(json_string_value(json_object_get(d0, "kind")), "cpu"));
    CHECK(num(d0, "mem_in_use_bytes") > 0);
    CHECK(num(d0, "mem_estimate_bytes") > 0);
    CHECK(json_is_boolean(json_object_get(d0, "mem_flag")));
    CHECK(num(d0, "copy_gbps") > 0 && num(d0, "read_gbps") > 0);

    json_t *roof = json_object_get(j, "roofline");
    CHECK(num(roof, "roofline_ms") > 0 && num(roof, "roofline_tok_s") > 0 && num(roof, "fraction") > 0);

    /* independent: tensor bytes, and the greedy tokens of the engine on the same prompt */
    st_model *m = NULL;
    CHECK_OK(st_model_open(model, &m));
    if (m) {
        CHECK_MSG(num(roof, "weight_bytes_per_token") == (double)expected_weight_bytes(m),
                  "%s: weight bytes %.0f, want %llu", model, num(roof, "weight_bytes_per_token"),
                  (unsigned long long)expected_weight_bytes(m));
        /* the CPU's memory in use is what the engine added to the process (every weight a decode
         * reads is resident), set against the stages' total alone: the process's own baseline is in
         * neither, so a small model is not flagged for the 256 MiB the plan reserves for it */
        CHECK_MSG(num(d0, "mem_in_use_bytes") >= (double)expected_weight_bytes(m), "%s: %.0f bytes in use, weights %llu",
                  model, num(d0, "mem_in_use_bytes"), (unsigned long long)expected_weight_bytes(m));
        CHECK_MSG(num(d0, "mem_estimate_bytes") < (double)expected_weight_bytes(m) + (256 << 20),
                  "%s: estimate %.0f bytes", model, num(d0, "mem_estimate_bytes"));
        CHECK_MSG(json_is_false(json_object_get(d0, "mem_flag")), "%s: memory flagged", model);
        int32_t *prompt = malloc((size_t)n_prompt * sizeof(int32_t));
        uint64_t st = seed;
        for (int64_t i = 0; i < n_prompt; i++) prompt[i] = (int32_t)(splitmix(&st) % (uint64_t)m->hp.n_vocab);
        struct st_engine_params ep = {.n_ctx = n_prompt + n_decode, .max_batch_tokens = 512};
        struct st_backend_config cfg = {.kv_dtype = ST_DTYPE_F32, .n_threads = 1};
        st_engine *e = NULL;
        CHECK_OK(st_engine_init_single(m, st_device_ops_cpu(), NULL, &cfg, &ep, &e));
        json_t *gen = json_object_get(j, "generated");
        CHECK(json_array_size(gen) == (size_t)n_decode + 1);
        int32_t id = -1;
        if (e && st_engine_prefill_greedy(e, prompt, n_prompt, &id) == ST_OK) {
            for (int64_t i = 0; i <= n_decode; i++) {
                CHECK_MSG(json_integer_value(json_array_get(gen, i)) == id, "%s: token %lld: bench %lld, engine %d",
                          model, (long long)i, (long long)json_integer_value(json_array_get(gen, i)), id);
                if (i < n_decode) CHECK_OK(st_engine_decode_greedy(e, id, &id));
            }
        }
        st_engine_free(e);
        free(prompt);
        st_model_free(m);
    }
    json_decref(j);
}

static void check_two_stages(void) {
    char *argv[] = {"bench", "-c", "tests/bench/two-cpu-stages.yaml", "--prompt-tokens", "40", "--decode-tokens",
                    "12", "--repeat", "1", "--bw-bytes", "16MiB", "--json", NULL};
    int rc = -1;
    json_t *j = run_bench(argv, 12, &rc);
    CHECK(rc == 0);
    CHECK(j != NULL);
    if (!j) return;
    json_t *stages = json_object_get(j, "stages"), *links = json_object_get(j, "links");
    CHECK(json_array_size(stages) == 2);
    CHECK(json_array_size(links) == 1);
    double ssum = 0;
    for (size_t k = 0; k < json_array_size(stages); k++) {
        CHECK(num(json_array_get(stages, k), "decode_ms") > 0);
        ssum += num(json_array_get(stages, k), "decode_ms");
    }
    json_t *l = json_array_get(links, 0);
    CHECK(num(l, "decode_ms") >= 0 && num(l, "prefill_ms") >= 0);
    CHECK(json_string_value(json_object_get(l, "type")) != NULL);
    json_t *step = json_object_get(j, "decode_step");
    double total = ssum + num(l, "decode_ms"), step_ms = num(step, "timed_step_ms");
    CHECK_MSG(total <= step_ms * 1.05 + 0.05 && total >= 0.5 * step_ms, "stages + link %.4f ms vs step %.4f ms",
              total, step_ms);
    /* both stages are on the one CPU: one memory row, one bandwidth */
    CHECK(json_array_size(json_object_get(j, "devices")) == 1);
    CHECK(num(json_array_get(stages, 0), "copy_gbps") == num(json_array_get(stages, 1), "copy_gbps"));
    json_decref(j);
}

int main(void) {
    check_model("tests/fixtures/models/qwen2-tiny/hf", 48, 16, 7);
    check_model("tests/fixtures/models/llama-tiny/llama-tiny-f16.gguf", 33, 9, 1);
    check_model("tests/fixtures/models/qwen3-tiny/qwen3-tiny-f32.gguf", 64, 20, 3);
    check_model("models/tiny-kjv", 96, 24, 1);
    check_two_stages();
    return st_test_finish("bench_cli");
}
