/*
 * ctl.h: the one internal header of meridianctl, the admin CLI.
 *
 * meridianctl is a thin shell over the public client API (include/meridian.h):
 * args.c turns argv into a struct ctl_args (global options anywhere, one
 * command, its options after it), main.c opens one client and runs the
 * command, and each cmd_*.c holds one command. print.c formats what they
 * show: human tables by default, JSON (jansson) with --json.
 *
 * Exit codes: 0 success, 1 the operation failed (message on stderr), 2 usage
 * error. A command never prints a success it did not get from the node.
 *
 * Threads: meridianctl itself is single-threaded; only the client library
 * runs threads of its own. Nothing here is reentrant and nothing needs to be.
 */
#ifndef MRD_CTL_H
#define MRD_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common.h"
#include "meridian.h"

/* ---------------------------------------------------------------- limits -- */

/* --node addresses accepted: a few nodes per region is plenty for a CLI. */
#define CTL_NODES_MAX 16u
/* MERIDIAN_NODES is copied into a fixed buffer before it is split. */
#define CTL_ENV_NODES_SIZE_MAX 4096u
/* Positional arguments after the command: every command takes at most 2. */
#define CTL_POSITIONAL_MAX 4u
/* The default node when neither --node nor MERIDIAN_NODES says. */
#define CTL_NODE_DEFAULT "tcp://127.0.0.1:7400"
/* Events shown by read unless --count says otherwise. */
#define CTL_READ_COUNT_DEFAULT 100u
/* Characters of data shown in a table cell before it is cut. */
#define CTL_DATA_CHARS_MAX 60u
/* Bytes of binary data shown as hex in a table cell. */
#define CTL_DATA_HEX_BYTES_MAX 16u
/* tail waits for events in slices this long, so SIGINT and --timeout-ms are
 * noticed quickly even when the stream is idle. */
#define CTL_TAIL_SLICE_MS 500u

_Static_assert(CTL_POSITIONAL_MAX >= 2, "help takes a command name");
_Static_assert(CTL_TAIL_SLICE_MS <= MRD_WAIT_MS_MAX, "a slice is one poll");

enum ctl_exit {
    CTL_EXIT_OK    = 0,
    CTL_EXIT_FAIL  = 1, /* the operation failed; a message is on stderr */
    CTL_EXIT_USAGE = 2, /* bad command line; a message is on stderr */
};

/* ------------------------------------------------------------- arguments -- */

struct ctl_meta {
    char        key[MRD_META_KEY_SIZE_MAX + 1]; /* copied: argv is KEY=VALUE */
    const char *value; /* points into argv */
};

/* One --op PATH:TYPE:OP[:ARG]. The path is copied (its names are split at
 * the dots, each NUL-terminated in names); op.path points at path and
 * op.value into argv. */
struct ctl_op {
    char        names[MRD_STATE_PATH_MAX * (MRD_STATE_NAME_SIZE_MAX + 1)];
    const char *path[MRD_STATE_PATH_MAX];
    mrd_op      op;
};

struct ctl_cmd;

/* Everything the command line said. Strings point into argv (or into
 * env_nodes for addresses from MERIDIAN_NODES) and live as long as main(). */
struct ctl_args {
    /* Global options. */
    const char *nodes[CTL_NODES_MAX];
    size_t      node_count;
    char        env_nodes[CTL_ENV_NODES_SIZE_MAX];
    uint32_t    timeout_ms; /* 0: the library's default */
    const char *home_region; /* --home-region, else $MERIDIAN_REGION */
    const char *key_file; /* --key, else $MERIDIAN_KEY (the library) */
    const char *keyring_file; /* --keyring, else $MERIDIAN_KEYRING */
    bool        json;
    bool        help;
    bool        version;

    const struct ctl_cmd *cmd;
    const char           *positional[CTL_POSITIONAL_MAX];
    size_t                positional_count;

    /* append */
    const char     *type;
    const char     *data; /* --data STRING; "-" means stdin */
    const char     *data_file; /* --data-file PATH; "-" means stdin */
    const char     *content_type;
    int64_t         expected_version; /* MRD_EXPECT_ANY unless given */
    const char     *idempotency_key;
    const char     *correlation_id;
    const char     *causation_id;
    struct ctl_meta meta[MRD_META_ENTRIES_MAX];
    size_t          meta_count;
    struct ctl_op   ops[MRD_STATE_OPS_MAX]; /* --op, in order */
    size_t          op_count;
    uint64_t        count; /* append: copies (1); read: events (100) */
    bool            count_set;
    int             ack; /* --ack: MRD_ACK_* (local) */
    uint32_t        ack_count; /* --ack-count (0: the library's 2) */
    uint32_t        ack_wait_ms; /* --ack-wait (0: the library's default) */

