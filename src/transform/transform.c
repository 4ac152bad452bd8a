/* See transform.h. A new rotation or smoothing is one function and one row
 * of its table. */
#include "transform/transform.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#include "model/forward.h"
#include "transform/block_stats.h"
#include "transform/fold.h"
#include "transform/hadamard.h"
#include "transform/hero.h"
#include "transform/split.h"
#include "util/error.h"
#include "util/progress.h"

/* SmoothQuant (Xiao et al. 2023, eq. 4 and smooth.py): s_j = max|X_j|^α /
 * max|W_j|^(1−α), both maxima clamped below at 1e-5 as its code does. */
static void smoothquant_scales(const float *amax, const float *wmax, int w, float alpha, float *s) {
    for (int j = 0; j < w; j++) {
        double a = fmax(amax[j], 1e-5), b = fmax(wmax[j], 1e-5);
        s[j] = (float)fmax(pow(a, alpha) / pow(b, 1.0 - alpha), 1e-5);
    }
}

const dq_rotation_info DQ_ROTATIONS[] = {
    {"none", "no rotation", NULL, NULL, NULL},
    {"hadamard", "random Hadamard (QuaRot): diag(±1)·H/√n, n = 2^k·(q+1) factors", dq_random_hadamard, NULL, NULL},
    {"random", "Haar-random orthogonal (QR of a Gaussian matrix), any width", dq_random_orthogonal, NULL, NULL},
    {"split", "random Hadamard on all but the massive-activation channels (>= 8x the mean input energy) and as "
     "few more as give the rest a Hadamard order, which keep their own columns; none massive: hadamard",
     dq_hadamard_or_random, dq_split_rotation, NULL},
    {"hero", "HeRo-Q (reconstructed): R1 learned by Cayley steps from the Hadamard one", dq_hadamard_or_random,
     dq_hero_learn_rotation, NULL},
    {"hero-r2", "HeRo-Q's R1 as hero, and each block's R2 learned the same way against o_proj's RTN error in its "
     "input Hessian norm", dq_hadamard_or_random, dq_hero_learn_rotation, dq_hero_learn_heads},
    {"hero-loss", "HeRo-Q's R1 learned from the Hadamard one against the RTN-quantized model's cross-entropy "
     "(SpinQuant's objective, rounding passed straight through the backward pass)", dq_hadamard_or_random,
     dq_hero_loss_rotation, NULL},
    {"hero-kl", "HeRo-Q's R1 learned from the Hadamard one against the RTN-quantized model's KL divergence from "
     "the full-precision model (distillation, straight-through rounding)", dq_hadamard_or_random, dq_hero_kl_rotation,
     NULL},
};
const int DQ_N_ROTATIONS = sizeof DQ_ROTATIONS / sizeof DQ_ROTATIONS[0];

static dq_status closed_smooth(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, dq_error *err);

const dq_smoothing_info DQ_SMOOTHINGS[] = {
    {"none", "no smoothing", false, NULL},
    {"closed", "SmoothQuant's closed form s = max|X|^α / max|W|^(1−α)", true, closed_smooth},
    {"hero", "HeRo-Q (reconstructed): s learned against RTN error + β·λ_max/mean of Λ⁻¹HΛ⁻¹", true, dq_hero_smooth},
};
const int DQ_N_SMOOTHINGS = sizeof DQ_SMOOTHINGS / sizeof DQ_SMOOTHINGS[0];

const dq_rotation_info *dq_rotation_find(const char *name) {
    for (int i = 0; name && i < DQ_N_ROTATIONS; i++)
        if (!strcmp(DQ_ROTATIONS[i].name, name)) return &DQ_ROTATIONS[i];
    return NULL;
}

const dq_smoothing_info *dq_smoothing_find(const char *name) {
    for (int i = 0; name && i < DQ_N_SMOOTHINGS; i++)
        if (!strcmp(DQ_SMOOTHINGS[i].name, name)) return &DQ_SMOOTHINGS[i];
    return NULL;
}

/* The name lists are built once (call_once): error messages ask for them
 * from any thread, e.g. two Python threads quantizing at once. */
static char rotation_names[128], smoothing_names[128];

