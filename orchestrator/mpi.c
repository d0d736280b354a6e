/* Several ranks under mpirun: joining the world, host names, point-to-point
 * bytes with a watchdog, gather and agreement, and the abort that ends a
 * broken run. One process without mpirun; the build without MPI keeps the
 * same functions for one rank. */
#include "orchestrator/mpi.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#ifdef STRATA_HAVE_MPI
#include <mpi.h>
_Static_assert(sizeof(MPI_Request) <= sizeof(((st_mpi_req *)0)->handle), "st_mpi_req holds an MPI_Request");
#endif

#define HOST_LEN 64

static struct {
    bool on;                     /* MPI_Init was called by st_mpi_init */
    int rank, size;
    char (*hosts)[HOST_LEN];     /* (size) */
    char where[2][HOST_LEN + 32];
    int where_next;
    double timeout_s;
} g = {.size = 1, .timeout_s = -1};

bool st_mpi_launched(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < ST_ARRAY_LEN(vars); i++)
        if (getenv(vars[i])) return true;
    return false;
}

/* The world size the launcher announces, 0 when it does not say. */
static __attribute__((unused)) int launched_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < ST_ARRAY_LEN(vars); i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

int st_mpi_rank(void) { return g.rank; }
int st_mpi_size(void) { return g.size; }

const char *st_mpi_host(int rank) {
    if (g.hosts && rank >= 0 && rank < g.size) return g.hosts[rank];
    return "";
}

const char *st_mpi_where(int rank) {
    char *buf = g.where[g.where_next++ & 1];   /* two at once: "from X to Y" */
    const char *h = st_mpi_host(rank);
    if (h[0]) snprintf(buf, HOST_LEN + 32, "rank %d (%s)", rank, h);
    else snprintf(buf, HOST_LEN + 32, "rank %d", rank);
    return buf;
}

double st_mpi_timeout_s(void) {
    if (g.timeout_s < 0) {
        const char *v = getenv("STRATA_MPI_TIMEOUT");
        char *end = NULL;
        double t = v ? strtod(v, &end) : 300.0;
        if (v && (end == v || *end || !(t >= 0))) {
            ST_WARN("STRATA_MPI_TIMEOUT='%s' is not a number of seconds; using 300", v);
            t = 300.0;
        }
        g.timeout_s = t;
    }
    return g.timeout_s;
}

#ifdef STRATA_HAVE_MPI

/* Between two polls: yield for the first 2 ms (a pass's answer is usually
 * close), then sleep a little longer each time, up to 1 ms (an idle peer). */
static void nap(double t0, long *nap_ns) {
    if (st_time_s() - t0 < 2e-3) {
        sched_yield();
        return;
    }
    if (*nap_ns < 1000000) *nap_ns = *nap_ns ? *nap_ns * 2 : 1000;
    struct timespec ts = {0, *nap_ns};
    nanosleep(&ts, NULL);
}

static char self_line[160];

/* The launcher ends the other ranks with SIGTERM when one fails: say so. */
static void on_sigterm(int sig) {
    (void)sig;
    ssize_t w = write(STDERR_FILENO, self_line, strlen(self_line));
    (void)w;
    _exit(143);
}

static st_status mpi_err(int rc, const char *what, int peer) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    if (peer >= 0) st_error_set(ST_ERR_IO, "MPI %s with %s failed: %s", what, st_mpi_where(peer), msg);
    else st_error_set(ST_ERR_IO, "MPI %s failed: %s", what, msg);
    return st_error_hint("a rank or its network went away; mpirun's own message names it");
}

