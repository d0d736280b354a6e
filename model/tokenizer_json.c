/* model/tokenizer_json.c — loads a Hugging Face tokenizer.json.
 *
 * The 11 MB Qwen vocabulary is mostly two huge members, model.vocab and
 * model.merges; a general JSON DOM spends ~250 ms building and ~50 ms freeing
 * them. This loader walks the file with a small pull parser, reads those two
 * members straight into the tokenizer's tables, and hands every other member
 * (small) to jansson. Errors name file:line:column. */
#include "model/tokenizer-impl.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct jp {
    const char *base, *p, *end;
    const char *path;
};

static void line_col(const char *base, const char *at, int *line, int *col) {
    int l = 1, c = 1;
    for (const char *q = base; q < at; q++) {
        if (*q == '\n') { l++; c = 1; } else if (((uint8_t)*q & 0xC0) != 0x80) c++;
    }
    *line = l;
    *col = c;
}

static st_status jp_fail_hint(struct jp *j, const char *at, const char *what, const char *hint) {
    int l, c;
    line_col(j->base, at, &l, &c);
    st_error_set(ST_ERR_FORMAT, "%s:%d:%d: %s", j->path, l, c, what);
    return st_error_hint("%s", hint);
}

static st_status jp_fail(struct jp *j, const char *at, const char *what) {
    return jp_fail_hint(j, at, what, "the file is not valid tokenizer.json; re-download it or check it with "
                        "'python3 -m json.tool'");
}

static st_status duplicate(struct jp *j, const char *at, const char *parent, const char *key) {
    char m[200];
    snprintf(m, sizeof m, "duplicate key '%s%.100s'", parent, key);
    return jp_fail_hint(j, at, m, "a key may appear once per object (Hugging Face refuses this file too); keep one of the two");
}

static st_status too_long(struct jp *j, const char *at, const char *what, size_t len) {
    char m[200];
    snprintf(m, sizeof m, "%s is %zu bytes, more than the %d a token may have", what, len, ST_TOK_MAX_TOKEN_BYTES);
    return jp_fail_hint(j, at, m, "strata's limits are in docs/limits.md; is the file corrupt?");
}

static inline void ws(struct jp *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static st_status expect(struct jp *j, char c) {
    ws(j);
    if (j->p >= j->end || *j->p != c) {
        char m[64];
        snprintf(m, sizeof m, "expected '%c'", c);
        return jp_fail(j, j->p, m);
    }
    j->p++;
    return ST_OK;
}

struct sbuf { char *d; size_t len, cap; };

static st_status sb_reserve(struct sbuf *b, size_t extra) {
    if (b->len + extra <= b->cap) return ST_OK;
    size_t c = b->cap ? b->cap : 1024;
    while (c < b->len + extra) c *= 2;
    char *d = st_realloc(b->d, c, "tokenizer.json strings");
    if (!d) return ST_ERR_NOMEM;
    b->d = d;
    b->cap = c;
    return ST_OK;
}

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads a JSON string, appending its UTF-8 bytes to b. */
static st_status jp_str(struct jp *j, struct sbuf *b) {
    ws(j);
    if (j->p >= j->end || *j->p != '"') return jp_fail(j, j->p, "expected a string");
    const char *q = ++j->p;
    st_status s;
    for (;;) {
        const char *r = q;
        while (r < j->end && *r != '"' && *r != '\\' && (uint8_t)*r >= 0x20) r++;
        if ((s = sb_reserve(b, (size_t)(r - q) + 4))) return s;
        memcpy(b->d + b->len, q, (size_t)(r - q));
        b->len += (size_t)(r - q);
        if (r >= j->end) return jp_fail(j, j->p - 1, "unterminated string");
        if (*r == '"') { j->p = r + 1; return ST_OK; }
        if ((uint8_t)*r < 0x20) return jp_fail(j, r, "control character inside a string");
        /* escape */
        if (r + 1 >= j->end) return jp_fail(j, r, "unterminated escape");
        char e = r[1];
        q = r + 2;
        char c;
        switch (e) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            uint32_t cp = 0;
            for (int k = 0; k < 4; k++) {
                int v = q + k < j->end ? hexv(q[k]) : -1;
                if (v < 0) return jp_fail(j, r, "bad \\u escape");
                cp = cp * 16 + (uint32_t)v;
            }
            q += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && q + 6 <= j->end && q[0] == '\\' && q[1] == 'u') {
                uint32_t lo = 0;
                int ok = 1;
                for (int k = 0; k < 4; k++) {
                    int v = hexv(q[2 + k]);
                    if (v < 0) { ok = 0; break; }
                    lo = lo * 16 + (uint32_t)v;
                }
                if (ok && lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    q += 6;
                }
            }
            if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;   /* lone surrogate (serde_json rejects; be lenient) */
            char u[4];
            size_t n;
            if (cp < 0x80) { u[0] = (char)cp; n = 1; }
            else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
            else if (cp < 0x10000) { u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); n = 3; }
            else { u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)); u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4; }
            memcpy(b->d + b->len, u, n);
            b->len += n;
            continue;
        }
        default: return jp_fail(j, r, "unknown escape in a string");
        }
        b->d[b->len++] = c;
    }
}

