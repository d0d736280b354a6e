/* Many sequences through one engine (orchestrator/engine.h):
 *  - batched decode steps (one token of each of 5 sequences per pass), with
 *    1 or 2 micro-batches in flight and 1 or 2 CPU stages, give every
 *    sequence bit-identical logits and the same greedy ids as running it
 *    alone (the CPU kernels' results do not depend on the batch);
 *  - the per-sequence length bookkeeping and the caller's errors;
 *  - non-finite logits are an error naming the stage and the layer where
 *    they first appear, never a token (a weight poisoned with +inf). */
#include "check.h"
#include "devices/device.h"
#include "model/model.h"
#include "orchestrator/engine.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NS 5        /* sequences */
#define STEPS 6     /* decode steps after the prompts */

static const int32_t prompts[NS][6] = {{5, 17, 3, 99, 42, 7}, {1, 2}, {7, 61, 0, 13, 88, 21},
                                       {200, 3}, {9, 9, 9}};
static const int plen[NS] = {6, 2, 6, 2, 3};

static struct st_engine_stage_desc stage(int64_t first, int64_t last, bool emb, bool out) {
    struct st_engine_stage_desc d = {.ops = st_device_ops_cpu(), .first_layer = first, .last_layer = last,
                                     .has_embedding = emb, .has_output = out, .link_to_next = ST_LINK_T_AUTO};
    d.info.kind = ST_DEVICE_CPU;
    d.info.numa_node = -1;
    snprintf(d.info.name, sizeof d.info.name, "cpu");
    d.cfg.n_threads = 2;
    d.cfg.kv_dtype = ST_DTYPE_F32;
    return d;
}

/* Each sequence alone (slot 0 of a one-sequence engine): the logits of its
 * prompt's last token and of STEPS greedy steps, and the ids. */
static void run_alone(const st_model *m, float *logits, int32_t *ids) {
    const int64_t V = m->hp.n_vocab;
    struct st_engine_stage_desc one = stage(0, m->hp.n_layer - 1, true, true);
    struct st_engine_params prm = {.n_ctx = 32, .max_batch_tokens = 4};
    st_engine *e = NULL;
    CHECK_OK(st_engine_init(m, &one, 1, &prm, &e));
    if (!e) return;
    for (int s = 0; s < NS; s++) {
        st_engine_reset(e);
        float *lg = logits + (size_t)s * (STEPS + 1) * V;
        CHECK_OK(st_engine_prefill(e, prompts[s], plen[s], lg, false));
        for (int k = 0; k < STEPS; k++) {
            int32_t next = 0;
            for (int64_t i = 1; i < V; i++) if (lg[k * V + i] > lg[k * V + next]) next = (int32_t)i;
            ids[s * STEPS + k] = next;
            CHECK_OK(st_engine_decode(e, next, lg + (k + 1) * V));
        }
    }
    st_engine_free(e);
}

/* All NS sequences in slots, prefilled one by one, then STEPS batched steps
 * split over n_micro micro-batches (all begun before any ends). */
static void run_batched(const st_model *m, const struct st_engine_stage_desc *d, int n_stages, int n_micro,
                        const float *ref, const int32_t *ref_ids, const char *what) {
    const int64_t V = m->hp.n_vocab;
    struct st_engine_params prm = {.n_ctx = 32, .max_batch_tokens = 4, .n_seq = NS + 1, .n_micro = n_micro};
    st_engine *e = NULL;
    CHECK_OK(st_engine_init(m, d, n_stages, &prm, &e));
    if (!e) return;
    float *lg = malloc(sizeof(float) * (size_t)V);
    int32_t next[NS];
    bool same_logits = true, same_ids = true;
    /* slots NS..1 (slot 0 stays empty): the slot number must not matter */
    for (int s = 0; s < NS; s++) {
        struct st_engine_row pick = {.pick = ST_PICK_LOGITS};
        CHECK_OK(st_engine_seq_prefill(e, NS - s, prompts[s], plen[s], &pick, NULL, lg));
        same_logits &= !memcmp(lg, ref + (size_t)s * (STEPS + 1) * V, sizeof(float) * (size_t)V);
        next[s] = ref_ids[s * STEPS];
        CHECK(st_engine_seq_len(e, NS - s) == plen[s]);
    }
    CHECK(st_engine_seq_len(e, 0) == 0);
    for (int k = 0; k < STEPS; k++) {
        struct st_engine_row rows[NS];
        int per = (NS + n_micro - 1) / n_micro;
        for (int s = 0; s < NS; s++) {
            /* the last step asks for logits on every row; the others choose on the device */
            rows[s] = (struct st_engine_row){.slot = NS - s, .id = next[s],
                                             .pick = k + 1 == STEPS ? ST_PICK_LOGITS : ST_PICK_GREEDY};
        }
        for (int mb = 0; mb < n_micro; mb++) {
            int b = mb * per, n = ST_MIN(per, NS - b);
            if (n > 0) CHECK_OK(st_engine_step_begin(e, mb, rows + b, n));
        }
        for (int mb = 0; mb < n_micro; mb++) {
            int b = mb * per, n = ST_MIN(per, NS - b);
            if (n <= 0) continue;
            int32_t got[NS];
            const float *rl[NS];
            double busy[4];
            CHECK_OK(st_engine_step_end(e, mb, got, rl, busy));
            for (int i = 0; i < n; i++) {
                const int s = b + i;
                if (k + 1 == STEPS) {
                    same_logits &= rl[i] && !memcmp(rl[i], ref + ((size_t)s * (STEPS + 1) + k + 1) * V,
                                                    sizeof(float) * (size_t)V);
                } else {
                    same_ids &= got[i] == ref_ids[s * STEPS + k + 1];
                    next[s] = got[i];
                }
            }
            for (int i = 0; i < n_stages; i++) CHECK(busy[i] >= 0.0);
        }
    }
    for (int s = 0; s < NS; s++) CHECK(st_engine_seq_len(e, NS - s) == plen[s] + STEPS);
    CHECK_MSG(same_logits, "%s: %s: batched logits differ from one sequence at a time", m->path, what);
    CHECK_MSG(same_ids, "%s: %s: batched greedy ids differ from one sequence at a time", m->path, what);
    free(lg);
    st_engine_free(e);
}

