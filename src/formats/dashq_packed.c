#define _POSIX_C_SOURCE 200809L
#include "formats/dashq_packed.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/hf_export.h"
#include "formats/safetensors.h"
#include "model/sites.h"
#include "util/error.h"
#include "util/files.h"
#include "util/half.h"
#include "util/out_dir.h"
#include "util/tmpfiles.h"

size_t dq_packed_words(size_t n, int bits) {
    size_t per = (size_t)(32 / bits);
    return (n + per - 1) / per;
}

void dq_pack_codes(const uint8_t *q, size_t n, int bits, int32_t *words) {
    size_t per = (size_t)(32 / bits), nw = dq_packed_words(n, bits);
    for (size_t w = 0; w < nw; w++) {
        uint32_t v = 0;
        for (size_t k = 0; k < per && w * per + k < n; k++) v |= (uint32_t)q[w * per + k] << (k * (size_t)bits);
        memcpy(&words[w], &v, 4);
    }
}

void dq_unpack_codes(const int32_t *words, size_t n, int bits, uint8_t *q) {
    size_t per = (size_t)(32 / bits);
    uint32_t mask = (1u << bits) - 1;
    for (size_t i = 0; i < n; i++) {
        uint32_t v;
        memcpy(&v, &words[i / per], 4);
        q[i] = (uint8_t)((v >> ((i % per) * (size_t)bits)) & mask);
    }
}

/* A full-precision tensor, converted back to the source dtype (exact: the
 * values came from it). */
static void add_fp(dq_st_list *l, const char *name, dq_dtype dt, const float *x, int64_t d0, int64_t d1) {
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    if (dt == DQ_DTYPE_F32) {
        dq_st_list_add(l, name, "F32", d0, d1, x, n * 4);
        return;
    }
    uint16_t *h = dq_st_list_own(l, n * 2);
    if (!h) return;
    for (size_t i = 0; i < n; i++) h[i] = dt == DQ_DTYPE_F16 ? dq_f32_to_f16(x[i]) : dq_f32_to_bf16(x[i]);
    dq_st_list_add(l, name, dt == DQ_DTYPE_F16 ? "F16" : "BF16", d0, d1, h, n * 2);
}

static void add_quantized(dq_st_list *l, const dq_qlayer *ql, bool permute, int hd) {
    const dq_qtensor *q = &ql->qt;
    size_t n = (size_t)q->rows * q->cols, ng = (size_t)q->rows * q->groups_per_row;
    uint8_t *codes = dq_st_list_own(l, n);
    uint16_t *sc = dq_st_list_own(l, ng * 2), *ze = dq_st_list_own(l, ng * 2);
    int32_t *words = dq_st_list_own(l, dq_packed_words(n, q->bits) * 4);
    if (!codes || !sc || !ze || !words) return;
    for (int r = 0; r < q->rows; r++) {
        int src = permute ? dq_interleaved_row_of_half_row(r, hd) : r; /* HF order from llama2.c's */
        memcpy(codes + (size_t)r * q->cols, q->q + (size_t)src * q->cols, (size_t)q->cols);
        for (int g = 0; g < q->groups_per_row; g++) {
            sc[(size_t)r * q->groups_per_row + g] = dq_f32_to_f16(q->scale[(size_t)src * q->groups_per_row + g]);
            ze[(size_t)r * q->groups_per_row + g] = dq_f32_to_f16(q->zero[(size_t)src * q->groups_per_row + g]);
        }
    }
    dq_pack_codes(codes, n, q->bits, words);
    char name[160];
    snprintf(name, sizeof name, "%s.W_q_packed", ql->name);
    dq_st_list_add(l, name, "I32", (int64_t)dq_packed_words(n, q->bits), 0, words, dq_packed_words(n, q->bits) * 4);
    snprintf(name, sizeof name, "%s.scale", ql->name);
    dq_st_list_add(l, name, "F16", (int64_t)ng, 1, sc, ng * 2);
    snprintf(name, sizeof name, "%s.zero", ql->name);
    dq_st_list_add(l, name, "F16", (int64_t)ng, 1, ze, ng * 2);
}

