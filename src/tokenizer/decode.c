/* Ids back to UTF-8: byte pieces become raw bytes, the space symbol becomes a
 * space, byte-level characters map back to their bytes. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tokenizer.h"
#include "util/error.h"

/* Writes the bytes of one piece into buf (cap >= 4 * piece length + 4). */
static size_t piece_bytes(const dq_tokenizer *t, int32_t id, char *buf) {
    if (t->types[id] == DQ_PIECE_BYTE) {
        unsigned v = 0;
        for (int i = 3; i < 5; i++) {
            char c = t->pieces[id][i];
            v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        buf[0] = (char)v;
        return 1;
    }
    const char *p = t->pieces[id];
    size_t n = t->piece_len[id], o = 0;
    if (t->byte_level) {
        for (size_t i = 0; i < n;) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)p + i, (utf8proc_ssize_t)(n - i), &cp);
            if (l <= 0) break;
            int b = dq_unicode_to_byte((uint32_t)cp);
            if (b >= 0) buf[o++] = (char)b;
            else memcpy(buf + o, p + i, (size_t)l), o += (size_t)l; /* added tokens are plain text */
            i += (size_t)l;
        }
        return o;
    }
    size_t sl = strlen(t->space);
    for (size_t i = 0; i < n;) {
        if (sl > 1 && i + sl <= n && memcmp(p + i, t->space, sl) == 0) {
            buf[o++] = ' ';
            i += sl;
        } else {
            buf[o++] = p[i++];
        }
    }
    return o;
}

static bool is_hidden(const dq_tokenizer *t, int32_t id) {
    return t->types[id] == DQ_PIECE_CONTROL || t->types[id] == DQ_PIECE_UNKNOWN;
}

dq_status dq_token_piece(const dq_tokenizer *t, int32_t prev, int32_t id, char *buf, size_t cap,
                         size_t *len) {
    *len = 0;
    if (id < 0 || id >= t->n_vocab) return DQ_ERR_ARG;
    if (cap < 4 * (size_t)t->piece_len[id] + 4) return DQ_ERR_ARG;
    if (is_hidden(t, id) && !t->byte_level) return DQ_OK;
    size_t n = piece_bytes(t, id, buf);
    /* sentencepiece models start words with a space; drop it right after BOS */
    if (!t->byte_level && prev == t->bos && n > 0 && buf[0] == ' ' && t->prepend != DQ_PREPEND_NONE) {
        memmove(buf, buf + 1, n - 1);
        n--;
    }
    *len = n;
    return DQ_OK;
}

dq_status dq_detokenize(const dq_tokenizer *t, const int32_t *ids, size_t n, char **text,
                        size_t *len, dq_error *err) {
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) {
            *text = NULL;
            return dq_fail(err, DQ_ERR_ARG, "detokenize: id %d out of range", ids[i]);
        }
        cap += 4 * (size_t)t->piece_len[ids[i]] + 4;
    }
    char *out = malloc(cap);
    if (!out) return dq_fail(err, DQ_ERR_NOMEM, "detokenize: out of memory");
    size_t o = 0;
    bool at_start = true;
    for (size_t i = 0; i < n; i++) {
        if (is_hidden(t, ids[i]) && !t->byte_level) continue;
        size_t k = piece_bytes(t, ids[i], out + o);
        if (at_start && !t->byte_level && t->prepend != DQ_PREPEND_NONE && k > 0 && out[o] == ' ') {
            memmove(out + o, out + o + 1, k - 1); /* the dummy prefix is not text */
            k--;
        }
        at_start = false;
        o += k;
    }
    out[o] = '\0';
    *text = out;
    if (len) *len = o;
    return DQ_OK;
}
