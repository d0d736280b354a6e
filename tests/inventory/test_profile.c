/* The probe's profile: save -> load round trip, matching devices by uuid / CPU
 * model, applying it to st_device_info.perf, the default path, and the errors
 * for malformed files (path:line:column from jansson, the key named, a hint). */
#include "check.h"
#include "devices/device.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[64];

static const char *tmp_file(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (text) {
        FILE *f = fopen(path, "w");
        if (f) { fputs(text, f); fclose(f); }
    }
    return path;
}

static bool near(double a, double b) { return fabs(a - b) <= 1e-9 * fabs(b); }

static st_profile *sample(void) {
    st_profile *p = calloc(1, sizeof *p);
    p->n_devices = 2;
    p->devices = calloc(2, sizeof *p->devices);
    p->n_links = 3;
    p->links = calloc(3, sizeof *p->links);
    snprintf(p->host, sizeof p->host, "box1");
    snprintf(p->created, sizeof p->created, "2026-01-02T03:04:05Z");
    snprintf(p->strata_version, sizeof p->strata_version, "0.1.0 (abc)");
    struct st_profile_device *c = &p->devices[0], *g = &p->devices[1];
    c->kind = ST_DEVICE_CPU;
    snprintf(c->name, sizeof c->name, "AMD EPYC 7763 64-Core Processor");
    c->threads = 128;
    c->mem_bw_gbps = 181.25;
    c->read_gbps = 170.5;
    c->copy_gbps = 150.125;
    c->triad_gbps = 181.25;
    c->gemv_gbps[0] = 120.0625; c->gemv_gbps[1] = 99.5; c->gemv_gbps[2] = 101.75; c->gemv_gbps[ST_DTYPE_Q8_0] = 110.25;
    c->launch_us = 1.375;
    c->gemm_tflops[0] = 2.5; c->gemm_tflops[ST_DTYPE_Q8_0] = 6.75;
    c->gemv_gbps[ST_DTYPE_Q4_K] = 77.5; c->gemm_tflops[ST_DTYPE_Q6_K] = 3.25;
    c->probe_bytes = 1ull << 30;
    snprintf(c->method, sizeof c->method, "ops:cpu avx2, 64 threads");
    g->kind = ST_DEVICE_CUDA;
    snprintf(g->name, sizeof g->name, "NVIDIA H100 80GB HBM3");
    snprintf(g->uuid, sizeof g->uuid, "GPU-12345678-9abc-def0-1234-56789abcdef0");
    g->mem_bw_gbps = 2987.654321;
    g->gemv_gbps[2] = 2500.5;
    g->launch_us = 4.25;
    g->gemm_tflops[1] = 700.25; g->gemm_tflops[2] = 710.5;
    snprintf(p->links[0].from, sizeof p->links[0].from, "cpu");
    snprintf(p->links[0].to, sizeof p->links[0].to, "%s", g->uuid);
    p->links[0].latency_us = 9.5;
    p->links[0].bw_gbps = 25.125;
    snprintf(p->links[1].from, sizeof p->links[1].from, "%s", g->uuid);
    snprintf(p->links[1].to, sizeof p->links[1].to, "cpu");
    p->links[1].latency_us = 10.5;
    p->links[1].bw_gbps = 26.0;
    p->links[0].type = p->links[1].type = ST_LINK_T_HOST;
    p->links[2] = p->links[1];      /* a second, faster kind for the same pair */
    p->links[2].type = ST_LINK_T_PEER;
    p->links[2].bw_gbps = 40.0;
    return p;
}

