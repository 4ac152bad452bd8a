/* File safety: inputs opened without blocking, outputs that never destroy an
 * input, paths built without silent truncation, and files written under a
 * temporary name that is renamed into place only when complete.
 *
 * Every reader opens through dq_open_input / dq_fopen_input (or dq_map_file /
 * dq_read_file, which use it); every writer and CLI command asks
 * dq_check_output before it writes. */
#ifndef DQ_FILES_H
#define DQ_FILES_H
#include <limits.h>
#include <stdio.h>

#include "dashq.h"
#include "util/error.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* Longest output path we accept: leaves room for ".tmp-PID" and for the
 * names of the files a checkpoint folder holds ("/special_tokens_map.json"). */
#define DQ_OUT_PATH_MAX (PATH_MAX - 64)

/* Bytes the kernel says can be allocated without swapping (MemAvailable in
 * /proc/meminfo); 0 when it does not say. */
size_t dq_mem_available(void);

/* Opens PATH read-only if it is a regular file; otherwise fails naming it
 * ("is a FIFO", "is a directory", ...). A FIFO never blocks: the path is
 * stat'ed first, then opened with O_NONBLOCK and fstat'ed (closing the race of
 * a FIFO swapped in between), and O_NONBLOCK is cleared. Returns the
 * descriptor, or -1 with err set. */
int dq_open_input(const char *path, dq_error *err);
/* The same as a stdio stream ("rb"); NULL with err set. */
FILE *dq_fopen_input(const char *path, dq_error *err);

/* What an output is; each kind says which existing thing it may replace. */
typedef enum {
    DQ_OUT_GGUF,       /* a file; may replace an existing GGUF file */
    DQ_OUT_LOGITS,     /* a file; may replace an existing saved-logits file (magic _logits_) */
    DQ_OUT_FILE,       /* a file inside an output folder; may replace a regular file */
    DQ_OUT_PACKED_DIR, /* a folder; may replace one dashq wrote (dq_dir_is_dashq: a checkpoint or an HF export) */
    DQ_OUT_DIR,        /* a folder written into (not replaced); may already exist as a folder, also one
                        * holding an input: check each file written into it as DQ_OUT_FILE */
} dq_out_kind;

/* Whether OUT may be written given the inputs being read (NULL entries are
 * skipped). Refused, with a one-line message naming OUT and saying what to do
 * instead: an empty or too long path; a path that resolves to an input (same
 * device and inode, so also through symlinks and hard links), to a file inside
 * an input folder, or (folders) to a folder holding an input; an existing
 * thing the kind may not replace (devices, FIFOs, unrelated files). */
dq_status dq_check_output(const char *out, dq_out_kind kind, const char *const *inputs, size_t n_inputs,
                          dq_error *err);

/* snprintf into buf that fails (naming the start of the path) instead of
 * truncating: a truncated path names another file. */
dq_status dq_path_fmt(char *buf, size_t cap, dq_error *err, const char *fmt, ...) DQ_PRINTF(4, 5);

/* A path for messages: itself when short, else its head and tail around "...",
 * so that a 4000-character path leaves room for what went wrong. */
const char *dq_path_brief(const char *path, char *buf, size_t cap);

/* A file written as PATH.tmp-PID (registered for removal on SIGINT/SIGTERM,
 * see util/tmpfiles.h), flushed, fsync'ed and renamed over PATH by commit:
 * PATH never holds a partial file, even after kill -9. */
typedef struct {
    FILE *f;
    int slot; /* in the cleanup table, plus one; 0: none (so a zeroed struct holds nothing) */
    bool keep; /* a resumable run's temporary: abort leaves it for the next run */
    char path[PATH_MAX], tmp[PATH_MAX];
} dq_out_file;

dq_status dq_out_open(dq_out_file *o, const char *path, dq_error *err);
/* The same with a chosen temporary TMP that survives an abort or a signal
 * (a resumable run's, util/resume.h): created, or with reopen its bytes kept
 * for the writer to complete. Commit still renames it over PATH. */
dq_status dq_out_open_at(dq_out_file *o, const char *path, const char *tmp, bool reopen, dq_error *err);
/* Completes the file (checks every write, fflush, fsync, fclose and rename);
 * on failure removes the temporary. Either way o->f is closed. */
dq_status dq_out_commit(dq_out_file *o, dq_error *err);
/* Closes and removes the temporary; PATH is untouched. Safe if never opened. */
void dq_out_abort(dq_out_file *o);

/* Puts the complete folder TMP at OUT. An existing OUT is exchanged with TMP
 * in one step (Linux renameat2 RENAME_EXCHANGE), so OUT always names a
 * complete folder; TMP then holds the old one, for the caller to remove.
 * Where the exchange is not supported, OUT is moved aside to OUT.old-PID
 * first (a short window with nothing at OUT) and *old names it. */
dq_status dq_replace_dir(const char *tmp, const char *out, char *old, size_t old_cap, dq_error *err);
#endif
