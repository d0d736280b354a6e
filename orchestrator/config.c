/* The deployment config: libyaml document → struct st_deploy_config.
 *
 * Every mapping is first checked against its list of keys (unknown and
 * duplicate keys are errors), then each key is read with a typed getter that
 * reports FILE:LINE:COL, the key path and a hint. libyaml's document loader
 * keeps a start mark for every node, which gives the positions. */
#include "config.h"
#include "orchestrator/session.h"
#include "planner/planner.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define PATH_MAX_LEN 256

/* a config holds no more stop strings than one generation takes */
_Static_assert(ST_CONFIG_MAX_STOP == ST_GEN_MAX_STOP && ST_CONFIG_MAX_STOP_BYTES == ST_GEN_STOP_MAX_BYTES,
               "generation.stop limits differ from the session's");

struct cfg_ctx {
    yaml_document_t *doc;
    const char *file;            /* name for messages */
    struct st_deploy_config *cfg;
};

/* ---- names ---------------------------------------------------------------- */

static const char *const objective_names[] = {"latency", "throughput"};
static const char *const transport_names[] = {"auto", "peer", "nccl", "host"};
static const char *const strategy_names[] = {"auto", "manual"};
static const char *const chat_names[] = {"auto", "chatml", "llama3", "none"};
/* index 0 is "auto" (ST_CONFIG_AUTO); index i+1 is st_prec / st_attn_kind i */
static const char *const prec_names[] = {"auto", "fp32", "fp16", "bf16"};
static const char *const attn_names[] = {"auto", "eager", "flash"};
/* index 0 "auto" (ST_CONFIG_AUTO); index i+1 is st_dtype i (F32, F16, BF16, Q8_0) */
static const char *const kv_names[] = {"auto", "f32", "f16", "bf16", "q8_0"};
const char *st_config_objective_name(st_config_objective o) {
    return (unsigned)o < ST_ARRAY_LEN(objective_names) ? objective_names[o] : "?";
}
const char *st_config_transport_name(st_config_transport t) {
    return (unsigned)t < ST_ARRAY_LEN(transport_names) ? transport_names[t] : "?";
}
const char *st_config_strategy_name(st_config_strategy s) {
    return (unsigned)s < ST_ARRAY_LEN(strategy_names) ? strategy_names[s] : "?";
}
const char *st_config_chat_name(st_config_chat c) {
    return (unsigned)c < ST_ARRAY_LEN(chat_names) ? chat_names[c] : "?";
}
const char *st_config_prec_name(int prec) {
    return (prec >= -1 && prec + 1 < (int)ST_ARRAY_LEN(prec_names)) ? prec_names[prec + 1] : "?";
}
const char *st_config_attn_name(int attn) {
    return (attn >= -1 && attn + 1 < (int)ST_ARRAY_LEN(attn_names)) ? attn_names[attn + 1] : "?";
}
const char *st_config_kv_name(int kv) {
    return (kv >= -1 && kv + 1 < (int)ST_ARRAY_LEN(kv_names)) ? kv_names[kv + 1] : "?";
}
const char *st_config_device_kind_name(st_config_device_kind k) {
    switch (k) {
    case ST_CONFIG_DEV_CPU: return "cpu";
    case ST_CONFIG_DEV_CUDA_INDEX: return "cuda";
    case ST_CONFIG_DEV_CUDA_UUID: return "cuda (uuid)";
    case ST_CONFIG_DEV_CATALOG: return "catalog";
    }
    return "?";
}
const char *st_config_device_label(const struct st_config_device *d) {
    return d->name[0] ? d->name : d->selector;
}

/* ---- errors --------------------------------------------------------------- */

/* "FILE:LINE:COL: path: what" (path left out when empty). */
static st_status cfg_err_at(struct cfg_ctx *c, int line, int col, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static st_status cfg_err_at(struct cfg_ctx *c, int line, int col, const char *path, const char *fmt, ...) {
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (path && path[0]) return st_error_set(ST_ERR_CONFIG, "%s:%d:%d: %s: %s", c->file, line, col, path, what);
    return st_error_set(ST_ERR_CONFIG, "%s:%d:%d: %s", c->file, line, col, what);
}

/* Appends the hint line; always returns ST_ERR_CONFIG. */
static st_status cfg_hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static st_status cfg_hint(const char *fmt, ...) {
    char h[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h, sizeof h, fmt, ap);
    va_end(ap);
    st_error_hint("%s", h);
    return ST_ERR_CONFIG;
}

#define NODE_LINE(n) ((int)(n)->start_mark.line + 1)
#define NODE_COL(n) ((int)(n)->start_mark.column + 1)
#define cfg_err(c, node, path, ...) cfg_err_at((c), NODE_LINE(node), NODE_COL(node), (path), __VA_ARGS__)

static struct st_config_pos node_pos(const yaml_node_t *n) {
    struct st_config_pos p = {NODE_LINE(n), NODE_COL(n)};
    return p;
}

/* ---- scalars -------------------------------------------------------------- */

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }
static bool is_plain(const yaml_node_t *n) { return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

static bool text_is_null(const char *s) {
    return !s[0] || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}
static bool text_is_bool(const char *s, bool *v) {
    static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False", "FALSE"};
    for (int i = 0; i < 3; i++) {
        if (!strcmp(s, t[i])) { if (v) *v = true; return true; }
        if (!strcmp(s, f[i])) { if (v) *v = false; return true; }
    }
    return false;
}
static bool text_is_int(const char *s, int64_t *v) {
    const char *p = s;
    if (*p == '-' || *p == '+') p++;
    if (!isdigit((unsigned char)*p)) return false;
    for (const char *q = p; *q; q++) if (!isdigit((unsigned char)*q)) return false;
    errno = 0;
    long long x = strtoll(s, NULL, 10);
    if (errno) return false;
    if (v) *v = x;
    return true;
}
static bool text_is_float(const char *s, double *v) {
    if (!s[0] || isspace((unsigned char)s[0])) return false;
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (*end || errno || !isfinite(x)) return false;
    if (v) *v = x;
    return true;
}

/* What a node is, for "expected X, found Y". */
static const char *describe(const yaml_node_t *n, char *buf, size_t len) {
    if (n->type == YAML_MAPPING_NODE) return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    const char *s = scalar(n);
    if (is_plain(n)) {
        if (text_is_null(s)) return "nothing (null)";
        if (text_is_bool(s, NULL)) { snprintf(buf, len, "the boolean %s", s); return buf; }
        if (text_is_float(s, NULL)) { snprintf(buf, len, "the number %s", s); return buf; }
    }
    snprintf(buf, len, "the string '%.60s%s'", s, strlen(s) > 60 ? "..." : "");
    return buf;
}

static st_status wrong_type(struct cfg_ctx *c, const yaml_node_t *n, const char *path, const char *want,
                            const char *example) {
    char b[96];
    cfg_err(c, n, path, "expected %s, found %s", want, describe(n, b, sizeof b));
    if (example) st_error_hint("write it as, e.g., '%s'", example);
    return ST_ERR_CONFIG;
}

/* Key paths longer than PATH_MAX_LEN are cut; they only label messages. */
static void path_append(char *out, size_t *n, const char *text) {
    size_t len = strlen(text);
    if (*n + len >= PATH_MAX_LEN) len = PATH_MAX_LEN - 1 - *n;
    memcpy(out + *n, text, len);
    *n += len;
    out[*n] = 0;
}
static void path_key(char *out, const char *parent, const char *key) {
    char tmp[PATH_MAX_LEN];
    size_t n = 0;
    snprintf(tmp, sizeof tmp, "%s", parent);
    out[0] = 0;
    path_append(out, &n, tmp);
    if (n) path_append(out, &n, ".");
    path_append(out, &n, key);
}
static void path_index(char *out, const char *parent, int i) {
    char tmp[PATH_MAX_LEN], idx[16];
    size_t n = 0;
    snprintf(tmp, sizeof tmp, "%s", parent);
    snprintf(idx, sizeof idx, "[%d]", i);
    out[0] = 0;
    path_append(out, &n, tmp);
    path_append(out, &n, idx);
}

static yaml_node_t *node_at(struct cfg_ctx *c, int id) { return yaml_document_get_node(c->doc, id); }

/* ---- mappings ------------------------------------------------------------- */

/* Every key a plain scalar from keys[], none twice. */
static st_status map_check(struct cfg_ctx *c, yaml_node_t *map, const char *path,
                           const char *const *keys, size_t n_keys) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(c, p->key);
        if (k->type != YAML_SCALAR_NODE) {
            char b[96];
            cfg_err(c, k, path, "a key must be a word, found %s", describe(k, b, sizeof b));
            return cfg_hint("write 'key: value' pairs; a '?' or '{' before a key makes it a complex key");
        }
        const char *ks = scalar(k);
        bool known = false;
        for (size_t i = 0; i < n_keys && !known; i++) known = !strcmp(ks, keys[i]);
        if (!known) {
            cfg_err(c, k, path, "unknown key '%s'", ks);
            const char *near = st_nearest_word(ks, keys, n_keys);
            if (near) return cfg_hint("did you mean '%s'?", near);
            char list[512] = "";
            for (size_t i = 0; i < n_keys; i++) {
                strncat(list, keys[i], sizeof list - strlen(list) - 1);
                if (i + 1 < n_keys) strncat(list, ", ", sizeof list - strlen(list) - 1);
            }
            return cfg_hint("valid keys %s%s: %s (docs/config.md)", path[0] ? "under " : "at the top level",
                                 path, list);
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *kq = node_at(c, q->key);
            if (kq->type == YAML_SCALAR_NODE && !strcmp(scalar(kq), ks)) {
                char kp[PATH_MAX_LEN];
                path_key(kp, path, ks);
                cfg_err(c, k, kp, "duplicate key '%s' (first at line %d, column %d)", ks, NODE_LINE(kq), NODE_COL(kq));
                return cfg_hint("keep one of the two; YAML keys in one mapping must be unique");
            }
        }
    }
    return ST_OK;
}

