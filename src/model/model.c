#define _POSIX_C_SOURCE 200809L /* strdup */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/half.h"
#include "model/sites.h"

size_t dq_dtype_size(dq_dtype t) { return t == DQ_DTYPE_F32 ? 4 : 2; }

const char *dq_dtype_name(dq_dtype t) {
    switch (t) {
    case DQ_DTYPE_F32: return "F32";
    case DQ_DTYPE_F16: return "F16";
    case DQ_DTYPE_BF16: return "BF16";
    }
    return "?";
}

dq_model *dq_model_new(const char *path, const char *format) {
    dq_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    snprintf(m->path, sizeof m->path, "%s", path);
    m->format = format;
    m->cfg.bos_id = m->cfg.eos_id = -1;
    return m;
}

bool dq_model_owns(const dq_model *m, const void *p) {
    for (size_t i = 0; i < m->n_owned; i++)
        if (m->owned[i] == p) return true;
    return false;
}

void *dq_model_alloc(dq_model *m, size_t bytes) {
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **p = realloc(m->owned, cap * sizeof *p);
        if (!p) return NULL;
        m->owned = p;
        m->cap_owned = cap;
    }
    void *buf = malloc(bytes ? bytes : 1);
    if (buf) m->owned[m->n_owned++] = buf;
    return buf;
}

void dq_model_release(dq_model *m, const void *p) {
    for (size_t i = 0; i < m->n_owned; i++)
        if (m->owned[i] == p) {
            free(m->owned[i]);
            m->owned[i] = m->owned[--m->n_owned];
            return;
        }
}

void dq_model_free(dq_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_deferred; i++)
        free(m->deferred[i].file), free(m->deferred[i].name), free(m->deferred[i].fill_ctx);
    free(m->deferred);
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    for (int i = 0; i < m->n_maps; i++) dq_unmap_file(&m->maps[i]);
    free(m->layers);
    free(m);
}

const dq_config *dq_model_config(const dq_model *m) { return &m->cfg; }

bool dq_model_has_rope_freq_factors(const dq_model *m) { return m->rope_freq_factors != NULL; }

void dq_model_note_src_quant(dq_model *m, const char *type) {
    if (!m->n_src_quant++) snprintf(m->src_quant, sizeof m->src_quant, "%s", type);
    else if (strcmp(m->src_quant, type)) snprintf(m->src_quant, sizeof m->src_quant, "mixed");
}

const char *dq_model_source_quant(const dq_model *m, int *n_linears) {
    if (n_linears) *n_linears = m->n_src_quant;
    return m->n_src_quant ? m->src_quant : NULL;
}

size_t dq_model_n_params(const dq_model *m) {
    const dq_config *c = &m->cfg;
    size_t d = (size_t)c->dim, hd = (size_t)c->head_dim, f = (size_t)c->hidden_dim;
    size_t q = (size_t)c->n_heads * hd, kv = (size_t)c->n_kv_heads * hd;
    size_t per_layer = 2 * d + d * q + 2 * d * kv + q * d + 3 * d * f;
    if (c->qkv_bias) per_layer += q + 2 * kv;
    size_t n = (size_t)c->n_layers * per_layer + (size_t)c->vocab_size * d + d;
    if (!c->tied_embeddings) n += (size_t)c->vocab_size * d;
    return n;
}

static size_t first_nonfinite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

/* n stored values (F32, F16 or BF16, any alignment) as fp32. */
static void to_f32(float *out, const void *src, dq_dtype dtype, size_t n) {
    const uint8_t *b = src;
    for (size_t i = 0; i < n; i++) {
        if (dtype == DQ_DTYPE_F32) {
            memcpy(&out[i], b + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, b + 2 * i, 2);
            out[i] = dtype == DQ_DTYPE_F16 ? dq_f16_to_f32(h) : dq_bf16_to_f32(h);
        }
    }
}

