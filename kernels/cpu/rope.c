/* rope: rotary position embedding, NEOX (half-offset pairs) or NORM (adjacent pairs). */
#include "kernels/cpu/kernels_cpu.h"

#include <math.h>

#define ROPE_MAX_DIM 1024

st_status st_cpu_rope_part(float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                           float theta, st_rope_layout layout, const float *freq_factors,
                           int64_t t0, int64_t t1) {
    if (head_dim <= 0 || head_dim % 2 || head_dim > ROPE_MAX_DIM) {
        st_error_set(ST_ERR_UNSUPPORTED, "rope: head_dim %lld is not supported (must be even and at most %d)",
                     (long long)head_dim, ROPE_MAX_DIM);
        return st_error_hint("check the model's head_dim / attention.key_length");
    }
    const int64_t half = head_dim / 2;
    float cs[ROPE_MAX_DIM / 2], sn[ROPE_MAX_DIM / 2], inv[ROPE_MAX_DIM / 2];
    /* HF: inv_freq = 1 / theta^(2i/D) in fp32 (once per call: it does not depend on the token) */
    for (int64_t i = 0; i < half; i++) {
        inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
        if (freq_factors) inv[i] = inv[i] / freq_factors[i];
    }
    for (int64_t t = t0; t < t1; t++) {
        /* angle = pos * inv_freq in fp32 */
        const float p = (float)pos[t];
        for (int64_t i = 0; i < half; i++) {
            const float ang = p * inv[i];
            cs[i] = (float)cos((double)ang);
            sn[i] = (float)sin((double)ang);
        }
        for (int64_t h = 0; h < n_heads; h++) {
            float *v = x + (t * n_heads + h) * head_dim;
            if (layout == ST_ROPE_NEOX) {
                for (int64_t i = 0; i < half; i++) {
                    float x0 = v[i], x1 = v[i + half];
                    v[i] = x0 * cs[i] - x1 * sn[i];
                    v[i + half] = x0 * sn[i] + x1 * cs[i];
                }
            } else {
                for (int64_t i = 0; i < half; i++) {
                    float x0 = v[2 * i], x1 = v[2 * i + 1];
                    v[2 * i] = x0 * cs[i] - x1 * sn[i];
                    v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
                }
            }
        }
    }
    return ST_OK;
}

st_status st_cpu_rope(float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                      float theta, st_rope_layout layout, const float *freq_factors) {
    return st_cpu_rope_part(x, n_tok, n_heads, head_dim, pos, theta, layout, freq_factors, 0, n_tok);
}
