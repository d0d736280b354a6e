/* Loads every fixture model in both formats and checks hyper-parameters
 * against config.json (read here with jansson, independently of hf.c), tensor
 * shapes against the hyper-parameters, and the bytes of the GGUF files against
 * the safetensors weights written by transformers (llama Q/K rows permuted as
 * convert_hf_to_gguf.py does, F16 = round-to-nearest-even of the F32 value). */
#include "check.h"
#include "model/model.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

static const char *const names[] = {"qwen2-tiny", "qwen3-tiny", "llama-tiny"};

static int64_t jint(json_t *o, const char *k, int64_t def) {
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

static void check_hparams(const st_model *m, json_t *cfg, const char *what, bool gguf) {
    const struct st_hparams *hp = &m->hp;
    const char *arch = json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0));
    st_arch want_arch = !strcmp(arch, "LlamaForCausalLM") ? ST_ARCH_LLAMA
                      : !strcmp(arch, "Qwen2ForCausalLM") ? ST_ARCH_QWEN2 : ST_ARCH_QWEN3;
    int64_t E = jint(cfg, "hidden_size", -1), H = jint(cfg, "num_attention_heads", -1);
    CHECK_MSG(hp->arch == want_arch, "%s: arch %s", what, st_arch_name(hp->arch));
    CHECK_MSG(hp->n_embd == E, "%s: n_embd %lld", what, (long long)hp->n_embd);
    CHECK_MSG(hp->n_ff == jint(cfg, "intermediate_size", -1), "%s: n_ff", what);
    CHECK_MSG(hp->n_layer == jint(cfg, "num_hidden_layers", -1), "%s: n_layer", what);
    CHECK_MSG(hp->n_head == H, "%s: n_head", what);
    CHECK_MSG(hp->n_head_kv == jint(cfg, "num_key_value_heads", H), "%s: n_head_kv", what);
    CHECK_MSG(hp->head_dim == jint(cfg, "head_dim", E / H), "%s: head_dim %lld", what, (long long)hp->head_dim);
    CHECK_MSG(hp->n_vocab == jint(cfg, "vocab_size", -1), "%s: n_vocab %lld", what, (long long)hp->n_vocab);
    CHECK_MSG(hp->n_ctx_train == jint(cfg, "max_position_embeddings", -1), "%s: n_ctx_train", what);
    CHECK_MSG(hp->rms_eps == (float)json_real_value(json_object_get(cfg, "rms_norm_eps")), "%s: rms_eps %g", what, hp->rms_eps);
    json_t *rp = json_object_get(cfg, "rope_parameters");
    CHECK_MSG(hp->rope_theta == (float)json_number_value(json_object_get(rp, "rope_theta")), "%s: rope_theta %g", what, hp->rope_theta);
    CHECK_MSG(hp->tied_embeddings == json_is_true(json_object_get(cfg, "tie_word_embeddings")), "%s: tied", what);
    CHECK_MSG(hp->qkv_bias == (want_arch == ST_ARCH_QWEN2), "%s: qkv_bias", what);
    CHECK_MSG(!hp->o_bias, "%s: o_bias", what);
    CHECK_MSG(hp->qk_norm == (want_arch == ST_ARCH_QWEN3), "%s: qk_norm", what);
    st_rope_layout want_layout = gguf && want_arch == ST_ARCH_LLAMA ? ST_ROPE_NORM : ST_ROPE_NEOX;
    CHECK_MSG(hp->rope_layout == want_layout, "%s: rope layout", what);
    const char *rt = json_string_value(json_object_get(rp, "rope_type"));
    if (!strcmp(rt, "llama3")) {
        CHECK_MSG(hp->rope_scaling == ST_ROPE_SCALING_LLAMA3, "%s: rope scaling", what);
        if (gguf) {
            const struct st_tensor *rf = st_model_global_tensor(m, ST_T_ROPE_FREQS);
            CHECK_MSG(rf && rf->ne[0] == hp->head_dim / 2 && rf->dtype == ST_DTYPE_F32, "%s: rope_freqs", what);
        } else {
            CHECK(hp->rope_factor == (float)json_number_value(json_object_get(rp, "factor")));
            CHECK(hp->rope_low_freq_factor == (float)json_number_value(json_object_get(rp, "low_freq_factor")));
            CHECK(hp->rope_high_freq_factor == (float)json_number_value(json_object_get(rp, "high_freq_factor")));
            CHECK(hp->rope_orig_ctx == jint(rp, "original_max_position_embeddings", -1));
        }
    } else {
        CHECK_MSG(hp->rope_scaling == ST_ROPE_SCALING_NONE, "%s: rope scaling", what);
        CHECK(st_model_global_tensor(m, ST_T_ROPE_FREQS) == NULL);
    }
    CHECK_MSG(m->tok_source == ST_TOKSRC_NONE && !m->chat_template, "%s: no tokenizer in fixtures", what);
}

