/* make_synthetic_llama: a Hugging Face Llama folder of the size users
 * quantize, with random bf16 weights, for the memory and speed benchmarks of
 * issue #15 (bench/memory.sh). Nothing model-sized is committed: this makes
 * the models.
 *
 *   make_synthetic_llama PRESET OUT [--layers N] [--shards N] [--seed S]
 *
 * Presets: 1.9b (dim 2048, FFN 8192, 27 blocks, 32 heads, vocab 32000:
 * 1.94 B parameters, 3.9 GB), llama3-8b (Llama-3-8B's shapes: dim 4096, FFN
 * 14336, 32 blocks, 32 heads / 8 KV heads, vocab 128256, rope theta 5e5:
 * 8.03 B, 16 GB), tiny (dim 64, for tests). --layers keeps the widths and
 * changes the depth. Weights: uniform with the variance 1/in_features (so
 * activations stay O(1) through any depth behind RMSNorm), norm gains 1,
 * each tensor from its own splitmix64 stream (seed, tensor index): the same
 * bytes at every run. Written tensor by tensor through dq_st_writer, one
 * tensor of bf16 in memory at a time. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "export/hf_export.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "model/sites.h"
#include "util/half.h"
#include "util/rng.h"

typedef struct {
    const char *name;
    dq_config c;
} preset;

static const preset PRESETS[] = {
    {"1.9b", {.dim = 2048, .hidden_dim = 8192, .n_layers = 27, .n_heads = 32, .n_kv_heads = 32, .head_dim = 64,
              .vocab_size = 32000, .seq_len = 4096, .norm_eps = 1e-5f, .rope_theta = 10000.0f}},
    {"llama3-8b", {.dim = 4096, .hidden_dim = 14336, .n_layers = 32, .n_heads = 32, .n_kv_heads = 8, .head_dim = 128,
                   .vocab_size = 128256, .seq_len = 8192, .norm_eps = 1e-5f, .rope_theta = 500000.0f}},
    {"tiny", {.dim = 64, .hidden_dim = 192, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16,
              .vocab_size = 32000, .seq_len = 256, .norm_eps = 1e-5f, .rope_theta = 10000.0f}},
};

typedef struct {
    dq_site_ref ref;
    const dq_site *site;
} tensor;

/* Every tensor of the model in file order (the sites table's: embedding,
 * each block's rows, final norm, head). */
static size_t list_tensors(const dq_config *c, tensor *t) {
    size_t n = 0;
    dq_site_ref_of(&DQ_SITES[DQ_SITE_TOKEN_EMBD], c, 0, DQ_NAMES_HF, &t[n].ref), t[n++].site = &DQ_SITES[DQ_SITE_TOKEN_EMBD];
    for (int l = 0; l < c->n_layers; l++)
        for (int k = 0; k < DQ_SITE_PER_BLOCK; k++)
            if (dq_site_present(&DQ_SITES[k], c)) dq_site_ref_of(&DQ_SITES[k], c, l, DQ_NAMES_HF, &t[n].ref), t[n++].site = &DQ_SITES[k];
    for (int id = DQ_SITE_OUTPUT_NORM; id <= DQ_SITE_OUTPUT; id++)
        dq_site_ref_of(&DQ_SITES[id], c, 0, DQ_NAMES_HF, &t[n].ref), t[n++].site = &DQ_SITES[id];
    return n;
}

static size_t elems(const dq_site_ref *r) { return (size_t)r->rows * (size_t)(r->cols ? r->cols : 1); }