static void build_names(void) {
    size_t k = 0;
    for (int i = 0; i < DQ_N_ROTATIONS; i++)
        k += (size_t)snprintf(rotation_names + k, sizeof rotation_names - k, "%s%s", i ? ", " : "",
                              DQ_ROTATIONS[i].name);
    k = 0;
    for (int i = 0; i < DQ_N_SMOOTHINGS; i++)
        k += (size_t)snprintf(smoothing_names + k, sizeof smoothing_names - k, "%s%s", i ? ", " : "",
                              DQ_SMOOTHINGS[i].name);
}

static once_flag names_once = ONCE_FLAG_INIT;

const char *dq_rotation_names(void) {
    call_once(&names_once, build_names);
    return rotation_names;
}

const char *dq_smoothing_names(void) {
    call_once(&names_once, build_names);
    return smoothing_names;
}

static bool rotates(const dq_transform_opts *o) { return o->rotate && o->rotate->make; }
static bool smooths(const dq_transform_opts *o) { return o->smooth && o->smooth->run; }
bool dq_transform_active(const dq_transform_opts *o) { return rotates(o) || smooths(o); }
bool dq_transform_unties(const dq_transform_opts *o) { return rotates(o); }

/* An orthogonal n x n matrix from the rotation's row, checked. */
static dq_status make_rotation(const dq_transform_opts *o, int n, uint64_t seed, float **Q, double *orth,
                               dq_error *err) {
    if (!(*Q = malloc((size_t)n * n * sizeof **Q)))
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory for a %d x %d rotation", n, n);
    dq_status st = o->rotate->make(n, seed, *Q, err);
    double e = st ? 0 : dq_orthogonality_error(*Q, n);
    if (!st && !(e <= 1e-4))
        st = dq_fail(err, DQ_ERR_NUMERIC, "the %s rotation of order %d is %g away from orthogonal (max |QᵀQ - I|, "
                     "1e-4 allowed): refused rather than change the model", o->rotate->name, n, e);
    *orth = fmax(*orth, e);
    return st;
}

/* A learned R must still be orthogonal (it left the manifold only by
 * rounding): checked, as a made one is. */
static dq_status learn_rotation(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, float *Q, dq_error *err) {
    dq_status st = o->rotate->learn(m, cs, o, Q, err);
    double e = st ? 0 : dq_orthogonality_error(Q, m->cfg.dim);
    if (!st && !(e <= 1e-4))
        st = dq_fail(err, DQ_ERR_NUMERIC, "the learned %s rotation is %g away from orthogonal (max |QᵀQ - I|, 1e-4 "
                     "allowed): refused rather than change the model", o->rotate->name, e);
    o->orth_err = fmax(o->orth_err, e);
    return st;
}

static dq_status rotate(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, dq_error *err) {
    float *Q = NULL, *P = NULL;
    dq_status st = make_rotation(o, m->cfg.dim, o->seed, &Q, &o->orth_err, err);
    if (!st) st = make_rotation(o, m->cfg.head_dim, o->seed ^ 0x5eedu, &P, &o->orth_err, err);
    if (!st) st = dq_fold_norms(m, err);
    if (!st && o->rotate->learn) st = learn_rotation(m, cs, o, Q, err);
    if (!st) st = dq_rotate_residual(m, Q, o->n_threads, err);
    if (!st && o->rotate->learn_heads) st = o->rotate->learn_heads(m, cs, o, P, err);
    for (int l = 0; !st && !o->rotate->learn_heads && l < m->cfg.n_layers; l++) st = dq_rotate_heads(m, l, P, err);
    free(Q);
    free(P);
    return st;
}

/* Where each smoothed input's (DQ_BS_TAPS) max |x_j| sits in a block's
 * slice of the statistics (dim, dim, hidden_dim floats). */
static size_t block_stride(const dq_config *c) { return 2 * (size_t)c->dim + (size_t)c->hidden_dim; }
static size_t tap_offset(const dq_config *c, dq_tap t) {
    return t == DQ_TAP_ATTN_IN ? 0 : t == DQ_TAP_FFN_IN ? (size_t)c->dim : 2 * (size_t)c->dim;
}

typedef struct {
    const dq_config *c;
    float *amax; /* (n_layers, block_stride) */
} absmax_ctx;

