/* Small deterministic RNG for the CPU tests (xorshift64*). */
#ifndef STRATA_TEST_RNG_H
#define STRATA_TEST_RNG_H
#include <stdint.h>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static inline void rng_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }
static inline uint64_t rng_u64(void) {
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
/* uniform in [-1, 1) */
static inline float rng_f(void) { return (float)((double)(rng_u64() >> 11) / 9007199254740992.0 * 2.0 - 1.0); }
#endif
