/*
 * client.h: the one internal header of libmeridian, the client library.
 *
 * A client holds one NNG req0 socket per node address, each dialled in the
 * background, and a pool of call objects. Every request, blocking or not, is
 * a call: one nng_aio driven by one callback through the states SEND, RECV
 * and BACKOFF, trying the nodes in order until a node gives a final answer or
 * the whole-call deadline passes. A blocking function is that same machine
 * plus a wait on the call's condition variable, so there is one path.
 *
 * Files: client.c (open, close, nodes, the call pool, info calls), call.c
 * (the attempt state machine, failover, backoff, replies), append.c (and
 * the encoding of ops), events.c (reads and the mrd_events arena), tail.c
 * (subscriptions), state.c (state reads and the mrd_value tree).
 *
 * Threads: every mrd_ function may run on any thread at once. Call
 * callbacks run on NNG's threads and never block; the only locks they take
 * are the call's and the client's mutexes, each held for a few instructions.
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
#include "meridian.h"
#include "proto.h"

/* ---------------------------------------------------------------- limits -- */

/* Node addresses per client: a handful per region, a few regions. */
/* mrd_errdetail()'s buffer: a node's error message, or the library's
 * reason for refusing an argument. */
#define CLIENT_DETAIL_SIZE 256u
#define CLIENT_ADDRESS_COUNT_MAX 64u
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
/* An attempt on a node with no connected pipe waits at most this long for
 * the background dial before it counts as failed: on a dead node the send
 * would otherwise sit in NNG's queue for the whole attempt timeout. */
#define CLIENT_CONNECT_WAIT_MS 200u
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
    nng_socket         sock;
    bool               sock_open;
    nng_dialer         dialer;
    /* Pipes between NNG's ADD_PRE and REM_POST events, which NNG pairs:
     * zero means the background dial has no connection to this node. */
    atomic_int pipe_count;
    /* When the node last lost (or never had) a connection, and when we last
     * started a dialer: see client_node_redial(). */
    _Atomic uint64_t down_since_ms;
    _Atomic uint64_t dialed_ms;
    atomic_uint      dialers_extra;
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
    nng_ctx             ctx;
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

    /* Owned by the state machine in call.c. */
    enum client_call_state state;
    uint64_t               deadline_ms; /* whole call, CLOCK_MONOTONIC */
    uint64_t               attempt_deadline_ms;
    uint32_t               sleep_ms;
    uint32_t               backoff_ms; /* current backoff cap */
    size_t                 node; /* index of the node being tried */
    /* Some attempt's request reached a node and no answer came back, so
     * the node may have acted on it: the deadline then means
     * MRD_ETIMEDOUT, not MRD_EUNAVAIL. */
    bool outcome_unknown;
    /* The last retryable status a node answered with (MRD_EBUSY,
     * MRD_ECLOSED), or MRD_OK. */
    int node_err;

    /* Outcome: err, plus what the decoder filled in on MRD_OK. */
    int         err;
    mrd_events *events; /* READ, READ_LOG; freed by put unless taken */
    mrd_state  *doc_state; /* STATE; freed by put unless taken */
    /* TOPOLOGY: a copy of the signed document (NULL when not newer) and
     * the node's version; freed by put unless taken. */
    uint8_t *blob;
    size_t   blob_len;
    uint64_t topo_version;
    union {
        mrd_append_result append;
        mrd_stream_info   info;
        mrd_node_info     node;
    } out;
};

struct mrd_client {
    mrd_client_opts     opts; /* validated, defaults filled, no addresses */
    struct client_node *nodes;
    size_t              node_count;
    /* The node that serves until it fails. */
    atomic_size_t node_current;

    /* mtx guards everything below; idle_cv wakes close when the last call
     * in flight ends. */
    pthread_mutex_t      mtx;
    pthread_cond_t       idle_cv;
    bool                 closing;
    uint32_t             inflight;
    struct client_call **calls; /* MRD_CLIENT_INFLIGHT_MAX slots */
    uint32_t             call_count;
    struct client_call  *call_free;
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
/* Returns a call to the pool (freeing call->events if still there) and lets
 * a waiting mrd_client_close() go on. The call must have ended, or never
 * started. Nothing may touch the call or the client after this. */
void client_call_put(struct client_call *call);

/* Node selection for one attempt: the current node when it has a connected
 * pipe, else the next one that has, else the current one. The pick becomes
 * current, so the node that answers keeps serving. */
size_t client_node_pick(struct mrd_client *client);
/* An attempt on node `index` failed: the next node becomes current, unless
 * another call moved current already. */
void client_node_failed(struct mrd_client *client, size_t index);

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
