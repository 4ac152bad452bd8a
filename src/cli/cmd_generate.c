/* dashq generate: the prompt is processed as one batch, then tokens are
 * sampled one at a time from the KV cache; only text (or, with --ids, the
 * generated token ids) goes to stdout. With --chat the prompt is one user
 * turn (after an optional system turn) in the model's chat template, rendered
 * as llama.cpp's llama_chat_apply_template renders it, and generation stops at
 * EOS or the template's end-of-turn token; only the reply is printed. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct {
    float p;
    int id;
} prob_id;

static uint64_t rng_next(uint64_t *s) { /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

static float rng_float(uint64_t *s) { return (float)(rng_next(s) >> 40) / 16777216.0f; }

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int cmp_prob_desc(const void *a, const void *b) {
    const prob_id *x = a, *y = b;
    return (x->p < y->p) - (x->p > y->p);
}

/* Nucleus sampling: the smallest set of tokens whose probability reaches top_p. */
static int sample(const float *logits, int n, float temp, float top_p, prob_id *buf, uint64_t *rng) {
    if (temp <= 0.0f) return argmax(logits, n);
    float mx = logits[argmax(logits, n)];
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        buf[i] = (prob_id){expf((logits[i] - mx) / temp), i};
        sum += buf[i].p;
    }
    qsort(buf, (size_t)n, sizeof *buf, cmp_prob_desc);
    double cum = 0.0;
    int last = n - 1;
    for (int i = 0; i < n; i++) {
        cum += buf[i].p / sum;
        if (cum >= top_p) {
            last = i;
            break;
        }
    }
    double r = rng_float(rng) * cum, acc = 0.0;
    for (int i = 0; i <= last; i++) {
        acc += buf[i].p / sum;
        if (r < acc) return buf[i].id;
    }
    return buf[last].id;
}

typedef struct {
    dq_common_opts c;
    const char *prompt;
    long n;
    double temp, top_p;
    long seed;
    bool ids; /* print token ids, not text */
    bool chat;
    const char *system;        /* --system: a system turn before the prompt */
    const char *chat_template; /* --chat-template: a family name (or Jinja text) instead of the model's */
} gen_opts;

static int parse(int argc, char **argv, gen_opts *o) {
    static const struct option longs[] = {
        {"tokenizer", required_argument, 0, 'k'}, {"prompt", required_argument, 0, 'p'},
        {"temp", required_argument, 0, 'T'},      {"top-p", required_argument, 0, 'P'},
        {"seed", required_argument, 0, 's'},      {"quiet", no_argument, 0, 'q'},
        {"threads", required_argument, 0, 't'},   {"ids", no_argument, 0, 'i'},
        {"chat", no_argument, 0, 'c'},            {"system", required_argument, 0, 'S'},
        {"chat-template", required_argument, 0, 'C'},
        {0, 0, 0, 0}};
    *o = (gen_opts){.prompt = "", .n = 256, .temp = 0.0, .top_p = 0.9, .seed = 42};
    long v;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:t:p:", longs, NULL)) != -1) {
        switch (c) {
        case 'k': o->c.tokenizer = optarg; break;
        case 'p': o->prompt = optarg; break;
        case 'q': o->c.quiet = true; break;
        case 'i': o->ids = true; break;
        case 'c': o->chat = true; break;
        case 'S': o->system = optarg; break;
        case 'C': o->chat_template = optarg; break;
        case 'n': if (!dq_cli_int("-n", optarg, 0, 1 << 20, &o->n)) return DQ_EXIT_ERROR; break;
        case 't': if (!dq_cli_int("-t", optarg, 1, 1024, &v)) return DQ_EXIT_ERROR; o->c.threads = (int)v; break;
        case 'T': if (!dq_cli_float("--temp", optarg, 0, 100, &o->temp)) return DQ_EXIT_ERROR; break;
        case 'P': if (!dq_cli_float("--top-p", optarg, 0, 1, &o->top_p)) return DQ_EXIT_ERROR; break;
        case 's': if (!dq_cli_int("--seed", optarg, 0, 0x7fffffffL, &o->seed)) return DQ_EXIT_ERROR; break;
        default: return DQ_EXIT_ERROR;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "dashq: error: generate takes exactly one MODEL\n");
        return DQ_EXIT_ERROR;
    }
    o->c.model = argv[optind];
    if ((o->system || o->chat_template) && !o->chat) {
        fprintf(stderr, "dashq: error: --system and --chat-template need --chat\n");
        return DQ_EXIT_ERROR;
    }
    return 0;
}

