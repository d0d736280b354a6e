/* Malformed model files, each made here from a fixture (copy + corrupt in a
 * temporary directory) or built byte by byte, and the exact error each must
 * give. Also: every truncation of a GGUF header and random byte flips must
 * fail cleanly (run under ASan/UBSan in the sanitizer build). */
#include "check.h"
#include "model/model-impl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void *slurp(const char *path, size_t *len) {
    char *d = NULL;
    if (st_read_file(path, &d, len)) { fprintf(stderr, "%s\n", st_last_error()); exit(1); }
    return d;
}

static void spit(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) { perror(path); exit(1); }
    fclose(f);
}

static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* Opens bytes written to tmpdir/name; expects failure with status and every needle. */
static void expect_fail(const char *name, const void *data, size_t len, st_status want, const char *n1, const char *n2,
                        int line) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    spit(path, data, len);
    st_model *m = NULL;
    st_status s = st_model_open(path, &m);
    const char *msg = st_last_error();
    bool ok = s == want && m == NULL && strstr(msg, path) && (!n1 || strstr(msg, n1)) && (!n2 || strstr(msg, n2)) &&
              strstr(msg, "hint: ");
    CHECK_MSG(ok, "line %d: %s: status %s (want %s)\n  message: %s\n  want: '%s' and '%s' and a hint", line, name,
              st_status_name(s), st_status_name(want), msg, n1 ? n1 : "", n2 ? n2 : "");
    st_model_free(m);
    unlink(path);
}
#define FAIL(name, d, n, st, a, b) expect_fail(name, d, n, st, a, b, __LINE__)

/* ---- GGUF ------------------------------------------------------------------ */

static const struct st_gguf_tensor_info *ti_named(const struct st_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        if (g->ti[i].name_len == strlen(name) && !memcmp(g->base + g->ti[i].name_off, name, g->ti[i].name_len)) return &g->ti[i];
    }
    return NULL;
}

/* offset of the fields after a tensor info's name */
static size_t after_name(const struct st_gguf_tensor_info *t) { return (size_t)(t->name_off + t->name_len); }

