/* GGUF v2/v3 header reader over a read-only mapping (formats.md §1), the
 * metadata accessors, and the GGUF → st_model loader (§2). Nothing is trusted:
 * every count is bounded by the bytes left in the file before it sizes an
 * allocation, and every offset is checked before it is dereferenced. */
#include "model/model-impl.h"

#include <stdlib.h>
#include <string.h>

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_KEY_MAX 65535

static const char *gguf_type_name(uint32_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                  "string", "array", "u64", "i64", "f64"};
    return t < ST_ARRAY_LEN(names) ? names[t] : "invalid";
}

static uint64_t gguf_scalar_size(uint32_t t) {
    switch (t) {
    case ST_GGUF_U8: case ST_GGUF_I8: case ST_GGUF_BOOL: return 1;
    case ST_GGUF_U16: case ST_GGUF_I16: return 2;
    case ST_GGUF_U32: case ST_GGUF_I32: case ST_GGUF_F32: return 4;
    case ST_GGUF_U64: case ST_GGUF_I64: case ST_GGUF_F64: return 8;
    default: return 0;
    }
}

/* ---- cursor ---------------------------------------------------------------- */

struct rd {
    const char *path;
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
};

static inline uint64_t rd_left(const struct rd *r) { return r->size - r->pos; }

static st_status rd_fail(const struct rd *r, uint64_t at, const char *what) {
    st_error_set(ST_ERR_FORMAT, "%s: byte offset %llu: %s (file is %llu bytes)", r->path,
                 (unsigned long long)at, what, (unsigned long long)r->size);
    return st_error_hint("the file is truncated or not a GGUF file; download or convert it again");
}

static st_status rd_fail_limit(const struct rd *r, uint64_t at, const char *what) {
    st_error_set(ST_ERR_FORMAT, "%s: byte offset %llu: %s", r->path, (unsigned long long)at, what);
    return st_error_hint("real models stay far below this limit (docs/limits.md); the file is corrupt");
}

static st_status rd_need(const struct rd *r, uint64_t n, const char *what) {
    if (n > rd_left(r)) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s needs %llu bytes but only %llu remain", what,
                 (unsigned long long)n, (unsigned long long)rd_left(r));
        return rd_fail(r, r->pos, buf);
    }
    return ST_OK;
}

static inline uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static st_status rd_u32(struct rd *r, uint32_t *v, const char *what) {
    st_status s = rd_need(r, 4, what);
    if (s) return s;
    *v = le32(r->p + r->pos);
    r->pos += 4;
    return ST_OK;
}

static st_status rd_u64(struct rd *r, uint64_t *v, const char *what) {
    st_status s = rd_need(r, 8, what);
    if (s) return s;
    *v = le64(r->p + r->pos);
    r->pos += 8;
    return ST_OK;
}

/* A string: u64 length then bytes. *off = absolute offset of the bytes. */
static st_status rd_str(struct rd *r, uint64_t *off, uint64_t *len, const char *what) {
    uint64_t at = r->pos;
    st_status s = rd_u64(r, len, what);
    if (s) return s;
    if (*len > rd_left(r)) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s has length %llu but only %llu bytes remain", what,
                 (unsigned long long)*len, (unsigned long long)rd_left(r));
        return rd_fail(r, at, buf);
    }
    *off = r->pos;
    r->pos += *len;
    return ST_OK;
}

/* ---- parse ----------------------------------------------------------------- */

void st_gguf_free(struct st_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_offs);
    }
    free(g->kv);
    free(g->ti);
    free(g->path);
    free(g);
}

