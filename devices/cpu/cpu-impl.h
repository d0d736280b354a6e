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

/* ---- NUMA placement -------------------------------------------------------------
 * A memory area (weights) whose pages the placement looks at. */
struct st_cpu_area { const void *ptr; size_t bytes; };

/* The NUMA node holding most of the resident pages of the areas, sampled
 * (up to ~4096 pages spread evenly over all of them): its os index, with
 * *share = the fraction of the sampled resident pages it holds. -1 (share 0)
 * when no sampled page is resident yet (a fresh mapping) or hwloc cannot
 * tell (then first touch decides, by whichever threads read the weights). */
int st_cpu_pool_area_node(st_cpu_pool *p, const struct st_cpu_area *areas, int n_areas, double *share);
/* The NUMA node a stage should run on: the weights' node when known, else
 * the device's (device_node, -1 = none), else on a machine of several nodes
 * the one with the most memory (its threads then fault the weights in
 * locally). -1 = no preference (one node, or nothing known). Pure function
 * of its inputs: node_mem_bytes[i] is the memory of the node of os index i
 * (0 where none), n entries. */
int st_cpu_numa_choose(int weights_node, int device_node, const uint64_t *node_mem_bytes, int n);
/* Memory per NUMA node by os index, as st_cpu_numa_choose wants it; returns
 * the number of entries written (at most n), 0 when hwloc lists no node. */
int st_cpu_pool_node_memory(st_cpu_pool *p, uint64_t *node_mem_bytes, int n);
/* Rebinds the workers, one per core, to the cores of NUMA node `node`; the
 * calling thread too (to the node's whole cpuset) when the node is not the
 * whole machine. ST_ERR_CONFIG when the node does not exist or has no
 * allowed core; a binding the OS refuses is reported once at INFO, as at init. */
st_status st_cpu_pool_bind_node(st_cpu_pool *p, int node);
/* The node the pool is bound to (-1: the set it was created with). */
int st_cpu_pool_node(const st_cpu_pool *p);
/* Cores of NUMA node `node` that this process may use (0 when none). */
int st_cpu_pool_node_cores(st_cpu_pool *p, int node);

/* `inventory --probe` of the CPU inv->devices[dev] (the registration's probe
 * hook, devices/cpu/probe_cpu.c): bandwidth, GEMV per float dtype, a GEMM and
 * one tiny op through the ops table. */
st_status st_cpu_probe(const st_inventory *inv, int dev, const struct st_probe_options *opt,
                       struct st_profile_device *out);

/* ---- large host buffers on transparent huge pages ----------------------------------
 * Anonymous memory on a 2 MiB boundary, advised MADV_HUGEPAGE, for what the
 * CPU streams: the packed weights of every decode step and the bandwidth
 * tests that measure the same streams. A stream then takes a TLB miss per
 * 2 MiB instead of per 4 KiB (on the dev box, a VM with nested paging, Q8_0
 * decode went 30 -> 53 tok/s under load; docs/cpu-kernels.md). Pages are
 * faulted in by first touch, on the node of the thread that writes them.
 * Where the kernel has no THP (or it is "never") this is ordinary anonymous
 * memory. NULL when mmap fails. */
void *st_cpu_huge_alloc(size_t bytes);
void st_cpu_huge_free(void *p, size_t bytes);   /* accepts NULL */

/* Threads a CPU backend (from st_device_ops_cpu()->init) runs its ops on. */
int st_cpu_backend_threads(const st_backend *be);
/* The NUMA node its threads are pinned to (-1: not placed on one node), the
 * node the placement found its weights on (-1: unknown), and how many
 * workers the OS let it bind. The placement runs before the first op after
 * weights were imported (devices/cpu/cpu.c). */
int st_cpu_backend_node(const st_backend *be);
int st_cpu_backend_weights_node(const st_backend *be);
int st_cpu_backend_bound(const st_backend *be);
/* Bytes of packed copies of imported quantized weights (made on first use). */
uint64_t st_cpu_backend_packed_bytes(const st_backend *be);

#endif
