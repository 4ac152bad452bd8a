/* HeRo-Q's residual rotation R1 learned against the output loss of the
 * quantized model (issue #17's output-loss variant; SpinQuant's objective,
 * Liu et al. 2024 §3.2): with every RMSNorm gain folded (gains 1), the model
 * depends on R only through the tensors R rotates,
 *
 *   readers W ← W R (q/k/v, gate/up, the head), embedding E ← E R,
 *   writers W ← Rᵀ W (o, down),
 *
 * and J(R) is a loss on the calibration windows of the model whose block
 * linears are rounded to the quantizer's grid (RTN, bits and group of the
 * run) after the rotation: the mean next-token cross-entropy (`hero-loss`,
 * SpinQuant's), or the mean KL divergence from the full-precision model's
 * next-token distribution (`hero-kl`, distillation; the full-precision
 * logits of a window are recomputed from the unrotated weights, which
 * compute the same function, by pointing the model at them). Rounding is
 * passed straight through (∂Q(W')/∂W' = I), so with G' = Σ_t δ_tᵀ x_t the
 * gradient of a rotated tensor, read from the backward pass's taps at the
 * quantized model,
 *
 *   ∂J/∂R = Σ_readers Wᵀ G' + Σ_writers W G'ᵀ + Eᵀ G'_E
 *         = Σ (δ W)ᵀ x      + Σ (x Wᵀ)ᵀ δ     + Σ_t E[tok_t]ᵀ ∂ℓ/∂e_t,
 *
 * W the unrotated full-precision weights: two (T x n)-sized products per
 * tensor, never a weight-sized gradient. One window per step, in turn;
 * Cayley steps on the Stiefel manifold as the Hessian-norm learner takes
 * (hero_rotate.c), the step size decaying linearly. The final R is kept only
 * if its J over every window is below the starting rotation's (never worse
 * than the start on its own objective). R2 (per head) is not learned and not
 * in J, nor are smoothing (applied after the rotation), the embedding's and
 * head's own rounding where they are quantized. Cost per step: rotating
 * every tensor (the model's weights times dim², ~1.5 s on SmolLM2-135M), one forward and backward pass over a
 * window, and the products above; memory: one full-precision copy of the
 * rotated tensors (the model's size in fp32) and the activations of one
 * window. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/backward.h"
#include "model/session.h"
#include "transform/fold.h"
#include "transform/hero.h"
#include "util/error.h"
#include "util/progress.h"

typedef enum { ROT_READER, ROT_WRITER, ROT_EMBED } rot_kind;

typedef struct {
    const dq_site *site;
    int layer;
    rot_kind kind;
    float *buf;  /* the model's (writable) tensor */
    float *orig; /* its unrotated full-precision values */
    int rows, cols;
} rot_tensor;

typedef struct {
    dq_model *m;
    const dq_calib_set *cs;
    rot_tensor *t; /* block linears in block order, then the embedding, then the head */
    int n_t, n, nt, maxq, group;
    bool distill;
    const dq_progress *progress; /* stage "transform", one unit per step; the loss passes report too */
    size_t done, total;
    float *G, *A, *d_embed; /* (n, n), (len, n), (len, n) */
    float *target;          /* distill: (len, vocab) the full-precision logits of the window */
    dq_session *s;
} learner;

static void learner_free(learner *L) {
    for (int i = 0; L->t && i < L->n_t; i++) free(L->t[i].orig);
    free(L->t), free(L->G), free(L->A), free(L->d_embed), free(L->target);
    dq_session_free(L->s);
}

static dq_status add_tensor(learner *L, int layer, const dq_site *site, rot_kind kind, dq_error *err) {
    rot_tensor *t = &L->t[L->n_t];
    t->site = site, t->layer = layer, t->kind = kind;
    dq_site_shape(site, &L->m->cfg, &t->rows, &t->cols);
    size_t ne = (size_t)t->rows * t->cols;
    if (!(t->buf = dq_site_writable(L->m, layer, site, err))) return err->code;
    if (!(t->orig = malloc(ne * sizeof *t->orig)))
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory for HeRo-Q's loss rotation (a copy of %s)", site->gguf);
    memcpy(t->orig, t->buf, ne * sizeof *t->orig);
    L->n_t++;
    return DQ_OK;
}

