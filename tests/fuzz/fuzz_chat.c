/* Fuzz target: chat templates — the model's Jinja template text (which
 * st_chat_detect classifies), a template name as a config or flag gives it,
 * and a conversation rendered in every format. Parts split on FZ_SEPARATOR:
 * flags (first byte: bit 0 add_generation_prompt, bit 1 enable_thinking),
 * the Jinja text, a template name, then one part per message: "role\n
 * content", where content may carry "\x01reasoning". The rendering must be
 * NUL-free text of the length it reports, and hold every message's content. */
#include "fuzz.h"
#include "model/tokenizer.h"

#include <stdbool.h>
#include <string.h>

#define MAX_MSGS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part;
    size_t len;
    char *texts[3 + MAX_MSGS] = {0};
    int n = 0;
    while (n < 3 + MAX_MSGS && fz_next_part(&data, &size, &part, &len)) {
        /* C strings: the first NUL ends a part, as it would in a real string */
        texts[n++] = fz_strndup(part, len);
    }
    unsigned flags = n > 0 && texts[0][0] ? (unsigned char)texts[0][0] : 0;
    st_chat_kind detected = st_chat_detect(n > 1 ? texts[1] : NULL);
    FZ_ASSERT(detected >= 0 && detected < ST_CHAT_KIND_COUNT);
    st_chat_kind named = ST_CHAT_NONE;
    if (n > 2 && st_chat_kind_from_name(texts[2], &named) == ST_OK) FZ_ASSERT(!strcmp(st_chat_kind_name(named), texts[2]) ||
                                                                         named == ST_CHAT_QWEN25 || named == ST_CHAT_LLAMA31);
    struct st_chat_msg msgs[MAX_MSGS];
    size_t n_msgs = 0;
    for (int i = 3; i < n; i++) {
        char *role = texts[i], *nl = strchr(role, '\n');
        char *content = nl ? (*nl = 0, nl + 1) : role + strlen(role);
        char *reason = strchr(content, '\x01');
        if (reason) *reason++ = 0;
        msgs[n_msgs++] = (struct st_chat_msg){.role = role, .content = content, .reasoning_content = reason};
    }
    for (int k = 0; k < ST_CHAT_KIND_COUNT; k++) {
        char *out = NULL;
        size_t out_len = 0;
        if (st_chat_render((st_chat_kind)k, msgs, n_msgs, flags & 1, flags & 2, &out, &out_len) == ST_OK) {
            FZ_ASSERT(out && strlen(out) == out_len);
            if (k != ST_CHAT_NONE) {
                for (size_t i = 0; i < n_msgs; i++) {
                    /* Qwen3 drops reasoning of earlier turns and trims; content always stays */
                    const char *c = msgs[i].content;
                    bool plain = c[0] != 0 && strlen(c) < 64;   /* no space to trim, no tag to strip */
                    for (const char *q = c; *q && plain; q++) plain = *q > ' ' && *q < 0x7f && *q != '<';
                    if (plain) FZ_ASSERT(strstr(out, c));
                }
            }
        } else {
            FZ_ASSERT(out == NULL || out_len == 0);
            FZ_ASSERT(st_last_error()[0]);
        }
        free(out);
    }
    for (int i = 0; i < n; i++) free(texts[i]);
    return 0;
}
