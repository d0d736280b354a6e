/* Tokenizer units: NFC by regions against utf8proc's whole-string NFC on
 * random strings of composing characters; UTF-8 repair against hand-written
 * maximal-subpart cases; streaming decode holding back partial sequences;
 * the encode buffer contracts; malformed and unsupported tokenizer.json files
 * with file:line:column messages. */
#include <stdlib.h>
#include <utf8proc.h>

#include "check.h"
#include "model/tokenizer.h"
#include "orchestrator/sampler.h"

#define QWEN3 "tests/fixtures/tokenizers/qwen3/tokenizer.json"

static void test_nfc_regions(st_tokenizer_t *tok) {
    /* pieces that compose, reorder or expand under NFC, next to inert ones */
    static const char *const pool[] = {
        "a", "e", "o", "A", " ", "x", "\xcc\x81" /* U+0301 */, "\xcc\x88" /* U+0308 */, "\xcc\xa3" /* U+0323 */,
        "\xcc\x8a" /* U+030A */, "\xe1\x84\x80" /* U+1100 */, "\xe1\x85\xa1" /* U+1161 */, "\xe1\x86\xa8" /* U+11A8 */,
        "\xea\xb0\x80" /* U+AC00 */, "\xe3\x81\x8b" /* か */, "\xe3\x82\x99" /* U+3099 */, "\xe3\x83\x8f", "\xe3\x82\x9a",
        "\xef\xa4\x80" /* U+F900 */, "\xe2\x84\xab" /* U+212B */, "\xe2\x84\xa6", "\xc3\x85", "\xe4\xb8\x80", "\xc5\xbf",
        "\xe0\xa4\x95", "\xe0\xa4\xbc", "\xe1\xba\x9b", "\xf0\x9f\x98\x80", "\xd8\xa7", "\xd9\x93", "\n", "\t",
    };
    struct st_rng r;
    st_rng_seed(&r, 5);
    char text[512], dec[4096];
    int32_t ids[1024];
    size_t bad = 0;
    for (int it = 0; it < 3000; it++) {
        size_t n = 0;
        int parts = 1 + (int)(st_rng_next(&r) % 24);
        for (int k = 0; k < parts; k++) {
            const char *p = pool[st_rng_next(&r) % ST_ARRAY_LEN(pool)];
            memcpy(text + n, p, strlen(p));
            n += strlen(p);
        }
        text[n] = 0;
        utf8proc_uint8_t *want = utf8proc_NFC((const utf8proc_uint8_t *)text);
        int64_t ni = 0;
        size_t dl = 0;
        st_status s = st_tokenizer_encode(tok, text, n, ST_TOK_DEFAULT, ids, 1024, &ni);
        st_tokenizer_decode(tok, ids, ni, 0, dec, sizeof dec, &dl);
        if (s || !want || dl != strlen((char *)want) || memcmp(dec, want, dl)) {
            if (bad++ < 3) fprintf(stderr, "NFC differs for '%s'\n", text);
        }
        free(want);
    }
    CHECK_MSG(bad == 0, "%zu of 3000 random strings: decode(encode(x)) != NFC(x)", bad);
}

static void test_utf8(void) {
    struct { const char *in; size_t n; const char *out; } cases[] = {
        {"a\x80" "b", 3, "a\xef\xbf\xbd" "b"},
        {"\xe2\x82", 2, "\xef\xbf\xbd"},                                   /* truncated: one U+FFFD */
        {"\xe2\x82x", 3, "\xef\xbf\xbdx"},
        {"\xc0\x80", 2, "\xef\xbf\xbd\xef\xbf\xbd"},                       /* overlong: each byte */
        {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},       /* surrogate */
        {"\xf4\x90\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf0\x9f\x98", 3, "\xef\xbf\xbd"},
        {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},
        {"\xe0\xa0\x80", 3, "\xe0\xa0\x80"},
        {"\xff\xfe", 2, "\xef\xbf\xbd\xef\xbf\xbd"},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
        char out[64];
        size_t n = st_utf8_lossy(cases[i].in, cases[i].n, out, sizeof out);
        CHECK_MSG(n == strlen(cases[i].out) && !memcmp(out, cases[i].out, n), "lossy case %zu", i);
        CHECK(st_utf8_valid(cases[i].in, cases[i].n) == (n == cases[i].n && !memcmp(out, cases[i].in, n)));
    }
}

