/*
 * linkio.c: secure links on raw NNG req/rep sockets (linkio.h says why raw).
 *
 * Locks: the socket's mtx guards the pipe table, the contexts and their
 * waiting aios, the listener's request queue and the dialer's current
 * pipe. A pipe's mtx guards its handshake, its session and its state, and
 * is held from seal to nng_sendmsg so frames enter NNG in counter order.
 * Order: socket, then pipe; the receive path opens a frame under the pipe's
 * lock alone and takes the socket's after releasing it.
 */
#include "linkio.h"

#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define LK_BUCKETS 256u

enum lk_pstate {
    LKP_HS = 0, /* listener: waiting for msg1 or msg3; dialer: for msg2 */
    LKP_WELCOME, /* dialer: msg3 sent, waiting for the welcome frame */
    LKP_UP, /* session established */
    LKP_REFUSED, /* listener: refusal sent, closing soon */
    LKP_DEAD, /* a frame was refused; the pipe is being closed */
};

struct lk_pipe {
    struct lk_pipe *next; /* hash chain (socket mtx) */
    uint32_t        id;
    nng_pipe        pipe;
    int             refs; /* socket mtx; the table holds one */
    pthread_mutex_t mtx;
    enum lk_pstate  state;
    uint64_t        since_ms; /* when the state began */
    uint32_t        early; /* messages before msg1 */
    uint32_t        outstanding; /* dialer: requests out (socket mtx) */
    /* dialer, socket mtx: replies received; closed as stalled */
    uint64_t            replies;
    bool                stall_closed;
    struct link_hs      hs;
    struct link_session ses;
};

/* A listener's authenticated request, waiting for a context. */
struct lk_req {
    struct lk_req *next;
    nng_msg       *msg; /* plaintext body */
    uint32_t       pipe_id;
    uint8_t        hdr[LK_HEADER_MAX];
    size_t         hdr_len;
    uint8_t        peer[LINK_KEY_SIZE];
};

struct lk_ctx {
    struct lk_sock *s;
    struct lk_ctx  *prev, *next; /* every open ctx */
    struct lk_ctx  *wnext; /* send waiters (dialer), recv waiters (listener) */
    nng_aio        *send_aio; /* dialer: waiting for a session */
    nng_aio        *recv_aio; /* waiting for a reply or a request */
    /* dialer */
    uint32_t req_id;
    uint32_t req_pipe;
    bool     awaiting;
    /* The pipe and its reply count when the request went out, or began
     * to wait for a slot (lk_stall_check). */
    uint32_t mark_pipe;
    uint64_t mark_replies;
    nng_msg *reply;
    int      reply_err;
    /* listener: the request last received */
    uint32_t pipe_id;
    uint8_t  hdr[LK_HEADER_MAX];
    size_t   hdr_len;
    uint8_t  peer[LINK_KEY_SIZE];
};

struct lk_sock {
    nng_socket         sock;
    bool               dialer;
    struct lk_config   cfg;
    struct link_config lcfg;
    pthread_mutex_t    mtx;
    struct lk_pipe    *buckets[LK_BUCKETS];
    size_t             npipes;
    nng_aio           *rx_aio;
    nng_aio           *sweep_aio;
    bool               rx_paused;
    bool               rx_armed; /* a receive is pending on rx_aio */
    bool               closing;
    struct lk_ctx     *ctxs;
    struct lk_ctx     *wait_head, *wait_tail;
    /* dialer */
    struct lk_pipe *cur;
    /* lk_dial's address, and the redial workaround (lk_sweep_redial) */
    char       *url;
    uint64_t    next_redial_ms; /* 0: a session is up, or no lk_dial yet */
    uint32_t    outage_redials; /* extra dialers since the session was lost */
    uint32_t    redials; /* extra dialers in all */
    atomic_uint next_id; /* any lock, or none */
    /* listener */
    struct lk_req *q_head, *q_tail;
    size_t         q_len;
    char           refusal[160];
};

static const char *const lk_reason_names[LK_R_COUNT_] = {
    [LK_R_MALFORMED] = "malformed",
    [LK_R_VERSION]   = "version",
    [LK_R_CLUSTER]   = "cluster",
    [LK_R_UNTRUSTED] = "untrusted",
    [LK_R_FRAME]     = "frame",
    [LK_R_EARLY]     = "early",
    [LK_R_TIMEOUT]   = "timeout",
    [LK_R_REVOKED]   = "revoked",
    [LK_R_OVERFLOW]  = "overflow",
};

const char *
lk_reason_name(enum lk_reason r)
{
    return (unsigned) r < LK_R_COUNT_ ? lk_reason_names[r] : "unknown";
}

static void
lk_count(struct lk_sock *s, enum lk_reason r)
{
    if (s->cfg.stats != NULL) {
        atomic_fetch_add(&s->cfg.stats->refused[r], 1);
    }
}

/* Words for a refusal, kept for lk_refusal(). Socket mtx held. */
static void
lk_note(struct lk_sock *s, const char *who, enum lk_reason r, const char *why)
{
    snprintf(s->refusal, sizeof(s->refusal), "%s (%s): %s", who,
        lk_reason_name(r), why != NULL ? why : "refused");
}

/* ------------------------------------------------------------- pipes -- */

static struct lk_pipe *
lk_pipe_get(struct lk_sock *s, uint32_t id)
{
    for (struct lk_pipe *p = s->buckets[id % LK_BUCKETS]; p != NULL;
         p                 = p->next) {
        if (p->id == id) {
            return p;
        }
    }
    return NULL;
}

/* The entry with a reference, or NULL. */
static struct lk_pipe *
lk_pipe_ref(struct lk_sock *s, uint32_t id)
{
    pthread_mutex_lock(&s->mtx);
    struct lk_pipe *p = lk_pipe_get(s, id);
    if (p != NULL) {
        p->refs++;
    }
    pthread_mutex_unlock(&s->mtx);
    return p;
}

static void
lk_pipe_unref_locked(struct lk_pipe *p)
{
    MRD_ASSERT(p->refs > 0);
    if (--p->refs == 0) {
        link_hs_wipe(&p->hs);
        link_session_wipe(&p->ses);
        pthread_mutex_destroy(&p->mtx);
        free(p);
    }
}

static void
lk_pipe_unref(struct lk_sock *s, struct lk_pipe *p)
{
    pthread_mutex_lock(&s->mtx);
    lk_pipe_unref_locked(p);
    pthread_mutex_unlock(&s->mtx);
}

/* Sends a plain handshake message (or refusal) with header hdr. */
static int
lk_send_plain(struct lk_sock *s, const uint8_t *hdr, size_t hdr_len,
    const uint8_t *body, size_t len)
{
    nng_msg *m;
    if (nng_msg_alloc(&m, len) != 0) {
        return -1;
    }
    memcpy(nng_msg_body(m), body, len);
    if (nng_msg_header_append(m, hdr, hdr_len) != 0
        || nng_sendmsg(s->sock, m, NNG_FLAG_NONBLOCK) != 0) {
        nng_msg_free(m);
        return -1;
    }
    return 0;
}

