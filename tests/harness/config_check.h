/* tests/harness/config_check.h — a deployment YAML given as a string, for the
 * tests of orchestrator/config.c: parsed expecting success (NULL and a failed
 * check otherwise), or expecting ST_ERR_CONFIG with exactly that message. */
#ifndef STRATA_TEST_CONFIG_CHECK_H
#define STRATA_TEST_CONFIG_CHECK_H
#include "check.h"
#include "orchestrator/config.h"

static inline struct st_deploy_config *config_parse_ok(const char *yaml) {
    struct st_deploy_config *cfg = NULL;
    st_status s = st_config_parse(yaml, strlen(yaml), "t.yaml", &cfg);
    CHECK_MSG(s == ST_OK && cfg, "did not parse: %s", st_last_error());
    return cfg;
}

static inline void config_expect_error(const char *yaml, const char *want) {
    struct st_deploy_config *c = NULL;
    st_status s = st_config_parse(yaml, strlen(yaml), "t.yaml", &c);
    CHECK_MSG(s == ST_ERR_CONFIG && c == NULL, "status %s, want config", st_status_name(s));
    CHECK_MSG(strcmp(st_last_error(), want) == 0, "\n  got:  %s\n  want: %s", st_last_error(), want);
    st_config_free(c);
}
#endif
