#define _POSIX_C_SOURCE 200809L
#include "util/tmpfiles.h"

#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "util/files.h"

/* A slot is filled (path written) before `state` says so, and `state` is
 * cleared before the slot is reused, with signal fences between: the handler
 * never reads a half-written path. Writers run on the main thread; the
 * OpenMP workers never register. */
static char paths[DQ_TMP_SLOTS][PATH_MAX];
static volatile sig_atomic_t state[DQ_TMP_SLOTS]; /* 0 free, 1 file, 2 folder */
static volatile sig_atomic_t order[DQ_TMP_SLOTS]; /* registration number, newest removed first */
static volatile sig_atomic_t counter;

static const int SIGNALS[] = {SIGINT, SIGTERM, SIGHUP};

static void remove_all(void) {
    /* newest first: a folder's files were registered after the folder */
    for (;;) {
        int best = -1;
        for (int i = 0; i < DQ_TMP_SLOTS; i++)
            if (state[i] && (best < 0 || order[i] > order[best])) best = i;
        if (best < 0) return;
        if (state[best] == 2) rmdir(paths[best]);
        else unlink(paths[best]);
        state[best] = 0;
    }
}

static void on_signal(int sig) {
    remove_all();
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl); /* memset is async-signal-safe since POSIX.1-2016 */
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig); /* delivered once the handler returns: the default action, killed by sig */
}

void dq_tmp_install_handlers(void) {
    for (size_t i = 0; i < sizeof SIGNALS / sizeof *SIGNALS; i++) {
        struct sigaction old, sa;
        if (sigaction(SIGNALS[i], NULL, &old) != 0 || old.sa_handler == SIG_IGN) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        for (size_t j = 0; j < sizeof SIGNALS / sizeof *SIGNALS; j++) sigaddset(&sa.sa_mask, SIGNALS[j]);
        sa.sa_flags = SA_RESETHAND;
        sigaction(SIGNALS[i], &sa, NULL);
    }
}

int dq_tmp_register(const char *path, bool is_dir) {
    size_t n = strlen(path);
    if (n >= PATH_MAX) return -1;
    for (int i = 0; i < DQ_TMP_SLOTS; i++) {
        if (state[i]) continue;
        memcpy(paths[i], path, n + 1);
        order[i] = ++counter;
        atomic_signal_fence(memory_order_seq_cst);
        state[i] = is_dir ? 2 : 1;
        return i;
    }
    return -1;
}

void dq_tmp_unregister(int slot) {
    if (slot < 0 || slot >= DQ_TMP_SLOTS) return;
    state[slot] = 0;
    atomic_signal_fence(memory_order_seq_cst);
}

void dq_tmp_unregister_under(const char *dir) {
    size_t n = strlen(dir);
    for (int i = 0; i < DQ_TMP_SLOTS; i++)
        if (state[i] && !strncmp(paths[i], dir, n) && (paths[i][n] == 0 || paths[i][n] == '/')) dq_tmp_unregister(i);
}

void dq_tmp_cleanup_now(void) {
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old); /* not twice at once with the handler */
    remove_all();
    sigprocmask(SIG_SETMASK, &old, NULL);
}

int dq_tmp_count(void) {
    int n = 0;
    for (int i = 0; i < DQ_TMP_SLOTS; i++) n += state[i] != 0;
    return n;
}
