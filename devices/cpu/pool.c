/* The CPU backend's persistent worker pool: threads created once, bound to
 * cores with hwloc. A job is a number of chunks that the caller and the
 * workers claim one at a time, so a worker that the OS has descheduled (a
 * shared machine) delays nothing: the others take its chunks. Which thread
 * runs a chunk never changes the chunk's result.
 *
 * Claiming: `ticket` packs (generation << 32 | next chunk); a claim is a CAS
 * that succeeds only for the current generation, and a new job first closes
 * the ticket, then sets its function and size, then opens it: a late worker
 * can never run a chunk twice or with another job's function. Waking: spin,
 * then yield, then sleep on a condition variable. */
#include "devices/cpu/cpu-impl.h"

#include <hwloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_SPIN 2000   /* pause iterations before yielding (~100 us on current x86) */
#define POOL_YIELD 50    /* sched_yield rounds before sleeping on the condition variable */

struct worker {
    struct st_cpu_pool *p;
    int ith;
    hwloc_bitmap_t set;      /* core to bind to, or NULL */
    pthread_t th;
    bool started;
};

struct st_cpu_pool {
    int n;                   /* threads including the caller */
    int node;                /* NUMA node bound to (st_cpu_pool_bind_node), -1 = the init set */
    struct worker *w;        /* (n), w[0] unused (the caller) */
    hwloc_topology_t topo;
    bool have_topo;
    pthread_mutex_t mu;
    pthread_cond_t cv_go, cv_done;
    _Atomic uint64_t gen;    /* bumped per job (and to stop) */
    _Atomic uint64_t ticket; /* gen << 32 | next unclaimed chunk */
    _Atomic int64_t done;    /* chunks finished in the current job */
    _Atomic int sleeping_main;
    _Atomic int bound;
    _Atomic int ready;       /* workers past their bind attempt */
    _Atomic bool stop;
    _Atomic(st_cpu_task_fn) fn;
    _Atomic(void *) arg;
    _Atomic int64_t n_chunks;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline void backoff(int i) {
    if (i < POOL_SPIN) cpu_relax();
    else sched_yield();      /* let a thread that shares this core run */
}

/* Claims and runs chunks of generation g until none is left. */
static void run_chunks(struct st_cpu_pool *p, uint64_t g) {
    st_cpu_task_fn fn = atomic_load(&p->fn);
    void *arg = atomic_load(&p->arg);
    const int64_t n = atomic_load(&p->n_chunks);
    for (;;) {
        uint64_t t = atomic_load(&p->ticket);
        if ((t >> 32) != (g & 0xffffffffu) || (int64_t)(t & 0xffffffffu) >= n) return;
        if (!atomic_compare_exchange_weak(&p->ticket, &t, t + 1)) continue;
        fn(arg, (int)(t & 0xffffffffu), (int)n);
        if (atomic_fetch_add(&p->done, 1) + 1 == n && atomic_load(&p->sleeping_main)) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

static void *worker_main(void *vp) {
    struct worker *w = vp;
    struct st_cpu_pool *p = w->p;
    if (w->set && hwloc_set_cpubind(p->topo, w->set, HWLOC_CPUBIND_THREAD) == 0)
        atomic_fetch_add(&p->bound, 1);
    atomic_fetch_add(&p->ready, 1);
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int i = 0; i < POOL_SPIN + POOL_YIELD && g == seen; i++) {
            backoff(i);
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen)
                pthread_cond_wait(&p->cv_go, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        seen = g;
        if (atomic_load(&p->stop)) break;
        run_chunks(p, g);
    }
    return NULL;
}

st_status st_cpu_pool_init(int n_threads, int numa_node, const char *cpuset_list, st_cpu_pool **out) {
    *out = NULL;
    st_status s = ST_OK;
    hwloc_bitmap_t set = NULL;
    struct st_cpu_pool *p = st_calloc(1, sizeof *p, "cpu thread pool");
    if (!p) return ST_ERR_NOMEM;
    p->node = numa_node;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_go, NULL);
    pthread_cond_init(&p->cv_done, NULL);

    if (hwloc_topology_init(&p->topo) != 0 || hwloc_topology_load(p->topo) != 0) {
        s = st_error_set(ST_ERR_DEVICE, "cpu: hwloc could not load the machine topology");
        st_error_hint("is /sys mounted? hwloc needs it to see the cores");
        goto fail_topo;
    }
    p->have_topo = true;
    set = hwloc_bitmap_alloc();
    if (!set) { s = st_error_set(ST_ERR_NOMEM, "cpu: out of memory for a cpuset"); goto fail_set; }
    if (numa_node >= 0) {
        hwloc_obj_t node = hwloc_get_numanode_obj_by_os_index(p->topo, (unsigned)numa_node);
        if (!node) {
            s = st_error_set(ST_ERR_CONFIG, "cpu: NUMA node %d does not exist on this machine", numa_node);
            st_error_hint("'strata inventory' lists the NUMA nodes");
            goto fail_set;
        }
        hwloc_bitmap_and(set, node->cpuset, hwloc_topology_get_allowed_cpuset(p->topo));
    } else if (cpuset_list && cpuset_list[0]) {
        if (hwloc_bitmap_list_sscanf(set, cpuset_list) != 0) {
            s = st_error_set(ST_ERR_CONFIG, "cpu: cannot read the cpu list '%s'", cpuset_list);
            st_error_hint("write it as a list of ranges, e.g. 0-15,32-47");
            goto fail_set;
        }
        hwloc_bitmap_and(set, set, hwloc_topology_get_allowed_cpuset(p->topo));
    } else {
        hwloc_bitmap_copy(set, hwloc_topology_get_allowed_cpuset(p->topo));
    }
    int n_cores = hwloc_get_nbobjs_inside_cpuset_by_type(p->topo, set, HWLOC_OBJ_CORE);
    if (n_cores <= 0) n_cores = hwloc_get_nbobjs_inside_cpuset_by_type(p->topo, set, HWLOC_OBJ_PU);
    if (n_cores <= 0) n_cores = 1;
    p->n = n_threads > 0 ? n_threads : n_cores;

    p->w = st_calloc((size_t)p->n, sizeof *p->w, "cpu worker table");
    if (!p->w) { s = ST_ERR_NOMEM; goto fail_set; }
    for (int i = 1; i < p->n; i++) {
        struct worker *w = &p->w[i];
        w->p = p;
        w->ith = i;
        /* the caller (thread 0) keeps core 0 of the set; workers take the next cores */
        hwloc_obj_t core = hwloc_get_obj_inside_cpuset_by_type(p->topo, set, HWLOC_OBJ_CORE, (unsigned)(i % n_cores));
        if (core && core->cpuset) w->set = hwloc_bitmap_dup(core->cpuset);
        if (pthread_create(&w->th, NULL, worker_main, w) != 0) {
            s = st_error_set(ST_ERR_DEVICE, "cpu: could not start worker thread %d of %d", i, p->n);
            st_error_hint("lower the thread count (--threads)");
            goto fail_threads;
        }
        w->started = true;
    }
    while (atomic_load(&p->ready) < p->n - 1) sched_yield();
    if (atomic_load(&p->bound) < p->n - 1)
        ST_INFO("cpu: the OS refused to bind %d of %d worker threads to cores", p->n - 1 - atomic_load(&p->bound), p->n - 1);
    hwloc_bitmap_free(set);
    *out = p;
    return ST_OK;

fail_threads:
    st_cpu_pool_free(p);
    hwloc_bitmap_free(set);
    return s;
fail_set:
    hwloc_bitmap_free(set);
    hwloc_topology_destroy(p->topo);
fail_topo:
    pthread_cond_destroy(&p->cv_done);
    pthread_cond_destroy(&p->cv_go);
    pthread_mutex_destroy(&p->mu);
    free(p);
    return s;
}

void st_cpu_pool_run_chunks(st_cpu_pool *p, st_cpu_task_fn fn, void *arg, int n_chunks) {
    if (n_chunks <= 0) return;
    if (p->n == 1 || n_chunks == 1) {
        for (int c = 0; c < n_chunks; c++) fn(arg, c, n_chunks);
        return;
    }
    uint64_t g = atomic_load(&p->gen) + 1;
    /* close the ticket to older generations before fn/arg/n change, so a late
     * worker that reads the new values can no longer claim with its old one */
    atomic_store(&p->ticket, ((g & 0xffffffffu) << 32) | 0xffffffffu);
    atomic_store(&p->fn, fn);
    atomic_store(&p->arg, arg);
    atomic_store(&p->n_chunks, n_chunks);
    atomic_store(&p->done, 0);
    atomic_store(&p->ticket, (g & 0xffffffffu) << 32);
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->gen, g, memory_order_release);
    pthread_cond_broadcast(&p->cv_go);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, g);
    for (int i = 0; i < POOL_SPIN + POOL_YIELD && atomic_load(&p->done) < n_chunks; i++) backoff(i);
    if (atomic_load(&p->done) < n_chunks) {
        pthread_mutex_lock(&p->mu);
        atomic_store(&p->sleeping_main, 1);
        while (atomic_load(&p->done) < n_chunks) pthread_cond_wait(&p->cv_done, &p->mu);
        atomic_store(&p->sleeping_main, 0);
        pthread_mutex_unlock(&p->mu);
    }
}

