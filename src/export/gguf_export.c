#include "export/gguf_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "model/sites.h"
#include "util/error.h"
#include "util/half.h"

/* llama_ftype for general.file_type (display only in llama.cpp) */
static uint32_t file_type(dq_ggml_type t) {
    switch (t) {
    case DQ_GGML_F16: return 1;
    case DQ_GGML_Q8_0: return 7;
    case DQ_GGML_BF16: return 32;
    default: return 0;
    }
}

/* ---- metadata ------------------------------------------------------------------ */

static void set_arch(dq_gguf_writer *w, const char *arch, const char *key, uint32_t v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    dq_gguf_set_u32(w, k, v);
}

static void set_arch_f32(dq_gguf_writer *w, const char *arch, const char *key, float v) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    dq_gguf_set_f32(w, k, v);
}

static void write_hparams(dq_gguf_writer *w, const dq_model *m, const dq_gguf_export_opts *o, const char *arch) {
    const dq_config *c = &m->cfg;
    dq_gguf_set_str(w, "general.architecture", arch);
    dq_gguf_set_str(w, "general.name", o->name ? o->name : "dashq");
    dq_gguf_set_u32(w, "general.file_type", o->file_type ? o->file_type : file_type(o->type));
    dq_gguf_set_u32(w, "general.quantization_version", 2);
    set_arch(w, arch, "context_length", (uint32_t)c->seq_len);
    set_arch(w, arch, "embedding_length", (uint32_t)c->dim);
    set_arch(w, arch, "block_count", (uint32_t)c->n_layers);
    set_arch(w, arch, "feed_forward_length", (uint32_t)c->hidden_dim);
    set_arch(w, arch, "attention.head_count", (uint32_t)c->n_heads);
    set_arch(w, arch, "attention.head_count_kv", (uint32_t)c->n_kv_heads);
    set_arch(w, arch, "rope.dimension_count", (uint32_t)c->head_dim);
    if (c->head_dim * c->n_heads != c->dim) {
        set_arch(w, arch, "attention.key_length", (uint32_t)c->head_dim);
        set_arch(w, arch, "attention.value_length", (uint32_t)c->head_dim);
    }
    set_arch(w, arch, "vocab_size", (uint32_t)c->vocab_size);
    set_arch_f32(w, arch, "rope.freq_base", c->rope_theta);
    set_arch_f32(w, arch, "attention.layer_norm_rms_epsilon", c->norm_eps);
    if (c->rope_scaling == DQ_ROPE_SCALING_LINEAR) {
        char k[128];
        snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
        dq_gguf_set_str(w, k, "linear");
        set_arch_f32(w, arch, "rope.scaling.factor", c->rope_factor);
    }
}

/* ---- tokenizer ------------------------------------------------------------------- */

static uint8_t gguf_token_type(const dq_tokenizer *t, int i) {
    uint8_t ty = t->types[i];
    return ty >= 1 && ty <= 6 ? ty : DQ_PIECE_NORMAL;
}

/* Sentencepiece-style vocabularies stored as ranked merges (tokenizer.json)
 * become llama.cpp "llama" scores: a merged piece scores −(rank of the first
 * merge producing it), so the highest score is the earliest merge. */
static void scores_from_merges(const dq_tokenizer *t, const int32_t *pairs, size_t n, float *scores) {
    for (int i = 0; i < t->n_vocab; i++) scores[i] = -1e9f;
    char buf[1024];
    for (size_t r = n; r-- > 0;) {
        int32_t a = pairs[2 * r], b = pairs[2 * r + 1];
        if (a < 0 || b < 0 || t->piece_len[a] + t->piece_len[b] > sizeof buf) continue;
        memcpy(buf, t->pieces[a], t->piece_len[a]);
        memcpy(buf + t->piece_len[a], t->pieces[b], t->piece_len[b]);
        int32_t id = dq_str_map_get(&t->lookup, buf, t->piece_len[a] + t->piece_len[b]);
        if (id >= 0) scores[id] = -(float)r;
    }
}

