/* strata inventory — what is in this box: a device table, the topology tree
 * (machine -> packages -> NUMA nodes -> GPUs), the P2P matrix; the same facts
 * as JSON (--json) or YAML (--yaml); --probe measures and saves a profile. */
#include "orchestrator/cli.h"
#include "devices/device.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <yaml.h>

static void usage(FILE *f) {
    char def[1024];
    st_profile_default_path(def, sizeof def);
    fprintf(f,
        "usage: strata inventory [--json | --yaml] [--probe [-o FILE] [--probe-bytes SIZE] [--reps N] [--threads N]]\n"
        "                        [--profile FILE]\n\n"
        "Lists the CPUs (packages, NUMA nodes, cores, memory), the CUDA devices (compute capability,\n"
        "SMs, memory, peak bandwidth, capabilities, NUMA node, PCI), the P2P matrix between GPUs\n"
        "(NVLink or PCIe) and, when no GPU is shown, why. CUDA_VISIBLE_DEVICES applies.\n\n"
        "options:\n"
        "  --json              the same facts as JSON (for scripts)\n"
        "  --yaml              the same facts as YAML\n"
        "  --probe             measure each device: streaming bandwidth (read, copy, triad), batch-1\n"
        "                      GEMV per weight dtype (f32, f16, bf16), the cost of one tiny op; and\n"
        "                      the links between devices; save the profile the planner reads\n"
        "  -o, --output FILE   where --probe saves the profile (default: %s;\n"
        "                      $STRATA_PROFILE, else $XDG_CACHE_HOME/strata/profile.json, else\n"
        "                      ~/.cache/strata/profile.json)\n"
        "  --probe-bytes SIZE  size of each of the 3 bandwidth arrays and of each GEMV weight\n"
        "                      (default max(512MiB, 2 x last-level cache)); e.g. 64MiB for a quick run\n"
        "  --reps N            best of N runs per measurement (default 5)\n"
        "  --threads N         CPU threads for the probe, 0..4096 (default 0 = one per core)\n"
        "  --profile FILE      show measured figures from an existing profile\n"
        "  -h, --help          this text\n",
        def[0] ? def : "(no home directory)");
}

/* ---- shared formatting ------------------------------------------------------ */

static void caps_text(const struct st_caps *c, char *buf, size_t n) {
    snprintf(buf, n, "%s%s%s%s%s", c->fp16_arith ? "fp16 " : "", c->fp32_accum_fp16 ? "f32acc " : "",
             c->bf16 ? "bf16 " : "", c->tensor_cores ? "tc " : "", c->flash_attn ? "flash " : "");
    size_t l = strlen(buf);
    if (l) buf[l - 1] = 0;
    else snprintf(buf, n, "-");
}

static bool utf8_terminal(void) {
    const char *vars[] = {"LC_ALL", "LC_CTYPE", "LANG"};
    for (size_t i = 0; i < ST_ARRAY_LEN(vars); i++) {
        const char *v = getenv(vars[i]);
        if (v && v[0]) return strstr(v, "UTF-8") || strstr(v, "utf8") || strstr(v, "UTF8") || strstr(v, "utf-8");
    }
    return false;
}

static int n_gpus(const st_inventory *inv) { return inv->n_devices - 1; }

/* ---- table, tree, P2P --------------------------------------------------------- */