static dq_status learner_init(learner *L, dq_model *m, const dq_calib_set *cs, const dq_transform_opts *o,
                              bool distill, dq_error *err) {
    const dq_config *c = &m->cfg;
    memset(L, 0, sizeof *L);
    L->m = m, L->cs = cs, L->n = c->dim, L->maxq = (1 << o->bits) - 1, L->group = o->group;
    L->nt = o->n_threads > 0 ? o->n_threads : 1;
    L->distill = distill, L->progress = &o->progress, L->total = (size_t)o->hero_steps;
    size_t nn = (size_t)L->n * L->n, tn = (size_t)cs->len * L->n;
    if (m->output == m->tok_embeddings) /* dq_fold_norms unties it: the final norm's gain goes into the head */
        return dq_fail(err, DQ_ERR_ARG, "%s: HeRo-Q's loss rotation needs the norms folded (the head is still tied)",
                       m->path);
    if (cs->n < 1 || cs->len < 2)
        return dq_fail(err, DQ_ERR_ARG, "HeRo-Q's loss rotation needs at least one window of 2 tokens (%d of %d)",
                       cs->n, cs->len);
    L->t = calloc((size_t)c->n_layers * DQ_LIN_PER_BLOCK + 2, sizeof *L->t);
    L->G = malloc(nn * sizeof *L->G), L->A = malloc(tn * sizeof *L->A), L->d_embed = malloc(tn * sizeof *L->d_embed);
    if (distill) L->target = malloc((size_t)cs->len * c->vocab_size * sizeof *L->target);
    if (!L->t || !L->G || !L->A || !L->d_embed || (distill && !L->target))
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory for HeRo-Q's loss rotation");
    dq_status st = DQ_OK;
    for (int l = 0; !st && l < c->n_layers; l++)
        for (int k = 0; !st && k < DQ_LIN_PER_BLOCK; k++) {
            const dq_site *site = dq_site_of_linear(k);
            bool writer = site->tap == DQ_TAP_ATTN_OUT || site->tap == DQ_TAP_FFN_HIDDEN;
            st = add_tensor(L, l, site, writer ? ROT_WRITER : ROT_READER, err);
        }
    if (!st) st = add_tensor(L, 0, &DQ_SITES[DQ_SITE_TOKEN_EMBD], ROT_EMBED, err);
    if (!st) st = add_tensor(L, 0, &DQ_SITES[DQ_SITE_OUTPUT], ROT_READER, err);
    if (!st) st = dq_session_new(m, cs->len, cs->len, L->nt, &L->s, err);
    if (!st) st = dq_session_keep_activations(L->s, DQ_ACTS_EVERY_BLOCK, err);
    return st;
}

/* Rounds each row of W (rows, cols) group by group to the objective's grid, in place. */
static void fake_quantize(float *W, int rows, int cols, int group, int maxq, int nt) {
    int gs = group > 0 ? group : cols;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int i = 0; i < rows; i++)
        for (int c0 = 0; c0 < cols; c0 += gs) {
            float *w = W + (size_t)i * cols + c0;
            int len = cols - c0 < gs ? cols - c0 : gs;
            dq_rtn_group q = dq_rtn_group_of(w, len, maxq);
            for (int j = 0; j < len; j++) w[j] = (dq_rtn_code(&q, w[j], maxq) - q.zero) * q.step;
        }
}

/* Points the model at the full-precision unrotated weights (fp) or at its
 * own buffers (the installed rotated, rounded model). */
static void point(learner *L, bool fp) {
    for (int i = 0; i < L->n_t; i++) {
        const rot_tensor *t = &L->t[i];
        const float *p = fp ? t->orig : t->buf;
        if (t->site->per_block) *dq_site_tensor(&L->m->layers[t->layer], t->site) = p;
        else *dq_site_model_tensor(L->m, t->site) = p;
    }
}

/* The model as it came: its own buffers holding the originals. */
static void restore(learner *L) {
    point(L, false);
    for (int i = 0; i < L->n_t; i++)
        memcpy(L->t[i].buf, L->t[i].orig, (size_t)L->t[i].rows * L->t[i].cols * sizeof(float));
}

/* The model at R: every tensor rotated from its original, block linears rounded. */
static dq_status install(learner *L, const float *R, dq_error *err) {
    restore(L);
    dq_status st = dq_rotate_residual(L->m, R, L->nt, err);
    for (int i = 0; !st && i < L->n_t; i++)
        if (L->t[i].site->lin >= 0) fake_quantize(L->t[i].buf, L->t[i].rows, L->t[i].cols, L->group, L->maxq, L->nt);
    return st;
}

