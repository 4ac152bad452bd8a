/* Temporaries removed when the program is interrupted: a writer registers
 * each temporary file (and folder) before creating it and unregisters it once
 * it is renamed into place or removed. On SIGINT, SIGTERM or SIGHUP the
 * handler unlinks the registered files and removes the registered folders
 * (newest first, so a folder's files go before it), then re-raises the signal
 * with its default action, so the exit status still says "killed by SIGINT".
 *
 * The handler only reads a static table and calls unlink/rmdir/sigaction/raise
 * (all async-signal-safe). kill -9 cannot be caught: what it leaves is only
 * ever under a temporary name. */
#ifndef DQ_TMPFILES_H
#define DQ_TMPFILES_H
#include <stdbool.h>

#include "dashq.h" /* dq_tmp_install_handlers */

#define DQ_TMP_SLOTS 128 /* a packed checkpoint of up to DQ_MAX_MAPS (64) shards, its side files, a spill */

/* dq_tmp_install_handlers (dashq.h): the handler for SIGINT, SIGTERM and
 * SIGHUP (a signal that was ignored when the program started stays ignored).
 * Without it the table is kept but nothing is cleaned. */

/* Registers PATH (a file, or a folder if is_dir); returns a slot number, or
 * -1 when the table is full or the path too long (the temporary is then just
 * not cleaned on a signal). */
int dq_tmp_register(const char *path, bool is_dir);
/* Forgets a slot (-1 is ignored). */
void dq_tmp_unregister(int slot);
/* Forgets DIR and every registered path inside it (once it is renamed into
 * place or removed). */
void dq_tmp_unregister_under(const char *dir);
/* Removes every registered path as the handler would, and empties the table
 * (for tests, and for callers that clean up outside a signal). */
void dq_tmp_cleanup_now(void);
/* Number of registered paths (for tests). */
int dq_tmp_count(void);
#endif
