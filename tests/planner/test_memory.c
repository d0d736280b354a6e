/* The memory estimator. For a model on one device the estimate equals the
 * exact sum of its tensor bytes plus the KV formula (layers x context x batch x
 * 2 x n_head_kv x head_dim x dtype bytes): against an independent computation
 * of the presets (tools/planner_preset_bytes.py, block sizes from gguf-py) and
 * against the fixture model files' own tensor tables. */
#include "check.h"
#include "planner/planner.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

static struct st_plan_device big_device(void) {
    struct st_device_info in;
    st_catalog_lookup("h200", &in);
    in.mem_total_bytes = in.mem_free_bytes = 4ull << 40;   /* room for anything */
    struct st_plan_device d;
    st_plan_device_init(&d, &in);
    return d;
}

/* one device: weights == every tensor once, KV == the formula */
static void check_single_stage(const struct st_plan_model *m, int64_t context, int64_t batch) {
    struct st_plan_device d = big_device();
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    r.context = context;
    r.batch = batch;
    st_plan *p = NULL;
    CHECK_OK(st_plan_make(m, &d, 1, NULL, &r, &p));
    if (!p) return;
    CHECK(p->n_stages == 1);
    const struct st_plan_stage *s = &p->stages[0];
    CHECK_MSG(s->mem.weights == m->total_bytes, "%s: stage weights %llu, tensors %llu", m->name,
              (unsigned long long)s->mem.weights, (unsigned long long)m->total_bytes);
    uint64_t kv = (uint64_t)m->n_layer * (uint64_t)context * (uint64_t)batch * 2 * (uint64_t)m->n_head_kv *
                  (uint64_t)m->head_dim * (s->kv_dtype == ST_DTYPE_F32 ? 4 : 2);
    CHECK_MSG(s->mem.kv == kv, "%s: KV %llu, formula %llu", m->name, (unsigned long long)s->mem.kv,
              (unsigned long long)kv);
    CHECK(s->mem.total == s->mem.weights + s->mem.kv + s->mem.workspace);
    CHECK(s->kv_dtype == ST_DTYPE_BF16);   /* an H200 stage runs bf16 */
    st_plan_free(p);
}

static void check_presets_against_reference(void) {
    json_error_t err;
    json_t *root = json_load_file("tests/fixtures/planner/preset_bytes.json", 0, &err);
    CHECK_MSG(root != NULL, "preset_bytes.json: %s", err.text);
    if (!root) return;
    json_t *cases = json_object_get(root, "cases");
    size_t i;
    json_t *c;
    int n = 0;
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "preset"));
        const char *quant = json_string_value(json_object_get(c, "quant"));
        struct st_plan_model m;
        CHECK_OK(st_plan_model_from_preset(name, quant, &m));
        json_t *lb = json_object_get(c, "layer_bytes");
        CHECK((int64_t)json_array_size(lb) == m.n_layer);
        bool layers_ok = true;
        for (int64_t l = 0; l < m.n_layer; l++)
            layers_ok &= m.layer_bytes[l] == (uint64_t)json_integer_value(json_array_get(lb, (size_t)l));
        CHECK_MSG(layers_ok, "%s %s: per-layer bytes differ from the reference", name, quant);
        CHECK_MSG(m.embd_bytes == (uint64_t)json_integer_value(json_object_get(c, "embd_bytes")) &&
                  m.lm_head_bytes == (uint64_t)json_integer_value(json_object_get(c, "lm_head_bytes")) &&
                  m.shared_bytes == (uint64_t)json_integer_value(json_object_get(c, "shared_bytes")),
                  "%s %s: embedding / lm_head / shared bytes differ", name, quant);
        uint64_t want = (uint64_t)json_integer_value(json_object_get(c, "total_bytes"));
        CHECK_MSG(m.total_bytes == want, "%s %s: total %llu, reference %llu", name, quant,
                  (unsigned long long)m.total_bytes, (unsigned long long)want);
        check_single_stage(&m, 4096, 1);
        check_single_stage(&m, 1000, 3);
        st_plan_model_free(&m);
        n++;
    }
    CHECK(n >= 10);
    json_decref(root);
    /* a published figure: llama.cpp tools/quantize/README lists llama-3.1-8B Q4_K_M at 4.58 GiB */
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("llama-3.1-8b", "q4_k_m", &m));
    double gib = (double)m.total_bytes / 1073741824.0;
    CHECK_MSG(gib >= 4.575 && gib < 4.585, "llama-3.1-8b q4_k_m: %.4f GiB", gib);
    /* the exact f16 parameter count of Qwen2.5-7B: 7,615,616,512 (model card "7.61B"), norms and biases f32 */
    st_plan_model_free(&m);
    CHECK_OK(st_plan_model_from_preset("qwen2.5-7b", "f32", &m));
    CHECK(m.total_bytes == 7615616512ull * 4);
    st_plan_model_free(&m);
    /* llama-bench prints each file's size: "llama 7B F16 12.55 GiB", "Q8_0 6.67 GiB", "Q4_0 3.56 GiB"
     * (llama.cpp PR #4766 tables, the files the docs/planner.md comparison uses) */
    const char *q[] = {"f16", "q8_0", "q4_0"};
    const double want[] = {12.55, 6.67, 3.56};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(st_plan_model_from_preset("llama-2-7b", q[i], &m));
        gib = (double)m.total_bytes / 1073741824.0;
        CHECK_MSG(fabs(gib - want[i]) < 0.005, "llama-2-7b %s: %.4f GiB, llama-bench %.2f", q[i], gib, want[i]);
        st_plan_model_free(&m);
    }
}

static void check_fixture_models(void) {
    const char *paths[] = {"tests/fixtures/models/qwen2-tiny/qwen2-tiny-f16.gguf",
                           "tests/fixtures/models/qwen3-tiny/qwen3-tiny-f32.gguf",
                           "tests/fixtures/models/llama-tiny/llama-tiny-f16.gguf",
                           "tests/fixtures/models/qwen2-tiny/hf"};
    int opened = 0;
    for (size_t i = 0; i < ST_ARRAY_LEN(paths); i++) {
        st_model *mf = NULL;
        if (st_model_open(paths[i], &mf) != ST_OK) {
            fprintf(stderr, "note: %s not opened: %s\n", paths[i], st_last_error());
            continue;
        }
        opened++;
        uint64_t sum = 0;
        for (int64_t t = 0; t < mf->n_tensors; t++) sum += mf->tensors[t].bytes;
        struct st_plan_model m;
        CHECK_OK(st_plan_model_from_model(mf, &m));
        CHECK_MSG(m.total_bytes == sum, "%s: planner %llu bytes, tensor table %llu", paths[i],
                  (unsigned long long)m.total_bytes, (unsigned long long)sum);
        CHECK(m.n_layer == mf->hp.n_layer && m.n_head_kv == mf->hp.n_head_kv && m.head_dim == mf->hp.head_dim);
        check_single_stage(&m, 256, 2);
        st_plan_model_free(&m);
        st_model_free(mf);
    }
    CHECK(opened >= 3);
}

int main(void) {
    check_presets_against_reference();
    check_fixture_models();
    return st_test_finish("planner_memory");
}
