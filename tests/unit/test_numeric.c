/* Numeric kernels: fp16/bf16 conversions (exhaustive round trips, IEEE
 * rounding) and the vectorisable exp against libm. */
#include <math.h>
#include <string.h>

#include "testutil.h"
#include "util/fastmath.h"
#include "util/half.h"

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

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_f16_roundtrip_all), cmocka_unit_test(test_f16_values),
                                       cmocka_unit_test(test_bf16), cmocka_unit_test(test_expf)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
