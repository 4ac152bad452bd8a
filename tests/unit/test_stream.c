#define _POSIX_C_SOURCE 200809L
/* Streaming tokenization (tokenizer/stream.c) gives dq_tokenize's ids for the
 * whole text, whatever the pieces the text arrives in, for every tokenizer we
 * bundle (and SmolLM2's GGUF when it is cached), on WikiText-2, a Gutenberg
 * book, the tokenizer fixture strings and a text made of the cases that
 * matter at a cut; and it holds little text while doing so. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tokenizer/stream.h"

typedef struct {
    int32_t *ids;
    size_t n, cap;
    size_t stop_at; /* 0: never stop */
} collected;

static bool collect(void *user, const int32_t *ids, size_t n) {
    collected *c = user;
    if (c->n + n > c->cap) {
        while (c->n + n > c->cap) c->cap = c->cap ? 2 * c->cap : 1024;
        c->ids = realloc(c->ids, c->cap * sizeof *c->ids);
    }
    memcpy(c->ids + c->n, ids, n * sizeof *ids);
    c->n += n;
    return !c->stop_at || c->n < c->stop_at;
}

/* Streams text in pieces of `piece` bytes; returns the ids, *held the most
 * text the stream held between pieces. */
static collected stream(const dq_tokenizer *t, const char *text, size_t len, size_t piece, bool bos, bool special,
                        size_t *held) {
    collected c = {0};
    dq_tok_stream *s;
    dq_error err = {0};
    if (dq_tok_stream_new(t, bos, special, collect, &c, &s, &err)) fail_msg("%s", err.msg);
    *held = 0;
    for (size_t at = 0; at < len; at += piece) {
        if (dq_tok_stream_feed(s, text + at, len - at < piece ? len - at : piece, &err)) fail_msg("%s", err.msg);
        if (dq_tok_stream_held(s) > *held) *held = dq_tok_stream_held(s);
    }
    if (dq_tok_stream_finish(s, &err)) fail_msg("%s", err.msg);
    dq_tok_stream_free(s);
    return c;
}

static void expect_same(const dq_tokenizer *t, const char *label, const char *text, size_t len, const size_t *pieces,
                        size_t n_pieces, bool special, size_t max_held) {
    int32_t *want;
    size_t n;
    dq_error err = {0};
    if (dq_tokenize(t, text, len, true, special, &want, &n, &err)) fail_msg("%s: %s", label, err.msg);
    for (size_t i = 0; i < n_pieces; i++) {
        size_t held;
        collected got = stream(t, text, len, pieces[i], true, special, &held);
        size_t k = 0;
        while (k < n && k < got.n && want[k] == got.ids[k]) k++;
        if (k != n || got.n != n)
            fail_msg("%s, %s, pieces of %zu bytes: %zu ids, whole text %zu; first difference at id %zu", label,
                     dq_tokenizer_path(t), pieces[i], got.n, n, k);
        if (max_held && held > max_held)
            fail_msg("%s, %s, pieces of %zu: held %zu bytes (bound %zu)", label, dq_tokenizer_path(t), pieces[i], held,
                     max_held);
        free(got.ids);
    }
    free(want);
}

/* The fixture strings (whitespace runs, digits, contractions, accents, CJK,
 * emoji, special tokens written literally, ...) one per line. */
static char *fixture_text(size_t *len) {
    char *lines = tu_read(tu_fixture("tokenizer/strings.jsonl"), NULL);
    size_t cap = strlen(lines) * 2 + 1, n = 0;
    char *out = malloc(cap);
    for (char *save = NULL, *l = strtok_r(lines, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        cJSON *s = cJSON_Parse(l);
        if (cJSON_IsString(s)) {
            size_t m = strlen(s->valuestring);
            memcpy(out + n, s->valuestring, m);
            n += m;
            out[n++] = '\n';
        }
        cJSON_Delete(s);
    }
    free(lines);
    *len = n;
    return out;
}

/* What a cut could get wrong: space runs before words and at the end, a
 * literal "▁", combining marks after ASCII (NFC), digits, contractions,
 * newlines in runs, CJK and emoji without spaces, characters outside small
 * vocabularies (byte fallback, <unk>). */
static const char EDGE[] = "  Leading spaces and a\u2581literal metaspace.   Three   spaces\t\ttabs\n\n\nnewlines \n \n"
                           "e\xcc\x81t\xc3\xa9 cafe\xcc\x81 A\xcc\x8a (NFC) 1234567890 3.14159 I'm can't 'quoted' "
                           "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c\xf0\x9f\x98\x80\xf0\x9f\x98\x80 "
                           "\xe2\x96\x81\xe2\x96\x81 trailing spaces     ";

static const char *const TOKENIZERS[] = {
    "models/stories260K/tok512.bin",
    "models/stories260K/tok512.model",
    "models/gut6l/tokenizer.bin",
    "models/gut6l/tokenizer.model",
    "models/gut6l-hf/tokenizer.json",
    "models/llama2c-tokenizer32k/tokenizer.bin",
    "models/tokenizers/llama2-sentencepiece/tokenizer.model",
    "models/tokenizers/mistral-7b-instruct-v0.3/tokenizer.model",
    "models/tokenizers/mistral-7b-instruct-v0.3/tokenizer.json",
    "models/tokenizers/gpt2/tokenizer.json",
    "models/tokenizers/gpt2/vocab.json",
    "models/tokenizers/qwen2-1.5b-instruct/vocab.json",
    "models/gguf-vocab-llama-spm/ggml-vocab-llama-spm.gguf",
};

static void check_tokenizer(const dq_tokenizer *t) {
    size_t wlen, blen, flen;
    char *wiki = tu_read(tu_shared("data/wikitext2/wiki.test.raw"), &wlen);
    char *book = tu_read(tu_shared("data/gutenberg/eval/pg35_The_Time_Machine.txt"), &blen);
    char *fix = fixture_text(&flen);
    /* every tokenizer we have cuts prose: the held text stays near a piece */
    size_t bound = dq_tok_stream_cuts(t) ? 4096 : 0;
    const size_t tiny[] = {1, 2, 3, 7}, small[] = {7, 64, 4093}, big[] = {65536};
    expect_same(t, "edge text", EDGE, sizeof EDGE - 1, tiny, 4, false, 0);
    expect_same(t, "fixture strings", fix, flen, tiny + 2, 2, false, 0);
    expect_same(t, "fixture strings, special tokens", fix, flen, small, 2, true, 0);
    expect_same(t, "wiki.test.raw (first 40 kB)", wiki, 40000, tiny, 3, false, bound);
    expect_same(t, "wiki.test.raw (first 150 kB)", wiki, 150000, small, 3, false, bound);
    expect_same(t, "wiki.test.raw", wiki, wlen, big, 1, false, 0);
    expect_same(t, "The Time Machine", book, blen, small, 3, false, bound);
    free(wiki);
    free(book);
    free(fix);
}

static void test_bundled(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof TOKENIZERS / sizeof *TOKENIZERS; i++) {
        dq_tokenizer *t = tu_tokenizer(tu_shared(TOKENIZERS[i]));
        check_tokenizer(t);
        dq_tokenizer_free(t);
    }
}

