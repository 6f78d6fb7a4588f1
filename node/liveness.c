/*
 * liveness.c: SWIM (replication/swim.h) on real sockets and a real clock.
 *
 * One thread drives the sans-I/O state machine: it ticks it at its next
 * deadline and feeds it the messages the server hands over (SWIM requests
 * arrive on the node's own socket, decoded on an NNG thread and queued
 * here). Messages out go on a socket per peer, one in flight at a time
 * plus a short queue; SWIM is built for loss, so a full queue drops the
 * oldest. Only nodes with a topology run it: the members are the
 * topology's nodes, and the set follows new versions.
 *
 * What it is for: a node whose connection is up but which does not answer
 * (stopped, swapping, wedged) costs a pull timeout every round; once SWIM
 * calls it DEAD the puller skips it until it is ALIVE again. State changes
 * are logged once each and counted.
 */
#include "node.h"

#include <jansson.h>
#include <nng/nng.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "linkio.h"
#include "swim.h"

/* Messages received and not yet handled. SWIM sends a few per second per
 * peer; a backlog this long means the thread is stalled, and dropping is
 * what SWIM expects of a network anyway. */
#define NODE_SWIM_INBOX 128u
/* Messages waiting behind the one in flight to a peer. */
#define NODE_SWIM_OUTBOX 4u
/* A SWIM message not delivered by then is lost: its own timers are shorter. */
#define NODE_SWIM_SEND_TIMEOUT_MS 500

struct node_swim_msg {
    uint64_t from;
    uint32_t len;
    uint8_t  bytes[SWIM_MSG_SIZE_MAX];
};

struct node_swim_peer {
    uint64_t              id;
    char                  url[256];
    struct lk_sock       *lk; /* secure link (net/linkio.h) */
    struct lk_ctx        *ctx;
    nng_aio              *aio;
    bool                  ready;
    bool                  busy; /* (lv->out_mu) */
    bool                  receiving;
    uint32_t              queued; /* (lv->out_mu) */
    struct node_swim_msg  queue[NODE_SWIM_OUTBOX];
    struct node_liveness *lv;
};

struct node_liveness {
    struct node_topology *topology;
    struct node_security *sec;
    struct node_stats    *stats;
    uint64_t              self;
    pthread_t             thread;
    pthread_mutex_t       mu; /* inbox, stop, the swim state */
    pthread_cond_t        cv; /* CLOCK_MONOTONIC */
    bool                  stop;
    struct swim          *swim;
    uint64_t              topo_version; /* the members were set for */
    struct node_swim_msg *inbox;
    uint32_t              inbox_head, inbox_count;
    struct swim_out       out; /* the thread's */
    /* Peers: slots never move (aio callbacks point at them). */
    pthread_mutex_t       out_mu;
    bool                  out_stop;
    struct node_swim_peer peers[NODE_PEERS_MAX];
    uint32_t              peer_count;
    /* A peer gossip says runs a newer topology (0: none), for the puller. */
    _Atomic uint64_t topo_from;
};

static uint64_t
node_mono_ms(void)
{
    return mrd_now_mono_ms();
}

/* ------------------------------------------------------------- sending -- */

/* Sends the peer's first queued message. Caller holds out_mu. */
static void
node_swim_send_locked(struct node_swim_peer *pe)
{
    struct node_swim_msg *m = &pe->queue[0];
    struct proto_buf      buf;
    nng_msg              *msg = NULL;

    proto_buf_init(&buf, SWIM_MSG_SIZE_MAX + 64);
    int rv = proto_swim_req_encode(&buf, pe->lv->self,
        (struct proto_str) { (const char *) m->bytes, m->len });
    if (rv == MRD_OK && nng_msg_alloc(&msg, buf.len) == 0) {
        memcpy(nng_msg_body(msg), buf.data, buf.len);
    }
    proto_buf_fini(&buf);
    memmove(
        &pe->queue[0], &pe->queue[1], (pe->queued - 1) * sizeof(pe->queue[0]));
    pe->queued--;
    if (msg == NULL) {
        return; /* lost, like a datagram */
    }
    pe->busy      = true;
    pe->receiving = false;
    nng_aio_set_msg(pe->aio, msg);
    nng_aio_set_timeout(pe->aio, NODE_SWIM_SEND_TIMEOUT_MS);
    lk_ctx_send(pe->ctx, pe->aio);
}

