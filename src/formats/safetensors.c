#define _POSIX_C_SOURCE 200809L
#include "formats/safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>

#include "util/error.h"
#include "util/out_dir.h"

#define MAX_HEADER (100u << 20)

static bool dtype_info(const char *s, dq_dtype *t, size_t *size) {
    static const struct { const char *name; int type; size_t size; } tab[] = {
        {"F32", DQ_DTYPE_F32, 4}, {"F16", DQ_DTYPE_F16, 2}, {"BF16", DQ_DTYPE_BF16, 2},
        {"F64", -1, 8}, {"I64", -1, 8}, {"U64", -1, 8}, {"I32", -1, 4}, {"U32", -1, 4},
        {"I16", -1, 2}, {"U16", -1, 2}, {"I8", -1, 1}, {"U8", -1, 1}, {"BOOL", -1, 1},
        {"F8_E4M3", -1, 1}, {"F8_E5M2", -1, 1},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (!strcmp(s, tab[i].name)) {
            *t = tab[i].type < 0 ? DQ_DTYPE_F32 : (dq_dtype)tab[i].type;
            *size = tab[i].size;
            return tab[i].type >= 0;
        }
    *size = 0;
    return false;
}

static dq_status parse_tensor(const dq_st_file *f, const cJSON *e, size_t data_size,
                              dq_st_tensor *t, dq_error *err) {
    const char *path = f->map.path;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || cJSON_GetArraySize(offs) != 2)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s: needs dtype, shape and data_offsets", path,
                       t->name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype->valuestring);
    size_t esize;
    t->known_dtype = dtype_info(dtype->valuestring, &t->type, &esize);
    if (esize == 0)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s: unknown dtype %s", path, t->name, t->dtype);
    t->ndim = cJSON_GetArraySize(shape);
    if (t->ndim > DQ_ST_MAX_DIMS)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "%s: tensor %s: %d dimensions", path, t->name, t->ndim);
    t->n_elems = 1;
    for (int i = 0; i < t->ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9.0e15)
            return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s: bad dimension %d", path, t->name, i);
        t->shape[i] = (int64_t)d->valuedouble;
        if (!dq_mul_size(t->n_elems, (size_t)t->shape[i], &t->n_elems))
            return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s: shape overflows", path, t->name);
    }
    const cJSON *b = cJSON_GetArrayItem(offs, 0), *en = cJSON_GetArrayItem(offs, 1);
    if (!cJSON_IsNumber(b) || !cJSON_IsNumber(en) || b->valuedouble < 0 || en->valuedouble < b->valuedouble ||
        en->valuedouble > (double)data_size)
        return dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s: data_offsets outside the %zu data bytes",
                       path, t->name, data_size);
    size_t begin = (size_t)b->valuedouble, end = (size_t)en->valuedouble, want;
    t->nbytes = end - begin;
    if (!dq_mul_size(t->n_elems, esize, &want) || want != t->nbytes)
        return dq_fail(err, DQ_ERR_FORMAT,
                       "%s: tensor %s: %zu bytes of data but dtype %s x shape needs %zu", path,
                       t->name, t->nbytes, t->dtype, want);
    t->data = f->map.data + 8 + (f->map.size - 8 - data_size) + begin;
    return DQ_OK;
}

static int cmp_offset(const void *a, const void *b) {
    const dq_st_tensor *x = a, *y = b;
    return x->data < y->data ? -1 : x->data > y->data;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const dq_st_tensor *)a)->name, ((const dq_st_tensor *)b)->name);
}

/* A name given twice in the JSON header (cJSON keeps both) would make the
 * tensor we read depend on lookup order; overlapping data would alias two
 * tensors. Both are refused. */
static dq_status check_unique(dq_st_file *f, dq_error *err) {
    dq_st_tensor *sorted = malloc(f->n_tensors * sizeof *sorted + 1);
    if (!sorted) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    memcpy(sorted, f->tensors, f->n_tensors * sizeof *sorted);
    qsort(sorted, f->n_tensors, sizeof *sorted, cmp_name);
    dq_status st = DQ_OK;
    for (size_t i = 1; i < f->n_tensors && !st; i++)
        if (!strcmp(sorted[i - 1].name, sorted[i].name))
            st = dq_fail(err, DQ_ERR_FORMAT, "%s: tensor %s appears twice in the header", f->map.path, sorted[i].name);
    qsort(sorted, f->n_tensors, sizeof *sorted, cmp_offset);
    for (size_t i = 1; i < f->n_tensors && !st; i++)
        if (sorted[i - 1].data + sorted[i - 1].nbytes > sorted[i].data)
            st = dq_fail(err, DQ_ERR_FORMAT, "%s: tensors %s and %s overlap", f->map.path,
                         sorted[i - 1].name, sorted[i].name);
    free(sorted);
    return st;
}