static void print_table(FILE *f, const st_inventory *inv) {
    const char *bold = st_color(f, "1"), *dim = st_color(f, "2"), *rst = st_color_reset(f);
    int wname = 4;
    for (int i = 0; i < inv->n_devices; i++) wname = ST_MAX(wname, (int)strlen(inv->devices[i].name));
    fprintf(f, "%sdevices%s\n", bold, rst);
    fprintf(f, "  %-7s %-*s  %-4s %-9s %-10s %-10s %-11s %-26s %-4s %s\n", "device", wname, "name", "cc",
            "SMs/cores", "memory", "free", "peak BW", "caps", "NUMA", "PCI");
    for (int i = 0; i < inv->n_devices; i++) {
        const struct st_device_info *d = &inv->devices[i];
        char sel[32], cc[16], units[24], tot[24], fre[24], bw[24], caps[64], numa[16], pci[64];
        st_device_selector(d, sel, sizeof sel);
        const bool host = st_device_host_memory(d);
        if (host) {
            snprintf(cc, sizeof cc, "-");
            snprintf(units, sizeof units, "%dc/%dt", d->sm_count, d->threads);
        } else {
            snprintf(cc, sizeof cc, "%d.%d", d->caps.cc_major, d->caps.cc_minor);
            snprintf(units, sizeof units, "%d", d->sm_count);
        }
        st_format_bytes(d->mem_total_bytes, tot, sizeof tot);
        st_format_bytes(d->mem_free_bytes, fre, sizeof fre);
        if (d->perf.mem_bw_gbps > 0) snprintf(bw, sizeof bw, "%.0f GB/s%s", d->perf.mem_bw_gbps, d->perf.measured ? "*" : "");
        else snprintf(bw, sizeof bw, "-");
        caps_text(&d->caps, caps, sizeof caps);
        if (d->numa_node >= 0) snprintf(numa, sizeof numa, "%d", d->numa_node);
        else snprintf(numa, sizeof numa, host ? "all" : "?");
        if (!d->pci_bus_id[0]) snprintf(pci, sizeof pci, "-");
        else if (d->pcie_gen) snprintf(pci, sizeof pci, "%s gen%d x%d", d->pci_bus_id, d->pcie_gen, d->pcie_width);
        else snprintf(pci, sizeof pci, "%s", d->pci_bus_id);
        fprintf(f, "  %-7s %-*s  %-4s %-9s %-10s %-10s %-11s %-26s %-4s %s\n", sel, wname, d->name, cc, units, tot,
                fre, bw, caps, numa, pci);
    }
    bool any_measured = false;
    for (int i = 0; i < inv->n_devices; i++) any_measured |= inv->devices[i].perf.measured;
    fprintf(f, "  %scaps: fp16 = fast fp16 math, f32acc = fp16 inputs with fp32 accumulation, bf16, tc = tensor cores,\n"
               "  flash = strata's flash-attention kernel. peak BW: from memory clock x bus width%s%s\n",
            dim, any_measured ? "; * = measured by --probe" : "", rst);
    if (inv->no_gpu_reason[0]) {
        fprintf(f, "\n%sno GPU shown:%s %s\n", st_color(f, "1;33"), rst, inv->no_gpu_reason);
    }
}

/* What each device's backend runs: the path its capabilities select and the weight dtypes. */
static void print_weight_types(FILE *f, const st_inventory *inv) {
    fprintf(f, "\n%sweight types%s (the stored dtypes each device's matmul runs; docs/backends.md)\n", st_color(f, "1"),
            st_color_reset(f));
    for (int i = 0; i < inv->n_devices; i++) {
        const struct st_device_info *d = &inv->devices[i];
        const struct st_backend_reg *b = st_backend_reg_of(d);
        const struct st_backend_path *path = st_device_path(d);
        char sel[32], w[160], be[48];
        snprintf(be, sizeof be, "%s %s", b ? b->name : "?", path ? path->name : "?");
        fprintf(f, "  %-7s %-13s %s\n", st_device_selector(d, sel, sizeof sel), be,
                st_dtype_mask_text(d->caps.weight_dtypes ? d->caps.weight_dtypes : ST_DTYPE_ALL, " ", w, sizeof w));
    }
}

struct tree {
    FILE *f;
    const char *tee, *last, *pipe, *space;
};

static void tree_gpus(const struct tree *t, const st_inventory *inv, const char *prefix, bool numa_known, int numa) {
    int shown = 0, total = 0;
    for (int i = 1; i < inv->n_devices; i++) {
        int nn = inv->devices[i].numa_node;
        if (numa_known ? nn == numa : nn < 0) total++;
    }
    for (int i = 1; i < inv->n_devices; i++) {
        const struct st_device_info *d = &inv->devices[i];
        if (!(numa_known ? d->numa_node == numa : d->numa_node < 0)) continue;
        char sel[32], mem[24];
        shown++;
        fprintf(t->f, "%s%s%s %s (%s, cc %d.%d, PCI %s%s)\n", prefix, shown == total ? t->last : t->tee,
                st_device_selector(d, sel, sizeof sel), d->name, st_format_bytes(d->mem_total_bytes, mem, sizeof mem),
                d->caps.cc_major, d->caps.cc_minor, d->pci_bus_id,
                numa_known ? "" : ", NUMA node unknown");
    }
}

static int count_gpus_at(const st_inventory *inv, bool known, int numa) {
    int n = 0;
    for (int i = 1; i < inv->n_devices; i++) n += known ? inv->devices[i].numa_node == numa : inv->devices[i].numa_node < 0;
    return n;
}

