/* model/tokenizer.c — the tokenizer core: tables, UTF-8 repair, NFC,
 * added-token splitting, the pre-tokenizer regex, byte-level BPE, SentencePiece
 * BPE, decoding and the streaming decoder. Loaders live in tokenizer_json.c
 * and tokenizer_gguf.c. */
#include "model/tokenizer-impl.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Pre-tokenizer regexes (Hugging Face / Oniguruma syntax). */
const char *const st_tok_regex_qwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const st_tok_regex_llama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const st_tok_regex_gpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---- GPT-2 bytes_to_unicode -------------------------------------------- */

static uint16_t g_byte2cp[256];
static int16_t g_cp2byte[0x144];   /* code point -> byte, -1 none */
static bool g_maps_ready;

static void maps_init(void) {
    if (g_maps_ready) return;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        g_byte2cp[b] = keep ? (uint16_t)b : (uint16_t)(256 + n++);
    }
    for (int c = 0; c < 0x144; c++) g_cp2byte[c] = -1;
    for (int b = 0; b < 256; b++) g_cp2byte[g_byte2cp[b]] = (int16_t)b;
    g_maps_ready = true;   /* idempotent: racing initialisers write the same values */
}

/* ---- UTF-8 -------------------------------------------------------------- */

static inline size_t utf8_put(uint32_t cp, char *o) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

/* Length of the well-formed sequence at s[0..n) (1..4), or 0 when ill-formed;
 * *sub receives the length of the maximal ill-formed subpart (>= 1) then.
 * Table 3-7 of the Unicode standard. */
static inline size_t utf8_check(const uint8_t *s, size_t n, size_t *sub) {
    uint8_t b = s[0];
    if (b < 0x80) return 1;
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if (b >= 0xE1 && b <= 0xEC) need = 2;
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b >= 0xEE && b <= 0xEF) need = 2;
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else { *sub = 1; return 0; }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n) { *sub = k; return 0; }
        uint8_t c = s[k];
        uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (c < l || c > h) { *sub = k; return 0; }
    }
    return need + 1;
}

static inline uint32_t utf8_decode_valid(const uint8_t *s, size_t len) {
    switch (len) {
    case 1: return s[0];
    case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    default: return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
                    ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    }
}

static inline size_t ascii_run(const uint8_t *s, size_t i, size_t len) {
    while (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
    }
    while (i < len && s[i] < 0x80) i++;
    return i;
}

bool st_utf8_valid(const char *src, size_t len) {
    const uint8_t *s = (const uint8_t *)src;
    size_t i = 0, sub;
    while (i < len) {
        i = ascii_run(s, i, len);
        if (i >= len) break;
        size_t k = utf8_check(s + i, len - i, &sub);
        if (!k) return false;
        i += k;
    }
    return true;
}

size_t st_utf8_lossy(const char *src, size_t len, char *dst, size_t cap) {
    const uint8_t *s = (const uint8_t *)src;
    size_t i = 0, o = 0, sub;
    while (i < len) {
        size_t j = ascii_run(s, i, len);
        if (j > i) {
            if (o + (j - i) <= cap) memcpy(dst + o, s + i, j - i);
            o += j - i;
            i = j;
            continue;
        }
        size_t k = utf8_check(s + i, len - i, &sub);
        if (k) {
            if (o + k <= cap) memcpy(dst + o, s + i, k);
            o += k; i += k;
        } else {
            if (o + 3 <= cap) memcpy(dst + o, "\xEF\xBF\xBD", 3);
            o += 3; i += sub;
        }
    }
    return o;
}

/* ---- hashing ------------------------------------------------------------- */

static inline uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 29);
}

static inline uint64_t hash_pair(uint64_t key) {
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 31);
}

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t p = 16;
    while (p < n) p <<= 1;
    return p;
}

/* ---- builder -------------------------------------------------------------- */

st_status st_tok_new(st_tokenizer_kind kind, int64_t n_vocab, size_t arena_hint, const char *src_path,
                     st_tokenizer_t **out) {
    maps_init();
    *out = NULL;
    if (n_vocab <= 0 || n_vocab > ST_MODEL_MAX_VOCAB) {
        st_error_set(ST_ERR_FORMAT, "%s: vocabulary size %lld is out of range: ids must be below %d", src_path,
                     (long long)n_vocab, ST_MODEL_MAX_VOCAB);
        return st_error_hint("strata's limits are in docs/limits.md; is this the right file?");
    }
    st_tokenizer_t *t = st_calloc(1, sizeof *t, "tokenizer");
    if (!t) return ST_ERR_NOMEM;
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->bos_id = t->eos_id = t->unk_id = -1;
    t->src_path = st_strdup(src_path ? src_path : "", "a path");
    t->tok = st_calloc((size_t)n_vocab, sizeof *t->tok, "tokenizer vocabulary");
    t->arena_cap = arena_hint < 4096 ? 4096 : arena_hint;
    t->arena = st_malloc(t->arena_cap, "tokenizer strings");
    if (!t->src_path || !t->tok || !t->arena) { st_tokenizer_free(t); return ST_ERR_NOMEM; }
    for (int b = 0; b < 256; b++) t->byte_id[b] = t->spm_byte[b] = -1;
    *out = t;
    return ST_OK;
}

static st_status arena_put(st_tokenizer_t *t, const char *s, size_t n, uint32_t *off) {
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap * 2;
        while (t->arena_len + n + 1 > cap) cap *= 2;
        if (cap > UINT32_MAX) return st_error_set(ST_ERR_FORMAT, "%s: vocabulary strings exceed 4 GiB", t->src_path);
        char *a = st_realloc(t->arena, cap, "the tokenizer's strings");
        if (!a) return ST_ERR_NOMEM;
        t->arena = a;
        t->arena_cap = cap;
    }
    *off = (uint32_t)t->arena_len;
    if (n) memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = 0;
    t->arena_len += n + 1;
    return ST_OK;
}

st_status st_tok_set(st_tokenizer_t *t, int32_t id, const char *key, size_t key_len,
                     const char *dec, size_t dec_len, uint32_t attr) {
    if (id < 0 || id >= t->n_vocab)
        return st_error_set(ST_ERR_FORMAT, "%s: token id %d is outside the vocabulary (0..%lld)", t->src_path,
                            id, (long long)t->n_vocab - 1);
    struct st_tok_entry *e = &t->tok[id];
    st_status s = arena_put(t, key, key_len, &e->key_off);
    if (s) return s;
    e->key_len = (uint32_t)key_len;
    if (dec == key && dec_len == key_len) {
        e->dec_off = e->key_off;
    } else if ((s = arena_put(t, dec, dec_len, &e->dec_off))) {
        return s;
    }
    e->dec_len = (uint32_t)dec_len;
    e->attr = attr | ST_TA_PRESENT;
    if (dec_len > t->max_dec_len) t->max_dec_len = dec_len;
    return ST_OK;
}