void st_cpu_pool_run(st_cpu_pool *p, st_cpu_task_fn fn, void *arg) { st_cpu_pool_run_chunks(p, fn, arg, p->n); }

int st_cpu_pool_threads(const st_cpu_pool *p) { return p->n; }
int st_cpu_pool_bound(const st_cpu_pool *p) { return atomic_load((_Atomic int *)&p->bound); }

/* ---- NUMA placement ------------------------------------------------------------ */

#define AREA_SAMPLES 4096

int st_cpu_pool_area_node(st_cpu_pool *p, const struct st_cpu_area *areas, int n_areas, double *share) {
    *share = 0;
    if (!p->have_topo || n_areas <= 0) return -1;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t total = 0;
    for (int i = 0; i < n_areas; i++) total += areas[i].bytes;
    if (!total) return -1;
    const size_t step = ST_MAX(page, (total / AREA_SAMPLES + page - 1) / page * page);
    int counts[256] = {0}, n_res = 0;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) return -1;
    for (int i = 0; i < n_areas; i++) {
        const uintptr_t base = (uintptr_t)areas[i].ptr / page * page, end = (uintptr_t)areas[i].ptr + areas[i].bytes;
        for (uintptr_t a = base; a < end; a += step) {
            hwloc_bitmap_zero(set);
            if (hwloc_get_area_memlocation(p->topo, (const void *)a, page, set, HWLOC_MEMBIND_BYNODESET) != 0) continue;
            int node = hwloc_bitmap_first(set);   /* empty: the page is not resident */
            if (node < 0 || node >= 256) continue;
            counts[node]++;
            n_res++;
        }
    }
    hwloc_bitmap_free(set);
    int best = -1;
    for (int k = 0; k < 256; k++)
        if (counts[k] && (best < 0 || counts[k] > counts[best])) best = k;
    if (best >= 0) *share = (double)counts[best] / n_res;
    return best;
}

