/* dashq tokenize: prints token ids (one line, space separated) for a text. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "util/mapped_file.h"

int dq_cmd_tokenize(int argc, char **argv) {
    enum { O_TEXT = 256, O_FILE, O_NOBOS, O_SPECIAL, O_PIECES };
    static const struct option longs[] = {{"text", required_argument, 0, O_TEXT},
                                           {"file", required_argument, 0, O_FILE},
                                           {"no-bos", no_argument, 0, O_NOBOS},
                                           {"special", no_argument, 0, O_SPECIAL},
                                           {0, 0, 0, 0}};
    const char *text = NULL, *file = NULL;
    bool bos = true, special = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (c == O_TEXT) text = optarg;
        else if (c == O_FILE) file = optarg;
        else if (c == O_NOBOS) bos = false;
        else if (c == O_SPECIAL) special = true;
        else return DQ_EXIT_ERROR;
    }
    if (optind != argc - 1 || (!text == !file)) {
        fprintf(stderr, "dashq: error: tokenize takes TOKENIZER and one of --text or --file\n");
        return DQ_EXIT_ERROR;
    }
    dq_error err = {0};
    dq_tokenizer *t;
    if (dq_tokenizer_load(argv[optind], &t, &err)) return dq_cli_error(&err);
    char *buf = NULL;
    size_t len = text ? strlen(text) : 0;
    if (file && dq_read_text(file, (size_t)1 << 32, &buf, &len, &err)) {
        dq_tokenizer_free(t);
        return dq_cli_error(&err);
    }
    int32_t *ids;
    size_t n;
    dq_status st = dq_tokenize(t, text ? text : buf, len, bos && dq_tokenizer_adds_bos(t), special, &ids, &n, &err);
    free(buf);
    dq_tokenizer_free(t);
    if (st) return dq_cli_error(&err);
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids);
    return 0;
}
