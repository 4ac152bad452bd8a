/* Streaming tokenization with ids identical to dq_tokenize on the whole text.
 *
 * dq_tokenize (encode.c) is a pipeline: UTF-8 check -> split at added tokens
 * into segments -> normalise each segment (NFC; sentencepiece's "▁"/space,
 * whitespace and dummy-prefix rules) -> first split regex over the normalised
 * segment -> later split regexes and byte-pair merging inside each word. The
 * stream holds the text not yet final at each stage and moves a stage forward
 * only past a point where the whole-text run provably does the same thing:
 *
 * 1. UTF-8. utf8proc_iterate decides at byte i from bytes i..i+3 only, so a
 *    character is checked once 4 bytes (or the end) follow it, and the first
 *    bad byte is the one the whole-text check names.
 *
 * 2. Added tokens. dq_tokenize tries, byte by byte, the longest added token at
 *    each position, comparing at most max_added bytes. A position is decided
 *    once max_added bytes follow it (or the text has ended); positions are
 *    decided in order, so the segments are the whole-text segments.
 *
 * 3. Normalisation of a segment, cut before raw byte p. NFC: text[p] is ASCII,
 *    a starter with NFC_QC=Yes that is never the second element of a
 *    composition and never reordered, so NFC(L + R) = NFC(L) + NFC(R) (UAX #15,
 *    stable code points). Sentencepiece rules: the character before p is not a
 *    space (nor "▁", which counts as one): the whitespace strip at the segment
 *    start and end and the collapsing of inner runs then act on L and R alone
 *    as on L + R, provided R is normalised as a continuation (no leading
 *    strip, no dummy prefix: dq_tok_normalize's cont), and L holds a
 *    non-space so the prefix decision (m > 0) is the whole segment's.
 *    Byte-level tokenizers without NFC normalise nothing: any character
 *    boundary is a cut.
 *
 * 4a. Split regexes. Regex k splits each word of regex k - 1 (regex 0 the
 *    normalised segment); call the text it splits its subject S, of which the
 *    stream holds a prefix T = S[0..n). The split loop's state is only
 *    (pos, done), and each step is one pcre2_match from pos. Matching with
 *    PCRE2_PARTIAL_HARD (pcre2partial(3), PCRE2 10.42 here) returns
 *    PCRE2_ERROR_PARTIAL as soon as an attempt
 *    starting before n inspects position n (end of subject), lookaheads, \z
 *    and $ included; so a complete match returned on T never looked past T and
 *    is the match on S. A "no match" on T, and an empty match at n, are not
 *    trusted (an attempt at n inspects nothing). So the loop runs while
 *    matches are complete and stops at the first that is not: every word it
 *    emitted is a whole-text word, and it resumes from the same (pos, done)
 *    when more text has come. What the stop still tells: the attempts at
 *    [pos, u) failed without reaching the end (u: the partial match's start,
 *    or n for no match), so no match starts there on S either: the unmatched
 *    gap from done, itself a word of the next level, reaches at least u, and
 *    the next level runs on that prefix by the same rule (SmolLM2's digit
 *    split leaves kilobytes between digits; GPT-2's regex then splits them).
 *    pos moves to u (a pattern with \G, whose matches depend on where the
 *    search starts, is not streamed). Left context: text before pos is
 *    dropped but for max-lookbehind + 1 characters (PCRE2_INFO_MAXLOOKBEHIND,
 *    \b counted), so lookbehinds see the same characters and "start of
 *    subject" is never seen where the whole text has none. Byte-pair merging
 *    of a word waits for the word's end.
 *
 * 4b. No split regex (sentencepiece BPE: a segment is one word, merged by
 *    score). Every merge makes a vocabulary piece from two adjacent symbols,
 *    so if no piece of the vocabulary contains the character pair (c1, c2)
 *    that meets at q, no symbol ever spans q. Then the merges of the whole
 *    word split into the merges left and right of q: the left part's pairs
 *    are a subset of the pairs of the whole, a merge on one side never changes
 *    the other's pairs, and the queue order (score, then start) is a total
 *    order, so the whole run applies the left side's merges in the order the
 *    left part alone applies them (and likewise right). Byte fallback and
 *    <unk> act per final symbol; fuse_unk looks at the previous id, which the
 *    stream keeps (out.ids[0]) across its flushes. Not used (the segment is
 *    held whole, as dq_tokenize holds it) for: byte-level BPE without a split
 *    regex, ignore_merges (a whole word found in the vocabulary is one token,
 *    which a part is not), NaN scores (no total order).
 */
