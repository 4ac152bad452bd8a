/* DQ_METHODS[]: the quantizer table (see methods.h). Each solve wraps the
 * method's existing solver with the table's one signature; the grid (GGUF)
 * path is inside every solver, chosen by o->grid. */
#include "quant/methods.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#include "util/error.h"

static dq_status solve_rtn(const float *W, int rows, int cols, const float *stat, const dq_quant_opts *o,
                           int n_threads, dq_qtensor *out, dq_error *err) {
    (void)stat; /* DQ_STAT_NONE */
    return dq_quantize_rtn(W, rows, cols, o, n_threads, out, err);
}

/* ---- options: each once, listed by the methods that read them ---------- */

#define OPT(field) offsetof(dq_quant_opts, field)
_Static_assert(sizeof(dq_reweight) == sizeof(int), "DQ_OPT_ENUM fields are int-sized");
static const char *const REWEIGHTS[] = {"none", "huber", "power", NULL}; /* dq_reweight order */
static const char *const CURVATURES[] = {"layer", "oac", "oac-token", NULL}; /* dq_curvature order */
_Static_assert(sizeof(dq_curvature) == sizeof(int), "DQ_OPT_ENUM fields are int-sized");
static const dq_method_option SYM = {"sym", DQ_OPT_FLAG, OPT(sym), 0, 0, NULL, "symmetric: zero fixed mid-range"};
static const dq_method_option MSE = {"mse", DQ_OPT_FLAG, OPT(mse), 0, 0, NULL,
                                     "clipping search over shrunk ranges (the GPTQ reference's grid, norm 2.4)"};
static const dq_method_option STARTS = {"starts", DQ_OPT_INT, OPT(starts), 1, 64, NULL,
                                        "initial scales tried per group (1: min-max)"};
static const dq_method_option ACT_ORDER = {"act_order", DQ_OPT_FLAG, OPT(act_order), 0, 0, NULL,
                                           "columns by descending diag(H), with static groups"};
static const dq_method_option PERCDAMP = {"percdamp", DQ_OPT_FLOAT, OPT(percdamp), 0, 10, NULL,
                                          "damping as a fraction of mean diag(H) (reference 0.01)"};
static const dq_method_option ITERS = {"iters", DQ_OPT_INT, OPT(max_iters), 0, 1000, NULL,
                                       "least-squares iterations per group (stops when the codes settle)"};
static const dq_method_option EPS = {
    "eps", DQ_OPT_FLOAT, OPT(eps), 0, 1, NULL, "dead-channel floor: h + eps * mean(h)"};
static const dq_method_option REWEIGHT = {"reweight", DQ_OPT_ENUM, OPT(reweight), 0, 0, REWEIGHTS,
                                          "IRLS rule between iterations"};
static const dq_method_option REWEIGHT_PARAM = {"reweight_param", DQ_OPT_FLOAT, OPT(reweight_param), 0, 100, NULL,
                                                "huber threshold (grid steps) or power exponent"};

static const dq_method_option CURVATURE = {
    "curvature", DQ_OPT_ENUM, OPT(curvature), 0, 0, CURVATURES,
    "layer: Σxxᵀ; oac: Fisher of the loss, Σ_s GᵀG (needs a backward pass); oac-token: Σ‖δ_t‖²xxᵀ"};

static const dq_method_option REFRESH = {
    "refresh", DQ_OPT_INT, OPT(refresh), 0, 100000, NULL,
    "oac curvature: gradients again every N blocks, through the blocks quantized so far (0: full precision only)"};

static const dq_method_option *const RTN_OPTIONS[] = {&SYM, &MSE, &STARTS, NULL};
static const dq_method_option *const GPTQ_OPTIONS[] = {&SYM,      &MSE,       &STARTS,  &ACT_ORDER,
                                                       &PERCDAMP, &CURVATURE, &REFRESH, NULL};
static const dq_method_option *const DASHQ_OPTIONS[] = {&SYM,    &STARTS,         &ITERS,     &EPS,
                                                        &REWEIGHT, &REWEIGHT_PARAM, &CURVATURE, &REFRESH, NULL};

const dq_method_info DQ_METHODS[DQ_METHOD_COUNT] = {
    [DQ_METHOD_RTN] = {DQ_METHOD_RTN, "rtn", DQ_STAT_NONE, solve_rtn, RTN_OPTIONS},
    [DQ_METHOD_GPTQ] = {DQ_METHOD_GPTQ, "gptq", DQ_STAT_HESSIAN, dq_quantize_gptq, GPTQ_OPTIONS},
    [DQ_METHOD_DASHQ] = {DQ_METHOD_DASHQ, "dashq", DQ_STAT_DIAG, dq_quantize_dashq, DASHQ_OPTIONS},
    /* GPTQ's solve on the output-adaptive Hessian (its defaults: curvature
     * oac and its own damping, affine.c) */
    [DQ_METHOD_OAC] = {DQ_METHOD_OAC, "oac", DQ_STAT_HESSIAN, dq_quantize_gptq, GPTQ_OPTIONS},
};

