/* GGUF and ggml blocks against llama.cpp: block decoders and the Q8_0 encoder
 * against ggml's own output (tests/tools/make_ggml_fixture.c), a GGUF written
 * by llama.cpp (stories260K, F16) loaded as a model and as a tokenizer, and
 * hostile edits of that file. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "formats/ggml_types.h"
#include "export/gguf_export.h"
#include "formats/dashq_packed.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "testutil.h"
#include "util/half.h"

#define N (4 * 512)


static void test_decoders_match_ggml(void **st) {
    (void)st;
    static const char *const names[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_K",
                                        "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "f16", "bf16"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char upper[16];
        for (size_t k = 0; k <= strlen(names[i]); k++) upper[k] = (char)(names[i][k] >= 'a' && names[i][k] <= 'z' ? names[i][k] - 32 : names[i][k]);
        int type = dq_ggml_type_by_name(upper);
        assert_true(type >= 0);
        size_t nb, nf;
        char *blocks = tu_read(tu_ggml_fixture(names[i], "bin"), &nb);
        float *want = (float *)tu_read(tu_ggml_fixture(names[i], "f32"), &nf);
        assert_int_equal(nb, dq_ggml_row_bytes((dq_ggml_type)type, 512) * 4);
        assert_int_equal(nf, N * sizeof(float));
        float *got = malloc(N * sizeof *got);
        dq_ggml_decode((dq_ggml_type)type, blocks, N, got);
        for (int j = 0; j < N; j++)
            if (got[j] != want[j]) fail_msg("%s element %d: %.9g, ggml %.9g", upper, j, got[j], want[j]);
        free(got), free(want), free(blocks);
    }
}

static void test_q8_0_encoder_matches_ggml(void **st) {
    (void)st;
    float *x = (float *)tu_read(tu_ggml_fixture("input", "f32"), NULL);
    size_t nb;
    char *want = tu_read(tu_ggml_fixture("q8_0", "bin"), &nb);
    char *got = malloc(nb);
    dq_ggml_quantize_q8_0(x, N, got);
    assert_memory_equal(got, want, nb);
    free(x), free(want), free(got);
}

/* Codes and parameters recovered from ggml's blocks re-encode to the same bytes. */
static void test_legacy_encoder_layout(void **st) {
    (void)st;
    static const char *const names[] = {"q4_0", "q4_1", "q5_0", "q5_1", "q8_0"};
    static const dq_ggml_type types[] = {DQ_GGML_Q4_0, DQ_GGML_Q4_1, DQ_GGML_Q5_0, DQ_GGML_Q5_1, DQ_GGML_Q8_0};
    static const int zero[] = {8, 0, 16, 0, 128};
    for (int i = 0; i < 5; i++) {
        size_t nb;
        uint8_t *blocks = (uint8_t *)tu_read(tu_ggml_fixture(names[i], "bin"), &nb);
        float *y = (float *)tu_read(tu_ggml_fixture(names[i], "f32"), NULL);
        int bytes = dq_ggml_info(types[i])->bytes;
        bool has_min = types[i] == DQ_GGML_Q4_1 || types[i] == DQ_GGML_Q5_1;
        float d[N / 32], m[N / 32];
        uint8_t q[N];
        for (int b = 0; b < N / 32; b++) {
            uint16_t h;
            memcpy(&h, blocks + (size_t)b * bytes, 2);
            d[b] = dq_f16_to_f32(h);
            memcpy(&h, blocks + (size_t)b * bytes + 2, 2);
            m[b] = has_min ? dq_f16_to_f32(h) : 0;
            for (int j = 0; j < 32; j++) {
                float v = d[b] != 0 ? (y[b * 32 + j] - m[b]) / d[b] : 0;
                q[b * 32 + j] = (uint8_t)(lrintf(v) + zero[i]);
            }
        }
        uint8_t *got = malloc(nb);
        dq_ggml_encode_legacy(types[i], q, d, m, N, got);
        if (memcmp(got, blocks, nb)) fail_msg("%s: re-encoded blocks differ", names[i]);
        free(got), free(blocks), free(y);
    }
}

