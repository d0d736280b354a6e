/* st_device_ops_cuda() in a build without the CUDA backend (the real one is
 * in devices/cuda/backend_cuda.cu). */
#include "devices/device.h"

#ifndef STRATA_HAVE_CUDA
const struct st_device_ops *st_device_ops_cuda(void) { return NULL; }
#endif