static void gguf_cases(void) {
    const char *src = "tests/fixtures/models/qwen2-tiny/qwen2-tiny-f32.gguf";
    size_t n;
    uint8_t *orig = slurp(src, &n);
    uint8_t *b = malloc(n);
    struct st_gguf *g = NULL;
    CHECK_OK(st_gguf_parse(src, orig, n, &g));
    if (!g) return;
    const struct st_gguf_tensor_info *t0 = &g->ti[0];
    const struct st_gguf_tensor_info *up1 = ti_named(g, "blk.1.ffn_up.weight");
    CHECK(up1 != NULL);
    int64_t ki = st_gguf_find(g, "qwen2.attention.head_count");
    int64_t kb = st_gguf_find(g, "qwen2.block_count");
    int64_t kkv = st_gguf_find(g, "qwen2.attention.head_count_kv");
    CHECK(ki >= 0 && kb >= 0 && kkv >= 0);

    FAIL("trunc-header.gguf", orig, 100, ST_ERR_FORMAT, "byte offset 16: metadata count 12 cannot fit in the 76 bytes", NULL);
    FAIL("trunc-ti.gguf", orig, (size_t)g->ti[10].info_off + 5, ST_ERR_FORMAT, "tensor name needs 8 bytes but only 5 remain", NULL);
    FAIL("trunc-ti2.gguf", orig, (size_t)g->ti[10].name_off + 3, ST_ERR_FORMAT, "tensor name has length", "but only 3 bytes remain");
    FAIL("trunc-magic.gguf", orig, 3, ST_ERR_FORMAT, "not a GGUF file", NULL);
    FAIL("trunc-data.gguf", orig, n - 1000, ST_ERR_FORMAT, "truncated file", "runs past the end of the file");
    FAIL("trunc-datastart.gguf", orig, (size_t)g->data_start - 8, ST_ERR_FORMAT, "file ends before the tensor data section", NULL);

    memcpy(b, orig, n); put64(b + 8, 1ull << 60);
    FAIL("count-tensors.gguf", b, n, ST_ERR_FORMAT, "byte offset 8: tensor count 1152921504606846976 cannot fit", NULL);
    memcpy(b, orig, n); put64(b + 16, 1ull << 40);
    FAIL("count-kv.gguf", b, n, ST_ERR_FORMAT, "byte offset 16: metadata count 1099511627776 cannot fit", NULL);
    memcpy(b, orig, n); put64(b + 24, 1ull << 62);
    FAIL("strlen.gguf", b, n, ST_ERR_FORMAT, "byte offset 24: metadata key has length 4611686018427387904", "remain");
    memcpy(b, orig, n); put64(b + g->kv[ki].key_off, 1ull << 50);
    FAIL("strlen2.gguf", b, n, ST_ERR_FORMAT, "metadata key has length 1125899906842624", NULL);
    memcpy(b, orig, n); put32(b + g->kv[0].val_off - 4, 13);
    FAIL("kvtype.gguf", b, n, ST_ERR_FORMAT, "key 'general.architecture' has unknown value type 13", NULL);

    /* tensor info fields: name, n_dims u32, dims u64 x n, type u32, offset u64 */
    size_t f0 = after_name(t0);
    memcpy(b, orig, n); put64(b + f0 + 4, UINT64_MAX);
    FAIL("dims.gguf", b, n, ST_ERR_FORMAT, "tensor 'token_embd.weight': dimension 0 = 18446744073709551615 makes the element count overflow", NULL);
    memcpy(b, orig, n); put64(b + f0 + 4 + 8, 1ull << 40);
    FAIL("dims2.gguf", b, n, ST_ERR_FORMAT, "tensor 'token_embd.weight': data", "runs past the end of the file");
    memcpy(b, orig, n); put32(b + f0, 7);
    FAIL("ndims.gguf", b, n, ST_ERR_FORMAT, "tensor 'token_embd.weight': n_dims 7 is not in 1..4", NULL);
    size_t ft = f0 + 4 + 8 * t0->n_dims;
    memcpy(b, orig, n); put32(b + ft, 77);
    FAIL("dtype.gguf", b, n, ST_ERR_FORMAT, "tensor 'token_embd.weight': unknown ggml type code 77", NULL);
    memcpy(b, orig, n); put32(b + ft, 10);
    FAIL("q2k.gguf", b, n, ST_ERR_UNSUPPORTED, "tensor 'token_embd.weight' has type Q2_K (ggml type 10), which strata cannot read", NULL);
    memcpy(b, orig, n); put32(b + ft, 12);   /* q4_k needs rows of 256 */
    FAIL("q4k-row.gguf", b, n, ST_ERR_FORMAT, "row length 64 is not a multiple of the q4_k block size 256", NULL);
    memcpy(b, orig, n); put64(b + ft + 4, t0->offset + 4);
    FAIL("misaligned.gguf", b, n, ST_ERR_FORMAT, "tensor 'token_embd.weight': data offset 4 is not a multiple of the alignment 32", NULL);
    memcpy(b, orig, n); put64(b + ft + 4, 1ull << 40);
    FAIL("offset.gguf", b, n, ST_ERR_FORMAT, "tensor 'token_embd.weight': data [1099511627776", "runs past the end of the file");
    memcpy(b, orig, n); memcpy(b + up1->name_off, "blk.1.ffn_XX.weight", up1->name_len);
    FAIL("missing.gguf", b, n, ST_ERR_FORMAT, "tensor 'blk.1.ffn_up.weight' (layer 1 MLP up projection) is missing", NULL);
    /* blk.1.ffn_up → blk.0.ffn_up: a duplicate name */
    memcpy(b, orig, n); b[up1->name_off + 4] = '0';
    FAIL("dup.gguf", b, n, ST_ERR_FORMAT, "tensor 'blk.0.ffn_up.weight': duplicate tensor name", NULL);
    memcpy(b, orig, n); put32(b + g->kv[ki].val_off, 8);
    FAIL("shape.gguf", b, n, ST_ERR_FORMAT, "tensor 'blk.0.attn_k.weight' (key projection) has shape [64, 32], expected [64, 16]",
         "n_head_kv 2 x head_dim 8");
    memcpy(b, orig, n); put32(b + g->kv[kkv].val_off, 3);
    FAIL("gqa.gguf", b, n, ST_ERR_FORMAT, "head count 4 (qwen2.attention.head_count) is not a multiple of the KV head count 3 "
         "(qwen2.attention.head_count_kv)", "fix qwen2.attention.head_count_kv in the GGUF metadata");
    memcpy(b, orig, n); put32(b + g->kv[kb].val_off, 1);
    FAIL("layers1.gguf", b, n, ST_ERR_FORMAT, "tensor 'blk.1.attn_norm.weight' belongs to layer 1 but the model has 1 layers", NULL);
    memcpy(b, orig, n); put32(b + g->kv[kb].val_off, 100);
    FAIL("layersmany.gguf", b, n, ST_ERR_FORMAT, "says 100 layers (qwen2.block_count) but the weights hold only 26 tensors", NULL);
    memcpy(b, orig, n); put32(b + g->kv[kb].val_off, 1000000);
    FAIL("layersbig.gguf", b, n, ST_ERR_FORMAT, "metadata key 'qwen2.block_count' = 1000000 is out of range: it must be in 1..4096",
         "docs/limits.md");
    memcpy(b, orig, n); put32(b + g->kv[kb].val_off - 4, ST_GGUF_STRING);
    FAIL("kvtype2.gguf", b, n, ST_ERR_FORMAT, "byte offset", NULL);
    memcpy(b, orig, n); put32(b + 4, 1);
    FAIL("v1.gguf", b, n, ST_ERR_FORMAT, "GGUF version 1 is not supported", NULL);
    memcpy(b, orig, n); put32(b + 4, 0x03000000);
    FAIL("bigendian.gguf", b, n, ST_ERR_FORMAT, "byte-swapped", NULL);

    /* every prefix of the header and the first bytes of data: clean failure */
    int crashes_avoided = 0;
    char path[512];
    snprintf(path, sizeof path, "%s/prefix.gguf", tmpdir);
    for (size_t cut = 0; cut < (size_t)g->data_start + 64; cut++) {
        spit(path, orig, cut);
        st_model *m = NULL;
        st_status s = st_model_open(path, &m);
        if (s != ST_OK && m == NULL && st_last_error()[0]) crashes_avoided++;
        st_model_free(m);
    }
    CHECK_MSG(crashes_avoided == (int)g->data_start + 64, "%d of %d truncations failed cleanly", crashes_avoided,
              (int)g->data_start + 64);
    /* random byte flips in the header: either a valid model or an error, never a crash */
    srand(7);
    int opened = 0, failed = 0;
    snprintf(path, sizeof path, "%s/flip.gguf", tmpdir);
    for (int it = 0; it < 800; it++) {
        memcpy(b, orig, n);
        int flips = 1 + rand() % 3;
        for (int k = 0; k < flips; k++) b[rand() % g->data_start] ^= (uint8_t)(1u << (rand() % 8));
        spit(path, b, n);
        st_model *m = NULL;
        st_status s = st_model_open(path, &m);
        if (s == ST_OK) { opened++; CHECK(m != NULL); } else { failed++; CHECK(m == NULL && st_last_error()[0]); }
        st_model_free(m);
    }
    CHECK(opened + failed == 800 && failed > 0);
    unlink(path);
    snprintf(path, sizeof path, "%s/prefix.gguf", tmpdir);
    unlink(path);
    st_gguf_free(g);
    free(b);
    free(orig);
}

