/* Link endpoints across processes (MPI ranks): MPI point-to-point through
 * host memory when a CPU is at either end, NCCL between two GPUs (the
 * communicator itself lives in devices/cuda/link_cuda.cu; its id travels
 * here). The engine makes a send endpoint beside the producing stage and a
 * receive endpoint beside the consuming one (devices/device.h). */
#include "devices/link-impl.h"

#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <time.h>

#ifdef STRATA_HAVE_MPI
#include <mpi.h>

struct mpi_link {
    struct st_link base;
    bool send;                   /* a send endpoint, else a receive endpoint */
    st_backend *be;
    const struct st_device_ops *ops;
    bool cpu;                    /* host memory is the device's: no staging copy on a receive */
    struct st_link_peer peer;
    char where[96];
    void **bufs;                 /* (n_bufs) staging of max_bytes: sends leave from here */
    MPI_Request *reqs;           /* (n_bufs) the send in flight from each buffer, or MPI_REQUEST_NULL */
    int next;                    /* the buffer the next send uses */
    void *in;                    /* receive staging (max_bytes) for a GPU end */
};

static st_status mpi_fail(int rc, const struct mpi_link *m, const char *what) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    st_error_set(ST_ERR_IO, "mpi link %s %s: %s", what, m->where, msg);
    return st_error_hint("the other rank or the network went away; mpirun's own message names it");
}

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

/* Polls a request (a blocking MPI call spins a core), sleeping a little
 * longer each time up to 1 ms; past timeout_s the peer is silent. */
static st_status wait_req(struct mpi_link *m, MPI_Request *r, const char *what) {
    const double t0 = st_time_s();
    long nap_ns = 0;
    for (;;) {
        int done = 0;
        int rc = MPI_Test(r, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, m, what);
        if (done) return ST_OK;
        if (m->peer.timeout_s > 0 && st_time_s() - t0 > m->peer.timeout_s) {
            st_error_set(ST_ERR_IO, "mpi link %s %s: nothing moved within %.0f s", what, m->where, m->peer.timeout_s);
            return st_error_hint("that rank is stuck or gone (STRATA_MPI_TIMEOUT sets the watchdog in seconds)");
        }
        nap(t0, &nap_ns);
    }
}

static st_status mpi_send(struct st_link *l, const void *src_ptr, void *dst_ptr, size_t bytes) {
    struct mpi_link *m = (struct mpi_link *)l;
    (void)dst_ptr;
    if (bytes > l->max_bytes)
        return st_error_set(ST_ERR_INTERNAL, "mpi link: %zu bytes exceed its %zu-byte capacity", bytes, l->max_bytes);
    st_status s;
    if (m->send) {
        const int k = m->next;
        m->next = (m->next + 1) % m->peer.n_bufs;
        if (m->reqs[k] != MPI_REQUEST_NULL && (s = wait_req(m, &m->reqs[k], "send to"))) return s;
        if (m->cpu) memcpy(m->bufs[k], src_ptr, bytes);
        else if ((s = m->ops->download(m->be, m->bufs[k], src_ptr, bytes)))
            return st_error_prefix("mpi link to %s (download)", m->where);
        int rc = MPI_Isend(m->bufs[k], (int)bytes, MPI_BYTE, m->peer.rank, m->peer.tag, MPI_COMM_WORLD, &m->reqs[k]);
        return rc == MPI_SUCCESS ? ST_OK : mpi_fail(rc, m, "send to");
    }
    void *dst = m->cpu ? dst_ptr : m->in;
    MPI_Request r;
    int rc = MPI_Irecv(dst, (int)bytes, MPI_BYTE, m->peer.rank, m->peer.tag, MPI_COMM_WORLD, &r);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, m, "receive from");
    if ((s = wait_req(m, &r, "receive from"))) {
        MPI_Cancel(&r);
        MPI_Request_free(&r);
        return s;
    }
    if (!m->cpu && (s = m->ops->upload(m->be, dst_ptr, m->in, bytes)))
        return st_error_prefix("mpi link from %s (upload)", m->where);
    return ST_OK;
}

