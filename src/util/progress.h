/* How library code reports progress: through the caller's dq_progress
 * callback (include/dashq.h), never to a terminal. */
#ifndef DQ_UTIL_PROGRESS_H
#define DQ_UTIL_PROGRESS_H
#include "dashq.h"
#include "util/error.h"

/* One report; false when the caller asked to stop (err then says so). */
static inline bool dq_progress_report(const dq_progress *p, const char *stage, size_t done, size_t total,
                                      dq_error *err) {
    if (!p || !p->fn || p->fn(stage, done, total, p->user)) return true;
    dq_fail(err, DQ_ERR_CANCELLED, "%s: cancelled by the progress callback after %zu of %zu", stage, done, total);
    return false;
}
/* Seconds on the monotonic clock, for stage timings and reports. */
double dq_now(void);
/* A note for the caller (printf-style); dropped without a note callback. */
void dq_progress_note(const dq_progress *p, bool warning, const char *fmt, ...) DQ_PRINTF(3, 4);
#endif
