/* Resumable quantization (issue #15, --resume): a run killed with SIGKILL
 * after a block (a child process that kills itself from the progress
 * callback, as kill -9 would) leaves no output and a state folder; running
 * the same job again continues from the last finished block and writes the
 * bytes an uninterrupted run writes (packed checkpoint and GGUF file), then
 * removes the state. A job with other options is refused while the state is
 * there, naming the folder; a run that never finished a block starts over. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dashq.h"
#include "testutil.h"

#define GUT6L_HF "models/gut6l-hf"
#define CALIB "data/wikitext2/wiki.test.raw"

static int kill_after = -1; /* SIGKILL once this many blocks are done; -1: never */

static bool progress(const char *stage, size_t done, size_t total, void *user) {
    (void)total, (void)user;
    if (!strcmp(stage, "quantize") && (int)done == kill_after) raise(SIGKILL);
    return true;
}

static char model[1024], tok[1024], calib[1024];

static dq_status run(const char *out, const char *type, int bits, bool resume, dq_error *err) {
    dq_model *m;
    dq_status st = dq_model_load_lazy(model, &m, err);
    if (st) return st;
    dq_tokenizer *t = tu_tokenizer(tok);
    dq_quantize_params p = dq_quantize_default_params();
    p.method = "gptq";
    p.bits = bits;
    p.group = 32;
    p.calib = calib;
    p.nsamples = 4;
    p.seqlen = 32;
    p.n_threads = 2;
    p.resume = resume;
    p.progress.fn = progress;
    if (type) p.format = "gguf", p.gguf_type = type, p.bits = 0, p.group = 0;
    st = dq_quantize(m, t, out, &p, NULL, err);
    dq_tokenizer_free(t);
    dq_model_free(m);
    return st;
}

/* The job in a child that dies by SIGKILL after `blocks` blocks: this
 * program again (a fresh process: OpenMP's threads do not survive fork). */
static void killed_run(const char *out, const char *type, int blocks) {
    char n[16];
    snprintf(n, sizeof n, "%d", blocks);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_resume", "--killed-run", out, type ? type : "", n, model, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static bool exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Killed after `blocks`, resumed: the bytes of a straight run. */
static void resumed_equals_straight(const char *name, const char *type, int blocks) {
    char straight[1100], out[1100], state[1200], a[1300];
    snprintf(straight, sizeof straight, "%s-straight", tu_tmp(name));
    snprintf(out, sizeof out, "%s", tu_tmp(name));
    snprintf(state, sizeof state, "%s.resume/state.json", out);
    dq_error err = {0};
    if (run(straight, type, 3, false, &err)) fail_msg("%s", err.msg);
    killed_run(out, type, blocks);
    assert_false(exists(out));
    assert_true(exists(state));
    /* other options: refused while the state is there, which stays */
    assert_int_equal(run(out, type ? "Q2_K" : NULL, 2, true, &err), DQ_ERR_ARG);
    if (!strstr(err.msg, ".resume holds an interrupted run")) fail_msg("message: %s", err.msg);
    assert_true(exists(state));
    if (run(out, type, 3, true, &err)) fail_msg("%s", err.msg);
    snprintf(a, sizeof a, "%s.resume", out);
    assert_false(exists(a)); /* finished: the state is gone */
    if (type) {
        if (!tu_same_file(straight, out)) fail_msg("%s: the resumed GGUF differs", name);
        return;
    }
    const char *what;
    if (!tu_same_folder(straight, out, &what)) fail_msg("%s: %s differs after resuming", name, what);
}

static void test_packed_killed_resumed(void **st) {
    (void)st;
    resumed_equals_straight("resume-packed", NULL, 2);
}

/* A sharded input gives a sharded checkpoint (issue #15): every shard and
 * the index resume to a straight run's bytes. */
static void test_sharded_killed_resumed(void **st) {
    (void)st;
    char keep[sizeof model], a[1300];
    snprintf(keep, sizeof keep, "%s", model);
    snprintf(model, sizeof model, "%s", tu_hf_sharded(tu_shared(GUT6L_HF), "gut6l-3shards", 3));
    resumed_equals_straight("resume-sharded", NULL, 3);
    snprintf(a, sizeof a, "%s/model-00003-of-00003.safetensors", tu_tmp("resume-sharded"));
    assert_true(exists(a));
    snprintf(a, sizeof a, "%s/model.safetensors", tu_tmp("resume-sharded"));
    assert_false(exists(a));
    snprintf(model, sizeof model, "%s", keep);
}

static void test_gguf_killed_resumed(void **st) {
    (void)st;
    resumed_equals_straight("resume-q4km.gguf", "Q4_K_M", 5);
}

/* Killed before its first block finished: nothing to continue, a fresh start. */
static void test_killed_early_starts_over(void **st) {
    (void)st;
    char out[1100], straight[1200], a[1300], b[1300];
    snprintf(out, sizeof out, "%s", tu_tmp("resume-early"));
    snprintf(straight, sizeof straight, "%s-straight", out);
    dq_error err = {0};
    killed_run(out, NULL, 0 + 1); /* after the first block: then kill the folder's state.json too */
    snprintf(a, sizeof a, "%s.resume/state.json", out);
    assert_int_equal(unlink(a), 0);
    if (run(out, NULL, 3, true, &err)) fail_msg("%s", err.msg);
    if (run(straight, NULL, 3, false, &err)) fail_msg("%s", err.msg);
    snprintf(a, sizeof a, "%s/model.safetensors", out);
    snprintf(b, sizeof b, "%s/model.safetensors", straight);
    assert_true(tu_same_file(a, b));
}

int main(int argc, char **argv) {
    snprintf(model, sizeof model, "%s", tu_shared(GUT6L_HF));
    snprintf(tok, sizeof tok, "%s", tu_shared(GUT6L_HF "/tokenizer.json"));
    snprintf(calib, sizeof calib, "%s", tu_shared(CALIB));
    if (argc == 6 && !strcmp(argv[1], "--killed-run")) { /* killed_run's child */
        snprintf(model, sizeof model, "%s", argv[5]);
        kill_after = atoi(argv[4]);
        dq_error err = {0};
        run(argv[2], argv[3][0] ? argv[3] : NULL, 3, true, &err);
        fprintf(stderr, "not killed: %s\n", err.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_packed_killed_resumed),
        cmocka_unit_test(test_sharded_killed_resumed),
        cmocka_unit_test(test_gguf_killed_resumed),
        cmocka_unit_test(test_killed_early_starts_over),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
