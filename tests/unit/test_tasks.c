/* Zero-shot tasks: the exact strings lm-evaluation-harness scores for
 * hand-worked items of every task, its tokenization and metrics, bad task
 * lines, and log-likelihoods checked against a plain forward pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/zeroshot.h"
#include "testutil.h"

#define assert_near(a, b, tol) assert_true(fabs((double)(a) - (double)(b)) <= (tol))

static dq_task_item parse(dq_task_id id, const char *line) {
    dq_task_item it;
    dq_error err = {0};
    dq_status st = dq_task_parse_json(id, line, strlen(line), &it, &err);
    if (st) fail_msg("%s", err.msg);
    return it;
}

static void expect_choice(const dq_task_item *it, int i, const char *ctx, const char *cont, size_t norm) {
    assert_string_equal(it->choices[i].context, ctx);
    assert_string_equal(it->choices[i].continuation, cont);
    assert_int_equal(it->choices[i].norm_chars, norm);
}

static void test_piqa_and_arc_prompts(void **st) {
    (void)st;
    dq_task_item it = parse(DQ_TASK_PIQA, "{\"choices\": [\"Use a fork.\", \"Use a sponge.\"], \"gold\": 1, "
                                          "\"query\": \"Question: How do I clean a pan?\\n\"}");
    assert_int_equal(it.n_choices, 2);
    assert_int_equal(it.gold, 1);
    expect_choice(&it, 0, "Question: How do I clean a pan?\nAnswer:", " Use a fork.", 11);
    expect_choice(&it, 1, "Question: How do I clean a pan?\nAnswer:", " Use a sponge.", 13);
    dq_task_item_free(&it);
    it = parse(DQ_TASK_ARC_EASY, "{\"choices\": [\"a\", \"bb\", \"ccc\", \"dddd\"], \"query\": \"Question: Which?\", \"gold\": 3}");
    assert_int_equal(it.n_choices, 4);
    expect_choice(&it, 3, "Question: Which?\nAnswer:", " dddd", 4);
    dq_task_item_free(&it);
}

static void test_boolq_prompt(void **st) {
    (void)st;
    dq_task_item it = parse(DQ_TASK_BOOLQ, "{\"query\": \"Passage: Water is wet.\\nQuestion: is water wet?\", "
                                           "\"choices\": [\"no\", \"yes\"], \"gold\": 1}");
    expect_choice(&it, 0, "Water is wet.\nQuestion: is water wet?\nAnswer:", " no", 2);
    expect_choice(&it, 1, "Water is wet.\nQuestion: is water wet?\nAnswer:", " yes", 3);
    assert_int_equal(it.gold, 1);
    dq_task_item_free(&it);
}

static void test_winogrande_partial_scoring(void **st) {
    (void)st;
    dq_task_item it = parse(DQ_TASK_WINOGRANDE,
                            "{\"context_options\": [\"Sarah was a better surgeon than Maria so Sarah\", "
                            "\"Sarah was a better surgeon than Maria so Maria\"], "
                            "\"continuation\": \"always got the easier cases.\", \"gold\": 1}");
    /* each option fills the blank; the same words after it are scored */
    expect_choice(&it, 0, "Sarah was a better surgeon than Maria so Sarah", " always got the easier cases.", 46);
    expect_choice(&it, 1, "Sarah was a better surgeon than Maria so Maria", " always got the easier cases.", 46);
    dq_task_item_free(&it);
}

static void test_lambada_last_word(void **st) {
    (void)st;
    dq_task_item it = parse(DQ_TASK_LAMBADA, "{\"context\": \"I don't care about\", \"continuation\": \"signs\"}");
    assert_int_equal(it.n_choices, 1);
    expect_choice(&it, 0, "I don't care about", " signs", 5);
    dq_task_item_free(&it);
}

