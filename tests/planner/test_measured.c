/* The cost model against measurements: every point of bench/measured.yaml
 * (what `strata bench` measured on a real card) is planned with the catalog
 * card it ran on, the preset shape and stored format, the same context,
 * prompt and KV length, and the same number of logical stages; the predicted
 * decode and prefill rates must be within the file's tolerance of the
 * measured ones. The file is read with libyaml; a point with a missing or
 * unknown field is a failure, so a typo cannot drop a point silently.
 * Then the calibration table itself: rows in order, factors in range, and a
 * card row only for a card no other catalog card could be mistaken for (the
 * partitioner treats devices with equal figures as interchangeable). */
#include "check.h"
#include "planner/planner-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static yaml_document_t doc;

static yaml_node_t *get(yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&doc, p->key);
        if (!strcmp((const char *)k->data.scalar.value, key)) return yaml_document_get_node(&doc, p->value);
    }
    return NULL;
}
static const char *str(yaml_node_t *map, const char *key) {
    yaml_node_t *n = get(map, key);
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}
/* a number, or NAN when absent or not a number */
static double num(yaml_node_t *map, const char *key) {
    const char *s = str(map, key);
    if (!s) return NAN;
    char *end;
    double v = strtod(s, &end);
    return end != s && !*end ? v : NAN;
}

static const char *const known[] = {"name", "card", "ran_on", "model", "context", "prompt", "chunk", "decode_at",
                                    "stages", "decode_tok_s", "prefill_tok_s", "commit", "date", "source"};

static int checked = 0, worst_i = -1;
static double worst = 0;

static void check_point(yaml_node_t *pt, double tol, int idx) {
    const char *name = str(pt, "name");
    CHECK_MSG(name, "point %d has no name", idx);
    if (!name) return;
    for (yaml_node_pair_t *p = pt->data.mapping.pairs.start; p < pt->data.mapping.pairs.top; p++) {
        const char *k = (const char *)yaml_document_get_node(&doc, p->key)->data.scalar.value;
        bool ok = false;
        for (size_t i = 0; i < ST_ARRAY_LEN(known); i++) ok |= !strcmp(k, known[i]);
        CHECK_MSG(ok, "%s: unknown field '%s'", name, k);
    }
    const char *card = str(pt, "card");
    yaml_node_t *model = get(pt, "model");
    const char *preset = str(model, "preset"), *quant = str(model, "quant");
    double context = num(pt, "context"), prompt = num(pt, "prompt"), chunk = num(pt, "chunk"),
           decode_at = num(pt, "decode_at"), stages = num(pt, "stages"), dec = num(pt, "decode_tok_s"),
           pre = num(pt, "prefill_tok_s");
    CHECK_MSG(card && preset && quant && context >= 1 && prompt >= 1 && chunk >= 1 && chunk <= prompt &&
              prompt <= context && decode_at >= 1 && decode_at <= context && (stages == 1 || stages == 2),
              "%s: card, model {preset, quant}, context, prompt <= context, chunk <= prompt, decode_at <= "
              "context and stages (1 or 2) are required", name);
    CHECK_MSG(!isnan(dec) || !isnan(pre), "%s: neither decode_tok_s nor prefill_tok_s", name);
    CHECK_MSG(str(pt, "commit") && str(pt, "date") && str(pt, "source") && str(pt, "ran_on"),
              "%s: commit, date, source and ran_on say where the figure comes from", name);
    if (!card || !preset || !quant || isnan(context) || isnan(prompt) || isnan(chunk) || isnan(decode_at) ||
        isnan(stages))
        return;

    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset(preset, quant, &m));
    struct st_device_info in;
    CHECK_MSG(st_catalog_lookup(card, &in) == ST_OK, "%s: card %s: %s", name, card, st_last_error());
    struct st_plan_device d;
    st_plan_device_init(&d, &in);
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    r.context = (int64_t)context;
    r.prefill_chunk = (int64_t)chunk;
    r.prompt_tokens = (int64_t)prompt;
    r.decode_at = (int64_t)decode_at;
    struct st_plan_range halves[2] = {{0, 0, m.n_layer / 2 - 1}, {0, m.n_layer / 2, m.n_layer - 1}};
    if (stages == 2) {
        r.manual = halves;
        r.n_manual = 2;
    }
    st_plan *p = NULL;
    st_status s = st_plan_make(&m, &d, 1, NULL, &r, &p);
    CHECK_MSG(s == ST_OK && p && p->feasible, "%s: no plan: %s", name, st_last_error());
    if (s == ST_OK && p && p->feasible) {
        CHECK_MSG(p->n_stages == (int)stages, "%s: %d stages planned, %g measured", name, p->n_stages, stages);
        const double meas[2] = {dec, pre}, pred[2] = {p->decode_tok_s, p->prefill_tok_s};
        const char *what[2] = {"decode", "prefill"};
        for (int k = 0; k < 2; k++) {
            if (isnan(meas[k])) continue;
            double err = (pred[k] - meas[k]) / meas[k];
            printf("%-30s %-9s %-8s %-7s measured %9.1f tok/s  predicted %9.1f  error %+6.1f%%\n", name, card,
                   what[k], quant, meas[k], pred[k], 100.0 * err);
            CHECK_MSG(fabs(err) <= tol, "%s: %s predicted %.1f tok/s, measured %.1f: %+.1f%% (tolerance %.0f%%)",
                      name, what[k], pred[k], meas[k], 100.0 * err, 100.0 * tol);
            if (fabs(err) > worst) { worst = fabs(err); worst_i = idx; }
            checked++;
        }
    }
    st_plan_free(p);
    st_plan_model_free(&m);
}

