/* bench_tokenizer — tokenizer load time and encoding speed on one core.
 *
 *   bench_tokenizer [--tokenizer PATH] [--corpus PATH] [--mb N] [--reps N]
 *                   [--json FILE] [--min-mbps X] [--max-load-ms X]
 *
 * Load: st_tokenizer_load_json of the Qwen3 tokenizer.json (11 MB), best and
 * median of --reps. Encode: the parity corpus (English, CJK, Arabic, code,
 * emoji, numbers, whitespace runs, CRLF, special-token strings, invalid UTF-8)
 * repeated to --mb MB and encoded in prompt-sized chunks (cut at a newline
 * near every 16 KiB), single thread; MB/s = input bytes / time, best of --reps.
 * Next to it, the physical reference measured in the same run: memcpy and one
 * UTF-8 repair pass (st_utf8_lossy, the first thing encode does to ill-formed
 * input) over the same buffer.
 * Correctness inside the benchmark: every repetition must give the same ids,
 * and decode(encode(chunk)) must equal utf8proc's NFC of the chunk for chunks
 * of valid UTF-8; otherwise exit 1. Thresholds missed: exit 1. */
#include "base/base.h"
#include "model/tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *tok_path = "tests/fixtures/tokenizers/qwen3/tokenizer.json";
    const char *corpus_path = "tests/tokenizer/corpus.txt";
    const char *json_path = NULL;
    double mb = 8, min_mbps = 5, max_load_ms = 300;
    int reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--tokenizer") && v) { tok_path = v; i++; }
        else if (!strcmp(a, "--corpus") && v) { corpus_path = v; i++; }
        else if (!strcmp(a, "--mb") && v) { mb = atof(v); i++; }
        else if (!strcmp(a, "--reps") && v) { reps = atoi(v); i++; }
        else if (!strcmp(a, "--json") && v) { json_path = v; i++; }
        else if (!strcmp(a, "--min-mbps") && v) { min_mbps = atof(v); i++; }
        else if (!strcmp(a, "--max-load-ms") && v) { max_load_ms = atof(v); i++; }
        else {
            fprintf(stderr, "usage: bench_tokenizer [--tokenizer PATH] [--corpus PATH] [--mb N] [--reps N] "
                            "[--json FILE] [--min-mbps X] [--max-load-ms X]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;

    /* ---- load ---- */
    double *load_ms = calloc((size_t)reps, sizeof *load_ms);
    st_tokenizer_t *tok = NULL;
    for (int r = 0; r < reps; r++) {
        st_tokenizer_free(tok);
        tok = NULL;
        double t0 = st_time_s();
        st_status s = st_tokenizer_load_json(tok_path, &tok);
        load_ms[r] = (st_time_s() - t0) * 1e3;
        if (s) {
            fprintf(stderr, "error: %s\n", st_last_error());
            return 1;
        }
    }
    qsort(load_ms, (size_t)reps, sizeof *load_ms, cmp_d);

    /* ---- input ---- */
    char *corpus = NULL;
    size_t clen = 0;
    if (st_read_file(corpus_path, &corpus, &clen)) {
        fprintf(stderr, "error: %s\n", st_last_error());
        return 1;
    }
    size_t total = (size_t)(mb * 1e6);
    if (total < clen) total = clen;
    char *buf = malloc(total + 1);
    for (size_t o = 0; o < total; o += clen) memcpy(buf + o, corpus, ST_MIN(clen, total - o));
    /* chunk boundaries: the first newline after every 16 KiB */
    size_t n_chunks = 0, cap_chunks = total / 16384 + 2;
    size_t *cut = malloc((cap_chunks + 1) * sizeof *cut);
    cut[0] = 0;
    for (size_t o = 0; o < total;) {
        size_t e = ST_MIN(o + 16384, total);
        while (e < total && buf[e - 1] != '\n') e++;
        cut[++n_chunks] = e;
        o = e;
    }

    /* ---- physical reference: memcpy and a UTF-8 scan of the same bytes ---- */
    char *copy = malloc(3 * total);
    double best_copy = 1e30, best_scan = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = st_time_s();
        memcpy(copy, buf, total);
        double t1 = st_time_s();
        size_t rl = st_utf8_lossy(buf, total, copy, 3 * total);
        double t2 = st_time_s();
        if (rl < total) return 1;
        best_copy = ST_MIN(best_copy, t1 - t0);
        best_scan = ST_MIN(best_scan, t2 - t1);
    }

    /* ---- encode ---- */
    int32_t *ids = NULL;
    int64_t n_ids = 0, cap_ids = 0;
    uint64_t first_sum = 0;
    int64_t first_n = -1;
    double best_enc = 1e30;
    int bad = 0;
    for (int r = 0; r < reps; r++) {
        uint64_t sum = 1469598103934665603ull;
        int64_t count = 0;
        double t0 = st_time_s();
        for (size_t c = 0; c < n_chunks; c++) {
            n_ids = 0;
            if (st_tokenizer_encode_alloc(tok, buf + cut[c], cut[c + 1] - cut[c], ST_TOK_DEFAULT, &ids, &n_ids, &cap_ids)) {
                fprintf(stderr, "error: %s\n", st_last_error());
                return 1;
            }
            for (int64_t k = 0; k < n_ids; k++) sum = (sum ^ (uint32_t)ids[k]) * 1099511628211ull;
            count += n_ids;
        }
        double dt = st_time_s() - t0;
        best_enc = ST_MIN(best_enc, dt);
        if (first_n < 0) { first_n = count; first_sum = sum; }
        else if (count != first_n || sum != first_sum) bad = 1;
    }
    /* round trip: decode(encode(x)) == NFC(x) on the corpus lines of valid UTF-8 */
    size_t checked = 0, dcap = 1 << 20;
    char *dec = malloc(dcap);
    for (size_t o = 0; o < clen;) {
        const char *p = corpus + o, *nl = memchr(p, '\n', clen - o);
        size_t l = nl ? (size_t)(nl - p) : clen - o;
        o += l + 1;
        if (!st_utf8_valid(p, l)) continue;
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t nl2 = utf8proc_map((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)l, &nfc,
                                            UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        n_ids = 0;
        st_tokenizer_encode_alloc(tok, p, l, ST_TOK_DEFAULT, &ids, &n_ids, &cap_ids);
        size_t dl;
        st_tokenizer_decode(tok, ids, n_ids, 0, dec, dcap, &dl);
        if (nl2 < 0 || dl != (size_t)nl2 || memcmp(dec, nfc, dl)) {
            fprintf(stderr, "round trip differs: %.*s\n", (int)l, p);
            bad = 1;
        }
        free(nfc);
        checked++;
    }

    double enc_mbps = (double)total / best_enc / 1e6;
    double copy_gbps = (double)total / best_copy / 1e9, scan_gbps = (double)total / best_scan / 1e9;
    double load_best = load_ms[0], load_med = load_ms[reps / 2];
    bool ok_speed = enc_mbps >= min_mbps, ok_load = load_med <= max_load_ms;

    printf("tokenizer: %s (vocab %lld)\n", tok_path, (long long)st_tokenizer_n_vocab(tok));
    printf("%-34s %12s %12s %s\n", "measure", "value", "threshold", "");
    printf("%-34s %9.1f ms %9.1f ms %s\n", "load tokenizer.json (median)", load_med, max_load_ms, ok_load ? "ok" : "MISSED");
    printf("%-34s %9.1f ms\n", "load tokenizer.json (best)", load_best);
    printf("%-34s %7.2f MB/s %7.2f MB/s %s\n", "encode, 1 thread (best)", enc_mbps, min_mbps, ok_speed ? "ok" : "MISSED");
    printf("%-34s %9.2f M/s\n", "tokens per second", (double)first_n / best_enc / 1e6);
    printf("%-34s %7.2f bytes\n", "bytes per token", (double)total / (double)first_n);
    printf("%-34s %7.2f GB/s\n", "reference: memcpy", copy_gbps);
    printf("%-34s %7.2f GB/s\n", "reference: UTF-8 repair pass", scan_gbps);
    printf("input: %.2f MB in %zu chunks, %lld tokens; round trip checked on %zu lines; %s\n", (double)total / 1e6,
           n_chunks, (long long)first_n, checked, bad ? "RESULTS DIFFER" : "results consistent");
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (f) {
            fprintf(f, "{\"bench\": \"tokenizer\", \"commit\": \"%s\", \"tokenizer\": \"%s\", \"load_ms_median\": %.2f, "
                       "\"load_ms_best\": %.2f, \"encode_mb_per_s\": %.3f, \"tokens\": %lld, \"input_bytes\": %zu, "
                       "\"memcpy_gb_per_s\": %.3f, \"utf8_repair_gb_per_s\": %.3f, \"consistent\": %s}\n",
                    st_build_commit(), tok_path, load_med, load_best, enc_mbps, (long long)first_n, total, copy_gbps,
                    scan_gbps, bad ? "false" : "true");
            fclose(f);
        }
    }
    free(dec);
    free(ids);
    free(copy);
    free(cut);
    free(buf);
    free(corpus);
    free(load_ms);
    st_tokenizer_free(tok);
    return bad || !ok_speed || !ok_load ? 1 : 0;
}
