/*
 * meridian.h: the public client API of Meridian, a multi-region event store.
 *
 * One header, prefix mrd_, opaque handles. Every function returns an int
 * error code from the MRD_ERRORS table (MRD_OK is 0) and puts its outputs in
 * its last arguments (*_out). Ownership is written on every call. Every
 * handle is safe to use from several threads at once unless a comment says
 * otherwise.
 *
 * Positions: a stream's events are numbered 0, 1, 2, ... on the node that
 * serves them. The version of a stream is the position of its last event, or
 * -1 when the stream has no event (MRD_VERSION_NONE).
 */
#ifndef MERIDIAN_H
#define MERIDIAN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MRD_API __attribute__((visibility("default")))
#else
#define MRD_API
#endif

#define MRD_VERSION_MAJOR 0
#define MRD_VERSION_MINOR 1
#define MRD_VERSION_PATCH 0
#define MRD_VERSION_STRING "0.1.0"

/*
 * Public limits. The node enforces the same numbers; a value over a limit is
 * refused with MRD_ETOOBIG before anything is sent or written.
 */
/* Stream names are UTF-8, non-empty, no NUL: short enough to be an LMDB key
 * with room for a prefix (LMDB's default key limit is 511 bytes). */
#define MRD_STREAM_NAME_SIZE_MAX 255u
/* Event type names, e.g. "OrderPlaced". */
#define MRD_EVENT_TYPE_SIZE_MAX 255u
/* Content type of the data, e.g. "application/json". */
#define MRD_CONTENT_TYPE_SIZE_MAX 127u
/* Correlation and causation ids: UUIDs or similar, with room to spare. */
#define MRD_ID_SIZE_MAX 128u
/* One event's data. Event stores hold facts, not blobs: 1 MiB is generous and
 * keeps one append inside one frame. */
#define MRD_EVENT_DATA_SIZE_MAX (1024u * 1024u)
/* User metadata: a small string map per event. */
#define MRD_META_ENTRIES_MAX 32u
#define MRD_META_KEY_SIZE_MAX 64u
#define MRD_META_VALUE_SIZE_MAX 1024u
/* Events in one atomic append; also bounds the work of one request. */
#define MRD_APPEND_EVENTS_MAX 1000u
/* Idempotency keys: a client-chosen token, 16 random bytes by default. */
#define MRD_IDEMPOTENCY_KEY_SIZE_MAX 64u
/* Events returned by one read; the node may return fewer to keep the reply
 * under its frame size limit. */
#define MRD_READ_COUNT_MAX 10000u
/* Longest long-poll wait a node accepts for one request. */
#define MRD_WAIT_MS_MAX 60000u
/* Acknowledgement levels of an append (mrd_append_opts.ack). */
#define MRD_ACK_LOCAL 0 /* durable on the node that took it (the default) */
#define MRD_ACK_REGION 1 /* durable on k replicas of that node's region */
#define MRD_ACK_GLOBAL 2 /* durable in at least n regions */
/* k or n: a cluster has at most this many regions or replicas to count. */
#define MRD_ACK_COUNT_MAX 64u
/* The longest an append waits for its level: as long as a long-poll. */
#define MRD_ACK_WAIT_MS_MAX 60000u
#define MRD_ACK_WAIT_MS_DEFAULT 5000u
/* Largest frame the protocol allows at all; nodes may set a lower limit. */
#define MRD_FRAME_SIZE_MAX (64u * 1024u * 1024u)

/* Expected versions for an append. A value >= 0 means "the stream's last
 * event is at exactly this position". */
#define MRD_EXPECT_ANY (-2) /* no check */
#define MRD_EXPECT_NO_STREAM (-1) /* the stream must have no event */
#define MRD_EXPECT_EXISTS (-4) /* the stream must have at least one event */
#define MRD_VERSION_NONE (-1) /* version of a stream with no event */

/* Stream state (docs/CRDT.md). A field or nested map key: same bound as a
 * stream name. */
#define MRD_STATE_NAME_SIZE_MAX 255u
/* A register value or set member: state holds small facts; events hold
 * the payloads. */
#define MRD_STATE_VALUE_SIZE_MAX 4096u
/* Path of an op: the field, then up to 7 keys of nested maps. Bounds the
 * recursion of every state routine. */
#define MRD_STATE_PATH_MAX 8u
/* Ops on one event. */
#define MRD_STATE_OPS_MAX 64u
/* Largest encoded state document an append may produce: a document is
 * rewritten whole on every append that carries ops. */
