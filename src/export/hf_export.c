#include "export/hf_export.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/safetensors.h"
#include "model/sites.h"
#include "util/error.h"
#include "util/half.h"
#include "util/files.h"
#include "util/out_dir.h"
#include "util/progress.h"
#include "util/tmpfiles.h"

/* ---- config.json --------------------------------------------------------------- */

/* The shortest decimal that reads back as the same float, so that 1e-5f is
 * written "1e-05", not its double expansion 9.99999974737875e-06. */
static double json_float(float v) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    return strtod(buf, NULL);
}

static void add_rope_scaling(cJSON *o, const dq_config *c) {
    if (c->rope_scaling == DQ_ROPE_SCALING_NONE) return;
    cJSON *rs = cJSON_AddObjectToObject(o, "rope_scaling");
    cJSON_AddStringToObject(rs, "rope_type", c->rope_scaling == DQ_ROPE_SCALING_LLAMA3 ? "llama3" : "linear");
    cJSON_AddNumberToObject(rs, "factor", json_float(c->rope_factor));
    if (c->rope_scaling == DQ_ROPE_SCALING_LLAMA3) {
        cJSON_AddNumberToObject(rs, "low_freq_factor", json_float(c->rope_low_freq_factor));
        cJSON_AddNumberToObject(rs, "high_freq_factor", json_float(c->rope_high_freq_factor));
        cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_orig_ctx);
    }
}

cJSON *dq_hf_config(const dq_model *m, const char *arch, const char *torch_dtype) {
    const dq_config *c = &m->cfg;
    cJSON *o = cJSON_CreateObject(), *archs = cJSON_AddArrayToObject(o, "architectures");
    const char *cls = !strcmp(arch, "qwen2") ? "Qwen2ForCausalLM"
                      : !strcmp(arch, "mistral") ? "MistralForCausalLM" : "LlamaForCausalLM";
    cJSON_AddItemToArray(archs, cJSON_CreateString(cls));
    cJSON_AddStringToObject(o, "model_type", arch);
    cJSON_AddNumberToObject(o, "hidden_size", c->dim);
    cJSON_AddNumberToObject(o, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->seq_len);
    cJSON_AddNumberToObject(o, "rms_norm_eps", json_float(c->norm_eps));
    cJSON_AddNumberToObject(o, "rope_theta", json_float(c->rope_theta));
    add_rope_scaling(o, c);
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tied_embeddings);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    if (c->bos_id >= 0) cJSON_AddNumberToObject(o, "bos_token_id", c->bos_id);
    if (c->eos_id >= 0) cJSON_AddNumberToObject(o, "eos_token_id", c->eos_id);
    cJSON_AddStringToObject(o, "torch_dtype", torch_dtype);
    return o;
}

/* ---- tensors ------------------------------------------------------------------- */

/* A tensor with no block to hold (the final norm: never deferred). */
#define HOLD_NONE (-3)

/* One tensor of the folder: name, dtype and shape (out, no data), where its
 * values come from, and its shard. The folder is laid out first and filled
 * block by block, so a lazily loaded model is held one block at a time. */
typedef struct {
    dq_st_out out;
    const dq_site *site;
    int layer;      /* its block (ignored for the model's own sites) */
    int hold;       /* what dq_model_block_hold loads for it: layer, DQ_DEFER_EMBED/HEAD or HOLD_NONE */
    int permute_hd; /* q/k rows and their biases to HF's rotate-half order; 0: as stored */
    int shard;
    size_t slot; /* its index in its shard */
} entry;

typedef struct {
    entry *e;
    size_t n;
    int n_shards;
    dq_dtype type;
} plan;

/* Source row of HF row r: HF rotates q/k heads in halves (i, i + hd/2), the
 * interleaved layouts (llama2.c, GGUF llama) in pairs (2i, 2i + 1). */
static int src_row(int r, int permute_hd) {
    return permute_hd ? dq_interleaved_row_of_half_row(r, permute_hd) : r;
}

static void plan_site(plan *p, const dq_model *m, const dq_site *s, int layer, int hold, int phd) {
    dq_site_ref t;
    dq_site_ref_of(s, &m->cfg, layer, DQ_NAMES_HF, &t);
    entry *e = &p->e[p->n++];
    *e = (entry){.site = s, .layer = layer, .hold = hold, .permute_hd = s->rope_rows ? phd : 0};
    snprintf(e->out.name, sizeof e->out.name, "%s", t.name);
    e->out.dtype = p->type == DQ_DTYPE_F32 ? "F32" : "BF16";
    e->out.ndim = t.cols ? 2 : 1;
    e->out.shape[0] = t.rows;
    e->out.shape[1] = t.cols;
    e->out.nbytes = (size_t)t.rows * (size_t)(t.cols ? t.cols : 1) * (p->type == DQ_DTYPE_F32 ? 4 : 2);
}