static bool same_figures(const struct st_device_info *a, const struct st_device_info *b) {
    return a->mem_total_bytes == b->mem_total_bytes && a->perf.mem_bw_gbps == b->perf.mem_bw_gbps &&
           a->perf.fp32_tflops == b->perf.fp32_tflops && a->perf.fp16_tflops == b->perf.fp16_tflops &&
           a->perf.bf16_tflops == b->perf.bf16_tflops && a->caps.cc_major == b->caps.cc_major &&
           a->caps.cc_minor == b->caps.cc_minor;
}

static void check_table(void) {
    int prev = -1;
    bool cards = false;
    for (int i = 0; i < PL_N_EFF; i++) {
        const struct pl_eff *e = &pl_eff_table[i];
        if (e->cc_min < 0) {            /* a card row: a catalog card unlike every other */
            cards = true;
            struct st_device_info in, other;
            CHECK_MSG(st_catalog_lookup(e->key, &in) == ST_OK, "card row %s is not a catalog key", e->key);
            for (int k = 0; k < st_catalog_count(); k++) {
                if (!strcmp(st_catalog_key(k), e->key)) continue;
                CHECK_OK(st_catalog_lookup(st_catalog_key(k), &other));
                CHECK_MSG(!same_figures(&in, &other), "card row %s: %s has the same figures", e->key,
                          st_catalog_key(k));
            }
            continue;
        }
        CHECK_MSG(!cards && e->cc_min > prev, "row %s: generation rows come first, by cc", e->key);
        prev = e->cc_min;
        CHECK_MSG(e->copy > 0.3 && e->copy <= 1.0 && e->kv > 0 && e->kv <= 1.0 && e->kernel_us > 0 &&
                  e->gap_us >= 0 && e->gap_us <= e->kernel_us && e->stage_us >= 0 && e->sgemm > 0 &&
                  e->sgemm <= 1.0 && e->tensor >= 0 && e->tensor <= 1.0 && e->attn >= 0 && e->attn <= 1.0,
                  "row %s: a factor out of range", e->key);
        for (int c = 0; c < PL_N_WC; c++)
            CHECK_MSG(e->gemv[c] > 0.3 && e->gemv[c] <= 1.0, "row %s: gemv %s %.2f", e->key, pl_wclass_name(c),
                      e->gemv[c]);
        /* fewer bits per weight never stream faster per byte than bf16 */
        for (int c = PL_WC_Q8; c < PL_N_WC; c++)
            CHECK_MSG(e->gemv[c] <= e->gemv[PL_WC_F16], "row %s: a %s GEMV faster per byte than bf16", e->key,
                      pl_wclass_name(c));
    }
    /* every catalog card falls on a generation row of its own or an older generation */
    for (int k = 0; k < st_catalog_count(); k++) {
        struct st_device_info in;
        CHECK_OK(st_catalog_lookup(st_catalog_key(k), &in));
        struct st_plan_device d;
        st_plan_device_init(&d, &in);
        struct pl_eff e = pl_eff_of(&d);
        int cc = in.caps.cc_major * 10 + in.caps.cc_minor;
        CHECK_MSG(e.cc_min > 0 && e.cc_min <= cc, "%s (cc %d) uses row %s", st_catalog_key(k), cc, e.key);
    }
}

