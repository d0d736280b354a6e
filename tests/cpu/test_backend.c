/* The CPU backend through the ops table: results bit-identical with 1 and 2
 * threads (and 3, more than this machine's cores), matmul_multi and
 * matmul_swiglu bit-identical with the separate ops (float and quantized
 * weights, decode and batches), NUMA placement (where the weights' pages
 * are, which node a stage picks, pinning, thread counts kept), zero-copy
 * import, memory errors, and the LOCAL / HOST links between two CPU backends. */
#include "check.h"
#include "rng.h"
#include "weights.h"
#include "devices/cpu/cpu-impl.h"
#include "devices/link-impl.h"
#include "kernels/cpu/kernels_cpu.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct outputs {
    float *mm, *mm1, *norm, *rope, *att, *sw;
};

static void run_ops(st_backend *be, const struct st_device_ops *o, struct outputs *r) {
    const int64_t rows = 301, cols = 256, T = 7;
    const int64_t H = 8, Hkv = 2, D = 32, n_ctx = 64;
    rng_seed(7);
    uint16_t *w = malloc(sizeof(uint16_t) * rows * cols);
    for (int64_t i = 0; i < rows * cols; i++) w[i] = st_f32_to_bf16(rng_f());
    float *x = malloc(sizeof(float) * T * cols);
    for (int64_t i = 0; i < T * cols; i++) x[i] = rng_f();
    void *wd = NULL;
    CHECK_OK(o->import_host(be, w, sizeof(uint16_t) * rows * cols, ST_BUF_WEIGHTS, &wd));
    CHECK(wd == w);   /* zero copy */
    struct st_weight W = {.data = wd, .dtype = ST_DTYPE_BF16, .rows = rows, .cols = cols};
    r->mm = malloc(sizeof(float) * T * rows);
    r->mm1 = malloc(sizeof(float) * rows);
    CHECK_OK(o->matmul(be, &W, NULL, x, T, r->mm));
    CHECK_OK(o->matmul(be, &W, NULL, x, 1, r->mm1));

    float *nw = malloc(sizeof(float) * cols);
    for (int64_t i = 0; i < cols; i++) nw[i] = 1.0f + rng_f();
    r->norm = malloc(sizeof(float) * T * cols);
    CHECK_OK(o->rmsnorm(be, x, nw, T, cols, 1e-5f, r->norm));

    /* attention over a cache filled by kv_store, positions 57..63 */
    struct st_kv_layer kv = {.dtype = ST_DTYPE_F16, .n_ctx = n_ctx, .n_head_kv = Hkv, .head_dim = D, .n_slots = 1};
    size_t kvb = st_dtype_row_bytes(ST_DTYPE_F16, Hkv * D) * n_ctx;
    CHECK_OK(o->alloc(be, kvb, ST_BUF_KV, &kv.k));
    CHECK_OK(o->alloc(be, kvb, ST_BUF_KV, &kv.v));
    float *k = malloc(sizeof(float) * n_ctx * Hkv * D), *v = malloc(sizeof(float) * n_ctx * Hkv * D);
    for (int64_t i = 0; i < n_ctx * Hkv * D; i++) { k[i] = rng_f(); v[i] = rng_f(); }
    int32_t pos[64];
    for (int i = 0; i < 64; i++) pos[i] = i;
    CHECK_OK(o->kv_store(be, &kv, k, v, n_ctx, pos, NULL));
    r->rope = malloc(sizeof(float) * T * H * D);
    for (int64_t i = 0; i < T * H * D; i++) r->rope[i] = rng_f();
    struct st_rope_params rp = {.theta = 1e6f, .layout = ST_ROPE_NEOX, .freq_factors = NULL};
    CHECK_OK(o->rope(be, r->rope, T, H, D, pos + 57, &rp));
    r->att = malloc(sizeof(float) * T * H * D);
    CHECK_OK(o->attention(be, &kv, r->rope, T, H, pos + 57, NULL, 1, 0.17f, r->att));

    const int64_t n = 40000;
    float *g = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++) { g[i] = 4 * rng_f(); u[i] = rng_f(); }
    r->sw = malloc(sizeof(float) * n);
    CHECK_OK(o->swiglu(be, g, u, n, r->sw));
    CHECK_OK(o->add(be, r->sw, u, n));

    o->dealloc(be, kv.k);
    o->dealloc(be, kv.v);
    o->dealloc(be, wd);   /* an import: ignored, w stays valid */
    CHECK(w[0] == st_f32_to_bf16(st_bf16_to_f32(w[0])));
    free(w); free(x); free(nw); free(k); free(v); free(g); free(u);
}

