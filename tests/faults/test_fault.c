/* The fault switch itself (base/fault.c): the Nth event of the chosen kind
 * fails and only that one; counts are per kind; st_fault_set resets them; the
 * allocation helpers report the failure like a real out-of-memory, and
 * st_read_file like a failed read. */
#include "check.h"

#include <stdlib.h>

int main(void) {
    st_fault_set(ST_FAULT_ALLOC, 3);
    void *a = st_malloc(16, "a"), *b = st_calloc(2, 8, "b"), *c = st_malloc(16, "the third");
    CHECK(a && b && !c);
    CHECK(st_last_status() == ST_ERR_NOMEM && strstr(st_last_error(), "out of host memory allocating 16 B for the third"));
    void *d = st_realloc(a, 64, "d");
    CHECK(d != NULL);   /* the 4th: only the 3rd fails */
    CHECK(st_fault_count(ST_FAULT_ALLOC) == 4 && st_fault_count(ST_FAULT_READ) == 0);
    free(d);
    free(b);

    st_fault_set(ST_FAULT_ALLOC, 1);
    char *s = st_strdup("x", "a copy");
    CHECK(s == NULL && strstr(st_last_error(), "for a copy"));
    void *keep = malloc(8);
    st_fault_set(ST_FAULT_ALLOC, 1);
    CHECK(st_realloc(keep, 4096, "a table") == NULL && strstr(st_last_error(), "out of host memory growing a table to 4.00 KiB"));
    free(keep);   /* st_realloc left it untouched */

    st_fault_set(ST_FAULT_READ, 1);
    char *text = NULL;
    size_t len = 0;
    CHECK_ERR(st_read_file("CMakeLists.txt", &text, &len), ST_ERR_IO,
              "CMakeLists.txt: read failed: Input/output error (injected by STRATA_FAULT)");
    CHECK(text == NULL);
    CHECK_OK(st_read_file("CMakeLists.txt", &text, &len));   /* the 2nd read works */
    free(text);
    CHECK(st_fault_count(ST_FAULT_READ) == 2);

    st_fault_set(ST_FAULT_LINK, 2);
    CHECK(!st_fault_hit(ST_FAULT_LINK, "l") && st_fault_hit(ST_FAULT_LINK, "l") && !st_fault_hit(ST_FAULT_LINK, "l"));
    CHECK(!st_fault_hit(ST_FAULT_DEV_ALLOC, NULL));
    st_fault_set(ST_FAULT_LINK, 0);   /* off */
    for (int i = 0; i < 5; i++) CHECK(!st_fault_hit(ST_FAULT_LINK, "l"));
    CHECK(!strcmp(st_fault_kind_name(ST_FAULT_DEV_ALLOC), "dev_alloc"));
    return st_test_finish("fault_switch");
}
