/* Capabilities derived from the compute capability (DESIGN.md "Capabilities"),
 * and the names of the enums the planner prints. */
#include "devices/device.h"

struct st_caps st_caps_from_cc(int cc_major, int cc_minor) {
    struct st_caps c = {0};
    int cc = cc_major * 10 + cc_minor;
    c.cc_major = cc_major;
    c.cc_minor = cc_minor;
    /* 6.1 (GP102/104/106/107: P40, GTX 10x0) runs fp16 at 1/64 rate: not "fast" */
    c.fp16_arith = cc >= 53 && cc != 61;
    c.tensor_cores = cc >= 70;
    /* fp16 inputs with fp32 accumulation at tensor-core rate (Volta mma.sync onwards) */
    c.fp32_accum_fp16 = cc >= 70;
    c.bf16 = cc >= 80;
    c.flash_attn = cc >= 80;
    return c;
}

struct st_caps st_caps_cpu(void) {
    struct st_caps c = {0};
    /* the CPU kernels widen fp16/bf16 to fp32 and accumulate in fp32; no fast
     * half-precision arithmetic is assumed */
    c.fp32_accum_fp16 = true;
    return c;
}

const char *st_prec_name(st_prec p) {
    switch (p) {
    case ST_PREC_F32: return "f32";
    case ST_PREC_F16: return "f16";
    case ST_PREC_BF16: return "bf16";
    }
    return "?";
}

const char *st_attn_name(st_attn_kind a) {
    switch (a) {
    case ST_ATTN_EAGER: return "eager";
    case ST_ATTN_FLASH: return "flash";
    }
    return "?";
}
