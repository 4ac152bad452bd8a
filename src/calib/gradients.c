#define _POSIX_C_SOURCE 200809L
#include "calib/gradients.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib/calib_data.h"
#include "calib/hidden_states.h"
#include "model/backward.h"
#include "util/error.h"
#include "util/half.h"
#include "util/progress.h"

struct dq_grad_store {
    dq_grads_kind kind;
    int n_windows, T, n_layers;
    int rows[DQ_LIN_PER_BLOCK], off[DQ_LIN_PER_BLOCK], per_block; /* a block's record: linears side by side */
    float *norms;   /* (n_windows, n_layers, DQ_LIN_PER_BLOCK, T) */
    int fd;         /* DQ_GRADS_FULL: the spill file, unlinked; -1 otherwise */
    uint16_t *bf16; /* (T, max rows) */
    int window;     /* the window the taps are on */
    int io_errno;   /* the first failed write, 0 if none */
    double loss, seconds;
};

static size_t norms_at(const dq_grad_store *g, int layer, int lin, int w) {
    return (((size_t)w * g->n_layers + layer) * DQ_LIN_PER_BLOCK + lin) * g->T;
}

static off_t spill_at(const dq_grad_store *g, int layer, int lin, int w) {
    size_t rec = ((size_t)w * g->n_layers + layer) * g->T * g->per_block;
    return (off_t)((rec + (size_t)g->T * g->off[lin]) * sizeof(uint16_t));
}

static bool want(void *ctx, int layer, const dq_site *site) {
    (void)ctx;
    return layer >= 0 && site->lin >= 0; /* block linears: the head keeps its layer statistic */
}

static bool write_all(int fd, const void *p, size_t n, off_t at) {
    for (const char *b = p; n;) {
        ssize_t k = pwrite(fd, b, n, at);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        b += k, n -= (size_t)k, at += k;
    }
    return true;
}

static void keep(void *ctx, const dq_grad_data *d) {
    dq_grad_store *g = ctx;
    int lin = d->site->lin;
    float *nr = g->norms + norms_at(g, d->layer, lin, g->window);
    for (int t = 0; t < d->T; t++) {
        double s = 0;
        for (int i = 0; i < d->rows; i++) s += (double)d->dy[(size_t)t * d->rows + i] * d->dy[(size_t)t * d->rows + i];
        nr[t] = (float)s;
    }
    if (g->kind != DQ_GRADS_FULL || g->io_errno) return;
    size_t n = (size_t)d->T * d->rows;
    for (size_t i = 0; i < n; i++) g->bf16[i] = dq_f32_to_bf16(d->dy[i]);
    if (!write_all(g->fd, g->bf16, n * sizeof *g->bf16, spill_at(g, d->layer, lin, g->window)))
        g->io_errno = errno ? errno : EIO;
}

static dq_status open_spill(dq_grad_store *g, dq_error *err) {
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/dashq-grads-XXXXXX", dir && *dir ? dir : "/tmp");
    if ((g->fd = mkstemp(path)) < 0)
        return dq_fail(err, DQ_ERR_IO, "%s: cannot create the gradient spill file: %s", path, strerror(errno));
    unlink(path); /* gone when closed, even after a crash */
    return DQ_OK;
}

static dq_status alloc_store(const dq_model *m, const dq_calib_set *cs, dq_grads_kind kind, dq_grad_store **out,
                             dq_error *err) {
    const dq_config *c = &m->cfg;
    dq_grad_store *g = calloc(1, sizeof *g);
    if (!g) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    *out = g;
    g->kind = kind, g->n_windows = cs->n, g->T = cs->len, g->n_layers = c->n_layers, g->fd = -1;
    int max_rows = 0, cols;
    for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) {
        dq_site_shape(dq_site_of_linear(k), c, &g->rows[k], &cols);
        g->off[k] = g->per_block;
        g->per_block += g->rows[k];
        max_rows = g->rows[k] > max_rows ? g->rows[k] : max_rows;
    }
    size_t n_norms;
    if (!dq_mul_size((size_t)cs->n * c->n_layers * DQ_LIN_PER_BLOCK, (size_t)cs->len, &n_norms) ||
        !(g->norms = malloc(n_norms * sizeof *g->norms)) ||
        !(g->bf16 = malloc((size_t)cs->len * max_rows * sizeof *g->bf16)))
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory for the output gradients of %d windows", cs->n);
    return kind == DQ_GRADS_FULL ? open_spill(g, err) : DQ_OK;
}