static yaml_node_t *map_get(struct cfg_ctx *c, yaml_node_t *map, const char *key) {
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(c, p->key);
        if (k->type == YAML_SCALAR_NODE && !strcmp(scalar(k), key)) return node_at(c, p->value);
    }
    return NULL;
}

/* ---- typed getters: node is the value, path its key path ----------------- */

static st_status get_int(struct cfg_ctx *c, yaml_node_t *n, const char *path, int64_t lo, int64_t hi,
                         const char *example, int64_t *out) {
    int64_t v;
    if (n->type != YAML_SCALAR_NODE || !is_plain(n) || !text_is_int(scalar(n), &v)) {
        return wrong_type(c, n, path, "a whole number", example);
    }
    if (v < lo || v > hi) {
        if (hi == INT64_MAX) cfg_err(c, n, path, "%lld is out of range: it must be at least %lld", (long long)v, (long long)lo);
        else cfg_err(c, n, path, "%lld is out of range: it must be in %lld..%lld", (long long)v, (long long)lo, (long long)hi);
        return cfg_hint("write it as, e.g., '%s'", example);
    }
    *out = v;
    return ST_OK;
}

static st_status get_int32(struct cfg_ctx *c, yaml_node_t *n, const char *path, int lo, int hi,
                           const char *example, int *out) {
    int64_t v;
    st_status s = get_int(c, n, path, lo, hi, example, &v);
    if (s == ST_OK) *out = (int)v;
    return s;
}

static st_status get_float(struct cfg_ctx *c, yaml_node_t *n, const char *path, const char *example, double *out) {
    if (n->type != YAML_SCALAR_NODE || !is_plain(n) || !text_is_float(scalar(n), out)) {
        return wrong_type(c, n, path, "a number", example);
    }
    return ST_OK;
}

static st_status get_bool(struct cfg_ctx *c, yaml_node_t *n, const char *path, bool *out) {
    if (n->type != YAML_SCALAR_NODE || !is_plain(n) || !text_is_bool(scalar(n), out)) {
        char b[96];
        cfg_err(c, n, path, "expected a boolean, found %s", describe(n, b, sizeof b));
        return cfg_hint("write true or false");
    }
    return ST_OK;
}

/* A string: any scalar but a plain null, number or boolean (those are quoted when meant as text). */
static st_status get_str(struct cfg_ctx *c, yaml_node_t *n, const char *path, const char *example, bool allow_numbers,
                         const char **out) {
    if (n->type != YAML_SCALAR_NODE) return wrong_type(c, n, path, "a string", example);
    const char *s = scalar(n);
    if (is_plain(n) && (text_is_null(s) || text_is_bool(s, NULL) || (!allow_numbers && text_is_float(s, NULL)))) {
        return wrong_type(c, n, path, "a string", example);
    }
    if (strlen(s) != n->data.scalar.length) {
        cfg_err(c, n, path, "the string holds a NUL character");
        return cfg_hint("remove the \\0 escape");
    }
    *out = s;
    return ST_OK;
}

static st_status get_str_buf(struct cfg_ctx *c, yaml_node_t *n, const char *path, const char *example,
                             char *buf, size_t cap) {
    const char *s = NULL;
    st_status st = get_str(c, n, path, example, true, &s);
    if (st) return st;
    if (strlen(s) >= cap) {
        cfg_err(c, n, path, "'%.40s...' is too long (at most %zu characters)", s, cap - 1);
        return cfg_hint("write it as, e.g., '%s'", example);
    }
    memcpy(buf, s, strlen(s) + 1);
    return ST_OK;
}

static st_status get_str_dup(struct cfg_ctx *c, yaml_node_t *n, const char *path, const char *example, size_t max_len,
                             char **out) {
    const char *s = NULL;
    st_status st = get_str(c, n, path, example, true, &s);
    if (st) return st;
    if (strlen(s) > max_len) {
        cfg_err(c, n, path, "the string is %zu bytes, more than the %zu this key accepts", strlen(s), max_len);
        return cfg_hint("shorten it (docs/limits.md lists the limits)");
    }
    *out = st_strdup(s, path);
    return *out ? ST_OK : ST_ERR_NOMEM;
}

/* One of names[] (exact), index into *out. */
static st_status get_enum(struct cfg_ctx *c, yaml_node_t *n, const char *path, const char *const *names,
                          size_t n_names, int *out) {
    char allowed[256] = "";
    for (size_t i = 0; i < n_names; i++) {
        strncat(allowed, names[i], sizeof allowed - strlen(allowed) - 1);
        if (i + 1 < n_names) strncat(allowed, i + 2 == n_names ? " or " : ", ", sizeof allowed - strlen(allowed) - 1);
    }
    if (n->type != YAML_SCALAR_NODE) {
        char b[96];
        cfg_err(c, n, path, "expected one of %s, found %s", allowed, describe(n, b, sizeof b));
        return cfg_hint("write one word, e.g. '%s'", names[0]);
    }
    const char *s = scalar(n);
    for (size_t i = 0; i < n_names; i++) {
        if (!strcmp(s, names[i])) { *out = (int)i; return ST_OK; }
    }
    cfg_err(c, n, path, "unknown value '%s'", s);
    const char *near = st_nearest_word(s, names, n_names);
    if (near) return cfg_hint("did you mean '%s'? allowed: %s", near, allowed);
    return cfg_hint("allowed: %s", allowed);
}

/* A size: "512MiB", "22GiB", "22GB", "1.5 GB" or a whole number of bytes. */
static st_status get_size(struct cfg_ctx *c, yaml_node_t *n, const char *path, const char *example, uint64_t *out) {
    if (n->type != YAML_SCALAR_NODE || (is_plain(n) && (text_is_null(scalar(n)) || text_is_bool(scalar(n), NULL)))) {
        return wrong_type(c, n, path, "a size such as 512MiB, 22GiB or 22GB", example);
    }
    if (st_parse_size(scalar(n), out) != ST_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", st_last_error());
        char *hint = strstr(msg, "\nhint: ");
        if (hint) *hint = 0;
        cfg_err(c, n, path, "%s", msg);
        if (hint) return cfg_hint("%s", hint + 7);
        return cfg_hint("write a size such as 512MiB, 22GiB or 22GB (0 for %s), e.g. '%s'",
                             strstr(path, "reserve") ? "none" : "all", example);
    }
    return ST_OK;
}

static st_status want_map(struct cfg_ctx *c, yaml_node_t *n, const char *path, const char *example) {
    return n->type == YAML_MAPPING_NODE ? ST_OK : wrong_type(c, n, path, "a mapping", example);
}

/* ---- model ---------------------------------------------------------------- */

/* Directory part of name, with the trailing '/', or "" when none. */
static void dir_of(const char *name, char *out, size_t cap) {
    const char *slash = strrchr(name, '/');
    size_t n = slash ? (size_t)(slash - name) + 1 : 0;
    if (n >= cap) n = 0;
    memcpy(out, name, n);
    out[n] = 0;
}

/* p relative to the config file's directory (as given when absolute), in a
 * new string the caller frees; NULL when out of memory. */
static char *path_from_config(const struct cfg_ctx *c, const char *p) {
    char dir[4096];
    dir_of(c->file, dir, sizeof dir);
    if (p[0] == '/') dir[0] = 0;
    size_t len = strlen(dir) + strlen(p) + 1;
    char *out = st_malloc(len, "a path");
    if (out) snprintf(out, len, "%s%s", dir, p);
    return out;
}

