/* The numerics profile: per layer, whether fp16 activations are safe, as
 * `strata calibrate` measured it (docs/numerics.md). Written as YAML and read
 * back with positions in every error, like the plan file (planner/yaml.c). */
#include "planner/planner.h"
#include "planner/yaml-impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* YAML has .inf; strtod reads "inf" */
static void num(FILE *f, double v) {
    if (isinf(v)) fputs(v > 0 ? ".inf" : "-.inf", f);
    else if (isnan(v)) fputs(".nan", f);
    else fprintf(f, "%.17g", v);
}

st_status st_numerics_write(FILE *f, const struct st_numerics *n) {
    fprintf(f, "# strata numerics profile, written by 'strata calibrate' (docs/numerics.md).\n"
               "# A layer is fp16_safe when max_abs <= max_abs_limit and rel_error <= rel_error_limit.\n"
               "# Give it to the planner with 'placement: {numerics: FILE}' in a deployment config.\n");
    fprintf(f, "version: %d\nmodel: ", ST_NUMERICS_VERSION);
    pl_yaml_quote(f, n->model);
    fprintf(f, "\nmodel_path: ");
    pl_yaml_quote(f, n->model_path);
    fprintf(f, "\nn_layer: %lld\ntokens: %lld\ntext: ", (long long)n->n_layer, (long long)n->tokens);
    pl_yaml_quote(f, n->text);
    fprintf(f, "\nthresholds:\n  max_abs_limit: ");
    num(f, n->max_abs_limit);
    fprintf(f, "\n  rel_error_limit: ");
    num(f, n->rel_error_limit);
    fprintf(f, "\nlayers:\n");
    for (int64_t l = 0; l < n->n_layer; l++) {
        const struct st_numerics_layer *L = &n->layers[l];
        fprintf(f, "  - {layer: %lld, fp16_safe: %s, max_abs: ", (long long)l, L->fp16_safe ? "true" : "false");
        num(f, L->max_abs);
        fprintf(f, ", frac_above_fp16: ");
        num(f, L->frac_above_fp16);
        fprintf(f, ", rel_error: ");
        num(f, L->rel_error);
        fprintf(f, ", worst: ");
        pl_yaml_quote(f, L->worst);
        fprintf(f, "}\n");
    }
    if (ferror(f)) return st_error_set(ST_ERR_IO, "numerics profile: write failed: %s", strerror(errno));
    return ST_OK;
}

/* ---- reader ------------------------------------------------------------------ */

static st_status rd_keys(struct pl_yaml *r, yaml_node_t *map, const char *path, const char *const *keys,
                         size_t n_keys) {
    if (!map || map->type != YAML_MAPPING_NODE) return pl_yaml_err(r, map, path, "expected a mapping");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&r->doc, p->key);
        const char *ks = k && k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        bool ok = false;
        for (size_t i = 0; i < n_keys && !ok; i++) ok = !strcmp(keys[i], ks);
        if (!ok) {
            const char *near = st_nearest_word(ks, keys, n_keys);
            if (!near) return pl_yaml_err(r, k, path, "unknown key '%s'", ks);
            st_error_set(ST_ERR_CONFIG, "%s:%zu:%zu: %s: unknown key '%s'", r->path, k->start_mark.line + 1,
                         k->start_mark.column + 1, path, ks);
            return st_error_hint("did you mean '%s'?", near);
        }
    }
    return ST_OK;
}

static st_status get_i64(struct pl_yaml *r, yaml_node_t *map, const char *key, const char *path, int64_t *out) {
    yaml_node_t *n;
    st_status s = pl_yaml_scalar(r, map, key, path, &n);
    if (s) return s;
    const char *v = (const char *)n->data.scalar.value;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end) return pl_yaml_err(r, n, path, "%s: '%s' is not an integer", key, v);
    *out = x;
    return ST_OK;
}

static st_status get_dbl(struct pl_yaml *r, yaml_node_t *map, const char *key, const char *path, double *out) {
    yaml_node_t *n;
    st_status s = pl_yaml_scalar(r, map, key, path, &n);
    if (s) return s;
    const char *v = (const char *)n->data.scalar.value;
    /* YAML 1.1's spellings, as num() writes them and a hand edit may: [-+].inf, .nan, any case */
    const char *u = (*v == '-' || *v == '+') ? v + 1 : v;
    if (!strcasecmp(u, ".inf")) { *out = *v == '-' ? -INFINITY : INFINITY; return ST_OK; }
    if (u == v && !strcasecmp(v, ".nan")) { *out = NAN; return ST_OK; }
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end) return pl_yaml_err(r, n, path, "%s: '%s' is not a number", key, v);
    *out = x;
    return ST_OK;
}

