/* Hostile and broken inputs: each must give the right error code and a
 * message naming the file (and tensor) and the problem; never a crash. Run
 * under ASan/UBSan in CI, so out-of-bounds reads would also fail here. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

static void expect_model_error(const char *path, dq_status code, const char *needle) {
    dq_model *m = NULL;
    dq_error err = {0};
    dq_status st = dq_model_load(path, &m, &err);
    if (st != code) fail_msg("%s: got status %d (%s), want %d", path, st, err.msg, code);
    assert_null(m);
    if (!strstr(err.msg, needle)) fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

/* A copy of stories260K.bin with `len` bytes at `off` replaced. */
static const char *patched_llama2c(const char *name, size_t off, const void *bytes, size_t len) {
    size_t n;
    char *data = tu_read(tu_shared("models/stories260K/stories260K.bin"), &n);
    memcpy(data + off, bytes, len);
    const char *path = tu_tmp(name);
    tu_write(path, data, n);
    free(data);
    return path;
}

static void test_llama2c(void **st) {
    (void)st;
    const char *src = tu_shared("models/stories260K/stories260K.bin");
    const char *p = tu_tmp("trunc.bin");
    tu_copy(src, p, 1000);
    expect_model_error(p, DQ_ERR_FORMAT, "truncated");
    expect_model_error(p, DQ_ERR_FORMAT, "trunc.bin");
    tu_copy(src, p, 10);
    expect_model_error(p, DQ_ERR_FORMAT, "header");
    tu_write(p, "", 0);
    expect_model_error(p, DQ_ERR_FORMAT, "empty");
    expect_model_error(tu_tmp("does-not-exist.bin"), DQ_ERR_IO, "does-not-exist.bin");
    int32_t huge = 1 << 30, neg = -5, zero = 0, three = 3, big_vocab = 1 << 30;
    expect_model_error(patched_llama2c("dim.bin", 0, &huge, 4), DQ_ERR_FORMAT, "dim");
    expect_model_error(patched_llama2c("layers.bin", 8, &neg, 4), DQ_ERR_FORMAT, "layer");
    expect_model_error(patched_llama2c("heads.bin", 12, &zero, 4), DQ_ERR_FORMAT, "head");
    expect_model_error(patched_llama2c("kv.bin", 16, &three, 4), DQ_ERR_FORMAT, "head");
    expect_model_error(patched_llama2c("vocab.bin", 20, &big_vocab, 4), DQ_ERR_FORMAT, "vocab");
    int32_t int_min = INT32_MIN;
    expect_model_error(patched_llama2c("vocabmin.bin", 20, &int_min, 4), DQ_ERR_FORMAT, "vocab");
    int32_t hidden = 173; /* a lie: the file is too short for it */
    expect_model_error(patched_llama2c("hidden.bin", 4, &hidden, 4), DQ_ERR_FORMAT, "truncated");
    int32_t small_hidden = 100; /* the other lie: bytes left over */
    expect_model_error(patched_llama2c("trail.bin", 4, &small_hidden, 4), DQ_ERR_FORMAT, "trailing");
    expect_model_error(patched_llama2c("magic.bin", 0, "ak42", 4), DQ_ERR_UNSUPPORTED, "version");
    float nan = NAN, inf = INFINITY;
    expect_model_error(patched_llama2c("nan.bin", 28 + 4 * 1000, &nan, 4), DQ_ERR_NUMERIC, "tok_embeddings");
    /* inside layer 2's wq: the message names the layer */
    size_t wq2 = 28 + 4 * (32768 + 5 * 64 + 2 * 4096 + 7);
    expect_model_error(patched_llama2c("inf.bin", wq2, &inf, 4), DQ_ERR_NUMERIC, "layers.2.wq");
}

/* ---- safetensors / HF folders ---------------------------------------- */

static void write_in(const char *dir, const char *file, const void *data, size_t len) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    tu_write(p, data, len);
}

/* A one-tensor-short qwen2 safetensors file with a hand-written header. */
static void write_st(const char *dir, const char *header, size_t data_len) {
    size_t hl = strlen(header), n = 8 + hl + data_len;
    char *buf = calloc(1, n);
    uint64_t h = hl;
    memcpy(buf, &h, 8);
    memcpy(buf + 8, header, hl);
    write_in(dir, "model.safetensors", buf, n);
    free(buf);
}

static void replace_in_config(const char *dir, const char *from, const char *to) {
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    char *cfg = tu_read(p, NULL), *at = strstr(cfg, from);
    assert_non_null(at);
    char out[8192];
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - cfg), cfg, to, at + strlen(from));
    tu_write(p, out, strlen(out));
    free(cfg);
}

