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
#include "util/mapped_file.h"

static dq_status check_replaceable(const char *out, dq_error *err) {
    if (dq_is_dir(out) && !dq_dir_is_dashq(out))
        return dq_fail(err, DQ_ERR_IO, "%s exists and is not a folder dashq wrote; refusing to replace it", out);
    if (!dq_is_dir(out) && dq_file_exists(out)) return dq_fail(err, DQ_ERR_IO, "%s exists and is a file", out);
    return DQ_OK;
}

dq_status dq_dir_begin(const char *out, char *tmp, size_t cap, dq_error *err) {
    dq_status st = check_replaceable(out, err); /* before the work, not only after it */
    if (st) return st;
    if ((size_t)snprintf(tmp, cap, "%s.tmp-%ld", out, (long)getpid()) >= cap)
        return dq_fail(err, DQ_ERR_ARG, "%s: path too long", out);
    if (mkdir(tmp, 0755) != 0) return dq_fail(err, DQ_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    return DQ_OK;
}

static bool config_has_marker(const char *dir) {
    char path[1200], *text;
    if (!dq_path_join(path, sizeof path, dir, "config.json") || !dq_file_exists(path) ||
        dq_read_file(path, 16u << 20, &text, NULL, NULL) != DQ_OK)
        return false;
    cJSON *cfg = cJSON_Parse(text);
    free(text);
    bool yes = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cfg, "dashq_version"));
    cJSON_Delete(cfg);
    return yes;
}

bool dq_dir_is_dashq(const char *dir) {
    char marker[1200];
    return (dq_path_join(marker, sizeof marker, dir, "dashq_config.json") && dq_file_exists(marker)) ||
           config_has_marker(dir);
}

void dq_dir_remove_flat(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        char path[1200];
        for (struct dirent *e; (e = readdir(d));) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

dq_status dq_dir_publish(const char *tmp, const char *out, dq_error *err) {
    char old[1100];
    dq_status st = check_replaceable(out, err); /* again: it may have appeared meanwhile */
    if (st) return st;
    if (dq_is_dir(out)) {
        snprintf(old, sizeof old, "%s.old-%ld", out, (long)getpid());
        if (rename(out, old) != 0) return dq_fail(err, DQ_ERR_IO, "%s: cannot move aside: %s", out, strerror(errno));
        if (rename(tmp, out) != 0) {
            rename(old, out);
            return dq_fail(err, DQ_ERR_IO, "%s: cannot rename into place: %s", out, strerror(errno));
        }
        dq_dir_remove_flat(old);
        return DQ_OK;
    }
    if (rename(tmp, out) != 0) return dq_fail(err, DQ_ERR_IO, "%s: cannot rename into place: %s", out, strerror(errno));
    return DQ_OK;
}

dq_status dq_write_json(const char *dir, const char *file, cJSON *root, bool compact, dq_error *err) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = root ? (compact ? cJSON_PrintUnformatted(root) : cJSON_Print(root)) : NULL;
    cJSON_Delete(root);
    FILE *f = text ? fopen(path, "w") : NULL;
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = false;
    free(text);
    return ok ? DQ_OK : dq_fail(err, DQ_ERR_IO, "%s: write failed", path);
}