static st_status parse_kv(struct rd *r, struct st_gguf *g, struct st_gguf_kv *kv) {
    st_status s;
    uint64_t at = r->pos, koff, klen;
    kv->key_off = at;
    if ((s = rd_str(r, &koff, &klen, "metadata key"))) return s;
    if (klen == 0 || klen > GGUF_KEY_MAX) {
        char buf[128];
        snprintf(buf, sizeof buf, "metadata key length %llu is not in 1..%d", (unsigned long long)klen, GGUF_KEY_MAX);
        return rd_fail(r, at, buf);
    }
    kv->key = st_malloc(klen + 1, "GGUF key");
    if (!kv->key) return ST_ERR_NOMEM;
    memcpy(kv->key, r->p + koff, klen);
    kv->key[klen] = 0;
    if (strlen(kv->key) != klen) return rd_fail(r, koff, "metadata key contains a NUL byte");
    uint32_t type;
    uint64_t tpos = r->pos;
    if ((s = rd_u32(r, &type, "metadata value type"))) return s;
    if (type > ST_GGUF_F64) {
        char buf[256];
        snprintf(buf, sizeof buf, "key '%s' has unknown value type %u (valid: 0..12)", kv->key, type);
        return rd_fail(r, tpos, buf);
    }
    kv->type = (st_gguf_type)type;
    kv->val_off = r->pos;
    if (type == ST_GGUF_STRING) {
        uint64_t off, len;
        char what[128];
        snprintf(what, sizeof what, "string value of key '%.80s'", kv->key);
        return rd_str(r, &off, &len, what);
    }
    if (type == ST_GGUF_BOOL) {
        if ((s = rd_need(r, 1, "bool value"))) return s;
        if (r->p[r->pos] > 1) {
            char buf[160];
            snprintf(buf, sizeof buf, "key '%.80s' is a bool with value %u (must be 0 or 1)", kv->key, r->p[r->pos]);
            return rd_fail(r, r->pos, buf);
        }
        r->pos += 1;
        return ST_OK;
    }
    if (type != ST_GGUF_ARRAY) {
        char what[128];
        snprintf(what, sizeof what, "%s value of key '%.80s'", gguf_type_name(type), kv->key);
        if ((s = rd_need(r, gguf_scalar_size(type), what))) return s;
        r->pos += gguf_scalar_size(type);
        return ST_OK;
    }
    uint32_t et;
    uint64_t n, epos = r->pos;
    if ((s = rd_u32(r, &et, "array element type"))) return s;
    if (et == ST_GGUF_ARRAY) {
        char buf[160];
        snprintf(buf, sizeof buf, "key '%.80s' is an array of arrays, which GGUF readers do not support", kv->key);
        return rd_fail(r, epos, buf);
    }
    if (et > ST_GGUF_F64) {
        char buf[160];
        snprintf(buf, sizeof buf, "key '%.80s' is an array of unknown type %u", kv->key, et);
        return rd_fail(r, epos, buf);
    }
    uint64_t npos = r->pos;
    if ((s = rd_u64(r, &n, "array length"))) return s;
    kv->arr_type = (st_gguf_type)et;
    kv->arr_n = n;
    kv->val_off = r->pos;
    uint64_t min_elem = et == ST_GGUF_STRING ? 8 : gguf_scalar_size(et);
    if (n > rd_left(r) / min_elem) {
        char buf[200];
        snprintf(buf, sizeof buf, "array '%.80s' claims %llu %s elements, more than the %llu bytes left can hold",
                 kv->key, (unsigned long long)n, gguf_type_name(et), (unsigned long long)rd_left(r));
        return rd_fail(r, npos, buf);
    }
    if (et == ST_GGUF_STRING) {
        kv->str_offs = st_malloc((n ? n : 1) * sizeof(uint64_t), "GGUF string array index");
        if (!kv->str_offs) return ST_ERR_NOMEM;
        char what[128];
        snprintf(what, sizeof what, "element of string array '%.80s'", kv->key);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t off, len;
            kv->str_offs[i] = r->pos;
            if ((s = rd_str(r, &off, &len, what))) return s;
        }
        return ST_OK;
    }
    if (et == ST_GGUF_BOOL) {
        for (uint64_t i = 0; i < n; i++) {
            if (r->p[r->pos + i] > 1) {
                char buf[160];
                snprintf(buf, sizeof buf, "bool array '%.80s' element %llu is %u (must be 0 or 1)", kv->key,
                         (unsigned long long)i, r->p[r->pos + i]);
                return rd_fail(r, r->pos + i, buf);
            }
        }
    }
    r->pos += n * min_elem;
    return ST_OK;
}

static st_status tensor_fail(const struct rd *r, uint64_t at, const char *name, uint64_t name_len, const char *what) {
    char buf[400];
    snprintf(buf, sizeof buf, "tensor '%.*s': %s", (int)ST_MIN(name_len, 120), name, what);
    return rd_fail(r, at, buf);
}