static dq_status parse_header(dq_st_file *f, const cJSON *root, size_t data_size, dq_error *err) {
    size_t n = (size_t)cJSON_GetArraySize(root);
    f->tensors = calloc(n + 1, sizeof *f->tensors);
    if (!f->tensors) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) continue;
        dq_st_tensor *t = &f->tensors[f->n_tensors++];
        t->name = strdup(e->string);
        if (!t->name) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
        dq_status st = parse_tensor(f, e, data_size, t, err);
        if (st) return st;
    }
    return check_unique(f, err);
}

dq_status dq_st_open(const char *path, dq_st_file *f, dq_error *err) {
    memset(f, 0, sizeof *f);
    dq_status st = dq_map_file(path, &f->map, err);
    if (st) return st;
    uint64_t hlen = 0;
    if (f->map.size < 8) {
        st = dq_fail(err, DQ_ERR_FORMAT, "%s: truncated: %zu bytes, no safetensors header", path, f->map.size);
    } else {
        memcpy(&hlen, f->map.data, 8);
        if (hlen > MAX_HEADER || hlen > f->map.size - 8)
            st = dq_fail(err, DQ_ERR_FORMAT, "%s: header claims %llu bytes but the file has %zu", path,
                         (unsigned long long)hlen, f->map.size);
    }
    cJSON *root = NULL;
    if (!st) {
        root = cJSON_ParseWithLength((const char *)f->map.data + 8, (size_t)hlen);
        if (!cJSON_IsObject(root)) st = dq_fail(err, DQ_ERR_FORMAT, "%s: header is not a JSON object", path);
    }
    if (!st) st = parse_header(f, root, f->map.size - 8 - (size_t)hlen, err);
    cJSON_Delete(root);
    if (st) dq_st_close(f);
    return st;
}

void dq_st_close(dq_st_file *f) {
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    dq_unmap_file(&f->map);
    memset(f, 0, sizeof *f);
}

const dq_st_tensor *dq_st_find(const dq_st_file *f, const char *name) {
    for (size_t i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

void *dq_st_list_own(dq_st_list *l, size_t bytes) {
    if (l->oom) return NULL;
    void **o = realloc(l->owned, (l->n_owned + 1) * sizeof *o);
    void *p = o ? malloc(bytes ? bytes : 1) : NULL;
    if (o) l->owned = o;
    if (!p) {
        l->oom = true;
        return NULL;
    }
    l->owned[l->n_owned++] = p;
    return p;
}

void dq_st_list_add(dq_st_list *l, const char *name, const char *dtype, int64_t d0, int64_t d1, const void *data,
                    size_t nbytes) {
    if (l->oom) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 128;
        dq_st_out *t = realloc(l->t, cap * sizeof *t);
        if (!t) {
            l->oom = true;
            return;
        }
        l->t = t;
        l->cap = cap;
    }
    dq_st_out *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->data = data;
    t->nbytes = nbytes;
}

void dq_st_list_free(dq_st_list *l) {
    for (size_t i = 0; i < l->n_owned; i++) free(l->owned[i]);
    free(l->owned);
    free(l->t);
    memset(l, 0, sizeof *l);
}

static dq_status write_all(FILE *f, const void *p, size_t n, const char *path, dq_error *err) {
    if (n && fwrite(p, 1, n, f) != n) return dq_fail(err, DQ_ERR_IO, "%s: write failed (disk full?)", path);
    return DQ_OK;
}

static char *header_json(const dq_st_out *t, size_t n, size_t *off, size_t *size) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *e = cJSON_AddObjectToObject(root, t[i].name), *shape = cJSON_AddArrayToObject(e, "shape");
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddStringToObject(e, "dtype", t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)at));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(at + t[i].nbytes)));
        off[i] = at;
        size[i] = t[i].nbytes;
        at += t[i].nbytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return json;
}

void dq_st_writer_abort(dq_st_writer *w) {
    if (w->f) fclose(w->f);
    free(w->off);
    free(w->size);
    free(w->done);
    memset(w, 0, sizeof *w);
}