static void free_outputs(struct outputs *r) {
    free(r->mm); free(r->mm1); free(r->norm); free(r->rope); free(r->att); free(r->sw);
}

static void test_thread_independence(void) {
    const struct st_device_ops *o = st_device_ops_cpu();
    struct outputs res[3];
    for (int i = 0; i < 3; i++) {
        struct st_backend_config cfg = {.n_threads = i + 1};
        st_backend *be = NULL;
        CHECK_OK(o->init(NULL, &cfg, &be));
        if (!be) return;
        CHECK(st_cpu_backend_threads(be) == i + 1);
        run_ops(be, o, &res[i]);
        o->free(be);
    }
    for (int i = 1; i < 3; i++) {
        CHECK_MSG(!memcmp(res[0].mm, res[i].mm, sizeof(float) * 7 * 301), "matmul differs with %d threads", i + 1);
        CHECK_MSG(!memcmp(res[0].mm1, res[i].mm1, sizeof(float) * 301), "decode matmul differs with %d threads", i + 1);
        CHECK_MSG(!memcmp(res[0].norm, res[i].norm, sizeof(float) * 7 * 256), "rmsnorm differs with %d threads", i + 1);
        CHECK_MSG(!memcmp(res[0].rope, res[i].rope, sizeof(float) * 7 * 8 * 32), "rope differs with %d threads", i + 1);
        CHECK_MSG(!memcmp(res[0].att, res[i].att, sizeof(float) * 7 * 8 * 32), "attention differs with %d threads", i + 1);
        CHECK_MSG(!memcmp(res[0].sw, res[i].sw, sizeof(float) * 40000), "swiglu/add differ with %d threads", i + 1);
    }
    /* the decode row equals token 0 of the batch */
    CHECK(!memcmp(res[0].mm1, res[0].mm, sizeof(float) * 301));
    for (int i = 0; i < 3; i++) free_outputs(&res[i]);
}

/* The grouped decode ops give exactly what the separate ops give: q, k, v of
 * three different dtypes reading one x (F16, Q8_0, Q4_K: both activation
 * formats in one call), gate/up in Q5_0 and Q6_K, with and without biases. */
