/* Element types against independent references: block tables against
 * formats.md §1.4; dequantization of random blocks against gguf-py
 * (tests/fixtures/dtype/dtype_ref.gguf, tools/fixtures/make_dtype_fixtures.py);
 * f32→f16 against numpy and f32→bf16 against torch (round to nearest even,
 * ties and subnormals included); f16→f32 exhaustively against ldexp. */
#include "check.h"
#include "gguf_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct st_gguf_tensor_info *find(const struct st_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const struct st_gguf_tensor_info *t = &g->ti[i];
        if (t->name_len == strlen(name) && !memcmp(g->base + t->name_off, name, t->name_len)) return t;
    }
    return NULL;
}

static const void *tdata(const struct st_gguf *g, const struct st_gguf_tensor_info *t) {
    return g->base + g->data_start + t->offset;
}

static float ref_f16(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexpf((float)m, -24);
    else v = ldexpf((float)(m + 1024), e - 25);
    return s ? -v : v;
}

int main(void) {
    /* tables (formats.md §1.4) */
    static const struct { st_dtype t; const char *name; int64_t be; size_t bb; } tab[] = {
        {ST_DTYPE_F32, "f32", 1, 4}, {ST_DTYPE_F16, "f16", 1, 2}, {ST_DTYPE_BF16, "bf16", 1, 2},
        {ST_DTYPE_Q8_0, "q8_0", 32, 34}, {ST_DTYPE_Q4_0, "q4_0", 32, 18}, {ST_DTYPE_Q4_1, "q4_1", 32, 20},
        {ST_DTYPE_Q5_0, "q5_0", 32, 22}, {ST_DTYPE_Q5_1, "q5_1", 32, 24}, {ST_DTYPE_IQ4_NL, "iq4_nl", 32, 18},
        {ST_DTYPE_Q4_K, "q4_k", 256, 144}, {ST_DTYPE_Q5_K, "q5_k", 256, 176}, {ST_DTYPE_Q6_K, "q6_k", 256, 210},
    };
    CHECK(ST_ARRAY_LEN(tab) == ST_DTYPE_COUNT);
    for (size_t i = 0; i < ST_ARRAY_LEN(tab); i++) {
        CHECK_MSG(!strcmp(st_dtype_name(tab[i].t), tab[i].name), "%s", tab[i].name);
        CHECK_MSG(st_dtype_block_elems(tab[i].t) == tab[i].be, "%s block elems", tab[i].name);
        CHECK_MSG(st_dtype_block_bytes(tab[i].t) == tab[i].bb, "%s block bytes", tab[i].name);
        CHECK_MSG(st_dtype_row_bytes(tab[i].t, 512) == 512 / (size_t)tab[i].be * tab[i].bb, "%s row bytes", tab[i].name);
        CHECK(st_dtype_supported(tab[i].t));
    }
    CHECK(!st_dtype_supported(ST_DTYPE_COUNT));
    CHECK(!strcmp(st_dtype_name(ST_DTYPE_COUNT), "invalid"));

    /* f16 → f32: exhaustive against ldexp; f16 → f32 → f16 round trip */
    int64_t bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float a = st_f16_to_f32((uint16_t)h), b = ref_f16((uint16_t)h);
        if (isnan(b)) { if (!isnan(a)) bad++; continue; }
        if (memcmp(&a, &b, 4)) bad++;
        if (st_f32_to_f16(a) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%lld f16 values wrong", (long long)bad);
    CHECK(isnan(st_f16_to_f32(st_f32_to_f16(NAN))));
    CHECK((st_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (st_f32_to_f16(NAN) & 0x3ff) != 0);
    /* bf16 → f32: every value; NaN stays NaN */
    bad = 0;
    for (uint32_t b = 0; b < 65536; b++) {
        float f = st_bf16_to_f32((uint16_t)b);
        uint32_t u;
        memcpy(&u, &f, 4);
        if (u != b << 16) bad++;
        if (!isnan(f) && st_f32_to_bf16(f) != b) bad++;
        if (isnan(f) && !isnan(st_bf16_to_f32(st_f32_to_bf16(f)))) bad++;
    }
    CHECK_MSG(bad == 0, "%lld bf16 values wrong", (long long)bad);

    /* golden file */
    const char *path = "tests/fixtures/dtype/dtype_ref.gguf";
    struct gguf_fixture fx;
    struct st_gguf *g = gguf_fixture_open(path, &fx);
    if (!g) return st_test_finish("model_dtype");

    for (int t = ST_DTYPE_Q8_0; t < ST_DTYPE_COUNT; t++) {
        char rn[32], fn[32];
        snprintf(rn, sizeof rn, "%s.raw", st_dtype_name((st_dtype)t));
        snprintf(fn, sizeof fn, "%s.ref", st_dtype_name((st_dtype)t));
        const struct st_gguf_tensor_info *raw = find(g, rn), *ref = find(g, fn);
        CHECK_MSG(raw && ref, "%s missing from %s", rn, path);
        if (!raw || !ref) continue;
        CHECK_MSG(raw->dtype == (st_dtype)t, "%s dtype %s", rn, st_dtype_name(raw->dtype));
        int64_t n = raw->ne[0] * raw->ne[1];
        CHECK(raw->bytes == st_dtype_row_bytes((st_dtype)t, raw->ne[0]) * (size_t)raw->ne[1]);
        float *out = malloc(sizeof(float) * (size_t)n);
        const float *want = tdata(g, ref);
        /* row by row, as the kernels call it */
        size_t rb = st_dtype_row_bytes((st_dtype)t, raw->ne[0]);
        for (int64_t r = 0; r < raw->ne[1]; r++) {
            CHECK_OK(st_dtype_to_f32((st_dtype)t, (const uint8_t *)tdata(g, raw) + r * rb, out + r * raw->ne[0], raw->ne[0]));
        }
        int64_t diff = 0;
        float worst = 0;
        for (int64_t i = 0; i < n; i++) {
            float w;
            memcpy(&w, want + i, 4);
            float e = fabsf(out[i] - w);
            if (e > 1e-6f * fmaxf(1.0f, fabsf(w))) diff++;
            if (e > worst) worst = e;
        }
        CHECK_MSG(diff == 0, "%s: %lld of %lld values differ from gguf-py (worst %g)", st_dtype_name((st_dtype)t),
                  (long long)diff, (long long)n, worst);
        free(out);
    }

    const struct st_gguf_tensor_info *fi = find(g, "f16.in"), *fo = find(g, "f16.out");
    CHECK(fi && fo && fo->dtype == ST_DTYPE_F16 && fi->ne[0] == fo->ne[0]);
    if (fi && fo) {
        bad = 0;
        const uint8_t *in = tdata(g, fi), *o = tdata(g, fo);
        for (int64_t i = 0; i < fi->ne[0]; i++) {
            float x;
            uint16_t want;
            memcpy(&x, in + 4 * i, 4);
            memcpy(&want, o + 2 * i, 2);
            uint16_t got = st_f32_to_f16(x);
            if (got != want) {
                if (bad < 5) fprintf(stderr, "f16(%.9g) = 0x%04x, numpy 0x%04x\n", x, got, want);
                bad++;
            }
        }
        CHECK_MSG(bad == 0, "%lld of %lld f32→f16 conversions differ from numpy", (long long)bad, (long long)fi->ne[0]);
        float *w = malloc(sizeof(float) * (size_t)fo->ne[0]);
        CHECK_OK(st_dtype_to_f32(ST_DTYPE_F16, o, w, fo->ne[0]));
        bad = 0;
        for (int64_t i = 0; i < fo->ne[0]; i++) {
            uint16_t h;
            memcpy(&h, o + 2 * i, 2);
            float r = ref_f16(h);
            if (memcmp(&r, &w[i], 4)) bad++;
        }
        CHECK(bad == 0);
        free(w);
    }
    const struct st_gguf_tensor_info *bi = find(g, "bf16.in"), *bo = find(g, "bf16.out");
    CHECK(bi && bo && bo->dtype == ST_DTYPE_BF16 && bi->ne[0] == bo->ne[0] * bo->ne[1]);
    if (bi && bo) {
        bad = 0;
        const uint8_t *in = tdata(g, bi), *o = tdata(g, bo);
        for (int64_t i = 0; i < bi->ne[0]; i++) {
            float x;
            uint16_t want;
            memcpy(&x, in + 4 * i, 4);
            memcpy(&want, o + 2 * i, 2);
            uint16_t got = st_f32_to_bf16(x);
            if (got != want) {
                if (bad < 5) fprintf(stderr, "bf16(%.9g) = 0x%04x, torch 0x%04x\n", x, got, want);
                bad++;
            }
        }
        CHECK_MSG(bad == 0, "%lld of %lld f32→bf16 conversions differ from torch", (long long)bad, (long long)bi->ne[0]);
        float w[4];
        CHECK_OK(st_dtype_to_f32(ST_DTYPE_BF16, o, w, 4));
        for (int i = 0; i < 4; i++) {
            uint16_t h;
            memcpy(&h, o + 2 * i, 2);
            CHECK(w[i] == st_bf16_to_f32(h));
        }
    }
    /* F32 is a copy */
    float src[3] = {1.5f, -2.0f, 3.25f}, dst[3];
    CHECK_OK(st_dtype_to_f32(ST_DTYPE_F32, src, dst, 3));
    CHECK(!memcmp(src, dst, sizeof src));
    /* partial blocks are refused */
    CHECK_ERR(st_dtype_to_f32(ST_DTYPE_Q4_K, src, dst, 100), ST_ERR_INTERNAL, "100 elements of q4_k is not a whole number of 256-element blocks");
    CHECK_ERR(st_dtype_to_f32(ST_DTYPE_COUNT, src, dst, 1), ST_ERR_UNSUPPORTED, "not a strata element type");

    gguf_fixture_close(&fx);
    return st_test_finish("model_dtype");
}
