#include "tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util/error.h"
#include "util/mapped_file.h"

/* Pre-tokenizer patterns as published with each tokenizer. */
const char *const DQ_REGEX_GPT2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char *const DQ_REGEX_LLAMA3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const DQ_REGEX_DIGIT = "\\p{N}";
const char *const DQ_REGEX_QWEN2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

bool dq_id_push(dq_id_buf *b, int32_t id) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        int32_t *p = realloc(b->ids, cap * sizeof *p);
        if (!p) return false;
        b->ids = p;
        b->cap = cap;
    }
    b->ids[b->n++] = id;
    return true;
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the other 68
 * bytes to U+0100.. in order. */
static uint32_t byte_codepoint(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    uint32_t n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) n++;
    return 256 + n;
}

int dq_byte_to_unicode(uint8_t b, char out[4]) {
    return (int)utf8proc_encode_char((utf8proc_int32_t)byte_codepoint(b), (utf8proc_uint8_t *)out);
}

int dq_unicode_to_byte(uint32_t cp) {
    if (cp < 256) return byte_codepoint((uint8_t)cp) == cp ? (int)cp : -1;
    for (int b = 0; b < 256; b++)
        if (byte_codepoint((uint8_t)b) == cp) return b;
    return -1;
}

dq_status dq_tok_alloc(dq_tokenizer *t, int n, dq_error *err) {
    if (n <= 0 || n > (1 << 22))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: implausible vocabulary size %d", t->path, n);
    t->n_vocab = n;
    t->pieces = calloc((size_t)n, sizeof *t->pieces);
    t->piece_len = calloc((size_t)n, sizeof *t->piece_len);
    t->scores = calloc((size_t)n, sizeof *t->scores);
    t->types = calloc((size_t)n, sizeof *t->types);
    if (!t->pieces || !t->piece_len || !t->scores || !t->types)
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory for %d pieces", t->path, n);
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    t->bos = t->eos = t->unk = -1;
    t->space = " ";
    return DQ_OK;
}

static int cmp_added_len(const void *a, const void *b) {
    const dq_added_token *x = a, *y = b;
    return (int)y->len - (int)x->len; /* longest first: leftmost-longest matching */
}

dq_status dq_tok_finish(dq_tokenizer *t, dq_error *err) {
    if (!dq_str_map_init(&t->lookup, (size_t)t->n_vocab))
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", t->path);
    for (int i = 0; i < t->n_vocab; i++) {
        if (!t->pieces[i])
            return dq_fail(err, DQ_ERR_FORMAT, "%s: vocabulary has no piece for id %d", t->path, i);
        if (t->types[i] == 0) t->types[i] = DQ_PIECE_NORMAL;
        unsigned v;
        if (t->piece_len[i] == 6 && sscanf(t->pieces[i], "<0x%2X>", &v) == 1 && v < 256 &&
            t->byte_id[v] < 0) {
            t->byte_id[v] = i;
            if (t->types[i] == DQ_PIECE_NORMAL && t->byte_fallback) t->types[i] = DQ_PIECE_BYTE;
        }
        if (t->types[i] == DQ_PIECE_BYTE || t->types[i] == DQ_PIECE_CONTROL) continue;
        if (!dq_str_map_put(&t->lookup, t->pieces[i], t->piece_len[i], i))
            return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", t->path);
    }
    if (t->n_added) qsort(t->added, t->n_added, sizeof *t->added, cmp_added_len);
    return DQ_OK;
}

dq_status dq_tok_add_regex(dq_tokenizer *t, const char *pattern, dq_error *err) {
    if (t->n_split == DQ_MAX_SPLITS)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer splits", t->path, DQ_MAX_SPLITS);
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &off,
                                   NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: pre-tokenizer regex at offset %zu: %s", t->path,
                       (size_t)off, (const char *)msg);
    }
    size_t len = strlen(pattern) + 1;
    char *src = malloc(len);
    if (src) memcpy(src, pattern, len);
    if (!src) {
        pcre2_code_free(re);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", t->path);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD); /* optional speed-up; partial: stream.c */
    t->split_re[t->n_split] = re;
    t->split_src[t->n_split++] = src;
    return DQ_OK;
}

/* llama.cpp's pre-tokenizer types (tokenizer.ggml.pre) that we implement:
 * the regexes its llama_vocab applies in turn (llama-vocab.cpp, regex_exprs),
 * written as the HF tokenizer.json of the same models splits (GPT-2's regex
 * with its final \s+ alternative, as HF's ByteLevel has it). The first name
 * of a sequence is the one GGUF export writes. */
static const struct {
    const char *name;
    const char *const *regex[DQ_MAX_SPLITS];
    bool ignore_merges; /* Llama-3: a word found whole in the vocabulary is one token */
} PRE_TYPES[] = {
    {"llama-bpe", {&DQ_REGEX_LLAMA3}, true},
    {"llama3", {&DQ_REGEX_LLAMA3}, true},
    {"qwen2", {&DQ_REGEX_QWEN2}, false},
    {"smollm", {&DQ_REGEX_DIGIT, &DQ_REGEX_GPT2}, false}, /* SmolLM/SmolLM2: digits one by one */
    {"gpt-2", {&DQ_REGEX_GPT2}, false},
    {"default", {&DQ_REGEX_GPT2}, false},
    {"gpt2", {&DQ_REGEX_GPT2}, false},
};

