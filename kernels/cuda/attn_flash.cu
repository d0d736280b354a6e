/* Flash attention (FA2-style) with mma.sync.m16n8k16 and fp32 accumulators.
 * Fragment layouts (PTX ISA, m16n8k16): lane = 4 * gid + tig;
 *   A (16x16 row): a0 (gid, 2tig..+1) a1 (gid+8, 2tig..) a2 (gid, 8+2tig..) a3 (gid+8, 8+2tig..)
 *   B (16x8 col):  b0 (k = 2tig..+1, n = gid)  b1 (k = 8+2tig..+1, n = gid)
 *   C (16x8):      c0,c1 (gid, 2tig..+1)       c2,c3 (gid+8, 2tig..+1)
 * S = Q K^T takes K rows straight from shared memory as B; the S accumulators
 * of two adjacent 8-key tiles are exactly the A fragment of P for P V. */
#include "kernels/cuda/attn_flash.cuh"

namespace {

constexpr int KT = 32;           /* keys per tile */
constexpr float LOG2E = 1.4426950408889634f;

template <bool F16> struct mma16;
template <> struct mma16<false> {   /* bf16 */
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        return (uint32_t)st_f32_to_bf16_bits(lo) | ((uint32_t)st_f32_to_bf16_bits(hi) << 16);
    }
    static __device__ __forceinline__ void mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#elif defined(__CUDA_ARCH__)
        __trap();   /* never launched below sm_80: the host refuses those devices */
#endif
    }
};
template <> struct mma16<true> {    /* f16 */
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        return (uint32_t)st_f32_to_f16_bits(lo) | ((uint32_t)st_f32_to_f16_bits(hi) << 16);
    }
    static __device__ __forceinline__ void mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#elif defined(__CUDA_ARCH__)
        __trap();   /* never launched below sm_80: the host refuses those devices */
#endif
    }
};

/* Copies KT keys x D of a cache into shared memory as 16-bit MMA inputs.
 * Rows at or past k_end are zero. */
template <int D, int KVDT, bool F16>
__device__ __forceinline__ void load_tile(uint16_t (*dst)[D + 8], const void *cache, int64_t base, int64_t row_stride,
                                          int g, int64_t kt, int64_t k_end, int tid, int nthreads) {
    constexpr int V8 = D / 8;    /* 8-element vectors per key */
    for (int idx = tid; idx < KT * V8; idx += nthreads) {
        const int key = idx / V8, c8 = idx % V8;
        const int64_t j = kt + key;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (j < k_end) {
            const int64_t off = base + j * row_stride + (int64_t)g * D + c8 * 8;
            if (KVDT == ST_DTYPE_Q8_0) {
                /* 8 values of one block (off % 8 == 0): int8 * d in fp32, then rounded to the MMA type */
                const uint8_t *b = (const uint8_t *)cache + (off >> 5) * 34;
                const float d = st_q8_0_scale(b);
                const uint16_t *q2 = (const uint16_t *)(b + 2 + (off & 31));   /* 2-byte aligned */
                uint32_t w[4];
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const uint16_t pr = q2[e];
                    w[e] = mma16<F16>::pack((float)(int8_t)(pr & 0xff) * d, (float)(int8_t)(pr >> 8) * d);
                }
                val = make_uint4(w[0], w[1], w[2], w[3]);
            } else if (KVDT == ST_DTYPE_F32) {
                const float4 *p = (const float4 *)((const float *)cache + off);
                const float4 a = p[0], b = p[1];
                val.x = mma16<F16>::pack(a.x, a.y); val.y = mma16<F16>::pack(a.z, a.w);
                val.z = mma16<F16>::pack(b.x, b.y); val.w = mma16<F16>::pack(b.z, b.w);
            } else {
                val = *(const uint4 *)((const uint16_t *)cache + off);
            }
        }
        *(uint4 *)&dst[key][c8 * 8] = val;
    }
}

