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

/* Runs `dashq ARGS` (no quoting: test paths have no spaces); returns the exit
 * status, stderr into *err (freed by the caller), stdout discarded. */
DQ_PRINTF(2, 3) static int cli(char **err, const char *fmt, ...) {
    size_t cap = 16384;
    char *cmd = malloc(cap);
    assert_non_null(cmd);
    int n = snprintf(cmd, cap, "%s ", DQ_CLI);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(cmd + n, cap - (size_t)n, fmt, ap);
    va_end(ap);
    assert_true((size_t)n + 32 < cap);
    strcat(cmd, " 2>&1 >/dev/null");
    int rc = tu_run(cmd, err);
    free(cmd);
    return rc;
}

static void expect_cli_errors(int rc, char *err, const char *n1, const char *n2, bool one_line) {
    if (rc != 2 || !strstr(err, n1) || (n2 && !strstr(err, n2)))
        fail_msg("status %d (want 2), stderr \"%s\" should name \"%s\"%s%s", rc, err, n1, n2 ? " and " : "",
                 n2 ? n2 : "");
    char *nl = strchr(err, '\n');
    if (one_line && !(nl && nl[1] == 0)) fail_msg("not one line: %s", err);
    free(err);
}

static void expect_cli_error(int rc, char *err, const char *n1, const char *n2) {
    expect_cli_errors(rc, err, n1, n2, true);
}

static void expect_model_error(const char *path, dq_status code, const char *n1, const char *n2) {
    dq_model *m = NULL;
    dq_error err = {0};
    dq_status st = dq_model_load(path, &m, &err);
    dq_model_free(m);
    if (st != code || !strstr(err.msg, n1) || (n2 && !strstr(err.msg, n2)))
        fail_msg("%s: status %d (want %d), message \"%s\" should name \"%s\" and \"%s\"", path, st, code, err.msg, n1,
                 n2 ? n2 : "");
}

/* stories260K with n floats at byte offset off set to v. */
static const char *patched_stories(const char *name, size_t off, float v, int n) {
    size_t len;
    char *data = tu_read(tu_shared(STORIES), &len);
    for (int i = 0; i < n; i++) memcpy(data + off + 4 * (size_t)i, &v, 4);
    const char *p = tu_tmp(name);
    tu_write(p, data, len);
    free(data);
    return p;
}

static bool exists(const char *path) {
    struct stat s;
    return stat(path, &s) == 0;
}

/* Whether dir holds a name starting with prefix (a temporary left behind). */
static bool holds_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    for (struct dirent *e; !found && (e = readdir(d));) found = !strncmp(e->d_name, prefix, strlen(prefix));
    closedir(d);
    return found;
}

/* ---- hyperparameters ------------------------------------------------------------------ */

static const char *hf_with_config(const char *name, const char *from, const char *to) {
    const char *dir = tu_hf_copy(name);
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
    const char *p = tu_export_gguf(tu_tmp("keys.gguf"), m, t, DQ_GGML_F32);
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
    /* a RoPE scaling type we do not implement (yarn, longrope, ...) is refused, not run unscaled */
    memcpy(d, orig, len);
    char *ty = memmem(d, len, "linear", 6);
    assert_non_null(ty);
    memcpy(ty, "custom", 6);
    tu_write(p, d, len);
    expect_model_error(p, DQ_ERR_UNSUPPORTED, "badkey.gguf: metadata llama.rope.scaling.type = \"custom\" is not supported",
                       NULL);
    tu_write(p, orig, len); /* untouched: loads */
    dq_model_free(tu_model(p));
    free(d);
    free(orig);
}

/* ---- non-finite activations -------------------------------------------------------------- */

/* The library: the first non-finite activation names the file, block, tensor and position. */
static void test_forward_names_tensor(void **st) {
    (void)st;
    const char *p = tu_tmp("huge.bin");
    tu_write_overflowing_stories(p);
    dq_model *m = tu_model(p);
    dq_session *s;
    dq_error err = {0};
    assert_int_equal(dq_session_new(m, 16, 16, 2, &s, &err), DQ_OK);
    int32_t toks[8] = {1, 403, 407, 261, 378, 429, 271, 262};
    const float *lg;
    assert_int_equal(dq_forward(s, toks, 8, 0, true, &lg, &err), DQ_ERR_NUMERIC);
    if (!strstr(err.msg, "huge.bin: blk.0.attn_") || !strstr(err.msg, "non-finite output at position 0"))
        fail_msg("message: %s", err.msg);
    /* one token at a time (generation): the position is the token's */
    assert_int_equal(dq_forward(s, toks + 3, 1, 3, false, &lg, &err), DQ_ERR_NUMERIC);
    if (!strstr(err.msg, "at position 3")) fail_msg("message: %s", err.msg);
    dq_session_free(s);
    dq_model_free(m);

    /* an overflow in the last block's down projection, found after it */
    /* embedding, 5 x (attention norm, wq, wk, wv, wo, ffn norm, w1), then layer 4's w2 (kv width 32) */
    size_t w2_4 = 28 + 4 * ((size_t)512 * 64 + 5 * (64 + 4096 + 2 * 2048 + 4096 + 64 + 64 * 172) + 4 * 172 * 64);
    m = tu_model(patched_stories("huge-down.bin", w2_4, 3e38f, 172 * 64));
    assert_int_equal(dq_session_new(m, 16, 16, 2, &s, &err), DQ_OK);
    assert_int_equal(dq_forward(s, toks, 8, 0, true, &lg, &err), DQ_ERR_NUMERIC);
    if (!strstr(err.msg, "huge-down.bin: blk.4.ffn_down: non-finite output at position 0")) fail_msg("message: %s", err.msg);
    dq_session_free(s);
    dq_model_free(m);
}