/* Expected [ne0, ne1] per role from config values. */
static void check_shapes(const st_model *m, const char *what) {
    const struct st_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, F = hp->n_ff, D = hp->head_dim, Q = hp->n_head * D, KV = hp->n_head_kv * D;
    const int64_t want[ST_T_LAYER_ROLES][2] = {
        [ST_T_ATTN_NORM] = {E, 1}, [ST_T_WQ] = {E, Q}, [ST_T_WK] = {E, KV}, [ST_T_WV] = {E, KV},
        [ST_T_BQ] = {Q, 1}, [ST_T_BK] = {KV, 1}, [ST_T_BV] = {KV, 1}, [ST_T_WO] = {Q, E}, [ST_T_BO] = {E, 1},
        [ST_T_Q_NORM] = {D, 1}, [ST_T_K_NORM] = {D, 1}, [ST_T_FFN_NORM] = {E, 1},
        [ST_T_W_GATE] = {E, F}, [ST_T_W_UP] = {E, F}, [ST_T_W_DOWN] = {F, E},
    };
    uint64_t sum = 0;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        uint64_t lb = 0;
        for (int r = 0; r < ST_T_LAYER_ROLES; r++) {
            const struct st_tensor *t = st_model_layer_tensor(m, l, (enum st_layer_role)r);
            bool present = !((r == ST_T_BQ || r == ST_T_BK || r == ST_T_BV) && !hp->qkv_bias) &&
                           !(r == ST_T_BO && !hp->o_bias) && !((r == ST_T_Q_NORM || r == ST_T_K_NORM) && !hp->qk_norm);
            CHECK_MSG((t != NULL) == present, "%s: layer %lld role %d presence", what, (long long)l, r);
            if (!t) continue;
            CHECK_MSG(t->ne[0] == want[r][0] && t->ne[1] == want[r][1] && t->ne[2] == 1,
                      "%s: %s is [%lld, %lld], want [%lld, %lld]", what, t->name, (long long)t->ne[0],
                      (long long)t->ne[1], (long long)want[r][0], (long long)want[r][1]);
            CHECK_MSG(t->bytes == st_dtype_row_bytes(t->dtype, t->ne[0]) * (size_t)t->ne[1], "%s: %s bytes", what, t->name);
            lb += t->bytes;
        }
        CHECK(st_model_layer_bytes(m, l) == lb);
        sum += lb;
    }
    const struct st_tensor *emb = st_model_global_tensor(m, ST_T_TOK_EMBD), *out = st_model_global_tensor(m, ST_T_OUTPUT);
    CHECK_MSG(emb && emb->ne[0] == E && emb->ne[1] == hp->n_vocab, "%s: embedding shape", what);
    CHECK_MSG(out && out->ne[0] == E && out->ne[1] == hp->n_vocab, "%s: output shape", what);
    CHECK_MSG((out == emb) == hp->tied_embeddings, "%s: tied output falls back to the embedding", what);
    sum += emb->bytes + (hp->tied_embeddings ? 0 : out->bytes) + st_model_global_tensor(m, ST_T_OUTPUT_NORM)->bytes;
    const struct st_tensor *rf = st_model_global_tensor(m, ST_T_ROPE_FREQS);
    if (rf) sum += rf->bytes;
    CHECK_MSG(st_model_total_bytes(m) == sum, "%s: total bytes %llu vs %llu", what,
              (unsigned long long)st_model_total_bytes(m), (unsigned long long)sum);
}

