#define _POSIX_C_SOURCE 200809L
#include "calib/pipeline.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/gradients.h"
#include "dist/comm.h"
#include "model/forward.h"
#include "quant/methods.h"
#include "util/dd.h"
#include "util/error.h"
#include "util/half.h"
#include "util/progress.h"
#include "util/threads.h"

#define GRAM_TILE 64
#define N_TAPS DQ_TAP_COUNT /* the four block inputs, and the head's input */
/* A statistic per tap (layer curvature: q, k and v share theirs) or per
 * block linear (output-adaptive: each has its own δ) */
#define N_SLOTS ((int)N_TAPS > (int)DQ_LIN_PER_BLOCK ? (int)N_TAPS : (int)DQ_LIN_PER_BLOCK)

/* ---- statistics: what the method's row names (dq_stat_kind), summed exactly ----
 * DQ_STAT_HESSIAN: H = Σ x xᵀ (upper triangle, by 64x64 tiles); DQ_STAT_DIAG:
 * its diagonal; DQ_STAT_NONE: nothing (no calibration pass runs). STATS[]
 * below says how. Each entry is a double-double (util/dd.h) that holds the
 * sum of its per-window terms exactly: the result is the correctly rounded
 * sum whatever the order the windows are added in, so ranks that each sum
 * their share of the windows (dist/comm.h) give the bytes of one process. */

static size_t gram_pairs(int n) {
    size_t nb = ((size_t)n + GRAM_TILE - 1) / GRAM_TILE;
    return nb * (nb + 1) / 2;
}

/* Doubles a slot's sum takes: two per entry (hi, lo). */
static size_t sum_doubles(dq_stat_kind kind, int cols) {
    switch (kind) {
    case DQ_STAT_HESSIAN: return gram_pairs(cols) * GRAM_TILE * GRAM_TILE * 2;
    case DQ_STAT_DIAG: return (size_t)cols * 2;
    default: return 0;
    }
}

/* Tile pair p of the upper triangle: block row bi, block column bj >= bi. */
static void pair_of(int p, int nb, int *bi, int *bj) {
    int i = 0, rest = p;
    while (rest >= nb - i) rest -= nb - i, i++;
    *bi = i;
    *bj = i + rest;
}

/* H += XᵀX over fixed 64x64 tiles of the upper triangle, stored tile after
 * tile (half a square): each tile is one single-threaded sgemm (fp32 over
 * one window) added exactly, so the sum is the same at any thread count. */
static bool gram_add(double *H, const float *X, int T, int n, int nt, float *tiles) {
    int nb = (n + GRAM_TILE - 1) / GRAM_TILE, pairs = nb * (nb + 1) / 2;
    bool inexact = false;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) reduction(|| : inexact)
    for (int p = 0; p < pairs; p++) {
        int bi, bj;
        pair_of(p, nb, &bi, &bj);
        int i0 = bi * GRAM_TILE, j0 = bj * GRAM_TILE;
        int mi = n - i0 < GRAM_TILE ? n - i0 : GRAM_TILE, mj = n - j0 < GRAM_TILE ? n - j0 : GRAM_TILE;
        float *tile = tiles + (size_t)omp_get_thread_num() * GRAM_TILE * GRAM_TILE;
        double *h = H + (size_t)p * GRAM_TILE * GRAM_TILE * 2;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, mi, mj, T, 1.0f, X + i0, n, X + j0, n, 0.0f, tile,
                    GRAM_TILE);
        for (int i = 0; i < mi; i++)
            for (int j = 0; j < mj; j++) dq_dd_add(h + 2 * (i * GRAM_TILE + j), tile[i * GRAM_TILE + j], &inexact);
    }
    return inexact;
}

static bool diag_add(double *h, const float *X, int T, int n, int nt, float *tiles) {
    (void)tiles; /* one pass per column: no tiles */
    bool inexact = false;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(|| : inexact)
    for (int j = 0; j < n; j++) {
        double s = 0;
        for (int t = 0; t < T; t++) s += (double)X[(size_t)t * n + j] * X[(size_t)t * n + j];
        dq_dd_add(h + 2 * j, s, &inexact);
    }
    return inexact;
}

/* sum (cols x cols, upper triangle in tiles) → the mean, mirrored, into out
 * (n x n, n >= cols; the rest stays zero). hi is the correctly rounded sum. */
static void hessian_mean(const double *sum, int cols, int n, double inv, float *out) {
    int nb = (cols + GRAM_TILE - 1) / GRAM_TILE, pairs = nb * (nb + 1) / 2;
    for (int p = 0; p < pairs; p++) {
        int bi, bj;
        pair_of(p, nb, &bi, &bj);
        const double *h = sum + (size_t)p * GRAM_TILE * GRAM_TILE * 2;
        for (int i = bi * GRAM_TILE; i < cols && i < (bi + 1) * GRAM_TILE; i++)
            for (int j = bj * GRAM_TILE; j < cols && j < (bj + 1) * GRAM_TILE; j++) {
                float v = (float)(h[2 * ((i - bi * GRAM_TILE) * GRAM_TILE + j - bj * GRAM_TILE)] * inv);
                out[(size_t)i * n + j] = v;
                out[(size_t)j * n + i] = v;
            }
    }
}

static void diag_mean(const double *sum, int cols, int n, double inv, float *out) {
    (void)n;
    for (int j = 0; j < cols; j++) out[j] = (float)(sum[2 * j] * inv);
}

/* Entry (j, j)'s hi in a slot's sum: whether the layer has any curvature. */
static double hessian_diag_at(const double *sum, int cols, int j) {
    int nb = (cols + GRAM_TILE - 1) / GRAM_TILE, b = j / GRAM_TILE, r = j % GRAM_TILE;
    size_t p = (size_t)b * nb - (size_t)b * (b - 1) / 2; /* pairs before row b, plus (b, b) */
    return sum[(p * GRAM_TILE * GRAM_TILE + (size_t)r * GRAM_TILE + r) * 2];
}

static double diag_diag_at(const double *sum, int cols, int j) {
    (void)cols;
    return sum[2 * j];
}

/* The statistics table: how each dq_stat_kind a method row names is summed
 * from a tap (exactly, thread- and rank-count independent: returns whether a
 * term was rounded), turned into the mean the solver takes, and read on its
 * diagonal. DQ_STAT_NONE has no row: no pass runs for it. */
typedef struct {
    bool (*add)(double *sum, const float *x, int T, int cols, int nt, float *tiles);
    void (*mean)(const double *sum, int cols, int n, double inv, float *out);
    double (*diag_at)(const double *sum, int cols, int j);
} stat_ops;

static const stat_ops STATS[DQ_STAT_COUNT] = {
    [DQ_STAT_DIAG] = {diag_add, diag_mean, diag_diag_at},
    [DQ_STAT_HESSIAN] = {gram_add, hessian_mean, hessian_diag_at},
};

