/* Error reporting helpers: every failure carries a code and a one-line message. */
#ifndef DQ_ERROR_H
#define DQ_ERROR_H
#include "dashq.h"

#if defined(__GNUC__)
#define DQ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DQ_PRINTF(a, b)
#endif

/* Sets err (if non-NULL) and returns code, so callers can `return dq_fail(...)`. */
dq_status dq_fail(dq_error *err, dq_status code, const char *fmt, ...) DQ_PRINTF(3, 4);

/* Overflow-checked size arithmetic: return false when the result would not fit. */
static inline bool dq_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool dq_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
#endif
