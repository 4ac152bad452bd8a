/* A progress bar with ETA on stderr. It stays silent for the first second so
 * short jobs print nothing, redraws at most 10 times a second on a terminal,
 * and writes a plain line every 10 seconds when stderr is a file or pipe. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "dashq.h"

struct dq_progress {
    const char *label;
    size_t total, done;
    double start, last_draw;
    bool quiet, tty, drawn;
};

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

dq_progress *dq_progress_start(const char *label, size_t total, bool quiet) {
    dq_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->label = label;
    p->total = total ? total : 1;
    p->quiet = quiet;
    p->tty = isatty(STDERR_FILENO);
    p->start = p->last_draw = now_seconds();
    return p;
}

static void format_time(double s, char *buf, size_t cap) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void draw(dq_progress *p, double now) {
    double frac = (double)p->done / (double)p->total, el = now - p->start;
    char eta[32], spent[32];
    format_time(frac > 0 ? el / frac - el : 0, eta, sizeof eta);
    format_time(el, spent, sizeof spent);
    if (p->tty) {
        char bar[31];
        int filled = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < filled ? '=' : (i == filled ? '>' : ' ');
        bar[30] = '\0';
        fprintf(stderr, "\r%s [%s] %3d%% %zu/%zu %s ETA %s ", p->label, bar, (int)(frac * 100),
                p->done, p->total, spent, eta);
    } else {
        fprintf(stderr, "%s: %3d%% %zu/%zu elapsed %s ETA %s\n", p->label, (int)(frac * 100), p->done,
                p->total, spent, eta);
    }
    fflush(stderr);
    p->drawn = true;
    p->last_draw = now;
}

void dq_progress_update(dq_progress *p, size_t done) {
    if (!p) return;
    p->done = done > p->total ? p->total : done;
    if (p->quiet) return;
    double now = now_seconds();
    if (now - p->start < 1.0) return;
    if (now - p->last_draw >= (p->tty ? 0.1 : 10.0) || !p->drawn) draw(p, now);
}

void dq_progress_finish(dq_progress *p) {
    if (!p) return;
    if (!p->quiet && p->drawn) {
        p->done = p->total;
        draw(p, now_seconds());
        if (p->tty) fputc('\n', stderr);
    }
    free(p);
}
