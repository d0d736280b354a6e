/* Malformed and hostile tokenizer files: each must fail with ST_ERR_FORMAT (or
 * UNSUPPORTED) naming the file, the line:column or key, and the limit where
 * one applies, plus a hint; none may leak (ASan variant) or write out of
 * bounds. The base file is the small byte-level BPE tokenizer.json that the
 * fuzz corpus holds (tests/fuzz/make_seeds.py), edited case by case. */
#include "check.h"
#include "model/model-impl.h"
#include "model/tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256], tok_path[300];
static char *base;          /* the seed tokenizer.json */
static size_t base_len;

static void spit(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) { perror(path); exit(1); }
    fclose(f);
}

/* Writes text as tokenizer.json and loads it; expects status s and both needles and a hint. */
static void expect(const char *text, st_status want, const char *n1, const char *n2, int line) {
    spit(tok_path, text, strlen(text));
    st_tokenizer_t *t = NULL;
    st_status s = st_tokenizer_load_json(tok_path, &t);
    const char *msg = st_last_error();
    bool ok = s == want && !t && strstr(msg, n1) && (!n2 || strstr(msg, n2)) && strstr(msg, "\nhint: ");
    CHECK_MSG(ok, "line %d: status %s (want %s)\n  message: %s\n  want: '%s' and '%s' and a hint", line,
              st_status_name(s), st_status_name(want), msg, n1, n2 ? n2 : "");
    st_tokenizer_free(t);
}
#define FAIL(text, st, a, b) expect(text, st, a, b, __LINE__)

/* base with the last '}' replaced by extra + "}" */
static char *append_member(const char *extra) {
    const char *end = strrchr(base, '}');
    size_t head = (size_t)(end - base), n = head + strlen(extra) + 3;
    char *t = malloc(n);
    snprintf(t, n, "%.*s%s}", (int)head, base, extra);
    return t;
}

/* base edited as JSON: fn changes the document */
static char *edited(void (*fn)(json_t *)) {
    json_t *j = json_loadb(base, base_len, 0, NULL);
    fn(j);
    char *t = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(j);
    return t;
}

static const char *g_regex;
static void set_regex(json_t *j) {
    json_t *split = json_array_get(json_object_get(json_object_get(j, "pre_tokenizer"), "pretokenizers"), 0);
    json_object_set_new(json_object_get(split, "pattern"), "Regex", json_string(g_regex));
}
static void big_id(json_t *j) { json_object_set_new(json_object_get(json_object_get(j, "model"), "vocab"), "zz", json_integer(1 << 21)); }
static void long_added(json_t *j) {
    char *s = malloc(65538);
    memset(s, 'x', 65537);
    s[65537] = 0;
    json_object_set_new(json_array_get(json_object_get(j, "added_tokens"), 0), "content", json_string(s));
    free(s);
}
static void template_bad_id(json_t *j) {
    json_t *post = json_pack("{s:s,s:[{s:{s:s,s:i}},{s:{s:s,s:i}}],s:[],s:{s:{s:s,s:[i],s:[s]}}}", "type",
                             "TemplateProcessing", "single", "SpecialToken", "id", "<s>", "type_id", 0, "Sequence", "id",
                             "A", "type_id", 0, "pair", "special_tokens", "<s>", "id", "<s>", "ids", 99999, "tokens", "<s>");
    json_object_set_new(j, "post_processor", post);
}

