/* Shared CLI pieces: error reporting, global options, numbers, the bundled model. */
#include "cli.h"
#include "orchestrator/mpi.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef STRATA_HAVE_CUDA
#include <cuda_runtime.h>
#endif
#ifdef STRATA_HAVE_NCCL
#include <nccl.h>
#endif

int st_cli_report(st_status s) {
    const char *msg = st_last_error();
    if (!msg[0]) msg = st_status_name(s);
    fprintf(stderr, "%serror:%s ", st_color(stderr, "1;31"), st_color_reset(stderr));
    for (const char *p = msg; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (p != msg) {
            if (n >= 5 && strncmp(p, "hint:", 5) == 0) {
                fprintf(stderr, "%shint:%s%.*s\n", st_color(stderr, "1;36"), st_color_reset(stderr), (int)(n - 5), p + 5);
                p += n + (nl ? 1 : 0);
                continue;
            }
        }
        fprintf(stderr, "%.*s\n", (int)n, p);
        p += n + (nl ? 1 : 0);
    }
    return st_status_exit_code(s);
}

int st_cli_usage_error(const char *cmd, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    st_error_set(ST_ERR_USAGE, "%s: %s", cmd, buf);
    st_error_hint("see 'strata %s --help'", cmd);
    return st_cli_report(ST_ERR_USAGE);
}

bool st_cli_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

int st_cli_not_built(const char *cmd, const char *what) {
    st_error_set(ST_ERR_NOT_BUILT, "strata %s: %s is not built yet in this version", cmd, what);
    st_error_hint("see the README for what this version can do; nothing was run");
    return st_cli_report(ST_ERR_NOT_BUILT);
}

st_status st_cli_read_stdin(char **out, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) { free(buf); buf = NULL; break; }
            buf = p;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, stdin);
        if (r == 0) break;
        n += r;
    }
    *out = buf;
    if (!buf) return st_error_set(ST_ERR_NOMEM, "out of memory reading standard input");
    buf[n] = 0;
    if (len) *len = n;
    return ST_OK;
}

/* ---- global options ------------------------------------------------------------ */

static int g_verbosity;   /* -1 quiet, 0 default, 1 info, 2+ debug */
static bool g_json;

int st_cli_global(const char *a) {
    if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) g_verbosity = (g_verbosity < 0 ? 0 : g_verbosity) + 1;
    else if (!strcmp(a, "-vv")) g_verbosity = (g_verbosity < 0 ? 0 : g_verbosity) + 2;
    else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) g_verbosity = -1;
    else if (!strcmp(a, "--json")) { g_json = true; return ST_CLI_GLOBAL_TAKEN; }
    else if (!strcmp(a, "--version")) return ST_CLI_GLOBAL_VERSION;
    else return ST_CLI_NOT_GLOBAL;
    st_log_set_level(g_verbosity < 0 ? ST_LOG_ERROR : g_verbosity == 0 ? ST_LOG_WARN
                     : g_verbosity == 1 ? ST_LOG_INFO : ST_LOG_DEBUG);
    return ST_CLI_GLOBAL_TAKEN;
}

bool st_cli_json(void) { return g_json; }

int st_cli_no_json(const char *cmd, const char *why) {
    return st_cli_usage_error(cmd, "--json: %s", why);
}

void st_cli_print_version(void) {
    printf("strata %s (commit %s)\n", st_version_string(), st_build_commit());
    printf("build: %s\n", st_build_options());
#ifdef STRATA_HAVE_CUDA
    int rt = 0, drv = 0;
    cudaRuntimeGetVersion(&rt);
    if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
    printf("cuda runtime %d.%d, driver %s\n", rt / 1000, (rt % 1000) / 10, drv ? "present" : "absent");
    if (drv) printf("cuda driver api %d.%d\n", drv / 1000, (drv % 1000) / 10);
#else
    printf("cuda: not built (CPU-only build)\n");
#endif
#ifdef STRATA_HAVE_NCCL
    int nv = 0;
    ncclGetVersion(&nv);
    printf("nccl %d.%d.%d\n", nv / 10000, (nv / 100) % 100, nv % 100);
#else
    printf("nccl: not built\n");
#endif
#ifdef STRATA_HAVE_MPI
    if (st_mpi_size() > 1) printf("mpi: built; %s of %d\n", st_mpi_where(st_mpi_rank()), st_mpi_size());
    else printf("mpi: built\n");
#else
    printf("mpi: not built\n");
#endif
}

/* ---- numbers ---------------------------------------------------------------------- */

