/* Decode GEMV. A block is 8 warps; a group of KS warps owns R consecutive rows
 * and strides over their columns in 16-byte vectors (lane-interleaved, so a
 * warp reads 512 contiguous bytes per row per step). U vectors per row are
 * loaded before the first multiply to keep loads in flight. Partial sums are
 * reduced with warp shuffles, then across the KS warps through shared memory.
 *
 * One kernel serves three modes: a single matrix, a group of matrices over the
 * same x (a block finds its job in a small table passed by value: graph
 * capture records it with the launch), and gate/up pairs (PAIR, the epilogue
 * writes silu(gate) * up): with R 1 the block's warp groups alternate gate row
 * r / up row r and meet in shared memory; with R 2 ("joint") one warp group
 * computes both gate row r and up row r, so the x it loads serves both (for
 * several tokens x, not the weights, is most of what a lane loads). The shape
 * rule is st_gemv_pick below. */
#include "kernels/cuda/gemv.cuh"
#include "kernels/cuda/gemv_jobs.cuh"
#include "kernels/cuda/gemv_quant.cuh"
#include "kernels/cuda/quant.cuh"

#include <atomic>
#include <string.h>

namespace {

using namespace st_gemv_jobs;
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

/* The launch's work, by value. Plain mode: job j owns blocks begin[j] ..
 * begin[j + 1] - 1. PAIR mode: w[0]/bias[0] gate, w[1]/bias[1] up, rows[0]
 * rows each, y[0] the output. */
struct gemv_args {
    const uint8_t *w[MAXJ];
    const float *bias[MAXJ];
    float *y[MAXJ];
    int64_t rows[MAXJ];
    unsigned begin[MAXJ];
    const float *x;
    int64_t cols;
    int n_jobs, n_tok, ks;
};

template <int DT, int NT, int R, int U, bool PAIR>
__global__ void __launch_bounds__(WARPS * 32) gemv_vec_kernel(const gemv_args a) {
    constexpr int VE = wvec<DT>::VE;
    constexpr int ESZ = 16 / VE;
    static_assert(!PAIR || R <= 2, "gate/up pairs: R 1 alternates gate/up warp groups, R 2 is gate and up rows of one group");
    constexpr bool JOINT = PAIR && R == 2;
    __shared__ float red[WARPS][R * NT];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int ks_warps = a.ks;
    const int groups = WARPS / ks_warps;
    const int group = warp / ks_warps, ks = warp % ks_warps;
    const int64_t cols = a.cols;
    const int64_t nvec = cols / VE;
    const int64_t stride = (int64_t)ks_warps * 32;
    const float *__restrict__ x = a.x;
    const int n_tok = a.n_tok;

    const int j = PAIR ? 0 : block_job(a);
    const int64_t rows = PAIR ? a.rows[0] : pick(a.rows, j);
    const uint8_t *wb;
    int64_t r0;
    if (JOINT) {
        r0 = (int64_t)blockIdx.x * groups + group;
        wb = a.w[0];
    } else if (PAIR) {
        r0 = (int64_t)blockIdx.x * (groups >> 1) + (group >> 1);
        wb = (group & 1) ? a.w[1] : a.w[0];
    } else {
        r0 = ((int64_t)(blockIdx.x - pick(a.begin, j)) * groups + group) * R;
        wb = pick(a.w, j);
    }

    const uint4 *wr[R];
#pragma unroll
    for (int i = 0; i < R; i++) {
        if (JOINT) {   /* gate row r0 (i 0) and up row r0 (i 1) */
            const int64_t r = r0 < rows ? r0 : rows - 1;
            wr[i] = (const uint4 *)((i ? a.w[1] : a.w[0]) + (size_t)r * (size_t)cols * ESZ);
            continue;
        }
        const int64_t r = r0 + i < rows ? r0 + i : rows - 1;   /* clamp: extra rows compute, never store */
        wr[i] = (const uint4 *)(wb + (size_t)r * (size_t)cols * ESZ);
    }
    float acc[R][NT];
#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[i][t] = 0.0f;

    uint4 q[U][R];
    auto load = [&](int64_t v0) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t v = v0 + (int64_t)u * stride;
#pragma unroll
            for (int i = 0; i < R; i++) q[u][i] = v < nvec ? ld_stream(wr[i] + v) : make_uint4(0, 0, 0, 0);
        }
    };
    /* the first weights are in flight before the wait: they overlap the previous kernel's tail */
    const int64_t first = (int64_t)ks * 32 + lane;
    load(first);
    st_pdl_launch_next();
    st_pdl_wait();
    for (int64_t v0 = first; v0 < nvec; v0 += stride * U) {
        if (v0 != first) load(v0);
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
                for (int jj = 0; jj < VE / 4; jj++) {
                    const float4 f = __ldg(xp + jj);
                    xf[4 * jj] = f.x; xf[4 * jj + 1] = f.y; xf[4 * jj + 2] = f.z; xf[4 * jj + 3] = f.w;
                }
#pragma unroll
                for (int i = 0; i < R; i++) {
                    float wf[VE];
                    wvec<DT>::widen(q[u][i], wf);
                    float s = acc[i][t];
#pragma unroll
                    for (int jj = 0; jj < VE; jj++) s = fmaf(wf[jj], xf[jj], s);
                    acc[i][t] = s;
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < R; i++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[i][t] = st_warp_sum(acc[i][t]);

    if (JOINT) {
        if (ks_warps > 1) {
            if (lane == 0) {
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int t = 0; t < NT; t++) red[warp][i * NT + t] = acc[i][t];
            }
            __syncthreads();
            if (ks != 0) return;
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    float v = 0.0f;
                    for (int k = 0; k < ks_warps; k++) v += red[warp + k][i * NT + t];
                    acc[i][t] = v;
                }
        }
        const float *bg = a.bias[0], *bu = a.bias[1];
#pragma unroll
        for (int t = 0; t < NT; t++)
            if (lane == t && r0 < rows && t < n_tok)
                a.y[0][(int64_t)t * rows + r0] =
                    silu_mul(acc[0][t] + (bg ? bg[r0] : 0.0f), acc[1][t] + (bu ? bu[r0] : 0.0f));
        return;
    }
    if (PAIR) {
        /* gate group g (even) and up group g + 1 meet in shared memory */
        if (lane == 0) {
#pragma unroll
            for (int t = 0; t < NT; t++) red[warp][t] = acc[0][t];
        }
        __syncthreads();
        if (ks != 0 || (group & 1)) return;
        const int64_t r = r0;
        const float *bg = a.bias[0], *bu = a.bias[1];
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float g = 0.0f, u = 0.0f;
            for (int k = 0; k < ks_warps; k++) {
                g += red[warp + k][t];
                u += red[warp + ks_warps + k][t];
            }
            if (lane == t && r < rows && t < n_tok)
                a.y[0][(int64_t)t * rows + r] = silu_mul(g + (bg ? bg[r] : 0.0f), u + (bu ? bu[r] : 0.0f));
        }
        return;
    }

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
    const float *bias = pick(a.bias, j);
    float *y = pick(a.y, j);
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