/* A block's tensors in the order transformers registers them (its
 * state_dict's, which decides where save_pretrained cuts shards). */
static const dq_site_id HF_BLOCK_ORDER[] = {DQ_SITE_Q,    DQ_SITE_Q_BIAS,    DQ_SITE_K,    DQ_SITE_K_BIAS,
                                            DQ_SITE_V,    DQ_SITE_V_BIAS,    DQ_SITE_O,    DQ_SITE_GATE,
                                            DQ_SITE_UP,   DQ_SITE_DOWN,      DQ_SITE_ATTN_NORM, DQ_SITE_FFN_NORM};
_Static_assert(sizeof HF_BLOCK_ORDER / sizeof *HF_BLOCK_ORDER == DQ_SITE_PER_BLOCK, "every block site, once");

/* Every tensor in transformers' order: embedding, blocks, final norm, an untied head. */
static bool plan_tensors(plan *p, const dq_model *m) {
    const dq_config *c = &m->cfg;
    int phd = c->rope_style == DQ_ROPE_INTERLEAVED ? c->head_dim : 0;
    if (!(p->e = calloc(3 + (size_t)c->n_layers * DQ_SITE_PER_BLOCK, sizeof *p->e))) return false;
    plan_site(p, m, &DQ_SITES[DQ_SITE_TOKEN_EMBD], 0, DQ_DEFER_EMBED, 0);
    for (int i = 0; i < c->n_layers; i++)
        for (int k = 0; k < DQ_SITE_PER_BLOCK; k++)
            if (dq_site_present(&DQ_SITES[HF_BLOCK_ORDER[k]], c)) plan_site(p, m, &DQ_SITES[HF_BLOCK_ORDER[k]], i, i, phd);
    plan_site(p, m, &DQ_SITES[DQ_SITE_OUTPUT_NORM], 0, HOLD_NONE, 0);
    if (!c->tied_embeddings) plan_site(p, m, &DQ_SITES[DQ_SITE_OUTPUT], 0, DQ_DEFER_HEAD, 0); /* tied: HF has none */
    return true;
}

/* Shards as huggingface_hub's split_state_dict_into_shards_factory makes
 * them, in model order: a tensor that would take the current shard past
 * max_bytes closes it; a tensor larger than max_bytes gets a shard of its
 * own, numbered where it is met, while the current shard goes on. */
static void plan_shards(plan *p, uint64_t max_bytes) {
    int next = 0, open = -1; /* open: entries of the current shard carry -1 until it is closed */
    uint64_t size = 0;
    for (size_t i = 0; i < p->n; i++) {
        entry *e = &p->e[i];
        if (e->out.nbytes > max_bytes) {
            e->shard = next++;
            continue;
        }
        if (size && size + e->out.nbytes > max_bytes) {
            for (size_t j = 0; j < i; j++)
                if (p->e[j].shard == open) p->e[j].shard = next;
            next++;
            size = 0;
        }
        e->shard = open;
        size += e->out.nbytes;
    }
    for (size_t j = 0; j < p->n; j++)
        if (p->e[j].shard == open) p->e[j].shard = next;
    p->n_shards = size ? next + 1 : next;
}

static void shard_name(const plan *p, int k, char *buf, size_t cap) {
    if (p->n_shards == 1) snprintf(buf, cap, "model.safetensors");
    else snprintf(buf, cap, "model-%05d-of-%05d.safetensors", k + 1, p->n_shards);
}

/* Entry e's values in the plan's dtype, a buffer of `cap` bytes at a time
 * (at least one row). BF16 refuses a finite value it would make infinite. */
