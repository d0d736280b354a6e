/* orchestrator/engine.h — the runtime that runs a model through an ordered
 * list of stages: the transformer block written once over the device ops
 * table (devices/device.h), KV caches, prefill in chunks, decode steps and
 * greedy choice on the device.
 *
 * A stage is a device (ops + st_device_info + st_backend_config) holding a
 * contiguous range of layers, the token embedding on the first stage and the
 * final norm + lm_head on the last. Each stage owns its weights (imported with
 * import_host: zero copy on the CPU), its KV cache (n_seq sequences, or
 * "slots", of n_ctx tokens each) and one workspace sized for the largest pass
 * (a prefill chunk or a decode step of every sequence); consecutive stages are
 * joined by links carrying fp32 activations [n_tok][n_embd]. Everything is
 * allocated in st_engine_init ("plan, reserve, run"): prefill and decode
 * allocate nothing.
 *
 * Sequences: slot 0 is what the single-sequence calls (st_engine_prefill,
 * _decode, _reset, ...) use. The scheduler (orchestrator/session.h) prefills
 * any slot with st_engine_seq_prefill and decodes many slots at once with
 * st_engine_step_begin/_end: one batched forward of one token per sequence
 * (GEMM over the batch, attention of each token over its own sequence).
 * Several such steps ("micro-batches", up to n_micro) may be in flight at
 * once, so with several stages on several devices every stage works on a
 * different micro-batch: begin issues the step without waiting, end waits for
 * its ids.
 *
 * Math (formats.md §4.3): x = embed(id); per layer: h = rmsnorm(x); q,k,v =
 * h W^T (+b); Qwen3 per-head q/k rmsnorm; RoPE (NEOX or NORM by
 * hp.rope_layout, llama3 factors from rope_freqs or computed from hparams);
 * kv_store; causal GQA attention with scale head_dim^-0.5; x += o_proj; h =
 * rmsnorm(x); x += down(silu(gate(h)) * up(h)); then the final norm and
 * lm_head (the token embedding when tied). Residual stream fp32.
 *
 * Errors: every function returns st_status and sets st_last_error(); a
 * failure inside prefill/decode leaves n_past unchanged when it happens before
 * any KV row was written, and otherwise at the positions before the call.
 * Non-finite logits are an error, never a token: the message names the stage
 * and the first layer whose output holds a NaN or an infinity. */
#ifndef STRATA_ENGINE_H
#define STRATA_ENGINE_H

#include "base/base.h"
#include "devices/device.h"
#include "model/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct st_engine st_engine;

/* One stage as the plan describes it. The device info and config are copied. */
struct st_engine_stage_desc {
    const struct st_device_ops *ops;     /* the ops table of the device's backend (st_device_ops_of) */
    struct st_device_info info;          /* which device (kind, index, NUMA node, ...) */
    struct st_backend_config cfg;        /* precision, attention kind, KV dtype, threads */
    int64_t first_layer, last_layer;     /* inclusive range; last < first = no layers */
    bool has_embedding;                  /* must be true exactly on the first stage */
    bool has_output;                     /* final norm + lm_head: exactly the last stage */
    st_link_type link_to_next;           /* link to the next stage (AUTO: local or host) */
    int rank;                            /* MPI rank (process) that runs the stage (orchestrator/mpi.h) */
};

struct st_engine_params {
    int64_t n_ctx;               /* KV cache length in tokens per sequence (every stage) */
    int64_t max_batch_tokens;    /* prefill chunk: tokens per pass (>= 1) */
    int64_t n_seq;               /* sequences (KV slots) held at once; 0 = 1 */
    int n_micro;                 /* decode micro-batches in flight at once; 0 = 1 */
    /* Weight loading progress, or NULL: called after each tensor a stage
     * imports, with the stage, its device's name, and its bytes loaded so far
     * of its total (the tensors it holds). */
    void (*progress)(void *user, int stage, const char *device, uint64_t done, uint64_t total);
    void *progress_user;
    int rank;                    /* this process's MPI rank: stages of other ranks are remote (0 in one process) */
};

/* Builds every stage (backend init, weight import, KV cache, workspace) and
 * the links. The model must outlive the engine. Checks that the stages cover
 * layers 0..n_layer-1 in order, that the first has the embedding and the last
 * the output; errors name the stage and hint at the fix.
 *
 * Several processes (docs/multihost.md): a stage whose rank is not
 * params->rank is remote: no backend, no weights, nothing allocated for it
 * (its desc still names its backend, which answers st_engine_can_sample).
 * Every rank builds the engine from the same plan; st_engine_init makes the
 * local stages and the links between them, st_engine_connect then the
 * endpoints of the links that cross to another rank (collective: every rank
 * calls it in the same order after every rank's init succeeded). Rank 0
 * drives: each pass it starts sends a header to the other ranks, which run
 * st_engine_follow; the last stage's picks and logits come back to rank 0,
 * and so does every rank's status: a stage that fails on another rank is the
 * pass's error, "rank R (host): stage S ...". A transfer that fails (a lost
 * rank, a watchdog timeout) ends every rank (st_mpi_abort). */
