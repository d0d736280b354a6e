/* Fuzz target: a GGUF file — header, metadata, tensor table, hyper-parameters
 * and the vocabulary (tokenizer.ggml.*), as `strata model`, `generate -m
 * FILE.gguf` and `tokenize -m FILE.gguf` read it. A file that opens must
 * have hyper-parameters that compute numbers (finite epsilon, RoPE base > 1)
 * and describe itself to the planner; a vocabulary that loads must encode and
 * decode text, and the streaming decoder must give the same bytes. */
#include "fuzz.h"
#include "model/tokenizer.h"
#include "planner/planner.h"

#include <math.h>
#include <string.h>

static const char sample[] = "Hello, world! In the beginning God created 123 <|im_start|>user\n\xe6\x97\xa5\xe6\x9c\xac \xff\xfe";

static void exercise_tokenizer(st_tokenizer_t *t) {
    int32_t *ids = NULL;
    int64_t n = 0, cap = 0;
    if (st_tokenizer_encode_alloc(t, sample, sizeof sample - 1, ST_TOK_DEFAULT, &ids, &n, &cap) == ST_OK) {
        size_t len = 0;
        FZ_ASSERT(st_tokenizer_decode(t, ids, n, 0, NULL, 0, &len) == ST_OK);
        char *text = malloc(len + 1);
        FZ_ASSERT(text);
        FZ_ASSERT(st_tokenizer_decode(t, ids, n, 0, text, len + 1, &len) == ST_OK);
        FZ_ASSERT(strlen(text) <= len);
        st_detok_stream_t *ds = NULL;
        if (st_detok_stream_init(t, 0, &ds) == ST_OK) {
            size_t at = 0, k;
            for (int64_t i = 0; i < n; i++) {
                const char *piece = st_detok_stream_push(ds, ids[i], &k);
                FZ_ASSERT(at + k <= len && !memcmp(text + at, piece, k));
                at += k;
            }
            const char *rest = st_detok_stream_flush(ds, &k);
            FZ_ASSERT(at + k == len && !memcmp(text + at, rest, k));
            st_detok_stream_free(ds);
        }
        free(text);
    }
    free(ids);
    int64_t ns = 0;
    const int32_t *stops = st_tokenizer_stop_ids(t, &ns);
    for (int64_t i = 0; i < ns; i++) FZ_ASSERT(stops[i] >= 0 && stops[i] < st_tokenizer_n_vocab(t));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_write(0, "model.gguf", data, size);
    st_model *m = NULL;
    if (st_model_open(path, &m) == ST_OK) {
        FZ_ASSERT(m->hp.n_layer > 0 && m->hp.head_dim > 0 && m->hp.n_vocab > 0);
        /* what generation needs to compute numbers, not NaN (docs/limits.md) */
        FZ_ASSERT(isfinite(m->hp.rms_eps) && m->hp.rms_eps >= 1e-12f && isfinite(m->hp.rope_theta) && m->hp.rope_theta > 1);
        FZ_ASSERT(m->hp.head_dim % 2 == 0 && m->hp.n_head % m->hp.n_head_kv == 0 && m->hp.n_ctx_train >= 0);
        struct st_plan_model pm;
        memset(&pm, 0, sizeof pm);
        if (st_plan_model_from_model(m, &pm) == ST_OK) {
            FZ_ASSERT(pm.n_layer == m->hp.n_layer);
            st_plan_model_free(&pm);
        }
        st_tokenizer_t *t = NULL;
        if (st_tokenizer_from_model(m, &t) == ST_OK) exercise_tokenizer(t);
        st_tokenizer_free(t);
        (void)st_chat_detect(m->chat_template);
        st_model_free(m);
    }
    /* a vocabulary-only file: the tokenizer without the model checks */
    st_tokenizer_t *t = NULL;
    if (st_tokenizer_load_path(path, &t) == ST_OK) exercise_tokenizer(t);
    st_tokenizer_free(t);
    return 0;
}
