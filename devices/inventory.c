/* The inventory of this machine: CPU topology from hwloc (packages, NUMA nodes,
 * cores, caches), the CPU as devices[0], then the devices every built backend
 * discovers and their P2P matrix (the registry's discover hooks: CUDA's is
 * devices/cuda/inventory_cuda.c). */
#include "devices/inventory-impl.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *st_link_kind_name(st_link_kind k) {
    switch (k) {
    case ST_LINK_NONE: return "none";
    case ST_LINK_PCIE: return "pcie";
    case ST_LINK_NVLINK: return "nvlink";
    case ST_LINK_SAME: return "same";
    case ST_LINK_UNKNOWN: return "pcie/nvlink unknown";
    case ST_LINK_NETWORK: return "network";
    }
    return "none";
}

char *st_device_selector(const struct st_device_info *dev, char *buf, size_t buf_len) {
    const struct st_backend_reg *b = st_backend_reg_find(dev->kind);
    if (dev->kind == ST_DEVICE_CATALOG) snprintf(buf, buf_len, "catalog:%s", dev->catalog);
    else if (!b) snprintf(buf, buf_len, "?");
    else if (b->host_memory) snprintf(buf, buf_len, "%s", b->name);   /* the host as a whole: "cpu" */
    else snprintf(buf, buf_len, "%s:%d", b->name, dev->index);
    return buf;
}

/* ---- small readers ------------------------------------------------------- */

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = 0;
    size_t i = 0;
    while (s[i] && isspace((unsigned char)s[i])) i++;
    if (i) memmove(s, s + i, n - i + 1);
}

/* First line of a small sysfs/proc file, trimmed; false when unreadable. */
static bool read_line(const char *path, char *buf, size_t buf_len) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    bool ok = fgets(buf, (int)buf_len, f) != NULL;
    fclose(f);
    if (ok) trim(buf);
    return ok;
}

/* Value of "key : value" from /proc/cpuinfo (first occurrence). */
static bool cpuinfo_value(const char *key, char *buf, size_t buf_len) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[512];
    bool found = false;
    size_t klen = strlen(key);
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) != 0) continue;
        char *colon = strchr(line + klen, ':');
        if (!colon) continue;
        for (char *p = line + klen; p < colon; p++) if (!isspace((unsigned char)*p)) goto next;
        snprintf(buf, buf_len, "%s", colon + 1);
        trim(buf);
        found = buf[0] != 0;
    next:;
    }
    fclose(f);
    return found;
}

static void cpu_model_fallback(char *buf, size_t buf_len) {
    if (cpuinfo_value("model name", buf, buf_len)) return;
    if (cpuinfo_value("Model", buf, buf_len)) return;        /* arm boards */
    if (cpuinfo_value("cpu model", buf, buf_len)) return;    /* mips */
    if (cpuinfo_value("cpu", buf, buf_len)) return;          /* power */
    snprintf(buf, buf_len, "unknown CPU");
}

/* A "Key: N kB" line of /proc/meminfo in bytes, 0 when unknown. */
static uint64_t meminfo_bytes(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':' && sscanf(line + klen + 1, "%llu", &kb) == 1) break;
        kb = 0;
    }
    fclose(f);
    return (uint64_t)kb * 1024u;
}

/* The memory limit of this process's cgroup (v2, then v1), 0 when none. */
static uint64_t cgroup_mem_limit(void) {
    char line[64];
    if (read_line("/sys/fs/cgroup/memory.max", line, sizeof line) ||
        read_line("/sys/fs/cgroup/memory/memory.limit_in_bytes", line, sizeof line)) {
        char *end;
        unsigned long long v = strtoull(line, &end, 10);
        if (end != line && *end == 0) return (uint64_t)v;
    }
    return 0;
}

static void bitmap_list(hwloc_const_bitmap_t set, char *buf, size_t buf_len) {
    buf[0] = 0;
    if (!set) return;
    int n = hwloc_bitmap_list_snprintf(buf, buf_len, set);
    if (n >= (int)buf_len && buf_len > 4) memcpy(buf + buf_len - 4, "...", 4);  /* truncated */
}

