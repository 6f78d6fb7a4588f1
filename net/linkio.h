/*
 * linkio.h: secure links on NNG sockets. Every request and reply between
 * two nodes, or between a client and a node, crosses an NNG pipe inside a
 * link session (replication/link.h): this module runs the handshake on each
 * new pipe, seals and opens every message, and offers the callers the shape
 * of NNG's req0/rep0 contexts (a ctx, send and recv on an nng_aio), so the
 * node's server, its pullers and gossip, and the client library keep their
 * state machines.
 *
 * Why raw sockets. A session accepts each frame only with the next counter,
 * so frames must be opened in the order they crossed the wire. NNG's cooked
 * req0/rep0 hand each message to a context whose callback runs on a task
 * queue thread: two messages of one pipe can reach their callbacks in
 * either order. So this module uses the raw protocols (xreq0, xrep0),
 * receives on one aio per socket (a pipe's messages come out in wire
 * order) and opens every frame there; sealing and the hand-over to NNG
 * happen under the pipe's lock, so frames leave in counter order too. It
 * does the request-id matching of req0 itself.
 *
 *   dialer (req side): one pipe per socket. On each new pipe it sends msg1,
 *     answers msg2 with msg3 and waits for the listener's welcome (an empty
 *     sealed frame) before any request goes out: requests sent meanwhile
 *     wait, bounded by their aio's timeout. A second pipe (an extra dialer)
 *     is closed while one exists, because a raw req socket cannot choose
 *     the pipe a message leaves on.
 *   listener (rep side): a session per pipe, in a table by pipe id. The
 *     first message of a pipe must be msg1, then msg3; a refused handshake
 *     gets a plain five-byte refusal (so the dialer can say why) and the
 *     pipe is closed soon after. After the handshake every message must be
 *     the next sealed frame; any refusal closes the pipe at once.
 *
 * Nothing but the fixed-size handshake fields is read before it is
 * authenticated, and a pipe costs the listener one table entry and one
 * handshake (no allocation grows with what a peer sends). Messages that
 * come before a pipe's msg1 (frames a dialer had queued for its previous
 * pipe) are dropped and counted, and the pipe is closed after
 * LK_EARLY_MAX of them.
 *
 * Errors the callers see on their aios: NNG codes, as with NNG's own
 * contexts: NNG_ETIMEDOUT (no session in time, no reply in time),
 * NNG_ECONNRESET (the pipe carrying the request went away, or a frame
 * was refused), NNG_EPEERAUTH (the listener refused this side's key or
 * cluster, or this side refused the listener's key), NNG_ENOTSUP (the
 * listener speaks another link version), NNG_ECLOSED (ctx or socket
 * closed). lk_refusal() tells the last refusal in words.
 *
 * Threads: every function may be called from any thread; aio callbacks
 * run on NNG's task queue, never inline in the call that started them.
 * The trust callback runs on NNG's threads with this module's locks held:
 * it must not call back into it. The up callback runs with no lock held
 * (it may cancel aios), after the change it reports.
 */
#ifndef MRD_LINKIO_H
#define MRD_LINKIO_H

#include <nng/nng.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "link.h"

/* ------------------------------------------------------------- limits -- */

/* A pipe that has not finished its handshake by then is closed: a peer
 * cannot hold a listener's table entry without proving an identity. Five
 * seconds is many round trips between regions. */
#define LK_HANDSHAKE_TIMEOUT_MS 5000u
/* How long a refused pipe stays open so its refusal reaches the dialer. */
#define LK_REFUSED_LINGER_MS 200u
/* Period of the sweep that enforces the two times above. */
#define LK_SWEEP_MS 250u
/* A dialer socket (lk_dial) with no session this long starts one more NNG
 * dialer (NNG 1.5.2 can leave one stuck for good): longer than twice the
 * NNG_OPT_RECONNMAXT of every socket here (at most 2 s), so a dialer that
 * works has had two tries first. Each further one in the same outage waits
 * twice as long, up to 2^LK_REDIAL_DOUBLINGS times; LK_REDIALS_MAX in a
 * socket's life bounds the dialers a flapping peer can leave behind. */
#define LK_REDIAL_AFTER_MS 5000u
#define LK_REDIAL_DOUBLINGS 6u
#define LK_REDIALS_MAX 32u
/* Pipes a listener holds at once; more are closed as they come. Each costs
 * about 600 bytes and a socket; clients, pullers and gossip of a large
 * cluster stay far below. */
#define LK_PIPES_MAX 8192u
/* Messages before msg1 a listener drops before it closes the pipe: a dialer
 * whose previous pipe died may have had that many queued in NNG. */
#define LK_EARLY_MAX 64u
/* Authenticated requests a listener holds for its contexts; when full it
 * stops receiving until a context takes one (back-pressure to TCP). */
#define LK_QUEUE_MAX 1024u
/* Messages NNG may hold in a socket's send queue. A sealed frame that does
 * not fit burns its counter, so the pipe is closed; callers keep far fewer
 * requests in flight per socket. */
#define LK_SENDBUF 1024
/* Requests a dialer has on the wire at once per pipe; more wait in linkio
 * for replies. NNG 1.5.2's xrep0 holds at most 64 replies per pipe and
 * drops the next one, which would break the session's counter order: with
 * at most 64 requests out, a pipe never has more replies than that to
 * hold. A request parked at the node (a long-poll) keeps its slot, so the
 * client library sends long-polls on a link of their own. */
#define LK_INFLIGHT_MAX 64u
/* Largest SP header a listener keeps for a reply: the pipe id and NNG's
 * default of at most 8 hops of backtrace. */