/* Any alignment, any column count: a warp per row, scalar loads. PAIR: the
 * warp computes gate row r (w) and up row r (w2) and writes silu(g) * u. */
template <int DT, bool PAIR>
__global__ void gemv_scalar_kernel(const void *__restrict__ w, const void *__restrict__ w2, int64_t rows, int64_t cols,
                                   const float *bias, const float *__restrict__ bias2,
                                   const float *__restrict__ x, int n_tok, float *y) {   /* bias may be y */
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    st_pdl_launch_next();
    st_pdl_wait();
    if (r >= rows) return;
    for (int t = 0; t < n_tok; t++) {
        float s = 0.0f, s2 = 0.0f;
        for (int64_t c = lane; c < cols; c += 32) {
            const float xv = x[(int64_t)t * cols + c];
            s = fmaf(st_elem<DT>::load(w, r * cols + c), xv, s);
            if (PAIR) s2 = fmaf(st_elem<DT>::load(w2, r * cols + c), xv, s2);
        }
        s = st_warp_sum(s);
        if (PAIR) s2 = st_warp_sum(s2);
        if (lane == 0) {
            s += bias ? bias[r] : 0.0f;
            if (PAIR) s = silu_mul(s, s2 + (bias2 ? bias2[r] : 0.0f));
            y[(int64_t)t * rows + r] = s;
        }
    }
}

