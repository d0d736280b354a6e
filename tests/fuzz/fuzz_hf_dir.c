/* Fuzz target: a Hugging Face model directory — config.json, the safetensors
 * header and data offsets, and optionally model.safetensors.index.json with
 * its shard and tokenizer_config.json (chat template). The input is up to
 * four parts split on FZ_SEPARATOR: config.json, model.safetensors,
 * model.safetensors.index.json (its shards are named a.safetensors: the
 * second part is written under that name too), tokenizer_config.json. */
#include "fuzz.h"
#include "model/tokenizer.h"
#include "planner/planner.h"

#include <math.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const names[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                                        "tokenizer_config.json"};
    const uint8_t *part;
    size_t len;
    int k = 0;
    for (; k < 4 && fz_next_part(&data, &size, &part, &len); k++) {
        fz_write(1, names[k], part, len);
        if (k == 1) fz_write(1, "a.safetensors", part, len);
    }
    for (int i = k; i < 4; i++) fz_remove(names[i]);
    if (k < 2) fz_remove("a.safetensors");
    st_model *m = NULL;
    if (st_model_open(fz_dir(), &m) == ST_OK) {
        FZ_ASSERT(m->hp.n_layer > 0 && m->hp.head_dim > 0 && m->hp.n_vocab > 0);
        /* what generation needs to compute numbers, not NaN (docs/limits.md) */
        FZ_ASSERT(isfinite(m->hp.rms_eps) && m->hp.rms_eps >= 1e-12f && isfinite(m->hp.rope_theta) && m->hp.rope_theta > 1);
        FZ_ASSERT(m->hp.head_dim % 2 == 0 && m->hp.n_head % m->hp.n_head_kv == 0 && m->hp.n_ctx_train >= 0);
        for (int64_t i = 0; i < m->n_tensors; i++) {
            const struct st_tensor *t = &m->tensors[i];
            const struct st_model_file *f = &m->files[t->file];
            FZ_ASSERT(t->offset <= f->size && t->bytes <= f->size - t->offset);
        }
        struct st_plan_model pm;
        memset(&pm, 0, sizeof pm);
        if (st_plan_model_from_model(m, &pm) == ST_OK) st_plan_model_free(&pm);
        (void)st_chat_detect(m->chat_template);
        st_model_free(m);
    }
    return 0;
}
