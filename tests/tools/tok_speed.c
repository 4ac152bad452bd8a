/* Tokenization speed and peak memory, whole text (dq_tokenize) against the
 * stream (tokenizer/stream.c) in blocks, on one file; checks the ids agree.
 *   tok_speed TOKENIZER TEXT [whole|stream|both] [BLOCK]
 * Prints CPU seconds and MB/s per path (bench/README.md). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dashq.h"
#include "tokenizer/stream.h"
#include "util/mapped_file.h"

static double cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    size_t n;
    uint64_t hash;
} digest;

static bool take(void *user, const int32_t *ids, size_t n) {
    digest *d = user;
    for (size_t i = 0; i < n; i++) d->hash = (d->hash ^ (uint32_t)ids[i]) * 0x100000001b3ull;
    d->n += n;
    return true;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: tok_speed TOKENIZER TEXT [whole|stream|both] [BLOCK]\n");
        return 2;
    }
    const char *mode = argc > 3 ? argv[3] : "both";
    size_t block = argc > 4 ? (size_t)atol(argv[4]) : 65536;
    dq_error err = {0};
    dq_tokenizer *t;
    if (dq_tokenizer_load(argv[1], &t, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    digest whole = {0, 0xcbf29ce484222325ull}, streamed = whole;
    size_t bytes = 0;
    if (strcmp(mode, "stream")) {
        char *text;
        if (dq_read_text(argv[2], (size_t)1 << 33, &text, &bytes, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        double t0 = cpu();
        int32_t *ids;
        size_t n;
        if (dq_tokenize(t, text, bytes, true, false, &ids, &n, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        double s = cpu() - t0;
        take(&whole, ids, n);
        printf("whole:  %zu tokens, %.2f s CPU, %.2f MB/s\n", n, s, bytes / 1e6 / s);
        free(ids);
        free(text);
    }
    if (strcmp(mode, "whole")) {
        FILE *f = fopen(argv[2], "rb");
        char *buf = malloc(block);
        dq_tok_stream *s;
        if (!f || !buf || dq_tok_stream_new(t, true, false, take, &streamed, &s, &err)) return 1;
        double t0 = cpu();
        size_t got;
        bytes = 0;
        while ((got = fread(buf, 1, block, f)) > 0) {
            bytes += got;
            if (dq_tok_stream_feed(s, buf, got, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        }
        if (dq_tok_stream_finish(s, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
        double sec = cpu() - t0;
        printf("stream: %zu tokens, %.2f s CPU, %.2f MB/s (blocks of %zu bytes)\n", streamed.n, sec, bytes / 1e6 / sec,
               block);
        dq_tok_stream_free(s);
        free(buf);
        fclose(f);
    }
    dq_tokenizer_free(t);
    if (!strcmp(mode, "both") && (whole.n != streamed.n || whole.hash != streamed.hash)) {
        printf("DIFFERENT ids\n");
        return 1;
    }
    return 0;
}
