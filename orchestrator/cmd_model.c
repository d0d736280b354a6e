/* strata model [-m] FILE|DIR [--json] — describes a model: architecture,
 * hyper-parameters, parameter count, bytes per dtype, per layer, embedding and
 * output, tokenizer and chat template. Reads headers only. */
#include "orchestrator/cli.h"
#include "model/model.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: strata model [-m] [FILE|DIR] [--json]\n\n"
        "Describes a model without loading its weights: architecture, hyper-parameters,\n"
        "parameter count, bytes per dtype, bytes per layer, embedding and output sizes,\n"
        "tokenizer and chat template.\n\n"
        "  -m, --model PATH  a GGUF file, or a Hugging Face directory (config.json + *.safetensors);\n"
        "                    the path may also be given without -m. Without a path: the bundled\n"
        "                    model (" ST_CLI_BUNDLED_MODEL ")\n"
        "  --json            print one JSON object instead of text\n"
        "  -h, --help        this text\n");
}

static const char *tok_name(st_tokenizer_source s) {
    switch (s) {
    case ST_TOKSRC_HF_JSON: return "hf_json";
    case ST_TOKSRC_GGUF: return "gguf";
    default: return "none";
    }
}

static const char *scaling_name(st_rope_scaling s) {
    switch (s) {
    case ST_ROPE_SCALING_LLAMA3: return "llama3";
    case ST_ROPE_SCALING_LINEAR: return "linear";
    default: return "none";
    }
}

struct dtype_sum { uint64_t bytes[ST_DTYPE_COUNT]; int64_t tensors[ST_DTYPE_COUNT]; };

static void sum_dtypes(const st_model *m, struct dtype_sum *d) {
    memset(d, 0, sizeof *d);
    for (int64_t i = 0; i < m->n_tensors; i++) {
        d->bytes[m->tensors[i].dtype] += m->tensors[i].bytes;
        d->tensors[m->tensors[i].dtype]++;
    }
}

static char *gguf_tok_model(const st_model *m) {
    struct st_gguf_str s;
    if (!m->gguf || st_gguf_find(m->gguf, "tokenizer.ggml.model") < 0) return NULL;
    if (st_gguf_get_str(m->gguf, "tokenizer.ggml.model", &s)) return NULL;
    return strndup(s.ptr, s.len);
}

/* A float hyper-parameter as JSON with float precision (1e-06, not 9.99999997e-07). */
static json_t *jfloat(float f) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.9g", f);
    for (int p = 6; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, f);
        if (strtof(buf, NULL) == f) break;
    }
    return json_real(strtod(buf, NULL));
}

