/* Streaming quantization (issue #15): a model loaded lazily keeps each
 * block's linears in its file until the pipeline reaches the block and
 * releases them once the block is written; the packed checkpoint is laid out
 * first and written block by block. Checked here:
 *  - dq_st_writer: tensors put in any order and in pieces give the bytes of
 *    dq_st_write; a tensor left short or bytes outside a tensor are errors;
 *  - lazy and eager quantization write byte-identical checkpoints (bf16 with
 *    a tied head, f16 with biases, fp32 llama2.c views with the head
 *    quantized, GPTQ after a rotation, which loads the whole model first),
 *    and GGUF files (tied head as the embedding, fallback types, an untying
 *    rotation);
 *  - an untied embedding stays in its file too: calibration reads its rows
 *    there, the writer refuses it until it is loaded;
 *  - a block is loaded on demand and its memory returned on unload; a
 *    consumed model refuses a forward pass, naming the block;
 *  - a non-finite weight in a deferred block is reported when the block is
 *    reached, naming file and tensor, and nothing is published;
 *  - calibration hidden states spilled to a file past the memory budget give
 *    the bytes they give in RAM (fp32 and bf16), leave no file behind, and a
 *    spill folder that cannot be used is an error naming it;
 *  - a shard that shrinks mid-run is an error naming it (never SIGBUS);
 *  - the hidden-state store itself: windows round-trip in RAM and on disk,
 *    bf16 rounds as dq_f32_to_bf16;
 *  - perplexity, saved logits and KLD of a model run block by block are the
 *    whole model's, bit for bit. */
#define _DEFAULT_SOURCE /* truncate */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>

#include "calib/hidden_states.h"
#include "calib/pipeline.h"
#include "eval/perplexity.h"
#include "formats/dashq_packed.h"
#include "formats/safetensors.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/sites.h"
#include "testutil.h"
#include "util/half.h"

#define GUT6L_HF "models/gut6l-hf"
#define STORIES "models/stories260K/stories260K.bin"
#define CALIB "data/wikitext2/wiki.test.raw"

static bool exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void test_st_writer_pieces(void **st) {
    (void)st;
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {7, 8, 9};
    int32_t c[1] = {-5};
    dq_st_out t[3] = {{.name = "a", .dtype = "F32", .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = sizeof a},
                      {.name = "b", .dtype = "BF16", .ndim = 1, .shape = {3}, .data = b, .nbytes = sizeof b},
                      {.name = "c", .dtype = "I32", .ndim = 1, .shape = {1}, .data = c, .nbytes = sizeof c}};
    dq_error err = {0};
    const char *whole = tu_tmp("whole.safetensors"), *pieces = tu_tmp("pieces.safetensors");
    assert_int_equal(dq_st_write(whole, t, 3, &err), DQ_OK);
    dq_st_writer w;
    assert_int_equal(dq_st_writer_open(pieces, t, 3, &w, &err), DQ_OK);
    assert_int_equal(dq_st_writer_put(&w, 2, 0, c, sizeof c, &err), DQ_OK);
    assert_int_equal(dq_st_writer_put(&w, 0, 12, a + 3, 12, &err), DQ_OK); /* second half first */
    assert_int_equal(dq_st_writer_put(&w, 1, 0, b, sizeof b, &err), DQ_OK);
    assert_int_equal(dq_st_writer_put(&w, 0, 0, a, 12, &err), DQ_OK);
    assert_int_equal(dq_st_writer_put(&w, 1, 4, b, 4, &err), DQ_ERR_ARG); /* past the tensor's end */
    assert_int_equal(dq_st_writer_put(&w, 3, 0, b, 1, &err), DQ_ERR_ARG);
    assert_int_equal(dq_st_writer_close(&w, &err), DQ_OK);
    assert_true(tu_same_file(whole, pieces));
    dq_st_file f;
    assert_int_equal(dq_st_open(pieces, &f, &err), DQ_OK);
    assert_int_equal(f.n_tensors, 3);
    dq_st_close(&f);

    assert_int_equal(dq_st_writer_open(tu_tmp("short.safetensors"), t, 3, &w, &err), DQ_OK);
    assert_int_equal(dq_st_writer_put(&w, 0, 0, a, sizeof a, &err), DQ_OK);
    assert_int_equal(dq_st_writer_put(&w, 2, 0, c, sizeof c, &err), DQ_OK);
    assert_int_equal(dq_st_writer_close(&w, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "tensor 1 got 0 of its 6 bytes"));
}

/* The public job, lazily or not; returns the status. gguf_type: GGUF
 * output; options: the method's. */
