/* GGUF vocabularies (fixtures written at test time by make_vocab_gguf.py):
 * - the Qwen3 vocabulary as a GGUF "gpt2" vocab (pre = "qwen2") gives the same
 *   ids as tokenizer.json on the whole parity corpus;
 * - a hand-made SentencePiece "llama" vocab with scores and <0xXX> byte tokens
 *   gives hand-computed ids and the ids of a brute-force reference;
 * - malformed vocabularies fail with messages that say what is wrong. */
#include "check.h"
#include "corpus.h"
#include "model/model-impl.h"
#include "model/tokenizer.h"

#define MAX_IDS (1 << 16)
static int32_t a[MAX_IDS], b[MAX_IDS];

static st_status open_gguf(const char *path, char **data, struct st_gguf **g) {
    size_t len = 0;
    st_status s = st_read_file(path, data, &len);
    if (s) return s;
    return st_gguf_parse(path, *data, len, g);
}

/* ids of the pieces named (NULL-terminated list) */
static int64_t pieces(st_tokenizer_t *t, const char *const *names, int32_t *out) {
    int64_t n = 0;
    for (; names[n]; n++) out[n] = st_tokenizer_find(t, names[n], strlen(names[n]));
    return n;
}

static bool encodes_to(st_tokenizer_t *t, const char *text, unsigned flags, const char *const *names) {
    int32_t want[64], got[64];
    int64_t nw = pieces(t, names, want), n = 0;
    if (st_tokenizer_encode(t, text, strlen(text), flags, got, 64, &n)) return false;
    bool ok = n == nw && !memcmp(got, want, (size_t)n * sizeof *got);
    if (!ok) {
        fprintf(stderr, "'%s': got", text);
        for (int64_t k = 0; k < n; k++) fprintf(stderr, " %d", got[k]);
        fprintf(stderr, " want");
        for (int64_t k = 0; k < nw; k++) fprintf(stderr, " %d", want[k]);
        fprintf(stderr, "\n");
    }
    return ok;
}

static void test_qwen3_gguf(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/qwen3-vocab.gguf", dir);
    char *data = NULL;
    struct st_gguf *g = NULL;
    st_tokenizer_t *tg = NULL, *tj = NULL;
    CHECK_OK(open_gguf(path, &data, &g));
    CHECK_OK(st_tokenizer_load_gguf_meta(g, path, &tg));
    CHECK_OK(st_tokenizer_load_json("tests/fixtures/tokenizers/qwen3/tokenizer.json", &tj));
    if (!tg || !tj) goto done;
    CHECK(st_tokenizer_n_vocab(tg) == 151936);
    CHECK(st_tokenizer_bos(tg) == 151643 && st_tokenizer_eos(tg) == 151645);
    CHECK(st_tokenizer_is_stop(tg, 151645) && st_tokenizer_is_stop(tg, 151643));
    CHECK(st_tokenizer_is_stop(tj, 151645) && st_tokenizer_is_stop(tj, 151643));
    CHECK(st_tokenizer_eos(tj) == 151645 && st_tokenizer_bos(tj) == -1);
    CHECK(!st_tokenizer_is_stop(tg, 151667));
    struct lines C;
    CHECK(lines_read("tests/tokenizer/corpus.txt", &C) == 0);
    size_t bad = 0, nc = corpus_n_cases(&C);
    for (size_t i = 0; i < nc; i++) {
        size_t len;
        char *text = corpus_case(&C, i, &len);
        int64_t na = 0, nb = 0;
        st_status s1 = st_tokenizer_encode(tg, text, len, ST_TOK_DEFAULT, a, MAX_IDS, &na);
        st_status s2 = st_tokenizer_encode(tj, text, len, ST_TOK_DEFAULT, b, MAX_IDS, &nb);
        if (s1 || s2 || na != nb || memcmp(a, b, (size_t)na * sizeof *a)) {
            if (bad++ < 5) fprintf(stderr, "GGUF and tokenizer.json differ on case %zu\n", i);
        }
        /* decoding agrees too */
        static char d1[1 << 17], d2[1 << 17];
        size_t l1, l2;
        st_tokenizer_decode(tg, a, na, 0, d1, sizeof d1, &l1);
        st_tokenizer_decode(tj, b, nb, 0, d2, sizeof d2, &l2);
        if (l1 != l2 || memcmp(d1, d2, l1)) bad++;
        free(text);
    }
    CHECK_MSG(bad == 0, "%zu of %zu cases differ between the GGUF and tokenizer.json paths", bad, nc);
    lines_free(&C);
    /* padding entries decode to nothing special and are never produced */
    size_t pl;
    CHECK(st_tokenizer_token_text(tg, 151900, &pl) && pl == strlen("[PAD151900]"));
    int64_t n;
    CHECK_OK(st_tokenizer_encode(tg, "[PAD151900]", 11, ST_TOK_DEFAULT, a, MAX_IDS, &n));
    CHECK(n > 1);
done:
    st_tokenizer_free(tg);
    st_tokenizer_free(tj);
    st_gguf_free(g);
    free(data);
}

