/*
 * puller.c: the thread that pulls every shard from every peer.
 *
 * One thread per node, one NNG req socket per peer. A round asks each peer,
 * shard by shard, for the events after what this node has read of that
 * peer's log, sending this node's version vector so the peer skips what is
 * already here; each non-empty answer is committed by node_store_replicate()
 * (events, vector, state and read position in one transaction). A shard
 * that is not caught up is asked again at once; when a whole round brings
 * nothing the thread sleeps, longer while rounds stay empty. A peer that does
 * not answer is skipped for the round; its socket keeps redialling in the
 * background.
 *
 * Every node holds every shard and pulls from every peer: full mesh, which
 * is right for a few regions. Placement (R replicas per region) and one
 * puller per shard per remote region come with the topology.
 */
#include "node.h"

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Sleep after a round that brought nothing, doubling while rounds stay
 * empty: an idle cluster costs a few pulls a second instead of hundreds, and
 * the first event after a quiet spell waits at most the maximum. Pushes
 * (hints that there is something new) will replace this. */
#define NODE_PULL_IDLE_MS 10u
#define NODE_PULL_IDLE_MS_MAX 160u
/* Events asked for per pull. */
#define NODE_PULL_COUNT 1000u
/* One pull's deadline: a peer slower than this is skipped for the round. */
#define NODE_PULL_TIMEOUT_MS 5000
/* Largest pull reply accepted: a full read reply. */
#define NODE_PULL_REPLY_MAX (PROTO_READ_REPLY_MAX + 64u * 1024u)

struct node_puller_peer {
    uint64_t   id;
    nng_socket sock;
    bool       open;
    uint64_t  *after; /* per shard: the peer's log seq read */
    /* Per shard: the peer's vector as of the end of its log, which this
     * node has read all of; NULL e until the peer first reported. */
    struct crdt_vv *vv;
    bool           *reported;
    /* Connections up (NNG pipe events): a peer with none is skipped at
     * once instead of costing a pull timeout every round. */
    _Atomic int pipes;
    bool        down; /* last round failed: logged once, then on recovery */
};

struct node_puller {
    struct node_store  *store;
    struct node_server *srv;
    struct node_stats  *stats;
    pthread_t           thread;
    pthread_mutex_t     mu;
    pthread_cond_t      cv;
    bool                stop;
    /* The one operation in flight, cancelled by node_puller_stop() so that
     * stopping never waits for a dead peer's timeout. */
    nng_aio                 *aio;
    uint32_t                 peer_count;
    struct node_puller_peer *peers;
    uint8_t                 *vv; /* scratch: our vector for a shard */
    struct proto_buf         req;
};

/* Recomputes a shard's stable vector: the pointwise minimum of this node's
 * vector (read before the pull: older is only more careful) and every
 * peer's, once every peer has reported. A dot under it is held by every
 * replica as of a point this node has read their logs up to, so every event
 * this node applies from now on has observed it. */
static void
node_puller_stable(struct node_puller *p, uint32_t shard, uint32_t own_len)
{
    struct crdt_vv st;
    crdt_vv_init(&st);
    int rv = MRD_OK;
    for (uint32_t i = 0; rv == MRD_OK && i < own_len / 16; i++) {
        rv = crdt_vv_raise(&st, mrd_be64_get(p->vv + 16 * i),
            mrd_be64_get(p->vv + 16 * i + 8));
    }
    for (uint32_t i = 0; rv == MRD_OK && i < p->peer_count; i++) {
        if (!p->peers[i].reported[shard]) {
            crdt_vv_free(&st);
            return; /* not yet known: nothing is stable */
        }
        rv = crdt_vv_meet(&st, &st, &p->peers[i].vv[shard]);
    }
    if (rv == MRD_OK) {
        rv = node_store_set_stable(p->store, shard, &st);
    }
    crdt_vv_free(&st);
}

