/* Backward pass for the next-token cross-entropy, laid out like llm.c's
 * train_gpt2.c: one *_backward per forward kernel, walked in reverse. Only
 * input gradients are propagated (δ·W per linear, one sgemm like the forward
 * one); weight gradients are left to the taps. Activations come from the
 * session's store (model/session.h); normed inputs, silu(gate)·up and the
 * attention probabilities are recomputed. Every reduction runs over a fixed
 * tiling in a fixed order, so results are bit-identical at any thread count. */
#include "model/backward.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/session.h"
#include "util/error.h"
#include "util/fastmath.h"

/* Scratch of one backward call, T rows each unless said otherwise. */
typedef struct {
    float *dx;     /* (T, dim) ∂ℓ/∂ residual stream */
    float *xb;     /* (T, dim) a recomputed normed input */
    float *dxb;    /* (T, dim) ∂ℓ/∂ normed input */
    float *dq;     /* (T, qd) ∂ℓ/∂ q (rotated, then unrotated in place) */
    float *datt;   /* (T, qd) ∂ℓ/∂ attention output */
    float *dk_h;   /* (n_heads, T, head_dim) per query head: summed over a KV group in head order */
    float *dv_h;   /* (n_heads, T, head_dim) */
    float *dk, *dv; /* (T, kvd) */
    float *h;      /* (T, hidden) silu(gate)·up, recomputed */
    float *dh;     /* (T, hidden) ∂ℓ/∂ (silu(gate)·up) */
    float *dgate, *dup; /* (T, hidden) */
    float *p, *dp; /* (n_threads, DQ_TILE_TOKENS, T) attention probabilities and their gradient */
    double *row_loss; /* (T) */
} bwd;

static void bwd_free(bwd *b) {
    float *f[] = {b->dx, b->xb, b->dxb, b->dq, b->datt, b->dk_h, b->dv_h, b->dk,
                  b->dv, b->h,  b->dh,  b->dgate, b->dup, b->p, b->dp};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) free(f[i]);
    free(b->row_loss);
}

static bool bwd_alloc(bwd *b, const dq_config *c, int T, int nt) {
    size_t t = (size_t)T, d = (size_t)c->dim, qd = (size_t)c->n_heads * c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim, f = (size_t)c->hidden_dim;
    size_t tile = (size_t)nt * DQ_TILE_TOKENS * t;
    memset(b, 0, sizeof *b);
    b->dx = malloc(t * d * sizeof(float));
    b->xb = malloc(t * d * sizeof(float));
    b->dxb = malloc(t * d * sizeof(float));
    b->dq = malloc(t * qd * sizeof(float));
    b->datt = malloc(t * qd * sizeof(float));
    b->dk_h = malloc(t * qd * sizeof(float));
    b->dv_h = malloc(t * qd * sizeof(float));
    b->dk = malloc(t * kvd * sizeof(float));
    b->dv = malloc(t * kvd * sizeof(float));
    b->h = malloc(t * f * sizeof(float));
    b->dh = malloc(t * f * sizeof(float));
    b->dgate = malloc(t * f * sizeof(float));
    b->dup = malloc(t * f * sizeof(float));
    b->p = malloc(tile * sizeof(float));
    b->dp = malloc(tile * sizeof(float));
    b->row_loss = malloc(t * sizeof(double));
    return b->dx && b->xb && b->dxb && b->dq && b->datt && b->dk_h && b->dv_h && b->dk && b->dv && b->h && b->dh &&
           b->dgate && b->dup && b->p && b->dp && b->row_loss;
}

/* ---- kernels ------------------------------------------------------------ */

/* dx (T, in) = dy (T, out) · W + beta·dx, W row-major (out, in): the input
 * gradient of forward.c's linear(), over fixed tiles of tokens x input features. */
