/* dashq report RESULTS -o DIR: the sweep's CSV as a markdown report with
 * plots (SVG, rendered by gnuplot from the scripts written beside them). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "eval/report.h"
#include "util/files.h"
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
static int render_one(const char *dir, const char *script) {
    char svg[PATH_MAX], tmp[PATH_MAX], path[PATH_MAX], tmp_path[PATH_MAX];
    size_t n = strlen(script);
    dq_error err = {0};
    if (n < 3 || strcmp(script + n - 3, ".gp") ||
        dq_path_fmt(svg, sizeof svg, &err, "%.*s.svg", (int)(n - 3), script) ||
        dq_path_fmt(tmp, sizeof tmp, &err, "%s.tmp-%ld", svg, (long)getpid()) ||
        dq_path_fmt(path, sizeof path, &err, "%s/%s", dir, svg) ||
        dq_path_fmt(tmp_path, sizeof tmp_path, &err, "%s/%s", dir, tmp)) {
        if (!err.msg[0]) dq_fail(&err, DQ_ERR_ARG, "%s: not a .gp script", script);
        return dq_cli_error(&err);
    }
    int slot = dq_tmp_register(tmp_path, false); /* removed on SIGINT/SIGTERM */
    int st = gnuplot(dir, script, tmp);
    int rc = 0;
    if (st == 127) {
        fprintf(stderr, "dashq: error: gnuplot not found (Debian: apt install gnuplot-nox); "
                        "the report and its scripts are in %s\n", dir);
        rc = DQ_EXIT_ERROR;
    } else if (st) {
        fprintf(stderr, "dashq: error: %s/%s: gnuplot failed (status %d)\n", dir, script, st);
        rc = DQ_EXIT_ERROR;
    } else if (rename(tmp_path, path) != 0) {
        fprintf(stderr, "dashq: error: %s: cannot rename into place: %s\n", path, strerror(errno));
        rc = DQ_EXIT_ERROR;
    }
    if (rc) unlink(tmp_path);
    dq_tmp_unregister(slot);
    return rc;
}

static int render(const char *dir, char **scripts) {
    int rc = 0;
    for (char **s = scripts; *s && !rc; s++) rc = render_one(dir, *s);
    return rc;
}

int dq_cmd_report(int argc, char **argv) {
    static const struct option longs[] = {{"no-plots", no_argument, 0, 'n'}, {"output", required_argument, 0, 'o'}, {0, 0, 0, 0}};
    const char *dir = NULL;
    bool plots = true;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:", longs, NULL)) != -1) {
        if (c == 'o') dir = optarg;
        else if (c == 'n') plots = false;
        else return DQ_EXIT_ERROR;
    }
    if (optind != argc - 1 || !dir) {
        fprintf(stderr, "dashq: error: usage: dashq report RESULTS.csv -o DIR [--no-plots]\n");
        return DQ_EXIT_ERROR;
    }
    dq_error err = {0};
    const char *csv = argv[optind];
    if (dq_check_output(dir, DQ_OUT_DIR, &csv, 1, &err)) return dq_cli_error(&err);
    if (mkdir(dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "dashq: error: %s: cannot create: %s\n", dir, strerror(errno));
        return DQ_EXIT_ERROR;
    }
    dq_results r;
    if (dq_results_load(argv[optind], &r, &err)) return dq_cli_error(&err);
    char zs[PATH_MAX]; /* RESULTS.csv's zero-shot lines: RESULTS_zeroshot.jsonl, as bench/quant_sweep.sh writes them */
    size_t n = strlen(csv);
    if (n > 4 && !strcmp(csv + n - 4, ".csv") &&
        !dq_path_fmt(zs, sizeof zs, &err, "%.*s_zeroshot.jsonl", (int)(n - 4), csv) &&
        dq_results_load_zeroshot(zs, &r, &err)) {
        dq_results_free(&r);
        return dq_cli_error(&err);
    }
    for (size_t i = 0; i < r.n_warnings; i++) fprintf(stderr, "dashq: warning: %s\n", r.warnings[i]);
    if (r.n_skipped > r.n_warnings) fprintf(stderr, "dashq: warning: %zu more bad rows skipped\n", r.n_skipped - r.n_warnings);
    char **scripts;
    int rc = dq_report_write(&r, argv[optind], dir, &scripts, &err) ? dq_cli_error(&err) : 0;
    if (!rc && plots) rc = render(dir, scripts);
    if (!rc) printf("%s/report.md: %zu rows, %zu skipped\n", dir, r.n, r.n_skipped);
    for (char **s = scripts; s && *s; s++) free(*s);
    free(scripts);
    dq_results_free(&r);
    return rc;
}