static void test_hellaswag_preprocessing(void **st) {
    (void)st;
    char *s = dq_hellaswag_preprocess(" A man [title] is here.  Two  spaces [step] end [open ");
    assert_string_equal(s, "A man. is here. Two spaces end [open"); /* Python's replace/re.sub, checked by hand */
    free(s);
    s = dq_hellaswag_preprocess("Roof: a   b");
    assert_string_equal(s, "Roof: a  b"); /* one non-overlapping pass, as str.replace */
    free(s);
    const char *lines[6] = {"Roof shingle removal: A man is sitting on a roof. he", "3",
                            "is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
                            "is holding a rubik's cube.", "starts pulling up [title] roofing on a roof."};
    dq_task_item it;
    dq_error err = {0};
    assert_int_equal(dq_task_parse_hellaswag(lines, &it, &err), DQ_OK);
    assert_int_equal(it.gold, 3);
    expect_choice(&it, 0, "Roof shingle removal: A man is sitting on a roof. he", " is using wrap to wrap a pair of skis.", 37);
    expect_choice(&it, 3, "Roof shingle removal: A man is sitting on a roof. he", " starts pulling up. roofing on a roof.", 37);
    dq_task_item_free(&it);
    lines[1] = "7";
    assert_int_equal(dq_task_parse_hellaswag(lines, &it, &err), DQ_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "label"));
}

static void expect_bad(dq_task_id id, const char *line, const char *why) {
    dq_task_item it;
    dq_error err = {0};
    assert_int_equal(dq_task_parse_json(id, line, strlen(line), &it, &err), DQ_ERR_FORMAT);
    if (!strstr(err.msg, why)) fail_msg("'%s' does not mention '%s'", err.msg, why);
}

static void test_malformed_lines(void **st) {
    (void)st;
    expect_bad(DQ_TASK_PIQA, "{\"choices\": [\"a\", \"b\"], \"gold\": 0", "not a JSON object");
    expect_bad(DQ_TASK_PIQA, "{\"choices\": [\"a\", \"b\"], \"gold\": 0}", "query");
    expect_bad(DQ_TASK_PIQA, "{\"query\": \"Q\", \"choices\": [\"a\", \"\"], \"gold\": 0}", "choices[1] is empty");
    expect_bad(DQ_TASK_PIQA, "{\"query\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 2}", "gold 2");
    expect_bad(DQ_TASK_PIQA, "{\"query\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 0.5}", "gold 0.5");
    expect_bad(DQ_TASK_PIQA, "{\"query\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": 1e300}", "gold 1e+300"); /* found by fuzzing */
    expect_bad(DQ_TASK_PIQA, "{\"query\": \"Q\", \"choices\": [\"a\", \"b\"], \"gold\": -1}", "gold -1");
    expect_bad(DQ_TASK_ARC_EASY, "{\"query\": \"Q\", \"choices\": [], \"gold\": 0}", "0 entries");
    expect_bad(DQ_TASK_ARC_EASY, "{\"query\": \"Q\", \"choices\": [1, 2], \"gold\": 0}", "not a string");
    expect_bad(DQ_TASK_BOOLQ, "{\"query\": \"Q\", \"choices\": [\"yes\", \"no\"], \"gold\": 0}", "[\"no\", \"yes\"]");
    expect_bad(DQ_TASK_WINOGRANDE, "{\"context_options\": [\"a\", \"b\"], \"gold\": 0}", "continuation");
    expect_bad(DQ_TASK_LAMBADA, "{\"context\": \"x\", \"continuation\": \"\"}", "continuation");
    expect_bad(DQ_TASK_LAMBADA, "[1, 2]", "not a JSON object");
}

static void test_load_skips_bad_lines(void **st) {
    (void)st;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/data", tu_tmpdir());
    char cmd[2100];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/llm-foundry-icl", dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
    const char *text = "{\"query\": \"Question: A?\", \"choices\": [\"x\", \"y\"], \"gold\": 0}\n"
                       "{\"query\": \"Question: B?\", \"choices\": [\"x\"], \"gold\": 3}\n"
                       "\n"
                       "not json\r\n"
                       "{\"query\": \"Question: C?\", \"choices\": [\"x\", \"y\"], \"gold\": 1}";
    snprintf(cmd, sizeof cmd, "%s/llm-foundry-icl/arc_easy.jsonl", dir);
    tu_write(cmd, text, strlen(text));
    dq_task_set set;
    dq_error err = {0};
    assert_int_equal(dq_task_load(DQ_TASK_ARC_EASY, dir, 0, &set, &err), DQ_OK);
    assert_int_equal(set.n_items, 2);
    assert_int_equal(set.items[1].line, 5);
    assert_int_equal(set.n_skipped, 2);
    assert_int_equal(set.n_warnings, 2);
    assert_non_null(strstr(set.warnings[0], "arc_easy.jsonl:2: gold 3"));
    assert_non_null(strstr(set.warnings[1], "arc_easy.jsonl:4: not a JSON object"));
    dq_task_set_free(&set);
    assert_int_equal(dq_task_load(DQ_TASK_ARC_EASY, dir, 1, &set, &err), DQ_OK); /* --limit */
    assert_int_equal(set.n_items, 1);
    dq_task_set_free(&set);
    assert_int_equal(dq_task_load(DQ_TASK_PIQA, dir, 0, &set, &err), DQ_ERR_IO);
    assert_non_null(strstr(err.msg, "piqa.jsonl"));
    dq_task_id id;
    assert_false(dq_task_lookup("mmlu", &id));
    assert_true(dq_task_lookup("lambada_openai", &id) && id == DQ_TASK_LAMBADA);
}

