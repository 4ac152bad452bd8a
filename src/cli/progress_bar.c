/* The CLI's progress bar with ETA on stderr: the dq_progress callback the
 * commands hand to the library, which reports and never prints. Each stage
 * stays silent for its first second so short jobs print nothing, redraws at
 * most 10 times a second on a terminal, and writes a plain line every 10
 * seconds when stderr is a file or pipe. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_time(double s, char *buf, size_t cap) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void draw(dq_cli_bar *b, double now) {
    double frac = (double)b->done / (double)b->total, el = now - b->start;
    char eta[32], spent[32];
    format_time(frac > 0 ? el / frac - el : 0, eta, sizeof eta);
    format_time(el, spent, sizeof spent);
    if (b->tty) {
        char bar[31];
        int filled = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %3d%% %zu/%zu %s ETA %s ", b->stage, bar, (int)(frac * 100), b->done, b->total,
                spent, eta);
    } else {
        fprintf(stderr, "%s: %3d%% %zu/%zu elapsed %s ETA %s\n", b->stage, (int)(frac * 100), b->done, b->total, spent,
                eta);
    }
    fflush(stderr);
    b->drawn = true;
    b->last_draw = now;
}

void dq_cli_bar_end(dq_cli_bar *b) {
    if (b->active && b->drawn && b->tty) fputc('\n', stderr);
    b->active = b->drawn = false;
}

static bool report(const char *stage, size_t done, size_t total, void *user) {
    dq_cli_bar *b = user;
    if (b->quiet) return true;
    double now = now_seconds();
    if (!b->active || strncmp(b->stage, stage, sizeof b->stage - 1)) {
        dq_cli_bar_end(b);
        snprintf(b->stage, sizeof b->stage, "%s", stage);
        b->active = true;
        b->start = b->last_draw = now;
    }
    b->total = total ? total : 1;
    b->done = done > b->total ? b->total : done;
    if (b->done == b->total) { /* the stage is over: its last line, if it showed at all */
        if (b->drawn) draw(b, now);
        dq_cli_bar_end(b);
    } else if (now - b->start >= 1.0 && (now - b->last_draw >= (b->tty ? 0.1 : 10.0) || !b->drawn)) {
        draw(b, now);
    }
    return true;
}

/* Warnings always show; notes only without --quiet. A bar mid-line on a
 * terminal ends its line first. */
static void note(bool warning, const char *msg, void *user) {
    dq_cli_bar *b = user;
    if (!warning && b->quiet) return;
    if (b->active && b->drawn && b->tty) fputc('\n', stderr), b->drawn = false;
    fprintf(stderr, "dashq: %s: %s\n", warning ? "warning" : "note", msg);
}

dq_progress dq_cli_progress(dq_cli_bar *b, bool quiet) {
    memset(b, 0, sizeof *b);
    b->quiet = quiet;
    b->tty = isatty(STDERR_FILENO);
    return (dq_progress){report, note, b};
}