#include "tokenizer/stream.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

/* One level of the pre-tokenizer (split regex k; k = n_split: byte-pair
 * merging) and the subject it works on now: a word of level k - 1 (the
 * segment at level 0), of which norm holds the part not dropped. Offsets are
 * into norm. */
typedef struct {
    bool open;    /* a subject is in progress */
    size_t start; /* where the subject starts (0 once its start was dropped) */
    size_t pos;   /* the regex resumes here */
    size_t done;  /* words start here: norm[start..done) went to level k + 1 */
} level;

struct dq_tok_stream {
    const dq_tokenizer *t;
    bool parse_special, stopped, cuts;
    dq_tok_sink sink;
    void *user;
    bool first_byte[256];  /* some added token starts with this byte */
    size_t max_added;      /* longest added token, bytes */
    dq_sbuf raw;           /* text taken, not yet normalised; raw.p[0] is text byte raw_at */
    size_t raw_at;
    size_t valid;          /* raw[0..valid) is checked UTF-8 */
    size_t scan;           /* raw[0..scan) holds no added token: the current segment's */
    size_t raw_lo;         /* no raw cut in [1, raw_lo): searched already */
    bool seg_first;        /* the current segment starts the text */
    bool seg_cont;         /* part of the current segment is normalised already */
    dq_sbuf norm;          /* the current segment's normalised text still needed */
    level lv[DQ_MAX_SPLITS + 1];
    uint32_t context[DQ_MAX_SPLITS]; /* 4a: characters kept before pos */
    pcre2_match_data *md[DQ_MAX_SPLITS];
    size_t norm_lo;        /* 4b: no cut in [norm_lo - ..): searched already */
    bool bpe_cut;          /* 4b applies */
    dq_pair_map bigrams;   /* 4b: (code point, code point) pairs inside some piece */
    dq_sbuf tmp;
    dq_id_buf out;         /* ids not yet passed on, after out.ids[0..sent) */
    size_t sent;
};

static bool is_cont(uint8_t c) { return (c & 0xc0) == 0x80; }

static void drop_front(dq_sbuf *b, size_t k) {
    if (k == 0) return;
    memmove(b->p, b->p + k, b->n - k);
    b->n -= k;
    b->p[b->n] = '\0';
}

static dq_status oom(dq_error *err) { return dq_fail(err, DQ_ERR_NOMEM, "tokenize: out of memory"); }

bool dq_tok_stream_cuts(const dq_tokenizer *t) {
    for (int k = 0; k < t->n_split; k++)
        if (strstr(t->split_src[k], "\\G")) return false; /* \G: the match depends on where the search starts */
    if (t->n_split > 0) return true;
    if (t->byte_level || t->ignore_merges) return false;
    if (t->mode == DQ_MERGE_BY_SCORE)
        for (int i = 0; i < t->n_vocab; i++)
            if (isnan(t->scores[i])) return false;
    return true;
}

/* Every pair of adjacent characters inside a piece (pieces that are not valid
 * UTF-8 can never be formed from valid text and are skipped). */
static bool build_bigrams(const dq_tokenizer *t, dq_pair_map *m) {
    if (!dq_pair_map_init(m, (size_t)t->n_vocab * 4)) return false;
    for (int i = 0; i < t->n_vocab; i++) {
        const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)t->pieces[i];
        utf8proc_ssize_t left = (utf8proc_ssize_t)t->piece_len[i];
        utf8proc_int32_t prev = -1, cp;
        while (left > 0) {
            utf8proc_ssize_t l = utf8proc_iterate(p, left, &cp);
            if (l <= 0) break;
            if (prev >= 0 && !dq_pair_map_put(m, prev, cp, 0)) return false;
            prev = cp;
            p += l;
            left -= l;
        }
    }
    return true;
}

