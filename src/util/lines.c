#define _POSIX_C_SOURCE 200809L
#include "util/lines.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *dq_next_line(char **cursor, char *end) {
    if (*cursor >= end) return NULL;
    char *line = *cursor, *nl = memchr(line, '\n', (size_t)(end - line));
    char *stop = nl ? nl : end;
    *cursor = nl ? nl + 1 : end;
    if (stop > line && stop[-1] == '\r') stop--;
    *stop = 0;
    return line;
}

void dq_note_skip(char ***notes, size_t *n, size_t max, const char *path, long line, const char *msg,
                  const char *what) {
    if (*n >= max) return;
    char buf[2048], **grown = realloc(*notes, (*n + 1) * sizeof *grown);
    if (!grown) return;
    *notes = grown;
    snprintf(buf, sizeof buf, "%.1000s:%ld: %.900s (%s skipped)", path, line, msg, what);
    if ((grown[*n] = strdup(buf))) (*n)++;
}