static st_status parse_model(struct cfg_ctx *c, yaml_node_t *n) {
    static const char *const keys[] = {"path", "preset", "quant"};
    struct st_config_model *m = &c->cfg->model;
    st_status s;
    if ((s = want_map(c, n, "model", "model: {path: models/qwen2.5-0.5b-instruct-q8_0.gguf}"))) return s;
    if ((s = map_check(c, n, "model", keys, ST_ARRAY_LEN(keys)))) return s;
    yaml_node_t *path = map_get(c, n, "path"), *preset = map_get(c, n, "preset"), *quant = map_get(c, n, "quant");
    if (path && preset) {
        cfg_err(c, preset, "model.preset", "both model.path and model.preset are given");
        return cfg_hint("keep path for a real model file, or preset for a dry run without one");
    }
    if (!path && !preset) {
        cfg_err(c, n, "model", "needs path or preset");
        return cfg_hint("e.g. 'path: models/qwen2.5-0.5b-instruct-q8_0.gguf' or, for a dry run, 'preset: qwen2.5-7b'");
    }
    if (path) {
        const char *p;
        if ((s = get_str(c, path, "model.path", "path: models/qwen2.5-0.5b-instruct-q8_0.gguf", true, &p))) return s;
        if (!p[0]) {
            cfg_err(c, path, "model.path", "is empty");
            return cfg_hint("name a GGUF file or a Hugging Face model directory");
        }
        if (strlen(p) >= ST_CONFIG_MAX_PATH) {
            cfg_err(c, path, "model.path", "the path is %zu bytes, more than the %d a path may have", strlen(p),
                    ST_CONFIG_MAX_PATH - 1);
            return cfg_hint("name a GGUF file or a Hugging Face model directory");
        }
        m->path = path_from_config(c, p);
        if (!m->path) return ST_ERR_NOMEM;
        m->pos = node_pos(path);
        if (quant) {
            cfg_err(c, quant, "model.quant", "applies only to a preset");
            return cfg_hint("a model file's dtypes come from the file; remove quant or use preset");
        }
    } else {
        if ((s = get_str_dup(c, preset, "model.preset", "preset: qwen2.5-7b", 255, &m->preset))) return s;
        m->pos = node_pos(preset);
        /* the planner's preset table is the list of names (configs/presets.yaml) */
        int n_presets = st_plan_preset_count();
        const char *names[128];
        int n_names = 0;
        bool known = false;
        for (int i = 0; i < n_presets && n_names < (int)ST_ARRAY_LEN(names); i++) {
            names[n_names++] = st_plan_preset_at(i)->name;
            known = known || !strcmp(m->preset, names[n_names - 1]);
        }
        if (!known) {
            cfg_err(c, preset, "model.preset", "unknown preset '%s'", m->preset);
            const char *near = st_nearest_word(m->preset, names, (size_t)n_names);
            if (near) return cfg_hint("did you mean '%s'? configs/presets.yaml lists the presets", near);
            char list[1024] = "";
            for (int i = 0; i < n_names; i++) {
                strncat(list, names[i], sizeof list - strlen(list) - 1);
                if (i + 1 < n_names) strncat(list, ", ", sizeof list - strlen(list) - 1);
            }
            return cfg_hint("presets: %s (configs/presets.yaml); for a real model use 'path:'", list);
        }
        if (quant) {
            char q[sizeof m->quant];
            if ((s = get_str_buf(c, quant, "model.quant", "quant: q4_k_m", q, sizeof q))) return s;
            for (char *p = q; *p; p++) *p = (char)tolower((unsigned char)*p);
            const char *quants[32];
            size_t n_quants = 0;
            bool ok = false;
            for (int i = 0; st_plan_quants[i] && n_quants < ST_ARRAY_LEN(quants); i++) {
                quants[n_quants++] = st_plan_quants[i];
                ok = ok || !strcmp(q, st_plan_quants[i]);
            }
            if (!ok) {
                cfg_err(c, quant, "model.quant", "unknown weight type '%s'", scalar(quant));
                const char *near = st_nearest_word(q, quants, n_quants);
                char list[256] = "";
                for (size_t i = 0; i < n_quants; i++) {
                    strncat(list, quants[i], sizeof list - strlen(list) - 1);
                    if (i + 1 < n_quants) strncat(list, ", ", sizeof list - strlen(list) - 1);
                }
                if (near) return cfg_hint("did you mean '%s'? presets take %s", near, list);
                return cfg_hint("presets take %s", list);
            }
            memcpy(m->quant, q, sizeof q);
        }
    }
    return ST_OK;
}

/* ---- devices -------------------------------------------------------------- */

static const char *const selector_forms =
    "write cpu, cuda:N (e.g. cuda:0), cuda:GPU-<uuid> (from nvidia-smi -L), "
    "or {catalog: NAME} for a card you do not have (e.g. {catalog: tesla-m40})";

static st_status parse_selector(struct cfg_ctx *c, yaml_node_t *n, const char *path, struct st_config_device *d) {
    const char *s = NULL;
    st_status st = get_str(c, n, path, "device: cuda:0", false, &s);
    if (st) {
        if (n->type == YAML_SCALAR_NODE) return cfg_hint("%s", selector_forms);
        return st;
    }
    if (strlen(s) >= sizeof d->selector) {
        cfg_err(c, n, path, "device selector '%.40s...' is too long", s);
        return cfg_hint("%s", selector_forms);
    }
    snprintf(d->selector, sizeof d->selector, "%s", s);
    d->selector_pos = node_pos(n);
    if (!strcmp(s, "cpu")) {
        d->kind = ST_CONFIG_DEV_CPU;
        return ST_OK;
    }
    if (!strncmp(s, "cuda:", 5)) {
        const char *rest = s + 5;
        int64_t idx;
        if (text_is_int(rest, &idx) && isdigit((unsigned char)rest[0])) {
            if (idx > 1023) {
                cfg_err(c, n, path, "CUDA device index %lld is out of range", (long long)idx);
                return cfg_hint("'strata inventory' lists this machine's devices");
            }
            d->kind = ST_CONFIG_DEV_CUDA_INDEX;
            d->index = (int)idx;
            return ST_OK;
        }
        if (!strncmp(rest, "GPU-", 4) || !strncmp(rest, "MIG-", 4)) {
            bool ok = rest[4] != 0 && strlen(rest) < sizeof d->uuid;
            for (const char *p = rest + 4; *p && ok; p++) ok = isxdigit((unsigned char)*p) || *p == '-';
            if (!ok) {
                cfg_err(c, n, path, "'%s' is not a GPU UUID", rest);
                return cfg_hint("copy the UUID from 'nvidia-smi -L' or 'strata inventory', "
                                     "e.g. cuda:GPU-5f2a7c3e-1b2d-4c8e-9a0b-0123456789ab");
            }
            d->kind = ST_CONFIG_DEV_CUDA_UUID;
            snprintf(d->uuid, sizeof d->uuid, "%s", rest);
            return ST_OK;
        }
    }
    cfg_err(c, n, path, "unknown device selector '%s'", s);
    if (!strncmp(s, "catalog:", 8)) return cfg_hint("write a catalog device as a mapping: {catalog: %s}", s + 8);
    return cfg_hint("%s", selector_forms);
}

/* weight_dtypes: a list of dtype names (model/model.h), each once, at least one. */
static st_status parse_weight_dtypes(struct cfg_ctx *c, yaml_node_t *n, const char *path, uint32_t *out) {
    const char *names[ST_DTYPE_COUNT];
    char allowed[256] = "";
    for (int t = 0; t < ST_DTYPE_COUNT; t++) {
        names[t] = st_dtype_name((st_dtype)t);
        strncat(allowed, names[t], sizeof allowed - strlen(allowed) - 1);
        if (t + 1 < ST_DTYPE_COUNT) strncat(allowed, ", ", sizeof allowed - strlen(allowed) - 1);
    }
    if (n->type != YAML_SEQUENCE_NODE) {
        wrong_type(c, n, path, "a list of weight types", NULL);
        return cfg_hint("write it as, e.g., 'weight_dtypes: [f16, bf16, q8_0]' (weight types: %s)", allowed);
    }
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0) {
        cfg_err(c, n, path, "the list is empty: a device that runs no weight type can hold no layer");
        return cfg_hint("list what the device may hold, e.g. [f16, bf16, q8_0], or remove the device");
    }
    uint32_t mask = 0;
    for (int i = 0; i < count; i++) {
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
        char ip[PATH_MAX_LEN];
        path_index(ip, path, i);
        if (item->type != YAML_SCALAR_NODE) {
            char b[96];
            cfg_err(c, item, ip, "expected a weight type, found %s", describe(item, b, sizeof b));
            return cfg_hint("weight types: %s", allowed);
        }
        const char *v = scalar(item);
        int t = 0;
        while (t < ST_DTYPE_COUNT && strcmp(v, names[t])) t++;
        if (t == ST_DTYPE_COUNT) {
            cfg_err(c, item, ip, "unknown weight type '%s'", v);
            const char *near = st_nearest_word(v, names, ST_DTYPE_COUNT);
            if (near) return cfg_hint("did you mean '%s'? weight types: %s", near, allowed);
            return cfg_hint("weight types: %s", allowed);
        }
        if (mask & ST_DTYPE_BIT(t)) {
            cfg_err(c, item, ip, "'%s' is listed twice", v);
            return cfg_hint("name each weight type once");
        }
        mask |= ST_DTYPE_BIT(t);
    }
    *out = mask;
    return ST_OK;
}

