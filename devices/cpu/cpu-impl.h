/* devices/cpu/cpu-impl.h — internals of the CPU backend: the persistent
 * worker pool. Not part of the public interface (devices/device.h). */
#ifndef STRATA_CPU_IMPL_H
#define STRATA_CPU_IMPL_H

#include "devices/device.h"

typedef struct st_cpu_pool st_cpu_pool;

/* Work item: fn(arg, i, n) for each i in [0, n) (a chunk of the work), on any thread. */
typedef void (*st_cpu_task_fn)(void *arg, int i, int n);

/* Creates n_threads - 1 workers (the caller of st_cpu_pool_run is thread 0)
 * bound with hwloc, one per core, to the cores of NUMA node numa_node (or, when
 * it is -1, of cpuset_list such as "0-15,32-47", or of the whole machine when
 * that is ""). n_threads 0 = one thread per core of that set. Binding that the
 * OS refuses (containers) is reported once at INFO level, not an error. */
st_status st_cpu_pool_init(int n_threads, int numa_node, const char *cpuset_list, st_cpu_pool **out);
/* Runs fn for chunks 0..n_chunks-1, claimed dynamically by the caller and
 * the workers (a descheduled worker delays nothing), and returns when all
 * are done. Not reentrant. */
void st_cpu_pool_run_chunks(st_cpu_pool *p, st_cpu_task_fn fn, void *arg, int n_chunks);
/* The same with one chunk per thread: fn(arg, i, n_threads) for every i,
 * usually each on its own thread (but any thread may take any i). */
void st_cpu_pool_run(st_cpu_pool *p, st_cpu_task_fn fn, void *arg);
int st_cpu_pool_threads(const st_cpu_pool *p);
/* Number of workers that hwloc bound to a core. */
int st_cpu_pool_bound(const st_cpu_pool *p);
void st_cpu_pool_free(st_cpu_pool *p);   /* accepts NULL; joins the workers */

/* Threads a CPU backend (from st_device_ops_cpu()->init) runs its ops on. */
int st_cpu_backend_threads(const st_backend *be);

#endif
