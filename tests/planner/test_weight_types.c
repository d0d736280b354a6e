/* The planner and the backends' weight types (caps.weight_dtypes): a device is
 * never given a tensor whose stored dtype its backend does not run — a block
 * matrix of one of its layers, the embedding on a first stage, the lm_head on
 * a last one — and when no device runs some tensor, st_plan_make fails before
 * planning with the tensor's name (GGUF and Hugging Face names), its dtype,
 * the devices considered with what each runs, and a hint naming a file type
 * that would run. What a stage may hold is checked here from the model's own
 * dtype table, not through the planner's helpers; every assertion on a
 * restricted device is paired with the same plan unrestricted, where that
 * device does take such layers (so the restriction is what moved them). The
 * plan's JSON (parsed back with jansson) and YAML file carry the weight
 * types; a plan file written before them reads as the backend's declaration. */
#include "check.h"
#include "planner/planner.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define B(t) (1u << (t))
static const uint32_t NO_QK = B(ST_DTYPE_F32) | B(ST_DTYPE_F16) | B(ST_DTYPE_BF16) | B(ST_DTYPE_Q8_0);

/* qwen2.5-7b stored as q8_0 (every matrix, the embedding and the lm_head), then layers [k0, k1] get a
 * q4_k ffn_down (and attn_v: two tensors per layer) */
static void model_q8_with_q4k(struct st_plan_model *m, int64_t k0, int64_t k1) {
    CHECK_OK(st_plan_model_from_preset("qwen2.5-7b", "q8_0", m));
    for (int64_t l = k0; l <= k1; l++) {
        m->mat_dtypes[l * ST_PLAN_N_MATRICES + 6] = ST_DTYPE_Q4_K;   /* down */
        m->mat_dtypes[l * ST_PLAN_N_MATRICES + 2] = ST_DTYPE_Q4_K;   /* v */
    }
    m->matrix_dtype = ST_DTYPE_COUNT;
}

static bool has_q4k(const struct st_plan_model *m, int64_t l) {
    for (int k = 0; k < ST_PLAN_N_MATRICES; k++)
        if (m->mat_dtypes[l * ST_PLAN_N_MATRICES + k] == ST_DTYPE_Q4_K) return true;
    return false;
}

static void card(struct st_plan_device *d, const char *key, const char *label, uint32_t dtypes) {
    struct st_device_info in;
    CHECK_OK(st_catalog_lookup(key, &in));
    CHECK(in.caps.weight_dtypes == (1u << ST_DTYPE_COUNT) - 1);   /* a CUDA card runs every dtype */
    if (dtypes) in.caps.weight_dtypes = dtypes;
    st_plan_device_init(d, &in);
    snprintf(d->label, sizeof d->label, "%s", label);
}

/* Layers on device dev in plan p: how many, and how many of them hold q4_k. */
static void count_on(const st_plan *p, const struct st_plan_model *m, int dev, int *layers, int *q4k) {
    *layers = *q4k = 0;
    for (int s = 0; s < p->n_stages; s++) {
        if (p->stages[s].device != dev) continue;
        for (int64_t l = p->stages[s].first; l <= p->stages[s].last; l++) {
            (*layers)++;
            *q4k += has_q4k(m, l);
        }
    }
}

static bool reason_has(const st_plan *p, const char *needle) {
    for (int i = 0; i < p->n_reasons; i++)
        if (strstr(p->reasons[i], needle)) return true;
    return false;
}

/* An H100 (fast, 80 GB) that runs no q4_k beside an RTX 3090 that runs everything: the H100 holds
 * only q4_k-free layers; unrestricted it would hold them all. Both objectives. */