/* A numeric failure of window w, said as the gradient pass's. */
static dq_status in_window(dq_status st, int w, dq_error *err) {
    if (st != DQ_ERR_NUMERIC) return st;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return dq_fail(err, st, "%s, calibration window %d (gradient pass)", msg, w);
}

static dq_status spill_ok(const dq_grad_store *g, dq_error *err) {
    if (!g->io_errno) return DQ_OK;
    return dq_fail(err, DQ_ERR_IO, "gradient spill file under %s: %s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
                   strerror(g->io_errno));
}

/* Window by window, the whole model in memory. */
static dq_status build_in_memory(dq_grad_store *g, dq_session *s, const dq_calib_set *cs, const dq_grad_taps *taps,
                                 const dq_progress *progress, dq_error *err) {
    dq_status st = DQ_OK;
    for (int w = 0; !st && w < cs->n; w++) {
        double loss = 0;
        g->window = w;
        st = in_window(dq_loss_backward(s, cs->tokens + (size_t)w * cs->len, cs->len, taps, &loss, err), w, err);
        if (!st) st = spill_ok(g, err);
        g->loss += loss / cs->n;
        if (!st && !dq_progress_report(progress, "gradients", (size_t)w + 1, (size_t)cs->n, err)) st = DQ_ERR_CANCELLED;
    }
    return st;
}

/* Block l (or the head, l = L) over every window: forward sweep (record
 * l·n + w holds block l's input of window w, L·n + w the head's), the head's
 * loss and gradient (∂ℓ/∂ of the last block's output, over the head's input
 * in record L·n + w, no longer needed), or backward (that record, turned
 * into ∂ℓ/∂ of block l's input). */
typedef enum { SWEEP_FORWARD, SWEEP_HEAD, SWEEP_BACKWARD } sweep;

static dq_status sweep_block(dq_grad_store *g, dq_session *s, dq_backward *k, dq_hidden *X, const dq_calib_set *cs,
                             int l, sweep how, float *x, const dq_grad_taps *taps, dq_error *err) {
    int n = cs->n, T = cs->len, L = g->n_layers;
    float *dx = dq_backward_dx(k);
    dq_status st = DQ_OK;
    for (int w = 0; !st && w < n; w++) {
        const int32_t *tokens = cs->tokens + (size_t)w * T;
        g->window = w;
        st = dq_hidden_read(X, l * n + w, x, err);
        if (!st && how == SWEEP_FORWARD) {
            st = in_window(dq_block_forward(s, l, x, T, NULL, err), w, err);
            if (!st) st = dq_hidden_write(X, (l + 1) * n + w, x, err);
        } else if (!st && how == SWEEP_HEAD) {
            double loss = 0;
            st = in_window(dq_head_forward(s, x, T, err), w, err);
            if (!st) st = in_window(dq_backward_head(k, tokens, taps, &loss, err), w, err);
            g->loss += loss / n;
            if (!st) st = dq_hidden_write(X, L * n + w, dx, err);
        } else if (!st) {
            st = in_window(dq_block_forward(s, l, x, T, NULL, err), w, err); /* block l's activations again */
            if (!st) st = dq_hidden_read(X, L * n + w, dx, err);
            if (!st) st = in_window(dq_backward_block(k, l, taps, err), w, err);
            if (!st) st = spill_ok(g, err);
            if (!st) st = dq_hidden_write(X, L * n + w, dx, err);
        }
    }
    return st;
}

/* One sweep step with block l held (l = DQ_DEFER_HEAD for the head), and
 * its progress: 2L + 1 steps in all. */
