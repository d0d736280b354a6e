/* The CPU engine on quantized GGUF files (tests/fixtures/quant/, made by
 * tools/fixtures/make_cpu_quant_fixtures.py: every 32-block type on qwen3-tiny,
 * Q8_0 on qwen2-tiny, Q4_0 on llama-tiny, a Q4_K_M-like mix (Q4_K, Q6_K,
 * Q8_0), all-Q5_K and F32 + Q4_K/Q6_K layers on a model wide enough for the
 * K types) against an
 * independent float64 numpy forward pass over the weights as gguf-py
 * dequantizes them:
 *  - the 16 greedy ids are identical (the reference prompt keeps every
 *    top-1/top-2 gap >= 0.075, far above the activation-rounding error);
 *  - the last prompt position's logits are within 5% of the row's largest
 *    logit: the 8-bit activations of kernels_cpu.h give 1.2-2.4% on these
 *    small random models, whose dot products of 64-256 random-sign terms
 *    amplify a relative error (a wrong scale or code gives > 10%);
 *  - on every SIMD level; the AVX2 and AVX-512 levels give the same logits
 *    bit for bit (the portable level differs in the last bits: attention.c
 *    has its own scalar order). */
#include "check.h"
#include "devices/device.h"
#include "kernels/cpu/kernels_cpu.h"
#include "model/model.h"
#include "orchestrator/engine.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DIR "tests/fixtures/quant"
#define LOGIT_LIMIT 5e-2

struct ref {
    int32_t tokens[16], greedy[16];
    int n_tok, n_greedy;
    float *logits;   /* (n_vocab) at the last prompt position */
    int64_t n_vocab;
    double min_gap;
};

static bool load_ref(json_t *root, const char *file, struct ref *r) {
    json_t *o = json_object_get(root, file);
    if (!o) return false;
    json_t *tok = json_object_get(o, "tokens"), *gr = json_object_get(o, "greedy"), *lg = json_object_get(o, "logits_last");
    r->n_tok = (int)ST_MIN(json_array_size(tok), 16);
    r->n_greedy = (int)ST_MIN(json_array_size(gr), 16);
    r->n_vocab = (int64_t)json_array_size(lg);
    r->min_gap = json_real_value(json_object_get(o, "min_gap"));
    for (int i = 0; i < r->n_tok; i++) r->tokens[i] = (int32_t)json_integer_value(json_array_get(tok, i));
    for (int i = 0; i < r->n_greedy; i++) r->greedy[i] = (int32_t)json_integer_value(json_array_get(gr, i));
    r->logits = malloc(sizeof(float) * (size_t)r->n_vocab);
    for (int64_t v = 0; v < r->n_vocab; v++) r->logits[v] = (float)json_real_value(json_array_get(lg, (size_t)v));
    return r->n_tok > 0 && r->n_greedy > 0 && r->n_vocab > 0;
}

/* Prefill logits of the last prompt position and the greedy ids on one SIMD level. */
static void run(st_model *m, const struct ref *r, float *logits, int32_t *ids) {
    struct st_backend_config cfg = {.kv_dtype = ST_DTYPE_F32, .n_threads = 2};
    struct st_engine_params prm = {.n_ctx = 64, .max_batch_tokens = 32};
    st_engine *e = NULL;
    CHECK_OK(st_engine_init_single(m, st_device_ops_cpu(), NULL, &cfg, &prm, &e));
    if (!e) return;
    float *all = malloc(sizeof(float) * (size_t)(r->n_tok * r->n_vocab));
    CHECK_OK(st_engine_prefill(e, r->tokens, r->n_tok, all, true));
    memcpy(logits, all + (r->n_tok - 1) * r->n_vocab, sizeof(float) * (size_t)r->n_vocab);
    free(all);
    st_engine_reset(e);
    int32_t next = -1;
    CHECK_OK(st_engine_prefill_greedy(e, r->tokens, r->n_tok, &next));
    ids[0] = next;
    for (int i = 1; i < r->n_greedy; i++) {
        CHECK_OK(st_engine_decode_greedy(e, next, &next));
        ids[i] = next;
    }
    st_engine_free(e);
}

