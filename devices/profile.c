/* The performance profile written by `strata inventory --probe` and read by
 * the planner: JSON (jansson), validated key by key on load.
 *
 *   { "strata_profile": 1, "host": "...", "created": "2026-...Z", "strata_version": "...",
 *     "devices": [ { "kind": "cpu", "name": "...", "uuid": "", "threads": 64,
 *                    "mem_bw_gbps": 180.5, "read_gbps": ..., "copy_gbps": ..., "triad_gbps": ...,
 *                    "gemv_gbps": { "f32": ..., "f16": ..., "bf16": ..., "q8_0": ... },
 *                    "launch_us": 1.2, "gemm_tflops": { "f32": ..., "f16": ..., "bf16": ..., "q8_0": ... },
 *                    "method": "ops:cpu", "probe_bytes": 1073741824 } ],
 *     "links": [ { "from": "GPU-...", "to": "GPU-...", "type": "peer", "latency_us": 8.1, "bw_gbps": 300.2 } ] } */
#include "devices/device.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

/* st_dtype order (st_dtype_name of each: tests/inventory/test_profile.c) */
static const char *const rate_keys[ST_N_RATES] = {"f32",  "f16",  "bf16",   "q8_0", "q4_0", "q4_1",
                                                  "q5_0", "q5_1", "iq4_nl", "q4_k", "q5_k", "q6_k"};
_Static_assert(ST_DTYPE_F32 == (int)ST_PREC_F32 && ST_DTYPE_F16 == (int)ST_PREC_F16 &&
                   ST_DTYPE_BF16 == (int)ST_PREC_BF16,
               "a float dtype's rate index is its matmul precision's");

const char *st_rate_key(int k) { return k >= 0 && k < ST_N_RATES ? rate_keys[k] : "?"; }

#define PROFILE_HINT "this file is written by 'strata inventory --probe'; run it again to regenerate the profile"

char *st_profile_default_path(char *buf, size_t buf_len) {
    const char *env = getenv("STRATA_PROFILE");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    if (env && env[0]) snprintf(buf, buf_len, "%s", env);
    else if (xdg && xdg[0] == '/') snprintf(buf, buf_len, "%s/strata/profile.json", xdg);
    else if (home && home[0]) snprintf(buf, buf_len, "%s/.cache/strata/profile.json", home);
    else if (buf_len) buf[0] = 0;
    return buf;
}

void st_profile_free(st_profile *p) {
    if (!p) return;
    free(p->devices);
    free(p->links);
    free(p);
}

const char *st_profile_device_key(const struct st_device_info *dev) {
    return st_device_host_memory(dev) || !dev->uuid[0] ? "cpu" : dev->uuid;
}

const struct st_profile_device *st_profile_find_device(const st_profile *p, const struct st_device_info *dev) {
    if (!p) return NULL;
    for (int i = 0; i < p->n_devices; i++) {
        const struct st_profile_device *e = &p->devices[i];
        if (e->kind != dev->kind) continue;
        if (!st_device_host_memory(dev)) {   /* a GPU: by uuid */
            if (dev->uuid[0] && strcmp(e->uuid, dev->uuid) == 0) return e;
        } else if (strcmp(e->name, dev->name) == 0 && (e->threads == 0 || e->threads == dev->threads)) {
            return e;
        }
    }
    return NULL;
}

const struct st_profile_link *st_profile_find_link(const st_profile *p, const struct st_device_info *from,
                                                   const struct st_device_info *to, st_link_type type) {
    if (!p) return NULL;
    const char *a = st_profile_device_key(from), *b = st_profile_device_key(to);
    const struct st_profile_link *best = NULL;
    for (int i = 0; i < p->n_links; i++) {
        const struct st_profile_link *l = &p->links[i];
        if (strcmp(l->from, a) != 0 || strcmp(l->to, b) != 0) continue;
        if (type != ST_LINK_T_AUTO && l->type != type) continue;
        if (!best || l->bw_gbps > best->bw_gbps) best = l;
    }
    return best;
}

