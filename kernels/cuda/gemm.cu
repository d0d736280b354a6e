/* Prefill GEMM: cuBLAS for the tensor-core / fp32 cases, a portable SIMT
 * kernel that widens narrow weights to fp32 for the Maxwell path. */
#include "kernels/cuda/gemm.cuh"
#include "kernels/cuda/add.cuh"

namespace {

template <int DT>
__global__ void convert_kernel(const float *src, void *dst, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        st_elem<DT>::store(dst, i, src[i]);
}

/* 64 (rows) x 64 (tokens) output tile per 256-thread block, 4 x 4 per thread,
 * K in steps of 16 staged in shared memory as fp32. */
constexpr int TM = 64, TN = 64, TK = 16;

template <int DT>
__global__ void __launch_bounds__(256)
gemm_simt_kernel(const void *__restrict__ w, int64_t rows, int64_t cols, const float *__restrict__ bias,
                 const float *__restrict__ x, int64_t n_tok, float *__restrict__ y) {
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
            if (t < n_tok) y[t * rows + r] = acc[i][j] + b;
        }
    }
}

} // namespace

st_status st_convert_f32_cuda(const float *src, st_dtype dst_dtype, void *dst, int64_t n, cudaStream_t stream) {
    if (n <= 0) return ST_OK;
    const unsigned blocks = st_cuda_blocks(n, 256, 4096);
    if (dst_dtype == ST_DTYPE_BF16) convert_kernel<ST_DTYPE_BF16><<<blocks, 256, 0, stream>>>(src, dst, n);
    else if (dst_dtype == ST_DTYPE_F16) convert_kernel<ST_DTYPE_F16><<<blocks, 256, 0, stream>>>(src, dst, n);
    else return st_error_set(ST_ERR_INTERNAL, "convert: target dtype %s", st_dtype_name(dst_dtype));
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

st_status st_gemm_simt_cuda(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                            const float *x, int64_t n_tok, float *y, cudaStream_t stream) {
    if (rows <= 0 || n_tok <= 0) return ST_OK;
    const int64_t gx = (rows + TM - 1) / TM, gy = (n_tok + TN - 1) / TN;
    if (gx > INT32_MAX || gy > 65535) return st_error_set(ST_ERR_UNSUPPORTED, "gemm: %lld x %lld output", (long long)n_tok, (long long)rows);
    dim3 grid((unsigned)gx, (unsigned)gy);
    switch (dtype) {
    case ST_DTYPE_F32: gemm_simt_kernel<ST_DTYPE_F32><<<grid, 256, 0, stream>>>(w, rows, cols, bias, x, n_tok, y); break;
    case ST_DTYPE_F16: gemm_simt_kernel<ST_DTYPE_F16><<<grid, 256, 0, stream>>>(w, rows, cols, bias, x, n_tok, y); break;
    case ST_DTYPE_BF16: gemm_simt_kernel<ST_DTYPE_BF16><<<grid, 256, 0, stream>>>(w, rows, cols, bias, x, n_tok, y); break;
    default:
        st_error_set(ST_ERR_UNSUPPORTED, "matmul: %s weights are not supported by the CUDA backend", st_dtype_name(dtype));
        return st_error_hint("use an F16/BF16/F32 model file for GPU stages");
    }
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

st_status st_gemm_cublas_cuda(cublasHandle_t h, const void *w, st_dtype dtype, int64_t rows, int64_t cols,
                              const float *bias, const float *x, int64_t n_tok, float *y, void *x16,
                              cudaStream_t stream) {
    if (rows <= 0 || n_tok <= 0) return ST_OK;
    if (rows > INT32_MAX || cols > INT32_MAX || n_tok > INT32_MAX)
        return st_error_set(ST_ERR_UNSUPPORTED, "gemm: %lld x %lld x %lld exceeds cuBLAS's int sizes",
                            (long long)rows, (long long)cols, (long long)n_tok);
    cudaDataType_t wt;
    const void *b = x;
    cudaDataType_t bt = CUDA_R_32F;
    switch (dtype) {
    case ST_DTYPE_F32: wt = CUDA_R_32F; break;
    case ST_DTYPE_F16: wt = CUDA_R_16F; break;
    case ST_DTYPE_BF16: wt = CUDA_R_16BF; break;
    default:
        st_error_set(ST_ERR_UNSUPPORTED, "matmul: %s weights are not supported by the CUDA backend", st_dtype_name(dtype));
        return st_error_hint("use an F16/BF16/F32 model file for GPU stages");
    }
    if (dtype != ST_DTYPE_F32) {
        st_status s = st_convert_f32_cuda(x, dtype, x16, n_tok * cols, stream);
        if (s != ST_OK) return s;
        b = x16;
        bt = wt;
    }
    const float one = 1.0f, zero = 0.0f;
    ST_CUBLAS_CHECK(cublasSetStream(h, stream));
    /* column-major view: y^T (rows x n_tok) = W (cols x rows)^T · x^T (cols x n_tok) */
    ST_CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)n_tok, (int)cols, &one, w, wt, (int)cols,
                                 b, bt, (int)cols, &zero, y, CUDA_R_32F, (int)rows, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
    if (bias) return st_bias_add_cuda(y, bias, n_tok, rows, stream);
    return ST_OK;
}
