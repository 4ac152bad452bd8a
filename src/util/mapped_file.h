/* Read-only memory-mapped files: weights stay in the page cache, not on the heap. */
#ifndef DQ_MAPPED_FILE_H
#define DQ_MAPPED_FILE_H
#include <limits.h>

#include "dashq.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

typedef struct {
    const uint8_t *data;
    size_t size;
    char path[PATH_MAX];
    uint64_t dev, ino; /* the file mapped, to tell it from a replacement */
} dq_mapped_file;

dq_status dq_map_file(const char *path, dq_mapped_file *f, dq_error *err);
void dq_unmap_file(dq_mapped_file *f);
/* Before reading pages not touched yet (a streamed block): the mapped file
 * must not have shrunk under us — reading past its new end is SIGBUS, not an
 * error. A file removed or replaced is fine: the mapping keeps the old one. */
dq_status dq_map_check(const dq_mapped_file *f, dq_error *err);
/* Drops the resident pages of [p, p + n) inside a read-only mapping (the
 * pages around it included): a tensor already converted or finished stops
 * counting in the resident set, and is read from the file again if touched. */
void dq_map_release(const void *p, size_t n);

/* Whole file into a NUL-terminated heap buffer (for JSON and text). max_size
 * guards against reading something absurd by mistake. */
dq_status dq_read_file(const char *path, size_t max_size, char **data, size_t *size,
                       dq_error *err);

/* dq_read_text (dashq.h): dq_read_file for text; a NUL byte is refused,
 * naming the file and its offset (a text editor shows nothing there, and
 * tokenizers would silently encode it). */

bool dq_is_dir(const char *path);
bool dq_file_exists(const char *path);
/* dir + "/" + name into buf; false if it does not fit. */
bool dq_path_join(char *buf, size_t cap, const char *dir, const char *name);
/* Directory part of a path ("." if none). */
void dq_path_dir(char *buf, size_t cap, const char *path);
#endif