static void test_round_trip(void) {
    st_profile *p = sample(), *q = NULL;
    const char *path = tmp_file("nested/deeper/profile.json", NULL);   /* parents are created */
    CHECK_OK(st_profile_save(p, path));
    CHECK_OK(st_profile_load(path, &q));
    if (q) {
        CHECK(q->n_devices == 2 && q->n_links == 3);
        CHECK(strcmp(q->host, "box1") == 0 && strcmp(q->created, p->created) == 0);
        CHECK(strcmp(q->strata_version, p->strata_version) == 0);
        for (int i = 0; i < 2 && q->n_devices == 2; i++) {
            const struct st_profile_device *a = &p->devices[i], *b = &q->devices[i];
            CHECK(a->kind == b->kind && strcmp(a->name, b->name) == 0 && strcmp(a->uuid, b->uuid) == 0);
            CHECK(a->threads == b->threads && a->probe_bytes == b->probe_bytes && strcmp(a->method, b->method) == 0);
            CHECK(near(b->mem_bw_gbps, a->mem_bw_gbps) && near(b->read_gbps, a->read_gbps));
            CHECK(near(b->copy_gbps, a->copy_gbps) && near(b->triad_gbps, a->triad_gbps));
            CHECK(near(b->launch_us, a->launch_us));
            for (int k = 0; k < ST_N_RATES; k++) CHECK(near(b->gemv_gbps[k], a->gemv_gbps[k]));
            for (int k = 0; k < ST_N_RATES; k++) CHECK(near(b->gemm_tflops[k], a->gemm_tflops[k]));
        }
        for (int i = 0; i < 3 && q->n_links == 3; i++) {
            CHECK(strcmp(q->links[i].from, p->links[i].from) == 0 && strcmp(q->links[i].to, p->links[i].to) == 0);
            CHECK(q->links[i].type == p->links[i].type);
            CHECK(near(q->links[i].latency_us, p->links[i].latency_us) && near(q->links[i].bw_gbps, p->links[i].bw_gbps));
        }

        /* matching and applying: by CPU model + threads, by GPU uuid, never by index */
        struct st_device_info devs[4] = {0};
        devs[0].kind = ST_DEVICE_CPU;
        snprintf(devs[0].name, sizeof devs[0].name, "AMD EPYC 7763 64-Core Processor");
        devs[0].threads = 128;
        devs[0].perf.fp32_tflops = 5.0;
        devs[1].kind = ST_DEVICE_CUDA;   /* another H100: same name, other uuid */
        devs[1].index = 0;
        snprintf(devs[1].name, sizeof devs[1].name, "NVIDIA H100 80GB HBM3");
        snprintf(devs[1].uuid, sizeof devs[1].uuid, "GPU-00000000-9abc-def0-1234-56789abcdef0");
        devs[1].perf.mem_bw_gbps = 3352;
        devs[2] = devs[1];
        devs[2].index = 1;
        snprintf(devs[2].uuid, sizeof devs[2].uuid, "%s", p->devices[1].uuid);
        devs[3] = devs[0];
        devs[3].threads = 64;            /* same model, other machine size */
        CHECK(st_profile_apply(q, devs, 4) == 2);
        CHECK(devs[0].perf.measured && near(devs[0].perf.mem_bw_gbps, 181.25) && near(devs[0].perf.launch_us, 1.375));
        CHECK(near(devs[0].perf.gemv_gbps[1], 99.5) && near(devs[0].perf.fp32_tflops, 2.5));
        CHECK(near(devs[0].perf.gemv_gbps[ST_DTYPE_Q8_0], 110.25) &&
              near(devs[0].perf.gemm_tflops[ST_DTYPE_Q8_0], 6.75));
        CHECK(near(devs[0].perf.gemv_gbps[ST_DTYPE_Q4_K], 77.5) && near(devs[0].perf.gemm_tflops[ST_DTYPE_Q6_K], 3.25));
        CHECK(devs[0].perf.gemv_gbps[ST_DTYPE_Q6_K] == 0 && devs[0].perf.gemm_tflops[ST_DTYPE_Q4_K] == 0);
        CHECK(devs[0].perf.fp16_tflops == 0);
        CHECK(!devs[1].perf.measured && devs[1].perf.mem_bw_gbps == 3352);
        CHECK(devs[2].perf.measured && near(devs[2].perf.mem_bw_gbps, 2987.654321));
        CHECK(devs[2].perf.gemv_gbps[0] == 0 && near(devs[2].perf.gemv_gbps[2], 2500.5));
        CHECK(near(devs[2].perf.fp16_tflops, 700.25) && near(devs[2].perf.bf16_tflops, 710.5));
        CHECK(devs[2].perf.gemm_tflops[ST_DTYPE_Q8_0] == 0 && devs[2].perf.gemv_gbps[ST_DTYPE_Q8_0] == 0);
        CHECK(!devs[3].perf.measured);
        const struct st_profile_link *l = st_profile_find_link(q, &devs[0], &devs[2], ST_LINK_T_AUTO);
        CHECK(l && near(l->bw_gbps, 25.125));
        l = st_profile_find_link(q, &devs[2], &devs[0], ST_LINK_T_HOST);
        CHECK(l && near(l->latency_us, 10.5) && l->type == ST_LINK_T_HOST);
        l = st_profile_find_link(q, &devs[2], &devs[0], ST_LINK_T_AUTO);   /* the faster kind */
        CHECK(l && l->type == ST_LINK_T_PEER && near(l->bw_gbps, 40.0));
        CHECK(st_profile_find_link(q, &devs[0], &devs[2], ST_LINK_T_NCCL) == NULL);
        CHECK(st_profile_find_link(q, &devs[0], &devs[1], ST_LINK_T_AUTO) == NULL);
        CHECK(strcmp(st_profile_device_key(&devs[0]), "cpu") == 0);
        CHECK(strcmp(st_profile_device_key(&devs[2]), p->devices[1].uuid) == 0);
    }
    st_profile_free(p);
    st_profile_free(q);
    st_profile_free(NULL);
    unlink(path);
    char d[256];
    snprintf(d, sizeof d, "%s/nested/deeper", dir); rmdir(d);
    snprintf(d, sizeof d, "%s/nested", dir); rmdir(d);
}

