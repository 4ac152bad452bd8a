/* Perplexity and KL divergence: llama-perplexity's numbers, a hand
 * computation from raw logits, and the saved-logits round trip. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/perplexity.h"
#include "testutil.h"

static int32_t *tokenize_file(const char *model, const char *text_path, size_t *n, int *bos) {
    dq_model *m = tu_model(model);
    dq_tokenizer *t;
    dq_error err = {0};
    if (dq_tokenizer_for_model(model, dq_model_config(m)->vocab_size, &t, &err)) fail_msg("%s", err.msg);
    size_t len;
    char *text = tu_read(text_path, &len);
    int32_t *ids;
    assert_int_equal(dq_tokenize(t, text, len, true, false, &ids, n, &err), DQ_OK);
    *bos = dq_tokenizer_bos(t);
    free(text);
    dq_tokenizer_free(t);
    dq_model_free(m);
    return ids;
}

static dq_ppl_result eval(const char *model, const int32_t *ids, size_t n, int bos, dq_ppl_opts o) {
    dq_model *m = tu_model(model);
    dq_ppl_result r;
    dq_error err = {0};
    o.n_threads = 2;
    if (dq_eval_perplexity(m, ids, n, bos, &o, &r, &err)) fail_msg("%s", err.msg);
    dq_model_free(m);
    return r;
}

/* Reference values printed by llama.cpp's llama-perplexity (commit c392e5094)
 * on the same models converted to F32 GGUF:
 *   llama-perplexity -m gut6l-f32.gguf -f pg35_The_Time_Machine.txt -c 128 -b 128 --chunks 16
 *     Final estimate: PPL = 88.0958 +/- 6.93167
 *   llama-perplexity -m stories260K-f32.gguf -f tinystories_valid_sample.txt -c 256 -b 256 --chunks 16
 *     Final estimate: PPL = 6.5537 +/- 0.51210
 * (On the whole Time Machine at -c 256 both print 72.4244 +/- 1.14089.)
 * The residual ~1e-5 relative comes from fp32 summation order in the logits. */
static void test_llamacpp_protocol(void **st) {
    (void)st;
    struct { const char *model, *text; int ctx; double ppl, err; } cases[] = {
        {"models/gut6l/gut6l.bin", "data/gutenberg/eval/pg35_The_Time_Machine.txt", 128, 88.0958, 6.93167},
        {"models/stories260K/stories260K.bin", "data/tinystories/tinystories_valid_sample.txt", 256, 6.5537, 0.51210},
    };
    for (size_t i = 0; i < 2; i++) {
        size_t n;
        int bos;
        int32_t *ids = tokenize_file(tu_shared(cases[i].model), tu_shared(cases[i].text), &n, &bos);
        dq_ppl_result r = eval(tu_shared(cases[i].model), ids, n, bos,
                               (dq_ppl_opts){.ctx = cases[i].ctx, .llamacpp = true, .max_windows = 16});
        assert_int_equal(r.n_windows, 16);
        assert_int_equal(r.n_scored, 16 * (cases[i].ctx / 2 - 1));
        if (fabs(r.ppl / cases[i].ppl - 1) > 1e-4 || fabs(r.ppl_err / cases[i].err - 1) > 1e-3)
            fail_msg("%s: ppl %.5f +/- %.5f, llama.cpp %.4f +/- %.5f", cases[i].model, r.ppl, r.ppl_err,
                     cases[i].ppl, cases[i].err);
        free(ids);
    }
}

/* GPTQ protocol: exp of the mean NLL of every next-token prediction in each
 * window, recomputed here from the raw logits in double precision. */
