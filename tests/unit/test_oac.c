/* Output-adaptive calibration (issue #16): the gradient pass's store against
 * the backward taps it is made of, the free regression check (uniform δ: the
 * token-level statistic is the layer Hessian, so GPTQ and DASH-Q give the
 * same codes bit for bit), both curvature forms end to end (thread
 * invariance, codes that differ from the layer curvature's), and the bad
 * inputs: zero curvature, an overflowing window. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/gradients.h"
#include "calib/pipeline.h"
#include "model/backward.h"
#include "testutil.h"

static dq_quant_result quantize(dq_model *m, const dq_calib_set *cs, dq_method method, dq_curvature curv,
                                dq_grad_store *grads, int nt) {
    dq_pipeline_opts o = {.q = dq_quant_defaults(method, 3, 64), .n_threads = nt, .grads = grads};
    o.q.curvature = curv;
    dq_quant_result r;
    dq_error err = {0};
    if (dq_quantize_model(m, cs, &o, &r, &err)) fail_msg("%s", err.msg);
    return r;
}

static bool same_codes(const dq_quant_result *a, const dq_quant_result *b) {
    assert_int_equal(a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const dq_qtensor *x = &a->layers[i].qt, *y = &b->layers[i].qt;
        size_t ng = (size_t)x->rows * x->groups_per_row;
        if (memcmp(x->q, y->q, (size_t)x->rows * x->cols) || memcmp(x->scale, y->scale, ng * sizeof(float)) ||
            memcmp(x->zero, y->zero, ng * sizeof(float)))
            return false;
    }
    return true;
}

/* ‖δ_t‖² = 4 everywhere: the token statistic is exactly 4·Σxxᵀ (a power of
 * two scales every float operation exactly), and GPTQ's relative damping and
 * DASH-Q's relative floor make the solve scale-free: identical codes. */
static void test_uniform_delta_is_layer_hessian(void **st) {
    (void)st;
    dq_calib_set cs = tu_book_windows("models/gut6l/tokenizer.bin", 2, 48, 3);
    dq_method methods[] = {DQ_METHOD_GPTQ, DQ_METHOD_DASHQ, DQ_METHOD_OAC};
    for (int k = 0; k < 3; k++) {
        dq_model *m1 = tu_model(tu_shared("models/gut6l/gut6l.bin")), *m2 = tu_model(tu_shared("models/gut6l/gut6l.bin"));
        dq_grad_store *g = NULL;
        dq_error err = {0};
        if (dq_grad_store_uniform(m2, &cs, 4.0f, &g, &err)) fail_msg("%s", err.msg);
        dq_quant_result a = quantize(m1, &cs, methods[k], DQ_CURVATURE_LAYER, NULL, 2);
        dq_quant_result b = quantize(m2, &cs, methods[k], DQ_CURVATURE_OAC_TOKEN, g, 2);
        if (!same_codes(&a, &b)) fail_msg("%s: uniform δ does not reproduce the layer statistic", dq_method_name(methods[k]));
        dq_quant_result_free(&a), dq_quant_result_free(&b);
        dq_grad_store_free(g);
        dq_model_free(m1), dq_model_free(m2);
    }
    dq_calib_free(&cs);
}

/* What the taps of one backward pass show for (layer, linear) on a window. */
typedef struct {
    int layer;
    const dq_site *site;
    float *x, *dy;
    int T, rows, cols;
} catch_ctx;

static void catch_tap(void *ctx, const dq_grad_data *d) {
    catch_ctx *c = ctx;
    if (d->layer != c->layer || d->site != c->site) return;
    c->T = d->T, c->rows = d->rows, c->cols = d->cols;
    c->x = malloc((size_t)d->T * d->cols * sizeof(float));
    c->dy = malloc((size_t)d->T * d->rows * sizeof(float));
    memcpy(c->x, d->x, (size_t)d->T * d->cols * sizeof(float));
    memcpy(c->dy, d->dy, (size_t)d->T * d->rows * sizeof(float));
}

/* The gradient pass over a lazily loaded model (one block held at a time,
 * block inputs and gradients kept aside; here in a spill file) fills the same
 * store as the in-memory pass, bit for bit: every ‖δ_t‖², every bf16 δ, and
 * the loss; the model's blocks are not loaded after. gut6l-hf: bf16, tied. */
