#include "check.h"
int st_test_passed, st_test_failed;
int st_test_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, st_test_passed, st_test_failed);
    return st_test_failed ? 1 : (st_test_passed ? 0 : 1); /* a test that checked nothing fails */
}
