#define _POSIX_C_SOURCE 200809L
/* Transforms before quantization (transform/, issue #17): Hadamard matrices
 * of every order the construction claims (H Hᵀ = n I exactly) and refusals
 * of the others; Haar-random rotations orthogonal and reproducible; the
 * rotated / smoothed full-precision model giving the same logits as the
 * original to 1e-4 on tiny models with GQA, q/k/v biases, tied and untied
 * heads, both RoPE layouts, and non-unit norm gains; the same weights at 1
 * and 2 threads; refusals of a rotation past an unfolded norm and of a bad
 * scale. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/sites.h"
#include "testutil.h"
#include "util/rng.h"
#include "transform/fold.h"
#include "transform/hadamard.h"
#include "transform/hero.h"
#include "transform/split.h"
#include "transform/transform.h"

static void test_hadamard_orders(void **st) {
    (void)st;
    const int ok[] = {1, 2, 4, 8, 12, 20, 24, 32, 44, 48, 64, 72, 96, 576};
    for (size_t k = 0; k < sizeof ok / sizeof ok[0]; k++) {
        int n = ok[k];
        assert_true(dq_hadamard_exists(n));
        float *H = malloc((size_t)n * n * sizeof *H);
        dq_error err = {0};
        assert_int_equal(dq_hadamard(n, H, &err), DQ_OK);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double d = 0;
                for (int c = 0; c < n; c++) d += (double)H[(size_t)i * n + c] * H[(size_t)j * n + c];
                if (d != (i == j ? n : 0)) fail_msg("order %d: (H Hᵀ)[%d][%d] = %g", n, i, j, d);
            }
        for (size_t i = 0; i < (size_t)n * n; i++) assert_true(H[i] == 1.0f || H[i] == -1.0f);
        free(H);
    }
    assert_true(dq_hadamard_exists(1536) && dq_hadamard_exists(14336) && dq_hadamard_exists(5120));
    const int no[] = {3, 6, 10, 36, 52};
    for (size_t k = 0; k < sizeof no / sizeof no[0]; k++) {
        assert_false(dq_hadamard_exists(no[k]));
        float H[1];
        dq_error err = {0};
        assert_int_equal(dq_hadamard(no[k], H, &err), DQ_ERR_ARG);
        char want[32];
        snprintf(want, sizeof want, "order %d", no[k]);
        assert_non_null(strstr(err.msg, want));
    }
}

static void test_random_rotations(void **st) {
    (void)st;
    dq_error err = {0};
    int n = 37;
    float *A = malloc(n * n * sizeof *A), *B = malloc(n * n * sizeof *B);
    assert_int_equal(dq_random_orthogonal(n, 7, A, &err), DQ_OK);
    assert_true(dq_orthogonality_error(A, n) < 1e-6);
    assert_int_equal(dq_random_orthogonal(n, 7, B, &err), DQ_OK);
    assert_memory_equal(A, B, n * n * sizeof *A);
    assert_int_equal(dq_random_orthogonal(n, 8, B, &err), DQ_OK);
    assert_memory_not_equal(A, B, n * n * sizeof *A);
    free(A), free(B);
    n = 72;
    A = malloc(n * n * sizeof *A);
    assert_int_equal(dq_random_hadamard(n, 3, A, &err), DQ_OK);
    assert_true(dq_orthogonality_error(A, n) < 1e-6);
    A[5] += 1e-3f; /* the check sees a matrix that is not orthogonal */
    assert_true(dq_orthogonality_error(A, n) > 1e-4);
    free(A);
}

/* Norm gains that are not all one, so folding them is exercised. */
static void perturb_norms(dq_model *m) {
    dq_error err = {0};
    unsigned s = 99;
    for (int l = -1; l < m->cfg.n_layers; l++) {
        const dq_site *sites[2] = {&DQ_SITES[DQ_SITE_ATTN_NORM], &DQ_SITES[DQ_SITE_FFN_NORM]};
        for (int k = 0; k < (l < 0 ? 1 : 2); k++) {
            float *g = dq_site_writable(m, l < 0 ? 0 : l, l < 0 ? &DQ_SITES[DQ_SITE_OUTPUT_NORM] : sites[k], &err);
            assert_non_null(g);
            for (int j = 0; j < m->cfg.dim; j++) s = s * 1103515245u + 12345u, g[j] *= 0.5f + (float)((s >> 8) % 1000) / 1000.0f;
        }
    }
}

static float *logits_of(dq_model *m, const int32_t *tok, int n, int nt) {
    dq_error err = {0};
    dq_session *s = NULL;
    const float *lg;
    if (dq_session_new(m, n, n, nt, &s, &err) || dq_forward(s, tok, n, 0, true, &lg, &err)) fail_msg("%s", err.msg);
    float *out = malloc((size_t)n * m->cfg.vocab_size * sizeof *out);
    memcpy(out, lg, (size_t)n * m->cfg.vocab_size * sizeof *out);
    dq_session_free(s);
    return out;
}