/* n values of a deferred tensor's source starting at src, as fp32. */
static void decode_to(const dq_deferred *d, const void *src, size_t n, float *out) {
    if (d->decode) d->decode(d->code, src, n, out);
    else to_f32(out, src, d->dtype, n);
}

/* A tensor in pieces filled into a model-owned buffer; NaN/Inf refused. */
static dq_status filled(dq_model *m, const char *file, const char *name, dq_fill_fn fill, const void *ctx, size_t n,
                        const float **out, dq_error *err) {
    size_t bytes;
    float *buf = dq_mul_size(n, sizeof(float), &bytes) ? dq_model_alloc(m, bytes) : NULL;
    if (!buf || !fill(ctx, buf)) {
        if (buf) dq_model_release(m, buf);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: tensor %s: cannot allocate %zu values", file, name, n);
    }
    size_t bad = first_nonfinite(buf, n);
    if (bad < n) {
        double v = buf[bad];
        dq_model_release(m, buf);
        return dq_fail(err, DQ_ERR_NUMERIC, "%s: tensor %s: non-finite value %g at element %zu", file, name, v, bad);
    }
    *out = buf;
    return DQ_OK;
}

/* A block-quantized source as a fill: decode(code, src, n). */
typedef struct {
    dq_decode_fn decode;
    int code;
    const void *src;
    size_t n;
} decode_job;

static bool run_decode(const void *ctx, float *out) {
    const decode_job *j = ctx;
    j->decode(j->code, j->src, j->n, out);
    return true;
}

/* A block-quantized tensor decoded into a model-owned buffer; NaN/Inf refused. */
static dq_status decoded(dq_model *m, const char *file, const char *name, const void *src, dq_decode_fn decode,
                         int code, size_t n, const float **out, dq_error *err) {
    return filled(m, file, name, run_decode, &(decode_job){decode, code, src, n}, n, out, err);
}

/* An fp32 view of n elements at src: the bytes themselves when they are
 * aligned fp32, else a converted model-owned copy; NaN/Inf refused. */
static dq_status fp32_view(dq_model *m, const char *file, const char *name, const void *src, dq_dtype dtype,
                           size_t n, const float **out, dq_error *err) {
    const float *view;
    if (dtype == DQ_DTYPE_F32 && ((uintptr_t)src % _Alignof(float)) == 0) {
        view = src;
    } else {
        size_t bytes;
        if (!dq_mul_size(n, sizeof(float), &bytes))
            return dq_fail(err, DQ_ERR_NOMEM, "%s: tensor %s: size overflows", file, name);
        float *buf = dq_model_alloc(m, bytes);
        if (!buf)
            return dq_fail(err, DQ_ERR_NOMEM, "%s: tensor %s: cannot allocate %zu bytes", file, name,
                           bytes);
        to_f32(buf, src, dtype, n);
        view = buf;
    }
    size_t bad = first_nonfinite(view, n);
    if (bad < n) {
        double v = view[bad];
        dq_model_release(m, view); /* nothing for a view into the map */
        return dq_fail(err, DQ_ERR_NUMERIC, "%s: tensor %s: non-finite value %g at element %zu", file, name, v, bad);
    }
    *out = view;
    return DQ_OK;
}

#define LOAD_NOW (-3)
/* The block whose linear `slot` is, DQ_DEFER_HEAD / DQ_DEFER_EMBED for an
 * untied head / embedding (tied, they are one tensor, loaded now), or
 * LOAD_NOW (a norm, a bias). */
static int deferred_layer_of(const dq_model *m, const float **slot) {
    if (slot == &m->output && !m->cfg.tied_embeddings) return DQ_DEFER_HEAD;
    if (slot == &m->tok_embeddings && !m->cfg.tied_embeddings) return DQ_DEFER_EMBED;
    uintptr_t p = (uintptr_t)slot, b = (uintptr_t)m->layers;
    if (!m->layers || p < b || p >= b + (size_t)m->cfg.n_layers * sizeof *m->layers) return LOAD_NOW;
    int l = (int)((p - b) / sizeof *m->layers);
    for (int k = 0; k < DQ_LIN_PER_BLOCK; k++)
        if (dq_site_tensor(&m->layers[l], dq_site_of_linear(k)) == slot) return l;
    return LOAD_NOW;
}