static void test_gptq_protocol_by_hand(void **st) {
    (void)st;
    const char *model = tu_shared("models/stories260K/stories260K.bin");
    size_t n;
    int bos;
    int32_t *ids = tokenize_file(model, tu_shared("data/tinystories/tinystories_valid_sample.txt"), &n, &bos);
    const int ctx = 64, windows = 3;
    dq_ppl_result r = eval(model, ids, n, bos, (dq_ppl_opts){.ctx = ctx, .max_windows = windows});
    dq_model *m = tu_model(model);
    dq_session *s;
    dq_error err = {0};
    assert_int_equal(dq_session_new(m, ctx, ctx, 1, &s, &err), DQ_OK);
    double nll = 0;
    for (int w = 0; w < windows; w++) {
        const float *lg;
        assert_int_equal(dq_forward(s, ids + w * ctx, ctx, 0, true, &lg, &err), DQ_OK);
        for (int i = 0; i + 1 < ctx; i++) {
            const float *row = lg + (size_t)i * 512;
            double mx = row[0], sum = 0;
            for (int v = 1; v < 512; v++) mx = fmax(mx, row[v]);
            for (int v = 0; v < 512; v++) sum += exp(row[v] - mx);
            nll += mx + log(sum) - row[ids[w * ctx + i + 1]];
        }
    }
    double want = exp(nll / (windows * (ctx - 1)));
    assert_int_equal(r.n_scored, (size_t)windows * (ctx - 1));
    assert_true(fabs(r.ppl / want - 1) < 1e-9);
    assert_int_equal(ids[0], bos); /* BOS once, at the start of the text */
    dq_session_free(s);
    dq_model_free(m);
    free(ids);
}