static dq_calib_set windows(const dq_model *m, int n, int len) {
    dq_calib_set cs = {.n = n, .len = len, .tokens = malloc((size_t)n * len * sizeof(int32_t))};
    unsigned s = 4321;
    for (int i = 0; i < n * len; i++) s = s * 1103515245u + 12345u, cs.tokens[i] = (int32_t)((s >> 8) % (unsigned)m->cfg.vocab_size);
    return cs;
}

/* max |Δlogit| / max(1, max |logit|) after transforming with (rotate, smooth). */
static double transform_error(const char *path, const char *rot, const char *smo, int nt, dq_model **keep) {
    dq_model *m = tu_model(path);
    perturb_norms(m);
    dq_calib_set cs = windows(m, 2, 24);
    float *before = logits_of(m, cs.tokens, cs.len, 2);
    dq_transform_opts o = {.rotate = dq_rotation_find(rot), .smooth = dq_smoothing_find(smo), .alpha = 0.5f,
                           .seed = 11, .n_threads = nt, .bits = 3, .group = 32, .hero_beta = 0.1f, .hero_lr = 0.05f,
                           .hero_rot_lr = 0.2f, .hero_steps = 10};
    assert_non_null(o.rotate);
    assert_non_null(o.smooth);
    dq_error err = {0};
    if (dq_transform_model(m, &cs, &o, &err)) fail_msg("%s %s/%s: %s", path, rot, smo, err.msg);
    assert_true(o.orth_err < 1e-5);
    if (dq_transform_unties(&o)) assert_false(m->cfg.tied_embeddings);
    if (!strncmp(rot, "hero", 4) && strcmp(rot, "hero-loss") && strcmp(rot, "hero-kl")) /* the best iterate */
        assert_true(o.hero.rot_err_ratio > 0 && o.hero.rot_err_ratio <= 1.0);
    if (!strcmp(rot, "hero-r2")) /* each block's best P: never above its start, below it on the whole */
        assert_true(o.hero.r2_err_ratio > 0 && o.hero.r2_err_ratio < 1.0);
    if (!strcmp(rot, "hero-loss") || !strcmp(rot, "hero-kl")) /* the end kept only if below the start */
        assert_true(o.hero.rot_loss_before > 0 && o.hero.rot_loss_after <= o.hero.rot_loss_before);
    if (!strcmp(smo, "hero")) { /* the best iterate: never above the identity's objective */
        assert_int_equal(o.hero.n, 3 * m->cfg.n_layers);
        assert_true(o.hero.err_ratio > 0 && o.hero.err_ratio + 0.1 * o.hero.rho_after / o.hero.rho_before <= 1.1 + 1e-9);
    }
    float *after = logits_of(m, cs.tokens, cs.len, 2);
    double worst = 0, scale = 1;
    size_t n = (size_t)cs.len * m->cfg.vocab_size;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)after[i] - before[i])), scale = fmax(scale, fabs(before[i]));
    free(before), free(after);
    dq_calib_free(&cs);
    if (keep) *keep = m;
    else dq_model_free(m);
    return worst / scale;
}

static void test_function_preserved(void **st) {
    (void)st;
    const char *models[] = {tu_fixture("llama3-tiny"), tu_fixture("qwen2-tiny"), tu_shared("models/stories260K/stories260K.bin"),
                            tu_shared("models/gut6l-hf")};
    const char *rs[][2] = {{"hadamard", "none"}, {"random", "none"}, {"none", "closed"}, {"hadamard", "closed"},
                           {"none", "hero"}, {"random", "hero"}, {"hero", "none"}, {"hero", "hero"},
                           {"hero-loss", "none"}, {"hero-kl", "none"}, {"hero-kl", "closed"}, {"split", "none"},
                           {"hero-r2", "none"}};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        for (size_t k = 0; k < sizeof rs / sizeof rs[0]; k++) {
            if ((!strcmp(rs[k][0], "hadamard") || !strncmp(rs[k][0], "hero", 4)) && strstr(models[i], "tiny")) {
                dq_model *m = tu_model(models[i]);
                bool ok = dq_hadamard_exists(m->cfg.dim) && dq_hadamard_exists(m->cfg.head_dim);
                dq_model_free(m);
                if (!ok) continue;
            }
            double e = transform_error(models[i], rs[k][0], rs[k][1], 2, NULL);
            printf("%-60s %-8s %-6s max |dlogit| / max |logit| = %.2e\n", models[i], rs[k][0], rs[k][1], e);
            if (!(e <= 1e-4)) fail_msg("%s %s/%s: logits moved by %g", models[i], rs[k][0], rs[k][1], e);
        }
}