/* Site s of block `layer` (ignored for the model's own sites) in full precision. */
static void add_site_fp(dq_st_list *l, const dq_model *m, const dq_site *s, int layer) {
    dq_site_ref t;
    dq_site_ref_of(s, &m->cfg, layer, DQ_NAMES_HF, &t);
    add_fp(l, t.name, m->dtype, dq_site_data(m, layer, s), t.rows, t.cols);
}

/* Block `layer`'s full-precision sites: its norms, then its biases (kept in
 * their rows' order: biases come only with qwen2's rotate-half heads). */
static void add_block_fp(dq_st_list *l, const dq_model *m, int layer) {
    static const dq_site_role roles[2] = {DQ_SITE_NORM, DQ_SITE_BIAS};
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < DQ_SITE_PER_BLOCK; k++)
            if (DQ_SITES[k].role == roles[r] && dq_site_present(&DQ_SITES[k], &m->cfg))
                add_site_fp(l, m, &DQ_SITES[k], layer);
}

static void build_tensors(dq_st_list *l, const dq_model *m, const dq_quant_result *r) {
    const dq_config *c = &m->cfg;
    bool interleaved = c->rope_style == DQ_ROPE_INTERLEAVED;
    add_site_fp(l, m, &DQ_SITES[DQ_SITE_TOKEN_EMBD], 0);
    for (int i = 0; i < r->n; i++) {
        const dq_qlayer *ql = &r->layers[i];
        if (dq_qlayer_is(ql, DQ_SITE_Q)) add_block_fp(l, m, ql->layer); /* once per block */
        add_quantized(l, ql, interleaved && ql->site->rope_rows, c->head_dim);
    }
    add_site_fp(l, m, &DQ_SITES[DQ_SITE_OUTPUT_NORM], 0);
    /* The head is always in the file: the official loader (JaeminK/dashq,
     * transformers + accelerate) leaves a tied lm_head unloaded when
     * lm_head.weight is missing. A tied head is the embedding's copy. */
    bool head_quantized = r->n > 0 && dq_qlayer_is(&r->layers[r->n - 1], DQ_SITE_OUTPUT);
    if (!head_quantized) add_site_fp(l, m, &DQ_SITES[DQ_SITE_OUTPUT], 0);
}

/* ---- JSON side files --------------------------------------------------------- */

static const char *dtype_torch(dq_dtype t) {
    return t == DQ_DTYPE_F16 ? "float16" : t == DQ_DTYPE_BF16 ? "bfloat16" : "float32";
}