static void
node_swim_cb(void *arg)
{
    struct node_swim_peer *pe = arg;
    struct node_liveness  *lv = pe->lv;
    int                    rv = nng_aio_result(pe->aio);

    pthread_mutex_lock(&lv->out_mu);
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(pe->aio));
        nng_aio_set_msg(pe->aio, NULL);
    } else if (!pe->receiving) {
        if (!lv->out_stop) {
            pe->receiving = true;
            nng_aio_set_timeout(pe->aio, NODE_SWIM_SEND_TIMEOUT_MS);
            lk_ctx_recv(pe->ctx, pe->aio);
            pthread_mutex_unlock(&lv->out_mu);
            return;
        }
    } else {
        nng_msg_free(nng_aio_get_msg(pe->aio)); /* the empty reply */
        nng_aio_set_msg(pe->aio, NULL);
    }
    pe->busy = false;
    if (!lv->out_stop && pe->queued > 0) {
        node_swim_send_locked(pe);
    }
    pthread_mutex_unlock(&lv->out_mu);
}

static void
node_swim_peer_open(
    struct node_liveness *lv, struct node_swim_peer *pe, const char *url)
{
    pe->lv = lv;
    snprintf(pe->url, sizeof pe->url, "%s", url);
    /* SWIM messages carry a topology at most. */
    struct lk_config lcfg;
    node_security_lk_config(lv->sec, false, PROTO_FRAME_SIZE_MIN, &lcfg);
    int rv = lk_open_dialer(&lcfg, &pe->lk);
    sodium_memzero(&lcfg, sizeof(lcfg));
    if (rv != MRD_OK) {
        return;
    }
    node_security_register(lv->sec, pe->lk);
    nng_socket_set_ms(lk_nng(pe->lk), NNG_OPT_RECONNMAXT, 1000);
    if (nng_aio_alloc(&pe->aio, node_swim_cb, pe) != 0) {
        return;
    }
    if (lk_ctx_open(pe->lk, &pe->ctx) != MRD_OK || lk_dial(pe->lk, url) != 0) {
        nng_aio_free(pe->aio);
        pe->aio = NULL;
        return;
    }
    pe->ready = true;
}

/* Queues the messages a tick or a receive asked for. */
static void
node_swim_send_all(struct node_liveness *lv, const struct swim_out *out)
{
    pthread_mutex_lock(&lv->out_mu);
    for (uint32_t i = 0; i < out->msg_count && !lv->out_stop; i++) {
        const struct swim_out_msg *m  = &out->msg[i];
        struct node_swim_peer     *pe = NULL;
        for (uint32_t j = 0; j < lv->peer_count && pe == NULL; j++) {
            if (lv->peers[j].id == m->to && lv->peers[j].ready) {
                pe = &lv->peers[j];
            }
        }
        if (pe == NULL) {
            continue;
        }
        if (pe->queued == NODE_SWIM_OUTBOX) {
            /* The oldest goes: SWIM's own timers have given up on it. */
            memmove(&pe->queue[0], &pe->queue[1],
                (NODE_SWIM_OUTBOX - 1) * sizeof(pe->queue[0]));
            pe->queued--;
        }
        struct node_swim_msg *q = &pe->queue[pe->queued++];
        q->from                 = lv->self;
        q->len                  = m->len;
        memcpy(q->bytes, m->bytes, m->len);
        if (!pe->busy) {
            node_swim_send_locked(pe);
        }
    }
    pthread_mutex_unlock(&lv->out_mu);
}

/* ------------------------------------------------------------- members -- */

/* After a topology change: the member set and peer slots follow it. */
static void
node_swim_members(struct node_liveness *lv)
{
    struct node_peer peers[NODE_PEERS_MAX];
    uint64_t         ids[NODE_PEERS_MAX];
    uint32_t         count   = 0;
    uint64_t         version = node_topology_version(lv->topology);

    if (version == lv->topo_version) {
        return;
    }
    if (node_topology_peers(lv->topology, peers, NODE_PEERS_MAX, &count)
        != MRD_OK) {
        node_log(NODE_LOG_WARN,
            "more peers than NODE_PEERS_MAX: liveness follows the first", NULL);
    }
    for (uint32_t i = 0; i < count; i++) {
        ids[i]     = peers[i].id;
        bool known = false;
        for (uint32_t j = 0; j < lv->peer_count && !known; j++) {
            known = lv->peers[j].id == peers[i].id;
        }
        if (!known && lv->peer_count < NODE_PEERS_MAX) {
            struct node_swim_peer *pe = &lv->peers[lv->peer_count];
            memset(pe, 0, sizeof *pe);
            pe->id = peers[i].id;
            node_swim_peer_open(lv, pe, peers[i].url);
            pthread_mutex_lock(&lv->out_mu);
            lv->peer_count++;
            pthread_mutex_unlock(&lv->out_mu);
        }
    }
    if (swim_set_members(lv->swim, ids, count) != MRD_OK) {
        node_log(NODE_LOG_ERROR, "cannot set the SWIM members", NULL);
    }
    swim_set_topo_version(lv->swim, version);
    lv->topo_version = version;
}