typedef struct {
    dq_stat_kind kind;
    dq_curvature curvature;
    int nt;
    int cols[N_SLOTS];
    double *sum[N_SLOTS]; /* per slot: sum_doubles(kind, cols), exact sums over tokens */
    size_t tokens[N_SLOTS];
    bool inexact[N_SLOTS]; /* a sum rounded (see dd_add) */
    float *tiles; /* nt x GRAM_TILE² scratch */
    double seconds;
    bool oom;
    /* output-adaptive curvature: the gradient pass's store, where the taps
     * are (block, window), and scratch for δ (T, rows) and G or the
     * reweighted x (max(T, rows), cols) */
    dq_grad_store *grads;
    int layer, window;
    float *delta, *g;
    size_t delta_cap, g_cap;
    dq_status fail;
    dq_error fail_err;
} stats_ctx;

static void stats_add(stats_ctx *s, dq_tap tap, const float *x, int T, int cols) {
    double t0 = dq_now();
    size_t n = sum_doubles(s->kind, cols);
    if (n && !s->sum[tap] && !(s->sum[tap] = calloc(n, sizeof(double)))) s->oom = true;
    if (s->sum[tap] && STATS[s->kind].add(s->sum[tap], x, T, cols, s->nt, s->tiles)) s->inexact[tap] = true;
    s->cols[tap] = cols;
    s->tokens[tap] += (size_t)T;
    s->seconds += dq_now() - t0;
}

/* Where a site's statistic is summed: its tap, or its own slot when the
 * curvature is output-adaptive (block linears only: the head keeps its layer
 * statistic, its δ being (T, vocab)). */
static int stat_slot(const stats_ctx *s, const dq_site *site) {
    return s->curvature != DQ_CURVATURE_LAYER && site->lin >= 0 ? site->lin : (int)site->tap;
}

static float *scratch(float **buf, size_t *cap, size_t n, stats_ctx *s) {
    if (n > *cap) {
        free(*buf);
        *cap = 0;
        if (!(*buf = malloc(n * sizeof **buf))) return s->oom = true, NULL;
        *cap = n;
    }
    return *buf;
}

/* The output-adaptive statistic of one linear of the current block, from
 * its input x (T, cols) on the current window: the row kind's statistic (the
 * full matrix or its diagonal) of the rows calib/gradients.c weighs by δ. */
static void oac_add(stats_ctx *s, const dq_site *site, const float *x, int T, int cols) {
    if (s->fail || s->oom) return;
    int rows = dq_grad_store_rows(s->grads, site->lin), big = T > rows ? T : rows, n = 0;
    float *scr = scratch(&s->delta, &s->delta_cap, (size_t)T * rows, s);
    float *g = scratch(&s->g, &s->g_cap, (size_t)big * cols, s);
    if (!scr || !g) return;
    s->fail = dq_grad_store_weighted_rows(s->grads, s->curvature, s->layer, site->lin, s->window, x, T, cols, scr, g,
                                          &n, s->nt, &s->fail_err);
    if (!s->fail) stats_add(s, site->lin, g, n, cols);
}

static void stats_tap(void *ctx, const dq_tap_data *d) {
    stats_ctx *s = ctx;
    if (s->curvature == DQ_CURVATURE_LAYER) stats_add(s, d->tap, d->x, d->T, d->cols);
    else
        for (int i = 0; i < d->n_sites; i++) oac_add(s, d->sites[i], d->x, d->T, d->cols);
}

static void stats_reset(stats_ctx *s) {
    for (int t = 0; t < N_SLOTS; t++) {
        free(s->sum[t]);
        s->sum[t] = NULL;
        s->tokens[t] = 0;
        s->inexact[t] = false;
    }
}

/* ---- output error of the quantized layers ------------------------------- */

typedef struct {
    int n, nt;
    int tap[DQ_LIN_PER_BLOCK], rows[DQ_LIN_PER_BLOCK];
    const float *W[DQ_LIN_PER_BLOCK]; /* original (install's orig: released with the block) */
    const float *Q[DQ_LIN_PER_BLOCK]; /* Ŵ, the model's */
    double num[DQ_LIN_PER_BLOCK], den[DQ_LIN_PER_BLOCK];
    /* (2, DQ_LIN_PER_BLOCK, windows): each window's Σ((W−Ŵ)x)² and Σ(Wx)², added
     * in window order once every rank has filled its own (dq_comm_merge) */
    double *per_window;
    int window, n_windows;
    float *buf; /* nt tiles of (T, ERR_TILE) or (ERR_TILE, cols): a thread's products */
    float *dt;  /* nt tiles of ERR_TILE x max cols: W − Ŵ, a tile at a time */
    /* by_gram: the inputs' Gram matrices instead (error_by_gram): G per
     * tap, exact sums over every window (util/dd.h), and the Gram tiles */
    bool by_gram, oom, inexact;
    double *G[DQ_TAP_COUNT];
    int gcols[DQ_TAP_COUNT];
    float *tiles;
} err_ctx;

#define ERR_TILE 128

/* Rows [r0, r0 + n) of W − Ŵ into dt (n, cols): Ŵ from the codes, or W
 * rounded to f16 for a layer the plan keeps in F16 (install's Ŵ). */
static void error_rows(const float *W, const dq_qtensor *qt, int r0, int n, int cols, float *dt) {
    const float *w = W + (size_t)r0 * cols;
    if (qt->q) dq_qtensor_dequantize_rows(qt, r0, n, dt);
    else
        for (size_t i = 0; i < (size_t)n * cols; i++) dt[i] = dq_f16_to_f32(dq_f32_to_f16(w[i]));
    for (size_t i = 0; i < (size_t)n * cols; i++) dt[i] = w[i] - dt[i];
}

/* Rows [r0, r0 + n) of A into d: A = W − Ŵ with Ŵ = Q, or from qt's codes
 * (error_rows), or A = W (neither). */
static const float *rows_of(const float *W, const float *Q, const dq_qtensor *qt, int r0, int n, int cols, float *d) {
    const float *w = W + (size_t)r0 * cols;
    if (qt) error_rows(W, qt, r0, n, cols, d);
    else if (Q)
        for (size_t i = 0; i < (size_t)n * cols; i++) d[i] = w[i] - Q[(size_t)r0 * cols + i];
    else return w; /* W itself: no copy */
    return d;
}

/* Σ over A's rows (A as rows_of) of ‖x aᵀ‖² (x: T inputs, G NULL) or of
 * a G aᵀ (G: cols x cols, full, fp32), over fixed tiles of ERR_TILE rows in
 * parallel: each tile's A rows formed in the thread's dt tile, its product a
 * single-threaded sgemm into the thread's buf tile ((T, ERR_TILE) or
 * (ERR_TILE, cols)), its sum in double; tile sums are added in tile order,
 * so the result does not depend on the thread count, and the difference
 * W − Ŵ never exists whole (the head, vocab x dim, is not copied twice). */
