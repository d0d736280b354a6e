/* The GPU half of `strata inventory --probe`: memory bandwidth (device copy),
 * decode GEMV per weight dtype through the backend's own matmul, prefill GEMM
 * rate, per-kernel launch cost, and per device pair the latency and bandwidth
 * of each link kind. Device events time device work; warm-up first, median of
 * the repetitions; GEMV weights rotate through enough copies to defeat L2. */
#include "devices/cuda/cuda-impl.h"
#include "devices/link-impl.h"
#include "kernels/cuda/common.cuh"

#include <stdlib.h>
#include <string.h>

namespace {

/* Pseudo-random fill in [-1, 1) (never zeros: zeros can run faster than data). */
template <int DT>
__global__ void fill_kernel(void *p, int64_t n, uint32_t seed) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
        st_elem<DT>::store(p, i, (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f);
    }
}

st_status fill(void *p, st_dtype dt, int64_t n, uint32_t seed, cudaStream_t s) {
    const unsigned b = st_cuda_blocks(n, 256, 4096);
    if (dt == ST_DTYPE_F32) fill_kernel<ST_DTYPE_F32><<<b, 256, 0, s>>>(p, n, seed);
    else if (dt == ST_DTYPE_F16) fill_kernel<ST_DTYPE_F16><<<b, 256, 0, s>>>(p, n, seed);
    else fill_kernel<ST_DTYPE_BF16><<<b, 256, 0, s>>>(p, n, seed);
    ST_CUDA_LAUNCH_CHECK();
    return ST_OK;
}

int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct timer { cudaEvent_t a, b; };

st_status timer_init(struct timer *t) {
    ST_CUDA_CHECK(cudaEventCreate(&t->a));
    ST_CUDA_CHECK(cudaEventCreate(&t->b));
    return ST_OK;
}
void timer_free(struct timer *t) {
    if (t->a) ST_CUDA_IGNORE(cudaEventDestroy(t->a));
    if (t->b) ST_CUDA_IGNORE(cudaEventDestroy(t->b));
}
st_status timer_ms(struct timer *t, cudaStream_t s, double *ms) {
    float f = 0.0f;
    ST_CUDA_CHECK(cudaEventRecord(t->b, s));
    ST_CUDA_CHECK(cudaEventSynchronize(t->b));
    ST_CUDA_CHECK(cudaEventElapsedTime(&f, t->a, t->b));
    *ms = f;
    return ST_OK;
}

const st_dtype prec_dtype[3] = {ST_DTYPE_F32, ST_DTYPE_F16, ST_DTYPE_BF16};

/* Device-to-device copy of `bytes`, bytes read + written per second, median
 * of reps after two warm-ups (samples holds reps doubles). */
st_status copy_roofline(st_backend *be, uint64_t bytes, int reps, struct timer *tm, double *samples, double *gbps) {
    const struct st_device_ops *ops = st_device_ops_cuda();
    void *a = NULL, *b = NULL;
    st_status st = ST_OK;
    if ((st = ops->alloc(be, bytes, ST_BUF_WORKSPACE, &a)) != ST_OK) goto done;
    if ((st = ops->alloc(be, bytes, ST_BUF_WORKSPACE, &b)) != ST_OK) goto done;
    if ((st = fill(a, ST_DTYPE_F32, (int64_t)(bytes / 4), 1, be->stream)) != ST_OK) goto done;
    for (int i = -2; i < reps; i++) {
        ST_CUDA_CHECK_GOTO(cudaEventRecord(tm->a, be->stream), st, done);
        ST_CUDA_CHECK_GOTO(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, be->stream), st, done);
        double ms;
        if ((st = timer_ms(tm, be->stream, &ms)) != ST_OK) goto done;
        if (i >= 0) samples[i] = 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
    }
    *gbps = median(samples, reps);
done:
    if (b) ops->dealloc(be, b);
    if (a) ops->dealloc(be, a);
    return st;
}

} // namespace

extern "C" st_status st_cuda_mem_info(int ordinal, uint64_t *free_bytes, uint64_t *total_bytes) {
    size_t fr = 0, tot = 0;
    ST_CUDA_CHECK(cudaSetDevice(ordinal));
    ST_CUDA_CHECK(cudaMemGetInfo(&fr, &tot));
    *free_bytes = fr;
    *total_bytes = tot;
    return ST_OK;
}

