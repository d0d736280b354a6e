/* The backend registry (devices/registry.c, devices/<name>/register.c) against
 * what the backends do:
 *  - every device kind but CATALOG has exactly one entry, found by kind and by
 *    name; paths start at cc 0 and ascend; the catalog's backend is CUDA;
 *  - a built backend's declared optional ops are exactly the optional entries
 *    its ops table fills (CUDA's table is there in a CUDA build without a GPU);
 *  - capabilities carry the weight dtypes of the path their cc selects
 *    (st_caps_from_cc, st_caps_cpu, every catalog card, this machine's
 *    inventory), written out here per cc: maxwell below 6.0;
 *  - every weight dtype the CPU path declares runs through the CPU backend's
 *    matmul (1 and 5 tokens) and embed on gguf-py's blocks
 *    (tests/fixtures/dtype/dtype_ref.gguf: raw blocks and gguf-py's fp32
 *    dequantization), within the bound of its 8-bit activations; its declared
 *    q8_0 KV cache stores;
 *  - lookups: selectors, kind names, the ops / memory of a backend this build
 *    lacks (NOT_BUILT, hinted) and of a catalog card (refused). */
#include "check.h"
#include "devices/device.h"
#include "gguf_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ALL ((1u << ST_DTYPE_COUNT) - 1u)
#define TABLE_OPS (ST_BACKEND_OP_ARGMAX_ROWS | ST_BACKEND_OP_IMPORT_HOST | ST_BACKEND_OP_GRAPHS | \
                   ST_BACKEND_OP_MATMUL_MULTI | ST_BACKEND_OP_MATMUL_SWIGLU | ST_BACKEND_OP_SAMPLE | \
                   ST_BACKEND_OP_EVENTS | ST_BACKEND_OP_PIPELINE | ST_BACKEND_OP_ROPE_KV_STORE | \
                   ST_BACKEND_OP_MATMUL_ADD)

/* The optional entries an ops table fills, as st_backend_op bits. */
static uint32_t table_ops(const struct st_device_ops *o) {
    uint32_t w = 0;
    if (o->argmax_rows) w |= ST_BACKEND_OP_ARGMAX_ROWS;
    if (o->import_host) w |= ST_BACKEND_OP_IMPORT_HOST;
    if (o->capture_begin && o->capture_end && o->replay) w |= ST_BACKEND_OP_GRAPHS;
    if (o->matmul_multi) w |= ST_BACKEND_OP_MATMUL_MULTI;
    if (o->matmul_swiglu) w |= ST_BACKEND_OP_MATMUL_SWIGLU;
    if (o->sample) w |= ST_BACKEND_OP_SAMPLE;
    if (o->event_create && o->event_free && o->event_record && o->event_elapsed_ms) w |= ST_BACKEND_OP_EVENTS;
    if (o->download_async && o->event_sync) w |= ST_BACKEND_OP_PIPELINE;
    if (o->rope_kv_store) w |= ST_BACKEND_OP_ROPE_KV_STORE;
    if (o->matmul_add) w |= ST_BACKEND_OP_MATMUL_ADD;
    return w;
}

