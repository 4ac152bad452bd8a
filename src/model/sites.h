/* One table of a Llama-family model's tensors ("sites"), as llama.cpp keeps
 * LLM_TENSOR_NAMES and tensor categories (llama-arch.cpp, llama-quant.cpp):
 * each row says what a tensor is (linear, norm, bias, embedding), its names in
 * every format, its shape in config dimensions, the forward input (tap) a
 * linear reads and where its pointer lives. Loaders, writers, the forward
 * pass's messages, the presets and the quantization pipeline read the rows
 * instead of spelling the tensors out; a new block tensor is one new row.
 * Ownership: the table and its strings are static and read-only; nothing
 * here allocates, and the accessors return pointers into the caller's model.
 * Forward order (norm, q/k/v, attention, o, norm, gate/up, down) stays
 * written out in forward.c's block(), which emits the taps named here. */
#ifndef DQ_SITES_H
#define DQ_SITES_H
#include <stdbool.h>
#include <stddef.h>

#include "model/model.h"

/* The inputs of the linears that the forward pass can show a caller. */
typedef enum {
    DQ_TAP_NONE = -1,  /* not a linear (norms, biases, the embedding lookup) */
    DQ_TAP_ATTN_IN,    /* normed x: input of q, k, v   (T, dim) */
    DQ_TAP_ATTN_OUT,   /* attention output: input of o  (T, n_heads*head_dim) */
    DQ_TAP_FFN_IN,     /* normed x: input of gate, up  (T, dim) */
    DQ_TAP_FFN_HIDDEN, /* silu(gate)*up: input of down (T, hidden_dim) */
    DQ_TAP_HEAD_IN,    /* final-normed x: input of the output head (T, dim); from dq_final_norm, not a block */
    DQ_TAP_COUNT
} dq_tap;

#define DQ_TAP_MAX_SITES 4 /* linears reading one tap: q, k, v (+ room) */

typedef enum { DQ_SITE_LINEAR, DQ_SITE_NORM, DQ_SITE_BIAS, DQ_SITE_EMBEDDING } dq_site_role;

/* A named config dimension; a shape is (rows, cols) of these. */
typedef enum {
    DQ_DIM_NONE,  /* cols of a vector */
    DQ_DIM_MODEL, /* dim */
    DQ_DIM_FFN,   /* hidden_dim */
    DQ_DIM_Q,     /* n_heads*head_dim */
    DQ_DIM_KV,    /* n_kv_heads*head_dim */
    DQ_DIM_VOCAB, /* vocab_size */
} dq_dim;

/* Row ids of DQ_SITES. A block's rows come first, in the order both writers
 * (GGUF, Hugging Face safetensors) put them in a file; then the model's. */
typedef enum {
    DQ_SITE_ATTN_NORM, DQ_SITE_Q, DQ_SITE_K, DQ_SITE_V, DQ_SITE_Q_BIAS, DQ_SITE_K_BIAS, DQ_SITE_V_BIAS, DQ_SITE_O,
    DQ_SITE_FFN_NORM, DQ_SITE_GATE, DQ_SITE_UP, DQ_SITE_DOWN,
    DQ_SITE_PER_BLOCK,
    DQ_SITE_TOKEN_EMBD = DQ_SITE_PER_BLOCK, DQ_SITE_OUTPUT_NORM, DQ_SITE_OUTPUT,
    DQ_SITE_COUNT
} dq_site_id;

typedef struct {
    dq_site_role role;
    int lin;             /* DQ_LIN_* of a block linear; -1 for every other row (the head included) */
    const char *hf;      /* Hugging Face module: "self_attn.q_proj" (after "model.layers.N.") or "lm_head" */
    const char *gguf;    /* GGUF stem: "attn_q" (after "blk.N.") or "token_embd" */
    const char *llama2c; /* llama2.c name ("wq"); NULL: not in a llama2.c file */
    int llama2c_rank;    /* place among a block's kinds in a llama2.c file (its own order); -1: none */
    dq_tap tap;          /* the forward input a linear reads; DQ_TAP_NONE otherwise */
    dq_dim rows, cols;   /* rows = output features; cols DQ_DIM_NONE: a vector of `rows` */
    bool rope_rows;      /* rows are per-head RoPE pairs, reordered between interleaved and rotate-half layouts */
    bool optional;       /* present only with cfg.qkv_bias (q/k/v biases) */
    bool per_block;      /* its pointer is in dq_layer; else in dq_model */
    bool per_expert;     /* one tensor per expert (room for MoE): false for every row today */
    size_t offset;       /* of its `const float *` in dq_layer (per_block) or dq_model */
} dq_site;

