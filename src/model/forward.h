/* Block-level access to the forward pass for calibration: run one
 * transformer block on a window's hidden states and observe the input of
 * every linear layer on the way ("taps"). */
#ifndef DQ_FORWARD_H
#define DQ_FORWARD_H
#include "model/sites.h" /* dq_tap: which linear input a tap shows */

/* fn sees tap `tap`'s x (T, cols) during dq_block_forward; ctx is the caller's. */
typedef struct {
    void (*fn)(void *ctx, dq_tap tap, const float *x, int T, int cols);
    void *ctx;
} dq_taps;

/* x (T, dim): in = the block's input, out = its output; positions 0..T-1.
 * A non-finite output fails with DQ_ERR_NUMERIC (see dq_forward), x untouched. */
dq_status dq_block_forward(dq_session *s, int layer, float *x, int T, const dq_taps *taps, dq_error *err);
/* out (T, dim) = final RMSNorm of x: the input of the output head. */
void dq_final_norm(const dq_model *m, const float *x, float *out, int T, int n_threads);
int dq_session_threads(const dq_session *s);
#endif
