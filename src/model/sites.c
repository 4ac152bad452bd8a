#include "model/sites.h"

#include <stdio.h>

#define BLOCK(field) true, false, offsetof(dq_layer, field)
#define MODEL(field) false, false, offsetof(struct dq_model, field)

const dq_site DQ_SITES[DQ_SITE_COUNT] = {
    /* role, lin, hf, gguf, llama2c, rank, tap, rows, cols, rope_rows, optional, per_block, per_expert, offset */
    [DQ_SITE_ATTN_NORM] = {DQ_SITE_NORM, -1, "input_layernorm", "attn_norm", "attention_norm", 0, DQ_TAP_NONE,
                           DQ_DIM_MODEL, DQ_DIM_NONE, false, false, BLOCK(attn_norm)},
    [DQ_SITE_Q] = {DQ_SITE_LINEAR, DQ_LIN_Q, "self_attn.q_proj", "attn_q", "wq", 1, DQ_TAP_ATTN_IN, DQ_DIM_Q,
                   DQ_DIM_MODEL, true, false, BLOCK(wq)},
    [DQ_SITE_K] = {DQ_SITE_LINEAR, DQ_LIN_K, "self_attn.k_proj", "attn_k", "wk", 2, DQ_TAP_ATTN_IN, DQ_DIM_KV,
                   DQ_DIM_MODEL, true, false, BLOCK(wk)},
    [DQ_SITE_V] = {DQ_SITE_LINEAR, DQ_LIN_V, "self_attn.v_proj", "attn_v", "wv", 3, DQ_TAP_ATTN_IN, DQ_DIM_KV,
                   DQ_DIM_MODEL, false, false, BLOCK(wv)},
    [DQ_SITE_Q_BIAS] = {DQ_SITE_BIAS, -1, "self_attn.q_proj", "attn_q", NULL, -1, DQ_TAP_NONE, DQ_DIM_Q, DQ_DIM_NONE,
                        true, true, BLOCK(bq)},
    [DQ_SITE_K_BIAS] = {DQ_SITE_BIAS, -1, "self_attn.k_proj", "attn_k", NULL, -1, DQ_TAP_NONE, DQ_DIM_KV, DQ_DIM_NONE,
                        true, true, BLOCK(bk)},
    [DQ_SITE_V_BIAS] = {DQ_SITE_BIAS, -1, "self_attn.v_proj", "attn_v", NULL, -1, DQ_TAP_NONE, DQ_DIM_KV, DQ_DIM_NONE,
                        false, true, BLOCK(bv)},
    [DQ_SITE_O] = {DQ_SITE_LINEAR, DQ_LIN_O, "self_attn.o_proj", "attn_output", "wo", 4, DQ_TAP_ATTN_OUT,
                   DQ_DIM_MODEL, DQ_DIM_Q, false, false, BLOCK(wo)},
    [DQ_SITE_FFN_NORM] = {DQ_SITE_NORM, -1, "post_attention_layernorm", "ffn_norm", "ffn_norm", 5, DQ_TAP_NONE,
                          DQ_DIM_MODEL, DQ_DIM_NONE, false, false, BLOCK(ffn_norm)},
    /* llama2.c stores w1 (gate), w2 (down), w3 (up) in that order */
    [DQ_SITE_GATE] = {DQ_SITE_LINEAR, DQ_LIN_GATE, "mlp.gate_proj", "ffn_gate", "w1", 6, DQ_TAP_FFN_IN, DQ_DIM_FFN,
                      DQ_DIM_MODEL, false, false, BLOCK(w_gate)},
    [DQ_SITE_UP] = {DQ_SITE_LINEAR, DQ_LIN_UP, "mlp.up_proj", "ffn_up", "w3", 8, DQ_TAP_FFN_IN, DQ_DIM_FFN,
                    DQ_DIM_MODEL, false, false, BLOCK(w_up)},
    [DQ_SITE_DOWN] = {DQ_SITE_LINEAR, DQ_LIN_DOWN, "mlp.down_proj", "ffn_down", "w2", 7, DQ_TAP_FFN_HIDDEN,
                      DQ_DIM_MODEL, DQ_DIM_FFN, false, false, BLOCK(w_down)},
    /* the model's own tensors; their place in a llama2.c file is that format's business */
    [DQ_SITE_TOKEN_EMBD] = {DQ_SITE_EMBEDDING, -1, "model.embed_tokens", "token_embd", "tok_embeddings", -1,
                            DQ_TAP_NONE, DQ_DIM_VOCAB, DQ_DIM_MODEL, false, false, MODEL(tok_embeddings)},
    [DQ_SITE_OUTPUT_NORM] = {DQ_SITE_NORM, -1, "model.norm", "output_norm", "norm", -1, DQ_TAP_NONE, DQ_DIM_MODEL,
                             DQ_DIM_NONE, false, false, MODEL(final_norm)},
    [DQ_SITE_OUTPUT] = {DQ_SITE_LINEAR, -1, "lm_head", "output", "output", -1, DQ_TAP_HEAD_IN, DQ_DIM_VOCAB,
                        DQ_DIM_MODEL, false, false, MODEL(output)},
};
#undef BLOCK
#undef MODEL

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

const float **dq_site_model_tensor(dq_model *m, const dq_site *s) {
    return (const float **)(void *)((char *)m + s->offset);
}

const float *dq_site_model_get(const dq_model *m, const dq_site *s) {
    return *(const float *const *)(const void *)((const char *)m + s->offset);
}

int dq_site_hf_module(const dq_site *s, int layer, char *buf, size_t cap) {
    if (!s->per_block) return snprintf(buf, cap, "%s", s->hf);
    return snprintf(buf, cap, "model.layers.%d.%s", layer, s->hf);
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
