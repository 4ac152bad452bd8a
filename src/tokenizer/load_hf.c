/* Hugging Face tokenizers: tokenizer.json (BPE model, normalizer,
 * pre_tokenizer, post_processor, added_tokens) and the older vocab.json +
 * merges.txt pair with tokenizer_config.json beside it. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"

#define MAX_JSON (512u << 20)

static dq_status parse_json_file(const char *path, cJSON **out, dq_error *err) {
    char *text;
    size_t n;
    dq_status st = dq_read_file(path, MAX_JSON, &text, &n, err);
    if (st) return st;
    *out = cJSON_ParseWithLength(text, n);
    free(text);
    if (!*out) return dq_fail(err, DQ_ERR_FORMAT, "%s: invalid JSON", path);
    return DQ_OK;
}

static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool json_bool(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* A token id written as a JSON number: an integer in [0, 2^22) (our largest
 * vocabulary), or false. Casting any other double to an integer is undefined. */
static bool json_id(const cJSON *v, int64_t *id) {
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < (double)(1 << 22))) return false;
    *id = (int64_t)v->valuedouble;
    return (double)*id == v->valuedouble;
}

/* Vocabulary size: one past the largest id in the vocab and added tokens. */
static int vocab_extent(const cJSON *vocab, const cJSON *added) {
    double mx = -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) if (cJSON_IsNumber(e) && e->valuedouble > mx) mx = e->valuedouble;
    cJSON_ArrayForEach(e, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (cJSON_IsNumber(id) && id->valuedouble > mx) mx = id->valuedouble;
    }
    return mx >= 0 && mx < (1 << 22) ? (int)mx + 1 : 0;
}

static dq_status set_vocab(dq_tokenizer *t, const cJSON *vocab, dq_error *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        int64_t id;
        if (!json_id(e, &id))
            return dq_fail(err, DQ_ERR_FORMAT, "%s: vocab entry \"%.40s\" has no integer id in [0, %d)", t->path,
                           e->string, 1 << 22);
        dq_status st = dq_tok_set_piece(t, id, e->string, strlen(e->string), err);
        if (st) return st;
    }
    return DQ_OK;
}

/* One merge "a b" (or ["a", "b"]) with rank r. */
static dq_status add_merge(dq_tokenizer *t, const char *a, size_t na, const char *b, size_t nb,
                           int rank, dq_error *err) {
    int32_t ia = dq_str_map_get(&t->lookup, a, na), ib = dq_str_map_get(&t->lookup, b, nb);
    if (ia < 0 || ib < 0)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: merge %d (\"%.*s\" \"%.*s\") uses unknown pieces",
                       t->path, rank, (int)na, a, (int)nb, b);
    if (!dq_pair_map_put(&t->merges, ia, ib, rank))
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", t->path);
    return DQ_OK;
}

dq_status dq_tok_merge_from_string(dq_tokenizer *t, const char *s, size_t n, int rank, dq_error *err) {
    const char *sp = memchr(s, ' ', n);
    if (!sp || sp == s || sp == s + n - 1)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: merge %d \"%.*s\" is not two pieces", t->path, rank,
                       (int)n, s);
    return add_merge(t, s, (size_t)(sp - s), sp + 1, n - (size_t)(sp - s) - 1, rank, err);
}

static dq_status set_merges_json(dq_tokenizer *t, const cJSON *merges, dq_error *err) {
    if (!dq_pair_map_init(&t->merges, (size_t)cJSON_GetArraySize(merges)))
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", t->path);
    int rank = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, merges) {
        dq_status st;
        if (cJSON_IsString(m)) {
            st = dq_tok_merge_from_string(t, m->valuestring, strlen(m->valuestring), rank, err);
        } else if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(cJSON_GetArrayItem(m, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            const char *a = cJSON_GetArrayItem(m, 0)->valuestring, *b = cJSON_GetArrayItem(m, 1)->valuestring;
            st = add_merge(t, a, strlen(a), b, strlen(b), rank, err);
        } else {
            st = dq_fail(err, DQ_ERR_FORMAT, "%s: merge %d is neither \"a b\" nor [a, b]", t->path, rank);
        }
        if (st) return st;
        rank++;
    }
    return DQ_OK;
}

static dq_status set_added(dq_tokenizer *t, const cJSON *added, dq_error *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, added) {
        int64_t id;
        const char *content = json_str(e, "content");
        if (!json_id(cJSON_GetObjectItemCaseSensitive(e, "id"), &id) || !content)
            return dq_fail(err, DQ_ERR_FORMAT, "%s: added token without an integer id in [0, %d) or content",
                           t->path, 1 << 22);
        dq_status st = dq_tok_add_token(t, id, content, strlen(content), json_bool(e, "special", false), err);
        if (st) return st;
    }
    return DQ_OK;
}