static int print_json(const st_model *m) {
    const struct st_hparams *hp = &m->hp;
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(m->path));
    json_object_set_new(o, "format", json_string(m->format == ST_MODEL_GGUF ? "gguf" : "hf_dir"));
    json_t *files = json_array();
    for (int i = 0; i < m->n_files; i++) {
        json_t *f = json_object();
        json_object_set_new(f, "path", json_string(m->files[i].path));
        json_object_set_new(f, "bytes", json_integer((json_int_t)m->files[i].size));
        json_array_append_new(files, f);
    }
    json_object_set_new(o, "files", files);
    json_object_set_new(o, "architecture", json_string(st_arch_name(hp->arch)));
    json_t *h = json_object();
    json_object_set_new(h, "n_embd", json_integer(hp->n_embd));
    json_object_set_new(h, "n_ff", json_integer(hp->n_ff));
    json_object_set_new(h, "n_layer", json_integer(hp->n_layer));
    json_object_set_new(h, "n_head", json_integer(hp->n_head));
    json_object_set_new(h, "n_head_kv", json_integer(hp->n_head_kv));
    json_object_set_new(h, "head_dim", json_integer(hp->head_dim));
    json_object_set_new(h, "n_vocab", json_integer(hp->n_vocab));
    json_object_set_new(h, "n_ctx_train", json_integer(hp->n_ctx_train));
    json_object_set_new(h, "rms_eps", jfloat(hp->rms_eps));
    json_object_set_new(h, "rope_theta", jfloat(hp->rope_theta));
    json_object_set_new(h, "rope_layout", json_string(hp->rope_layout == ST_ROPE_NORM ? "norm" : "neox"));
    json_object_set_new(h, "rope_scaling", json_string(scaling_name(hp->rope_scaling)));
    if (hp->rope_scaling != ST_ROPE_SCALING_NONE) {
        json_object_set_new(h, "rope_factor", jfloat(hp->rope_factor));
        json_object_set_new(h, "rope_low_freq_factor", jfloat(hp->rope_low_freq_factor));
        json_object_set_new(h, "rope_high_freq_factor", jfloat(hp->rope_high_freq_factor));
        json_object_set_new(h, "rope_orig_ctx", json_integer(hp->rope_orig_ctx));
    }
    json_object_set_new(h, "qkv_bias", json_boolean(hp->qkv_bias));
    json_object_set_new(h, "o_bias", json_boolean(hp->o_bias));
    json_object_set_new(h, "qk_norm", json_boolean(hp->qk_norm));
    json_object_set_new(h, "tied_embeddings", json_boolean(hp->tied_embeddings));
    json_object_set_new(o, "hparams", h);
    json_object_set_new(o, "params", json_integer(st_model_param_count(m)));
    json_object_set_new(o, "n_tensors", json_integer(m->n_tensors));
    json_object_set_new(o, "total_bytes", json_integer((json_int_t)st_model_total_bytes(m)));
    struct dtype_sum d;
    sum_dtypes(m, &d);
    json_t *bd = json_object();
    for (int t = 0; t < ST_DTYPE_COUNT; t++) {
        if (!d.tensors[t]) continue;
        json_t *e = json_object();
        json_object_set_new(e, "bytes", json_integer((json_int_t)d.bytes[t]));
        json_object_set_new(e, "tensors", json_integer(d.tensors[t]));
        json_object_set_new(bd, st_dtype_name((st_dtype)t), e);
    }
    json_object_set_new(o, "dtypes", bd);
    json_t *lb = json_array();
    for (int64_t l = 0; l < hp->n_layer; l++) json_array_append_new(lb, json_integer((json_int_t)st_model_layer_bytes(m, l)));
    json_object_set_new(o, "layer_bytes", lb);
    const struct st_tensor *emb = st_model_global_tensor(m, ST_T_TOK_EMBD), *out = st_model_global_tensor(m, ST_T_OUTPUT);
    const struct st_tensor *onorm = st_model_global_tensor(m, ST_T_OUTPUT_NORM);
    json_t *je = json_object();
    json_object_set_new(je, "bytes", json_integer((json_int_t)emb->bytes));
    json_object_set_new(je, "dtype", json_string(st_dtype_name(emb->dtype)));
    json_object_set_new(o, "embedding", je);
    json_t *jo = json_object();
    json_object_set_new(jo, "bytes", json_integer(hp->tied_embeddings ? 0 : (json_int_t)out->bytes));
    json_object_set_new(jo, "dtype", json_string(st_dtype_name(out->dtype)));
    json_object_set_new(jo, "tied", json_boolean(hp->tied_embeddings));
    json_object_set_new(jo, "norm_bytes", json_integer((json_int_t)onorm->bytes));
    json_object_set_new(o, "output", jo);
    json_t *jt = json_object();
    json_object_set_new(jt, "source", json_string(tok_name(m->tok_source)));
    if (m->tokenizer_path) json_object_set_new(jt, "path", json_string(m->tokenizer_path));
    char *gm = gguf_tok_model(m);
    if (gm) json_object_set_new(jt, "gguf_model", json_string(gm));
    free(gm);
    json_object_set_new(o, "tokenizer", jt);
    json_object_set_new(o, "chat_template", json_boolean(m->chat_template != NULL));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(o);
    if (!text) return st_cli_report(st_error_set(ST_ERR_NOMEM, "out of memory writing JSON"));
    puts(text);
    free(text);
    return 0;
}

