#define _GNU_SOURCE /* renameat2 */
#include "util/files.h"
#include "util/out_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/mapped_file.h"
#include "util/tmpfiles.h"

/* ---- messages ------------------------------------------------------------------------ */

const char *dq_path_brief(const char *path, char *buf, size_t cap) {
    size_t n = strlen(path);
    if (n <= 200 || cap < 128) return path;
    snprintf(buf, cap, "%.60s...%s", path, path + n - 60);
    return buf;
}

static const char *kind_of(mode_t m) {
    return S_ISDIR(m)    ? "a directory"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISSOCK(m) ? "a socket"
           : S_ISREG(m)  ? "a regular file"
                         : "not a regular file";
}

dq_status dq_path_fmt(char *buf, size_t cap, dq_error *err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < cap) return DQ_OK;
    char brief[160];
    if (cap) buf[cap - 1] = 0;
    snprintf(brief, sizeof brief, "%.60s...", cap ? buf : "");
    return dq_fail(err, DQ_ERR_ARG, "path too long (%d bytes, at most %zu): %s", n, cap ? cap - 1 : 0, brief);
}

/* ---- inputs ---------------------------------------------------------------------------- */

int dq_open_input(const char *path, dq_error *err) {
    char b[160];
    const char *p = dq_path_brief(path, b, sizeof b);
    struct stat st;
    if (!*path) return dq_fail(err, DQ_ERR_IO, "an input path is empty"), -1;
    if (stat(path, &st) != 0) return dq_fail(err, DQ_ERR_IO, "%s: cannot open: %s", p, strerror(errno)), -1;
    if (!S_ISREG(st.st_mode))
        return dq_fail(err, DQ_ERR_IO, "%s: is %s, not a regular file; give a file", p, kind_of(st.st_mode)), -1;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return dq_fail(err, DQ_ERR_IO, "%s: cannot open: %s", p, strerror(errno)), -1;
    int fl;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (fl = fcntl(fd, F_GETFL)) < 0 ||
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        close(fd);
        return dq_fail(err, DQ_ERR_IO, "%s: is not a regular file (changed while opening)", p), -1;
    }
    return fd;
}

FILE *dq_fopen_input(const char *path, dq_error *err) {
    int fd = dq_open_input(path, err);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        dq_fail(err, DQ_ERR_NOMEM, "%s: cannot open a stream: %s", path, strerror(errno));
    }
    return f;
}

/* ---- outputs ------------------------------------------------------------------------ */

typedef struct {
    dq_out_kind kind;
    bool dir;
    const char *what, *magic; /* what it may replace; its first bytes (NULL: any) */
} out_rule;

static const out_rule RULES[] = {
    {DQ_OUT_GGUF, false, "a GGUF file", "GGUF"},
    {DQ_OUT_LOGITS, false, "a saved-logits file", "_logits_"},
    {DQ_OUT_FILE, false, "a regular file", NULL},
    {DQ_OUT_PACKED_DIR, true, "a folder dashq wrote (a checkpoint or an export)", NULL},
    {DQ_OUT_DIR, true, "a folder", NULL},
};

static bool starts_with_magic(const char *path, const char *magic) {
    int fd = dq_open_input(path, NULL);
    if (fd < 0) return false;
    char head[16] = {0};
    size_t n = strlen(magic);
    bool yes = read(fd, head, n) == (ssize_t)n && !memcmp(head, magic, n);
    close(fd);
    return yes;
}