#define MRD_STATE_SIZE_MAX (1024u * 1024u)

/* Read from the end of the stream (backward reads). */
#define MRD_POSITION_END UINT64_MAX

/*
 * Errors. Codes are small, positive and never renumbered; add new ones at the
 * end. mrd_strerror() gives the sentence, mrd_errname() the short name.
 */
#define MRD_ERRORS(X)                                                          \
    X(OK, 0, "success")                                                        \
    X(EINVAL, 1, "invalid argument")                                           \
    X(EFULL, 2, "a configured limit was reached")                              \
    X(EPROTO, 3, "malformed or unexpected message")                            \
    X(ENOMEM, 4, "out of memory")                                              \
    X(ETIMEDOUT, 5, "timed out; the outcome is unknown")                       \
    X(EUNAVAIL, 6, "no node could be reached")                                 \
    X(EVERSION, 7, "the stream is not at the expected version")                \
    X(EIDEMPOTENCY, 8, "idempotency key already used for a different request") \
    X(ENOTFOUND, 9, "not found")                                               \
    X(ECORRUPT, 10, "stored data failed its checksum")                         \
    X(ENOSPACE, 11, "storage is full")                                         \
    X(EIO, 12, "storage I/O error; the node stopped")                          \
    X(ECLOSED, 13, "closed or shutting down")                                  \
    X(ETOOBIG, 14, "a message or field is larger than its limit")              \
    X(EPROTOVERSION, 15, "unsupported protocol version")                       \
    X(EINTERNAL, 16, "internal error")                                         \
    X(EBUSY, 17, "the node is overloaded; retry later")                        \
    X(ENAME, 18, "invalid stream name")                                        \
    X(ETYPE, 19, "the state field holds another type")                         \
    X(EDURABILITY, 20,                                                         \
        "written, but the acknowledgement level was not reached in time")      \
    X(ENOTREPLICA, 21, "this node does not hold the stream's shard")           \
    X(EAUTH, 22,                                                               \
        "not authenticated: a key the other side does not trust, or another "  \
        "cluster")                                                             \
    X(EPERM, 23, "the client's role does not allow this request")              \
    X(ECAUSAL, 24,                                                             \
        "the node has not yet received an event this session saw; another "    \
        "replica has, or this one will")                                       \
    X(EFENCED, 25,                                                             \
        "the node is fenced by a failover drill and refuses this request; "    \
        "another node will serve it")

enum mrd_err {
#define MRD_ERR_ENUM_(name, code, text) MRD_##name = code,
    MRD_ERRORS(MRD_ERR_ENUM_)
#undef MRD_ERR_ENUM_
};

/* A sentence for an error code; never NULL, static storage. */
MRD_API const char *mrd_strerror(int err);
/* The short name of an error code ("MRD_EVERSION"); never NULL. */
MRD_API const char *mrd_errname(int err);
/* What the node (or the library) said about the last error a blocking call
 * returned on this thread, e.g. "state field 'visits' is a counter, not a
 * set"; "" when there was nothing more to say. Valid until the next call
 * on this thread. Async callbacks do not set it. */
MRD_API const char *mrd_errdetail(void);

/* ---------------------------------------------------------------- types -- */

typedef struct mrd_client mrd_client; /* opaque */
typedef struct mrd_events mrd_events; /* opaque: a batch of read events */
typedef struct mrd_tail   mrd_tail; /* opaque: a stream subscription */
typedef struct mrd_state  mrd_state; /* opaque: one read of a stream's state */
typedef struct mrd_value  mrd_value; /* a value inside an mrd_state */

/* The global identity of an event: the node that first stored it and that
 * node's sequence number for it. Never reused. */
typedef struct mrd_dot {
    uint64_t origin;
    uint64_t seq;
} mrd_dot;

typedef struct mrd_meta_entry {
    const char *key; /* UTF-8, 1..MRD_META_KEY_SIZE_MAX bytes */
    const char *value; /* UTF-8, 0..MRD_META_VALUE_SIZE_MAX bytes */
} mrd_meta_entry;

/* State field types. Numbers are on the wire and on disk. */
typedef enum mrd_state_type {
    MRD_STATE_COUNTER = 1, /* PN-counter: an int64 */
    MRD_STATE_LWW     = 2, /* last-writer-wins register: bytes */
    MRD_STATE_MVREG   = 3, /* multi-value register: every concurrent value */
    MRD_STATE_FLAG    = 4, /* enable-wins flag: a bool */
    MRD_STATE_SET     = 5, /* add-wins set of byte strings */
    MRD_STATE_MAP     = 6, /* map of named fields of any of these types */
} mrd_state_type;