static void print_piece(const dq_tokenizer *t, int prev, int id, char *buf, size_t cap) {
    size_t len;
    if (dq_token_piece(t, prev, id, buf, cap, &len) == DQ_OK) fwrite(buf, 1, len, stdout);
    fflush(stdout);
}

/* The prompt's token ids: BOS where the tokenizer's convention adds one (as
 * llama.cpp does), special tokens written in the text parsed. With --chat the
 * text is the rendered conversation and *eot the template's end-of-turn id. */
static dq_status prompt_ids(const gen_opts *o, const dq_tokenizer *t, int32_t **ids, size_t *n, int32_t *eot,
                            dq_error *err) {
    const char *text = o->prompt;
    char *chat = NULL;
    *eot = -1;
    if (o->chat) {
        dq_status st = dq_cli_chat_text(t, o->chat_template, o->system, o->prompt, &chat, eot, err);
        if (st) return st;
        text = chat;
    }
    dq_status st = dq_tokenize(t, text, strlen(text), dq_tokenizer_adds_bos(t), true, ids, n, err);
    free(chat);
    if (st == DQ_OK && *n == 0 && dq_tokenizer_bos(t) >= 0) { /* an empty prompt starts from BOS, as in llama-cli */
        free(*ids);
        if (!(*ids = malloc(sizeof **ids))) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
        (*ids)[0] = dq_tokenizer_bos(t);
        *n = 1;
    }
    return st;
}

static int run(const gen_opts *o, const dq_model *m, const dq_tokenizer *t) {
    const dq_config *cfg = dq_model_config(m);
    dq_error err = {0};
    int32_t *ids, eot;
    size_t n_prompt;
    if (prompt_ids(o, t, &ids, &n_prompt, &eot, &err)) return dq_cli_error(&err);
    if (n_prompt == 0) { /* no BOS and no prompt: nothing to condition on */
        free(ids);
        fprintf(stderr, "dashq: error: empty prompt and the tokenizer has no BOS token\n");
        return DQ_EXIT_ERROR;
    }
    int n_ctx = (int)(n_prompt + (size_t)o->n);
    if (n_ctx > cfg->seq_len) n_ctx = cfg->seq_len;
    if ((int)n_prompt >= n_ctx) n_ctx = (int)n_prompt + 1;
    dq_session *s;
    if (dq_session_new(m, n_ctx, (int)n_prompt, o->c.threads, &s, &err)) {
        free(ids);
        return dq_cli_error(&err);
    }
    prob_id *probs = malloc((size_t)cfg->vocab_size * sizeof *probs);
    size_t cap = 4096;
    char *piece = malloc(cap);
    uint64_t rng = (uint64_t)o->seed * 0x9E3779B97F4A7C15ull + 1;
    const float *logits;
    int rc = 0;
    bool echo = !o->ids && !o->chat; /* a chat prints only the reply */
    if (echo && ids[0] != dq_tokenizer_bos(t)) print_piece(t, -1, ids[0], piece, cap);
    for (size_t i = 1; echo && i < n_prompt; i++) print_piece(t, ids[i - 1], ids[i], piece, cap);
    if (!probs || !piece || dq_forward(s, ids, (int)n_prompt, 0, false, &logits, &err)) rc = dq_cli_error(&err);
    int prev = ids[n_prompt - 1], pos = (int)n_prompt;
    for (long k = 0; rc == 0 && k < o->n && pos <= n_ctx; k++) {
        int next = sample(logits, cfg->vocab_size, (float)o->temp, (float)o->top_p, probs, &rng);
        if (next == dq_tokenizer_eos(t) || next == dq_tokenizer_bos(t) || next == eot) break;
        if (o->ids) printf("%s%d", k ? " " : "", next);
        else if (next < dq_tokenizer_vocab_size(t)) print_piece(t, prev, next, piece, cap);
        prev = next;
        if (pos == n_ctx || k + 1 == o->n) break;
        int32_t tok = next;
        if (dq_forward(s, &tok, 1, pos++, false, &logits, &err)) rc = dq_cli_error(&err);
    }
    if (rc == 0) putchar('\n');
    free(piece);
    free(probs);
    free(ids);
    dq_session_free(s);
    return rc;
}

int dq_cmd_generate(int argc, char **argv) {
    gen_opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    dq_model *m;
    dq_tokenizer *t;
    if ((rc = dq_cli_load(&o.c, &m, &t))) return rc;
    rc = run(&o, m, t);
    dq_tokenizer_free(t);
    dq_model_free(m);
    return rc;
}
