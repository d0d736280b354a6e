/* safetensors reader (formats.md §3): u64 header length, JSON header, data
 * buffer. Every tensor's data_offsets are checked against its shape, the data
 * buffer and the other tensors before a pointer into the mapping is made. */
#include "model/model-impl.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ST_SAFETENSORS_HEADER_MAX 100000000ull

struct span { uint64_t begin, end; int64_t tensor; };

static int span_cmp(const void *a, const void *b) {
    const struct span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

static st_status sf_fail(const char *path, uint64_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static st_status sf_fail(const char *path, uint64_t at, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    st_error_set(ST_ERR_FORMAT, "%s: byte offset %llu: %s", path, (unsigned long long)at, buf);
    return ST_ERR_FORMAT;
}

static bool sf_dtype(const char *s, st_dtype *out) {
    if (!strcmp(s, "F32")) { *out = ST_DTYPE_F32; return true; }
    if (!strcmp(s, "F16")) { *out = ST_DTYPE_F16; return true; }
    if (!strcmp(s, "BF16")) { *out = ST_DTYPE_BF16; return true; }
    return false;
}

static bool sf_known_dtype(const char *s) {
    static const char *known[] = {"BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F64",
                                  "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
                                  "F4", "F6_E2M3", "F6_E3M2", "C64"};
    for (size_t i = 0; i < ST_ARRAY_LEN(known); i++) if (!strcmp(s, known[i])) return true;
    return false;
}

st_status st_safetensors_read(st_model *m, int file) {
    const struct st_model_file *f = &m->files[file];
    const char *path = f->path;
    const uint8_t *p = f->map;
    st_status s = ST_OK;
    json_t *root = NULL;
    struct span *spans = NULL;

    if (f->size < 8) {
        s = sf_fail(path, 0, "file is %zu bytes, too short for the 8-byte header length", f->size);
        st_error_hint("the file is truncated; download it again");
        goto done;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | p[i];
    if (n > ST_SAFETENSORS_HEADER_MAX) {
        s = sf_fail(path, 0, "header length %llu is larger than the 100 MB limit", (unsigned long long)n);
        st_error_hint("this is not a safetensors file, or its first 8 bytes are corrupt");
        goto done;
    }
    if (n > f->size - 8) {
        s = sf_fail(path, 0, "header length %llu runs past the end of the file (%zu bytes)", (unsigned long long)n, f->size);
        st_error_hint("the file is truncated or not a safetensors file; download it again");
        goto done;
    }
    if (n < 2 || p[8] != '{') {
        s = sf_fail(path, 8, "header is not a JSON object (it must start with '{')");
        st_error_hint("this is not a safetensors file");
        goto done;
    }
    json_error_t jerr;
    root = json_loadb((const char *)p + 8, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        s = sf_fail(path, 8 + (uint64_t)(jerr.position > 0 ? jerr.position : 0), "header JSON %d:%d: %s",
                    jerr.line, jerr.column, jerr.text);
        st_error_hint("the header is corrupt; download the file again");
        goto done;
    }
    if (!json_is_object(root)) {
        s = sf_fail(path, 8, "header is not a JSON object");
        goto done;
    }
    uint64_t data_start = 8 + n, data_len = f->size - data_start;
    size_t n_entries = json_object_size(root);
    spans = st_calloc(n_entries ? n_entries : 1, sizeof *spans, "safetensors spans");
    if (!spans) { s = ST_ERR_NOMEM; goto done; }
    size_t n_spans = 0;
    const char *name;
    json_t *val;
    json_object_foreach(root, name, val) {
        if (!strcmp(name, "__metadata__")) continue;
        if (!json_is_object(val)) {
            s = sf_fail(path, 8, "tensor '%s': header entry is not an object", name);
            goto done;
        }
        if (strlen(name) >= ST_TENSOR_NAME_MAX) {
            s = sf_fail(path, 8, "tensor '%.80s...': name is longer than %d bytes", name, ST_TENSOR_NAME_MAX - 1);
            goto done;
        }
        json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"), *jo = json_object_get(val, "data_offsets");
        if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2) {
            s = sf_fail(path, 8, "tensor '%s': needs \"dtype\" (string), \"shape\" (list) and \"data_offsets\" ([begin, end])", name);
            st_error_hint("the header is corrupt; download the file again");
            goto done;
        }
        struct st_tensor t;
        memset(&t, 0, sizeof t);
        snprintf(t.name, sizeof t.name, "%s", name);
        const char *ds = json_string_value(jd);
        if (!sf_dtype(ds, &t.dtype)) {
            if (sf_known_dtype(ds)) {
                s = st_error_set(ST_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; strata reads F32, F16 and BF16 safetensors",
                                 path, name, ds);
                st_error_hint("save the model in bfloat16/float16/float32 (model.to(torch.bfloat16).save_pretrained(...))");
            } else {
                s = sf_fail(path, 8, "tensor '%s' has unknown dtype '%.40s'", name, ds);
                st_error_hint("valid safetensors dtypes include F32, F16, BF16");
            }
            goto done;
        }
        size_t nd = json_array_size(js);
        if (nd > 4) {
            s = sf_fail(path, 8, "tensor '%s' has %zu dimensions; strata handles at most 4", name, nd);
            goto done;
        }
        t.n_dims = (int)nd;
        for (int d = 0; d < 4; d++) t.ne[d] = 1;
        uint64_t numel = 1;
        for (size_t d = 0; d < nd; d++) {
            json_t *e = json_array_get(js, d);
            if (!json_is_integer(e) || json_integer_value(e) < 0) {
                s = sf_fail(path, 8, "tensor '%s': shape[%zu] is not a non-negative integer", name, d);
                goto done;
            }
            uint64_t v = (uint64_t)json_integer_value(e);
            if (st_mul_overflow_u64(numel, v, &numel) || numel > (uint64_t)INT64_MAX) {
                s = sf_fail(path, 8, "tensor '%s': element count overflows", name);
                goto done;
            }
            t.ne[nd - 1 - d] = (int64_t)v;     /* safetensors shape is slowest-first */
        }
        json_t *jb = json_array_get(jo, 0), *je = json_array_get(jo, 1);
        if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
            json_integer_value(je) < json_integer_value(jb)) {
            s = sf_fail(path, 8, "tensor '%s': data_offsets must be two integers with 0 <= begin <= end", name);
            goto done;
        }
        uint64_t b = (uint64_t)json_integer_value(jb), e = (uint64_t)json_integer_value(je);
        uint64_t want;
        if (st_mul_overflow_u64(numel, st_dtype_block_bytes(t.dtype), &want) || e - b != want) {
            s = sf_fail(path, data_start + b, "tensor '%s': data_offsets [%llu, %llu) hold %llu bytes, but shape x %s needs %llu",
                        name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)(e - b), ds,
                        (unsigned long long)want);
            st_error_hint("the header is corrupt; download the file again");
            goto done;
        }
        if (e > data_len) {
            s = sf_fail(path, data_start + b, "tensor '%s': data [%llu, %llu) runs past the end of the data buffer (%llu bytes)",
                        name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_len);
            st_error_hint("the file is truncated; download it again");
            goto done;
        }
        t.bytes = e - b;
        t.file = file;
        t.offset = data_start + b;
        t.data = p + t.offset;
        spans[n_spans].begin = b;
        spans[n_spans].end = e;
        spans[n_spans].tensor = m->n_tensors;
        n_spans++;
        if ((s = st_model_add_tensor(m, &t))) goto done;
    }
    qsort(spans, n_spans, sizeof *spans, span_cmp);
    size_t far = 0;   /* span reaching furthest so far */
    for (size_t i = 1; i < n_spans; i++) {
        if (spans[i].end > spans[i].begin && spans[i].begin < spans[far].end) {
            s = sf_fail(path, data_start + spans[i].begin, "tensors '%s' and '%s' overlap in the data buffer",
                        m->tensors[spans[far].tensor].name, m->tensors[spans[i].tensor].name);
            st_error_hint("the header is corrupt; download the file again");
            goto done;
        }
        if (spans[i].end > spans[far].end) far = i;
    }
done:
    free(spans);
    json_decref(root);
    return s;
}
