/* The quantization pipeline end to end: what is written is exactly what was
 * evaluated, the packed format decodes by its published definition, output
 * does not depend on the thread count, and bad calibration input is refused. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib/pipeline.h"
#include "model/sites.h"
#include "formats/dashq_packed.h"
#include "formats/safetensors.h"
#include "testutil.h"
#include "util/half.h"

static dq_calib_set random_windows(int n, int len, int vocab, uint32_t seed) {
    dq_calib_set cs = {.n = n, .len = len, .tokens = malloc(sizeof(int32_t) * n * len)};
    for (int i = 0; i < n * len; i++) {
        seed = seed * 1664525u + 1013904223u;
        cs.tokens[i] = (int32_t)((seed >> 8) % (uint32_t)vocab);
    }
    return cs;
}

static dq_quant_result quantize(dq_model *m, const dq_calib_set *cs, dq_method method, int bits, int group, int nt) {
    dq_pipeline_opts o = {.q = dq_quant_defaults(method, bits, group), .n_threads = nt};
    dq_quant_result r;
    dq_error err = {0};
    if (dq_quantize_model(m, cs, &o, &r, &err)) fail_msg("%s", err.msg);
    return r;
}

static float *logits_of(const dq_model *m, const int32_t *toks, int n) {
    dq_session *s;
    dq_error err = {0};
    const float *lg;
    if (dq_session_new(m, n, n, 2, &s, &err) || dq_forward(s, toks, n, 0, true, &lg, &err)) fail_msg("%s", err.msg);
    size_t bytes = (size_t)n * dq_model_config(m)->vocab_size * sizeof(float);
    float *copy = malloc(bytes);
    memcpy(copy, lg, bytes);
    dq_session_free(s);
    return copy;
}

static const char *write_out(const dq_model *m, const dq_quant_result *r, const char *name, const char *tok) {
    const char *dir = tu_tmp(name);
    dq_packed_info info = {.method = "test", .bits = 3, .group = 64, .tokenizer_path = tok ? tu_shared(tok) : NULL};
    dq_error err = {0};
    if (dq_write_packed(dir, m, r, &info, &err)) fail_msg("%s", err.msg);
    return dir;
}

/* Loading the written folder gives the model the pipeline evaluated:
 * bit-identical for HF input; for llama2.c input the q/k rows are written in
 * HF order (rotate-half RoPE), which only reorders a sum. */
static void check_roundtrip(const char *model, bool llama2c, dq_method method, const char *name) {
    dq_model *m = tu_model(model);
    const dq_config *c = dq_model_config(m);
    dq_calib_set cs = random_windows(4, 32, c->vocab_size, 7);
    dq_quant_result r = quantize(m, &cs, method, 3, 32, 2);
    const char *dir = write_out(m, &r, name, NULL);
    dq_model *back = tu_model(dir);
    assert_int_equal(dq_model_config(back)->rope_style, DQ_ROPE_HALF);
    float *a = logits_of(m, cs.tokens, 32), *b = logits_of(back, cs.tokens, 32);
    size_t n = (size_t)32 * c->vocab_size;
    if (!llama2c) {
        assert_memory_equal(a, b, n * sizeof(float));
    } else {
        double worst = 0, scale = 0;
        for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i])), scale = fmax(scale, fabs(a[i]));
        if (worst > 1e-4 * scale) fail_msg("%s: written model differs by %g (scale %g)", name, worst, scale);
    }
    free(a), free(b);
    dq_model_free(back);
    dq_quant_result_free(&r);
    dq_calib_free(&cs);
    dq_model_free(m);
}

static void test_roundtrip(void **st) {
    (void)st;
    check_roundtrip(tu_fixture("qwen2-tiny"), false, DQ_METHOD_GPTQ, "rt-qwen2-gptq");
    check_roundtrip(tu_fixture("qwen2-tiny"), false, DQ_METHOD_DASHQ, "rt-qwen2-dashq");
    check_roundtrip(tu_fixture("llama3-tiny"), false, DQ_METHOD_RTN, "rt-llama3-rtn");
    check_roundtrip(tu_shared("models/gut6l/gut6l.bin"), true, DQ_METHOD_DASHQ, "rt-gut6l-dashq");
}

