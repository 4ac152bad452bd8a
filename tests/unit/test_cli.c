/* The dashq command line as scripts use it: stdout carries only results,
 * errors are one line on stderr with exit status 2. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static int dashq(const char *args, char **out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s 2>%s", DQ_CLI, args, tu_tmp("stderr.txt"));
    return tu_run(cmd, out);
}

static char *last_stderr(void) { return tu_read(tu_tmp("stderr.txt"), NULL); }

static void test_generate_greedy(void **st) {
    (void)st;
    char args[2048], *out;
    snprintf(args, sizeof args, "generate %s -n 200 --temp 0 --quiet", tu_shared("models/stories260K/stories260K.bin"));
    assert_int_equal(dashq(args, &out), 0);
    size_t n;
    char *want = tu_read(tu_shared("models/stories260K/expected_greedy_t0_n200.txt"), &n);
    assert_int_equal(strlen(out), n + 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(out[n], '\n');
    free(want);
    free(out);
}

static void test_generate_sampling(void **st) {
    (void)st;
    char args[2048], *a, *b, *c;
    const char *m = tu_shared("models/gut6l/gut6l.bin");
    snprintf(args, sizeof args, "generate %s --prompt \"The Time Traveller\" -n 40 --temp 0.8 --top-p 0.9 --seed 7", m);
    assert_int_equal(dashq(args, &a), 0);
    assert_int_equal(dashq(args, &b), 0);
    assert_string_equal(a, b); /* same seed, same text */
    assert_true(strncmp(a, "The Time Traveller", 18) == 0);
    snprintf(args, sizeof args, "generate %s --prompt \"The Time Traveller\" -n 40 --temp 0.8 --seed 8", m);
    assert_int_equal(dashq(args, &c), 0);
    assert_string_not_equal(a, c);
    free(a);
    free(b);
    free(c);
}

