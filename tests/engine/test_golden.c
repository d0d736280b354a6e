/* Golden test of the CPU engine against Hugging Face transformers (fp32,
 * eager; tests/fixtures/models/<name>/reference.json, tools/fixtures/):
 * for every fixture model and every format (HF safetensors F32, GGUF F32,
 * GGUF F16) the logits at every prompt position and the 16 greedy tokens.
 *
 * Error measure, per position p: max_v |ours[p][v] - ref[p][v]| / max_v |ref[p][v]|
 * (the worst logit error relative to the row's largest logit). Limits: 1e-4
 * for F32 weights, 2e-3 for F16 weights. The greedy tokens must be identical. */
#include "check.h"
#include "devices/device.h"
#include "model/model.h"
#include "orchestrator/engine.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ref {
    int32_t tokens[64]; int n_tok;
    float *logits; int64_t n_vocab;       /* (n_tok, n_vocab) */
    int32_t greedy[64]; int n_greedy;
};

static bool load_ref(const char *path, struct ref *r) {
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) { fprintf(stderr, "%s:%d:%d: %s\n", path, err.line, err.column, err.text); return false; }
    json_t *tok = json_object_get(root, "tokens"), *lg = json_object_get(root, "logits"),
           *gr = json_object_get(root, "greedy_tokens");
    r->n_tok = (int)json_array_size(tok);
    r->n_greedy = (int)json_array_size(gr);
    r->n_vocab = (int64_t)json_array_size(json_array_get(lg, 0));
    for (int i = 0; i < r->n_tok; i++) r->tokens[i] = (int32_t)json_integer_value(json_array_get(tok, i));
    for (int i = 0; i < r->n_greedy; i++) r->greedy[i] = (int32_t)json_integer_value(json_array_get(gr, i));
    r->logits = malloc(sizeof(float) * (size_t)(r->n_tok * r->n_vocab));
    for (int p = 0; p < r->n_tok; p++)
        for (int64_t v = 0; v < r->n_vocab; v++)
            r->logits[p * r->n_vocab + v] = (float)json_real_value(json_array_get(json_array_get(lg, p), (size_t)v));
    json_decref(root);
    return r->n_tok > 0 && r->n_vocab > 0 && r->n_greedy > 0;
}

static double row_error(const float *a, const float *ref, int64_t n) {
    double md = 0, mr = 0;
    for (int64_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - ref[i]));
        mr = fmax(mr, fabs((double)ref[i]));
    }
    return md / mr;
}

static void check_model(const char *name, const char *file, double limit) {
    char dir[256], path[320], refp[320];
    snprintf(dir, sizeof dir, "tests/fixtures/models/%s", name);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    snprintf(refp, sizeof refp, "%s/reference.json", dir);
    struct ref r;
    if (!load_ref(refp, &r)) { CHECK_MSG(0, "cannot read %s", refp); return; }
    st_model *m = NULL;
    CHECK_OK(st_model_open(path, &m));
    if (!m) { free(r.logits); return; }
    CHECK(m->hp.n_vocab == r.n_vocab);

    struct st_backend_config cfg = {.kv_dtype = ST_DTYPE_F32, .n_threads = 2};
    struct st_engine_params prm = {.n_ctx = 64, .max_batch_tokens = 32};
    st_engine *e = NULL;
    CHECK_OK(st_engine_init_single(m, st_device_ops_cpu(), NULL, &cfg, &prm, &e));
    if (!e) { st_model_free(m); free(r.logits); return; }

    float *lg = malloc(sizeof(float) * (size_t)(r.n_tok * r.n_vocab));
    CHECK_OK(st_engine_prefill(e, r.tokens, r.n_tok, lg, true));
    double worst = 0;
    int worst_p = 0;
    for (int p = 0; p < r.n_tok; p++) {
        double er = row_error(lg + p * r.n_vocab, r.logits + p * r.n_vocab, r.n_vocab);
        if (er > worst) { worst = er; worst_p = p; }
    }
    printf("%-11s %-22s max rel logit error %.3g (position %d), limit %.0e\n", name, file, worst, worst_p, limit);
    CHECK_MSG(worst <= limit, "%s/%s: logits error %.3g > %.0e", name, file, worst, limit);

    /* greedy: prefill + argmax on the device, then decode steps */
    st_engine_reset(e);
    int32_t out[64], next = -1;
    CHECK_OK(st_engine_prefill_greedy(e, r.tokens, r.n_tok, &next));
    out[0] = next;
    for (int i = 1; i < r.n_greedy; i++) {
        CHECK_OK(st_engine_decode_greedy(e, next, &next));
        out[i] = next;
    }
    bool same = !memcmp(out, r.greedy, sizeof(int32_t) * (size_t)r.n_greedy);
    CHECK_MSG(same, "%s/%s: greedy tokens differ from transformers", name, file);
    if (!same) {
        fprintf(stderr, "  ours:");
        for (int i = 0; i < r.n_greedy; i++) fprintf(stderr, " %d", out[i]);
        fprintf(stderr, "\n  ref: ");
        for (int i = 0; i < r.n_greedy; i++) fprintf(stderr, " %d", r.greedy[i]);
        fprintf(stderr, "\n");
    }
    CHECK(st_engine_n_past(e) == r.n_tok + r.n_greedy - 1);
    st_engine_free(e);
    st_model_free(m);
    free(lg);
    free(r.logits);
}

int main(void) {
    const char *models[3] = {"qwen2-tiny", "qwen3-tiny", "llama-tiny"};
    for (int i = 0; i < 3; i++) {
        char f32[64], f16[64];
        snprintf(f32, sizeof f32, "%s-f32.gguf", models[i]);
        snprintf(f16, sizeof f16, "%s-f16.gguf", models[i]);
        check_model(models[i], "hf", 1e-4);
        check_model(models[i], f32, 1e-4);
        check_model(models[i], f16, 2e-3);
    }
    return st_test_finish("engine_golden");
}
