#define _POSIX_C_SOURCE 200809L
#include "formats/dashq_packed.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* ---- the tensors of the safetensors files ------------------------------------
 * The layout (names, dtypes, shapes, in the order of the files) is fixed when
 * the writer opens, from the model's config and the quantized layers' dims;
 * each tensor's bytes are written when its data is final: a block's norms,
 * biases and quantized layers when the pipeline emits the block, the
 * embedding, final norm and a full-precision head at the end.
 * Files follow the input (issue #15: an 8B checkpoint is ~4.5 GB, a 70B one
 * ~35 GB): a model read from safetensors shards is written as shards,
 * model-0000k-of-0000N.safetensors, one for each input shard that holds a
 * tensor written here (in the order of the input's file names), each tensor
 * in the shard its source tensor came from (a tied head's copy with the
 * final norm), listed by model.safetensors.index.json as transformers writes
 * it; any other input gives one model.safetensors. */

typedef enum { PART_FP, PART_CODES, PART_SCALE, PART_ZERO } part_kind;

typedef struct {
    dq_st_out out;       /* name, dtype, shape, bytes (no data) */
    part_kind kind;
    const dq_site *site; /* the site it stores (codes, scales, zeros: their linear's), of block `layer` */
    int layer;
    int owner;           /* the layout layer whose arrival writes it; -1: at finish */
    int file;            /* its output file (shard) */
    size_t slot;         /* its index among that file's tensors */
} entry;

typedef struct {
    char name[48]; /* "model.safetensors" or "model-00001-of-00004.safetensors" */
    char path[PATH_MAX];
    dq_st_writer st;
} out_file;

struct dq_packed_writer {
    char out[PATH_MAX], tmp[PATH_MAX];
    out_file *files;
    int n_files;
    entry *e;
    size_t n, cap;
    dq_qlayer *layout; /* dims of every quantized layer, in emission order */
    int n_layout, next; /* the next layer expected */
    bool oom;
    bool keep; /* a resumable run's temporary folder: abort leaves it */
};

static entry *add_entry(dq_packed_writer *w, const char *name, const char *dtype, int64_t d0, int64_t d1,
                        size_t nbytes, part_kind kind, int owner) {
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 256;
        entry *e = realloc(w->e, cap * sizeof *e);
        if (!e) return w->oom = true, NULL;
        w->e = e;
        w->cap = cap;
    }
    entry *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->out.name, sizeof e->out.name, "%s", name);
    e->out.dtype = dtype;
    e->out.ndim = d1 ? 2 : 1;
    e->out.shape[0] = d0;
    e->out.shape[1] = d1;
    e->out.nbytes = nbytes;
    e->kind = kind;
    e->owner = owner;
    return e;
}

/* Site s of block `layer` (ignored for the model's own sites) in the source dtype. */
static void add_site_fp(dq_packed_writer *w, const dq_model *m, const dq_site *s, int layer, int owner) {
    dq_site_ref t;
    dq_site_ref_of(s, &m->cfg, layer, DQ_NAMES_HF, &t);
    size_t n = (size_t)t.rows * (size_t)(t.cols ? t.cols : 1);
    entry *e = add_entry(w, t.name, dq_dtype_name(m->dtype), t.rows, t.cols, n * dq_dtype_size(m->dtype), PART_FP, owner);
    if (e) e->site = s, e->layer = layer;
}

/* Block `layer`'s full-precision sites: its norms, then its biases (kept in
 * their rows' order: biases come only with qwen2's rotate-half heads). */
static void add_block_fp(dq_packed_writer *w, const dq_model *m, int layer, int owner) {
    static const dq_site_role roles[2] = {DQ_SITE_NORM, DQ_SITE_BIAS};
    for (int r = 0; r < 2; r++)
        for (int k = 0; k < DQ_SITE_PER_BLOCK; k++)
            if (DQ_SITES[k].role == roles[r] && dq_site_present(&DQ_SITES[k], &m->cfg))
                add_site_fp(w, m, &DQ_SITES[k], layer, owner);
}

