/* The forward pass against implementations no one here wrote: llama2.c's
 * reference output, llama.cpp's logits, a numpy forward pass for the HF
 * layouts, and internal consistency (KV cache, batching). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const float *run(dq_model *m, dq_session **s, const int32_t *toks, int n) {
    dq_error err = {0};
    const float *logits = NULL;
    if (dq_session_new(m, n, n, 2, s, &err) || dq_forward(*s, toks, n, 0, true, &logits, &err))
        fail_msg("%s", err.msg);
    return logits;
}

/* |a - b| <= tol * max|b| over each row: relative to the row's logit scale. */
static void assert_close_rows(const float *a, const float *b, int rows, int cols, double tol,
                              const char *what) {
    for (int r = 0; r < rows; r++) {
        double scale = 1e-6, worst = 0;
        for (int c = 0; c < cols; c++) scale = fmax(scale, fabs(b[(size_t)r * cols + c]));
        for (int c = 0; c < cols; c++) worst = fmax(worst, fabs(a[(size_t)r * cols + c] - b[(size_t)r * cols + c]));
        if (worst > tol * scale)
            fail_msg("%s: row %d differs by %.3g (scale %.3g, tolerance %.1g relative)", what, r, worst,
                     scale, tol);
    }
}

static void check_against(const char *model, const char *tokens, const char *ref, double tol) {
    int n;
    int32_t *toks = tu_read_tokens(tokens, &n);
    dq_model *m = tu_model(model);
    dq_session *s;
    const float *logits = run(m, &s, toks, n);
    size_t len;
    float *want = (float *)tu_read(ref, &len);
    int vocab = dq_model_config(m)->vocab_size;
    assert_int_equal(len, (size_t)n * vocab * sizeof(float));
    assert_close_rows(logits, want, n, vocab, tol, model);
    free(want);
    free(toks);
    dq_session_free(s);
    dq_model_free(m);
}

static void test_llamacpp_stories260k(void **st) {
    (void)st;
    check_against(tu_shared("models/stories260K/stories260K.bin"), tu_fixture("logits/stories260K.tokens"),
                  tu_fixture("logits/stories260K.llamacpp.f32"), 1e-4);
}

static void test_llamacpp_gut6l(void **st) {
    (void)st;
    check_against(tu_shared("models/gut6l/gut6l.bin"), tu_fixture("logits/gut6l.tokens"),
                  tu_fixture("logits/gut6l.llamacpp.f32"), 1e-4);
}

static void test_numpy_qwen2(void **st) {
    (void)st;
    check_against(tu_fixture("qwen2-tiny"), tu_fixture("qwen2-tiny/tokens.txt"),
                  tu_fixture("qwen2-tiny/expected_logits.f32"), 1e-4);
}

static void test_numpy_llama3_sharded(void **st) {
    (void)st;
    check_against(tu_fixture("llama3-tiny"), tu_fixture("llama3-tiny/tokens.txt"),
                  tu_fixture("llama3-tiny/expected_logits.f32"), 1e-4);
}

/* gut6l-hf holds gut6l's weights rounded to bf16, with q/k rows permuted to
 * the rotate-half layout: same logits up to that rounding. */
static void test_hf_matches_llama2c(void **st) {
    (void)st;
    int n;
    int32_t *toks = tu_read_tokens(tu_fixture("logits/gut6l.tokens"), &n);
    dq_model *a = tu_model(tu_shared("models/gut6l/gut6l.bin")), *b = tu_model(tu_shared("models/gut6l-hf"));
    dq_session *sa, *sb;
    const float *la = run(a, &sa, toks, n), *lb = run(b, &sb, toks, n);
    assert_close_rows(lb, la, n, 4096, 2e-2, "gut6l-hf vs gut6l");
    /* and the bf16 rounding really is all that differs: argmax agrees almost everywhere */
    int same = 0;
    for (int r = 0; r < n; r++) {
        int ia = 0, ib = 0;
        for (int c = 1; c < 4096; c++) {
            if (la[(size_t)r * 4096 + c] > la[(size_t)r * 4096 + ia]) ia = c;
            if (lb[(size_t)r * 4096 + c] > lb[(size_t)r * 4096 + ib]) ib = c;
        }
        same += ia == ib;
    }
    assert_true(same >= n - 2);
    dq_session_free(sa);
    dq_session_free(sb);
    dq_model_free(a);
    dq_model_free(b);
    free(toks);
}

