/* The backend registry: one entry per folder under devices/ (its register.c),
 * and the lookups everything outside those folders uses instead of branching
 * on a device kind (devices/device.h, docs/backends.md). */
#include "devices/device.h"

#include <string.h>

extern const struct st_backend_reg st_backend_reg_cpu;    /* devices/cpu/register.c */
extern const struct st_backend_reg st_backend_reg_cuda;   /* devices/cuda/register.c */

/* A new backend: one line here (after its folder and its st_device_kind). */
static const struct st_backend_reg *const registry[] = {
    &st_backend_reg_cpu,
    &st_backend_reg_cuda,
};

int st_backend_reg_count(void) { return (int)ST_ARRAY_LEN(registry); }

const struct st_backend_reg *st_backend_reg_at(int i) {
    return i >= 0 && i < st_backend_reg_count() ? registry[i] : NULL;
}

const struct st_backend_reg *st_backend_reg_find(st_device_kind kind) {
    for (size_t i = 0; i < ST_ARRAY_LEN(registry); i++)
        if (registry[i]->kind == kind) return registry[i];
    return NULL;
}

const struct st_backend_reg *st_backend_reg_by_name(const char *name) {
    for (size_t i = 0; name && i < ST_ARRAY_LEN(registry); i++)
        if (!strcmp(registry[i]->name, name)) return registry[i];
    return NULL;
}

const struct st_backend_reg *st_backend_reg_of(const struct st_device_info *dev) {
    if (dev->kind != ST_DEVICE_CATALOG) return st_backend_reg_find(dev->kind);
    for (size_t i = 0; i < ST_ARRAY_LEN(registry); i++)
        if (registry[i]->catalog_cards) return registry[i];
    return NULL;
}

const struct st_backend_path *st_backend_reg_path(const struct st_backend_reg *b, const struct st_caps *caps) {
    const int cc = caps->cc_major * 10 + caps->cc_minor;
    const struct st_backend_path *p = &b->paths[0];
    for (int i = 1; i < b->n_paths; i++)
        if (b->paths[i].cc_min <= cc) p = &b->paths[i];
    return p;
}

const struct st_backend_path *st_device_path(const struct st_device_info *dev) {
    const struct st_backend_reg *b = st_backend_reg_of(dev);
    return b ? st_backend_reg_path(b, &dev->caps) : NULL;
}

st_status st_device_ops_of(const struct st_device_info *dev, const struct st_device_ops **out) {
    *out = NULL;
    if (dev->kind == ST_DEVICE_CATALOG) {
        st_error_set(ST_ERR_CONFIG, "%s: a catalog device exists only for planning", dev->name);
        return st_error_hint("run 'strata plan' for what-if hardware; running needs a real device (or 'emulate: %s' "
                             "on a real GPU)", dev->catalog[0] ? dev->catalog : "NAME");
    }
    const struct st_backend_reg *b = st_backend_reg_find(dev->kind);
    if (!b) return st_error_set(ST_ERR_INTERNAL, "%s: device kind %d has no backend", dev->name, (int)dev->kind);
    if (!b->built || !b->ops || !(*out = b->ops())) {
        st_error_set(ST_ERR_NOT_BUILT, "%s: this build has no %s backend", dev->name, b->title);
        return st_error_hint("%s", b->build_hint);
    }
    return ST_OK;
}

bool st_device_host_memory(const struct st_device_info *dev) {
    const struct st_backend_reg *b = st_backend_reg_find(dev->kind);
    return b && b->host_memory;
}

const char *st_device_kind_name(st_device_kind k) {
    if (k == ST_DEVICE_CATALOG) return "catalog";
    const struct st_backend_reg *b = st_backend_reg_find(k);
    return b ? b->name : "?";
}

bool st_device_kind_parse(const char *name, st_device_kind *out) {
    if (name && !strcmp(name, "catalog")) {
        *out = ST_DEVICE_CATALOG;
        return true;
    }
    const struct st_backend_reg *b = st_backend_reg_by_name(name);
    if (b) *out = b->kind;
    return b != NULL;
}

const char *st_backend_op_name(uint32_t op) {
    static const char *const names[ST_BACKEND_N_OPS] = {
        "argmax_rows", "import_host", "graphs", "matmul_multi", "matmul_swiglu",
        "sample", "events", "pipeline", "flash_attn", "kv_q8_0", "rope_kv_store", "matmul_add",
    };
    for (int i = 0; i < ST_BACKEND_N_OPS; i++)
        if (op == 1u << i) return names[i];
    return "?";
}

char *st_dtype_mask_text(uint32_t mask, const char *sep, char *buf, size_t buf_len) {
    size_t n = 0;
    if (!buf_len) return buf;
    buf[0] = 0;
    for (int t = 0; t < ST_DTYPE_COUNT; t++) {
        if (!(mask & ST_DTYPE_BIT(t))) continue;
        int w = snprintf(buf + n, buf_len - n, "%s%s", n ? sep : "", st_dtype_name((st_dtype)t));
        if (w < 0 || (size_t)w >= buf_len - n) break;
        n += (size_t)w;
    }
    if (!n) snprintf(buf, buf_len, "none");
    return buf;
}