template <int D, int NW, int KVDT>
__global__ void __launch_bounds__(NW * 32)
attn_flash_kernel(const void *__restrict__ kc, const void *__restrict__ vc, int64_t n_slots, int64_t n_ctx,
                  int n_head_kv, const float *__restrict__ q, int64_t n_tok, int n_head, const int32_t *__restrict__ pos,
                  const int32_t *__restrict__ slot, bool per_tok, float scale_log2, float *__restrict__ out,
                  float *__restrict__ part, int64_t split_len) {
    st_pdl_launch_next();
    st_pdl_wait();
    constexpr bool F16 = KVDT == ST_DTYPE_F16;
    constexpr int ROWS = 16 * NW;
    __shared__ __align__(16) uint16_t Ks[KT][D + 8];
    __shared__ __align__(16) uint16_t Vs[KT][D + 8];
    __shared__ int lim_s[ROWS];
    __shared__ int64_t end_s;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int gid = lane >> 2, tig = lane & 3;
    const int g = blockIdx.y, split = blockIdx.z;
    const int G = n_head / n_head_kv;
    /* One sequence: blocks tile all n_tok * G rows. A batched decode step
     * (per_tok): block x holds token x's G rows (G <= ROWS), from its own slot. */
    const int64_t row0 = per_tok ? (int64_t)blockIdx.x * G : (int64_t)blockIdx.x * ROWS;
    const int64_t rows_total = per_tok ? row0 + G : n_tok * G;
    const int64_t row_stride = (int64_t)n_head_kv * D;
    const int32_t sl = slot ? slot[per_tok ? blockIdx.x : 0] : 0;
    const bool bad_slot = sl < 0 || sl >= n_slots;
    const int64_t sbase = bad_slot ? 0 : (int64_t)sl * n_ctx * row_stride;   /* the sequence's plane */

    /* per-row causal limit: last visible key; -1 padding row; -2 bad position or slot */
    for (int i = tid; i < ROWS; i += NW * 32) {
        const int64_t r = row0 + i;
        int lim = -1;
        if (r < rows_total) {
            const int32_t p = pos[r / G];
            lim = (p < 0 || p >= n_ctx || bad_slot) ? -2 : p;
        }
        lim_s[i] = lim;
    }
    __syncthreads();
    if (tid == 0) {
        int mx = -1;
        for (int i = 0; i < ROWS; i++) mx = max(mx, lim_s[i]);
        end_s = (int64_t)mx + 1;
    }
    __syncthreads();
    const int64_t k_begin = (int64_t)split * split_len;
    const int64_t k_end = min(k_begin + split_len, end_s);

    const int la = warp * 16 + gid, lb = la + 8;     /* local rows of this thread */
    const int lim_a = lim_s[la], lim_b = lim_s[lb];
    const int64_t ra = row0 + la, rb = row0 + lb;
    /* global (token, head) index of a row */
    const int64_t ga = ra < rows_total ? (ra / G) * n_head + (int64_t)g * G + ra % G : -1;
    const int64_t gb = rb < rows_total ? (rb / G) * n_head + (int64_t)g * G + rb % G : -1;

    uint32_t qa[D / 16][4];
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        const int c = kk * 16 + tig * 2;
        float2 x0 = make_float2(0.f, 0.f), x1 = x0, x2 = x0, x3 = x0;
        if (ga >= 0) { x0 = *(const float2 *)(q + ga * D + c); x2 = *(const float2 *)(q + ga * D + c + 8); }
        if (gb >= 0) { x1 = *(const float2 *)(q + gb * D + c); x3 = *(const float2 *)(q + gb * D + c + 8); }
        qa[kk][0] = mma16<F16>::pack(x0.x, x0.y);
        qa[kk][1] = mma16<F16>::pack(x1.x, x1.y);
        qa[kk][2] = mma16<F16>::pack(x2.x, x2.y);
        qa[kk][3] = mma16<F16>::pack(x3.x, x3.y);
    }

    float o[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;

    for (int64_t kt = k_begin; kt < k_end; kt += KT) {
        __syncthreads();
        load_tile<D, KVDT, F16>(Ks, kc, sbase, row_stride, g, kt, k_end, tid, NW * 32);
        load_tile<D, KVDT, F16>(Vs, vc, sbase, row_stride, g, kt, k_end, tid, NW * 32);
        __syncthreads();

        float s[KT / 8][4];
#pragma unroll
        for (int nt = 0; nt < KT / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                const uint32_t b0 = *(const uint32_t *)&Ks[nt * 8 + gid][kk * 16 + tig * 2];
                const uint32_t b1 = *(const uint32_t *)&Ks[nt * 8 + gid][kk * 16 + 8 + tig * 2];
                mma16<F16>::mma(s[nt], qa[kk], b0, b1);
            }
        }
        float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < KT / 8; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int64_t j = kt + nt * 8 + tig * 2 + e;
                s[nt][e] = (j <= lim_a && j < k_end) ? s[nt][e] * scale_log2 : -INFINITY;
                s[nt][2 + e] = (j <= lim_b && j < k_end) ? s[nt][2 + e] * scale_log2 : -INFINITY;
                mx_a = fmaxf(mx_a, s[nt][e]);
                mx_b = fmaxf(mx_b, s[nt][2 + e]);
            }
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
        mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
        mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
        const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
        const float base_a = mn_a == -INFINITY ? 0.0f : mn_a, base_b = mn_b == -INFINITY ? 0.0f : mn_b;
        const float corr_a = exp2f(m_a - base_a), corr_b = exp2f(m_b - base_b);
        m_a = mn_a;
        m_b = mn_b;
        float sum_a = 0.0f, sum_b = 0.0f;
