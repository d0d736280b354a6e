/* devices[].caps.weight_dtypes: the list of stored weight types a device may
 * hold (written out by hand from docs/config.md), each error at the line and
 * column of the offending item with the valid names as hint, and a deployment
 * that uses it: the override replaces what the backend declares for that
 * device only, and a plan of a q4_k_m preset on two cards without k-quants
 * fails with the planner's error through st_deploy_open. */
#include "config_check.h"
#include "orchestrator/deploy.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define HEAD "version: 1\nmodel: {preset: qwen2.5-7b}\n"
#define B(t) (1u << (t))
#define ALL ((1u << ST_DTYPE_COUNT) - 1u)
#define NAMES "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, q4_k, q5_k, q6_k"

static void parsing(void) {
    struct st_deploy_config *c = config_parse_ok(HEAD "devices:\n"
                                            "  - {catalog: tesla-m40, caps: {weight_dtypes: [f16, bf16, q8_0]}}\n"
                                            "  - device: cpu\n"
                                            "    caps:\n"
                                            "      bf16: false\n"
                                            "      weight_dtypes:\n"
                                            "        - q6_k\n"
                                            "        - iq4_nl\n"
                                            "        - f32\n"
                                            "  - {catalog: rtx-3090}\n");
    if (c) {
        CHECK(c->devices[0].caps.weight_dtypes == (B(ST_DTYPE_F16) | B(ST_DTYPE_BF16) | B(ST_DTYPE_Q8_0)));
        CHECK(c->devices[1].caps.weight_dtypes == (B(ST_DTYPE_Q6_K) | B(ST_DTYPE_IQ4_NL) | B(ST_DTYPE_F32)));
        CHECK(c->devices[1].caps.bf16 == ST_CONFIG_TRI_FALSE);
        CHECK(c->devices[2].caps.weight_dtypes == 0);   /* left out */
    }
    st_config_free(c);
    /* every name strata reads */
    c = config_parse_ok(HEAD "devices:\n  - {catalog: h100-sxm, caps: {weight_dtypes: [" NAMES "]}}\n");
    if (c) CHECK(c->devices[0].caps.weight_dtypes == ALL);
    st_config_free(c);

    config_expect_error(HEAD "devices:\n  - {catalog: tesla-m40, caps: {weight_dtypes: [f16, q4_km, q8_0]}}\n",
                 "t.yaml:4:54: devices[0].caps.weight_dtypes[1]: unknown weight type 'q4_km'\n"
                 "hint: did you mean 'q4_k'? weight types: " NAMES);
    config_expect_error(HEAD "devices:\n  - device: cpu\n    caps:\n      weight_dtypes:\n        - f32\n        - F16\n",
                 "t.yaml:8:11: devices[0].caps.weight_dtypes[1]: unknown weight type 'F16'\n"
                 "hint: did you mean 'f16'? weight types: " NAMES);
    config_expect_error(HEAD "devices:\n  - {catalog: tesla-m40, caps: {weight_dtypes: []}}\n",
                 "t.yaml:4:48: devices[0].caps.weight_dtypes: the list is empty: a device that runs no weight type "
                 "can hold no layer\nhint: list what the device may hold, e.g. [f16, bf16, q8_0], or remove the device");
    config_expect_error(HEAD "devices:\n  - {catalog: tesla-m40, caps: {weight_dtypes: q8_0}}\n",
                 "t.yaml:4:48: devices[0].caps.weight_dtypes: expected a list of weight types, found the string "
                 "'q8_0'\nhint: write it as, e.g., 'weight_dtypes: [f16, bf16, q8_0]' (weight types: " NAMES ")");
    config_expect_error(HEAD "devices:\n  - {catalog: tesla-m40, caps: {weight_dtypes: [q8_0, f16, q8_0]}}\n",
                 "t.yaml:4:60: devices[0].caps.weight_dtypes[2]: 'q8_0' is listed twice\n"
                 "hint: name each weight type once");
    config_expect_error(HEAD "devices:\n  - {catalog: tesla-m40, caps: {weight_dtypes: [[f16]]}}\n",
                 "t.yaml:4:49: devices[0].caps.weight_dtypes[0]: expected a weight type, found a list\n"
                 "hint: weight types: " NAMES);
    config_expect_error(HEAD "devices:\n  - {catalog: tesla-m40, caps: {weight_types: [f16]}}\n",
                 "t.yaml:4:33: devices[0].caps: unknown key 'weight_types'\nhint: did you mean 'weight_dtypes'?");
}

static const char *write_config(const char *text) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/strata-weights-%d.yaml", (int)getpid());
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

/* The override reaches the planner's device; the other device keeps its backend's declaration. */
static void deployment(void) {
    const char *path = write_config("version: 1\nmodel: {preset: qwen2.5-7b, quant: q4_k_m}\ndevices:\n"
                                    "  - {catalog: tesla-m40, name: m40, caps: {weight_dtypes: [f32, f16, q8_0]}}\n"
                                    "  - {catalog: rtx-3090, name: big}\n");
    struct st_deploy_options opt = {.config_path = path};
    st_deploy *d = NULL;
    CHECK_OK(st_deploy_open(&opt, &d));
    if (d) {
        CHECK(d->devs[0].info.caps.weight_dtypes == (B(ST_DTYPE_F32) | B(ST_DTYPE_F16) | B(ST_DTYPE_Q8_0)));
        CHECK(d->devs[1].info.caps.weight_dtypes == ALL);
        /* the m40 runs neither q4_k nor q6_k: the whole q4_k_m model is on the 3090 */
        CHECK(d->plan && d->plan->n_stages == 1 && d->plan->stages[0].device == 1);
    }
    st_deploy_free(d);
    d = NULL;
    path = write_config("version: 1\nmodel: {preset: qwen2.5-7b, quant: q4_k_m}\ndevices:\n"
                        "  - {catalog: tesla-m40, name: m40, caps: {weight_dtypes: [f32, f16, q8_0]}}\n"
                        "  - {catalog: rtx-3090, name: big, caps: {weight_dtypes: [f32, q8_0, q4_k]}}\n");
    CHECK_ERR(st_deploy_open(&opt, &d), ST_ERR_CONFIG,
              "plan: no device can run blk.0.attn_v.weight, stored as q6_k (and 28 more tensors of q6_k); devices "
              "considered: m40 runs f32 f16 q8_0; big runs f32 q8_0 q4_k\nhint: use a Q8_0 or F16 file of the model");
    CHECK(d == NULL);
    unlink(path);
}

int main(void) {
    parsing();
    deployment();
    return st_test_finish("config_weight_dtypes");
}