static const char *GGUF = "gguf/stories260K-f16.gguf";

/* Largest |a−b| over the logits of 64 tokens, relative to the largest |b|. */
static double logits_gap(dq_model *a, dq_model *b) {
    int V = dq_model_config(b)->vocab_size;
    int32_t toks[64];
    for (int i = 0; i < 64; i++) toks[i] = (int32_t)((i * 37 + 1) % V);
    toks[0] = 1;
    dq_session *sa, *sb;
    dq_error err = {0};
    const float *la, *lb;
    if (dq_session_new(a, 64, 64, 2, &sa, &err) || dq_forward(sa, toks, 64, 0, true, &la, &err) ||
        dq_session_new(b, 64, 64, 2, &sb, &err) || dq_forward(sb, toks, 64, 0, true, &lb, &err))
        fail_msg("%s", err.msg);
    double worst = 0, scale = 1e-9;
    for (size_t i = 0; i < (size_t)64 * V; i++) worst = fmax(worst, fabs(la[i] - lb[i])), scale = fmax(scale, fabs(lb[i]));
    dq_session_free(sa), dq_session_free(sb);
    return worst / scale;
}

/* llama.cpp's F16 conversion of stories260K: same config, logits equal to
 * the fp32 checkpoint's up to fp16 rounding, same tokens from its tokenizer. */
static void test_llamacpp_file_as_model(void **st) {
    (void)st;
    dq_model *g = tu_model(tu_fixture(GGUF)), *b = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    const dq_config *cg = dq_model_config(g), *cb = dq_model_config(b);
    assert_int_equal(cg->dim, cb->dim);
    assert_int_equal(cg->hidden_dim, cb->hidden_dim);
    assert_int_equal(cg->n_layers, cb->n_layers);
    assert_int_equal(cg->n_heads, cb->n_heads);
    assert_int_equal(cg->n_kv_heads, cb->n_kv_heads);
    assert_int_equal(cg->vocab_size, cb->vocab_size);
    double gap = logits_gap(g, b);
    if (gap > 1e-2) fail_msg("GGUF logits differ by %g relative", gap);
    dq_model_free(g), dq_model_free(b);

    dq_error err = {0};
    dq_tokenizer *tg = tu_tokenizer(tu_fixture(GGUF)), *tb = tu_tokenizer(tu_shared("models/stories260K/tok512.bin"));
    static const char *const texts[] = {"Once upon a time, there was a little girl named Lily.",
                                        "tabs\tand\n\nnewlines", "ünïcödé and emoji 🙂 and <s> text", ""};
    /* (runs of spaces differ on purpose: tok512.model asks sentencepiece to
     * collapse them, and llama.cpp, whose file this is, never does) */
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t *a, *c;
        size_t na, nc;
        assert_int_equal(dq_tokenize(tg, texts[i], strlen(texts[i]), true, false, &a, &na, &err), DQ_OK);
        assert_int_equal(dq_tokenize(tb, texts[i], strlen(texts[i]), true, false, &c, &nc, &err), DQ_OK);
        assert_int_equal(na, nc);
        assert_memory_equal(a, c, na * sizeof *a);
        free(a), free(c);
    }
    dq_tokenizer_free(tg), dq_tokenizer_free(tb);
}

/* Written and read back: F32 gives the same logits, from llama2.c and from
 * Hugging Face (whose q/k rows the writer permutes to llama.cpp's order), and
 * the written tokenizer gives the same tokens. */