/* A model against its own saved distributions: KLD ~ 0, the same perplexity. */
static void test_kld_self(void **st) {
    (void)st;
    const char *model = tu_shared("models/gut6l/gut6l.bin");
    size_t n;
    int bos;
    int32_t *ids = tokenize_file(model, tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt"), &n, &bos);
    const char *path = tu_tmp("self.logits");
    dq_ppl_result a = eval(model, ids, n, bos, (dq_ppl_opts){.ctx = 128, .max_windows = 6, .save_logits = path});
    dq_ppl_result b = eval(model, NULL, 0, bos, (dq_ppl_opts){.kld_base = path});
    assert_true(b.has_kld);
    assert_int_equal(b.n_scored, a.n_scored);
    assert_true(fabs(b.ppl - a.ppl) < 1e-9 * a.ppl);
    assert_true(fabs(b.base_ppl / a.ppl - 1) < 1e-4); /* uint16 log-prob quantisation */
    assert_true(b.kld < 1e-6);
    assert_true(b.same_top > 0.999);
    free(ids);
}

/* A copy of a llama2.c checkpoint with every weight scaled by 1 + noise*u. */
static const char *perturbed_copy(const char *src, const char *name, float noise) {
    size_t len;
    char *data = tu_read(src, &len);
    uint32_t rng = 12345;
    for (size_t off = 28; off + 4 <= len; off += 4) {
        float w;
        memcpy(&w, data + off, 4);
        rng = rng * 1664525u + 1013904223u;
        w *= 1.0f + noise * ((float)(rng >> 8) / 16777216.0f - 0.5f);
        memcpy(data + off, &w, 4);
    }
    const char *path = tu_tmp(name);
    tu_write(path, data, len);
    free(data);
    return path;
}

/* KLD to a perturbed copy of gut6l, against a direct float64 computation. */
static void test_kld_matches_direct(void **st) {
    (void)st;
    const char *base = tu_shared("models/gut6l/gut6l.bin");
    const char *other = perturbed_copy(base, "gut6l-noisy.bin", 0.3f);
    size_t n;
    int bos;
    int32_t *ids = tokenize_file(base, tu_shared("data/gutenberg/eval/pg11_Alices_Adventures_in_Wonderland.txt"), &n, &bos);
    const int ctx = 64, windows = 4;
    const char *path = tu_tmp("base.logits");
    eval(base, ids, n, bos, (dq_ppl_opts){.ctx = ctx, .max_windows = windows, .save_logits = path});
    dq_ppl_result r = eval(other, NULL, 0, bos, (dq_ppl_opts){.kld_base = path});
    dq_model *mp = tu_model(base), *mq = tu_model(other);
    dq_session *sp, *sq;
    dq_error err = {0};
    assert_int_equal(dq_session_new(mp, ctx, ctx, 1, &sp, &err), DQ_OK);
    assert_int_equal(dq_session_new(mq, ctx, ctx, 1, &sq, &err), DQ_OK);
    double kld = 0;
    int count = 0;
    int32_t win[64];
    for (int w = 0; w < windows; w++) {
        memcpy(win, ids + w * ctx, sizeof win);
        win[0] = bos;
        const float *lp, *lq;
        assert_int_equal(dq_forward(sp, win, ctx, 0, true, &lp, &err), DQ_OK);
        assert_int_equal(dq_forward(sq, win, ctx, 0, true, &lq, &err), DQ_OK);
        for (int i = ctx / 2; i + 1 < ctx; i++, count++) {
            const float *p = lp + (size_t)i * 4096, *q = lq + (size_t)i * 4096;
            double mp_ = p[0], mq_ = q[0], sp_ = 0, sq_ = 0;
            for (int v = 1; v < 4096; v++) mp_ = fmax(mp_, p[v]), mq_ = fmax(mq_, q[v]);
            for (int v = 0; v < 4096; v++) sp_ += exp(p[v] - mp_), sq_ += exp(q[v] - mq_);
            for (int v = 0; v < 4096; v++) {
                double lpv = p[v] - mp_ - log(sp_), lqv = q[v] - mq_ - log(sq_);
                kld += exp(lpv) * (lpv - lqv);
            }
        }
    }
    kld /= count;
    assert_int_equal(r.n_scored, (size_t)count);
    assert_true(kld > 1e-3); /* the perturbation is visible */
    if (fabs(r.kld / kld - 1) > 0.01) fail_msg("kld %.8g, direct %.8g", r.kld, kld);
    dq_session_free(sp);
    dq_session_free(sq);
    dq_model_free(mp);
    dq_model_free(mq);
    free(ids);
}

static void test_bad_logits_file(void **st) {
    (void)st;
    const char *model = tu_shared("models/gut6l/gut6l.bin");
    const char *path = tu_tmp("short.logits");
    size_t n;
    int bos;
    int32_t *ids = tokenize_file(model, tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt"), &n, &bos);
    dq_ppl_result r;
    eval(model, ids, n, bos, (dq_ppl_opts){.ctx = 64, .max_windows = 3, .save_logits = path});
    size_t len;
    char *data = tu_read(path, &len);
    const char *cut = tu_tmp("cut.logits");
    tu_write(cut, data, len - 1000);
    dq_model *m = tu_model(model);
    dq_error err = {0};
    dq_ppl_opts o = {.kld_base = cut};
    assert_int_equal(dq_eval_perplexity(m, NULL, 0, bos, &o, &r, &err), DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "cut.logits"));
    assert_non_null(strstr(err.msg, "truncated"));
    tu_write(cut, "_nothing_", 9);
    assert_int_equal(dq_eval_perplexity(m, NULL, 0, bos, &o, &r, &err), DQ_ERR_FORMAT);
    /* a non-finite record (first scale, after the 20-byte header and 3 x 64 token ids) */
    float nan = NAN;
    memcpy(data + 20 + 3 * 64 * 4, &nan, 4);
    tu_write(cut, data, len);
    assert_int_equal(dq_eval_perplexity(m, NULL, 0, bos, &o, &r, &err), DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "cut.logits: window 0, position 32"));
    assert_non_null(strstr(err.msg, "not a finite distribution"));
    dq_model *other = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    o.kld_base = path;
    assert_int_equal(dq_eval_perplexity(other, NULL, 0, bos, &o, &r, &err), DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "vocabulary"));
    /* too little text for the context */
    dq_ppl_opts small = {.ctx = 256};
    assert_int_equal(dq_eval_perplexity(m, ids, 100, bos, &small, &r, &err), DQ_ERR_ARG);
    dq_model_free(other);
    dq_model_free(m);
    free(data);
    free(ids);
}

/* ---- the streamed text path (dq_eval_perplexity_text) against the whole-text one ---- */

static dq_ppl_result eval_text(const char *model, const char *text, dq_ppl_opts o, dq_error *err, dq_status want) {
    dq_model *m = tu_model(model);
    dq_tokenizer *t;
    if (dq_tokenizer_for_model(model, dq_model_config(m)->vocab_size, &t, err)) fail_msg("%s", err->msg);
    dq_ppl_result r;
    o.n_threads = 2;
    dq_status st = dq_eval_perplexity_text(m, t, text, &o, &r, err);
    if (st != want) fail_msg("status %d, want %d: %s", st, want, err->msg);
    dq_tokenizer_free(t);
    dq_model_free(m);
    return r;
}

