#define _POSIX_C_SOURCE 200809L
#include "util/out_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
#include "util/files.h"
#include "util/mapped_file.h"
#include "util/tmpfiles.h"

/* OUT without trailing slashes: "out/" + ".tmp-PID" would lie inside it. */
static dq_status strip_slashes(const char *out, char *buf, size_t cap, dq_error *err) {
    dq_status st = dq_path_fmt(buf, cap, err, "%s", out);
    for (size_t n = strlen(buf); !st && n > 1 && buf[n - 1] == '/'; n--) buf[n - 1] = 0;
    return st;
}

dq_status dq_dir_begin(const char *out, char *tmp, size_t cap, dq_error *err) {
    char o[PATH_MAX];
    dq_status st = strip_slashes(out, o, sizeof o, err);
    if (!st) st = dq_check_output(o, DQ_OUT_PACKED_DIR, NULL, 0, err); /* before the work, not only after it */
    if (!st) st = dq_path_fmt(tmp, cap, err, "%s.tmp-%ld", o, (long)getpid());
    if (st) return st;
    dq_tmp_register(tmp, true); /* removed with its files on SIGINT/SIGTERM */
    if (mkdir(tmp, 0755) != 0) {
        dq_tmp_unregister_under(tmp);
        return dq_fail(err, DQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    return DQ_OK;
}

static bool config_has_marker(const char *dir) {
    char path[PATH_MAX], *text;
    if (dq_path_fmt(path, sizeof path, NULL, "%s/config.json", dir) || !dq_file_exists(path) ||
        dq_read_file(path, 16u << 20, &text, NULL, NULL) != DQ_OK)
        return false;
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    bool yes = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cfg, "dashq_version"));
    cJSON_Delete(cfg);
    return yes;
}

bool dq_dir_is_dashq(const char *dir) {
    char marker[PATH_MAX];
    struct stat ms;
    return (!dq_path_fmt(marker, sizeof marker, NULL, "%s/dashq_config.json", dir) && stat(marker, &ms) == 0 &&
            S_ISREG(ms.st_mode)) ||
           config_has_marker(dir);
}

void dq_dir_remove_flat(const char *dir) {
    struct stat st;
    if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode)) { /* a replaced link: not what it pointed to */
        unlink(dir);
        dq_tmp_unregister_under(dir);
        return;
    }
    DIR *d = opendir(dir);
    if (d) {
        char path[PATH_MAX];
        for (struct dirent *e; (e = readdir(d));) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if (dq_path_fmt(path, sizeof path, NULL, "%s/%s", dir, e->d_name) == DQ_OK) unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
    dq_tmp_unregister_under(dir);
}

uint64_t dq_dir_bytes(const char *dir) {
    uint64_t total = 0;
    DIR *d = opendir(dir);
    char path[PATH_MAX];
    struct stat st;
    for (struct dirent *e; d && (e = readdir(d));)
        if (dq_path_fmt(path, sizeof path, NULL, "%s/%s", dir, e->d_name) == DQ_OK && lstat(path, &st) == 0 &&
            S_ISREG(st.st_mode))
            total += (uint64_t)st.st_size;
    if (d) closedir(d);
    return total;
}

/* OUT always names a complete folder: an existing one is exchanged with the
 * new folder in one step (dq_replace_dir), then removed. */
dq_status dq_dir_publish(const char *tmp, const char *out, dq_error *err) {
    char o[PATH_MAX], old[PATH_MAX];
    dq_status st = strip_slashes(out, o, sizeof o, err);
    if (!st) st = dq_check_output(o, DQ_OUT_PACKED_DIR, NULL, 0, err); /* again: it may have appeared meanwhile */
    if (!st) st = dq_replace_dir(tmp, o, old, sizeof old, err);
    if (st) return st;
    if (old[0]) dq_dir_remove_flat(old);
    dq_tmp_unregister_under(tmp);
    return DQ_OK;
}

dq_status dq_write_json(const char *dir, const char *file, cJSON *root, bool compact, dq_error *err) {
    char path[PATH_MAX];
    dq_status st = dq_path_fmt(path, sizeof path, err, "%s/%s", dir, file);
    if (st) {
        cJSON_Delete(root);
        return st;
    }
    dq_tmp_register(path, false);
    char *text = root ? (compact ? cJSON_PrintUnformatted(root) : cJSON_Print(root)) : NULL;
    cJSON_Delete(root);
    FILE *f = text ? fopen(path, "w") : NULL;
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = false;
    free(text);
    return ok ? DQ_OK : dq_fail(err, DQ_ERR_IO, "%s: write failed", path);
}
