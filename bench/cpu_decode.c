/* bench_cpu_decode — CPU decode (and prefill) speed of a Qwen2.5-0.5B-shaped
 * model with random weights, next to this machine's memory bandwidth measured
 * in the same run.
 *
 *   bench_cpu_decode [--threads N] [--dtype bf16|f32|all] [--steps N] [--reps N]
 *                    [--prompt N] [--dir PATH] [--json FILE] [--min-ratio R]
 *
 * The model (E=896, F=4864, 24 layers, H=14, Hkv=2, vocab 151936, tied, q/k/v
 * biases) is written as a Hugging Face directory (config.json +
 * model.safetensors) into a temporary folder and loaded through st_model_open,
 * the same path as a real checkpoint. Bandwidth: a multi-threaded streaming
 * copy (bytes read + bytes written) and a streaming read (sum), best of reps.
 * Achieved GB/s = weight bytes a decode step reads (every matrix once, the
 * tied lm_head = the whole embedding table, plus norms and biases) x tok/s.
 * Correctness inside the benchmark: every repetition must produce the same
 * greedy tokens and finite logits, else the exit code is 1. */
#include "base/base.h"
#include "devices/device.h"
#include "model/model.h"
#include "orchestrator/engine.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { E = 896, F = 4864, NL = 24, NH = 14, NKV = 2, HD = 64, NV = 151936 };

/* ---- random model writer ---------------------------------------------------- */

struct wtensor { char name[96]; int64_t rows, cols; int kind; /* 0 matrix, 1 norm, 2 bias */ };

static uint64_t rng = 88172645463325252ull;
static inline float rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int list_tensors(struct wtensor *t) {
    int n = 0;
    t[n++] = (struct wtensor){"model.embed_tokens.weight", NV, E, 0};
    for (int l = 0; l < NL; l++) {
        struct { const char *s; int64_t r, c; int k; } per[] = {
            {"input_layernorm.weight", 1, E, 1},
            {"self_attn.q_proj.weight", NH * HD, E, 0}, {"self_attn.q_proj.bias", 1, NH * HD, 2},
            {"self_attn.k_proj.weight", NKV * HD, E, 0}, {"self_attn.k_proj.bias", 1, NKV * HD, 2},
            {"self_attn.v_proj.weight", NKV * HD, E, 0}, {"self_attn.v_proj.bias", 1, NKV * HD, 2},
            {"self_attn.o_proj.weight", E, NH * HD, 0},
            {"post_attention_layernorm.weight", 1, E, 1},
            {"mlp.gate_proj.weight", F, E, 0}, {"mlp.up_proj.weight", F, E, 0}, {"mlp.down_proj.weight", E, F, 0},
        };
        for (size_t i = 0; i < ST_ARRAY_LEN(per); i++) {
            snprintf(t[n].name, sizeof t[n].name, "model.layers.%d.%s", l, per[i].s);
            t[n].rows = per[i].r; t[n].cols = per[i].c; t[n].kind = per[i].k;
            n++;
        }
    }
    t[n++] = (struct wtensor){"model.norm.weight", 1, E, 1};
    return n;
}

