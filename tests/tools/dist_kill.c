/* A rank that dies mid-run, for tests/dist/mpi.sh: under mpirun, every rank
 * quantizes MODEL as `dashq quantize MODEL --method gptq --bits 3 --group 64
 * --calib CALIB --nsamples 6 --seqlen 128 --resume -o OUT` would, and rank
 * KILL_RANK raises SIGKILL once block KILL_AFTER is done (from the progress
 * callback, which the CLI gives rank 0 alone): mpirun then ends the job, and
 * the same command line continues it from OUT.resume.
 *   mpirun -np N dist_kill MODEL CALIB OUT KILL_RANK KILL_AFTER */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dashq.h"

typedef struct {
    int rank, kill_rank;
    size_t kill_after;
} victim;

static bool on_progress(const char *stage, size_t done, size_t total, void *user) {
    const victim *v = user;
    (void)total;
    if (!strcmp(stage, "quantize") && v->rank == v->kill_rank && done == v->kill_after) raise(SIGKILL);
    return true;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL CALIB OUT KILL_RANK KILL_AFTER\n", argv[0]);
        return 2;
    }
    dq_error err = {0};
    dq_comm *comm = NULL;
    if (dq_comm_init(&argc, &argv, &comm, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
    victim v = {dq_comm_rank(comm), atoi(argv[4]), (size_t)atoi(argv[5])};
    dq_model *m = NULL;
    dq_tokenizer *t = NULL;
    dq_quantize_params p = dq_quantize_default_params();
    p.method = "gptq";
    p.bits = 3, p.group = 64;
    p.calib = argv[2];
    p.nsamples = 6, p.seqlen = 128;
    p.resume = true;
    p.comm = comm;
    p.progress = (dq_progress){on_progress, NULL, &v};
    dq_status st = dq_model_load_lazy(argv[1], &m, &err);
    if (!st) st = dq_tokenizer_for_model(argv[1], dq_model_config(m)->vocab_size, &t, &err);
    if (!st) st = dq_quantize(m, t, argv[3], &p, NULL, &err);
    if (st) fprintf(stderr, "rank %d: error: %s\n", v.rank, err.msg);
    dq_tokenizer_free(t);
    dq_model_free(m);
    dq_comm_finalize(comm);
    return st ? 2 : 0;
}