/* Every weight the same at 1 and 2 threads, for the learned transforms. */
static void test_threads(void **st) {
    (void)st;
    const char *path = tu_shared("models/gut6l-hf");
    const char *rs[][2] = {{"hero", "hero"}, {"hero-kl", "none"}, {"split", "none"}, {"hero-r2", "none"}};
    for (size_t k = 0; k < sizeof rs / sizeof rs[0]; k++) {
        dq_model *a, *b;
        transform_error(path, rs[k][0], rs[k][1], 1, &a);
        transform_error(path, rs[k][0], rs[k][1], 2, &b);
        for (int l = 0; l < a->cfg.n_layers; l++)
            for (int i = 0; i < DQ_SITE_PER_BLOCK; i++) {
                const dq_site *s = &DQ_SITES[i];
                if (!dq_site_present(s, &a->cfg)) continue;
                assert_memory_equal(dq_site_data(a, l, s), dq_site_data(b, l, s), dq_site_elems(s, &a->cfg) * sizeof(float));
            }
        for (int i = DQ_SITE_PER_BLOCK; i < DQ_SITE_COUNT; i++)
            assert_memory_equal(dq_site_data(a, 0, &DQ_SITES[i]), dq_site_data(b, 0, &DQ_SITES[i]),
                                dq_site_elems(&DQ_SITES[i], &a->cfg) * sizeof(float));
        dq_model_free(a), dq_model_free(b);
    }
}

/* ‖G Rᵀ − R Gᵀ‖_F / ‖G‖_F of the loss learner's gradient at R on model
 * `path` (norms perturbed, then folded), the quantizer's grid `bits`. */
static double loss_gradient_skew(const char *path, int bits, bool distill) {
    dq_model *m = tu_model(path);
    perturb_norms(m);
    dq_error err = {0};
    if (dq_fold_norms(m, &err)) fail_msg("%s", err.msg);
    int d = m->cfg.dim;
    dq_calib_set cs = windows(m, 2, 24);
    float *R = malloc((size_t)d * d * sizeof *R), *G = malloc((size_t)d * d * sizeof *G);
    if (dq_random_orthogonal(d, 5, R, &err)) fail_msg("%s", err.msg);
    dq_transform_opts o = {.n_threads = 2, .bits = bits, .group = 32};
    double loss = 0;
    if (dq_hero_loss_gradient(m, &cs, &o, R, distill, 1, &loss, G, &err)) fail_msg("%s", err.msg);
    double skew = 0, norm = 0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double a = 0, b = 0;
            for (int k = 0; k < d; k++) a += (double)G[i * d + k] * R[j * d + k], b += (double)R[i * d + k] * G[j * d + k];
            skew += (a - b) * (a - b), norm += (double)G[i * d + j] * G[i * d + j];
        }
    free(R), free(G);
    dq_calib_free(&cs);
    dq_model_free(m);
    return sqrt(skew / norm);
}

/* The loss learner's chain rule through every rotated tensor (readers,
 * writers, embedding, head): without rounding (a 16-bit grid) the model's
 * loss does not depend on R, so the gradient's component along the
 * orthogonal group, G Rᵀ − R Gᵀ, must vanish; a missing or wrong term
 * leaves it at the size of G. With a 3-bit grid it does not vanish (the
 * rounding is what the learner moves). */
static void test_loss_rotation_gradient(void **st) {
    (void)st;
    const char *models[] = {tu_shared("models/gut6l-hf"), tu_fixture("qwen2-tiny"), tu_fixture("llama3-tiny")};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        double exact = loss_gradient_skew(models[i], 16, false), rounded = loss_gradient_skew(models[i], 3, false);
        double kl = loss_gradient_skew(models[i], 3, true);
        printf("%-50s skew/|G|: 16 bits %.2e, 3 bits %.2e, 3 bits (KL) %.2e\n", models[i], exact, rounded, kl);
        if (!(exact < 2e-4)) fail_msg("%s: the loss gradient's rotation component %.3g at 16 bits", models[i], exact);
        assert_true(rounded > 1e-2 && kl > 1e-2);
    }
}

/* The loss learner's gradient along directions off the rotation group, where
 * the loss does change: J(R ± εSR) for a symmetric S (dq_rotate_residual
 * folds any matrix; the model's function then changes) against ⟨G, SR⟩, on a
 * 16-bit grid where rounding passes straight through without error. A sign
 * or a factor wrong in any term fails it (the skew test cannot see those). */
