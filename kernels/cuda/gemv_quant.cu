/* Decode GEMV over quantized weights (see gemv_quant.cuh for the scheme). */
#include "kernels/cuda/gemv_quant.cuh"
#include "kernels/cuda/gemv_jobs.cuh"
#include "kernels/cuda/quant.cuh"

#include <string.h>

namespace {

using namespace st_gemv_jobs;

constexpr int WARPS = 8;
constexpr int WU = 2;   /* units per lane per window */

struct gemvq_args {
    const uint8_t *w[MAXJ];
    const float *bias[MAXJ];
    float *y[MAXJ];
    int64_t rows[MAXJ];
    unsigned begin[MAXJ];
    const float *x;
    const uint8_t *xq;
    int64_t cols;
    int n_jobs, n_tok, ks;
};

/* The 16 bytes at p (16-aligned) with a streaming load, except at the ends
 * of a matrix that is not 16-byte aligned ([begin, end), both 2-aligned):
 * there only the halves inside are read, the rest is zero. */
__device__ __forceinline__ uint4 ld_window(const uint8_t *p, const uint8_t *begin, const uint8_t *end) {
    if (p >= begin && p + 16 <= end) return __ldcs((const uint4 *)p);
    uint32_t v[4] = {0, 0, 0, 0};
    const uint16_t *h = (const uint16_t *)p;
#pragma unroll
    for (int i = 0; i < 8; i++)
        if (p + 2 * i >= begin && p + 2 * i < end) v[i >> 1] |= (uint32_t)h[i] << (16 * (i & 1));
    return make_uint4(v[0], v[1], v[2], v[3]);
}

/* One token: at most 64 registers (4 blocks, 32 warps per SM) for one row
 * per warp group, 80 (3 blocks) for more; several tokens 128. A warp group
 * owns R consecutive rows of one matrix (a gate/up pair:
 * gate rows in even groups, the same up rows in odd ones) and streams them one
 * after the other, the next row's first window loaded during the last one of
 * the row before, so the setup and the reductions of a warp are paid once per
 * R rows. */
template <int DT, int A, int NT, bool I8, bool PAIR, int R>
__global__ void __launch_bounds__(WARPS * 32, NT > 1 ? 2 : R > 1 ? 3 : 4) gemvq_kernel(const gemvq_args a) {
    using Tr = st_qt<DT>;
    constexpr int UPB = Tr::QK / 32;
    constexpr int WB = 32 * WU / UPB;                   /* blocks per window */
    constexpr int WCH = (WB * Tr::BB + 15) / 16 + 1;    /* 16-byte chunks covering a window at any offset */
    constexpr int LR = (WCH + 31) / 32;                 /* loads per lane per window */
    __shared__ uint4 sm[WARPS][WCH + 1];                /* + 1: the reader's slack */
    __shared__ float red[WARPS][R][NT];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int ks_warps = a.ks;
    const int groups = WARPS / ks_warps;
    const int group = warp / ks_warps, ks = warp % ks_warps;
    const int64_t cols = a.cols;
    const int n_tok = a.n_tok;

    const int j = PAIR ? 0 : block_job(a);
    const int64_t rows = PAIR ? a.rows[0] : pick(a.rows, j);
    const uint8_t *wb;
    int64_t r0;
    if (PAIR) {
        r0 = ((int64_t)blockIdx.x * (groups >> 1) + (group >> 1)) * R;
        wb = (group & 1) ? a.w[1] : a.w[0];
    } else {
        r0 = ((int64_t)(blockIdx.x - pick(a.begin, j)) * groups + group) * R;
        wb = pick(a.w, j);
    }
    const int64_t nblk = cols / Tr::QK;
    const size_t row_bytes = (size_t)nblk * Tr::BB;
    const uint8_t *end = wb + (size_t)rows * row_bytes;
    auto row_at = [&](int m) {   /* extra rows compute, never store */
        return wb + (size_t)(r0 + m < rows ? r0 + m : rows - 1) * row_bytes;
    };
    const int64_t nwin = (nblk + WB - 1) / WB;
    const size_t xq_row = st_q8x_row_bytes(cols);

    uint4 pre[LR];
#pragma unroll
    for (int i = 0; i < LR; i++) pre[i] = make_uint4(0, 0, 0, 0);
    auto load = [&](const uint8_t *rowp, int64_t win) {
        const uint8_t *gs = rowp + (size_t)win * WB * Tr::BB;
        const uint8_t *g16 = (const uint8_t *)((uintptr_t)gs & ~(uintptr_t)15);
        const int64_t nb = nblk - win * WB < WB ? nblk - win * WB : WB;
        const int nch = (int)(((gs - g16) + nb * Tr::BB + 15) >> 4);
#pragma unroll
        for (int i = 0; i < LR; i++) {
            const int c = lane + 32 * i;
            if (c < nch) pre[i] = ld_window(g16 + 16 * c, wb, end);
        }
    };

    if (ks < nwin) load(row_at(0), ks);   /* weights only: in flight before the wait, over the previous kernel's tail */
    st_pdl_launch_next();
    st_pdl_wait();
    /* lane m keeps row m's sums (rows in a runtime loop: one copy of the code) */
    float mine[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) mine[t] = 0.0f;
#pragma unroll 1
    for (int m = 0; m < R; m++) {
        const uint8_t *rowp = row_at(m);
        float acc[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) acc[t] = 0.0f;
        for (int64_t win = ks; win < nwin; win += ks_warps) {
            __syncwarp();
#pragma unroll
            for (int i = 0; i < LR; i++) {
                const int c = lane + 32 * i;
                if (c < WCH) sm[warp][c] = pre[i];
            }
            __syncwarp();
            if (win + ks_warps < nwin) load(rowp, win + ks_warps);
            else if (m + 1 < R) load(row_at(m + 1), ks);
            const int64_t b0 = win * WB;
            const int nb = (int)(nblk - b0 < WB ? nblk - b0 : WB);
            const uint8_t *sb = (const uint8_t *)&sm[warp][0] + ((uintptr_t)(rowp + (size_t)b0 * Tr::BB) & 15);
#pragma unroll
            for (int uu = 0; uu < WU; uu++) {
                const int u = lane + 32 * uu;
                if (u >= nb * UPB) break;
                const int blk = u / UPB, ui = u % UPB;
                st_q_unit q;
                Tr::template unit<A, true>(sb + blk * Tr::BB, ui, q);
                const int64_t e0 = (b0 + blk) * Tr::QK;
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    if (t >= n_tok) break;
                    if (I8) {
                        const uint8_t *xr = a.xq + (size_t)t * xq_row;
                        acc[t] += st_q_dot_i8<Tr>(q, (const int8_t *)xr + e0,
                                                  (const struct st_q8x_meta *)(xr + cols) + (e0 >> 5));
                    } else {
                        acc[t] += st_q_dot_f32<Tr>(q, a.x + (int64_t)t * cols + e0);
                    }
                }
            }
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float v = st_warp_sum(acc[t]);
            if (lane == m) mine[t] = v;
        }
    }

