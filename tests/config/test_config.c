/* Deployment config: every field of a full example, the defaults, sizes,
 * manual placement, relative model paths, and the exact text of each error
 * (position, key path, hint). Expected values are written out by hand from
 * the YAML text and docs/config.md, not computed by the code under test. */
#include "check.h"
#include "orchestrator/config.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>

static struct st_deploy_config *parse(const char *name, const char *yaml) {
    struct st_deploy_config *cfg = NULL;
    st_status s = st_config_parse(yaml, strlen(yaml), name, &cfg);
    CHECK_MSG(s == ST_OK && cfg, "%s did not parse: %s", name, st_last_error());
    return cfg;
}

/* The whole message must equal want (exact text, hint line included). */
#define EXPECT_ERROR(name, yaml, want) do { \
    struct st_deploy_config *_c = (struct st_deploy_config *)0x1; \
    st_status _s = st_config_parse((yaml), strlen(yaml), (name), &_c); \
    CHECK_MSG(_s == ST_ERR_CONFIG, "%s: status %s, want config", (name), st_status_name(_s)); \
    CHECK_MSG(_c == NULL, "%s: *out not NULL on error", (name)); \
    CHECK_MSG(strcmp(st_last_error(), (want)) == 0, "%s:\n  got:  %s\n  want: %s", (name), st_last_error(), (want)); \
    CHECK(st_status_exit_code(_s) == 2); \
} while (0)

#define HEAD "version: 1\nmodel: {preset: qwen2.5-7b}\n"

