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
 *   quant    the same layer in every quantized type (and a Q4_K_M layer: q, k,
 *            o, gate, up Q4_K; v, down Q6_K), both kernels: the dp4a one (x
 *            quantized to 8 bits per 32 by its own launch, as the backend does
 *            before each matmul) and the fp32 one (the Maxwell path): per
 *            matrix (gate_proj, down_proj, lm_head), a k-split sweep, and the
 *            engine's fused layer in a CUDA graph with the x quantizations;
 *            GB/s = quantized weight bytes / t. Ends with the 7B Q4_K_M decode
 *            step's GEMVs (14 layers with Q6_K v/down, 14 without, Q6_K lm_head).
 * Weights rotate over several layer copies (> 1 GiB) so nothing is served
 * from L2; inputs are random, outputs checked against a double-precision host
 * dot product on sampled rows before anything is timed (quantized rows
 * dequantized by model/dtype.c; the dp4a kernel to 1e-2, all others 1e-5).
 * Median of --reps.
 *
 *   gpu_gemv [--device N] [--reps R] [--json FILE] [--min-ratio 0.85]
 *            [--no-float] [--quant q4_k,q6_k,...|all|none]
 * Exit 1 when a result is wrong, 3 when the fused bf16 layer (graph) misses
 * --min-ratio of the copy bandwidth (the target; 0 disables). */
#include "kernels/cuda/gemv.cuh"
#include "kernels/cuda/quant.cuh"

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
/* body(c) for c = 0 .. n - 1 captured on st as one CUDA graph, instantiated */
template <typename F> cudaGraphExec_t capture_graph(cudaStream_t st, int n, F body) {
    cudaGraph_t g;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int c = 0; c < n; c++) body(c);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiateWithFlags(&exec, g, 0));
    CK(cudaGraphDestroy(g));
    return exec;
}

std::vector<int64_t> sample_rows(int64_t rows) {
    std::vector<int64_t> v;
    for (int k = 0; k < 48; k++) v.push_back((int64_t)((k * 7919ull + 13) % (uint64_t)rows));
    v.push_back(rows - 1);
    return v;
}

/* ---- quantized weights ------------------------------------------------------------ */

/* random blocks: every byte random, the f16 scale fields set to small finite
 * values (d / dmin at 0 and 2, Q6_K's d at 208) */
__global__ void qfill_kernel(uint8_t *p, size_t bytes, int bb, int off_d, int off_m, uint32_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < bytes; i += (size_t)gridDim.x * blockDim.x) {
        uint32_t h = (uint32_t)i * 2654435761u ^ seed;
        h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
        const int k = (int)(i % (size_t)bb);
        uint8_t v = (uint8_t)h;
        /* f16 in [2^-12, 2^-9): exponent 3..5, random mantissa */
        if (k == off_d || k == off_m) v = (uint8_t)h;
        if (k == off_d + 1 || k == off_m + 1) v = (uint8_t)(0x0c | (h & 0x03));
        p[i] = v;
    }
}
void qfill(void *p, st_dtype t, size_t bytes, uint32_t seed, cudaStream_t s) {
    const int off_d = t == ST_DTYPE_Q6_K ? 208 : 0;
    const int off_m = (t == ST_DTYPE_Q4_1 || t == ST_DTYPE_Q5_1 || t == ST_DTYPE_Q4_K || t == ST_DTYPE_Q5_K) ? 2 : off_d;
    qfill_kernel<<<4096, 256, 0, s>>>((uint8_t *)p, bytes, (int)st_dtype_block_bytes(t), off_d, off_m, seed);
    CK(cudaGetLastError());
}

struct qbench {
    cudaStream_t st;
    cudaEvent_t e0, e1;
    double *smp;
    int reps;
    double copy_gbps;
    float *x, *y;
    void *flush;
    size_t flush_bytes;
    int sms;
    FILE *jf;
    bool *first_json;
};