static void test_grouped(void) {
    const struct st_device_ops *o = st_device_ops_cpu();
    CHECK(o->matmul_multi && o->matmul_swiglu);
    if (!o->matmul_multi || !o->matmul_swiglu) return;
    const int64_t C = 512;
    const st_dtype dts[3] = {ST_DTYPE_F16, ST_DTYPE_Q8_0, ST_DTYPE_Q4_K};
    const int64_t R[3] = {301, 64, 33};
    uint8_t *w[3];
    struct st_weight W[3];
    const int64_t F = 700;                 /* gate/up rows */
    float *bias = malloc(sizeof(float) * F);   /* q (301 rows) and gate (F rows) read it */
    for (int64_t i = 0; i < F; i++) bias[i] = rng_f();
    for (int k = 0; k < 3; k++) {
        w[k] = malloc(st_dtype_row_bytes(dts[k], C) * (size_t)R[k]);
        make_weights(dts[k], R[k], C, w[k]);
        W[k] = (struct st_weight){w[k], dts[k], R[k], C};
    }
    const st_dtype gdt[2] = {ST_DTYPE_Q5_0, ST_DTYPE_Q6_K};
    uint8_t *gw = malloc(st_dtype_row_bytes(gdt[0], C) * F), *uw = malloc(st_dtype_row_bytes(gdt[1], C) * F);
    make_weights(gdt[0], F, C, gw);
    make_weights(gdt[1], F, C, uw);
    struct st_weight G = {gw, gdt[0], F, C}, U = {uw, gdt[1], F, C};
    const int64_t T = 7;
    float *x = malloc(sizeof(float) * T * C);
    for (int64_t i = 0; i < T * C; i++) x[i] = rng_f();
    float *ref[3], *out[3], *g = malloc(sizeof(float) * T * F), *u = malloc(sizeof(float) * T * F);
    float *sw = malloc(sizeof(float) * T * F);
    for (int k = 0; k < 3; k++) {
        ref[k] = malloc(sizeof(float) * T * R[k]);
        out[k] = malloc(sizeof(float) * T * R[k]);
    }
    uint8_t *keep[3];
    for (int k = 0; k < 3; k++) {
        keep[k] = malloc(st_dtype_row_bytes(dts[k], C) * (size_t)R[k]);
        memcpy(keep[k], w[k], st_dtype_row_bytes(dts[k], C) * (size_t)R[k]);
    }
    for (int threads = 1; threads <= 2; threads++) {
        struct st_backend_config cfg = {.n_threads = threads};
        st_backend *be = NULL;
        CHECK_OK(o->init(NULL, &cfg, &be));
        if (!be) break;
        if (threads == 2) {   /* imported weights: packed on first use (unimported ones pack on the fly) */
            void *d = NULL;
            for (int k = 0; k < 3; k++) CHECK_OK(o->import_host(be, w[k], st_dtype_row_bytes(dts[k], C) * (size_t)R[k], ST_BUF_WEIGHTS, &d));
            CHECK_OK(o->import_host(be, gw, st_dtype_row_bytes(gdt[0], C) * F, ST_BUF_WEIGHTS, &d));
            CHECK_OK(o->import_host(be, uw, st_dtype_row_bytes(gdt[1], C) * F, ST_BUF_WEIGHTS, &d));
        }
        for (int64_t n = 1; n <= T; n += T - 1) {
            const float *bs[3] = {bias, NULL, bias};
            struct st_matmul_job jobs[3];
            for (int k = 0; k < 3; k++) {
                CHECK_OK(o->matmul(be, &W[k], bs[k], x, n, ref[k]));
                /* the backend's matmul is the kernel's */
                float *kern = malloc(sizeof(float) * n * R[k]);
                CHECK_OK(st_cpu_matmul(w[k], dts[k], R[k], C, bs[k], x, n, kern));
                CHECK_MSG(!memcmp(kern, ref[k], sizeof(float) * n * R[k]), "backend matmul %s != kernel", st_dtype_name(dts[k]));
                free(kern);
                memset(out[k], 0xff, sizeof(float) * T * R[k]);
                jobs[k] = (struct st_matmul_job){&W[k], bs[k], out[k]};
            }
            CHECK_OK(o->matmul_multi(be, jobs, 3, x, n));
            for (int k = 0; k < 3; k++)
                CHECK_MSG(!memcmp(out[k], ref[k], sizeof(float) * n * R[k]), "matmul_multi job %d (%s), %d threads, %lld tokens",
                          k, st_dtype_name(dts[k]), threads, (long long)n);
            CHECK_OK(o->matmul(be, &G, bias, x, n, g));
            CHECK_OK(o->matmul(be, &U, NULL, x, n, u));
            CHECK_OK(o->swiglu(be, g, u, n * F, g));
            memset(sw, 0xff, sizeof(float) * T * F);
            CHECK_OK(o->matmul_swiglu(be, &G, bias, &U, NULL, x, n, sw));
            CHECK_MSG(!memcmp(sw, g, sizeof(float) * n * F), "matmul_swiglu, %d threads, %lld tokens", threads, (long long)n);
        }
        CHECK_ERR(o->matmul_swiglu(be, &G, NULL, &W[0], NULL, x, 1, sw), ST_ERR_USAGE, "gate is 700 x 512 but up is 301 x 512");
        const uint64_t want = threads == 2 ? st_cpu_matmul_packed_bytes(dts[0], R[0], C) + st_cpu_matmul_packed_bytes(dts[1], R[1], C) +
                                                 st_cpu_matmul_packed_bytes(dts[2], R[2], C) +
                                                 st_cpu_matmul_packed_bytes(gdt[0], F, C) + st_cpu_matmul_packed_bytes(gdt[1], F, C)
                                           : 0;
        CHECK_MSG(st_cpu_backend_packed_bytes(be) == want, "%d threads: %llu bytes packed, want %llu", threads,
                  (unsigned long long)st_cpu_backend_packed_bytes(be), (unsigned long long)want);
        o->free(be);
    }
    /* packing released the pages of the imported weights, not their contents */
    for (int k = 0; k < 3; k++)
        CHECK_MSG(!memcmp(keep[k], w[k], st_dtype_row_bytes(dts[k], C) * (size_t)R[k]), "imported %s weight changed",
                  st_dtype_name(dts[k]));
    for (int k = 0; k < 3; k++) free(keep[k]);
    for (int k = 0; k < 3; k++) { free(w[k]); free(ref[k]); free(out[k]); }
    free(bias); free(gw); free(uw); free(x); free(g); free(u); free(sw);
}