static void test_full(void) {
    const char *yaml =
        "# a full deployment\n"
        "version: 1\n"
        "model:\n"
        "  path: /models/qwen2.5-7b-instruct-q4_k_m.gguf\n"
        "devices:\n"
        "  - device: cuda:0\n"
        "    name: fast\n"
        "    max_memory: 6GiB\n"
        "    reserve: 512MiB\n"
        "    precision: bf16\n"
        "    attention: flash\n"
        "  - device: cuda:1\n"
        "    name: m40\n"
        "    emulate: tesla-m40\n"
        "    caps: {fp16_arith: false, fp32_accum_fp16: true, bf16: false, tensor_cores: false, flash_attn: false}\n"
        "  - device: cpu\n"
        "    threads: 16\n"
        "    max_memory: 32GB\n"
        "  - cuda:GPU-5f2a7c3e-1b2d-4c8e-9a0b-0123456789ab\n"
        "  - {catalog: rtx-3050-ti-laptop, name: laptop}\n"
        "placement:\n"
        "  strategy: manual\n"
        "  objective: throughput\n"
        "  precision: fp16\n"
        "  attention: eager\n"
        "  manual:\n"
        "    - {device: fast, layers: 0-9}\n"
        "    - {device: 1, layers: [10, 20]}\n"
        "    - {device: cpu, layers: 21}\n"
        "    - device: laptop\n"
        "      layers: 22-27\n"
        "transport: nccl\n"
        "context: 8192\n"
        "batch: 4\n"
        "prefill_chunk: 256\n"
        "generation:\n"
        "  max_tokens: 100\n"
        "  temperature: 0.7\n"
        "  top_k: 20\n"
        "  top_p: 0.8\n"
        "  min_p: 0.1\n"
        "  repeat_penalty: 1.05\n"
        "  repeat_last_n: -1\n"
        "  frequency_penalty: 0.5\n"
        "  presence_penalty: -0.25\n"
        "  seed: 18446744073709551615\n"
        "  stop: [\"\\n\\nUser:\", '###']\n"
        "  chat_template: chatml\n"
        "  system: \"You are terse.\"\n";
    struct st_deploy_config *c = parse("full.yaml", yaml);
    if (!c) return;
    CHECK(!strcmp(c->source, "full.yaml"));
    CHECK(c->version == 1);
    CHECK(c->model.path && !strcmp(c->model.path, "/models/qwen2.5-7b-instruct-q4_k_m.gguf"));
    CHECK(c->model.preset == NULL);
    CHECK(c->model.quant[0] == 0);
    CHECK(c->model.pos.line == 4 && c->model.pos.column == 9);
    CHECK(c->n_devices == 5);

    const struct st_config_device *d = &c->devices[0];
    CHECK(d->kind == ST_CONFIG_DEV_CUDA_INDEX && d->index == 0);
    CHECK(!strcmp(d->selector, "cuda:0") && !strcmp(d->name, "fast"));
    CHECK(d->max_memory_bytes == 6ull * 1024 * 1024 * 1024);
    CHECK(d->reserve_bytes == 512ull * 1024 * 1024);
    CHECK(d->precision == ST_PREC_BF16 && d->attention == ST_ATTN_FLASH);
    CHECK(d->threads == 0 && d->emulate[0] == 0);
    CHECK(d->caps.bf16 == ST_CONFIG_TRI_UNSET && d->caps.flash_attn == ST_CONFIG_TRI_UNSET);
    CHECK(d->pos.line == 6 && d->pos.column == 5);
    CHECK(d->selector_pos.line == 6 && d->selector_pos.column == 13);

    d = &c->devices[1];
    CHECK(d->kind == ST_CONFIG_DEV_CUDA_INDEX && d->index == 1);
    CHECK(!strcmp(d->name, "m40") && !strcmp(d->emulate, "tesla-m40"));
    CHECK(d->emulate_pos.line == 14 && d->emulate_pos.column == 14);
    CHECK(d->caps.fp16_arith == ST_CONFIG_TRI_FALSE);
    CHECK(d->caps.fp32_accum_fp16 == ST_CONFIG_TRI_TRUE);
    CHECK(d->caps.bf16 == ST_CONFIG_TRI_FALSE);
    CHECK(d->caps.tensor_cores == ST_CONFIG_TRI_FALSE);
    CHECK(d->caps.flash_attn == ST_CONFIG_TRI_FALSE);
    CHECK(d->precision == ST_CONFIG_AUTO && d->attention == ST_CONFIG_AUTO);
    CHECK(d->max_memory_bytes == 0 && d->reserve_bytes == 0);

    d = &c->devices[2];
    CHECK(d->kind == ST_CONFIG_DEV_CPU && !strcmp(d->selector, "cpu") && d->name[0] == 0);
    CHECK(d->threads == 16);
    CHECK(d->max_memory_bytes == 32000000000ull);
    CHECK(d->pos.line == 16);

    d = &c->devices[3];
    CHECK(d->kind == ST_CONFIG_DEV_CUDA_UUID);
    CHECK(!strcmp(d->uuid, "GPU-5f2a7c3e-1b2d-4c8e-9a0b-0123456789ab"));
    CHECK(!strcmp(d->selector, "cuda:GPU-5f2a7c3e-1b2d-4c8e-9a0b-0123456789ab"));
    CHECK(d->pos.line == 19 && d->pos.column == 5);

    d = &c->devices[4];
    CHECK(d->kind == ST_CONFIG_DEV_CATALOG && !strcmp(d->catalog, "rtx-3050-ti-laptop"));
    CHECK(!strcmp(d->selector, "catalog:rtx-3050-ti-laptop") && !strcmp(d->name, "laptop"));
    CHECK(!strcmp(st_config_device_label(d), "laptop"));
    CHECK(!strcmp(st_config_device_label(&c->devices[2]), "cpu"));

    const struct st_config_placement *p = &c->placement;
    CHECK(p->strategy == ST_CONFIG_STRATEGY_MANUAL);
    CHECK(p->objective == ST_CONFIG_OBJECTIVE_THROUGHPUT);
    CHECK(p->precision == ST_PREC_F16 && p->attention == ST_ATTN_EAGER);
    CHECK(p->n_manual == 4);
    if (p->n_manual == 4) {
        CHECK(p->manual[0].device == 0 && p->manual[0].first_layer == 0 && p->manual[0].last_layer == 9);
        CHECK(p->manual[1].device == 1 && p->manual[1].first_layer == 10 && p->manual[1].last_layer == 20);
        CHECK(p->manual[2].device == 2 && p->manual[2].first_layer == 21 && p->manual[2].last_layer == 21);
        CHECK(p->manual[3].device == 4 && p->manual[3].first_layer == 22 && p->manual[3].last_layer == 27);
        CHECK(p->manual[3].pos.line == 30 && p->manual[3].pos.column == 7);
    }
    CHECK(c->transport == ST_CONFIG_TRANSPORT_NCCL);
    CHECK(c->context == 8192 && c->batch == 4 && c->prefill_chunk == 256);

    const struct st_config_generation *g = &c->generation;
    CHECK(g->max_tokens == 100);
    CHECK(g->temperature == 0.7f && g->top_k == 20 && g->top_p == 0.8f && g->min_p == 0.1f);
    CHECK(g->repeat_penalty == 1.05f && g->repeat_last_n == -1);
    CHECK(g->frequency_penalty == 0.5f && g->presence_penalty == -0.25f);
    CHECK(g->has_seed && g->seed == UINT64_MAX);
    CHECK(g->n_stop == 2);
    if (g->n_stop == 2) {
        CHECK(!strcmp(g->stop[0], "\n\nUser:"));
        CHECK(!strcmp(g->stop[1], "###"));
    }
    CHECK(g->chat_template == ST_CONFIG_CHAT_CHATML);
    CHECK(g->system && !strcmp(g->system, "You are terse."));

    CHECK(!strcmp(st_config_objective_name(p->objective), "throughput"));
    CHECK(!strcmp(st_config_transport_name(c->transport), "nccl"));
    CHECK(!strcmp(st_config_prec_name(ST_CONFIG_AUTO), "auto"));
    CHECK(!strcmp(st_config_prec_name(ST_PREC_BF16), "bf16"));
    CHECK(!strcmp(st_config_attn_name(ST_ATTN_FLASH), "flash"));
    CHECK(!strcmp(st_config_strategy_name(p->strategy), "manual"));
    CHECK(!strcmp(st_config_chat_name(g->chat_template), "chatml"));
    st_config_free(c);
}

