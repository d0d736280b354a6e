/* base: size parsing, error plumbing, did-you-mean. */
#include "check.h"

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

int main(void) {
    test_sizes();
    test_errors();
    test_nearest();
    return st_test_finish("base");
}