dq_status dq_tok_set_pre_type(dq_tokenizer *t, const char *name, size_t len, dq_error *err) {
    for (size_t i = 0; i < sizeof PRE_TYPES / sizeof *PRE_TYPES; i++) {
        if (strlen(PRE_TYPES[i].name) != len || memcmp(PRE_TYPES[i].name, name, len)) continue;
        dq_status st = DQ_OK;
        for (int k = 0; k < DQ_MAX_SPLITS && PRE_TYPES[i].regex[k] && !st; k++)
            st = dq_tok_add_regex(t, *PRE_TYPES[i].regex[k], err);
        t->ignore_merges = PRE_TYPES[i].ignore_merges;
        return st;
    }
    return dq_fail(err, DQ_ERR_UNSUPPORTED,
                   "%s: pre-tokenizer \"%.*s\" is not supported (llama-bpe, qwen2, smollm, gpt-2)", t->path, (int)len,
                   name);
}

const char *dq_tok_pre_name(const dq_tokenizer *t) {
    for (size_t i = 0; i < sizeof PRE_TYPES / sizeof *PRE_TYPES; i++) {
        int k = 0;
        while (k < t->n_split && PRE_TYPES[i].regex[k] && !strcmp(t->split_src[k], *PRE_TYPES[i].regex[k])) k++;
        if (k == t->n_split && (k == DQ_MAX_SPLITS || !PRE_TYPES[i].regex[k]) && k > 0) return PRE_TYPES[i].name;
    }
    return NULL;
}

int32_t *dq_tok_ranked_merges(const dq_tokenizer *t, size_t *n) {
    const dq_pair_map *pm = &t->merges;
    int32_t *pairs = malloc((pm->count ? pm->count : 1) * 2 * sizeof *pairs);
    if (!pairs) return NULL;
    for (size_t i = 0; i < pm->count; i++) pairs[2 * i] = -1;
    *n = pm->count;
    for (size_t s = 0; s < pm->cap; s++) {
        const dq_pair_slot *sl = &pm->slots[s];
        if (!sl->key || sl->rank < 0 || (size_t)sl->rank >= pm->count) continue;
        pairs[2 * sl->rank] = (int32_t)(sl->key >> 32) - 1;
        pairs[2 * sl->rank + 1] = (int32_t)(sl->key & 0xffffffffu) - 1;
    }
    return pairs;
}

struct dq_chunk {
    struct dq_chunk *next;
    size_t used, cap;
    char data[];
};

char *dq_tok_strdup(dq_tokenizer *t, const char *s, size_t n) {
    struct dq_chunk *c = t->storage;
    if (!c || c->cap - c->used < n + 1) {
        size_t cap = n + 1 > (1u << 20) ? n + 1 : (1u << 20);
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = t->storage;
        c->used = 0;
        c->cap = cap;
        t->storage = c;
    }
    char *p = c->data + c->used;
    memcpy(p, s, n);
    p[n] = '\0';
    c->used += n + 1;
    return p;
}

dq_status dq_tok_set_piece(dq_tokenizer *t, int64_t id, const char *s, size_t n, dq_error *err) {
    if (id < 0 || id >= t->n_vocab)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: token id %lld out of range [0, %d)", t->path,
                       (long long)id, t->n_vocab);
    if (n > 65536) return dq_fail(err, DQ_ERR_FORMAT, "%s: token %lld is %zu bytes long", t->path, (long long)id, n);
    if (t->pieces[id]) return DQ_OK; /* first definition wins (added tokens repeat vocab) */
    char *p = dq_tok_strdup(t, s, n);
    if (!p) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", t->path);
    t->pieces[id] = p;
    t->piece_len[id] = (uint32_t)n;
    return DQ_OK;
}

dq_status dq_tok_add_token(dq_tokenizer *t, int64_t id, const char *s, size_t n, bool special,
                           dq_error *err) {
    if (n == 0) return dq_fail(err, DQ_ERR_FORMAT, "%s: empty added token %lld", t->path, (long long)id);
    dq_status st = dq_tok_set_piece(t, id, s, n, err);
    if (st) return st;
    dq_added_token *a = realloc(t->added, (t->n_added + 1) * sizeof *a);
    if (!a) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", t->path);
    t->added = a;
    a[t->n_added++] = (dq_added_token){t->pieces[id], t->piece_len[id], (int32_t)id, special};
    t->types[id] = special ? DQ_PIECE_CONTROL : DQ_PIECE_USER;
    return DQ_OK;
}

void dq_tokenizer_free(dq_tokenizer *t) {
    if (!t) return;
    while (t->storage) {
        struct dq_chunk *next = t->storage->next;
        free(t->storage);
        t->storage = next;
    }
    free(t->pieces);
    free(t->piece_len);
    free(t->scores);
    free(t->types);
    free(t->added);
    dq_str_map_free(&t->lookup);
    dq_pair_map_free(&t->merges);
    for (int k = 0; k < t->n_split; k++) {
        pcre2_code_free(t->split_re[k]);
        free(t->split_src[k]);
    }
    free(t);
}

int dq_tokenizer_vocab_size(const dq_tokenizer *t) { return t->n_vocab; }
int dq_tokenizer_bos(const dq_tokenizer *t) { return t->bos; }
int dq_tokenizer_eos(const dq_tokenizer *t) { return t->eos; }
bool dq_tokenizer_adds_bos(const dq_tokenizer *t) { return t->add_bos && t->bos >= 0; }
const char *dq_tokenizer_chat_template(const dq_tokenizer *t) { return t->chat_template; }

int dq_tokenizer_find(const dq_tokenizer *t, const char *s, size_t len) {
    for (int i = 0; i < t->n_vocab; i++)
        if (t->piece_len[i] == len && !memcmp(t->pieces[i], s, len)) return i;
    return -1;
}