static void test_defaults(void) {
    struct st_deploy_config *c = parse("min.yaml", "version: 1\nmodel: {preset: qwen2.5-0.5b}\ndevices: [cpu]\n");
    if (!c) return;
    CHECK(c->model.path == NULL && !strcmp(c->model.preset, "qwen2.5-0.5b") && c->model.quant[0] == 0);
    CHECK(c->n_devices == 1 && c->devices[0].kind == ST_CONFIG_DEV_CPU);
    CHECK(c->devices[0].max_memory_bytes == 0 && c->devices[0].reserve_bytes == 0 && c->devices[0].threads == 0);
    CHECK(c->devices[0].precision == ST_CONFIG_AUTO && c->devices[0].attention == ST_CONFIG_AUTO);
    CHECK(c->placement.strategy == ST_CONFIG_STRATEGY_AUTO);
    CHECK(c->placement.objective == ST_CONFIG_OBJECTIVE_LATENCY);
    CHECK(c->placement.precision == ST_CONFIG_AUTO && c->placement.attention == ST_CONFIG_AUTO);
    CHECK(c->placement.n_manual == 0 && c->placement.manual == NULL);
    CHECK(c->transport == ST_CONFIG_TRANSPORT_AUTO);
    /* the numbers docs/config.md promises */
    CHECK(c->context == 4096 && c->batch == 1 && c->prefill_chunk == 512);
    const struct st_config_generation *g = &c->generation;
    CHECK(g->max_tokens == 256);
    CHECK(g->temperature == 0.8f && g->top_k == 40 && g->top_p == 0.95f && g->min_p == 0.05f);
    CHECK(g->repeat_penalty == 1.0f && g->repeat_last_n == 64);
    CHECK(g->frequency_penalty == 0.0f && g->presence_penalty == 0.0f);
    CHECK(!g->has_seed && g->n_stop == 0 && g->stop == NULL);
    CHECK(g->chat_template == ST_CONFIG_CHAT_AUTO && g->system == NULL);
    st_config_free(c);

    /* preset with quant, case folded; seed -1 means random; stop as one string */
    c = parse("q.yaml", "version: 1\nmodel: {preset: llama-3.1-8b, quant: Q4_K_M}\ndevices: [cuda:3]\n"
                        "generation: {seed: -1, stop: END}\n");
    if (!c) return;
    CHECK(!strcmp(c->model.quant, "q4_k_m"));
    CHECK(c->devices[0].index == 3);
    CHECK(!c->generation.has_seed);
    CHECK(c->generation.n_stop == 1 && !strcmp(c->generation.stop[0], "END"));
    st_config_free(c);

    /* manual: given without strategy means manual */
    c = parse("m.yaml", HEAD "devices: [cpu, cuda:0]\nplacement:\n  manual: [{device: cuda:0, layers: 0-3}, "
                             "{device: 0, layers: 4-27}]\n");
    if (!c) return;
    CHECK(c->placement.strategy == ST_CONFIG_STRATEGY_MANUAL && c->placement.n_manual == 2);
    CHECK(c->placement.manual[0].device == 1 && c->placement.manual[1].device == 0);
    st_config_free(c);
}

static void test_sizes(void) {
    static const struct { const char *text; uint64_t bytes; } cases[] = {
        {"512MiB", 536870912ull},
        {"22GiB", 23622320128ull},
        {"22GB", 22000000000ull},
        {"1.5 GB", 1500000000ull},
        {"4096", 4096ull},
        {"0", 0ull},
        {"8g", 8589934592ull},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, HEAD "devices:\n  - {device: cuda:0, max_memory: %s}\n", cases[i].text);
        struct st_deploy_config *c = parse("size.yaml", yaml);
        if (!c) continue;
        CHECK_MSG(c->devices[0].max_memory_bytes == cases[i].bytes, "%s -> %llu, want %llu", cases[i].text,
                  (unsigned long long)c->devices[0].max_memory_bytes, (unsigned long long)cases[i].bytes);
        st_config_free(c);
    }
}

static void test_relative_path(void) {
    const char *yaml = "version: 1\nmodel: {path: models/tiny.gguf}\ndevices: [cpu]\n";
    struct st_deploy_config *c = parse("configs/lab/deploy.yaml", yaml);
    if (c) { CHECK(!strcmp(c->model.path, "configs/lab/models/tiny.gguf")); st_config_free(c); }
    c = parse("/etc/strata/deploy.yaml", yaml);
    if (c) { CHECK(!strcmp(c->model.path, "/etc/strata/models/tiny.gguf")); st_config_free(c); }
    c = parse("deploy.yaml", yaml);
    if (c) { CHECK(!strcmp(c->model.path, "models/tiny.gguf")); st_config_free(c); }
    c = parse("configs/lab/deploy.yaml", "version: 1\nmodel: {path: /abs/m.gguf}\ndevices: [cpu]\n");
    if (c) { CHECK(!strcmp(c->model.path, "/abs/m.gguf")); st_config_free(c); }
    c = parse("a/b.yaml", "version: 1\nmodel: {path: ../m}\ndevices: [cpu]\n");
    if (c) { CHECK(!strcmp(c->model.path, "a/../m")); st_config_free(c); }

    /* st_config_load resolves against the file's own directory */
    st_status s = st_config_load("tests/config/sub/relative.yaml", &c);
    CHECK_MSG(s == ST_OK, "%s", st_last_error());
    if (s == ST_OK) {
        CHECK_MSG(!strcmp(c->model.path, "tests/config/sub/../../fixtures/models/qwen2-tiny/hf"), "%s", c->model.path);
        CHECK(!strcmp(c->source, "tests/config/sub/relative.yaml"));
        st_config_free(c);
    }
}

