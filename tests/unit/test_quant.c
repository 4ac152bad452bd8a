/* Quantizers: code packing, the affine group quantizer, DASH-Q's least-squares
 * properties, and GPTQ against the IST-DASLab reference (fixture). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dashq_packed.h"
#include "quant/quant.h"
#include "testutil.h"
#include "util/half.h"

static uint32_t rng_state = 12345;
static float frand(void) { /* uniform in [0, 1) */
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 16777216.0f;
}
static float gauss(void) { return sqrtf(-2.0f * logf(frand() + 1e-12f)) * cosf(6.2831853f * frand()); }

static void test_packing(void **st) {
    (void)st;
    for (int bits = 2; bits <= 8; bits++) {
        size_t n = 1000;
        uint8_t q[1000], back[1000];
        for (size_t i = 0; i < n; i++) q[i] = (uint8_t)(i * 7 % (1u << bits));
        int32_t words[1000];
        size_t nw = dq_packed_words(n, bits);
        assert_int_equal(nw, (n + (32 / bits) - 1) / (32 / bits));
        dq_pack_codes(q, n, bits, words);
        dq_unpack_codes(words, n, bits, back);
        assert_memory_equal(q, back, n);
    }
    /* 3 bits: 10 codes per word, LSB first, top 2 bits unused */
    uint8_t q[10] = {1, 2, 3, 4, 5, 6, 7, 0, 1, 2};
    int32_t w;
    dq_pack_codes(q, 10, 3, &w);
    uint32_t want = 0;
    for (int k = 0; k < 10; k++) want |= (uint32_t)q[k] << (3 * k);
    assert_int_equal((uint32_t)w, want);
    assert_int_equal((uint32_t)w >> 30, 0);
}

static void test_minmax(void **st) {
    (void)st;
    float w[4] = {-1.0f, 0.5f, 2.0f, 0.25f};
    dq_group_params p = dq_minmax_params(w, 4, 15, false, false);
    assert_float_equal(p.scale, 3.0f / 15, 1e-7);
    assert_float_equal(p.zero, 5.0f, 0); /* round(1 / 0.2) */
    for (int i = 0; i < 4; i++)
        assert_true(fabsf(dq_dequant(dq_quant_code(w[i], p, 15), p) - w[i]) <= p.scale / 2 + 1e-6f);
    float pos[3] = {1.0f, 2.0f, 3.0f}; /* the range always includes 0, as in GPTQ */
    p = dq_minmax_params(pos, 3, 3, false, false);
    assert_float_equal(p.zero, 0, 0);
    p = dq_minmax_params(w, 4, 7, true, false); /* symmetric: zero at (maxq+1)/2 */
    assert_float_equal(p.zero, 4, 0);
    p = dq_minmax_params(w, 4, 15, false, true); /* fp16 scale */
    assert_true(p.scale != 3.0f / 15 && fabsf(p.scale - 0.2f) < 1e-4f);
}

static double weighted_err(const float *W, const float *h, const dq_qtensor *q, float *deq) {
    dq_qtensor_dequantize(q, deq);
    double e = 0;
    for (int r = 0; r < q->rows; r++)
        for (int c = 0; c < q->cols; c++) {
            double d = W[(size_t)r * q->cols + c] - deq[(size_t)r * q->cols + c];
            e += h[c] * d * d;
        }
    return e;
}

/* DASH-Q never does worse than RTN on its own objective, and its codes are a
 * fixed point: rounding with the stored parameters gives the stored codes. */