static st_status write_model(const char *dir, st_dtype dt) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return st_error_set(ST_ERR_IO, "%s: %s", path, strerror(errno));
    fprintf(f, "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", \"hidden_act\": \"silu\",\n"
               " \"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d,\n"
               " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"vocab_size\": %d,\n"
               " \"max_position_embeddings\": 32768, \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0,\n"
               " \"tie_word_embeddings\": true, \"use_sliding_window\": false, \"torch_dtype\": \"%s\"}\n",
            E, F, NL, NH, NKV, NV, dt == ST_DTYPE_BF16 ? "bfloat16" : "float32");
    fclose(f);

    static struct wtensor t[16 + NL * 12];
    int n = list_tensors(t);
    const size_t es = dt == ST_DTYPE_BF16 ? 2 : 4;
    size_t hcap = 64 * 1024, hl = 0;
    char *hdr = malloc(hcap);
    if (!hdr) return st_error_set(ST_ERR_NOMEM, "bench: header");
    hl += (size_t)snprintf(hdr + hl, hcap - hl, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t b = (uint64_t)(t[i].rows * t[i].cols) * es;
        if (t[i].rows == 1)
            hl += (size_t)snprintf(hdr + hl, hcap - hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%llu,%llu]}",
                                   t[i].name, es == 2 ? "BF16" : "F32", (long long)t[i].cols,
                                   (unsigned long long)off, (unsigned long long)(off + b));
        else
            hl += (size_t)snprintf(hdr + hl, hcap - hl, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                                   t[i].name, es == 2 ? "BF16" : "F32", (long long)t[i].rows, (long long)t[i].cols,
                                   (unsigned long long)off, (unsigned long long)(off + b));
        off += b;
    }
    hl += (size_t)snprintf(hdr + hl, hcap - hl, "}");
    while (hl % 8) hdr[hl++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    if (!f) { free(hdr); return st_error_set(ST_ERR_IO, "%s: %s", path, strerror(errno)); }
    uint64_t hl64 = hl;
    bool ok = fwrite(&hl64, 8, 1, f) == 1 && fwrite(hdr, 1, hl, f) == hl;
    free(hdr);
    enum { CHUNK = 1 << 20 };
    float *buf = malloc(CHUNK * sizeof(float));
    for (int i = 0; i < n && ok && buf; i++) {
        const int64_t total = t[i].rows * t[i].cols;
        const float scale = t[i].kind == 0 ? 1.0f / sqrtf((float)t[i].cols) * (i == 0 ? 20.0f : 1.0f) : 0.1f;
        for (int64_t c0 = 0; c0 < total && ok; c0 += CHUNK) {
            int64_t m = ST_MIN(CHUNK, total - c0);
            for (int64_t j = 0; j < m; j++) buf[j] = t[i].kind == 1 ? 1.0f + 0.1f * rnd() : scale * rnd();
            if (es == 2) {
                uint16_t *h = (uint16_t *)buf;
                for (int64_t j = 0; j < m; j++) h[j] = st_f32_to_bf16(buf[j]);
            }
            ok = fwrite(buf, es, (size_t)m, f) == (size_t)m;
        }
    }
    free(buf);
    if (fclose(f) != 0) ok = false;
    if (!ok) return st_error_set(ST_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return ST_OK;
}

/* ---- memory bandwidth ----------------------------------------------------------- */

struct bw_job { float *src, *dst; size_t n; int op; double sum; };

#if defined(__x86_64__)
#include <immintrin.h>
__attribute__((target("avx2"))) static double read_avx2(const float *a, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    return (double)t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

static void *bw_thread(void *p) {
    struct bw_job *j = p;
    if (j->op == 0) {
        memcpy(j->dst, j->src, j->n * sizeof(float));
        return NULL;
    }
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) { j->sum = read_avx2(j->src, j->n); return NULL; }
#endif
    float s[16] = {0};
    for (size_t i = 0; i + 16 <= j->n; i += 16)
        for (int l = 0; l < 16; l++) s[l] += j->src[i + l];
    double t = 0;
    for (int l = 0; l < 16; l++) t += s[l];
    j->sum = t;
    return NULL;
}

/* op 0: copy (GB/s = bytes read + written); op 1: read (bytes read). */
static double bandwidth(float *a, float *b, size_t n, int threads, int op, int reps) {
    double best = 0;
    pthread_t th[256];
    struct bw_job jobs[256];
    for (int r = 0; r < reps; r++) {
        double t0 = st_time_s();
        for (int i = 0; i < threads; i++) {
            size_t lo = n * (size_t)i / (size_t)threads, hi = n * (size_t)(i + 1) / (size_t)threads;
            jobs[i] = (struct bw_job){a + lo, b + lo, hi - lo, op, 0};
            pthread_create(&th[i], NULL, bw_thread, &jobs[i]);
        }
        for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
        double dt = st_time_s() - t0;
        double gbps = (double)n * sizeof(float) * (op == 0 ? 2.0 : 1.0) / dt / 1e9;
        if (gbps > best) best = gbps;
    }
    return best;
}

/* ---- decode / prefill timing --------------------------------------------------------- */

struct result {
    const char *dtype;
    uint64_t weight_bytes;       /* read per decode step */
    double decode_tps, prefill_tps, achieved_gbps;
    bool ok;
};

static st_status run_model(const char *dir, int threads, int steps, int reps, int n_prompt, struct result *r) {
    st_model *m = NULL;
    st_engine *e = NULL;
    int32_t *toks = NULL, *first = NULL, *prompt = NULL;
    float *logits = NULL;
    st_status s = st_model_open(dir, &m);
    if (s != ST_OK) return s;
    struct st_backend_config cfg = {.kv_dtype = ST_DTYPE_F32, .n_threads = threads};
    struct st_engine_params prm = {.n_ctx = n_prompt + steps + 8, .max_batch_tokens = n_prompt};
    if ((s = st_engine_init_single(m, st_device_ops_cpu(), NULL, &cfg, &prm, &e)) != ST_OK) goto done;
    r->weight_bytes = st_engine_stage_weight_bytes(e, 0);
    toks = calloc((size_t)steps, sizeof *toks);
    first = calloc((size_t)steps, sizeof *first);
    prompt = calloc((size_t)n_prompt, sizeof *prompt);
    logits = malloc(sizeof(float) * NV);
    if (!toks || !first || !prompt || !logits) { s = st_error_set(ST_ERR_NOMEM, "bench buffers"); goto done; }
    for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)((i * 7919 + 13) % NV);
    r->ok = true;
    for (int rep = 0; rep < reps; rep++) {
        st_engine_reset(e);
        double t0 = st_time_s();
        int32_t next;
        if ((s = st_engine_prefill_greedy(e, prompt, n_prompt, &next)) != ST_OK) goto done;
        double t1 = st_time_s();
        for (int i = 0; i < steps; i++) {
            toks[i] = next;
            if ((s = st_engine_decode_greedy(e, next, &next)) != ST_OK) goto done;
        }
        double t2 = st_time_s();
        r->prefill_tps = fmax(r->prefill_tps, n_prompt / (t1 - t0));
        r->decode_tps = fmax(r->decode_tps, steps / (t2 - t1));
        if (rep == 0) memcpy(first, toks, sizeof(int32_t) * (size_t)steps);
        else if (memcmp(first, toks, sizeof(int32_t) * (size_t)steps)) r->ok = false;
        fprintf(stderr, "  %s rep %d: prefill %.1f tok/s, decode %.2f tok/s\n", r->dtype, rep + 1,
                n_prompt / (t1 - t0), steps / (t2 - t1));
    }
    if ((s = st_engine_decode(e, toks[steps - 1], logits)) != ST_OK) goto done;
    for (int i = 0; i < NV; i++) if (!isfinite(logits[i])) r->ok = false;
    r->achieved_gbps = (double)r->weight_bytes * r->decode_tps / 1e9;
done:
    free(toks); free(first); free(prompt); free(logits);
    st_engine_free(e);
    st_model_free(m);
    return s;
}