    const int64_t r = r0 + lane;   /* the row this lane stores (lanes 0 .. R - 1) */
    if (PAIR || ks_warps > 1) {
        if (lane < R) {
#pragma unroll
            for (int t = 0; t < NT; t++) red[warp][lane][t] = mine[t];
        }
        __syncthreads();
        if (ks != 0 || (PAIR && (group & 1)) || lane >= R) return;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float g = 0.0f, u = 0.0f;
            for (int k = 0; k < ks_warps; k++) {
                g += red[warp + k][lane][t];
                if (PAIR) u += red[warp + ks_warps + k][lane][t];
            }
            mine[t] = g;
            if (PAIR && r < rows && t < n_tok) {
                const float *bg = a.bias[0], *bu = a.bias[1];
                a.y[0][(int64_t)t * rows + r] = silu_mul(g + (bg ? bg[r] : 0.0f), u + (bu ? bu[r] : 0.0f));
            }
        }
        if (PAIR) return;
    }
    if (lane >= R || r >= rows) return;
    const float *bias = pick(a.bias, j);
    float *y = pick(a.y, j);
#pragma unroll
    for (int t = 0; t < NT; t++)
        if (t < n_tok) y[(int64_t)t * rows + r] = mine[t] + (bias ? bias[r] : 0.0f);
}

