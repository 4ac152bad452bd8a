/* GGUF reader and writer (format: ggml/include/gguf.h in llama.cpp). */
#define _POSIX_C_SOURCE 200809L
#include "formats/gguf.h"

#include <errno.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/error.h"
#include "util/files.h"

#define GGUF_MAX_DIMS 4

/* ---- reader --------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t n, off;
    const char *path;
    dq_error *err;
} cursor;

static dq_status truncated(cursor *c, const char *what) {
    return dq_fail(c->err, DQ_ERR_FORMAT, "%s: truncated GGUF (%s at byte %zu of %zu)", c->path, what, c->off, c->n);
}

static bool take(cursor *c, size_t k, const uint8_t **out) {
    if (k > c->n - c->off) return false;
    *out = c->p + c->off;
    c->off += k;
    return true;
}

static bool rd_u32(cursor *c, uint32_t *v) {
    const uint8_t *p;
    if (!take(c, 4, &p)) return false;
    memcpy(v, p, 4);
    return true;
}

static bool rd_u64(cursor *c, uint64_t *v) {
    const uint8_t *p;
    if (!take(c, 8, &p)) return false;
    memcpy(v, p, 8);
    return true;
}

static bool rd_str(cursor *c, const char **s, size_t *len) {
    uint64_t n;
    const uint8_t *p;
    if (!rd_u64(c, &n) || n > c->n - c->off || !take(c, (size_t)n, &p)) return false;
    *s = (const char *)p;
    *len = (size_t)n;
    return true;
}

static size_t scalar_size(uint32_t type) {
    static const size_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < sizeof sz / sizeof sz[0] ? sz[type] : 0;
}

/* Skips one value of `type` (not an array), checking it fits. */
static bool skip_value(cursor *c, uint32_t type) {
    const char *s;
    size_t len;
    const uint8_t *p;
    if (type == DQ_GGUF_STRING) return rd_str(c, &s, &len);
    size_t k = scalar_size(type);
    return k && take(c, k, &p);
}

static dq_status read_kv(cursor *c, dq_gguf_kv *kv) {
    uint32_t type;
    if (!rd_str(c, &kv->key, &kv->key_len)) return truncated(c, "metadata key");
    if (!rd_u32(c, &type)) return truncated(c, "metadata type");
    kv->type = type;
    if (type != DQ_GGUF_ARRAY) {
        if (type > DQ_GGUF_F64)
            return dq_fail(c->err, DQ_ERR_FORMAT, "%s: metadata %.*s has unknown type %u", c->path,
                           (int)kv->key_len, kv->key, type);
        kv->val = c->p + c->off;
        return skip_value(c, type) ? DQ_OK : truncated(c, "metadata value");
    }
    if (!rd_u32(c, &kv->arr_type) || !rd_u64(c, &kv->arr_n)) return truncated(c, "array header");
    if (kv->arr_type > DQ_GGUF_F64 || kv->arr_type == DQ_GGUF_ARRAY)
        return dq_fail(c->err, DQ_ERR_UNSUPPORTED, "%s: metadata %.*s: array of type %u is not supported", c->path,
                       (int)kv->key_len, kv->key, kv->arr_type);
    kv->val = c->p + c->off;
    size_t k = scalar_size(kv->arr_type);
    if (k) { /* fixed-size elements: one bounds check */
        const uint8_t *p;
        if (kv->arr_n > (c->n - c->off) / k || !take(c, (size_t)kv->arr_n * k, &p))
            return dq_fail(c->err, DQ_ERR_FORMAT, "%s: metadata %.*s claims %llu elements, more than the file holds",
                           c->path, (int)kv->key_len, kv->key, (unsigned long long)kv->arr_n);
        return DQ_OK;
    }
    if (kv->arr_n > (c->n - c->off) / 8) /* each string needs at least its length */
        return dq_fail(c->err, DQ_ERR_FORMAT, "%s: metadata %.*s claims %llu strings, more than the file holds",
                       c->path, (int)kv->key_len, kv->key, (unsigned long long)kv->arr_n);
    for (uint64_t i = 0; i < kv->arr_n; i++)
        if (!skip_value(c, DQ_GGUF_STRING)) return truncated(c, "string array");
    return DQ_OK;
}

