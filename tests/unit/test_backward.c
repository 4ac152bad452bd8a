/* The backward pass (model/backward.c): weight gradients formed from its
 * taps (∂ℓ/∂W = Σ_t δ_t x_tᵀ) against central finite differences of the
 * loss on tiny random models (every linear of every block and the head,
 * GQA, tied and untied heads, q/k/v biases, both RoPE layouts, windows longer
 * than one attention tile; the next-token cross-entropy and the distillation
 * loss, KL to a reference's logits), bit-identical results at 1 and 2 threads, and
 * the refusals; and against PyTorch autograd in float64 on the bundled gut6l
 * (tests/tools/make_grad_fixture.py made tests/fixtures/grad/) to 1e-4. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backward.h"
#include "model/session.h"
#include "testutil.h"

#define MAX_LAYERS 8

/* ∂ℓ/∂W of every linear, summed from the taps: [layer + 1][site]. */
typedef struct {
    double *G[MAX_LAYERS + 1][DQ_SITE_COUNT];
    float *d_embed; /* (T, dim) ∂ℓ/∂ the embedded rows, when asked */
    int rows[MAX_LAYERS + 1][DQ_SITE_COUNT], cols[MAX_LAYERS + 1][DQ_SITE_COUNT];
    int n_taps;
    unsigned long long hash; /* FNV-1a over every x and dy the taps saw, in order */
} grads;

static void hash_bytes(unsigned long long *h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) *h = (*h ^ b[i]) * 1099511628211ULL;
}

static void collect(void *ctx, const dq_grad_data *g) {
    grads *gr = ctx;
    int id = (int)(g->site - DQ_SITES);
    double **G = &gr->G[g->layer + 1][id];
    if (!*G) *G = calloc((size_t)g->rows * g->cols, sizeof **G);
    gr->rows[g->layer + 1][id] = g->rows;
    gr->cols[g->layer + 1][id] = g->cols;
    for (int t = 0; t < g->T; t++)
        for (int i = 0; i < g->rows; i++) {
            double d = g->dy[(size_t)t * g->rows + i];
            if (d == 0.0) continue;
            for (int j = 0; j < g->cols; j++) (*G)[(size_t)i * g->cols + j] += d * g->x[(size_t)t * g->cols + j];
        }
    hash_bytes(&gr->hash, g->x, (size_t)g->T * g->cols * sizeof(float));
    hash_bytes(&gr->hash, g->dy, (size_t)g->T * g->rows * sizeof(float));
    gr->n_taps++;
}

static void grads_free(grads *g) {
    free(g->d_embed);
    for (int l = 0; l <= MAX_LAYERS; l++)
        for (int k = 0; k < DQ_SITE_COUNT; k++) free(g->G[l][k]);
}

static int32_t *tokens(int n, int vocab) {
    int32_t *t = malloc((size_t)n * sizeof *t);
    unsigned s = 12345;
    for (int i = 0; i < n; i++) s = s * 1103515245u + 12345u, t[i] = (int32_t)((s >> 8) % (unsigned)vocab);
    return t;
}

/* A fixed pseudo-random direction R in [-1, 1]. */
static float dir(size_t i) {
    unsigned h = (unsigned)(i * 2654435761u) ^ 0x9e3779b9u;
    h ^= h >> 15, h *= 0x2c1b3c6dU, h ^= h >> 12;
    return (float)(h % 2001u) / 1000.0f - 1.0f;
}

/* NULL: the next-token cross-entropy; else the distillation loss against these logits (n, vocab) */
static const float *kl_target;

static double backward(dq_session *s, const int32_t *tok, int n, grads *g) {
    dq_error err = {0};
    dq_grad_taps taps = {.fn = collect, .ctx = g, .d_embed = g ? g->d_embed : NULL};
    double loss = 0, fwd = -1;
    dq_status st = kl_target ? dq_kl_backward(s, tok, n, kl_target, g ? &taps : NULL, &loss, &err)
                             : dq_loss_backward(s, tok, n, g ? &taps : NULL, &loss, &err);
    if (st || dq_window_loss(s, tok, n, kl_target, &fwd, &err)) fail_msg("%s", err.msg);
    assert_true(fwd == loss); /* the forward-only loss is the same number */
    return loss;
}

