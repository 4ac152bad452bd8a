/* exp for the hot loops (softmax, SiLU): branch-free, no calls, so the
 * compiler vectorises it. exp(x) = 2^n * e^r with r = x - n*ln2 in
 * [-ln2/2, ln2/2] and a degree-6 polynomial for e^r (relative error < 2e-7,
 * tested against libm). Inputs below -87.3 flush to 0; above 88.7 give +inf; NaN stays NaN. */
#ifndef DQ_FASTMATH_H
#define DQ_FASTMATH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float dq_expf(float x0) {
    float x = x0 != x0 ? 0.0f : x0; /* NaN: computed on 0, returned as NaN below */
    x = x < -87.33f ? -87.33f : x;
    x = x > 88.72f ? 88.72f : x;
    /* round to nearest by adding 1.5*2^23: vectorises, unlike roundf */
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693145752f; /* ln2 split in two for exact reduction */
    r = r - n * 1.42860677e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return x0 != x0 ? x0 : p * scale;
}

/* Whether any of n values is inf or NaN: x - x is 0 for every finite x and
 * NaN otherwise, and NaN survives the sum. Branch-free, so it vectorises:
 * O(dim) per token and block against a block's O(dim²) matmuls. */
static inline bool dq_any_nonfinite(const float *x, size_t n) {
    float z = 0.0f;
#pragma omp simd reduction(+ : z)
    for (size_t i = 0; i < n; i++) z += x[i] - x[i];
    return z != z;
}
#endif