static st_status get_bool(struct pl_yaml *r, yaml_node_t *map, const char *key, const char *path, bool *out) {
    yaml_node_t *n;
    st_status s = pl_yaml_scalar(r, map, key, path, &n);
    if (s) return s;
    const char *v = (const char *)n->data.scalar.value;
    if (!strcmp(v, "true")) *out = true;
    else if (!strcmp(v, "false")) *out = false;
    else return pl_yaml_err(r, n, path, "%s: '%s' is not true or false", key, v);
    return ST_OK;
}

static st_status get_str(struct pl_yaml *r, yaml_node_t *map, const char *key, const char *path, char *out,
                         size_t cap) {
    yaml_node_t *n;
    st_status s = pl_yaml_scalar(r, map, key, path, &n);
    if (s) return s;
    const char *v = (const char *)n->data.scalar.value;
    if (strlen(v) >= cap)
        return pl_yaml_err(r, n, path, "%s: '%.40s...' is longer than the %zu characters it may have", key, v, cap - 1);
    snprintf(out, cap, "%s", v);
    return ST_OK;
}

static st_status read_doc(struct pl_yaml *r, struct st_numerics *n) {
    static const char *const top_keys[] = {"version", "model", "model_path", "n_layer", "tokens", "text",
                                           "thresholds", "layers"};
    static const char *const thr_keys[] = {"max_abs_limit", "rel_error_limit"};
    static const char *const layer_keys[] = {"layer", "fp16_safe", "max_abs", "frac_above_fp16", "rel_error", "worst"};
    st_status s;
    yaml_node_t *root = yaml_document_get_root_node(&r->doc);
    if (!root) return pl_yaml_err(r, NULL, "(document)", "the file is empty");
    if ((s = rd_keys(r, root, "(top level)", top_keys, ST_ARRAY_LEN(top_keys)))) return s;
    int64_t version = 0;
    if ((s = get_i64(r, root, "version", "version", &version))) return s;
    if (version != ST_NUMERICS_VERSION)
        return pl_yaml_err(r, pl_yaml_get(r, root, "version"), "version",
                           "%lld is not a version this strata reads (%d)", (long long)version, ST_NUMERICS_VERSION);
    if ((s = get_str(r, root, "model", "model", n->model, sizeof n->model)) ||
        (s = get_str(r, root, "model_path", "model_path", n->model_path, sizeof n->model_path)) ||
        (s = get_i64(r, root, "n_layer", "n_layer", &n->n_layer)) ||
        (s = get_i64(r, root, "tokens", "tokens", &n->tokens)) ||
        (s = get_str(r, root, "text", "text", n->text, sizeof n->text)))
        return s;
    if (n->n_layer < 1 || n->n_layer > 100000)
        return pl_yaml_err(r, pl_yaml_get(r, root, "n_layer"), "n_layer", "%lld is not a layer count",
                           (long long)n->n_layer);
    yaml_node_t *thr = pl_yaml_get(r, root, "thresholds");
    if (!thr) return pl_yaml_err(r, root, "(top level)", "missing key 'thresholds'");
    if ((s = rd_keys(r, thr, "thresholds", thr_keys, ST_ARRAY_LEN(thr_keys))) ||
        (s = get_dbl(r, thr, "max_abs_limit", "thresholds.max_abs_limit", &n->max_abs_limit)) ||
        (s = get_dbl(r, thr, "rel_error_limit", "thresholds.rel_error_limit", &n->rel_error_limit)))
        return s;
    yaml_node_t *layers = pl_yaml_get(r, root, "layers");
    if (!layers) return pl_yaml_err(r, root, "(top level)", "missing key 'layers'");
    if (layers->type != YAML_SEQUENCE_NODE) return pl_yaml_err(r, layers, "layers", "expected a list");
    int64_t count = layers->data.sequence.items.top - layers->data.sequence.items.start;
    if (count != n->n_layer)
        return pl_yaml_err(r, layers, "layers", "%lld entries for n_layer %lld", (long long)count,
                           (long long)n->n_layer);
    n->layers = st_calloc((size_t)n->n_layer, sizeof *n->layers, "numerics layers");
    if (!n->layers) return ST_ERR_NOMEM;
    for (int64_t i = 0; i < count; i++) {
        yaml_node_t *e = yaml_document_get_node(&r->doc, layers->data.sequence.items.start[i]);
        char path[48];
        snprintf(path, sizeof path, "layers[%lld]", (long long)i);
        struct st_numerics_layer *L = &n->layers[i];
        int64_t idx = -1;
        if ((s = rd_keys(r, e, path, layer_keys, ST_ARRAY_LEN(layer_keys))) ||
            (s = get_i64(r, e, "layer", path, &idx)))
            return s;
        if (idx != i)
            return pl_yaml_err(r, pl_yaml_get(r, e, "layer"), path,
                               "layer %lld where layer %lld belongs (layers in order)", (long long)idx, (long long)i);
        if ((s = get_bool(r, e, "fp16_safe", path, &L->fp16_safe)) ||
            (s = get_dbl(r, e, "max_abs", path, &L->max_abs)) ||
            (s = get_dbl(r, e, "frac_above_fp16", path, &L->frac_above_fp16)) ||
            (s = get_dbl(r, e, "rel_error", path, &L->rel_error)) ||
            (s = get_str(r, e, "worst", path, L->worst, sizeof L->worst)))
            return s;
    }
    return ST_OK;
}