static double tiled_sumsq(const float *x, int T, const float *G, int cols, const float *W, const float *Q,
                          const dq_qtensor *qt, int rows, float *buf, float *dt, int nt) {
    int tiles = (rows + ERR_TILE - 1) / ERR_TILE;
    double part[4096];
    if (tiles > 4096) tiles = 4096; /* rows beyond 512k: never for real models */
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int k = 0; k < tiles; k++) {
        int r0 = k * ERR_TILE, n = rows - r0 < ERR_TILE ? rows - r0 : ERR_TILE, th = omp_get_thread_num();
        float *b = buf + (size_t)th * ERR_TILE * (G ? cols : T);
        const float *a = rows_of(W, Q, qt, r0, n, cols, dt + (size_t)th * ERR_TILE * cols);
        double s = 0;
        if (G) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, cols, cols, 1.0f, a, cols, G, cols, 0.0f, b, cols);
            for (size_t i = 0; i < (size_t)n * cols; i++) s += (double)b[i] * a[i];
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n, cols, 1.0f, x, cols, a, cols, 0.0f, b, n);
            for (size_t i = 0; i < (size_t)T * n; i++) s += (double)b[i] * b[i];
        }
        part[k] = s;
    }
    double s = 0;
    for (int k = 0; k < tiles; k++) s += part[k];
    return s;
}

/* ---- the same error from the inputs' Gram matrix ---------------------------
 * ‖(W − Ŵ)X‖² = Σ_r d_r G d_rᵀ with G = Σ_t x_t x_tᵀ over every window (d_r a
 * row of W − Ŵ): G costs T·cols² per input (q/k/v share theirs, gate/up
 * too), the two quadratic forms 2·rows·cols² per layer, where the products
 * cost 2·T·rows·cols per layer and term. Once the tokens outnumber the
 * widths the Gram way is far cheaper (SmolLM2-135M, 32 × 512 tokens: the
 * head's error from 1.9 TFLOP to 0.07), so each block and the head take the
 * cheaper way, decided from shapes and token count alone: every rank and
 * thread count decides alike. G is summed exactly and all-reduced like the
 * statistics; the errors reported then differ from the products' in their
 * last digits. */
static bool error_by_gram(double tokens, const int *rows, const int *cols, const int *tap, int n) {
    double products = 0, gram = 0;
    bool seen[DQ_TAP_COUNT] = {false};
    for (int k = 0; k < n; k++) {
        double rc = (double)rows[k] * cols[k];
        products += 4 * tokens * rc;
        gram += 4 * rc * cols[k];
        if (!seen[tap[k]]) gram += tokens * cols[k] * cols[k];
        seen[tap[k]] = true;
    }
    return gram < products;
}

/* A window's input x of `tap` into its exact Gram sum. */
static void gram_of_tap(err_ctx *e, int tap, const float *x, int T, int cols) {
    if (e->oom) return;
    if (!e->G[tap] && !(e->G[tap] = calloc(sum_doubles(DQ_STAT_HESSIAN, cols), sizeof(double)))) {
        e->oom = true;
        return;
    }
    e->gcols[tap] = cols;
    if (gram_add(e->G[tap], x, T, cols, e->nt, e->tiles)) e->inexact = true;
}

static void err_tap(void *ctx, const dq_tap_data *d) {
    err_ctx *e = ctx;
    if (e->by_gram) {
        for (int k = 0; k < e->n; k++)
            if (e->tap[k] == (int)d->tap) {
                gram_of_tap(e, (int)d->tap, d->x, d->T, d->cols);
                break;
            }
        return;
    }
    for (int k = 0; k < e->n; k++) {
        if (e->tap[k] != (int)d->tap) continue;
        double *v = e->per_window + (size_t)k * e->n_windows + e->window;
        v[0] += tiled_sumsq(d->x, d->T, NULL, d->cols, e->W[k], e->Q[k], NULL, e->rows[k], e->buf, e->dt, e->nt);
        v[(size_t)DQ_LIN_PER_BLOCK * e->n_windows] += tiled_sumsq(d->x, d->T, NULL, d->cols, e->W[k], NULL, NULL,
                                                                  e->rows[k], e->buf, e->dt, e->nt);
    }
}

/* ---- one linear layer ------------------------------------------------------ */

/* ql is site `site` of block `layer` (-1: a model-level site). */
static void qlayer_init(dq_qlayer *ql, const dq_site *site, int layer) {
    dq_site_hf_module(site, layer < 0 ? 0 : layer, ql->name, sizeof ql->name);
    ql->layer = layer;
    ql->site = site;
    ql->expert = -1;
}

/* Ŵ into the model, from the codes or — for a layer the plan keeps in F16
 * — from rounding W. With orig, W is kept for the output error and handed
 * back (*orig; the caller gives it to dq_model_release, which frees a copy
 * the model owns and leaves a mapped view alone): the error pass forms
 * W − Ŵ a tile at a time, so a block costs W and Ŵ, not a third copy
 * (Llama-3-8B: 0.9 GB a block). Without it (the head, whose error was
 * measured from the codes) a W the model owns is overwritten in place. The
 * buffer a tied embedding and head share always gets a new Ŵ. */
static dq_status install(dq_model *m, const float **slot, int rows, int cols, const dq_qlayer *ql, const float **orig,
                         dq_error *err) {
    const float *W = *slot;
    size_t n = (size_t)rows * cols;
    bool shared = W == m->tok_embeddings && W == m->output; /* a tied head: the embedding may stay full precision */
    bool in_place = !orig && dq_model_owns(m, W) && !shared;
    float *Wq = in_place ? (float *)W : dq_model_alloc(m, n * sizeof *Wq);
    if (orig) *orig = NULL;
    if (!Wq) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", ql->name);
    if (ql->qt.q) dq_qtensor_dequantize(&ql->qt, Wq);
    else
        for (size_t i = 0; i < n; i++) Wq[i] = dq_f16_to_f32(dq_f32_to_f16(W[i]));
    for (size_t i = 0; i < n; i++)
        if (!isfinite(Wq[i])) {
            if (!in_place) dq_model_release(m, Wq); /* the model keeps W */
            return dq_fail(err, DQ_ERR_NUMERIC, "%s: quantized weight %zu is not finite", ql->name, i);
        }
    *slot = Wq;
    if (orig) *orig = shared ? NULL : W;
    return DQ_OK;
}

/* The method's options for one layer: the plan's grid, or plain groups.
 * A group that does not divide the width pads it (o->pad zero columns) to
 * the next multiple, as the DASH-Q packed format's quant_in_features does;
 * on a grid, rows the block does not divide already got llama.cpp's
 * fallback type in the plan. Returns false for a layer kept in F16. */
static bool layer_opts(const dq_pipeline_opts *o, int type, int cols, dq_qlayer *ql, dq_quant_opts *q) {
    *q = o->q;
    ql->ggml_type = type;
    if (type >= 0) {
        q->grid = dq_grid_of((dq_ggml_type)type);
        return q->grid != NULL;
    }
    if (q->group > 0 && cols % q->group != 0) q->pad = q->group - cols % q->group;
    ql->pad = q->pad;
    return true;
}

/* The statistic of W's input, as the method takes it (mean over tokens),
 * widened to cols + pad columns with zeros: the padding has no curvature.
 * NULL for DQ_STAT_NONE. */
static dq_status layer_stat(const stats_ctx *s, int slot, int cols, int pad, float **out, dq_error *err) {
    double inv = s->tokens[slot] ? 1.0 / (double)s->tokens[slot] : 1.0;
    int n = cols + pad;
    size_t nf = dq_stat_floats(s->kind, n);
    const double *sum = s->sum[slot];
    *out = NULL;
    if (!nf) return DQ_OK;
    float *st = calloc(nf, sizeof *st);
    if (!st) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    STATS[s->kind].mean(sum, cols, n, inv, st);
    *out = st;
    return DQ_OK;
}