int st_profile_apply(const st_profile *p, struct st_device_info *devs, int n_devs) {
    int n = 0;
    for (int i = 0; i < n_devs; i++) {
        const struct st_profile_device *e = st_profile_find_device(p, &devs[i]);
        if (!e) continue;
        struct st_perf *perf = &devs[i].perf;
        if (e->mem_bw_gbps > 0) perf->mem_bw_gbps = e->mem_bw_gbps;
        if (e->launch_us > 0) perf->launch_us = e->launch_us;
        for (int k = 0; k < ST_N_RATES; k++) if (e->gemv_gbps[k] > 0) perf->gemv_gbps[k] = e->gemv_gbps[k];
        if (e->gemm_tflops[0] > 0) perf->fp32_tflops = e->gemm_tflops[0];
        /* a host-memory backend (the CPU) widens f16/bf16 weights to fp32: their GEMM rates are
         * those weights' rates (gemm_tflops), not fp16/bf16 arithmetic */
        if (!st_device_host_memory(&devs[i])) {
            if (e->gemm_tflops[1] > 0) perf->fp16_tflops = e->gemm_tflops[1];
            if (e->gemm_tflops[2] > 0) perf->bf16_tflops = e->gemm_tflops[2];
        }
        for (int k = 0; k < ST_N_RATES; k++) if (e->gemm_tflops[k] > 0) perf->gemm_tflops[k] = e->gemm_tflops[k];
        perf->measured = true;
        n++;
    }
    return n;
}

/* ---- save ------------------------------------------------------------------ */

static int set_num(json_t *o, const char *key, double v) { return json_object_set_new(o, key, json_real(v)); }

static st_status mkdir_parents(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return ST_OK;
    *slash = 0;
    for (char *p = dir + 1; ; p++) {
        char c = *p;
        if (c == '/' || c == 0) {
            *p = 0;
            if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
                st_error_set(ST_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));
                return st_error_hint("choose another place with -o FILE");
            }
            *p = c;
            if (!c) break;
        }
    }
    return ST_OK;
}

st_status st_profile_save(const st_profile *p, const char *path) {
    st_status s = ST_OK;
    char tmp[4096];
    json_t *root = json_object(), *devs = json_array(), *links = json_array();
    if (!root || !devs || !links) { s = st_error_set(ST_ERR_NOMEM, "out of host memory building the profile"); goto done; }
    json_object_set_new(root, "strata_profile", json_integer(ST_PROFILE_VERSION));
    json_object_set_new(root, "host", json_string(p->host));
    json_object_set_new(root, "created", json_string(p->created));
    json_object_set_new(root, "strata_version", json_string(p->strata_version));
    for (int i = 0; i < p->n_devices; i++) {
        const struct st_profile_device *d = &p->devices[i];
        json_t *o = json_object(), *g = json_object(), *t = json_object();
        json_object_set_new(o, "kind", json_string(st_device_kind_name(d->kind)));
        json_object_set_new(o, "name", json_string(d->name));
        json_object_set_new(o, "uuid", json_string(d->uuid));
        json_object_set_new(o, "threads", json_integer(d->threads));
        set_num(o, "mem_bw_gbps", d->mem_bw_gbps);
        set_num(o, "read_gbps", d->read_gbps);
        set_num(o, "copy_gbps", d->copy_gbps);
        set_num(o, "triad_gbps", d->triad_gbps);
        for (int k = 0; k < ST_N_RATES; k++) set_num(g, rate_keys[k], d->gemv_gbps[k]);
        json_object_set_new(o, "gemv_gbps", g);
        set_num(o, "launch_us", d->launch_us);
        for (int k = 0; k < ST_N_RATES; k++) set_num(t, rate_keys[k], d->gemm_tflops[k]);
        json_object_set_new(o, "gemm_tflops", t);
        json_object_set_new(o, "method", json_string(d->method));
        json_object_set_new(o, "probe_bytes", json_integer((json_int_t)d->probe_bytes));
        json_array_append_new(devs, o);
    }
    for (int i = 0; i < p->n_links; i++) {
        const struct st_profile_link *l = &p->links[i];
        json_t *o = json_object();
        json_object_set_new(o, "from", json_string(l->from));
        json_object_set_new(o, "to", json_string(l->to));
        json_object_set_new(o, "type", json_string(st_link_type_name(l->type)));
        set_num(o, "latency_us", l->latency_us);
        set_num(o, "bw_gbps", l->bw_gbps);
        json_array_append_new(links, o);
    }
    json_object_set(root, "devices", devs);
    json_object_set(root, "links", links);

    s = mkdir_parents(path);
    if (s != ST_OK) goto done;
    /* write then rename, so a reader never sees half a profile */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (json_dump_file(root, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0) {
        s = st_error_set(ST_ERR_IO, "%s: cannot write the profile: %s", path, strerror(errno));
        st_error_hint("choose another place with -o FILE");
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        s = st_error_set(ST_ERR_IO, "%s: cannot replace the profile: %s", path, strerror(errno));
        unlink(tmp);
    }
done:
    json_decref(devs);
    json_decref(links);
    json_decref(root);
    return s;
}

/* ---- load ------------------------------------------------------------------ */

static st_status bad(const char *path, const char *where, const char *fmt, const char *what) {
    st_error_set(ST_ERR_FORMAT, "%s: %s: %s%s", path, where, fmt, what ? what : "");
    return st_error_hint(PROFILE_HINT);
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "something else";
}

/* Every key of o must be one of allowed[]; else an error naming it with a did-you-mean. */
static st_status check_keys(const char *path, const char *where, json_t *o, const char *const *allowed, size_t n) {
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        bool ok = false;
        for (size_t i = 0; i < n && !ok; i++) ok = strcmp(key, allowed[i]) == 0;
        if (ok) continue;
        const char *near = st_nearest_word(key, allowed, n);
        st_error_set(ST_ERR_FORMAT, "%s: %s: unknown key '%s'", path, where, key);
        if (near) return st_error_hint("did you mean '%s'? " PROFILE_HINT, near);
        return st_error_hint(PROFILE_HINT);
    }
    return ST_OK;
}