static st_status parse_tensor_info(struct rd *r, struct st_gguf_tensor_info *ti) {
    st_status s;
    ti->info_off = r->pos;
    if ((s = rd_str(r, &ti->name_off, &ti->name_len, "tensor name"))) return s;
    const char *name = (const char *)r->p + ti->name_off;
    if (ti->name_len == 0) return rd_fail(r, ti->info_off, "tensor name is empty");
    if (ti->name_len >= ST_TENSOR_NAME_MAX) {
        return tensor_fail(r, ti->info_off, name, ti->name_len, "name is longer than 95 bytes");
    }
    if (memchr(name, 0, ti->name_len)) return tensor_fail(r, ti->info_off, name, ti->name_len, "name contains a NUL byte");
    uint64_t dpos = r->pos;
    if ((s = rd_u32(r, &ti->n_dims, "tensor n_dims"))) return s;
    if (ti->n_dims < 1 || ti->n_dims > 4) {
        char buf[64];
        snprintf(buf, sizeof buf, "n_dims %u is not in 1..4", ti->n_dims);
        return tensor_fail(r, dpos, name, ti->name_len, buf);
    }
    uint64_t numel = 1;
    for (int d = 0; d < 4; d++) ti->ne[d] = 1;
    for (uint32_t d = 0; d < ti->n_dims; d++) {
        uint64_t v, at = r->pos;
        if ((s = rd_u64(r, &v, "tensor dimension"))) return s;
        if (v > (uint64_t)INT64_MAX || st_mul_overflow_u64(numel, v, &numel) || numel > (uint64_t)INT64_MAX) {
            char buf[96];
            snprintf(buf, sizeof buf, "dimension %u = %llu makes the element count overflow", d, (unsigned long long)v);
            return tensor_fail(r, at, name, ti->name_len, buf);
        }
        ti->ne[d] = (int64_t)v;
    }
    uint32_t code;
    uint64_t tpos = r->pos;
    if ((s = rd_u32(r, &code, "tensor type"))) return s;
    const char *known = NULL;
    st_status ds = st_dtype_from_ggml(code, &ti->dtype, &known);
    if (ds == ST_ERR_UNSUPPORTED) {
        st_error_set(ST_ERR_UNSUPPORTED, "%s: byte offset %llu: tensor '%.*s' has type %s (ggml type %u), which strata cannot read",
                     r->path, (unsigned long long)tpos, (int)ti->name_len, name, known, code);
        return st_error_hint("supported: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl q4_k q5_k q6_k; "
                             "re-quantize the model with one of these");
    }
    if (ds) {
        char buf[96];
        snprintf(buf, sizeof buf, "unknown ggml type code %u", code);
        return tensor_fail(r, tpos, name, ti->name_len, buf);
    }
    int64_t be = st_dtype_block_elems(ti->dtype);
    if (ti->ne[0] % be) {
        char buf[160];
        snprintf(buf, sizeof buf, "row length %lld is not a multiple of the %s block size %lld",
                 (long long)ti->ne[0], st_dtype_name(ti->dtype), (long long)be);
        return tensor_fail(r, dpos, name, ti->name_len, buf);
    }
    uint64_t rows = numel / (ti->ne[0] ? (uint64_t)ti->ne[0] : 1);
    if (ti->ne[0] == 0) rows = 0;
    uint64_t bytes;
    if (st_mul_overflow_u64(rows, st_dtype_row_bytes(ti->dtype, ti->ne[0]), &bytes)) {
        return tensor_fail(r, dpos, name, ti->name_len, "byte size overflows");
    }
    ti->bytes = bytes;
    if ((s = rd_u64(r, &ti->offset, "tensor data offset"))) return s;
    return ST_OK;
}

/* Duplicate keys and tensor names, found by sorting (a hostile file may hold
 * millions of records). */
static _Thread_local const struct st_gguf *sort_ctx; /* qsort has no context argument in C11 */

static int cmp_key(const void *a, const void *b) {
    return strcmp(sort_ctx->kv[*(const int64_t *)a].key, sort_ctx->kv[*(const int64_t *)b].key);
}

