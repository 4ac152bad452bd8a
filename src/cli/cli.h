/* dashq command-line tool: one job per subcommand, human progress on stderr,
 * results on stdout. Every error prints one line and exits with status 2. */
#ifndef DQ_CLI_H
#define DQ_CLI_H
#include "dashq.h"

#define DQ_EXIT_ERROR 2

typedef struct {
    const char *model;
    const char *tokenizer;
    int threads;
    bool quiet;
    bool json;
    bool lazy; /* dq_model_load_lazy: quantize holds one block at a time */
} dq_common_opts;

/* Loads model and tokenizer named by the options; prints the error on failure. */
int dq_cli_load(const dq_common_opts *o, dq_model **m, dq_tokenizer **t);
int dq_cli_error(const dq_error *err);
/* Parses a number option; prints an error naming the flag on failure. */
bool dq_cli_int(const char *flag, const char *s, long lo, long hi, long *out);
bool dq_cli_float(const char *flag, const char *s, double lo, double hi, double *out);
/* "2G", "1536M", "800000000" (K, M, G, T are powers of 1024) → bytes, at least 1. */
bool dq_cli_size(const char *flag, const char *s, size_t *out);

/* A chat prompt: --system (may be NULL) and the user's TEXT rendered in the
 * template of --chat-template (a family name; NULL: the tokenizer's own).
 * *text is malloc'ed; *eot receives the id of the family's end-of-turn token
 * (-1 if the vocabulary lacks it). */
dq_status dq_cli_chat_text(const dq_tokenizer *t, const char *chat_template, const char *system, const char *user,
                           char **text, int32_t *eot, dq_error *err);

/* The progress bar (progress_bar.c): dq_cli_progress gives the callback the
 * library reports to (silent when quiet); dq_cli_bar_end closes a stage an
 * error left open. */
typedef struct {
    bool quiet, tty, active, drawn;
    char stage[64];
    size_t done, total;
    double start, last_draw;
} dq_cli_bar;
dq_progress dq_cli_progress(dq_cli_bar *b, bool quiet);
void dq_cli_bar_end(dq_cli_bar *b);

int dq_cmd_generate(int argc, char **argv);
int dq_cmd_eval(int argc, char **argv);
int dq_cmd_tokenize(int argc, char **argv);
int dq_cmd_info(int argc, char **argv);
int dq_cmd_bench(int argc, char **argv);
int dq_cmd_quantize(int argc, char **argv);
int dq_cmd_convert(int argc, char **argv);
int dq_cmd_report(int argc, char **argv);
#endif