extern "C" st_status st_cuda_copy_bandwidth(int ordinal, uint64_t bytes, int reps, double *gbps) {
    struct st_backend_config cfg = {ST_PREC_F32, ST_ATTN_EAGER, ST_DTYPE_F32, 0, false, 0, 0, 0};
    st_backend *be = NULL;
    struct timer tm = {NULL, NULL};
    double *samples = NULL;
    if (!bytes) bytes = 256ull << 20;
    if (reps <= 0) reps = 20;
    *gbps = 0;
    st_status st = st_cuda_backend_init_ordinal(ordinal, &cfg, &be);
    if (st != ST_OK) return st_error_prefix("copy bandwidth cuda:%d", ordinal);
    samples = (double *)calloc((size_t)reps, sizeof *samples);
    if (!samples) { st = st_error_set(ST_ERR_NOMEM, "copy bandwidth: out of host memory"); goto done; }
    if ((st = timer_init(&tm)) != ST_OK) goto done;
    st = copy_roofline(be, bytes, reps, &tm, samples, gbps);
done:
    ST_CUDA_IGNORE(cudaSetDevice(ordinal));
    timer_free(&tm);
    free(samples);
    st_device_ops_cuda()->free(be);
    return st != ST_OK ? st_error_prefix("copy bandwidth cuda:%d", ordinal) : ST_OK;
}

extern "C" st_status st_cuda_probe_device(int ordinal, uint64_t bytes, int reps, struct st_perf *perf,
                                          struct st_cuda_probe_result *res) {
    const struct st_device_ops *ops = st_device_ops_cuda();
    struct st_backend_config cfg = {ST_PREC_F32, ST_ATTN_EAGER, ST_DTYPE_F32, 0, false, 0, 0, 0};
    struct st_cuda_probe_result r;
    memset(&r, 0, sizeof r);
    st_backend *be = NULL;
    struct timer tm = {NULL, NULL};
    void *x = NULL, *y = NULL, *wbuf = NULL;
    double *samples = NULL;
    st_status st;
    if (!bytes) bytes = 256ull << 20;
    if (reps <= 0) reps = 20;
    const int64_t R = 4096, C = 4096, NT_GEMM = 512;
    r.gemv_rows = R;
    r.gemv_cols = C;

    st = st_cuda_backend_init_ordinal(ordinal, &cfg, &be);
    if (st != ST_OK) return st_error_prefix("probe cuda:%d", ordinal);
    samples = (double *)calloc((size_t)reps, sizeof *samples);
    if (!samples) { st = st_error_set(ST_ERR_NOMEM, "probe: out of host memory"); goto done; }
    st = timer_init(&tm);
    if (st != ST_OK) goto done;
    cudaDeviceProp prop;
    ST_CUDA_CHECK_GOTO(cudaGetDeviceProperties(&prop, ordinal), st, done);

    /* ---- copy roofline ---- */
    if ((st = copy_roofline(be, bytes, reps, &tm, samples, &r.copy_gbps)) != ST_OK) goto done;

    /* ---- decode GEMV per weight dtype, rotating past L2 ---- */
    if ((st = ops->alloc(be, (size_t)NT_GEMM * C * 4, ST_BUF_WORKSPACE, &x)) != ST_OK) goto done;
    if ((st = ops->alloc(be, (size_t)NT_GEMM * R * 4, ST_BUF_WORKSPACE, &y)) != ST_OK) goto done;
    if ((st = fill(x, ST_DTYPE_F32, NT_GEMM * C, 2, be->stream)) != ST_OK) goto done;
    for (int p = 0; p < 3; p++) {
        const st_dtype dt = prec_dtype[p];
        const size_t wbytes = (size_t)R * C * (dt == ST_DTYPE_F32 ? 4 : 2);
        int sets = (int)((3 * (size_t)prop.l2CacheSize) / wbytes) + 2;
        if ((st = ops->alloc(be, wbytes * (size_t)sets, ST_BUF_WEIGHTS, &wbuf)) != ST_OK) goto done;
        if ((st = fill(wbuf, dt, R * C * sets, 3 + p, be->stream)) != ST_OK) goto done;
        for (int i = -2; i < reps; i++) {
            ST_CUDA_CHECK_GOTO(cudaEventRecord(tm.a, be->stream), st, done);
            for (int k = 0; k < sets; k++) {
                struct st_weight w = {(const uint8_t *)wbuf + (size_t)k * wbytes, dt, R, C};
                if ((st = ops->matmul(be, &w, NULL, (const float *)x, 1, (float *)y)) != ST_OK) goto done;
            }
            double ms;
            if ((st = timer_ms(&tm, be->stream, &ms)) != ST_OK) goto done;
            if (i >= 0) samples[i] = (double)wbytes * sets / (ms * 1e-3) / 1e9;
        }
        r.gemv_gbps[p] = median(samples, reps);
        r.gemv_vs_copy[p] = r.copy_gbps > 0 ? r.gemv_gbps[p] / r.copy_gbps : 0;

        /* prefill GEMM at the precision that matches the weights (fp32 math on the Maxwell path) */
        be->cfg.matmul_prec = (st_prec)p;
        const bool narrow_ok = dt == ST_DTYPE_F32 || (dt == ST_DTYPE_BF16 ? be->gemm_bf16 : be->gemm_f16);
        if (narrow_ok) {
            struct st_weight w = {wbuf, dt, R, C};
            if ((st = st_cuda_scratch_reserve(be, (size_t)NT_GEMM * C * 2)) != ST_OK) goto done;
            for (int i = -2; i < reps; i++) {
                ST_CUDA_CHECK_GOTO(cudaEventRecord(tm.a, be->stream), st, done);
                if ((st = ops->matmul(be, &w, NULL, (const float *)x, NT_GEMM, (float *)y)) != ST_OK) goto done;
                double ms;
                if ((st = timer_ms(&tm, be->stream, &ms)) != ST_OK) goto done;
                if (i >= 0) samples[i] = 2.0 * R * C * NT_GEMM / (ms * 1e-3) / 1e12;
            }
            r.gemm_tflops[p] = median(samples, reps);
        }
        be->cfg.matmul_prec = ST_PREC_F32;
        ops->dealloc(be, wbuf); wbuf = NULL;
    }

    /* ---- launch cost: a stream of tiny kernels, enqueue to completion ---- */
    {
        const int n_launch = 1000;
        for (int i = -1; i < reps; i++) {
            ST_CUDA_CHECK_GOTO(cudaStreamSynchronize(be->stream), st, done);
            const double t0 = st_time_s();
            for (int k = 0; k < n_launch; k++)
                if ((st = ops->add(be, (float *)y, (const float *)x, 1)) != ST_OK) goto done;
            ST_CUDA_CHECK_GOTO(cudaStreamSynchronize(be->stream), st, done);
            if (i >= 0) samples[i] = (st_time_s() - t0) * 1e6 / n_launch;
        }
        r.launch_us = median(samples, reps);
    }

    if (perf) {
        perf->mem_bw_gbps = r.copy_gbps;
        perf->launch_us = r.launch_us;
        perf->fp32_tflops = r.gemm_tflops[ST_PREC_F32];
        perf->fp16_tflops = r.gemm_tflops[ST_PREC_F16];
        perf->bf16_tflops = r.gemm_tflops[ST_PREC_BF16];
        for (int p = 0; p < 3; p++) perf->gemv_gbps[p] = r.gemv_gbps[p];
        perf->measured = true;
    }
    if (res) *res = r;
    st = ST_OK;
done:
    if (st != ST_OK) st_error_prefix("probe cuda:%d", ordinal);
    if (be) {
        ops->dealloc(be, x);
        ops->dealloc(be, y);
        ops->dealloc(be, wbuf);
        ST_CUDA_IGNORE(cudaSetDevice(be->ordinal));
        timer_free(&tm);
        ops->free(be);
    }
    free(samples);
    return st;
}