static void linear_backward(const float *dy, int T, int out, const float *W, int in, float *dx, float beta, int nt) {
    int tb = (T + DQ_TILE_TOKENS - 1) / DQ_TILE_TOKENS;
    int fb = (in + DQ_TILE_FEATURES - 1) / DQ_TILE_FEATURES;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (tb * fb > 1 && nt > 1)
    for (int b = 0; b < tb * fb; b++) {
        int t0 = (b / fb) * DQ_TILE_TOKENS, i0 = (b % fb) * DQ_TILE_FEATURES;
        int m = T - t0 < DQ_TILE_TOKENS ? T - t0 : DQ_TILE_TOKENS;
        int k = in - i0 < DQ_TILE_FEATURES ? in - i0 : DQ_TILE_FEATURES;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, k, out, 1.0f, dy + (size_t)t0 * out, out, W + i0,
                    in, beta, dx + (size_t)t0 * in + i0, in);
    }
}

/* dx += ∂/∂x of y = w ⊙ x / rms(x), given dy: with g = w ⊙ dy and
 * r = (mean x² + eps)^-½, dx = r·g − r³·x·(g·x)/n. */
static void rmsnorm_backward(float *dx, const float *x, const float *w, const float *dy, int T, int n, float eps,
                             int nt) {
#pragma omp parallel for num_threads(nt) if (T > 1)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * n, *dyr = dy + (size_t)t * n;
        float *o = dx + (size_t)t * n;
        double ss = 0.0, gx = 0.0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i], gx += (double)w[i] * dyr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / n) + eps);
        float c = (float)(gx / n) * r * r * r;
        for (int i = 0; i < n; i++) o[i] += r * w[i] * dyr[i] - c * xr[i];
    }
}

/* dg, du of h = silu(g)·u: silu'(g) = σ(g)·(1 + g·(1 − σ(g))). */
static void swiglu_backward(float *dg, float *du, const float *dh, const float *g, const float *u, size_t n, int nt) {
#pragma omp parallel for num_threads(nt) if (n > 4096)
    for (size_t i = 0; i < n; i++) {
        float sg = 1.0f / (1.0f + dq_expf(-g[i]));
        du[i] = dh[i] * g[i] * sg;
        dg[i] = dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    }
}

/* The transpose of the forward rotation: RoPE is orthogonal, so its
 * gradient rotates back by the same angle (rows t at position t). */
static void rope_backward(const dq_session *s, float *v, int T, int ld, int n_heads) {
    const dq_config *c = &s->m->cfg;
    int hd = c->head_dim, half = hd / 2;
    for (int t = 0; t < T; t++) {
        const float *cs = s->rope_cos + (size_t)t * half, *sn = s->rope_sin + (size_t)t * half;
        for (int h = 0; h < n_heads; h++) {
            float *r = v + (size_t)t * ld + (size_t)h * hd;
            for (int i = 0; i < half; i++) {
                int a = c->rope_style == DQ_ROPE_HALF ? i : 2 * i;
                int b = c->rope_style == DQ_ROPE_HALF ? i + half : 2 * i + 1;
                float d0 = r[a], d1 = r[b];
                r[a] = d0 * cs[i] + d1 * sn[i];
                r[b] = -d0 * sn[i] + d1 * cs[i];
            }
        }
    }
}

/* Causal softmax of one tile's scores in place: row i (position first+i)
 * sees keys 0..first+i; the rest get probability 0. */
