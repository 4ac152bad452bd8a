/* llama2.c checkpoints (legacy "v0" export): 7 int32 header
 *   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
 * then fp32 weights grouped by kind across layers and two unused RoPE tables.
 * A negative vocab_size means a separate classifier follows them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/sites.h"
#include "util/error.h"

typedef struct {
    const uint8_t *p, *end;
    const char *file;
} cursor;

/* Takes n floats from the cursor, refusing to run past the end of the file. */
static dq_status take(cursor *c, size_t n, const uint8_t **out, const char *what, dq_error *err) {
    size_t bytes;
    if (!dq_mul_size(n, 4, &bytes) || (size_t)(c->end - c->p) < bytes)
        return dq_fail(err, DQ_ERR_FORMAT,
                       "%s: truncated: tensor %s needs %zu floats but only %zu bytes remain", c->file,
                       what, n, (size_t)(c->end - c->p));
    *out = c->p;
    c->p += bytes;
    return DQ_OK;
}

/* Reads one weight kind for all layers and stores per-layer pointers. */
static dq_status take_layers(dq_model *m, cursor *c, size_t per_layer, const char *what,
                             size_t field_offset, dq_error *err) {
    const uint8_t *base = NULL;
    size_t total;
    if (!dq_mul_size(per_layer, (size_t)m->cfg.n_layers, &total))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s: size overflows", c->file, what);
    dq_status st = take(c, total, &base, what, err);
    if (st) return st;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        char name[64];
        snprintf(name, sizeof name, "layers.%d.%s", l, what);
        const float **slot = (const float **)((char *)&m->layers[l] + field_offset);
        st = dq_model_tensor(m, c->file, name, base + (size_t)l * per_layer * 4, DQ_DTYPE_F32,
                             per_layer, slot, err);
        if (st) return st;
    }
    return DQ_OK;
}

/* The block site stored rank-th in a llama2.c file (attention_norm, wq, wk,
 * wv, wo, ffn_norm, w1, w2, w3: its own order, not the table's), or NULL past
 * the last. */
static const dq_site *site_of_rank(int rank) {
    for (int i = 0; i < DQ_SITE_PER_BLOCK; i++)
        if (DQ_SITES[i].llama2c_rank == rank) return &DQ_SITES[i];
    return NULL;
}

/* The header's 7 int32 as a config (not validated); *shared: the classifier
 * is the embedding (positive vocab_size). */
static void parse_header(const int32_t h[7], dq_config *c, bool *shared) {
    memset(c, 0, sizeof *c);
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    *shared = h[5] > 0;
    c->vocab_size = h[5] == INT32_MIN ? 0 : abs(h[5]);
    c->seq_len = h[6];
    c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_style = DQ_ROPE_INTERLEAVED;
    c->tied_embeddings = *shared;
    c->bos_id = 1;
    c->eos_id = 2;
    snprintf(c->arch, sizeof c->arch, "llama");
}

/* The file's first 4 bytes for a message: as text when printable, else hex. */
static void magic_str(const uint8_t *p, size_t n, char *buf, size_t cap) {
    bool text = n >= 4;
    for (size_t i = 0; i < 4 && text; i++) text = p[i] >= 0x20 && p[i] < 0x7f;
    if (text) snprintf(buf, cap, "\"%.4s\"", (const char *)p);
    else if (n >= 4) snprintf(buf, cap, "%02x %02x %02x %02x", p[0], p[1], p[2], p[3]);
    else snprintf(buf, cap, "none: %zu bytes", n);
}

/* llama2.c files have no magic: a header that no model could have means the
 * file is something else (a GGUF with a damaged magic, a text, a tokenizer),
 * and the message says so before what the header would have meant. */
