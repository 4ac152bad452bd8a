/* Tokenizer internals shared by the loaders (llama2.c tokenizer.bin,
 * sentencepiece .model, HF tokenizer.json, vocab.json + merges.txt) and the
 * one encoder: added-token split -> normalise -> pre-tokenise -> BPE. */
#ifndef DQ_TOKENIZER_H
#define DQ_TOKENIZER_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <limits.h>

#include "dashq.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif
#include "tokenizer/vocab.h"

/* Piece types, numbered as sentencepiece and GGUF number them. */
enum { DQ_PIECE_NORMAL = 1, DQ_PIECE_UNKNOWN, DQ_PIECE_CONTROL, DQ_PIECE_USER, DQ_PIECE_UNUSED,
       DQ_PIECE_BYTE };

typedef enum {
    DQ_MERGE_BY_SCORE, /* sentencepiece BPE: the merged piece with the highest score wins */
    DQ_MERGE_BY_RANK,  /* HF BPE: the listed merge with the lowest rank wins */
} dq_merge_mode;

typedef enum { DQ_PREPEND_NONE, DQ_PREPEND_FIRST, DQ_PREPEND_ALWAYS } dq_prepend;

/* HF's Sequence pre-tokenizers and llama.cpp's regex_exprs chain at most this many splits. */
#define DQ_MAX_SPLITS 4

typedef struct {
    const char *text; /* points into piece storage */
    uint32_t len;
    int32_t id;
    bool special;
} dq_added_token;

struct dq_tokenizer {
    char path[PATH_MAX];
    int n_vocab;
    char **pieces; /* piece bytes as stored (spaces as "▁" or " ", byte-level chars) */
    uint32_t *piece_len;
    float *scores;
    uint8_t *types;
    struct dq_chunk *storage; /* arena holding piece and added-token bytes */
    dq_str_map lookup; /* piece -> id */
    dq_merge_mode mode;
    dq_pair_map merges;
    bool byte_level;    /* GPT-2 bytes_to_unicode mapping of every byte */
    bool byte_fallback; /* unknown characters become <0xXX> pieces */
    bool fuse_unk;
    bool ignore_merges; /* Llama-3: a word found whole in the vocab is not merged */
    int32_t byte_id[256];
    bool nfc;           /* Unicode NFC before anything else (Qwen2) */
    bool collapse_ws;   /* sentencepiece remove_extra_whitespaces */
    dq_prepend prepend; /* dummy prefix */
    const char *space;  /* what a space becomes: "▁" (metaspace) or " " */
    pcre2_code *split_re[DQ_MAX_SPLITS]; /* applied in turn: each splits the words of the one before */
    char *split_src[DQ_MAX_SPLITS];      /* their patterns, to name the sequence for GGUF export */
    int n_split;
    dq_added_token *added;
    size_t n_added;
    int32_t bos, eos, unk;
    bool add_bos;
    const char *chat_template; /* in the arena; NULL if none came with the tokenizer */
};

/* Allocates the piece arrays for n pieces; pieces are then set by the loader. */
dq_status dq_tok_alloc(dq_tokenizer *t, int n, dq_error *err);
/* Copies n bytes (plus a NUL) into the tokenizer's arena. */
char *dq_tok_strdup(dq_tokenizer *t, const char *s, size_t n);
/* Sets piece id (copying its bytes); fails on a bad or repeated id. */
dq_status dq_tok_set_piece(dq_tokenizer *t, int64_t id, const char *s, size_t n, dq_error *err);
/* Registers an added (special or user) token, also as piece id. */
dq_status dq_tok_add_token(dq_tokenizer *t, int64_t id, const char *s, size_t n, bool special,
                           dq_error *err);
/* Builds lookup tables once pieces, types and merges are set. */
dq_status dq_tok_finish(dq_tokenizer *t, dq_error *err);
/* Adds merge "a b" with the given rank (lookup tables must be built). */
dq_status dq_tok_merge_from_string(dq_tokenizer *t, const char *s, size_t n, int rank, dq_error *err);
/* Appends a pre-tokenizer split regex (PCRE2, UTF + Unicode properties):
 * every word the earlier splits produced is split again by it, as HF's
 * Sequence and llama.cpp's regex_exprs do. */
