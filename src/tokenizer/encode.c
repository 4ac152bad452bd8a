/* The encoder: split out added tokens, normalise each remaining segment,
 * pre-tokenise it into words, and byte-pair merge each word. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

typedef dq_sbuf sbuf;

bool dq_sb_put(dq_sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return true;
}

/* sentencepiece normalisation: a literal "▁" counts as a space, optional
 * whitespace collapsing, a dummy prefix, then spaces become the model's space
 * symbol. The prefix is added even when the text starts with a space, as
 * sentencepiece does (HF's Metaspace skips it there; the slow tokenizers and
 * transformers.js follow sentencepiece). cont: s continues a segment whose
 * earlier part (normalised already) ended in a character that is not a space:
 * no leading strip, no prefix (see stream.c). */
static bool spm_normalize(const dq_tokenizer *t, const char *s, size_t n, bool first, bool cont, sbuf *out) {
    sbuf sp = {0};
    for (size_t i = 0; i < n; i++) {
        bool meta = i + 3 <= n && !memcmp(s + i, "\xe2\x96\x81", 3);
        if (!dq_sb_put(&sp, meta ? " " : s + i, 1)) return false;
        i += meta ? 2 : 0;
    }
    const char *p = sp.p ? sp.p : "";
    size_t m = sp.n, sl = strlen(t->space);
    if (t->collapse_ws) {
        while (!cont && m > 0 && *p == ' ') p++, m--;
        while (m > 0 && p[m - 1] == ' ') m--;
    }
    bool ok = true;
    if (m > 0 && !cont && (t->prepend == DQ_PREPEND_ALWAYS || (t->prepend == DQ_PREPEND_FIRST && first)))
        ok = dq_sb_put(out, t->space, sl);
    for (size_t i = 0; ok && i < m; i++) {
        if (p[i] != ' ') ok = dq_sb_put(out, p + i, 1);
        else if (!(t->collapse_ws && i > 0 && p[i - 1] == ' ')) ok = dq_sb_put(out, t->space, sl);
    }
    free(sp.p);
    return ok;
}

static dq_status encode_word(const dq_tokenizer *t, const char *w, size_t n, sbuf *tmp,
                             dq_id_buf *out, dq_error *err) {
    if (!t->byte_level) return dq_bpe_word(t, w, n, out, err);
    tmp->n = 0;
    for (size_t i = 0; i < n; i++) {
        char u[4];
        int l = dq_byte_to_unicode((uint8_t)w[i], u);
        if (!dq_sb_put(tmp, u, (size_t)l)) return dq_fail(err, DQ_ERR_NOMEM, "tokenize: out of memory");
    }
    return dq_bpe_word(t, tmp->p, tmp->n, out, err);
}

/* Pre-tokenises s with split regex k and every later one (each splits the
 * words of the one before; unmatched gaps are words too, HF's "Isolated"),
 * then byte-pair merges each final word. */
