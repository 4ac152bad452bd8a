/* The process group of a distributed quantization (dist/comm.h): Open MPI's
 * MPI_COMM_WORLD when the build has it and the process was started by
 * mpirun, else none (NULL: one process, every call a no-op). */
#define _POSIX_C_SOURCE 200809L
#include "dist/comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef DQ_HAVE_MPI
#include <mpi.h>
#endif

#include "util/dd.h"
#include "util/error.h"

struct dq_comm {
    int rank, size;
    uint64_t sent;
#ifdef DQ_HAVE_MPI
    MPI_Datatype dd;  /* (hi, lo) */
    MPI_Op dd_sum;
#endif
};

int dq_comm_rank(const dq_comm *c) { return c ? c->rank : 0; }
int dq_comm_size(const dq_comm *c) { return c ? c->size : 1; }
uint64_t dq_comm_bytes_sent(const dq_comm *c) { return c ? c->sent : 0; }

void dq_comm_share(const dq_comm *c, int n, int *w0, int *w1) {
    int r = dq_comm_rank(c), p = dq_comm_size(c);
    *w0 = (int)((long long)n * r / p);
    *w1 = (int)((long long)n * (r + 1) / p);
}

/* The size mpirun (or another launcher) gave this process's job: 0 when it
 * was not started by one. */
static int launched_size(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

#ifdef DQ_HAVE_MPI
/* Set by the reduction operator when an exact sum rounded (it has no other
 * way out); read and cleared right after each reduction, on this thread. */
static bool dd_rounded;

/* inout[i] += in[i] for (hi, lo) pairs, exactly (util/dd.h). */
static void dd_sum_op(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const double *a = in;
    double *b = inout;
    for (int i = 0; i < *len; i++) dq_dd_merge(b + 2 * i, a + 2 * i, &dd_rounded);
}

static dq_status mpi_fail(dq_error *err, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return dq_fail(err, DQ_ERR_IO, "MPI %s failed: %.*s", what, len, msg);
}
#endif

bool dq_comm_available(void) {
#ifdef DQ_HAVE_MPI
    return true;
#else
    return false;
#endif
}

dq_status dq_comm_init(int *argc, char ***argv, dq_comm **out, dq_error *err) {
    *out = NULL;
    int n = launched_size();
    if (n == 0) return DQ_OK; /* one process */
#ifdef DQ_HAVE_MPI
    int provided = 0, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) return dq_fail(err, DQ_ERR_IO, "MPI_Init failed (code %d)", rc);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    dq_comm *c = calloc(1, sizeof *c);
    if (!c) {
        MPI_Finalize();
        return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    MPI_Type_contiguous(2, MPI_DOUBLE, &c->dd);
    MPI_Type_commit(&c->dd);
    MPI_Op_create(dd_sum_op, 1, &c->dd_sum); /* exact: the order does not matter */
    *out = c;
    return DQ_OK;
#else
    (void)argc, (void)argv;
    if (n > 1)
        return dq_fail(err, DQ_ERR_UNSUPPORTED, "started as one of %d processes, but this dashq was built without "
                       "Open MPI (install libopenmpi-dev and rebuild)", n);
    return DQ_OK;
#endif
}

void dq_comm_finalize(dq_comm *c) {
    if (!c) return;
#ifdef DQ_HAVE_MPI
    MPI_Op_free(&c->dd_sum);
    MPI_Type_free(&c->dd);
    MPI_Finalize();
#endif
    free(c);
}

void dq_comm_abort(dq_comm *c, int code) {
#ifdef DQ_HAVE_MPI
    if (c && c->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)c, (void)code;
#endif
}

dq_status dq_comm_agree(const dq_comm *c, dq_status st, dq_error *err) {
    if (dq_comm_size(c) == 1) return st;
#ifdef DQ_HAVE_MPI
    int mine = st ? c->rank : c->size, first = c->size;
    int rc = MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "all-reduce of the ranks' status");
    if (first == c->size) return DQ_OK;
    struct {
        int code;
        char msg[sizeof err->msg];
    } m = {0};
    if (c->rank == first) {
        m.code = (int)st;
        if (err) snprintf(m.msg, sizeof m.msg, "%s", err->msg);
    }
    rc = MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "broadcast of a rank's error");
    if (c->rank == first) return st;
    return dq_fail(err, (dq_status)m.code, "rank %d: %s", first, m.msg);
