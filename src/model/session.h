/* The inference session's layout, private to the forward and backward
 * passes (model/forward.c, model/backward.c): what the public dq_session
 * handle holds. */
#ifndef DQ_SESSION_H
#define DQ_SESSION_H
#include "model/model.h"

/* Work is cut into fixed tiles of tokens x output features, one BLAS call
 * each. The tiling does not depend on the thread count, so every call is the
 * same at any -t and results are bit-identical; BLAS runs single-threaded
 * inside our OpenMP loop, which keeps both cores busy even on small layers. */
#define DQ_TILE_TOKENS 64
#define DQ_TILE_FEATURES 128

/* What the backward pass needs of one block's forward, per token (kept only
 * when a session is asked to, dq_session_keep_activations): the residual
 * stream entering the block and after its attention, the rotated queries, the
 * attention output and the gate/up pre-activations. The normed inputs and
 * silu(gate)·up are recomputed from these; keys and values stay in the KV
 * cache. */
typedef struct {
    float *x_in, *x_mid; /* (T, dim) */
    float *q, *att;      /* (T, n_heads*head_dim) */
    float *gate, *up;    /* (T, hidden_dim) */
} dq_block_acts;

struct dq_session {
    const dq_model *m;
    int n_ctx, n_batch, n_threads;
    float *x;          /* (n_batch, dim) residual stream */
    float *xb;         /* (n_batch, dim) normalised input of a sub-layer */
    float *q;          /* (n_batch, n_heads*head_dim) */
    float *att;        /* (n_batch, n_heads*head_dim) attention output */
    float *hb, *hb2;   /* (n_batch, hidden_dim) gate (before silu) and up projections */
    float *hb3;        /* (n_batch, hidden_dim) silu(gate)·up, the input of down */
    float *scores;     /* (n_threads, DQ_TILE_TOKENS, n_ctx) per-thread attention scores */
    float *key_cache;  /* (n_layers, n_ctx, n_kv_heads*head_dim) */
    float *val_cache;  /* (n_layers, n_ctx, n_kv_heads*head_dim) */
    float *rope_cos;   /* (n_ctx, head_dim/2) */
    float *rope_sin;   /* (n_ctx, head_dim/2) */
    float *logits;     /* (n_batch, vocab) */
    /* Layout of the current batch: row t sits in cache slot pos+t at RoPE
     * position row_pos[t] and sees slots [0, prefix) and [row_start[t], pos+t].
     * A plain sequence has prefix = row_start = pos; branches share a prefix. */
    int *row_pos, *row_start;
    int prefix;
    /* NULL unless asked for: per block, what its backward pass reads
     * (n_batch rows each), and the residual stream entering the final norm. */
    dq_block_acts *acts;
    float *acts_buf, *x_final;
    bool acts_one_block; /* every acts[l] is the same slot: dq_backward_block only */
};

/* The forward's RMSNorm and silu(g)·u, for the backward pass's recomputed
 * inputs (forward.c; wrappers, so the forward's own calls stay inlinable). */
void dq_rmsnorm_rows(float *out, const float *x, const float *w, int T, int n, float eps, int nt);
void dq_swiglu(float *h, const float *g, const float *u, size_t n, int nt);
#endif