static void tree_numa(const struct tree *t, const st_inventory *inv, const char *prefix, const struct st_numa_node *nn,
                      bool last) {
    char mem[24], sub[256];
    fprintf(t->f, "%s%sNUMA node %d: %s, cpus %s\n", prefix, last ? t->last : t->tee, nn->os_index,
            st_format_bytes(nn->mem_bytes, mem, sizeof mem), nn->cpuset[0] ? nn->cpuset : "none");
    snprintf(sub, sizeof sub, "%s%s", prefix, last ? t->space : t->pipe);
    tree_gpus(t, inv, sub, true, nn->os_index);
}

static void print_tree(FILE *f, const st_inventory *inv) {
    bool u = utf8_terminal();
    struct tree t = {f, u ? "├── " : "|-- ", u ? "└── " : "`-- ", u ? "│   " : "|   ", "    "};
    char mem[24], llc[24];
    fprintf(f, "\n%stopology%s\n", st_color(f, "1"), st_color_reset(f));
    fprintf(f, "machine %s: %s, %d package%s, %d NUMA node%s, %d cores, %d threads, last-level cache %s (hwloc %s)\n",
            inv->host, st_format_bytes(inv->host_mem_bytes, mem, sizeof mem), inv->n_packages,
            inv->n_packages == 1 ? "" : "s", inv->n_numa, inv->n_numa == 1 ? "" : "s", inv->n_cores, inv->n_threads,
            st_format_bytes(inv->llc_bytes, llc, sizeof llc), inv->hwloc_version);
    /* children of the machine: packages, NUMA nodes spanning packages, GPUs with no NUMA node */
    int n_top = inv->n_packages + (count_gpus_at(inv, false, -1) > 0);
    for (int k = 0; k < inv->n_numa; k++) n_top += inv->numa[k].package < 0;
    int done = 0;
    for (int k = 0; k < inv->n_numa; k++) {
        if (inv->numa[k].package >= 0) continue;
        tree_numa(&t, inv, "", &inv->numa[k], ++done == n_top);
    }
    for (int p = 0; p < inv->n_packages; p++) {
        const struct st_cpu_package *pk = &inv->packages[p];
        bool last = ++done == n_top;
        fprintf(f, "%spackage %d: %s (%d cores, %d threads)\n", last ? t.last : t.tee, pk->os_index, pk->name,
                pk->n_cores, pk->n_threads);
        const char *sub = last ? t.space : t.pipe;
        int n_in = 0, shown = 0;
        for (int k = 0; k < inv->n_numa; k++) n_in += inv->numa[k].package == pk->os_index;
        for (int k = 0; k < inv->n_numa; k++) {
            if (inv->numa[k].package != pk->os_index) continue;
            tree_numa(&t, inv, sub, &inv->numa[k], ++shown == n_in);
        }
    }
    if (count_gpus_at(inv, false, -1) > 0) {
        fprintf(f, "%sGPUs whose NUMA node is not known\n", t.last);
        tree_gpus(&t, inv, t.space, false, -1);
    }
}

static void print_p2p(FILE *f, const st_inventory *inv) {
    int n = inv->n_devices;
    if (n_gpus(inv) < 2) return;
    fprintf(f, "\n%sP2P between GPUs%s (row -> column: link, P2P access, performance rank (lower is better), native atomics)\n",
            st_color(f, "1"), st_color_reset(f));
    fprintf(f, "  %-8s", "");
    for (int j = 1; j < n; j++) {
        char sel[32];
        fprintf(f, " %-30s", st_device_selector(&inv->devices[j], sel, sizeof sel));
    }
    fputc('\n', f);
    for (int i = 1; i < n; i++) {
        char sel[32];
        fprintf(f, "  %-8s", st_device_selector(&inv->devices[i], sel, sizeof sel));
        for (int j = 1; j < n; j++) {
            const struct st_p2p *p = &inv->p2p[(size_t)i * n + j];
            char cell[64];
            if (i == j) snprintf(cell, sizeof cell, "-");
            else snprintf(cell, sizeof cell, "%s %s r%d%s", st_link_kind_name(p->link), p->access ? "p2p" : "no-p2p",
                          p->perf_rank, p->native_atomics ? " atomics" : "");
            fprintf(f, " %-30s", cell);
        }
        fputc('\n', f);
    }
}