/* Target logits for the distillation loss: the model's own, moved by up to ±4 (far enough that a 1 % error in the gradient shows). */
static float *perturbed_logits(dq_session *s, const int32_t *tok, int n, int V) {
    dq_error err = {0};
    const float *logits;
    if (dq_forward(s, tok, n, 0, true, &logits, &err)) fail_msg("%s", err.msg);
    float *t = malloc((size_t)n * V * sizeof *t);
    for (size_t i = 0; i < (size_t)n * V; i++) t[i] = logits[i] + 4.0f * dir(i * 7 + 3);
    return t;
}

static dq_session *session(dq_model *m, int n, int nt) {
    dq_error err = {0};
    dq_session *s = NULL;
    if (dq_session_new(m, n, n, nt, &s, &err) || dq_session_keep_activations(s, DQ_ACTS_EVERY_BLOCK, &err))
        fail_msg("%s", err.msg);
    return s;
}


/* (ℓ(W + hR) − ℓ(W − hR)) / 2h; W is left as W0. */
static double central_difference(dq_session *s, const int32_t *tok, int n, float *W, const float *W0, size_t ne,
                                 double h) {
    for (size_t i = 0; i < ne; i++) W[i] = W0[i] + (float)h * dir(i);
    double lp = backward(s, tok, n, NULL);
    for (size_t i = 0; i < ne; i++) W[i] = W0[i] - (float)h * dir(i);
    double lm = backward(s, tok, n, NULL);
    memcpy(W, W0, ne * sizeof *W0);
    return (lp - lm) / (2 * h);
}

/* The embedding table along R against Σ_t R[tok_t]·d_embed_t (plus the
 * head's Σ G ⊙ R while the head is the same tensor), as for the linears. */
static void check_embedding_fd(const char *path, dq_model *m, dq_session *s, const int32_t *tok, int n,
                               const grads *g) {
    const dq_config *c = dq_model_config(m);
    const dq_site *E = &DQ_SITES[DQ_SITE_TOKEN_EMBD];
    bool tied = dq_site_data(m, 0, E) == dq_site_data(m, 0, &DQ_SITES[DQ_SITE_OUTPUT]);
    size_t ne = (size_t)c->vocab_size * c->dim;
    double an = 0, wmax = 0;
    for (int t = 0; t < n; t++)
        for (int j = 0; j < c->dim; j++) an += g->d_embed[(size_t)t * c->dim + j] * dir((size_t)tok[t] * c->dim + j);
    const double *Gh = g->G[0][DQ_SITE_OUTPUT];
    for (size_t i = 0; tied && i < ne; i++) an += Gh[i] * dir(i);
    dq_error err = {0};
    float *W = dq_site_writable(m, 0, E, &err);
    if (!W) fail_msg("%s", err.msg);
    for (size_t i = 0; i < ne; i++) wmax = fmax(wmax, fabs(W[i]));
    float *W0 = malloc(ne * sizeof *W0);
    memcpy(W0, W, ne * sizeof *W0);
    double h = 3e-3 * (wmax > 0 ? wmax : 1.0);
    double fd = (4 * central_difference(s, tok, n, W, W0, ne, h / 2) - central_difference(s, tok, n, W, W0, ne, h)) / 3;
    free(W0);
    if (fabs(fd - an) > 2e-3 * fabs(an) + 2e-6 / h)
        fail_msg("%s: token_embd (%s): finite difference %.7g, backward %.7g", path, tied ? "tied" : "untied", fd, an);
}

/* Along R: (ℓ(W + hR) − ℓ(W − hR)) / 2h against Σ G ⊙ R, for every linear
 * the taps reported, and the embedding. */