static void mpi_destroy(struct st_link *l) {
    struct mpi_link *m = (struct mpi_link *)l;
    for (int k = 0; m->bufs && k < m->peer.n_bufs; k++) {
        if (m->reqs && m->reqs[k] != MPI_REQUEST_NULL) {
            /* a send the peer never took: give up on it rather than wait for ever */
            int done = 0;
            MPI_Test(&m->reqs[k], &done, MPI_STATUS_IGNORE);
            if (!done) {
                MPI_Cancel(&m->reqs[k]);
                MPI_Request_free(&m->reqs[k]);
            }
        }
        free(m->bufs[k]);
    }
    free(m->bufs);
    free(m->reqs);
    free(m->in);
    free(m);
}

static st_status mpi_make(bool send, st_backend *be, const struct st_device_ops *ops, const struct st_device_info *dev,
                          const struct st_link_peer *peer, size_t max_bytes, st_link **out) {
    struct mpi_link *m = st_calloc(1, sizeof *m, "mpi link");
    if (!m) return ST_ERR_NOMEM;
    m->base.type = ST_LINK_T_MPI;
    m->base.max_bytes = max_bytes;
    m->base.send = mpi_send;
    m->base.destroy = mpi_destroy;
    m->send = send;
    m->be = be;
    m->ops = ops;
    m->cpu = st_device_host_memory(dev);
    m->peer = *peer;
    if (m->peer.n_bufs < 1) m->peer.n_bufs = 1;
    snprintf(m->where, sizeof m->where, "%s", peer->where ? peer->where : "another rank");
    m->peer.where = m->where;
    size_t cap = max_bytes ? max_bytes : 1;
    if (send) {
        m->bufs = st_calloc((size_t)m->peer.n_bufs, sizeof *m->bufs, "mpi link buffers");
        m->reqs = st_calloc((size_t)m->peer.n_bufs, sizeof *m->reqs, "mpi link requests");
        if (!m->bufs || !m->reqs) { mpi_destroy(&m->base); return ST_ERR_NOMEM; }
        for (int k = 0; k < m->peer.n_bufs; k++) {
            m->reqs[k] = MPI_REQUEST_NULL;
            if (!(m->bufs[k] = st_malloc(cap, "mpi link send buffer"))) { mpi_destroy(&m->base); return ST_ERR_NOMEM; }
        }
    } else if (!m->cpu && !(m->in = st_malloc(cap, "mpi link receive buffer"))) {
        mpi_destroy(&m->base);
        return ST_ERR_NOMEM;
    }
    *out = &m->base;
    return ST_OK;
}

/* The transport a pair takes: NCCL between two GPUs when it is built and asked for (or AUTO). */
static st_status pick(st_link_type type, const struct st_device_info *dev, const struct st_link_peer *peer,
                      bool *nccl) {
    /* both ends on one device backend (GPUs); NCCL where that backend links its devices with it */
    const struct st_backend_reg *b = st_backend_reg_find(dev->kind);
    const bool gpus = dev->kind == peer->kind && b && !b->host_memory;
    const bool has_nccl = gpus && (b->link_types & (1u << ST_LINK_T_NCCL));
    *nccl = false;
    switch (type) {
    case ST_LINK_T_AUTO:
        *nccl = has_nccl;
        return ST_OK;
    case ST_LINK_T_HOST:
    case ST_LINK_T_MPI:
        return ST_OK;
    case ST_LINK_T_NCCL:
        if (!gpus) {
            st_error_set(ST_ERR_CONFIG, "link to/from %s: an NCCL link needs a GPU at both ends", peer->where);
            return st_error_hint("use transport: auto or host when a stage runs on the CPU");
        }
        if (has_nccl) {
            *nccl = true;
            return ST_OK;
        }
        st_error_set(ST_ERR_NOT_BUILT, "link to/from %s: this build has no NCCL", peer->where);
        return st_error_hint("install NCCL (libnccl-dev) and rebuild, or use transport: host (MPI through host memory)");
    default:
        st_error_set(ST_ERR_CONFIG, "link to/from %s: a %s link cannot join two processes", peer->where,
                     st_link_type_name(type));
        return st_error_hint("between ranks use transport: auto, nccl or host");
    }
}

