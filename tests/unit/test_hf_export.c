#define _POSIX_C_SOURCE 200809L
/* dashq convert --format hf: every model format we read, written as a
 * Hugging Face folder and read back, gives the same logits (F32: identical;
 * BF16: close) and the same token ids on the tokenizer test strings; the
 * SmolLM2 tokenizer's ids equal llama.cpp's, and transformers.js's on the
 * exported tokenizer.json (tests/tools/make_hf_export_fixture.mjs). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export/gguf_export.h"
#include "export/hf_export.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "testutil.h"
#include "util/out_dir.h"


static bool path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- helpers -------------------------------------------------------------------- */

static char **read_strings(size_t *n) {
    char *text = tu_read(tu_fixture("tokenizer/strings.jsonl"), NULL);
    char **out = malloc(1024 * sizeof *out);
    *n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && *n < 1024; l = strtok_r(NULL, "\n", &save)) {
        cJSON *s = cJSON_Parse(l);
        assert_true(cJSON_IsString(s));
        out[(*n)++] = strdup(s->valuestring);
        cJSON_Delete(s);
    }
    free(text);
    return out;
}

static void free_strings(char **s, size_t n) {
    for (size_t i = 0; i < n; i++) free(s[i]);
    free(s);
}

static dq_tokenizer *tokenizer_of(const char *model_path, const dq_model *m) {
    dq_tokenizer *t;
    dq_error err = {0};
    if (dq_tokenizer_for_model(model_path, dq_model_config(m)->vocab_size, &t, &err)) fail_msg("%s", err.msg);
    return t;
}

/* Strings (of strings.jsonl) on which a and b give different ids. */
static size_t token_mismatches(const dq_tokenizer *a, const dq_tokenizer *b, bool parse_special) {
    size_t n, bad = 0;
    char **s = read_strings(&n);
    assert_true(n >= 300);
    for (size_t i = 0; i < n; i++) {
        int32_t *x = NULL, *y = NULL;
        size_t nx = 0, ny = 0;
        dq_error err = {0};
        if (dq_tokenize(a, s[i], strlen(s[i]), true, parse_special, &x, &nx, &err) ||
            dq_tokenize(b, s[i], strlen(s[i]), true, parse_special, &y, &ny, &err))
            fail_msg("%s", err.msg);
        if (nx != ny || (nx && memcmp(x, y, nx * sizeof *x))) {
            if (bad < 5) fprintf(stderr, "  ids differ on line %zu: %.60s\n", i + 1, s[i]);
            bad++;
        }
        free(x), free(y);
    }
    free_strings(s, n);
    return bad;
}

/* Largest |a − b| over the logits of n tokens (a text of the tokenizer). */
static double logits_gap(const dq_model *a, const dq_model *b, const int32_t *toks, int n, double *range) {
    int V = dq_model_config(a)->vocab_size;
    dq_session *sa, *sb;
    dq_error err = {0};
    const float *la, *lb;
    if (dq_session_new(a, n, n, 2, &sa, &err) || dq_forward(sa, toks, n, 0, true, &la, &err) ||
        dq_session_new(b, n, n, 2, &sb, &err) || dq_forward(sb, toks, n, 0, true, &lb, &err))
        fail_msg("%s", err.msg);
    double worst = 0, hi = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) worst = fmax(worst, fabs(la[i] - lb[i])), hi = fmax(hi, fabs(la[i]));
    dq_session_free(sa), dq_session_free(sb);
    *range = hi;
    return worst;
}

static int text_tokens(const dq_tokenizer *t, int32_t *toks, int cap) {
    const char *text = "The Time Traveller (for so it will be convenient to speak of him) was expounding a "
                       "recondite matter to us. His grey eyes shone and twinkled, 1234 ünï 🙂\n\n  code(x);";
    int32_t *ids;
    size_t n;
    dq_error err = {0};
    if (dq_tokenize(t, text, strlen(text), true, false, &ids, &n, &err)) fail_msg("%s", err.msg);
    int k = (int)n < cap ? (int)n : cap;
    memcpy(toks, ids, (size_t)k * sizeof *toks);
    free(ids);
    return k;
}

/* Exports src (model at path, its own tokenizer) to OUT in type, reads the
 * folder back and checks config, logits (gap ≤ tol × logit range) and ids. */