static dq_status writer_open(const char *path, const dq_st_out *t, size_t n, bool reopen, dq_st_writer *w,
                             dq_error *err) {
    memset(w, 0, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s", path);
    w->n = n;
    w->off = calloc(n ? n : 1, sizeof *w->off);
    w->size = calloc(n ? n : 1, sizeof *w->size);
    w->done = calloc(n ? n : 1, sizeof *w->done);
    char *json = w->off && w->size && w->done ? header_json(t, n, w->off, w->size) : NULL;
    if (!json) {
        dq_st_writer_abort(w);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: out of memory for the header", path);
    }
    size_t hl = strlen(json), padded = (hl + 7) / 8 * 8;
    uint64_t h = padded;
    w->f = fopen(path, reopen ? "r+b" : "wb"); /* reopen: the same header again over the old one */
    dq_status st = w->f ? DQ_OK : dq_fail(err, DQ_ERR_IO, "%s: cannot %s", path, reopen ? "reopen" : "create");
    if (!st) st = write_all(w->f, &h, 8, path, err);
    if (!st) st = write_all(w->f, json, hl, path, err);
    if (!st) st = write_all(w->f, "        ", padded - hl, path, err);
    free(json);
    w->data_start = 8 + padded;
    if (st) dq_st_writer_abort(w);
    return st;
}

dq_status dq_st_writer_open(const char *path, const dq_st_out *t, size_t n, dq_st_writer *w, dq_error *err) {
    return writer_open(path, t, n, false, w, err);
}

dq_status dq_st_writer_reopen(const char *path, const dq_st_out *t, size_t n, dq_st_writer *w, dq_error *err) {
    return writer_open(path, t, n, true, w, err);
}

void dq_st_writer_mark(dq_st_writer *w, size_t i) {
    if (i < w->n) w->done[i] = w->size[i];
}

dq_status dq_st_writer_sync(dq_st_writer *w, dq_error *err) {
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0)
        return dq_fail(err, DQ_ERR_IO, "%s: cannot flush to disk: %s", w->path, strerror(errno));
    return DQ_OK;
}

dq_status dq_st_writer_put(dq_st_writer *w, size_t i, size_t at, const void *data, size_t nbytes, dq_error *err) {
    if (i >= w->n || at > w->size[i] || nbytes > w->size[i] - at)
        return dq_fail(err, DQ_ERR_ARG, "%s: bytes [%zu, +%zu) are outside tensor %zu", w->path, at, nbytes, i);
    if (!nbytes) return DQ_OK;
    off_t pos = (off_t)(w->data_start + w->off[i] + at);
    if (fseeko(w->f, pos, SEEK_SET) != 0) return dq_fail(err, DQ_ERR_IO, "%s: seek failed", w->path);
    dq_status st = write_all(w->f, data, nbytes, w->path, err);
    if (!st) w->done[i] += nbytes;
    return st;
}

dq_status dq_st_writer_close(dq_st_writer *w, dq_error *err) {
    dq_status st = DQ_OK;
    for (size_t i = 0; !st && i < w->n; i++)
        if (w->done[i] != w->size[i])
            st = dq_fail(err, DQ_ERR_ARG, "%s: tensor %zu got %zu of its %zu bytes", w->path, i, w->done[i],
                         w->size[i]);
    if (!st && fclose(w->f) != 0) st = dq_fail(err, DQ_ERR_IO, "%s: write failed (disk full?)", w->path);
    else if (st) fclose(w->f);
    w->f = NULL;
    dq_st_writer_abort(w);
    return st;
}

dq_status dq_st_write(const char *path, const dq_st_out *t, size_t n, dq_error *err) {
    dq_st_writer w;
    dq_status st = dq_st_writer_open(path, t, n, &w, err);
    for (size_t i = 0; !st && i < n; i++) st = dq_st_writer_put(&w, i, 0, t[i].data, t[i].nbytes, err);
    if (st) {
        dq_st_writer_abort(&w);
        return st;
    }
    return dq_st_writer_close(&w, err);
}

static int cmp_index_name(const void *a, const void *b) {
    return strcmp(((const dq_st_index_entry *)a)->name, ((const dq_st_index_entry *)b)->name);
}

dq_status dq_st_write_index(const char *dir, dq_st_index_entry *e, size_t n, dq_error *err) {
    qsort(e, n, sizeof *e, cmp_index_name);
    cJSON *o = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(o, "metadata");
    cJSON *map = cJSON_AddObjectToObject(o, "weight_map");
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        total += (double)e[i].nbytes;
        cJSON_AddStringToObject(map, e[i].name, e[i].file);
    }
    cJSON_AddNumberToObject(meta, "total_size", total);
    return dq_write_json(dir, "model.safetensors.index.json", o, false, err);
}
