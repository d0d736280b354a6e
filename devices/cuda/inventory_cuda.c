/* The CUDA half of the inventory: properties of each visible device, derived
 * peak figures, NUMA placement (devices/inventory.c via the PCI bus id, else
 * hwloc/cudart.h), and the P2P matrix with NVLink/PCIe told apart through NVML
 * when libnvidia-ml.so.1 can be dlopen'ed (no link-time dependency). */
#include "devices/inventory-impl.h"
#include "devices/cuda/check.h"

#include <ctype.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>
#include <hwloc/cudart.h>

/* ---- NVML through dlopen: only the few entries needed, declared here ------ */

typedef int st_nvml_return;                 /* nvmlReturn_t: 0 = NVML_SUCCESS */
typedef struct st_nvml_device *st_nvml_dev; /* nvmlDevice_t */
#define ST_NVML_P2P_CAPS_INDEX_NVLINK 2     /* nvmlGpuP2PCapsIndex_t */
#define ST_NVML_P2P_STATUS_OK 0             /* nvmlGpuP2PStatus_t */

struct st_nvml {
    void *lib;
    st_nvml_return (*init)(void);
    st_nvml_return (*shutdown)(void);
    st_nvml_return (*by_uuid)(const char *uuid, st_nvml_dev *dev);
    st_nvml_return (*p2p_status)(st_nvml_dev a, st_nvml_dev b, int caps_index, int *status);
};

static bool nvml_open(struct st_nvml *n) {
    memset(n, 0, sizeof *n);
    n->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) return false;
    *(void **)&n->init = dlsym(n->lib, "nvmlInit_v2");
    *(void **)&n->shutdown = dlsym(n->lib, "nvmlShutdown");
    *(void **)&n->by_uuid = dlsym(n->lib, "nvmlDeviceGetHandleByUUID");
    *(void **)&n->p2p_status = dlsym(n->lib, "nvmlDeviceGetP2PStatus");
    if (!n->init || !n->shutdown || !n->by_uuid || !n->p2p_status || n->init() != 0) {
        dlclose(n->lib);
        n->lib = NULL;
        return false;
    }
    return true;
}

static void nvml_close(struct st_nvml *n) {
    if (!n->lib) return;
    n->shutdown();
    dlclose(n->lib);
    n->lib = NULL;
}

/* ---- derived figures ------------------------------------------------------ */

/* FP32 lanes per SM by architecture (CUDA programming guide, arithmetic throughput table). */
static int fp32_lanes_per_sm(int major, int minor) {
    switch (major) {
    case 3: return 192;
    case 5: return 128;
    case 6: return minor == 0 ? 64 : 128;
    case 7: return 64;
    case 8: return minor == 0 ? 64 : 128;
    default: return major >= 9 ? 128 : 0;
    }
}

/* Dense fp16 tensor-core flops per SM per clock (FMA = 2 flops), from the
 * architecture whitepapers: V100/T4 1024, A100 2048, GA10x/AD10x/GB20x 1024, H100 4096, B200 8192. */
static int tensor_flops_per_sm(int major, int minor) {
    switch (major) {
    case 7: return 1024;
    case 8: return minor == 0 ? 2048 : 1024;
    case 9: return 4096;
    case 10: return 8192;
    case 12: return 1024;
    default: return 0;
    }
}

