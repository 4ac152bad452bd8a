/* Llama-family forward pass in fp32, batched over a sequence of T tokens:
 * every linear layer is one sgemm, attention is a per-(head, query) kernel
 * parallelised with OpenMP, and K/V rows go straight into the cache. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/forward.h"
#include "model/backward.h"
#include "model/session.h"
#include "util/error.h"
#include "util/fastmath.h"
#include "util/half.h"
#include "util/threads.h"

/* Inverse frequency of RoPE pair i, with Llama-3 / linear context scaling
 * (or the per-pair divisors a GGUF file carries). */
static double rope_inv_freq(const dq_model *m, int i) {
    const dq_config *c = &m->cfg;
    double f = 1.0 / pow((double)c->rope_theta, (2.0 * i) / (double)c->head_dim);
    if (m->rope_freq_factors) return f / m->rope_freq_factors[i];
    return f / dq_rope_freq_divisor(c, f);
}

static void rope_tables(dq_session *s) {
    const dq_config *c = &s->m->cfg;
    int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        /* fp32 angle, as the reference implementations compute it */
        float inv = (float)rope_inv_freq(s->m, i);
        for (int p = 0; p < s->n_ctx; p++) {
            float a = (float)p * inv;
            s->rope_cos[(size_t)p * half + i] = cosf(a);
            s->rope_sin[(size_t)p * half + i] = sinf(a);
        }
    }
}

static void *xcalloc(size_t n, size_t size, bool *ok) {
    void *p = calloc(n ? n : 1, size);
    if (!p) *ok = false;
    return p;
}

dq_status dq_session_new(const dq_model *m, int n_ctx, int n_batch, int n_threads,
                         dq_session **out, dq_error *err) {
    *out = NULL;
    const dq_config *c = &m->cfg;
    if (n_ctx <= 0 || n_ctx > (1 << 20) || n_batch <= 0 || n_batch > n_ctx)
        return dq_fail(err, DQ_ERR_ARG, "%s: bad context %d / batch %d", m->path, n_ctx, n_batch);
    n_threads = dq_threads_or_default(n_threads);
    dq_session *s = calloc(1, sizeof *s);
    if (!s) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx;
    s->n_batch = n_batch;
    s->n_threads = n_threads;
    size_t B = (size_t)n_batch, qd = (size_t)c->n_heads * c->head_dim;
    size_t kvd = (size_t)c->n_kv_heads * c->head_dim;
    size_t cache = (size_t)c->n_layers * (size_t)n_ctx * kvd;
    bool ok = true;
    s->x = xcalloc(B * c->dim, sizeof(float), &ok);
    s->xb = xcalloc(B * c->dim, sizeof(float), &ok);
    s->q = xcalloc(B * qd, sizeof(float), &ok);
    s->att = xcalloc(B * qd, sizeof(float), &ok);
    s->hb = xcalloc(B * c->hidden_dim, sizeof(float), &ok);
    s->hb2 = xcalloc(B * c->hidden_dim, sizeof(float), &ok);
    s->hb3 = xcalloc(B * c->hidden_dim, sizeof(float), &ok);
    s->scores = xcalloc((size_t)n_threads * DQ_TILE_TOKENS * n_ctx, sizeof(float), &ok);
    s->key_cache = xcalloc(cache, sizeof(float), &ok);
    s->val_cache = xcalloc(cache, sizeof(float), &ok);
    s->rope_cos = xcalloc((size_t)n_ctx * c->head_dim / 2, sizeof(float), &ok);
    s->rope_sin = xcalloc((size_t)n_ctx * c->head_dim / 2, sizeof(float), &ok);
    s->logits = xcalloc(B * c->vocab_size, sizeof(float), &ok);
    s->row_pos = xcalloc(B, sizeof(int), &ok);
    s->row_start = xcalloc(B, sizeof(int), &ok);
    if (!ok) {
        dq_session_free(s);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate activations for context %d", m->path,
                       n_ctx);
    }
    rope_tables(s);
    *out = s;
    return DQ_OK;
}

