/*
 * client.h: the one internal header of libmeridian, the client library.
 *
 * A client holds two secure links per node address (net/linkio.h: raw NNG
 * req sockets under an authenticated, encrypted session; one carries the
 * long-polls), each dialled in the background, and a pool of call objects.
 * Every request, blocking or not, is a call: one nng_aio driven by one callback
 * through the states SEND, RECV and BACKOFF, trying the nodes in order until a
 * node gives a final answer or the whole-call deadline passes. A blocking
 * function is that same machine plus a wait on the call's condition variable,
 * so there is one path.
 *
 * Calls that name a stream are routed by the cluster's signed topology when
 * the client has one: to the replicas of the stream's shard in the client's
 * home region, then to the replicas in the other regions, then to the
 * caller's addresses (routing.c). The topology is learned from any node,
 * verified, cached and refreshed by a call of its own (topology.c). Without
 * one (a static cluster) every call tries the caller's addresses in turn.
 *
 * Files: client.c (open, close, nodes, the call pool, info calls), call.c
 * (the attempt state machine, failover, backoff, replies), routing.c (which
 * node an attempt goes to, node health), route.c (the pure candidate order,
 * unit-tested alone), topology.c (the topology cache and its refresh, and
 * the topology calls), append.c (and the encoding of ops), events.c (reads
 * and the mrd_events arena), tail.c (subscriptions), state.c (state reads
 * and the mrd_value tree).
 *
 * Threads: every mrd_ function may run on any thread at once. Call
 * callbacks run on NNG's threads and never block; the locks they take are
 * the call's and the client's mutexes, the topology cache's (its rwlock,
 * shared while a candidate list is made, and its mutex) and, when a call
 * first needs a learned node, nodes_mtx around a socket open (no network
 * I/O: the dial runs in the background); each is held briefly.
 */
#ifndef MRD_CLIENT_H
#define MRD_CLIENT_H

#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "keyring.h"
#include "linkio.h"
#include "meridian.h"
#include "proto.h"
#include "topo.h"

/* ---------------------------------------------------------------- limits -- */

/* mrd_errdetail()'s buffer: a node's error message, or the library's
 * reason for refusing an argument. */
#define CLIENT_DETAIL_SIZE 256u
/* Node addresses per client: a handful per region, a few regions. */
#define CLIENT_ADDRESS_COUNT_MAX 64u
/* Nodes learned from the topology that the caller did not list, each with
 * a socket (and a connection) of its own, dialled when a call first needs
 * it and kept until close (closing a socket can hang in NNG 1.5.2). A
 * client touches the replicas of the shards it uses, mostly in its own
 * region, so 128 covers large clusters; past it a candidate that has no
 * socket yet is skipped and the call goes on to the next one. */
#define CLIENT_LEARNED_NODES_MAX 128u
#define CLIENT_NODES_MAX (CLIENT_ADDRESS_COUNT_MAX + CLIENT_LEARNED_NODES_MAX)
_Static_assert(CLIENT_NODES_MAX < INT16_MAX, "node indexes fit int16");
/* Topology candidates per call: the home region's replicas and those of
 * the other regions, in order. A failed attempt costs at least a connect
 * wait and a backoff, so no call gets through more than a few dozen nodes
 * before its deadline; 32 holds rf 8 in four regions. */
#define CLIENT_ROUTE_IDS_MAX 32u
_Static_assert(CLIENT_ROUTE_IDS_MAX >= TOPO_RF_MAX, "the home replicas fit");
/* A call's candidate list: topology candidates, then every caller address
 * that is not one of them. */
#define CLIENT_CANDS_MAX (CLIENT_ROUTE_IDS_MAX + CLIENT_ADDRESS_COUNT_MAX)
/* Topology refresh: how often a client that routes asks whether there is a
 * newer version (lazily, when a stream call starts; the answer is a few
 * bytes when nothing changed); how often it asks again when the nodes run
 * without a topology (a static cluster), or after a refresh failed; and how
 * often at most a node's MRD_ENOTREPLICA makes it ask out of turn. */
#define CLIENT_TOPO_REFRESH_MS 5000u
#define CLIENT_TOPO_ABSENT_MS 30000u
#define CLIENT_TOPO_RETRY_MS 1000u
#define CLIENT_TOPO_STALE_MIN_MS 100u
/* A blocking stream call made before the first topology answer waits this
 * long at most (within its own deadline) for that answer, so that it is
 * routed rather than sent to a node that refuses it. Once per client. */