template <int DT, bool PAIR>
st_status launch_scalar(const void *w, const void *w2, int64_t rows, int64_t cols, const float *bias, const float *bias2,
                        const float *x, int n_tok, float *y, cudaStream_t stream) {
    const int64_t blocks = (rows + WARPS - 1) / WARPS;
    if (blocks > INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "gemv: %lld rows", (long long)rows);
    st_launch(gemv_scalar_kernel<DT, PAIR>, (unsigned)blocks, WARPS * 32, 0, stream, w, w2, rows, cols, bias, bias2, x,
              n_tok, y);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

st_status scalar(st_dtype dt, bool pair, const void *w, const void *w2, int64_t rows, int64_t cols, const float *bias,
                 const float *bias2, const float *x, int n_tok, float *y, cudaStream_t stream) {
    switch (dt) {
    case ST_DTYPE_F32:
        return pair ? launch_scalar<ST_DTYPE_F32, true>(w, w2, rows, cols, bias, bias2, x, n_tok, y, stream)
                    : launch_scalar<ST_DTYPE_F32, false>(w, w2, rows, cols, bias, bias2, x, n_tok, y, stream);
    case ST_DTYPE_F16:
        return pair ? launch_scalar<ST_DTYPE_F16, true>(w, w2, rows, cols, bias, bias2, x, n_tok, y, stream)
                    : launch_scalar<ST_DTYPE_F16, false>(w, w2, rows, cols, bias, bias2, x, n_tok, y, stream);
    default:
        return pair ? launch_scalar<ST_DTYPE_BF16, true>(w, w2, rows, cols, bias, bias2, x, n_tok, y, stream)
                    : launch_scalar<ST_DTYPE_BF16, false>(w, w2, rows, cols, bias, bias2, x, n_tok, y, stream);
    }
}

template <int DT, int NT, int R, int U, bool PAIR>
st_status launch_vec(const gemv_args &a, unsigned blocks, cudaStream_t stream) {
    st_launch(gemv_vec_kernel<DT, NT, R, U, PAIR>, blocks, WARPS * 32, 0, stream, a);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

template <int DT, int R, bool PAIR>
st_status dispatch_nt(const gemv_args &a, unsigned blocks, int unroll, cudaStream_t stream) {
    if (a.n_tok == 1) {
        if (unroll >= 8) return launch_vec<DT, 1, R, 8, PAIR>(a, blocks, stream);
        if (unroll <= 2) return launch_vec<DT, 1, R, 2, PAIR>(a, blocks, stream);
        return launch_vec<DT, 1, R, 4, PAIR>(a, blocks, stream);
    }
    if (a.n_tok == 2) return launch_vec<DT, 2, R, 4, PAIR>(a, blocks, stream);
    if (a.n_tok <= 4) return launch_vec<DT, 4, R, 2, PAIR>(a, blocks, stream);
    return launch_vec<DT, 8, R, 2, PAIR>(a, blocks, stream);
}

template <int DT>
st_status dispatch(const gemv_args &a, unsigned blocks, const struct st_gemv_shape &s, bool pair, cudaStream_t stream) {
    if (pair) return s.rows_per_warp == 2 ? dispatch_nt<DT, 2, true>(a, blocks, s.unroll, stream)
                                          : dispatch_nt<DT, 1, true>(a, blocks, s.unroll, stream);
    if (s.rows_per_warp == 2) return dispatch_nt<DT, 2, false>(a, blocks, s.unroll, stream);
    return dispatch_nt<DT, 1, false>(a, blocks, s.unroll, stream);
}

/* Blocks of the single-token kernel (R 1, U 2) resident per SM on the current
 * device, from the occupancy calculator, once per device. */
int slots_per_sm() {
    static std::atomic<int> cache[64];
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
        cudaGetLastError();
        return 8;
    }
    int n = cache[dev].load(std::memory_order_relaxed);
    if (n > 0) return n;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_vec_kernel<ST_DTYPE_BF16, 1, 1, 2, false>, WARPS * 32, 0) !=
            cudaSuccess ||
        n <= 0) {
        cudaGetLastError();
        n = 8;
    }
    cache[dev].store(n, std::memory_order_relaxed);
    return n;
}

/* The shape rule. Single token (decode), measured on an H100 (bench/gpu_gemv.md):
 *  - one row per warp group, two 16-byte loads in flight per lane: 32
 *    registers, the most blocks per SM (S = SMs x resident blocks);
 *  - k-split at its finest (8 warps on a row; 4 per matrix for gate/up pairs),
 *    so that the last wave costs at most one short block;
 *  - except when the finest split gives under 4 waves of blocks with under 4
 *    loads per lane (short rows, few of them: 3584 x 3584): then the largest
 *    split whose blocks all fit in one wave and fill at least half of it;
 *  - very tall matrices (lm_head, >= 6 waves of 16-row blocks): two whole rows
 *    per warp, four loads in flight (the fewest blocks; 103% of copy measured).
 * Several tokens: two rows per warp when there are enough rows (for gate/up
 * pairs: the joint pair, gate and up row r in one warp group), split until
 * the launch has 16 warps per SM. */