static dq_status write_merges(dq_gguf_writer *w, const dq_tokenizer *t, const int32_t *pairs, size_t n,
                              dq_error *err) {
    const char **s = malloc((n ? n : 1) * sizeof *s);
    uint32_t *len = malloc((n ? n : 1) * sizeof *len);
    char *buf = NULL;
    size_t total = 0, k = 0;
    for (size_t r = 0; r < n; r++)
        if (pairs[2 * r] >= 0) total += t->piece_len[pairs[2 * r]] + t->piece_len[pairs[2 * r + 1]] + 1;
    buf = malloc(total ? total : 1);
    if (!s || !len || !buf) {
        free(s), free(len), free(buf);
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory writing merges");
    }
    char *p = buf;
    for (size_t r = 0; r < n; r++) {
        int32_t a = pairs[2 * r], b = pairs[2 * r + 1];
        if (a < 0) continue;
        s[k] = p;
        memcpy(p, t->pieces[a], t->piece_len[a]), p += t->piece_len[a];
        *p++ = ' ';
        memcpy(p, t->pieces[b], t->piece_len[b]), p += t->piece_len[b];
        len[k] = (uint32_t)(p - s[k]);
        k++;
    }
    dq_gguf_set_str_array(w, "tokenizer.ggml.merges", s, len, k);
    free(s), free(len), free(buf);
    return DQ_OK;
}

/* llama2.c's tokenizer.bin spells the sentencepiece space "▁" as " "; GGUF
 * "llama" vocabularies spell it "▁". Returns a malloc'ed copy (or NULL). */
static char *metaspace(const char *s, uint32_t n, uint32_t *out_len) {
    char *o = malloc(3 * (size_t)n + 1), *p = o;
    if (!o) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (s[i] == ' ') memcpy(p, "\xe2\x96\x81", 3), p += 3;
        else *p++ = s[i];
    }
    *out_len = (uint32_t)(p - o);
    return o;
}

static dq_status write_tokenizer(dq_gguf_writer *w, const dq_tokenizer *t, int n_vocab, dq_error *err) {
    if (t->n_vocab > n_vocab)
        return dq_fail(err, DQ_ERR_ARG, "%s: tokenizer has %d tokens, the model %d", t->path, t->n_vocab, n_vocab);
    if (t->byte_level && !dq_tok_pre_name(t))
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: its pre-tokenizer regex has no llama.cpp name; cannot write GGUF",
                       t->path);
    bool spm = !t->byte_level;
    const char **s = calloc((size_t)n_vocab, sizeof *s);
    uint32_t *len = calloc((size_t)n_vocab, sizeof *len);
    int32_t *types = calloc((size_t)n_vocab, sizeof *types);
    float *scores = calloc((size_t)n_vocab, sizeof *scores);
    char(*pad)[24] = calloc((size_t)(n_vocab - t->n_vocab) + 1, sizeof *pad);
    size_t n_merges = 0;
    int32_t *pairs = t->mode == DQ_MERGE_BY_RANK ? dq_tok_ranked_merges(t, &n_merges) : NULL;
    dq_status st = DQ_OK;
    if (!s || !len || !types || !scores || !pad || (t->mode == DQ_MERGE_BY_RANK && !pairs)) {
        st = dq_fail(err, DQ_ERR_NOMEM, "out of memory writing the tokenizer");
        goto done;
    }
    for (int i = 0; i < n_vocab; i++) {
        bool real = i < t->n_vocab;
        if (!real) snprintf(pad[i - t->n_vocab], sizeof pad[0], "[PAD%d]", i); /* as llama.cpp's converter pads */
        s[i] = real ? t->pieces[i] : pad[i - t->n_vocab];
        len[i] = real ? t->piece_len[i] : (uint32_t)strlen(s[i]);
        types[i] = real ? gguf_token_type(t, i) : DQ_PIECE_UNUSED;
        if (real && t->mode == DQ_MERGE_BY_SCORE) scores[i] = t->scores[i];
    }
    if (spm && pairs) scores_from_merges(t, pairs, n_merges, scores);
    char **respelled = NULL;
    if (spm && t->space && !strcmp(t->space, " ")) {
        respelled = calloc((size_t)t->n_vocab, sizeof *respelled);
        for (int i = 0; respelled && i < t->n_vocab; i++)
            if (types[i] != DQ_PIECE_BYTE && memchr(t->pieces[i], ' ', t->piece_len[i]))
                s[i] = respelled[i] = metaspace(t->pieces[i], t->piece_len[i], &len[i]);
    }
    dq_gguf_set_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    if (!spm) dq_gguf_set_str(w, "tokenizer.ggml.pre", dq_tok_pre_name(t));
    dq_gguf_set_str_array(w, "tokenizer.ggml.tokens", s, len, (size_t)n_vocab);
    if (spm) dq_gguf_set_array(w, "tokenizer.ggml.scores", DQ_GGUF_F32, scores, (size_t)n_vocab);
    dq_gguf_set_array(w, "tokenizer.ggml.token_type", DQ_GGUF_I32, types, (size_t)n_vocab);
    if (!spm) st = write_merges(w, t, pairs, n_merges, err);
    if (t->bos >= 0) dq_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos);
    if (t->eos >= 0) dq_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos);
    if (t->unk >= 0) dq_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk);
    dq_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", t->add_bos);
    if (spm) dq_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", t->prepend != DQ_PREPEND_NONE);
    if (t->chat_template) dq_gguf_set_str(w, "tokenizer.chat_template", t->chat_template); /* for llama.cpp's chat */
    for (int i = 0; respelled && i < t->n_vocab; i++) free(respelled[i]);
    free(respelled);
