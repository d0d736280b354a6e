/* tests/harness/check.h — assertions for strata's C tests. A failed CHECK prints
 * file:line and the expression and counts a failure; st_test_finish() prints
 * "N passed, N failed" and returns the exit code. */
#ifndef STRATA_TEST_CHECK_H
#define STRATA_TEST_CHECK_H
#include <stdio.h>
#include <string.h>
#include "base/base.h"

extern int st_test_passed, st_test_failed;

#define CHECK(cond) do { \
    if (cond) st_test_passed++; \
    else { st_test_failed++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
} while (0)

#define CHECK_MSG(cond, ...) do { \
    if (cond) st_test_passed++; \
    else { st_test_failed++; fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
           fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } \
} while (0)

/* status equals expected and st_last_error() contains needle (NULL: any) */
#define CHECK_ERR(expr, expected, needle) do { \
    st_status _s = (expr); const char *_m = st_last_error(); \
    if (_s == (expected) && (!(needle) || strstr(_m, (needle)))) st_test_passed++; \
    else { st_test_failed++; fprintf(stderr, "%s:%d: CHECK_ERR failed: %s\n  status %s (want %s)\n  message: %s\n  want substring: %s\n", \
           __FILE__, __LINE__, #expr, st_status_name(_s), st_status_name(expected), _m, (needle) ? (needle) : "(any)"); } \
} while (0)

#define CHECK_OK(expr) CHECK_ERR(expr, ST_OK, NULL)

int st_test_finish(const char *name);

#endif