static void expect_same_result(const dq_ppl_result *a, const dq_ppl_result *b) {
    assert_int_equal(a->n_windows, b->n_windows);
    assert_int_equal(a->n_scored, b->n_scored);
    assert_int_equal(a->ctx, b->ctx);
    /* the same tokens, windows and sums: equal to the last bit */
    assert_memory_equal(&a->ppl, &b->ppl, sizeof a->ppl);
    assert_memory_equal(&a->ppl_err, &b->ppl_err, sizeof a->ppl_err);
    assert_memory_equal(&a->nll, &b->nll, sizeof a->nll);
    assert_memory_equal(&a->nll_err, &b->nll_err, sizeof a->nll_err);
}

/* Perplexity in both protocols, with and without a window limit, with blocks
 * of 7 bytes to 64 KiB: the numbers of the whole-text path, bit for bit. */
static void test_text_streamed(void **st) {
    (void)st;
    const char *model = tu_shared("models/stories260K/stories260K.bin");
    const char *text = tu_tmp("tiny_stories_head.txt");
    tu_copy(tu_shared("data/tinystories/tinystories_valid_sample.txt"), text, 8000);
    size_t n;
    int bos;
    int32_t *ids = tokenize_file(model, text, &n, &bos);
    const size_t blocks[] = {7, 4093, 0};
    for (int proto = 0; proto < 2; proto++)
        for (int limit = 0; limit < 2; limit++) {
            dq_ppl_opts o = {.ctx = 64, .llamacpp = proto, .max_windows = limit ? 5 : 0};
            dq_ppl_result want = eval(model, ids, n, bos, o);
            for (size_t b = 0; b < 3; b++) {
                dq_error err = {0};
                o.text_block = blocks[b];
                dq_ppl_result got = eval_text(model, text, o, &err, DQ_OK);
                expect_same_result(&want, &got);
                if (limit && blocks[b]) assert_true(got.text_read < 2000 + blocks[b]); /* 5 windows of 64 tokens: ~1.2 kB */
                else assert_int_equal(got.text_read, 8000);
            }
        }
    free(ids);
}

/* --save-logits: the file is byte for byte the whole-text path's, and KLD
 * against it is what it was. */
static void test_text_saved_logits(void **st) {
    (void)st;
    const char *model = tu_shared("models/gut6l/gut6l.bin");
    const char *text = tu_tmp("time_machine_head.txt");
    tu_copy(tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt"), text, 6000);
    size_t n;
    int bos;
    int32_t *ids = tokenize_file(model, text, &n, &bos);
    const char *old = tu_tmp("old.logits"), *new = tu_tmp("new.logits");
    for (int limit = 0; limit < 2; limit++) {
        dq_ppl_opts o = {.ctx = 128, .max_windows = limit ? 3 : 0, .save_logits = old};
        dq_ppl_result want = eval(model, ids, n, bos, o);
        dq_error err = {0};
        o.save_logits = new;
        o.text_block = limit ? 64 : 1000;
        dq_ppl_result got = eval_text(model, text, o, &err, DQ_OK);
        expect_same_result(&want, &got);
        size_t la, lb;
        char *a = tu_read(old, &la), *b = tu_read(new, &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        free(a);
        free(b);
        dq_ppl_result ka = eval(model, NULL, 0, bos, (dq_ppl_opts){.kld_base = old});
        dq_ppl_result kb = eval(model, NULL, 0, bos, (dq_ppl_opts){.kld_base = new});
        expect_same_result(&ka, &kb);
        assert_memory_equal(&ka.kld, &kb.kld, sizeof ka.kld);
    }
    free(ids);
}

/* With --chunks only the start of a long text is tokenized; a text too short
 * is refused naming it; NUL bytes and bad UTF-8 anywhere are refused before
 * any scoring, naming the file and the offset, as when the text was read whole. */
static void test_text_limits_and_errors(void **st) {
    (void)st;
    const char *model = tu_shared("models/gut6l/gut6l.bin"), *wiki = tu_shared("data/wikitext2/wiki.test.raw");
    dq_error err = {0};
    dq_ppl_result r = eval_text(model, wiki, (dq_ppl_opts){.ctx = 128, .max_windows = 2, .text_block = 4096}, &err, DQ_OK);
    assert_int_equal(r.n_windows, 2);
    assert_true(r.text_read <= 4 * 4096); /* of 1.3 MB */
    const char *tiny = tu_tmp("tiny.txt");
    tu_write(tiny, "Too short.\n", 11);
    eval_text(model, tiny, (dq_ppl_opts){.ctx = 64}, &err, DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, tiny));
    assert_non_null(strstr(err.msg, "needs at least 64"));
    r = eval_text(model, tiny, (dq_ppl_opts){.ctx = 3, .llamacpp = true, .max_windows = 1}, &err, DQ_OK);
    assert_int_equal(r.n_windows, 1); /* 6 tokens: the 2 windows llamacpp mode asks for are there, 1 is scored */
    size_t len;
    char *text = tu_read(tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt"), &len);
    const char *bad = tu_tmp("late_nul.txt");
    text[150001] = '\0';
    tu_write(bad, text, len);
    eval_text(model, bad, (dq_ppl_opts){.ctx = 64, .max_windows = 1, .text_block = 4096}, &err, DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, bad));
    assert_non_null(strstr(err.msg, "NUL byte at offset 150001"));
    text[150001] = '\xe9'; /* a lone Latin-1 byte */
    tu_write(bad, text, len);
    eval_text(model, bad, (dq_ppl_opts){.ctx = 64, .max_windows = 1, .text_block = 4096}, &err, DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, bad));
    assert_non_null(strstr(err.msg, "not valid UTF-8 at byte 150001"));
    tu_write(bad, "", 0);
    eval_text(model, bad, (dq_ppl_opts){.ctx = 64}, &err, DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "empty"));
    free(text);
}