/* Normalizers we implement: NFC, Prepend("▁"), Replace(" " -> "▁"), sentencepiece's
 * whitespace collapsing as two Replace regexes, and Sequences of them. */
static dq_status apply_normalizer(dq_tokenizer *t, const cJSON *n, dq_error *err) {
    if (!n || cJSON_IsNull(n)) return DQ_OK;
    const char *type = json_str(n, "type");
    if (!type) return dq_fail(err, DQ_ERR_FORMAT, "%s: normalizer without a type", t->path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) {
            dq_status st = apply_normalizer(t, e, err);
            if (st) return st;
        }
        return DQ_OK;
    }
    if (!strcmp(type, "NFC")) {
        t->nfc = true;
        return DQ_OK;
    }
    if (!strcmp(type, "Prepend")) {
        t->prepend = DQ_PREPEND_ALWAYS;
        return DQ_OK;
    }
    if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(n, "pattern");
        const char *from = json_str(pat, "String"), *to = json_str(n, "content");
        if (from && to && !strcmp(from, " ") && !strcmp(to, "\xe2\x96\x81")) {
            t->space = "\xe2\x96\x81";
            return DQ_OK;
        }
        if (from && to && !strcmp(from, "\xe2\x96\x81") && !strcmp(to, " "))
            return DQ_OK; /* spm_normalize always reads a literal "▁" as a space */
        /* sentencepiece's whitespace collapsing, as our HF export writes it */
        const char *re = json_str(pat, "Regex");
        if (re && to &&
            ((!strcmp(re, DQ_HF_STRIP_SPACES) && !*to) || (!strcmp(re, DQ_HF_COLLAPSE_SPACES) && !strcmp(to, " ")))) {
            t->collapse_ws = true;
            return DQ_OK;
        }
    }
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: normalizer %s is not supported", t->path, type);
}

static dq_status apply_pretokenizer(dq_tokenizer *t, const cJSON *p, dq_error *err) {
    if (!p || cJSON_IsNull(p)) return DQ_OK;
    const char *type = json_str(p, "type");
    if (!type) return dq_fail(err, DQ_ERR_FORMAT, "%s: pre_tokenizer without a type", t->path);
    if (!strcmp(type, "Sequence")) {
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers")) {
            dq_status st = apply_pretokenizer(t, e, err);
            if (st) return st;
        }
        return DQ_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        t->byte_level = true;
        if (json_bool(p, "add_prefix_space", false))
            return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: ByteLevel add_prefix_space is not supported", t->path);
        if (json_bool(p, "use_regex", true)) return dq_tok_add_regex(t, DQ_REGEX_GPT2, err);
        return DQ_OK;
    }
    if (!strcmp(type, "Split")) {
        const char *re = json_str(cJSON_GetObjectItemCaseSensitive(p, "pattern"), "Regex");
        const char *behavior = json_str(p, "behavior");
        if (!re || !behavior || strcmp(behavior, "Isolated") || json_bool(p, "invert", false))
            return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: only Isolated regex Split is supported", t->path);
        return dq_tok_add_regex(t, re, err);
    }
    if (!strcmp(type, "Digits")) /* SmolLM: every digit a word of its own */
        return dq_tok_add_regex(t, json_bool(p, "individual_digits", false) ? DQ_REGEX_DIGIT : "\\p{N}+", err);
    if (!strcmp(type, "Metaspace")) {
        const char *scheme = json_str(p, "prepend_scheme");
        t->space = "\xe2\x96\x81";
        if (scheme) t->prepend = !strcmp(scheme, "always") ? DQ_PREPEND_ALWAYS
                                 : !strcmp(scheme, "first") ? DQ_PREPEND_FIRST : DQ_PREPEND_NONE;
        else t->prepend = json_bool(p, "add_prefix_space", true) ? DQ_PREPEND_ALWAYS : DQ_PREPEND_NONE;
        if (json_bool(p, "split", true))
            return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: Metaspace with split=true is not supported", t->path);
        return DQ_OK;
    }
    return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: pre_tokenizer %s is not supported", t->path, type);
}

static int32_t find_piece(const dq_tokenizer *t, const char *s) {
    for (int i = 0; s && i < t->n_vocab; i++)
        if (t->pieces[i] && t->piece_len[i] == strlen(s) && !memcmp(t->pieces[i], s, t->piece_len[i])) return i;
    return -1;
}

