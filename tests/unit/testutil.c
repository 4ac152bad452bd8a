#define _GNU_SOURCE
#include "testutil.h"
#include <cjson/cJSON.h>
#include <dirent.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "export/gguf_export.h"
#include "formats/safetensors.h"

#define N_SLOTS 16
static char slots[N_SLOTS][1024]; /* rotating buffers: paths stay valid for a few calls */
static int slot;

static char *next_slot(void) {
    slot = (slot + 1) % N_SLOTS;
    return slots[slot];
}

int32_t *tu_read_tokens(const char *path, int *n) {
    char *text = tu_read(path, NULL);
    int32_t *t = malloc(4096 * sizeof *t);
    assert_non_null(t);
    *n = 0;
    for (char *p = text, *end; *n < 4096; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        t[(*n)++] = (int32_t)v;
    }
    free(text);
    return t;
}

dq_calib_set tu_book_windows(const char *tokenizer_rel, int n, int len, uint64_t seed) {
    dq_tokenizer *t = tu_tokenizer(tu_shared(tokenizer_rel));
    dq_calib_set cs;
    dq_error err = {0};
    if (dq_calib_load(tu_shared("data/gutenberg/calib/gutenberg_calib.txt"), t, n, len, seed, &cs, &err))
        fail_msg("%s", err.msg);
    dq_tokenizer_free(t);
    return cs;
}

const char *tu_shared(const char *rel) {
    const char *root = getenv("DASHQ_SHARED");
    char *p = next_slot();
    snprintf(p, 1024, "%s/%s", root && *root ? root : DQ_SHARED_DEFAULT, rel);
    return p;
}

/* The file name scripts/models.sh gives each model in its cache folder. */
static const struct { const char *name, *file; } REAL_MODELS[] = {
    {"smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf"},
};

const char *tu_real_model(const char *name) {
    const char *file = NULL;
    for (size_t i = 0; i < sizeof REAL_MODELS / sizeof *REAL_MODELS; i++)
        if (!strcmp(REAL_MODELS[i].name, name)) file = REAL_MODELS[i].file;
    if (!file) fail_msg("unknown real model %s", name);
    const char *cache = getenv("DASHQ_MODELS"), *home = getenv("HOME");
    char *p = next_slot();
    if (cache && *cache) snprintf(p, 1024, "%s/%s/%s", cache, name, file);
    else snprintf(p, 1024, "%s/.cache/dashq/models/%s/%s", home ? home : "", name, file);
    if (access(p, R_OK) == 0) return p;
    if (getenv("DASHQ_REQUIRE_MODELS")) fail_msg("%s is not cached at %s (run scripts/models.sh)", name, p);
    print_message("%s is not cached (run scripts/models.sh); skipping\n", name);
    return NULL;
}

const char *tu_fixture(const char *rel) {
    char *p = next_slot();
    snprintf(p, 1024, "%s/%s", DQ_FIXTURES, rel);
    return p;
}

const char *tu_ggml_fixture(const char *name, const char *ext) {
    char rel[128];
    size_t i = 0;
    for (; name[i] && i < 64; i++) /* ggml's spelling: "q4_K", "iq4_nl" */
        rel[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' && strcmp(name + i, "K") ? name[i] + 32 : name[i]);
    rel[i] = 0;
    char path[160];
    snprintf(path, sizeof path, "ggml/%s.%s", rel, ext);
    return tu_fixture(path);
}

const char *tu_tmpdir(void) {
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/dashq-test-XXXXXX");
        if (!mkdtemp(dir)) fail_msg("mkdtemp failed");
    }
    return dir;
}

const char *tu_tmp(const char *name) {
    char *p = next_slot();
    snprintf(p, 1024, "%s/%s", tu_tmpdir(), name);
    return p;
}

char *tu_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