static bool keyeq(const dq_gguf_kv *kv, const char *key) {
    return strlen(key) == kv->key_len && !memcmp(kv->key, key, kv->key_len);
}

static dq_status read_tensor_info(cursor *c, dq_gguf_tensor *t, uint64_t *offset) {
    const char *name;
    size_t len;
    uint32_t type;
    if (!rd_str(c, &name, &len)) return truncated(c, "tensor name");
    if (len >= sizeof t->name)
        return dq_fail(c->err, DQ_ERR_FORMAT, "%s: tensor name of %zu bytes is too long", c->path, len);
    memcpy(t->name, name, len);
    t->name[len] = 0;
    if (!rd_u32(c, &t->n_dims)) return truncated(c, "tensor dims");
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return dq_fail(c->err, DQ_ERR_FORMAT, "%s: tensor %s has %u dimensions", c->path, t->name, t->n_dims);
    size_t count = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if ((uint32_t)d < t->n_dims && !rd_u64(c, &ne)) return truncated(c, "tensor shape");
        if (ne > INT64_MAX || !dq_mul_size(count, (size_t)ne, &count) || count > ((size_t)1 << 46))
            return dq_fail(c->err, DQ_ERR_FORMAT, "%s: tensor %s has an absurd shape", c->path, t->name);
        t->ne[d] = (int64_t)ne;
    }
    if (!rd_u32(c, &type) || !rd_u64(c, offset)) return truncated(c, "tensor type/offset");
    const dq_ggml_type_info *info = dq_ggml_info(type);
    if (!info)
        return dq_fail(c->err, DQ_ERR_UNSUPPORTED, "%s: tensor %s has ggml type %u, which dashq does not read",
                       c->path, t->name, type);
    if (t->ne[0] % info->block)
        return dq_fail(c->err, DQ_ERR_FORMAT, "%s: tensor %s: row of %lld is not a multiple of the %s block (%d)",
                       c->path, t->name, (long long)t->ne[0], info->name, info->block);
    t->type = (dq_ggml_type)type;
    t->nbytes = count / (size_t)info->block * (size_t)info->bytes;
    return DQ_OK;
}

static dq_status parse_header(cursor *c, dq_gguf *g, uint64_t *n_tensors, uint64_t *n_kv) {
    const uint8_t *magic;
    if (!take(c, 4, &magic) || memcmp(magic, "GGUF", 4))
        return dq_fail(c->err, DQ_ERR_FORMAT, "%s: not a GGUF file (bad magic)", c->path);
    if (!rd_u32(c, &g->version) || !rd_u64(c, n_tensors) || !rd_u64(c, n_kv)) return truncated(c, "header");
    if (g->version < 2 || g->version > 3)
        return dq_fail(c->err, DQ_ERR_UNSUPPORTED, "%s: GGUF version %u (dashq reads 2 and 3)", c->path, g->version);
    /* every KV takes at least 12 bytes and every tensor info at least 28 */
    if (*n_kv > c->n / 12 || *n_tensors > c->n / 28)
        return dq_fail(c->err, DQ_ERR_FORMAT,
                       "%s: header claims %llu tensors and %llu metadata entries, more than the file holds", c->path,
                       (unsigned long long)*n_tensors, (unsigned long long)*n_kv);
    return DQ_OK;
}

static dq_status read_alignment(dq_gguf *g, const char *path, dq_error *err) {
    g->alignment = 32;
    const dq_gguf_kv *kv = dq_gguf_find(g, "general.alignment");
    if (!kv) return DQ_OK;
    uint32_t a = 0;
    if (kv->type == DQ_GGUF_U32) memcpy(&a, kv->val, 4);
    if (a == 0 || (a & (a - 1)) || a > (1u << 20))
        return dq_fail(err, DQ_ERR_FORMAT, "%s: general.alignment must be a power of two, got %u", path, a);
    g->alignment = a;
    return DQ_OK;
}