static void
node_swim_events(struct node_liveness *lv, const struct swim_out *out)
{
    static const char *names[] = { "unknown", "alive", "suspect", "dead" };

    for (uint32_t i = 0; i < out->event_count; i++) {
        const struct swim_event *e = &out->event[i];
        switch (e->kind) {
        case SWIM_EV_MEMBER:
            NODE_STAT_ADD(lv->stats, liveness_changes, 1);
            node_log(e->state == SWIM_ALIVE ? NODE_LOG_INFO : NODE_LOG_WARN,
                e->state == SWIM_ALIVE      ? "peer is alive (SWIM)"
                    : e->state == SWIM_DEAD ? "peer is dead (SWIM)"
                                            : "peer is suspect (SWIM)",
                "{s:I, s:s, s:I}", "peer", (json_int_t) e->id, "state",
                names[e->state <= SWIM_DEAD ? e->state : 0], "incarnation",
                (json_int_t) e->incarnation);
            break;
        case SWIM_EV_REFUTED:
            node_log(NODE_LOG_INFO, "refuted a suspicion of this node (SWIM)",
                "{s:I}", "incarnation", (json_int_t) e->incarnation);
            break;
        case SWIM_EV_TOPO:
            atomic_store(&lv->topo_from, e->id);
            break;
        default:
            break;
        }
    }
}

/* -------------------------------------------------------------- thread -- */

static void *
node_liveness_main(void *arg)
{
    struct node_liveness *lv = arg;
    struct node_swim_msg *m  = malloc(sizeof *m);

    pthread_mutex_lock(&lv->mu);
    while (!lv->stop && m != NULL) {
        node_swim_members(lv);
        uint64_t now = node_mono_ms();
        swim_tick(lv->swim, now, &lv->out);
        node_swim_events(lv, &lv->out);
        node_swim_send_all(lv, &lv->out);
        while (lv->inbox_count > 0) {
            *m             = lv->inbox[lv->inbox_head];
            lv->inbox_head = (lv->inbox_head + 1) % NODE_SWIM_INBOX;
            lv->inbox_count--;
            const char *why = NULL;
            int rv = swim_recv(lv->swim, node_mono_ms(), m->from, m->bytes,
                m->len, &lv->out, &why);
            if (rv != MRD_OK) {
                NODE_STAT_ADD(lv->stats, rejected_proto, 1);
                node_log(NODE_LOG_DEBUG, "refused a SWIM message", "{s:I, s:s}",
                    "from", (json_int_t) m->from, "why", why);
                continue;
            }
            node_swim_events(lv, &lv->out);
            node_swim_send_all(lv, &lv->out);
        }
        uint64_t next = swim_next_deadline(lv->swim);
        now           = node_mono_ms();
        if (next > now && lv->inbox_count == 0 && !lv->stop) {
            uint64_t        wait = next - now;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_sec += (time_t) (wait / 1000u);
            ts.tv_nsec += (long) (wait % 1000u) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&lv->cv, &lv->mu, &ts);
        }
    }
    pthread_mutex_unlock(&lv->mu);
    free(m);
    return NULL;
}

int
node_liveness_start(const struct node_config *cfg,
    struct node_topology *topology, struct node_stats *stats,
    struct node_security *sec, struct node_liveness **out)
{
    struct swim_config sc;
    pthread_condattr_t attr;

