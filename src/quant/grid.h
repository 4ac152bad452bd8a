/* Quantization grids of llama.cpp's block types. A grid says which weights a
 * block can represent: codes per weight, a scale (and offset) per sub-block,
 * and — for K-quants — sub-scales that are themselves integers times an fp16
 * super-scale. Every method that writes GGUF fits its parameters on this
 * grid, so what it optimises is exactly what llama.cpp will compute.
 *
 * Within a sub-block the grid is  ŵ = scale · v(q) + offset,  v(q) = q
 * (IQ4_NL: its 16 levels), with (scale, offset) derived from the block's
 * stored parameters (dq_ggml_block). */
#ifndef DQ_GRID_H
#define DQ_GRID_H
#include <stdbool.h>
#include <stdint.h>

#include "formats/ggml_types.h"

typedef struct {
    dq_ggml_type type;
    int block;           /* weights per block: 32 or 256 */
    int sub;             /* weights per (scale, offset): 16 or 32 */
    int maxq;            /* codes 0..maxq */
    int zero;            /* symmetric: the code of 0 (offset = −zero·scale); −1 affine */
    int sc_lo, sc_hi;    /* K-quants: integer sub-scale range; 0, 0 when the scale is an fp16 */
    int m_hi;            /* affine K-quants: sub-min codes 0..m_hi */
    const int8_t *values; /* IQ4_NL levels, else NULL */
} dq_grid;

typedef struct {
    float scale, offset;
} dq_grid_step;

/* The grid of a quantized type; NULL for F32/F16/BF16. */
const dq_grid *dq_grid_of(dq_ggml_type t);
/* Nominal bits per code (for reports): 2..8. */
int dq_grid_bits(const dq_grid *g);

/* (scale, offset) of sub-block s of a block. */
dq_grid_step dq_grid_step_of(const dq_grid *g, const dq_ggml_block *p, int s);

static inline float dq_grid_level(const dq_grid *g, int q) { return g->values ? (float)g->values[q] : (float)q; }
static inline float dq_grid_value(const dq_grid *g, dq_grid_step st, int q) {
    return st.scale * dq_grid_level(g, q) + st.offset;
}
/* The code whose value is nearest w. */
int dq_grid_code(const dq_grid *g, dq_grid_step st, float w);

/* Fits one block's parameters and codes to weights w (g->block of them)
 * under importance a (NULL: all ones), minimising Σ a·(w − ŵ)².
 *   refine = false: min-max sub-ranges, sub-scales rounded onto the grid (RTN);
 *   refine = true:  weighted least-squares descent for every sub-block from
 *                   `starts` initial ranges, then alternating refits of the
 *                   super-scales and the integer sub-scales with the codes.
 * Returns the objective. */
double dq_grid_fit(const dq_grid *g, const float *w, const float *a, bool refine, int starts, dq_ggml_block *p,
                   uint8_t *q);

/* Per-weight importance for a curvature-weighted grid fit: out_j = h_j ·
 * sqrt(σ² + w_j²), σ² the mean square of w[0, n). diag(H) alone drops the
 * cross terms that make large weights matter more than their share of the
 * squared error; llama.cpp weighs its imatrix the same way. Measured on
 * gut6l (KLD, DASH-Q / GPTQ at Q2_K): 0.0151 → 0.0131 / 0.0072 → 0.0061. */
void dq_grid_importance(const float *w, const float *h, int n, float *out);

/* Starting ranges per sub-block for the calibrated fits (DASH-Q, GPTQ):
 * descent from one start misses the better minima of 2-3-bit sub-blocks. */
#define DQ_GRID_STARTS 16
#endif
