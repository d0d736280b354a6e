/* Embedding lookup over any stored dtype. Quant block layouts follow
 * model/dtype.c (formats.md §1.6) element for element. */
#include "kernels/cuda/embed.cuh"

namespace {

__device__ __forceinline__ float rd_f16(const uint8_t *p) {
    return st_f16_bits_to_f32((uint16_t)(p[0] | (p[1] << 8)));
}

__device__ const int8_t iq4nl_table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

__device__ __forceinline__ void scale_min_k4(int s, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (s < 4) {
        *sc = q[s] & 63;
        *m = q[s + 4] & 63;
    } else {
        *sc = (uint8_t)((q[s + 4] & 0xf) | ((q[s - 4] >> 6) << 4));
        *m = (uint8_t)((q[s + 4] >> 4) | ((q[s] >> 6) << 4));
    }
}

/* Element j of one quant block starting at b. */
__device__ float deq_elem(st_dtype t, const uint8_t *b, int j) {
    switch (t) {
    case ST_DTYPE_Q8_0: return (float)(int8_t)b[2 + j] * rd_f16(b);
    case ST_DTYPE_Q4_0: {
        int q = j < 16 ? (b[2 + j] & 0xf) : (b[2 + j - 16] >> 4);
        return (float)(q - 8) * rd_f16(b);
    }
    case ST_DTYPE_Q4_1: {
        int q = j < 16 ? (b[4 + j] & 0xf) : (b[4 + j - 16] >> 4);
        return (float)q * rd_f16(b) + rd_f16(b + 2);
    }
    case ST_DTYPE_Q5_0: {
        uint32_t h = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 | (uint32_t)b[5] << 24;
        int jj = j & 15;
        int lo = j < 16 ? (b[6 + jj] & 0xf) : (b[6 + jj] >> 4);
        int q = (int)(lo | (((h >> j) & 1) << 4)) - 16;
        return (float)q * rd_f16(b);
    }
    case ST_DTYPE_Q5_1: {
        uint32_t h = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
        int jj = j & 15;
        int lo = j < 16 ? (b[8 + jj] & 0xf) : (b[8 + jj] >> 4);
        int q = (int)(lo | (((h >> j) & 1) << 4));
        return (float)q * rd_f16(b) + rd_f16(b + 2);
    }
    case ST_DTYPE_IQ4_NL: {
        int q = j < 16 ? (b[2 + j] & 0xf) : (b[2 + j - 16] >> 4);
        return rd_f16(b) * (float)iq4nl_table[q];
    }
    case ST_DTYPE_Q4_K: {
        const uint8_t *scales = b + 4, *qs = b + 16;
        int c = j / 64, hi = (j % 64) / 32, l = j % 32;
        uint8_t sc, m;
        scale_min_k4(2 * c + hi, scales, &sc, &m);
        float d = rd_f16(b) * sc, mm = rd_f16(b + 2) * m;
        int q = hi ? (qs[32 * c + l] >> 4) : (qs[32 * c + l] & 0xf);
        return d * (float)q - mm;
    }
    case ST_DTYPE_Q5_K: {
        const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + 48;
        int c = j / 64, hi = (j % 64) / 32, l = j % 32;
        uint8_t sc, m;
        scale_min_k4(2 * c + hi, scales, &sc, &m);
        float d = rd_f16(b) * sc, mm = rd_f16(b + 2) * m;
        int q = (hi ? (qs[32 * c + l] >> 4) : (qs[32 * c + l] & 0xf)) + 16 * ((qh[l] >> (2 * c + hi)) & 1);
        return d * (float)q - mm;
    }
    case ST_DTYPE_Q6_K: {
        int h = j / 128, r = j % 128, quarter = r / 32, l = r % 32;
        const uint8_t *L = b + 64 * h, *H = b + 128 + 32 * h;
        const int8_t *S = (const int8_t *)(b + 192) + 8 * h;
        float d = rd_f16(b + 208);
        int lo = (quarter & 1) ? L[l + 32] : L[l];
        lo = quarter >= 2 ? (lo >> 4) : (lo & 0xf);
        int q = (int)(lo | (((H[l] >> (2 * quarter)) & 3) << 4)) - 32;
        return d * (float)S[l / 16 + 2 * quarter] * (float)q;
    }
    default: return __int_as_float(0x7fc00000);
    }
}

/* grid.y = token; threads stride over the row. */
__global__ void embed_kernel(const uint8_t *table, st_dtype dtype, int64_t n_vocab, int64_t n_embd,
                             size_t row_bytes, int64_t block_elems, size_t block_bytes,
                             const int32_t *ids, float *out, int *bad_id) {
    st_pdl_launch_next();
    st_pdl_wait();
    const int64_t t = blockIdx.y;
    const int32_t id = ids[t];
    float *o = out + t * n_embd;
    if (id < 0 || id >= n_vocab) {
        for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n_embd; i += (int64_t)gridDim.x * blockDim.x)
            o[i] = __int_as_float(0x7fc00000);
        if (bad_id && threadIdx.x == 0 && blockIdx.x == 0) *(volatile int *)bad_id = (int)t + 1;   /* host-mapped: a plain store */
        return;
    }
    const uint8_t *row = table + (size_t)id * row_bytes;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n_embd; i += (int64_t)gridDim.x * blockDim.x) {
        float v;
        switch (dtype) {
        case ST_DTYPE_F32: v = ((const float *)row)[i]; break;
        case ST_DTYPE_F16: v = st_f16_bits_to_f32(((const uint16_t *)row)[i]); break;
        case ST_DTYPE_BF16: v = st_bf16_bits_to_f32(((const uint16_t *)row)[i]); break;
        default: v = deq_elem(dtype, row + (size_t)(i / block_elems) * block_bytes, (int)(i % block_elems)); break;
        }
        o[i] = v;
    }
}

} // namespace

st_status st_embed_cuda(const void *table, st_dtype dtype, int64_t n_vocab, int64_t n_embd,
                        const int32_t *ids, int64_t n_tok, float *out, int *bad_id, cudaStream_t stream) {
    if (n_tok <= 0) return ST_OK;
    if (n_tok > 65535)
        return st_error_set(ST_ERR_UNSUPPORTED, "embed: %lld tokens in one call (at most 65535)", (long long)n_tok);
    const int threads = 256;
    dim3 grid(st_cuda_blocks(n_embd, threads, 64), (unsigned)n_tok);
    st_launch(embed_kernel, grid, threads, 0, stream, (const uint8_t *)table, dtype, n_vocab, n_embd,
                                               st_dtype_row_bytes(dtype, n_embd), st_dtype_block_elems(dtype),
                                               st_dtype_block_bytes(dtype), ids, out, bad_id);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}