/* blocks per SM the registers of a batch allow: 4 (64 registers), 3 (80), 2 (128);
 * L = the 16-byte loads a lane keeps in flight per batch (units x rows x
 * fields); the fp32 path holds 32 x values besides */
template <int L, int NT, bool I8> constexpr int direct_min_blocks() {
    return NT > 1 ? 2 : I8 ? (L <= 4 ? 4 : L <= 8 ? 3 : 2) : (L <= 4 ? 3 : 2);
}

/* The direct kernel, for the 16-byte-aligned types (Q4_K, Q5_K) on aligned
 * data: no shared memory. A warp group owns R consecutive rows (PAIR: R gate
 * rows and the same R up rows) and KS warps split their columns. Lane l owns
 * unit ui = l % UPB of every block it touches (32 is a multiple of UPB) and
 * takes U units per batch (units base + l + 32 i, coalesced per i): it issues
 * every 16-byte load of the batch's R x U row units (Tr::NLD each, __ldcs)
 * before decoding any, loads x for a unit once and uses it for all R rows
 * (and for gate and up). Unit offsets are 32-bit, the per-lane constants
 * (field offsets, x offsets) computed once. */
template <int DT, int U, int R, int NT, bool I8, bool PAIR>
__global__ void __launch_bounds__(WARPS * 32, direct_min_blocks<U * R * (PAIR ? 2 : 1) * st_qt<DT>::NLD, NT, I8>())
gemvq_direct_kernel(const gemvq_args a) {
    using Tr = st_qt<DT>;
    constexpr int UPB = Tr::QK / 32, NL = Tr::NLD, NM = R * (PAIR ? 2 : 1);
    static_assert(32 % UPB == 0, "a lane keeps its unit index");
    __shared__ float red[WARPS][NM][NT];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int ks_warps = a.ks;
    const int groups = WARPS / ks_warps;
    const int group = warp / ks_warps, ks = warp % ks_warps;
    const int n_tok = a.n_tok;

    const int j = PAIR ? 0 : block_job(a);
    const int64_t rows = PAIR ? a.rows[0] : pick(a.rows, j);
    const int64_t r0 = ((int64_t)(blockIdx.x - (PAIR ? 0u : pick(a.begin, j))) * groups + group) * R;
    const int units = (int)(a.cols / 32);
    const size_t row_bytes = (size_t)(a.cols / Tr::QK) * Tr::BB;
    const uint8_t *rowp[NM];
    {
        const uint8_t *w0 = PAIR ? a.w[0] : pick(a.w, j);
#pragma unroll
        for (int m = 0; m < R; m++) {
            const int64_t r = r0 + m < rows ? r0 + m : rows - 1;   /* extra rows compute, never store */
            rowp[m] = w0 + (size_t)r * row_bytes;
            if (PAIR) rowp[NM - R + m] = a.w[1] + (size_t)r * row_bytes;
        }
    }
    const int ui = lane % UPB;
    int off[NL];
#pragma unroll
    for (int l = 0; l < NL; l++) off[l] = Tr::ld_off(ui, l);
    const int xo[2] = {Tr::xoff(ui, 0), Tr::xoff(ui, 1)};
    const size_t xq_row = st_q8x_row_bytes(a.cols);
    const int step = 32 * U * ks_warps;

    float acc[NM][NT];
#pragma unroll
    for (int m = 0; m < NM; m++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[m][t] = 0.0f;

    uint32_t wr[NM][U][NL][4];
    auto load = [&](int base) {
#pragma unroll
        for (int i = 0; i < U; i++) {
            const int u = base + lane + 32 * i;
            if (u >= units) break;
            const unsigned bo = (unsigned)(u / UPB) * (unsigned)Tr::BB;
#pragma unroll
            for (int m = 0; m < NM; m++)
#pragma unroll
                for (int l = 0; l < NL; l++) {
                    const uint4 v = __ldcs((const uint4 *)(rowp[m] + bo + off[l]));
                    wr[m][i][l][0] = v.x; wr[m][i][l][1] = v.y; wr[m][i][l][2] = v.z; wr[m][i][l][3] = v.w;
                }
        }
    };

    int base = ks * 32 * U;
    if (base < units) load(base);   /* weights only: in flight before the wait, over the previous kernel's tail */
    st_pdl_launch_next();
    st_pdl_wait();
    while (base < units) {
#pragma unroll
        for (int i = 0; i < U; i++) {
            const int u = base + lane + 32 * i;
            if (u >= units) break;
            const int e0 = u / UPB * Tr::QK;
            /* one token: the unit's x (both halves) once, then each row decoded
             * and dotted with it (one decoded unit live at a time); several
             * tokens (R 1): every row decoded once, then each token's x */
            st_q_unit q[NT == 1 ? 1 : NM];
            if (NT > 1) {
#pragma unroll
                for (int m = 0; m < NM; m++) Tr::from_words(wr[m][i], ui, q[NT == 1 ? 0 : m]);
            }
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t >= n_tok) break;
                st_q_xi8 xi[2];
                st_q_xf xf[2];
#pragma unroll
                for (int k = 0; k < 2; k++) {
                    if (I8) {
                        const uint8_t *xr = a.xq + (size_t)t * xq_row;
                        st_q_load_xi8((const int8_t *)xr + e0, (const struct st_q8x_meta *)(xr + a.cols) + (e0 >> 5), xo[k], xi[k]);
                    } else {
                        st_q_load_xf(a.x + (int64_t)t * a.cols + e0, xo[k], xf[k]);
                    }
                }
#pragma unroll
                for (int m = 0; m < NM; m++) {
                    const int qm = NT == 1 ? 0 : m;
                    if (NT == 1) Tr::from_words(wr[m][i], ui, q[0]);
                    float d = 0.0f;
#pragma unroll
                    for (int k = 0; k < 2; k++)
                        d = I8 ? st_q_dot_xi8<Tr>(q[qm], k, xi[k], d) : st_q_dot_xf<Tr>(q[qm], k, xf[k], d);
                    acc[m][t] += d;
                }
            }
        }
        base += step;
        if (base < units) load(base);
    }