struct st_gemv_shape st_gemv_pick(int64_t rows, int64_t nvec, int64_t n_tok, bool pair, int sm_count) {
    const int sms = sm_count > 0 ? sm_count : 80;
    struct st_gemv_shape s = {1, 1, 2, WARPS * 32, true};
    const int kmax_mode = pair ? WARPS / 2 : WARPS;
    if (n_tok > 1) {
        s.unroll = n_tok <= 2 ? 4 : 2;
        const int64_t target_warps = (int64_t)sms * 16;
        int64_t groups = rows;   /* warp groups before the split */
        if (pair) {
            s.rows_per_warp = 2;
        } else if (rows / 2 >= target_warps) {
            s.rows_per_warp = 2;
            groups = rows / 2;
        }
        while (s.k_split < WARPS && groups * s.k_split < target_warps && nvec >= (int64_t)s.k_split * 2 * 32 * 2)
            s.k_split *= 2;
        return s;
    }
    const int64_t S = (int64_t)sms * slots_per_sm();
    if (!pair && rows / (2 * WARPS) >= 6 * S) {
        s.rows_per_warp = 2;
        s.unroll = 4;
        return s;
    }
    int kmax = kmax_mode;
    while (kmax > 1 && nvec < (int64_t)32 * kmax) kmax /= 2;   /* every lane gets a vector */
    auto blocks = [&](int k) {
        const int64_t per_block = pair ? WARPS / (2 * k) : WARPS / k;
        return (rows + per_block - 1) / per_block;
    };
    s.k_split = kmax;
    if (blocks(kmax) < 4 * S && nvec < (int64_t)4 * 32 * kmax) {
        for (int k = kmax / 2; k >= 1; k /= 2) {
            const int64_t b = blocks(k);
            if (b <= S && 2 * b >= S) {
                s.k_split = k;
                break;
            }
        }
    }
    return s;
}

int ve_of(st_dtype dt) { return dt == ST_DTYPE_F32 ? 4 : 8; }

st_status check_dtype(st_dtype dtype) {
    if (dtype == ST_DTYPE_F32 || dtype == ST_DTYPE_F16 || dtype == ST_DTYPE_BF16 || st_q_is_quant(dtype)) return ST_OK;
    return st_error_set(ST_ERR_INTERNAL, "matmul: dtype code %d is not a strata element type", (int)dtype);
}

st_status check_tok(int64_t n_tok) {
    if (n_tok <= ST_GEMV_MAX_TOK) return ST_OK;
    return st_error_set(ST_ERR_INTERNAL, "gemv: %lld tokens (at most %d; use the GEMM)", (long long)n_tok, ST_GEMV_MAX_TOK);
}

/* The one vectorized launch of a plain group or a gate/up pair. */
st_status launch_group(gemv_args &a, st_dtype dtype, bool pair, const struct st_gemv_shape &shape, cudaStream_t stream) {
    struct st_gemv_shape s = shape;
    if (s.k_split != 1 && s.k_split != 2 && s.k_split != 4 && s.k_split != 8) s.k_split = 1;
    if (s.rows_per_warp != 2) s.rows_per_warp = 1;
    const bool joint = pair && s.rows_per_warp == 2;
    if (pair && !joint && s.k_split > WARPS / 2) s.k_split = WARPS / 2;
    a.ks = s.k_split;
    int64_t total = 0;
    /* rows per block: a pair's alternating groups hold half a row each, a joint group one row of each matrix */
    const int64_t per_block = joint  ? WARPS / s.k_split
                              : pair ? WARPS / (2 * s.k_split)
                                     : (int64_t)(WARPS / s.k_split) * s.rows_per_warp;
    for (int j = 0; j < MAXJ; j++) {
        a.begin[j] = (unsigned)total;
        if (j < a.n_jobs) total += (a.rows[j] + per_block - 1) / per_block;
        if (total > INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "gemv: %lld blocks", (long long)total);
    }
    if (total == 0) return ST_OK;
    switch (dtype) {
    case ST_DTYPE_F32: return dispatch<ST_DTYPE_F32>(a, (unsigned)total, s, pair, stream);
    case ST_DTYPE_F16: return dispatch<ST_DTYPE_F16>(a, (unsigned)total, s, pair, stream);
    default: return dispatch<ST_DTYPE_BF16>(a, (unsigned)total, s, pair, stream);
    }
}