static float f32_at(const struct st_tensor *t, int64_t i) {
    float v;
    if (t->dtype == ST_DTYPE_F32) memcpy(&v, (const char *)t->data + 4 * i, 4);
    else { uint16_t h; memcpy(&h, (const char *)t->data + 2 * i, 2); v = st_f16_to_f32(h); }
    return v;
}

/* The GGUF tensor equals the HF tensor (rows permuted for llama Q/K; F16
 * values = RNE of the F32 value). */
static void compare_data(const st_model *hf, const st_model *gg, const char *what) {
    const struct st_hparams *hp = &hf->hp;
    bool llama = hp->arch == ST_ARCH_LLAMA;
    int64_t D = hp->head_dim;
    int64_t bad = 0, n_checked = 0;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        for (int r = 0; r < ST_T_LAYER_ROLES; r++) {
            const struct st_tensor *a = st_model_layer_tensor(hf, l, (enum st_layer_role)r);
            const struct st_tensor *b = st_model_layer_tensor(gg, l, (enum st_layer_role)r);
            if (!a || !b) { CHECK(!a && !b); continue; }
            bool perm = llama && (r == ST_T_WQ || r == ST_T_WK || r == ST_T_BQ || r == ST_T_BK);
            int64_t rows = a->ne[1], cols = a->ne[0];
            if (a->n_dims == 1) { rows = a->ne[0]; cols = 1; }
            for (int64_t gr = 0; gr < rows; gr++) {
                int64_t hr = gr;
                if (perm) { /* GGUF row 2i+s of a head = HF row s*D/2+i */
                    int64_t head = gr / D, j = gr % D;
                    hr = head * D + (j % 2) * (D / 2) + j / 2;
                }
                for (int64_t c = 0; c < cols; c++) {
                    float x = f32_at(a, hr * cols + c), y = f32_at(b, gr * cols + c);
                    float want = b->dtype == ST_DTYPE_F16 ? st_f16_to_f32(st_f32_to_f16(x)) : x;
                    if (memcmp(&want, &y, 4)) bad++;
                    n_checked++;
                }
            }
        }
    }
    const struct st_tensor *ea = st_model_global_tensor(hf, ST_T_OUTPUT), *eb = st_model_global_tensor(gg, ST_T_OUTPUT);
    for (int64_t i = 0; i < ea->ne[0] * ea->ne[1]; i++) {
        float x = f32_at(ea, i), y = f32_at(eb, i);
        float want = eb->dtype == ST_DTYPE_F16 ? st_f16_to_f32(st_f32_to_f16(x)) : x;
        if (memcmp(&want, &y, 4)) bad++;
        n_checked++;
    }
    CHECK_MSG(bad == 0 && n_checked > 10000, "%s: %lld of %lld values differ between HF and GGUF", what, (long long)bad,
              (long long)n_checked);
}

