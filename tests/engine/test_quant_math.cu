/* The per-block math of the CUDA quantized kernels (kernels/cuda/quant.cuh),
 * run on the host: nvcc compiles the __host__ __device__ helpers for the CPU,
 * so this test needs no GPU (built only with the CUDA backend).
 *
 * For every quantized type, on random blocks (random bytes; finite f16
 * scales of both signs, some subnormal):
 *  - the units cover every element of a block exactly once, and their values
 *    (st_q_unit_values, what the GEMM dequantizes) are bit-identical to
 *    st_dtype_to_f32 (model/dtype.c);
 *  - st_q_dot_f32 (the Maxwell-path GEMV) equals the float64 dot of those
 *    values with x within fp32 rounding;
 *  - st_q8x_block quantizes x with |x - d q| <= d/2 (to 1e-4: q is rounded
 *    from an fp32 product), exact sums s0/s1 and the integer sums q01;
 *    st_q_dot_i8 (the dp4a GEMV) equals the float64 dot with the quantized x
 *    within fp32 rounding, and the dot with x itself within the documented
 *    bound sum_i |dw (q_i - OFF)| d_i / 2. */
extern "C" {
#include "check.h"
}
#include "kernels/cuda/quant.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

namespace {

uint64_t rng_s = 0x9E3779B97F4A7C15ull;
uint64_t rng_u64() {
    rng_s ^= rng_s >> 12; rng_s ^= rng_s << 25; rng_s ^= rng_s >> 27;
    return rng_s * 2685821657736338717ull;
}
double rng_f() { return (double)(rng_u64() >> 11) / 9007199254740992.0 * 2.0 - 1.0; }

/* a finite f16 of magnitude in [lo, hi), random sign; sometimes subnormal */
uint16_t rand_scale(float lo, float hi) {
    if (rng_u64() % 16 == 0) return (uint16_t)((rng_u64() % 0x3ff + 1) | (rng_u64() & 1 ? 0x8000 : 0));
    const float v = (float)(lo + (hi - lo) * fabs(rng_f())) * (rng_u64() & 1 ? -1.0f : 1.0f);
    return st_f32_to_f16(v);
}

void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

std::vector<uint8_t> rand_blocks(st_dtype t, int nb) {
    const size_t bb = st_dtype_block_bytes(t);
    std::vector<uint8_t> b(bb * (size_t)nb);
    for (auto &c : b) c = (uint8_t)rng_u64();
    for (int k = 0; k < nb; k++) {
        uint8_t *p = &b[(size_t)k * bb];
        switch (t) {
        case ST_DTYPE_Q6_K: put16(p + 208, rand_scale(1e-4f, 0.05f)); break;
        case ST_DTYPE_Q4_1: case ST_DTYPE_Q5_1: case ST_DTYPE_Q4_K: case ST_DTYPE_Q5_K:
            put16(p, rand_scale(1e-3f, 0.1f));
            put16(p + 2, rand_scale(1e-3f, 0.1f));
            break;
        default: put16(p, rand_scale(1e-3f, 0.1f)); break;
        }
    }
    return b;
}

struct ref_unit {
    st_q_unit u;
    float v[32];
};

template <int DT> void decode_all(const uint8_t *blocks, int nb, std::vector<ref_unit> &out) {
    using Tr = st_qt<DT>;
    for (int k = 0; k < nb; k++)
        for (int ui = 0; ui < Tr::QK / 32; ui++) {
            ref_unit r;
            Tr::template unit<Tr::ALIGN, false>(blocks + (size_t)k * Tr::BB, ui, r.u);
            st_q_unit_values<Tr>(r.u, r.v);
            out.push_back(r);
        }
}

bool same_bits(float a, float b) { return memcmp(&a, &b, 4) == 0; }

template <int DT> void test_type() {
    using Tr = st_qt<DT>;
    const st_dtype t = (st_dtype)DT;
    const char *name = st_dtype_name(t);
    const int nb = 64;
    const int n = nb * Tr::QK;
    int bad_bits = 0, bad_cover = 0;
    for (int trial = 0; trial < 8; trial++) {
        std::vector<uint8_t> blk = rand_blocks(t, nb);
        std::vector<float> ref((size_t)n);
        CHECK(st_dtype_to_f32(t, blk.data(), ref.data(), n) == ST_OK);
        std::vector<ref_unit> units;
        decode_all<DT>(blk.data(), nb, units);
        CHECK((int)units.size() == n / 32);

        /* coverage and bit identity */
        std::vector<int> seen((size_t)n, 0);
        for (size_t k = 0; k < units.size(); k++) {
            const int blk0 = (int)(k / (Tr::QK / 32)) * Tr::QK;
            for (int h = 0; h < 2; h++) {
                if (units[k].u.xo[h] % 16 || units[k].u.xo[h] < 0 || units[k].u.xo[h] + 16 > Tr::QK) { bad_cover++; continue; }
                for (int i = 0; i < 16; i++) {
                    const int e = blk0 + units[k].u.xo[h] + i;
                    seen[(size_t)e]++;
                    if (!same_bits(units[k].v[16 * h + i], ref[(size_t)e])) {
                        if (bad_bits < 5)
                            fprintf(stderr, "%s: element %d: unit value %.9g, dtype.c %.9g\n", name, e,
                                    units[k].v[16 * h + i], ref[(size_t)e]);
                        bad_bits++;
                    }
                }
            }
        }
        for (int e = 0; e < n; e++) bad_cover += seen[(size_t)e] != 1;

        /* x: mostly unit scale, some blocks tiny, some large, a few zeros */
        std::vector<float> x((size_t)n);
        for (int b = 0; b < n / 32; b++) {
            const double sc = b % 7 == 3 ? 1e-3 : b % 7 == 5 ? 40.0 : 1.0;
            for (int i = 0; i < 32; i++) x[(size_t)(32 * b + i)] = b % 11 == 4 ? 0.0f : (float)(sc * rng_f());
        }
        /* fp32 dot */
        double got = 0, want = 0, absw = 0;
        for (size_t k = 0; k < units.size(); k++) {
            const int blk0 = (int)(k / (Tr::QK / 32)) * Tr::QK;
            got += st_q_dot_f32<Tr>(units[k].u, &x[(size_t)blk0]);
        }
        for (int e = 0; e < n; e++) {
            want += (double)ref[(size_t)e] * x[(size_t)e];
            absw += fabs((double)ref[(size_t)e] * x[(size_t)e]);
        }
        CHECK_MSG(fabs(got - want) <= 1e-5 * absw, "%s fp32 dot: %.9g vs %.9g (sum |w x| %.3g)", name, got, want, absw);

        /* quantized x */
        std::vector<int8_t> xq((size_t)n);
        std::vector<st_q8x_meta> meta((size_t)n / 32);
        bool q_ok = true;
        for (int b = 0; b < n / 32; b++) {
            st_q8x_block(&x[(size_t)(32 * b)], &xq[(size_t)(32 * b)], &meta[(size_t)b]);
            const st_q8x_meta &m = meta[(size_t)b];
            double s0 = 0, s1 = 0;
            int q0 = 0, q1 = 0;
            for (int i = 0; i < 32; i++) {
                const float xv = x[(size_t)(32 * b + i)];
                const int q = xq[(size_t)(32 * b + i)];
                /* q is rounded from the fp32 product x * (127 / amax): d/2 to within 1e-4 */
                if (q < -127 || q > 127 || fabs((double)xv - (double)q * m.d) > 0.5001 * m.d + 1e-30) q_ok = false;
                if (i < 16) { s0 += xv; q0 += q; } else { s1 += xv; q1 += q; }
            }
            if (fabs(s0 - m.s0) > 1e-5 * (fabs(s0) + 32 * m.d) || fabs(s1 - m.s1) > 1e-5 * (fabs(s1) + 32 * m.d)) q_ok = false;
            if ((int16_t)(m.q01 & 0xffff) != q0 || (m.q01 >> 16) != q1) q_ok = false;
        }
        CHECK_MSG(q_ok, "%s: st_q8x_block bounds, sums or integer sums wrong", name);

        double got8 = 0, want_hat = 0, abs_hat = 0, bound = 0;
        for (size_t k = 0; k < units.size(); k++) {
            const int blk0 = (int)(k / (Tr::QK / 32)) * Tr::QK;
            const st_q_unit &u = units[k].u;
            got8 += st_q_dot_i8<Tr>(u, &xq[(size_t)blk0], &meta[(size_t)blk0 / 32]);
            for (int h = 0; h < 2; h++)
                for (int i = 0; i < 16; i++) {
                    const int e = blk0 + u.xo[h] + i;
                    const st_q8x_meta &m = meta[(size_t)e / 32];
                    const double xh = (double)xq[(size_t)e] * m.d;
                    const double w = ref[(size_t)e];
                    /* the min part multiplies the exact sums; the rest the quantized x */
                    const double a = w - (Tr::HAS_MIN ? (double)u.mw[h] : 0.0);
                    want_hat += a * xh + (w - a) * x[(size_t)e];
                    abs_hat += fabs(a * xh) + fabs((w - a) * x[(size_t)e]);
                    bound += fabs(a) * m.d * 0.5001;
                }
        }
        CHECK_MSG(fabs(got8 - want_hat) <= 1e-5 * abs_hat + 1e-30, "%s int8 dot vs quantized x: %.9g vs %.9g (sum %.3g)",
                  name, got8, want_hat, abs_hat);
        CHECK_MSG(fabs(got8 - want) <= bound + 1e-5 * (absw + abs_hat),
                  "%s int8 dot vs x: %.9g vs %.9g, |d| %.3g > bound %.3g", name, got8, want, fabs(got8 - want), bound);
        if (trial == 0)
            printf("%-7s fp32 dot err %.2e, int8 dot err %.2e (bound %.2e, sum |w x| %.2e)\n", name, fabs(got - want),
                   fabs(got8 - want), bound, absw);
    }
    CHECK_MSG(bad_bits == 0, "%s: %d dequantized values differ from dtype.c", name, bad_bits);
    CHECK_MSG(bad_cover == 0, "%s: %d elements not covered exactly once by the units", name, bad_cover);
}

} // namespace