/* Seals body into a frame and hands it to NNG with header hdr. Pipe mtx
 * held. 0, or -1 when the pipe must be closed. */
static int
lk_send_sealed(struct lk_sock *s, struct lk_pipe *p, const uint8_t *hdr,
    size_t hdr_len, const uint8_t *body, size_t len)
{
    nng_msg *m;
    size_t   out_len = 0;
    if (nng_msg_alloc(&m, len + LINK_FRAME_OVERHEAD) != 0) {
        return -1;
    }
    if (link_seal(
            &p->ses, body, len, nng_msg_body(m), nng_msg_len(m), &out_len, NULL)
            != MRD_OK
        || nng_msg_header_append(m, hdr, hdr_len) != 0) {
        nng_msg_free(m);
        return -1;
    }
    if (nng_sendmsg(s->sock, m, NNG_FLAG_NONBLOCK) != 0) {
        /* The counter is spent: the peer would refuse the next frame. */
        nng_msg_free(m);
        lk_count(s, LK_R_OVERFLOW);
        return -1;
    }
    return 0;
}

static void
lk_put_u32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t) (v >> 24);
    b[1] = (uint8_t) (v >> 16);
    b[2] = (uint8_t) (v >> 8);
    b[3] = (uint8_t) v;
}

static uint32_t
lk_get_u32(const uint8_t *b)
{
    return ((uint32_t) b[0] << 24) | ((uint32_t) b[1] << 16)
        | ((uint32_t) b[2] << 8) | (uint32_t) b[3];
}

/* A dialer's next request id: the SP backtrace word, top bit set. */
static uint32_t
lk_next_id(struct lk_sock *s)
{
    return (atomic_fetch_add(&s->next_id, 1) + 1u) | 0x80000000u;
}

/* -------------------------------------------------------- pipe events -- */

static void
lk_pipe_add(struct lk_sock *s, nng_pipe pipe)
{
    uint32_t id = (uint32_t) nng_pipe_id(pipe);
    uint8_t  seed[LINK_SEED_SIZE];
    uint8_t  msg1[LINK_MSG1_SIZE];
    uint8_t  hdr[4];

    pthread_mutex_lock(&s->mtx);
    /* A dialer keeps one pipe, but not one it has given up on: a pipe it
     * closed (refused, late, stalled) normally leaves at once with its
     * REM_POST, yet NNG 1.5.2 can hold that back (a close on a blackholed
     * connection), and a current pipe that never leaves would refuse every
     * new pipe for good: the peer looks down forever (the chaos suite saw
     * a node every peer held dead after the faults healed). Such a pipe is
     * dropped as current here; its removal, if it ever comes, still fails
     * what was in flight on it. */
    bool stale_cur = false;
    if (s->dialer && s->cur != NULL) {
        pthread_mutex_lock(&s->cur->mtx);
        stale_cur = s->cur->state == LKP_DEAD || s->cur->stall_closed;
        pthread_mutex_unlock(&s->cur->mtx);
    }
    if (s->closing || (s->dialer && s->cur != NULL && !stale_cur)
        || s->npipes >= LK_PIPES_MAX) {
        if (!s->dialer && !s->closing) {
            lk_count(s, LK_R_OVERFLOW);
        }
        pthread_mutex_unlock(&s->mtx);
        nng_pipe_close(pipe);
        return;
    }
    struct lk_pipe *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        pthread_mutex_unlock(&s->mtx);
        nng_pipe_close(pipe);
        return;
    }
    pthread_mutex_init(&p->mtx, NULL);
    p->id       = id;
    p->pipe     = pipe;
    p->refs     = 1;
    p->state    = LKP_HS;
    p->since_ms = mrd_now_mono_ms();
    randombytes_buf(seed, sizeof(seed));
    if (s->dialer) {
        link_hs_initiate(&p->hs, &s->lcfg, seed, msg1);
    } else {
        link_hs_respond(&p->hs, &s->lcfg, seed);
    }
    sodium_memzero(seed, sizeof(seed));
    p->next                     = s->buckets[id % LK_BUCKETS];
    s->buckets[id % LK_BUCKETS] = p;
    s->npipes++;
    if (s->dialer) {
        s->cur = p;
        lk_put_u32(hdr, lk_next_id(s));
        if (lk_send_plain(s, hdr, sizeof(hdr), msg1, sizeof(msg1)) != 0) {
            nng_pipe_close(pipe); /* the removal cleans up */
        }
    }
    pthread_mutex_unlock(&s->mtx);
}

/* Fails every dialer request in flight on pipe id. Socket mtx held;
 * returns the aios to finish after unlocking, chained through a list. */
static size_t
lk_fail_inflight(struct lk_sock *s, uint32_t id, nng_aio **aios, size_t cap)
{
    size_t n = 0;
    for (struct lk_ctx *c = s->ctxs; c != NULL; c = c->next) {
        if (!c->awaiting || c->req_pipe != id) {
            continue;
        }
        c->awaiting  = false;
        c->reply_err = NNG_ECONNRESET;
        if (c->recv_aio != NULL && n < cap) {
            aios[n++]   = c->recv_aio;
            c->recv_aio = NULL;
        }
    }
    return n;
}

static void
lk_pipe_rem(struct lk_sock *s, nng_pipe pipe)
{
    uint32_t id = (uint32_t) nng_pipe_id(pipe);
    nng_aio *aios[64];
    size_t   n      = 0;
    bool     was_up = false;
    lk_up_fn up     = NULL;
    void    *up_arg = NULL;

    pthread_mutex_lock(&s->mtx);
    struct lk_pipe **pp = &s->buckets[id % LK_BUCKETS];
    while (*pp != NULL && (*pp)->id != id) {
        pp = &(*pp)->next;
    }
    struct lk_pipe *p = *pp;
    if (p == NULL) {
        pthread_mutex_unlock(&s->mtx);
        return;
    }
    *pp = p->next;
    s->npipes--;
    if (s->dialer) {
        if (s->cur == p) {
            s->cur = NULL;
            if (s->url != NULL && s->next_redial_ms == 0) {
                s->next_redial_ms = mrd_now_mono_ms() + LK_REDIAL_AFTER_MS;
            }
        }
        pthread_mutex_lock(&p->mtx);
        was_up   = p->state == LKP_UP;
        p->state = LKP_DEAD;
        pthread_mutex_unlock(&p->mtx);
        /* More than 64 ctxs in flight: the rest see reply_err on recv. */
        n      = lk_fail_inflight(s, id, aios, 64);
        up     = s->cfg.up;
        up_arg = s->cfg.up_arg;
    }
    lk_pipe_unref_locked(p);
    pthread_mutex_unlock(&s->mtx);
    if (was_up && up != NULL) {
        up(up_arg, false);
    }
    for (size_t i = 0; i < n; i++) {
        nng_aio_finish(aios[i], NNG_ECONNRESET);
    }
}

