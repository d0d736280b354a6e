/* model/tokenizer_gguf.c — tokenizers from GGUF metadata (tokenizer.ggml.*):
 * "gpt2" byte-level BPE and "llama" SentencePiece BPE. */
#include "model/model-impl.h"
#include "model/tokenizer-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { GGUF_TT_UNDEFINED = 0, GGUF_TT_NORMAL, GGUF_TT_UNKNOWN, GGUF_TT_CONTROL, GGUF_TT_USER_DEFINED,
       GGUF_TT_UNUSED, GGUF_TT_BYTE };

struct pre_type {
    const char *name;
    const char *const *regex;
    bool nfc;              /* the HF tokenizer of these models normalises with NFC */
    bool ignore_merges;
    bool add_bos_default;
};

static const struct pre_type pre_types[] = {
    {"qwen2", &st_tok_regex_qwen2, true, false, false},
    {"deepseek-r1-qwen", &st_tok_regex_qwen2, true, false, false},
    {"llama-bpe", &st_tok_regex_llama3, false, true, true},
    {"llama3", &st_tok_regex_llama3, false, true, true},
    {"llama-v3", &st_tok_regex_llama3, false, true, true},
    {"gpt2", &st_tok_regex_gpt2, false, false, false},
    {"default", &st_tok_regex_gpt2, false, false, false},
};

static bool has_key(const struct st_gguf *g, const char *k) { return st_gguf_find(g, k) >= 0; }

static st_status opt_int(const struct st_gguf *g, const char *k, int64_t *v) {
    if (!has_key(g, k)) return ST_OK;
    return st_gguf_get_int(g, k, v);
}

static st_status opt_bool(const struct st_gguf *g, const char *k, bool *v) {
    if (!has_key(g, k)) return ST_OK;
    return st_gguf_get_bool(g, k, v);
}

/* "[PAD151700]" entries that older converters typed USER_DEFINED */
static bool is_pad_entry(const char *p, uint64_t n, uint64_t id) {
    char buf[32];
    int k = snprintf(buf, sizeof buf, "[PAD%llu]", (unsigned long long)id);
    return (uint64_t)k == n && !memcmp(buf, p, n);
}

static bool byte_token(const char *p, uint64_t n, int *byte) {
    if (n != 6 || memcmp(p, "<0x", 3) || p[5] != '>') return false;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = p[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return false;
        v = v * 16 + d;
    }
    *byte = v;
    return true;
}