int main(void) {
    test_type<ST_DTYPE_Q8_0>();
    test_type<ST_DTYPE_Q4_0>();
    test_type<ST_DTYPE_Q4_1>();
    test_type<ST_DTYPE_Q5_0>();
    test_type<ST_DTYPE_Q5_1>();
    test_type<ST_DTYPE_IQ4_NL>();
    test_type<ST_DTYPE_Q4_K>();
    test_type<ST_DTYPE_Q5_K>();
    test_type<ST_DTYPE_Q6_K>();
    /* the 16-byte reader and the IQ4_NL code book word by word */
    {
        uint8_t b[36];
        for (int i = 0; i < 36; i++) b[i] = (uint8_t)(i * 37 + 1);
        uint32_t w[4];
        st_q_rdw<2, false>(b + 2, w);
        CHECK(w[0] == (uint32_t)(b[2] | b[3] << 8 | b[4] << 16 | (uint32_t)b[5] << 24));
        static const int8_t tab[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
        bool lut_ok = true;
        for (uint32_t n = 0; n < 65536; n += 7) {
            const uint32_t nib = (n & 0xf) | (n >> 4 & 0xf) << 8 | (n >> 8 & 0xf) << 16 | (n >> 12 & 0xf) << 24;
            const uint32_t r = st_q_iq4nl_lut(nib);
            for (int k = 0; k < 4; k++)
                if ((int8_t)(r >> (8 * k)) != tab[(nib >> (8 * k)) & 0xf]) lut_ok = false;
        }
        CHECK(lut_ok);
    }
    return st_test_finish("engine_quant_math");
}