static void causal_softmax(float *p, int ld, int rows, int n_keys, int first) {
    for (int i = 0; i < rows; i++) {
        float *r = p + (size_t)i * ld, mx = -INFINITY, sum = 0.0f;
        int visible = first + i + 1;
        for (int j = 0; j < visible; j++) mx = r[j] > mx ? r[j] : mx;
        for (int j = 0; j < visible; j++) {
            r[j] = dq_expf(r[j] - mx);
            sum += r[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < visible; j++) r[j] *= inv;
        for (int j = visible; j < n_keys; j++) r[j] = 0.0f;
    }
}

/* Attention of block l backward, per query head h (one thread each, in
 * parallel) and tiles of queries: P is recomputed from the kept q and the
 * cached k, then with dP = dO·Vᵀ and dS = P ⊙ (dP − rowsum(P ⊙ dP)):
 * dQ = scale·dS·K, dK_h += scale·dSᵀ·Q, dV_h += Pᵀ·dO. The heads of a KV
 * group are summed afterwards in head order. */
static void attention_backward(const dq_session *s, int l, int T, bwd *b) {
    const dq_config *c = &s->m->cfg;
    int hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, group = c->n_heads / c->n_kv_heads;
    const float *kc = s->key_cache + (size_t)l * s->n_ctx * kvd, *vc = s->val_cache + (size_t)l * s->n_ctx * kvd;
    const float *q = s->acts[l].q;
    float scale = 1.0f / sqrtf((float)hd);
    int tiles = (T + DQ_TILE_TOKENS - 1) / DQ_TILE_TOKENS;
    memset(b->dk_h, 0, (size_t)T * qd * sizeof(float));
    memset(b->dv_h, 0, (size_t)T * qd * sizeof(float));
#pragma omp parallel for num_threads(s->n_threads) schedule(dynamic, 1) if (c->n_heads > 1)
    for (int h = 0; h < c->n_heads; h++) {
        float *p = b->p + (size_t)omp_get_thread_num() * DQ_TILE_TOKENS * T;
        float *dp = b->dp + (size_t)omp_get_thread_num() * DQ_TILE_TOKENS * T;
        const float *k = kc + (size_t)(h / group) * hd, *v = vc + (size_t)(h / group) * hd;
        float *dkh = b->dk_h + (size_t)h * T * hd, *dvh = b->dv_h + (size_t)h * T * hd;
        for (int tt = 0; tt < tiles; tt++) {
            int t0 = tt * DQ_TILE_TOKENS, rows = T - t0 < DQ_TILE_TOKENS ? T - t0 : DQ_TILE_TOKENS;
            int n_keys = t0 + rows;
            const float *qt = q + (size_t)t0 * qd + (size_t)h * hd, *dot = b->datt + (size_t)t0 * qd + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_keys, hd, scale, qt, qd, k, kvd, 0.0f, p, T);
            causal_softmax(p, T, rows, n_keys, t0);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_keys, hd, 1.0f, dot, qd, v, kvd, 0.0f, dp, T);
            for (int i = 0; i < rows; i++) {
                float *pr = p + (size_t)i * T, *dr = dp + (size_t)i * T, dot_i = 0.0f;
                for (int j = 0; j < n_keys; j++) dot_i += pr[j] * dr[j];
                for (int j = 0; j < n_keys; j++) dr[j] = pr[j] * (dr[j] - dot_i);
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n_keys, scale, dp, T, k, kvd, 0.0f,
                        b->dq + (size_t)t0 * qd + (size_t)h * hd, qd);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_keys, hd, rows, scale, dp, T, qt, qd, 1.0f, dkh, hd);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_keys, hd, rows, 1.0f, p, T, dot, qd, 1.0f, dvh, hd);
        }
    }
    for (int t = 0; t < T; t++)
        for (int g = 0; g < c->n_kv_heads; g++)
            for (int i = 0; i < hd; i++) {
                float sk = 0.0f, sv = 0.0f;
                for (int h = g * group; h < (g + 1) * group; h++) {
                    sk += b->dk_h[((size_t)h * T + t) * hd + i];
                    sv += b->dv_h[((size_t)h * T + t) * hd + i];
                }
                b->dk[(size_t)t * kvd + (size_t)g * hd + i] = sk;
                b->dv[(size_t)t * kvd + (size_t)g * hd + i] = sv;
            }
}

/* ---- taps, loss, blocks ---------------------------------------------------- */

static void grad_tap(const dq_grad_taps *taps, const dq_config *c, int layer, dq_site_id id, const float *x,
                     const float *dy, int T) {
    const dq_site *site = &DQ_SITES[id];
    if (!taps || (taps->ask && !taps->ask(taps->ctx, layer, site))) return;
    dq_grad_data g = {.layer = layer, .site = site, .x = x, .dy = dy, .T = T};
    dq_site_shape(site, c, &g.rows, &g.cols);
    taps->fn(taps->ctx, &g);
}