st_status st_tokenizer_load_gguf_meta(const struct st_gguf *g, const char *path, st_tokenizer_t **out) {
    *out = NULL;
    st_status s;
    st_tokenizer_t *t = NULL;
    struct st_gguf_str model = {0}, pre = {0}, str;
    char *tmp = NULL;
    if (!has_key(g, "tokenizer.ggml.model")) {
        st_error_set(ST_ERR_FORMAT, "%s: no tokenizer in the metadata (tokenizer.ggml.model is missing)", path);
        return st_error_hint("use a GGUF converted with its vocabulary, or point -m at the Hugging Face directory");
    }
    if ((s = st_gguf_get_str(g, "tokenizer.ggml.model", &model))) return s;
    bool spm;
    if (model.len == 4 && !memcmp(model.ptr, "gpt2", 4)) spm = false;
    else if (model.len == 5 && !memcmp(model.ptr, "llama", 5)) spm = true;
    else {
        st_error_set(ST_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model \"%.*s\" is not supported", path,
                     (int)ST_MIN(model.len, 64), model.ptr);
        return st_error_hint("strata reads \"gpt2\" (byte-level BPE: Qwen, Llama 3) and \"llama\" (SentencePiece) vocabularies");
    }
    const struct pre_type *pt = NULL;
    if (!spm) {
        if (has_key(g, "tokenizer.ggml.pre")) {
            if ((s = st_gguf_get_str(g, "tokenizer.ggml.pre", &pre))) return s;
            for (size_t i = 0; i < ST_ARRAY_LEN(pre_types); i++)
                if (strlen(pre_types[i].name) == pre.len && !memcmp(pre_types[i].name, pre.ptr, pre.len)) pt = &pre_types[i];
            if (!pt) {
                st_error_set(ST_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre \"%.*s\" is not a pre-tokenizer strata knows", path,
                             (int)ST_MIN(pre.len, 64), pre.ptr);
                return st_error_hint("known: qwen2, deepseek-r1-qwen, llama-bpe, llama3, llama-v3, gpt2, default; "
                                     "or point -m at the Hugging Face directory with tokenizer.json");
            }
        } else {
            ST_WARN("%s: tokenizer.ggml.pre is missing; using the GPT-2 pre-tokenizer", path);
            pt = &pre_types[ST_ARRAY_LEN(pre_types) - 1];
        }
    }
    st_gguf_type et;
    uint64_t n = 0, n_types = 0, n_scores = 0;
    if ((s = st_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n))) return s;
    if (et != ST_GGUF_STRING) return st_gguf_arr_str(g, "tokenizer.ggml.tokens", 0, &str);   /* names the type mismatch */
    if (n == 0 || n > ST_MODEL_MAX_VOCAB) {
        st_error_set(ST_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %llu entries; a vocabulary has 1 to %d", path,
                     (unsigned long long)n, ST_MODEL_MAX_VOCAB);
        return st_error_hint("strata's limits are in docs/limits.md; is the file corrupt?");
    }
    bool have_types = has_key(g, "tokenizer.ggml.token_type");
    if (have_types && (s = st_gguf_get_arr(g, "tokenizer.ggml.token_type", NULL, &n_types))) return s;
    if (have_types && n_types != n) {
        st_error_set(ST_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens", path,
                     (unsigned long long)n_types, (unsigned long long)n);
        return st_error_hint("the vocabulary arrays disagree; convert the model again");
    }
    bool have_scores = has_key(g, "tokenizer.ggml.scores");
    if (have_scores && (s = st_gguf_get_arr(g, "tokenizer.ggml.scores", NULL, &n_scores))) return s;
    if (have_scores && n_scores != n) {
        st_error_set(ST_ERR_FORMAT, "%s: tokenizer.ggml.scores has %llu entries for %llu tokens", path,
                     (unsigned long long)n_scores, (unsigned long long)n);
        return st_error_hint("the vocabulary arrays disagree; convert the model again");
    }
    if (spm && !have_scores) {
        st_error_set(ST_ERR_FORMAT, "%s: a \"llama\" (SentencePiece) vocabulary needs tokenizer.ggml.scores", path);
        return st_error_hint("convert the model again with a current llama.cpp");
    }
    if ((s = st_tok_new(spm ? ST_TOKENIZER_SPM : ST_TOKENIZER_BPE, (int64_t)n, (size_t)n * 24, path, &t))) return s;
    size_t tmp_cap = 0;
    for (uint64_t i = 0; i < n; i++) {
        if ((s = st_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &str))) goto fail;
        int64_t ty = GGUF_TT_NORMAL;
        if (have_types && (s = st_gguf_arr_int(g, "tokenizer.ggml.token_type", i, &ty))) goto fail;
        uint32_t attr;
        switch (ty) {
        case GGUF_TT_CONTROL: attr = ST_TA_ADDED | ST_TA_SPECIAL; break;
        case GGUF_TT_USER_DEFINED: attr = is_pad_entry(str.ptr, str.len, i) ? ST_TA_UNUSED : ST_TA_ADDED; break;
        case GGUF_TT_UNUSED: attr = ST_TA_UNUSED; break;
        case GGUF_TT_UNKNOWN: attr = ST_TA_UNKNOWN; break;
        case GGUF_TT_BYTE: attr = ST_TA_BYTE; break;
        default: attr = ST_TA_NORMAL; break;
        }
        if (str.len > ST_TOK_MAX_TOKEN_BYTES) {
            s = st_error_set(ST_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%llu] is %llu bytes, more than the %d a token may have",
                             path, (unsigned long long)i, (unsigned long long)str.len, ST_TOK_MAX_TOKEN_BYTES);
            st_error_hint("strata's limits are in docs/limits.md; is the file corrupt?");
            goto fail;
        }
        if (!spm) {
            s = st_tok_set_bytelevel(t, (int32_t)i, str.ptr, str.len, attr);
        } else {
            /* every token is a merge candidate in SentencePiece BPE */
            attr |= ST_TA_NORMAL;
            int b;
            if ((attr & ST_TA_BYTE) && byte_token(str.ptr, str.len, &b)) {
                char c = (char)b;
                s = st_tok_set(t, (int32_t)i, str.ptr, str.len, &c, 1, attr);
                if (t->spm_byte[b] < 0) t->spm_byte[b] = (int32_t)i;
            } else if (attr & (ST_TA_ADDED | ST_TA_SPECIAL | ST_TA_UNKNOWN)) {
                s = st_tok_set(t, (int32_t)i, str.ptr, str.len, str.ptr, str.len, attr);
            } else {
                /* "▁" decodes to a space */
                if (str.len > tmp_cap) {
                    tmp_cap = str.len * 2 + 16;
                    char *p = st_realloc(tmp, tmp_cap, "a vocabulary entry");
                    if (!p) { s = ST_ERR_NOMEM; goto fail; }
                    tmp = p;
                }
                size_t k = 0;
                for (uint64_t j = 0; j < str.len; j++) {
                    if (j + 2 < str.len && !memcmp(str.ptr + j, "\xE2\x96\x81", 3)) { tmp[k++] = ' '; j += 2; }
                    else tmp[k++] = str.ptr[j];
                }
                s = st_tok_set(t, (int32_t)i, str.ptr, str.len, tmp, k, attr);
            }
            if (!s && (attr & ST_TA_UNKNOWN) && t->unk_id < 0) t->unk_id = (int32_t)i;
            double sc = 0;
            if (!s && (s = st_gguf_arr_float(g, "tokenizer.ggml.scores", i, &sc))) goto fail;
            t->tok[i].score = (float)sc;
        }
        if (s) goto fail;
    }
    if ((s = st_tok_build_vocab(t))) goto fail;
    bool add_bos = spm ? true : pt->add_bos_default, add_eos = false;
    int64_t bos = spm ? 1 : -1, eos = spm ? 2 : -1, unk = -1, eot = -1, eom = -1;
    if ((s = opt_bool(g, "tokenizer.ggml.add_bos_token", &add_bos))) goto fail;
    if ((s = opt_bool(g, "tokenizer.ggml.add_eos_token", &add_eos))) goto fail;
    if ((s = opt_int(g, "tokenizer.ggml.bos_token_id", &bos))) goto fail;
    if ((s = opt_int(g, "tokenizer.ggml.eos_token_id", &eos))) goto fail;
    if ((s = opt_int(g, "tokenizer.ggml.unknown_token_id", &unk))) goto fail;
    if ((s = opt_int(g, "tokenizer.ggml.eot_token_id", &eot))) goto fail;
    if ((s = opt_int(g, "tokenizer.ggml.eom_token_id", &eom))) goto fail;
    t->bos_id = bos >= 0 && bos < (int64_t)n ? (int32_t)bos : -1;
    t->eos_id = eos >= 0 && eos < (int64_t)n ? (int32_t)eos : -1;
    if (unk >= 0 && unk < (int64_t)n) t->unk_id = (int32_t)unk;
    if (add_bos && t->bos_id >= 0) {
        t->prefix_ids = st_malloc(sizeof(int32_t), "the BOS id");
        if (!t->prefix_ids) { s = ST_ERR_NOMEM; goto fail; }
        t->prefix_ids[0] = t->bos_id;
        t->n_prefix = 1;
    }
    if (add_eos && t->eos_id >= 0) {
        t->suffix_ids = st_malloc(sizeof(int32_t), "the EOS id");
        if (!t->suffix_ids) { s = ST_ERR_NOMEM; goto fail; }
        t->suffix_ids[0] = t->eos_id;
        t->n_suffix = 1;
    }
    if (spm) {
        bool asp = true;
        if ((s = opt_bool(g, "tokenizer.ggml.add_space_prefix", &asp))) goto fail;
        t->add_space_prefix = asp;
    } else {
        t->nfc = pt->nfc;
        t->ignore_merges = pt->ignore_merges;
        if ((s = st_tok_set_regex(t, *pt->regex, path))) goto fail;
        uint64_t nm = 0;
        if (has_key(g, "tokenizer.ggml.merges")) {
            if ((s = st_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &nm))) goto fail;
        } else {
            st_error_set(ST_ERR_FORMAT, "%s: a \"gpt2\" vocabulary needs tokenizer.ggml.merges", path);
            s = st_error_hint("convert the model again with a current llama.cpp");
            goto fail;
        }
        if (nm > ST_TOK_MAX_MERGES) {
            st_error_set(ST_ERR_FORMAT, "%s: tokenizer.ggml.merges has %llu entries, more than the %d strata reads", path,
                         (unsigned long long)nm, ST_TOK_MAX_MERGES);
            s = st_error_hint("strata's limits are in docs/limits.md; is the file corrupt?");
            goto fail;
        }
        if ((s = st_tok_reserve_merges(t, (int64_t)nm))) goto fail;
        for (uint64_t i = 0; i < nm; i++) {
            if ((s = st_gguf_arr_str(g, "tokenizer.ggml.merges", i, &str))) goto fail;
            uint64_t sp = 1;
            while (sp < str.len && str.ptr[sp] != ' ') sp++;
            if (sp >= str.len) {
                st_error_set(ST_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] \"%.*s\" is not two symbols separated by a space",
                             path, (unsigned long long)i, (int)ST_MIN(str.len, 64), str.ptr);
                s = st_error_hint("the merges array is corrupt; convert the model again");
                goto fail;
            }
            if (str.len > 2 * (uint64_t)ST_TOK_MAX_TOKEN_BYTES) {
                st_error_set(ST_ERR_FORMAT, "%s: tokenizer.ggml.merges[%llu] is %llu bytes, longer than two tokens may be",
                             path, (unsigned long long)i, (unsigned long long)str.len);
                s = st_error_hint("strata's limits are in docs/limits.md; is the file corrupt?");
                goto fail;
            }
            if ((s = st_tok_add_merge(t, str.ptr, sp, str.ptr + sp + 1, str.len - sp - 1, (int64_t)i, path))) goto fail;
        }
    }
    if ((s = st_tok_finish(t))) goto fail;
    if (eot >= 0 && eot < (int64_t)n && (s = st_tok_add_stop_internal(t, (int32_t)eot))) goto fail;
    if (eom >= 0 && eom < (int64_t)n && (s = st_tok_add_stop_internal(t, (int32_t)eom))) goto fail;
    free(tmp);
    *out = t;
    return ST_OK;