static dq_status read_header(const dq_mapped_file *f, dq_config *c, bool *shared, dq_error *err) {
    int32_t h[7];
    if (f->size < sizeof h)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: truncated: %zu bytes, llama2.c header needs 28",
                       f->path, f->size);
    memcpy(h, f->data, sizeof h);
    if (memcmp(f->data, "ak42", 4) == 0 || h[0] == 0x616b3432)
        return dq_fail(err, DQ_ERR_UNSUPPORTED,
                       "%s: llama2.c version-1/2 export (magic ak42) is not supported; "
                       "export with --version 0",
                       f->path);
    parse_header(h, c, shared);
    dq_error why = {0};
    dq_status st = dq_config_validate(c, "llama2.c header", &why);
    if (st) {
        char magic[32];
        magic_str(f->data, f->size, magic, sizeof magic);
        return dq_fail(err, st, "%s: not a GGUF or llama2.c model file (magic %s; as a %s)", f->path, magic, why.msg);
    }
    if (c->dim % c->n_heads != 0)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: dim %d is not a multiple of n_heads %d", f->path,
                       c->dim, c->n_heads);
    return DQ_OK;
}

bool dq_llama2c_is_model(const uint8_t *p, size_t n, dq_config *c) {
    int32_t h[7];
    bool shared;
    if (n < sizeof h) return false;
    memcpy(h, p, sizeof h);
    parse_header(h, c, &shared);
    if (dq_config_validate(c, "", NULL) || c->dim % c->n_heads) return false;
    size_t d = (size_t)c->dim, hd = (size_t)c->head_dim, V = (size_t)c->vocab_size, block = 0;
    for (int r = 0; site_of_rank(r); r++) block += dq_site_elems(site_of_rank(r), c);
    /* what map_weights takes, in floats; the limits of dq_config_validate keep it far from overflow */
    size_t floats = V * d * (shared ? 1 : 2) + (size_t)c->n_layers * block + d + (size_t)c->seq_len * hd;
    return n == 28 + 4 * floats;
}

/* The model's own site `id`, next in the file. */
static dq_status take_model_site(dq_model *m, cursor *c, dq_site_id id, dq_error *err) {
    const dq_site *s = &DQ_SITES[id];
    size_t n = dq_site_elems(s, &m->cfg);
    const uint8_t *p = NULL;
    dq_status st = take(c, n, &p, s->llama2c, err);
    return st ? st : dq_model_tensor(m, c->file, s->llama2c, p, DQ_DTYPE_F32, n, dq_site_model_tensor(m, s), err);
}

static dq_status map_weights(dq_model *m, cursor *c, bool shared, dq_error *err) {
    const dq_config *k = &m->cfg;
    const uint8_t *p = NULL;
    dq_status st = take_model_site(m, c, DQ_SITE_TOKEN_EMBD, err);
    for (int r = 0; !st && site_of_rank(r); r++) {
        const dq_site *s = site_of_rank(r);
        st = take_layers(m, c, dq_site_elems(s, k), s->llama2c, s->offset, err);
    }
    if (!st) st = take_model_site(m, c, DQ_SITE_OUTPUT_NORM, err);
    /* Two unused legacy RoPE tables (freq_cis_real, freq_cis_imag) follow. */
    if (!st) st = take(c, (size_t)k->seq_len * (size_t)k->head_dim, &p, "freq_cis", err);
    if (st) return st;
    if (shared) {
        m->output = m->tok_embeddings;
        return DQ_OK;
    }
    return take_model_site(m, c, DQ_SITE_OUTPUT, err);
}

dq_status dq_load_llama2c(const char *path, bool lazy, dq_model **out, dq_error *err) {
    *out = NULL;
    dq_model *m = dq_model_new(path, "llama2c");
    if (m) m->lazy = lazy;
    if (!m) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    dq_status st = dq_map_file(path, &m->maps[0], err);
    if (st) goto fail;
    m->n_maps = 1;
    bool shared = false;
    if ((st = read_header(&m->maps[0], &m->cfg, &shared, err))) goto fail;
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    if (!m->layers) {
        st = dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    cursor c = {m->maps[0].data + 28, m->maps[0].data + m->maps[0].size, path};
    if ((st = map_weights(m, &c, shared, err))) goto fail;
    if (c.p != c.end) {
        st = dq_fail(err, DQ_ERR_FORMAT,
                     "%s: %zu unexpected trailing bytes: the header does not describe this file",
                     path, (size_t)(c.end - c.p));
        goto fail;
    }
    *out = m;
    return DQ_OK;
fail:
    dq_model_free(m);
    return st;
}