static void test_hf(void **st) {
    (void)st;
    const char *d = tu_hf_copy("hf-type");
    replace_in_config(d, "\"qwen2\"", "\"gpt_neox\"");
    expect_model_error(d, DQ_ERR_UNSUPPORTED, "gpt_neox");
    d = tu_hf_copy("hf-json");
    write_in(d, "config.json", "{\"model_type\": ", 15);
    expect_model_error(d, DQ_ERR_FORMAT, "config.json");
    d = tu_hf_copy("hf-dims");
    replace_in_config(d, "\"hidden_size\": 64", "\"hidden_size\": 1e300");
    expect_model_error(d, DQ_ERR_FORMAT, "dim");
    d = tu_hf_copy("hf-heads");
    replace_in_config(d, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    expect_model_error(d, DQ_ERR_FORMAT, "head");
    d = tu_hf_copy("hf-rope");
    replace_in_config(d, "\"rope_theta\": 1000000.0", "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}");
    expect_model_error(d, DQ_ERR_UNSUPPORTED, "yarn");

    d = tu_hf_copy("hf-lying-header");
    uint64_t big = 1ull << 40;
    char buf[16];
    memcpy(buf, &big, 8);
    memcpy(buf + 8, "{}      ", 8);
    write_in(d, "model.safetensors", buf, 16);
    expect_model_error(d, DQ_ERR_FORMAT, "header claims");
    d = tu_hf_copy("hf-offsets");
    write_st(d, "{\"model.embed_tokens.weight\": {\"dtype\": \"F32\", \"shape\": [256, 64], \"data_offsets\": [0, 65536]}}", 100);
    expect_model_error(d, DQ_ERR_FORMAT, "data_offsets");
    d = tu_hf_copy("hf-size");
    write_st(d, "{\"model.embed_tokens.weight\": {\"dtype\": \"F32\", \"shape\": [256, 64], \"data_offsets\": [0, 64]}}", 100);
    expect_model_error(d, DQ_ERR_FORMAT, "model.embed_tokens.weight");
    d = tu_hf_copy("hf-overflow");
    write_st(d, "{\"x\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], \"data_offsets\": [0, 0]}}", 0);
    expect_model_error(d, DQ_ERR_FORMAT, "overflows");
    d = tu_hf_copy("hf-dtype");
    write_st(d, "{\"x\": {\"dtype\": \"Q4\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1);
    expect_model_error(d, DQ_ERR_FORMAT, "unknown dtype Q4");
    d = tu_hf_copy("hf-overlap");
    write_st(d, "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, "
                "\"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 24);
    expect_model_error(d, DQ_ERR_FORMAT, "overlap");
    d = tu_hf_copy("hf-missing");
    write_st(d, "{\"model.embed_tokens.weight\": {\"dtype\": \"F32\", \"shape\": [256, 64], \"data_offsets\": [0, 65536]}}", 65536);
    expect_model_error(d, DQ_ERR_FORMAT, "model.norm.weight is missing");
    d = tu_hf_copy("hf-shape");
    write_st(d, "{\"model.embed_tokens.weight\": {\"dtype\": \"F32\", \"shape\": [64, 256], \"data_offsets\": [0, 65536]}}", 65536);
    expect_model_error(d, DQ_ERR_FORMAT, "shape");
    d = tu_hf_copy("hf-i32");
    write_st(d, "{\"model.embed_tokens.weight\": {\"dtype\": \"I32\", \"shape\": [256, 64], \"data_offsets\": [0, 65536]}}", 65536);
    expect_model_error(d, DQ_ERR_UNSUPPORTED, "dtype I32");
    d = tu_hf_copy("hf-nothing");
    char p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    remove(p);
    expect_model_error(d, DQ_ERR_IO, "no model.safetensors");
}

static void test_hf_nan(void **st) {
    (void)st;
    const char *d = tu_hf_copy("hf-nan");
    char p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    size_t n;
    char *data = tu_read(p, &n);
    uint64_t hl;
    memcpy(&hl, data, 8);
    /* every tensor is F16 here; poison the last element of the file */
    uint16_t nan16 = 0x7e00;
    memcpy(data + n - 2, &nan16, 2);
    tu_write(p, data, n);
    free(data);
    expect_model_error(d, DQ_ERR_NUMERIC, "non-finite");
}

/* ---- tokenizers and text ---------------------------------------------- */

static void expect_tok_error(const char *path, dq_status code, const char *needle) {
    dq_tokenizer *t = NULL;
    dq_error err = {0};
    dq_status st = dq_tokenizer_load(path, &t, &err);
    if (st != code) fail_msg("%s: got status %d (%s), want %d", path, st, err.msg, code);
    assert_null(t);
    if (!strstr(err.msg, needle)) fail_msg("message \"%s\" lacks \"%s\"", err.msg, needle);
}

static void write_text(const char *path, const char *text) { tu_write(path, text, strlen(text)); }

static void test_tokenizers(void **st) {
    (void)st;
    const char *p = tu_tmp("tok.bin");
    tu_copy(tu_shared("models/stories260K/tok512.bin"), p, 3000);
    expect_tok_error(p, DQ_ERR_FORMAT, "tok.bin");
    size_t n;
    char *data = tu_read(tu_shared("models/stories260K/tok512.bin"), &n);
    int32_t lie = 1 << 30;
    memcpy(data + 8, &lie, 4); /* first token's length */
    tu_write(p, data, n);
    expect_tok_error(p, DQ_ERR_FORMAT, "past the end");
    free(data);
    const char *j = tu_tmp("tokenizer.json");
    write_text(j, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
    expect_tok_error(j, DQ_ERR_UNSUPPORTED, "Unigram");
    write_text(j, "{\"model\": ");
    expect_tok_error(j, DQ_ERR_FORMAT, "invalid JSON");
    write_text(j, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}");
    expect_tok_error(j, DQ_ERR_FORMAT, "unknown pieces");
    write_text(j, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 99999999999}, \"merges\": []}}");
    expect_tok_error(j, DQ_ERR_FORMAT, "vocabulary size");
    const char *m = tu_tmp("broken.model");
    tu_write(m, "\x0a\xff\xff\xff\xff\x0f", 6);
    expect_tok_error(m, DQ_ERR_FORMAT, "broken.model");

    /* a model folder without any tokenizer */
    dq_tokenizer *t = NULL;
    dq_error err = {0};
    assert_int_equal(dq_tokenizer_for_model(tu_fixture("qwen2-tiny"), 256, &t, &err), DQ_ERR_IO);
    assert_non_null(strstr(err.msg, "no tokenizer found"));
}

/* Found by fuzz_tokenizer: ids far outside any integer type were cast from
 * double (undefined behaviour, UBSan), fractional ids were truncated. */
static void test_tokenizer_json_ids(void **st) {
    (void)st;
    const char *dir = tu_tmp("tok-ids");
    mkdir(dir, 0755);
    char j[1024], v[1024], mg[1024];
    snprintf(j, sizeof j, "%s/tokenizer.json", dir);
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(mg, sizeof mg, "%s/merges.txt", dir);
    write_text(mg, "#version: 0.2\n");
    const char *vocabs[] = {"{\"a\": 0, \"b\": 1, \"c\": -6.6e121}", "{\"a\": 0, \"b\": 1, \"c\": 1.5}",
                            "{\"a\": 0, \"b\": 1, \"c\": -1}"};
    for (int i = 0; i < 3; i++) {
        char text[512];
        snprintf(text, sizeof text, "{\"model\": {\"type\": \"BPE\", \"vocab\": %s, \"merges\": []}}", vocabs[i]);
        write_text(j, text);
        expect_tok_error(j, DQ_ERR_FORMAT, "vocab entry \"c\" has no integer id");
        write_text(v, vocabs[i]);
        expect_tok_error(v, DQ_ERR_FORMAT, "vocab entry \"c\" has no integer id");
    }
    write_text(j, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": []},"
                  " \"added_tokens\": [{\"id\": -1e300, \"content\": \"<s>\"}]}");
    expect_tok_error(j, DQ_ERR_FORMAT, "added token without an integer id");
    expect_tok_error(j, DQ_ERR_FORMAT, "tokenizer.json");
}

static void test_text(void **st) {
    (void)st;
    dq_tokenizer *t = tu_tokenizer(tu_shared("models/gut6l/tokenizer.bin"));
    int32_t *ids;
    size_t n;
    dq_error err = {0};
    const char bad[] = "valid then \xff\xfe invalid";
    assert_int_equal(dq_tokenize(t, bad, sizeof bad - 1, true, false, &ids, &n, &err), DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "UTF-8 at byte 11"));
    const char overlong[] = "\xc0\xaf";
    assert_int_equal(dq_tokenize(t, overlong, 2, true, false, &ids, &n, &err), DQ_ERR_FORMAT);
    assert_int_equal(dq_tokenize(t, "", 0, true, false, &ids, &n, &err), DQ_OK);
    assert_int_equal(n, 1); /* BOS only */
    free(ids);
    dq_tokenizer_free(t);
}

static void test_forward_args(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    dq_session *s;
    dq_error err = {0};
    assert_int_equal(dq_session_new(m, 0, 1, 1, &s, &err), DQ_ERR_ARG);
    assert_int_equal(dq_session_new(m, 16, 32, 1, &s, &err), DQ_ERR_ARG);
    assert_int_equal(dq_session_new(m, 16, 8, 1, &s, &err), DQ_OK);
    const float *lg;
    int32_t toks[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, bad = 512;
    assert_int_equal(dq_forward(s, toks, 9, 0, true, &lg, &err), DQ_ERR_ARG);
    assert_int_equal(dq_forward(s, &bad, 1, 0, true, &lg, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "512"));
    assert_int_equal(dq_forward(s, toks, 8, 10, true, &lg, &err), DQ_ERR_ARG);
    dq_session_free(s);
    dq_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2c),    cmocka_unit_test(test_hf),   cmocka_unit_test(test_hf_nan),
        cmocka_unit_test(test_tokenizers), cmocka_unit_test(test_tokenizer_json_ids), cmocka_unit_test(test_text),
        cmocka_unit_test(test_forward_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