#define CLIENT_TOPO_FIRST_WAIT_MS 500u
/* An async stream call cannot wait on a condition variable (it may start
 * on an NNG thread): it sleeps in steps of this length instead, within the
 * same bound. */
#define CLIENT_TOPO_FIRST_POLL_MS 5u
_Static_assert(CLIENT_TOPO_FIRST_POLL_MS < CLIENT_TOPO_FIRST_WAIT_MS,
    "a poll step is a fraction of the wait");
/* A node whose attempt failed is tried after the healthy candidates for
 * this long, unless it reconnects first. */
#define CLIENT_NODE_SUSPECT_MS 5000u
/* One address, "tcp://host:port": a DNS name is at most 253 bytes. */
#define CLIENT_ADDRESS_SIZE_MAX 512u
/* Timeouts and backoffs must fit nng_duration (int32 ms) even after a
 * long-poll wait is added: one day is more than any call needs. */
#define CLIENT_TIMEOUT_MS_MAX (24u * 3600u * 1000u)
_Static_assert(CLIENT_TIMEOUT_MS_MAX + MRD_WAIT_MS_MAX <= INT32_MAX,
    "attempt timeouts fit nng_duration");
/* Defaults, as documented on mrd_client_opts. */
#define CLIENT_TIMEOUT_MS_DEFAULT 10000u
#define CLIENT_ATTEMPT_TIMEOUT_MS_DEFAULT 3000u
#define CLIENT_BACKOFF_MIN_MS_DEFAULT 20u
#define CLIENT_BACKOFF_MAX_MS_DEFAULT 1000u
#define CLIENT_FRAME_SIZE_MAX_DEFAULT (16u * 1024u * 1024u)
/* NNG's own reconnect backoff for a node that is down: quick first retries
 * so a restarted node is found fast, then once a second. */
#define CLIENT_RECONNECT_MIN_MS 10
#define CLIENT_RECONNECT_MAX_MS 1000
/* An attempt on a node with no session waits at most this long for the
 * background dial and the link handshake (four round trips) before it
 * counts as failed: on a dead node the send would otherwise wait for the
 * whole attempt timeout. */
#define CLIENT_CONNECT_WAIT_MS 500u
/* NNG's receive limit counts the 4-byte request id in front of the frame,
 * so it is set a little above frame_size_max. */
#define CLIENT_SP_HEADER_SLACK 64u
/* Request buffers above this size are freed when their call ends rather
 * than kept in the pool, so one big append does not pin memory forever. */
#define CLIENT_BUF_KEEP_SIZE (16u * 1024u)
/* The generated idempotency key: 16 random bytes, as meridian.h says. */
#define CLIENT_IDEM_KEY_SIZE 16u
_Static_assert(CLIENT_IDEM_KEY_SIZE <= MRD_IDEMPOTENCY_KEY_SIZE_MAX,
    "generated key fits the limit");
/* Events asked for by one tail poll: many per round trip, well under the
 * read limit so one reply stays a reasonable size. */
#define CLIENT_TAIL_COUNT 1000u
_Static_assert(CLIENT_TAIL_COUNT <= MRD_READ_COUNT_MAX, "tail count is valid");
/* Long-poll wait of a callback tail. Closing the tail cancels the poll, so
 * this only bounds how long a silent network partition goes unnoticed. */
#define CLIENT_TAIL_WAIT_MS 10000u
_Static_assert(CLIENT_TAIL_WAIT_MS <= MRD_WAIT_MS_MAX, "tail wait is valid");

/* ----------------------------------------------------------------- types -- */

struct client_node {
    struct mrd_client *client;
    char              *url;
    struct lk_sock    *lk; /* the secure link (net/linkio.h) */
    nng_socket         sock; /* lk's */
    bool               sock_open;
    /* Long-polls (tail polls, acknowledgement waits: calls with wait_ms)
     * go on a link of their own: a node parks them for seconds, and each
     * holds one of the LK_INFLIGHT_MAX slots of its link, which would
     * otherwise hold up appends and reads. Health comes from lk alone. */
    struct lk_sock *lk_poll;
    bool            poll_open;
    nng_dialer      dialer;
    /* Established link sessions (linkio's up callback): zero means the
     * background dial has no authenticated connection to this node. */
    atomic_int pipe_count;
    /* When the node last lost (or never had) a connection, and when we last
     * started a dialer: see client_node_redial(). */
    _Atomic uint64_t down_since_ms;
    _Atomic uint64_t dialed_ms;
    atomic_uint      dialers_extra;
    /* Health, for routing (routing.c): when the last attempt on this node
     * failed (0: none since the last answer), when its pipe count last went
     * from 0 to 1, and the smoothed round trip of its answers (0: none). */
    _Atomic uint64_t failed_ms;
    _Atomic uint64_t up_since_ms;
    atomic_uint      rtt_us;
};

