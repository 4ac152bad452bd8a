/* sentencepiece .model files (a ModelProto protobuf) and llama2.c's
 * tokenizer.bin export of the same vocabulary. Only the fields the encoder
 * needs are read: pieces (text, score, type), byte_fallback, model_type and
 * the normaliser flags; everything else is skipped by wire type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"

typedef struct {
    const uint8_t *p, *end;
    bool bad;
} pb;

static uint64_t pb_varint(pb *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) break;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    r->bad = true;
    return 0;
}

/* Reads a field key; returns false at the end or on error. */
static bool pb_next(pb *r, uint32_t *field, uint32_t *wire) {
    if (r->bad || r->p >= r->end) return false;
    uint64_t k = pb_varint(r);
    *field = (uint32_t)(k >> 3);
    *wire = (uint32_t)(k & 7);
    return !r->bad;
}

static pb pb_sub(pb *r) {
    uint64_t n = pb_varint(r);
    pb s = {r->p, r->p, true};
    if (r->bad || n > (uint64_t)(r->end - r->p)) {
        r->bad = true;
        return s;
    }
    s = (pb){r->p, r->p + n, false};
    r->p += n;
    return s;
}

static void pb_skip(pb *r, uint32_t wire) {
    size_t n = wire == 1 ? 8 : wire == 5 ? 4 : 0;
    if (wire == 0) pb_varint(r);
    else if (wire == 2) pb_sub(r);
    else if (n && (size_t)(r->end - r->p) >= n) r->p += n;
    else r->bad = true;
}

typedef struct {
    bool add_dummy_prefix, remove_extra_ws, byte_fallback;
    int model_type; /* 1 unigram, 2 bpe */
    int n_pieces;
} spm_info;

static void read_normalizer(pb r, spm_info *info) {
    uint32_t f, w;
    while (pb_next(&r, &f, &w)) {
        if (w == 0 && f == 3) info->add_dummy_prefix = pb_varint(&r) != 0;
        else if (w == 0 && f == 4) info->remove_extra_ws = pb_varint(&r) != 0;
        else pb_skip(&r, w);
    }
}

static void read_trainer(pb r, spm_info *info) {
    uint32_t f, w;
    while (pb_next(&r, &f, &w)) {
        if (w == 0 && f == 3) info->model_type = (int)pb_varint(&r);
        else if (w == 0 && f == 35) info->byte_fallback = pb_varint(&r) != 0;
        else pb_skip(&r, w);
    }
}

static dq_status read_piece(pb r, dq_tokenizer *t, int id, dq_error *err) {
    uint32_t f, w;
    while (pb_next(&r, &f, &w)) {
        if (w == 2 && f == 1) {
            pb s = pb_sub(&r);
            if (r.bad) break;
            dq_status st = dq_tok_set_piece(t, id, (const char *)s.p, (size_t)(s.end - s.p), err);
            if (st) return st;
        } else if (w == 5 && f == 2) {
            if ((size_t)(r.end - r.p) < 4) {
                r.bad = true;
                break;
            }
            memcpy(&t->scores[id], r.p, 4);
            r.p += 4;
        } else if (w == 0 && f == 3) {
            uint64_t ty = pb_varint(&r);
            t->types[id] = ty >= 1 && ty <= 6 ? (uint8_t)ty : DQ_PIECE_NORMAL;
        } else {
            pb_skip(&r, w);
        }
    }
    if (r.bad) return dq_fail(err, DQ_ERR_FORMAT, "%s: piece %d is malformed", t->path, id);
    return DQ_OK;
}

/* One pass counts pieces and reads the specs; a second (when t) fills pieces. */
static dq_status walk(const dq_mapped_file *f, dq_tokenizer *t, spm_info *info, dq_error *err) {
    pb r = {f->data, f->data + f->size, false};
    uint32_t field, wire;
    int n = 0;
    while (pb_next(&r, &field, &wire)) {
        if (wire == 2 && field == 1) {
            pb sub = pb_sub(&r);
            if (t && !r.bad) {
                dq_status st = read_piece(sub, t, n, err);
                if (st) return st;
            }
            n++;
        } else if (wire == 2 && field == 2) {
            read_trainer(pb_sub(&r), info);
        } else if (wire == 2 && field == 3) {
            read_normalizer(pb_sub(&r), info);
        } else {
            pb_skip(&r, wire);
        }
    }
    if (r.bad) return dq_fail(err, DQ_ERR_FORMAT, "%s: malformed sentencepiece model", f->path);
    info->n_pieces = n;
    return DQ_OK;
}

static dq_status spm_read_info(const char *path, spm_info *info, dq_error *err) {
    *info = (spm_info){true, true, false, 1, 0};
    dq_mapped_file f;
    dq_status st = dq_map_file(path, &f, err);
    if (st) return st;
    st = walk(&f, NULL, info, err);
    dq_unmap_file(&f);
    return st;
}

static void spm_defaults(dq_tokenizer *t, const spm_info *info) {
    t->mode = DQ_MERGE_BY_SCORE;
    t->prepend = info->add_dummy_prefix ? DQ_PREPEND_FIRST : DQ_PREPEND_NONE;
    t->collapse_ws = info->remove_extra_ws;
    t->byte_fallback = info->byte_fallback;
    t->add_bos = true;
}