/* What an op does. MRD_OP_DELETE removes the key at the end of the path,
 * whatever its type, as far as this op has seen it: concurrent updates
 * survive (docs/CRDT.md). */
typedef enum mrd_op_kind {
    MRD_OP_INC     = 1, /* counter += delta (negative to decrement) */
    MRD_OP_SET     = 2, /* LWW or MV register := value */
    MRD_OP_ENABLE  = 3, /* flag */
    MRD_OP_DISABLE = 4, /* flag */
    MRD_OP_ADD     = 5, /* set: add value */
    MRD_OP_REMOVE  = 6, /* set: remove value */
    MRD_OP_DELETE  = 7, /* any: remove the key (type 0) */
} mrd_op_kind;

/* An operation on the appending stream's state. path[0] is the field;
 * path[1..] are keys of nested maps (each level before the last is a map).
 * Names are UTF-8, 1..MRD_STATE_NAME_SIZE_MAX bytes. Borrowed for the call. */
typedef struct mrd_op {
    const char *const *path;
    size_t             path_len; /* 1..MRD_STATE_PATH_MAX */
    int                type; /* mrd_state_type; 0 with MRD_OP_DELETE */
    int                kind; /* mrd_op_kind */
    int64_t            delta; /* MRD_OP_INC */
    const void        *value; /* MRD_OP_SET, _ADD, _REMOVE */
    size_t             value_size; /* <= MRD_STATE_VALUE_SIZE_MAX */
} mrd_op;

/* An event to append. Every pointer is borrowed for the duration of the call
 * only: the library copies what it needs before it returns. NULL strings are
 * empty strings. */
typedef struct mrd_event_in {
    const char           *type; /* required, non-empty */
    const void           *data;
    size_t                data_size;
    const char           *content_type; /* e.g. "application/json" */
    const char           *correlation_id; /* optional */
    const char           *causation_id; /* optional */
    const mrd_meta_entry *meta; /* optional user metadata */
    size_t                meta_count;
    /* Optional ops on the stream's state, applied atomically with the
     * event: an op on a field of another type fails the whole append
     * (MRD_ETYPE) and nothing is written. */
    const mrd_op *ops;
    size_t        op_count; /* <= MRD_STATE_OPS_MAX */
} mrd_event_in;

/* An event as read. Every pointer points into the mrd_events it came from
 * and is valid until mrd_events_free() on that batch. Strings are
 * NUL-terminated. */
typedef struct mrd_event {
    const char           *stream;
    uint64_t              position; /* in its stream, on the serving node */
    uint64_t              log_seq; /* in its shard's log on that node */
    mrd_dot               dot;
    uint64_t              hlc; /* hybrid logical clock: ms << 16 | logical */
    const char           *type;
    const void           *data;
    size_t                data_size;
    const char           *content_type;
    const char           *correlation_id;
    const char           *causation_id;
    const mrd_meta_entry *meta;
    size_t                meta_count;
} mrd_event;

typedef struct mrd_append_opts {
    /* MRD_EXPECT_ANY (the default), MRD_EXPECT_NO_STREAM, MRD_EXPECT_EXISTS,
     * or the exact version (>= 0) the stream must be at. Checked on the node
     * that takes the write. */
    int64_t expected_version;
    /* A retried append with the same key returns the first result and writes
     * nothing; the same key with a different request is MRD_EIDEMPOTENCY.
     * When NULL, the library makes a random key for this call, so its own
     * retries never write twice: once a request reached a node without an
     * answer, the library retries it on that node only, and the call ends
     * MRD_ETIMEDOUT (outcome unknown) if that node stays away. Borrowed for
     * the call only. */
    const void *idempotency_key;
    size_t      idempotency_key_size;
    /* How durable the events must be before the call returns:
     * MRD_ACK_LOCAL (default), MRD_ACK_REGION (on ack_count replicas of
     * the receiving node's region, that node included) or MRD_ACK_GLOBAL
     * (in ack_count regions, its own included). ack_count 0 means 2. The
     * node waits up to ack_wait_ms (0: MRD_ACK_WAIT_MS_DEFAULT) and then
     * answers with what it reached: the events are written either way, and
     * the call returns MRD_EDURABILITY with the result filled in when the
     * level was not reached. Never a false success. */
    int      ack;
    uint32_t ack_count;
    uint32_t ack_wait_ms;
} mrd_append_opts;

