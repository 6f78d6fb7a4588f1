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
 * Static mode (no topology): every node holds every shard and pulls from
 * every peer, full mesh. Topology mode: each shard is pulled only from the
 * sources replication/ae.h's ae_sources names (every other live replica of
 * this region, and on the region's designated puller one live replica per
 * remote region, with a skip set so no event crosses a region link twice),
 * failing over as liveness changes; pulls and replies carry knowledge
 * digests (node/antientropy.c) for acknowledgement levels and stability;
 * and now and then the shard is also pulled from the nodes that do not
 * hold it, which may keep events from before a placement change.
 */
#include "node.h"

#include "linkio.h"

#include "ae.h"

#include <jansson.h>
#include <nng/nng.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Sleep after a round that brought nothing, doubling while rounds stay
 * empty: an idle cluster costs a few pulls a second instead of hundreds.
 * New events normally arrive as hints (a peer's HINT after its commit),
 * which cut the sleep short and pull just the shards named; the rounds are
 * the safety net for a lost hint, so a lost one costs at most the maximum
 * in latency. */
#define NODE_PULL_IDLE_MS 10u
#define NODE_PULL_IDLE_MS_MAX 160u
/* Events asked for per pull. */
#define NODE_PULL_COUNT 1000u
/* One pull's deadline: a peer slower than this is skipped for the round. */
#define NODE_PULL_TIMEOUT_MS 5000
/* Largest pull reply accepted: a full read reply. */
#define NODE_PULL_REPLY_MAX (PROTO_READ_REPLY_MAX + 64u * 1024u)
_Static_assert(NODE_REPL_MEMORY_MIN >= NODE_PULL_REPLY_MAX,
    "--repl-memory always lets one pull through");
/* Topology gossip: every so often the puller asks one peer, at random,
 * for its topology if it is newer. A version spreads to every node in a
 * few rounds (push-pull epidemic: O(log n) rounds), without a coordinator;
 * pushes by an operator start it at once on one node. */
#define NODE_GOSSIP_MS 500u

/* Topology mode: how often a shard is also pulled from the nodes that are
 * not its replicas. They take no appends for it (MRD_ENOTREPLICA), but one
 * that held it before a placement change (a drain, a new node) may keep
 * events nobody else has; after the first pass each costs an empty pull. */
#define NODE_PULL_ORPHAN_MS 5000u
/* A source whose pull failed counts as down for ae_sources this long (then
 * it gets one probe): SWIM may see it through an indirect ping while our
 * own link to it is cut. */
#define NODE_PULL_DOWN_MS AE_PULL_RETRY_MS_MAX

/* A hint not answered by then is dropped: it is only a hint, and a peer
 * that slow is better served by the rounds. */
#define NODE_HINT_TIMEOUT_MS 1000

/* Sending hints to one peer: one HINT in flight at a time on its own
 * socket, so a slow peer never delays pulls; shards committed meanwhile
 * are merged into the next one. */
struct node_hint_peer {
    struct lk_sock     *lk; /* secure link (net/linkio.h) */
    nng_aio            *aio;
    struct lk_ctx      *ctx;
    bool                ready; /* sock, ctx and aio are open */
    bool                busy; /* a HINT is in flight (hint_mu) */
    bool                receiving; /* its send is done, the reply is awaited */
    _Atomic int         pipes; /* sessions up (0 or 1) */
    uint8_t             pending[PROTO_HINT_SHARDS_SIZE_MAX]; /* hint_mu */
    struct node_puller *p;
};

struct node_puller_peer {
    uint64_t        id;
    struct lk_sock *lk; /* secure link (net/linkio.h) */
    bool            open;
    uint64_t       *after; /* per shard: the peer's log seq read */
    /* Per shard: the peer's vector as of the end of its log, which this
     * node has read all of; NULL e until the peer first reported. */
    struct crdt_vv *vv;
    bool           *reported;
    /* Sessions up (linkio's up callback): a peer with none is skipped at
     * once instead of costing a pull timeout every round. */
    _Atomic int pipes;
    bool        down; /* last round failed: logged once, then on recovery */
    /* Topology mode: not a source until then (written by the puller, read
     * by the writer's hints too). */
    _Atomic uint64_t down_until_ms;
    /* Topology mode, per shard: blocked since (ms, 0: not blocked) on an
     * event of a region this node pulls directly (ae_serve). */
    uint64_t *blocked_ms;
    /* Shards the peer hinted at since the last look (p->mu). */
    uint8_t hinted[PROTO_HINT_SHARDS_SIZE_MAX];
    /* Shards read to the end of the peer's log at least once since this
     * process started (node_puller_joined). */
    uint8_t read_all[PROTO_HINT_SHARDS_SIZE_MAX];
    /* Shards whose last pull applied events: one more pull, once no hint
     * is waiting, tells the peer what is durable here (puller thread). */
    uint8_t               confirm[PROTO_HINT_SHARDS_SIZE_MAX];
    bool                  any_hint;
    struct node_hint_peer hint;
    struct node_puller   *p;
};

/* One pull in flight (node_puller_fetch_many). */
struct node_pull_op {
    nng_aio       *aio;
    struct lk_ctx *ctx;
    bool           open;
    int            rv;
};

/* Pulls in flight to one peer at once, with a byte grant each
 * (node_puller_fetch_many): one round trip brings up to this many shards,
 * so a far source costs a round trip per group of shards, not per shard. */
#define NODE_PULL_INFLIGHT 8u

struct node_puller {
    struct node_security *sec; /* keys and trust of the peer links */
    struct node_store    *store;
    struct node_topology *topology; /* NULL: static mode */
    struct node_liveness *liveness; /* NULL: no SWIM */
    struct node_ae       *ae; /* NULL: static mode */
    /* Topology mode: each held shard's sources, computed at the start of a
     * round ([shard * AE_SOURCES_MAX + i]), and when each shard was last
     * swept from the nodes that do not hold it. */
    struct ae_source   *src;
    uint32_t           *src_count;
    uint64_t            orphan_next_ms;
    struct proto_buf    digest;
    uint64_t            memory; /* --repl-memory */
    uint64_t            started_ms; /* mono */
    uint64_t            topo_version; /* the peers were made for */
    uint64_t            gossip_next_ms;
    uint32_t            gossip_rng;
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
    /* The peer the operation on aio is for: when its last connection
     * goes, the operation is cancelled at once. NNG's req would otherwise
     * keep the request for a pipe that may never come, until the pull
     * timeout, and the other peers would wait that long. */
    struct node_puller_peer *_Atomic inflight;
    struct node_pull_op              ops[NODE_PULL_INFLIGHT];
    uint8_t                         *vv; /* scratch: our vector for a shard */
    struct proto_buf                 req;
    char                             region[PROTO_REGION_SIZE_MAX + 1];
    bool                             hinted; /* some peer has hinted (mu) */
    /* Hints out: hint_mu guards every peer's busy and pending. */
    pthread_mutex_t hint_mu;
    bool            hint_stop;
};

static void node_puller_gossip(struct node_puller *p);
static bool node_hint_bits(const uint8_t *bits, size_t len);
static void node_puller_relay(struct node_puller *p, const uint8_t *shards);
static void node_puller_sync_peers(struct node_puller *p);

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
    if (p->ae != NULL) {
        /* Topology mode: most replicas never pull from each other, so what
         * this node knows of them comes relayed (ae_know_stable). */
        rv = node_ae_stable(p->ae, shard,
            (struct proto_str) { (const char *) p->vv, own_len }, &st);
        if (rv == MRD_OK) {
            rv = node_store_set_stable(p->store, shard, &st);
        }
        crdt_vv_free(&st);
        return;
    }
    for (uint32_t i = 0; rv == MRD_OK && i < own_len / 16; i++) {
        rv = crdt_vv_raise(&st, mrd_be64_get(p->vv + 16 * i),
            mrd_be64_get(p->vv + 16 * i + 8));
    }
    for (uint32_t i = 0; rv == MRD_OK && i < p->peer_count; i++) {
        /* Stable means held by every replica: a node that is not one
         * (elsewhere in the placement) never applies this shard's ops. */
        if (!node_topology_is_replica(p->topology, shard, p->peers[i].id)) {
            continue;
        }
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
    int rv = node_vv_from_wire(vv, dst);
    if (rv != MRD_OK) {
        return rv;
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
    struct lk_ctx *ctx;
    int            rv = lk_ctx_open(peer->lk, &ctx);
    if (rv != MRD_OK) {
        nng_msg_free(req);
        return NNG_ENOMEM;
    }
    pthread_mutex_lock(&p->mu);
    bool stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    if (stop) {
        nng_msg_free(req);
        lk_ctx_close(ctx);
        return NNG_ECANCELED;
    }
    nng_aio_set_timeout(p->aio, NODE_PULL_TIMEOUT_MS);
    nng_aio_set_msg(p->aio, req);
    atomic_store(&p->inflight, peer);
    lk_ctx_send(ctx, p->aio);
    /* With no connection, req holds the send for a pipe until the timeout;
     * a pipe that went before inflight was set sends no event to cancel. */
    if (atomic_load(&peer->pipes) <= 0) {
        nng_aio_cancel(p->aio);
    }
    nng_aio_wait(p->aio);
    rv = nng_aio_result(p->aio);
    if (rv != 0) {
        atomic_store(&p->inflight, NULL);
        nng_msg_free(nng_aio_get_msg(p->aio)); /* a failed send keeps it */
        nng_aio_set_msg(p->aio, NULL);
        lk_ctx_close(ctx);
        return rv;
    }
    lk_ctx_recv(ctx, p->aio);
    if (atomic_load(&peer->pipes) <= 0) {
        nng_aio_cancel(p->aio); /* gone between the send and now */
    }
    nng_aio_wait(p->aio);
    atomic_store(&p->inflight, NULL);
    rv = nng_aio_result(p->aio);
    if (rv == 0) {
        *rep = nng_aio_get_msg(p->aio);
        nng_aio_set_msg(p->aio, NULL);
    }
    lk_ctx_close(ctx);
    return rv;
}

/* A pull answered and decoded, not yet applied: rep points into msg. */
struct node_fetched {
    uint32_t shard;
    uint64_t after; /* the request's */
    /* Sent without its skip set because pulls of it stayed blocked (see
     * node_puller_skip): the source relays what we wait for. */
    bool                  stalled;
    nng_msg              *msg;
    struct proto_pull_rep rep;
};

static struct node_puller_peer *
node_puller_peer_by_id(struct node_puller *p, uint64_t id)
{
    for (uint32_t i = 0; i < p->peer_count; i++) {
        if (p->peers[i].id == id) {
            return &p->peers[i];
        }
    }
    return NULL;
}

/* Topology mode: the source entry for (shard, peer) as the round planned
 * it (node_puller_plan), or NULL when the peer is not a source of it. */
static const struct ae_source *
node_puller_source(struct node_puller *p, uint32_t shard, uint64_t peer)
{
    const struct ae_source *src = &p->src[(size_t) shard * AE_SOURCES_MAX];
    for (uint32_t i = 0; i < p->src_count[shard]; i++) {
        if (src[i].node == peer) {
            return &src[i];
        }
    }
    return NULL;
}

/* The skip set for a PULL of the shard from peer: the source's, unless the
 * pull has stayed blocked past AE_PULL_STALL_MS (the region it waits for
 * does not deliver, so the source relays those events after all). */
static uint32_t
node_puller_skip(
    struct node_puller_peer *peer, uint32_t shard, const struct ae_source *src)
{
    if (src == NULL || !src->remote) {
        return 0;
    }
    uint64_t since = peer->blocked_ms[shard];
    if (since != 0 && mrd_now_mono_ms() - since >= AE_PULL_STALL_MS) {
        return 0;
    }
    return src->skip_regions;
}

/* The PULL for one shard from a peer: after what this node has read of the
 * peer's log, with our vector, asking for at most `grant` record bytes; in
 * topology mode also the skip set and our digest. Fills f's request side
 * (shard, after, stalled). MRD_OK with *out, or MRD_ENOMEM / MRD_EIO. */
static int
node_pull_request(struct node_puller *p, struct node_puller_peer *peer,
    uint32_t shard, uint64_t grant, struct node_fetched *f, nng_msg **out)
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
        .region  = { p->region, (uint32_t) strlen(p->region) },
        .bytes   = grant,
    };
    const struct ae_source *src = NULL;
    if (p->ae != NULL) {
        src      = node_puller_source(p, shard, peer->id);
        req.skip = node_puller_skip(peer, shard, src);
        proto_buf_reset(&p->digest);
        if (node_ae_digest(p->ae, shard, req.vv, &p->digest) == MRD_OK) {
            req.digest = (struct proto_str) { (const char *) p->digest.data,
                (uint32_t) p->digest.len };
        }
    }
    proto_buf_reset(&p->req);
    rv = proto_pull_req_encode(&p->req, &req);
    MRD_ASSERT(rv == MRD_OK);
    if (nng_msg_alloc(out, p->req.len) != 0) {
        return MRD_ENOMEM;
    }
    memcpy(nng_msg_body(*out), p->req.data, p->req.len);
    memset(f, 0, sizeof *f);
    f->shard = shard;
    f->after = req.after;
    f->stalled
        = src != NULL && src->remote && src->skip_regions != 0 && req.skip == 0;
    return MRD_OK;
}

