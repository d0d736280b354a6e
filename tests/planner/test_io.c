/* Plan output: the YAML file loads back and writes the same bytes again; the
 * reader's errors name file:line:column; the JSON parses (jansson) with the
 * plan's stages; the SVG is well-formed XML (libyaml is no XML parser, so the
 * tags are counted) with one stage group per stage and every device's name;
 * the printed table lists every stage. */
#include "check.h"
#include "planner/planner.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path) {
    char *t = NULL; size_t n;
    if (st_read_file(path, &t, &n) != ST_OK) return NULL;
    return t;
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static st_plan *make(bool infeasible) {
    struct st_plan_model m;
    st_plan_model_from_preset(infeasible ? "qwen2.5-72b" : "qwen2.5-7b", infeasible ? "bf16" : "q4_k_m", &m);
    const char *keys[] = {"tesla-m40", "rtx-3050-ti-laptop", "tesla-p40"};
    struct st_plan_device d[3];
    for (int i = 0; i < 3; i++) {
        struct st_device_info in;
        st_catalog_lookup(keys[i], &in);
        st_plan_device_init(&d[i], &in);
    }
    d[0].max_memory_bytes = 3ull << 30;
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    r.context = 8192;
    r.objective = ST_PLAN_THROUGHPUT;
    st_plan *p = NULL;
    st_status s = st_plan_make(&m, d, 3, NULL, &r, &p);
    CHECK(infeasible ? s == ST_ERR_CONFIG : s == ST_OK);
    st_plan_model_free(&m);
    return p;
}

static void roundtrip(st_plan *p, const char *tag) {
    char a[256], b[256];
    snprintf(a, sizeof a, "build-plan-io-%s-a.yaml", tag);
    snprintf(b, sizeof b, "build-plan-io-%s-b.yaml", tag);
    char pa[300], pb[300];
    snprintf(pa, sizeof pa, "/tmp/%s", a);
    snprintf(pb, sizeof pb, "/tmp/%s", b);
    FILE *f = fopen(pa, "w");
    CHECK_OK(st_plan_write_yaml(f, p));
    fclose(f);
    st_plan *q = NULL;
    CHECK_OK(st_plan_read_yaml(pa, &q));
    if (!q) return;
    CHECK(q->n_stages == p->n_stages && q->n_devices == p->n_devices && q->feasible == p->feasible);
    for (int i = 0; i < p->n_stages && i < q->n_stages; i++)
        CHECK(q->stages[i].device == p->stages[i].device && q->stages[i].first == p->stages[i].first &&
              q->stages[i].last == p->stages[i].last && q->stages[i].prec == p->stages[i].prec &&
              q->stages[i].attn == p->stages[i].attn && q->stages[i].mem.total == p->stages[i].mem.total &&
              q->stages[i].decode_ms == p->stages[i].decode_ms);
    CHECK(q->model.total_bytes == p->model.total_bytes && q->decode_tok_s == p->decode_tok_s);
    CHECK(q->n_reasons == p->n_reasons && q->shortfall.n_suggestions == p->shortfall.n_suggestions);
    f = fopen(pb, "w");
    CHECK_OK(st_plan_write_yaml(f, q));
    fclose(f);
    char *ta = slurp(pa), *tb = slurp(pb);
    CHECK_MSG(ta && tb && !strcmp(ta, tb), "%s: write -> read -> write is not byte-identical", tag);
    free(ta); free(tb);
    st_plan_free(q);
    remove(pa); remove(pb);
}

static void bad_yaml(const char *text, const char *want) {
    const char *path = "/tmp/build-plan-io-bad.yaml";
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    st_plan *q = NULL;
    CHECK_ERR(st_plan_read_yaml(path, &q), ST_ERR_CONFIG, want);
    CHECK(q == NULL);
    remove(path);
}

static void reader_errors(st_plan *p) {
    char *buf = NULL; size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    st_plan_write_yaml(f, p);
    fclose(f);
    /* an unknown key on line 3 (after the comment and version lines) */
    char *t = malloc(len + 64);
    char *nl = strchr(strchr(buf, '\n') + 1, '\n') + 1;          /* start of line 3 */
    size_t head = (size_t)(nl - buf);
    memcpy(t, buf, head);
    strcpy(t + head, "colour: blue\n");
    strcat(t, nl);
    bad_yaml(t, "/tmp/build-plan-io-bad.yaml:3:1: (top level): unknown key 'colour'");
    /* a stage precision that does not exist: the error points at its line */
    strcpy(t, buf);
    char *pr = strstr(t, "    precision: f32\n    attention: eager\n    kv_dtype");
    CHECK(pr != NULL);
    if (pr) {
        memcpy(pr, "    precision: f64", 18);
        int line = 1;
        for (char *c = t; c < pr; c++) line += *c == '\n';
        char want[160];
        snprintf(want, sizeof want, "bad.yaml:%d:16: stages[].precision: 'f64' is not a valid precision", line);
        bad_yaml(t, want);
    }
    bad_yaml("version: 1\nfeasible: [\n", "YAML syntax error");
    bad_yaml("version: 2\n", ":1:10: version: version 2 is not 1");
    free(t);
    free(buf);
    st_plan *q = NULL;
    CHECK_ERR(st_plan_read_yaml("/nonexistent/plan.yaml", &q), ST_ERR_CONFIG, "/nonexistent/plan.yaml");
}