/* A listener's entry is made at ADD_PRE: NNG starts the pipe before
 * ADD_POST runs, so a dialer's msg1 could otherwise come before its entry
 * and be lost. A dialer's is made at ADD_POST, where msg1 can leave. */
static void
lk_pipe_cb(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    struct lk_sock *s = arg;
    if ((ev == NNG_PIPE_EV_ADD_PRE && !s->dialer)
        || (ev == NNG_PIPE_EV_ADD_POST && s->dialer)) {
        lk_pipe_add(s, pipe);
    } else if (ev == NNG_PIPE_EV_REM_POST) {
        lk_pipe_rem(s, pipe);
    }
}

/* ------------------------------------------------------------- cancel -- */

static void
lk_wait_remove(struct lk_sock *s, struct lk_ctx *c)
{
    struct lk_ctx **pp   = &s->wait_head;
    struct lk_ctx  *prev = NULL;
    while (*pp != NULL && *pp != c) {
        prev = *pp;
        pp   = &(*pp)->wnext;
    }
    if (*pp == NULL) {
        return;
    }
    *pp = c->wnext;
    if (s->wait_tail == c) {
        s->wait_tail = prev;
    }
    c->wnext = NULL;
}

static void
lk_wait_push(struct lk_sock *s, struct lk_ctx *c)
{
    c->wnext = NULL;
    if (s->wait_tail != NULL) {
        s->wait_tail->wnext = c;
    } else {
        s->wait_head = c;
    }
    s->wait_tail = c;
}

/* A dialer request timed out; when it went out (or began to wait for a
 * slot), pipe mark_pipe had received mark_replies replies. When that pipe
 * is still current, owes replies, and nothing at all came back on it
 * since, the pipe is stalled: a blackholed TCP
 * connection stays open, and its requests would hold every slot on the
 * wire for good, so no request could go out again even after the network
 * heals. Closing the pipe frees them; NNG dials again. A pipe that still
 * answers something is slow, not stalled, and is kept. Socket mtx held. */
static void
lk_stall_check(struct lk_sock *s, const struct lk_ctx *c)
{
    struct lk_pipe *p = s->cur;
    if (p == NULL || p->id != c->mark_pipe || p->outstanding == 0
        || p->replies != c->mark_replies) {
        return;
    }
    if (p->stall_closed) {
        return; /* closing already */
    }
    p->stall_closed = true;
    if (s->cfg.stats != NULL) {
        atomic_fetch_add(&s->cfg.stats->stalled, 1);
    }
    /* Redial if no new session comes (lk_sweep_redial), even when this
     * pipe's removal is held back. */
    if (s->url != NULL && s->next_redial_ms == 0) {
        s->next_redial_ms = mrd_now_mono_ms() + LK_REDIAL_AFTER_MS;
    }
    /* The removal fails what is in flight and tells the up callback. */
    nng_pipe_close(p->pipe);
}