static void test_streamed_store(void **st) {
    (void)st;
    const char *path = tu_shared("models/gut6l-hf");
    dq_model *e = tu_model(path), *m;
    dq_calib_set cs = tu_book_windows("models/gut6l-hf/tokenizer.json", 3, 48, 5);
    dq_error err = {0};
    if (dq_model_load_lazy(path, &m, &err)) fail_msg("%s", err.msg);
    dq_grad_store *a = NULL, *b = NULL, *r = NULL;
    if (dq_grad_store_build(e, &cs, DQ_GRADS_FULL, 2, NULL, NULL, &a, &err) ||
        dq_grad_store_build(m, &cs, DQ_GRADS_FULL, 2, tu_tmp(""), NULL, &b, &err) || /* block inputs in a file */
        dq_grad_store_build(m, &cs, DQ_GRADS_NORMS, 2, NULL, NULL, &r, &err))        /* in RAM */
        fail_msg("%s", err.msg);
    const dq_config *c = dq_model_config(m);
    for (int l = 0; l < c->n_layers; l++) assert_false(dq_model_block_ready(m, l));
    assert_true(dq_grad_store_loss(a) == dq_grad_store_loss(b));
    size_t cap = (size_t)cs.len * (c->hidden_dim > c->dim ? c->hidden_dim : c->dim);
    float *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y);
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < DQ_LIN_PER_BLOCK; k++)
            for (int w = 0; w < cs.n; w++) {
                size_t nd = (size_t)cs.len * dq_grad_store_rows(a, k);
                if (dq_grad_store_norms(a, l, k, w, x, &err) || dq_grad_store_norms(b, l, k, w, y, &err))
                    fail_msg("%s", err.msg);
                assert_memory_equal(x, y, (size_t)cs.len * sizeof *x);
                if (dq_grad_store_norms(r, l, k, w, y, &err)) fail_msg("%s", err.msg);
                assert_memory_equal(x, y, (size_t)cs.len * sizeof *x);
                if (dq_grad_store_delta(a, l, k, w, x, &err) || dq_grad_store_delta(b, l, k, w, y, &err))
                    fail_msg("%s", err.msg);
                if (memcmp(x, y, nd * sizeof *x)) fail_msg("block %d linear %d window %d: δ differs", l, k, w);
            }
    free(x), free(y);
    dq_grad_store_free(a), dq_grad_store_free(b), dq_grad_store_free(r);
    dq_calib_free(&cs);
    dq_model_free(m), dq_model_free(e);
}

/* The store's weighted rows for a linear against δ and x caught straight
 * from the backward pass: G = δᵀx to bf16 precision (δ is spilled in bf16),
 * ‖δ_t‖·x_t to float rounding. */
static void test_store_matches_backward(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    dq_calib_set cs = tu_book_windows("models/stories260K/tok512.bin", 2, 80, 7);
    dq_error err = {0};
    dq_grad_store *full = NULL, *norms = NULL;
    if (dq_grad_store_build(m, &cs, DQ_GRADS_FULL, 2, NULL, NULL, &full, &err) ||
        dq_grad_store_build(m, &cs, DQ_GRADS_NORMS, 2, NULL, NULL, &norms, &err))
        fail_msg("%s", err.msg);
    int lins[] = {DQ_LIN_Q, DQ_LIN_DOWN};
    for (int k = 0; k < 2; k++) {
        catch_ctx c = {.layer = 2, .site = dq_site_of_linear(lins[k])};
        dq_session *s = NULL;
        double loss;
        dq_grad_taps taps = {.fn = catch_tap, .ctx = &c};
        if (dq_session_new(m, cs.len, cs.len, 1, &s, &err) ||
            dq_session_keep_activations(s, DQ_ACTS_EVERY_BLOCK, &err) ||
            dq_loss_backward(s, cs.tokens + cs.len, cs.len, &taps, &loss, &err))
            fail_msg("%s", err.msg);
        int big = c.T > c.rows ? c.T : c.rows, n = 0;
        float *scr = malloc((size_t)c.T * c.rows * sizeof(float)), *out = malloc((size_t)big * c.cols * sizeof(float));
        if (dq_grad_store_weighted_rows(full, DQ_CURVATURE_OAC, 2, lins[k], 1, c.x, c.T, c.cols, scr, out, &n, 2, &err))
            fail_msg("%s", err.msg);
        assert_int_equal(n, c.rows);
        double num = 0, den = 0;
        for (int i = 0; i < c.rows; i++)
            for (int j = 0; j < c.cols; j++) {
                double g = 0;
                for (int t = 0; t < c.T; t++) g += (double)c.dy[(size_t)t * c.rows + i] * c.x[(size_t)t * c.cols + j];
                num += (out[(size_t)i * c.cols + j] - g) * (out[(size_t)i * c.cols + j] - g), den += g * g;
            }
        assert_true(den > 0);
        if (sqrt(num / den) > 4e-3) fail_msg("G = δᵀx from the store off by %.3g relative", sqrt(num / den));
        for (int who = 0; who < 2; who++) { /* the token form from either store */
            if (dq_grad_store_weighted_rows(who ? full : norms, DQ_CURVATURE_OAC_TOKEN, 2, lins[k], 1, c.x, c.T, c.cols,
                                            scr, out, &n, 2, &err))
                fail_msg("%s", err.msg);
            assert_int_equal(n, c.T);
            for (int t = 0; t < c.T; t++) {
                double w = 0;
                for (int i = 0; i < c.rows; i++) w += (double)c.dy[(size_t)t * c.rows + i] * c.dy[(size_t)t * c.rows + i];
                for (int j = 0; j < c.cols; j++)
                    assert_true(fabs(out[(size_t)t * c.cols + j] - sqrt(w) * c.x[(size_t)t * c.cols + j]) <=
                                1e-5 * sqrt(w) * fabs(c.x[(size_t)t * c.cols + j]) + 1e-30);
            }
        }
        free(scr), free(out), free(c.x), free(c.dy);
        dq_session_free(s);
    }
    assert_true(dq_grad_store_loss(full) > 0 && dq_grad_store_loss(full) == dq_grad_store_loss(norms));
    dq_grad_store_free(full), dq_grad_store_free(norms);
    dq_calib_free(&cs);
    dq_model_free(m);
}

