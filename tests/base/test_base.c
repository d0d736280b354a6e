/* base: size parsing, error plumbing, did-you-mean. */
#include "check.h"
#include "model/model.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static void test_sizes(void) {
    uint64_t b = 0;
    CHECK_OK(st_parse_size("512MiB", &b)); CHECK(b == 512ull << 20);
    CHECK_OK(st_parse_size("22GiB", &b));  CHECK(b == 22ull << 30);
    CHECK_OK(st_parse_size("22GB", &b));   CHECK(b == 22000000000ull);
    CHECK_OK(st_parse_size("1.5 GiB", &b)); CHECK(b == 3ull << 29);
    CHECK_OK(st_parse_size("4096", &b));   CHECK(b == 4096);
    CHECK_OK(st_parse_size("8g", &b));     CHECK(b == 8ull << 30);
    CHECK_ERR(st_parse_size("-1GiB", &b), ST_ERR_CONFIG, "size '-1GiB' is negative");
    CHECK_ERR(st_parse_size("12 parsecs", &b), ST_ERR_CONFIG, "unknown unit 'parsecs'");
    CHECK_ERR(st_parse_size("GiB", &b), ST_ERR_CONFIG, "is not a number");
    CHECK_ERR(st_parse_size("99999999999TiB", &b), ST_ERR_CONFIG, "too large");
    CHECK_ERR(st_parse_size("3 GiB x", &b), ST_ERR_CONFIG, "trailing text");
}

static void test_errors(void) {
    st_error_set(ST_ERR_FORMAT, "model.gguf: tensor '%s' at byte %d", "blk.0.attn_q.weight", 1234);
    st_error_hint("re-download the file");
    st_error_prefix("loading");
    CHECK(strcmp(st_last_error(), "loading: model.gguf: tensor 'blk.0.attn_q.weight' at byte 1234\nhint: re-download the file") == 0);
    CHECK(st_last_status() == ST_ERR_FORMAT);
    CHECK(st_status_exit_code(ST_ERR_CONFIG) == 2);
    CHECK(st_status_exit_code(ST_ERR_USAGE) == 2);
    CHECK(st_status_exit_code(ST_ERR_NOT_BUILT) == 2);
    CHECK(st_status_exit_code(ST_ERR_DEVICE_OOM) == 1);
    CHECK(st_status_exit_code(ST_OK) == 0);
    st_error_clear();
    CHECK(st_last_error()[0] == 0 && st_last_status() == ST_OK);
}

static void test_nearest(void) {
    const char *keys[] = {"devices", "model", "placement", "transport", "context", "batch", "generation"};
    CHECK(strcmp(st_nearest_word("devcies", keys, 7), "devices") == 0);
    CHECK(strcmp(st_nearest_word("modle", keys, 7), "model") == 0);
    CHECK(st_nearest_word("zzzzzzzz", keys, 7) == NULL);
    CHECK(st_edit_distance("kitten", "sitting") == 3);
    char buf[32];
    CHECK(strcmp(st_format_bytes(3ull << 29, buf, sizeof buf), "1.50 GiB") == 0);
    CHECK(strcmp(st_format_bytes(100, buf, sizeof buf), "100 B") == 0);
}

/* The file-mapping registry: a range inside a registered mapping gives a descriptor whose pread
 * returns the mapping's bytes; a range that leaves it, or one after its removal, gives none. */
static void test_filemap(void) {
    char path[] = "/tmp/strata-filemap-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    enum { N = 3 * 4096 + 123 };
    unsigned char data[N], back[200];
    for (int i = 0; i < N; i++) data[i] = (unsigned char)(i * 131 + 7);
    CHECK(write(fd, data, N) == N);
    void *map = mmap(NULL, N, PROT_READ, MAP_PRIVATE, fd, 0);
    CHECK(map != MAP_FAILED);
    CHECK_OK(st_filemap_add(map, N, fd, path));
    close(fd);   /* the registry keeps its own */
    int f = -1;
    uint64_t off = 0;
    const unsigned char *m = map;
    CHECK(st_filemap_find(m + 5000, 200, &f, &off) && off == 5000);
    CHECK(f >= 0 && pread(f, back, 200, (off_t)off) == 200 && memcmp(back, m + 5000, 200) == 0);
    CHECK(st_filemap_find(m, N, &f, &off) && off == 0);                /* the whole file */
    CHECK(!st_filemap_find(m + N - 10, 11, &f, &off));                  /* past its end */
    CHECK(!st_filemap_find(data, 10, &f, &off));                        /* other memory */
    st_filemap_remove(map);
    CHECK(!st_filemap_find(m + 5000, 200, &f, &off));
    munmap(map, N);
    unlink(path);

    /* the model loader registers what it maps, and removes it with the model */
    st_model *model = NULL;
    CHECK_OK(st_model_open("models/tiny-kjv.gguf", &model));
    if (!model) return;
    const struct st_tensor *t = &model->tensors[model->n_tensors - 1];
    const uint8_t *base = model->files[t->file].map;
    CHECK(st_filemap_find(t->data, t->bytes, &f, &off) && off == (uint64_t)((const uint8_t *)t->data - base));
    const void *tdata = t->data;
    st_model_free(model);
    CHECK(!st_filemap_find(tdata, 1, &f, &off));
}

