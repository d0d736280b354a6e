/* bench/gpu_gemv.cu — decode GEMV bandwidth against the copy roofline.
 *
 * Measures, in one run on one GPU:
 *   copy     cudaMemcpyAsync device-to-device of 1 GiB; GB/s = (read + write) / t
 *   gemv     st_gemv_cuda (the backend's decode kernel) for every matrix of a
 *            Qwen2.5-7B layer (E=3584, F=18944, Hkv*D=512) plus lm_head, in bf16
 *            (and f16/f32 for the largest shape); GB/s = weight bytes / t
 *   layer    the seven GEMVs of a layer back to back (separate launches, and
 *            replayed from a CUDA graph as the decode step runs)
 * Weights rotate over several layer copies (> 1 GiB) so nothing is served
 * from L2; inputs are random, outputs checked against a double-precision host
 * dot product on sampled rows before anything is timed. Median of --reps.
 *
 *   gpu_gemv [--device N] [--reps R] [--json FILE] [--min-ratio 0.85]
 * Exit 1 when a result is wrong, 3 when the whole-layer GEMV misses
 * --min-ratio of the copy bandwidth (the target; 0 disables). */
#include "kernels/cuda/gemv.cuh"

#include <cmath>
#include <math.h>
#include <vector>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CK(stmt) do { cudaError_t e_ = (stmt); if (e_ != cudaSuccess) { \
    fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #stmt, cudaGetErrorString(e_)); exit(1); } } while (0)
#define CKS(stmt) do { st_status s_ = (stmt); if (s_ != ST_OK) { \
    fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #stmt, st_last_error()); exit(1); } } while (0)

namespace {

template <int DT>
__global__ void fill_kernel(void *p, int64_t n, uint32_t seed, float scale) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
        st_elem<DT>::store(p, i, scale * ((float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f));
    }
}
void fill(void *p, st_dtype dt, int64_t n, uint32_t seed, float scale, cudaStream_t s) {
    if (dt == ST_DTYPE_F32) fill_kernel<ST_DTYPE_F32><<<4096, 256, 0, s>>>(p, n, seed, scale);
    else if (dt == ST_DTYPE_F16) fill_kernel<ST_DTYPE_F16><<<4096, 256, 0, s>>>(p, n, seed, scale);
    else fill_kernel<ST_DTYPE_BF16><<<4096, 256, 0, s>>>(p, n, seed, scale);
    CK(cudaGetLastError());
}

int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmpd);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

float host_elem(const void *p, st_dtype dt, int64_t i) {
    if (dt == ST_DTYPE_F32) return ((const float *)p)[i];
    uint16_t b = ((const uint16_t *)p)[i];
    return dt == ST_DTYPE_F16 ? st_f16_to_f32(b) : st_bf16_to_f32(b);
}

struct shape { const char *name; int64_t rows, cols; };

size_t wbytes(const shape &s, st_dtype dt) { return (size_t)s.rows * s.cols * (dt == ST_DTYPE_F32 ? 4 : 2); }

} // namespace