/* BOS comes from the post-processor template (a special token before $A). */
static void apply_post_processor(dq_tokenizer *t, const cJSON *pp) {
    const char *type = json_str(pp, "type");
    if (!type || strcmp(type, "TemplateProcessing")) return;
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pp, "single"), 0);
    const cJSON *special = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
    int32_t id = find_piece(t, json_str(special, "id"));
    if (id >= 0) {
        t->bos = id;
        t->add_bos = true;
    }
}

static const char *token_name(const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    return cJSON_IsString(v) ? v->valuestring : json_str(v, "content");
}

/* tokenizer_config.json beside the tokenizer names BOS/EOS and may turn BOS off. */
static void apply_config(dq_tokenizer *t, const char *dir) {
    char path[PATH_MAX];
    cJSON *cfg = NULL;
    if (!dq_path_join(path, sizeof path, dir, "tokenizer_config.json") || !dq_file_exists(path) ||
        parse_json_file(path, &cfg, NULL) != DQ_OK)
        return;
    int32_t id = find_piece(t, token_name(cfg, "eos_token"));
    if (id >= 0) t->eos = id;
    id = find_piece(t, token_name(cfg, "bos_token"));
    if (id >= 0 && t->bos < 0) t->bos = id;
    const cJSON *add = cJSON_GetObjectItemCaseSensitive(cfg, "add_bos_token");
    if (cJSON_IsBool(add)) t->add_bos = cJSON_IsTrue(add) && t->bos >= 0;
    cJSON_Delete(cfg);
}

/* tokenizer_config.json's chat_template: a string, or (transformers >= 4.43)
 * a list of {"name", "template"} of which "default" is the chat template. */
static const char *config_template(const cJSON *cfg) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template"), *e;
    if (cJSON_IsString(v)) return v->valuestring;
    if (!cJSON_IsArray(v)) return NULL;
    cJSON_ArrayForEach(e, v) {
        const char *name = json_str(e, "name");
        if (name && !strcmp(name, "default")) return json_str(e, "template");
    }
    return NULL;
}

dq_status dq_tok_load_hf_chat_template(dq_tokenizer *t, const char *dir, dq_error *err) {
    char path[PATH_MAX];
    cJSON *cfg = NULL;
    char *jinja = NULL;
    size_t n = 0;
    const char *tmpl = NULL;
    if (dq_path_join(path, sizeof path, dir, "tokenizer_config.json") && dq_file_exists(path) &&
        parse_json_file(path, &cfg, NULL) == DQ_OK)
        tmpl = config_template(cfg);
    if (tmpl) n = strlen(tmpl);
    else if (dq_path_join(path, sizeof path, dir, "chat_template.jinja") && dq_file_exists(path) &&
             dq_read_file(path, MAX_JSON, &jinja, &n, NULL) == DQ_OK) /* newer transformers keep it apart */
        tmpl = jinja;
    dq_status st = DQ_OK;
    if (tmpl && !(t->chat_template = dq_tok_strdup(t, tmpl, n)))
        st = dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", t->path);
    free(jinja);
    cJSON_Delete(cfg);
    return st;
}

/* GPT-2 style vocabularies name no EOS anywhere but use <|endoftext|>. */
static void default_eos(dq_tokenizer *t) {
    if (t->eos < 0) t->eos = find_piece(t, "<|endoftext|>");
    if (t->eos < 0) t->eos = find_piece(t, "</s>");
}

/* The slow GPT-2/Qwen2 tokenizers treat their bos/eos/unk/pad tokens (by
 * default <|endoftext|>) as special even when only vocab.json lists them. */
static dq_status special_from_config(dq_tokenizer *t, const cJSON *cfg, dq_error *err) {
    const char *keys[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
    const char *names[5] = {"<|endoftext|>"};
    for (int i = 0; i < 4; i++) names[i + 1] = token_name(cfg, keys[i]);
    for (int i = 0; i < 5; i++) {
        int32_t id = find_piece(t, names[i]);
        bool known = false;
        for (size_t k = 0; k < t->n_added; k++) known |= t->added[k].id == id;
        if (id < 0 || known) continue;
        dq_status st = dq_tok_add_token(t, id, names[i], strlen(names[i]), true, err);
        if (st) return st;
    }
    return DQ_OK;
}

static dq_status load_json_model(dq_tokenizer *t, const cJSON *root, dq_error *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *mtype = json_str(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (mtype && strcmp(mtype, "BPE"))
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: tokenizer model %s is not supported (only BPE)",
                       t->path, mtype);
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: BPE model without vocab object and merges list", t->path);
    dq_status st = dq_tok_alloc(t, vocab_extent(vocab, added), err);
    if (st || (st = set_vocab(t, vocab, err)) || (st = set_added(t, added, err))) return st;
    t->mode = DQ_MERGE_BY_RANK;
    t->byte_fallback = json_bool(model, "byte_fallback", false);
    t->fuse_unk = json_bool(model, "fuse_unk", false);
    t->ignore_merges = json_bool(model, "ignore_merges", false);
    t->unk = find_piece(t, json_str(model, "unk_token"));
    if ((st = apply_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), err)) ||
        (st = apply_pretokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), err)))
        return st;
    apply_post_processor(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"));
    if ((st = dq_tok_finish(t, err))) return st;
    return set_merges_json(t, merges, err);
}

