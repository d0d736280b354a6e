/* tests/harness/gguf_check.h — a GGUF fixture mapped and parsed by
 * model/model-impl.h's parser, for the tests that read tensors from a golden
 * file directly (tests/model/test_dtype.c, tests/inventory/test_registry.c). */
#ifndef STRATA_TEST_GGUF_CHECK_H
#define STRATA_TEST_GGUF_CHECK_H
#include "check.h"
#include "model/model-impl.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct gguf_fixture { void *map; size_t size; struct st_gguf *g; };

/* f->g, or NULL after a failed check when the file cannot be opened, mapped or parsed */
static inline struct st_gguf *gguf_fixture_open(const char *path, struct gguf_fixture *f) {
    *f = (struct gguf_fixture){NULL, 0, NULL};
    int fd = open(path, O_RDONLY);
    CHECK_MSG(fd >= 0, "%s: cannot open", path);
    if (fd < 0) return NULL;
    struct stat st;
    void *map = fstat(fd, &st) == 0 ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    close(fd);
    CHECK_MSG(map != MAP_FAILED, "%s: cannot map", path);
    if (map == MAP_FAILED) return NULL;
    f->map = map;
    f->size = (size_t)st.st_size;
    CHECK_OK(st_gguf_parse(path, map, (uint64_t)st.st_size, &f->g));
    return f->g;
}

static inline void gguf_fixture_close(struct gguf_fixture *f) {
    st_gguf_free(f->g);
    if (f->map) munmap(f->map, f->size);
    *f = (struct gguf_fixture){NULL, 0, NULL};
}

#endif
