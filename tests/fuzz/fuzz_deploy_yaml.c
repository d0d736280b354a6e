/* Fuzz target: the deployment config (deploy.yaml), as `strata plan -c`,
 * `generate -c` and `bench -c` read it. A config that loads must name its
 * model and at least one device, with manual stages contiguous from layer 0. */
#include "fuzz.h"
#include "orchestrator/config.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct st_deploy_config *cfg = NULL;
    if (st_config_parse((const char *)data, size, "fuzz/deploy.yaml", &cfg) == ST_OK) {
        FZ_ASSERT(cfg->n_devices >= 1 && cfg->n_devices <= ST_CONFIG_MAX_DEVICES);
        FZ_ASSERT((cfg->model.path != NULL) != (cfg->model.preset != NULL));
        FZ_ASSERT(cfg->context >= 1 && cfg->batch >= 1 && cfg->prefill_chunk >= 1);
        int64_t next = 0;
        for (int i = 0; i < cfg->placement.n_manual; i++) {
            const struct st_config_stage *s = &cfg->placement.manual[i];
            FZ_ASSERT(s->first_layer == next && s->last_layer >= s->first_layer);
            FZ_ASSERT(s->device >= 0 && s->device < cfg->n_devices);
            next = s->last_layer + 1;
        }
        for (int i = 0; i < cfg->n_devices; i++) FZ_ASSERT(st_config_device_label(&cfg->devices[i])[0]);
        st_config_free(cfg);
    } else {
        const char *msg = st_last_error();
        FZ_ASSERT(msg[0]);
    }
    return 0;
}