static dq_status defer(dq_model *m, int l, const char *file, const char *name, const dq_deferred *what,
                       const float **out, dq_error *err) {
    if (m->n_deferred == m->cap_deferred) {
        int cap = m->cap_deferred ? 2 * m->cap_deferred : 64;
        dq_deferred *d = realloc(m->deferred, (size_t)cap * sizeof *d);
        if (!d) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", file);
        m->deferred = d;
        m->cap_deferred = cap;
    }
    dq_deferred *d = &m->deferred[m->n_deferred];
    *d = *what;
    d->slot = out, d->layer = l, d->file = strdup(file), d->name = strdup(name);
    if (!d->file || !d->name) {
        free(d->file), free(d->name);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", file);
    }
    m->n_deferred++;
    *out = NULL;
    return DQ_OK;
}

dq_status dq_model_tensor(dq_model *m, const char *file, const char *name, const void *src,
                          dq_dtype dtype, size_t n, const float **out, dq_error *err) {
    int l = m->lazy && !dq_model_owns(m, src) ? deferred_layer_of(m, out) : LOAD_NOW;
    if (l == LOAD_NOW) return fp32_view(m, file, name, src, dtype, n, out, err);
    size_t bytes = n * dq_dtype_size(dtype); /* n was checked against the file */
    return defer(m, l, file, name, &(dq_deferred){.src = src, .dtype = dtype, .n = n, .bytes = bytes}, out, err);
}

dq_status dq_model_tensor_coded(dq_model *m, const char *file, const char *name, const void *src, size_t bytes,
                                dq_decode_fn decode, int code, size_t n, const float **out, dq_error *err) {
    int l = m->lazy ? deferred_layer_of(m, out) : LOAD_NOW;
    if (l == LOAD_NOW) return decoded(m, file, name, src, decode, code, n, out, err);
    return defer(m, l, file, name, &(dq_deferred){.src = src, .decode = decode, .code = code, .n = n, .bytes = bytes},
                 out, err);
}


dq_status dq_model_tensor_filled(dq_model *m, const char *file, const char *name, const void *src, size_t bytes,
                                 dq_fill_fn fill, void *ctx, size_t n, const float **out, dq_error *err) {
    int l = m->lazy ? deferred_layer_of(m, out) : LOAD_NOW;
    if (l == LOAD_NOW) {
        dq_status st = filled(m, file, name, fill, ctx, n, out, err);
        free(ctx);
        return st;
    }
    dq_status st = defer(m, l, file, name,
                         &(dq_deferred){.src = src, .fill = fill, .fill_ctx = ctx, .n = n, .bytes = bytes}, out, err);
    if (st) free(ctx);
    return st;
}

/* The mapped file a deferred tensor is in, still whole. */
static dq_status source_intact(const dq_model *m, const dq_deferred *d, dq_error *err) {
    const uint8_t *p = d->src;
    for (int i = 0; i < m->n_maps; i++)
        if (p >= m->maps[i].data && p < m->maps[i].data + m->maps[i].size) return dq_map_check(&m->maps[i], err);
    return DQ_OK;
}

