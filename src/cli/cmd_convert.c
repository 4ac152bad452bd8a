/* dashq convert: any model we read, written as a GGUF file for llama.cpp or
 * as a Hugging Face folder for Python tools (--format hf). */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"

static int usage_error(const char *msg) {
    fprintf(stderr,
            "dashq: error: %s (usage: dashq convert MODEL -o OUT.gguf [--type F32|F16|BF16|Q8_0] | "
            "dashq convert MODEL --format hf -o DIR [--type F32|BF16] [--max-shard-size 5GB])\n",
            msg);
    return DQ_EXIT_ERROR;
}

/* A size in huggingface_hub's units: bytes, or a whole number with KB/MB/GB/TB
 * (powers of 1000) or KiB/MiB/GiB/TiB (of 1024), any case ("5GB", "5gb"). */
static bool parse_size(const char *s, uint64_t *out) {
    static const struct {
        const char *unit;
        uint64_t mul;
    } units[] = {{"", 1},         {"KB", 1000ull},    {"MB", 1000000ull},    {"GB", 1000000000ull}, {"TB", 1000000000000ull},
                 {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40}};
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || !isdigit((unsigned char)*s) || errno) return false; /* no sign, no leading space */
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (!strcasecmp(end, units[i].unit)) {
            if (v == 0 || v > UINT64_MAX / units[i].mul) return false;
            *out = v * units[i].mul;
            return true;
        }
    return false;
}

int dq_cmd_convert(int argc, char **argv) {
    enum { O_TOK = 256, O_TYPE, O_QUIET, O_FORMAT, O_SHARD };
    static const struct option longs[] = {{"tokenizer", required_argument, 0, O_TOK},
                                          {"type", required_argument, 0, O_TYPE},
                                          {"quiet", no_argument, 0, O_QUIET},
                                          {"format", required_argument, 0, O_FORMAT},
                                          {"max-shard-size", required_argument, 0, O_SHARD},
                                          {0, 0, 0, 0}};
    dq_common_opts c = {0};
    dq_convert_params p = dq_convert_default_params();
    const char *out = NULL, *shard = NULL;
    long threads;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "o:t:", longs, NULL)) != -1) {
        switch (opt) {
        case O_TOK: c.tokenizer = optarg; break;
        case O_TYPE: p.type = optarg; break;
        case O_QUIET: c.quiet = true; break;
        case O_FORMAT: p.format = optarg; break;
        case O_SHARD: shard = optarg; break;
        case 'o': out = optarg; break;
        case 't': if (!dq_cli_int("-t", optarg, 1, 1024, &threads)) return DQ_EXIT_ERROR; break;
        default: return DQ_EXIT_ERROR;
        }
    }
    if (optind != argc - 1) return usage_error("convert takes exactly one MODEL");
    if (!out) return usage_error("convert needs -o OUT");
    c.model = argv[optind];
    dq_error err = {0};
    if (dq_convert_check(p.format, p.type, &err)) return usage_error(err.msg); /* before loading the model */
    if (shard && strcmp(p.format, "hf")) return usage_error("--max-shard-size is for --format hf");
    if (shard && !parse_size(shard, &p.max_shard_bytes))
        return usage_error("--max-shard-size takes a size such as 5GB, 500MB, 2GiB or a number of bytes");
    c.lazy = true; /* held one block at a time: a model larger than RAM converts */
    dq_model *m;
    dq_tokenizer *t;
    if (dq_cli_load(&c, &m, &t)) return DQ_EXIT_ERROR;
    dq_cli_bar bar;
    p.progress = dq_cli_progress(&bar, c.quiet);
    dq_status st = dq_convert(m, t, out, &p, &err);
    dq_cli_bar_end(&bar);
    dq_tokenizer_free(t);
    dq_model_free(m);
    if (st) return dq_cli_error(&err);
    if (!strcmp(p.format, "hf")) printf("wrote %s (Hugging Face folder, %s)\n", out, p.type);
    else printf("wrote %s (%s)\n", out, p.type);
    return 0;
}
