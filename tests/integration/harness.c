/*
 * harness.c: processes, temp directories and bounded waits for the
 * integration tests (see harness.h for the rules).
 *
 * Every child is started with fork + execv. Between the two only
 * async-signal-safe calls run (the test process has NNG threads), so argv
 * and every path are built before the fork. Each child's pid goes into a
 * registry that harness_kill_all() empties with SIGKILL: it runs from the
 * cmocka teardown and from an atexit handler, so no meridiand outlives a
 * failed test. A node started from the main thread also gets
 * PR_SET_PDEATHSIG, which covers a test that crashes outright. (Not from
 * other threads: the death signal fires when the forking *thread* exits.)
 */
#define _GNU_SOURCE /* gettid, pipe2, nftw; test code only */

#include "harness.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* How long a node gets to become ready, and to stop gracefully. */
#define HARNESS_START_MS 15000u
#define HARNESS_STOP_MS 10000u
#define HARNESS_CTL_MS 30000u
#define HARNESS_POLL_MS 20u

/* ------------------------------------------------------------ registry -- */

static pthread_mutex_t harness_procs_mtx = PTHREAD_MUTEX_INITIALIZER;
static pid_t           harness_procs[HARNESS_PROCS_MAX];
static pthread_once_t  harness_once = PTHREAD_ONCE_INIT;

static void
harness_atexit(void)
{
    harness_kill_all();
}

static void
harness_init_once(void)
{
    atexit(harness_atexit);
}

static int
harness_proc_add(pid_t pid)
{
    int rv = -1;

    pthread_once(&harness_once, harness_init_once);
    pthread_mutex_lock(&harness_procs_mtx);
    for (size_t i = 0; i < HARNESS_PROCS_MAX; i++) {
        if (harness_procs[i] == 0) {
            harness_procs[i] = pid;
            rv               = 0;
            break;
        }
    }
    pthread_mutex_unlock(&harness_procs_mtx);
    return rv;
}

/* Removes pid; returns whether it was there (false: already reaped by
 * harness_kill_all, so the pid may belong to someone else by now). */
static bool
harness_proc_remove(pid_t pid)
{
    bool found = false;

    pthread_mutex_lock(&harness_procs_mtx);
    for (size_t i = 0; i < HARNESS_PROCS_MAX; i++) {
        if (harness_procs[i] == pid && pid != 0) {
            harness_procs[i] = 0;
            found            = true;
            break;
        }
    }
    pthread_mutex_unlock(&harness_procs_mtx);
    return found;
}

void
harness_kill_all(void)
{
    pid_t pids[HARNESS_PROCS_MAX];

    pthread_mutex_lock(&harness_procs_mtx);
    memcpy(pids, harness_procs, sizeof pids);
    memset(harness_procs, 0, sizeof harness_procs);
    pthread_mutex_unlock(&harness_procs_mtx);
    for (size_t i = 0; i < HARNESS_PROCS_MAX; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
            while (waitpid(pids[i], NULL, 0) < 0 && errno == EINTR) { }
        }
    }
}

int
harness_teardown(void **state)
{
    (void) state;
    harness_kill_all();
    return 0;
}

/* -------------------------------------------------------------- timing -- */

uint32_t
harness_ms(uint32_t ms)
{
    const char *env = getenv("MRD_TEST_TIMEOUT_MULTIPLIER");
    double      m   = 1.0;

    if (env != NULL && env[0] != '\0') {
        char  *end = NULL;
        double v   = strtod(env, &end);
        if (end != env && v > 0.0 && v < 1000.0) {
            m = v;
        }
    }
    double scaled = (double) ms * m;
    return scaled > 4e9 ? 4000000000u : (uint32_t) scaled;
}

void
harness_sleep_ms(uint32_t ms)
{
    struct timespec ts
        = { (time_t) (ms / 1000u), (long) (ms % 1000u) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) { }
}

