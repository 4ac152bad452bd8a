/* In-memory Llama-family model: config, weight pointers (into mmapped files
 * where the bytes are already fp32, otherwise into owned buffers). */
#ifndef DQ_MODEL_H
#define DQ_MODEL_H
#include "dashq.h"
#include "util/mapped_file.h"

typedef enum { DQ_DTYPE_F32 = 0, DQ_DTYPE_F16, DQ_DTYPE_BF16 } dq_dtype;

size_t dq_dtype_size(dq_dtype t);
const char *dq_dtype_name(dq_dtype t);

typedef struct {
    const float *attn_norm, *ffn_norm;  /* (dim) */
    const float *wq;                    /* (n_heads*head_dim, dim) */
    const float *wk, *wv;               /* (n_kv_heads*head_dim, dim) */
    const float *wo;                    /* (dim, n_heads*head_dim) */
    const float *bq, *bk, *bv;          /* biases, NULL unless cfg.qkv_bias */
    const float *w_gate, *w_up;         /* (hidden_dim, dim) */
    const float *w_down;                /* (dim, hidden_dim) */
} dq_layer;

#define DQ_MAX_MAPS 64

/* Turns n values of a block-quantized source (a GGUF Q8_0, Q4_K, ... tensor;
 * `code` says which) into fp32. */
typedef void (*dq_decode_fn)(int code, const void *src, size_t n, float *out);

/* Writes the n fp32 values of a tensor stored in several pieces (a DASH-Q
 * packed linear: codes, scales, zeros) from ctx; false when out of memory. */
typedef bool (*dq_fill_fn)(const void *ctx, float *out);

/* A block linear left in its mapped file until its block is needed (a model
 * loaded lazily for streaming quantization, issue #15): its slot stays NULL
 * until dq_model_block_load converts it to fp32. */
typedef struct {
    const float **slot;  /* its pointer in m->layers[layer] */
    const void *src;     /* its bytes in one of m->maps */
    dq_dtype dtype;      /* a float source's dtype */
    dq_decode_fn decode; /* a block-quantized source: decode(code, ...); NULL for a float one */
    int code;
    dq_fill_fn fill;     /* a source in pieces: fill(fill_ctx, out); fill_ctx owned (freed with the model) */
    void *fill_ctx;
    size_t n, bytes;     /* its values, and their bytes in the file */
    int layer;           /* its block, DQ_DEFER_HEAD or DQ_DEFER_EMBED */
    char *file, *name;   /* for errors (owned) */
} dq_deferred;

struct dq_model {
    dq_config cfg;
    const float *tok_embeddings; /* (vocab, dim) */
    const float *final_norm;     /* (dim) */
    const float *output;         /* (vocab, dim); == tok_embeddings when tied */
    dq_layer *layers;            /* (n_layers) */
    /* (head_dim/2) divisors of each RoPE pair's frequency, as GGUF stores
     * Llama-3 scaling (rope_freqs.weight); NULL: from cfg's rope_scaling. */
    const float *rope_freq_factors;
    char path[PATH_MAX];
    const char *format;          /* "llama2c", "hf", "dashq" (packed checkpoint), "gguf" */
    dq_dtype dtype;              /* storage dtype of the source's full-precision tensors */
    dq_mapped_file maps[DQ_MAX_MAPS];
    int n_maps;
    void **owned;                /* heap buffers freed with the model */
    size_t n_owned, cap_owned;
    bool lazy;                   /* block linears are deferred, not converted on load */
    bool consumed;               /* a lazy model dq_quantize went through: its blocks are not to be reloaded */
    dq_deferred *deferred;       /* (n_deferred) in load order */
    int n_deferred, cap_deferred;
    /* The input's safetensors shard of every tensor (a Hugging Face folder
     * whose index splits it over n_shards files, numbered in the order of
     * their names; -1: not in a file of its own, e.g. a tied head), which a
     * packed checkpoint follows (issue #15); NULL with one file. Indexed by
     * dq_site_shard (model/sites.h); owned by the model. n_shards: how many
     * files (0 with site_shard NULL). */
    int16_t *site_shard;
    int n_shards;
    /* Block linears the source stores quantized (a GGUF Q4_1 file, a DASH-Q
     * packed checkpoint): how many, and their type ("Q4_1", "INT3 g128";
     * "mixed" when they differ). They are decoded to fp32 on load; quantizing
     * such a model requantizes it (dq_model_source_quant). */
    int n_src_quant;
    char src_quant[24];
};

/* q/k row orders of the two RoPE layouts within a head of hd rows:
 * interleaved (Meta, llama2.c, GGUF) pairs rows (2i, 2i+1); rotate-half
 * (Hugging Face) pairs (i, i+hd/2). Row h*hd + p*hd/2 + i of the half layout
 * is row h*hd + 2i + p of the interleaved one; the two maps are inverses. */
static inline int dq_interleaved_row_of_half_row(int row, int hd) {
    int h = row / hd, r = row % hd, p = r / (hd / 2), i = r % (hd / 2);
    return h * hd + 2 * i + p;
}
static inline int dq_half_row_of_interleaved_row(int row, int hd) {
    int h = row / hd, r = row % hd, i = r / 2, p = r % 2;
    return h * hd + p * (hd / 2) + i;
}

/* The seven linear layers of a block, in pipeline order; model/sites.h has
 * each one's names, shape and input. */
enum { DQ_LIN_Q, DQ_LIN_K, DQ_LIN_V, DQ_LIN_O, DQ_LIN_GATE, DQ_LIN_UP, DQ_LIN_DOWN, DQ_LIN_PER_BLOCK };

/* (rows = output features, cols = input features) of linear layer `kind`
 * (DQ_LIN_*), from its row in DQ_SITES. */
