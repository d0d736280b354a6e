/* Links between two CUDA backends: LOCAL (device copy on one GPU), PEER
 * (cudaMemcpyPeerAsync, peer access enabled when the pair allows it), NCCL
 * (ncclSend/ncclRecv, both ranks in this process) and HOST (through a pinned
 * staging buffer). Ordering uses events only, never a host wait:
 *   - the copy starts after everything already issued on the src stream;
 *   - work issued later on the dst stream starts after the copy;
 *   - work issued later on the src stream (which may overwrite the source
 *     buffer) also waits for the copy to have read it. */
#include "devices/cuda/cuda-impl.h"
#include "devices/link-impl.h"

#include <stdlib.h>
#include <string.h>

struct cuda_link {
    struct st_link base;         /* first member: st_link_* see only this */
    st_backend *src, *dst;
    cudaEvent_t ev_src;          /* recorded on src: its work up to the send (on src's device) */
    cudaEvent_t ev_copied;       /* recorded after the copy (on the device whose stream copies) */
    cudaEvent_t ev_staged;       /* HOST: recorded on src after the download (src's device) */
    void *stage;                 /* HOST: pinned staging buffer (max_bytes) */
#ifdef STRATA_HAVE_NCCL
    ncclComm_t comm[2];          /* NCCL: rank 0 on src, rank 1 on dst */
#endif
};

static void link_destroy(struct st_link *l) {
    struct cuda_link *c = (struct cuda_link *)l;
    if (!c) return;
    /* let pending copies finish before their events and buffers go away */
    ST_CUDA_IGNORE(cudaSetDevice(c->dst->ordinal));
    ST_CUDA_IGNORE(cudaStreamSynchronize(c->dst->stream));
    ST_CUDA_IGNORE(cudaSetDevice(c->src->ordinal));
    ST_CUDA_IGNORE(cudaStreamSynchronize(c->src->stream));
#ifdef STRATA_HAVE_NCCL
    for (int i = 0; i < 2; i++)
        if (c->comm[i]) ncclCommDestroy(c->comm[i]);
#endif
    ST_CUDA_IGNORE(cudaSetDevice(c->src->ordinal));
    if (c->ev_src) ST_CUDA_IGNORE(cudaEventDestroy(c->ev_src));
    if (c->ev_staged) ST_CUDA_IGNORE(cudaEventDestroy(c->ev_staged));
    if (c->stage) ST_CUDA_IGNORE(cudaFreeHost(c->stage));
    ST_CUDA_IGNORE(cudaSetDevice(c->dst->ordinal));
    if (c->ev_copied) ST_CUDA_IGNORE(cudaEventDestroy(c->ev_copied));
    cudaGetLastError();
    free(c);
}

static st_status check_size(struct st_link *l, size_t bytes) {
    if (bytes > l->max_bytes)
        return st_error_set(ST_ERR_INTERNAL, "%s link: send of %zu bytes exceeds its %zu-byte capacity",
                            st_link_type_name(l->type), bytes, l->max_bytes);
    return ST_OK;
}

/* LOCAL and PEER: the copy runs on the dst stream after the src stream's work. */
static st_status send_pull(struct st_link *l, const void *src_ptr, void *dst_ptr, size_t bytes) {
    struct cuda_link *c = (struct cuda_link *)l;
    st_status s = check_size(l, bytes);
    if (s != ST_OK) return s;
    if (!bytes) return ST_OK;
    if (c->src == c->dst) {      /* two logical stages on one backend: the stream already orders them */
        ST_CUDA_CHECK(cudaSetDevice(c->src->ordinal));
        ST_CUDA_CHECK(cudaMemcpyAsync(dst_ptr, src_ptr, bytes, cudaMemcpyDeviceToDevice, c->src->stream));
        return ST_OK;
    }
    ST_CUDA_CHECK(cudaSetDevice(c->src->ordinal));
    ST_CUDA_CHECK(cudaEventRecord(c->ev_src, c->src->stream));
    ST_CUDA_CHECK(cudaSetDevice(c->dst->ordinal));
    ST_CUDA_CHECK(cudaStreamWaitEvent(c->dst->stream, c->ev_src, 0));
    if (l->type == ST_LINK_T_PEER)
        ST_CUDA_CHECK(cudaMemcpyPeerAsync(dst_ptr, c->dst->ordinal, src_ptr, c->src->ordinal, bytes, c->dst->stream));
    else
        ST_CUDA_CHECK(cudaMemcpyAsync(dst_ptr, src_ptr, bytes, cudaMemcpyDeviceToDevice, c->dst->stream));
    ST_CUDA_CHECK(cudaEventRecord(c->ev_copied, c->dst->stream));
    ST_CUDA_CHECK(cudaSetDevice(c->src->ordinal));
    ST_CUDA_CHECK(cudaStreamWaitEvent(c->src->stream, c->ev_copied, 0));
    return ST_OK;
}