typedef struct mrd_append_result {
    mrd_dot  first_dot; /* dots are first_dot.seq .. + count - 1 */
    uint64_t first_position; /* position of the first appended event */
    uint64_t version; /* the stream's version after the append */
    uint32_t count; /* events appended */
    uint64_t hlc; /* timestamp of the first event */
    int      replayed; /* 1 when this is the stored answer to a retry */
    /* The acknowledgement level reached (MRD_ACK_*), and what the node
     * counted: replicas of its region and regions holding every event of
     * the append (itself included). For a local ack: MRD_ACK_LOCAL, 1, 1. */
    int      ack_reached;
    uint32_t ack_replicas;
    uint32_t ack_regions;
} mrd_append_result;

typedef struct mrd_stream_info {
    int      exists;
    int64_t  version; /* last position, or MRD_VERSION_NONE */
    uint64_t count;
    uint32_t shard;
} mrd_stream_info;

typedef struct mrd_node_info {
    uint64_t node_id;
    uint8_t  cluster_id[16];
    uint32_t shard_count;
    uint32_t protocol_version;
    uint32_t frame_size_max;
    char     version[32];
} mrd_node_info;

typedef struct mrd_client_opts {
    /* Node addresses, "tcp://127.0.0.1:7400": any nodes of the cluster, one
     * is enough. Copied at open.
     *
     * The client learns the cluster's signed topology from whichever of
     * them answers, verifies its signature, and from then on routes every
     * call that names a stream (appends, reads, cursor reads, tails, stream
     * info, state) by it, to the replicas of the stream's shard: those in
     * `region` first (in placement order), then those in the other regions
     * (the fastest answering first; draining regions only when nothing
     * else answers), then these addresses. A node that fails (no
     * connection, no answer, busy, stopping) moves the call on to the next
     * one, and later calls start at a healthy replica. Nodes the topology
     * names get a connection of their own when a call first needs them.
     * The topology is refreshed when a node answers MRD_ENOTREPLICA and
     * otherwise every few seconds while stream calls are made; a newer
     * version is only taken when it follows from the one held, signed by
     * the same admin key. The first topology is trusted because a node the
     * caller named sent it (docs/ARCHITECTURE.md, "The client library").
     *
     * Calls that name no stream, and every call when the nodes run without
     * a topology (--peers), try these addresses in order: the first that
     * answers serves until it fails, then the next. */
    const char *const *addresses;
    size_t             address_count;
    /* Whole-call deadline, retries included (default 10000). */
    uint32_t timeout_ms;
    /* One attempt on one node before it counts as failed (default 3000). */
    uint32_t attempt_timeout_ms;
    /* Retry backoff: starts at backoff_min_ms and doubles up to
     * backoff_max_ms, with full jitter (defaults 20 and 1000). */
    uint32_t backoff_min_ms;
    uint32_t backoff_max_ms;
    /* Largest frame the client sends or accepts (default 16 MiB, at least
     * 4 MiB + 4 KiB so every read reply fits, at most MRD_FRAME_SIZE_MAX). */
    uint32_t frame_size_max;
    /* The client's home region, a region name of the topology ("eu-west"):
     * streams go to their replicas there first. NULL or "" for no
     * preference; a name the topology does not have means none too. A
     * string that cannot be a region name (1..63 of a-z, 0-9 and '-', not
     * first) is MRD_EINVAL. Copied at open. */
    const char *region;
    /* Secure links: every connection to a node is encrypted, and each side
     * proves who it is (docs/OPERATIONS.md, "Keys and roles"). key_file is
     * this client's secret key (`meridianctl keygen` makes one; a file
     * others may read is refused); its public key must be in the nodes'
     * keyring with a role. keyring_file names the cluster and the node keys
     * this client trusts: its "cluster" and "node" lines (a node's
     * DATA_DIR/identity has both; a client keyring is those files put
     * together); nodes of a topology signed by the cluster's admin are
     * trusted too. NULL: the environment variables MERIDIAN_KEY and
     * MERIDIAN_KEYRING. Missing, unreadable or malformed: mrd_client_open()
     * returns MRD_EINVAL and mrd_errdetail() says why. Read at open. A node
     * that refuses this client's key makes calls end with MRD_EAUTH. */
    const char *key_file;
    const char *keyring_file;
    /* Session order (default): an append carries the last event of this
     * client's last acknowledged append to the same stream, and a node
     * takes it only once it holds that event (MRD_ECAUSAL otherwise, which
     * the library retries on the stream's other replicas, and on that node
     * again, until the deadline). So a client's appends to a stream keep
     * their order on every replica even when it fails over between nodes
     * (docs/ARCHITECTURE.md, "Session order"). While the only replicas
     * that hold that event are cut off, such an append waits for them or
     * for replication. Nonzero turns this off: appends are taken anywhere
     * at once, and a client's appends to a stream may be stored in another
     * order after a failover. */
    int no_session_order;
} mrd_client_opts;

