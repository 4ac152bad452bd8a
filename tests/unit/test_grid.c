/* llama.cpp block grids: our encoder reproduces ggml's bytes from the
 * parameters and codes they hold; fitted blocks decode to exactly the values
 * the quantizer optimised; the refined fit never loses to min-max rounding;
 * llama.cpp's per-tensor type rules; and a GGUF written by `quantize
 * --format gguf` is the model the pipeline evaluated, bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/pipeline.h"
#include "export/gguf_export.h"
#include "quant/grid.h"
#include "quant/presets.h"
#include "testutil.h"
#include "util/half.h"

#define N (4 * 512)

static const dq_ggml_type QUANT_TYPES[] = {DQ_GGML_Q4_0, DQ_GGML_Q4_1, DQ_GGML_Q5_0, DQ_GGML_Q5_1,
                                           DQ_GGML_Q8_0, DQ_GGML_IQ4_NL, DQ_GGML_Q2_K, DQ_GGML_Q3_K,
                                           DQ_GGML_Q4_K, DQ_GGML_Q5_K, DQ_GGML_Q6_K};
#define N_TYPES (sizeof QUANT_TYPES / sizeof QUANT_TYPES[0])


/* ggml's blocks → (parameters, codes) → our encoder → the same bytes. */
static void test_encoder_matches_ggml(void **st) {
    (void)st;
    for (size_t i = 0; i < N_TYPES; i++) {
        dq_ggml_type t = QUANT_TYPES[i];
        const dq_ggml_type_info *info = dq_ggml_info(t);
        const dq_grid *g = dq_grid_of(t);
        size_t nb;
        uint8_t *blocks = (uint8_t *)tu_read(tu_ggml_fixture(info->name, "bin"), &nb);
        float *y = (float *)tu_read(tu_ggml_fixture(info->name, "f32"), NULL);
        size_t n_blocks = N / (size_t)info->block;
        dq_ggml_block *p = malloc(n_blocks * sizeof *p);
        uint8_t *q = malloc(N), *got = malloc(nb);
        for (size_t b = 0; b < n_blocks; b++) {
            dq_ggml_block_params(t, blocks + b * (size_t)info->bytes, &p[b]);
            for (int j = 0; j < info->block; j++) {
                size_t e = b * (size_t)info->block + (size_t)j;
                dq_grid_step s = dq_grid_step_of(g, &p[b], j / g->sub);
                q[e] = (uint8_t)dq_grid_code(g, s, y[e]);
                if (dq_grid_value(g, s, q[e]) != y[e]) fail_msg("%s element %zu: no code gives ggml's value", info->name, e);
            }
        }
        dq_ggml_encode(t, q, p, N, got);
        for (size_t k = 0; k < nb; k++)
            if (got[k] != blocks[k]) fail_msg("%s: byte %zu (block %zu) is %02x, ggml wrote %02x", info->name, k, k / (size_t)info->bytes, got[k], blocks[k]);
        free(p), free(q), free(got), free(blocks), free(y);
    }
}

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }
static float gauss(uint32_t *s) {
    float v = 0;
    for (int k = 0; k < 4; k++) v += (float)(lcg(s) >> 8) / 16777216.0f - 0.5f;
    return v;
}

static double objective(const dq_grid *g, const float *w, const float *a, const dq_ggml_block *p, const uint8_t *q) {
    double e = 0;
    for (int j = 0; j < g->block; j++) {
        double r = w[j] - dq_grid_value(g, dq_grid_step_of(g, p, j / g->sub), q[j]);
        e += a[j] * r * r;
    }
    return e;
}

/* llama.cpp's IQ4_NL block search with weights a (ggml-quants.c,
 * quantize_row_iq4_nl_impl, ntry = 7): scales max/(values[0] + t), t in
 * [-7, 7], each with the nearest code per weight and its weighted
 * least-squares scale, the best kept; returns its weighted error. */