/* The acceptance bullets and the other errors, message by message. */
static void test_errors(void) {
    /* typo'd key with its suggestion */
    EXPECT_ERROR("t.yaml", "version: 1\nmodel: {preset: qwen2.5-7b}\ndevcies: [cpu]\n",
                 "t.yaml:3:1: unknown key 'devcies'\nhint: did you mean 'devices'?");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - device: cpu\n    max_memroy: 1GiB\n",
                 "t.yaml:5:5: devices[0]: unknown key 'max_memroy'\nhint: did you mean 'max_memory'?");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ngeneration: {temprature: 0.5}\n",
                 "t.yaml:4:14: generation: unknown key 'temprature'\nhint: did you mean 'temperature'?");
    /* unknown key with nothing near: the valid keys are listed */
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\nplacement: {zzzzzzzzzzzz: 1}\n",
                 "t.yaml:4:13: placement: unknown key 'zzzzzzzzzzzz'\nhint: valid keys under placement: strategy, "
                 "objective, precision, attention, kv_dtype, manual, numerics (docs/config.md)");
    EXPECT_ERROR("t.yaml", "version: 1\nwibble: 3\n",
                 "t.yaml:2:1: unknown key 'wibble'\nhint: valid keys at the top level: version, model, devices, "
                 "placement, transport, network, context, batch, prefill_chunk, generation (docs/config.md)");

    /* wrong types */
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ncontext: [4096]\n",
                 "t.yaml:4:10: context: expected a whole number, found a list\nhint: write it as, e.g., 'context: 4096'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ncontext: \"4096\"\n",
                 "t.yaml:4:10: context: expected a whole number, found the string '4096'\n"
                 "hint: write it as, e.g., 'context: 4096'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\nbatch: 1.5\n",
                 "t.yaml:4:8: batch: expected a whole number, found the number 1.5\nhint: write it as, e.g., 'batch: 1'");
    EXPECT_ERROR("t.yaml", HEAD "devices: cpu\n",
                 "t.yaml:3:10: devices: expected a list, found the string 'cpu'\n"
                 "hint: write it as, e.g., 'devices: [cuda:0, cpu]'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ngeneration: {temperature: hot}\n",
                 "t.yaml:4:27: generation.temperature: expected a number, found the string 'hot'\n"
                 "hint: write it as, e.g., 'temperature: 0.7'");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {device: cpu, caps: {bf16: yes}}\n",
                 "t.yaml:4:32: devices[0].caps.bf16: expected a boolean, found the string 'yes'\nhint: write true or false");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {device: cuda:0, max_memory: true}\n",
                 "t.yaml:4:34: devices[0].max_memory: expected a size such as 512MiB, 22GiB or 22GB, found the boolean true\n"
                 "hint: write it as, e.g., 'max_memory: 22GiB'");
    EXPECT_ERROR("t.yaml", "version: 1\nmodel: qwen\n",
                 "t.yaml:2:8: model: expected a mapping, found the string 'qwen'\n"
                 "hint: write it as, e.g., 'model: {path: models/qwen2.5-0.5b-instruct-q8_0.gguf}'");
    EXPECT_ERROR("t.yaml", "- version: 1\n",
                 "t.yaml:1:1: a deployment config is a mapping of keys, found a list\n"
                 "hint: start with 'version: 1', then model:, devices: ... (docs/config.md)");

    /* negative size, and other bad sizes */
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - device: cuda:0\n    reserve: -512MiB\n",
                 "t.yaml:5:14: devices[0].reserve: size '-512MiB' is negative\n"
                 "hint: write a size such as 512MiB, 22GiB or 22GB (0 for none), e.g. 'reserve: 512MiB'");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {device: cuda:0, max_memory: 22GiBs}\n",
                 "t.yaml:4:34: devices[0].max_memory: size '22GiBs' has unknown unit 'gibs'\n"
                 "hint: use B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000), e.g. 22GiB");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {device: cuda:0, max_memory: 1GiB, reserve: 2GiB}\n",
                 "t.yaml:4:49: devices[0].reserve: reserve 2.00 GiB leaves nothing of max_memory 1.00 GiB\n"
                 "hint: the reserve is taken out of max_memory; make it smaller than max_memory");

    /* duplicate keys, both positions named */
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ncontext: 4096\nbatch: 1\ncontext: 8192\n",
                 "t.yaml:6:1: context: duplicate key 'context' (first at line 4, column 1)\n"
                 "hint: keep one of the two; YAML keys in one mapping must be unique");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - device: cpu\n    threads: 4\n    threads: 8\n",
                 "t.yaml:6:5: devices[0].threads: duplicate key 'threads' (first at line 5, column 5)\n"
                 "hint: keep one of the two; YAML keys in one mapping must be unique");

    /* YAML syntax errors: libyaml's problem and position */
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu\n",
                 "t.yaml:4:1: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence "
                 "started at line 3, column 10)\nhint: check the indentation and quoting at line 4; quote values "
                 "that contain ': ', '#' or start with '{', '[', '*', '&', '!', '%' or '@'");
    EXPECT_ERROR("t.yaml", HEAD "devices: cpu: 1\n",
                 "t.yaml:3:13: YAML syntax error: mapping values are not allowed in this context\nhint: check the "
                 "indentation and quoting at line 3; quote values that contain ': ', '#' or start with '{', '[', "
                 "'*', '&', '!', '%' or '@'");
    EXPECT_ERROR("t.yaml", "version: 1\nmodel:\n\tpreset: qwen2.5-7b\n",
                 "t.yaml:3:1: YAML syntax error: found character that cannot start any token (while scanning for "
                 "the next token started at line 3, column 1)\nhint: YAML indents with spaces only; replace the tab");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\n---\nversion: 1\n",
                 "t.yaml:5:1: a second YAML document starts here\n"
                 "hint: a deployment config is one document; remove the '---' line and what follows");
    EXPECT_ERROR("t.yaml", "", "t.yaml: the file holds no YAML document\n"
                 "hint: start with 'version: 1', then model:, devices: ... (docs/config.md has examples)");

    /* unknown device selectors */
    EXPECT_ERROR("t.yaml", HEAD "devices: [cuda:0, gpu:0]\n",
                 "t.yaml:3:19: devices[1]: unknown device selector 'gpu:0'\nhint: write cpu, cuda:N (e.g. cuda:0), "
                 "cuda:GPU-<uuid> (from nvidia-smi -L), or {catalog: NAME} for a card you do not have "
                 "(e.g. {catalog: tesla-m40})");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - device: cuda\n",
                 "t.yaml:4:13: devices[0].device: unknown device selector 'cuda'\nhint: write cpu, cuda:N (e.g. cuda:0), "
                 "cuda:GPU-<uuid> (from nvidia-smi -L), or {catalog: NAME} for a card you do not have "
                 "(e.g. {catalog: tesla-m40})");
    EXPECT_ERROR("t.yaml", HEAD "devices: [catalog:tesla-m40]\n",
                 "t.yaml:3:11: devices[0]: unknown device selector 'catalog:tesla-m40'\n"
                 "hint: write a catalog device as a mapping: {catalog: tesla-m40}");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cuda:GPU-xyz]\n",
                 "t.yaml:3:11: devices[0]: 'GPU-xyz' is not a GPU UUID\nhint: copy the UUID from 'nvidia-smi -L' or "
                 "'strata inventory', e.g. cuda:GPU-5f2a7c3e-1b2d-4c8e-9a0b-0123456789ab");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {name: a, threads: 2}\n",
                 "t.yaml:4:5: devices[0]: names no device\n"
                 "hint: add 'device: cuda:0' (or cpu, cuda:GPU-<uuid>) or 'catalog: NAME'");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {device: cuda:0, catalog: tesla-m40}\n",
                 "t.yaml:4:31: devices[0]: has both device and catalog\nhint: a device is either real (device: cuda:0) "
                 "or from the catalog (catalog: tesla-m40); to run a real card as a catalog one, use emulate:");
    EXPECT_ERROR("t.yaml", HEAD "devices: []\n",
                 "t.yaml:3:10: devices: the list is empty\nhint: name at least one device, e.g. 'devices: [cpu]'");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {catalog: Tesla-M40}\n",
                 "t.yaml:4:15: devices[0].catalog: 'Tesla-M40' is not a catalog card name\n"
                 "hint: catalog names are lower-case words joined by '-', e.g. tesla-m40, rtx-3090, h100-sxm");

    /* catalog names are checked against the GPU catalog (devices/catalog.c) */
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {catalog: tesla-m41}\n",
                 "t.yaml:4:15: devices[0].catalog: unknown catalog card 'tesla-m41'\n"
                 "hint: did you mean 'tesla-m40'? (configs/catalog.yaml lists every card)");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - device: cuda:0\n    emulate: tesla-p41\n",
                 "t.yaml:5:14: devices[0].emulate: unknown catalog card 'tesla-p41'\n"
                 "hint: did you mean 'tesla-p40'? (configs/catalog.yaml lists every card)");

    /* per-device keys that do not apply */
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {device: cuda:0, threads: 8}\n",
                 "t.yaml:4:31: devices[0].threads: applies only to the cpu device\nhint: remove threads from cuda:0");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {device: cpu, emulate: tesla-m40}\n",
                 "t.yaml:4:28: devices[0].emulate: applies only to a real CUDA device\n"
                 "hint: emulate makes a CUDA card behave like a catalog card; remove it from cpu");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {device: cpu, name: a}\n  - {device: cuda:0, name: a}\n",
                 "t.yaml:5:28: devices[1].name: the name 'a' is already used by devices[0] (line 4)\n"
                 "hint: give every device its own name");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {device: cpu, name: 0x}\n",
                 "t.yaml:4:25: devices[0].name: '0x' is not a usable device name\n"
                 "hint: use letters, digits, '-', '_' and '.', starting with a letter, e.g. 'name: m40'");

    /* version */
    EXPECT_ERROR("t.yaml", "model: {preset: qwen2.5-7b}\ndevices: [cpu]\n",
                 "t.yaml:1:1: version: missing\nhint: add 'version: 1' as the first line");
    EXPECT_ERROR("t.yaml", "version: 2\nmodel: {preset: qwen2.5-7b}\ndevices: [cpu]\n",
                 "t.yaml:1:10: version: this strata reads config version 1, not 2\n"
                 "hint: write 'version: 1' and check the keys against docs/config.md");

    /* model */
    EXPECT_ERROR("t.yaml", "version: 1\ndevices: [cpu]\n",
                 "t.yaml:1:1: model: missing\n"
                 "hint: add 'model: {path: FILE.gguf}' or, for a dry run, 'model: {preset: qwen2.5-7b}'");
    EXPECT_ERROR("t.yaml", "version: 1\nmodel: {path: a.gguf, preset: qwen2.5-7b}\ndevices: [cpu]\n",
                 "t.yaml:2:31: model.preset: both model.path and model.preset are given\n"
                 "hint: keep path for a real model file, or preset for a dry run without one");
    EXPECT_ERROR("t.yaml", "version: 1\nmodel: {}\ndevices: [cpu]\n",
                 "t.yaml:2:8: model: needs path or preset\nhint: e.g. 'path: models/qwen2.5-0.5b-instruct-q8_0.gguf' "
                 "or, for a dry run, 'preset: qwen2.5-7b'");
    EXPECT_ERROR("t.yaml", "version: 1\nmodel: {path: a.gguf, quant: q8_0}\ndevices: [cpu]\n",
                 "t.yaml:2:30: model.quant: applies only to a preset\n"
                 "hint: a model file's dtypes come from the file; remove quant or use preset");
    EXPECT_ERROR("t.yaml", "version: 1\nmodel: {preset: qwen2.5-7b, quant: q8_O}\ndevices: [cpu]\n",
                 "t.yaml:2:36: model.quant: unknown weight type 'q8_O'\n"
                 "hint: did you mean 'q8_0'? presets take f32, f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m, q4_0");
    EXPECT_ERROR("t.yaml", "version: 1\nmodel: {preset: qwen2.5-7b, quant: q4_k_s}\ndevices: [cpu]\n",
                 "t.yaml:2:36: model.quant: unknown weight type 'q4_k_s'\n"
                 "hint: did you mean 'q4_k_m'? presets take f32, f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m, q4_0");
    EXPECT_ERROR("t.yaml", "version: 1\nmodel: {preset: qwen2.5-7c}\ndevices: [cpu]\n",
                 "t.yaml:2:17: model.preset: unknown preset 'qwen2.5-7c'\n"
                 "hint: did you mean 'qwen2.5-7b'? configs/presets.yaml lists the presets");
    EXPECT_ERROR("t.yaml", "version: 1\nmodel: {preset: gpt-4}\ndevices: [cpu]\n",
                 "t.yaml:2:17: model.preset: unknown preset 'gpt-4'\n"
                 "hint: presets: qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-3b, qwen2.5-7b, qwen2.5-14b, qwen2.5-32b, "
                 "qwen2.5-72b, qwen3-0.6b, qwen3-1.7b, qwen3-4b, qwen3-8b, qwen3-14b, qwen3-32b, llama-2-7b, "
                 "llama-3.1-8b, llama-3.1-70b, llama-3.3-70b (configs/presets.yaml); for a real model use 'path:'");
    EXPECT_ERROR("t.yaml", "version: 1\nmodel: {preset: qwen2.5-7b}\n",
                 "t.yaml:1:1: devices: missing\n"
                 "hint: add e.g. 'devices: [cuda:0, cpu]' ('strata inventory' lists this machine's)");

    /* out-of-range values */
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ncontext: 0\n",
                 "t.yaml:4:10: context: 0 is out of range: it must be in 1..16777216\n"
                 "hint: write it as, e.g., 'context: 4096'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ngeneration:\n  temperature: -0.5\n",
                 "t.yaml:5:16: generation.temperature: -0.5 is out of range: it must be in 0..100 (0 = greedy)\n"
                 "hint: write it as, e.g., 'temperature: 0.7'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ngeneration: {top_p: 0}\n",
                 "t.yaml:4:21: generation.top_p: 0 is out of range: it must be in (0, 1] (1 = off)\n"
                 "hint: write it as, e.g., 'top_p: 0.95'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ngeneration: {top_p: 1.01}\n",
                 "t.yaml:4:21: generation.top_p: 1.01 is out of range: it must be in (0, 1] (1 = off)\n"
                 "hint: write it as, e.g., 'top_p: 0.95'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ngeneration: {min_p: 1}\n",
                 "t.yaml:4:21: generation.min_p: 1 is out of range: it must be in [0, 1) (0 = off)\n"
                 "hint: write it as, e.g., 'min_p: 0.05'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ngeneration: {top_k: -1}\n",
                 "t.yaml:4:21: generation.top_k: -1 is out of range: it must be in 0..2147483647\n"
                 "hint: write it as, e.g., 'top_k: 40'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ngeneration: {seed: -7}\n",
                 "t.yaml:4:20: generation.seed: -7 is out of range: it must be at least 0 (or -1 for random)\n"
                 "hint: write it as, e.g., 'seed: 42'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ngeneration: {seed: 18446744073709551616}\n",
                 "t.yaml:4:20: generation.seed: 18446744073709551616 is larger than 2^64-1\n"
                 "hint: use a seed in 0..18446744073709551615, or -1 for a random seed");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ngeneration: {stop: [a, '']}\n",
                 "t.yaml:4:24: generation.stop[1]: an empty stop string would stop at once\n"
                 "hint: remove it; the model's end-of-turn tokens always stop generation");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {device: cpu, threads: 5000}\n",
                 "t.yaml:4:28: devices[0].threads: 5000 is out of range: it must be in 0..4096\n"
                 "hint: write it as, e.g., 'threads: 16'");

    /* enums */
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\nplacement: {objective: throughtput}\n",
                 "t.yaml:4:24: placement.objective: unknown value 'throughtput'\n"
                 "hint: did you mean 'throughput'? allowed: latency or throughput");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ntransport: ncl\n",
                 "t.yaml:4:12: transport: unknown value 'ncl'\nhint: did you mean 'nccl'? allowed: auto, peer, nccl or host");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\ntransport: shared-memory\n",
                 "t.yaml:4:12: transport: unknown value 'shared-memory'\nhint: allowed: auto, peer, nccl or host");
    EXPECT_ERROR("t.yaml", HEAD "devices:\n  - {device: cuda:0, precision: fp8}\n",
                 "t.yaml:4:33: devices[0].precision: unknown value 'fp8'\n"
                 "hint: did you mean 'fp32'? allowed: auto, fp32, fp16 or bf16");

    /* manual placement */
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu, cuda:0]\nplacement:\n  manual:\n    - {device: 0, layers: 13-0}\n",
                 "t.yaml:6:27: placement.manual[0].layers: the layer range 13-0 is reversed\n"
                 "hint: write first-last with first <= last, e.g. '0-13'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu, cuda:0]\nplacement:\n  manual:\n    - {device: 0, layers: 0-9}\n"
                           "    - {device: 1, layers: 12-27}\n",
                 "t.yaml:7:27: placement.manual[1].layers: layers 12-27 leave out layers 10-11\n"
                 "hint: stages are contiguous and in order: this one should start at layer 10");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu, cuda:0]\nplacement:\n  manual:\n    - {device: 0, layers: 0-9}\n"
                           "    - {device: 1, layers: [9, 27]}\n",
                 "t.yaml:7:27: placement.manual[1].layers: layers 9-27 overlap the previous stage (which ends at layer 9)\n"
                 "hint: stages are contiguous and in order: this one should start at layer 10");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu, cuda:0]\nplacement:\n  manual:\n    - {device: 0, layers: 1-9}\n",
                 "t.yaml:6:27: placement.manual[0].layers: the first stage starts at layer 1, not 0\n"
                 "hint: stages are contiguous and in order: this one should start at layer 0");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu, cuda:0]\nplacement:\n  manual:\n    - {device: 2, layers: 0-9}\n",
                 "t.yaml:6:16: placement.manual[0].device: device index 2 is out of range: devices has 2 entries\n"
                 "hint: index devices from 0, or use a device's name");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu, cuda:0]\nplacement:\n  manual:\n    - {device: cuda:7, layers: 0-9}\n",
                 "t.yaml:6:16: placement.manual[0].device: no device is named 'cuda:7'\nhint: did you mean 'cuda:0'?");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cuda:0, cuda:0]\nplacement:\n  manual:\n    - {device: cuda:0, layers: 0-9}\n",
                 "t.yaml:6:16: placement.manual[0].device: 'cuda:0' matches devices[0] and devices[1]\n"
                 "hint: give the devices names (name: ...) and refer to them by name");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\nplacement:\n  manual:\n    - {device: 0, layers: zero-nine}\n",
                 "t.yaml:6:27: placement.manual[0].layers: expected a layer range 'first-last', found the string "
                 "'zero-nine'\nhint: write it as, e.g., 'layers: 0-13'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\nplacement:\n  manual:\n    - {device: 0}\n",
                 "t.yaml:6:7: placement.manual[0]: needs layers\nhint: each stage is {device: <index or name>, "
                 "layers: first-last}, e.g. {device: 0, layers: 0-13}");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\nplacement: {strategy: manual}\n",
                 "t.yaml:4:23: placement.strategy: manual placement needs placement.manual\nhint: list the stages: "
                 "'manual: [{device: 0, layers: 0-13}, {device: 1, layers: 14-27}]'");
    EXPECT_ERROR("t.yaml", HEAD "devices: [cpu]\nplacement:\n  strategy: auto\n  manual: [{device: 0, layers: 0-1}]\n",
                 "t.yaml:6:11: placement.manual: is given but placement.strategy is auto\nhint: set 'strategy: manual' "
                 "to use these ranges, or remove manual to let the planner place layers");
}

