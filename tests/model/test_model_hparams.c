/* Hyper-parameters that are present and well-typed but absurd: non-finite or
 * out-of-range epsilon, RoPE base and factors, counts of zero or beyond the
 * limits (docs/limits.md), a head dimension that does not divide. Each was
 * once accepted and made garbage (NaN or all-zero logits) with exit 0; each
 * must now fail at load with ST_ERR_FORMAT naming the GGUF key or the
 * config.json field, the value and the allowed range, plus a hint. The files
 * are the fixtures with one value patched (GGUF) or one field set (config.json). */
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

static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Opens path; expects ST_ERR_FORMAT with both needles and a hint. */
static void expect_fail(const char *path, const char *n1, const char *n2, int line) {
    st_model *m = NULL;
    st_status s = st_model_open(path, &m);
    const char *msg = st_last_error();
    bool ok = s == ST_ERR_FORMAT && !m && strstr(msg, n1) && (!n2 || strstr(msg, n2)) && strstr(msg, "\nhint: ");
    CHECK_MSG(ok, "line %d: status %s (want format)\n  message: %s\n  want: '%s' and '%s' and a hint", line,
              st_status_name(s), msg, n1, n2 ? n2 : "");
    st_model_free(m);
}
#define FAIL(path, a, b) expect_fail(path, a, b, __LINE__)

/* The fixture with the u32/f32 value of key replaced by bits (same type). */
static void gguf_patched(const char *src, const char *key, uint32_t bits, const char *out) {
    size_t n;
    uint8_t *d = slurp(src, &n);
    struct st_gguf *g = NULL;
    if (st_gguf_parse(src, d, n, &g)) { fprintf(stderr, "%s\n", st_last_error()); exit(1); }
    int64_t i = st_gguf_find(g, key);
    CHECK_MSG(i >= 0, "%s has no key %s", src, key);
    if (i >= 0) put32(d + g->kv[i].val_off, bits);
    spit(out, d, n);
    st_gguf_free(g);
    free(d);
}

static void gguf_cases(void) {
    const char *q2 = "tests/fixtures/models/qwen2-tiny/qwen2-tiny-f32.gguf";
    char p[512];
    snprintf(p, sizeof p, "%s/hp.gguf", tmpdir);
    st_model *m = NULL;
    CHECK_OK(st_model_open(q2, &m));   /* the unpatched file loads */
    st_model_free(m);

    gguf_patched(q2, "qwen2.attention.layer_norm_rms_epsilon", 0x7f800000u, p);
    FAIL(p, "hp.gguf: metadata key 'qwen2.attention.layer_norm_rms_epsilon' = inf is not a finite number in [1e-12, 0.1]",
         "computes garbage");
    gguf_patched(q2, "qwen2.attention.layer_norm_rms_epsilon", 0x7fc00000u, p);
    FAIL(p, "'qwen2.attention.layer_norm_rms_epsilon' = nan is not a finite number", NULL);
    gguf_patched(q2, "qwen2.attention.layer_norm_rms_epsilon", 0, p);
    FAIL(p, "'qwen2.attention.layer_norm_rms_epsilon' = 0 is not a finite number in [1e-12, 0.1]", NULL);
    gguf_patched(q2, "qwen2.rope.freq_base", 1, p);   /* the smallest denormal */
    FAIL(p, "metadata key 'qwen2.rope.freq_base' = 1.4013e-45 is not a finite number in (1, 1e+12]", NULL);
    gguf_patched(q2, "qwen2.rope.freq_base", f32_bits(-10000.0f), p);
    FAIL(p, "'qwen2.rope.freq_base' = -10000 is not a finite number in (1, 1e+12]", NULL);
    gguf_patched(q2, "qwen2.rope.freq_base", 0x7f800000u, p);
    FAIL(p, "'qwen2.rope.freq_base' = inf is not a finite number", NULL);
    gguf_patched(q2, "qwen2.context_length", 0, p);
    FAIL(p, "metadata key 'qwen2.context_length' = 0 is out of range: it must be in 1..16777216", "docs/limits.md");
    gguf_patched(q2, "qwen2.context_length", 1u << 25, p);
    FAIL(p, "'qwen2.context_length' = 33554432 is out of range: it must be in 1..16777216", NULL);
    /* head_dim = embedding_length / head_count when key_length is absent: name both */
    gguf_patched(q2, "qwen2.attention.head_count", 128, p);
    FAIL(p, "without qwen2.attention.key_length the head dimension is qwen2.embedding_length 64 / "
            "qwen2.attention.head_count 128, which is not a whole even number", NULL);
    gguf_patched(q2, "qwen2.attention.head_count", 5, p);
    FAIL(p, "qwen2.embedding_length 64 / qwen2.attention.head_count 5", NULL);
    gguf_patched(q2, "qwen2.embedding_length", 1u << 20, p);
    FAIL(p, "'qwen2.embedding_length' = 1048576 is out of range: it must be in 1..262144", NULL);
    gguf_patched(q2, "qwen2.attention.head_count_kv", 8192, p);
    FAIL(p, "'qwen2.attention.head_count_kv' = 8192 is out of range: it must be in 1..4096", NULL);
    gguf_patched(q2, "qwen2.feed_forward_length", 1u << 21, p);
    FAIL(p, "'qwen2.feed_forward_length' = 2097152 is out of range: it must be in 1..1048576", NULL);

    /* explicit key_length: odd, and beyond the limit */
    const char *ll = "tests/fixtures/models/llama-tiny/llama-tiny-f16.gguf";
    gguf_patched(ll, "llama.attention.key_length", 15, p);
    FAIL(p, "head dimension 15 (llama.attention.key_length) is odd", "RoPE rotates pairs");
    gguf_patched(ll, "llama.attention.key_length", 8192, p);
    FAIL(p, "'llama.attention.key_length' = 8192 is out of range: it must be in 1..4096", NULL);

    /* llama3 RoPE frequency factors: each one divides a frequency */
    CHECK_OK(st_model_open(ll, &m));
    const struct st_tensor *rf = m ? st_model_global_tensor(m, ST_T_ROPE_FREQS) : NULL;
    CHECK(rf != NULL);
    if (rf) {
        size_t n;
        uint8_t *d = slurp(ll, &n);
        uint32_t bad[] = {0, 0x7f800000u, 0x7fc00000u, f32_bits(-1.0f), f32_bits(4096.0f)};
        const char *want[] = {"element 3 is 0;", "element 3 is inf;", "element 3 is nan;", "element 3 is -1;",
                              "element 3 is 4096;"};
        for (size_t k = 0; k < ST_ARRAY_LEN(bad); k++) {
            uint8_t *e = d + rf->offset + 12;
            uint32_t keep;
            memcpy(&keep, e, 4);
            put32(e, bad[k]);
            spit(p, d, n);
            memcpy(e, &keep, 4);
            FAIL(p, "tensor 'rope_freqs.weight'", want[k]);
        }
        free(d);
    }
    st_model_free(m);
    unlink(p);
}

