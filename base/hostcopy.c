/* strata: large host copies by a pool of threads (base.h st_host_copy). */
#include "base/base.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { HC_MAX_THREADS = 16 };

struct part { uint8_t *dst; const uint8_t *src; size_t n; int fd; uint64_t off; };

struct worker { st_host_copy *hc; int index; pthread_t tid; };

struct st_host_copy {
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    struct worker w[HC_MAX_THREADS - 1];
    int n_workers;            /* started */
    unsigned job;             /* bumped for each job */
    int pending;              /* workers still on the current job */
    bool quit;
    struct part part[HC_MAX_THREADS];   /* part[0] is the caller's, part[i + 1] worker i's */
    int n_parts;
};

static void part_run(const struct part *p) {
    size_t done = 0;
    while (p->fd >= 0 && done < p->n) {
        const ssize_t r = pread(p->fd, p->dst + done, p->n - done, (off_t)(p->off + done));
        if (r <= 0) break;   /* an error, or the file shrank: the mapping gives what is left (or SIGBUS) */
        done += (size_t)r;
    }
    if (done < p->n) memcpy(p->dst + done, p->src + done, p->n - done);
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    st_host_copy *hc = w->hc;
    unsigned seen = 0;
    pthread_mutex_lock(&hc->mu);
    for (;;) {
        while (!hc->quit && hc->job == seen) pthread_cond_wait(&hc->go, &hc->mu);
        if (hc->quit) break;
        seen = hc->job;
        const bool mine = w->index + 1 < hc->n_parts;
        pthread_mutex_unlock(&hc->mu);
        if (mine) part_run(&hc->part[w->index + 1]);
        pthread_mutex_lock(&hc->mu);
        if (--hc->pending == 0) pthread_cond_signal(&hc->done);
    }
    pthread_mutex_unlock(&hc->mu);
    return NULL;
}

st_host_copy *st_host_copy_new(int max_threads) {
    st_host_copy *hc = calloc(1, sizeof *hc);
    if (!hc) return NULL;
    pthread_mutex_init(&hc->mu, NULL);
    pthread_cond_init(&hc->go, NULL);
    pthread_cond_init(&hc->done, NULL);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int t = max_threads < HC_MAX_THREADS ? max_threads : HC_MAX_THREADS;
    if (cpus > 0 && cpus < t) t = (int)cpus;
    for (int i = 0; i < t - 1; i++) {   /* fewer threads where one cannot start: the job waits for those that run */
        hc->w[i] = (struct worker){hc, i, 0};
        if (pthread_create(&hc->w[i].tid, NULL, worker_main, &hc->w[i]) != 0) break;
        hc->n_workers++;
    }
    return hc;
}

void st_host_copy_free(st_host_copy *hc) {
    if (!hc) return;
    pthread_mutex_lock(&hc->mu);
    hc->quit = true;
    pthread_cond_broadcast(&hc->go);
    pthread_mutex_unlock(&hc->mu);
    for (int i = 0; i < hc->n_workers; i++) pthread_join(hc->w[i].tid, NULL);
    pthread_cond_destroy(&hc->done);
    pthread_cond_destroy(&hc->go);
    pthread_mutex_destroy(&hc->mu);
    free(hc);
}

int st_host_copy_run(st_host_copy *hc, void *dst, const void *src, size_t n, int fd, uint64_t off,
                     size_t min_part) {
    int t = 1 + (hc ? hc->n_workers : 0);
    if (min_part == 0) min_part = 1;
    if ((size_t)t > n / min_part) t = n / min_part > 1 ? (int)(n / min_part) : 1;
    const size_t per = ((n + (size_t)t - 1) / (size_t)t + 4095) & ~(size_t)4095;   /* page-aligned parts */
    if (t == 1) {   /* also where there is no pool */
        part_run(&(struct part){(uint8_t *)dst, (const uint8_t *)src, n, fd, off});
        return 1;
    }
    pthread_mutex_lock(&hc->mu);
    hc->n_parts = 0;
    for (int i = 0; i < t; i++) {
        const size_t at = (size_t)i * per, len = at < n ? ST_MIN(per, n - at) : 0;
        if (len) hc->part[hc->n_parts++] = (struct part){(uint8_t *)dst + at, (const uint8_t *)src + at, len, fd, off + at};
    }
    hc->pending = hc->n_workers;
    hc->job++;
    pthread_cond_broadcast(&hc->go);
    pthread_mutex_unlock(&hc->mu);
    part_run(&hc->part[0]);   /* the workers do not touch part[0] */
    pthread_mutex_lock(&hc->mu);
    while (hc->pending > 0) pthread_cond_wait(&hc->done, &hc->mu);
    const int ran = hc->n_parts;
    pthread_mutex_unlock(&hc->mu);
    return ran;
}
