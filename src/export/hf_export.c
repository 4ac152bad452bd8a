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

/* The tensors in one dtype: DQ_DTYPE_F32 (exact) or DQ_DTYPE_BF16. */
typedef struct {
    dq_st_list st;
    dq_dtype type;
    char bad[160]; /* the first tensor with a finite value that BF16 cannot hold (next to FLT_MAX) */
    float bad_value;
    size_t bad_at;
} tensor_list;

/* Source row of HF row r: HF rotates q/k heads in halves (i, i + hd/2), the
 * interleaved layouts (llama2.c, GGUF llama) in pairs (2i, 2i + 1). */
static int src_row(int r, int permute_hd) {
    return permute_hd ? dq_interleaved_row_of_half_row(r, permute_hd) : r;
}

/* Adds tensor `name` (rows x cols, cols 0 for a vector) in the list's dtype. */
static void add(tensor_list *l, const char *name, const float *x, int rows, int cols, int permute_hd) {
    size_t w = (size_t)(cols ? cols : rows), h = cols ? (size_t)rows : 1, es = l->type == DQ_DTYPE_F32 ? 4 : 2;
    const void *data = x;
    if (l->type != DQ_DTYPE_F32 || permute_hd) {
        uint8_t *buf = dq_st_list_own(&l->st, w * h * es);
        if (!buf) return;
        for (size_t r = 0; r < h; r++) {
            const float *src = x + (size_t)src_row((int)r, permute_hd) * w;
            if (l->type == DQ_DTYPE_F32) memcpy(buf + r * w * 4, src, w * 4);
            for (size_t j = 0; l->type == DQ_DTYPE_BF16 && j < w; j++) {
                uint16_t b = dq_f32_to_bf16(src[j]);
                memcpy(buf + (r * w + j) * 2, &b, 2);
                if ((b & 0x7fffu) == 0x7f80u && isfinite(src[j]) && !l->bad[0])
                    snprintf(l->bad, sizeof l->bad, "%s", name), l->bad_value = src[j], l->bad_at = r * w + j;
            }
        }
        data = buf;
    }
    dq_st_list_add(&l->st, name, l->type == DQ_DTYPE_F32 ? "F32" : "BF16", rows, cols, data, w * h * es);
}

/* Biases of q/k are permuted like their rows (a 1-row view per output). */
static void add_bias(tensor_list *l, const char *name, const float *b, int n, int permute_hd) {
    if (!permute_hd) {
        add(l, name, b, n, 0, 0);
        return;
    }
    float *p = dq_st_list_own(&l->st, (size_t)n * sizeof *p);
    if (!p) return;
    for (int r = 0; r < n; r++) p[r] = b[src_row(r, permute_hd)];
    add(l, name, p, n, 0, 0);
}

/* Site s of block `layer` (ignored for the model's own sites); phd reorders
 * the rows of q/k and their biases (0: keep them). */
static void add_site(tensor_list *l, const dq_model *m, const dq_site *s, int layer, int phd) {
    dq_site_ref t;
    dq_site_ref_of(s, &m->cfg, layer, DQ_NAMES_HF, &t);
    const float *x = dq_site_data(m, layer, s);
    if (s->role == DQ_SITE_BIAS) add_bias(l, t.name, x, t.rows, s->rope_rows ? phd : 0);
    else add(l, t.name, x, t.rows, t.cols, s->rope_rows ? phd : 0);
}

static void build_tensors(tensor_list *l, const dq_model *m) {
    const dq_config *c = &m->cfg;
    int phd = c->rope_style == DQ_ROPE_INTERLEAVED ? c->head_dim : 0;
    add_site(l, m, &DQ_SITES[DQ_SITE_TOKEN_EMBD], 0, 0);
    for (int i = 0; i < c->n_layers; i++)
        for (int k = 0; k < DQ_SITE_PER_BLOCK; k++)
            if (dq_site_present(&DQ_SITES[k], c)) add_site(l, m, &DQ_SITES[k], i, phd);
    add_site(l, m, &DQ_SITES[DQ_SITE_OUTPUT_NORM], 0, 0);
    if (!c->tied_embeddings) add_site(l, m, &DQ_SITES[DQ_SITE_OUTPUT], 0, 0); /* tied: HF has none */
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

dq_status dq_export_hf(const char *out_dir, const dq_model *m, const dq_tokenizer *t, const dq_hf_export_opts *o,
                       dq_error *err) {
    if (o->type != DQ_DTYPE_F32 && o->type != DQ_DTYPE_BF16)
        return dq_fail(err, DQ_ERR_ARG, "%s: Hugging Face export writes F32 or BF16", out_dir);
    if (t && t->n_vocab > m->cfg.vocab_size)
        return dq_fail(err, DQ_ERR_ARG, "%s: tokenizer has %d tokens, the model %d", t->path, t->n_vocab,
                       m->cfg.vocab_size);
    char tmp[PATH_MAX], path[PATH_MAX];
    dq_status st = check_model(m, err);
    if (st) return st;
    tensor_list l = {.type = o->type};
    build_tensors(&l, m); /* first: a tensor that cannot be written stops it before the folder exists */
    if (l.bad[0])
        st = dq_fail(err, DQ_ERR_NUMERIC,
                     "%s: tensor %s: value %g (element %zu) is beyond the range of BF16; nothing was written: "
                     "use --type F32",
                     out_dir, l.bad, (double)l.bad_value, l.bad_at);
    if (!st) st = dq_dir_begin(out_dir, tmp, sizeof tmp, err);
    if (st) {
        dq_st_list_free(&l.st);
        return st;
    }
    if ((st = dq_path_fmt(path, sizeof path, err, "%s/model.safetensors", tmp))) {
        dq_st_list_free(&l.st);
        dq_dir_remove_flat(tmp);
        return st;
    }
    dq_tmp_register(path, false);
    st = l.st.oom ? dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory converting tensors", out_dir)
                  : dq_st_write(path, l.st.t, l.st.n, err);
    dq_st_list_free(&l.st);
    if (!st) st = dq_write_json(tmp, "config.json", export_config(m, o->type), false, err);
    if (!st && t) st = dq_hf_write_tokenizer(tmp, t, m->cfg.seq_len, err);
    if (!st) st = dq_dir_publish(tmp, out_dir, err);
    if (st) dq_dir_remove_flat(tmp);
    return st;
}