dq_status dq_tok_stream_new(const dq_tokenizer *t, bool add_bos, bool parse_special, dq_tok_sink sink, void *user,
                            dq_tok_stream **out, dq_error *err) {
    *out = NULL;
    dq_tok_stream *s = calloc(1, sizeof *s);
    if (!s) return oom(err);
    s->t = t;
    s->parse_special = parse_special;
    s->sink = sink;
    s->user = user;
    s->seg_first = true;
    s->cuts = dq_tok_stream_cuts(t);
    for (size_t i = 0; i < t->n_added; i++) {
        s->first_byte[(uint8_t)t->added[i].text[0]] = true;
        if (t->added[i].len > s->max_added) s->max_added = t->added[i].len;
    }
    bool ok = true;
    for (int k = 0; ok && k < t->n_split; k++) {
        uint32_t lb = 0;
        pcre2_pattern_info(t->split_re[k], PCRE2_INFO_MAXLOOKBEHIND, &lb);
        s->context[k] = lb + 1;
        ok = (s->md[k] = pcre2_match_data_create_from_pattern(t->split_re[k], NULL)) != NULL;
    }
    if (ok && t->n_split == 0 && s->cuts) {
        s->bpe_cut = true;
        ok = build_bigrams(t, &s->bigrams);
    }
    if (ok && add_bos && t->bos >= 0) ok = dq_id_push(&s->out, t->bos);
    if (!ok) {
        dq_tok_stream_free(s);
        return oom(err);
    }
    *out = s;
    return DQ_OK;
}

void dq_tok_stream_free(dq_tok_stream *s) {
    if (!s) return;
    free(s->raw.p);
    free(s->norm.p);
    free(s->tmp.p);
    free(s->out.ids);
    for (int k = 0; k < DQ_MAX_SPLITS; k++)
        if (s->md[k]) pcre2_match_data_free(s->md[k]);
    if (s->bpe_cut) dq_pair_map_free(&s->bigrams);
    free(s);
}

bool dq_tok_stream_stopped(const dq_tok_stream *s) { return s->stopped; }
size_t dq_tok_stream_held(const dq_tok_stream *s) { return s->raw.n + s->norm.n; }

/* Rule 3: may the raw segment text be cut before byte p (0 < p < scan)? */
static bool raw_cut_ok(const dq_tok_stream *s, size_t p) {
    const uint8_t *r = (const uint8_t *)s->raw.p;
    if (is_cont(r[p]) || (s->t->nfc && r[p] >= 0x80)) return false;
    if (s->t->byte_level) return true;
    return r[p - 1] != ' ' && !(p >= 3 && !memcmp(r + p - 3, "\xe2\x96\x81", 3));
}

/* Normalises the current segment's raw text up to its last safe cut (all of
 * it when the segment has ended) onto norm. */
static dq_status normalize_raw(dq_tok_stream *s, bool seg_end, dq_error *err) {
    size_t p = s->scan;
    if (!seg_end && s->t->byte_level && !s->t->nfc) {
        while (p > 0 && p < s->raw.n && is_cont((uint8_t)s->raw.p[p])) p--;
    } else if (!seg_end) {
        size_t lo = s->raw_lo > 1 ? s->raw_lo : 1;
        p = 0;
        for (size_t q = s->scan; q-- > lo;)
            if (raw_cut_ok(s, q)) {
                p = q;
                break;
            }
        if (p == 0) s->raw_lo = s->scan;
    }
    if (p == 0) return DQ_OK;
    dq_status st = dq_tok_normalize(s->t, s->raw.p, p, s->seg_first && !s->seg_cont, s->seg_cont, &s->norm, err);
    s->seg_cont = true;
    drop_front(&s->raw, p);
    s->raw_at += p;
    s->valid -= p;
    s->scan -= p;
    s->raw_lo = s->scan;
    return st;
}

