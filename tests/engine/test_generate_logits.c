/* strata generate --logits FILE.npy: the file's header and shape, its prompt
 * rows against transformers (reference.json, max error relative to the row's
 * largest logit <= 1e-4) and the argmax of every row from n_prompt - 1 on
 * equal to the greedy tokens. */
#include "check.h"
#include "orchestrator/cli.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    const char *ref_path = "tests/fixtures/models/qwen3-tiny/reference.json";
    char out[64];
    snprintf(out, sizeof out, "/tmp/strata-logits-%d.npy", (int)getpid());
    char *argv[] = {"generate", "-m", "tests/fixtures/models/qwen3-tiny/hf", "--tokens",
                    "311,127,495,481,32,96,101,91,296,178,245,117", "-n", "16", "--logits", out, NULL};
    CHECK(st_cmd_generate(9, argv) == 0);

    json_error_t jerr;
    json_t *ref = json_load_file(ref_path, 0, &jerr);
    CHECK_MSG(ref != NULL, "%s: %s", ref_path, jerr.text);
    FILE *f = fopen(out, "rb");
    CHECK(f != NULL);
    if (!ref || !f) return st_test_finish("engine_generate_logits");
    unsigned char pre[10];
    CHECK(fread(pre, 1, 10, f) == 10);
    CHECK(!memcmp(pre, "\x93NUMPY\x01\x00", 8));
    size_t hl = pre[8] | (size_t)pre[9] << 8;
    CHECK((10 + hl) % 64 == 0);
    char hdr[256] = {0};
    CHECK(hl < sizeof hdr && fread(hdr, 1, hl, f) == hl);
    CHECK(strstr(hdr, "'descr': '<f4'") && strstr(hdr, "'fortran_order': False") && strstr(hdr, "'shape': (27, 509)"));
    CHECK(hdr[hl - 1] == '\n');
    float *lg = malloc(sizeof(float) * 27 * 509);
    CHECK(fread(lg, sizeof(float), 27 * 509, f) == 27 * 509);
    CHECK(fgetc(f) == EOF);
    fclose(f);
    unlink(out);

    json_t *rl = json_object_get(ref, "logits"), *gr = json_object_get(ref, "greedy_tokens");
    double worst = 0;
    for (int p = 0; p < 12; p++) {
        double md = 0, mr = 0;
        for (int v = 0; v < 509; v++) {
            double r = json_real_value(json_array_get(json_array_get(rl, p), v));
            md = fmax(md, fabs(lg[p * 509 + v] - r));
            mr = fmax(mr, fabs(r));
        }
        worst = fmax(worst, md / mr);
    }
    CHECK_MSG(worst <= 1e-4, "logits file vs transformers: %.3g", worst);
    bool same = true;
    for (int i = 0; i < 16; i++) {
        const float *row = lg + (11 + i) * 509;
        int best = 0;
        for (int v = 1; v < 509; v++) if (row[v] > row[best]) best = v;
        if (best != (int)json_integer_value(json_array_get(gr, i))) same = false;
    }
    CHECK_MSG(same, "argmax of the logits rows differs from the greedy tokens");
    free(lg);
    json_decref(ref);
    return st_test_finish("engine_generate_logits");
}
