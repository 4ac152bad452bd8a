/* dashq report RESULTS -o DIR: the sweep's CSV as a markdown report with
 * plots (SVG, rendered by gnuplot from the scripts written beside them),
 * through dq_report (dashq.h). */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"

static void warn(bool warning, const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "dashq: %s: %s\n", warning ? "warning" : "note", msg);
}

int dq_cmd_report(int argc, char **argv) {
    static const struct option longs[] = {
        {"no-plots", no_argument, 0, 'n'}, {"output", required_argument, 0, 'o'}, {0, 0, 0, 0}};
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
    dq_progress notes = {NULL, warn, NULL};
    dq_report_summary s;
    if (dq_report(argv[optind], dir, plots, &notes, &s, &err)) return dq_cli_error(&err);
    printf("%s/report.md: %zu rows, %zu skipped\n", dir, s.rows, s.skipped);
    return 0;
}
