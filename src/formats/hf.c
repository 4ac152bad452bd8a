/* Hugging Face folders: config.json (llama, mistral, qwen2) and weights in
 * model.safetensors or shards listed by model.safetensors.index.json. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dashq_packed.h"
#include "formats/safetensors.h"
#include "model/sites.h"
#include "util/error.h"
#include "util/half.h"

typedef struct {
    dq_st_file files[DQ_MAX_MAPS];
    int n_files;
    cJSON *weight_map; /* tensor name -> shard file name, NULL for a single file */
    const char **shard_names; /* the weight map's distinct file names, sorted (n_shards) */
    int n_shards;
    cJSON *qmap;       /* dashq_config.json quantized_modules, NULL for a plain folder */
    bool *used[DQ_MAX_MAPS]; /* per tensor of each file: looked up by the loader */
    char dir[PATH_MAX];
} shards;

static double num(const cJSON *o, const char *key, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0); /* eos_token_id may be a list */
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static int inum(const cJSON *o, const char *key, double dflt) {
    double v = num(o, key, dflt);
    return v >= -1 && v <= 1e9 ? (int)v : 0; /* out-of-range values fail validation as 0 */
}

/* A float hyperparameter in (lo, hi), finite: 0, a negative or an infinite
 * RoPE base, scaling factor or epsilon makes every activation NaN later on,
 * so it is refused here, naming the key. (JSON has no NaN; Python's json
 * writes one anyway, and cJSON then refuses the whole file as invalid.) */
static dq_status check_key(const char *path, const char *key, double v, double lo, double hi, dq_error *err) {
    if (v > lo && v < hi && isfinite(v)) return DQ_OK;
    return dq_fail(err, DQ_ERR_FORMAT, "%s: %s = %g is out of range (want a finite number > %g%s)", path, key, v, lo,
                   hi < INFINITY ? " and < 1" : "");
}

static dq_status read_rope_scaling(const cJSON *cfg, dq_config *c, const char *path, dq_error *err) {
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling");
    if (!rs || cJSON_IsNull(rs)) return DQ_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!cJSON_IsString(type)) type = cJSON_GetObjectItemCaseSensitive(rs, "type");
    const char *t = cJSON_IsString(type) ? type->valuestring : "?";
    c->rope_factor = (float)num(rs, "factor", 1.0);
    if (!strcmp(t, "default")) return DQ_OK;
    if (!strcmp(t, "linear")) {
        c->rope_scaling = DQ_ROPE_SCALING_LINEAR;
    } else if (!strcmp(t, "llama3")) {
        c->rope_scaling = DQ_ROPE_SCALING_LLAMA3;
        c->rope_low_freq_factor = (float)num(rs, "low_freq_factor", 1.0);
        c->rope_high_freq_factor = (float)num(rs, "high_freq_factor", 4.0);
        c->rope_orig_ctx = inum(rs, "original_max_position_embeddings", 8192);
        dq_status st;
        if ((st = check_key(path, "rope_scaling.low_freq_factor", c->rope_low_freq_factor, 0, INFINITY, err)) ||
            (st = check_key(path, "rope_scaling.high_freq_factor", c->rope_high_freq_factor, 0, INFINITY, err)))
            return st;
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_orig_ctx <= 0)
            return dq_fail(err, DQ_ERR_FORMAT, "%s: inconsistent llama3 rope_scaling", path);
    } else {
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: rope_scaling type %s is not supported", path, t);
    }
    return check_key(path, "rope_scaling.factor", c->rope_factor, 0, INFINITY, err);
}

