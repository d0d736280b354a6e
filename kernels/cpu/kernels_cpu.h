/* kernels/cpu/kernels_cpu.h — the fp32 CPU kernels: one op per file, plain
 * pointers and sizes, no backend object. They are the reference every GPU
 * kernel is tested against and the math of the CPU backend (devices/cpu/),
 * which splits the work of one op across its thread pool by calling the
 * *_part variants on disjoint ranges.
 *
 * Conventions
 *  - Activations are fp32, row-major [n_tok][width].
 *  - Weights are [rows = out][cols = in] in their stored dtype (model.h): every
 *    st_dtype is accepted (see the matmul section for how each is computed).
 *  - Accumulation is fp32. The reduction order of one output element depends
 *    only on its row and the column count: never on the thread split, the
 *    token-block size or n_tok. So a token's logits are bit-identical whether
 *    it is computed in a prefill chunk or in a decode step, with 1 or 16 threads.
 *  - Functions returning st_status check their inputs (ids, positions, sizes)
 *    and set st_error_set() with the op name on failure; the void ones have no
 *    failure mode.
 *  - *_part(…, begin, end) computes only the range [begin, end) of the op's
 *    natural unit (named per function); the plain variant is the whole op. */
#ifndef STRATA_KERNELS_CPU_H
#define STRATA_KERNELS_CPU_H

#include "base/base.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[t][:] = row ids[t] of table (n_vocab, n_embd) widened to fp32.
 * ST_ERR_USAGE naming the position when an id is outside [0, n_vocab).
 * Unit of the part range: tokens. */
st_status st_cpu_embed(const void *table, st_dtype dtype, int64_t n_vocab, int64_t n_embd,
                       const int32_t *ids, int64_t n_tok, float *out);
st_status st_cpu_embed_part(const void *table, st_dtype dtype, int64_t n_vocab, int64_t n_embd,
                            const int32_t *ids, int64_t n_tok, float *out, int64_t t0, int64_t t1);

/* out[r] = w * (x[r] * 1/sqrt(mean(x[r]^2) + eps)) for rows of length n; the
 * sum of squares is taken in double (as ggml: eight interleaved lanes of fused
 * sums, added in a fixed tree, the same bits on every SIMD level), the rest in
 * fp32 (as HF).
 * x and out may alias. Unit: rows. */
void st_cpu_rmsnorm(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out);
void st_cpu_rmsnorm_part(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out,
                         int64_t r0, int64_t r1);

/* ---- matmul: y[t][r] = sum_c W[r][c] * x[t][c] (+ bias[r]) ----------------------
 * W (rows, cols) in its stored dtype, x (n_tok, cols) fp32, y (n_tok, rows) fp32,
 * bias (rows) or NULL. Every weight row is read from memory once per call: a
 * few tokens (decode, small batches) run as register tiles over the whole row,
 * more tokens as a blocked GEMM (packed weight panels, cache-sized token and
 * column blocks). The paths are chosen at run time (st_cpu_kernels_simd):
 * "avx512" (F, BW, VL, DQ, VNNI), "avx2+fma+f16c" or "portable" (plain C, the
 * reference). docs/cpu-kernels.md has the details and measured speeds.
 *
 * Arithmetic, per output element (row r, token t), identical on every path:
 *  - F32/F16/BF16 weights are widened to fp32 (exact). Per 512 columns one
 *    fp32 accumulator runs through them in order, p = fma(w, x, p); the
 *    partial sums are added in order, then + bias: the exact fp32 evaluation
 *    of that formula (the portable path uses fmaf() and equals the SIMD
 *    paths bit for bit). Error against the exact sum: <= (min(cols, 512) +
 *    cols/512 + 1) * 2^-24 * sum|w*x| (+ the bias rounding); random rounding
 *    makes it ~sqrt of that in practice.
 *  - Quantized weights (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, Q4_K, Q5_K,
 *    Q6_K) use integer dot products on 8-bit activations. x is quantized per
 *    group of 32 columns: d = max|x| / 127, v = rint(x * 127 / max|x|) in
 *    [-127, 127] (round half to even; a group with max|x| < 1e-30 is zero).
 *    Every weight group of 32 columns is w = a * (u - o) + b with integer
 *    codes u and the block's scale a (Q6_K: one per 16 columns) and min b
 *    (Q4_1, Q5_1, Q4_K, Q5_K; else 0). Per output element one fp32
 *    accumulator runs through the groups in column order: the exact integer
 *    i = sum (u - o) * v over the group (Q6_K: each 16 columns), then
 *    acc += (a * d) * i, then acc += (b * d) * sum v, each fused; then
 *    + bias. Bit-identical on every path. Error against the exact sum over
 *    the dequantized weights w (the values st_dtype_to_f32 gives):
 *        |y - sum w*x| <= sum over groups g of (max_g|x| / 254) * sum_g |w|
 *                         + (cols/16 + 8) * 2^-23 * sum (|a*(u-o)| + |b|) * |x|
 *    (+ the bias rounding): the first term, the activation rounding, is at
 *    most 0.4% of sum|w| * max|x| and in practice ~20x less (the rounding
 *    errors of v are independent); the second is fp32 accumulation. A group
 *    whose x holds Inf or NaN gives NaN.
 *  - The SIMD paths read matrices packed in blocks of 16 rows (one vector
 *    lane per row; st_cpu_matmul_pack_part): packed once ahead (the CPU
 *    backend does it for imported weights on their first use), or block by
 *    block on the fly when no packed copy is given.
 *  - The order of the sums of an output element depends only on its row and
 *    the column count: never on n_tok, the token blocking, the row range or
 *    the thread split. So a token's logits are bit-identical whether it is
 *    computed in a prefill chunk, alone in a decode step or inside a batch of
 *    64 sequences, with 1 or 16 threads.
 *
 * Calling sequence (the CPU backend, devices/cpu/cpu.c):
 *   scratch = st_cpu_matmul_scratch_bytes(dtype, cols, n_tok) bytes, 64-aligned;
 *   st_cpu_matmul_prepare_part(dtype, x, cols, n_tok, scratch, t0, t1) for every
 *     token range (unit: tokens; a no-op for F32/F16/BF16), then
 *   st_cpu_matmul_part(..., scratch, ..., r0, r1) for every row range (unit: rows).
 * The prepared scratch depends only on x and cols, so one preparation serves
 * every quantized weight that reads the same x (q, k and v; gate and up). */

