/* The quantizer table (quant/methods.h): lookup by name, unknown names, the
 * CLI's message from the table, and each row's statistic being the one its
 * solver reads (same codes as the direct call; a different statistic of that
 * kind changes them, so the solver does read it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/methods.h"
#include "testutil.h"

#define ROWS 16
#define COLS 64

static void lookup_by_name(void **state) {
    (void)state;
    for (int i = 0; i < DQ_METHOD_COUNT; i++) {
        const dq_method_info *mi = &DQ_METHODS[i];
        assert_int_equal(mi->method, i);
        assert_non_null(mi->solve);
        assert_true(mi->stat >= DQ_STAT_NONE && mi->stat < DQ_STAT_COUNT);
        assert_ptr_equal(dq_method_find(mi->name), mi);
        assert_ptr_equal(dq_method_of((dq_method)i), mi);
        assert_string_equal(dq_method_name((dq_method)i), mi->name);
    }
    assert_string_equal(dq_method_name(DQ_METHOD_RTN), "rtn");
    assert_string_equal(dq_method_name(DQ_METHOD_GPTQ), "gptq");
    assert_string_equal(dq_method_name(DQ_METHOD_DASHQ), "dashq");
    assert_string_equal(dq_method_name(DQ_METHOD_OAC), "oac");
    assert_string_equal(dq_method_names(), "rtn, gptq, dashq, oac");
    assert_int_equal(dq_method_of(DQ_METHOD_RTN)->stat, DQ_STAT_NONE);
    assert_int_equal(dq_method_of(DQ_METHOD_GPTQ)->stat, DQ_STAT_HESSIAN);
    assert_int_equal(dq_method_of(DQ_METHOD_DASHQ)->stat, DQ_STAT_DIAG);
    assert_int_equal(dq_method_of(DQ_METHOD_OAC)->stat, DQ_STAT_HESSIAN); /* GPTQ's solve on H_OAC */
    assert_int_equal(dq_quant_defaults(DQ_METHOD_OAC, 3, 64).curvature, DQ_CURVATURE_OAC);
    assert_int_equal(dq_quant_defaults(DQ_METHOD_GPTQ, 3, 64).curvature, DQ_CURVATURE_LAYER);
    assert_int_equal(dq_stat_floats(DQ_STAT_NONE, COLS), 0);
    assert_int_equal(dq_stat_floats(DQ_STAT_DIAG, COLS), COLS);
    assert_int_equal(dq_stat_floats(DQ_STAT_HESSIAN, COLS), COLS * COLS);
}

static void unknown_names(void **state) {
    (void)state;
    assert_null(dq_method_find("awq"));
    assert_null(dq_method_find(""));
    assert_null(dq_method_find("GPTQ")); /* exact spelling */
    assert_null(dq_method_find("dashq "));
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s quantize m --method awq -o x 2>&1", DQ_CLI);
    assert_int_not_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "unknown method awq (rtn, gptq, dashq, oac)"));
    free(out);
}

/* Each method takes exactly the options its row lists: flags, numbers in
 * range, enum names; anything else is refused by name, and the CLI's flags
 * go through the same table. */
static void method_options(void **state) {
    (void)state;
    dq_error err = {0};
    dq_quant_opts o = dq_quant_defaults(DQ_METHOD_GPTQ, 3, 64);
    assert_int_equal(dq_method_set_options(dq_method_find("gptq"), "act_order,percdamp=0.05,mse,sym=0", &o, &err), DQ_OK);
    assert_true(o.act_order && o.mse && !o.sym);
    assert_float_equal(o.percdamp, 0.05f, 0);
    assert_int_equal(dq_method_set_options(dq_method_find("gptq"), NULL, &o, &err), DQ_OK);
    dq_quant_opts d = dq_quant_defaults(DQ_METHOD_DASHQ, 3, 64);
    assert_int_equal(dq_method_set_options(dq_method_find("dashq"), "iters=3,reweight=huber,reweight_param=0.25,eps=0.1,starts=5",
                                           &d, &err), DQ_OK);
    assert_int_equal(d.max_iters, 3);
    assert_int_equal(d.reweight, DQ_REWEIGHT_HUBER);
    assert_float_equal(d.reweight_param, 0.25f, 0);
    assert_int_equal(d.starts, 5);
    static const struct {
        const char *method, *options, *want;
    } bad[] = {
        {"rtn", "act_order", "method rtn has no option 'act_order' (its options: sym, mse, starts=X)"},
        {"dashq", "percdamp=0.1", "method dashq has no option 'percdamp'"},
        {"gptq", "iters=3", "method gptq has no option 'iters'"},
        {"dashq", "iters=1.5", "dashq option iters expects an integer in [0, 1000], got '1.5'"},
        {"dashq", "iters", "dashq option iters needs a value"},
        {"dashq", "eps=2", "dashq option eps expects a number in [0, 1], got '2'"},
        {"dashq", "eps=nan", "expects a number"},
        {"dashq", "reweight=tukey", "dashq option reweight takes one of none, huber, power; got 'tukey'"},
        {"gptq", "act_order=yes", "gptq option act_order is a flag"},
        {"gptq", "percdamp=", "gptq option percdamp needs a value"},
        {"gptq", "mse,,sym", "method gptq has no option ''"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        dq_quant_opts q = dq_quant_defaults(DQ_METHOD_GPTQ, 3, 64);
        err = (dq_error){0};
        assert_int_equal(dq_method_set_options(dq_method_find(bad[i].method), bad[i].options, &q, &err), DQ_ERR_ARG);
        if (!strstr(err.msg, bad[i].want)) fail_msg("%s %s: '%s', want '%s'", bad[i].method, bad[i].options, err.msg, bad[i].want);
    }
    char cmd[512], *out = NULL; /* before the model is even opened */
    snprintf(cmd, sizeof cmd, "%s quantize /nonexistent --method rtn --act-order -o x 2>&1", DQ_CLI);
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "method rtn has no option 'act_order'"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s quantize /nonexistent --method gptq -o x 2>&1", DQ_CLI);
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "method gptq needs a calibration text (--calib FILE)"));
    free(out);
}