/* Both forms end to end on gut6l: the same codes at 1 and 2 threads, and
 * not the layer curvature's codes (the statistic is really used). */
static void test_oac_end_to_end(void **st) {
    (void)st;
    dq_calib_set cs = tu_book_windows("models/gut6l/tokenizer.bin", 3, 48, 11);
    dq_model *m0 = tu_model(tu_shared("models/gut6l/gut6l.bin"));
    dq_quant_result layer = quantize(m0, &cs, DQ_METHOD_GPTQ, DQ_CURVATURE_LAYER, NULL, 2);
    dq_curvature forms[] = {DQ_CURVATURE_OAC, DQ_CURVATURE_OAC_TOKEN};
    for (int k = 0; k < 2; k++) {
        dq_model *m1 = tu_model(tu_shared("models/gut6l/gut6l.bin")), *m2 = tu_model(tu_shared("models/gut6l/gut6l.bin"));
        dq_quant_result a = quantize(m1, &cs, DQ_METHOD_OAC, forms[k], NULL, 1);
        dq_quant_result b = quantize(m2, &cs, DQ_METHOD_OAC, forms[k], NULL, 2);
        assert_true(same_codes(&a, &b));
        assert_false(same_codes(&a, &layer));
        assert_true(a.t_gradients > 0 && a.grad_loss > 0 && isfinite(a.grad_loss));
        for (int i = 0; i < a.n; i++) assert_true(isfinite(a.layers[i].rel_err) && a.layers[i].rel_err < 0.6);
        dq_quant_result_free(&a), dq_quant_result_free(&b);
        dq_model_free(m1), dq_model_free(m2);
    }
    dq_quant_result_free(&layer);
    dq_model_free(m0);
    /* refresh=1: block 0 sees the same full-precision gradients, every later
     * block gradients through the blocks already quantized */
    dq_model *m1 = tu_model(tu_shared("models/gut6l/gut6l.bin")), *m2 = tu_model(tu_shared("models/gut6l/gut6l.bin"));
    dq_quant_result once = quantize(m1, &cs, DQ_METHOD_OAC, DQ_CURVATURE_OAC_TOKEN, NULL, 2);
    dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_OAC, 3, 64), .n_threads = 2};
    o.q.curvature = DQ_CURVATURE_OAC_TOKEN, o.q.refresh = 1;
    dq_quant_result fresh;
    dq_error err = {0};
    if (dq_quantize_model(m2, &cs, &o, &fresh, &err)) fail_msg("%s", err.msg);
    assert_int_equal(once.n, fresh.n);
    for (int i = 0; i < once.n; i++) {
        const dq_qtensor *x = &once.layers[i].qt, *y = &fresh.layers[i].qt;
        bool same = !memcmp(x->q, y->q, (size_t)x->rows * x->cols);
        if (same != (once.layers[i].layer == 0))
            fail_msg("%s: refresh=1 %s", once.layers[i].name, same ? "changed nothing" : "changed block 0");
    }
    /* a count, not the pass's wall time: timings under a loaded CI machine prove nothing */
    assert_int_equal(once.grad_passes, 1);
    assert_int_equal(fresh.grad_passes, 6); /* before block 0, then before each of gut6l's blocks 1..5 */
    assert_true(fresh.grad_loss == once.grad_loss);
    dq_quant_result_free(&once), dq_quant_result_free(&fresh);
    dq_model_free(m1), dq_model_free(m2);
    dq_calib_free(&cs);
}

