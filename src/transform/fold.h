/* Function-preserving rewrites of a model's weights (HeRo-Q, issue #17;
 * SpinQuant §3 and QuaRot §4 for the rotations, SmoothQuant §4 for the
 * scalings), folded into the tensors so the architecture does not change and
 * any runtime runs the result. In column convention (y = W x):
 *   norms:    an RMSNorm gain g moves into every linear reading the norm,
 *             W ← W diag(g), g ← 1 (the head's too: a tied head is untied);
 *   residual: with every gain 1 the stream is rotated by an orthogonal Q,
 *             r ← Qᵀ r: embedding rows E ← E Q, readers W ← W Q, writers
 *             (o, down) W ← Qᵀ W, head H ← H Q; RMSNorm commutes with Q
 *             because ‖Qᵀr‖ = ‖r‖;
 *   heads:    per block an orthogonal P (head_dim²) between v and o:
 *             each KV head's rows V_j ← Pᵀ V_j (bias too), each query head's
 *             columns O_h ← O_h P;
 *   scalings: a tap's channels scaled by s > 0: its input divided by s where
 *             it is made (the norm gain, or up's rows for down's input),
 *             the readers' columns multiplied by s.
 * Each writes through dq_site_writable (mapped tensors are copied first).
 * Work is cut into fixed tiles, one single-threaded BLAS call each, so the
 * result is the same at any thread count. */
#ifndef DQ_FOLD_H
#define DQ_FOLD_H
#include "model/model.h"
#include "model/sites.h"

dq_status dq_fold_norms(dq_model *m, dq_error *err);
/* Q (dim x dim). Refuses, naming it, a norm whose gains are not all 1 (fold
 * first): rotating past a gain would silently change the model. */
dq_status dq_rotate_residual(dq_model *m, const float *Q, int nt, dq_error *err);
/* P (head_dim x head_dim), block `layer`. */
dq_status dq_rotate_heads(dq_model *m, int layer, const float *P, dq_error *err);
/* s (the tap's width) for DQ_TAP_ATTN_IN, DQ_TAP_FFN_IN or DQ_TAP_FFN_HIDDEN
 * of block `layer`; refuses a non-finite or non-positive s_j, and other taps. */
dq_status dq_scale_inputs(dq_model *m, int layer, dq_tap tap, const float *s, dq_error *err);
/* The RMSNorm whose output tap reads (attention, FFN, final), or NULL: the
 * tap is not a norm's output. */
const dq_site *dq_norm_of_tap(dq_tap tap);
#endif
