/* argmax: greedy token choice, lowest id on ties, NaN never wins. */
#include "kernels/cpu/kernels_cpu.h"

int32_t st_cpu_argmax(const float *logits, int64_t n_vocab) {
    int32_t best = 0;
    float bv = 0.0f;
    bool have = false;
    for (int64_t i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (v != v) continue;
        if (!have || v > bv) { bv = v; best = (int32_t)i; have = true; }
    }
    return best;
}
