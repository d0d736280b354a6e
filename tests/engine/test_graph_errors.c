/* The engine's greedy decode graph over a backend that can capture: the CPU
 * backend with stand-in capture/replay entries (replay re-runs nothing, so
 * only the error paths are exercised here; tests/gpu checks the real graphs).
 * When an operation fails while a step is being captured, the capture must
 * still be ended, and the error the user sees must be the operation's, not
 * the follow-on failure of ending an invalidated capture. */
#include "check.h"
#include "devices/device.h"
#include "model/model.h"
#include "orchestrator/engine.h"

#include <string.h>

static struct st_device_ops g_ops;
static bool g_capturing, g_fail_argmax_in_capture;
static int g_begins, g_ends;

static st_status fake_capture_begin(st_backend *be) {
    (void)be;
    g_capturing = true;
    g_begins++;
    return ST_OK;
}

static st_status fake_capture_end(st_backend *be) {
    (void)be;
    g_capturing = false;
    g_ends++;
    return st_error_set(ST_ERR_DEVICE, "stand-in: capture invalidated");
}

static st_status fake_replay(st_backend *be) {
    (void)be;
    return ST_OK;
}

static st_status failing_argmax(st_backend *be, const float *x, int64_t n, int32_t *out) {
    if (g_capturing && g_fail_argmax_in_capture) return st_error_set(ST_ERR_DEVICE, "stand-in: argmax failed");
    return st_device_ops_cpu()->argmax(be, x, n, out);
}

int main(void) {
    st_model *m = NULL;
    CHECK_OK(st_model_open("tests/fixtures/models/qwen2-tiny/hf", &m));
    if (!m) return st_test_finish("engine_graph_errors");
    g_ops = *st_device_ops_cpu();
    g_ops.capture_begin = fake_capture_begin;
    g_ops.capture_end = fake_capture_end;
    g_ops.replay = fake_replay;
    g_ops.argmax = failing_argmax;
    struct st_backend_config cfg = {.n_threads = 1, .kv_dtype = ST_DTYPE_F32};
    struct st_engine_params prm = {.n_ctx = 16, .max_batch_tokens = 8};
    st_engine *e = NULL;
    CHECK_OK(st_engine_init_single(m, &g_ops, NULL, &cfg, &prm, &e));
    if (e) {
        const int32_t prompt[3] = {1, 2, 3};
        int32_t next = -1;
        CHECK_OK(st_engine_prefill_greedy(e, prompt, 3, &next));   /* 3 tokens: eager */
        CHECK_OK(st_engine_decode_greedy(e, next, &next));         /* first step: eager */
        CHECK_MSG(g_begins == 0, "no capture before the second decode step (got %d)", g_begins);
        g_fail_argmax_in_capture = true;
        CHECK_ERR(st_engine_decode_greedy(e, next, &next), ST_ERR_DEVICE, "stand-in: argmax failed");
        CHECK_MSG(g_begins == 1 && g_ends == 1, "the failed capture is ended (begin %d, end %d)", g_begins, g_ends);
        CHECK_MSG(!g_capturing, "no capture left open");
        st_engine_free(e);
    }
    st_model_free(m);
    return st_test_finish("engine_graph_errors");
}