/* Decode one module from the file by the format's definition, independently
 * of the library's unpacker, and compare with the weights the model used. */
static void test_packed_format(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_fixture("qwen2-tiny"));
    dq_calib_set cs = random_windows(4, 32, 256, 3);
    dq_quant_result r = quantize(m, &cs, DQ_METHOD_DASHQ, 3, 32, 2);
    const char *dir = write_out(m, &r, "fmt", NULL);
    char path[1100];
    snprintf(path, sizeof path, "%s/dashq_config.json", dir);
    char *cfg_text = tu_read(path, NULL);
    cJSON *cfg = cJSON_Parse(cfg_text);
    free(cfg_text);
    assert_string_equal(cJSON_GetObjectItem(cfg, "format")->valuestring, "dashq-packed-linear");
    cJSON *meta = cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "quantized_modules"), "model.layers.1.mlp.down_proj");
    assert_non_null(meta);
    assert_int_equal(cJSON_GetObjectItem(meta, "in_features")->valueint, 160);
    assert_int_equal(cJSON_GetObjectItem(meta, "out_features")->valueint, 64);
    assert_int_equal(cJSON_GetObjectItem(meta, "nbits")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItem(meta, "group_size")->valueint, 32);
    assert_int_equal(cJSON_GetObjectItem(meta, "num_groups")->valueint, 64 * 160 / 32);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cfg, "quantized_modules")), 14);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    dq_st_file f;
    dq_error err = {0};
    assert_int_equal(dq_st_open(path, &f, &err), DQ_OK);
    const dq_st_tensor *w = dq_st_find(&f, "model.layers.1.mlp.down_proj.W_q_packed");
    const dq_st_tensor *sc = dq_st_find(&f, "model.layers.1.mlp.down_proj.scale");
    const dq_st_tensor *ze = dq_st_find(&f, "model.layers.1.mlp.down_proj.zero");
    assert_string_equal(w->dtype, "I32");
    assert_int_equal(w->n_elems, (64 * 160 + 9) / 10); /* 10 three-bit codes per word */
    assert_string_equal(sc->dtype, "F16");
    assert_int_equal(sc->ndim, 2);
    assert_int_equal(sc->shape[0], 320);
    assert_int_equal(sc->shape[1], 1);
    assert_null(dq_st_find(&f, "model.layers.1.mlp.down_proj.weight"));
    assert_non_null(dq_st_find(&f, "model.layers.0.self_attn.q_proj.bias"));
    const float *used = m->layers[1].w_down;
    for (size_t i = 0; i < 64 * 160; i++) {
        uint32_t word;
        uint16_t s16, z16;
        memcpy(&word, w->data + 4 * (i / 10), 4);
        memcpy(&s16, sc->data + 2 * (i / 32), 2);
        memcpy(&z16, ze->data + 2 * (i / 32), 2);
        float q = (float)((word >> (3 * (i % 10))) & 7u);
        float v = (q - dq_f16_to_f32(z16)) * dq_f16_to_f32(s16);
        if (v != used[i]) fail_msg("element %zu: file decodes to %g, model used %g", i, v, used[i]);
    }
    dq_st_close(&f);
    cJSON_Delete(cfg);
    dq_quant_result_free(&r);
    dq_calib_free(&cs);
    dq_model_free(m);
}

static void test_thread_invariance(void **st) {
    (void)st;
    dq_method methods[] = {DQ_METHOD_RTN, DQ_METHOD_GPTQ, DQ_METHOD_DASHQ};
    for (int k = 0; k < 3; k++) {
        dq_model *m1 = tu_model(tu_shared("models/gut6l/gut6l.bin")), *m2 = tu_model(tu_shared("models/gut6l/gut6l.bin"));
        dq_calib_set cs = tu_book_windows("models/gut6l/tokenizer.bin", 2, 48, 1);
        dq_quant_result a = quantize(m1, &cs, methods[k], 3, 64, 1), b = quantize(m2, &cs, methods[k], 3, 64, 2);
        assert_int_equal(a.n, b.n);
        for (int i = 0; i < a.n; i++) {
            const dq_qtensor *x = &a.layers[i].qt, *y = &b.layers[i].qt;
            assert_memory_equal(x->q, y->q, (size_t)x->rows * x->cols);
            assert_memory_equal(x->scale, y->scale, sizeof(float) * x->rows * x->groups_per_row);
            assert_memory_equal(x->zero, y->zero, sizeof(float) * x->rows * x->groups_per_row);
            assert_true(a.layers[i].rel_err == b.layers[i].rel_err);
        }
        dq_quant_result_free(&a), dq_quant_result_free(&b);
        dq_calib_free(&cs);
        dq_model_free(m1), dq_model_free(m2);
    }
}

