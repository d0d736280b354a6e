/* kv_store: k and v rows into the cache at their absolute positions. */
#include "kernels/cpu/kernels_cpu.h"

#include <math.h>
#include <string.h>

/* One GGUF Q8_0 block (ggml's quantize_row_q8_0_ref): d = max|x| / 127 stored
 * as fp16, q = round(x / d) half away from zero, with 1/d taken from the fp32
 * d as ggml does; an all-zero block stores d = 0. A block holding a NaN or an
 * infinity stores d = NaN and q = 0, so attention over it is NaN (as an f16
 * cache would give) instead of a silently wrong number. */
static void store_q8_0(uint8_t *dst, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, dst += 34) {
        float amax = 0.0f;
        bool finite = true;
        for (int i = 0; i < 32; i++) {
            finite &= isfinite(x[i]);
            amax = fmaxf(amax, fabsf(x[i]));
        }
        if (!finite) {
            dst[0] = 0x00;
            dst[1] = 0x7e;          /* fp16 quiet NaN */
            memset(dst + 2, 0, 32);
            continue;
        }
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const uint16_t h = st_f32_to_f16(d);
        dst[0] = (uint8_t)(h & 0xff);
        dst[1] = (uint8_t)(h >> 8);
        for (int i = 0; i < 32; i++) dst[2 + i] = (uint8_t)(int8_t)roundf(x[i] * id);
    }
}

static void store_row(void *dst, st_dtype dt, const float *src, int64_t n) {
    if (dt == ST_DTYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
    } else if (dt == ST_DTYPE_F16) {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = st_f32_to_f16(src[i]);
    } else if (dt == ST_DTYPE_BF16) {
        uint16_t *d = dst;
        for (int64_t i = 0; i < n; i++) d[i] = st_f32_to_bf16(src[i]);
    } else {
        store_q8_0(dst, src, n);
    }
}

st_status st_cpu_kv_store(void *k_cache, void *v_cache, st_dtype kv_dtype, int64_t n_slots, int64_t n_ctx,
                          int64_t n_head_kv, int64_t head_dim, const float *k, const float *v, int64_t n_tok,
                          const int32_t *pos, const int32_t *slot) {
    if (!st_cpu_kv_dtype_ok(kv_dtype)) {
        st_error_set(ST_ERR_UNSUPPORTED, "kv_store: KV cache dtype %s is not supported", st_dtype_name(kv_dtype));
        return st_error_hint("use f32, f16, bf16 or q8_0 for the KV cache");
    }
    if (kv_dtype == ST_DTYPE_Q8_0 && (n_head_kv * head_dim) % 32) {
        st_error_set(ST_ERR_UNSUPPORTED, "kv_store: a q8_0 KV cache needs rows of a multiple of 32 values "
                     "(%lld kv heads x head_dim %lld)", (long long)n_head_kv, (long long)head_dim);
        return st_error_hint("use f16 or bf16 for the KV cache of this model");
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
