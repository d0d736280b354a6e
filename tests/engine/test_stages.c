/* The engine's invariants on the fixture models (bit-identical logits):
 *  - one CPU stage vs the same model split into 2 or 3 CPU stages joined by
 *    local and host links (a stage with no layers, a tied lm_head away from
 *    the embedding), with different thread counts per stage;
 *  - prefill in one chunk vs chunks of 5 vs token-by-token decode;
 *  - reset and rewind reuse the KV cache correctly;
 * and the errors a caller can make (stage coverage, context overflow, ids). */
#include "check.h"
#include "devices/device.h"
#include "model/model.h"
#include "orchestrator/engine.h"

#include <stdlib.h>
#include <string.h>

#define N_PROMPT 12

static const int32_t prompt[N_PROMPT] = {5, 17, 3, 99, 42, 7, 7, 61, 0, 13, 88, 21};

static struct st_engine_stage_desc stage(int64_t first, int64_t last, bool emb, bool out, int threads, st_link_type link) {
    struct st_engine_stage_desc d = {.ops = st_device_ops_cpu(), .first_layer = first, .last_layer = last,
                                     .has_embedding = emb, .has_output = out, .link_to_next = link};
    d.info.kind = ST_DEVICE_CPU;
    d.info.numa_node = -1;
    snprintf(d.info.name, sizeof d.info.name, "cpu");
    d.cfg.n_threads = threads;
    d.cfg.kv_dtype = ST_DTYPE_F32;
    return d;
}

/* All-position logits of the prompt, then the logits of 4 greedy decode steps. */
static float *run(const st_model *m, const struct st_engine_stage_desc *d, int n, int64_t chunk, int64_t V) {
    st_engine *e = NULL;
    struct st_engine_params prm = {.n_ctx = 32, .max_batch_tokens = chunk};
    st_status s = st_engine_init(m, d, n, &prm, &e);
    CHECK_OK(s);
    if (s != ST_OK) return NULL;
    float *lg = calloc((size_t)(N_PROMPT + 4) * (size_t)V, sizeof(float));
    CHECK_OK(st_engine_prefill(e, prompt, N_PROMPT, lg, true));
    int32_t next = st_engine_n_vocab(e) > 0 ? 1 : 0;
    for (int i = 0; i < 4; i++) CHECK_OK(st_engine_decode(e, next + i, lg + (N_PROMPT + i) * V));
    st_engine_free(e);
    return lg;
}

