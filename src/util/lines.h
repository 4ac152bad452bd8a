/* Line-oriented input (task files, result CSVs): lines split in place, and
 * the list of "FILE:LINE: what is wrong" notes for the lines a reader skips. */
#ifndef DQ_LINES_H
#define DQ_LINES_H
#include <stddef.h>

/* The next line of [*cursor, end), NUL-terminated in place without its '\n'
 * and a trailing '\r'; NULL at the end. */
char *dq_next_line(char **cursor, char *end);

/* Appends "PATH:LINE: MSG (WHAT skipped)" to *notes while it holds fewer
 * than max (silently drops it if memory runs out: the caller counts skips). */
void dq_note_skip(char ***notes, size_t *n, size_t max, const char *path, long line, const char *msg,
                  const char *what);
#endif