static dq_status read_config(const char *dir, dq_config *c, dq_error *err) {
    char path[PATH_MAX], *text;
    if (!dq_path_join(path, sizeof path, dir, "config.json"))
        return dq_fail(err, DQ_ERR_ARG, "%s: path too long", dir);
    dq_status st = dq_read_file(path, 16u << 20, &text, NULL, err);
    if (st) return st;
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(cfg)) {
        cJSON_Delete(cfg);
        return dq_fail(err, DQ_ERR_FORMAT, "%s: invalid JSON", path);
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    const char *type = cJSON_IsString(mt) ? mt->valuestring : "(missing)";
    memset(c, 0, sizeof *c);
    if (strcmp(type, "llama") && strcmp(type, "mistral") && strcmp(type, "qwen2")) {
        st = dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: model_type %s is not supported (llama, mistral, qwen2)",
                     path, type);
    } else if (num(cfg, "attention_bias", 0) != 0 ||
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "attention_bias"))) {
        st = dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: attention_bias is not supported", path);
    } else {
        snprintf(c->arch, sizeof c->arch, "%s", type);
        c->dim = inum(cfg, "hidden_size", 0);
        c->hidden_dim = inum(cfg, "intermediate_size", 0);
        c->n_layers = inum(cfg, "num_hidden_layers", 0);
        c->n_heads = inum(cfg, "num_attention_heads", 0);
        c->n_kv_heads = inum(cfg, "num_key_value_heads", c->n_heads);
        c->head_dim = inum(cfg, "head_dim", c->n_heads > 0 ? c->dim / c->n_heads : 0);
        c->vocab_size = inum(cfg, "vocab_size", 0);
        c->seq_len = inum(cfg, "max_position_embeddings", 2048);
        c->norm_eps = (float)num(cfg, "rms_norm_eps", 1e-6);
        c->rope_theta = (float)num(cfg, "rope_theta", 10000.0);
        c->rope_style = DQ_ROPE_HALF;
        c->qkv_bias = !strcmp(type, "qwen2");
        c->tied_embeddings = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings"));
        c->bos_id = inum(cfg, "bos_token_id", -1);
        c->eos_id = inum(cfg, "eos_token_id", -1);
        st = check_key(path, "rms_norm_eps", c->norm_eps, 0, 1, err);
        if (!st) st = check_key(path, "rope_theta", c->rope_theta, 1, INFINITY, err);
        if (!st) st = read_rope_scaling(cfg, c, path, err);
        if (!st) st = dq_config_validate(c, path, err);
    }
    cJSON_Delete(cfg);
    return st;
}

static dq_status open_shard(shards *s, const char *file, const dq_st_file **out, dq_error *err) {
    char path[PATH_MAX];
    if (strchr(file, '/') || !dq_path_join(path, sizeof path, s->dir, file))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: bad shard name \"%.80s\"", s->dir, file);
    for (int i = 0; i < s->n_files; i++)
        if (!strcmp(s->files[i].map.path, path)) {
            *out = &s->files[i];
            return DQ_OK;
        }
    if (s->n_files == DQ_MAX_MAPS)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: more than %d shards", s->dir, DQ_MAX_MAPS);
    dq_status st = dq_st_open(path, &s->files[s->n_files], err);
    if (st) return st;
    size_t n = s->files[s->n_files].n_tensors;
    if (!(s->used[s->n_files] = calloc(n ? n : 1, sizeof(bool)))) {
        dq_st_close(&s->files[s->n_files]);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    }
    *out = &s->files[s->n_files++];
    return DQ_OK;
}

static dq_status find_tensor(shards *s, const char *name, const dq_st_tensor **t, dq_error *err) {
    const char *file = "model.safetensors";
    if (s->weight_map) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(s->weight_map, name);
        if (!cJSON_IsString(f)) {
            *t = NULL;
            return DQ_OK;
        }
        file = f->valuestring;
    }
    const dq_st_file *sf;
    dq_status st = open_shard(s, file, &sf, err);
    if (st) return st;
    *t = dq_st_find(sf, name);
    if (*t) s->used[sf - s->files][*t - sf->tensors] = true;
    return DQ_OK;
}

/* Whether tensor `name` (listed by the index or the single file) was looked up. */
static bool was_used(const shards *s, const char *name) {
    for (int i = 0; i < s->n_files; i++) {
        const dq_st_tensor *t = dq_st_find(&s->files[i], name);
        if (t && s->used[i][t - s->files[i].tensors]) return true;
    }
    return false;
}

/* A tensor the model has no place for. Blocks beyond num_hidden_layers are an
 * error, as in the GGUF loader (block_count): the folder is not the model
 * config.json describes, and llama.cpp's convert_hf_to_gguf refuses it too.
 * So is any other unknown tensor: transformers only warns ("Some weights of
 * the model checkpoint ... were not used"), but it then runs a model without
 * them, and llama.cpp's convert refuses them ("Can not map tensor"); we
 * cannot warn from here and would rather not compute with part of a model.
 * The exception is what both skip: rotary_emb.inv_freq, which old Llama
 * checkpoints carry and rope_theta recomputes. */