/* NNG 1.5.2 can leave a dialer stuck so it never reconnects
 * (nanomsg/nng#1543). A node without a connection for this long gets one
 * more dialer, up to CLIENT_DIALERS_EXTRA_MAX: a healthy dialer reconnects
 * within CLIENT_RECONNECT_MAX_MS, so twice that means it is stuck. */
#define CLIENT_REDIAL_AFTER_MS (2u * CLIENT_RECONNECT_MAX_MS)
#define CLIENT_DIALERS_EXTRA_MAX 8u

/* Starts another background dialer to a node that has had no connection
 * for CLIENT_REDIAL_AFTER_MS. Any thread. */
void client_node_redial(struct client_node *node, uint64_t now_ms);

enum client_call_state {
    CLIENT_CALL_IDLE,
    CLIENT_CALL_SEND,
    CLIENT_CALL_RECV,
    CLIENT_CALL_BACKOFF,
};

/* How a call chooses the node of each attempt (routing.c). */
enum client_route_mode {
    /* The caller's addresses in turn, the client's current one first: calls
     * that name no stream, and stream calls while there is no topology. */
    CLIENT_ROUTE_ADDRESSES,
    /* A stream call: its candidate list comes from the topology and is
     * rebuilt whenever a newer version is cached. */
    CLIENT_ROUTE_STREAM,
    /* A fixed candidate list made by the starter: topology refreshes. */
    CLIENT_ROUTE_LIST,
};

/* One candidate of a call. node: an index into client->nodes, or one of
 * the two values below. topo_id: the topology node id (0 for a caller's
 * address). */
#define CLIENT_CAND_UNOPENED (-1) /* no socket yet: opened when tried */
#define CLIENT_CAND_SKIP (-2) /* could not be opened: skipped */
struct client_cand {
    uint32_t topo_id;
    int16_t  node;
};

struct client_call;
/* Decodes an MRD_OK reply body into the call's outputs. Returns MRD_OK, a
 * final error (MRD_ECORRUPT, MRD_ENOMEM), or MRD_EPROTO for a body that
 * does not decode (the attempt failed; it is retried). */
typedef int (*client_decode_fn)(
    struct client_call *call, struct proto_rd *body);
/* Runs once when an async call ends, on an NNG thread; must end with
 * client_call_put() and touch nothing after it. */
typedef void (*client_done_fn)(struct client_call *call);

struct client_call {
    struct mrd_client  *client;
    struct client_call *free_next;
    nng_aio            *aio; /* sends and receives */
    nng_aio            *timer; /* backoff sleeps; see call.c for why */
    struct lk_ctx      *ctx;
    bool                ctx_open;

    /* mtx guards armed, cancelled and done; done_cv wakes a blocking
     * caller. */
    pthread_mutex_t mtx;
    pthread_cond_t  done_cv;
    bool            armed; /* an operation is pending on aio */
    bool            cancelled; /* client_call_cancel() was called */
    bool            done; /* the call ended (blocking calls only) */

    /* Set by the caller between client_call_get() and the start. */
    uint32_t         type; /* PROTO_T_*: the reply must carry it */
    struct proto_buf req; /* the request frame, encoded once */
    uint32_t         wait_ms; /* long-poll wait, added to every timeout */
    client_decode_fn decode;
    client_done_fn   done_fn; /* NULL for a blocking call */
    /* Request details the decoders check the reply against. */
    uint32_t event_count; /* APPEND: events sent */
    uint32_t count_max; /* READ, READ_LOG: events asked for */
    uint64_t from; /* READ: from; READ_LOG: after_seq */
    int      direction; /* READ: MRD_FORWARD or MRD_BACKWARD */
    bool     cursor_read; /* READ: a causal cursor read */
    int      ack_level; /* APPEND: the acknowledgement level asked for */
    uint8_t  idem_key[CLIENT_IDEM_KEY_SIZE];
    /* The node's words for the last error reply, for mrd_errdetail(). */
    char detail[CLIENT_DETAIL_SIZE];
    /* The async append's user callback. */
    mrd_append_cb append_cb;
    void         *append_arg;