/* ----------------------------------------------------------- the client -- */

/* Fills *opts with the defaults and no addresses. */
MRD_API void mrd_client_opts_init(mrd_client_opts *opts);

/* Opens a client. No connection is needed to succeed: nodes are dialled in
 * the background. On success *client_out goes to mrd_client_close() once; on
 * error it is NULL. */
MRD_API int mrd_client_open(
    const mrd_client_opts *opts, mrd_client **client_out);

/* Waits for calls in flight on other threads to end, then frees the client.
 * Tails opened on it must be closed first. Never call it from an
 * mrd_append_cb (it would wait for that very callback). NULL is a no-op. */
MRD_API void mrd_client_close(mrd_client *client);

/* Fills *opts with the defaults: MRD_EXPECT_ANY and a generated
 * idempotency key. Note that a zeroed mrd_append_opts means "expected
 * version 0", not "any". */
MRD_API void mrd_append_opts_init(mrd_append_opts *opts);

/* Appends 1..MRD_APPEND_EVENTS_MAX events to one stream, atomically: all are
 * stored, consecutively, or none. opts may be NULL (any version, generated
 * idempotency key). Returns once the node has the events durably on disk.
 * result_out may be NULL. */
MRD_API int mrd_append(mrd_client *client, const char *stream,
    const mrd_event_in *events, size_t event_count, const mrd_append_opts *opts,
    mrd_append_result *result_out);

/* Runs exactly once per mrd_append_async() that returned MRD_OK, on a
 * library thread; result is NULL unless err is MRD_OK and is valid only
 * during the call. It must not block; it may call mrd_append_async(). */
typedef void (*mrd_append_cb)(
    void *arg, int err, const mrd_append_result *result);

/* Like mrd_append() but returns at once; cb reports the outcome. The events
 * are copied before return. When this returns an error, cb is never called.
 * At most MRD_CLIENT_INFLIGHT_MAX calls are in flight per client; past that
 * this returns MRD_EFULL. */
#define MRD_CLIENT_INFLIGHT_MAX 1024u
MRD_API int mrd_append_async(mrd_client *client, const char *stream,
    const mrd_event_in *events, size_t event_count, const mrd_append_opts *opts,
    mrd_append_cb cb, void *arg);

/* Reads up to count_max events of a stream, forward from position `from`
 * (inclusive) or backward from it (MRD_POSITION_END: from the last event).
 * A stream that does not exist reads as empty. On success *events_out
 * belongs to the caller until mrd_events_free(); on error it is NULL. */
#define MRD_FORWARD 0
#define MRD_BACKWARD 1
MRD_API int mrd_read(mrd_client *client, const char *stream, uint64_t from,
    int direction, uint32_t count_max, mrd_events **events_out);

/* Long-poll: like a forward mrd_read(), but when no event is at or after
 * `from`, waits up to wait_ms (at most MRD_WAIT_MS_MAX) for one. Returns
 * MRD_OK with an empty batch when none came. */
MRD_API int mrd_read_wait(mrd_client *client, const char *stream, uint64_t from,
    uint32_t count_max, uint32_t wait_ms, mrd_events **events_out);

/* Reads a shard's log on the serving node after local sequence after_seq
 * (0: from the start). Used by replication and by tools. */
MRD_API int mrd_read_log(mrd_client *client, uint32_t shard, uint64_t after_seq,
    uint32_t count_max, mrd_events **events_out);

MRD_API int mrd_stream_info_get(
    mrd_client *client, const char *stream, mrd_stream_info *info_out);

MRD_API int mrd_node_info_get(mrd_client *client, mrd_node_info *info_out);

/* The serving node's counters (STATS; the key needs the admin role): every
 * counter and gauge the node keeps, by name, in the node's order
 * (docs/PROTOCOL.md lists them). A client opened with one node address
 * asks that node. Free with mrd_stats_free(). */
