/* `strata inventory` as a user runs it (argv[1] = the strata binary):
 * --json parses (jansson) and lists the CPU topology, each device's backend,
 * path, optional ops and weight types; --yaml parses (libyaml)
 * with the same facts; the table names the CPU; CUDA_VISIBLE_DEVICES="" says
 * why no GPU is shown; a quick --probe writes a profile that loads and that
 * --profile shows again. */
#include "check.h"
#include "devices/device.h"

#include <sched.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <yaml.h>

static const char *strata;

/* Runs `[env] strata args` through the shell; returns stdout (malloc'ed) and the exit code. */
static char *run(const char *env, const char *args, int *rc) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s '%s' %s 2>/dev/null", env ? env : "", strata, args);
    FILE *p = popen(cmd, "r");
    if (!p) { *rc = -1; return NULL; }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (cap - n < 4096) buf = realloc(buf, cap *= 2);
    }
    buf[n] = 0;
    int st = pclose(p);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return buf;
}

static json_t *run_json(const char *env, const char *args) {
    int rc = -1;
    char *out = run(env, args, &rc);
    CHECK_MSG(rc == 0, "strata %s exited %d", args, rc);
    json_error_t err;
    json_t *root = out ? json_loads(out, 0, &err) : NULL;
    CHECK_MSG(root != NULL, "strata %s: not JSON: %d:%d: %s", args, err.line, err.column, err.text);
    free(out);
    return root;
}

static int n_cuda(json_t *devs) {
    int n = 0;
    size_t i;
    json_t *d;
    json_array_foreach(devs, i, d) n += strcmp(json_string_value(json_object_get(d, "kind")), "cuda") == 0;
    return n;
}

/* The weight types and backend of one device, written out from devices/<name>/register.c. */
static const char *const all_types[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl",
                                        "q4_k", "q5_k", "q6_k"};
