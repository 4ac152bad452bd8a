#include "model/sites.h"

#include <stdio.h>
#include <string.h>

#include "util/error.h"

/* Row builders, in dq_site's field order. A block linear reads a tap; a norm
 * or a bias is a vector of `rows`; only biases are optional. */
#define LINEAR(lin, hf, gguf, l2c, rank, tap, rows, cols, rope, field) \
    {DQ_SITE_LINEAR, lin, hf, gguf, l2c, rank, tap, rows, cols, rope, false, true, false, offsetof(dq_layer, field)}
#define NORM(hf, gguf, l2c, rank, field) \
    {DQ_SITE_NORM, -1, hf, gguf, l2c, rank, DQ_TAP_NONE, DQ_DIM_MODEL, DQ_DIM_NONE, false, false, true, false, \
     offsetof(dq_layer, field)}
#define BIAS(hf, gguf, rows, rope, field) \
    {DQ_SITE_BIAS, -1, hf, gguf, NULL, -1, DQ_TAP_NONE, rows, DQ_DIM_NONE, rope, true, true, false, \
     offsetof(dq_layer, field)}
#define OWN(role, hf, gguf, l2c, tap, rows, cols, field) \
    {role, -1, hf, gguf, l2c, -1, tap, rows, cols, false, false, false, false, offsetof(struct dq_model, field)}

/* llama2.c ranks: its file stores attention_norm wq wk wv wo ffn_norm w1 (gate) w2 (down) w3 (up). */
const dq_site DQ_SITES[DQ_SITE_COUNT] = {
    [DQ_SITE_ATTN_NORM] = NORM("input_layernorm", "attn_norm", "attention_norm", 0, attn_norm),
    [DQ_SITE_Q] = LINEAR(DQ_LIN_Q, "self_attn.q_proj", "attn_q", "wq", 1, DQ_TAP_ATTN_IN, DQ_DIM_Q, DQ_DIM_MODEL,
                         true, wq),
    [DQ_SITE_K] = LINEAR(DQ_LIN_K, "self_attn.k_proj", "attn_k", "wk", 2, DQ_TAP_ATTN_IN, DQ_DIM_KV, DQ_DIM_MODEL,
                         true, wk),
    [DQ_SITE_V] = LINEAR(DQ_LIN_V, "self_attn.v_proj", "attn_v", "wv", 3, DQ_TAP_ATTN_IN, DQ_DIM_KV, DQ_DIM_MODEL,
                         false, wv),
    [DQ_SITE_Q_BIAS] = BIAS("self_attn.q_proj", "attn_q", DQ_DIM_Q, true, bq),
    [DQ_SITE_K_BIAS] = BIAS("self_attn.k_proj", "attn_k", DQ_DIM_KV, true, bk),
    [DQ_SITE_V_BIAS] = BIAS("self_attn.v_proj", "attn_v", DQ_DIM_KV, false, bv),
    [DQ_SITE_O] = LINEAR(DQ_LIN_O, "self_attn.o_proj", "attn_output", "wo", 4, DQ_TAP_ATTN_OUT, DQ_DIM_MODEL, DQ_DIM_Q,
                         false, wo),
    [DQ_SITE_FFN_NORM] = NORM("post_attention_layernorm", "ffn_norm", "ffn_norm", 5, ffn_norm),
    [DQ_SITE_GATE] = LINEAR(DQ_LIN_GATE, "mlp.gate_proj", "ffn_gate", "w1", 6, DQ_TAP_FFN_IN, DQ_DIM_FFN, DQ_DIM_MODEL,
                            false, w_gate),
    [DQ_SITE_UP] = LINEAR(DQ_LIN_UP, "mlp.up_proj", "ffn_up", "w3", 8, DQ_TAP_FFN_IN, DQ_DIM_FFN, DQ_DIM_MODEL, false,
                          w_up),
    [DQ_SITE_DOWN] = LINEAR(DQ_LIN_DOWN, "mlp.down_proj", "ffn_down", "w2", 7, DQ_TAP_FFN_HIDDEN, DQ_DIM_MODEL,
                            DQ_DIM_FFN, false, w_down),
    /* the model's own tensors; where they sit in a llama2.c file is that format's business */
    [DQ_SITE_TOKEN_EMBD] = OWN(DQ_SITE_EMBEDDING, "model.embed_tokens", "token_embd", "tok_embeddings", DQ_TAP_NONE,
                               DQ_DIM_VOCAB, DQ_DIM_MODEL, tok_embeddings),
    [DQ_SITE_OUTPUT_NORM] = OWN(DQ_SITE_NORM, "model.norm", "output_norm", "norm", DQ_TAP_NONE, DQ_DIM_MODEL,
                                DQ_DIM_NONE, final_norm),
    [DQ_SITE_OUTPUT] = OWN(DQ_SITE_LINEAR, "lm_head", "output", "output", DQ_TAP_HEAD_IN, DQ_DIM_VOCAB, DQ_DIM_MODEL,
                           output),
};
#undef LINEAR
#undef NORM
#undef BIAS
#undef OWN

static const dq_site_id SITE_OF_LINEAR[DQ_LIN_PER_BLOCK] = {
    [DQ_LIN_Q] = DQ_SITE_Q,       [DQ_LIN_K] = DQ_SITE_K,   [DQ_LIN_V] = DQ_SITE_V,      [DQ_LIN_O] = DQ_SITE_O,
    [DQ_LIN_GATE] = DQ_SITE_GATE, [DQ_LIN_UP] = DQ_SITE_UP, [DQ_LIN_DOWN] = DQ_SITE_DOWN};