/* Decodes a PULL reply into f (whose request side node_pull_request filled)
 * and takes its knowledge: MRD_OK, f->msg = msg to free later; or the
 * peer's refusal / a malformed answer, logged (and counted when malformed),
 * msg freed. */
static int
node_pull_decode(struct node_puller *p, struct node_puller_peer *peer,
    struct node_fetched *f, nng_msg *msg)
{
    struct proto_frame frame = { 0 };
    const char        *why   = NULL;
    uint32_t           shard = f->shard;
    int                rv
        = proto_reply_open(nng_msg_body(msg), nng_msg_len(msg), &frame, &why);
    if (rv == MRD_OK
        && (frame.type != PROTO_T_PULL || frame.status != MRD_OK)) {
        why = "the peer refused the pull";
        rv  = frame.status != MRD_OK ? (int) frame.status : MRD_EPROTO;
    }
    if (rv == MRD_OK) {
        rv = proto_pull_rep_decode(&frame.body, &f->rep, &why);
    }
    if (rv == MRD_OK && f->rep.scanned < f->after) {
        why = "the peer's log went backwards";
        rv  = MRD_EPROTO;
    }
    if (rv != MRD_OK) {
        /* A peer's refusal (it is stopping, or not of this cluster) is its
         * right; an answer that cannot be read is a bad peer: counted. */
        if (!(rv == (int) frame.status && frame.status != MRD_OK)) {
            NODE_STAT_ADD(p->stats, rejected_pull_reply, 1);
        }
        node_log(NODE_LOG_WARN, "pull failed", "{s:I, s:i, s:s, s:s}", "peer",
            (json_int_t) peer->id, "shard", (int) shard, "error",
            mrd_errname(rv), "why", why != NULL ? why : "");
        nng_msg_free(msg);
        return rv;
    }
    if (p->ae != NULL) {
        const char *dwhy = NULL;
        if (node_ae_absorb(p->ae, shard, f->rep.digest, &dwhy) != MRD_OK
            || (f->rep.end
                && node_ae_report(p->ae, shard, peer->id, f->rep.vv)
                    != MRD_OK)) {
            NODE_STAT_ADD(p->stats, rejected_digest, 1);
            node_log(NODE_LOG_WARN, "refused a pull reply's digest",
                "{s:I, s:i, s:s}", "peer", (json_int_t) peer->id, "shard",
                (int) shard, "why", dwhy != NULL ? dwhy : "no memory");
        }
        node_server_ack_recheck(p->srv, shard);
        bool remote = node_ae_region_of(p->ae, peer->id)
            != node_ae_region_of(p->ae, p->store->node_id);
        if (remote) {
            NODE_STAT_ADD(p->stats, pull_events_remote, f->rep.count);
            NODE_STAT_ADD(p->stats, pull_bytes_remote, nng_msg_len(msg));
        } else {
            NODE_STAT_ADD(p->stats, pull_events_local, f->rep.count);
            NODE_STAT_ADD(p->stats, pull_bytes_local, nng_msg_len(msg));
        }
    } else {
        NODE_STAT_ADD(p->stats, pull_events_local, f->rep.count);
        NODE_STAT_ADD(p->stats, pull_bytes_local, nng_msg_len(msg));
    }
    f->msg = msg;
    return MRD_OK;
}

