/* Argmax and seeded top-k / top-p / min-p / temperature sampling in one block.
 * Top-k uses an exact radix select on order-preserving keys of the logits
 * (4 passes of 8 bits), then gathers the k winners (ties at the threshold by
 * lowest id), sorts them bitonically by (logit desc, id asc) and draws. */
#include "kernels/cuda/sample.cuh"

#include <float.h>

namespace {

constexpr int THREADS = 1024;
constexpr int KMAX = ST_SAMPLE_TOPK_MAX;

__device__ __forceinline__ uint32_t order_key(float f) {
    uint32_t u = __float_as_uint(f);
    if (f != f) return 0;                       /* NaN sorts below everything */
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
    return v > bv || (v == bv && i < bi);
}

__device__ __forceinline__ double uniform(uint64_t seed, uint64_t n) {
    uint64_t z = seed + (n + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z = z ^ (z >> 31);
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* Block argmax of (v, i) pairs; result in thread 0. */
__device__ void block_argmax(float &v, int &i, float *sv, int *si) {
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (better(ov, oi, v, i)) { v = ov; i = oi; }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { sv[warp] = v; si[warp] = i; }
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? sv[lane] : -INFINITY;
        i = lane < (int)(blockDim.x >> 5) ? si[lane] : INT32_MAX;
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffffu, v, o);
            const int oi = __shfl_xor_sync(0xffffffffu, i, o);
            if (better(ov, oi, v, i)) { v = ov; i = oi; }
        }
    }
}

/* one block per row: row blockIdx.x of logits (rows of n) into out_id[blockIdx.x] */
__global__ void __launch_bounds__(THREADS) argmax_kernel(const float *__restrict__ logits, int n, int32_t *out_id) {
    st_pdl_launch_next();
    st_pdl_wait();
    logits += (size_t)blockIdx.x * (size_t)n;
    out_id += blockIdx.x;
    __shared__ float sv[32];
    __shared__ int si[32];
    float bv = -INFINITY;
    int bi = INT32_MAX;
    int bad = 0;
    for (int i = threadIdx.x; i < n; i += THREADS) {
        const float v = logits[i];
        bad |= !(fabsf(v) <= FLT_MAX);                    /* NaN or an infinity */
        if (better(v, i, bv, bi)) { bv = v; bi = i; }   /* NaN compares false: never taken */
    }
    bad = __syncthreads_or(bad);
    block_argmax(bv, bi, sv, si);
    if (threadIdx.x == 0) out_id[0] = bad ? -1 : bi == INT32_MAX ? 0 : bi;
}

/* Inclusive block scan of doubles (THREADS values), result per thread. */
__device__ double block_scan(double v, double *tmp) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int o = 1; o < 32; o <<= 1) {
        const double n = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += n;
    }
    __syncthreads();
    if (lane == 31) tmp[warp] = v;
    __syncthreads();
    if (warp == 0) {
        double w = tmp[lane];
        for (int o = 1; o < 32; o <<= 1) {
            const double n = __shfl_up_sync(0xffffffffu, w, o);
            if (lane >= o) w += n;
        }
        tmp[lane] = w;
    }
    __syncthreads();
    return v + (warp > 0 ? tmp[warp - 1] : 0.0);
}

