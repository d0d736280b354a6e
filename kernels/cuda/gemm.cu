/* Prefill GEMM: cuBLAS for the tensor-core / fp32 cases (quantized weights
 * dequantized tile by tile into the caller's scratch), a portable SIMT kernel
 * that widens narrow weights to fp32 for the Maxwell path. */
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/quant.cuh"

namespace {

size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

/* the scratch holds this x converted to dt, whole */
bool x_ready(const struct st_gemm_ws *ws, const float *x, int64_t n_tok, int64_t cols, st_dtype dt) {
    const struct st_gemm_xconv *c = &ws->conv;
    return c->x == x && c->n_tok == n_tok && c->cols == cols && c->dtype == dt;
}
/* the scratch now holds x converted to dt, whole: noted, unless the product
 * (y, n_tok rows of stride ldy, rows wide) overwrote part of x */
void x_note(struct st_gemm_ws *ws, const float *x, int64_t n_tok, int64_t cols, st_dtype dt, const float *y, int64_t ldy,
            int64_t rows) {
    const float *y_end = y + (n_tok - 1) * ldy + rows, *x_end = x + n_tok * cols;
    ws->conv = (struct st_gemm_xconv){y < x_end && x < y_end ? NULL : x, n_tok, cols, dt};
}

template <int DT>
__global__ void convert_kernel(const float *src, void *dst, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        st_elem<DT>::store(dst, i, src[i]);
}

/* dst (n_tok, cols) = src[t * ld_src + c] rounded to DT */
template <int DT>
__global__ void convert_2d_kernel(const float *src, int64_t ld_src, int64_t n_tok, int64_t cols, void *dst) {
    const int64_t n = n_tok * cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / cols, c = i % cols;
        st_elem<DT>::store(dst, i, src[t * ld_src + c]);
    }
}

/* 64 (rows) x 64 (tokens) output tile per 256-thread block, 4 x 4 per thread,
 * K in steps of 16 staged in shared memory as fp32. */
constexpr int TM = 64, TN = 64, TK = 16;

template <int DT>
__global__ void __launch_bounds__(256)
gemm_simt_kernel(const void *__restrict__ w, int64_t rows, int64_t cols, const float *__restrict__ bias,
                 const float *__restrict__ x, int64_t n_tok, float *__restrict__ y, int64_t ldy, bool acc_y) {
    __shared__ float ws[TK][TM + 4];
    __shared__ float xs[TK][TN + 4];
    const int tid = threadIdx.x;
    const int tr = tid % 16, tt = tid / 16;          /* thread's 4x4 micro tile */
    const int64_t r_base = (int64_t)blockIdx.x * TM, t_base = (int64_t)blockIdx.y * TN;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < cols; k0 += TK) {
        /* 64 x 16 elements each for W and x: 4 per thread */
#pragma unroll
        for (int l = 0; l < 4; l++) {
            const int idx = tid + l * 256;
            const int rr = idx / TK, kk = idx % TK;
            const int64_t r = r_base + rr, t = t_base + rr, k = k0 + kk;
            ws[kk][rr] = (r < rows && k < cols) ? st_elem<DT>::load(w, r * cols + k) : 0.0f;
            xs[kk][rr] = (t < n_tok && k < cols) ? x[t * cols + k] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < TK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) { a[i] = ws[kk][tr * 4 + i]; b[i] = xs[kk][tt * 4 + i]; }
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t r = r_base + tr * 4 + i;
        if (r >= rows) continue;
        const float b = bias ? bias[r] : 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t t = t_base + tt * 4 + j;
            if (t < n_tok) y[t * ldy + r] = acc_y ? y[t * ldy + r] + (acc[i][j] + b) : acc[i][j] + b;
        }
    }
}