static void add_quantized(dq_packed_writer *w, const dq_qlayer *ql, int owner) {
    const dq_qtensor *q = &ql->qt;
    size_t n = (size_t)q->rows * q->cols, ng = (size_t)q->rows * q->groups_per_row, nw = dq_packed_words(n, q->bits);
    char name[160];
    snprintf(name, sizeof name, "%s.W_q_packed", ql->name);
    entry *e[3] = {add_entry(w, name, "I32", (int64_t)nw, 0, nw * 4, PART_CODES, owner)};
    snprintf(name, sizeof name, "%s.scale", ql->name);
    e[1] = add_entry(w, name, "F16", (int64_t)ng, 1, ng * 2, PART_SCALE, owner);
    snprintf(name, sizeof name, "%s.zero", ql->name);
    e[2] = add_entry(w, name, "F16", (int64_t)ng, 1, ng * 2, PART_ZERO, owner);
    for (int k = 0; k < 3; k++) /* the site whose input shard it follows */
        if (e[k]) e[k]->site = ql->site, e[k]->layer = ql->layer;
}

/* Every tensor in the order of the file: embedding, per block its norms and
 * biases then its quantized linears, final norm, head. The head is always in
 * the file: the official loader (JaeminK/dashq, transformers + accelerate)
 * leaves a tied lm_head unloaded when lm_head.weight is missing; a tied head
 * is the embedding's copy. */
static void build_layout(dq_packed_writer *w, const dq_model *m) {
    add_site_fp(w, m, &DQ_SITES[DQ_SITE_TOKEN_EMBD], 0, -1);
    for (int i = 0; i < w->n_layout; i++) {
        const dq_qlayer *ql = &w->layout[i];
        if (dq_qlayer_is(ql, DQ_SITE_Q)) add_block_fp(w, m, ql->layer, i); /* once per block */
        add_quantized(w, ql, i);
    }
    add_site_fp(w, m, &DQ_SITES[DQ_SITE_OUTPUT_NORM], 0, -1);
    bool head_quantized = w->n_layout > 0 && dq_qlayer_is(&w->layout[w->n_layout - 1], DQ_SITE_OUTPUT);
    if (!head_quantized) add_site_fp(w, m, &DQ_SITES[DQ_SITE_OUTPUT], 0, -1);
}

/* Each entry's file: its source tensor's input shard, numbered among the
 * shards that receive tensors; a tensor from no file of its own (a tied
 * head) goes with the final norm. */
static dq_status assign_files(dq_packed_writer *w, const dq_model *m, dq_error *err) {
    int file_of[DQ_MAX_MAPS], last = dq_site_shard(m, &DQ_SITES[DQ_SITE_OUTPUT_NORM], 0);
    size_t count[DQ_MAX_MAPS] = {0};
    for (int k = 0; k < DQ_MAX_MAPS; k++) file_of[k] = -1;
    for (size_t i = 0; i < w->n; i++) {
        int s = w->e[i].site ? dq_site_shard(m, w->e[i].site, w->e[i].layer) : -1;
        w->e[i].file = s >= 0 && s < m->n_shards ? s : last >= 0 && last < m->n_shards ? last : 0;
        file_of[w->e[i].file] = 0;
    }
    for (int k = 0; k < DQ_MAX_MAPS; k++)
        if (file_of[k] == 0) file_of[k] = w->n_files++;
    if (!(w->files = calloc((size_t)(w->n_files ? w->n_files : 1), sizeof *w->files)))
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < w->n; i++) {
        w->e[i].file = file_of[w->e[i].file];
        w->e[i].slot = count[w->e[i].file]++;
    }
    for (int f = 0; f < w->n_files; f++) {
        out_file *o = &w->files[f];
        if (w->n_files == 1) snprintf(o->name, sizeof o->name, "model.safetensors");
        else snprintf(o->name, sizeof o->name, "model-%05d-of-%05d.safetensors", f + 1, w->n_files);
        dq_status st = dq_path_fmt(o->path, sizeof o->path, err, "%s/%s", w->tmp, o->name);
        if (st) return st;
    }
    return DQ_OK;
}

/* Bytes of entry i (all of them) into its file. */
static dq_status put_entry(dq_packed_writer *w, size_t i, const void *data, size_t nbytes, dq_error *err) {
    return dq_st_writer_put(&w->files[w->e[i].file].st, w->e[i].slot, 0, data, nbytes, err);
}