#pragma unroll
    for (int m = 0; m < NM; m++)
#pragma unroll
        for (int t = 0; t < NT; t++) acc[m][t] = st_warp_sum(acc[m][t]);
    if (ks_warps > 1) {
        if (lane == 0) {
#pragma unroll
            for (int m = 0; m < NM; m++)
#pragma unroll
                for (int t = 0; t < NT; t++) red[warp][m][t] = acc[m][t];
        }
        __syncthreads();
        if (ks != 0) return;
#pragma unroll
        for (int m = 0; m < NM; m++)
#pragma unroll
            for (int t = 0; t < NT; t++) {
                float s = 0.0f;
                for (int k = 0; k < ks_warps; k++) s += red[warp + k][m][t];
                acc[m][t] = s;
            }
    }
    if (PAIR) {
        const float *bg = a.bias[0], *bu = a.bias[1];
#pragma unroll
        for (int m = 0; m < R; m++) {
            const int64_t r = r0 + m;
#pragma unroll
            for (int t = 0; t < NT; t++)
                if (lane == t && t < n_tok && r < rows)
                    a.y[0][(int64_t)t * rows + r] =
                        silu_mul(acc[m][t] + (bg ? bg[r] : 0.0f), acc[R + m][t] + (bu ? bu[r] : 0.0f));
        }
        return;
    }
    const float *bias = pick(a.bias, j);
    float *y = pick(a.y, j);
#pragma unroll
    for (int m = 0; m < R; m++) {
        const int64_t r = r0 + m;
#pragma unroll
        for (int t = 0; t < NT; t++)
            if (lane == t && t < n_tok && r < rows) y[(int64_t)t * rows + r] = acc[m][t] + (bias ? bias[r] : 0.0f);
    }
}