int main(int argc, char **argv) {
    int ordinal = 0, reps = 30;
    double min_ratio = 0.0;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) ordinal = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--min-ratio") && i + 1 < argc) min_ratio = atof(argv[++i]);
        else { fprintf(stderr, "usage: %s [--device N] [--reps R] [--json FILE] [--min-ratio X]\n", argv[0]); return 2; }
    }
    if (reps < 3) reps = 3;
    CK(cudaSetDevice(ordinal));
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, ordinal));
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    double *smp = (double *)calloc((size_t)reps, sizeof(double));
    printf("device cuda:%d %s cc %d.%d, %d SMs, L2 %d MiB\n", ordinal, prop.name, prop.major, prop.minor,
           prop.multiProcessorCount, prop.l2CacheSize >> 20);

    /* ---- copy roofline ---- */
    const size_t cbytes = (size_t)1 << 30;
    void *ca, *cb;
    CK(cudaMalloc(&ca, cbytes));
    CK(cudaMalloc(&cb, cbytes));
    fill(ca, ST_DTYPE_F32, (int64_t)(cbytes / 4), 1, 1.0f, st);
    for (int i = -3; i < reps; i++) {
        CK(cudaEventRecord(e0, st));
        CK(cudaMemcpyAsync(cb, ca, cbytes, cudaMemcpyDeviceToDevice, st));
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (i >= 0) smp[i] = 2.0 * cbytes / (ms * 1e-3) / 1e9;
    }
    const double copy_gbps = median(smp, reps);
    CK(cudaFree(ca));
    CK(cudaFree(cb));
    printf("copy roofline (D2D, read+write): %.1f GB/s\n\n", copy_gbps);

    /* ---- a 7B layer's matrices ---- */
    const int64_t E = 3584, F = 18944, KV = 512, V = 152064;
    const shape layer[] = {{"q_proj", E, E}, {"k_proj", KV, E}, {"v_proj", KV, E}, {"o_proj", E, E},
                           {"gate_proj", F, E}, {"up_proj", F, E}, {"down_proj", E, F}};
    const int n_layer_mats = 7;
    const shape head = {"lm_head", V, E};
    float *x, *y;
    CK(cudaMalloc(&x, sizeof(float) * 8 * F));
    CK(cudaMalloc(&y, sizeof(float) * 8 * V));
    fill(x, ST_DTYPE_F32, 8 * F, 2, 1.0f, st);

    const size_t flush_bytes = (size_t)prop.l2CacheSize * 4;
    void *flush;
    CK(cudaMalloc(&flush, flush_bytes));
    FILE *jf = json ? fopen(json, "w") : NULL;
    if (json && !jf) { fprintf(stderr, "cannot write %s\n", json); return 1; }
    if (jf) fprintf(jf, "{\"device\": \"%s\", \"cc\": \"%d.%d\", \"copy_gbps\": %.2f, \"gemv\": [", prop.name, prop.major,
                    prop.minor, copy_gbps);
    bool wrong = false, first_json = true;
    printf("%-10s %-5s %7s %7s %3s %9s %9s %7s  %s\n", "matrix", "dtype", "rows", "cols", "tok", "us", "GB/s", "%copy",
           "shape (rows/warp, k-split)");

    const st_dtype dts[] = {ST_DTYPE_BF16, ST_DTYPE_F16, ST_DTYPE_F32};
    double layer_graph_ratio = 0.0;
    for (int di = 0; di < 3; di++) {
        const st_dtype dt = dts[di];
        size_t layer_bytes = 0;
        for (int m = 0; m < n_layer_mats; m++) layer_bytes += wbytes(layer[m], dt);
        const int copies = (int)(((size_t)3 << 30) / layer_bytes) < 2 ? 2 : (int)(((size_t)3 << 30) / layer_bytes);
        const int n_copies = dt == ST_DTYPE_BF16 ? copies : 2;
        uint8_t *wall;
        CK(cudaMalloc(&wall, layer_bytes * n_copies));
        fill(wall, dt, (int64_t)(layer_bytes * n_copies / (dt == ST_DTYPE_F32 ? 4 : 2)), 3 + di, 0.05f, st);
        size_t off[7];
        {
            size_t o = 0;
            for (int m = 0; m < n_layer_mats; m++) { off[m] = o; o += wbytes(layer[m], dt); }
        }
        /* correctness on sampled rows, 1 and 4 tokens */
        for (int m = 0; m < n_layer_mats; m++) {
            for (int nt = 1; nt <= 4; nt += 3) {
                const shape &s = layer[m];
                const void *w = wall + off[m];
                CKS(st_gemv_cuda(w, dt, s.rows, s.cols, NULL, x, nt, y, prop.multiProcessorCount, st));
                std::vector<float> hy((size_t)nt * s.rows), hx((size_t)nt * s.cols);
                CK(cudaMemcpyAsync(hy.data(), y, sizeof(float) * nt * s.rows, cudaMemcpyDeviceToHost, st));
                CK(cudaMemcpyAsync(hx.data(), x, sizeof(float) * nt * s.cols, cudaMemcpyDeviceToHost, st));
                std::vector<uint8_t> hw((size_t)s.cols * (dt == ST_DTYPE_F32 ? 4 : 2));
                CK(cudaStreamSynchronize(st));
                double num = 0, den = 0;
                for (int k = 0; k < 48; k++) {
                    const int64_t r = (int64_t)((k * 7919ull) % (uint64_t)s.rows);
                    CK(cudaMemcpy(hw.data(), (const uint8_t *)w + (size_t)r * hw.size(), hw.size(), cudaMemcpyDeviceToHost));
                    for (int t = 0; t < nt; t++) {
                        double ref = 0;
                        for (int64_t c = 0; c < s.cols; c++) ref += (double)host_elem(hw.data(), dt, c) * hx[(size_t)t * s.cols + c];
                        const double d = hy[(size_t)t * s.rows + r] - ref;
                        num += d * d;
                        den += ref * ref;
                        if (std::isnan(hy[(size_t)t * s.rows + r])) num = INFINITY;
                    }
                }
                const double rel = sqrt(num / den);
                if (!(rel < 1e-5)) {
                    printf("WRONG: %s %s tokens %d: rel error %.3e\n", s.name, st_dtype_name(dt), nt, rel);
                    wrong = true;
                }
            }
        }
        /* per matrix, batch 1 (and 4 tokens for the bf16 layer) */
        for (int m = 0; m < n_layer_mats; m++) {
            if (dt != ST_DTYPE_BF16 && strcmp(layer[m].name, "gate_proj") != 0) continue;
            for (int nt = 1; nt <= 4; nt += 3) {
                if (nt == 4 && dt != ST_DTYPE_BF16) continue;
                const shape &s = layer[m];
                for (int i = -3; i < reps; i++) {
                    /* one launch between L2 flushes: the weights come from memory */
                    CK(cudaMemsetAsync(flush, i & 0xff, flush_bytes, st));
                    CK(cudaEventRecord(e0, st));
                    const int c = (i + 3) % n_copies;
                    CKS(st_gemv_cuda(wall + (size_t)c * layer_bytes + off[m], dt, s.rows, s.cols, NULL, x, nt, y,
                                     prop.multiProcessorCount, st));
                    CK(cudaEventRecord(e1, st));
                    CK(cudaEventSynchronize(e1));
                    float ms;
                    CK(cudaEventElapsedTime(&ms, e0, e1));
                    if (i >= 0) smp[i] = ms * 1e3;
                }
                const double us = median(smp, reps);
                const double gbps = wbytes(s, dt) / (us * 1e-6) / 1e9;
                const st_gemv_shape gs = st_gemv_cuda_shape(wall + off[m], dt, s.rows, s.cols, x, nt, prop.multiProcessorCount);
                printf("%-10s %-5s %7lld %7lld %3d %9.2f %9.1f %6.1f%%  (%d, %d)%s\n", s.name, st_dtype_name(dt),
                       (long long)s.rows, (long long)s.cols, nt, us, gbps, 100 * gbps / copy_gbps, gs.rows_per_warp,
                       gs.k_split, gs.vectorized ? "" : " scalar");
                if (jf) fprintf(jf, "%s{\"matrix\": \"%s\", \"dtype\": \"%s\", \"rows\": %lld, \"cols\": %lld, \"tokens\": %d, "
                                "\"us\": %.3f, \"gbps\": %.2f, \"vs_copy\": %.4f}", first_json ? "" : ", ", s.name,
                                st_dtype_name(dt), (long long)s.rows, (long long)s.cols, nt, us, gbps, gbps / copy_gbps);
                first_json = false;
            }
        }
        /* launch-shape sweep (bf16, one token): is the heuristic's choice the best? */
        if (dt == ST_DTYPE_BF16) {
            printf("shape sweep (bf16, 1 token; GB/s by rows/warp r, k-split k, unroll u):\n");
            for (int m = 0; m < n_layer_mats; m++) {
                const shape &s = layer[m];
                const st_gemv_shape def = st_gemv_cuda_shape(wall + off[m], dt, s.rows, s.cols, x, 1, prop.multiProcessorCount);
                double best = 0, def_gbps = 0;
                st_gemv_shape best_s = def;
                printf("  %-10s", s.name);
                for (int r = 1; r <= 2; r++)
                    for (int k = 1; k <= 8; k *= 2)
                        for (int u = 2; u <= 8; u *= 2) {
                            st_gemv_shape sh = def;
                            sh.rows_per_warp = r; sh.k_split = k; sh.unroll = u;
                            for (int i = -3; i < reps; i++) {
                                CK(cudaMemsetAsync(flush, i & 0xff, flush_bytes, st));
                                CK(cudaEventRecord(e0, st));
                                CKS(st_gemv_cuda_shaped(wall + (size_t)((i + 3) % n_copies) * layer_bytes + off[m], dt,
                                                        s.rows, s.cols, NULL, x, 1, y, &sh, st));
                                CK(cudaEventRecord(e1, st));
                                CK(cudaEventSynchronize(e1));
                                float ms;
                                CK(cudaEventElapsedTime(&ms, e0, e1));
                                if (i >= 0) smp[i] = ms * 1e3;
                            }
                            const double gbps = wbytes(s, dt) / (median(smp, reps) * 1e-6) / 1e9;
                            if (gbps > best) { best = gbps; best_s = sh; }
                            if (r == def.rows_per_warp && k == def.k_split && u == def.unroll) def_gbps = gbps;
                        }
                printf(" default (r%d k%d u%d) %7.1f GB/s | best (r%d k%d u%d) %7.1f GB/s = %5.1f%% of copy\n",
                       def.rows_per_warp, def.k_split, def.unroll, def_gbps, best_s.rows_per_warp, best_s.k_split,
                       best_s.unroll, best, 100 * best / copy_gbps);
                if (jf) fprintf(jf, ", {\"matrix\": \"%s\", \"sweep\": true, \"default_gbps\": %.2f, \"best_gbps\": %.2f, "
                                "\"best_rows_per_warp\": %d, \"best_k_split\": %d, \"best_unroll\": %d}", s.name, def_gbps, best,
                                best_s.rows_per_warp, best_s.k_split, best_s.unroll);
            }
        }
        /* the whole layer: 7 launches per layer copy, plain and as a graph */
        for (int graph = 0; graph < 2; graph++) {
            cudaGraphExec_t exec = NULL;
            if (graph) {
                cudaGraph_t g;
                CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
                for (int c = 0; c < n_copies; c++)
                    for (int m = 0; m < n_layer_mats; m++)
                        CKS(st_gemv_cuda(wall + (size_t)c * layer_bytes + off[m], dt, layer[m].rows, layer[m].cols, NULL, x, 1,
                                         y, prop.multiProcessorCount, st));
                CK(cudaStreamEndCapture(st, &g));
                CK(cudaGraphInstantiateWithFlags(&exec, g, 0));
                CK(cudaGraphDestroy(g));
            }
            for (int i = -3; i < reps; i++) {
                CK(cudaEventRecord(e0, st));
                if (graph) CK(cudaGraphLaunch(exec, st));
                else
                    for (int c = 0; c < n_copies; c++)
                        for (int m = 0; m < n_layer_mats; m++)
                            CKS(st_gemv_cuda(wall + (size_t)c * layer_bytes + off[m], dt, layer[m].rows, layer[m].cols, NULL,
                                             x, 1, y, prop.multiProcessorCount, st));
                CK(cudaEventRecord(e1, st));
                CK(cudaEventSynchronize(e1));
                float ms;
                CK(cudaEventElapsedTime(&ms, e0, e1));
                if (i >= 0) smp[i] = ms * 1e3 / n_copies;
            }
            const double us = median(smp, reps);
            const double gbps = layer_bytes / (us * 1e-6) / 1e9;
            printf("%-10s %-5s %7s %7s %3d %9.2f %9.1f %6.1f%%  %s\n", "LAYER", st_dtype_name(dt), "7 mats", "", 1, us, gbps,
                   100 * gbps / copy_gbps, graph ? "CUDA graph" : "launches");
            if (jf) fprintf(jf, ", {\"matrix\": \"layer%s\", \"dtype\": \"%s\", \"tokens\": 1, \"us\": %.3f, \"gbps\": %.2f, "
                            "\"vs_copy\": %.4f}", graph ? "_graph" : "", st_dtype_name(dt), us, gbps, gbps / copy_gbps);
            if (graph && dt == ST_DTYPE_BF16) layer_graph_ratio = gbps / copy_gbps;
            if (exec) CK(cudaGraphExecDestroy(exec));
        }
        CK(cudaFree(wall));
        printf("\n");
    }
    /* lm_head (bf16), rotated over 2 copies */
    {
        const size_t hb = wbytes(head, ST_DTYPE_BF16);
        uint8_t *hw;
        CK(cudaMalloc(&hw, hb * 2));
        fill(hw, ST_DTYPE_BF16, (int64_t)(hb * 2 / 2), 9, 0.05f, st);
        for (int i = -3; i < reps; i++) {
            CK(cudaEventRecord(e0, st));
            for (int c = 0; c < 2; c++) CKS(st_gemv_cuda(hw + c * hb, ST_DTYPE_BF16, head.rows, head.cols, NULL, x, 1, y,
                                                         prop.multiProcessorCount, st));
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (i >= 0) smp[i] = ms * 1e3 / 2;
        }
        const double us = median(smp, reps), gbps = hb / (us * 1e-6) / 1e9;
        printf("%-10s %-5s %7lld %7lld %3d %9.2f %9.1f %6.1f%%\n", head.name, "bf16", (long long)head.rows,
               (long long)head.cols, 1, us, gbps, 100 * gbps / copy_gbps);
        if (jf) fprintf(jf, ", {\"matrix\": \"lm_head\", \"dtype\": \"bf16\", \"tokens\": 1, \"us\": %.3f, \"gbps\": %.2f, "
                        "\"vs_copy\": %.4f}", us, gbps, gbps / copy_gbps);
        CK(cudaFree(hw));
    }
    if (jf) {
        fprintf(jf, "], \"layer_graph_vs_copy_bf16\": %.4f, \"correct\": %s}\n", layer_graph_ratio, wrong ? "false" : "true");
        fclose(jf);
    }
    printf("\nbf16 7B layer (graph) reaches %.1f%% of the copy roofline (target >= %.0f%%)\n", 100 * layer_graph_ratio,
           100 * min_ratio);
    CK(cudaFree(x));
    CK(cudaFree(y));
    CK(cudaFree(flush));
    free(smp);
    if (wrong) { printf("RESULT: WRONG OUTPUT\n"); return 1; }
    if (min_ratio > 0 && layer_graph_ratio < min_ratio) { printf("RESULT: below target\n"); return 3; }
    printf("RESULT: ok\n");
    return 0;
}