static void test_loss_rotation_fd(void **st) {
    (void)st;
    const char *models[] = {tu_shared("models/gut6l-hf"), tu_fixture("qwen2-tiny")};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        for (int distill = 0; distill < 2; distill++) {
            dq_model *m = tu_model(models[i]);
            perturb_norms(m);
            dq_error err = {0};
            if (dq_fold_norms(m, &err)) fail_msg("%s", err.msg);
            int d = m->cfg.dim;
            size_t dd = (size_t)d * d;
            dq_calib_set cs = windows(m, 2, 24);
            float *R = malloc(dd * sizeof *R), *G = malloc(dd * sizeof *G), *Rp = malloc(dd * sizeof *Rp);
            float *SR = malloc(dd * sizeof *SR), *S = malloc(dd * sizeof *S);
            if (dq_random_orthogonal(d, 5, R, &err)) fail_msg("%s", err.msg);
            for (int a = 0; a < d; a++)
                for (int b = 0; b <= a; b++) S[a * d + b] = S[b * d + a] = (float)(((a * 31 + b * 17) % 13) - 6) / 6.0f;
            for (int a = 0; a < d; a++)
                for (int b = 0; b < d; b++) {
                    double x = 0;
                    for (int k = 0; k < d; k++) x += (double)S[a * d + k] * R[k * d + b];
                    SR[a * d + b] = (float)x;
                }
            dq_transform_opts o = {.n_threads = 2, .bits = 16, .group = 32};
            double l0, lp, lm, an = 0, eps = 1e-2 / sqrt((double)d);
            if (dq_hero_loss_gradient(m, &cs, &o, R, distill, 0, &l0, G, &err)) fail_msg("%s", err.msg);
            if (distill) { /* at R the KL is 0 and flat: move off it first */
                for (size_t k = 0; k < dd; k++) R[k] += 20 * (float)eps * SR[k];
                if (dq_hero_loss_gradient(m, &cs, &o, R, distill, 0, &l0, G, &err)) fail_msg("%s", err.msg);
            }
            for (size_t k = 0; k < dd; k++) an += (double)G[k] * SR[k];
            for (size_t k = 0; k < dd; k++) Rp[k] = R[k] + (float)eps * SR[k];
            if (dq_hero_loss_gradient(m, &cs, &o, Rp, distill, 0, &lp, G, &err)) fail_msg("%s", err.msg);
            for (size_t k = 0; k < dd; k++) Rp[k] = R[k] - (float)eps * SR[k];
            if (dq_hero_loss_gradient(m, &cs, &o, Rp, distill, 0, &lm, G, &err)) fail_msg("%s", err.msg);
            double fd = (lp - lm) / (2 * eps);
            printf("%-50s %s: directional derivative %.6g, finite difference %.6g\n", models[i], distill ? "KL" : "CE",
                   an, fd);
            if (!(fabs(fd - an) <= 0.02 * fabs(an) + 1e-6)) fail_msg("%s: gradient %g, finite difference %g", models[i], an, fd);
            free(R), free(G), free(Rp), free(SR), free(S);
            dq_calib_free(&cs);
            dq_model_free(m);
        }
}

/* A few steps lower the 3-bit model's KL on gut6l (the learner moves), and
 * the rotation kept is the end's, not the start's. */
static void test_loss_rotation_learns(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/gut6l-hf"));
    dq_calib_set cs = windows(m, 2, 64);
    dq_transform_opts o = {.rotate = dq_rotation_find("hero-kl"), .smooth = dq_smoothing_find("none"), .seed = 11,
                           .n_threads = 2, .bits = 3, .group = 32, .hero_rot_lr = 0.2f, .hero_steps = 6};
    dq_error err = {0};
    if (dq_transform_model(m, &cs, &o, &err)) fail_msg("%s", err.msg);
    printf("hero-kl on gut6l, 6 steps: KL %.5f -> %.5f\n", o.hero.rot_loss_before, o.hero.rot_loss_after);
    assert_true(o.hero.rot_loss_before > 0 && o.hero.rot_loss_after < 0.97 * o.hero.rot_loss_before);
    dq_calib_free(&cs);
    dq_model_free(m);
}

/* The split rotation's matrix: rows and columns of the kept channels are
 * unit vectors on the diagonal, every other entry 0 or ±1/√r (r = n − kept,
 * a Hadamard order). Returns how many channels it keeps. */
static int split_structure(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o) {
    int n = m->cfg.dim, kept = 0;
    float *R = malloc((size_t)n * n * sizeof *R);
    dq_error err = {0};
    if (dq_split_rotation(m, cs, o, R, &err)) fail_msg("%s", err.msg);
    for (int j = 0; j < n; j++) {
        int nz = 0;
        for (int i = 0; i < n; i++) nz += R[(size_t)j * n + i] != 0;
        kept += nz == 1 && R[(size_t)j * n + j] == 1;
    }
    assert_int_equal(kept, o->hero.split_kept);
    assert_true(dq_hadamard_exists(n - kept));
    double a = 1 / sqrt((double)(n - kept));
    for (size_t i = 0; i < (size_t)n * n; i++)
        assert_true(R[i] == 0 || R[i] == 1 || fabs(fabs(R[i]) - a) < 1e-6);
    free(R);
    return kept;
}

/* A residual channel made massive (its embedding column ×30) is left out of
 * the split rotation, with as few more channels as give the rest a Hadamard
 * order (gut6l, 256 wide: 3 more, 252 = 251 + 1 is a Paley order): the
 * rotated embedding keeps exactly those columns as they were, while the
 * others move; the massive channel holds far more than its share of the
 * energy. */
