/* strata calibrate on the bundled model: every layer of the trained model is
 * fp16-safe with a small error; in a copy whose layer-1 FFN norm weight is
 * scaled by 30000 (patched in the safetensors bytes, located through the
 * file's own JSON header), layer 1's MLP inputs pass 65504 and it is marked
 * unsafe while layer 0 is measured exactly as before. The profiles then drive
 * the planner through a config on fp16-capable cards without bf16 (Tesla T4,
 * cc 7.5): fp16 exactly where every layer of a stage is safe. (The numbers
 * themselves are checked against numpy by check_calibrate.py.) */
#include "check.h"
#include "orchestrator/cli.h"
#include "orchestrator/deploy.h"
#include "planner/planner.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static int calibrate(const char *model, const char *out) {
    char *argv[] = {"calibrate", "-m", (char *)model, "--tokens", "200", "-o", (char *)out, "--threads", "2", NULL};
    fflush(stdout);
    return st_cmd_calibrate(9, argv);
}

static bool copy_file(const char *from, const char *to) {
    char *data = NULL;
    size_t len = 0;
    if (st_read_file(from, &data, &len) != ST_OK) return false;
    FILE *f = fopen(to, "wb");
    bool ok = f && fwrite(data, 1, len, f) == len;
    if (f) ok &= fclose(f) == 0;
    free(data);
    return ok;
}

/* Multiplies the F16 tensor `name` of a safetensors file by scale, in place. */
static bool scale_tensor(const char *path, const char *name, float scale) {
    char *data = NULL;
    size_t len = 0;
    if (st_read_file(path, &data, &len) != ST_OK || len < 8) return false;
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (uint8_t)data[i];
    json_error_t err;
    json_t *h = json_loadb(data + 8, (size_t)hl, 0, &err);
    json_t *t = h ? json_object_get(h, name) : NULL;
    bool ok = t && !strcmp(json_string_value(json_object_get(t, "dtype")), "F16");
    if (ok) {
        json_t *off = json_object_get(t, "data_offsets");
        size_t b = (size_t)json_integer_value(json_array_get(off, 0)), e = (size_t)json_integer_value(json_array_get(off, 1));
        uint16_t *v = (uint16_t *)(data + 8 + hl + b);
        for (size_t i = 0; i < (e - b) / 2; i++) v[i] = st_f32_to_f16(st_f16_to_f32(v[i]) * scale);
        FILE *f = fopen(path, "wb");
        ok = f && fwrite(data, 1, len, f) == len;
        if (f) ok &= fclose(f) == 0;
    }
    json_decref(h);
    free(data);
    return ok;
}