/* ---- JSON: the single description that --json and --yaml both print -------- */

static json_t *str_or_null(const char *s) { return s && s[0] ? json_string(s) : json_null(); }

static json_t *device_json(const struct st_device_info *d) {
    json_t *o = json_object(), *caps = json_object(), *perf = json_object(), *g = json_object();
    char sel[32], cc[16];
    json_object_set_new(o, "selector", json_string(st_device_selector(d, sel, sizeof sel)));
    json_object_set_new(o, "kind", json_string(st_device_kind_name(d->kind)));
    json_object_set_new(o, "index", json_integer(d->index));
    json_object_set_new(o, "name", json_string(d->name));
    json_object_set_new(o, "uuid", str_or_null(d->uuid));
    json_object_set_new(o, "pci_bus_id", str_or_null(d->pci_bus_id));
    json_object_set_new(o, "numa_node", d->numa_node >= 0 ? json_integer(d->numa_node) : json_null());
    json_object_set_new(o, "cpuset", str_or_null(d->cpuset));
    const bool host = st_device_host_memory(d);
    if (host) {
        json_object_set_new(o, "cc", json_null());
        json_object_set_new(o, "cores", json_integer(d->sm_count));
        json_object_set_new(o, "threads", json_integer(d->threads));
    } else {
        snprintf(cc, sizeof cc, "%d.%d", d->caps.cc_major, d->caps.cc_minor);
        json_object_set_new(o, "cc", json_string(cc));
        json_object_set_new(o, "sm_count", json_integer(d->sm_count));
    }
    json_object_set_new(o, "mem_total_bytes", json_integer((json_int_t)d->mem_total_bytes));
    json_object_set_new(o, "mem_free_bytes", json_integer((json_int_t)d->mem_free_bytes));
    json_object_set_new(o, "l2_bytes", json_integer((json_int_t)d->l2_bytes));
    if (!host) {
        json_object_set_new(o, "mem_bus_width_bits", json_integer(d->mem_bus_width_bits));
        json_object_set_new(o, "mem_clock_khz", json_integer(d->mem_clock_khz));
        json_object_set_new(o, "pcie_gen", d->pcie_gen ? json_integer(d->pcie_gen) : json_null());
        json_object_set_new(o, "pcie_width", d->pcie_width ? json_integer(d->pcie_width) : json_null());
    }
    json_object_set_new(caps, "cc_major", json_integer(d->caps.cc_major));
    json_object_set_new(caps, "cc_minor", json_integer(d->caps.cc_minor));
    json_object_set_new(caps, "fp16_arith", json_boolean(d->caps.fp16_arith));
    json_object_set_new(caps, "fp32_accum_fp16", json_boolean(d->caps.fp32_accum_fp16));
    json_object_set_new(caps, "bf16", json_boolean(d->caps.bf16));
    json_object_set_new(caps, "tensor_cores", json_boolean(d->caps.tensor_cores));
    json_object_set_new(caps, "flash_attn", json_boolean(d->caps.flash_attn));
    json_t *wd = json_array();
    const uint32_t wmask = d->caps.weight_dtypes ? d->caps.weight_dtypes : ST_DTYPE_ALL;
    for (int t = 0; t < ST_DTYPE_COUNT; t++)
        if (wmask & ST_DTYPE_BIT(t)) json_array_append_new(wd, json_string(st_dtype_name((st_dtype)t)));
    json_object_set_new(caps, "weight_dtypes", wd);
    json_object_set_new(o, "caps", caps);
    /* the backend that runs it, the path its capabilities select and the optional ops there */
    const struct st_backend_reg *b = st_backend_reg_of(d);
    const struct st_backend_path *path = st_device_path(d);
    json_t *bk = json_object(), *ops = json_array();
    json_object_set_new(bk, "name", json_string(b ? b->name : "?"));
    json_object_set_new(bk, "built", json_boolean(b && b->built));
    json_object_set_new(bk, "path", json_string(path ? path->name : "?"));
    for (int k = 0; path && k < ST_BACKEND_N_OPS; k++)
        if (path->ops & (1u << k)) json_array_append_new(ops, json_string(st_backend_op_name(1u << k)));
    json_object_set_new(bk, "ops", ops);
    json_object_set_new(o, "backend", bk);
    json_object_set_new(perf, "measured", json_boolean(d->perf.measured));
    json_object_set_new(perf, "mem_bw_gbps", json_real(d->perf.mem_bw_gbps));
    json_object_set_new(perf, "fp32_tflops", json_real(d->perf.fp32_tflops));
    json_object_set_new(perf, "fp16_tflops", json_real(d->perf.fp16_tflops));
    json_object_set_new(perf, "bf16_tflops", json_real(d->perf.bf16_tflops));
    json_object_set_new(perf, "launch_us", json_real(d->perf.launch_us));
    json_t *t = json_object();
    for (int k = 0; k < ST_N_RATES; k++) {
        json_object_set_new(g, st_rate_key(k), json_real(d->perf.gemv_gbps[k]));
        json_object_set_new(t, st_rate_key(k), json_real(d->perf.gemm_tflops[k]));
    }
    json_object_set_new(perf, "gemv_gbps", g);
    json_object_set_new(perf, "gemm_tflops", t);
    json_object_set_new(o, "perf", perf);
    return o;
}

