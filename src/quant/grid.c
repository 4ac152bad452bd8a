/* Fitting blocks onto llama.cpp's grids (see grid.h). The fit is a
 * block-coordinate descent on the weighted squared error: codes by exact
 * rounding; per sub-block a closed-form weighted regression; the sub-scales
 * rounded onto their integer grid; the fp16 super-scale(s) refit by least
 * squares over the whole block given all integer codes. Every step is exact
 * for its variables, rounding is not, so the best state seen is kept. */
#include "quant/grid.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "util/half.h"

#define MAX_SUBS 16
#define REFINE_ITERS 8
#define SUB_ITERS 10

static const dq_grid GRIDS[] = {
    {DQ_GGML_Q4_0, 32, 32, 15, 8, 0, 0, 0, NULL},
    {DQ_GGML_Q4_1, 32, 32, 15, -1, 0, 0, 0, NULL},
    {DQ_GGML_Q5_0, 32, 32, 31, 16, 0, 0, 0, NULL},
    {DQ_GGML_Q5_1, 32, 32, 31, -1, 0, 0, 0, NULL},
    {DQ_GGML_Q8_0, 32, 32, 255, 128, 0, 0, 0, NULL},
    {DQ_GGML_IQ4_NL, 32, 32, 15, 0, 0, 0, 0, dq_iq4nl_values},
    {DQ_GGML_Q2_K, 256, 16, 3, -1, 0, 15, 15, NULL},
    {DQ_GGML_Q3_K, 256, 16, 7, 4, -32, 31, 0, NULL},
    {DQ_GGML_Q4_K, 256, 32, 15, -1, 0, 63, 63, NULL},
    {DQ_GGML_Q5_K, 256, 32, 31, -1, 0, 63, 63, NULL},
    {DQ_GGML_Q6_K, 256, 16, 63, 32, -128, 127, 0, NULL},
};

const dq_grid *dq_grid_of(dq_ggml_type t) {
    for (size_t i = 0; i < sizeof GRIDS / sizeof GRIDS[0]; i++)
        if (GRIDS[i].type == t) return &GRIDS[i];
    return NULL;
}

int dq_grid_bits(const dq_grid *g) {
    int b = 0;
    while ((1 << b) <= g->maxq) b++;
    return b;
}

static bool affine(const dq_grid *g) { return g->zero < 0; }
static bool two_level(const dq_grid *g) { return g->sc_hi > 0; }
static float f16(float x) { return dq_f16_to_f32(dq_f32_to_f16(x)); }
static int clampi(long v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : (int)v; }

/* Sub-block level of code q: symmetric grids centre it on zero. */
static float level(const dq_grid *g, int q) {
    return g->values ? (float)g->values[q] : affine(g) ? (float)q : (float)(q - g->zero);
}

dq_grid_step dq_grid_step_of(const dq_grid *g, const dq_ggml_block *p, int s) {
    float scale = two_level(g) ? p->d * (float)p->sc[s] : p->d;
    float offset = affine(g) ? (two_level(g) ? -(p->dmin * (float)p->m[s]) : p->dmin)
                             : g->values ? 0.0f : -(float)g->zero * scale;
    return (dq_grid_step){scale, offset};
}

int dq_grid_code(const dq_grid *g, dq_grid_step st, float w) {
    if (g->values) {
        int best = 0;
        float bd = INFINITY;
        for (int k = 0; k <= g->maxq; k++) {
            float d = fabsf(w - st.scale * (float)g->values[k]);
            if (d < bd) bd = d, best = k;
        }
        return best;
    }
    if (st.scale == 0.0f) return affine(g) ? 0 : g->zero;
    return clampi(lrintf((w - st.offset) / st.scale), 0, g->maxq);
}

static double weight(const float *a, int j) { return a ? (double)a[j] : 1.0; }

/* ---- one sub-block, unconstrained: ŵ = A·level(q) + B --------------------- */

typedef struct {
    float A, B;
} sub_fit;

static double sub_objective(const dq_grid *g, const float *w, const float *a, int n, sub_fit f, uint8_t *q) {
    double e = 0;
    dq_grid_step st = {f.A, affine(g) ? f.B : g->values ? 0.0f : -(float)g->zero * f.A};
    for (int j = 0; j < n; j++) {
        q[j] = (uint8_t)dq_grid_code(g, st, w[j]);
        double r = w[j] - ((double)f.A * level(g, q[j]) + f.B);
        e += weight(a, j) * r * r;
    }
    return e;
}

/* Weighted regression of w on the levels of q: (A, B) for affine grids (B
 * kept ≤ 0 where the format's mins are unsigned), A alone for symmetric. */