typedef struct mrd_stats mrd_stats;
/* Bounds on what a reply may hold: far above the node's hundred or so. */
#define MRD_STATS_MAX 4096u
#define MRD_STATS_NAME_SIZE_MAX 64u
MRD_API int    mrd_node_stats_get(mrd_client *client, mrd_stats **stats_out);
MRD_API size_t mrd_stats_count(const mrd_stats *stats);
/* NULL (name) or 0 (value) when index >= count. */
MRD_API const char *mrd_stats_name(const mrd_stats *stats, size_t index);
MRD_API uint64_t    mrd_stats_value(const mrd_stats *stats, size_t index);
/* MRD_OK and *value_out (may be NULL), or MRD_ENOTFOUND. */
MRD_API int mrd_stats_find(
    const mrd_stats *stats, const char *name, uint64_t *value_out);
MRD_API void mrd_stats_free(mrd_stats *stats);

/* ----------------------------------------------------------- operations -- */

/* Operations calls (the key needs the admin role); a client opened with one
 * node address asks that node. What meridianctl status, verify and drill
 * are made of (docs/OPERATIONS.md). */

/* The serving node's status document: one JSON object (its identity,
 * region, uptime, fence, peers with their liveness, every shard's vector
 * and log size, replication lag per peer and shard, counters;
 * docs/PROTOCOL.md lists the fields). *json_out is NUL-terminated; free it
 * with mrd_free(). */
MRD_API int mrd_node_status_get(mrd_client *client, char **json_out);

/* A failover drill's fence on the serving node. While it holds the node
 * refuses every request from the nodes listed (pulls, hints, SWIM: it is
 * cut off from them both ways when each side fences the other), and with
 * refuse_clients every client request (MRD_EFENCED, which clients take as
 * "try another node"); operations calls are still served. It lifts itself
 * after ms; ms 0 lifts it now. */
#define MRD_FENCE_MS_MAX (24u * 3600u * 1000u)
#define MRD_FENCE_PEERS_MAX 256u
#define MRD_FENCE_LABEL_SIZE_MAX 64u
typedef struct mrd_fence {
    uint32_t        ms;
    int             refuse_clients;
    const uint64_t *peers;
    size_t          peer_count;
    const char     *label; /* NULL or up to MRD_FENCE_LABEL_SIZE_MAX bytes */
} mrd_fence;
/* *json_out (may be NULL): the fence now in force, as the node sees it;
 * free with mrd_free(). */
MRD_API int mrd_node_fence(
    mrd_client *client, const mrd_fence *fence, char **json_out);

/* A digest of one shard's events on the serving node: those covered by the
 * cut (cut_count (origin, seq) pairs, flattened: origin0, seq0, ...), or
 * every event when cut is NULL. Independent of log order: replicas that
 * hold the same events under the cut give the same events and sum. */
#define MRD_DIGEST_SIZE 32u
typedef struct mrd_shard_digest {
    uint64_t events;
    uint8_t  sum[MRD_DIGEST_SIZE];
} mrd_shard_digest;
MRD_API int mrd_shard_digest_get(mrd_client *client, uint32_t shard,
    const uint64_t *cut, size_t cut_count, mrd_shard_digest *out);

/* ------------------------------------------------------------ read data -- */

MRD_API size_t mrd_events_count(const mrd_events *events);
/* NULL when index >= count. Valid until mrd_events_free(events). */
MRD_API const mrd_event *mrd_events_at(const mrd_events *events, size_t index);
/* The position to read from next in the same direction. Forward: the last
 * event's position + 1 (or `from` when empty). Backward: the lowest
 * returned position - 1; once position 0 was returned, 0, and
 * mrd_events_end() says there is nothing left. Shard log reads: the last
 * returned log seq (pass it as after_seq). */
MRD_API uint64_t mrd_events_next(const mrd_events *events);
/* 1 when the read reached the end of the stream in its direction (forward:
 * nothing after its last event when the node answered; backward: position 0
 * reached), or, for a shard log read, fewer events than asked for. A
 * batch can be empty and at the end. */
MRD_API int mrd_events_end(const mrd_events *events);
/* The stream's version on the node when it answered. */
MRD_API int64_t mrd_events_version(const mrd_events *events);
/* NULL is a no-op. */
MRD_API void mrd_events_free(mrd_events *events);

/* ------------------------------------------------------- causal cursors -- */