static json_t *inventory_json(const st_inventory *inv) {
    json_t *root = json_object(), *m = json_object(), *pk = json_array(), *nn = json_array(), *dv = json_array(),
           *pp = json_array();
    json_object_set_new(root, "strata_inventory", json_integer(1));
    json_object_set_new(root, "host", json_string(inv->host));
    json_object_set_new(root, "strata_version", json_string(st_version_string()));
    json_object_set_new(root, "build", json_string(st_build_options()));
    json_object_set_new(root, "hwloc_version", json_string(inv->hwloc_version));
    json_object_set_new(m, "mem_bytes", json_integer((json_int_t)inv->host_mem_bytes));
    json_object_set_new(m, "packages", json_integer(inv->n_packages));
    json_object_set_new(m, "numa_nodes", json_integer(inv->n_numa));
    json_object_set_new(m, "cores", json_integer(inv->n_cores));
    json_object_set_new(m, "threads", json_integer(inv->n_threads));
    json_object_set_new(m, "llc_bytes", json_integer((json_int_t)inv->llc_bytes));
    json_object_set_new(root, "machine", m);
    for (int i = 0; i < inv->n_packages; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "os_index", json_integer(inv->packages[i].os_index));
        json_object_set_new(o, "name", json_string(inv->packages[i].name));
        json_object_set_new(o, "cores", json_integer(inv->packages[i].n_cores));
        json_object_set_new(o, "threads", json_integer(inv->packages[i].n_threads));
        json_array_append_new(pk, o);
    }
    json_object_set_new(root, "packages", pk);
    for (int i = 0; i < inv->n_numa; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "os_index", json_integer(inv->numa[i].os_index));
        json_object_set_new(o, "mem_bytes", json_integer((json_int_t)inv->numa[i].mem_bytes));
        json_object_set_new(o, "cpuset", json_string(inv->numa[i].cpuset));
        json_object_set_new(o, "package", inv->numa[i].package >= 0 ? json_integer(inv->numa[i].package) : json_null());
        json_array_append_new(nn, o);
    }
    json_object_set_new(root, "numa_nodes", nn);
    for (int i = 0; i < inv->n_devices; i++) json_array_append_new(dv, device_json(&inv->devices[i]));
    json_object_set_new(root, "devices", dv);
    for (int i = 1; i < inv->n_devices; i++) {
        for (int j = 1; j < inv->n_devices; j++) {
            if (i == j) continue;
            const struct st_p2p *p = &inv->p2p[(size_t)i * inv->n_devices + j];
            char a[32], b[32];
            json_t *o = json_object();
            json_object_set_new(o, "from", json_string(st_device_selector(&inv->devices[i], a, sizeof a)));
            json_object_set_new(o, "to", json_string(st_device_selector(&inv->devices[j], b, sizeof b)));
            json_object_set_new(o, "link", json_string(st_link_kind_name(p->link)));
            json_object_set_new(o, "access", json_boolean(p->access));
            json_object_set_new(o, "native_atomics", json_boolean(p->native_atomics));
            json_object_set_new(o, "perf_rank", json_integer(p->perf_rank));
            json_array_append_new(pp, o);
        }
    }
    json_object_set_new(root, "p2p", pp);
    json_object_set_new(root, "no_gpu_reason", str_or_null(inv->no_gpu_reason));
    return root;
}

/* ---- YAML: the JSON tree through libyaml's emitter -------------------------- */