static double mean_err(const dq_quant_result *r) {
    double s = 0;
    for (int i = 0; i < r->n; i++) s += r->layers[i].rel_err;
    return s / r->n;
}

/* Two calibration windows are enough for DASH-Q; GPTQ's error feedback wins
 * on the calibration data it was fitted to. */
static void test_methods_sanity(void **st) {
    (void)st;
    dq_calib_set cs2 = tu_book_windows("models/gut6l/tokenizer.bin", 2, 64, 5);
    dq_model *m = tu_model(tu_shared("models/gut6l/gut6l.bin"));
    dq_quant_result d = quantize(m, &cs2, DQ_METHOD_DASHQ, 2, 32, 2);
    for (int i = 0; i < d.n; i++) assert_true(isfinite(d.layers[i].rel_err) && d.layers[i].rel_err < 0.6);
    dq_quant_result_free(&d);
    dq_model_free(m);
    dq_calib_set cs = tu_book_windows("models/gut6l/tokenizer.bin", 8, 64, 5);
    double err[3];
    for (int k = 0; k < 3; k++) {
        m = tu_model(tu_shared("models/gut6l/gut6l.bin"));
        dq_quant_result r = quantize(m, &cs, (dq_method)k, 3, 64, 2);
        err[k] = mean_err(&r);
        dq_quant_result_free(&r);
        dq_model_free(m);
    }
    if (!(err[DQ_METHOD_GPTQ] < err[DQ_METHOD_RTN] && err[DQ_METHOD_DASHQ] < err[DQ_METHOD_RTN]))
        fail_msg("mean relative errors: rtn %g gptq %g dashq %g", err[0], err[1], err[2]);
    dq_calib_free(&cs);
    dq_calib_free(&cs2);
}

static void test_head_and_padding(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    dq_calib_set cs = random_windows(4, 32, 512, 9);
    dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_GPTQ, 4, 32), .n_threads = 2,
                          .quantize_head = true};
    dq_quant_result r;
    dq_error err = {0};
    assert_int_equal(dq_quantize_model(m, &cs, &o, &r, &err), DQ_OK);
    assert_int_equal(r.n, 5 * 7 + 1);
    assert_string_equal(r.layers[r.n - 1].name, "lm_head");
    assert_int_equal(r.layers[6].pad, 20); /* down_proj: 172 inputs, padded to 6 groups of 32 */
    assert_int_equal(r.layers[6].qt.group, 32);
    assert_int_equal(r.layers[6].qt.cols, 192);
    assert_int_equal(r.layers[6].qt.in_cols, 172);
    assert_int_equal(r.layers[0].pad, 0);
    const char *dir = write_out(m, &r, "head", "models/stories260K/tok512.bin");
    dq_model *back = tu_model(dir);
    assert_false(dq_model_config(back)->tied_embeddings);
    float *a = logits_of(m, cs.tokens, 32), *b = logits_of(back, cs.tokens, 32);
    for (size_t i = 0; i < (size_t)32 * 512; i++) assert_true(fabsf(a[i] - b[i]) <= 1e-4f * (1 + fabsf(a[i])));
    dq_tokenizer *t;
    assert_int_equal(dq_tokenizer_for_model(dir, 512, &t, &err), DQ_OK); /* the tokenizer travelled along */
    dq_tokenizer_free(t);
    free(a), free(b);
    dq_model_free(back);
    dq_quant_result_free(&r);
    dq_calib_free(&cs);
    dq_model_free(m);
}