/* The least grant: one largest record (a pull always brings one event,
 * whatever its size) and the reply's envelope (vector, digest, keys). */
#define NODE_PULL_GRANT_MIN ((uint64_t) PROTO_RECORD_SIZE_MAX + 64u * 1024u)
/* What a reply holds beyond its granted record bytes, at most. */
#define NODE_PULL_REPLY_SLACK (64u * 1024u)
_Static_assert(
    NODE_REPL_MEMORY_MIN >= NODE_PULL_GRANT_MIN + NODE_PULL_REPLY_SLACK,
    "--repl-memory lets one pull through");

/* Pulls the shards (up to NODE_PULL_INFLIGHT) from peer at once: every
 * request goes out on a context of its own, then every answer is awaited.
 * The grants split --repl-memory between them. Fills f[] with the answers
 * that decoded (*got of them, to apply in order and free); *down when the
 * peer did not answer (what came before it is still returned). */
static void
node_puller_fetch_many(struct node_puller *p, struct node_puller_peer *peer,
    const uint32_t *shards, uint32_t n, struct node_fetched *f, uint32_t *got,
    bool *down)
{
    struct node_fetched mine[NODE_PULL_INFLIGHT];
    uint64_t            grant = p->memory / n;

    MRD_ASSERT(n >= 1 && n <= NODE_PULL_INFLIGHT);
    grant = grant > NODE_PULL_REPLY_SLACK ? grant - NODE_PULL_REPLY_SLACK : 0;
    grant = grant < NODE_PULL_GRANT_MIN ? NODE_PULL_GRANT_MIN
        : grant > PROTO_READ_REPLY_MAX  ? PROTO_READ_REPLY_MAX
                                        : grant;
    *got  = 0;
    *down = false;
    pthread_mutex_lock(&p->mu);
    bool stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    if (stop) {
        return;
    }
    atomic_store(&p->inflight, peer);
    uint32_t sent = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct node_pull_op *op  = &p->ops[i];
        nng_msg             *req = NULL;
        op->rv                   = NNG_ECANCELED;
        if (node_pull_request(p, peer, shards[i], grant, &mine[i], &req)
                != MRD_OK
            || lk_ctx_open(peer->lk, &op->ctx) != MRD_OK) {
            nng_msg_free(req);
            break;
        }
        op->open = true;
        nng_aio_set_timeout(op->aio, NODE_PULL_TIMEOUT_MS);
        nng_aio_set_msg(op->aio, req);
        lk_ctx_send(op->ctx, op->aio);
        sent++;
    }
    /* With no connection, req holds a send for a pipe until the timeout;
     * a pipe that went before inflight was set sends no event to cancel. */
    if (atomic_load(&peer->pipes) <= 0) {
        for (uint32_t i = 0; i < sent; i++) {
            nng_aio_cancel(p->ops[i].aio);
        }
    }
    for (uint32_t i = 0; i < sent; i++) {
        struct node_pull_op *op = &p->ops[i];
        nng_aio_wait(op->aio);
        op->rv = nng_aio_result(op->aio);
        if (op->rv != 0) {
            nng_msg_free(nng_aio_get_msg(op->aio)); /* a failed send */
            nng_aio_set_msg(op->aio, NULL);
            continue;
        }
        lk_ctx_recv(op->ctx, op->aio);
    }
    if (atomic_load(&peer->pipes) <= 0) {
        for (uint32_t i = 0; i < sent; i++) {
            nng_aio_cancel(p->ops[i].aio); /* gone between send and now */
        }
    }
    for (uint32_t i = 0; i < sent; i++) {
        struct node_pull_op *op = &p->ops[i];
        if (op->rv == 0) {
            nng_aio_wait(op->aio);
            op->rv = nng_aio_result(op->aio);
        }
    }
    atomic_store(&p->inflight, NULL);
    for (uint32_t i = 0; i < sent; i++) {
        struct node_pull_op *op = &p->ops[i];
        if (op->rv == 0) {
            nng_msg *rep = nng_aio_get_msg(op->aio);
            nng_aio_set_msg(op->aio, NULL);
            if (node_pull_decode(p, peer, &mine[i], rep) == MRD_OK) {
                f[(*got)++] = mine[i];
            }
        } else if (op->rv != NNG_ECANCELED || atomic_load(&peer->pipes) <= 0) {
            *down = true;
        }
        lk_ctx_close(op->ctx);
        op->open = false;
    }
}

/* Whether to pull the shard from the peer again at once after a reply was
 * committed. A reply blocked on an event of a region we pull directly is
 * not pulled again until that event is here (or the round after next);
 * one blocked on an event we got meanwhile is (ae_pull_outcome). */
static bool
node_pull_again(struct node_puller *p, struct node_puller_peer *peer,
    const struct node_fetched *f, uint32_t applied)
{
    if (p->ae == NULL) {
        return !f->rep.end;
    }
    if (f->stalled) {
        /* Relaying: after as long again, try the skip set once more. */
        uint64_t since = peer->blocked_ms[f->shard];
        if (since != 0 && mrd_now_mono_ms() - since >= 2u * AE_PULL_STALL_MS) {
            peer->blocked_ms[f->shard] = 0;
        }
        return !f->rep.end;
    }
    if (f->rep.end) {
        peer->blocked_ms[f->shard] = 0;
        return false;
    }
    if (!f->rep.blocked) {
        peer->blocked_ms[f->shard] = 0;
        return true;
    }
    uint32_t vv_len  = 0;
    bool     lacking = true;
    if (node_store_shard_vv(p->store, f->shard, p->vv, &vv_len) == MRD_OK) {
        struct proto_str vv = { (const char *) p->vv, vv_len };
        lacking = proto_vv_get(vv, f->rep.blocked_origin) < f->rep.blocked_seq;
    }
    if (!lacking || applied > 0) {
        peer->blocked_ms[f->shard] = 0; /* progress: the stall clock restarts */
    }
    if (lacking && peer->blocked_ms[f->shard] == 0) {
        peer->blocked_ms[f->shard] = mrd_now_mono_ms();
    }
    return !lacking;
}