static int yaml_write(void *data, unsigned char *buf, size_t size) {
    return fwrite(buf, 1, size, (FILE *)data) == size;
}

/* Strings that a YAML reader would take for another type are quoted. */
static bool yaml_needs_quotes(const char *s) {
    static const char *const special[] = {"", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False",
                                          "FALSE", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off",
                                          "Off", "OFF", "y", "Y", "n", "N"};
    for (size_t i = 0; i < ST_ARRAY_LEN(special); i++) if (strcmp(s, special[i]) == 0) return true;
    char *end;
    strtod(s, &end);
    if (end != s && *end == 0) return true;          /* "9.0", "1e3" */
    return strchr("0123456789-+.", s[0]) != NULL;   /* "0-15,32-47", "0000:3b:00.0" */
}

static int yaml_scalar(yaml_emitter_t *em, const char *text, yaml_scalar_style_t style) {
    yaml_event_t ev;
    yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), 1, 1, style);
    return yaml_emitter_emit(em, &ev);
}

static int yaml_node(yaml_emitter_t *em, json_t *v) {
    yaml_event_t ev;
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *x;
        yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
        if (!yaml_emitter_emit(em, &ev)) return 0;
        json_object_foreach(v, k, x) {
            if (!yaml_scalar(em, k, YAML_PLAIN_SCALAR_STYLE) || !yaml_node(em, x)) return 0;
        }
        yaml_mapping_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev);
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *x;
        yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
        if (!yaml_emitter_emit(em, &ev)) return 0;
        json_array_foreach(v, i, x) if (!yaml_node(em, x)) return 0;
        yaml_sequence_end_event_initialize(&ev);
        return yaml_emitter_emit(em, &ev);
    }
    case JSON_STRING: {
        const char *s = json_string_value(v);
        return yaml_scalar(em, s, yaml_needs_quotes(s) ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
    }
    case JSON_INTEGER:
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return yaml_scalar(em, buf, YAML_PLAIN_SCALAR_STYLE);
    case JSON_REAL: {
        double x = json_real_value(v);
        snprintf(buf, sizeof buf, "%.10g", x);
        if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");  /* stays a float for YAML readers */
        return yaml_scalar(em, buf, YAML_PLAIN_SCALAR_STYLE);
    }
    case JSON_TRUE: return yaml_scalar(em, "true", YAML_PLAIN_SCALAR_STYLE);
    case JSON_FALSE: return yaml_scalar(em, "false", YAML_PLAIN_SCALAR_STYLE);
    case JSON_NULL: return yaml_scalar(em, "null", YAML_PLAIN_SCALAR_STYLE);
    }
    return 0;
}

static st_status print_yaml(FILE *f, json_t *root) {
    yaml_emitter_t em;
    yaml_event_t ev;
    st_status s = ST_OK;
    if (!yaml_emitter_initialize(&em)) return st_error_set(ST_ERR_NOMEM, "yaml: cannot initialise the emitter");
    yaml_emitter_set_output(&em, yaml_write, f);
    yaml_emitter_set_unicode(&em, 1);
    yaml_emitter_set_width(&em, 160);
    yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
    int ok = yaml_emitter_emit(&em, &ev);
    if (ok) { yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1); ok = yaml_emitter_emit(&em, &ev); }
    if (ok) ok = yaml_node(&em, root);
    if (ok) { yaml_document_end_event_initialize(&ev, 1); ok = yaml_emitter_emit(&em, &ev); }
    if (ok) { yaml_stream_end_event_initialize(&ev); ok = yaml_emitter_emit(&em, &ev); }
    if (!ok) s = st_error_set(ST_ERR_IO, "yaml: cannot write the inventory: %s", em.problem ? em.problem : "write failed");
    yaml_emitter_delete(&em);
    return s;
}

/* ---- probe results ---------------------------------------------------------- */