/* Opens (reopen: an interrupted run's, keeping its bytes) every file with its entries' layout. */
static dq_status open_files(dq_packed_writer *w, bool reopen, dq_error *err) {
    dq_st_out *t = malloc((w->n ? w->n : 1) * sizeof *t);
    dq_status st = t ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    for (int f = 0; !st && f < w->n_files; f++) {
        size_t n = 0;
        for (size_t i = 0; i < w->n; i++)
            if (w->e[i].file == f) t[n++] = w->e[i].out;
        if (!w->keep) dq_tmp_register(w->files[f].path, false);
        st = (reopen ? dq_st_writer_reopen : dq_st_writer_open)(w->files[f].path, t, n, &w->files[f].st, err);
    }
    free(t);
    return st;
}

/* model.safetensors.index.json of a sharded checkpoint. */
static dq_status write_shard_index(const dq_packed_writer *w, dq_error *err) {
    dq_st_index_entry *e = malloc((w->n ? w->n : 1) * sizeof *e);
    if (!e) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", w->out);
    for (size_t i = 0; i < w->n; i++)
        e[i] = (dq_st_index_entry){w->e[i].out.name, w->files[w->e[i].file].name, w->e[i].out.nbytes};
    dq_status st = dq_st_write_index(w->tmp, e, w->n, err);
    free(e);
    return st;
}

/* A full-precision tensor, converted back to the source dtype (exact: the
 * values came from it). */
static dq_status put_fp(dq_packed_writer *w, size_t i, const dq_model *m, dq_error *err) {
    const entry *e = &w->e[i];
    const float *x = dq_site_data(m, e->layer, e->site);
    size_t n = e->out.nbytes / dq_dtype_size(m->dtype);
    if (!x) /* a lazily loaded model's deferred tensor (dq_model_block_load) */
        return dq_fail(err, DQ_ERR_ARG, "%s: tensor %s is not loaded", w->out, e->out.name);
    if (m->dtype == DQ_DTYPE_F32) return put_entry(w, i, x, e->out.nbytes, err);
    uint16_t *h = malloc(e->out.nbytes);
    if (!h) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", e->out.name);
    for (size_t k = 0; k < n; k++) h[k] = m->dtype == DQ_DTYPE_F16 ? dq_f32_to_f16(x[k]) : dq_f32_to_bf16(x[k]);
    dq_status st = put_entry(w, i, h, e->out.nbytes, err);
    free(h);
    return st;
}

/* The format stores scales and zeros as float16: one beyond ±65504 would be
 * written as inf, which our loader refuses (and the official one turns into
 * inf weights). Nothing is published then. */
static dq_status check_f16_params(const char *out, const dq_qlayer *ql, dq_error *err) {
    const dq_qtensor *q = &ql->qt;
    size_t ng = (size_t)q->rows * q->groups_per_row;
    for (size_t g = 0; g < ng; g++) {
        float v[2] = {q->scale[g], q->zero[g]};
        for (int k = 0; k < 2; k++)
            if ((dq_f32_to_f16(v[k]) & 0x7fffu) >= 0x7c00u)
                return dq_fail(err, DQ_ERR_NUMERIC,
                               "%s: tensor %s.%s: value %g (group %zu) is beyond the float16 range (±65504) of "
                               "a packed checkpoint; nothing was written: the weights are too large for this "
                               "format (use --format gguf)",
                               out, ql->name, k ? "zero" : "scale", (double)v[k], g);
    }
    return DQ_OK;
}

/* Codes (rows in Hugging Face order from llama2.c's interleaved heads),
 * scales and zeros of one layer into entries i, i+1, i+2. */
