/* inventory API: the topology agrees with what the kernel says independently
 * (sched_getaffinity, sysconf, /proc/cpuinfo), the parts add up, and with
 * CUDA_VISIBLE_DEVICES="" no GPU is listed and the reason says why. */
#include "check.h"
#include "devices/device.h"

#include <ctype.h>
#include <sched.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <unistd.h>

#include <hwloc.h>

/* CPUs this process may run on, counted by the kernel (not hwloc). */
static int affinity_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    return CPU_COUNT(&set);
}

/* "model name" of /proc/cpuinfo with runs of spaces collapsed; false when absent (non-x86). */
static bool cpuinfo_model(char *out, size_t len) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    bool found = false;
    if (!f) return false;
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *p = strchr(line, ':');
        if (!p) continue;
        size_t n = 0;
        for (p++; *p && n + 1 < len; p++) {
            if (isspace((unsigned char)*p) && (n == 0 || out[n - 1] == ' ')) continue;
            out[n++] = isspace((unsigned char)*p) ? ' ' : *p;
        }
        while (n && out[n - 1] == ' ') n--;
        out[n] = 0;
        found = n > 0;
    }
    fclose(f);
    return found;
}

static void test_topology(void) {
    st_inventory *inv = NULL;
    CHECK_OK(st_inventory_init(&inv));
    if (!inv) return;
    CHECK(inv->n_packages >= 1);
    CHECK(inv->n_numa >= 1);
    CHECK(inv->n_cores >= 1 && inv->n_cores <= inv->n_threads);
    /* hwloc shows the CPUs this process may use; without taskset that is the affinity mask */
    CHECK_MSG(inv->n_threads == affinity_cpus(), "hwloc threads %d, sched_getaffinity %d", inv->n_threads, affinity_cpus());
    int pkg_threads = 0, pkg_cores = 0;
    for (int i = 0; i < inv->n_packages; i++) {
        pkg_threads += inv->packages[i].n_threads;
        pkg_cores += inv->packages[i].n_cores;
        CHECK(inv->packages[i].name[0] != 0);
    }
    CHECK(pkg_threads == inv->n_threads);
    CHECK(pkg_cores == inv->n_cores);

    /* NUMA cpusets cover the CPU device's cpuset exactly */
    hwloc_bitmap_t all = hwloc_bitmap_alloc(), numa_union = hwloc_bitmap_alloc(), one = hwloc_bitmap_alloc();
    const struct st_device_info *cpu = &inv->devices[0];
    CHECK(hwloc_bitmap_list_sscanf(all, cpu->cpuset) == 0);
    for (int i = 0; i < inv->n_numa; i++) {
        CHECK(inv->numa[i].mem_bytes > 0);
        if (!inv->numa[i].cpuset[0]) continue;   /* memory-only nodes (CXL, HBM) */
        CHECK(hwloc_bitmap_list_sscanf(one, inv->numa[i].cpuset) == 0);
        hwloc_bitmap_or(numa_union, numa_union, one);
    }
    CHECK_MSG(hwloc_bitmap_isequal(all, numa_union), "cpu cpuset %s vs NUMA union", cpu->cpuset);
    CHECK(hwloc_bitmap_weight(all) == inv->n_threads);
    hwloc_bitmap_free(all);
    hwloc_bitmap_free(numa_union);
    hwloc_bitmap_free(one);

    /* memory against sysconf (the kernel's total RAM), within 1% */
    double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    CHECK_MSG(inv->host_mem_bytes > 0.99 * phys && inv->host_mem_bytes < 1.01 * phys, "host memory %llu vs sysconf %.0f",
              (unsigned long long)inv->host_mem_bytes, phys);
    CHECK(cpu->mem_total_bytes <= inv->host_mem_bytes);
    CHECK(cpu->mem_free_bytes <= cpu->mem_total_bytes && cpu->mem_free_bytes > 0);

    /* the CPU device */
    CHECK(inv->n_devices >= 1);
    CHECK(cpu->kind == ST_DEVICE_CPU && cpu->index == 0);
    CHECK(cpu->sm_count == inv->n_cores && cpu->threads == inv->n_threads);
    CHECK(cpu->caps.cc_major == 0 && !cpu->caps.tensor_cores && !cpu->caps.bf16);
    CHECK(strcmp(cpu->name, inv->packages[0].name) == 0);
    char model[256];
    if (cpuinfo_model(model, sizeof model)) {
        CHECK_MSG(strcmp(model, cpu->name) == 0, "/proc/cpuinfo '%s' vs inventory '%s'", model, cpu->name);
    }
    CHECK(inv->numa[0].package == -1 || inv->numa[0].package == inv->packages[0].os_index ||
          inv->n_packages > 1);
    char sel[32];
    CHECK(strcmp(st_device_selector(cpu, sel, sizeof sel), "cpu") == 0);

    /* GPUs, when any: properties that hold for every CUDA device */
    for (int i = 1; i < inv->n_devices; i++) {
        const struct st_device_info *d = &inv->devices[i];
        CHECK(d->kind == ST_DEVICE_CUDA && d->index == i - 1);
        CHECK(d->caps.cc_major >= 3 && d->sm_count > 0 && d->mem_total_bytes > 0);
        CHECK(strncmp(d->uuid, "GPU-", 4) == 0 && strlen(d->uuid) == 40);
        CHECK(d->mem_free_bytes <= d->mem_total_bytes);
        CHECK(d->perf.mem_bw_gbps > 0 && !d->perf.measured);
        CHECK(inv->p2p[(size_t)i * inv->n_devices + i].link == ST_LINK_SAME);
        snprintf(model, sizeof model, "cuda:%d", i - 1);
        CHECK(strcmp(st_device_selector(d, sel, sizeof sel), model) == 0);
    }
    CHECK((inv->n_devices == 1) == (inv->no_gpu_reason[0] != 0));
    st_inventory_free(inv);
}

/* In a child process: the CUDA runtime reads CUDA_VISIBLE_DEVICES once, at its
 * first call, and test_topology may already have made that call here. */
static void test_hidden_gpus(void) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("CUDA_VISIBLE_DEVICES", "", 1);
        st_inventory *inv = NULL;
        CHECK_OK(st_inventory_init(&inv));
        if (inv) {
            CHECK(inv->n_devices == 1);
            CHECK_MSG(strstr(inv->no_gpu_reason, "CUDA_VISIBLE_DEVICES") != NULL, "reason: %s", inv->no_gpu_reason);
#ifndef STRATA_HAVE_CUDA
            CHECK(strstr(inv->no_gpu_reason, "CPU-only build") != NULL);
#endif
            st_inventory_free(inv);
        }
        fflush(NULL);
        _exit(st_test_failed ? 1 : 0);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child with CUDA_VISIBLE_DEVICES=\"\" failed");
}

static void test_names(void) {
    CHECK(strcmp(st_link_kind_name(ST_LINK_NVLINK), "nvlink") == 0);
    CHECK(strcmp(st_link_kind_name(ST_LINK_PCIE), "pcie") == 0);
    CHECK(strcmp(st_link_kind_name(ST_LINK_UNKNOWN), "pcie/nvlink unknown") == 0);
    CHECK(strcmp(st_link_kind_name(ST_LINK_SAME), "same") == 0);
    st_inventory_free(NULL);
}

int main(void) {
    test_names();
    test_topology();
    test_hidden_gpus();
    return st_test_finish("inventory_api");
}