    /* Routing, set by the caller before the start (client_route_stream()
     * or a refresh's list) and then owned by routing.c. */
    enum client_route_mode route;
    char                   stream[MRD_STREAM_NAME_SIZE_MAX]; /* STREAM */
    size_t                 stream_len;
    uint64_t               cand_version; /* topology the list was made from */
    uint32_t               cand_count;
    uint32_t               cand_pos; /* the next candidate, modulo the count */
    struct client_cand     cands[CLIENT_CANDS_MAX];
    /* Reserved for topology refreshes: not in the pool, see client.c. */
    bool reserved;

    /* Owned by the state machine in call.c. */
    enum client_call_state state;
    uint64_t               deadline_ms; /* whole call, CLOCK_MONOTONIC */
    uint64_t               attempt_deadline_ms;
    uint64_t               attempt_start_us; /* for the node's rtt */
    /* An async stream call waiting for the first topology sleeps until
     * at most this time (0: it does not wait). */
    uint64_t first_until_ms;
    uint32_t sleep_ms;
    uint32_t backoff_ms; /* current backoff cap */
    size_t   node; /* index of the node being tried */
    /* Some attempt's request reached a node and no answer came back, so
     * the node may have acted on it: the deadline then means
     * MRD_ETIMEDOUT, not MRD_EUNAVAIL. */
    bool outcome_unknown;
    /* An append whose outcome is unknown is tried again on that node
     * only (call->node): its idempotency record there answers the retry
     * with the first result, while another node that has not yet received
     * the append would write it a second time (docs/ARCHITECTURE.md,
     * "Idempotency across nodes"). */
    bool pinned;
    /* The last retryable status a node answered with (MRD_EBUSY,
     * MRD_ECLOSED), or MRD_OK. */
    int node_err;
    /* Attempts whose link handshake was refused (this client's key, or
     * the node's); when every candidate refused, the call ends with
     * auth_err (MRD_EAUTH, MRD_EPROTOVERSION) at once. */
    uint32_t auth_fails;
    int      auth_err;

    /* Outcome: err, plus what the decoder filled in on MRD_OK. */
    int         err;
    mrd_events *events; /* READ, READ_LOG; freed by put unless taken */
    mrd_state  *doc_state; /* STATE; freed by put unless taken */
    mrd_stats  *stats; /* STATS; freed by put unless taken */
    /* APPEND: the stream's session slot hash (0: none kept). */
    uint64_t session_hash;
    /* TOPOLOGY: a copy of the signed document (NULL when not newer) and
     * the node's version; freed by put unless taken. */
    uint8_t *blob;
    size_t   blob_len;
    uint64_t topo_version;
    union {
        mrd_append_result append;
        mrd_stream_info   info;
        mrd_node_info     node;
        mrd_shard_digest  digest;
    } out;
};

/* The topology cache (topology.c). */
struct client_topo {
    /* lock guards topo, node_map's meaning and home: readers (routing)
     * share it for the microseconds a candidate list takes; the refresh
     * takes it exclusively to swap in a verified newer version. */
    pthread_rwlock_t lock;
    struct topo     *topo; /* NULL until the first verified one */
    /* Per entry of topo->nodes: the client node with its address, or -1.
     * Filled when a version is swapped in and when a node is opened. */
    atomic_int node_map[TOPO_NODES_MAX];
    int32_t    home; /* the home region's index, or -1 */
    /* topo->version, 0 without a topology: read without the lock. */
    _Atomic uint64_t version;

    /* mtx guards the refresh state below; cv tells first waiters that a
     * refresh ended. */
    pthread_mutex_t mtx;
    pthread_cond_t  cv; /* CLOCK_MONOTONIC */
    bool            refreshing;
    /* Some refresh has ended, either way. Written under mtx; read without
     * it by calls that only want to know whether to wait. */
    atomic_bool         answered;
    struct client_call *call; /* the refresh in flight: close cancels it */
    uint64_t            stale_ms; /* the last out-of-turn refresh */
    /* A node refused a stream request while a refresh was in flight or
     * too soon after one: the next refresh asks it (prefer) first, and
     * when again is set it starts as soon as the current one ends. */
    int  prefer;
    bool again;
    /* No lazy refresh before this time: read without the lock. */
    _Atomic uint64_t next_ms;
};