dq_status dq_model_block_load(dq_model *m, int l, dq_error *err) {
    for (int i = 0; i < m->n_deferred; i++) {
        dq_deferred *d = &m->deferred[i];
        if (d->layer != l || *d->slot) continue;
        dq_status st0 = source_intact(m, d, err);
        if (st0) return st0;
        dq_status st = d->fill     ? filled(m, d->file, d->name, d->fill, d->fill_ctx, d->n, d->slot, err)
                       : d->decode ? decoded(m, d->file, d->name, d->src, d->decode, d->code, d->n, d->slot, err)
                                   : fp32_view(m, d->file, d->name, d->src, d->dtype, d->n, d->slot, err);
        if (st) return st;
        if ((const void *)*d->slot != d->src) dq_map_release(d->src, d->bytes); /* converted */
    }
    return DQ_OK;
}

void dq_model_block_unload(dq_model *m, int l) {
    for (int i = 0; i < m->n_deferred; i++) {
        dq_deferred *d = &m->deferred[i];
        if (d->layer != l || !*d->slot) continue;
        dq_model_release(m, *d->slot); /* the fp32 copy or the quantized Ŵ; nothing for a view into the map */
        dq_map_release(d->src, d->bytes);
        *d->slot = NULL;
    }
}

dq_status dq_model_embed_rows(const dq_model *m, const int32_t *tokens, size_t n, float *out, dq_error *err) {
    size_t d = (size_t)m->cfg.dim;
    const dq_deferred *e = NULL;
    for (int i = 0; !m->tok_embeddings && i < m->n_deferred; i++)
        if (m->deferred[i].layer == DQ_DEFER_EMBED) e = &m->deferred[i];
    if ((!m->tok_embeddings && !e) || (e && e->fill)) /* an embedding in pieces is loaded whole first */
        return dq_fail(err, DQ_ERR_ARG, "%s: the token embedding is not loaded", m->path);
    dq_status st = e ? source_intact(m, e, err) : DQ_OK;
    if (st) return st;
    for (size_t i = 0; i < n; i++) {
        float *o = out + i * d;
        if (!e) {
            memcpy(o, m->tok_embeddings + (size_t)tokens[i] * d, d * sizeof *o);
            continue;
        }
        decode_to(e, (const uint8_t *)e->src + (size_t)tokens[i] * (e->bytes / (e->n / d)), d, o); /* rows of whole blocks */
        size_t bad = first_nonfinite(o, d);
        if (bad < d)
            return dq_fail(err, DQ_ERR_NUMERIC, "%s: tensor %s: non-finite value %g at element %zu (token %d)", e->file,
                           e->name, (double)o[bad], (size_t)tokens[i] * d + bad, tokens[i]);
    }
    return DQ_OK;
}

static dq_status not_consumed(const dq_model *m, dq_error *err) {
    return m->consumed ? dq_fail(err, DQ_ERR_ARG, "%s: the model was consumed by a streaming quantization (its blocks "
                                 "were released as they were written); load it again", m->path)
                       : DQ_OK;
}

dq_status dq_model_load_all(dq_model *m, dq_error *err) {
    dq_status st = not_consumed(m, err);
    if (!st) st = dq_model_block_load(m, DQ_DEFER_EMBED, err);
    if (!st) st = dq_model_block_load(m, DQ_DEFER_HEAD, err);
    for (int l = 0; !st && l < m->cfg.n_layers; l++) st = dq_model_block_load(m, l, err);
    return st;
}

dq_status dq_model_block_hold(dq_model *m, int l, bool *held, dq_error *err) {
    *held = false;
    if (not_consumed(m, err)) return err ? err->code : DQ_ERR_ARG;
    bool present = l == DQ_DEFER_EMBED ? m->tok_embeddings != NULL
                   : l == DQ_DEFER_HEAD ? m->output != NULL
                                        : dq_model_block_ready(m, l);
    *held = !present;
    return present ? DQ_OK : dq_model_block_load(m, l, err);
}

void dq_model_block_let_go(dq_model *m, int l, bool held) {
    if (held) dq_model_block_unload(m, l);
}

bool dq_model_fits(const dq_model *m, size_t budget) {
    return !budget || (double)dq_model_n_params(m) * sizeof(float) <= (double)budget;
}