#define NUMERICS_HINT "numerics profiles are written by 'strata calibrate -o FILE'; run it again rather than editing"

st_status st_numerics_parse(const char *text, size_t len, const char *name, struct st_numerics **out) {
    *out = NULL;
    st_status s = st_yaml_check_limits(name, text, len, ST_YAML_MAX_PLAN_BYTES, NUMERICS_HINT);
    if (s) return s;
    struct st_numerics *n = st_calloc(1, sizeof *n, "numerics profile");
    if (!n) return ST_ERR_NOMEM;
    yaml_parser_t parser;
    struct pl_yaml r = {.path = name, .hint = NUMERICS_HINT};
    if (!yaml_parser_initialize(&parser)) {
        free(n);
        return st_error_set(ST_ERR_NOMEM, "%s: out of host memory parsing YAML", name);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &r.doc)) {
        s = parser.error == YAML_MEMORY_ERROR ? st_error_set(ST_ERR_NOMEM, "%s: out of host memory parsing YAML", name)
                                              : pl_yaml_syntax_err(&r, &parser);
        yaml_parser_delete(&parser);
        free(n);
        return s;
    }
    s = read_doc(&r, n);
    yaml_document_delete(&r.doc);
    yaml_parser_delete(&parser);
    if (s != ST_OK) {
        st_numerics_free(n);
        return s;
    }
    *out = n;
    return ST_OK;
}

st_status st_numerics_read(const char *path, struct st_numerics **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    st_status s = st_read_file_limit(path, ST_YAML_MAX_PLAN_BYTES, &text, &len);
    if (s != ST_OK) {
        if (s == ST_ERR_NOMEM) return s;
        /* the reader's own hint is about the path; what helps here is how to make the file */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", st_last_error());
        char *hint = strstr(msg, "\nhint: ");
        if (hint) *hint = 0;
        st_error_set(ST_ERR_CONFIG, "numerics profile: %s", msg);
        return st_error_hint("write one with 'strata calibrate -m MODEL -o FILE'");
    }
    s = st_numerics_parse(text, len, path, out);
    free(text);
    return s;
}

void st_numerics_free(struct st_numerics *n) {
    if (!n) return;
    free(n->layers);
    free(n);
}

st_status st_numerics_load(const char *path, int64_t n_layer, bool **fp16_safe) {
    *fp16_safe = NULL;
    struct st_numerics *n = NULL;
    st_status s = st_numerics_read(path, &n);
    if (s != ST_OK) return s;
    if (n->n_layer != n_layer) {
        st_error_set(ST_ERR_CONFIG, "%s: the numerics profile is for %lld layers (model '%s'), the model has %lld",
                     path, (long long)n->n_layer, n->model, (long long)n_layer);
        st_numerics_free(n);
        return st_error_hint("calibrate this model: 'strata calibrate -m MODEL -o FILE'");
    }
    bool *f = st_malloc((size_t)n_layer * sizeof *f, "fp16-safe flags");
    if (!f) { st_numerics_free(n); return ST_ERR_NOMEM; }
    for (int64_t l = 0; l < n_layer; l++) f[l] = n->layers[l].fp16_safe;
    st_numerics_free(n);
    *fp16_safe = f;
    return ST_OK;
}