static double iq4nl_llamacpp(const float *w, const float *a, int n) {
    const int8_t *v = dq_iq4nl_values;
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(w[j]) > amax) amax = fabsf(w[j]), max = w[j];
    if (amax == 0) return 0;
    double best_e = INFINITY;
    for (int t = -7; t <= 7; t++) {
        float id = ((float)t + v[0]) / max;
        double sqx = 0, sq2 = 0;
        int q[32];
        for (int j = 0; j < n; j++) {
            int b = 0;
            for (int k = 1; k < 16; k++)
                if (fabsf(id * w[j] - v[k]) < fabsf(id * w[j] - v[b])) b = k;
            q[j] = b, sqx += a[j] * v[b] * w[j], sq2 += a[j] * v[b] * v[b];
        }
        double d = sq2 > 0 ? sqx / sq2 : 0, e = 0;
        for (int j = 0; j < n; j++) e += a[j] * (w[j] - d * v[q[j]]) * (w[j] - d * v[q[j]]);
        if (e < best_e) best_e = e;
    }
    return best_e;
}

/* llama.cpp's make_qx_quants (ggml-quants.c, rmse_type 1 with weights qw):
 * codes l in [-nmax, nmax-1] for 19 inverse scales -(nmax + 0.1·is)/max, each
 * with its weighted least-squares scale; the best kept. L gets l + nmax. */
static float qx_llamacpp(int n, int nmax, const float *x, int8_t *L, const float *qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0;
    }
    float scale = 0, best = 0;
    for (int is = 0; is <= 18; is++) { /* is = 0 first: llama.cpp's start, then -9..9 without 0 */
        int t = is == 0 ? 0 : is <= 9 ? is - 10 : is - 9;
        float iscale = -((float)nmax + 0.1f * (float)t) / max, sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = (int)lrintf(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            sumlx += qw[i] * x[i] * (float)l, suml2 += qw[i] * (float)(l * l);
        }
        if (is == 0 || (suml2 > 0 && sumlx * sumlx > best * suml2)) {
            for (int i = 0; i < n; i++) {
                int l = (int)lrintf(iscale * x[i]);
                L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = suml2 > 0 ? sumlx / suml2 : 0, best = scale * sumlx;
        }
    }
    return scale;
}

/* llama.cpp's Q3_K block with an importance matrix (quantize_row_q3_K_impl):
 * each 16-weight sub-block's scale by make_qx_quants, the 16 scales onto 6
 * bits by make_qx_quants weighted by the sub-blocks' weight sums, the codes
 * rounded again with the stored scales; returns the weighted error with the
 * weights a it derives (qw · sqrt(σ² + x²), σ² = 2·mean x²), written to a. */
static double q3k_llamacpp(const float *x, const float *qw, float *a) {
    float sumx2 = 0, scales[16], sw[16];
    int8_t L[256], Ls[16];
    for (int j = 0; j < 256; j++) sumx2 += x[j] * x[j];
    float sigma2 = 2 * sumx2 / 256;
    for (int j = 0; j < 16; j++) {
        sw[j] = 0;
        for (int l = 0; l < 16; l++) a[16 * j + l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]), sw[j] += a[16 * j + l];
        scales[j] = qx_llamacpp(16, 4, x + 16 * j, L + 16 * j, a + 16 * j);
    }
    float d = dq_f16_to_f32(dq_f32_to_f16(qx_llamacpp(16, 32, scales, Ls, sw)));
    double e = 0;
    for (int j = 0; j < 16; j++) {
        float dl = d * (float)(Ls[j] - 32);
        for (int i = 0; i < 16; i++) {
            int l = dl != 0 ? (int)lrintf(x[16 * j + i] / dl) : 0;
            l = l < -4 ? -4 : l > 3 ? 3 : l;
            double r = x[16 * j + i] - (double)dl * l;
            e += a[16 * j + i] * r * r;
        }
    }
    return e;
}