/* The CLI: eval (perplexity, KLD, tasks), generate and quantize fail with status 2. */
static void test_cli_nonfinite(void **st) {
    (void)st;
    const char *huge = tu_tmp("huge.bin"), *base = tu_tmp("base.logits");
    tu_write_overflowing_stories(huge);
    const char *text = tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt"), *tok = tu_shared(TOK512);
    char *err;
    int rc = cli(&err, "eval %s --tokenizer %s --ppl %s --ctx 64 --chunks 2 --quiet", huge, tok, text);
    expect_cli_error(rc, err, "huge.bin: blk.0.", "non-finite output at position");
    rc = cli(&err, "eval %s --tokenizer %s --ppl %s --ctx 64 --chunks 2 --save-logits %s --quiet", tu_shared(STORIES),
             tok, text, base);
    assert_int_equal(rc, 0);
    free(err);
    rc = cli(&err, "eval %s --tokenizer %s --kld %s --quiet", huge, tok, base);
    expect_cli_error(rc, err, "huge.bin: blk.0.", "non-finite output");
    rc = cli(&err, "eval %s --tokenizer %s --tasks piqa --limit 2 --data-dir %s --quiet", huge, tok, tu_shared("data"));
    expect_cli_errors(rc, err, "huge.bin: blk.0.", "non-finite output", false); /* and "1 task(s) skipped" */
    rc = cli(&err, "generate %s --tokenizer %s -p Once -n 4", huge, tok);
    expect_cli_error(rc, err, "huge.bin: blk.0.", "non-finite output");
    rc = cli(&err, "quantize %s --tokenizer %s --method gptq --calib %s --nsamples 2 --seqlen 16 --group 32 -o %s --quiet",
             huge, tok, text, tu_tmp("huge-ckpt"));
    expect_cli_error(rc, err, "huge.bin: blk.0.", "calibration window 0");
    assert_false(exists(tu_tmp("huge-ckpt")));
}

/* ---- narrowing writers -------------------------------------------------------------------- */

static void test_f16_overflow(void **st) {
    (void)st;
    const char *big = patched_stories("big.bin", WQ0 + 4 * 3, 1e5f, 1), *tok = tu_shared(TOK512);
    const char *out = tu_tmp("big.gguf");
    char *err;
    int rc = cli(&err, "convert %s --tokenizer %s -o %s --type F16", big, tok, out);
    expect_cli_error(rc, err, "blk.0.attn_q.weight: value 100000 (element 3) is beyond the range of F16",
                     "--type BF16 or F32");
    assert_false(exists(out));
    assert_false(holds_prefix(tu_tmpdir(), "big.gguf.tmp"));
    /* Q8_0's block scale is F16 too: amax / 127 overflows past 8.3e6 */
    const char *bigger = patched_stories("bigger.bin", WQ0 + 4 * 40, 1e7f, 1);
    rc = cli(&err, "convert %s --tokenizer %s -o %s --type Q8_0", bigger, tok, out);
    expect_cli_error(rc, err, "blk.0.attn_q.weight: value 1e+07 (element 40) is beyond the range of Q8_0", NULL);
    assert_false(exists(out));
    /* BF16 holds both; and what was written loads back */
    rc = cli(&err, "convert %s --tokenizer %s -o %s --type BF16", bigger, tok, out);
    if (rc) fail_msg("status %d: %s", rc, err);
    free(err);
    dq_model_free(tu_model(out));
    /* BF16 overflows only next to FLT_MAX: the Hugging Face export */
    const char *max = patched_stories("max.bin", WQ0, 3.4e38f, 1), *dir = tu_tmp("max-hf");
    rc = cli(&err, "convert %s --tokenizer %s --format hf --type BF16 -o %s", max, tok, dir);
    expect_cli_error(rc, err, "max-hf: tensor model.layers.0.self_attn.q_proj.weight: value 3.4e+38", "BF16");
    assert_false(exists(dir));
    assert_false(holds_prefix(tu_tmpdir(), "max-hf.tmp"));
}