    /* read, tail */
    uint64_t    from; /* MRD_POSITION_END for "end" */
    bool        from_set;
    bool        backward;
    uint64_t    limit; /* tail: 0 means no limit */
    const char *cursor; /* --cursor TEXT: read from a causal cursor */

    /* cluster init */
    const char *cluster_dir; /* --dir */
    const char *regions; /* --regions a,b,c */
    uint32_t    nodes_per_region; /* --nodes-per-region (1) */
    uint32_t    base_port; /* --base-port (7401) */
    uint32_t    cluster_shards; /* --shards (16) */
    uint32_t    replicas_per_region; /* --replicas-per-region; 0: default */

    /* keygen, topology */
    const char *out_path; /* --out */
    const char *topo_file; /* --file */
    const char *admin_key_file; /* --admin-key */
    const char *region; /* --region (topology add-node) */
    const char *address; /* --address (topology add-node) */
    const char *public_key; /* --public-key HEX (topology add-node) */
    bool        push; /* --push: a change goes to --node and is waited for */
    uint64_t    wait_ms; /* --wait: how long (0: CTL_WAIT_MS_DEFAULT) */

    /* status, verify, drill */
    bool        watch; /* --watch */
    uint32_t    interval_ms; /* --interval-ms (0: CTL_WATCH_MS_DEFAULT) */
    uint64_t    for_ms; /* --for */
    const char *target; /* --target NAME (drill node-loss) */
    int         clients; /* --clients per region (-1: the default) */
    uint64_t    converge_ms; /* --converge-timeout (0: the default) */
};

/* One command: its name, its help and how it runs. run() gets an open client
 * and returns an enum ctl_exit; it has printed every message already. */
struct ctl_cmd {
    const char *name;
    const char *summary; /* one line, for `meridianctl --help` */
    const char *help; /* the whole `meridianctl CMD --help` text */
    uint32_t    opts; /* CTL_OPTS_* bits: which options it accepts */
    size_t      positional_count; /* at least this many */
    size_t      positional_optional; /* and at most this many more */
    int (*run)(const struct ctl_args *args, mrd_client *client);
    /* Runs with no client (NULL): it works on local files, or opens one
     * itself with ctl_client_open() only when it talks to a node, so what
     * needs no node needs no key or keyring either. */
    bool offline;
};

/* Opens the client the global options describe (main.c); on failure the
 * error is printed and the exit status returned. */
MRD_MUST_USE int ctl_client_open(
    const struct ctl_args *args, mrd_client **client_out);

/* Option bits for struct ctl_cmd.opts (global options are always allowed). */
#define CTL_OPTS_APPEND (1u << 0)
#define CTL_OPTS_READ (1u << 1)
#define CTL_OPTS_TAIL (1u << 2)
#define CTL_OPTS_CLUSTER (1u << 3)
#define CTL_OPTS_KEYGEN (1u << 4)
#define CTL_OPTS_TOPOLOGY (1u << 5)
#define CTL_OPTS_STATUS (1u << 6)
#define CTL_OPTS_DRILL (1u << 7)

/* status --watch: refresh every this many ms by default, within bounds. */
#define CTL_WATCH_MS_DEFAULT 2000u
#define CTL_WATCH_MS_MIN 200u
#define CTL_WATCH_MS_MAX 3600000u
/* A drill's fence and its waits: an hour at most (a drill, not an outage). */
#define CTL_DRILL_FOR_MS_MAX (3600u * 1000u)
/* --wait and --converge-timeout: an hour at most. */
#define CTL_WAIT_MS_MAX (3600u * 1000u)
/* How long topology --push waits for every node to take the version. */
#define CTL_WAIT_MS_DEFAULT 30000u
/* Workload clients per region a drill runs, by default and at most. */
#define CTL_DRILL_CLIENTS_DEFAULT 2
#define CTL_DRILL_CLIENTS_MAX 64u
/* How long a drill waits for the cluster to converge once it lifts the
 * fence, by default, before it reports the drill failed. */
#define CTL_DRILL_CONVERGE_MS_DEFAULT 120000u

/* The command table, terminated by a NULL name (args.c). */
extern const struct ctl_cmd ctl_cmds[];

/* Fills *args from argv and the environment. Returns CTL_EXIT_OK when the
 * command line is well formed (args->help or args->version may be set, and
 * args->cmd may then be NULL), or CTL_EXIT_USAGE after printing why. */
MRD_MUST_USE int ctl_args_parse(struct ctl_args *args, int argc, char **argv);

/* Prints `meridianctl --help` (cmd NULL) or one command's help to f. */
void ctl_help_print(FILE *f, const struct ctl_cmd *cmd);

