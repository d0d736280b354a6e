/* embed: token rows of the embedding table, widened to fp32. */
#include "kernels/cpu/kernels_cpu.h"

st_status st_cpu_embed_part(const void *table, st_dtype dtype, int64_t n_vocab, int64_t n_embd,
                            const int32_t *ids, int64_t n_tok, float *out, int64_t t0, int64_t t1) {
    size_t row_bytes = st_dtype_row_bytes(dtype, n_embd);
    for (int64_t t = t0; t < t1; t++) {
        int32_t id = ids[t];
        if (id < 0 || id >= n_vocab) {
            st_error_set(ST_ERR_USAGE, "embed: token id %d at position %lld is outside the vocabulary [0, %lld)",
                         id, (long long)t, (long long)n_vocab);
            return st_error_hint("token ids must come from this model's tokenizer");
        }
        if (st_dtype_to_f32(dtype, (const uint8_t *)table + (size_t)id * row_bytes, out + t * n_embd, n_embd) != ST_OK)
            return st_error_prefix("embed");
    }
    return ST_OK;
}

st_status st_cpu_embed(const void *table, st_dtype dtype, int64_t n_vocab, int64_t n_embd,
                       const int32_t *ids, int64_t n_tok, float *out) {
    return st_cpu_embed_part(table, dtype, n_vocab, n_embd, ids, n_tok, out, 0, n_tok);
}