template <typename F> double qtime(const qbench &q, bool flush_l2, F launch) {
    for (int i = -3; i < q.reps; i++) {
        if (flush_l2) CK(cudaMemsetAsync(q.flush, i & 0xff, q.flush_bytes, q.st));
        CK(cudaEventRecord(q.e0, q.st));
        launch(i);
        CK(cudaEventRecord(q.e1, q.st));
        CK(cudaEventSynchronize(q.e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, q.e0, q.e1));
        if (i >= 0) q.smp[i] = ms * 1e3;
    }
    return median(q.smp, q.reps);
}

/* rel error of a GEMV output on sampled rows against double dots of the
 * dtype.c-dequantized rows */
double q_check(const void *w, st_dtype t, int64_t rows, int64_t cols, const float *dy, const float *dx) {
    const std::vector<int64_t> idx = sample_rows(rows);
    const size_t rb = st_dtype_row_bytes(t, cols);
    std::vector<uint8_t> hw(rb);
    std::vector<float> row((size_t)cols), hx((size_t)cols);
    CK(cudaMemcpy(hx.data(), dx, sizeof(float) * cols, cudaMemcpyDeviceToHost));
    std::vector<double> ref;
    for (int64_t r : idx) {
        CK(cudaMemcpy(hw.data(), (const uint8_t *)w + (size_t)r * rb, rb, cudaMemcpyDeviceToHost));
        CKS(st_dtype_to_f32(t, hw.data(), row.data(), cols));
        double s = 0;
        for (int64_t c = 0; c < cols; c++) s += (double)row[(size_t)c] * hx[(size_t)c];
        ref.push_back(s);
    }
    return sampled_rel(dy, rows, ref, idx);
}

/* name is one of the comma-separated items of list, or list is "all" */
bool in_list(const char *list, const char *name) {
    if (!strcmp(list, "all")) return true;
    const size_t n = strlen(name);
    for (const char *s = list; *s;) {
        const char *e = strchr(s, ',');
        const size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == n && !strncmp(s, name, n)) return true;
        if (!e) break;
        s = e + 1;
    }
    return false;
}