static bool has_reason(const st_plan *p, const char *a, const char *b) {
    for (int i = 0; i < p->n_reasons; i++)
        if (strstr(p->reasons[i], a) && (!b || strstr(p->reasons[i], b))) return true;
    return false;
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/strata-calibrate-%d", (int)getpid());
    mkdir(dir, 0755);
    char good[320], bad[320], scaled[320], p[400];
    snprintf(good, sizeof good, "%s/good.yaml", dir);
    snprintf(bad, sizeof bad, "%s/bad.yaml", dir);
    snprintf(scaled, sizeof scaled, "%s/scaled", dir);
    mkdir(scaled, 0755);

    /* the trained model: all safe */
    CHECK(calibrate("models/tiny-kjv", good) == 0);
    struct st_numerics *g = NULL, *s = NULL;
    CHECK_OK(st_numerics_read(good, &g));
    if (g) {
        CHECK(g->n_layer == 4 && g->tokens == 200 && !strcmp(g->text, "built-in"));
        CHECK(g->max_abs_limit == 65504.0 / 8 && g->rel_error_limit == 1e-3);
        for (int64_t l = 0; l < g->n_layer; l++) {
            const struct st_numerics_layer *L = &g->layers[l];
            CHECK_MSG(L->fp16_safe, "layer %lld unsafe", (long long)l);
            CHECK(L->max_abs > 0.5 && L->max_abs < 1000 && L->frac_above_fp16 == 0);
            CHECK_MSG(L->rel_error > 1e-5 && L->rel_error < 1e-3, "layer %lld error %g", (long long)l, L->rel_error);
        }
    }

    /* layer 1's FFN norm weight x 30000: its gate/up inputs overflow fp16 */
    static const char *files[] = {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"};
    for (size_t i = 0; i < ST_ARRAY_LEN(files); i++) {
        char from[256], to[400];
        snprintf(from, sizeof from, "models/tiny-kjv/%s", files[i]);
        snprintf(to, sizeof to, "%s/%s", scaled, files[i]);
        CHECK(copy_file(from, to));
    }
    snprintf(p, sizeof p, "%s/model.safetensors", scaled);
    CHECK(scale_tensor(p, "model.layers.1.post_attention_layernorm.weight", 30000.0f));
    CHECK(calibrate(scaled, bad) == 0);
    CHECK_OK(st_numerics_read(bad, &s));
    if (g && s) {
        CHECK(s->layers[0].fp16_safe);
        CHECK(s->layers[0].max_abs == g->layers[0].max_abs && s->layers[0].rel_error == g->layers[0].rel_error);
        const struct st_numerics_layer *L = &s->layers[1];
        CHECK(!L->fp16_safe);
        CHECK_MSG(L->max_abs > 65504 && L->frac_above_fp16 > 0 && (!strcmp(L->worst, "gate_up") || !strcmp(L->worst, "down")),
                  "layer 1: max %g, above %g, worst %s", L->max_abs, L->frac_above_fp16, L->worst);
        CHECK_MSG(!(L->rel_error <= 1e-3), "layer 1 error %g", L->rel_error);
    }

    /* the planner: one T4 each for layer 0 and layers 1-3 */
    const char *manual = "  strategy: manual\n  manual:\n    - {device: a, layers: 0-0}\n    - {device: b, layers: 1-3}\n";
    char cfg[400];
    snprintf(cfg, sizeof cfg, "%s/deploy.yaml", dir);
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    snprintf(p, sizeof p, "version: 1\nmodel: {path: %s/models/tiny-kjv}\n", cwd);
    {
        FILE *f = fopen(cfg, "w");
        fprintf(f, "%sdevices:\n  - {catalog: tesla-t4, name: a}\n  - {catalog: tesla-t4, name: b}\n"
                   "placement:\n  numerics: bad.yaml\n%s", p, manual);
        fclose(f);
    }
    struct st_deploy_options opt = {.config_path = cfg};
    st_deploy *d = NULL;
    CHECK_OK(st_deploy_open(&opt, &d));
    if (d && d->plan && d->plan->feasible) {
        CHECK(d->plan->n_stages == 2);
        CHECK(d->plan->stages[0].prec == ST_PREC_F16);
        CHECK(d->plan->stages[0].kv_dtype == ST_DTYPE_F16);
        CHECK(d->plan->stages[1].prec == ST_PREC_F32);
        CHECK(has_reason(d->plan, "stage 0 (a) precision f16", "marked fp16-safe by the numerics profile"));
        CHECK(has_reason(d->plan, "stage 1 (b) precision f32", "not all of layers 1-3 fp16-safe"));
    }
    st_deploy_free(d);

    /* the same model with the all-safe profile, planned automatically on one T4: f16 */
    {
        FILE *f = fopen(cfg, "w");
        fprintf(f, "%sdevices:\n  - {catalog: tesla-t4}\nplacement:\n  numerics: good.yaml\n", p);
        fclose(f);
    }
    d = NULL;
    CHECK_OK(st_deploy_open(&opt, &d));
    if (d && d->plan) CHECK(d->plan->n_stages == 1 && d->plan->stages[0].prec == ST_PREC_F16);
    st_deploy_free(d);
    /* ... and without a profile: no fp16 (T4 has no bf16, so f32) */
    {
        FILE *f = fopen(cfg, "w");
        fprintf(f, "%sdevices:\n  - {catalog: tesla-t4}\n", p);
        fclose(f);
    }
    d = NULL;
    CHECK_OK(st_deploy_open(&opt, &d));
    if (d && d->plan) {
        CHECK(d->plan->stages[0].prec == ST_PREC_F32);
        CHECK(has_reason(d->plan, "f16 not used", "need a numerics profile"));
    }
    st_deploy_free(d);

    /* a profile of another model: the layer counts differ */
    snprintf(p, sizeof p, "%s/qwen3.yaml", dir);
    char *argv[] = {"calibrate", "-m", "tests/fixtures/models/qwen3-tiny/hf", "--ids", "tests/calibrate/ids.txt",
                    "-o", p, NULL};
    CHECK(st_cmd_calibrate(7, argv) == 0);
    {
        FILE *f = fopen(cfg, "w");
        fprintf(f, "version: 1\nmodel: {path: %s/models/tiny-kjv}\ndevices: [cpu]\nplacement:\n  numerics: qwen3.yaml\n",
                cwd);
        fclose(f);
    }
    d = NULL;
    CHECK_ERR(st_deploy_open(&opt, &d), ST_ERR_CONFIG, "deploy.yaml:5:13: placement.numerics: ");
    CHECK(strstr(st_last_error(), "the numerics profile is for 3 layers (model 'hf'), the model has 4") != NULL);
    CHECK(strstr(st_last_error(), "hint: calibrate this model") != NULL);
    st_deploy_free(d);

    /* every truncation and a sweep of byte corruptions of a profile: a positioned error or a profile, never a crash */
    {
        char *text = NULL;
        size_t len = 0;
        CHECK_OK(st_read_file("tests/calibrate/tiny-kjv-numerics.yaml", &text, &len));
        snprintf(p, sizeof p, "%s/cut.yaml", dir);
        int n_ok = 0, n_err = 0, n_bad = 0;
        for (size_t cut = 0; text && cut <= len + 150; cut++) {
            char *t = malloc(len + 1);
            memcpy(t, text, len + 1);
            size_t n = cut <= len ? cut : len;
            if (cut > len) t[(cut * 7919) % len] = "x:-{}[]#\"0\n 9."[cut % 13];   /* one corrupted byte */
            FILE *f = fopen(p, "wb");
            fwrite(t, 1, n, f);
            fclose(f);
            struct st_numerics *x = NULL;
            st_status rc = st_numerics_read(p, &x);
            if (rc == ST_OK) n_ok++;
            else if (rc == ST_ERR_CONFIG && strstr(st_last_error(), p) && strstr(st_last_error(), "hint:")) n_err++;
            else { n_bad++; fprintf(stderr, "cut %zu: %s: %s\n", cut, st_status_name(rc), st_last_error()); }
            st_numerics_free(x);
            free(t);
        }
        CHECK(n_bad == 0);
        CHECK(n_ok >= 1 && n_err > (int)len / 2);
        free(text);
    }

    st_numerics_free(g);
    st_numerics_free(s);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return st_test_finish("calibrate");
}