/* NNG's cancel (or timeout) of an aio waiting in this module. */
static void
lk_cancel(nng_aio *aio, void *arg, int err)
{
    struct lk_sock *s     = arg;
    bool            found = false;

    pthread_mutex_lock(&s->mtx);
    for (struct lk_ctx *c = s->ctxs; c != NULL; c = c->next) {
        if (c->send_aio == aio) {
            c->send_aio = NULL;
            lk_wait_remove(s, c);
            /* Waited for a slot on a full pipe that answered nothing. */
            if (s->dialer && err == NNG_ETIMEDOUT && s->cur != NULL
                && s->cur->outstanding >= LK_INFLIGHT_MAX) {
                lk_stall_check(s, c);
            }
            found = true;
            break;
        }
        if (c->recv_aio == aio) {
            c->recv_aio = NULL;
            if (!s->dialer) {
                lk_wait_remove(s, c);
            } else if (err == NNG_ETIMEDOUT && c->awaiting) {
                lk_stall_check(s, c);
            }
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&s->mtx);
    if (found) {
        nng_aio_finish(aio, err);
    }
}

/* ------------------------------------------------------- dialer side -- */

/* Seals and sends c's request (the aio's message). Socket mtx held, a
 * session up. The aio's result: 0, or NNG_ECONNRESET when the pipe had to
 * be closed. */
static int
lk_submit(struct lk_sock *s, struct lk_ctx *c, nng_aio *aio)
{
    struct lk_pipe *p   = s->cur;
    nng_msg        *msg = nng_aio_get_msg(aio);
    uint8_t         hdr[4];
    uint32_t        id = lk_next_id(s);
    int             rv;

    MRD_ASSERT(p != NULL && msg != NULL);
    lk_put_u32(hdr, id);
    pthread_mutex_lock(&p->mtx);
    rv = p->state == LKP_UP ? lk_send_sealed(
             s, p, hdr, sizeof(hdr), nng_msg_body(msg), nng_msg_len(msg))
                            : -1;
    pthread_mutex_unlock(&p->mtx);
    if (rv != 0) {
        nng_pipe_close(p->pipe);
        return NNG_ECONNRESET;
    }
    nng_msg_free(msg);
    nng_aio_set_msg(aio, NULL);
    c->req_id       = id;
    c->req_pipe     = p->id;
    c->awaiting     = true;
    c->mark_pipe    = p->id;
    c->mark_replies = p->replies;
    p->outstanding++;
    return 0;
}

/* The session is up: sends every request that waited for it, in order.
 * Socket mtx held; fills aios/rvs to finish after unlocking. */
static size_t
lk_flush(struct lk_sock *s, nng_aio **aios, int *rvs, size_t cap)
{
    size_t n = 0;
    while (s->wait_head != NULL && n < cap && s->cur != NULL
        && s->cur->outstanding < LK_INFLIGHT_MAX) {
        struct lk_ctx *c = s->wait_head;
        s->wait_head     = c->wnext;
        if (s->wait_head == NULL) {
            s->wait_tail = NULL;
        }
        c->wnext    = NULL;
        nng_aio *a  = c->send_aio;
        c->send_aio = NULL;
        rvs[n]      = lk_submit(s, c, a);
        aios[n++]   = a;
    }
    return n;
}

/* A plain refusal from the listener: words, and the error to give. */
static int
lk_dialer_refused(
    struct lk_sock *s, const uint8_t *body, size_t len, const char *url)
{
    enum lk_reason r
        = body[4] < LK_R_COUNT_ ? (enum lk_reason) body[4] : LK_R_MALFORMED;
    (void) len;
    pthread_mutex_lock(&s->mtx);
    lk_note(s, url, r,
        r == LK_R_UNTRUSTED     ? "the node does not trust this key"
            : r == LK_R_CLUSTER ? "the node belongs to another cluster"
            : r == LK_R_VERSION ? "the node speaks another link version"
                                : "the node refused the handshake");
    pthread_mutex_unlock(&s->mtx);
    return r == LK_R_VERSION ? NNG_ENOTSUP : NNG_EPEERAUTH;
}

/* Fails every request waiting for a session with err. */
static void
lk_fail_waiting(struct lk_sock *s, int err)
{
    nng_aio *aios[64];
    size_t   n = 0;
    pthread_mutex_lock(&s->mtx);
    while (s->wait_head != NULL && n < 64) {
        struct lk_ctx *c = s->wait_head;
        s->wait_head     = c->wnext;
        if (s->wait_head == NULL) {
            s->wait_tail = NULL;
        }
        c->wnext    = NULL;
        aios[n++]   = c->send_aio;
        c->send_aio = NULL;
    }
    pthread_mutex_unlock(&s->mtx);
    for (size_t i = 0; i < n; i++) {
        nng_aio_finish(aios[i], err);
    }
}

/* "node 127.0.0.1:7400", for words about a refusal. */
static void
lk_peer_name(struct lk_pipe *p, char *buf, size_t cap)
{
    nng_sockaddr sa;
    snprintf(buf, cap, "node");
    if (nng_pipe_get_addr(p->pipe, NNG_OPT_REMADDR, &sa) == 0
        && sa.s_family == NNG_AF_INET) {
        const uint8_t *a    = (const uint8_t *) &sa.s_in.sa_addr;
        const uint8_t *port = (const uint8_t *) &sa.s_in.sa_port;
        snprintf(buf, cap, "node %u.%u.%u.%u:%u", a[0], a[1], a[2], a[3],
            ((unsigned) port[0] << 8) | port[1]);
    }
}

static bool
lk_is_refusal(const uint8_t *b, size_t len)
{
    return len == LK_REFUSAL_SIZE && b[0] == LINK_MAGIC0 && b[1] == LINK_MAGIC1
        && b[3] == LK_REFUSAL_TYPE;
}

/* Opens a sealed frame in place: msg's body becomes the plaintext. A reply
 * can be 4 MiB: a second buffer per frame would cost a copy and, for
 * buffers that large, fresh pages from the kernel each time (measured in
 * docs/benchmarks.md, "Reads"). Pipe mtx held. */
static int
lk_open_in_place(
    struct lk_pipe *p, nng_msg *msg, size_t *plen, const char **why)
{
    uint8_t *body = nng_msg_body(msg);
    size_t   len  = nng_msg_len(msg);
    if (len < LINK_CTR_SIZE) {
        *why = "link frame truncated";
        return MRD_EPROTO;
    }
    int rv = link_open(&p->ses, body, len, body + LINK_CTR_SIZE,
        len - LINK_CTR_SIZE, plen, why);
    if (rv == MRD_OK) {
        nng_msg_trim(msg, LINK_CTR_SIZE);
        nng_msg_chop(msg, len - LINK_CTR_SIZE - *plen);
    }
    return rv;
}

/* Takes *msgp when it hands it on (sets it to NULL). */
static void
lk_dialer_rx(struct lk_sock *s, struct lk_pipe *p, nng_msg **msgp)
{
    nng_msg       *msg  = *msgp;
    const uint8_t *body = nng_msg_body(msg);
    size_t         len  = nng_msg_len(msg);
    const char    *why  = NULL;
    char           url[64];

    pthread_mutex_lock(&p->mtx);
    enum lk_pstate st = p->state;
    if ((st == LKP_HS || st == LKP_WELCOME) && lk_is_refusal(body, len)) {
        p->state = LKP_DEAD;
        pthread_mutex_unlock(&p->mtx);
        lk_peer_name(p, url, sizeof(url));
        int err = lk_dialer_refused(s, body, len, url);
        nng_pipe_close(p->pipe);
        lk_fail_waiting(s, err);
        return;
    }
    if (st == LKP_HS) {
        uint8_t msg3[LINK_MSG3_SIZE];
        int     rv = link_hs_recv_msg2(&p->hs, body, len, msg3, &p->ses, &why);
        if (rv != MRD_OK) {
            p->state = LKP_DEAD;
            pthread_mutex_unlock(&p->mtx);
            enum lk_reason r = rv == MRD_EAUTH ? LK_R_UNTRUSTED
                : rv == MRD_EPROTOVERSION      ? LK_R_VERSION
                                               : LK_R_MALFORMED;
            lk_count(s, r);
            lk_peer_name(p, url, sizeof(url));
            pthread_mutex_lock(&s->mtx);
            lk_note(s, url, r, why);
            pthread_mutex_unlock(&s->mtx);
            nng_pipe_close(p->pipe);
            lk_fail_waiting(s, r == LK_R_VERSION ? NNG_ENOTSUP : NNG_EPEERAUTH);
            return;
        }
        uint8_t hdr[4];
        lk_put_u32(hdr, lk_next_id(s));
        p->state    = LKP_WELCOME;
        p->since_ms = mrd_now_mono_ms();
        if (lk_send_plain(s, hdr, sizeof(hdr), msg3, sizeof(msg3)) != 0) {
            p->state = LKP_DEAD;
            nng_pipe_close(p->pipe);
        }
        pthread_mutex_unlock(&p->mtx);
        return;
    }
    if (st != LKP_WELCOME && st != LKP_UP) {
        pthread_mutex_unlock(&p->mtx);
        return; /* closing */
    }
    /* A sealed frame: the welcome, or a reply. */
    size_t plen = 0;
    int    rv   = lk_open_in_place(p, msg, &plen, &why);
    if (rv != MRD_OK || (st == LKP_WELCOME && plen != 0)
        || (st == LKP_UP && nng_msg_header_len(msg) != 4)) {
        p->state = LKP_DEAD;
        pthread_mutex_unlock(&p->mtx);
        lk_count(s, LK_R_FRAME);
        nng_pipe_close(p->pipe);
        return;
    }
    if (st == LKP_WELCOME) {
        p->state    = LKP_UP;
        p->since_ms = mrd_now_mono_ms();
        pthread_mutex_unlock(&p->mtx);
        if (s->cfg.stats != NULL) {
            atomic_fetch_add(&s->cfg.stats->sessions, 1);
        }
        nng_aio *aios[64];
        int      rvs[64];
        size_t   n;
        pthread_mutex_lock(&s->mtx);
        lk_up_fn up       = s->cfg.up;
        void    *up_arg   = s->cfg.up_arg;
        s->next_redial_ms = 0; /* the dialer works */
        s->outage_redials = 0;
        pthread_mutex_unlock(&s->mtx);
        if (up != NULL) {
            up(up_arg, true);
        }
        pthread_mutex_lock(&s->mtx);
        do {
            n = lk_flush(s, aios, rvs, 64);
            pthread_mutex_unlock(&s->mtx);
            for (size_t i = 0; i < n; i++) {
                nng_aio_finish(aios[i], rvs[i]);
            }
            pthread_mutex_lock(&s->mtx);
        } while (n == 64);
        pthread_mutex_unlock(&s->mtx);
        return;
    }
    pthread_mutex_unlock(&p->mtx);
    uint32_t id = lk_get_u32(nng_msg_header(msg));
    nng_msg_header_clear(msg);
    nng_msg *plain = msg; /* the reply, as the caller gets it */
    *msgp          = NULL;
    nng_aio *done  = NULL;
    nng_aio *sent[LK_INFLIGHT_MAX];
    int      rvs[LK_INFLIGHT_MAX];
    size_t   n_sent = 0;
    pthread_mutex_lock(&s->mtx);
    /* Every request gets one reply: a slot on the wire is free again. */
    if (p->outstanding > 0) {
        p->outstanding--;
    }
    p->replies++;
    if (s->cur == p) {
        n_sent = lk_flush(s, sent, rvs, LK_INFLIGHT_MAX);
    }
    for (struct lk_ctx *c = s->ctxs; c != NULL; c = c->next) {
        if (!c->awaiting || c->req_id != id || c->req_pipe != p->id) {
            continue;
        }
        c->awaiting = false;
        if (c->recv_aio != NULL) {
            done        = c->recv_aio;
            c->recv_aio = NULL;
            nng_aio_set_msg(done, plain);
        } else {
            c->reply = plain;
        }
        plain = NULL;
        break;
    }
    pthread_mutex_unlock(&s->mtx);
    if (plain != NULL) {
        nng_msg_free(plain); /* a late reply: nobody waits for it */
    }
    if (done != NULL) {
        nng_aio_finish(done, 0);
    }
    for (size_t i = 0; i < n_sent; i++) {
        nng_aio_finish(sent[i], rvs[i]);
    }
}

/* ----------------------------------------------------- listener side -- */

/* Refuses a handshake: counts, answers with the reason, closes soon.
 * Pipe mtx held. */
static void
lk_refuse(struct lk_sock *s, struct lk_pipe *p, nng_msg *msg, enum lk_reason r)
{
    uint8_t out[LK_REFUSAL_SIZE] = { LINK_MAGIC0, LINK_MAGIC1,
        (uint8_t) LINK_VERSION, LK_REFUSAL_TYPE, (uint8_t) r };
    lk_count(s, r);
    p->state    = LKP_REFUSED;
    p->since_ms = mrd_now_mono_ms();
    link_hs_wipe(&p->hs);
    if (lk_send_plain(
            s, nng_msg_header(msg), nng_msg_header_len(msg), out, sizeof(out))
        != 0) {
        nng_pipe_close(p->pipe);
    }
}

/* Hands a request to a waiting ctx or queues it. Consumes req. */
static void
lk_deliver(struct lk_sock *s, struct lk_req *req)
{
    nng_aio *done = NULL;
    pthread_mutex_lock(&s->mtx);
    struct lk_ctx *c = s->wait_head;
    if (c != NULL) {
        s->wait_head = c->wnext;
        if (s->wait_head == NULL) {
            s->wait_tail = NULL;
        }
        c->wnext    = NULL;
        done        = c->recv_aio;
        c->recv_aio = NULL;
        c->pipe_id  = req->pipe_id;
        memcpy(c->hdr, req->hdr, req->hdr_len);
        c->hdr_len = req->hdr_len;
        memcpy(c->peer, req->peer, LINK_KEY_SIZE);
        nng_aio_set_msg(done, req->msg);
        free(req);
    } else {
        req->next = NULL;
        if (s->q_tail != NULL) {
            s->q_tail->next = req;
        } else {
            s->q_head = req;
        }
        s->q_tail = req;
        s->q_len++;
        if (s->q_len >= LK_QUEUE_MAX) {
            s->rx_paused = true;
        }
    }
    pthread_mutex_unlock(&s->mtx);
    if (done != NULL) {
        nng_aio_finish(done, 0);
    }
}

/* Takes *msgp when it hands it on (sets it to NULL). */
static void
lk_listener_rx(struct lk_sock *s, struct lk_pipe *p, nng_msg **msgp)
{
    nng_msg       *msg  = *msgp;
    const uint8_t *body = nng_msg_body(msg);
    size_t         len  = nng_msg_len(msg);
    const char    *why  = NULL;
    int            rv;

    if (nng_msg_header_len(msg) > LK_HEADER_MAX) {
        return; /* more hops than NNG allows by default: not ours */
    }
    pthread_mutex_lock(&p->mtx);
    switch (p->state) {
    case LKP_HS:
        if (p->hs.state == LINK_HS_WAIT1) {
            if (len < LINK_HDR_SIZE || body[0] != LINK_MAGIC0
                || body[1] != LINK_MAGIC1) {
                /* Not a handshake at all: most likely a frame queued for
                 * the dialer's previous pipe. */
                lk_count(s, LK_R_EARLY);
                if (++p->early > LK_EARLY_MAX) {
                    p->state = LKP_DEAD;
                    nng_pipe_close(p->pipe);
                }
                break;
            }
            uint8_t msg2[LINK_MSG2_SIZE];
            rv = link_hs_recv_msg1(&p->hs, body, len, msg2, &why);
            if (rv != MRD_OK) {
                lk_refuse(s, p, msg,
                    rv == MRD_EPROTOVERSION ? LK_R_VERSION
                        : rv == MRD_EAUTH   ? LK_R_CLUSTER
                                            : LK_R_MALFORMED);
                break;
            }
            if (lk_send_plain(s, nng_msg_header(msg), nng_msg_header_len(msg),
                    msg2, sizeof(msg2))
                != 0) {
                p->state = LKP_DEAD;
                nng_pipe_close(p->pipe);
            }
            break;
        }
        rv = link_hs_recv_msg3(&p->hs, body, len, &p->ses, &why);
        if (rv != MRD_OK) {
            lk_refuse(s, p, msg,
                rv == MRD_EAUTH               ? LK_R_UNTRUSTED
                    : rv == MRD_EPROTOVERSION ? LK_R_VERSION
                                              : LK_R_MALFORMED);
            break;
        }
        p->state    = LKP_UP;
        p->since_ms = mrd_now_mono_ms();
        if (s->cfg.stats != NULL) {
            atomic_fetch_add(&s->cfg.stats->sessions, 1);
        }
        static const uint8_t welcome[1]; /* sealed empty: no bytes read */
        if (lk_send_sealed(
                s, p, nng_msg_header(msg), nng_msg_header_len(msg), welcome, 0)
            != 0) {
            p->state = LKP_DEAD;
            nng_pipe_close(p->pipe);
        }
        break;
    case LKP_UP: {
        struct lk_req *req  = calloc(1, sizeof(*req));
        size_t         plen = 0;
        if (req == NULL) {
            p->state = LKP_DEAD; /* no memory: the request is lost, so is */
            nng_pipe_close(p->pipe); /* the counter order; the peer retries */
            break;
        }
        rv = lk_open_in_place(p, msg, &plen, &why);
        if (rv != MRD_OK) {
            free(req);
            lk_count(s, LK_R_FRAME);
            p->state = LKP_DEAD;
            nng_pipe_close(p->pipe);
            break;
        }
        req->pipe_id = p->id;
        req->hdr_len = nng_msg_header_len(msg);
        memcpy(req->hdr, nng_msg_header(msg), req->hdr_len);
        nng_msg_header_clear(msg);
        req->msg = msg;
        *msgp    = NULL;
        memcpy(req->peer, p->ses.peer_pk, LINK_KEY_SIZE);
        pthread_mutex_unlock(&p->mtx);
        lk_deliver(s, req);
        return;
    }
    case LKP_WELCOME:
    case LKP_REFUSED:
    case LKP_DEAD:
        /* Anything after a refusal: close now. */
        p->state = LKP_DEAD;
        nng_pipe_close(p->pipe);
        break;
    }
    pthread_mutex_unlock(&p->mtx);
}

/* ------------------------------------------------------------ receive -- */

/* Whether the caller should start the next receive (socket mtx held): one
 * at a time, since frames must be opened in wire order, and none while
 * paused or closing. */
static bool
lk_rx_claim_locked(struct lk_sock *s)
{
    if (s->closing || s->rx_paused || s->rx_armed) {
        return false;
    }
    s->rx_armed = true;
    return true;
}

static void
lk_rx_arm(struct lk_sock *s)
{
    nng_recv_aio(s->sock, s->rx_aio);
}

static void
lk_rx_cb(void *arg)
{
    struct lk_sock *s  = arg;
    int             rv = nng_aio_result(s->rx_aio);

    pthread_mutex_lock(&s->mtx);
    s->rx_armed = false;
    pthread_mutex_unlock(&s->mtx);
    if (rv != 0) {
        pthread_mutex_lock(&s->mtx);
        bool arm
            = rv != NNG_ECLOSED && rv != NNG_ECANCELED && lk_rx_claim_locked(s);
        pthread_mutex_unlock(&s->mtx);
        if (arm) {
            lk_rx_arm(s);
        }
        return;
    }
    nng_msg *msg = nng_aio_get_msg(s->rx_aio);
    nng_aio_set_msg(s->rx_aio, NULL);
    uint32_t        id = (uint32_t) nng_pipe_id(nng_msg_get_pipe(msg));
    struct lk_pipe *p  = lk_pipe_ref(s, id);
    if (p != NULL) {
        if (s->dialer) {
            lk_dialer_rx(s, p, &msg);
        } else {
            lk_listener_rx(s, p, &msg);
        }
        lk_pipe_unref(s, p);
    }
    if (msg != NULL) {
        nng_msg_free(msg);
    }
    pthread_mutex_lock(&s->mtx);
    bool arm = lk_rx_claim_locked(s);
    pthread_mutex_unlock(&s->mtx);
    if (arm) {
        lk_rx_arm(s);
    }
}

/* NNG 1.5.2 can leave a dialer that will never connect again, after a
 * connection that was accepted and then closed during its negotiation
 * (nanomsg/nng#970 and #1543; a proxy or a restarting peer does that). A
 * dialer socket with an address from lk_dial() and no session for
 * LK_REDIAL_AFTER_MS starts one more NNG dialer; the next waits twice as
 * long, and so on, so that a peer that is really down does not collect
 * dialers. Socket mtx held; true when the caller must dial (unlocked). */
static bool
lk_sweep_redial(struct lk_sock *s, uint64_t now)
{
    if (!s->dialer || s->url == NULL || s->next_redial_ms == 0
        || now < s->next_redial_ms || s->redials >= LK_REDIALS_MAX) {
        return false;
    }
    if (s->cur != NULL) {
        pthread_mutex_lock(&s->cur->mtx);
        bool up = s->cur->state == LKP_UP && !s->cur->stall_closed;
        pthread_mutex_unlock(&s->cur->mtx);
        if (up) {
            s->next_redial_ms = 0;
            return false;
        }
    }
    uint32_t shift    = s->outage_redials < LK_REDIAL_DOUBLINGS
           ? s->outage_redials + 1u
           : LK_REDIAL_DOUBLINGS;
    s->next_redial_ms = now + ((uint64_t) LK_REDIAL_AFTER_MS << shift);
    s->outage_redials++;
    s->redials++;
    if (s->cfg.stats != NULL) {
        atomic_fetch_add(&s->cfg.stats->redials, 1);
    }
    return true;
}

/* Closes pipes whose handshake is late and refused pipes that lingered;
 * dials again when the dialer looks stuck. */
static void
lk_sweep_cb(void *arg)
{
    struct lk_sock *s = arg;
    uint64_t        now;
    nng_pipe        close[64];
    size_t          n = 0;

    if (nng_aio_result(s->sweep_aio) == NNG_ECANCELED) {
        return;
    }
    now = mrd_now_mono_ms();
    pthread_mutex_lock(&s->mtx);
    if (s->closing) {
        pthread_mutex_unlock(&s->mtx);
        return;
    }
    for (size_t b = 0; b < LK_BUCKETS && n < 64; b++) {
        for (struct lk_pipe *p = s->buckets[b]; p != NULL && n < 64;
             p                 = p->next) {
            pthread_mutex_lock(&p->mtx);
            bool late = (p->state == LKP_HS || p->state == LKP_WELCOME)
                && now > p->since_ms + LK_HANDSHAKE_TIMEOUT_MS;
            bool linger = p->state == LKP_REFUSED
                && now > p->since_ms + LK_REFUSED_LINGER_MS;
            if (late) {
                lk_count(s, LK_R_TIMEOUT);
                /* As for a stalled pipe: redial unless a session comes,
                 * even if this pipe's removal is held back. */
                if (p == s->cur && s->url != NULL && s->next_redial_ms == 0) {
                    s->next_redial_ms = now + LK_REDIAL_AFTER_MS;
                }
            }
            if (late || linger) {
                p->state   = LKP_DEAD;
                close[n++] = p->pipe;
            }
            pthread_mutex_unlock(&p->mtx);
        }
    }
    bool redial = lk_sweep_redial(s, now);
    pthread_mutex_unlock(&s->mtx);
    for (size_t i = 0; i < n; i++) {
        nng_pipe_close(close[i]);
    }
    if (redial) {
        /* s->url is set once, before the first dial, and freed by lk_free
         * only, after this callback has stopped. */
        (void) nng_dial(s->sock, s->url, NULL, NNG_FLAG_NONBLOCK);
    }
    nng_sleep_aio(LK_SWEEP_MS, s->sweep_aio);
}

/* ------------------------------------------------------------- socket -- */

static int
lk_open(const struct lk_config *cfg, bool dialer, struct lk_sock **out)
{
    *out = NULL;
    if (cfg == NULL || cfg->trust == NULL || cfg->frame_max == 0
        || cfg->frame_max > LINK_FRAME_PLAIN_MAX) {
        return MRD_EINVAL;
    }
    struct lk_sock *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return MRD_ENOMEM;
    }
    s->dialer = dialer;
    s->cfg    = *cfg;
    memcpy(s->lcfg.cluster_id, cfg->cluster_id, LINK_CLUSTER_ID_SIZE);
    s->lcfg.pk        = s->cfg.pk;
    s->lcfg.sk        = s->cfg.sk;
    s->lcfg.trust     = cfg->trust;
    s->lcfg.trust_arg = cfg->trust_arg;
    s->lcfg.frame_max = cfg->frame_max;
    atomic_init(&s->next_id, randombytes_random());
    pthread_mutex_init(&s->mtx, NULL);
    int rv = dialer ? nng_req0_open_raw(&s->sock) : nng_rep0_open_raw(&s->sock);
    if (rv != 0) {
        pthread_mutex_destroy(&s->mtx);
        sodium_memzero(s, sizeof(*s));
        free(s);
        return rv == NNG_ENOMEM ? MRD_ENOMEM : MRD_EINTERNAL;
    }
    if (nng_socket_set_int(s->sock, NNG_OPT_SENDBUF, LK_SENDBUF) != 0
        || nng_socket_set_size(
               s->sock, NNG_OPT_RECVMAXSZ, LK_RECV_MAX(cfg->frame_max))
            != 0
        || nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_PRE, lk_pipe_cb, s) != 0
        || nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, lk_pipe_cb, s) != 0
        || nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, lk_pipe_cb, s) != 0
        || nng_aio_alloc(&s->rx_aio, lk_rx_cb, s) != 0
        || nng_aio_alloc(&s->sweep_aio, lk_sweep_cb, s) != 0) {
        /* The socket is left open: closing can hang in NNG 1.5.2, and a
         * failure here means no memory. */
        return MRD_ENOMEM;
    }
    s->rx_armed = true;
    lk_rx_arm(s);
    nng_sleep_aio(LK_SWEEP_MS, s->sweep_aio);
    *out = s;
    return MRD_OK;
}