/* log Σ_j exp(r_j) over one row of V logits, in double. */
static double row_lse(const float *r, int V) {
    float mx = -INFINITY;
    for (int j = 0; j < V; j++) mx = r[j] > mx ? r[j] : mx;
    double sum = 0.0;
    for (int j = 0; j < V; j++) sum += exp((double)(r[j] - mx));
    return (double)mx + log(sum);
}

/* Replaces the logits of rows 0..T-2 by ∂ℓ/∂logits for the mean
 * cross-entropy of the next tokens (softmax − one-hot, over T-1), the last
 * row by 0; returns ℓ (summed in row order: thread-count independent). */
static double cross_entropy_backward(float *logits, const int32_t *tokens, int T, int V, double *row_loss, int nt) {
    double inv_n = 1.0 / (T - 1);
#pragma omp parallel for num_threads(nt) if (T > 1)
    for (int t = 0; t < T - 1; t++) {
        float *r = logits + (size_t)t * V;
        double lse = row_lse(r, V);
        row_loss[t] = lse - (double)r[tokens[t + 1]];
        for (int j = 0; j < V; j++) r[j] = (float)(exp((double)r[j] - lse) * inv_n);
        r[tokens[t + 1]] -= (float)inv_n;
    }
    memset(logits + (size_t)(T - 1) * V, 0, (size_t)V * sizeof(float));
    double loss = 0.0;
    for (int t = 0; t < T - 1; t++) loss += row_loss[t];
    return loss * inv_n;
}

/* Replaces the logits of every row by ∂ℓ/∂logits for the mean over rows of
 * KL(softmax(target) ‖ softmax(logits)) (softmax − softmax(target), over T);
 * returns ℓ (summed in row order). */
static double kl_backward(float *logits, const float *target, int T, int V, double *row_loss, int nt) {
    double inv_n = 1.0 / T;
#pragma omp parallel for num_threads(nt) if (T > 1)
    for (int t = 0; t < T; t++) {
        float *r = logits + (size_t)t * V;
        const float *a = target + (size_t)t * V;
        double lse_q = row_lse(r, V), lse_p = row_lse(a, V);
        double kl = 0.0;
        for (int j = 0; j < V; j++) {
            double lp = (double)a[j] - lse_p, lq = (double)r[j] - lse_q, p = exp(lp);
            kl += p * (lp - lq);
            r[j] = (float)((exp(lq) - p) * inv_n);
        }
        row_loss[t] = kl;
    }
    double loss = 0.0;
    for (int t = 0; t < T; t++) loss += row_loss[t];
    return loss * inv_n;
}

/* b->dx: ∂ℓ/∂(block l's output) in, ∂ℓ/∂(its input) out. */
static void block_backward(dq_session *s, int l, int T, const dq_grad_taps *taps, bwd *b) {
    const dq_config *c = &s->m->cfg;
    const dq_layer *w = &s->m->layers[l];
    const dq_block_acts *a = &s->acts[l];
    int d = c->dim, f = c->hidden_dim, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int nt = s->n_threads;
    size_t Tf = (size_t)T * f;

    /* x_out = x_mid + down(silu(gate(xb))·up(xb)), xb = ffn_norm(x_mid) */
    dq_rmsnorm_rows(b->xb, a->x_mid, w->ffn_norm, T, d, c->norm_eps, nt);
    dq_swiglu(b->h, a->gate, a->up, Tf, nt);
    grad_tap(taps, c, l, DQ_SITE_DOWN, b->h, b->dx, T);
    linear_backward(b->dx, T, d, w->w_down, f, b->dh, 0.0f, nt);
    swiglu_backward(b->dgate, b->dup, b->dh, a->gate, a->up, Tf, nt);
    grad_tap(taps, c, l, DQ_SITE_GATE, b->xb, b->dgate, T);
    grad_tap(taps, c, l, DQ_SITE_UP, b->xb, b->dup, T);
    linear_backward(b->dgate, T, f, w->w_gate, d, b->dxb, 0.0f, nt);
    linear_backward(b->dup, T, f, w->w_up, d, b->dxb, 1.0f, nt);
    rmsnorm_backward(b->dx, a->x_mid, w->ffn_norm, b->dxb, T, d, c->norm_eps, nt);

    /* x_mid = x_in + o(attention(rope(q(xb)), rope(k(xb)), v(xb))), xb = attn_norm(x_in) */
    grad_tap(taps, c, l, DQ_SITE_O, a->att, b->dx, T);
    linear_backward(b->dx, T, d, w->wo, qd, b->datt, 0.0f, nt);
    attention_backward(s, l, T, b);
    rope_backward(s, b->dq, T, qd, c->n_heads);
    rope_backward(s, b->dk, T, kvd, c->n_kv_heads);
    dq_rmsnorm_rows(b->xb, a->x_in, w->attn_norm, T, d, c->norm_eps, nt);
    grad_tap(taps, c, l, DQ_SITE_Q, b->xb, b->dq, T);
    grad_tap(taps, c, l, DQ_SITE_K, b->xb, b->dk, T);
    grad_tap(taps, c, l, DQ_SITE_V, b->xb, b->dv, T);
    linear_backward(b->dq, T, qd, w->wq, d, b->dxb, 0.0f, nt);
    linear_backward(b->dk, T, kvd, w->wk, d, b->dxb, 1.0f, nt);
    linear_backward(b->dv, T, kvd, w->wv, d, b->dxb, 1.0f, nt);
    rmsnorm_backward(b->dx, a->x_in, w->attn_norm, b->dxb, T, d, c->norm_eps, nt);
}

