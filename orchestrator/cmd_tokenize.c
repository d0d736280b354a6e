/* strata tokenize [-m MODEL_OR_TOKENIZER] [--lines] [--json] [--no-special] [--no-bos]
 * Reads text from stdin and prints token ids. */
#include "orchestrator/cli.h"
#include "model/tokenizer.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "usage: strata tokenize [-m PATH] [--lines] [--json] [--no-special] [--no-bos] < text\n\n"
        "Reads UTF-8 text from standard input and prints its token ids, the same ids as\n"
        "Hugging Face tokenizers' encode(text).\n\n"
        "  -m, --model PATH  a tokenizer.json, a model directory holding one, or a GGUF file\n"
        "                    (default: the bundled model, " ST_CLI_BUNDLED_MODEL ")\n"
        "  --lines           tokenize each input line on its own ('\\n' ends a line and is not\n"
        "                    part of it; a '\\r' before it is kept) and print one line per line\n"
        "  --json            print JSON arrays ([9707, 1879]) instead of space-separated ids\n"
        "  --no-special      do not match special tokens (<|im_start|> ...) in the text: they\n"
        "                    are tokenized as plain text (HF split_special_tokens=True)\n"
        "  --no-bos          do not add the BOS/EOS the tokenizer adds by default\n"
        "  -h, --help        this text\n\n"
        "Input that is not valid UTF-8 is repaired first (each ill-formed sequence becomes\n"
        "U+FFFD), as Python's bytes.decode(errors=\"replace\") does.\n"
        "example: echo 'In the beginning God' | strata tokenize --json\n");
}

static void print_ids(const int32_t *ids, int64_t n, bool json) {
    if (json) putchar('[');
    for (int64_t i = 0; i < n; i++) printf(i ? (json ? ", %d" : " %d") : "%d", ids[i]);
    puts(json ? "]" : "");
}

int st_cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    char bundled[4096];
    bool lines = false;
    unsigned flags = ST_TOK_DEFAULT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int g = st_cli_global(a);
        if (g == ST_CLI_GLOBAL_VERSION) { st_cli_print_version(); return 0; }
        if (g) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (i + 1 >= argc) return st_cli_usage_error("tokenize", "%s needs a path", a);
            path = argv[++i];
        }
        else if (!strcmp(a, "--lines")) lines = true;
        else if (!strcmp(a, "--no-special")) flags &= ~(unsigned)ST_TOK_PARSE_SPECIAL;
        else if (!strcmp(a, "--no-bos")) flags &= ~(unsigned)ST_TOK_ADD_SPECIAL;
        else return st_cli_usage_error("tokenize", "unknown option '%s'", a);
    }
    bool json = st_cli_json();
    st_status s = path ? st_cli_model_exists("tokenizer", path) : st_cli_bundled_model(bundled, sizeof bundled);
    if (s) return st_cli_report(s);
    if (!path) path = bundled;
    st_tokenizer_t *tok = NULL;
    s = st_tokenizer_load_path(path, &tok);
    if (s) return st_cli_report(s);
    size_t len = 0;
    char *text = NULL;
    int32_t *ids = NULL;
    int64_t n = 0, cap = 0;
    if ((s = st_cli_read_stdin(&text, &len))) goto done;
    if (!lines) {
        if ((s = st_tokenizer_encode_alloc(tok, text, len, flags, &ids, &n, &cap))) goto done;
        print_ids(ids, n, json);
    } else {
        for (size_t o = 0; o < len;) {
            const char *p = text + o, *nl = memchr(p, '\n', len - o);
            size_t l = nl ? (size_t)(nl - p) : len - o;
            n = 0;
            if ((s = st_tokenizer_encode_alloc(tok, p, l, flags, &ids, &n, &cap))) goto done;
            print_ids(ids, n, json);
            o += l + 1;
        }
    }
done:
    free(ids);
    free(text);
    st_tokenizer_free(tok);
    if (fflush(stdout) != 0 && !s) s = st_error_set(ST_ERR_IO, "writing standard output failed");
    return s ? st_cli_report(s) : 0;
}