/* Whether a statistic (the row kind's sum) has no curvature at all: an
 * output-adaptive one where no gradient reached the layer. GPTQ would take
 * every column for dead and zero the layer; that is an error instead. */
static bool stat_is_zero(const stats_ctx *s, int slot, int cols) {
    const double *sum = s->sum[slot];
    if (!sum) return true;
    for (int j = 0; j < cols; j++)
        if (STATS[s->kind].diag_at(sum, cols, j) > 0) return false;
    return true;
}

/* W's codes into ql->qt (left empty for a layer the plan keeps in F16);
 * install() then puts Ŵ into the model. */
static dq_status solve_linear(const float *W, int rows, int cols, const stats_ctx *s, int stat_at,
                              const dq_pipeline_opts *o, int type, dq_qlayer *ql, dq_error *err) {
    dq_quant_opts q;
    double t0 = dq_now();
    if (!layer_opts(o, type, cols, ql, &q)) return DQ_OK;
    int qcols = cols + q.pad;
    dq_status st = dq_quant_check(&q, qcols, ql->name, err);
    if (st) return st;
    float *stat = NULL, *Wp = NULL;
    if (q.pad && !(Wp = dq_pad_matrix(W, rows, cols, rows, qcols))) /* zero columns appended to every row */
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", ql->name);
    const float *Wq = Wp ? Wp : W;
    if (s->kind != DQ_STAT_NONE && s->curvature != DQ_CURVATURE_LAYER && stat_is_zero(s, stat_at, cols)) {
        free(Wp);
        return dq_fail(err, DQ_ERR_NUMERIC,
                       "%s: the output-adaptive curvature is zero (no loss gradient reaches the layer); "
                       "use curvature=layer",
                       ql->name);
    }
    if ((st = layer_stat(s, stat_at, cols, q.pad, &stat, err))) {
        free(Wp);
        return dq_fail(err, st, "%s: out of memory", ql->name);
    }
    if (o->spectrum && s->kind == DQ_STAT_HESSIAN) st = dq_spectrum_of(stat, cols, qcols, 0.01, &ql->spectrum, err);
    if (!st) st = dq_method_of(o->q.method)->solve(Wq, rows, qcols, stat, &q, o->n_threads, &ql->qt, err);
    free(stat);
    free(Wp);
    if (st) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return dq_fail(err, st, "%s: %s", ql->name, msg);
    }
    ql->qt.in_cols = cols; /* Ŵ, the model and in_features: the layer's own width */
    ql->seconds = dq_now() - t0;
    return DQ_OK;
}

/* ---- the block loop --------------------------------------------------------- */

typedef struct {
    dq_model *m;
    const dq_calib_set *cs;
    const dq_pipeline_opts *o;
    dq_session *s;
    const dq_comm *comm; /* several processes: this rank's windows are [w0, w1) */
    int w0, w1;
    dq_hidden X;    /* (w1 - w0, len, dim) hidden states entering the current block */
    float *win;     /* (len, dim): a window read from X */
    float *scratch; /* (len, dim) */
    stats_ctx stats; /* the method's statistic for the current block (st is a status everywhere) */
    dq_quant_result *r;
} run_ctx;

/* A block forward's failure, said to be in calibration window w (the
 * position alone does not say which of the windows overflowed). */
static dq_status in_window(dq_status st, int w, bool quantized, dq_error *err) {
    if (st != DQ_ERR_NUMERIC || !err) return st;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return dq_fail(err, st, "%s, calibration window %d%s", msg, w, quantized ? ", after quantizing the block" : "");
}

/* The block's statistics over every rank's windows (exact sums: the bytes
 * of one process), on every rank; a sum that rounded is said. */
static dq_status share_stats(run_ctx *c, dq_status st, dq_error *err) {
    stats_ctx *s = &c->stats;
    if ((st = dq_comm_agree(c->comm, st, err)) || dq_comm_size(c->comm) == 1) return st;
    for (int t = 0; !st && t < N_SLOTS; t++) {
        double tokens = (double)s->tokens[t];
        st = dq_comm_merge(c->comm, &tokens, 1, err);
        s->tokens[t] = (size_t)tokens;
        if (!st && s->sum[t]) st = dq_comm_sum_dd(c->comm, s->sum[t], sum_doubles(s->kind, s->cols[t]) / 2,
                                                  &s->inexact[t], err);
    }
    return st;
}

/* Notes a statistic whose exact sum rounded: its bytes may then depend on
 * the order the windows were added in (the rank count). */
static void note_inexact(const run_ctx *c, int l) {
    for (int t = 0; t < N_SLOTS; t++)
        if (c->stats.inexact[t])
            dq_progress_note(&c->o->progress, true, "block %d: statistic %d was not summed exactly (terms spanning "
                             "over 2^100): its bytes may depend on the number of ranks", l, t);
}

static dq_status collect_block_stats(run_ctx *c, int l, dq_error *err) {
    const dq_calib_set *cs = c->cs;
    dq_taps taps = {NULL, stats_tap, &c->stats};
    c->stats.layer = l;
    dq_status st = DQ_OK;
    for (int w = c->w0; !st && w < c->w1; w++) {
        c->stats.window = w;
        st = dq_hidden_read(&c->X, w - c->w0, c->scratch, err);
        if (!st) st = in_window(dq_block_forward(c->s, l, c->scratch, cs->len, &taps, err), w, false, err);
        if (!st && c->stats.oom) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory for layer %d statistics", l);
        if (!st && c->stats.fail) st = dq_fail(err, c->stats.fail, "%s", c->stats.fail_err.msg);
    }
    return share_stats(c, st, err);
}

/* Whether the gradient pass streams a lazily loaded model (one more forward
 * pass) rather than loading it whole (as fast as it goes): when its fp32
 * weights would not fit what the memory budget leaves (hidden_budget; 0,
 * no limit: load it). */
static bool stream_gradients(const dq_model *m, const dq_pipeline_opts *o) {
    return m->lazy && !dq_model_fits(m, o->hidden_budget);
}

/* The gradient pass (calib/gradients.h) on the model as it is now: full
 * precision before the first block, or with blocks quantized so far when
 * the method refreshes. The first pass's loss is the report's. */
static dq_status gather_gradients(run_ctx *c, dq_error *err) {
    dq_grads_kind gk = c->stats.curvature == DQ_CURVATURE_OAC ? DQ_GRADS_FULL : DQ_GRADS_NORMS;
    dq_grad_store_free(c->stats.grads);
    c->stats.grads = NULL;
    /* a streamed pass keeps its block inputs in RAM while they fit the budget, like the hidden states */
    size_t bytes = dq_grad_stream_bytes(&c->m->cfg, c->cs);
    const char *dir = c->o->hidden_budget && bytes > c->o->hidden_budget ? c->o->spill_dir : NULL;
    dq_status st = dq_grad_store_build(c->m, c->cs, gk, c->o->n_threads, dir, &c->o->progress, &c->stats.grads, err);
    if (st) return st;
    if (c->r->grad_passes++ == 0) c->r->grad_loss = dq_grad_store_loss(c->stats.grads);
    c->r->t_gradients += dq_grad_store_seconds(c->stats.grads);
    return DQ_OK;
}

