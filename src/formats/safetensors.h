/* safetensors: u64 little-endian header length, a JSON header mapping tensor
 * names to {dtype, shape, data_offsets}, then the raw data. */
#ifndef DQ_SAFETENSORS_H
#define DQ_SAFETENSORS_H
#include <stdio.h>

#include "model/model.h"
#include "util/mapped_file.h"

#define DQ_ST_MAX_DIMS 4

typedef struct {
    char *name;
    char dtype[12];   /* as written: "F32", "BF16", "I32", ... */
    bool known_dtype; /* F32, F16 or BF16 */
    dq_dtype type;
    int ndim;
    int64_t shape[DQ_ST_MAX_DIMS];
    size_t n_elems;
    const uint8_t *data;
    size_t nbytes;
} dq_st_tensor;

typedef struct {
    dq_mapped_file map;
    dq_st_tensor *tensors;
    size_t n_tensors;
} dq_st_file;

/* Maps and validates the whole header: every tensor's offsets lie inside the
 * data, its byte size matches dtype x shape, and offsets do not overlap. */
dq_status dq_st_open(const char *path, dq_st_file *f, dq_error *err);
void dq_st_close(dq_st_file *f);
const dq_st_tensor *dq_st_find(const dq_st_file *f, const char *name);

/* One tensor to write; data holds nbytes in the named dtype. */
typedef struct {
    char name[192];
    const char *dtype; /* "F32", "F16", "BF16", "I32" */
    int ndim;
    int64_t shape[DQ_ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} dq_st_out;

/* The tensors of a file being built, in order, and the buffers converted for
 * them (owned here). Any allocation failure sets oom; later calls do nothing,
 * so a writer checks once, before dq_st_write. */
typedef struct {
    dq_st_out *t;
    size_t n, cap;
    void **owned;
    size_t n_owned;
    bool oom;
} dq_st_list;

/* A buffer of `bytes` that the list frees; NULL (and oom) on failure. */
void *dq_st_list_own(dq_st_list *l, size_t bytes);
/* Appends tensor `name`: 1-D when d1 is 0. */
void dq_st_list_add(dq_st_list *l, const char *name, const char *dtype, int64_t d0, int64_t d1, const void *data,
                    size_t nbytes);
void dq_st_list_free(dq_st_list *l);

/* Writes a safetensors file (header padded to 8 bytes, tensors in the given
 * order). The caller makes it atomic by writing inside a temporary folder. */
dq_status dq_st_write(const char *path, const dq_st_out *t, size_t n, dq_error *err);

/* model.safetensors.index.json in dir, as transformers writes it for a
 * sharded folder: metadata.total_size (the tensors' bytes) and weight_map,
 * each tensor's file, by name (e is sorted by name). */
typedef struct {
    const char *name, *file;
    size_t nbytes;
} dq_st_index_entry;
dq_status dq_st_write_index(const char *dir, dq_st_index_entry *e, size_t n, dq_error *err);

/* A safetensors file written as its tensors become available (a model
 * quantized block by block, a synthetic model generated tensor by tensor):
 * the header is written first from the names, dtypes, shapes and sizes alone
 * (t[i].data is not read), then each tensor's bytes go to their own offset,
 * in any order and in pieces. Close checks every byte was written; the
 * result is byte-identical to dq_st_write of the same tensors. */
typedef struct {
    FILE *f;
    char path[PATH_MAX];
    size_t n, data_start;
    size_t *off, *size, *done; /* per tensor: its offset in the data, its bytes, bytes written so far */
} dq_st_writer;

dq_status dq_st_writer_open(const char *path, const dq_st_out *t, size_t n, dq_st_writer *w, dq_error *err);
/* A file an interrupted run began with the same tensors (a resumed run):
 * its bytes are kept; mark says tensor i was written then. */
dq_status dq_st_writer_reopen(const char *path, const dq_st_out *t, size_t n, dq_st_writer *w, dq_error *err);
void dq_st_writer_mark(dq_st_writer *w, size_t i);
/* What was put so far, on disk (fflush + fsync): a resume point. */
dq_status dq_st_writer_sync(dq_st_writer *w, dq_error *err);
/* Bytes [at, at + nbytes) of tensor i. */
dq_status dq_st_writer_put(dq_st_writer *w, size_t i, size_t at, const void *data, size_t nbytes, dq_error *err);
dq_status dq_st_writer_close(dq_st_writer *w, dq_error *err);
/* Closes without the completeness check (an output being abandoned). */
void dq_st_writer_abort(dq_st_writer *w);
#endif