static void roundtrip_tok(const char *path, const char *out_name, dq_dtype type, double tol, bool with_tok) {
    dq_model *m = tu_model(path);
    dq_tokenizer *t = with_tok ? tokenizer_of(path, m) : NULL;
    const char *out = tu_tmp(out_name);
    dq_hf_export_opts o = {.type = type};
    dq_error err = {0};
    if (dq_export_hf(out, m, t, &o, &err)) fail_msg("%s: %s", path, err.msg);
    dq_model *h = tu_model(out);
    dq_tokenizer *th = with_tok ? tokenizer_of(out, h) : NULL;
    const dq_config *a = dq_model_config(m), *b = dq_model_config(h);
    assert_int_equal(a->dim, b->dim);
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->n_kv_heads, b->n_kv_heads);
    assert_int_equal(a->vocab_size, b->vocab_size);
    assert_int_equal(a->tied_embeddings, b->tied_embeddings);
    assert_true(a->norm_eps == b->norm_eps && a->rope_theta == b->rope_theta);
    int32_t toks[64];
    int n = 64;
    if (t) n = text_tokens(t, toks, 64);
    for (int i = 0; !t && i < n; i++) toks[i] = (int32_t)((i * 37 + 1) % a->vocab_size);
    double range, gap = logits_gap(m, h, toks, n, &range);
    fprintf(stderr, "  %s -> hf %s: max |logit diff| %.3g (logit range %.3g), %d tokens\n", path,
            type == DQ_DTYPE_F32 ? "F32" : "BF16", gap, range, n);
    if (gap > tol * range) fail_msg("%s: logits differ by %g (range %g)", path, gap, range);
    assert_int_equal(a->qkv_bias, b->qkv_bias);
    assert_int_equal(a->rope_scaling, b->rope_scaling);
    assert_true(a->rope_factor == b->rope_factor && a->rope_orig_ctx == b->rope_orig_ctx);
    if (!t) {
        dq_model_free(h), dq_model_free(m);
        return; /* kept: the tiny folders' config.json is checked after */
    }
    assert_int_equal(dq_tokenizer_bos(t), dq_tokenizer_bos(th));
    assert_int_equal(dq_tokenizer_eos(t), dq_tokenizer_eos(th));
    assert_int_equal(dq_tokenizer_adds_bos(t), dq_tokenizer_adds_bos(th));
    size_t bad = token_mismatches(t, th, false);
    if (bad) fail_msg("%s: %zu strings tokenize differently after export", path, bad);
    dq_tokenizer_free(th), dq_tokenizer_free(t);
    dq_model_free(h), dq_model_free(m);
    dq_dir_remove_flat(out); /* SmolLM2's F32 folder alone is 540 MB of /tmp */
}

static void roundtrip(const char *path, const char *out_name, dq_dtype type, double tol) {
    roundtrip_tok(path, out_name, type, tol, true);
}

/* ---- round trips ------------------------------------------------------------------ */

/* F32 from an interleaved layout (llama2.c, GGUF) is the same weights with
 * q/k rows permuted within each head: RoPE rotates the same pairs, but each
 * attention score sums its head_dim products in another order, so logits
 * move by float rounding (measured: 7e-7 of the logit range on gut6l, 1.4e-6
 * on SmolLM2). From an HF folder nothing moves (exact 0). */
#define PERMUTED_F32 1e-5

static void test_llama2c(void **st) {
    (void)st;
    roundtrip(tu_shared("models/gut6l/gut6l.bin"), "gut6l-f32", DQ_DTYPE_F32, PERMUTED_F32);
    roundtrip(tu_shared("models/stories260K/stories260K.bin"), "stories-f32", DQ_DTYPE_F32, PERMUTED_F32);
    roundtrip(tu_shared("models/gut6l/gut6l.bin"), "gut6l-bf16", DQ_DTYPE_BF16, 2e-2);
}

static void test_hf(void **st) {
    (void)st;
    roundtrip(tu_shared("models/gut6l-hf"), "gut6l-hf-f32", DQ_DTYPE_F32, 0);
    roundtrip(tu_shared("models/gut6l-hf"), "gut6l-hf-bf16", DQ_DTYPE_BF16, 0); /* its weights are bf16 already */
}

/* Random-weight folders (tests/tools/make_tiny_hf.py, no tokenizer): Qwen2
 * with q/k/v biases and an untied F16 head; Llama-3 RoPE scaling, 2 shards. */
