/* placement.kv_dtype and devices[].kv_dtype: the five values (written out by
 * hand from docs/config.md), the default, and a bad value's error at its
 * line:column with the allowed values. */
#include "config_check.h"

#include <stdlib.h>

#define HEAD "version: 1\nmodel: {preset: qwen2.5-7b}\n"

int main(void) {
    /* default: auto everywhere */
    struct st_deploy_config *c = config_parse_ok(HEAD "devices: [cpu]\n");
    if (c) {
        CHECK(c->placement.kv_dtype == ST_CONFIG_AUTO && c->devices[0].kv_dtype == ST_CONFIG_AUTO);
        CHECK(!strcmp(st_config_kv_name(c->placement.kv_dtype), "auto"));
    }
    st_config_free(c);
    /* every value, on the placement and on a device */
    static const struct { const char *word; int dt; } vals[] = {
        {"f32", ST_DTYPE_F32}, {"f16", ST_DTYPE_F16}, {"bf16", ST_DTYPE_BF16}, {"q8_0", ST_DTYPE_Q8_0}, {"auto", -1}};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char y[256];
        snprintf(y, sizeof y, HEAD "devices:\n  - {catalog: tesla-m40, kv_dtype: %s}\n  - cpu\nplacement: {kv_dtype: %s}\n",
                 vals[i].word, vals[i].word);
        c = config_parse_ok(y);
        if (!c) continue;
        CHECK_MSG(c->placement.kv_dtype == vals[i].dt && c->devices[0].kv_dtype == vals[i].dt &&
                  c->devices[1].kv_dtype == ST_CONFIG_AUTO, "kv_dtype: %s", vals[i].word);
        CHECK(!strcmp(st_config_kv_name(c->devices[0].kv_dtype), vals[i].word));
        st_config_free(c);
    }
    /* errors: position of the value, the allowed words */
    config_expect_error(HEAD "devices: [cpu]\nplacement:\n  kv_dtype: q4_0\n",
                 "t.yaml:5:13: placement.kv_dtype: unknown value 'q4_0'\n"
                 "hint: did you mean 'q8_0'? allowed: auto, f32, f16, bf16 or q8_0");
    config_expect_error(HEAD "devices:\n  - {device: cuda:0, kv_dtype: int8}\n",
                 "t.yaml:4:32: devices[0].kv_dtype: unknown value 'int8'\n"
                 "hint: allowed: auto, f32, f16, bf16 or q8_0");
    config_expect_error(HEAD "devices: [cpu]\nplacement: {kv_dtype: [f16]}\n",
                 "t.yaml:4:23: placement.kv_dtype: expected one of auto, f32, f16, bf16 or q8_0, found a list\n"
                 "hint: write one word, e.g. 'auto'");
    return st_test_finish("config_kv");
}
