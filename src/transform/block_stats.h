/* What the learned transforms (HeRo-Q, transform/hero*.c) read of the
 * calibration windows: the mean input Hessians H = XXᵀ/T of the block inputs
 * a transform scales or rotates, and the rows of the linears reading them. */
#ifndef DQ_BLOCK_STATS_H
#define DQ_BLOCK_STATS_H
#include "calib/calib_data.h"
#include "model/model.h"
#include "model/sites.h"

/* The inputs, in the order of H[] below: the three a smoothing scales
 * (DQ_BS_COUNT), then o_proj's, which only a head rotation (R2) reads. */
enum { DQ_BS_ATTN_IN, DQ_BS_FFN_IN, DQ_BS_FFN_HIDDEN, DQ_BS_COUNT, DQ_BS_ATTN_OUT = DQ_BS_COUNT, DQ_BS_ALL };
extern const dq_tap DQ_BS_TAPS[DQ_BS_ALL];
#define DQ_BS_BIT(k) (1u << (k))

/* Called once per block, in order, with H[k] (n_k x n_k floats, n = dim,
 * dim, hidden_dim, n_heads·head_dim; NULL unless asked for), its own to keep
 * or change.
 * fn may rewrite block `layer` as long as its full-precision function stays
 * (the windows' outputs of the block are taken before the call). */
typedef dq_status (*dq_block_hessian_fn)(void *ctx, dq_model *m, int layer, float *const H[DQ_BS_ALL],
                                         dq_error *err);

/* Runs the windows of cs through m block by block (one block's hidden
 * states of every window in memory), summing in double by fixed tiles, so H
 * is the same at any thread count. progress: stage "transform", one unit per
 * block. */
/* `inputs`: DQ_BS_BIT(k) of each H[k] wanted. */
dq_status dq_block_hessians(dq_model *m, const dq_calib_set *cs, unsigned inputs, int nt, const dq_progress *progress,
                            dq_block_hessian_fn fn, void *ctx, dq_error *err);

/* The rows of every linear reading tap in block `layer`, stacked (rows, n),
 * malloc'ed; at most cap of them (0: all), evenly spaced over the stack. */
float *dq_stack_readers(const dq_model *m, int layer, dq_tap tap, int cap, int *rows);
#endif