st_status st_engine_init(const st_model *m, const struct st_engine_stage_desc *stages, int n_stages,
                         const struct st_engine_params *params, st_engine **out);
/* One stage holding the whole model on one device. */
st_status st_engine_init_single(const st_model *m, const struct st_device_ops *ops,
                                const struct st_device_info *info, const struct st_backend_config *cfg,
                                const struct st_engine_params *params, st_engine **out);
void st_engine_free(st_engine *e);   /* accepts NULL; rank 0 tells the followers the engine is gone */

/* The endpoints of the links between this rank's stages and other ranks'
 * (NCCL communicators are joined here). A no-op in one process. */
st_status st_engine_connect(st_engine *e);
/* On a rank other than 0: runs the passes rank 0 starts until it frees its
 * engine. Returns ST_OK then; a failure to talk to rank 0 ends the run. */
st_status st_engine_follow(st_engine *e);
/* True when stage i runs in this process. */
bool st_engine_stage_local(const st_engine *e, int i);
int st_engine_stage_rank(const st_engine *e, int i);

/* Appends n tokens at positions n_past .. n_past+n-1, in chunks of
 * max_batch_tokens. logits_out (host, may be NULL) receives the logits of the
 * last token (n_vocab floats), or of every token (n x n_vocab) when all_rows.
 * ST_ERR_USAGE when the context would overflow or an id is out of range. */
st_status st_engine_prefill(st_engine *e, const int32_t *ids, int64_t n, float *logits_out, bool all_rows);
/* Prefill, then the greedy next token (argmax on the last stage's device;
 * only the id is downloaded). */
st_status st_engine_prefill_greedy(st_engine *e, const int32_t *ids, int64_t n, int32_t *next_id);
/* One token at position n_past; logits_out (host, n_vocab, may be NULL). */
st_status st_engine_decode(st_engine *e, int32_t id, float *logits_out);
/* One token, then the greedy next token computed on the device. */
st_status st_engine_decode_greedy(st_engine *e, int32_t id, int32_t *next_id);

/* ---- many sequences (the scheduler) ---------------------------------------- */

/* How the next token of a row is chosen on the last stage's device. */
typedef enum st_engine_pick {
    ST_PICK_GREEDY = 0,          /* argmax (lowest id on ties) */
    ST_PICK_SAMPLE,              /* the backend's sample op with `sp` (needs st_engine_can_sample) */
    ST_PICK_LOGITS,              /* no choice: the row's logits come back to the host */
} st_engine_pick;

struct st_engine_row {
    int32_t slot;                /* sequence, 0 .. n_seq - 1 */
    int32_t id;                  /* token fed at position st_engine_seq_len(slot) (step_begin) */
    st_engine_pick pick;
    struct st_sample_params sp;  /* ST_PICK_SAMPLE */
};

int64_t st_engine_n_seq(const st_engine *e);
int st_engine_n_micro(const st_engine *e);
/* True when the last stage's backend can draw under sp on the device
 * (ST_PICK_SAMPLE): it has the sample op, and top_p < 1 comes with 1 <= top_k
 * <= ST_SAMPLE_TOPK_MAX (devices/device.h). sp NULL: whether it samples at all. */
bool st_engine_can_sample(const st_engine *e, const struct st_sample_params *sp);
/* Tokens in the KV cache of a sequence; 0 for a slot outside [0, n_seq). */
int64_t st_engine_seq_len(const st_engine *e, int slot);
/* Keeps the first n tokens of a sequence (0 <= n <= its length). */
st_status st_engine_seq_rewind(st_engine *e, int slot, int64_t n);

/* Appends n tokens to sequence `slot` in prefill chunks and chooses the next
 * token after the last one as `pick` says (row->slot and row->id are ignored):
 * *next_id for GREEDY/SAMPLE, the last row's logits into logits_out (host,
 * n_vocab) for LOGITS (logits_out may be NULL otherwise). pick NULL: no
 * choice (a part of a prompt). Waits for the result. */
st_status st_engine_seq_prefill(st_engine *e, int slot, const int32_t *ids, int64_t n,
                                const struct st_engine_row *pick, int32_t *next_id, float *logits_out);

/* Issues one decode step of micro-batch mb (0 .. n_micro - 1): rows[i].id at
 * the end of sequence rows[i].slot, every row a different slot, 1 <= n <=
 * n_seq. Returns without waiting; every sequence's length grows by one. A
 * micro-batch must be ended before it begins again. */