static void cases(void) {
    st_tokenizer_t *t = NULL;
    spit(tok_path, base, base_len);
    CHECK_OK(st_tokenizer_load_json(tok_path, &t));   /* the unedited file loads */
    st_tokenizer_free(t);

    /* a member given twice: HF refuses; strata merged the vocabularies and leaked the first model */
    char *x = append_member(",\n \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}\n");
    FAIL(x, ST_ERR_FORMAT, "tokenizer.json:353:2: duplicate key 'model'", "keep one of the two");
    free(x);
    x = append_member(",\n \"added_tokens\": []\n");
    FAIL(x, ST_ERR_FORMAT, "tokenizer.json:353:2: duplicate key 'added_tokens'", NULL);
    free(x);
    x = strdup(base);
    char *merges = strstr(x, "\"merges\"");
    CHECK(merges != NULL);
    if (merges) {
        memcpy(merges, "\"vocab\" ", 8);   /* "merges" -> "vocab" : a second vocab (a list: never read) */
        FAIL(x, ST_ERR_FORMAT, "duplicate key 'model.vocab'", NULL);
    }
    free(x);
    x = append_member("");
    char *type = strstr(x, "\"type\": \"BPE\"");
    CHECK(type != NULL);
    if (type) {
        size_t at = (size_t)(type - x);
        char *y = malloc(strlen(x) + 40);
        snprintf(y, strlen(x) + 40, "%.*s\"type\": \"BPE\", \"type\": \"WordPiece\", %s", (int)at, x, x + at + 14);
        FAIL(y, ST_ERR_FORMAT, "duplicate key 'model.type'", NULL);
        free(y);
    }
    free(x);

    /* ids and strings beyond the limits */
    x = edited(big_id);
    FAIL(x, ST_ERR_FORMAT, "token id 2097152 is out of range: ids are 0..2097151", NULL);
    free(x);
    x = edited(long_added);
    FAIL(x, ST_ERR_FORMAT, "added_tokens[0] content is 65537 bytes, more than the 65536 a token may have", "docs/limits.md");
    free(x);
    x = edited(template_bad_id);
    FAIL(x, ST_ERR_FORMAT, "post_processor special token '<s>' has id 99999, which is not in the vocabulary", NULL);
    free(x);

    /* the pre-tokenizer regex: file, key, position and pattern in the message */
    g_regex = "\\p{L}+|(?<x>a";
    x = edited(set_regex);
    FAIL(x, ST_ERR_UNSUPPORTED, "tokenizer.json: pre_tokenizer.pretokenizers[0].pattern.Regex: the pre-tokenizer regex "
         "does not compile at offset 13: missing closing parenthesis", "pattern: '\\p{L}+|(?<x>a'");
    free(x);
    g_regex = "\\s+|[\\S]";
    x = edited(set_regex);
    FAIL(x, ST_ERR_UNSUPPORTED, "pre_tokenizer.pretokenizers[0].pattern.Regex: \\S inside a character class at offset 5 "
         "of the pre-tokenizer regex '\\s+|[\\S]'", NULL);
    free(x);
    /* \s and \S expand to a 90-byte class each: a pattern of nothing else overflowed the translation buffer */
    g_regex = "\\S\\S\\S\\S\\S\\S\\S\\S\\S\\S\\S\\S\\S\\S\\S\\S\\S\\S|\\s\\s\\s\\s\\s\\s\\s\\s|\\S|\\s";
    x = edited(set_regex);
    spit(tok_path, x, strlen(x));
    CHECK_OK(st_tokenizer_load_json(tok_path, &t));
    if (t) {
        int32_t ids[64];
        int64_t n = 0;
        CHECK_OK(st_tokenizer_encode(t, "ab  the", 7, 0, ids, 64, &n));
        CHECK(n == 7);   /* the regex cuts every character: no merge applies inside one-character pieces */
        st_tokenizer_free(t);
    }
    free(x);

    /* a sibling file that exists but is not JSON is an error, not silently other stop tokens */
    char sib[400];
    snprintf(sib, sizeof sib, "%s/tokenizer_config.json", tmpdir);
    spit(sib, "{\"eos_token\": ", 14);
    spit(tok_path, base, base_len);
    CHECK_ERR(st_tokenizer_load_json(tok_path, &t), ST_ERR_FORMAT, "tokenizer_config.json:1:14: invalid JSON");
    spit(sib, "{\"eos_token\": \"<|im_end|>\"}", 27);
    CHECK_OK(st_tokenizer_load_json(tok_path, &t));
    if (t) {
        CHECK(st_tokenizer_eos(t) == 265 && st_tokenizer_is_stop(t, 265));
        st_tokenizer_free(t);
    }
    unlink(sib);

    /* a file over the reader's limit is refused before it is read */
    char *d = NULL;
    size_t len;
    CHECK_ERR(st_read_file_limit(tok_path, 1000, &d, &len), ST_ERR_FORMAT, "more than the 1000 B this reader accepts");
    CHECK(d == NULL);
}

/* GGUF vocabularies over the limits (built in memory: no file) */
static void gguf_cases(void) {
    size_t n_tok = (size_t)ST_MODEL_MAX_VOCAB + 1;
    size_t cap = 4096 + n_tok * 8;
    uint8_t *b = calloc(1, cap);
    size_t o = 0;
#define U32(v) do { uint32_t _v = (v); memcpy(b + o, &_v, 4); o += 4; } while (0)
#define U64(v) do { uint64_t _v = (v); memcpy(b + o, &_v, 8); o += 8; } while (0)
#define STR(s) do { U64(strlen(s)); memcpy(b + o, s, strlen(s)); o += strlen(s); } while (0)
    memcpy(b, "GGUF", 4); o = 4; U32(3); U64(0); U64(2);
    STR("tokenizer.ggml.model"); U32(ST_GGUF_STRING); STR("gpt2");
    STR("tokenizer.ggml.tokens"); U32(ST_GGUF_ARRAY); U32(ST_GGUF_STRING); U64(n_tok);
    o += n_tok * 8;   /* empty strings */
    struct st_gguf *g = NULL;
    CHECK_OK(st_gguf_parse("big-vocab.gguf", b, o, &g));
    if (g) {
        st_tokenizer_t *t = NULL;
        CHECK_ERR(st_tokenizer_load_gguf_meta(g, "big-vocab.gguf", &t), ST_ERR_FORMAT,
                  "big-vocab.gguf: tokenizer.ggml.tokens has 2097153 entries; a vocabulary has 1 to 2097152");
        st_gguf_free(g);
    }
    free(b);
#undef U32
#undef U64
#undef STR
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/strata-tok-bad-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", tmpdir);
    if (st_read_file("tests/fuzz/corpus/tokenizer_json/qwen", &base, &base_len)) {
        fprintf(stderr, "%s\n", st_last_error());
        return 1;
    }
    cases();
    gguf_cases();
    free(base);
    unlink(tok_path);
    rmdir(tmpdir);
    return st_test_finish("tokenizer_bad");
}