done:
    free(s), free(len), free(types), free(scores), free(pad), free(pairs);
    return st;
}

/* ---- tensors ------------------------------------------------------------------- */

/* The file is laid out once (every tensor's name, type, shape and size, from
 * the config and the quantized layers' dims), then each tensor's bytes are
 * written when they are final: a block's when the pipeline emits it, the
 * embedding, final norm and head at the end (issue #15: a lazily loaded
 * model is held one block at a time). The traversal below serves both: in
 * layout mode it announces, in data mode it encodes and writes. */
typedef struct {
    dq_gguf_writer *w;
    const char *path;
    dq_error *err;
    dq_status st;
    bool layout;
    bool mark; /* the tensors are already in a reopened file: count them as written */
} sink;

static bool is_inf16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return (h & 0x7fffu) == 0x7c00u;
}

/* A finite fp32 weight must stay finite when narrowed: F16 (and Q8_0's F16
 * scale, amax/127) overflow past ±65504, BF16 only next to FLT_MAX. An inf in
 * the file is one our loader refuses and llama.cpp computes garbage with, so
 * the whole file is refused, naming the tensor and the value. */
static void check_narrowed(sink *s, const char *name, const float *x, size_t n, dq_ggml_type type,
                           const uint8_t *out) {
    size_t bad = n;
    if (type == DQ_GGML_F16 || type == DQ_GGML_BF16) {
        for (size_t i = 0; i < n && bad == n; i++)
            if (is_inf16(out + 2 * i) && isfinite(x[i])) bad = i;
    } else if (type == DQ_GGML_Q8_0) {
        for (size_t k = 0; k < n / 32 && bad == n; k++)
            if (is_inf16(out + 34 * k))
                for (size_t j = 32 * k; j < 32 * k + 32 && bad == n; j++)
                    if ((dq_f32_to_f16(fabsf(x[j]) / 127.0f) & 0x7fffu) == 0x7c00u) bad = j;
    }
    if (bad == n || s->st) return;
    s->st = dq_fail(s->err, DQ_ERR_NUMERIC,
                    "%s: tensor %s: value %g (element %zu) is beyond the range of %s%s; nothing was written: "
                    "use --type BF16 or F32",
                    s->path, name, (double)x[bad], bad, dq_ggml_info(type)->name,
                    type == DQ_GGML_Q8_0 ? " (its F16 block scale overflows)" : "");
}

/* Announces the tensor (layout mode) or writes its bytes, which it frees. */
static void emit(sink *s, const char *name, dq_ggml_type type, int rows, int cols, uint8_t *out, size_t bytes) {
    int64_t ne[2] = {cols, rows};
    if (s->layout) dq_gguf_add_tensor_info(s->w, name, type, rows > 1 ? 2 : 1, ne, bytes);
    else if (s->mark && !s->st) s->st = dq_gguf_stream_mark(s->w, name, s->err);
    else if (s->mark) (void)0;
    else if (!s->st && !out) s->st = dq_fail(s->err, DQ_ERR_NOMEM, "%s: out of memory for tensor %s", s->path, name);
    else if (!s->st) s->st = dq_gguf_stream_put(s->w, name, out, bytes, s->err);
    free(out);
}