/* HF ByteLevel decoder: a token whose every char is in the byte alphabet
 * decodes to those bytes; any other token decodes to its own UTF-8. */
static size_t bytelevel_decode(const char *key, size_t n, char *out) {
    const uint8_t *s = (const uint8_t *)key;
    size_t i = 0, o = 0, sub;
    while (i < n) {
        size_t k = utf8_check(s + i, n - i, &sub);
        if (!k) break;
        uint32_t cp = utf8_decode_valid(s + i, k);
        if (cp >= 0x144 || g_cp2byte[cp] < 0) break;
        out[o++] = (char)g_cp2byte[cp];
        i += k;
    }
    if (i < n) { memcpy(out, key, n); return n; }
    return o;
}

st_status st_tok_set_bytelevel(st_tokenizer_t *t, int32_t id, const char *key, size_t key_len, uint32_t attr) {
    char small[256] = {0};
    char *buf = key_len <= sizeof small ? small : st_malloc(key_len, "token bytes");
    if (!buf) return ST_ERR_NOMEM;
    size_t n = bytelevel_decode(key, key_len, buf);
    st_status s = st_tok_set(t, id, key, key_len, buf, n, attr);
    if (buf != small) free(buf);
    return s;
}

int32_t st_tok_lookup(const st_tokenizer_t *t, const char *key, size_t len) {
    if (!t->vhash) return -1;
    uint64_t h = hash_bytes(key, len);
    uint32_t tag = (uint32_t)(h >> 32);
    uint64_t i = h & t->vhash_mask;
    for (;;) {
        const struct st_vslot *v = &t->vhash[i];
        if (v->id < 0) return -1;
        if (v->tag == tag) {
            const struct st_tok_entry *e = &t->tok[v->id];
            if (e->key_len == len && memcmp(t->arena + e->key_off, key, len) == 0) return v->id;
        }
        i = (i + 1) & t->vhash_mask;
    }
}

st_status st_tok_build_vocab(st_tokenizer_t *t) {
    uint64_t n = 0;
    for (int64_t id = 0; id < t->n_vocab; id++) n += (t->tok[id].attr & ST_TA_NORMAL) != 0;
    uint64_t slots = pow2_at_least(n * 2 + 16);
    free(t->vhash);
    t->vhash = st_malloc(slots * sizeof *t->vhash, "tokenizer vocabulary hash");
    if (!t->vhash) return ST_ERR_NOMEM;
    memset(t->vhash, 0xff, slots * sizeof *t->vhash);
    t->vhash_mask = slots - 1;
    for (int64_t id = 0; id < t->n_vocab; id++) {
        const struct st_tok_entry *e = &t->tok[id];
        if (!(e->attr & ST_TA_NORMAL)) continue;
        const char *k = t->arena + e->key_off;
        uint64_t h = hash_bytes(k, e->key_len);
        uint32_t tag = (uint32_t)(h >> 32);
        uint64_t i = h & t->vhash_mask;
        for (;;) {
            struct st_vslot *v = &t->vhash[i];
            if (v->id < 0) { v->id = (int32_t)id; v->tag = tag; break; }
            const struct st_tok_entry *f = &t->tok[v->id];
            if (v->tag == tag && f->key_len == e->key_len && memcmp(t->arena + f->key_off, k, e->key_len) == 0) {
                /* duplicate string: the first id wins (HF keeps one entry per string) */
                break;
            }
            i = (i + 1) & t->vhash_mask;
        }
    }
    if (t->kind == ST_TOKENIZER_BPE) {
        for (int b = 0; b < 256; b++) {
            char k[4];
            size_t kl = utf8_put(g_byte2cp[b], k);
            t->byte_id[b] = st_tok_lookup(t, k, kl);
        }
    }
    return ST_OK;
}

st_status st_tok_reserve_merges(st_tokenizer_t *t, int64_t n) {
    uint64_t slots = pow2_at_least((uint64_t)(n < 0 ? 0 : n) * 2 + 16);
    free(t->pairs);
    t->pairs = st_calloc(slots, sizeof *t->pairs, "BPE merge table");
    if (!t->pairs) return ST_ERR_NOMEM;
    t->pairs_mask = slots - 1;
    t->n_merges = 0;
    return ST_OK;
}

static inline const struct st_pair_slot *pair_find(const st_tokenizer_t *t, int32_t l, int32_t r) {
    uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
    uint64_t i = hash_pair(key) & t->pairs_mask;
    for (;;) {
        const struct st_pair_slot *p = &t->pairs[i];
        if (p->key == key) return p;
        if (!p->key) return NULL;
        i = (i + 1) & t->pairs_mask;
    }
}

st_status st_tok_add_merge(st_tokenizer_t *t, const char *left, size_t left_len,
                           const char *right, size_t right_len, int64_t rank, const char *where) {
    int32_t l = st_tok_lookup(t, left, left_len);
    int32_t r = st_tok_lookup(t, right, right_len);
    char small[512];
    size_t n = left_len + right_len;
    char *cat = n <= sizeof small ? small : st_malloc(n, "merge");
    if (!cat) return ST_ERR_NOMEM;
    memcpy(cat, left, left_len);
    memcpy(cat + left_len, right, right_len);
    int32_t m = st_tok_lookup(t, cat, n);
    if (cat != small) free(cat);
    if (l < 0 || r < 0 || m < 0) {
        st_error_set(ST_ERR_FORMAT, "%s%smerge %lld (\"%.*s\" + \"%.*s\") refers to a token missing from the vocabulary",
                     where, where[0] ? ": " : "", (long long)rank, (int)ST_MIN(left_len, 64), left, (int)ST_MIN(right_len, 64), right);
        return st_error_hint("the vocabulary and merges do not belong together; re-export the tokenizer");
    }
    if ((uint64_t)(t->n_merges + 1) * 2 > t->pairs_mask + 1) {
        return st_error_set(ST_ERR_INTERNAL, "%s: more merges than reserved", where);
    }
    uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
    uint64_t i = hash_pair(key) & t->pairs_mask;
    for (;;) {
        struct st_pair_slot *p = &t->pairs[i];
        if (!p->key || p->key == key) {
            if (!p->key) t->n_merges++;
            /* a repeated pair keeps the later rank, as HF's HashMap collect does */
            p->key = key;
            p->rank = (int32_t)rank;
            p->id = m;
            return ST_OK;
        }
        i = (i + 1) & t->pairs_mask;
    }
}