/* A position is local to the node that gave it: every node appends
 * replicated events in its own causal order. A cursor is the portable
 * position: per origin node, the highest seq of the stream's events
 * delivered. A read or tail from a cursor, on any node of any region,
 * returns exactly the stream's events it does not cover, in that node's
 * (causal) order: no gap, no duplicate. One cursor follows one stream.
 * Not thread-safe: one thread uses a cursor at a time. */
typedef struct mrd_cursor mrd_cursor; /* opaque */

/* Origins one cursor holds: node ids are never reused, so this bounds
 * the nodes a cluster ever had (the wire vector's limit). */
#define MRD_CURSOR_ORIGINS_MAX 1024u

/* An empty cursor: the start of the stream. Free with mrd_cursor_free(). */
MRD_API int  mrd_cursor_new(mrd_cursor **cursor_out);
MRD_API void mrd_cursor_free(mrd_cursor *cursor); /* NULL is a no-op */
MRD_API int  mrd_cursor_copy(const mrd_cursor *cursor, mrd_cursor **copy_out);
/* 1 when the event with this dot was delivered (is covered). */
MRD_API int mrd_cursor_covers(const mrd_cursor *cursor, mrd_dot dot);
/* Marks an event as delivered. The reads below do it themselves. */
MRD_API int     mrd_cursor_add(mrd_cursor *cursor, mrd_dot dot);
MRD_API size_t  mrd_cursor_origin_count(const mrd_cursor *cursor);
MRD_API mrd_dot mrd_cursor_origin_at(const mrd_cursor *cursor, size_t i);
/* Text form, to store a cursor: ASCII without spaces or quotes. Writes at
 * most size bytes with a NUL, like snprintf, and returns the length the
 * whole text needs. */
MRD_API size_t mrd_cursor_format(
    const mrd_cursor *cursor, char *buf, size_t size);
/* MRD_EINVAL for text mrd_cursor_format() did not make. */
MRD_API int mrd_cursor_parse(const char *text, mrd_cursor **cursor_out);

/* Reads up to count_max events of the stream that the cursor does not
 * cover, waiting up to wait_ms (<= MRD_WAIT_MS_MAX) when there are none,
 * and moves the cursor over the events returned. A batch may be empty and
 * not at the end (mrd_events_end() is 0) when the node stopped at its scan
 * bound: read again. Positions in the events are the serving node's. */
MRD_API int mrd_read_cursor(mrd_client *client, const char *stream,
    mrd_cursor *cursor, uint32_t count_max, uint32_t wait_ms,
    mrd_events **events_out);

/* ------------------------------------------------------------------ tail -- */

/* A tail follows a stream from a position, forever, by long-polls on the
 * client's nodes (failing over like any call). Not thread-safe: one thread
 * uses one tail. On success *tail_out goes to mrd_tail_close(). */
MRD_API int mrd_tail_open(
    mrd_client *client, const char *stream, uint64_t from, mrd_tail **tail_out);

/* Returns the next events, waiting up to timeout_ms: MRD_OK with at least one
 * event, or MRD_ETIMEDOUT when none came in time (the tail stays usable). On
 * MRD_OK *events_out belongs to the caller until mrd_events_free(). */
MRD_API int mrd_tail_next(
    mrd_tail *tail, uint32_t timeout_ms, mrd_events **events_out);

/* The position the tail reads from next. */
MRD_API uint64_t mrd_tail_position(const mrd_tail *tail);

/* Callback style: the library runs cb on its own thread for every event, in
 * order, until cb returns non-zero or mrd_tail_close() is called. event is
 * valid during the call only. Transient errors are retried; err_cb (may be
 * NULL) hears about each. */
typedef int (*mrd_tail_cb)(void *arg, const mrd_event *event);
typedef void (*mrd_tail_err_cb)(void *arg, int err);
MRD_API int mrd_tail_start(mrd_client *client, const char *stream,
    uint64_t from, mrd_tail_cb cb, mrd_tail_err_cb err_cb, void *arg,
    mrd_tail **tail_out);

/* Tails that follow a causal cursor instead of a position, so that they
 * resume on any node, in any region, after a failover. from may be NULL
 * (the start of the stream); it is copied. */
MRD_API int mrd_tail_open_cursor(mrd_client *client, const char *stream,
    const mrd_cursor *from, mrd_tail **tail_out);
MRD_API int mrd_tail_start_cursor(mrd_client *client, const char *stream,
    const mrd_cursor *from, mrd_tail_cb cb, mrd_tail_err_cb err_cb, void *arg,
    mrd_tail **tail_out);
