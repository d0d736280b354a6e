/* Chat templates: every rendering in chat_expected.json (jinja2 on the real
 * Qwen3 template and on transcriptions of the Qwen2/2.5 and Llama 3/3.1
 * templates, tests/tokenizer/gen_chat.py) must come out byte for byte;
 * template detection from Jinja text, names, and the error messages. */
#include <jansson.h>

#include "check.h"
#include "model/tokenizer.h"

static void test_renderings(void) {
    json_error_t e;
    json_t *root = json_load_file("tests/tokenizer/chat_expected.json", 0, &e);
    CHECK_MSG(root && json_is_array(root), "chat_expected.json: %s", root ? "" : e.text);
    if (!root) return;
    size_t i, bad = 0, n = 0;
    json_t *c;
    json_array_foreach(root, i, c) {
        st_chat_kind kind;
        CHECK_OK(st_chat_kind_from_name(json_string_value(json_object_get(c, "kind")), &kind));
        json_t *ms = json_object_get(c, "messages"), *m;
        size_t k, nm = json_array_size(ms);
        struct st_chat_msg msgs[16];
        json_array_foreach(ms, k, m) {
            msgs[k].role = json_string_value(json_object_get(m, "role"));
            msgs[k].content = json_string_value(json_object_get(m, "content"));
            msgs[k].reasoning_content = json_string_value(json_object_get(m, "reasoning_content"));
        }
        char *out = NULL;
        size_t len = 0;
        st_status s = st_chat_render(kind, msgs, nm, json_is_true(json_object_get(c, "add_generation_prompt")),
                                     json_is_true(json_object_get(c, "enable_thinking")), &out, &len);
        const char *want = json_string_value(json_object_get(c, "text"));
        if (s || len != strlen(want) || memcmp(out, want, len)) {
            if (bad++ < 4)
                fprintf(stderr, "%s case %lld gen=%d: got\n%s\n--- want\n%s\n---\n", st_chat_kind_name(kind),
                        (long long)json_integer_value(json_object_get(c, "case")),
                        json_is_true(json_object_get(c, "add_generation_prompt")), out ? out : st_last_error(), want);
        }
        free(out);
        n++;
    }
    CHECK_MSG(n >= 100 && bad == 0, "%zu of %zu chat renderings differ from jinja2", bad, n);
    json_decref(root);
}

static void test_detect(void) {
    json_error_t e;
    json_t *cfg = json_load_file("tests/fixtures/tokenizers/qwen3/tokenizer_config.json", 0, &e);
    CHECK(cfg != NULL);
    CHECK(st_chat_detect(json_string_value(json_object_get(cfg, "chat_template"))) == ST_CHAT_QWEN3);
    json_decref(cfg);
    CHECK(st_chat_detect("{{ '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}") == ST_CHAT_QWEN25);
    CHECK(st_chat_detect("{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}") == ST_CHAT_QWEN2);
    CHECK(st_chat_detect("{{'<|im_start|>' + message['role'] }}") == ST_CHAT_CHATML);
    CHECK(st_chat_detect("{% set content = '<|start_header_id|>' + message['role'] %}") == ST_CHAT_LLAMA3);
    CHECK(st_chat_detect("{{- \"<|start_header_id|>system\" }}{{- \"Cutting Knowledge Date: December 2023\\n\" }}") == ST_CHAT_LLAMA31);
    CHECK(st_chat_detect("[INST] {{ message }} [/INST]") == ST_CHAT_NONE);
    CHECK(st_chat_detect(NULL) == ST_CHAT_NONE);

    st_chat_kind k = ST_CHAT_NONE;
    CHECK_OK(st_chat_kind_from_name("qwen2.5", &k));
    CHECK(k == ST_CHAT_QWEN25);
    for (int i = 0; i < ST_CHAT_KIND_COUNT; i++) {
        CHECK_OK(st_chat_kind_from_name(st_chat_kind_name((st_chat_kind)i), &k));
        CHECK(k == (st_chat_kind)i);
    }
    CHECK_ERR(st_chat_kind_from_name("qwen", &k), ST_ERR_CONFIG, "unknown chat template 'qwen'");
    CHECK_ERR(st_chat_kind_from_name("lama3", &k), ST_ERR_CONFIG, "did you mean 'llama3'?");
}

static void test_errors_and_tokens(void) {
    char *out = NULL;
    size_t len;
    struct st_chat_msg bad_role[] = {{"user", "hi", NULL}, {"function", "x", NULL}};
    CHECK_ERR(st_chat_render(ST_CHAT_LLAMA3, bad_role, 2, true, true, &out, &len), ST_ERR_USAGE,
              "chat message 1 has role 'function'");
    struct st_chat_msg no_content[] = {{"user", NULL, NULL}};
    CHECK_ERR(st_chat_render(ST_CHAT_QWEN3, no_content, 1, true, true, &out, &len), ST_ERR_USAGE, "has no content");
    struct st_chat_msg two[] = {{"system", "s", NULL}, {"user", "u", NULL}};
    CHECK_ERR(st_chat_render(ST_CHAT_NONE, two, 2, true, true, &out, &len), ST_ERR_USAGE, "no chat template");
    CHECK_OK(st_chat_render(ST_CHAT_NONE, two + 1, 1, true, true, &out, &len));
    CHECK(out && len == 1 && !strcmp(out, "u"));
    free(out);

    /* the rendered Qwen3 prompt tokenizes with single special tokens, and the
     * generation stops at <|im_end|> or <|endoftext|> */
    st_tokenizer_t *tok = NULL;
    CHECK_OK(st_tokenizer_load_json("tests/fixtures/tokenizers/qwen3", &tok));
    if (!tok) return;
    struct st_chat_msg m[] = {{"user", "Hi", NULL}};
    CHECK_OK(st_chat_render(ST_CHAT_QWEN3, m, 1, true, false, &out, &len));
    int32_t ids[64];
    int64_t n = 0;
    CHECK_OK(st_tokenizer_encode(tok, out, len, ST_TOK_DEFAULT, ids, 64, &n));
    /* <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n (HF ids) */
    static const int32_t want[] = {151644, 872, 198, 13048, 151645, 198, 151644, 77091, 198, 151667, 271, 151668, 271};
    CHECK(n == (int64_t)ST_ARRAY_LEN(want) && !memcmp(ids, want, sizeof want));
    free(out);
    int64_t ns;
    const int32_t *stops = st_tokenizer_stop_ids(tok, &ns);
    CHECK(ns == 2 && stops[0] == 151643 && stops[1] == 151645);
    CHECK(st_tokenizer_is_special(tok, 151645) && !st_tokenizer_is_special(tok, 151667));
    CHECK(st_tokenizer_is_added(tok, 151667) && !st_tokenizer_is_added(tok, 872));
    CHECK_ERR(st_tokenizer_add_stop(tok, 999999), ST_ERR_CONFIG, "stop token id 999999 is outside the vocabulary");
    CHECK_OK(st_tokenizer_add_stop(tok, 151668));
    CHECK(st_tokenizer_is_stop(tok, 151668));
    st_tokenizer_free(tok);
}

int main(void) {
    test_renderings();
    test_detect();
    test_errors_and_tokens();
    return st_test_finish("chat");
}