static void test_tiny_hf(void **st) {
    (void)st;
    roundtrip_tok(tu_fixture("qwen2-tiny"), "qwen2-f32", DQ_DTYPE_F32, 0, false);
    roundtrip_tok(tu_fixture("llama3-tiny"), "llama3-f32", DQ_DTYPE_F32, 0, false);
    cJSON *cfg = tu_read_json(tu_tmp("qwen2-f32"), "config.json");
    assert_string_equal(cJSON_GetObjectItem(cfg, "model_type")->valuestring, "qwen2");
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "tie_word_embeddings")));
    cJSON_Delete(cfg);
}

/* A DASH-Q packed checkpoint (dequantized on load) becomes a plain folder. */
static void test_packed(void **st) {
    (void)st;
    const char *src = tu_shared("models/stories260K/stories260K.bin"), *packed = tu_tmp("packed");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s quantize %s --method rtn --bits 4 --group 32 --calib %s --nsamples 2 --seqlen 32 "
             "--quiet -o %s > /dev/null 2>&1", DQ_CLI, src, tu_shared("data/gutenberg/calib/gutenberg_calib.txt"), packed);
    assert_int_equal(tu_run(cmd, NULL), 0);
    roundtrip(packed, "packed-f32", DQ_DTYPE_F32, 0);
}

/* A GGUF file dashq wrote (llama.cpp's interleaved q/k rows, tokenizer.ggml.*). */
static void test_gguf(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/gut6l/gut6l.bin"));
    dq_tokenizer *t = tu_tokenizer(tu_shared("models/gut6l/tokenizer.bin"));
    tu_export_gguf(tu_tmp("gut6l.gguf"), m, t, DQ_GGML_F32);
    dq_tokenizer_free(t), dq_model_free(m);
    roundtrip(tu_tmp("gut6l.gguf"), "gut6l-gguf-f32", DQ_DTYPE_F32, PERMUTED_F32);
}

/* SmolLM2-135M-Instruct, Q4_1 blocks dequantized on load: a real model with
 * a byte-level tokenizer (digits split one by one, then GPT-2's regex). */
static void test_smollm2(void **st) {
    (void)st;
    const char *path = tu_real_model(TU_SMOLLM2);
    if (!path) skip();
    roundtrip(path, "smollm2-f32", DQ_DTYPE_F32, PERMUTED_F32);
    roundtrip(path, "smollm2-bf16", DQ_DTYPE_BF16, 2e-2); /* measured 4.8e-3 of the range; gut6l 5.4e-3 */
}

/* Tokenizers alone (no model of their vocabulary here): GPT-2, Qwen2 (NFC,
 * its regex as a Split + ByteLevel), Mistral and Llama 2 (sentencepiece by
 * rank / by score, byte fallback), gut6l-hf. Byte-level and HF sources keep
 * their added tokens, so ids match with special tokens parsed too. */