static void test_missing_file(void) {
    struct st_deploy_config *c = (struct st_deploy_config *)0x1;
    st_status s = st_config_load("tests/config/no-such-file.yaml", &c);
    CHECK(s == ST_ERR_CONFIG && c == NULL);
    CHECK(st_status_exit_code(s) == 2);
    CHECK_MSG(!strcmp(st_last_error(), "tests/config/no-such-file.yaml: cannot open the deployment config: No such "
                                       "file or directory\nhint: check the path (relative to the current directory); "
                                       "examples are in configs/ and every key is in docs/config.md"),
              "%s", st_last_error());
    s = st_config_load("tests/config", &c);
    CHECK_MSG(s == ST_ERR_CONFIG && strstr(st_last_error(), "tests/config: not a regular file"), "%s", st_last_error());
}

/* Every file under configs/examples/ and every good-*.yaml here loads. */
static void test_examples(void) {
    const char *dirs[] = {"configs/examples", "tests/config"};
    int n_loaded = 0;
    for (size_t k = 0; k < ST_ARRAY_LEN(dirs); k++) {
        DIR *dir = opendir(dirs[k]);
        CHECK_MSG(dir != NULL, "cannot open %s", dirs[k]);
        if (!dir) continue;
        struct dirent *e;
        while ((e = readdir(dir))) {
            size_t n = strlen(e->d_name);
            if (n < 6 || strcmp(e->d_name + n - 5, ".yaml")) continue;
            if (k == 1 && strncmp(e->d_name, "good-", 5)) continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dirs[k], e->d_name);
            struct st_deploy_config *c = NULL;
            st_status s = st_config_load(path, &c);
            CHECK_MSG(s == ST_OK, "%s: %s", path, st_last_error());
            st_config_free(c);
            n_loaded++;
        }
        closedir(dir);
    }
    CHECK_MSG(n_loaded >= 8, "only %d example configs found", n_loaded);
}

