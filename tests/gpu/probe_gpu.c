/* Runs the GPU probe functions that `strata inventory --probe` calls
 * (devices/cuda/probe_cuda.cu) on every visible GPU and pair, and prints what
 * they measure. A program for tests/gpu/run.sh, not a unit test: it checks
 * only that every figure is finite and positive (exit 1 otherwise). */
#include "devices/device.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int bad(double v) { return !(v > 0) || isinf(v); }

int main(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) { printf("no CUDA device visible\n"); return 1; }
    int fails = 0;
    for (int d = 0; d < n; d++) {
        struct st_perf perf;
        struct st_cuda_probe_result r;
        memset(&perf, 0, sizeof perf);
        if (st_cuda_probe_device(d, 0, 0, &perf, &r) != ST_OK) {
            printf("cuda:%d probe FAILED: %s\n", d, st_last_error());
            fails++;
            continue;
        }
        printf("cuda:%d copy %.1f GB/s | GEMV %lldx%lld f32 %.1f f16 %.1f bf16 %.1f GB/s (%.0f%% %.0f%% %.0f%% of copy) | "
               "GEMM 4096x4096x512 f32 %.1f f16 %.1f bf16 %.1f TFLOP/s | launch %.2f us\n",
               d, r.copy_gbps, (long long)r.gemv_rows, (long long)r.gemv_cols, r.gemv_gbps[0], r.gemv_gbps[1], r.gemv_gbps[2],
               100 * r.gemv_vs_copy[0], 100 * r.gemv_vs_copy[1], 100 * r.gemv_vs_copy[2], r.gemm_tflops[0], r.gemm_tflops[1],
               r.gemm_tflops[2], r.launch_us);
        fails += bad(r.copy_gbps) + bad(r.gemv_gbps[0]) + bad(r.gemv_gbps[1]) + bad(r.gemv_gbps[2]) + bad(r.launch_us) +
                 bad(r.gemm_tflops[0]) + !perf.measured;
    }
    const st_link_type kinds[] = {ST_LINK_T_LOCAL, ST_LINK_T_PEER, ST_LINK_T_NCCL, ST_LINK_T_HOST};
    for (int a = 0; a < n; a++)
        for (int b = 0; b < n; b++)
            for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
                struct st_cuda_link_probe lp;
                if (st_cuda_probe_link(a, b, kinds[k], 0, 0, &lp) != ST_OK) {
                    printf("link %-5s cuda:%d -> cuda:%d FAILED: %s\n", st_link_type_name(kinds[k]), a, b, st_last_error());
                    fails++;
                    continue;
                }
                if (!lp.available) {
                    printf("link %-5s cuda:%d -> cuda:%d n/a: %s\n", st_link_type_name(kinds[k]), a, b, lp.reason);
                    continue;
                }
                printf("link %-5s cuda:%d -> cuda:%d latency %.1f us, bandwidth %.1f GB/s\n", st_link_type_name(kinds[k]), a,
                       b, lp.latency_us, lp.bw_gbps);
                fails += bad(lp.latency_us) + bad(lp.bw_gbps);
            }
    printf("probe: %s\n", fails ? "FAILED" : "ok");
    return fails ? 1 : 0;
}