/* Bytes of scratch for n_tok tokens of cols columns: 0 for F32/F16/BF16;
 * for quantized types about 1.6 bytes per column (cols rounded up to 64)
 * per token. */
size_t st_cpu_matmul_scratch_bytes(st_dtype dtype, int64_t cols, int64_t n_tok);
/* Quantizes tokens [t0, t1) of x (n_tok, cols) into scratch. cols must be a
 * whole number of 32 for quantized dtypes (st_cpu_matmul_part checks it). */
void st_cpu_matmul_prepare_part(st_dtype dtype, const float *x, int64_t cols, int64_t n_tok, void *scratch,
                                int64_t t0, int64_t t1);
/* Bytes of a (rows, cols) matrix packed in 16-row blocks: the stored size
 * (rows rounded up to 16; K types +2.8%); 0 for a malformed shape. */
size_t st_cpu_matmul_packed_bytes(st_dtype dtype, int64_t rows, int64_t cols);
/* Packs 16-row blocks [b0, b1) of w into packed (st_cpu_matmul_packed_bytes). Unit: 16-row blocks
 * (F32/F16/BF16 blocks sit in quads of four interleaved column by column; each block is
 * packed independently of the others, so any split of [0, blocks) may run in parallel). */
void st_cpu_matmul_pack_part(const void *w, st_dtype dtype, int64_t rows, int64_t cols, void *packed, int64_t b0,
                             int64_t b1);
/* Rows [r0, r1) of every token (ranges on 16-row boundaries are cheapest).
 * scratch: prepared for this x (NULL for F32/F16/BF16). packed: w packed by
 * st_cpu_matmul_pack_part, or NULL (the SIMD paths then pack block by block
 * on the fly; the portable path reads w). ST_ERR_UNSUPPORTED when
 * cols is not a whole number of the dtype's blocks or the dtype is unknown;
 * ST_ERR_USAGE for a quantized dtype without scratch. */
st_status st_cpu_matmul_part(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                             const float *x, const void *scratch, const void *packed, int64_t n_tok, float *y,
                             int64_t r0, int64_t r1);
/* The whole op on the calling thread; allocates (and frees) the scratch it
 * needs (ST_ERR_NOMEM). For tests and tools, not for a decode loop. */
st_status st_cpu_matmul(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                        const float *x, int64_t n_tok, float *y);

/* SIMD level of the matmul kernels, best first. */
typedef enum st_cpu_isa { ST_CPU_ISA_PORTABLE = 0, ST_CPU_ISA_AVX2, ST_CPU_ISA_AVX512, ST_CPU_ISA_COUNT } st_cpu_isa;
/* The best level this CPU and OS support (cpuid + xgetbv; cached). */
st_cpu_isa st_cpu_isa_best(void);
/* Forces a level process-wide (tests, benchmarks; not thread-safe against
 * running kernels). ST_ERR_UNSUPPORTED, naming the level, when this CPU lacks it. */
st_status st_cpu_isa_force(st_cpu_isa isa);
st_cpu_isa st_cpu_isa_current(void);
const char *st_cpu_isa_name(st_cpu_isa isa);

/* Rotary embedding in place on x (n_tok, n_heads, head_dim) at positions
 * pos[t]: pair i of [0, head_dim/2) turns by pos * theta^(-2i/head_dim) /
 * freq_factors[i] (freq_factors may be NULL). NEOX pairs (x[i], x[i+D/2]) —
 * HF rotate_half; NORM pairs (x[2i], x[2i+1]) — llama GGUF. Angles follow HF:
 * inv_freq and pos*inv_freq in fp32, cos/sin of that fp32 angle.
 * ST_ERR_UNSUPPORTED for an odd head_dim or head_dim > 1024. Unit: tokens. */