static void test_split_keeps_massive(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/gut6l-hf"));
    int n = m->cfg.dim, V = m->cfg.vocab_size, j0 = 7;
    dq_error err = {0};
    float *E = dq_site_writable(m, 0, &DQ_SITES[DQ_SITE_TOKEN_EMBD], &err);
    assert_non_null(E);
    for (int v = 0; v < V; v++) E[(size_t)v * n + j0] *= 30;
    float *col = malloc((size_t)V * sizeof *col), *other = malloc((size_t)V * sizeof *other);
    for (int v = 0; v < V; v++) col[v] = E[(size_t)v * n + j0], other[v] = E[(size_t)v * n + j0 + 1];
    dq_calib_set cs = windows(m, 2, 64);
    float *before = logits_of(m, cs.tokens, cs.len, 2);
    dq_transform_opts o = {.rotate = dq_rotation_find("split"), .smooth = dq_smoothing_find("none"), .seed = 11,
                           .n_threads = 2, .bits = 3, .group = 32};
    int padded = split_structure(m, &cs, &o);
    assert_int_equal(o.hero.split_massive, 1);
    for (int k = o.hero.split_massive; k < padded; k++) assert_false(dq_hadamard_exists(n - k)); /* no fewer */
    float *E0 = malloc((size_t)V * n * sizeof *E0);
    memcpy(E0, E, (size_t)V * n * sizeof *E0);
    if (dq_transform_model(m, &cs, &o, &err)) fail_msg("%s", err.msg);
    const float *Er = m->tok_embeddings;
    double moved = 0, kept = 0;
    for (int v = 0; v < V; v++)
        kept = fmax(kept, fabs(Er[(size_t)v * n + j0] - col[v])), moved = fmax(moved, fabs(Er[(size_t)v * n + j0 + 1] - other[v]));
    int same = 0; /* columns the rotation left exactly as they were */
    for (int j = 0; j < n; j++) {
        int eq = 1;
        for (int v = 0; v < V && eq; v++) eq = Er[(size_t)v * n + j] == E0[(size_t)v * n + j];
        same += eq;
    }
    printf("split on gut6l, channel %d x30: %d massive (%.1f %% of the energy), %d kept; column %d moved %.2e, "
           "column %d %.2e; %d columns unchanged\n",
           j0, o.hero.split_massive, 100 * o.hero.split_energy, o.hero.split_kept, j0, kept, j0 + 1, moved, same);
    assert_int_equal(o.hero.split_kept, padded);
    assert_int_equal(same, padded);
    assert_true(o.hero.split_energy > 4.0 / n); /* far above an even share */
    assert_true(kept < 1e-6 && moved > 1e-3);
    float *after = logits_of(m, cs.tokens, cs.len, 2);
    double worst = 0, scale = 1;
    for (size_t i = 0; i < (size_t)cs.len * V; i++)
        worst = fmax(worst, fabs((double)after[i] - before[i])), scale = fmax(scale, fabs(before[i]));
    assert_true(worst / scale < 1e-4);
    free(col), free(other), free(E0), free(before), free(after);
    dq_calib_free(&cs);
    dq_model_free(m);
}

static void test_refusals(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/gut6l-hf"));
    perturb_norms(m);
    int d = m->cfg.dim;
    float *Q = malloc((size_t)d * d * sizeof *Q);
    dq_error err = {0};
    assert_int_equal(dq_random_hadamard(d, 1, Q, &err), DQ_OK);
    assert_int_equal(dq_rotate_residual(m, Q, 2, &err), DQ_ERR_ARG); /* gains not folded */
    assert_non_null(strstr(err.msg, "model.layers.0.input_layernorm.weight"));
    float *s = malloc((size_t)m->cfg.hidden_dim * sizeof *s);
    for (int j = 0; j < m->cfg.hidden_dim; j++) s[j] = 1;
    s[7] = 0;
    assert_int_equal(dq_scale_inputs(m, 2, DQ_TAP_FFN_HIDDEN, s, &err), DQ_ERR_NUMERIC);
    assert_non_null(strstr(err.msg, "scale 7"));
    s[7] = NAN;
    assert_int_equal(dq_scale_inputs(m, 2, DQ_TAP_FFN_IN, s, &err), DQ_ERR_NUMERIC);
    assert_int_equal(dq_scale_inputs(m, 2, DQ_TAP_ATTN_OUT, s, &err), DQ_ERR_ARG);
    assert_null(dq_rotation_find("hero-typo"));
    free(Q), free(s);
    dq_model_free(m);
}

/* max over the output's "kld": N in eval --json */
static double kld_of(const char *out) {
    const char *k = strstr(out, "\"kld\": ");
    if (!k) fail_msg("no kld in: %s", out);
    return atof(k + 7);
}

/* The CLI writes what it transformed: a near-lossless 8-bit packed
 * checkpoint and a Q8_0 GGUF of the rotated (and smoothed) model stay within
 * a KLD of 1e-3 of the original (a wrong fold costs orders of magnitude more),
 * dashq_config.json says what was folded, bad names and a smoothing without
 * calibration text are refused. */