static void never_given(void) {
    struct st_plan_model m;
    model_q8_with_q4k(&m, 14, 27);          /* the second half holds q4_k */
    struct st_plan_device d[2];
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    r.context = 4096;
    for (int obj = 0; obj < 2; obj++) {
        r.objective = obj ? ST_PLAN_THROUGHPUT : ST_PLAN_LATENCY;
        card(&d[0], "h100-pcie", "h100", 0);
        card(&d[1], "rtx-3090", "3090", 0);
        st_plan *p = NULL;
        int n, q;
        CHECK_OK(st_plan_make(&m, d, 2, NULL, &r, &p));
        if (p) {
            count_on(p, &m, 0, &n, &q);
            CHECK_MSG(q > 0, "unrestricted, the h100 holds %d q4_k layers (expected some)", q);
        }
        st_plan_free(p);
        p = NULL;
        card(&d[0], "h100-pcie", "h100", NO_QK);
        CHECK_OK(st_plan_make(&m, d, 2, NULL, &r, &p));
        if (!p) continue;
        count_on(p, &m, 0, &n, &q);
        CHECK_MSG(q == 0 && n > 0, "%s: the h100 holds %d layers, %d of them with q4_k", st_plan_objective_name(r.objective),
                  n, q);
        int n1, q1;
        count_on(p, &m, 1, &n1, &q1);
        CHECK(q1 == 14 && n + n1 == 28);
        CHECK(reason_has(p, "device h100 (H100 PCIe 80GB) runs weight types f32 f16 bf16 q8_0, not q4_k: no stage "
                            "there holds 14 of 28 layers (14-27) (e.g. blk.14.attn_v.weight)"));
        st_plan_free(p);
    }

    /* q4_k scattered (layers 3, 9, 15, 21): the restricted device holds one q4_k-free run */
    st_plan_model_free(&m);
    CHECK_OK(st_plan_model_from_preset("qwen2.5-7b", "q8_0", &m));
    for (int64_t l = 3; l < 28; l += 6) m.mat_dtypes[l * ST_PLAN_N_MATRICES + 6] = ST_DTYPE_Q4_K;
    card(&d[0], "h100-pcie", "h100", NO_QK);
    card(&d[1], "a100-80gb", "a100", 0);
    r.objective = ST_PLAN_LATENCY;
    st_plan *p = NULL;
    CHECK_OK(st_plan_make(&m, d, 2, NULL, &r, &p));
    for (int s = 0; p && s < p->n_stages; s++) {
        if (p->stages[s].device != 0) continue;
        for (int64_t l = p->stages[s].first; l <= p->stages[s].last; l++)
            CHECK_MSG(!has_q4k(&m, l), "layer %lld with q4_k on the h100", (long long)l);
    }
    if (p) CHECK(reason_has(p, "not q4_k: no stage there holds 5 of 28 layers (3, 9, 15, 21, 27)"));
    st_plan_free(p);
    st_plan_model_free(&m);
}

/* The embedding and the output head: a device that cannot run their dtype holds no first / last stage. */
static void ends(void) {
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("qwen2.5-7b", "q8_0", &m));
    m.embd_dtype = ST_DTYPE_Q4_K;
    m.lm_head_dtype = ST_DTYPE_Q6_K;
    struct st_plan_device d[2];
    card(&d[0], "h100-pcie", "h100", NO_QK);
    card(&d[1], "rtx-3090", "3090", 0);
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    st_plan *p = NULL;
    CHECK_OK(st_plan_make(&m, d, 2, NULL, &r, &p));
    if (p) {
        CHECK(p->n_stages >= 1);
        for (int s = 0; s < p->n_stages; s++) {
            if (p->stages[s].has_embedding) CHECK(p->stages[s].device == 1);
            if (p->stages[s].has_output) CHECK(p->stages[s].device == 1);
        }
        CHECK(reason_has(p, "not q4_k q6_k: no stage there holds the embedding and the output head (e.g. "
                            "token_embd.weight)"));
    }
    st_plan_free(p);
    /* a stage on the h100 over the whole model would hold both: a manual placement is refused, naming it */
    struct st_plan_range one = {0, 0, 27};
    r.manual = &one;
    r.n_manual = 1;
    p = NULL;
    CHECK_ERR(st_plan_make(&m, d, 2, NULL, &r, &p), ST_ERR_CONFIG,
              "manual stage 0 (layers 0-27 on h100) does not fit: it cannot run q4_k weights (token_embd.weight): its "
              "backend runs f32 f16 bf16 q8_0");
    st_plan_free(p);
    st_plan_model_free(&m);
}

/* No device runs some tensor: a plan-time error (no plan, *out NULL) naming the first such tensor, its
 * dtype, the devices and what they run, and a file type that would run. */
