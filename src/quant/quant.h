/* Weight-only affine group quantization. A quantizer takes a weight matrix
 * W (rows = output features, cols = input features, row-major), the method's
 * calibration statistic, and bits/group options; it returns integer codes and
 * a (scale, zero) per group, with  w ≈ scale · (q − zero). Groups are runs of
 * `group` consecutive input features within one row (the layout of the DASH-Q
 * packed format and of llama.cpp's blocks). */
#ifndef DQ_QUANT_H
#define DQ_QUANT_H
#include "dashq.h"
#include "quant/grid.h"

/* Indexes DQ_METHODS[] (quant/methods.h), which names each method, its
 * statistic and its solver. */
typedef enum { DQ_METHOD_RTN = 0, DQ_METHOD_GPTQ, DQ_METHOD_DASHQ, DQ_METHOD_OAC, DQ_METHOD_COUNT } dq_method;

/* DASH-Q reweighting rule between least-squares iterations (IRLS). */
typedef enum {
    DQ_REWEIGHT_NONE = 0, /* weights = diagonal Hessian h_j */
    DQ_REWEIGHT_HUBER,    /* h_j · min(1, k / |residual_j / scale|): downweights outliers */
    DQ_REWEIGHT_POWER,    /* h_j^p: flattens the curvature spread (p = reweight_param) */
} dq_reweight;

/* Whose curvature a calibrated method weighs errors by (ALGORITHMS.md §2):
 * the layer's own output, as GPTQ and DASH-Q do, or the model's loss, as
 * OAC does (Edalati et al., AAAI-25): with δ_t = ∂ℓ/∂y_t at the layer's
 * output, the Fisher of the window's loss aggregated over rows,
 * Σ_s G_sᵀG_s with G_s = Σ_t δ_t x_tᵀ, or its token-level form
 * Σ_t ‖δ_t‖² x_t x_tᵀ. Which of the two the paper uses is not confirmed. */
typedef enum {
    DQ_CURVATURE_LAYER = 0, /* Σ x xᵀ (or its diagonal) */
    DQ_CURVATURE_OAC,       /* Σ_s G_sᵀ G_s: sequence-level Fisher */
    DQ_CURVATURE_OAC_TOKEN, /* Σ_t ‖δ_t‖² x_t x_tᵀ */
} dq_curvature;

/* Every method's knobs as fields of one struct; which method reads which is
 * said once, by the option lists of the rows of DQ_METHODS[] (methods.c),
 * which also set them from "name=value" text. */
typedef struct {
    dq_method method;
    int bits;            /* 2..8 */
    int group;           /* 16..128 dividing cols, or -1 for one group per row */
    bool sym;            /* symmetric: zero fixed at (maxq+1)/2 */
    bool fp16_params;    /* round scale and zero to fp16 before coding (what the file stores) */
    /* RTN */
    bool mse;            /* clipping search over shrunk ranges (GPTQ's grid, norm 2.4) */
    /* GPTQ */
    float percdamp;      /* damping as a fraction of mean(diag H); reference 0.01 */
    int blocksize;       /* lazy-batch width; reference 128 */
    bool act_order;      /* columns by descending diag(H), with static groups */
    dq_curvature curvature; /* GPTQ, OAC, DASH-Q: which Hessian (or diagonal) they get */
    int refresh;            /* output-adaptive: rerun the gradient pass on the partly quantized model every
                               `refresh` blocks; 0: once, on the full-precision model */
    /* DASH-Q */
    int max_iters;       /* IRLS iterations per group (stops early when codes settle) */
    float eps;           /* dead-channel floor: h_j + eps·mean(h) */
    dq_reweight reweight;
    float reweight_param;
    int starts;          /* initial scales tried per group: range/(maxq − 1 + k/10), k < starts; 1 = min-max,
                            0 = the method's default (DQ_GRID_STARTS for DASH-Q and GPTQ on a grid, else 1) */
    /* Trailing columns of W that are padding (0 <= pad < group): zero
     * weights with zero curvature, added so that the group divides the
     * width (the DASH-Q packed format's quant_in_features). They are coded
     * with their group (as the code of 0) and kept out of every statistic:
     * GPTQ's damping mean, DASH-Q's eps floor and group fit. RTN needs
     * nothing: 0 is always inside a min-max range. */
    int pad;
    /* A llama.cpp block type to fit instead of free (scale, zero) groups:
     * bits, group and sym then come from the grid. NULL: plain groups. */
    const dq_grid *grid;
} dq_quant_opts;

/* Starts per sub-block of a grid fit: o->starts, else DQ_GRID_STARTS for the
 * calibrated fits (DASH-Q, GPTQ) and one for RTN / uncalibrated fits. */
static inline int dq_grid_starts(const dq_quant_opts *o, bool calibrated) {
    return o->starts > 0 ? o->starts : calibrated ? DQ_GRID_STARTS : 1;
}

/* Defaults per method: the reference settings. */
dq_quant_opts dq_quant_defaults(dq_method m, int bits, int group);
/* The method's name from its row in DQ_METHODS[] (quant/methods.c). */
const char *dq_method_name(dq_method m);