static void check_errors(const st_model *m) {
    struct st_engine_stage_desc one = stage(0, m->hp.n_layer - 1, true, true);
    struct st_engine_params prm = {.n_ctx = 8, .max_batch_tokens = 4, .n_seq = 3, .n_micro = 2};
    st_engine *e = NULL;
    CHECK_OK(st_engine_init(m, &one, 1, &prm, &e));
    if (!e) return;
    int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 1}, got[3];
    struct st_engine_row g = {.pick = ST_PICK_GREEDY};
    CHECK_OK(st_engine_seq_prefill(e, 1, ids, 8, &g, got, NULL));
    struct st_engine_row rows[3] = {{.slot = 0, .id = 1}, {.slot = 0, .id = 2}, {.slot = 2, .id = 3}};
    CHECK_ERR(st_engine_step_begin(e, 0, rows, 2), ST_ERR_USAGE, "sequence 0 appears twice in one step");
    CHECK_ERR(st_engine_step_begin(e, 0, rows, 3), ST_ERR_USAGE, "a step of 3 sequences (1 to 2 per micro-batch)");
    CHECK_ERR(st_engine_step_begin(e, 2, rows, 1), ST_ERR_USAGE, "micro-batch 2 (the engine has 2)");
    rows[0].slot = 1;
    CHECK_ERR(st_engine_step_begin(e, 0, rows, 1), ST_ERR_USAGE, "sequence 1 has filled its 8-token context");
    rows[0].slot = 3;
    CHECK_ERR(st_engine_step_begin(e, 0, rows, 1), ST_ERR_USAGE, "sequence 3 is outside the 3");
    CHECK_ERR(st_engine_step_end(e, 1, got, NULL, NULL), ST_ERR_USAGE, "micro-batch 1 has no step in flight");
    rows[0].slot = 2;
    CHECK_OK(st_engine_step_begin(e, 1, rows, 1));
    CHECK_ERR(st_engine_step_begin(e, 1, rows, 1), ST_ERR_USAGE, "begins again before it ended");
    CHECK_OK(st_engine_step_end(e, 1, got, NULL, NULL));
    CHECK(got[0] >= 0 && got[0] < m->hp.n_vocab);
    CHECK(st_engine_seq_len(e, 2) == 1 && st_engine_seq_len(e, 1) == 8 && st_engine_seq_len(e, 0) == 0);
    CHECK_ERR(st_engine_seq_rewind(e, 2, 2), ST_ERR_USAGE, "cannot rewind to 2 tokens: the sequence has 1");
    CHECK_OK(st_engine_seq_rewind(e, 1, 3));
    CHECK(st_engine_seq_len(e, 1) == 3);
    st_engine_free(e);
}

/* A copy of a GGUF whose tensor `name` starts with +inf: the first greedy
 * choice is an error that names the layer, on one stage and on two. */
