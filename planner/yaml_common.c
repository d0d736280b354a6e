/* YAML helpers shared by the plan file and the numerics profile (planner/yaml-impl.h). */
#include "planner/planner.h"
#include "planner/yaml-impl.h"

#include <stdarg.h>
#include <string.h>

void pl_yaml_quote(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p < 0x20) fprintf(f, "\\x%02x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

st_status pl_yaml_err(const struct pl_yaml *r, const yaml_node_t *n, const char *key, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    st_error_set(ST_ERR_CONFIG, "%s:%zu:%zu: %s: %s", r->path, n ? n->start_mark.line + 1 : 0,
                 n ? n->start_mark.column + 1 : 0, key, msg);
    st_error_hint("%s", r->hint);
    return ST_ERR_CONFIG;
}

st_status pl_yaml_syntax_err(const struct pl_yaml *r, const yaml_parser_t *parser) {
    st_error_set(ST_ERR_CONFIG, "%s:%zu:%zu: YAML syntax error: %s", r->path, parser->problem_mark.line + 1,
                 parser->problem_mark.column + 1, parser->problem ? parser->problem : "unknown");
    st_error_hint("%s", r->hint);
    return ST_ERR_CONFIG;
}

yaml_node_t *pl_yaml_get(struct pl_yaml *r, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&r->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
            return yaml_document_get_node(&r->doc, p->value);
    }
    return NULL;
}

st_status pl_yaml_scalar(struct pl_yaml *r, yaml_node_t *map, const char *key, const char *path, yaml_node_t **out) {
    *out = pl_yaml_get(r, map, key);
    if (!*out) return pl_yaml_err(r, map, path, "missing key '%s'", key);
    if ((*out)->type != YAML_SCALAR_NODE) return pl_yaml_err(r, *out, path, "'%s' must be a scalar", key);
    return ST_OK;
}

st_status st_yaml_check_limits(const char *path, const char *text, size_t len, size_t max_bytes, const char *hint) {
    if (len > max_bytes) {
        char a[32], b[32];
        st_error_set(ST_ERR_CONFIG, "%s: the file is %s (%zu bytes), more than the %s limit for this file", path,
                     st_format_bytes(len, a, sizeof a), len, st_format_bytes(max_bytes, b, sizeof b));
        return st_error_hint("%s", hint);
    }
    /* depth from the event stream: aliases are events, not copies, so a file
     * that refers to itself cannot make this walk long */
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return st_error_set(ST_ERR_NOMEM, "%s: out of host memory parsing YAML", path);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    st_status s = ST_OK;
    int depth = 0;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) break;   /* the loader reports it with its position */
        yaml_event_type_t t = ev.type;
        if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT) {
            if (++depth > ST_YAML_MAX_DEPTH) {
                st_error_set(ST_ERR_CONFIG, "%s:%zu:%zu: nesting is deeper than %d levels of mappings and lists",
                             path, ev.start_mark.line + 1, ev.start_mark.column + 1, ST_YAML_MAX_DEPTH);
                st_error_hint("%s", hint);
                s = ST_ERR_CONFIG;
            }
        } else if (t == YAML_MAPPING_END_EVENT || t == YAML_SEQUENCE_END_EVENT) {
            depth--;
        }
        yaml_event_delete(&ev);
        if (s || t == YAML_STREAM_END_EVENT) break;
    }
    yaml_parser_delete(&parser);
    return s;
}