int st_cli_int(const char *cmd, const char *flag, const char *value, int64_t lo, int64_t hi, const char *what,
               const char *note, int64_t *out) {
    if (value && st_cli_parse_i64(value, lo, hi, out)) return -1;
    char range[96];
    if (hi == INT64_MAX) snprintf(range, sizeof range, ">= %lld", (long long)lo);
    else snprintf(range, sizeof range, "from %lld to %lld", (long long)lo, (long long)hi);
    if (!value) return st_cli_usage_error(cmd, "%s needs a value: %s %s%s%s%s", flag, what, range,
                                          note ? " (" : "", note ? note : "", note ? ")" : "");
    return st_cli_usage_error(cmd, "%s wants %s %s%s%s%s, got '%s'", flag, what, range, note ? " (" : "",
                              note ? note : "", note ? ")" : "", value);
}

int st_cli_real(const char *cmd, const char *flag, const char *value, double lo, bool lo_open, double hi,
                bool hi_open, const char *note, double *out) {
    if (value) {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        bool ok = !errno && end != value && !*end && isfinite(v) && (lo_open ? v > lo : v >= lo) &&
                  (hi_open ? v < hi : v <= hi);
        if (ok) { *out = v; return -1; }
    }
    char range[96];
    if (isinf(hi)) snprintf(range, sizeof range, "%s %g", lo_open ? ">" : ">=", lo);
    else if (!lo_open && !hi_open) snprintf(range, sizeof range, "from %g to %g", lo, hi);
    else snprintf(range, sizeof range, "in %c%g, %g%c", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
    if (!value) return st_cli_usage_error(cmd, "%s needs a value: a number %s%s%s%s", flag, range, note ? " (" : "",
                                          note ? note : "", note ? ")" : "");
    return st_cli_usage_error(cmd, "%s wants a number %s%s%s%s, got '%s'", flag, range, note ? " (" : "",
                              note ? note : "", note ? ")" : "", value);
}

/* ---- the model ----------------------------------------------------------------------- */

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

st_status st_cli_bundled_model(char *buf, size_t cap) {
    char exe[PATH_MAX] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
    } else {
        exe[0] = 0;
    }
    char tried[4][PATH_MAX + 64];
    int k = 0;
    if (exe[0]) {
        snprintf(tried[k++], sizeof tried[0], "%s/" ST_CLI_BUNDLED_MODEL, exe);
        snprintf(tried[k++], sizeof tried[0], "%s/../share/strata/" ST_CLI_BUNDLED_MODEL, exe);
    }
#ifdef STRATA_SOURCE_DIR
    snprintf(tried[k++], sizeof tried[0], "%s/" ST_CLI_BUNDLED_MODEL, STRATA_SOURCE_DIR);
#endif
#ifdef STRATA_DATA_DIR
    snprintf(tried[k++], sizeof tried[0], "%s/" ST_CLI_BUNDLED_MODEL, STRATA_DATA_DIR);
#endif
    for (int i = 0; i < k; i++) {
        if (!is_dir(tried[i])) continue;
        char real[PATH_MAX];
        const char *p = realpath(tried[i], real) ? real : tried[i];
        if (strlen(p) + 1 > cap) return st_error_set(ST_ERR_USAGE, "the bundled model's path is too long: %s", p);
        memcpy(buf, p, strlen(p) + 1);
        ST_INFO("no -m or -c: using the bundled model %s", buf);
        return ST_OK;
    }
    char list[4 * (PATH_MAX + 70)] = "";
    for (int i = 0; i < k; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", tried[i]);
    }
    st_error_set(ST_ERR_USAGE, "no model given, and the bundled model (%s) is not in any of: %s",
                 ST_CLI_BUNDLED_MODEL, list);
    return st_error_hint("name a model with -m FILE.gguf|HF_DIR or a deployment with -c deploy.yaml; "
                         "'cmake --install' puts the bundled model under <prefix>/share/strata/models");
}

st_status st_cli_model_exists(const char *what, const char *path) {
    struct stat st;
    if (stat(path, &st) == 0) return ST_OK;
    st_error_set(ST_ERR_USAGE, "%s '%s' %s", what ? what : "model", path,
                 errno == ENOENT ? "does not exist" : strerror(errno));
    if (what) return st_error_hint("give a tokenizer.json, a model directory holding one, or a GGUF file; without "
                                   "-m the bundled model (%s) is used", ST_CLI_BUNDLED_MODEL);
    return st_error_hint("name a GGUF file or a Hugging Face model directory (config.json + *.safetensors); "
                         "without -m and -c the bundled model (%s) is used", ST_CLI_BUNDLED_MODEL);
}

void st_cli_wrote(const char *path) {
    if (st_log_get_level() >= ST_LOG_WARN) fprintf(stderr, "wrote %s\n", path);
}