static void test_cli(void **st) {
    (void)st;
    char cmd[2048], *out = NULL;
    const char *model = tu_shared("models/gut6l/gut6l.bin"), *calib = tu_shared("data/gutenberg/calib/gutenberg_calib.txt");
    const char *text = tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt"), *base = tu_tmp("tr-base");
    snprintf(cmd, sizeof cmd, "%s eval %s --ppl %s --ctx 64 --chunks 4 --save-logits %s --quiet", DQ_CLI, model, text,
             base);
    assert_int_equal(tu_run(cmd, &out), 0);
    free(out);
    const char *runs[][2] = {
        {"tr-packed", "--method rtn --bits 8 --group 64 --rotate hadamard"},
        {"tr-packed-smooth", "--method gptq --bits 8 --group 64 --rotate random --smooth closed --smooth-alpha 0.6"},
        {"tr.gguf", "--method rtn --format gguf --type Q8_0 --rotate hadamard --smooth closed"},
        {"tr-hero", "--method gptq --bits 8 --group 64 --rotate hero --smooth hero --hero-steps 8"},
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        snprintf(cmd, sizeof cmd,
                 "%s quantize %s %s --calib %s --nsamples 2 --seqlen 64 -o %s --quiet && "
                 "%s eval %s --ppl %s --ctx 64 --chunks 4 --kld %s --json --quiet",
                 DQ_CLI, model, runs[i][1], calib, tu_tmp(runs[i][0]), DQ_CLI, tu_tmp(runs[i][0]), text, base);
        assert_int_equal(tu_run(cmd, &out), 0);
        assert_non_null(strstr(out, "transform: rotate "));
        double k = kld_of(out);
        const char *h = strstr(out, "hero: RTN error in the Hessian norm x");
        if (strstr(runs[i][1], "hero")) { /* the learning lowered its objective's parts */
            double ratio, rho0, rho1;
            assert_non_null(h);
            assert_int_equal(sscanf(h, "hero: RTN error in the Hessian norm x%lf of the identity's, lambda_max/mean of "
                                       "the inputs' Hessians %lf -> %lf", &ratio, &rho0, &rho1), 3);
            printf("hero: error ratio %.3f, lambda_max/mean %.2f -> %.2f\n", ratio, rho0, rho1);
            assert_true(ratio < 1 && rho1 < rho0);
            const char *hr = strstr(out, "hero rotation: RTN error in the Hessian norm x");
            assert_non_null(hr);
            double rot = atof(hr + strlen("hero rotation: RTN error in the Hessian norm x"));
            printf("hero rotation: error ratio %.3f\n", rot);
            assert_true(rot > 0 && rot < 1);
        }
        printf("%-18s %s: KLD %.2e\n", runs[i][0], runs[i][1], k);
        if (!(k < 1e-3)) fail_msg("%s: KLD %g to the original", runs[i][1], k);
        free(out);
    }
    char *cfg = tu_read(tu_tmp("tr-packed-smooth/dashq_config.json"), NULL);
    assert_non_null(strstr(cfg, "\"rotate\":\t\"random\""));
    assert_non_null(strstr(cfg, "\"smooth\":\t\"closed\""));
    assert_non_null(strstr(cfg, "\"alpha\":\t0.6"));
    free(cfg);
    snprintf(cmd, sizeof cmd, "%s quantize %s --method dashq --bits 4 --group 64 --rotate hadamard --calib %s "
             "--nsamples 2 --seqlen 64 -o %s --quiet 2>&1", DQ_CLI, model, calib, tu_tmp("tr-dashq"));
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "a hadamard rotation before dashq's diagonal curvature"));
    free(out);
    const char *bad[][2] = {
        {"--method rtn --rotate hero-typo", "unknown rotation hero-typo (none, hadamard, random, split, hero, hero-r2, hero-loss, hero-kl)"},
        {"--method rtn --smooth max", "unknown smoothing max (none, closed, hero)"},
        {"--method rtn --smooth closed", "smoothing closed needs a calibration text (--calib FILE)"},
        {"--method rtn --rotate hero", "rotation hero needs a calibration text (--calib FILE)"},
        {"--method rtn --smooth closed --smooth-alpha 2", "--smooth-alpha"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s quantize %s %s -o %s 2>&1", DQ_CLI, model, bad[i][0], tu_tmp("tr-bad"));
        assert_int_equal(tu_run(cmd, &out), 2);
        if (!strstr(out, bad[i][1])) fail_msg("%s: wanted '%s', got: %s", bad[i][0], bad[i][1], out);
        free(out);
    }
}