/* Keeps the peer's vector from an answer that reached the end of its log. */
static int
node_puller_peer_vv(
    struct node_puller_peer *peer, uint32_t shard, struct proto_str vv)
{
    struct crdt_vv *dst = &peer->vv[shard];
    crdt_vv_free(dst);
    for (uint32_t i = 0; i < proto_vv_count(vv); i++) {
        uint64_t origin, seq;
        proto_vv_at(vv, i, &origin, &seq);
        int rv = crdt_vv_raise(dst, origin, seq);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    peer->reported[shard] = true;
    return MRD_OK;
}

/* Sends req and waits for the answer on a context of the peer's socket,
 * through p->aio, which a stop cancels. Takes req in every case. */
static int
node_puller_io(struct node_puller *p, struct node_puller_peer *peer,
    nng_msg *req, nng_msg **rep)
{
    nng_ctx ctx;
    int     rv = nng_ctx_open(&ctx, peer->sock);
    if (rv != 0) {
        nng_msg_free(req);
        return rv;
    }
    pthread_mutex_lock(&p->mu);
    bool stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    if (stop) {
        nng_msg_free(req);
        nng_ctx_close(ctx);
        return NNG_ECANCELED;
    }
    nng_aio_set_timeout(p->aio, NODE_PULL_TIMEOUT_MS);
    nng_aio_set_msg(p->aio, req);
    nng_ctx_send(ctx, p->aio);
    nng_aio_wait(p->aio);
    rv = nng_aio_result(p->aio);
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(p->aio)); /* a failed send keeps it */
        nng_aio_set_msg(p->aio, NULL);
        nng_ctx_close(ctx);
        return rv;
    }
    nng_ctx_recv(ctx, p->aio);
    nng_aio_wait(p->aio);
    rv = nng_aio_result(p->aio);
    if (rv == 0) {
        *rep = nng_aio_get_msg(p->aio);
        nng_aio_set_msg(p->aio, NULL);
    }
    nng_ctx_close(ctx);
    return rv;
}

/* One pull from one peer for one shard. Returns MRD_OK and sets *more when
 * the peer has more, or an error when the peer did not answer properly. */
static int
node_pull_once(struct node_puller *p, struct node_puller_peer *peer,
    uint32_t shard, bool *more, uint32_t *applied)
{
    uint32_t vv_len = 0;
    int      rv     = node_store_shard_vv(p->store, shard, p->vv, &vv_len);
    if (rv != MRD_OK) {
        return rv;
    }
    struct proto_pull_req req = {
        .shard   = shard,
        .after   = peer->after[shard],
        .count   = NODE_PULL_COUNT,
        .vv      = { (const char *) p->vv, vv_len },
        .from    = p->store->node_id,
        .cluster = { (const char *) p->store->cluster_id, 16 },
    };
    proto_buf_reset(&p->req);
    rv = proto_pull_req_encode(&p->req, &req);
    MRD_ASSERT(rv == MRD_OK);

    nng_msg *msg;
    if (nng_msg_alloc(&msg, p->req.len) != 0) {
        return MRD_ENOMEM;
    }
    memcpy(nng_msg_body(msg), p->req.data, p->req.len);
    if (node_puller_io(p, peer, msg, &msg) != 0) {
        return MRD_EUNAVAIL;
    }
    struct proto_frame    frame;
    struct proto_pull_rep rep;
    const char           *why = NULL;
    rv = proto_reply_open(nng_msg_body(msg), nng_msg_len(msg), &frame, &why);
    if (rv == MRD_OK
        && (frame.type != PROTO_T_PULL || frame.status != MRD_OK)) {
        why = "the peer refused the pull";
        rv  = frame.status != MRD_OK ? (int) frame.status : MRD_EPROTO;
    }
    if (rv == MRD_OK) {
        rv = proto_pull_rep_decode(&frame.body, &rep, &why);
    }
    if (rv == MRD_OK && rep.scanned < req.after) {
        why = "the peer's log went backwards";
        rv  = MRD_EPROTO;
    }
    if (rv == MRD_OK && rep.count > 0) {
        rv = node_store_replicate(
            p->store, peer->id, shard, &rep, p->stats, applied);
        if (rv == MRD_OK) {
            peer->after[shard] = rep.scanned;
        }
    } else if (rv == MRD_OK) {
        /* Nothing new, only a longer scan (typically our own events coming
         * back): move the position in memory and commit nothing. The next
         * batch stores it; after a restart the scan is redone, and the
         * vector filters it again. */
        peer->after[shard] = rep.scanned;
    }
    if (rv == MRD_OK && rep.end
        && node_puller_peer_vv(peer, shard, rep.vv) == MRD_OK) {
        node_puller_stable(p, shard, vv_len);
    }
    if (rv == MRD_OK) {
        *more = !rep.end;
    } else {
        node_log(NODE_LOG_WARN, "pull failed", "{s:I, s:i, s:s, s:s}", "peer",
            (json_int_t) peer->id, "shard", (int) shard, "error",
            mrd_errname(rv), "why", why != NULL ? why : "");
    }
    nng_msg_free(msg);
    return rv;
}