static void test_bad_calibration(void **st) {
    (void)st;
    dq_tokenizer *t = tu_tokenizer(tu_shared("models/gut6l/tokenizer.bin"));
    dq_calib_set cs;
    dq_error err = {0};
    const char *p = tu_tmp("short.txt");
    tu_write(p, "Only a few words here.", 22);
    assert_int_equal(dq_calib_load(p, t, 8, 256, 0, &cs, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "shorter than one window"));
    assert_non_null(strstr(err.msg, "short.txt"));
    const char *j = tu_tmp("calib.jsonl");
    const char *jl = "{\"text\": \"one document of text\"}\n{\"text\": 5}\n";
    tu_write(j, jl, strlen(jl));
    assert_int_equal(dq_calib_load(j, t, 2, 4, 0, &cs, &err), DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "calib.jsonl:2"));
    const char *bad = tu_tmp("bad.txt");
    tu_write(bad, "text \xff\xfe more", 12);
    assert_int_equal(dq_calib_load(bad, t, 2, 2, 0, &cs, &err), DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "UTF-8"));
    /* more samples than the text holds: drawn with replacement, flagged */
    const char *small = tu_tmp("small.txt");
    const char *words = "It was a dark and stormy night; the rain fell in torrents.\n<|endoftext|>\nA second document.\n";
    tu_write(small, words, strlen(words));
    assert_int_equal(dq_calib_load(small, t, 16, 8, 0, &cs, &err), DQ_OK);
    assert_true(cs.overlapping);
    assert_int_equal(cs.tokens[0] == 1 || cs.tokens[0] > 2, true);
    dq_calib_free(&cs);
    dq_tokenizer_free(t);

    /* an existing folder that is not a dashq checkpoint is never replaced */
    dq_model *m = tu_model(tu_fixture("qwen2-tiny"));
    dq_calib_set rw = random_windows(2, 16, 256, 1);
    dq_quant_result r = quantize(m, &rw, DQ_METHOD_RTN, 4, 32, 1);
    const char *dir = tu_tmp("precious");
    mkdir(dir, 0755);
    dq_packed_info info = {.method = "rtn", .bits = 4, .group = 32};
    assert_int_equal(dq_write_packed(dir, m, &r, &info, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "remove it first or choose another name"));
    dq_quant_result_free(&r);
    dq_calib_free(&rw);
    dq_model_free(m);
}

/* Activations that overflow are reported, not quantized into garbage. */
static void test_nonfinite_activations(void **st) {
    (void)st;
    const char *p = tu_tmp("huge.bin");
    tu_write_overflowing_stories(p);
    dq_model *m = tu_model(p);
    dq_calib_set cs = random_windows(2, 16, 512, 1);
    dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_DASHQ, 4, 32), .n_threads = 1};
    dq_quant_result r;
    dq_error err = {0};
    dq_status s = dq_quantize_model(m, &cs, &o, &r, &err);
    assert_int_equal(s, DQ_ERR_NUMERIC);
    if (!strstr(err.msg, "non-finite")) fail_msg("message: %s", err.msg);
    dq_calib_free(&cs);
    dq_model_free(m);
}

/* Progress goes to the caller's callback, one report per block, the last one
 * closing the stage; a callback that returns false stops the job with
 * DQ_ERR_CANCELLED and nothing half-done in the result. */
typedef struct {
    size_t calls, last, total, stop_at;
    bool ordered;
    char stage[32];
} progress_log;

static bool log_progress(const char *stage, size_t done, size_t total, void *user) {
    progress_log *l = user;
    if (done != l->last + 1 || done > total) l->ordered = false;
    l->calls++, l->last = done, l->total = total;
    snprintf(l->stage, sizeof l->stage, "%s", stage);
    return !l->stop_at || done < l->stop_at;
}