/* h_lmax, h_lmax/mean of layer 0's q_proj from quantize --spectrum's table */
static void spectrum_of(const char *flags, double *lmax, double *ratio) {
    char cmd[2048], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s quantize %s --method gptq --bits 4 --group 64 --calib %s --nsamples 2 --seqlen 64 %s "
             "--spectrum -o %s --quiet", DQ_CLI, tu_shared("models/gut6l/gut6l.bin"),
             tu_shared("data/gutenberg/calib/gutenberg_calib.txt"), flags, tu_tmp("tr-spectrum"));
    assert_int_equal(tu_run(cmd, &out), 0);
    const char *l = strstr(out, "model.layers.0.self_attn.q_proj ");
    assert_non_null(l);
    double solve, rel;
    assert_int_equal(sscanf(l + 32, "%lf %lf %lf %lf", &solve, &rel, lmax, ratio), 4);
    free(out);
}

/* A rotation is a similarity of the curvature (RᵀĤR, Ĥ that of the
 * gain-free normed input once the gains are folded): block 0's q/k/v see the
 * embedding alone, so two different rotations give them the same λ_max and
 * tr/n; a smoothing is no similarity (Λ⁻¹HΛ⁻¹): the scale-free λ_max/mean
 * moves. */
static void test_spectrum(void **st) {
    (void)st;
    double l0, r0, l1, r1, l2, r2, l3, r3;
    spectrum_of("", &l0, &r0);
    spectrum_of("--rotate hadamard", &l1, &r1);
    spectrum_of("--rotate random", &l2, &r2);
    spectrum_of("--smooth closed", &l3, &r3);
    printf("block 0 q/k/v lmax, lmax/mean: plain %.5g %.5g; hadamard %.5g %.5g; random %.5g %.5g; smoothed %.5g %.5g\n",
           l0, r0, l1, r1, l2, r2, l3, r3);
    assert_true(l1 > 0 && fabs(l2 / l1 - 1) < 1e-3 && fabs(r2 / r1 - 1) < 1e-3);
    assert_true(fabs(r3 / r0 - 1) > 0.05);
}

/* HeRo-Q's spectral term: ρ's gradient against central differences on a
 * random SPD matrix with a clear top eigenvalue (the power iteration
 * converged: 500 steps), and ρ's invariance to a plain rescale u + c. */
static void test_hero_rho_gradient(void **st) {
    (void)st;
    enum { N = 12 };
    float H[N * N];
    double A[N * N], u[N], v[N], tmp[N], g[N];
    uint64_t s = 5;
    for (int i = 0; i < N * N; i++) A[i] = dq_rng_normal(&s);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double acc = i == j ? 0.5 : 0;
            for (int k = 0; k < N; k++) acc += A[i * N + k] * A[j * N + k] * (k == 0 ? 4 : 1);
            H[i * N + j] = (float)acc;
        }
    for (int j = 0; j < N; j++) u[j] = 0.3 * dq_rng_normal(&s);
    for (int j = 0; j < N; j++) v[j] = 1 / sqrt(N);
    double rho = dq_hero_rho(H, N, u, v, tmp, 500, g);
    for (int j = 0; j < N; j++) {
        double h = 1e-5, up[N], fd;
        memcpy(up, u, sizeof up);
        up[j] = u[j] + h;
        double w[N];
        memcpy(w, v, sizeof w);
        double rp = dq_hero_rho(H, N, up, w, tmp, 500, NULL);
        up[j] = u[j] - h;
        memcpy(w, v, sizeof w);
        double rm = dq_hero_rho(H, N, up, w, tmp, 500, NULL);
        fd = (rp - rm) / (2 * h);
        if (fabs(fd - g[j]) > 1e-4 * fmax(1, fabs(fd))) fail_msg("d rho / d u_%d: %g analytic, %g by differences", j, g[j], fd);
    }
    double c[N];
    for (int j = 0; j < N; j++) c[j] = u[j] + 0.7;
    assert_true(fabs(dq_hero_rho(H, N, c, v, tmp, 500, NULL) / rho - 1) < 1e-9);
}

/* Every tap row a block shows under act_bits = 4 lies on the grid
 * k·max|x|/7, k integer in [-7, 7] (per token) or on its group's grid. */
typedef struct {
    int group, rows, bad;
} grid_ctx;

static void on_grid(void *ctx, const dq_tap_data *d) {
    grid_ctx *g = ctx;
    int step = g->group ? g->group : d->cols;
    for (int t = 0; t < d->T; t++)
        for (int c0 = 0; c0 < d->cols; c0 += step) {
            const float *v = d->x + (size_t)t * d->cols + c0;
            int len = d->cols - c0 < step ? d->cols - c0 : step;
            float amax = 0;
            for (int j = 0; j < len; j++) amax = fmaxf(amax, fabsf(v[j]));
            for (int j = 0; j < len && amax > 0; j++) {
                double k = v[j] / (amax / 7.0);
                if (fabs(k - rint(k)) > 2e-2 || fabs(k) > 7.0001) g->bad++; /* group scales are fp16: k is near, not at, an integer */
            }
            g->rows++;
        }
}

