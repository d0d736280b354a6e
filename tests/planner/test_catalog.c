/* The GPU catalog and the model presets: the C tables equal configs/catalog.yaml
 * and configs/presets.yaml field by field (read here with libyaml), every
 * catalog figure names its source, lookups and capabilities behave as
 * DESIGN.md says. */
#include "check.h"
#include "planner/planner.h"

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
static double num(yaml_node_t *map, const char *key) {
    const char *s = str(map, key);
    return s ? strtod(s, NULL) : -1e300;
}
static bool load(const char *path) {
    char *text; size_t len;
    if (st_read_file(path, &text, &len) != ST_OK) return false;
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    bool ok = yaml_parser_load(&p, &doc);
    yaml_parser_delete(&p);
    free(text);
    return ok;
}

static void check_catalog(void) {
    CHECK(load("configs/catalog.yaml"));
    yaml_node_t *gpus = get(yaml_document_get_root_node(&doc), "gpus");
    CHECK(gpus && gpus->type == YAML_SEQUENCE_NODE);
    if (!gpus) return;
    int n = (int)(gpus->data.sequence.items.top - gpus->data.sequence.items.start);
    CHECK_MSG(n == st_catalog_count(), "yaml %d cards, C table %d (run tools/gen_catalog.py)", n, st_catalog_count());
    CHECK(st_catalog_count() >= 24);
    for (int i = 0; i < n && i < st_catalog_count(); i++) {
        yaml_node_t *g = yaml_document_get_node(&doc, gpus->data.sequence.items.start[i]);
        const struct st_catalog_entry *e = st_catalog_entry_at(i);
        const char *key = str(g, "key");
        CHECK_MSG(key && !strcmp(key, e->key), "entry %d: yaml %s, C %s", i, key, e->key);
        CHECK(!strcmp(str(g, "name"), e->name) && !strcmp(str(g, "arch"), e->arch));
        char cc[8];
        snprintf(cc, sizeof cc, "%d.%d", e->cc_major, e->cc_minor);
        CHECK_MSG(!strcmp(str(g, "cc"), cc), "%s: cc %s vs %s", e->key, str(g, "cc"), cc);
        CHECK_MSG(num(g, "memory_gib") == e->memory_gib && num(g, "bandwidth_gbps") == e->bandwidth_gbps &&
                  num(g, "fp32_tflops") == e->fp32_tflops && num(g, "fp16_tflops") == e->fp16_tflops &&
                  num(g, "bf16_tflops") == e->bf16_tflops, "%s: figures differ from the YAML", e->key);
        CHECK(num(g, "pcie_gen") == e->pcie_gen && num(g, "pcie_width") == e->pcie_width &&
              num(g, "sm_count") == e->sm_count && num(g, "bus_width_bits") == e->bus_width_bits);
        yaml_node_t *src = get(g, "sources");
        const char *fields[] = {"memory", "bandwidth", "fp32", "fp16", "bf16", "cc", "pcie"};
        const char *csrc[] = {e->src_memory, e->src_bandwidth, e->src_fp32, e->src_fp16, e->src_bf16, e->src_cc,
                              e->src_pcie};
        for (int f = 0; f < 7; f++) {
            const char *y = str(src, fields[f]);
            CHECK_MSG(y && strlen(y) > 5 && !strcmp(y, csrc[f]), "%s: source of %s missing or different", e->key,
                      fields[f]);
        }
        /* sanity of the figures themselves */
        CHECK(e->memory_gib >= 4 && e->bandwidth_gbps >= 150 && e->fp32_tflops >= 4);
        CHECK((e->bf16_tflops > 0) == (e->cc_major >= 8));
        CHECK((e->fp16_tflops == 0) == (e->cc_major == 5));
    }
    yaml_document_delete(&doc);

    /* the cards the issue names, Maxwell to Hopper */
    const char *want[] = {"tesla-m40", "tesla-m40-12gb", "tesla-m60", "gtx-980-ti", "gtx-titan-x", "tesla-p40",
                          "tesla-p100", "gtx-1080-ti", "tesla-v100", "tesla-t4", "rtx-2080-ti", "a100-40gb",
                          "a100-80gb", "a10", "rtx-3050-ti-laptop", "rtx-3060", "rtx-3090", "rtx-4060-ti",
                          "rtx-4090", "l4", "l40s", "h100-pcie", "h100-sxm", "h200"};
    for (size_t i = 0; i < ST_ARRAY_LEN(want); i++) {
        struct st_device_info in;
        CHECK_MSG(st_catalog_lookup(want[i], &in) == ST_OK, "%s missing", want[i]);
        CHECK(in.kind == ST_DEVICE_CATALOG && !strcmp(in.catalog, want[i]) && in.mem_total_bytes > 0);
    }
    struct st_device_info m40;
    CHECK_OK(st_catalog_lookup("tesla-m40", &m40));
    CHECK(m40.mem_total_bytes == 24ull << 30 && m40.perf.mem_bw_gbps == 288 && !m40.caps.fp16_arith &&
          !m40.caps.bf16 && !m40.caps.flash_attn && !m40.caps.tensor_cores);
    CHECK_ERR(st_catalog_lookup("tesla-m41", &m40), ST_ERR_CONFIG, "did you mean 'tesla-m40'");
    CHECK_ERR(st_catalog_lookup("quantum-9000", NULL), ST_ERR_CONFIG, "configs/catalog.yaml");
}