static void print_probe(FILE *f, const st_inventory *inv, const st_profile *p) {
    fprintf(f, "\n%sprobe%s (GB/s = 1e9 bytes/s; GEMV: weight bytes streamed per second, batch 1, fp32 vector)\n",
            st_color(f, "1"), st_color_reset(f));
    fprintf(f, "  %-7s %-9s %-9s %-9s %-9s %-9s %-9s %-8s %-19s %s\n", "device", "read", "copy", "triad",
            "gemv f32", "gemv f16", "gemv bf16", "op (us)", "gemm TF/s f32/16/bf", "method");
    bool quant = false;
    for (int i = 0; i < inv->n_devices; i++) {
        const struct st_profile_device *e = st_profile_find_device(p, &inv->devices[i]);
        char sel[32];
        st_device_selector(&inv->devices[i], sel, sizeof sel);
        if (!e) {
            fprintf(f, "  %-7s not measured\n", sel);
            continue;
        }
        double v[7] = {e->read_gbps, e->copy_gbps, e->triad_gbps, e->gemv_gbps[ST_DTYPE_F32],
                       e->gemv_gbps[ST_DTYPE_F16], e->gemv_gbps[ST_DTYPE_BF16], e->launch_us};
        fprintf(f, "  %-7s", sel);
        for (int k = 0; k < 7; k++) {
            if (v[k] > 0) fprintf(f, " %-*.*f", k == 6 ? 8 : 9, k == 6 ? 2 : 1, v[k]);
            else fprintf(f, " %-*s", k == 6 ? 8 : 9, "-");
        }
        char gemm[64] = "", part[24];
        for (int k = 0; k <= ST_DTYPE_BF16; k++) {
            if (e->gemm_tflops[k] > 0) snprintf(part, sizeof part, "%s%.3g", k ? "/" : "", e->gemm_tflops[k]);
            else snprintf(part, sizeof part, "%s-", k ? "/" : "");
            strncat(gemm, part, sizeof gemm - strlen(gemm) - 1);
        }
        fprintf(f, " %-19s %s\n", gemm, e->method);
        for (int k = ST_DTYPE_BF16 + 1; k < ST_N_RATES; k++)
            quant = quant || e->gemv_gbps[k] > 0 || e->gemm_tflops[k] > 0;
    }
    if (quant) {   /* the quantized dtypes' own rates (the CPU's integer path) */
        fprintf(f, "  quantized weights: gemv GB/s / gemm TF/s\n  %-7s", "device");
        for (int k = ST_DTYPE_BF16 + 1; k < ST_N_RATES; k++) fprintf(f, " %-11s", st_rate_key(k));
        fputc('\n', f);
        for (int i = 0; i < inv->n_devices; i++) {
            const struct st_profile_device *e = st_profile_find_device(p, &inv->devices[i]);
            char sel[32], cell[32], a[12], b[12];
            if (!e) continue;
            st_device_selector(&inv->devices[i], sel, sizeof sel);
            fprintf(f, "  %-7s", sel);
            for (int k = ST_DTYPE_BF16 + 1; k < ST_N_RATES; k++) {
                snprintf(a, sizeof a, e->gemv_gbps[k] > 0 ? "%.1f" : "-", e->gemv_gbps[k]);
                snprintf(b, sizeof b, e->gemm_tflops[k] > 0 ? "%.3g" : "-", e->gemm_tflops[k]);
                snprintf(cell, sizeof cell, "%s/%s", a, b);
                fprintf(f, " %-11s", cell);
            }
            fputc('\n', f);
        }
    }
    for (int i = 0; i < p->n_links; i++) {
        const struct st_profile_link *l = &p->links[i];
        const char *names[2] = {l->from, l->to};
        char sels[2][32];
        for (int k = 0; k < 2; k++) {   /* uuids back to selectors where this machine has the device */
            snprintf(sels[k], sizeof sels[k], "%.31s", names[k]);
            for (int d = 0; d < inv->n_devices; d++) {
                if (strcmp(st_profile_device_key(&inv->devices[d]), names[k]) == 0)
                    st_device_selector(&inv->devices[d], sels[k], sizeof sels[k]);
            }
        }
        fprintf(f, "  link %-7s -> %-7s %-5s %8.2f us %9.1f GB/s\n", sels[0], sels[1], st_link_type_name(l->type),
                l->latency_us, l->bw_gbps);
    }
}

/* ---- command ------------------------------------------------------------------ */