/* A hand-built GGUF: header + KVs, no tensors. */
struct gb { uint8_t buf[4096]; size_t n; };
static void gb_u32(struct gb *g, uint32_t v) { put32(g->buf + g->n, v); g->n += 4; }
static void gb_u64(struct gb *g, uint64_t v) { put64(g->buf + g->n, v); g->n += 8; }
static void gb_str(struct gb *g, const char *s) { gb_u64(g, strlen(s)); memcpy(g->buf + g->n, s, strlen(s)); g->n += strlen(s); }
static void gb_head(struct gb *g, uint64_t n_kv) { g->n = 0; memcpy(g->buf, "GGUF", 4); g->n = 4; gb_u32(g, 3); gb_u64(g, 0); gb_u64(g, n_kv); }

static void gguf_built_cases(void) {
    struct gb g;
    gb_head(&g, 1); gb_str(&g, "x.nested"); gb_u32(&g, ST_GGUF_ARRAY); gb_u32(&g, ST_GGUF_ARRAY); gb_u64(&g, 1);
    FAIL("nested.gguf", g.buf, g.n, ST_ERR_FORMAT, "key 'x.nested' is an array of arrays", NULL);
    gb_head(&g, 1); gb_str(&g, "x.arr"); gb_u32(&g, ST_GGUF_ARRAY); gb_u32(&g, ST_GGUF_U32); gb_u64(&g, 1ull << 40);
    FAIL("arrlen.gguf", g.buf, g.n, ST_ERR_FORMAT, "array 'x.arr' claims 1099511627776 u32 elements", NULL);
    gb_head(&g, 1); gb_str(&g, "x.strs"); gb_u32(&g, ST_GGUF_ARRAY); gb_u32(&g, ST_GGUF_STRING); gb_u64(&g, 2);
    gb_str(&g, "ok"); gb_u64(&g, 1ull << 33);
    FAIL("arrstr.gguf", g.buf, g.n, ST_ERR_FORMAT, "element of string array 'x.strs' has length 8589934592", NULL);
    gb_head(&g, 1); gb_str(&g, "general.alignment"); gb_u32(&g, ST_GGUF_U32); gb_u32(&g, 48);
    FAIL("align48.gguf", g.buf, g.n, ST_ERR_FORMAT, "general.alignment 48 is not a power of two and a multiple of 8", NULL);
    gb_head(&g, 1); gb_str(&g, "general.alignment"); gb_u32(&g, ST_GGUF_U64); gb_u64(&g, 32);
    FAIL("align64.gguf", g.buf, g.n, ST_ERR_FORMAT, "general.alignment has type u64; it must be u32", NULL);
    gb_head(&g, 1); gb_str(&g, "x.flag"); gb_u32(&g, ST_GGUF_BOOL); g.buf[g.n++] = 2;
    FAIL("bool.gguf", g.buf, g.n, ST_ERR_FORMAT, "key 'x.flag' is a bool with value 2", NULL);
    gb_head(&g, 2); gb_str(&g, "a.b"); gb_u32(&g, ST_GGUF_U8); g.buf[g.n++] = 1; gb_str(&g, "a.b"); gb_u32(&g, ST_GGUF_U8); g.buf[g.n++] = 1;
    FAIL("dupkey.gguf", g.buf, g.n, ST_ERR_FORMAT, "duplicate metadata key 'a.b'", NULL);
    gb_head(&g, 1); gb_str(&g, "general.name"); gb_u32(&g, ST_GGUF_STRING); gb_str(&g, "x");
    FAIL("noarch.gguf", g.buf, g.n, ST_ERR_FORMAT, "metadata key 'general.architecture' is missing", NULL);
    gb_head(&g, 1); gb_str(&g, "general.architecture"); gb_u32(&g, ST_GGUF_STRING); gb_str(&g, "gemma3");
    FAIL("gemma.gguf", g.buf, g.n, ST_ERR_UNSUPPORTED, "general.architecture is 'gemma3'; strata runs llama, qwen2 and qwen3", NULL);
    gb_head(&g, 2); gb_str(&g, "general.architecture"); gb_u32(&g, ST_GGUF_STRING); gb_str(&g, "qwen2");
    gb_str(&g, "qwen2.embedding_length"); gb_u32(&g, ST_GGUF_I8); g.buf[g.n++] = 64;
    FAIL("nohp.gguf", g.buf, g.n, ST_ERR_FORMAT, "metadata key 'qwen2.block_count' is missing", NULL);

    /* many records: duplicate detection must not be quadratic */
    {
        size_t nk = ST_MODEL_MAX_KV, cap = 24 + nk * 32;
        uint8_t *big = malloc(cap);
        size_t o = 0;
        memcpy(big, "GGUF", 4); put32(big + 4, 3); put64(big + 8, 0); put64(big + 16, nk); o = 24;
        for (size_t i = 0; i < nk; i++) {
            char k[32];
            int kl = snprintf(k, sizeof k, "k.%zu", i == nk - 1 ? (size_t)12345 : i);
            put64(big + o, (uint64_t)kl); o += 8;
            memcpy(big + o, k, (size_t)kl); o += (size_t)kl;
            put32(big + o, ST_GGUF_U8); o += 4;
            big[o++] = (uint8_t)i;
        }
        struct st_gguf *pg = NULL;
        CHECK_ERR(st_gguf_parse("many.gguf", big, o - 0, &pg), ST_ERR_FORMAT, "duplicate metadata key 'k.12345'");
        put64(big + o - 1 - 4 - 7 - 8, 7);   /* last key "k.12345" → 7 bytes "k.12345" kept; rename it */
        memcpy(big + o - 1 - 4 - 7, "z.12345", 7);
        CHECK_OK(st_gguf_parse("many.gguf", big, o, &pg));
        if (pg) { CHECK(pg->n_kv == (int64_t)nk && st_gguf_find(pg, "z.12345") == (int64_t)nk - 1); st_gguf_free(pg); }
        free(big);
    }

    /* a tokenizer-bearing, valid-header file: accessors on every value type */
    gb_head(&g, 6);
    gb_str(&g, "t.i16"); gb_u32(&g, ST_GGUF_I16); g.buf[g.n++] = 0xfe; g.buf[g.n++] = 0xff;
    gb_str(&g, "t.f64"); gb_u32(&g, ST_GGUF_F64); { double d = 2.5; uint64_t u; memcpy(&u, &d, 8); gb_u64(&g, u); }
    gb_str(&g, "t.b"); gb_u32(&g, ST_GGUF_BOOL); g.buf[g.n++] = 1;
    gb_str(&g, "t.strs"); gb_u32(&g, ST_GGUF_ARRAY); gb_u32(&g, ST_GGUF_STRING); gb_u64(&g, 3); gb_str(&g, "a"); gb_str(&g, ""); gb_str(&g, "xyz");
    gb_str(&g, "t.ints"); gb_u32(&g, ST_GGUF_ARRAY); gb_u32(&g, ST_GGUF_I32); gb_u64(&g, 2); gb_u32(&g, (uint32_t)-5); gb_u32(&g, 7);
    gb_str(&g, "t.u64"); gb_u32(&g, ST_GGUF_U64); gb_u64(&g, UINT64_MAX);
    struct st_gguf *pg = NULL;
    CHECK_OK(st_gguf_parse("built.gguf", g.buf, g.n, &pg));
    if (pg) {
        int64_t v; double d; bool bl; struct st_gguf_str s; st_gguf_type et; uint64_t cnt;
        CHECK_OK(st_gguf_get_int(pg, "t.i16", &v)); CHECK(v == -2);
        CHECK_OK(st_gguf_get_float(pg, "t.f64", &d)); CHECK(d == 2.5);
        CHECK_ERR(st_gguf_get_int(pg, "t.f64", &v), ST_ERR_FORMAT, "'t.f64' has type f64, expected an integer");
        CHECK_OK(st_gguf_get_bool(pg, "t.b", &bl)); CHECK(bl);
        CHECK_OK(st_gguf_get_arr(pg, "t.strs", &et, &cnt)); CHECK(et == ST_GGUF_STRING && cnt == 3);
        CHECK_OK(st_gguf_arr_str(pg, "t.strs", 2, &s)); CHECK(s.len == 3 && !memcmp(s.ptr, "xyz", 3));
        CHECK_OK(st_gguf_arr_str(pg, "t.strs", 1, &s)); CHECK(s.len == 0);
        CHECK_ERR(st_gguf_arr_str(pg, "t.strs", 3, &s), ST_ERR_FORMAT, "array 't.strs' has 3 elements; index 3 is out of range");
        CHECK_ERR(st_gguf_arr_int(pg, "t.strs", 0, &v), ST_ERR_FORMAT, "holds string elements, expected integers");
        CHECK_OK(st_gguf_arr_int(pg, "t.ints", 0, &v)); CHECK(v == -5);
        CHECK_OK(st_gguf_arr_float(pg, "t.ints", 1, &d)); CHECK(d == 7.0);
        CHECK_ERR(st_gguf_get_str(pg, "t.ints", &s), ST_ERR_FORMAT, "'t.ints' has type array, expected string");
        CHECK_ERR(st_gguf_get_int(pg, "t.u64", &v), ST_ERR_FORMAT, "does not fit in int64");
        CHECK(st_gguf_kv_type(pg, st_gguf_find(pg, "t.b")) == ST_GGUF_BOOL);
        CHECK(pg->alignment == 32 && pg->n_tensors == 0);
        st_gguf_free(pg);
    }
}