static void
node_puller_pipe_cb(nng_pipe pipe, nng_pipe_ev ev, void *arg)
{
    struct node_puller_peer *peer = arg;
    (void) pipe;
    atomic_fetch_add(&peer->pipes, ev == NNG_PIPE_EV_ADD_POST ? 1 : -1);
}

/* Logs a peer going down or coming back, once per change. */
static void
node_puller_peer_state(struct node_puller_peer *peer, bool down)
{
    if (peer->down != down) {
        peer->down = down;
        node_log(down ? NODE_LOG_WARN : NODE_LOG_INFO,
            down ? "peer unreachable: pulls from it paused"
                 : "peer reachable again",
            "{s:I}", "peer", (json_int_t) peer->id);
    }
}

static void *
node_puller_main(void *arg)
{
    struct node_puller *p = arg;

    uint32_t idle_ms = NODE_PULL_IDLE_MS;

    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        pthread_mutex_unlock(&p->mu);
        bool busy = false;
        for (uint32_t i = 0; i < p->peer_count; i++) {
            struct node_puller_peer *peer = &p->peers[i];
            if (atomic_load(&peer->pipes) <= 0) {
                node_puller_peer_state(peer, true);
                continue; /* not connected: NNG keeps dialling */
            }
            for (uint32_t s = 0; s < p->store->shard_count; s++) {
                bool     more    = false;
                uint32_t applied = 0;
                int      rv      = node_pull_once(p, peer, s, &more, &applied);
                if (rv == MRD_EUNAVAIL) {
                    node_puller_peer_state(peer, true);
                    break; /* the peer is down: the next one */
                }
                node_puller_peer_state(peer, false);
                if (applied > 0) {
                    node_server_wake_all(p->srv);
                }
                busy = busy || more || applied > 0;
                if (rv == MRD_EIO) {
                    node_log(NODE_LOG_ERROR,
                        "replication stopped: storage "
                        "error",
                        NULL);
                    return NULL;
                }
            }
        }
        pthread_mutex_lock(&p->mu);
        if (busy) {
            idle_ms = NODE_PULL_IDLE_MS;
        } else if (!p->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long) idle_ms * 1000000L;
            while (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            idle_ms = idle_ms * 2 > NODE_PULL_IDLE_MS_MAX
                ? NODE_PULL_IDLE_MS_MAX
                : idle_ms * 2;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void
node_puller_peer_free(struct node_puller_peer *peer, uint32_t shards)
{
    for (uint32_t s = 0; peer->vv != NULL && s < shards; s++) {
        crdt_vv_free(&peer->vv[s]);
    }
    free(peer->vv);
    free(peer->reported);
    free(peer->after);
}

int
node_puller_start(const struct node_config *cfg, struct node_store *store,
    struct node_server *srv, struct node_stats *stats, struct node_puller **out)
{
    *out = NULL;
    if (cfg->peer_count == 0) {
        return MRD_OK;
    }
    struct node_puller *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return MRD_ENOMEM;
    }
    p->store      = store;
    p->srv        = srv;
    p->stats      = stats;
    p->peer_count = cfg->peer_count;
    p->peers      = calloc(cfg->peer_count, sizeof(*p->peers));
    p->vv         = malloc(16u * CRDT_ORIGINS_MAX);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    proto_buf_init(&p->req, 64u * 1024u);
    int rv = p->peers != NULL && p->vv != NULL
            && nng_aio_alloc(&p->aio, NULL, NULL) == 0
        ? MRD_OK
        : MRD_ENOMEM;
    for (uint32_t i = 0; rv == MRD_OK && i < cfg->peer_count; i++) {
        struct node_puller_peer *peer = &p->peers[i];
        peer->id                      = cfg->peers[i].id;
        peer->after    = calloc(store->shard_count, sizeof(*peer->after));
        peer->vv       = calloc(store->shard_count, sizeof(*peer->vv));
        peer->reported = calloc(store->shard_count, sizeof(*peer->reported));
        if (peer->after == NULL || peer->vv == NULL || peer->reported == NULL) {
            rv = MRD_ENOMEM;
            break;
        }
        for (uint32_t s = 0; rv == MRD_OK && s < store->shard_count; s++) {
            rv = node_store_progress(store, peer->id, s, &peer->after[s]);
        }
        if (rv != MRD_OK) {
            node_log(NODE_LOG_ERROR, "cannot read replication progress",
                "{s:I, s:s}", "peer", (json_int_t) peer->id, "error",
                mrd_errname(rv));
        }
        if (rv == MRD_OK && nng_req0_open(&peer->sock) != 0) {
            rv = MRD_ENOMEM;
        }
        if (rv == MRD_OK) {
            peer->open = true;
            nng_pipe_notify(
                peer->sock, NNG_PIPE_EV_ADD_POST, node_puller_pipe_cb, peer);
            nng_pipe_notify(
                peer->sock, NNG_PIPE_EV_REM_POST, node_puller_pipe_cb, peer);
            nng_socket_set_ms(
                peer->sock, NNG_OPT_RECVTIMEO, NODE_PULL_TIMEOUT_MS);
            nng_socket_set_ms(
                peer->sock, NNG_OPT_SENDTIMEO, NODE_PULL_TIMEOUT_MS);
            nng_socket_set_ms(
                peer->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
            nng_socket_set_size(
                peer->sock, NNG_OPT_RECVMAXSZ, NODE_PULL_REPLY_MAX);
            nng_socket_set_ms(peer->sock, NNG_OPT_RECONNMAXT, 1000);
            /* Non-blocking: a peer that is down now is dialled again in the
             * background until it is up. */
            if (nng_dial(peer->sock, cfg->peers[i].url, NULL, NNG_FLAG_NONBLOCK)
                != 0) {
                node_log(NODE_LOG_ERROR, "cannot dial peer", "{s:I, s:s}",
                    "peer", (json_int_t) peer->id, "url", cfg->peers[i].url);
                rv = MRD_EINVAL;
            }
        }
    }
    if (rv == MRD_OK
        && pthread_create(&p->thread, NULL, node_puller_main, p) != 0) {
        rv = MRD_ENOMEM;
    }
    if (rv != MRD_OK) {
        for (uint32_t i = 0; p->peers != NULL && i < p->peer_count; i++) {
            node_puller_peer_free(&p->peers[i], store->shard_count);
        }
        free(p->peers);
        free(p->vv);
        if (p->aio != NULL) {
            nng_aio_free(p->aio);
        }
        proto_buf_fini(&p->req);
        free(p);
        return rv;
    }
    node_log(NODE_LOG_INFO, "replication started", "{s:i, s:s}", "peers",
        (int) cfg->peer_count, "region", cfg->region);
    *out = p;
    return MRD_OK;
}

void
node_puller_stop(struct node_puller *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    nng_aio_cancel(p->aio); /* a pull in flight ends now */
    pthread_join(p->thread, NULL);
    nng_aio_free(p->aio);
    /* The peer sockets are left to process exit: NNG 1.5.2's nng_close()
     * can hang after a dropped connection (docs/ARCHITECTURE.md). */
    for (uint32_t i = 0; i < p->peer_count; i++) {
        node_puller_peer_free(&p->peers[i], p->store->shard_count);
    }
    free(p->peers);
    free(p->vv);
    proto_buf_fini(&p->req);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