/* HOST: download on src into pinned memory, upload on dst. */
static st_status send_host(struct st_link *l, const void *src_ptr, void *dst_ptr, size_t bytes) {
    struct cuda_link *c = (struct cuda_link *)l;
    st_status s = check_size(l, bytes);
    if (s != ST_OK) return s;
    if (!bytes) return ST_OK;
    ST_CUDA_CHECK(cudaSetDevice(c->src->ordinal));
    ST_CUDA_CHECK(cudaMemcpyAsync(c->stage, src_ptr, bytes, cudaMemcpyDeviceToHost, c->src->stream));
    ST_CUDA_CHECK(cudaEventRecord(c->ev_staged, c->src->stream));
    ST_CUDA_CHECK(cudaSetDevice(c->dst->ordinal));
    ST_CUDA_CHECK(cudaStreamWaitEvent(c->dst->stream, c->ev_staged, 0));
    ST_CUDA_CHECK(cudaMemcpyAsync(dst_ptr, c->stage, bytes, cudaMemcpyHostToDevice, c->dst->stream));
    ST_CUDA_CHECK(cudaEventRecord(c->ev_copied, c->dst->stream));
    /* the next send rewrites the staging buffer from the src stream: after this upload */
    ST_CUDA_CHECK(cudaSetDevice(c->src->ordinal));
    ST_CUDA_CHECK(cudaStreamWaitEvent(c->src->stream, c->ev_copied, 0));
    return ST_OK;
}

#ifdef STRATA_HAVE_NCCL
/* NCCL: send on the src stream, receive on the dst stream, one group. */
static st_status send_nccl(struct st_link *l, const void *src_ptr, void *dst_ptr, size_t bytes) {
    struct cuda_link *c = (struct cuda_link *)l;
    st_status s = check_size(l, bytes);
    if (s != ST_OK) return s;
    if (!bytes) return ST_OK;
    ST_NCCL_CHECK(ncclGroupStart());
    ST_CUDA_CHECK(cudaSetDevice(c->src->ordinal));
    ncclResult_t r1 = ncclSend(src_ptr, bytes, ncclChar, 1, c->comm[0], c->src->stream);
    ST_CUDA_CHECK(cudaSetDevice(c->dst->ordinal));
    ncclResult_t r2 = ncclRecv(dst_ptr, bytes, ncclChar, 0, c->comm[1], c->dst->stream);
    ST_NCCL_CHECK(ncclGroupEnd());
    ST_NCCL_CHECK(r1);
    ST_NCCL_CHECK(r2);
    return ST_OK;
}
#endif

static st_status enable_peer(int from, int to) {
    /* lets `from` read/write `to`'s memory; an already-enabled pair is fine */
    ST_CUDA_CHECK(cudaSetDevice(from));
    cudaError_t e = cudaDeviceEnablePeerAccess(to, 0);
    if (e == cudaErrorPeerAccessAlreadyEnabled) {
        cudaGetLastError();
        return ST_OK;
    }
    ST_CUDA_CHECK(e);
    return ST_OK;
}

