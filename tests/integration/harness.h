/*
 * harness.h: what integration tests share. They run real meridiand (and
 * meridianctl) processes on 127.0.0.1, each node in its own temp directory,
 * and wait for things with bounded polls, the way Redis's tests do
 * (wait_for_condition 50 100 {...}).
 *
 * Rules the harness keeps for every test:
 *   - Every wait is bounded, and every bound is multiplied by the env var
 *     MRD_TEST_TIMEOUT_MULTIPLIER (default 1) for slow machines and
 *     sanitizer builds.
 *   - Every process started is registered and SIGKILLed at exit, even when a
 *     cmocka assertion fails: use harness_teardown as the group teardown (and
 *     per-test teardown when tests start their own nodes); an atexit handler
 *     does the same when main returns. Nodes started from the main thread
 *     also die with the test process on a crash (PR_SET_PDEATHSIG).
 *   - Temp directories are removed unless MRD_TEST_KEEP=1, so a failed run
 *     can be kept for its logs.
 *
 * Every function here returns 0 on success and -1 (with a line on stderr
 * saying why) on failure, unless it says otherwise. Not thread-safe, except
 * the process registry, which may be used from any thread.
 */
#ifndef MRD_HARNESS_H
#define MRD_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "meridian.h"

#ifndef MRD_MERIDIAND_PATH
#error "MRD_MERIDIAND_PATH must name the meridiand binary"
#endif
#ifndef MRD_MERIDIANCTL_PATH
#error "MRD_MERIDIANCTL_PATH must name the meridianctl binary"
#endif

#define HARNESS_PATH_SIZE 512u
#define HARNESS_URL_SIZE 64u
/* Processes one test may have alive at once. */
#define HARNESS_PROCS_MAX 64u
/* Extra meridiand arguments per start. */
#define HARNESS_ARGS_MAX 32u

struct harness_node {
    pid_t    pid; /* 0 when not running */
    uint64_t node_id; /* --node-id */
    uint16_t port; /* 0 until the first start binds one */
    int      exit_status; /* of the last stop or kill: see waitpid */
    char     dir[HARNESS_PATH_SIZE]; /* the node's temp dir */
    char     data_dir[HARNESS_PATH_SIZE]; /* dir/data */
    char     log_path[HARNESS_PATH_SIZE]; /* dir/meridiand.log: stderr */
    char     ready_path[HARNESS_PATH_SIZE]; /* dir/ready */
    char     url[HARNESS_URL_SIZE]; /* "tcp://127.0.0.1:PORT" */
    char     key_path[HARNESS_PATH_SIZE + 32]; /* --key, harness_keys.c */
};

/* ms scaled by MRD_TEST_TIMEOUT_MULTIPLIER (a positive number, may have a
 * fraction; default 1). */
uint32_t harness_ms(uint32_t ms);
/* Sleeps ms milliseconds, unscaled. */
void harness_sleep_ms(uint32_t ms);

/* Makes a fresh directory $TMPDIR/<prefix>XXXXXX (or under /tmp) and puts its
 * path in out. */
int harness_tmpdir_make(const char *prefix, char *out, size_t out_size);
/* Removes path and everything under it; a missing path is success. */
int harness_rmrf(const char *path);

/* Polls cond(arg) up to tries times (scaled), interval_ms apart, until it
 * returns true. Returns whether it did. */
bool harness_wait_for(
    bool (*cond)(void *arg), void *arg, uint32_t tries, uint32_t interval_ms);

/* count consecutive ports on 127.0.0.1 that nothing listens on now, for a
 * cluster whose configs name its ports ahead (meridianctl cluster init);
 * searched from a spot that depends on our pid and salt, so that parallel
 * test runs rarely meet. 0 when none are found. Another process may still
 * take one before the node binds it: the node then fails to start, and the
 * test with it, loudly. */
uint16_t harness_free_ports(uint32_t count, uint32_t salt);

/* xorshift32: a test's seeded choices, replayable from the seed printed.
 * *state must not be 0. */
uint32_t harness_rand32(uint32_t *state);

/* --------------------------------------------------------------- nodes -- */

/* Gives node its own temp directory; nothing runs yet. */
int harness_node_init(struct harness_node *node, uint64_t node_id);
/* Waits (bounded, scaled) until none of the nodes is joining: a node
 * started on an empty data dir with peers refuses appends until it has
 * read their logs (STATS "joining"), so a test that wants its first
 * appends taken where it sends them waits for this after starting a new
 * cluster. 0, or -1 after saying which node did not. */
int harness_nodes_wait_joined(struct harness_node *const *nodes, size_t count);

/* Starts meridiand: on the first start with port 0 (the node picks one,
 * read back from the ready file), later on the same port, so clients that
 * knew the node find it again. extra_args is NULL or a NULL-terminated list
 * appended to the command line. Waits (bounded) until the node is ready;
 * fails if it exits first. */
int harness_node_start(
    struct harness_node *node, const char *const *extra_args);
/* Sends sig and reaps the process (blocking until it is gone; use SIGKILL
 * unless the test wants a graceful stop). The exit status is kept in
 * node->exit_status. */
