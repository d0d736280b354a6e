/* The names of the enums the planner prints. The capabilities themselves are
 * each backend's declaration: st_caps_from_cc in devices/cuda/register.c,
 * st_caps_cpu in devices/cpu/register.c. */
#include "devices/device.h"

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