/* Our Q3_K fit (16 starts, sub-scales rounded then refit) against llama.cpp's
 * imatrix search on the same weights: level. Measured: 1.003 of its error,
 * so the fit is not why llama.cpp's imatrix Q3_K_M beat our files on SmolLM2
 * (README); the bound catches a fit that falls behind. */
static void test_q3k_search(void **st) {
    (void)st;
    const dq_grid *g = dq_grid_of(DQ_GGML_Q3_K);
    uint32_t s = 13;
    double ours = 0, ref = 0;
    for (int trial = 0; trial < 1000; trial++) {
        float w[256], qw[256], a[256];
        uint8_t q[256];
        dq_ggml_block p;
        for (int j = 0; j < 256; j++) w[j] = 0.02f * gauss(&s) * (trial % 4 ? 1 : 1 + 3 * (j == trial % 256)), qw[j] = expf(gauss(&s));
        ref += q3k_llamacpp(w, qw, a);
        ours += dq_grid_fit(g, w, a, true, DQ_GRID_STARTS, &p, q);
    }
    printf("Q3_K, 1000 blocks: weighted error ours %.6g, llama.cpp's search %.6g (%.3f)\n", ours, ref, ours / ref);
    assert_true(ours <= 1.01 * ref);
}

/* Our calibrated IQ4_NL fit (DASH-Q's and GPTQ's, 16 starts) against
 * llama.cpp's own scale search on the same weights: no worse on average.
 * Measured: 0.978 of its error; with the starts one level unit apart (±0.8 %
 * of the scale) 1.023. */
static void test_iq4nl_search(void **st) {
    (void)st;
    const dq_grid *g = dq_grid_of(DQ_GGML_IQ4_NL);
    uint32_t s = 11;
    double ours = 0, ref = 0;
    for (int trial = 0; trial < 2000; trial++) {
        float w[32], a[32];
        uint8_t q[32];
        dq_ggml_block p;
        for (int j = 0; j < 32; j++) w[j] = 0.02f * gauss(&s) * (trial % 4 ? 1 : 1 + 3 * (j == trial % 32)), a[j] = expf(gauss(&s));
        ours += dq_grid_fit(g, w, a, true, DQ_GRID_STARTS, &p, q);
        ref += iq4nl_llamacpp(w, a, 32);
    }
    printf("IQ4_NL, 2000 blocks: weighted error ours %.6g, llama.cpp's search %.6g (%.3f)\n", ours, ref, ours / ref);
    assert_true(ours <= ref);
}

/* Refined fits: within the format's ranges, never worse than min-max
 * rounding on its own objective, and the bytes decode to the grid values. */
static void test_fit(void **st) {
    (void)st;
    uint32_t s = 7;
    for (size_t i = 0; i < N_TYPES; i++) {
        const dq_grid *g = dq_grid_of(QUANT_TYPES[i]);
        double naive_sum = 0, refined_sum = 0;
        for (int trial = 0; trial < 50; trial++) {
            float w[256], a[256], dec[256];
            uint8_t q0[256], q1[256], bytes[256];
            dq_ggml_block p0, p1;
            for (int j = 0; j < g->block; j++)
                w[j] = 0.02f * gauss(&s) + (trial % 5 == 0 ? 0.01f : 0), a[j] = expf(3 * gauss(&s));
            dq_grid_fit(g, w, a, false, 1, &p0, q0);
            double e1 = dq_grid_fit(g, w, a, true, 4, &p1, q1);
            double e0 = objective(g, w, a, &p0, q0);
            assert_true(fabs(objective(g, w, a, &p1, q1) - e1) <= 1e-9 + 1e-6 * e1);
            naive_sum += e0, refined_sum += e1;
            for (int j = 0; j < g->block; j++) assert_true(q1[j] <= g->maxq);
            for (int k = 0; g->sc_hi && k < g->block / g->sub; k++) {
                assert_true(p1.sc[k] >= g->sc_lo && p1.sc[k] <= g->sc_hi);
                assert_true(p1.m[k] <= g->m_hi);
            }
            dq_ggml_encode(g->type, q1, &p1, (size_t)g->block, bytes);
            dq_ggml_decode(g->type, bytes, (size_t)g->block, dec);
            for (int j = 0; j < g->block; j++) {
                float v = dq_grid_value(g, dq_grid_step_of(g, &p1, j / g->sub), q1[j]);
                if (fabsf(dec[j] - v) > 1e-6f * fabsf(v) + 1e-12f)
                    fail_msg("%s: decoded %g, grid value %g", dq_ggml_info(g->type)->name, dec[j], v);
            }
        }
        if (!(refined_sum < 0.97 * naive_sum))
            fail_msg("%s: refined fit %g is not below min-max rounding %g", dq_ggml_info(g->type)->name, refined_sum, naive_sum);
    }
}

