/* tests/tokenizer/corpus.h — reads the parity corpus and its expectations
 * (written by tests/tokenizer/gen_corpus.py). Test-only helpers. */
#ifndef STRATA_TEST_TOK_CORPUS_H
#define STRATA_TEST_TOK_CORPUS_H

#include <stdlib.h>
#include <string.h>

#include "base/base.h"

#define CORPUS_BLOCK 7   /* gen_corpus.py BLOCK */

struct lines {
    char *data;
    size_t n;
    char **s;      /* (n) pointers into data */
    size_t *len;   /* (n) bytes, without the '\n' */
};

static inline int lines_read(const char *path, struct lines *L) {
    size_t len = 0;
    memset(L, 0, sizeof *L);
    if (st_read_file(path, &L->data, &len)) {
        fprintf(stderr, "%s\n", st_last_error());
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += L->data[i] == '\n';
    L->s = calloc(n + 1, sizeof *L->s);
    L->len = calloc(n + 1, sizeof *L->len);
    size_t k = 0, start = 0;
    for (size_t i = 0; i < len; i++) {
        if (L->data[i] != '\n') continue;
        L->s[k] = L->data + start;
        L->len[k] = i - start;
        k++;
        start = i + 1;
    }
    L->n = k;
    return 0;
}

static inline void lines_free(struct lines *L) {
    free(L->data);
    free(L->s);
    free(L->len);
}

/* ids "1 2 3" -> array; returns count */
static inline int64_t parse_ids(const char *s, size_t len, int32_t *out, int64_t cap) {
    int64_t n = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && s[i] == ' ') i++;
        if (i >= len) break;
        long v = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0');
        if (n < cap) out[n] = (int32_t)v;
        n++;
    }
    return n;
}

/* Case i of the parity set: corpus lines first, then blocks of CORPUS_BLOCK
 * lines joined with '\n' plus a final '\n'. Returns malloc'ed bytes. */
static inline char *corpus_case(const struct lines *C, size_t i, size_t *len) {
    if (i < C->n) {
        char *p = malloc(C->len[i] + 1);
        memcpy(p, C->s[i], C->len[i]);
        *len = C->len[i];
        return p;
    }
    size_t b = (i - C->n) * CORPUS_BLOCK, e = ST_MIN(b + CORPUS_BLOCK, C->n), n = 0;
    for (size_t k = b; k < e; k++) n += C->len[k] + 1;
    char *p = malloc(n + 1), *q = p;
    for (size_t k = b; k < e; k++) {
        memcpy(q, C->s[k], C->len[k]);
        q += C->len[k];
        *q++ = '\n';
    }
    *len = n;
    return p;
}

static inline size_t corpus_n_cases(const struct lines *C) {
    return C->n + (C->n + CORPUS_BLOCK - 1) / CORPUS_BLOCK;
}

#endif
