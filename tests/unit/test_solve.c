/* dq_solve, the public one-matrix solver (the Python package's gptq/dashq/rtn):
 * the same codes as the method's own solver, padding as the pipeline pads,
 * block types that decode to what it reports, and errors that say what was
 * wrong. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/ggml_types.h"
#include "quant/quant.h"
#include "testutil.h"

static uint32_t rng_state = 777;
static float frand(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / 16777216.0f;
}
static float gauss(void) { return sqrtf(-2.0f * logf(frand() + 1e-12f)) * cosf(6.2831853f * frand()); }

/* A random rows x cols W and the Hessian mean x xᵀ of n correlated inputs
 * (a few channels ten times larger, one dead). */
static void random_problem(int rows, int cols, float **W, float **H, float **h) {
    int n = 4 * cols;
    float *X = malloc((size_t)n * cols * sizeof *X);
    *W = malloc((size_t)rows * cols * sizeof **W);
    *H = calloc((size_t)cols * cols, sizeof **H);
    *h = calloc((size_t)cols, sizeof **h);
    for (int i = 0; i < rows * cols; i++) (*W)[i] = 0.05f * gauss();
    for (int t = 0; t < n; t++) {
        float common = gauss();
        for (int j = 0; j < cols; j++)
            X[(size_t)t * cols + j] = j == 3 ? 0 : (gauss() + 0.5f * common) * (j % 17 == 0 ? 10.0f : 1.0f);
    }
    for (int i = 0; i < cols; i++)
        for (int j = 0; j < cols; j++) {
            double s = 0;
            for (int t = 0; t < n; t++) s += (double)X[(size_t)t * cols + i] * X[(size_t)t * cols + j];
            (*H)[(size_t)i * cols + j] = (float)(s / n);
        }
    for (int j = 0; j < cols; j++) (*h)[j] = (*H)[(size_t)j * cols + j];
    free(X);
}

typedef struct {
    uint8_t *q;
    float *scale, *zero, *deq;
    uint8_t *blocks;
    dq_solve_shape s;
} outputs;

static dq_status solve(const dq_solve_params *p, const float *W, int rows, int cols, const float *stat, outputs *o,
                       dq_error *err) {
    memset(o, 0, sizeof *o);
    dq_status st = dq_solve_plan(p, rows, cols, &o->s, err);
    if (st) return st;
    o->q = malloc((size_t)rows * o->s.qcols);
    o->scale = malloc((size_t)rows * o->s.groups_per_row * sizeof(float));
    o->zero = malloc((size_t)rows * o->s.groups_per_row * sizeof(float));
    o->deq = malloc((size_t)rows * cols * sizeof(float));
    o->blocks = o->s.row_bytes ? malloc((size_t)rows * o->s.row_bytes) : NULL;
    return dq_solve(p, W, rows, cols, stat, o->s.stat_floats, o->q, o->scale, o->zero, o->deq, o->blocks, err);
}

static void outputs_free(outputs *o) { free(o->q), free(o->scale), free(o->zero), free(o->deq), free(o->blocks); }

/* dq_solve gives the method's own solver's codes, scales and zeros, bit for bit. */
static void test_same_as_solver(void **st) {
    (void)st;
    int rows = 48, cols = 256;
    float *W, *H, *h;
    random_problem(rows, cols, &W, &H, &h);
    struct { const char *method; dq_method m; const float *stat; const char *options; } cases[] = {
        {"rtn", DQ_METHOD_RTN, NULL, "mse"},
        {"gptq", DQ_METHOD_GPTQ, H, "act_order,percdamp=0.05"},
        {"dashq", DQ_METHOD_DASHQ, h, "iters=5"}};
    for (size_t i = 0; i < 3; i++) {
        dq_solve_params p = dq_solve_default_params();
        p.method = cases[i].method, p.options = cases[i].options, p.bits = 3, p.group = 64, p.n_threads = 2;
        outputs o;
        dq_error err = {0};
        assert_int_equal(solve(&p, W, rows, cols, cases[i].stat, &o, &err), DQ_OK);
        dq_quant_opts q = dq_quant_defaults(cases[i].m, 3, 64);
        q.mse = i == 0, q.act_order = i == 1, q.percdamp = i == 1 ? 0.05f : q.percdamp, q.max_iters = i == 2 ? 5 : q.max_iters;
        dq_qtensor t;
        dq_status s = i == 0   ? dq_quantize_rtn(W, rows, cols, &q, 1, &t, &err)
                      : i == 1 ? dq_quantize_gptq(W, rows, cols, H, &q, 1, &t, &err)
                               : dq_quantize_dashq(W, rows, cols, h, &q, 1, &t, &err);
        assert_int_equal(s, DQ_OK);
        assert_memory_equal(o.q, t.q, (size_t)rows * cols);
        assert_memory_equal(o.scale, t.scale, (size_t)rows * 4 * sizeof(float));
        assert_memory_equal(o.zero, t.zero, (size_t)rows * 4 * sizeof(float));
        for (int k = 0; k < rows * cols; k++) {
            int g = k / 64; /* row-major groups: (row, group) = k / 64 */
            assert_true(o.deq[k] == o.scale[g] * ((float)o.q[k] - o.zero[g]));
        }
        assert_string_equal(o.s.stat, i == 0 ? "none" : i == 1 ? "hessian" : "diagonal");
        outputs_free(&o);
        dq_qtensor_free(&t);
    }
    free(W), free(H), free(h);
}