/* The streaming output: the n layers from `first` go to the writer, then
 * their codes and (lazy model) block l's weights are released, unless a
 * refreshed gradient pass will run the quantized blocks again. */
static dq_status emit(run_ctx *c, int first, int n, int l, dq_error *err) {
    if (!c->o->emit) return DQ_OK;
    dq_status st = c->o->emit(c->o->emit_user, c->m, &c->r->layers[first], n, err);
    for (int i = first; i < first + n; i++) dq_qtensor_drop_data(&c->r->layers[i].qt);
    bool refreshes = c->o->q.refresh > 0 && c->stats.curvature != DQ_CURVATURE_LAYER && !c->o->grads;
    if (l >= 0 && !refreshes) dq_model_block_unload(c->m, l);
    return st;
}

/* The rank that solves linear k of a block (round robin), or the head. */
static int solver_of(const run_ctx *c, int k) { return k % dq_comm_size(c->comm); }

/* ql as solved on rank root, to every rank: the report fields and the codes
 * (the grid's blocks too). Receivers allocate; root's ql is unchanged. */
static dq_status share_layer(const run_ctx *c, dq_qlayer *ql, int root, dq_error *err) {
    if (dq_comm_size(c->comm) == 1) return DQ_OK;
    struct layer_header {
        int rows, cols, group, in_cols, bits, pad, has, grid;
        double seconds;
        dq_spectrum spectrum;
    } h = {0};
    dq_qtensor *qt = &ql->qt;
    bool mine = dq_comm_rank(c->comm) == root;
    if (mine)
        h = (struct layer_header){qt->rows, qt->cols, qt->group, qt->in_cols, qt->bits, ql->pad, qt->q != NULL,
                        qt->grid != NULL, ql->seconds, ql->spectrum};
    dq_status st = dq_comm_bcast(c->comm, &h, sizeof h, root, err);
    if (st) return st;
    ql->pad = h.pad, ql->seconds = h.seconds, ql->spectrum = h.spectrum;
    if (!h.has) return DQ_OK; /* kept in F16 */
    if (!mine) {
        const dq_grid *g = h.grid ? dq_grid_of((dq_ggml_type)ql->ggml_type) : NULL;
        st = g ? dq_qtensor_alloc_grid(qt, h.rows, h.cols, g, err) : dq_qtensor_alloc(qt, h.rows, h.cols, h.group, h.bits, err);
        if (st) return st;
        qt->in_cols = h.in_cols;
    }
    size_t n = (size_t)qt->rows * qt->cols, ng = (size_t)qt->rows * qt->groups_per_row;
    st = dq_comm_bcast(c->comm, qt->q, n, root, err);
    if (!st) st = dq_comm_bcast(c->comm, qt->scale, ng * sizeof(float), root, err);
    if (!st) st = dq_comm_bcast(c->comm, qt->zero, ng * sizeof(float), root, err);
    if (!st && qt->grid)
        st = dq_comm_bcast(c->comm, qt->blocks, (size_t)qt->rows * (qt->cols / qt->grid->block) * sizeof *qt->blocks,
                           root, err);
    return st;
}

/* The block's seven linears solved (each on its rank) and shared: codes in
 * c->r->layers[c->r->n ..] (not yet counted). */
static dq_status solve_block(run_ctx *c, int l, dq_error *err) {
    dq_model *m = c->m;
    dq_status st = DQ_OK;
    for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) {
        dq_qlayer *ql = &c->r->layers[c->r->n + k];
        const dq_site *site = dq_site_of_linear(k);
        qlayer_init(ql, site, l);
        int rows, cols;
        dq_site_shape(site, &m->cfg, &rows, &cols);
        int type = c->o->plan ? (int)c->o->plan->linear[l * DQ_LIN_PER_BLOCK + k] : -1;
        ql->ggml_type = type;
        if (!st && solver_of(c, k) == dq_comm_rank(c->comm))
            st = solve_linear(*dq_site_tensor(&m->layers[l], site), rows, cols, &c->stats, stat_slot(&c->stats, site),
                              c->o, type, ql, err);
    }
    st = dq_comm_agree(c->comm, st, err);
    for (int k = 0; !st && k < DQ_LIN_PER_BLOCK; k++) st = share_layer(c, &c->r->layers[c->r->n + k], solver_of(c, k), err);
    if (st)
        for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) dq_qtensor_free(&c->r->layers[c->r->n + k].qt);
    return st;
}

/* Each window's error terms from every rank, added in window order. */
static dq_status sum_errors(const run_ctx *c, double *per_window, int n_lin, int nw, double *num, double *den,
                            dq_error *err) {
    dq_status st = dq_comm_merge(c->comm, per_window, (size_t)2 * n_lin * nw, err);
    for (int k = 0; !st && k < n_lin; k++) {
        num[k] = den[k] = 0;
        for (int w = 0; w < nw; w++) {
            num[k] += per_window[(size_t)k * nw + w];
            den[k] += per_window[((size_t)n_lin + k) * nw + w];
        }
    }
    return st;
}

/* The Gram sums of every rank, then each layer's two quadratic forms
 * (error_by_gram); the sums are freed. */
static dq_status errors_from_gram(const run_ctx *c, err_ctx *e, dq_error *err) {
    dq_status st = DQ_OK;
    for (int t = 0; t < DQ_TAP_COUNT; t++) {
        int n = e->gcols[t];
        if (!st && e->G[t]) st = dq_comm_sum_dd(c->comm, e->G[t], sum_doubles(DQ_STAT_HESSIAN, n) / 2, &e->inexact, err);
        float *G = !st && e->G[t] ? malloc((size_t)n * n * sizeof *G) : NULL;
        if (!st && e->G[t] && !G) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory");
        if (G) hessian_mean(e->G[t], n, n, 1.0, G);
        for (int k = 0; G && k < e->n; k++)
            if (e->tap[k] == t) {
                e->num[k] = tiled_sumsq(NULL, 0, G, n, e->W[k], e->Q[k], NULL, e->rows[k], e->buf, e->dt, e->nt);
                e->den[k] = tiled_sumsq(NULL, 0, G, n, e->W[k], NULL, NULL, e->rows[k], e->buf, e->dt, e->nt);
            }
        free(G);
        free(e->G[t]);
        e->G[t] = NULL;
    }
    if (!st && e->inexact)
        dq_progress_note(&c->o->progress, true, "an output error's Gram sum was not exact: the reported errors may "
                         "depend on the number of ranks in their last digits");
    return st;
}

