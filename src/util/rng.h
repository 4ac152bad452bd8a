/* splitmix64 (Steele, Lea, Flood 2014; Vigna's reference constants): one
 * 64-bit state, every draw a pure function of the seed and the draw's index,
 * so anything drawn from it is the same at any thread count. */
#ifndef DQ_RNG_H
#define DQ_RNG_H
#include <math.h>
#include <stdint.h>

static inline uint64_t dq_splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform draw in (0, 1]: the top 53 bits. */
static inline double dq_rng_uniform(uint64_t *s) { return (double)((dq_splitmix64(s) >> 11) + 1) * 0x1p-53; }

/* A standard normal draw (Box-Muller, cosine branch). */
static inline double dq_rng_normal(uint64_t *s) {
    double u = dq_rng_uniform(s), v = dq_rng_uniform(s);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}
#endif
