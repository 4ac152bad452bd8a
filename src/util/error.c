#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A message longer than the buffer (a 4000-byte path) keeps its head and its
 * tail, which says what went wrong, around " ... ". */
dq_status dq_fail(dq_error *err, dq_status code, const char *fmt, ...) {
    if (err) {
        va_list ap, ap2;
        va_start(ap, fmt);
        va_copy(ap2, ap);
        int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        char *full = n >= (int)sizeof err->msg ? malloc((size_t)n + 1) : NULL;
        if (full && vsnprintf(full, (size_t)n + 1, fmt, ap2) == n) {
            size_t half = (sizeof err->msg - 6) / 2;
            memcpy(err->msg, full, half);
            memcpy(err->msg + half, " ... ", 5);
            memcpy(err->msg + half + 5, full + n - half, half);
            err->msg[2 * half + 5] = 0;
        }
        va_end(ap2);
        free(full);
        err->code = code;
    }
    return code;
}
const char *dq_status_name(dq_status s) {
    switch (s) {
    case DQ_OK: return "ok";
    case DQ_ERR_IO: return "I/O error";
    case DQ_ERR_FORMAT: return "malformed file";
    case DQ_ERR_UNSUPPORTED: return "unsupported";
    case DQ_ERR_NOMEM: return "out of memory";
    case DQ_ERR_ARG: return "invalid argument";
    case DQ_ERR_NUMERIC: return "non-finite value";
    case DQ_ERR_CANCELLED: return "cancelled";
    }
    return "unknown error";
}
