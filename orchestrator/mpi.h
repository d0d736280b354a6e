/* orchestrator/mpi.h — several processes ("ranks", usually one per host)
 * launched by mpirun run one deployment together (docs/multihost.md).
 *
 *   mpirun -np 2 --hostfile hosts strata generate -c two-hosts.yaml -p "..."
 *
 * MPI only bootstraps and carries small messages: the inventories go to rank
 * 0, rank 0 plans and sends the plan to every rank, and before each pass it
 * sends a small header (orchestrator/engine.h, st_engine_follow). Activations
 * move over the links' endpoints (devices/device.h): NCCL between two GPUs,
 * MPI point-to-point when a CPU stage is at either end.
 *
 * Without mpirun (or with one rank) nothing here talks to anyone: rank 0 of
 * 1, and every command runs exactly as in one process. A build without MPI
 * runs one process; started by mpirun with several ranks it says so.
 *
 * Faults: a rank that fails while the ranks start (config, devices, weights)
 * reports through st_mpi_agree, so rank 0 prints "rank R (host): ..." and
 * every rank exits with the same code. A failure in the middle of a pass that
 * the protocol cannot carry (a lost peer, a broken link, a receive that waits
 * past the watchdog, STRATA_MPI_TIMEOUT seconds) ends the whole run with
 * st_mpi_abort: the failing rank prints the error with its rank and host and
 * MPI_Abort stops the others; a rank stopped by the launcher says so. */
#ifndef STRATA_MPI_H
#define STRATA_MPI_H

#include "base/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Message tags (MPI_COMM_WORLD). Links take ST_MPI_TAG_LINK + link index. */
enum {
    ST_MPI_TAG_CTRL = 1,         /* rank 0 -> follower: plan, stop, pass header, quit */
    ST_MPI_TAG_STATUS = 100,     /* + set: a follower's status after a pass */
    ST_MPI_TAG_IDS = 200,        /* + set: the last stage's picks */
    ST_MPI_TAG_LOGITS = 300,     /* + set: the last stage's logits rows */
    ST_MPI_TAG_LINK = 1000,      /* + link index: activations */
    ST_MPI_TAG_READY = 3000,     /* + link index: a timed pass's sender is done (bench) */
    ST_MPI_TAG_NCCL_ID = 5000,   /* + link index: an NCCL unique id */
};

/* The first 4 bytes of a ST_MPI_TAG_CTRL message say what it is. */
enum {
    ST_MPI_MSG_LOAD = 0x4c4f4144,    /* "LOAD": take the inventory and join the gather (deploy) */
    ST_MPI_MSG_PLAN = 0x504c414e,    /* "PLAN": the plan's YAML follows; build the engine (deploy) */
    ST_MPI_MSG_STOP = 0x53544f50,    /* "STOP": int32 exit code follows; rank 0 is done */
    ST_MPI_MSG_PASS = 0x50415353,    /* "PASS": a pass header (engine) */
    ST_MPI_MSG_QUIT = 0x51554954,    /* "QUIT": rank 0 freed its engine */
};

/* True when the environment says mpirun (Open MPI, MPICH/PMI, PMIx) started
 * this process. */
bool st_mpi_launched(void);

/* Joins the MPI world when launched by mpirun (MPI_Init_thread), learns the
 * ranks' host names, and under several ranks installs a SIGTERM handler that
 * says why the launcher stopped this rank. Without a launch: rank 0 of 1.
 * ST_ERR_NOT_BUILT when launched with several ranks by a build without MPI. */
st_status st_mpi_init(int *argc, char ***argv);
/* Rank 0 tells the other ranks to stop with exit_code (ST_MPI_MSG_STOP: they
 * wait for rank 0's word whatever it did), then MPI_Finalize. Safe to call
 * when st_mpi_init did nothing. */
void st_mpi_finalize(int exit_code);

int st_mpi_rank(void);           /* 0 without mpirun */
int st_mpi_size(void);           /* 1 without mpirun */
/* "rank 1 (gpu-box)" for messages; the host name as the launcher saw it. */
const char *st_mpi_where(int rank);
const char *st_mpi_host(int rank);

/* Point-to-point bytes on MPI_COMM_WORLD. A receive waits with the
 * watchdog (st_mpi_timeout_s) and reports a silent peer as ST_ERR_IO naming
 * its rank and host; got (may be NULL) receives the bytes that came. */
st_status st_mpi_send(int peer, int tag, const void *buf, size_t bytes);
st_status st_mpi_recv(int peer, int tag, void *buf, size_t bytes, size_t *got);
/* Receives a message of any size into a new buffer (free() it). wait_forever:
 * no watchdog (a follower waiting for rank 0's next request). */
st_status st_mpi_recv_alloc(int peer, int tag, bool wait_forever, void **buf, size_t *bytes);
/* st_mpi_recv without the watchdog: a follower idle until rank 0's next request. */
st_status st_mpi_recv_idle(int peer, int tag, void *buf, size_t bytes, size_t *got);

/* A receive posted now and waited for later (the outputs of a micro-batch). */
typedef struct st_mpi_req {
    unsigned char handle[16];    /* MPI_Request */
    int peer, tag;
    bool active;
} st_mpi_req;
st_status st_mpi_irecv(int peer, int tag, void *buf, size_t bytes, st_mpi_req *req);
st_status st_mpi_wait(st_mpi_req *req);
/* Seconds a receive may wait for a peer that is expected to answer
 * (STRATA_MPI_TIMEOUT, default 300; 0 = forever). */
double st_mpi_timeout_s(void);

/* Every rank's bytes at rank 0: all[r] (malloc'ed, free each and the array)
 * holds sizes[r] bytes; all and sizes are NULL on the other ranks. Collective. */
st_status st_mpi_gather(const void *buf, size_t bytes, void ***all, size_t **sizes);

/* Collective: every rank gives its status; when some rank failed, every rank
 * returns the first failing rank's status with its message, prefixed with
 * "rank R (host): ". ST_OK when all succeeded. */
st_status st_mpi_agree(st_status local);

/* Collective: measures every pair of ranks (MPI ping-pong: one-way latency of
 * a small message, bandwidth of 16 MiB messages). Rank 0 receives (n x n)
 * matrices (free() them); NULL elsewhere. */
st_status st_mpi_probe_links(double **lat_us, double **bw_gbps);

/* Prints "error: rank R (host): <st_last_error()>" and ends every rank
 * (MPI_Abort with the status's exit code). Without several ranks: returns. */
void st_mpi_abort(st_status s);

/* Tells every other rank kind (a ST_MPI_MSG_*) with an int32 argument (rank 0). */
st_status st_mpi_tell_all(int32_t kind, int32_t arg);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_MPI_H */
