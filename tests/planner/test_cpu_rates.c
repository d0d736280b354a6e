/* The CPU's measured rates in the cost model (`strata inventory --probe`,
 * devices/cpu/probe_cpu.c): a CPU stage's prefill runs float matrices at the
 * GEMM rate of their dtype (f16 and bf16 are widened to fp32: the fp32 rate
 * when unprobed) and quantized ones at their dtype's probed GEMM rate (the
 * integer path; q8_0's when the dtype has none), and its decode streams
 * quantized matrices at their dtype's probed GEMV rate. Each is checked
 * against the change it must make to a stage's time, computed here from the
 * model's shape alone: the seven matrices of a qwen2.5-7b block, times the
 * chunk, times the layers; and a rate that does not apply (a q8_0 rate under
 * f16 weights, a q6_k rate under q4_0 weights) changes nothing at all. */
#include "check.h"
#include "planner/planner.h"

#include <math.h>
#include <string.h>

/* qwen2.5-7b: hidden 3584, ffn 18944, 28 query heads and 4 kv heads of 128 */
static const double E = 3584, F = 18944, QD = 28 * 128, KVD = 4 * 128;
#define LAYERS 4   /* the stage: layers 0..3 (the embedding with it, no output) */

static double block_elems(void) { return 2 * QD * E + 2 * KVD * E + 3 * F * E; }

/* a probed CPU: bandwidth, fp32 GEMM, and a GEMM and a GEMV rate of dtype dt (0: not measured) */
static void cpu_dt(struct st_plan_device *d, double bw, double fp32, st_dtype dt, double gemm, double gemv,
                   double q8_gemm) {
    struct st_device_info in = {0};
    in.kind = ST_DEVICE_CPU;
    in.numa_node = -1;
    snprintf(in.name, sizeof in.name, "test CPU (probed)");
    in.caps = st_caps_cpu();
    in.sm_count = in.threads = 16;
    in.mem_total_bytes = in.mem_free_bytes = 256ull << 30;
    in.perf.measured = true;
    in.perf.mem_bw_gbps = bw;
    in.perf.fp32_tflops = fp32;
    in.perf.gemm_tflops[dt] = gemm;
    in.perf.gemv_gbps[dt] = gemv;
    if (q8_gemm > 0) in.perf.gemm_tflops[ST_DTYPE_Q8_0] = q8_gemm;
    in.perf.launch_us = 1.0;
    st_plan_device_init(d, &in);
}

static void cpu(struct st_plan_device *d, double bw, double fp32, double q8, double gemv_q8) {
    cpu_dt(d, bw, fp32, ST_DTYPE_Q8_0, q8, gemv_q8, 0);
}

static struct st_plan_stage eval(const char *quant, const struct st_plan_device *d) {
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("qwen2.5-7b", quant, &m));
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    r.context = 1024;
    r.prefill_chunk = r.prompt_tokens = 256;
    struct st_plan_stage s;
    memset(&s, 0, sizeof s);
    char why[256] = "";
    CHECK_MSG(st_plan_stage_eval(&m, d, &r, 0, LAYERS - 1, &s, why, sizeof why), "%s: %s", quant, why);
    st_plan_model_free(&m);
    return s;
}

static void near_ms(double got, double want, const char *what) {
    CHECK_MSG(fabs(got - want) <= 1e-9 * fabs(want) + 1e-9, "%s: %.9f ms, want %.9f ms", what, got, want);
}