int
lk_open_dialer(const struct lk_config *cfg, struct lk_sock **out)
{
    return lk_open(cfg, true, out);
}

int
lk_open_listener(const struct lk_config *cfg, struct lk_sock **out)
{
    return lk_open(cfg, false, out);
}

nng_socket
lk_nng(const struct lk_sock *s)
{
    return s->sock;
}

int
lk_dial(struct lk_sock *s, const char *url)
{
    if (!s->dialer || url == NULL) {
        return NNG_EINVAL;
    }
    pthread_mutex_lock(&s->mtx);
    if (s->url != NULL) {
        pthread_mutex_unlock(&s->mtx);
        return NNG_EBUSY; /* one address per socket */
    }
    s->url = strdup(url);
    if (s->url == NULL) {
        pthread_mutex_unlock(&s->mtx);
        return NNG_ENOMEM;
    }
    /* No session yet: a first dialer that never connects is stuck too. */
    s->next_redial_ms = mrd_now_mono_ms() + LK_REDIAL_AFTER_MS;
    pthread_mutex_unlock(&s->mtx);
    return nng_dial(s->sock, url, NULL, NNG_FLAG_NONBLOCK);
}

bool
lk_is_up(struct lk_sock *s)
{
    bool up = false;
    pthread_mutex_lock(&s->mtx);
    if (s->cur != NULL) {
        pthread_mutex_lock(&s->cur->mtx);
        up = s->cur->state == LKP_UP;
        pthread_mutex_unlock(&s->cur->mtx);
    }
    pthread_mutex_unlock(&s->mtx);
    return up;
}

