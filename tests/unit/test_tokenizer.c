#define _POSIX_C_SOURCE 200809L
/* Tokenizers against independent references: Google's sentencepiece for
 * .model/tokenizer.bin vocabularies and transformers.js for tokenizer.json and
 * vocab.json + merges.txt (fixtures made by tests/tools/make_*_fixtures.*). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
    const char *fixture;   /* tests/fixtures/tokenizer/<fixture>.jsonl */
    const char *tokenizer; /* under shared/ */
} tok_case;

static char **split_lines(char *text, size_t *n) {
    size_t cap = 512;
    char **lines = malloc(cap * sizeof *lines);
    *n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (*n == cap) lines = realloc(lines, (cap *= 2) * sizeof *lines);
        lines[(*n)++] = l;
    }
    return lines;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", label);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Compares one string; returns true when the ids are identical. */
static bool check_one(const dq_tokenizer *t, const char *s, const cJSON *want, size_t line) {
    int32_t *ids;
    size_t n;
    dq_error err = {0};
    if (dq_tokenize(t, s, strlen(s), false, true, &ids, &n, &err)) {
        fprintf(stderr, "  line %zu: error %s\n", line, err.msg);
        return false;
    }
    bool same = (size_t)cJSON_GetArraySize(want) == n;
    for (size_t i = 0; same && i < n; i++) same = cJSON_GetArrayItem(want, (int)i)->valueint == ids[i];
    if (!same) {
        fprintf(stderr, "  line %zu mismatch for %.60s\n", line, s);
        int32_t *w = malloc(((size_t)cJSON_GetArraySize(want) + 1) * sizeof *w);
        for (int i = 0; i < cJSON_GetArraySize(want); i++) w[i] = cJSON_GetArrayItem(want, i)->valueint;
        print_ids("want", w, (size_t)cJSON_GetArraySize(want));
        print_ids("got ", ids, n);
        free(w);
    }
    free(ids);
    return same;
}

static void run_case(void **state) {
    const tok_case *c = *state;
    char name[128];
    snprintf(name, sizeof name, "tokenizer/%s.jsonl", c->fixture);
    char *stext = tu_read(tu_fixture("tokenizer/strings.jsonl"), NULL);
    char *etext = tu_read(tu_fixture(name), NULL);
    size_t ns, ne;
    char **strings = split_lines(stext, &ns), **expect = split_lines(etext, &ne);
    assert_int_equal(ns, ne);
    assert_true(ns >= 300);
    dq_tokenizer *t = tu_tokenizer(tu_shared(c->tokenizer));
    size_t bad = 0;
    for (size_t i = 0; i < ns; i++) {
        cJSON *s = cJSON_Parse(strings[i]), *w = cJSON_Parse(expect[i]);
        assert_true(cJSON_IsString(s) && cJSON_IsArray(w));
        bad += !check_one(t, s->valuestring, w, i + 1);
        cJSON_Delete(s);
        cJSON_Delete(w);
    }
    if (bad) fail_msg("%s with %s: %zu of %zu strings differ", c->tokenizer, c->fixture, bad, ns);
    dq_tokenizer_free(t);
    free(strings);
    free(expect);
    free(stext);
    free(etext);
}

static const tok_case cases[] = {
    {"spm_tok512", "models/stories260K/tok512.bin"},
    {"spm_tok512", "models/stories260K/tok512.model"},
    {"spm_gut6l", "models/gut6l/tokenizer.bin"},
    {"spm_gut6l", "models/gut6l/tokenizer.model"},
    {"hf_gut6l", "models/gut6l-hf/tokenizer.json"},
    {"spm_llama2", "models/llama2c-tokenizer32k/tokenizer.bin"},
    {"spm_llama2", "models/tokenizers/llama2-sentencepiece/tokenizer.model"},
    {"spm_mistral", "models/tokenizers/mistral-7b-instruct-v0.3/tokenizer.model"},
    {"hf_mistral", "models/tokenizers/mistral-7b-instruct-v0.3/tokenizer.json"},
    {"hf_gpt2", "models/tokenizers/gpt2/tokenizer.json"},
    {"hf_gpt2", "models/tokenizers/gpt2/vocab.json"},
    {"hf_qwen2", "models/tokenizers/qwen2-1.5b-instruct/vocab.json"},
};