static const char *gguf_type, *options;
/* the lazy run's memory budget and spill folder; both runs' hidden dtype */
static size_t lazy_budget;
static const char *lazy_tmp_dir, *hidden_dtype;
static dq_status quantize(const char *model, const char *tok, bool lazy, const char *method, const char *rotate,
                          bool head, const char *out, dq_error *err) {
    dq_model *m;
    dq_status st = (lazy ? dq_model_load_lazy : dq_model_load)(model, &m, err);
    if (st) return st;
    dq_tokenizer *t = tu_tokenizer(tok);
    dq_quantize_params p = dq_quantize_default_params();
    p.method = method;
    p.bits = 3;
    p.group = 32;
    p.calib = tu_shared(CALIB);
    p.nsamples = 4;
    p.seqlen = 32;
    p.n_threads = 2;
    p.quantize_head = head;
    p.rotate = rotate;
    p.options = options;
    p.hidden_dtype = hidden_dtype;
    if (lazy) p.mem_budget = lazy_budget, p.tmp_dir = lazy_tmp_dir;
    if (gguf_type) p.format = "gguf", p.gguf_type = gguf_type, p.bits = 0, p.group = 0;
    st = dq_quantize(m, t, out, &p, NULL, err);
    dq_tokenizer_free(t);
    dq_model_free(m);
    return st;
}

static void same_checkpoint(const char *model, const char *tok, const char *method, const char *rotate, bool head,
                            const char *name) {
    char eager[1100], lazy[1200];
    snprintf(eager, sizeof eager, "%s", tu_tmp(name));
    snprintf(lazy, sizeof lazy, "%s-lazy", eager);
    dq_error err = {0};
    if (quantize(model, tok, false, method, rotate, head, eager, &err)) fail_msg("%s", err.msg);
    if (quantize(model, tok, true, method, rotate, head, lazy, &err)) fail_msg("%s", err.msg);
    const char *what;
    if (!tu_same_folder(eager, lazy, &what)) fail_msg("%s: %s differs between the eager and the lazy model", name, what);
}

static void test_same_bytes_bf16_tied(void **st) {
    (void)st;
    same_checkpoint(tu_shared(GUT6L_HF), tu_shared(GUT6L_HF "/tokenizer.json"), "dashq", NULL, false, "gut6l-dashq");
    same_checkpoint(tu_shared(GUT6L_HF), tu_shared(GUT6L_HF "/tokenizer.json"), "gptq", NULL, true, "gut6l-gptq");
    /* sharded like the input: every shard and the index */
    same_checkpoint(tu_hf_sharded(tu_shared(GUT6L_HF), "gut6l-2shards", 2), tu_shared(GUT6L_HF "/tokenizer.json"),
                    "dashq", NULL, false, "gut6l-sharded");
}

static void same_gguf_from(const char *model, const char *method, const char *type, const char *rotate,
                           const char *name) {
    char eager[1100], lazy[1200];
    snprintf(eager, sizeof eager, "%s", tu_tmp(name));
    snprintf(lazy, sizeof lazy, "%s-lazy.gguf", eager);
    dq_error err = {0};
    gguf_type = type;
    const char *tok = tu_shared(GUT6L_HF "/tokenizer.json");
    if (quantize(model, tok, false, method, rotate, false, eager, &err)) fail_msg("%s", err.msg);
    if (quantize(model, tok, true, method, rotate, false, lazy, &err)) fail_msg("%s", err.msg);
    gguf_type = NULL;
    if (!tu_same_file(eager, lazy)) fail_msg("%s: the eager and the lazy GGUF differ", name);
    dq_model *m = tu_model(lazy); /* and it loads */
    dq_model_free(m);
}

static void same_gguf(const char *method, const char *type, const char *rotate, const char *name) {
    same_gguf_from(tu_shared(GUT6L_HF), method, type, rotate, name);
}

/* GGUF written block by block: a tied head that is the embedding (Q4_K_M's
 * Q6_K head), fallback types for widths the blocks do not divide, and a
 * rotation that unties the head. */
static void test_same_bytes_gguf(void **st) {
    (void)st;
    same_gguf("dashq", "Q4_K_M", NULL, "gut6l-q4km.gguf");
    same_gguf("gptq", "Q3_K_S", "hadamard", "gut6l-q3ks-rot.gguf");
}

static void test_same_bytes_llama2c_views(void **st) {
    (void)st;
    same_checkpoint(tu_shared(STORIES), tu_shared("models/stories260K/tok512.bin"), "gptq", NULL, true, "stories");
}

/* OAC's gradient pass runs the whole model: first, and again every two
 * blocks on the partly quantized model (the quantized blocks stay loaded). */
static void test_same_bytes_oac_refresh(void **st) {
    (void)st;
    options = "refresh=2";
    same_checkpoint(tu_shared(GUT6L_HF), tu_shared(GUT6L_HF "/tokenizer.json"), "oac", NULL, false, "gut6l-oac");
    options = NULL;
}

/* Files whose name starts with prefix in dir. */
static int count_prefixed(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += !strncmp(e->d_name, prefix, strlen(prefix));
    if (d) closedir(d);
    return n;
}

/* Past the memory budget a single gradient pass streams the lazy model
 * (calib/gradients.h; its block inputs spilled too): the Fisher form with
 * its bf16 δ spill, the token form under DASH-Q, and OAC into a Q3_K_S GGUF. */
