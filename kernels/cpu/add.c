/* add: the residual connection, x += y. */
#include "kernels/cpu/kernels_cpu.h"

void st_cpu_add_part(float *x, const float *y, int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) x[i] += y[i];
}

void st_cpu_add(float *x, const float *y, int64_t n) { st_cpu_add_part(x, y, 0, n); }