static void fill_peak_perf(struct st_device_info *d, int clock_khz) {
    int maj = d->caps.cc_major, min = d->caps.cc_minor;
    double clk_hz = (double)clock_khz * 1e3;
    /* double data rate: two transfers per memory clock over the bus */
    d->perf.mem_bw_gbps = 2.0 * (double)d->mem_clock_khz * 1e3 * (double)d->mem_bus_width_bits / 8.0 / 1e9;
    d->perf.fp32_tflops = (double)d->sm_count * fp32_lanes_per_sm(maj, min) * 2.0 * clk_hz / 1e12;
    if (d->caps.tensor_cores) {
        double tc = (double)d->sm_count * tensor_flops_per_sm(maj, min) * clk_hz / 1e12;
        /* GeForce cards run fp16 inputs with fp32 accumulation at half rate */
        if (strstr(d->name, "GeForce")) tc *= 0.5;
        d->perf.fp16_tflops = tc;
    } else if (d->caps.fp16_arith) {
        d->perf.fp16_tflops = 2.0 * d->perf.fp32_tflops;   /* half2 */
    } else {
        d->perf.fp16_tflops = d->perf.fp32_tflops;         /* widened to fp32 */
    }
    d->perf.bf16_tflops = d->caps.bf16 ? d->perf.fp16_tflops : 0.0;
    d->perf.launch_us = 0.0;
    d->perf.measured = false;
}

static void format_uuid(const unsigned char *b, char *out, size_t len) {
    snprintf(out, len, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* ---- why no GPU ------------------------------------------------------------ */

static void explain_no_gpu(cudaError_t e, int n, char *reason, size_t len) {
    int drv = 0, rt = 0;
    if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
    cudaRuntimeGetVersion(&rt);
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    if (drv == 0) {
        snprintf(reason, len, "no NVIDIA driver: libcuda.so.1 could not be loaded (cudaGetDeviceCount: %s)",
                 cudaGetErrorName(e));
    } else if (e == cudaErrorInsufficientDriver) {
        snprintf(reason, len, "the NVIDIA driver supports CUDA %d.%d but this build's runtime is CUDA %d.%d; update the driver",
                 drv / 1000, (drv % 1000) / 10, rt / 1000, (rt % 1000) / 10);
    } else if (e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
        if (cvd && !cvd[0]) snprintf(reason, len, "CUDA_VISIBLE_DEVICES is set and empty, which hides every GPU");
        else if (cvd) snprintf(reason, len, "CUDA_VISIBLE_DEVICES='%.60s' selects no usable GPU", cvd);
        else snprintf(reason, len, "the NVIDIA driver (CUDA %d.%d) reports no CUDA device", drv / 1000, (drv % 1000) / 10);
    } else {
        snprintf(reason, len, "cudaGetDeviceCount failed: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    }
    (void)cudaGetLastError();
}

/* ---- discovery ------------------------------------------------------------- */

static st_status describe_device(hwloc_topology_t topo, int ord, struct st_device_info *d) {
    struct cudaDeviceProp prop;
    int clock_khz = 0, mem_clock_khz = 0;
    size_t free_b = 0, total_b = 0;
    memset(d, 0, sizeof *d);
    ST_CUDA_CHECK(cudaSetDevice(ord));
    ST_CUDA_CHECK(cudaGetDeviceProperties(&prop, ord));
    /* the clock fields left cudaDeviceProp in CUDA 13; the attributes remain */
    ST_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, ord));
    ST_CUDA_CHECK(cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, ord));
    ST_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));

    d->kind = ST_DEVICE_CUDA;
    d->index = ord;
    snprintf(d->name, sizeof d->name, "%.95s", prop.name);
    format_uuid((const unsigned char *)prop.uuid.bytes, d->uuid, sizeof d->uuid);
    snprintf(d->pci_bus_id, sizeof d->pci_bus_id, "%04x:%02x:%02x.0", prop.pciDomainID, prop.pciBusID, prop.pciDeviceID);
    d->caps = st_caps_from_cc(prop.major, prop.minor);
    d->sm_count = prop.multiProcessorCount;
    d->threads = 0;
    d->mem_total_bytes = prop.totalGlobalMem;
    d->mem_free_bytes = free_b;
    d->l2_bytes = (uint64_t)prop.l2CacheSize;
    d->mem_bus_width_bits = prop.memoryBusWidth;
    d->mem_clock_khz = mem_clock_khz;
    fill_peak_perf(d, clock_khz);

    st_inventory_locate_pci(topo, d);
    if (!d->cpuset[0]) {
        /* hwloc/cudart.h reads the device's local CPUs from sysfs through cudart */
        hwloc_cpuset_t set = hwloc_bitmap_alloc();
        if (set && hwloc_cudart_get_device_cpuset(topo, ord, set) == 0 && !hwloc_bitmap_iszero(set)) {
            hwloc_bitmap_list_snprintf(d->cpuset, sizeof d->cpuset, set);
        }
        hwloc_bitmap_free(set);
    }
    return ST_OK;
}