extern "C" st_status st_cuda_probe_link(int src_ordinal, int dst_ordinal, st_link_type type, uint64_t bytes, int reps,
                                        struct st_cuda_link_probe *out) {
    const struct st_device_ops *ops = st_device_ops_cuda();
    struct st_backend_config cfg = {ST_PREC_F32, ST_ATTN_EAGER, ST_DTYPE_F32, 0, false, 0, 0, 0};
    st_backend *src = NULL, *dst = NULL;
    st_link *l = NULL;
    void *a = NULL, *b = NULL;
    double *samples = NULL;
    st_status st;
    memset(out, 0, sizeof *out);
    if (!bytes) bytes = 64ull << 20;
    if (reps <= 0) reps = 20;
    if ((st = st_cuda_backend_init_ordinal(src_ordinal, &cfg, &src)) != ST_OK) goto done;
    if ((st = st_cuda_backend_init_ordinal(dst_ordinal, &cfg, &dst)) != ST_OK) goto done;
    samples = (double *)calloc((size_t)reps, sizeof *samples);
    if (!samples) { st = st_error_set(ST_ERR_NOMEM, "probe: out of host memory"); goto done; }
    st = st_cuda_link_init(type, src, dst, bytes, &l);
    if (st == ST_ERR_CONFIG || st == ST_ERR_NOT_BUILT || st == ST_ERR_UNSUPPORTED) {
        snprintf(out->reason, sizeof out->reason, "%s", st_last_error());
        char *nl = strchr(out->reason, '\n');
        if (nl) *nl = '\0';
        st_error_clear();
        st = ST_OK;
        goto done;
    }
    if (st != ST_OK) goto done;
    if ((st = ops->alloc(src, bytes, ST_BUF_WORKSPACE, &a)) != ST_OK) goto done;
    if ((st = ops->alloc(dst, bytes, ST_BUF_WORKSPACE, &b)) != ST_OK) goto done;
    ST_CUDA_CHECK_GOTO(cudaSetDevice(src_ordinal), st, done);
    if ((st = fill(a, ST_DTYPE_F32, (int64_t)(bytes / 4), 7, src->stream)) != ST_OK) goto done;
    if ((st = ops->sync(src)) != ST_OK) goto done;
    for (int pass = 0; pass < 2; pass++) {
        const size_t n = pass == 0 ? 4 : bytes;
        for (int i = -2; i < reps; i++) {
            if ((st = ops->sync(src)) != ST_OK || (st = ops->sync(dst)) != ST_OK) goto done;
            const double t0 = st_time_s();
            if ((st = st_link_send(l, a, b, n)) != ST_OK) goto done;
            if ((st = ops->sync(dst)) != ST_OK) goto done;
            if (i >= 0) samples[i] = st_time_s() - t0;
        }
        const double t = median(samples, reps);
        if (pass == 0) out->latency_us = t * 1e6;
        else out->bw_gbps = (double)bytes / t / 1e9;
    }
    out->available = true;
done:
    if (st != ST_OK) st_error_prefix("probe %s link cuda:%d -> cuda:%d", st_link_type_name(type), src_ordinal, dst_ordinal);
    if (l) st_link_free(l);
    if (src) { ops->dealloc(src, a); ops->free(src); }
    if (dst) { ops->dealloc(dst, b); ops->free(dst); }
    free(samples);
    return st;
}

