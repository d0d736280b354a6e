/* tests/fuzz/fuzz.h — what every fuzz target shares.
 *
 * Each target is one file tests/fuzz/fuzz_<name>.c defining the libFuzzer
 * entry point LLVMFuzzerTestOneInput(data, size). The same file builds two
 * ways: with clang -fsanitize=fuzzer,address,undefined (tools/fuzz.sh, CI)
 * and, in every ordinary build, with replay.c as main, which feeds it every
 * file of the corpus and regression directories (ctest fuzz_regress_<name>).
 *
 * A target asserts with FZ_ASSERT: a broken property aborts, which libFuzzer
 * reports as a crash and the replay test as a failure. Parser errors are not
 * failures; crashes, leaks, undefined behaviour, hangs and broken properties
 * are. */
#ifndef STRATA_FUZZ_H
#define STRATA_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_ASSERT(cond) do { \
    if (!(cond)) { fprintf(stderr, "%s:%d: fuzz property broken: %s\n", __FILE__, __LINE__, #cond); abort(); } \
} while (0)

/* Inputs made of several files are split on this line (the dictionaries list it). */
#define FZ_SEPARATOR "\n@@strata-part@@\n"

/* The next part of *data (up to the separator or the end); advances data and size.
 * Returns false when nothing is left. */
int fz_next_part(const uint8_t **data, size_t *size, const uint8_t **part, size_t *part_len);

/* A private directory for this process (made once, removed at exit). */
const char *fz_dir(void);
/* Writes bytes to fz_dir()/name and returns the full path (static buffer per slot 0..3). */
const char *fz_write(int slot, const char *name, const void *bytes, size_t len);
/* Removes fz_dir()/name when it exists. */
void fz_remove(const char *name);
/* The same bytes as a NUL-terminated malloc'ed string (caller frees). */
char *fz_strndup(const uint8_t *p, size_t n);

#endif