/* A packed checkpoint stores scales and zeros as float16. */
static void test_packed_scale_overflow(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared(STORIES));
    int32_t toks[16] = {1, 403, 407, 261, 378, 429, 271, 262, 1, 403, 407, 261, 378, 429, 271, 262};
    dq_calib_set cs = {.n = 1, .len = 16, .tokens = toks}; /* RTN does not use it */
    dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_RTN, 4, 32), .n_threads = 1};
    dq_quant_result r;
    dq_error err = {0};
    if (dq_quantize_model(m, &cs, &o, &r, &err)) fail_msg("%s", err.msg);
    r.layers[2].qt.scale[5] = 1e6f;
    const char *dir = tu_tmp("bigscale-ckpt");
    dq_packed_info info = {.method = "rtn", .bits = 4, .group = 32};
    assert_int_equal(dq_write_packed(dir, m, &r, &info, &err), DQ_ERR_NUMERIC);
    if (!strstr(err.msg, "bigscale-ckpt: tensor model.layers.0.self_attn.v_proj.scale: value 1e+06 (group 5)"))
        fail_msg("message: %s", err.msg);
    assert_false(exists(dir));
    assert_false(holds_prefix(tu_tmpdir(), "bigscale-ckpt.tmp"));
    dq_quant_result_free(&r);
    dq_model_free(m);
}

/* ---- messages ----------------------------------------------------------------------------- */

static void test_messages(void **st) {
    (void)st;
    char *err;
    /* a damaged GGUF magic: not "implausible dims" alone */
    size_t len;
    char *g = tu_read(tu_fixture("gguf/stories260K-f16.gguf"), &len);
    memcpy(g, "GGUG", 4);
    const char *bad = tu_tmp("badmagic.gguf");
    tu_write(bad, g, len);
    free(g);
    int rc = cli(&err, "info %s", bad);
    expect_cli_error(rc, err, "badmagic.gguf: not a GGUF or llama2.c model file (magic \"GGUG\"", NULL);
    const char *zeros = tu_tmp("zeros.bin");
    char z[64] = {0};
    tu_write(zeros, z, sizeof z);
    rc = cli(&err, "info %s", zeros);
    expect_cli_error(rc, err, "zeros.bin: not a GGUF or llama2.c model file (magic 00 00 00 00", NULL);

    /* a model where a tokenizer is expected */
    rc = cli(&err, "tokenize %s --text hello", tu_shared(STORIES));
    expect_cli_error(rc, err, "stories260K.bin: a llama2.c model (dim 64, 5 layers, vocab 512), not a tokenizer",
                     "tok512.bin");
    char st_path[1024];
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", tu_fixture("qwen2-tiny"));
    rc = cli(&err, "tokenize %s --text hello", st_path);
    expect_cli_error(rc, err, "model.safetensors: a safetensors weights file, not a tokenizer", NULL);

    /* a text too short for one window, a non-finite weight: the file is named */
    const char *shorttext = tu_tmp("short.txt");
    tu_write(shorttext, "Once upon a time.", 17);
    rc = cli(&err, "eval %s --tokenizer %s --ppl %s --ctx 64", tu_shared(STORIES), tu_shared(TOK512), shorttext);
    expect_cli_error(rc, err, "short.txt: the text has", NULL);
    const char *nanw = patched_stories("nanw.bin", WQ0 + 4 * 9, NAN, 1);
    rc = cli(&err, "quantize %s --tokenizer %s --method rtn --group 32 -o %s --quiet", nanw, tu_shared(TOK512),
             tu_tmp("nanw-ckpt"));
    expect_cli_error(rc, err, "nanw.bin: tensor layers.0.wq: non-finite value nan at element 9", NULL);

    /* a 3000-character path: the message keeps the file's name and the problem */
    char dir[4096];
    int n = snprintf(dir, sizeof dir, "%s", tu_tmpdir());
    for (int i = 0; i < 14; i++) {
        n += snprintf(dir + n, sizeof dir - (size_t)n, "/%0200d", i);
        mkdir(dir, 0755);
    }
    char p[4200];
    snprintf(p, sizeof p, "%s/badmagic.gguf", dir);
    tu_copy(bad, p, (size_t)-1);
    rc = cli(&err, "info %s", p);
    expect_cli_error(rc, err, "/badmagic.gguf: not a GGUF or llama2.c model file", NULL);
    snprintf(p, sizeof p, "%s/huge.bin", dir);
    tu_write_overflowing_stories(p);
    rc = cli(&err, "eval %s --tokenizer %s --ppl %s --ctx 64 --chunks 1 --quiet", p, tu_shared(TOK512),
             tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt"));
    expect_cli_error(rc, err, "/huge.bin: blk.0.", "non-finite output at position");
    rc = cli(&err, "eval %s --tokenizer %s --ppl %s --ctx 64", tu_shared(STORIES), tu_shared("models/gut6l/tokenizer.bin"),
             shorttext);
    expect_cli_error(rc, err, "tokenizer.bin: tokenizer has 4096 tokens, model 512", NULL);
}

/* ---- HF folders with tensors the model has no place for ---------------------------------- */

/* Adds an F16 tensor of n zeros to the folder's model.safetensors (at the end of the data). */
static void add_tensor(const char *dir, const char *name, int64_t n) {
    char p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    size_t len;
    char *data = tu_read(p, &len);
    uint64_t hl;
    memcpy(&hl, data, 8);
    char *json = strndup(data + 8, hl);
    cJSON *h = cJSON_Parse(json);
    assert_non_null(h);
    size_t dlen = len - 8 - hl;
    cJSON *e = cJSON_AddObjectToObject(h, name), *shape = cJSON_AddArrayToObject(e, "shape");
    cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddStringToObject(e, "dtype", "F16");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)n));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)dlen));
    cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(dlen + 2 * (size_t)n)));
    char *nh = cJSON_PrintUnformatted(h);
    uint64_t nl = strlen(nh);
    size_t out_len = 8 + nl + dlen + 2 * (size_t)n;
    char *out = calloc(1, out_len);
    memcpy(out, &nl, 8);
    memcpy(out + 8, nh, nl);
    memcpy(out + 8 + nl, data + 8 + hl, dlen);
    tu_write(p, out, out_len);
    free(out), free(nh), free(json), free(data);
    cJSON_Delete(h);
}

