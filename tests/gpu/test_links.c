/* CUDA links between stages: LOCAL (two backends on one GPU, and one backend
 * to itself), HOST (pinned staging) and, with two GPUs, PEER and NCCL. Each
 * kind runs a pipelined exchange with no host synchronisation between steps:
 * the src stage rewrites its buffer right after every send and the dst stage
 * accumulates what arrives, so a missing event (copy before the producer
 * finished, producer overwriting before the copy read, consumer before the
 * copy landed) changes the final sums. A kind that cannot run here (peer and
 * nccl on one GPU, nccl in a build without NCCL) prints a SKIP line with the
 * reason, and the last lines say which kinds ran and which were skipped, so a
 * summary never claims a link that was not exercised. Exit 77 when no GPU is
 * visible. */
#include "check.h"
#include "devices/device.h"
#include "devices/link-impl.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N (1 << 20)          /* floats per message */
#define STEPS 40
#define BUSY 30              /* extra adds on src before each send: make the producer slow */

static const struct st_device_ops *ops;
static char ran[512], skipped[512];     /* "a, b, c": the exchanges run and skipped */

static void note(char *list, size_t cap, const char *what) {
    size_t n = strlen(list);
    snprintf(list + n, cap - n, "%s%s", n ? ", " : "", what);
}

static void skip(const char *name, const char *why) {
    char what[128];
    printf("SKIP %-34s %s\n", name, why);
    snprintf(what, sizeof what, "%s (%s)", name, why);
    note(skipped, sizeof skipped, what);
}

static st_status make_backend(int ordinal, st_backend **out) {
    struct st_device_info dev;
    memset(&dev, 0, sizeof dev);
    dev.kind = ST_DEVICE_CUDA;
    dev.index = ordinal;
    struct st_backend_config cfg = {ST_PREC_F32, ST_ATTN_EAGER, ST_DTYPE_F32, 0, false, 0, 0, 0};
    return ops->init(&dev, &cfg, out);
}

/* src: s = step + 1 + BUSY * 0 (built by adds of ones); dst: acc += received. */
static void exchange(const char *name, st_link_type type, st_backend *a, st_backend *b) {
    st_link *l = NULL;
    st_status s = st_cuda_link_init(type, a, b, sizeof(float) * N, &l);
    CHECK_MSG(s == ST_OK, "%s link init: %s", name, st_last_error());
    if (s != ST_OK) return;
    CHECK(st_link_get_type(l) == type);
    float *h = malloc(sizeof(float) * N);
    float *ones_a = NULL, *zero_a = NULL, *src = NULL, *dst = NULL, *acc = NULL;
    CHECK_OK(ops->alloc(a, sizeof(float) * N, ST_BUF_WORKSPACE, (void **)&ones_a));
    CHECK_OK(ops->alloc(a, sizeof(float) * N, ST_BUF_WORKSPACE, (void **)&zero_a));
    CHECK_OK(ops->alloc(a, sizeof(float) * N, ST_BUF_WORKSPACE, (void **)&src));
    CHECK_OK(ops->alloc(b, sizeof(float) * N, ST_BUF_WORKSPACE, (void **)&dst));
    CHECK_OK(ops->alloc(b, sizeof(float) * N, ST_BUF_WORKSPACE, (void **)&acc));
    for (int i = 0; i < N; i++) h[i] = 1.0f;
    CHECK_OK(ops->upload(a, ones_a, h, sizeof(float) * N));
    for (int i = 0; i < N; i++) h[i] = 0.0f;
    CHECK_OK(ops->upload(a, zero_a, h, sizeof(float) * N));
    CHECK_OK(ops->upload(a, src, h, sizeof(float) * N));
    CHECK_OK(ops->upload(b, acc, h, sizeof(float) * N));
    for (int i = 0; i < N; i++) h[i] = NAN;
    CHECK_OK(ops->upload(b, dst, h, sizeof(float) * N));
    CHECK_OK(ops->sync(a));
    CHECK_OK(ops->sync(b));
    /* step k sends (k+1) * (BUSY+1) in every element, built by BUSY+1 adds of one */
    for (int k = 0; k < STEPS; k++) {
        for (int j = 0; j < BUSY + 1; j++) CHECK_OK(ops->add(a, src, ones_a, N));
        CHECK_OK(st_link_send(l, src, dst, sizeof(float) * N));
        CHECK_OK(ops->add(b, acc, dst, N));
    }
    CHECK_OK(ops->download(b, h, acc, sizeof(float) * N));
    CHECK_OK(ops->sync(a));
    /* acc = sum_k (k+1)(BUSY+1) = (BUSY+1) * STEPS (STEPS+1) / 2 */
    const double want = (double)(BUSY + 1) * STEPS * (STEPS + 1) / 2.0;
    int bad = 0;
    for (int i = 0; i < N; i++) bad += h[i] != (float)want;
    printf("%s %-34s %d of %d elements wrong (want %.0f, got %.0f at 0)\n", bad ? "FAIL" : "ok  ", name, bad, N, want,
           (double)h[0]);
    note(ran, sizeof ran, name);
    CHECK_MSG(bad == 0, "%s: %d elements wrong", name, bad);
    /* capacity is enforced */
    CHECK_ERR(st_link_send(l, src, dst, sizeof(float) * N + 4), ST_ERR_INTERNAL, "capacity");
    ops->dealloc(a, ones_a); ops->dealloc(a, zero_a); ops->dealloc(a, src);
    ops->dealloc(b, dst); ops->dealloc(b, acc);
    st_link_free(l);
    free(h);
}