static void test_bad_inputs(void **st) {
    (void)st;
    dq_calib_set cs = tu_book_windows("models/gut6l/tokenizer.bin", 2, 32, 1);
    dq_model *m = tu_model(tu_shared("models/gut6l/gut6l.bin"));
    dq_grad_store *zero = NULL;
    dq_error err = {0};
    assert_int_equal(dq_grad_store_uniform(m, &cs, 0.0f, &zero, &err), DQ_OK);
    dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_OAC, 3, 64), .n_threads = 2, .grads = zero};
    o.q.curvature = DQ_CURVATURE_OAC_TOKEN;
    dq_quant_result r;
    assert_int_equal(dq_quantize_model(m, &cs, &o, &r, &err), DQ_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "model.layers.0.self_attn.q_proj: the output-adaptive curvature is zero"));
    o.q.curvature = DQ_CURVATURE_OAC; /* a store of norms cannot serve the Fisher form */
    assert_int_equal(dq_quantize_model(m, &cs, &o, &r, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "norms only"));
    dq_grad_store_free(zero);
    dq_model_free(m);
    dq_calib_free(&cs);

    const char *bad = tu_tmp("overflow.bin");
    tu_write_overflowing_stories(bad);
    m = tu_model(bad);
    dq_calib_set cs2 = tu_book_windows("models/stories260K/tok512.bin", 2, 16, 1);
    o = (dq_pipeline_opts){.q = dq_quant_defaults(DQ_METHOD_OAC, 3, 64), .n_threads = 2};
    assert_int_equal(dq_quantize_model(m, &cs2, &o, &r, &err), DQ_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "calibration window 0 (gradient pass)"));
    dq_model_free(m);
    dq_calib_free(&cs2);
}

/* Through the command line: OAC into both output kinds (a packed checkpoint
 * with act-order and MSE clipping, a GGUF K-quant file on llama.cpp's grid)
 * that evaluate, the curvature recorded, and the options refused where a
 * method does not take them. */
static void test_cli_outputs(void **st) {
    (void)st;
    char cmd[2048], *out = NULL;
    const char *model = tu_shared("models/gut6l/gut6l.bin"), *calib = tu_shared("data/gutenberg/calib/gutenberg_calib.txt");
    const char *text = tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt");
    snprintf(cmd, sizeof cmd,
             "%s quantize %s --method oac --act-order --mse --bits 3 --group 64 --calib %s --nsamples 2 --seqlen 64 "
             "-o %s --quiet && %s eval %s --ppl %s --ctx 64 --chunks 4 --quiet",
             DQ_CLI, model, calib, tu_tmp("oac-packed"), DQ_CLI, tu_tmp("oac-packed"), text);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "gradient pass:"));
    assert_non_null(strstr(out, "perplexity: "));
    free(out);
    char *cfg = tu_read(tu_tmp("oac-packed/dashq_config.json"), NULL);
    assert_non_null(strstr(cfg, "\"curvature\":\t\"oac\""));
    assert_non_null(strstr(cfg, "\"method\":\t\"oac\""));
    free(cfg);
    snprintf(cmd, sizeof cmd,
             "%s quantize %s --method dashq --curvature oac-token --format gguf --type Q3_K_S --calib %s --nsamples 2 "
             "--seqlen 64 -o %s --quiet && %s eval %s --ppl %s --ctx 64 --chunks 4 --quiet",
             DQ_CLI, model, calib, tu_tmp("dashq-oac.gguf"), DQ_CLI, tu_tmp("dashq-oac.gguf"), text);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "perplexity: "));
    free(out);
    snprintf(cmd, sizeof cmd, "%s quantize %s --method rtn --curvature oac --bits 3 --group 64 -o %s 2>&1", DQ_CLI,
             model, tu_tmp("x"));
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "method rtn has no option 'curvature'"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s quantize %s --method oac --curvature fisher --calib %s -o %s 2>&1", DQ_CLI, model,
             calib, tu_tmp("x"));
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "oac option curvature takes one of layer, oac, oac-token; got 'fisher'"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform_delta_is_layer_hessian),
        cmocka_unit_test(test_store_matches_backward),
        cmocka_unit_test(test_streamed_store),
        cmocka_unit_test(test_oac_end_to_end),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_cli_outputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
