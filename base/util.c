/* Size parsing and formatting, edit distance, file reading, clock, allocation. */
#include "base.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

st_status st_parse_size(const char *text, uint64_t *out_bytes) {
    if (!text) return st_error_set(ST_ERR_CONFIG, "size is empty");
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '-') {
        return st_error_set(ST_ERR_CONFIG, "size '%s' is negative", text);
    }
    if (!isdigit((unsigned char)*p) && *p != '.') {
        return st_error_set(ST_ERR_CONFIG, "size '%s' is not a number with a unit", text);
    }
    errno = 0;
    char *end;
    double v = strtod(p, &end);
    if (errno || end == p || !isfinite(v) || v < 0) {
        return st_error_set(ST_ERR_CONFIG, "size '%s' is not a number with a unit", text);
    }
    while (isspace((unsigned char)*end)) end++;
    char unit[8] = {0};
    size_t n = 0;
    while (*end && !isspace((unsigned char)*end) && n < sizeof unit - 1) unit[n++] = (char)tolower((unsigned char)*end++);
    while (isspace((unsigned char)*end)) end++;
    if (*end) return st_error_set(ST_ERR_CONFIG, "size '%s' has trailing text", text);
    static const struct { const char *u; double mult; } units[] = {
        {"", 1}, {"b", 1},
        {"k", 1024.0}, {"kib", 1024.0}, {"kb", 1e3},
        {"m", 1048576.0}, {"mib", 1048576.0}, {"mb", 1e6},
        {"g", 1073741824.0}, {"gib", 1073741824.0}, {"gb", 1e9},
        {"t", 1099511627776.0}, {"tib", 1099511627776.0}, {"tb", 1e12},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(units); i++) {
        if (strcmp(unit, units[i].u) == 0) {
            double bytes = v * units[i].mult;
            if (bytes >= 18446744073709549568.0) {
                return st_error_set(ST_ERR_CONFIG, "size '%s' is too large", text);
            }
            *out_bytes = (uint64_t)llround(bytes);
            return ST_OK;
        }
    }
    st_error_set(ST_ERR_CONFIG, "size '%s' has unknown unit '%s'", text, unit);
    return st_error_hint("use B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000), e.g. 22GiB");
}

char *st_format_bytes(uint64_t bytes, char *buf, size_t buf_len) {
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int i = 0;
    while (v >= 1024.0 && i < 4) { v /= 1024.0; i++; }
    if (i == 0) snprintf(buf, buf_len, "%llu B", (unsigned long long)bytes);
    else snprintf(buf, buf_len, "%.2f %s", v, u[i]);
    return buf;
}

int st_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1 << 20;
    int prev[65], cur[65];
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int best = prev[j - 1] + cost;
            if (prev[j] + 1 < best) best = prev[j] + 1;
            if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1;
            cur[j] = best;
        }
        memcpy(prev, cur, sizeof(int) * (lb + 1));
    }
    return prev[lb];
}

const char *st_nearest_word(const char *word, const char *const *candidates, size_t n) {
    int limit = (int)strlen(word) / 3;
    if (limit < 2) limit = 2;
    const char *best = NULL;
    int best_d = limit + 1;
    for (size_t i = 0; i < n; i++) {
        int d = st_edit_distance(word, candidates[i]);
        if (d < best_d) { best_d = d; best = candidates[i]; }
    }
    return best;
}

st_status st_read_file_limit(const char *path, size_t max_bytes, char **out_data, size_t *out_len) {
    *out_data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        st_error_set(ST_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return st_error_hint("check the path and its permissions");
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return st_error_set(ST_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    if (len > max_bytes) {
        fclose(f);
        char a[32], b[32];
        st_error_set(ST_ERR_FORMAT, "%s: the file is %s (%zu bytes), more than the %s this reader accepts", path,
                     st_format_bytes(len, a, sizeof a), len, st_format_bytes(max_bytes, b, sizeof b));
        return st_error_hint("is this the right file? strata's limits are listed in docs/limits.md");
    }
    char *data = st_malloc(len + 1, path);
    if (!data) { fclose(f); return ST_ERR_NOMEM; }
    if (st_fault_hit(ST_FAULT_READ, path)) {
        free(data);
        fclose(f);
        return st_error_set(ST_ERR_IO, "%s: read failed: %s (injected by STRATA_FAULT)", path, strerror(EIO));
    }
    if (len && fread(data, 1, len, f) != len) {
        int e = ferror(f) ? errno : 0;
        free(data);
        fclose(f);
        return st_error_set(ST_ERR_IO, "%s: short read%s%s", path, e ? ": " : "", e ? strerror(e) : "");
    }
    fclose(f);
    data[len] = 0;
    *out_data = data;
    if (out_len) *out_len = len;
    return ST_OK;
}

st_status st_read_file(const char *path, char **out_data, size_t *out_len) {
    return st_read_file_limit(path, SIZE_MAX - 1, out_data, out_len);
}

double st_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void *st_malloc(size_t bytes, const char *what) {
    void *p = st_fault_hit(ST_FAULT_ALLOC, what) ? NULL : malloc(bytes ? bytes : 1);
    if (!p) {
        char b[32];
        st_error_set(ST_ERR_NOMEM, "out of host memory allocating %s for %s",
                     st_format_bytes(bytes, b, sizeof b), what);
    }
    return p;
}

void *st_calloc(size_t n, size_t size, const char *what) {
    void *p = st_fault_hit(ST_FAULT_ALLOC, what) ? NULL : calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        st_error_set(ST_ERR_NOMEM, "out of host memory allocating %zu x %zu bytes for %s", n, size, what);
    }
    return p;
}

void *st_realloc(void *old, size_t bytes, const char *what) {
    void *p = st_fault_hit(ST_FAULT_ALLOC, what) ? NULL : realloc(old, bytes ? bytes : 1);
    if (!p) {
        char b[32];
        st_error_set(ST_ERR_NOMEM, "out of host memory growing %s to %s", what, st_format_bytes(bytes, b, sizeof b));
    }
    return p;
}

static char *copy_str(const char *s, size_t len, const char *what) {
    char *p = st_malloc(len + 1, what);
    if (p) {
        memcpy(p, s, len);
        p[len] = 0;
    }
    return p;
}

char *st_strndup(const char *s, size_t n, const char *what) { return copy_str(s, strnlen(s, n), what); }
char *st_strdup(const char *s, const char *what) { return copy_str(s, strlen(s), what); }
