/* Fuzz target: tokenizer.json (the pull parser for model.vocab / merges, the
 * jansson-read members, the pre-tokenizer regex, added tokens, the post
 * processor) and the sibling files read for BOS/EOS: up to three parts split
 * on FZ_SEPARATOR — tokenizer.json, tokenizer_config.json,
 * generation_config.json. A tokenizer that loads must encode and decode. */
#include "fuzz.h"
#include "model/tokenizer.h"

#include <string.h>

static const char sample[] = "Hello, world!  In the beginning\n\n\tGod 1234 <|im_start|>user<|im_end|> caf\xc3\xa9 \xe2\x80\xa8 \xc3";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const names[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
    const uint8_t *part;
    size_t len;
    int k = 0;
    const char *path = NULL;
    for (; k < 3 && fz_next_part(&data, &size, &part, &len); k++) {
        const char *p = fz_write(2, names[k], part, len);
        if (k == 0) path = p;
    }
    for (int i = k; i < 3; i++) fz_remove(names[i]);
    if (!path) return 0;
    st_tokenizer_t *t = NULL;
    if (st_tokenizer_load_json(path, &t) == ST_OK) {
        int32_t *ids = NULL;
        int64_t n = 0, cap = 0;
        for (unsigned flags = 0; flags < 4; flags++) {
            n = 0;
            if (st_tokenizer_encode_alloc(t, sample, sizeof sample - 1, flags, &ids, &n, &cap) != ST_OK) continue;
            for (int64_t i = 0; i < n; i++) FZ_ASSERT(ids[i] >= 0 && ids[i] < st_tokenizer_n_vocab(t));
            size_t out = 0;
            FZ_ASSERT(st_tokenizer_decode(t, ids, n, ST_DETOK_SKIP_SPECIAL, NULL, 0, &out) == ST_OK);
        }
        free(ids);
        for (int32_t id = 0; id < st_tokenizer_n_vocab(t) && id < 600; id++) {
            size_t tl;
            const char *tx = st_tokenizer_token_text(t, id, &tl);
            if (tx) FZ_ASSERT(st_tokenizer_find(t, tx, tl) >= 0);
        }
    }
    st_tokenizer_free(t);
    return 0;
}
