/* Tokenizer parity with Hugging Face `tokenizers` on the committed corpus
 * (tests/tokenizer/gen_corpus.py): the Qwen3 tokenizer.json must give exactly
 * HF's ids for every line and every multi-line block, decode(encode(x)) must
 * be NFC(x), and decoding byte-token sequences that spell ill-formed UTF-8
 * must put U+FFFD where HF does, both in one call and streamed token by token. */
#include "check.h"
#include "corpus.h"
#include "model/tokenizer.h"

#define QWEN3_JSON "tests/fixtures/tokenizers/qwen3/tokenizer.json"
#define MAX_IDS (1 << 16)

static int32_t got[MAX_IDS], want[MAX_IDS];

static void show_case(const char *what, size_t i, const char *text, size_t len, const int32_t *a, int64_t na,
                      const int32_t *b, int64_t nb) {
    fprintf(stderr, "%s case %zu: ", what, i);
    for (size_t k = 0; k < len && k < 120; k++) {
        unsigned char c = (unsigned char)text[k];
        if (c >= 0x20 && c < 0x7f) fputc(c, stderr); else fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, "\n  got :");
    for (int64_t k = 0; k < na && k < 40; k++) fprintf(stderr, " %d", a[k]);
    fprintf(stderr, "\n  want:");
    for (int64_t k = 0; k < nb && k < 40; k++) fprintf(stderr, " %d", b[k]);
    fprintf(stderr, "\n");
}

static int hexval(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

int main(void) {
    st_tokenizer_t *tok = NULL;
    CHECK_OK(st_tokenizer_load_json(QWEN3_JSON, &tok));
    if (!tok) return st_test_finish("tokenizer_parity");
    CHECK(st_tokenizer_n_vocab(tok) == 151669);

    struct lines C, E, N, D;
    CHECK(lines_read("tests/tokenizer/corpus.txt", &C) == 0);
    CHECK(lines_read("tests/tokenizer/qwen3_expected.txt", &E) == 0);
    CHECK(lines_read("tests/tokenizer/qwen3_nfc.txt", &N) == 0);
    CHECK(lines_read("tests/tokenizer/qwen3_decode.txt", &D) == 0);
    CHECK_MSG(C.n >= 2000, "corpus has %zu lines", C.n);
    CHECK(E.n == corpus_n_cases(&C));
    CHECK(N.n == C.n);

    /* ids equal HF, line by line and block by block */
    int shown = 0;
    size_t bad_ids = 0;
    for (size_t i = 0; i < E.n && i < corpus_n_cases(&C); i++) {
        size_t len;
        char *text = corpus_case(&C, i, &len);
        int64_t n = 0, nw = parse_ids(E.s[i], E.len[i], want, MAX_IDS);
        st_status s = st_tokenizer_encode(tok, text, len, ST_TOK_DEFAULT, got, MAX_IDS, &n);
        bool same = s == ST_OK && n == nw && !memcmp(got, want, (size_t)n * sizeof *got);
        if (!same) {
            bad_ids++;
            if (shown++ < 8) show_case(i < C.n ? "line" : "block", i, text, len, got, n, want, nw);
        }
        free(text);
    }
    CHECK_MSG(bad_ids == 0, "%zu of %zu cases differ from HF tokenizers", bad_ids, E.n);

    /* decode(encode(x)) == NFC(x) (x with ill-formed bytes repaired as Python does) */
    static char dec[1 << 17];
    size_t bad_rt = 0;
    for (size_t i = 0; i < C.n && i < N.n; i++) {
        int64_t n = 0;
        size_t dl = 0;
        if (st_tokenizer_encode(tok, C.s[i], C.len[i], ST_TOK_DEFAULT, got, MAX_IDS, &n)) { bad_rt++; continue; }
        st_tokenizer_decode(tok, got, n, 0, dec, sizeof dec, &dl);
        if (dl != N.len[i] || memcmp(dec, N.s[i], dl)) {
            if (bad_rt++ < 5) fprintf(stderr, "round trip differs on line %zu: %.*s\n", i, (int)dl, dec);
        }
    }
    CHECK_MSG(bad_rt == 0, "%zu lines fail decode(encode(x)) == NFC(x)", bad_rt);

    /* HF decode of ill-formed byte sequences: one call and streamed */
    st_detok_stream_t *st[2] = {NULL, NULL};
    CHECK_OK(st_detok_stream_init(tok, 0, &st[0]));
    CHECK_OK(st_detok_stream_init(tok, ST_DETOK_SKIP_SPECIAL, &st[1]));
    size_t bad_dec = 0, bad_stream = 0;
    for (size_t i = 0; i < D.n && st[0] && st[1]; i++) {
        const char *l = D.s[i], *t1 = memchr(l, '\t', D.len[i]);
        const char *t2 = t1 ? memchr(t1 + 1, '\t', D.len[i] - (size_t)(t1 + 1 - l)) : NULL;
        if (!t1 || !t2) { bad_dec++; continue; }
        int skip = l[0] == '1';
        int64_t n = parse_ids(t1 + 1, (size_t)(t2 - t1 - 1), got, MAX_IDS);
        size_t hl = D.len[i] - (size_t)(t2 + 1 - l);
        char expect[1024];
        size_t el = hl / 2;
        for (size_t k = 0; k < el; k++) expect[k] = (char)(hexval(t2[1 + 2 * k]) * 16 + hexval(t2[2 + 2 * k]));
        size_t dl = 0;
        st_tokenizer_decode(tok, got, n, skip ? ST_DETOK_SKIP_SPECIAL : 0, dec, sizeof dec, &dl);
        if (dl != el || memcmp(dec, expect, el)) bad_dec++;
        /* streamed: every piece is well-formed UTF-8, and the pieces add up */
        st_detok_stream_t *s = st[skip];
        st_detok_stream_reset(s);
        size_t at = 0, pl;
        bool ok = true;
        for (int64_t k = 0; k < n; k++) {
            const char *p = st_detok_stream_push(s, got[k], &pl);
            ok = ok && st_utf8_valid(p, pl) && at + pl <= sizeof dec;
            if (ok) memcpy(dec + at, p, pl);
            at += pl;
        }
        const char *p = st_detok_stream_flush(s, &pl);
        if (ok && at + pl <= sizeof dec) memcpy(dec + at, p, pl);
        at += pl;
        if (!ok || at != el || memcmp(dec, expect, el)) bad_stream++;
    }
    CHECK_MSG(D.n >= 800 && bad_dec == 0, "%zu of %zu decode cases differ from HF", bad_dec, D.n);
    CHECK_MSG(bad_stream == 0, "%zu of %zu streamed decode cases differ from HF", bad_stream, D.n);
    st_detok_stream_free(st[0]);
    st_detok_stream_free(st[1]);

    lines_free(&C);
    lines_free(&E);
    lines_free(&N);
    lines_free(&D);
    st_tokenizer_free(tok);
    return st_test_finish("tokenizer_parity");
}
