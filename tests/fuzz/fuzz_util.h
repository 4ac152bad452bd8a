/* Helpers for the libFuzzer targets: the loaders take paths, so inputs are
 * written to files (a memfd for one-file formats, a private folder under
 * /dev/shm for the formats that read several files of one folder) and the
 * real entry points read them. Header-only: each target is one .c file. */
#ifndef DQ_FUZZ_UTIL_H
#define DQ_FUZZ_UTIL_H
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* With DQ_FUZZ_VERBOSE set, prints what the loader said about each input
 * (to check that seeds load, or see why an input is refused). */
static inline void fz_say(const char *what, int status, const char *msg) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("DQ_FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "%s: %s\n", what, status ? msg : "ok");
}

/* Writes data to a fresh memfd and puts its /proc/self/fd path in path;
 * returns the fd for the caller to close. */
static inline int fz_memfd(const char *name, const uint8_t *data, size_t size, char path[64]) {
    int fd = memfd_create(name, 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) abort();
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

static char fz_dir_path[256];

static void fz_dir_remove(void) {
    DIR *d = opendir(fz_dir_path);
    if (!d) return;
    char p[600];
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.' && snprintf(p, sizeof p, "%s/%s", fz_dir_path, e->d_name) < (int)sizeof p) unlink(p);
    closedir(d);
    rmdir(fz_dir_path);
}

/* A folder private to this process (on tmpfs when there is one), removed at
 * exit; emptied by each fz_dir() call so that one input's files never leak
 * into the next. */
static inline const char *fz_dir(void) {
    if (!fz_dir_path[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fz_dir_path, sizeof fz_dir_path, "%s/dashq-fuzz-XXXXXX", base);
        if (!mkdtemp(fz_dir_path)) abort();
        atexit(fz_dir_remove);
    } else {
        DIR *d = opendir(fz_dir_path);
        if (!d) abort();
        char p[600];
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] != '.' && snprintf(p, sizeof p, "%s/%s", fz_dir_path, e->d_name) < (int)sizeof p) unlink(p);
        closedir(d);
    }
    return fz_dir_path;
}

/* Writes dir/name; returns the path in a static buffer (valid until the next call). */
static inline const char *fz_put(const char *dir, const char *name, const uint8_t *data, size_t size) {
    static char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    return p;
}

/* Several files in one input, separated by FZ_SEP (binary-safe enough: it
 * never occurs in the seeds' files). fz_split gives up to max sections;
 * section i is absent (len[i] = SIZE_MAX) when the input has fewer. */
#define FZ_SEP "\n=====8<=====\n"
static inline int fz_split(const uint8_t *data, size_t size, const uint8_t **at, size_t *len, int max) {
    int n = 0;
    for (int i = 0; i < max; i++) at[i] = NULL, len[i] = SIZE_MAX;
    const size_t sl = sizeof FZ_SEP - 1;
    while (n < max) {
        const uint8_t *s = n < max - 1 ? memmem(data, size, FZ_SEP, sl) : NULL;
        at[n] = data;
        len[n] = s ? (size_t)(s - data) : size;
        n++;
        if (!s) break;
        size -= (size_t)(s - data) + sl;
        data = s + sl;
    }
    return n;
}

/* Puts each present, non-empty section i as dir/names[i]: an empty section
 * stands for a missing file, so that a later one can be given alone. */
static inline void fz_put_sections(const char *dir, const char *const *names, const uint8_t *data, size_t size,
                                   int max) {
    const uint8_t *at[8];
    size_t len[8];
    if (max > 8) abort();
    fz_split(data, size, at, len, max);
    for (int i = 0; i < max; i++)
        if (len[i] != SIZE_MAX && len[i] && names[i]) fz_put(dir, names[i], at[i], len[i]);
}
#endif
