/* dq_solve: one weight matrix through a row of the quantizer table, with the
 * statistic the caller brings (dashq.h). The same options, padding and
 * solver as the pipeline's solve_linear (calib/pipeline.c), so a matrix and
 * its statistic give the codes the pipeline writes for them. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/ggml_types.h"
#include "quant/methods.h"
#include "util/error.h"
#include "util/threads.h"

static const char *const STAT_NAMES[DQ_STAT_COUNT] = {"none", "diagonal", "hessian"};

dq_solve_params dq_solve_default_params(void) {
    return (dq_solve_params){.method = "dashq", .bits = 4, .group = 128};
}

/* The method's row and its options for a width of cols, padding included. */
static dq_status solve_opts(const dq_solve_params *p, int cols, const dq_method_info **mi, dq_quant_opts *q,
                            dq_error *err) {
    if (!p || !p->method || !(*mi = dq_method_find(p->method)))
        return dq_fail(err, DQ_ERR_ARG, "unknown method %s (%s)", p && p->method ? p->method : "(none)",
                       dq_method_names());
    *q = dq_quant_defaults((*mi)->method, p->bits, p->group);
    dq_status st = dq_method_set_options(*mi, p->options, q, err);
    if (st) return st;
    q->fp16_params = !p->fp32_params;
    if (p->type) {
        int t = dq_ggml_type_by_name(p->type);
        if (t < 0 || !(q->grid = dq_grid_of((dq_ggml_type)t)))
            return dq_fail(err, DQ_ERR_ARG, "%s is not a llama.cpp block type we fit (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, "
                                            "Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL)", p->type);
        q->bits = dq_grid_bits(q->grid), q->group = q->grid->sub;
    } else if (q->group >= 16 && q->group <= 128 && cols % q->group) { /* others: refused below */
        q->pad = q->group - cols % q->group;
    }
    return dq_quant_check(q, cols + q->pad, "W", err);
}

/* The shape, with the method's row and options the solve then uses. */
static dq_status plan(const dq_solve_params *p, int rows, int cols, dq_solve_shape *shape, const dq_method_info **mi,
                      dq_quant_opts *q, dq_error *err) {
    memset(shape, 0, sizeof *shape);
    if (rows < 1 || cols < 1 || cols > INT_MAX - 128)
        return dq_fail(err, DQ_ERR_ARG, "W is %d x %d: rows and columns must be at least 1", rows, cols);
    dq_status st = solve_opts(p, cols, mi, q, err);
    if (st) return st;
    int qcols = cols + q->pad;
    /* what the solve allocates: W padded (rows x qcols floats), the padded Hessian (qcols²) */
    size_t limit = SIZE_MAX / 4 / sizeof(float);
    if ((size_t)rows > limit / (size_t)qcols || ((*mi)->stat == DQ_STAT_HESSIAN && (size_t)qcols > limit / (size_t)qcols))
        return dq_fail(err, DQ_ERR_NOMEM, "W is %d x %d (%d padded): its buffers would not fit in memory", rows, cols,
                       qcols);
    *shape = (dq_solve_shape){.rows = rows, .cols = cols, .qcols = qcols, .bits = q->bits,
                              .group = q->group > 0 ? q->group : qcols, .stat = STAT_NAMES[(*mi)->stat],
                              .stat_floats = dq_stat_floats((*mi)->stat, cols)};
    shape->groups_per_row = qcols / shape->group;
    if (q->grid) shape->row_bytes = dq_ggml_row_bytes(q->grid->type, (size_t)cols);
    return DQ_OK;
}

dq_status dq_solve_plan(const dq_solve_params *p, int rows, int cols, dq_solve_shape *shape, dq_error *err) {
    const dq_method_info *mi = NULL;
    dq_quant_opts q;
    return plan(p, rows, cols, shape, &mi, &q, err);
}

/* A statistic the solvers can take: finite, no negative curvature, and some
 * curvature somewhere (GPTQ would take every column for dead and return
 * zeros; the pipeline refuses a zero output-adaptive statistic the same way). */