extern "C" st_status st_cuda_link_init(st_link_type type, st_backend *src, st_backend *dst, size_t max_bytes,
                                       st_link **out) {
    *out = NULL;
    st_status st = ST_OK;
    const bool same = src->ordinal == dst->ordinal;
    int can_peer = 0;
    if (!same) {
        ST_CUDA_CHECK(cudaDeviceCanAccessPeer(&can_peer, dst->ordinal, src->ordinal));
    }
    if (type == ST_LINK_T_AUTO) type = same ? ST_LINK_T_LOCAL : can_peer ? ST_LINK_T_PEER : ST_LINK_T_HOST;
    if (type == ST_LINK_T_LOCAL && !same) {
        st_error_set(ST_ERR_CONFIG, "link %s -> %s: a local link joins two stages on one GPU", src->label, dst->label);
        return st_error_hint("use link: peer, nccl or host between different GPUs (or auto)");
    }
    if ((type == ST_LINK_T_PEER || type == ST_LINK_T_NCCL) && same) {
        st_error_set(ST_ERR_CONFIG, "link %s -> %s: a %s link joins two different GPUs", src->label, dst->label,
                     st_link_type_name(type));
        return st_error_hint("use link: local for two stages on one GPU (or auto)");
    }
#ifndef STRATA_HAVE_NCCL
    if (type == ST_LINK_T_NCCL) {
        st_error_set(ST_ERR_NOT_BUILT, "link %s -> %s: this build has no NCCL", src->label, dst->label);
        return st_error_hint("install NCCL (libnccl-dev) and rebuild, or use link: peer / host");
    }
#endif
    if (type != ST_LINK_T_LOCAL && type != ST_LINK_T_PEER && type != ST_LINK_T_NCCL && type != ST_LINK_T_HOST)
        return st_error_set(ST_ERR_INTERNAL, "CUDA link: unknown link type %d", (int)type);

    struct cuda_link *c = (struct cuda_link *)st_calloc(1, sizeof *c, "CUDA link");
    if (!c) return ST_ERR_NOMEM;
    c->base.type = type;
    c->base.max_bytes = max_bytes;
    c->base.destroy = link_destroy;
    c->src = src;
    c->dst = dst;
    ST_CUDA_CHECK_GOTO(cudaSetDevice(src->ordinal), st, fail);
    ST_CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&c->ev_src, cudaEventDisableTiming), st, fail);
    switch (type) {
    case ST_LINK_T_LOCAL:
    case ST_LINK_T_PEER:
        c->base.send = send_pull;
        if (type == ST_LINK_T_PEER && can_peer) {
            st = enable_peer(dst->ordinal, src->ordinal);
            if (st != ST_OK) goto fail;
        }
        ST_CUDA_CHECK_GOTO(cudaSetDevice(dst->ordinal), st, fail);
        ST_CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&c->ev_copied, cudaEventDisableTiming), st, fail);
        break;
    case ST_LINK_T_HOST:
        c->base.send = send_host;
        ST_CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&c->ev_staged, cudaEventDisableTiming), st, fail);
        ST_CUDA_CHECK_GOTO(cudaHostAlloc(&c->stage, max_bytes ? max_bytes : 1, cudaHostAllocPortable), st, fail);
        ST_CUDA_CHECK_GOTO(cudaSetDevice(dst->ordinal), st, fail);
        ST_CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&c->ev_copied, cudaEventDisableTiming), st, fail);
        break;
    case ST_LINK_T_NCCL:
#ifdef STRATA_HAVE_NCCL
    {
        c->base.send = send_nccl;
        int devs[2] = {src->ordinal, dst->ordinal};
        ST_NCCL_CHECK_GOTO(ncclCommInitAll(c->comm, 2, devs), st, fail);
        break;
    }
#endif
    default:
        break;
    }
    *out = &c->base;
    return ST_OK;
fail:
    link_destroy(&c->base);
    return st_error_prefix("%s link %s -> %s", st_link_type_name(type), src->label, dst->label);
}

/* ---- NCCL across processes: one endpoint of a two-rank communicator ------------------ */
#ifdef STRATA_HAVE_NCCL

#include <time.h>