static void check_fd(const char *path, int n, bool kl) {
    dq_model *m = tu_model(path);
    const dq_config *c = dq_model_config(m);
    assert_true(c->n_layers <= MAX_LAYERS);
    int32_t *tok = tokens(n, c->vocab_size);
    dq_session *s = session(m, n, 2);
    float *target = kl ? perturbed_logits(s, tok, n, c->vocab_size) : NULL;
    kl_target = target;
    grads g = {.d_embed = malloc((size_t)n * c->dim * sizeof(float))};
    backward(s, tok, n, &g);
    assert_int_equal(g.n_taps, 7 * c->n_layers + 1);
    check_embedding_fd(path, m, s, tok, n, &g); /* first: a tied head is still the embedding */
    dq_error err = {0};
    int checked = 0;
    for (int l = -1; l < c->n_layers; l++)
        for (int k = 0; k < DQ_SITE_COUNT; k++) {
            const double *G = g.G[l + 1][k];
            if (!G) continue;
            size_t ne = (size_t)g.rows[l + 1][k] * g.cols[l + 1][k];
            float *W = dq_site_writable(m, l < 0 ? 0 : l, &DQ_SITES[k], &err);
            if (!W) fail_msg("%s", err.msg);
            double an = 0, wmax = 0;
            for (size_t i = 0; i < ne; i++) an += G[i] * dir(i), wmax = fmax(wmax, fabs(W[i]));
            float *W0 = malloc(ne * sizeof *W0);
            memcpy(W0, W, ne * sizeof *W0);
            /* a step of 0.3% of the largest weight, and Richardson's
             * (4·D(h/2) − D(h))/3 to cancel the h² term: measured on these
             * models, smaller steps drown in the loss's fp32 rounding (~1e-6,
             * the floor 2e-6/h below), larger ones in curvature (attn_q of
             * stories260K is off by 0.4% at this h without the correction) */
            double h = 3e-3 * (wmax > 0 ? wmax : 1.0);
            double fd = (4 * central_difference(s, tok, n, W, W0, ne, h / 2) -
                         central_difference(s, tok, n, W, W0, ne, h)) / 3;
            free(W0);
            if (fabs(fd - an) > 2e-3 * fabs(an) + 2e-6 / h)
                fail_msg("%s: layer %d %s: finite difference %.7g, backward %.7g", path, l, DQ_SITES[k].gguf, fd, an);
            checked++;
        }
    assert_int_equal(checked, 7 * c->n_layers + 1);
    kl_target = NULL;
    free(target);
    grads_free(&g);
    free(tok);
    dq_session_free(s);
    dq_model_free(m);
}

/* llama3-tiny: 4 query heads on 1 KV head, tied head, rotate-half RoPE
 * with Llama-3 scaling; 100 tokens: two attention tiles. */
static void test_fd_llama3_tiny(void **st) {
    (void)st;
    check_fd(tu_fixture("llama3-tiny"), 100, false);
}

/* qwen2-tiny: q/k/v biases, untied head. */
static void test_fd_qwen2_tiny(void **st) {
    (void)st;
    check_fd(tu_fixture("qwen2-tiny"), 70, false);
}

/* stories260K: interleaved RoPE (llama2.c layout), 5 layers, GQA 8/4. */
static void test_fd_stories(void **st) {
    (void)st;
    check_fd(tu_shared("models/stories260K/stories260K.bin"), 90, false);
}

/* The distillation loss (KL to a reference's logits): every linear, the
 * embedding, on an untied (qwen2-tiny) and a tied (llama3-tiny) model. */
static void test_fd_kl(void **st) {
    (void)st;
    check_fd(tu_fixture("qwen2-tiny"), 70, true);
    check_fd(tu_fixture("llama3-tiny"), 100, true);
}

/* KL to its own logits: 0, and a zero gradient everywhere. */
static void test_kl_self(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_fixture("qwen2-tiny"));
    const dq_config *c = dq_model_config(m);
    int n = 40;
    int32_t *tok = tokens(n, c->vocab_size);
    dq_session *s = session(m, n, 2);
    dq_error err = {0};
    const float *logits;
    if (dq_forward(s, tok, n, 0, true, &logits, &err)) fail_msg("%s", err.msg);
    float *self = malloc((size_t)n * c->vocab_size * sizeof *self);
    memcpy(self, logits, (size_t)n * c->vocab_size * sizeof *self);
    kl_target = self;
    grads g = {.d_embed = calloc((size_t)n * c->dim, sizeof(float))};
    double loss = backward(s, tok, n, &g);
    kl_target = NULL;
    assert_true(fabs(loss) < 1e-7);
    double gmax = 0;
    for (size_t i = 0; i < (size_t)n * c->dim; i++) gmax = fmax(gmax, fabs(g.d_embed[i]));
    assert_true(gmax < 1e-6);
    grads_free(&g);
    free(self);
    free(tok);
    dq_session_free(s);
    dq_model_free(m);
}

/* ‖a − b‖ / ‖b‖ over n doubles (b from the fixture, float32). */
static double rel_dist(const double *a, const float *b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1e-300));
}

/* dl/dW of every linear of gut6l (6 blocks, GQA 8/4, tied head, bf16 weights)
 * against autograd: per linear ‖G‖, G·v and Gᵀ·u (make_grad_fixture.py's
 * record), and the loss. */