static void rm_model_dir(const char *dir) {
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir); unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir); unlink(p);
    rmdir(dir);
}

int main(int argc, char **argv) {
    int threads = 0, steps = 32, reps = 3, n_prompt = 64;
    const char *which = "all", *json_path = "cpu_decode.json", *base = NULL;
    double min_ratio = 0;
    for (int i = 1; i < argc; i += 2) {   /* option, value */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: bench_cpu_decode [--threads N] [--dtype bf16|f32|all] [--steps N] [--reps N]\n"
                   "                        [--prompt N] [--dir PATH] [--json FILE] [--min-ratio R]\n");
            return 0;
        }
        if (!v) { fprintf(stderr, "error: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--dtype")) which = v;
        else if (!strcmp(a, "--steps")) steps = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--prompt")) n_prompt = atoi(v);
        else if (!strcmp(a, "--dir")) base = v;
        else if (!strcmp(a, "--json")) json_path = v;
        else if (!strcmp(a, "--min-ratio")) min_ratio = atof(v);
        else { fprintf(stderr, "error: unknown option '%s'\nhint: bench_cpu_decode --help\n", a); return 2; }
    }
    if (steps < 1 || reps < 1 || n_prompt < 1) { fprintf(stderr, "error: --steps, --reps and --prompt must be >= 1\n"); return 2; }
    int hw = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int bw_threads = threads > 0 ? threads : hw;

    /* bandwidth: 2 x 512 MiB arrays (above any LLC here), measured before and
     * after each model run; the best of all is the machine's figure */
    size_t n = (size_t)128 << 20;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    if (!a || !b) { fprintf(stderr, "error: cannot allocate the bandwidth arrays\n"); return 1; }
    for (size_t i = 0; i < n; i++) { a[i] = (float)(i & 1023); b[i] = 0; }
    double copy_gbps = bandwidth(a, b, n, bw_threads, 0, 5);
    double read_gbps = bandwidth(a, b, n, bw_threads, 1, 5);

    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/strata-bench-XXXXXX", base ? base : "/tmp");
    struct result res[2] = {{.dtype = "bf16"}, {.dtype = "f32"}};
    bool want[2] = {!strcmp(which, "all") || !strcmp(which, "bf16"), !strcmp(which, "all") || !strcmp(which, "f32")};
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        if (!want[k]) continue;
        char dir[512];
        snprintf(dir, sizeof dir, "%s", tmpl);
        if (!mkdtemp(dir)) { fprintf(stderr, "error: mkdtemp %s: %s\n", dir, strerror(errno)); return 1; }
        fprintf(stderr, "writing a random %s model to %s ...\n", res[k].dtype, dir);
        st_status s = write_model(dir, k == 0 ? ST_DTYPE_BF16 : ST_DTYPE_F32);
        if (s == ST_OK) s = run_model(dir, threads, steps, reps, n_prompt, &res[k]);
        rm_model_dir(dir);
        if (s != ST_OK) { fprintf(stderr, "error: %s\n", st_last_error()); return 1; }
        copy_gbps = fmax(copy_gbps, bandwidth(a, b, n, bw_threads, 0, 5));
        read_gbps = fmax(read_gbps, bandwidth(a, b, n, bw_threads, 1, 5));
        if (!res[k].ok) { fprintf(stderr, "error: %s: repetitions disagree or logits are not finite\n", res[k].dtype); rc = 1; }
    }

    free(a);
    free(b);
    printf("memory bandwidth (%d threads, best of the runs): copy %.2f GB/s (read + write), read %.2f GB/s\n",
           bw_threads, copy_gbps, read_gbps);
    printf("\n%-6s %14s %12s %12s %14s %10s %10s\n", "dtype", "weights/token", "decode", "prefill", "achieved", "vs copy", "vs read");
    for (int k = 0; k < 2; k++) {
        if (!want[k]) continue;
        char wb[32];
        printf("%-6s %14s %8.2f t/s %8.1f t/s %9.2f GB/s %9.0f%% %9.0f%%\n", res[k].dtype,
               st_format_bytes(res[k].weight_bytes, wb, sizeof wb), res[k].decode_tps, res[k].prefill_tps,
               res[k].achieved_gbps, 100 * res[k].achieved_gbps / copy_gbps, 100 * res[k].achieved_gbps / read_gbps);
        if (min_ratio > 0 && res[k].achieved_gbps / copy_gbps < min_ratio) {
            fprintf(stderr, "error: %s reaches %.0f%% of the copy bandwidth, below --min-ratio %.0f%%\n", res[k].dtype,
                    100 * res[k].achieved_gbps / copy_gbps, 100 * min_ratio);
            rc = 1;
        }
    }
    FILE *jf = fopen(json_path, "w");
    if (jf) {
        fprintf(jf, "{\"bench\":\"cpu_decode\",\"commit\":\"%s\",\"threads\":%d,\"steps\":%d,\"reps\":%d,\"prompt\":%d,"
                    "\"copy_gbps\":%.3f,\"read_gbps\":%.3f,\"results\":[", st_build_commit(), bw_threads, steps, reps,
                n_prompt, copy_gbps, read_gbps);
        bool first = true;
        for (int k = 0; k < 2; k++) {
            if (!want[k]) continue;
            fprintf(jf, "%s{\"dtype\":\"%s\",\"weight_bytes_per_token\":%llu,\"decode_tok_s\":%.3f,\"prefill_tok_s\":%.3f,"
                        "\"achieved_gbps\":%.3f,\"ratio_copy\":%.4f,\"ratio_read\":%.4f,\"ok\":%s}",
                    first ? "" : ",", res[k].dtype, (unsigned long long)res[k].weight_bytes, res[k].decode_tps,
                    res[k].prefill_tps, res[k].achieved_gbps, res[k].achieved_gbps / copy_gbps,
                    res[k].achieved_gbps / read_gbps, res[k].ok ? "true" : "false");
            first = false;
        }
        fprintf(jf, "]}\n");
        fclose(jf);
        printf("\nJSON: %s\n", json_path);
    } else {
        fprintf(stderr, "warning: cannot write %s: %s\n", json_path, strerror(errno));
    }
    return rc;
}