dq_status dq_tok_load_spm_model(const char *path, dq_tokenizer *t, dq_error *err) {
    spm_info info;
    dq_status st = spm_read_info(path, &info, err);
    if (st) return st;
    if (info.model_type != 2)
        return dq_fail(err, DQ_ERR_UNSUPPORTED,
                       "%s: sentencepiece model type %d is not BPE (unigram is not supported)", path,
                       info.model_type);
    if ((st = dq_tok_alloc(t, info.n_pieces, err))) return st;
    dq_mapped_file f;
    if ((st = dq_map_file(path, &f, err))) return st;
    st = walk(&f, t, &info, err);
    dq_unmap_file(&f);
    if (st) return st;
    spm_defaults(t, &info);
    t->space = "\xe2\x96\x81"; /* "▁" */
    for (int i = 0; i < t->n_vocab; i++) {
        if (t->types[i] == DQ_PIECE_UNKNOWN && t->unk < 0) t->unk = i;
        if (t->piece_len[i] == 3 && !memcmp(t->pieces[i], "<s>", 3)) t->bos = i;
        if (t->piece_len[i] == 4 && !memcmp(t->pieces[i], "</s>", 4)) t->eos = i;
    }
    return dq_tok_finish(t, err);
}

/* The .model that sits beside a tokenizer.bin holds the normaliser flags the
 * .bin export dropped. */
static bool find_sibling_model(const char *bin, char *out, size_t cap) {
    size_t n = strlen(bin);
    if (n > 4 && n < cap && !strcmp(bin + n - 4, ".bin")) {
        snprintf(out, cap, "%.*s.model", (int)(n - 4), bin);
        if (dq_file_exists(out)) return true;
    }
    char dir[PATH_MAX];
    dq_path_dir(dir, sizeof dir, bin);
    return dq_path_join(out, cap, dir, "tokenizer.model") && dq_file_exists(out);
}

dq_status dq_tok_load_llama2c(const char *path, dq_tokenizer *t, dq_error *err) {
    dq_mapped_file f;
    dq_status st = dq_map_file(path, &f, err);
    if (st) return st;
    dq_config mc;
    if (dq_llama2c_is_model(f.data, f.size, &mc)) { /* `tokenize MODEL.bin`: the tokenizer is beside it */
        dq_unmap_file(&f);
        return dq_fail(err, DQ_ERR_ARG,
                       "%s: a llama2.c model (dim %d, %d layers, vocab %d), not a tokenizer; give its tokenizer "
                       "(tokenizer.bin or tok%d.bin beside it)",
                       path, mc.dim, mc.n_layers, mc.vocab_size, mc.vocab_size);
    }
    uint64_t hl = 0;
    if (f.size >= 10) memcpy(&hl, f.data, 8);
    if (f.size >= 10 && hl <= f.size - 8 && f.data[8] == '{' && f.data[9] == '"') { /* safetensors: u64 length, JSON */
        dq_unmap_file(&f);
        return dq_fail(err, DQ_ERR_ARG,
                       "%s: a safetensors weights file, not a tokenizer; give the folder's tokenizer.json", path);
    }
    /* int32 max_token_length, then {float score, int32 len, len bytes} to EOF */
    int n = 0;
    size_t off = 4;
    while (st == DQ_OK && off < f.size) {
        int32_t len = -1;
        if (f.size - off >= 8) memcpy(&len, f.data + off + 4, 4);
        if (len < 0 || (size_t)len > f.size - off - 8)
            st = dq_fail(err, DQ_ERR_FORMAT, "%s: token %d is truncated or claims %d bytes past the end",
                         path, n, len);
        else
            off += 8 + (size_t)len, n++;
    }
    if (st == DQ_OK && f.size < 4) st = dq_fail(err, DQ_ERR_FORMAT, "%s: truncated header", path);
    if (st == DQ_OK) st = dq_tok_alloc(t, n, err);
    off = 4;
    for (int i = 0; st == DQ_OK && i < n; i++) {
        int32_t len;
        memcpy(&t->scores[i], f.data + off, 4);
        memcpy(&len, f.data + off + 4, 4);
        st = dq_tok_set_piece(t, i, (const char *)f.data + off + 8, (size_t)len, err);
        off += 8 + (size_t)len;
    }
    dq_unmap_file(&f);
    if (st) return st;
    if (n < 3) return dq_fail(err, DQ_ERR_FORMAT, "%s: only %d tokens", path, n);
    spm_info info = {true, false, true, 2, n}; /* llama2.c's own encoder semantics */
    char model[PATH_MAX];
    spm_info sib;
    if (find_sibling_model(path, model, sizeof model) && spm_read_info(model, &sib, NULL) == DQ_OK &&
        sib.n_pieces == n)
        info.remove_extra_ws = sib.remove_extra_ws, info.add_dummy_prefix = sib.add_dummy_prefix;
    spm_defaults(t, &info);
    t->space = " "; /* the export turned "▁" into spaces */
    t->unk = 0, t->bos = 1, t->eos = 2;
    t->types[0] = DQ_PIECE_UNKNOWN;
    t->types[1] = t->types[2] = DQ_PIECE_CONTROL;
    return dq_tok_finish(t, err);
}
