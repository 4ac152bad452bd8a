/* Notes to the caller's dq_progress, and the clock (util/progress.h). */
#define _POSIX_C_SOURCE 200809L
#include "util/progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

double dq_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dq_progress_note(const dq_progress *p, bool warning, const char *fmt, ...) {
    if (!p || !p->note) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->note(warning, msg, p->user);
}