static void test_same_bytes_oac_streamed(void **st) {
    (void)st;
    char dir[1100], tok[1100];
    snprintf(dir, sizeof dir, "%s", tu_tmp("spill-oac"));
    snprintf(tok, sizeof tok, "%s", tu_shared(GUT6L_HF "/tokenizer.json"));
    mkdir(dir, 0755);
    lazy_budget = 1, lazy_tmp_dir = dir;
    same_checkpoint(tu_shared(GUT6L_HF), tok, "oac", NULL, false, "gut6l-oac-streamed");
    options = "curvature=oac-token";
    same_checkpoint(tu_shared(GUT6L_HF), tok, "dashq", NULL, false, "gut6l-dashq-oac-token");
    options = NULL;
    same_gguf("oac", "Q3_K_S", NULL, "gut6l-oac-q3ks.gguf");
    assert_int_equal(count_prefixed(dir, ".dashq-hidden"), 0); /* unlinked at creation */
    lazy_budget = 0, lazy_tmp_dir = NULL;
}

/* A rotation folds into every tensor first: the lazy model is loaded whole. */
static void test_same_bytes_rotated(void **st) {
    (void)st;
    same_checkpoint(tu_shared(GUT6L_HF), tu_shared(GUT6L_HF "/tokenizer.json"), "gptq", "hadamard", false,
                    "gut6l-rotated");
}

/* f16 with q/k/v biases (qwen2-tiny): its vocabulary has no tokenizer here,
 * so the pipeline runs on random windows and writes through the streaming
 * writer itself, as dq_quantize does. */
static dq_status emit_put(void *w, const dq_model *m, const dq_qlayer *l, int n, dq_error *err) {
    return dq_packed_put(w, m, l, n, err);
}

static void pipeline_to(const char *model, bool lazy, const char *out) {
    dq_model *m;
    dq_error err = {0};
    if ((lazy ? dq_model_load_lazy : dq_model_load)(model, &m, &err)) fail_msg("%s", err.msg);
    dq_calib_set cs = {.n = 3, .len = 16, .tokens = malloc(48 * sizeof(int32_t))};
    for (int i = 0; i < 48; i++) cs.tokens[i] = (i * 37 + 11) % m->cfg.vocab_size;
    dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_GPTQ, 4, 32), .n_threads = 2};
    dq_qlayer *layout = calloc((size_t)dq_quant_result_capacity(&m->cfg), sizeof *layout);
    int n = dq_quant_layout(&m->cfg, &o, layout);
    dq_packed_writer *w;
    if (dq_packed_begin(out, m, layout, n, &w, &err)) fail_msg("%s", err.msg);
    o.emit = emit_put;
    o.emit_user = w;
    dq_quant_result r;
    if (dq_quantize_model(m, &cs, &o, &r, &err)) fail_msg("%s", err.msg);
    dq_packed_info info = {.method = "gptq", .bits = 4, .group = 32};
    if (lazy) { /* the untied embedding and head are still in their file: the writer refuses them, then gets them */
        assert_null(m->output);
        assert_null(m->tok_embeddings);
        dq_packed_writer *w2;
        if (dq_packed_begin(tu_tmp("qwen2-noembed"), m, layout, 0, &w2, &err)) fail_msg("%s", err.msg);
        assert_int_equal(dq_packed_finish(w2, m, &r, &info, &err), DQ_ERR_ARG);
        assert_non_null(strstr(err.msg, "tensor model.embed_tokens.weight is not loaded"));
        if (dq_model_block_load(m, DQ_DEFER_EMBED, &err)) fail_msg("%s", err.msg);
        if (dq_packed_begin(tu_tmp("qwen2-nohead"), m, layout, 0, &w2, &err)) fail_msg("%s", err.msg);
        assert_int_equal(dq_packed_finish(w2, m, &r, &info, &err), DQ_ERR_ARG);
        assert_non_null(strstr(err.msg, "tensor lm_head.weight is not loaded"));
        if (dq_model_block_load(m, DQ_DEFER_HEAD, &err)) fail_msg("%s", err.msg);
    }
    if (dq_packed_finish(w, m, &r, &info, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < r.n; i++) assert_null(r.layers[i].qt.q); /* written, then dropped */
    assert_int_equal(r.layers[0].qt.rows, m->cfg.n_heads * m->cfg.head_dim); /* the dims stay */
    dq_quant_result_free(&r);
    dq_calib_free(&cs);
    free(layout);
    dq_model_free(m);
}

static void test_same_bytes_f16_biases(void **st) {
    (void)st;
    char a[1200], b[1200];
    pipeline_to(tu_fixture("qwen2-tiny"), false, tu_tmp("qwen2-eager"));
    pipeline_to(tu_fixture("qwen2-tiny"), true, tu_tmp("qwen2-lazy"));
    snprintf(a, sizeof a, "%s/model.safetensors", tu_tmp("qwen2-eager"));
    snprintf(b, sizeof b, "%s/model.safetensors", tu_tmp("qwen2-lazy"));
    assert_true(tu_same_file(a, b));
}