static dq_status check_window(const dq_session *s, int n, bool backward, dq_error *err) {
    const dq_model *m = s->m;
    if (backward && !s->acts)
        return dq_fail(err, DQ_ERR_ARG, "%s: backward pass on a session that keeps no activations", m->path);
    if (n < 2)
        return dq_fail(err, DQ_ERR_ARG, "%s: %s needs at least 2 tokens, got %d", m->path,
                       backward ? "a backward pass" : "a window's loss", n);
    return DQ_OK;
}

/* *loss of the window's logits (the session's, overwritten by its gradient);
 * a non-finite one is DQ_ERR_NUMERIC. */
static dq_status loss_and_gradient(dq_session *s, const int32_t *tokens, int n, const float *target, double *row_loss,
                                   double *loss, dq_error *err) {
    int V = s->m->cfg.vocab_size, nt = s->n_threads;
    *loss = target ? kl_backward(s->logits, target, n, V, row_loss, nt)
                   : cross_entropy_backward(s->logits, tokens, n, V, row_loss, nt);
    if (isfinite(*loss)) return DQ_OK;
    return dq_fail(err, DQ_ERR_NUMERIC, "%s: %s of the window is not finite", s->m->path,
                   target ? "KL divergence" : "cross-entropy");
}

/* The loss of the session's logits and b->dx = ∂ℓ/∂(the last block's
 * output), through the head and the final norm (s->x_final: its input). */
static dq_status head_backward(dq_session *s, const int32_t *tokens, int n, const float *target,
                               const dq_grad_taps *taps, bwd *b, double *loss, dq_error *err) {
    const dq_model *m = s->m;
    const dq_config *c = &m->cfg;
    int d = c->dim, V = c->vocab_size, nt = s->n_threads;
    dq_status st = loss_and_gradient(s, tokens, n, target, b->row_loss, loss, err);
    if (st) return st;
    dq_rmsnorm_rows(b->xb, s->x_final, m->final_norm, n, d, c->norm_eps, nt);
    grad_tap(taps, c, -1, DQ_SITE_OUTPUT, b->xb, s->logits, n);
    linear_backward(s->logits, n, V, m->output, d, b->dxb, 0.0f, nt);
    memset(b->dx, 0, (size_t)n * d * sizeof(float));
    rmsnorm_backward(b->dx, s->x_final, m->final_norm, b->dxb, n, d, c->norm_eps, nt);
    return DQ_OK;
}