bool vec_ok(const void *const *ws, int n, st_dtype dt, int64_t cols, const float *x) {
    if (cols % ve_of(dt) != 0 || !st_is_aligned(x, 16)) return false;
    for (int i = 0; i < n; i++)
        if (!st_is_aligned(ws[i], 16)) return false;
    return true;
}

} // namespace

/* ---- single matrix ------------------------------------------------------------ */

struct st_gemv_shape st_gemv_cuda_shape(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *x,
                                        const void *xq, int64_t n_tok, int sm_count) {
    if (st_q_is_quant(dtype)) return st_gemvq_pick(&w, 1, dtype, rows, cols, n_tok, false, xq != NULL, sm_count);
    struct st_gemv_shape s = st_gemv_pick(rows, cols / ve_of(dtype), n_tok, false, sm_count);
    s.vectorized = vec_ok(&w, 1, dtype, cols, x);
    return s;
}

st_status st_gemv_cuda(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias, const float *x,
                       const void *xq, int64_t n_tok, float *y, int sm_count, cudaStream_t stream) {
    const struct st_gemv_shape s = st_gemv_cuda_shape(w, dtype, rows, cols, x, xq, n_tok, sm_count);
    return st_gemv_cuda_shaped(w, dtype, rows, cols, bias, x, xq, n_tok, y, &s, stream);
}

st_status st_gemv_cuda_shaped(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias, const float *x,
                              const void *xq, int64_t n_tok, float *y, const struct st_gemv_shape *shape,
                              cudaStream_t stream) {
    const struct st_gemv_job job = {w, bias, y, rows};
    return st_gemv_multi_cuda_shaped(&job, 1, dtype, cols, x, xq, n_tok, shape, stream);
}

/* ---- a group of matrices over one x ------------------------------------------ */

struct st_gemv_shape st_gemv_multi_cuda_shape(const struct st_gemv_job *jobs, int n_jobs, st_dtype dtype, int64_t cols,
                                              const float *x, const void *xq, int64_t n_tok, int sm_count) {
    int64_t rows = 0;
    const void *ws[MAXJ] = {NULL, NULL, NULL, NULL};
    const int n = n_jobs < 0 ? 0 : n_jobs > MAXJ ? MAXJ : n_jobs;
    for (int i = 0; i < n; i++) {
        rows += jobs[i].rows;
        ws[i] = jobs[i].w;
    }
    if (st_q_is_quant(dtype)) return st_gemvq_pick(ws, n, dtype, rows, cols, n_tok, false, xq != NULL, sm_count);
    struct st_gemv_shape s = st_gemv_pick(rows, cols / ve_of(dtype), n_tok, false, sm_count);
    s.vectorized = vec_ok(ws, n, dtype, cols, x);
    return s;
}

st_status st_gemv_multi_cuda(const struct st_gemv_job *jobs, int n_jobs, st_dtype dtype, int64_t cols, const float *x,
                             const void *xq, int64_t n_tok, int sm_count, cudaStream_t stream) {
    if (n_jobs < 1 || n_jobs > MAXJ)
        return st_error_set(ST_ERR_INTERNAL, "gemv: %d matrices in one group (1 to %d)", n_jobs, MAXJ);
    const struct st_gemv_shape s = st_gemv_multi_cuda_shape(jobs, n_jobs, dtype, cols, x, xq, n_tok, sm_count);
    return st_gemv_multi_cuda_shaped(jobs, n_jobs, dtype, cols, x, xq, n_tok, &s, stream);
}