static dq_status quantize_block(run_ctx *c, int l, dq_error *err) {
    dq_model *m = c->m;
    int every = c->o->q.refresh;
    dq_status st = DQ_OK;
    if (every > 0 && l > 0 && l % every == 0 && !c->o->grads && c->stats.grads) st = gather_gradients(c, err);
    double t0 = dq_now();
    stats_reset(&c->stats);
    if (!st) st = dq_model_block_load(m, l, err); /* a lazy model's block */
    if ((st = dq_comm_agree(c->comm, st, err))) return st;
    if (!st && c->stats.kind != DQ_STAT_NONE) st = collect_block_stats(c, l, err);
    if (!st) note_inexact(c, l);
    double t_pass1 = dq_now() - t0;
    err_ctx e = {.n = DQ_LIN_PER_BLOCK, .nt = c->o->n_threads, .n_windows = c->cs->n, .tiles = c->stats.tiles};
    int max_cols = 0, cols_of[DQ_LIN_PER_BLOCK];
    if (!st) st = solve_block(c, l, err);
    stats_reset(&c->stats); /* the solves were their last use: the block's Ŵ takes their place */
    for (int k = 0; !st && k < DQ_LIN_PER_BLOCK; k++) {
        dq_qlayer *ql = &c->r->layers[c->r->n];
        const dq_site *site = dq_site_of_linear(k);
        int rows, cols;
        dq_site_shape(site, &m->cfg, &rows, &cols);
        const float **slot = dq_site_tensor(&m->layers[l], site);
        e.tap[k] = site->tap;
        e.rows[k] = rows;
        cols_of[k] = cols;
        max_cols = cols > max_cols ? cols : max_cols;
        st = install(m, slot, rows, cols, ql, &e.W[k], err);
        if (st) /* the layers from this one on are not counted in the result, which frees the others */
            for (int i = k; i < DQ_LIN_PER_BLOCK; i++) dq_qtensor_free(&c->r->layers[c->r->n + i - k].qt);
        e.Q[k] = *slot;
        if (!st) c->r->n++, c->r->t_solve += ql->seconds;
    }
    st = dq_comm_agree(c->comm, st, err);
    double t1 = dq_now();
    if (!st) e.by_gram = error_by_gram((double)c->cs->n * c->cs->len, e.rows, cols_of, e.tap, DQ_LIN_PER_BLOCK);
    int wide = c->cs->len > max_cols ? c->cs->len : max_cols;
    if (!st && (!(e.buf = malloc((size_t)e.nt * ERR_TILE * wide * sizeof(float))) ||
                !(e.dt = malloc((size_t)e.nt * ERR_TILE * max_cols * sizeof(float))) ||
                !(e.per_window = calloc((size_t)2 * DQ_LIN_PER_BLOCK * e.n_windows, sizeof(double)))))
        st = dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    dq_taps taps = {NULL, err_tap, &e};
    for (int w = c->w0; !st && w < c->w1; w++) { /* the quantized block feeds the next one */
        float *x = dq_hidden_window(&c->X, w - c->w0), *buf = x ? x : c->win;
        e.window = w;
        if (!x) st = dq_hidden_read(&c->X, w - c->w0, buf, err);
        if (!st) st = in_window(dq_block_forward(c->s, l, buf, c->cs->len, &taps, err), w, true, err);
        if (!st) st = dq_hidden_write(&c->X, w - c->w0, buf, err);
    }
    st = dq_comm_agree(c->comm, st ? st : e.oom ? dq_fail(err, DQ_ERR_NOMEM, "out of memory") : DQ_OK, err);
    if (!st && e.by_gram) st = errors_from_gram(c, &e, err);
    else if (!st) st = sum_errors(c, e.per_window, DQ_LIN_PER_BLOCK, e.n_windows, e.num, e.den, err);
    for (int t = 0; t < DQ_TAP_COUNT; t++) free(e.G[t]); /* after a failure */
    for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) {
        if (!st) c->r->layers[c->r->n - DQ_LIN_PER_BLOCK + k].rel_err = e.den[k] > 0 ? sqrt(e.num[k] / e.den[k]) : 0;
        dq_model_release(m, e.W[k]); /* W, once Ŵ replaced it (nothing for a mapped view) */
    }
    free(e.buf);
    free(e.dt);
    free(e.per_window);
    c->r->t_stats += c->stats.seconds;
    c->r->t_forward += t_pass1 - c->stats.seconds + (dq_now() - t1);
    c->stats.seconds = 0;
    st = dq_comm_agree(c->comm, st ? st : emit(c, c->r->n - DQ_LIN_PER_BLOCK, DQ_LIN_PER_BLOCK, l, err), err);
    if (!st) st = dq_hidden_flip(&c->X, err); /* the block's output is the next one's input */
    st = dq_comm_agree(c->comm, st, err); /* every rank's hidden states are on disk before rank 0's state says so */
    if (!st && c->o->checkpoint) st = c->o->checkpoint(c->o->checkpoint_user, l + 1, c->X.cur, c->r, err);
    return dq_comm_agree(c->comm, st, err);
}

/* c->scratch = window w of the hidden states after the final norm: the
 * head's input. */
static dq_status final_normed(run_ctx *c, int w, dq_error *err) {
    float *x = dq_hidden_window(&c->X, w - c->w0);
    dq_status st = x ? DQ_OK : dq_hidden_read(&c->X, w - c->w0, c->win, err);
    if (!st) dq_final_norm(c->m, x ? x : c->win, c->scratch, c->cs->len, c->o->n_threads);
    return st;
}