const dq_site *dq_site_of_linear(int lin) { return &DQ_SITES[SITE_OF_LINEAR[lin]]; }

bool dq_site_present(const dq_site *s, const dq_config *c) { return !s->optional || c->qkv_bias; }

int dq_dim_size(const dq_config *c, dq_dim d) {
    switch (d) {
    case DQ_DIM_MODEL: return c->dim;
    case DQ_DIM_FFN: return c->hidden_dim;
    case DQ_DIM_Q: return c->n_heads * c->head_dim;
    case DQ_DIM_KV: return c->n_kv_heads * c->head_dim;
    case DQ_DIM_VOCAB: return c->vocab_size;
    default: return 0;
    }
}

void dq_site_shape(const dq_site *s, const dq_config *c, int *rows, int *cols) {
    *rows = dq_dim_size(c, s->rows);
    *cols = dq_dim_size(c, s->cols);
}

size_t dq_site_elems(const dq_site *s, const dq_config *c) {
    int rows, cols;
    dq_site_shape(s, c, &rows, &cols);
    return (size_t)rows * (size_t)(cols ? cols : 1);
}

void dq_linear_shape(const dq_config *c, int kind, int *rows, int *cols) {
    dq_site_shape(dq_site_of_linear(kind), c, rows, cols);
}

const float **dq_site_tensor(dq_layer *L, const dq_site *s) { return (const float **)(void *)((char *)L + s->offset); }

const float *dq_site_get(const dq_layer *L, const dq_site *s) {
    return *(const float *const *)(const void *)((const char *)L + s->offset);
}

size_t dq_site_shard_slots(const dq_config *c) {
    return (size_t)c->n_layers * DQ_SITE_PER_BLOCK + (DQ_SITE_COUNT - DQ_SITE_PER_BLOCK);
}

static size_t shard_slot(const dq_model *m, const dq_site *s, int layer) {
    size_t id = (size_t)(s - DQ_SITES);
    return s->per_block ? (size_t)layer * DQ_SITE_PER_BLOCK + id
                        : (size_t)m->cfg.n_layers * DQ_SITE_PER_BLOCK + (id - DQ_SITE_PER_BLOCK);
}

int dq_site_shard(const dq_model *m, const dq_site *s, int layer) {
    return m->site_shard ? m->site_shard[shard_slot(m, s, layer)] : -1;
}

void dq_site_set_shard(dq_model *m, const dq_site *s, int layer, int shard) {
    if (m->site_shard) m->site_shard[shard_slot(m, s, layer)] = (int16_t)shard;
}

const float **dq_site_model_tensor(dq_model *m, const dq_site *s) {
    return (const float **)(void *)((char *)m + s->offset);
}

const float *dq_site_data(const dq_model *m, int layer, const dq_site *s) {
    if (s->per_block) return dq_site_get(&m->layers[layer], s);
    return *(const float *const *)(const void *)((const char *)m + s->offset);
}

float *dq_site_writable(dq_model *m, int layer, const dq_site *s, dq_error *err) {
    char name[160];
    dq_site_hf_name(s, layer, name, sizeof name);
    if (s->per_block && (layer < 0 || layer >= m->cfg.n_layers)) {
        dq_fail(err, DQ_ERR_ARG, "%s: no block %d in a model of %d", name, layer, m->cfg.n_layers);
        return NULL;
    }
    const float **slot = s->per_block ? dq_site_tensor(&m->layers[layer], s) : dq_site_model_tensor(m, s);
    if (!*slot) {
        dq_fail(err, DQ_ERR_ARG, "%s: the model has no such tensor", name);
        return NULL;
    }
    bool tied = m->output == m->tok_embeddings, head = s == &DQ_SITES[DQ_SITE_OUTPUT];
    if (!(tied && head) && dq_model_owns(m, *slot)) return (float *)*slot;
    size_t bytes = dq_site_elems(s, &m->cfg) * sizeof(float);
    float *w = dq_model_alloc(m, bytes);
    if (!w) {
        dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory for a writable copy", name);
        return NULL;
    }
    memcpy(w, *slot, bytes);
    if (tied && s == &DQ_SITES[DQ_SITE_TOKEN_EMBD]) m->output = w; /* still one tensor */
    if (tied && head) m->cfg.tied_embeddings = false;
    *slot = w;
    return w;
}

int dq_site_hf_module(const dq_site *s, int layer, char *buf, size_t cap) {
    if (!s->per_block) return snprintf(buf, cap, "%s", s->hf);
    return snprintf(buf, cap, "model.layers.%d.%s", layer, s->hf);
}

void dq_site_ref_of(const dq_site *s, const dq_config *c, int layer, dq_naming naming, dq_site_ref *out) {
    if (naming == DQ_NAMES_GGUF) dq_site_gguf_name(s, layer, out->name, sizeof out->name);
    else dq_site_hf_name(s, layer, out->name, sizeof out->name);
    dq_site_shape(s, c, &out->rows, &out->cols);
}

static const char *suffix(const dq_site *s) { return s->role == DQ_SITE_BIAS ? "bias" : "weight"; }

int dq_site_hf_name(const dq_site *s, int layer, char *buf, size_t cap) {
    if (!s->per_block) return snprintf(buf, cap, "%s.%s", s->hf, suffix(s));
    return snprintf(buf, cap, "model.layers.%d.%s.%s", layer, s->hf, suffix(s));
}

int dq_site_gguf_name(const dq_site *s, int layer, char *buf, size_t cap) {
    if (!s->per_block) return snprintf(buf, cap, "%s.%s", s->gguf, suffix(s));
    return snprintf(buf, cap, "blk.%d.%s.%s", layer, s->gguf, suffix(s));
}