#pragma unroll
        for (int nt = 0; nt < KT / 8; nt++) {
            s[nt][0] = exp2f(s[nt][0] - base_a); s[nt][1] = exp2f(s[nt][1] - base_a);
            s[nt][2] = exp2f(s[nt][2] - base_b); s[nt][3] = exp2f(s[nt][3] - base_b);
            sum_a += s[nt][0] + s[nt][1];
            sum_b += s[nt][2] + s[nt][3];
        }
        l_a = l_a * corr_a + sum_a;
        l_b = l_b * corr_b + sum_b;
#pragma unroll
        for (int n = 0; n < D / 8; n++) { o[n][0] *= corr_a; o[n][1] *= corr_a; o[n][2] *= corr_b; o[n][3] *= corr_b; }

#pragma unroll
        for (int ks = 0; ks < KT / 16; ks++) {
            uint32_t pa[4];
            pa[0] = mma16<F16>::pack(s[2 * ks][0], s[2 * ks][1]);
            pa[1] = mma16<F16>::pack(s[2 * ks][2], s[2 * ks][3]);
            pa[2] = mma16<F16>::pack(s[2 * ks + 1][0], s[2 * ks + 1][1]);
            pa[3] = mma16<F16>::pack(s[2 * ks + 1][2], s[2 * ks + 1][3]);
            const int k0 = ks * 16 + tig * 2;
#pragma unroll
            for (int n = 0; n < D / 8; n++) {
                const int d = n * 8 + gid;
                const uint32_t b0 = (uint32_t)Vs[k0][d] | ((uint32_t)Vs[k0 + 1][d] << 16);
                const uint32_t b1 = (uint32_t)Vs[k0 + 8][d] | ((uint32_t)Vs[k0 + 9][d] << 16);
                mma16<F16>::mma(o[n], pa, b0, b1);
            }
        }
    }

    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);

    const float nanv = __int_as_float(0x7fc00000);
    if (part == nullptr) {
        const float ia = 1.0f / l_a, ib = 1.0f / l_b;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            const int d = n * 8 + tig * 2;
            if (ga >= 0) *(float2 *)(out + ga * D + d) = lim_a == -2 ? make_float2(nanv, nanv) : make_float2(o[n][0] * ia, o[n][1] * ia);
            if (gb >= 0) *(float2 *)(out + gb * D + d) = lim_b == -2 ? make_float2(nanv, nanv) : make_float2(o[n][2] * ib, o[n][3] * ib);
        }
    } else {
        /* partials: o (n_splits, n_tok * n_head, D) then (m, l) pairs */
        const int64_t nrow = n_tok * n_head;
        float *po = part + (int64_t)split * nrow * D;
        float *pml = part + (int64_t)gridDim.z * nrow * D + (int64_t)split * nrow * 2;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            const int d = n * 8 + tig * 2;
            if (ga >= 0) *(float2 *)(po + ga * D + d) = make_float2(o[n][0], o[n][1]);
            if (gb >= 0) *(float2 *)(po + gb * D + d) = make_float2(o[n][2], o[n][3]);
        }
        if (tig == 0) {
            if (ga >= 0) { pml[ga * 2] = lim_a == -2 ? nanv : m_a; pml[ga * 2 + 1] = l_a; }
            if (gb >= 0) { pml[gb * 2] = lim_b == -2 ? nanv : m_b; pml[gb * 2 + 1] = l_b; }
        }
    }
}