static void check_model(const char *path) {
    st_model *m = NULL;
    CHECK_OK(st_model_open(path, &m));
    if (!m) return;
    const int64_t L = m->hp.n_layer, V = m->hp.n_vocab;
    const size_t bytes = sizeof(float) * (size_t)(N_PROMPT + 4) * (size_t)V;

    struct st_engine_stage_desc one = stage(0, L - 1, true, true, 2, ST_LINK_T_AUTO);
    float *ref = run(m, &one, 1, 32, V);
    if (!ref) { st_model_free(m); return; }

    one.cfg.n_threads = 1;
    float *a = run(m, &one, 1, 32, V);
    CHECK_MSG(a && !memcmp(a, ref, bytes), "%s: 1 thread differs from 2", path);
    free(a);
    one.cfg.n_threads = 2;
    a = run(m, &one, 1, 5, V);
    CHECK_MSG(a && !memcmp(a, ref, bytes), "%s: prefill in chunks of 5 differs from one chunk", path);
    free(a);

    struct st_engine_stage_desc two[2] = {stage(0, 0, true, false, 1, ST_LINK_T_LOCAL),
                                          stage(1, L - 1, false, true, 2, ST_LINK_T_AUTO)};
    a = run(m, two, 2, 32, V);
    CHECK_MSG(a && !memcmp(a, ref, bytes), "%s: 2 stages (local link) differ from 1", path);
    free(a);

    /* an embedding-only stage, then one layer per host-linked stage */
    struct st_engine_stage_desc three[3] = {stage(0, -1, true, false, 1, ST_LINK_T_HOST),
                                            stage(0, 0, false, false, 2, ST_LINK_T_HOST),
                                            stage(1, L - 1, false, true, 1, ST_LINK_T_AUTO)};
    a = run(m, three, 3, 4, V);
    CHECK_MSG(a && !memcmp(a, ref, bytes), "%s: 3 stages (host links, chunks of 4) differ from 1", path);
    free(a);

    /* token by token == the all-positions prefill; reset and rewind reuse the cache */
    st_engine *e = NULL;
    struct st_engine_params prm = {.n_ctx = 16, .max_batch_tokens = 8};
    CHECK_OK(st_engine_init_single(m, st_device_ops_cpu(), NULL, &one.cfg, &prm, &e));
    if (e) {
        float *row = malloc(sizeof(float) * (size_t)V);
        bool same = true;
        for (int t = 0; t < N_PROMPT; t++) {
            CHECK_OK(st_engine_decode(e, prompt[t], row));
            if (memcmp(row, ref + t * V, sizeof(float) * (size_t)V)) same = false;
        }
        CHECK_MSG(same, "%s: decode token by token differs from the prefill rows", path);
        CHECK_OK(st_engine_rewind(e, 5));
        CHECK(st_engine_n_past(e) == 5);
        CHECK_OK(st_engine_prefill(e, prompt + 5, N_PROMPT - 5, row, false));
        CHECK_MSG(!memcmp(row, ref + (N_PROMPT - 1) * V, sizeof(float) * (size_t)V), "%s: rewind + prefill differs", path);
        st_engine_reset(e);
        CHECK_OK(st_engine_prefill(e, prompt, 3, row, false));
        CHECK_MSG(!memcmp(row, ref + 2 * V, sizeof(float) * (size_t)V), "%s: reset + prefill differs", path);
        int32_t g = -1;
        CHECK_OK(st_engine_decode_greedy(e, prompt[3], &g));
        CHECK(g >= 0 && g < V);

        /* errors */
        CHECK_ERR(st_engine_rewind(e, 9), ST_ERR_USAGE, "cannot rewind to 9 tokens: the sequence has 4");
        int32_t many[13] = {0};
        CHECK_ERR(st_engine_prefill(e, many, 13, NULL, false), ST_ERR_USAGE, "13 more tokens do not fit: 4 of the 16-token context");
        CHECK(st_engine_n_past(e) == 4);
        int32_t bad[2] = {1, (int32_t)V};
        CHECK_ERR(st_engine_prefill(e, bad, 2, NULL, false), ST_ERR_USAGE, "is outside the vocabulary");
        CHECK(st_engine_n_past(e) == 4);
        CHECK_ERR(st_engine_prefill(e, bad, 0, NULL, false), ST_ERR_USAGE, "no tokens");
        free(row);
        st_engine_free(e);
    }

    struct st_engine_params p2 = {.n_ctx = 16, .max_batch_tokens = 4};
    struct st_engine_stage_desc gap[2] = {stage(0, 0, true, false, 1, ST_LINK_T_AUTO),
                                          stage(0, L - 1, false, true, 1, ST_LINK_T_AUTO)};  /* overlap */
    CHECK_ERR(st_engine_init(m, gap, 2, &p2, &e), ST_ERR_CONFIG, "do not continue the previous stage");
    struct st_engine_stage_desc short_[1] = {stage(0, L - 2, true, true, 1, ST_LINK_T_AUTO)};
    CHECK_ERR(st_engine_init(m, short_, 1, &p2, &e), ST_ERR_CONFIG, "give the last stage the remaining layers");
    struct st_engine_stage_desc out_first[2] = {stage(0, 0, true, true, 1, ST_LINK_T_AUTO),
                                                stage(1, L - 1, false, false, 1, ST_LINK_T_AUTO)};
    CHECK_ERR(st_engine_init(m, out_first, 2, &p2, &e), ST_ERR_CONFIG, "belongs to the last stage");
    struct st_engine_stage_desc peer[2] = {stage(0, 0, true, false, 1, ST_LINK_T_PEER),
                                           stage(1, L - 1, false, true, 1, ST_LINK_T_AUTO)};
    CHECK_ERR(st_engine_init(m, peer, 2, &p2, &e), ST_ERR_CONFIG, "needs a GPU at both ends");
    struct st_engine_stage_desc q8kv = stage(0, L - 1, true, true, 1, ST_LINK_T_AUTO);
    q8kv.cfg.kv_dtype = ST_DTYPE_Q4_K;
    CHECK_ERR(st_engine_init(m, &q8kv, 1, &p2, &e), ST_ERR_CONFIG, "KV cache dtype q4_k is not supported");
    struct st_engine_params p0 = {.n_ctx = 0, .max_batch_tokens = 4};
    CHECK_ERR(st_engine_init(m, &one, 1, &p0, &e), ST_ERR_USAGE, "must both be positive");
    CHECK(e == NULL);

    free(ref);
    st_model_free(m);
}

int main(void) {
    check_model("tests/fixtures/models/qwen3-tiny/hf");             /* 3 layers, q/k norm, untied */
    check_model("tests/fixtures/models/qwen2-tiny/qwen2-tiny-f16.gguf"); /* tied lm_head on the last stage */
    check_model("tests/fixtures/models/llama-tiny/llama-tiny-f32.gguf"); /* NORM rope, rope_freqs */
    return st_test_finish("engine_stages");
}