int main(int argc, char **argv) {
    bool require = argc > 1 && !strcmp(argv[1], "--require-gpu");
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("no CUDA device visible: %s\n", require ? "FAIL (--require-gpu)" : "skipped");
        return require ? 1 : 77;
    }
    ops = st_device_ops_cuda();
    st_backend *a = NULL, *b = NULL, *c = NULL;
    if (make_backend(0, &a) != ST_OK || make_backend(0, &b) != ST_OK) {
        fprintf(stderr, "backend: %s\n", st_last_error());
        return 1;
    }
    exchange("local cuda:0 -> cuda:0 (2 stages)", ST_LINK_T_LOCAL, a, b);
    exchange("local cuda:0 -> same stage", ST_LINK_T_LOCAL, a, a);
    exchange("host cuda:0 -> cuda:0", ST_LINK_T_HOST, a, b);
    st_link *l = NULL;
    CHECK_ERR(st_cuda_link_init(ST_LINK_T_PEER, a, b, 64, &l), ST_ERR_CONFIG, "joins two different GPUs");
    /* auto on one GPU is local */
    CHECK_OK(st_cuda_link_init(ST_LINK_T_AUTO, a, b, 64, &l));
    CHECK(l && st_link_get_type(l) == ST_LINK_T_LOCAL);
    st_link_free(l);
    if (n_dev >= 2) {
        if (make_backend(1, &c) != ST_OK) {
            fprintf(stderr, "backend cuda:1: %s\n", st_last_error());
            CHECK(false);
        } else {
            exchange("peer cuda:0 -> cuda:1", ST_LINK_T_PEER, a, c);
            exchange("peer cuda:1 -> cuda:0", ST_LINK_T_PEER, c, a);
            exchange("host cuda:0 -> cuda:1", ST_LINK_T_HOST, a, c);
#ifdef STRATA_HAVE_NCCL
            exchange("nccl cuda:0 -> cuda:1", ST_LINK_T_NCCL, a, c);
#else
            skip("nccl cuda:0 -> cuda:1", "strata built without NCCL");
#endif
            CHECK_ERR(st_cuda_link_init(ST_LINK_T_LOCAL, a, c, 64, &l), ST_ERR_CONFIG, "local link joins two stages on one GPU");
        }
    } else {
        const char *two[] = {"peer cuda:0 -> cuda:1", "peer cuda:1 -> cuda:0", "host cuda:0 -> cuda:1",
                             "nccl cuda:0 -> cuda:1"};
        for (size_t i = 0; i < ST_ARRAY_LEN(two); i++) skip(two[i], "one GPU visible, needs two");
    }
    printf("links ran: %s\n", ran[0] ? ran : "none");
    printf("links skipped: %s\n", skipped[0] ? skipped : "none");
    ops->free(c);
    ops->free(b);
    ops->free(a);
    return st_test_finish("gpu_links");
}