static st_status parse_caps(struct cfg_ctx *c, yaml_node_t *n, const char *path, struct st_config_caps *caps) {
    static const char *const keys[] = {"fp16_arith", "fp32_accum_fp16", "bf16", "tensor_cores", "flash_attn",
                                       "weight_dtypes"};
    st_config_tri *fields[] = {&caps->fp16_arith, &caps->fp32_accum_fp16, &caps->bf16, &caps->tensor_cores,
                               &caps->flash_attn};
    st_status s;
    if ((s = want_map(c, n, path, "caps: {bf16: false, flash_attn: false}"))) return s;
    if ((s = map_check(c, n, path, keys, ST_ARRAY_LEN(keys)))) return s;
    for (size_t i = 0; i < ST_ARRAY_LEN(fields); i++) {
        yaml_node_t *v = map_get(c, n, keys[i]);
        if (!v) continue;
        char kp[PATH_MAX_LEN];
        path_key(kp, path, keys[i]);
        bool b = false;
        if ((s = get_bool(c, v, kp, &b))) return s;
        *fields[i] = b ? ST_CONFIG_TRI_TRUE : ST_CONFIG_TRI_FALSE;
    }
    yaml_node_t *v = map_get(c, n, "weight_dtypes");
    if (v) {
        char kp[PATH_MAX_LEN];
        path_key(kp, path, "weight_dtypes");
        if ((s = parse_weight_dtypes(c, v, kp, &caps->weight_dtypes))) return s;
    }
    return ST_OK;
}

static st_status parse_label(struct cfg_ctx *c, yaml_node_t *n, const char *path, char *out, size_t cap) {
    st_status s = get_str_buf(c, n, path, "name: m40", out, cap);
    if (s) return s;
    bool ok = out[0] != 0 && !isdigit((unsigned char)out[0]);
    for (const char *p = out; *p && ok; p++) ok = isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.';
    if (!ok) {
        cfg_err(c, n, path, "'%s' is not a usable device name", out);
        return cfg_hint("use letters, digits, '-', '_' and '.', starting with a letter, e.g. 'name: m40'");
    }
    return ST_OK;
}

static st_status parse_device(struct cfg_ctx *c, yaml_node_t *n, const char *path, struct st_config_device *d) {
    static const char *const keys[] = {"device", "catalog", "name", "max_memory", "reserve", "threads",
                                       "emulate", "caps", "precision", "attention", "kv_dtype", "rank"};
    st_status s;
    d->pos = node_pos(n);
    d->precision = ST_CONFIG_AUTO;
    d->attention = ST_CONFIG_AUTO;
    d->kv_dtype = ST_CONFIG_AUTO;
    if (n->type == YAML_SCALAR_NODE) return parse_selector(c, n, path, d);
    if (n->type != YAML_MAPPING_NODE) {
        char b[96];
        cfg_err(c, n, path, "expected a device selector or a mapping, found %s", describe(n, b, sizeof b));
        return cfg_hint("%s", selector_forms);
    }
    if ((s = map_check(c, n, path, keys, ST_ARRAY_LEN(keys)))) return s;
    char kp[PATH_MAX_LEN];
    yaml_node_t *sel = map_get(c, n, "device"), *cat = map_get(c, n, "catalog"), *v;
    if (sel && cat) {
        cfg_err(c, cat, path, "has both device and catalog");
        return cfg_hint("a device is either real (device: cuda:0) or from the catalog (catalog: tesla-m40); "
                             "to run a real card as a catalog one, use emulate:");
    }
    if (!sel && !cat) {
        cfg_err(c, n, path, "names no device");
        return cfg_hint("add 'device: cuda:0' (or cpu, cuda:GPU-<uuid>) or 'catalog: NAME'");
    }
    if (sel) {
        path_key(kp, path, "device");
        if ((s = parse_selector(c, sel, kp, d))) return s;
    } else {
        path_key(kp, path, "catalog");
        if ((s = get_str_buf(c, cat, kp, "catalog: tesla-m40", d->catalog, sizeof d->catalog))) return s;
        if (!d->catalog[0]) {
            cfg_err(c, cat, kp, "is empty");
            return cfg_hint("name a catalog card, e.g. 'catalog: tesla-m40' ('strata inventory --catalog' lists them)");
        }
        d->kind = ST_CONFIG_DEV_CATALOG;
        d->selector_pos = node_pos(cat);
        snprintf(d->selector, sizeof d->selector, "catalog:%s", d->catalog);
    }
    if ((v = map_get(c, n, "name"))) {
        path_key(kp, path, "name");
        if ((s = parse_label(c, v, kp, d->name, sizeof d->name))) return s;
    }
    if ((v = map_get(c, n, "max_memory"))) {
        path_key(kp, path, "max_memory");
        if ((s = get_size(c, v, kp, "max_memory: 22GiB", &d->max_memory_bytes))) return s;
    }
    if ((v = map_get(c, n, "reserve"))) {
        path_key(kp, path, "reserve");
        if ((s = get_size(c, v, kp, "reserve: 512MiB", &d->reserve_bytes))) return s;
        if (d->max_memory_bytes && d->reserve_bytes >= d->max_memory_bytes) {
            char a[32], b[32];
            cfg_err(c, v, kp, "reserve %s leaves nothing of max_memory %s",
                    st_format_bytes(d->reserve_bytes, a, sizeof a), st_format_bytes(d->max_memory_bytes, b, sizeof b));
            return cfg_hint("the reserve is taken out of max_memory; make it smaller than max_memory");
        }
    }
    if ((v = map_get(c, n, "threads"))) {
        path_key(kp, path, "threads");
        if (d->kind == ST_CONFIG_DEV_CUDA_INDEX || d->kind == ST_CONFIG_DEV_CUDA_UUID) {
            cfg_err(c, v, kp, "applies only to the cpu device");
            return cfg_hint("remove threads from %s", d->selector);
        }
        if ((s = get_int32(c, v, kp, 0, ST_CONFIG_MAX_THREADS, "threads: 16", &d->threads))) return s;
    }
    if ((v = map_get(c, n, "emulate"))) {
        path_key(kp, path, "emulate");
        if (d->kind == ST_CONFIG_DEV_CPU || d->kind == ST_CONFIG_DEV_CATALOG) {
            cfg_err(c, v, kp, "applies only to a real CUDA device");
            return cfg_hint(d->kind == ST_CONFIG_DEV_CPU
                                     ? "emulate makes a CUDA card behave like a catalog card; remove it from cpu"
                                     : "a catalog device already is that card; remove emulate");
        }
        if ((s = get_str_buf(c, v, kp, "emulate: tesla-m40", d->emulate, sizeof d->emulate))) return s;
        d->emulate_pos = node_pos(v);
        if (!d->emulate[0]) {
            cfg_err(c, v, kp, "is empty");
            return cfg_hint("name a catalog card, e.g. 'emulate: tesla-m40', or remove the key");
        }
    }
    if ((v = map_get(c, n, "caps"))) {
        path_key(kp, path, "caps");
        if ((s = parse_caps(c, v, kp, &d->caps))) return s;
    }
    if ((v = map_get(c, n, "precision"))) {
        path_key(kp, path, "precision");
        int i = 0;
        if ((s = get_enum(c, v, kp, prec_names, ST_ARRAY_LEN(prec_names), &i))) return s;
        d->precision = i - 1;
    }
    if ((v = map_get(c, n, "attention"))) {
        path_key(kp, path, "attention");
        int i = 0;
        if ((s = get_enum(c, v, kp, attn_names, ST_ARRAY_LEN(attn_names), &i))) return s;
        d->attention = i - 1;
    }
    if ((v = map_get(c, n, "kv_dtype"))) {
        path_key(kp, path, "kv_dtype");
        int i = 0;
        if ((s = get_enum(c, v, kp, kv_names, ST_ARRAY_LEN(kv_names), &i))) return s;
        d->kv_dtype = i - 1;
    }
    if ((v = map_get(c, n, "rank"))) {
        path_key(kp, path, "rank");
        if ((s = get_int32(c, v, kp, 0, ST_CONFIG_MAX_RANKS - 1, "rank: 1", &d->rank))) return s;
        d->rank_pos = node_pos(v);
    }
    return ST_OK;
}

static st_status parse_devices(struct cfg_ctx *c, yaml_node_t *n) {
    struct st_deploy_config *cfg = c->cfg;
    if (n->type != YAML_SEQUENCE_NODE) return wrong_type(c, n, "devices", "a list", "devices: [cuda:0, cpu]");
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0) {
        cfg_err(c, n, "devices", "the list is empty");
        return cfg_hint("name at least one device, e.g. 'devices: [cpu]'");
    }
    if (count > ST_CONFIG_MAX_DEVICES) {
        cfg_err(c, n, "devices", "%d devices is more than the %d strata handles", count, ST_CONFIG_MAX_DEVICES);
        return cfg_hint("list fewer devices");
    }
    cfg->devices = st_calloc((size_t)count, sizeof *cfg->devices, "config devices");
    if (!cfg->devices) return ST_ERR_NOMEM;
    for (int i = 0; i < count; i++) {
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
        char kp[PATH_MAX_LEN];
        path_index(kp, "devices", i);
        st_status s = parse_device(c, item, kp, &cfg->devices[i]);
        cfg->n_devices = i + 1;
        if (s) return s;
        if (cfg->devices[i].name[0]) {
            for (int j = 0; j < i; j++) {
                if (!strcmp(cfg->devices[j].name, cfg->devices[i].name)) {
                    yaml_node_t *nm = map_get(c, item, "name");
                    char np[PATH_MAX_LEN];
                    path_key(np, kp, "name");
                    cfg_err(c, nm, np, "the name '%s' is already used by devices[%d] (line %d)",
                            cfg->devices[i].name, j, cfg->devices[j].pos.line);
                    return cfg_hint("give every device its own name");
                }
            }
        }
    }
    return ST_OK;
}

/* ---- placement ------------------------------------------------------------ */