/* Blocks come and go; the model's own buffers return to what they were. */
static void test_block_load_unload(void **st) {
    (void)st;
    dq_model *m;
    dq_error err = {0};
    if (dq_model_load_lazy(tu_shared(GUT6L_HF), &m, &err)) fail_msg("%s", err.msg);
    assert_int_equal(m->n_deferred, m->cfg.n_layers * DQ_LIN_PER_BLOCK);
    size_t owned = m->n_owned;
    for (int l = 0; l < m->cfg.n_layers; l++) assert_false(dq_model_block_ready(m, l));
    assert_int_equal(dq_model_block_load(m, 2, &err), DQ_OK);
    assert_int_equal(dq_model_block_load(m, 2, &err), DQ_OK); /* idempotent */
    assert_true(dq_model_block_ready(m, 2));
    assert_false(dq_model_block_ready(m, 1));
    assert_int_equal(m->n_owned, owned + DQ_LIN_PER_BLOCK); /* bf16: converted copies */

    dq_model *e = tu_model(tu_shared(GUT6L_HF)); /* the eager load holds the same values */
    for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) {
        const dq_site *s = dq_site_of_linear(k);
        assert_memory_equal(dq_site_get(&m->layers[2], s), dq_site_get(&e->layers[2], s),
                            dq_site_elems(s, &m->cfg) * sizeof(float));
    }
    dq_model_free(e);

    /* a forward pass through an unloaded block names it */
    dq_session *s;
    assert_int_equal(dq_session_new(m, 8, 8, 1, &s, &err), DQ_OK);
    float *x = calloc((size_t)8 * m->cfg.dim, sizeof *x);
    for (int i = 0; i < 8 * m->cfg.dim; i++) x[i] = (float)((i % 7) - 3) * 0.1f;
    assert_int_equal(dq_block_forward(s, 2, x, 8, NULL, &err), DQ_OK);
    assert_int_equal(dq_block_forward(s, 1, x, 8, NULL, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "block 1's weights are not loaded"));
    free(x);
    dq_session_free(s);

    /* convert goes through the blocks itself: those it loaded are unloaded again, block 2 stays */
    dq_tokenizer *tok = tu_tokenizer(tu_shared(GUT6L_HF "/tokenizer.json"));
    dq_convert_params cp = dq_convert_default_params();
    cp.type = "F16";
    assert_int_equal(dq_convert(m, tok, tu_tmp("lazy.gguf"), &cp, &err), DQ_OK);
    dq_tokenizer_free(tok);
    for (int l = 0; l < m->cfg.n_layers; l++) assert_int_equal(dq_model_block_ready(m, l), l == 2);
    assert_int_equal(m->n_owned, owned + DQ_LIN_PER_BLOCK);

    dq_model_block_unload(m, 2);
    assert_false(dq_model_block_ready(m, 2));
    assert_int_equal(m->n_owned, owned);
    assert_int_equal(dq_model_load_all(m, &err), DQ_OK);
    for (int l = 0; l < m->cfg.n_layers; l++) assert_true(dq_model_block_ready(m, l));
    dq_model_free(m);
}

/* dashq convert streams: a lazily loaded model gives the bytes of an eager
 * one in every output (GGUF F16/Q8_0, HF F32/BF16, sharded), holding one
 * block at a time (none is loaded after; an untied head and embedding too). */
static void same_convert(const char *model, const char *tok_path, const char *format, const char *type,
                         uint64_t shard, const char *name) {
    char eager[1100], lazy[1200];
    snprintf(eager, sizeof eager, "%s", tu_tmp(name));
    snprintf(lazy, sizeof lazy, "%s-lazy", eager);
    dq_tokenizer *tok = tok_path ? tu_tokenizer(tok_path) : NULL;
    dq_convert_params p = dq_convert_default_params();
    p.format = format, p.type = type, p.max_shard_bytes = shard;
    dq_error err = {0};
    dq_model *e = tu_model(model), *m;
    if (dq_convert(e, tok, eager, &p, &err)) fail_msg("%s: %s", name, err.msg);
    if (dq_model_load_lazy(model, &m, &err) || dq_convert(m, tok, lazy, &p, &err)) fail_msg("%s: %s", name, err.msg);
    for (int l = 0; l < m->cfg.n_layers; l++) assert_false(dq_model_block_ready(m, l));
    assert_true(m->cfg.tied_embeddings || (!m->output && !m->tok_embeddings));
    const char *what = "the file";
    if (strcmp(format, "hf") ? !tu_same_file(eager, lazy) : !tu_same_folder(eager, lazy, &what))
        fail_msg("%s: %s differs between the eager and the lazy model", name, what);
    dq_tokenizer_free(tok);
    dq_model_free(m), dq_model_free(e);
}