void
lk_refusal(struct lk_sock *s, char *buf, size_t cap)
{
    pthread_mutex_lock(&s->mtx);
    snprintf(buf, cap, "%s", s->refusal);
    pthread_mutex_unlock(&s->mtx);
}

void
lk_revalidate(struct lk_sock *s)
{
    nng_pipe close[256];
    size_t   n = 0;
    pthread_mutex_lock(&s->mtx);
    for (size_t b = 0; b < LK_BUCKETS; b++) {
        for (struct lk_pipe *p = s->buckets[b]; p != NULL; p = p->next) {
            pthread_mutex_lock(&p->mtx);
            if (p->state == LKP_UP
                && !s->cfg.trust(s->cfg.trust_arg, p->ses.peer_pk)) {
                p->state = LKP_DEAD;
                lk_count(s, LK_R_REVOKED);
                if (n < 256) {
                    close[n++] = p->pipe;
                } else {
                    nng_pipe_close(p->pipe);
                }
            }
            pthread_mutex_unlock(&p->mtx);
        }
    }
    pthread_mutex_unlock(&s->mtx);
    for (size_t i = 0; i < n; i++) {
        nng_pipe_close(close[i]);
    }
}

void
lk_shutdown(struct lk_sock *s)
{
    pthread_mutex_lock(&s->mtx);
    s->closing = true;
    s->cfg.up  = NULL; /* its target may be freed after this returns */
    pthread_mutex_unlock(&s->mtx);
    for (;;) {
        nng_aio *a = NULL;
        pthread_mutex_lock(&s->mtx);
        for (struct lk_ctx *c = s->ctxs; c != NULL && a == NULL; c = c->next) {
            if (c->send_aio != NULL) {
                a           = c->send_aio;
                c->send_aio = NULL;
                lk_wait_remove(s, c);
            } else if (c->recv_aio != NULL) {
                a           = c->recv_aio;
                c->recv_aio = NULL;
                lk_wait_remove(s, c);
            }
        }
        pthread_mutex_unlock(&s->mtx);
        if (a == NULL) {
            break;
        }
        nng_aio_finish(a, NNG_ECLOSED);
    }
    nng_aio_stop(s->rx_aio);
    nng_aio_stop(s->sweep_aio);
}