/* After a fetched pull was applied (or had nothing to apply): the read
 * position moves, and an answer that reached the end of the peer's log
 * updates the peer's vector and the shard's stable point. Frees f->msg. */
static void
node_pull_post(struct node_puller *p, struct node_puller_peer *peer,
    struct node_fetched *f)
{
    /* With nothing applied the position moves in memory only: the next
     * batch stores it; after a restart the scan is redone, and the
     * vector filters it again. */
    peer->after[f->shard] = f->rep.scanned;
    if (f->rep.end) {
        peer->read_all[f->shard / 8] |= (uint8_t) (1u << (f->shard % 8));
    }
    if (f->rep.end
        && node_puller_peer_vv(peer, f->shard, f->rep.vv) == MRD_OK) {
        /* Our vector as of now: a vector this node holds is a safe bound,
         * older or newer. */
        uint32_t vv_len = 0;
        if (node_store_shard_vv(p->store, f->shard, p->vv, &vv_len) == MRD_OK) {
            node_puller_stable(p, f->shard, vv_len);
        }
    }
    nng_msg_free(f->msg);
    f->msg = NULL;
}

static void
node_puller_up_cb(void *arg, bool up)
{
    struct node_puller_peer *peer = arg;
    int                      was  = atomic_fetch_add(&peer->pipes, up ? 1 : -1);
    if (!up && was <= 1 && peer->p != NULL
        && atomic_load(&peer->p->inflight) == peer) {
        nng_aio_cancel(peer->p->aio);
        for (uint32_t i = 0; i < NODE_PULL_INFLIGHT; i++) {
            nng_aio_cancel(peer->p->ops[i].aio);
        }
    }
}

/* Logs a peer going down or coming back, once per change. */
static void
node_puller_peer_state(struct node_puller_peer *peer, bool down)
{
    if (down) {
        atomic_store(
            &peer->down_until_ms, mrd_now_mono_ms() + NODE_PULL_DOWN_MS);
    }
    if (peer->down != down) {
        peer->down = down;
        node_log(down ? NODE_LOG_WARN : NODE_LOG_INFO,
            down ? "peer unreachable: pulls from it paused"
                 : "peer reachable again",
            "{s:I}", "peer", (json_int_t) peer->id);
    }
}

/* A peer worth a pull: connected, and not held DEAD by SWIM (a stopped or
 * wedged node keeps its connections, and each pull would cost a timeout). */
static bool
node_puller_usable(struct node_puller *p, struct node_puller_peer *peer)
{
    return atomic_load(&peer->pipes) > 0
        && !node_liveness_dead(p->liveness, peer->id);
}

/* ae_live_fn: a peer worth naming as a source or hint target now. */
static bool
node_puller_live(void *arg, uint64_t node)
{
    struct node_puller      *p    = arg;
    struct node_puller_peer *peer = node_puller_peer_by_id(p, node);
    return peer != NULL && node_puller_usable(p, peer)
        && mrd_now_mono_ms() >= atomic_load(&peer->down_until_ms);
}

/* Topology mode: every held shard's sources, as liveness stands now: the
 * failover is that a source that went down is not named any more. */
static void
node_puller_plan(struct node_puller *p)
{
    for (uint32_t s = 0; p->ae != NULL && s < p->store->shard_count; s++) {
        p->src_count[s] = 0;
        if (node_topology_holds(p->topology, s)
            && node_ae_sources(p->ae, s, node_puller_live, p,
                   &p->src[(size_t) s * AE_SOURCES_MAX], &p->src_count[s])
                != MRD_OK) {
            p->src_count[s] = 0;
        }
    }
}

static void node_puller_apply_group(struct node_puller *p,
    struct node_puller_peer *peer, struct node_fetched *f, size_t n,
    uint8_t *more_bits, bool *busy, bool *fatal);

/* Pulls the shards in `bits` from one peer until none has more: groups of
 * NODE_PULL_INFLIGHT pulls in flight at once, each group committed in one
 * transaction (node_puller_apply_group), shards with more pulled again in
 * a later group. Clears `bits`. Returns false when the peer is down. */
static bool
node_puller_pull_shards(struct node_puller *p, struct node_puller_peer *peer,
    uint8_t *bits, bool *busy, bool *fatal)
{
    uint8_t more[PROTO_HINT_SHARDS_SIZE_MAX];
    bool    down = false;

    for (;;) {
        memset(more, 0, sizeof more);
        uint32_t s = 0;
        do {
            struct node_fetched f[NODE_PULL_INFLIGHT];
            uint32_t            shards[NODE_PULL_INFLIGHT], n = 0, got = 0;
            for (; s < p->store->shard_count && n < NODE_PULL_INFLIGHT
                 && n < p->memory
                         / (NODE_PULL_GRANT_MIN + NODE_PULL_REPLY_SLACK);
                 s++) {
                if ((bits[s / 8] & (1u << (s % 8))) != 0) {
                    bits[s / 8] &= (uint8_t) ~(1u << (s % 8));
                    shards[n++] = s;
                }
            }
            if (n == 0) {
                break;
            }
            node_puller_fetch_many(p, peer, shards, n, f, &got, &down);
            node_puller_peer_state(peer, down);
            node_puller_apply_group(p, peer, f, got, more, busy, fatal);
        } while (!down && !*fatal);
        pthread_mutex_lock(&p->mu);
        bool stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (down || *fatal || stop || !node_hint_bits(more, sizeof more)) {
            memset(bits, 0, PROTO_HINT_SHARDS_SIZE_MAX);
            return !down;
        }
        memcpy(bits, more, sizeof more);
    }
}

/* Commits a group of fetched pulls from one peer in one transaction, then
 * moves each shard on. Shards with more to pull are marked in *more_bits. */
static void
node_puller_apply_group(struct node_puller *p, struct node_puller_peer *peer,
    struct node_fetched *f, size_t n, uint8_t *more_bits, bool *busy,
    bool *fatal)
{
    struct node_repl_batch b[NODE_SHARDS_MAX];
    size_t                 nb                                = 0;
    uint32_t               applied                           = 0;
    uint8_t                relay[PROTO_HINT_SHARDS_SIZE_MAX] = { 0 };

    for (size_t i = 0; i < n; i++) {
        if (f[i].rep.count > 0) {
            b[nb++] = (struct node_repl_batch) { .shard = f[i].shard,
                .after                                  = f[i].after,
                .count_max                              = NODE_PULL_COUNT,
                .rep                                    = &f[i].rep };
        }
    }
    int rv = nb > 0
        ? node_store_replicate_many(p->store, peer->id, b, nb, p->stats)
        : MRD_OK;
    if (rv == MRD_EIO) {
        *fatal = true;
    }
    for (size_t i = 0, j = 0; i < n; i++) {
        bool     ok   = rv == MRD_OK;
        uint32_t took = 0;
        if (f[i].rep.count > 0) {
            ok   = ok && b[j].rv == MRD_OK;
            took = ok ? b[j].applied : 0;
            applied += b[j].applied;
            if (took > 0) {
                node_hist_observe(
                    &p->stats->pull_batch, &node_hist_batch, took);
            }
            if (took > 0) {
                relay[f[i].shard / 8] |= (uint8_t) (1u << (f[i].shard % 8));
            }
            if (ok && b[j].applied > 0 && f[i].rep.end) {
                /* The source learns these are durable here from our next
                 * pull of the shard, which carries our vector: its
                 * acknowledgement levels wait for that. Made later, once no
                 * hint is waiting (node_puller_confirm): under load the
                 * next hinted pull does it for free. */
                peer->confirm[f[i].shard / 8]
                    |= (uint8_t) (1u << (f[i].shard % 8));
            }
            j++;
        }
        if (ok && node_pull_again(p, peer, &f[i], took)) {
            more_bits[f[i].shard / 8] |= (uint8_t) (1u << (f[i].shard % 8));
        }
        if (ok) {
            node_pull_post(p, peer, &f[i]);
        } else {
            nng_msg_free(f[i].msg);
            f[i].msg = NULL;
        }
    }
    if (applied > 0) {
        node_puller_relay(p, relay);
        node_server_wake_all(p->srv);
        *busy = true;
    }
}

