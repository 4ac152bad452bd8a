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

/* A width the group does not divide, padded with zero columns of zero
 * curvature (what the pipeline does): the padding changes nothing for the
 * real weights and decodes to 0 where the zero point is an integer. */
static void test_padding(void **st) {
    (void)st;
    enum { R = 16, LIVE = 192, G = 128, QC = 256, PAD = QC - LIVE, T = 512 };
    float *W = calloc((size_t)R * QC, sizeof *W), *X = malloc((size_t)T * LIVE * sizeof *X);
    float *H = calloc((size_t)QC * QC, sizeof *H), *Hs = calloc((size_t)QC * QC, sizeof *Hs), *h = calloc(QC, sizeof *h);
    float *Wl = malloc((size_t)R * LIVE * sizeof *Wl), *deq = malloc((size_t)R * QC * sizeof *deq);
    for (int r = 0; r < R; r++)
        for (int j = 0; j < LIVE; j++) W[r * QC + j] = Wl[r * LIVE + j] = 0.02f * gauss();
    for (int i = 0; i < T * LIVE; i++) X[i] = gauss() * (1.0f + (float)(i % LIVE) / 32.0f);
    for (int i = 0; i < LIVE; i++)
        for (int j = 0; j < LIVE; j++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += (double)X[t * LIVE + i] * X[t * LIVE + j];
            H[i * QC + j] = (float)(s / T);
            Hs[i * QC + j] = ldexpf(H[i * QC + j], -20); /* tiny curvature: the padding's H_jj = 1 would dominate */
        }
    for (int j = 0; j < LIVE; j++) h[j] = H[j * QC + j];
    dq_error err = {0};

    /* RTN: the padded last group is the 64-wide group of its real weights */
    dq_quant_opts o = dq_quant_defaults(DQ_METHOD_RTN, 4, G), o64 = dq_quant_defaults(DQ_METHOD_RTN, 4, 64);
    o.pad = PAD;
    assert_int_equal(dq_quant_check(&o, QC, "w", &err), DQ_OK);
    dq_qtensor p, u;
    assert_int_equal(dq_quantize_rtn(W, R, QC, &o, 1, &p, &err), DQ_OK);
    assert_int_equal(dq_quantize_rtn(Wl, R, LIVE, &o64, 1, &u, &err), DQ_OK);
    for (int r = 0; r < R; r++) {
        assert_true(p.scale[r * 2 + 1] == u.scale[r * 3 + 2] && p.zero[r * 2 + 1] == u.zero[r * 3 + 2]);
        assert_memory_equal(p.q + r * QC + 128, u.q + r * LIVE + 128, 64);
        for (int j = LIVE; j < QC; j++) assert_true(p.q[r * QC + j] == (uint8_t)p.zero[r * 2 + 1]);
    }
    p.in_cols = LIVE; /* dequantize keeps the layer's own columns */
    dq_qtensor_dequantize(&p, deq);
    for (int r = 0; r < R; r++)
        for (int j = 0; j < LIVE; j++)
            assert_true(deq[r * LIVE + j] == p.scale[r * 2 + j / G] * ((float)p.q[r * QC + j] - p.zero[r * 2 + j / G]));
    dq_qtensor_free(&p), dq_qtensor_free(&u);

    /* DASH-Q (no eps floor): each group solved on its real weights only */
    o = dq_quant_defaults(DQ_METHOD_DASHQ, 3, G), o64 = dq_quant_defaults(DQ_METHOD_DASHQ, 3, 64);
    o.eps = o64.eps = 0;
    o.pad = PAD;
    assert_int_equal(dq_quantize_dashq(W, R, QC, h, &o, 1, &p, &err), DQ_OK);
    float *Wt = malloc((size_t)R * 64 * sizeof *Wt);
    for (int r = 0; r < R; r++) memcpy(Wt + r * 64, Wl + r * LIVE + 128, 64 * sizeof *Wt);
    assert_int_equal(dq_quantize_dashq(Wt, R, 64, h + 128, &o64, 1, &u, &err), DQ_OK);
    for (int r = 0; r < R; r++) {
        assert_true(p.scale[r * 2 + 1] == u.scale[r] && p.zero[r * 2 + 1] == u.zero[r]);
        assert_memory_equal(p.q + r * QC + 128, u.q + r * 64, 64);
        int z = (int)rintf(p.zero[r * 2 + 1]), zc = z < 0 ? 0 : z > 7 ? 7 : z; /* padding: the code of 0 */
        for (int j = LIVE; j < QC; j++) assert_int_equal(p.q[r * QC + j], zc);
    }
    free(Wt);
    dq_qtensor_free(&p), dq_qtensor_free(&u);

    /* GPTQ: scale-invariant in H (damping relative to the real columns'
     * diagonal, not to the padding's dead-column 1s); padding decodes to 0 */
    o = dq_quant_defaults(DQ_METHOD_GPTQ, 3, G);
    o.pad = PAD;
    for (int act = 0; act < 2; act++) {
        o.act_order = act;
        assert_int_equal(dq_quantize_gptq(W, R, QC, H, &o, 1, &p, &err), DQ_OK);
        assert_int_equal(dq_quantize_gptq(W, R, QC, Hs, &o, 1, &u, &err), DQ_OK);
        assert_memory_equal(p.q, u.q, (size_t)R * QC);
        assert_memory_equal(p.scale, u.scale, (size_t)R * 2 * sizeof(float));
        assert_memory_equal(p.zero, u.zero, (size_t)R * 2 * sizeof(float));
        for (int r = 0; r < R; r++)
            for (int j = LIVE; j < QC; j++) assert_true(p.q[r * QC + j] == (uint8_t)p.zero[r * 2 + 1]);
        dq_qtensor_free(&p), dq_qtensor_free(&u);
    }
    o.pad = G; /* padding must be less than a group */
    assert_int_equal(dq_quant_check(&o, QC, "w", &err), DQ_ERR_ARG);
    free(W), free(X), free(H), free(Hs), free(h), free(Wl), free(deq);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packing),          cmocka_unit_test(test_minmax),
        cmocka_unit_test(test_dashq_properties), cmocka_unit_test(test_dashq_variants),
        cmocka_unit_test(test_gptq_matches_reference), cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_padding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