static st_status get_rate(const char *path, const char *where, json_t *o, const char *key, double *out) {
    json_t *v = json_object_get(o, key);
    char at[160];
    snprintf(at, sizeof at, "%s.%s", where, key);
    if (!v) { *out = 0; return ST_OK; }
    if (!json_is_number(v)) return bad(path, at, "expected a number >= 0, got ", json_type_name(v));
    double x = json_number_value(v);
    if (!isfinite(x) || x < 0) return bad(path, at, "expected a number >= 0, got a negative value", NULL);
    *out = x;
    return ST_OK;
}

static st_status get_string(const char *path, const char *where, json_t *o, const char *key, bool required,
                            char *out, size_t len) {
    json_t *v = json_object_get(o, key);
    char at[160];
    snprintf(at, sizeof at, "%s.%s", where, key);
    out[0] = 0;
    if (!v) return required ? bad(path, at, "missing (required)", NULL) : ST_OK;
    if (!json_is_string(v)) return bad(path, at, "expected a string, got ", json_type_name(v));
    if (strlen(json_string_value(v)) >= len) return bad(path, at, "string too long", NULL);
    snprintf(out, len, "%s", json_string_value(v));
    return ST_OK;
}

/* An optional object of rates by dtype name (each key optional: older profiles lack the quantized ones). */
static st_status get_rates(const char *path, const char *where, json_t *o, const char *key, double out[ST_N_RATES]) {
    char at[96];
    st_status s;
    json_t *g = json_object_get(o, key);
    if (!g) return ST_OK;
    snprintf(at, sizeof at, "%s.%s", where, key);
    if (!json_is_object(g))
        return bad(path, at, "expected an object of rates by weight dtype {f32, f16, bf16, q8_0, ..., q6_k}, got ",
                   json_type_name(g));
    if ((s = check_keys(path, at, g, rate_keys, ST_N_RATES)) != ST_OK) return s;
    for (int k = 0; k < ST_N_RATES; k++) {
        if ((s = get_rate(path, at, g, rate_keys[k], &out[k])) != ST_OK) return s;
    }
    return ST_OK;
}