__global__ void __launch_bounds__(THREADS)
sample_kernel(const float *__restrict__ logits, int n, float temperature, int top_k, float top_p, float min_p,
              uint64_t seed, const int32_t *__restrict__ pos, int32_t *out_id) {
    st_pdl_launch_next();
    st_pdl_wait();
    __shared__ unsigned hist[256];
    __shared__ uint32_t prefix_s;
    __shared__ int remain_s, ncand_s;
    __shared__ float cv[KMAX];
    __shared__ int ci[KMAX];
    __shared__ double dtmp[32];
    __shared__ float sv[32];
    __shared__ int si[32];
    const int tid = threadIdx.x;
    const double u = uniform(seed, (uint64_t)(int64_t)pos[0]);
    const float inv_t = 1.0f / temperature;

    /* maximum logit (the softmax reference); a non-finite logit is no token (-1) */
    float bv = -INFINITY;
    int bi = INT32_MAX;
    int bad = 0;
    for (int i = tid; i < n; i += THREADS) {
        const float v = logits[i];
        bad |= !(fabsf(v) <= FLT_MAX);
        if (better(v, i, bv, bi)) { bv = v; bi = i; }
    }
    if (__syncthreads_or(bad)) { if (tid == 0) out_id[0] = -1; return; }
    block_argmax(bv, bi, sv, si);
    if (tid == 0) { sv[0] = bv; si[0] = bi; }
    __syncthreads();
    const float vmax = sv[0];
    const int imax = si[0] == INT32_MAX ? 0 : si[0];
    __syncthreads();
    if (!(vmax > -INFINITY)) { if (tid == 0) out_id[0] = imax; return; }

    if (top_k <= 0) {
        {
            /* full vocabulary in id order: p_i = exp((l_i - max) / T), min-p mask, one draw */
            const float lmin = min_p > 0.0f ? vmax + logf(min_p) : -INFINITY;   /* min-p on untempered probs */
            const int per = (n + THREADS - 1) / THREADS;
            const int i0 = tid * per, i1 = min(n, i0 + per);
            double s = 0.0;
            for (int i = i0; i < i1; i++) {
                const float v = logits[i];
                if (v >= lmin) s += (double)expf((v - vmax) * inv_t);
            }
            const double incl = block_scan(s, dtmp);
            __shared__ double total_s;
            if (tid == THREADS - 1) total_s = incl;
            __syncthreads();
            const double target = u * total_s;
            const double excl = incl - s;
            if ((excl <= target && target < incl) || (tid == THREADS - 1 && target >= incl)) {
                double c = excl;
                int pick = -1, last = -1;
                for (int i = i0; i < i1; i++) {
                    const float v = logits[i];
                    if (!(v >= lmin)) continue;
                    last = i;
                    c += (double)expf((v - vmax) * inv_t);
                    if (c > target) { pick = i; break; }
                }
                out_id[0] = pick >= 0 ? pick : (last >= 0 ? last : imax);
            }
            return;
        }
    }

    /* ---- radix select: key of the k-th largest logit ---- */
    if (tid == 0) { prefix_s = 0; remain_s = top_k; }
    __syncthreads();
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = tid; b < 256; b += THREADS) hist[b] = 0;
        __syncthreads();
        const uint32_t prefix = prefix_s;
        const uint32_t hi_mask = shift == 24 ? 0u : (0xffffffffu << (shift + 8));
        for (int i = tid; i < n; i += THREADS) {
            const uint32_t k = order_key(logits[i]);
            if ((k & hi_mask) == (prefix & hi_mask)) atomicAdd(&hist[(k >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (tid == 0) {
            int rem = remain_s;
            int b = 255;
            for (; b > 0; b--) {
                if ((int)hist[b] >= rem) break;
                rem -= (int)hist[b];
            }
            prefix_s = prefix | ((uint32_t)b << shift);
            remain_s = rem;   /* how many of the keys equal to the final threshold to take */
        }
        __syncthreads();
    }
    const uint32_t thr = prefix_s;
    const int need_eq = remain_s;
    /* gather: every key above the threshold, then the lowest-id need_eq keys equal to it */
    if (tid == 0) ncand_s = 0;
    __syncthreads();
    for (int i = tid; i < n; i += THREADS) {
        const float v = logits[i];
        if (order_key(v) > thr) {
            const int slot = atomicAdd(&ncand_s, 1);
            cv[slot] = v;
            ci[slot] = i;
        }
    }
    {
        const int per = (n + THREADS - 1) / THREADS;
        const int i0 = tid * per, i1 = min(n, i0 + per);
        double cnt = 0.0;
        for (int i = i0; i < i1; i++) cnt += order_key(logits[i]) == thr ? 1.0 : 0.0;
        const double incl = block_scan(cnt, dtmp);   /* ends with barriers: ncand_s settled */
        int rank = (int)(incl - cnt);
        const int base = ncand_s;
        for (int i = i0; i < i1 && rank < need_eq; i++) {
            if (order_key(logits[i]) == thr) {
                cv[base + rank] = logits[i];
                ci[base + rank] = i;
                rank++;
            }
        }
    }
    __syncthreads();
    const int nc = top_k;
    for (int i = nc + tid; i < KMAX; i += THREADS) { cv[i] = -INFINITY; ci[i] = INT32_MAX; }
    __syncthreads();
    /* bitonic sort of KMAX entries by (value desc, id asc) */
    for (int size = 2; size <= KMAX; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = tid; i < KMAX; i += THREADS) {
                const int j = i ^ stride;
                if (j > i) {
                    const bool desc = (i & size) == 0;
                    const bool i_first = better(cv[i], ci[i], cv[j], ci[j]);
                    if (desc != i_first) {
                        const float tv = cv[i]; cv[i] = cv[j]; cv[j] = tv;
                        const int ti = ci[i]; ci[i] = ci[j]; ci[j] = ti;
                    }
                }
            }
            __syncthreads();
        }
    }
    /* untempered probabilities relative to the top candidate decide top-p and min-p */
    __shared__ float pv[KMAX];
    const float top = cv[0];
    for (int i = tid; i < nc; i += THREADS) pv[i] = expf(cv[i] - top);
    __syncthreads();
    if (tid == 0) {
        double total = 0.0;
        for (int i = 0; i < nc; i++) total += pv[i];
        int keep = nc;
        if (top_p < 1.0f) {
            double c = 0.0;
            for (int i = 0; i < nc; i++) {
                c += pv[i];
                if (c >= (double)top_p * total) { keep = i + 1; break; }
            }
        }
        if (min_p > 0.0f) {
            int k2 = 1;
            while (k2 < keep && pv[k2] >= min_p * pv[0]) k2++;
            keep = k2;
        }
        /* temperature last, then one draw over the kept tokens */
        double kept = 0.0;
        for (int i = 0; i < keep; i++) { pv[i] = expf((cv[i] - top) * inv_t); kept += pv[i]; }
        const double target = u * kept;
        double c = 0.0;
        int pick = keep - 1;
        for (int i = 0; i < keep; i++) {
            c += pv[i];
            if (c > target) { pick = i; break; }
        }
        out_id[0] = ci[pick];
    }
}

} // namespace