static cJSON *quant_config(const dq_model *m, const dq_quant_result *r, const dq_packed_info *info) {
    cJSON *o = cJSON_CreateObject(), *q = cJSON_AddObjectToObject(o, "quantization");
    cJSON_AddStringToObject(o, "format", "dashq-packed-linear");
    cJSON_AddStringToObject(o, "model_class", "causal_lm");
    /* read at the top level by the official dashq-info */
    cJSON_AddStringToObject(o, "base_model", info->base_model ? info->base_model : m->path);
    cJSON_AddStringToObject(o, "method", info->method);
    cJSON_AddStringToObject(q, "method", info->method);
    if (info->curvature) cJSON_AddStringToObject(q, "curvature", info->curvature);
    if (m->cfg.act_bits) { /* the activations it was calibrated for, which our loader simulates again */
        cJSON_AddNumberToObject(q, "act_bits", m->cfg.act_bits);
        cJSON_AddNumberToObject(q, "act_group", m->cfg.act_group);
    }
    if (info->rotate || info->smooth) { /* already in the weights: nothing for a loader to undo */
        cJSON *t = cJSON_AddObjectToObject(q, "transform");
        cJSON_AddStringToObject(t, "rotate", info->rotate ? info->rotate : "none");
        cJSON_AddStringToObject(t, "smooth", info->smooth ? info->smooth : "none");
        if (info->smooth) cJSON_AddNumberToObject(t, "alpha", info->smooth_alpha);
        cJSON_AddBoolToObject(t, "folded", true);
    }
    cJSON_AddNumberToObject(q, "bits", info->bits);
    cJSON_AddNumberToObject(q, "group_size", info->group);
    cJSON_AddNumberToObject(q, "nsamples", info->nsamples);
    cJSON_AddNumberToObject(q, "seqlen", info->seqlen);
    cJSON_AddNumberToObject(q, "seed", (double)info->seed);
    if (info->calib_path) cJSON_AddStringToObject(q, "calibration", info->calib_path);
    cJSON_AddStringToObject(q, "producer", "dashq " DQ_VERSION);
    cJSON *mods = cJSON_AddObjectToObject(o, "quantized_modules");
    for (int i = 0; i < r->n; i++) {
        const dq_qtensor *t = &r->layers[i].qt;
        cJSON *e = cJSON_AddObjectToObject(mods, r->layers[i].name);
        cJSON_AddNumberToObject(e, "in_features", t->in_cols);
        cJSON_AddNumberToObject(e, "out_features", t->rows);
        cJSON_AddNumberToObject(e, "quant_in_features", t->cols); /* in_features + padding */
        cJSON_AddNumberToObject(e, "nbits", t->bits);
        cJSON_AddNumberToObject(e, "group_size", t->group);
        cJSON_AddNumberToObject(e, "num_groups", (double)t->rows * t->groups_per_row);
        cJSON_AddStringToObject(e, "linear_dtype", dtype_torch(m->dtype));
        cJSON_AddStringToObject(e, "scale_zero_dtype", "float16");
    }
    return o;
}

/* ---- tokenizer files ------------------------------------------------------------ */

static dq_status copy_file(const char *src, const char *dir, const char *name, dq_error *err) {
    char dst[PATH_MAX];
    dq_status st = dq_path_fmt(dst, sizeof dst, err, "%s/%s", dir, name);
    if (st) return st;
    dq_tmp_register(dst, false);
    FILE *in = dq_fopen_input(src, err), *out = in ? fopen(dst, "wb") : NULL;
    if (!in) return err ? err->code : DQ_ERR_IO;
    if (!out) st = dq_fail(err, DQ_ERR_IO, "cannot copy %s to %s", src, dst);
    char buf[1 << 16];
    for (size_t n; !st && (n = fread(buf, 1, sizeof buf, in)) > 0;)
        if (fwrite(buf, 1, n, out) != n) st = dq_fail(err, DQ_ERR_IO, "%s: write failed", dst);
    if (in) fclose(in);
    if (out && fclose(out) != 0 && !st) st = dq_fail(err, DQ_ERR_IO, "%s: write failed", dst);
    return st;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* HF tokenizers travel with their companions; a sentencepiece vocabulary
 * (tokenizer.bin and/or .model) gets a LlamaTokenizer config so that
 * transformers loads it too. */
static dq_status copy_tokenizer(const char *tok, const char *dir, const dq_packed_info *info, int max_len,
                                dq_error *err) {
    char src_dir[PATH_MAX], path[PATH_MAX];
    dq_path_dir(src_dir, sizeof src_dir, tok);
    if (ends_with(tok, ".json")) {
        static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                            "vocab.json", "merges.txt", "added_tokens.json", "tokenizer.model"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            dq_status st = dq_path_fmt(path, sizeof path, err, "%s/%s", src_dir, files[i]);
            if (!st && dq_file_exists(path)) st = copy_file(path, dir, files[i], err);
            if (st) return st;
        }
        return DQ_OK;
    }
    dq_status st = DQ_OK;
    size_t n = strlen(tok);
    if (ends_with(tok, ".bin")) {
        st = copy_file(tok, dir, "tokenizer.bin", err);
        if (!st) st = dq_path_fmt(path, sizeof path, err, "%.*s.model", (int)(n - 4), tok);
        if (!st && dq_file_exists(path)) st = copy_file(path, dir, "tokenizer.model", err);
    } else if (ends_with(tok, ".model")) {
        st = copy_file(tok, dir, "tokenizer.model", err);
    } else if (info->tokenizer) { /* inside the model file (GGUF): the folder gets it as tokenizer.json */
        return dq_hf_write_tokenizer(dir, info->tokenizer, max_len, err);
    } else {
        return DQ_OK;
    }
    if (st) return st;
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "tokenizer_class", "LlamaTokenizer");
    cJSON_AddBoolToObject(cfg, "add_bos_token", true);
    cJSON_AddBoolToObject(cfg, "add_eos_token", false);
    cJSON_AddStringToObject(cfg, "bos_token", "<s>");
    cJSON_AddStringToObject(cfg, "eos_token", "</s>");
    cJSON_AddStringToObject(cfg, "unk_token", "<unk>");
    return dq_write_json(dir, "tokenizer_config.json", cfg, false, err);
}