static st_status parse_device(const char *path, int i, json_t *o, struct st_profile_device *d) {
    static const char *const keys[] = {"kind", "name", "uuid", "threads", "mem_bw_gbps", "read_gbps", "copy_gbps",
                                       "triad_gbps", "gemv_gbps", "launch_us", "gemm_tflops", "method",
                                       "probe_bytes"};
    char where[64], kind[16];
    st_status s;
    snprintf(where, sizeof where, "devices[%d]", i);
    if (!json_is_object(o)) return bad(path, where, "expected an object, got ", json_type_name(o));
    if ((s = check_keys(path, where, o, keys, ST_ARRAY_LEN(keys))) != ST_OK) return s;
    if ((s = get_string(path, where, o, "kind", true, kind, sizeof kind)) != ST_OK) return s;
    const struct st_backend_reg *b = st_backend_reg_by_name(kind);
    if (!b) {
        char kinds[128] = "";
        for (int k = 0; k < st_backend_reg_count(); k++) {
            size_t n = strlen(kinds);
            snprintf(kinds + n, sizeof kinds - n, "%s%s", k ? ", " : "", st_backend_reg_at(k)->name);
        }
        st_error_set(ST_ERR_FORMAT, "%s: %s.kind: '%s' is not a device kind (%s)", path, where, kind, kinds);
        return st_error_hint(PROFILE_HINT);
    }
    d->kind = b->kind;
    const bool gpu = !b->host_memory;   /* matched by uuid */
    if ((s = get_string(path, where, o, "name", true, d->name, sizeof d->name)) != ST_OK) return s;
    if ((s = get_string(path, where, o, "uuid", gpu, d->uuid, sizeof d->uuid)) != ST_OK) return s;
    if (gpu && !d->uuid[0]) {
        char what[96];
        snprintf(what, sizeof what, "a %s device needs its uuid (\"GPU-...\") to be matched", b->name);
        return bad(path, where, what, NULL);
    }
    if ((s = get_string(path, where, o, "method", false, d->method, sizeof d->method)) != ST_OK) return s;
    char at[80];
    json_t *t = json_object_get(o, "threads");
    if (t) {
        snprintf(at, sizeof at, "%s.threads", where);
        if (!json_is_integer(t)) return bad(path, at, "expected an integer >= 0, got ", json_type_name(t));
        if (json_integer_value(t) < 0 || json_integer_value(t) > 1 << 20) return bad(path, at, "out of range", NULL);
        d->threads = (int)json_integer_value(t);
    }
    json_t *pb = json_object_get(o, "probe_bytes");
    if (pb) {
        snprintf(at, sizeof at, "%s.probe_bytes", where);
        if (!json_is_integer(pb)) return bad(path, at, "expected an integer >= 0, got ", json_type_name(pb));
        if (json_integer_value(pb) < 0) return bad(path, at, "expected an integer >= 0, got a negative value", NULL);
        d->probe_bytes = (uint64_t)json_integer_value(pb);
    }
    if ((s = get_rate(path, where, o, "mem_bw_gbps", &d->mem_bw_gbps)) != ST_OK) return s;
    if ((s = get_rate(path, where, o, "read_gbps", &d->read_gbps)) != ST_OK) return s;
    if ((s = get_rate(path, where, o, "copy_gbps", &d->copy_gbps)) != ST_OK) return s;
    if ((s = get_rate(path, where, o, "triad_gbps", &d->triad_gbps)) != ST_OK) return s;
    if ((s = get_rate(path, where, o, "launch_us", &d->launch_us)) != ST_OK) return s;
    if ((s = get_rates(path, where, o, "gemv_gbps", d->gemv_gbps)) != ST_OK) return s;
    if ((s = get_rates(path, where, o, "gemm_tflops", d->gemm_tflops)) != ST_OK) return s;
    return ST_OK;
}

