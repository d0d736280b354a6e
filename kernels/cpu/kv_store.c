/* kv_store: k and v rows into the cache at their absolute positions. */
#include "kernels/cpu/kernels_cpu.h"

#include <string.h>

static void store_row(void *dst, st_dtype dt, const float *src, int64_t n) {
    if (dt == ST_DTYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
    } else if (dt == ST_DTYPE_F16) {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = st_f32_to_f16(src[i]);
    } else {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = st_f32_to_bf16(src[i]);
    }
}

st_status st_cpu_kv_store(void *k_cache, void *v_cache, st_dtype kv_dtype, int64_t n_slots, int64_t n_ctx,
                          int64_t n_head_kv, int64_t head_dim, const float *k, const float *v, int64_t n_tok,
                          const int32_t *pos, const int32_t *slot) {
    if (kv_dtype != ST_DTYPE_F32 && kv_dtype != ST_DTYPE_F16 && kv_dtype != ST_DTYPE_BF16) {
        st_error_set(ST_ERR_UNSUPPORTED, "kv_store: KV cache dtype %s is not supported", st_dtype_name(kv_dtype));
        return st_error_hint("use f32, f16 or bf16 for the KV cache");
    }
    const int64_t w = n_head_kv * head_dim;
    const size_t row_bytes = st_dtype_row_bytes(kv_dtype, w);
    for (int64_t t = 0; t < n_tok; t++) {
        if (pos[t] < 0 || pos[t] >= n_ctx) {
            st_error_set(ST_ERR_USAGE, "kv_store: position %d is outside the KV cache of %lld tokens (the context is full)",
                         pos[t], (long long)n_ctx);
            return st_error_hint("start a new sequence or run with a larger context (--ctx)");
        }
        const int64_t sl = slot ? slot[t] : 0;
        if (sl < 0 || sl >= n_slots) {
            st_error_set(ST_ERR_USAGE, "kv_store: sequence slot %lld is outside the %lld slots of the KV cache",
                         (long long)sl, (long long)n_slots);
            return st_error_hint("this is a scheduler bug; please report it");
        }
        const size_t row = (size_t)(sl * n_ctx + pos[t]);
        store_row((uint8_t *)k_cache + row * row_bytes, kv_dtype, k + t * w, w);
        store_row((uint8_t *)v_cache + row * row_bytes, kv_dtype, v + t * w, w);
    }
    return ST_OK;
}