static void test_same_bytes_convert(void **st) {
    (void)st;
    const char *gut = tu_shared(GUT6L_HF), *tok = tu_shared(GUT6L_HF "/tokenizer.json");
    same_convert(gut, tok, "gguf", "F16", 0, "conv-f16.gguf");
    same_convert(gut, tok, "gguf", "Q8_0", 0, "conv-q8.gguf");
    same_convert(gut, tok, "hf", "F32", 0, "conv-hf-f32");
    same_convert(gut, tok, "hf", "BF16", 300000, "conv-hf-bf16-sharded");
    same_convert(tu_fixture("qwen2-tiny"), NULL, "hf", "F32", 0, "conv-qwen2"); /* untied F16 head, biases */
    same_convert(tu_fixture("llama3-tiny"), NULL, "hf", "BF16", 0, "conv-llama3"); /* 2 input shards */
    dq_model *m = tu_model(gut); /* GGUF needs a tokenizer: an error, not a crash */
    dq_convert_params p = dq_convert_default_params();
    dq_error err = {0};
    assert_int_equal(dq_convert(m, NULL, tu_tmp("no-tok.gguf"), &p, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "needs the model's tokenizer"));
    dq_model_free(m);
}

/* A GGUF whose linears are block-quantized (Q8_0; RTN's Q4_K_M: Q4_K,
 * Q6_K, and Q8_0 where the blocks do not divide) streams as well: its linears
 * stay in the file until their block is loaded, then are decoded as an eager
 * load decodes them; quantize and convert write the same bytes either way. */
static void test_quantized_source(void **st) {
    (void)st;
    const char *gut = tu_shared(GUT6L_HF), *q8 = tu_tmp("src-q8.gguf"), *q4 = tu_tmp("src-q4km.gguf");
    dq_tokenizer *tok = tu_tokenizer(tu_shared(GUT6L_HF "/tokenizer.json"));
    dq_convert_params p = dq_convert_default_params();
    p.type = "Q8_0";
    dq_error err = {0};
    dq_model *src = tu_model(gut);
    if (dq_convert(src, tok, q8, &p, &err)) fail_msg("%s", err.msg);
    dq_model_free(src);
    dq_tokenizer_free(tok);
    gguf_type = "Q4_K_M";
    if (quantize(gut, tu_shared(GUT6L_HF "/tokenizer.json"), false, "rtn", NULL, false, q4, &err))
        fail_msg("%s", err.msg);
    gguf_type = NULL;

    dq_model *m, *e = tu_model(q4);
    if (dq_model_load_lazy(q4, &m, &err)) fail_msg("%s", err.msg);
    assert_int_equal(m->n_deferred, m->cfg.n_layers * DQ_LIN_PER_BLOCK);
    size_t owned = m->n_owned;
    assert_int_equal(dq_model_block_load(m, 3, &err), DQ_OK);
    for (int k = 0; k < DQ_LIN_PER_BLOCK; k++) {
        const dq_site *s = dq_site_of_linear(k);
        assert_memory_equal(dq_site_get(&m->layers[3], s), dq_site_get(&e->layers[3], s),
                            dq_site_elems(s, &m->cfg) * sizeof(float));
    }
    dq_model_block_unload(m, 3);
    assert_int_equal(m->n_owned, owned);
    int nm, ne;
    const char *qm = dq_model_source_quant(m, &nm), *qe = dq_model_source_quant(e, &ne); /* still said */
    assert_int_equal(nm, ne);
    assert_int_equal(nm, m->cfg.n_layers * DQ_LIN_PER_BLOCK);
    assert_string_equal(qm, qe);
    dq_model_free(m), dq_model_free(e);

    same_gguf_from(q8, "dashq", "Q4_K_M", NULL, "from-q8-q4km.gguf");
    same_gguf_from(q4, "gptq", "Q3_K_S", NULL, "from-q4km-q3ks.gguf");
    same_convert(q4, NULL, "hf", "F32", 0, "from-q4km-hf");
    same_convert(q8, tu_shared(GUT6L_HF "/tokenizer.json"), "gguf", "F16", 0, "from-q8-f16.gguf");
}

/* NaN in block 1's down_proj: the eager load refuses the file; the lazy one
 * reaches the block, names file and tensor, and publishes nothing. */
/* An f16 NaN at element `elem` of tensor `name` in dir's model.safetensors. */
static void poison(const char *dir, const char *name, size_t elem) {
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    dq_st_file f;
    dq_error err = {0};
    assert_int_equal(dq_st_open(path, &f, &err), DQ_OK);
    const dq_st_tensor *t = dq_st_find(&f, name);
    assert_non_null(t);
    size_t at = (size_t)(t->data - f.map.data) + 2 * elem;
    dq_st_close(&f);
    size_t n;
    char *bytes = tu_read(path, &n);
    bytes[at] = 0x00, bytes[at + 1] = 0x7e; /* f16 NaN */
    tu_write(path, bytes, n);
    free(bytes);
}

/* A deferred embedding is checked row by row as calibration reads it. */
static void nonfinite_embedding(void) {
    const char *dir = tu_hf_copy("nan-embed");
    int d;
    {
        dq_model *m = tu_model(dir);
        d = m->cfg.dim;
        dq_model_free(m);
    }
    poison(dir, "model.embed_tokens.weight", (size_t)2 * d + 3); /* token 2 */
    dq_model *m;
    dq_error err = {0};
    assert_int_equal(dq_model_load_lazy(dir, &m, &err), DQ_OK);
    dq_calib_set cs = {.n = 1, .len = 8, .tokens = calloc(8, sizeof(int32_t))};
    cs.tokens[5] = 2;
    dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_GPTQ, 4, 32), .n_threads = 1};
    dq_quant_result r;
    assert_int_equal(dq_quantize_model(m, &cs, &o, &r, &err), DQ_ERR_NUMERIC);
    if (!strstr(err.msg, "tensor model.embed_tokens.weight: non-finite value nan at element") ||
        !strstr(err.msg, "(token 2)"))
        fail_msg("message: %s", err.msg);
    dq_calib_free(&cs);
    dq_model_free(m);
}