extern const dq_site DQ_SITES[DQ_SITE_COUNT];

/* The row of block linear `lin`, which must be a DQ_LIN_* (0 <= lin < DQ_LIN_PER_BLOCK;
 * the head and the embedding are DQ_SITES[DQ_SITE_OUTPUT] / [DQ_SITE_TOKEN_EMBD]). Never NULL. */
const dq_site *dq_site_of_linear(int lin);
/* Whether a model with config c has the tensor (biases only with qkv_bias). */
bool dq_site_present(const dq_site *s, const dq_config *c);
int dq_dim_size(const dq_config *c, dq_dim d);
/* (rows, cols) from the config; *cols is 0 for a vector. */
void dq_site_shape(const dq_site *s, const dq_config *c, int *rows, int *cols);
/* The number of floats of the tensor: rows x cols, or rows for a vector. */
size_t dq_site_elems(const dq_site *s, const dq_config *c);

/* The slot of a per_block site in block L, writable: loaders bind into it and
 * the pipeline installs quantized weights through it. The pointer it holds
 * may be NULL (an absent optional site, a block not yet loaded). */
const float **dq_site_tensor(dq_layer *L, const dq_site *s);
/* The tensor of a per_block site in block L (NULL when absent), read-only. */
const float *dq_site_get(const dq_layer *L, const dq_site *s);
/* The slot of a model-level site (!per_block) in m. */
const float **dq_site_model_tensor(dq_model *m, const dq_site *s);
/* Any site's tensor in m, read-only: block `layer`'s for a per_block site
 * (0 <= layer < n_layers), the model's own otherwise (layer ignored). */
const float *dq_site_data(const dq_model *m, int layer, const dq_site *s);

/* The tensor of a site in block `layer` (ignored for model-level sites),
 * writable, for transforms that rewrite weights before quantization (norms,
 * embedding and head included): a tensor the model does not own (mapped from
 * the file) is first copied into a model-owned buffer and the model points to
 * the copy. A tied model stays tied when its embedding is written (both
 * point to the copy) and is untied when its head is written (the embedding
 * keeps its values). NULL with err set when the tensor is absent or memory
 * runs out. */
float *dq_site_writable(dq_model *m, int layer, const dq_site *s, dq_error *err);

/* The input shard (0..m->n_shards-1) holding a site's tensor in block
 * `layer` (ignored for model-level sites); -1 when the model came from one
 * file or the tensor from none (a tied head). Set records it (loaders). */
int dq_site_shard(const dq_model *m, const dq_site *s, int layer);
void dq_site_set_shard(dq_model *m, const dq_site *s, int layer, int shard);
/* Elements of m->site_shard: every site of every block, then the model's. */
size_t dq_site_shard_slots(const dq_config *c);

/* Names of a site's tensor in block `layer` (ignored for model-level sites)
 * into buf (cap bytes, always terminated); return snprintf's count:
 *   hf_module "model.layers.3.self_attn.q_proj"   hf_name   "model.layers.3.self_attn.q_proj.weight"
 *   gguf_name "blk.3.attn_q.weight"                (".bias" for a bias) */
int dq_site_hf_module(const dq_site *s, int layer, char *buf, size_t cap);
int dq_site_hf_name(const dq_site *s, int layer, char *buf, size_t cap);
int dq_site_gguf_name(const dq_site *s, int layer, char *buf, size_t cap);

/* A site's tensor in one block of one model, as a format names it. */
typedef enum { DQ_NAMES_HF, DQ_NAMES_GGUF } dq_naming;
typedef struct {
    char name[160];  /* "model.layers.3.self_attn.q_proj.weight" or "blk.3.attn_q.weight" */
    int rows, cols;  /* cols 0: a vector */
} dq_site_ref;
void dq_site_ref_of(const dq_site *s, const dq_config *c, int layer, dq_naming naming, dq_site_ref *out);
#endif