static dq_config gut6l_config(void) {
    return (dq_config){.dim = 256, .hidden_dim = 768, .n_layers = 6, .n_heads = 8, .n_kv_heads = 4, .head_dim = 32,
                       .vocab_size = 4096, .tied_embeddings = true};
}

/* h_j · sqrt(σ² + w_j²) with σ² the mean square: w = (3, 4), h = (1, 2)
 * gives σ² = 12.5, so (sqrt(21.5), 2·sqrt(28.5)). */
static void test_importance(void **st) {
    (void)st;
    const float w[2] = {3, 4}, h[2] = {1, 2};
    float out[2];
    dq_grid_importance(w, h, 2, out);
    assert_true(fabsf(out[0] - sqrtf(21.5f)) < 1e-5f);
    assert_true(fabsf(out[1] - 2 * sqrtf(28.5f)) < 1e-5f);
}

static void test_presets(void **st) {
    (void)st;
    dq_config c = gut6l_config();
    dq_type_plan p;
    dq_error err = {0};
    assert_int_equal(dq_type_plan_make("Q4_K_M", false, true, &c, &p, &err), DQ_OK);
    for (int l = 0; l < 6; l++) { /* use_more_bits(l, 6): layers 2 and 5 */
        dq_ggml_type more = l == 2 || l == 5 ? DQ_GGML_Q6_K : DQ_GGML_Q4_K;
        assert_int_equal(p.linear[l * DQ_LIN_PER_BLOCK + DQ_LIN_V], more);
        assert_int_equal(p.linear[l * DQ_LIN_PER_BLOCK + DQ_LIN_DOWN], more);
        assert_int_equal(p.linear[l * DQ_LIN_PER_BLOCK + DQ_LIN_Q], DQ_GGML_Q4_K);
    }
    assert_int_equal(p.head, DQ_GGML_Q6_K);
    assert_int_equal(p.embed, DQ_GGML_Q6_K); /* tied: the embedding is the head */
    assert_int_equal(p.file_type, 15);
    dq_type_plan_free(&p);
    assert_int_equal(dq_type_plan_make("Q2_K", false, true, &c, &p, &err), DQ_OK);
    assert_int_equal(p.linear[DQ_LIN_V], DQ_GGML_Q3_K);
    assert_int_equal(p.linear[DQ_LIN_O], DQ_GGML_Q3_K);
    assert_int_equal(p.linear[DQ_LIN_DOWN], DQ_GGML_Q3_K);
    assert_int_equal(p.linear[DQ_LIN_UP], DQ_GGML_Q2_K);
    dq_type_plan_free(&p);
    assert_int_equal(dq_type_plan_make("Q3_K_M", true, true, &c, &p, &err), DQ_OK); /* --pure */
    for (int i = 0; i < 6 * DQ_LIN_PER_BLOCK; i++) assert_int_equal(p.linear[i], DQ_GGML_Q3_K);
    assert_int_equal(p.head, DQ_GGML_Q3_K);
    dq_type_plan_free(&p);
    /* stories260K's widths (64, 172): llama.cpp's fallbacks */
    dq_config s = {.dim = 64, .hidden_dim = 172, .n_layers = 5, .n_heads = 8, .n_kv_heads = 4, .head_dim = 8,
                   .vocab_size = 512, .tied_embeddings = true};
    assert_int_equal(dq_type_plan_make("Q2_K", false, false, &s, &p, &err), DQ_OK);
    assert_int_equal(p.linear[DQ_LIN_Q], DQ_GGML_IQ4_NL);
    assert_int_equal(p.linear[DQ_LIN_DOWN], DQ_GGML_F16); /* 172 columns: not even a 32-block */
    assert_int_equal(p.head, DQ_GGML_Q8_0);
    assert_true(p.n_fallback > 0);
    dq_type_plan_free(&p);
    /* SmolLM2-135M (576 wide: not a K-quant block, 18 blocks of 32; FFN 1536):
     * the types llama-quantize (llama.cpp c392e5094) chose on the real file,
     * tensor for tensor, for Q4_K_M, Q3_K_S, Q2_K, Q4_0, Q5_K_M and Q6_K */
    dq_config sm = {.dim = 576, .hidden_dim = 1536, .n_layers = 30, .n_heads = 9, .n_kv_heads = 3, .head_dim = 64,
                    .vocab_size = 49152, .tied_embeddings = true};
    static const struct { const char *type; dq_ggml_type wide, wide_more, down, down_more, head; } SM[] = {
        {"Q4_K_M", DQ_GGML_Q5_0, DQ_GGML_Q8_0, DQ_GGML_Q4_K, DQ_GGML_Q6_K, DQ_GGML_Q8_0},
        {"Q5_K_M", DQ_GGML_Q5_1, DQ_GGML_Q8_0, DQ_GGML_Q5_K, DQ_GGML_Q6_K, DQ_GGML_Q8_0},
        {"Q3_K_S", DQ_GGML_IQ4_NL, DQ_GGML_IQ4_NL, DQ_GGML_Q3_K, DQ_GGML_Q3_K, DQ_GGML_Q8_0},
        {"Q2_K", DQ_GGML_IQ4_NL, DQ_GGML_IQ4_NL, DQ_GGML_Q3_K, DQ_GGML_Q3_K, DQ_GGML_Q8_0},
        {"Q4_0", DQ_GGML_Q4_0, DQ_GGML_Q4_0, DQ_GGML_Q4_0, DQ_GGML_Q4_0, DQ_GGML_Q8_0},
        {"Q6_K", DQ_GGML_Q8_0, DQ_GGML_Q8_0, DQ_GGML_Q6_K, DQ_GGML_Q6_K, DQ_GGML_Q8_0},
    };
    for (size_t t = 0; t < sizeof SM / sizeof SM[0]; t++) {
        assert_int_equal(dq_type_plan_make(SM[t].type, false, false, &sm, &p, &err), DQ_OK);
        for (int l = 0; l < 30; l++) {
            bool more = l < 3 || l >= 26 || (l - 3) % 3 == 2; /* use_more_bits(l, 30) */
            for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) {
                dq_ggml_type want = k == DQ_LIN_DOWN ? (more ? SM[t].down_more : SM[t].down)
                                    : k == DQ_LIN_V ? (more ? SM[t].wide_more : SM[t].wide) : SM[t].wide;
                if (p.linear[l * DQ_LIN_PER_BLOCK + k] != want)
                    fail_msg("SmolLM2 %s layer %d kind %d: %s, llama-quantize %s", SM[t].type, l, k,
                             dq_ggml_info(p.linear[l * DQ_LIN_PER_BLOCK + k])->name, dq_ggml_info(want)->name);
            }
        }
        assert_int_equal(p.head, SM[t].head);
        assert_int_equal(p.embed, SM[t].head);
        dq_type_plan_free(&p);
    }
    assert_int_equal(dq_type_plan_make("Q9_X", false, true, &c, &p, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "Q9_X"));
}

