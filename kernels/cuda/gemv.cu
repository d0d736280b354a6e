/* Decode GEMV. A block is 8 warps; a group of KS warps owns R consecutive rows
 * and strides over their columns in 16-byte vectors (lane-interleaved, so a
 * warp reads 512 contiguous bytes per row per step). U vectors per row are
 * loaded before the first multiply to keep loads in flight. Partial sums are
 * reduced with warp shuffles, then across the KS warps through shared memory. */
#include "kernels/cuda/gemv.cuh"

namespace {

constexpr int WARPS = 8;

template <int DT> struct wvec;
template <> struct wvec<ST_DTYPE_F32> {
    static constexpr int VE = 4;
    static __device__ __forceinline__ void widen(const uint4 &q, float *f) {
        f[0] = __uint_as_float(q.x); f[1] = __uint_as_float(q.y); f[2] = __uint_as_float(q.z); f[3] = __uint_as_float(q.w);
    }
};
template <> struct wvec<ST_DTYPE_BF16> {
    static constexpr int VE = 8;
    static __device__ __forceinline__ void widen(const uint4 &q, float *f) {
        float2 a = st_bf16x2_to_f32(q.x), b = st_bf16x2_to_f32(q.y), c = st_bf16x2_to_f32(q.z), d = st_bf16x2_to_f32(q.w);
        f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y; f[4] = c.x; f[5] = c.y; f[6] = d.x; f[7] = d.y;
    }
};
template <> struct wvec<ST_DTYPE_F16> {
    static constexpr int VE = 8;
    static __device__ __forceinline__ void widen(const uint4 &q, float *f) {
        float2 a = st_f16x2_to_f32(q.x), b = st_f16x2_to_f32(q.y), c = st_f16x2_to_f32(q.z), d = st_f16x2_to_f32(q.w);
        f[0] = a.x; f[1] = a.y; f[2] = b.x; f[3] = b.y; f[4] = c.x; f[5] = c.y; f[6] = d.x; f[7] = d.y;
    }
};

/* Streaming load: the weights are read once, keep them out of L1. */
__device__ __forceinline__ uint4 ld_stream(const uint4 *p) { return __ldcs(p); }

template <int DT, int NT, int R, int U>
__global__ void __launch_bounds__(WARPS * 32)
gemv_vec_kernel(const uint8_t *__restrict__ w, int64_t rows, int64_t cols, const float *__restrict__ bias,
                const float *__restrict__ x, int n_tok, float *__restrict__ y, int ks_warps) {
    constexpr int VE = wvec<DT>::VE;
    constexpr int ESZ = 16 / VE;
    __shared__ float red[WARPS][R * NT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int groups = WARPS / ks_warps;
    const int group = warp / ks_warps, ks = warp % ks_warps;
    const int64_t r0 = ((int64_t)blockIdx.x * groups + group) * R;
    const int64_t nvec = cols / VE;
    const int64_t stride = (int64_t)ks_warps * 32;

    const uint4 *wr[R];
#pragma unroll
    for (int i = 0; i < R; i++) {
        const int64_t r = r0 + i < rows ? r0 + i : rows - 1;   /* clamp: extra rows compute, never store */
        wr[i] = (const uint4 *)(w + (size_t)r * (size_t)cols * ESZ);
    }
    float acc[R][NT];
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[i][t] = 0.0f;

    for (int64_t v0 = (int64_t)ks * 32 + lane; v0 < nvec; v0 += stride * U) {
        uint4 q[U][R];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t v = v0 + (int64_t)u * stride;
#pragma unroll
            for (int i = 0; i < R; i++) q[u][i] = v < nvec ? ld_stream(wr[i] + v) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t v = v0 + (int64_t)u * stride;
            if (v >= nvec) break;
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t >= n_tok) break;
                float xf[VE];
                const float4 *xp = (const float4 *)(x + (int64_t)t * cols + v * VE);
#pragma unroll
                for (int j = 0; j < VE / 4; j++) {
                    const float4 a = __ldg(xp + j);
                    xf[4 * j] = a.x; xf[4 * j + 1] = a.y; xf[4 * j + 2] = a.z; xf[4 * j + 3] = a.w;
                }
#pragma unroll
                for (int i = 0; i < R; i++) {
                    float wf[VE];
                    wvec<DT>::widen(q[u][i], wf);
                    float s = acc[i][t];
#pragma unroll
                    for (int j = 0; j < VE; j++) s = fmaf(wf[j], xf[j], s);
                    acc[i][t] = s;
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[i][t] = st_warp_sum(acc[i][t]);

    if (ks_warps > 1) {
        if (lane == 0) {
#pragma unroll
            for (int i = 0; i < R; i++)
#pragma unroll
                for (int t = 0; t < NT; t++) red[warp][i * NT + t] = acc[i][t];
        }
        __syncthreads();
        if (ks != 0) return;
#pragma unroll
        for (int i = 0; i < R; i++)
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float s = 0.0f;
                for (int k = 0; k < ks_warps; k++) s += red[warp + k][i * NT + t];
                acc[i][t] = s;
            }
    }
    /* lanes write different (row, token) outputs */
#pragma unroll
    for (int i = 0; i < R; i++) {
        const int64_t r = r0 + i;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (lane == ((i * NT + t) & 31) && r < rows && t < n_tok)
                y[(int64_t)t * rows + r] = acc[i][t] + (bias ? bias[r] : 0.0f);
        }
    }
}

/* Any alignment, any column count: a warp per row, scalar loads. */
template <int DT>
__global__ void gemv_scalar_kernel(const void *__restrict__ w, int64_t rows, int64_t cols, const float *__restrict__ bias,
                                   const float *__restrict__ x, int n_tok, float *__restrict__ y) {
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (r >= rows) return;
    for (int t = 0; t < n_tok; t++) {
        float s = 0.0f;
        for (int64_t c = lane; c < cols; c += 32) s = fmaf(st_elem<DT>::load(w, r * cols + c), x[(int64_t)t * cols + c], s);
        s = st_warp_sum(s);
        if (lane == 0) y[(int64_t)t * rows + r] = s + (bias ? bias[r] : 0.0f);
    }
}

template <int DT, int NT, int R, int U>
st_status launch_vec(const void *w, int64_t rows, int64_t cols, const float *bias, const float *x, int n_tok, float *y,
                     int ks, cudaStream_t stream) {
    const int64_t rows_per_block = (int64_t)(WARPS / ks) * R;
    const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
    if (blocks > INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "gemv: %lld rows", (long long)rows);
    gemv_vec_kernel<DT, NT, R, U><<<(unsigned)blocks, WARPS * 32, 0, stream>>>((const uint8_t *)w, rows, cols, bias, x,
                                                                               n_tok, y, ks);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

template <int DT, int R>
st_status dispatch_nt(const void *w, int64_t rows, int64_t cols, const float *bias, const float *x, int n_tok, float *y,
                      int ks, int unroll, cudaStream_t stream) {
    if (n_tok == 1) {
        if (unroll >= 8) return launch_vec<DT, 1, R, 8>(w, rows, cols, bias, x, n_tok, y, ks, stream);
        if (unroll <= 2) return launch_vec<DT, 1, R, 2>(w, rows, cols, bias, x, n_tok, y, ks, stream);
        return launch_vec<DT, 1, R, 4>(w, rows, cols, bias, x, n_tok, y, ks, stream);
    }
    if (n_tok == 2) return launch_vec<DT, 2, R, 4>(w, rows, cols, bias, x, n_tok, y, ks, stream);
    if (n_tok <= 4) return launch_vec<DT, 4, R, 2>(w, rows, cols, bias, x, n_tok, y, ks, stream);
    return launch_vec<DT, 8, R, 2>(w, rows, cols, bias, x, n_tok, y, ks, stream);
}

template <int DT>
st_status dispatch_r(const void *w, int64_t rows, int64_t cols, const float *bias, const float *x, int n_tok, float *y,
                     const struct st_gemv_shape &s, cudaStream_t stream) {
    if (s.rows_per_warp == 2) return dispatch_nt<DT, 2>(w, rows, cols, bias, x, n_tok, y, s.k_split, s.unroll, stream);
    return dispatch_nt<DT, 1>(w, rows, cols, bias, x, n_tok, y, s.k_split, s.unroll, stream);
}

} // namespace

struct st_gemv_shape st_gemv_cuda_shape(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *x,
                                        int64_t n_tok, int sm_count) {
    struct st_gemv_shape s = {1, 1, n_tok <= 2 ? 4 : 2, WARPS * 32, false};
    const int esz = dtype == ST_DTYPE_F32 ? 4 : 2;
    const int ve = 16 / esz;
    s.vectorized = cols % ve == 0 && st_is_aligned(w, 16) && st_is_aligned(x, 16);
    if (!s.vectorized) return s;
    const int64_t target_warps = (int64_t)(sm_count > 0 ? sm_count : 80) * 16;
    if (rows / 2 >= target_warps) s.rows_per_warp = 2;
    const int64_t nvec = cols / ve;
    while (s.k_split < WARPS && (rows / s.rows_per_warp) * s.k_split < target_warps && nvec >= (int64_t)s.k_split * 2 * 32 * 2)
        s.k_split *= 2;
    return s;
}

st_status st_gemv_cuda(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias, const float *x,
                       int64_t n_tok, float *y, int sm_count, cudaStream_t stream) {
    const struct st_gemv_shape s = st_gemv_cuda_shape(w, dtype, rows, cols, x, n_tok, sm_count);
    return st_gemv_cuda_shaped(w, dtype, rows, cols, bias, x, n_tok, y, &s, stream);
}

st_status st_gemv_cuda_shaped(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias, const float *x,
                              int64_t n_tok, float *y, const struct st_gemv_shape *shape, cudaStream_t stream) {
    if (rows <= 0 || n_tok <= 0) return ST_OK;
    if (n_tok > ST_GEMV_MAX_TOK)
        return st_error_set(ST_ERR_INTERNAL, "gemv: %lld tokens (at most %d; use the GEMM)", (long long)n_tok, ST_GEMV_MAX_TOK);
    if (dtype != ST_DTYPE_F32 && dtype != ST_DTYPE_F16 && dtype != ST_DTYPE_BF16) {
        st_error_set(ST_ERR_UNSUPPORTED, "matmul: %s weights are not supported by the CUDA backend", st_dtype_name(dtype));
        return st_error_hint("use an F16/BF16/F32 model file (safetensors or an unquantized GGUF) for GPU stages");
    }
    struct st_gemv_shape s = *shape;
    const int ve = dtype == ST_DTYPE_F32 ? 4 : 8;
    if (s.vectorized && !(cols % ve == 0 && st_is_aligned(w, 16) && st_is_aligned(x, 16)))
        return st_error_set(ST_ERR_INTERNAL, "gemv: vectorized shape asked for unaligned data or %lld columns", (long long)cols);
    if (s.k_split != 1 && s.k_split != 2 && s.k_split != 4 && s.k_split != 8) s.k_split = 1;
    const int nt = (int)n_tok;
    if (!s.vectorized) {
        const int64_t blocks = (rows + WARPS - 1) / WARPS;
        if (blocks > INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "gemv: %lld rows", (long long)rows);
        switch (dtype) {
        case ST_DTYPE_F32: gemv_scalar_kernel<ST_DTYPE_F32><<<(unsigned)blocks, WARPS * 32, 0, stream>>>(w, rows, cols, bias, x, nt, y); break;
        case ST_DTYPE_F16: gemv_scalar_kernel<ST_DTYPE_F16><<<(unsigned)blocks, WARPS * 32, 0, stream>>>(w, rows, cols, bias, x, nt, y); break;
        default: gemv_scalar_kernel<ST_DTYPE_BF16><<<(unsigned)blocks, WARPS * 32, 0, stream>>>(w, rows, cols, bias, x, nt, y); break;
        }
        ST_CUDA_LAUNCH_CHECK();
        return ST_OK;
    }
    switch (dtype) {
    case ST_DTYPE_F32: return dispatch_r<ST_DTYPE_F32>(w, rows, cols, bias, x, nt, y, s, stream);
    case ST_DTYPE_F16: return dispatch_r<ST_DTYPE_F16>(w, rows, cols, bias, x, nt, y, s, stream);
    default: return dispatch_r<ST_DTYPE_BF16>(w, rows, cols, bias, x, nt, y, s, stream);
    }
}
