/* `strata inventory --probe`: measures what the planner's cost model needs and
 * returns a profile (devices/profile.c). Each device is measured by its
 * backend's probe hook (devices/<name>/register.c: the CPU's bandwidth, GEMV,
 * GEMM and op cost in devices/cpu/probe_cpu.c; CUDA's with device events in
 * devices/cuda/probe_cuda.cu). Links: a pair of devices of one backend by
 * that backend's probe_pair hook (CUDA: peer, nccl, host), and a host-memory
 * device <-> any other through the host link of devices/link.c. */
#include "devices/device.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINK_BYTES (64ull << 20) /* bandwidth send; smaller when --probe-bytes is */

static uint64_t link_bytes(const struct st_probe_options *o) {
    return o->bytes && o->bytes < LINK_BYTES ? o->bytes : LINK_BYTES;
}

/* Values in [1, 2): no subnormals, no NaN. */
static void fill_f32(uint32_t *buf, size_t n) {
    for (size_t i = 0; i < n; i++) buf[i] = 0x3F800000u | (((unsigned)(i * 2654435761u) >> 7) & 0x7FFFFFu);
}

/* Host-staged link between the CPU and a GPU, through st_link_init as the
 * runtime builds it: host-side time from send to arrival, best of reps. */
static st_status probe_host_link(const st_inventory *inv, int from, int to, const struct st_probe_options *o,
                                 struct st_profile_link *out, bool *available) {
    const struct st_device_info *a = &inv->devices[from], *b = &inv->devices[to];
    const struct st_device_ops *oa = NULL, *ob = NULL;
    struct st_backend_config cfg = {.matmul_prec = ST_PREC_F32, .attention = ST_ATTN_EAGER, .kv_dtype = ST_DTYPE_F32,
                                    .n_threads = o->n_threads};
    uint64_t bytes = link_bytes(o);
    int reps = o->reps > 0 ? o->reps : 5;
    st_backend *ba = NULL, *bb = NULL;
    st_link *l = NULL;
    void *pa = NULL, *pb = NULL, *host = NULL;
    st_status s = ST_OK;
    *available = false;
    if (st_device_ops_of(a, &oa) != ST_OK || st_device_ops_of(b, &ob) != ST_OK) {   /* not in this build */
        st_error_clear();
        return ST_OK;
    }
    if ((s = oa->init(a, &cfg, &ba)) != ST_OK) goto done;
    if ((s = ob->init(b, &cfg, &bb)) != ST_OK) goto done;
    if ((s = oa->alloc(ba, bytes, ST_BUF_STAGING, &pa)) != ST_OK) goto done;
    if ((s = ob->alloc(bb, bytes, ST_BUF_STAGING, &pb)) != ST_OK) goto done;
    if (!(host = st_malloc(bytes, "link probe pattern"))) { s = ST_ERR_NOMEM; goto done; }
    fill_f32(host, bytes / 4);
    if ((s = oa->upload(ba, pa, host, bytes)) != ST_OK) goto done;
    if ((s = st_link_init(ST_LINK_T_HOST, ba, oa, a, bb, ob, b, bytes, &l)) != ST_OK) goto done;
    for (int pass = 0; pass < 2; pass++) {
        size_t n = pass == 0 ? 4 : bytes;
        double best = 0;
        for (int r = 0; r <= reps; r++) {
            if ((s = oa->sync(ba)) != ST_OK || (s = ob->sync(bb)) != ST_OK) goto done;
            double t0 = st_time_s();
            if ((s = st_link_send(l, pa, pb, n)) != ST_OK) goto done;
            if ((s = ob->sync(bb)) != ST_OK) goto done;
            double dt = st_time_s() - t0;
            if (r > 0 && (best == 0 || dt < best)) best = dt;
        }
        if (pass == 0) out->latency_us = best * 1e6;
        else out->bw_gbps = (double)bytes / best / 1e9;
    }
    snprintf(out->from, sizeof out->from, "%s", st_profile_device_key(a));
    snprintf(out->to, sizeof out->to, "%s", st_profile_device_key(b));
    out->type = ST_LINK_T_HOST;
    *available = true;
done:
    if (s != ST_OK) {
        char sa[32], sb[32];
        st_error_prefix("probe: host link %s -> %s", st_device_selector(a, sa, sizeof sa), st_device_selector(b, sb, sizeof sb));
    }
    st_link_free(l);
    free(host);
    if (pb) ob->dealloc(bb, pb);
    if (pa) oa->dealloc(ba, pa);
    if (bb) ob->free(bb);
    if (ba) oa->free(ba);
    return s;
}