/* Rewrites an Oniguruma pattern for PCRE2: `\s` / `\S` become the Unicode
 * White_Space set that Oniguruma uses (PCRE2's \s also matches U+180E). */
#define ST_WS_SET "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* omap[k] = the input offset that output byte k came from (for error positions). */
static st_status translate_regex(const char *in, char **out, size_t **omap, const char *where) {
    size_t n = strlen(in);
    static const size_t ws_len = sizeof ST_WS_SET - 1;
    /* the longest expansion: \S -> [^SET] (ws_len + 3 bytes for 2 input bytes) */
    size_t cap = n / 2 * (ws_len + 3) + n + 1;
    char *o = st_malloc(cap, "the pre-tokenizer regex");
    size_t *map = o ? st_malloc(cap * sizeof *map, "the pre-tokenizer regex") : NULL;
    if (!map) { free(o); return ST_ERR_NOMEM; }
    size_t k = 0;
    bool in_class = false;
    size_t class_start = 0;
#define EMIT(str, len, from) do { memcpy(o + k, (str), (len)); for (size_t _j = 0; _j < (len); _j++) map[k + _j] = (from); k += (len); } while (0)
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '\\' && i + 1 < n) {
            char d = in[i + 1];
            if (d == 's') {
                if (!in_class) EMIT("[", 1, i);
                EMIT(ST_WS_SET, ws_len, i);
                if (!in_class) EMIT("]", 1, i);
            } else if (d == 'S') {
                if (in_class) {
                    free(o);
                    free(map);
                    st_error_set(ST_ERR_UNSUPPORTED, "%s: \\S inside a character class at offset %zu of the "
                                 "pre-tokenizer regex '%.200s%s'", where, i, in, n > 200 ? "..." : "");
                    return st_error_hint("strata translates \\s for exact Unicode parity and cannot nest a negated class");
                }
                EMIT("[^", 2, i);
                EMIT(ST_WS_SET, ws_len, i);
                EMIT("]", 1, i);
            } else {
                EMIT(in + i, 2, i);
            }
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            EMIT(in + i, 1, i);
            class_start = i + 1;
            if (i + 1 < n && in[i + 1] == '^') { EMIT(in + i + 1, 1, i + 1); i++; class_start = i + 1; }
            continue;
        }
        if (in_class && c == ']' && i != class_start) in_class = false;
        EMIT(in + i, 1, i);
    }
#undef EMIT
    o[k] = 0;
    map[k] = n;
    *out = o;
    *omap = map;
    return ST_OK;
}

st_status st_tok_set_regex(st_tokenizer_t *t, const char *pattern, const char *where) {
    char *pat = NULL;
    size_t *map = NULL;
    size_t n = strlen(pattern);
    if (n > ST_TOK_MAX_REGEX_BYTES) {
        st_error_set(ST_ERR_FORMAT, "%s: the pre-tokenizer regex is %zu bytes, more than the %d strata compiles", where,
                     n, ST_TOK_MAX_REGEX_BYTES);
        return st_error_hint("real pre-tokenizer regexes are a few hundred bytes; is the file corrupt?");
    }
    st_status s = translate_regex(pattern, &pat, &map, where);
    if (s) return s;
    int err = 0;
    PCRE2_SIZE eoff = 0;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &eoff, NULL);
    size_t at = map[eoff <= strlen(pat) ? eoff : strlen(pat)];
    free(pat);
    free(map);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        st_error_set(ST_ERR_UNSUPPORTED, "%s: the pre-tokenizer regex does not compile at offset %zu: %s\n"
                     "  pattern: '%.200s%s'", where, at, (char *)msg, pattern, n > 200 ? "..." : "");
        return st_error_hint("strata runs the regex with PCRE2; Oniguruma-only syntax is not supported");
    }
    if (t->re) pcre2_code_free(t->re);
    t->re = re;
    t->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    if (!t->md) t->md = pcre2_match_data_create(4, NULL);
    if (!t->mctx) t->mctx = pcre2_match_context_create(NULL);
    if (t->jit && !t->jit_stack) {
        t->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
        if (t->jit_stack) pcre2_jit_stack_assign(t->mctx, NULL, t->jit_stack);
    }
    if (!t->md || !t->mctx) return st_error_set(ST_ERR_NOMEM, "out of memory for the regex match data");
    return ST_OK;
}

st_status st_tok_add_stop_internal(st_tokenizer_t *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab || !(t->tok[id].attr & ST_TA_PRESENT)) return ST_OK;
    for (int64_t i = 0; i < t->n_stop; i++) if (t->stop_ids[i] == id) return ST_OK;
    if (t->n_stop == t->cap_stop) {
        int64_t cap = t->cap_stop ? t->cap_stop * 2 : 8;
        int32_t *p = st_realloc(t->stop_ids, (size_t)cap * sizeof *p, "stop token ids");
        if (!p) return ST_ERR_NOMEM;
        t->stop_ids = p;
        t->cap_stop = cap;
    }
    int64_t i = t->n_stop++;
    while (i > 0 && t->stop_ids[i - 1] > id) { t->stop_ids[i] = t->stop_ids[i - 1]; i--; }
    t->stop_ids[i] = id;
    return ST_OK;
}

static int cmp_added(const void *a, const void *b, void *tok) {
    const struct st_added *x = a, *y = b;
    const char *arena = ((const st_tokenizer_t *)tok)->arena;
    uint8_t fx = (uint8_t)arena[x->off], fy = (uint8_t)arena[y->off];
    if (fx != fy) return fx < fy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

st_status st_tok_finish(st_tokenizer_t *t) {
    int64_t n = 0;
    for (int64_t id = 0; id < t->n_vocab; id++) {
        uint32_t a = t->tok[id].attr;
        if ((a & ST_TA_ADDED) && !(a & ST_TA_UNUSED) && t->tok[id].key_len) n++;
    }
    free(t->added);
    t->added = st_calloc((size_t)(n ? n : 1), sizeof *t->added, "added tokens");
    if (!t->added) return ST_ERR_NOMEM;
    t->n_added = 0;
    t->any_normalized_added = false;
    for (int64_t id = 0; id < t->n_vocab; id++) {
        const struct st_tok_entry *e = &t->tok[id];
        if (!(e->attr & ST_TA_ADDED) || (e->attr & ST_TA_UNUSED) || !e->key_len) continue;
        t->added[t->n_added++] = (struct st_added){e->key_off, e->key_len, (int32_t)id, e->attr};
        if (e->attr & ST_TA_NORMALIZED) t->any_normalized_added = true;
    }
    qsort_r(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added, t);
    int64_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (k < t->n_added && (uint8_t)t->arena[t->added[k].off] < b) k++;
        t->added_first[b] = (int32_t)k;
    }
    if (t->kind == ST_TOKENIZER_BPE) {
        for (int b = 0; b < 256; b++) {
            if (t->byte_id[b] < 0) {
                st_error_set(ST_ERR_FORMAT, "%s: the byte-level vocabulary has no token for byte 0x%02X", t->src_path, b);
                return st_error_hint("a byte-level BPE vocabulary holds all 256 single-byte tokens; is this the right file?");
            }
        }
    }
    static const char *const eog[] = {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>",
                                      "<|eom_id|>", "<|end|>", "<end_of_turn>"};
    st_status s = ST_OK;
    for (size_t i = 0; i < ST_ARRAY_LEN(eog) && !s; i++) s = st_tok_add_stop_internal(t, st_tokenizer_find(t, eog[i], strlen(eog[i])));
    if (!s && t->eos_id >= 0) s = st_tok_add_stop_internal(t, t->eos_id);
    return s;
}