static st_link_kind classify_link(struct st_nvml *nvml, const struct st_device_info *a, const struct st_device_info *b,
                                  bool access) {
    if (nvml->lib) {
        st_nvml_dev da, db;
        int status = -1;
        if (nvml->by_uuid(a->uuid, &da) == 0 && nvml->by_uuid(b->uuid, &db) == 0 &&
            nvml->p2p_status(da, db, ST_NVML_P2P_CAPS_INDEX_NVLINK, &status) == 0) {
            return status == ST_NVML_P2P_STATUS_OK ? ST_LINK_NVLINK : ST_LINK_PCIE;
        }
    }
    /* Without NVML: a pair without P2P access copies through host memory over
     * PCIe; with access it is NVLink or PCIe and the runtime does not say which. */
    return access ? ST_LINK_UNKNOWN : ST_LINK_PCIE;
}

st_status st_inventory_cuda_discover(hwloc_topology_t topo, struct st_device_info **gpus, int *n_gpus,
                                     struct st_p2p **p2p, char *reason, size_t reason_len) {
    *gpus = NULL;
    *p2p = NULL;
    *n_gpus = 0;
    st_status s = ST_OK;
    int n = 0, prev_dev = 0;
    struct st_nvml nvml = {0};
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        explain_no_gpu(e, n, reason, reason_len);
        return ST_OK;
    }
    struct st_device_info *devs = st_calloc((size_t)n, sizeof *devs, "GPU list");
    struct st_p2p *m = st_calloc((size_t)n * (size_t)n, sizeof *m, "P2P matrix");
    if (!devs || !m) { s = ST_ERR_NOMEM; goto fail; }
    ST_CUDA_CHECK_GOTO(cudaGetDevice(&prev_dev), s, fail);
    for (int i = 0; i < n; i++) {
        s = describe_device(topo, i, &devs[i]);
        if (s != ST_OK) goto fail_dev;
    }
    nvml_open(&nvml);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            struct st_p2p *p = &m[(size_t)i * n + j];
            if (i == j) {
                *p = (struct st_p2p){.access = true, .native_atomics = true, .perf_rank = 0, .link = ST_LINK_SAME};
                continue;
            }
            int access = 0, atomics = 0, rank = 0;
            ST_CUDA_CHECK_GOTO(cudaDeviceCanAccessPeer(&access, i, j), s, fail_nvml);
            ST_CUDA_CHECK_GOTO(cudaDeviceGetP2PAttribute(&rank, cudaDevP2PAttrPerformanceRank, i, j), s, fail_nvml);
            ST_CUDA_CHECK_GOTO(cudaDeviceGetP2PAttribute(&atomics, cudaDevP2PAttrNativeAtomicSupported, i, j), s, fail_nvml);
            p->access = access != 0;
            p->native_atomics = atomics != 0;
            p->perf_rank = rank;
            p->link = classify_link(&nvml, &devs[i], &devs[j], p->access);
        }
    }
    nvml_close(&nvml);
    cudaSetDevice(prev_dev);
    *gpus = devs;
    *p2p = m;
    *n_gpus = n;
    reason[0] = 0;
    return ST_OK;

fail_nvml:
    nvml_close(&nvml);
fail_dev:
    ST_CUDA_IGNORE(cudaSetDevice(prev_dev));
fail:
    free(devs);
    free(m);
    return s;
}