static dq_status check_stat(const float *stat, size_t n, int cols, bool full, dq_error *err) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(stat[i]))
            return full ? dq_fail(err, DQ_ERR_NUMERIC, "H[%zu, %zu] is not finite", i / cols, i % cols)
                        : dq_fail(err, DQ_ERR_NUMERIC, "h[%zu] is not finite", i);
    bool any = false;
    for (int j = 0; j < cols; j++) {
        float d = full ? stat[(size_t)j * cols + j] : stat[j];
        if (d < 0)
            return dq_fail(err, DQ_ERR_ARG, "%s[%d] = %g is negative: not a mean of squares", full ? "diag(H)" : "h", j,
                           (double)d);
        any |= d > 0;
    }
    if (!any)
        return dq_fail(err, DQ_ERR_NUMERIC, "the %s is zero: no column has any curvature", full ? "Hessian" : "diagonal");
    return DQ_OK;
}

/* W, or W and the statistic widened with pad zero columns (no curvature). */
static dq_status pad_inputs(const float *W, int rows, int cols, const float *stat, dq_stat_kind kind, int pad,
                            float **Wp, float **sp, dq_error *err) {
    int n = cols + pad;
    *Wp = *sp = NULL;
    if (!pad) return DQ_OK;
    *Wp = dq_pad_matrix(W, rows, cols, rows, n);
    if (kind == DQ_STAT_DIAG) *sp = dq_pad_matrix(stat, 1, cols, 1, n);
    if (kind == DQ_STAT_HESSIAN) *sp = dq_pad_matrix(stat, cols, cols, n, n);
    if (!*Wp || (kind != DQ_STAT_NONE && !*sp)) {
        free(*Wp), free(*sp);
        *Wp = *sp = NULL;
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory padding a %d x %d matrix", rows, cols);
    }
    return DQ_OK;
}

static void copy_out(const dq_qtensor *t, const dq_solve_shape *s, uint8_t *codes, float *scale, float *zero,
                     float *deq, void *blocks) {
    size_t ng = (size_t)s->rows * s->groups_per_row;
    if (codes) memcpy(codes, t->q, (size_t)s->rows * s->qcols);
    if (scale) memcpy(scale, t->scale, ng * sizeof *scale);
    if (zero) memcpy(zero, t->zero, ng * sizeof *zero);
    if (deq) dq_qtensor_dequantize(t, deq);
    if (blocks && t->grid)
        for (int r = 0; r < s->rows; r++) dq_qtensor_encode_row(t, r, (uint8_t *)blocks + (size_t)r * s->row_bytes);
}

dq_status dq_solve(const dq_solve_params *p, const float *W, int rows, int cols, const float *stat,
                   size_t stat_floats, uint8_t *codes, float *scale, float *zero, float *deq, void *blocks,
                   dq_error *err) {
    dq_solve_shape shape;
    const dq_method_info *mi = NULL;
    dq_quant_opts q;
    dq_status st = plan(p, rows, cols, &shape, &mi, &q, err);
    if (st) return st;
    if (!W) return dq_fail(err, DQ_ERR_ARG, "no weight matrix");
    for (size_t i = 0, n = (size_t)rows * cols; i < n; i++)
        if (!isfinite(W[i])) return dq_fail(err, DQ_ERR_NUMERIC, "W[%zu, %zu] is not finite", i / cols, i % cols);
    if (shape.stat_floats && (!stat || stat_floats != shape.stat_floats))
        return dq_fail(err, DQ_ERR_ARG, "method %s needs the %s of the input's curvature (%zu floats for %d columns), "
                                        "got %zu", mi->name, shape.stat, shape.stat_floats, cols, stat ? stat_floats : 0);
    if (!shape.stat_floats && stat && stat_floats)
        return dq_fail(err, DQ_ERR_ARG, "method %s takes no calibration statistic", mi->name);
    if (shape.stat_floats && (st = check_stat(stat, stat_floats, cols, mi->stat == DQ_STAT_HESSIAN, err))) return st;
    float *Wp, *sp;
    if ((st = pad_inputs(W, rows, cols, stat, mi->stat, q.pad, &Wp, &sp, err))) return st;
    dq_qtensor t = {0};
    int nt = dq_threads_or_default(p->n_threads);
    st = mi->solve(Wp ? Wp : W, rows, shape.qcols, shape.stat_floats ? (sp ? sp : stat) : NULL, &q, nt, &t, err);
    free(Wp);
    free(sp);
    if (st) return st;
    t.in_cols = cols;
    copy_out(&t, &shape, codes, scale, zero, deq, blocks);
    dq_qtensor_free(&t);
    return DQ_OK;
}