void dq_linear_shape(const dq_config *c, int kind, int *rows, int *cols);

dq_model *dq_model_new(const char *path, const char *format);
/* A loader's record that one block linear was stored as `type` (quantized). */
void dq_model_note_src_quant(dq_model *m, const char *type);
/* Allocates a buffer owned by the model (freed in dq_model_free). */
void *dq_model_alloc(dq_model *m, size_t bytes);
/* The window length when the caller names none (calibration, perplexity):
 * the training context, at most 2048 tokens. */
static inline int dq_default_window(const dq_config *c) { return c->seq_len < 2048 ? c->seq_len : 2048; }
/* Frees a buffer dq_model_alloc gave (no-op for anything else). */
void dq_model_release(dq_model *m, const void *p);
/* Whether p is the start of a buffer the model owns (dq_model_alloc), which
 * may then be written in place; mapped file data is not. */
bool dq_model_owns(const dq_model *m, const void *p);

/* Makes an fp32 view of n elements of raw tensor bytes: points into the map
 * when possible, otherwise converts into an owned buffer. Rejects NaN/Inf,
 * naming the file and tensor. */
dq_status dq_model_tensor(dq_model *m, const char *file, const char *name, const void *src,
                          dq_dtype dtype, size_t n, const float **out, dq_error *err);
/* The same for a block-quantized source of `bytes` bytes that decode turns
 * into n values: on a lazily loaded model a block linear (an untied head or
 * embedding) is deferred like a float one and decoded when its block is
 * loaded; otherwise it is decoded now into an owned buffer. */
dq_status dq_model_tensor_coded(dq_model *m, const char *file, const char *name, const void *src, size_t bytes,
                                dq_decode_fn decode, int code, size_t n, const float **out, dq_error *err);
/* The same for a tensor in pieces (src, bytes: its largest, whose file pages
 * are dropped once it is converted): fill(ctx) writes its n values, now or
 * when its block is loaded. ctx (malloc'd) is the model's from now on, even
 * on error. */
dq_status dq_model_tensor_filled(dq_model *m, const char *file, const char *name, const void *src, size_t bytes,
                                 dq_fill_fn fill, void *ctx, size_t n, const float **out, dq_error *err);

/* Streaming (a lazily loaded model): block l's deferred linears as fp32,
 * checked finite (naming file and tensor) as on an eager load; idempotent.
 * Unload frees them again (whatever the slots then hold: the quantized Ŵ
 * too) and drops their file pages, leaving the slots NULL: the forward pass
 * refuses a block that is not loaded. Both do nothing on an eager model. */
/* l = DQ_DEFER_HEAD: an untied output head, deferred like a block (the
 * pipeline loads it for the head's turn, the writer before its end). */
#define DQ_DEFER_HEAD (-1)
/* l = DQ_DEFER_EMBED: an untied token embedding (a tied one is the head):
 * calibration reads its rows where they are stored (dq_model_embed_rows);
 * the writer, or a GGUF plan's quantization of it, loads it whole. */
#define DQ_DEFER_EMBED (-2)
dq_status dq_model_block_load(dq_model *m, int l, dq_error *err);
void dq_model_block_unload(dq_model *m, int l);
dq_status dq_model_load_all(dq_model *m, dq_error *err);
/* For a writer going through a model block by block (dq_convert): loads
 * block l (or DQ_DEFER_HEAD / DQ_DEFER_EMBED) unless it is present, *held
 * saying whether it did; dq_model_block_let_go unloads only what was held,
 * so a caller's loaded blocks stay loaded. Nothing to do on an eager model. */
dq_status dq_model_block_hold(dq_model *m, int l, bool *held, dq_error *err);
void dq_model_block_let_go(dq_model *m, int l, bool held);
/* out (n, dim) = the embedding rows of tokens (each < vocab_size, checked by
 * the caller), from the fp32 embedding or, deferred, converted from its
 * stored dtype row by row (a non-finite value names file, tensor, token). */
dq_status dq_model_embed_rows(const dq_model *m, const int32_t *tokens, size_t n, float *out, dq_error *err);
/* Whether block l's seven linears are all present. */
bool dq_model_block_ready(const dq_model *m, int l);
/* Every weight in memory: an eager model, or a lazy one whose blocks, embedding and head are all loaded (a forward
 * pass over the whole model can run). */
bool dq_model_in_memory(const dq_model *m);
/* Whether the model's fp32 weights fit budget bytes (0: no limit): what decides between loading a lazily loaded
 * model whole and running it one block at a time. */
bool dq_model_fits(const dq_model *m, size_t budget);

/* Checks the config for sizes that are inconsistent or would overflow. */
dq_status dq_config_validate(const dq_config *c, const char *file, dq_error *err);
/* What cfg's context scaling divides a RoPE frequency f by: 1, the linear
 * factor, or Llama-3's smooth blend (llama.cpp's rope_freqs.weight values). */
double dq_rope_freq_divisor(const dq_config *c, double f);

/* Whether the n bytes at p are a whole llama2.c model: a plausible header
 * and exactly the size it implies (the format has no magic). *c: its config. */
bool dq_llama2c_is_model(const uint8_t *p, size_t n, dq_config *c);
/* The loaders; lazy: block linears stored as F32/F16/BF16 in a mapped file
 * are deferred (dq_deferred) instead of converted. */
dq_status dq_load_llama2c(const char *path, bool lazy, dq_model **out, dq_error *err);
dq_status dq_load_hf(const char *dir, bool lazy, dq_model **out, dq_error *err);
dq_status dq_load_gguf(const char *path, bool lazy, dq_model **out, dq_error *err);
#endif