static void check_caps(void) {
    struct { int ma, mi; bool fp16, acc, bf16, tc, flash; } t[] = {
        {5, 2, false, false, false, false, false},  /* Maxwell M40 */
        {5, 3, true, false, false, false, false},   /* Jetson TX1: fast fp16 */
        {6, 0, true, false, false, false, false},   /* P100 */
        {6, 1, false, false, false, false, false},  /* P40: 1/64-rate fp16 */
        {6, 2, true, false, false, false, false},
        {7, 0, true, true, false, true, false},     /* V100 */
        {7, 5, true, true, false, true, false},     /* T4 */
        {8, 0, true, true, true, true, true},       /* A100 */
        {8, 6, true, true, true, true, true},
        {8, 9, true, true, true, true, true},
        {9, 0, true, true, true, true, true},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(t); i++) {
        struct st_caps c = st_caps_from_cc(t[i].ma, t[i].mi);
        CHECK_MSG(c.cc_major == t[i].ma && c.cc_minor == t[i].mi && c.fp16_arith == t[i].fp16 &&
                  c.fp32_accum_fp16 == t[i].acc && c.bf16 == t[i].bf16 && c.tensor_cores == t[i].tc &&
                  c.flash_attn == t[i].flash, "caps of cc %d.%d", t[i].ma, t[i].mi);
    }
    struct st_caps cpu = st_caps_cpu();
    CHECK(!cpu.fp16_arith && cpu.fp32_accum_fp16 && !cpu.bf16 && !cpu.tensor_cores && !cpu.flash_attn);
    CHECK(!strcmp(st_prec_name(ST_PREC_BF16), "bf16") && !strcmp(st_attn_name(ST_ATTN_FLASH), "flash"));
}

static void check_presets(void) {
    CHECK(load("configs/presets.yaml"));
    yaml_node_t *ps = get(yaml_document_get_root_node(&doc), "presets");
    int n = ps ? (int)(ps->data.sequence.items.top - ps->data.sequence.items.start) : 0;
    CHECK(n == st_plan_preset_count());
    for (int i = 0; i < n && i < st_plan_preset_count(); i++) {
        yaml_node_t *y = yaml_document_get_node(&doc, ps->data.sequence.items.start[i]);
        const struct st_plan_preset *p = st_plan_preset_at(i);
        CHECK_MSG(!strcmp(str(y, "name"), p->name) && !strcmp(str(y, "arch"), st_arch_name(p->arch)) &&
                  num(y, "n_layer") == p->n_layer && num(y, "n_embd") == p->n_embd && num(y, "n_ff") == p->n_ff &&
                  num(y, "n_head") == p->n_head && num(y, "n_head_kv") == p->n_head_kv &&
                  num(y, "head_dim") == p->head_dim && num(y, "n_vocab") == p->n_vocab &&
                  num(y, "n_ctx_train") == p->n_ctx_train &&
                  !strcmp(str(y, "tied_embeddings"), p->tied_embeddings ? "true" : "false") &&
                  !strcmp(str(y, "qkv_bias"), p->qkv_bias ? "true" : "false") &&
                  !strcmp(str(y, "qk_norm"), p->qk_norm ? "true" : "false") && !strcmp(str(y, "source"), p->source),
                  "preset %s differs from configs/presets.yaml", p->name);
    }
    yaml_document_delete(&doc);
    const char *want[] = {"qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b", "qwen2.5-32b",
                          "qwen2.5-72b", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b", "qwen3-8b", "qwen3-14b", "qwen3-32b",
                          "llama-3.1-8b", "llama-3.1-70b"};
    for (size_t i = 0; i < ST_ARRAY_LEN(want); i++) {
        struct st_plan_model m;
        CHECK_MSG(st_plan_model_from_preset(want[i], "q4_k_m", &m) == ST_OK, "%s", want[i]);
        st_plan_model_free(&m);
    }
    struct st_plan_model m;
    CHECK_ERR(st_plan_model_from_preset("qwen2.5-7", "f16", &m), ST_ERR_CONFIG, "did you mean 'qwen2.5-7b'");
    CHECK_ERR(st_plan_model_from_preset("qwen2.5-7b", "q3_k", &m), ST_ERR_CONFIG, "hint: use one of");
}

int main(void) {
    check_catalog();
    check_caps();
    check_presets();
    return st_test_finish("planner_caps_catalog");
}