/* Which node a stage runs on, as a pure function of what is known. */
static void test_numa_choose(void) {
    const uint64_t one[1] = {64ull << 30}, two[2] = {64ull << 30, 128ull << 30}, gap[4] = {8, 0, 0, 4};
    CHECK(st_cpu_numa_choose(1, 0, two, 2) == 1);       /* the weights' node wins */
    CHECK(st_cpu_numa_choose(-1, 0, two, 2) == 0);      /* else the device's */
    CHECK(st_cpu_numa_choose(-1, -1, two, 2) == 1);     /* else the largest of several */
    CHECK(st_cpu_numa_choose(-1, -1, gap, 4) == 0);     /* os indices with holes */
    CHECK(st_cpu_numa_choose(-1, -1, one, 1) == -1);    /* one node: nothing to choose */
    CHECK(st_cpu_numa_choose(-1, -1, NULL, 0) == -1);
}

/* Where pages are: a touched buffer is on a node of this machine, a fresh
 * mapping nowhere; a backend pins its pool to the weights' node before the
 * first op that reads them and keeps an explicit thread count. */
static void test_placement(void) {
    st_cpu_pool *p = NULL;
    CHECK_OK(st_cpu_pool_init(1, -1, "", &p));
    if (!p) return;
    uint64_t mem[64];
    const int nn = st_cpu_pool_node_memory(p, mem, 64);
    CHECK(nn >= 1);
    const size_t bytes = 16u << 20;
    uint8_t *touched = malloc(bytes);
    memset(touched, 1, bytes);
    void *fresh = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    double share = 0;
    struct st_cpu_area a = {touched, bytes};
    int node = st_cpu_pool_area_node(p, &a, 1, &share);
    printf("placement: %d NUMA node(s); a touched 16 MiB buffer is on node %d (%.0f%% of sampled pages)\n", nn, node, 100 * share);
    CHECK_MSG(node >= 0 && node < nn && mem[node] > 0 && share > 0.99, "touched buffer: node %d share %.2f", node, share);
    if (fresh != MAP_FAILED) {
        struct st_cpu_area f = {fresh, bytes};
        CHECK(st_cpu_pool_area_node(p, &f, 1, &share) == -1 && share == 0);
    }
    CHECK_OK(st_cpu_pool_bind_node(p, node));
    CHECK(st_cpu_pool_node(p) == node);
    CHECK_ERR(st_cpu_pool_bind_node(p, 999), ST_ERR_CONFIG, "NUMA node 999 does not exist");
    st_cpu_pool_free(p);

    const struct st_device_ops *o = st_device_ops_cpu();
    float *x = calloc(64, sizeof(float)), *y = calloc(1024, sizeof(float));
    for (int threads = 0; threads <= 3; threads += 3) {
        struct st_backend_config cfg = {.n_threads = threads};
        st_backend *be = NULL;
        CHECK_OK(o->init(NULL, &cfg, &be));
        if (!be) break;
        const int before = st_cpu_backend_threads(be);
        void *wd = NULL;
        CHECK_OK(o->import_host(be, touched, bytes, ST_BUF_WEIGHTS, &wd));
        CHECK(st_cpu_backend_node(be) == -1);                     /* not placed before an op */
        struct st_weight W = {wd, ST_DTYPE_F32, 1024, 64};        /* 256 KiB of the buffer */
        CHECK_OK(o->matmul(be, &W, NULL, x, 1, y));
        CHECK_MSG(st_cpu_backend_weights_node(be) == node, "weights found on node %d, want %d",
                  st_cpu_backend_weights_node(be), node);
        CHECK_MSG(st_cpu_backend_node(be) == node, "pool pinned to node %d, want %d", st_cpu_backend_node(be), node);
        if (threads) CHECK(st_cpu_backend_threads(be) == threads);   /* threads: N is kept */
        else CHECK(st_cpu_backend_threads(be) == before);            /* one node: one thread per core already */
        printf("placement: threads %d -> %d threads on node %d, %d workers bound\n", threads, st_cpu_backend_threads(be),
               st_cpu_backend_node(be), st_cpu_backend_bound(be));
        o->free(be);
    }
    free(x); free(y);
    free(touched);
    if (fresh != MAP_FAILED) munmap(fresh, bytes);
}