/* Session order (docs/ARCHITECTURE.md, "Session order"): per stream, the
 * last event of this client's last acknowledged append, which the next
 * append to the stream carries so that no node takes it before holding
 * that event. Slots by a hash of the stream name; a stream whose slot
 * another stream took since has no context (its next append is taken
 * anywhere). 1024 slots of 24 bytes: the streams a client writes to at a
 * time, with room. */
#define CLIENT_SESSION_SLOTS 1024u
struct client_session_slot {
    uint64_t hash; /* 0: empty */
    mrd_dot  last;
};
/* FNV-1a of a stream name, never 0. */
uint64_t client_session_hash(const char *stream, size_t len);

struct mrd_client {
    mrd_client_opts opts; /* validated, defaults filled, no addresses */
    /* Guarded by mtx; hash 0 when no_session_order. */
    struct client_session_slot session[CLIENT_SESSION_SLOTS];
    /* Secure links: this client's identity, and the cluster and node keys
     * it trusts (nodes of the verified topology are trusted too). */
    uint8_t         pk[KEYRING_KEY_SIZE];
    uint8_t         sk[KEYRING_SECRET_KEY_SIZE];
    uint8_t         cluster_id[KEYRING_CLUSTER_ID_SIZE];
    struct keyring  keyring;
    struct lk_stats link_stats;
    char            region[TOPO_NAME_SIZE_MAX + 1]; /* "" for none */
    /* CLIENT_NODES_MAX slots, never moved (NNG's pipe callbacks point into
     * them): the caller's addresses first, then nodes learned from the
     * topology. node_count is published after a node is opened; nodes_mtx
     * serialises the opening of learned nodes. */
    struct client_node *nodes;
    size_t              addr_count;
    atomic_size_t       node_count;
    pthread_mutex_t     nodes_mtx;
    /* The caller's address that serves until it fails (ADDRESSES mode). */
    atomic_size_t node_current;

    struct client_topo  topo;
    struct client_call *refresh_call; /* the reserved call, see client.c */

    /* mtx guards everything below; idle_cv wakes close when the last call
     * in flight ends. */
    pthread_mutex_t      mtx;
    pthread_cond_t       idle_cv;
    bool                 closing;
    uint32_t             inflight;
    struct client_call **calls; /* MRD_CLIENT_INFLIGHT_MAX slots */
    uint32_t             call_count;
    struct client_call  *call_free;
    bool                 refresh_busy; /* refresh_call is in flight */
};

/* Lets one thread cancel a blocking call running on another: how a
 * callback tail's close interrupts its long-poll. */
struct client_cancel {
    pthread_mutex_t     mtx;
    bool                stopping;
    struct client_call *call; /* the call in flight, or NULL */
};

/* ---------------------------------------------------- client.c: the pool -- */

/* Takes a call from the pool, reset and ready to fill in. MRD_OK;
 * MRD_ECLOSED when the client is closing; MRD_EFULL when
 * MRD_CLIENT_INFLIGHT_MAX calls are in flight; MRD_ENOMEM. Any thread. */
MRD_MUST_USE int client_call_get(
    struct mrd_client *client, struct client_call **call_out);
/* Takes the client's reserved call, which topology refreshes use so that
 * they never take a slot of the caller's MRD_CLIENT_INFLIGHT_MAX. MRD_OK;
 * MRD_ECLOSED; MRD_EBUSY when it is in use. Counts as in flight, so close
 * waits for it. client_call_put() returns it. Any thread. */
MRD_MUST_USE int client_call_get_reserved(
    struct mrd_client *client, struct client_call **call_out);
/* Returns a call to the pool (freeing call->events if still there) and lets
 * a waiting mrd_client_close() go on. The call must have ended, or never
 * started. Nothing may touch the call or the client after this. */
void client_call_put(struct client_call *call);

/* Node selection for one attempt among the caller's addresses: the current
 * node when it has a connected pipe, else the next one that has, else the
 * current one. The pick becomes current, so the node that answers keeps
 * serving. */
size_t client_node_pick(struct mrd_client *client);
/* An attempt on the caller's address `index` failed: the next address
 * becomes current, unless another call moved current already. */
void client_node_failed(struct mrd_client *client, size_t index);
/* The index of the node with this URL, opening a socket for it (dialled in
 * the background) when there is none: >= 0, or -1 when CLIENT_NODES_MAX
 * nodes are open or the socket cannot be made. Never touches the network
 * itself, so it may run on NNG's threads. */
