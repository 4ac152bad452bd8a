/* Any tokenizer dashq reads, as a Hugging Face tokenizer.json (BPE model,
 * normalizer, pre-tokenizer, post-processor, decoder, added tokens) that
 * both our loader (src/tokenizer/load_hf.c) and the HF implementations read
 * to the same ids. */
#include "export/hf_export.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define METASPACE "\xe2\x96\x81" /* "▁" */

/* ---- pieces ------------------------------------------------------------------ */

/* A piece as HF spells it: llama2.c's tokenizer.bin wrote sentencepiece's
 * "▁" as " ", tokenizer.json keeps "▁" (byte pieces "<0x20>" have no space). */
static char *hf_piece(const dq_tokenizer *t, int id) {
    const char *s = t->pieces[id];
    uint32_t n = t->piece_len[id];
    bool respell = !t->byte_level && !strcmp(t->space, " ") && t->types[id] != DQ_PIECE_BYTE;
    if (respell && t->types[id] == DQ_PIECE_CONTROL && n > 2 && s[0] == '\n' && s[n - 1] == '\n')
        s++, n -= 2; /* llama2.c's export wrote <s> as "\n<s>\n" */
    char *o = malloc(3 * (size_t)n + 1), *p = o;
    if (!o) return NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (respell && s[i] == ' ') memcpy(p, METASPACE, 3), p += 3;
        else *p++ = s[i];
    }
    *p = '\0';
    return o;
}

static bool is_added(const dq_tokenizer *t, int id) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return true;
    return false;
}

/* Control and unknown pieces that no loader registered as added tokens
 * (llama2.c's <unk>, <s>, </s>): HF lists them as special added tokens. */
static bool implicit_special(const dq_tokenizer *t, int id) {
    return (t->types[id] == DQ_PIECE_CONTROL || t->types[id] == DQ_PIECE_UNKNOWN) && !is_added(t, id);
}

static cJSON *added_entry(int id, const char *content, bool special) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "id", id);
    cJSON_AddStringToObject(e, "content", content);
    cJSON_AddBoolToObject(e, "single_word", false);
    cJSON_AddBoolToObject(e, "lstrip", false);
    cJSON_AddBoolToObject(e, "rstrip", false);
    cJSON_AddBoolToObject(e, "normalized", false); /* we match them in the raw text */
    cJSON_AddBoolToObject(e, "special", special);
    return e;
}

/* added_tokens, in id order: split out of the text before anything else
 * (longest match first, in our encoder and in HF's). */
static cJSON *added_tokens(const dq_tokenizer *t, char **hf) {
    cJSON *a = cJSON_CreateArray();
    for (int id = 0; id < t->n_vocab; id++) {
        bool special = false, found = false;
        for (size_t i = 0; i < t->n_added && !found; i++)
            if (t->added[i].id == id) found = true, special = t->added[i].special;
        if (implicit_special(t, id)) found = special = true;
        if (found) cJSON_AddItemToArray(a, added_entry(id, hf[id], special));
    }
    return a;
}

/* ---- merges --------------------------------------------------------------------- */

typedef struct {
    const dq_tokenizer *t;
    int32_t *pairs; /* (left, right) per rank */
    size_t n, cap;
} merge_list;

static bool push_merge(merge_list *m, int32_t a, int32_t b) {
    if (m->n == m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 4096;
        int32_t *p = realloc(m->pairs, cap * 2 * sizeof *p);
        if (!p) return false;
        m->pairs = p, m->cap = cap;
    }
    m->pairs[2 * m->n] = a, m->pairs[2 * m->n + 1] = b;
    m->n++;
    return true;
}

typedef struct {
    float score;
    int id;
} scored_piece;