/* The shards peers hinted at, pulled now. Under a steady load most hints
 * name a few shards with a few events each: their pulls go out together
 * and come back in one round trip, then ONE commit takes them all (two
 * syncs instead of two per shard), which is what bounds replication lag.
 * The pulls' byte grants split --repl-memory, which so bounds both the
 * memory held and how long one replicated commit holds the write lock. */
static bool
node_puller_hinted(struct node_puller *p, bool *fatal)
{
    uint8_t hinted[PROTO_HINT_SHARDS_SIZE_MAX];
    bool    busy = false;

    for (uint32_t i = 0; i < p->peer_count && !*fatal; i++) {
        struct node_puller_peer *peer = &p->peers[i];
        pthread_mutex_lock(&p->mu);
        bool any = peer->any_hint;
        memcpy(hinted, peer->hinted, sizeof hinted);
        memset(peer->hinted, 0, sizeof peer->hinted);
        peer->any_hint = false;
        pthread_mutex_unlock(&p->mu);
        if (!any || !node_puller_usable(p, peer)) {
            continue;
        }
        for (uint32_t s = 0; s < PROTO_HINT_SHARDS_SIZE_MAX * 8u; s++) {
            if (s >= p->store->shard_count
                || !node_topology_holds(p->topology, s)
                || (p->ae != NULL
                    && node_puller_source(p, s, peer->id) == NULL)) {
                /* not ours, or the peer is not our source of it */
                hinted[s / 8] &= (uint8_t) ~(1u << (s % 8));
            }
        }
        node_puller_pull_shards(p, peer, hinted, &busy, fatal);
    }
    return busy;
}

/* The confirming pulls owed (see node_puller_apply_group), when no hint
 * waits: hinted pulls come first, and they confirm as well. */
static void
node_puller_confirm(struct node_puller *p, bool *fatal)
{
    for (uint32_t i = 0; i < p->peer_count && !*fatal; i++) {
        struct node_puller_peer *peer = &p->peers[i];
        uint8_t                  owed[PROTO_HINT_SHARDS_SIZE_MAX];
        pthread_mutex_lock(&p->mu);
        bool hinted = p->hinted;
        pthread_mutex_unlock(&p->mu);
        if (hinted) {
            return;
        }
        if (!node_hint_bits(peer->confirm, sizeof peer->confirm)) {
            continue;
        }
        memcpy(owed, peer->confirm, sizeof owed);
        memset(peer->confirm, 0, sizeof peer->confirm);
        bool busy = false;
        if (node_puller_usable(p, peer)) {
            node_puller_pull_shards(p, peer, owed, &busy, fatal);
        }
    }
}

/* How long a node that started on an empty data dir waits for a peer that
 * is not connected before it stops counting on it (node_puller_joined):
 * long enough for every connection to come up, and about what SWIM takes
 * to call a stopped node dead. */
#define NODE_JOIN_GRACE_MS 5000u
/* Once this node's own earlier events are coming back (its data dir was
 * emptied), it waits for every replica, reachable or not, up to this long:
 * an event of its earlier life that it has not read back by the time it
 * takes appends is never read back (its vector entry is past it). The
 * chaos harness saw a wiped node whose links took over 5 s to come up
 * miss all of them. Long enough for links and restarts; a replica down for
 * longer is given up with a warning. */
#define NODE_JOIN_WAIT_MAX_MS 120000u

static bool
node_puller_anyone_live(void *arg, uint64_t node)
{
    (void) arg;
    (void) node;
    return true;
}

/* A store created empty takes appends only once this node has read, for
 * every shard it holds, every source's log to the end (static mode: every
 * peer): its own earlier events, if its data dir was emptied, are then
 * back and its origin seq past them (ae_batch_check's AE_APPEND_OWN). For
 * the first NODE_JOIN_GRACE_MS every peer counts, connected or not (at the
 * start none is); after that, only the live ones: a node down meanwhile is
 * not waited for, so one that comes back later may still hold a dot this
 * node hands out again (docs/ARCHITECTURE.md, "A node that comes back
 * empty"). */
static void
node_puller_joined(struct node_puller *p)
{
    if (!atomic_load(&p->store->joining)) {
        return;
    }
    uint64_t age = mrd_now_mono_ms() - p->started_ms;
    bool     own = atomic_load(&p->store->own_seen);
    bool     grace
        = age < NODE_JOIN_GRACE_MS || (own && age < NODE_JOIN_WAIT_MAX_MS);
    for (uint32_t s = 0; s < p->store->shard_count; s++) {
        struct ae_source all[AE_SOURCES_MAX];
        uint32_t         all_count = 0;
        if (!node_topology_holds(p->topology, s)) {
            continue;
        }
        if (p->ae != NULL && grace
            && node_ae_sources(
                   p->ae, s, node_puller_anyone_live, NULL, all, &all_count)
                != MRD_OK) {
            all_count = 0;
        }
        for (uint32_t i = 0; i < p->peer_count; i++) {
            struct node_puller_peer *peer = &p->peers[i];
            bool                     want = false;
            if (p->ae == NULL) {
                want = grace || node_puller_usable(p, peer);
            } else if (!grace) {
                want = node_puller_source(p, s, peer->id) != NULL;
            }
            for (uint32_t j = 0; j < all_count && !want; j++) {
                want = all[j].node == peer->id;
            }
            if (want && (peer->read_all[s / 8] & (1u << (s % 8))) == 0) {
                return;
            }
        }
        /* Not one source read to the end: nothing is known yet, however
         * long it has been (within NODE_JOIN_WAIT_MAX_MS). */
        bool some = p->peer_count == 0;
        for (uint32_t i = 0; i < p->peer_count && !some; i++) {
            some = (p->peers[i].read_all[s / 8] & (1u << (s % 8))) != 0;
        }
        if (!some && age < NODE_JOIN_WAIT_MAX_MS) {
            return;
        }
    }
    if (age >= NODE_JOIN_WAIT_MAX_MS) {
        node_log(NODE_LOG_WARN,
            "stopped waiting for unreachable replicas after starting on an "
            "empty data dir: an event of this node's earlier life that only "
            "they hold will be missing here",
            NULL);
    }
    if (node_store_joined(p->store) == MRD_OK) {
        atomic_store(&p->stats->joining, 0);
        node_log(NODE_LOG_INFO,
            "caught up after starting on an empty data dir: taking appends",
            NULL);
    }
}