static bool same_file(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Whether the file `o` is the input or a file directly inside an input folder. */
static bool file_is_input(const struct stat *o, const char *in, const struct stat *is) {
    if (same_file(o, is)) return true;
    if (!S_ISDIR(is->st_mode) || S_ISDIR(o->st_mode)) return false;
    DIR *d = opendir(in);
    if (!d) return false;
    bool hit = false;
    char path[PATH_MAX];
    struct stat st;
    for (struct dirent *e; !hit && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            snprintf(path, sizeof path, "%s/%s", in, e->d_name) < (int)sizeof path && stat(path, &st) == 0)
            hit = same_file(o, &st);
    closedir(d);
    return hit;
}

/* Whether the folder `out` (existing) is an input or holds one at any depth. */
static bool dir_holds_input(const char *out, const char *in) {
    char ro[PATH_MAX], ri[PATH_MAX];
    if (!realpath(out, ro) || !realpath(in, ri)) return false;
    size_t n = strlen(ro);
    if (n == 1) return true; /* "/" holds everything */
    return !strncmp(ri, ro, n) && (ri[n] == 0 || ri[n] == '/');
}

static const char *base_name(const char *p) {
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/') n--; /* "dir/" names dir */
    const char *s = p + n;
    while (s > p && s[-1] != '/') s--;
    return s;
}

dq_status dq_check_output(const char *out, dq_out_kind kind, const char *const *inputs, size_t n_inputs,
                          dq_error *err) {
    const out_rule *r = &RULES[0];
    for (size_t i = 0; i < sizeof RULES / sizeof *RULES; i++)
        if (RULES[i].kind == kind) r = &RULES[i];
    if (!out || !*out)
        return dq_fail(err, DQ_ERR_ARG, "the output path is empty: name a %s to write", r->dir ? "folder" : "file");
    char b[160], b2[160];
    const char *p = dq_path_brief(out, b, sizeof b);
    size_t len = strlen(out);
    if (len > DQ_OUT_PATH_MAX)
        return dq_fail(err, DQ_ERR_ARG, "output path too long (%zu bytes, at most %d): %s", len, DQ_OUT_PATH_MAX, p);
    const char *base = base_name(out);
    if (strcspn(base, "/") > NAME_MAX - 24) /* room for ".tmp-PID" / ".old-PID" */
        return dq_fail(err, DQ_ERR_ARG, "output name too long (%zu bytes, at most %d): %s", strcspn(base, "/"),
                       NAME_MAX - 24, p);
    struct stat os;
    if (stat(out, &os) != 0) {
        if (errno != ENOENT) return dq_fail(err, DQ_ERR_IO, "%s: cannot use as output: %s", p, strerror(errno));
        /* a new name: nothing to destroy (a dangling link is replaced, not followed); its folder must exist */
        char dir[PATH_MAX];
        struct stat ds;
        dq_path_dir(dir, sizeof dir, out);
        int e = stat(dir, &ds) != 0 ? errno : 0;
        if (e || !S_ISDIR(ds.st_mode))
            return dq_fail(err, DQ_ERR_IO, "%s: cannot write there: %s is not an existing folder%s%s", p,
                           dq_path_brief(dir, b2, sizeof b2), e && e != ENOENT ? ": " : "",
                           e && e != ENOENT ? strerror(e) : "");
        return DQ_OK;
    }
    for (size_t i = 0; i < n_inputs; i++) {
        struct stat is;
        if (!inputs[i] || stat(inputs[i], &is) != 0) continue;
        /* a replaced folder must not hold an input; a folder written into (DQ_OUT_DIR) may, its files are checked one
         * by one */
        bool hit = kind == DQ_OUT_PACKED_DIR ? S_ISDIR(os.st_mode) && dir_holds_input(out, inputs[i])
                   : r->dir ? same_file(&os, &is) : file_is_input(&os, inputs[i], &is);
        const char *how = same_file(&os, &is) ? "is the input"
                          : r->dir            ? "holds the input"
                                              : "is a file of the input folder";
        if (hit)
            return dq_fail(err, DQ_ERR_ARG, "%s: the output %s %s; writing would destroy it: choose another name", p,
                           how, dq_path_brief(inputs[i], b2, sizeof b2));
    }
    bool ok = r->dir ? S_ISDIR(os.st_mode) : S_ISREG(os.st_mode) && (!r->magic || starts_with_magic(out, r->magic));
    if (ok && kind == DQ_OUT_PACKED_DIR) ok = dq_dir_is_dashq(out);
    if (!ok)
        return dq_fail(err, DQ_ERR_ARG,
                       "%s exists and is %s, which an output may only replace if it is %s: "
                       "remove it first or choose another name",
                       p,
                       S_ISREG(os.st_mode)   ? "a file"
                       : S_ISDIR(os.st_mode) ? "a folder"
                                             : kind_of(os.st_mode),
                       r->what);
    return DQ_OK;
}

/* ---- temporary file, then rename ------------------------------------------------------------ */

dq_status dq_out_open(dq_out_file *o, const char *path, dq_error *err) {
    memset(o, 0, sizeof *o);
    char b[160];
    dq_status st = dq_path_fmt(o->path, sizeof o->path, err, "%s", path);
    if (!st) st = dq_path_fmt(o->tmp, sizeof o->tmp, err, "%s.tmp-%ld", path, (long)getpid());
    if (st) return st;
    o->slot = dq_tmp_register(o->tmp, false) + 1;
    unlink(o->tmp); /* a stale one from a killed run with our PID */
    int fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 && !(o->f = fdopen(fd, "wb"))) close(fd);
    if (!o->f) {
        int e = errno;
        unlink(o->tmp);
        dq_tmp_unregister(o->slot - 1);
        o->slot = 0;
        o->tmp[0] = 0;
        return dq_fail(err, DQ_ERR_IO, "%s: cannot create: %s", dq_path_brief(path, b, sizeof b), strerror(e));
    }
    return DQ_OK;
}

