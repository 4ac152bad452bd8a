/* dashq convert: any model we read, written as a GGUF file for llama.cpp or
 * as a Hugging Face folder for Python tools (--format hf). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "export/gguf_export.h"
#include "export/hf_export.h"
#include "util/files.h"

static int usage_error(const char *msg) {
    fprintf(stderr,
            "dashq: error: %s (usage: dashq convert MODEL -o OUT.gguf [--type F32|F16|BF16|Q8_0] | "
            "dashq convert MODEL --format hf -o DIR [--type F32|BF16])\n",
            msg);
    return DQ_EXIT_ERROR;
}

/* A Hugging Face folder: F32 by default, so that it loads back to the same logits. */
static int convert_hf(const dq_common_opts *c, const char *out, const char *type_name) {
    dq_hf_export_opts o;
    if (!strcmp(type_name, "F32")) o.type = DQ_DTYPE_F32;
    else if (!strcmp(type_name, "BF16")) o.type = DQ_DTYPE_BF16;
    else return usage_error("--format hf takes --type F32 or BF16");
    dq_model *m;
    dq_tokenizer *t;
    if (dq_cli_load(c, &m, &t)) return DQ_EXIT_ERROR;
    dq_error err = {0};
    const char *inputs[] = {c->model, m->path, dq_tokenizer_path(t)};
    dq_status st = dq_check_output(out, DQ_OUT_PACKED_DIR, inputs, 3, &err);
    if (!st) st = dq_export_hf(out, m, t, &o, &err);
    dq_tokenizer_free(t);
    dq_model_free(m);
    if (st) return dq_cli_error(&err);
    printf("wrote %s (Hugging Face folder, %s)\n", out, type_name);
    return 0;
}

int dq_cmd_convert(int argc, char **argv) {
    enum { O_TOK = 256, O_TYPE, O_QUIET, O_FORMAT };
    static const struct option longs[] = {{"tokenizer", required_argument, 0, O_TOK},
                                          {"type", required_argument, 0, O_TYPE},
                                          {"quiet", no_argument, 0, O_QUIET},
                                          {"format", required_argument, 0, O_FORMAT},
                                          {0, 0, 0, 0}};
    dq_common_opts c = {0};
    const char *out = NULL, *type_name = "F32", *format = "gguf";
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
    if (!strcmp(format, "hf")) return convert_hf(&c, out, type_name);
    if (strcmp(format, "gguf")) return usage_error("--format takes gguf or hf");
    int type = dq_ggml_type_by_name(type_name);
    if (type != DQ_GGML_F32 && type != DQ_GGML_F16 && type != DQ_GGML_BF16 && type != DQ_GGML_Q8_0)
        return usage_error("--type takes F32, F16, BF16 or Q8_0 (low-bit types: dashq quantize --format gguf)");
    dq_model *m;
    dq_tokenizer *t;
    if (dq_cli_load(&c, &m, &t)) return DQ_EXIT_ERROR;
    dq_gguf_export_opts o = {.type = (dq_ggml_type)type, .name = NULL};
    dq_error err = {0};
    const char *inputs[] = {c.model, m->path, dq_tokenizer_path(t)};
    dq_status st = dq_check_output(out, DQ_OUT_GGUF, inputs, 3, &err);
    if (!st) st = dq_export_gguf(out, m, t, &o, &err);
    dq_tokenizer_free(t);
    dq_model_free(m);
    if (st) return dq_cli_error(&err);
    printf("wrote %s (%s)\n", out, type_name);
    return 0;
}