/* returns false when an output was wrong */
bool bench_quant(const qbench &q, const char *list) {
    const int64_t E = 3584, F = 18944, KV = 512, V = 152064;
    const shape layer[] = {{"q_proj", E, E}, {"k_proj", KV, E}, {"v_proj", KV, E}, {"o_proj", E, E},
                           {"gate_proj", F, E}, {"up_proj", F, E}, {"down_proj", E, F}};
    const char *names[] = {"q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "q4_k", "q5_k", "q6_k", "q4_k_m"};
    const st_dtype single[] = {ST_DTYPE_Q8_0, ST_DTYPE_Q4_0, ST_DTYPE_Q4_1, ST_DTYPE_Q5_0, ST_DTYPE_Q5_1,
                               ST_DTYPE_IQ4_NL, ST_DTYPE_Q4_K, ST_DTYPE_Q5_K, ST_DTYPE_Q6_K};
    const cudaStream_t st = q.st;
    bool ok = true;
    double layer_us[2] = {0, 0};   /* Q4_K_M: [0] all Q4_K, [1] v/down Q6_K (dp4a, graph) */
    void *xq;
    CK(cudaMalloc(&xq, st_gemv_xq_bytes(8, F)));
    float *yq = q.y, *yk = q.y + E, *yv = q.y + E + KV, *yff = q.y + 2 * E + 2 * KV;
    printf("\nquantized weights (7B layer shapes; GB/s of quantized bytes; dp4a: x quantized to 8 bits per 32, "
           "fp32: the Maxwell path)\n");
    printf("%-10s %-7s %-5s %7s %7s %9s %9s %7s  %s\n", "matrix", "type", "path", "rows", "cols", "us", "GB/s", "%copy",
           "k-split");
    for (int ti = 0; ti < 11; ti++) {
        /* ti 10: the Q4_K_M layer without Q6_K (the other half of a 7B file's layers) */
        const bool mix = ti >= 9;
        const char *name = ti == 10 ? "q4_k_m/q4" : names[ti];
        if (!in_list(list, ti == 10 ? "q4_k_m" : names[ti])) continue;
        st_dtype dt[7];
        for (int m = 0; m < 7; m++) dt[m] = mix ? ST_DTYPE_Q4_K : single[ti];
        if (ti == 9) dt[2] = dt[6] = ST_DTYPE_Q6_K;
        size_t off[8];
        off[0] = 0;
        for (int m = 0; m < 7; m++) off[m + 1] = off[m] + ((st_dtype_row_bytes(dt[m], layer[m].cols) * layer[m].rows + 255) & ~(size_t)255);
        const size_t layer_bytes = off[7];
        size_t mbytes[7];
        for (int m = 0; m < 7; m++) mbytes[m] = st_dtype_row_bytes(dt[m], layer[m].cols) * layer[m].rows;
        size_t wsum = 0;
        for (int m = 0; m < 7; m++) wsum += mbytes[m];
        int n_copies = (int)(((size_t)2 << 30) / layer_bytes);
        if (n_copies < 2) n_copies = 2;
        uint8_t *wall;
        CK(cudaMalloc(&wall, layer_bytes * n_copies));
        for (int c = 0; c < n_copies; c++)
            for (int m = 0; m < 7; m++) qfill(wall + (size_t)c * layer_bytes + off[m], dt[m], mbytes[m], 100u * ti + 7u * m + c, st);
        CK(cudaStreamSynchronize(st));

        /* correctness: every matrix, both paths, 1 and 3 tokens */
        for (int m = 0; m < 7; m++)
            for (int path = 0; path < 2; path++)
                for (int nt = 1; nt <= 3; nt += 2) {
                    const shape &s = layer[m];
                    const void *w = wall + off[m];
                    if (path == 0) CKS(st_gemv_quantize_x_cuda(q.x, nt, s.cols, xq, st));
                    CK(cudaMemsetAsync(q.y, 0xff, sizeof(float) * nt * s.rows, st));
                    CKS(st_gemv_cuda(w, dt[m], s.rows, s.cols, NULL, q.x, path == 0 ? xq : NULL, nt, q.y, q.sms, st));
                    CK(cudaStreamSynchronize(st));
                    double worst = 0;
                    for (int t = 0; t < nt; t++) {
                        const double rel = q_check(w, dt[m], s.rows, s.cols, q.y + (size_t)t * s.rows, q.x + (size_t)t * s.cols);
                        if (!(rel <= worst)) worst = rel;
                    }
                    const double lim = path == 0 ? 1e-2 : 1e-5;
                    if (!(worst < lim)) {
                        printf("WRONG: %s %s %s tokens %d: rel error %.3e (limit %.0e)\n", s.name, st_dtype_name(dt[m]),
                               path == 0 ? "dp4a" : "fp32", nt, worst, lim);
                        ok = false;
                    }
                }
        /* per matrix, one token, L2 flushed before each launch */
        for (int m = 0; m < 7; m++) {
            if (m != 4 && m != 6 && !(m == 2 && ti == 9)) continue;
            const shape &s = layer[m];
            /* kernels: the default, and for the types with a direct kernel the others
             * (unroll 0: the window kernel; else the direct kernel's units per lane U
             * and rows per warp group R) */
            for (int path = 0; path < 2; path++) {
                const st_gemv_shape def0 = st_gemv_cuda_shape(wall + off[m], dt[m], s.rows, s.cols, q.x, path == 0 ? xq : NULL,
                                                              1, q.sms);
                const bool direct = def0.unroll > 0;
                const int dvar[][2] = {{def0.unroll, def0.rows_per_warp}, {0, 1}, {2, 1}, {4, 1}, {1, 2}, {2, 2}, {1, 4}};
                const int wvar[][2] = {{def0.unroll, def0.rows_per_warp}, {0, 1}, {0, 2}, {0, 4}};
                const int(*variants)[2] = direct ? dvar : wvar;
                const int n_var = direct ? 7 : 4;
                for (int v = 0; v < n_var; v++) {
                    if (v > 0 && variants[v][0] == variants[0][0] && variants[v][1] == variants[0][1]) continue;
                    if (path == 0) CKS(st_gemv_quantize_x_cuda(q.x, 1, s.cols, xq, st));
                    const void *xqp = path == 0 ? xq : NULL;
                    st_gemv_shape def = def0;
                    def.unroll = variants[v][0];
                    def.rows_per_warp = variants[v][1];
                    char pname[16];
                    if (def.unroll == 0) snprintf(pname, sizeof pname, "%s-%sr%d", path == 0 ? "dp4a" : "fp32", v == 0 ? "W" : "w",
                                                  def.rows_per_warp);
                    else snprintf(pname, sizeof pname, "%s-%s%dr%d", path == 0 ? "dp4a" : "fp32", v == 0 ? "D" : "d", def.unroll,
                                  def.rows_per_warp);
                    double best = 0, def_gbps = 0;
                    int best_k = def.k_split;
                    for (int k = 1; k <= 8; k *= 2) {
                        st_gemv_shape sh = def;
                        sh.k_split = k;
                        const double us = qtime(q, true, [&](int i) {
                            CKS(st_gemv_cuda_shaped(wall + (size_t)((i + 3) % n_copies) * layer_bytes + off[m], dt[m], s.rows,
                                                    s.cols, NULL, q.x, xqp, 1, q.y, &sh, st));
                        });
                        const double gbps = mbytes[m] / (us * 1e-6) / 1e9;
                        if (gbps > best) { best = gbps; best_k = k; }
                        if (k == def.k_split) def_gbps = gbps;
                    }
                    printf("%-10s %-7s %-5s %7lld %7lld %9.2f %9.1f %6.1f%%  default k%d; best k%d %.1f GB/s (%.1f%%)\n", s.name,
                           st_dtype_name(dt[m]), pname, (long long)s.rows, (long long)s.cols,
                           mbytes[m] / (def_gbps * 1e3), def_gbps, 100 * def_gbps / q.copy_gbps, def.k_split, best_k, best,
                           100 * best / q.copy_gbps);
                    if (q.jf) fprintf(q.jf, "%s{\"matrix\": \"%s\", \"dtype\": \"%s\", \"path\": \"%s\", \"tokens\": 1, \"gbps\": %.2f, "
                                      "\"vs_copy\": %.4f, \"k_split\": %d, \"best_k_split\": %d, \"best_gbps\": %.2f}",
                                      *q.first_json ? "" : ", ", s.name, st_dtype_name(dt[m]), pname,
                                      def_gbps, def_gbps / q.copy_gbps, def.k_split, best_k, best);
                    *q.first_json = false;
                }
            }
        }
        /* the gate/up pair: (U, R) (U 0: the window kernel) and k-split, one token */
        const st_gemv_shape pdef = st_gemv_swiglu_cuda_shape(wall + off[4], wall + off[5], dt[4], F, E, q.x, xq, 1, q.sms);
        {
            const int pvd[][2] = {{2, 1}, {4, 1}, {1, 2}, {2, 2}}, pvw[][2] = {{0, 1}, {0, 2}, {0, 4}, {0, 4}};
            const int(*pv)[2] = pdef.unroll > 0 ? pvd : pvw;
            const int n_pv = pdef.unroll > 0 ? 4 : 3;
            for (int path = 0; path < 2; path++) {
                if (path == 0) CKS(st_gemv_quantize_x_cuda(q.x, 1, E, xq, st));
                printf("  gate/up pair %s, default d%dr%d k%d; GB/s by (U, R) and k 1/2/4/8:", path == 0 ? "dp4a" : "fp32",
                       pdef.unroll, pdef.rows_per_warp, pdef.k_split);
                for (int v = 0; v < n_pv; v++) {
                    printf(" | d%dr%d", pv[v][0], pv[v][1]);
                    for (int k = 1; k <= 8; k *= 2) {
                        st_gemv_shape sh = pdef;
                        sh.unroll = pv[v][0];
                        sh.rows_per_warp = pv[v][1];
                        sh.k_split = k;
                        const double us = qtime(q, true, [&](int i) {
                            const uint8_t *b = wall + (size_t)((i + 3) % n_copies) * layer_bytes;
                            CKS(st_gemv_swiglu_cuda_shaped(b + off[4], NULL, b + off[5], NULL, dt[4], F, E, q.x,
                                                           path == 0 ? xq : NULL, 1, yff, &sh, st));
                        });
                        printf(" %.0f", (mbytes[4] + mbytes[5]) / (us * 1e-6) / 1e9);
                    }
                }
                printf("\n");
            }
        }
        /* the engine's decode layer: x quantized before each of the four launches */
        const bool has_direct = st_gemv_cuda_shape(wall + off[4], dt[4], F, E, q.x, xq, 1, q.sms).unroll > 0;
        for (int pv = 0; pv < (has_direct ? 4 : 2); pv++) {
            /* pv 0, 1: dp4a, fp32 with the default kernels; 2, 3: the same with the window kernel forced */
            const int path = pv & 1;
            const bool window = pv >= 2;
            const void *xqp = path == 0 ? xq : NULL;
            auto sh = [&](st_gemv_shape s0) {
                if (window) s0.unroll = 0;
                return s0;
            };
            auto fused_layer = [&](const uint8_t *b) {
                struct st_gemv_job g0[3], g1[1];
                int n0 = 0, n1 = 0;
                const st_gemv_job jq = {b + off[0], NULL, yq, E}, jk = {b + off[1], NULL, yk, KV}, jv = {b + off[2], NULL, yv, KV};
                g0[n0++] = jq; g0[n0++] = jk;
                if (dt[2] == dt[0]) g0[n0++] = jv; else g1[n1++] = jv;
                if (path == 0) CKS(st_gemv_quantize_x_cuda(q.x, 1, E, xq, st));
                st_gemv_shape s0 = sh(st_gemv_multi_cuda_shape(g0, n0, dt[0], E, q.x, xqp, 1, q.sms));
                CKS(st_gemv_multi_cuda_shaped(g0, n0, dt[0], E, q.x, xqp, 1, &s0, st));
                if (n1) {
                    s0 = sh(st_gemv_multi_cuda_shape(g1, n1, dt[2], E, q.x, xqp, 1, q.sms));
                    CKS(st_gemv_multi_cuda_shaped(g1, n1, dt[2], E, q.x, xqp, 1, &s0, st));
                }
                if (path == 0) CKS(st_gemv_quantize_x_cuda(q.x, 1, E, xq, st));
                s0 = sh(st_gemv_cuda_shape(b + off[3], dt[3], E, E, q.x, xqp, 1, q.sms));
                CKS(st_gemv_cuda_shaped(b + off[3], dt[3], E, E, NULL, q.x, xqp, 1, q.y, &s0, st));
                if (path == 0) CKS(st_gemv_quantize_x_cuda(q.x, 1, E, xq, st));
                s0 = sh(st_gemv_swiglu_cuda_shape(b + off[4], b + off[5], dt[4], F, E, q.x, xqp, 1, q.sms));
                CKS(st_gemv_swiglu_cuda_shaped(b + off[4], NULL, b + off[5], NULL, dt[4], F, E, q.x, xqp, 1, yff, &s0, st));
                if (path == 0) CKS(st_gemv_quantize_x_cuda(q.x, 1, F, xq, st));
                s0 = sh(st_gemv_cuda_shape(b + off[6], dt[6], E, F, q.x, xqp, 1, q.sms));
                CKS(st_gemv_cuda_shaped(b + off[6], dt[6], E, F, NULL, q.x, xqp, 1, q.y, &s0, st));
            };
            cudaGraphExec_t exec = capture_graph(st, n_copies, [&](int c) { fused_layer(wall + (size_t)c * layer_bytes); });
            const double us = qtime(q, false, [&](int) { CK(cudaGraphLaunch(exec, st)); }) / n_copies;
            CK(cudaGraphExecDestroy(exec));
            const double gbps = wsum / (us * 1e-6) / 1e9;
            const char *pname = path == 0 ? (window ? "dp4a-w" : "dp4a") : (window ? "fp32-w" : "fp32");
            printf("%-10s %-7s %-5s %7s %7s %9.2f %9.1f %6.1f%%  CUDA graph: %s%s\n", "FUSED", name, pname,
                   "layer", "", us, gbps, 100 * gbps / q.copy_gbps,
                   path == 0 ? "4 x-quantizations, qkv grouped, o, gate/up+swiglu, down" : "qkv grouped, o, gate/up+swiglu, down",
                   window ? " (window kernel)" : "");
            if (q.jf) fprintf(q.jf, ", {\"matrix\": \"fused_layer_graph\", \"dtype\": \"%s\", \"path\": \"%s\", \"tokens\": 1, "
                              "\"us\": %.3f, \"gbps\": %.2f, \"vs_copy\": %.4f}", name, pname, us, gbps,
                              gbps / q.copy_gbps);
            if (pv == 0 && mix) layer_us[ti == 9 ? 1 : 0] = us;
        }
        CK(cudaFree(wall));
    }
    /* Q6_K lm_head (Q4_K_M's output.weight), and the 7B Q4_K_M decode step's GEMVs */
    if (layer_us[0] > 0 && layer_us[1] > 0) {
        const size_t hb = st_dtype_row_bytes(ST_DTYPE_Q6_K, E) * V;
        uint8_t *hw;
        CK(cudaMalloc(&hw, hb * 2));
        qfill(hw, ST_DTYPE_Q6_K, hb, 5, st);
        qfill(hw + hb, ST_DTYPE_Q6_K, hb, 6, st);
        CKS(st_gemv_quantize_x_cuda(q.x, 1, E, xq, st));
        CK(cudaMemsetAsync(q.y, 0xff, sizeof(float) * V, st));
        CKS(st_gemv_cuda(hw, ST_DTYPE_Q6_K, V, E, NULL, q.x, NULL, 1, q.y, q.sms, st));
        CK(cudaStreamSynchronize(st));
        const double rel = q_check(hw, ST_DTYPE_Q6_K, V, E, q.y, q.x);
        if (!(rel < 1e-5)) { printf("WRONG: lm_head q6_k fp32: rel error %.3e\n", rel); ok = false; }
        const double us = qtime(q, false, [&](int i) {
            CKS(st_gemv_quantize_x_cuda(q.x, 1, E, xq, st));
            CKS(st_gemv_cuda(hw + (size_t)(i & 1) * hb, ST_DTYPE_Q6_K, V, E, NULL, q.x, xq, 1, q.y, q.sms, st));
        });
        const double gbps = hb / (us * 1e-6) / 1e9;
        printf("%-10s %-7s %-5s %7lld %7lld %9.2f %9.1f %6.1f%%  (with its x quantization)\n", "lm_head", "q6_k", "dp4a",
               (long long)V, (long long)E, us, gbps, 100 * gbps / q.copy_gbps);
        CK(cudaFree(hw));
        const double step_us = 14 * layer_us[0] + 14 * layer_us[1] + us;
        printf("\n7B Q4_K_M decode step estimate (GEMVs only, dp4a): 14 x %.1f us + 14 x %.1f us (Q6_K v/down) + lm_head "
               "%.1f us = %.3f ms = %.0f tok/s (llama.cpp's tg128 on an H100: 269 tok/s; target 1.3x = 350)\n",
               layer_us[0], layer_us[1], us, step_us / 1e3, 1e6 / step_us);
        if (q.jf) fprintf(q.jf, ", {\"matrix\": \"decode_step_gemv_estimate\", \"dtype\": \"q4_k_m\", \"us\": %.3f}", step_us);
    }
    CK(cudaFree(xq));
    return ok;
}

} // namespace

