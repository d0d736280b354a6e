/* Fuzz target: a numerics profile (`strata calibrate -o FILE`, read through
 * `placement: {numerics: FILE}`). A profile that loads must write out as YAML
 * that loads again into the same profile. */
#include "fuzz.h"
#include "planner/planner.h"

#include <math.h>
#include <string.h>

static char *write_yaml(const struct st_numerics *n, size_t *len) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    FZ_ASSERT(f);
    FZ_ASSERT(st_numerics_write(f, n) == ST_OK);
    FZ_ASSERT(fclose(f) == 0);
    return buf;
}

static bool same(double a, double b) { return (isnan(a) && isnan(b)) || a == b; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct st_numerics *n = NULL;
    if (st_numerics_parse((const char *)data, size, "fuzz/numerics.yaml", &n) != ST_OK) {
        FZ_ASSERT(st_last_status() == ST_ERR_NOMEM || strstr(st_last_error(), "fuzz/numerics.yaml"));
        return 0;
    }
    size_t len = 0;
    char *y = write_yaml(n, &len);
    struct st_numerics *m = NULL;
    if (st_numerics_parse(y, len, "fuzz/numerics-again.yaml", &m) != ST_OK) {
        fprintf(stderr, "a profile that loaded does not load after writing it:\n%s\n---\n%s\n", st_last_error(), y);
        FZ_ASSERT(0);
    }
    FZ_ASSERT(m->n_layer == n->n_layer && m->tokens == n->tokens && !strcmp(m->model, n->model) &&
              !strcmp(m->text, n->text) && same(m->max_abs_limit, n->max_abs_limit));
    for (int64_t l = 0; l < n->n_layer; l++) {
        FZ_ASSERT(m->layers[l].fp16_safe == n->layers[l].fp16_safe);
        FZ_ASSERT(same(m->layers[l].max_abs, n->layers[l].max_abs) && same(m->layers[l].rel_error, n->layers[l].rel_error));
        FZ_ASSERT(!strcmp(m->layers[l].worst, n->layers[l].worst));
    }
    free(y);
    st_numerics_free(m);
    st_numerics_free(n);
    return 0;
}
