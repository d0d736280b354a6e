/* Injected faults for tests (docs/faults.md): STRATA_FAULT=KIND:N makes the
 * Nth event of KIND fail. Always compiled in: the cost is one atomic increment
 * per allocation, file read, device allocation or link transfer. */
#include "base.h"

#include <stdlib.h>
#include <string.h>

static const char *const kind_names[ST_FAULT_KINDS] = {"alloc", "read", "dev_alloc", "link"};

static int64_t g_count[ST_FAULT_KINDS];   /* atomic */
static int g_kind = -1;                   /* the kind that fails, -1 none */
static int64_t g_nth;                     /* which event of it (1-based) */
static int g_state;                       /* 0 unread, 1 read (atomic) */
static bool g_from_env;                   /* the fault came from STRATA_FAULT (announce it) */

const char *st_fault_kind_name(st_fault_kind k) {
    return (unsigned)k < ST_FAULT_KINDS ? kind_names[k] : "?";
}

static void report_counts(void) {
    fprintf(stderr, "strata: fault sites: alloc %lld, read %lld, dev_alloc %lld, link %lld\n",
            (long long)__atomic_load_n(&g_count[ST_FAULT_ALLOC], __ATOMIC_RELAXED),
            (long long)__atomic_load_n(&g_count[ST_FAULT_READ], __ATOMIC_RELAXED),
            (long long)__atomic_load_n(&g_count[ST_FAULT_DEV_ALLOC], __ATOMIC_RELAXED),
            (long long)__atomic_load_n(&g_count[ST_FAULT_LINK], __ATOMIC_RELAXED));
}

/* STRATA_FAULT: "count", or "KIND:N" with N >= 1. Anything else is reported
 * once and ignored: a typo must not silently test nothing, nor stop the run. */
static void read_env(void) {
    if (__atomic_load_n(&g_state, __ATOMIC_ACQUIRE)) return;
    const char *e = getenv("STRATA_FAULT");
    if (e && e[0]) {
        if (!strcmp(e, "count")) {
            atexit(report_counts);
        } else {
            const char *colon = strchr(e, ':');
            int kind = -1;
            for (int k = 0; colon && k < ST_FAULT_KINDS; k++) {
                if ((size_t)(colon - e) == strlen(kind_names[k]) && !strncmp(e, kind_names[k], (size_t)(colon - e))) kind = k;
            }
            char *end = NULL;
            long long n = colon ? strtoll(colon + 1, &end, 10) : 0;
            if (kind < 0 || !end || *end || n < 1) {
                fprintf(stderr, "strata: warning: STRATA_FAULT='%s' is not 'count' or KIND:N (KIND alloc, read, "
                        "dev_alloc or link; N >= 1); no fault is injected\n", e);
            } else {
                g_kind = kind;
                g_nth = n;
                g_from_env = true;
            }
        }
    }
    __atomic_store_n(&g_state, 1, __ATOMIC_RELEASE);
}

bool st_fault_hit(st_fault_kind k, const char *what) {
    if ((unsigned)k >= ST_FAULT_KINDS) return false;
    read_env();
    int64_t n = __atomic_add_fetch(&g_count[k], 1, __ATOMIC_RELAXED);
    if ((int)k != g_kind || n != g_nth) return false;
    if (g_from_env) fprintf(stderr, "strata: STRATA_FAULT=%s:%lld fails here (%s)\n", kind_names[k], (long long)n, what ? what : "?");
    return true;
}

void st_fault_set(st_fault_kind k, int64_t n) {
    read_env();
    for (int i = 0; i < ST_FAULT_KINDS; i++) __atomic_store_n(&g_count[i], 0, __ATOMIC_RELAXED);
    g_kind = n > 0 && (unsigned)k < ST_FAULT_KINDS ? (int)k : -1;
    g_nth = n;
    g_from_env = false;
}

int64_t st_fault_count(st_fault_kind k) {
    return (unsigned)k < ST_FAULT_KINDS ? __atomic_load_n(&g_count[k], __ATOMIC_RELAXED) : 0;
}
