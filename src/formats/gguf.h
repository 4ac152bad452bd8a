/* GGUF (llama.cpp's model file): a bounds-checked reader over a mapped file
 * and an atomic writer. Every count, length, offset and dimension read from
 * the file is checked against the file size before it is used. */
#ifndef DQ_GGUF_H
#define DQ_GGUF_H
#include "dashq.h"
#include "formats/ggml_types.h"
#include "util/mapped_file.h"

enum {
    DQ_GGUF_U8 = 0, DQ_GGUF_I8, DQ_GGUF_U16, DQ_GGUF_I16, DQ_GGUF_U32, DQ_GGUF_I32, DQ_GGUF_F32,
    DQ_GGUF_BOOL, DQ_GGUF_STRING, DQ_GGUF_ARRAY, DQ_GGUF_U64, DQ_GGUF_I64, DQ_GGUF_F64,
};

typedef struct {
    const char *key; /* points into the map, not NUL-terminated */
    size_t key_len;
    uint32_t type;
    uint32_t arr_type; /* element type when type == DQ_GGUF_ARRAY */
    uint64_t arr_n;
    const uint8_t *val; /* the value (for arrays: the first element) */
} dq_gguf_kv;

typedef struct {
    char name[96];
    uint32_t n_dims;
    int64_t ne[4]; /* ne[0] varies fastest (the row length) */
    dq_ggml_type type;
    const uint8_t *data;
    size_t nbytes;
} dq_gguf_tensor;

typedef struct {
    dq_mapped_file f;
    uint32_t version;
    dq_gguf_kv *kv;
    size_t n_kv;
    dq_gguf_tensor *tensors;
    size_t n_tensors;
    size_t alignment;
} dq_gguf;

dq_status dq_gguf_open(const char *path, dq_gguf *g, dq_error *err);
void dq_gguf_close(dq_gguf *g);

const dq_gguf_kv *dq_gguf_find(const dq_gguf *g, const char *key);
const dq_gguf_tensor *dq_gguf_tensor_find(const dq_gguf *g, const char *name);
/* Scalar getters: false when the key is absent or not a number / string. */
bool dq_gguf_get_int(const dq_gguf *g, const char *key, int64_t *out);
bool dq_gguf_get_float(const dq_gguf *g, const char *key, double *out);
bool dq_gguf_get_bool(const dq_gguf *g, const char *key, bool *out);
/* A string value (not NUL-terminated) and its length. */
bool dq_gguf_get_str(const dq_gguf *g, const char *key, const char **s, size_t *len);
/* Walks an array of strings: *it starts at kv->val; each call yields one. */
void dq_gguf_next_str(const uint8_t **it, const char **s, size_t *len);

/* ---- writer ---------------------------------------------------------------- */

typedef struct dq_gguf_writer dq_gguf_writer;

dq_gguf_writer *dq_gguf_writer_new(void);
void dq_gguf_writer_free(dq_gguf_writer *w);
void dq_gguf_set_str(dq_gguf_writer *w, const char *key, const char *val);
void dq_gguf_set_u32(dq_gguf_writer *w, const char *key, uint32_t val);
void dq_gguf_set_f32(dq_gguf_writer *w, const char *key, float val);
void dq_gguf_set_bool(dq_gguf_writer *w, const char *key, bool val);
/* Arrays: type DQ_GGUF_F32 / I32 with n elements, or DQ_GGUF_STRING with n
 * strings given as pointers and lengths. The data is copied. */
void dq_gguf_set_array(dq_gguf_writer *w, const char *key, uint32_t type, const void *data, size_t n);
void dq_gguf_set_str_array(dq_gguf_writer *w, const char *key, const char *const *s, const uint32_t *len,
                           size_t n);
/* Tensors are written as they become final (quantization block by block,
 * issue #15): every tensor announced first with its type, shape ne[0..n_dims)
 * and size (add_tensor_info), stream_begin writes PATH.tmp-PID's header,
 * put writes one tensor's bytes (already encoded in its type) at its aligned
 * offset, in any order, commit checks that every tensor was written and
 * renames over PATH; writer_free of an uncommitted writer removes the
 * temporary. */
void dq_gguf_add_tensor_info(dq_gguf_writer *w, const char *name, dq_ggml_type type, int n_dims, const int64_t *ne,
                             size_t nbytes);
dq_status dq_gguf_stream_begin(dq_gguf_writer *w, const char *path, dq_error *err);
dq_status dq_gguf_stream_put(dq_gguf_writer *w, const char *name, const void *data, size_t nbytes, dq_error *err);
/* A resumable run's: the temporary is tmp (kept on abort; with reopen, an
 * interrupted run's, its bytes kept and its header rewritten), mark says a
 * tensor was written by that run, sync puts what was written on disk. */
dq_status dq_gguf_stream_begin_at(dq_gguf_writer *w, const char *path, const char *tmp, bool reopen, dq_error *err);
dq_status dq_gguf_stream_mark(dq_gguf_writer *w, const char *name, dq_error *err);
dq_status dq_gguf_stream_sync(dq_gguf_writer *w, dq_error *err);
dq_status dq_gguf_stream_commit(dq_gguf_writer *w, dq_error *err);
#endif
