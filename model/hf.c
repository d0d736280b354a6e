/* Hugging Face model directories (formats.md §3.4, §4.1): config.json,
 * model.safetensors or model.safetensors.index.json + shards, tokenizer.json,
 * and the chat template (chat_template.jinja or tokenizer_config.json). */
#include "model/model-impl.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = st_malloc(a + b + 2, "path");
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t n = a;
    if (n && p[n - 1] != '/') p[n++] = '/';
    memcpy(p + n, name, b + 1);
    return p;
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static st_status json_open(const char *path, json_t **out) {
    json_error_t e;
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    st_status s = st_read_file_limit(path, ST_MODEL_MAX_JSON_BYTES, &text, &len);
    if (s) return s;
    *out = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    free(text);
    if (!*out) {
        st_error_set(ST_ERR_FORMAT, "%s:%d:%d: invalid JSON: %s", path, e.line, e.column, e.text);
        return st_error_hint("fix the JSON syntax at that line and column");
    }
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        st_error_set(ST_ERR_FORMAT, "%s:1:1: the top level is not a JSON object", path);
        return st_error_hint("a Hugging Face %s is a JSON object", strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    }
    return ST_OK;
}

/* ---- config.json ----------------------------------------------------------- */

struct cfg { const char *path; json_t *root; };

static st_status cfg_missing(const struct cfg *c, const char *key, const char *hint) {
    st_error_set(ST_ERR_FORMAT, "%s: required field '%s' is missing", c->path, key);
    return st_error_hint("%s", hint);
}

static st_status cfg_bad(const struct cfg *c, const char *key, const char *want) {
    st_error_set(ST_ERR_FORMAT, "%s: field '%s' must be %s", c->path, key, want);
    return st_error_hint("fix config.json; compare it with the model's original config on the Hub");
}

/* Positive integer; missing or null → def (def < 0: required). */
static st_status cfg_int(const struct cfg *c, json_t *obj, const char *key, int64_t def, int64_t *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (def < 0) {
            char hint[200];
            snprintf(hint, sizeof hint, "config.json must give '%s' (a positive integer); compare it with the model's "
                     "config.json on the Hugging Face Hub", key);
            return cfg_missing(c, key, hint);
        }
        *out = def;
        return ST_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > ((json_int_t)1 << 32)) {
        return cfg_bad(c, key, "a positive integer");
    }
    *out = (int64_t)json_integer_value(v);
    return ST_OK;
}

static st_status cfg_num(const struct cfg *c, json_t *obj, const char *key, double def, bool required, double *out) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required) {
            char hint[160];
            snprintf(hint, sizeof hint, "config.json must give '%s' (a number)", key);
            return cfg_missing(c, key, hint);
        }
        *out = def;
        return ST_OK;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v))) return cfg_bad(c, key, "a finite number");
    *out = json_number_value(v);
    return ST_OK;
}

static st_status cfg_bool(const struct cfg *c, const char *key, bool def, bool *out) {
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) { *out = def; return ST_OK; }
    if (!json_is_boolean(v)) return cfg_bad(c, key, "true or false");
    *out = json_is_true(v);
    return ST_OK;
}