dq_status dq_tok_load_hf_json(const char *path, dq_tokenizer *t, dq_error *err) {
    cJSON *root;
    dq_status st = parse_json_file(path, &root, err);
    if (st) return st;
    st = load_json_model(t, root, err);
    cJSON_Delete(root);
    if (st) return st;
    char dir[PATH_MAX];
    dq_path_dir(dir, sizeof dir, path);
    apply_config(t, dir);
    default_eos(t);
    return DQ_OK;
}

static dq_status read_merges_txt(dq_tokenizer *t, const char *path, dq_error *err) {
    char *text;
    size_t n;
    dq_status st = dq_read_file(path, MAX_JSON, &text, &n, err);
    if (st) return st;
    size_t lines = 0;
    for (size_t i = 0; i < n; i++) lines += text[i] == '\n';
    if (!dq_pair_map_init(&t->merges, lines + 1)) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    int rank = 0;
    for (char *line = text; st == DQ_OK && line < text + n;) {
        char *end = memchr(line, '\n', (size_t)(text + n - line));
        if (!end) end = text + n;
        size_t len = (size_t)(end - line);
        if (len && line[len - 1] == '\r') len--;
        if (len && !(rank == 0 && line == text && !strncmp(line, "#version", 8)))
            st = dq_tok_merge_from_string(t, line, len, rank++, err);
        line = end + 1;
    }
    free(text);
    return st;
}

/* added_tokens_decoder in tokenizer_config.json: {"151643": {"content": ..., "special": ...}} */
static dq_status added_from_config(dq_tokenizer *t, const cJSON *cfg, dq_error *err) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder")) {
        const char *content = json_str(e, "content");
        char *endp;
        long id = strtol(e->string, &endp, 10);
        if (!content || *endp) return dq_fail(err, DQ_ERR_FORMAT, "%s: bad added token entry", t->path);
        dq_status st = dq_tok_add_token(t, id, content, strlen(content), json_bool(e, "special", false), err);
        if (st) return st;
    }
    return DQ_OK;
}

dq_status dq_tok_load_vocab_merges(const char *vocab_path, dq_tokenizer *t, dq_error *err) {
    char dir[PATH_MAX], path[PATH_MAX];
    dq_path_dir(dir, sizeof dir, vocab_path);
    cJSON *vocab = NULL, *cfg = NULL;
    dq_status st = parse_json_file(vocab_path, &vocab, err);
    if (st) return st;
    if (dq_path_join(path, sizeof path, dir, "tokenizer_config.json") && dq_file_exists(path))
        st = parse_json_file(path, &cfg, err);
    int n = vocab_extent(vocab, NULL);
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder")) {
        long id = strtol(e->string, NULL, 10);
        if (id >= n && id < (1 << 22)) n = (int)id + 1;
    }
    if (!st) st = dq_tok_alloc(t, n, err);
    if (!st) st = set_vocab(t, vocab, err);
    if (!st) st = added_from_config(t, cfg, err);
    if (!st) st = special_from_config(t, cfg, err);
    const char *cls = json_str(cfg, "tokenizer_class");
    bool qwen = cls && !strncmp(cls, "Qwen2", 5);
    t->mode = DQ_MERGE_BY_RANK;
    t->byte_level = true;
    t->nfc = qwen;
    if (!st) st = dq_tok_add_regex(t, qwen ? DQ_REGEX_QWEN2 : DQ_REGEX_GPT2, err);
    if (!st) st = dq_tok_finish(t, err);
    if (!st && !(dq_path_join(path, sizeof path, dir, "merges.txt") && dq_file_exists(path)))
        st = dq_fail(err, DQ_ERR_IO, "%s: no merges.txt beside it", vocab_path);
    if (!st) st = read_merges_txt(t, path, err);
    cJSON_Delete(vocab);
    cJSON_Delete(cfg);
    if (!st) apply_config(t, dir);
    if (!st) default_eos(t);
    return st;
}