static void test_eval_output(void **st) {
    (void)st;
    char args[2048], *out;
    snprintf(args, sizeof args, "eval %s --ppl %s --ctx 128 --chunks 4 --quiet", tu_shared("models/gut6l/gut6l.bin"),
             tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt"));
    assert_int_equal(dashq(args, &out), 0);
    char *last = strrchr(out, '\n');
    assert_non_null(last);
    *last = '\0';
    last = strrchr(out, '\n');
    assert_non_null(last);
    double ppl;
    assert_int_equal(sscanf(last + 1, "perplexity: %lf", &ppl), 1);
    assert_true(ppl > 10 && ppl < 1000);
    free(out);
    strcat(args, " --json");
    assert_int_equal(dashq(args, &out), 0);
    assert_true(out[0] == '{');
    assert_non_null(strstr(out, "\"perplexity\": "));
    free(out);
}

static void test_errors(void **st) {
    (void)st;
    const char *cases[][2] = {
        {"frobnicate x", "unknown command"},
        {"eval", "MODEL"},
        {"eval /no/such/model.bin --ppl x", "/no/such/model.bin"},
        {"generate MODEL -n -5", "-n expects"},
        {"generate MODEL --temp abc", "--temp expects"},
        {"eval MODEL", "--ppl"},
        {"convert MODEL -o /tmp/x.gguf --type Q3_K", "takes type F32, F16, BF16 or Q8_0"},
        {"convert MODEL", "-o OUT.gguf"},
        {"convert MODEL -o /no/such/dir/x.gguf", "/no/such/dir/x.gguf"},
        {"convert MODEL -o /tmp/x.gguf --max-shard-size 5GB", "--max-shard-size is for --format hf"},
        {"convert MODEL --format hf -o /tmp/x --max-shard-size 5XB", "--max-shard-size takes a size such as 5GB"},
        {"convert MODEL --format hf -o /tmp/x --max-shard-size 0", "--max-shard-size takes a size"},
        {"convert MODEL --format hf -o /tmp/x --max-shard-size \" -5\"", "--max-shard-size takes a size"},
        {"convert MODEL --format hf -o /tmp/x --max-shard-size 99999999999999999999GB", "--max-shard-size takes"},
        {"generate MODEL --system hi", "--system and --chat-template need --chat"},
        {"generate MODEL --chat --prompt hi", "tok512.bin: no chat template"},
        {"generate MODEL --chat --chat-template nonesuch --prompt hi", "--chat-template: chat template not recognised"},
        {"tokenize MODEL --chat --file x", "--chat takes the user's turn as --text"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1024];
        const char *model = tu_shared("models/stories260K/stories260K.bin");
        const char *at = strstr(cases[i][0], "MODEL");
        if (at) snprintf(args, sizeof args, "%.*s%s%s", (int)(at - cases[i][0]), cases[i][0], model, at + 5);
        else snprintf(args, sizeof args, "%s", cases[i][0]);
        char *out;
        assert_int_equal(dashq(args, &out), 2);
        assert_string_equal(out, ""); /* nothing on stdout */
        char *err = last_stderr();
        if (!strstr(err, "dashq: error:") || !strstr(err, cases[i][1]))
            fail_msg("'%s': stderr \"%s\" lacks \"%s\"", args, err, cases[i][1]);
        assert_int_equal(strchr(err, '\n') - err + 1, (long)strlen(err)); /* one line */
        free(err);
        free(out);
    }
}

static void test_tokenize(void **st) {
    (void)st;
    char args[1024], *out;
    snprintf(args, sizeof args, "tokenize %s --text \"Hello world\"", tu_shared("models/tokenizers/gpt2/tokenizer.json"));
    assert_int_equal(dashq(args, &out), 0);
    assert_string_equal(out, "15496 995\n");
    free(out);
    const char *lines = tu_tmp("strings.jsonl");
    const char *text = "\"Hello world\"\n\"\"\n\" a\"\n";
    tu_write(lines, text, strlen(text));
    snprintf(args, sizeof args, "tokenize %s --jsonl %s", tu_shared("models/tokenizers/gpt2/tokenizer.json"), lines);
    assert_int_equal(dashq(args, &out), 0);
    assert_string_equal(out, "[15496,995]\n[]\n[257]\n");
    free(out);
    tu_write(lines, "\"ok\"\n{}\n", 8); /* 8 bytes: "ok" NL {} NL */
    assert_int_equal(dashq(args, &out), 2);
    char *err = last_stderr();
    assert_non_null(strstr(err, "strings.jsonl:2: not a JSON string"));
    free(err);
    free(out);
}

/* convert writes a GGUF that generate reads back to the same greedy text. */
static void test_convert(void **st) {
    (void)st;
    char args[2048], *out, *ref;
    const char *gguf = tu_tmp("s260k.gguf"), *model = tu_shared("models/stories260K/stories260K.bin");
    snprintf(args, sizeof args, "convert %s -o %s --type F32", model, gguf);
    assert_int_equal(dashq(args, &out), 0);
    assert_non_null(strstr(out, "wrote"));
    free(out);
    snprintf(args, sizeof args, "generate %s -n 100 --temp 0 --quiet", gguf);
    assert_int_equal(dashq(args, &out), 0);
    snprintf(args, sizeof args, "generate %s -n 100 --temp 0 --quiet", model);
    assert_int_equal(dashq(args, &ref), 0);
    assert_string_equal(out, ref);
    free(out);
    /* a Hugging Face folder cut into shards of 100 KB (stories260K: 1 MB in F32) reads back to the same text */
    const char *dir = tu_tmp("s260k-hf");
    snprintf(args, sizeof args, "convert %s --format hf -o %s --max-shard-size 100kb --quiet", model, dir);
    assert_int_equal(dashq(args, &out), 0);
    free(out);
    cJSON *index = tu_read_json(dir, "model.safetensors.index.json");
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(index, "weight_map")) > 10);
    cJSON_Delete(index);
    snprintf(args, sizeof args, "generate %s -n 100 --temp 0 --quiet", dir);
    assert_int_equal(dashq(args, &out), 0);
    assert_string_equal(out, ref);
    free(out), free(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generate_greedy), cmocka_unit_test(test_generate_sampling),
        cmocka_unit_test(test_eval_output),     cmocka_unit_test(test_errors),
        cmocka_unit_test(test_tokenize),        cmocka_unit_test(test_convert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