static dq_status held_sweep(dq_grad_store *g, dq_model *m, dq_session *s, dq_backward *k, dq_hidden *X,
                            const dq_calib_set *cs, int l, sweep how, float *x, const dq_grad_taps *taps,
                            const dq_progress *progress, size_t *step, dq_error *err) {
    bool held;
    dq_status st = dq_model_block_hold(m, l, &held, err);
    int L = g->n_layers;
    if (!st) st = sweep_block(g, s, k, X, cs, l == DQ_DEFER_HEAD ? L : l, how, x, taps, err);
    dq_model_block_let_go(m, l, held);
    if (!st && !dq_progress_report(progress, "gradients", ++*step, 2 * (size_t)L + 1, err)) st = DQ_ERR_CANCELLED;
    return st;
}

/* A lazily loaded model, one block in memory at a time: a forward sweep
 * keeps every block's input for every window, the head gives each window's
 * loss and gradient, and a backward sweep from the last block recomputes
 * each block's activations from its input (one more forward pass than the
 * in-memory pass, and (L + 1)·n·T·dim fp32 values in RAM or, with
 * spill_dir, a file there). The same arithmetic as build_in_memory: the
 * same store, bit for bit (test_lazy). */
static dq_status build_streamed(dq_grad_store *g, dq_model *m, dq_session *s, const dq_calib_set *cs,
                                const dq_grad_taps *taps, const char *spill_dir, const dq_progress *progress,
                                dq_error *err) {
    int n = cs->n, T = cs->len, L = m->cfg.n_layers;
    dq_hidden X = {.fd = -1, .fds = {-1, -1}};
    dq_backward *k = NULL;
    float *x = malloc((size_t)T * m->cfg.dim * sizeof *x);
    dq_status st = x ? dq_hidden_open(&X, (L + 1) * n, T, m->cfg.dim, DQ_HIDDEN_F32, spill_dir, err)
                     : dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    if (!st) st = dq_backward_new(s, T, &k, err);
    for (int w = 0; !st && w < n; w++) {
        st = dq_calib_embed(m, cs, w, 1, x, err); /* token ids checked, as dq_forward checks them */
        if (!st) st = dq_hidden_write(&X, w, x, err);
    }
    size_t step = 0;
    for (int l = 0; !st && l < L; l++) st = held_sweep(g, m, s, k, &X, cs, l, SWEEP_FORWARD, x, taps, progress, &step, err);
    if (!st) st = held_sweep(g, m, s, k, &X, cs, DQ_DEFER_HEAD, SWEEP_HEAD, x, taps, progress, &step, err);
    for (int l = L - 1; !st && l >= 0; l--)
        st = held_sweep(g, m, s, k, &X, cs, l, SWEEP_BACKWARD, x, taps, progress, &step, err);
    dq_backward_free(k);
    dq_hidden_close(&X);
    free(x);
    return st;
}

size_t dq_grad_stream_bytes(const dq_config *c, const dq_calib_set *cs) {
    return dq_hidden_bytes((c->n_layers + 1) * cs->n, cs->len, c->dim, DQ_HIDDEN_F32);
}

dq_status dq_grad_store_build(dq_model *m, const dq_calib_set *cs, dq_grads_kind kind, int n_threads,
                              const char *spill_dir, const dq_progress *progress, dq_grad_store **out, dq_error *err) {
    double t0 = dq_now();
    dq_grad_store *g = NULL;
    dq_session *s = NULL;
    /* a lazily loaded model with weights not all in memory */
    bool streamed = !dq_model_in_memory(m);
    dq_status st = alloc_store(m, cs, kind, &g, err);
    if (!st) st = dq_session_new(m, cs->len, cs->len, n_threads, &s, err);
    if (!st) st = dq_session_keep_activations(s, streamed ? DQ_ACTS_ONE_BLOCK : DQ_ACTS_EVERY_BLOCK, err);
    dq_grad_taps taps = {.ask = want, .fn = keep, .ctx = g};
    if (!st) st = streamed ? build_streamed(g, m, s, cs, &taps, spill_dir, progress, err)
                           : build_in_memory(g, s, cs, &taps, progress, err);
    dq_session_free(s);
    if (g) g->seconds = dq_now() - t0;
    if (st) dq_grad_store_free(g);
    else *out = g;
    return st;
}

