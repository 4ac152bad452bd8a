/* DASH-Q: quantization with only the diagonal of the layer Hessian,
 * h_j = E[x_j²]. The layer loss then splits into independent weighted
 * least-squares problems, one per (row, group):
 *     min Σ_j a_j (w_j − s·(q_j − z))²,   a_j = h_j + eps·mean(h)
 * solved by block-coordinate descent: the q-step (rounding) is exact for
 * fixed (s, z) and the (s, c = −s·z) step is a closed-form weighted linear
 * regression of w on q. Each step lowers the objective, so the loop stops when
 * the codes stop changing. IRLS variants reweight a_j between iterations.
 * No cross-column error feedback, no Cholesky: cost O(rows·cols·iters). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "util/error.h"
#include "util/half.h"

typedef struct {
    const dq_quant_opts *o;
    int maxq;
} solver;

static float round_param(const solver *s, float x) {
    return s->o->fp16_params ? dq_f16_to_f32(dq_f32_to_f16(x)) : x;
}

/* DASH-Q's zero is real-valued: q = round(w/s + z), not round(w/s) + z. */
static int code(float w, dq_group_params p, int maxq) {
    float v = rintf(w / p.scale + p.zero);
    return v < 0 ? 0 : v > maxq ? maxq : (int)v;
}

static double objective(const float *w, const float *a, const uint8_t *q, int n, dq_group_params p) {
    double e = 0;
    for (int j = 0; j < n; j++) {
        double r = w[j] - (double)p.scale * (q[j] - p.zero);
        e += a[j] * r * r;
    }
    return e;
}

/* IRLS weights for the next regression from the current residuals. */
static void reweight(const solver *s, const float *w, const float *a, const uint8_t *q, int n,
                     dq_group_params p, float *out) {
    for (int j = 0; j < n; j++) {
        double r = fabs(w[j] - (double)p.scale * (q[j] - p.zero)) / p.scale; /* in grid steps */
        switch (s->o->reweight) {
        case DQ_REWEIGHT_HUBER:
            out[j] = a[j] * (float)(r > s->o->reweight_param ? s->o->reweight_param / r : 1.0);
            break;
        case DQ_REWEIGHT_POWER: out[j] = powf(a[j], s->o->reweight_param); break;
        default: out[j] = a[j];
        }
    }
}

/* Weighted regression w ≈ s·q + c (or w ≈ s·(q − z) with z fixed when
 * symmetric). Returns false when it is degenerate (all codes equal). */
static bool regress(const solver *s, const float *w, const float *b, const uint8_t *q, int n, dq_group_params *p) {
    double S0 = 0, S1 = 0, S2 = 0, Sw = 0, Sqw = 0;
    double zfix = s->o->sym ? p->zero : 0;
    for (int j = 0; j < n; j++) {
        double qj = q[j] - zfix;
        S0 += b[j], S1 += b[j] * qj, S2 += b[j] * qj * qj, Sw += b[j] * w[j], Sqw += b[j] * qj * w[j];
    }
    double scale, zero;
    if (s->o->sym) {
        if (S2 <= 0) return false;
        scale = Sqw / S2;
        zero = p->zero;
    } else {
        double D = S0 * S2 - S1 * S1;
        if (!(D > 1e-12 * S0 * S2)) return false;
        scale = (S0 * Sqw - S1 * Sw) / D;
        double c = (Sw - scale * S1) / S0;
        zero = -c / scale;
    }
    if (!(scale > 0) || !isfinite(scale) || !isfinite(zero)) return false;
    p->scale = round_param(s, (float)scale);
    p->zero = s->o->sym ? (float)zero : round_param(s, (float)zero);
    return p->scale > 0;
}

/* Start k: the group's range spread over maxq steps (k = 0, min-max) or, for
 * k > 0, over maxq − 1 + k/10 steps, so later starts clip the extremes — a
 * coordinate-descent solver only finds the local minimum nearest its start. */
static dq_group_params init_params(const solver *s, const float *w, int n, int k) {
    float steps = k == 0 ? (float)s->maxq : (float)s->maxq - 1.0f + 0.1f * (float)k;
    if (s->o->sym) {
        dq_group_params p = dq_minmax_params(w, n, s->maxq, true, s->o->fp16_params);
        if (k) p.scale = round_param(s, p.scale * (float)s->maxq / steps);
        return p;
    }
    float lo = w[0], hi = w[0];
    for (int j = 1; j < n; j++) lo = fminf(lo, w[j]), hi = fmaxf(hi, w[j]);
    float mid = 0.5f * (lo + hi);
    dq_group_params p;
    p.scale = round_param(s, hi > lo ? (hi - lo) / steps : fmaxf(fabsf(lo), 1e-8f));
    p.zero = round_param(s, k == 0 ? -lo / p.scale : 0.5f * (float)s->maxq - mid / p.scale);
    return p;
}

