/* base/base.h — status codes, the last-error message, logging, terminal colour
 * and small helpers every folder may call. Nothing here allocates on a hot path.
 *
 * Errors: library functions return st_status (or NULL) and describe the failure
 * with st_error_set(); the caller reads it with st_last_error(). Messages name
 * what failed and where; an optional line "hint: ..." says what to change.
 * The message is thread-local and survives until the next st_error_set(). */
#ifndef STRATA_BASE_H
#define STRATA_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum st_status {
    ST_OK = 0,
    ST_ERR_USAGE,        /* bad command-line use (exit 2) */
    ST_ERR_CONFIG,       /* deployment YAML / plan invalid or impossible (exit 2) */
    ST_ERR_FORMAT,       /* malformed model, tokenizer or JSON file */
    ST_ERR_IO,           /* open/read/mmap failed */
    ST_ERR_NOMEM,        /* host allocation failed */
    ST_ERR_DEVICE_OOM,   /* device allocation failed: recoverable */
    ST_ERR_DEVICE,       /* a device call failed */
    ST_ERR_UNSUPPORTED,  /* valid input this build or device cannot run */
    ST_ERR_NOT_BUILT,    /* feature left out of this build (exit 2) */
    ST_ERR_INTERNAL,     /* a bug: an invariant broke */
    ST_ERR_NUMERIC,      /* the forward pass produced NaN or an infinity (weights, hyper-parameters, precision) */
    ST_ERR_BUSY,         /* no room now (every KV slot taken, a queue full): try again later */
} st_status;

/* Short stable name of a status ("config", "format", ...). Never NULL. */
const char *st_status_name(st_status s);

/* Process exit code documented in the README: 0 ok, 2 usage/configuration, 1 otherwise. */
int st_status_exit_code(st_status s);

/* Sets the thread's error message (printf format) and returns s, so that
 * `return st_error_set(ST_ERR_FORMAT, "...")` reads naturally. */