static int hexv(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

static void test_spm(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/spm-tiny.gguf", dir);
    char *data = NULL;
    struct st_gguf *g = NULL;
    st_tokenizer_t *t = NULL;
    CHECK_OK(open_gguf(path, &data, &g));
    CHECK_OK(st_tokenizer_load_gguf_meta(g, path, &t));
    if (!t) goto done;
    CHECK(st_tokenizer_get_kind(t) == ST_TOKENIZER_SPM);
    CHECK(st_tokenizer_bos(t) == 1 && st_tokenizer_eos(t) == 2);
    CHECK(st_tokenizer_is_stop(t, 2));

    /* hand-computed (scores: ▁a -1, ▁b -2, cd -2.5, bcd -2.6, ab = bc = aa -3, ▁ab -5) */
    /* "▁abc": ▁a (-1) first; then bc (-3) beats ▁ab (-5); ▁abc is no piece */
    CHECK(encodes_to(t, "abc", ST_TOK_DEFAULT, (const char *const[]){"<s>", "▁a", "bc", NULL}));
    /* "▁bc▁ab": ▁a, then ▁b, then ▁ab */
    CHECK(encodes_to(t, "bc ab", ST_TOK_DEFAULT, (const char *const[]){"<s>", "▁b", "c", "▁ab", NULL}));
    /* "▁dabcd": cd (-2.5) first → ▁ d a b cd; then b+cd = bcd (-2.6) beats ab (-3) */
    CHECK(encodes_to(t, "dabcd", ST_TOK_DEFAULT, (const char *const[]){"<s>", "▁", "d", "a", "bcd", NULL}));
    /* "aaa": ▁a first, then aa */
    CHECK(encodes_to(t, "aaa", ST_TOK_DEFAULT, (const char *const[]){"<s>", "▁a", "aa", NULL}));
    /* unknown characters fall back to bytes */
    CHECK(encodes_to(t, "x", ST_TOK_DEFAULT, (const char *const[]){"<s>", "▁", "<0x78>", NULL}));
    CHECK(encodes_to(t, "\xc3\xb1", 0, (const char *const[]){"▁", "<0xC3>", "<0xB1>", NULL}));
    /* specials: <s> parsed only with PARSE_SPECIAL; after a special the space prefix comes back */
    CHECK(encodes_to(t, "<s>hello", ST_TOK_PARSE_SPECIAL, (const char *const[]){"<s>", "▁hello", NULL}));
    /* "▁world": ▁w (-11), then or (-12); "▁wo" and "▁wor" are no pieces, so ▁world is never reached */
    CHECK(encodes_to(t, "hello<sep>world", 0, (const char *const[]){"▁hello", "<sep>", "▁w", "or", "l", "d", NULL}));
    CHECK(encodes_to(t, "hello world", 0, (const char *const[]){"▁hello", "▁w", "or", "l", "d", NULL}));

    /* decode: ▁ → space, leading space dropped, bytes joined */
    int32_t ids[8];
    int64_t n = pieces(t, (const char *const[]){"▁hello", "▁world", "<0xC3>", "<0xB1>", NULL}, ids);
    char out[64];
    size_t ol;
    CHECK_OK(st_tokenizer_decode(t, ids, n, 0, out, sizeof out, &ol));
    CHECK(ol == 13 && !memcmp(out, "hello world\xc3\xb1", 13));
    n = pieces(t, (const char *const[]){"<0xC3>", "a", NULL}, ids);
    CHECK_OK(st_tokenizer_decode(t, ids, n, 0, out, sizeof out, &ol));
    CHECK(ol == 4 && !memcmp(out, "\xef\xbf\xbd" "a", 4));

    /* brute-force reference on random strings */
    struct lines E;
    char exp_path[1024];
    snprintf(exp_path, sizeof exp_path, "%s/spm-tiny-expected.txt", dir);
    CHECK(lines_read(exp_path, &E) == 0);
    size_t bad = 0;
    for (size_t i = 0; i < E.n; i++) {
        const char *tab = memchr(E.s[i], '\t', E.len[i]);
        if (!tab) { bad++; continue; }
        char text[256];
        size_t tl = (size_t)(tab - E.s[i]) / 2;
        for (size_t k = 0; k < tl; k++) text[k] = (char)(hexv(E.s[i][2 * k]) * 16 + hexv(E.s[i][2 * k + 1]));
        int64_t nw = parse_ids(tab + 1, E.len[i] - (size_t)(tab + 1 - E.s[i]), b, MAX_IDS), na = 0;
        if (st_tokenizer_encode(t, text, tl, ST_TOK_DEFAULT, a, MAX_IDS, &na) || na != nw ||
            memcmp(a, b, (size_t)na * sizeof *a)) {
            if (bad++ < 5) fprintf(stderr, "SPM differs from brute force on '%.*s'\n", (int)tl, text);
        }
        /* round trip */
        size_t dl;
        char d[1024];
        st_tokenizer_decode(t, a, na, ST_DETOK_SKIP_SPECIAL, d, sizeof d, &dl);
        if (dl != tl || memcmp(d, text, tl)) {
            if (bad++ < 5) fprintf(stderr, "SPM round trip differs on '%.*s': '%.*s'\n", (int)tl, text, (int)dl, d);
        }
    }
    CHECK_MSG(E.n >= 400 && bad == 0, "%zu of %zu SPM cases differ", bad, E.n);
    lines_free(&E);
done:
    st_tokenizer_free(t);
    st_gguf_free(g);
    free(data);
}

/* A GGUF written in memory with the given metadata (strings arrays etc.). */
struct gw { uint8_t *p; size_t n, cap; };
static void put(struct gw *w, const void *d, size_t n) {
    if (w->n + n > w->cap) { w->cap = (w->n + n) * 2 + 256; w->p = realloc(w->p, w->cap); }
    memcpy(w->p + w->n, d, n);
    w->n += n;
}
static void put_u32(struct gw *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(struct gw *w, uint64_t v) { put(w, &v, 8); }
static void put_str(struct gw *w, const char *s) { put_u64(w, strlen(s)); put(w, s, strlen(s)); }
static void kv_str(struct gw *w, const char *k, const char *v) { put_str(w, k); put_u32(w, ST_GGUF_STRING); put_str(w, v); }
static void kv_strs(struct gw *w, const char *k, const char *const *v, int n) {
    put_str(w, k); put_u32(w, ST_GGUF_ARRAY); put_u32(w, ST_GGUF_STRING); put_u64(w, (uint64_t)n);
    for (int i = 0; i < n; i++) put_str(w, v[i]);
}

static st_status load_mem(struct gw *w, st_tokenizer_t **t) {
    struct st_gguf *g = NULL;
    st_status s = st_gguf_parse("bad.gguf", w->p, w->n, &g);
    if (!s) s = st_tokenizer_load_gguf_meta(g, "bad.gguf", t);
    st_gguf_free(g);
    return s;
}

static void begin(struct gw *w, int n_kv) {
    w->n = 0;
    put(w, "GGUF", 4);
    put_u32(w, 3);
    put_u64(w, 0);            /* tensors */
    put_u64(w, (uint64_t)n_kv);
}

static void test_bad_gguf(void) {
    struct gw w = {0};
    st_tokenizer_t *t = NULL;
    static const char *const bytes_missing[] = {"a", "b", "ab"};
    static const char *const merges[] = {"a b"};

    begin(&w, 1);
    kv_str(&w, "general.architecture", "qwen2");
    CHECK_ERR(load_mem(&w, &t), ST_ERR_FORMAT, "tokenizer.ggml.model is missing");

    begin(&w, 1);
    kv_str(&w, "tokenizer.ggml.model", "bert");
    CHECK_ERR(load_mem(&w, &t), ST_ERR_UNSUPPORTED, "tokenizer.ggml.model \"bert\" is not supported");

    begin(&w, 3);
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_str(&w, "tokenizer.ggml.pre", "qwen9");
    kv_strs(&w, "tokenizer.ggml.tokens", bytes_missing, 3);
    CHECK_ERR(load_mem(&w, &t), ST_ERR_UNSUPPORTED, "tokenizer.ggml.pre \"qwen9\" is not a pre-tokenizer");

    begin(&w, 4);
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_str(&w, "tokenizer.ggml.pre", "qwen2");
    kv_strs(&w, "tokenizer.ggml.tokens", bytes_missing, 3);
    kv_strs(&w, "tokenizer.ggml.merges", (const char *const[]){"a c"}, 1);
    CHECK_ERR(load_mem(&w, &t), ST_ERR_FORMAT, "merge 0 (\"a\" + \"c\") refers to a token missing");

    begin(&w, 4);
    kv_str(&w, "tokenizer.ggml.model", "gpt2");
    kv_str(&w, "tokenizer.ggml.pre", "qwen2");
    kv_strs(&w, "tokenizer.ggml.tokens", bytes_missing, 3);
    kv_strs(&w, "tokenizer.ggml.merges", merges, 1);
    CHECK_ERR(load_mem(&w, &t), ST_ERR_FORMAT, "has no token for byte 0x00");

    begin(&w, 2);
    kv_str(&w, "tokenizer.ggml.model", "llama");
    kv_strs(&w, "tokenizer.ggml.tokens", bytes_missing, 3);
    CHECK_ERR(load_mem(&w, &t), ST_ERR_FORMAT, "needs tokenizer.ggml.scores");
    CHECK(t == NULL);
    free(w.p);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_tokenizer_gguf FIXTURE_DIR (written by make_vocab_gguf.py)\n");
        return 1;
    }
    test_qwen3_gguf(argv[1]);
    test_spm(argv[1]);
    test_bad_gguf();
    return st_test_finish("tokenizer_gguf");
}