const char *dq_method_option_names(const dq_method_info *mi, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    for (const dq_method_option *const *op = mi->options; *op && n < cap; op++) {
        const char *arg = (*op)->type == DQ_OPT_FLAG ? "" : (*op)->type == DQ_OPT_ENUM ? "=NAME" : "=X";
        n += (size_t)snprintf(buf + n, cap - n, "%s%s%s", op == mi->options ? "" : ", ", (*op)->name, arg);
    }
    return buf;
}

static const dq_method_option *find_option(const dq_method_info *mi, const char *name, size_t len) {
    for (const dq_method_option *const *op = mi->options; *op; op++)
        if (strlen((*op)->name) == len && !strncmp((*op)->name, name, len)) return *op;
    return NULL;
}

/* value: NULL for a bare name. */
static dq_status set_option(const dq_method_info *mi, const dq_method_option *op, const char *value,
                            dq_quant_opts *o, dq_error *err) {
    char *field = (char *)o + op->offset, *end = NULL;
    if (op->type == DQ_OPT_FLAG) {
        if (value && strcmp(value, "1") && strcmp(value, "0"))
            return dq_fail(err, DQ_ERR_ARG, "%s option %s is a flag (%s, %s=0 or %s=1), got '%s'", mi->name, op->name,
                           op->name, op->name, op->name, value);
        *(bool *)field = !value || !strcmp(value, "1");
        return DQ_OK;
    }
    if (!value || !*value)
        return dq_fail(err, DQ_ERR_ARG, "%s option %s needs a value (%s=...)", mi->name, op->name, op->name);
    if (op->type == DQ_OPT_ENUM) {
        for (int i = 0; op->values[i]; i++)
            if (!strcmp(op->values[i], value)) return *(int *)field = i, DQ_OK;
        char names[128] = "";
        for (int i = 0; op->values[i]; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", op->values[i]);
        return dq_fail(err, DQ_ERR_ARG, "%s option %s takes one of %s; got '%s'", mi->name, op->name, names, value);
    }
    errno = 0;
    double v = strtod(value, &end);
    bool whole = op->type != DQ_OPT_INT || v == floor(v);
    if (errno || end == value || *end || !isfinite(v) || !whole || v < op->lo || v > op->hi)
        return dq_fail(err, DQ_ERR_ARG, "%s option %s expects %s in [%g, %g], got '%s'", mi->name, op->name,
                       op->type == DQ_OPT_INT ? "an integer" : "a number", op->lo, op->hi, value);
    if (op->type == DQ_OPT_INT) *(int *)field = (int)v;
    else *(float *)field = (float)v;
    return DQ_OK;
}

dq_status dq_method_set_options(const dq_method_info *mi, const char *options, dq_quant_opts *o, dq_error *err) {
    for (const char *p = options ? options : ""; *p;) {
        size_t len = strcspn(p, ","), key = strcspn(p, "=,");
        char value[64];
        bool has_value = key < len;
        if (has_value && len - key - 1 >= sizeof value)
            return dq_fail(err, DQ_ERR_ARG, "%s option %.*s: value too long", mi->name, (int)key, p);
        if (has_value) memcpy(value, p + key + 1, len - key - 1), value[len - key - 1] = '\0';
        const dq_method_option *op = find_option(mi, p, key);
        if (!op) {
            char names[256];
            return dq_fail(err, DQ_ERR_ARG, "method %s has no option '%.*s' (its options: %s)", mi->name, (int)key, p,
                           dq_method_option_names(mi, names, sizeof names));
        }
        dq_status st = set_option(mi, op, has_value ? value : NULL, o, err);
        if (st) return st;
        p += len + (p[len] == ',');
    }
    return DQ_OK;
}

const dq_method_info *dq_method_of(dq_method m) { return &DQ_METHODS[m]; }

const dq_method_info *dq_method_find(const char *name) {
    for (int i = 0; i < DQ_METHOD_COUNT; i++)
        if (!strcmp(DQ_METHODS[i].name, name)) return &DQ_METHODS[i];
    return NULL;
}

static char method_names[256];

static void build_method_names(void) {
    for (int i = 0; i < DQ_METHOD_COUNT; i++) {
        size_t n = strlen(method_names);
        snprintf(method_names + n, sizeof method_names - n, "%s%s", i ? ", " : "", DQ_METHODS[i].name);
    }
}

const char *dq_method_names(void) { /* built once from the table, whichever thread asks first */
    static once_flag once = ONCE_FLAG_INIT;
    call_once(&once, build_method_names);
    return method_names;
}

size_t dq_stat_floats(dq_stat_kind k, int cols) {
    switch (k) {
    case DQ_STAT_DIAG: return (size_t)cols;
    case DQ_STAT_HESSIAN: return (size_t)cols * cols;
    default: return 0;
    }
}

const char *dq_method_name(dq_method m) { return DQ_METHODS[m].name; }