/* gut6l's log-probabilities for 3 windows of 64 tokens of The Time Machine,
 * saved to tmp/name; returns the file's bytes. */
static char *saved_logits(const char *name, size_t *len, int *bos) {
    const char *model = tu_shared("models/gut6l/gut6l.bin"), *path = tu_tmp(name);
    size_t n;
    int32_t *ids = tokenize_file(model, tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt"), &n, bos);
    eval(model, ids, n, *bos, (dq_ppl_opts){.ctx = 64, .max_windows = 3, .save_logits = path});
    free(ids);
    return tu_read(path, len);
}

/* Found while writing fuzz_kld: a header claiming 2048 windows of 2^20
 * tokens (2^31 ids) allocated 8 GB before reading them. The header fixes the
 * file's size; any other size is refused, naming the file. */
static void test_kld_lying_header(void **st) {
    (void)st;
    size_t len;
    int bos;
    char *data = saved_logits("header.logits", &len, &bos);
    const char *bad = tu_tmp("header-bad.logits");
    dq_model *m = tu_model(tu_shared("models/gut6l/gut6l.bin"));
    dq_error err = {0};
    dq_ppl_result r;
    dq_ppl_opts o = {.kld_base = bad};
    uint32_t big_ctx = 1u << 20;
    int32_t many = 2048;
    char *buf = malloc(len + 1);
    memcpy(buf, data, len);
    memcpy(buf + 8, &big_ctx, 4);
    memcpy(buf + 16, &many, 4);
    tu_write(bad, buf, 20);
    assert_int_equal(dq_eval_perplexity(m, NULL, 0, bos, &o, &r, &err), DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "header-bad.logits: truncated or padded"));
    assert_non_null(strstr(err.msg, "needs 8813256097812 bytes, the file has 20"));
    memcpy(buf, data, len);
    buf[len] = 0;
    for (size_t keep = len - 1; keep <= len + 1; keep += 2) { /* one byte short, one too many */
        tu_write(bad, buf, keep);
        assert_int_equal(dq_eval_perplexity(m, NULL, 0, bos, &o, &r, &err), DQ_ERR_FORMAT);
        assert_non_null(strstr(err.msg, "truncated or padded"));
    }
    tu_write(bad, data, len); /* the untouched file still reads */
    assert_int_equal(dq_eval_perplexity(m, NULL, 0, bos, &o, &r, &err), DQ_OK);
    free(buf);
    free(data);
    dq_model_free(m);
}