static void test_nonfinite_deferred(void **st) {
    (void)st;
    nonfinite_embedding();
    const char *dir = tu_hf_copy("nan-down");
    dq_error err = {0};
    poison(dir, "model.layers.1.mlp.down_proj.weight", 5);
    dq_model *m;
    assert_int_equal(dq_model_load(dir, &m, &err), DQ_ERR_NUMERIC);
    assert_int_equal(dq_model_load_lazy(dir, &m, &err), DQ_OK);
    dq_calib_set cs = {.n = 1, .len = 8, .tokens = calloc(8, sizeof(int32_t))};
    dq_pipeline_opts o = {.q = dq_quant_defaults(DQ_METHOD_GPTQ, 4, 32), .n_threads = 1};
    dq_quant_result r;
    assert_int_equal(dq_quantize_model(m, &cs, &o, &r, &err), DQ_ERR_NUMERIC);
    if (!strstr(err.msg, "model.safetensors: tensor model.layers.1.mlp.down_proj.weight: non-finite value nan at "
                         "element 5"))
        fail_msg("message: %s", err.msg);
    dq_calib_free(&cs);
    dq_model_free(m);

    /* through dq_quantize: no folder, no temporary left */
    if (dq_model_load_lazy(dir, &m, &err)) fail_msg("%s", err.msg);
    dq_quantize_params p = dq_quantize_default_params();
    p.method = "rtn";
    p.group = 32;
    p.n_threads = 1;
    const char *out = tu_tmp("nan-out");
    dq_tokenizer *tok = tu_tokenizer(tu_shared("models/stories260K/tok512.bin")); /* only copied into the folder */
    assert_int_equal(dq_quantize(m, tok, out, &p, NULL, &err), DQ_ERR_NUMERIC);
    dq_tokenizer_free(tok);
    assert_non_null(strstr(err.msg, "down_proj.weight: non-finite value"));
    assert_false(exists(out));
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", out, (int)getpid());
    assert_false(exists(tmp));
    dq_model_free(m);
}

/* A shard cut short while a lazy model streams from it: the next block
 * load is an error naming the file, not a SIGBUS. */