static dq_status check_unused(const dq_model *m, const shards *s, const char *name, dq_error *err) {
    static const char skip[] = ".rotary_emb.inv_freq";
    size_t n = strlen(name), k = sizeof skip - 1;
    if (was_used(s, name) || (n >= k && !strcmp(name + n - k, skip))) return DQ_OK;
    char *end;
    long layer = strncmp(name, "model.layers.", 13) ? -1 : strtol(name + 13, &end, 10);
    if (layer >= m->cfg.n_layers && *end == '.')
        return dq_fail(err, DQ_ERR_FORMAT,
                       "%s: tensor %s belongs to layer %ld, but config.json says num_hidden_layers %d; llama.cpp's "
                       "convert refuses such a folder too",
                       s->dir, name, layer, m->cfg.n_layers);
    return dq_fail(err, DQ_ERR_FORMAT,
                   "%s: tensor %s is not part of a %s model; remove it or fix config.json (llama.cpp's convert "
                   "refuses it too: \"Can not map tensor\")",
                   s->dir, name, m->cfg.arch);
}

static dq_status check_all_used(const dq_model *m, shards *s, dq_error *err) {
    if (s->weight_map) {
        for (const cJSON *e = s->weight_map->child; e; e = e->next) {
            dq_status st = check_unused(m, s, e->string, err);
            if (st) return st;
        }
        return DQ_OK;
    }
    for (int i = 0; i < s->n_files; i++)
        for (size_t k = 0; k < s->files[i].n_tensors; k++) {
            dq_status st = s->used[i][k] ? DQ_OK : check_unused(m, s, s->files[i].tensors[k].name, err);
            if (st) return st;
        }
    return DQ_OK;
}

static const dq_st_tensor *need(shards *s, const char *module, const char *suffix, size_t n, bool is_int,
                                dq_error *err) {
    char name[256];
    snprintf(name, sizeof name, "%s.%s", module, suffix);
    const dq_st_tensor *t;
    if (find_tensor(s, name, &t, err)) return NULL;
    if (!t) dq_fail(err, DQ_ERR_FORMAT, "%s: packed tensor %s is missing", s->dir, name);
    else if (t->n_elems != n || (is_int ? strcmp(t->dtype, "I32") : !t->known_dtype))
        dq_fail(err, DQ_ERR_FORMAT, "%s: packed tensor %s: dtype %s with %zu elements, expected %s with %zu",
                s->dir, name, t->dtype, t->n_elems, is_int ? "I32" : "F16", n);
    else return t;
    return NULL;
}

static float elem(const dq_st_tensor *t, size_t i) {
    float f;
    uint16_t h;
    if (t->type == DQ_DTYPE_F32) return memcpy(&f, t->data + 4 * i, 4), f;
    memcpy(&h, t->data + 2 * i, 2);
    return t->type == DQ_DTYPE_F16 ? dq_f16_to_f32(h) : dq_bf16_to_f32(h);
}

/* A DASH-Q packed linear's pieces in the mapped shards: codes over rows x
 * qcols (the width padded to a multiple of the group), one scale and zero
 * per group. */
typedef struct {
    dq_st_tensor w, scale, zero; /* copies (names dropped): their data stay mapped as long as the model */
    int bits, group;
    size_t rows, cols, qcols;
} packed_linear;

/* Dequantized exactly as the quantizer computed it: w = scale · (q − zero);
 * the padding columns are dropped. */
static bool fill_packed(const void *ctx, float *W) {
    const packed_linear *p = ctx;
    size_t n = p->rows * p->qcols, gpr = p->qcols / (size_t)p->group;
    uint8_t *q = malloc(n);
    if (!q) return false;
    dq_unpack_codes((const int32_t *)(const void *)p->w.data, n, p->bits, q);
    for (size_t g = 0; g < p->rows * gpr; g++) {
        float scale = elem(&p->scale, g), zero = elem(&p->zero, g);
        size_t r = g / gpr, c0 = (g % gpr) * (size_t)p->group;
        for (size_t j = c0; j < c0 + (size_t)p->group && j < p->cols; j++)
            W[r * p->cols + j] = scale * ((float)q[r * p->qcols + j] - zero);
    }
    free(q);
    return true;
}

/* A DASH-Q packed linear (NAME.W_q_packed, .scale, .zero), checked against
 * its dashq_config.json entry, dequantized on load (a lazily loaded model:
 * when its block is loaded). */