dq_status dq_tok_split(const dq_tokenizer *t, int k, const char *s, size_t n, sbuf *tmp, dq_id_buf *out,
                       dq_error *err) {
    if (k >= t->n_split || k >= DQ_MAX_SPLITS) return encode_word(t, s, n, tmp, out, err);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(t->split_re[k], NULL);
    if (!md) return dq_fail(err, DQ_ERR_NOMEM, "tokenize: out of memory");
    dq_status st = DQ_OK;
    size_t pos = 0, done = 0;
    while (st == DQ_OK && pos < n) {
        int rc = pcre2_match(t->split_re[k], (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (a > done) st = dq_tok_split(t, k + 1, s + done, a - done, tmp, out, err); /* unmatched gap */
        if (st == DQ_OK && b > a) st = dq_tok_split(t, k + 1, s + a, b - a, tmp, out, err);
        done = b > a ? b : a;
        pos = b > a ? b : a + 1;
        while (pos < n && ((uint8_t)s[pos] & 0xc0) == 0x80) pos++; /* stay on a char boundary */
    }
    if (st == DQ_OK && done < n) st = dq_tok_split(t, k + 1, s + done, n - done, tmp, out, err);
    pcre2_match_data_free(md);
    return st;
}

static dq_status pretokenize(const dq_tokenizer *t, const char *s, size_t n, dq_id_buf *out, dq_error *err) {
    sbuf tmp = {0};
    dq_status st = dq_tok_split(t, 0, s, n, &tmp, out, err);
    free(tmp.p);
    return st;
}

static dq_status encode_segment(const dq_tokenizer *t, const char *s, size_t n, bool first,
                                dq_id_buf *out, dq_error *err) {
    if (n == 0) return DQ_OK;
    dq_sbuf norm = {0};
    dq_status st = dq_tok_normalize(t, s, n, first, false, &norm, err);
    if (!st) st = pretokenize(t, norm.p ? norm.p : "", norm.n, out, err);
    free(norm.p);
    return st;
}

dq_status dq_tok_normalize(const dq_tokenizer *t, const char *s, size_t n, bool first, bool cont, dq_sbuf *out,
                           dq_error *err) {
    if (n == 0) return DQ_OK;
    utf8proc_uint8_t *nfc = NULL;
    if (t->nfc) {
        utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &nfc,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (m < 0) return dq_fail(err, DQ_ERR_FORMAT, "tokenize: NFC failed: %s", utf8proc_errmsg(m));
        s = (const char *)nfc;
        n = (size_t)m;
    }
    bool ok = t->byte_level ? dq_sb_put(out, s, n) : spm_normalize(t, s, n, first, cont, out);
    free(nfc);
    return ok ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "tokenize: out of memory");
}

size_t dq_tok_match_added(const dq_tokenizer *t, const char *s, size_t n, bool parse_special,
                          int32_t *id) {
    for (size_t i = 0; i < t->n_added; i++) {
        const dq_added_token *a = &t->added[i];
        if (a->special && !parse_special) continue;
        if (a->len <= n && a->len > 0 && memcmp(s, a->text, a->len) == 0) {
            *id = a->id;
            return a->len;
        }
    }
    return 0;
}

static dq_status check_utf8(const char *s, size_t n, dq_error *err) {
    size_t i = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(n - i), &cp);
        if (l <= 0)
            return dq_fail(err, DQ_ERR_FORMAT, "text is not valid UTF-8 at byte %zu", i);
        i += (size_t)l;
    }
    return DQ_OK;
}

dq_status dq_tokenize(const dq_tokenizer *t, const char *text, size_t len, bool add_bos,
                      bool parse_special, int32_t **ids, size_t *n_ids, dq_error *err) {
    *ids = NULL;
    *n_ids = 0;
    dq_status st = check_utf8(text, len, err);
    if (st) return st;
    bool first_byte[256] = {false};
    for (size_t i = 0; i < t->n_added; i++) first_byte[(uint8_t)t->added[i].text[0]] = true;
    dq_id_buf out = {0};
    if (add_bos && t->bos >= 0 && !dq_id_push(&out, t->bos))
        return dq_fail(err, DQ_ERR_NOMEM, "tokenize: out of memory");
    size_t seg = 0, pos = 0;
    while (st == DQ_OK && pos < len) {
        int32_t id;
        size_t m =
            first_byte[(uint8_t)text[pos]] ? dq_tok_match_added(t, text + pos, len - pos, parse_special, &id) : 0;
        if (m == 0) {
            pos++;
            continue;
        }
        st = encode_segment(t, text + seg, pos - seg, seg == 0, &out, err);
        if (st == DQ_OK && !dq_id_push(&out, id)) st = dq_fail(err, DQ_ERR_NOMEM, "out of memory");
        pos += m;
        seg = pos;
    }
    if (st == DQ_OK) st = encode_segment(t, text + seg, len - seg, seg == 0, &out, err);
    if (st) {
        free(out.ids);
        return st;
    }
    *ids = out.ids;
    *n_ids = out.n;
    return DQ_OK;
}
