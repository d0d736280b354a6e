/* Fuzz target: text from a stranger (a prompt) through the bundled model's
 * tokenizer (models/tiny-kjv: NFC, Qwen2 regex, byte-level BPE, ChatML
 * specials). Properties, with special tokens left as text:
 *   decode(encode(x)) == NFC(x with ill-formed UTF-8 replaced by U+FFFD),
 *   the streaming decoder gives the same bytes as decode,
 *   encoding into a buffer one id too small says how many it needs.
 * With special tokens parsed, encode must still succeed and decode to the
 * same text as the parts around them. */
#include "fuzz.h"
#include "model/tokenizer.h"

#include <string.h>
#include <utf8proc.h>

static st_tokenizer_t *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *path = STRATA_SOURCE_DIR "/models/tiny-kjv/tokenizer.json";
    if (st_tokenizer_load_json(path, &g_tok) != ST_OK) {
        fprintf(stderr, "fuzz_tokenize: %s\n", st_last_error());
        abort();
    }
    return 0;
}

static char *decode_all(const int32_t *ids, int64_t n, size_t *len) {
    FZ_ASSERT(st_tokenizer_decode(g_tok, ids, n, 0, NULL, 0, len) == ST_OK);
    char *s = malloc(*len + 1);
    FZ_ASSERT(s);
    FZ_ASSERT(st_tokenizer_decode(g_tok, ids, n, 0, s, *len + 1, len) == ST_OK);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) LLVMFuzzerInitialize(NULL, NULL);
    if (size > 1 << 16) return 0;
    const char *text = (const char *)data;
    int32_t *ids = NULL;
    int64_t n = 0, cap = 0;
    FZ_ASSERT(st_tokenizer_encode_alloc(g_tok, text, size, 0, &ids, &n, &cap) == ST_OK);
    for (int64_t i = 0; i < n; i++) FZ_ASSERT(ids[i] >= 0 && ids[i] < st_tokenizer_n_vocab(g_tok));

    size_t dl;
    char *dec = decode_all(ids, n, &dl);
    char *fixed = malloc(3 * size + 1);
    FZ_ASSERT(fixed);
    size_t fl = st_utf8_lossy(text, size, fixed, 3 * size);
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t nl = utf8proc_map((const utf8proc_uint8_t *)fixed, (utf8proc_ssize_t)fl, &nfc,
                                       UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    FZ_ASSERT(nl >= 0);
    FZ_ASSERT((size_t)nl == dl && !memcmp(nfc, dec, dl));
    free(nfc);
    free(fixed);

    st_detok_stream_t *ds = NULL;
    FZ_ASSERT(st_detok_stream_init(g_tok, 0, &ds) == ST_OK);
    size_t at = 0, k;
    for (int64_t i = 0; i < n; i++) {
        const char *piece = st_detok_stream_push(ds, ids[i], &k);
        FZ_ASSERT(at + k <= dl && !memcmp(dec + at, piece, k));
        at += k;
    }
    const char *rest = st_detok_stream_flush(ds, &k);
    FZ_ASSERT(at + k == dl && !memcmp(dec + at, rest, k));
    st_detok_stream_free(ds);
    free(dec);

    if (n > 0) {
        int64_t need = 0;
        FZ_ASSERT(st_tokenizer_encode(g_tok, text, size, 0, ids, n - 1, &need) == ST_ERR_USAGE && need == n);
    }
    n = 0;
    FZ_ASSERT(st_tokenizer_encode_alloc(g_tok, text, size, ST_TOK_DEFAULT, &ids, &n, &cap) == ST_OK);
    for (int64_t i = 0; i < n; i++) FZ_ASSERT(ids[i] >= 0 && ids[i] < st_tokenizer_n_vocab(g_tok));
    free(ids);
    return 0;
}