static int cmp_tname(const void *a, const void *b) {
    const struct st_gguf_tensor_info *x = &sort_ctx->ti[*(const int64_t *)a], *y = &sort_ctx->ti[*(const int64_t *)b];
    int c = memcmp(sort_ctx->base + x->name_off, sort_ctx->base + y->name_off, ST_MIN(x->name_len, y->name_len));
    if (c) return c;
    return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

static st_status sorted_index(const struct st_gguf *g, int64_t n, int (*cmp)(const void *, const void *), int64_t **out) {
    int64_t *idx = st_malloc(sizeof(int64_t) * (size_t)(n ? n : 1), "GGUF sort index");
    if (!idx) return ST_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    sort_ctx = g;
    qsort(idx, (size_t)n, sizeof *idx, cmp);
    *out = idx;
    return ST_OK;
}

static st_status check_dup_keys(const struct rd *r, const struct st_gguf *g) {
    int64_t *idx;
    st_status s = sorted_index(g, g->n_kv, cmp_key, &idx);
    if (s) return s;
    for (int64_t i = 1; i < g->n_kv; i++) {
        const struct st_gguf_kv *a = &g->kv[idx[i - 1]], *b = &g->kv[idx[i]];
        if (!strcmp(a->key, b->key)) {
            const struct st_gguf_kv *later = a->key_off > b->key_off ? a : b;
            char buf[160];
            snprintf(buf, sizeof buf, "duplicate metadata key '%.100s'", later->key);
            s = rd_fail(r, later->key_off, buf);
            break;
        }
    }
    free(idx);
    return s;
}

static st_status check_dup_tensors(const struct rd *r, const struct st_gguf *g) {
    int64_t *idx;
    st_status s = sorted_index(g, g->n_tensors, cmp_tname, &idx);
    if (s) return s;
    for (int64_t i = 1; i < g->n_tensors; i++) {
        if (cmp_tname(&idx[i - 1], &idx[i]) == 0) {
            const struct st_gguf_tensor_info *t = &g->ti[ST_MAX(idx[i - 1], idx[i])];
            s = tensor_fail(r, t->info_off, (const char *)g->base + t->name_off, t->name_len, "duplicate tensor name");
            break;
        }
    }
    free(idx);
    return s;
}

st_status st_gguf_parse(const char *path, const void *map, uint64_t size, struct st_gguf **out) {
    *out = NULL;
    st_status s = ST_OK;
    struct st_gguf *g = st_calloc(1, sizeof *g, "GGUF header");
    if (!g) return ST_ERR_NOMEM;
    g->path = st_strdup(path, "a path");
    if (!g->path) { s = ST_ERR_NOMEM; goto fail; }
    g->base = map;
    g->size = size;
    struct rd r = {.path = path, .p = map, .size = size, .pos = 0};

    if (size < 4 || memcmp(map, "GGUF", 4) != 0) {
        s = rd_fail(&r, 0, "missing the GGUF magic bytes 'GGUF'");
        goto fail;
    }
    r.pos = 4;
    if ((s = rd_u32(&r, &g->version, "version"))) goto fail;
    if ((g->version & 0xffff) == 0) {
        s = rd_fail(&r, 4, "version field looks byte-swapped (big-endian GGUF is not supported)");
        goto fail;
    }
    if (g->version != 2 && g->version != 3) {
        char buf[96];
        snprintf(buf, sizeof buf, "GGUF version %u is not supported (strata reads versions 2 and 3)", g->version);
        s = rd_fail(&r, 4, buf);
        goto fail;
    }
    uint64_t n_tensors, n_kv;
    if ((s = rd_u64(&r, &n_tensors, "tensor count"))) goto fail;
    if ((s = rd_u64(&r, &n_kv, "metadata count"))) goto fail;
    /* a KV record is at least 8 (key length) + 1 + 4 (type) + 1 bytes; a
     * tensor info at least 8 + 1 + 4 + 8 + 4 + 8 */
    if (n_kv > rd_left(&r) / 14) {
        char buf[160];
        snprintf(buf, sizeof buf, "metadata count %llu cannot fit in the %llu bytes that follow",
                 (unsigned long long)n_kv, (unsigned long long)rd_left(&r));
        s = rd_fail(&r, 16, buf);
        goto fail;
    }
    if (n_tensors > rd_left(&r) / 33) {
        char buf[160];
        snprintf(buf, sizeof buf, "tensor count %llu cannot fit in the %llu bytes that follow",
                 (unsigned long long)n_tensors, (unsigned long long)rd_left(&r));
        s = rd_fail(&r, 8, buf);
        goto fail;
    }
    if (n_kv > ST_MODEL_MAX_KV) {
        char buf[160];
        snprintf(buf, sizeof buf, "metadata count %llu is more than the %d records strata reads",
                 (unsigned long long)n_kv, ST_MODEL_MAX_KV);
        s = rd_fail_limit(&r, 16, buf);
        goto fail;
    }
    if (n_tensors > ST_MODEL_MAX_TENSORS) {
        char buf[160];
        snprintf(buf, sizeof buf, "tensor count %llu is more than the %d tensors strata reads",
                 (unsigned long long)n_tensors, ST_MODEL_MAX_TENSORS);
        s = rd_fail_limit(&r, 8, buf);
        goto fail;
    }
    g->kv = st_calloc(n_kv ? n_kv : 1, sizeof *g->kv, "GGUF metadata");
    if (!g->kv) { s = ST_ERR_NOMEM; goto fail; }
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1;
        if ((s = parse_kv(&r, g, &g->kv[i]))) goto fail;
    }
    if ((s = check_dup_keys(&r, g))) goto fail;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t ai = st_gguf_find(g, "general.alignment");
    if (ai >= 0) {
        const struct st_gguf_kv *kv = &g->kv[ai];
        if (kv->type != ST_GGUF_U32) {
            char buf[128];
            snprintf(buf, sizeof buf, "general.alignment has type %s; it must be u32", gguf_type_name(kv->type));
            s = rd_fail(&r, kv->key_off, buf);
            goto fail;
        }
        uint32_t a = le32(g->base + kv->val_off);
        if (a == 0 || (a & (a - 1)) || a % 8) {
            char buf[128];
            snprintf(buf, sizeof buf, "general.alignment %u is not a power of two and a multiple of 8", a);
            s = rd_fail(&r, kv->val_off, buf);
            goto fail;
        }
        g->alignment = a;
    }

    g->ti = st_calloc(n_tensors ? n_tensors : 1, sizeof *g->ti, "GGUF tensor infos");
    if (!g->ti) { s = ST_ERR_NOMEM; goto fail; }
    g->n_tensors = (int64_t)n_tensors;
    for (uint64_t i = 0; i < n_tensors; i++) {
        if ((s = parse_tensor_info(&r, &g->ti[i]))) goto fail;
    }
    uint64_t A = g->alignment;
    uint64_t start = r.pos + (A - r.pos % A) % A;
    g->data_start = n_tensors ? start : r.pos;
    if (n_tensors && start > size) {
        s = rd_fail(&r, r.pos, "file ends before the tensor data section");
        goto fail;
    }
    if ((s = check_dup_tensors(&r, g))) goto fail;
    uint64_t data_len = size - g->data_start;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        struct st_gguf_tensor_info *ti = &g->ti[i];
        const char *name = (const char *)g->base + ti->name_off;
        char buf[256];
        if (ti->offset % A) {
            snprintf(buf, sizeof buf, "data offset %llu is not a multiple of the alignment %llu",
                     (unsigned long long)ti->offset, (unsigned long long)A);
            s = tensor_fail(&r, ti->info_off, name, ti->name_len, buf);
            goto fail;
        }
        if (ti->offset > data_len || ti->bytes > data_len - ti->offset) {
            snprintf(buf, sizeof buf, "data [%llu, +%llu) at absolute offset %llu runs past the end of the file",
                     (unsigned long long)ti->offset, (unsigned long long)ti->bytes,
                     (unsigned long long)(g->data_start + ti->offset));
            s = tensor_fail(&r, ti->info_off, name, ti->name_len, buf);
            st_error_prefix("truncated file");
            goto fail;
        }
    }
    *out = g;
    return ST_OK;