/* Parses a decimal number in [min, max]; false when it is not one. */
MRD_MUST_USE bool ctl_parse_u64(
    const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* --------------------------------------------------------------- commands --
 */

int ctl_cmd_append(const struct ctl_args *args, mrd_client *client);
int ctl_cmd_read(const struct ctl_args *args, mrd_client *client);
int ctl_cmd_tail(const struct ctl_args *args, mrd_client *client);
int ctl_cmd_info(const struct ctl_args *args, mrd_client *client);
int ctl_cmd_node_info(const struct ctl_args *args, mrd_client *client);
int ctl_cmd_state(const struct ctl_args *args, mrd_client *client);
int ctl_cmd_cluster(const struct ctl_args *args, mrd_client *client);
int ctl_cmd_keygen(const struct ctl_args *args, mrd_client *client);
int ctl_cmd_topology(const struct ctl_args *args, mrd_client *client);
int ctl_cmd_status(const struct ctl_args *args, mrd_client *client);
int ctl_cmd_verify(const struct ctl_args *args, mrd_client *client);
int ctl_cmd_drill(const struct ctl_args *args, mrd_client *client);

/* --------------------------------------------------------------- cluster --
 * cluster.c: every node of the cluster, each with a client of its own, and
 * what their STATUS documents say (docs/PROTOCOL.md). For status, verify,
 * drill and topology --push. */

/* Per node, how long a status poll or an operations call may take: a node
 * that does not answer by then is reported down rather than waited for. */
#define CTL_NODE_TIMEOUT_MS 3000u
/* Nodes a cluster view holds: the topology's limit. */
#define CTL_VIEW_NODES_MAX 256u

struct ctl_node {
    uint64_t    id; /* 0 until known (static mode: from its status) */
    char        name[64];
    char        region[64];
    char        address[300];
    bool        draining; /* the topology drains it */
    bool        region_draining;
    mrd_client *client; /* on this node's address only */
    json_t     *status; /* the last STATUS document, NULL when none */
    int         err; /* the last poll's error */
    char        detail[256]; /* and the node's words for it */
};

struct ctl_cluster {
    bool            has_topology;
    uint64_t        version;
    uint32_t        shard_count;
    char            cluster_hex[33];
    uint32_t        count;
    struct ctl_node nodes[CTL_VIEW_NODES_MAX];
};

/* Learns the nodes from the topology `client` (the --node list) sends, or
 * takes that list when the nodes run without one, and opens a client per
 * node with calls of timeout_ms. Prints why and returns a ctl_exit code. */
MRD_MUST_USE int ctl_cluster_open(const struct ctl_args *args,
    mrd_client *client, uint32_t timeout_ms, struct ctl_cluster *c);
void             ctl_cluster_close(struct ctl_cluster *c);
struct ctl_node *ctl_cluster_find(struct ctl_cluster *c, const char *name);
/* Asks every node for its STATUS at once; sets each status or err. */
void ctl_cluster_poll(struct ctl_cluster *c);
/* The status's entry for the shard, or NULL. */
json_t *ctl_node_shard(const struct ctl_node *n, uint32_t shard);
bool    ctl_node_replica(const struct ctl_node *n, uint32_t shard);
/* A client of the command line's key and keyring on addrs, preferring
 * region (may be NULL), with calls (and attempts) of timeout_ms. An MRD_
 * code. */
MRD_MUST_USE int ctl_client_open_on(const struct ctl_args *args,
    const char *const *addrs, size_t count, const char *region,
    uint32_t timeout_ms, mrd_client **out);
/* One [origin, seq] entry of a status vector. */
void ctl_vv_entry(const json_t *e, uint64_t *origin, uint64_t *seq);
/* The join of the shard's vectors over the nodes picked (NULL: the
 * answering replicas), as origin, seq pairs (at most max), and the most
 * events any of them holds. */
size_t ctl_shard_join(const struct ctl_cluster *c, uint32_t shard,
    const bool *pick, uint64_t *pairs, size_t max, uint64_t *held_max);
/* Lag over every replica of every shard: the most events and seconds one
 * replica is behind, and the events missing summed over replicas. */
struct ctl_lag {
    uint64_t events_max;
    double   seconds_max;
    uint64_t events_sum;
};
void ctl_cluster_lag(const struct ctl_cluster *c, struct ctl_lag *out);
/* A status vector ([[origin, seq], ...]): the seq of origin, or 0. */
uint64_t ctl_vv_get(const json_t *vv, uint64_t origin);
/* What replica r lacks of the shard's events that the answering replicas
 * hold between them, and how long (s) the nodes have seen it behind. */
void ctl_replica_lag(const struct ctl_cluster *c, uint32_t shard,
    const struct ctl_node *r, uint64_t *events, double *seconds);
/* True when every node answered and no replica lacks anything; *lagging:
 * the events missing, summed over replicas. */
bool ctl_cluster_converged(const struct ctl_cluster *c, uint64_t *lagging);
/* up, suspect, down, joining, drained, fenced or cut-off (ctl_help_status). */
const char *ctl_node_health(
    const struct ctl_cluster *c, const struct ctl_node *n);
/* "30s", "500ms", "2m", "1h", or bare seconds; false past max_ms. */
MRD_MUST_USE bool ctl_parse_duration_ms(
    const char *s, uint64_t max_ms, uint64_t *out);
void ctl_duration_format(uint64_t ms, char *buf, size_t size);

/* ----------------------------------------------------------------- files --
 * files.c: key files and signed topology files. Each returns a ctl_exit
 * code after printing what went wrong. */

/* A secret key file holds a libsodium Ed25519 secret key (64 bytes: seed
 * and public key) as 128 hex digits and a newline, mode 0600. */
#define CTL_SECRET_KEY_SIZE 64u
#define CTL_PUBLIC_KEY_SIZE 32u
/* Creates path (never overwrites one; mode 0600), writes sk, syncs. */
MRD_MUST_USE int ctl_key_write(
    const char *path, const uint8_t sk[CTL_SECRET_KEY_SIZE]);
/* Reads a key file written by ctl_key_write; refuses one whose halves
 * disagree, warns about one others may read. */
MRD_MUST_USE int ctl_key_read(
    const char *path, uint8_t sk[CTL_SECRET_KEY_SIZE]);
/* Creates path (never overwrites one) with data, mode 0644, synced. */
MRD_MUST_USE int ctl_file_create(
    const char *path, const void *data, size_t len);
/* Replaces path atomically: a temp file beside it, synced, renamed over it,
 * the directory synced. */
MRD_MUST_USE int ctl_file_replace(
    const char *path, const void *data, size_t len);
/* Reads a whole file of at most size_max bytes into a new malloc'd buffer
 * (*data_out, the caller frees it). */
MRD_MUST_USE int ctl_file_read(
    const char *path, size_t size_max, uint8_t **data_out, size_t *len_out);
/* "meridianctl: <what>: <why> (<mrd_errname>)" on stderr; CTL_EXIT_FAIL. For
 * errors that come with their own reason rather than from the client. */
MRD_PRINTF(3, 4)
int ctl_fail_why(int err, const char *why, const char *what_fmt, ...);

/* ---------------------------------------------------------------- output -- */

/* "meridianctl: <what>: <mrd_strerror> (<mrd_errname>)" on stderr; returns
 * CTL_EXIT_FAIL so callers can `return ctl_fail_mrd(...)`. */
MRD_PRINTF(2, 3) int ctl_fail_mrd(int err, const char *what_fmt, ...);
/* "meridianctl: <what>: <strerror(errno)>" on stderr; CTL_EXIT_FAIL. */
MRD_PRINTF(1, 2) int ctl_fail_sys(const char *what_fmt, ...);
/* "meridianctl: <what>" plus a pointer to --help on stderr; CTL_EXIT_USAGE. */
MRD_PRINTF(1, 2) int ctl_fail_usage(const char *what_fmt, ...);

/* Formats the wall-clock part of an HLC (hlc >> 16, ms since the epoch) as
 * ISO-8601 UTC, "2025-01-31T12:34:56.789Z", into buf (at least 32 bytes). */
#define CTL_TIME_SIZE 32u
void ctl_hlc_format(uint64_t hlc, char *buf, size_t buf_size);

/* True when data is well-formed UTF-8 text with no control characters other
 * than tab, CR and LF: shown as text, else as hex (table) or base64 (JSON). */
bool ctl_data_is_text(const void *data, size_t size);

/* The header line and one row of the event table, on stdout. */
void ctl_event_table_header(void);
void ctl_event_table_row(const mrd_event *event);

/* Prints a JSON value as one compact line on stdout and frees it (value may
 * be NULL after a failed allocation: that is reported as MRD_ENOMEM).
 * Returns a ctl_exit code. */
MRD_MUST_USE int ctl_json_print(json_t *value);
/* A JSON object for one event (stream, position, dot, hlc, time, type, data,
 * ...), or NULL when out of memory. The caller owns it. */
json_t *ctl_event_json(const mrd_event *event);
/* Numbers above INT64_MAX become decimal strings: JSON has no uint64. */
json_t *ctl_json_u64(uint64_t v);
/* A JSON string for s, or JSON null when s is NULL or empty. */
json_t *ctl_json_str_or_null(const char *s);

/* Parses one --op SPEC into *op (see `meridianctl append --help`). On a bad
 * SPEC, prints why with the SPEC quoted and returns CTL_EXIT_USAGE. */
MRD_MUST_USE int ctl_op_parse(const char *spec, struct ctl_op *op);

/* Flushes stdout; on a write error reports it and returns CTL_EXIT_FAIL, so
 * that output cut short by a full disk is never taken for success. */
MRD_MUST_USE int ctl_stdout_flush(void);

#endif /* MRD_CTL_H */