int main(void) {
    struct st_plan_device a, b;
    /* prefill, compute-bound (bandwidth far beyond the matmuls' need): the q8_0 GEMM rate takes
     * the seven matrices from fp32's 1 TFLOP/s to 4, and nothing else moves */
    cpu(&a, 1e7, 1.0, 0.0, 0.0);   /* no q8_0 rate measured: quantized weights at the fp32 rate */
    cpu(&b, 1e7, 1.0, 4.0, 0.0);
    const double flops = LAYERS * 2.0 * 256 * block_elems();
    struct st_plan_stage qa = eval("q8_0", &a), qb = eval("q8_0", &b);
    near_ms(qa.prefill_ms - qb.prefill_ms, flops / 1e9 * (1.0 / 1.0 - 1.0 / 4.0), "q8_0 prefill, fp32 vs q8_0 rate");
    /* q4_k_m mixes q4_k, q6_k and f32: every quantized matrix takes the integer rate */
    struct st_plan_stage ka = eval("q4_k_m", &a), kb = eval("q4_k_m", &b);
    near_ms(ka.prefill_ms - kb.prefill_ms, flops / 1e9 * 0.75, "q4_k_m prefill, fp32 vs q8_0 rate");
    /* float weights: the q8_0 rate does not apply */
    struct st_plan_stage fa = eval("f16", &a), fb = eval("f16", &b);
    CHECK(fa.prefill_ms == fb.prefill_ms && fa.decode_ms == fb.decode_ms);
    /* and fp32's own rate does: doubling it halves the matmuls' share and eager attention's (QK^T and
     * PV over 128 keys on average: half the 256-token prompt) */
    cpu(&b, 1e7, 2.0, 0.0, 0.0);
    const double attn = LAYERS * 4.0 * QD * 256 * 128;
    near_ms(fa.prefill_ms - eval("f16", &b).prefill_ms, (flops + attn) / 1e9 * 0.5, "f16 prefill, 1 vs 2 TFLOP/s");

    /* decode, bandwidth-bound: q8_0 matrices stream at the probed q8_0 GEMV rate (100 then 200 GB/s,
     * the block's bytes: 34 per 32 weights) */
    cpu(&a, 400.0, 1e4, 0.0, 100.0);
    cpu(&b, 400.0, 1e4, 0.0, 200.0);
    const double bytes = LAYERS * block_elems() * 34.0 / 32.0;
    near_ms(eval("q8_0", &a).decode_ms - eval("q8_0", &b).decode_ms, bytes / 1e9 * (1.0 / 100 - 1.0 / 200) * 1e3,
            "q8_0 decode, gemv 100 vs 200 GB/s");
    CHECK(eval("f16", &a).decode_ms == eval("f16", &b).decode_ms);

    /* a dtype's own rates: q6_k weights (210 bytes per 256) at a q6_k GEMM of 2 TFLOP/s instead of q8_0's 4,
     * and streamed at a q6_k GEMV of 100 instead of 200 GB/s; q4_0 weights do not see them */
    cpu_dt(&a, 1e7, 1.0, ST_DTYPE_Q6_K, 2.0, 0.0, 4.0);
    cpu_dt(&b, 1e7, 1.0, ST_DTYPE_Q6_K, 0.0, 0.0, 4.0);
    near_ms(eval("q6_k", &a).prefill_ms - eval("q6_k", &b).prefill_ms, flops / 1e9 * (1.0 / 2.0 - 1.0 / 4.0),
            "q6_k prefill, its own rate 2 vs q8_0's 4 TFLOP/s");
    CHECK(eval("q4_0", &a).prefill_ms == eval("q4_0", &b).prefill_ms);
    cpu_dt(&a, 400.0, 1e4, ST_DTYPE_Q6_K, 0.0, 100.0, 0.0);
    cpu_dt(&b, 400.0, 1e4, ST_DTYPE_Q6_K, 0.0, 200.0, 0.0);
    near_ms(eval("q6_k", &a).decode_ms - eval("q6_k", &b).decode_ms,
            LAYERS * block_elems() * 210.0 / 256.0 / 1e9 * (1.0 / 100 - 1.0 / 200) * 1e3, "q6_k decode, gemv 100 vs 200 GB/s");
    CHECK(eval("q4_0", &a).decode_ms == eval("q4_0", &b).decode_ms);

    /* f16 weights at their own probed GEMM (the CPU widens them to fp32 in registers: slower than
     * f32 weights), 0.5 TFLOP/s against the fp32 rate of 1; f32 and bf16 weights do not see it */
    cpu_dt(&a, 1e7, 1.0, ST_DTYPE_F16, 0.5, 0.0, 0.0);
    cpu_dt(&b, 1e7, 1.0, ST_DTYPE_F16, 0.0, 0.0, 0.0);
    near_ms(eval("f16", &a).prefill_ms - eval("f16", &b).prefill_ms, flops / 1e9 * (1.0 / 0.5 - 1.0 / 1.0),
            "f16 prefill, its own rate 0.5 vs fp32's 1 TFLOP/s");
    CHECK(eval("bf16", &a).prefill_ms == eval("bf16", &b).prefill_ms);
    CHECK(eval("f32", &a).prefill_ms == eval("f32", &b).prefill_ms);
    return st_test_finish("planner_cpu_rates");
}