static bool sub_regress(const dq_grid *g, const float *w, const float *a, const uint8_t *q, int n, sub_fit *f) {
    double S0 = 0, S1 = 0, S2 = 0, Sw = 0, Sqw = 0;
    for (int j = 0; j < n; j++) {
        double b = weight(a, j), l = level(g, q[j]);
        S0 += b, S1 += b * l, S2 += b * l * l, Sw += b * w[j], Sqw += b * l * w[j];
    }
    if (!affine(g)) {
        if (!(S2 > 0)) return false;
        f->A = (float)(Sqw / S2);
        return isfinite(f->A);
    }
    double D = S0 * S2 - S1 * S1, A, B;
    if (!(D > 1e-12 * S0 * S2)) return false;
    A = (S0 * Sqw - S1 * Sw) / D;
    B = (Sw - A * S1) / S0;
    if (two_level(g) && B > 0) { /* unsigned mins: the range must reach down to 0 */
        B = 0;
        A = S2 > 0 ? Sqw / S2 : 0;
    }
    if (!(A >= 0) || !isfinite(A) || !isfinite(B)) return false;
    f->A = (float)A, f->B = (float)B;
    return true;
}

/* Start k of a sub-block: min-max (k = 0), or the range spread over
 * maxq − 1 + k/10 steps (symmetric: the extreme over a level stretched by
 * (1 − k/10) of the outermost level spacing: one step on a uniform grid, 23
 * of 127 on IQ4_NL's table, whose starts in steps of one level unit spanned
 * only ±0.8 % of the scale where llama.cpp's own IQ4_NL search tries ±5.5 %). */
static sub_fit sub_start(const dq_grid *g, const float *w, int n, int k) {
    float lo = w[0], hi = w[0];
    for (int j = 1; j < n; j++) lo = fminf(lo, w[j]), hi = fmaxf(hi, w[j]);
    if (!affine(g)) {
        float ext = fabsf(lo) > fabsf(hi) ? lo : hi, lmin = level(g, 0), sp = fabsf(level(g, 1) - lmin);
        float stretch = k == 0 ? 1.0f : fabsf(lmin) / (fabsf(lmin) - sp + 0.1f * sp * (float)k);
        return (sub_fit){ext / lmin * stretch, 0};
    }
    if (two_level(g)) lo = fminf(lo, 0.0f);
    if (hi <= lo) return (sub_fit){0, lo};
    float steps = k == 0 ? (float)g->maxq : (float)g->maxq - 1.0f + 0.1f * (float)k;
    float A = (hi - lo) / steps, B = k == 0 ? lo : 0.5f * (lo + hi) - A * 0.5f * (float)g->maxq;
    if (two_level(g) && B > 0) B = 0;
    return (sub_fit){A, B};
}

static sub_fit fit_sub(const dq_grid *g, const float *w, const float *a, int n, bool refine, int starts) {
    uint8_t q[256];
    sub_fit best = sub_start(g, w, n, 0);
    if (!refine) return best;
    double best_e = sub_objective(g, w, a, n, best, q);
    for (int k = 0; k < (starts > 1 ? starts : 1); k++) {
        sub_fit f = sub_start(g, w, n, k);
        double e = sub_objective(g, w, a, n, f, q);
        for (int it = 0; it < SUB_ITERS; it++) {
            if (e < best_e) best_e = e, best = f;
            sub_fit next = f;
            if (!sub_regress(g, w, a, q, n, &next)) break;
            uint8_t q2[256];
            double e2 = sub_objective(g, w, a, n, next, q2);
            bool same = !memcmp(q, q2, (size_t)n);
            f = next, e = e2;
            memcpy(q, q2, (size_t)n);
            if (same) break;
        }
        if (e < best_e) best_e = e, best = f;
    }
    return best;
}

/* ---- a whole block --------------------------------------------------------- */

/* Rounds the sub-blocks' (A, B) onto the stored form. */
static void round_params(const dq_grid *g, const sub_fit *f, int ns, dq_ggml_block *p) {
    memset(p, 0, sizeof *p);
    if (!two_level(g)) {
        p->d = f16(f[0].A);
        p->dmin = affine(g) ? f16(f[0].B) : 0;
        return;
    }
    if (affine(g)) {
        float amax = 0, mmax = 0;
        for (int s = 0; s < ns; s++) amax = fmaxf(amax, f[s].A), mmax = fmaxf(mmax, -f[s].B);
        p->d = f16(amax / (float)g->sc_hi);
        p->dmin = f16(mmax / (float)g->m_hi);
        for (int s = 0; s < ns; s++) {
            p->sc[s] = (int16_t)(p->d > 0 ? clampi(lrintf(f[s].A / p->d), 0, g->sc_hi) : 0);
            p->m[s] = (uint8_t)(p->dmin > 0 ? clampi(lrintf(-f[s].B / p->dmin), 0, g->m_hi) : 0);
        }
        return;
    }
    float ext = 0; /* the largest sub-scale takes the longer (negative) end of the code range */
    for (int s = 0; s < ns; s++)
        if (fabsf(f[s].A) > fabsf(ext)) ext = f[s].A;
    p->d = f16(ext / (float)g->sc_lo);
    for (int s = 0; s < ns; s++)
        p->sc[s] = (int16_t)(p->d != 0 ? clampi(lrintf(f[s].A / p->d), g->sc_lo, g->sc_hi) : 0);
}