static void no_capable_device(void) {
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("qwen2.5-0.5b", "q8_0", &m));
    m.mat_dtypes[3 * ST_PLAN_N_MATRICES + 6] = ST_DTYPE_Q4_K;   /* blk.3.ffn_down.weight */
    struct st_plan_device d[2];
    card(&d[0], "tesla-m40", "m40", NO_QK);
    card(&d[1], "rtx-3050-ti-laptop", "laptop", NO_QK);
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    st_plan *p = (st_plan *)&r;   /* overwritten: NULL on this error */
    CHECK_ERR(st_plan_make(&m, d, 2, NULL, &r, &p), ST_ERR_CONFIG,
              "plan: no device can run blk.3.ffn_down.weight, stored as q4_k; devices considered: m40 runs f32 f16 "
              "bf16 q8_0; laptop runs f32 f16 bf16 q8_0\nhint: use a Q8_0 or F16 file of the model (weight types "
              "these devices run), or add a device whose backend runs q4_k");
    CHECK(p == NULL);
    /* one device that runs it is enough to plan */
    card(&d[1], "rtx-3050-ti-laptop", "laptop", 0);
    CHECK_OK(st_plan_make(&m, d, 2, NULL, &r, &p));
    st_plan_free(p);
    st_plan_model_free(&m);

    /* a whole q4_k_m file on cards without k-quants: the embedding comes first, the others are counted */
    CHECK_OK(st_plan_model_from_preset("qwen2.5-7b", "q4_k_m", &m));
    card(&d[1], "rtx-3050-ti-laptop", "laptop", NO_QK);
    CHECK_ERR(st_plan_make(&m, d, 2, NULL, &r, &p), ST_ERR_CONFIG,
              "no device can run token_embd.weight, stored as q4_k (and 197 more tensors of q4_k, q6_k)");
    CHECK(strstr(st_last_error(), "hint: use a Q8_0 or F16 file of the model") != NULL);
    /* devices that run only q4_0 and f32: no preset file type is all of those, so the hint says what to add */
    card(&d[0], "tesla-m40", "m40", B(ST_DTYPE_F32) | B(ST_DTYPE_Q4_0));
    card(&d[1], "rtx-3050-ti-laptop", "laptop", B(ST_DTYPE_F32) | B(ST_DTYPE_Q4_0));
    CHECK_ERR(st_plan_make(&m, d, 2, NULL, &r, &p), ST_ERR_CONFIG,
              "hint: use an F32 file of the model (weight types these devices run), or add a device whose backend "
              "runs q4_k, q6_k");
    st_plan_model_free(&m);
}

/* The names of a real file's tensors: a Hugging Face directory and the same model as GGUF. */
static void file_names(void) {
    static const struct { const char *path, *first; } files[] = {
        {"models/tiny-kjv", "no device can run model.embed_tokens.weight, stored as f16 (and 28 more tensors of f16)"},
        {"models/tiny-kjv.gguf", "no device can run token_embd.weight, stored as f16 (and 28 more tensors of f16)"},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(files); i++) {
        st_model *mf = NULL;
        CHECK_OK(st_model_open(files[i].path, &mf));
        if (!mf) continue;
        struct st_plan_model m;
        CHECK_OK(st_plan_model_from_model(mf, &m));
        CHECK(st_plan_model_dtypes(&m) == B(ST_DTYPE_F16));
        struct st_plan_device d;
        card(&d, "rtx-3090", "3090", B(ST_DTYPE_F32) | B(ST_DTYPE_Q8_0));
        struct st_plan_request r;
        st_plan_request_defaults(&r);
        st_plan *p = NULL;
        CHECK_ERR(st_plan_make(&m, &d, 1, NULL, &r, &p), ST_ERR_CONFIG, files[i].first);
        CHECK(strstr(st_last_error(), "hint: use a Q8_0 or F32 file of the model") != NULL);
        st_plan_model_free(&m);
        st_model_free(mf);
    }
}

/* A device that can run no layer at all is left unused, and the reasons say why. */
static void unused_device(void) {
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("qwen2.5-7b", "q4_k_m", &m));
    struct st_plan_device d[2];
    card(&d[0], "h100-pcie", "h100", NO_QK);
    card(&d[1], "a100-80gb", "a100", 0);
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    st_plan *p = NULL;
    CHECK_OK(st_plan_make(&m, d, 2, NULL, &r, &p));
    if (p) {
        CHECK(p->n_stages == 1 && p->stages[0].device == 1);
        CHECK(reason_has(p, "device h100 unused: every layer holds a weight type it cannot run (it cannot run q4_k "
                            "weights (blk.14.attn_q.weight): its backend runs f32 f16 bf16 q8_0)"));
    }
    st_plan_free(p);
    st_plan_model_free(&m);
}