static bool names_are(json_t *a, const char *const *want, size_t n) {
    if (!json_is_array(a) || json_array_size(a) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (!json_is_string(json_array_get(a, i)) || strcmp(json_string_value(json_array_get(a, i)), want[i])) return false;
    return true;
}
static void check_backend(json_t *d, bool cpu) {
    json_t *caps = json_object_get(d, "caps"), *b = json_object_get(d, "backend");
    CHECK_MSG(names_are(json_object_get(caps, "weight_dtypes"), all_types, ST_ARRAY_LEN(all_types)),
              "%s: weight_dtypes", json_string_value(json_object_get(d, "selector")));
    CHECK(json_is_true(json_object_get(b, "built")));
    CHECK(!strcmp(json_string_value(json_object_get(b, "name")), cpu ? "cpu" : "cuda"));
    if (cpu) {
        static const char *const ops[] = {"import_host", "matmul_multi", "matmul_swiglu", "events", "pipeline", "kv_q8_0"};
        CHECK(!strcmp(json_string_value(json_object_get(b, "path")), "default"));
        CHECK(names_are(json_object_get(b, "ops"), ops, ST_ARRAY_LEN(ops)));
    } else {
        const bool maxwell = json_integer_value(json_object_get(caps, "cc_major")) < 6;
        CHECK(!strcmp(json_string_value(json_object_get(b, "path")), maxwell ? "maxwell" : "default"));
        CHECK(json_array_size(json_object_get(b, "ops")) == (maxwell ? 9u : 10u));
    }
}

static void test_json(json_t *root) {
    json_t *m = json_object_get(root, "machine");
    json_t *pk = json_object_get(root, "packages"), *nn = json_object_get(root, "numa_nodes");
    json_t *devs = json_object_get(root, "devices");
    CHECK(json_is_object(m) && json_is_array(pk) && json_is_array(nn) && json_is_array(devs));
    CHECK(json_integer_value(json_object_get(root, "strata_inventory")) == 1);
    CHECK(json_array_size(pk) >= 1);
    CHECK((json_int_t)json_array_size(pk) == json_integer_value(json_object_get(m, "packages")));
    CHECK(json_array_size(nn) >= 1);
    CHECK(json_integer_value(json_object_get(m, "cores")) >= 1);
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    CHECK(json_integer_value(json_object_get(m, "threads")) == CPU_COUNT(&set));
    json_t *cpu = json_array_get(devs, 0);
    CHECK(cpu && strcmp(json_string_value(json_object_get(cpu, "kind")), "cpu") == 0);
    CHECK(cpu && strcmp(json_string_value(json_object_get(cpu, "selector")), "cpu") == 0);
    CHECK(cpu && json_equal(json_object_get(cpu, "name"), json_object_get(json_array_get(pk, 0), "name")));
    CHECK(cpu && json_integer_value(json_object_get(cpu, "cores")) == json_integer_value(json_object_get(m, "cores")));
    CHECK(cpu && json_is_true(json_object_get(json_object_get(cpu, "caps"), "fp32_accum_fp16")));
    if (cpu) check_backend(cpu, true);
    int g = n_cuda(devs);
    CHECK((int)json_array_size(devs) == g + 1);
    CHECK((int)json_array_size(json_object_get(root, "p2p")) == g * (g - 1));
    json_t *reason = json_object_get(root, "no_gpu_reason");
    if (g == 0) CHECK_MSG(json_is_string(reason) && json_string_length(reason) > 10, "no GPU and no reason");
    else CHECK(json_is_null(reason));
    for (int i = 1; i <= g; i++) {
        json_t *d = json_array_get(devs, (size_t)i);
        CHECK(json_is_string(json_object_get(d, "cc")) && json_is_string(json_object_get(d, "uuid")));
        CHECK(json_integer_value(json_object_get(d, "mem_total_bytes")) > 0);
        CHECK(json_is_integer(json_object_get(d, "numa_node")) || json_is_null(json_object_get(d, "numa_node")));
        check_backend(d, false);
    }
}

/* ---- YAML: load the document and compare with the JSON facts ------------------ */

static yaml_node_t *ymap_get(yaml_document_t *doc, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

static const char *yscalar(yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
}

static void test_yaml(json_t *json) {
    int rc = -1;
    char *out = run(NULL, "inventory --yaml", &rc);
    CHECK(rc == 0 && out);
    if (!out) return;
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)out, strlen(out));
    int ok = yaml_parser_load(&parser, &doc);
    CHECK_MSG(ok, "YAML does not parse: %s at line %zu", parser.problem ? parser.problem : "?", parser.problem_mark.line + 1);
    if (ok) {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        yaml_node_t *devs = ymap_get(&doc, root, "devices");
        CHECK(devs && devs->type == YAML_SEQUENCE_NODE);
        json_t *jdevs = json_object_get(json, "devices");
        if (devs && devs->type == YAML_SEQUENCE_NODE) {
            long n = devs->data.sequence.items.top - devs->data.sequence.items.start;
            CHECK_MSG(n == (long)json_array_size(jdevs), "yaml devices %ld, json %zu", n, json_array_size(jdevs));
            yaml_node_t *d0 = yaml_document_get_node(&doc, devs->data.sequence.items.start[0]);
            CHECK(strcmp(yscalar(ymap_get(&doc, d0, "name")),
                         json_string_value(json_object_get(json_array_get(jdevs, 0), "name"))) == 0);
            CHECK(strcmp(yscalar(ymap_get(&doc, d0, "cpuset")),
                         json_string_value(json_object_get(json_array_get(jdevs, 0), "cpuset"))) == 0);
            /* the CPU's weight types: a sequence of the same names */
            yaml_node_t *wd = ymap_get(&doc, ymap_get(&doc, d0, "caps"), "weight_dtypes");
            CHECK(wd && wd->type == YAML_SEQUENCE_NODE &&
                  wd->data.sequence.items.top - wd->data.sequence.items.start == (long)ST_ARRAY_LEN(all_types));
            for (long k = 0; wd && wd->type == YAML_SEQUENCE_NODE && k < (long)ST_ARRAY_LEN(all_types) &&
                             k < wd->data.sequence.items.top - wd->data.sequence.items.start; k++)
                CHECK(!strcmp(yscalar(yaml_document_get_node(&doc, wd->data.sequence.items.start[k])), all_types[k]));
        }
        yaml_node_t *m = ymap_get(&doc, root, "machine");
        CHECK(atoll(yscalar(ymap_get(&doc, m, "cores"))) ==
              json_integer_value(json_object_get(json_object_get(json, "machine"), "cores")));
        const char *reason = yscalar(ymap_get(&doc, root, "no_gpu_reason"));
        json_t *jr = json_object_get(json, "no_gpu_reason");
        CHECK(json_is_null(jr) ? strcmp(reason, "null") == 0 : strcmp(reason, json_string_value(jr)) == 0);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    free(out);
}

static void test_table(json_t *json) {
    int rc = -1;
    char *out = run(NULL, "inventory", &rc);
    CHECK(rc == 0 && out);
    if (!out) return;
    const char *name = json_string_value(json_object_get(json_array_get(json_object_get(json, "devices"), 0), "name"));
    CHECK_MSG(strstr(out, name) != NULL, "table lacks the CPU name '%s'", name);
    CHECK(strstr(out, "topology") && strstr(out, "package ") && strstr(out, "NUMA node "));
    CHECK(strstr(out, "\033[") == NULL);   /* not a terminal: no colour */
    if (n_cuda(json_object_get(json, "devices")) == 0) CHECK(strstr(out, "no GPU shown:") != NULL);
    CHECK(strstr(out, "\nweight types (the stored dtypes each device's matmul runs; docs/backends.md)\n"
                      "  cpu     cpu default   f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl q4_k q5_k q6_k\n") != NULL);
    free(out);
}

static void test_hidden_gpus(void) {
    json_t *root = run_json("CUDA_VISIBLE_DEVICES=", "inventory --json");
    if (root) {
        CHECK(json_array_size(json_object_get(root, "devices")) == 1);
        const char *r = json_string_value(json_object_get(root, "no_gpu_reason"));
        CHECK_MSG(r && strstr(r, "CUDA_VISIBLE_DEVICES"), "reason: %s", r ? r : "(null)");
        json_decref(root);
    }
    int rc = -1;
    char *out = run("CUDA_VISIBLE_DEVICES=", "inventory", &rc);
    CHECK(rc == 0 && out && strstr(out, "no GPU shown:") && strstr(out, "CUDA_VISIBLE_DEVICES is set and empty"));
    free(out);
}

static void test_probe(json_t *json) {
    char dir[] = "/tmp/strata-inv-XXXXXX", path[256], args[512];
    if (!mkdtemp(dir)) { CHECK(0); return; }
    snprintf(path, sizeof path, "%s/sub/dir/profile.json", dir);   /* parents are created */
    snprintf(args, sizeof args, "inventory --probe --probe-bytes 8MiB --reps 1 --threads 1 -o %s", path);
    int rc = -1;
    char *out = run(NULL, args, &rc);
    CHECK_MSG(rc == 0, "probe exited %d", rc);
    CHECK(out && strstr(out, "probe (GB/s"));   /* the measured table; "wrote FILE" goes to stderr */
    free(out);
    st_profile *p = NULL;
    CHECK_OK(st_profile_load(path, &p));
    json_t *cpu = json_array_get(json_object_get(json, "devices"), 0);
    if (p) {
        CHECK(p->n_devices >= 1);
        if (n_cuda(json_object_get(json, "devices")) == 0) CHECK(p->n_devices == 1 && p->n_links == 0);
        const struct st_profile_device *d = &p->devices[0];
        CHECK(d->kind == ST_DEVICE_CPU);
        CHECK(strcmp(d->name, json_string_value(json_object_get(cpu, "name"))) == 0);
        CHECK(d->threads == json_integer_value(json_object_get(cpu, "threads")));
        CHECK(d->probe_bytes == 8u << 20);
        CHECK(d->read_gbps > 0 && d->copy_gbps > 0 && d->triad_gbps > 0);
        CHECK(d->mem_bw_gbps >= d->read_gbps && d->mem_bw_gbps >= d->copy_gbps && d->mem_bw_gbps >= d->triad_gbps);
        /* every dtype the CPU runs: its GEMV and its GEMM */
        for (int k = 0; k < ST_N_RATES; k++) {
            CHECK_MSG(d->gemv_gbps[k] > 0, "gemv %s", st_rate_key(k));
            CHECK_MSG(d->gemm_tflops[k] > 0, "gemm %s", st_rate_key(k));
        }
        CHECK(d->launch_us > 0);
        CHECK(strstr(d->method, "1 threads") != NULL);
        CHECK(p->created[0] && p->host[0]);

        /* --profile shows it again: measured, with the same bandwidth */
        snprintf(args, sizeof args, "inventory --json --profile %s", path);
        json_t *again = run_json(NULL, args);
        json_t *perf = json_object_get(json_array_get(json_object_get(again, "devices"), 0), "perf");
        CHECK(json_is_true(json_object_get(perf, "measured")));
        double bw = json_number_value(json_object_get(perf, "mem_bw_gbps"));
        CHECK_MSG(bw > 0 && bw > d->mem_bw_gbps * (1 - 1e-9) && bw < d->mem_bw_gbps * (1 + 1e-9), "%g vs %g", bw,
                  d->mem_bw_gbps);
        json_decref(again);
        st_profile_free(p);
    }
    unlink(path);
    snprintf(args, sizeof args, "%s/sub/dir", dir); rmdir(args);
    snprintf(args, sizeof args, "%s/sub", dir); rmdir(args);
    rmdir(dir);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s path/to/strata\n", argv[0]);
        return 2;
    }
    strata = argv[1];
    json_t *root = run_json(NULL, "inventory --json");
    if (root) {
        test_json(root);
        test_yaml(root);
        test_table(root);
        test_probe(root);
        json_decref(root);
    }
    test_hidden_gpus();
    return st_test_finish("inventory_cli");
}
