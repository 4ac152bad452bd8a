/* Backward pass of the Llama-family forward (model/forward.c) for the
 * next-token cross-entropy of one sequence (or its KL divergence from a
 * reference model's logits): what output-adaptive calibration (OAC, issue
 * #16) and the loss-learned rotations (issue #17) need, the gradient
 * δ = ∂ℓ/∂y at every linear layer's output, shown together with that layer's input x through "gradient taps"
 * (the backward twin of forward.h's taps). Weight gradients are not formed:
 * a caller that wants ∂ℓ/∂W = δᵀx (or a statistic of δ and x) builds it from
 * the tap. */
#ifndef DQ_BACKWARD_H
#define DQ_BACKWARD_H
#include "model/forward.h"

/* One linear's view in the backward pass: its input x (T, cols) and output
 * gradient dy (T, rows), block `layer` (-1: the output head). Under the
 * cross-entropy row T-1 of dy is zero (the last token predicts nothing in
 * the window); under the KL divergence every row counts. */
typedef struct {
    int layer;
    const dq_site *site;
    const float *x, *dy;
    int T, rows, cols;
} dq_grad_data;

typedef struct {
    bool (*ask)(void *ctx, int layer, const dq_site *site); /* false: skipped; NULL: every linear */
    void (*fn)(void *ctx, const dq_grad_data *g);
    void *ctx;
    /* NULL, or (T, dim): receives ∂ℓ/∂(block 0's input), the gradient at the
     * looked-up embedding rows (a learned rotation of the embedding needs it) */
    float *d_embed;
} dq_grad_taps;

/* Allocates the activation store: from now on every forward keeps what
 * dq_loss_backward needs (per token and block 2·dim + 2·n_heads·head_dim +
 * 2·hidden_dim floats; SmolLM2-135M at 512 tokens: 330 MB for its 30 blocks).
 * DQ_ACTS_ONE_BLOCK keeps one block's, overwritten by each block's forward:
 * enough for dq_backward_block right after that block's dq_block_forward, as
 * a pass over a model held one block at a time does (Llama-3-8B at 2048
 * tokens: 369 MB instead of 11.8 GB). */
typedef enum { DQ_ACTS_EVERY_BLOCK, DQ_ACTS_ONE_BLOCK } dq_keep_acts;
dq_status dq_session_keep_activations(dq_session *s, dq_keep_acts keep, dq_error *err);

/* Runs tokens[0..n) (n >= 2) from position 0 forward, keeping activations
 * (dq_session_keep_activations must have been called), and back: ℓ is the
 * mean cross-entropy of tokens[t+1] given tokens[..t] over t < n-1, *loss
 * receives it. Taps see the head first, then blocks from the last to the
 * first, in each block down, gate, up, o, q, k, v. Deterministic at any
 * thread count. A non-finite loss or gradient is DQ_ERR_NUMERIC naming the
 * tensor; the session's logits are overwritten with ∂ℓ/∂logits. */
dq_status dq_loss_backward(dq_session *s, const int32_t *tokens, int n, const dq_grad_taps *taps, double *loss,
                           dq_error *err);
/* The same for distillation: ℓ is the mean over all n rows of
 * KL(softmax(target_t) ‖ softmax(logits_t)), target (n, vocab) the logits of
 * a reference model on the same tokens (not the session's own buffer). */
dq_status dq_kl_backward(dq_session *s, const int32_t *tokens, int n, const float *target, const dq_grad_taps *taps,
                         double *loss, dq_error *err);
/* Forward only: the loss dq_loss_backward (target NULL) or dq_kl_backward
 * would report, without the backward pass (the session's logits are
 * overwritten); needs no activation store. */
dq_status dq_window_loss(dq_session *s, const int32_t *tokens, int n, const float *target, double *loss,
                         dq_error *err);

/* The same backward pass one piece at a time, for a model that is in memory
 * one block at a time (calib/gradients.c streams it): after dq_head_forward
 * on the last block's output of a window, dq_backward_head gives its loss
 * (cross-entropy) and leaves ∂ℓ/∂(that output) in dq_backward_dx; after
 * dq_block_forward of block l on the block's input (activations kept),
 * dq_backward_block turns dx = ∂ℓ/∂(its output) into ∂ℓ/∂(its input). The
 * caller keeps dx between calls (it may overwrite it with a window's
 * stored value). Same arithmetic as dq_loss_backward, bit for bit. */
typedef struct dq_backward dq_backward;
dq_status dq_backward_new(dq_session *s, int T, dq_backward **out, dq_error *err);
void dq_backward_free(dq_backward *k);
float *dq_backward_dx(dq_backward *k); /* (T, dim) */
dq_status dq_backward_head(dq_backward *k, const int32_t *tokens, const dq_grad_taps *taps, double *loss,
                           dq_error *err);
dq_status dq_backward_block(dq_backward *k, int layer, const dq_grad_taps *taps, dq_error *err);
#endif