/* A (T, n) = X (T, k) · W (k, n), or · Wᵀ (W: n, k): tiles of tokens, one
 * single-threaded BLAS call each (the same result at any thread count). */
static void times_w(const float *X, int T, int k, const float *W, bool trans, int n, float *A, int nt) {
    int tiles = (T + DQ_TILE_TOKENS - 1) / DQ_TILE_TOKENS;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int b = 0; b < tiles; b++) {
        int t0 = b * DQ_TILE_TOKENS, rows = T - t0 < DQ_TILE_TOKENS ? T - t0 : DQ_TILE_TOKENS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, trans ? CblasTrans : CblasNoTrans, rows, n, k, 1.0f,
                    X + (size_t)t0 * k, k, W, trans ? k : n, 0.0f, A + (size_t)t0 * n, n);
    }
}

/* G (n, n) += Aᵀ B, A and B (T, n): tiles of G's rows, each summed over T in one call. */
static void add_atb(const float *A, const float *B, int T, int n, float *G, int nt) {
    int tiles = (n + DQ_TILE_FEATURES - 1) / DQ_TILE_FEATURES;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int b = 0; b < tiles; b++) {
        int i0 = b * DQ_TILE_FEATURES, rows = n - i0 < DQ_TILE_FEATURES ? n - i0 : DQ_TILE_FEATURES;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, rows, n, T, 1.0f, A + i0, n, B, n, 1.0f,
                    G + (size_t)i0 * n, n);
    }
}

static const rot_tensor *tensor_of(const learner *L, int layer, const dq_site *site) {
    if (site->lin >= 0) return &L->t[(size_t)layer * DQ_LIN_PER_BLOCK + site->lin];
    return &L->t[L->n_t - 1]; /* the head: last */
}

/* One tensor's share of ∂J/∂R (header comment), from its tap. */
static void accumulate(void *ctx, const dq_grad_data *g) {
    learner *L = ctx;
    const rot_tensor *t = tensor_of(L, g->layer, g->site);
    if (t->kind == ROT_WRITER) {
        times_w(g->x, g->T, g->cols, t->orig, true, L->n, L->A, L->nt);
        add_atb(L->A, g->dy, g->T, L->n, L->G, L->nt);
    } else {
        times_w(g->dy, g->T, g->rows, t->orig, false, L->n, L->A, L->nt);
        add_atb(L->A, g->x, g->T, L->n, L->G, L->nt);
    }
}

static bool wanted(void *ctx, int layer, const dq_site *site) {
    (void)ctx, (void)layer;
    return site->lin >= 0 || site == &DQ_SITES[DQ_SITE_OUTPUT];
}

/* distill: L->target = the full-precision model's logits on window w
 * (full-precision activations too: W4A8 is distilled from W16A16). */
static dq_status fp_target(learner *L, const int32_t *tok, dq_error *err) {
    if (!L->distill) return DQ_OK;
    const float *logits;
    dq_config *c = &L->m->cfg;
    int act_bits = c->act_bits, act_group = c->act_group;
    point(L, true);
    c->act_bits = 0, c->act_group = 0;
    dq_status st = dq_forward(L->s, tok, L->cs->len, 0, true, &logits, err);
    c->act_bits = act_bits, c->act_group = act_group;
    point(L, false);
    if (!st) memcpy(L->target, logits, (size_t)L->cs->len * L->m->cfg.vocab_size * sizeof *L->target);
    return st;
}

/* G = ∂ℓ_w/∂R at the installed model, *loss = ℓ_w, for window w. */
static dq_status window_gradient(learner *L, int w, double *loss, dq_error *err) {
    const int32_t *tok = L->cs->tokens + (size_t)w * L->cs->len;
    int T = L->cs->len, n = L->n;
    memset(L->G, 0, (size_t)n * n * sizeof *L->G);
    dq_grad_taps taps = {.ask = wanted, .fn = accumulate, .ctx = L, .d_embed = L->d_embed};
    dq_status st = fp_target(L, tok, err);
    if (!st) st = L->distill ? dq_kl_backward(L->s, tok, T, L->target, &taps, loss, err)
                             : dq_loss_backward(L->s, tok, T, &taps, loss, err);
    if (st) return st;
    const rot_tensor *E = &L->t[(size_t)L->m->cfg.n_layers * DQ_LIN_PER_BLOCK];
    for (int t = 0; t < T; t++) memcpy(L->A + (size_t)t * n, E->orig + (size_t)tok[t] * n, n * sizeof *L->A);
    add_atb(L->A, L->d_embed, T, n, L->G, L->nt);
    return DQ_OK;
}

