/* Calibration windows: N random windows of L tokens from a text, as in the
 * GPTQ reference protocol. */
#ifndef DQ_CALIB_DATA_H
#define DQ_CALIB_DATA_H
#include "dashq.h"

typedef struct {
    int32_t *tokens; /* (n, len) */
    int n, len;
    size_t text_tokens; /* tokens in the whole text */
    bool overlapping;   /* n * len exceeded the text: windows were drawn with replacement */
} dq_calib_set;

/* path: plain text (documents separated by lines "<|endoftext|>") or JSON
 * lines with a "text" field. Each document is tokenized with the tokenizer's
 * BOS convention; windows start at uniformly random offsets of the joined
 * token stream (splitmix64 from seed), so they are independent of threads.
 * When n * len exceeds the stream, windows are drawn with replacement and a
 * warning is printed; a text shorter than one window is an error. */
dq_status dq_calib_load(const char *path, const dq_tokenizer *t, int n, int len, uint64_t seed,
                        dq_calib_set *out, dq_error *err);
void dq_calib_free(dq_calib_set *c);
/* X (nw·len, dim) = m's token embeddings of windows [w0, w0 + nw) of cs; a
 * token outside m's vocabulary is an error (DQ_ERR_ARG) naming it. */
dq_status dq_calib_embed(const dq_model *m, const dq_calib_set *cs, int w0, int nw, float *X, dq_error *err);
#endif
