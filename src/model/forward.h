/* Block-level access to the forward pass for calibration: run one
 * transformer block on a window's hidden states and observe the input of
 * every linear layer on the way ("taps"). */
#ifndef DQ_FORWARD_H
#define DQ_FORWARD_H
#include "model/sites.h" /* dq_tap: which linear input a tap shows */

/* What a tap shows: the input x (T, cols) of the linears `sites` read, in
 * block `layer` (-1: the head's input, dq_final_norm). In the spirit of
 * llama.cpp's collect_imatrix(t, ask, user_data): a caller first says
 * whether it wants a tap at all (ask; NULL: every tap), then gets it (fn).
 * Output gradients will come the same way once a backward pass exists (OAC,
 * issue #16). */
typedef struct {
    int layer;
    dq_tap tap;
    const dq_site *sites[DQ_TAP_MAX_SITES]; /* rows of DQ_SITES reading x: q, k, v for DQ_TAP_ATTN_IN */
    int n_sites;
    const float *x;
    int T, cols;
} dq_tap_data;

typedef struct {
    bool (*ask)(void *ctx, int layer, dq_tap tap); /* false: the tap is skipped; NULL: all are wanted */
    void (*fn)(void *ctx, const dq_tap_data *d);
    void *ctx;
} dq_taps;

/* A tap's data for block `layer`: its sites from the table. */
dq_tap_data dq_tap_make(int layer, dq_tap tap, const float *x, int T, int cols);

/* x (T, dim): in = the block's input, out = its output; positions 0..T-1.
 * A non-finite output fails with DQ_ERR_NUMERIC (see dq_forward), x untouched. */
dq_status dq_block_forward(dq_session *s, int layer, float *x, int T, const dq_taps *taps, dq_error *err);
/* The head on T rows of the last block's output (positions 0..T-1): the
 * session's logits, as dq_forward computes them (a backward pass that runs
 * the model block by block, model/backward.h). */
dq_status dq_head_forward(dq_session *s, const float *x, int T, dq_error *err);
/* out (T, dim) = final RMSNorm of x: the input of the output head. */
void dq_final_norm(const dq_model *m, const float *x, float *out, int T, int n_threads);
int dq_session_threads(const dq_session *s);
/* Every id in [0, vocab_size), as dq_forward checks them (a pass that embeds the tokens itself checks them here). */
dq_status dq_check_token_ids(const dq_config *c, const int32_t *tokens, size_t n, dq_error *err);
/* The logits of the session's last forward (dq_forward's, dq_head_forward's): (rows, vocab). */
const float *dq_session_logits(const dq_session *s);
#endif
