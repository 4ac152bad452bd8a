#define _POSIX_C_SOURCE 200809L
/* Chat templates: rendering equal to llama.cpp's llm_chat_apply_template
 * (expected strings printed by llama.cpp c392e5094's llama_chat_apply_template,
 * and its own test vectors in fixtures/chat), family detection from real
 * models' Jinja text, where the template is read from, and the errors. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static char *render(const char *tmpl, const dq_chat_msg *m, size_t n, const char **family) {
    char *out;
    dq_error err = {0};
    if (dq_chat_format(tmpl, "test", m, n, true, &out, family, &err)) fail_msg("%s", err.msg);
    return out;
}

static const dq_chat_msg USER_ONLY[] = {{"user", "Hello"}};
static const dq_chat_msg WITH_SYSTEM[] = {{"system", "Be brief."}, {"user", " Hi there "}};

/* ChatML, Llama-3 and Llama-2 with and without a system turn, by family
 * name; every expected string is llama_chat_apply_template's output. */
static void test_render_families(void **st) {
    (void)st;
    static const struct {
        const char *family;
        bool system;
        const char *want;
    } cases[] = {
        {"chatml", false, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"},
        {"chatml", true,
         "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n Hi there <|im_end|>\n<|im_start|>assistant\n"},
        {"llama3", false,
         "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
        {"llama3", true, /* llama3 trims each message */
         "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
         "Hi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
        {"llama2", false, "[INST] Hello [/INST]"},
        {"llama2", true, "[INST] Be brief.\n Hi there  [/INST]"}, /* no <<SYS>>: the system text opens the turn */
        {"llama2-sys", false, "[INST] Hello [/INST]"},
        {"llama2-sys", true, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi there  [/INST]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *family;
        char *out = cases[i].system ? render(cases[i].family, WITH_SYSTEM, 2, &family)
                                    : render(cases[i].family, USER_ONLY, 1, &family);
        if (strcmp(out, cases[i].want))
            fail_msg("%s%s:\n got  \"%s\"\n want \"%s\"", cases[i].family, cases[i].system ? " + system" : "", out,
                     cases[i].want);
        assert_string_equal(family, cases[i].family);
        free(out);
    }
    /* a later turn: Llama-2 closes the assistant's reply with </s> and opens a new [INST] */
    const dq_chat_msg turns[] = {{"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}};
    char *out = render("llama2-sys", turns, 4, NULL);
    assert_string_equal(out, "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST]A1</s>[INST] U2 [/INST]");
    free(out);
    out = render("chatml", turns, 0, NULL); /* no messages: just the assistant's header */
    assert_string_equal(out, "<|im_start|>assistant\n");
    free(out);
    assert_string_equal(dq_chat_end_of_turn("chatml"), "<|im_end|>");
    assert_string_equal(dq_chat_end_of_turn("llama3"), "<|eot_id|>");
    assert_string_equal(dq_chat_end_of_turn("llama2-sys"), "</s>");
    assert_null(dq_chat_end_of_turn("monarch"));
}

/* llama.cpp's own test vectors: real models' templates, detected and rendered. */
static void test_llamacpp_vectors(void **st) {
    (void)st;
    const dq_chat_msg conv[] = {{"system", "You are a helpful assistant"}, {"user", "Hello"},
                                {"assistant", "Hi there"},                 {"user", "Who are you"},
                                {"assistant", "   I am an assistant   "},  {"user", "Another question"}};
    size_t len;
    char *text = tu_read(tu_fixture("chat/llamacpp_templates.jsonl"), &len);
    int rendered = 0, refused = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        cJSON *c = cJSON_Parse(l);
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const char *family = cJSON_GetObjectItem(c, "family")->valuestring;
        const char *tmpl = cJSON_GetObjectItem(c, "template")->valuestring;
        const char *want = cJSON_GetObjectItem(c, "expected")->valuestring;
        const char *got = dq_chat_detect(tmpl);
        if (!got || strcmp(got, family)) fail_msg("%s: detected %s, llama.cpp %s", name, got ? got : "nothing", family);
        char *out;
        const char *fam;
        dq_error err = {0};
        if (dq_chat_end_of_turn(family)) {
            if (dq_chat_format(tmpl, name, conv, 6, true, &out, &fam, &err)) fail_msg("%s", err.msg);
            if (strcmp(out, want)) fail_msg("%s (%s):\n got  \"%s\"\n want \"%s\"", name, family, out, want);
            free(out);
            rendered++;
        } else { /* a family we do not render: refused by its llama.cpp name */
            assert_int_equal(dq_chat_format(tmpl, "MODEL.gguf", conv, 6, true, &out, &fam, &err), DQ_ERR_UNSUPPORTED);
            assert_null(out);
            char want_msg[128];
            snprintf(want_msg, sizeof want_msg, "MODEL.gguf: chat template of llama.cpp's family \"%s\"", family);
            if (strncmp(err.msg, want_msg, strlen(want_msg))) fail_msg("%s: %s", name, err.msg);
            refused++;
        }
        cJSON_Delete(c);
    }
    assert_int_equal(rendered, 15); /* chatml, llama2 x3, gemma, llama3, phi3 x4, mistral x4, phi4 */
    assert_int_equal(refused, 8);
    free(text);
}

static void test_unknown_template(void **st) {
    (void)st;
    char *out = (char *)1;
    dq_error err = {0};
    assert_int_equal(dq_chat_format("{{ weird }}\nsecond line", "/models/x.gguf", USER_ONLY, 1, true, &out, NULL, &err),
                     DQ_ERR_UNSUPPORTED);
    assert_null(out);
    assert_non_null(strstr(err.msg, "/models/x.gguf: chat template not recognised"));
    assert_non_null(strstr(err.msg, "chatml, ")); /* names what we render */
    assert_non_null(strstr(err.msg, "\"{{ weird }} ...\"")); /* and shows the template's start */
    assert_null(dq_chat_detect("{{ weird }}"));
    assert_int_equal(dq_chat_format(NULL, "/models/x.gguf", USER_ONLY, 1, true, &out, NULL, &err), DQ_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "/models/x.gguf: no chat template"));
    const dq_chat_msg bad[] = {{"user", NULL}};
    assert_int_equal(dq_chat_format("chatml", "x", bad, 1, true, &out, NULL, &err), DQ_ERR_ARG);
}

/* SmolLM2's GGUF: ChatML detected from its Jinja text; rendered as llama.cpp
 * does, without the default system turn its Jinja template would add. */
static void test_smollm2_template(void **st) {
    (void)st;
    const char *path = tu_real_model(TU_SMOLLM2);
    if (!path) skip();
    dq_tokenizer *t = tu_tokenizer(path);
    const char *tmpl = dq_tokenizer_chat_template(t);
    assert_non_null(tmpl);
    assert_non_null(strstr(tmpl, "You are a helpful AI assistant named SmolLM, trained by Hugging Face"));
    assert_string_equal(dq_chat_detect(tmpl), "chatml");
    char *out = render(tmpl, USER_ONLY, 1, NULL);
    assert_string_equal(out, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    int32_t *ids;
    size_t n;
    dq_error err = {0};
    assert_int_equal(dq_tokenize(t, out, strlen(out), dq_tokenizer_adds_bos(t), true, &ids, &n, &err), DQ_OK);
    /* <|im_start|> user \n Hello <|im_end|> \n <|im_start|> assistant \n: llama.cpp's ids */
    const int32_t want[] = {1, 4093, 198, 19556, 2, 198, 1, 520, 9531, 198};
    assert_int_equal(n, sizeof want / sizeof *want);
    assert_memory_equal(ids, want, sizeof want);
    assert_int_equal(dq_tokenizer_find(t, "<|im_end|>", 10), 2);
    free(ids);
    free(out);
    dq_tokenizer_free(t);
}

/* Hugging Face folders, whichever tokenizer file is read: tokenizer_config.json's
 * chat_template (a string, or a list with a "default" entry), else
 * chat_template.jinja. */
static void test_hf_template(void **st) {
    (void)st;
    dq_tokenizer *t = tu_tokenizer(tu_shared("models/tokenizers/mistral-7b-instruct-v0.3/tokenizer.json"));
    assert_non_null(dq_tokenizer_chat_template(t));
    assert_string_equal(dq_chat_detect(dq_tokenizer_chat_template(t)), "mistral-v3");
    dq_tokenizer_free(t);
    t = tu_tokenizer(tu_shared("models/tokenizers/mistral-7b-instruct-v0.3/tokenizer.model")); /* sentencepiece */
    assert_string_equal(dq_chat_detect(dq_tokenizer_chat_template(t)), "mistral-v3");
    dq_tokenizer_free(t);
    t = tu_tokenizer(tu_shared("models/tokenizers/qwen2-1.5b-instruct/vocab.json"));
    assert_string_equal(dq_chat_detect(dq_tokenizer_chat_template(t)), "chatml");
    dq_tokenizer_free(t);
    t = tu_tokenizer(tu_shared("models/tokenizers/gpt2/tokenizer.json")); /* has none */
    assert_null(dq_tokenizer_chat_template(t));
    dq_tokenizer_free(t);

    static const struct {
        const char *config, *jinja, *want;
    } cases[] = {
        {"{\"chat_template\": \"{{ '<|im_start|>' }}\"}", NULL, "{{ '<|im_start|>' }}"},
        {"{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", \"template\": \"D\"}]}",
         NULL, "D"},
        {"{}", "{{ jinja file }}", "{{ jinja file }}"},
        {"{\"chat_template\": \"C\"}", "J", "C"}, /* the config wins */
        {"{\"chat_template\": \"{{ weird }}\"}", NULL, "{{ weird }}"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char dir[600], path[700];
        snprintf(dir, sizeof dir, "%s/hf%zu", tu_tmpdir(), i);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        assert_int_equal(symlink(tu_shared("models/tokenizers/gpt2/tokenizer.json"), path), 0);
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        tu_write(path, cases[i].config, strlen(cases[i].config));
        if (cases[i].jinja) {
            snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
            tu_write(path, cases[i].jinja, strlen(cases[i].jinja));
        }
        t = tu_tokenizer(dir);
        assert_string_equal(dq_tokenizer_chat_template(t), cases[i].want);
        if (i == 4) { /* an unknown template: the error names the file it came from */
            char *out;
            dq_error err = {0};
            assert_int_equal(dq_chat_format(dq_tokenizer_chat_template(t), dq_tokenizer_path(t), USER_ONLY, 1, true,
                                            &out, NULL, &err),
                             DQ_ERR_UNSUPPORTED);
            snprintf(path, sizeof path, "%s/tokenizer.json: chat template not recognised", dir);
            assert_non_null(strstr(err.msg, path));
        }
        dq_tokenizer_free(t);
    }
}

/* convert carries the template into the GGUF (tokenizer.chat_template), where
 * llama.cpp and our loader find it. */
static void test_convert_keeps_template(void **st) {
    (void)st;
    char dir[600], path[700], cmd[2048];
    snprintf(dir, sizeof dir, "%s/gut6l-chat", tu_tmpdir());
    assert_int_equal(mkdir(dir, 0700), 0);
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3; i++) {
        char src[600];
        snprintf(src, sizeof src, "models/gut6l-hf/%s", files[i]);
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        assert_int_equal(symlink(tu_shared(src), path), 0);
    }
    const char *cfg = "{\"tokenizer_class\": \"LlamaTokenizer\", \"add_bos_token\": true, \"bos_token\": \"<s>\", "
                      "\"eos_token\": \"</s>\", \"chat_template\": \"{% for m in messages %}[INST] {{ m }}{% endfor %}\"}";
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    tu_write(path, cfg, strlen(cfg));
    snprintf(cmd, sizeof cmd, "%s convert %s -o %s/c.gguf --type F16 >/dev/null 2>&1", DQ_CLI, dir, tu_tmpdir());
    assert_int_equal(tu_run(cmd, NULL), 0);
    snprintf(path, sizeof path, "%s/c.gguf", tu_tmpdir());
    dq_tokenizer *t = tu_tokenizer(path);
    assert_string_equal(dq_tokenizer_chat_template(t), "{% for m in messages %}[INST] {{ m }}{% endfor %}");
    assert_string_equal(dq_chat_detect(dq_tokenizer_chat_template(t)), "llama2");
    dq_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_families), cmocka_unit_test(test_llamacpp_vectors),
        cmocka_unit_test(test_unknown_template), cmocka_unit_test(test_smollm2_template),
        cmocka_unit_test(test_hf_template),      cmocka_unit_test(test_convert_keeps_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
