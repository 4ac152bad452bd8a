/* DQ_METHODS[]: the quantizer table (see methods.h). Each solve wraps the
 * method's existing solver with the table's one signature; the grid (GGUF)
 * path is inside every solver, chosen by o->grid. */
#include "quant/methods.h"

#include <stdio.h>
#include <string.h>

static dq_status solve_rtn(const float *W, int rows, int cols, const float *stat, const dq_quant_opts *o,
                           int n_threads, dq_qtensor *out, dq_error *err) {
    (void)stat; /* DQ_STAT_NONE */
    return dq_quantize_rtn(W, rows, cols, o, n_threads, out, err);
}

const dq_method_info DQ_METHODS[DQ_METHOD_COUNT] = {
    [DQ_METHOD_RTN] = {DQ_METHOD_RTN, "rtn", DQ_STAT_NONE, solve_rtn},
    [DQ_METHOD_GPTQ] = {DQ_METHOD_GPTQ, "gptq", DQ_STAT_HESSIAN, dq_quantize_gptq},
    [DQ_METHOD_DASHQ] = {DQ_METHOD_DASHQ, "dashq", DQ_STAT_DIAG, dq_quantize_dashq},
};

const dq_method_info *dq_method_of(dq_method m) { return &DQ_METHODS[m]; }

const dq_method_info *dq_method_find(const char *name) {
    for (int i = 0; i < DQ_METHOD_COUNT; i++)
        if (!strcmp(DQ_METHODS[i].name, name)) return &DQ_METHODS[i];
    return NULL;
}

const char *dq_method_names(void) {
    static char buf[256]; /* built once from the table; the CLI is single-threaded when it asks */
    if (!buf[0])
        for (int i = 0; i < DQ_METHOD_COUNT; i++) {
            size_t n = strlen(buf);
            snprintf(buf + n, sizeof buf - n, "%s%s", i ? ", " : "", DQ_METHODS[i].name);
        }
    return buf;
}

size_t dq_stat_floats(dq_stat_kind k, int cols) {
    switch (k) {
    case DQ_STAT_DIAG: return (size_t)cols;
    case DQ_STAT_HESSIAN: return (size_t)cols * cols;
    default: return 0;
    }
}

const char *dq_method_name(dq_method m) { return DQ_METHODS[m].name; }
