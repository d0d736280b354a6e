/* devices/cuda/check.h — the one macro family that checks every CUDA runtime,
 * cuBLAS and NCCL call (STYLE.md rule 4). On failure the macros set the
 * thread's error (st_error_set) with the statement text, the current device
 * (ordinal and name), the library's error string, file and line, and return
 * the status from the enclosing function (which must return st_status).
 *
 *   ST_CUDA_CHECK(cudaMemcpyAsync(...));         runtime call
 *   ST_CUBLAS_CHECK(cublasGemmEx(...));          cuBLAS call
 *   ST_NCCL_CHECK(ncclSend(...));                NCCL call (STRATA_HAVE_NCCL builds)
 *   kernel<<<g, b, smem, stream>>>(...);
 *   ST_CUDA_LAUNCH_CHECK();                      after every kernel launch
 *
 * The *_GOTO variants store the status in `st` and jump to a cleanup label,
 * for functions with a goto-cleanup chain (STYLE.md rule 5).
 * cudaErrorMemoryAllocation maps to ST_ERR_DEVICE_OOM (recoverable); every
 * other failure is ST_ERR_DEVICE. Usable from C and CUDA C++. */
#ifndef STRATA_CUDA_CHECK_H
#define STRATA_CUDA_CHECK_H

#include "base/base.h"
#include <cuda_runtime_api.h>
#include <cublas_v2.h>
#ifdef STRATA_HAVE_NCCL
#include <nccl.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Set the error for a failed statement and return its status. Not for direct use. */
st_status st_cuda_fail(cudaError_t e, const char *stmt, const char *file, int line);
st_status st_cublas_fail(cublasStatus_t e, const char *stmt, const char *file, int line);
#ifdef STRATA_HAVE_NCCL
st_status st_nccl_fail(ncclResult_t e, const char *stmt, const char *file, int line);
#endif
/* "cuda:0 (NVIDIA H100 80GB HBM3)" for the current device, into buf. */
const char *st_cuda_device_label(char *buf, size_t len);
/* Programmatic dependent launch (kernels/cuda/common.cuh, st_launch) for the
 * kernels launched on device `ordinal`: on only where the backend asks for it
 * (compute capability 9.0 and up, a CUDA 12.3+ runtime and driver, not emulating
 * an older card, STRATA_PDL not 0). st_cuda_pdl_on reads it for the current device. */
void st_cuda_pdl_set(int ordinal, bool on);
bool st_cuda_pdl_on(void);
/* cuBLAS status name ("CUBLAS_STATUS_NOT_SUPPORTED"). */
const char *st_cublas_status_name(cublasStatus_t e);

#ifdef __cplusplus
}
#endif

#define ST_CUDA_CHECK(stmt) do { \
    cudaError_t st_e_ = (stmt); \
    if (st_e_ != cudaSuccess) return st_cuda_fail(st_e_, #stmt, __FILE__, __LINE__); \
} while (0)

#define ST_CUDA_CHECK_GOTO(stmt, st, label) do { \
    cudaError_t st_e_ = (stmt); \
    if (st_e_ != cudaSuccess) { (st) = st_cuda_fail(st_e_, #stmt, __FILE__, __LINE__); goto label; } \
} while (0)

#define ST_CUBLAS_CHECK(stmt) do { \
    cublasStatus_t st_e_ = (stmt); \
    if (st_e_ != CUBLAS_STATUS_SUCCESS) return st_cublas_fail(st_e_, #stmt, __FILE__, __LINE__); \
} while (0)

#define ST_CUBLAS_CHECK_GOTO(stmt, st, label) do { \
    cublasStatus_t st_e_ = (stmt); \
    if (st_e_ != CUBLAS_STATUS_SUCCESS) { (st) = st_cublas_fail(st_e_, #stmt, __FILE__, __LINE__); goto label; } \
} while (0)

#ifdef STRATA_HAVE_NCCL
#define ST_NCCL_CHECK(stmt) do { \
    ncclResult_t st_e_ = (stmt); \
    if (st_e_ != ncclSuccess) return st_nccl_fail(st_e_, #stmt, __FILE__, __LINE__); \
} while (0)
#define ST_NCCL_CHECK_GOTO(stmt, st, label) do { \
    ncclResult_t st_e_ = (stmt); \
    if (st_e_ != ncclSuccess) { (st) = st_nccl_fail(st_e_, #stmt, __FILE__, __LINE__); goto label; } \
} while (0)
#endif

/* After a kernel launch: picks up launch errors (bad configuration, too much
 * shared memory, no kernel image for this device) and names the launching function. */
#define ST_CUDA_LAUNCH_CHECK() do { \
    cudaError_t st_e_ = cudaGetLastError(); \
    if (st_e_ != cudaSuccess) return st_cuda_fail(st_e_, __func__, __FILE__, __LINE__); \
} while (0)

/* Cleanup paths ignore errors explicitly: a free that fails cannot be acted on. */
#define ST_CUDA_IGNORE(stmt) ((void)(stmt))

#endif /* STRATA_CUDA_CHECK_H */
