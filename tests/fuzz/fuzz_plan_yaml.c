/* Fuzz target: a plan file (`strata plan -o FILE`, read back by `generate
 * --plan FILE`). A plan that loads must write out as YAML that loads again
 * into the same plan (written twice, the two texts are equal), and as JSON. */
#include "fuzz.h"
#include "planner/planner.h"

#include <string.h>

static char *write_yaml(const st_plan *p, size_t *len) {
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    FZ_ASSERT(f);
    FZ_ASSERT(st_plan_write_yaml(f, p) == ST_OK);
    FZ_ASSERT(fclose(f) == 0);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_plan *p = NULL;
    if (st_plan_parse_yaml((const char *)data, size, "fuzz/plan.yaml", &p) != ST_OK) {
        FZ_ASSERT(st_last_status() == ST_ERR_NOMEM || strstr(st_last_error(), "fuzz/plan.yaml"));
        return 0;
    }
    size_t l1 = 0, l2 = 0;
    char *y1 = write_yaml(p, &l1);
    st_plan *q = NULL;
    if (st_plan_parse_yaml(y1, l1, "fuzz/plan-again.yaml", &q) != ST_OK) {
        fprintf(stderr, "a plan that loaded does not load after writing it:\n%s\n---\n%s\n", st_last_error(), y1);
        FZ_ASSERT(0);
    }
    char *y2 = write_yaml(q, &l2);
    FZ_ASSERT(l1 == l2 && !memcmp(y1, y2, l1));
    FILE *null = fopen("/dev/null", "w");
    FZ_ASSERT(null);
    FZ_ASSERT(st_plan_write_json(null, p) == ST_OK);
    fclose(null);
    free(y1);
    free(y2);
    st_plan_free(q);
    st_plan_free(p);
    return 0;
}