void dq_session_free(dq_session *s) {
    if (!s) return;
    float *bufs[] = {s->x,         s->xb,        s->q,        s->att,      s->hb,      s->hb2,
                     s->hb3,       s->scores,    s->key_cache, s->val_cache, s->rope_cos, s->rope_sin, s->logits};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(s->row_pos);
    free(s->row_start);
    free(s->acts);
    free(s->acts_buf);
    free(s->x_final);
    free(s);
}

dq_status dq_session_keep_activations(dq_session *s, dq_keep_acts keep, dq_error *err) {
    if (s->acts) return DQ_OK;
    const dq_config *c = &s->m->cfg;
    size_t B = (size_t)s->n_batch, d = (size_t)c->dim, qd = (size_t)c->n_heads * c->head_dim;
    size_t f = (size_t)c->hidden_dim, per_block = B * (2 * d + 2 * qd + 2 * f), total;
    size_t slots = keep == DQ_ACTS_ONE_BLOCK ? 1 : (size_t)c->n_layers;
    if (!dq_mul_size(per_block, slots, &total) || !dq_mul_size(total, sizeof(float), &total) ||
        !(s->acts = calloc((size_t)c->n_layers, sizeof *s->acts)) || !(s->acts_buf = malloc(total)) ||
        !(s->x_final = malloc(B * d * sizeof(float)))) {
        free(s->acts);
        free(s->acts_buf);
        s->acts = NULL, s->acts_buf = NULL;
        return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot keep activations of %d layers x %d tokens for a backward pass",
                       s->m->path, c->n_layers, s->n_batch);
    }
    s->acts_one_block = slots == 1;
    for (int l = 0; l < c->n_layers; l++) {
        float *p = s->acts_buf + (size_t)l % slots * per_block; /* one slot: every block writes the same one */
        dq_block_acts *a = &s->acts[l];
        a->x_in = p, p += B * d;
        a->x_mid = p, p += B * d;
        a->q = p, p += B * qd;
        a->att = p, p += B * qd;
        a->gate = p, p += B * f;
        a->up = p;
    }
    return DQ_OK;
}

/* dst = src (n floats) when the session keeps activations (dst non-NULL). */
static void keep(float *dst, const float *src, size_t n) {
    if (dst) memcpy(dst, src, n * sizeof(float));
}

/* y (T, out; row stride ldy) = x (T, in) · Wᵀ + beta·y, with W row-major (out, in). */
static void linear(const float *x, int T, int in, const float *W, int out, float *y, int ldy,
                   float beta, int nt) {
    int tb = (T + DQ_TILE_TOKENS - 1) / DQ_TILE_TOKENS;
    int fb = (out + DQ_TILE_FEATURES - 1) / DQ_TILE_FEATURES;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (tb * fb > 1 && nt > 1)
    for (int b = 0; b < tb * fb; b++) {
        int t0 = (b / fb) * DQ_TILE_TOKENS, o0 = (b % fb) * DQ_TILE_FEATURES;
        int m = T - t0 < DQ_TILE_TOKENS ? T - t0 : DQ_TILE_TOKENS;
        int n = out - o0 < DQ_TILE_FEATURES ? out - o0 : DQ_TILE_FEATURES;
        const float *Wb = W + (size_t)o0 * in, *xb = x + (size_t)t0 * in;
        float *yb = y + (size_t)t0 * ldy + o0;
        if (m == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, n, in, 1.0f, Wb, in, xb, 1, beta, yb, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, in, 1.0f, xb, in, Wb, in, beta,
                        yb, ldy);
    }
}

static void add_bias(float *y, int T, int n, int ld, const float *b) {
    if (!b) return;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) y[(size_t)t * ld + i] += b[i];
}

static void rmsnorm_rows(float *out, const float *x, const float *w, int T, int n, float eps,
                         int nt) {
#pragma omp parallel for num_threads(nt) if (T > 1)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * n;
        float *o = out + (size_t)t * n;
        double ss = 0.0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float r = 1.0f / sqrtf((float)(ss / n) + eps);
        for (int i = 0; i < n; i++) o[i] = w[i] * (r * xr[i]);
    }
}