void tu_write(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s", path);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

void tu_copy(const char *src, const char *dst, size_t keep) {
    size_t n;
    char *buf = tu_read(src, &n);
    tu_write(dst, buf, n < keep ? n : keep);
    free(buf);
}

dq_model *tu_model(const char *path) {
    dq_error err = {0};
    dq_model *m = NULL;
    if (dq_model_load(path, &m, &err)) fail_msg("loading %s: %s", path, err.msg);
    return m;
}

dq_tokenizer *tu_tokenizer(const char *path) {
    dq_error err = {0};
    dq_tokenizer *t = NULL;
    if (dq_tokenizer_load(path, &t, &err)) fail_msg("loading %s: %s", path, err.msg);
    return t;
}

int tu_run(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    if (!p) fail_msg("popen failed: %s", cmd);
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (size_t got; (got = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
        n += got;
        if (cap - n < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    buf[n] = '\0';
    int status = pclose(p);
    if (out) *out = buf;
    else free(buf);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void tu_write_overflowing_stories(const char *path) {
    size_t n;
    char *data = tu_read(tu_shared("models/stories260K/stories260K.bin"), &n);
    float big = 3e38f; /* layer 0's attention-norm gain (after the 28-byte header and the 512 x 64 embedding) */
    for (int i = 0; i < 64; i++) memcpy(data + 28 + 4 * ((size_t)512 * 64 + i), &big, 4);
    tu_write(path, data, n);
    free(data);
}

const char *tu_hf_copy(const char *name) {
    const char *dir = tu_tmp(name);
    mkdir(dir, 0755);
    char src[1024], dst[1024];
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        snprintf(src, sizeof src, "%s/%s", tu_fixture("qwen2-tiny"), files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        tu_copy(src, dst, (size_t)-1);
    }
    return dir;
}

const char *tu_hf_sharded(const char *src, const char *name, int n) {
    const char *dir = tu_tmp(name);
    struct stat sb;
    if (stat(dir, &sb) == 0) return dir; /* made by an earlier call: the same split */
    mkdir(dir, 0755);
    char from[1024], to[1024];
    const char *side[] = {"config.json", "tokenizer.json", "tokenizer_config.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(from, sizeof from, "%s/%s", src, side[i]);
        snprintf(to, sizeof to, "%s/%s", dir, side[i]);
        if (access(from, R_OK) == 0) tu_copy(from, to, (size_t)-1);
    }
    snprintf(from, sizeof from, "%s/model.safetensors", src);
    dq_st_file f;
    dq_error err = {0};
    if (dq_st_open(from, &f, &err)) fail_msg("%s", err.msg);
    if (n < 1 || (size_t)n > f.n_tensors) fail_msg("%s: %zu tensors cannot fill %d shards", from, f.n_tensors, n);
    dq_st_out *t = calloc(f.n_tensors, sizeof *t);
    if (!t) fail_msg("out of memory");
    cJSON *index = cJSON_CreateObject(), *map = cJSON_AddObjectToObject(index, "weight_map");
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(index, "metadata"), "total_size", 0);
    for (int s = 0; s < n; s++) {
        char file[64];
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, n);
        size_t k = 0;
        for (size_t i = (size_t)s; i < f.n_tensors; i += (size_t)n, k++) {
            const dq_st_tensor *x = &f.tensors[i];
            snprintf(t[k].name, sizeof t[k].name, "%s", x->name);
            t[k].dtype = x->dtype;
            t[k].ndim = x->ndim;
            memcpy(t[k].shape, x->shape, sizeof t[k].shape);
            t[k].data = x->data;
            t[k].nbytes = x->nbytes;
            cJSON_AddStringToObject(map, x->name, file);
        }
        snprintf(to, sizeof to, "%s/%s", dir, file);
        if (dq_st_write(to, t, k, &err)) fail_msg("%s", err.msg);
    }
    char *json = cJSON_Print(index);
    snprintf(to, sizeof to, "%s/model.safetensors.index.json", dir);
    tu_write(to, json, strlen(json));
    free(json);
    cJSON_Delete(index);
    free(t);
    dq_st_close(&f);
    return dir;
}

static int list_files(const char *dir, char names[][256], int cap) {
    DIR *d = opendir(dir);
    if (!d) fail_msg("%s: cannot list", dir);
    int n = 0;
    char path[16640];
    struct stat sb;
    for (struct dirent *e; (e = readdir(d));) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (n == cap) fail_msg("%s: more than %d files to compare", dir, cap);
        snprintf(names[n++], 256, "%s", e->d_name);
    }
    closedir(d);
    return n;
}

bool tu_same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = tu_read(a, &na), *y = tu_read(b, &nb);
    bool same = na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

cJSON *tu_read_json(const char *dir, const char *file) {
    char path[16640];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = tu_read(path, NULL);
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) fail_msg("%s: not JSON", path);
    return j;
}

bool tu_same_folder(const char *a, const char *b, const char **what) {
    static char names[64][256], other[64][256];
    int n = list_files(a, names, 64), m = list_files(b, other, 64);
    *what = "(the number of files)";
    if (n != m) return false;
    for (int i = 0; i < n; i++) {
        char pa[16640], pb[16640];
        snprintf(pa, sizeof pa, "%s/%s", a, names[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, names[i]);
        *what = names[i];
        if (access(pb, R_OK) != 0) return false;
        if (!tu_same_file(pa, pb)) return false;
    }
    return true;
}

const char *tu_export_gguf(const char *path, const dq_model *m, const dq_tokenizer *t, int type) {
    dq_gguf_export_opts o = {.type = (dq_ggml_type)type, .name = "test"};
    dq_error err = {0};
    if (dq_export_gguf(path, m, t, &o, &err)) fail_msg("%s: %s", path, err.msg);
    return path;
}