static void test_tokenizers(void **st) {
    (void)st;
    static const struct {
        const char *path;
        bool parse_special;
    } cases[] = {
        {"models/tokenizers/gpt2/tokenizer.json", true},
        {"models/tokenizers/qwen2-1.5b-instruct/vocab.json", true},
        {"models/tokenizers/mistral-7b-instruct-v0.3/tokenizer.json", false},
        {"models/tokenizers/mistral-7b-instruct-v0.3/tokenizer.model", false},
        {"models/llama2c-tokenizer32k/tokenizer.bin", false},
        {"models/gut6l-hf/tokenizer.json", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dq_tokenizer *t = tu_tokenizer(tu_shared(cases[i].path));
        char name[32];
        snprintf(name, sizeof name, "tok%zu", i);
        const char *dir = tu_tmp(name);
        mkdir(dir, 0755);
        cJSON *j;
        dq_error err = {0};
        if (dq_hf_tokenizer_json(t, &j, &err) || dq_write_json(dir, "tokenizer.json", j, true, &err) ||
            dq_write_json(dir, "tokenizer_config.json", dq_hf_tokenizer_config(t, 4096), false, &err))
            fail_msg("%s: %s", cases[i].path, err.msg);
        dq_tokenizer *back = tu_tokenizer(dir);
        assert_int_equal(dq_tokenizer_vocab_size(t), dq_tokenizer_vocab_size(back));
        assert_int_equal(dq_tokenizer_bos(t), dq_tokenizer_bos(back));
        assert_int_equal(dq_tokenizer_eos(t), dq_tokenizer_eos(back));
        assert_int_equal(dq_tokenizer_adds_bos(t), dq_tokenizer_adds_bos(back));
        size_t bad = token_mismatches(t, back, false) + (cases[i].parse_special ? token_mismatches(t, back, true) : 0);
        if (bad) fail_msg("%s: %zu strings tokenize differently after export", cases[i].path, bad);
        dq_tokenizer_free(back), dq_tokenizer_free(t);
    }
}

/* ---- what the folder holds ------------------------------------------------------------ */

/* HF's layout: tied head absent, q/k rows in rotate-half order (row
 * h·hd + p·hd/2 + i of HF is row h·hd + 2i + p of llama2.c's). */
static void test_layout(void **st) {
    (void)st;
    const char *src = tu_shared("models/gut6l/gut6l.bin"), *out = tu_tmp("layout");
    dq_model *m = tu_model(src);
    dq_tokenizer *t = tokenizer_of(src, m);
    dq_hf_export_opts o = {.type = DQ_DTYPE_F32};
    dq_error err = {0};
    if (dq_export_hf(out, m, t, &o, &err)) fail_msg("%s", err.msg);
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    dq_st_file f;
    if (dq_st_open(path, &f, &err)) fail_msg("%s", err.msg);
    assert_null(dq_st_find(&f, "lm_head.weight"));
    const dq_st_tensor *q = dq_st_find(&f, "model.layers.1.self_attn.q_proj.weight");
    assert_non_null(q);
    const dq_config *c = dq_model_config(m);
    int hd = c->head_dim, d = c->dim;
    const float *w = (const float *)(const void *)q->data;
    assert_memory_equal(w + (size_t)(hd + hd / 2 + 3) * d, m->layers[1].wq + (size_t)(hd + 2 * 3 + 1) * d, (size_t)d * 4);
    dq_st_close(&f);
    cJSON *cfg = tu_read_json(out, "config.json");
    assert_string_equal(cJSON_GetObjectItem(cfg, "model_type")->valuestring, "llama");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cfg, "tie_word_embeddings")));
    assert_string_equal(cJSON_GetObjectItem(cfg, "torch_dtype")->valuestring, "float32");
    cJSON_Delete(cfg);
    cJSON *tc = tu_read_json(out, "tokenizer_config.json");
    assert_string_equal(cJSON_GetObjectItem(tc, "bos_token")->valuestring, "<s>"); /* not llama2.c's "\n<s>\n" */
    cJSON_Delete(tc);
    dq_tokenizer_free(t), dq_model_free(m);
}

/* Sharded at max_bytes: the index names the files transformers' own
 * save_pretrained gives the same model at that size (fixture made by
 * tests/tools/make_hf_shards_fixture.py), the files are those, and the folder
 * loads back to the source's logits exactly (the source's own dtype). */
static void sharded_like_transformers(const char *src, dq_dtype type, uint64_t max_bytes, const char *fixture) {
    dq_model *m = tu_model(src);
    const char *out = tu_tmp("sharded");
    dq_hf_export_opts o = {.type = type, .max_shard_bytes = max_bytes};
    dq_error err = {0};
    if (dq_export_hf(out, m, NULL, &o, &err)) fail_msg("%s: %s", src, err.msg);
    cJSON *want = tu_read_json(tu_fixture("hf_shards"), fixture), *got = tu_read_json(out, "model.safetensors.index.json");
    const cJSON *wm = cJSON_GetObjectItem(want, "weight_map"), *gm = cJSON_GetObjectItem(got, "weight_map"), *e;
    assert_int_equal(cJSON_GetArraySize(wm), cJSON_GetArraySize(gm));
    cJSON_ArrayForEach(e, wm) {
        const cJSON *g = cJSON_GetObjectItem(gm, e->string);
        if (!cJSON_IsString(g) || strcmp(g->valuestring, e->valuestring))
            fail_msg("%s: %s is in %s, transformers puts it in %s", src, e->string, g ? g->valuestring : "(none)",
                     e->valuestring);
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", out, e->valuestring);
        assert_true(path_exists(path));
    }
    assert_true(cJSON_GetObjectItem(cJSON_GetObjectItem(want, "metadata"), "total_size")->valuedouble ==
                cJSON_GetObjectItem(cJSON_GetObjectItem(got, "metadata"), "total_size")->valuedouble);
    cJSON_Delete(want), cJSON_Delete(got);
    dq_model *h = tu_model(out);
    int32_t toks[32];
    for (int i = 0; i < 32; i++) toks[i] = (int32_t)((i * 37 + 1) % dq_model_config(m)->vocab_size);
    double range;
    assert_true(logits_gap(m, h, toks, 32, &range) == 0);
    dq_model_free(h), dq_model_free(m);
    dq_dir_remove_flat(out);
}