/* SmolLM2's GGUF: gpt2 byte-level BPE with the smollm pre-tokenizer (digits
 * split one by one, then GPT-2's regex). */
static void test_smollm2(void **state) {
    (void)state;
    const char *path = tu_real_model(TU_SMOLLM2);
    if (!path) skip();
    dq_tokenizer *t;
    dq_error err = {0};
    if (dq_tokenizer_for_model(path, 49152, &t, &err)) fail_msg("%s", err.msg);
    check_tokenizer(t);
    dq_tokenizer_free(t);
}

/* The sink stops the stream: no more ids, feeding is a no-op. */
static void test_stop(void **state) {
    (void)state;
    dq_tokenizer *t = tu_tokenizer(tu_shared("models/gut6l/tokenizer.bin"));
    size_t len;
    char *wiki = tu_read(tu_shared("data/wikitext2/wiki.test.raw"), &len);
    collected c = {.stop_at = 1000};
    dq_tok_stream *s;
    dq_error err = {0};
    assert_int_equal(dq_tok_stream_new(t, true, false, collect, &c, &s, &err), DQ_OK);
    size_t fed = 0;
    while (fed < len && !dq_tok_stream_stopped(s)) {
        assert_int_equal(dq_tok_stream_feed(s, wiki + fed, 512, &err), DQ_OK);
        fed += 512;
    }
    assert_true(dq_tok_stream_stopped(s));
    assert_true(c.n >= 1000 && c.n < 1400);
    assert_true(fed < 8192);
    size_t n = c.n;
    assert_int_equal(dq_tok_stream_feed(s, wiki + fed, 4096, &err), DQ_OK);
    assert_int_equal(dq_tok_stream_finish(s, &err), DQ_OK);
    assert_int_equal(c.n, n);
    dq_tok_stream_free(s);
    free(c.ids);
    free(wiki);
    dq_tokenizer_free(t);
}

/* Invalid UTF-8 is reported at the byte the whole-text check names, wherever
 * the pieces end (here inside the bad sequence). */
static void test_bad_utf8(void **state) {
    (void)state;
    dq_tokenizer *t = tu_tokenizer(tu_shared("models/tokenizers/gpt2/tokenizer.json"));
    const char text[] = "Hello w\xc3\xa9rld, then \xe2\x96 a cut sequence.";
    int32_t *ids;
    size_t n;
    dq_error whole = {0};
    assert_int_equal(dq_tokenize(t, text, sizeof text - 1, false, false, &ids, &n, &whole), DQ_ERR_FORMAT);
    assert_non_null(strstr(whole.msg, "UTF-8 at byte 19"));
    for (size_t piece = 1; piece < 12; piece++) {
        collected c = {0};
        dq_tok_stream *s;
        dq_error err = {0};
        assert_int_equal(dq_tok_stream_new(t, false, false, collect, &c, &s, &err), DQ_OK);
        dq_status st = DQ_OK;
        for (size_t at = 0; !st && at < sizeof text - 1; at += piece)
            st = dq_tok_stream_feed(s, text + at, sizeof text - 1 - at < piece ? sizeof text - 1 - at : piece, &err);
        if (!st) st = dq_tok_stream_finish(s, &err);
        assert_int_equal(st, DQ_ERR_FORMAT);
        assert_string_equal(err.msg, whole.msg);
        dq_tok_stream_free(s);
        free(c.ids);
    }
    dq_tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bundled),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_bad_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
