/* libFuzzer target for the evaluation inputs users hand us: task lines (JSON
 * for six tasks, six-line HellaSwag items, its text cleanup) and sweep CSVs
 * and zero-shot lines for `dashq report`. The first byte picks the task; any input must end in
 * DQ_OK or a clean error, ASan/UBSan catch the rest. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "eval/report.h"
#include "eval/tasks.h"
#include "util/lines.h"

static void parse_lines(dq_task_id id, char *text, size_t len) {
    const char *lines[6];
    int n = 0;
    for (char *cur = text, *line; (line = dq_next_line(&cur, text + len));) {
        dq_task_item it;
        dq_error err = {0};
        if (id != DQ_TASK_HELLASWAG) {
            if (dq_task_parse_json(id, line, strlen(line), &it, &err) == DQ_OK) dq_task_item_free(&it);
            continue;
        }
        free(dq_hellaswag_preprocess(line));
        lines[n++] = line;
        if (n == 6) {
            if (dq_task_parse_hellaswag(lines, &it, &err) == DQ_OK) dq_task_item_free(&it);
            n = 0;
        }
    }
}

static void load_csv(const uint8_t *data, size_t size) {
    int fd = memfd_create("csv", 0);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) abort();
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    dq_results r;
    dq_error err = {0};
    if (dq_results_load(path, &r, &err) != DQ_OK) memset(&r, 0, sizeof r);
    dq_results_load_zeroshot(path, &r, &err); /* the same bytes as the sweep's zero-shot lines */
    dq_results_free(&r);
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char *text = malloc(size);
    if (!text) abort();
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    parse_lines((dq_task_id)(data[0] % DQ_TASK_COUNT), text, size - 1);
    free(text);
    load_csv(data + 1, size - 1);
    return 0;
}