static st_status cfg_rope(const struct cfg *c, struct st_hparams *hp) {
    st_status s;
    json_t *rp = json_object_get(c->root, "rope_parameters");
    json_t *rs = json_object_get(c->root, "rope_scaling");
    if (rp && !json_is_null(rp) && !json_is_object(rp)) return cfg_bad(c, "rope_parameters", "an object");
    if (rs && !json_is_null(rs) && !json_is_object(rs)) return cfg_bad(c, "rope_scaling", "an object or null");
    double theta = 10000.0;
    json_t *src = NULL;   /* the object carrying rope_type */
    if (json_is_object(rp)) {
        if ((s = cfg_num(c, rp, "rope_theta", 10000.0, false, &theta))) return st_error_prefix("rope_parameters");
        src = rp;
    }
    if (json_object_get(c->root, "rope_theta")) {
        if ((s = cfg_num(c, c->root, "rope_theta", 10000.0, false, &theta))) return s;
    }
    if (json_is_object(rs)) src = rs;
    char field[600];
    snprintf(field, sizeof field, "%s: field 'rope_theta'", c->path);
    if ((s = st_model_hp_float(field, theta, 1.0, true, ST_MODEL_MAX_ROPE_THETA, "config.json"))) return s;
    hp->rope_theta = (float)theta;
    hp->rope_scaling = ST_ROPE_SCALING_NONE;
    if (!src) return ST_OK;
    const char *where = src == rs ? "rope_scaling" : "rope_parameters";
    json_t *jt = json_object_get(src, "rope_type");
    if (!jt) jt = json_object_get(src, "type");
    const char *type = json_is_string(jt) ? json_string_value(jt) : "default";
    if (!strcmp(type, "default")) return ST_OK;
    double f;
    if ((s = cfg_num(c, src, "factor", 0, true, &f))) return st_error_prefix("%s", where);
    snprintf(field, sizeof field, "%s: field '%s.factor'", c->path, where);
    if ((s = st_model_hp_float(field, f, 0, true, ST_MODEL_MAX_ROPE_FACTOR, "config.json"))) return s;
    hp->rope_factor = (float)f;
    if (!strcmp(type, "linear")) {
        hp->rope_scaling = ST_ROPE_SCALING_LINEAR;
        return ST_OK;
    }
    if (!strcmp(type, "llama3")) {
        double lo, hi;
        int64_t orig;
        if ((s = cfg_num(c, src, "low_freq_factor", 0, true, &lo))) return st_error_prefix("%s", where);
        if ((s = cfg_num(c, src, "high_freq_factor", 0, true, &hi))) return st_error_prefix("%s", where);
        if ((s = cfg_int(c, src, "original_max_position_embeddings", -1, &orig))) return st_error_prefix("%s", where);
        if (!(hi > lo) || !(lo > 0)) return cfg_bad(c, "rope_scaling.high_freq_factor", "greater than low_freq_factor > 0");
        hp->rope_scaling = ST_ROPE_SCALING_LLAMA3;
        hp->rope_low_freq_factor = (float)lo;
        hp->rope_high_freq_factor = (float)hi;
        hp->rope_orig_ctx = orig;
        return ST_OK;
    }
    st_error_set(ST_ERR_UNSUPPORTED, "%s: %s.rope_type is '%s'; strata supports default, linear and llama3", c->path,
                 where, type);
    return st_error_hint("use a model without YaRN/dynamic RoPE scaling");
}