static void test_progress_and_cancel(void **state) {
    (void)state;
    for (int stop = 0; stop <= 2; stop += 2) {
        dq_model *m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
        const dq_config *c = dq_model_config(m);
        dq_calib_set cs = random_windows(2, 16, c->vocab_size, 3);
        progress_log log = {.ordered = true, .stop_at = (size_t)stop};
        dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_GPTQ, 4, 32), .n_threads = 1,
                              .progress = {log_progress, NULL, &log}};
        dq_quant_result r;
        dq_error err = {0};
        dq_status st = dq_quantize_model(m, &cs, &o, &r, &err);
        assert_true(log.ordered);
        assert_string_equal(log.stage, "quantize");
        assert_int_equal(log.total, c->n_layers);
        if (!stop) {
            assert_int_equal(st, DQ_OK);
            assert_int_equal(log.calls, c->n_layers);
            assert_int_equal(log.last, log.total); /* the stage closes */
        } else {
            assert_int_equal(st, DQ_ERR_CANCELLED);
            assert_int_equal(err.code, DQ_ERR_CANCELLED);
            assert_non_null(strstr(err.msg, "cancelled"));
            assert_int_equal(log.calls, stop); /* no block runs after the refusal */
            assert_int_equal(r.n, 0);
            assert_null(r.layers);
        }
        dq_quant_result_free(&r);
        dq_calib_free(&cs);
        dq_model_free(m);
    }
}

/* ---- the pre-quantization hook and writable tensors ---- */

/* Scales each RMSNorm weight by s_j and divides the input columns of the
 * linears that read it by s_j: the model computes the same function (the
 * classic folding a rotation/scaling pre-pass relies on). */
static dq_status fold_scales(dq_model *m, const dq_calib_set *cs, void *user, dq_error *err) {
    (void)cs;
    int *calls = user;
    const dq_config *c = dq_model_config(m);
    static const struct {
        dq_site_id norm, lin[3];
        int n_lin;
    } groups[] = {{DQ_SITE_ATTN_NORM, {DQ_SITE_Q, DQ_SITE_K, DQ_SITE_V}, 3},
                  {DQ_SITE_FFN_NORM, {DQ_SITE_GATE, DQ_SITE_UP}, 2}};
    uint32_t seed = 11;
    for (int l = 0; l < c->n_layers; l++)
        for (int g = 0; g < 2; g++) {
            float *norm = dq_site_writable(m, l, &DQ_SITES[groups[g].norm], err);
            if (!norm) return err->code;
            float sc[4096];
            for (int j = 0; j < c->dim; j++) {
                seed = seed * 1664525u + 1013904223u;
                sc[j] = expf(((float)(seed >> 8) / 16777216.0f - 0.5f) * 2.0f); /* e^[-1, 1] */
                norm[j] *= sc[j];
            }
            for (int k = 0; k < groups[g].n_lin; k++) {
                const dq_site *site = &DQ_SITES[groups[g].lin[k]];
                float *w = dq_site_writable(m, l, site, err);
                if (!w) return err->code;
                int rows, cols;
                dq_site_shape(site, c, &rows, &cols);
                for (int r = 0; r < rows; r++)
                    for (int j = 0; j < cols; j++) w[(size_t)r * cols + j] /= sc[j];
            }
        }
    (*calls)++;
    return DQ_OK;
}

static dq_status refusing_hook(dq_model *m, const dq_calib_set *cs, void *user, dq_error *err) {
    (void)m, (void)cs, (void)user;
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "the hook refuses");
}

/* The input tensor an output tensor of a packed checkpoint comes from:
 * NAME.W_q_packed / .scale / .zero from NAME.weight, anything else from
 * itself (a tied head's copy: from nothing, absent from the input). */
static void source_of(const char *out, char *src, size_t cap) {
    static const char *const parts[] = {".W_q_packed", ".scale", ".zero"};
    size_t n = strlen(out);
    for (int k = 0; k < 3; k++) {
        size_t pl = strlen(parts[k]);
        if (n > pl && !strcmp(out + n - pl, parts[k])) {
            snprintf(src, cap, "%.*s.weight", (int)(n - pl), out);
            return;
        }
    }
    snprintf(src, cap, "%s", out);
}

/* A model read from N shards is written as N shards (issue #15): every
 * tensor in the shard of the tensor it came from (a tied head with the final
 * norm), an index that lists each tensor's file and the total bytes as
 * transformers writes it, no model.safetensors; and it loads back to the
 * model the pipeline evaluated. */
