/* The limits of the YAML readers (docs/limits.md): file size, nesting depth,
 * list lengths and string lengths, for the deployment config, the plan file
 * and the numerics profile. Each limit is tested just inside (accepted) and
 * just outside (refused with the limit and the position in the message). */
#include "check.h"
#include "orchestrator/config.h"
#include "planner/planner.h"

#include <stdlib.h>

#define HEAD "version: 1\nmodel: {preset: qwen2.5-7b}\ndevices: [cpu]\n"

/* text of cap bytes, grown with printf-style appends */
struct buf { char *p; size_t n, cap; };
static void add(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct buf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if ((size_t)k < b->cap - b->n) { b->n += (size_t)k; return; }
        b->cap = b->cap * 2 + (size_t)k + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) exit(1);
    }
}

static st_status parse_cfg(const char *text, size_t len) {
    struct st_deploy_config *c = NULL;
    st_status s = st_config_parse(text, len, "lim.yaml", &c);
    st_config_free(c);
    return s;
}

static void test_config(void) {
    struct buf b = {malloc(64), 0, 64};
    /* nesting: 64 levels (the root mapping, generation, 62 lists) is fine for YAML (the
     * config then refuses the list), 65 is not, at the 63rd '[' (column 21 + 63) */
    for (int depth = 64; depth <= 65; depth++) {
        b.n = 0;
        add(&b, HEAD "generation: {system: ");
        for (int i = 0; i < depth - 2; i++) add(&b, "[");
        for (int i = 0; i < depth - 2; i++) add(&b, "]");
        add(&b, "}\n");
        st_status s = parse_cfg(b.p, b.n);
        if (depth == 64) CHECK_ERR(s, ST_ERR_CONFIG, "lim.yaml:4:22: generation.system: expected a string, found a list");
        else CHECK_ERR(s, ST_ERR_CONFIG, "lim.yaml:4:84: nesting is deeper than 64 levels of mappings and lists");
    }
    /* an alias to its own ancestor is one event, not a loop */
    CHECK_ERR(parse_cfg(HEAD "generation: &a {system: *a}\n", strlen(HEAD "generation: &a {system: *a}\n")),
              ST_ERR_CONFIG, "generation.system: expected a string, found a mapping");
    /* size: 1 MiB, comments included */
    b.n = 0;
    add(&b, HEAD);
    while (b.n < ST_CONFIG_MAX_BYTES - 100) add(&b, "# padding padding padding padding padding padding padding padding padding\n");
    CHECK_OK(parse_cfg(b.p, b.n));
    while (b.n <= ST_CONFIG_MAX_BYTES) add(&b, "# padding\n");
    CHECK_ERR(parse_cfg(b.p, b.n), ST_ERR_CONFIG, "bytes), more than the 1.00 MiB limit for this file");
    /* stop strings: 16 of up to 256 bytes (what a generation takes, orchestrator/session.h) */
    for (int n = 16; n <= 17; n++) {
        b.n = 0;
        add(&b, HEAD "generation:\n  stop:\n");
        for (int i = 0; i < n; i++) add(&b, "    - \"s%d\"\n", i);
        if (n == 16) CHECK_OK(parse_cfg(b.p, b.n));
        else CHECK_ERR(parse_cfg(b.p, b.n), ST_ERR_CONFIG, "lim.yaml:6:5: generation.stop: 17 stop strings is more than the 16 strata accepts");
    }
    for (int len = 256; len <= 257; len++) {
        b.n = 0;
        add(&b, HEAD "generation: {stop: \"%0*d\"}\n", len, 7);
        if (len == 256) CHECK_OK(parse_cfg(b.p, b.n));
        else CHECK_ERR(parse_cfg(b.p, b.n), ST_ERR_CONFIG, "generation.stop: the string is 257 bytes, more than the 256 this key accepts");
    }
    b.n = 0;
    add(&b, HEAD "generation: {system: \"%0*d\"}\n", 65537, 1);
    CHECK_ERR(parse_cfg(b.p, b.n), ST_ERR_CONFIG, "lim.yaml:4:22: generation.system: the string is 65537 bytes, more than the 65536");
    b.n = 0;
    add(&b, "version: 1\nmodel: {path: \"%0*d\"}\ndevices: [cpu]\n", 4096, 1);
    CHECK_ERR(parse_cfg(b.p, b.n), ST_ERR_CONFIG, "lim.yaml:2:15: model.path: the path is 4096 bytes, more than the 4095");
    /* manual stages: 64 */
    for (int n = 64; n <= 65; n++) {
        b.n = 0;
        add(&b, HEAD "placement:\n  manual:\n");
        for (int i = 0; i < n; i++) add(&b, "    - {device: 0, layers: %d}\n", i);
        if (n == 64) CHECK_OK(parse_cfg(b.p, b.n));
        else CHECK_ERR(parse_cfg(b.p, b.n), ST_ERR_CONFIG, "placement.manual: 65 stages is more than the 64 strata runs");
    }
    free(b.p);
}