static void json_and_svg(st_plan *p) {
    char *buf = NULL; size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK_OK(st_plan_write_json(f, p));
    fclose(f);
    json_error_t err;
    json_t *j = json_loads(buf, 0, &err);
    CHECK_MSG(j != NULL, "JSON: %s at line %d", err.text, err.line);
    CHECK((int)json_array_size(json_object_get(j, "stages")) == p->n_stages);
    CHECK(json_is_true(json_object_get(j, "feasible")) == p->feasible);
    json_decref(j);
    free(buf);

    buf = NULL;
    f = open_memstream(&buf, &len);
    CHECK_OK(st_plan_write_svg(f, p));
    fclose(f);
    CHECK(!strncmp(buf, "<svg ", 5) && strstr(buf, "</svg>\n"));
    CHECK_MSG(count(buf, "<g class=\"stage\"") == p->n_stages, "SVG: %d stage groups for %d stages",
              count(buf, "<g class=\"stage\""), p->n_stages);
    CHECK(count(buf, "<g class=\"membar\"") == p->n_devices);
    CHECK(count(buf, "<g class=\"link\">") == p->n_hops);
    CHECK(count(buf, "class=\"layer\"") == (p->feasible ? p->model.n_layer : 0));
    CHECK(count(buf, "<g") == count(buf, "</g>"));
    CHECK(count(buf, "<text") == count(buf, "</text>"));
    for (int d = 0; d < p->n_devices; d++) CHECK_MSG(strstr(buf, p->devices[d].label), "SVG lacks %s",
                                                     p->devices[d].label);
    if (getenv("STRATA_PLAN_SVG")) {     /* for looking at it: rsvg-convert $STRATA_PLAN_SVG -o plan.png */
        FILE *o = fopen(getenv("STRATA_PLAN_SVG"), "w");
        if (o) { fputs(buf, o); fclose(o); }
    }
    free(buf);

    buf = NULL;
    f = open_memstream(&buf, &len);
    st_plan_print(f, p, true);
    fclose(f);
    if (p->feasible) {
        for (int s = 0; s < p->n_stages; s++) CHECK(strstr(buf, p->devices[p->stages[s].device].label));
        CHECK(strstr(buf, "predicted") && strstr(buf, "bottleneck") && strstr(buf, "why"));
        CHECK(!strstr(buf, "\033["));    /* not a TTY: no colour */
    } else {
        CHECK(strstr(buf, "does not fit") && strstr(buf, "what would fit"));
    }
    free(buf);
}

/* truncated and corrupted plan files: an error with a position, never a crash (run under ASan in CI) */
static void mutations(st_plan *p) {
    char *buf = NULL; size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    st_plan_write_yaml(f, p);
    fclose(f);
    const char *path = "/tmp/build-plan-io-mut.yaml";
    uint64_t x = 88172645463325252ull;
    int ok = 0, errs = 0;
    for (int it = 0; it < 300; it++) {
        char *t = malloc(len + 1);
        memcpy(t, buf, len + 1);
        size_t n = len;
        if (it % 3 == 0) n = (size_t)it * 97 % len;                  /* truncate */
        else {
            for (int k = 0; k < 1 + it % 4; k++) {                   /* flip bytes */
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                t[x % len] = "0:-[]{}, \n\"x9#"[(x >> 20) % 15];
            }
        }
        FILE *o = fopen(path, "w");
        fwrite(t, 1, n, o);
        fclose(o);
        st_plan *q = NULL;
        st_status s = st_plan_read_yaml(path, &q);
        if (s == ST_OK) ok++;
        else {
            errs++;
            CHECK_MSG(s == ST_ERR_CONFIG && strstr(st_last_error(), "build-plan-io-mut.yaml:") &&
                      strstr(st_last_error(), "hint:"), "mutation %d: %s", it, st_last_error());
        }
        st_plan_free(q);
        free(t);
    }
    remove(path);
    CHECK(errs > 100);
    free(buf);
}

int main(void) {
    st_plan *p = make(false);
    CHECK(p && p->feasible && p->n_stages >= 2);
    if (p) { roundtrip(p, "ok"); reader_errors(p); json_and_svg(p); mutations(p); }
    st_plan *q = make(true);
    CHECK(q && !q->feasible && q->shortfall.n_suggestions > 0);
    if (q) { roundtrip(q, "short"); json_and_svg(q); }
    st_plan_free(p);
    st_plan_free(q);
    return st_test_finish("planner_io");
}
