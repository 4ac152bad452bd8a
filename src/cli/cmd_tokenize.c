/* dashq tokenize: prints token ids (one line, space separated) for a text,
 * or, with --jsonl, one JSON array of ids for each JSON string line of a file
 * (the form reference tokenizers are compared in). */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void print_ids(const int32_t *ids, size_t n, bool json) {
    if (json) putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? (json ? ",%d" : " %d") : "%d", ids[i]);
    printf(json ? "]\n" : "\n");
}

/* Each line of text[0..len) is a JSON string; prints its ids as a JSON array. */
static dq_status tokenize_jsonl(const dq_tokenizer *t, const char *path, char *text, size_t len, bool bos,
                                bool special, dq_error *err) {
    long line = 0;
    for (char *l = text, *next; l < text + len; l = next) {
        char *nl = memchr(l, '\n', (size_t)(text + len - l));
        next = nl ? nl + 1 : text + len;
        if (nl) *nl = '\0';
        if (nl && nl > l && nl[-1] == '\r') nl[-1] = '\0';
        line++;
        if (!*l) continue;
        cJSON *s = cJSON_Parse(l);
        if (!cJSON_IsString(s)) {
            cJSON_Delete(s);
            return dq_fail(err, DQ_ERR_FORMAT, "%s:%ld: not a JSON string", path, line);
        }
        int32_t *ids;
        size_t n;
        dq_status st = dq_tokenize(t, s->valuestring, strlen(s->valuestring), bos, special, &ids, &n, err);
        cJSON_Delete(s);
        if (st) {
            char msg[sizeof err->msg];
            snprintf(msg, sizeof msg, "%s", err->msg);
            return dq_fail(err, st, "%s:%ld: %s", path, line, msg);
        }
        print_ids(ids, n, true);
        free(ids);
    }
    return DQ_OK;
}

int dq_cmd_tokenize(int argc, char **argv) {
    enum { O_TEXT = 256, O_FILE, O_NOBOS, O_SPECIAL, O_JSONL, O_CHAT, O_SYSTEM, O_TEMPLATE };
    static const struct option longs[] = {{"text", required_argument, 0, O_TEXT},
                                           {"file", required_argument, 0, O_FILE},
                                           {"jsonl", required_argument, 0, O_JSONL},
                                           {"chat", no_argument, 0, O_CHAT},
                                           {"system", required_argument, 0, O_SYSTEM},
                                           {"chat-template", required_argument, 0, O_TEMPLATE},
                                           {"no-bos", no_argument, 0, O_NOBOS},
                                           {"special", no_argument, 0, O_SPECIAL},
                                           {0, 0, 0, 0}};
    const char *text = NULL, *file = NULL, *system = NULL, *tmpl = NULL;
    bool bos = true, special = false, jsonl = false, chat = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if (c == O_TEXT) text = optarg;
        else if (c == O_FILE || c == O_JSONL) file = optarg, jsonl = c == O_JSONL;
        else if (c == O_NOBOS) bos = false;
        else if (c == O_SPECIAL) special = true;
        else if (c == O_CHAT) chat = special = true;
        else if (c == O_SYSTEM) system = optarg;
        else if (c == O_TEMPLATE) tmpl = optarg;
        else return DQ_EXIT_ERROR;
    }
    if (optind != argc - 1 || (!text == !file)) {
        fprintf(stderr, "dashq: error: tokenize takes TOKENIZER and one of --text, --file or --jsonl\n");
        return DQ_EXIT_ERROR;
    }
    if ((system || tmpl) && !chat) {
        fprintf(stderr, "dashq: error: --system and --chat-template need --chat\n");
        return DQ_EXIT_ERROR;
    }
    if (chat && !text) {
        fprintf(stderr, "dashq: error: tokenize --chat takes the user's turn as --text\n");
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
    int32_t *ids = NULL, eot;
    size_t n;
    bos = bos && dq_tokenizer_adds_bos(t);
    if (chat && dq_cli_chat_text(t, tmpl, system, text, &buf, &eot, &err)) { /* the prompt generate --chat feeds */
        dq_tokenizer_free(t);
        return dq_cli_error(&err);
    }
    if (chat) text = buf, len = strlen(buf);
    dq_status st = jsonl ? tokenize_jsonl(t, file, buf, len, bos, special, &err)
                         : dq_tokenize(t, text ? text : buf, len, bos, special, &ids, &n, &err);
    free(buf);
    dq_tokenizer_free(t);
    if (st) return dq_cli_error(&err);
    if (!jsonl) print_ids(ids, n, false);
    free(ids);
    return 0;
}