static void test_hellaswag_file_from_bz2(void **st) {
    (void)st;
    dq_task_set set;
    dq_error err = {0};
    assert_int_equal(dq_task_load(DQ_TASK_HELLASWAG, tu_shared("data"), 3, &set, &err), DQ_OK);
    assert_int_equal(set.n_items, 3);
    assert_int_equal(set.n_skipped, 0);
    assert_int_equal(set.items[1].line, 7);
    assert_string_equal(set.items[0].choices[3].continuation, " starts pulling up roofing on a roof.");
    dq_task_set_free(&set);
}

static void test_metrics(void **st) {
    (void)st;
    dq_task_item it = parse(DQ_TASK_ARC_EASY, "{\"query\": \"Q\", \"choices\": [\"12345\", \"12345678901234567890\"], \"gold\": 1}");
    dq_choice_score s[2] = {{-10, false, 3}, {-11, false, 6}};
    int pred, pred_norm;
    dq_mc_predict(s, &it, &pred, &pred_norm);
    assert_int_equal(pred, 0);      /* -10 > -11 */
    assert_int_equal(pred_norm, 1); /* -10/5 = -2 < -11/20 = -0.55 */
    s[1].loglik = -10;              /* ties go to the first, as numpy.argmax */
    dq_mc_predict(s, &it, &pred, &pred_norm);
    assert_int_equal(pred, 0);
    dq_task_item_free(&it);
    /* acc_norm divides by characters, as the harness's len(choice), not UTF-8 bytes:
     * "caf\u00e9 \u00e0 la cr\u00e8me" is 15 characters in 18 bytes, "coffee cream" 12 */
    it = parse(DQ_TASK_PIQA, "{\"query\": \"Question: Q\\n\", \"choices\": [\"coffee cream\", "
                             "\"caf\u00e9 \u00e0 la cr\u00e8me\"], \"gold\": 1}");
    expect_choice(&it, 1, "Question: Q\nAnswer:", " caf\xc3\xa9 \xc3\xa0 la cr\xc3\xa8me", 15);
    s[0].loglik = -6.2, s[1].loglik = -8.5; /* per character -0.517 > -0.567; per byte -0.517 < -0.472 */
    dq_mc_predict(s, &it, &pred, &pred_norm);
    assert_int_equal(pred, 0);
    assert_int_equal(pred_norm, 0);
    dq_task_item_free(&it);
    assert_int_equal(dq_utf8_chars("\xe4\xb8\xad\xf0\x9f\x99\x82" "a"), 3); /* 3- and 4-byte sequences */
    double m, e;
    dq_mean_stderr(3, 4, &m, &e);
    assert_near(m, 0.75, 1e-12);
    assert_near(e, sqrt(0.75 * 0.25 / 3), 1e-12); /* sample stddev / sqrt(n) */
}

/* ---- with a real model ------------------------------------------------------ */

typedef struct {
    dq_model *m;
    dq_tokenizer *t;
    dq_scorer sc;
} fixture;

static int setup(void **st) {
    fixture *f = calloc(1, sizeof *f);
    f->m = tu_model(tu_shared("models/stories260K/stories260K.bin"));
    f->t = tu_tokenizer(tu_shared("models/stories260K/tok512.bin"));
    dq_error err = {0};
    if (dq_scorer_init(&f->sc, f->m, f->t, true, 1, &err)) return -1;
    *st = f;
    return 0;
}

static int teardown(void **st) {
    fixture *f = *st;
    dq_scorer_free(&f->sc);
    dq_tokenizer_free(f->t);
    dq_model_free(f->m);
    free(f);
    return 0;
}