bool
harness_wait_for(
    bool (*cond)(void *arg), void *arg, uint32_t tries, uint32_t interval_ms)
{
    uint32_t n = harness_ms(tries);

    for (uint32_t i = 0; i < n; i++) {
        if (cond(arg)) {
            return true;
        }
        harness_sleep_ms(interval_ms);
    }
    return cond(arg);
}

/* ----------------------------------------------------------- temp dirs -- */

int
harness_tmpdir_make(const char *prefix, char *out, size_t out_size)
{
    const char *base = getenv("TMPDIR");
    int         n;

    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    n = snprintf(out, out_size, "%s/%sXXXXXX", base, prefix);
    if (n < 0 || (size_t) n >= out_size) {
        fprintf(stderr, "harness: temp dir path too long\n");
        return -1;
    }
    if (mkdtemp(out) == NULL) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", out, strerror(errno));
        return -1;
    }
    return 0;
}

static int
harness_rmrf_cb(
    const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    if (remove(path) != 0 && errno != ENOENT) {
        fprintf(stderr, "harness: remove %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

int
harness_rmrf(const char *path)
{
    struct stat st;

    if (lstat(path, &st) != 0 && errno == ENOENT) {
        return 0;
    }
    return nftw(path, harness_rmrf_cb, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

static bool
harness_keep(void)
{
    const char *env = getenv("MRD_TEST_KEEP");
    return env != NULL && strcmp(env, "1") == 0;
}

/* ------------------------------------------------------------- spawning -- */

/* Forks and execs argv[0] with stdin from /dev/null and stdout/stderr on
 * out_fd/err_fd (-1: inherited). Registers the child. Returns its pid, or
 * -1. */
static pid_t
harness_spawn(char *const argv[], int out_fd, int err_fd)
{
    pid_t parent      = getpid();
    bool  main_thread = gettid() == parent;
    int   null_fd     = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid;

    if (null_fd < 0) {
        fprintf(stderr, "harness: open /dev/null: %s\n", strerror(errno));
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        /* The child: async-signal-safe calls only. */
        sigset_t none;
        if (main_thread) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) {
                _exit(127); /* the test died before prctl took effect */
            }
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(null_fd, STDIN_FILENO);
        if (out_fd >= 0) {
            dup2(out_fd, STDOUT_FILENO);
        }
        if (err_fd >= 0) {
            dup2(err_fd, STDERR_FILENO);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    close(null_fd);
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        return -1;
    }
    if (harness_proc_add(pid) != 0) {
        fprintf(stderr, "harness: more than %u processes\n", HARNESS_PROCS_MAX);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

/* Reaps pid if it has exited: true and *status set; false while it runs. */
static bool
harness_reap(pid_t pid, int *status, bool block)
{
    pid_t r;

    do {
        r = waitpid(pid, status, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    return r == pid || (r < 0 && errno == ECHILD);
}

/* -------------------------------------------------------------- nodes -- */

/* out = dir/name; out has HARNESS_PATH_SIZE bytes. */
static int
harness_path_join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, HARNESS_PATH_SIZE, "%s/%s", dir, name);

    if (n < 0 || (size_t) n >= HARNESS_PATH_SIZE) {
        fprintf(stderr, "harness: path too long: %s/%s\n", dir, name);
        return -1;
    }
    return 0;
}

int
harness_node_init(struct harness_node *node, uint64_t node_id)
{
    memset(node, 0, sizeof *node);
    node->node_id = node_id;
    if (harness_tmpdir_make("meridian-node-", node->dir, sizeof node->dir)
        != 0) {
        return -1;
    }
    if (harness_path_join(node->data_dir, node->dir, "data") != 0
        || harness_path_join(node->log_path, node->dir, "meridiand.log") != 0
        || harness_path_join(node->ready_path, node->dir, "ready") != 0) {
        return -1;
    }
    return 0;
}

/* Prints the end of a node's log, for a start that failed. */
static void
harness_node_log_dump(const struct harness_node *node)
{
    char   buf[4096];
    FILE  *f = fopen(node->log_path, "r");
    long   size;
    size_t n;

    if (f == NULL) {
        return;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, size > (long) sizeof buf - 1 ? size - (long) sizeof buf + 1 : 0,
        SEEK_SET);
    n      = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    fprintf(stderr, "harness: --- end of %s ---\n%s\n", node->log_path, buf);
}

/* Reads the ready file: true once it holds a whole line with a URL. */
static bool
harness_ready_read(struct harness_node *node)
{
    char  line[HARNESS_URL_SIZE];
    FILE *f = fopen(node->ready_path, "r");
    char *colon;
    long  port;

    if (f == NULL) {
        return false;
    }
    if (fgets(line, sizeof line, f) == NULL || strchr(line, '\n') == NULL) {
        fclose(f);
        return false;
    }
    fclose(f);
    line[strcspn(line, "\n")] = '\0';
    colon                     = strrchr(line, ':');
    port                      = colon != NULL ? strtol(colon + 1, NULL, 10) : 0;
    if (strncmp(line, "tcp://127.0.0.1:", 16) != 0 || port <= 0
        || port > 65535) {
        fprintf(stderr, "harness: unexpected ready file line '%s'\n", line);
        return false;
    }
    snprintf(node->url, sizeof node->url, "%s", line);
    node->port = (uint16_t) port;
    return true;
}

/* Builds meridiand's argv in args (pointing into bufs). */
static int
harness_node_argv(const struct harness_node *node,
    const char *const *extra_args, char *id_buf, size_t id_size,
    char *listen_buf, size_t listen_size, const char **args)
{
    size_t n = 0;

    snprintf(id_buf, id_size, "%llu", (unsigned long long) node->node_id);
    snprintf(
        listen_buf, listen_size, "tcp://127.0.0.1:%u", (unsigned) node->port);
    args[n++] = MRD_MERIDIAND_PATH;
    args[n++] = "--node-id";
    args[n++] = id_buf;
    args[n++] = "--data-dir";
    args[n++] = node->data_dir;
    args[n++] = "--listen";
    args[n++] = listen_buf;
    args[n++] = "--ready-file";
    args[n++] = node->ready_path;
    /* Secure links with the harness's keys, unless the test says
     * otherwise (harness.h, "keys"). */
    bool own_key = false, own_ring = false;
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL; i++) {
        bool config = strcmp(extra_args[i], "--config") == 0;
        own_key     = own_key || config || strcmp(extra_args[i], "--key") == 0;
        own_ring
            = own_ring || config || strcmp(extra_args[i], "--keyring") == 0;
    }
    if (!own_key) {
        if (harness_node_key_file(node->node_id,
                (char *) (uintptr_t) node->key_path, sizeof node->key_path)
            != 0) {
            fprintf(stderr, "harness: cannot make the node's key\n");
            return -1;
        }
        args[n++] = "--key";
        args[n++] = node->key_path;
    }
    if (!own_ring) {
        const char *ring = harness_nodes_keyring();
        if (ring == NULL) {
            fprintf(stderr, "harness: cannot make the keyring\n");
            return -1;
        }
        args[n++] = "--keyring";
        args[n++] = ring;
    }
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL; i++) {
        if (i >= HARNESS_ARGS_MAX) {
            fprintf(
                stderr, "harness: more than %u extra args\n", HARNESS_ARGS_MAX);
            return -1;
        }
        args[n++] = extra_args[i];
    }
    args[n] = NULL;
    return 0;
}

/* Waits until the node wrote its ready file, or exited, or time ran out. */
static int
harness_node_wait_ready(struct harness_node *node, uint16_t port_before)
{
    uint32_t tries = harness_ms(HARNESS_START_MS) / HARNESS_POLL_MS;
    int      status;

    for (uint32_t i = 0; i <= tries; i++) {
        if (harness_ready_read(node)) {
            if (port_before != 0 && node->port != port_before) {
                fprintf(stderr, "harness: node restarted on port %u, not %u\n",
                    node->port, port_before);
                return -1;
            }
            return harness_identity_note(node);
        }
        if (harness_reap(node->pid, &status, false)) {
            harness_proc_remove(node->pid);
            node->pid         = 0;
            node->exit_status = status;
            fprintf(stderr, "harness: meridiand exited before ready (%s %d)\n",
                WIFEXITED(status) ? "exit" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            harness_node_log_dump(node);
            return -1;
        }
        harness_sleep_ms(HARNESS_POLL_MS);
    }
    fprintf(stderr, "harness: meridiand not ready in time\n");
    harness_node_log_dump(node);
    return -1;
}

int
harness_node_start(struct harness_node *node, const char *const *extra_args)
{
    const char *args[HARNESS_ARGS_MAX + 16];
    char        id_buf[32];
    char        listen_buf[HARNESS_URL_SIZE];
    uint16_t    port_before = node->port;
    int         log_fd;

    if (node->pid != 0 || node->dir[0] == '\0') {
        fprintf(stderr, "harness: node running or not initialised\n");
        return -1;
    }
    if (harness_node_argv(node, extra_args, id_buf, sizeof id_buf, listen_buf,
            sizeof listen_buf, args)
        != 0) {
        return -1;
    }
    if (unlink(node->ready_path) != 0 && errno != ENOENT) {
        fprintf(stderr, "harness: unlink %s: %s\n", node->ready_path,
            strerror(errno));
        return -1;
    }
    /* Append: a restarted node's log follows the previous run's. */
    log_fd
        = open(node->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(
            stderr, "harness: open %s: %s\n", node->log_path, strerror(errno));
        return -1;
    }
    /* execv takes char *const[]; it does not write to the strings. */
    node->pid = harness_spawn((char *const *) (uintptr_t) args, log_fd, log_fd);
    close(log_fd);
    if (node->pid < 0) {
        node->pid = 0;
        return -1;
    }
    if (harness_node_wait_ready(node, port_before) != 0) {
        harness_node_kill(node, SIGKILL);
        return -1;
    }
    return 0;
}

int
harness_node_kill(struct harness_node *node, int sig)
{
    int status = 0;

    if (node->pid == 0) {
        return 0;
    }
    if (sig == SIGSTOP || sig == SIGCONT || sig == SIGTSTP) {
        /* The process lives on: waiting to reap it would wait for ever. */
        fprintf(stderr,
            "harness: harness_node_kill with signal %d, which "
            "does not end a process; use harness_node_signal\n",
            sig);
        return -1;
    }
    if (!harness_proc_remove(node->pid)) {
        node->pid = 0; /* harness_kill_all() reaped it already */
        return 0;
    }
    kill(node->pid, sig);
    harness_reap(node->pid, &status, true);
    node->exit_status = status;
    node->pid         = 0;
    return 0;
}

int
harness_node_signal(struct harness_node *node, int sig)
{
    if (node->pid == 0) {
        fprintf(
            stderr, "harness: signal %d to a node that is not running\n", sig);
        return -1;
    }
    return kill(node->pid, sig) == 0 ? 0 : -1;
}

int
harness_node_stat(
    const struct harness_node *node, const char *name, uint64_t *value_out)
{
    struct proto_buf   req;
    struct proto_frame frame;
    const char        *why  = NULL;
    nng_msg           *msg  = NULL;
    int                rv   = -1;
    struct lk_sock    *sock = harness_stat_sock(node->url);

    if (sock == NULL) {
        fprintf(stderr, "harness: cannot open a socket for STATS\n");
        return -1;
    }
    proto_buf_init(&req, 256);
    proto_empty_req_encode(&req, PROTO_T_STATS);
    if (harness_lk_call(sock, req.data, req.len, &msg, harness_ms(10000))
        != 0) {
        msg = NULL;
    }
    proto_buf_fini(&req);
    if (msg != NULL
        && proto_reply_open(nng_msg_body(msg), nng_msg_len(msg), &frame, &why)
            == MRD_OK
        && frame.status == MRD_OK
        && proto_stats_rep_find(&frame.body, name, value_out) == MRD_OK) {
        rv = 0;
    }
    if (msg != NULL) {
        nng_msg_free(msg);
    }
    if (rv != 0) {
        fprintf(stderr, "harness: no counter %s from %s\n", name, node->url);
    }
    return rv;
}

int
harness_node_stop(struct harness_node *node)
{
    uint32_t tries = harness_ms(HARNESS_STOP_MS) / HARNESS_POLL_MS;
    int      status;

    if (node->pid == 0 || !harness_proc_remove(node->pid)) {
        node->pid = 0;
        return -1;
    }
    kill(node->pid, SIGTERM);
    for (uint32_t i = 0; i <= tries; i++) {
        if (harness_reap(node->pid, &status, false)) {
            node->exit_status = status;
            node->pid         = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        harness_sleep_ms(HARNESS_POLL_MS);
    }
    fprintf(stderr, "harness: meridiand %d ignored SIGTERM; killing\n",
        (int) node->pid);
    kill(node->pid, SIGKILL);
    harness_reap(node->pid, &status, true);
    node->exit_status = status;
    node->pid         = 0;
    return -1;
}

void
harness_node_fini(struct harness_node *node)
{
    harness_node_kill(node, SIGKILL);
    if (node->dir[0] != '\0') {
        if (harness_keep()) {
            fprintf(stderr, "harness: kept %s\n", node->dir);
        } else {
            harness_rmrf(node->dir);
        }
    }
    memset(node, 0, sizeof *node);
}

bool
harness_node_log_contains(const struct harness_node *node, const char *needle)
{
    FILE  *f = fopen(node->log_path, "r");
    char  *buf;
    long   size;
    bool   found = false;
    size_t n;

    if (f == NULL) {
        return false;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = size >= 0 ? malloc((size_t) size + 1) : NULL;
    if (buf != NULL) {
        n      = fread(buf, 1, (size_t) size, f);
        buf[n] = '\0';
        found  = strstr(buf, needle) != NULL;
        free(buf);
    }
    fclose(f);
    return found;
}

int
harness_dead_url(char *out, size_t out_size)
{
    struct sockaddr_in addr;
    socklen_t          len = sizeof addr;
    int                fd  = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int                rv  = -1;

    if (fd < 0) {
        return -1;
    }
    memset(&addr, 0, sizeof addr);
    addr.sin_family      = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port        = 0;
    /* Bound but never listening: connects are refused, and the kernel
     * will not hand this port to anyone else while we hold it... but we
     * close it, so it is only "very likely" free, which tests can live
     * with. */
    if (bind(fd, (struct sockaddr *) &addr, sizeof addr) == 0
        && getsockname(fd, (struct sockaddr *) &addr, &len) == 0) {
        snprintf(out, out_size, "tcp://127.0.0.1:%u",
            (unsigned) ntohs(addr.sin_port));
        rv = 0;
    }
    close(fd);
    return rv;
}

/* ------------------------------------------------------------- clients -- */

int
harness_client_open_urls(const char *const *urls, size_t count,
    const mrd_client_opts *base, mrd_client **client_out)
{
    mrd_client_opts opts;

    if (base != NULL) {
        opts = *base;
    } else {
        mrd_client_opts_init(&opts);
        opts.timeout_ms         = harness_ms(opts.timeout_ms);
        opts.attempt_timeout_ms = harness_ms(opts.attempt_timeout_ms);
    }
    opts.addresses     = urls;
    opts.address_count = count;
    /* The keyring is per client, next to the harness's other keys. */
    static _Thread_local char ring[HARNESS_PATH_SIZE + 64];
    if (opts.key_file == NULL) {
        opts.key_file = harness_admin_key_file();
    }
    if (opts.keyring_file == NULL && count > 0) {
        /* The cluster of the first address a harness node served. */
        size_t known;
        for (known = 0; known < count; known++) {
            if (harness_identity_known(urls[known])) {
                break;
            }
        }
        if (harness_client_keyring(
                urls[known < count ? known : 0], ring, sizeof ring)
            != 0) {
            return MRD_EINVAL;
        }
        opts.keyring_file = ring;
    }
    return mrd_client_open(&opts, client_out);
}

int
harness_client_open(struct harness_node *const *nodes, size_t count,
    const mrd_client_opts *base, mrd_client **client_out)
{
    const char *urls[HARNESS_PROCS_MAX];

    if (count > HARNESS_PROCS_MAX) {
        return MRD_EINVAL;
    }
    for (size_t i = 0; i < count; i++) {
        urls[i] = nodes[i]->url;
    }
    return harness_client_open_urls(urls, count, base, client_out);
}

/* ------------------------------------------------------------ commands -- */

/* Drains fd into out until EOF or the deadline; false on timeout. */
static bool
harness_drain(int fd, char *out, size_t out_size, uint32_t timeout_ms)
{
    struct timespec start;
    struct timespec now;
    size_t          len = 0;
    char            scratch[4096];

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct pollfd pfd = { fd, POLLIN, 0 };
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (long) (now.tv_sec - start.tv_sec) * 1000L
            + (now.tv_nsec - start.tv_nsec) / 1000000L;
        if (elapsed >= (long) timeout_ms) {
            return false;
        }
        if (poll(&pfd, 1, (int) ((long) timeout_ms - elapsed)) <= 0) {
            continue; /* EINTR or the deadline: the loop decides */
        }
        ssize_t n = read(fd, scratch, sizeof scratch);
        if (n == 0) {
            return true;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return true;
        }
        /* Keep what fits; keep draining so the child never blocks. */
        if (out != NULL && len + 1 < out_size) {
            size_t take = (size_t) n < out_size - 1 - len ? (size_t) n
                                                          : out_size - 1 - len;
            memcpy(out + len, scratch, take);
            len += take;
            out[len] = '\0';
        }
    }
}

int
harness_run_ctl(const char *const *args, char *out, size_t out_size)
{
    const char *argv[HARNESS_ARGS_MAX + 6];
    int         fds[2];
    pid_t       pid;
    int         status = 0;
    size_t      n      = 0;
    bool        done;

    if (out != NULL && out_size > 0) {
        out[0] = '\0';
    }
    argv[n++] = MRD_MERIDIANCTL_PATH;
    /* The admin key and the keyring of the first --node's cluster, unless
     * the test gives its own (harness.h, "keys"). */
    static char ring[HARNESS_PATH_SIZE + 64];
    const char *url = NULL;
    bool        own = false;
    for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
        own = own || strcmp(args[i], "--key") == 0
            || strcmp(args[i], "--keyring") == 0;
        if (url == NULL && strcmp(args[i], "--node") == 0
            && args[i + 1] != NULL) {
            url = args[i + 1];
        }
    }
    if (!own && url != NULL
        && harness_client_keyring(url, ring, sizeof ring) == 0
        && harness_admin_key_file() != NULL) {
        argv[n++] = "--key";
        argv[n++] = harness_admin_key_file();
        argv[n++] = "--keyring";
        argv[n++] = ring;
    }
    for (size_t i = 0; args != NULL && args[i] != NULL; i++) {
        if (i >= HARNESS_ARGS_MAX) {
            return -1;
        }
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        return -1;
    }
    pid = harness_spawn((char *const *) (uintptr_t) argv, fds[1], -1);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return -1;
    }
    done = harness_drain(fds[0], out, out_size, harness_ms(HARNESS_CTL_MS));
    close(fds[0]);
    harness_proc_remove(pid);
    if (!done) {
        fprintf(stderr, "harness: meridianctl timed out; killing\n");
        kill(pid, SIGKILL);
    }
    harness_reap(pid, &status, true);
    if (!done || !WIFEXITED(status)) {
        return -1;
    }
    return WEXITSTATUS(status);
}

/* ---------------------------------------------------------------- ports -- */

static bool
harness_port_free(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return false;
    }
    struct sockaddr_in a = { 0 };
    a.sin_family         = AF_INET;
    a.sin_port           = htons(port);
    a.sin_addr.s_addr    = htonl(INADDR_LOOPBACK);
    bool ok              = bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

uint16_t
harness_free_ports(uint32_t count, uint32_t salt)
{
    for (uint32_t t = 0; t < 400; t++) {
        uint16_t base = (uint16_t) (20000
            + ((uint32_t) getpid() * 11 + salt * 101 + t * 37) % 30000);
        bool     ok   = true;
        for (uint32_t i = 0; i < count && ok; i++) {
            ok = harness_port_free((uint16_t) (base + i));
        }
        if (ok) {
            return base;
        }
    }
    return 0;
}

uint32_t
harness_rand32(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

int
harness_nodes_wait_joined(struct harness_node *const *nodes, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        uint64_t joining = 1;
        for (uint32_t t = 0; t < harness_ms(20000) / 50u && joining != 0; t++) {
            if (harness_node_stat(nodes[i], "joining", &joining) != 0) {
                joining = 1;
            }
            if (joining != 0) {
                harness_sleep_ms(50);
            }
        }
        if (joining != 0) {
            fprintf(stderr, "harness: node %" PRIu64 " is still joining\n",
                nodes[i]->node_id);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------- events -- */

/* Log pages per shard harness_log_count reads at most: tests' logs are
 * short, and a bound keeps a wrong answer from looping. */
#define HARNESS_LOG_PAGE 256u
#define HARNESS_LOG_PAGES_MAX 64u

int
harness_append_on(
    mrd_client *client, uint64_t origin, const char *stream, const char *type)
{
    mrd_event_in      ev = { .type = type, .data = "x", .data_size = 1 };
    mrd_append_result res;
    memset(&res, 0, sizeof res);
    int rv = mrd_append(client, stream, &ev, 1, NULL, &res);
    if (rv != MRD_OK) {
        fprintf(stderr, "harness: append to %s on node %llu: %s (%s)\n", stream,
            (unsigned long long) origin, mrd_errname(rv), mrd_errdetail());
        return -1;
    }
    if (res.count != 1 || res.first_dot.origin != origin) {
        fprintf(stderr, "harness: append to %s taken by node %llu, not %llu\n",
            stream, (unsigned long long) res.first_dot.origin,
            (unsigned long long) origin);
        return -1;
    }
    return 0;
}

int
harness_log_count(mrd_client *client, uint64_t node_id, const char *stream,
    uint64_t *count_out)
{
    mrd_node_info info;
    uint64_t      count = 0;
    memset(&info, 0, sizeof info);
    int rv = mrd_node_info_get(client, &info);
    if (rv != MRD_OK || info.node_id != node_id) {
        fprintf(stderr, "harness: node info of node %llu: %s (node %llu)\n",
            (unsigned long long) node_id, mrd_errname(rv),
            (unsigned long long) info.node_id);
        return -1;
    }
    for (uint32_t shard = 0; shard < info.shard_count; shard++) {
        uint64_t after = 0;
        bool     end   = false;
        for (uint32_t page = 0; page < HARNESS_LOG_PAGES_MAX && !end; page++) {
            mrd_events *ev = NULL;
            rv = mrd_read_log(client, shard, after, HARNESS_LOG_PAGE, &ev);
            if (rv != MRD_OK) {
                fprintf(stderr, "harness: log of shard %u on node %llu: %s\n",
                    shard, (unsigned long long) node_id, mrd_errname(rv));
                return -1;
            }
            for (size_t i = 0; i < mrd_events_count(ev); i++) {
                count += strcmp(mrd_events_at(ev, i)->stream, stream) == 0;
            }
            end   = mrd_events_end(ev) != 0 || mrd_events_count(ev) == 0;
            after = mrd_events_next(ev);
            mrd_events_free(ev);
        }
        if (!end) {
            fprintf(stderr, "harness: shard %u of node %llu is too long\n",
                shard, (unsigned long long) node_id);
            return -1;
        }
    }
    *count_out = count;
    return 0;
}