static st_status endpoint(bool send, st_link_type type, st_backend *be, const struct st_device_ops *ops,
                          const struct st_device_info *dev, const struct st_link_peer *peer, size_t max_bytes,
                          st_link **out) {
    *out = NULL;
    int init = 0;
    MPI_Initialized(&init);
    if (!init) return st_error_set(ST_ERR_INTERNAL, "link to/from %s: MPI is not initialised", peer->where);
    bool nccl;
    st_status s = pick(type, dev, peer, &nccl);
    if (s) return s;
    if (!nccl) return mpi_make(send, be, ops, dev, peer, max_bytes, out);
#ifdef STRATA_HAVE_NCCL
    unsigned char id[ST_NCCL_ID_BYTES];
    struct mpi_link tmp = {.peer = *peer};
    snprintf(tmp.where, sizeof tmp.where, "%s", peer->where ? peer->where : "another rank");
    int rc;
    if (send) {
        if ((s = st_cuda_nccl_id(id))) return s;
        rc = MPI_Send(id, (int)sizeof id, MPI_BYTE, peer->rank, peer->setup_tag, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, &tmp, "NCCL id to");
    } else {
        MPI_Request r;
        rc = MPI_Irecv(id, (int)sizeof id, MPI_BYTE, peer->rank, peer->setup_tag, MPI_COMM_WORLD, &r);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, &tmp, "NCCL id from");
        if ((s = wait_req(&tmp, &r, "NCCL id from"))) return s;
    }
    return st_cuda_link_init_nccl(send, be, id, peer->timeout_s, tmp.where, max_bytes, out);
#else
    return st_error_set(ST_ERR_INTERNAL, "NCCL chosen in a build without it");
#endif
}

st_status st_link_init_send(st_link_type type, st_backend *src, const struct st_device_ops *src_ops,
                            const struct st_device_info *src_dev, const struct st_link_peer *peer, size_t max_bytes,
                            st_link **out) {
    return endpoint(true, type, src, src_ops, src_dev, peer, max_bytes, out);
}

st_status st_link_init_recv(st_link_type type, st_backend *dst, const struct st_device_ops *dst_ops,
                            const struct st_device_info *dst_dev, const struct st_link_peer *peer, size_t max_bytes,
                            st_link **out) {
    return endpoint(false, type, dst, dst_ops, dst_dev, peer, max_bytes, out);
}

#else /* !STRATA_HAVE_MPI */

static st_status no_mpi(const struct st_link_peer *peer, st_link **out) {
    *out = NULL;
    st_error_set(ST_ERR_NOT_BUILT, "link to/from %s: this build has no MPI", peer->where ? peer->where : "another rank");
    return st_error_hint("install libopenmpi-dev and rebuild to run stages in several processes");
}

st_status st_link_init_send(st_link_type type, st_backend *src, const struct st_device_ops *src_ops,
                            const struct st_device_info *src_dev, const struct st_link_peer *peer, size_t max_bytes,
                            st_link **out) {
    (void)type; (void)src; (void)src_ops; (void)src_dev; (void)max_bytes;
    return no_mpi(peer, out);
}

st_status st_link_init_recv(st_link_type type, st_backend *dst, const struct st_device_ops *dst_ops,
                            const struct st_device_info *dst_dev, const struct st_link_peer *peer, size_t max_bytes,
                            st_link **out) {
    (void)type; (void)dst; (void)dst_ops; (void)dst_dev; (void)max_bytes;
    return no_mpi(peer, out);
}

#endif
