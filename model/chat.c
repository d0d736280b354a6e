/* model/chat.c — chat templates, rendered natively: the same bytes as the
 * models' Jinja templates in transformers' apply_chat_template (without tool
 * definitions). ChatML (Qwen2, Qwen2.5, Qwen3 with <think> handling) and
 * Llama 3 / 3.1. tests/tokenizer/gen_chat.py renders the reference strings
 * with jinja2 from the real templates. */
#include "model/tokenizer.h"

#include <stdlib.h>
#include <string.h>

static const char *const kind_names[ST_CHAT_KIND_COUNT] = {
    "none", "chatml", "qwen2", "qwen2.5", "qwen3", "llama3", "llama3.1",
};

const char *st_chat_kind_name(st_chat_kind k) {
    return k >= 0 && k < ST_CHAT_KIND_COUNT ? kind_names[k] : "?";
}

st_status st_chat_kind_from_name(const char *name, st_chat_kind *out) {
    for (int k = 0; k < ST_CHAT_KIND_COUNT; k++) {
        if (!strcmp(name, kind_names[k])) { *out = (st_chat_kind)k; return ST_OK; }
    }
    if (!strcmp(name, "qwen25")) { *out = ST_CHAT_QWEN25; return ST_OK; }
    if (!strcmp(name, "llama31") || !strcmp(name, "llama3.2")) { *out = ST_CHAT_LLAMA31; return ST_OK; }
    st_error_set(ST_ERR_CONFIG, "unknown chat template '%s'", name);
    const char *near = st_nearest_word(name, kind_names, ST_CHAT_KIND_COUNT);
    if (near) return st_error_hint("did you mean '%s'? known: none, chatml, qwen2, qwen2.5, qwen3, llama3, llama3.1", near);
    return st_error_hint("known: none, chatml, qwen2, qwen2.5, qwen3, llama3, llama3.1");
}

st_chat_kind st_chat_detect(const char *t) {
    if (!t) return ST_CHAT_NONE;
    if (strstr(t, "<|im_start|>")) {
        if (strstr(t, "<think>") || strstr(t, "enable_thinking") || strstr(t, "reasoning_content")) return ST_CHAT_QWEN3;
        if (strstr(t, "You are Qwen, created by Alibaba Cloud")) return ST_CHAT_QWEN25;
        if (strstr(t, "You are a helpful assistant")) return ST_CHAT_QWEN2;
        return ST_CHAT_CHATML;
    }
    if (strstr(t, "<|start_header_id|>")) {
        if (strstr(t, "Cutting Knowledge Date")) return ST_CHAT_LLAMA31;
        return ST_CHAT_LLAMA3;
    }
    return ST_CHAT_NONE;
}

/* ---- output buffer ---------------------------------------------------------- */

struct obuf { char *p; size_t n, cap; bool oom; };

static void put(struct obuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *p = st_realloc(b->p, c, "the chat prompt");
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(struct obuf *b, const char *s) { put(b, s, strlen(s)); }

/* a view of a string */
struct sv { const char *p; size_t n; };
static struct sv sv_of(const char *s) { return (struct sv){s ? s : "", s ? strlen(s) : 0}; }
static void put_sv(struct obuf *b, struct sv v) { put(b, v.p, v.n); }

static struct sv strip_nl_left(struct sv v) {
    while (v.n && v.p[0] == '\n') { v.p++; v.n--; }
    return v;
}
static struct sv strip_nl_right(struct sv v) {
    while (v.n && v.p[v.n - 1] == '\n') v.n--;
    return v;
}

/* Python str.isspace() for the code point that ends at / starts at a position */
static bool py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static size_t cp_at(const char *s, size_t n, uint32_t *c) {
    const uint8_t *u = (const uint8_t *)s;
    if (u[0] < 0x80 || n < 2) { *c = u[0]; return 1; }
    if ((u[0] & 0xE0) == 0xC0) { *c = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F); return 2; }
    if ((u[0] & 0xF0) == 0xE0 && n >= 3) {
        *c = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    }
    if (n >= 4) {
        *c = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
        return 4;
    }
    *c = u[0];
    return 1;
}

/* Jinja's |trim = Python str.strip() */
static struct sv trim(struct sv v) {
    uint32_t c;
    while (v.n) {
        size_t k = cp_at(v.p, v.n, &c);
        if (!py_space(c)) break;
        v.p += k;
        v.n -= k;
    }
    while (v.n) {
        size_t k = 1;
        while (k < v.n && k < 4 && ((uint8_t)v.p[v.n - k] & 0xC0) == 0x80) k++;
        cp_at(v.p + v.n - k, k, &c);
        if (!py_space(c)) break;
        v.n -= k;
    }
    return v;
}

