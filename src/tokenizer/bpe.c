/* Byte-pair merging with a priority queue: O(n log n) in the word length, so a
 * whole book can be one "word" (sentencepiece models have no pre-tokenizer).
 * Ties go to the leftmost pair, as in sentencepiece and HF tokenizers. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

typedef struct {
    int32_t id;          /* vocab id of the symbol's bytes, -1 if none */
    uint32_t start, len; /* bytes of the word */
    int prev, next;      /* neighbours in the linked list, -1 at the ends */
} symbol;

typedef struct {
    double prio; /* smaller merges first */
    uint32_t start;
    int left, right;
    uint32_t len; /* combined length when queued: detects stale entries */
    int32_t id;   /* id of the merged piece */
} candidate;

typedef struct {
    candidate *v;
    size_t n, cap;
} heap;

static bool before(const candidate *a, const candidate *b) {
    return a->prio < b->prio || (a->prio == b->prio && a->start < b->start);
}

static bool heap_push(heap *h, candidate c) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        candidate *v = realloc(h->v, cap * sizeof *v);
        if (!v) return false;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0 && before(&c, &h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = c;
    return true;
}

static candidate heap_pop(heap *h) {
    candidate top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && before(&h->v[c + 1], &h->v[c])) c++;
        if (!before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n) h->v[i] = last;
    return top;
}

static bool mergeable(const dq_tokenizer *t, int32_t id) {
    return id >= 0 && (t->types[id] == DQ_PIECE_NORMAL || t->types[id] == DQ_PIECE_USER);
}

/* Queues the pair (l, r) if the tokenizer allows merging it. */
static bool try_pair(const dq_tokenizer *t, const char *text, const symbol *s, int l, int r,
                     heap *h) {
    if (l < 0 || r < 0) return true;
    uint32_t len = s[l].len + s[r].len;
    int32_t id = dq_str_map_get(&t->lookup, text + s[l].start, len);
    if (!mergeable(t, id)) return true;
    double prio;
    if (t->mode == DQ_MERGE_BY_SCORE) {
        prio = -(double)t->scores[id];
    } else {
        if (s[l].id < 0 || s[r].id < 0) return true;
        int32_t rank = dq_pair_map_get(&t->merges, s[l].id, s[r].id);
        if (rank < 0) return true;
        prio = rank;
    }
    return heap_push(h, (candidate){prio, s[l].start, l, r, len, id});
}

static uint32_t utf8_len(uint8_t c) {
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0) return 2;
    if ((c & 0xf0) == 0xe0) return 3;
    return 4;
}

static dq_status emit(const dq_tokenizer *t, const char *text, const symbol *s, dq_id_buf *out,
                      dq_error *err) {
    if (mergeable(t, s->id) || (s->id >= 0 && t->mode == DQ_MERGE_BY_RANK)) {
        if (!dq_id_push(out, s->id)) return dq_fail(err, DQ_ERR_NOMEM, "tokenize: out of memory");
        return DQ_OK;
    }
    if (t->byte_fallback) {
        for (uint32_t i = 0; i < s->len; i++) {
            int32_t id = t->byte_id[(uint8_t)text[s->start + i]];
            if (id < 0) id = t->unk;
            if (id < 0 || !dq_id_push(out, id))
                return dq_fail(err, DQ_ERR_FORMAT, "%s: no byte-fallback piece for a byte",
                               t->path);
        }
        return DQ_OK;
    }
    if (t->unk < 0)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: text has a character outside the vocabulary",
                       t->path);
    if (t->fuse_unk && out->n > 0 && out->ids[out->n - 1] == t->unk) return DQ_OK;
    if (!dq_id_push(out, t->unk)) return dq_fail(err, DQ_ERR_NOMEM, "tokenize: out of memory");
    return DQ_OK;
}

dq_status dq_bpe_word(const dq_tokenizer *t, const char *text, size_t len, dq_id_buf *out,
                      dq_error *err) {
    if (len == 0) return DQ_OK;
    if (t->ignore_merges) {
        int32_t whole = dq_str_map_get(&t->lookup, text, len);
        if (whole >= 0) return dq_id_push(out, whole) ? DQ_OK : dq_fail(err, DQ_ERR_NOMEM, "oom");
    }
    symbol *s = malloc(len * sizeof *s);
    heap h = {0};
    if (!s) return dq_fail(err, DQ_ERR_NOMEM, "tokenize: out of memory");
    int n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cl = utf8_len((uint8_t)text[i]);
        if (cl > len - i) cl = (uint32_t)(len - i);
        s[n] = (symbol){dq_str_map_get(&t->lookup, text + i, cl), (uint32_t)i, cl, n - 1, -1};
        if (n > 0) s[n - 1].next = n;
        n++;
        i += cl;
    }
    dq_status st = DQ_OK;
    bool ok = true;
    for (int i = 0; i + 1 < n; i++) ok = ok && try_pair(t, text, s, i, i + 1, &h);
    while (ok && h.n > 0) {
        candidate c = heap_pop(&h);
        symbol *l = &s[c.left], *r = &s[c.right];
        if (l->len == 0 || r->len == 0 || l->next != c.right || l->len + r->len != c.len)
            continue; /* stale: one side already merged elsewhere */
        l->len += r->len;
        l->id = c.id;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = c.left;
        r->len = 0;
        ok = try_pair(t, text, s, l->prev, c.left, &h) && try_pair(t, text, s, c.left, l->next, &h);
    }
    if (!ok) st = dq_fail(err, DQ_ERR_NOMEM, "tokenize: out of memory");
    for (int i = 0; st == DQ_OK && i >= 0 && i < n; i = s[i].next) st = emit(t, text, &s[i], out, err);
    free(h.v);
    free(s);
    return st;
}