static st_status jp_skip(struct jp *j, int depth) {
    ws(j);
    if (j->p >= j->end) return jp_fail(j, j->p, "unexpected end of file");
    if (depth > 200) return jp_fail(j, j->p, "nesting too deep");
    char c = *j->p;
    st_status s;
    if (c == '"') {
        const char *r = j->p + 1;
        for (;;) {
            while (r < j->end && *r != '"' && *r != '\\') r++;
            if (r >= j->end) return jp_fail(j, j->p, "unterminated string");
            if (*r == '\\') { r += 2; continue; }
            break;
        }
        j->p = r + 1;
        return ST_OK;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        ws(j);
        if (j->p < j->end && *j->p == close) { j->p++; return ST_OK; }
        for (;;) {
            if (c == '{') {
                ws(j);
                if (j->p >= j->end || *j->p != '"') return jp_fail(j, j->p, "expected a key");
                if ((s = jp_skip(j, depth + 1))) return s;
                if ((s = expect(j, ':'))) return s;
            }
            if ((s = jp_skip(j, depth + 1))) return s;
            ws(j);
            if (j->p < j->end && *j->p == ',') { j->p++; continue; }
            if (j->p < j->end && *j->p == close) { j->p++; return ST_OK; }
            return jp_fail(j, j->p, c == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    /* number, true, false, null */
    const char *r = j->p;
    while (r < j->end && (strchr("+-.eE", *r) || (*r >= '0' && *r <= '9') || (*r >= 'a' && *r <= 'z'))) r++;
    if (r == j->p) return jp_fail(j, j->p, "unexpected character");
    j->p = r;
    return ST_OK;
}

/* Parses the next value with jansson (small members only). */
static st_status jp_json(struct jp *j, json_t **out) {
    ws(j);
    const char *start = j->p;
    st_status s = jp_skip(j, 0);
    if (s) return s;
    json_error_t e;
    *out = json_loadb(start, (size_t)(j->p - start), JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!*out) return jp_fail(j, start + (e.position > 0 ? e.position : 0), e.text);
    return ST_OK;
}

static st_status jp_int(struct jp *j, int64_t *v) {
    ws(j);
    const char *r = j->p;
    bool neg = r < j->end && *r == '-';
    if (neg) r++;
    int64_t x = 0;
    const char *d = r;
    while (r < j->end && *r >= '0' && *r <= '9' && r - d < 18) x = x * 10 + (*r++ - '0');
    if (r == d || (r < j->end && (*r == '.' || *r == 'e' || *r == 'E' || (*r >= '0' && *r <= '9'))))
        return jp_fail(j, j->p, "expected a token id (integer)");
    j->p = r;
    *v = neg ? -x : x;
    return ST_OK;
}

/* ---- the file's members --------------------------------------------------- */

struct vocab_rec { uint32_t off, len; int32_t id; };
struct merge_rec { uint32_t loff, llen, roff, rlen; const char *at; };

struct load {
    struct jp j;
    struct sbuf vstr;             /* vocab strings */
    struct vocab_rec *v; size_t nv, capv;
    struct sbuf mstr;             /* merge strings */
    struct merge_rec *m; size_t nm, capm;
    json_t *model_rest;           /* model members other than vocab/merges */
    json_t *added, *normalizer, *pre, *post, *decoder;
    bool have_vocab, have_merges, have_model;
};

static st_status parse_vocab(struct load *L) {
    struct jp *j = &L->j;
    st_status s;
    if ((s = expect(j, '{'))) return s;
    ws(j);
    if (j->p < j->end && *j->p == '}') { j->p++; return ST_OK; }
    for (;;) {
        size_t off = L->vstr.len;
        ws(j);
        const char *kat = j->p;
        if ((s = jp_str(j, &L->vstr))) return s;
        if (L->vstr.len - off > ST_TOK_MAX_TOKEN_BYTES) return too_long(j, kat, "model.vocab entry", L->vstr.len - off);
        if ((s = expect(j, ':'))) return s;
        int64_t id = 0;
        ws(j);
        const char *at = j->p;
        if ((s = jp_int(j, &id))) return s;
        if (id < 0 || id >= ST_MODEL_MAX_VOCAB) {
            char m[128];
            snprintf(m, sizeof m, "token id %lld is out of range: ids are 0..%d", (long long)id, ST_MODEL_MAX_VOCAB - 1);
            return jp_fail(j, at, m);
        }
        if (L->nv == L->capv) {
            L->capv = L->capv ? L->capv * 2 : 1024;
            struct vocab_rec *p = st_realloc(L->v, L->capv * sizeof *p, "the vocabulary");
            if (!p) return ST_ERR_NOMEM;
            L->v = p;
        }
        L->v[L->nv++] = (struct vocab_rec){(uint32_t)off, (uint32_t)(L->vstr.len - off), (int32_t)id};
        ws(j);
        if (j->p < j->end && *j->p == ',') { j->p++; continue; }
        if (j->p < j->end && *j->p == '}') { j->p++; return ST_OK; }
        return jp_fail(j, j->p, "expected ',' or '}' in model.vocab");
    }
}

static st_status parse_merges(struct load *L) {
    struct jp *j = &L->j;
    st_status s;
    if ((s = expect(j, '['))) return s;
    ws(j);
    if (j->p < j->end && *j->p == ']') { j->p++; return ST_OK; }
    for (;;) {
        ws(j);
        const char *at = j->p;
        struct merge_rec r = {.at = at};
        if (j->p < j->end && *j->p == '[') {          /* ["a", "b"] */
            j->p++;
            r.loff = (uint32_t)L->mstr.len;
            if ((s = jp_str(j, &L->mstr))) return s;
            r.llen = (uint32_t)(L->mstr.len - r.loff);
            if ((s = expect(j, ','))) return s;
            r.roff = (uint32_t)L->mstr.len;
            if ((s = jp_str(j, &L->mstr))) return s;
            r.rlen = (uint32_t)(L->mstr.len - r.roff);
            if ((s = expect(j, ']'))) return jp_fail(j, at, "a merge pair must have exactly two strings");
        } else {                                      /* "a b" */
            uint32_t off = (uint32_t)L->mstr.len;
            if ((s = jp_str(j, &L->mstr))) return s;
            uint32_t len = (uint32_t)(L->mstr.len - off);
            const char *m = L->mstr.d + off;
            uint32_t sp = 1;
            while (sp < len && m[sp] != ' ') sp++;
            if (sp >= len) return jp_fail(j, at, "a merge string must be two symbols separated by one space");
            r.loff = off;
            r.llen = sp;
            r.roff = off + sp + 1;
            r.rlen = len - sp - 1;
        }
        if (r.llen > ST_TOK_MAX_TOKEN_BYTES || r.rlen > ST_TOK_MAX_TOKEN_BYTES)
            return too_long(j, at, "model.merges entry", ST_MAX(r.llen, r.rlen));
        if (L->nm >= ST_TOK_MAX_MERGES) {
            char m[128];
            snprintf(m, sizeof m, "model.merges has more than the %d merges strata reads", ST_TOK_MAX_MERGES);
            return jp_fail(j, at, m);
        }
        if (L->nm == L->capm) {
            L->capm = L->capm ? L->capm * 2 : 1024;
            struct merge_rec *p = st_realloc(L->m, L->capm * sizeof *p, "the merges");
            if (!p) return ST_ERR_NOMEM;
            L->m = p;
        }
        L->m[L->nm++] = r;
        ws(j);
        if (j->p < j->end && *j->p == ',') { j->p++; continue; }
        if (j->p < j->end && *j->p == ']') { j->p++; return ST_OK; }
        return jp_fail(j, j->p, "expected ',' or ']' in model.merges");
    }
}

static st_status parse_model(struct load *L) {
    struct jp *j = &L->j;
    st_status s;
    struct sbuf key = {0};
    L->have_model = true;
    L->model_rest = json_object();
    if (!L->model_rest) return st_error_set(ST_ERR_NOMEM, "out of host memory reading %s", j->path);
    if ((s = expect(j, '{'))) goto done;
    ws(j);
    if (j->p < j->end && *j->p == '}') { j->p++; goto done; }
    for (;;) {
        key.len = 0;
        ws(j);
        const char *kat = j->p;
        if ((s = jp_str(j, &key))) goto done;
        if ((s = sb_reserve(&key, 1))) goto done;
        key.d[key.len] = 0;
        if ((s = expect(j, ':'))) goto done;
        bool dup = !strcmp(key.d, "vocab") ? L->have_vocab
                 : !strcmp(key.d, "merges") ? L->have_merges : json_object_get(L->model_rest, key.d) != NULL;
        if (dup) { s = duplicate(j, kat, "model.", key.d); goto done; }
        if (!strcmp(key.d, "vocab")) { L->have_vocab = true; s = parse_vocab(L); }
        else if (!strcmp(key.d, "merges")) { L->have_merges = true; s = parse_merges(L); }
        else {
            json_t *v = NULL;
            s = jp_json(j, &v);
            if (!s && json_object_set_new(L->model_rest, key.d, v))
                s = st_error_set(ST_ERR_NOMEM, "out of host memory reading %s", j->path);
        }
        if (s) goto done;
        ws(j);
        if (j->p < j->end && *j->p == ',') { j->p++; continue; }
        if (j->p < j->end && *j->p == '}') { j->p++; break; }
        s = jp_fail(j, j->p, "expected ',' or '}' in model");
        goto done;
    }
done:
    free(key.d);
    return s;
}

static st_status parse_top(struct load *L) {
    struct jp *j = &L->j;
    st_status s;
    struct sbuf key = {0};
    if ((s = expect(j, '{'))) goto done;
    ws(j);
    if (j->p < j->end && *j->p == '}') { j->p++; goto done; }
    for (;;) {
        key.len = 0;
        ws(j);
        const char *kat = j->p;
        if ((s = jp_str(j, &key))) goto done;
        if ((s = sb_reserve(&key, 1))) goto done;
        key.d[key.len] = 0;
        if ((s = expect(j, ':'))) goto done;
        json_t **slot = !strcmp(key.d, "added_tokens") ? &L->added
                      : !strcmp(key.d, "normalizer") ? &L->normalizer
                      : !strcmp(key.d, "pre_tokenizer") ? &L->pre
                      : !strcmp(key.d, "post_processor") ? &L->post
                      : !strcmp(key.d, "decoder") ? &L->decoder : NULL;
        bool is_model = !strcmp(key.d, "model");
        /* Hugging Face (serde) refuses a member given twice; reading both would
         * merge two vocabularies (and leaked the first model's members) */
        if ((is_model && L->have_model) || (slot && *slot)) { s = duplicate(j, kat, "", key.d); goto done; }
        if (is_model) s = parse_model(L);
        else if (slot) s = jp_json(j, slot);
        else s = jp_skip(j, 0);
        if (s) goto done;
        ws(j);
        if (j->p < j->end && *j->p == ',') { j->p++; continue; }
        if (j->p < j->end && *j->p == '}') { j->p++; break; }
        s = jp_fail(j, j->p, "expected ',' or '}'");
        goto done;
    }
    ws(j);
    if (j->p != j->end) s = jp_fail(j, j->p, "extra data after the top-level object");
done:
    free(key.d);
    return s;
}

/* ---- interpreting the members -------------------------------------------- */

static const char *jstr(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool jtrue(json_t *o, const char *k) { return json_is_true(json_object_get(o, k)); }

static st_status unsupported(const char *path, const char *what, const char *detail) {
    st_error_set(ST_ERR_UNSUPPORTED, "%s: %s %s is not supported", path, what, detail);
    return st_error_hint("strata reads byte-level BPE tokenizers (Qwen2/2.5/3, Llama 3); for other models use the GGUF file's vocabulary");
}

static st_status apply_normalizer(st_tokenizer_t *t, json_t *n, const char *path) {
    if (!n || json_is_null(n)) return ST_OK;
    const char *ty = jstr(n, "type");
    if (ty && !strcmp(ty, "NFC")) { t->nfc = true; return ST_OK; }
    if (ty && !strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(n, "normalizers"), *e;
        size_t i;
        json_array_foreach(arr, i, e) {
            st_status s = apply_normalizer(t, e, path);
            if (s) return s;
        }
        return ST_OK;
    }
    return unsupported(path, "normalizer", ty ? ty : "(no type)");
}

/* key: where p sits in the file ("pre_tokenizer.pretokenizers[1]"), for messages. */
static st_status apply_pre(st_tokenizer_t *t, json_t *p, const char *path, const char *key, bool *bytelevel) {
    if (!p || json_is_null(p)) return ST_OK;
    const char *ty = jstr(p, "type");
    st_status s;
    char where[600];
    if (ty && !strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(p, "pretokenizers"), *e;
        size_t i;
        json_array_foreach(arr, i, e) {
            char sub[400];
            snprintf(sub, sizeof sub, "%.300s.pretokenizers[%zu]", key, i);
            if ((s = apply_pre(t, e, path, sub, bytelevel))) return s;
        }
        return ST_OK;
    }
    if (ty && !strcmp(ty, "ByteLevel")) {
        if (jtrue(p, "add_prefix_space")) return unsupported(path, "pre_tokenizer ByteLevel", "with add_prefix_space=true");
        json_t *ur = json_object_get(p, "use_regex");
        if (!ur || json_is_true(ur)) {
            if (t->re) return unsupported(path, "pre_tokenizer", "with two regex splits");
            snprintf(where, sizeof where, "%s: %s (ByteLevel use_regex)", path, key);
            if ((s = st_tok_set_regex(t, st_tok_regex_gpt2, where))) return s;
        }
        *bytelevel = true;
        return ST_OK;
    }
    if (ty && !strcmp(ty, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        const char *rx = jstr(pat, "Regex");
        const char *beh = jstr(p, "behavior");
        if (!rx) return unsupported(path, "pre_tokenizer Split", "with a String pattern");
        if (!beh || strcmp(beh, "Isolated")) return unsupported(path, "pre_tokenizer Split behavior", beh ? beh : "(none)");
        if (jtrue(p, "invert")) return unsupported(path, "pre_tokenizer Split", "with invert=true");
        if (t->re) return unsupported(path, "pre_tokenizer", "with two regex splits");
        if (strlen(rx) != json_string_length(json_object_get(pat, "Regex")))
            return unsupported(path, "pre_tokenizer Split", "regex holding a NUL character");
        snprintf(where, sizeof where, "%s: %s.pattern.Regex", path, key);
        return st_tok_set_regex(t, rx, where);
    }
    return unsupported(path, "pre_tokenizer", ty ? ty : "(no type)");
}

static st_status add_special_id(st_tokenizer_t *t, int32_t **ids, int *n, int64_t id, const char *name, const char *path) {
    if (id < 0 || id >= t->n_vocab || !(t->tok[id].attr & ST_TA_PRESENT)) {
        st_error_set(ST_ERR_FORMAT, "%s: post_processor special token '%.100s' has id %lld, which is not in the vocabulary",
                     path, name, (long long)id);
        return st_error_hint("the post_processor and the vocabulary do not belong together; re-export the tokenizer");
    }
    if (*n >= ST_TOK_MAX_SPECIALS) {
        st_error_set(ST_ERR_FORMAT, "%s: post_processor adds more than %d special tokens", path, ST_TOK_MAX_SPECIALS);
        return st_error_hint("real templates add one or two (BOS, EOS); is the file corrupt?");
    }
    int32_t *p = st_realloc(*ids, (size_t)(*n + 1) * sizeof *p, "special token ids");
    if (!p) return ST_ERR_NOMEM;
    *ids = p;
    p[(*n)++] = (int32_t)id;
    return ST_OK;
}

static st_status ids_of_special(st_tokenizer_t *t, json_t *specials, const char *name, int32_t **ids, int *n,
                                const char *path) {
    json_t *sp = json_object_get(specials, name);
    json_t *arr = json_object_get(sp, "ids"), *e;
    if (!json_is_array(arr)) {
        /* fall back to the token's own id */
        int32_t id = st_tokenizer_find(t, name, strlen(name));
        if (id < 0) return unsupported(path, "post_processor special token", name);
        return add_special_id(t, ids, n, id, name, path);
    }
    size_t i;
    json_array_foreach(arr, i, e) {
        st_status s = add_special_id(t, ids, n, json_is_integer(e) ? json_integer_value(e) : -1, name, path);
        if (s) return s;
    }
    return ST_OK;
}

static st_status apply_post(st_tokenizer_t *t, json_t *p, const char *path) {
    if (!p || json_is_null(p)) return ST_OK;
    const char *ty = jstr(p, "type");
    st_status s;
    if (ty && !strcmp(ty, "ByteLevel")) return ST_OK;   /* offsets only */
    if (ty && !strcmp(ty, "Sequence")) {
        json_t *arr = json_object_get(p, "processors"), *e;
        size_t i;
        json_array_foreach(arr, i, e) {
            if ((s = apply_post(t, e, path))) return s;
        }
        return ST_OK;
    }
    if (ty && !strcmp(ty, "TemplateProcessing")) {
        json_t *single = json_object_get(p, "single"), *e;
        json_t *specials = json_object_get(p, "special_tokens");
        bool seen_seq = false;
        size_t i;
        json_array_foreach(single, i, e) {
            json_t *sp = json_object_get(e, "SpecialToken");
            if (json_object_get(e, "Sequence")) { seen_seq = true; continue; }
            const char *name = jstr(sp, "id");
            if (!name) return unsupported(path, "post_processor TemplateProcessing item", "(neither SpecialToken nor Sequence)");
            if (!seen_seq) s = ids_of_special(t, specials, name, &t->prefix_ids, &t->n_prefix, path);
            else s = ids_of_special(t, specials, name, &t->suffix_ids, &t->n_suffix, path);
            if (s) return s;
        }
        return ST_OK;
    }
    return unsupported(path, "post_processor", ty ? ty : "(no type)");
}

static st_status apply_decoder(json_t *d, const char *path) {
    if (!d || json_is_null(d)) return ST_OK;
    const char *ty = jstr(d, "type");
    if (ty && !strcmp(ty, "ByteLevel")) return ST_OK;
    return unsupported(path, "decoder", ty ? ty : "(no type)");
}

/* tokenizer_config.json / generation_config.json / config.json next to the
 * file: absent is fine; present but unreadable or not JSON is an error (the
 * stop tokens would silently differ). */
static st_status load_sibling(const char *dir, const char *name, json_t **out) {
    *out = NULL;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    if (access(p, F_OK) != 0) return ST_OK;
    char *text = NULL;
    size_t len = 0;
    st_status s = st_read_file_limit(p, ST_MODEL_MAX_JSON_BYTES, &text, &len);
    if (s) return s;
    json_error_t e;
    *out = json_loadb(text, len, 0, &e);
    free(text);
    if (!*out) {
        st_error_set(ST_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", p, e.line, e.column, e.text);
        return st_error_hint("the tokenizer reads BOS/EOS and stop tokens from it; fix or remove the file");
    }
    return ST_OK;
}

static int32_t token_ref(st_tokenizer_t *t, json_t *v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) return -1;
    return st_tokenizer_find(t, json_string_value(v), json_string_length(v));
}

/* an id from JSON, or -1 when it is not one of the vocabulary's */
static int32_t json_id(const st_tokenizer_t *t, json_t *v) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    return x >= 0 && x < t->n_vocab ? (int32_t)x : -1;
}

static st_status read_siblings(st_tokenizer_t *t, const char *dir) {
    json_t *tc = NULL, *gc = NULL, *cc = NULL;
    st_status s;
    if ((s = load_sibling(dir, "tokenizer_config.json", &tc)) || (s = load_sibling(dir, "generation_config.json", &gc)) ||
        (s = load_sibling(dir, "config.json", &cc)))
        goto done;
    if (tc) {
        t->bos_id = token_ref(t, json_object_get(tc, "bos_token"));
        t->eos_id = token_ref(t, json_object_get(tc, "eos_token"));
    }
    json_t *srcs[2] = {gc, cc};
    for (int k = 0; k < 2 && !s; k++) {
        if (!srcs[k]) continue;
        json_t *e = json_object_get(srcs[k], "eos_token_id"), *x;
        if (json_is_integer(e)) {
            if (t->eos_id < 0 && !tc) t->eos_id = json_id(t, e);
            s = st_tok_add_stop_internal(t, json_id(t, e));
        } else if (json_is_array(e)) {
            size_t i;
            json_array_foreach(e, i, x) {
                if (!json_is_integer(x)) continue;
                if (t->eos_id < 0 && !tc && i == 0) t->eos_id = json_id(t, x);
                if ((s = st_tok_add_stop_internal(t, json_id(t, x)))) break;
            }
        }
        json_t *b = json_object_get(srcs[k], "bos_token_id");
        if (!tc && t->bos_id < 0 && json_is_integer(b)) t->bos_id = json_id(t, b);
    }
    if (!s && t->eos_id >= 0) s = st_tok_add_stop_internal(t, t->eos_id);
done:
    json_decref(tc);
    json_decref(gc);
    json_decref(cc);
    return s;
}

st_status st_tokenizer_load_json(const char *path_in, st_tokenizer_t **out) {
    *out = NULL;
    st_status s;
    char path[4096], dir[4096];
    struct stat stb;
    if (stat(path_in, &stb) == 0 && S_ISDIR(stb.st_mode)) {
        snprintf(path, sizeof path, "%s/tokenizer.json", path_in);
        snprintf(dir, sizeof dir, "%s", path_in);
    } else {
        snprintf(path, sizeof path, "%s", path_in);
        snprintf(dir, sizeof dir, "%s", path_in);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    }
    char *data = NULL;
    size_t len = 0;
    st_tokenizer_t *t = NULL;
    struct load L = {0};
    if ((s = st_read_file_limit(path, ST_TOK_MAX_JSON_BYTES, &data, &len))) {
        st_error_hint("give a tokenizer.json, a model directory holding one, or a GGUF file");
        return s;
    }
    L.j = (struct jp){data, data, data + len, path};
    if ((s = parse_top(&L))) goto cleanup;
    if (!L.have_model || !L.have_vocab) {
        st_error_set(ST_ERR_FORMAT, "%s: no model.vocab", path);
        st_error_hint("this is not a Hugging Face tokenizer.json");
        s = ST_ERR_FORMAT;
        goto cleanup;
    }
    const char *mtype = jstr(L.model_rest, "type");
    if (mtype && strcmp(mtype, "BPE")) { s = unsupported(path, "model type", mtype); goto cleanup; }
    if (jtrue(L.model_rest, "byte_fallback")) { s = unsupported(path, "model", "with byte_fallback=true (SentencePiece-style)"); goto cleanup; }
    const char *cp = jstr(L.model_rest, "continuing_subword_prefix"), *ew = jstr(L.model_rest, "end_of_word_suffix");
    if ((cp && cp[0]) || (ew && ew[0])) { s = unsupported(path, "model", "with a subword prefix/suffix"); goto cleanup; }
    json_t *drop = json_object_get(L.model_rest, "dropout");
    if (json_is_number(drop) && json_number_value(drop) > 0) { s = unsupported(path, "model", "with BPE dropout"); goto cleanup; }

    int64_t n_vocab = 0;
    for (size_t i = 0; i < L.nv; i++) n_vocab = ST_MAX(n_vocab, (int64_t)L.v[i].id + 1);
    json_t *e;
    size_t ai;
    json_array_foreach(L.added, ai, e) {
        json_t *id = json_object_get(e, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= ST_MODEL_MAX_VOCAB ||
            !jstr(e, "content")) {
            st_error_set(ST_ERR_FORMAT, "%s: added_tokens[%zu] lacks a valid id (0..%d) or content", path, ai,
                         ST_MODEL_MAX_VOCAB - 1);
            st_error_hint("each added token needs an integer \"id\" and a string \"content\"");
            s = ST_ERR_FORMAT;
            goto cleanup;
        }
        if (json_string_length(json_object_get(e, "content")) > ST_TOK_MAX_TOKEN_BYTES) {
            st_error_set(ST_ERR_FORMAT, "%s: added_tokens[%zu] content is %zu bytes, more than the %d a token may have",
                         path, ai, json_string_length(json_object_get(e, "content")), ST_TOK_MAX_TOKEN_BYTES);
            s = st_error_hint("strata's limits are in docs/limits.md; is the file corrupt?");
            goto cleanup;
        }
        n_vocab = ST_MAX(n_vocab, (int64_t)json_integer_value(id) + 1);
    }
    if ((s = st_tok_new(ST_TOKENIZER_BPE, n_vocab, L.vstr.len * 2 + 4096, path, &t))) goto cleanup;
    for (size_t i = 0; i < L.nv; i++) {
        const struct vocab_rec *r = &L.v[i];
        if ((s = st_tok_set_bytelevel(t, r->id, L.vstr.d + r->off, r->len, ST_TA_NORMAL))) goto cleanup;
    }
    json_array_foreach(L.added, ai, e) {
        const char *content = jstr(e, "content");
        size_t clen = json_string_length(json_object_get(e, "content"));
        int32_t id = (int32_t)json_integer_value(json_object_get(e, "id"));
        if (jtrue(e, "single_word") || jtrue(e, "lstrip") || jtrue(e, "rstrip")) {
            st_error_set(ST_ERR_UNSUPPORTED, "%s: added token %d \"%s\" uses single_word/lstrip/rstrip", path, id, content);
            st_error_hint("strata matches added tokens literally; Qwen and Llama 3 tokenizers do not use these flags");
            s = ST_ERR_UNSUPPORTED;
            goto cleanup;
        }
        uint32_t attr = ST_TA_ADDED | (jtrue(e, "special") ? ST_TA_SPECIAL : 0) |
                        (jtrue(e, "normalized") ? ST_TA_NORMALIZED : 0);
        const struct st_tok_entry *old = &t->tok[id];
        if ((old->attr & ST_TA_PRESENT) && old->key_len == clen && !memcmp(t->arena + old->key_off, content, clen)) {
            t->tok[id].attr |= attr;
        } else if ((s = st_tok_set_bytelevel(t, id, content, clen, attr))) {
            goto cleanup;
        }
    }
    bool bytelevel = false;
    if ((s = apply_normalizer(t, L.normalizer, path))) goto cleanup;
    if ((s = apply_pre(t, L.pre, path, "pre_tokenizer", &bytelevel))) goto cleanup;
    if (!bytelevel) { s = unsupported(path, "pre_tokenizer", "without ByteLevel"); goto cleanup; }
    if ((s = apply_decoder(L.decoder, path))) goto cleanup;
    t->ignore_merges = jtrue(L.model_rest, "ignore_merges");
    if ((s = st_tok_build_vocab(t))) goto cleanup;
    if ((s = st_tok_reserve_merges(t, (int64_t)L.nm))) goto cleanup;
    for (size_t i = 0; i < L.nm; i++) {
        const struct merge_rec *r = &L.m[i];
        s = st_tok_add_merge(t, L.mstr.d + r->loff, r->llen, L.mstr.d + r->roff, r->rlen, (int64_t)i, "");
        if (s) {
            int l, c;
            line_col(data, r->at, &l, &c);
            st_error_prefix("%s:%d:%d", path, l, c);
            goto cleanup;
        }
    }
    if ((s = apply_post(t, L.post, path))) goto cleanup;
    if ((s = st_tok_finish(t))) goto cleanup;
    if ((s = read_siblings(t, dir))) goto cleanup;
    *out = t;
    t = NULL;
cleanup:
    st_tokenizer_free(t);
    free(data);
    free(L.vstr.d);
    free(L.v);
    free(L.mstr.d);
    free(L.m);
    json_decref(L.model_rest);
    json_decref(L.added);
    json_decref(L.normalizer);
    json_decref(L.pre);
    json_decref(L.post);
    json_decref(L.decoder);
    return s;
}