static void declarations(void) {
    static const st_device_kind kinds[] = {ST_DEVICE_CPU, ST_DEVICE_CUDA};
    CHECK(st_backend_reg_count() == (int)ST_ARRAY_LEN(kinds));
    for (size_t i = 0; i < ST_ARRAY_LEN(kinds); i++) {
        int found = 0;
        for (int k = 0; k < st_backend_reg_count(); k++) found += st_backend_reg_at(k)->kind == kinds[i];
        CHECK_MSG(found == 1, "kind %d has %d entries", (int)kinds[i], found);
    }
    CHECK(st_backend_reg_at(-1) == NULL && st_backend_reg_at(st_backend_reg_count()) == NULL);
    CHECK(st_backend_reg_find(ST_DEVICE_CATALOG) == NULL);
    CHECK(!strcmp(st_backend_reg_find(ST_DEVICE_CPU)->name, "cpu") && st_backend_reg_find(ST_DEVICE_CPU)->host_memory);
    CHECK(!strcmp(st_backend_reg_find(ST_DEVICE_CUDA)->name, "cuda") && !st_backend_reg_find(ST_DEVICE_CUDA)->host_memory);
    CHECK(st_backend_reg_by_name("tpu") == NULL && st_backend_reg_by_name(NULL) == NULL);
    for (int k = 0; k < st_backend_reg_count(); k++) {
        const struct st_backend_reg *b = st_backend_reg_at(k);
        CHECK(st_backend_reg_by_name(b->name) == b && st_backend_reg_find(b->kind) == b);
        CHECK(!strcmp(st_device_kind_name(b->kind), b->name));
        st_device_kind kd;
        CHECK(st_device_kind_parse(b->name, &kd) && kd == b->kind);
        CHECK_MSG(b->n_paths >= 1 && b->paths[0].cc_min == 0, "%s: paths", b->name);
        uint32_t tops = b->paths[0].ops & TABLE_OPS;
        for (int p = 0; p < b->n_paths; p++) {
            const struct st_backend_path *x = &b->paths[p];
            CHECK_MSG(x->weight_dtypes && !(x->weight_dtypes & ~ALL), "%s %s: weight dtypes", b->name, x->name);
            CHECK_MSG(!(x->ops & ~((1u << ST_BACKEND_N_OPS) - 1)), "%s %s: ops", b->name, x->name);
            if (p) CHECK_MSG(x->cc_min > b->paths[p - 1].cc_min, "%s: paths ascend", b->name);
            /* one ops table per backend: every path declares the same table entries */
            CHECK_MSG((x->ops & TABLE_OPS) == tops, "%s %s: table entries differ between paths", b->name, x->name);
        }
        CHECK(b->caps != NULL);
        CHECK_MSG(b->built == (b->ops != NULL), "%s: built and the ops hook", b->name);
        if (b->built) {
            const struct st_device_ops *o = b->ops();
            CHECK_MSG(o && !strcmp(o->name, b->name), "%s: the ops table's name", b->name);
            if (o) CHECK_MSG(table_ops(o) == tops, "%s: declared ops %#x, the table fills %#x", b->name, tops,
                             table_ops(o));
        } else {
            CHECK(!b->discover && !b->probe && !b->probe_pair && !b->mem_read && !b->link_init && !b->bandwidth &&
                  !b->h2d_bandwidth);
            CHECK(b->not_built[0] && b->build_hint[0]);
        }
    }
    st_device_kind kd;
    CHECK(st_device_kind_parse("catalog", &kd) && kd == ST_DEVICE_CATALOG);
    CHECK(!st_device_kind_parse("tpu", &kd));
    CHECK(!strcmp(st_device_kind_name(ST_DEVICE_CATALOG), "catalog") && !strcmp(st_device_kind_name((st_device_kind)9), "?"));
    CHECK(st_backend_op_name(ST_BACKEND_OP_GRAPHS) && !strcmp(st_backend_op_name(ST_BACKEND_OP_GRAPHS), "graphs"));
    CHECK(!strcmp(st_backend_op_name(3), "?"));
#ifdef STRATA_HAVE_CUDA
    CHECK(st_backend_reg_find(ST_DEVICE_CUDA)->built);
#else
    CHECK(!st_backend_reg_find(ST_DEVICE_CUDA)->built);
#endif
}

