/* The error reporting behind devices/cuda/check.h. */
#include "devices/cuda/check.h"

#include <string.h>

extern "C" const char *st_cuda_device_label(char *buf, size_t len) {
    int dev = -1;
    struct cudaDeviceProp prop;
    if (cudaGetDevice(&dev) != cudaSuccess) { cudaGetLastError(); snprintf(buf, len, "cuda:?"); return buf; }
    if (cudaGetDeviceProperties(&prop, dev) != cudaSuccess) {
        cudaGetLastError();
        snprintf(buf, len, "cuda:%d", dev);
        return buf;
    }
    snprintf(buf, len, "cuda:%d (%s)", dev, prop.name);
    return buf;
}

#define PDL_MAX_DEVICES 64
static volatile bool pdl_on[PDL_MAX_DEVICES];

extern "C" void st_cuda_pdl_set(int ordinal, bool on) {
    if (ordinal >= 0 && ordinal < PDL_MAX_DEVICES) pdl_on[ordinal] = on;
}

extern "C" bool st_cuda_pdl_on(void) {
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess) { cudaGetLastError(); return false; }
    return dev >= 0 && dev < PDL_MAX_DEVICES && pdl_on[dev];
}

extern "C" st_status st_cuda_fail(cudaError_t e, const char *stmt, const char *file, int line) {
    char dev[300];
    const char *base = strrchr(file, '/');
    st_cuda_device_label(dev, sizeof dev);
    st_status s = e == cudaErrorMemoryAllocation ? ST_ERR_DEVICE_OOM : ST_ERR_DEVICE;
    st_error_set(s, "%s: %s failed: %s (%s) at %s:%d", dev, stmt, cudaGetErrorString(e), cudaGetErrorName(e),
                 base ? base + 1 : file, line);
    switch (e) {
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDeviceFunction:
        st_error_hint("this binary has no code for the device's architecture; rebuild with "
                      "-DCMAKE_CUDA_ARCHITECTURES=native (or add the card's sm_XY)");
        break;
    case cudaErrorMemoryAllocation:
        st_error_hint("free memory on the device (smaller context, fewer layers on it) or lower its memory cap");
        break;
    case cudaErrorInsufficientDriver:
        st_error_hint("the NVIDIA driver is older than this CUDA runtime; update the driver");
        break;
    default:
        break;
    }
    return s;
}

extern "C" const char *st_cublas_status_name(cublasStatus_t e) {
    switch (e) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_UNKNOWN";
    }
}

extern "C" st_status st_cublas_fail(cublasStatus_t e, const char *stmt, const char *file, int line) {
    char dev[300];
    const char *base = strrchr(file, '/');
    st_cuda_device_label(dev, sizeof dev);
    st_status s = e == CUBLAS_STATUS_ALLOC_FAILED ? ST_ERR_DEVICE_OOM : ST_ERR_DEVICE;
    st_error_set(s, "%s: %s failed: %s at %s:%d", dev, stmt, st_cublas_status_name(e), base ? base + 1 : file, line);
    if (e == CUBLAS_STATUS_ARCH_MISMATCH || e == CUBLAS_STATUS_NOT_SUPPORTED)
        st_error_hint("the device cannot run this GEMM input type (bf16 needs cc >= 8.0); use matmul precision f32 for this stage");
    return s;
}

#ifdef STRATA_HAVE_NCCL
extern "C" st_status st_nccl_fail(ncclResult_t e, const char *stmt, const char *file, int line) {
    char dev[300];
    const char *base = strrchr(file, '/');
    st_cuda_device_label(dev, sizeof dev);
    st_error_set(ST_ERR_DEVICE, "%s: %s failed: %s at %s:%d", dev, stmt, ncclGetErrorString(e),
                 base ? base + 1 : file, line);
    if (e == ncclSystemError || e == ncclRemoteError)
        st_error_hint("run with NCCL_DEBUG=WARN for NCCL's own diagnosis");
    return ST_ERR_DEVICE;
}
#endif