static void test_encode_pair(void **st) {
    fixture *f = *st;
    int32_t *c1, *k1, *c2, *k2, *whole;
    size_t nc1, nk1, nc2, nk2, nw;
    dq_error err = {0};
    /* trailing space moves from the context to the continuation */
    assert_int_equal(dq_scorer_encode(&f->sc, "Once upon a time ", "there was", &c1, &nc1, &k1, &nk1, &err), DQ_OK);
    assert_int_equal(dq_scorer_encode(&f->sc, "Once upon a time", " there was", &c2, &nc2, &k2, &nk2, &err), DQ_OK);
    assert_int_equal(nc1, nc2);
    assert_int_equal(nk1, nk2);
    assert_memory_equal(c1, c2, nc1 * sizeof *c1);
    assert_memory_equal(k1, k2, nk1 * sizeof *k1);
    /* BOS, then tok(ctx); the continuation is the rest of tok(ctx + cont) */
    assert_int_equal(c1[0], dq_tokenizer_bos(f->t));
    assert_int_equal(dq_tokenize(f->t, "Once upon a time there was", 26, false, false, &whole, &nw, &err), DQ_OK);
    assert_int_equal(nw, nc1 - 1 + nk1);
    assert_memory_equal(whole + nc1 - 1, k1, nk1 * sizeof *k1);
    free(c1), free(k1), free(c2), free(k2), free(whole);
}

/* Sum of log p(continuation) from one uncached forward over the whole sequence. */
static double reference_loglik(fixture *f, const char *ctx, const char *cont, bool *greedy) {
    int32_t *c, *k;
    size_t nc, nk;
    dq_error err = {0};
    assert_int_equal(dq_scorer_encode(&f->sc, ctx, cont, &c, &nc, &k, &nk, &err), DQ_OK);
    int32_t seq[512];
    memcpy(seq, c, nc * sizeof *c);
    memcpy(seq + nc, k, nk * sizeof *k);
    dq_session *s;
    const float *logits;
    assert_int_equal(dq_session_new(f->m, 512, 512, 1, &s, &err), DQ_OK);
    assert_int_equal(dq_forward(s, seq, (int)(nc + nk - 1), 0, true, &logits, &err), DQ_OK);
    int nv = dq_model_config(f->m)->vocab_size;
    double ll = 0;
    *greedy = true;
    for (size_t i = nc - 1; i < nc + nk - 1; i++) {
        const float *row = logits + i * (size_t)nv;
        double mx = row[0], sum = 0;
        int arg = 0;
        for (int v = 1; v < nv; v++)
            if (row[v] > mx) mx = row[v], arg = v;
        for (int v = 0; v < nv; v++) sum += exp(row[v] - mx);
        ll += row[seq[i + 1]] - mx - log(sum);
        *greedy &= arg == seq[i + 1];
    }
    dq_session_free(s);
    free(c), free(k);
    return ll;
}

static void test_loglik_matches_plain_forward(void **st) {
    fixture *f = *st;
    const char *ctx = "Once upon a time, there was a little girl named Lily. She loved to";
    const char *conts[] = {" play outside in the park.", " eat", " play outside in the sun."};
    dq_choice_score s[3], again;
    dq_error err = {0};
    for (int i = 0; i < 3; i++) assert_int_equal(dq_score_request(&f->sc, ctx, conts[i], &s[i], &err), DQ_OK);
    for (int i = 0; i < 3; i++) {
        bool greedy;
        double ll = reference_loglik(f, ctx, conts[i], &greedy);
        assert_near(s[i].loglik, ll, 1e-3); /* the reused cache gives the same numbers */
        assert_int_equal(s[i].greedy, greedy);
        assert_true(s[i].loglik < 0);
    }
    assert_int_equal(dq_score_request(&f->sc, ctx, conts[0], &again, &err), DQ_OK);
    assert_near(again.loglik, s[0].loglik, 1e-4);
    assert_true(s[0].loglik > s[1].loglik - 100); /* sane magnitude */
}