/* ---- config.json ----------------------------------------------------------------- */

static void hf_dir(char *dir, size_t dn, const char *key, json_t *val) {
    snprintf(dir, dn, "%s/hf", tmpdir);
    mkdir(dir, 0700);
    const char *files[] = {"config.json", "model.safetensors"};
    for (size_t i = 0; i < 2; i++) {
        char s[512], d[600];
        snprintf(s, sizeof s, "tests/fixtures/models/qwen2-tiny/hf/%s", files[i]);
        snprintf(d, sizeof d, "%s/%s", dir, files[i]);
        size_t n;
        void *data = slurp(s, &n);
        spit(d, data, n);
        free(data);
    }
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    json_t *c = json_load_file(p, 0, NULL);
    if (val) json_object_set_new(c, key, val);
    else json_object_del(c, key);
    json_dump_file(c, p, JSON_INDENT(2));
    json_decref(c);
}

static void hf_clean(const char *dir) {
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    rmdir(dir);
}

static void hf_cases(void) {
    char dir[512];
    st_model *m = NULL;
    hf_dir(dir, sizeof dir, "unused", NULL);
    CHECK_OK(st_model_open(dir, &m));
    st_model_free(m);
    hf_clean(dir);

    hf_dir(dir, sizeof dir, "rms_norm_eps", json_real(1e-50));
    FAIL(dir, "hf/config.json: field 'rms_norm_eps' = 1e-50 is not a finite number in [1e-12, 0.1]", NULL);
    hf_clean(dir);
    hf_dir(dir, sizeof dir, "rms_norm_eps", json_real(0.5));
    FAIL(dir, "field 'rms_norm_eps' = 0.5 is not a finite number in [1e-12, 0.1]", NULL);
    hf_clean(dir);
    hf_dir(dir, sizeof dir, "rope_theta", json_real(0.5));
    FAIL(dir, "field 'rope_theta' = 0.5 is not a finite number in (1, 1e+12]", NULL);
    hf_clean(dir);
    hf_dir(dir, sizeof dir, "rope_theta", json_real(1e300));
    FAIL(dir, "field 'rope_theta' = 1e+300 is not a finite number in (1, 1e+12]", NULL);
    hf_clean(dir);
    hf_dir(dir, sizeof dir, "num_attention_heads", json_integer(128));
    FAIL(dir, "without 'head_dim' the head dimension is hidden_size 64 / num_attention_heads 128, which is not a whole even number", NULL);
    hf_clean(dir);
    hf_dir(dir, sizeof dir, "max_position_embeddings", json_integer(1 << 25));
    FAIL(dir, "field 'max_position_embeddings' = 33554432 is out of range: it must be in 1..16777216", NULL);
    hf_clean(dir);
    hf_dir(dir, sizeof dir, "vocab_size", json_integer(1 << 22));
    FAIL(dir, "field 'vocab_size' = 4194304 is out of range: it must be in 1..2097152", NULL);
    hf_clean(dir);
    hf_dir(dir, sizeof dir, "num_hidden_layers", json_integer(5000));
    FAIL(dir, "field 'num_hidden_layers' = 5000 is out of range: it must be in 1..4096", NULL);
    hf_clean(dir);
    hf_dir(dir, sizeof dir, "rope_scaling", json_pack("{s:s,s:f}", "rope_type", "linear", "factor", 5000.0));
    FAIL(dir, "field 'rope_scaling.factor' = 5000 is not a finite number in (0, 1024]", NULL);
    hf_clean(dir);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/strata-hparams-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    gguf_cases();
    hf_cases();
    rmdir(tmpdir);
    return st_test_finish("model_hparams");
}