static int os_index_or(hwloc_obj_t o, int fallback) {
    return o->os_index == HWLOC_UNKNOWN_INDEX ? fallback : (int)o->os_index;
}

static int pcie_gen_from_speed(const char *text) {
    double gts = atof(text);                 /* "16.0 GT/s PCIe" */
    if (gts >= 60) return 6;
    if (gts >= 30) return 5;
    if (gts >= 15) return 4;
    if (gts >= 7.5) return 3;
    if (gts >= 4.5) return 2;
    if (gts >= 2) return 1;
    return 0;
}

void st_inventory_locate_pci(hwloc_topology_t topo, struct st_device_info *dev) {
    dev->numa_node = -1;
    dev->cpuset[0] = 0;
    if (!dev->pci_bus_id[0]) return;
    hwloc_obj_t pci = topo ? hwloc_get_pcidev_by_busidstring(topo, dev->pci_bus_id) : NULL;
    if (pci) {
        hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, pci);
        if (anc) {
            bitmap_list(anc->cpuset, dev->cpuset, sizeof dev->cpuset);
            if (anc->nodeset && hwloc_bitmap_weight(anc->nodeset) == 1) dev->numa_node = hwloc_bitmap_first(anc->nodeset);
        }
    }
    char path[256], line[256];
    if (dev->numa_node < 0) {
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/numa_node", dev->pci_bus_id);
        if (read_line(path, line, sizeof line) && atoi(line) >= 0) dev->numa_node = atoi(line);
    }
    if (!dev->cpuset[0]) {
        snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/local_cpulist", dev->pci_bus_id);
        if (read_line(path, line, sizeof line)) snprintf(dev->cpuset, sizeof dev->cpuset, "%.127s", line);
    }
    /* The maximum the device supports: idle GPUs drop the current link speed. */
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/max_link_speed", dev->pci_bus_id);
    if (read_line(path, line, sizeof line)) dev->pcie_gen = pcie_gen_from_speed(line);
    snprintf(path, sizeof path, "/sys/bus/pci/devices/%s/max_link_width", dev->pci_bus_id);
    if (read_line(path, line, sizeof line)) dev->pcie_width = atoi(line);
}

/* ---- CPU topology --------------------------------------------------------- */

static uint64_t cache_sum(hwloc_topology_t topo, hwloc_obj_type_t type) {
    uint64_t sum = 0;
    int n = hwloc_get_nbobjs_by_type(topo, type);
    for (int i = 0; i < n; i++) sum += hwloc_get_obj_by_type(topo, type, i)->attr->cache.size;
    return sum;
}