static struct sv find(struct sv h, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= h.n; i++)
        if (!memcmp(h.p + i, needle, n)) return (struct sv){h.p + i, n};
    return (struct sv){NULL, 0};
}

static struct sv rfind(struct sv h, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = h.n >= n ? h.n - n + 1 : 0; i-- > 0;)
        if (!memcmp(h.p + i, needle, n)) return (struct sv){h.p + i, n};
    return (struct sv){NULL, 0};
}

static bool starts_with(struct sv v, const char *s) { size_t n = strlen(s); return v.n >= n && !memcmp(v.p, s, n); }
static bool ends_with(struct sv v, const char *s) { size_t n = strlen(s); return v.n >= n && !memcmp(v.p + v.n - n, s, n); }
static bool role_is(const struct st_chat_msg *m, const char *r) { return m->role && !strcmp(m->role, r); }

static st_status check_roles(const struct st_chat_msg *m, size_t n, const char *const *ok, size_t n_ok, st_chat_kind k) {
    for (size_t i = 0; i < n; i++) {
        bool good = false;
        for (size_t j = 0; j < n_ok; j++) good |= role_is(&m[i], ok[j]);
        if (!good) {
            st_error_set(ST_ERR_USAGE, "chat message %zu has role '%s', which the %s template does not render", i,
                         m[i].role ? m[i].role : "(null)", st_chat_kind_name(k));
            return st_error_hint("use system, user or assistant (and tool for the Qwen templates)");
        }
    }
    return ST_OK;
}

/* ChatML: <|im_start|>{role}\n{content}<|im_end|>\n */
static void chatml_turn(struct obuf *b, const char *role, struct sv content) {
    puts_(b, "<|im_start|>");
    puts_(b, role);
    puts_(b, "\n");
    put_sv(b, content);
    puts_(b, "<|im_end|>\n");
}

/* tool results (Qwen2.5 / Qwen3): consecutive tool messages share one user turn */
static void chatml_tool(struct obuf *b, const struct st_chat_msg *m, size_t n, size_t i) {
    if (i == 0 || !role_is(&m[i - 1], "tool")) puts_(b, "<|im_start|>user");
    puts_(b, "\n<tool_response>\n");
    puts_(b, m[i].content ? m[i].content : "");
    puts_(b, "\n</tool_response>");
    if (i + 1 == n || !role_is(&m[i + 1], "tool")) puts_(b, "<|im_end|>\n");
}