static dq_status block_backward_checked(dq_session *s, int layer, int n, const dq_grad_taps *taps, bwd *b,
                                        dq_error *err) {
    block_backward(s, layer, n, taps, b);
    if (dq_any_nonfinite(b->dx, (size_t)n * s->m->cfg.dim))
        return dq_fail(err, DQ_ERR_NUMERIC, "%s: blk.%d: non-finite gradient (fp32 overflow)", s->m->path, layer);
    return DQ_OK;
}

static dq_status backward(dq_session *s, const int32_t *tokens, int n, const float *target, const dq_grad_taps *taps,
                          double *loss, dq_error *err) {
    const dq_model *m = s->m;
    const dq_config *c = &m->cfg;
    dq_status st = check_window(s, n, true, err);
    if (!st && s->acts_one_block && c->n_layers > 1)
        st = dq_fail(err, DQ_ERR_ARG, "%s: whole-model backward pass on a session that keeps one block's activations",
                     m->path);
    const float *logits;
    if (!st) st = dq_forward(s, tokens, n, 0, true, &logits, err);
    if (st) return st;
    bwd b;
    if (!bwd_alloc(&b, c, n, s->n_threads)) {
        bwd_free(&b);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory for a backward pass over %d tokens", m->path, n);
    }
    openblas_set_num_threads(1);
    double l;
    st = head_backward(s, tokens, n, target, taps, &b, &l, err);
    for (int layer = c->n_layers - 1; layer >= 0 && !st; layer--) st = block_backward_checked(s, layer, n, taps, &b, err);
    if (!st && taps && taps->d_embed) memcpy(taps->d_embed, b.dx, (size_t)n * c->dim * sizeof(float));
    bwd_free(&b);
    if (!st) *loss = l;
    return st;
}

dq_status dq_loss_backward(dq_session *s, const int32_t *tokens, int n, const dq_grad_taps *taps, double *loss,
                           dq_error *err) {
    return backward(s, tokens, n, NULL, taps, loss, err);
}

dq_status dq_kl_backward(dq_session *s, const int32_t *tokens, int n, const float *target, const dq_grad_taps *taps,
                         double *loss, dq_error *err) {
    return backward(s, tokens, n, target, taps, loss, err);
}

dq_status dq_window_loss(dq_session *s, const int32_t *tokens, int n, const float *target, double *loss,
                         dq_error *err) {
    dq_status st = check_window(s, n, false, err);
    const float *logits;
    if (!st) st = dq_forward(s, tokens, n, 0, true, &logits, err);
    double *row = st ? NULL : malloc((size_t)n * sizeof *row);
    if (!st && !row) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory for a window's loss");
    if (!st) st = loss_and_gradient(s, tokens, n, target, row, loss, err);
    free(row);
    return st;
}

/* ---- one piece at a time (a model streamed block by block) ---------------- */

struct dq_backward {
    dq_session *s;
    int T;
    bwd b;
};

dq_status dq_backward_new(dq_session *s, int T, dq_backward **out, dq_error *err) {
    dq_status st = check_window(s, T, true, err);
    if (st) return st;
    dq_backward *k = calloc(1, sizeof *k);
    if (!k || !bwd_alloc(&k->b, &s->m->cfg, T, s->n_threads)) {
        if (k) bwd_free(&k->b);
        free(k);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory for a backward pass over %d tokens", s->m->path, T);
    }
    k->s = s, k->T = T;
    *out = k;
    return DQ_OK;
}

void dq_backward_free(dq_backward *k) {
    if (!k) return;
    bwd_free(&k->b);
    free(k);
}

float *dq_backward_dx(dq_backward *k) { return k->b.dx; }

dq_status dq_backward_head(dq_backward *k, const int32_t *tokens, const dq_grad_taps *taps, double *loss,
                           dq_error *err) {
    openblas_set_num_threads(1);
    return head_backward(k->s, tokens, k->T, NULL, taps, &k->b, loss, err);
}

dq_status dq_backward_block(dq_backward *k, int layer, const dq_grad_taps *taps, dq_error *err) {
    openblas_set_num_threads(1);
    return block_backward_checked(k->s, layer, k->T, taps, &k->b, err);
}
