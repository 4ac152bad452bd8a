/* Notes to the caller's dq_progress (util/progress.h). */
#include "util/progress.h"

#include <stdarg.h>
#include <stdio.h>

void dq_progress_note(const dq_progress *p, bool warning, const char *fmt, ...) {
    if (!p || !p->note) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->note(warning, msg, p->user);
}