/* Tokenizer keys inserted into a fixture GGUF (padded so the data section
 * stays aligned): tok_source and chat_template come from the metadata. */
static void gguf_tokenizer_keys(void) {
    const char *src = "tests/fixtures/models/qwen3-tiny/qwen3-tiny-f16.gguf";
    size_t n;
    uint8_t *orig = slurp(src, &n);
    struct gb kv;
    kv.n = 0;
    gb_str(&kv, "tokenizer.ggml.model"); gb_u32(&kv, ST_GGUF_STRING); gb_str(&kv, "gpt2");
    char tmpl[200] = "{% for m in messages %}<|im_start|>{{ m.role }}{% endfor %}";
    size_t base = kv.n + 8 + strlen("tokenizer.chat_template") + 4 + 8 + strlen(tmpl);
    size_t pad = (32 - base % 32) % 32;
    memset(tmpl + strlen(tmpl), ' ', pad);
    gb_str(&kv, "tokenizer.chat_template"); gb_u32(&kv, ST_GGUF_STRING); gb_str(&kv, tmpl);
    CHECK(kv.n % 32 == 0);
    uint8_t *b = malloc(n + kv.n);
    memcpy(b, orig, 24);
    memcpy(b + 24, kv.buf, kv.n);
    memcpy(b + 24 + kv.n, orig + 24, n - 24);
    uint64_t nkv = 0;
    for (int i = 7; i >= 0; i--) nkv = (nkv << 8) | orig[16 + i];
    put64(b + 16, nkv + 2);
    char path[512];
    snprintf(path, sizeof path, "%s/tok.gguf", tmpdir);
    spit(path, b, n + kv.n);
    st_model *m = NULL, *ref = NULL;
    CHECK_OK(st_model_open(path, &m));
    CHECK_OK(st_model_open(src, &ref));
    if (m && ref) {
        CHECK(m->tok_source == ST_TOKSRC_GGUF && ref->tok_source == ST_TOKSRC_NONE);
        CHECK(m->chat_template && !strncmp(m->chat_template, "{% for m in messages %}", 23) && strlen(m->chat_template) == strlen(tmpl));
        CHECK(m->tokenizer_path == NULL);
        const struct st_tensor *a = st_model_layer_tensor(m, 2, ST_T_W_DOWN), *r = st_model_layer_tensor(ref, 2, ST_T_W_DOWN);
        CHECK(a->offset == r->offset + kv.n && !memcmp(a->data, r->data, a->bytes));
    }
    st_model_free(m);
    st_model_free(ref);
    unlink(path);
    free(b);
    free(orig);
}