static void test_plan_numerics(void) {
    struct buf b = {malloc(64), 0, 64};
    /* a real plan file, one field made longer than its field */
    const char *yaml = NULL;
    char *text = NULL;
    size_t len = 0;
    CHECK_OK(st_read_file("tests/fuzz/corpus/plan_yaml/tiny-kjv.plan.yaml", &text, &len));
    if (text) {
        st_plan *p = NULL;
        CHECK_OK(st_plan_parse_yaml(text, len, "p.yaml", &p));
        st_plan_free(p);
        char *at = strstr(text, "  name: ");
        CHECK(at != NULL);
        if (at) {
            size_t head = (size_t)(at - text) + 8;
            add(&b, "%.*s\"%0*d\"%s", (int)head, text, 80, 1, strchr(at, '\n'));
            CHECK_ERR(st_plan_parse_yaml(b.p, b.n, "p.yaml", &p), ST_ERR_CONFIG,
                      "p.yaml:5:9: model.name: '0000000000000000000000000000000000000000...' is longer than the 63 characters this field holds");
        }
        b.n = 0;
        at = strstr(text, "reasons:\n");
        CHECK(at != NULL);
        if (at) {
            add(&b, "%.*sreasons:\n  - \"%0*d\"\n", (int)(at - text), text, 640, 3);
            add(&b, "%s", strstr(at, "shortfall:"));
            CHECK_ERR(st_plan_parse_yaml(b.p, b.n, "p.yaml", &p), ST_ERR_CONFIG,
                      "reasons[]: a reason of 640 characters is longer than the 639 a plan writes");
        }
        free(text);
    }
    (void)yaml;
    st_plan *p = NULL;
    b.n = 0;
    while (b.n <= ST_YAML_MAX_PLAN_BYTES) add(&b, "# %0120d\n", 0);
    CHECK_ERR(st_plan_parse_yaml(b.p, b.n, "big.yaml", &p), ST_ERR_CONFIG, "big.yaml: the file is 16.00 MiB");
    /* the numerics profile: a string longer than its field */
    text = NULL;
    CHECK_OK(st_read_file("tests/calibrate/tiny-kjv-numerics.yaml", &text, &len));
    if (text) {
        char *at = strstr(text, "worst: ");
        CHECK(at != NULL);
        if (at) {
            b.n = 0;
            add(&b, "%.*sworst: \"gate_up_down\"%s", (int)(at - text), text, strpbrk(at + 7, ",}"));
            struct st_numerics *n = NULL;
            CHECK_ERR(st_numerics_parse(b.p, b.n, "n.yaml", &n), ST_ERR_CONFIG,
                      "layers[0]: worst: 'gate_up_down...' is longer than the 7 characters it may have");
        }
        free(text);
    }
    free(b.p);
}

int main(void) {
    test_config();
    test_plan_numerics();
    return st_test_finish("config_limits");
}