/* Alternates rounding and regression from p until the codes settle; returns
 * the best parameters seen and their objective in *err_out. */
static dq_group_params descend(const solver *s, const float *w, const float *a, int n, dq_group_params p,
                               uint8_t *q, uint8_t *q_new, float *b, double *err_out) {
    for (int j = 0; j < n; j++) q[j] = (uint8_t)code(w[j], p, s->maxq);
    dq_group_params best = p;
    double best_err = objective(w, a, q, n, p);
    for (int it = 0; it < s->o->max_iters; it++) {
        reweight(s, w, a, q, n, p, b);
        dq_group_params next = p;
        if (!regress(s, w, b, q, n, &next)) break;
        bool changed = false;
        for (int j = 0; j < n; j++) {
            q_new[j] = (uint8_t)code(w[j], next, s->maxq);
            changed |= q_new[j] != q[j];
        }
        double e = objective(w, a, q_new, n, next);
        p = next;
        memcpy(q, q_new, (size_t)n);
        if (e < best_err) best_err = e, best = next;
        if (!changed) break;
    }
    *err_out = best_err;
    return best;
}

/* Solves one group from each start; q receives the codes of the best. */
static dq_group_params solve_group(const solver *s, const float *w, const float *a, int n, uint8_t *q,
                                   uint8_t *q_new, float *b) {
    double best_err = 0;
    dq_group_params best = {0};
    int starts = s->o->starts > 1 ? s->o->starts : 1;
    for (int k = 0; k < starts; k++) {
        double e;
        dq_group_params p = descend(s, w, a, n, init_params(s, w, n, k), q, q_new, b, &e);
        if (k == 0 || e < best_err) best_err = e, best = p;
    }
    for (int j = 0; j < n; j++) q[j] = (uint8_t)code(w[j], best, s->maxq);
    return best;
}

dq_status dq_quantize_dashq(const float *W, int rows, int cols, const float *h, const dq_quant_opts *o,
                            int n_threads, dq_qtensor *out, dq_error *err) {
    float *a = malloc((size_t)cols * sizeof *a);
    if (!a) return dq_fail(err, DQ_ERR_NOMEM, "DASH-Q: out of memory");
    int live = cols - o->pad; /* padding columns: out of the mean and of every group's fit */
    double mean = 0;
    for (int j = 0; j < live; j++) mean += h[j];
    mean /= live;
    if (!(mean > 0)) mean = 1.0; /* an all-dead layer: fall back to plain least squares */
    for (int j = 0; j < cols; j++) a[j] = (float)(h[j] + o->eps * mean);
    dq_status st = o->grid ? dq_quantize_grid(W, rows, cols, a, true, o, n_threads, out,
                                              err) /* same objective, on the format's grid */
                           : dq_qtensor_alloc(out, rows, cols, o->group, o->bits, err);
    if (st || o->grid) {
        free(a);
        return st;
    }
    solver s = {o, (1 << o->bits) - 1};
    int G = out->group, gpr = out->groups_per_row;
    bool oom = false;
#pragma omp parallel num_threads(n_threads > 0 ? n_threads : 1)
    {
        uint8_t *q_new = malloc((size_t)G);
        float *b = malloc((size_t)G * sizeof *b);
        if (!q_new || !b) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++) {
            if (oom) continue;
            for (int g = 0; g < gpr; g++) {
                size_t off = (size_t)r * cols + (size_t)g * G;
                int n = live - g * G < G ? live - g * G : G; /* the last group may end in padding */
                dq_group_params p = solve_group(&s, W + off, a + (size_t)g * G, n, out->q + off, q_new, b);
                for (int j = n; j < G; j++)
                    out->q[off + j] = (uint8_t)code(0.0f, p, s.maxq); /* padding: the code of 0 */
                out->scale[(size_t)r * gpr + g] = p.scale;
                out->zero[(size_t)r * gpr + g] = p.zero;
            }
        }
        free(q_new);
        free(b);
    }
    free(a);
    if (oom) {
        dq_qtensor_free(out);
        return dq_fail(err, DQ_ERR_NOMEM, "DASH-Q: out of memory");
    }
    return DQ_OK;
}