int client_node_find_or_open(struct mrd_client *client, const char *url);
/* The index of the node with this URL, or -1. Any thread. */
int client_node_find(struct mrd_client *client, const char *url);

/* ----------------------------------- routing.c: the node of an attempt -- */

/* Makes call a stream call (CLIENT_ROUTE_STREAM): routed by the topology
 * when there is one. stream is copied; len <= MRD_STREAM_NAME_SIZE_MAX. */
void client_route_stream(
    struct client_call *call, const char *stream, size_t len);
/* The node for the call's next attempt (an index into client->nodes). May
 * open a socket for a learned node (client_node_find_or_open()). */
size_t client_route_pick(struct client_call *call);
/* The attempt on call->node failed; node_fault says the node itself failed
 * (no connection, no answer, busy, closing, garbled) rather than refused
 * a request that is not its to serve (MRD_ENOTREPLICA). Moves the call to
 * its next candidate and remembers the failure for later calls. */
void client_route_failed(struct client_call *call, bool node_fault);
/* The node of the attempt gave a final answer: it is healthy. rtt_us is the
 * attempt's round trip, or 0 when it says nothing about the node (a
 * long-poll, an acknowledgement wait). */
void client_route_answered(struct client_call *call, uint64_t rtt_us);
/* True when the node failed recently and has not reconnected since, or has
 * been without a connection for longer than a healthy dial takes. */
bool client_node_suspect(const struct client_node *node, uint64_t now_ms);

/* -------------------------------- route.c: candidate order (pure logic) -- */

/* What route ordering knows about a node's health: callbacks so that the
 * ordering stays pure (the unit test passes its own). Either may be NULL:
 * every node healthy, every round trip unknown. */
struct client_route_health {
    /* True when the node failed recently (client_node_suspect()). */
    bool (*suspect)(void *arg, uint32_t node_id);
    /* The node's smoothed round trip in microseconds, 0 when unknown. */
    uint32_t (*rtt_us)(void *arg, uint32_t node_id);
    void *arg;
};
/* The topology node ids a call for `shard` tries, in order:
 *   1. the shard's replicas in the home region (rendezvous order), unless
 *      the home region is draining;
 *   2. the replicas in each other region that is not draining, regions
 *      ordered by the lowest known round trip of their replicas (regions
 *      with none known after, by index);
 *   3. the replicas in draining regions, the home region first, then in the
 *      same order: used only when nothing else answers;
 * and then every suspect node moved after the healthy ones, each group
 * keeping that order. home is a region index or -1 (no preference: every
 * region is "other"). Writes at most ids_max ids and returns how many.
 * shard < t->shard_count, home < t->region_count (asserted). Pure: no
 * locks, no clocks, no I/O. */
uint32_t client_route_order(const struct topo *t, uint32_t shard, int32_t home,
    const struct client_route_health *health, uint32_t *ids_out,
    uint32_t ids_max);

/* ------------------------------- topology.c: the cache and its refresh -- */

MRD_MUST_USE int client_topo_init(struct client_topo *cache);
void             client_topo_fini(struct client_topo *cache);
/* Starts a refresh as a call of its own, unless one is in flight: when
 * `stale` (a node answered MRD_ENOTREPLICA: at most every
 * CLIENT_TOPO_STALE_MIN_MS), asking node `prefer` first (-1: none); else
 * only when the lazy interval has passed. Never blocks: any thread,
 * callbacks included. */
void client_topo_refresh(struct mrd_client *client, bool stale, int prefer);
/* A blocking stream call about to start: waits (at most until deadline_ms
 * and CLIENT_TOPO_FIRST_WAIT_MS) for the first refresh to end, if it has
 * not ended yet. Never on an NNG thread. */
void client_topo_first_wait(struct mrd_client *client, uint64_t deadline_ms);
/* True while the client's first refresh is in flight and none has ended:
 * a stream call made now would not be routed. Any thread. */
bool client_topo_first_pending(struct mrd_client *client);
/* Close: cancels the refresh in flight, if any. client->closing is set. */
void client_topo_cancel(struct mrd_client *client);
/* Fills a stream call's candidate list from the cached topology and the
 * caller's addresses. False when there is no topology (the call then uses
 * the caller's addresses in turn). */
