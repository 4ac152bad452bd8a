#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    char methods[1024]; /* one line per row of the quantizer table, with the options it reads */
    dq_quantize_method_help(methods, sizeof methods, "                   ");
    fprintf(f,
            "dashq %s — post-training quantization of Llama-family models\n\n"
            "usage: dashq COMMAND MODEL [options]\n\n"
            "commands:\n"
            "  generate MODEL [--tokenizer F] [--prompt TEXT] [-n N] [--temp T] [--top-p P] [--seed S] [--ids]\n"
            "                 [--chat [--system TEXT] [--chat-template NAME]]   (the prompt as a user turn in\n"
            "                 the model's chat template, rendered as llama.cpp's llama_chat_apply_template:\n"
            "                 no system turn unless --system, even where the Jinja template has a default)\n"
            "  eval     MODEL [--tokenizer F] --ppl FILE [--ctx N] [--llamacpp-compatible]\n"
            "                 [--save-logits F | --kld F] [--chunks N] [--json]\n"
            "                 [--tasks piqa,arc_easy,arc_challenge,hellaswag,winogrande,boolq,lambada]\n"
            "                 [--limit N] [--data-dir DIR] [--no-bos]   (zero-shot, lm-eval-harness scoring)\n"
            "                 [--items F]   (one JSON line per item: log-likelihoods, predictions)\n"
            "                 [--act-bits A [--act-group G]]   (inputs of every linear as A-bit integers,\n"
            "                 per token or per G values; a packed checkpoint's own setting otherwise)\n"
            "                 [--mem-budget SIZE] [--tmp-dir DIR]   (--ppl/--kld alone: a model whose fp32\n"
            "                 weights pass SIZE runs block by block, its windows' states spilled past it)\n"
            "  quantize MODEL [--tokenizer F] --method METHOD --bits B --group G\n"
            "                 --calib FILE [--nsamples N] [--seqlen L] [--seed S] -o OUT\n"
            "                 [--format packed|gguf --type Q4_K_M|Q2_K|... [--pure]] [--quantize-head]\n"
            "                 (packed: a DASH-Q checkpoint folder, in safetensors shards as its input was)\n"
            "                 [--rotate none|hadamard|random|split|hero|hero-r2|hero-loss|hero-kl]\n"
            "                 [--smooth none|closed|hero]\n"
            "                 [--smooth-alpha A] [--hero-beta B] [--hero-steps N]\n"
            "                 (folded into the weights first: the model keeps its function)\n"
            "                 [--spectrum]   (each layer's curvature: λ_max, λ_max / mean, condition number)\n"
            "                 [--act-bits A [--act-group G]]   (W·A: calibrate and evaluate with A-bit inputs)\n"
            "                 [--mem-budget SIZE] [--tmp-dir DIR] [--hidden-dtype f32|bf16]   (calibration\n"
            "                 hidden states past the budget, default what is free, spill to a file in DIR,\n"
            "                 default the output's folder)\n"
            "                 [--resume]   (state in OUT.resume/ after each block; the same command again\n"
            "                 continues an interrupted run from its last finished block)\n"
            "                 [METHOD's own options, as flags: --act-order, --percdamp P, ...]\n"
            "%s"
            "  report   RESULTS.csv -o DIR [--no-plots]   (markdown table + SVG plots of a sweep)\n"
            "  convert  MODEL -o OUT.gguf [--type F32|F16|BF16|Q8_0]   (GGUF for llama.cpp)\n"
            "  convert  MODEL --format hf -o DIR [--type F32|BF16]   (Hugging Face folder)\n"
            "  tokenize MODEL|TOKENIZER [--text TEXT | --file F | --jsonl F] [--no-bos] [--special]\n"
            "                 [--chat [--system TEXT] [--chat-template NAME]]   (the ids generate --chat feeds)\n"
            "  info     MODEL\n"
            "  bench    MODEL [-p N] [-n N] [-r REPS] [--json]   (throughput, as llama-bench)\n\n"
            "common options: -t N threads (default: OMP_NUM_THREADS, else all cores), --quiet (no progress bar)\n"
            "MODEL is a llama2.c .bin checkpoint, a Hugging Face folder (also a DASH-Q packed\n"
            "checkpoint) or a GGUF file; the format is\n"
            "detected from its contents.\n",
            DQ_VERSION, methods);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? DQ_EXIT_ERROR : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("dashq %s%s\n", DQ_VERSION, dq_comm_available() ? " (Open MPI)" : "");
        return 0;
    }
    static const struct { const char *name; int (*run)(int, char **); } cmds[] = {
        {"generate", dq_cmd_generate},
        {"eval", dq_cmd_eval},
        {"tokenize", dq_cmd_tokenize},
        {"info", dq_cmd_info},
        {"bench", dq_cmd_bench},
        {"quantize", dq_cmd_quantize},
        {"convert", dq_cmd_convert},
        {"report", dq_cmd_report},
    };
    dq_tmp_install_handlers(); /* SIGINT/SIGTERM remove the temporaries of an interrupted write */
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "dashq: error: unknown command '%s' (try dashq --help)\n", argv[1]);
    return DQ_EXIT_ERROR;
}