dq_status dq_tok_add_regex(dq_tokenizer *t, const char *pattern, dq_error *err);
/* Sets the split regexes of llama.cpp's pre-tokenizer type NAME
 * (tokenizer.ggml.pre); DQ_ERR_UNSUPPORTED naming the known ones otherwise. */
dq_status dq_tok_set_pre_type(dq_tokenizer *t, const char *name, size_t len, dq_error *err);
/* llama.cpp's name for the tokenizer's split sequence, NULL if none matches. */
const char *dq_tok_pre_name(const dq_tokenizer *t);

extern const char *const DQ_REGEX_GPT2;
extern const char *const DQ_REGEX_LLAMA3;
extern const char *const DQ_REGEX_QWEN2;
extern const char *const DQ_REGEX_DIGIT; /* HF Digits(individual_digits=true) */
/* sentencepiece's remove_extra_whitespaces as tokenizer.json Replace regexes
 * (written by the HF export, recognised by the HF loader): strip the ends,
 * collapse inner runs of spaces. */
#define DQ_HF_STRIP_SPACES "(?<![\\s\\S]) +| +(?![\\s\\S])" /* ^ and $ would match at every line in HF's Oniguruma */
#define DQ_HF_COLLAPSE_SPACES " {2,}"

/* The ranked merges (DQ_MERGE_BY_RANK) as (left, right) id pairs in rank
 * order, 2*n entries malloc'ed; a rank no pair holds has left = -1. NULL when
 * out of memory. */
int32_t *dq_tok_ranked_merges(const dq_tokenizer *t, size_t *n);

/* GPT-2 byte <-> unicode character mapping. */
int dq_byte_to_unicode(uint8_t b, char out[4]); /* returns UTF-8 length */
int dq_unicode_to_byte(uint32_t cp);            /* -1 if not a mapped byte */

/* Byte-pair merging of one word (text[0..len)) appending ids to out. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} dq_id_buf;
bool dq_id_push(dq_id_buf *b, int32_t id);
dq_status dq_bpe_word(const dq_tokenizer *t, const char *text, size_t len, dq_id_buf *out,
                      dq_error *err);

/* A growing byte buffer, always NUL-terminated once written to. */
typedef struct {
    char *p;
    size_t n, cap;
} dq_sbuf;
bool dq_sb_put(dq_sbuf *b, const char *s, size_t n);

/* The encoder's stages, shared by dq_tokenize and the stream (stream.c). */
/* Length of the added token at s[0..n) (longest first), or 0; *id receives its id. */
size_t dq_tok_match_added(const dq_tokenizer *t, const char *s, size_t n, bool parse_special, int32_t *id);
/* Appends the normalised text of s[0..n) to out: NFC when the tokenizer asks
 * for it, then (sentencepiece-style tokenizers) the "▁"/space, whitespace and
 * dummy-prefix rules. first: s starts the text; cont: s continues a segment
 * whose normalised part so far ended in a character other than a space. */
dq_status dq_tok_normalize(const dq_tokenizer *t, const char *s, size_t n, bool first, bool cont, dq_sbuf *out,
                           dq_error *err);
/* Pre-tokenises normalised text with split regex k and the later ones, then
 * byte-pair merges each word, appending ids to out (tmp: scratch). */
dq_status dq_tok_split(const dq_tokenizer *t, int k, const char *s, size_t n, dq_sbuf *tmp, dq_id_buf *out,
                       dq_error *err);

dq_status dq_tok_load_llama2c(const char *path, dq_tokenizer *t, dq_error *err);
dq_status dq_tok_load_spm_model(const char *path, dq_tokenizer *t, dq_error *err);
dq_status dq_tok_load_hf_json(const char *path, dq_tokenizer *t, dq_error *err);
dq_status dq_tok_load_vocab_merges(const char *vocab_path, dq_tokenizer *t, dq_error *err);
dq_status dq_tok_load_gguf(const char *path, dq_tokenizer *t, dq_error *err);
/* Reads the chat template kept in an HF folder dir beside the tokenizer file
 * (see dq_tokenizer_chat_template); absent files are not an error. */
dq_status dq_tok_load_hf_chat_template(dq_tokenizer *t, const char *dir, dq_error *err);
#endif