/* The output head, on the final-normed hidden states (its own input). */
static dq_status quantize_head(run_ctx *c, dq_error *err) {
    dq_model *m = c->m;
    const dq_calib_set *cs = c->cs;
    const dq_site *site = &DQ_SITES[DQ_SITE_OUTPUT];
    int V, d, nt = c->o->n_threads;
    dq_site_shape(site, &m->cfg, &V, &d);
    stats_reset(&c->stats);
    double t0 = dq_now();
    dq_status st = dq_model_block_load(m, DQ_DEFER_HEAD, err); /* a lazy model's untied head */
    for (int w = c->w0; !st && w < c->w1 && c->stats.kind != DQ_STAT_NONE; w++) {
        if (!(st = final_normed(c, w, err))) stats_add(&c->stats, site->tap, c->scratch, cs->len, d);
        if (!st && c->stats.oom) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory for the head statistics");
    }
    if ((st = share_stats(c, st, err))) return st;
    note_inexact(c, m->cfg.n_layers);
    dq_qlayer *ql = &c->r->layers[c->r->n];
    qlayer_init(ql, site, -1);
    const float **slot = dq_site_model_tensor(m, site), *W = *slot;
    int tap = (int)site->tap, wide = cs->len > d ? cs->len : d;
    err_ctx e = {.n = 1, .nt = nt, .tiles = c->stats.tiles, .tap = {tap}, .rows = {V}, .W = {W}};
    e.by_gram = error_by_gram((double)cs->n * cs->len, &V, &d, &tap, 1);
    float *buf = malloc((size_t)nt * ERR_TILE * wide * sizeof *buf), *dt = malloc((size_t)nt * ERR_TILE * d * sizeof *dt);
    double *per_window = calloc((size_t)2 * cs->n, sizeof *per_window);
    int type = c->o->plan ? (int)c->o->plan->head : -1, root = solver_of(c, DQ_LIN_PER_BLOCK);
    ql->ggml_type = type;
    st = !buf || !dt || !per_window ? dq_fail(err, DQ_ERR_NOMEM, "out of memory") : DQ_OK;
    if (!st && dq_comm_rank(c->comm) == root) st = solve_linear(W, V, d, &c->stats, site->tap, c->o, type, ql, err);
    if (!(st = dq_comm_agree(c->comm, st, err))) st = share_layer(c, ql, root, err);
    double num = 0, den = 0; /* the error first, from the codes: then Ŵ may replace W in place */
    for (int w = c->w0; !st && w < c->w1; w++) {
        if ((st = final_normed(c, w, err))) break;
        if (e.by_gram) {
            gram_of_tap(&e, tap, c->scratch, cs->len, d);
            continue;
        }
        per_window[w] = tiled_sumsq(c->scratch, cs->len, NULL, d, W, NULL, &ql->qt, V, buf, dt, nt);
        per_window[cs->n + w] = tiled_sumsq(c->scratch, cs->len, NULL, d, W, NULL, NULL, V, buf, dt, nt);
    }
    st = dq_comm_agree(c->comm, st ? st : e.oom ? dq_fail(err, DQ_ERR_NOMEM, "out of memory") : DQ_OK, err);
    if (!st && e.by_gram) { /* Ŵ from the codes, a tile of rows at a time */
        int n = e.gcols[tap];
        st = dq_comm_sum_dd(c->comm, e.G[tap], sum_doubles(DQ_STAT_HESSIAN, n) / 2, &e.inexact, err);
        float *G = st ? NULL : malloc((size_t)n * n * sizeof *G);
        if (!st && !G) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory");
        if (G) {
            hessian_mean(e.G[tap], n, n, 1.0, G);
            num = tiled_sumsq(NULL, 0, G, n, W, NULL, &ql->qt, V, buf, dt, nt);
            den = tiled_sumsq(NULL, 0, G, n, W, NULL, NULL, V, buf, dt, nt);
        }
        free(G);
    } else if (!st) st = sum_errors(c, per_window, 1, cs->n, &num, &den, err);
    free(e.G[tap]);
    free(per_window);
    if (!st) st = install(m, slot, V, d, ql, NULL, err);
    if (st) dq_qtensor_free(&ql->qt);
    if (!st) {
        ql->rel_err = den > 0 ? sqrt(num / den) : 0;
        c->r->n++;
        c->r->t_solve += ql->seconds;
        if (c->o->plan && m->cfg.tied_embeddings) m->tok_embeddings = m->output; /* one tensor in the file */
        else m->cfg.tied_embeddings = false; /* the embedding stays full precision */
    }
    c->r->t_stats += c->stats.seconds;
    c->r->t_forward += dq_now() - t0 - c->stats.seconds - ql->seconds;
    free(buf);
    free(dt);
    return dq_comm_agree(c->comm, st ? st : emit(c, c->r->n - 1, 1, -1, err), err);
}

/* An untied embedding under a plan: no calibration statistic exists for a
 * lookup table (llama.cpp has none either), so each block gets the plain
 * least-squares fit on the grid. Done first: calibration then sees it. */
static dq_status quantize_embedding(run_ctx *c, dq_error *err) {
    dq_model *m = c->m;
    dq_qlayer *ql = &c->r->layers[c->r->n];
    const dq_site *site = &DQ_SITES[DQ_SITE_TOKEN_EMBD];
    dq_status st = dq_model_block_load(m, DQ_DEFER_EMBED, err); /* a lazy model's, whole */
    if (st) return st;
    const float **slot = dq_site_model_tensor(m, site);
    int V, d;
    dq_site_shape(site, &m->cfg, &V, &d);
    qlayer_init(ql, site, -1);
    ql->ggml_type = (int)c->o->plan->embed;
    const float *W0 = NULL;
    double t0 = dq_now();
    dq_quant_opts q = c->o->q;
    q.grid = dq_grid_of(c->o->plan->embed);
    st = q.grid ? dq_quantize_grid(*slot, V, d, NULL, true, &q, c->o->n_threads, &ql->qt, err) : DQ_OK;
    if (!st) st = install(m, slot, V, d, ql, &W0, err);
    if (st) dq_qtensor_free(&ql->qt);
    dq_model_release(m, W0); /* the full-precision embedding: calibration sees Ŵ */
    ql->seconds = dq_now() - t0;
    if (!st) c->r->n++, c->r->t_solve += ql->seconds;
    return st ? st : emit(c, c->r->n - 1, 1, -1, err);
}

/* The hidden states entering block 0: the windows' token embeddings, in
 * RAM or (past the budget) in a spill file. */
/* A resumed run: the layers the interrupted run finished, as it reported
 * them (their codes are in the output already); their blocks are not loaded
 * again. */
static dq_status restore_done(run_ctx *c, dq_error *err) {
    const dq_pipeline_opts *o = c->o;
    if (o->start_block > c->m->cfg.n_layers || o->n_done > dq_quant_result_capacity(&c->m->cfg) || !o->hidden_files)
        return dq_fail(err, DQ_ERR_ARG, "cannot resume at block %d of %d with %d layers done", o->start_block,
                       c->m->cfg.n_layers, o->n_done);
    for (int i = 0; i < o->n_done; i++) {
        c->r->layers[c->r->n++] = o->done[i];
        c->r->t_solve += o->done[i].seconds;
    }
    return DQ_OK;
}

static dq_status embed_windows(run_ctx *c, dq_error *err) {
    const dq_calib_set *cs = c->cs;
    const dq_pipeline_opts *o = c->o;
    int d = c->m->cfg.dim;
    int n = c->w1 - c->w0; /* this rank's windows */
    size_t bytes = dq_hidden_bytes(n, cs->len, d, o->hidden_dtype);
    bool spill = o->hidden_budget > 0 && bytes > o->hidden_budget, resumed = o->start_block > 0;
    dq_status st = o->hidden_files ? dq_hidden_open_files(&c->X, n, cs->len, d, o->hidden_dtype, o->hidden_files,
                                                          o->hidden_cur, resumed, err)
                                   : dq_hidden_open(&c->X, n, cs->len, d, o->hidden_dtype,
                                                    spill ? o->spill_dir : NULL, err);
    if (!st && (!(c->scratch = malloc((size_t)cs->len * d * sizeof(float))) ||
                !(c->win = malloc((size_t)cs->len * d * sizeof(float)))))
        st = dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    if (resumed) return st; /* the interrupted run's: the input of block start_block */
    for (int w = c->w0; !st && w < c->w1; w++) {
        st = dq_calib_embed(c->m, cs, w, 1, c->win, err);
        if (!st) st = dq_hidden_write(&c->X, w - c->w0, c->win, err);
    }
    return st ? st : dq_hidden_flip(&c->X, err);
}