bool dq_model_in_memory(const dq_model *m) {
    if (!m->lazy) return true;
    if (!m->tok_embeddings || !m->output) return false;
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (!dq_model_block_ready(m, l)) return false;
    return true;
}

bool dq_model_block_ready(const dq_model *m, int l) {
    for (int k = 0; k < DQ_LIN_PER_BLOCK; k++)
        if (!dq_site_get(&m->layers[l], dq_site_of_linear(k))) return false;
    return true;
}

/* Limits keep every size product far from overflow while admitting any real
 * model (Llama-3-405B: dim 16384, ffn 53248, vocab 128256, 126 layers). */
#define DQ_MAX_DIM (1 << 17)
#define DQ_MAX_VOCAB (1 << 22)
#define DQ_MAX_LAYERS 1024

dq_status dq_model_set_act_quant(dq_model *m, int bits, int group, dq_error *err) {
    if (bits && (bits < 4 || bits > 8))
        return dq_fail(err, DQ_ERR_ARG, "activation bits %d: 4 to 8, or 0 for full precision", bits);
    if (group && (group < 8 || group > 4096))
        return dq_fail(err, DQ_ERR_ARG, "activation group %d: 8 to 4096, or 0 for one scale per token", group);
    m->cfg.act_bits = bits;
    m->cfg.act_group = bits ? group : 0;
    return DQ_OK;
}

dq_status dq_config_validate(const dq_config *c, const char *file, dq_error *err) {
    if (c->dim <= 0 || c->dim > DQ_MAX_DIM || c->hidden_dim <= 0 || c->hidden_dim > 8 * DQ_MAX_DIM)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: implausible dims (dim %d, hidden_dim %d)", file,
                       c->dim, c->hidden_dim);
    if (c->n_layers <= 0 || c->n_layers > DQ_MAX_LAYERS)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: implausible layer count %d", file, c->n_layers);
    if (c->vocab_size <= 0 || c->vocab_size > DQ_MAX_VOCAB)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: implausible vocab size %d", file, c->vocab_size);
    if (c->n_heads <= 0 || c->n_heads > c->dim || c->n_kv_heads <= 0 || c->n_kv_heads > c->n_heads ||
        c->n_heads % c->n_kv_heads != 0)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: bad head counts (%d heads, %d kv heads)", file,
                       c->n_heads, c->n_kv_heads);
    if (c->head_dim <= 0 || c->head_dim % 2 != 0 || c->head_dim > 1024 ||
        (size_t)c->head_dim * (size_t)c->n_heads > 4 * (size_t)DQ_MAX_DIM)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: bad head dimension %d", file, c->head_dim);
    if (c->seq_len <= 0 || c->seq_len > (1 << 24))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: implausible context length %d", file, c->seq_len);
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: bad RMSNorm epsilon %g", file, (double)c->norm_eps);
    if (!(c->rope_theta > 1.0f && isfinite(c->rope_theta)))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: bad rope_theta %g", file, (double)c->rope_theta);
    return DQ_OK;
}

double dq_rope_freq_divisor(const dq_config *c, double f) {
    if (c->rope_scaling == DQ_ROPE_SCALING_LINEAR) return c->rope_factor;
    if (c->rope_scaling != DQ_ROPE_SCALING_LLAMA3) return 1.0;
    double low_wavelen = c->rope_orig_ctx / c->rope_low_freq_factor;
    double high_wavelen = c->rope_orig_ctx / c->rope_high_freq_factor;
    double wavelen = 2.0 * 3.14159265358979323846 / f;
    if (wavelen < high_wavelen) return 1.0;
    if (wavelen > low_wavelen) return c->rope_factor;
    double smooth = (c->rope_orig_ctx / wavelen - c->rope_low_freq_factor) /
                    (c->rope_high_freq_factor - c->rope_low_freq_factor);
    return 1.0 / ((1.0 - smooth) / c->rope_factor + smooth);
}