fail:
    st_gguf_free(g);
    return s;
}

/* ---- accessors ------------------------------------------------------------- */

int64_t st_gguf_find(const struct st_gguf *g, const char *key) {
    if (!g || !key) return -1;
    for (int64_t i = 0; i < g->n_kv; i++) {
        if (!strcmp(g->kv[i].key, key)) return i;
    }
    return -1;
}

int64_t st_gguf_n_kv(const struct st_gguf *g) { return g ? g->n_kv : 0; }

const char *st_gguf_key(const struct st_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

st_gguf_type st_gguf_kv_type(const struct st_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv ? g->kv[i].type : ST_GGUF_ARRAY;
}

static st_status kv_lookup(const struct st_gguf *g, const char *key, const struct st_gguf_kv **kv) {
    int64_t i = st_gguf_find(g, key);
    if (i < 0) {
        st_error_set(ST_ERR_FORMAT, "%s: metadata key '%s' is missing", g ? g->path : "(no GGUF)", key);
        return st_error_hint("the file was written by a converter that does not set '%s'; convert the model again with a current llama.cpp", key);
    }
    *kv = &g->kv[i];
    return ST_OK;
}

static st_status type_mismatch(const struct st_gguf *g, const struct st_gguf_kv *kv, const char *want) {
    st_error_set(ST_ERR_FORMAT, "%s: byte offset %llu: metadata key '%s' has type %s, expected %s", g->path,
                 (unsigned long long)kv->key_off, kv->key,
                 kv->type == ST_GGUF_ARRAY ? "array" : gguf_type_name(kv->type), want);
    return st_error_hint("the file's metadata does not follow the GGUF conventions for this key");
}

/* Reads a scalar of type t at p as int64/double; false when t is not numeric. */
static bool scalar_int(st_gguf_type t, const uint8_t *p, int64_t *out, bool *too_big) {
    *too_big = false;
    switch (t) {
    case ST_GGUF_U8: *out = p[0]; return true;
    case ST_GGUF_I8: *out = (int8_t)p[0]; return true;
    case ST_GGUF_U16: *out = (uint16_t)(p[0] | p[1] << 8); return true;
    case ST_GGUF_I16: *out = (int16_t)(uint16_t)(p[0] | p[1] << 8); return true;
    case ST_GGUF_U32: *out = le32(p); return true;
    case ST_GGUF_I32: *out = (int32_t)le32(p); return true;
    case ST_GGUF_U64: { uint64_t v = le64(p); *too_big = v > (uint64_t)INT64_MAX; *out = (int64_t)v; return true; }
    case ST_GGUF_I64: *out = (int64_t)le64(p); return true;
    default: return false;
    }
}

static bool scalar_float(st_gguf_type t, const uint8_t *p, double *out) {
    if (t == ST_GGUF_F32) { uint32_t u = le32(p); float f; memcpy(&f, &u, 4); *out = f; return true; }
    if (t == ST_GGUF_F64) { uint64_t u = le64(p); double d; memcpy(&d, &u, 8); *out = d; return true; }
    int64_t v; bool big;
    if (scalar_int(t, p, &v, &big)) { *out = big ? (double)(uint64_t)v : (double)v; return true; }
    return false;
}

st_status st_gguf_get_int(const struct st_gguf *g, const char *key, int64_t *out) {
    const struct st_gguf_kv *kv = NULL;
    st_status s = kv_lookup(g, key, &kv);
    if (s) return s;
    bool big;
    if (!scalar_int(kv->type, g->base + kv->val_off, out, &big)) return type_mismatch(g, kv, "an integer");
    if (big) {
        st_error_set(ST_ERR_FORMAT, "%s: byte offset %llu: metadata key '%s' = %llu does not fit in int64", g->path,
                     (unsigned long long)kv->val_off, key, (unsigned long long)*out);
        return st_error_hint("the value is corrupt");
    }
    return ST_OK;
}

st_status st_gguf_get_float(const struct st_gguf *g, const char *key, double *out) {
    const struct st_gguf_kv *kv = NULL;
    st_status s = kv_lookup(g, key, &kv);
    if (s) return s;
    if (!scalar_float(kv->type, g->base + kv->val_off, out)) return type_mismatch(g, kv, "a number");
    return ST_OK;
}

st_status st_gguf_get_bool(const struct st_gguf *g, const char *key, bool *out) {
    const struct st_gguf_kv *kv = NULL;
    st_status s = kv_lookup(g, key, &kv);
    if (s) return s;
    if (kv->type != ST_GGUF_BOOL) return type_mismatch(g, kv, "bool");
    *out = g->base[kv->val_off] != 0;
    return ST_OK;
}

st_status st_gguf_get_str(const struct st_gguf *g, const char *key, struct st_gguf_str *out) {
    const struct st_gguf_kv *kv = NULL;
    st_status s = kv_lookup(g, key, &kv);
    if (s) return s;
    if (kv->type != ST_GGUF_STRING) return type_mismatch(g, kv, "string");
    out->len = le64(g->base + kv->val_off);
    out->ptr = (const char *)g->base + kv->val_off + 8;
    return ST_OK;
}

st_status st_gguf_get_arr(const struct st_gguf *g, const char *key, st_gguf_type *elem_type, uint64_t *n) {
    const struct st_gguf_kv *kv = NULL;
    st_status s = kv_lookup(g, key, &kv);
    if (s) return s;
    if (kv->type != ST_GGUF_ARRAY) return type_mismatch(g, kv, "array");
    if (elem_type) *elem_type = kv->arr_type;
    if (n) *n = kv->arr_n;
    return ST_OK;
}

static st_status arr_elem(const struct st_gguf *g, const char *key, uint64_t i, const struct st_gguf_kv **kv) {
    st_status s = kv_lookup(g, key, kv);
    if (s) return s;
    if ((*kv)->type != ST_GGUF_ARRAY) return type_mismatch(g, *kv, "array");
    if (i >= (*kv)->arr_n) {
        return st_error_set(ST_ERR_FORMAT, "%s: array '%s' has %llu elements; index %llu is out of range", g->path, key,
                            (unsigned long long)(*kv)->arr_n, (unsigned long long)i);
    }
    return ST_OK;
}

static st_status arr_type_mismatch(const struct st_gguf *g, const struct st_gguf_kv *kv, const char *want) {
    st_error_set(ST_ERR_FORMAT, "%s: byte offset %llu: metadata array '%s' holds %s elements, expected %s", g->path,
                 (unsigned long long)kv->key_off, kv->key, gguf_type_name(kv->arr_type), want);
    return st_error_hint("the file's metadata does not follow the GGUF conventions for this key");
}

st_status st_gguf_arr_str(const struct st_gguf *g, const char *key, uint64_t i, struct st_gguf_str *out) {
    const struct st_gguf_kv *kv = NULL;
    st_status s = arr_elem(g, key, i, &kv);
    if (s) return s;
    if (kv->arr_type != ST_GGUF_STRING) return arr_type_mismatch(g, kv, "strings");
    uint64_t off = kv->str_offs[i];
    out->len = le64(g->base + off);
    out->ptr = (const char *)g->base + off + 8;
    return ST_OK;
}

st_status st_gguf_arr_int(const struct st_gguf *g, const char *key, uint64_t i, int64_t *out) {
    const struct st_gguf_kv *kv = NULL;
    st_status s = arr_elem(g, key, i, &kv);
    if (s) return s;
    bool big;
    if (kv->arr_type == ST_GGUF_BOOL || kv->arr_type == ST_GGUF_STRING ||
        !scalar_int(kv->arr_type, g->base + kv->val_off + i * gguf_scalar_size(kv->arr_type), out, &big)) {
        return arr_type_mismatch(g, kv, "integers");
    }
    if (big) return st_error_set(ST_ERR_FORMAT, "%s: array '%s' element %llu does not fit in int64", g->path, key, (unsigned long long)i);
    return ST_OK;
}

st_status st_gguf_arr_float(const struct st_gguf *g, const char *key, uint64_t i, double *out) {
    const struct st_gguf_kv *kv = NULL;
    st_status s = arr_elem(g, key, i, &kv);
    if (s) return s;
    if (kv->arr_type == ST_GGUF_BOOL || kv->arr_type == ST_GGUF_STRING ||
        !scalar_float(kv->arr_type, g->base + kv->val_off + i * gguf_scalar_size(kv->arr_type), out)) {
        return arr_type_mismatch(g, kv, "numbers");
    }
    return ST_OK;
}

/* ---- GGUF → model ---------------------------------------------------------- */

static st_status get_int_opt(const struct st_gguf *g, const char *key, int64_t *out, bool *found) {
    *found = st_gguf_find(g, key) >= 0;
    return *found ? st_gguf_get_int(g, key, out) : ST_OK;
}

static st_status get_req_int(const struct st_gguf *g, const char *arch, const char *suffix, int64_t *out) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    st_status s = st_gguf_get_int(g, key, out);
    if (s) return s;
    if (*out <= 0 || *out > ((int64_t)1 << 32)) {
        st_error_set(ST_ERR_FORMAT, "%s: metadata key '%s' = %lld is out of range", g->path, key, (long long)*out);
        return st_error_hint("the value must be a positive count");
    }
    return ST_OK;
}