struct nccl_end {
    struct st_link base;         /* first member */
    st_backend *be;
    bool send;                   /* rank 0 of the pair sends, rank 1 receives */
    ncclComm_t comm;
    double timeout_s;
    char where[96];
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A non-blocking communicator's call may return ncclInProgress: poll its
 * state until done, a failure (the other process went away) or the timeout. */
static st_status nccl_settle(struct nccl_end *n, ncclResult_t r, const char *what) {
    const double t0 = now_s();
    while (r == ncclInProgress) {
        if (n->timeout_s > 0 && now_s() - t0 > n->timeout_s) {
            st_error_set(ST_ERR_IO, "nccl link %s %s: no progress within %.0f s", what, n->where, n->timeout_s);
            return st_error_hint("the other rank is stuck or gone, or NCCL cannot reach it: check "
                                 "NCCL_SOCKET_IFNAME (docs/multihost.md)");
        }
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
        ncclCommGetAsyncError(n->comm, &r);
    }
    if (r != ncclSuccess) {
        st_error_set(ST_ERR_IO, "nccl link %s %s: %s", what, n->where, ncclGetErrorString(r));
        return st_error_hint("the other rank or the network failed; NCCL_DEBUG=WARN tells more");
    }
    return ST_OK;
}

static st_status nccl_end_send(struct st_link *l, const void *src_ptr, void *dst_ptr, size_t bytes) {
    struct nccl_end *n = (struct nccl_end *)l;
    st_status s = check_size(l, bytes);
    if (s != ST_OK) return s;
    if (!bytes) return ST_OK;
    /* an earlier operation that failed in the background (the peer died) is reported here */
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(n->comm, &async);
    if ((s = nccl_settle(n, async, n->send ? "to" : "from"))) return s;
    ST_CUDA_CHECK(cudaSetDevice(n->be->ordinal));
    ncclResult_t r = n->send ? ncclSend(src_ptr, bytes, ncclChar, 1, n->comm, n->be->stream)
                             : ncclRecv(dst_ptr, bytes, ncclChar, 0, n->comm, n->be->stream);
    return nccl_settle(n, r, n->send ? "send to" : "receive from");
}

static void nccl_end_destroy(struct st_link *l) {
    struct nccl_end *n = (struct nccl_end *)l;
    if (n->comm) {
        ST_CUDA_IGNORE(cudaSetDevice(n->be->ordinal));
        ST_CUDA_IGNORE(cudaStreamSynchronize(n->be->stream));
        ncclCommAbort(n->comm);   /* does not wait for the other process */
    }
    cudaGetLastError();
    free(n);
}

extern "C" st_status st_cuda_nccl_id(void *id) {
    ncclUniqueId u;
    ST_NCCL_CHECK(ncclGetUniqueId(&u));
    static_assert(sizeof u <= ST_NCCL_ID_BYTES, "an NCCL id fits ST_NCCL_ID_BYTES");
    memset(id, 0, ST_NCCL_ID_BYTES);
    memcpy(id, &u, sizeof u);
    return ST_OK;
}

extern "C" st_status st_cuda_link_init_nccl(bool send, st_backend *be, const void *id, double timeout_s,
                                            const char *where, size_t max_bytes, st_link **out) {
    *out = NULL;
    struct nccl_end *n = (struct nccl_end *)st_calloc(1, sizeof *n, "NCCL link");
    if (!n) return ST_ERR_NOMEM;
    n->base.type = ST_LINK_T_NCCL;
    n->base.max_bytes = max_bytes;
    n->base.send = nccl_end_send;
    n->base.destroy = nccl_end_destroy;
    n->be = be;
    n->send = send;
    n->timeout_s = timeout_s;
    snprintf(n->where, sizeof n->where, "%s", where ? where : "another rank");
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    st_status s = ST_OK;
    ST_CUDA_CHECK_GOTO(cudaSetDevice(be->ordinal), s, fail);
    {
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 14, 0)
        /* non-blocking: a peer that never joins is a timeout, not a hang */
        ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
        cfg.blocking = 0;
        ncclResult_t r = ncclCommInitRankConfig(&n->comm, 2, u, send ? 0 : 1, &cfg);
#else
        /* NCCL before 2.14 joins blocking; a peer that fails to join ends every rank (st_mpi_abort) */
        ncclResult_t r = ncclCommInitRank(&n->comm, 2, u, send ? 0 : 1);
#endif
        if (r != ncclSuccess && r != ncclInProgress) {
            s = st_error_set(ST_ERR_IO, "nccl link %s %s: joining failed: %s", send ? "to" : "from", n->where,
                             ncclGetErrorString(r));
            st_error_hint("NCCL cannot reach the other host: set NCCL_SOCKET_IFNAME to the interface both hosts "
                          "share (docs/multihost.md), NCCL_DEBUG=WARN tells more");
            goto fail;
        }
        if (r == ncclInProgress && (s = nccl_settle(n, r, send ? "setup to" : "setup from"))) goto fail;
    }
    *out = &n->base;
    return ST_OK;
fail:
    nccl_end_destroy(&n->base);
    return s;
}

#endif /* STRATA_HAVE_NCCL */