static void test_shard_shrinks(void **st) {
    (void)st;
    const char *dir = tu_hf_copy("shrunk");
    char path[1200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    dq_model *m;
    dq_error err = {0};
    if (dq_model_load_lazy(dir, &m, &err)) fail_msg("%s", err.msg);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(truncate(path, sb.st_size / 2), 0);
    assert_int_equal(dq_model_block_load(m, 1, &err), DQ_ERR_IO);
    if (!strstr(err.msg, "model.safetensors: the file shrank")) fail_msg("message: %s", err.msg);
    dq_model_free(m);
}


static void test_spill_same_bytes(void **st) {
    (void)st;
    char dir[1100];
    snprintf(dir, sizeof dir, "%s", tu_tmp("spill"));
    mkdir(dir, 0755);
    char hf[1100], tok[1100], bad[1100]; /* tu_shared and tu_tmp return one static buffer */
    snprintf(hf, sizeof hf, "%s", tu_shared(GUT6L_HF));
    snprintf(tok, sizeof tok, "%s", tu_shared(GUT6L_HF "/tokenizer.json"));
    snprintf(bad, sizeof bad, "%s", tu_tmp("spill-bad"));
    lazy_budget = 1, lazy_tmp_dir = dir; /* everything past one byte spills */
    same_checkpoint(hf, tok, "gptq", NULL, true, "spill-gptq");
    hidden_dtype = "bf16";
    same_checkpoint(hf, tok, "dashq", NULL, false, "spill-bf16");
    hidden_dtype = NULL;
    same_gguf("gptq", "Q3_K_S", NULL, "spill-q3ks.gguf");
    assert_int_equal(count_prefixed(dir, ".dashq-hidden"), 0); /* unlinked at creation */

    dq_error err = {0};
    lazy_tmp_dir = tu_tmp("no-such-folder");
    assert_int_equal(quantize(hf, tok, true, "gptq", NULL, false, bad, &err), DQ_ERR_IO);
    assert_non_null(strstr(err.msg, "no-such-folder"));
    assert_false(exists(bad));
    lazy_budget = 0, lazy_tmp_dir = NULL;
    hidden_dtype = "fp8";
    assert_int_equal(quantize(hf, tok, true, "gptq", NULL, false, bad, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "fp8"));
    hidden_dtype = NULL;
}

/* The store alone: three windows written out of order, read back. */
/* Perplexity of a model held one block at a time (dq_perplexity on a lazily
 * loaded model past mem_budget): the numbers and saved logits of the model
 * loaded whole, bit for bit, with the windows' states spilled or in RAM, the
 * KLD too; the blocks are left unloaded and the model runs again. Within the
 * budget the model is loaded whole. An untied head and embedding (qwen2-tiny)
 * stay in their file until their turn. */
static void same_ppl(const dq_perplexity_result *a, const dq_perplexity_result *b) {
    assert_true(a->ppl == b->ppl && a->nll == b->nll && a->nll_err == b->nll_err && a->ppl_err == b->ppl_err);
    assert_true(a->n_scored == b->n_scored && a->n_windows == b->n_windows && a->text_read == b->text_read);
    assert_true(a->has_kld == b->has_kld && a->kld == b->kld && a->kld_err == b->kld_err && a->kld_p99 == b->kld_p99 &&
                a->kld_max == b->kld_max && a->same_top == b->same_top && a->base_ppl == b->base_ppl);
}

static void test_perplexity_by_block(void **st) {
    (void)st;
    char path[1024], tokp[1024], text[1024], save_e[1100], save_l[1100];
    snprintf(path, sizeof path, "%s", tu_shared(GUT6L_HF));
    snprintf(tokp, sizeof tokp, "%s", tu_shared(GUT6L_HF "/tokenizer.json"));
    snprintf(text, sizeof text, "%s", tu_shared("data/gutenberg/eval/pg11_Alices_Adventures_in_Wonderland.txt"));
    snprintf(save_e, sizeof save_e, "%s", tu_tmp("ppl-eager.logits"));
    snprintf(save_l, sizeof save_l, "%s", tu_tmp("ppl-lazy.logits"));
    dq_tokenizer *t = tu_tokenizer(tokp);
    dq_model *e = tu_model(path), *m;
    dq_error err = {0};
    dq_perplexity_params p = {.ctx = 64, .max_windows = 5, .n_threads = 2, .save_logits = save_e};
    dq_perplexity_result re, rl, ke, kl, ge, gl; /* llama.cpp's protocol (saving), KLD, GPTQ's protocol */
    if (dq_perplexity(e, t, text, &p, &re, &err)) fail_msg("%s", err.msg);
    p.save_logits = NULL, p.kld_base = save_e;
    if (dq_perplexity(e, t, text, &p, &ke, &err)) fail_msg("%s", err.msg);
    p.kld_base = NULL;
    if (dq_perplexity(e, t, text, &p, &ge, &err)) fail_msg("%s", err.msg);
    size_t weights = dq_model_n_params(e) * sizeof(float), budgets[] = {1, weights - 1}; /* spilled; in RAM */
    for (int b = 0; b < 2; b++) {
        if (dq_model_load_lazy(path, &m, &err)) fail_msg("%s", err.msg);
        p = (dq_perplexity_params){.ctx = 64, .max_windows = 5, .n_threads = 2, .save_logits = save_l,
                                   .mem_budget = budgets[b], .tmp_dir = tu_tmpdir()};
        if (dq_perplexity(m, t, text, &p, &rl, &err)) fail_msg("budget %zu: %s", budgets[b], err.msg);
        same_ppl(&re, &rl);
        assert_true(tu_same_file(save_e, save_l));
        for (int l = 0; l < m->cfg.n_layers; l++) assert_false(dq_model_block_ready(m, l));
        p.save_logits = NULL, p.kld_base = save_e; /* the same model again, block by block */
        if (dq_perplexity(m, t, text, &p, &kl, &err)) fail_msg("budget %zu: %s", budgets[b], err.msg);
        same_ppl(&ke, &kl);
        p.kld_base = NULL;
        if (dq_perplexity(m, t, text, &p, &gl, &err)) fail_msg("budget %zu: %s", budgets[b], err.msg);
        same_ppl(&ge, &gl);
        assert_false(dq_model_block_ready(m, 0));
        dq_model_free(m);
    }
    if (dq_model_load_lazy(path, &m, &err)) fail_msg("%s", err.msg);
    p = (dq_perplexity_params){.ctx = 64, .max_windows = 5, .n_threads = 2, .mem_budget = weights};
    if (dq_perplexity(m, t, text, &p, &gl, &err)) fail_msg("%s", err.msg);
    assert_true(dq_model_block_ready(m, 0)); /* within the budget: loaded whole */
    same_ppl(&ge, &gl);
    dq_model_free(m);
    dq_tokenizer_free(t);
    dq_model_free(e);

    /* a DASH-Q packed checkpoint: its linears stay packed in the file until their block (dequantized then) */
    char packed[1100];
    snprintf(packed, sizeof packed, "%s", tu_tmp("ppl-packed"));
    if (quantize(path, tokp, false, "rtn", NULL, false, packed, &err)) fail_msg("%s", err.msg);
    e = tu_model(packed);
    t = tu_tokenizer(tokp);
    p = (dq_perplexity_params){.ctx = 64, .max_windows = 5, .n_threads = 2};
    if (dq_perplexity(e, t, text, &p, &ge, &err) || dq_model_load_lazy(packed, &m, &err)) fail_msg("%s", err.msg);
    for (int l = 0; l < m->cfg.n_layers; l++) assert_false(dq_model_block_ready(m, l));
    p.mem_budget = 1, p.tmp_dir = tu_tmpdir();
    if (dq_perplexity(m, t, text, &p, &gl, &err)) fail_msg("%s", err.msg);
    same_ppl(&ge, &gl);
    assert_false(dq_model_block_ready(m, 0));
    dq_model_free(m), dq_model_free(e);
    dq_tokenizer_free(t);
    same_checkpoint(packed, tokp, "gptq", NULL, false, "from-packed"); /* requantized, lazily = eagerly */
    /* a lazy model a quantization went through is consumed: not reloaded from its file behind the caller's back */
    if (dq_model_load_lazy(path, &m, &err)) fail_msg("%s", err.msg);
    t = tu_tokenizer(tokp);
    dq_quantize_params qp = dq_quantize_default_params();
    qp.method = "rtn", qp.bits = 4, qp.group = 32, qp.n_threads = 2;
    if (dq_quantize(m, t, tu_tmp("ppl-consumed"), &qp, NULL, &err)) fail_msg("%s", err.msg);
    p = (dq_perplexity_params){.ctx = 64, .max_windows = 2, .n_threads = 2};
    assert_int_equal(dq_perplexity(m, t, text, &p, &gl, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "consumed"));
    dq_model_free(m);
    dq_tokenizer_free(t);

    const char *q = tu_fixture("qwen2-tiny");
    int32_t tok[4 * 16];
    for (int i = 0; i < 4 * 16; i++) tok[i] = (int32_t)((i * 37 + 1) % 256);
    dq_ppl_opts o = {.ctx = 16, .n_threads = 2};
    e = tu_model(q);
    if (dq_eval_perplexity(e, tok, 4 * 16, -1, &o, &re, &err)) fail_msg("%s", err.msg);
    if (dq_model_load_lazy(q, &m, &err) || dq_eval_perplexity(m, tok, 4 * 16, -1, &o, &rl, &err))
        fail_msg("%s", err.msg);
    same_ppl(&re, &rl);
    assert_null(m->output), assert_null(m->tok_embeddings);
    assert_false(dq_model_block_ready(m, 1));
    dq_model_free(m), dq_model_free(e);
}

static void test_hidden_store(void **st) {
    (void)st;
    enum { N = 3, LEN = 5, DIM = 7 };
    float x[LEN * DIM], y[LEN * DIM];
    for (dq_hidden_dtype t = DQ_HIDDEN_F32; t < DQ_HIDDEN_DTYPE_COUNT; t++)
        for (int spill = 0; spill < 2; spill++) {
            dq_hidden h;
            dq_error err = {0};
            assert_int_equal(dq_hidden_open(&h, N, LEN, DIM, t, spill ? tu_tmpdir() : NULL, &err), DQ_OK);
            assert_true((dq_hidden_window(&h, 1) != NULL) == (!spill && t == DQ_HIDDEN_F32));
            for (int w = N - 1; w >= 0; w--) {
                for (int i = 0; i < LEN * DIM; i++) x[i] = (float)(w * 1000 + i) * 1.0009765625f;
                assert_int_equal(dq_hidden_write(&h, w, x, &err), DQ_OK);
            }
            for (int w = 0; w < N; w++) {
                assert_int_equal(dq_hidden_read(&h, w, y, &err), DQ_OK);
                for (int i = 0; i < LEN * DIM; i++) {
                    float v = (float)(w * 1000 + i) * 1.0009765625f;
                    assert_true(y[i] == (t == DQ_HIDDEN_BF16 ? dq_bf16_to_f32(dq_f32_to_bf16(v)) : v));
                }
            }
            dq_hidden_close(&h);
        }
    assert_int_equal(dq_hidden_bytes(1 << 30, 1 << 30, 1 << 30, DQ_HIDDEN_F32), SIZE_MAX);
    dq_hidden_dtype t;
    assert_true(dq_hidden_dtype_parse("bf16", &t) && t == DQ_HIDDEN_BF16);
    assert_false(dq_hidden_dtype_parse("f16", &t));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_st_writer_pieces),     cmocka_unit_test(test_same_bytes_bf16_tied),
        cmocka_unit_test(test_same_bytes_llama2c_views), cmocka_unit_test(test_same_bytes_rotated),
        cmocka_unit_test(test_same_bytes_f16_biases), cmocka_unit_test(test_same_bytes_gguf),
        cmocka_unit_test(test_same_bytes_oac_refresh), cmocka_unit_test(test_same_bytes_oac_streamed),
        cmocka_unit_test(test_block_load_unload),
        cmocka_unit_test(test_nonfinite_deferred),   cmocka_unit_test(test_spill_same_bytes),
        cmocka_unit_test(test_hidden_store),         cmocka_unit_test(test_perplexity_by_block),         cmocka_unit_test(test_shard_shrinks),
        cmocka_unit_test(test_same_bytes_convert),   cmocka_unit_test(test_quantized_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