static void print_text(const st_model *m) {
    const struct st_hparams *hp = &m->hp;
    char b1[32], b2[32];
    printf("model: %s\n", m->path);
    printf("format: %s, %d file%s\n", m->format == ST_MODEL_GGUF ? "GGUF" : "Hugging Face directory (safetensors)",
           m->n_files, m->n_files == 1 ? "" : "s");
    printf("architecture: %s\n", st_arch_name(hp->arch));
    printf("  layers %lld, hidden %lld, MLP %lld, heads %lld (KV heads %lld), head_dim %lld\n", (long long)hp->n_layer,
           (long long)hp->n_embd, (long long)hp->n_ff, (long long)hp->n_head, (long long)hp->n_head_kv,
           (long long)hp->head_dim);
    printf("  vocab %lld, training context %lld, rms_eps %g\n", (long long)hp->n_vocab, (long long)hp->n_ctx_train,
           hp->rms_eps);
    printf("  rope: theta %g, layout %s, scaling %s", hp->rope_theta, hp->rope_layout == ST_ROPE_NORM ? "norm (adjacent pairs)" : "neox (half split)",
           scaling_name(hp->rope_scaling));
    if (hp->rope_scaling == ST_ROPE_SCALING_LINEAR) printf(" (factor %g)", hp->rope_factor);
    if (hp->rope_scaling == ST_ROPE_SCALING_LLAMA3) {
        if (st_model_global_tensor(m, ST_T_ROPE_FREQS)) printf(" (rope_freqs.weight)");
        else printf(" (factor %g, low %g, high %g, original context %lld)", hp->rope_factor, hp->rope_low_freq_factor,
                    hp->rope_high_freq_factor, (long long)hp->rope_orig_ctx);
    }
    printf("\n  q/k/v bias %s, o bias %s, q/k norm %s, tied embeddings %s\n", hp->qkv_bias ? "yes" : "no",
           hp->o_bias ? "yes" : "no", hp->qk_norm ? "yes" : "no", hp->tied_embeddings ? "yes" : "no");
    int64_t p = st_model_param_count(m);
    printf("parameters: %lld (%.2f M)\n", (long long)p, (double)p / 1e6);
    printf("bytes: %s in %lld tensors\n", st_format_bytes(st_model_total_bytes(m), b1, sizeof b1), (long long)m->n_tensors);
    struct dtype_sum d;
    sum_dtypes(m, &d);
    for (int t = 0; t < ST_DTYPE_COUNT; t++) {
        if (!d.tensors[t]) continue;
        printf("  %-7s %12s  %lld tensors\n", st_dtype_name((st_dtype)t), st_format_bytes(d.bytes[t], b1, sizeof b1),
               (long long)d.tensors[t]);
    }
    printf("per layer:\n");
    for (int64_t l = 0; l < hp->n_layer;) {
        uint64_t b = st_model_layer_bytes(m, l);
        int64_t e = l;
        while (e + 1 < hp->n_layer && st_model_layer_bytes(m, e + 1) == b) e++;
        if (e > l) printf("  layers %lld-%lld  %s each\n", (long long)l, (long long)e, st_format_bytes(b, b1, sizeof b1));
        else printf("  layer %lld  %s\n", (long long)l, st_format_bytes(b, b1, sizeof b1));
        l = e + 1;
    }
    const struct st_tensor *emb = st_model_global_tensor(m, ST_T_TOK_EMBD), *out = st_model_global_tensor(m, ST_T_OUTPUT);
    printf("embedding: %s (%s)\n", st_format_bytes(emb->bytes, b1, sizeof b1), st_dtype_name(emb->dtype));
    if (hp->tied_embeddings) printf("output: tied to the embedding\n");
    else printf("output: %s (%s)\n", st_format_bytes(out->bytes, b2, sizeof b2), st_dtype_name(out->dtype));
    char *gm = gguf_tok_model(m);
    if (m->tok_source == ST_TOKSRC_HF_JSON) printf("tokenizer: %s\n", m->tokenizer_path);
    else if (m->tok_source == ST_TOKSRC_GGUF) printf("tokenizer: GGUF vocabulary (%s)\n", gm ? gm : "?");
    else printf("tokenizer: none\n");
    free(gm);
    printf("chat template: %s\n", m->chat_template ? "yes" : "no");
}

int st_cmd_model(int argc, char **argv) {
    const char *path = NULL;
    char bundled[4096];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int g = st_cli_global(a);
        if (g == ST_CLI_GLOBAL_VERSION) { st_cli_print_version(); return 0; }
        if (g) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        const char *p = a;
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (i + 1 >= argc) return st_cli_usage_error("model", "%s needs a model path", a);
            p = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return st_cli_usage_error("model", "unknown option '%s'", a);
        }
        if (path) return st_cli_usage_error("model", "one model at a time (got '%s' and '%s')", path, p);
        path = p;
    }
    st_status s = ST_OK;
    if (!path) {
        if ((s = st_cli_bundled_model(bundled, sizeof bundled))) return st_cli_report(s);
        path = bundled;
    } else if ((s = st_cli_model_exists(NULL, path))) {
        return st_cli_report(s);
    }
    st_model *m = NULL;
    s = st_model_open(path, &m);
    if (s) return st_cli_report(s);
    int rc = 0;
    if (st_cli_json()) rc = print_json(m);
    else print_text(m);
    st_model_free(m);
    return rc;
}
