/* Thread-local last-error message, logging and terminal colour. */
#include "base.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ST_ERROR_MAX 4096

static _Thread_local char g_msg[ST_ERROR_MAX];
static _Thread_local st_status g_status = ST_OK;
static st_log_level g_level = ST_LOG_WARN;

const char *st_status_name(st_status s) {
    switch (s) {
    case ST_OK: return "ok";
    case ST_ERR_USAGE: return "usage";
    case ST_ERR_CONFIG: return "config";
    case ST_ERR_FORMAT: return "format";
    case ST_ERR_IO: return "io";
    case ST_ERR_NOMEM: return "out of memory";
    case ST_ERR_DEVICE_OOM: return "device out of memory";
    case ST_ERR_DEVICE: return "device";
    case ST_ERR_UNSUPPORTED: return "unsupported";
    case ST_ERR_NOT_BUILT: return "not built";
    case ST_ERR_INTERNAL: return "internal";
    case ST_ERR_NUMERIC: return "numeric";
    case ST_ERR_BUSY: return "busy";
    }
    return "unknown";
}

int st_status_exit_code(st_status s) {
    switch (s) {
    case ST_OK: return 0;
    case ST_ERR_USAGE:
    case ST_ERR_CONFIG:
    case ST_ERR_NOT_BUILT: return 2;
    default: return 1;
    }
}

st_status st_error_setv(st_status s, const char *fmt, va_list ap) {
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    g_status = s;
    return s;
}

st_status st_error_set(st_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    st_error_setv(s, fmt, ap);
    va_end(ap);
    return s;
}

st_status st_error_hint(const char *fmt, ...) {
    size_t n = strlen(g_msg);
    if (n + 8 < sizeof g_msg) {
        memcpy(g_msg + n, "\nhint: ", 8);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g_msg + n + 7, sizeof g_msg - n - 7, fmt, ap);
        va_end(ap);
    }
    return g_status;
}

st_status st_error_prefix(const char *fmt, ...) {
    char prefix[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[ST_ERROR_MAX];
    memcpy(old, g_msg, sizeof old);
    size_t pl = strlen(prefix), ol = strlen(old);   /* both fit g_msg; the join is cut at its end */
    if (pl > sizeof g_msg - 3) pl = sizeof g_msg - 3;
    memcpy(g_msg, prefix, pl);
    memcpy(g_msg + pl, ": ", 2);
    if (ol > sizeof g_msg - pl - 3) ol = sizeof g_msg - pl - 3;
    memcpy(g_msg + pl + 2, old, ol);
    g_msg[pl + 2 + ol] = 0;
    return g_status;
}

const char *st_last_error(void) { return g_msg; }
st_status st_last_status(void) { return g_status; }
void st_error_clear(void) { g_msg[0] = 0; g_status = ST_OK; }

void st_log_set_level(st_log_level level) { g_level = level; }
st_log_level st_log_get_level(void) { return g_level; }

void st_log(st_log_level level, const char *fmt, ...) {
    if (level > g_level) return;
    static const char *names[] = {"error", "warning", "info", "debug"};
    static const char *colors[] = {"1;31", "1;33", "1;36", "2"};
    fprintf(stderr, "%s%s:%s ", st_color(stderr, colors[level]), names[level], st_color_reset(stderr));
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

bool st_term_color(FILE *f) {
    const char *no = getenv("NO_COLOR");
    if (no && no[0]) return false;
    return isatty(fileno(f)) != 0;
}

const char *st_color(FILE *f, const char *ansi_code) {
    static _Thread_local char buf[4][24];
    static _Thread_local int slot;
    if (!st_term_color(f)) return "";
    char *b = buf[slot++ & 3];
    snprintf(b, sizeof buf[0], "\033[%sm", ansi_code);
    return b;
}

const char *st_color_reset(FILE *f) { return st_term_color(f) ? "\033[0m" : ""; }