static float *logits_of(const dq_model *m, int n) {
    int V = dq_model_config(m)->vocab_size;
    int32_t toks[64];
    for (int i = 0; i < n; i++) toks[i] = (int32_t)((i * 37 + 1) % V);
    dq_session *s;
    dq_error err = {0};
    const float *lg;
    if (dq_session_new(m, n, n, 2, &s, &err) || dq_forward(s, toks, n, 0, true, &lg, &err)) fail_msg("%s", err.msg);
    float *copy = malloc((size_t)n * V * sizeof *copy);
    memcpy(copy, lg, (size_t)n * V * sizeof *copy);
    dq_session_free(s);
    return copy;
}

/* quantize → export → load: the same logits, bit for bit; for HF input the
 * q/k rows go to llama.cpp's interleaved order, which reorders RoPE's sums. */
static void gguf_roundtrip(const char *model, const char *tok, dq_method method, const char *type, const char *out,
                           double tol) {
    dq_model *m = tu_model(tu_shared(model));
    dq_tokenizer *t = tu_tokenizer(tu_shared(tok));
    dq_calib_set cs = tu_book_windows(tok, 4, 64, 3);
    dq_type_plan plan;
    dq_error err = {0};
    if (dq_type_plan_make(type, false, method != DQ_METHOD_RTN, &m->cfg, &plan, &err)) fail_msg("%s", err.msg);
    dq_pipeline_opts o = {.q = dq_quant_defaults(method, 4, 32), .n_threads = 2, .plan = &plan};
    dq_quant_result r;
    if (dq_quantize_model(m, &cs, &o, &r, &err)) fail_msg("%s", err.msg);
    dq_gguf_export_opts g = {.type = DQ_GGML_F16, .quant = &r, .file_type = plan.file_type};
    const char *path = tu_tmp(out);
    if (dq_export_gguf(path, m, t, &g, &err)) fail_msg("%s", err.msg);
    dq_model *back = tu_model(path);
    float *a = logits_of(m, 64), *b = logits_of(back, 64);
    size_t n = (size_t)64 * m->cfg.vocab_size;
    double scale = 0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(a[i]));
    for (size_t i = 0; i < n; i++)
        if (fabs(a[i] - b[i]) > tol * scale) fail_msg("%s %s: logit %zu is %.9g after the round trip, %.9g before", model, type, i, b[i], a[i]);
    free(a), free(b);
    dq_model_free(back);
    dq_quant_result_free(&r);
    dq_type_plan_free(&plan);
    dq_calib_free(&cs);
    dq_tokenizer_free(t);
    dq_model_free(m);
}

static void test_gguf_roundtrip(void **st) {
    (void)st;
    gguf_roundtrip("models/gut6l/gut6l.bin", "models/gut6l/tokenizer.bin", DQ_METHOD_DASHQ, "Q3_K_M", "dq.gguf", 0);
    gguf_roundtrip("models/gut6l/gut6l.bin", "models/gut6l/tokenizer.bin", DQ_METHOD_GPTQ, "Q4_1", "gptq.gguf", 0);
    gguf_roundtrip("models/gut6l-hf", "models/gut6l-hf/tokenizer.json", DQ_METHOD_GPTQ, "Q2_K", "hf.gguf", 1e-5);
    gguf_roundtrip("models/stories260K/stories260K.bin", "models/stories260K/tok512.bin", DQ_METHOD_RTN, "Q2_K", "s.gguf", 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encoder_matches_ggml), cmocka_unit_test(test_fit),
        cmocka_unit_test(test_presets),              cmocka_unit_test(test_gguf_roundtrip),
        cmocka_unit_test(test_importance),           cmocka_unit_test(test_iq4nl_search), cmocka_unit_test(test_q3k_search),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