/* out[row] = sum_s 2^(m_s - M) o_s / sum_s 2^(m_s - M) l_s; a block per (token, head) row.
 * The block reads the splits' (m, l) once, in parallel (at most MAX_SPLITS), and
 * keeps the weights 2^(m_s - M) in shared memory; each thread then sums its
 * columns over the splits in split order. */
constexpr int MAX_SPLITS = 256;
__device__ __forceinline__ float block_reduce(float v, bool is_max, float *tmp) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (int)(blockDim.x + 31) >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    __syncthreads();   /* tmp may still be read from the last call */
    if (lane == 0) tmp[warp] = v;
    __syncthreads();
    v = tmp[0];
    for (int w = 1; w < nw; w++) v = is_max ? fmaxf(v, tmp[w]) : v + tmp[w];
    return v;
}

__global__ void attn_flash_merge_kernel(const float *__restrict__ part, int n_splits, int64_t nrow, int D,
                                        float *__restrict__ out) {
    st_pdl_launch_next();
    st_pdl_wait();
    __shared__ float w[MAX_SPLITS];
    __shared__ float tmp[32];
    const int64_t r = blockIdx.x;
    const float *pml = part + (int64_t)n_splits * nrow * D;
    float M = -INFINITY;
    int bad = 0;
    for (int s = threadIdx.x; s < n_splits; s += blockDim.x) {
        const float m = pml[((int64_t)s * nrow + r) * 2];
        w[s] = m;
        bad |= m != m;
        M = fmaxf(M, m);
    }
    bad = __syncthreads_or(bad);
    M = block_reduce(M, true, tmp);
    float L = 0.0f;
    for (int s = threadIdx.x; s < n_splits; s += blockDim.x) {
        const float m = w[s];
        const float ws = m != -INFINITY ? exp2f(m - M) : 0.0f;
        w[s] = ws;
        L += ws * pml[((int64_t)s * nrow + r) * 2 + 1];
    }
    L = block_reduce(L, false, tmp);   /* its barriers also publish w[] */
    /* eight splits' partials in flight at once, the last few too (a load per
     * split, each waited for before the next, was most of this kernel's time);
     * in split order, and a split of weight 0 adds 0 (its partials are finite:
     * zeros where the row saw none of its keys) */
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        const float *pd = part + r * D + d;
        const int64_t step = nrow * D;
        float acc = 0.0f;
        for (int s = 0; s < n_splits; s += 8) {
            float v[8];
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = s + k < n_splits ? pd[(int64_t)(s + k) * step] : 0.0f;
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (s + k < n_splits) acc += w[s + k] * v[k];
        }
        out[r * D + d] = bad ? __int_as_float(0x7fc00000) : acc / L;
    }
}

