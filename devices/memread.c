/* st_device_mem_read: what a device's memory holds now, for `strata bench`
 * (memory in use against the plan's estimate). CPU: this process's resident
 * set; CUDA: cudaMemGetInfo through devices/cuda/probe_cuda.cu. */
#include "devices/device.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

st_status st_device_mem_read(const struct st_device_info *dev, struct st_device_mem_reading *out) {
    memset(out, 0, sizeof *out);
    switch (dev->kind) {
    case ST_DEVICE_CPU: {
        const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
        out->total_bytes = (uint64_t)sysconf(_SC_PHYS_PAGES) * page;
        out->free_bytes = (uint64_t)sysconf(_SC_AVPHYS_PAGES) * page;
        return read_rss(&out->process_bytes);
    }
    case ST_DEVICE_CUDA:
#ifdef STRATA_HAVE_CUDA
        return st_cuda_mem_info(dev->index, &out->free_bytes, &out->total_bytes);
#else
        st_error_set(ST_ERR_NOT_BUILT, "%s: this build has no CUDA backend to read device memory", dev->name);
        return st_error_hint("rebuild with the CUDA toolkit installed");
#endif
    case ST_DEVICE_CATALOG:
        break;
    }
    return st_error_set(ST_ERR_USAGE, "%s: a catalog device has no memory to read", dev->name);
}