/* Rotates T rows of n_heads heads; row t sits at position row_pos[t]. */
static void rope_rows(const dq_session *s, float *v, int T, int ld, int n_heads) {
    const dq_config *c = &s->m->cfg;
    int hd = c->head_dim, half = hd / 2;
    for (int t = 0; t < T; t++) {
        const float *cs = s->rope_cos + (size_t)s->row_pos[t] * half;
        const float *sn = s->rope_sin + (size_t)s->row_pos[t] * half;
        for (int h = 0; h < n_heads; h++) {
            float *r = v + (size_t)t * ld + (size_t)h * hd;
            for (int i = 0; i < half; i++) {
                /* interleaved pairs (2i, 2i+1) or rotate-half pairs (i, i+half) */
                int a = c->rope_style == DQ_ROPE_HALF ? i : 2 * i;
                int b = c->rope_style == DQ_ROPE_HALF ? i + half : 2 * i + 1;
                float x0 = r[a], x1 = r[b];
                r[a] = x0 * cs[i] - x1 * sn[i];
                r[b] = x0 * sn[i] + x1 * cs[i];
            }
        }
    }
}

/* Causal softmax numerators of one tile's scores: row i (slot first+i) sees
 * keys [0, prefix) and [start[i], first+i]; the others get 0. Returns nothing
 * normalised: inv_sum[i] receives 1/Σ so the (smaller) PV product is scaled. */
static void masked_softmax(float *sc, int ld, int rows, int n_keys, int first, int prefix, const int *start,
                           float *inv_sum) {
    for (int i = 0; i < rows; i++) {
        float *r = sc + (size_t)i * ld, mx = -INFINITY, sum = 0.0f;
        int lo = start[i], visible = first + i + 1;
        for (int j = prefix; j < lo; j++) r[j] = 0.0f; /* other branches */
        for (int j = 0; j < prefix; j++) mx = r[j] > mx ? r[j] : mx;
        for (int j = lo; j < visible; j++) mx = r[j] > mx ? r[j] : mx;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < prefix; j++) {
            r[j] = dq_expf(r[j] - mx);
            sum += r[j];
        }
#pragma omp simd reduction(+ : sum)
        for (int j = lo; j < visible; j++) {
            r[j] = dq_expf(r[j] - mx);
            sum += r[j];
        }
        inv_sum[i] = 1.0f / sum;
        for (int j = visible; j < n_keys; j++) r[j] = 0.0f;
    }
}

/* Attention in tiles of (head, DQ_TILE_TOKENS queries): S = Q Kᵀ and O = P V
 * are sgemms over the cached keys; the tiling is fixed, so results do not
 * depend on the thread count. */
static void attention(dq_session *s, int layer, int T, int pos) {
    const dq_config *c = &s->m->cfg;
    int hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    int group = c->n_heads / c->n_kv_heads;
    const float *kc = s->key_cache + (size_t)layer * s->n_ctx * kvd;
    const float *vc = s->val_cache + (size_t)layer * s->n_ctx * kvd;
    float scale = 1.0f / sqrtf((float)hd);
    int tiles = (T + DQ_TILE_TOKENS - 1) / DQ_TILE_TOKENS, work = tiles * c->n_heads;
#pragma omp parallel for num_threads(s->n_threads) schedule(dynamic, 1) if (work > 1)
    for (int w = 0; w < work; w++) {
        int h = w % c->n_heads, t0 = (w / c->n_heads) * DQ_TILE_TOKENS;
        int rows = T - t0 < DQ_TILE_TOKENS ? T - t0 : DQ_TILE_TOKENS;
        int n_keys = pos + t0 + rows;
        float *sc = s->scores + (size_t)omp_get_thread_num() * DQ_TILE_TOKENS * s->n_ctx;
        const float *q = s->q + (size_t)t0 * qd + (size_t)h * hd;
        size_t koff = (size_t)(h / group) * hd;
        float *o = s->att + (size_t)t0 * qd + (size_t)h * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_keys, hd, scale, q, qd, kc + koff,
                    kvd, 0.0f, sc, s->n_ctx);
        float inv_sum[DQ_TILE_TOKENS];
        masked_softmax(sc, s->n_ctx, rows, n_keys, pos + t0, s->prefix, s->row_start + t0, inv_sum);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, n_keys, 1.0f, sc, s->n_ctx,
                    vc + koff, kvd, 0.0f, o, qd);
        for (int i = 0; i < rows; i++)
            for (int k = 0; k < hd; k++) o[(size_t)i * qd + k] *= inv_sum[i];
    }
}