int st_cmd_inventory(int argc, char **argv) {
    bool yaml = false, probe = false;
    const char *out_path = NULL, *profile_path = NULL;
    struct st_probe_options popt = {0};
    char def_path[1024];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        int rc, g = st_cli_global(a);
        if (g == ST_CLI_GLOBAL_VERSION) { st_cli_print_version(); return 0; }
        if (g) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--yaml")) yaml = true;
        else if (!strcmp(a, "--probe")) probe = true;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!has_val) return st_cli_usage_error("inventory", "%s needs a file name", a);
            out_path = argv[++i];
        } else if (!strcmp(a, "--profile")) {
            if (!has_val) return st_cli_usage_error("inventory", "--profile needs a file name");
            profile_path = argv[++i];
        } else if (!strcmp(a, "--probe-bytes")) {
            if (!has_val) return st_cli_usage_error("inventory", "--probe-bytes needs a size such as 256MiB");
            if (st_parse_size(argv[++i], &popt.bytes) != ST_OK) return st_cli_report(ST_ERR_USAGE);
            if (popt.bytes < (1u << 20)) return st_cli_usage_error("inventory", "--probe-bytes %s is below 1MiB", argv[i]);
        } else if (!strcmp(a, "--reps")) {
            int64_t v;
            if ((rc = st_cli_int("inventory", a, has_val ? argv[i + 1] : NULL, 1, 1000, "a count", NULL, &v)) >= 0)
                return rc;
            popt.reps = (int)v;
            i++;
        } else if (!strcmp(a, "--threads")) {
            int64_t v;
            if ((rc = st_cli_int("inventory", a, has_val ? argv[i + 1] : NULL, 0, 4096, "a thread count",
                                 "0 = one per core", &v)) >= 0)
                return rc;
            popt.n_threads = (int)v;
            i++;
        } else {
            static const char *const opts[] = {"--json", "--yaml", "--probe", "--output", "--profile",
                                               "--probe-bytes", "--reps", "--threads", "--help"};
            const char *near = st_nearest_word(a, opts, ST_ARRAY_LEN(opts));
            if (near) return st_cli_usage_error("inventory", "unknown option '%s' (did you mean '%s'?)", a, near);
            return st_cli_usage_error("inventory", "unknown option '%s'", a);
        }
    }
    bool json = st_cli_json();
    if (json && yaml) return st_cli_usage_error("inventory", "--json and --yaml exclude each other");
    if (!probe && (out_path || popt.bytes || popt.reps || popt.n_threads))
        return st_cli_usage_error("inventory", "-o, --probe-bytes, --reps and --threads go with --probe");
    if (probe && profile_path) return st_cli_usage_error("inventory", "--profile shows an existing profile; --probe makes a new one");

    st_inventory *inv = NULL;
    st_profile *prof = NULL;
    json_t *root = NULL;
    int rc = 0;
    st_status s = st_inventory_init(&inv);
    if (s != ST_OK) return st_cli_report(s);

    if (profile_path) {
        s = st_profile_load(profile_path, &prof);
        if (s != ST_OK) goto fail;
        if (st_profile_apply(prof, inv->devices, inv->n_devices) == 0) {
            ST_WARN("%s describes none of this machine's devices (measured on host '%s')", profile_path, prof->host);
        }
    }
    if (probe) {
        if (!out_path) {
            out_path = st_profile_default_path(def_path, sizeof def_path);
            if (!out_path[0]) {
                s = st_error_set(ST_ERR_USAGE, "inventory: no home directory to keep the profile in");
                st_error_hint("name a file with -o FILE or set STRATA_PROFILE");
                goto fail;
            }
        }
        fprintf(stderr, "probing (a few seconds per device; best of %d)...\n", popt.reps ? popt.reps : 5);
        s = st_inventory_probe(inv, &popt, &prof);
        if (s != ST_OK) goto fail;
        s = st_profile_save(prof, out_path);
        if (s != ST_OK) goto fail;
        st_cli_wrote(out_path);
        st_profile_apply(prof, inv->devices, inv->n_devices);
    }

    if (json || yaml) {
        root = inventory_json(inv);
        if (!root) { s = st_error_set(ST_ERR_NOMEM, "out of host memory building the inventory"); goto fail; }
        if (json) {
            if (json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0) {
                s = st_error_set(ST_ERR_IO, "cannot write the inventory to stdout");
                goto fail;
            }
            fputc('\n', stdout);
        } else {
            s = print_yaml(stdout, root);
            if (s != ST_OK) goto fail;
        }
    } else {
        print_table(stdout, inv);
        print_weight_types(stdout, inv);
        print_tree(stdout, inv);
        print_p2p(stdout, inv);
        if (prof) print_probe(stdout, inv, prof);
    }
    goto done;
fail:
    rc = st_cli_report(s);
done:
    json_decref(root);
    st_profile_free(prof);
    st_inventory_free(inv);
    fflush(stdout);
    return rc;
}
