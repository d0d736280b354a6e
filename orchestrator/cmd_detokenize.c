/* strata detokenize [-m MODEL_OR_TOKENIZER] [IDS...] [--skip-special] [--lines] [--json]
 * Token ids (arguments or stdin) to text. */
#include "orchestrator/cli.h"
#include "model/tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: strata detokenize [-m PATH] [--skip-special] [--lines] [--json] [IDS...]\n\n"
        "Prints the text of token ids, the same text as Hugging Face tokenizers'\n"
        "decode(ids). Bytes that do not form valid UTF-8 become U+FFFD.\n\n"
        "  -m, --model PATH  a tokenizer.json, a model directory holding one, or a GGUF file\n"
        "                    (default: the bundled model, " ST_CLI_BUNDLED_MODEL ")\n"
        "  IDS               ids as arguments (\"9707 1879\", \"9707,1879\" or \"[9707, 1879]\");\n"
        "                    without them, ids are read from standard input\n"
        "  --lines           decode each input line on its own and end each with '\\n'\n"
        "                    (JSON arrays on separate lines, as 'tokenize --lines --json' prints,\n"
        "                    are always decoded one per line)\n"
        "  --skip-special    leave out special tokens (HF skip_special_tokens=True)\n"
        "  --json            print the text as a JSON string (one per line with --lines)\n"
        "  -h, --help        this text\n\n"
        "Without --lines the text is printed exactly, with no newline added.\n"
        "example: strata detokenize 1192 258 2144 385    (the bundled model: \"In the beginning God\")\n");
}

struct ids { int32_t *v; int64_t n, cap; };

static st_status push(struct ids *d, int32_t id) {
    if (d->n == d->cap) {
        int64_t c = d->cap ? d->cap * 2 : 256;
        int32_t *p = realloc(d->v, (size_t)c * sizeof *p);
        if (!p) return st_error_set(ST_ERR_NOMEM, "out of memory for token ids");
        d->v = p;
        d->cap = c;
    }
    d->v[d->n++] = id;
    return ST_OK;
}

/* ids separated by spaces, commas, brackets or newlines */
static st_status parse(const char *s, size_t len, const st_tokenizer_t *tok, const char *where, struct ids *out) {
    for (size_t i = 0; i < len;) {
        char c = s[i];
        if (c == ' ' || c == ',' || c == '\t' || c == '\r' || c == '\n' || c == '[' || c == ']') { i++; continue; }
        if (c < '0' || c > '9') {
            st_error_set(ST_ERR_USAGE, "detokenize: %s, byte %zu: '%c' is not part of a token id", where, i + 1, c);
            return st_error_hint("give ids as numbers separated by spaces or commas, or as JSON arrays");
        }
        int64_t v = 0;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            v = v * 10 + (s[i++] - '0');
            if (v > INT32_MAX) break;
        }
        if (v >= st_tokenizer_n_vocab(tok)) {
            st_error_set(ST_ERR_USAGE, "detokenize: %s, byte %zu: id %.*s is outside the vocabulary (0..%lld)", where,
                         start + 1, (int)ST_MIN(i - start, 20), s + start, (long long)st_tokenizer_n_vocab(tok) - 1);
            return st_error_hint("is this the tokenizer the ids came from?");
        }
        st_status st = push(out, (int32_t)v);
        if (st) return st;
    }
    return ST_OK;
}

static st_status emit(const st_tokenizer_t *tok, const struct ids *d, unsigned flags, bool newline, char **buf,
                      size_t *cap) {
    bool json = st_cli_json();
    size_t len = 0;
    st_tokenizer_decode(tok, d->v, d->n, flags, *buf, *cap, &len);
    if (len + 1 > *cap) {
        char *p = realloc(*buf, len + 1);
        if (!p) return st_error_set(ST_ERR_NOMEM, "out of memory for the decoded text");
        *buf = p;
        *cap = len + 1;
        st_tokenizer_decode(tok, d->v, d->n, flags, *buf, *cap, &len);
    }
    if (json) {
        /* the decoded text is valid UTF-8 (ill-formed bytes became U+FFFD) */
        json_t *str = json_stringn(*buf, len);
        if (!str) return st_error_set(ST_ERR_NOMEM, "out of memory for the JSON text");
        int rc = json_dumpf(str, stdout, JSON_ENCODE_ANY);
        json_decref(str);
        if (rc) return st_error_set(ST_ERR_IO, "writing standard output failed");
        putchar('\n');
        return ST_OK;
    }
    fwrite(*buf, 1, len, stdout);
    if (newline) putchar('\n');
    return ST_OK;
}

int st_cmd_detokenize(int argc, char **argv) {
    const char *path = NULL;
    char bundled[4096];
    bool lines = false;
    unsigned flags = 0;
    int n_id_args = 0;
    char **id_args = calloc((size_t)argc + 1, sizeof *id_args);
    if (!id_args) return st_cli_report(st_error_set(ST_ERR_NOMEM, "out of memory"));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int g = st_cli_global(a);
        if (g == ST_CLI_GLOBAL_VERSION) { st_cli_print_version(); free(id_args); return 0; }
        if (g) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); free(id_args); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (i + 1 >= argc) { free(id_args); return st_cli_usage_error("detokenize", "%s needs a path", a); }
            path = argv[++i];
        }
        else if (!strcmp(a, "--lines")) lines = true;
        else if (!strcmp(a, "--skip-special")) flags |= ST_DETOK_SKIP_SPECIAL;
        else if (a[0] == '-' && a[1]) { free(id_args); return st_cli_usage_error("detokenize", "unknown option '%s'", a); }
        else id_args[n_id_args++] = argv[i];
    }
    st_status s = path ? st_cli_model_exists("tokenizer", path) : st_cli_bundled_model(bundled, sizeof bundled);
    if (s) { free(id_args); return st_cli_report(s); }
    if (!path) path = bundled;
    st_tokenizer_t *tok = NULL;
    s = st_tokenizer_load_path(path, &tok);
    if (s) { free(id_args); return st_cli_report(s); }
    struct ids d = {0};
    char *out = NULL, *in = NULL;
    size_t out_cap = 0;
    if (n_id_args) {
        for (int k = 0; k < n_id_args && !s; k++) {
            char where[32];
            snprintf(where, sizeof where, "argument %d", k + 1);
            s = parse(id_args[k], strlen(id_args[k]), tok, where, &d);
        }
        if (!s) s = emit(tok, &d, flags, lines, &out, &out_cap);
        goto done;
    }
    /* standard input */
    size_t len = 0;
    if ((s = st_cli_read_stdin(&in, &len))) goto done;
    bool per_line = lines || memchr(in, '[', len) != NULL;
    if (!per_line) {
        s = parse(in, len, tok, "standard input", &d);
        if (!s) s = emit(tok, &d, flags, false, &out, &out_cap);
        goto done;
    }
    int line_no = 0;
    for (size_t o = 0; o < len && !s;) {
        const char *p = in + o, *nl = memchr(p, '\n', len - o);
        size_t l = nl ? (size_t)(nl - p) : len - o;
        char where[48];
        snprintf(where, sizeof where, "standard input line %d", ++line_no);
        d.n = 0;
        s = parse(p, l, tok, where, &d);
        if (!s) s = emit(tok, &d, flags, true, &out, &out_cap);
        o += l + 1;
    }
done:
    free(id_args);
    free(in);
    free(out);
    free(d.v);
    st_tokenizer_free(tok);
    if (fflush(stdout) != 0 && !s) s = st_error_set(ST_ERR_IO, "writing standard output failed");
    return s ? st_cli_report(s) : 0;
}