fail:
    free(tmp);
    st_tokenizer_free(t);
    return s;
}

st_status st_tokenizer_load_gguf(const st_model *m, st_tokenizer_t **out) {
    *out = NULL;
    if (!m->gguf) {
        st_error_set(ST_ERR_USAGE, "%s is not a GGUF file", m->path);
        return st_error_hint("use st_tokenizer_from_model, which picks tokenizer.json for Hugging Face directories");
    }
    return st_tokenizer_load_gguf_meta(m->gguf, m->path, out);
}

st_status st_tokenizer_from_model(const st_model *m, st_tokenizer_t **out) {
    *out = NULL;
    switch (m->tok_source) {
    case ST_TOKSRC_HF_JSON: return st_tokenizer_load_json(m->tokenizer_path, out);
    case ST_TOKSRC_GGUF: return st_tokenizer_load_gguf(m, out);
    default:
        st_error_set(ST_ERR_FORMAT, "%s: the model has no tokenizer", m->path);
        return st_error_hint("a Hugging Face directory needs tokenizer.json; a GGUF file needs tokenizer.ggml.* metadata");
    }
}

st_status st_tokenizer_load_path(const char *path, st_tokenizer_t **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        st_error_set(ST_ERR_IO, "%s: %s", path, strerror(errno));
        return st_error_hint("give a tokenizer.json, a model directory holding one, or a GGUF file");
    }
    if (S_ISDIR(sb.st_mode)) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tokenizer.json", path);
        if (access(p, R_OK) != 0) {
            st_error_set(ST_ERR_IO, "%s: no tokenizer.json in this directory", path);
            return st_error_hint("a Hugging Face model directory carries tokenizer.json; for a GGUF model name the .gguf file");
        }
        return st_tokenizer_load_json(p, out);
    }
    int fd = st_fault_hit(ST_FAULT_READ, path) ? (errno = EIO, -1) : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st_error_set(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char magic[4] = {0};
    ssize_t got = read(fd, magic, 4);
    if (got != 4 || memcmp(magic, "GGUF", 4) != 0) {
        close(fd);
        return st_tokenizer_load_json(path, out);
    }
    void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return st_error_set(ST_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    struct st_gguf *g = NULL;
    st_status s = st_gguf_parse(path, map, (uint64_t)sb.st_size, &g);
    if (!s) s = st_tokenizer_load_gguf_meta(g, path, out);
    st_gguf_free(g);
    munmap(map, (size_t)sb.st_size);
    return s;
}