static void roundtrip(const char *src, const char *tok, dq_ggml_type type, double tol) {
    dq_model *m = tu_model(src);
    dq_tokenizer *t = tu_tokenizer(tok);
    const char *out = tu_export_gguf(tu_tmp("roundtrip.gguf"), m, t, type);
    dq_error err = {0};
    dq_model *g = tu_model(out);
    double gap = logits_gap(g, m);
    if (gap > tol) fail_msg("%s as %s: logits differ by %g relative", src, dq_ggml_info(type)->name, gap);
    int nq = -1;
    const char *sq = dq_model_source_quant(g, &nq);
    if (type == DQ_GGML_F32) assert_null(sq), assert_int_equal(nq, 0);
    else assert_string_equal(sq, dq_ggml_info(type)->name), assert_int_equal(nq, 7 * dq_model_config(g)->n_layers);
    dq_tokenizer *tg = tu_tokenizer(out);
    const char *text = "The Time Traveller (for so it will be convenient to speak of him) was expounding.\n\"Yes,\" 42 ünï 🙂";
    int32_t *a, *b;
    size_t na, nb;
    assert_int_equal(dq_tokenize(tg, text, strlen(text), true, false, &a, &na, &err), DQ_OK);
    assert_int_equal(dq_tokenize(t, text, strlen(text), true, false, &b, &nb, &err), DQ_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    free(a), free(b);
    dq_tokenizer_free(tg), dq_tokenizer_free(t);
    dq_model_free(g), dq_model_free(m);
}

/* Llama-3 context scaling goes out as llama.cpp's rope_freqs.weight (one
 * divisor per RoPE pair, by convert_hf_to_gguf.py's formula) and comes back
 * as the same rotation: stories260K with Llama-3 scaling switched on (head
 * dim 8: one pair blended, three divided by the factor, checked below)
 * gives the same logits after the round trip, and differs from unscaled. */
static void test_llama3_rope_freqs_roundtrip(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    dq_model *plain = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    dq_tokenizer *t = tu_tokenizer(tu_shared("models/stories260K/tok512.bin"));
    m->cfg.rope_scaling = DQ_ROPE_SCALING_LLAMA3;
    m->cfg.rope_factor = 8, m->cfg.rope_low_freq_factor = 1, m->cfg.rope_high_freq_factor = 4, m->cfg.rope_orig_ctx = 16;
    const double pi = 3.14159265358979323846, smooth = (16 / (2 * pi) - 1) / 3; /* pair 0: f = 1, wavelength 2π between 4 and 16 */
    assert_true(fabs(dq_rope_freq_divisor(&m->cfg, 1.0) - 1 / ((1 - smooth) / 8 + smooth)) < 1e-12);
    assert_true(dq_rope_freq_divisor(&m->cfg, 0.1) == 8); /* wavelength 63 > 16 */
    const char *out = tu_export_gguf(tu_tmp("llama3-rope.gguf"), m, t, DQ_GGML_F32);
    dq_error err = {0};
    dq_gguf g;
    assert_int_equal(dq_gguf_open(out, &g, &err), DQ_OK);
    const dq_gguf_tensor *f = dq_gguf_tensor_find(&g, "rope_freqs.weight");
    assert_non_null(f);
    assert_int_equal(f->ne[0], dq_model_config(m)->head_dim / 2);
    dq_gguf_close(&g);
    dq_model *back = tu_model(out);
    double gap = logits_gap(back, m);
    if (gap > 1e-5) fail_msg("logits differ by %g relative after the round trip", gap);
    assert_true(logits_gap(plain, m) > 1e-3); /* the scaling does change the model */
    assert_int_equal(dq_packed_check(back, &err), DQ_ERR_UNSUPPORTED); /* no config.json form */
    assert_non_null(strstr(err.msg, "rope_freqs.weight"));
    assert_int_equal(dq_packed_check(m, &err), DQ_OK);
    dq_model_free(back), dq_model_free(plain), dq_model_free(m);
    dq_tokenizer_free(t);
}

static void test_write_read_roundtrip(void **st) {
    (void)st;
    roundtrip(tu_shared("models/stories260K/stories260K.bin"), tu_shared("models/stories260K/tok512.bin"), DQ_GGML_F32, 0);
    roundtrip(tu_shared("models/gut6l-hf"), tu_shared("models/gut6l-hf"), DQ_GGML_F32, 1e-5);
    roundtrip(tu_shared("models/gut6l/gut6l.bin"), tu_shared("models/gut6l/tokenizer.bin"), DQ_GGML_Q8_0, 3e-2);
}

typedef struct {
    char warnings[4][600];
    int n;
} notes;

static void keep_note(bool warning, const char *msg, void *user) {
    notes *n = user;
    if (warning && n->n < 4) snprintf(n->warnings[n->n++], sizeof n->warnings[0], "%s", msg);
}

/* A model whose linears a file stores quantized (Q8_0 here; SmolLM2's Q4_1
 * in practice), loaded lazily as the CLI does, is requantized: the run
 * warns, the report and the packed checkpoint's dashq_config.json say from
 * what, and that checkpoint, loaded again, is itself a quantized source
 * (INT4 g32). */
static void test_requantize_is_said(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    dq_tokenizer *t = tu_tokenizer(tu_shared("models/stories260K/tok512.bin"));
    const char *q8 = tu_export_gguf(tu_tmp("requant-src.gguf"), m, t, DQ_GGML_Q8_0), *out = tu_tmp("requant-packed");
    dq_error err = {0};
    dq_model_free(m);
    if (dq_model_load_lazy(q8, &m, &err)) fail_msg("%s", err.msg); /* as the CLI loads it */
    int layers = dq_model_config(m)->n_layers, nq;
    assert_string_equal(dq_model_source_quant(m, &nq), "Q8_0");
    assert_int_equal(nq, 6 * layers); /* down_proj, 172 wide, is no whole number of Q8_0 blocks: written F16 */
    notes n = {0};
    dq_quantize_params p = dq_quantize_default_params();
    p.method = "rtn", p.bits = 4, p.group = 32, p.n_threads = 2;
    p.progress = (dq_progress){.note = keep_note, .user = &n};
    dq_quantize_report r;
    if (dq_quantize(m, t, out, &p, &r, &err)) fail_msg("%s", err.msg);
    assert_int_equal(n.n, 1);
    assert_non_null(strstr(n.warnings[0], "requant-src.gguf"));
    assert_non_null(strstr(n.warnings[0], "already quantized (Q8_0)"));
    assert_int_equal(r.n_requantized, 6 * layers);
    assert_string_equal(r.source_quant, "Q8_0");
    dq_quantize_report_free(&r);
    cJSON *cfg = tu_read_json(out, "dashq_config.json");
    const cJSON *bq = cJSON_GetObjectItemCaseSensitive(cfg, "base_model_quantization");
    assert_true(cJSON_IsString(bq));
    assert_string_equal(bq->valuestring, "Q8_0");
    cJSON_Delete(cfg);
    dq_model *back = tu_model(out);
    assert_string_equal(dq_model_source_quant(back, &nq), "INT4 g32");
    assert_int_equal(nq, 7 * layers);
    dq_model_free(back), dq_model_free(m);
    dq_tokenizer_free(t);
}

/* ---- hostile edits ---------------------------------------------------------- */

static dq_status load_edit(const char *data, size_t len, dq_error *err) {
    const char *path = tu_tmp("edit.gguf");
    tu_write(path, data, len);
    dq_model *m = NULL;
    dq_status st = dq_model_load(path, &m, err);
    dq_model_free(m);
    if (st) assert_non_null(strstr(err->msg, "edit.gguf"));
    return st;
}

static void expect_error(const char *data, size_t len, const char *want, const char *what) {
    dq_error err = {0};
    dq_status st = load_edit(data, len, &err);
    if (st == DQ_OK) fail_msg("%s: loaded without error", what);
    if (want && !strstr(err.msg, want)) fail_msg("%s: message \"%s\" lacks \"%s\"", what, err.msg, want);
}

static void test_truncated(void **st) {
    (void)st;
    size_t len;
    char *data = tu_read(tu_fixture(GGUF), &len);
    for (size_t keep = 0; keep < len; keep += keep < 16384 ? 97 : 40961) expect_error(data, keep, NULL, "truncated");
    expect_error(data, len - 1, "past the end", "last byte missing");
    free(data);
}

/* Offsets of the fields of tensor `name`'s info record. */
static char *tensor_info(char *data, size_t len, const char *name) {
    char *p = memmem(data, len, name, strlen(name));
    assert_non_null(p);
    return p + strlen(name); /* n_dims, ne[n_dims], type, offset follow */
}

static void test_lying_headers(void **st) {
    (void)st;
    size_t len;
    char *orig = tu_read(tu_fixture(GGUF), &len), *d = malloc(len);
    uint64_t big = (uint64_t)1 << 40;
    memcpy(d, orig, len), memcpy(d, "GGUG", 4);
    expect_error(d, len, NULL, "magic"); /* then it is not GGUF: the llama2.c loader refuses it */
    memcpy(d, orig, len), memcpy(d + 8, &big, 8);
    expect_error(d, len, "more than the file holds", "tensor count");
    memcpy(d, orig, len), memcpy(d + 16, &big, 8);
    expect_error(d, len, "more than the file holds", "kv count");
    memcpy(d, orig, len), memcpy(d + 24, &big, 8); /* first key's length */
    expect_error(d, len, "truncated", "key length");
    char *ti = tensor_info(memcpy(d, orig, len), len, "token_embd.weight");
    uint32_t ndims;
    memcpy(&ndims, ti, 4);
    assert_int_equal(ndims, 2);
    memcpy(ti + 4 + 8, &big, 8); /* ne[1] */
    expect_error(d, len, NULL, "huge dimension");
    int64_t neg = -5;
    memcpy(ti + 4, &neg, 8);
    expect_error(d, len, "absurd shape", "negative dimension");
    uint32_t type = 77;
    memcpy(d, orig, len), memcpy(ti + 4 + 16, &type, 4);
    expect_error(d, len, "ggml type 77", "unknown type");
    uint64_t off;
    memcpy(d, orig, len), memcpy(&off, ti + 4 + 16 + 4, 8), off += 4, memcpy(ti + 4 + 16 + 4, &off, 8);
    expect_error(d, len, "not aligned", "misaligned offset");
    off = big, memcpy(ti + 4 + 16 + 4, &off, 8);
    expect_error(d, len, "past the end", "offset past the end");
    const char *key = "general.architecture";
    char *arch = memmem(memcpy(d, orig, len), len, key, strlen(key));
    assert_non_null(arch);
    memcpy(arch + strlen(key) + 4 + 8, "gpt99", 5); /* after the type and the string length */
    expect_error(d, len, "architecture gpt99 is not supported", "unknown architecture");
    free(d), free(orig);
}

/* Files whose meaning depends on which copy we pick: refused, as llama.cpp does. */
static void test_ambiguous_files(void **st) {
    (void)st;
    size_t len;
    char *orig = tu_read(tu_fixture(GGUF), &len), *d = malloc(len);
    const char *eos = "tokenizer.ggml.eos_token_id";
    char *k = memmem(memcpy(d, orig, len), len, eos, strlen(eos));
    assert_non_null(k);
    memcpy(k + 15, "bos", 3);
    expect_error(d, len, "tokenizer.ggml.bos_token_id appears twice", "duplicated key");
    char *ti = tensor_info(memcpy(d, orig, len), len, "blk.0.attn_k.weight");
    memcpy(ti - 8, "q", 1); /* "attn_k.weight" -> "attn_q.weight" */
    expect_error(d, len, "blk.0.attn_q.weight appears twice", "duplicated tensor");
    char *tq = tensor_info(memcpy(d, orig, len), len, "blk.0.attn_q.weight");
    ti = tensor_info(d, len, "blk.0.attn_k.weight");
    memcpy(ti + 4 + 16 + 4, tq + 4 + 16 + 4, 8); /* both 2-D: same offset field position */
    expect_error(d, len, "share data bytes", "overlapping tensors");
    const char *bc = "llama.block_count";
    char *b = memmem(memcpy(d, orig, len), len, bc, strlen(bc));
    assert_non_null(b);
    uint32_t blocks;
    memcpy(&blocks, b + strlen(bc) + 4, 4);
    blocks--;
    memcpy(b + strlen(bc) + 4, &blocks, 4);
    char want[64];
    snprintf(want, sizeof want, "tensor blk.%u.", blocks);
    expect_error(d, len, want, "more blocks than block_count");
    free(d), free(orig);
}

static void expect_tok_error(const char *data, size_t len, const char *want, const char *what) {
    const char *path = tu_tmp("edit-tok.gguf");
    tu_write(path, data, len);
    dq_tokenizer *t = NULL;
    dq_error err = {0};
    if (dq_tokenizer_load(path, &t, &err) == DQ_OK) {
        dq_tokenizer_free(t);
        fail_msg("%s: loaded without error", what);
    }
    if (!strstr(err.msg, want) || !strstr(err.msg, "edit-tok.gguf"))
        fail_msg("%s: message \"%s\" lacks \"%s\" or the file", what, err.msg, want);
}

/* Tokenizer metadata that we used to drop in silence. */
static void test_tokenizer_lies(void **st) {
    (void)st;
    size_t len;
    char *orig = tu_read(tu_fixture(GGUF), &len), *d = malloc(len);
    const char *bos = "tokenizer.ggml.bos_token_id";
    char *k = memmem(memcpy(d, orig, len), len, bos, strlen(bos));
    assert_non_null(k);
    uint32_t type, huge = 1u << 30;
    memcpy(&type, k + strlen(bos), 4);
    assert_int_equal(type, 4); /* u32 */
    memcpy(k + strlen(bos) + 4, &huge, 4);
    expect_tok_error(d, len, "tokenizer.ggml.bos_token_id is 1073741824, outside the vocabulary", "BOS out of range");
    const char *sc = "tokenizer.ggml.scores";
    k = memmem(memcpy(d, orig, len), len, sc, strlen(sc));
    assert_non_null(k);
    uint32_t i32 = 5; /* array type f32 -> i32 */
    memcpy(k + strlen(sc) + 4, &i32, 4);
    expect_tok_error(d, len, "tokenizer.ggml.scores is not an array of", "scores of the wrong type");
    free(d), free(orig);
}

/* NaN in a weight: named with its tensor. */
static void test_nan_weight(void **st) {
    (void)st;
    size_t len;
    char *d = tu_read(tu_fixture(GGUF), &len);
    dq_gguf g;
    dq_error err = {0};
    assert_int_equal(dq_gguf_open(tu_fixture(GGUF), &g, &err), DQ_OK);
    const dq_gguf_tensor *t = dq_gguf_tensor_find(&g, "blk.2.ffn_up.weight");
    assert_non_null(t);
    size_t at = (size_t)(t->data - g.f.data) + 10;
    dq_gguf_close(&g);
    uint16_t nan16 = 0x7e00;
    memcpy(d + at, &nan16, 2);
    expect_error(d, len, "blk.2.ffn_up.weight", "NaN weight");
    free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoders_match_ggml),   cmocka_unit_test(test_q8_0_encoder_matches_ggml),
        cmocka_unit_test(test_legacy_encoder_layout), cmocka_unit_test(test_llamacpp_file_as_model),
        cmocka_unit_test(test_truncated),             cmocka_unit_test(test_lying_headers),
        cmocka_unit_test(test_nan_weight),            cmocka_unit_test(test_write_read_roundtrip),
        cmocka_unit_test(test_ambiguous_files),       cmocka_unit_test(test_tokenizer_lies),
        cmocka_unit_test(test_llama3_rope_freqs_roundtrip), cmocka_unit_test(test_requantize_is_said),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