static void test_hf_unused_tensors(void **st) {
    (void)st;
    const char *d = tu_hf_copy("hf-extra-layer");
    add_tensor(d, "model.layers.2.input_layernorm.weight", 64);
    expect_model_error(d, DQ_ERR_FORMAT, "tensor model.layers.2.input_layernorm.weight belongs to layer 2",
                       "num_hidden_layers 2");
    d = tu_hf_copy("hf-extra-other");
    add_tensor(d, "model.layers.0.mlp.extra_proj.weight", 64);
    expect_model_error(d, DQ_ERR_FORMAT, "tensor model.layers.0.mlp.extra_proj.weight is not part of a qwen2 model",
                       NULL);
    d = tu_hf_copy("hf-inv-freq"); /* old Llama checkpoints carry it; transformers and llama.cpp skip it */
    add_tensor(d, "model.layers.0.self_attn.rotary_emb.inv_freq", 8);
    dq_model_free(tu_model(d));
}

/* ---- report files: complete or absent ----------------------------------------------------- */

static void test_report_no_partial_file(void **st) {
    (void)st;
    const char *csv = tu_tmp("big-sweep.csv"), *dir = tu_tmp("report-fsize");
    size_t cap = 1 << 16, n = 0;
    char *text = malloc(cap);
    n += (size_t)snprintf(text, cap, "model,method,bits,group,nsamples,seed,ppl,kld\n");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(text + n, cap - n, "m%d,gptq,%d,%d,%d,0,%d.5,0.01\n", i % 3, 2 + i % 5, 32 << (i % 4),
                              1 << (i % 8), 10 + i);
    tu_write(csv, text, n);
    free(text);
    mkdir(dir, 0755);
    /* files of at most 2 KiB (SIGXFSZ ignored: the write fails with EFBIG): report.md, at
     * more than 4 KiB, cannot be completed, and must not be left under its name */
    char cmd[4096], *out;
    snprintf(cmd, sizeof cmd, "trap '' XFSZ; ulimit -f 2; %s report %s -o %s --no-plots 2>&1", DQ_CLI, csv, dir);
    int rc = tu_run(cmd, &out);
    char md[1024];
    snprintf(md, sizeof md, "%s/report.md", dir);
    if (rc != 2 || !strstr(out, "report.md")) fail_msg("status %d, output %s", rc, out);
    free(out);
    assert_false(exists(md));
    assert_false(holds_prefix(dir, "report.md.tmp"));
    /* without the limit it is written */
    snprintf(cmd, sizeof cmd, "%s report %s -o %s --no-plots >/dev/null 2>&1", DQ_CLI, csv, dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
    size_t len;
    free(tu_read(md, &len));
    assert_true(len > 4096);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_json_keys),
        cmocka_unit_test(test_gguf_keys),
        cmocka_unit_test(test_forward_names_tensor),
        cmocka_unit_test(test_cli_nonfinite),
        cmocka_unit_test(test_f16_overflow),
        cmocka_unit_test(test_packed_scale_overflow),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_hf_unused_tensors),
        cmocka_unit_test(test_report_no_partial_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