static int by_score_desc(const void *x, const void *y) {
    const scored_piece *a = x, *b = y;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int by_pair_ids(const void *x, const void *y) {
    const int32_t *a = x, *b = y;
    return a[0] != b[0] ? (a[0] > b[0]) - (a[0] < b[0]) : (a[1] > b[1]) - (a[1] < b[1]);
}

/* Every split of piece id into two pieces of the vocabulary, by (left, right) id. */
static bool splits_of(merge_list *m, int id) {
    const dq_tokenizer *t = m->t;
    const char *s = t->pieces[id];
    uint32_t n = t->piece_len[id];
    size_t first = m->n;
    for (uint32_t k = 1; k < n; k++) {
        if (((uint8_t)s[k] & 0xc0) == 0x80) continue; /* inside a UTF-8 character */
        int32_t a = dq_str_map_get(&t->lookup, s, k), b = dq_str_map_get(&t->lookup, s + k, n - k);
        if (a >= 0 && b >= 0 && !push_merge(m, a, b)) return false;
    }
    qsort(m->pairs + 2 * first, m->n - first, 2 * sizeof *m->pairs, by_pair_ids);
    return true;
}

/* Sentencepiece BPE merges the pair whose merged piece scores highest; as
 * ranked merges that is every split of every piece, pieces by falling score
 * (transformers' SentencePieceExtractor builds the same list). Equal scores
 * rank by id where sentencepiece would take the leftmost pair. */
static bool merges_from_scores(merge_list *m) {
    const dq_tokenizer *t = m->t;
    scored_piece *p = malloc((size_t)t->n_vocab * sizeof *p);
    int n = 0;
    if (!p) return false;
    for (int i = 0; i < t->n_vocab; i++)
        if ((t->types[i] == DQ_PIECE_NORMAL || t->types[i] == DQ_PIECE_USER) && t->piece_len[i] > 1)
            p[n++] = (scored_piece){t->scores[i], i};
    qsort(p, (size_t)n, sizeof *p, by_score_desc);
    bool ok = true;
    for (int i = 0; i < n && ok; i++) ok = splits_of(m, p[i].id);
    free(p);
    return ok;
}

/* A merge whose result is not a piece never fires (our BPE needs the merged
 * id) and HF tokenizers refuses to load it: GPT-2's list has one ("ĠCla ude"). */
static bool merged_in_vocab(const dq_tokenizer *t, int32_t a, int32_t b) {
    size_t na = t->piece_len[a], nb = t->piece_len[b];
    char *buf = malloc(na + nb + 1);
    if (!buf) return true;
    memcpy(buf, t->pieces[a], na);
    memcpy(buf + na, t->pieces[b], nb);
    bool yes = dq_str_map_get(&t->lookup, buf, na + nb) >= 0;
    free(buf);
    return yes;
}

static cJSON *merges_json(const dq_tokenizer *t, char **hf, dq_error *err) {
    merge_list m = {.t = t};
    bool ok;
    if (t->mode == DQ_MERGE_BY_RANK) {
        m.pairs = dq_tok_ranked_merges(t, &m.n);
        ok = m.pairs != NULL;
    } else {
        ok = merges_from_scores(&m);
    }
    cJSON *a = ok ? cJSON_CreateArray() : NULL;
    for (size_t r = 0; a && r < m.n; r++) {
        if (m.pairs[2 * r] < 0 || !merged_in_vocab(t, m.pairs[2 * r], m.pairs[2 * r + 1])) continue;
        cJSON *pair = cJSON_CreateArray(); /* ["a", "b"]: pieces may hold spaces */
        cJSON_AddItemToArray(pair, cJSON_CreateString(hf[m.pairs[2 * r]]));
        cJSON_AddItemToArray(pair, cJSON_CreateString(hf[m.pairs[2 * r + 1]]));
        cJSON_AddItemToArray(a, pair);
    }
    free(m.pairs);
    if (!a) dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory building merges", t->path);
    return a;
}

static cJSON *model_json(const dq_tokenizer *t, char **hf, dq_error *err) {
    cJSON *merges = merges_json(t, hf, err);
    if (!merges) return NULL;
    cJSON *m = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    if (t->unk >= 0) cJSON_AddStringToObject(m, "unk_token", hf[t->unk]);
    else cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", t->fuse_unk);
    cJSON_AddBoolToObject(m, "byte_fallback", t->byte_fallback);
    cJSON_AddBoolToObject(m, "ignore_merges", t->ignore_merges);
    for (int i = 0; i < t->n_vocab; i++) cJSON_AddNumberToObject(vocab, hf[i], i);
    cJSON_AddItemToObject(m, "vocab", vocab);
    cJSON_AddItemToObject(m, "merges", merges);
    return m;
}

/* ---- normalizer, pre-tokenizer, post-processor, decoder ---------------------------------- */

static cJSON *typed(const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static cJSON *replace(const char *from, const char *to) {
    cJSON *r = typed("Replace"), *pat = cJSON_AddObjectToObject(r, "pattern");
    cJSON_AddStringToObject(pat, "String", from);
    cJSON_AddStringToObject(r, "content", to);
    return r;
}

static cJSON *replace_regex(const char *re, const char *to) {
    cJSON *r = typed("Replace"), *pat = cJSON_AddObjectToObject(r, "pattern");
    cJSON_AddStringToObject(pat, "Regex", re);
    cJSON_AddStringToObject(r, "content", to);
    return r;
}

static cJSON *sequence(const char *key, cJSON *items) {
    cJSON *s = typed("Sequence");
    cJSON_AddItemToObject(s, key, items);
    return s;
}

/* Sentencepiece-style: the dummy prefix as Llama's published tokenizer.json
 * writes it, Prepend("▁") + Replace(" ", "▁"). HF's Metaspace would say
 * "first segment only" (our FIRST) but drops the prefix when the text starts
 * with a space, which sentencepiece and we do not; Prepend keeps it, at the
 * price of also prefixing text that follows an added token in the middle
 * (what llama.cpp does after special tokens too). */
static cJSON *normalizer(const dq_tokenizer *t) {
    if (t->byte_level) return t->nfc ? typed("NFC") : cJSON_CreateNull();
    cJSON *seq = cJSON_CreateArray();
    if (t->nfc) cJSON_AddItemToArray(seq, typed("NFC"));
    if (t->collapse_ws) { /* sentencepiece remove_extra_whitespaces: spaces only, not tabs or newlines */
        cJSON_AddItemToArray(seq, replace(METASPACE, " ")); /* a literal "▁" is a space to sentencepiece */
        cJSON_AddItemToArray(seq, replace_regex(DQ_HF_STRIP_SPACES, ""));
        cJSON_AddItemToArray(seq, replace_regex(DQ_HF_COLLAPSE_SPACES, " "));
    }
    if (t->prepend != DQ_PREPEND_NONE) {
        cJSON *p = typed("Prepend");
        cJSON_AddStringToObject(p, "prepend", METASPACE);
        cJSON_AddItemToArray(seq, p);
    }
    cJSON_AddItemToArray(seq, replace(" ", METASPACE));
    if (cJSON_GetArraySize(seq) == 0) {
        cJSON_Delete(seq);
        return cJSON_CreateNull();
    }
    return sequence("normalizers", seq);
}

static cJSON *byte_level(bool use_regex) {
    cJSON *b = typed("ByteLevel");
    cJSON_AddBoolToObject(b, "add_prefix_space", false);
    cJSON_AddBoolToObject(b, "trim_offsets", true);
    cJSON_AddBoolToObject(b, "use_regex", use_regex);
    return b;
}

/* One split regex as HF names it: Digits for \p{N} (SmolLM's digit split),
 * an isolated regex Split otherwise. */
static cJSON *split(const char *src) {
    if (!strcmp(src, DQ_REGEX_DIGIT) || !strcmp(src, "\\p{N}+")) {
        cJSON *d = typed("Digits");
        cJSON_AddBoolToObject(d, "individual_digits", !strcmp(src, DQ_REGEX_DIGIT));
        return d;
    }
    cJSON *s = typed("Split"), *pat = cJSON_AddObjectToObject(s, "pattern");
    cJSON_AddStringToObject(pat, "Regex", src);
    cJSON_AddStringToObject(s, "behavior", "Isolated");
    cJSON_AddBoolToObject(s, "invert", false);
    return s;
}

/* Byte-level: the split sequence, then ByteLevel. A final GPT-2 regex is
 * ByteLevel's own (use_regex), as GPT-2 and SmolLM publish it; any other
 * sequence ends in ByteLevel(use_regex=false), as Llama-3 and Qwen2 do. */
static cJSON *pre_tokenizer(const dq_tokenizer *t) {
    cJSON *seq = cJSON_CreateArray();
    int n = t->n_split;
    bool gpt2_last = t->byte_level && n > 0 && !strcmp(t->split_src[n - 1], DQ_REGEX_GPT2);
    for (int k = 0; k < n - (gpt2_last ? 1 : 0); k++) cJSON_AddItemToArray(seq, split(t->split_src[k]));
    if (t->byte_level) cJSON_AddItemToArray(seq, byte_level(gpt2_last));
    int size = cJSON_GetArraySize(seq);
    if (size == 1) {
        cJSON *only = cJSON_DetachItemFromArray(seq, 0);
        cJSON_Delete(seq);
        return only;
    }
    if (size == 0) {
        cJSON_Delete(seq);
        return cJSON_CreateNull();
    }
    return sequence("pretokenizers", seq);
}

static cJSON *template_item(const char *key, const char *name, int type_id) {
    cJSON *o = cJSON_CreateObject(), *v = cJSON_AddObjectToObject(o, key);
    cJSON_AddStringToObject(v, "id", name);
    cJSON_AddNumberToObject(v, "type_id", type_id);
    return o;
}

/* BOS in front when the tokenizer's convention adds it (our loader reads it back from "single"). */
static cJSON *post_processor(const dq_tokenizer *t, char **hf) {
    if (!(t->add_bos && t->bos >= 0)) return t->byte_level ? byte_level(false) : cJSON_CreateNull();
    const char *bos = hf[t->bos];
    cJSON *p = typed("TemplateProcessing"), *single = cJSON_AddArrayToObject(p, "single");
    cJSON *pair = cJSON_AddArrayToObject(p, "pair");
    cJSON_AddItemToArray(single, template_item("SpecialToken", bos, 0));
    cJSON_AddItemToArray(single, template_item("Sequence", "A", 0));
    cJSON_AddItemToArray(pair, template_item("SpecialToken", bos, 0));
    cJSON_AddItemToArray(pair, template_item("Sequence", "A", 0));
    cJSON_AddItemToArray(pair, template_item("SpecialToken", bos, 1));
    cJSON_AddItemToArray(pair, template_item("Sequence", "B", 1));
    cJSON *sp = cJSON_AddObjectToObject(p, "special_tokens"), *e = cJSON_AddObjectToObject(sp, bos);
    cJSON_AddStringToObject(e, "id", bos);
    cJSON *ids = cJSON_AddArrayToObject(e, "ids"), *toks = cJSON_AddArrayToObject(e, "tokens");
    cJSON_AddItemToArray(ids, cJSON_CreateNumber(t->bos));
    cJSON_AddItemToArray(toks, cJSON_CreateString(bos));
    return p;
}

static cJSON *decoder(const dq_tokenizer *t) {
    if (t->byte_level) return byte_level(true);
    cJSON *seq = cJSON_CreateArray();
    cJSON_AddItemToArray(seq, replace(METASPACE, " "));
    if (t->byte_fallback) cJSON_AddItemToArray(seq, typed("ByteFallback"));
    cJSON_AddItemToArray(seq, typed("Fuse"));
    if (t->prepend != DQ_PREPEND_NONE) { /* the dummy prefix is not text */
        cJSON *s = typed("Strip");
        cJSON_AddStringToObject(s, "content", " ");
        cJSON_AddNumberToObject(s, "start", 1);
        cJSON_AddNumberToObject(s, "stop", 0);
        cJSON_AddItemToArray(seq, s);
    }
    return sequence("decoders", seq);
}

/* ---- the files ------------------------------------------------------------------ */

static dq_status check_expressible(const dq_tokenizer *t, dq_error *err) {
    if (t->byte_level && t->mode != DQ_MERGE_BY_RANK)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: byte-level tokenizer without ranked merges", t->path);
    for (int i = 0; i < t->n_vocab; i++)
        if (memchr(t->pieces[i], '\0', t->piece_len[i]))
            return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: piece %d holds a NUL byte, which JSON strings here cannot",
                           t->path, i);
    return DQ_OK;
}

static void free_pieces(char **hf, int n) {
    for (int i = 0; hf && i < n; i++) free(hf[i]);
    free(hf);
}

static char **hf_pieces(const dq_tokenizer *t) {
    if (t->n_vocab <= 0) return NULL;
    char **hf = calloc((size_t)t->n_vocab, sizeof *hf);
    for (int i = 0; hf && i < t->n_vocab; i++)
        if (!(hf[i] = hf_piece(t, i))) {
            free_pieces(hf, i);
            return NULL;
        }
    return hf;
}

dq_status dq_hf_tokenizer_json(const dq_tokenizer *t, cJSON **out, dq_error *err) {
    *out = NULL;
    dq_status st = check_expressible(t, err);
    if (st) return st;
    char **hf = hf_pieces(t);
    if (!hf) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", t->path);
    cJSON *model = model_json(t, hf, err);
    if (!model) {
        free_pieces(hf, t->n_vocab);
        return err ? err->code : DQ_ERR_NOMEM;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON_AddItemToObject(root, "added_tokens", added_tokens(t, hf));
    cJSON_AddItemToObject(root, "normalizer", normalizer(t));
    cJSON_AddItemToObject(root, "pre_tokenizer", pre_tokenizer(t));
    cJSON_AddItemToObject(root, "post_processor", post_processor(t, hf));
    cJSON_AddItemToObject(root, "decoder", decoder(t));
    cJSON_AddItemToObject(root, "model", model);
    free_pieces(hf, t->n_vocab);
    *out = root;
    return DQ_OK;
}

static void add_token_name(cJSON *o, const char *key, const dq_tokenizer *t, int id) {
    if (id < 0 || id >= t->n_vocab) return;
    char *s = hf_piece(t, id);
    if (s) cJSON_AddStringToObject(o, key, s);
    free(s);
}

cJSON *dq_hf_special_tokens_map(const dq_tokenizer *t) {
    cJSON *o = cJSON_CreateObject();
    add_token_name(o, "bos_token", t, t->bos);
    add_token_name(o, "eos_token", t, t->eos);
    add_token_name(o, "unk_token", t, t->unk);
    return o;
}

/* What transformers' AutoTokenizer needs beside tokenizer.json; our loader
 * reads eos_token and add_bos_token from it. */
cJSON *dq_hf_tokenizer_config(const dq_tokenizer *t, int model_max_length) {
    cJSON *o = dq_hf_special_tokens_map(t);
    cJSON_AddStringToObject(o, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddBoolToObject(o, "add_bos_token", t->add_bos && t->bos >= 0);
    cJSON_AddBoolToObject(o, "add_eos_token", false);
    cJSON_AddBoolToObject(o, "clean_up_tokenization_spaces", false);
    cJSON_AddNumberToObject(o, "model_max_length", model_max_length);
    return o;
}