/* a cell of a markdown table row as a number: bold marks dropped, "" and "—" are 0 */
static double cell_num(const char *c) {
    char b[64];
    size_t n = 0;
    for (; *c && *c != '|' && *c != '/' && n + 1 < sizeof b; c++)
        if (*c != '*' && *c != ' ') b[n++] = *c;
    b[n] = 0;
    if (!n || !strcmp(b, "\xe2\x80\x94")) return 0;      /* an em dash */
    char *end;
    double v = strtod(b, &end);
    return end != b && !*end ? v : NAN;
}

/* docs/planner.md prints the table: every row there equals the C table */
static void check_docs_table(void) {
    char *text;
    size_t len;
    CHECK_OK(st_read_file("docs/planner.md", &text, &len));
    if (!text) return;
    for (int i = 0; i < PL_N_EFF; i++) {
        const struct pl_eff *e = &pl_eff_table[i];
        char a[64], b[64];
        snprintf(a, sizeof a, e->cc_min < 0 ? "\n| card **%s** |" : "\n| %s |", e->key);
        snprintf(b, sizeof b, "\n| **%s** |", e->key);
        const char *row = strstr(text, a);
        if (!row) row = strstr(text, b);
        CHECK_MSG(row, "docs/planner.md has no row for %s", e->key);
        if (!row) continue;
        const char *cell[11];
        int n = 0;
        for (const char *c = row + 2; *c && *c != '\n' && n < 11; c++)
            if (*c == '|') cell[n++] = c + 1;
        CHECK_MSG(n == 11, "docs/planner.md: row %s has %d cells", e->key, n);
        if (n != 11) continue;
        /* cells after the key: cc, copy, gemv f32 / f16 / ..., kv, kernel, gap, stage, sgemm, tensor, attn */
        double g[PL_N_WC] = {0};
        const char *q = cell[2];
        for (int k = 0; k < PL_N_WC; k++) {
            g[k] = cell_num(q);
            const char *sl = strchr(q, '/');
            if (!sl || sl > cell[3]) break;
            q = sl + 1;
        }
        double want[] = {e->copy, e->kv, e->kernel_us, e->gap_us, e->stage_us, e->sgemm, e->tensor, e->attn};
        double have[] = {cell_num(cell[1]), cell_num(cell[3]), cell_num(cell[4]), cell_num(cell[5]),
                         cell_num(cell[6]), cell_num(cell[7]), cell_num(cell[8]), cell_num(cell[9])};
        bool same = true;
        for (size_t k = 0; k < ST_ARRAY_LEN(want); k++) same &= fabs(want[k] - have[k]) < 1e-9;
        for (int k = 0; k < PL_N_WC; k++) same &= fabs(e->gemv[k] - g[k]) < 1e-9;
        CHECK_MSG(same, "docs/planner.md: the %s row differs from pl_eff_table (planner/planner-impl.h)", e->key);
    }
    free(text);
}

int main(void) {
    check_table();
    check_docs_table();
    char *text;
    size_t len;
    CHECK_OK(st_read_file("bench/measured.yaml", &text, &len));
    yaml_parser_t yp;
    yaml_parser_initialize(&yp);
    yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
    bool ok = yaml_parser_load(&yp, &doc);
    CHECK_MSG(ok, "bench/measured.yaml: %s at line %zu", yp.problem ? yp.problem : "?", yp.problem_mark.line + 1);
    yaml_parser_delete(&yp);
    free(text);
    if (!ok) return st_test_finish("planner_measured");
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    double tol = num(root, "tolerance");
    CHECK_MSG(tol > 0 && tol <= 0.10, "tolerance %g: the target is 10%% or tighter", tol);
    yaml_node_t *pts = get(root, "points");
    CHECK(pts && pts->type == YAML_SEQUENCE_NODE);
    if (pts && pts->type == YAML_SEQUENCE_NODE) {
        int n = (int)(pts->data.sequence.items.top - pts->data.sequence.items.start);
        for (int i = 0; i < n; i++) {
            yaml_node_t *pt = yaml_document_get_node(&doc, pts->data.sequence.items.start[i]);
            CHECK_MSG(pt && pt->type == YAML_MAPPING_NODE, "point %d is not a mapping", i);
            if (pt && pt->type == YAML_MAPPING_NODE) check_point(pt, tol, i);
        }
    }
    printf("%d predictions checked, largest error %.1f%% (point %d)\n", checked, 100.0 * worst, worst_i);
    /* the cards measured here, both phases */
    CHECK(checked >= 5);
    yaml_document_delete(&doc);
    return st_test_finish("planner_measured");
}