/* Capabilities by cc, written out from DESIGN.md and the CUDA registration: the maxwell path below 6.0. */
static void capabilities(void) {
    const struct st_backend_reg *cuda = st_backend_reg_find(ST_DEVICE_CUDA), *cpu = st_backend_reg_find(ST_DEVICE_CPU);
    static const struct { int ma, mi; const char *path; } t[] = {
        {5, 0, "maxwell"}, {5, 2, "maxwell"}, {5, 3, "maxwell"}, {6, 0, "default"}, {6, 1, "default"},
        {7, 0, "default"}, {8, 6, "default"}, {9, 0, "default"},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(t); i++) {
        struct st_caps c = st_caps_from_cc(t[i].ma, t[i].mi);
        const struct st_backend_path *p = st_backend_reg_path(cuda, &c);
        CHECK_MSG(!strcmp(p->name, t[i].path), "cc %d.%d: path %s, want %s", t[i].ma, t[i].mi, p->name, t[i].path);
        CHECK(c.weight_dtypes == p->weight_dtypes && c.weight_dtypes == ALL);   /* both CUDA paths run every dtype */
        struct st_caps via = cuda->caps(t[i].ma, t[i].mi);   /* field by field: padding bytes are not compared */
        CHECK(via.cc_major == c.cc_major && via.cc_minor == c.cc_minor && via.fp16_arith == c.fp16_arith &&
              via.fp32_accum_fp16 == c.fp32_accum_fp16 && via.bf16 == c.bf16 && via.tensor_cores == c.tensor_cores &&
              via.flash_attn == c.flash_attn && via.weight_dtypes == c.weight_dtypes);
    }
    struct st_caps c = st_caps_cpu();
    CHECK(c.weight_dtypes == ALL && c.weight_dtypes == cpu->paths[0].weight_dtypes);
    CHECK(!strcmp(st_backend_reg_path(cpu, &c)->name, "default"));
    /* a catalog card is a CUDA card of its cc */
    for (int i = 0; i < st_catalog_count(); i++) {
        struct st_device_info in;
        CHECK_OK(st_catalog_lookup(st_catalog_key(i), &in));
        const struct st_catalog_entry *e = st_catalog_entry_at(i);
        CHECK(st_backend_reg_of(&in) == cuda);
        CHECK_MSG(in.caps.weight_dtypes == st_caps_from_cc(e->cc_major, e->cc_minor).weight_dtypes, "%s", e->key);
        CHECK(!strcmp(st_device_path(&in)->name, e->cc_major < 6 ? "maxwell" : "default"));
        CHECK(!st_device_host_memory(&in));
    }
    /* this machine: every device's weight types are its path's */
    st_inventory *inv = NULL;
    CHECK_OK(st_inventory_init(&inv));
    for (int i = 0; inv && i < inv->n_devices; i++) {
        const struct st_device_info *d = &inv->devices[i];
        CHECK(d->caps.weight_dtypes == st_device_path(d)->weight_dtypes);
        CHECK(st_device_host_memory(d) == (i == 0));
    }
    st_inventory_free(inv);
}