static void test_shards(void **st) {
    (void)st;
    sharded_like_transformers(tu_shared("models/gut6l-hf"), DQ_DTYPE_BF16, 300000, "gut6l-bf16-300000.json");
    /* q/k/v biases and an untied head; tensors larger than the limit get shards of their own */
    sharded_like_transformers(tu_fixture("qwen2-tiny"), DQ_DTYPE_F32, 20000, "qwen2-tiny-f32-20000.json");
}

/* Open file descriptors of this process. */
static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = -1; /* the directory's own */
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* A shard is open only while its tensors are written: 28 shards export
 * under an open-file limit a few above what the process already holds. */
static void test_shards_few_files(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/gut6l-hf"));
    const char *out = tu_tmp("few_files");
    int fds = open_fds();
    if (fds < 0) { /* no /proc */
        dq_model_free(m);
        skip();
    }
    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)fds + 6;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    dq_hf_export_opts o = {.type = DQ_DTYPE_BF16, .max_shard_bytes = 300000};
    dq_error err = {0};
    dq_status rc = dq_export_hf(out, m, NULL, &o, &err);
    setrlimit(RLIMIT_NOFILE, &old);
    if (rc) fail_msg("%s", err.msg);
    cJSON *idx = tu_read_json(out, "model.safetensors.index.json");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(idx, "weight_map"), "model.norm.weight")->valuestring,
                        "model-00028-of-00028.safetensors");
    cJSON_Delete(idx);
    dq_model_free(m);
    dq_dir_remove_flat(out);
}

/* An existing folder is replaced only if dashq wrote it; errors name the problem. */
static void test_overwrite_rules(void **st) {
    (void)st;
    const char *src = tu_shared("models/stories260K/stories260K.bin");
    dq_model *m = tu_model(src);
    dq_tokenizer *t = tokenizer_of(src, m);
    dq_hf_export_opts o = {.type = DQ_DTYPE_F32};
    dq_error err = {0};
    const char *out = tu_tmp("overwrite");
    assert_int_equal(dq_export_hf(out, m, t, &o, &err), DQ_OK);
    assert_int_equal(dq_export_hf(out, m, t, &o, &err), DQ_OK); /* ours: replaced */
    const char *foreign = tu_tmp("foreign");
    mkdir(foreign, 0755);
    assert_int_equal(dq_export_hf(foreign, m, t, &o, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "may only replace if it is a folder dashq wrote"));
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", foreign, (long)getpid());
    assert_false(path_exists(tmp)); /* refused before anything was written */
    o.type = DQ_DTYPE_F16;
    assert_int_equal(dq_export_hf(tu_tmp("f16"), m, t, &o, &err), DQ_ERR_ARG);
    o.type = DQ_DTYPE_F32;
    float ff[4] = {1, 1, 1, 1};
    m->rope_freq_factors = ff; /* GGUF per-pair RoPE divisors have no config.json form */
    assert_int_equal(dq_export_hf(tu_tmp("ropefreqs"), m, t, &o, &err), DQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "rope_freqs.weight"));
    m->rope_freq_factors = NULL;
    dq_tokenizer_free(t), dq_model_free(m);
    char cmd[2048], *outp = NULL;
    snprintf(cmd, sizeof cmd, "%s convert %s --format hf --type Q8_0 -o %s 2>&1", DQ_CLI, src, tu_tmp("cli"));
    assert_int_equal(tu_run(cmd, &outp), 2);
    assert_non_null(strstr(outp, "F32 or BF16"));
    free(outp);
    snprintf(cmd, sizeof cmd, "%s convert %s --format hf -o %s --type BF16", DQ_CLI, src, tu_tmp("cli"));
    assert_int_equal(tu_run(cmd, NULL), 0);
}

