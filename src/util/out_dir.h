/* Output folders written atomically: build everything in OUT.tmp-PID
 * (registered for removal on SIGINT/SIGTERM, util/tmpfiles.h), then put it at
 * OUT in one step (dq_replace_dir). Used by the DASH-Q packed checkpoint and
 * the Hugging Face export. A trailing slash on OUT is ignored. */
#ifndef DQ_OUT_DIR_H
#define DQ_OUT_DIR_H
#include <cjson/cJSON.h>

#include "dashq.h"

/* Creates OUT.tmp-PID (its path written into tmp, cap bytes); fails first
 * if dq_check_output refuses OUT (it exists and dashq did not write it). */
dq_status dq_dir_begin(const char *out, char *tmp, size_t cap, dq_error *err);
/* Whether dir is a folder dashq wrote: a packed checkpoint (dashq_config.json)
 * or an export whose config.json carries "dashq_version". */
bool dq_dir_is_dashq(const char *dir);
/* Puts tmp at out. An existing out is replaced only if dashq wrote it
 * (exchanged in one step, then removed); anything else is refused. */
dq_status dq_dir_publish(const char *tmp, const char *out, dq_error *err);
/* Removes a folder holding only plain files (a failed or replaced output;
 * a symbolic link is removed, not followed) and forgets its temporaries. */
void dq_dir_remove_flat(const char *dir);
/* The bytes of a folder's plain files (not descending): a written output's size. */
uint64_t dq_dir_bytes(const char *dir);
/* Writes root as dir/file (pretty-printed unless compact; registered as a
 * temporary of the folder) and deletes root. */
dq_status dq_write_json(const char *dir, const char *file, cJSON *root, bool compact, dq_error *err);
#endif
