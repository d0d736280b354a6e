/* The CPU backend's registration (devices/registry.c lists it): what it runs,
 * its capabilities, and its hooks — the ops table (cpu.c), the probe
 * (probe_cpu.c), memory readings and streaming bandwidth. The inventory
 * itself describes the CPU as devices[0] from hwloc (devices/inventory.c), so
 * there is no discover hook. */
#include "devices/cpu/cpu-impl.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* kernels/cpu: every stored dtype, fp32 accumulation; quantized weights take
 * integer dot products over 8-bit activations (AVX-512 VNNI, AVX2 or the
 * portable path), float weights are widened to fp32 */
static const struct st_backend_path cpu_paths[] = {
    {"default", 0, ST_DTYPE_ALL,
     ST_BACKEND_OP_IMPORT_HOST | ST_BACKEND_OP_MATMUL_MULTI | ST_BACKEND_OP_MATMUL_SWIGLU | ST_BACKEND_OP_EVENTS |
         ST_BACKEND_OP_PIPELINE | ST_BACKEND_OP_KV_Q8,
     "fp32 math over every stored dtype (quantized weights: integer dot products on 8-bit activations)"},
};

struct st_caps st_caps_cpu(void) {
    struct st_caps c = {0};
    /* the CPU kernels widen fp16/bf16 to fp32 and accumulate in fp32; no fast
     * half-precision arithmetic is assumed */
    c.fp32_accum_fp16 = true;
    c.weight_dtypes = cpu_paths[0].weight_dtypes;
    return c;
}

static struct st_caps cpu_caps(int cc_major, int cc_minor) {
    (void)cc_major;
    (void)cc_minor;
    return st_caps_cpu();
}

static const struct st_device_ops *cpu_ops(void) { return st_device_ops_cpu(); }

static st_status read_rss(uint64_t *out) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long size = 0, resident = 0;
    if (!f) return st_error_set(ST_ERR_IO, "/proc/self/statm: cannot open (no procfs?)");
    int n = fscanf(f, "%llu %llu", &size, &resident);
    fclose(f);
    if (n != 2) return st_error_set(ST_ERR_FORMAT, "/proc/self/statm: unexpected contents");
    *out = (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
    return ST_OK;
}

/* process_bytes: this process's resident set; total and free: physical and available memory */
static st_status cpu_mem_read(const struct st_device_info *dev, struct st_device_mem_reading *out) {
    (void)dev;
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    out->total_bytes = (uint64_t)sysconf(_SC_PHYS_PAGES) * page;
    out->free_bytes = (uint64_t)sysconf(_SC_AVPHYS_PAGES) * page;
    return read_rss(&out->process_bytes);
}

static st_status cpu_bandwidth(const struct st_device_info *dev, int n_threads, uint64_t bytes, int reps,
                               double *copy_gbps, double *read_gbps) {
    struct st_cpu_stream r;
    if (!bytes) bytes = 512ull << 20;
    st_status s = st_cpu_stream_measure(dev, n_threads > 0 ? n_threads : dev->threads, bytes, reps, &r);
    if (s != ST_OK) return s;
    *copy_gbps = r.copy_gbps;
    *read_gbps = r.read_gbps;
    return ST_OK;
}

const struct st_backend_reg st_backend_reg_cpu = {
    .name = "cpu",
    .title = "CPU",
    .kind = ST_DEVICE_CPU,
    .built = true,
    .host_memory = true,
    .catalog_cards = false,
    .not_built = "",
    .build_hint = "",
    .mem_method = "process RSS",
    .paths = cpu_paths,
    .n_paths = (int)ST_ARRAY_LEN(cpu_paths),
    .link_types = (1u << ST_LINK_T_LOCAL) | (1u << ST_LINK_T_HOST),
    .caps = cpu_caps,
    .ops = cpu_ops,
    .discover = NULL,
    .probe = st_cpu_probe,
    .probe_pair = NULL,
    .mem_read = cpu_mem_read,
    .link_init = NULL,
    .bandwidth = cpu_bandwidth,
    .h2d_bandwidth = NULL,
};
