/* The GPU catalog for what-if planning. The table is generated from
 * configs/catalog.yaml (tools/gen_catalog.py) and compiled in, so a dry run
 * works from any directory and an installed binary needs no data file;
 * tests/planner/test_catalog.c keeps the YAML and this table equal. */
#include "devices/device.h"

#include <string.h>

static const struct st_catalog_entry catalog[] = {
#include "devices/catalog_table.inc"
};

int st_catalog_count(void) { return (int)ST_ARRAY_LEN(catalog); }

const char *st_catalog_key(int i) {
    return i >= 0 && i < st_catalog_count() ? catalog[i].key : NULL;
}

const struct st_catalog_entry *st_catalog_entry_at(int i) {
    return i >= 0 && i < st_catalog_count() ? &catalog[i] : NULL;
}

st_status st_catalog_lookup(const char *name, struct st_device_info *info) {
    const struct st_catalog_entry *e = NULL;
    for (int i = 0; name && i < st_catalog_count(); i++) {
        if (strcmp(catalog[i].key, name) == 0) { e = &catalog[i]; break; }
    }
    if (!e) {
        const char *keys[ST_ARRAY_LEN(catalog)];
        for (int i = 0; i < st_catalog_count(); i++) keys[i] = catalog[i].key;
        const char *near = name ? st_nearest_word(name, keys, ST_ARRAY_LEN(keys)) : NULL;
        st_error_set(ST_ERR_CONFIG, "catalog: no card named '%s'", name ? name : "(null)");
        if (near) return st_error_hint("did you mean '%s'? (configs/catalog.yaml lists every card)", near);
        return st_error_hint("configs/catalog.yaml lists the %d cards, e.g. tesla-m40, rtx-3090, h100-sxm",
                             st_catalog_count());
    }
    if (!info) return ST_OK;
    memset(info, 0, sizeof *info);
    info->kind = ST_DEVICE_CATALOG;
    info->numa_node = -1;
    snprintf(info->name, sizeof info->name, "%s", e->name);
    snprintf(info->catalog, sizeof info->catalog, "%s", e->key);
    info->caps = st_caps_from_cc(e->cc_major, e->cc_minor);
    info->sm_count = e->sm_count;
    info->mem_total_bytes = (uint64_t)(e->memory_gib * 1073741824.0);
    info->mem_free_bytes = info->mem_total_bytes;
    info->mem_bus_width_bits = e->bus_width_bits;
    info->pcie_gen = e->pcie_gen;
    info->pcie_width = e->pcie_width;
    info->perf.mem_bw_gbps = e->bandwidth_gbps;
    info->perf.fp32_tflops = e->fp32_tflops;
    info->perf.fp16_tflops = e->fp16_tflops;
    info->perf.bf16_tflops = e->bf16_tflops;
    info->perf.launch_us = 0;          /* the planner's documented default applies */
    info->perf.measured = false;
    return ST_OK;
}