static void test_memory_and_errors(void) {
    const struct st_device_ops *o = st_device_ops_cpu();
    st_backend *be = NULL;
    struct st_backend_config cfg = {.n_threads = 2};
    CHECK_OK(o->init(NULL, &cfg, &be));
    if (!be) return;
    void *p = NULL;
    CHECK_ERR(o->alloc(be, (size_t)1 << 62, ST_BUF_KV, &p), ST_ERR_DEVICE_OOM, "out of memory allocating");
    CHECK(strstr(st_last_error(), "KV cache") && strstr(st_last_error(), "available") && strstr(st_last_error(), "hint:"));
    CHECK_OK(o->alloc(be, 100, ST_BUF_WORKSPACE, &p));
    CHECK(p && ((uintptr_t)p & 63) == 0 && ((uint8_t *)p)[99] == 0);
    uint8_t src[100];
    for (int i = 0; i < 100; i++) src[i] = (uint8_t)i;
    CHECK_OK(o->upload(be, p, src, 100));
    uint8_t back[100] = {0};
    CHECK_OK(o->download(be, back, p, 100));
    CHECK(!memcmp(src, back, 100));
    CHECK_OK(o->sync(be));
    o->dealloc(be, p);
    /* an embedding id out of range: the message comes back from a worker thread */
    float tab[4 * 64] = {0}, out[2 * 64];
    struct st_weight t = {.data = tab, .dtype = ST_DTYPE_F32, .rows = 4, .cols = 64};
    int32_t ids[600];
    for (int i = 0; i < 600; i++) ids[i] = i % 4;
    ids[599] = 7;
    float *big = malloc(sizeof(float) * 600 * 64);
    CHECK_ERR(o->embed(be, &t, ids, 600, big), ST_ERR_USAGE, "token id 7 at position 599");
    free(big);
    (void)out;
    int32_t id = -1;
    float lg[5] = {0, 3, 9, 9, 1};
    CHECK_OK(o->argmax(be, lg, 5, &id));
    CHECK(id == 2);
    o->free(be);
    struct st_backend_config bad = {.n_threads = -3};
    CHECK_ERR(o->init(NULL, &bad, &be), ST_ERR_CONFIG, "thread count -3");
    struct st_device_info numa = {.kind = ST_DEVICE_CPU, .numa_node = 999};
    snprintf(numa.name, sizeof numa.name, "cpu");
    CHECK_ERR(o->init(&numa, NULL, &be), ST_ERR_CONFIG, "NUMA node 999 does not exist");
}

