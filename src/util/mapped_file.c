#define _DEFAULT_SOURCE /* madvise */
#include "util/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
#include "util/files.h"

dq_status dq_map_file(const char *path, dq_mapped_file *f, dq_error *err) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd = dq_open_input(path, err);
    if (fd < 0) return err ? err->code : DQ_ERR_IO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return dq_fail(err, DQ_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (st.st_size == 0) {
        close(fd);
        return dq_fail(err, DQ_ERR_FORMAT, "%s: file is empty", path);
    }
    f->dev = (uint64_t)st.st_dev;
    f->ino = (uint64_t)st.st_ino;
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return dq_fail(err, DQ_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    f->data = p;
    f->size = (size_t)st.st_size;
    return DQ_OK;
}

dq_status dq_map_check(const dq_mapped_file *f, dq_error *err) {
    struct stat st;
    if (!f->data || stat(f->path, &st) != 0 || (uint64_t)st.st_dev != f->dev || (uint64_t)st.st_ino != f->ino ||
        (size_t)st.st_size >= f->size)
        return DQ_OK;
    return dq_fail(err, DQ_ERR_IO, "%s: the file shrank from %zu to %lld bytes while it was being read; restore it "
                   "and run again", f->path, f->size, (long long)st.st_size);
}

void dq_unmap_file(dq_mapped_file *f) {
    if (f->data) munmap((void *)f->data, f->size);
    f->data = NULL;
    f->size = 0;
}

dq_status dq_read_file(const char *path, size_t max_size, char **data, size_t *size,
                       dq_error *err) {
    *data = NULL;
    FILE *fp = dq_fopen_input(path, err);
    if (!fp) return err ? err->code : DQ_ERR_IO;
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        fclose(fp);
        return dq_fail(err, DQ_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    }
    if ((uint64_t)st.st_size > max_size) {
        fclose(fp);
        return dq_fail(err, DQ_ERR_FORMAT, "%s: file too large (%lld bytes, limit %zu)", path,
                       (long long)st.st_size, max_size);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(fp);
        return dq_fail(err, DQ_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = fread(buf, 1, n, fp);
    fclose(fp);
    if (got != n) {
        free(buf);
        return dq_fail(err, DQ_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = '\0';
    *data = buf;
    if (size) *size = n;
    return DQ_OK;
}

dq_status dq_read_text(const char *path, size_t max_size, char **data, size_t *size, dq_error *err) {
    size_t n = 0;
    dq_status st = dq_read_file(path, max_size, data, &n, err);
    if (st) return st;
    const char *nul = memchr(*data, 0, n);
    if (nul) {
        st = dq_fail(err, DQ_ERR_FORMAT, "%s: NUL byte at offset %zu: not a text file", path, (size_t)(nul - *data));
        free(*data);
        *data = NULL;
        return st;
    }
    if (size) *size = n;
    return DQ_OK;
}

bool dq_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool dq_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool dq_path_join(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    return n >= 0 && (size_t)n < cap;
}

void dq_path_dir(char *buf, size_t cap, const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(buf, cap, ".");
        return;
    }
    size_t n = (size_t)(slash - path);
    if (n == 0) n = 1; /* "/file" -> "/" */
    snprintf(buf, cap, "%.*s", (int)n, path);
}

void dq_map_release(const void *p, size_t n) {
    long ps = sysconf(_SC_PAGESIZE);
    if (!p || !n || ps <= 0) return;
    uintptr_t a = (uintptr_t)p / (uintptr_t)ps * (uintptr_t)ps, e = (uintptr_t)p + n;
    madvise((void *)a, e - a, MADV_DONTNEED); /* advice: a failure only keeps the pages */
}