/* 16 consecutive values of a dequantized unit half into dst (16-byte aligned) */
template <int ODT> __device__ __forceinline__ void store16(void *dst, const float *v);
template <> __device__ __forceinline__ void store16<ST_DTYPE_F32>(void *dst, const float *v) {
    float4 *d = (float4 *)dst;
#pragma unroll
    for (int j = 0; j < 4; j++) d[j] = make_float4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]);
}
template <> __device__ __forceinline__ void store16<ST_DTYPE_BF16>(void *dst, const float *v) {
    uint32_t p[8];
#pragma unroll
    for (int j = 0; j < 8; j++) p[j] = (uint32_t)st_f32_to_bf16_bits(v[2 * j]) | (uint32_t)st_f32_to_bf16_bits(v[2 * j + 1]) << 16;
    uint4 *d = (uint4 *)dst;
    d[0] = make_uint4(p[0], p[1], p[2], p[3]);
    d[1] = make_uint4(p[4], p[5], p[6], p[7]);
}
template <> __device__ __forceinline__ void store16<ST_DTYPE_F16>(void *dst, const float *v) {
    uint32_t p[8];
#pragma unroll
    for (int j = 0; j < 8; j++) p[j] = (uint32_t)st_f32_to_f16_bits(v[2 * j]) | (uint32_t)st_f32_to_f16_bits(v[2 * j + 1]) << 16;
    uint4 *d = (uint4 *)dst;
    d[0] = make_uint4(p[0], p[1], p[2], p[3]);
    d[1] = make_uint4(p[4], p[5], p[6], p[7]);
}

/* one thread per 32-weight unit of the tile rows r0.., columns c0.. c0 + cols */
template <int DT, int A, int ODT>
__global__ void __launch_bounds__(256) dequant_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t r0,
                                                      int64_t rows, int64_t c0, int64_t cols, uint8_t *__restrict__ dst,
                                                      int64_t ld_dst) {
    using Tr = st_qt<DT>;
    constexpr int UPB = Tr::QK / 32;
    constexpr int ES = ODT == ST_DTYPE_F32 ? 4 : 2;
    const int64_t upr = cols / 32;
    const int64_t n = rows * upr;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / upr, uc = i % upr;
        const int64_t b = c0 / Tr::QK + uc / UPB;
        const int ui = (int)(uc % UPB);
        st_q_unit u;
        Tr::template unit<A, false>(w + (size_t)(r0 + r) * row_bytes + (size_t)b * Tr::BB, ui, u);
        float v[32];
        st_q_unit_values<Tr>(u, v);
        uint8_t *drow = dst + ((size_t)r * (size_t)ld_dst + (size_t)(b * Tr::QK - c0)) * ES;
        store16<ODT>(drow + (size_t)u.xo[0] * ES, v);
        store16<ODT>(drow + (size_t)u.xo[1] * ES, v + 16);
    }
}

__global__ void bias_rows_kernel(float *y, int64_t ldy, const float *bias, int64_t n_tok, int64_t rows) {
    const int64_t n = n_tok * rows;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / rows, r = i % rows;
        y[t * ldy + r] += bias[r];
    }
}

__global__ void swiglu_rows_kernel(float *out, int64_t ld_out, const float *up, int64_t ld_up, const float *bg,
                                   const float *bu, int64_t n_tok, int64_t rows) {
    const int64_t n = n_tok * rows;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / rows, r = i % rows;
        const float g = out[t * ld_out + r] + (bg ? bg[r] : 0.0f);
        const float u = up[t * ld_up + r] + (bu ? bu[r] : 0.0f);
        out[t * ld_out + r] = g / (1.0f + expf(-g)) * u;
    }
}