/* "a-b", a single whole number, or [a, b]. */
static st_status parse_layers(struct cfg_ctx *c, yaml_node_t *n, const char *path, int64_t *first, int64_t *last) {
    const char *example = "layers: 0-13";
    if (n->type == YAML_SEQUENCE_NODE) {
        int len = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
        if (len != 2) {
            cfg_err(c, n, path, "a layer range list needs 2 numbers [first, last], found %d", len);
            return cfg_hint("write it as, e.g., 'layers: [0, 13]' or 'layers: 0-13'");
        }
        st_status s;
        char kp[PATH_MAX_LEN];
        path_index(kp, path, 0);
        if ((s = get_int(c, node_at(c, n->data.sequence.items.start[0]), kp, 0, INT32_MAX, "layers: [0, 13]", first))) return s;
        path_index(kp, path, 1);
        if ((s = get_int(c, node_at(c, n->data.sequence.items.start[1]), kp, 0, INT32_MAX, "layers: [0, 13]", last))) return s;
    } else if (n->type == YAML_SCALAR_NODE && is_plain(n)) {
        const char *s = scalar(n);
        int64_t a, b;
        if (text_is_int(s, &a)) {
            b = a;
        } else {
            const char *dash = strchr(s, '-');
            char left[32];
            size_t ll = dash ? (size_t)(dash - s) : 0;
            bool ok = dash && ll > 0 && ll < sizeof left;
            if (ok) {
                memcpy(left, s, ll);
                left[ll] = 0;
                ok = text_is_int(left, &a) && text_is_int(dash + 1, &b) && isdigit((unsigned char)dash[1]);
            }
            if (!ok) return wrong_type(c, n, path, "a layer range 'first-last'", example);
        }
        if (a < 0) {
            cfg_err(c, n, path, "layer %lld is negative", (long long)a);
            return cfg_hint("layers count from 0");
        }
        *first = a;
        *last = b;
    } else {
        return wrong_type(c, n, path, "a layer range 'first-last'", example);
    }
    if (*first > INT32_MAX || *last > INT32_MAX) {
        cfg_err(c, n, path, "layer %lld is out of range", (long long)ST_MAX(*first, *last));
        return cfg_hint("layers count from 0 up to the model's last layer");
    }
    if (*last < *first) {
        cfg_err(c, n, path, "the layer range %lld-%lld is reversed", (long long)*first, (long long)*last);
        return cfg_hint("write first-last with first <= last, e.g. '%lld-%lld'", (long long)*last, (long long)*first);
    }
    return ST_OK;
}

/* A device reference: index into devices, a device's name, or its selector. */
static st_status parse_device_ref(struct cfg_ctx *c, yaml_node_t *n, const char *path, int *out) {
    const struct st_deploy_config *cfg = c->cfg;
    int64_t idx;
    if (n->type == YAML_SCALAR_NODE && is_plain(n) && text_is_int(scalar(n), &idx)) {
        if (idx < 0 || idx >= cfg->n_devices) {
            cfg_err(c, n, path, "device index %lld is out of range: devices has %d entr%s", (long long)idx,
                    cfg->n_devices, cfg->n_devices == 1 ? "y" : "ies");
            return cfg_hint("index devices from 0, or use a device's name");
        }
        *out = (int)idx;
        return ST_OK;
    }
    const char *s = NULL;
    st_status st = get_str(c, n, path, "device: m40", false, &s);
    if (st) return st;
    for (int i = 0; i < cfg->n_devices; i++) {
        if (cfg->devices[i].name[0] && !strcmp(cfg->devices[i].name, s)) { *out = i; return ST_OK; }
    }
    int found = -1;
    for (int i = 0; i < cfg->n_devices; i++) {
        if (!strcmp(cfg->devices[i].selector, s)) {
            if (found >= 0) {
                cfg_err(c, n, path, "'%s' matches devices[%d] and devices[%d]", s, found, i);
                return cfg_hint("give the devices names (name: ...) and refer to them by name");
            }
            found = i;
        }
    }
    if (found >= 0) { *out = found; return ST_OK; }
    cfg_err(c, n, path, "no device is named '%s'", s);
    const char *cands[2 * ST_CONFIG_MAX_DEVICES];
    size_t nc = 0;
    for (int i = 0; i < cfg->n_devices; i++) {
        if (cfg->devices[i].name[0]) cands[nc++] = cfg->devices[i].name;
        cands[nc++] = cfg->devices[i].selector;
    }
    const char *near = st_nearest_word(s, cands, nc);
    if (near) return cfg_hint("did you mean '%s'?", near);
    char list[512] = "";
    for (size_t i = 0; i < nc; i++) {
        strncat(list, cands[i], sizeof list - strlen(list) - 1);
        if (i + 1 < nc) strncat(list, ", ", sizeof list - strlen(list) - 1);
    }
    return cfg_hint("refer to a device by its index (0..%d), name or selector: %s", cfg->n_devices - 1, list);
}

static st_status parse_manual(struct cfg_ctx *c, yaml_node_t *n) {
    static const char *const keys[] = {"device", "layers"};
    struct st_config_placement *pl = &c->cfg->placement;
    const char *example = "manual: [{device: 0, layers: 0-13}, {device: 1, layers: 14-27}]";
    if (n->type != YAML_SEQUENCE_NODE) return wrong_type(c, n, "placement.manual", "a list", example);
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count == 0) {
        cfg_err(c, n, "placement.manual", "the list is empty");
        return cfg_hint("list one {device, layers} entry per stage, e.g. '%s'", example);
    }
    if (count > ST_CONFIG_MAX_STAGES) {
        cfg_err(c, n, "placement.manual", "%d stages is more than the %d strata runs", count, ST_CONFIG_MAX_STAGES);
        return cfg_hint("merge neighbouring ranges on the same device");
    }
    pl->manual = st_calloc((size_t)count, sizeof *pl->manual, "config manual placement");
    if (!pl->manual) return ST_ERR_NOMEM;
    for (int i = 0; i < count; i++) {
        yaml_node_t *item = node_at(c, n->data.sequence.items.start[i]);
        struct st_config_stage *st = &pl->manual[i];
        char kp[PATH_MAX_LEN], kk[PATH_MAX_LEN];
        path_index(kp, "placement.manual", i);
        st_status s;
        if ((s = want_map(c, item, kp, "- {device: 0, layers: 0-13}"))) return s;
        if ((s = map_check(c, item, kp, keys, ST_ARRAY_LEN(keys)))) return s;
        st->pos = node_pos(item);
        yaml_node_t *dev = map_get(c, item, "device"), *layers = map_get(c, item, "layers");
        if (!dev || !layers) {
            cfg_err(c, item, kp, "needs %s", dev ? "layers" : "device");
            return cfg_hint("each stage is {device: <index or name>, layers: first-last}, e.g. {device: 0, layers: 0-13}");
        }
        path_key(kk, kp, "device");
        if ((s = parse_device_ref(c, dev, kk, &st->device))) return s;
        path_key(kk, kp, "layers");
        if ((s = parse_layers(c, layers, kk, &st->first_layer, &st->last_layer))) return s;
        pl->n_manual = i + 1;
        int64_t want = i == 0 ? 0 : pl->manual[i - 1].last_layer + 1;
        if (st->first_layer != want) {
            if (i == 0) cfg_err(c, layers, kk, "the first stage starts at layer %lld, not 0", (long long)st->first_layer);
            else if (st->first_layer > want)
                cfg_err(c, layers, kk, "layers %lld-%lld leave out layer%s %lld%s%lld", (long long)st->first_layer,
                        (long long)st->last_layer, st->first_layer - want > 1 ? "s" : "", (long long)want,
                        st->first_layer - want > 1 ? "-" : "", st->first_layer - want > 1 ? (long long)st->first_layer - 1 : 0LL);
            else
                cfg_err(c, layers, kk, "layers %lld-%lld overlap the previous stage (which ends at layer %lld)",
                        (long long)st->first_layer, (long long)st->last_layer, (long long)want - 1);
            return cfg_hint("stages are contiguous and in order: this one should start at layer %lld", (long long)want);
        }
    }
    return ST_OK;
}