static void check_nonfinite(const char *path, const char *name, const char *expect_stage0,
                            const char *expect_split) {
    st_model *m = NULL;
    CHECK_OK(st_model_open(path, &m));
    if (!m) return;
    int64_t ti = -1;
    for (int64_t i = 0; i < m->n_tensors; i++) if (!strcmp(m->tensors[i].name, name)) ti = i;
    CHECK_MSG(ti >= 0 && m->tensors[ti].dtype == ST_DTYPE_F32, "%s: no f32 tensor %s", path, name);
    if (ti < 0) { st_model_free(m); return; }
    const uint64_t off = m->tensors[ti].offset;
    char *data = NULL;
    size_t len = 0;
    CHECK_OK(st_read_file(path, &data, &len));
    st_model_free(m);
    if (!data) return;
    const float inf = INFINITY;
    memcpy(data + off, &inf, sizeof inf);
    char tmp[] = "/tmp/strata-nonfinite-XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(fd >= 0 && write(fd, data, len) == (ssize_t)len);
    close(fd);
    free(data);
    m = NULL;
    CHECK_OK(st_model_open(tmp, &m));
    if (m) {
        const int64_t L = m->hp.n_layer;
        struct st_engine_params prm = {.n_ctx = 16, .max_batch_tokens = 8, .n_seq = 2};
        struct st_engine_stage_desc one = stage(0, L - 1, true, true);
        struct st_engine_stage_desc two[2] = {stage(0, 0, true, false), stage(1, L - 1, false, true)};
        st_engine *e = NULL;
        int32_t next = 0;
        CHECK_OK(st_engine_init(m, &one, 1, &prm, &e));
        if (e) {
            CHECK_ERR(st_engine_prefill_greedy(e, prompts[0], plen[0], &next), ST_ERR_NUMERIC, expect_stage0);
            /* a batched step too, with the device choice */
            struct st_engine_row row = {.slot = 1, .id = 3, .pick = ST_PICK_GREEDY};
            int32_t got;
            CHECK_OK(st_engine_step_begin(e, 0, &row, 1));
            CHECK_ERR(st_engine_step_end(e, 0, &got, NULL, NULL), ST_ERR_NUMERIC, expect_stage0);
            CHECK(st_engine_seq_len(e, 1) == 0);   /* the failed step did not count */
            st_engine_free(e);
        }
        e = NULL;
        CHECK_OK(st_engine_init(m, two, 2, &prm, &e));
        if (e) {
            CHECK_ERR(st_engine_prefill_greedy(e, prompts[0], plen[0], &next), ST_ERR_NUMERIC, expect_split);
            st_engine_free(e);
        }
        st_model_free(m);
    }
    unlink(tmp);
}

int main(void) {
    const char *models[] = {"tests/fixtures/models/qwen3-tiny/qwen3-tiny-f32.gguf",
                            "tests/fixtures/models/qwen2-tiny/qwen2-tiny-f16.gguf",
                            "tests/fixtures/models/llama-tiny/llama-tiny-f32.gguf"};
    for (size_t i = 0; i < ST_ARRAY_LEN(models); i++) {
        st_model *m = NULL;
        CHECK_OK(st_model_open(models[i], &m));
        if (!m) continue;
        const int64_t V = m->hp.n_vocab, L = m->hp.n_layer;
        float *ref = calloc((size_t)NS * (STEPS + 1) * (size_t)V, sizeof(float));
        int32_t ref_ids[NS * STEPS];
        run_alone(m, ref, ref_ids);
        struct st_engine_stage_desc one = stage(0, L - 1, true, true);
        struct st_engine_stage_desc two[2] = {stage(0, 0, true, false), stage(1, L - 1, false, true)};
        two[0].link_to_next = ST_LINK_T_HOST;
        run_batched(m, &one, 1, 1, ref, ref_ids, "1 stage, 1 micro-batch");
        run_batched(m, &one, 1, 2, ref, ref_ids, "1 stage, 2 micro-batches");
        run_batched(m, two, 2, 2, ref, ref_ids, "2 stages, 2 micro-batches");
        run_batched(m, two, 2, 3, ref, ref_ids, "2 stages, 3 micro-batches");
        if (i == 0) check_errors(m);
        free(ref);
        st_model_free(m);
    }
    check_nonfinite("tests/fixtures/models/qwen3-tiny/qwen3-tiny-f32.gguf", "blk.1.ffn_down.weight",
                    "stage 0 (cpu): the output of layer 1 holds", "stage 1 (cpu): the output of layer 1 holds");
    check_nonfinite("tests/fixtures/models/qwen3-tiny/qwen3-tiny-f32.gguf", "output_norm.weight",
                    "the output of the output head (final norm and lm_head) holds an infinity",
                    "stage 1 (cpu): the output of the output head");
    return st_test_finish("batch");
}