st_status st_mpi_init(int *argc, char ***argv) {
    if (!st_mpi_launched()) return ST_OK;
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) return mpi_err(rc, "init", -1);
    g.on = true;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g.size);
    g.hosts = calloc((size_t)g.size, HOST_LEN);
    if (!g.hosts) return st_error_set(ST_ERR_NOMEM, "out of memory for %d ranks' host names", g.size);
    char me[HOST_LEN] = "";
    gethostname(me, sizeof me - 1);
    if ((rc = MPI_Allgather(me, HOST_LEN, MPI_CHAR, g.hosts, HOST_LEN, MPI_CHAR, MPI_COMM_WORLD)) != MPI_SUCCESS)
        return mpi_err(rc, "gather of host names", -1);
    if (g.size > 1) {
        snprintf(self_line, sizeof self_line, "strata: %s: stopped by the launcher (another rank failed or mpirun "
                 "was stopped)\n", st_mpi_where(g.rank));
        struct sigaction sa = {.sa_handler = on_sigterm};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
    }
    if (provided < MPI_THREAD_SERIALIZED)
        ST_DEBUG("MPI gives thread level %d; strata calls MPI from one thread at a time", provided);
    return ST_OK;
}

st_status st_mpi_tell_all(int32_t kind, int32_t arg) {
    int32_t msg[2] = {kind, arg};
    for (int r = 1; r < g.size; r++) {
        int rc = MPI_Send(msg, (int)sizeof msg, MPI_BYTE, r, ST_MPI_TAG_CTRL, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_err(rc, "send", r);
    }
    return ST_OK;
}

void st_mpi_finalize(int exit_code) {
    if (!g.on) return;
    if (g.rank == 0 && g.size > 1) st_mpi_tell_all(ST_MPI_MSG_STOP, exit_code);
    MPI_Finalize();
    g.on = false;
}

st_status st_mpi_send(int peer, int tag, const void *buf, size_t bytes) {
    if (bytes > (size_t)INT32_MAX)
        return st_error_set(ST_ERR_UNSUPPORTED, "MPI send of %zu bytes to %s: more than 2 GiB in one message", bytes,
                            st_mpi_where(peer));
    int rc = MPI_Send(buf, (int)bytes, MPI_BYTE, peer, tag, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? ST_OK : mpi_err(rc, "send", peer);
}

/* Waits for a request: polls (a blocking MPI call spins a core) and sleeps a
 * little longer each time, up to 1 ms; past the timeout the peer is silent. */
static st_status wait_req(MPI_Request *r, MPI_Status *status, int peer, double timeout_s, const char *what) {
    const double t0 = st_time_s();
    long nap_ns = 0;
    for (;;) {
        int done = 0;
        int rc = MPI_Test(r, &done, status);
        if (rc != MPI_SUCCESS) return mpi_err(rc, what, peer);
        if (done) return ST_OK;
        if (timeout_s > 0 && st_time_s() - t0 > timeout_s) {
            MPI_Cancel(r);
            MPI_Request_free(r);
            st_error_set(ST_ERR_IO, "%s: nothing from %s within %.0f s", what, st_mpi_where(peer), timeout_s);
            return st_error_hint("that rank is stuck or gone (STRATA_MPI_TIMEOUT sets the watchdog in seconds)");
        }
        nap(t0, &nap_ns);
    }
}

static st_status recv_timed(int peer, int tag, void *buf, size_t bytes, size_t *got, double timeout_s);

st_status st_mpi_recv(int peer, int tag, void *buf, size_t bytes, size_t *got) {
    return recv_timed(peer, tag, buf, bytes, got, st_mpi_timeout_s());
}

st_status st_mpi_recv_idle(int peer, int tag, void *buf, size_t bytes, size_t *got) {
    return recv_timed(peer, tag, buf, bytes, got, 0);
}

static st_status recv_timed(int peer, int tag, void *buf, size_t bytes, size_t *got, double timeout_s) {
    if (bytes > (size_t)INT32_MAX)
        return st_error_set(ST_ERR_UNSUPPORTED, "MPI receive of %zu bytes from %s: more than 2 GiB in one message",
                            bytes, st_mpi_where(peer));
    MPI_Request r;
    MPI_Status status;
    int rc = MPI_Irecv(buf, (int)bytes, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &r);
    if (rc != MPI_SUCCESS) return mpi_err(rc, "receive", peer);
    st_status s = wait_req(&r, &status, peer, timeout_s, "receive");
    if (s) return s;
    int n = 0;
    MPI_Get_count(&status, MPI_BYTE, &n);
    if (got) *got = (size_t)n;
    return ST_OK;
}

st_status st_mpi_recv_alloc(int peer, int tag, bool wait_forever, void **buf, size_t *bytes) {
    *buf = NULL;
    *bytes = 0;
    const double t0 = st_time_s(), limit = wait_forever ? 0 : st_mpi_timeout_s();
    long nap_ns = 0;
    MPI_Status status;
    for (;;) {   /* probe without spinning a core */
        int flag = 0;
        int rc = MPI_Iprobe(peer, tag, MPI_COMM_WORLD, &flag, &status);
        if (rc != MPI_SUCCESS) return mpi_err(rc, "probe", peer);
        if (flag) break;
        if (limit > 0 && st_time_s() - t0 > limit) {
            st_error_set(ST_ERR_IO, "receive: nothing from %s within %.0f s", st_mpi_where(peer), limit);
            return st_error_hint("that rank is stuck or gone (STRATA_MPI_TIMEOUT sets the watchdog in seconds)");
        }
        nap(t0, &nap_ns);
    }
    int n = 0;
    MPI_Get_count(&status, MPI_BYTE, &n);
    void *p = malloc(n > 0 ? (size_t)n : 1);
    if (!p) return st_error_set(ST_ERR_NOMEM, "out of memory for a %d-byte message from %s", n, st_mpi_where(peer));
    int rc = MPI_Recv(p, n, MPI_BYTE, status.MPI_SOURCE, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) { free(p); return mpi_err(rc, "receive", peer); }
    *buf = p;
    *bytes = (size_t)n;
    return ST_OK;
}

st_status st_mpi_irecv(int peer, int tag, void *buf, size_t bytes, st_mpi_req *req) {
    memset(req, 0, sizeof *req);
    if (bytes > (size_t)INT32_MAX)
        return st_error_set(ST_ERR_UNSUPPORTED, "MPI receive of %zu bytes from %s: more than 2 GiB in one message",
                            bytes, st_mpi_where(peer));
    MPI_Request r;
    int rc = MPI_Irecv(buf, (int)bytes, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &r);
    if (rc != MPI_SUCCESS) return mpi_err(rc, "receive", peer);
    memcpy(req->handle, &r, sizeof r);
    req->peer = peer;
    req->tag = tag;
    req->active = true;
    return ST_OK;
}

st_status st_mpi_wait(st_mpi_req *req) {
    if (!req->active) return ST_OK;
    MPI_Request r;
    memcpy(&r, req->handle, sizeof r);
    req->active = false;
    return wait_req(&r, MPI_STATUS_IGNORE, req->peer, st_mpi_timeout_s(), "receive");
}

st_status st_mpi_gather(const void *buf, size_t bytes, void ***all, size_t **sizes) {
    *all = NULL;
    *sizes = NULL;
    if (bytes > (size_t)INT32_MAX) return st_error_set(ST_ERR_UNSUPPORTED, "MPI gather of %zu bytes", bytes);
    int n = (int)bytes, *counts = NULL, *displs = NULL;
    char *flat = NULL;
    if (g.rank == 0) {
        counts = calloc((size_t)g.size, sizeof *counts);
        displs = calloc((size_t)g.size, sizeof *displs);
        if (!counts || !displs) { free(counts); free(displs); return st_error_set(ST_ERR_NOMEM, "MPI gather"); }
    }
    int rc = MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) { free(counts); free(displs); return mpi_err(rc, "gather", -1); }
    size_t total = 0;
    if (g.rank == 0) {
        for (int r = 0; r < g.size; r++) {
            if (total + (size_t)counts[r] > (size_t)INT32_MAX) {
                free(counts); free(displs);
                return st_error_set(ST_ERR_UNSUPPORTED, "MPI gather of more than 2 GiB");
            }
            displs[r] = (int)total;
            total += (size_t)counts[r];
        }
        flat = malloc(total ? total : 1);
        if (!flat) { free(counts); free(displs); return st_error_set(ST_ERR_NOMEM, "MPI gather of %zu bytes", total); }
    }
    rc = MPI_Gatherv(buf, n, MPI_BYTE, flat, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD);
    st_status s = rc == MPI_SUCCESS ? ST_OK : mpi_err(rc, "gather", -1);
    if (!s && g.rank == 0) {
        void **a = calloc((size_t)g.size, sizeof *a);
        size_t *z = calloc((size_t)g.size, sizeof *z);
        for (int r = 0; a && z && r < g.size; r++) {
            a[r] = malloc(counts[r] ? (size_t)counts[r] : 1);
            if (!a[r]) break;
            memcpy(a[r], flat + displs[r], (size_t)counts[r]);
            z[r] = (size_t)counts[r];
        }
        bool ok = a && z;
        for (int r = 0; ok && r < g.size; r++) ok = a[r] != NULL;
        if (ok) {
            *all = a;
            *sizes = z;
        } else {
            for (int r = 0; a && r < g.size; r++) free(a[r]);
            free(a);
            free(z);
            s = st_error_set(ST_ERR_NOMEM, "MPI gather of %zu bytes", total);
        }
    }
    free(flat);
    free(counts);
    free(displs);
    return s;
}

st_status st_mpi_agree(st_status local) {
    if (g.size <= 1) return local;
    int mine = (int)local, *all = calloc((size_t)g.size, sizeof *all);
    if (!all) return st_error_set(ST_ERR_NOMEM, "MPI agreement");
    int rc = MPI_Allgather(&mine, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) { free(all); return mpi_err(rc, "agreement", -1); }
    int bad = -1;
    for (int r = 0; r < g.size && bad < 0; r++)
        if (all[r] != ST_OK) bad = r;
    st_status s = bad >= 0 ? (st_status)all[bad] : ST_OK;
    free(all);
    if (bad < 0) return ST_OK;
    char msg[4096] = "";
    if (g.rank == bad) snprintf(msg, sizeof msg, "%s", st_last_error());
    if ((rc = MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, bad, MPI_COMM_WORLD)) != MPI_SUCCESS)
        return mpi_err(rc, "agreement", bad);
    msg[sizeof msg - 1] = 0;
    /* one prefix: rank 0's own errors and messages that already name a rank (a gathered one) keep theirs */
    if (bad == 0 || !strncmp(msg, "rank ", 5)) st_error_set(s, "%s", msg);
    else st_error_set(s, "%s: %s", st_mpi_where(bad), msg);
    return s;
}