static st_status parse_placement(struct cfg_ctx *c, yaml_node_t *n) {
    static const char *const keys[] = {"strategy", "objective", "precision", "attention", "kv_dtype", "manual", "numerics"};
    struct st_config_placement *pl = &c->cfg->placement;
    st_status s;
    if ((s = want_map(c, n, "placement", "placement: {objective: latency}"))) return s;
    if ((s = map_check(c, n, "placement", keys, ST_ARRAY_LEN(keys)))) return s;
    yaml_node_t *v, *strategy = map_get(c, n, "strategy"), *manual = map_get(c, n, "manual");
    int i = 0;
    if (strategy) {
        if ((s = get_enum(c, strategy, "placement.strategy", strategy_names, ST_ARRAY_LEN(strategy_names), &i))) return s;
        pl->strategy = (st_config_strategy)i;
    } else if (manual) {
        pl->strategy = ST_CONFIG_STRATEGY_MANUAL;
    }
    if ((v = map_get(c, n, "objective"))) {
        if ((s = get_enum(c, v, "placement.objective", objective_names, ST_ARRAY_LEN(objective_names), &i))) return s;
        pl->objective = (st_config_objective)i;
    }
    if ((v = map_get(c, n, "precision"))) {
        if ((s = get_enum(c, v, "placement.precision", prec_names, ST_ARRAY_LEN(prec_names), &i))) return s;
        pl->precision = i - 1;
    }
    if ((v = map_get(c, n, "attention"))) {
        if ((s = get_enum(c, v, "placement.attention", attn_names, ST_ARRAY_LEN(attn_names), &i))) return s;
        pl->attention = i - 1;
    }
    if ((v = map_get(c, n, "kv_dtype"))) {
        if ((s = get_enum(c, v, "placement.kv_dtype", kv_names, ST_ARRAY_LEN(kv_names), &i))) return s;
        pl->kv_dtype = i - 1;
    }
    if (pl->strategy == ST_CONFIG_STRATEGY_MANUAL && !manual) {
        cfg_err(c, strategy, "placement.strategy", "manual placement needs placement.manual");
        return cfg_hint("list the stages: 'manual: [{device: 0, layers: 0-13}, {device: 1, layers: 14-27}]'");
    }
    if (manual && pl->strategy == ST_CONFIG_STRATEGY_AUTO) {
        cfg_err(c, manual, "placement.manual", "is given but placement.strategy is auto");
        return cfg_hint("set 'strategy: manual' to use these ranges, or remove manual to let the planner place layers");
    }
    if ((v = map_get(c, n, "numerics"))) {
        /* a numerics profile from `strata calibrate`; read (and checked against the model) when planning */
        const char *p;
        if ((s = get_str(c, v, "placement.numerics", "numerics: profile.yaml", true, &p))) return s;
        if (!p[0]) {
            cfg_err(c, v, "placement.numerics", "is empty");
            return cfg_hint("name the file 'strata calibrate -o FILE' wrote, or remove the key");
        }
        if (strlen(p) >= ST_CONFIG_MAX_PATH) {
            cfg_err(c, v, "placement.numerics", "the path is %zu bytes, more than the %d a path may have", strlen(p),
                    ST_CONFIG_MAX_PATH - 1);
            return cfg_hint("name the file 'strata calibrate -o FILE' wrote");
        }
        pl->numerics = path_from_config(c, p);
        if (!pl->numerics) return ST_ERR_NOMEM;
        pl->numerics_pos = node_pos(v);
    }
    if (manual) return parse_manual(c, manual);
    return ST_OK;
}

/* ---- generation ----------------------------------------------------------- */

static st_status float_in(struct cfg_ctx *c, yaml_node_t *n, const char *path, const char *example, double lo,
                          bool lo_open, double hi, bool hi_open, const char *range_text, float *out) {
    double v;
    st_status s = get_float(c, n, path, example, &v);
    if (s) return s;
    if (v < lo || (lo_open && v == lo) || v > hi || (hi_open && v == hi)) {
        cfg_err(c, n, path, "%s is out of range: it must be %s", scalar(n), range_text);
        return cfg_hint("write it as, e.g., '%s'", example);
    }
    *out = (float)v;
    return ST_OK;
}

static st_status parse_generation(struct cfg_ctx *c, yaml_node_t *n) {
    static const char *const keys[] = {"max_tokens", "temperature", "top_k", "top_p", "min_p", "repeat_penalty",
                                       "repeat_last_n", "frequency_penalty", "presence_penalty", "seed", "stop",
                                       "chat_template", "system"};
    struct st_config_generation *g = &c->cfg->generation;
    st_status s;
    yaml_node_t *v;
    if ((s = want_map(c, n, "generation", "generation: {max_tokens: 256, temperature: 0.7}"))) return s;
    if ((s = map_check(c, n, "generation", keys, ST_ARRAY_LEN(keys)))) return s;
    if ((v = map_get(c, n, "max_tokens")) &&
        (s = get_int(c, v, "generation.max_tokens", 1, ST_CONFIG_MAX_CONTEXT, "max_tokens: 256", &g->max_tokens))) return s;
    if ((v = map_get(c, n, "temperature")) &&
        (s = float_in(c, v, "generation.temperature", "temperature: 0.7", 0, false, 100, false, "in 0..100 (0 = greedy)",
                      &g->temperature))) return s;
    if ((v = map_get(c, n, "top_k")) &&
        (s = get_int32(c, v, "generation.top_k", 0, INT32_MAX, "top_k: 40", &g->top_k))) return s;
    if ((v = map_get(c, n, "top_p")) &&
        (s = float_in(c, v, "generation.top_p", "top_p: 0.95", 0, true, 1, false, "in (0, 1] (1 = off)", &g->top_p))) return s;
    if ((v = map_get(c, n, "min_p")) &&
        (s = float_in(c, v, "generation.min_p", "min_p: 0.05", 0, false, 1, true, "in [0, 1) (0 = off)", &g->min_p))) return s;
    if ((v = map_get(c, n, "repeat_penalty")) &&
        (s = float_in(c, v, "generation.repeat_penalty", "repeat_penalty: 1.1", 0, true, 100, false,
                      "greater than 0 (1 = off)", &g->repeat_penalty))) return s;
    if ((v = map_get(c, n, "repeat_last_n")) &&
        (s = get_int(c, v, "generation.repeat_last_n", -1, ST_CONFIG_MAX_CONTEXT, "repeat_last_n: 64", &g->repeat_last_n))) return s;
    if ((v = map_get(c, n, "frequency_penalty")) &&
        (s = float_in(c, v, "generation.frequency_penalty", "frequency_penalty: 0.5", -2, false, 2, false,
                      "in -2..2 (0 = off)", &g->frequency_penalty))) return s;
    if ((v = map_get(c, n, "presence_penalty")) &&
        (s = float_in(c, v, "generation.presence_penalty", "presence_penalty: 0.5", -2, false, 2, false,
                      "in -2..2 (0 = off)", &g->presence_penalty))) return s;
    if ((v = map_get(c, n, "seed"))) {
        const char *t = v->type == YAML_SCALAR_NODE ? scalar(v) : "";
        int64_t iv;
        if (v->type == YAML_SCALAR_NODE && is_plain(v) && !strcmp(t, "-1")) {
            g->has_seed = false;
        } else if (v->type == YAML_SCALAR_NODE && is_plain(v) && isdigit((unsigned char)t[0]) && text_is_int(t, &iv)) {
            g->has_seed = true;
            g->seed = (uint64_t)iv;
        } else if (v->type == YAML_SCALAR_NODE && is_plain(v) && isdigit((unsigned char)t[0]) &&
                   strspn(t, "0123456789") == strlen(t) && strlen(t) <= 20) {
            errno = 0;
            unsigned long long u = strtoull(t, NULL, 10);
            if (errno) {
                cfg_err(c, v, "generation.seed", "%s is larger than 2^64-1", t);
                return cfg_hint("use a seed in 0..18446744073709551615, or -1 for a random seed");
            }
            g->has_seed = true;
            g->seed = u;
        } else if (v->type == YAML_SCALAR_NODE && is_plain(v) && text_is_int(t, &iv)) {
            cfg_err(c, v, "generation.seed", "%s is out of range: it must be at least 0 (or -1 for random)", t);
            return cfg_hint("write it as, e.g., 'seed: 42'");
        } else {
            return wrong_type(c, v, "generation.seed", "a whole number", "seed: 42");
        }
    }
    if ((v = map_get(c, n, "stop"))) {
        yaml_node_item_t *items = NULL;
        int count = 1;
        if (v->type == YAML_SEQUENCE_NODE) {
            items = v->data.sequence.items.start;
            count = (int)(v->data.sequence.items.top - items);
        }
        if (count > ST_CONFIG_MAX_STOP) {
            cfg_err(c, v, "generation.stop", "%d stop strings is more than the %d strata accepts", count, ST_CONFIG_MAX_STOP);
            return cfg_hint("keep the ones that matter; the model's end-of-turn tokens always stop generation");
        }
        g->stop = st_calloc((size_t)(count ? count : 1), sizeof *g->stop, "config stop strings");
        if (!g->stop) return ST_ERR_NOMEM;
        for (int i = 0; i < count; i++) {
            yaml_node_t *item = items ? node_at(c, items[i]) : v;
            char kp[PATH_MAX_LEN];
            if (items) path_index(kp, "generation.stop", i);
            else snprintf(kp, sizeof kp, "generation.stop");
            if ((s = get_str_dup(c, item, kp, "stop: [\"\\n\\n\", \"User:\"]", ST_CONFIG_MAX_STOP_BYTES, &g->stop[i]))) return s;
            g->n_stop = i + 1;
            if (!g->stop[i][0]) {
                cfg_err(c, item, kp, "an empty stop string would stop at once");
                return cfg_hint("remove it; the model's end-of-turn tokens always stop generation");
            }
        }
    }
    if ((v = map_get(c, n, "chat_template"))) {
        int i = 0;
        if ((s = get_enum(c, v, "generation.chat_template", chat_names, ST_ARRAY_LEN(chat_names), &i))) return s;
        g->chat_template = (st_config_chat)i;
    }
    if ((v = map_get(c, n, "system")) &&
        (s = get_str_dup(c, v, "generation.system", "system: \"You are a helpful assistant.\"", ST_CONFIG_MAX_TEXT_BYTES,
                         &g->system))) return s;
    return ST_OK;
}

