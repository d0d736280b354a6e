/* Links between consecutive stages: LOCAL (both stages in host memory: a copy)
 * and HOST (download into a host buffer, upload on the other side; any pair).
 * Both ends on one device backend (not host memory): every kind goes to that
 * backend's link_init hook (CUDA: st_cuda_link_init, devices/cuda/). */
#include "devices/link-impl.h"

#include <stdlib.h>
#include <string.h>

const char *st_link_type_name(st_link_type t) {
    switch (t) {
    case ST_LINK_T_AUTO: return "auto";
    case ST_LINK_T_LOCAL: return "local";
    case ST_LINK_T_PEER: return "peer";
    case ST_LINK_T_NCCL: return "nccl";
    case ST_LINK_T_HOST: return "host";
    case ST_LINK_T_MPI: return "mpi";
    }
    return "unknown";
}

struct host_link {
    struct st_link base;
    st_backend *src, *dst;
    const struct st_device_ops *src_ops, *dst_ops;
    void *stage;                 /* host staging buffer (max_bytes); NULL for LOCAL */
};

static st_status host_send(struct st_link *l, const void *src_ptr, void *dst_ptr, size_t bytes) {
    struct host_link *h = (struct host_link *)l;
    if (bytes > l->max_bytes) {
        return st_error_set(ST_ERR_INTERNAL, "%s link: send of %zu bytes exceeds its %zu-byte capacity",
                            st_link_type_name(l->type), bytes, l->max_bytes);
    }
    if (!h->stage) {             /* LOCAL on the CPU: one copy in host memory */
        if (bytes && dst_ptr != src_ptr) memmove(dst_ptr, src_ptr, bytes);
        return ST_OK;
    }
    st_status s = h->src_ops->download(h->src, h->stage, src_ptr, bytes);
    if (s != ST_OK) return st_error_prefix("host link (download from %s)", h->src_ops->name);
    s = h->dst_ops->upload(h->dst, dst_ptr, h->stage, bytes);
    if (s != ST_OK) return st_error_prefix("host link (upload to %s)", h->dst_ops->name);
    return ST_OK;
}

static void host_destroy(struct st_link *l) {
    struct host_link *h = (struct host_link *)l;
    free(h->stage);
    free(h);
}

st_status st_link_init(st_link_type type, st_backend *src, const struct st_device_ops *src_ops,
                       const struct st_device_info *src_dev, st_backend *dst,
                       const struct st_device_ops *dst_ops, const struct st_device_info *dst_dev,
                       size_t max_bytes, st_link **out) {
    *out = NULL;
    if (src_dev->kind == ST_DEVICE_CATALOG || dst_dev->kind == ST_DEVICE_CATALOG) {
        st_error_set(ST_ERR_UNSUPPORTED, "link %s -> %s: a catalog device exists only for planning",
                     src_dev->name, dst_dev->name);
        return st_error_hint("run 'strata plan' for what-if hardware; 'generate' needs real devices");
    }
    const bool host = st_device_host_memory(src_dev) && st_device_host_memory(dst_dev);
    const struct st_backend_reg *b = st_backend_reg_find(src_dev->kind);
    if (!host && src_dev->kind == dst_dev->kind && b && !b->host_memory) {
        if (b->link_init) return b->link_init(type, src, dst, max_bytes, out);
        st_error_set(ST_ERR_NOT_BUILT, "link between %s devices: this build has no %s backend", b->title, b->title);
        return st_error_hint("%s", b->build_hint);
    }
    if (type == ST_LINK_T_AUTO) type = host ? ST_LINK_T_LOCAL : ST_LINK_T_HOST;
    if (type == ST_LINK_T_LOCAL && !host) {
        st_error_set(ST_ERR_CONFIG, "link %s -> %s: a local link joins two stages on one device",
                     src_dev->name, dst_dev->name);
        return st_error_hint("use link: host (or auto) between different devices");
    }
    if (type == ST_LINK_T_MPI) {
        st_error_set(ST_ERR_CONFIG, "link %s -> %s: an MPI link joins stages of two processes", src_dev->name,
                     dst_dev->name);
        return st_error_hint("use link: host (or auto) between devices of one process");
    }
    if (type == ST_LINK_T_PEER || type == ST_LINK_T_NCCL) {
        st_error_set(ST_ERR_CONFIG, "link %s -> %s: a %s link needs a GPU at both ends", src_dev->name,
                     dst_dev->name, st_link_type_name(type));
        return st_error_hint("use link: host (or auto) when one end is the CPU");
    }
    if (type != ST_LINK_T_LOCAL && type != ST_LINK_T_HOST)
        return st_error_set(ST_ERR_INTERNAL, "link: unknown link type %d", (int)type);

    struct host_link *h = st_calloc(1, sizeof *h, "link");
    if (!h) return ST_ERR_NOMEM;
    h->base.type = type;
    h->base.max_bytes = max_bytes;
    h->base.send = host_send;
    h->base.destroy = host_destroy;
    h->src = src; h->dst = dst; h->src_ops = src_ops; h->dst_ops = dst_ops;
    if (type == ST_LINK_T_HOST) {
        h->stage = st_malloc(max_bytes ? max_bytes : 1, "host link staging buffer");
        if (!h->stage) { free(h); return ST_ERR_NOMEM; }
    }
    *out = h ? &h->base : NULL;
    return ST_OK;
}

st_status st_link_send(st_link *l, const void *src_ptr, void *dst_ptr, size_t bytes) {
    if (st_fault_hit(ST_FAULT_LINK, st_link_type_name(l->type))) {
        return st_error_set(ST_ERR_DEVICE, "%s link: sending %zu bytes failed (injected by STRATA_FAULT)",
                            st_link_type_name(l->type), bytes);
    }
    return l->send(l, src_ptr, dst_ptr, bytes);
}

st_link_type st_link_get_type(const st_link *l) { return l->type; }

void st_link_free(st_link *l) {
    if (l) l->destroy(l);
}