/* ---- transformers.js and llama.cpp ------------------------------------------------------ */

/* Lines of strings.jsonl where transformers.js 3.8.1 is wrong: its Digits
 * pre-tokenizer splits on JavaScript's \d (ASCII 0-9) where HF tokenizers
 * splits on Rust's char::is_numeric (Unicode N*, digits.rs) and llama.cpp's
 * smollm pre-type on \p{N}: "½ ¾" has no ASCII digit, so transformers.js
 * keeps " ¾" together. dashq follows tokenizers and llama.cpp. */
static const size_t TJS_WRONG[] = {94};

static bool tjs_wrong(size_t line) {
    for (size_t i = 0; i < sizeof TJS_WRONG / sizeof *TJS_WRONG; i++)
        if (TJS_WRONG[i] == line) return true;
    return false;
}

static bool same_ids(const cJSON *want, const int32_t *ids, size_t k) {
    bool same = (size_t)cJSON_GetArraySize(want) == k;
    for (size_t i = 0; same && i < k; i++) same = cJSON_GetArrayItem(want, (int)i)->valueint == ids[i];
    return same;
}

/* One JSON array of ids per line of a fixture file; *n lines. */
static cJSON **read_ids(const char *fixture, size_t *n) {
    char *text = tu_read(tu_fixture(fixture), NULL);
    cJSON **out = malloc(1024 * sizeof *out);
    *n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && *n < 1024; l = strtok_r(NULL, "\n", &save))
        assert_non_null(out[(*n)++] = cJSON_Parse(l));
    free(text);
    return out;
}

/* transformers.js on the tokenizer.json our export derives from the SmolLM2
 * GGUF (tests/tools/make_hf_export_fixture.mjs) and llama.cpp on the GGUF
 * itself (tests/llamacpp/tokenize.mjs) gave these ids for every test string;
 * dashq's ids on the GGUF's tokenizer equal llama.cpp's everywhere and
 * transformers.js's everywhere but the lines it gets wrong. */
static void test_smollm2_references(void **st) {
    (void)st;
    const char *path = tu_real_model(TU_SMOLLM2);
    if (!path) skip();
    dq_tokenizer *t = tu_tokenizer(path);
    size_t n, n_tjs, n_lcpp, bad_tjs = 0, bad_lcpp = 0;
    char **s = read_strings(&n);
    cJSON **tjs = read_ids("tokenizer/hf_smollm2.jsonl", &n_tjs), **lcpp = read_ids("tokenizer/llamacpp_smollm2.jsonl", &n_lcpp);
    assert_int_equal(n_tjs, n);
    assert_int_equal(n_lcpp, n);
    for (size_t i = 0; i < n; i++) {
        int32_t *ids;
        size_t k;
        dq_error err = {0};
        if (dq_tokenize(t, s[i], strlen(s[i]), false, true, &ids, &k, &err)) fail_msg("%s", err.msg);
        if (!same_ids(lcpp[i], ids, k) && bad_lcpp++ < 5) fprintf(stderr, "  llama.cpp differs on line %zu: %.60s\n", i + 1, s[i]);
        bool tjs_same = same_ids(tjs[i], ids, k);
        if (tjs_same == tjs_wrong(i + 1) && bad_tjs++ < 5)
            fprintf(stderr, "  transformers.js %s on line %zu: %.60s\n", tjs_same ? "now agrees" : "differs", i + 1, s[i]);
        free(ids);
        cJSON_Delete(tjs[i]), cJSON_Delete(lcpp[i]);
    }
    if (bad_lcpp || bad_tjs)
        fail_msg("of %zu strings, %zu differ from llama.cpp, %zu from transformers.js (beyond its known errors)", n,
                 bad_lcpp, bad_tjs);
    free(tjs), free(lcpp);
    free_strings(s, n);
    dq_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama2c),         cmocka_unit_test(test_hf),
        cmocka_unit_test(test_gguf),            cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_tiny_hf),         cmocka_unit_test(test_packed),
        cmocka_unit_test(test_tokenizers),
        cmocka_unit_test(test_layout),          cmocka_unit_test(test_overwrite_rules),
        cmocka_unit_test(test_shards),
        cmocka_unit_test(test_shards_few_files),
        cmocka_unit_test(test_smollm2_references),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
