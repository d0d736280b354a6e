/* model/model-impl.h — internals shared by the model readers (gguf.c,
 * safetensors.c, hf.c, model.c). Not part of the public interface. */
#ifndef STRATA_MODEL_IMPL_H
#define STRATA_MODEL_IMPL_H

#include "model/model.h"

/* One tensor info as read from a GGUF header. */
struct st_gguf_tensor_info {
    uint64_t name_off;       /* absolute file offset of the name bytes */
    uint64_t name_len;
    st_dtype dtype;
    uint32_t n_dims;
    int64_t ne[4];           /* missing dims 1 */
    uint64_t offset;         /* relative to the data section */
    uint64_t bytes;
    uint64_t info_off;       /* absolute offset of the info record (for messages) */
};

struct st_gguf_kv {
    char *key;               /* NUL-terminated copy */
    st_gguf_type type;
    uint64_t key_off;        /* absolute offset of the record */
    uint64_t val_off;        /* absolute offset of the value (array: of the first element) */
    st_gguf_type arr_type;   /* arrays only */
    uint64_t arr_n;          /* arrays only: element count */
    uint64_t *str_offs;      /* string arrays only: (arr_n) absolute offsets of each element */
};

struct st_gguf {
    char *path;
    const uint8_t *base;     /* the mapping (not owned) */
    uint64_t size;           /* bytes */
    uint32_t version;
    int64_t n_kv;
    struct st_gguf_kv *kv;           /* (n_kv) */
    int64_t n_tensors;
    struct st_gguf_tensor_info *ti;  /* (n_tensors) */
    uint64_t alignment;
    uint64_t data_start;     /* absolute offset of the data section */
};

/* Parses a GGUF header over a mapping of `size` bytes (not copied; must
 * outlive the result). */
st_status st_gguf_parse(const char *path, const void *map, uint64_t size, struct st_gguf **out);
void st_gguf_free(struct st_gguf *g);

/* mmap a whole file read-only into m->files (grows the array). *idx = its index. */
st_status st_model_map_file(st_model *m, const char *path, int *idx);

/* Appends a tensor (copied) to m->tensors; st_model_open checks names are unique. */
st_status st_model_add_tensor(st_model *m, const struct st_tensor *t);

/* Sets *first_missing to the index of the first of names[0..n) that no tensor
 * has, or n when all exist (O(n log n)). */
st_status st_model_find_all(const st_model *m, const char *const *names, size_t n, size_t *first_missing);

/* Format readers: fill m->files, m->tensors, m->hp, tokenizer fields. */
st_status st_model_load_gguf(st_model *m);
st_status st_model_load_hf(st_model *m);

/* Reads one .safetensors file (already mapped as m->files[file]) and appends
 * its tensors. */
st_status st_safetensors_read(st_model *m, int file);

/* ST_OK when v is finite and in [lo, hi] ((lo, hi] with lo_open); else
 * ST_ERR_FORMAT "<where> = v is not a finite number in [lo, hi]" with a hint
 * naming src ("GGUF metadata", "config.json"). The readers check the value as
 * the file holds it, before it is narrowed to float. */
st_status st_model_hp_float(const char *where, double v, double lo, bool lo_open, double hi, const char *src);

/* dtype tables used by readers */
st_status st_dtype_from_ggml(uint32_t code, st_dtype *out, const char **known_name);

#endif