void st_tokenizer_free(st_tokenizer_t *t) {
    if (!t) return;
    free(t->src_path);
    free(t->tok);
    free(t->arena);
    free(t->vhash);
    free(t->pairs);
    if (t->md) pcre2_match_data_free(t->md);
    if (t->mctx) pcre2_match_context_free(t->mctx);
    if (t->jit_stack) pcre2_jit_stack_free(t->jit_stack);
    if (t->re) pcre2_code_free(t->re);
    free(t->added);
    free(t->prefix_ids);
    free(t->suffix_ids);
    free(t->stop_ids);
    free(t->s_text);
    free(t->s_u32);
    free(t->s_sym);
    free(t->s_heap);
    free(t->s_spm);
    free(t->s_ids);
    free(t->s_nfc);
    free(t->wc);
    free(t->wc_arena);
    free(t);
}

/* ---- encode scratch --------------------------------------------------------- */

static st_status grow(void **p, size_t *cap, size_t need, size_t elem, const char *what) {
    if (need <= *cap) return ST_OK;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = st_realloc(*p, c * elem, what);
    if (!q) return ST_ERR_NOMEM;
    *p = q;
    *cap = c;
    return ST_OK;
}

static inline st_status emit(st_tokenizer_t *t, int32_t id) {
    if (t->s_ids_n == t->s_ids_cap) {
        size_t cap = (size_t)t->s_ids_cap;
        st_status s = grow((void **)&t->s_ids, &cap, (size_t)t->s_ids_n + 1, sizeof *t->s_ids, "id buffer");
        if (s) return s;
        t->s_ids_cap = (int64_t)cap;
    }
    t->s_ids[t->s_ids_n++] = id;
    return ST_OK;
}

/* ---- byte-level BPE ------------------------------------------------------- */