    *out = NULL;
    if (topology == NULL) {
        return MRD_OK; /* static clusters: connection state only */
    }
    struct node_liveness *lv = calloc(1, sizeof *lv);
    if (lv == NULL) {
        return MRD_ENOMEM;
    }
    lv->inbox    = calloc(NODE_SWIM_INBOX, sizeof(*lv->inbox));
    lv->topology = topology;
    lv->sec      = sec;
    lv->stats    = stats;
    lv->self     = cfg->node_id;
    /* A restarted node remembers nothing: starting its incarnation at the
     * wall clock puts its first ALIVE above whatever its previous life
     * said (docs/ARCHITECTURE.md, "Liveness (SWIM)"). */
    uint64_t wall = mrd_now_real_ms();
    swim_config_default(&sc, cfg->node_id, wall, wall ^ (cfg->node_id << 20));
    int rv = lv->inbox != NULL ? swim_create(&sc, node_mono_ms(), &lv->swim)
                               : MRD_ENOMEM;
    if (rv != MRD_OK) {
        free(lv->inbox);
        free(lv);
        return rv;
    }
    pthread_mutex_init(&lv->mu, NULL);
    pthread_mutex_init(&lv->out_mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&lv->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_lock(&lv->mu);
    node_swim_members(lv);
    pthread_mutex_unlock(&lv->mu);
    if (pthread_create(&lv->thread, NULL, node_liveness_main, lv) != 0) {
        swim_destroy(lv->swim);
        free(lv->inbox);
        free(lv);
        return MRD_ENOMEM;
    }
    *out = lv;
    return MRD_OK;
}

void
node_liveness_stop(struct node_liveness *lv)
{
    if (lv == NULL) {
        return;
    }
    pthread_mutex_lock(&lv->mu);
    lv->stop = true;
    pthread_cond_signal(&lv->cv);
    pthread_mutex_unlock(&lv->mu);
    pthread_join(lv->thread, NULL);
    pthread_mutex_lock(&lv->out_mu);
    lv->out_stop = true;
    pthread_mutex_unlock(&lv->out_mu);
    for (uint32_t i = 0; i < lv->peer_count; i++) {
        struct node_swim_peer *pe = &lv->peers[i];
        if (pe->aio != NULL) {
            nng_aio_stop(pe->aio);
            nng_msg_free(nng_aio_get_msg(pe->aio));
            nng_aio_free(pe->aio);
        }
        if (pe->ready) {
            lk_ctx_close(pe->ctx);
        }
        if (pe->lk != NULL) {
            lk_shutdown(pe->lk);
        }
        /* Sockets are left to process exit (NNG 1.5.2's nng_close). */
    }
    swim_destroy(lv->swim);
    pthread_mutex_destroy(&lv->mu);
    pthread_mutex_destroy(&lv->out_mu);
    pthread_cond_destroy(&lv->cv);
    free(lv->inbox);
    free(lv);
}

void
node_liveness_recv(
    struct node_liveness *lv, uint64_t from, const void *bytes, size_t len)
{
    if (lv == NULL || len > SWIM_MSG_SIZE_MAX) {
        return;
    }
    pthread_mutex_lock(&lv->mu);
    if (lv->inbox_count == NODE_SWIM_INBOX) {
        pthread_mutex_unlock(&lv->mu);
        return; /* a stalled thread: dropped, as a network would */
    }
    struct node_swim_msg *m
        = &lv->inbox[(lv->inbox_head + lv->inbox_count) % NODE_SWIM_INBOX];
    m->from = from;
    m->len  = (uint32_t) len;
    memcpy(m->bytes, bytes, len);
    lv->inbox_count++;
    pthread_cond_signal(&lv->cv);
    pthread_mutex_unlock(&lv->mu);
}

int
node_liveness_state(struct node_liveness *lv, uint64_t id)
{
    if (lv == NULL) {
        return SWIM_UNKNOWN;
    }
    pthread_mutex_lock(&lv->mu);
    int state = (int) swim_state(lv->swim, id);
    pthread_mutex_unlock(&lv->mu);
    return state;
}

bool
node_liveness_dead(struct node_liveness *lv, uint64_t id)
{
    if (lv == NULL) {
        return false;
    }
    pthread_mutex_lock(&lv->mu);
    bool dead = swim_state(lv->swim, id) == SWIM_DEAD;
    pthread_mutex_unlock(&lv->mu);
    return dead;
}

uint64_t
node_liveness_topo_from(struct node_liveness *lv)
{
    return lv != NULL ? atomic_exchange(&lv->topo_from, 0) : 0;
}
