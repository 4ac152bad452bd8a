#define _POSIX_C_SOURCE 200809L
#include "calib/gradients.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

dq_status dq_grad_store_build(const dq_model *m, const dq_calib_set *cs, dq_grads_kind kind, int n_threads,
                              const dq_progress *progress, dq_grad_store **out, dq_error *err) {
    double t0 = dq_now();
    dq_grad_store *g = NULL;
    dq_session *s = NULL;
    dq_status st = alloc_store(m, cs, kind, &g, err);
    if (!st) st = dq_session_new(m, cs->len, cs->len, n_threads, &s, err);
    if (!st) st = dq_session_keep_activations(s, err);
    dq_grad_taps taps = {.ask = want, .fn = keep, .ctx = g};
    for (int w = 0; !st && w < cs->n; w++) {
        double loss = 0;
        g->window = w;
        st = dq_loss_backward(s, cs->tokens + (size_t)w * cs->len, cs->len, &taps, &loss, err);
        if (st == DQ_ERR_NUMERIC) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            st = dq_fail(err, st, "%s, calibration window %d (gradient pass)", msg, w);
        } else if (!st && g->io_errno)
            st = dq_fail(err, DQ_ERR_IO, "gradient spill file under %s: %s",
                         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", strerror(g->io_errno));
        g->loss += loss / cs->n;
        if (!st && !dq_progress_report(progress, "gradients", (size_t)w + 1, (size_t)cs->n, err)) st = DQ_ERR_CANCELLED;
    }
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