/* A copy of a cursor tail's cursor: every event delivered so far (to
 * mrd_tail_next()'s caller or to cb). Any thread. MRD_EINVAL for a
 * position tail. */
MRD_API int mrd_tail_cursor(const mrd_tail *tail, mrd_cursor **cursor_out);

/* Stops a tail (joining its thread when it has one) and frees it. NULL is a
 * no-op. Must not be called from the tail's own callback. */
MRD_API void mrd_tail_close(mrd_tail *tail);

/* -------------------------------------------------------------- topology -- */

/* The cluster's signed topology (docs/ARCHITECTURE.md, "Topology"), as
 * the serving node holds it. *signed_out is NULL when the node's version
 * is not newer than `have` (0: always send it); else malloc'd, for
 * mrd_free(). MRD_ENOTFOUND from a node without a topology. */
MRD_API int mrd_topology_get(mrd_client *client, uint64_t have,
    uint64_t *version_out, void **signed_out, size_t *len_out);
/* Hands a node a newer signed topology. The node verifies it against the
 * version it holds (the admin's signature, and that the change is one an
 * admin could make) before it keeps it, and spreads it by gossip.
 * *version_out (may be NULL) is the node's version after. A refusal comes
 * with the node's words in mrd_errdetail(): MRD_ECORRUPT (not signed by
 * the admin key), MRD_EVERSION (not newer), MRD_EINVAL (a change no admin
 * may make), MRD_EPROTO. */
MRD_API int mrd_topology_push(mrd_client *client, const void *signed_topo,
    size_t len, uint64_t *version_out);
/* Frees what the library allocated for the caller. NULL is a no-op. */
MRD_API void mrd_free(void *p);

/* ---------------------------------------------------------------- state -- */

/* Reads a stream's state document: every field, or only `field` when not
 * NULL. A stream with no state reads as an empty document (not an error).
 * Free *state_out with mrd_state_free(). */
MRD_API int mrd_state_read(mrd_client *client, const char *stream,
    const char *field, mrd_state **state_out);
/* The stream version the state reflects (MRD_VERSION_NONE for a stream with
 * no event). */
MRD_API int64_t mrd_state_version(const mrd_state *state);
/* The causal context the state reflects: per origin node, the highest seq
 * of this stream's state events applied. i < mrd_state_context_count(). */
MRD_API size_t  mrd_state_context_count(const mrd_state *state);
MRD_API mrd_dot mrd_state_context_at(const mrd_state *state, size_t i);
/* The document: a MRD_STATE_MAP value of the fields. Valid until
 * mrd_state_free(), like every mrd_value reached from it. */
MRD_API const mrd_value *mrd_state_root(const mrd_state *state);
MRD_API void             mrd_state_free(mrd_state *state);

/* A value's type (mrd_state_type). */
MRD_API int mrd_value_type(const mrd_value *value);
/* A counter's value; 0 for other types. */
MRD_API int64_t mrd_value_int(const mrd_value *value);
/* A flag's value; 0 for other types and for NULL (a disabled flag holds
 * nothing, so it is absent from the document: mrd_value_find() gives NULL). */
MRD_API int mrd_value_bool(const mrd_value *value);
/* Items: LWW 1 (the winning write), MVREG the concurrent values, SET the
 * members, MAP the entries, sorted by bytes; 0 for counters and flags. */
MRD_API size_t mrd_value_count(const mrd_value *value);
/* Item i of an LWW, MVREG or SET value: bytes, *size_out set. NULL when i
 * is out of range or the type has no byte items. */
MRD_API const void *mrd_value_bytes(
    const mrd_value *value, size_t i, size_t *size_out);
/* Entry i of a MAP: its value, and its name in *name_out (NUL-terminated).
 * Entries are sorted by name, then type. */
MRD_API const mrd_value *mrd_value_entry(
    const mrd_value *map, size_t i, const char **name_out);
/* The entry of a MAP called name, of the given type (0: any), or NULL. */
MRD_API const mrd_value *mrd_value_find(
    const mrd_value *map, const char *name, int type);
/* "counter", "lww", "mvreg", "flag", "set", "map"; "?" otherwise. */
MRD_API const char *mrd_state_type_name(int type);

/* ------------------------------------------------------------- helpers -- */

/* MRD_OK when name is a valid stream name, MRD_ENAME otherwise. */
MRD_API int mrd_stream_name_check(const char *name, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* MERIDIAN_H */