dq_status dq_quantize_model(dq_model *m, const dq_calib_set *cs, const dq_pipeline_opts *o, dq_quant_result *r,
                            dq_error *err) {
    memset(r, 0, sizeof *r);
    if ((unsigned)o->q.method >= DQ_METHOD_COUNT)
        return dq_fail(err, DQ_ERR_ARG, "unknown method %d", (int)o->q.method);
    int nl = m->cfg.n_layers, nt = dq_threads_or_default(o->n_threads);
    dq_pipeline_opts opts = *o;
    opts.n_threads = nt;
    run_ctx c = {.X = {.fd = -1, .fds = {-1, -1}},
                 .comm = o->comm,
                 .m = m,
                 .cs = cs,
                 .o = &opts,
                 .r = r,
                 .stats = {.kind = dq_method_of(o->q.method)->stat, .curvature = o->q.curvature, .nt = nt}};
    double t0 = dq_now();
    dq_comm_share(o->comm, cs->n, &c.w0, &c.w1);
    if (dq_comm_size(o->comm) > cs->n)
        return dq_fail(err, DQ_ERR_ARG, "%d ranks for %d calibration windows: each rank needs at least one",
                       dq_comm_size(o->comm), cs->n);
    r->layers = calloc((size_t)dq_quant_result_capacity(&m->cfg), sizeof *r->layers);
    bool head = o->quantize_head || o->plan;
    c.stats.tiles = malloc((size_t)nt * GRAM_TILE * GRAM_TILE * sizeof(float));
    dq_status st = (!r->layers || !c.stats.tiles) ? dq_fail(err, DQ_ERR_NOMEM, "out of memory") : DQ_OK;
    /* a transform sees the whole model, and so does a gradient pass that will run again through the quantized
       blocks (--refresh) or that the budget lets hold it; else it streams the lazily loaded model */
    bool grads = c.stats.kind != DQ_STAT_NONE && c.stats.curvature != DQ_CURVATURE_LAYER && !o->grads;
    bool whole = o->prepare || (grads && (o->q.refresh > 0 || !stream_gradients(m, o)));
    if (!st && whole) st = dq_model_load_all(m, err);
    if (!st && o->prepare) st = o->prepare(m, cs, o->prepare_user, err);
    if (!st && o->start_block > 0) st = restore_done(&c, err); /* an interrupted run's blocks (and embedding) */
    else if (!st && o->plan && !m->cfg.tied_embeddings) st = quantize_embedding(&c, err);
    c.stats.grads = o->grads;
    if (!st && c.stats.kind != DQ_STAT_NONE && c.stats.curvature != DQ_CURVATURE_LAYER && !o->grads)
        st = gather_gradients(&c, err);
    if (!st) st = dq_session_new(m, cs->len, cs->len, nt, &c.s, err);
    if (!st) st = embed_windows(&c, err);
    st = dq_comm_agree(o->comm, st, err);
    size_t units = (size_t)nl + (head ? 1 : 0);
    for (int l = o->start_block; !st && l < nl; l++) {
        st = quantize_block(&c, l, err);
        if (!st && !dq_progress_report(&o->progress, "quantize", (size_t)l + 1, units, err)) st = DQ_ERR_CANCELLED;
        st = dq_comm_agree(o->comm, st, err); /* a rank's cancel stops every rank */
    }
    if (!st && head) st = quantize_head(&c, err);
    if (!st && head && !dq_progress_report(&o->progress, "quantize", units, units, err)) st = DQ_ERR_CANCELLED;
    r->t_total = dq_now() - t0;
    stats_reset(&c.stats);
    free(c.stats.tiles);
    free(c.stats.delta);
    free(c.stats.g);
    if (!o->grads) dq_grad_store_free(c.stats.grads);
    dq_hidden_close(&c.X);
    free(c.win);
    free(c.scratch);
    dq_session_free(c.s);
    if (st) dq_quant_result_free(r);
    return st;
}

int dq_quant_result_capacity(const dq_config *c) {
    int n = 0;
    for (int i = 0; i < DQ_SITE_COUNT; i++) {
        const dq_site *s = &DQ_SITES[i];
        if (s->role == DQ_SITE_LINEAR && s->per_block) n += c->n_layers; /* x n_experts once per_expert sites exist */
        else if (s->role == DQ_SITE_LINEAR || s->role == DQ_SITE_EMBEDDING) n++;
    }
    return n;
}

void dq_quant_result_free(dq_quant_result *r) {
    for (int i = 0; i < r->n; i++) dq_qtensor_free(&r->layers[i].qt);
    free(r->layers);
    memset(r, 0, sizeof *r);
}

/* One layer's entry in the layout: name, type, padding and quantized dims
 * (as the solver will allocate them: plain groups or the type's grid). */
static void layout_entry(const dq_config *c, const dq_pipeline_opts *o, const dq_site *site, int layer, int type,
                         dq_qlayer *ql) {
    memset(ql, 0, sizeof *ql);
    qlayer_init(ql, site, layer);
    int rows, cols;
    dq_site_shape(site, c, &rows, &cols);
    dq_quant_opts q;
    ql->ggml_type = -1;
    if (layer_opts(o, type, cols, ql, &q)) {
        if (q.grid) dq_qtensor_shape(&ql->qt, rows, cols, q.grid->sub, dq_grid_bits(q.grid)), ql->qt.grid = q.grid;
        else dq_qtensor_shape(&ql->qt, rows, cols + q.pad, q.group, q.bits);
        ql->qt.in_cols = cols;
    }
}

int dq_quant_layout(const dq_config *c, const dq_pipeline_opts *o, dq_qlayer *out) {
    int n = 0;
    const dq_type_plan *p = o->plan;
    if (p && !c->tied_embeddings) layout_entry(c, o, &DQ_SITES[DQ_SITE_TOKEN_EMBD], -1, (int)p->embed, &out[n++]);
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < DQ_LIN_PER_BLOCK; k++)
            layout_entry(c, o, dq_site_of_linear(k), l, p ? (int)p->linear[l * DQ_LIN_PER_BLOCK + k] : -1, &out[n++]);
    if (o->quantize_head || p) layout_entry(c, o, &DQ_SITES[DQ_SITE_OUTPUT], -1, p ? (int)p->head : -1, &out[n++]);
    return n;
}

size_t dq_pipeline_working_bytes(const dq_config *c, const dq_pipeline_opts *o) {
    dq_stat_kind kind = dq_method_of(o->q.method)->stat;
    bool per_linear = o->q.curvature != DQ_CURVATURE_LAYER;
    bool tap_seen[N_TAPS] = {false};
    double block = 0, stats = 0, solver = 0;
    for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) {
        const dq_site *site = dq_site_of_linear(k);
        int rows, cols;
        dq_site_shape(site, c, &rows, &cols);
        block += 2.0 * rows * cols * sizeof(float);
        double h = (double)sum_doubles(kind, cols) * sizeof(double);
        if (per_linear || !tap_seen[site->tap]) stats += h;
        tap_seen[site->tap] = true;
        if (3.0 * cols * cols * sizeof(float) > solver) solver = 3.0 * cols * cols * sizeof(float);
    }
    double vd = (double)c->vocab_size * c->dim * sizeof(float);
    /* the solves hold W, the statistics and the solver's copies; then the
     * statistics go and the error pass holds W and Ŵ */
    double blocks = block / 2 + stats + solver > block ? block / 2 + stats + solver : block, head = o->quantize_head || o->plan ? 3 * vd : 0;
    double total = vd + (blocks > head ? blocks : head);
    return total >= (double)SIZE_MAX ? SIZE_MAX : (size_t)total;
}
