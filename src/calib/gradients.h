/* The gradient pass of output-adaptive calibration (OAC, issue #16): one
 * forward and backward pass of the model per calibration window, before any
 * block is quantized, keeping for every block linear what its output-adaptive
 * statistic needs of δ = ∂ℓ/∂y (ℓ: the window's mean next-token
 * cross-entropy):
 *   DQ_GRADS_NORMS  ‖δ_t‖² per token: T floats per (window, layer, linear),
 *                   in memory (SmolLM2-135M, 128 x 512: 55 MB);
 *   DQ_GRADS_FULL   δ itself, (T, rows), in bf16, spilled to an unlinked
 *                   temporary file under $TMPDIR (SmolLM2-135M: 5.3 MB per
 *                   window and block; 128 x 512 windows: 20 GB of disk), so
 *                   memory does not grow with the number of windows.
 * The pipeline reads them back block by block (calib/pipeline.c) and pairs
 * them with the inputs x of its sequential pass. The gradients come from the
 * model as it is when the pass runs: full precision (after any prepare hook). */
#ifndef DQ_GRADIENTS_H
#define DQ_GRADIENTS_H
#include "calib/calib_data.h"
#include "model/model.h"
#include "model/sites.h"
#include "quant/quant.h"

typedef enum { DQ_GRADS_NORMS, DQ_GRADS_FULL } dq_grads_kind;

typedef struct dq_grad_store dq_grad_store; /* the tag: calib/pipeline.h names it too */

/* Runs the pass over every window of cs (progress: stage "gradients", one
 * unit per window, or per sweep step when streamed). A window whose loss or
 * gradient is not finite fails with DQ_ERR_NUMERIC naming it. A lazily
 * loaded model whose weights are not all in memory is streamed, one block
 * at a time (blocks it had loaded stay loaded), its block inputs and
 * gradients, dq_grad_stream_bytes, kept in RAM or, with spill_dir, in a
 * file there; the store is the same bit for bit. */
size_t dq_grad_stream_bytes(const dq_config *c, const dq_calib_set *cs);
dq_status dq_grad_store_build(dq_model *m, const dq_calib_set *cs, dq_grads_kind kind, int n_threads,
                              const char *spill_dir, const dq_progress *progress, dq_grad_store **out, dq_error *err);
/* δ (T, rows) of block linear `lin` (DQ_LIN_*) of block `layer` on window w,
 * into out; DQ_GRADS_FULL only. */
dq_status dq_grad_store_delta(dq_grad_store *g, int layer, int lin, int w, float *out, dq_error *err);
/* ‖δ_t‖² (T floats) of the same; either kind. */
dq_status dq_grad_store_norms(dq_grad_store *g, int layer, int lin, int w, float *out, dq_error *err);
/* A store of kind NORMS whose ‖δ_t‖² is `norm2` for every token and layer,
 * without a pass: with it the token-level statistic is norm2 · Σ x xᵀ, the
 * layer statistic scaled (the regression check of issue #16). */
dq_status dq_grad_store_uniform(const dq_model *m, const dq_calib_set *cs, float norm2, dq_grad_store **out,
                                dq_error *err);
/* The rows whose Gram matrix is the output-adaptive statistic of block
 * linear `lin` of block `layer` on window w, given that linear's input x
 * (T, cols) on the window (from the caller's sequential pass):
 *   curvature oac:        G = δᵀx, (rows, cols) — Σ_w GᵀG is the Fisher;
 *   curvature oac-token:  ‖δ_t‖·x_t, (T, cols) — Σ is Σ_t ‖δ_t‖² x_t x_tᵀ.
 * out holds max(T, rows) x cols floats, scratch T x rows; *n receives the
 * row count. */
dq_status dq_grad_store_weighted_rows(dq_grad_store *g, dq_curvature curvature, int layer, int lin, int w,
                                      const float *x, int T, int cols, float *scratch, float *out, int *n, int nt,
                                      dq_error *err);
/* Output features of block linear `lin`: the width of its δ. */
int dq_grad_store_rows(const dq_grad_store *g, int lin);
/* The mean loss over the windows and the pass's seconds (for reports). */
double dq_grad_store_loss(const dq_grad_store *g);
double dq_grad_store_seconds(const dq_grad_store *g);
void dq_grad_store_free(dq_grad_store *g);
#endif
