/* kernels/cuda/common.cuh — helpers shared by the CUDA kernels: element
 * conversions that compile for every architecture from sm_52 up (bf16 is
 * handled as raw bits, so no cuda_bf16.h intrinsic needs sm_80), warp and
 * block reductions, and launch-shape helpers.
 *
 * Every kernel file includes this and devices/cuda/check.h; every launch uses
 * an explicit stream and is followed by ST_CUDA_LAUNCH_CHECK(). */
#ifndef STRATA_KERNELS_CUDA_COMMON_CUH
#define STRATA_KERNELS_CUDA_COMMON_CUH

#include <stdint.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>

#include "devices/cuda/check.h"
#include "model/model.h"

#define ST_WARP 32

/* ---- scalar conversions (bit exact with model/dtype.c) --------------------- */

static __device__ __forceinline__ float st_bf16_bits_to_f32(uint32_t b) {
    return __uint_as_float(b << 16);
}
/* Round to nearest even; NaN stays NaN (quiet). */
static __device__ __forceinline__ uint16_t st_f32_to_bf16_bits(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static __device__ __forceinline__ float st_f16_bits_to_f32(uint16_t h) {
    return __half2float(__ushort_as_half(h));
}
static __device__ __forceinline__ uint16_t st_f32_to_f16_bits(float f) {
    return __half_as_ushort(__float2half_rn(f));
}

/* Two packed 16-bit values (low half first in memory) to two floats. */
static __device__ __forceinline__ float2 st_bf16x2_to_f32(uint32_t w) {
    return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}
static __device__ __forceinline__ float2 st_f16x2_to_f32(uint32_t w) {
    return make_float2(st_f16_bits_to_f32((uint16_t)(w & 0xffffu)), st_f16_bits_to_f32((uint16_t)(w >> 16)));
}

/* Element i of a F32/F16/BF16 (and, below, Q8_0) array as fp32. */
template <int DT> struct st_elem;
template <> struct st_elem<ST_DTYPE_F32> {
    typedef float T;
    static __device__ __forceinline__ float load(const void *p, int64_t i) { return ((const float *)p)[i]; }
    static __device__ __forceinline__ void store(void *p, int64_t i, float v) { ((float *)p)[i] = v; }
};
template <> struct st_elem<ST_DTYPE_F16> {
    typedef uint16_t T;
    static __device__ __forceinline__ float load(const void *p, int64_t i) {
        return st_f16_bits_to_f32(((const uint16_t *)p)[i]);
    }
    static __device__ __forceinline__ void store(void *p, int64_t i, float v) { ((uint16_t *)p)[i] = st_f32_to_f16_bits(v); }
};
template <> struct st_elem<ST_DTYPE_BF16> {
    typedef uint16_t T;
    static __device__ __forceinline__ float load(const void *p, int64_t i) {
        return st_bf16_bits_to_f32(((const uint16_t *)p)[i]);
    }
    static __device__ __forceinline__ void store(void *p, int64_t i, float v) { ((uint16_t *)p)[i] = st_f32_to_bf16_bits(v); }
};

/* Element i of a Q8_0 array (GGUF blocks of 32: fp16 scale d, then 32 int8 q;
 * 34 bytes) as q * d in fp32. The scale is converted from its bit pattern
 * (__half2float: every architecture from sm_52, no fp16 arithmetic). Loads
 * only: a store needs the whole block (kernels/cuda/kv_store.cu). */
static __device__ __forceinline__ float st_q8_0_scale(const uint8_t *blk) {
    return st_f16_bits_to_f32(*(const uint16_t *)blk);   /* 34-byte blocks: the scale is 2-byte aligned */
}
template <> struct st_elem<ST_DTYPE_Q8_0> {
    static __device__ __forceinline__ float load(const void *p, int64_t i) {
        const uint8_t *b = (const uint8_t *)p + (i >> 5) * 34;
        return (float)(int8_t)b[2 + (i & 31)] * st_q8_0_scale(b);
    }
};

/* ---- reductions ------------------------------------------------------------ */

static __device__ __forceinline__ float st_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static __device__ __forceinline__ float st_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets
 * the result. `red` is 32 floats of shared memory; the call ends in a barrier. */
static __device__ __forceinline__ float st_block_sum(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = st_warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    v = st_warp_sum(v);
    return v;
}
static __device__ __forceinline__ float st_block_max(float v, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = st_warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    v = st_warp_max(v);
    return v;
}

/* ---- launch helpers -------------------------------------------------------- */

static inline unsigned st_cuda_blocks(int64_t n, int threads, int64_t cap) {
    int64_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > cap) b = cap;
    return (unsigned)b;
}
static inline bool st_is_aligned(const void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

/* ---- programmatic dependent launch (sm_90+) -----------------------------------
 * On a card where the backend turned it on (st_cuda_pdl_set), st_launch starts a
 * kernel outside a graph capture with programmatic stream serialization: its
 * blocks may be scheduled while the kernel before it in the stream is still
 * draining (captured into a graph it cost a 7B bf16 decode step 6.0 ms instead
 * of 5.67 on an H100, while eager passes gained: prefill 3%, 16-sequence decode
 * steps 4%; bench/gpu_gemv.md). Such a kernel must
 * call st_pdl_wait() before it reads anything an earlier kernel wrote or writes
 * anything an earlier kernel reads (the wait returns once every earlier kernel has
 * finished and its memory is visible); only index math and reads of weights may
 * come before it: a decode GEMV issues its first weight loads there, so they
 * overlap the previous kernel's tail. st_pdl_launch_next() lets the next kernel's
 * blocks be scheduled before this one ends. Both are no-ops below sm_90 and in a
 * kernel launched without the attribute. Every kernel launched through st_launch
 * calls both. */
static __device__ __forceinline__ void st_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
static __device__ __forceinline__ void st_pdl_launch_next() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* kernel<<<grid, block, smem, stream>>>(args...), with programmatic stream
 * serialization where the current device has it on; follow with
 * ST_CUDA_LAUNCH_CHECK() as after any launch. */
template <typename... P, typename... A>
static inline void st_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                             A &&...args) {
#if CUDART_VERSION >= 12030
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    if (st_cuda_pdl_on() && cudaStreamIsCapturing(stream, &cap) == cudaSuccess && cap == cudaStreamCaptureStatusNone) {
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute attr[1];
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.gridDim = grid;
        cfg.blockDim = block;
        cfg.dynamicSmemBytes = smem;
        cfg.stream = stream;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        (void)cudaLaunchKernelEx(&cfg, kernel, static_cast<A &&>(args)...);   /* errors: ST_CUDA_LAUNCH_CHECK */
        return;
    }
#endif
    kernel<<<grid, block, smem, stream>>>(static_cast<A &&>(args)...);
}

#endif /* STRATA_KERNELS_CUDA_COMMON_CUH */