/* Rule 4b: does no piece contain the two characters that meet at q? */
static bool bpe_cut_ok(const dq_tok_stream *s, size_t q) {
    const uint8_t *x = (const uint8_t *)s->norm.p;
    if (is_cont(x[q])) return false;
    size_t j = q - 1;
    while (j > 0 && is_cont(x[j])) j--;
    utf8proc_int32_t a, b;
    if (utf8proc_iterate(x + j, (utf8proc_ssize_t)(q - j), &a) <= 0 ||
        utf8proc_iterate(x + q, (utf8proc_ssize_t)(s->norm.n - q), &b) <= 0)
        return false;
    return dq_pair_map_get(&s->bigrams, a, b) < 0;
}

/* Where level k's regex subject may begin: `context` characters before pos,
 * not before the subject's start. */
static size_t subject_start(const dq_tok_stream *s, int k) {
    const level *L = &s->lv[k];
    size_t sub = L->pos;
    for (uint32_t c = 0; c < s->context[k] && sub > L->start; c++)
        do sub--;
        while (sub > L->start && is_cont((uint8_t)s->norm.p[sub]));
    return sub;
}

/* Level k takes norm[start..end), its current subject so far (final: all of
 * it), and passes on what that decides: words to level k + 1, ids from the
 * last level. */
static dq_status run_level(dq_tok_stream *s, int k, size_t start, size_t end, bool final, dq_error *err) {
    const dq_tokenizer *t = s->t;
    if (k > t->n_split || k > DQ_MAX_SPLITS) return DQ_OK; /* not reached: the levels stop at n_split */
    level *L = &s->lv[k];
    if (!L->open) *L = (level){true, start, start, start};
    dq_status st = DQ_OK;
    if (k == t->n_split || k == DQ_MAX_SPLITS) { /* byte-pair merging of a word; rule 4b for a whole segment */
        size_t q = final ? end : L->start;
        if (!final && s->bpe_cut) {
            size_t lo = s->norm_lo > L->start + 1 ? s->norm_lo : L->start + 1;
            for (size_t c = end; c-- > lo;)
                if (bpe_cut_ok(s, c)) {
                    q = c;
                    break;
                }
            s->norm_lo = end;
        }
        if (q > L->start) st = dq_tok_split(t, k, s->norm.p + L->start, q - L->start, &s->tmp, &s->out, err);
        L->start = L->pos = L->done = q;
        L->open = !final;
        return st;
    }
    const char *x = s->norm.p;
    uint32_t opts = PCRE2_NO_UTF_CHECK | (final ? 0 : PCRE2_PARTIAL_HARD);
    size_t undecided = end; /* no match starts in [pos, undecided) */
    while (st == DQ_OK && L->pos < end) {
        size_t sub = subject_start(s, k);
        int rc = pcre2_match(t->split_re[k], (PCRE2_SPTR)x + sub, end - sub, L->pos - sub, opts, s->md[k], NULL);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md[k]);
        if (rc == PCRE2_ERROR_PARTIAL) undecided = sub + ov[0];
        else if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) undecided = L->pos; /* a match limit: decide nothing yet */
        if (rc < 0) break; /* final: no more matches (dq_tokenize also stops at any error) */
        size_t a = sub + ov[0], b = sub + ov[1];
        if (!final && a >= end) break; /* an empty match at the end: more text may match there */
        if (a > L->done) st = run_level(s, k + 1, L->done, a, true, err); /* an unmatched gap is a word */
        if (st == DQ_OK && b > a) st = run_level(s, k + 1, a, b, true, err);
        L->done = b > a ? b : a;
        L->pos = b > a ? b : a + 1;
        while (L->pos < end && is_cont((uint8_t)x[L->pos])) L->pos++;
    }
    if (st == DQ_OK && final) {
        if (L->done < end) st = run_level(s, k + 1, L->done, end, true, err);
        L->open = false;
    } else if (st == DQ_OK && undecided > L->pos) {
        /* no match starts in [pos, undecided): the gap from done reaches that far, and so may
         * already hold whole words of the next level */
        L->pos = undecided;
        st = run_level(s, k + 1, L->done, undecided, false, err);
    }
    return st;
}

