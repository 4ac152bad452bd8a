/* libFuzzer target for the tokenizer files a user can hand us, loaded by
 * dq_tokenizer_load from a private folder. The first byte picks the format;
 * the rest is up to three files separated by FZ_SEP (see fuzz_util.h):
 *   0  tokenizer.json [, tokenizer_config.json [, chat_template.jinja]]
 *   1  vocab.json, merges.txt [, tokenizer_config.json]
 *   2  tokenizer.bin (llama2.c) [, tokenizer.model beside it]
 *   3  tokenizer.model (sentencepiece protobuf)
 * A tokenizer that loads then encodes and decodes a fixed text (special
 * tokens, bytes, digits, runs of spaces) and prints every piece, so that a
 * loader that accepts inconsistent tables is caught where they are used. */
#include "fuzz_util.h"

#include "dashq.h"

static const char *const FILES[4][3] = {
    {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"},
    {"vocab.json", "merges.txt", "tokenizer_config.json"},
    {"tokenizer.bin", "tokenizer.model", NULL},
    {"tokenizer.model", NULL, NULL},
};

static const char TEXT[] = "Hello  world!\n\t123 4567 <s></s><|endoftext|><|im_end|> caf\xc3\xa9 \xe2\x96\x81x "
                           "\xf0\x9f\x98\x80 don't \xff end  ";

static void use(const dq_tokenizer *t) {
    int32_t *ids = NULL;
    size_t n = 0;
    dq_error err = {0};
    if (dq_tokenize(t, TEXT, sizeof TEXT - 1, true, true, &ids, &n, &err) == DQ_OK) {
        int nv = dq_tokenizer_vocab_size(t);
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= nv) abort(); /* an encoder must only emit ids it has */
        char *text = NULL;
        size_t len;
        if (dq_detokenize(t, ids, n, &text, &len, &err) == DQ_OK) free(text);
    }
    free(ids);
    char buf[256];
    size_t len;
    int nv = dq_tokenizer_vocab_size(t);
    for (int32_t id = 0, prev = dq_tokenizer_bos(t); id < nv && id < 1024; prev = id++)
        dq_token_piece(t, prev, id, buf, sizeof buf, &len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int kind = data[0] % 4;
    const char *dir = fz_dir();
    fz_put_sections(dir, FILES[kind], data + 1, size - 1, 3);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, FILES[kind][0]);
    dq_tokenizer *t = NULL;
    dq_error err = {0};
    dq_status st = dq_tokenizer_load(path, &t, &err);
    fz_say(FILES[kind][0], st, err.msg);
    if (st == DQ_OK) {
        use(t);
        dq_tokenizer_free(t);
    }
    return 0;
}