/* ["f32", "q8_0"] -> a set; 0 when not a list of names */
static uint32_t json_set(json_t *a) {
    uint32_t w = 0;
    size_t i;
    json_t *v;
    if (!json_is_array(a)) return 0;
    json_array_foreach(a, i, v) {
        for (int t = 0; t < ST_DTYPE_COUNT; t++)
            if (json_is_string(v) && !strcmp(json_string_value(v), st_dtype_name((st_dtype)t))) w |= B(t);
    }
    return w;
}

static void files(void) {
    struct st_plan_model m;
    CHECK_OK(st_plan_model_from_preset("qwen2.5-7b", "q4_k_m", &m));
    struct st_plan_device d[2];
    card(&d[0], "tesla-m40", "m40", B(ST_DTYPE_F32) | B(ST_DTYPE_F16) | B(ST_DTYPE_Q8_0));
    card(&d[1], "rtx-3090", "r3090", 0);
    struct st_plan_request r;
    st_plan_request_defaults(&r);
    st_plan *p = NULL;
    CHECK_OK(st_plan_make(&m, d, 2, NULL, &r, &p));
    if (!p) { st_plan_model_free(&m); return; }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK_OK(st_plan_write_json(f, p));
    fclose(f);
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    CHECK_MSG(root != NULL, "plan JSON: %s", je.text);
    if (root) {
        CHECK(json_set(json_object_get(json_object_get(root, "model"), "weight_dtypes")) ==
              (B(ST_DTYPE_Q4_K) | B(ST_DTYPE_Q6_K)));
        json_t *devs = json_object_get(root, "devices");
        CHECK(json_set(json_object_get(json_object_get(json_array_get(devs, 0), "caps"), "weight_dtypes")) ==
              (B(ST_DTYPE_F32) | B(ST_DTYPE_F16) | B(ST_DTYPE_Q8_0)));
        CHECK(json_set(json_object_get(json_object_get(json_array_get(devs, 1), "caps"), "weight_dtypes")) ==
              (1u << ST_DTYPE_COUNT) - 1);
    }
    json_decref(root);
    free(text);
    /* the plan file: written, read back, the same sets; a file without the key reads as the backend's */
    text = NULL;
    f = open_memstream(&text, &len);
    CHECK_OK(st_plan_write_yaml(f, p));
    fclose(f);
    CHECK(strstr(text, "flash_attn: false, weight_dtypes: [f32, f16, q8_0]}") != NULL);
    st_plan *q = NULL;
    CHECK_OK(st_plan_parse_yaml(text, len, "p.yaml", &q));
    if (q) {
        CHECK(q->devices[0].info.caps.weight_dtypes == (B(ST_DTYPE_F32) | B(ST_DTYPE_F16) | B(ST_DTYPE_Q8_0)));
        CHECK(q->devices[1].info.caps.weight_dtypes == (1u << ST_DTYPE_COUNT) - 1);
    }
    st_plan_free(q);
    q = NULL;
    char *old = strstr(text, ", weight_dtypes: [f32, f16, q8_0]");
    if (old) memmove(old, old + 33, strlen(old + 33) + 1);   /* as plans written before weight types */
    CHECK_OK(st_plan_parse_yaml(text, strlen(text), "p.yaml", &q));
    if (q) CHECK(q->devices[0].info.caps.weight_dtypes == st_caps_from_cc(5, 2).weight_dtypes);
    st_plan_free(q);
    q = NULL;
    char *w = strstr(text, "weight_dtypes: [f32, f16, bf16,");
    if (w) memcpy(w + 16, "f33", 3);
    CHECK_ERR(st_plan_parse_yaml(text, strlen(text), "p.yaml", &q), ST_ERR_CONFIG,
              "devices[].caps.weight_dtypes: 'f33' is not a weight type");
    free(text);
    st_plan_free(p);
    st_plan_model_free(&m);
}

int main(void) {
    files();
    never_given();
    ends();
    no_capable_device();
    file_names();
    unused_device();
    return st_test_finish("planner_weight_types");
}