static void test_torch_gut6l(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/gut6l-hf"));
    const dq_config *c = dq_model_config(m);
    int n = 0;
    int32_t *tok = tu_read_tokens(tu_fixture("grad/gut6l_tokens.txt"), &n);
    size_t len;
    float *ref = (float *)tu_read(tu_fixture("grad/gut6l.f32"), &len);
    dq_session *s = session(m, n, 2);
    grads g = {0};
    double loss = backward(s, tok, n, &g);
    assert_true(fabs(loss - ref[0]) <= 1e-5 * ref[0]);
    static const dq_site_id order[] = {DQ_SITE_Q, DQ_SITE_K, DQ_SITE_V, DQ_SITE_O, DQ_SITE_GATE, DQ_SITE_UP, DQ_SITE_DOWN};
    size_t at = 1;
    for (int l = 0; l <= c->n_layers; l++)
        for (int k = 0; k < (l < c->n_layers ? 7 : 1); k++) {
            int id = l < c->n_layers ? (int)order[k] : DQ_SITE_OUTPUT, li = l < c->n_layers ? l + 1 : 0;
            int rows = g.rows[li][id], cols = g.cols[li][id];
            const double *G = g.G[li][id];
            assert_non_null(G);
            assert_true((at + 1 + rows + cols) * sizeof(float) <= len);
            double norm = 0, *Gv = calloc((size_t)rows, sizeof *Gv), *Gu = calloc((size_t)cols, sizeof *Gu);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) {
                    double x = G[(size_t)i * cols + j];
                    norm += x * x, Gv[i] += x * dir((size_t)j), Gu[j] += x * dir((size_t)i);
                }
            double e_norm = fabs(sqrt(norm) - ref[at]) / ref[at], e_v = rel_dist(Gv, ref + at + 1, rows);
            double e_u = rel_dist(Gu, ref + at + 1 + rows, cols);
            if (e_norm > 1e-4 || e_v > 1e-4 || e_u > 1e-4)
                fail_msg("gut6l layer %d %s: relative differences from autograd: norm %.2g, Gv %.2g, Gtu %.2g",
                         l < c->n_layers ? l : -1, DQ_SITES[id].gguf, e_norm, e_v, e_u);
            at += 1 + (size_t)rows + cols;
            free(Gv);
            free(Gu);
        }
    assert_int_equal(at * sizeof(float), len);
    grads_free(&g);
    free(ref);
    free(tok);
    dq_session_free(s);
    dq_model_free(m);
}

static void test_threads_bit_identical(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    int n = 150;
    int32_t *tok = tokens(n, dq_model_config(m)->vocab_size);
    grads g1 = {.hash = 14695981039346656037ULL}, g2 = {.hash = 14695981039346656037ULL};
    dq_session *s1 = session(m, n, 1), *s2 = session(m, n, 2);
    double l1 = backward(s1, tok, n, &g1), l2 = backward(s2, tok, n, &g2);
    assert_true(l1 == l2);
    assert_true(g1.hash == g2.hash);
    assert_int_equal(g1.n_taps, g2.n_taps);
    grads_free(&g1);
    grads_free(&g2);
    free(tok);
    dq_session_free(s1);
    dq_session_free(s2);
    dq_model_free(m);
}

static void test_refusals(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    dq_error err = {0};
    dq_session *s = NULL;
    int32_t tok[4] = {1, 2, 3, 4};
    double loss = 0;
    assert_int_equal(dq_session_new(m, 4, 4, 1, &s, &err), DQ_OK);
    assert_int_equal(dq_loss_backward(s, tok, 4, NULL, &loss, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "keeps no activations"));
    dq_session *one = NULL; /* a streamed pass's store: one block's, every block writes it */
    assert_int_equal(dq_session_new(m, 4, 4, 1, &one, &err), DQ_OK);
    assert_int_equal(dq_session_keep_activations(one, DQ_ACTS_ONE_BLOCK, &err), DQ_OK);
    assert_int_equal(dq_loss_backward(one, tok, 4, NULL, &loss, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "one block's activations"));
    dq_session_free(one);
    assert_int_equal(dq_session_keep_activations(s, DQ_ACTS_EVERY_BLOCK, &err), DQ_OK);
    assert_int_equal(dq_loss_backward(s, tok, 1, NULL, &loss, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "at least 2 tokens"));
    tok[2] = 1 << 20;
    assert_int_equal(dq_loss_backward(s, tok, 4, NULL, &loss, &err), DQ_ERR_ARG);
    dq_session_free(s);
    dq_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_llama3_tiny),
        cmocka_unit_test(test_fd_qwen2_tiny),
        cmocka_unit_test(test_fd_stories),
        cmocka_unit_test(test_fd_kl),
        cmocka_unit_test(test_kl_self),
        cmocka_unit_test(test_torch_gut6l),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
