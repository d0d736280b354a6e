/* rmsnorm: HF's RMSNorm with ggml's double sum of squares. */
#include "kernels/cpu/kernels_cpu.h"

#include <math.h>

void st_cpu_rmsnorm_part(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out,
                         int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * n;
        float *o = out + r * n;
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++) ss += (double)xr[i] * (double)xr[i];
        float var = (float)(ss / (double)n);
        float scale = 1.0f / sqrtf(var + eps);
        for (int64_t i = 0; i < n; i++) o[i] = w[i] * (xr[i] * scale);
    }
}

void st_cpu_rmsnorm(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out) {
    st_cpu_rmsnorm_part(x, w, rows, n, eps, out, 0, rows);
}