static void check_sharded(const char *model, int n_shards, bool head, const char *name) {
    dq_model *m = tu_model(model);
    const dq_config *c = dq_model_config(m);
    dq_calib_set cs = random_windows(4, 32, c->vocab_size, 11);
    dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_GPTQ, 3, 32), .n_threads = 2, .quantize_head = head};
    dq_quant_result r;
    dq_error qerr = {0};
    if (dq_quantize_model(m, &cs, &o, &r, &qerr)) fail_msg("%s", qerr.msg);
    const char *dir = write_out(m, &r, name, NULL);
    char path[1200], src[200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(access(path, F_OK), -1);
    cJSON *in = tu_read_json(model, "model.safetensors.index.json"), *out = tu_read_json(dir, "model.safetensors.index.json");
    const cJSON *in_map = cJSON_GetObjectItem(in, "weight_map"), *out_map = cJSON_GetObjectItem(out, "weight_map");
    const char *norm_file = cJSON_GetObjectItem(in_map, "model.norm.weight")->valuestring;
    size_t listed = 0, total = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, out_map) {
        listed++;
        source_of(e->string, src, sizeof src);
        const cJSON *from = cJSON_GetObjectItem(in_map, src);
        const char *want = from ? from->valuestring : norm_file; /* a tied model's head, quantized or not */
        if (!from && strncmp(e->string, "lm_head.", 8)) fail_msg("%s: %s has no source tensor", name, e->string);
        if (strcmp(e->valuestring, want)) fail_msg("%s: %s is in %s, its source %s in %s", name, e->string,
                                                   e->valuestring, src, want);
    }
    size_t in_files = 0;
    for (int k = 1; k <= n_shards; k++) {
        dq_st_file f;
        dq_error err = {0};
        snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", dir, k, n_shards);
        if (dq_st_open(path, &f, &err)) fail_msg("%s", err.msg);
        for (size_t i = 0; i < f.n_tensors; i++, in_files++) {
            const cJSON *file = cJSON_GetObjectItem(out_map, f.tensors[i].name);
            assert_non_null(file);
            assert_string_equal(file->valuestring, strrchr(path, '/') + 1);
            total += f.tensors[i].nbytes;
        }
        dq_st_close(&f);
    }
    assert_int_equal(in_files, listed);
    assert_int_equal((size_t)cJSON_GetObjectItem(cJSON_GetObjectItem(out, "metadata"), "total_size")->valuedouble,
                     total);
    dq_model *back = tu_model(dir);
    float *a = logits_of(m, cs.tokens, 32), *b = logits_of(back, cs.tokens, 32);
    assert_memory_equal(a, b, (size_t)32 * c->vocab_size * sizeof(float));
    free(a), free(b);
    cJSON_Delete(in);
    cJSON_Delete(out);
    dq_model_free(back);
    dq_quant_result_free(&r);
    dq_calib_free(&cs);
    dq_model_free(m);
}

static void test_sharded_like_input(void **state) {
    (void)state;
    check_sharded(tu_fixture("llama3-tiny"), 2, false, "sharded-llama3"); /* blocks straddle its two shards */
    check_sharded(tu_hf_sharded(tu_shared("models/gut6l-hf"), "gut6l-3shards", 3), 3, false, "sharded-gut6l");
    check_sharded(tu_fixture("llama3-tiny"), 2, true, "sharded-llama3-head"); /* its tied head quantized */
}