static void test_branches_equal_one_by_one(void **st) {
    fixture *f = *st;
    dq_task_item it = parse(DQ_TASK_ARC_EASY, "{\"query\": \"Question: Where did Lily go to play with her ball?\", "
                                              "\"choices\": [\"the park\", \"to the big tree near her house\", \"home\"], \"gold\": 0}");
    dq_choice_score batch[3], one[3];
    dq_error err = {0};
    assert_int_equal(dq_score_choices(&f->sc, &it, batch, &err), DQ_OK); /* one batch of three branches */
    size_t forwarded = f->sc.n_forwarded;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(dq_score_request(&f->sc, it.choices[i].context, it.choices[i].continuation, &one[i], &err), DQ_OK);
        assert_near(batch[i].loglik, one[i].loglik, 1e-3);
        assert_int_equal(batch[i].greedy, one[i].greedy);
        assert_int_equal(batch[i].n_tokens, one[i].n_tokens);
        bool greedy;
        assert_near(batch[i].loglik, reference_loglik(f, it.choices[i].context, it.choices[i].continuation, &greedy), 1e-3);
    }
    assert_true(forwarded > 0);
    assert_int_equal(dq_score_choices(&f->sc, &it, one, &err), DQ_OK); /* again, from a cache holding choice 3 */
    for (int i = 0; i < 3; i++) assert_near(batch[i].loglik, one[i].loglik, 1e-4);
    dq_task_item_free(&it);
    /* WinoGrande: the options share the sentence up to the blank, then branch */
    it = parse(DQ_TASK_WINOGRANDE, "{\"context_options\": [\"Tom gave the ball to Sue because Tom\", "
                                   "\"Tom gave the ball to Sue because Sue\"], \"continuation\": \"wanted to play.\", \"gold\": 1}");
    assert_int_equal(dq_score_choices(&f->sc, &it, batch, &err), DQ_OK);
    for (int i = 0; i < 2; i++) {
        bool greedy;
        assert_near(batch[i].loglik, reference_loglik(f, it.choices[i].context, it.choices[i].continuation, &greedy), 1e-3);
        assert_int_equal(batch[i].greedy, greedy);
    }
    dq_task_item_free(&it);
}

static void test_long_context_truncates_left(void **st) {
    fixture *f = *st;
    char ctx[8192] = "";
    for (int i = 0; i < 200; i++) strcat(ctx, "Tom ran to the park. ");
    dq_choice_score s;
    dq_error err = {0};
    assert_int_equal(dq_score_request(&f->sc, ctx, " He was happy.", &s, &err), DQ_OK);
    assert_true(isfinite(s.loglik) && s.loglik < 0);
    char cont[8192] = "";
    for (int i = 0; i < 200; i++) strcat(cont, " the end");
    assert_int_equal(dq_score_request(&f->sc, "Hi", cont, &s, &err), DQ_ERR_ARG);
    assert_non_null(strstr(err.msg, "continuation"));
}


static void test_cli_reports_and_continues(void **st) {
    (void)st;
    char dir[1024], cmd[4096], path[1200], *out;
    snprintf(dir, sizeof dir, "%s/cli-data", tu_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s/llm-foundry-icl", dir);
    assert_int_equal(tu_run(cmd, NULL), 0);
    const char *text = "{\"query\": \"Question: Where?\", \"choices\": [\"home\", \"park\"], \"gold\": 0}\n"
                       "{\"query\": \"Question: Who?\", \"choices\": [\"Tom\", \"\"], \"gold\": 0}\n";
    snprintf(path, sizeof path, "%s/llm-foundry-icl/arc_easy.jsonl", dir);
    tu_write(path, text, strlen(text));
    snprintf(cmd, sizeof cmd, "%s eval %s --tasks arc_easy,nosuch,piqa --data-dir %s --quiet 2>%s", DQ_CLI,
             tu_shared("models/stories260K/stories260K.bin"), dir, tu_tmp("tasks_err.txt"));
    assert_int_equal(tu_run(cmd, &out), 2); /* something was skipped: not a clean run */
    assert_non_null(strstr(out, "arc_easy       n     1"));
    assert_non_null(strstr(out, "skipped 1"));
    char *err = tu_read(tu_tmp("tasks_err.txt"), NULL);
    assert_non_null(strstr(err, "arc_easy.jsonl:2: choices[1] is empty (item skipped)"));
    assert_non_null(strstr(err, "unknown task 'nosuch'"));
    assert_non_null(strstr(err, "piqa.jsonl: cannot open"));
    assert_non_null(strstr(err, "2 task(s) skipped: nosuch, piqa"));
    free(err);
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_piqa_and_arc_prompts),
        cmocka_unit_test(test_boolq_prompt),
        cmocka_unit_test(test_winogrande_partial_scoring),
        cmocka_unit_test(test_lambada_last_word),
        cmocka_unit_test(test_hellaswag_preprocessing),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_load_skips_bad_lines),
        cmocka_unit_test(test_hellaswag_file_from_bz2),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_cli_reports_and_continues),
        cmocka_unit_test_setup_teardown(test_encode_pair, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loglik_matches_plain_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_branches_equal_one_by_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_context_truncates_left, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