/* A statistic of kind k from X (T x COLS), mean over tokens, in an exactly
 * sized buffer (NULL for none). */
static float *make_stat(dq_stat_kind k, const float *X, int T) {
    size_t n = dq_stat_floats(k, COLS);
    if (!n) return NULL;
    float *s = calloc(n, sizeof *s);
    for (int i = 0; i < COLS; i++)
        for (int j = 0; j < COLS; j++) {
            if (k == DQ_STAT_DIAG && i != j) continue;
            double a = 0;
            for (int t = 0; t < T; t++) a += (double)X[t * COLS + i] * X[t * COLS + j];
            s[k == DQ_STAT_DIAG ? (size_t)i : (size_t)i * COLS + j] = (float)(a / T);
        }
    return s;
}

static dq_status direct(dq_method m, const float *W, const float *stat, const dq_quant_opts *o, dq_qtensor *q,
                        dq_error *err) {
    if (m == DQ_METHOD_GPTQ || m == DQ_METHOD_OAC) return dq_quantize_gptq(W, ROWS, COLS, stat, o, 1, q, err);
    if (m == DQ_METHOD_DASHQ) return dq_quantize_dashq(W, ROWS, COLS, stat, o, 1, q, err);
    return dq_quantize_rtn(W, ROWS, COLS, o, 1, q, err);
}

static float urand(void) { return (float)((double)rand() / RAND_MAX) - 0.5f; }

static void stat_matches_solver(void **state) {
    (void)state;
    enum { T = 256 };
    static float W[ROWS * COLS], X[T * COLS], Y[T * COLS];
    srand(7);
    for (int i = 0; i < ROWS * COLS; i++) W[i] = urand();
    for (int i = 0; i < T * COLS; i++) {
        X[i] = urand() * (float)(1 + (i % COLS) % 7); /* uneven channel scales */
        Y[i] = urand();
    }
    for (int m = 0; m < DQ_METHOD_COUNT; m++) {
        const dq_method_info *mi = &DQ_METHODS[m];
        dq_quant_opts o = dq_quant_defaults((dq_method)m, 3, 32);
        float *s = make_stat(mi->stat, X, T), *s2 = make_stat(mi->stat, Y, T);
        assert_int_equal(s == NULL, mi->stat == DQ_STAT_NONE);
        dq_qtensor a = {0}, b = {0}, c = {0};
        dq_error err = {0};
        assert_int_equal(mi->solve(W, ROWS, COLS, s, &o, 1, &a, &err), DQ_OK);
        assert_int_equal(direct((dq_method)m, W, s, &o, &b, &err), DQ_OK);
        assert_memory_equal(a.q, b.q, (size_t)ROWS * COLS);
        assert_memory_equal(a.scale, b.scale, (size_t)ROWS * a.groups_per_row * sizeof(float));
        assert_memory_equal(a.zero, b.zero, (size_t)ROWS * a.groups_per_row * sizeof(float));
        if (s2) { /* the solver reads the statistic: another one of the same kind changes the codes */
            assert_int_equal(mi->solve(W, ROWS, COLS, s2, &o, 1, &c, &err), DQ_OK);
            assert_true(memcmp(a.q, c.q, (size_t)ROWS * COLS) != 0);
            dq_qtensor_free(&c);
        }
        dq_qtensor_free(&a);
        dq_qtensor_free(&b);
        free(s);
        free(s2);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lookup_by_name),
        cmocka_unit_test(unknown_names), cmocka_unit_test(method_options),
        cmocka_unit_test(stat_matches_solver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