#else
    (void)err;
    return st;
#endif
}

#define CHUNK ((size_t)1 << 22) /* elements per collective: bounded MPI buffers, int counts */

dq_status dq_comm_sum_dd(const dq_comm *c, double *pairs, size_t n, bool *inexact, dq_error *err) {
    if (dq_comm_size(c) == 1) return DQ_OK;
#ifdef DQ_HAVE_MPI
    dq_comm *w = (dq_comm *)c;
    dd_rounded = false;
    for (size_t i = 0; i < n; i += CHUNK) {
        int k = (int)(n - i < CHUNK ? n - i : CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, pairs + 2 * i, k, c->dd, c->dd_sum, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "all-reduce of the statistics");
        w->sent += (uint64_t)k * 16;
    }
    int mine = dd_rounded, any = 0;
    int rc = MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "all-reduce of the statistics");
    if (any && inexact) *inexact = true;
    return DQ_OK;
#else
    (void)pairs, (void)n, (void)inexact, (void)err;
    return DQ_OK;
#endif
}

dq_status dq_comm_merge(const dq_comm *c, double *v, size_t n, dq_error *err) {
    if (dq_comm_size(c) == 1) return DQ_OK;
#ifdef DQ_HAVE_MPI
    dq_comm *w = (dq_comm *)c;
    for (size_t i = 0; i < n; i += CHUNK) {
        int k = (int)(n - i < CHUNK ? n - i : CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, v + i, k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "all-reduce of per-window values");
        w->sent += (uint64_t)k * 8;
    }
    return DQ_OK;
#else
    (void)v, (void)n, (void)err;
    return DQ_OK;
#endif
}

dq_status dq_comm_bcast(const dq_comm *c, void *buf, size_t bytes, int root, dq_error *err) {
    if (dq_comm_size(c) == 1) return DQ_OK;
#ifdef DQ_HAVE_MPI
    dq_comm *w = (dq_comm *)c;
    for (size_t i = 0; i < bytes; i += CHUNK * 64) {
        int k = (int)(bytes - i < CHUNK * 64 ? bytes - i : CHUNK * 64);
        int rc = MPI_Bcast((char *)buf + i, k, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(err, rc, "broadcast");
        if (c->rank == root) w->sent += (uint64_t)k;
    }
    return DQ_OK;
#else
    (void)buf, (void)bytes, (void)root, (void)err;
    return DQ_OK;
#endif
}

dq_status dq_comm_same(const dq_comm *c, uint64_t fingerprint, const char *what, dq_error *err) {
    int p = dq_comm_size(c);
    if (p == 1) return DQ_OK;
#ifdef DQ_HAVE_MPI
    uint64_t *all = malloc((size_t)p * sizeof *all);
    if (!all) return dq_fail(err, DQ_ERR_NOMEM, "out of memory");
    int rc = MPI_Allgather(&fingerprint, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) {
        free(all);
        return mpi_fail(err, rc, "all-gather of the ranks' inputs");
    }
    int bad = 0;
    for (int r = 1; r < p && !bad; r++)
        if (all[r] != all[0]) bad = r;
    free(all);
    if (bad)
        return dq_fail(err, DQ_ERR_ARG, "rank %d of %d has other %s than rank 0: every rank must run the same "
                       "command on the same files", bad, p, what);
    return DQ_OK;
#else
    (void)fingerprint, (void)what, (void)err;
    return DQ_OK;
#endif
}