static st_status parse_link(const char *path, int i, json_t *o, struct st_profile_link *l) {
    static const char *const keys[] = {"from", "to", "type", "latency_us", "bw_gbps"};
    static const st_link_type types[] = {ST_LINK_T_LOCAL, ST_LINK_T_PEER, ST_LINK_T_NCCL, ST_LINK_T_HOST};
    char where[64], type[16];
    st_status s;
    snprintf(where, sizeof where, "links[%d]", i);
    if (!json_is_object(o)) return bad(path, where, "expected an object, got ", json_type_name(o));
    if ((s = check_keys(path, where, o, keys, ST_ARRAY_LEN(keys))) != ST_OK) return s;
    if ((s = get_string(path, where, o, "from", true, l->from, sizeof l->from)) != ST_OK) return s;
    if ((s = get_string(path, where, o, "to", true, l->to, sizeof l->to)) != ST_OK) return s;
    if ((s = get_string(path, where, o, "type", true, type, sizeof type)) != ST_OK) return s;
    bool known = false;
    for (size_t k = 0; k < ST_ARRAY_LEN(types) && !known; k++) {
        if (strcmp(type, st_link_type_name(types[k])) == 0) { l->type = types[k]; known = true; }
    }
    if (!known) {
        st_error_set(ST_ERR_FORMAT, "%s: %s.type: '%s' is not a link type (local, peer, nccl, host)", path, where, type);
        return st_error_hint(PROFILE_HINT);
    }
    if ((s = get_rate(path, where, o, "latency_us", &l->latency_us)) != ST_OK) return s;
    if ((s = get_rate(path, where, o, "bw_gbps", &l->bw_gbps)) != ST_OK) return s;
    return ST_OK;
}

st_status st_profile_load(const char *path, st_profile **out) {
    static const char *const keys[] = {"strata_profile", "host", "created", "strata_version", "devices", "links"};
    *out = NULL;
    st_status s = ST_OK;
    json_error_t jerr;
    st_profile *p = NULL;
    char *text = NULL;
    size_t len = 0;
    s = st_read_file(path, &text, &len);
    if (s != ST_OK) return s;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root) {
        st_error_set(ST_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", path, jerr.line, jerr.column, jerr.text);
        st_error_hint(PROFILE_HINT);
        return ST_ERR_FORMAT;
    }
    if (!json_is_object(root)) { s = bad(path, "top level", "expected an object, got ", json_type_name(root)); goto done; }
    if ((s = check_keys(path, "top level", root, keys, ST_ARRAY_LEN(keys))) != ST_OK) goto done;
    json_t *ver = json_object_get(root, "strata_profile");
    if (!ver) { s = bad(path, "strata_profile", "missing: not a strata profile", NULL); goto done; }
    if (!json_is_integer(ver)) { s = bad(path, "strata_profile", "expected an integer, got ", json_type_name(ver)); goto done; }
    if (json_integer_value(ver) != ST_PROFILE_VERSION) {
        st_error_set(ST_ERR_FORMAT, "%s: strata_profile: version %lld, this strata reads version %d", path,
                     (long long)json_integer_value(ver), ST_PROFILE_VERSION);
        s = st_error_hint(PROFILE_HINT);
        goto done;
    }
    json_t *devs = json_object_get(root, "devices");
    json_t *links = json_object_get(root, "links");
    if (!devs) { s = bad(path, "devices", "missing (required)", NULL); goto done; }
    if (!json_is_array(devs)) { s = bad(path, "devices", "expected an array, got ", json_type_name(devs)); goto done; }
    if (links && !json_is_array(links)) { s = bad(path, "links", "expected an array, got ", json_type_name(links)); goto done; }

    p = st_calloc(1, sizeof *p, "profile");
    if (!p) { s = ST_ERR_NOMEM; goto done; }
    if ((s = get_string(path, "top level", root, "host", false, p->host, sizeof p->host)) != ST_OK) goto done;
    if ((s = get_string(path, "top level", root, "created", false, p->created, sizeof p->created)) != ST_OK) goto done;
    if ((s = get_string(path, "top level", root, "strata_version", false, p->strata_version, sizeof p->strata_version)) != ST_OK) goto done;
    size_t nd = json_array_size(devs), nl = links ? json_array_size(links) : 0;
    p->devices = st_calloc(nd, sizeof *p->devices, "profile devices");
    p->links = st_calloc(nl, sizeof *p->links, "profile links");
    if (!p->devices || !p->links) { s = ST_ERR_NOMEM; goto done; }
    for (size_t i = 0; i < nd; i++) {
        if ((s = parse_device(path, (int)i, json_array_get(devs, i), &p->devices[i])) != ST_OK) goto done;
        p->n_devices++;
    }
    for (size_t i = 0; i < nl; i++) {
        if ((s = parse_link(path, (int)i, json_array_get(links, i), &p->links[i])) != ST_OK) goto done;
        p->n_links++;
    }
    *out = p;
    p = NULL;
done:
    st_profile_free(p);
    json_decref(root);
    return s;
}