static inline bool item_less(const struct st_bpe_item *a, const struct st_bpe_item *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static inline void heap_push(struct st_bpe_item *h, size_t *n, struct st_bpe_item it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!item_less(&it, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static inline struct st_bpe_item heap_pop(struct st_bpe_item *h, size_t *n) {
    struct st_bpe_item top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && item_less(&h[c + 1], &h[c])) c++;
        if (!item_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

static st_status bpe_word_uncached(st_tokenizer_t *t, const uint8_t *w, size_t n) {
    st_status s;
    if (n == 0) return ST_OK;
    if (t->ignore_merges) {
        if ((s = grow((void **)&t->s_spm, &t->s_spm_cap, n * 2, 1, "word buffer"))) return s;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += utf8_put(g_byte2cp[w[i]], t->s_spm + k);
        int32_t id = st_tok_lookup(t, t->s_spm, k);
        if (id >= 0) return emit(t, id);
    }
    if (n == 1) return emit(t, t->byte_id[w[0]]);
    if ((s = grow((void **)&t->s_sym, &t->s_sym_cap, n, sizeof *t->s_sym, "BPE symbols"))) return s;
    /* n - 1 initial pairs, then each merge pops one and pushes at most two */
    if ((s = grow((void **)&t->s_heap, &t->s_heap_cap, 3 * n, sizeof *t->s_heap, "BPE queue"))) return s;
    struct st_bpe_sym *sym = t->s_sym;
    struct st_bpe_item *heap = t->s_heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i] = (struct st_bpe_sym){t->byte_id[w[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, (uint32_t)i, 1};
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const struct st_pair_slot *p = pair_find(t, sym[i].id, sym[i + 1].id);
        if (p) heap_push(heap, &hn, (struct st_bpe_item){p->rank, (int32_t)i, p->id, 0});
    }
    while (hn) {
        struct st_bpe_item top = heap_pop(heap, &hn);
        struct st_bpe_sym *a = &sym[top.pos];
        if (a->len == 0 || a->next < 0) continue;
        struct st_bpe_sym *b = &sym[a->next];
        const struct st_pair_slot *p = pair_find(t, a->id, b->id);
        if (!p || p->id != top.id) continue;   /* stale entry */
        a->id = top.id;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (a->next >= 0) sym[a->next].prev = top.pos;
        if (a->prev >= 0) {
            const struct st_pair_slot *q = pair_find(t, sym[a->prev].id, a->id);
            if (q) heap_push(heap, &hn, (struct st_bpe_item){q->rank, a->prev, q->id, 0});
        }
        if (a->next >= 0) {
            const struct st_pair_slot *q = pair_find(t, a->id, sym[a->next].id);
            if (q) heap_push(heap, &hn, (struct st_bpe_item){q->rank, top.pos, q->id, 0});
        }
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        if ((s = emit(t, sym[i].id))) return s;
    }
    return ST_OK;
}

static st_status emit_n(st_tokenizer_t *t, const int32_t *ids, size_t n) {
    if (t->s_ids_n + (int64_t)n > t->s_ids_cap) {
        size_t cap = (size_t)t->s_ids_cap;
        st_status s = grow((void **)&t->s_ids, &cap, (size_t)t->s_ids_n + n, sizeof *t->s_ids, "id buffer");
        if (s) return s;
        t->s_ids_cap = (int64_t)cap;
    }
    memcpy(t->s_ids + t->s_ids_n, ids, n * sizeof *ids);
    t->s_ids_n += (int64_t)n;
    return ST_OK;
}

/* BPE of one pre-token through the pre-token cache (most pre-tokens repeat). */
static st_status bpe_word(st_tokenizer_t *t, const uint8_t *w, size_t n) {
    if (n == 0) return ST_OK;
    if (n == 1 && !t->ignore_merges) return emit(t, t->byte_id[w[0]]);
    if (n > ST_WCACHE_MAX_KEY) return bpe_word_uncached(t, w, n);
    if (!t->wc) {
        const size_t slots = 1u << 15, arena = 1u << 20;
        /* the cache only saves time: without memory for it, encode without it */
        t->wc = st_calloc(slots, sizeof *t->wc, "the pre-token cache");
        t->wc_arena = t->wc ? st_malloc(arena, "the pre-token cache") : NULL;
        if (!t->wc || !t->wc_arena) {
            free(t->wc);
            free(t->wc_arena);
            t->wc = NULL;
            t->wc_arena = NULL;
            return bpe_word_uncached(t, w, n);
        }
        t->wc_mask = slots - 1;
        t->wc_cap = arena;
    }
    uint64_t h = hash_bytes((const char *)w, n);
    uint64_t i = h & t->wc_mask;
    for (;; i = (i + 1) & t->wc_mask) {
        const struct st_wslot *e = &t->wc[i];
        if (!e->klen) break;
        if (e->h == h && e->klen == n && !memcmp(t->wc_arena + e->off, w, n))
            return emit_n(t, (const int32_t *)(t->wc_arena + e->off + ((n + 3) & ~(size_t)3)), e->nids);
    }
    int64_t start = t->s_ids_n;
    st_status s = bpe_word_uncached(t, w, n);
    if (s) return s;
    size_t nids = (size_t)(t->s_ids_n - start), koff = (n + 3) & ~(size_t)3, need = koff + nids * sizeof(int32_t);
    if (t->wc_used + 1 > (t->wc_mask + 1) / 2 || t->wc_len + need > t->wc_cap) {
        memset(t->wc, 0, (t->wc_mask + 1) * sizeof *t->wc);
        t->wc_used = 0;
        t->wc_len = 0;
        i = h & t->wc_mask;
    }
    struct st_wslot *e = &t->wc[i];
    e->h = h;
    e->off = (uint32_t)t->wc_len;
    e->klen = (uint16_t)n;
    e->nids = (uint16_t)nids;
    memcpy(t->wc_arena + t->wc_len, w, n);
    memcpy(t->wc_arena + t->wc_len + koff, t->s_ids + start, nids * sizeof(int32_t));
    t->wc_len += need;
    t->wc_used++;
    return ST_OK;
}

/* Split by the pre-tokenizer (Isolated: matches and the gaps between them are
 * pre-tokens) and BPE each piece. */
static st_status pretokenize_bpe(st_tokenizer_t *t, const char *text, size_t len) {
    st_status s;
    if (!t->re) return bpe_word(t, (const uint8_t *)text, len);
    size_t piece = 0, pos = 0;
    while (pos < len) {
        int rc = t->jit ? pcre2_jit_match(t->re, (PCRE2_SPTR)text, len, pos, PCRE2_NO_UTF_CHECK, t->md, t->mctx)
                        : pcre2_match(t->re, (PCRE2_SPTR)text, len, pos, PCRE2_NO_UTF_CHECK, t->md, t->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return st_error_set(ST_ERR_INTERNAL, "pre-tokenizer regex failed at byte %zu: %s", pos, (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {            /* empty match: step one character */
            pos = ms + 1;
            while (pos < len && ((uint8_t)text[pos] & 0xC0) == 0x80) pos++;
            continue;
        }
        if (ms > piece && (s = bpe_word(t, (const uint8_t *)text + piece, ms - piece))) return s;
        if ((s = bpe_word(t, (const uint8_t *)text + ms, me - ms))) return s;
        piece = pos = me;
    }
    if (piece < len) return bpe_word(t, (const uint8_t *)text + piece, len - piece);
    return ST_OK;
}

/* ---- SentencePiece BPE ----------------------------------------------------- */

struct spm_item { float score; int32_t left, right; uint32_t size; };
static inline bool spm_less(const struct spm_item *a, const struct spm_item *b) {
    /* "less" = higher priority: higher score, then lower left index */
    return a->score != b->score ? a->score > b->score : a->left < b->left;
}

static void spm_push(struct spm_item *h, size_t *n, struct spm_item it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!spm_less(&it, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static struct spm_item spm_pop(struct spm_item *h, size_t *n) {
    struct spm_item top = h[0], last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && spm_less(&h[c + 1], &h[c])) c++;
        if (!spm_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
    return top;
}

static void spm_bigram(const st_tokenizer_t *t, const char *txt, const struct st_bpe_sym *sym, int32_t l, int32_t r,
                       struct spm_item *h, size_t *hn) {
    if (l < 0 || r < 0) return;
    size_t n = sym[l].len + sym[r].len;   /* adjacent: text is contiguous */
    int32_t id = st_tok_lookup(t, txt + sym[l].start, n);
    if (id < 0) return;
    spm_push(h, hn, (struct spm_item){t->tok[id].score, l, r, (uint32_t)n});
}

static st_status spm_segment(st_tokenizer_t *t, const char *text, size_t len, bool prefix_space) {
    st_status s;
    size_t cap_need = len * 3 + 4;
    if ((s = grow((void **)&t->s_spm, &t->s_spm_cap, cap_need, 1, "SentencePiece text"))) return s;
    char *txt = t->s_spm;
    size_t n = 0;
    if (prefix_space) { memcpy(txt, "\xE2\x96\x81", 3); n = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(txt + n, "\xE2\x96\x81", 3); n += 3; }
        else txt[n++] = text[i];
    }
    if (n == 0) return ST_OK;
    if ((s = grow((void **)&t->s_sym, &t->s_sym_cap, n, sizeof *t->s_sym, "symbols"))) return s;
    if ((s = grow((void **)&t->s_heap, &t->s_heap_cap, 3 * n + 4, sizeof *t->s_heap, "queue"))) return s;
    struct st_bpe_sym *sym = t->s_sym;
    struct spm_item *heap = (struct spm_item *)t->s_heap;   /* same size as st_bpe_item */
    _Static_assert(sizeof(struct spm_item) == sizeof(struct st_bpe_item), "SPM queue shares the BPE queue");
    size_t ns = 0, hn = 0, sub;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_check((const uint8_t *)txt + i, n - i, &sub);
        if (!k) k = 1;   /* cannot happen: input was repaired */
        sym[ns] = (struct st_bpe_sym){-1, (int32_t)ns - 1, -1, (uint32_t)i, (uint32_t)k};
        if (ns) sym[ns - 1].next = (int32_t)ns;
        ns++;
        i += k;
    }
    for (size_t i = 1; i < ns; i++) spm_bigram(t, txt, sym, (int32_t)i - 1, (int32_t)i, heap, &hn);
    while (hn) {
        struct spm_item b = spm_pop(heap, &hn);
        struct st_bpe_sym *l = &sym[b.left], *r = &sym[b.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.size) continue;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = b.left;
        spm_bigram(t, txt, sym, l->prev, b.left, heap, &hn);
        spm_bigram(t, txt, sym, b.left, l->next, heap, &hn);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        if (sym[i].len == 0) continue;
        int32_t id = st_tok_lookup(t, txt + sym[i].start, sym[i].len);
        if (id >= 0) { if ((s = emit(t, id))) return s; continue; }
        for (uint32_t j = 0; j < sym[i].len; j++) {
            int32_t b = t->spm_byte[(uint8_t)txt[sym[i].start + j]];
            if (b < 0) b = t->unk_id;
            if (b < 0) {
                st_error_set(ST_ERR_UNSUPPORTED, "%s: text has a character the vocabulary cannot encode (no byte tokens, no <unk>)",
                             t->src_path);
                return st_error_hint("this SentencePiece vocabulary lacks <0xXX> byte tokens");
            }
            if ((s = emit(t, b))) return s;
        }
    }
    return ST_OK;
}

/* ---- NFC ------------------------------------------------------------------ */

/* Code points whose every string is already NFC and that never compose with a
 * neighbour from this same set (all NFC_QC=Yes, canonical class 0). */
static inline bool nfc_inert(uint32_t cp) {
    return cp < 0x300 || (cp >= 0x3041 && cp <= 0x3096) || (cp >= 0x30A1 && cp <= 0x30FA) ||
           (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7A3);
}

static bool nfc_fast(const char *text, size_t len) {
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0, sub;
    while (i < len) {
        if (s[i] < 0x80) { i++; continue; }
        size_t k = utf8_check(s + i, len - i, &sub);
        if (!k || !nfc_inert(utf8_decode_valid(s + i, k))) return false;
        i += k;
    }
    return true;
}

/* NFC of text[0, len) (valid UTF-8) appended to s_nfc at *at. */
static st_status nfc_region(st_tokenizer_t *t, const char *text, size_t len, size_t *at) {
    utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    st_status s;
    for (;;) {
        utf8proc_ssize_t r = t->s_u32_cap ? utf8proc_decompose((const utf8proc_uint8_t *)text, (utf8proc_ssize_t)len,
                                                               t->s_u32, (utf8proc_ssize_t)t->s_u32_cap, opt)
                                          : (utf8proc_ssize_t)len + 1;
        if (r < 0) return st_error_set(ST_ERR_INTERNAL, "NFC normalisation failed: %s", utf8proc_errmsg(r));
        if ((size_t)r <= t->s_u32_cap) {
            r = utf8proc_reencode(t->s_u32, r, opt);
            if (r < 0) return st_error_set(ST_ERR_INTERNAL, "NFC normalisation failed: %s", utf8proc_errmsg(r));
            if ((s = grow((void **)&t->s_nfc, &t->s_nfc_cap, *at + (size_t)r, 1, "NFC buffer"))) return s;
            memcpy(t->s_nfc + *at, t->s_u32, (size_t)r);
            *at += (size_t)r;
            return ST_OK;
        }
        if ((s = grow((void **)&t->s_u32, &t->s_u32_cap, (size_t)r + 1, sizeof *t->s_u32, "NFC buffer"))) return s;
    }
}

/* NFC of valid UTF-8; *out points at text itself (already NFC) or at s_nfc.
 * Only the regions around characters outside the inert set go through
 * utf8proc: an inert character is a starter that never composes with what
 * precedes it, so NFC(a + b) = NFC(a) + NFC(b) when b begins with one. A
 * region starts at the character before a non-inert run (it may be the base
 * a combining mark composes with) and ends before the next inert character. */
static st_status nfc(st_tokenizer_t *t, const char *text, size_t len, const char **out, size_t *out_len) {
    if (nfc_fast(text, len)) { *out = text; *out_len = len; return ST_OK; }
    const uint8_t *u = (const uint8_t *)text;
    size_t i = 0, copied = 0, at = 0, prev = 0, sub;   /* prev: start of the previous character */
    st_status s;
    if ((s = grow((void **)&t->s_nfc, &t->s_nfc_cap, len + 16, 1, "NFC buffer"))) return s;
    while (i < len) {
        size_t k = u[i] < 0x80 ? 1 : utf8_check(u + i, len - i, &sub);
        if (!k) k = 1;
        if (u[i] < 0x80 || nfc_inert(utf8_decode_valid(u + i, k))) { prev = i; i += k; continue; }
        size_t start = i > 0 ? prev : 0, end = i + k;
        while (end < len) {
            size_t k2 = u[end] < 0x80 ? 1 : utf8_check(u + end, len - end, &sub);
            if (!k2) k2 = 1;
            if (u[end] < 0x80 || nfc_inert(utf8_decode_valid(u + end, k2))) break;
            end += k2;
        }
        if (start < copied) start = copied;   /* the previous region already took it */
        if ((s = grow((void **)&t->s_nfc, &t->s_nfc_cap, at + (start - copied) + 16, 1, "NFC buffer"))) return s;
        memcpy(t->s_nfc + at, text + copied, start - copied);
        at += start - copied;
        if ((s = nfc_region(t, text + start, end - start, &at))) return s;
        copied = end;
        prev = i = end;
    }
    if ((s = grow((void **)&t->s_nfc, &t->s_nfc_cap, at + (len - copied) + 1, 1, "NFC buffer"))) return s;
    memcpy(t->s_nfc + at, text + copied, len - copied);
    at += len - copied;
    *out = t->s_nfc;
    *out_len = at;
    return ST_OK;
}

/* ---- added tokens and the encode driver --------------------------------- */

/* Finds the leftmost-longest added token in text[from, len) among those whose
 * ST_TA_NORMALIZED bit equals `normalized`. Returns its start or len. */
static size_t find_added(const st_tokenizer_t *t, const char *text, size_t from, size_t len, bool normalized,
                         const struct st_added **hit) {
    for (size_t i = from; i < len; i++) {
        uint8_t b = (uint8_t)text[i];
        int32_t lo = t->added_first[b], hi = t->added_first[b + 1];
        for (int32_t k = lo; k < hi; k++) {
            const struct st_added *a = &t->added[k];
            if (((a->attr & ST_TA_NORMALIZED) != 0) != normalized) continue;
            if (a->len <= len - i && memcmp(t->arena + a->off, text + i, a->len) == 0) { *hit = a; return i; }
        }
    }
    return len;
}

static st_status encode_text(st_tokenizer_t *t, const char *text, size_t len, unsigned flags, bool normalized_pass);

/* Cuts text at added tokens of one class and encodes the pieces. */
static st_status split_added(st_tokenizer_t *t, const char *text, size_t len, unsigned flags, bool normalized,
                             bool *prev_special) {
    st_status s;
    size_t seg = 0, from = 0;
    while (from < len) {
        const struct st_added *a = NULL;
        size_t at = find_added(t, text, from, len, normalized, &a);
        if (at == len) break;
        if ((a->attr & ST_TA_SPECIAL) && !(flags & ST_TOK_PARSE_SPECIAL)) {
            from = at + a->len;   /* left as text, and the match is consumed (as HF does) */
            continue;
        }
        if (at > seg) {
            if (t->kind == ST_TOKENIZER_SPM) s = spm_segment(t, text + seg, at - seg, t->add_space_prefix && *prev_special);
            else s = encode_text(t, text + seg, at - seg, flags, normalized);
            if (s) return s;
            *prev_special = false;
        }
        if ((s = emit(t, a->id))) return s;
        *prev_special = true;
        seg = from = at + a->len;
    }
    if (len > seg) {
        if (t->kind == ST_TOKENIZER_SPM) s = spm_segment(t, text + seg, len - seg, t->add_space_prefix && *prev_special);
        else s = encode_text(t, text + seg, len - seg, flags, normalized);
        if (s) return s;
        *prev_special = false;
    }
    return ST_OK;
}

/* A piece between non-normalised added tokens: normalise, cut at normalised
 * added tokens (rare), pre-tokenize and BPE. */
static st_status encode_text(st_tokenizer_t *t, const char *text, size_t len, unsigned flags, bool normalized_pass) {
    const char *norm = text;
    size_t nlen = len;
    st_status s;
    if (!normalized_pass && t->nfc && (s = nfc(t, text, len, &norm, &nlen))) return s;
    if (!normalized_pass && t->any_normalized_added) {
        /* the NFC output lives in s_nfc, which nothing below reuses */
        bool ps = false;
        return split_added(t, norm, nlen, flags, true, &ps);
    }
    return pretokenize_bpe(t, norm, nlen);
}

static st_status encode_core(st_tokenizer_t *t, const char *text, size_t len, unsigned flags) {
    st_status s;
    t->s_ids_n = 0;
    if (flags & ST_TOK_ADD_SPECIAL)
        for (int i = 0; i < t->n_prefix; i++) if ((s = emit(t, t->prefix_ids[i]))) return s;
    if (!st_utf8_valid(text, len)) {
        size_t need = st_utf8_lossy(text, len, NULL, 0);
        if ((s = grow((void **)&t->s_text, &t->s_text_cap, need + 1, 1, "text buffer"))) return s;
        len = st_utf8_lossy(text, len, t->s_text, t->s_text_cap);
        text = t->s_text;
    }
    bool prev_special = true;
    if ((s = split_added(t, text, len, flags, false, &prev_special))) return s;
    if (flags & ST_TOK_ADD_SPECIAL)
        for (int i = 0; i < t->n_suffix; i++) if ((s = emit(t, t->suffix_ids[i]))) return s;
    return ST_OK;
}

st_status st_tokenizer_encode(st_tokenizer_t *t, const char *text, size_t len, unsigned flags,
                              int32_t *ids, int64_t cap, int64_t *n_ids) {
    *n_ids = 0;
    st_status s = encode_core(t, text, len, flags);
    if (s) return s;
    *n_ids = t->s_ids_n;
    if (t->s_ids_n > cap)
        return st_error_set(ST_ERR_USAGE, "the text needs %lld token ids; the buffer holds %lld",
                            (long long)t->s_ids_n, (long long)cap);
    if (t->s_ids_n) memcpy(ids, t->s_ids, (size_t)t->s_ids_n * sizeof *ids);
    return ST_OK;
}

st_status st_tokenizer_encode_alloc(st_tokenizer_t *t, const char *text, size_t len, unsigned flags,
                                    int32_t **ids, int64_t *n, int64_t *cap) {
    st_status s = encode_core(t, text, len, flags);
    if (s) return s;
    int64_t need = *n + t->s_ids_n;
    if (need > *cap) {
        int64_t c = *cap ? *cap : 64;
        while (c < need) c *= 2;
        int32_t *p = st_realloc(*ids, (size_t)c * sizeof *p, "token ids");
        if (!p) return ST_ERR_NOMEM;
        *ids = p;
        *cap = c;
    }
    if (t->s_ids_n) memcpy(*ids + *n, t->s_ids, (size_t)t->s_ids_n * sizeof **ids);
    *n = need;
    return ST_OK;
}

/* ---- decoding ------------------------------------------------------------- */

/* Incremental UTF-8 repair: bytes in, well-formed text out (maximal subparts
 * of ill-formed sequences become U+FFFD). */
struct lossy {
    uint8_t pend[4];
    int npend;     /* bytes of an incomplete, so far valid sequence */
    int need;      /* total length of that sequence */
    bool strip_space;   /* SPM: drop one leading space of the whole text */
    bool started;
};

struct sink { char *out; size_t cap, len; };

static inline void sink_put(struct sink *k, const void *p, size_t n) {
    if (k->len < k->cap) {
        size_t m = ST_MIN(n, k->cap - k->len);
        memcpy(k->out + k->len, p, m);
    }
    k->len += n;
}

static inline int seq_len(uint8_t b) {
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

static inline bool cont_ok(uint8_t lead, int k, uint8_t c) {
    uint8_t lo = 0x80, hi = 0xBF;
    if (k == 1) {
        if (lead == 0xE0) lo = 0xA0;
        else if (lead == 0xED) hi = 0x9F;
        else if (lead == 0xF0) lo = 0x90;
        else if (lead == 0xF4) hi = 0x8F;
    }
    return c >= lo && c <= hi;
}

static void lossy_feed(struct lossy *L, const uint8_t *p, size_t n, struct sink *k) {
    if (n && !L->started) {
        L->started = true;
        if (L->strip_space && p[0] == ' ') { p++; n--; }
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t b = p[i];
        if (L->npend) {
            if (cont_ok(L->pend[0], L->npend, b)) {
                L->pend[L->npend++] = b;
                if (L->npend == L->need) { sink_put(k, L->pend, (size_t)L->npend); L->npend = 0; }
                continue;
            }
            sink_put(k, "\xEF\xBF\xBD", 3);
            L->npend = 0;
        }
        if (b < 0x80) {
            /* runs of ASCII go out in one copy */
            size_t j = i + 1;
            while (j < n && p[j] < 0x80) j++;
            sink_put(k, p + i, j - i);
            i = j - 1;
            continue;
        }
        int need = seq_len(b);
        if (!need) { sink_put(k, "\xEF\xBF\xBD", 3); continue; }
        L->pend[0] = b;
        L->npend = 1;
        L->need = need;
    }
}

static void lossy_flush(struct lossy *L, struct sink *k) {
    if (L->npend) sink_put(k, "\xEF\xBF\xBD", 3);
    L->npend = 0;
}

static inline bool decodable(const st_tokenizer_t *t, int32_t id, unsigned flags) {
    if (id < 0 || id >= t->n_vocab) return false;
    uint32_t a = t->tok[id].attr;
    if (!(a & ST_TA_PRESENT)) return false;
    if ((flags & ST_DETOK_SKIP_SPECIAL) && (a & ST_TA_SPECIAL)) return false;
    return true;
}

st_status st_tokenizer_decode(const st_tokenizer_t *t, const int32_t *ids, int64_t n, unsigned flags,
                              char *out, size_t cap, size_t *out_len) {
    struct lossy L = {.strip_space = t->kind == ST_TOKENIZER_SPM && t->add_space_prefix};
    struct sink k = {out, cap ? cap - 1 : 0, 0};
    for (int64_t i = 0; i < n; i++) {
        if (!decodable(t, ids[i], flags)) continue;
        const struct st_tok_entry *e = &t->tok[ids[i]];
        lossy_feed(&L, (const uint8_t *)t->arena + e->dec_off, e->dec_len, &k);
    }
    lossy_flush(&L, &k);
    if (cap) out[ST_MIN(k.len, cap - 1)] = 0;
    *out_len = k.len;
    return ST_OK;
}

struct st_detok_stream {
    const st_tokenizer_t *tok;
    unsigned flags;
    struct lossy L;
    char *buf;        /* (cap + 1) bytes */
    size_t cap;
};

st_status st_detok_stream_init(const st_tokenizer_t *tok, unsigned flags, st_detok_stream_t **out) {
    *out = NULL;
    st_detok_stream_t *s = st_calloc(1, sizeof *s, "detokenizer stream");
    if (!s) return ST_ERR_NOMEM;
    s->tok = tok;
    s->flags = flags;
    /* worst case per token: every byte ill-formed (3 bytes each) plus a flushed pending sequence */
    s->cap = 3 * (tok->max_dec_len + 4);
    s->buf = st_malloc(s->cap + 1, "detokenizer stream buffer");
    if (!s->buf) { free(s); return ST_ERR_NOMEM; }
    st_detok_stream_reset(s);
    *out = s;
    return ST_OK;
}

void st_detok_stream_reset(st_detok_stream_t *s) {
    s->L = (struct lossy){.strip_space = s->tok->kind == ST_TOKENIZER_SPM && s->tok->add_space_prefix};
    s->buf[0] = 0;
}

const char *st_detok_stream_push(st_detok_stream_t *s, int32_t id, size_t *len) {
    struct sink k = {s->buf, s->cap, 0};
    if (decodable(s->tok, id, s->flags)) {
        const struct st_tok_entry *e = &s->tok->tok[id];
        lossy_feed(&s->L, (const uint8_t *)s->tok->arena + e->dec_off, e->dec_len, &k);
    }
    s->buf[k.len] = 0;
    *len = k.len;
    return s->buf;
}

const char *st_detok_stream_flush(st_detok_stream_t *s, size_t *len) {
    struct sink k = {s->buf, s->cap, 0};
    lossy_flush(&s->L, &k);
    s->buf[k.len] = 0;
    *len = k.len;
    return s->buf;
}

void st_detok_stream_free(st_detok_stream_t *s) {
    if (!s) return;
    free(s->buf);
    free(s);
}

/* ---- queries -------------------------------------------------------------- */

st_tokenizer_kind st_tokenizer_get_kind(const st_tokenizer_t *t) { return t->kind; }
int64_t st_tokenizer_n_vocab(const st_tokenizer_t *t) { return t->n_vocab; }
size_t st_tokenizer_max_token_bytes(const st_tokenizer_t *t) { return t->max_dec_len; }
int32_t st_tokenizer_bos(const st_tokenizer_t *t) { return t->bos_id; }
int32_t st_tokenizer_eos(const st_tokenizer_t *t) { return t->eos_id; }

const char *st_tokenizer_token_bytes(const st_tokenizer_t *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || !(t->tok[id].attr & ST_TA_PRESENT)) { *len = 0; return NULL; }
    *len = t->tok[id].dec_len;
    return t->arena + t->tok[id].dec_off;
}

const char *st_tokenizer_token_text(const st_tokenizer_t *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || !(t->tok[id].attr & ST_TA_PRESENT)) { *len = 0; return NULL; }
    *len = t->tok[id].key_len;
    return t->arena + t->tok[id].key_off;
}

int32_t st_tokenizer_find(const st_tokenizer_t *t, const char *text, size_t len) {
    if (len && t->added) {
        uint8_t b = (uint8_t)text[0];
        for (int32_t k = t->added_first[b]; k < t->added_first[b + 1]; k++) {
            const struct st_added *a = &t->added[k];
            if (a->len == len && memcmp(t->arena + a->off, text, len) == 0) return a->id;
        }
    }
    int32_t id = st_tok_lookup(t, text, len);
    if (id >= 0) return id;
    /* added tokens before st_tok_finish, and anything else not hashed */
    for (int64_t i = 0; i < t->n_vocab; i++) {
        const struct st_tok_entry *e = &t->tok[i];
        if ((e->attr & ST_TA_ADDED) && e->key_len == len && memcmp(t->arena + e->key_off, text, len) == 0)
            return (int32_t)i;
    }
    return -1;
}

bool st_tokenizer_is_special(const st_tokenizer_t *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->tok[id].attr & ST_TA_SPECIAL);
}

bool st_tokenizer_is_added(const st_tokenizer_t *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->tok[id].attr & ST_TA_ADDED);
}

const int32_t *st_tokenizer_stop_ids(const st_tokenizer_t *t, int64_t *n) {
    *n = t->n_stop;
    return t->stop_ids;
}

bool st_tokenizer_is_stop(const st_tokenizer_t *t, int32_t id) {
    for (int64_t i = 0; i < t->n_stop; i++) if (t->stop_ids[i] == id) return true;
    return false;
}

st_status st_tokenizer_add_stop(st_tokenizer_t *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab || !(t->tok[id].attr & ST_TA_PRESENT)) {
        st_error_set(ST_ERR_CONFIG, "stop token id %d is outside the vocabulary (0..%lld)", id, (long long)t->n_vocab - 1);
        return st_error_hint("use 'strata tokenize' to look up the id of a token");
    }
    return st_tok_add_stop_internal(t, id);
}