extern "C" st_status st_cuda_h2d_bandwidth(int ordinal, uint64_t bytes, int reps, double *gbps) {
    void *host = NULL, *dev = NULL;
    cudaStream_t stream = NULL;
    cudaEvent_t a = NULL, b = NULL;
    double *samples = NULL;
    st_status st = ST_OK;
    if (!bytes) bytes = 256ull << 20;
    if (reps <= 0) reps = 10;
    *gbps = 0;
    ST_CUDA_CHECK(cudaSetDevice(ordinal));
    samples = (double *)calloc((size_t)reps, sizeof *samples);
    if (!samples) return st_error_set(ST_ERR_NOMEM, "h2d bandwidth: out of host memory");
    ST_CUDA_CHECK_GOTO(cudaHostAlloc(&host, bytes, cudaHostAllocPortable), st, done);
    memset(host, 0x5a, bytes);
    ST_CUDA_CHECK_GOTO(cudaMalloc(&dev, bytes), st, done);
    ST_CUDA_CHECK_GOTO(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), st, done);
    ST_CUDA_CHECK_GOTO(cudaEventCreate(&a), st, done);
    ST_CUDA_CHECK_GOTO(cudaEventCreate(&b), st, done);
    ST_CUDA_CHECK_GOTO(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream), st, done);   /* warm-up */
    for (int r = 0; r < reps; r++) {
        float ms = 0;
        ST_CUDA_CHECK_GOTO(cudaEventRecord(a, stream), st, done);
        ST_CUDA_CHECK_GOTO(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, stream), st, done);
        ST_CUDA_CHECK_GOTO(cudaEventRecord(b, stream), st, done);
        ST_CUDA_CHECK_GOTO(cudaEventSynchronize(b), st, done);
        ST_CUDA_CHECK_GOTO(cudaEventElapsedTime(&ms, a, b), st, done);
        samples[r] = ms;
    }
    *gbps = (double)bytes / (median(samples, reps) * 1e-3) / 1e9;
done:
    ST_CUDA_IGNORE(cudaSetDevice(ordinal));
    if (a) ST_CUDA_IGNORE(cudaEventDestroy(a));
    if (b) ST_CUDA_IGNORE(cudaEventDestroy(b));
    if (stream) ST_CUDA_IGNORE(cudaStreamDestroy(stream));
    if (dev) ST_CUDA_IGNORE(cudaFree(dev));
    if (host) ST_CUDA_IGNORE(cudaFreeHost(host));
    cudaGetLastError();
    free(samples);
    return st != ST_OK ? st_error_prefix("host-to-device bandwidth cuda:%d", ordinal) : ST_OK;
}