static st_status read_config(st_model *m, const char *dir) {
    st_status s;
    char *path = path_join(dir, "config.json");
    if (!path) return ST_ERR_NOMEM;
    struct cfg c = {.path = path, .root = NULL};
    if (!is_file(path)) {
        s = st_error_set(ST_ERR_FORMAT, "%s: no config.json in this directory", dir);
        st_error_hint("a Hugging Face model directory holds config.json next to model.safetensors; "
                      "download the whole repository (huggingface-cli download <repo> --local-dir DIR)");
        goto done;
    }
    if ((s = json_open(path, &c.root))) goto done;
    struct st_hparams *hp = &m->hp;

    const char *archname = NULL;
    json_t *archs = json_object_get(c.root, "architectures");
    if (json_is_array(archs) && json_array_size(archs) > 0 && json_is_string(json_array_get(archs, 0))) {
        archname = json_string_value(json_array_get(archs, 0));
    }
    json_t *mt = json_object_get(c.root, "model_type");
    const char *model_type = json_is_string(mt) ? json_string_value(mt) : NULL;
    if (archname && !strcmp(archname, "LlamaForCausalLM")) hp->arch = ST_ARCH_LLAMA;
    else if (archname && !strcmp(archname, "Qwen2ForCausalLM")) hp->arch = ST_ARCH_QWEN2;
    else if (archname && !strcmp(archname, "Qwen3ForCausalLM")) hp->arch = ST_ARCH_QWEN3;
    else if (!archname && model_type && !strcmp(model_type, "llama")) hp->arch = ST_ARCH_LLAMA;
    else if (!archname && model_type && !strcmp(model_type, "qwen2")) hp->arch = ST_ARCH_QWEN2;
    else if (!archname && model_type && !strcmp(model_type, "qwen3")) hp->arch = ST_ARCH_QWEN3;
    else if (!archname && !model_type) {
        s = cfg_missing(&c, "architectures", "config.json must name the architecture (\"architectures\": "
                        "[\"Qwen2ForCausalLM\"] or \"model_type\": \"qwen2\")");
        goto done;
    } else {
        s = st_error_set(ST_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported; strata runs LlamaForCausalLM, "
                         "Qwen2ForCausalLM and Qwen3ForCausalLM", path, archname ? archname : model_type);
        st_error_hint("use a Llama, Qwen2/2.5 or Qwen3 (dense) model");
        goto done;
    }
    hp->rope_layout = ST_ROPE_NEOX;

    if ((s = cfg_int(&c, c.root, "hidden_size", -1, &hp->n_embd))) goto done;
    if ((s = cfg_int(&c, c.root, "intermediate_size", -1, &hp->n_ff))) goto done;
    if ((s = cfg_int(&c, c.root, "num_hidden_layers", -1, &hp->n_layer))) goto done;
    if ((s = cfg_int(&c, c.root, "num_attention_heads", -1, &hp->n_head))) goto done;
    if ((s = cfg_int(&c, c.root, "vocab_size", -1, &hp->n_vocab))) goto done;
    if ((s = cfg_int(&c, c.root, "num_key_value_heads", hp->n_head, &hp->n_head_kv))) goto done;
    if ((s = cfg_int(&c, c.root, "head_dim", hp->n_embd / hp->n_head, &hp->head_dim))) goto done;
    json_t *hd = json_object_get(c.root, "head_dim");
    if ((!hd || json_is_null(hd)) && (hp->n_embd % hp->n_head || hp->head_dim % 2)) {
        s = st_error_set(ST_ERR_FORMAT, "%s: without 'head_dim' the head dimension is hidden_size %lld / "
                         "num_attention_heads %lld, which is not a whole even number", path, (long long)hp->n_embd,
                         (long long)hp->n_head);
        st_error_hint("one of the two is wrong; compare config.json with the model's original on the Hub");
        goto done;
    }
    int64_t def_ctx = hp->arch == ST_ARCH_LLAMA ? 2048 : 32768;
    if ((s = cfg_int(&c, c.root, "max_position_embeddings", def_ctx, &hp->n_ctx_train))) goto done;
    double eps;
    if ((s = cfg_num(&c, c.root, "rms_norm_eps", 1e-6, false, &eps))) goto done;
    char where[600];
    snprintf(where, sizeof where, "%s: field 'rms_norm_eps'", path);
    if ((s = st_model_hp_float(where, eps, ST_MODEL_MIN_RMS_EPS, false, ST_MODEL_MAX_RMS_EPS, "config.json"))) goto done;
    hp->rms_eps = (float)eps;
    if ((s = cfg_rope(&c, hp))) goto done;
    if ((s = cfg_bool(&c, "tie_word_embeddings", false, &hp->tied_embeddings))) goto done;
    bool attention_bias = false, mlp_bias = false, sliding = false;
    if ((s = cfg_bool(&c, "attention_bias", false, &attention_bias))) goto done;
    if ((s = cfg_bool(&c, "mlp_bias", false, &mlp_bias))) goto done;
    if ((s = cfg_bool(&c, "use_sliding_window", false, &sliding))) goto done;
    json_t *act = json_object_get(c.root, "hidden_act");
    if (act && !(json_is_string(act) && !strcmp(json_string_value(act), "silu"))) {
        s = st_error_set(ST_ERR_UNSUPPORTED, "%s: hidden_act must be \"silu\" for %s models", path, st_arch_name(hp->arch));
        st_error_hint("this is not a standard Llama/Qwen checkpoint");
        goto done;
    }
    if (mlp_bias) {
        s = st_error_set(ST_ERR_UNSUPPORTED, "%s: mlp_bias is true; strata's MLP has no biases", path);
        st_error_hint("use a model with mlp_bias false (all released Llama models)");
        goto done;
    }
    if (sliding) ST_WARN("%s: use_sliding_window is true; strata runs full causal attention on every layer", path);
    hp->qkv_bias = hp->arch == ST_ARCH_QWEN2 || attention_bias;
    hp->o_bias = hp->arch != ST_ARCH_QWEN2 && attention_bias;
    hp->qk_norm = hp->arch == ST_ARCH_QWEN3;
done:
    json_decref(c.root);
    free(path);
    return s;
}

/* ---- weights ------------------------------------------------------------- */