#define LK_HEADER_MAX 40u
/* The plain refusal a listener sends for a refused handshake. */
#define LK_REFUSAL_SIZE 5u
#define LK_REFUSAL_TYPE 0xeeu
/* NNG_OPT_RECVMAXSZ for a socket whose sessions carry frames of up to
 * frame_max plaintext bytes: the seal's overhead and the SP header. */
#define LK_RECV_MAX(frame_max)                                                 \
    ((size_t) (frame_max) + LINK_FRAME_OVERHEAD + LK_HEADER_MAX)

/* Why a pipe was refused or closed; also the wire code of a refusal. */
enum lk_reason {
    LK_R_MALFORMED = 0, /* a handshake message of the wrong shape */
    LK_R_VERSION   = 1, /* another link version */
    LK_R_CLUSTER   = 2, /* msg1 of another cluster */
    LK_R_UNTRUSTED = 3, /* a valid identity the trust callback refused */
    LK_R_FRAME     = 4, /* a frame replayed, reordered, truncated, altered */
    LK_R_EARLY     = 5, /* a message before the handshake */
    LK_R_TIMEOUT   = 6, /* the handshake did not finish in time */
    LK_R_REVOKED   = 7, /* the peer's key stopped being trusted */
    LK_R_OVERFLOW  = 8, /* too many pipes, or a full send queue */
    LK_R_COUNT_
};

/* Counters; one may be shared by several sockets. */
struct lk_stats {
    atomic_uint_fast64_t sessions; /* handshakes completed */
    atomic_uint_fast64_t refused[LK_R_COUNT_];
    /* Dialer pipes closed because they owed replies and answered nothing
     * for a whole request timeout (a blackholed connection). */
    atomic_uint_fast64_t stalled;
    /* Extra NNG dialers started for sockets left without a session. */
    atomic_uint_fast64_t redials;
};

/* "malformed", "version", ...: the counter names. */
const char *lk_reason_name(enum lk_reason r);

/* Called when the dialer's session comes up (up true) and when the pipe
 * of an established session goes away (up false). */
typedef void (*lk_up_fn)(void *arg, bool up);

struct lk_config {
    uint8_t          cluster_id[LINK_CLUSTER_ID_SIZE];
    uint8_t          pk[LINK_KEY_SIZE]; /* this side's identity */
    uint8_t          sk[LINK_SECRET_KEY_SIZE];
    link_trust_fn    trust; /* never NULL */
    void            *trust_arg;
    lk_up_fn         up; /* dialer only; may be NULL */
    void            *up_arg;
    struct lk_stats *stats; /* may be NULL */
    /* Largest plaintext per message, 1..LINK_FRAME_PLAIN_MAX. */
    size_t frame_max;
};

struct lk_sock;
struct lk_ctx;

/* Opens a dialer (raw req0) or a listener (raw rep0). The config is
 * copied (keys included; wiped by lk_free). Options such as reconnect
 * times and NNG_OPT_RECVMAXSZ are set on lk_nng() before dialing. MRD_OK,
 * MRD_EINVAL, MRD_ENOMEM or MRD_EINTERNAL. */
MRD_MUST_USE int lk_open_dialer(
    const struct lk_config *cfg, struct lk_sock **out);
MRD_MUST_USE int lk_open_listener(
    const struct lk_config *cfg, struct lk_sock **out);

/* The NNG socket, for options, dial and listen. */
nng_socket lk_nng(const struct lk_sock *s);

/* Dials url in the background (NNG_FLAG_NONBLOCK), once per socket, and
 * keeps the address so the socket can dial it again when NNG's own dialer
 * is stuck (LK_REDIAL_AFTER_MS). An NNG error code: 0, NNG_EINVAL (a
 * listener), NNG_EBUSY (dialed already), NNG_ENOMEM, or nng_dial's. */
int lk_dial(struct lk_sock *s, const char *url);

/* Dialer: true while a session is established. */
bool lk_is_up(struct lk_sock *s);

/* The last refusal this socket met (by the other side, or of the other
 * side), as words with the peer's address; "" when none. */
void lk_refusal(struct lk_sock *s, char *buf, size_t cap);

/* Asks the trust callback again about every established session's peer
 * and closes the pipes of those it refuses now (counted as revoked). */
void lk_revalidate(struct lk_sock *s);

/* Fails every pending operation with NNG_ECLOSED, stops receiving and
 * calls the up callback no more (one running may finish);
 * then the caller closes lk_nng() (which may hang in NNG 1.5.2, so the
 * callers bound it) and, if that returned, lk_free(). */
void lk_shutdown(struct lk_sock *s);
void lk_free(struct lk_sock *s);

/* Contexts: one request at a time each, as NNG's. */
MRD_MUST_USE int lk_ctx_open(struct lk_sock *s, struct lk_ctx **out);
/* Pending operations end with NNG_ECLOSED. */
void lk_ctx_close(struct lk_ctx *c);
/* Dialer: sends the request in the aio's message (its body; consumed on
 * success). Listener: sends the reply to the request last received. */
void lk_ctx_send(struct lk_ctx *c, nng_aio *aio);
/* Dialer: the reply to the last request sent. Listener: the next request;
 * lk_ctx_peer() then names who sent it. */
void lk_ctx_recv(struct lk_ctx *c, nng_aio *aio);
/* Listener: the long-term key of the last request's sender. */
const uint8_t *lk_ctx_peer(const struct lk_ctx *c);

#endif
