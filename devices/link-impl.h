/* devices/link-impl.h — what every link implementation embeds. A link kind is a
 * struct whose first member is struct st_link, created by its own init function
 * (host staging in devices/link.c, CUDA kinds in devices/cuda/). */
#ifndef STRATA_LINK_IMPL_H
#define STRATA_LINK_IMPL_H

#include "devices/device.h"

#ifdef __cplusplus
extern "C" {
#endif

struct st_link {
    st_link_type type;
    size_t max_bytes;
    st_status (*send)(struct st_link *l, const void *src_ptr, void *dst_ptr, size_t bytes);
    void (*destroy)(struct st_link *l);   /* frees the whole object */
};

#ifdef __cplusplus
}
#endif
#endif