static double block_codes(const dq_grid *g, const float *w, const float *a, const dq_ggml_block *p, uint8_t *q) {
    double e = 0;
    for (int s = 0; s < g->block / g->sub; s++) {
        dq_grid_step st = dq_grid_step_of(g, p, s);
        for (int j = s * g->sub; j < (s + 1) * g->sub; j++) {
            q[j] = (uint8_t)dq_grid_code(g, st, w[j]);
            double r = w[j] - (double)dq_grid_value(g, st, q[j]);
            e += weight(a, j) * r * r;
        }
    }
    return e;
}

/* Least squares for the fp16 parameters given every integer: (d, dmin) or d. */
static void refit_super(const dq_grid *g, const float *w, const float *a, const uint8_t *q, dq_ggml_block *p) {
    double Suu = 0, Suv = 0, Svv = 0, Swu = 0, Swv = 0;
    for (int j = 0; j < g->block; j++) {
        int s = j / g->sub;
        double b = weight(a, j), u = level(g, q[j]) * (two_level(g) ? p->sc[s] : 1);
        double v = !affine(g) ? 0 : two_level(g) ? -(double)p->m[s] : 1.0;
        Suu += b * u * u, Suv += b * u * v, Svv += b * v * v, Swu += b * w[j] * u, Swv += b * w[j] * v;
    }
    double D = Suu * Svv - Suv * Suv;
    if (affine(g) && Svv > 0 && D > 1e-12 * Suu * Svv) {
        double d = (Svv * Swu - Suv * Swv) / D, dmin = (Suu * Swv - Suv * Swu) / D;
        if (isfinite(d) && isfinite(dmin)) p->d = f16((float)d), p->dmin = f16((float)dmin);
    } else if (Suu > 0) {
        double d = (Swu - (affine(g) ? Suv * p->dmin : 0)) / Suu; /* dmin held */
        if (isfinite(d)) p->d = f16((float)d);
    }
}

/* Per sub-block regression given the codes, rounded onto the integer
 * sub-scale (and sub-min) grid of the current super-scales. */
static void refit_subs(const dq_grid *g, const float *w, const float *a, const uint8_t *q, dq_ggml_block *p) {
    for (int s = 0; s < g->block / g->sub; s++) {
        int o = s * g->sub;
        sub_fit f = {0, 0};
        if (!sub_regress(g, w + o, a ? a + o : NULL, q + o, g->sub, &f)) continue;
        if (p->d != 0) p->sc[s] = (int16_t)clampi(lrintf(f.A / p->d), g->sc_lo, g->sc_hi);
        if (affine(g) && p->dmin != 0) p->m[s] = (uint8_t)clampi(lrintf(-f.B / p->dmin), 0, g->m_hi);
    }
}

double dq_grid_fit(const dq_grid *g, const float *w, const float *a, bool refine, int starts, dq_ggml_block *p,
                   uint8_t *q) {
    int ns = g->block / g->sub;
    sub_fit f[MAX_SUBS];
    for (int s = 0; s < ns; s++)
        f[s] = fit_sub(g, w + s * g->sub, a ? a + s * g->sub : NULL, g->sub, refine, starts);
    round_params(g, f, ns, p);
    double best = block_codes(g, w, a, p, q);
    if (!refine) return best;
    dq_ggml_block cur = *p;
    uint8_t qc[256], qn[256];
    memcpy(qc, q, (size_t)g->block);
    for (int it = 0; it < REFINE_ITERS; it++) {
        refit_super(g, w, a, qc, &cur);
        if (two_level(g)) refit_subs(g, w, a, qc, &cur);
        double e = block_codes(g, w, a, &cur, qn);
        if (e < best) best = e, *p = cur, memcpy(q, qn, (size_t)g->block);
        if (!memcmp(qc, qn, (size_t)g->block)) break;
        memcpy(qc, qn, (size_t)g->block);
    }
    return best;
}

void dq_grid_importance(const float *w, const float *h, int n, float *out) {
    double ms = 0;
    for (int j = 0; j < n; j++) ms += (double)w[j] * w[j];
    ms /= n;
    for (int j = 0; j < n; j++) out[j] = h[j] * (float)sqrt(ms + (double)w[j] * w[j]);
}