dq_status dq_packed_check(const dq_model *m, dq_error *err) {
    if (m->rope_freq_factors)
        return dq_fail(
            err, DQ_ERR_UNSUPPORTED,
            "%s: its RoPE scaling is stored as per-pair factors (rope_freqs.weight), which a packed "
            "checkpoint's config.json cannot hold; quantize to --format gguf, or from the Hugging Face folder",
            m->path);
    return DQ_OK;
}

/* The format stores scales and zeros as float16: one beyond ±65504 would be
 * written as inf, which our loader refuses (and the official one turns into
 * inf weights). Checked before the folder is created. */
static dq_status check_f16_params(const char *out, const dq_quant_result *r, dq_error *err) {
    for (int i = 0; i < r->n; i++) {
        const dq_qtensor *q = &r->layers[i].qt;
        size_t ng = (size_t)q->rows * q->groups_per_row;
        for (size_t g = 0; g < ng; g++) {
            float v[2] = {q->scale[g], q->zero[g]};
            for (int k = 0; k < 2; k++)
                if ((dq_f32_to_f16(v[k]) & 0x7fffu) >= 0x7c00u)
                    return dq_fail(err, DQ_ERR_NUMERIC,
                                   "%s: tensor %s.%s: value %g (group %zu) is beyond the float16 range (±65504) of "
                                   "a packed checkpoint; nothing was written: the weights are too large for this "
                                   "format (use --format gguf)",
                                   out, r->layers[i].name, k ? "zero" : "scale", (double)v[k], g);
        }
    }
    return DQ_OK;
}

dq_status dq_write_packed(const char *out_arg, const dq_model *m, const dq_quant_result *r,
                          const dq_packed_info *info, dq_error *err) {
    dq_status st0 = dq_packed_check(m, err);
    if (!st0) st0 = check_f16_params(out_arg, r, err);
    if (st0) return st0;
    char tmp[PATH_MAX], path[PATH_MAX];
    if ((st0 = dq_dir_begin(out_arg, tmp, sizeof tmp, err))) return st0;
    if ((st0 = dq_path_fmt(path, sizeof path, err, "%s/model.safetensors", tmp))) {
        dq_dir_remove_flat(tmp);
        return st0;
    }
    dq_st_list l = {0};
    build_tensors(&l, m, r);
    dq_tmp_register(path, false);
    dq_status st = l.oom ? dq_fail(err, DQ_ERR_NOMEM, "out of memory packing the checkpoint")
                         : dq_st_write(path, l.t, l.n, err);
    if (!st) st = dq_write_json(tmp, "config.json", dq_hf_config(m, m->cfg.arch, dtype_torch(m->dtype)), false, err);
    if (!st) st = dq_write_json(tmp, "dashq_config.json", quant_config(m, r, info), false, err);
    if (!st && info->tokenizer_path) st = copy_tokenizer(info->tokenizer_path, tmp, info, m->cfg.seq_len, err);
    if (!st) st = dq_dir_publish(tmp, out_arg, err);
    if (st) dq_dir_remove_flat(tmp);
    dq_st_list_free(&l);
    return st;
}