template <int D, int NW>
st_status launch(const void *kc, const void *vc, st_dtype kv_dtype, int64_t n_slots, int64_t n_ctx, int64_t n_head_kv,
                 const float *q, int64_t n_tok, int64_t n_head, const int32_t *pos, const int32_t *slot, bool per_tok,
                 float scale_log2, float *out, float *part, int n_splits, int64_t split_len, cudaStream_t stream) {
    const int64_t G = n_head / n_head_kv;
    const int64_t row_blocks = per_tok ? n_tok : (n_tok * G + 16 * NW - 1) / (16 * NW);
    if (row_blocks > INT32_MAX || n_head_kv > 65535)
        return st_error_set(ST_ERR_UNSUPPORTED, "attention: %lld tokens x %lld heads in one call", (long long)n_tok, (long long)n_head);
    dim3 grid((unsigned)row_blocks, (unsigned)n_head_kv, (unsigned)n_splits);
    float *p = n_splits > 1 ? part : nullptr;
    switch (kv_dtype) {
    case ST_DTYPE_F32:
        st_launch(attn_flash_kernel<D, NW, ST_DTYPE_F32>, grid, NW * 32, 0, stream, kc, vc, n_slots, n_ctx, (int)n_head_kv, q, n_tok, (int)n_head, pos, slot, per_tok, scale_log2, out, p, split_len);
        break;
    case ST_DTYPE_F16:
        st_launch(attn_flash_kernel<D, NW, ST_DTYPE_F16>, grid, NW * 32, 0, stream, kc, vc, n_slots, n_ctx, (int)n_head_kv, q, n_tok, (int)n_head, pos, slot, per_tok, scale_log2, out, p, split_len);
        break;
    case ST_DTYPE_Q8_0:
        st_launch(attn_flash_kernel<D, NW, ST_DTYPE_Q8_0>, grid, NW * 32, 0, stream, kc, vc, n_slots, n_ctx, (int)n_head_kv, q, n_tok, (int)n_head, pos, slot, per_tok, scale_log2, out, p, split_len);
        break;
    default:
        st_launch(attn_flash_kernel<D, NW, ST_DTYPE_BF16>, grid, NW * 32, 0, stream, kc, vc, n_slots, n_ctx, (int)n_head_kv, q, n_tok, (int)n_head, pos, slot, per_tok, scale_log2, out, p, split_len);
        break;
    }
    ST_CUDA_LAUNCH_CHECK();
    if (n_splits > 1) {
        const int64_t nrow = n_tok * n_head;
        if (nrow > INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "attention: %lld rows", (long long)nrow);
        st_launch(attn_flash_merge_kernel, (unsigned)nrow, D, 0, stream, part, n_splits, nrow, D, out);
        ST_CUDA_LAUNCH_CHECK();
    }
    return ST_OK;
}

} // namespace

bool st_attn_flash_supported(int64_t head_dim, st_dtype kv_dtype) {
    return (head_dim == 64 || head_dim == 128) &&
           (kv_dtype == ST_DTYPE_F32 || kv_dtype == ST_DTYPE_F16 || kv_dtype == ST_DTYPE_BF16 ||
            kv_dtype == ST_DTYPE_Q8_0);
}

size_t st_attn_flash_part_bytes(int64_t n_tok, int64_t n_head, int64_t head_dim, int n_splits) {
    return (size_t)n_splits * (size_t)(n_tok * n_head) * (size_t)(head_dim + 2) * sizeof(float);
}