/* GPTQ with fp32 parameters equals the IST-DASLab reference on the
 * committed fixture (as test_quant checks the solver itself). */
static void test_gptq_reference_fixture(void **st) {
    (void)st;
    size_t n;
    char *data = tu_read(tu_shared("models/gut6l/gut6l.bin"), &n);
    float *W = malloc(64 * 256 * sizeof *W);
    memcpy(W, data + 28 + 4 * ((size_t)4096 * 256 + 6 * 256 + 5 * 256 * 256), 64 * 256 * sizeof *W);
    free(data);
    float *H = (float *)tu_read(tu_fixture("gptq/H.f32"), NULL);
    dq_solve_params p = dq_solve_default_params();
    p.method = "gptq", p.bits = 3, p.group = 64, p.fp32_params = true;
    outputs o;
    dq_error err = {0};
    assert_int_equal(solve(&p, W, 64, 256, H, &o, &err), DQ_OK);
    uint8_t *want = (uint8_t *)tu_read(tu_fixture("gptq/w3g64.q"), NULL);
    int same = 0;
    for (int k = 0; k < 64 * 256; k++) same += want[k] == o.q[k];
    assert_true(same >= 64 * 256 * 999 / 1000);
    float *wz = (float *)tu_read(tu_fixture("gptq/w3g64.zero"), NULL);
    assert_memory_equal(wz, o.zero, 64 * 4 * sizeof(float));
    free(want), free(wz), free(H), free(W);
    outputs_free(&o);
}

/* A width the group does not divide: zero columns with zero curvature, as
 * the pipeline pads (the same codes as padding by hand), Ŵ without them. */
static void test_padding(void **st) {
    (void)st;
    int rows = 16, cols = 200, qcols = 256;
    float *W, *H, *h;
    random_problem(rows, cols, &W, &H, &h);
    float *Wp = calloc((size_t)rows * qcols, sizeof *Wp), *Hp = calloc((size_t)qcols * qcols, sizeof *Hp);
    for (int r = 0; r < rows; r++) memcpy(Wp + r * qcols, W + r * cols, cols * sizeof *W);
    for (int i = 0; i < cols; i++) memcpy(Hp + i * qcols, H + i * cols, cols * sizeof *H);
    dq_solve_params p = dq_solve_default_params();
    p.method = "gptq", p.bits = 4, p.group = 64;
    outputs o;
    dq_error err = {0};
    assert_int_equal(solve(&p, W, rows, cols, H, &o, &err), DQ_OK);
    assert_int_equal(o.s.qcols, qcols);
    assert_int_equal(o.s.groups_per_row, 4);
    dq_quant_opts q = dq_quant_defaults(DQ_METHOD_GPTQ, 4, 64);
    q.pad = qcols - cols;
    dq_qtensor t;
    assert_int_equal(dq_quantize_gptq(Wp, rows, qcols, Hp, &q, 2, &t, &err), DQ_OK);
    assert_memory_equal(o.q, t.q, (size_t)rows * qcols);
    t.in_cols = cols;
    float *deq = malloc((size_t)rows * cols * sizeof *deq);
    dq_qtensor_dequantize(&t, deq);
    assert_memory_equal(o.deq, deq, (size_t)rows * cols * sizeof *deq);
    free(deq), free(Wp), free(Hp), free(W), free(H), free(h);
    dq_qtensor_free(&t);
    outputs_free(&o);
}

/* A llama.cpp block type: the blocks decode (as ggml decodes) to Ŵ; one
 * thread or two, the same bytes. */
