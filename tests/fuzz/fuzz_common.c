/* Helpers shared by the fuzz targets (tests/fuzz/fuzz.h). */
#include "fuzz.h"

#include <stdbool.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

int fz_next_part(const uint8_t **data, size_t *size, const uint8_t **part, size_t *part_len) {
    if (!*data) return 0;
    const size_t sl = sizeof FZ_SEPARATOR - 1;
    const uint8_t *d = *data;
    size_t n = *size;
    const uint8_t *hit = NULL;
    for (size_t i = 0; i + sl <= n; i++) {
        if (d[i] == FZ_SEPARATOR[0] && !memcmp(d + i, FZ_SEPARATOR, sl)) { hit = d + i; break; }
    }
    *part = d;
    if (hit) {
        *part_len = (size_t)(hit - d);
        *data = hit + sl;
        *size = n - *part_len - sl;
    } else {
        *part_len = n;
        *data = NULL;
        *size = 0;
    }
    return 1;
}

static char g_dir[256];

static void remove_dir(void) {
    if (!g_dir[0]) return;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(g_dir);
}

const char *fz_dir(void) {
    if (!g_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(g_dir, sizeof g_dir, "%s/strata-fuzz-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(g_dir)) { perror("fuzz: mkdtemp"); abort(); }
        atexit(remove_dir);
    }
    return g_dir;
}

const char *fz_write(int slot, const char *name, const void *bytes, size_t len) {
    static char paths[4][512];
    char *p = paths[slot & 3];
    snprintf(p, sizeof paths[0], "%s/%s", fz_dir(), name);
    FILE *f = fopen(p, "wb");
    if (!f || (len && fwrite(bytes, 1, len, f) != len) || fclose(f) != 0) { perror(p); abort(); }
    return p;
}

void fz_remove(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", fz_dir(), name);
    unlink(p);
}

char *fz_strndup(const uint8_t *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, p, n);
    s[n] = 0;
    return s;
}