/* x (n_tok, cols) fp32 -> st_q8x: one warp per 32-element block. */
__global__ void __launch_bounds__(256) quantize_x_kernel(const float *__restrict__ x, int64_t n_tok, int64_t cols,
                                                         uint8_t *__restrict__ xq) {
    const int lane = threadIdx.x & 31;
    const int64_t nb = cols / 32;
    const size_t row = st_q8x_row_bytes(cols);
    st_pdl_launch_next();
    st_pdl_wait();
    for (int64_t b = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5); b < n_tok * nb; b += (int64_t)gridDim.x * WARPS) {
        const int64_t t = b / nb, k = b % nb;
        const float v = x[t * cols + k * 32 + lane];
        const float amax = st_warp_max(fabsf(v));
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        const float qf = rintf(__fmul_rn(v, id));
        const int q = qf > 127.0f ? 127 : qf < -127.0f ? -127 : (int)qf;
        uint8_t *xr = xq + (size_t)t * row;
        xr[k * 32 + lane] = (uint8_t)(int8_t)q;
        /* halves: lanes 0..15 and 16..31 */
        float s = v;
        int qs = q;
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) {
            s += __shfl_xor_sync(0xffffffffu, s, o);
            qs += __shfl_xor_sync(0xffffffffu, qs, o);
        }
        const float s1 = __shfl_sync(0xffffffffu, s, 16);
        const int q1 = __shfl_sync(0xffffffffu, qs, 16);
        if (lane == 0) {
            struct st_q8x_meta m;
            m.d = amax / 127.0f;
            m.s0 = s;
            m.s1 = s1;
            m.q01 = (int)((uint32_t)(qs & 0xffff) | (uint32_t)q1 << 16);
            ((struct st_q8x_meta *)(xr + cols))[k] = m;
        }
    }
}