static void test_block_type(void **st) {
    (void)st;
    int rows = 8, cols = 512;
    float *W, *H, *h;
    random_problem(rows, cols, &W, &H, &h);
    uint8_t *first = NULL;
    for (int threads = 1; threads <= 2; threads++) {
        dq_solve_params p = dq_solve_default_params();
        p.type = "Q4_K", p.n_threads = threads;
        outputs o;
        dq_error err = {0};
        assert_int_equal(solve(&p, W, rows, cols, h, &o, &err), DQ_OK);
        assert_int_equal(o.s.row_bytes, 2 * 144);
        assert_int_equal(o.s.group, 32);
        float *dec = malloc((size_t)rows * cols * sizeof *dec);
        for (int r = 0; r < rows; r++) dq_ggml_decode(DQ_GGML_Q4_K, o.blocks + r * o.s.row_bytes, cols, dec + r * cols);
        assert_memory_equal(dec, o.deq, (size_t)rows * cols * sizeof *dec);
        if (!first) first = malloc((size_t)rows * o.s.row_bytes), memcpy(first, o.blocks, (size_t)rows * o.s.row_bytes);
        else assert_memory_equal(first, o.blocks, (size_t)rows * o.s.row_bytes);
        free(dec);
        outputs_free(&o);
    }
    free(first), free(W), free(H), free(h);
}

static void expect_error(const dq_solve_params *p, const float *W, int rows, int cols, const float *stat, size_t nf,
                         dq_status code, const char *says) {
    dq_error err = {0};
    uint8_t q[64 * 64];
    dq_status got = dq_solve(p, W, rows, cols, stat, nf, q, NULL, NULL, NULL, NULL, &err);
    if (got != code) fail_msg("expected status %d for '%s', got %d: %s", code, says, got, err.msg);
    if (!strstr(err.msg, says)) fail_msg("expected '%s' in: %s", says, err.msg);
}

static void test_errors(void **st) {
    (void)st;
    float W[4 * 64], H[64 * 64] = {0}, h[64];
    for (int i = 0; i < 4 * 64; i++) W[i] = gauss();
    for (int j = 0; j < 64; j++) H[j * 64 + j] = h[j] = 1;
    dq_solve_params p = dq_solve_default_params();
    p.group = 32;
    p.method = "gptz";
    expect_error(&p, W, 4, 64, h, 64, DQ_ERR_ARG, "unknown method gptz");
    p.method = "gptq";
    expect_error(&p, W, 4, 64, h, 64, DQ_ERR_ARG, "needs the hessian");
    expect_error(&p, W, 4, 64, NULL, 0, DQ_ERR_ARG, "4096 floats for 64 columns");
    p.options = "act_ordr";
    expect_error(&p, W, 4, 64, H, 64 * 64, DQ_ERR_ARG, "no option 'act_ordr'");
    p.options = NULL;
    H[5 * 64 + 5] = -1;
    expect_error(&p, W, 4, 64, H, 64 * 64, DQ_ERR_ARG, "diag(H)[5] = -1 is negative");
    H[5 * 64 + 5] = NAN;
    expect_error(&p, W, 4, 64, H, 64 * 64, DQ_ERR_NUMERIC, "H[5, 5] is not finite");
    H[5 * 64 + 5] = 1;
    W[2 * 64 + 7] = INFINITY;
    expect_error(&p, W, 4, 64, H, 64 * 64, DQ_ERR_NUMERIC, "W[2, 7] is not finite");
    W[2 * 64 + 7] = 0;
    p.method = "rtn";
    expect_error(&p, W, 4, 64, h, 64, DQ_ERR_ARG, "takes no calibration statistic");
    p.bits = 9;
    expect_error(&p, W, 4, 64, NULL, 0, DQ_ERR_ARG, "bits must be 2..8");
    p.bits = 4, p.group = 48;
    expect_error(&p, W, 4, 64, NULL, 0, DQ_ERR_ARG, "group size must be");
    p.group = 32, p.type = "Q4_K";
    expect_error(&p, W, 4, 64, NULL, 0, DQ_ERR_ARG, "not a multiple of Q4_K's block of 256");
    p.type = "F16";
    expect_error(&p, W, 4, 64, NULL, 0, DQ_ERR_ARG, "F16 is not a llama.cpp block type");
    p.type = NULL;
    expect_error(&p, W, 0, 64, NULL, 0, DQ_ERR_ARG, "W is 0 x 64");
    expect_error(&p, W, 0x7fffffff, 0x7fffffff, NULL, 0, DQ_ERR_ARG, "at least 1"); /* past INT_MAX - 128 */
    expect_error(&p, W, 0x7fffffff, 0x7fff0000, NULL, 0, DQ_ERR_NOMEM, "would not fit in memory");
    p.method = "gptq", p.group = 0x40000001; /* a bad group is refused, not used to pad */
    expect_error(&p, W, 4, 0x7fff0000, NULL, 0, DQ_ERR_ARG, "group size must be");
    p.group = 32;
    float Z[64 * 64] = {0};
    expect_error(&p, W, 4, 64, Z, 64 * 64, DQ_ERR_NUMERIC, "the Hessian is zero");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_solver), cmocka_unit_test(test_gptq_reference_fixture),
        cmocka_unit_test(test_padding),        cmocka_unit_test(test_block_type),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
