/* Shared CLI reporting. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
