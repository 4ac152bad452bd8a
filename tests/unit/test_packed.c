/* The DASH-Q packed checkpoint as the official loader (github.com/JaeminK/dashq,
 * src/dashq/loader.py + quantization.py) reads it, checked from the bytes of
 * the file and without the library's reader, unpacker or fp16 conversion:
 *  - dashq_config.json: format "dashq-packed-linear", model_class, base_model
 *    and method at the top level (dashq-info), and per module in_features,
 *    out_features, quant_in_features (the padded width), nbits, group_size,
 *    num_groups = out · quant_in / group;
 *  - model.safetensors: NAME.W_q_packed I32 [ceil(out · quant_in / (32/bits))]
 *    (PackedQuantizedLinear's buffer shape), NAME.scale and NAME.zero F16
 *    [num_groups, 1], no NAME.weight, and lm_head.weight (tied heads too);
 *  - unpacking as _build_unpack_impl does (int32 widened to int64, shift,
 *    mask) and dequantizing as _dequantize_weight_eager does in float32
 *    ((q − zero) · scale viewed [out, quant_in]), then keeping the first
 *    in_features columns, gives exactly the weights dashq evaluated, and
 *    dashq's own reader loads the same.
 * Models: stories260K at g128 (widths 64 and 172 padded to 128 and 256,
 * head quantized), gut6l-hf (bf16, tied head), SmolLM2-135M at g128 (width
 * 576 padded to 640) when scripts/models.sh has cached it. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/pipeline.h"
#include "formats/dashq_packed.h"
#include "model/sites.h"
#include "testutil.h"

/* IEEE half to float, written out here so the test does not share the
 * library's conversion. */