static void test_links(void) {
    const struct st_device_ops *o = st_device_ops_cpu();
    st_backend *a = NULL, *b = NULL;
    struct st_backend_config cfg = {.n_threads = 1};
    CHECK_OK(o->init(NULL, &cfg, &a));
    CHECK_OK(o->init(NULL, &cfg, &b));
    if (!a || !b) return;
    struct st_device_info cpu = {.kind = ST_DEVICE_CPU, .numa_node = -1};
    snprintf(cpu.name, sizeof cpu.name, "cpu");
    float src[256], dst[256];
    for (int i = 0; i < 256; i++) src[i] = (float)i * 0.5f;
    st_link_type kinds[3] = {ST_LINK_T_AUTO, ST_LINK_T_LOCAL, ST_LINK_T_HOST};
    st_link_type want[3] = {ST_LINK_T_LOCAL, ST_LINK_T_LOCAL, ST_LINK_T_HOST};
    for (int i = 0; i < 3; i++) {
        st_link *l = NULL;
        CHECK_OK(st_link_init(kinds[i], a, o, &cpu, b, o, &cpu, sizeof src, &l));
        if (!l) continue;
        CHECK(st_link_get_type(l) == want[i]);
        memset(dst, 0, sizeof dst);
        CHECK_OK(st_link_send(l, src, dst, sizeof src));
        CHECK(!memcmp(src, dst, sizeof src));
        CHECK_ERR(st_link_send(l, src, dst, sizeof src + 4), ST_ERR_INTERNAL, "exceeds its 1024-byte capacity");
        st_link_free(l);
    }
    st_link *l = NULL;
    CHECK_ERR(st_link_init(ST_LINK_T_PEER, a, o, &cpu, b, o, &cpu, 64, &l), ST_ERR_CONFIG, "a peer link needs a GPU at both ends");
    CHECK_ERR(st_link_init(ST_LINK_T_NCCL, a, o, &cpu, b, o, &cpu, 64, &l), ST_ERR_CONFIG, "hint: use link: host");
    struct st_device_info cat = cpu;
    cat.kind = ST_DEVICE_CATALOG;
    snprintf(cat.name, sizeof cat.name, "Tesla M40 24GB");
    CHECK_ERR(st_link_init(ST_LINK_T_HOST, a, o, &cpu, b, o, &cat, 64, &l), ST_ERR_UNSUPPORTED, "only for planning");
    CHECK(!strcmp(st_link_type_name(ST_LINK_T_HOST), "host"));
    st_link_free(NULL);
    o->free(a);
    o->free(b);
}

static void count_chunk(void *arg, int i, int n) {
    int *c = arg;
    __atomic_fetch_add(&c[i], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&c[1000], n, __ATOMIC_RELAXED);
}

/* every chunk runs exactly once per job, whatever thread takes it */
static void test_pool(void) {
    st_cpu_pool *p = NULL;
    CHECK_OK(st_cpu_pool_init(3, -1, "", &p));
    if (!p) return;
    CHECK(st_cpu_pool_threads(p) == 3);
    static int c[1001];
    bool ok = true;
    for (int r = 0; r < 20000 && ok; r++) {
        int n = 1 + r % 37;
        memset(c, 0, sizeof c);
        st_cpu_pool_run_chunks(p, count_chunk, c, n);
        for (int i = 0; i < n; i++) ok &= c[i] == 1;
        ok &= c[n] == 0 && c[1000] == n * n;
    }
    CHECK_MSG(ok, "a pool chunk ran twice, never, or with the wrong count");
    memset(c, 0, sizeof c);
    st_cpu_pool_run(p, count_chunk, c);
    CHECK(c[0] == 1 && c[1] == 1 && c[2] == 1 && c[3] == 0);
    st_cpu_pool_free(p);
    CHECK_ERR(st_cpu_pool_init(1, -1, "zz", &p), ST_ERR_CONFIG, "cannot read the cpu list 'zz'");
}

int main(void) {
    test_pool();
    test_thread_independence();
    test_grouped();
    test_numa_choose();
    test_placement();
    test_memory_and_errors();
    test_links();
    return st_test_finish("cpu_backend");
}