dq_status dq_out_open_at(dq_out_file *o, const char *path, const char *tmp, bool reopen, dq_error *err) {
    memset(o, 0, sizeof *o);
    char b[160];
    dq_status st = dq_path_fmt(o->path, sizeof o->path, err, "%s", path);
    if (!st) st = dq_path_fmt(o->tmp, sizeof o->tmp, err, "%s", tmp);
    if (st) return st;
    o->keep = true;
    int fd = open(o->tmp, O_RDWR | O_CLOEXEC | (reopen ? 0 : O_CREAT | O_TRUNC), 0666);
    if (fd >= 0 && !(o->f = fdopen(fd, "r+b"))) close(fd);
    if (!o->f)
        return dq_fail(err, DQ_ERR_IO, "%s: cannot %s: %s", dq_path_brief(tmp, b, sizeof b),
                       reopen ? "reopen the partial output" : "create", strerror(errno));
    return DQ_OK;
}

dq_status dq_out_commit(dq_out_file *o, dq_error *err) {
    char b[160];
    const char *p = dq_path_brief(o->path, b, sizeof b);
    const char *what = NULL;
    int e = 0;
    if (!o->f) what = "not open";
    else if (fflush(o->f) != 0 || ferror(o->f)) what = "write failed";
    else if (fsync(fileno(o->f)) != 0) what = "fsync failed";
    if (what) e = errno;
    if (o->f && fclose(o->f) != 0 && !what) what = "write failed", e = errno;
    o->f = NULL;
    if (!what && rename(o->tmp, o->path) != 0) what = "cannot rename into place", e = errno;
    if (what) {
        if (!o->keep) unlink(o->tmp);
        dq_tmp_unregister(o->slot - 1);
        o->slot = 0;
        return dq_fail(err, DQ_ERR_IO, "%s: %s%s%s", p, what, e ? ": " : "", e ? strerror(e) : "");
    }
    dq_tmp_unregister(o->slot - 1);
    o->slot = 0;
    return DQ_OK;
}

void dq_out_abort(dq_out_file *o) {
    if (o->f) fclose(o->f);
    o->f = NULL;
    if (o->tmp[0] && !o->keep) unlink(o->tmp);
    dq_tmp_unregister(o->slot - 1);
    o->slot = 0;
}

/* ---- folders ------------------------------------------------------------------------------------ */

dq_status dq_replace_dir(const char *tmp, const char *out, char *old, size_t old_cap, dq_error *err) {
    char b[160];
    const char *p = dq_path_brief(out, b, sizeof b);
    if (old_cap) old[0] = 0;
    struct stat st;
    if (lstat(out, &st) != 0) {
        if (rename(tmp, out) != 0)
            return dq_fail(err, DQ_ERR_IO, "%s: cannot rename into place: %s", p, strerror(errno));
        return DQ_OK;
    }
#ifdef RENAME_EXCHANGE
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_EXCHANGE) == 0) {
        snprintf(old, old_cap, "%s", tmp); /* tmp fits: the caller built it */
        return DQ_OK;
    }
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return dq_fail(err, DQ_ERR_IO, "%s: cannot exchange with the new folder: %s", p, strerror(errno));
#endif
    dq_status s = dq_path_fmt(old, old_cap, err, "%s.old-%ld", out, (long)getpid());
    if (s) return s;
    if (rename(out, old) != 0) return dq_fail(err, DQ_ERR_IO, "%s: cannot move aside: %s", p, strerror(errno));
    if (rename(tmp, out) != 0) {
        int e = errno;
        if (rename(old, out) != 0)
            return dq_fail(err, DQ_ERR_IO, "%s: cannot rename into place (%s); the old folder is at %s", p, strerror(e),
                           old);
        old[0] = 0;
        return dq_fail(err, DQ_ERR_IO, "%s: cannot rename into place: %s", p, strerror(e));
    }
    return DQ_OK;
}

size_t dq_mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return kb > SIZE_MAX / 1024 ? SIZE_MAX : (size_t)kb * 1024;
}
