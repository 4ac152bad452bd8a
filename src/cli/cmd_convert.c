/* dashq convert: any model we read, written as a GGUF file for llama.cpp or
 * as a Hugging Face folder for Python tools (--format hf). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int usage_error(const char *msg) {
    fprintf(stderr,
            "dashq: error: %s (usage: dashq convert MODEL -o OUT.gguf [--type F32|F16|BF16|Q8_0] | "
            "dashq convert MODEL --format hf -o DIR [--type F32|BF16])\n",
            msg);
    return DQ_EXIT_ERROR;
}

int dq_cmd_convert(int argc, char **argv) {
    enum { O_TOK = 256, O_TYPE, O_QUIET, O_FORMAT };
    static const struct option longs[] = {{"tokenizer", required_argument, 0, O_TOK},
                                          {"type", required_argument, 0, O_TYPE},
                                          {"quiet", no_argument, 0, O_QUIET},
                                          {"format", required_argument, 0, O_FORMAT},
                                          {0, 0, 0, 0}};
    dq_common_opts c = {0};
    const char *out = NULL, *type_name = "F32", *format = "gguf"; /* F32: loads back to the same logits */
    long threads;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "o:t:", longs, NULL)) != -1) {
        switch (opt) {
        case O_TOK: c.tokenizer = optarg; break;
        case O_TYPE: type_name = optarg; break;
        case O_QUIET: c.quiet = true; break;
        case O_FORMAT: format = optarg; break;
        case 'o': out = optarg; break;
        case 't': if (!dq_cli_int("-t", optarg, 1, 1024, &threads)) return DQ_EXIT_ERROR; break;
        default: return DQ_EXIT_ERROR;
        }
    }
    if (optind != argc - 1) return usage_error("convert takes exactly one MODEL");
    if (!out) return usage_error("convert needs -o OUT");
    c.model = argv[optind];
    dq_error err = {0};
    if (dq_convert_check(format, type_name, &err)) return usage_error(err.msg); /* before loading the model */
    dq_model *m;
    dq_tokenizer *t;
    if (dq_cli_load(&c, &m, &t)) return DQ_EXIT_ERROR;
    dq_status st = dq_convert(m, t, out, format, type_name, &err);
    dq_tokenizer_free(t);
    dq_model_free(m);
    if (st) return dq_cli_error(&err);
    if (!strcmp(format, "hf")) printf("wrote %s (Hugging Face folder, %s)\n", out, type_name);
    else printf("wrote %s (%s)\n", out, type_name);
    return 0;
}