static void test_dashq_properties(void **st) {
    (void)st;
    const int rows = 64, cols = 256;
    float *W = malloc(sizeof(float) * rows * cols), *h = malloc(sizeof(float) * cols), *deq = malloc(sizeof(float) * rows * cols);
    for (int i = 0; i < rows * cols; i++) W[i] = gauss() * (i % 97 == 0 ? 8.0f : 1.0f); /* a few outliers */
    for (int j = 0; j < cols; j++) h[j] = j % 50 == 0 ? 0.0f : expf(2.0f * gauss()); /* dead channels, wide spread */
    for (int bits = 2; bits <= 4; bits++) {
        dq_quant_opts o = dq_quant_defaults(DQ_METHOD_DASHQ, bits, 32);
        dq_qtensor qd, qr;
        dq_error err = {0};
        assert_int_equal(dq_quantize_dashq(W, rows, cols, h, &o, 2, &qd, &err), DQ_OK);
        assert_int_equal(dq_quantize_rtn(W, rows, cols, &o, 2, &qr, &err), DQ_OK);
        double ed = weighted_err(W, h, &qd, deq), er = weighted_err(W, h, &qr, deq);
        if (!(ed < 0.9 * er)) fail_msg("%d-bit: DASH-Q weighted error %g not below RTN %g", bits, ed, er);
        /* more starting scales include the min-max start, so never do worse */
        dq_quant_opts om = o;
        om.starts = 21;
        dq_qtensor qm;
        assert_int_equal(dq_quantize_dashq(W, rows, cols, h, &om, 2, &qm, &err), DQ_OK);
        double em = weighted_err(W, h, &qm, deq);
        if (!(em <= ed * (1 + 1e-6))) fail_msg("%d-bit: 21 starts error %g above 1 start %g", bits, em, ed);
        dq_qtensor_free(&qm);
        int maxq = (1 << bits) - 1;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                size_t g = (size_t)r * qd.groups_per_row + c / 32;
                float v = rintf(W[(size_t)r * cols + c] / qd.scale[g] + qd.zero[g]);
                int code = v < 0 ? 0 : v > maxq ? maxq : (int)v;
                assert_int_equal(code, qd.q[(size_t)r * cols + c]);
            }
        /* parameters are exactly representable in fp16 (what the file stores) */
        for (size_t g = 0; g < (size_t)rows * qd.groups_per_row; g++) {
            assert_true(isfinite(qd.scale[g]) && qd.scale[g] > 0);
            assert_true(dq_f16_to_f32(dq_f32_to_f16(qd.scale[g])) == qd.scale[g]);
            assert_true(dq_f16_to_f32(dq_f32_to_f16(qd.zero[g])) == qd.zero[g]);
        }
        dq_qtensor_free(&qd);
        dq_qtensor_free(&qr);
    }
    free(W), free(h), free(deq);
}

/* Reweighting rules run and stay finite; group -1 and symmetric work too. */
static void test_dashq_variants(void **st) {
    (void)st;
    const int rows = 16, cols = 128;
    float W[16 * 128], h[128];
    for (int i = 0; i < rows * cols; i++) W[i] = gauss();
    for (int j = 0; j < cols; j++) h[j] = frand();
    dq_reweight rules[] = {DQ_REWEIGHT_NONE, DQ_REWEIGHT_HUBER, DQ_REWEIGHT_POWER};
    for (int k = 0; k < 3; k++)
        for (int g = 0; g < 2; g++) {
            dq_quant_opts o = dq_quant_defaults(DQ_METHOD_DASHQ, 3, g ? -1 : 64);
            o.reweight = rules[k];
            o.reweight_param = k == 2 ? 0.5f : 1.5f;
            o.sym = g && k == 0;
            dq_qtensor q;
            dq_error err = {0};
            assert_int_equal(dq_quantize_dashq(W, rows, cols, h, &o, 1, &q, &err), DQ_OK);
            for (size_t i = 0; i < (size_t)rows * q.groups_per_row; i++) assert_true(isfinite(q.scale[i]) && isfinite(q.zero[i]));
            dq_qtensor_free(&q);
        }
}

