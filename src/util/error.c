#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>

dq_status dq_fail(dq_error *err, dq_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
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
    }
    return "unknown error";
}
