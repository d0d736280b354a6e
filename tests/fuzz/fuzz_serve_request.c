/* Fuzz target: a request body from a stranger, read by the server's own code
 * (st_server_request_read, orchestrator/server.h: the JSON, every field's
 * type and range, the messages through a chat template, the prompt through
 * the bundled model's tokenizer, the context limit), exactly as `strata
 * serve` reads POST /v1/chat/completions and /v1/completions, without a
 * socket or an engine.
 *
 * Input: the first byte picks the endpoint (bit 0: chat) and the chat
 * template (bits 1-3: none, chatml, qwen2, qwen2.5, qwen3, llama3, llama3.1);
 * the rest is the body. Properties:
 *   - 200, 400 or 404 (500 is out of memory, which no input justifies);
 *   - accepted: 1..n_ctx prompt ids inside the vocabulary, every setting in
 *     its documented range, stop strings 1..ST_GEN_STOP_MAX_BYTES bytes, the
 *     echo text present when asked for;
 *   - refused: a non-empty message that is valid UTF-8 (it becomes a JSON
 *     string in the error object, which jansson refuses otherwise) and names
 *     a field where one is at fault; 404 only for an unknown model;
 *   - reading the same body twice gives the same answer. */
#include "fuzz.h"
#include "model/tokenizer.h"
#include "orchestrator/sampler.h"
#include "orchestrator/server.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#define N_CTX 256

static st_tokenizer_t *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *path = STRATA_SOURCE_DIR "/models/tiny-kjv/tokenizer.json";
    if (st_tokenizer_load_json(path, &g_tok) != ST_OK) {
        fprintf(stderr, "fuzz_serve_request: %s\n", st_last_error());
        abort();
    }
    return 0;
}

static bool valid_message(const char *s) {
    size_t n = strnlen(s, 512);
    return n > 0 && n < 512 && st_utf8_valid(s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) LLVMFuzzerInitialize(NULL, NULL);
    if (size < 1 || size > 1 << 16) return 0;
    const bool chat = data[0] & 1;
    struct st_server_request_ctx x = {
        .model_name = "tiny-kjv",
        .default_max_tokens = 16,
        .tok = g_tok,
        .chat_kind = (st_chat_kind)(((data[0] >> 1) & 7) % ST_CHAT_KIND_COUNT),
        .n_vocab = st_tokenizer_n_vocab(g_tok),
        .n_ctx = N_CTX,
    };
    st_sampler_params_default(&x.sampler);
    const char *body = (const char *)data + 1;
    const size_t len = size - 1;

    struct st_server_request q;
    struct st_server_request_error e;
    unsigned status = st_server_request_read(&x, chat, body, len, &q, &e);
    FZ_ASSERT(status == 200 || status == 400 || status == 404);
    if (status == 200) {
        FZ_ASSERT(q.n_ids >= 1 && q.n_ids <= N_CTX && q.ids);
        for (int64_t i = 0; i < q.n_ids; i++) FZ_ASSERT(q.ids[i] >= 0 && q.ids[i] < x.n_vocab);
        const struct st_sampler_params *sp = &q.gp.sp;
        FZ_ASSERT(isfinite(sp->temperature) && sp->temperature >= 0 && sp->temperature <= 2);
        FZ_ASSERT(sp->top_p > 0 && sp->top_p <= 1);
        FZ_ASSERT(sp->top_k >= 0 && sp->min_p >= 0 && sp->min_p <= 1);
        FZ_ASSERT(sp->presence_penalty >= -2 && sp->presence_penalty <= 2);
        FZ_ASSERT(sp->frequency_penalty >= -2 && sp->frequency_penalty <= 2);
        FZ_ASSERT(sp->repeat_penalty > 0 && sp->repeat_penalty <= 10);
        FZ_ASSERT(q.gp.max_tokens >= 1 && q.gp.max_tokens <= (1LL << 31));
        FZ_ASSERT(q.gp.n_stop >= 0 && q.gp.n_stop <= ST_GEN_MAX_STOP);
        for (int k = 0; k < q.gp.n_stop; k++) {
            FZ_ASSERT(q.gp.stop[k] == q.stops[k]);
            size_t l = strlen(q.stops[k]);
            FZ_ASSERT(l >= 1 && l <= ST_GEN_STOP_MAX_BYTES);
        }
        FZ_ASSERT(!q.echo || q.echo_text);
        FZ_ASSERT(q.gp.top_logprobs >= 0 && q.gp.top_logprobs <= ST_GEN_MAX_TOP_LOGPROBS);
        FZ_ASSERT(q.gp.n_bias >= 0 && q.gp.n_bias <= ST_SAMPLER_MAX_BIAS && q.gp.bias_ids == q.bias_ids);
        for (int k = 0; k < q.gp.n_bias; k++) {   /* distinct ids in the vocabulary, biases in [-100, 100] */
            FZ_ASSERT(q.bias_ids[k] >= 0 && q.bias_ids[k] < x.n_vocab && fabsf(q.bias[k]) <= 100.0f);
            for (int i = 0; i < k; i++) FZ_ASSERT(q.bias_ids[i] != q.bias_ids[k]);
        }
    } else {
        FZ_ASSERT(valid_message(e.msg));
        FZ_ASSERT(!q.ids && !q.echo_text && q.gp.n_stop == 0 && !q.bias_ids && q.gp.n_bias == 0);
        FZ_ASSERT(status != 404 || !strcmp(e.param, "model"));
        FZ_ASSERT(strnlen(e.param, sizeof e.param) < sizeof e.param && st_utf8_valid(e.param, strlen(e.param)));
        /* the error object the server sends can be built */
        json_t *m = json_string(e.msg);
        FZ_ASSERT(m);
        json_decref(m);
    }

    /* the same body again: the same answer */
    struct st_server_request q2;
    struct st_server_request_error e2;
    FZ_ASSERT(st_server_request_read(&x, chat, body, len, &q2, &e2) == status);
    if (status == 200) {
        FZ_ASSERT(q2.n_ids == q.n_ids && !memcmp(q2.ids, q.ids, (size_t)q.n_ids * sizeof *q.ids));
        FZ_ASSERT(q2.stream == q.stream && q2.gp.max_tokens == q.gp.max_tokens && q2.gp.n_stop == q.gp.n_stop);
    } else {
        FZ_ASSERT(!strcmp(e2.msg, e.msg) && !strcmp(e2.param, e.param) && !strcmp(e2.code, e.code));
    }
    st_server_request_clear(&q2);
    st_server_request_clear(&q);
    return 0;
}
