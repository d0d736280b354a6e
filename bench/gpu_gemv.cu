/* bench/gpu_gemv.cu — decode GEMV bandwidth against the copy roofline.
 *
 * Measures, in one run on one GPU:
 *   copy     cudaMemcpyAsync device-to-device of 1 GiB; GB/s = (read + write) / t
 *   gemv     st_gemv_cuda (the backend's decode kernel) for every matrix of a
 *            Qwen2.5-7B layer (E=3584, F=18944, Hkv*D=512) plus lm_head, in bf16
 *            (and f16/f32 for the largest shape); GB/s = weight bytes / t
 *   layer    the seven GEMVs of a layer back to back (separate launches, and
 *            replayed from a CUDA graph as the decode step runs)
 *   fused    the layer as the engine's decode step issues it: q/k/v in one
 *            grouped launch (st_gemv_multi_cuda), o, gate/up with the SwiGLU
 *            epilogue in one launch (st_gemv_swiglu_cuda), down: 4 launches
 *   step     the 7B decode step's GEMVs: 28 fused layers + lm_head, against the
 *            roofline of the same bytes at the copy bandwidth
 * Weights rotate over several layer copies (> 1 GiB) so nothing is served
 * from L2; inputs are random, outputs checked against a double-precision host
 * dot product on sampled rows before anything is timed. Median of --reps.
 *
 *   gpu_gemv [--device N] [--reps R] [--json FILE] [--min-ratio 0.85]
 * Exit 1 when a result is wrong, 3 when the fused bf16 layer (graph) misses
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

/* sum_c W[r][c] x[c] in double, the row fetched from the device */
double host_dot(const void *w, st_dtype dt, int64_t r, int64_t cols, const float *hx) {
    const size_t esz = dt == ST_DTYPE_F32 ? 4 : 2;
    std::vector<uint8_t> hw((size_t)cols * esz);
    CK(cudaMemcpy(hw.data(), (const uint8_t *)w + (size_t)r * hw.size(), hw.size(), cudaMemcpyDeviceToHost));
    double s = 0;
    for (int64_t c = 0; c < cols; c++) s += (double)host_elem(hw.data(), dt, c) * hx[c];
    return s;
}

