#include "calib/calib_data.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "util/rng.h"

typedef struct {
    int32_t *ids;
    size_t n, cap;
} stream;

static dq_status append_doc(const dq_tokenizer *t, const char *s, size_t len, stream *st, dq_error *err) {
    int32_t *ids;
    size_t n;
    dq_status rc = dq_tokenize(t, s, len, dq_tokenizer_adds_bos(t), false, &ids, &n, err);
    if (rc) return rc;
    if (st->n + n > st->cap) {
        size_t cap = st->cap ? st->cap : 4096;
        while (cap < st->n + n) cap *= 2;
        int32_t *p = realloc(st->ids, cap * sizeof *p);
        if (!p) {
            free(ids);
            return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
        }
        st->ids = p;
        st->cap = cap;
    }
    memcpy(st->ids + st->n, ids, n * sizeof *ids);
    st->n += n;
    free(ids);
    return DQ_OK;
}

static dq_status tokenize_jsonl(const char *path, char *text, const dq_tokenizer *t, stream *st, dq_error *err) {
    size_t line = 0;
    for (char *p = text, *end; *p; p = end + (*end != '\0')) {
        end = strchr(p, '\n');
        if (!end) end = p + strlen(p);
        line++;
        size_t len = (size_t)(end - p);
        if (len == 0 || strspn(p, " \t\r") == len) continue;
        cJSON *o = cJSON_ParseWithLength(p, len);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "text");
        dq_status rc = cJSON_IsString(v) ? append_doc(t, v->valuestring, strlen(v->valuestring), st, err)
                                         : dq_fail(err, DQ_ERR_FORMAT,
                                                   "%s:%zu: not a JSON object with a \"text\" string", path, line);
        cJSON_Delete(o);
        if (rc == DQ_ERR_FORMAT && cJSON_IsString(v) && err) { /* bad UTF-8 */
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            return dq_fail(err, DQ_ERR_FORMAT, "%s:%zu: %s", path, line, msg);
        }
        if (rc) return rc;
    }
    return DQ_OK;
}

/* A line holding only "<|endoftext|>" separates documents. */
static bool is_separator(const char *line, size_t len) {
    if (len && line[len - 1] == '\r') len--;
    return len == 13 && !memcmp(line, "<|endoftext|>", 13);
}

static dq_status tokenize_text(const char *path, const char *text, size_t n, const dq_tokenizer *t, stream *st,
                               dq_error *err) {
    const char *doc = text, *end = text + n;
    for (const char *line = text; line < end;) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *next = nl ? nl + 1 : end;
        bool sep = is_separator(line, (size_t)((nl ? nl : end) - line));
        if (sep || next == end) {
            const char *doc_end = sep ? line : end;
            if (doc_end > doc) {
                dq_status rc = append_doc(t, doc, (size_t)(doc_end - doc), st, err);
                if (rc && err) {
                    char msg[sizeof err->msg];
                    snprintf(msg, sizeof msg, "%s", err->msg);
                    return dq_fail(err, rc, "%s: %s", path, msg);
                }
                if (rc) return rc;
            }
            doc = next;
        }
        line = next;
    }
    return DQ_OK;
}

dq_status dq_calib_load(const char *path, const dq_tokenizer *t, int n, int len, uint64_t seed,
                        dq_calib_set *out, dq_error *err) {
    memset(out, 0, sizeof *out);
    if (n < 1 || n > 1 << 20 || len < 2 || len > 1 << 20)
        return dq_fail(err, DQ_ERR_ARG, "calibration: %d samples of %d tokens is out of range", n, len);
    char *text;
    size_t size;
    dq_status rc = dq_read_text(path, (size_t)1 << 33, &text, &size, err);
    if (rc) return rc;
    stream st = {0};
    size_t lead = strspn(text, " \t\r\n");
    if (lead < size && text[lead] == '{') rc = tokenize_jsonl(path, text, t, &st, err);
    else rc = tokenize_text(path, text, size, t, &st, err);
    free(text);
    if (!rc && st.n < (size_t)len)
        rc = dq_fail(err, DQ_ERR_ARG, "%s: the calibration text has %zu tokens, shorter than one window of %d",
                     path, st.n, len);
    if (!rc && !(out->tokens = malloc((size_t)n * len * sizeof *out->tokens)))
        rc = dq_fail(err, DQ_ERR_NOMEM, "out of memory for %d x %d calibration tokens", n, len);
    if (rc) {
        free(st.ids);
        return rc;
    }
    uint64_t s = seed;
    size_t starts = st.n - (size_t)len + 1;
    for (int i = 0; i < n; i++)
        memcpy(out->tokens + (size_t)i * len, st.ids + dq_splitmix64(&s) % starts, (size_t)len * sizeof(int32_t));
    out->n = n;
    out->len = len;
    out->text_tokens = st.n;
    out->overlapping = (size_t)n * len > st.n;
    free(st.ids);
    return DQ_OK;
}

dq_status dq_calib_embed(const dq_model *m, const dq_calib_set *cs, int w0, int nw, float *X, dq_error *err) {
    const int32_t *tok = cs->tokens + (size_t)w0 * cs->len;
    for (size_t i = 0; i < (size_t)nw * cs->len; i++)
        if (tok[i] < 0 || tok[i] >= m->cfg.vocab_size)
            return dq_fail(err, DQ_ERR_ARG, "calibration token %d is outside the model's vocabulary", tok[i]);
    return dq_model_embed_rows(m, tok, (size_t)nw * cs->len, X, err); /* a lazy model's rows from its file */
}

void dq_calib_free(dq_calib_set *c) {
    free(c->tokens);
    memset(c, 0, sizeof *c);
}
