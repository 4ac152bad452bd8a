#define _GNU_SOURCE /* posix_fallocate, pread/pwrite */
#include "calib/hidden_states.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "util/error.h"
#include "util/half.h"

static const struct {
    const char *name;
    size_t size;
} DTYPES[DQ_HIDDEN_DTYPE_COUNT] = {
    [DQ_HIDDEN_F32] = {"f32", sizeof(float)},
    [DQ_HIDDEN_BF16] = {"bf16", sizeof(uint16_t)},
};

bool dq_hidden_dtype_parse(const char *name, dq_hidden_dtype *out) {
    for (int t = 0; t < DQ_HIDDEN_DTYPE_COUNT; t++)
        if (name && strcmp(name, DTYPES[t].name) == 0) return *out = (dq_hidden_dtype)t, true;
    return false;
}

const char *dq_hidden_dtype_name(dq_hidden_dtype t) { return DTYPES[t].name; }

size_t dq_hidden_bytes(int n, int len, int dim, dq_hidden_dtype t) {
    size_t a;
    if (n < 0 || len < 0 || dim < 0 || !dq_mul_size((size_t)n * (size_t)len, (size_t)dim, &a) ||
        !dq_mul_size(a, DTYPES[t].size, &a))
        return SIZE_MAX;
    return a;
}

/* A new file in dir, unlinked at once (the descriptor keeps it), with its
 * bytes reserved: a disk that cannot hold it fails here, not mid-run. */
static dq_status spill_open(dq_hidden *h, const char *dir, size_t bytes, dq_error *err) {
    struct statvfs vfs;
    if (statvfs(dir, &vfs) != 0)
        return dq_fail(err, DQ_ERR_IO, "%s: cannot use it for the calibration spill file: %s", dir, strerror(errno));
    double free_mb = (double)vfs.f_bavail * (double)vfs.f_frsize / 1e6, need_mb = (double)bytes / 1e6;
    if (need_mb > free_mb)
        return dq_fail(err, DQ_ERR_IO,
                       "%s: the calibration hidden states need %.0f MB on disk (%d windows x %d tokens x %d, %s), "
                       "only %.0f MB are free; choose another --tmp-dir or fewer windows",
                       dir, need_mb, h->n, h->len, h->dim, DTYPES[h->dtype].name, free_mb);
    snprintf(h->path, sizeof h->path, "%s/.dashq-hidden-XXXXXX", dir);
    h->fd = mkstemp(h->path);
    if (h->fd < 0) return dq_fail(err, DQ_ERR_IO, "%s: cannot create a spill file: %s", dir, strerror(errno));
    unlink(h->path);
    int e = bytes ? posix_fallocate(h->fd, 0, (off_t)bytes) : 0;
    if (e)
        return dq_fail(err, DQ_ERR_IO, "%s: cannot reserve %.0f MB for the calibration hidden states: %s", h->path,
                       need_mb, strerror(e));
    return DQ_OK;
}

/* The fields and the bf16 buffer; no storage yet. */
static dq_status init(dq_hidden *h, int n, int len, int dim, dq_hidden_dtype t, dq_error *err) {
    memset(h, 0, sizeof *h);
    h->fd = h->fds[0] = h->fds[1] = -1;
    if ((unsigned)t >= DQ_HIDDEN_DTYPE_COUNT) return dq_fail(err, DQ_ERR_ARG, "unknown hidden-state dtype %d", (int)t);
    *h = (dq_hidden){.n = n, .len = len, .dim = dim, .dtype = t, .fd = -1, .fds = {-1, -1}};
    h->win_elems = (size_t)len * (size_t)dim;
    h->win_bytes = h->win_elems * DTYPES[t].size;
    if (dq_hidden_bytes(n, len, dim, t) == SIZE_MAX)
        return dq_fail(err, DQ_ERR_NOMEM, "%d x %d calibration hidden states of width %d overflow", n, len, dim);
    if (t != DQ_HIDDEN_F32 && !(h->io = malloc(h->win_bytes ? h->win_bytes : 1)))
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    return DQ_OK;
}

dq_status dq_hidden_open(dq_hidden *h, int n, int len, int dim, dq_hidden_dtype t, const char *spill_dir,
                         dq_error *err) {
    dq_status st = init(h, n, len, dim, t, err);
    size_t bytes = dq_hidden_bytes(n, len, dim, t);
    if (!st && spill_dir) st = spill_open(h, spill_dir, bytes, err);
    else if (!st && !(h->ram = malloc(bytes ? bytes : 1)))
        st = dq_fail(err, DQ_ERR_NOMEM, "out of memory for %d x %d calibration hidden states (%.0f MB); pass a "
                     "--mem-budget to spill them to disk", n, len, (double)bytes / 1e6);
    if (st) dq_hidden_close(h);
    return st;
}

