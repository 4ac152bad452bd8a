/* Streaming tokenization: text arrives in pieces of any size, ids leave as
 * soon as no later text can change them, and they are exactly the ids
 * dq_tokenize gives for the whole text (the rules and their proof are at the
 * top of stream.c). Memory follows the longest stretch of text without a safe
 * cut, not the text: a few hundred bytes for prose. */
#ifndef DQ_TOK_STREAM_H
#define DQ_TOK_STREAM_H
#include "dashq.h"

typedef struct dq_tok_stream dq_tok_stream;

/* Receives ids[0..n) in text order; the array is the stream's, valid during
 * the call. Returns false to stop: the stream then takes no more text. */
typedef bool (*dq_tok_sink)(void *user, const int32_t *ids, size_t n);

/* A stream over t (borrowed: it must outlive the stream) with dq_tokenize's
 * add_bos and parse_special. sink must not be NULL. */
dq_status dq_tok_stream_new(const dq_tokenizer *t, bool add_bos, bool parse_special, dq_tok_sink sink, void *user,
                            dq_tok_stream **out, dq_error *err);
/* Takes text[0..len) (copied; len may be 0, a piece may end inside a UTF-8
 * character) and passes every final id on to the sink. Nothing happens once
 * the sink has asked to stop. Errors are dq_tokenize's ("text is not valid
 * UTF-8 at byte N", N counted from the start of the whole text), raised when
 * the stream reaches them: ids before that point have been passed on. */
dq_status dq_tok_stream_feed(dq_tok_stream *s, const char *text, size_t len, dq_error *err);
/* End of text: passes the remaining ids on. Call once, after the last feed. */
dq_status dq_tok_stream_finish(dq_tok_stream *s, dq_error *err);
/* Whether the sink has asked to stop. */
bool dq_tok_stream_stopped(const dq_tok_stream *s);
/* Bytes of text held now, not yet turned into ids (tests check the bound). */
size_t dq_tok_stream_held(const dq_tok_stream *s);
/* Whether the stream can cut inside a segment of text between added tokens
 * for this tokenizer; false (a byte-level BPE without a split regex, merges
 * that ignore whole words without a split regex, NaN scores) means each such
 * segment is held whole until it ends, as dq_tokenize holds it. */
bool dq_tok_stream_cuts(const dq_tokenizer *t);
void dq_tok_stream_free(dq_tok_stream *s);
#endif