/* J(R): the installed model's mean loss over every window. */
static dq_status mean_loss(learner *L, const float *R, double *J, dq_error *err) {
    dq_status st = install(L, R, err);
    double sum = 0;
    for (int w = 0; !st && w < L->cs->n; w++) {
        const int32_t *tok = L->cs->tokens + (size_t)w * L->cs->len;
        double l = 0;
        st = fp_target(L, tok, err);
        if (!st) st = dq_window_loss(L->s, tok, L->cs->len, L->distill ? L->target : NULL, &l, err);
        if (!st && !dq_progress_report(L->progress, "transform", L->done, L->total, err)) st = DQ_ERR_CANCELLED;
        sum += l;
    }
    *J = st ? NAN : sum / L->cs->n;
    return st;
}

/* The Cayley steps from R (left at the last step); J1: the loss there. */
static dq_status descend(learner *L, const dq_transform_opts *o, float *R, double *J1, dq_error *err) {
    int n = L->n, steps = o->hero_steps;
    size_t nn = (size_t)n * n;
    double *A = malloc(nn * sizeof *A), *B = malloc(nn * sizeof *B), *C = malloc(nn * sizeof *C);
    lapack_int *piv = malloc((size_t)n * sizeof *piv);
    dq_status st = A && B && C && piv ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "out of memory for HeRo-Q's loss rotation");
    for (int step = 0; !st && step < steps; step++) {
        double loss;
        st = install(L, R, err);
        if (!st) st = window_gradient(L, step % L->cs->n, &loss, err);
        if (!st && !dq_cayley_step(R, L->G, n, o->hero_rot_lr * (1.0 - (double)step / steps), A, B, C, piv))
            st = dq_fail(err, DQ_ERR_NUMERIC, "the Cayley step's solve failed at step %d", step);
        L->done = (size_t)step + 1;
        if (!st && !dq_progress_report(L->progress, "transform", L->done, L->total, err))
            st = DQ_ERR_CANCELLED;
    }
    if (!st) st = mean_loss(L, R, J1, err);
    free(A), free(B), free(C), free(piv);
    return st;
}

/* R from its start (kept unless the end's loss over every window is lower;
 * also where the descent met a non-finite loss or gradient, with a note). */
static dq_status learn(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, float *R, bool distill,
                       dq_error *err) {
    size_t nn = (size_t)m->cfg.dim * m->cfg.dim;
    learner L;
    dq_status st = learner_init(&L, m, cs, o, distill, err);
    float *R0 = malloc(nn * sizeof *R0);
    if (!st && !R0) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory for HeRo-Q's loss rotation");
    double J0 = INFINITY, J1 = INFINITY;
    if (!st) memcpy(R0, R, nn * sizeof *R), st = mean_loss(&L, R, &J0, err);
    if (!st) st = descend(&L, o, R, &J1, err);
    if (st == DQ_ERR_NUMERIC) {
        dq_progress_note(&o->progress, true, "HeRo-Q loss rotation: %s; the starting rotation is kept", err->msg);
        st = DQ_OK, J1 = INFINITY;
    }
    if (!st && !(J1 < J0)) memcpy(R, R0, nn * sizeof *R);
    restore(&L);
    o->hero.rot_loss_before = J0;
    o->hero.rot_loss_after = st ? NAN : fmin(J0, J1);
    learner_free(&L);
    free(R0);
    return st;
}

dq_status dq_hero_loss_rotation(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, float *R, dq_error *err) {
    return learn(m, cs, o, R, false, err);
}

dq_status dq_hero_kl_rotation(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, float *R, dq_error *err) {
    return learn(m, cs, o, R, true, err);
}

dq_status dq_hero_loss_gradient(dq_model *m, const dq_calib_set *cs, const dq_transform_opts *o, const float *R,
                                bool distill, int w, double *loss, float *G, dq_error *err) {
    if (w < 0 || w >= cs->n) return dq_fail(err, DQ_ERR_ARG, "window %d of %d", w, cs->n);
    learner L;
    dq_status st = learner_init(&L, m, cs, o, distill, err);
    if (!st) st = install(&L, R, err);
    if (!st) st = window_gradient(&L, w, loss, err);
    if (!st) memcpy(G, L.G, (size_t)L.n * L.n * sizeof *G);
    restore(&L);
    learner_free(&L);
    return st;
}