st_status st_attn_flash_cuda(const void *k_cache, const void *v_cache, st_dtype kv_dtype, int64_t n_slots,
                             int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, const float *q, int64_t n_tok,
                             int64_t n_head, const int32_t *pos, const int32_t *slot, int64_t n_seq, float scale,
                             float *out, float *part, size_t part_bytes, int sm_count, int cc_major,
                             cudaStream_t stream) {
    if (n_tok <= 0 || n_head <= 0) return ST_OK;
    if (cc_major < 8)
        return st_error_set(ST_ERR_UNSUPPORTED, "flash attention needs compute capability 8.0 or newer (device has %d.x)", cc_major);
    if (!st_attn_flash_supported(head_dim, kv_dtype))
        return st_error_set(ST_ERR_UNSUPPORTED, "flash attention: head_dim %lld with a %s cache (64 or 128; F32/F16/BF16/Q8_0)",
                            (long long)head_dim, st_dtype_name(kv_dtype));
    if (n_head_kv <= 0 || n_head % n_head_kv)
        return st_error_set(ST_ERR_UNSUPPORTED, "attention: %lld query heads is not a multiple of %lld kv heads",
                            (long long)n_head, (long long)n_head_kv);
    if (!st_is_aligned(q, 16) || !st_is_aligned(out, 16) || !st_is_aligned(k_cache, 16) || !st_is_aligned(v_cache, 16))
        return st_error_set(ST_ERR_INTERNAL, "flash attention: q, out and the caches must be 16-byte aligned");
    if (n_seq != 1 && n_seq != n_tok)
        return st_error_set(ST_ERR_INTERNAL, "flash attention: %lld sequences among %lld tokens (1 or one per token)",
                            (long long)n_seq, (long long)n_tok);
    const int64_t G = n_head / n_head_kv;
    const bool per_tok = n_seq > 1;
    if (per_tok && G > 64)
        return st_error_set(ST_ERR_UNSUPPORTED, "flash attention: %lld query heads per kv head in a batched step (at most 64)",
                            (long long)G);
    const int64_t rows = per_tok ? G : n_tok * G;
    const int nw = rows <= 16 ? 1 : 4;
    const int64_t ctas = (per_tok ? n_tok : (rows + 16 * nw - 1) / (16 * nw)) * n_head_kv;
    /* split the keys until there are four CTAs per SM, within `part` (at
     * least 256 keys per split measured slower on an H100 at 512-640 tokens:
     * 146 vs 156 tok/s on a 7B, the single warp per split is latency-bound;
     * one CTA per SM left an 8k-token decode reading the cache at ~0.45 TB/s) */
    int n_splits = 1;
    const int64_t max_splits = (n_ctx + KT - 1) / KT;
    while (part && ctas * n_splits < (int64_t)(sm_count > 0 ? sm_count : 80) * 4 && n_splits * 2 <= max_splits &&
           n_splits < MAX_SPLITS && st_attn_flash_part_bytes(n_tok, n_head, head_dim, n_splits * 2) <= part_bytes)
        n_splits *= 2;
    int64_t split_len = (n_ctx + n_splits - 1) / n_splits;
    split_len = (split_len + KT - 1) / KT * KT;
    const float sl2 = scale * LOG2E;
    if (head_dim == 64)
        return nw == 1 ? launch<64, 1>(k_cache, v_cache, kv_dtype, n_slots, n_ctx, n_head_kv, q, n_tok, n_head, pos, slot, per_tok, sl2, out, part, n_splits, split_len, stream)
                       : launch<64, 4>(k_cache, v_cache, kv_dtype, n_slots, n_ctx, n_head_kv, q, n_tok, n_head, pos, slot, per_tok, sl2, out, part, n_splits, split_len, stream);
    return nw == 1 ? launch<128, 1>(k_cache, v_cache, kv_dtype, n_slots, n_ctx, n_head_kv, q, n_tok, n_head, pos, slot, per_tok, sl2, out, part, n_splits, split_len, stream)
                   : launch<128, 4>(k_cache, v_cache, kv_dtype, n_slots, n_ctx, n_head_kv, q, n_tok, n_head, pos, slot, per_tok, sl2, out, part, n_splits, split_len, stream);
}