typedef struct {
    int rows, cols, group; /* group == cols for per-channel; cols includes padding */
    int in_cols;           /* the layer's input width: columns in_cols..cols-1 are zero padding
                              (dq_qtensor_alloc sets cols; whoever padded W sets it) */
    int groups_per_row;
    uint8_t *q;            /* (rows, cols) codes in [0, 2^bits) */
    float *scale;          /* (rows, groups_per_row) */
    float *zero;           /* (rows, groups_per_row) */
    int bits;
    /* Grid tensors: the block parameters as stored (rows x cols/grid->block);
     * scale/zero then hold each sub-block's effective step for reports. */
    const dq_grid *grid;
    dq_ggml_block *blocks;
} dq_qtensor;

dq_status dq_qtensor_alloc(dq_qtensor *t, int rows, int cols, int group, int bits, dq_error *err);
/* A tensor on a block grid: group = the grid's sub-block. */
dq_status dq_qtensor_alloc_grid(dq_qtensor *t, int rows, int cols, const dq_grid *g, dq_error *err);
/* Grid tensors: scale/zero of every sub-block from the stored blocks. */
void dq_qtensor_fill_steps(dq_qtensor *t);
/* Grid tensors: row r encoded as the llama.cpp blocks (dq_ggml_row_bytes). */
void dq_qtensor_encode_row(const dq_qtensor *t, int r, void *dst);
void dq_qtensor_free(dq_qtensor *t);
/* The dims alone (no arrays): what a tensor will be, for a writer's layout. */
void dq_qtensor_shape(dq_qtensor *t, int rows, int cols, int group, int bits);
/* Frees the arrays, keeping the dims: a tensor already written. */
void dq_qtensor_drop_data(dq_qtensor *t);
/* Ŵ = scale · (q − zero) into out (rows, in_cols): the padding columns are
 * dropped; for grid tensors, what llama.cpp decodes from the encoded
 * blocks, bit for bit. */
void dq_qtensor_dequantize(const dq_qtensor *t, float *out);
/* Rows [r0, r0 + n) of it into out (n, in_cols). */
void dq_qtensor_dequantize_rows(const dq_qtensor *t, int r0, int n, float *out);

/* A (rows, cols) matrix zero-extended to (out_rows, out_cols), malloc'ed
 * (NULL when out of memory): W padded to a group's multiple, or a Hessian
 * (or a diagonal as one row) widened with columns of no curvature. */
float *dq_pad_matrix(const float *src, int rows, int cols, int out_rows, int out_cols);

/* Checks bits, group and padding against a layer's (padded) input width. */
dq_status dq_quant_check(const dq_quant_opts *o, int cols, const char *layer, dq_error *err);

/* RTN: each group's min-max (optionally MSE-clipped) range, codes by rounding. */
dq_status dq_quantize_rtn(const float *W, int rows, int cols, const dq_quant_opts *o, int n_threads,
                          dq_qtensor *out, dq_error *err);
/* GPTQ with the full Hessian H (cols x cols, symmetric, float), as in the
 * IST-DASLab reference: dampening, dead columns, lazy blocks, Cholesky of
 * H^-1, optional act-order with static groups. H is not modified. */
dq_status dq_quantize_gptq(const float *W, int rows, int cols, const float *H, const dq_quant_opts *o,
                           int n_threads, dq_qtensor *out, dq_error *err);
/* DASH-Q: diagonal Hessian h (cols), per-(row, group) weighted least squares
 * alternating exact rounding and closed-form (scale, offset). */
dq_status dq_quantize_dashq(const float *W, int rows, int cols, const float *h, const dq_quant_opts *o,
                            int n_threads, dq_qtensor *out, dq_error *err);

/* Each block fitted on o->grid on its own (dq_grid_fit), under importance a
 * per input feature (NULL: uniform); refine off is RTN. */
dq_status dq_quantize_grid(const float *W, int rows, int cols, const float *a, bool refine, const dq_quant_opts *o,
                           int n_threads, dq_qtensor *out, dq_error *err);

/* ---- group primitives shared by the methods ---------------------------- */

typedef struct {
    float scale, zero;
} dq_group_params;

/* GPTQ's find_params on n values: range widened to include 0, then
 * scale = (max-min)/maxq, zero = round(-min/scale) (or the symmetric form). */
dq_group_params dq_minmax_params(const float *w, int n, int maxq, bool sym, bool fp16);
/* Like minmax, with GPTQ's MSE grid: shrink the range by p = 1 - i/100 for
 * 80 steps and keep the lowest sum |q(w) - w|^2.4. */
dq_group_params dq_mse_params(const float *w, int n, int maxq, bool sym, bool fp16);

/* The method's parameter search for one group: MSE grid or min-max. */
dq_group_params dq_find_params(const dq_quant_opts *o, const float *w, int n);

static inline int dq_quant_code(float w, dq_group_params p, int maxq) {
    float v = __builtin_rintf(w / p.scale) + p.zero;
    return v < 0 ? 0 : v > maxq ? maxq : (int)v;
}
static inline float dq_dequant(int q, dq_group_params p) { return p.scale * ((float)q - p.zero); }
#endif
