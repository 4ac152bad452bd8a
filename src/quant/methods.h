/* The quantizer table: one row per method, the way ggml's type_traits[]
 * describes its types and eval/tasks.c's TASKS[] lists tasks. A row names the
 * method, the calibration statistic it needs, and how it solves one linear.
 * The pipeline reads only the row: it accumulates the row's statistic from
 * the taps and calls the row's solve, so adding a method is one solver file
 * plus one line in DQ_METHODS[] (methods.c).
 *
 * A row also lists the options its method takes (name, type, range, and the
 * dq_quant_opts field it sets): callers pass them as "name=value,flag" text
 * (dq_method_set_options), so the CLI and the public API accept exactly what
 * the method reads and refuse the rest by name. */
#ifndef DQ_METHODS_H
#define DQ_METHODS_H
#include <stddef.h>

#include "quant/quant.h"

/* What a method reads about a layer's input x (T tokens x cols), as the mean
 * over calibration tokens. Room for a later output-adaptive statistic. */
typedef enum {
    DQ_STAT_NONE = 0, /* no calibration: the solver gets NULL */
    DQ_STAT_DIAG,     /* h_j = mean x_j²: cols floats (DASH-Q's diagonal Hessian) */
    DQ_STAT_HESSIAN,  /* H = mean x xᵀ: cols x cols floats, symmetric (GPTQ's layer Hessian) */
    DQ_STAT_COUNT
} dq_stat_kind;

/* Solve one linear: W (rows x cols, row-major, cols including any padding),
 * stat of the row's kind over those cols (NULL for DQ_STAT_NONE; not
 * modified), o's bits/group or o->grid (a llama.cpp block type, the GGUF
 * path). On success out holds the codes and the caller frees it with
 * dq_qtensor_free; on failure err says why and out holds nothing to free. */
typedef dq_status (*dq_solve_fn)(const float *W, int rows, int cols, const float *stat, const dq_quant_opts *o,
                                 int n_threads, dq_qtensor *out, dq_error *err);

typedef enum { DQ_OPT_FLAG, DQ_OPT_INT, DQ_OPT_FLOAT, DQ_OPT_ENUM } dq_opt_type;

/* One option of a method: "act_order" (its CLI flag is --act-order). */
typedef struct {
    const char *name;
    dq_opt_type type;
    size_t offset;             /* of its field in dq_quant_opts: bool, int, float or an int-sized enum */
    double lo, hi;             /* DQ_OPT_INT / DQ_OPT_FLOAT: the accepted range */
    const char *const *values; /* DQ_OPT_ENUM: value names in enum order, NULL-terminated */
    const char *help;
} dq_method_option;

typedef struct {
    dq_method method;  /* the row's index in DQ_METHODS[] */
    const char *name;  /* CLI spelling and the packed checkpoint's "method" */
    dq_stat_kind stat; /* what the pipeline accumulates for it */
    dq_solve_fn solve;
    const dq_method_option *const *options; /* NULL-terminated */
} dq_method_info;

extern const dq_method_info DQ_METHODS[DQ_METHOD_COUNT];

/* The row of a method (m must be a dq_method value). */
const dq_method_info *dq_method_of(dq_method m);
/* The row named name (exact, case-sensitive), or NULL. */
const dq_method_info *dq_method_find(const char *name);
/* "rtn, gptq, dashq, oac": every name in table order, for messages. */
const char *dq_method_names(void);
/* Applies "name=value,flag,..." (NULL or "": nothing) to o, option by
 * option from the method's row; an option the method does not take, or a
 * value out of its range, is DQ_ERR_ARG naming the method's options. */
dq_status dq_method_set_options(const dq_method_info *mi, const char *options, dq_quant_opts *o, dq_error *err);
/* "sym, mse, starts=N": the row's options, for messages. */
const char *dq_method_option_names(const dq_method_info *mi, char *buf, size_t cap);
/* Floats one statistic of kind k takes for a layer of cols inputs (0 for none). */
size_t dq_stat_floats(dq_stat_kind k, int cols);
#endif
