/* A GGUF file as a dq_model: llama.cpp's architecture metadata and tensor
 * names ("llama", and "qwen2" with its q/k/v biases). F32 tensors stay
 * mmapped; F16/BF16 and quantized blocks are decoded to fp32 on load, so a
 * quantized file is evaluated exactly as its bytes say. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "model/sites.h"
#include "util/error.h"

typedef struct {
    dq_model *m;
    const dq_gguf *g;
    const char *path;
    char arch[32];
    dq_error *err;
    bool *used; /* per tensor of the file: read by the model */
} loader;

static bool arch_int(const loader *L, const char *key, int64_t *v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", L->arch, key);
    return dq_gguf_get_int(L->g, k, v);
}

static bool arch_float(const loader *L, const char *key, double *v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", L->arch, key);
    return dq_gguf_get_float(L->g, k, v);
}

static dq_status need_int(const loader *L, const char *key, int *out) {
    int64_t v;
    if (!arch_int(L, key, &v))
        return dq_fail(L->err, DQ_ERR_FORMAT, "%s: metadata %s.%s is missing", L->path, L->arch, key);
    if (v < 0 || v > INT32_MAX)
        return dq_fail(L->err, DQ_ERR_FORMAT, "%s: metadata %s.%s = %lld is out of range", L->path, L->arch, key,
                       (long long)v);
    *out = (int)v;
    return DQ_OK;
}

/* Optional float metadata ARCH.key in (lo, hi), finite, else dflt: a RoPE
 * base, scaling factor or epsilon of 0, below, inf or NaN makes every
 * activation NaN later on, so it is refused here, naming the key. */
static dq_status arch_float_in(const loader *L, const char *key, double lo, double hi, double dflt, float *out) {
    double v;
    if (!arch_float(L, key, &v)) v = dflt;
    else if (!(v > lo && v < hi && isfinite(v)))
        return dq_fail(L->err, DQ_ERR_FORMAT, "%s: metadata %s.%s = %g is out of range (want a finite number > %g%s)",
                       L->path, L->arch, key, v, lo, hi < INFINITY ? " and < 1" : "");
    *out = (float)v;
    return DQ_OK;
}

static dq_status read_arch(loader *L) {
    const char *s;
    size_t n;
    if (!dq_gguf_get_str(L->g, "general.architecture", &s, &n))
        return dq_fail(L->err, DQ_ERR_FORMAT, "%s: general.architecture is missing", L->path);
    snprintf(L->arch, sizeof L->arch, "%.*s", (int)(n < 31 ? n : 31), s);
    if (strcmp(L->arch, "llama") && strcmp(L->arch, "qwen2"))
        return dq_fail(L->err, DQ_ERR_UNSUPPORTED, "%s: architecture %s is not supported (llama, qwen2)", L->path,
                       L->arch);
    return DQ_OK;
}

