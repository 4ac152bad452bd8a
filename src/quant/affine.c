/* The affine group quantizer shared by every method: parameter search,
 * quantized-tensor storage and dequantization. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant.h"
#include "util/error.h"
#include "util/half.h"

dq_quant_opts dq_quant_defaults(dq_method m, int bits, int group) {
    return (dq_quant_opts){.method = m, .bits = bits, .group = group, .fp16_params = true,
                           .percdamp = 0.01f, .blocksize = 128, .max_iters = 20, .eps = 1e-3f,
                           .reweight = DQ_REWEIGHT_NONE, .reweight_param = 1.0f, .starts = 0,
                           .curvature = m == DQ_METHOD_OAC ? DQ_CURVATURE_OAC : DQ_CURVATURE_LAYER};
}

float *dq_pad_matrix(const float *src, int rows, int cols, int out_rows, int out_cols) {
    float *out = calloc((size_t)out_rows * out_cols, sizeof *out);
    if (out)
        for (int r = 0; r < rows; r++) memcpy(out + (size_t)r * out_cols, src + (size_t)r * cols, (size_t)cols * sizeof *out);
    return out;
}

dq_status dq_quant_check(const dq_quant_opts *o, int cols, const char *layer, dq_error *err) {
    if (o->pad && (o->grid || o->group <= 0 || o->pad < 0 || o->pad >= o->group || o->pad >= cols))
        return dq_fail(err, DQ_ERR_ARG, "%s: %d padding columns do not fit group %d of %d columns", layer, o->pad,
                       o->group, cols);
    if (o->grid) {
        if (cols % o->grid->block)
            return dq_fail(err, DQ_ERR_ARG, "%s: %d input features are not a multiple of %s's block of %d", layer,
                           cols, dq_ggml_info(o->grid->type)->name, o->grid->block);
        return DQ_OK;
    }
    if (o->bits < 2 || o->bits > 8)
        return dq_fail(err, DQ_ERR_ARG, "%s: bits must be 2..8, got %d", layer, o->bits);
    if (o->group != -1 && (o->group < 16 || o->group > 128 || (o->group & (o->group - 1))))
        return dq_fail(err, DQ_ERR_ARG, "%s: group size must be 16, 32, 64, 128 or -1, got %d", layer,
                       o->group);
    if (o->group > 0 && cols % o->group != 0)
        return dq_fail(err, DQ_ERR_ARG,
                       "%s: %d input features are not a multiple of group size %d (pad them first)",
                       layer, cols, o->group);
    return DQ_OK;
}

void dq_qtensor_shape(dq_qtensor *t, int rows, int cols, int group, int bits) {
    memset(t, 0, sizeof *t);
    t->rows = rows;
    t->cols = t->in_cols = cols;
    t->group = group > 0 ? group : cols;
    t->groups_per_row = cols / t->group;
    t->bits = bits;
}

dq_status dq_qtensor_alloc(dq_qtensor *t, int rows, int cols, int group, int bits, dq_error *err) {
    dq_qtensor_shape(t, rows, cols, group, bits);
    size_t n = (size_t)rows * cols, ng = (size_t)rows * t->groups_per_row;
    t->q = malloc(n);
    t->scale = malloc(ng * sizeof(float));
    t->zero = malloc(ng * sizeof(float));
    if (!t->q || !t->scale || !t->zero) {
        dq_qtensor_free(t);
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory for a %d x %d quantized tensor", rows, cols);
    }
    return DQ_OK;
}

dq_status dq_qtensor_alloc_grid(dq_qtensor *t, int rows, int cols, const dq_grid *g, dq_error *err) {
    dq_status st = dq_qtensor_alloc(t, rows, cols, g->sub, dq_grid_bits(g), err);
    if (st) return st;
    t->grid = g;
    if (!(t->blocks = calloc((size_t)rows * (size_t)(cols / g->block), sizeof *t->blocks))) {
        dq_qtensor_free(t);
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory for a %d x %d quantized tensor", rows, cols);
    }
    return DQ_OK;
}

void dq_qtensor_fill_steps(dq_qtensor *t) {
    const dq_grid *g = t->grid;
    int bpr = t->cols / g->block, spb = g->block / g->sub;
    for (int r = 0; r < t->rows; r++)
        for (int b = 0; b < bpr; b++)
            for (int s = 0; s < spb; s++) {
                dq_grid_step st = dq_grid_step_of(g, &t->blocks[(size_t)r * bpr + b], s);
                size_t gi = (size_t)r * t->groups_per_row + (size_t)b * spb + s;
                t->scale[gi] = st.scale;
                t->zero[gi] = st.scale != 0 ? -st.offset / st.scale : 0;
            }
}

void dq_qtensor_encode_row(const dq_qtensor *t, int r, void *dst) {
    size_t bpr = (size_t)(t->cols / t->grid->block);
    dq_ggml_encode(t->grid->type, t->q + (size_t)r * t->cols, t->blocks + (size_t)r * bpr, (size_t)t->cols, dst);
}

void dq_qtensor_drop_data(dq_qtensor *t) {
    free(t->blocks);
    free(t->q);
    free(t->scale);
    free(t->zero);
    t->blocks = NULL;
    t->q = NULL;
    t->scale = t->zero = NULL;
}

void dq_qtensor_free(dq_qtensor *t) {
    dq_qtensor_drop_data(t);
    memset(t, 0, sizeof *t);
}

void dq_qtensor_dequantize_rows(const dq_qtensor *t, int r0, int n, float *out) {
    if (t->grid) { /* block by block through the file's bytes: blocks and codes are both row-major */
        const dq_grid *g = t->grid;
        uint8_t bytes[256]; /* the largest block, Q6_K, is 210 bytes */
        size_t per_row = (size_t)(t->cols / g->block), b0 = (size_t)r0 * per_row, n_blocks = (size_t)n * per_row;
        for (size_t b = 0; b < n_blocks; b++) {
            dq_ggml_encode(g->type, t->q + (b0 + b) * (size_t)g->block, &t->blocks[b0 + b], (size_t)g->block, bytes);
            dq_ggml_decode(g->type, bytes, (size_t)g->block, out + b * (size_t)g->block);
        }
        return;
    }
    for (int r = r0; r < r0 + n; r++)
        for (int g = 0; g < t->groups_per_row; g++) {
            size_t gi = (size_t)r * t->groups_per_row + g;
            int c0 = g * t->group, k = t->in_cols - c0 < t->group ? t->in_cols - c0 : t->group; /* padding dropped */
            const uint8_t *q = t->q + (size_t)r * t->cols + c0;
            float *o = out + (size_t)(r - r0) * t->in_cols + c0, s = t->scale[gi], z = t->zero[gi];
            for (int j = 0; j < k; j++) o[j] = s * ((float)q[j] - z);
        }
}