st_status st_error_set(st_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
st_status st_error_setv(st_status s, const char *fmt, va_list ap);

/* Appends "\nhint: <text>" to the current message. Returns the current status. */
st_status st_error_hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prefixes the current message with "<text>: " (adds context on the way up). */
st_status st_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The current message ("" when none) and status (ST_OK when none). */
const char *st_last_error(void);
st_status st_last_status(void);
void st_error_clear(void);

/* ---- logging ---------------------------------------------------------- */
typedef enum st_log_level {
    ST_LOG_ERROR = 0, ST_LOG_WARN, ST_LOG_INFO, ST_LOG_DEBUG,
} st_log_level;

void st_log_set_level(st_log_level level);   /* default ST_LOG_WARN; -v: INFO, -vv: DEBUG, -q: ERROR */
st_log_level st_log_get_level(void);
void st_log(st_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define ST_WARN(...)  st_log(ST_LOG_WARN, __VA_ARGS__)
#define ST_INFO(...)  st_log(ST_LOG_INFO, __VA_ARGS__)
#define ST_DEBUG(...) st_log(ST_LOG_DEBUG, __VA_ARGS__)

/* Colour only on a TTY and only when NO_COLOR is unset. Codes are "" otherwise. */
bool st_term_color(FILE *f);
const char *st_color(FILE *f, const char *ansi_code); /* e.g. st_color(stdout, "1;31") */
const char *st_color_reset(FILE *f);

/* ---- helpers ---------------------------------------------------------- */

/* Parses "512MiB", "22GiB", "22GB", "1.5 GB", "4096" (bytes) into bytes.
 * Units: B, KB/MB/GB/TB (powers of 1000), KiB/MiB/GiB/TiB (powers of 1024),
 * case-insensitive; K/M/G/T alone mean binary. Negative, empty, overflowing
 * or unknown-unit strings return ST_ERR_CONFIG with a message. */
st_status st_parse_size(const char *text, uint64_t *out_bytes);

/* Formats bytes as "1.50 GiB" into buf (>= 16 chars). Returns buf. */
char *st_format_bytes(uint64_t bytes, char *buf, size_t buf_len);

/* Levenshtein distance (ASCII), used for "did you mean" hints. */
int st_edit_distance(const char *a, const char *b);
/* The candidate nearest to word within distance max(2, len/3), or NULL. */
const char *st_nearest_word(const char *word, const char *const *candidates, size_t n);

/* Reads a whole file into a NUL-terminated malloc'ed buffer. */
st_status st_read_file(const char *path, char **out_data, size_t *out_len);
/* The same, refusing (ST_ERR_FORMAT, naming both sizes) a file larger than
 * max_bytes before anything is allocated. */
st_status st_read_file_limit(const char *path, size_t max_bytes, char **out_data, size_t *out_len);

/* Monotonic clock in seconds. */
double st_time_s(void);

/* Checked allocation helpers: on failure they set ST_ERR_NOMEM naming `what`
 * and the size. Every host allocation of the library goes through them (the
 * fault switch below counts and fails them). st_realloc leaves p untouched
 * on failure. Free with free(). */
void *st_malloc(size_t bytes, const char *what);
void *st_calloc(size_t n, size_t size, const char *what);
void *st_realloc(void *p, size_t bytes, const char *what);
char *st_strdup(const char *s, const char *what);
char *st_strndup(const char *s, size_t n, const char *what);   /* at most n bytes of s, NUL-terminated */

/* ---- injected faults (tests only; docs/faults.md) ----------------------- */

/* Events that a test can make fail. Every library site of that kind asks
 * st_fault_hit() first: host allocations (st_malloc and friends), file reads
 * (st_read_file, model mappings, JSON files), device buffer allocations
 * (each backend's alloc) and link transfers (st_link_send). */
typedef enum st_fault_kind {
    ST_FAULT_ALLOC = 0,
    ST_FAULT_READ,
    ST_FAULT_DEV_ALLOC,
    ST_FAULT_LINK,
    ST_FAULT_KINDS
} st_fault_kind;

/* "alloc", "read", "dev_alloc", "link". */
const char *st_fault_kind_name(st_fault_kind k);

/* Counts one event of kind k and returns true when it must fail: when
 * STRATA_FAULT=KIND:N names this kind and this is its Nth event (1-based)
 * since the process started or st_fault_set() was last called. Without
 * STRATA_FAULT it only counts. Thread-safe. When it fails an event from the
 * environment it says so on stderr, naming what (the allocation's purpose,
 * the file; may be NULL): "strata: STRATA_FAULT=alloc:57 fails here (what)",
 * so a test can tell a failure that was handled from one that was ignored.
 * STRATA_FAULT=count prints the counts at exit ("strata: fault sites: alloc
 * N, read N, dev_alloc N, link N"). */
bool st_fault_hit(st_fault_kind k, const char *what);

/* For in-process tests: fail the nth event of k from now on (n 0 = none) and
 * reset every count. Overrides STRATA_FAULT. */
void st_fault_set(st_fault_kind k, int64_t n);
/* Events of kind k counted since the start or the last st_fault_set(). */
int64_t st_fault_count(st_fault_kind k);

/* Read-only file mappings, so that a copy out of one can read the file instead:
 * pread() from many threads scales with the page cache (on a 16-core H100 host:
 * 46 GB/s from 16 threads), faulting the mapping in does not (20 GB/s with
 * MADV_POPULATE_READ from 8, 40 from 16 faulting threads). The model loader
 * registers each file it maps and removes it before unmapping; the registry
 * keeps its own descriptor of the file. Thread-safe. */
st_status st_filemap_add(const void *map, size_t size, int fd, const char *path);   /* fd: duplicated */
void st_filemap_remove(const void *map);
/* The file behind [p, p + n) when one registered mapping holds all of it: a
 * descriptor to pread (valid until the mapping is removed) and the offset of p. */
bool st_filemap_find(const void *p, size_t n, int *fd, uint64_t *offset);

/* Large host copies by a pool of threads kept for its owner's life. A GPU's
 * weight import copies each piece of a tensor into pinned staging memory; the
 * page cache is read several times faster by many threads than by one (above),
 * and starting those threads for every piece cost more than copying a 25 MB
 * piece. */
typedef struct st_host_copy st_host_copy;
/* A pool of at most max_threads threads counting the caller (16 at most, no
 * more than the CPUs); NULL without memory, which st_host_copy_run accepts. */
st_host_copy *st_host_copy_new(int max_threads);
void st_host_copy_free(st_host_copy *hc);
/* Copies n bytes to dst: from the file fd at off by pread where fd >= 0 (what
 * pread cannot give, src gives), else from src; in parts of at least min_part
 * bytes, one per thread. Returns the number of parts (threads that copied). */
int st_host_copy_run(st_host_copy *hc, void *dst, const void *src, size_t n, int fd, uint64_t off, size_t min_part);

/* Overflow-checked size arithmetic: false on overflow. */
static inline bool st_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool st_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return __builtin_add_overflow(a, b, out);
}

/* Build facts filled in by CMake (version.c). */
const char *st_version_string(void);  /* "0.1.0" */
const char *st_build_commit(void);    /* git commit or "unknown" */
const char *st_build_options(void);   /* "cuda=ON nccl=ON mpi=OFF sanitize=" */

#define ST_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define ST_MIN(a, b) ((a) < (b) ? (a) : (b))
#define ST_MAX(a, b) ((a) > (b) ? (a) : (b))

#ifdef __cplusplus
}
#endif
#endif /* STRATA_BASE_H */
