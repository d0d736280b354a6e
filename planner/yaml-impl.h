/* planner/yaml-impl.h — the YAML pieces that the plan file (planner/yaml.c)
 * and the numerics profile (planner/numerics.c) share: quoted scalars on the
 * way out, errors with file:line:column on the way in. */
#ifndef STRATA_PLANNER_YAML_IMPL_H
#define STRATA_PLANNER_YAML_IMPL_H

#include "base/base.h"

#include <stdio.h>
#include <yaml.h>

/* Writes s as a double-quoted YAML scalar. */
void pl_yaml_quote(FILE *f, const char *s);

/* A loaded document and what its errors name. */
struct pl_yaml {
    const char *path;            /* the file, first in every message */
    const char *hint;            /* the hint: line every error carries */
    yaml_document_t doc;
};

/* Sets ST_ERR_CONFIG "path:line:column: key: message" at node n (0:0 when n
 * is NULL) with r->hint; returns ST_ERR_CONFIG. */
st_status pl_yaml_err(const struct pl_yaml *r, const yaml_node_t *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sets ST_ERR_CONFIG "path:line:column: YAML syntax error: problem" for a
 * parser that failed to load, with r->hint; returns ST_ERR_CONFIG. */
st_status pl_yaml_syntax_err(const struct pl_yaml *r, const yaml_parser_t *parser);

/* The value of key in map; NULL when map is not a mapping or lacks key. */
yaml_node_t *pl_yaml_get(struct pl_yaml *r, yaml_node_t *map, const char *key);

/* The scalar value node of key in map; an error naming path when the key is
 * missing or not a scalar. */
st_status pl_yaml_scalar(struct pl_yaml *r, yaml_node_t *map, const char *key, const char *path, yaml_node_t **out);

#endif