static dq_status put_entry(dq_st_writer *w, const entry *e, const dq_model *m, dq_dtype type, uint8_t *buf,
                           size_t cap, const char *out_dir, dq_error *err) {
    const float *x = dq_site_data(m, e->layer, e->site);
    if (!x) return dq_fail(err, DQ_ERR_ARG, "%s: tensor %s is not loaded", out_dir, e->out.name);
    if (type == DQ_DTYPE_F32 && !e->permute_hd) return dq_st_writer_put(w, e->slot, 0, x, e->out.nbytes, err);
    size_t width = e->out.ndim == 2 ? (size_t)e->out.shape[1] : 1, rows = (size_t)e->out.shape[0];
    size_t es = type == DQ_DTYPE_F32 ? 4 : 2, at = 0, fill = 0;
    dq_status st = DQ_OK;
    for (size_t r = 0; !st && r < rows; r++) {
        if (fill + width * es > cap) {
            st = dq_st_writer_put(w, e->slot, at, buf, fill, err);
            at += fill, fill = 0;
        }
        const float *src = x + (size_t)src_row((int)r, e->permute_hd) * width;
        if (type == DQ_DTYPE_F32) memcpy(buf + fill, src, width * 4);
        for (size_t j = 0; !st && type == DQ_DTYPE_BF16 && j < width; j++) {
            uint16_t b = dq_f32_to_bf16(src[j]);
            memcpy(buf + fill + 2 * j, &b, 2);
            if ((b & 0x7fffu) == 0x7f80u && isfinite(src[j]))
                st = dq_fail(err, DQ_ERR_NUMERIC,
                             "%s: tensor %s: value %g (element %zu) is beyond the range of BF16; nothing was "
                             "written: use --type F32",
                             out_dir, e->out.name, (double)src[j], r * width + j);
        }
        fill += width * es;
    }
    if (!st) st = dq_st_writer_put(w, e->slot, at, buf, fill, err);
    return st;
}

/* ---- the folder ------------------------------------------------------------------ */

static dq_status check_model(const dq_model *m, dq_error *err) {
    if (m->rope_freq_factors)
        return dq_fail(err, DQ_ERR_UNSUPPORTED,
                       "%s: its RoPE scaling is stored as per-pair factors (rope_freqs.weight), which config.json "
                       "cannot hold; convert from the Hugging Face folder it came from",
                       m->path);
    if (m->cfg.head_dim % 2)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: odd head_dim %d", m->path, m->cfg.head_dim);
    return DQ_OK;
}

dq_status dq_hf_write_tokenizer(const char *dir, const dq_tokenizer *t, int max_len, dq_error *err) {
    cJSON *tj;
    dq_status st = dq_hf_tokenizer_json(t, &tj, err);
    if (!st) st = dq_write_json(dir, "tokenizer.json", tj, true, err);
    if (!st) st = dq_write_json(dir, "tokenizer_config.json", dq_hf_tokenizer_config(t, max_len), false, err);
    if (!st) st = dq_write_json(dir, "special_tokens_map.json", dq_hf_special_tokens_map(t), false, err);
    return st;
}

static cJSON *export_config(const dq_model *m, dq_dtype type) {
    /* Llama-family models without biases are "llama" to transformers (mistral
     * too: dashq runs them without a sliding window); biases mean qwen2. */
    cJSON *cfg = dq_hf_config(m, m->cfg.qkv_bias ? "qwen2" : "llama", type == DQ_DTYPE_F32 ? "float32" : "bfloat16");
    cJSON_AddStringToObject(cfg, "dashq_version", DQ_VERSION); /* marks the folder as ours to replace */
    return cfg;
}

/* Each entry's slot in its shard (entries in order, so slot 0 is a shard's
 * first), and each shard's last entry. */
static bool slot_entries(plan *p, size_t *last) {
    size_t *n = calloc((size_t)p->n_shards, sizeof *n);
    if (!n) return false;
    for (size_t i = 0; i < p->n; i++) p->e[i].slot = n[p->e[i].shard]++, last[p->e[i].shard] = i;
    free(n);
    return true;
}

/* Shard k's writer, its header written (the tensors of shard k, in slot order). */
static dq_status open_shard(const plan *p, int k, const char *tmp, dq_st_writer *w, dq_error *err) {
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++) n += p->e[i].shard == k;
    dq_st_out *t = malloc((n ? n : 1) * sizeof *t);
    if (!t) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", tmp);
    for (size_t i = 0; i < p->n; i++)
        if (p->e[i].shard == k) t[p->e[i].slot] = p->e[i].out;
    char name[64], path[PATH_MAX];
    shard_name(p, k, name, sizeof name);
    dq_status st = dq_path_fmt(path, sizeof path, err, "%s/%s", tmp, name);
    if (!st) dq_tmp_register(path, false);
    if (!st) st = dq_st_writer_open(path, t, n, w, err);
    free(t);
    return st;
}

/* Every tensor's bytes, one block held at a time (an eager model holds them
 * all). A shard is open from its first tensor to its last: one file at a
 * time, two while a tensor larger than the shard size has one of its own,
 * so no --max-shard-size meets the open-file limit. */