#define GOOD_DEVICE "{\"kind\": \"cpu\", \"name\": \"x\", \"mem_bw_gbps\": 10}"

static void expect_error(const char *name, const char *text, st_status status, const char *needle) {
    st_profile *p = NULL;
    const char *path = tmp_file(name, text);
    CHECK_ERR(st_profile_load(path, &p), status, needle);
    CHECK(p == NULL);
    if (status == ST_ERR_FORMAT) {
        CHECK_MSG(strstr(st_last_error(), "\nhint: ") != NULL, "no hint: %s", st_last_error());
        CHECK_MSG(strstr(st_last_error(), path) != NULL, "no path: %s", st_last_error());
    }
    unlink(path);
}

static void test_malformed(void) {
    /* JSON syntax: position from jansson; the comma on line 3 column 16 is unexpected */
    expect_error("syntax.json", "{\n  \"strata_profile\": 1,\n  \"devices\": [ , ]\n}\n", ST_ERR_FORMAT,
                 "syntax.json:3:16: invalid JSON");
    expect_error("trunc.json", "{\"strata_profile\": 1, \"devices\": [", ST_ERR_FORMAT, "trunc.json:1:");
    expect_error("dup.json", "{\"strata_profile\": 1, \"devices\": [], \"devices\": []}", ST_ERR_FORMAT, "duplicate");
    expect_error("array.json", "[1, 2]", ST_ERR_FORMAT, "top level: expected an object, got an array");
    expect_error("nover.json", "{\"devices\": []}", ST_ERR_FORMAT, "strata_profile: missing: not a strata profile");
    expect_error("ver2.json", "{\"strata_profile\": 2, \"devices\": []}", ST_ERR_FORMAT,
                 "strata_profile: version 2, this strata reads version 1");
    expect_error("nodevs.json", "{\"strata_profile\": 1}", ST_ERR_FORMAT, "devices: missing (required)");
    expect_error("topkey.json", "{\"strata_profile\": 1, \"devices\": [], \"linkz\": []}", ST_ERR_FORMAT,
                 "top level: unknown key 'linkz'\nhint: did you mean 'links'?");
    expect_error("type.json", "{\"strata_profile\": 1, \"devices\": [" GOOD_DEVICE ", "
                 "{\"kind\": \"cpu\", \"name\": \"y\", \"mem_bw_gbps\": \"fast\"}]}", ST_ERR_FORMAT,
                 "devices[1].mem_bw_gbps: expected a number >= 0, got a string");
    expect_error("neg.json", "{\"strata_profile\": 1, \"devices\": [{\"kind\": \"cpu\", \"name\": \"y\", \"launch_us\": -1}]}",
                 ST_ERR_FORMAT, "devices[0].launch_us: expected a number >= 0, got a negative value");
    expect_error("key.json", "{\"strata_profile\": 1, \"devices\": [{\"kind\": \"cpu\", \"name\": \"y\", \"mem_bw_gbs\": 1}]}",
                 ST_ERR_FORMAT, "devices[0]: unknown key 'mem_bw_gbs'\nhint: did you mean 'mem_bw_gbps'?");
    expect_error("gemv.json", "{\"strata_profile\": 1, \"devices\": [{\"kind\": \"cpu\", \"name\": \"y\", "
                 "\"gemv_gbps\": {\"fp16\": 3}}]}", ST_ERR_FORMAT,
                 "devices[0].gemv_gbps: unknown key 'fp16'\nhint: did you mean 'f16'?");
    expect_error("kind.json", "{\"strata_profile\": 1, \"devices\": [{\"kind\": \"tpu\", \"name\": \"y\"}]}",
                 ST_ERR_FORMAT, "devices[0].kind: 'tpu' is not a device kind (cpu, cuda)");
    expect_error("noname.json", "{\"strata_profile\": 1, \"devices\": [{\"kind\": \"cpu\"}]}", ST_ERR_FORMAT,
                 "devices[0].name: missing (required)");
    expect_error("nouuid.json", "{\"strata_profile\": 1, \"devices\": [{\"kind\": \"cuda\", \"name\": \"H100\"}]}",
                 ST_ERR_FORMAT, "devices[0].uuid: missing (required)");
    expect_error("link.json", "{\"strata_profile\": 1, \"devices\": [], \"links\": [{\"from\": \"cpu\", \"bw_gbps\": 3}]}",
                 ST_ERR_FORMAT, "links[0].to: missing (required)");
    expect_error("ltype.json", "{\"strata_profile\": 1, \"devices\": [], \"links\": [{\"from\": \"cpu\", \"to\": \"GPU-1\", "
                 "\"type\": \"pcie\"}]}", ST_ERR_FORMAT, "links[0].type: 'pcie' is not a link type (local, peer, nccl, host)");
    expect_error("gemm.json", "{\"strata_profile\": 1, \"devices\": [{\"kind\": \"cpu\", \"name\": \"y\", "
                 "\"gemm_tflops\": [1, 2]}]}", ST_ERR_FORMAT,
                 "devices[0].gemm_tflops: expected an object of rates by weight dtype {f32, f16, bf16, q8_0, ..., q6_k}, "
                 "got an array");
    expect_error("threads.json", "{\"strata_profile\": 1, \"devices\": [{\"kind\": \"cpu\", \"name\": \"y\", \"threads\": 1.5}]}",
                 ST_ERR_FORMAT, "devices[0].threads: expected an integer >= 0, got a number");
    CHECK_ERR(st_profile_load(tmp_file("absent.json", NULL), &(st_profile *){NULL}), ST_ERR_IO, "absent.json: cannot open");

    /* the smallest valid profile */
    st_profile *p = NULL;
    const char *path = tmp_file("min.json", "{\"strata_profile\": 1, \"devices\": [" GOOD_DEVICE "]}");
    CHECK_OK(st_profile_load(path, &p));
    CHECK(p && p->n_devices == 1 && p->n_links == 0 && p->devices[0].mem_bw_gbps == 10 && p->devices[0].launch_us == 0);
    st_profile_free(p);
    unlink(path);

    /* a profile written before the q8_0 rates: they read as not measured */
    p = NULL;
    path = tmp_file("old.json", "{\"strata_profile\": 1, \"devices\": [{\"kind\": \"cpu\", \"name\": \"y\", "
                    "\"gemv_gbps\": {\"f32\": 3, \"f16\": 4, \"bf16\": 5}, \"gemm_tflops\": {\"f32\": 0.5}}]}");
    CHECK_OK(st_profile_load(path, &p));
    CHECK(p && p->n_devices == 1 && p->devices[0].gemv_gbps[2] == 5 && p->devices[0].gemm_tflops[0] == 0.5);
    CHECK(p && p->devices[0].gemv_gbps[ST_DTYPE_Q8_0] == 0 && p->devices[0].gemm_tflops[ST_DTYPE_Q8_0] == 0);
    st_profile_free(p);
    unlink(path);

    /* one written with q8_0 as the only quantized rate: the other dtypes read as not measured */
    p = NULL;
    path = tmp_file("q8.json", "{\"strata_profile\": 1, \"devices\": [{\"kind\": \"cpu\", \"name\": \"y\", "
                    "\"gemv_gbps\": {\"f32\": 3, \"q8_0\": 6}, \"gemm_tflops\": {\"q8_0\": 0.75}}]}");
    CHECK_OK(st_profile_load(path, &p));
    CHECK(p && p->devices[0].gemv_gbps[ST_DTYPE_Q8_0] == 6 && p->devices[0].gemm_tflops[ST_DTYPE_Q8_0] == 0.75);
    for (int k = ST_DTYPE_Q4_0; p && k < ST_N_RATES; k++)
        CHECK(p->devices[0].gemv_gbps[k] == 0 && p->devices[0].gemm_tflops[k] == 0);
    st_profile_free(p);
    unlink(path);

    /* the rate keys are the dtypes' names, in st_dtype order */
    for (int k = 0; k < ST_N_RATES; k++)
        CHECK_MSG(strcmp(st_rate_key(k), st_dtype_name((st_dtype)k)) == 0, "rate %d", k);
}

static void test_default_path(void) {
    char buf[512];
    setenv("STRATA_PROFILE", "/x/p.json", 1);
    CHECK(strcmp(st_profile_default_path(buf, sizeof buf), "/x/p.json") == 0);
    unsetenv("STRATA_PROFILE");
    setenv("XDG_CACHE_HOME", "/cache", 1);
    CHECK(strcmp(st_profile_default_path(buf, sizeof buf), "/cache/strata/profile.json") == 0);
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    CHECK(strcmp(st_profile_default_path(buf, sizeof buf), "/home/u/.cache/strata/profile.json") == 0);
    unsetenv("HOME");
    CHECK(strcmp(st_profile_default_path(buf, sizeof buf), "") == 0);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/strata-profile-XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_round_trip();
    test_malformed();
    test_default_path();
    rmdir(dir);
    return st_test_finish("inventory_profile");
}
