/* The calibration hidden states between blocks: n windows of (len, dim),
 * the residual stream entering the block the pipeline is on. They are the
 * pipeline's largest allocation once weights stream (Llama-3-8B, 128 x 2048
 * tokens: 4.3 GB in fp32), so they live in RAM or, past the memory budget,
 * in a spill file under a chosen folder, read and written one window at a
 * time with pread/pwrite (page cache, not resident memory). Stored in fp32
 * (results identical to keeping them in RAM) or bf16 (half the bytes; the
 * stream is rounded at each block boundary, a measured quality change). */
#ifndef DQ_HIDDEN_STATES_H
#define DQ_HIDDEN_STATES_H
#include <stddef.h>

#include "dashq.h"

typedef enum { DQ_HIDDEN_F32 = 0, DQ_HIDDEN_BF16, DQ_HIDDEN_DTYPE_COUNT } dq_hidden_dtype;

typedef struct {
    int n, len, dim;
    dq_hidden_dtype dtype;
    size_t win_elems, win_bytes; /* one window: len·dim values, stored */
    void *ram;                   /* every window, or NULL when spilled */
    int fd;                      /* the spill file (already unlinked: kill -9 leaves nothing), or -1 */
    /* A resumable run's two named files: windows are read from fds[cur] and
     * written to the other, which dq_hidden_flip makes current once the
     * block is done, so an interruption leaves the last block's input whole.
     * fds[1] < 0: one store, read and written in place. */
    int fds[2], cur;
    void *io;                    /* one stored window: the bf16 conversions' buffer */
    char path[4096];             /* the spill file's name, for messages */
} dq_hidden;

/* "f32", "bf16" → the dtype; false for another name. */
bool dq_hidden_dtype_parse(const char *name, dq_hidden_dtype *out);
const char *dq_hidden_dtype_name(dq_hidden_dtype t);
/* Bytes the n windows take when stored as t (SIZE_MAX on overflow). */
size_t dq_hidden_bytes(int n, int len, int dim, dq_hidden_dtype t);
/* In RAM when spill_dir is NULL; else in a new file there, its space
 * reserved now (a full disk is an error before any work, naming the need
 * and what is free). */
dq_status dq_hidden_open(dq_hidden *h, int n, int len, int dim, dq_hidden_dtype t, const char *spill_dir,
                         dq_error *err);
/* A resumable run's store (see fds above): files[0], files[1] created with
 * their space reserved, or (existing) an interrupted run's, the windows of
 * files[cur] being the input of the block it stopped at. */
dq_status dq_hidden_open_files(dq_hidden *h, int n, int len, int dim, dq_hidden_dtype t, const char *const files[2],
                               int cur, bool existing, dq_error *err);
/* The windows written since the last flip become the ones read: on disk
 * (fsync) first, for a resumable store. Nothing for the others. */
dq_status dq_hidden_flip(dq_hidden *h, dq_error *err);
/* Window w in place when it is fp32 in RAM (the caller may update it there);
 * NULL otherwise: use dq_hidden_read / dq_hidden_write. */
float *dq_hidden_window(dq_hidden *h, int w);
dq_status dq_hidden_read(dq_hidden *h, int w, float *x, dq_error *err);
dq_status dq_hidden_write(dq_hidden *h, int w, const float *x, dq_error *err);
void dq_hidden_close(dq_hidden *h);
#endif