/* ---- network ---------------------------------------------------------------- */

static const char *network_list(char *buf, size_t cap) {
    buf[0] = 0;
    for (int i = 0; i < st_plan_network_count(); i++) {
        strncat(buf, st_plan_network_at(i)->name, cap - strlen(buf) - 1);
        if (i + 1 < st_plan_network_count()) strncat(buf, ", ", cap - strlen(buf) - 1);
    }
    return buf;
}

static st_status network_preset(struct cfg_ctx *c, yaml_node_t *v, const char *path, struct st_config_network *net) {
    st_status s = get_str_buf(c, v, path, "network: 10gbe", net->preset, sizeof net->preset);
    if (s) return s;
    const struct st_plan_network_preset *p = st_plan_network_find(net->preset);
    if (!p) {
        char list[256];
        const char *names[32];
        int n = 0;
        for (int i = 0; i < st_plan_network_count() && n < 32; i++) names[n++] = st_plan_network_at(i)->name;
        char low[sizeof net->preset];
        for (size_t i = 0; i <= strlen(net->preset); i++) low[i] = (char)tolower((unsigned char)net->preset[i]);
        cfg_err(c, v, path, "unknown network '%s'", net->preset);
        const char *near = st_nearest_word(low, names, (size_t)n);
        if (near) return cfg_hint("did you mean '%s'? presets: %s (docs/multihost.md)", near, network_list(list, sizeof list));
        return cfg_hint("presets: %s, or give {bandwidth_gb_s: 1.2, latency_us: 30} (docs/multihost.md)",
                        network_list(list, sizeof list));
    }
    snprintf(net->preset, sizeof net->preset, "%s", p->name);
    net->bandwidth_gbps = p->bandwidth_gbps;
    net->latency_us = p->latency_us;
    return ST_OK;
}

/* `network: 10gbe`, or {preset: NAME, bandwidth_gb_s: X, latency_us: Y} where the figures override the preset's. */
static st_status parse_network(struct cfg_ctx *c, yaml_node_t *n) {
    static const char *const keys[] = {"preset", "bandwidth_gb_s", "latency_us"};
    struct st_config_network *net = &c->cfg->network;
    st_status s;
    net->set = true;
    net->pos = node_pos(n);
    if (n->type == YAML_SCALAR_NODE) return network_preset(c, n, "network", net);
    if ((s = want_map(c, n, "network", "network: {bandwidth_gb_s: 1.2, latency_us: 30}"))) return s;
    if ((s = map_check(c, n, "network", keys, ST_ARRAY_LEN(keys)))) return s;
    yaml_node_t *v;
    if ((v = map_get(c, n, "preset")) && (s = network_preset(c, v, "network.preset", net))) return s;
    double x;
    if ((v = map_get(c, n, "bandwidth_gb_s"))) {
        if ((s = get_float(c, v, "network.bandwidth_gb_s", "bandwidth_gb_s: 1.2", &x))) return s;
        if (!(x > 0 && x <= 10000)) {
            cfg_err(c, v, "network.bandwidth_gb_s", "%s is out of range: it must be in (0, 10000] GB/s", scalar(v));
            return cfg_hint("GB/s are 10^9 bytes per second: a 10 Gbit/s link carries about 1.2");
        }
        net->bandwidth_gbps = x;
    }
    if ((v = map_get(c, n, "latency_us"))) {
        if ((s = get_float(c, v, "network.latency_us", "latency_us: 30", &x))) return s;
        if (!(x >= 0 && x <= 1e7)) {
            cfg_err(c, v, "network.latency_us", "%s is out of range: it must be in 0..10000000 microseconds", scalar(v));
            return cfg_hint("write the one-way latency of a small message, e.g. 'latency_us: 30'");
        }
        net->latency_us = x;
    }
    if (!net->preset[0] && (net->bandwidth_gbps <= 0 || !map_get(c, n, "latency_us"))) {
        cfg_err(c, n, "network", "needs a preset, or both bandwidth_gb_s and latency_us");
        return cfg_hint("e.g. 'network: 25gbe' or 'network: {bandwidth_gb_s: 1.2, latency_us: 30}'");
    }
    return ST_OK;
}

st_status st_config_check_ranks(const struct st_deploy_config *cfg, int n_ranks) {
    int max_rank = 0;
    for (int i = 0; i < cfg->n_devices; i++) max_rank = ST_MAX(max_rank, cfg->devices[i].rank);
    for (int i = 0; i < cfg->n_devices; i++) {
        const struct st_config_device *d = &cfg->devices[i];
        struct st_config_pos pos = d->rank_pos.line ? d->rank_pos : d->pos;
        if (n_ranks > 0 && d->rank >= n_ranks) {
            st_error_set(ST_ERR_CONFIG, "%s:%d:%d: devices[%d].rank: %s is on rank %d, but %d rank%s %s running "
                         "(0..%d)", cfg->source, pos.line, pos.column, i, st_config_device_label(d), d->rank, n_ranks,
                         n_ranks == 1 ? "" : "s", n_ranks == 1 ? "is" : "are", n_ranks - 1);
            if (n_ranks == 1)
                return cfg_hint("launch one process per rank: 'mpirun -np %d strata ...' (docs/multihost.md); without "
                                "mpirun only rank 0 exists", max_rank + 1);
            return cfg_hint("launch with 'mpirun -np %d', or give the device a rank from 0 to %d", max_rank + 1,
                            n_ranks - 1);
        }
        if (n_ranks == 0 && d->rank > 0 && d->kind != ST_CONFIG_DEV_CATALOG) {
            st_error_set(ST_ERR_CONFIG, "%s:%d:%d: devices[%d].rank: %s is on rank %d, another process whose devices "
                         "only 'mpirun' can show", cfg->source, pos.line, pos.column, i, st_config_device_label(d),
                         d->rank);
            return cfg_hint("launch one process per rank ('mpirun -np %d strata ...', docs/multihost.md), or write "
                            "the other host's cards as {catalog: NAME} for a what-if plan", max_rank + 1);
        }
    }
    /* ranks count 0, 1, 2, ... : a gap is a typo (or an idle process) */
    for (int r = 1; r < max_rank; r++) {
        bool used = false;
        for (int i = 0; i < cfg->n_devices && !used; i++) used = cfg->devices[i].rank == r;
        if (used) continue;
        for (int i = 0; i < cfg->n_devices; i++) {
            const struct st_config_device *d = &cfg->devices[i];
            if (d->rank <= r) continue;
            st_error_set(ST_ERR_CONFIG, "%s:%d:%d: devices[%d].rank: %s is on rank %d, but no device is on rank %d",
                         cfg->source, d->rank_pos.line, d->rank_pos.column, i, st_config_device_label(d), d->rank, r);
            return cfg_hint("number the hosts 0, 1, 2, ... without gaps: every rank owns at least one device");
        }
    }
    return ST_OK;
}

/* ---- top level ------------------------------------------------------------ */

static void set_defaults(struct st_deploy_config *cfg) {
    cfg->version = ST_CONFIG_VERSION;
    cfg->placement.strategy = ST_CONFIG_STRATEGY_AUTO;
    cfg->placement.objective = ST_CONFIG_OBJECTIVE_LATENCY;
    cfg->placement.precision = ST_CONFIG_AUTO;
    cfg->placement.attention = ST_CONFIG_AUTO;
    cfg->placement.kv_dtype = ST_CONFIG_AUTO;
    cfg->transport = ST_CONFIG_TRANSPORT_AUTO;
    cfg->context = ST_CONFIG_DEFAULT_CONTEXT;
    cfg->batch = ST_CONFIG_DEFAULT_BATCH;
    cfg->prefill_chunk = ST_CONFIG_DEFAULT_PREFILL_CHUNK;
    struct st_config_generation *g = &cfg->generation;
    g->max_tokens = ST_CONFIG_DEFAULT_MAX_TOKENS;
    g->temperature = ST_CONFIG_DEFAULT_TEMPERATURE;
    g->top_k = ST_CONFIG_DEFAULT_TOP_K;
    g->top_p = ST_CONFIG_DEFAULT_TOP_P;
    g->min_p = ST_CONFIG_DEFAULT_MIN_P;
    g->repeat_penalty = ST_CONFIG_DEFAULT_REPEAT_PENALTY;
    g->repeat_last_n = ST_CONFIG_DEFAULT_REPEAT_LAST_N;
    g->chat_template = ST_CONFIG_CHAT_AUTO;
}

