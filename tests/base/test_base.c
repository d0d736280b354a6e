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

int main(void) {
    test_sizes();
    test_errors();
    test_nearest();
    test_filemap();
    return st_test_finish("base");
}