void dq_qtensor_dequantize(const dq_qtensor *t, float *out) { dq_qtensor_dequantize_rows(t, 0, t->rows, out); }

static float round_f16(float x) { return dq_f16_to_f32(dq_f32_to_f16(x)); }

/* Parameters for a range [xmin, xmax] that already contains 0. */
static dq_group_params params_for(float xmin, float xmax, int maxq, bool sym, bool fp16) {
    if (sym) {
        xmax = fmaxf(fabsf(xmin), xmax);
        if (xmin < 0) xmin = -xmax;
    }
    if (xmin == 0 && xmax == 0) xmin = -1, xmax = 1;
    dq_group_params p;
    p.scale = (xmax - xmin) / (float)maxq;
    if (fp16) p.scale = round_f16(p.scale);
    p.zero = sym ? (float)(maxq + 1) / 2 : rintf(-xmin / p.scale);
    return p;
}

dq_group_params dq_minmax_params(const float *w, int n, int maxq, bool sym, bool fp16) {
    float xmin = 0, xmax = 0;
    for (int i = 0; i < n; i++) xmin = fminf(xmin, w[i]), xmax = fmaxf(xmax, w[i]);
    return params_for(xmin, xmax, maxq, sym, fp16);
}

dq_group_params dq_mse_params(const float *w, int n, int maxq, bool sym, bool fp16) {
    float xmin = 0, xmax = 0;
    for (int i = 0; i < n; i++) xmin = fminf(xmin, w[i]), xmax = fmaxf(xmax, w[i]);
    dq_group_params best = params_for(xmin, xmax, maxq, sym, fp16);
    double best_err = INFINITY;
    for (int i = 0; i < 80; i++) {
        float p = 1.0f - (float)i / 100.0f;
        dq_group_params c = params_for(p * xmin, p * xmax, maxq, sym, fp16);
        if (sym) c.zero = best.zero;
        double e = 0;
        for (int j = 0; j < n; j++) e += pow(fabs(dq_dequant(dq_quant_code(w[j], c, maxq), c) - w[j]), 2.4);
        if (e < best_err) best_err = e, best = c;
    }
    return best;
}

