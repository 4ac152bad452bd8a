/* Resumable quantization (issue #15, --resume): a run keeps its state in
 * OUT.resume/ beside the output — the partial output (the streaming
 * writer's temporary, laid out in full at the start), the calibration hidden
 * states in two files (block l reads one and writes the other), and
 * state.json: how many blocks are done, which hidden-state file is their
 * output, the finished layers' reports, and a fingerprint of everything the
 * output depends on. After each block the writer's bytes and the hidden
 * states are fsync'ed, then state.json is replaced atomically, so kill -9 at
 * any point leaves either the last state or the next one; the output itself
 * is only ever renamed into place complete. A run with the same fingerprint
 * continues from the last finished block; another is refused. Success
 * removes the folder. */
#ifndef DQ_RESUME_H
#define DQ_RESUME_H
#include <stdint.h>

#include "calib/pipeline.h"
#include "dist/comm.h"
#include "util/files.h"

typedef struct {
    char dir[PATH_MAX], state[PATH_MAX], partial[PATH_MAX];
    char hidden[2][PATH_MAX];
    const char *hidden_files[2]; /* = hidden, for dq_pipeline_opts */
    uint64_t fingerprint;
    int blocks_done, hidden_cur;
    dq_qlayer *done; /* the finished layers (reports and dims, no codes) */
    int n_done;
} dq_resume;

/* FNV-1a, 64 bits, continuing from h (start: DQ_RESUME_HASH0). */
#define DQ_RESUME_HASH0 0xcbf29ce484222325ull
uint64_t dq_resume_hash(uint64_t h, const void *p, size_t n);
/* h continued with a file's path, size and modification time. */
uint64_t dq_resume_hash_file(uint64_t h, const char *path);

/* OUT.resume for out: an interrupted run's state (rank 0's, to every rank
 * of comm; each rank keeps its own windows' hidden states there) when its fingerprint is
 * this one (blocks_done > 0), else a fresh folder (a state that never got
 * past its first block is started over); a finished-block state with
 * another fingerprint is refused (DQ_ERR_ARG), naming the folder. */
dq_status dq_resume_open(dq_resume *r, const char *out, bool gguf, uint64_t fingerprint, const dq_comm *comm,
                         dq_error *err);
/* The state after blocks_done blocks: state.json replaced atomically. */
dq_status dq_resume_save(dq_resume *r, int blocks_done, int hidden_cur, const dq_quant_result *res, dq_error *err);
/* Whether OUT.resume exists (an interrupted resumable run). */
bool dq_resume_exists(const char *out);
/* After the output is published: the folder and its files go. */
void dq_resume_remove(dq_resume *r);
void dq_resume_free(dq_resume *r);
#endif
