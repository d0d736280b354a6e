/* Eager attention: a block per (query head, token). Scores of a chunk of keys
 * are computed a warp per key into shared memory, exponentiated in place, and
 * folded into per-thread accumulators over head_dim. */
#include "kernels/cuda/attn_eager.cuh"

namespace {

constexpr int THREADS = 128, CHUNK = 1024, DMAX_PER_THREAD = 8;

template <int DT>
__global__ void __launch_bounds__(THREADS)
attn_eager_kernel(const void *__restrict__ kc, const void *__restrict__ vc, int64_t n_slots, int64_t n_ctx,
                  int n_head_kv, int D, const float *__restrict__ q, int n_head, const int32_t *__restrict__ pos,
                  const int32_t *__restrict__ slot, float scale, float *__restrict__ out) {
    st_pdl_launch_next();
    st_pdl_wait();
    __shared__ float qs[1024];
    __shared__ float sc[CHUNK];
    __shared__ float red[32];
    const int h = blockIdx.x;
    const int64_t t = blockIdx.y;
    const int g = h / (n_head / n_head_kv);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t row_stride = (int64_t)n_head_kv * D;
    float *o = out + (t * n_head + h) * D;
    const int32_t p = pos[t];
    const int32_t sl = slot ? slot[t] : 0;
    if (p < 0 || p >= n_ctx || sl < 0 || sl >= n_slots) {
        for (int d = threadIdx.x; d < D; d += THREADS) o[d] = __int_as_float(0x7fc00000);
        return;
    }
    const int64_t sbase = (int64_t)sl * n_ctx * row_stride;   /* this sequence's plane */
    for (int d = threadIdx.x; d < D; d += THREADS) qs[d] = q[(t * n_head + h) * D + d];
    __syncthreads();

    float acc[DMAX_PER_THREAD];
#pragma unroll
    for (int i = 0; i < DMAX_PER_THREAD; i++) acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int64_t n_keys = (int64_t)p + 1;
    for (int64_t c0 = 0; c0 < n_keys; c0 += CHUNK) {
        const int n = (int)(n_keys - c0 < CHUNK ? n_keys - c0 : CHUNK);
        for (int j = warp; j < n; j += THREADS / 32) {
            const int64_t base = sbase + (c0 + j) * row_stride + (int64_t)g * D;
            float s = 0.0f;
            for (int d = lane; d < D; d += 32) s = fmaf(qs[d], st_elem<DT>::load(kc, base + d), s);
            s = st_warp_sum(s);
            if (lane == 0) sc[j] = s * scale;
        }
        __syncthreads();
        float cmax = -INFINITY;
        for (int j = threadIdx.x; j < n; j += THREADS) cmax = fmaxf(cmax, sc[j]);
        cmax = st_block_max(cmax, red);
        const float m_new = fmaxf(m, cmax);
        const float corr = expf(m - m_new);   /* 0 on the first chunk (m = -inf) */
        float psum = 0.0f;
        for (int j = threadIdx.x; j < n; j += THREADS) {
            const float e = expf(sc[j] - m_new);
            sc[j] = e;
            psum += e;
        }
        psum = st_block_sum(psum, red);       /* ends in a barrier: sc[] complete */
        l = l * corr + psum;
        m = m_new;
#pragma unroll
        for (int i = 0; i < DMAX_PER_THREAD; i++) {
            const int d = threadIdx.x + i * THREADS;
            if (d >= D) break;
            float a = acc[i] * corr;
            for (int j = 0; j < n; j++) a = fmaf(sc[j], st_elem<DT>::load(vc, sbase + (c0 + j) * row_stride + (int64_t)g * D + d), a);
            acc[i] = a;
        }
        __syncthreads();
    }
    const float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < DMAX_PER_THREAD; i++) {
        const int d = threadIdx.x + i * THREADS;
        if (d < D) o[d] = acc[i] * inv;
    }
}

} // namespace

st_status st_attn_eager_cuda(const void *k_cache, const void *v_cache, st_dtype kv_dtype, int64_t n_slots,
                             int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, const float *q, int64_t n_tok,
                             int64_t n_head, const int32_t *pos, const int32_t *slot, float scale, float *out,
                             cudaStream_t stream) {
    if (n_tok <= 0 || n_head <= 0) return ST_OK;
    if (head_dim <= 0 || head_dim > THREADS * DMAX_PER_THREAD)
        return st_error_set(ST_ERR_UNSUPPORTED, "attention: head_dim %lld (at most %d)", (long long)head_dim,
                            THREADS * DMAX_PER_THREAD);
    if (n_head_kv <= 0 || n_head % n_head_kv)
        return st_error_set(ST_ERR_UNSUPPORTED, "attention: %lld query heads is not a multiple of %lld kv heads",
                            (long long)n_head, (long long)n_head_kv);
    if (n_tok > 65535 || n_head > INT32_MAX)
        return st_error_set(ST_ERR_UNSUPPORTED, "attention: %lld tokens x %lld heads in one call", (long long)n_tok, (long long)n_head);
    dim3 grid((unsigned)n_head, (unsigned)n_tok);
    switch (kv_dtype) {
    case ST_DTYPE_F32:
        st_launch(attn_eager_kernel<ST_DTYPE_F32>, grid, THREADS, 0, stream, k_cache, v_cache, n_slots, n_ctx, (int)n_head_kv, (int)head_dim,
                                                                      q, (int)n_head, pos, slot, scale, out);
        break;
    case ST_DTYPE_F16:
        st_launch(attn_eager_kernel<ST_DTYPE_F16>, grid, THREADS, 0, stream, k_cache, v_cache, n_slots, n_ctx, (int)n_head_kv, (int)head_dim,
                                                                      q, (int)n_head, pos, slot, scale, out);
        break;
    case ST_DTYPE_BF16:
        st_launch(attn_eager_kernel<ST_DTYPE_BF16>, grid, THREADS, 0, stream, k_cache, v_cache, n_slots, n_ctx, (int)n_head_kv, (int)head_dim,
                                                                       q, (int)n_head, pos, slot, scale, out);
        break;
    case ST_DTYPE_Q8_0:
        if ((n_head_kv * head_dim) % 32)
            return st_error_set(ST_ERR_UNSUPPORTED, "attention: a q8_0 KV cache needs rows of a multiple of 32 values "
                                "(%lld kv heads x head_dim %lld)", (long long)n_head_kv, (long long)head_dim);
        st_launch(attn_eager_kernel<ST_DTYPE_Q8_0>, grid, THREADS, 0, stream, k_cache, v_cache, n_slots, n_ctx, (int)n_head_kv, (int)head_dim,
                                                                       q, (int)n_head, pos, slot, scale, out);
        break;
    default:
        return st_error_set(ST_ERR_UNSUPPORTED, "attention: KV cache dtype %s (F32, F16, BF16 or Q8_0 only)", st_dtype_name(kv_dtype));
    }
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}