static bool want(void *ctx, int layer, dq_tap tap) {
    (void)ctx, (void)layer;
    return tap == DQ_TAP_ATTN_IN || tap == DQ_TAP_FFN_IN || tap == DQ_TAP_FFN_HIDDEN;
}

static void observe(void *ctx, const dq_tap_data *d) {
    absmax_ctx *a = ctx;
    float *mx = a->amax + (size_t)d->layer * block_stride(a->c) + tap_offset(a->c, d->tap);
    for (int t = 0; t < d->T; t++)
        for (int j = 0; j < d->cols; j++) mx[j] = fmaxf(mx[j], fabsf(d->x[(size_t)t * d->cols + j]));
}

/* max |x_j| of every smoothed tap over every calibration window, through
 * the full-precision (already rotated) model. */
static dq_status input_absmax(const dq_model *m, const dq_calib_set *cs, const dq_transform_opts *o, float *amax,
                              dq_error *err) {
    const dq_config *c = &m->cfg;
    dq_session *s = NULL;
    float *x = malloc((size_t)cs->len * c->dim * sizeof *x);
    dq_status st = x ? dq_session_new(m, cs->len, cs->len, o->n_threads, &s, err)
                     : dq_fail(err, DQ_ERR_NOMEM, "out of memory for a calibration window");
    absmax_ctx a = {c, amax};
    dq_taps taps = {want, observe, &a};
    for (int w = 0; !st && w < cs->n; w++) {
        st = dq_calib_embed(m, cs, w, 1, x, err);
        for (int l = 0; !st && l < c->n_layers; l++) st = dq_block_forward(s, l, x, cs->len, &taps, err);
        if (!st && !dq_progress_report(&o->progress, "transform", (size_t)w + 1, (size_t)cs->n, err))
            st = DQ_ERR_CANCELLED;
    }
    dq_session_free(s);
    free(x);
    return st;
}

/* max |W_ij| over the rows of every linear reading tap in block `layer`. */
static void weight_absmax(const dq_model *m, int layer, dq_tap tap, float *wmax, int w) {
    dq_tap_data d = dq_tap_make(layer, tap, NULL, 0, 0);
    for (int j = 0; j < w; j++) wmax[j] = 0;
    for (int i = 0; i < d.n_sites; i++) {
        if (!dq_site_present(d.sites[i], &m->cfg)) continue;
        int rows, cols;
        dq_site_shape(d.sites[i], &m->cfg, &rows, &cols);
        const float *W = dq_site_data(m, layer, d.sites[i]);
        for (size_t r = 0; r < (size_t)rows; r++)
            for (int j = 0; j < cols; j++) wmax[j] = fmaxf(wmax[j], fabsf(W[r * cols + j]));
    }
}

static dq_status closed_smooth(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, dq_error *err) {
    const dq_config *c = &m->cfg;
    size_t stride = block_stride(c);
    float *amax = calloc((size_t)c->n_layers * stride, sizeof *amax);
    float *wmax = malloc(stride * sizeof *wmax), *s = malloc(stride * sizeof *s);
    dq_status st = amax && wmax && s ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "out of memory for smoothing statistics");
    if (!st) st = input_absmax(m, cs, o, amax, err);
    for (int l = 0; !st && l < c->n_layers; l++)
        for (int k = 0; !st && k < DQ_BS_COUNT; k++) {
            dq_tap t = DQ_BS_TAPS[k];
            int w = t == DQ_TAP_FFN_HIDDEN ? c->hidden_dim : c->dim;
            weight_absmax(m, l, t, wmax, w);
            smoothquant_scales(amax + (size_t)l * stride + tap_offset(c, t), wmax, w, o->alpha, s);
            st = dq_scale_inputs(m, l, t, s, err);
        }
    free(amax), free(wmax), free(s);
    return st;
}

dq_status dq_transform_model(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, dq_error *err) {
    double t0 = dq_now();
    o->orth_err = 0;
    dq_status st = DQ_OK;
    memset(&o->hero, 0, sizeof o->hero);
    if (rotates(o)) st = rotate(m, cs, o, err);
    if (!st && smooths(o)) st = o->smooth->run(m, cs, o, err);
    o->seconds = dq_now() - t0;
    return st;
}

dq_status dq_transform_prepare(dq_model *m, const dq_calib_set *cs, void *user, dq_error *err) {
    return dq_transform_model(m, cs, user, err);
}