static void check_file(json_t *root, const char *file) {
    struct ref r;
    if (!load_ref(root, file, &r)) { CHECK_MSG(0, "%s/reference.json has no entry for %s", DIR, file); return; }
    char path[256];
    snprintf(path, sizeof path, "%s/%s", DIR, file);
    st_model *m = NULL;
    CHECK_OK(st_model_open(path, &m));
    if (!m) { free(r.logits); return; }
    CHECK(m->hp.n_vocab == r.n_vocab);
    float *lg[ST_CPU_ISA_COUNT];
    int32_t ids[ST_CPU_ISA_COUNT][16];
    const int best = (int)st_cpu_isa_best();
    for (int isa = best; isa >= 0; isa--) {
        lg[isa] = calloc((size_t)r.n_vocab, sizeof(float));
        CHECK_OK(st_cpu_isa_force((st_cpu_isa)isa));
        run(m, &r, lg[isa], ids[isa]);
        const char *level = st_cpu_isa_name((st_cpu_isa)isa);
        if (isa != best && isa >= ST_CPU_ISA_AVX2)
            CHECK_MSG(!memcmp(lg[isa], lg[best], sizeof(float) * (size_t)r.n_vocab), "%s: logits on %s differ from %s",
                      file, level, st_cpu_isa_name((st_cpu_isa)best));
        double md = 0, mr = 0;
        for (int64_t v = 0; v < r.n_vocab; v++) {
            md = fmax(md, fabs((double)lg[isa][v] - r.logits[v]));
            mr = fmax(mr, fabs((double)r.logits[v]));
        }
        const bool same = !memcmp(ids[isa], r.greedy, sizeof(int32_t) * (size_t)r.n_greedy);
        printf("%-24s %-14s logits: max|diff| / max|logit| %.2e (limit %.0e); greedy ids %s (reference min top-2 gap %.3f)\n",
               file, level, md / mr, LOGIT_LIMIT, same ? "identical" : "DIFFER", r.min_gap);
        CHECK_MSG(md / mr <= LOGIT_LIMIT, "%s (%s): logits error %.3g of the largest logit", file, level, md / mr);
        CHECK_MSG(same, "%s (%s): greedy ids differ from the numpy reference", file, level);
        if (!same) {
            fprintf(stderr, "  ours:");
            for (int i = 0; i < r.n_greedy; i++) fprintf(stderr, " %d", ids[isa][i]);
            fprintf(stderr, "\n  ref: ");
            for (int i = 0; i < r.n_greedy; i++) fprintf(stderr, " %d", r.greedy[i]);
            fprintf(stderr, "\n");
        }
    }
    st_cpu_kernels_force_portable(false);
    for (int isa = 0; isa <= best; isa++) free(lg[isa]);
    st_model_free(m);
    free(r.logits);
}

int main(void) {
    json_error_t err;
    json_t *root = json_load_file(DIR "/reference.json", 0, &err);
    if (!root) {
        fprintf(stderr, "%s/reference.json:%d:%d: %s\n", DIR, err.line, err.column, err.text);
        return 1;
    }
    const char *files[] = {"qwen3-tiny-q8_0.gguf", "qwen3-tiny-q4_0.gguf", "qwen3-tiny-q4_1.gguf", "qwen3-tiny-q5_0.gguf",
                           "qwen3-tiny-q5_1.gguf", "qwen3-tiny-iq4_nl.gguf", "qwen2-tiny-q8_0.gguf", "llama-tiny-q4_0.gguf",
                           "kq-tiny-q4_k_m.gguf", "kq-tiny-q5_k.gguf", "kq-tiny-mixed.gguf"};
    for (size_t i = 0; i < ST_ARRAY_LEN(files); i++) check_file(root, files[i]);
    json_decref(root);
    return st_test_finish("cpu_quant_greedy");
}
