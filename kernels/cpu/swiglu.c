/* swiglu: silu(gate) * up. */
#include "kernels/cpu/kernels_cpu.h"

#include <math.h>

void st_cpu_swiglu_part(const float *gate, const float *up, float *out, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void st_cpu_swiglu(const float *gate, const float *up, int64_t n, float *out) {
    st_cpu_swiglu_part(gate, up, out, 0, n);
}