int st_cpu_numa_choose(int weights_node, int device_node, const uint64_t *node_mem_bytes, int n) {
    if (weights_node >= 0) return weights_node;
    if (device_node >= 0) return device_node;
    int nodes = 0, best = -1;
    for (int i = 0; i < n; i++) {
        if (!node_mem_bytes[i]) continue;
        nodes++;
        if (best < 0 || node_mem_bytes[i] > node_mem_bytes[best]) best = i;
    }
    return nodes > 1 ? best : -1;
}

int st_cpu_pool_node_memory(st_cpu_pool *p, uint64_t *node_mem_bytes, int n) {
    if (!p->have_topo) return 0;
    int w = 0;
    for (int i = 0; i < n; i++) node_mem_bytes[i] = 0;
    hwloc_obj_t o = NULL;
    while ((o = hwloc_get_next_obj_by_type(p->topo, HWLOC_OBJ_NUMANODE, o)) != NULL) {
        if ((int)o->os_index >= n) continue;
        node_mem_bytes[o->os_index] = o->attr ? o->attr->numanode.local_memory : 0;
        if (!node_mem_bytes[o->os_index]) node_mem_bytes[o->os_index] = 1;   /* exists, size unknown */
        w = ST_MAX(w, (int)o->os_index + 1);
    }
    return w;
}