void
lk_free(struct lk_sock *s)
{
    if (s == NULL) {
        return;
    }
    nng_aio_free(s->rx_aio);
    nng_aio_free(s->sweep_aio);
    for (size_t b = 0; b < LK_BUCKETS; b++) {
        while (s->buckets[b] != NULL) {
            struct lk_pipe *p = s->buckets[b];
            s->buckets[b]     = p->next;
            lk_pipe_unref_locked(p);
        }
    }
    while (s->q_head != NULL) {
        struct lk_req *r = s->q_head;
        s->q_head        = r->next;
        nng_msg_free(r->msg);
        free(r);
    }
    MRD_ASSERT(s->ctxs == NULL); /* every ctx closed first */
    free(s->url);
    pthread_mutex_destroy(&s->mtx);
    sodium_memzero(s, sizeof(*s));
    free(s);
}

/* ----------------------------------------------------------- contexts -- */

int
lk_ctx_open(struct lk_sock *s, struct lk_ctx **out)
{
    struct lk_ctx *c = calloc(1, sizeof(*c));
    *out             = NULL;
    if (c == NULL) {
        return MRD_ENOMEM;
    }
    c->s = s;
    pthread_mutex_lock(&s->mtx);
    c->next = s->ctxs;
    if (s->ctxs != NULL) {
        s->ctxs->prev = c;
    }
    s->ctxs = c;
    pthread_mutex_unlock(&s->mtx);
    *out = c;
    return MRD_OK;
}