st_status st_model_load_gguf(st_model *m) {
    st_status s;
    int fi;
    if ((s = st_model_map_file(m, m->path, &fi))) return s;
    const struct st_model_file *f = &m->files[fi];
    if ((s = st_gguf_parse(f->path, f->map, f->size, &m->gguf))) return s;
    struct st_gguf *g = m->gguf;

    struct st_gguf_str as;
    if ((s = st_gguf_get_str(g, "general.architecture", &as))) return s;
    char arch[32];
    if (as.len >= sizeof arch) as.len = sizeof arch - 1;
    memcpy(arch, as.ptr, as.len);
    arch[as.len] = 0;
    struct st_hparams *hp = &m->hp;
    if (!strcmp(arch, "llama")) { hp->arch = ST_ARCH_LLAMA; hp->rope_layout = ST_ROPE_NORM; }
    else if (!strcmp(arch, "qwen2")) { hp->arch = ST_ARCH_QWEN2; hp->rope_layout = ST_ROPE_NEOX; }
    else if (!strcmp(arch, "qwen3")) { hp->arch = ST_ARCH_QWEN3; hp->rope_layout = ST_ROPE_NEOX; }
    else {
        st_error_set(ST_ERR_UNSUPPORTED, "%s: general.architecture is '%s'; strata runs llama, qwen2 and qwen3", g->path, arch);
        return st_error_hint("use a Llama, Qwen2/2.5 or Qwen3 (dense) model");
    }

    bool found;
    if ((s = get_req_int(g, arch, "embedding_length", &hp->n_embd))) return s;
    if ((s = get_req_int(g, arch, "block_count", &hp->n_layer))) return s;
    if ((s = get_req_int(g, arch, "attention.head_count", &hp->n_head))) return s;
    char key[160];
    snprintf(key, sizeof key, "%s.feed_forward_length", arch);
    if (st_gguf_find(g, key) >= 0 && st_gguf_kv_type(g, st_gguf_find(g, key)) == ST_GGUF_ARRAY) {
        st_error_set(ST_ERR_UNSUPPORTED, "%s: '%s' is a per-layer array; strata needs one MLP width for all layers", g->path, key);
        return st_error_hint("llama, qwen2 and qwen3 files store a single value; the file may be of another architecture");
    }
    if ((s = get_req_int(g, arch, "feed_forward_length", &hp->n_ff))) return s;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    hp->n_head_kv = hp->n_head;
    if ((s = get_int_opt(g, key, &hp->n_head_kv, &found))) return s;
    snprintf(key, sizeof key, "%s.attention.key_length", arch);
    hp->head_dim = hp->n_embd / hp->n_head;
    if ((s = get_int_opt(g, key, &hp->head_dim, &found))) return s;
    if (!found && (hp->n_embd % hp->n_head || hp->head_dim % 2)) {
        st_error_set(ST_ERR_FORMAT, "%s: without %s the head dimension is %s.embedding_length %lld / "
                     "%s.attention.head_count %lld, which is not a whole even number", g->path, key, arch,
                     (long long)hp->n_embd, arch, (long long)hp->n_head);
        return st_error_hint("one of the two counts is corrupt; convert the model again");
    }
    snprintf(key, sizeof key, "%s.context_length", arch);
    hp->n_ctx_train = 0;
    if ((s = get_int_opt(g, key, &hp->n_ctx_train, &found))) return s;
    double v;
    char where[400];
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    snprintf(where, sizeof where, "%s: metadata key '%s'", g->path, key);
    if ((s = st_gguf_get_float(g, key, &v)) ||
        (s = st_model_hp_float(where, v, ST_MODEL_MIN_RMS_EPS, false, ST_MODEL_MAX_RMS_EPS, "GGUF metadata")))
        return s;
    hp->rms_eps = (float)v;
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    snprintf(where, sizeof where, "%s: metadata key '%s'", g->path, key);
    hp->rope_theta = 10000.0f;
    if (st_gguf_find(g, key) >= 0) {
        if ((s = st_gguf_get_float(g, key, &v)) ||
            (s = st_model_hp_float(where, v, 1.0, true, ST_MODEL_MAX_ROPE_THETA, "GGUF metadata")))
            return s;
        hp->rope_theta = (float)v;
    }
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    hp->rope_scaling = ST_ROPE_SCALING_NONE;
    if (st_gguf_find(g, key) >= 0) {
        struct st_gguf_str st;
        if ((s = st_gguf_get_str(g, key, &st))) return s;
        if (st.len == 6 && !memcmp(st.ptr, "linear", 6)) hp->rope_scaling = ST_ROPE_SCALING_LINEAR;
        else if (st.len == 6 && !memcmp(st.ptr, "llama3", 6)) hp->rope_scaling = ST_ROPE_SCALING_LLAMA3;
        else if (!(st.len == 4 && !memcmp(st.ptr, "none", 4))) {
            st_error_set(ST_ERR_UNSUPPORTED, "%s: %s is '%.*s'; strata supports none, linear and llama3", g->path, key,
                         (int)ST_MIN(st.len, 40), st.ptr);
            return st_error_hint("use a model without YaRN/dynamic RoPE scaling");
        }
    }
    snprintf(key, sizeof key, "%s.rope.scaling.factor", arch);
    snprintf(where, sizeof where, "%s: metadata key '%s'", g->path, key);
    if (st_gguf_find(g, key) >= 0) {
        if ((s = st_gguf_get_float(g, key, &v)) ||
            (s = st_model_hp_float(where, v, 0, true, ST_MODEL_MAX_ROPE_FACTOR, "GGUF metadata")))
            return s;
        hp->rope_factor = (float)v;
    }
    snprintf(key, sizeof key, "%s.rope.scaling.original_context_length", arch);
    if ((s = get_int_opt(g, key, &hp->rope_orig_ctx, &found))) return s;
    if (hp->rope_scaling == ST_ROPE_SCALING_LINEAR && !(hp->rope_factor > 0)) {
        st_error_set(ST_ERR_FORMAT, "%s: linear RoPE scaling without a positive %s.rope.scaling.factor", g->path, arch);
        return st_error_hint("the converter left out the factor; convert the model again");
    }

    /* tensors */
    m->tensors = st_calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof *m->tensors, "tensor table");
    if (!m->tensors) return ST_ERR_NOMEM;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const struct st_gguf_tensor_info *ti = &g->ti[i];
        struct st_tensor *t = &m->tensors[i];
        memcpy(t->name, g->base + ti->name_off, ti->name_len);
        t->name[ti->name_len] = 0;
        t->dtype = ti->dtype;
        t->n_dims = (int)ti->n_dims;
        memcpy(t->ne, ti->ne, sizeof t->ne);
        t->bytes = ti->bytes;
        t->file = fi;
        t->offset = g->data_start + ti->offset;
        t->data = (const uint8_t *)f->map + t->offset;
    }
    m->n_tensors = g->n_tensors;

    /* tokenizer and template */
    m->tok_source = st_gguf_find(g, "tokenizer.ggml.model") >= 0 ? ST_TOKSRC_GGUF : ST_TOKSRC_NONE;
    if (st_gguf_find(g, "tokenizer.chat_template") >= 0) {
        struct st_gguf_str ct;
        if ((s = st_gguf_get_str(g, "tokenizer.chat_template", &ct))) return s;
        m->chat_template = st_strndup(ct.ptr, ct.len, "the chat template");
        if (!m->chat_template) return ST_ERR_NOMEM;
    }
    return ST_OK;
}