template <int DT, int A, int NT, bool I8, bool PAIR, int R>
st_status launch(const gemvq_args &a, unsigned blocks, cudaStream_t stream) {
    st_launch(gemvq_kernel<DT, A, NT, I8, PAIR, R>, blocks, WARPS * 32, 0, stream, a);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

/* rows per warp group of the window kernel: one token 1, 2 or 4; several tokens 1 */
int window_rows(int64_t n_tok, int r) { return n_tok > 1 ? 1 : r >= 4 ? 4 : r >= 2 ? 2 : 1; }

template <int DT, int A, bool I8, bool PAIR>
st_status by_nt(const gemvq_args &a, unsigned blocks, int r, cudaStream_t stream) {
    if (a.n_tok == 1) {
        if (r >= 4) return launch<DT, A, 1, I8, PAIR, 4>(a, blocks, stream);
        if (r == 2) return launch<DT, A, 1, I8, PAIR, 2>(a, blocks, stream);
        return launch<DT, A, 1, I8, PAIR, 1>(a, blocks, stream);
    }
    if (a.n_tok <= 4) return launch<DT, A, 4, I8, PAIR, 1>(a, blocks, stream);
    return launch<DT, A, 8, I8, PAIR, 1>(a, blocks, stream);
}

template <int DT, int A>
st_status by_mode(const gemvq_args &a, unsigned blocks, bool pair, int r, cudaStream_t stream) {
    const bool i8 = a.xq != NULL;
    if (pair) return i8 ? by_nt<DT, A, true, true>(a, blocks, r, stream) : by_nt<DT, A, false, true>(a, blocks, r, stream);
    return i8 ? by_nt<DT, A, true, false>(a, blocks, r, stream) : by_nt<DT, A, false, false>(a, blocks, r, stream);
}

/* the aligned reader where the type has one and the data allow it */
template <int DT>
st_status by_align(const gemvq_args &a, unsigned blocks, bool pair, bool aligned, int r, cudaStream_t stream) {
    constexpr int AL = st_qt<DT>::ALIGN;
    if (AL > 2 && aligned) return by_mode<DT, AL>(a, blocks, pair, r, stream);
    return by_mode<DT, 2>(a, blocks, pair, r, stream);
}

/* the direct kernel's (U units, R rows) per lane and batch: one token
 * (2, 1), (4, 1), (1, 2), (2, 2) or (1, 4); several tokens (2, 1) */
template <int DT, int U, int R, bool I8, bool PAIR>
st_status direct_nt(const gemvq_args &a, unsigned blocks, cudaStream_t stream) {
    if (a.n_tok == 1) st_launch(gemvq_direct_kernel<DT, U, R, 1, I8, PAIR>, blocks, WARPS * 32, 0, stream, a);
    else if (a.n_tok <= 4) st_launch(gemvq_direct_kernel<DT, 2, 1, 4, I8, PAIR>, blocks, WARPS * 32, 0, stream, a);
    else st_launch(gemvq_direct_kernel<DT, 2, 1, 8, I8, PAIR>, blocks, WARPS * 32, 0, stream, a);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

template <int DT, int U, int R>
st_status direct_mode(const gemvq_args &a, unsigned blocks, bool pair, cudaStream_t stream) {
    const bool i8 = a.xq != NULL;
    if (pair) return i8 ? direct_nt<DT, U, R, true, true>(a, blocks, stream) : direct_nt<DT, U, R, false, true>(a, blocks, stream);
    return i8 ? direct_nt<DT, U, R, true, false>(a, blocks, stream) : direct_nt<DT, U, R, false, false>(a, blocks, stream);
}

/* rows per warp group the direct kernel runs for (n_tok, r, u): several
 * tokens 1; one token r as asked, except U 4 only with R 1, R 4 only with U 1 */
int direct_rows(int64_t n_tok, int r) { return n_tok > 1 ? 1 : r >= 4 ? 4 : r >= 2 ? 2 : 1; }

template <int DT>
st_status by_direct(const gemvq_args &a, unsigned blocks, bool pair, int u, int r, cudaStream_t stream) {
    if (r >= 4) return direct_mode<DT, 1, 4>(a, blocks, pair, stream);
    if (r == 2) return u >= 2 ? direct_mode<DT, 2, 2>(a, blocks, pair, stream) : direct_mode<DT, 1, 2>(a, blocks, pair, stream);
    return u >= 4 ? direct_mode<DT, 4, 1>(a, blocks, pair, stream) : direct_mode<DT, 2, 1>(a, blocks, pair, stream);
}

/* types the direct kernel reads (16-byte-aligned blocks with a words form) */
bool has_direct(st_dtype t) { return t == ST_DTYPE_Q4_K || t == ST_DTYPE_Q5_K; }

int qk_of(st_dtype t) { return (int)st_dtype_block_elems(t); }

int align_of(st_dtype t) {
    switch (t) {
    case ST_DTYPE_Q4_1: return st_qt<ST_DTYPE_Q4_1>::ALIGN;
    case ST_DTYPE_Q5_1: return st_qt<ST_DTYPE_Q5_1>::ALIGN;
    case ST_DTYPE_Q4_K: return st_qt<ST_DTYPE_Q4_K>::ALIGN;
    case ST_DTYPE_Q5_K: return st_qt<ST_DTYPE_Q5_K>::ALIGN;
    default: return 2;
    }
}

} // namespace

struct st_gemv_shape st_gemvq_pick(const void *const *ws, int n_w, st_dtype dtype, int64_t rows, int64_t cols,
                                   int64_t n_tok, bool pair, bool int8, int sm_count) {
    const int sms = sm_count > 0 ? sm_count : 80;
    struct st_gemv_shape s = {1, 1, 0, WARPS * 32, true};
    const int al = align_of(dtype);
    const size_t rb = st_dtype_row_bytes(dtype, cols);
    for (int i = 0; i < n_w; i++)
        if (!st_is_aligned(ws[i], (size_t)al)) s.vectorized = false;
    if (rb % (size_t)al) s.vectorized = false;
    /* unroll: 0 = the window kernel; U > 0 = the direct kernel, U units per
     * lane per batch (a pair loads two rows, so half as many) */
    if (has_direct(dtype) && s.vectorized) s.unroll = 2;
    /* one token, rows per warp group, as measured on an H100 (bench/RESULTS.md,
     * tenth session; 7B shapes, 3584 and 18944 rows):
     *   direct kernel, dp4a: 2 rows (gate 58 % of copy against 53 % with 4,
     *     down 59 % against 52 % with one row at U 2);
     *   direct kernel, fp32 (the Maxwell path): 4 rows (gate 41 % against 37,
     *     down 42 % against 28 % with one row);
     *   a direct gate/up pair: 2 rows of each;
     *   window kernel: 4 rows while that leaves 32 row groups per SM (gate
     *     Q8_0 68 %), else 2 for 256-element blocks (Q6_K down 53 % against
     *     45 % with one row; Q8_0 down keeps one, 60 % against 58 %).
     * Fewer rows where the launch would leave an SM under 8 (4) row groups. */
    if (n_tok == 1) {
        const int64_t g2 = (rows + 1) / 2, g4 = (rows + 3) / 4;
        if (s.unroll > 0) {
            if (!pair && !int8 && g4 >= (int64_t)sms * 4) s.rows_per_warp = 4;
            else if (g2 >= (int64_t)sms * 8) s.rows_per_warp = 2;
            if (s.rows_per_warp > 1) s.unroll = 1;
        } else {
            const int64_t per_row = pair ? 2 : 1;   /* the window kernel's pair: a group per matrix */
            if (g4 * per_row >= (int64_t)sms * 32) s.rows_per_warp = 4;
            else if (qk_of(dtype) == 256 && g2 * per_row >= (int64_t)sms * 8) s.rows_per_warp = 2;
        }
    }
    /* a row is streamed in steps of 64 units (window kernel) or 32 U (direct);
     * split a row across warps while the launch has fewer than 64 warps per SM
     * and every warp keeps at least one step */
    const int64_t per_step = s.unroll > 0 ? 32 * s.unroll : 32 * WU;
    const int64_t nwin = (cols / 32 + per_step - 1) / per_step;
    const bool two_warps = pair && s.unroll == 0;   /* the window kernel gives gate and up a warp each */
    const int kmax = two_warps ? WARPS / 2 : WARPS;
    const int64_t groups = (rows + s.rows_per_warp - 1) / s.rows_per_warp * (two_warps ? 2 : 1);
    while (s.k_split < kmax && (int64_t)s.k_split * 2 <= nwin && groups * s.k_split < (int64_t)sms * 64)
        s.k_split *= 2;
    return s;
}

st_status st_gemvq_launch(const struct st_gemv_job *jobs, int n_jobs, bool pair, st_dtype dtype, int64_t cols,
                          const float *x, const void *xq, int64_t n_tok, const struct st_gemv_shape *shape,
                          cudaStream_t stream) {
    if (!st_q_is_quant(dtype)) return st_error_set(ST_ERR_INTERNAL, "gemv: %s is not a quantized type", st_dtype_name(dtype));
    if (cols <= 0 || cols % qk_of(dtype))
        return st_error_set(ST_ERR_INTERNAL, "gemv: %lld columns of %s (a multiple of %d)", (long long)cols,
                            st_dtype_name(dtype), qk_of(dtype));
    if (!st_is_aligned(x, 16) || (xq && !st_is_aligned(xq, 16)))
        return st_error_set(ST_ERR_INTERNAL, "gemv: activations of a %s matmul must be 16-byte aligned", st_dtype_name(dtype));
    const int al = align_of(dtype);
    bool aligned = shape->vectorized;
    for (int i = 0; i < (pair ? 2 : n_jobs); i++) {
        if (!st_is_aligned(jobs[i].w, 2))
            return st_error_set(ST_ERR_INTERNAL, "gemv: %s weights at an odd address", st_dtype_name(dtype));
        if (!st_is_aligned(jobs[i].w, (size_t)al)) aligned = false;
    }
    if (st_dtype_row_bytes(dtype, cols) % (size_t)al) aligned = false;

    gemvq_args a;
    memset(&a, 0, sizeof a);
    a.x = x;
    a.xq = (const uint8_t *)xq;
    a.cols = cols;
    a.n_tok = (int)n_tok;
    const bool direct = shape->unroll > 0 && has_direct(dtype) && aligned;
    int ks = shape->k_split;
    if (ks != 1 && ks != 2 && ks != 4 && ks != 8) ks = 1;
    if (pair && !direct && ks > WARPS / 2) ks = WARPS / 2;
    a.ks = ks;
    /* rows per warp group */
    const int R = direct ? direct_rows(n_tok, shape->rows_per_warp) : window_rows(n_tok, shape->rows_per_warp);
    int64_t total = 0;
    if (pair) {
        a.w[0] = (const uint8_t *)jobs[0].w;
        a.w[1] = (const uint8_t *)jobs[1].w;
        a.bias[0] = jobs[0].bias;
        a.bias[1] = jobs[1].bias;
        a.y[0] = jobs[0].y;
        a.rows[0] = jobs[0].rows;
        a.n_jobs = 1;
        const int64_t per_block = (int64_t)WARPS / ((direct ? 1 : 2) * ks) * R;
        total = (jobs[0].rows + per_block - 1) / per_block;
    } else {
        const int64_t per_block = (int64_t)WARPS / ks * R;
        for (int i = 0; i < MAXJ; i++) {
            a.begin[i] = (unsigned)total;
            if (i >= n_jobs) continue;
            a.w[i] = (const uint8_t *)jobs[i].w;
            a.bias[i] = jobs[i].bias;
            a.y[i] = jobs[i].y;
            a.rows[i] = jobs[i].rows > 0 ? jobs[i].rows : 0;
            total += (a.rows[i] + per_block - 1) / per_block;
        }
        a.n_jobs = n_jobs;
    }
    if (total > INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "gemv: %lld blocks", (long long)total);
    if (total == 0) return ST_OK;
    const unsigned blocks = (unsigned)total;
    if (direct) {
        if (dtype == ST_DTYPE_Q4_K) return by_direct<ST_DTYPE_Q4_K>(a, blocks, pair, shape->unroll, R, stream);
        return by_direct<ST_DTYPE_Q5_K>(a, blocks, pair, shape->unroll, R, stream);
    }
    switch (dtype) {
    case ST_DTYPE_Q8_0: return by_align<ST_DTYPE_Q8_0>(a, blocks, pair, aligned, R, stream);
    case ST_DTYPE_Q4_0: return by_align<ST_DTYPE_Q4_0>(a, blocks, pair, aligned, R, stream);
    case ST_DTYPE_Q4_1: return by_align<ST_DTYPE_Q4_1>(a, blocks, pair, aligned, R, stream);
    case ST_DTYPE_Q5_0: return by_align<ST_DTYPE_Q5_0>(a, blocks, pair, aligned, R, stream);
    case ST_DTYPE_Q5_1: return by_align<ST_DTYPE_Q5_1>(a, blocks, pair, aligned, R, stream);
    case ST_DTYPE_IQ4_NL: return by_align<ST_DTYPE_IQ4_NL>(a, blocks, pair, aligned, R, stream);
    case ST_DTYPE_Q4_K: return by_align<ST_DTYPE_Q4_K>(a, blocks, pair, aligned, R, stream);
    case ST_DTYPE_Q5_K: return by_align<ST_DTYPE_Q5_K>(a, blocks, pair, aligned, R, stream);
    case ST_DTYPE_Q6_K: return by_align<ST_DTYPE_Q6_K>(a, blocks, pair, aligned, R, stream);
    default: return st_error_set(ST_ERR_INTERNAL, "gemv: no kernel for %s", st_dtype_name(dtype));
    }
}

size_t st_gemv_xq_bytes(int64_t n_tok, int64_t cols) {
    if (n_tok <= 0 || cols <= 0 || cols % 32) return 0;
    return (size_t)n_tok * st_q8x_row_bytes(cols);
}

st_status st_gemv_quantize_x_cuda(const float *x, int64_t n_tok, int64_t cols, void *xq, cudaStream_t stream) {
    if (n_tok <= 0) return ST_OK;
    if (cols <= 0 || cols % 32)
        return st_error_set(ST_ERR_INTERNAL, "gemv: quantizing x of %lld columns (a multiple of 32)", (long long)cols);
    if (!st_is_aligned(xq, 16)) return st_error_set(ST_ERR_INTERNAL, "gemv: quantized x buffer not 16-byte aligned");
    const int64_t nb = n_tok * (cols / 32);
    const unsigned blocks = st_cuda_blocks(nb, WARPS, 4096);
    st_launch(quantize_x_kernel, blocks, WARPS * 32, 0, stream, x, n_tok, cols, (uint8_t *)xq);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}