int harness_node_kill(struct harness_node *node, int sig);
/* Sends sig and returns at once, reaping nothing: for SIGSTOP and SIGCONT
 * (a stopped node keeps its sockets but answers nothing).
 * harness_node_kill() refuses those, since it waits for the process to go.
 * A node left stopped is still killed at exit. */
int harness_node_signal(struct harness_node *node, int sig);
/* SIGTERM, a bounded wait for a graceful exit, then SIGKILL. Returns the
 * exit code (0..255) of a process that exited by itself, or -1 when it had
 * to be killed or was not running. */
int harness_node_stop(struct harness_node *node);
/* Kills the node if it runs and removes its directory (kept with
 * MRD_TEST_KEEP=1). The struct can be initialised again afterwards. */
void harness_node_fini(struct harness_node *node);
/* True when the node's log contains needle. */
bool harness_node_log_contains(
    const struct harness_node *node, const char *needle);

/* One counter of the node's STATS (the client library has no call for
 * it), on a raw socket of its own with bounded waits. The socket is left
 * to process exit: NNG 1.5.2's nng_close() can hang after a dropped
 * connection. */
int harness_node_stat(
    const struct harness_node *node, const char *name, uint64_t *value_out);

/* A URL on 127.0.0.1 where nothing listens (a port the kernel just gave out
 * and that was closed again): for failover tests. */
int harness_dead_url(char *out, size_t out_size);

/* ------------------------------------------------------------- clients -- */

/* Opens a client on the nodes' URLs, in the order given. base is NULL for
 * the library defaults with timeout_ms and attempt_timeout_ms scaled, or
 * options whose addresses are ignored. Returns the mrd_ error code. */
int harness_client_open(struct harness_node *const *nodes, size_t count,
    const mrd_client_opts *base, mrd_client **client_out);
/* The same on explicit URLs. */
int harness_client_open_urls(const char *const *urls, size_t count,
    const mrd_client_opts *base, mrd_client **client_out);

/* ------------------------------------------------------------ commands -- */

/* Appends one event of type to stream through client, which must be taken
 * by node `origin` itself (the dot's origin): 0, or -1 with words. */
int harness_append_on(
    mrd_client *client, uint64_t origin, const char *stream, const char *type);
/* How many events of stream the node client is connected to holds, counted
 * in its shard logs (a log read names no stream, so the node asked answers
 * itself where a stream call would be routed to a replica); the node must
 * be node_id. At most 64 pages of 256 events per shard. 0 or -1. */
int harness_log_count(mrd_client *client, uint64_t node_id, const char *stream,
    uint64_t *count_out);

/* Runs meridianctl with args (NULL-terminated, without argv[0]) and a bounded
 * wait (30 s, scaled; then SIGKILL). Its stdout goes to out (NUL-terminated,
 * truncated to out_size - 1 bytes; out may be NULL), its stderr to ours.
 * Returns its exit code (0..255), or -1 when it could not run, was killed
 * or timed out. */
int harness_run_ctl(const char *const *args, char *out, size_t out_size);

/* ------------------------------------------------------------ cleanup -- */

/* SIGKILLs and reaps every process the harness started that is still
 * registered. Safe to call any time, many times. */
void harness_kill_all(void);

/* ------------------------------------------------------ keys (harness_keys.c)
 *
 * Every node runs with secure links. harness_node_start() passes --key (node
 * N's key, derived from N) unless the test passes --key or --config, and
 * --keyring (harness_nodes_keyring(): the keys of node ids 1..64 and the
 * harness admin client) unless it passes --keyring or --config. Clients the
 * harness opens, and meridianctl runs with a --node the harness started, use
 * the admin key and a keyring with the node's cluster id. A test that builds a
 * topology uses harness_node_keypair() for its node keys. */
struct lk_sock;
typedef struct nng_msg nng_msg;
void harness_node_keypair(uint64_t id, uint8_t pk[32], uint8_t sk[64]);
void harness_admin_keypair(uint8_t pk[32], uint8_t sk[64]);
/* Paths in the process's keys directory (made on first use; NULL or -1 on
 * failure). */
const char *harness_admin_key_file(void);
const char *harness_nodes_keyring(void);
int         harness_node_key_file(uint64_t id, char *out, size_t size);
/* Remembers the cluster and key of a ready node (its DATA_DIR/identity);
 * harness_node_start() calls it. */
int harness_identity_note(const struct harness_node *node);
/* True when a harness node served url. */
bool harness_identity_known(const char *url);
/* Writes a client keyring for the cluster of the node at url (of no
 * cluster when none served it). */
int harness_client_keyring(const char *url, char *out, size_t size);
/* A secure dialer to the node at url as the harness admin, trusting any
 * node key (test tooling); dialled in the background. Left open at exit. */
int harness_lk_dial(const char *url, struct lk_sock **out);
/* One request and its reply on s: 0, or -1 on a timeout or link error. */
int harness_lk_call(struct lk_sock *s, const void *req, size_t len,
    nng_msg **rep_out, uint32_t timeout_ms);
/* The kept dialer harness_node_stat() uses for url, or NULL. */
struct lk_sock *harness_stat_sock(const char *url);
/* A cmocka setup/teardown (int (*)(void **)) that calls harness_kill_all. */
int harness_teardown(void **state);

#endif /* MRD_HARNESS_H */
