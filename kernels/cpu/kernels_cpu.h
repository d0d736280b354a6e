/* kernels/cpu/kernels_cpu.h — the fp32 CPU kernels: one op per file, plain
 * pointers and sizes, no backend object. They are the reference every GPU
 * kernel is tested against and the math of the CPU backend (devices/cpu/),
 * which splits the work of one op across its thread pool by calling the
 * *_part variants on disjoint ranges.
 *
 * Conventions
 *  - Activations are fp32, row-major [n_tok][width].
 *  - Weights are [rows = out][cols = in] in their stored dtype (model.h): every
 *    st_dtype is accepted; F32/F16/BF16/Q8_0 are widened in registers (AVX2 +
 *    FMA + F16C when the CPU has them), the other quant types are dequantized
 *    one 256-element span at a time into a stack buffer.
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
 * sum of squares is taken in double (as ggml), the rest in fp32 (as HF).
 * x and out may alias. Unit: rows. */
void st_cpu_rmsnorm(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out);
void st_cpu_rmsnorm_part(const float *x, const float *w, int64_t rows, int64_t n, float eps, float *out,
                         int64_t r0, int64_t r1);

/* y[t][r] = sum_c W[r][c] * x[t][c] (+ bias[r]) for W (rows, cols) in dtype,
 * x (n_tok, cols), y (n_tok, rows). bias may be NULL. Each weight row is read
 * from memory once per call (tokens are processed in register blocks while
 * the row stays in L1). ST_ERR_UNSUPPORTED when cols is not a whole number of
 * the dtype's blocks. Unit: weight rows. */
st_status st_cpu_matmul(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                        const float *x, int64_t n_tok, float *y);
st_status st_cpu_matmul_part(const void *w, st_dtype dtype, int64_t rows, int64_t cols, const float *bias,
                             const float *x, int64_t n_tok, float *y, int64_t r0, int64_t r1);

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
 * score = (q . k) * scale in fp32; softmax in fp32, evaluated tile by tile
 * (256 keys) with a running max, so no scratch beyond the stack is needed.
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

/* out[i] = gate[i] / (1 + exp(-gate[i])) * up[i]; out may alias gate or up. Unit: elements. */
void st_cpu_swiglu(const float *gate, const float *up, int64_t n, float *out);
void st_cpu_swiglu_part(const float *gate, const float *up, float *out, int64_t i0, int64_t i1);

/* x[i] += y[i]. Unit: elements. */
void st_cpu_add(float *x, const float *y, int64_t n);
void st_cpu_add_part(float *x, const float *y, int64_t i0, int64_t i1);

/* Index of the largest logit, the lowest index on ties; NaN never wins.
 * Returns 0 for n_vocab <= 0. */
int32_t st_cpu_argmax(const float *logits, int64_t n_vocab);

/* Which matmul path runs: "avx2+fma+f16c" or "portable". Tests may force the
 * portable path (process-wide; not thread-safe against running kernels). */
const char *st_cpu_kernels_simd(void);
void st_cpu_kernels_force_portable(bool on);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_KERNELS_CPU_H */
