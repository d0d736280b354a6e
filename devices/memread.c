/* st_device_mem_read: what a device's memory holds now, for `strata bench`
 * (memory in use against the plan's estimate), through the mem_read hook of
 * the device's backend (CPU: this process's resident set; CUDA:
 * cudaMemGetInfo through devices/cuda/probe_cuda.cu). */
#include "devices/device.h"

#include <string.h>

st_status st_device_mem_read(const struct st_device_info *dev, struct st_device_mem_reading *out) {
    memset(out, 0, sizeof *out);
    if (dev->kind == ST_DEVICE_CATALOG)
        return st_error_set(ST_ERR_USAGE, "%s: a catalog device has no memory to read", dev->name);
    const struct st_backend_reg *b = st_backend_reg_find(dev->kind);
    if (!b) return st_error_set(ST_ERR_INTERNAL, "%s: device kind %d has no backend", dev->name, (int)dev->kind);
    if (!b->mem_read) {
        st_error_set(ST_ERR_NOT_BUILT, "%s: this build has no %s backend to read device memory", dev->name, b->title);
        return st_error_hint("%s", b->build_hint);
    }
    return b->mem_read(dev, out);
}
