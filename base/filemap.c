/* base/filemap.c — the registry of read-only file mappings (base.h). */
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct filemap {
    const uint8_t *map;
    size_t size;
    int fd;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct filemap *maps;
static int n_maps, cap_maps;

st_status st_filemap_add(const void *map, size_t size, int file_fd, const char *path) {
    if (!map || !size) return ST_OK;
    int fd = fcntl(file_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return st_error_set(ST_ERR_IO, "%s: cannot duplicate its descriptor: %s", path, strerror(errno));
    pthread_mutex_lock(&lock);
    if (n_maps == cap_maps) {
        const int cap = cap_maps ? 2 * cap_maps : 16;
        struct filemap *n = st_realloc(maps, (size_t)cap * sizeof *n, "the file mapping table");
        if (!n) {
            pthread_mutex_unlock(&lock);
            close(fd);
            return ST_ERR_NOMEM;
        }
        maps = n;
        cap_maps = cap;
    }
    maps[n_maps++] = (struct filemap){map, size, fd};
    pthread_mutex_unlock(&lock);
    return ST_OK;
}

void st_filemap_remove(const void *map) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_maps; i++) {
        if (maps[i].map != map) continue;
        close(maps[i].fd);
        maps[i] = maps[--n_maps];
        break;
    }
    if (!n_maps) {
        free(maps);
        maps = NULL;
        cap_maps = 0;
    }
    pthread_mutex_unlock(&lock);
}

bool st_filemap_find(const void *p, size_t n, int *fd, uint64_t *offset) {
    const uint8_t *q = p;
    bool found = false;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_maps && !found; i++) {
        if (q < maps[i].map || q - maps[i].map > (ptrdiff_t)maps[i].size || n > maps[i].size - (size_t)(q - maps[i].map))
            continue;
        *fd = maps[i].fd;
        *offset = (uint64_t)(q - maps[i].map);
        found = true;
    }
    pthread_mutex_unlock(&lock);
    return found;
}