static hwloc_obj_t node_obj(st_cpu_pool *p, int node) {
    return p->have_topo && node >= 0 ? hwloc_get_numanode_obj_by_os_index(p->topo, (unsigned)node) : NULL;
}

int st_cpu_pool_node_cores(st_cpu_pool *p, int node) {
    hwloc_obj_t o = node_obj(p, node);
    if (!o) return 0;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) return 0;
    hwloc_bitmap_and(set, o->cpuset, hwloc_topology_get_allowed_cpuset(p->topo));
    int n = hwloc_get_nbobjs_inside_cpuset_by_type(p->topo, set, HWLOC_OBJ_CORE);
    hwloc_bitmap_free(set);
    return ST_MAX(n, 0);
}

st_status st_cpu_pool_bind_node(st_cpu_pool *p, int node) {
    hwloc_obj_t o = node_obj(p, node);
    if (!o) {
        st_error_set(ST_ERR_CONFIG, "cpu: NUMA node %d does not exist on this machine", node);
        return st_error_hint("'strata inventory' lists the NUMA nodes");
    }
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (!set) return st_error_set(ST_ERR_NOMEM, "cpu: out of memory for a cpuset");
    hwloc_bitmap_and(set, o->cpuset, hwloc_topology_get_allowed_cpuset(p->topo));
    const int n_cores = hwloc_get_nbobjs_inside_cpuset_by_type(p->topo, set, HWLOC_OBJ_CORE);
    if (n_cores <= 0) {
        hwloc_bitmap_free(set);
        st_error_set(ST_ERR_CONFIG, "cpu: NUMA node %d has no core this process may use", node);
        return st_error_hint("check the process's CPU affinity (taskset, cgroups)");
    }
    int bound = 0;
    for (int i = 1; i < p->n; i++) {
        struct worker *w = &p->w[i];
        hwloc_obj_t core = hwloc_get_obj_inside_cpuset_by_type(p->topo, set, HWLOC_OBJ_CORE, (unsigned)(i % n_cores));
        if (!core || !core->cpuset) continue;
        if (w->set) hwloc_bitmap_free(w->set);
        w->set = hwloc_bitmap_dup(core->cpuset);
        if (w->set && hwloc_set_thread_cpubind(p->topo, w->th, w->set, 0) == 0) bound++;
    }
    atomic_store(&p->bound, bound);
    /* the caller is thread 0: keep it on the node too, unless the node is the whole machine */
    if (!hwloc_bitmap_isequal(set, hwloc_topology_get_allowed_cpuset(p->topo)))
        (void)hwloc_set_cpubind(p->topo, set, HWLOC_CPUBIND_THREAD);
    if (bound < p->n - 1)
        ST_INFO("cpu: the OS refused to bind %d of %d worker threads to the cores of NUMA node %d", p->n - 1 - bound,
                p->n - 1, node);
    hwloc_bitmap_free(set);
    p->node = node;
    return ST_OK;
}

int st_cpu_pool_node(const st_cpu_pool *p) { return p->node; }

void st_cpu_pool_free(st_cpu_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->cv_go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) {
        if (p->w[i].started) pthread_join(p->w[i].th, NULL);
        if (p->w[i].set) hwloc_bitmap_free(p->w[i].set);
    }
    free(p->w);
    if (p->have_topo) hwloc_topology_destroy(p->topo);
    pthread_cond_destroy(&p->cv_done);
    pthread_cond_destroy(&p->cv_go);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