static dq_status read_config(loader *L) {
    dq_config *c = &L->m->cfg;
    dq_status st;
    if ((st = read_arch(L))) return st;
    snprintf(c->arch, sizeof c->arch, "%s", L->arch);
    if ((st = need_int(L, "embedding_length", &c->dim)) || (st = need_int(L, "feed_forward_length", &c->hidden_dim)) ||
        (st = need_int(L, "block_count", &c->n_layers)) || (st = need_int(L, "attention.head_count", &c->n_heads)))
        return st;
    int64_t v;
    c->n_kv_heads = arch_int(L, "attention.head_count_kv", &v) ? (int)v : c->n_heads;
    c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    if (arch_int(L, "attention.key_length", &v)) c->head_dim = (int)v;
    c->seq_len = arch_int(L, "context_length", &v) ? (int)v : 2048;
    if ((st = arch_float_in(L, "attention.layer_norm_rms_epsilon", 0, 1, 1e-5, &c->norm_eps)) ||
        (st = arch_float_in(L, "rope.freq_base", 1, INFINITY, 10000.0, &c->rope_theta)))
        return st;
    /* llama.cpp rotates llama heads in interleaved pairs and qwen2 ("NEOX") in halves */
    c->rope_style = strcmp(L->arch, "qwen2") ? DQ_ROPE_INTERLEAVED : DQ_ROPE_HALF;
    c->qkv_bias = !strcmp(L->arch, "qwen2");
    const char *s;
    size_t n;
    char k[128];
    snprintf(k, sizeof k, "%s.rope.scaling.type", L->arch);
    double f;
    bool typed = dq_gguf_get_str(L->g, k, &s, &n), linear = typed && n == 6 && !memcmp(s, "linear", 6);
    /* yarn and longrope change attention as well as frequencies: refused, not run unscaled (llama.cpp's Llama-3
     * scaling has no type here; it is the rope_freqs.weight tensor, read below) */
    if (typed && !linear && !(n == 4 && !memcmp(s, "none", 4)))
        return dq_fail(L->err, DQ_ERR_UNSUPPORTED, "%s: metadata %s = \"%.*s\" is not supported (none, linear)",
                       L->path, k, (int)(n < 32 ? n : 32), s);
    if (linear && arch_float(L, "rope.scaling.factor", &f)) {
        c->rope_scaling = DQ_ROPE_SCALING_LINEAR;
        if ((st = arch_float_in(L, "rope.scaling.factor", 0, INFINITY, 1.0, &c->rope_factor))) return st;
    }
    char name[64];
    dq_site_gguf_name(&DQ_SITES[DQ_SITE_TOKEN_EMBD], 0, name, sizeof name);
    const dq_gguf_tensor *emb = dq_gguf_tensor_find(L->g, name);
    if (!emb) return dq_fail(L->err, DQ_ERR_FORMAT, "%s: tensor %s is missing", L->path, name);
    c->vocab_size = emb->ne[1] > INT32_MAX ? -1 : (int)emb->ne[1];
    dq_site_gguf_name(&DQ_SITES[DQ_SITE_OUTPUT], 0, name, sizeof name);
    c->tied_embeddings = !dq_gguf_tensor_find(L->g, name);
    c->bos_id = dq_gguf_get_int(L->g, "tokenizer.ggml.bos_token_id", &v) ? (int)v : -1;
    c->eos_id = dq_gguf_get_int(L->g, "tokenizer.ggml.eos_token_id", &v) ? (int)v : -1;
    return dq_config_validate(c, L->path, L->err);
}

static void decode_ggml(int type, const void *src, size_t n, float *out) {
    dq_ggml_decode((dq_ggml_type)type, src, n, out);
}

/* The fp32 view of tensor `name`, which must have shape [ne0, ne1] (a
 * quantized one decoded, or deferred on a lazily loaded model); *quant
 * (if quant) the ggml type it was decoded from when stored quantized, else NULL. */
static dq_status tensor(loader *L, const char *name, int64_t ne0, int64_t ne1, const float **out, const char **quant) {
    if (quant) *quant = NULL;
    const dq_gguf_tensor *t = dq_gguf_tensor_find(L->g, name);
    if (!t) return dq_fail(L->err, DQ_ERR_FORMAT, "%s: tensor %s is missing", L->path, name);
    L->used[t - L->g->tensors] = true;
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
        return dq_fail(L->err, DQ_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                       L->path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)t->ne[3], (long long)ne0, (long long)ne1);
    size_t n = (size_t)ne0 * (size_t)ne1;
    if (t->type == DQ_GGML_F32 || t->type == DQ_GGML_F16 || t->type == DQ_GGML_BF16) {
        dq_dtype dt = t->type == DQ_GGML_F32 ? DQ_DTYPE_F32 : t->type == DQ_GGML_F16 ? DQ_DTYPE_F16 : DQ_DTYPE_BF16;
        return dq_model_tensor(L->m, L->path, name, t->data, dt, n, out, L->err);
    }
    if (quant) *quant = dq_ggml_info(t->type)->name;
    return dq_model_tensor_coded(L->m, L->path, name, t->data, t->nbytes, decode_ggml, (int)t->type, n, out, L->err);
}

/* Site `site` of block `layer` (ignored for the model's own sites) into
 * *slot. GGUF lists a matrix's dimensions innermost first: ne = [cols, rows];
 * a vector is [n, 1]. */