/* Drops the normalised text no level needs any more. */
static void compact(dq_tok_stream *s) {
    size_t m = s->norm.n;
    for (int k = 0; k <= s->t->n_split; k++) {
        if (!s->lv[k].open) continue;
        size_t need = k < s->t->n_split ? subject_start(s, k) : s->lv[k].start;
        if (need < m) m = need;
    }
    if (m == 0) return;
    drop_front(&s->norm, m);
    for (int k = 0; k <= s->t->n_split; k++) {
        level *L = &s->lv[k];
        L->start = L->start > m ? L->start - m : 0;
        L->pos -= L->pos > m ? m : L->pos;
        L->done -= L->done > m ? m : L->done;
    }
    s->norm_lo -= s->norm_lo > m ? m : s->norm_lo;
}

/* The current segment (raw[0..scan)) is complete: everything into ids. */
static dq_status end_segment(dq_tok_stream *s, dq_error *err) {
    dq_status st = normalize_raw(s, true, err);
    if (st == DQ_OK && (s->norm.n > 0 || s->lv[0].open)) st = run_level(s, 0, 0, s->norm.n, true, err);
    s->norm.n = 0;
    for (int k = 0; k <= DQ_MAX_SPLITS; k++) s->lv[k].open = false;
    s->norm_lo = s->raw_lo = 0;
    s->seg_cont = false;
    return st;
}

static void pass_on(dq_tok_stream *s) {
    if (s->out.n > s->sent && !s->stopped && !s->sink(s->user, s->out.ids + s->sent, s->out.n - s->sent))
        s->stopped = true;
    if (s->out.n > 1) s->out.ids[0] = s->out.ids[s->out.n - 1], s->out.n = 1; /* fuse_unk looks back one id */
    s->sent = s->out.n;
}

static dq_status step(dq_tok_stream *s, bool final, dq_error *err) {
    const dq_tokenizer *t = s->t;
    while (s->valid < s->raw.n) { /* rule 1 */
        utf8proc_int32_t cp;
        utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s->raw.p + s->valid,
                                              (utf8proc_ssize_t)(s->raw.n - s->valid), &cp);
        if (l <= 0 && !final && s->raw.n - s->valid < 4) break;
        if (l <= 0) return dq_fail(err, DQ_ERR_FORMAT, "text is not valid UTF-8 at byte %zu", s->raw_at + s->valid);
        s->valid += (size_t)l;
    }
    dq_status st = DQ_OK;
    while (st == DQ_OK && s->scan < s->valid) { /* rule 2 */
        if (!s->first_byte[(uint8_t)s->raw.p[s->scan]]) {
            s->scan++;
            continue;
        }
        size_t avail = s->valid - s->scan;
        if (!final && avail < s->max_added) break;
        int32_t id;
        size_t m = dq_tok_match_added(t, s->raw.p + s->scan, avail, s->parse_special, &id);
        if (m == 0) {
            s->scan++;
            continue;
        }
        st = end_segment(s, err);
        if (st == DQ_OK && !dq_id_push(&s->out, id)) st = oom(err);
        drop_front(&s->raw, m);
        s->raw_at += m;
        s->valid -= m;
        s->seg_first = false;
    }
    if (st == DQ_OK && final) st = end_segment(s, err);
    if (st == DQ_OK && !final) st = normalize_raw(s, false, err); /* rule 3 */
    if (st == DQ_OK && !final && s->cuts && s->norm.n > 0) {    /* rule 4 */
        st = run_level(s, 0, 0, s->norm.n, false, err);
        compact(s);
    }
    if (st == DQ_OK) pass_on(s);
    return st;
}

dq_status dq_tok_stream_feed(dq_tok_stream *s, const char *text, size_t len, dq_error *err) {
    if (s->stopped || len == 0) return DQ_OK;
    if (!dq_sb_put(&s->raw, text, len)) return oom(err);
    return step(s, false, err);
}

dq_status dq_tok_stream_finish(dq_tok_stream *s, dq_error *err) {
    if (s->stopped) return DQ_OK;
    return step(s, true, err);
}