int main(void) {
    for (size_t i = 0; i < ST_ARRAY_LEN(names); i++) {
        char path[256], what[300];
        snprintf(path, sizeof path, "tests/fixtures/models/%s/hf/config.json", names[i]);
        json_error_t je;
        json_t *cfg = json_load_file(path, 0, &je);
        CHECK_MSG(cfg != NULL, "%s: %s", path, je.text);
        if (!cfg) continue;
        st_model *hf = NULL, *g32 = NULL, *g16 = NULL;
        snprintf(path, sizeof path, "tests/fixtures/models/%s/hf", names[i]);
        CHECK_OK(st_model_open(path, &hf));
        snprintf(path, sizeof path, "tests/fixtures/models/%s/%s-f32.gguf", names[i], names[i]);
        CHECK_OK(st_model_open(path, &g32));
        snprintf(path, sizeof path, "tests/fixtures/models/%s/%s-f16.gguf", names[i], names[i]);
        CHECK_OK(st_model_open(path, &g16));
        if (hf && g32 && g16) {
            snprintf(what, sizeof what, "%s hf", names[i]);
            CHECK(hf->format == ST_MODEL_HF_DIR && hf->gguf == NULL && hf->n_files == 1);
            check_hparams(hf, cfg, what, false);
            check_shapes(hf, what);
            snprintf(what, sizeof what, "%s gguf f32", names[i]);
            CHECK(g32->format == ST_MODEL_GGUF && g32->gguf != NULL);
            check_hparams(g32, cfg, what, true);
            check_shapes(g32, what);
            compare_data(hf, g32, what);
            snprintf(what, sizeof what, "%s gguf f16", names[i]);
            check_hparams(g16, cfg, what, true);
            check_shapes(g16, what);
            compare_data(hf, g16, what);
            CHECK(st_model_layer_tensor(g16, 0, ST_T_WQ)->dtype == ST_DTYPE_F16);
            CHECK(st_model_layer_tensor(g16, 0, ST_T_ATTN_NORM)->dtype == ST_DTYPE_F32);
            /* same parameters in every form (rope_freqs is generated, not a weight of HF) */
            const struct st_tensor *rf = st_model_global_tensor(g32, ST_T_ROPE_FREQS);
            int64_t extra = rf ? rf->ne[0] : 0;
            CHECK_MSG(st_model_param_count(hf) + extra == st_model_param_count(g32), "%s: params %lld vs %lld", names[i],
                      (long long)st_model_param_count(hf), (long long)st_model_param_count(g32));
            CHECK(st_model_param_count(g16) == st_model_param_count(g32));
            CHECK(st_model_total_bytes(g32) == st_model_total_bytes(hf) + (rf ? rf->bytes : 0));
            CHECK(st_model_total_bytes(g16) < st_model_total_bytes(g32));
            /* lookups */
            CHECK(st_model_find_tensor(g32, "blk.0.ffn_up.weight") == st_model_layer_tensor(g32, 0, ST_T_W_UP));
            CHECK(st_model_find_tensor(hf, "model.layers.1.mlp.down_proj.weight") == st_model_layer_tensor(hf, 1, ST_T_W_DOWN));
            CHECK(st_model_find_tensor(hf, "no.such.tensor") == NULL);
            CHECK(st_model_layer_tensor(hf, hf->hp.n_layer, ST_T_WQ) == NULL);
            CHECK(st_model_layer_tensor(hf, -1, ST_T_WQ) == NULL);
            /* GGUF metadata accessors */
            struct st_gguf_str s;
            CHECK_OK(st_gguf_get_str(g32->gguf, "general.architecture", &s));
            CHECK(s.len == strlen(st_arch_name(g32->hp.arch)) && !memcmp(s.ptr, st_arch_name(g32->hp.arch), s.len));
            CHECK_OK(st_gguf_get_str(g32->gguf, "general.name", &s));
            CHECK(s.len == strlen(names[i]) && !memcmp(s.ptr, names[i], s.len));
            int64_t v;
            char key[96];
            snprintf(key, sizeof key, "%s.block_count", st_arch_name(g32->hp.arch));
            CHECK_OK(st_gguf_get_int(g32->gguf, key, &v));
            CHECK(v == hf->hp.n_layer);
            CHECK(st_gguf_kv_type(g32->gguf, st_gguf_find(g32->gguf, key)) == ST_GGUF_U32);
            double d;
            CHECK_OK(st_gguf_get_float(g32->gguf, key, &d));   /* integers widen to float */
            CHECK(d == (double)hf->hp.n_layer);
            CHECK_ERR(st_gguf_get_int(g32->gguf, "general.architecture", &v), ST_ERR_FORMAT,
                      "'general.architecture' has type string, expected an integer");
            CHECK_ERR(st_gguf_get_int(g32->gguf, "no.such.key", &v), ST_ERR_FORMAT, "'no.such.key' is missing");
            bool bb;
            CHECK_ERR(st_gguf_get_bool(g32->gguf, key, &bb), ST_ERR_FORMAT, "expected bool");
            CHECK(st_gguf_find(g32->gguf, "general.alignment") < 0);
            int64_t n = st_gguf_n_kv(g32->gguf);
            CHECK(n >= 12 && !strcmp(st_gguf_key(g32->gguf, 0), "general.architecture"));
            CHECK(st_gguf_key(g32->gguf, n) == NULL);
            /* data pointers are aligned to 32 in GGUF */
            CHECK(((uintptr_t)st_model_layer_tensor(g32, 0, ST_T_WQ)->data - (uintptr_t)g32->files[0].map) % 32 == 0);
        }
        st_model_free(hf);
        st_model_free(g32);
        st_model_free(g16);
        json_decref(cfg);
    }
    st_model_free(NULL);
    return st_test_finish("model_load");
}