/* Decoding inverts encoding for text without normalisation effects. */
static void test_roundtrip(void **state) {
    (void)state;
    const char *paths[] = {"models/gut6l/tokenizer.bin", "models/gut6l-hf/tokenizer.json",
                           "models/tokenizers/gpt2/tokenizer.json",
                           "models/tokenizers/qwen2-1.5b-instruct/vocab.json"};
    const char *text = "The Time Traveller (for so it will be convenient to speak of him) 😀 naïve 123";
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        dq_tokenizer *t = tu_tokenizer(tu_shared(paths[i]));
        int32_t *ids;
        size_t n, len;
        char *back;
        dq_error err = {0};
        assert_int_equal(dq_tokenize(t, text, strlen(text), true, false, &ids, &n, &err), DQ_OK);
        assert_int_equal(dq_detokenize(t, ids, n, &back, &len, &err), DQ_OK);
        assert_string_equal(back, text);
        free(back);
        free(ids);
        dq_tokenizer_free(t);
    }
}

/* BOS conventions: Llama-style tokenizers add it, GPT-2/Qwen2 do not. */
static void test_bos(void **state) {
    (void)state;
    dq_tokenizer *t = tu_tokenizer(tu_shared("models/gut6l/tokenizer.bin"));
    assert_true(dq_tokenizer_adds_bos(t));
    assert_int_equal(dq_tokenizer_bos(t), 1);
    assert_int_equal(dq_tokenizer_eos(t), 2);
    dq_tokenizer_free(t);
    t = tu_tokenizer(tu_shared("models/gut6l-hf"));
    assert_true(dq_tokenizer_adds_bos(t));
    assert_int_equal(dq_tokenizer_bos(t), 1);
    dq_tokenizer_free(t);
    t = tu_tokenizer(tu_shared("models/tokenizers/gpt2/tokenizer.json"));
    assert_false(dq_tokenizer_adds_bos(t));
    assert_int_equal(dq_tokenizer_eos(t), 50256);
    dq_tokenizer_free(t);
    t = tu_tokenizer(tu_shared("models/tokenizers/qwen2-1.5b-instruct"));
    assert_false(dq_tokenizer_adds_bos(t));
    assert_int_equal(dq_tokenizer_eos(t), 151645); /* <|im_end|> */
    dq_tokenizer_free(t);
}

/* Special tokens are only recognised in text when asked to. */
static void test_parse_special(void **state) {
    (void)state;
    dq_tokenizer *t = tu_tokenizer(tu_shared("models/tokenizers/qwen2-1.5b-instruct"));
    const char *s = "<|im_start|>user";
    int32_t *ids;
    size_t n;
    dq_error err = {0};
    assert_int_equal(dq_tokenize(t, s, strlen(s), false, true, &ids, &n, &err), DQ_OK);
    assert_int_equal(ids[0], 151644);
    free(ids);
    assert_int_equal(dq_tokenize(t, s, strlen(s), false, false, &ids, &n, &err), DQ_OK);
    assert_true(n > 2);
    assert_int_not_equal(ids[0], 151644);
    free(ids);
    dq_tokenizer_free(t);
}

int main(void) {
    struct CMUnitTest tests[sizeof cases / sizeof cases[0] + 3];
    size_t n = 0;
    static char names[sizeof cases / sizeof cases[0]][160];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++, n++) {
        snprintf(names[i], sizeof names[i], "%s vs %s", cases[i].tokenizer, cases[i].fixture);
        tests[n] = (struct CMUnitTest){names[i], run_case, NULL, NULL, (void *)&cases[i]};
    }
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_roundtrip);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_bos);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_parse_special);
    return _cmocka_run_group_tests("tokenizer", tests, n, NULL, NULL);
}
