/* gpu_gemm_peak — the bf16 tensor-core rate this GPU reaches in cuBLAS on a
 * given GEMM shape (bf16 inputs, fp32 accumulation and output, as strata's
 * prefill GEMM): the "peak measured in the same run" that bench/gpu_compare.sh
 * sets strata's prefill against.
 *
 *   gpu_gemm_peak [M N K [REPS]]     default 512 18944 3584 (a 512-token prompt
 *                                    through Qwen2.5-7B's gate/up projection)
 * Prints one JSON object: {"m","n","k","ms","tflops","device"}. Exit 1 when no
 * GPU or cuBLAS fails. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
    fprintf(stderr, "gpu_gemm_peak: %s: %s\n", #x, cudaGetErrorString(e_)); return 1; } } while (0)
#define CB(x) do { cublasStatus_t s_ = (x); if (s_ != CUBLAS_STATUS_SUCCESS) { \
    fprintf(stderr, "gpu_gemm_peak: %s: cuBLAS status %d\n", #x, (int)s_); return 1; } } while (0)

__global__ static void fill(__nv_bfloat16 *p, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        p[i] = __float2bfloat16(((h >> 8) & 0xffff) / 65536.0f - 0.5f);
    }
}

int main(int argc, char **argv) {
    long m = 512, n = 18944, k = 3584;
    int reps = 50;
    if (argc >= 4) { m = atol(argv[1]); n = atol(argv[2]); k = atol(argv[3]); }
    if (argc >= 5) reps = atoi(argv[4]);
    if (m <= 0 || n <= 0 || k <= 0 || reps <= 0) {
        fprintf(stderr, "usage: gpu_gemm_peak [M N K [REPS]] (positive numbers)\n");
        return 2;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    __nv_bfloat16 *a, *b;
    float *c;
    CK(cudaMalloc(&a, (size_t)m * k * sizeof *a));
    CK(cudaMalloc(&b, (size_t)n * k * sizeof *b));
    CK(cudaMalloc(&c, (size_t)m * n * sizeof *c));
    fill<<<1024, 256>>>(a, (size_t)m * k, 1);
    fill<<<1024, 256>>>(b, (size_t)n * k, 2);
    CK(cudaGetLastError());
    cublasHandle_t h;
    CB(cublasCreate(&h));
    const float one = 1.0f, zero = 0.0f;
    /* C (n x m, column-major) = W^T (n x k) * X (k x m): the weights row-major [n][k] */
    for (int i = 0; i < 5; i++)
        CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)m, (int)k, &one, b, CUDA_R_16BF, (int)k, a,
                        CUDA_R_16BF, (int)k, &zero, c, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0));
    for (int i = 0; i < reps; i++)
        CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)m, (int)k, &one, b, CUDA_R_16BF, (int)k, a,
                        CUDA_R_16BF, (int)k, &zero, c, CUDA_R_32F, (int)n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    ms /= (float)reps;
    printf("{\"m\": %ld, \"n\": %ld, \"k\": %ld, \"ms\": %.6f, \"tflops\": %.2f, \"device\": \"%s\"}\n", m, n, k, ms,
           2.0 * m * n * k / (ms * 1e-3) / 1e12, prop.name);
    cublasDestroy(h);
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
    return 0;
}