/* ||got - ref|| / ||ref|| over 48 sampled rows; got is the device output (rows) */
double sampled_rel(const float *dev_y, int64_t rows, const std::vector<double> &ref, const std::vector<int64_t> &idx) {
    std::vector<float> hy((size_t)rows);
    CK(cudaMemcpy(hy.data(), dev_y, sizeof(float) * rows, cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    for (size_t k = 0; k < idx.size(); k++) {
        const double d = hy[(size_t)idx[k]] - ref[k];
        num += d * d;
        den += ref[k] * ref[k];
        if (std::isnan(hy[(size_t)idx[k]])) num = INFINITY;
    }
    return sqrt(num / den);
}
std::vector<int64_t> sample_rows(int64_t rows) {
    std::vector<int64_t> v;
    for (int k = 0; k < 48; k++) v.push_back((int64_t)((k * 7919ull + 13) % (uint64_t)rows));
    v.push_back(rows - 1);
    return v;
}

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
    double layer_graph_ratio = 0.0, fused_graph_ratio = 0.0, fused_graph_us_bf16 = 0.0;
    size_t layer_bytes_bf16 = 0;
    const int sms = prop.multiProcessorCount;
    /* median us of launch(i) over reps after 3 warm-ups; flush: an L2-sized memset before each */
    auto time_us = [&](bool flush_l2, auto launch) {
        for (int i = -3; i < reps; i++) {
            if (flush_l2) CK(cudaMemsetAsync(flush, i & 0xff, flush_bytes, st));
            CK(cudaEventRecord(e0, st));
            launch(i);
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (i >= 0) smp[i] = ms * 1e3;
        }
        return median(smp, reps);
    };
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
                CKS(st_gemv_cuda(w, dt, s.rows, s.cols, NULL, x, NULL, nt, y, prop.multiProcessorCount, st));
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
                    CKS(st_gemv_cuda(wall + (size_t)c * layer_bytes + off[m], dt, s.rows, s.cols, NULL, x, NULL, nt, y,
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
                char all[512];
                int all_len = 0;
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
                                                        s.rows, s.cols, NULL, x, NULL, 1, y, &sh, st));
                                CK(cudaEventRecord(e1, st));
                                CK(cudaEventSynchronize(e1));
                                float ms;
                                CK(cudaEventElapsedTime(&ms, e0, e1));
                                if (i >= 0) smp[i] = ms * 1e3;
                            }
                            const double gbps = wbytes(s, dt) / (median(smp, reps) * 1e-6) / 1e9;
                            if (all_len < (int)sizeof all - 24)
                                all_len += u == 2 ? snprintf(all + all_len, sizeof all - (size_t)all_len, "%s k%d:%.0f",
                                                             k > 1 ? "" : r == 1 ? "r1" : " | r2", k, gbps)
                                                  : snprintf(all + all_len, sizeof all - (size_t)all_len, "/%.0f", gbps);
                            if (gbps > best) { best = gbps; best_s = sh; }
                            if (r == def.rows_per_warp && k == def.k_split && u == def.unroll) def_gbps = gbps;
                        }
                printf(" default (r%d k%d u%d) %7.1f GB/s | best (r%d k%d u%d) %7.1f GB/s = %5.1f%% of copy\n",
                       def.rows_per_warp, def.k_split, def.unroll, def_gbps, best_s.rows_per_warp, best_s.k_split,
                       best_s.unroll, best, 100 * best / copy_gbps);
                printf("      GB/s u2/u4/u8 by r, k: %s\n", all);
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
                        CKS(st_gemv_cuda(wall + (size_t)c * layer_bytes + off[m], dt, layer[m].rows, layer[m].cols, NULL, x, NULL, 1,
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
                                             x, NULL, 1, y, prop.multiProcessorCount, st));
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
        /* the engine's decode layer: q/k/v grouped, o, gate/up + SwiGLU, down */
        float *yq = y, *yk = y + E, *yv = y + E + KV, *yff = y + 2 * E + 2 * KV;
        auto fused_layer = [&](const uint8_t *b) {
            const st_gemv_job qkv[3] = {{b + off[0], NULL, yq, E}, {b + off[1], NULL, yk, KV}, {b + off[2], NULL, yv, KV}};
            CKS(st_gemv_multi_cuda(qkv, 3, dt, E, x, NULL, 1, sms, st));
            CKS(st_gemv_cuda(b + off[3], dt, E, E, NULL, x, NULL, 1, y, sms, st));
            CKS(st_gemv_swiglu_cuda(b + off[4], NULL, b + off[5], NULL, dt, F, E, x, NULL, 1, yff, sms, st));
            CKS(st_gemv_cuda(b + off[6], dt, E, F, NULL, x, NULL, 1, y, sms, st));
        };
        {   /* correctness of the grouped launches on sampled rows */
            fill(y, ST_DTYPE_F32, 2 * E + 2 * KV + F, 77, 1.0f, st);
            const st_gemv_job qkv[3] = {{wall + off[0], NULL, yq, E}, {wall + off[1], NULL, yk, KV}, {wall + off[2], NULL, yv, KV}};
            CKS(st_gemv_multi_cuda(qkv, 3, dt, E, x, NULL, 1, sms, st));
            CKS(st_gemv_swiglu_cuda(wall + off[4], NULL, wall + off[5], NULL, dt, F, E, x, NULL, 1, yff, sms, st));
            CK(cudaStreamSynchronize(st));
            std::vector<float> hx((size_t)F);
            CK(cudaMemcpy(hx.data(), x, sizeof(float) * F, cudaMemcpyDeviceToHost));
            const char *names[4] = {"grouped q", "grouped k", "grouped v", "gate/up+swiglu"};
            float *outs[4] = {yq, yk, yv, yff};
            const int64_t rows_of[4] = {E, KV, KV, F};
            for (int m = 0; m < 4; m++) {
                const std::vector<int64_t> idx = sample_rows(rows_of[m]);
                std::vector<double> ref;
                for (int64_t r : idx) {
                    if (m < 3) { ref.push_back(host_dot(wall + off[m], dt, r, E, hx.data())); continue; }
                    const double g = host_dot(wall + off[4], dt, r, E, hx.data()), u = host_dot(wall + off[5], dt, r, E, hx.data());
                    ref.push_back(g / (1.0 + exp(-g)) * u);
                }
                const double rel = sampled_rel(outs[m], rows_of[m], ref, idx);
                if (!(rel < 1e-5)) {
                    printf("WRONG: %s %s: rel error %.3e\n", names[m], st_dtype_name(dt), rel);
                    wrong = true;
                }
            }
        }
        if (dt == ST_DTYPE_BF16) {
            /* shape sweep of the grouped launches */
            const size_t qkv_bytes = wbytes(layer[0], dt) + 2 * wbytes(layer[1], dt), gu_bytes = 2 * wbytes(layer[4], dt);
            const st_gemv_job j3[3] = {{wall + off[0], NULL, yq, E}, {wall + off[1], NULL, yk, KV}, {wall + off[2], NULL, yv, KV}};
            for (int which = 0; which < 2; which++) {
                const st_gemv_shape def = which == 0 ? st_gemv_multi_cuda_shape(j3, 3, dt, E, x, 1, sms)
                                                     : st_gemv_swiglu_cuda_shape(wall + off[4], wall + off[5], dt, F, E, x, 1, sms);
                double best = 0, def_gbps = 0;
                st_gemv_shape best_s = def;
                printf("  %-14s", which == 0 ? "qkv grouped" : "gate/up+swiglu");
                for (int r = 1; r <= (which == 0 ? 2 : 1); r++)
                    for (int k = 1; k <= (which == 0 ? 8 : 4); k *= 2)
                        for (int u = 2; u <= 8; u *= 2) {
                            st_gemv_shape sh = def;
                            sh.rows_per_warp = r; sh.k_split = k; sh.unroll = u;
                            const double us = time_us(true, [&](int i) {
                                const uint8_t *b = wall + (size_t)((i + 3) % n_copies) * layer_bytes;
                                if (which == 0) {
                                    const st_gemv_job jj[3] = {{b + off[0], NULL, yq, E}, {b + off[1], NULL, yk, KV},
                                                               {b + off[2], NULL, yv, KV}};
                                    CKS(st_gemv_multi_cuda_shaped(jj, 3, dt, E, x, NULL, 1, &sh, st));
                                } else {
                                    CKS(st_gemv_swiglu_cuda_shaped(b + off[4], NULL, b + off[5], NULL, dt, F, E, x, NULL, 1, yff, &sh, st));
                                }
                            });
                            const double gbps = (which == 0 ? qkv_bytes : gu_bytes) / (us * 1e-6) / 1e9;
                            if (gbps > best) { best = gbps; best_s = sh; }
                            if (r == def.rows_per_warp && k == def.k_split && u == def.unroll) def_gbps = gbps;
                        }
                printf(" default (r%d k%d u%d) %7.1f GB/s | best (r%d k%d u%d) %7.1f GB/s = %5.1f%% of copy\n",
                       def.rows_per_warp, def.k_split, def.unroll, def_gbps, best_s.rows_per_warp, best_s.k_split,
                       best_s.unroll, best, 100 * best / copy_gbps);
                if (jf) fprintf(jf, ", {\"matrix\": \"%s\", \"sweep\": true, \"default_gbps\": %.2f, \"best_gbps\": %.2f, "
                                "\"best_rows_per_warp\": %d, \"best_k_split\": %d, \"best_unroll\": %d}",
                                which == 0 ? "qkv_grouped" : "gate_up_swiglu", def_gbps, best, best_s.rows_per_warp,
                                best_s.k_split, best_s.unroll);
            }
        }
        for (int graph = 0; graph < 2; graph++) {
            cudaGraphExec_t exec = NULL;
            if (graph) {
                cudaGraph_t g;
                CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
                for (int c = 0; c < n_copies; c++) fused_layer(wall + (size_t)c * layer_bytes);
                CK(cudaStreamEndCapture(st, &g));
                CK(cudaGraphInstantiateWithFlags(&exec, g, 0));
                CK(cudaGraphDestroy(g));
            }
            const double us = time_us(false, [&](int) {
                if (graph) CK(cudaGraphLaunch(exec, st));
                else
                    for (int c = 0; c < n_copies; c++) fused_layer(wall + (size_t)c * layer_bytes);
            }) / n_copies;
            const double gbps = layer_bytes / (us * 1e-6) / 1e9;
            printf("%-10s %-5s %7s %7s %3d %9.2f %9.1f %6.1f%%  %s\n", "FUSED", st_dtype_name(dt), "4 lnch", "", 1, us, gbps,
                   100 * gbps / copy_gbps, graph ? "CUDA graph (qkv grouped, o, gate/up+swiglu, down)" : "launches");
            if (jf) fprintf(jf, ", {\"matrix\": \"fused_layer%s\", \"dtype\": \"%s\", \"tokens\": 1, \"us\": %.3f, "
                            "\"gbps\": %.2f, \"vs_copy\": %.4f}", graph ? "_graph" : "", st_dtype_name(dt), us, gbps,
                            gbps / copy_gbps);
            if (graph && dt == ST_DTYPE_BF16) {
                fused_graph_ratio = gbps / copy_gbps;
                fused_graph_us_bf16 = us;
                layer_bytes_bf16 = layer_bytes;
            }
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
            for (int c = 0; c < 2; c++) CKS(st_gemv_cuda(hw + c * hb, ST_DTYPE_BF16, head.rows, head.cols, NULL, x, NULL, 1, y,
                                                         prop.multiProcessorCount, st));
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (i >= 0) smp[i] = ms * 1e3 / 2;
        }
        const double us = median(smp, reps), gbps = hb / (us * 1e-6) / 1e9;
        const st_gemv_shape hs = st_gemv_cuda_shape(hw, ST_DTYPE_BF16, head.rows, head.cols, x, 1, sms);
        printf("%-10s %-5s %7lld %7lld %3d %9.2f %9.1f %6.1f%%  (%d, %d) u%d\n", head.name, "bf16", (long long)head.rows,
               (long long)head.cols, 1, us, gbps, 100 * gbps / copy_gbps, hs.rows_per_warp, hs.k_split, hs.unroll);
        if (jf) fprintf(jf, ", {\"matrix\": \"lm_head\", \"dtype\": \"bf16\", \"tokens\": 1, \"us\": %.3f, \"gbps\": %.2f, "
                        "\"vs_copy\": %.4f}", us, gbps, gbps / copy_gbps);
        printf("  lm_head sweep:");
        for (int r = 1; r <= 2; r++)
            for (int k = 1; k <= 8; k *= 8)
                for (int u = 2; u <= 4; u *= 2) {
                    st_gemv_shape sh = hs;
                    sh.rows_per_warp = r; sh.k_split = k; sh.unroll = u;
                    const double sus = time_us(false, [&](int i) {
                        CKS(st_gemv_cuda_shaped(hw + (size_t)(i & 1) * hb, ST_DTYPE_BF16, head.rows, head.cols, NULL, x, NULL, 1, y,
                                                &sh, st));
                    });
                    printf(" r%dk%du%d %.1f%%", r, k, u, 100 * (hb / (sus * 1e-6) / 1e9) / copy_gbps);
                }
        printf("\n");
        CK(cudaFree(hw));
        /* the decode step's GEMVs: 28 layers as the engine issues them + lm_head */
        const int n_layers = 28;
        const double step_us = n_layers * fused_graph_us_bf16 + us;
        const double step_bytes = (double)n_layers * layer_bytes_bf16 + (double)hb;
        const double roof_us = step_bytes / (copy_gbps * 1e3);
        printf("\n7B decode step estimate (GEMVs only, bf16): %d x %.1f us (fused layer, graph) + lm_head %.1f us = %.3f ms"
               " = %.0f tok/s\n  roofline %.3f ms (%.2f GB at %.0f GB/s copy) -> GEMVs at %.1f%% of it; the 80%% target"
               " (%.3f ms) leaves %.3f ms for attention, norms, rope, adds, argmax\n",
               n_layers, fused_graph_us_bf16, us, step_us / 1e3, 1e6 / step_us, roof_us / 1e3, step_bytes / 1e9, copy_gbps,
               100 * roof_us / step_us, roof_us / 0.8 / 1e3, (roof_us / 0.8 - step_us) / 1e3);
        if (jf) fprintf(jf, ", {\"matrix\": \"decode_step_gemv_estimate\", \"dtype\": \"bf16\", \"us\": %.3f, "
                        "\"roofline_us\": %.3f, \"vs_roofline\": %.4f}", step_us, roof_us, roof_us / step_us);
    }
    if (jf) {
        fprintf(jf, "], \"layer_graph_vs_copy_bf16\": %.4f, \"fused_layer_graph_vs_copy_bf16\": %.4f, \"correct\": %s}\n",
                layer_graph_ratio, fused_graph_ratio, wrong ? "false" : "true");
        fclose(jf);
    }
    printf("\nbf16 7B layer (graph): 7 GEMVs %.1f%%, fused (4 launches) %.1f%% of the copy roofline (target >= %.0f%%)\n",
           100 * layer_graph_ratio, 100 * fused_graph_ratio, 100 * min_ratio);
    CK(cudaFree(x));
    CK(cudaFree(y));
    CK(cudaFree(flush));
    free(smp);
    if (wrong) { printf("RESULT: WRONG OUTPUT\n"); return 1; }
    if (min_ratio > 0 && fused_graph_ratio < min_ratio) { printf("RESULT: below target\n"); return 3; }
    printf("RESULT: ok\n");
    return 0;
}
