/* Issue #13, the classes of non-finite results and of messages: hyperparameters
 * that would make every activation NaN are refused at load naming the key;
 * an overflowing forward pass fails at the first non-finite activation naming
 * the block and the tensor (eval, generate, quantize); writers that narrow to
 * 16 bits refuse values beyond the range before writing anything; a file that
 * is not what was asked for is named for what it is; an HF folder with
 * tensors the model has no place for is refused; report files are complete
 * or absent. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib/pipeline.h"
#include "export/gguf_export.h"
#include "formats/dashq_packed.h"
#include "model/model.h"
#include "testutil.h"
#include "util/error.h"

#define STORIES "models/stories260K/stories260K.bin"
#define TOK512 "models/stories260K/tok512.bin"
/* layer 0's wq in stories260K.bin: after the header, the embedding (512 x 64) and 5 attention norms */
#define WQ0 (28 + 4 * ((size_t)512 * 64 + 5 * 64))

static void expect_model_error(const char *path, dq_status code, const char *n1, const char *n2) {
    dq_model *m = NULL;
    dq_error err = {0};
    dq_status st = dq_model_load(path, &m, &err);
    dq_model_free(m);
    if (st != code || !strstr(err.msg, n1) || (n2 && !strstr(err.msg, n2)))
        fail_msg("%s: status %d (want %d), message \"%s\" should name \"%s\" and \"%s\"", path, st, code, err.msg, n1,
                 n2 ? n2 : "");
}

/* ---- hyperparameters ------------------------------------------------------------------ */

static const char *hf_copy(const char *name) {
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

static const char *hf_with_config(const char *name, const char *from, const char *to) {
    const char *dir = hf_copy(name);
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *cfg = tu_read(p, NULL), *at = strstr(cfg, from), out[8192];
    assert_non_null(at);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
    tu_write(p, out, strlen(out));
    free(cfg);
    return dir;
}

static void test_config_json_keys(void **st) {
    (void)st;
    static const char *const theta[] = {"0", "-10000", "1e999"}, *const eps[] = {"0", "-1e-6", "1e999"};
    static const char *const factor[] = {"0", "-2", "1e999"};
    const char *T = "\"rope_theta\": 1000000.0", *E = "\"rms_norm_eps\": 1e-06";
    char to[256];
    for (int i = 0; i < 3; i++) {
        snprintf(to, sizeof to, "\"rope_theta\": %s", theta[i]);
        expect_model_error(hf_with_config("hf-theta", T, to), DQ_ERR_FORMAT, "config.json: rope_theta = ", NULL);
        snprintf(to, sizeof to, "\"rms_norm_eps\": %s", eps[i]);
        expect_model_error(hf_with_config("hf-eps", E, to), DQ_ERR_FORMAT, "config.json: rms_norm_eps = ", NULL);
        snprintf(to, sizeof to, "%s, \"rope_scaling\": {\"type\": \"linear\", \"factor\": %s}", T, factor[i]);
        expect_model_error(hf_with_config("hf-factor", T, to), DQ_ERR_FORMAT, "config.json: rope_scaling.factor = ",
                           NULL);
    }
    snprintf(to, sizeof to,
             "%s, \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": -1, "
             "\"high_freq_factor\": 4, \"original_max_position_embeddings\": 64}",
             T);
    expect_model_error(hf_with_config("hf-low", T, to), DQ_ERR_FORMAT, "rope_scaling.low_freq_factor = -1", NULL);
    /* the same model with sane values loads */
    snprintf(to, sizeof to, "%s, \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}", T);
    dq_model_free(tu_model(hf_with_config("hf-ok", T, to)));
}

/* stories260K as GGUF, with linear RoPE scaling (factor 2) so that every float key is there. */
static char *gguf_stories(size_t *len) {
    dq_model *m = tu_model(tu_shared(STORIES));
    dq_tokenizer *t = tu_tokenizer(tu_shared(TOK512));
    m->cfg.rope_scaling = DQ_ROPE_SCALING_LINEAR;
    m->cfg.rope_factor = 2.0f;
    dq_gguf_export_opts o = {.type = DQ_GGML_F32, .name = "test"};
    dq_error err = {0};
    const char *p = tu_tmp("keys.gguf");
    if (dq_export_gguf(p, m, t, &o, &err)) fail_msg("%s", err.msg);
    dq_tokenizer_free(t);
    dq_model_free(m);
    return tu_read(p, len);
}

/* The f32 value of metadata key `key` (its string, a u32 type 6, then the value). */
static void set_f32_key(char *data, size_t len, const char *key, float v) {
    char *k = memmem(data, len, key, strlen(key));
    assert_non_null(k);
    uint32_t type;
    memcpy(&type, k + strlen(key), 4);
    assert_int_equal(type, 6);
    memcpy(k + strlen(key) + 4, &v, 4);
}

static void test_gguf_keys(void **st) {
    (void)st;
    size_t len;
    char *orig = gguf_stories(&len), *d = malloc(len);
    const char *p = tu_tmp("badkey.gguf");
    static const struct {
        const char *key;
        float v;
    } cases[] = {{"llama.rope.freq_base", NAN},    {"llama.rope.freq_base", 0},
                 {"llama.rope.freq_base", -1e4f}, {"llama.attention.layer_norm_rms_epsilon", NAN},
                 {"llama.attention.layer_norm_rms_epsilon", 0}, {"llama.rope.scaling.factor", 0},
                 {"llama.rope.scaling.factor", -2}, {"llama.rope.scaling.factor", NAN},
                 {"llama.rope.scaling.factor", INFINITY}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(d, orig, len);
        set_f32_key(d, len, cases[i].key, cases[i].v);
        tu_write(p, d, len);
        char want[128];
        snprintf(want, sizeof want, "badkey.gguf: metadata %s = ", cases[i].key);
        expect_model_error(p, DQ_ERR_FORMAT, want, NULL);
    }
    tu_write(p, orig, len); /* untouched: loads */
    dq_model_free(tu_model(p));
    free(d);
    free(orig);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_json_keys),
        cmocka_unit_test(test_gguf_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