static dq_status fill_shards(const plan *p, const size_t *last, dq_st_writer *w, dq_model *m, const char *tmp,
                             const char *out_dir, const dq_progress *pr, dq_error *err) {
    size_t cap = (size_t)4 << 20; /* > a row of the widest model we admit (2^17 fp32) */
    uint8_t *buf = malloc(cap);
    if (!buf) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", out_dir);
    int hold = HOLD_NONE;
    bool held = false;
    dq_status st = DQ_OK;
    for (size_t i = 0; !st && i < p->n; i++) {
        const entry *e = &p->e[i];
        if (e->hold != hold) {
            dq_model_block_let_go(m, hold, held);
            held = false;
            if (hold >= 0 && !dq_progress_report(pr, "convert", (size_t)hold + 1, (size_t)m->cfg.n_layers, err))
                st = DQ_ERR_CANCELLED;
            hold = e->hold;
            if (!st && hold != HOLD_NONE) st = dq_model_block_hold(m, hold, &held, err);
        }
        if (!st && e->slot == 0) st = open_shard(p, e->shard, tmp, &w[e->shard], err);
        if (!st) st = put_entry(&w[e->shard], e, m, p->type, buf, cap, out_dir, err);
        if (!st && i == last[e->shard]) st = dq_st_writer_close(&w[e->shard], err);
    }
    dq_model_block_let_go(m, hold, held);
    free(buf);
    return st;
}

static dq_status write_index(const plan *p, const char *tmp, dq_error *err) {
    dq_st_index_entry *x = malloc(p->n * sizeof *x);
    char(*names)[64] = malloc((size_t)p->n_shards * sizeof *names);
    dq_status st = x && names ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", tmp);
    for (int k = 0; !st && k < p->n_shards; k++) shard_name(p, k, names[k], sizeof names[k]);
    for (size_t i = 0; !st && i < p->n; i++)
        x[i] = (dq_st_index_entry){p->e[i].out.name, names[p->e[i].shard], p->e[i].out.nbytes};
    if (!st) st = dq_st_write_index(tmp, x, p->n, err);
    free(x);
    free(names);
    return st;
}

/* The tensors into tmp: laid out, sharded, filled, indexed. */
static dq_status write_tensors(plan *p, const char *tmp, dq_model *m, const char *out_dir, const dq_progress *pr,
                               dq_error *err) {
    dq_st_writer *w = calloc((size_t)p->n_shards, sizeof *w);
    size_t *last = calloc((size_t)p->n_shards, sizeof *last);
    bool ok = w && last && slot_entries(p, last);
    dq_status st = ok ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", out_dir);
    if (!st) st = fill_shards(p, last, w, m, tmp, out_dir, pr, err);
    for (int k = 0; w && k < p->n_shards; k++) dq_st_writer_abort(&w[k]); /* any still open after an error */
    free(w);
    free(last);
    if (!st && p->n_shards > 1) st = write_index(p, tmp, err);
    return st;
}

dq_status dq_export_hf(const char *out_dir, dq_model *m, const dq_tokenizer *t, const dq_hf_export_opts *o,
                       dq_error *err) {
    if (o->type != DQ_DTYPE_F32 && o->type != DQ_DTYPE_BF16)
        return dq_fail(err, DQ_ERR_ARG, "%s: Hugging Face export writes F32 or BF16", out_dir);
    if (t && t->n_vocab > m->cfg.vocab_size)
        return dq_fail(err, DQ_ERR_ARG, "%s: tokenizer has %d tokens, the model %d", t->path, t->n_vocab,
                       m->cfg.vocab_size);
    dq_status st = check_model(m, err);
    if (st) return st;
    plan p = {.type = o->type};
    if (!plan_tensors(&p, m)) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", out_dir);
    plan_shards(&p, o->max_shard_bytes ? o->max_shard_bytes : DQ_HF_SHARD_BYTES);
    char tmp[PATH_MAX];
    if (!(st = dq_dir_begin(out_dir, tmp, sizeof tmp, err))) {
        st = write_tensors(&p, tmp, m, out_dir, &o->progress, err);
        if (!st) st = dq_write_json(tmp, "config.json", export_config(m, o->type), false, err);
        if (!st && t) st = dq_hf_write_tokenizer(tmp, t, m->cfg.seq_len, err);
        if (!st) st = dq_dir_publish(tmp, out_dir, err);
        if (st) dq_dir_remove_flat(tmp);
    }
    free(p.e);
    return st;
}