bool client_topo_route_build(struct client_call *call);
/* Opens (or finds) the client node for topology node topo_id of version
 * `version`: >= 0, CLIENT_CAND_SKIP when it cannot, or
 * CLIENT_CAND_UNOPENED when the cached version is no longer `version` (the
 * caller rebuilds its list). */
int client_topo_node_open(
    struct mrd_client *client, uint64_t version, uint32_t topo_id);

/* ------------------------------------------- call.c: the state machine -- */

/* The callback of both aios of every call; allocated with the call. */
void client_call_cb(void *arg);
/* Starts the first attempt of a filled-in call. MRD_OK: the call will end
 * exactly once, through done_fn or client_call_wait(). Otherwise nothing
 * was started and the caller still owns the call. */
MRD_MUST_USE int client_call_start(struct client_call *call);
/* A blocking call: starts it and waits for its end. cancel may be NULL;
 * otherwise the call is published there so client_cancel_fire() can cancel
 * it. Returns call->err (or the start's error); the caller then reads the
 * outputs and puts the call. */
MRD_MUST_USE int client_call_run(
    struct client_call *call, struct client_cancel *cancel);
/* The blocking calls' common tail: when the request's encoding succeeded
 * (encode_rv == MRD_OK) runs the call. On error the call is put back and
 * the error returned; on MRD_OK the caller reads the outputs, then puts the
 * call. */
MRD_MUST_USE int client_call_exec(
    struct client_call *call, int encode_rv, struct client_cancel *cancel);
/* Makes a call end soon with MRD_ECLOSED. Any thread; the call must not
 * have been put. */
void client_call_cancel(struct client_call *call);

MRD_MUST_USE int client_cancel_init(struct client_cancel *cancel);
void             client_cancel_fini(struct client_cancel *cancel);
/* Sets stopping (every later client_call_run() on it returns MRD_ECLOSED)
 * and cancels the call in flight, if any. */
void client_cancel_fire(struct client_cancel *cancel);

/* ---------------------------------------------- events.c: reads, arenas -- */

struct client_read_args {
    const char *stream;
    size_t      stream_len;
    uint64_t    from;
    int         direction;
    uint32_t    count_max; /* 1..MRD_READ_COUNT_MAX */
    uint32_t    wait_ms; /* 0..MRD_WAIT_MS_MAX, forward only */
    /* Causal cursor reads: the cursor's vector as a wire bin, and the
     * position hint (from) is valid on hint_node only. */
    bool        has_cursor;
    const void *cursor_bin;
    size_t      cursor_len;
    uint64_t    hint_node;
};
/* A stream read with validated arguments; cancel as in client_call_run().
 * On MRD_OK *events_out belongs to the caller. */
MRD_MUST_USE int client_read_run(struct mrd_client *client,
    const struct client_read_args *args, struct client_cancel *cancel,
    mrd_events **events_out);

/* The node that answered a cursor read (0 for other reads). */
uint64_t client_events_node(const mrd_events *events);

/* Cursors (cursor.c). The wire bin of the cursor's vector: *bin_out is
 * malloc'd (NULL when empty); MRD_ENOMEM. */
MRD_MUST_USE int client_cursor_bin(
    const mrd_cursor *cursor, uint8_t **bin_out, size_t *len_out);
/* True when the cursor can cover every event of the batch (origins new to
 * it still fit MRD_CURSOR_ORIGINS_MAX): checked before a batch is handed
 * over, so that a cursor never covers events its caller did not get. */
bool client_cursor_room(const mrd_cursor *cursor, const mrd_events *events);
/* Covers one delivered event and moves the hint past it: events is what a
 * cursor read of stream returned, ev one of its events, in order. */
MRD_MUST_USE int client_cursor_deliver(mrd_cursor *cursor, const char *stream,
    size_t stream_len, const mrd_events *events, const mrd_event *ev);
/* After a whole batch (even an empty one): the hint moves to the batch's
 * next position on the node that answered. */
void client_cursor_batch_done(mrd_cursor *cursor, const char *stream,
    size_t stream_len, const mrd_events *events);
/* The hint for a read of stream: its node and position, or 0 and 0. */
void client_cursor_hint(const mrd_cursor *cursor, const char *stream,
    size_t stream_len, uint64_t *node_out, uint64_t *pos_out);

/* Sets (s != NULL) or clears this thread's mrd_errdetail(). */
void client_detail_set(const char *s, size_t len);

#endif /* MRD_CLIENT_H */