static dq_status load_site(loader *L, const dq_site *site, int layer, const float **slot) {
    dq_site_ref t;
    dq_site_ref_of(site, &L->m->cfg, layer, DQ_NAMES_GGUF, &t);
    const char *quant;
    dq_status st = tensor(L, t.name, t.cols ? t.cols : t.rows, t.cols ? t.rows : 1, slot, &quant);
    if (!st && quant && site->lin >= 0) dq_model_note_src_quant(L->m, quant);
    return st;
}

static dq_status load_layer(loader *L, int i) {
    for (int k = 0; k < DQ_SITE_PER_BLOCK; k++) {
        const dq_site *site = &DQ_SITES[k];
        if (!dq_site_present(site, &L->m->cfg)) continue;
        dq_status st = load_site(L, site, i, dq_site_tensor(&L->m->layers[i], site));
        if (st) return st;
    }
    return DQ_OK;
}

/* The model's own site `id` into its slot in m. */
static dq_status load_model_site(loader *L, dq_site_id id) {
    return load_site(L, &DQ_SITES[id], 0, dq_site_model_tensor(L->m, &DQ_SITES[id]));
}

static dq_status load_tensors(loader *L) {
    dq_model *m = L->m;
    const dq_config *c = &m->cfg;
    dq_status st;
    if ((st = load_model_site(L, DQ_SITE_TOKEN_EMBD)) || (st = load_model_site(L, DQ_SITE_OUTPUT_NORM))) return st;
    if (c->tied_embeddings) m->output = m->tok_embeddings;
    else if ((st = load_model_site(L, DQ_SITE_OUTPUT))) return st;
    for (int i = 0; i < c->n_layers; i++)
        if ((st = load_layer(L, i))) return st;
    /* Llama-3 context scaling, stored as one divisor per RoPE pair */
    if (dq_gguf_tensor_find(L->g, "rope_freqs.weight") &&
        (st = tensor(L, "rope_freqs.weight", c->head_dim / 2, 1, &m->rope_freq_factors, NULL)))
        return st;
    for (int i = 0; m->rope_freq_factors && i < c->head_dim / 2; i++)
        if (!(m->rope_freq_factors[i] > 0))
            return dq_fail(L->err, DQ_ERR_FORMAT, "%s: tensor rope_freqs.weight: factor %d is %g (must be > 0)",
                           L->path, i, m->rope_freq_factors[i]);
    /* a tensor the model has no place for (a block beyond block_count, a
     * misspelt name) means the file is not the model we would run; llama.cpp
     * refuses it too ("wrong number of tensors") */
    for (size_t i = 0; i < L->g->n_tensors; i++)
        if (!L->used[i])
            return dq_fail(L->err, DQ_ERR_FORMAT,
                           "%s: tensor %s is not part of a %d-block %s model (block_count, names)", L->path,
                           L->g->tensors[i].name, c->n_layers, L->arch);
    /* full-precision storage type, for writers that keep tensors as they came */
    char q0[64];
    dq_site_gguf_name(&DQ_SITES[DQ_SITE_Q], 0, q0, sizeof q0);
    const dq_gguf_tensor *t = dq_gguf_tensor_find(L->g, q0);
    m->dtype = t && t->type == DQ_GGML_F16 ? DQ_DTYPE_F16 : t && t->type == DQ_GGML_BF16 ? DQ_DTYPE_BF16 : DQ_DTYPE_F32;
    return DQ_OK;
}

dq_status dq_load_gguf(const char *path, bool lazy, dq_model **out, dq_error *err) {
    *out = NULL;
    dq_model *m = dq_model_new(path, "gguf");
    if (m) m->lazy = lazy;
    if (!m) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    dq_gguf g;
    dq_status st = dq_gguf_open(path, &g, err);
    if (st) {
        dq_model_free(m);
        return st;
    }
    loader L = {m, &g, path, "", err, calloc(g.n_tensors ? g.n_tensors : 1, sizeof(bool))};
    st = L.used ? read_config(&L) : dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    if (!st && !(m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers)))
        st = dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    if (!st) st = load_tensors(&L);
    free(L.used);
    /* the model keeps the mapping (its F32 tensors point into it) */
    m->maps[m->n_maps++] = g.f;
    g.f.data = NULL;
    g.f.size = 0;
    dq_gguf_close(&g);
    if (st) {
        dq_model_free(m);
        return st;
    }
    *out = m;
    return DQ_OK;
}