static dq_status put_quantized(dq_packed_writer *w, size_t i, const dq_model *m, const dq_qlayer *ql,
                               dq_error *err) {
    const dq_qtensor *q = &ql->qt;
    bool permute = m->cfg.rope_style == DQ_ROPE_INTERLEAVED && ql->site->rope_rows;
    int hd = m->cfg.head_dim;
    size_t n = (size_t)q->rows * q->cols, ng = (size_t)q->rows * q->groups_per_row;
    uint8_t *codes = malloc(n);
    uint16_t *sc = malloc(ng * 2), *ze = malloc(ng * 2);
    int32_t *words = malloc(dq_packed_words(n, q->bits) * 4);
    dq_status st = codes && sc && ze && words ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", ql->name);
    for (int r = 0; !st && r < q->rows; r++) {
        int src = permute ? dq_interleaved_row_of_half_row(r, hd) : r;
        memcpy(codes + (size_t)r * q->cols, q->q + (size_t)src * q->cols, (size_t)q->cols);
        for (int g = 0; g < q->groups_per_row; g++) {
            sc[(size_t)r * q->groups_per_row + g] = dq_f32_to_f16(q->scale[(size_t)src * q->groups_per_row + g]);
            ze[(size_t)r * q->groups_per_row + g] = dq_f32_to_f16(q->zero[(size_t)src * q->groups_per_row + g]);
        }
    }
    if (!st) {
        dq_pack_codes(codes, n, q->bits, words);
        st = put_entry(w, i, words, dq_packed_words(n, q->bits) * 4, err);
    }
    if (!st) st = put_entry(w, i + 1, sc, ng * 2, err);
    if (!st) st = put_entry(w, i + 2, ze, ng * 2, err);
    free(codes);
    free(sc);
    free(ze);
    free(words);
    return st;
}

/* Every entry `owner` writes (ql: the layer that arrived; NULL at finish). */
static dq_status put_owned(dq_packed_writer *w, int owner, const dq_model *m, const dq_qlayer *ql, dq_error *err) {
    dq_status st = DQ_OK;
    for (size_t i = 0; !st && i < w->n; i++) {
        if (w->e[i].owner != owner) continue;
        if (w->e[i].kind == PART_FP) st = put_fp(w, i, m, err);
        else if (w->e[i].kind == PART_CODES) st = put_quantized(w, i, m, ql, err), i += 2;
    }
    return st;
}

static bool same_dims(const dq_qtensor *a, const dq_qtensor *b) {
    return a->rows == b->rows && a->cols == b->cols && a->in_cols == b->in_cols && a->bits == b->bits &&
           a->group == b->group && a->groups_per_row == b->groups_per_row;
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
    /* provenance: the reference was itself quantized (its grid can favour a method, see dq_model_source_quant) */
    if (m->n_src_quant) cJSON_AddStringToObject(o, "base_model_quantization", m->src_quant);
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

void dq_packed_abort(dq_packed_writer *w) {
    if (!w) return;
    for (int f = 0; w->files && f < w->n_files; f++)
        if (w->files[f].st.f) dq_st_writer_abort(&w->files[f].st);
    if (w->tmp[0] && !w->keep) dq_dir_remove_flat(w->tmp);
    free(w->files);
    free(w->e);
    free(w->layout);
    free(w);
}

dq_status dq_packed_begin(const char *out, const dq_model *m, const dq_qlayer *layout, int n, dq_packed_writer **wp,
                          dq_error *err) {
    return dq_packed_begin_at(out, NULL, false, m, layout, n, wp, err);
}

/* The temporary folder: OUT.tmp-PID, or a resumable run's own. */
static dq_status temp_dir(dq_packed_writer *w, const char *out, const char *tmp, bool reopen, dq_error *err) {
    if (!tmp) {
        dq_status st = dq_dir_begin(out, w->tmp, sizeof w->tmp, err);
        if (st) w->tmp[0] = '\0';
        return st;
    }
    w->keep = true;
    dq_status st = dq_path_fmt(w->tmp, sizeof w->tmp, err, "%s", tmp);
    if (!st && !reopen && mkdir(tmp, 0777) != 0 && errno != EEXIST)
        st = dq_fail(err, DQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    return st;
}

dq_status dq_packed_begin_at(const char *out, const char *tmp, bool reopen, const dq_model *m, const dq_qlayer *layout,
                             int n, dq_packed_writer **wp, dq_error *err) {
    *wp = NULL;
    dq_status st = dq_packed_check(m, err);
    if (st) return st;
    dq_packed_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->layout = malloc((size_t)(n ? n : 1) * sizeof *w->layout))) {
        free(w);
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    }
    snprintf(w->out, sizeof w->out, "%s", out);
    memcpy(w->layout, layout, (size_t)n * sizeof *layout);
    w->n_layout = n;
    build_layout(w, m);
    if (w->oom) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    if (!st) st = temp_dir(w, out, tmp, reopen, err);
    if (!st) st = assign_files(w, m, err);
    if (!st) st = open_files(w, reopen, err);
    if (st) {
        dq_packed_abort(w);
        return st;
    }
    *wp = w;
    return DQ_OK;
}