/* h = silu(g)·u into its own buffer: the gate's pre-activation g and u stay
 * for a backward pass (d silu(g)/dg needs g). */
static void swiglu(float *h, const float *g, const float *u, size_t n, int nt) {
#pragma omp parallel for num_threads(nt) if (n > 4096)
    for (size_t i = 0; i < n; i++) h[i] = g[i] / (1.0f + dq_expf(-g[i])) * u[i];
}

dq_tap_data dq_tap_make(int layer, dq_tap tap, const float *x, int T, int cols) {
    dq_tap_data d = {.layer = layer, .tap = tap, .x = x, .T = T, .cols = cols};
    for (int i = 0; i < DQ_SITE_COUNT; i++)
        if (DQ_SITES[i].role == DQ_SITE_LINEAR && DQ_SITES[i].tap == tap && d.n_sites < DQ_TAP_MAX_SITES)
            d.sites[d.n_sites++] = &DQ_SITES[i];
    return d;
}

/* The activation quantization of cfg (act_bits, act_group), in place on T
 * rows of n: symmetric, scale = max|x|/(2^(bits-1) − 1) per row or group,
 * x ← round(x/scale)·scale. A group scale is rounded to fp16 first, as
 * llama.cpp's quantize_row_q8_0 stores it. Rounding is to nearest-even
 * (rintf), ggml's roundf rounds halves away: they differ on exact halves only. */
static void act_quant(float *x, int T, int n, const dq_config *c, int nt) {
    if (!c->act_bits) return;
    int g = c->act_group > 0 ? c->act_group : n;
    float qmax = (float)((1 << (c->act_bits - 1)) - 1);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < T; t++)
        for (int c0 = 0; c0 < n; c0 += g) {
            float *v = x + (size_t)t * n + c0, amax = 0;
            int len = n - c0 < g ? n - c0 : g;
            for (int j = 0; j < len; j++) amax = fmaxf(amax, fabsf(v[j]));
            float d = amax / qmax;
            if (c->act_group > 0) d = dq_f16_to_f32(dq_f32_to_f16(d));
            if (d == 0) continue;
            for (int j = 0; j < len; j++) v[j] = rintf(v[j] / d) * d;
        }
}

static void tap(const dq_taps *t, int layer, dq_tap which, const float *x, int T, int cols) {
    if (!t || (t->ask && !t->ask(t->ctx, layer, which))) return;
    dq_tap_data d = dq_tap_make(layer, which, x, T, cols);
    t->fn(t->ctx, &d);
}

/* The first row of x (T, ld; n columns) holding a non-finite value, or -1. */
static int first_bad_row(const float *x, int T, int n, int ld) {
    for (int t = 0; t < T; t++)
        if (dq_any_nonfinite(x + (size_t)t * ld, (size_t)n)) return t;
    return -1;
}

/* One intermediate of a sub-layer: the tensor whose output it is (a site's GGUF stem). */
typedef struct {
    const char *tensor;
    const float *y;
    int n, ld;
} stage;

/* The residual stream went non-finite after a sub-layer: finds the first row
 * that did and, walking the sub-layer's intermediates in the order they were
 * computed, the first tensor whose output is non-finite in that row (the
 * last stage, the residual itself, always is). Runs only on failure, so the
 * forward pass pays for nothing but the check of x. */
static dq_status nonfinite(const dq_session *s, int l, int T, const stage *st, int n_st, dq_error *err) {
    const dq_config *c = &s->m->cfg;
    int t = first_bad_row(s->x, T, c->dim, c->dim), k = 0;
    if (t < 0) t = 0;
    while (k < n_st - 1 && !dq_any_nonfinite(st[k].y + (size_t)t * st[k].ld, (size_t)st[k].n)) k++;
    return dq_fail(err, DQ_ERR_NUMERIC,
                   "%s: blk.%d.%s: non-finite output at position %d (fp32 overflow: weights or activations "
                   "too large)",
                   s->m->path, l, st[k].tensor, s->row_pos[t]);
}