static dq_status check(const dq_grad_store *g, int layer, int lin, int w, dq_error *err) {
    if (layer < 0 || layer >= g->n_layers || lin < 0 || lin >= DQ_LIN_PER_BLOCK || w < 0 || w >= g->n_windows)
        return dq_fail(err, DQ_ERR_ARG, "gradient store: no layer %d linear %d window %d", layer, lin, w);
    return DQ_OK;
}

dq_status dq_grad_store_norms(dq_grad_store *g, int layer, int lin, int w, float *out, dq_error *err) {
    dq_status st = check(g, layer, lin, w, err);
    if (!st) memcpy(out, g->norms + norms_at(g, layer, lin, w), (size_t)g->T * sizeof *out);
    return st;
}

dq_status dq_grad_store_delta(dq_grad_store *g, int layer, int lin, int w, float *out, dq_error *err) {
    dq_status st = check(g, layer, lin, w, err);
    if (st) return st;
    if (g->kind != DQ_GRADS_FULL) return dq_fail(err, DQ_ERR_ARG, "gradient store keeps norms only");
    size_t n = (size_t)g->T * g->rows[lin], bytes = n * sizeof *g->bf16;
    off_t at = spill_at(g, layer, lin, w);
    for (char *b = (char *)g->bf16; bytes;) {
        ssize_t k = pread(g->fd, b, bytes, at);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return dq_fail(err, DQ_ERR_IO, "gradient spill file: %s", k < 0 ? strerror(errno) : "short read");
        b += k, bytes -= (size_t)k, at += k;
    }
    for (size_t i = 0; i < n; i++) out[i] = dq_bf16_to_f32(g->bf16[i]);
    return DQ_OK;
}

dq_status dq_grad_store_uniform(const dq_model *m, const dq_calib_set *cs, float norm2, dq_grad_store **out,
                                dq_error *err) {
    dq_grad_store *g = NULL;
    dq_status st = alloc_store(m, cs, DQ_GRADS_NORMS, &g, err);
    if (st) {
        dq_grad_store_free(g);
        return st;
    }
    size_t n = (size_t)g->n_windows * g->n_layers * DQ_LIN_PER_BLOCK * g->T;
    for (size_t i = 0; i < n; i++) g->norms[i] = norm2;
    *out = g;
    return DQ_OK;
}

/* G = δᵀ X (rows, cols) over fixed tiles of 64 rows, one sgemm each. */
static void delta_t_x(float *G, const float *delta, const float *x, int T, int rows, int cols, int nt) {
    int tiles = (rows + 63) / 64;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int k = 0; k < tiles; k++) {
        int r0 = k * 64, n = rows - r0 < 64 ? rows - r0 : 64;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, cols, T, 1.0f, delta + r0, rows, x, cols, 0.0f,
                    G + (size_t)r0 * cols, cols);
    }
}

dq_status dq_grad_store_weighted_rows(dq_grad_store *g, dq_curvature curvature, int layer, int lin, int w,
                                      const float *x, int T, int cols, float *scratch, float *out, int *n, int nt,
                                      dq_error *err) {
    if (T != g->T) return dq_fail(err, DQ_ERR_ARG, "gradient store: windows of %d tokens, not %d", g->T, T);
    dq_status st;
    if (curvature == DQ_CURVATURE_OAC) {
        if ((st = dq_grad_store_delta(g, layer, lin, w, scratch, err))) return st;
        delta_t_x(out, scratch, x, T, g->rows[lin], cols, nt);
        *n = g->rows[lin];
        return DQ_OK;
    }
    if ((st = dq_grad_store_norms(g, layer, lin, w, scratch, err))) return st;
    for (int t = 0; t < T; t++) {
        float s = sqrtf(scratch[t]);
        for (int j = 0; j < cols; j++) out[(size_t)t * cols + j] = s * x[(size_t)t * cols + j];
    }
    *n = T;
    return DQ_OK;
}

int dq_grad_store_rows(const dq_grad_store *g, int lin) { return g->rows[lin]; }
double dq_grad_store_loss(const dq_grad_store *g) { return g->loss; }
double dq_grad_store_seconds(const dq_grad_store *g) { return g->seconds; }

void dq_grad_store_free(dq_grad_store *g) {
    if (!g) return;
    if (g->fd >= 0) close(g->fd);
    free(g->norms);
    free(g->bf16);
    free(g);
}