st_status st_gemv_multi_cuda_shaped(const struct st_gemv_job *jobs, int n_jobs, st_dtype dtype, int64_t cols,
                                    const float *x, const void *xq, int64_t n_tok, const struct st_gemv_shape *shape,
                                    cudaStream_t stream) {
    if (n_jobs < 1 || n_jobs > MAXJ)
        return st_error_set(ST_ERR_INTERNAL, "gemv: %d matrices in one group (1 to %d)", n_jobs, MAXJ);
    if (n_tok <= 0) return ST_OK;
    st_status st;
    if ((st = check_tok(n_tok)) != ST_OK || (st = check_dtype(dtype)) != ST_OK) return st;
    if (st_q_is_quant(dtype)) return st_gemvq_launch(jobs, n_jobs, false, dtype, cols, x, xq, n_tok, shape, stream);
    const void *ws[MAXJ] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < n_jobs; i++) ws[i] = jobs[i].w;
    const bool vec = vec_ok(ws, n_jobs, dtype, cols, x);
    if (shape->vectorized && !vec)
        return st_error_set(ST_ERR_INTERNAL, "gemv: vectorized shape asked for unaligned data or %lld columns", (long long)cols);
    if (!shape->vectorized) {
        for (int i = 0; i < n_jobs; i++) {
            if (jobs[i].rows <= 0) continue;
            st = scalar(dtype, false, jobs[i].w, NULL, jobs[i].rows, cols, jobs[i].bias, NULL, x, (int)n_tok, jobs[i].y,
                        stream);
            if (st != ST_OK) return st;
        }
        return ST_OK;
    }
    gemv_args a;
    memset(&a, 0, sizeof a);
    for (int i = 0; i < n_jobs; i++) {
        a.w[i] = (const uint8_t *)jobs[i].w;
        a.bias[i] = jobs[i].bias;
        a.y[i] = jobs[i].y;
        a.rows[i] = jobs[i].rows > 0 ? jobs[i].rows : 0;
    }
    a.x = x;
    a.cols = cols;
    a.n_jobs = n_jobs;
    a.n_tok = (int)n_tok;
    return launch_group(a, dtype, false, *shape, stream);
}

/* ---- gate/up with the SwiGLU epilogue ------------------------------------------ */

struct st_gemv_shape st_gemv_swiglu_cuda_shape(const void *wg, const void *wu, st_dtype dtype, int64_t rows, int64_t cols,
                                               const float *x, const void *xq, int64_t n_tok, int sm_count) {
    const void *ws[2] = {wg, wu};
    if (st_q_is_quant(dtype)) return st_gemvq_pick(ws, 2, dtype, rows, cols, n_tok, true, xq != NULL, sm_count);
    struct st_gemv_shape s = st_gemv_pick(rows, cols / ve_of(dtype), n_tok, true, sm_count);
    s.vectorized = vec_ok(ws, 2, dtype, cols, x);
    return s;
}

st_status st_gemv_swiglu_cuda(const void *wg, const float *bg, const void *wu, const float *bu, st_dtype dtype,
                              int64_t rows, int64_t cols, const float *x, const void *xq, int64_t n_tok, float *out,
                              int sm_count, cudaStream_t stream) {
    const struct st_gemv_shape s = st_gemv_swiglu_cuda_shape(wg, wu, dtype, rows, cols, x, xq, n_tok, sm_count);
    return st_gemv_swiglu_cuda_shaped(wg, bg, wu, bu, dtype, rows, cols, x, xq, n_tok, out, &s, stream);
}

st_status st_gemv_swiglu_cuda_shaped(const void *wg, const float *bg, const void *wu, const float *bu, st_dtype dtype,
                                     int64_t rows, int64_t cols, const float *x, const void *xq, int64_t n_tok,
                                     float *out, const struct st_gemv_shape *shape, cudaStream_t stream) {
    if (rows <= 0 || n_tok <= 0) return ST_OK;
    st_status st;
    if ((st = check_tok(n_tok)) != ST_OK || (st = check_dtype(dtype)) != ST_OK) return st;
    if (st_q_is_quant(dtype)) {
        const struct st_gemv_job pair[2] = {{wg, bg, out, rows}, {wu, bu, out, rows}};
        return st_gemvq_launch(pair, 2, true, dtype, cols, x, xq, n_tok, shape, stream);
    }
    const void *ws[2] = {wg, wu};
    if (shape->vectorized && !vec_ok(ws, 2, dtype, cols, x))
        return st_error_set(ST_ERR_INTERNAL, "gemv: vectorized shape asked for unaligned data or %lld columns", (long long)cols);
    if (!shape->vectorized) return scalar(dtype, true, wg, wu, rows, cols, bg, bu, x, (int)n_tok, out, stream);
    gemv_args a;
    memset(&a, 0, sizeof a);
    a.w[0] = (const uint8_t *)wg;
    a.w[1] = (const uint8_t *)wu;
    a.bias[0] = bg;
    a.bias[1] = bu;
    a.y[0] = out;
    a.rows[0] = rows;
    a.x = x;
    a.cols = cols;
    a.n_jobs = 1;   /* one job of row pairs: one block range */
    a.n_tok = (int)n_tok;
    return launch_group(a, dtype, true, *shape, stream);
}
