/* dq_report, the public entry point of the sweep report: the results CSV
 * (and the zero-shot lines beside it) as DIR/report.md and gnuplot scripts
 * (eval/report.c), each script rendered to SVG by gnuplot through a
 * temporary renamed into place. Bad rows go to the note callback. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eval/report.h"
#include "util/error.h"
#include "util/files.h"
#include "util/progress.h"
#include "util/tmpfiles.h"

/* Runs gnuplot SCRIPT inside dir with its output set to out (the script's
 * `out`, which defaults to NAME.svg when a user runs it); returns its exit
 * status (127: not found). */
static int gnuplot(const char *dir, const char *script, const char *out) {
    char set[PATH_MAX + 16];
    snprintf(set, sizeof set, "out='%s'", out);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (chdir(dir) == 0) execlp("gnuplot", "gnuplot", "-e", set, script, (char *)NULL);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) < 0) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* DIR/NAME.gp renders to NAME.svg through a temporary renamed into place, like
 * every other output: a killed or failed gnuplot leaves no partial SVG. */
static dq_status render_one(const char *dir, const char *script, dq_error *err) {
    char svg[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], tmp_path[PATH_MAX];
    size_t n = strlen(script);
    if (n < 3 || strcmp(script + n - 3, ".gp"))
        return dq_fail(err, DQ_ERR_ARG, "%s: not a .gp script", script);
    dq_status st = dq_path_fmt(svg, sizeof svg, err, "%.*s.svg", (int)(n - 3), script);
    if (!st) st = dq_path_fmt(tmp, sizeof tmp, err, "%s.tmp-%ld", svg, (long)getpid());
    if (!st) st = dq_path_fmt(path, sizeof path, err, "%s/%s", dir, svg);
    if (!st) st = dq_path_fmt(tmp_path, sizeof tmp_path, err, "%s/%s", dir, tmp);
    if (st) return st;
    int slot = dq_tmp_register(tmp_path, false); /* removed on SIGINT/SIGTERM */
    int rc = gnuplot(dir, script, tmp);
    if (rc == 127)
        st = dq_fail(err, DQ_ERR_UNSUPPORTED, "gnuplot not found (Debian: apt install gnuplot-nox); the report and "
                     "its scripts are in %s", dir);
    else if (rc) st = dq_fail(err, DQ_ERR_IO, "%s/%s: gnuplot failed (status %d)", dir, script, rc);
    else if (rename(tmp_path, path) != 0)
        st = dq_fail(err, DQ_ERR_IO, "%s: cannot rename into place: %s", path, strerror(errno));
    if (st) unlink(tmp_path);
    dq_tmp_unregister(slot);
    return st;
}

static dq_status render(const char *dir, char **scripts, dq_error *err) {
    dq_status st = DQ_OK;
    for (char **s = scripts; *s && !st; s++) st = render_one(dir, *s, err);
    return st;
}

/* RESULTS.csv's zero-shot lines: RESULTS_zeroshot.jsonl, as bench/quant_sweep.sh writes them. */
static dq_status load_all(const char *csv, dq_results *r, dq_error *err) {
    dq_status st = dq_results_load(csv, r, err);
    char zs[PATH_MAX];
    size_t n = strlen(csv);
    if (!st && n > 4 && !strcmp(csv + n - 4, ".csv") &&
        !dq_path_fmt(zs, sizeof zs, err, "%.*s_zeroshot.jsonl", (int)(n - 4), csv))
        st = dq_results_load_zeroshot(zs, r, err);
    if (st) dq_results_free(r);
    return st;
}

dq_status dq_report(const char *csv, const char *dir, bool plots, const dq_progress *progress, dq_report_summary *out,
                    dq_error *err) {
    memset(out, 0, sizeof *out);
    dq_status st = dq_check_output(dir, DQ_OUT_DIR, &csv, 1, err);
    if (st) return st;
    if (mkdir(dir, 0777) && errno != EEXIST)
        return dq_fail(err, DQ_ERR_IO, "%s: cannot create: %s", dir, strerror(errno));
    dq_results r;
    if ((st = load_all(csv, &r, err))) return st;
    for (size_t i = 0; i < r.n_warnings; i++) dq_progress_note(progress, true, "%s", r.warnings[i]);
    if (r.n_skipped > r.n_warnings)
        dq_progress_note(progress, true, "%zu more bad rows skipped", r.n_skipped - r.n_warnings);
    char **scripts = NULL;
    st = dq_report_write(&r, csv, dir, &scripts, err);
    if (!st && plots) st = render(dir, scripts, err);
    out->rows = r.n;
    out->skipped = r.n_skipped;
    for (char **s = scripts; s && *s; s++) free(*s);
    free(scripts);
    dq_results_free(&r);
    return st;
}