/* Every ```yaml block in docs/config.md that starts with 'version:' (after
 * any comment lines; "```yaml FILE" blocks show a file verbatim) is a config
 * that loads, so the documentation cannot drift from the parser. */
static void test_doc_examples(void) {
    char *doc = NULL;
    st_status s = st_read_file("docs/config.md", &doc, NULL);
    CHECK_MSG(s == ST_OK, "%s", st_last_error());
    if (s) return;
    int n = 0;
    for (char *p = strstr(doc, "```yaml"); p; p = strstr(p, "```yaml")) {
        p = strchr(p, '\n');
        if (!p) break;
        p++;
        char *end = strstr(p, "```");
        if (!end) break;
        const char *v = p;
        while (v < end && *v == '#' && strchr(v, '\n')) v = strchr(v, '\n') + 1;   /* a file's header comment */
        if (!strncmp(v, "version:", 8)) {
            struct st_deploy_config *c = NULL;
            s = st_config_parse(p, (size_t)(end - p), "docs/config.md", &c);
            CHECK_MSG(s == ST_OK, "docs/config.md example %d: %s", n, st_last_error());
            st_config_free(c);
            n++;
        }
        p = end + 3;
    }
    CHECK_MSG(n >= 6, "only %d examples found in docs/config.md", n);
    free(doc);
}