static const char *site_name(dq_site_id id) { return DQ_SITES[id].gguf; }

/* One transformer block on T rows of s->x. The taps it shows are the ones
 * DQ_SITES gives its linears (test_sites checks the two agree); the weights
 * are read by name, so the block reads top to bottom like the math. */
static dq_status block(dq_session *s, int l, int T, int pos, const dq_taps *taps, dq_error *err) {
    const dq_config *c = &s->m->cfg;
    const dq_layer *w = &s->m->layers[l];
    int d = c->dim, f = c->hidden_dim, qd = c->n_heads * c->head_dim;
    int kvd = c->n_kv_heads * c->head_dim, nt = s->n_threads;
    float *kc = s->key_cache + ((size_t)l * s->n_ctx + pos) * kvd;
    float *vc = s->val_cache + ((size_t)l * s->n_ctx + pos) * kvd;
    dq_block_acts none = {0}, *a = s->acts ? &s->acts[l] : &none;
    if (!dq_model_block_ready(s->m, l))
        return dq_fail(err, DQ_ERR_ARG, "%s: block %d's weights are not loaded: the model was opened for streaming "
                       "quantization, which releases each block once it is written; load it again", s->m->path, l);

    keep(a->x_in, s->x, (size_t)T * d);
    rmsnorm_rows(s->xb, s->x, w->attn_norm, T, d, c->norm_eps, nt);
    act_quant(s->xb, T, d, c, nt);
    tap(taps, l, DQ_TAP_ATTN_IN, s->xb, T, d);
    linear(s->xb, T, d, w->wq, qd, s->q, qd, 0.0f, nt);
    linear(s->xb, T, d, w->wk, kvd, kc, kvd, 0.0f, nt);
    linear(s->xb, T, d, w->wv, kvd, vc, kvd, 0.0f, nt);
    add_bias(s->q, T, qd, qd, w->bq);
    add_bias(kc, T, kvd, kvd, w->bk);
    add_bias(vc, T, kvd, kvd, w->bv);
    rope_rows(s, s->q, T, qd, c->n_heads);
    rope_rows(s, kc, T, kvd, c->n_kv_heads);
    keep(a->q, s->q, (size_t)T * qd);
    attention(s, l, T, pos);
    act_quant(s->att, T, qd, c, nt);
    keep(a->att, s->att, (size_t)T * qd);
    tap(taps, l, DQ_TAP_ATTN_OUT, s->att, T, qd);
    linear(s->att, T, qd, w->wo, d, s->x, d, 1.0f, nt); /* residual: x += att·Woᵀ */
    if (dq_any_nonfinite(s->x, (size_t)T * d)) {
        const stage st[] = {{site_name(DQ_SITE_ATTN_NORM), s->xb, d, d}, {site_name(DQ_SITE_Q), s->q, qd, qd},
                            {site_name(DQ_SITE_K), kc, kvd, kvd},          {site_name(DQ_SITE_V), vc, kvd, kvd},
                            {"attention", s->att, qd, qd},                  {site_name(DQ_SITE_O), s->x, d, d}};
        return nonfinite(s, l, T, st, 6, err);
    }

    keep(a->x_mid, s->x, (size_t)T * d);
    rmsnorm_rows(s->xb, s->x, w->ffn_norm, T, d, c->norm_eps, nt);
    act_quant(s->xb, T, d, c, nt);
    tap(taps, l, DQ_TAP_FFN_IN, s->xb, T, d);
    linear(s->xb, T, d, w->w_gate, f, s->hb, f, 0.0f, nt);
    linear(s->xb, T, d, w->w_up, f, s->hb2, f, 0.0f, nt);
    keep(a->gate, s->hb, (size_t)T * f);
    keep(a->up, s->hb2, (size_t)T * f);
    swiglu(s->hb3, s->hb, s->hb2, (size_t)T * f, nt);
    act_quant(s->hb3, T, f, c, nt);
    tap(taps, l, DQ_TAP_FFN_HIDDEN, s->hb3, T, f);
    linear(s->hb3, T, f, w->w_down, d, s->x, d, 1.0f, nt); /* residual: x += ffn */
    if (dq_any_nonfinite(s->x, (size_t)T * d)) {
        /* hb3 = silu(gate)·up: non-finite with gate and up finite is the gate's product overflowing */
        const stage st[] = {{site_name(DQ_SITE_FFN_NORM), s->xb, d, d}, {site_name(DQ_SITE_GATE), s->hb, f, f},
                            {site_name(DQ_SITE_UP), s->hb2, f, f},          {site_name(DQ_SITE_GATE), s->hb3, f, f},
                            {site_name(DQ_SITE_DOWN), s->x, d, d}};
        return nonfinite(s, l, T, st, 5, err);
    }
    return DQ_OK;
}