static void *
node_puller_main(void *arg)
{
    struct node_puller *p = arg;

    uint32_t idle_ms       = NODE_PULL_IDLE_MS;
    uint64_t next_round_ms = 0; /* a round at once */
    bool     fatal         = false;

    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        bool hinted = p->hinted;
        p->hinted   = false;
        pthread_mutex_unlock(&p->mu);
        node_puller_gossip(p);
        node_puller_sync_peers(p);
        node_puller_plan(p);
        if (hinted) {
            node_puller_hinted(p, &fatal);
        }
        if (!fatal) {
            node_puller_confirm(p, &fatal);
        }
        if (!fatal && mrd_now_mono_ms() >= next_round_ms) {
            bool busy  = false;
            bool sweep = mrd_now_mono_ms() >= p->orphan_next_ms;
            if (sweep) {
                p->orphan_next_ms = mrd_now_mono_ms() + NODE_PULL_ORPHAN_MS;
            }
            for (uint32_t i = 0; i < p->peer_count && !fatal; i++) {
                struct node_puller_peer *peer = &p->peers[i];
                uint8_t                  want[PROTO_HINT_SHARDS_SIZE_MAX];
                if (!node_puller_usable(p, peer)) {
                    node_puller_peer_state(peer, true);
                    continue; /* not connected: NNG keeps dialling */
                }
                memset(want, 0, sizeof want);
                for (uint32_t s = 0; s < p->store->shard_count; s++) {
                    /* Only the shards placed here; from every node, since
                     * one placed away from a shard may still hold what it
                     * took before. */
                    if (!node_topology_holds(p->topology, s)) {
                        continue;
                    }
                    /* Topology mode: its sources, and in a sweep the nodes
                     * that do not hold it (see NODE_PULL_ORPHAN_MS). */
                    if (p->ae != NULL
                        && node_puller_source(p, s, peer->id) == NULL
                        && !(sweep
                            && !node_topology_is_replica(
                                p->topology, s, peer->id))) {
                        continue;
                    }
                    want[s / 8] |= (uint8_t) (1u << (s % 8));
                }
                node_puller_pull_shards(p, peer, want, &busy, &fatal);
            }
            idle_ms = busy                            ? NODE_PULL_IDLE_MS
                : idle_ms * 2 > NODE_PULL_IDLE_MS_MAX ? NODE_PULL_IDLE_MS_MAX
                                                      : idle_ms * 2;
            /* Busy or not, rounds wait: new events come as hints, and a
             * shard with more to pull is drained at once anyway. */
            next_round_ms = mrd_now_mono_ms() + idle_ms;
            node_puller_joined(p);
        }
        if (fatal) {
            node_log(
                NODE_LOG_ERROR, "replication stopped: storage error", NULL);
            return NULL;
        }
        pthread_mutex_lock(&p->mu);
        uint64_t now     = mrd_now_mono_ms();
        uint64_t wake_ms = next_round_ms;
        /* Gossip only with someone to gossip with: a lone node's
         * gossip_next_ms never moves, and waking for it would spin. */
        if (p->topology != NULL && p->peer_count > 0
            && p->gossip_next_ms < wake_ms) {
            wake_ms = p->gossip_next_ms;
        }
        if (!p->stop && !p->hinted && now < wake_ms) {
            uint64_t        wait_ms = wake_ms - now;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t) (wait_ms / 1000u);
            ts.tv_nsec += (long) (wait_ms % 1000u) * 1000000L;
            while (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---------------------------------------------------------------- hints -- */

/* A HINT from a peer: mark its shards and wake the thread. NNG thread. */
static void
node_puller_hint_in(void *arg, uint64_t from, const uint8_t *shards, size_t len)
{
    struct node_puller *p = arg;

    pthread_mutex_lock(&p->mu);
    for (uint32_t i = 0; i < p->peer_count; i++) {
        struct node_puller_peer *peer = &p->peers[i];
        if (peer->id != from) {
            continue;
        }
        for (size_t b = 0; b < len && b < sizeof peer->hinted; b++) {
            peer->hinted[b] |= shards[b];
        }
        peer->any_hint = true;
        p->hinted      = true;
        pthread_cond_signal(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
}

static bool
node_hint_bits(const uint8_t *bits, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (bits[i] != 0) {
            return true;
        }
    }
    return false;
}

/* Sends the peer's pending shards. Caller holds hint_mu, busy is false. */
static void
node_hint_send_locked(struct node_hint_peer *h)
{
    struct node_puller   *p   = h->p;
    size_t                len = (p->store->shard_count + 7u) / 8u;
    struct proto_buf      buf;
    struct proto_hint_req req = { .from = p->store->node_id,
        .shards = { (const char *) h->pending, (uint32_t) len } };
    nng_msg              *msg = NULL;

    proto_buf_init(&buf, 128);
    if (proto_hint_req_encode(&buf, &req) != MRD_OK
        || nng_msg_alloc(&msg, buf.len) != 0) {
        proto_buf_fini(&buf);
        return; /* only a hint: the rounds cover it */
    }
    memcpy(nng_msg_body(msg), buf.data, buf.len);
    proto_buf_fini(&buf);
    memset(h->pending, 0, sizeof h->pending);
    h->busy      = true;
    h->receiving = false;
    nng_aio_set_msg(h->aio, msg);
    nng_aio_set_timeout(h->aio, NODE_HINT_TIMEOUT_MS);
    lk_ctx_send(h->ctx, h->aio);
    NODE_STAT_ADD(p->stats, hints_sent, 1);
}

static void
node_hint_cb(void *arg)
{
    struct node_hint_peer *h  = arg;
    struct node_puller    *p  = h->p;
    int                    rv = nng_aio_result(h->aio);

    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(h->aio)); /* a failed send keeps it */
        nng_aio_set_msg(h->aio, NULL);
    } else if (!h->receiving) {
        /* Re-arm only while not stopping: node_puller_stop() waits this
         * callback out with nng_aio_stop() and must find nothing queued. */
        pthread_mutex_lock(&p->hint_mu);
        bool stop = p->hint_stop;
        if (!stop) {
            h->receiving = true;
            nng_aio_set_timeout(h->aio, NODE_HINT_TIMEOUT_MS);
            lk_ctx_recv(h->ctx, h->aio);
        }
        pthread_mutex_unlock(&p->hint_mu);
        if (!stop) {
            return;
        }
    } else {
        nng_msg_free(nng_aio_get_msg(h->aio)); /* the empty reply */
        nng_aio_set_msg(h->aio, NULL);
    }
    pthread_mutex_lock(&p->hint_mu);
    h->busy = false;
    if (!p->hint_stop && node_hint_bits(h->pending, sizeof h->pending)
        && atomic_load(&h->pipes) > 0) {
        node_hint_send_locked(h);
    }
    pthread_mutex_unlock(&p->hint_mu);
}

/* The writer committed new events to these shards: tell the peers that
 * pull them from us (static mode: every peer; topology mode: the shard's
 * ae_hint_targets). */
static void
node_puller_hint_out(void *arg, const uint8_t *shards, size_t len)
{
    struct node_puller *p = arg;
    uint8_t             mask[NODE_PEERS_MAX][PROTO_HINT_SHARDS_SIZE_MAX];

    if (len > PROTO_HINT_SHARDS_SIZE_MAX) {
        len = PROTO_HINT_SHARDS_SIZE_MAX;
    }
    memset(mask, 0, sizeof mask);
    /* Held throughout: the peer table grows under it. */
    pthread_mutex_lock(&p->hint_mu);
    uint32_t count = p->peer_count;
    for (uint32_t i = 0; i < count; i++) {
        if (p->ae == NULL) {
            memcpy(mask[i], shards, len);
        }
    }
    for (uint32_t s = 0; p->ae != NULL && s < len * 8u; s++) {
        uint64_t ids[AE_HINTS_MAX];
        uint32_t n = 0;
        if ((shards[s / 8] & (1u << (s % 8))) == 0
            || node_ae_hint_targets(p->ae, s, node_puller_live, p, ids, &n)
                != MRD_OK) {
            continue;
        }
        for (uint32_t t = 0; t < n; t++) {
            for (uint32_t i = 0; i < count; i++) {
                if (p->peers[i].id == ids[t]) {
                    mask[i][s / 8] |= (uint8_t) (1u << (s % 8));
                }
            }
        }
    }
    for (uint32_t i = 0; i < count && !p->hint_stop; i++) {
        struct node_hint_peer *h = &p->peers[i].hint;
        if (!h->ready || !node_hint_bits(mask[i], len)) {
            continue;
        }
        for (size_t b = 0; b < len; b++) {
            h->pending[b] |= mask[i][b];
        }
        /* A peer with no connection gets nothing: it catches up by its
         * rounds when it is back. */
        if (!h->busy && atomic_load(&h->pipes) > 0) {
            node_hint_send_locked(h);
        }
    }
    pthread_mutex_unlock(&p->hint_mu);
}

/* Topology mode: events just replicated here are new to the nodes that pull
 * these shards from us (a remote region's designated puller, when we are
 * ours), so they are hinted like our own writes. Static mode: not needed
 * (every node pulls from the writer itself), so not sent. */
static void
node_puller_relay(struct node_puller *p, const uint8_t *shards)
{
    if (p->ae != NULL) {
        node_puller_hint_out(p, shards, (p->store->shard_count + 7u) / 8u);
    }
}

static void
node_hint_up_cb(void *arg, bool up)
{
    struct node_hint_peer *h = arg;
    atomic_fetch_add(&h->pipes, up ? 1 : -1);
}

/* Opens the peer's hint socket; a failure only costs latency. */
static void
node_hint_peer_open(
    struct node_hint_peer *h, struct node_puller *p, const char *url)
{
    struct lk_config lcfg;
    h->p = p;
    /* A HINT and its answer are a few hundred bytes. */
    node_security_lk_config(p->sec, false, PROTO_FRAME_SIZE_MIN, &lcfg);
    lcfg.up     = node_hint_up_cb;
    lcfg.up_arg = h;
    int rv      = lk_open_dialer(&lcfg, &h->lk);
    sodium_memzero(&lcfg, sizeof(lcfg));
    if (rv != MRD_OK) {
        return;
    }
    node_security_register(p->sec, h->lk);
    nng_socket_set_ms(lk_nng(h->lk), NNG_OPT_RECONNMAXT, 1000);
    if (nng_aio_alloc(&h->aio, node_hint_cb, h) != 0) {
        return;
    }
    if (lk_ctx_open(h->lk, &h->ctx) != MRD_OK) {
        nng_aio_free(h->aio);
        h->aio = NULL;
        return;
    }
    if (lk_dial(h->lk, url) != 0) {
        lk_ctx_close(h->ctx);
        nng_aio_free(h->aio);
        h->aio = NULL;
        return;
    }
    h->ready = true;
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
    free(peer->blocked_ms);
}

/* Opens a peer slot: progress from the store, a pull socket and a hint
 * socket, both dialled in the background. The slot is made visible by the
 * caller (peer_count) only once this succeeded. */
static int
node_puller_peer_open(struct node_puller *p, struct node_puller_peer *peer,
    uint64_t id, const char *url)
{
    struct node_store *store = p->store;
    int                rv    = MRD_OK;

    memset(peer, 0, sizeof *peer);
    peer->p          = p;
    peer->id         = id;
    peer->after      = calloc(store->shard_count, sizeof(*peer->after));
    peer->vv         = calloc(store->shard_count, sizeof(*peer->vv));
    peer->reported   = calloc(store->shard_count, sizeof(*peer->reported));
    peer->blocked_ms = calloc(store->shard_count, sizeof(*peer->blocked_ms));
    if (peer->after == NULL || peer->vv == NULL || peer->reported == NULL
        || peer->blocked_ms == NULL) {
        return MRD_ENOMEM;
    }
    for (uint32_t s = 0; rv == MRD_OK && s < store->shard_count; s++) {
        rv = node_store_progress(store, peer->id, s, &peer->after[s]);
    }
    if (rv != MRD_OK) {
        node_log(NODE_LOG_ERROR, "cannot read replication progress",
            "{s:I, s:s}", "peer", (json_int_t) peer->id, "error",
            mrd_errname(rv));
        return rv;
    }
    struct lk_config lcfg;
    node_security_lk_config(p->sec, false, NODE_PULL_REPLY_MAX, &lcfg);
    lcfg.up     = node_puller_up_cb;
    lcfg.up_arg = peer;
    rv          = lk_open_dialer(&lcfg, &peer->lk);
    sodium_memzero(&lcfg, sizeof(lcfg));
    if (rv != MRD_OK) {
        return rv;
    }
    peer->open = true;
    node_security_register(p->sec, peer->lk);
    nng_socket_set_ms(lk_nng(peer->lk), NNG_OPT_RECONNMAXT, 1000);
    /* Non-blocking: a peer that is down now is dialled again in the
     * background until it is up. */
    if (lk_dial(peer->lk, url) != 0) {
        node_log(NODE_LOG_ERROR, "cannot dial peer", "{s:I, s:s}", "peer",
            (json_int_t) peer->id, "url", url);
        return MRD_EINVAL;
    }
    node_hint_peer_open(&peer->hint, p, url);
    return MRD_OK;
}

/* After a topology change: a slot for every node added since. Removed
 * nodes keep their slot (they may still hold events to pull; they stop
 * answering when they are shut down). */
static void
node_puller_sync_peers(struct node_puller *p)
{
    struct node_peer peers[NODE_PEERS_MAX];
    uint32_t         count   = 0;
    uint64_t         version = node_topology_version(p->topology);

    if (p->topology == NULL || version == p->topo_version) {
        return;
    }
    if (node_topology_peers(p->topology, peers, NODE_PEERS_MAX, &count)
        != MRD_OK) {
        node_log(NODE_LOG_WARN,
            "more peers than NODE_PEERS_MAX: some are not "
            "pulled from",
            NULL);
    }
    p->topo_version = version;
    for (uint32_t i = 0; i < count; i++) {
        bool known = false;
        for (uint32_t j = 0; j < p->peer_count && !known; j++) {
            known = p->peers[j].id == peers[i].id;
        }
        if (known || p->peer_count == NODE_PEERS_MAX) {
            continue;
        }
        struct node_puller_peer *slot = &p->peers[p->peer_count];
        if (node_puller_peer_open(p, slot, peers[i].id, peers[i].url)
            != MRD_OK) {
            node_puller_peer_free(slot, p->store->shard_count);
            continue;
        }
        /* Visible to the hint callbacks only now, whole. */
        pthread_mutex_lock(&p->mu);
        pthread_mutex_lock(&p->hint_mu);
        p->peer_count++;
        pthread_mutex_unlock(&p->hint_mu);
        pthread_mutex_unlock(&p->mu);
        node_log(NODE_LOG_INFO, "a new peer from the topology", "{s:I, s:s}",
            "peer", (json_int_t) peers[i].id, "url", peers[i].url);
    }
}

/* One gossip round: ask a random connected peer for a newer topology. */
static void
node_puller_gossip(struct node_puller *p)
{
    uint64_t now = mrd_now_mono_ms();

    if (p->topology == NULL || p->peer_count == 0 || now < p->gossip_next_ms) {
        return;
    }
    p->gossip_next_ms = now + NODE_GOSSIP_MS;
    p->gossip_rng ^= p->gossip_rng << 13;
    p->gossip_rng ^= p->gossip_rng >> 17;
    p->gossip_rng ^= p->gossip_rng << 5;
    struct node_puller_peer *peer = &p->peers[p->gossip_rng % p->peer_count];
    /* A peer SWIM heard of with a newer topology goes first. */
    uint64_t newer = node_liveness_topo_from(p->liveness);
    for (uint32_t i = 0; newer != 0 && i < p->peer_count; i++) {
        if (p->peers[i].id == newer) {
            peer = &p->peers[i];
        }
    }
    if (!node_puller_usable(p, peer)) {
        return;
    }
    proto_buf_reset(&p->req);
    if (proto_topo_req_encode(&p->req, node_topology_version(p->topology))
        != MRD_OK) {
        return;
    }
    nng_msg *msg;
    if (nng_msg_alloc(&msg, p->req.len) != 0) {
        return;
    }
    memcpy(nng_msg_body(msg), p->req.data, p->req.len);
    if (node_puller_io(p, peer, msg, &msg) != 0) {
        return;
    }
    struct proto_frame frame;
    struct proto_str   signed_topo;
    uint64_t           version;
    const char        *why = NULL;
    int                rv
        = proto_reply_open(nng_msg_body(msg), nng_msg_len(msg), &frame, &why);
    if (rv == MRD_OK && frame.type == PROTO_T_TOPOLOGY
        && frame.status == MRD_OK) {
        rv = proto_topo_rep_decode(&frame.body, &version, &signed_topo, &why);
        if (rv == MRD_OK && signed_topo.len > 0) {
            rv = node_topology_offer(
                p->topology, signed_topo.ptr, signed_topo.len, &why);
            if (rv == MRD_OK) {
                NODE_STAT_ADD(p->stats, topology_updates, 1);
            } else {
                NODE_STAT_ADD(p->stats, rejected_topology, 1);
                node_log(NODE_LOG_WARN, "refused a topology from a peer",
                    "{s:I, s:s, s:s}", "peer", (json_int_t) peer->id, "error",
                    mrd_errname(rv), "why", why);
            }
        }
    }
    nng_msg_free(msg);
}

int
node_puller_start(const struct node_config *cfg, struct node_store *store,
    struct node_server *srv, struct node_stats *stats,
    struct node_topology *topology, struct node_liveness *liveness,
    struct node_ae *ae, struct node_security *sec, struct node_puller **out)
{
    *out = NULL;
    if (cfg->peer_count == 0 && topology == NULL) {
        return MRD_OK; /* a lone node: nothing to pull, ever */
    }
    struct node_puller *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return MRD_ENOMEM;
    }
    p->store        = store;
    p->topology     = topology;
    p->liveness     = liveness;
    p->ae           = ae;
    p->memory       = cfg->repl_memory;
    p->started_ms   = mrd_now_mono_ms();
    p->topo_version = node_topology_version(topology);
    p->gossip_rng   = (uint32_t) (store->node_id * 2654435761u) | 1u;
    p->srv          = srv;
    p->sec          = sec;
    p->stats        = stats;
    /* Slots for every peer a topology may add later: pipe callbacks hold
     * pointers into this array, so it never moves. */
    p->peers = calloc(NODE_PEERS_MAX, sizeof(*p->peers));
    p->vv    = malloc(16u * CRDT_ORIGINS_MAX);
    snprintf(p->region, sizeof p->region, "%s", cfg->region);
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->hint_mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    proto_buf_init(&p->req, 64u * 1024u);
    proto_buf_init(&p->digest, PROTO_DIGEST_SIZE_MAX);
    p->src
        = calloc((size_t) store->shard_count * AE_SOURCES_MAX, sizeof(*p->src));
    p->src_count = calloc(store->shard_count, sizeof(*p->src_count));
    bool aios    = nng_aio_alloc(&p->aio, NULL, NULL) == 0;
    for (uint32_t i = 0; i < NODE_PULL_INFLIGHT; i++) {
        aios = aios && nng_aio_alloc(&p->ops[i].aio, NULL, NULL) == 0;
    }
    int rv = aios && p->peers != NULL && p->vv != NULL && p->src != NULL
            && p->src_count != NULL
        ? MRD_OK
        : MRD_ENOMEM;
    for (uint32_t i = 0; rv == MRD_OK && i < cfg->peer_count; i++) {
        rv = node_puller_peer_open(
            p, &p->peers[i], cfg->peers[i].id, cfg->peers[i].url);
        p->peer_count = i + 1; /* freed below on failure */
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
        free(p->src);
        free(p->src_count);
        if (p->aio != NULL) {
            nng_aio_free(p->aio);
        }
        for (uint32_t i = 0; i < NODE_PULL_INFLIGHT; i++) {
            if (p->ops[i].aio != NULL) {
                nng_aio_free(p->ops[i].aio);
            }
        }
        proto_buf_fini(&p->req);
        proto_buf_fini(&p->digest);
        free(p);
        return rv;
    }
    node_server_set_hints(srv, node_puller_hint_in, node_puller_hint_out, p);
    node_log(NODE_LOG_INFO, "replication started", "{s:i, s:s, s:I}", "peers",
        (int) cfg->peer_count, "region", cfg->region, "topology",
        (json_int_t) p->topo_version);
    *out = p;
    return MRD_OK;
}

