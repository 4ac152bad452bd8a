/* A residual rotation that leaves the massive-activation channels alone.
 *
 * SmolLM2-135M carries a few residual channels whose share of the energy of
 * every q/k/v and gate/up input is 10-115x the mean (channels 507, 247, 17,
 * 308, 260, 14 on 4 Gutenberg windows: 54 % of the energy in 6 of 576).
 * A full Hadamard (or Haar) R1 spreads them over every coordinate, and RTN
 * W3 g128 goes from KLD 1.75 (no rotation) to 5.28 (Hadamard) and 4.96
 * (Haar) on WikiText-2. Here R1 = the identity on those channels and a
 * random Hadamard rotation on the rest, so outliers elsewhere are still
 * spread (QuaRot's point) and the massive ones keep their own columns,
 * where a diagonal curvature (DASH-Q) and the grid's groups still see them.
 *
 * Channels kept: those whose mean energy ratio (over every block's two
 * residual readers' inputs) is at least DQ_SPLIT_RATIO, then the next ones
 * by energy until the rest has a Hadamard order (SmolLM2: 576 - 6 = 570 has
 * none, 576 - 8 = 568 = 2·284 does), at most n/8 of them; past that the rest
 * gets a Haar-random rotation. With no massive channel this is `hadamard`
 * (or Haar where the width has no Hadamard order), nothing kept. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "transform/hadamard.h"
#include "transform/split.h"
#include "util/error.h"
#include "util/progress.h"

/* Energy ratio above which a channel counts as massive: the next channels
 * on SmolLM2 sit at 5.9 and 4.9, the kept ones at 9.6 and above. */
#define DQ_SPLIT_RATIO 8.0

typedef struct {
    int n, n_inputs;
    double *e; /* (2 · n_layers, n): Σ x_j² of each residual reader's input */
} energy_ctx;

static bool want(void *ctx, int layer, dq_tap tap) {
    (void)ctx, (void)layer;
    return tap == DQ_TAP_ATTN_IN || tap == DQ_TAP_FFN_IN;
}

static void observe(void *ctx, const dq_tap_data *d) {
    energy_ctx *a = ctx;
    double *e = a->e + ((size_t)2 * d->layer + (d->tap == DQ_TAP_FFN_IN)) * a->n;
    for (int t = 0; t < d->T; t++)
        for (int j = 0; j < d->cols; j++) {
            double v = d->x[(size_t)t * d->cols + j];
            e[j] += v * v;
        }
}

/* ratio[j] = mean over the inputs of E[x_j²] / mean_k E[x_k²]. */
static dq_status energy_ratios(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, double *ratio,
                               dq_error *err) {
    const dq_config *c = &m->cfg;
    int n = c->dim, L = c->n_layers;
    energy_ctx a = {n, 2 * L, calloc((size_t)2 * L * n, sizeof(double))};
    float *x = malloc((size_t)cs->len * n * sizeof *x);
    dq_session *s = NULL;
    dq_status st = a.e && x ? dq_session_new(m, cs->len, cs->len, o->n_threads, &s, err)
                            : dq_fail(err, DQ_ERR_NOMEM, "out of memory for the channel energies");
    dq_taps taps = {want, observe, &a};
    for (int w = 0; !st && w < cs->n; w++) {
        st = dq_calib_embed(m, cs, w, 1, x, err);
        for (int l = 0; !st && l < L; l++) st = dq_block_forward(s, l, x, cs->len, &taps, err);
        if (!st && !dq_progress_report(&o->progress, "transform", (size_t)w + 1, (size_t)cs->n, err))
            st = DQ_ERR_CANCELLED;
    }
    for (int j = 0; j < n; j++) ratio[j] = 0;
    for (int q = 0; !st && q < a.n_inputs; q++) {
        const double *e = a.e + (size_t)q * n;
        double tot = 0;
        for (int j = 0; j < n; j++) tot += e[j];
        for (int j = 0; j < n && tot > 0; j++) ratio[j] += e[j] / (tot / n) / a.n_inputs;
    }
    dq_session_free(s);
    free(a.e), free(x);
    return st;
}

/* A channel and its energy ratio, sorted largest first (ties: lower index). */
typedef struct {
    double ratio;
    int j;
} ranked;

static int by_ratio_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    return x->ratio < y->ratio ? 1 : x->ratio > y->ratio ? -1 : x->j - y->j;
}

/* How many channels to keep, the first `massive` of `by` and then up to a
 * Hadamard order for the rest; 0 when none is massive. */
static int kept_count(const ranked *by, int n, int *massive) {
    int k = 0;
    while (k < n && by[k].ratio >= DQ_SPLIT_RATIO) k++;
    *massive = k;
    for (int k2 = k; k > 0 && k2 <= n / 8; k2++)
        if (dq_hadamard_exists(n - k2)) return k2;
    return k;
}

/* R (n x n) = the identity on the kept channels, Q (r x r, r = n − kept
 * channels) on the others, in channel order. */
static void place(float *R, int n, const char *kept, const float *Q, int r, int *rest) {
    for (int j = 0, a = 0; j < n; j++)
        if (!kept[j]) rest[a++] = j;
    memset(R, 0, (size_t)n * n * sizeof *R);
    for (int j = 0; j < n; j++)
        if (kept[j]) R[(size_t)j * n + j] = 1;
    for (int a = 0; a < r; a++)
        for (int b = 0; b < r; b++) R[(size_t)rest[a] * n + rest[b]] = Q[(size_t)a * r + b];
}

dq_status dq_split_rotation(dq_model *m, const dq_calib_set *cs, dq_transform_opts *o, float *R, dq_error *err) {
    int n = m->cfg.dim;
    double *ratio = malloc((size_t)n * sizeof *ratio);
    ranked *by = malloc((size_t)n * sizeof *by);
    int *rest = malloc((size_t)n * sizeof *rest);
    float *Q = malloc((size_t)n * n * sizeof *Q);
    char *kept = calloc((size_t)n, 1);
    dq_status st = ratio && by && rest && Q && kept
                       ? DQ_OK
                       : dq_fail(err, DQ_ERR_NOMEM, "out of memory for the split rotation (%d x %d)", n, n);
    if (!st) st = energy_ratios(m, cs, o, ratio, err);
    if (!st) {
        for (int j = 0; j < n; j++) by[j] = (ranked){ratio[j], j};
        qsort(by, (size_t)n, sizeof *by, by_ratio_desc);
        int massive, k = kept_count(by, n, &massive), r = n - k;
        for (int i = 0; i < k; i++) kept[by[i].j] = 1;
        o->hero.split_massive = massive, o->hero.split_kept = k, o->hero.split_energy = 0;
        for (int i = 0; i < massive; i++) o->hero.split_energy += by[i].ratio / n;
        st = dq_hadamard_or_random(r, o->seed, Q, err);
        if (!st) place(R, n, kept, Q, r, rest);
    }
    free(ratio), free(by), free(rest), free(Q), free(kept);
    return st;
}