static void lookups(void) {
    struct st_device_info cpu = {.kind = ST_DEVICE_CPU, .numa_node = -1}, gpu = {.kind = ST_DEVICE_CUDA, .index = 3};
    struct st_device_info cat;
    CHECK_OK(st_catalog_lookup("tesla-m40", &cat));
    snprintf(gpu.name, sizeof gpu.name, "a GPU");
    char sel[32];
    CHECK(!strcmp(st_device_selector(&cpu, sel, sizeof sel), "cpu"));
    CHECK(!strcmp(st_device_selector(&gpu, sel, sizeof sel), "cuda:3"));
    CHECK(!strcmp(st_device_selector(&cat, sel, sizeof sel), "catalog:tesla-m40"));
    const struct st_device_ops *o = NULL;
    CHECK_OK(st_device_ops_of(&cpu, &o));
    CHECK(o == st_device_ops_cpu());
    CHECK_ERR(st_device_ops_of(&cat, &o), ST_ERR_CONFIG, "Tesla M40 24GB: a catalog device exists only for planning");
    CHECK(o == NULL);
    struct st_device_mem_reading r;
    CHECK_ERR(st_device_mem_read(&cat, &r), ST_ERR_USAGE, "a catalog device has no memory to read");
#ifdef STRATA_HAVE_CUDA
    CHECK_OK(st_device_ops_of(&gpu, &o));
    CHECK(o == st_device_ops_cuda());
#else
    CHECK_ERR(st_device_ops_of(&gpu, &o), ST_ERR_NOT_BUILT,
              "a GPU: this build has no CUDA backend\nhint: rebuild with the CUDA toolkit installed");
    CHECK(o == NULL && st_device_ops_cuda() == NULL);
    CHECK_ERR(st_device_mem_read(&gpu, &r), ST_ERR_NOT_BUILT, "a GPU: this build has no CUDA backend to read device memory");
#endif
    CHECK_OK(st_device_mem_read(&cpu, &r));
    CHECK(r.total_bytes > 0 && r.process_bytes > 0);
    char buf[128];
    CHECK(!strcmp(st_dtype_mask_text(ALL, " ", buf, sizeof buf),
                  "f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 iq4_nl q4_k q5_k q6_k"));
    CHECK(!strcmp(st_dtype_mask_text(0, " ", buf, sizeof buf), "none"));
    CHECK(!strcmp(st_dtype_mask_text((1u << ST_DTYPE_Q8_0) | (1u << ST_DTYPE_F16), ", ", buf, sizeof buf), "f16, q8_0"));
}

/* ---- the CPU path's dtypes, run ------------------------------------------------ */