/* ---- safetensors / HF dirs ----------------------------------------------------- */

static void mkdir_p(const char *p) { mkdir(p, 0700); }

/* Copies the qwen2 HF fixture into tmpdir/name; returns the dir path. */
static void hf_copy(const char *name, char *dir, size_t dn) {
    snprintf(dir, dn, "%s/%s", tmpdir, name);
    mkdir_p(dir);
    const char *files[] = {"config.json", "model.safetensors"};
    for (size_t i = 0; i < 2; i++) {
        char s[512], d[512];
        snprintf(s, sizeof s, "tests/fixtures/models/qwen2-tiny/hf/%s", files[i]);
        snprintf(d, sizeof d, "%s/%s", dir, files[i]);
        size_t n;
        void *data = slurp(s, &n);
        spit(d, data, n);
        free(data);
    }
}

static void hf_rm(const char *dir) {
    const char *files[] = {"config.json", "model.safetensors", "model.safetensors.index.json", "a.safetensors",
                           "b.safetensors", "tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < ST_ARRAY_LEN(files); i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void expect_dir(const char *dir, st_status want, const char *n1, const char *n2, int line) {
    st_model *m = NULL;
    st_status s = st_model_open(dir, &m);
    const char *msg = st_last_error();
    bool ok = s == want && !m && (!n1 || strstr(msg, n1)) && (!n2 || strstr(msg, n2)) && strstr(msg, "hint: ");
    CHECK_MSG(ok, "line %d: %s: status %s (want %s)\n  message: %s\n  want: '%s' and '%s' and a hint", line, dir,
              st_status_name(s), st_status_name(want), msg, n1 ? n1 : "", n2 ? n2 : "");
    st_model_free(m);
}
#define DIRFAIL(dir, st, a, b) expect_dir(dir, st, a, b, __LINE__)

/* Rewrites a safetensors header (JSON edited by fn), keeping the data buffer. */
static void st_rewrite(const char *dir, void (*fn)(json_t *), size_t cut_data) {
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    size_t n;
    uint8_t *d = slurp(p, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | d[i];
    json_t *h = json_loadb((char *)d + 8, hl, 0, NULL);
    fn(h);
    char *txt = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t tl = strlen(txt), dl = n - 8 - hl - cut_data;
    uint8_t *o = malloc(8 + tl + dl);
    put64(o, tl);
    memcpy(o + 8, txt, tl);
    memcpy(o + 8 + tl, d + 8 + hl, dl);
    spit(p, o, 8 + tl + dl);
    free(o); free(txt); json_decref(h); free(d);
}

static void set_offsets(json_t *h, const char *name, json_int_t b, json_int_t e) {
    json_t *o = json_object_get(json_object_get(h, name), "data_offsets");
    json_array_set_new(o, 0, json_integer(b));
    json_array_set_new(o, 1, json_integer(e));
}
static json_int_t off_of(json_t *h, const char *name, int i) {
    return json_integer_value(json_array_get(json_object_get(json_object_get(h, name), "data_offsets"), (size_t)i));
}
static void ed_overlap(json_t *h) {
    const char *a = "model.layers.0.input_layernorm.weight", *b = "model.layers.1.input_layernorm.weight";
    set_offsets(h, b, off_of(h, a, 0) + 4, off_of(h, a, 1) + 4);
}
static void ed_size(json_t *h) {
    const char *a = "model.norm.weight";
    set_offsets(h, a, off_of(h, a, 0), off_of(h, a, 1) - 4);
}
static void ed_past(json_t *h) { set_offsets(h, "model.norm.weight", 1 << 30, (1 << 30) + 256); }
static void ed_i32(json_t *h) { json_object_set_new(json_object_get(h, "model.norm.weight"), "dtype", json_string("I32")); }
static void ed_x32(json_t *h) { json_object_set_new(json_object_get(h, "model.norm.weight"), "dtype", json_string("X32")); }
static void ed_shape(json_t *h) {
    json_t *s = json_object_get(json_object_get(h, "model.layers.0.self_attn.k_proj.weight"), "shape");
    json_array_set_new(s, 0, json_integer(16));
    json_array_set_new(s, 1, json_integer(128));
}
static void ed_drop_up(json_t *h) { json_object_del(h, "model.layers.1.mlp.up_proj.weight"); }
static void ed_none(json_t *h) { (void)h; }

static void edit_config(const char *dir, const char *key, json_t *val) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *c = json_load_file(p, 0, NULL);
    if (val) json_object_set_new(c, key, val); else json_object_del(c, key);
    json_dump_file(c, p, JSON_INDENT(2));
    json_decref(c);
}

static void hf_cases(void) {
    char dir[512], p[600];
    size_t n;
    uint8_t *d;

    hf_copy("hf-hlen", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    d = slurp(p, &n); put64(d, n + 10); spit(p, d, n); free(d);
    DIRFAIL(dir, ST_ERR_FORMAT, "model.safetensors: byte offset 0: header length", "runs past the end of the file");
    d = slurp(p, &n); put64(d, 200000000); spit(p, d, n); free(d);
    DIRFAIL(dir, ST_ERR_FORMAT, "header length 200000000 is larger than the 100 MB limit", NULL);
    d = slurp(p, &n); spit(p, d, 5); free(d);
    DIRFAIL(dir, ST_ERR_FORMAT, "too short for the 8-byte header length", NULL);
    hf_rm(dir);

    hf_copy("hf-json", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    d = slurp(p, &n); *(char *)memchr(d + 8, ':', n - 8) = '#'; spit(p, d, n); free(d);
    DIRFAIL(dir, ST_ERR_FORMAT, "model.safetensors: byte offset", "header JSON 1:");
    hf_rm(dir);

    struct { const char *name; void (*fn)(json_t *); size_t cut; st_status st; const char *a, *b; } cases[] = {
        {"hf-trunc", ed_none, 1000, ST_ERR_FORMAT, "runs past the end of the data buffer", "the file is truncated"},
        {"hf-overlap", ed_overlap, 0, ST_ERR_FORMAT, "tensors 'model.layers.0.input_layernorm.weight' and 'model.layers.1.input_layernorm.weight' overlap", NULL},
        {"hf-size", ed_size, 0, ST_ERR_FORMAT, "tensor 'model.norm.weight': data_offsets", "hold 252 bytes, but shape x F32 needs 256"},
        {"hf-past", ed_past, 0, ST_ERR_FORMAT, "tensor 'model.norm.weight': data [1073741824, 1073742080) runs past the end", NULL},
        {"hf-i32", ed_i32, 0, ST_ERR_UNSUPPORTED, "tensor 'model.norm.weight' has dtype I32; strata reads F32, F16 and BF16", NULL},
        {"hf-x32", ed_x32, 0, ST_ERR_FORMAT, "tensor 'model.norm.weight' has unknown dtype 'X32'", NULL},
        {"hf-shape", ed_shape, 0, ST_ERR_FORMAT,
         "tensor 'model.layers.0.self_attn.k_proj.weight' (key projection) has shape [16, 128], expected [32, 64]", "n_head_kv 2 x head_dim 16"},
        {"hf-missing", ed_drop_up, 0, ST_ERR_FORMAT, "tensor 'model.layers.1.mlp.up_proj.weight' (layer 1 MLP up projection) is missing", NULL},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
        hf_copy(cases[i].name, dir, sizeof dir);
        st_rewrite(dir, cases[i].fn, cases[i].cut);
        expect_dir(dir, cases[i].st, cases[i].a, cases[i].b, (int)(1000 + i));
        hf_rm(dir);
    }

    /* config.json */
    hf_copy("hf-cfg", dir, sizeof dir);
    edit_config(dir, "hidden_size", NULL);
    DIRFAIL(dir, ST_ERR_FORMAT, "config.json: required field 'hidden_size' is missing", "a positive integer");
    hf_rm(dir);
    hf_copy("hf-cfg", dir, sizeof dir);
    edit_config(dir, "num_attention_heads", json_string("four"));
    DIRFAIL(dir, ST_ERR_FORMAT, "config.json: field 'num_attention_heads' must be a positive integer", NULL);
    hf_rm(dir);
    hf_copy("hf-cfg", dir, sizeof dir);
    edit_config(dir, "architectures", json_pack("[s]", "MistralForCausalLM"));
    DIRFAIL(dir, ST_ERR_UNSUPPORTED, "architecture 'MistralForCausalLM' is not supported", NULL);
    hf_rm(dir);
    hf_copy("hf-cfg", dir, sizeof dir);
    edit_config(dir, "rope_parameters", json_pack("{s:s,s:f,s:f}", "rope_type", "yarn", "factor", 4.0, "rope_theta", 1e6));
    DIRFAIL(dir, ST_ERR_UNSUPPORTED, "rope_parameters.rope_type is 'yarn'", NULL);
    hf_rm(dir);
    hf_copy("hf-cfg", dir, sizeof dir);
    edit_config(dir, "rope_scaling", json_pack("{s:s,s:f}", "rope_type", "llama3", "factor", 8.0));
    DIRFAIL(dir, ST_ERR_FORMAT, "required field 'low_freq_factor' is missing", "rope_scaling");
    hf_rm(dir);
    hf_copy("hf-cfg", dir, sizeof dir);
    edit_config(dir, "tie_word_embeddings", json_false());
    DIRFAIL(dir, ST_ERR_FORMAT, "tensor 'lm_head.weight' (output (lm_head)) is missing", "tie_word_embeddings is false");
    hf_rm(dir);
    hf_copy("hf-cfg", dir, sizeof dir);
    edit_config(dir, "num_key_value_heads", json_integer(3));
    DIRFAIL(dir, ST_ERR_FORMAT, "head count 4 (num_attention_heads) is not a multiple of the KV head count 3 (num_key_value_heads)",
            "fix num_key_value_heads in the config.json");
    hf_rm(dir);
    hf_copy("hf-cfg", dir, sizeof dir);
    edit_config(dir, "num_key_value_heads", json_null());   /* null → H: shapes no longer match */
    DIRFAIL(dir, ST_ERR_FORMAT, "(key projection) has shape [32, 64], expected [64, 64]", NULL);
    hf_rm(dir);
    hf_copy("hf-cfg", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/config.json", dir);
    spit(p, "{\n  \"hidden_size\": 64,\n  oops\n}\n", 32);
    DIRFAIL(dir, ST_ERR_FORMAT, "config.json:3:", "invalid JSON");
    unlink(p);
    DIRFAIL(dir, ST_ERR_FORMAT, "no config.json in this directory", NULL);
    hf_rm(dir);
    hf_copy("hf-noweights", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    DIRFAIL(dir, ST_ERR_FORMAT, "neither model.safetensors nor model.safetensors.index.json", NULL);
    hf_rm(dir);

    /* shards: split model.safetensors into a.safetensors + b.safetensors */
    hf_copy("hf-shards", dir, sizeof dir);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    d = slurp(p, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | d[i];
    json_t *h = json_loadb((char *)d + 8, hl, 0, NULL);
    json_t *ha = json_object(), *hb = json_object(), *wm = json_object();
    const char *key;
    json_t *v;
    int k = 0;
    json_object_foreach(h, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        bool first = (k++ % 2) == 0;
        json_object_set(first ? ha : hb, key, v);
        json_object_set_new(wm, key, json_string(first ? "a.safetensors" : "b.safetensors"));
    }
    /* both shards keep the whole data buffer: offsets stay valid */
    for (int s = 0; s < 2; s++) {
        char *txt = json_dumps(s ? hb : ha, JSON_COMPACT);
        size_t tl = strlen(txt), dl = n - 8 - hl;
        uint8_t *o = malloc(8 + tl + dl);
        put64(o, tl);
        memcpy(o + 8, txt, tl);
        memcpy(o + 8 + tl, d + 8 + hl, dl);
        snprintf(p, sizeof p, "%s/%s", dir, s ? "b.safetensors" : "a.safetensors");
        spit(p, o, 8 + tl + dl);
        free(o);
        free(txt);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    json_t *idx = json_pack("{s:{s:i},s:O}", "metadata", "total_size", 1, "weight_map", wm);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    json_dump_file(idx, p, 0);
    st_model *m = NULL;
    CHECK_OK(st_model_open(dir, &m));
    if (m) {
        CHECK(m->n_files == 2 && m->hp.n_layer == 2);
        CHECK(st_model_layer_tensor(m, 0, ST_T_WQ)->file != st_model_layer_tensor(m, 0, ST_T_WK)->file ||
              st_model_layer_tensor(m, 0, ST_T_WK)->file != st_model_layer_tensor(m, 0, ST_T_WV)->file);
        st_model *ref = NULL;
        CHECK_OK(st_model_open("tests/fixtures/models/qwen2-tiny/hf", &ref));
        if (ref) {
            for (int64_t i = 0; i < ref->n_tensors; i++) {
                const struct st_tensor *a = &ref->tensors[i], *b = st_model_find_tensor(m, a->name);
                CHECK_MSG(b && b->bytes == a->bytes && !memcmp(a->data, b->data, a->bytes), "shard tensor %s", a->name);
            }
            CHECK(st_model_total_bytes(ref) == st_model_total_bytes(m));
        }
        st_model_free(ref);
    }
    st_model_free(m);
    /* one tensor in both shards */
    {
        const char *dup = NULL;
        json_object_foreach(ha, key, v) { dup = key; break; }
        json_object_set(hb, dup, json_object_get(ha, dup));
        char *txt = json_dumps(hb, JSON_COMPACT);
        size_t tl = strlen(txt), dl = n - 8 - hl;
        uint8_t *o = malloc(8 + tl + dl);
        put64(o, tl);
        memcpy(o + 8, txt, tl);
        memcpy(o + 8 + tl, d + 8 + hl, dl);
        char bp[600];
        snprintf(bp, sizeof bp, "%s/b.safetensors", dir);
        spit(bp, o, 8 + tl + dl);
        free(o);
        free(txt);
        char want[200];
        snprintf(want, sizeof want, "tensor '%s' appears twice", dup);
        DIRFAIL(dir, ST_ERR_FORMAT, want, "a.safetensors");
    }
    /* a tensor listed in the index but absent from its shard */
    json_object_set_new(wm, "model.layers.9.extra.weight", json_string("a.safetensors"));
    json_dump_file(idx, p, 0);
    DIRFAIL(dir, ST_ERR_FORMAT, "tensor 'model.layers.9.extra.weight' is listed in weight_map but its shard 'a.safetensors' does not contain it", NULL);
    json_object_del(wm, "model.layers.9.extra.weight");
    /* an index naming a missing shard */
    json_object_set_new(wm, "model.norm.weight", json_string("model-00002-of-00002.safetensors"));
    json_dump_file(idx, p, 0);
    DIRFAIL(dir, ST_ERR_IO, "shard 'model-00002-of-00002.safetensors' (holding tensor 'model.norm.weight') does not exist", NULL);
    json_object_set_new(wm, "model.norm.weight", json_string("../b.safetensors"));
    json_dump_file(idx, p, 0);
    DIRFAIL(dir, ST_ERR_FORMAT, "names '../b.safetensors', which is not a file in this directory", NULL);
    json_decref(idx); json_decref(wm); json_decref(ha); json_decref(hb); json_decref(h);
    free(d);

    /* tokenizer.json and the chat template are picked up */
    json_t *tc = json_pack("{s:s}", "chat_template", "{{ messages }}");
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    json_dump_file(tc, p, 0);
    json_decref(tc);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    spit(p, "{}", 2);
    idx = NULL;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    unlink(p);
    hf_copy("hf-shards", dir, sizeof dir);
    m = NULL;
    CHECK_OK(st_model_open(dir, &m));
    if (m) {
        CHECK(m->tok_source == ST_TOKSRC_HF_JSON && m->tokenizer_path && strstr(m->tokenizer_path, "/tokenizer.json"));
        CHECK(m->chat_template && !strcmp(m->chat_template, "{{ messages }}"));
    }
    st_model_free(m);
    hf_rm(dir);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/strata-model-bad-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    gguf_cases();
    gguf_built_cases();
    gguf_tokenizer_keys();
    hf_cases();
    rmdir(tmpdir);
    return st_test_finish("model_bad");
}
