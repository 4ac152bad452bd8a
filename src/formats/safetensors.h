/* safetensors: u64 little-endian header length, a JSON header mapping tensor
 * names to {dtype, shape, data_offsets}, then the raw data. */
#ifndef DQ_SAFETENSORS_H
#define DQ_SAFETENSORS_H
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

/* Writes a safetensors file (header padded to 8 bytes, tensors in the given
 * order). The caller makes it atomic by writing inside a temporary folder. */
dq_status dq_st_write(const char *path, const dq_st_out *t, size_t n, dq_error *err);
#endif