/* st_host_copy: every byte where it belongs, from memory and from a file, for
 * pools of every size, parts of every size, and a file shorter than the copy
 * (the rest comes from the memory); many jobs back to back on one pool. */
static void test_host_copy(void) {
    enum { N = (5 << 20) + 12345, GUARD = 64 };
    uint8_t *src = malloc(N), *dst = malloc(N + GUARD);
    char path[] = "/tmp/strata-hostcopy-XXXXXX";
    int fd = mkstemp(path);
    CHECK(src && dst && fd >= 0);
    if (!src || !dst || fd < 0) { free(src); free(dst); return; }
    uint32_t r = 12345;
    for (size_t i = 0; i < N; i++) { r = r * 1103515245u + 12345u; src[i] = (uint8_t)(r >> 16); }
    const size_t half = N / 2;   /* the file holds the first half of src */
    CHECK(write(fd, src, half) == (ssize_t)half);
    const int sizes[] = {1, 2, 3, 16, 64};
    const size_t lens[] = {0, 1, 4095, 4097, (1 << 20) + 7, N - 4099 * 5 - 1};
    const size_t parts[] = {1, 4096, 1 << 20, (size_t)N * 2};
    int bad = 0, calls = 0;
    for (int k = -1; k < 5; k++) {
        st_host_copy *hc = k < 0 ? NULL : st_host_copy_new(sizes[k]);
        CHECK(k < 0 || hc);
        for (int from_file = 0; from_file < 2; from_file++)
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
                for (size_t pi = 0; pi < sizeof parts / sizeof parts[0]; pi++) {
                    const size_t off = 4099 * li, n = lens[li];   /* odd offsets; some copies cross the file's end */
                    memset(dst, 0xA5, N + GUARD);
                    int got = st_host_copy_run(hc, dst, src + off, n, from_file ? fd : -1, off, parts[pi]);
                    calls++;
                    int most = 1 + (k < 0 ? 0 : ST_MIN(sizes[k], 16) - 1);
                    if (n / parts[pi] < (size_t)most) most = n / parts[pi] > 1 ? (int)(n / parts[pi]) : 1;
                    bool ok = got >= 1 && got <= most && memcmp(dst, src + off, n) == 0;
                    for (size_t i = n; i < n + GUARD; i++) ok = ok && dst[i] == 0xA5;
                    if (!ok && bad++ < 5)
                        fprintf(stderr, "host copy: pool %d, %s, %zu bytes at %zu, parts of %zu: %d threads, wrong bytes\n",
                                k < 0 ? 0 : sizes[k], from_file ? "file" : "memory", n, off, parts[pi], got);
                }
        for (int j = 0; j < 300 && hc; j++) {   /* jobs back to back: each must see its own parts finish */
            const size_t n = (size_t)(j % 7 + 1) * 300007;
            dst[n] = 0x5A;
            st_host_copy_run(hc, dst, src + j, n, j % 2 ? fd : -1, (uint64_t)j, 4096);
            calls++;
            if ((memcmp(dst, src + j, n) != 0 || dst[n] != 0x5A) && bad++ < 5)
                fprintf(stderr, "host copy: job %d of a pool of %d: wrong bytes\n", j, sizes[k]);
        }
        st_host_copy_free(hc);
    }
    CHECK_MSG(bad == 0, "%d of %d copies wrong", bad, calls);
    close(fd);
    unlink(path);
    free(src);
    free(dst);
}

int main(void) {
    test_sizes();
    test_errors();
    test_nearest();
    test_filemap();
    test_host_copy();
    return st_test_finish("base");
}