static dq_status bind_packed(dq_model *m, shards *s, const char *module, const cJSON *meta, int64_t rows,
                             int64_t cols, const float **out, dq_error *err) {
    int bits = inum(meta, "nbits", 0), G = inum(meta, "group_size", 0); /* 0 when out of int range */
    double ng = num(meta, "num_groups", -1), qin = num(meta, "quant_in_features", (double)cols);
    if (num(meta, "in_features", -1) != cols || num(meta, "out_features", -1) != rows || bits < 1 || bits > 8 ||
        num(meta, "nbits", 0) != bits || G <= 0 || num(meta, "group_size", 0) != G ||
        !(qin >= (double)cols && qin < (double)cols + G) || qin != (double)(int64_t)qin || (int64_t)qin % G ||
        ng != (double)rows * ((int64_t)qin / G))
        return dq_fail(err, DQ_ERR_FORMAT, "%s/dashq_config.json: module %s does not describe a %lld x %lld linear",
                       s->dir, module, (long long)rows, (long long)cols);
    int64_t qcols = (int64_t)qin;
    size_t n = (size_t)rows * (size_t)qcols, groups = (size_t)ng;
    const dq_st_tensor *w = need(s, module, "W_q_packed", dq_packed_words(n, bits), true, err);
    const dq_st_tensor *sc = w ? need(s, module, "scale", groups, false, err) : NULL;
    const dq_st_tensor *ze = sc ? need(s, module, "zero", groups, false, err) : NULL;
    if (!ze) return err ? err->code : DQ_ERR_FORMAT;
    packed_linear *p = malloc(sizeof *p);
    if (!p) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", module);
    *p = (packed_linear){.w = *w, .scale = *sc, .zero = *ze, .bits = bits, .group = G, .rows = (size_t)rows,
                         .cols = (size_t)cols, .qcols = (size_t)qcols};
    p->w.name = p->scale.name = p->zero.name = NULL;
    char name[256];
    snprintf(name, sizeof name, "%s.W_q_packed", module);
    return dq_model_tensor_filled(m, s->dir, name, w->data, w->n_elems * sizeof(int32_t), fill_packed, p,
                                  (size_t)rows * (size_t)cols, out, err);
}

/* NAME of a linear's weight tensor NAME.weight, into module (cap bytes);
 * false for any other name. */
static bool weight_module(const char *name, char *module, size_t cap) {
    size_t nl = strlen(name);
    if (nl <= 7 || strcmp(name + nl - 7, ".weight")) return false;
    snprintf(module, cap, "%.*s", (int)(nl - 7), name);
    return true;
}

/* The DASH-Q packed checkpoint's entry for linear weight `name` (NAME.weight:
 * module NAME in quantization_config, written to module), or NULL when it is
 * stored as it is. */
static const cJSON *packed_meta(const shards *s, const char *name, char *module, size_t cap) {
    return s->qmap && weight_module(name, module, cap) ? cJSON_GetObjectItemCaseSensitive(s->qmap, module) : NULL;
}

/* Binds an fp32 view of stored tensor `name`, checking its shape is (rows, cols) or (rows). */
static dq_status bind(dq_model *m, shards *s, const char *name, int64_t rows, int64_t cols,
                      const float **out, dq_error *err) {
    const dq_st_tensor *t;
    dq_status st = find_tensor(s, name, &t, err);
    if (st) return st;
    if (!t) return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s is missing", s->dir, name);
    const char *file = s->weight_map ? cJSON_GetObjectItemCaseSensitive(s->weight_map, name)->valuestring
                                     : "model.safetensors";
    bool shape_ok = cols ? (t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols)
                         : (t->ndim == 1 && t->shape[0] == rows);
    if (!shape_ok)
        return dq_fail(err, DQ_ERR_FORMAT, "%s/%s: tensor %s has shape [%lld, %lld], expected [%lld, %lld]",
                       s->dir, file, name, (long long)t->shape[0],
                       (long long)(t->ndim > 1 ? t->shape[1] : 0), (long long)rows, (long long)cols);
    if (!t->known_dtype)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s/%s: tensor %s: dtype %s is not supported (F32, F16, BF16)",
                       s->dir, file, name, t->dtype);
    char where[2 * PATH_MAX];
    snprintf(where, sizeof where, "%s/%s", s->dir, file);
    return dq_model_tensor(m, where, name, t->data, t->type, t->n_elems, out, err);
}

/* The shard number of the file the index names for tensor `name` (a packed
 * linear's NAME.weight: its NAME.W_q_packed); -1 if none. */
static int shard_of(const shards *s, const char *name) {
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(s->weight_map, name);
    char module[200], packed[220];
    if (!f && weight_module(name, module, sizeof module)) {
        snprintf(packed, sizeof packed, "%s.W_q_packed", module);
        f = cJSON_GetObjectItemCaseSensitive(s->weight_map, packed);
    }
    for (int i = 0; cJSON_IsString(f) && i < s->n_shards; i++)
        if (!strcmp(s->shard_names[i], f->valuestring)) return i;
    return -1;
}

