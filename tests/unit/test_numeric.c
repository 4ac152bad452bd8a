/* Numeric kernels: fp16/bf16 conversions (exhaustive round trips, IEEE
 * rounding) and the vectorisable exp against libm. */
#include <math.h>
#include <string.h>

#include "testutil.h"
#include "util/dd.h"
#include "util/fastmath.h"
#include "util/half.h"
#include "util/threads.h"

static void test_f16_roundtrip_all(void **st) {
    (void)st;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dq_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        assert_int_equal(dq_f32_to_f16(f), h);
    }
}

static void test_f16_values(void **st) {
    (void)st;
    assert_true(dq_f16_to_f32(0x3c00) == 1.0f);
    assert_true(dq_f16_to_f32(0xc000) == -2.0f);
    assert_true(dq_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(dq_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    assert_true(isinf(dq_f16_to_f32(0x7c00)));
    assert_int_equal(dq_f32_to_f16(65520.0f), 0x7c00);    /* rounds up to inf */
    assert_int_equal(dq_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(dq_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00); /* tie to even */
    assert_int_equal(dq_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);
    assert_int_equal(dq_f32_to_f16(ldexpf(1.0f, -25)), 0x0000); /* tie to even (zero) */
    assert_int_equal(dq_f32_to_f16(ldexpf(1.5f, -25)), 0x0001);
    assert_int_equal(dq_f32_to_f16(-0.0f), 0x8000);
    assert_true(isnan(dq_f16_to_f32(dq_f32_to_f16(NAN))));
}

static void test_bf16(void **st) {
    (void)st;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = dq_bf16_to_f32((uint16_t)h);
        if (!isnan(f)) assert_int_equal(dq_f32_to_bf16(f), h);
    }
    assert_int_equal(dq_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(dq_f32_to_bf16(dq_bits_to_f32(0x3f808000)), 0x3f80); /* tie to even */
    assert_int_equal(dq_f32_to_bf16(dq_bits_to_f32(0x3f818000)), 0x3f82);
    assert_true(isnan(dq_bf16_to_f32(dq_f32_to_bf16(NAN))));
}

static void test_expf(void **st) {
    (void)st;
    double worst = 0;
    for (float x = -87.0f; x < 88.0f; x += 0.00037f) {
        double want = exp((double)x), rel = fabs(dq_expf(x) - want) / want;
        worst = rel > worst ? rel : worst;
    }
    if (worst > 3e-7) fail_msg("dq_expf relative error %.3g", worst);
    assert_true(dq_expf(0.0f) == 1.0f);
    assert_true(dq_expf(-1000.0f) < 1e-37f);
    assert_true(dq_expf(-INFINITY) < 1e-37f);
    assert_true(dq_expf(1000.0f) > 1e38f);
}

/* The statistics' double-double sums (util/dd.h): fp32 terms spanning 2^60,
 * of both signs, summed in any order or as partial sums merged (ranks) give
 * the same pair, where a plain double sum does not; a sum that rounds is
 * flagged. */
static uint64_t lcg(uint64_t *x) { return *x = *x * 6364136223846793005ull + 1442695040888963407ull; }

static void dd_of(const float *v, const int *order, int n, int parts, double out[2], bool *inexact) {
    double acc[2] = {0, 0};
    for (int p = 0; p < parts; p++) { /* a rank's share, then merged in */
        double part[2] = {0, 0};
        for (int i = n * p / parts; i < n * (p + 1) / parts; i++) dq_dd_add(part, v[order[i]], inexact);
        dq_dd_merge(acc, part, inexact);
    }
    out[0] = acc[0], out[1] = acc[1];
}

static void test_dd_order_independent(void **st) {
    (void)st;
    enum { N = 512 };
    float v[N];
    int order[N];
    uint64_t x = 42;
    for (int i = 0; i < N; i++) {
        int e = (int)(lcg(&x) >> 58) - 32; /* 2^-32 .. 2^31 */
        v[i] = ldexpf((float)((lcg(&x) >> 40) | 1) / 16777216.0f, e) * ((lcg(&x) >> 63) ? -1.f : 1.f);
        order[i] = i;
    }
    bool inexact = false, plain_differs = false;
    double ref[2];
    dd_of(v, order, N, 1, ref, &inexact);
    double plain_ref = 0;
    for (int i = 0; i < N; i++) plain_ref += v[i];
    for (int trial = 0; trial < 50; trial++) {
        for (int i = N - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(lcg(&x) % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        double got[2], plain = 0;
        dd_of(v, order, N, 1 + trial % 7, got, &inexact);
        assert_memory_equal(got, ref, sizeof got);
        for (int i = 0; i < N; i++) plain += v[order[i]];
        plain_differs |= plain != plain_ref;
    }
    assert_false(inexact);
    assert_true(plain_differs); /* the test can fail: order matters to a plain sum */
    double p[2] = {0, 0}; /* terms 2^2000 apart: the sum rounds, and says so */
    dq_dd_add(p, 1e300, &inexact);
    dq_dd_add(p, 1e-300, &inexact);
    assert_false(inexact);
    dq_dd_add(p, 1.0, &inexact);
    assert_true(inexact);
}

/* The default thread count follows OpenMP's nthreads-var (OMP_NUM_THREADS or
 * omp_set_num_threads), not the core count: omp_get_num_procs() here made
 * OMP_NUM_THREADS=1 run on every core. */
static void test_default_threads(void **st) {
    (void)st;
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    assert_int_equal(dq_threads_or_default(0), 1);
    assert_int_equal(dq_threads_or_default(-1), 1);
    omp_set_num_threads(3);
    assert_int_equal(dq_threads_or_default(0), 3);
    assert_int_equal(dq_threads_or_default(2), 2);
    omp_set_num_threads(saved);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_f16_roundtrip_all), cmocka_unit_test(test_f16_values),
                                       cmocka_unit_test(test_bf16), cmocka_unit_test(test_expf),
                                       cmocka_unit_test(test_dd_order_independent),
                                       cmocka_unit_test(test_default_threads)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