/* Sort orders for the checks below, over arrays of pointers. */
static int by_offset(const void *a, const void *b) {
    const dq_gguf_tensor *x = *(const dq_gguf_tensor *const *)a, *y = *(const dq_gguf_tensor *const *)b;
    return (x->data > y->data) - (x->data < y->data);
}
static int by_name(const void *a, const void *b) {
    return strcmp((*(const dq_gguf_tensor *const *)a)->name, (*(const dq_gguf_tensor *const *)b)->name);
}
static int by_key(const void *a, const void *b) {
    const dq_gguf_kv *x = *(const dq_gguf_kv *const *)a, *y = *(const dq_gguf_kv *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/* A tensor name or metadata key given twice, or two tensors sharing bytes,
 * would make what we read depend on which copy we happen to pick; llama.cpp
 * refuses all three (gguf.cpp: duplicate key/tensor, offsets not contiguous).
 * Sorted neighbours, so n log n for models with thousands of tensors. */
static dq_status check_unique(const dq_gguf *g, dq_error *err) {
    size_t n = g->n_tensors > g->n_kv ? g->n_tensors : g->n_kv;
    const void **p = malloc((n ? n : 1) * sizeof *p);
    if (!p) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", g->f.path);
    dq_status st = DQ_OK;
    for (size_t i = 0; i < g->n_kv; i++) p[i] = &g->kv[i];
    qsort(p, g->n_kv, sizeof *p, by_key);
    for (size_t i = 1; i < g->n_kv && !st; i++)
        if (!by_key(&p[i - 1], &p[i]))
            st = dq_fail(err, DQ_ERR_FORMAT, "%s: metadata key %.*s appears twice", g->f.path,
                         (int)((const dq_gguf_kv *)p[i])->key_len, ((const dq_gguf_kv *)p[i])->key);
    for (size_t i = 0; i < g->n_tensors; i++) p[i] = &g->tensors[i];
    if (!st) qsort(p, g->n_tensors, sizeof *p, by_name);
    for (size_t i = 1; i < g->n_tensors && !st; i++)
        if (!by_name(&p[i - 1], &p[i]))
            st = dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s appears twice", g->f.path,
                         ((const dq_gguf_tensor *)p[i])->name);
    if (!st) qsort(p, g->n_tensors, sizeof *p, by_offset);
    for (size_t i = 1; i < g->n_tensors && !st; i++) {
        const dq_gguf_tensor *a = p[i - 1], *b = p[i];
        if (a->data + a->nbytes > b->data)
            st = dq_fail(err, DQ_ERR_FORMAT, "%s: tensors %s and %s share data bytes (overlapping offsets)", g->f.path,
                         a->name, b->name);
    }
    free(p);
    return st;
}

static dq_status place_tensors(dq_gguf *g, const uint64_t *offsets, size_t data_start, dq_error *err) {
    const char *path = g->f.path;
    for (size_t i = 0; i < g->n_tensors; i++) {
        dq_gguf_tensor *t = &g->tensors[i];
        if (offsets[i] % g->alignment)
            return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s: offset %llu is not aligned to %zu", path, t->name,
                           (unsigned long long)offsets[i], g->alignment);
        size_t avail = g->f.size - data_start;
        if (offsets[i] > avail || t->nbytes > avail - offsets[i])
            return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s: data [%llu, +%zu) lies past the end of the file", path,
                           t->name, (unsigned long long)offsets[i], t->nbytes);
        t->data = g->f.data + data_start + offsets[i];
    }
    return check_unique(g, err);
}