st_status st_engine_step_begin(st_engine *e, int mb, const struct st_engine_row *rows, int n);
/* Waits for micro-batch mb: next_ids[i] (n of its begin) holds row i's token
 * for GREEDY/SAMPLE rows; for LOGITS rows, logits[i] (may be NULL when no row
 * asks) points to n_vocab floats that stay valid until mb begins again (other
 * entries NULL). busy_ms (may be NULL, n_stages) receives each stage's device
 * time for the step (from its first to its last op). */
st_status st_engine_step_end(st_engine *e, int mb, int32_t *next_ids, const float **logits, double *busy_ms);

/* Forgets the sequence (n_past = 0); the KV memory is kept and overwritten. */
void st_engine_reset(st_engine *e);
/* Keeps only the first n_past tokens of the sequence (0 <= n_past <= current),
 * e.g. to continue a chat from a common prefix. */
st_status st_engine_rewind(st_engine *e, int64_t n_past);
int64_t st_engine_n_past(const st_engine *e);
int64_t st_engine_n_ctx(const st_engine *e);
int64_t st_engine_n_vocab(const st_engine *e);
int st_engine_n_stages(const st_engine *e);
/* Weight bytes a decode step reads on one stage (every matrix once, the
 * lm_head included, one embedding row excluded): for bandwidth reports. */
uint64_t st_engine_stage_weight_bytes(const st_engine *e, int stage);

/* Bytes of weights stage `stage` imported and the wall time of building it
 * (allocations, weights, KV cache, workspace; the last byte on the device). */
st_status st_engine_load_stats(const st_engine *e, int stage, uint64_t *bytes, double *seconds);

/* The kind of the link from stage i to stage i + 1 (AUTO resolved), or AUTO when there is none. */
st_link_type st_engine_link_type(const st_engine *e, int i);

/* ---- timing (`strata bench`) ----------------------------------------------
 * With timing on, every prefill/decode call measures, with the backends'
 * events (devices/device.h event_*; a host clock after a sync where a backend
 * has none), the time of each stage (from before its first op to after its
 * last, the output head and the greedy choice included on the last stage)
 * and of each link (from the moment the sending stage has finished to the
 * arrival on the receiving device). To separate the two across devices the
 * host waits for each sending stage before its link starts: a timed step is a
 * little slower than an untimed one, and the stages never overlap. Enabling
 * creates the events (the only allocation); with timing off the forward pass
 * records nothing and waits for nothing. */
st_status st_engine_set_timing(st_engine *e, bool on);
/* Times of the last prefill/decode call (summed over its prefill chunks), ms:
 * stage_ms (n_stages) and link_ms (n_stages - 1, link i joins stage i to
 * i + 1; may be NULL with one stage). ST_ERR_USAGE when timing is off. */
st_status st_engine_stage_times(const st_engine *e, double *stage_ms, double *link_ms);

/* ---- observation (`strata calibrate`) --------------------------------------
 * A tap is called at fixed points of every layer while tokens run, with the
 * activations in host memory; it may change them in place (e.g. round a
 * matmul's input to fp16 to see what that costs). Only engines whose stages
 * all run on the CPU take a tap. The block logic stays the engine's: the tap
 * sees the same buffers the ops read. */
typedef enum st_engine_tap_point {
    ST_TAP_LAYER_IN = 0,     /* x: the residual stream entering the layer, (n_tok, n_embd) */
    ST_TAP_MATMUL_IN,        /* x: the input of the matmul with weight `role`, (n_tok, w->cols); q/k/v read
                                one buffer, as gate/up do: the tap is called for each matmul */
    ST_TAP_KV_IN,            /* x: k (after RoPE), x2: v, about to enter the KV cache, (n_tok, n_head_kv x head_dim) */
    ST_TAP_LAYER_OUT,        /* x: the residual stream leaving the layer, (n_tok, n_embd) */
} st_engine_tap_point;

struct st_engine_tap {
    st_engine_tap_point point;
    int64_t layer;               /* model layer index */
    enum st_layer_role role;     /* MATMUL_IN: ST_T_WQ, WK, WV, WO, W_GATE, W_UP or W_DOWN */
    const struct st_weight *w;   /* MATMUL_IN: the weight (host memory), else NULL */
    float *x, *x2;               /* host buffers the tap may rewrite; x2 only at KV_IN */
    int64_t n_tok;               /* rows of x (and x2) */
    int64_t width;               /* floats per row */
    int64_t pos0;                /* absolute position of row 0 */
};
/* Returning an error stops the pass: the prefill/decode call returns it. */
typedef st_status (*st_engine_tap_fn)(void *user, const struct st_engine_tap *t);
/* Installs fn with user (fn NULL removes the tap). ST_ERR_UNSUPPORTED when a
 * stage is not on the CPU. */
st_status st_engine_set_tap(st_engine *e, st_engine_tap_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_ENGINE_H */