int main(int argc, char **argv) {
    int ordinal = 0, reps = 30;
    double min_ratio = 0.0;
    const char *json = NULL, *quant = "all";
    bool do_float = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) ordinal = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--min-ratio") && i + 1 < argc) min_ratio = atof(argv[++i]);
        else if (!strcmp(argv[i], "--quant") && i + 1 < argc) quant = argv[++i];
        else if (!strcmp(argv[i], "--no-float")) do_float = false;
        else {
            fprintf(stderr, "usage: %s [--device N] [--reps R] [--json FILE] [--min-ratio X] [--no-float] "
                    "[--quant all|none|q4_k,q6_k,...,q4_k_m]\n", argv[0]);
            return 2;
        }
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
    for (int di = 0; do_float && di < 3; di++) {
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
                const st_gemv_shape gs = st_gemv_cuda_shape(wall + off[m], dt, s.rows, s.cols, x, NULL, nt, prop.multiProcessorCount);
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
                const st_gemv_shape def = st_gemv_cuda_shape(wall + off[m], dt, s.rows, s.cols, x, NULL, 1, prop.multiProcessorCount);
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
            if (graph)
                exec = capture_graph(st, n_copies, [&](int c) {
                    for (int m = 0; m < n_layer_mats; m++)
                        CKS(st_gemv_cuda(wall + (size_t)c * layer_bytes + off[m], dt, layer[m].rows, layer[m].cols, NULL, x, NULL, 1,
                                         y, prop.multiProcessorCount, st));
                });
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
        /* the engine's decode layer of nt tokens: q/k/v grouped, o, gate/up + SwiGLU, down (outputs with
         * room for 8 tokens each) */
        float *yq = y, *yk = y + 8 * E, *yv = y + 8 * (E + KV), *yff = y + 8 * (E + 2 * KV);
        auto fused_layer = [&](const uint8_t *b, int nt) {
            const st_gemv_job qkv[3] = {{b + off[0], NULL, yq, E}, {b + off[1], NULL, yk, KV}, {b + off[2], NULL, yv, KV}};
            CKS(st_gemv_multi_cuda(qkv, 3, dt, E, x, NULL, nt, sms, st));
            CKS(st_gemv_cuda(b + off[3], dt, E, E, NULL, x, NULL, nt, y, sms, st));
            CKS(st_gemv_swiglu_cuda(b + off[4], NULL, b + off[5], NULL, dt, F, E, x, NULL, nt, yff, sms, st));
            CKS(st_gemv_cuda(b + off[6], dt, E, F, NULL, x, NULL, nt, y, sms, st));
        };
        {   /* correctness of the grouped launches on sampled rows */
            fill(y, ST_DTYPE_F32, 8 * (E + 2 * KV) + F, 77, 1.0f, st);
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
                const st_gemv_shape def = which == 0 ? st_gemv_multi_cuda_shape(j3, 3, dt, E, x, NULL, 1, sms)
                                                     : st_gemv_swiglu_cuda_shape(wall + off[4], wall + off[5], dt, F, E, x, NULL, 1, sms);
                double best = 0, def_gbps = 0;
                st_gemv_shape best_s = def;
                printf("  %-14s", which == 0 ? "qkv grouped" : "gate/up+swiglu");
                for (int r = 1; r <= 2; r++)   /* gate/up: r2 is the joint pair */
                    for (int k = 1; k <= (which == 0 || r == 2 ? 8 : 4); k *= 2)
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
            if (graph) exec = capture_graph(st, n_copies, [&](int c) { fused_layer(wall + (size_t)c * layer_bytes, 1); });
            const double us = time_us(false, [&](int) {
                if (graph) CK(cudaGraphLaunch(exec, st));
                else
                    for (int c = 0; c < n_copies; c++) fused_layer(wall + (size_t)c * layer_bytes, 1);
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
        if (dt == ST_DTYPE_BF16) {
            /* several tokens (the GEMV path of batched decode steps of 2 to 8 sequences): the fused layer in
             * a CUDA graph at the default shapes, and gate/up + SwiGLU by pair mode over its k-splits
             * (r1: gate and up warp groups alternate; r2: joint, one group computes both rows over one x) */
            for (int nt = 2; nt <= 8; nt *= 2) {
                cudaGraphExec_t exec =
                    capture_graph(st, n_copies, [&](int c) { fused_layer(wall + (size_t)c * layer_bytes, nt); });
                const double us = time_us(false, [&](int) { CK(cudaGraphLaunch(exec, st)); }) / n_copies;
                CK(cudaGraphExecDestroy(exec));
                const double gbps = layer_bytes / (us * 1e-6) / 1e9;
                const st_gemv_shape def = st_gemv_swiglu_cuda_shape(wall + off[4], wall + off[5], dt, F, E, x, NULL, nt, sms);
                printf("%-10s %-5s %7s %7s %3d %9.2f %9.1f %6.1f%%  CUDA graph; gate/up default r%d k%d u%d, by mode:",
                       "FUSED", st_dtype_name(dt), "4 lnch", "", nt, us, gbps, 100 * gbps / copy_gbps, def.rows_per_warp,
                       def.k_split, def.unroll);
                if (jf) fprintf(jf, ", {\"matrix\": \"fused_layer_graph\", \"dtype\": \"%s\", \"tokens\": %d, \"us\": %.3f, "
                                "\"gbps\": %.2f, \"vs_copy\": %.4f}", st_dtype_name(dt), nt, us, gbps, gbps / copy_gbps);
                const size_t gu_bytes = 2 * wbytes(layer[4], dt);
                for (int r = 1; r <= 2; r++) {
                    double best = 0;
                    int best_k = 0;
                    for (int k = 1; k <= (r == 1 ? 4 : 8); k *= 2) {
                        st_gemv_shape sh = def;
                        sh.rows_per_warp = r; sh.k_split = k;
                        const double gus = time_us(true, [&](int i) {
                            const uint8_t *b = wall + (size_t)((i + 3) % n_copies) * layer_bytes;
                            CKS(st_gemv_swiglu_cuda_shaped(b + off[4], NULL, b + off[5], NULL, dt, F, E, x, NULL, nt, yff,
                                                           &sh, st));
                        });
                        const double g2 = gu_bytes / (gus * 1e-6) / 1e9;
                        if (g2 > best) { best = g2; best_k = k; }
                    }
                    printf(" r%d best k%d %.1f%%", r, best_k, 100 * best / copy_gbps);
                    if (jf) fprintf(jf, ", {\"matrix\": \"gate_up_swiglu\", \"tokens\": %d, \"rows_per_warp\": %d, "
                                    "\"best_k_split\": %d, \"best_gbps\": %.2f}", nt, r, best_k, best);
                }
                printf("\n");
            }
        }
        CK(cudaFree(wall));
        printf("\n");
    }
    /* lm_head (bf16), rotated over 2 copies */
    if (do_float) {
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
        const st_gemv_shape hs = st_gemv_cuda_shape(hw, ST_DTYPE_BF16, head.rows, head.cols, x, NULL, 1, sms);
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
    if (strcmp(quant, "none") != 0) {
        struct qbench q = {st, e0, e1, smp, reps, copy_gbps, x, y, flush, flush_bytes, sms, jf, &first_json};
        if (!bench_quant(q, quant)) wrong = true;
    }
    if (jf) {
        fprintf(jf, "], \"layer_graph_vs_copy_bf16\": %.4f, \"fused_layer_graph_vs_copy_bf16\": %.4f, \"correct\": %s}\n",
                layer_graph_ratio, fused_graph_ratio, wrong ? "false" : "true");
        fclose(jf);
    }
    if (do_float)
        printf("\nbf16 7B layer (graph): 7 GEMVs %.1f%%, fused (4 launches) %.1f%% of the copy roofline (target >= %.0f%%)\n",
               100 * layer_graph_ratio, 100 * fused_graph_ratio, 100 * min_ratio);
    CK(cudaFree(x));
    CK(cudaFree(y));
    CK(cudaFree(flush));
    free(smp);
    if (wrong) { printf("RESULT: WRONG OUTPUT\n"); return 1; }
    if (do_float && min_ratio > 0 && fused_graph_ratio < min_ratio) { printf("RESULT: below target\n"); return 3; }
    printf("RESULT: ok\n");
    return 0;
}