static void test_act_quant(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_fixture("llama3-tiny"));
    dq_error err = {0};
    dq_calib_set cs = windows(m, 1, 16);
    float *fp = logits_of(m, cs.tokens, cs.len, 2);
    for (int group = 0; group <= 16; group += 16) {
        assert_int_equal(dq_model_set_act_quant(m, 4, group, &err), DQ_OK);
        dq_session *s = NULL;
        assert_int_equal(dq_session_new(m, cs.len, cs.len, 2, &s, &err), DQ_OK);
        float *x = malloc((size_t)cs.len * m->cfg.dim * sizeof *x);
        for (int t = 0; t < cs.len; t++)
            memcpy(x + (size_t)t * m->cfg.dim, m->tok_embeddings + (size_t)cs.tokens[t] * m->cfg.dim, m->cfg.dim * sizeof *x);
        grid_ctx g = {group, 0, 0};
        dq_taps taps = {NULL, on_grid, &g};
        for (int l = 0; l < m->cfg.n_layers; l++) assert_int_equal(dq_block_forward(s, l, x, cs.len, &taps, &err), DQ_OK);
        printf("act 4-bit group %d: %d rows/groups checked, %d values off the grid\n", group, g.rows, g.bad);
        assert_true(g.rows > 0 && g.bad == 0);
        free(x);
        dq_session_free(s);
        float *q = logits_of(m, cs.tokens, cs.len, 2);
        double diff = 0;
        for (size_t i = 0; i < (size_t)cs.len * m->cfg.vocab_size; i++) diff = fmax(diff, fabs(q[i] - fp[i]));
        assert_true(diff > 1e-4); /* it does change the model */
        free(q);
    }
    assert_int_equal(dq_model_set_act_quant(m, 3, 0, &err), DQ_ERR_ARG);
    assert_int_equal(dq_model_set_act_quant(m, 8, 4, &err), DQ_ERR_ARG);
    assert_int_equal(dq_model_set_act_quant(m, 0, 0, &err), DQ_OK);
    float *back = logits_of(m, cs.tokens, cs.len, 2);
    assert_memory_equal(back, fp, (size_t)cs.len * m->cfg.vocab_size * sizeof *fp); /* off again: bit for bit */
    free(back), free(fp);
    dq_calib_free(&cs);
    dq_model_free(m);
}

/* W4A8 through the CLI: the packed checkpoint records act_bits / act_group,
 * eval applies them (and --act-bits 0 takes them off), a config with an
 * impossible act_bits is refused naming the file. */
static void test_act_cli(void **st) {
    (void)st;
    char cmd[2048], *out = NULL;
    const char *model = tu_shared("models/gut6l/gut6l.bin"), *calib = tu_shared("data/gutenberg/calib/gutenberg_calib.txt");
    const char *text = tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt"), *dir = tu_tmp("tr-w4a8");
    snprintf(cmd, sizeof cmd, "%s quantize %s --method gptq --bits 4 --group 64 --act-bits 8 --act-group 32 --calib %s "
             "--nsamples 2 --seqlen 64 -o %s --quiet", DQ_CLI, model, calib, dir);
    assert_int_equal(tu_run(cmd, &out), 0);
    free(out);
    char *cfg = tu_read(tu_tmp("tr-w4a8/dashq_config.json"), NULL);
    assert_non_null(strstr(cfg, "\"act_bits\":\t8"));
    assert_non_null(strstr(cfg, "\"act_group\":\t32"));
    double ppl[3];
    const char *flags[3] = {"", "--act-bits 8 --act-group 32", "--act-bits 0"};
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd, "%s eval %s --ppl %s --ctx 64 --chunks 4 %s --quiet", DQ_CLI, dir, text, flags[i]);
        assert_int_equal(tu_run(cmd, &out), 0);
        const char *p = strstr(out, "perplexity: ");
        assert_non_null(p);
        ppl[i] = atof(p + 12);
        free(out);
    }
    printf("W4A8 checkpoint: ppl %.6f as recorded, %.6f with the flags, %.6f with A16\n", ppl[0], ppl[1], ppl[2]);
    assert_true(ppl[0] == ppl[1] && ppl[0] != ppl[2]);
    char *bad = strdup(cfg);
    char *at = strstr(bad, "\"act_bits\":\t8");
    at[strlen("\"act_bits\":\t")] = '9';
    tu_write(tu_tmp("tr-w4a8/dashq_config.json"), bad, strlen(bad));
    snprintf(cmd, sizeof cmd, "%s eval %s --ppl %s --ctx 64 --chunks 1 --quiet 2>&1", DQ_CLI, dir, text);
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "dashq_config.json: quantization.act_bits 9"));
    free(out), free(bad), free(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hadamard_orders),
        cmocka_unit_test(test_random_rotations),
        cmocka_unit_test(test_function_preserved),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_spectrum),
        cmocka_unit_test(test_hero_rho_gradient),
        cmocka_unit_test(test_loss_rotation_gradient),
        cmocka_unit_test(test_loss_rotation_fd),
        cmocka_unit_test(test_loss_rotation_learns),
        cmocka_unit_test(test_split_keeps_massive),
        cmocka_unit_test(test_act_quant),
        cmocka_unit_test(test_act_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