static st_status fill_topology(st_inventory *inv, hwloc_topology_t topo) {
    int n_pkg = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
    int n_numa = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
    if (n_pkg < 0) n_pkg = 0;
    if (n_numa < 0) n_numa = 0;
    inv->packages = st_calloc((size_t)n_pkg, sizeof *inv->packages, "inventory packages");
    inv->numa = st_calloc((size_t)n_numa, sizeof *inv->numa, "inventory NUMA nodes");
    if (!inv->packages || !inv->numa) return ST_ERR_NOMEM;

    char fallback[ST_DEVICE_NAME_MAX];
    cpu_model_fallback(fallback, sizeof fallback);
    for (int i = 0; i < n_pkg; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PACKAGE, i);
        struct st_cpu_package *p = &inv->packages[i];
        p->os_index = os_index_or(o, i);
        const char *model = hwloc_obj_get_info_by_name(o, "CPUModel");
        snprintf(p->name, sizeof p->name, "%s", model && model[0] ? model : fallback);
        trim(p->name);
        p->n_cores = hwloc_get_nbobjs_inside_cpuset_by_type(topo, o->cpuset, HWLOC_OBJ_CORE);
        p->n_threads = hwloc_get_nbobjs_inside_cpuset_by_type(topo, o->cpuset, HWLOC_OBJ_PU);
        if (p->n_cores <= 0) p->n_cores = p->n_threads;
    }
    inv->n_packages = n_pkg;

    for (int i = 0; i < n_numa; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, i);
        struct st_numa_node *nn = &inv->numa[i];
        nn->os_index = os_index_or(o, i);
        nn->mem_bytes = o->attr->numanode.local_memory;
        bitmap_list(o->cpuset, nn->cpuset, sizeof nn->cpuset);
        hwloc_obj_t pkg = hwloc_get_ancestor_obj_by_type(topo, HWLOC_OBJ_PACKAGE, o);
        nn->package = pkg ? os_index_or(pkg, -1) : -1;
    }
    inv->n_numa = n_numa;

    inv->n_threads = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
    inv->n_cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    if (inv->n_cores <= 0) inv->n_cores = inv->n_threads;
    hwloc_obj_t root = hwloc_get_root_obj(topo);
    /* /proc/meminfo first: some VMs hot-add memory that the per-node counts miss */
    inv->host_mem_bytes = meminfo_bytes("MemTotal");
    if (!inv->host_mem_bytes) inv->host_mem_bytes = root->total_memory;
    static const hwloc_obj_type_t caches[] = {HWLOC_OBJ_L5CACHE, HWLOC_OBJ_L4CACHE, HWLOC_OBJ_L3CACHE,
                                              HWLOC_OBJ_L2CACHE, HWLOC_OBJ_L1CACHE};
    for (size_t i = 0; i < ST_ARRAY_LEN(caches) && !inv->llc_bytes; i++) inv->llc_bytes = cache_sum(topo, caches[i]);
    if (gethostname(inv->host, sizeof inv->host) != 0) snprintf(inv->host, sizeof inv->host, "unknown");
    inv->host[sizeof inv->host - 1] = 0;
    snprintf(inv->hwloc_version, sizeof inv->hwloc_version, "%s", HWLOC_VERSION);

    /* devices[0]: the CPU as a whole */
    struct st_device_info *cpu = &inv->devices[0];
    memset(cpu, 0, sizeof *cpu);
    const struct st_backend_reg *host = NULL;   /* the backend that computes in host memory */
    for (int k = 0; k < st_backend_reg_count() && !host; k++)
        if (st_backend_reg_at(k)->host_memory) host = st_backend_reg_at(k);
    cpu->kind = host->kind;
    cpu->index = 0;
    snprintf(cpu->name, sizeof cpu->name, "%s", n_pkg ? inv->packages[0].name : fallback);
    cpu->numa_node = n_numa == 1 ? inv->numa[0].os_index : -1;
    bitmap_list(root->cpuset, cpu->cpuset, sizeof cpu->cpuset);
    cpu->caps = host->caps(0, 0);
    cpu->sm_count = inv->n_cores;
    cpu->threads = inv->n_threads;
    cpu->mem_total_bytes = inv->host_mem_bytes;
    uint64_t limit = cgroup_mem_limit();   /* what this process may use in a container */
    if (limit && limit < cpu->mem_total_bytes) cpu->mem_total_bytes = limit;
    cpu->mem_free_bytes = meminfo_bytes("MemAvailable");
    if (!cpu->mem_free_bytes || cpu->mem_free_bytes > cpu->mem_total_bytes) cpu->mem_free_bytes = cpu->mem_total_bytes;
    cpu->l2_bytes = cache_sum(topo, HWLOC_OBJ_L2CACHE);
    return ST_OK;
}

/* ---- GPUs ------------------------------------------------------------------ */

static void note_visible_devices(char *reason, size_t len) {
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    if (!cvd || cvd[0] || strstr(reason, "CUDA_VISIBLE_DEVICES")) return;
    size_t n = strlen(reason);
    snprintf(reason + n, len - n, "%sCUDA_VISIBLE_DEVICES is set and empty, which hides every GPU",
             n ? "; also " : "");
}

/* Appends n devices of one backend (and its n x n P2P matrix, or NULL) to the inventory. */
static st_status append_devices(st_inventory *inv, const struct st_device_info *devs, int n, const struct st_p2p *m) {
    int old = inv->n_devices, nd = old + n;
    struct st_device_info *all = realloc(inv->devices, (size_t)nd * sizeof *all);
    if (!all) return st_error_set(ST_ERR_NOMEM, "out of host memory for the device list");
    inv->devices = all;
    memcpy(all + old, devs, (size_t)n * sizeof *devs);
    struct st_p2p *p2p = st_calloc((size_t)nd * (size_t)nd, sizeof *p2p, "P2P matrix");
    if (!p2p) return ST_ERR_NOMEM;
    for (int i = 0; i < old; i++)
        for (int j = 0; j < old; j++) p2p[(size_t)i * nd + (size_t)j] = inv->p2p[(size_t)i * old + (size_t)j];
    for (int i = 0; m && i < n; i++)
        for (int j = 0; j < n; j++) p2p[(size_t)(old + i) * nd + (size_t)(old + j)] = m[(size_t)i * n + j];
    free(inv->p2p);
    inv->p2p = p2p;
    inv->n_devices = nd;
    return ST_OK;
}