static dq_status parse(dq_gguf *g, dq_error *err) {
    cursor c = {g->f.data, g->f.size, 0, g->f.path, err};
    uint64_t n_tensors = 0, n_kv = 0;
    dq_status st = parse_header(&c, g, &n_tensors, &n_kv);
    if (st) return st;
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    uint64_t *offsets = calloc(n_tensors ? n_tensors : 1, sizeof *offsets);
    if (!g->kv || !g->tensors || !offsets) {
        free(offsets);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory", g->f.path);
    }
    for (; g->n_kv < n_kv && !st; g->n_kv++) st = read_kv(&c, &g->kv[g->n_kv]);
    if (!st) st = read_alignment(g, g->f.path, err);
    for (; g->n_tensors < n_tensors && !st; g->n_tensors++)
        st = read_tensor_info(&c, &g->tensors[g->n_tensors], &offsets[g->n_tensors]);
    size_t data_start = st ? 0 : (c.off + g->alignment - 1) / g->alignment * g->alignment;
    if (!st && data_start > g->f.size && n_tensors)
        st = dq_fail(err, DQ_ERR_FORMAT, "%s: truncated GGUF (no tensor data)", g->f.path);
    if (!st) st = place_tensors(g, offsets, data_start, err);
    free(offsets);
    return st;
}

dq_status dq_gguf_open(const char *path, dq_gguf *g, dq_error *err) {
    memset(g, 0, sizeof *g);
    dq_status st = dq_map_file(path, &g->f, err);
    if (st) return st;
    if ((st = parse(g, err))) dq_gguf_close(g);
    return st;
}

void dq_gguf_close(dq_gguf *g) {
    dq_unmap_file(&g->f);
    free(g->kv);
    free(g->tensors);
    memset(g, 0, sizeof *g);
}

const dq_gguf_kv *dq_gguf_find(const dq_gguf *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (keyeq(&g->kv[i], key)) return &g->kv[i];
    return NULL;
}