static void test_stream(st_tokenizer_t *tok) {
    /* "日" = E6 97 A5: byte tokens arrive one by one; nothing comes out until the character completes */
    int32_t e6 = st_tokenizer_find(tok, "\xc3\xa6", 2), x97 = st_tokenizer_find(tok, "\xc4\xb9", 2),
            a5 = st_tokenizer_find(tok, "\xc2\xa5", 2);
    CHECK(e6 >= 0 && x97 >= 0 && a5 >= 0);
    st_detok_stream_t *s = NULL;
    CHECK_OK(st_detok_stream_init(tok, 0, &s));
    if (!s) return;
    size_t n;
    const char *p = st_detok_stream_push(s, e6, &n);
    CHECK(n == 0 && p[0] == 0);
    st_detok_stream_push(s, x97, &n);
    CHECK(n == 0);
    p = st_detok_stream_push(s, a5, &n);
    CHECK(n == 3 && !memcmp(p, "\xe6\x97\xa5", 3));
    /* an incomplete sequence followed by ASCII: U+FFFD then the letter */
    st_detok_stream_push(s, e6, &n);
    CHECK(n == 0);
    p = st_detok_stream_push(s, st_tokenizer_find(tok, "a", 1), &n);
    CHECK(n == 4 && !memcmp(p, "\xef\xbf\xbd" "a", 4));
    /* held back at the end: flush gives U+FFFD */
    st_detok_stream_push(s, e6, &n);
    p = st_detok_stream_flush(s, &n);
    CHECK(n == 3 && !memcmp(p, "\xef\xbf\xbd", 3));
    /* skip-special stream drops <|im_end|>; ids outside the vocabulary give nothing */
    st_detok_stream_free(s);
    CHECK_OK(st_detok_stream_init(tok, ST_DETOK_SKIP_SPECIAL, &s));
    st_detok_stream_push(s, 151645, &n);
    CHECK(n == 0);
    st_detok_stream_push(s, 999999, &n);
    CHECK(n == 0);
    p = st_detok_stream_push(s, 151667, &n);   /* <think> is not special */
    CHECK(n == 7 && !memcmp(p, "<think>", 7));
    st_detok_stream_free(s);
    CHECK(st_tokenizer_max_token_bytes(tok) >= 7);
}

static void test_encode_contracts(st_tokenizer_t *tok) {
    int32_t ids[4];
    int64_t n = 0;
    CHECK_ERR(st_tokenizer_encode(tok, "Hello world, how are you?", 25, ST_TOK_DEFAULT, ids, 4, &n), ST_ERR_USAGE,
              "needs 7 token ids; the buffer holds 4");
    CHECK(n == 7);
    CHECK_OK(st_tokenizer_encode(tok, "", 0, ST_TOK_DEFAULT, ids, 4, &n));
    CHECK(n == 0);
    int32_t *v = NULL;
    int64_t vn = 0, vcap = 0;
    CHECK_OK(st_tokenizer_encode_alloc(tok, "Hello", 5, ST_TOK_DEFAULT, &v, &vn, &vcap));
    CHECK_OK(st_tokenizer_encode_alloc(tok, " world", 6, ST_TOK_DEFAULT, &v, &vn, &vcap));
    CHECK(vn == 2 && v[0] == 9707 && v[1] == 1879 && vcap >= vn);
    free(v);
    /* special tokens: matched by default, plain text with --no-special (HF split_special_tokens) */
    CHECK_OK(st_tokenizer_encode(tok, "<|im_end|>", 10, ST_TOK_DEFAULT, ids, 4, &n));
    CHECK(n == 1 && ids[0] == 151645);
    CHECK_OK(st_tokenizer_encode(tok, "<think>", 7, 0, ids, 4, &n));   /* not special: always matched */
    CHECK(n == 1 && ids[0] == 151667);
    int32_t many[16];
    CHECK_OK(st_tokenizer_encode(tok, "<|im_end|>", 10, 0, many, 16, &n));
    CHECK(n > 1);
    size_t l;
    CHECK(st_tokenizer_token_text(tok, 9707, &l) && l == 5);
    CHECK(st_tokenizer_find(tok, "\xc4\xa0world", 7) == 1879);   /* "Ġworld" */
    const char *b = st_tokenizer_token_bytes(tok, 1879, &l);
    CHECK(b && l == 6 && !memcmp(b, " world", 6));
    CHECK(st_tokenizer_token_bytes(tok, -1, &l) == NULL && st_tokenizer_token_bytes(tok, 151669, &l) == NULL);
    char out[8];
    size_t ol;
    int32_t hw[2] = {9707, 1879};
    CHECK_OK(st_tokenizer_decode(tok, hw, 2, 0, out, sizeof out, &ol));   /* snprintf contract */
    CHECK(ol == 11 && !strcmp(out, "Hello w"));
}