static float half_to_float(uint16_t h) {
    int e = (h >> 10) & 31, m = h & 1023;
    float v = e == 0 ? ldexpf((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexpf((float)(m | 1024), e - 25);
    return (h & 0x8000) ? -v : v;
}

static float bf16_to_float(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

typedef struct {
    char *bytes;
    size_t size, base;
    cJSON *header;
} st_file;

static st_file st_read(const char *path) {
    st_file f = {0};
    f.bytes = tu_read(path, &f.size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | (uint8_t)f.bytes[i]; /* little-endian u64 */
    assert_true(n + 8 <= f.size);
    char *json = malloc(n + 1);
    memcpy(json, f.bytes + 8, n);
    json[n] = 0;
    f.header = cJSON_Parse(json);
    free(json);
    assert_non_null(f.header);
    f.base = 8 + n;
    return f;
}

/* Tensor `name`: checks dtype and shape ({d0} or {d0, d1}); returns its data. */
static const char *st_tensor(const st_file *f, const char *name, const char *dtype, int64_t d0, int64_t d1) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(f->header, name);
    if (!t) fail_msg("tensor %s is missing", name);
    const char *dt = cJSON_GetObjectItem(t, "dtype")->valuestring;
    if (strcmp(dt, dtype)) fail_msg("%s: dtype %s, expected %s", name, dt, dtype);
    const cJSON *shape = cJSON_GetObjectItem(t, "shape"), *off = cJSON_GetObjectItem(t, "data_offsets");
    int nd = cJSON_GetArraySize(shape);
    if (nd != (d1 ? 2 : 1) || cJSON_GetArrayItem(shape, 0)->valuedouble != (double)d0 ||
        (d1 && cJSON_GetArrayItem(shape, 1)->valuedouble != (double)d1))
        fail_msg("%s: shape [%g%s%g], expected [%lld, %lld]", name, cJSON_GetArrayItem(shape, 0)->valuedouble,
                 nd > 1 ? ", " : "", nd > 1 ? cJSON_GetArrayItem(shape, 1)->valuedouble : 0.0, (long long)d0,
                 (long long)d1);
    size_t a = (size_t)cJSON_GetArrayItem(off, 0)->valuedouble, b = (size_t)cJSON_GetArrayItem(off, 1)->valuedouble;
    size_t elem = !strcmp(dtype, "F32") || !strcmp(dtype, "I32") ? 4 : 2;
    assert_true(b - a == (size_t)d0 * (size_t)(d1 ? d1 : 1) * elem && f->base + b <= f->size);
    return f->bytes + f->base + a;
}

static int meta_int(const cJSON *meta, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(meta, key);
    if (!cJSON_IsNumber(v)) fail_msg("quantized module entry has no %s", key);
    return v->valueint;
}

typedef struct {
    const char *model, *tokenizer;
    dq_method method;
    int bits, group, nsamples, seqlen;
    bool quantize_head;
    int min_padded; /* modules that must come out padded */
} layout_case;

/* The weight dashq evaluates for module `kind` of layer l, row r of the file
 * (HF order: q/k rows of an interleaved-RoPE source were reordered). */
static const float *evaluated_row(const dq_model *m, const dq_qlayer *ql, int r, int cols) {
    const dq_config *c = &m->cfg;
    if (dq_qlayer_is(ql, DQ_SITE_OUTPUT)) return m->output + (size_t)r * cols;
    const dq_site *site = ql->site;
    bool perm = c->rope_style == DQ_ROPE_INTERLEAVED && site->rope_rows;
    const float *w = dq_site_get(&m->layers[ql->layer], site);
    return w + (size_t)(perm ? dq_interleaved_row_of_half_row(r, c->head_dim) : r) * cols;
}

static void check_layout(const layout_case *k, const char *name) {
    dq_model *m = tu_model(k->model);
    const dq_config *c = &m->cfg;
    dq_calib_set cs = {.n = k->nsamples, .len = k->seqlen, .tokens = malloc(sizeof(int32_t) * k->nsamples * k->seqlen)};
    uint32_t seed = 11;
    for (int i = 0; i < cs.n * cs.len; i++) cs.tokens[i] = (int32_t)((seed = seed * 1664525u + 1013904223u) >> 8) % c->vocab_size;
    dq_pipeline_opts o = {.q = dq_quant_defaults(k->method, k->bits, k->group), .n_threads = 2,
                          .quantize_head = k->quantize_head};
    dq_quant_result r;
    dq_error err = {0};
    if (dq_quantize_model(m, &cs, &o, &r, &err)) fail_msg("%s", err.msg);
    const char *dir = tu_tmp(name);
    dq_packed_info info = {.method = dq_method_name(k->method), .bits = k->bits, .group = k->group, .nsamples = cs.n,
                           .seqlen = cs.len, .tokenizer_path = k->tokenizer ? tu_shared(k->tokenizer) : NULL,
                           .base_model = "test/base-model"};
    if (dq_write_packed(dir, m, &r, &info, &err)) fail_msg("%s", err.msg);

    char path[1200];
    snprintf(path, sizeof path, "%s/dashq_config.json", dir);
    char *text = tu_read(path, NULL);
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    assert_non_null(cfg);
    assert_string_equal(cJSON_GetObjectItem(cfg, "format")->valuestring, "dashq-packed-linear");
    assert_string_equal(cJSON_GetObjectItem(cfg, "model_class")->valuestring, "causal_lm");
    assert_string_equal(cJSON_GetObjectItem(cfg, "base_model")->valuestring, "test/base-model");
    assert_string_equal(cJSON_GetObjectItem(cfg, "method")->valuestring, dq_method_name(k->method));
    const cJSON *mods = cJSON_GetObjectItem(cfg, "quantized_modules");
    assert_int_equal(cJSON_GetArraySize(mods), c->n_layers * DQ_LIN_PER_BLOCK + (k->quantize_head ? 1 : 0));

    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_file f = st_read(path);
    int padded = 0;
    for (int i = 0; i < r.n; i++) {
        const dq_qlayer *ql = &r.layers[i];
        int rows, cols;
        dq_site_shape(ql->site, c, &rows, &cols);
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(mods, ql->name);
        if (!meta) fail_msg("%s is not in quantized_modules", ql->name);
        int G = k->group, qin = (cols + G - 1) / G * G, bits = k->bits, per = 32 / bits;
        assert_int_equal(meta_int(meta, "in_features"), cols);
        assert_int_equal(meta_int(meta, "out_features"), rows);
        assert_int_equal(meta_int(meta, "quant_in_features"), qin);
        assert_int_equal(meta_int(meta, "nbits"), bits);
        assert_int_equal(meta_int(meta, "group_size"), G);
        size_t numel = (size_t)rows * qin, ng = numel / G;
        assert_int_equal(meta_int(meta, "num_groups"), ng);
        padded += qin != cols;
        char tn[200];
        snprintf(tn, sizeof tn, "%s.weight", ql->name);
        assert_null(cJSON_GetObjectItemCaseSensitive(f.header, tn));
        snprintf(tn, sizeof tn, "%s.W_q_packed", ql->name);
        const char *words = st_tensor(&f, tn, "I32", (int64_t)((numel + per - 1) / per), 0);
        snprintf(tn, sizeof tn, "%s.scale", ql->name);
        const char *scale = st_tensor(&f, tn, "F16", (int64_t)ng, 1);
        snprintf(tn, sizeof tn, "%s.zero", ql->name);
        const char *zero = st_tensor(&f, tn, "F16", (int64_t)ng, 1);
        /* the loader's unpack and dequantization, row by row of [out, quant_in] */
        float *row = malloc((size_t)qin * sizeof *row);
        for (int rr = 0; rr < rows; rr++) {
            for (int j = 0; j < qin; j++) {
                size_t idx = (size_t)rr * qin + j, g = idx / G;
                int32_t w32;
                memcpy(&w32, words + 4 * (idx / per), 4);
                int64_t v = ((int64_t)w32 >> ((idx % per) * bits)) & ((1 << bits) - 1);
                uint16_t s16, z16;
                memcpy(&s16, scale + 2 * g, 2);
                memcpy(&z16, zero + 2 * g, 2);
                row[j] = ((float)v - half_to_float(z16)) * half_to_float(s16);
            }
            const float *ev = evaluated_row(m, ql, rr, cols);
            if (memcmp(row, ev, (size_t)cols * sizeof *row)) {
                int j = 0;
                while (row[j] == ev[j]) j++;
                fail_msg("%s: %s row %d col %d: loader's formula %.9g, evaluated %.9g", name, ql->name, rr, j,
                         (double)row[j], (double)ev[j]);
            }
            if (k->method != DQ_METHOD_DASHQ) /* integer zero point: the padding decodes to exactly 0 */
                for (int j = cols; j < qin; j++)
                    if (row[j] != 0.0f) fail_msg("%s: %s row %d padding col %d decodes to %g", name, ql->name, rr, j, (double)row[j]);
        }
        free(row);
    }
    assert_true(padded >= k->min_padded);
    /* the head: quantized, or a full-precision tensor equal to the evaluated one */
    if (!k->quantize_head) {
        const cJSON *emb = cJSON_GetObjectItem(f.header, "model.embed_tokens.weight");
        const char *dt = cJSON_GetObjectItem(emb, "dtype")->valuestring;
        const char *h = st_tensor(&f, "lm_head.weight", dt, c->vocab_size, c->dim);
        for (size_t i = 0; i < (size_t)c->vocab_size * c->dim; i++) {
            uint16_t u;
            float v;
            if (!strcmp(dt, "F32")) memcpy(&v, h + 4 * i, 4);
            else memcpy(&u, h + 2 * i, 2), v = !strcmp(dt, "F16") ? half_to_float(u) : bf16_to_float(u);
            if (v != m->output[i]) fail_msg("%s: lm_head.weight[%zu] = %g, evaluated %g", name, i, (double)v, (double)m->output[i]);
        }
    } else {
        assert_null(cJSON_GetObjectItem(f.header, "lm_head.weight"));
    }
    /* and dashq's own reader (what dashq eval runs) loads the same weights */
    dq_model *back = tu_model(dir);
    for (int i = 0; i < r.n; i++) {
        const dq_qlayer *ql = &r.layers[i];
        int rows, cols;
        dq_site_shape(ql->site, c, &rows, &cols);
        for (int rr = 0; rr < rows; rr++) {
            /* back is in HF row order already */
            const float *b = dq_site_data(back, ql->layer, ql->site) + (size_t)rr * cols;
            if (memcmp(b, evaluated_row(m, ql, rr, cols), (size_t)cols * sizeof *b))
                fail_msg("%s: %s row %d: dashq's reader differs from the evaluated weights", name, ql->name, rr);
        }
    }
    dq_model_free(back);
    cJSON_Delete(f.header);
    free(f.bytes);
    cJSON_Delete(cfg);
    dq_quant_result_free(&r);
    dq_calib_free(&cs);
    dq_model_free(m);
}

/* Found while writing fuzz_hf (then run through it): nbits and group_size far
 * outside int were cast from double (undefined behaviour, UBSan), fractional
 * ones truncated. Each must be refused naming dashq_config.json and the module. */
static void test_config_numbers(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    dq_calib_set cs = {.n = 1, .len = 16, .tokens = calloc(16, sizeof(int32_t))};
    dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_RTN, 4, 32), .n_threads = 2};
    dq_quant_result r;
    dq_error err = {0};
    if (dq_quantize_model(m, &cs, &o, &r, &err)) fail_msg("%s", err.msg);
    const char *dir = tu_tmp("packed-config-numbers");
    dq_packed_info info = {.method = "rtn", .bits = 4, .group = 32, .nsamples = cs.n, .seqlen = cs.len, .base_model = "test/base-model"};
    if (dq_write_packed(dir, m, &r, &info, &err)) fail_msg("%s", err.msg);
    char path[1200];
    snprintf(path, sizeof path, "%s/dashq_config.json", dir);
    char *orig = tu_read(path, NULL);
    struct { const char *key; double v; } cases[] = {
        {"nbits", 1e300}, {"nbits", 4.5}, {"group_size", -1e300}, {"group_size", 32.5},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cJSON *cfg = cJSON_Parse(orig);
        cJSON *mod = cJSON_GetObjectItem(cJSON_GetObjectItem(cfg, "quantized_modules"), "model.layers.0.self_attn.q_proj");
        assert_non_null(mod);
        cJSON_ReplaceItemInObject(mod, cases[i].key, cJSON_CreateNumber(cases[i].v));
        char *text = cJSON_Print(cfg);
        tu_write(path, text, strlen(text));
        free(text);
        cJSON_Delete(cfg);
        dq_model *back = NULL;
        if (dq_model_load(dir, &back, &err) != DQ_ERR_FORMAT)
            fail_msg("%s %g: loaded (%s)", cases[i].key, cases[i].v, err.msg);
        assert_non_null(strstr(err.msg, "dashq_config.json: module model.layers.0.self_attn.q_proj"));
    }
    tu_write(path, orig, strlen(orig));
    dq_model *back = tu_model(dir); /* the untouched config still loads */
    dq_model_free(back);
    free(orig);
    dq_quant_result_free(&r);
    dq_calib_free(&cs);
    dq_model_free(m);
}

static void test_stories_padded(void **st) {
    (void)st;
    const char *model = tu_shared("models/stories260K/stories260K.bin");
    layout_case a = {model, "models/stories260K/tok512.bin", DQ_METHOD_DASHQ, 4, 128, 2, 32, true, 5 * 7 + 1};
    check_layout(&a, "stories-dashq-w4g128-head");
    layout_case b = {model, NULL, DQ_METHOD_GPTQ, 3, 128, 2, 32, false, 5 * 7};
    check_layout(&b, "stories-gptq-w3g128");
    layout_case c = {model, NULL, DQ_METHOD_RTN, 2, 32, 2, 32, false, 5}; /* only down_proj (172) pads */
    check_layout(&c, "stories-rtn-w2g32");
}

static void test_gut6l_tied_head(void **st) {
    (void)st;
    layout_case a = {tu_shared("models/gut6l-hf"), NULL, DQ_METHOD_GPTQ, 4, 128, 2, 32, false, 0};
    check_layout(&a, "gut6l-hf-gptq-w4g128");
}

static void test_smollm2_padded(void **st) {
    (void)st;
    const char *model = tu_real_model(TU_SMOLLM2);
    if (!model) skip();
    layout_case a = {model, NULL, DQ_METHOD_DASHQ, 4, 128, 2, 64, false, 30 * 6}; /* every 576-wide input */
    check_layout(&a, "smollm2-dashq-w4g128");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_numbers),
        cmocka_unit_test(test_stories_padded),
        cmocka_unit_test(test_gut6l_tied_head),
        cmocka_unit_test(test_smollm2_padded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