/* Ping-pong between a (initiator) and b: one-way latency of 4 bytes (median
 * of 20 round trips / 2) and the bandwidth of 16 MiB messages (best of 3,
 * the receiver's 4-byte answer taken out). */
#define PROBE_BYTES (16u << 20)
static st_status probe_pair(int a, int b, char *buf, double *lat_us, double *bw_gbps) {
    /* blocking calls: they spin, which is what a latency measurement wants (the watchdog is not needed:
       both ranks are here, in the same order of pairs) */
    const int peer = g.rank == a ? b : a, tag = 7000;
    double rtt[20];
    int32_t x = 0;
    int rc = MPI_SUCCESS;
    for (int k = 0; k < 20 && rc == MPI_SUCCESS; k++) {
        double t0 = st_time_s();
        if (g.rank == a) {
            rc = MPI_Send(&x, 1, MPI_INT, peer, tag, MPI_COMM_WORLD);
            if (rc == MPI_SUCCESS) rc = MPI_Recv(&x, 1, MPI_INT, peer, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            rc = MPI_Recv(&x, 1, MPI_INT, peer, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (rc == MPI_SUCCESS) rc = MPI_Send(&x, 1, MPI_INT, peer, tag, MPI_COMM_WORLD);
        }
        rtt[k] = st_time_s() - t0;
    }
    for (int i = 1; i < 20; i++)
        for (int j = i; j > 0 && rtt[j] < rtt[j - 1]; j--) { double t = rtt[j]; rtt[j] = rtt[j - 1]; rtt[j - 1] = t; }
    const double lat = rtt[10] / 2;
    double best = 0;
    for (int k = 0; k < 3 && rc == MPI_SUCCESS; k++) {
        double t0 = st_time_s();
        if (g.rank == a) {
            rc = MPI_Send(buf, (int)PROBE_BYTES, MPI_BYTE, peer, tag + 1, MPI_COMM_WORLD);
            if (rc == MPI_SUCCESS) rc = MPI_Recv(&x, 1, MPI_INT, peer, tag + 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        } else {
            rc = MPI_Recv(buf, (int)PROBE_BYTES, MPI_BYTE, peer, tag + 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            if (rc == MPI_SUCCESS) rc = MPI_Send(&x, 1, MPI_INT, peer, tag + 1, MPI_COMM_WORLD);
        }
        double dt = st_time_s() - t0 - lat;
        if (dt > 0 && PROBE_BYTES / dt / 1e9 > best) best = PROBE_BYTES / dt / 1e9;
    }
    *lat_us = lat * 1e6;
    *bw_gbps = best;
    return rc == MPI_SUCCESS ? ST_OK : mpi_err(rc, "network probe", peer);
}

st_status st_mpi_probe_links(double **lat_us, double **bw_gbps) {
    *lat_us = NULL;
    *bw_gbps = NULL;
    const int n = g.size;
    double *row = calloc(2 * (size_t)n, sizeof *row);   /* this rank as initiator: latency, bandwidth to each */
    char *buf = malloc(PROBE_BYTES);
    st_status s = row && buf ? ST_OK : st_error_set(ST_ERR_NOMEM, "network probe buffers");
    /* every pair in one order on every rank; a rank sits out the pairs that are not its own */
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) {
            if (g.rank != a && g.rank != b) continue;
            double l = 0, w = 0;
            if (!s) s = probe_pair(a, b, buf, &l, &w);
            if (g.rank == a) { row[b] = l; row[n + b] = w; }
        }
    free(buf);
    void **all = NULL;
    size_t *sizes = NULL;
    st_status gs = st_mpi_gather(row ? (void *)row : (void *)&n, row ? 2 * (size_t)n * sizeof *row : 0, &all, &sizes);
    free(row);
    if (!s) s = gs;
    if (!s && g.rank == 0) {
        *lat_us = calloc((size_t)n * (size_t)n, sizeof **lat_us);
        *bw_gbps = calloc((size_t)n * (size_t)n, sizeof **bw_gbps);
        if (!*lat_us || !*bw_gbps) s = st_error_set(ST_ERR_NOMEM, "network probe results");
        for (int a = 0; a < n && !s; a++) {
            if (sizes[a] != 2 * (size_t)n * sizeof(double)) { s = st_error_set(ST_ERR_INTERNAL, "network probe"); break; }
            const double *r = all[a];
            for (int b = a + 1; b < n; b++) {   /* the same both ways */
                (*lat_us)[a * n + b] = (*lat_us)[b * n + a] = r[b];
                (*bw_gbps)[a * n + b] = (*bw_gbps)[b * n + a] = r[n + b];
                ST_INFO("network probe: %s <-> %s: %.1f us, %.2f GB/s", st_mpi_where(a), st_mpi_where(b), r[b], r[n + b]);
            }
        }
        if (s) { free(*lat_us); free(*bw_gbps); *lat_us = *bw_gbps = NULL; }
    }
    for (int r = 0; all && r < n; r++) free(all[r]);
    free(all);
    free(sizes);
    return s;
}

void st_mpi_abort(st_status s) {
    if (!g.on || g.size <= 1) return;
    const char *msg = st_last_error();
    fprintf(stderr, "error: %s: %s\n", st_mpi_where(g.rank), msg[0] ? msg : st_status_name(s));
    fprintf(stderr, "strata: %s ends the run on every rank (MPI_Abort)\n", st_mpi_where(g.rank));
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, st_status_exit_code(s));
    _exit(st_status_exit_code(s));
}

#else /* !STRATA_HAVE_MPI */

st_status st_mpi_init(int *argc, char ***argv) {
    (void)argc; (void)argv;
    int n = launched_size();
    if (st_mpi_launched() && n > 1) {
        st_error_set(ST_ERR_NOT_BUILT, "mpirun started %d ranks, but this strata was built without MPI", n);
        return st_error_hint("install Open MPI (tools/install-deps.sh: libopenmpi-dev openmpi-bin) and rebuild; "
                             "'strata --version' says mpi=ON when it is in");
    }
    return ST_OK;
}
void st_mpi_finalize(int exit_code) { (void)exit_code; }

static st_status no_mpi(void) {
    st_error_set(ST_ERR_NOT_BUILT, "this strata was built without MPI: one process only");
    return st_error_hint("install libopenmpi-dev and rebuild");
}
st_status st_mpi_send(int peer, int tag, const void *buf, size_t bytes) {
    (void)peer; (void)tag; (void)buf; (void)bytes;
    return no_mpi();
}
st_status st_mpi_recv(int peer, int tag, void *buf, size_t bytes, size_t *got) {
    (void)peer; (void)tag; (void)buf; (void)bytes; (void)got;
    return no_mpi();
}
st_status st_mpi_recv_idle(int peer, int tag, void *buf, size_t bytes, size_t *got) {
    return st_mpi_recv(peer, tag, buf, bytes, got);
}
st_status st_mpi_tell_all(int32_t kind, int32_t arg) {
    (void)kind; (void)arg;
    return ST_OK;
}
st_status st_mpi_recv_alloc(int peer, int tag, bool wait_forever, void **buf, size_t *bytes) {
    (void)peer; (void)tag; (void)wait_forever;
    *buf = NULL;
    *bytes = 0;
    return no_mpi();
}
st_status st_mpi_irecv(int peer, int tag, void *buf, size_t bytes, st_mpi_req *req) {
    (void)peer; (void)tag; (void)buf; (void)bytes;
    memset(req, 0, sizeof *req);
    return no_mpi();
}
st_status st_mpi_wait(st_mpi_req *req) { return req->active ? no_mpi() : ST_OK; }
st_status st_mpi_gather(const void *buf, size_t bytes, void ***all, size_t **sizes) {
    /* one rank: its own bytes */
    *all = calloc(1, sizeof **all);
    *sizes = calloc(1, sizeof **sizes);
    if (!*all || !*sizes || !((*all)[0] = malloc(bytes ? bytes : 1))) {
        if (*all) free((*all)[0]);
        free(*all);
        free(*sizes);
        *all = NULL;
        *sizes = NULL;
        return st_error_set(ST_ERR_NOMEM, "gather of %zu bytes", bytes);
    }
    memcpy((*all)[0], buf, bytes);
    (*sizes)[0] = bytes;
    return ST_OK;
}
st_status st_mpi_agree(st_status local) { return local; }
st_status st_mpi_probe_links(double **lat_us, double **bw_gbps) {
    *lat_us = NULL;
    *bw_gbps = NULL;
    return ST_OK;
}
void st_mpi_abort(st_status s) { (void)s; }

#endif