st_status st_argmax_cuda(const float *logits, int64_t n_vocab, int32_t *out_id, cudaStream_t stream) {
    if (n_vocab > INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "argmax: %lld logits", (long long)n_vocab);
    st_launch(argmax_kernel, 1, THREADS, 0, stream, logits, (int)(n_vocab > 0 ? n_vocab : 0), out_id);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

st_status st_argmax_rows_cuda(const float *logits, int64_t n_rows, int64_t n_vocab, int32_t *out_ids, cudaStream_t stream) {
    if (n_vocab > INT32_MAX || n_rows > INT32_MAX)
        return st_error_set(ST_ERR_UNSUPPORTED, "argmax: %lld rows of %lld logits", (long long)n_rows, (long long)n_vocab);
    if (n_rows <= 0) return ST_OK;
    st_launch(argmax_kernel, (unsigned)n_rows, THREADS, 0, stream, logits, (int)(n_vocab > 0 ? n_vocab : 0), out_ids);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

st_status st_sample_cuda(const float *logits, int64_t n_vocab, const struct st_sample_params *sp, const int32_t *pos,
                         int32_t *out_id, cudaStream_t stream) {
    if (n_vocab <= 0 || n_vocab > INT32_MAX)
        return st_error_set(ST_ERR_UNSUPPORTED, "sample: %lld logits", (long long)n_vocab);
    if (!(sp->temperature > 0.0f)) return st_argmax_cuda(logits, n_vocab, out_id, stream);
    int top_k = sp->top_k <= 0 || sp->top_k >= n_vocab ? 0 : sp->top_k;   /* 0: no truncation */
    if (top_k == 0 && sp->top_p < 1.0f) {
        if (n_vocab > KMAX) {
            st_error_set(ST_ERR_UNSUPPORTED, "sample: top_p %.3g needs top_k between 1 and %d on the GPU (top_k is %d)",
                         (double)sp->top_p, KMAX, (int)sp->top_k);
            return st_error_hint("set top_k (e.g. 40) together with top_p, or sample on the CPU");
        }
        top_k = (int)n_vocab;
    }
    if (top_k > KMAX) {
        st_error_set(ST_ERR_UNSUPPORTED, "sample: top_k %d is above the GPU sampler's limit of %d", (int)sp->top_k, KMAX);
        return st_error_hint("use top_k <= %d, or top_k 0 (no truncation)", KMAX);
    }
    st_launch(sample_kernel, 1, THREADS, 0, stream, logits, (int)n_vocab, sp->temperature, top_k, sp->top_p,
              sp->min_p, sp->seed, pos, out_id);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}