static void render_qwen3(struct obuf *b, const struct st_chat_msg *m, size_t n, bool gen, bool thinking) {
    if (n && role_is(&m[0], "system")) chatml_turn(b, "system", sv_of(m[0].content));
    /* index of the last user query that is not a tool response */
    size_t last_query = n ? n - 1 : 0;
    for (size_t k = n; k-- > 0;) {
        struct sv c = sv_of(m[k].content);
        if (role_is(&m[k], "user") && !(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) {
            last_query = k;
            break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (role_is(&m[i], "user") || (role_is(&m[i], "system") && i > 0)) {
            chatml_turn(b, m[i].role, sv_of(m[i].content));
        } else if (role_is(&m[i], "assistant")) {
            struct sv content = sv_of(m[i].content), reasoning = {"", 0};
            if (m[i].reasoning_content) {
                reasoning = sv_of(m[i].reasoning_content);
            } else {
                struct sv close = find(content, "</think>");
                if (close.p) {
                    struct sv before = {content.p, (size_t)(close.p - content.p)};
                    struct sv last = rfind(content, "</think>");
                    struct sv after = {last.p + last.n, content.n - (size_t)(last.p + last.n - content.p)};
                    struct sv open = rfind(strip_nl_right(before), "<think>");
                    before = strip_nl_right(before);
                    if (open.p) before = (struct sv){open.p + open.n, before.n - (size_t)(open.p + open.n - before.p)};
                    reasoning = strip_nl_left(before);
                    content = strip_nl_left(after);
                }
            }
            puts_(b, "<|im_start|>assistant\n");
            if (i > last_query && (i + 1 == n || reasoning.n)) {
                puts_(b, "<think>\n");
                put_sv(b, strip_nl_right(strip_nl_left(reasoning)));
                puts_(b, "\n</think>\n\n");
                put_sv(b, strip_nl_left(content));
            } else {
                put_sv(b, content);
            }
            puts_(b, "<|im_end|>\n");
        } else if (role_is(&m[i], "tool")) {
            chatml_tool(b, m, n, i);
        }
    }
    if (gen) {
        puts_(b, "<|im_start|>assistant\n");
        if (!thinking) puts_(b, "<think>\n\n</think>\n\n");
    }
}

static void render_chatml(struct obuf *b, st_chat_kind k, const struct st_chat_msg *m, size_t n, bool gen) {
    bool has_system = n && role_is(&m[0], "system");
    if (k == ST_CHAT_QWEN25) {
        if (has_system) chatml_turn(b, "system", sv_of(m[0].content));
        else puts_(b, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n");
        for (size_t i = 0; i < n; i++) {
            if (role_is(&m[i], "tool")) chatml_tool(b, m, n, i);
            else if (!(i == 0 && has_system)) chatml_turn(b, m[i].role, sv_of(m[i].content));
        }
    } else {
        /* Qwen2 and plain ChatML: every message as a turn; Qwen2 adds a default system turn */
        if (k == ST_CHAT_QWEN2 && n && !has_system)
            puts_(b, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
        for (size_t i = 0; i < n; i++) chatml_turn(b, m[i].role, sv_of(m[i].content));
    }
    if (gen) puts_(b, "<|im_start|>assistant\n");
}

static void llama3_turn(struct obuf *b, const char *role, struct sv content) {
    puts_(b, "<|start_header_id|>");
    puts_(b, role);
    puts_(b, "<|end_header_id|>\n\n");
    put_sv(b, trim(content));
    puts_(b, "<|eot_id|>");
}

static void render_llama3(struct obuf *b, st_chat_kind k, const struct st_chat_msg *m, size_t n, bool gen) {
    if (k == ST_CHAT_LLAMA3) {
        for (size_t i = 0; i < n; i++) {
            if (i == 0) puts_(b, "<|begin_of_text|>");
            llama3_turn(b, m[i].role, sv_of(m[i].content));
        }
    } else {
        size_t start = 0;
        struct sv system = {"", 0};
        if (n && role_is(&m[0], "system")) { system = trim(sv_of(m[0].content)); start = 1; }
        puts_(b, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                 "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
        put_sv(b, system);
        puts_(b, "<|eot_id|>");
        for (size_t i = start; i < n; i++) llama3_turn(b, m[i].role, sv_of(m[i].content));
    }
    if (gen) puts_(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

st_status st_chat_render(st_chat_kind kind, const struct st_chat_msg *msgs, size_t n_msgs,
                         bool add_generation_prompt, bool enable_thinking, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len) *out_len = 0;
    static const char *const qwen_roles[] = {"system", "user", "assistant", "tool"};
    static const char *const plain_roles[] = {"system", "user", "assistant"};
    st_status s;
    struct obuf b = {0};
    for (size_t i = 0; i < n_msgs; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            st_error_set(ST_ERR_USAGE, "chat message %zu has no %s", i, msgs[i].role ? "content" : "role");
            return st_error_hint("every message needs a role and a content string (it may be empty)");
        }
    }
    switch (kind) {
    case ST_CHAT_NONE:
        if (n_msgs != 1 || !role_is(&msgs[0], "user")) {
            st_error_set(ST_ERR_USAGE, "this model has no chat template: only a single user prompt can be rendered");
            return st_error_hint("set the chat template in the deployment YAML (e.g. chat_template: chatml), or pass a plain prompt");
        }
        puts_(&b, msgs[0].content);
        break;
    case ST_CHAT_QWEN3:
        if ((s = check_roles(msgs, n_msgs, qwen_roles, 4, kind))) return s;
        render_qwen3(&b, msgs, n_msgs, add_generation_prompt, enable_thinking);
        break;
    case ST_CHAT_QWEN25:
        if ((s = check_roles(msgs, n_msgs, qwen_roles, 4, kind))) return s;
        render_chatml(&b, kind, msgs, n_msgs, add_generation_prompt);
        break;
    case ST_CHAT_QWEN2:
    case ST_CHAT_CHATML:
        if ((s = check_roles(msgs, n_msgs, plain_roles, 3, kind))) return s;
        render_chatml(&b, kind, msgs, n_msgs, add_generation_prompt);
        break;
    case ST_CHAT_LLAMA3:
    case ST_CHAT_LLAMA31:
        if ((s = check_roles(msgs, n_msgs, plain_roles, 3, kind))) return s;
        render_llama3(&b, kind, msgs, n_msgs, add_generation_prompt);
        break;
    default:
        return st_error_set(ST_ERR_USAGE, "unknown chat template kind %d", (int)kind);
    }
    if (!b.p && !b.oom) puts_(&b, "");
    if (b.oom) {
        free(b.p);
        return st_error_set(ST_ERR_NOMEM, "out of memory rendering the chat prompt");
    }
    *out = b.p;
    if (out_len) *out_len = b.n;
    return ST_OK;
}