static st_status read_index(st_model *m, const char *dir, const char *index_path) {
    st_status s;
    json_t *root = NULL;
    char *shard = NULL;
    const char **names = NULL;
    if ((s = json_open(index_path, &root))) return s;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        s = st_error_set(ST_ERR_FORMAT, "%s: \"weight_map\" is missing or empty", index_path);
        st_error_hint("the index maps each tensor name to its shard file; download it again");
        goto done;
    }
    if (json_object_size(wm) > ST_MODEL_MAX_TENSORS) {
        s = st_error_set(ST_ERR_FORMAT, "%s: weight_map lists %zu tensors, more than the %d strata reads", index_path,
                         json_object_size(wm), ST_MODEL_MAX_TENSORS);
        st_error_hint("is this a language model? strata's limits are in docs/limits.md");
        goto done;
    }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v)) {
            s = st_error_set(ST_ERR_FORMAT, "%s: weight_map entry for '%s' is not a file name", index_path, name);
            goto done;
        }
        const char *fname = json_string_value(v);
        if (!fname[0] || strchr(fname, '/') || !strcmp(fname, "..")) {
            s = st_error_set(ST_ERR_FORMAT, "%s: weight_map entry for '%s' names '%s', which is not a file in this directory",
                             index_path, name, fname);
            st_error_hint("shard names are plain file names such as model-00001-of-00002.safetensors");
            goto done;
        }
        shard = path_join(dir, fname);
        if (!shard) { s = ST_ERR_NOMEM; goto done; }
        bool seen = false;
        for (int i = 0; i < m->n_files; i++) if (!strcmp(m->files[i].path, shard)) seen = true;
        if (!seen) {
            if (!is_file(shard)) {
                s = st_error_set(ST_ERR_IO, "%s: shard '%s' (holding tensor '%s') does not exist", index_path, fname, name);
                st_error_hint("download every model-*.safetensors file of the repository into %s", dir);
                goto done;
            }
            int fi;
            if ((s = st_model_map_file(m, shard, &fi))) goto done;
            if ((s = st_safetensors_read(m, fi))) goto done;
        }
        free(shard);
        shard = NULL;
    }
    size_t nw = json_object_size(wm), k = 0, missing;
    names = st_malloc(sizeof(char *) * nw, "weight_map names");
    if (!names) { s = ST_ERR_NOMEM; goto done; }
    json_object_foreach(wm, name, v) names[k++] = name;
    if ((s = st_model_find_all(m, names, nw, &missing))) goto done;
    if (missing < nw) {
        s = st_error_set(ST_ERR_FORMAT, "%s: tensor '%s' is listed in weight_map but its shard '%s' does not contain it",
                         index_path, names[missing], json_string_value(json_object_get(wm, names[missing])));
        st_error_hint("the index and the shards come from different downloads; download them again");
        goto done;
    }
done:
    free(names);
    free(shard);
    json_decref(root);
    return s;
}

static st_status read_chat_template(st_model *m, const char *dir) {
    st_status s = ST_OK;
    char *path = path_join(dir, "chat_template.jinja");
    json_t *root = NULL;
    if (!path) return ST_ERR_NOMEM;
    if (is_file(path)) {
        size_t len;
        s = st_read_file(path, &m->chat_template, &len);
        goto done;
    }
    free(path);
    path = path_join(dir, "tokenizer_config.json");
    if (!path) return ST_ERR_NOMEM;
    if (!is_file(path)) goto done;
    if ((s = json_open(path, &root))) goto done;
    json_t *ct = json_object_get(root, "chat_template");
    if (json_is_string(ct)) {
        if (!(m->chat_template = st_strdup(json_string_value(ct), "the chat template"))) s = ST_ERR_NOMEM;
    } else if (json_is_array(ct)) {
        /* [{"name": "default", "template": "..."}, ...] */
        size_t i;
        json_t *e;
        json_array_foreach(ct, i, e) {
            json_t *n = json_object_get(e, "name"), *t = json_object_get(e, "template");
            if (json_is_string(n) && json_is_string(t) && !strcmp(json_string_value(n), "default") && !m->chat_template) {
                if (!(m->chat_template = st_strdup(json_string_value(t), "the chat template"))) s = ST_ERR_NOMEM;
            }
        }
    }
done:
    json_decref(root);
    free(path);
    return s;
}

st_status st_model_load_hf(st_model *m) {
    st_status s;
    const char *dir = m->path;
    char *index = NULL, *single = NULL, *tok = NULL;
    if ((s = read_config(m, dir))) goto done;
    index = path_join(dir, "model.safetensors.index.json");
    single = path_join(dir, "model.safetensors");
    tok = path_join(dir, "tokenizer.json");
    if (!index || !single || !tok) { s = ST_ERR_NOMEM; goto done; }
    if (is_file(index)) {
        if ((s = read_index(m, dir, index))) goto done;
    } else if (is_file(single)) {
        int fi;
        if ((s = st_model_map_file(m, single, &fi))) goto done;
        if ((s = st_safetensors_read(m, fi))) goto done;
    } else {
        s = st_error_set(ST_ERR_FORMAT, "%s: neither model.safetensors nor model.safetensors.index.json is here", dir);
        st_error_hint("download the weights too (huggingface-cli download <repo> --include '*.safetensors' '*.json' --local-dir DIR); "
                      "PyTorch .bin checkpoints are not read");
        goto done;
    }
    if (is_file(tok)) {
        m->tok_source = ST_TOKSRC_HF_JSON;
        m->tokenizer_path = tok;
        tok = NULL;
    }
    s = read_chat_template(m, dir);
done:
    free(index);
    free(single);
    free(tok);
    return s;
}