st_status bias_rows(float *y, int64_t ldy, const float *bias, int64_t n_tok, int64_t rows, cudaStream_t stream) {
    if (!bias || n_tok <= 0 || rows <= 0) return ST_OK;
    bias_rows_kernel<<<st_cuda_blocks(n_tok * rows, 256, 4096), 256, 0, stream>>>(y, ldy, bias, n_tok, rows);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

template <int DT, int A>
st_status dequant_launch_a(const void *w, size_t row_bytes, int64_t r0, int64_t rows, int64_t c0, int64_t cols,
                           st_dtype odt, void *dst, int64_t ld, cudaStream_t stream) {
    const unsigned blocks = st_cuda_blocks(rows * (cols / 32), 256, 8192);
    const uint8_t *wb = (const uint8_t *)w;
    uint8_t *d = (uint8_t *)dst;
    switch (odt) {
    case ST_DTYPE_F32: dequant_kernel<DT, A, ST_DTYPE_F32><<<blocks, 256, 0, stream>>>(wb, row_bytes, r0, rows, c0, cols, d, ld); break;
    case ST_DTYPE_F16: dequant_kernel<DT, A, ST_DTYPE_F16><<<blocks, 256, 0, stream>>>(wb, row_bytes, r0, rows, c0, cols, d, ld); break;
    default: dequant_kernel<DT, A, ST_DTYPE_BF16><<<blocks, 256, 0, stream>>>(wb, row_bytes, r0, rows, c0, cols, d, ld); break;
    }
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

template <int DT>
st_status dequant_launch(const void *w, size_t row_bytes, int64_t r0, int64_t rows, int64_t c0, int64_t cols,
                         st_dtype odt, void *dst, int64_t ld, cudaStream_t stream) {
    constexpr int AL = st_qt<DT>::ALIGN;
    if (AL > 2 && st_is_aligned(w, AL) && row_bytes % AL == 0)
        return dequant_launch_a<DT, AL>(w, row_bytes, r0, rows, c0, cols, odt, dst, ld, stream);
    return dequant_launch_a<DT, 2>(w, row_bytes, r0, rows, c0, cols, odt, dst, ld, stream);
}

cudaDataType_t cuda_type(st_dtype t) {
    return t == ST_DTYPE_F16 ? CUDA_R_16F : t == ST_DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_32F;
}

st_status convert_2d(const float *src, int64_t ld_src, int64_t n_tok, int64_t cols, st_dtype dt, void *dst,
                     cudaStream_t stream) {
    if (n_tok <= 0 || cols <= 0) return ST_OK;
    const unsigned blocks = st_cuda_blocks(n_tok * cols, 256, 4096);
    if (dt == ST_DTYPE_BF16) convert_2d_kernel<ST_DTYPE_BF16><<<blocks, 256, 0, stream>>>(src, ld_src, n_tok, cols, dst);
    else if (dt == ST_DTYPE_F16) convert_2d_kernel<ST_DTYPE_F16><<<blocks, 256, 0, stream>>>(src, ld_src, n_tok, cols, dst);
    else return st_error_set(ST_ERR_INTERNAL, "convert: target dtype %s", st_dtype_name(dt));
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

st_status check_int_sizes(int64_t rows, int64_t cols, int64_t n_tok, int64_t ldy) {
    if (rows > INT32_MAX || cols > INT32_MAX || n_tok > INT32_MAX || ldy > INT32_MAX)
        return st_error_set(ST_ERR_UNSUPPORTED, "gemm: %lld x %lld x %lld exceeds cuBLAS's int sizes", (long long)rows,
                            (long long)cols, (long long)n_tok);
    return ST_OK;
}

st_status ws_too_small(const struct st_gemm_ws *ws, size_t need) {
    char a[32], b[32];
    return st_error_set(ST_ERR_INTERNAL, "gemm: scratch of %s, a product needs at least %s",
                        st_format_bytes(ws ? ws->bytes : 0, a, sizeof a), st_format_bytes(need, b, sizeof b));
}

} // namespace

size_t st_gemm_ws_bytes(int64_t n_tok, int64_t widen_elems, int64_t widen_cols, size_t elem_bytes) {
    const size_t x_cols = (size_t)ST_MAX((int64_t)ST_GEMM_TILE_COLS, widen_cols);
    const size_t tile = ST_MAX(ST_GEMM_W_TILE_BYTES, (size_t)ST_MAX(widen_elems, (int64_t)0) * elem_bytes);
    return align256((size_t)(n_tok > 0 ? n_tok : 1) * x_cols * 2) + align256(tile);
}

st_status st_convert_f32_cuda(const float *src, st_dtype dst_dtype, void *dst, int64_t n, cudaStream_t stream) {
    if (n <= 0) return ST_OK;
    const unsigned blocks = st_cuda_blocks(n, 256, 4096);
    if (dst_dtype == ST_DTYPE_BF16) convert_kernel<ST_DTYPE_BF16><<<blocks, 256, 0, stream>>>(src, dst, n);
    else if (dst_dtype == ST_DTYPE_F16) convert_kernel<ST_DTYPE_F16><<<blocks, 256, 0, stream>>>(src, dst, n);
    else return st_error_set(ST_ERR_INTERNAL, "convert: target dtype %s", st_dtype_name(dst_dtype));
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

st_status st_swiglu_rows_cuda(float *out, int64_t ld_out, const float *up, int64_t ld_up, const float *bg, const float *bu,
                              int64_t n_tok, int64_t rows, cudaStream_t stream) {
    if (n_tok <= 0 || rows <= 0) return ST_OK;
    swiglu_rows_kernel<<<st_cuda_blocks(n_tok * rows, 256, 4096), 256, 0, stream>>>(out, ld_out, up, ld_up, bg, bu,
                                                                                    n_tok, rows);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

st_status st_dequant_cuda(const void *w, st_dtype dtype, int64_t w_cols, int64_t r0, int64_t rows, int64_t c0,
                          int64_t cols, st_dtype dst_dtype, void *dst, int64_t ld_dst, cudaStream_t stream) {
    if (rows <= 0 || cols <= 0) return ST_OK;
    const int64_t qk = st_dtype_block_elems(dtype);
    if (!st_q_is_quant(dtype) || w_cols % qk || c0 % qk || cols % qk || c0 + cols > w_cols)
        return st_error_set(ST_ERR_INTERNAL, "dequant: %s tile of columns %lld..%lld of %lld", st_dtype_name(dtype),
                            (long long)c0, (long long)(c0 + cols), (long long)w_cols);
    if (dst_dtype != ST_DTYPE_F32 && dst_dtype != ST_DTYPE_F16 && dst_dtype != ST_DTYPE_BF16)
        return st_error_set(ST_ERR_INTERNAL, "dequant: target dtype %s", st_dtype_name(dst_dtype));
    if (!st_is_aligned(dst, 16) || ld_dst % 8 || !st_is_aligned(w, 2))
        return st_error_set(ST_ERR_INTERNAL, "dequant: misaligned tile (dst %p, ld %lld)", dst, (long long)ld_dst);
    const size_t rb = st_dtype_row_bytes(dtype, w_cols);
    switch (dtype) {
    case ST_DTYPE_Q8_0: return dequant_launch<ST_DTYPE_Q8_0>(w, rb, r0, rows, c0, cols, dst_dtype, dst, ld_dst, stream);
    case ST_DTYPE_Q4_0: return dequant_launch<ST_DTYPE_Q4_0>(w, rb, r0, rows, c0, cols, dst_dtype, dst, ld_dst, stream);
    case ST_DTYPE_Q4_1: return dequant_launch<ST_DTYPE_Q4_1>(w, rb, r0, rows, c0, cols, dst_dtype, dst, ld_dst, stream);
    case ST_DTYPE_Q5_0: return dequant_launch<ST_DTYPE_Q5_0>(w, rb, r0, rows, c0, cols, dst_dtype, dst, ld_dst, stream);
    case ST_DTYPE_Q5_1: return dequant_launch<ST_DTYPE_Q5_1>(w, rb, r0, rows, c0, cols, dst_dtype, dst, ld_dst, stream);
    case ST_DTYPE_IQ4_NL: return dequant_launch<ST_DTYPE_IQ4_NL>(w, rb, r0, rows, c0, cols, dst_dtype, dst, ld_dst, stream);
    case ST_DTYPE_Q4_K: return dequant_launch<ST_DTYPE_Q4_K>(w, rb, r0, rows, c0, cols, dst_dtype, dst, ld_dst, stream);
    case ST_DTYPE_Q5_K: return dequant_launch<ST_DTYPE_Q5_K>(w, rb, r0, rows, c0, cols, dst_dtype, dst, ld_dst, stream);
    default: return dequant_launch<ST_DTYPE_Q6_K>(w, rb, r0, rows, c0, cols, dst_dtype, dst, ld_dst, stream);
    }
}

st_status st_gemm_simt_cuda(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                            const float *x, int64_t n_tok, float *y, int64_t ldy, bool acc, cudaStream_t stream) {
    if (rows <= 0 || n_tok <= 0) return ST_OK;
    const int64_t gx = (rows + TM - 1) / TM, gy = (n_tok + TN - 1) / TN;
    if (gx > INT32_MAX || gy > 65535) return st_error_set(ST_ERR_UNSUPPORTED, "gemm: %lld x %lld output", (long long)n_tok, (long long)rows);
    dim3 grid((unsigned)gx, (unsigned)gy);
    switch (dtype) {
    case ST_DTYPE_F32: gemm_simt_kernel<ST_DTYPE_F32><<<grid, 256, 0, stream>>>(w, rows, cols, bias, x, n_tok, y, ldy, acc); break;
    case ST_DTYPE_F16: gemm_simt_kernel<ST_DTYPE_F16><<<grid, 256, 0, stream>>>(w, rows, cols, bias, x, n_tok, y, ldy, acc); break;
    case ST_DTYPE_BF16: gemm_simt_kernel<ST_DTYPE_BF16><<<grid, 256, 0, stream>>>(w, rows, cols, bias, x, n_tok, y, ldy, acc); break;
    default:
        return st_error_set(ST_ERR_INTERNAL, "gemm: the SIMT kernel takes F32/F16/BF16 weights, not %s", st_dtype_name(dtype));
    }
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

st_status st_gemm_cublas_cuda(cublasHandle_t h, const void *w, st_dtype dtype, int64_t rows, int64_t cols,
                              const float *bias, const float *x, int64_t n_tok, float *y, int64_t ldy, bool acc,
                              struct st_gemm_ws *ws, cudaStream_t stream) {
    if (rows <= 0 || n_tok <= 0) return ST_OK;
    st_status st = check_int_sizes(rows, cols, n_tok, ldy);
    if (st != ST_OK) return st;
    if (dtype != ST_DTYPE_F32 && dtype != ST_DTYPE_F16 && dtype != ST_DTYPE_BF16)
        return st_error_set(ST_ERR_INTERNAL, "gemm: cuBLAS path for %s weights", st_dtype_name(dtype));
    const cudaDataType_t wt = cuda_type(dtype);
    const float one = 1.0f, zero = 0.0f;
    const float *beta = acc ? &one : &zero;
    ST_CUBLAS_CHECK(cublasSetStream(h, stream));
    if (dtype == ST_DTYPE_F32) {
        /* column-major view: y^T (rows x n_tok) = W (cols x rows)^T · x^T (cols x n_tok) */
        ST_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)n_tok, (int)cols, &one, w, wt, (int)cols,
                                     x, CUDA_R_32F, (int)cols, beta, y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
        return bias_rows(y, ldy, bias, n_tok, rows, stream);
    }
    /* x converted to the weights' dtype, as many tokens at a time as the scratch holds (not at all
     * where the scratch holds it already) */
    const size_t per_tok = (size_t)cols * 2;
    if (!ws || !ws->ptr || ws->bytes < per_tok) return ws_too_small(ws, per_tok);
    const int64_t tc = (int64_t)ST_MIN((size_t)n_tok, ws->bytes / per_tok);
    const bool ready = tc == n_tok && x_ready(ws, x, n_tok, cols, dtype);
    if (!ready) ws->conv.x = NULL;
    for (int64_t t0 = 0; t0 < n_tok; t0 += tc) {
        const int64_t tn = ST_MIN(tc, n_tok - t0);
        if (!ready && (st = st_convert_f32_cuda(x + t0 * cols, dtype, ws->ptr, tn * cols, stream)) != ST_OK) return st;
        ST_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)tn, (int)cols, &one, w, wt, (int)cols,
                                     ws->ptr, wt, (int)cols, beta, y + t0 * ldy, CUDA_R_32F, (int)ldy,
                                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    if (tc == n_tok) x_note(ws, x, n_tok, cols, dtype, y, ldy, rows);
    return bias_rows(y, ldy, bias, n_tok, rows, stream);
}

st_status st_gemm_quant_cuda(cublasHandle_t h, const void *w, st_dtype dtype, int64_t rows, int64_t cols,
                             const float *bias, const float *x, int64_t n_tok, float *y, int64_t ldy, bool acc,
                             st_dtype compute, struct st_gemm_ws *ws, cudaStream_t stream) {
    if (rows <= 0 || n_tok <= 0) return ST_OK;
    st_status st = check_int_sizes(rows, cols, n_tok, ldy);
    if (st != ST_OK) return st;
    if (!st_q_is_quant(dtype)) return st_error_set(ST_ERR_INTERNAL, "gemm: %s is not a quantized type", st_dtype_name(dtype));
    if (compute != ST_DTYPE_F32 && compute != ST_DTYPE_F16 && compute != ST_DTYPE_BF16)
        return st_error_set(ST_ERR_INTERNAL, "gemm: compute dtype %s", st_dtype_name(compute));
    const int64_t qk = st_dtype_block_elems(dtype);
    if (cols % qk) return st_error_set(ST_ERR_INTERNAL, "gemm: %lld columns of %s", (long long)cols, st_dtype_name(dtype));
    const size_t es = compute == ST_DTYPE_F32 ? 4 : 2;
    const bool conv = compute != ST_DTYPE_F32;
    /* every column in one tile when all of x and 64 weight rows fit, else ST_GEMM_TILE_COLS */
    int64_t kc = cols;
    const size_t whole = (size_t)ST_MIN(rows, (int64_t)64) * (size_t)cols * es +
                         (conv ? align256((size_t)n_tok * (size_t)cols * 2) + 256 : 0);
    if (!ws || ws->bytes < whole) kc = ST_MIN(cols, (int64_t)ST_GEMM_TILE_COLS);
    const size_t wrow = (size_t)kc * es;
    const size_t min_w = (size_t)ST_MIN(rows, (int64_t)64) * wrow;
    const size_t need = min_w + (conv ? align256((size_t)kc * 2) + 256 : 0);
    if (!ws || !ws->ptr || ws->bytes < need) return ws_too_small(ws, need);
    /* tokens of x per pass (converted copies for 16-bit compute), then W tile rows */
    int64_t tc = n_tok;
    size_t x_bytes = 0;
    if (conv) {
        tc = (int64_t)ST_MIN((size_t)n_tok, (ws->bytes - min_w - 256) / ((size_t)kc * 2));
        x_bytes = align256((size_t)tc * (size_t)kc * 2);
    }
    const int64_t rc = (int64_t)ST_MIN((size_t)rows, (ws->bytes - x_bytes) / wrow);
    if (tc < 1 || rc < 1) return ws_too_small(ws, need);
    uint8_t *xbuf = (uint8_t *)ws->ptr;
    uint8_t *wbuf = xbuf + x_bytes;
    const cudaDataType_t ct = cuda_type(compute);
    const float one = 1.0f, zero = 0.0f;
    ST_CUBLAS_CHECK(cublasSetStream(h, stream));
    /* x whole in one piece: perhaps converted already (by the GEMM before, of the same x) */
    const bool x_whole = conv && tc == n_tok && kc == cols;
    const bool ready = x_whole && x_ready(ws, x, n_tok, cols, compute);
    if (!ready) ws->conv.x = NULL;
    for (int64_t t0 = 0; t0 < n_tok; t0 += tc) {
        const int64_t tn = ST_MIN(tc, n_tok - t0);
        for (int64_t k0 = 0; k0 < cols; k0 += kc) {
            const int64_t kn = ST_MIN(kc, cols - k0);
            const void *b = x + t0 * cols + k0;
            int64_t ldb = cols;
            if (conv) {
                if (!ready && (st = convert_2d(x + t0 * cols + k0, cols, tn, kn, compute, xbuf, stream)) != ST_OK) return st;
                b = xbuf;
                ldb = kn;
            }
            for (int64_t r0 = 0; r0 < rows; r0 += rc) {
                const int64_t rn = ST_MIN(rc, rows - r0);
                if ((st = st_dequant_cuda(w, dtype, cols, r0, rn, k0, kn, compute, wbuf, kn, stream)) != ST_OK) return st;
                ST_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rn, (int)tn, (int)kn, &one, wbuf, ct, (int)kn,
                                             b, ct, (int)ldb, k0 || acc ? &one : &zero, y + t0 * ldy + r0, CUDA_R_32F,
                                             (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            }
        }
    }
    if (x_whole) x_note(ws, x, n_tok, cols, compute, y, ldy, rows);
    return bias_rows(y, ldy, bias, n_tok, rows, stream);
}
