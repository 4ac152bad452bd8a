/* Error reporting helpers: every failure carries a code and a one-line message. */
#ifndef DQ_ERROR_H
#define DQ_ERROR_H
#include "dashq.h"

/* dq_fail and DQ_PRINTF: dashq.h */

/* Overflow-checked size arithmetic: return false when the result would not fit. */
static inline bool dq_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool dq_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
#endif