const dq_gguf_tensor *dq_gguf_tensor_find(const dq_gguf *g, const char *name) {
    for (size_t i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

bool dq_gguf_get_int(const dq_gguf *g, const char *key, int64_t *out) {
    const dq_gguf_kv *kv = dq_gguf_find(g, key);
    if (!kv) return false;
    const uint8_t *p = kv->val;
    switch (kv->type) {
    case DQ_GGUF_U8: *out = p[0]; return true;
    case DQ_GGUF_I8: *out = (int8_t)p[0]; return true;
    case DQ_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case DQ_GGUF_I16: { int16_t v; memcpy(&v, p, 2); *out = v; return true; }
    case DQ_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case DQ_GGUF_I32: { int32_t v; memcpy(&v, p, 4); *out = v; return true; }
    case DQ_GGUF_U64: { uint64_t v; memcpy(&v, p, 8); *out = v > INT64_MAX ? INT64_MAX : (int64_t)v; return true; }
    case DQ_GGUF_I64: memcpy(out, p, 8); return true;
    default: return false;
    }
}

bool dq_gguf_get_float(const dq_gguf *g, const char *key, double *out) {
    const dq_gguf_kv *kv = dq_gguf_find(g, key);
    if (kv && kv->type == DQ_GGUF_F32) {
        float f;
        memcpy(&f, kv->val, 4);
        *out = f;
        return true;
    }
    if (kv && kv->type == DQ_GGUF_F64) return memcpy(out, kv->val, 8), true;
    int64_t i;
    if (dq_gguf_get_int(g, key, &i)) return *out = (double)i, true;
    return false;
}

bool dq_gguf_get_bool(const dq_gguf *g, const char *key, bool *out) {
    const dq_gguf_kv *kv = dq_gguf_find(g, key);
    if (!kv || kv->type != DQ_GGUF_BOOL) return false;
    *out = kv->val[0] != 0;
    return true;
}

bool dq_gguf_get_str(const dq_gguf *g, const char *key, const char **s, size_t *len) {
    const dq_gguf_kv *kv = dq_gguf_find(g, key);
    if (!kv || kv->type != DQ_GGUF_STRING) return false;
    uint64_t n;
    memcpy(&n, kv->val, 8);
    *s = (const char *)kv->val + 8;
    *len = (size_t)n;
    return true;
}

void dq_gguf_next_str(const uint8_t **it, const char **s, size_t *len) {
    uint64_t n;
    memcpy(&n, *it, 8);
    *s = (const char *)*it + 8;
    *len = (size_t)n;
    *it += 8 + n;
}

/* ---- writer ------------------------------------------------------------------ */

typedef struct {
    char name[96];
    dq_ggml_type type;
    int n_dims;
    int64_t ne[4];
    size_t nbytes;
    uint64_t offset; /* in the data section (set when the header is written) */
    bool done;       /* its bytes are in the file */
} wtensor;

struct dq_gguf_writer {
    uint8_t *kv; /* serialized metadata */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    wtensor *t;
    size_t n_t, cap_t;
    bool oom;
    dq_out_file out; /* open between header and commit */
    size_t data_start;
};

dq_gguf_writer *dq_gguf_writer_new(void) { return calloc(1, sizeof(dq_gguf_writer)); }

void dq_gguf_writer_free(dq_gguf_writer *w) {
    if (!w) return;
    if (w->out.f) dq_out_abort(&w->out); /* begun, never committed */
    free(w->t);
    free(w->kv);
    free(w);
}

static void put(dq_gguf_writer *w, const void *p, size_t n) {
    if (w->oom) return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        uint8_t *b = realloc(w->kv, cap);
        if (!b) {
            w->oom = true;
            return;
        }
        w->kv = b, w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}

static void put_u32(dq_gguf_writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(dq_gguf_writer *w, uint64_t v) { put(w, &v, 8); }
static void put_str(dq_gguf_writer *w, const char *s, size_t n) {
    put_u64(w, n);
    put(w, s, n);
}
static void put_key(dq_gguf_writer *w, const char *key, uint32_t type) {
    put_str(w, key, strlen(key));
    put_u32(w, type);
    w->n_kv++;
}

void dq_gguf_set_str(dq_gguf_writer *w, const char *key, const char *val) {
    put_key(w, key, DQ_GGUF_STRING);
    put_str(w, val, strlen(val));
}
void dq_gguf_set_u32(dq_gguf_writer *w, const char *key, uint32_t val) {
    put_key(w, key, DQ_GGUF_U32);
    put_u32(w, val);
}
void dq_gguf_set_f32(dq_gguf_writer *w, const char *key, float val) {
    put_key(w, key, DQ_GGUF_F32);
    put(w, &val, 4);
}
void dq_gguf_set_bool(dq_gguf_writer *w, const char *key, bool val) {
    uint8_t b = val;
    put_key(w, key, DQ_GGUF_BOOL);
    put(w, &b, 1);
}
void dq_gguf_set_array(dq_gguf_writer *w, const char *key, uint32_t type, const void *data, size_t n) {
    put_key(w, key, DQ_GGUF_ARRAY);
    put_u32(w, type);
    put_u64(w, n);
    put(w, data, n * scalar_size(type));
}
void dq_gguf_set_str_array(dq_gguf_writer *w, const char *key, const char *const *s, const uint32_t *len, size_t n) {
    put_key(w, key, DQ_GGUF_ARRAY);
    put_u32(w, DQ_GGUF_STRING);
    put_u64(w, n);
    for (size_t i = 0; i < n; i++) put_str(w, s[i], len[i]);
}

void dq_gguf_add_tensor_info(dq_gguf_writer *w, const char *name, dq_ggml_type type, int n_dims, const int64_t *ne,
                             size_t nbytes) {
    if (w->oom) return;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) {
            w->oom = true;
            return;
        }
        w->t = t, w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type, t->n_dims = n_dims, t->nbytes = nbytes;
    for (int d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
}

#define GGUF_ALIGN 32 /* general.alignment's default */

static bool write_pad(FILE *f, size_t *pos, size_t align) {
    static const uint8_t zeros[64];
    size_t pad = (align - *pos % align) % align;
    *pos += pad;
    return fwrite(zeros, 1, pad, f) == pad;
}

/* Magic, counts, metadata and tensor infos (each tensor's offset padded to
 * the alignment), then padding: where the data section starts. */
static bool write_header(dq_gguf_writer *w, FILE *f) {
    uint64_t n_t = w->n_t;
    size_t pos = 0;
    bool ok = fwrite("GGUF", 1, 4, f) == 4;
    uint32_t version = 3;
    ok = ok && fwrite(&version, 4, 1, f) == 1 && fwrite(&n_t, 8, 1, f) == 1 && fwrite(&w->n_kv, 8, 1, f) == 1;
    ok = ok && fwrite(w->kv, 1, w->kv_len, f) == w->kv_len;
    pos = 24 + w->kv_len;
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_t && ok; i++) {
        wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name);
        uint32_t nd = (uint32_t)t->n_dims, type = (uint32_t)t->type;
        t->offset = offset;
        ok = fwrite(&len, 8, 1, f) == 1 && fwrite(t->name, 1, len, f) == len && fwrite(&nd, 4, 1, f) == 1 &&
             fwrite(t->ne, 8, nd, f) == nd && fwrite(&type, 4, 1, f) == 1 && fwrite(&offset, 8, 1, f) == 1;
        pos += 8 + len + 4 + 8 * nd + 4 + 8;
        offset += (t->nbytes + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN;
    }
    ok = ok && write_pad(f, &pos, GGUF_ALIGN);
    w->data_start = pos;
    return ok;
}

dq_status dq_gguf_stream_begin(dq_gguf_writer *w, const char *path, dq_error *err) {
    return dq_gguf_stream_begin_at(w, path, NULL, false, err);
}

dq_status dq_gguf_stream_begin_at(dq_gguf_writer *w, const char *path, const char *tmp, bool reopen, dq_error *err) {
    if (w->oom) return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory building the GGUF file", path);
    dq_status st = tmp ? dq_out_open_at(&w->out, path, tmp, reopen, err) : dq_out_open(&w->out, path, err);
    if (st) return st;
    if (!write_header(w, w->out.f)) {
        dq_out_abort(&w->out);
        return dq_fail(err, DQ_ERR_IO, "%s: write failed", path);
    }
    return DQ_OK;
}

/* Tensor t's bytes and the zeros up to the next aligned offset. */
static dq_status put_tensor(dq_gguf_writer *w, wtensor *t, const void *data, size_t nbytes, dq_error *err) {
    if (nbytes != t->nbytes || t->done)
        return dq_fail(err, DQ_ERR_ARG, "%s: tensor %s: %zu bytes given, %zu expected%s", w->out.path, t->name, nbytes,
                       t->nbytes, t->done ? " (and already written)" : "");
    size_t pos = w->data_start + t->offset + nbytes;
    bool ok = fseeko(w->out.f, (off_t)(w->data_start + t->offset), SEEK_SET) == 0 &&
              fwrite(data, 1, nbytes, w->out.f) == nbytes && write_pad(w->out.f, &pos, GGUF_ALIGN);
    if (!ok) return dq_fail(err, DQ_ERR_IO, "%s: write failed (disk full?)", w->out.path);
    t->done = true;
    return DQ_OK;
}

dq_status dq_gguf_stream_put(dq_gguf_writer *w, const char *name, const void *data, size_t nbytes, dq_error *err) {
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return put_tensor(w, &w->t[i], data, nbytes, err);
    return dq_fail(err, DQ_ERR_ARG, "%s: tensor %s is not in the file's layout", w->out.path, name);
}

dq_status dq_gguf_stream_mark(dq_gguf_writer *w, const char *name, dq_error *err) {
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return w->t[i].done = true, DQ_OK;
    return dq_fail(err, DQ_ERR_ARG, "%s: tensor %s is not in the file's layout", w->out.path, name);
}

dq_status dq_gguf_stream_sync(dq_gguf_writer *w, dq_error *err) {
    if (fflush(w->out.f) != 0 || fsync(fileno(w->out.f)) != 0)
        return dq_fail(err, DQ_ERR_IO, "%s: cannot flush to disk: %s", w->out.tmp, strerror(errno));
    return DQ_OK;
}

dq_status dq_gguf_stream_commit(dq_gguf_writer *w, dq_error *err) {
    for (size_t i = 0; i < w->n_t; i++)
        if (!w->t[i].done) {
            dq_status st = dq_fail(err, DQ_ERR_ARG, "%s: tensor %s was never written", w->out.path, w->t[i].name);
            dq_out_abort(&w->out);
            return st;
        }
    return dq_out_commit(&w->out, err);
}
