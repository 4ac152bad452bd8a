/* The tokenizer stored in a GGUF file (tokenizer.ggml.*): "llama"
 * (sentencepiece BPE: pieces with scores, byte fallback) and "gpt2"
 * (byte-level BPE with ranked merges and a pre-tokenizer named by
 * tokenizer.ggml.pre), interpreted as llama.cpp interprets them. */
#include <string.h>

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

typedef struct {
    const dq_gguf *g;
    dq_tokenizer *t;
    dq_error *err;
} ctx;

static const dq_gguf_kv *array(const ctx *c, const char *key, uint32_t type, uint64_t n) {
    const dq_gguf_kv *kv = dq_gguf_find(c->g, key);
    return kv && kv->type == DQ_GGUF_ARRAY && kv->arr_type == type && (n == 0 || kv->arr_n == n) ? kv : NULL;
}

/* An optional per-token array that is present must be complete: one of the
 * wrong type or length would otherwise be dropped in silence and change how
 * text is split (scores) or which pieces are special (types). */
static dq_status per_token(const ctx *c, const char *key, uint32_t type, uint64_t n, const dq_gguf_kv **out) {
    const dq_gguf_kv *kv = dq_gguf_find(c->g, key);
    *out = array(c, key, type, n);
    if (kv && !*out)
        return dq_fail(c->err, DQ_ERR_FORMAT, "%s: %s is not an array of %llu %s values, one per token", c->t->path,
                       key, (unsigned long long)n, type == DQ_GGUF_F32 ? "f32" : "i32");
    return DQ_OK;
}

static dq_status set_pieces(ctx *c, const dq_gguf_kv *tokens) {
    const dq_gguf_kv *scores = NULL, *types = NULL;
    dq_status st = per_token(c, "tokenizer.ggml.scores", DQ_GGUF_F32, tokens->arr_n, &scores);
    if (!st) st = per_token(c, "tokenizer.ggml.token_type", DQ_GGUF_I32, tokens->arr_n, &types);
    const uint8_t *it = tokens->val;
    for (uint64_t i = 0; i < tokens->arr_n && !st; i++) {
        const char *s;
        size_t n;
        dq_gguf_next_str(&it, &s, &n);
        int32_t type = DQ_PIECE_NORMAL;
        if (types) memcpy(&type, types->val + 4 * i, 4);
        if (scores) memcpy(&c->t->scores[i], scores->val + 4 * i, 4);
        /* user-defined pieces always match in text; control ones only with --special */
        if ((type == DQ_PIECE_CONTROL || type == DQ_PIECE_USER) && n > 0)
            st = dq_tok_add_token(c->t, (int64_t)i, s, n, type == DQ_PIECE_CONTROL, c->err);
        else
            st = dq_tok_set_piece(c->t, (int64_t)i, s, n, c->err);
        if (!st) c->t->types[i] = type >= 1 && type <= 6 ? (uint8_t)type : DQ_PIECE_NORMAL;
    }
    return st;
}

/* A special-token id; one outside the vocabulary is an error (llama.cpp
 * refuses it too), not a token we quietly go without. */
static dq_status id_key(const ctx *c, const char *key, int32_t dflt, int32_t *out) {
    int64_t v;
    *out = dflt;
    if (!dq_gguf_get_int(c->g, key, &v)) return DQ_OK;
    if (v < 0 || v >= c->t->n_vocab)
        return dq_fail(c->err, DQ_ERR_FORMAT, "%s: %s is %lld, outside the vocabulary of %d tokens", c->t->path, key,
                       (long long)v, c->t->n_vocab);
    *out = (int32_t)v;
    return DQ_OK;
}

static dq_status special_ids(const ctx *c, int32_t bos, int32_t eos, int32_t unk) {
    dq_status st = id_key(c, "tokenizer.ggml.bos_token_id", bos, &c->t->bos);
    if (!st) st = id_key(c, "tokenizer.ggml.eos_token_id", eos, &c->t->eos);
    if (!st) st = id_key(c, "tokenizer.ggml.unknown_token_id", unk, &c->t->unk);
    return st;
}

static bool bool_key(const ctx *c, const char *key, bool dflt) {
    bool v;
    return dq_gguf_get_bool(c->g, key, &v) ? v : dflt;
}