/* Site `site` of block `layer` (ignored for the model's own sites) into
 * *slot: a DASH-Q packed linear, dequantized, or a stored tensor. */
static dq_status bind_site(dq_model *m, shards *s, const dq_site *site, int layer, const float **slot, dq_error *err) {
    dq_site_ref t;
    dq_site_ref_of(site, &m->cfg, layer, DQ_NAMES_HF, &t);
    char module[200];
    const cJSON *meta = t.cols ? packed_meta(s, t.name, module, sizeof module) : NULL;
    dq_status st = meta ? bind_packed(m, s, module, meta, t.rows, t.cols, slot, err)
                        : bind(m, s, t.name, t.rows, t.cols, slot, err);
    if (!st) dq_site_set_shard(m, site, layer, shard_of(s, t.name));
    if (!st && meta && site->lin >= 0) {
        char type[24];
        snprintf(type, sizeof type, "INT%d g%d", inum(meta, "nbits", 0), inum(meta, "group_size", 0));
        dq_model_note_src_quant(m, type);
    }
    return st;
}

static dq_status bind_layer(dq_model *m, shards *s, int l, dq_error *err) {
    for (int i = 0; i < DQ_SITE_PER_BLOCK; i++) {
        const dq_site *site = &DQ_SITES[i];
        if (!dq_site_present(site, &m->cfg)) continue;
        dq_status st = bind_site(m, s, site, l, dq_site_tensor(&m->layers[l], site), err);
        if (st) return st;
    }
    return DQ_OK;
}

/* The model's own site `id` into its slot in m. */
static dq_status bind_model_site(dq_model *m, shards *s, dq_site_id id, dq_error *err) {
    return bind_site(m, s, &DQ_SITES[id], 0, dq_site_model_tensor(m, &DQ_SITES[id]), err);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* The index's distinct file names in sorted order: shard 0, 1, ... */
static dq_status shard_names(shards *s, const char *path, dq_error *err) {
    int n = cJSON_GetArraySize(s->weight_map), k = 0;
    if (!(s->shard_names = malloc((size_t)(n ? n : 1) * sizeof *s->shard_names)))
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", path);
    const cJSON *e;
    cJSON_ArrayForEach(e, s->weight_map) {
        if (!cJSON_IsString(e))
            return dq_fail(err, DQ_ERR_FORMAT, "%s: weight_map entry %.80s is not a file name", path, e->string);
        s->shard_names[k++] = e->valuestring;
    }
    qsort(s->shard_names, (size_t)k, sizeof *s->shard_names, cmp_str);
    for (int i = 0; i < k; i++)
        if (!s->n_shards || strcmp(s->shard_names[s->n_shards - 1], s->shard_names[i]))
            s->shard_names[s->n_shards++] = s->shard_names[i];
    if (s->n_shards > DQ_MAX_MAPS)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: more than %d shards", path, DQ_MAX_MAPS);
    return DQ_OK;
}

static dq_status open_index(shards *s, dq_error *err) {
    char path[PATH_MAX], *text;
    if (!dq_path_join(path, sizeof path, s->dir, "model.safetensors.index.json") || !dq_file_exists(path)) {
        if (dq_path_join(path, sizeof path, s->dir, "model.safetensors") && dq_file_exists(path)) return DQ_OK;
        return dq_fail(err, DQ_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json", s->dir);
    }
    dq_status st = dq_read_file(path, 64u << 20, &text, NULL, err);
    if (st) return st;
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *wm = cJSON_DetachItemFromObjectCaseSensitive(root, "weight_map");
    cJSON_Delete(root);
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(wm);
        return dq_fail(err, DQ_ERR_FORMAT, "%s: no weight_map object", path);
    }
    s->weight_map = wm;
    return shard_names(s, path, err);
}

/* dashq_config.json marks a DASH-Q packed checkpoint. */
static dq_status open_quant_map(dq_model *m, shards *s, dq_error *err) {
    char path[PATH_MAX], *text;
    if (!dq_path_join(path, sizeof path, s->dir, "dashq_config.json") || !dq_file_exists(path)) return DQ_OK;
    dq_status st = dq_read_file(path, 64u << 20, &text, NULL, err);
    if (st) return st;
    cJSON *root = cJSON_Parse(text);
    free(text);
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    cJSON *mods = cJSON_DetachItemFromObjectCaseSensitive(root, "quantized_modules");
    bool ok = cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "dashq-packed-linear") && cJSON_IsObject(mods);
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization");
    double abits = num(q, "act_bits", 0), agroup = num(q, "act_group", 0);
    cJSON_Delete(root);
    bool whole = abits >= 0 && abits <= 8 && agroup >= 0 && agroup <= 4096 && abits == (int)abits &&
                 agroup == (int)agroup;
    if (ok && (!whole || dq_model_set_act_quant(m, (int)abits, (int)agroup, err))) {
        cJSON_Delete(mods);
        return dq_fail(err, DQ_ERR_FORMAT, "%s: quantization.act_bits %g / act_group %g: not 0 or 4..8 bits, groups 0 "
                       "or 8..4096", path, abits, agroup);
    }
    if (!ok) {
        cJSON_Delete(mods);
        return dq_fail(err, DQ_ERR_FORMAT, "%s: not a \"dashq-packed-linear\" config with quantized_modules", path);
    }
    s->qmap = mods;
    m->format = "dashq";
    return DQ_OK;
}