void
node_puller_stop(struct node_puller *p)
{
    if (p == NULL) {
        return;
    }
    /* No hint in or out from here: the server outlives the puller. */
    node_server_set_hints(p->srv, NULL, NULL, NULL);
    pthread_mutex_lock(&p->hint_mu);
    p->hint_stop = true;
    pthread_mutex_unlock(&p->hint_mu);
    for (uint32_t i = 0; i < p->peer_count; i++) {
        struct node_hint_peer *h = &p->peers[i].hint;
        if (h->aio != NULL) {
            nng_aio_stop(h->aio); /* waits out its callback */
            nng_msg_free(nng_aio_get_msg(h->aio));
            nng_aio_free(h->aio);
        }
        if (h->ready) {
            lk_ctx_close(h->ctx);
        }
        if (h->lk != NULL) {
            lk_shutdown(h->lk);
        }
        if (p->peers[i].lk != NULL) {
            lk_shutdown(p->peers[i].lk); /* no up callback into freed peers */
        }
    }
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    nng_aio_cancel(p->aio); /* a pull in flight ends now */
    for (uint32_t i = 0; i < NODE_PULL_INFLIGHT; i++) {
        nng_aio_cancel(p->ops[i].aio);
    }
    pthread_join(p->thread, NULL);
    nng_aio_free(p->aio);
    for (uint32_t i = 0; i < NODE_PULL_INFLIGHT; i++) {
        nng_aio_free(p->ops[i].aio);
    }
    /* The peer sockets are left to process exit: NNG 1.5.2's nng_close()
     * can hang after a dropped connection (docs/ARCHITECTURE.md). */
    for (uint32_t i = 0; i < p->peer_count; i++) {
        node_puller_peer_free(&p->peers[i], p->store->shard_count);
    }
    free(p->peers);
    free(p->vv);
    free(p->src);
    free(p->src_count);
    proto_buf_fini(&p->req);
    proto_buf_fini(&p->digest);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->hint_mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