st_status st_cpu_rope(float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                      float theta, st_rope_layout layout, const float *freq_factors);
st_status st_cpu_rope_part(float *x, int64_t n_tok, int64_t n_heads, int64_t head_dim, const int32_t *pos,
                           float theta, st_rope_layout layout, const float *freq_factors,
                           int64_t t0, int64_t t1);

/* Writes k and v (n_tok, n_head_kv, head_dim) into row pos[t] of sequence
 * slot[t] of the caches k_cache / v_cache (n_slots, n_ctx, n_head_kv,
 * head_dim) in kv_dtype (F32, F16 or BF16: round to nearest even; Q8_0: GGUF
 * blocks of 32 values, an fp16 scale d = max|x| / 127 and 32 int8 round(x / d),
 * 34 bytes, as ggml's reference quantizer writes them; the blocks tile the
 * row of n_head_kv * head_dim values, which must be a multiple of 32, so with
 * head_dim 16 one block holds two heads). slot may be NULL: every token in
 * slot 0. ST_ERR_USAGE when a position is outside [0, n_ctx) (the message
 * says the context is full) or a slot outside [0, n_slots),
 * ST_ERR_UNSUPPORTED for another dtype or a Q8_0 row not a multiple of 32. */
/* True for the KV cache dtypes the CPU kernels read and write: F32, F16, BF16, Q8_0. */
static inline bool st_cpu_kv_dtype_ok(st_dtype t) {
    return t == ST_DTYPE_F32 || t == ST_DTYPE_F16 || t == ST_DTYPE_BF16 || t == ST_DTYPE_Q8_0;
}
st_status st_cpu_kv_store(void *k_cache, void *v_cache, st_dtype kv_dtype, int64_t n_slots, int64_t n_ctx,
                          int64_t n_head_kv, int64_t head_dim, const float *k, const float *v, int64_t n_tok,
                          const int32_t *pos, const int32_t *slot);

/* Causal GQA attention. q, out: (n_tok, n_head, head_dim). Query head h reads
 * kv head h / (n_head / n_head_kv); token t sees rows 0..pos[t] of sequence
 * slot[t] of the caches (n_slots, n_ctx, n_head_kv, head_dim); slot may be
 * NULL (slot 0 for every token). Tokens of different slots may share a call
 * (a batched decode step): each sees only its own sequence.
 * The cache is F32, F16, BF16 or Q8_0 (each row widened to fp32 in registers:
 * k = q_int8 * d; every product and sum is fp32).
 * score = (q . k) * scale in fp32; softmax in fp32 (exp as in swiglu), evaluated
 * tile by tile (256 keys) with a running max, so no scratch beyond the stack is needed.
 * ST_ERR_UNSUPPORTED when head_dim > 1024 or n_head is not a multiple of
 * n_head_kv; ST_ERR_USAGE when a position is outside [0, n_ctx) or a slot
 * outside [0, n_slots). Unit of the part range: (token, head) pairs, index
 * t * n_head + h. */
st_status st_cpu_attention(const void *k_cache, const void *v_cache, st_dtype kv_dtype, int64_t n_slots,
                           int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, const float *q, int64_t n_tok,
                           int64_t n_head, const int32_t *pos, const int32_t *slot, float scale, float *out);
st_status st_cpu_attention_part(const void *k_cache, const void *v_cache, st_dtype kv_dtype, int64_t n_slots,
                                int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, const float *q, int64_t n_tok,
                                int64_t n_head, const int32_t *pos, const int32_t *slot, float scale, float *out,
                                int64_t task0, int64_t task1);

/* out[i] = gate[i] / (1 + exp(-gate[i])) * up[i]; out may alias gate or up. exp is
 * the kernels' own (kernels/cpu/expf-impl.h: within 1.02 ulp, vectorised, the
 * same bits on every SIMD level and at every index). Unit: elements. */
void st_cpu_swiglu(const float *gate, const float *up, int64_t n, float *out);
void st_cpu_swiglu_part(const float *gate, const float *up, float *out, int64_t i0, int64_t i1);

/* x[i] += y[i]. Unit: elements. */
void st_cpu_add(float *x, const float *y, int64_t n);
void st_cpu_add_part(float *x, const float *y, int64_t i0, int64_t i1);

/* Index of the largest logit, the lowest index on ties; NaN never wins.
 * Returns 0 for n_vocab <= 0. */
int32_t st_cpu_argmax(const float *logits, int64_t n_vocab);

/* Which matmul path runs: "avx512", "avx2+fma+f16c" or "portable".
 * force_portable(true) is st_cpu_isa_force(ST_CPU_ISA_PORTABLE); false
 * returns to the best level. */
const char *st_cpu_kernels_simd(void);
void st_cpu_kernels_force_portable(bool on);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_KERNELS_CPU_H */