static st_status load_text(const char *json, st_tokenizer_t **t) {
    const char *p = "/tmp/strata-test-tokenizer.json";
    FILE *f = fopen(p, "w");
    fputs(json, f);
    fclose(f);
    return st_tokenizer_load_json(p, t);
}

static void test_bad_json(void) {
    st_tokenizer_t *t = NULL;
    CHECK_ERR(load_text("{\"model\": {\"vocab\": {\"a\": 0,\n \"b\" 1}}}", &t), ST_ERR_FORMAT,
              "strata-test-tokenizer.json:2:6: expected ':'");
    CHECK_ERR(load_text("{\"model\": {\"vocab\": {\"a\": x}}}", &t), ST_ERR_FORMAT, ":1:27: expected a token id");
    CHECK_ERR(load_text("{\"model\": {\"vocab\": {\"a\": 0}}", &t), ST_ERR_FORMAT, "expected ',' or '}'");
    CHECK_ERR(load_text("{\"added_tokens\": []}", &t), ST_ERR_FORMAT, "no model.vocab");
    CHECK_ERR(load_text("{\"model\": {\"type\": \"Unigram\", \"vocab\": {}}}", &t), ST_ERR_UNSUPPORTED,
              "model type Unigram is not supported");
    CHECK_ERR(load_text("{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"a\": 0}}}", &t),
              ST_ERR_UNSUPPORTED, "byte_fallback=true");
    CHECK_ERR(load_text("{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"vocab\": {\"a\": 0}}}", &t),
              ST_ERR_UNSUPPORTED, "normalizer NFKC is not supported");
    CHECK_ERR(load_text("{\"pre_tokenizer\": {\"type\": \"Whitespace\"}, \"model\": {\"vocab\": {\"a\": 0}}}", &t),
              ST_ERR_UNSUPPORTED, "pre_tokenizer Whitespace is not supported");
    CHECK_ERR(load_text("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": "
                        "\"Isolated\"}, \"model\": {\"vocab\": {\"a\": 0}}}", &t),
              ST_ERR_UNSUPPORTED, "the pre-tokenizer regex does not compile");
    CHECK_ERR(load_text("{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": false}, \"model\": "
                        "{\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}", &t),
              ST_ERR_FORMAT, ":1:110: merge 0 (\"a\" + \"c\") refers to a token missing");
    CHECK_ERR(load_text("{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": false}, \"model\": "
                        "{\"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}", &t),
              ST_ERR_FORMAT, "a merge string must be two symbols separated by one space");
    CHECK_ERR(load_text("{\"added_tokens\": [{\"id\": 5, \"content\": \"<m>\", \"lstrip\": true}], \"model\": "
                        "{\"vocab\": {\"a\": 0}}}", &t), ST_ERR_UNSUPPORTED, "uses single_word/lstrip/rstrip");
    CHECK_ERR(load_text("{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"use_regex\": false}, \"model\": "
                        "{\"vocab\": {\"a\": 0}}}", &t), ST_ERR_FORMAT, "has no token for byte 0x00");
    CHECK_ERR(load_text("{\"model\": {\"vocab\": {\"a\": 0}}} x", &t), ST_ERR_FORMAT, "extra data after the top-level object");
    CHECK_ERR(st_tokenizer_load_json("tests/fixtures/tokenizers/nonexistent.json", &t), ST_ERR_IO, "nonexistent.json");
    CHECK(t == NULL);
}

int main(void) {
    st_tokenizer_t *tok = NULL;
    CHECK_OK(st_tokenizer_load_json(QWEN3, &tok));
    if (tok) {
        test_nfc_regions(tok);
        test_stream(tok);
        test_encode_contracts(tok);
    }
    test_utf8();
    test_bad_json();
    st_tokenizer_free(tok);
    return st_test_finish("tokenizer_unit");
}