static const struct st_gguf_tensor_info *find(const struct st_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const struct st_gguf_tensor_info *t = &g->ti[i];
        if (t->name_len == strlen(name) && !memcmp(g->base + t->name_off, name, t->name_len)) return t;
    }
    return NULL;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float unif(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* One dtype through matmul and embed of the CPU backend: w (rows x cols, stored), ref its fp32 values. */
static void run_dtype(const struct st_device_ops *ops, st_backend *be, st_dtype dt, const void *w, const float *ref,
                      int64_t rows, int64_t cols) {
    const char *dn = st_dtype_name(dt);
    const size_t wb = st_dtype_row_bytes(dt, cols) * (size_t)rows;
    enum { T = 5 };
    void *wd = NULL, *xd = NULL, *yd = NULL, *ed = NULL;
    float x[T * 512], y[T * 3], e[3 * 512];
    if (cols > 512 || rows > 3) { CHECK(false); return; }
    for (int64_t i = 0; i < T * cols; i++) x[i] = unif();
    CHECK_OK(ops->alloc(be, wb, ST_BUF_WEIGHTS, &wd));
    CHECK_OK(ops->alloc(be, sizeof x, ST_BUF_WORKSPACE, &xd));
    CHECK_OK(ops->alloc(be, sizeof y, ST_BUF_WORKSPACE, &yd));
    CHECK_OK(ops->alloc(be, sizeof e, ST_BUF_WORKSPACE, &ed));
    if (!wd || !xd || !yd || !ed) goto done;
    CHECK_OK(ops->upload(be, wd, w, wb));
    CHECK_OK(ops->upload(be, xd, x, sizeof x));
    struct st_weight wt = {.data = wd, .dtype = dt, .rows = rows, .cols = cols};
    const bool quant = st_dtype_block_elems(dt) > 1;
    for (int n_tok = 1; n_tok <= T; n_tok += T - 1) {
        CHECK_MSG(ops->matmul(be, &wt, NULL, xd, n_tok, yd) == ST_OK, "%s matmul (%d tokens): %s", dn, n_tok,
                  st_last_error());
        CHECK_OK(ops->download(be, y, yd, (size_t)n_tok * (size_t)rows * sizeof(float)));
        for (int t = 0; t < n_tok; t++) {
            float amax = 0;
            for (int64_t c = 0; c < cols; c++) amax = fmaxf(amax, fabsf(x[t * cols + c]));
            for (int64_t r = 0; r < rows; r++) {
                double want = 0, mag = 0, wsum = 0;
                for (int64_t c = 0; c < cols; c++) {
                    want += (double)ref[r * cols + c] * x[t * cols + c];
                    mag += fabs((double)ref[r * cols + c] * x[t * cols + c]);
                    wsum += fabs((double)ref[r * cols + c]);
                }
                /* fp32 sums; quantized weights meet x rounded to 8 bits (|x - q(x)| <= amax / 254) */
                double tol = 1e-5 * mag + 1e-6 + (quant ? 1.05 * wsum * amax / 254.0 : 0);
                CHECK_MSG(fabs(y[t * rows + r] - want) <= tol, "%s matmul %d tokens, token %d row %lld: %.7g, want %.7g "
                          "(tolerance %.3g)", dn, n_tok, t, (long long)r, y[t * rows + r], want, tol);
            }
        }
    }
    int32_t ids[3] = {2, 0, 1}, *idd = NULL;
    CHECK_OK(ops->alloc(be, sizeof ids, ST_BUF_WORKSPACE, (void **)&idd));
    if (idd) {
        CHECK_OK(ops->upload(be, idd, ids, sizeof ids));
        CHECK_MSG(ops->embed(be, &wt, idd, 3, ed) == ST_OK, "%s embed: %s", dn, st_last_error());
        CHECK_OK(ops->download(be, e, ed, (size_t)(3 * cols) * sizeof(float)));
        int bad = 0;
        for (int k = 0; k < 3; k++)
            for (int64_t c = 0; c < cols; c++) {
                float want = ref[ids[k] * cols + c];
                bad += fabsf(e[k * cols + c] - want) > 1e-6f * fabsf(want) + 1e-7f;
            }
        CHECK_MSG(bad == 0, "%s embed: %d values differ from gguf-py's", dn, bad);
        ops->dealloc(be, idd);
    }
done:
    if (ed) ops->dealloc(be, ed);
    if (yd) ops->dealloc(be, yd);
    if (xd) ops->dealloc(be, xd);
    if (wd) ops->dealloc(be, wd);
}

static void cpu_runs_what_it_declares(void) {
    struct gguf_fixture fx;
    struct st_gguf *g = gguf_fixture_open("tests/fixtures/dtype/dtype_ref.gguf", &fx);
    if (!g) return;
    const struct st_backend_reg *b = st_backend_reg_find(ST_DEVICE_CPU);
    struct st_device_info dev = {.kind = ST_DEVICE_CPU, .numa_node = -1};
    snprintf(dev.name, sizeof dev.name, "cpu");
    struct st_backend_config cfg = {.matmul_prec = ST_PREC_F32, .attention = ST_ATTN_EAGER, .kv_dtype = ST_DTYPE_Q8_0,
                                    .n_threads = 2};
    const struct st_device_ops *ops = NULL;
    st_backend *be = NULL;
    CHECK_OK(st_device_ops_of(&dev, &ops));
    if (ops) CHECK_OK(ops->init(&dev, &cfg, &be));
    const uint32_t declared = b->paths[0].weight_dtypes;
    int ran = 0;
    /* the floats: q8_0's reference values stored as f32 / f16 / bf16 (the fp32 values of those, exactly) */
    const struct st_gguf_tensor_info *base = g ? find(g, "q8_0.ref") : NULL;
    float ref[3 * 512];
    uint16_t half[3 * 512];
    for (int t = 0; be && base && t < ST_DTYPE_COUNT; t++) {
        if (!(declared & (1u << t))) continue;
        const st_dtype dt = (st_dtype)t;
        const int64_t rows = 3, cols = 512;
        if (dt == ST_DTYPE_F32 || dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16) {
            memcpy(ref, g->base + g->data_start + base->offset, sizeof ref);
            if (dt != ST_DTYPE_F32)
                for (int i = 0; i < 3 * 512; i++) {
                    half[i] = dt == ST_DTYPE_F16 ? st_f32_to_f16(ref[i]) : st_f32_to_bf16(ref[i]);
                    ref[i] = dt == ST_DTYPE_F16 ? st_f16_to_f32(half[i]) : st_bf16_to_f32(half[i]);
                }
            run_dtype(ops, be, dt, dt == ST_DTYPE_F32 ? (const void *)ref : (const void *)half, ref, rows, cols);
        } else {
            char rn[32], fn[32];
            snprintf(rn, sizeof rn, "%s.raw", st_dtype_name(dt));
            snprintf(fn, sizeof fn, "%s.ref", st_dtype_name(dt));
            const struct st_gguf_tensor_info *raw = find(g, rn), *rf = find(g, fn);
            CHECK_MSG(raw && rf && raw->dtype == dt && rf->ne[0] == cols && rf->ne[1] == rows, "%s: fixture", rn);
            if (!raw || !rf) continue;
            memcpy(ref, g->base + g->data_start + rf->offset, sizeof ref);
            run_dtype(ops, be, dt, g->base + g->data_start + raw->offset, ref, rows, cols);
        }
        ran++;
    }
    CHECK(ran == __builtin_popcount(declared) && ran == ST_DTYPE_COUNT);
    /* the declared q8_0 KV cache: rows of 2 heads x 64 stored at position 3 */
    if (be && (b->paths[0].ops & ST_BACKEND_OP_KV_Q8)) {
        const int64_t n_ctx = 8, H = 2, D = 64;
        const size_t plane = st_dtype_row_bytes(ST_DTYPE_Q8_0, H * D) * (size_t)n_ctx;
        void *k = NULL, *v = NULL, *kv_in = NULL;
        int32_t pos = 3, *pd = NULL;
        float kvx[2 * 64];
        for (int i = 0; i < 128; i++) kvx[i] = unif();
        CHECK_OK(ops->alloc(be, plane, ST_BUF_KV, &k));
        CHECK_OK(ops->alloc(be, plane, ST_BUF_KV, &v));
        CHECK_OK(ops->alloc(be, sizeof kvx, ST_BUF_WORKSPACE, &kv_in));
        CHECK_OK(ops->alloc(be, sizeof pos, ST_BUF_WORKSPACE, (void **)&pd));
        if (k && v && kv_in && pd) {
            CHECK_OK(ops->upload(be, kv_in, kvx, sizeof kvx));
            CHECK_OK(ops->upload(be, pd, &pos, sizeof pos));
            struct st_kv_layer kv = {.k = k, .v = v, .dtype = ST_DTYPE_Q8_0, .n_ctx = n_ctx, .n_head_kv = H,
                                     .head_dim = D, .n_slots = 1};
            CHECK_OK(ops->kv_store(be, &kv, kv_in, kv_in, 1, pd, NULL));
            uint8_t row[4 * 34];
            float back[128];
            CHECK_OK(ops->download(be, row, (uint8_t *)k + 3 * sizeof row, sizeof row));
            CHECK_OK(st_dtype_to_f32(ST_DTYPE_Q8_0, row, back, 128));
            int bad = 0;
            for (int i = 0; i < 128; i++) bad += fabsf(back[i] - kvx[i]) > 1.0f / 254.0f + 1e-6f;
            CHECK_MSG(bad == 0, "q8_0 KV cache: %d values off by more than half a step", bad);
        }
        if (pd) ops->dealloc(be, pd);
        if (kv_in) ops->dealloc(be, kv_in);
        if (v) ops->dealloc(be, v);
        if (k) ops->dealloc(be, k);
    }
    if (be) ops->free(be);
    gguf_fixture_close(&fx);
}

int main(void) {
    declarations();
    capabilities();
    lookups();
    cpu_runs_what_it_declares();
    return st_test_finish("inventory_registry");
}