/* Tensor i's values as bf16, row chunk by row chunk into the writer. */
static int write_tensor(dq_st_writer *w, size_t slot, const tensor *t, uint64_t seed, size_t index) {
    size_t n = elems(&t->ref), chunk = (size_t)1 << 22, done = 0;
    uint16_t *buf = malloc((n < chunk ? n : chunk) * sizeof *buf);
    if (!buf) return 1;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + index;
    bool gain = t->site->role == DQ_SITE_NORM;
    double a = t->site->role == DQ_SITE_EMBEDDING ? sqrt(3.0) : sqrt(3.0 / (t->ref.cols ? t->ref.cols : 1));
    dq_error err = {0};
    while (done < n) {
        size_t k = n - done < chunk ? n - done : chunk;
        for (size_t i = 0; i < k; i++)
            buf[i] = dq_f32_to_bf16(gain ? 1.0f : (float)(a * (2.0 * dq_rng_uniform(&s) - 1.0)));
        if (dq_st_writer_put(w, slot, done * 2, buf, k * 2, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            free(buf);
            return 1;
        }
        done += k;
    }
    free(buf);
    return 0;
}

static int write_config(const char *dir, const dq_config *c) {
    dq_model *m = dq_model_new(dir, "hf");
    if (!m) return 1;
    m->cfg = *c;
    char *json = cJSON_Print(dq_hf_config(m, "llama", "bfloat16"));
    dq_model_free(m);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    int rc = !json || !f || fputs(json, f) < 0;
    if (f && fclose(f)) rc = 1;
    free(json);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: make_synthetic_llama 1.9b|llama3-8b|tiny OUT [--layers N] [--shards N] [--seed S]\n");
        return 2;
    }
    const preset *p = NULL;
    for (size_t i = 0; i < sizeof PRESETS / sizeof PRESETS[0]; i++)
        if (!strcmp(argv[1], PRESETS[i].name)) p = &PRESETS[i];
    if (!p) return fprintf(stderr, "unknown preset %s\n", argv[1]), 2;
    dq_config c = p->c;
    c.bos_id = 1, c.eos_id = 2;
    snprintf(c.arch, sizeof c.arch, "llama");
    int shards = 4;
    uint64_t seed = 1;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--layers")) c.n_layers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--shards")) shards = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seed")) seed = strtoull(argv[i + 1], NULL, 10);
        else return fprintf(stderr, "unknown option %s\n", argv[i]), 2;
    }
    if (c.n_layers < 1 || shards < 1) return fprintf(stderr, "need at least one layer and one shard\n"), 2;
    const char *out = argv[2];
    if (mkdir(out, 0755) && errno != EEXIST) return perror(out), 1;
    tensor *t = calloc((size_t)c.n_layers * DQ_SITE_PER_BLOCK + 3, sizeof *t);
    dq_st_out *o = calloc((size_t)c.n_layers * DQ_SITE_PER_BLOCK + 3, sizeof *o);
    if (!t || !o) return 1;
    size_t n = list_tensors(&c, t), total = 0;
    for (size_t i = 0; i < n; i++) total += elems(&t[i].ref) * 2;
    cJSON *index = cJSON_CreateObject(), *wm = cJSON_CreateObject();
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(index, "metadata"), "total_size", (double)total);
    cJSON_AddItemToObject(index, "weight_map", wm);
    size_t first = 0, cum = 0, target = (total + (size_t)shards - 1) / (size_t)shards;
    for (int sh = 0; sh < shards && first < n; sh++) {
        size_t last = first, bytes = 0; /* this shard: tensors up to (sh + 1) shares of the bytes */
        while (last < n && (sh == shards - 1 || last == first || cum < target * (size_t)(sh + 1))) {
            bytes += elems(&t[last].ref) * 2;
            cum += elems(&t[last++].ref) * 2;
        }
        char file[64], path[PATH_MAX];
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", sh + 1, shards);
        snprintf(path, sizeof path, "%s/%s", out, file);
        for (size_t i = first; i < last; i++) {
            snprintf(o[i].name, sizeof o[i].name, "%s", t[i].ref.name);
            o[i].dtype = "BF16";
            o[i].ndim = t[i].ref.cols ? 2 : 1;
            o[i].shape[0] = t[i].ref.rows;
            o[i].shape[1] = t[i].ref.cols;
            o[i].nbytes = elems(&t[i].ref) * 2;
            cJSON_AddStringToObject(wm, t[i].ref.name, file);
        }
        dq_st_writer w;
        dq_error err = {0};
        if (dq_st_writer_open(path, o + first, last - first, &w, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        for (size_t i = first; i < last; i++)
            if (write_tensor(&w, i - first, &t[i], seed, i)) return dq_st_writer_abort(&w), 1;
        if (dq_st_writer_close(&w, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        fprintf(stderr, "%s: %zu tensors, %.2f GB\n", path, last - first, (double)bytes / 1e9);
        first = last;
    }
    char path[PATH_MAX], *json = cJSON_Print(index);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
    FILE *f = fopen(path, "w");
    if (!json || !f || fputs(json, f) < 0 || fclose(f) || write_config(out, &c)) return fprintf(stderr, "%s: write failed\n", out), 1;
    cJSON_Delete(index);
    free(json);
    free(t);
    free(o);
    printf("%s: %s, %d blocks, %.3f B parameters, %.2f GB bf16\n", out, p->name, c.n_layers, (double)total / 2e9,
           (double)total / 1e9);
    return 0;
}
