/* The planner's view of an opened model file: exact stored bytes per block
 * and per global tensor, read from the tensor table (no weights are touched). */
#include "planner/planner-impl.h"

#include <string.h>

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    if (s && s[1]) return s + 1;
    return path;
}

st_status st_plan_model_from_model(const st_model *m, struct st_plan_model *out) {
    memset(out, 0, sizeof *out);
    const struct st_hparams *hp = &m->hp;
    if (hp->n_layer <= 0) return st_error_set(ST_ERR_INTERNAL, "planner: model %s has no layers", m->path);
    char name[256];
    snprintf(name, sizeof name, "%s", m->path ? base_name(m->path) : "model");
    size_t nl = strlen(name);
    while (nl > 0 && name[nl - 1] == '/') name[--nl] = 0;
    snprintf(out->name, sizeof out->name, "%s", name);
    out->arch = hp->arch;
    out->n_layer = hp->n_layer;
    out->n_embd = hp->n_embd;
    out->n_ff = hp->n_ff;
    out->n_vocab = hp->n_vocab;
    out->n_head = hp->n_head;
    out->n_head_kv = hp->n_head_kv;
    out->head_dim = hp->head_dim;
    out->n_ctx_train = hp->n_ctx_train;
    out->tied_embeddings = hp->tied_embeddings;
    out->qkv_bias = hp->qkv_bias;
    out->qk_norm = hp->qk_norm;
    if (st_plan_model_alloc(out, hp->n_layer) != ST_OK) return ST_ERR_NOMEM;
    if (pl_model_alloc_dtypes(out) != ST_OK) { st_plan_model_free(out); return ST_ERR_NOMEM; }
    out->names = m->format;

    const enum st_layer_role *mats = st_plan_matrix_roles;
    st_dtype first_t = ST_DTYPE_COUNT;
    bool uniform = true;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        uint64_t b = 0;
        for (int r = 0; r < ST_T_LAYER_ROLES; r++) {
            const struct st_tensor *t = st_model_layer_tensor(m, l, (enum st_layer_role)r);
            if (t) b += t->bytes;
        }
        double flops = 0;
        for (int i = 0; i < ST_PLAN_N_MATRICES; i++) {
            const struct st_tensor *t = st_model_layer_tensor(m, l, mats[i]);
            if (!t) continue;
            out->mat_dtypes[l * ST_PLAN_N_MATRICES + i] = (uint8_t)t->dtype;
            uint64_t elems = (uint64_t)t->ne[0] * (uint64_t)t->ne[1];
            flops += 2.0 * (double)elems;
            if (elems > out->max_matrix_elems) out->max_matrix_elems = elems;
            if (first_t == ST_DTYPE_COUNT) first_t = t->dtype;
            if (t->dtype != first_t) uniform = false;
        }
        out->layer_bytes[l] = b;
        out->layer_flops[l] = flops;
    }
    out->matrix_dtype = uniform ? first_t : ST_DTYPE_COUNT;
    snprintf(out->weights, sizeof out->weights, "%s", uniform && first_t != ST_DTYPE_COUNT ? st_dtype_name(first_t)
                                                                                           : "mixed");

    const struct st_tensor *embd = st_model_global_tensor(m, ST_T_TOK_EMBD);
    const struct st_tensor *norm = st_model_global_tensor(m, ST_T_OUTPUT_NORM);
    const struct st_tensor *rope = st_model_global_tensor(m, ST_T_ROPE_FREQS);
    int32_t out_idx = m->global_tensors[ST_T_OUTPUT];
    out->embd_bytes = embd ? embd->bytes : 0;
    out->embd_dtype = embd ? embd->dtype : ST_DTYPE_COUNT;
    out->lm_head_dtype = out_idx >= 0 ? m->tensors[out_idx].dtype : out->embd_dtype;
    out->output_norm_bytes = norm ? norm->bytes : 0;
    out->shared_bytes = rope ? rope->bytes : 0;
    if (out_idx >= 0) {
        out->lm_head_bytes = m->tensors[out_idx].bytes;
        out->tied_embeddings = false;
    } else {
        out->lm_head_bytes = out->embd_bytes;
        out->tied_embeddings = true;
    }
    out->output_flops = 2.0 * (double)hp->n_vocab * (double)hp->n_embd;
    uint64_t total = out->embd_bytes + out->output_norm_bytes + out->shared_bytes +
                     (out->tied_embeddings ? 0 : out->lm_head_bytes);
    for (int64_t l = 0; l < hp->n_layer; l++) total += out->layer_bytes[l];
    out->total_bytes = total;
    return ST_OK;
}
