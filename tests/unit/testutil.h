/* Helpers shared by the test suites. */
#ifndef DQ_TESTUTIL_H
#define DQ_TESTUTIL_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "calib/calib_data.h"
#include "dashq.h"

/* Path under the shared models/data folder ($DASHQ_SHARED or ../shared). */
const char *tu_shared(const char *rel);
/* Path of a real model fetched by scripts/models.sh (NAME as it names them,
 * e.g. "smollm2-135m"), under $DASHQ_MODELS or ~/.cache/dashq/models; NULL
 * when it is not cached: the caller skips (cmocka skip()). With
 * DASHQ_REQUIRE_MODELS set a missing model fails the test instead. */
const char *tu_real_model(const char *name);
#define TU_SMOLLM2 "smollm2-135m"

/* Path under tests/fixtures. */
const char *tu_fixture(const char *rel);
/* tests/fixtures/ggml/NAME.EXT: ggml's own blocks (.bin) and decodings (.f32);
 * NAME is a type name in any case, spelt as ggml does ("Q4_K" → "q4_K"). */
const char *tu_ggml_fixture(const char *name, const char *ext);
/* A fresh temporary directory for this process (removed by the OS tmp cleaner). */
const char *tu_tmpdir(void);
/* tmpdir + "/" + name */
const char *tu_tmp(const char *name);

/* Reads a whole file; fails the test if it cannot. */
char *tu_read(const char *path, size_t *len);
void tu_write(const char *path, const void *data, size_t len);
/* Copies src to dst, keeping only the first `keep` bytes (SIZE_MAX: all). */
void tu_copy(const char *src, const char *dst, size_t keep);
/* Copies the qwen2-tiny fixture folder (config.json, model.safetensors) to tmp/name; returns its path. */
const char *tu_hf_copy(const char *name);
/* A copy of the Hugging Face folder src (one model.safetensors) at tmp/name
 * whose tensors are split over n shards, tensor i of the file into shard
 * i % n (so blocks straddle shards), with model.safetensors.index.json;
 * config and tokenizer files come along. Made once per name (a later call
 * returns the folder as it is). Returns its path. */
const char *tu_hf_sharded(const char *src, const char *name, int n);
/* m with t as a GGUF file of `type` (a ggml type: F32, F16, BF16, Q8_0) at
 * path, general.name "test"; fails the test on error. Returns path. */
const char *tu_export_gguf(const char *path, const dq_model *m, const dq_tokenizer *t, int type);
/* Whether files a and b hold the same bytes (both must be readable). */
bool tu_same_file(const char *a, const char *b);
/* dir/file parsed as JSON (fails the test if it is not); the caller deletes it. */
struct cJSON *tu_read_json(const char *dir, const char *file);
/* Whether folders a and b hold the same files, byte for byte (regular files,
 * by name); on a difference, *what names the file. */
bool tu_same_folder(const char *a, const char *b, const char **what);

/* The whitespace-separated token ids of a file (at most 4096; *n of them),
 * malloc'ed. */
int32_t *tu_read_tokens(const char *path, int *n);

/* n calibration windows of len tokens from the shared Gutenberg calibration
 * text, tokenized by the tokenizer at tokenizer_rel under the shared folder. */
dq_calib_set tu_book_windows(const char *tokenizer_rel, int n, int len, uint64_t seed);

/* Loads a model or fails the test with the library's message. */
dq_model *tu_model(const char *path);
dq_tokenizer *tu_tokenizer(const char *path);

/* Writes stories260K to path with layer 0's attention-norm gain at 3e38, so
 * that its q/k/v activations overflow (for the non-finite error paths). */
void tu_write_overflowing_stories(const char *path);

/* Runs a shell command, returning its exit status and (if out) its stdout. */
int tu_run(const char *cmd, char **out);
#endif