/* Every prefix of a full config and every one-byte corruption of it either
 * loads or fails with ST_ERR_CONFIG, a message that starts with the file name
 * and a hint line; never a crash (run under ASan in tools/test.sh). */
static void test_mutations(void) {
    char *text = NULL;
    size_t len = 0;
    st_status s = st_read_file("configs/examples/emulate-m40.yaml", &text, &len);
    CHECK_MSG(s == ST_OK, "%s", st_last_error());
    if (s) return;
    static const char bytes[] = {' ', ':', '-', '[', '{', '\t', '\n', '"', '#', 'x', '9', '&', '*', '\0', (char)0xff};
    int bad = 0, tried = 0;
    char *buf = malloc(len + 1);
    for (size_t cut = 0; cut <= len; cut++) {
        for (int m = -1; m < (int)sizeof bytes; m++) {
            size_t n = cut;
            memcpy(buf, text, len);
            if (m >= 0) {
                if (cut == len) break;
                buf[cut] = bytes[m];   /* corrupt one byte, keep the length */
                n = len;
            }
            struct st_deploy_config *c = NULL;
            st_status r = st_config_parse(buf, n, "mut.yaml", &c);
            tried++;
            if (r == ST_OK) { st_config_free(c); continue; }
            const char *e = st_last_error();
            if (r != ST_ERR_CONFIG || strncmp(e, "mut.yaml", 8) || !strstr(e, "\nhint: ") || c) {
                if (bad++ < 5) fprintf(stderr, "mutation cut=%zu m=%d: status %s: %s\n", cut, m, st_status_name(r), e);
            }
        }
    }
    CHECK_MSG(bad == 0, "%d of %d mutated configs gave a bad error", bad, tried);
    free(buf);
    free(text);
}

int main(void) {
    test_full();
    test_defaults();
    test_sizes();
    test_relative_path();
    test_errors();
    test_missing_file();
    test_examples();
    test_doc_examples();
    test_mutations();
    return st_test_finish("config");
}