static void test_prepare_hook(void **state) {
    (void)state;
    const char *path = tu_shared("models/gut6l/gut6l.bin");
    dq_model *m = tu_model(path), *plain = tu_model(path);
    const dq_config *c = dq_model_config(m);
    assert_true(c->dim <= 4096);
    int32_t toks[24];
    for (int i = 0; i < 24; i++) toks[i] = (i * 37 + 5) % c->vocab_size;
    float *before = logits_of(m, toks, 24);
    const float *norm0 = dq_site_data(m, 0, &DQ_SITES[DQ_SITE_ATTN_NORM]);
    float first = norm0[0];
    int calls = 0;
    dq_error err = {0};
    assert_int_equal(fold_scales(m, NULL, &calls, &err), DQ_OK);
    assert_float_equal(first, norm0[0], 0); /* the loaded tensor was copied, not written */
    assert_true(dq_site_data(m, 0, &DQ_SITES[DQ_SITE_ATTN_NORM]) != norm0);
    float *after = logits_of(m, toks, 24);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < (size_t)24 * c->vocab_size; i++) {
        worst = fmax(worst, fabs((double)after[i] - before[i]));
        scale = fmax(scale, fabs((double)before[i]));
    }
    if (worst > 1e-4 * scale) fail_msg("the folded model's logits moved by %g (max |logit| %g)", worst, scale);
    free(after);
    free(before);
    dq_model_free(m);

    /* in the pipeline: it runs once, before calibration, and its result is what gets quantized */
    m = tu_model(path);
    c = dq_model_config(m); /* the first model's config went with it */
    dq_calib_set cs = random_windows(2, 32, c->vocab_size, 5);
    dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_RTN, 4, 32), .n_threads = 2, .prepare = fold_scales,
                          .prepare_user = &calls};
    dq_quant_result r, rp;
    calls = 0;
    if (dq_quantize_model(m, &cs, &o, &r, &err)) fail_msg("%s", err.msg);
    assert_int_equal(calls, 1);
    rp = quantize(plain, &cs, DQ_METHOD_RTN, 4, 32, 2);
    assert_int_equal(r.n, rp.n);
    assert_memory_not_equal(r.layers[0].qt.q, rp.layers[0].qt.q, (size_t)r.layers[0].qt.rows * r.layers[0].qt.cols);
    float *folded = logits_of(m, toks, 24), *unfolded = logits_of(plain, toks, 24);
    assert_memory_not_equal(folded, unfolded, (size_t)24 * c->vocab_size * sizeof(float));
    free(folded);
    free(unfolded);
    dq_quant_result_free(&r);
    dq_quant_result_free(&rp);
    /* a failing hook stops the job before any work, with its own message */
    dq_model *m2 = tu_model(path);
    o.prepare = refusing_hook;
    assert_int_equal(dq_quantize_model(m2, &cs, &o, &r, &err), DQ_ERR_UNSUPPORTED);
    assert_string_equal(err.msg, "the hook refuses");
    assert_int_equal(r.n, 0);
    dq_calib_free(&cs);
    dq_model_free(m2);
    dq_model_free(m);
    dq_model_free(plain);
}

/* Writing the head of a tied model unties it (the embedding keeps its
 * values); writing the embedding keeps it tied; absent tensors are refused. */
static void test_writable_tied(void **state) {
    (void)state;
    dq_model *m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    const dq_config *c = dq_model_config(m);
    assert_true(c->tied_embeddings);
    dq_error err = {0};
    float *emb = dq_site_writable(m, 0, &DQ_SITES[DQ_SITE_TOKEN_EMBD], &err);
    assert_non_null(emb);
    emb[0] = 7.0f;
    assert_float_equal(dq_site_data(m, 0, &DQ_SITES[DQ_SITE_OUTPUT])[0], 7.0f, 0); /* still one tensor */
    assert_true(dq_model_config(m)->tied_embeddings);
    float *head = dq_site_writable(m, 0, &DQ_SITES[DQ_SITE_OUTPUT], &err);
    assert_non_null(head);
    head[0] = -3.0f;
    assert_float_equal(dq_site_data(m, 0, &DQ_SITES[DQ_SITE_TOKEN_EMBD])[0], 7.0f, 0);
    assert_false(dq_model_config(m)->tied_embeddings);
    assert_null(dq_site_writable(m, 0, &DQ_SITES[DQ_SITE_Q_BIAS], &err)); /* no q bias in a llama2.c model */
    assert_non_null(strstr(err.msg, "no such tensor"));
    assert_null(dq_site_writable(m, c->n_layers, &DQ_SITES[DQ_SITE_Q], &err));
    assert_non_null(strstr(err.msg, "no block"));
    dq_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),         cmocka_unit_test(test_packed_format),
        cmocka_unit_test(test_sharded_like_input),
        cmocka_unit_test(test_thread_invariance), cmocka_unit_test(test_methods_sanity),
        cmocka_unit_test(test_head_and_padding), cmocka_unit_test(test_bad_calibration),
        cmocka_unit_test(test_nonfinite_activations), cmocka_unit_test(test_progress_and_cancel),
        cmocka_unit_test(test_prepare_hook), cmocka_unit_test(test_writable_tied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