/* Every built backend with a discover hook lists its devices after the CPU. */
static st_status add_backends(st_inventory *inv, hwloc_topology_t topo) {
    char missing[256] = "";
    for (int k = 0; k < st_backend_reg_count(); k++) {
        const struct st_backend_reg *b = st_backend_reg_at(k);
        if (b->host_memory) continue;                    /* the CPU is devices[0] already */
        if (!b->built || !b->discover) {
            size_t n = strlen(missing);
            snprintf(missing + n, sizeof missing - n, "%s%s", n ? "; " : "", b->not_built);
            continue;
        }
        struct st_device_info *devs = NULL;
        struct st_p2p *m = NULL;
        int n = 0;
        char reason[256] = "";
        st_status s = b->discover(topo, &devs, &n, &m, reason, sizeof reason);
        if (s == ST_OK && n > 0) {
            s = append_devices(inv, devs, n, m);
        }
        if (s == ST_OK && n == 0 && reason[0]) {
            size_t l = strlen(inv->no_gpu_reason);
            snprintf(inv->no_gpu_reason + l, sizeof inv->no_gpu_reason - l, "%s%s", l ? "; " : "", reason);
        }
        free(devs);
        free(m);
        if (s != ST_OK) return s;
    }
    if (inv->n_devices == 1 && !inv->no_gpu_reason[0] && missing[0])
        snprintf(inv->no_gpu_reason, sizeof inv->no_gpu_reason, "CPU-only build: %s", missing);
    if (inv->n_devices > 1) inv->no_gpu_reason[0] = 0;
    if (inv->n_devices == 1) note_visible_devices(inv->no_gpu_reason, sizeof inv->no_gpu_reason);
    return ST_OK;
}

st_status st_inventory_init(st_inventory **out) {
    *out = NULL;
    st_status s = ST_OK;
    hwloc_topology_t topo = NULL;
    st_inventory *inv = st_calloc(1, sizeof *inv, "inventory");
    if (!inv) return ST_ERR_NOMEM;
    inv->devices = st_calloc(1, sizeof *inv->devices, "inventory devices");
    if (!inv->devices) { s = ST_ERR_NOMEM; goto fail_inv; }
    inv->n_devices = 1;
    inv->p2p = st_calloc(1, sizeof *inv->p2p, "P2P matrix");
    if (!inv->p2p) { s = ST_ERR_NOMEM; goto fail_inv; }

    if (hwloc_topology_init(&topo) < 0) {
        s = st_error_set(ST_ERR_DEVICE, "hwloc: cannot initialise a topology: %s", strerror(errno));
        goto fail_inv;
    }
    /* PCI devices (GPUs, bridges) so that each GPU finds its NUMA node */
    hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load(topo) < 0) {
        s = st_error_set(ST_ERR_DEVICE, "hwloc: cannot load this machine's topology: %s", strerror(errno));
        st_error_hint("HWLOC_XMLFILE or HWLOC_COMPONENTS in the environment may point hwloc at something unreadable");
        goto fail_topo;
    }
    s = fill_topology(inv, topo);
    if (s != ST_OK) goto fail_topo;
    s = add_backends(inv, topo);
    if (s != ST_OK) goto fail_topo;
    hwloc_topology_destroy(topo);
    *out = inv;
    return ST_OK;

fail_topo:
    hwloc_topology_destroy(topo);
fail_inv:
    st_inventory_free(inv);
    return s;
}

void st_inventory_free(st_inventory *inv) {
    if (!inv) return;
    free(inv->packages);
    free(inv->numa);
    free(inv->devices);
    free(inv->p2p);
    free(inv);
}