static st_status parse_root(struct cfg_ctx *c, yaml_node_t *root) {
    static const char *const keys[] = {"version", "model", "devices", "placement", "transport", "network",
                                       "context", "batch", "prefill_chunk", "generation"};
    struct st_deploy_config *cfg = c->cfg;
    st_status s;
    yaml_node_t *v;
    if (root->type != YAML_MAPPING_NODE) {
        char b[96];
        cfg_err(c, root, "", "a deployment config is a mapping of keys, found %s", describe(root, b, sizeof b));
        return cfg_hint("start with 'version: 1', then model:, devices: ... (docs/config.md)");
    }
    if ((s = map_check(c, root, "", keys, ST_ARRAY_LEN(keys)))) return s;
    if (!(v = map_get(c, root, "version"))) {
        cfg_err(c, root, "version", "missing");
        return cfg_hint("add 'version: 1' as the first line");
    }
    int64_t ver;
    if (v->type != YAML_SCALAR_NODE || !is_plain(v) || !text_is_int(scalar(v), &ver)) {
        return wrong_type(c, v, "version", "a whole number", "version: 1");
    }
    if (ver != ST_CONFIG_VERSION) {
        cfg_err(c, v, "version", "this strata reads config version %d, not %lld", ST_CONFIG_VERSION, (long long)ver);
        return cfg_hint("write 'version: 1' and check the keys against docs/config.md");
    }
    if (!(v = map_get(c, root, "model"))) {
        cfg_err(c, root, "model", "missing");
        return cfg_hint("add 'model: {path: FILE.gguf}' or, for a dry run, 'model: {preset: qwen2.5-7b}'");
    }
    if ((s = parse_model(c, v))) return s;
    if (!(v = map_get(c, root, "devices"))) {
        cfg_err(c, root, "devices", "missing");
        return cfg_hint("add e.g. 'devices: [cuda:0, cpu]' ('strata inventory' lists this machine's)");
    }
    if ((s = parse_devices(c, v))) return s;
    if ((v = map_get(c, root, "placement")) && (s = parse_placement(c, v))) return s;
    if ((v = map_get(c, root, "transport"))) {
        int i = 0;
        if ((s = get_enum(c, v, "transport", transport_names, ST_ARRAY_LEN(transport_names), &i))) return s;
        cfg->transport = (st_config_transport)i;
    }
    if ((v = map_get(c, root, "network")) && (s = parse_network(c, v))) return s;
    if ((v = map_get(c, root, "context")) &&
        (s = get_int(c, v, "context", 1, ST_CONFIG_MAX_CONTEXT, "context: 4096", &cfg->context))) return s;
    if ((v = map_get(c, root, "batch")) &&
        (s = get_int(c, v, "batch", 1, ST_CONFIG_MAX_BATCH, "batch: 1", &cfg->batch))) return s;
    if ((v = map_get(c, root, "prefill_chunk")) &&
        (s = get_int(c, v, "prefill_chunk", 1, ST_CONFIG_MAX_CONTEXT, "prefill_chunk: 512", &cfg->prefill_chunk))) return s;
    if ((v = map_get(c, root, "generation")) && (s = parse_generation(c, v))) return s;
    return ST_OK;
}

/* Line and column (1-based) of byte offset off in text. */
static void offset_to_pos(const char *text, size_t len, size_t off, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') { (*line)++; *col = 1; }
        else (*col)++;
    }
}

static st_status yaml_error(struct cfg_ctx *c, yaml_parser_t *p, const char *text, size_t len) {
    int line, col;
    size_t off;
    if (p->error == YAML_READER_ERROR) {
        off = p->problem_offset;
        offset_to_pos(text, len, off, &line, &col);
    } else {
        off = p->problem_mark.index;
        line = (int)p->problem_mark.line + 1;
        col = (int)p->problem_mark.column + 1;
    }
    if (p->error == YAML_MEMORY_ERROR) return st_error_set(ST_ERR_NOMEM, "%s: out of host memory parsing YAML", c->file);
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->context) {
        cfg_err_at(c, line, col, "", "YAML syntax error: %s (%s started at line %d, column %d)", problem, p->context,
                   (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    } else {
        cfg_err_at(c, line, col, "", "YAML syntax error: %s", problem);
    }
    if (p->error == YAML_READER_ERROR) return cfg_hint("the file must be UTF-8 text");
    if (off < len && text[off] == '\t') return cfg_hint("YAML indents with spaces only; replace the tab");
    return cfg_hint("check the indentation and quoting at line %d; quote values that contain ': ', '#' or "
                         "start with '{', '[', '*', '&', '!', '%%' or '@'", line);
}

/* Catalog names must be cards of the GPU catalog (devices/catalog.c). */
static st_status check_catalog_name(const struct st_deploy_config *cfg, int i, const char *key, const char *name,
                                    struct st_config_pos pos) {
    bool form_ok = name[0] != 0;
    for (const char *p = name; *p && form_ok; p++) {
        form_ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || *p == '.' || *p == '_';
    }
    if (!form_ok) {
        st_error_set(ST_ERR_CONFIG, "%s:%d:%d: devices[%d].%s: '%s' is not a catalog card name", cfg->source,
                     pos.line, pos.column, i, key, name);
        return cfg_hint("catalog names are lower-case words joined by '-', e.g. tesla-m40, rtx-3090, h100-sxm");
    }
    struct st_device_info info;
    if (st_catalog_lookup(name, &info) == ST_OK) return ST_OK;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", st_last_error());
    char *hint = strstr(msg, "\nhint: ");
    if (hint) *hint = 0;
    st_error_set(ST_ERR_CONFIG, "%s:%d:%d: devices[%d].%s: unknown catalog card '%s'", cfg->source, pos.line,
                 pos.column, i, key, name);
    if (hint) return cfg_hint("%s", hint + 7);
    return cfg_hint("%s", msg);
}

st_status st_config_check_catalog(const struct st_deploy_config *cfg) {
    for (int i = 0; i < cfg->n_devices; i++) {
        const struct st_config_device *d = &cfg->devices[i];
        st_status s;
        if (d->kind == ST_CONFIG_DEV_CATALOG &&
            (s = check_catalog_name(cfg, i, "catalog", d->catalog, d->selector_pos))) return s;
        if (d->emulate[0] && (s = check_catalog_name(cfg, i, "emulate", d->emulate, d->emulate_pos))) return s;
    }
    return ST_OK;
}

st_status st_config_parse(const char *text, size_t len, const char *name, struct st_deploy_config **out) {
    *out = NULL;
    st_status s = ST_OK;
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    bool have_doc = false;
    struct st_deploy_config *cfg = st_calloc(1, sizeof *cfg, "deployment config");
    if (!cfg) return ST_ERR_NOMEM;
    set_defaults(cfg);
    cfg->source = st_strdup(name, "the config's name");
    if (!cfg->source) { s = ST_ERR_NOMEM; goto fail_cfg; }
    struct cfg_ctx c = {.doc = &doc, .file = cfg->source, .cfg = cfg};
    if ((s = st_yaml_check_limits(name, text, len, ST_CONFIG_MAX_BYTES,
                                  "a deployment config is a short YAML file (docs/config.md, docs/limits.md)"))) goto fail_cfg;

    if (!yaml_parser_initialize(&parser)) { s = st_error_set(ST_ERR_NOMEM, "out of host memory parsing %s", name); goto fail_cfg; }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) { s = yaml_error(&c, &parser, text, len); goto fail_parser; }
    have_doc = true;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        s = st_error_set(ST_ERR_CONFIG, "%s: the file holds no YAML document", name);
        st_error_hint("start with 'version: 1', then model:, devices: ... (docs/config.md has examples)");
        goto fail_doc;
    }
    if (!yaml_parser_load(&parser, &extra)) { s = yaml_error(&c, &parser, text, len); goto fail_doc; }
    yaml_node_t *extra_root = yaml_document_get_root_node(&extra);
    if (extra_root) {
        cfg_err(&c, extra_root, "", "a second YAML document starts here");
        st_error_hint("a deployment config is one document; remove the '---' line and what follows");
        yaml_document_delete(&extra);
        s = ST_ERR_CONFIG;
        goto fail_doc;
    }
    yaml_document_delete(&extra);
    if ((s = parse_root(&c, root))) goto fail_doc;
    if ((s = st_config_check_catalog(cfg))) goto fail_doc;

    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    *out = cfg;
    return ST_OK;

fail_doc:
    if (have_doc) yaml_document_delete(&doc);
fail_parser:
    yaml_parser_delete(&parser);
fail_cfg:
    st_config_free(cfg);
    return s;
}

st_status st_config_load(const char *path, struct st_deploy_config **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        st_error_set(ST_ERR_CONFIG, "%s: cannot open the deployment config: %s", path, strerror(errno));
        return cfg_hint("check the path (relative to the current directory); examples are in configs/ "
                        "and every key is in docs/config.md");
    }
    fclose(f);
    if (st_read_file_limit(path, ST_CONFIG_MAX_BYTES, &text, &len) != ST_OK) {
        if (st_last_status() == ST_ERR_NOMEM) return ST_ERR_NOMEM;
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", st_last_error());
        char *hint = strstr(msg, "\nhint: ");
        if (hint) *hint = 0;
        st_error_set(ST_ERR_CONFIG, "%s (reading the deployment config)", msg);
        return cfg_hint("name a YAML file; examples are in configs/");
    }
    st_status s = st_config_parse(text, len, path, out);
    free(text);
    return s;
}

void st_config_free(struct st_deploy_config *cfg) {
    if (!cfg) return;
    free(cfg->source);
    free(cfg->model.path);
    free(cfg->model.preset);
    free(cfg->devices);
    free(cfg->placement.manual);
    free(cfg->placement.numerics);
    for (int i = 0; i < cfg->generation.n_stop; i++) free(cfg->generation.stop[i]);
    free(cfg->generation.stop);
    free(cfg->generation.system);
    free(cfg);
}