dq_status dq_hidden_open_files(dq_hidden *h, int n, int len, int dim, dq_hidden_dtype t, const char *const files[2],
                               int cur, bool existing, dq_error *err) {
    dq_status st = init(h, n, len, dim, t, err);
    if (st) return st;
    size_t bytes = dq_hidden_bytes(n, len, dim, t);
    for (int i = 0; !st && i < 2; i++) {
        snprintf(h->path, sizeof h->path, "%s", files[i]);
        h->fds[i] = open(files[i], O_RDWR | O_CLOEXEC | (existing ? 0 : O_CREAT | O_TRUNC), 0666);
        struct stat sb;
        if (h->fds[i] < 0) st = dq_fail(err, DQ_ERR_IO, "%s: cannot open: %s", files[i], strerror(errno));
        else if (existing && (fstat(h->fds[i], &sb) != 0 || (size_t)sb.st_size != bytes))
            st = dq_fail(err, DQ_ERR_FORMAT, "%s: not the %zu bytes of %d x %d hidden states of width %d", files[i],
                         bytes, n, len, dim);
        else if (!existing && bytes && (errno = posix_fallocate(h->fds[i], 0, (off_t)bytes)) != 0)
            st = dq_fail(err, DQ_ERR_IO, "%s: cannot reserve %.0f MB for the calibration hidden states: %s", files[i],
                         (double)bytes / 1e6, strerror(errno));
    }
    h->cur = cur & 1;
    h->fd = h->fds[h->cur];
    if (st) dq_hidden_close(h);
    return st;
}

dq_status dq_hidden_flip(dq_hidden *h, dq_error *err) {
    if (h->fds[1] < 0) return DQ_OK;
    int next = h->fds[h->cur ^ 1];
    if (fsync(next) != 0)
        return dq_fail(err, DQ_ERR_IO, "%s: cannot flush the calibration hidden states: %s", h->path, strerror(errno));
    h->cur ^= 1;
    h->fd = h->fds[h->cur];
    return DQ_OK;
}

float *dq_hidden_window(dq_hidden *h, int w) {
    return h->ram && h->dtype == DQ_HIDDEN_F32 ? (float *)h->ram + (size_t)w * h->win_elems : NULL;
}

/* pread/pwrite until done: a short count is not an error by itself. */
static dq_status file_io(dq_hidden *h, bool write, void *buf, size_t n, off_t at, dq_error *err) {
    char *p = buf;
    int fd = write && h->fds[1] >= 0 ? h->fds[h->cur ^ 1] : h->fd; /* a resumable store writes the other file */
    while (n > 0) {
        ssize_t k = write ? pwrite(fd, p, n, at) : pread(fd, p, n, at);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return dq_fail(err, DQ_ERR_IO, "%s: cannot %s the calibration hidden states: %s", h->path,
                           write ? "write" : "read", k < 0 ? strerror(errno) : "the file is shorter than written");
        p += k, n -= (size_t)k, at += k;
    }
    return DQ_OK;
}

static void *stored(dq_hidden *h, int w) { return (char *)h->ram + (size_t)w * h->win_bytes; }

dq_status dq_hidden_read(dq_hidden *h, int w, float *x, dq_error *err) {
    void *src = h->dtype == DQ_HIDDEN_F32 ? (void *)x : h->io;
    if (h->ram) memcpy(src, stored(h, w), h->win_bytes);
    else {
        dq_status st = file_io(h, false, src, h->win_bytes, (off_t)w * (off_t)h->win_bytes, err);
        if (st) return st;
    }
    if (h->dtype == DQ_HIDDEN_BF16)
        for (size_t i = 0; i < h->win_elems; i++) x[i] = dq_bf16_to_f32(((const uint16_t *)h->io)[i]);
    return DQ_OK;
}

dq_status dq_hidden_write(dq_hidden *h, int w, const float *x, dq_error *err) {
    const void *src = x;
    if (h->dtype == DQ_HIDDEN_BF16) {
        uint16_t *b = h->io;
        for (size_t i = 0; i < h->win_elems; i++) b[i] = dq_f32_to_bf16(x[i]);
        src = b;
    }
    if (h->ram) {
        if (src != stored(h, w)) memcpy(stored(h, w), src, h->win_bytes);
        return DQ_OK;
    }
    return file_io(h, true, (void *)src, h->win_bytes, (off_t)w * (off_t)h->win_bytes, err);
}

void dq_hidden_close(dq_hidden *h) {
    free(h->ram);
    free(h->io);
    if (h->fds[1] >= 0 || h->fds[0] >= 0) {
        for (int i = 0; i < 2; i++)
            if (h->fds[i] >= 0) close(h->fds[i]);
    } else if (h->fd >= 0) close(h->fd);
    h->ram = h->io = NULL;
    h->fd = h->fds[0] = h->fds[1] = -1;
}