/* Found by fuzz_kld: a record whose log-probabilities rise above 0 gave a
 * KLD of 3e51 with success, one whose minimum sinks far below -16 - ln(vocab)
 * (no softmax we write gives that) a base perplexity of inf or 1e20. */
static void test_kld_lying_records(void **st) {
    (void)st;
    size_t len;
    int bos;
    char *data = saved_logits("records.logits", &len, &bos);
    const char *bad = tu_tmp("records-bad.logits");
    dq_model *m = tu_model(tu_shared("models/gut6l/gut6l.bin"));
    dq_error err = {0};
    dq_ppl_result r;
    dq_ppl_opts o = {.kld_base = bad};
    /* the minimum log-probability of window 1's second record (31 records of 4100 uint16 per window) */
    size_t rec = 20 + 3 * 64 * 4 + (31 * 4100 + 4100) * 2 + 4;
    float lies[] = {100.0f, -1e30f, -5000.0f};
    for (int i = 0; i < 3; i++) {
        char *buf = malloc(len);
        memcpy(buf, data, len);
        memcpy(buf + rec, &lies[i], 4);
        tu_write(bad, buf, len);
        free(buf);
        if (dq_eval_perplexity(m, NULL, 0, bos, &o, &r, &err) != DQ_ERR_FORMAT)
            fail_msg("minimum log-probability %g accepted: kld %g, base ppl %g", (double)lies[i], r.kld, r.base_ppl);
        assert_non_null(strstr(err.msg, "records-bad.logits: window 1, position 33"));
        assert_non_null(strstr(err.msg, "not a finite distribution"));
    }
    free(data);
    dq_model_free(m);
}

/* The streamed path reports to the caller's callback: bytes of text while
 * the window count is unknown, closed with done == total; windows with
 * --chunks; returning false stops it with DQ_ERR_CANCELLED. */
typedef struct {
    size_t calls, last, total, stop_at;
    bool ordered;
} ppl_log;

static bool ppl_progress(const char *stage, size_t done, size_t total, void *user) {
    ppl_log *l = user;
    if (strcmp(stage, "perplexity") || done < l->last || done > total) l->ordered = false;
    l->calls++, l->last = done, l->total = total;
    return !l->stop_at || l->calls < l->stop_at;
}

static void test_progress_and_cancel(void **state) {
    (void)state;
    const char *model = tu_shared("models/gut6l/gut6l.bin"), *text = tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt");
    dq_error err = {0};
    ppl_log bytes = {.ordered = true}, windows = {.ordered = true}, stop = {.ordered = true, .stop_at = 2};
    eval_text(model, text, (dq_ppl_opts){.ctx = 128, .max_windows = 0, .progress = {ppl_progress, NULL, &bytes}}, &err, DQ_OK);
    assert_true(bytes.ordered);
    assert_true(bytes.calls > 2);
    assert_int_equal(bytes.last, bytes.total); /* closed */
    struct stat sb;
    assert_int_equal(stat(text, &sb), 0);
    assert_int_equal(bytes.total, (size_t)sb.st_size);
    eval_text(model, text, (dq_ppl_opts){.ctx = 128, .max_windows = 5, .progress = {ppl_progress, NULL, &windows}}, &err, DQ_OK);
    assert_true(windows.ordered);
    assert_int_equal(windows.calls, 5);
    assert_int_equal(windows.total, 5);
    eval_text(model, text, (dq_ppl_opts){.ctx = 128, .max_windows = 5, .progress = {ppl_progress, NULL, &stop}}, &err,
              DQ_ERR_CANCELLED);
    assert_int_equal(stop.calls, 2);
    assert_non_null(strstr(err.msg, "cancelled"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llamacpp_protocol),
        cmocka_unit_test(test_progress_and_cancel),
        cmocka_unit_test(test_gptq_protocol_by_hand),
        cmocka_unit_test(test_kld_self),
        cmocka_unit_test(test_kld_matches_direct),
        cmocka_unit_test(test_bad_logits_file),
        cmocka_unit_test(test_text_streamed),
        cmocka_unit_test(test_text_saved_logits),
        cmocka_unit_test(test_text_limits_and_errors),
        cmocka_unit_test(test_kld_lying_header),
        cmocka_unit_test(test_kld_lying_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