dq_group_params dq_find_params(const dq_quant_opts *o, const float *w, int n) {
    int maxq = (1 << o->bits) - 1;
    return o->mse ? dq_mse_params(w, n, maxq, o->sym, o->fp16_params)
                  : dq_minmax_params(w, n, maxq, o->sym, o->fp16_params);
}

/* Every block of W fitted on the grid independently: RTN (a NULL, refine
 * off), uniform least squares (a NULL, refine on) or DASH-Q (a = diag(H) +
 * damping per input feature, weighted per weight by dq_grid_importance over
 * the row). */
dq_status dq_quantize_grid(const float *W, int rows, int cols, const float *a, bool refine, const dq_quant_opts *o,
                           int n_threads, dq_qtensor *out, dq_error *err) {
    const dq_grid *g = o->grid;
    dq_status st = dq_qtensor_alloc_grid(out, rows, cols, g, err);
    if (st) return st;
    int bpr = cols / g->block, starts = dq_grid_starts(o, a != NULL);
    bool oom = false;
#pragma omp parallel num_threads(n_threads > 0 ? n_threads : 1)
    {
        float *imp = a ? malloc((size_t)cols * sizeof *imp) : NULL;
        if (a && !imp) {
#pragma omp atomic write
            oom = true;
        }
#pragma omp for schedule(static)
        for (int r = 0; r < rows; r++) {
            if (oom) continue;
            const float *w = W + (size_t)r * cols;
            if (a) dq_grid_importance(w, a, cols, imp);
            for (int b = 0; b < bpr; b++)
                dq_grid_fit(g, w + (size_t)b * g->block, a ? imp + (size_t)b * g->block : NULL, refine, starts,
                            &out->blocks[(size_t)r * bpr + b], out->q + (size_t)r * cols + (size_t)b * g->block);
        }
        free(imp);
    }
    if (oom) {
        dq_qtensor_free(out);
        return dq_fail(err, DQ_ERR_NOMEM, "grid fit: out of memory");
    }
    dq_qtensor_fill_steps(out);
    return DQ_OK;
}

dq_status dq_quantize_rtn(const float *W, int rows, int cols, const dq_quant_opts *o, int n_threads,
                          dq_qtensor *out, dq_error *err) {
    if (o->grid) return dq_quantize_grid(W, rows, cols, NULL, false, o, n_threads, out, err);
    dq_status st = dq_qtensor_alloc(out, rows, cols, o->group, o->bits, err);
    if (st) return st;
    int maxq = (1 << o->bits) - 1, G = out->group, gpr = out->groups_per_row;
#pragma omp parallel for num_threads(n_threads > 0 ? n_threads : 1) schedule(static)
    for (int r = 0; r < rows; r++)
        for (int g = 0; g < gpr; g++) {
            const float *w = W + (size_t)r * cols + (size_t)g * G;
            dq_group_params p = dq_find_params(o, w, G);
            out->scale[(size_t)r * gpr + g] = p.scale;
            out->zero[(size_t)r * gpr + g] = p.zero;
            for (int j = 0; j < G; j++)
                out->q[(size_t)r * cols + (size_t)g * G + j] = (uint8_t)dq_quant_code(w[j], p, maxq);
        }
    return DQ_OK;
}