static void add_weight(sink *s, const char *name, const float *x, int rows, int cols, dq_ggml_type type,
                       int permute_hd) {
    if (dq_ggml_info(type)->block > 1 && cols % dq_ggml_info(type)->block)
        type = DQ_GGML_F16; /* llama.cpp's fallback */
    size_t n = (size_t)rows * (size_t)cols, bytes = dq_ggml_row_bytes(type, (size_t)cols) * (size_t)rows;
    if (!s->layout && !s->mark && !x && !s->st) /* a lazily loaded model's deferred tensor (dq_model_block_load) */
        s->st = dq_fail(s->err, DQ_ERR_ARG, "%s: tensor %s is not loaded", s->path, name);
    if (s->layout || s->mark || s->st) return emit(s, name, type, rows, cols, NULL, bytes);
    uint8_t *out = malloc(bytes ? bytes : 1);
    float *tmp = type == DQ_GGML_Q8_0 || permute_hd ? malloc(n * sizeof *tmp) : NULL;
    if (out && (tmp || !(type == DQ_GGML_Q8_0 || permute_hd))) {
        const float *src = x;
        if (permute_hd) {
            for (int r = 0; r < rows; r++)
                memcpy(tmp + (size_t)r * cols, x + (size_t)dq_half_row_of_interleaved_row(r, permute_hd) * cols,
                       (size_t)cols * 4);
            src = tmp;
        }
        if (type == DQ_GGML_F32) memcpy(out, src, n * 4);
        for (size_t i = 0; type == DQ_GGML_F16 && i < n; i++) {
            uint16_t h = dq_f32_to_f16(src[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        for (size_t i = 0; type == DQ_GGML_BF16 && i < n; i++) {
            uint16_t h = dq_f32_to_bf16(src[i]);
            memcpy(out + 2 * i, &h, 2);
        }
        if (type == DQ_GGML_Q8_0) dq_ggml_quantize_q8_0(src, n, out);
        check_narrowed(s, name, src, n, type, out);
    } else {
        free(out);
        out = NULL;
    }
    free(tmp);
    emit(s, name, type, rows, cols, out, bytes);
}

/* A quantized layer's blocks, rows reordered like add_weight's. */
static void add_blocks(sink *s, const char *name, const dq_qtensor *t, int permute_hd) {
    dq_ggml_type type = t->grid->type;
    size_t rb = dq_ggml_row_bytes(type, (size_t)t->cols), bytes = rb * (size_t)t->rows;
    if (!s->layout && !s->mark && !t->blocks && !s->st)
        s->st = dq_fail(s->err, DQ_ERR_ARG, "%s: tensor %s: its blocks were not given", s->path, name);
    if (s->layout || s->mark || s->st) return emit(s, name, type, t->rows, t->cols, NULL, bytes);
    uint8_t *out = malloc(bytes ? bytes : 1);
    for (int r = 0; out && r < t->rows; r++)
        dq_qtensor_encode_row(t, permute_hd ? dq_half_row_of_interleaved_row(r, permute_hd) : r, out + (size_t)r * rb);
    emit(s, name, type, t->rows, t->cols, out, bytes);
}

static void put_matrix(sink *w, const char *name, const float *x, int rows, int cols, dq_ggml_type type,
                       int permute_hd, const dq_qlayer *ql) {
    if (ql && ql->qt.grid) add_blocks(w, name, &ql->qt, permute_hd);
    else add_weight(w, name, x, rows, cols, ql && ql->ggml_type >= 0 ? (dq_ggml_type)ql->ggml_type : type, permute_hd);
}

/* Block i's tensors; lin: its seven quantized layers (NULL: none). */
static void add_layer(sink *w, const dq_model *m, const dq_config *c, int i, dq_ggml_type type, bool permute,
                      const dq_qlayer *const *lin) {
    for (int k = 0; k < DQ_SITE_PER_BLOCK; k++) {
        const dq_site *s = &DQ_SITES[k];
        if (!dq_site_present(s, c)) continue;
        dq_site_ref t;
        dq_site_ref_of(s, c, i, DQ_NAMES_GGUF, &t);
        const float *x = w->layout ? NULL : dq_site_get(&m->layers[i], s);
        if (s->role != DQ_SITE_LINEAR) { /* norms, biases: F32 rows; biases come with qwen2, never permuted */
            add_weight(w, t.name, x, 1, t.rows, DQ_GGML_F32, 0);
            continue;
        }
        /* llama.cpp rotates llama heads in interleaved pairs: HF rows go back to that order */
        int phd = permute && s->rope_rows ? c->head_dim : 0;
        put_matrix(w, t.name, x, t.rows, t.cols, type, phd, lin ? lin[s->lin] : NULL);
    }
}

/* The GGUF name of the model's own site `id`, in buf (64 bytes). */
static const char *model_site_name(dq_site_id id, char buf[64]) {
    dq_site_gguf_name(&DQ_SITES[id], 0, buf, 64);
    return buf;
}

/* Llama-3 context scaling as llama.cpp stores it: one divisor per RoPE pair
 * (rope_freqs.weight). *out stays NULL when the model has none. */
static dq_status rope_freqs(const dq_model *m, const char *path, float **out, dq_error *err) {
    const dq_config *c = &m->cfg;
    *out = NULL;
    if (!m->rope_freq_factors && c->rope_scaling != DQ_ROPE_SCALING_LLAMA3) return DQ_OK;
    float *f = malloc((size_t)(c->head_dim / 2) * sizeof *f);
    if (!f) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < c->head_dim / 2; i++)
        f[i] = m->rope_freq_factors
                   ? m->rope_freq_factors[i]
                   : (float)dq_rope_freq_divisor(c, 1.0 / pow((double)c->rope_theta, 2.0 * i / c->head_dim));
    *out = f;
    return DQ_OK;
}

struct dq_gguf_export {
    dq_gguf_writer *w;
    char path[PATH_MAX];
    dq_config cfg; /* the file's: a rotation unties the head */
    dq_gguf_export_opts o;
    bool permute;
    dq_qlayer *shells; /* the layout's layers: types and dims */
    int n_shells;
    const dq_qlayer **lin; /* (n_layers, DQ_LIN_PER_BLOCK) into shells */
    const dq_qlayer *head, *embed;
    bool *block_done, embed_done, head_done;
    const dq_qlayer *pending[DQ_LIN_PER_BLOCK]; /* the block being put */
    int n_pending;
};

static bool index_layers(dq_gguf_export *x) {
    if (!(x->lin = calloc((size_t)x->cfg.n_layers * DQ_LIN_PER_BLOCK, sizeof *x->lin))) return false;
    for (int i = 0; i < x->n_shells; i++) {
        const dq_qlayer *ql = &x->shells[i];
        if (dq_qlayer_is(ql, DQ_SITE_OUTPUT)) x->head = ql;
        else if (dq_qlayer_is(ql, DQ_SITE_TOKEN_EMBD)) x->embed = ql;
        else if (ql->layer >= 0 && ql->layer < x->cfg.n_layers && ql->site->lin >= 0)
            x->lin[(size_t)ql->layer * DQ_LIN_PER_BLOCK + ql->site->lin] = ql;
    }
    return true;
}

/* The embedding (a tied one is the head: its quantized form when there is
 * one), the final norm, an untied head and the RoPE divisors: announced, or
 * written from m where `which` says (1 embedding, 2 norm, 4 head, 8 freqs). */
static void model_tensors(dq_gguf_export *x, sink *k, const dq_model *m, unsigned which, const dq_qlayer *embed,
                          const dq_qlayer *head) {
    const dq_config *c = &x->cfg;
    char name[64];
    if (which & 1)
        put_matrix(k, model_site_name(DQ_SITE_TOKEN_EMBD, name), m->tok_embeddings, c->vocab_size, c->dim, x->o.type,
                   0, embed);
    if (which & 2) add_weight(k, model_site_name(DQ_SITE_OUTPUT_NORM, name), m->final_norm, 1, c->dim, DQ_GGML_F32, 0);
    if ((which & 4) && !c->tied_embeddings)
        put_matrix(k, model_site_name(DQ_SITE_OUTPUT, name), m->output, c->vocab_size, c->dim, x->o.type, 0, head);
    if (which & 8) {
        float *freqs = NULL;
        if (!k->st) k->st = rope_freqs(m, x->path, &freqs, k->err);
        if (freqs) add_weight(k, "rope_freqs.weight", freqs, 1, c->head_dim / 2, DQ_GGML_F32, 0);
        free(freqs);
    }
}

void dq_gguf_export_abort(dq_gguf_export *x) {
    if (!x) return;
    dq_gguf_writer_free(x->w); /* removes an uncommitted temporary */
    free(x->shells);
    free(x->lin);
    free(x->block_done);
    free(x);
}

dq_status dq_gguf_export_begin(const char *path, const dq_model *m, const dq_config *c, const dq_tokenizer *t,
                               const dq_gguf_export_opts *o, const dq_qlayer *layout, int n, dq_gguf_export **out,
                               dq_error *err) {
    *out = NULL;
    /* qwen2 keeps rotate-half heads (llama.cpp's NEOX rope); llama needs Meta order */
    if (c->qkv_bias && c->rope_style != DQ_ROPE_HALF)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: q/k/v biases with interleaved RoPE have no GGUF architecture",
                       m->path);
    dq_gguf_export *x = calloc(1, sizeof *x);
    if (!x || !(x->w = dq_gguf_writer_new()) || !(x->shells = malloc((size_t)(n ? n : 1) * sizeof *x->shells)) ||
        !(x->block_done = calloc((size_t)c->n_layers, sizeof *x->block_done))) {
        dq_gguf_export_abort(x);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(x->path, sizeof x->path, "%s", path);
    x->cfg = *c;
    x->o = *o;
    x->o.quant = NULL;
    x->permute = !c->qkv_bias && c->rope_style == DQ_ROPE_HALF;
    if (n) memcpy(x->shells, layout, (size_t)n * sizeof *layout);
    x->n_shells = n;
    write_hparams(x->w, m, o, c->qkv_bias ? "qwen2" : "llama");
    dq_status st = write_tokenizer(x->w, t, c->vocab_size, err);
    if (!st && !index_layers(x)) st = dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    sink k = {x->w, x->path, err, st, true, false};
    const dq_qlayer *embed = c->tied_embeddings && x->head ? x->head : x->embed;
    if (!st) model_tensors(x, &k, m, 1, embed, x->head);
    for (int i = 0; !k.st && i < c->n_layers; i++)
        add_layer(&k, m, c, i, o->type, x->permute, x->lin + (size_t)i * DQ_LIN_PER_BLOCK);
    if (!k.st) model_tensors(x, &k, m, 2 | 4 | 8, embed, x->head);
    st = k.st;
    if (!st) st = dq_gguf_stream_begin_at(x->w, path, o->resume_tmp, o->resume_reopen, err);
    if (st) {
        dq_gguf_export_abort(x);
        return st;
    }
    *out = x;
    return DQ_OK;
}

/* Block l from m, with the given quantized layers (or the layout's, which
 * must then have none with a grid: a layer announced but never given). */
static dq_status write_block(dq_gguf_export *x, const dq_model *m, int l, const dq_qlayer *const *lin, bool mark,
                             dq_error *err) {
    sink k = {x->w, x->path, err, DQ_OK, false, mark};
    add_layer(&k, m, &x->cfg, l, x->o.type, x->permute, lin);
    x->block_done[l] = true;
    return k.st;
}

static dq_status put_or_mark(dq_gguf_export *x, const dq_model *m, const dq_qlayer *layers, int n, bool mark,
                             dq_error *err) {
    for (int i = 0; i < n; i++) {
        const dq_qlayer *ql = &layers[i];
        sink k = {x->w, x->path, err, DQ_OK, false, mark};
        if (dq_qlayer_is(ql, DQ_SITE_OUTPUT)) { /* a tied head is the embedding */
            model_tensors(x, &k, m, x->cfg.tied_embeddings ? 1 : 4, ql, ql);
            x->head_done = true;
            x->embed_done |= x->cfg.tied_embeddings;
        } else if (dq_qlayer_is(ql, DQ_SITE_TOKEN_EMBD)) {
            model_tensors(x, &k, m, 1, ql, NULL);
            x->embed_done = true;
        } else {
            if (x->n_pending && x->pending[0]->layer != ql->layer)
                return dq_fail(err, DQ_ERR_ARG, "%s: block %d given before block %d was complete", x->path, ql->layer,
                               x->pending[0]->layer);
            x->pending[x->n_pending++] = ql;
            if (x->n_pending < DQ_LIN_PER_BLOCK) continue;
            const dq_qlayer *lin[DQ_LIN_PER_BLOCK] = {0};
            for (int j = 0; j < DQ_LIN_PER_BLOCK; j++) lin[x->pending[j]->site->lin] = x->pending[j];
            x->n_pending = 0;
            k.st = write_block(x, m, ql->layer, lin, mark, err);
        }
        if (k.st) return k.st;
    }
    return DQ_OK;
}

dq_status dq_gguf_export_put(dq_gguf_export *x, const dq_model *m, const dq_qlayer *layers, int n, dq_error *err) {
    return put_or_mark(x, m, layers, n, false, err);
}

dq_status dq_gguf_export_put_block(dq_gguf_export *x, const dq_model *m, int l, dq_error *err) {
    if (l < 0 || l >= x->cfg.n_layers || x->block_done[l])
        return dq_fail(err, DQ_ERR_ARG, "%s: block %d is not one still to write", x->path, l);
    for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) {
        const dq_qlayer *ql = x->lin[(size_t)l * DQ_LIN_PER_BLOCK + k];
        if (ql && ql->qt.grid)
            return dq_fail(err, DQ_ERR_ARG, "%s: block %d has quantized layers to come (dq_gguf_export_put)", x->path, l);
    }
    return write_block(x, m, l, x->lin + (size_t)l * DQ_LIN_PER_BLOCK, false, err);
}

dq_status dq_gguf_export_put_embedding(dq_gguf_export *x, const dq_model *m, dq_error *err) {
    const dq_qlayer *embed = x->cfg.tied_embeddings && x->head ? x->head : x->embed;
    if (x->embed_done || (embed && embed->qt.grid))
        return dq_fail(err, DQ_ERR_ARG, "%s: the embedding is %s", x->path,
                       x->embed_done ? "written already" : "a quantized layer to come (dq_gguf_export_put)");
    sink k = {x->w, x->path, err, DQ_OK, false, false};
    model_tensors(x, &k, m, 1, embed, x->head);
    x->embed_done = true;
    return k.st;
}

dq_status dq_gguf_export_skip(dq_gguf_export *x, const dq_model *m, const dq_qlayer *layers, int n, dq_error *err) {
    return put_or_mark(x, m, layers, n, true, err);
}

dq_status dq_gguf_export_sync(dq_gguf_export *x, dq_error *err) { return dq_gguf_stream_sync(x->w, err); }

dq_status dq_gguf_export_finish(dq_gguf_export *x, const dq_model *m, dq_error *err) {
    dq_status st = x->n_pending ? dq_fail(err, DQ_ERR_ARG, "%s: block %d is incomplete", x->path, x->pending[0]->layer)
                   : m->cfg.tied_embeddings != x->cfg.tied_embeddings
                       ? dq_fail(err, DQ_ERR_ARG, "%s: the head was laid out %s", x->path,
                                 x->cfg.tied_embeddings ? "tied" : "untied")
                       : DQ_OK;
    for (int l = 0; !st && l < x->cfg.n_layers; l++)
        if (!x->block_done[l]) st = write_block(x, m, l, x->lin + (size_t)l * DQ_LIN_PER_BLOCK, false, err);
    sink k = {x->w, x->path, err, st, false, false};
    if (!st) model_tensors(x, &k, m, (x->embed_done ? 0 : 1) | 2 | (x->head_done ? 0 : 4) | 8, x->embed, x->head);
    st = k.st;
    if (!st) st = dq_gguf_stream_commit(x->w, err);
    dq_gguf_export_abort(x);
    return st;
}

dq_status dq_export_gguf(const char *path, const dq_model *m, const dq_tokenizer *t, const dq_gguf_export_opts *o,
                         dq_error *err) {
    const dq_quant_result *r = o->quant;
    dq_gguf_export *x;
    dq_status st = dq_gguf_export_begin(path, m, &m->cfg, t, o, r ? r->layers : NULL, r ? r->n : 0, &x, err);
    if (st) return st;
    if (r && (st = dq_gguf_export_put(x, m, r->layers, r->n, err))) {
        dq_gguf_export_abort(x);
        return st;
    }
    return dq_gguf_export_finish(x, m, err);
}