void
lk_ctx_close(struct lk_ctx *c)
{
    if (c == NULL) {
        return;
    }
    struct lk_sock *s = c->s;
    pthread_mutex_lock(&s->mtx);
    nng_aio *a  = c->send_aio;
    nng_aio *b  = c->recv_aio;
    c->send_aio = NULL;
    c->recv_aio = NULL;
    lk_wait_remove(s, c);
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        s->ctxs = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    pthread_mutex_unlock(&s->mtx);
    if (a != NULL) {
        nng_aio_finish(a, NNG_ECLOSED);
    }
    if (b != NULL) {
        nng_aio_finish(b, NNG_ECLOSED);
    }
    if (c->reply != NULL) {
        nng_msg_free(c->reply);
    }
    free(c);
}

static void
lk_dialer_send(struct lk_ctx *c, nng_aio *aio)
{
    struct lk_sock *s = c->s;
    int             rv;

    pthread_mutex_lock(&s->mtx);
    MRD_ASSERT(c->send_aio == NULL && c->recv_aio == NULL);
    c->awaiting  = false; /* a new request forgets the last one */
    c->reply_err = 0;
    if (c->reply != NULL) {
        nng_msg_free(c->reply);
        c->reply = NULL;
    }
    if (s->closing) {
        pthread_mutex_unlock(&s->mtx);
        nng_aio_finish(aio, NNG_ECLOSED);
        return;
    }
    bool up = false;
    if (s->cur != NULL) {
        pthread_mutex_lock(&s->cur->mtx);
        up = s->cur->state == LKP_UP;
        pthread_mutex_unlock(&s->cur->mtx);
    }
    /* No session yet, or LK_INFLIGHT_MAX out: wait in order (behind any
     * earlier waiter, so requests keep their order). */
    if (!up || s->cur->outstanding >= LK_INFLIGHT_MAX || s->wait_head != NULL) {
        c->send_aio     = aio;
        c->mark_pipe    = s->cur != NULL ? s->cur->id : 0;
        c->mark_replies = s->cur != NULL ? s->cur->replies : 0;
        lk_wait_push(s, c);
        nng_aio_defer(aio, lk_cancel, s);
        pthread_mutex_unlock(&s->mtx);
        return;
    }
    rv = lk_submit(s, c, aio);
    pthread_mutex_unlock(&s->mtx);
    nng_aio_finish(aio, rv);
}

static void
lk_listener_send(struct lk_ctx *c, nng_aio *aio)
{
    struct lk_sock *s   = c->s;
    nng_msg        *msg = nng_aio_get_msg(aio);
    struct lk_pipe *p   = lk_pipe_ref(s, c->pipe_id);

    if (p != NULL) {
        pthread_mutex_lock(&p->mtx);
        if (p->state == LKP_UP
            && lk_send_sealed(s, p, c->hdr, c->hdr_len, nng_msg_body(msg),
                   nng_msg_len(msg))
                != 0) {
            p->state = LKP_DEAD;
            nng_pipe_close(p->pipe);
        }
        pthread_mutex_unlock(&p->mtx);
        lk_pipe_unref(s, p);
    }
    /* Like rep0: a reply to a pipe that is gone is dropped, not an error. */
    nng_msg_free(msg);
    nng_aio_set_msg(aio, NULL);
    nng_aio_finish(aio, 0);
}

void
lk_ctx_send(struct lk_ctx *c, nng_aio *aio)
{
    if (!nng_aio_begin(aio)) {
        return;
    }
    if (nng_aio_get_msg(aio) == NULL) {
        nng_aio_finish(aio, NNG_EINVAL);
        return;
    }
    if (c->s->dialer) {
        lk_dialer_send(c, aio);
    } else {
        lk_listener_send(c, aio);
    }
}

void
lk_ctx_recv(struct lk_ctx *c, nng_aio *aio)
{
    struct lk_sock *s   = c->s;
    int             err = 0;
    bool            arm = false;

    if (!nng_aio_begin(aio)) {
        return;
    }
    pthread_mutex_lock(&s->mtx);
    MRD_ASSERT(c->recv_aio == NULL);
    if (s->closing) {
        err = NNG_ECLOSED;
    } else if (s->dialer) {
        if (c->reply != NULL) {
            nng_aio_set_msg(aio, c->reply);
            c->reply = NULL;
        } else if (c->reply_err != 0) {
            err = c->reply_err;
        } else if (!c->awaiting) {
            err = NNG_ESTATE;
        } else {
            c->recv_aio = aio;
            nng_aio_defer(aio, lk_cancel, s);
            pthread_mutex_unlock(&s->mtx);
            return;
        }
    } else if (s->q_head != NULL) {
        struct lk_req *r = s->q_head;
        s->q_head        = r->next;
        if (s->q_head == NULL) {
            s->q_tail = NULL;
        }
        s->q_len--;
        c->pipe_id = r->pipe_id;
        memcpy(c->hdr, r->hdr, r->hdr_len);
        c->hdr_len = r->hdr_len;
        memcpy(c->peer, r->peer, LINK_KEY_SIZE);
        nng_aio_set_msg(aio, r->msg);
        free(r);
        if (s->rx_paused && s->q_len < LK_QUEUE_MAX / 2) {
            s->rx_paused = false;
            arm          = lk_rx_claim_locked(s);
        }
    } else {
        c->recv_aio = aio;
        lk_wait_push(s, c);
        nng_aio_defer(aio, lk_cancel, s);
        pthread_mutex_unlock(&s->mtx);
        return;
    }
    pthread_mutex_unlock(&s->mtx);
    if (arm) {
        lk_rx_arm(s);
    }
    nng_aio_finish(aio, err);
}

const uint8_t *
lk_ctx_peer(const struct lk_ctx *c)
{
    return c->peer;
}