static st_status probe_links(const st_inventory *inv, const struct st_probe_options *o, st_profile *p) {
    int n = inv->n_devices;
    if (n < 2) return ST_OK;
    p->links = st_calloc((size_t)n * (size_t)n * 3, sizeof *p->links, "profile links");
    if (!p->links) return ST_ERR_NOMEM;
    st_status s = ST_OK;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            const struct st_device_info *a = &inv->devices[i], *b = &inv->devices[j];
            if (i == j || (st_device_host_memory(a) && st_device_host_memory(b))) continue;
            char sa[32], sb[32];
            st_device_selector(a, sa, sizeof sa);
            st_device_selector(b, sb, sizeof sb);
            const struct st_backend_reg *ra = st_backend_reg_of(a);
            if (st_device_host_memory(a) || st_device_host_memory(b) || a->kind != b->kind) {
                bool ok = false;
                struct st_profile_link *l = &p->links[p->n_links];
                if ((s = probe_host_link(inv, i, j, o, l, &ok)) != ST_OK) return s;
                if (ok) {
                    p->n_links++;
                    ST_INFO("probe: link %s -> %s host: %.1f us, %.1f GB/s", sa, sb, l->latency_us, l->bw_gbps);
                }
            } else if (ra && ra->probe_pair && (s = ra->probe_pair(inv, i, j, o, link_bytes(o), p)) != ST_OK) {
                return s;
            }
        }
    }
    return ST_OK;
}

/* ---- every device and link ------------------------------------------------------ */

st_status st_inventory_probe(const st_inventory *inv, const struct st_probe_options *opt, st_profile **out) {
    *out = NULL;
    struct st_probe_options o = opt ? *opt : (struct st_probe_options){0};
    st_profile *p = st_calloc(1, sizeof *p, "profile");
    if (!p) return ST_ERR_NOMEM;
    p->devices = st_calloc((size_t)inv->n_devices, sizeof *p->devices, "profile devices");
    if (!p->devices) { st_profile_free(p); return ST_ERR_NOMEM; }
    snprintf(p->host, sizeof p->host, "%s", inv->host);
    snprintf(p->strata_version, sizeof p->strata_version, "%s (%s)", st_version_string(), st_build_commit());
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(p->created, sizeof p->created, "%Y-%m-%dT%H:%M:%SZ", &tm);

    for (int i = 0; i < inv->n_devices; i++) {
        const struct st_device_info *d = &inv->devices[i];
        if (o.cpu_only && !st_device_host_memory(d)) continue;
        const struct st_backend_reg *b = st_backend_reg_of(d);
        char sel[32];
        st_device_selector(d, sel, sizeof sel);
        if (!b || !b->probe || d->kind == ST_DEVICE_CATALOG) {
            ST_WARN("probe: %s (%s) not measured: this build has no probe for it", sel, d->name);
            continue;
        }
        ST_INFO("probe: %s (%s)", sel, d->name);
        st_status s = b->probe(inv, i, &o, &p->devices[p->n_devices]);
        if (s != ST_OK) { st_profile_free(p); return s; }
        p->n_devices++;
    }
    if (!o.cpu_only) {
        st_status s = probe_links(inv, &o, p);
        if (s != ST_OK) { st_profile_free(p); return s; }
    }
    *out = p;
    return ST_OK;
}