static dq_status setup_spm(ctx *c) {
    dq_tokenizer *t = c->t;
    t->mode = DQ_MERGE_BY_SCORE;
    t->byte_fallback = true;
    t->space = "\xe2\x96\x81"; /* "▁" */
    t->prepend = bool_key(c, "tokenizer.ggml.add_space_prefix", true) ? DQ_PREPEND_FIRST : DQ_PREPEND_NONE;
    t->add_bos = bool_key(c, "tokenizer.ggml.add_bos_token", true);
    dq_status st = special_ids(c, 1, 2, 0);
    return st ? st : dq_tok_finish(t, c->err);
}

/* The pre-tokenizer named by tokenizer.ggml.pre ("default": GPT-2's). */
static dq_status set_pre(ctx *c) {
    const char *s = "default";
    size_t n = 7;
    dq_gguf_get_str(c->g, "tokenizer.ggml.pre", &s, &n);
    return dq_tok_set_pre_type(c->t, s, n, c->err);
}

static dq_status setup_bpe(ctx *c) {
    dq_tokenizer *t = c->t;
    t->mode = DQ_MERGE_BY_RANK;
    t->byte_level = true;
    dq_status st = set_pre(c);
    if (st) return st;
    t->add_bos = bool_key(c, "tokenizer.ggml.add_bos_token", false);
    if ((st = special_ids(c, -1, -1, -1))) return st;
    if (t->add_bos && t->bos < 0) t->add_bos = false;
    if ((st = dq_tok_finish(t, c->err))) return st;
    const dq_gguf_kv *merges = array(c, "tokenizer.ggml.merges", DQ_GGUF_STRING, 0);
    if (!merges) return dq_fail(c->err, DQ_ERR_FORMAT, "%s: tokenizer.ggml.merges is missing", t->path);
    if (!dq_pair_map_init(&t->merges, (size_t)merges->arr_n))
        return dq_fail(c->err, DQ_ERR_NOMEM, "%s: out of memory", t->path);
    const uint8_t *it = merges->val;
    for (uint64_t i = 0; i < merges->arr_n && !st; i++) {
        const char *s;
        size_t n;
        dq_gguf_next_str(&it, &s, &n);
        st = dq_tok_merge_from_string(t, s, n, (int)i, c->err);
    }
    return st;
}

static dq_status load(ctx *c) {
    const char *model;
    size_t n;
    if (!dq_gguf_get_str(c->g, "tokenizer.ggml.model", &model, &n))
        return dq_fail(c->err, DQ_ERR_FORMAT,
                       "%s: no tokenizer in this GGUF file (tokenizer.ggml.model); pass --tokenizer", c->t->path);
    bool spm = n == 5 && !memcmp(model, "llama", 5), bpe = n == 4 && !memcmp(model, "gpt2", 4);
    if (!spm && !bpe)
        return dq_fail(c->err, DQ_ERR_UNSUPPORTED, "%s: tokenizer model \"%.*s\" is not supported (llama, gpt2)",
                       c->t->path, (int)n, model);
    const dq_gguf_kv *tokens = array(c, "tokenizer.ggml.tokens", DQ_GGUF_STRING, 0);
    if (!tokens || tokens->arr_n == 0 || tokens->arr_n > (1u << 22))
        return dq_fail(c->err, DQ_ERR_FORMAT, "%s: tokenizer.ggml.tokens is missing or has a bad size", c->t->path);
    dq_status st = dq_tok_alloc(c->t, (int)tokens->arr_n, c->err);
    if (st || (st = set_pieces(c, tokens))) return st;
    const char *tmpl;
    if (dq_gguf_get_str(c->g, "tokenizer.chat_template", &tmpl, &n) &&
        !(c->t->chat_template = dq_tok_strdup(c->t, tmpl, n)))
        return dq_fail(c->err, DQ_ERR_NOMEM, "%s: out of memory", c->t->path);
    return spm ? setup_spm(c) : setup_bpe(c);
}

dq_status dq_tok_load_gguf(const char *path, dq_tokenizer *t, dq_error *err) {
    dq_gguf g;
    dq_status st = dq_gguf_open(path, &g, err);
    if (st) return st;
    ctx c = {&g, t, err};
    st = load(&c);
    dq_gguf_close(&g);
    return st;
}