/* Feeding tokens one at a time through the KV cache gives the batch's logits. */
static void test_kv_cache_matches_batch(void **st) {
    (void)st;
    int n;
    int32_t *toks = tu_read_tokens(tu_fixture("logits/gut6l.tokens"), &n);
    n = 24;
    dq_model *m = tu_model(tu_shared("models/gut6l/gut6l.bin"));
    dq_session *batch, *inc;
    const float *lb = run(m, &batch, toks, n);
    dq_error err = {0};
    assert_int_equal(dq_session_new(m, n, 8, 1, &inc, &err), DQ_OK);
    /* mixed chunk sizes: 5 tokens, then 1 at a time, then 8 */
    int chunks[] = {5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 8}, pos = 0;
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        const float *li;
        assert_int_equal(dq_forward(inc, toks + pos, chunks[c], pos, true, &li, &err), DQ_OK);
        assert_close_rows(li, lb + (size_t)pos * 4096, chunks[c], 4096, 1e-5, "incremental");
        pos += chunks[c];
    }
    assert_int_equal(pos, n);
    dq_session_free(batch);
    dq_session_free(inc);
    dq_model_free(m);
    free(toks);
}

/* The same input gives bit-identical logits with 1 and 2 threads. */
static void test_thread_count_invariant(void **st) {
    (void)st;
    int n;
    int32_t *toks = tu_read_tokens(tu_fixture("logits/gut6l.tokens"), &n);
    dq_model *m = tu_model(tu_shared("models/gut6l/gut6l.bin"));
    dq_session *s1, *s2;
    dq_error err = {0};
    const float *l1, *l2;
    assert_int_equal(dq_session_new(m, n, n, 1, &s1, &err), DQ_OK);
    assert_int_equal(dq_session_new(m, n, n, 2, &s2, &err), DQ_OK);
    assert_int_equal(dq_forward(s1, toks, n, 0, true, &l1, &err), DQ_OK);
    assert_int_equal(dq_forward(s2, toks, n, 0, true, &l2, &err), DQ_OK);
    assert_memory_equal(l1, l2, (size_t)n * 4096 * sizeof(float));
    dq_session_free(s1);
    dq_session_free(s2);
    dq_model_free(m);
    free(toks);
}

/* llama2.c's run.c output for stories260K at temperature 0, byte for byte. */
static void test_greedy_matches_llama2c(void **st) {
    (void)st;
    dq_model *m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    dq_tokenizer *t = tu_tokenizer(tu_shared("models/stories260K/tok512.bin"));
    dq_session *s;
    dq_error err = {0};
    assert_int_equal(dq_session_new(m, 201, 1, 2, &s, &err), DQ_OK);
    char *out = calloc(1, 1 << 16), piece[256];
    size_t len = 0, plen;
    int32_t tok = 1;
    for (int pos = 0; pos < 200; pos++) {
        const float *lg;
        assert_int_equal(dq_forward(s, &tok, 1, pos, false, &lg, &err), DQ_OK);
        int next = 0;
        for (int i = 1; i < 512; i++)
            if (lg[i] > lg[next]) next = i;
        if (next == 1) break;
        assert_int_equal(dq_token_piece(t, tok, next, piece, sizeof piece, &plen), DQ_OK);
        memcpy(out + len, piece, plen);
        len += plen;
        tok = next;
    }
    size_t want_len;
    char *want = tu_read(tu_shared("models/stories260K/expected_greedy_t0_n200.txt"), &want_len);
    assert_int_equal(len, want_len);
    assert_memory_equal(out, want, len);
    free(want);
    free(out);
    dq_session_free(s);
    dq_tokenizer_free(t);
    dq_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_matches_llama2c),
        cmocka_unit_test(test_llamacpp_stories260k),
        cmocka_unit_test(test_llamacpp_gut6l),
        cmocka_unit_test(test_numpy_qwen2),
        cmocka_unit_test(test_numpy_llama3_sharded),
        cmocka_unit_test(test_hf_matches_llama2c),
        cmocka_unit_test(test_kv_cache_matches_batch),
        cmocka_unit_test(test_thread_count_invariant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