static dq_status bind_all(dq_model *m, shards *s, dq_error *err) {
    const dq_config *c = &m->cfg;
    char embed_name[64], head_name[64], head_module[64];
    dq_site_hf_name(&DQ_SITES[DQ_SITE_TOKEN_EMBD], 0, embed_name, sizeof embed_name);
    dq_site_hf_name(&DQ_SITES[DQ_SITE_OUTPUT], 0, head_name, sizeof head_name);
    dq_site_hf_module(&DQ_SITES[DQ_SITE_OUTPUT], 0, head_module, sizeof head_module);
    dq_status st = bind_model_site(m, s, DQ_SITE_TOKEN_EMBD, err);
    const dq_st_tensor *emb;
    if (!st && !(st = find_tensor(s, embed_name, &emb, err)) && emb) m->dtype = emb->type;
    if (!st) st = bind_model_site(m, s, DQ_SITE_OUTPUT_NORM, err);
    for (int l = 0; !st && l < c->n_layers; l++) st = bind_layer(m, s, l, err);
    if (st) return st;
    const dq_st_tensor *head;
    if ((st = find_tensor(s, head_name, &head, err))) return st;
    if (!head && s->qmap && cJSON_GetObjectItemCaseSensitive(s->qmap, head_module) && !c->tied_embeddings)
        return bind_model_site(m, s, DQ_SITE_OUTPUT, err);
    if (!head && !c->tied_embeddings)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: %s is missing and embeddings are not tied", s->dir, head_name);
    if (!head || c->tied_embeddings) {
        m->cfg.tied_embeddings = true;
        m->output = m->tok_embeddings;
        return DQ_OK;
    }
    return bind_model_site(m, s, DQ_SITE_OUTPUT, err);
}

static dq_status alloc_shard_map(dq_model *m, int n_shards, dq_error *err) {
    size_t n = dq_site_shard_slots(&m->cfg);
    if (!(m->site_shard = dq_model_alloc(m, n * sizeof *m->site_shard)))
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) m->site_shard[i] = -1;
    m->n_shards = n_shards;
    return DQ_OK;
}

dq_status dq_load_hf(const char *dir, bool lazy, dq_model **out, dq_error *err) {
    *out = NULL;
    dq_model *m = dq_model_new(dir, "hf");
    if (m) m->lazy = lazy;
    shards *s = calloc(1, sizeof *s);
    if (!m || !s) {
        free(s);
        dq_model_free(m);
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    }
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    dq_status st = read_config(dir, &m->cfg, err);
    if (!st) st = open_index(s, err);
    if (!st) st = open_quant_map(m, s, err);
    if (!st && !(m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers)))
        st = dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    if (!st && s->n_shards > 1) st = alloc_shard_map(m, s->n_shards, err);
    if (!st) st = bind_all(m, s, err);
    if (!st) st = check_all_used(m, s, err);
    /* the model keeps the mappings; the parsed headers are no longer needed */
    for (int i = 0; i < s->n_files; i++) {
        m->maps[m->n_maps++] = s->files[i].map;
        s->files[i].map = (dq_mapped_file){0};
        dq_st_close(&s->files[i]);
        free(s->used[i]);
    }
    free(s->shard_names);
    cJSON_Delete(s->weight_map);
    cJSON_Delete(s->qmap);
    free(s);
    if (st) {
        dq_model_free(m);
        return st;
    }
    *out = m;
    return DQ_OK;
}