dq_status dq_packed_put(dq_packed_writer *w, const dq_model *m, const dq_qlayer *layers, int n, dq_error *err) {
    for (int k = 0; k < n; k++) {
        const dq_qlayer *ql = &layers[k];
        if (w->next >= w->n_layout || strcmp(ql->name, w->layout[w->next].name) ||
            !same_dims(&ql->qt, &w->layout[w->next].qt))
            return dq_fail(err, DQ_ERR_ARG, "%s: layer %s (%d x %d, %d-bit) is not the next one the checkpoint "
                           "was laid out for", w->out, ql->name, ql->qt.rows, ql->qt.cols, ql->qt.bits);
        dq_status st = check_f16_params(w->out, ql, err);
        if (!st) st = put_owned(w, w->next, m, ql, err);
        if (st) return st;
        w->next++;
    }
    return DQ_OK;
}

dq_status dq_packed_skip(dq_packed_writer *w, const dq_qlayer *layers, int n, dq_error *err) {
    for (int k = 0; k < n; k++, w->next++) {
        if (w->next >= w->n_layout || strcmp(layers[k].name, w->layout[w->next].name))
            return dq_fail(err, DQ_ERR_ARG, "%s: layer %s is not the next one the checkpoint was laid out for", w->out,
                           layers[k].name);
        for (size_t i = 0; i < w->n; i++)
            if (w->e[i].owner == w->next) dq_st_writer_mark(&w->files[w->e[i].file].st, w->e[i].slot);
    }
    return DQ_OK;
}

dq_status dq_packed_sync(dq_packed_writer *w, dq_error *err) {
    dq_status st = DQ_OK;
    for (int f = 0; !st && f < w->n_files; f++) st = dq_st_writer_sync(&w->files[f].st, err);
    return st;
}

dq_status dq_packed_finish(dq_packed_writer *w, const dq_model *m, const dq_quant_result *r,
                           const dq_packed_info *info, dq_error *err) {
    dq_status st = w->next == w->n_layout ? DQ_OK
                   : dq_fail(err, DQ_ERR_ARG, "%s: %d of %d quantized layers were written", w->out, w->next,
                             w->n_layout);
    if (!st) st = put_owned(w, -1, m, NULL, err);
    for (int f = 0; !st && f < w->n_files; f++) st = dq_st_writer_close(&w->files[f].st, err);
    if (!st && w->n_files > 1) st = write_shard_index(w, err);
    if (!st) st = dq_write_json(w->tmp, "config.json", dq_hf_config(m, m->cfg.arch, dtype_torch(m->dtype)), false, err);
    if (!st) st = dq_write_json(w->tmp, "dashq_config.json", quant_config(m, r, info), false, err);
    if (!st && info->tokenizer_path) st = copy_tokenizer(info->tokenizer_path, w->tmp, info, m->cfg.seq_len, err);
    if (!st) st = dq_dir_publish(w->tmp, w->out, err);
    if (!st) w->tmp[0] = '\0'; /* published: nothing to remove */
    dq_packed_abort(w);
    return st;
}

dq_status dq_write_packed(const char *out, const dq_model *m, const dq_quant_result *r, const dq_packed_info *info,
                          dq_error *err) {
    dq_packed_writer *w;
    dq_status st = dq_packed_begin(out, m, r->layers, r->n, &w, err);
    if (st) return st;
    st = dq_packed_put(w, m, r->layers, r->n, err);
    if (st) {
        dq_packed_abort(w);
        return st;
    }
    return dq_packed_finish(w, m, r, info, err);
}