static float *gut6l_wq5_rows(int rows) {
    /* layer-5 wq of gut6l: after the embedding, 6 attention norms, then wq per layer */
    size_t n;
    char *data = tu_read(tu_shared("models/gut6l/gut6l.bin"), &n);
    size_t off = 28 + 4 * ((size_t)4096 * 256 + 6 * 256 + 5 * 256 * 256);
    float *W = malloc((size_t)rows * 256 * sizeof *W);
    memcpy(W, data + off, (size_t)rows * 256 * sizeof *W);
    free(data);
    return W;
}

static void test_gptq_matches_reference(void **st) {
    (void)st;
    float *W = gut6l_wq5_rows(64);
    float *H = (float *)tu_read(tu_fixture("gptq/H.f32"), NULL);
    struct { const char *tag; int bits, group; bool act; } cases[] = {
        {"w3g64", 3, 64, false}, {"w2g32_act", 2, 32, true}, {"w4g-1", 4, -1, false}};
    for (size_t i = 0; i < 3; i++) {
        dq_quant_opts o = dq_quant_defaults(DQ_METHOD_GPTQ, cases[i].bits, cases[i].group);
        o.act_order = cases[i].act;
        o.fp16_params = false; /* the reference keeps fp32 parameters */
        dq_qtensor q;
        dq_error err = {0};
        assert_int_equal(dq_quantize_gptq(W, 64, 256, H, &o, 2, &q, &err), DQ_OK);
        char path[64];
        snprintf(path, sizeof path, "gptq/%s.q", cases[i].tag);
        uint8_t *want = (uint8_t *)tu_read(tu_fixture(path), NULL);
        int same = 0;
        for (int k = 0; k < 64 * 256; k++) same += want[k] == q.q[k];
        if (same < 64 * 256 * 999 / 1000) fail_msg("%s: only %d of %d codes equal the reference", cases[i].tag, same, 64 * 256);
        snprintf(path, sizeof path, "gptq/%s.scale", cases[i].tag);
        float *ws = (float *)tu_read(tu_fixture(path), NULL);
        snprintf(path, sizeof path, "gptq/%s.zero", cases[i].tag);
        float *wz = (float *)tu_read(tu_fixture(path), NULL);
        for (int g = 0; g < 64 * q.groups_per_row; g++) {
            assert_true(fabsf(ws[g] - q.scale[g]) <= 1e-6f * fabsf(ws[g]));
            assert_true(wz[g] == q.zero[g]);
        }
        free(want), free(ws), free(wz);
        dq_qtensor_free(&q);
    }
    free(H);
    free(W);
}

static void test_bad_options(void **st) {
    (void)st;
    dq_error err = {0};
    dq_quant_opts o = dq_quant_defaults(DQ_METHOD_RTN, 9, 128);
    assert_int_equal(dq_quant_check(&o, 256, "x", &err), DQ_ERR_ARG);
    o = dq_quant_defaults(DQ_METHOD_RTN, 3, 48);
    assert_int_equal(dq_quant_check(&o, 256, "x", &err), DQ_ERR_ARG);
    o = dq_quant_defaults(DQ_METHOD_RTN, 3, 128);
    assert_int_equal(dq_quant_check(&o, 172, "model.layers.0.mlp.down_proj", &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "model.layers.0.mlp.down_proj"));
    /* a singular Hessian with no damping is refused, not silently used */
    float W[4 * 32], H[32 * 32] = {0};
    for (int i = 0; i < 4 * 32; i++) W[i] = gauss();
    for (int i = 0; i < 32; i++) H[i * 32 + i] = 1.0f;
    H[0] = -5.0f;
    o = dq_quant_defaults(DQ_METHOD_GPTQ, 3, 32);
    o.percdamp = 0;
    dq_qtensor q;
    assert_int_equal(dq_quantize_gptq(W, 4, 32, H, &o, 1, &q, &err), DQ_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "positive definite"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packing),          cmocka_unit_test(test_minmax),
        cmocka_unit_test(test_dashq_properties), cmocka_unit_test(test_dashq_variants),
        cmocka_unit_test(test_gptq_matches_reference), cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