/* A plain sequence: row t at slot and position pos+t, seeing everything before. */
static void sequence_layout(dq_session *s, int n, int pos) {
    s->prefix = pos;
    for (int t = 0; t < n; t++) s->row_pos[t] = pos + t, s->row_start[t] = pos;
}

dq_status dq_check_token_ids(const dq_config *c, const int32_t *tokens, size_t n, dq_error *err) {
    for (size_t t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return dq_fail(err, DQ_ERR_ARG, "forward: token id %d out of range [0, %d)", tokens[t], c->vocab_size);
    return DQ_OK;
}

static dq_status check_tokens(const dq_session *s, const int32_t *tokens, int n, int slots_from, dq_error *err) {
    const dq_config *c = &s->m->cfg;
    if (n <= 0 || n > s->n_batch)
        return dq_fail(err, DQ_ERR_ARG, "forward: %d tokens, batch holds 1..%d", n, s->n_batch);
    if (slots_from < 0 || slots_from + n > s->n_ctx)
        return dq_fail(err, DQ_ERR_ARG, "forward: positions %d..%d exceed the context of %d", slots_from,
                       slots_from + n - 1, s->n_ctx);
    return dq_check_token_ids(c, tokens, (size_t)n, err);
}

static dq_status head_logits(dq_session *s, int first, int rows, dq_error *err);

/* Embeds, runs every block with the session's layout, and computes the
 * logits of rows [first, n). */
static dq_status run_batch(dq_session *s, const int32_t *tokens, int n, int pos, int first, dq_error *err) {
    const dq_config *c = &s->m->cfg;
    openblas_set_num_threads(1); /* we thread across BLAS calls, not inside them */
    for (int t = 0; t < n; t++)
        memcpy(s->x + (size_t)t * c->dim, s->m->tok_embeddings + (size_t)tokens[t] * c->dim,
               (size_t)c->dim * sizeof(float));
    for (int l = 0; l < c->n_layers; l++) {
        dq_status st = block(s, l, n, pos, NULL, err);
        if (st) return st;
    }
    return head_logits(s, first, n - first, err);
}

/* The logits of rows [first, first + rows) of the last block's output s->x
 * (kept as x_final when the session keeps activations). */
static dq_status head_logits(dq_session *s, int first, int rows, dq_error *err) {
    const dq_config *c = &s->m->cfg;
    if (!s->m->output)
        return dq_fail(err, DQ_ERR_ARG, "%s: the output head is not loaded: the model was opened for streaming "
                       "quantization; load it again", s->m->path);
    float *xr = s->x + (size_t)first * c->dim;
    keep(s->x_final ? s->x_final + (size_t)first * c->dim : NULL, xr, (size_t)rows * c->dim);
    rmsnorm_rows(s->xb, xr, s->m->final_norm, rows, c->dim, c->norm_eps, s->n_threads);
    act_quant(s->xb, rows, c->dim, c, s->n_threads);
    linear(s->xb, rows, c->dim, s->m->output, c->vocab_size, s->logits, c->vocab_size, 0.0f, s->n_threads);
    /* O(vocab) per row against the head's O(vocab·dim) */
    int t = first_bad_row(s->logits, rows, c->vocab_size, c->vocab_size);
    if (t >= 0)
        return dq_fail(err, DQ_ERR_NUMERIC,
                       "%s: %s: non-finite output at position %d (fp32 overflow: weights or activations too large)",
                       s->m->path,
                       site_name(first_bad_row(s->xb + (size_t)t * c->dim, 1, c->dim, c->dim) == 0 ? DQ_SITE_OUTPUT_NORM
                                                                                                  : DQ_SITE_OUTPUT),
                       s->row_pos[first + t]);
    return DQ_OK;
}

dq_status dq_forward(dq_session *s, const int32_t *tokens, int n, int pos, bool all_logits,
                     const float **logits, dq_error *err) {
    dq_status st = check_tokens(s, tokens, n, pos, err);
    if (st) return st;
    sequence_layout(s, n, pos);
    if ((st = run_batch(s, tokens, n, pos, all_logits ? 0 : n - 1, err))) return st;
    *logits = s->logits;
    return DQ_OK;
}

dq_status dq_forward_branches(dq_session *s, const int32_t *tokens, const int *lens, int n_branches, int pos,
                              const float **logits, dq_error *err) {
    int n = 0;
    for (int b = 0; b < n_branches; b++) {
        if (lens[b] <= 0 || lens[b] > s->n_batch)
            return dq_fail(err, DQ_ERR_ARG, "forward: branch %d has %d tokens", b, lens[b]);
        n += lens[b];
    }
    dq_status st =
        n_branches > 0 && n <= s->n_batch
            ? check_tokens(s, tokens, n, pos, err)
            : dq_fail(err, DQ_ERR_ARG, "forward: %d branches, %d tokens (batch %d)", n_branches, n, s->n_batch);
    if (st) return st;
    s->prefix = pos;
    for (int b = 0, t = 0; b < n_branches; b++)
        for (int k = 0, start = pos + t; k < lens[b]; k++, t++) s->row_pos[t] = pos + k, s->row_start[t] = start;
    if ((st = run_batch(s, tokens, n, pos, 0, err))) return st;
    *logits = s->logits;
    return DQ_OK;
}

dq_status dq_block_forward(dq_session *s, int layer, float *x, int T, const dq_taps *taps, dq_error *err) {
    const dq_config *c = &s->m->cfg;
    if (T <= 0 || T > s->n_batch || layer < 0 || layer >= c->n_layers)
        return dq_fail(err, DQ_ERR_ARG, "block forward: %d tokens (batch %d), layer %d", T, s->n_batch, layer);
    openblas_set_num_threads(1);
    memcpy(s->x, x, (size_t)T * c->dim * sizeof(float));
    sequence_layout(s, T, 0);
    dq_status st = block(s, layer, T, 0, taps, err);
    if (!st) memcpy(x, s->x, (size_t)T * c->dim * sizeof(float));
    return st;
}

dq_status dq_head_forward(dq_session *s, const float *x, int T, dq_error *err) {
    const dq_config *c = &s->m->cfg;
    if (T <= 0 || T > s->n_batch) return dq_fail(err, DQ_ERR_ARG, "head forward: %d tokens (batch %d)", T, s->n_batch);
    openblas_set_num_threads(1);
    memcpy(s->x, x, (size_t)T * c->dim * sizeof(float));
    sequence_layout(s, T, 0);
    return head_logits(s, 0, T, err);
}

void dq_final_norm(const dq_model *m, const float *x, float *out, int T, int n_threads) {
    rmsnorm_rows(out, x, m->final_norm, T, m->cfg.dim, m->cfg.norm_eps, n_threads);
    act_quant(out, T, m->cfg.dim, &m->cfg, n_threads);
}

void dq_rmsnorm_rows(float *out, const float *x, const float *w, int T, int n, float eps, int nt) {
    rmsnorm_rows(out, x, w, T, n, eps, nt);
}

void dq_swiglu(float *h, const float *g, const float *u, size_t n, int nt) { swiglu(h, g, u, n, nt); }

const float *dq_session_logits(const dq_session *s) { return s->logits; }

int dq_session_threads(const dq_session *s) { return s->n_threads; }
