/*
 * server.c: requests in, answers out.
 *
 * A fixed pool of work objects, each one NNG rep0 context with one aio and a
 * state, receives requests. The aio callback (on an NNG thread, never
 * blocking) decodes and validates the frame, answers what is cheap (errors,
 * node info, stats) at once, and queues the rest: appends to the writer
 * thread, reads to the reader threads. Both queues are intrusive lists of
 * work objects, so they are bounded by the pool size and never allocate.
 *
 * Long-polls: a forward read that finds nothing and may wait is parked. The
 * writer, after each commit, moves parked reads whose stream it touched back
 * to the reader queue; a timer thread answers the ones whose wait is over. A
 * commit generation closes the race between a reader's empty read and its
 * parking: a reader parks only if no commit happened since it looked.
 */
#include "node.h"

#include "linkio.h"

#include "ae.h"
#ifdef MRD_PLANTED_BUGS
#include "plant.h"
#endif

#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/util/platform.h>
#include <signal.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Small replies (errors, appends, info) are built in a per-work buffer. */
#define NODE_SMALL_REPLY_MAX 4096u
/* How long stop waits for answers already handed to NNG to leave. */
#define NODE_STOP_FLUSH_MS 2000u
/* The writer wakes at least this often to run housekeeping. */
#define NODE_WRITER_TICK_MS 1000u
/* How often the writer clears stale LMDB readers (killed tools). */
#define NODE_READER_CHECK_MS 10000u

/* The idempotency digest key: fixed, and the same on every node, since a
 * digest travels with its append's first record (proto_record_idem) and a
 * replica compares a retry's digest with it. Changing it makes every
 * retry of an older append a conflict. */
static const unsigned char node_digest_key[crypto_shorthash_KEYBYTES]
    = { 'm', 'e', 'r', 'i', 'd', 'i', 'a', 'n', '-', 'i', 'd', 'e', 'm', 'p',
          '1', '\0' };

enum node_work_state {
    NODE_WORK_RECV,
    NODE_WORK_QUEUED, /* owned by the writer, a reader, or the park list */
    NODE_WORK_SEND,
};

struct node_work {
    struct node_server    *srv;
    nng_aio               *aio;
    struct lk_ctx         *ctx; /* on the secure listener (net/linkio.h) */
    enum node_work_state   state;
    nng_msg               *req; /* the request, alive while views point in it */
    uint32_t               type;
    struct node_append     append;
    struct proto_read_req  read;
    struct proto_log_req   log;
    struct proto_str       stream;
    struct proto_state_req state_req;
    struct proto_pull_req  pull;
    struct proto_digest_req digest;
    uint64_t                start_us; /* when the request came (metrics) */
    bool append_decoded; /* append.req holds this request's views */
    /* Long-poll state. */
    uint64_t          deadline_ms;
    uint64_t          stream_hash;
    bool              parked_once;
    bool              final; /* the wait is over: answer even if empty */
    struct proto_buf  small;
    struct node_work *next;
};

/* What this node knows of a node that pulls from it: that node's region
 * and, per shard, the highest seq of this node's own events it holds. A
 * PULL carries the asker's vector, which is durable on the asker (it is
 * what its last committed pull left), so this is what acknowledgement
 * levels count. */
struct node_known_peer {
    uint64_t  id;
    char      region[PROTO_REGION_SIZE_MAX + 1];
    uint64_t *own_seq; /* [shard_count] */
};

struct node_queue {
    pthread_mutex_t   mu;
    pthread_cond_t    cv;
    struct node_work *head;
    struct node_work *tail;
    bool              closed;
};

struct node_server {
    const struct node_config     *cfg;
    struct node_store            *store;
    struct node_topology         *topology; /* NULL: static mode */
    struct node_ae               *ae; /* NULL: static mode */
    struct node_liveness *_Atomic liveness; /* NULL: no SWIM */
    struct node_security         *sec;
    struct lk_sock               *lk; /* the secure listener */
    nng_socket                    sock; /* lk's */
    nng_listener                  listener;
    char                          url[300];
    struct node_work             *works;
    uint32_t                      work_count;
    struct node_queue             wq; /* appends, for the writer */
    struct node_queue             rq; /* reads, for the readers */
    pthread_t                     writer;
    pthread_t                     timer;
    pthread_t                     readers[NODE_READERS_MAX];
    uint32_t                      reader_count;
    /* Parked long-polls. */
    pthread_mutex_t   park_mu;
    pthread_cond_t    park_cv;
    struct node_work *parked;
    uint32_t          parked_count;
    uint32_t          parked_max;
    /* Appends waiting for their acknowledgement level, and what the node
     * knows of the replicas that count towards it (park_mu). */
    struct node_work      *acks;
    struct node_known_peer known[NODE_KNOWN_PEERS_MAX];
    uint32_t               known_count;
    /* Hint callbacks (node_server_set_hints). hint_lock is held (read)
     * across each call, so that once set_hints returns, no call into the
     * old target is running or can start: the puller may be freed. */
    pthread_rwlock_t  hint_lock;
    node_hint_in_fn   hint_in;
    node_hint_out_fn  hint_out;
    void             *hint_arg;
    _Atomic uint64_t  commit_gen;
    _Atomic bool      stopping; /* new requests get MRD_ECLOSED */
    _Atomic bool      closing; /* aios are being torn down */
    _Atomic bool      failed;
    _Atomic bool      timer_stop;
    _Atomic uint32_t  sending;
    struct node_stats stats;
    uint64_t          started_wall_ms;
    uint64_t          started_mono_ms;
    char              metrics_url[300]; /* set once, before STATUS is served */
    /* A drill's fence (PROTO_T_FENCE; fence_mu). fence_until_ms is read
     * without the lock on every request: 0 when no fence was ever set. */
    pthread_mutex_t        fence_mu;
    _Atomic uint64_t       fence_until_ms; /* monotonic */
    struct node_fence_view fence; /* fence_mu */
#ifdef MRD_PLANTED_BUGS
    /* ack-before-fsync (plant.h; writer thread only): the batch in hand
     * was answered before its commit, and the shards it wrote, for the
     * hints sent once it committed. */
    bool    plant_answered;
    uint8_t plant_shards[PROTO_HINT_SHARDS_SIZE_MAX];
#endif
};

static void node_work_cb(void *arg);

/* --------------------------------------------------------------- queues -- */

static void
node_queue_init(struct node_queue *q)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->head = q->tail = NULL;
    q->closed         = false;
}

static void
node_queue_fini(struct node_queue *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

/* Caller holds q->mu. */
static void
node_queue_push_locked(struct node_queue *q, struct node_work *w)
{
    w->next = NULL;
    if (q->tail != NULL) {
        q->tail->next = w;
    } else {
        q->head = w;
    }
    q->tail = w;
    pthread_cond_signal(&q->cv);
}

/* False when the queue is closed (the node is stopping). */
static bool
node_queue_push(struct node_queue *q, struct node_work *w)
{
    pthread_mutex_lock(&q->mu);
    bool ok = !q->closed;
    if (ok) {
        node_queue_push_locked(q, w);
    }
    pthread_mutex_unlock(&q->mu);
    return ok;
}

/* Caller holds q->mu. */
static struct node_work *
node_queue_pop_locked(struct node_queue *q)
{
    struct node_work *w = q->head;
    if (w != NULL) {
        q->head = w->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        w->next = NULL;
    }
    return w;
}

/* -------------------------------------------------------------- replies -- */

static void
node_work_recv(struct node_work *w)
{
    w->state = NODE_WORK_RECV;
    lk_ctx_recv(w->ctx, w->aio);
}

/* Sends buf as the reply. On failure to even allocate, drops the request:
 * the client times out and retries, which is safe for every request. */
static void
node_work_send(struct node_work *w, const struct proto_buf *buf)
{
    nng_msg *msg;

    if (proto_buf_status(buf) != MRD_OK || nng_msg_alloc(&msg, buf->len) != 0) {
        node_log(NODE_LOG_ERROR, "cannot build a reply", NULL);
        nng_msg_free(w->req);
        w->req = NULL;
        node_work_recv(w);
        return;
    }
    memcpy(nng_msg_body(msg), buf->data, buf->len);
    nng_msg_free(w->req);
    w->req   = NULL;
    w->state = NODE_WORK_SEND;
    atomic_fetch_add(&w->srv->sending, 1);
    nng_aio_set_msg(w->aio, msg);
    lk_ctx_send(w->ctx, w->aio);
}

/* Counts a refusal under its reason. */
static void
node_count_reject(struct node_stats *stats, int status)
{
    switch (status) {
    case MRD_EPROTO:
    case MRD_EINVAL:
        NODE_STAT_ADD(stats, rejected_proto, 1);
        break;
    case MRD_EPROTOVERSION:
        NODE_STAT_ADD(stats, rejected_version, 1);
        break;
    case MRD_ETOOBIG:
        NODE_STAT_ADD(stats, rejected_too_big, 1);
        break;
    case MRD_ENAME:
        NODE_STAT_ADD(stats, rejected_name, 1);
        break;
    case MRD_EBUSY:
        NODE_STAT_ADD(stats, rejected_busy, 1);
        break;
    case MRD_EIDEMPOTENCY:
        NODE_STAT_ADD(stats, rejected_idempotency, 1);
        break;
    case MRD_EVERSION:
        NODE_STAT_ADD(stats, rejected_expected_version, 1);
        break;
    case MRD_ENOSPACE:
        NODE_STAT_ADD(stats, rejected_no_space, 1);
        break;
    case MRD_ECLOSED:
        NODE_STAT_ADD(stats, rejected_closed, 1);
        break;
    case MRD_ETYPE:
        NODE_STAT_ADD(stats, rejected_state, 1);
        break;
    case MRD_ENOTREPLICA:
        NODE_STAT_ADD(stats, rejected_not_replica, 1);
        break;
    case MRD_EFENCED:
        NODE_STAT_ADD(stats, rejected_fenced, 1);
        break;
    case MRD_ECAUSAL:
        NODE_STAT_ADD(stats, rejected_causal, 1);
        break;
    default:
        break;
    }
}

static void
node_work_error(struct node_work *w, int status, const char *why,
    bool has_version, int64_t version)
{
    struct proto_event_in ev = { 0 };

    node_count_reject(&w->srv->stats, status);
    if (w->type == PROTO_T_APPEND && w->append_decoded) {
        /* The event in hand, by its ids (never its payload): its first. */
        struct proto_rd rd;
        proto_events_begin(&w->append.req, &rd);
        if (proto_events_next(&rd, &ev) != MRD_OK) {
            memset(&ev, 0, sizeof(ev));
        }
    }
    node_log(NODE_LOG_DEBUG, "request refused", "{s:s, s:s, s:i, s:s%, s:s%}",
        "error", mrd_errname(status), "why", why != NULL ? why : "", "type",
        (int) w->type, "correlation_id",
        ev.correlation.ptr != NULL ? ev.correlation.ptr : "",
        (size_t) ev.correlation.len, "causation_id",
        ev.causation.ptr != NULL ? ev.causation.ptr : "",
        (size_t) ev.causation.len);
    proto_buf_reset(&w->small);
    proto_reply_error(&w->small, w->type, (uint32_t) status,
        why != NULL ? why : mrd_strerror(status), has_version, version);
    node_work_send(w, &w->small);
}

/* ------------------------------------------------------------- dispatch -- */

static uint64_t
node_stream_hash(struct proto_str s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: only to match waiters */
    for (uint32_t i = 0; i < s.len; i++) {
        h = (h ^ (uint8_t) s.ptr[i]) * 1099511628211ull;
    }
    return h;
}

static void
node_reply_node_info(struct node_work *w)
{
    struct node_server *srv  = w->srv;
    mrd_node_info       info = { 0 };

    info.node_id = srv->store->node_id;
    memcpy(info.cluster_id, srv->store->cluster_id, 16);
    info.shard_count      = srv->store->shard_count;
    info.protocol_version = PROTO_VERSION;
    info.frame_size_max   = srv->cfg->frame_size_max;
    snprintf(info.version, sizeof(info.version), "%s", MRD_VERSION_STRING);
    proto_buf_reset(&w->small);
    proto_node_rep_encode(&w->small, &info);
    node_work_send(w, &w->small);
}

/* Events in every shard log of this node: how far it has caught up,
 * comparable across replicas (tools draw lag from it). */
static uint64_t
node_log_events(struct node_store *store)
{
    uint64_t n = 0;
    pthread_mutex_lock(&store->write_mu); /* the counters' writers hold it */
    for (uint32_t i = 0; i < store->shard_count; i++) {
        n += store->log_seq_last[i];
    }
    pthread_mutex_unlock(&store->write_mu);
    return n;
}

static void
node_reply_stats(struct node_work *w)
{
    struct node_stats *s       = &w->srv->stats;
    struct lk_stats   *ls      = node_security_stats(w->srv->sec);
    struct proto_stat  stats[] = {
#define NODE_STAT_ROW_(name) { #name, atomic_load(&s->name) },
        NODE_STATS(NODE_STAT_ROW_)
#undef NODE_STAT_ROW_
        /* Secure links, every socket of the node (net/linkio.h). */
        /* A gauge: events held, every shard. */
        { "log_events", node_log_events(w->srv->store) },
        { "link_sessions", atomic_load(&ls->sessions) },
        { "link_stalls", atomic_load(&ls->stalled) },
        { "link_redials", atomic_load(&ls->redials) },
        { "rejected_link_malformed",
            atomic_load(&ls->refused[LK_R_MALFORMED]) },
        { "rejected_link_version", atomic_load(&ls->refused[LK_R_VERSION]) },
        { "rejected_link_cluster", atomic_load(&ls->refused[LK_R_CLUSTER]) },
        { "rejected_link_untrusted",
            atomic_load(&ls->refused[LK_R_UNTRUSTED]) },
        { "rejected_link_frame", atomic_load(&ls->refused[LK_R_FRAME]) },
        { "rejected_link_early", atomic_load(&ls->refused[LK_R_EARLY]) },
        { "rejected_link_timeout", atomic_load(&ls->refused[LK_R_TIMEOUT]) },
        { "rejected_link_revoked", atomic_load(&ls->refused[LK_R_REVOKED]) },
        { "rejected_link_overflow", atomic_load(&ls->refused[LK_R_OVERFLOW]) },
    };
    _Static_assert(LK_R_COUNT_ == 9, "a STATS row per link refusal");
    proto_buf_reset(&w->small);
    proto_stats_rep_encode(&w->small, stats, MRD_ARRAY_SIZE(stats));
    node_work_send(w, &w->small);
}

/* ---------------------------------------------------------------- fence -- */

/* Whether a drill's fence holds now. One that outlived its time is lifted
 * here, by whichever request sees it first, and logged. */
static bool
node_fence_active(struct node_server *srv)
{
    uint64_t until = atomic_load(&srv->fence_until_ms);
    if (until == 0) {
        return false;
    }
    if (mrd_now_mono_ms() < until) {
        return true;
    }
    pthread_mutex_lock(&srv->fence_mu);
    if (atomic_load(&srv->fence_until_ms) == until) {
        node_log(NODE_LOG_WARN, "a drill's fence ran out and lifted itself",
            "{s:s}", "label", srv->fence.label);
        atomic_store(&srv->fence_until_ms, 0);
        memset(&srv->fence, 0, sizeof(srv->fence));
    }
    pthread_mutex_unlock(&srv->fence_mu);
    return false;
}

/* A request from node `from` (a PULL, HINT or SWIM) while a fence names
 * it: refused, so the node looks cut off from it both ways. */
static bool
node_fence_refuses_peer(struct node_server *srv, uint64_t from)
{
    bool refused = false;
    if (!node_fence_active(srv)) {
        return false;
    }
    pthread_mutex_lock(&srv->fence_mu);
    for (uint32_t i = 0; i < srv->fence.peer_count && !refused; i++) {
        refused = srv->fence.peers[i] == from;
    }
    pthread_mutex_unlock(&srv->fence_mu);
    return refused;
}

/* A client request while a fence refuses clients: the stream requests,
 * which an application makes and the library fails over. The operations
 * requests (node info, stats, status, fence, digest), shard log reads (a
 * tool's, and the drill's own recovery-point read) and topology are always
 * served, so the drill that set the fence can watch, measure and lift it. */
static bool
node_fence_refuses_client(struct node_server *srv, uint32_t type)
{
    if (type != PROTO_T_APPEND && type != PROTO_T_READ && type != PROTO_T_INFO
        && type != PROTO_T_STATE) {
        return false;
    }
    if (!node_fence_active(srv)) {
        return false;
    }
    pthread_mutex_lock(&srv->fence_mu);
    bool refused = srv->fence.clients;
    pthread_mutex_unlock(&srv->fence_mu);
    return refused;
}

void
node_server_fence_view(struct node_server *srv, struct node_fence_view *out)
{
    bool active = node_fence_active(srv);
    pthread_mutex_lock(&srv->fence_mu);
    *out = srv->fence;
    if (active) {
        uint64_t until = atomic_load(&srv->fence_until_ms);
        uint64_t now   = mrd_now_mono_ms();
        out->active    = true;
        out->left_ms   = until > now ? until - now : 0;
    } else {
        memset(out, 0, sizeof(*out));
    }
    pthread_mutex_unlock(&srv->fence_mu);
}

/* Sends a JSON document reply (STATUS, FENCE) from a buffer of its own:
 * w->small is too small for a status document. */
static void
node_send_doc(struct node_work *w, uint32_t type, char *json, size_t len)
{
    struct proto_buf buf;
    proto_buf_init(&buf, PROTO_DOC_SIZE_MAX + 64u);
    if (len < 2 || len > PROTO_DOC_SIZE_MAX) {
        node_work_error(w, MRD_ETOOBIG,
            "the document is larger than PROTO_DOC_SIZE_MAX", false, 0);
    } else {
        proto_doc_rep_encode(&buf, type, json, len);
        node_work_send(w, &buf);
    }
    proto_buf_fini(&buf);
    free(json);
}

static char *
node_fence_json(const struct node_fence_view *f, size_t *len)
{
    json_t *peers = json_array();
    for (uint32_t i = 0; peers != NULL && i < f->peer_count; i++) {
        json_array_append_new(peers, json_integer((json_int_t) f->peers[i]));
    }
    json_t *doc  = json_pack("{s:b, s:b, s:I, s:I, s:o, s:s}", "fenced",
         f->active, "clients", f->clients, "left_ms", (json_int_t) f->left_ms,
         "since_ms", (json_int_t) f->since_ms, "peers",
        peers != NULL ? peers : json_array(), "label", f->label);
    char   *text = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    *len = text != NULL ? strlen(text) : 0;
    return text;
}

static void
node_reply_fence(struct node_work *w, const struct proto_fence_req *req)
{
    struct node_server    *srv = w->srv;
    struct node_fence_view view;

    pthread_mutex_lock(&srv->fence_mu);
    memset(&srv->fence, 0, sizeof(srv->fence));
    if (req->ms > 0) {
        srv->fence.clients    = req->clients;
        srv->fence.since_ms   = mrd_now_real_ms();
        srv->fence.peer_count = req->peers.len / 8;
        for (uint32_t i = 0; i < srv->fence.peer_count; i++) {
            srv->fence.peers[i]
                = mrd_be64_get((const uint8_t *) req->peers.ptr + 8 * i);
        }
        memcpy(srv->fence.label, req->label.ptr, req->label.len);
        srv->fence.label[req->label.len] = '\0';
        atomic_store(&srv->fence_until_ms, mrd_now_mono_ms() + req->ms);
    } else {
        atomic_store(&srv->fence_until_ms, 0);
    }
    pthread_mutex_unlock(&srv->fence_mu);
    node_server_fence_view(srv, &view);
    node_log(NODE_LOG_WARN,
        req->ms > 0 ? "fenced by a failover drill" : "a drill's fence lifted",
        "{s:s, s:b, s:i, s:I}", "label", view.label, "clients", view.clients,
        "peers", (int) view.peer_count, "ms", (json_int_t) req->ms);
    size_t len;
    char  *json = node_fence_json(&view, &len);
    if (json == NULL) {
        node_work_error(w, MRD_ENOMEM, "cannot encode the fence", false, 0);
        return;
    }
    node_send_doc(w, PROTO_T_FENCE, json, len);
}

static void
node_reply_status(struct node_work *w)
{
    char  *json = NULL;
    size_t len  = 0;
    int    rv   = node_status_json(w->srv, w->srv->metrics_url, &json, &len);
    if (rv != MRD_OK) {
        node_work_error(w, rv, "cannot build the status document", false, 0);
        return;
    }
    node_send_doc(w, PROTO_T_STATUS, json, len);
}

void
node_server_set_metrics_url(struct node_server *srv, const char *url)
{
    snprintf(srv->metrics_url, sizeof(srv->metrics_url), "%s", url);
}

void
node_server_observe(struct node_server *srv, struct node_observe *out)
{
    memset(out, 0, sizeof(*out));
    out->cfg                 = srv->cfg;
    out->store               = srv->store;
    out->topology            = srv->topology;
    out->ae                  = srv->ae;
    out->liveness            = atomic_load(&srv->liveness);
    out->stats               = &srv->stats;
    out->link                = node_security_stats(srv->sec);
    out->url                 = srv->url;
    out->started_wall_ms     = srv->started_wall_ms;
    out->started_mono_ms     = srv->started_mono_ms;
    struct node_queue *qs[2] = { &srv->wq, &srv->rq };
    uint32_t          *ns[2] = { &out->queue_writer, &out->queue_reads };
    for (int i = 0; i < 2; i++) {
        pthread_mutex_lock(&qs[i]->mu);
        for (struct node_work *x = qs[i]->head; x != NULL; x = x->next) {
            (*ns[i])++;
        }
        pthread_mutex_unlock(&qs[i]->mu);
    }
    pthread_mutex_lock(&srv->park_mu);
    out->parked = srv->parked_count;
    for (struct node_work *x = srv->acks; x != NULL; x = x->next) {
        out->parked++;
    }
    pthread_mutex_unlock(&srv->park_mu);
}

/* Decodes every event's state ops once here, on an NNG thread, so the
 * writer only ever sees well-formed ops. A client's ops carry no deps: what
 * they observe is decided by the node that takes the write. */
static int
node_check_ops(struct node_append *a, const char **why)
{
    struct proto_rd       rd;
    struct proto_event_in ev;
    struct crdt_ops      *ops = NULL;
    int                   rv  = MRD_OK;

    proto_events_begin(&a->req, &rd);
    while (rv == MRD_OK && proto_events_next(&rd, &ev) == MRD_OK) {
        if (ev.ops.len == 0) {
            continue;
        }
        if (ops == NULL && (ops = malloc(sizeof(*ops))) == NULL) {
            *why = "out of memory";
            return MRD_ENOMEM;
        }
        rv = crdt_ops_decode(ops, ev.ops.ptr, ev.ops.len, why);
        if (rv == MRD_OK && ops->deps.n > 0) {
            rv   = MRD_EPROTO;
            *why = "ops in an append carry no deps";
        }
        if (rv == MRD_OK) {
            a->has_ops = true;
            a->op_count += ops->count;
        }
    }
    free(ops);
    return rv;
}

/* Decodes an append and hands it to the writer. */
/* Refuses a stream request for a shard this node is not a replica of:
 * MRD_ENOTREPLICA, with the replicas to ask instead. True when refused. */
static bool
node_not_replica(struct node_work *w, struct proto_str stream)
{
    struct node_server *srv = w->srv;
    if (srv->topology == NULL) {
        return false;
    }
    uint32_t shard = node_store_shard_of(srv->store, stream.ptr, stream.len);
    if (node_topology_holds(srv->topology, shard)) {
        return false;
    }
    char replicas[256];
    char why[384];
    node_topology_replicas(srv->topology, shard, replicas, sizeof replicas);
    snprintf(why, sizeof why,
        "node %llu is not a replica of shard %u (topology version %llu); its "
        "replicas: %s",
        (unsigned long long) srv->store->node_id, shard,
        (unsigned long long) node_topology_version(srv->topology), replicas);
    node_work_error(w, MRD_ENOTREPLICA, why, false, 0);
    return true;
}

/* Whether the sender's key and role allow the request (on this stream,
 * when stream is not NULL): refusals are counted. */
static int
node_work_allowed(struct node_work *w, uint32_t type, const char *stream,
    size_t len, const char **why)
{
    int rv = node_security_check(
        w->srv->sec, lk_ctx_peer(w->ctx), type, stream, len, why);
    if (rv != MRD_OK) {
        NODE_STAT_ADD(&w->srv->stats, rejected_role, 1);
    }
    return rv;
}

/* A node's request names its sender (PULL, HINT, SWIM): the key that sent
 * it must be that node's, so one node cannot speak for another. */
static int
node_work_speaks_for(struct node_work *w, uint64_t from, const char **why)
{
    if (node_security_is_node(w->srv->sec, lk_ctx_peer(w->ctx), from)) {
        return MRD_OK;
    }
    NODE_STAT_ADD(&w->srv->stats, rejected_role, 1);
    *why = "the request names another node than the key that sent it";
    return MRD_EPERM;
}

static void
node_dispatch_append(struct node_work *w, struct proto_rd *body)
{
    struct node_append *a   = &w->append;
    const char         *why = NULL;
    int                 rv;

    memset(a, 0, sizeof(*a));
    rv                = proto_append_req_decode(body, &a->req, &why);
    w->append_decoded = rv == MRD_OK;
    if (rv == MRD_OK) {
        rv = node_work_allowed(
            w, PROTO_T_APPEND, a->req.stream.ptr, a->req.stream.len, &why);
    }
    if (rv != MRD_OK) {
        node_work_error(w, rv, why, false, 0);
        return;
    }
    if (node_not_replica(w, a->req.stream)) {
        return;
    }
    rv = node_check_ops(a, &why);
    if (rv != MRD_OK) {
        node_work_error(w, rv, why, false, 0);
        return;
    }
    a->shard = node_store_shard_of(
        w->srv->store, a->req.stream.ptr, a->req.stream.len);
    if (a->req.idem_key.len > 0) {
        uint8_t h[crypto_shorthash_BYTES];
        crypto_shorthash(h, (const unsigned char *) a->req.events_raw.ptr,
            a->req.events_raw.len, node_digest_key);
        memcpy(&a->digest, h, sizeof(a->digest));
    }
    w->stream_hash = node_stream_hash(a->req.stream);
    w->state       = NODE_WORK_QUEUED;
    if (!node_queue_push(&w->srv->wq, w)) {
        node_work_error(w, MRD_ECLOSED, "the node is shutting down", false, 0);
    }
}

/* Decodes a read-side request and hands it to the readers. */
static void
node_dispatch_read(struct node_work *w, struct proto_rd *body)
{
    const char *why = NULL;
    int         rv  = MRD_EPROTO;

    switch (w->type) {
    case PROTO_T_READ:
        rv             = proto_read_req_decode(body, &w->read, &why);
        w->stream_hash = node_stream_hash(w->read.stream);
        break;
    case PROTO_T_READ_LOG:
        rv = proto_log_req_decode(body, &w->log, &why);
        break;
    case PROTO_T_INFO:
        rv = proto_info_req_decode(body, &w->stream, &why);
        break;
    case PROTO_T_STATE:
        rv = proto_state_req_decode(body, &w->state_req, &why);
        break;
    case PROTO_T_PULL:
        rv = proto_pull_req_decode(body, &w->pull, &why);
        if (rv == MRD_OK) {
            rv = node_work_speaks_for(w, w->pull.from, &why);
        }
        if (rv == MRD_OK && node_fence_refuses_peer(w->srv, w->pull.from)) {
            rv  = MRD_EFENCED;
            why = "fenced off from this node by a failover drill";
        }
        break;
    case PROTO_T_DIGEST:
        rv = proto_digest_req_decode(body, &w->digest, &why);
        break;
    default:
        MRD_ASSERT(!"not a read-side type");
    }
    if (rv == MRD_OK) {
        const struct proto_str *stream = w->type == PROTO_T_READ
            ? &w->read.stream
            : w->type == PROTO_T_INFO  ? &w->stream
            : w->type == PROTO_T_STATE ? &w->state_req.stream
                                       : NULL;
        if (stream != NULL) {
            rv = node_work_allowed(w, w->type, stream->ptr, stream->len, &why);
        }
    }
    if (rv != MRD_OK) {
        node_work_error(w, rv, why, false, 0);
        return;
    }
    /* Stream reads go to a replica; shard log reads and pulls are served
     * by any node that has the log (a node placed away from a shard still
     * holds what it took before, and its peers must be able to pull it). */
    if ((w->type == PROTO_T_READ && node_not_replica(w, w->read.stream))
        || (w->type == PROTO_T_INFO && node_not_replica(w, w->stream))
        || (w->type == PROTO_T_STATE
            && node_not_replica(w, w->state_req.stream))) {
        return;
    }
    w->parked_once = false;
    w->final       = false;
    w->state       = NODE_WORK_QUEUED;
    if (!node_queue_push(&w->srv->rq, w)) {
        node_work_error(w, MRD_ECLOSED, "the node is shutting down", false, 0);
    }
}

static void
node_work_dispatch(struct node_work *w)
{
    struct node_server *srv = w->srv;
    struct proto_frame  frame;
    const char         *why = NULL;
    size_t              len = nng_msg_len(w->req);
    int                 rv;

    NODE_STAT_ADD(&srv->stats, requests, 1);
    w->start_us       = mrd_now_mono_us();
    w->append_decoded = false;
    w->type           = 0;
    rv      = proto_request_open(nng_msg_body(w->req), len, &frame, &why);
    w->type = frame.type <= PROTO_T_MAX_ ? frame.type : 0;
    if (rv == MRD_OK && len > srv->cfg->frame_size_max) {
        rv  = MRD_ETOOBIG;
        why = "the request is larger than the node's frame limit";
    }
    if (rv == MRD_EPROTOVERSION) {
        node_work_error(w, rv, why, true, PROTO_VERSION);
        return;
    }
    if (rv == MRD_OK && atomic_load(&srv->stopping)) {
        rv  = MRD_ECLOSED;
        why = "the node is shutting down";
    }
    if (rv == MRD_OK) {
        rv = node_work_allowed(w, frame.type, NULL, 0, &why);
    }
    if (rv == MRD_OK && node_fence_refuses_client(srv, frame.type)) {
        rv  = MRD_EFENCED;
        why = "this node is fenced by a failover drill (meridianctl drill); "
              "another node serves";
    }
    if (rv != MRD_OK) {
        node_work_error(w, rv, why, false, 0);
        return;
    }
    switch (frame.type) {
    case PROTO_T_APPEND:
        if (atomic_load(&srv->store->joining)) {
            /* node_store_joined() says why: a client takes the append to
             * another replica meanwhile. */
            NODE_STAT_ADD(&srv->stats, rejected_joining, 1);
            node_work_error(w, MRD_EBUSY,
                "this node started on an empty data dir and takes appends "
                "once it has read every live replica's log",
                false, 0);
            return;
        }
        node_dispatch_append(w, &frame.body);
        return;
    case PROTO_T_HINT: {
        /* Answered here, on the NNG thread: it only sets a flag. */
        struct proto_hint_req hint;
        rv = proto_hint_req_decode(&frame.body, &hint, &why);
        if (rv == MRD_OK) {
            rv = node_work_speaks_for(w, hint.from, &why);
        }
        if (rv == MRD_OK && node_fence_refuses_peer(srv, hint.from)) {
            rv  = MRD_EFENCED;
            why = "fenced off from this node by a failover drill";
        }
        if (rv != MRD_OK) {
            node_work_error(w, rv, why, false, 0);
            return;
        }
        NODE_STAT_ADD(&srv->stats, hints_received, 1);
        pthread_rwlock_rdlock(&srv->hint_lock);
        if (srv->hint_in != NULL) {
            srv->hint_in(srv->hint_arg, hint.from,
                (const uint8_t *) hint.shards.ptr, hint.shards.len);
        }
        pthread_rwlock_unlock(&srv->hint_lock);
        proto_buf_reset(&w->small);
        proto_reply_begin(&w->small, PROTO_T_HINT, MRD_OK);
        proto_wr_map(&w->small, 0);
        node_work_send(w, &w->small);
        return;
    }
    case PROTO_T_SWIM: {
        /* Queued for the liveness thread; answered at once. */
        uint64_t         from;
        struct proto_str msg;
        rv = proto_swim_req_decode(&frame.body, &from, &msg, &why);
        if (rv == MRD_OK) {
            rv = node_work_speaks_for(w, from, &why);
        }
        if (rv == MRD_OK && node_fence_refuses_peer(srv, from)) {
            rv  = MRD_EFENCED;
            why = "fenced off from this node by a failover drill";
        }
        if (rv != MRD_OK) {
            node_work_error(w, rv, why, false, 0);
            return;
        }
        node_liveness_recv(atomic_load(&srv->liveness), from, msg.ptr, msg.len);
        proto_buf_reset(&w->small);
        proto_reply_begin(&w->small, PROTO_T_SWIM, MRD_OK);
        proto_wr_map(&w->small, 0);
        node_work_send(w, &w->small);
        return;
    }
    case PROTO_T_TOPOLOGY: {
        uint64_t have;
        rv = proto_topo_req_decode(&frame.body, &have, &why);
        if (rv == MRD_OK && srv->topology == NULL) {
            rv  = MRD_ENOTFOUND;
            why = "this node runs without a topology (--peers)";
        }
        if (rv != MRD_OK) {
            node_work_error(w, rv, why, false, 0);
            return;
        }
        proto_buf_reset(&w->small);
        if (node_topology_reply(srv->topology, have, &w->small) != MRD_OK) {
            node_work_error(
                w, MRD_ENOMEM, "cannot encode the topology", false, 0);
            return;
        }
        node_work_send(w, &w->small);
        return;
    }
    case PROTO_T_TOPOLOGY_PUSH: {
        /* Verified against the topology held (signature, then the rules
         * of topo_accept) before anything uses it; a refusal is logged and
         * counted. */
        struct proto_str signed_topo;
        rv = proto_topo_push_decode(&frame.body, &signed_topo, &why);
        if (rv == MRD_OK) {
            rv = node_topology_offer(
                srv->topology, signed_topo.ptr, signed_topo.len, &why);
            if (rv != MRD_OK) {
                NODE_STAT_ADD(&srv->stats, rejected_topology, 1);
                node_log(NODE_LOG_WARN, "refused a topology", "{s:s, s:s}",
                    "error", mrd_errname(rv), "why", why);
            } else {
                NODE_STAT_ADD(&srv->stats, topology_updates, 1);
            }
        }
        if (rv != MRD_OK) {
            node_work_error(w, rv, why, false, 0);
            return;
        }
        proto_buf_reset(&w->small);
        proto_topo_push_rep_encode(
            &w->small, node_topology_version(srv->topology));
        node_work_send(w, &w->small);
        return;
    }
    case PROTO_T_NODE_INFO:
    case PROTO_T_STATS:
    case PROTO_T_STATUS:
        rv = proto_empty_req_decode(&frame.body, &why);
        if (rv != MRD_OK) {
            node_work_error(w, rv, why, false, 0);
        } else if (frame.type == PROTO_T_NODE_INFO) {
            node_reply_node_info(w);
        } else if (frame.type == PROTO_T_STATUS) {
            node_reply_status(w);
        } else {
            node_reply_stats(w);
        }
        return;
    case PROTO_T_FENCE: {
        struct proto_fence_req fence;
        rv = proto_fence_req_decode(&frame.body, &fence, &why);
        if (rv != MRD_OK) {
            node_work_error(w, rv, why, false, 0);
            return;
        }
        node_reply_fence(w, &fence);
        return;
    }
    default:
        node_dispatch_read(w, &frame.body);
        return;
    }
}

static void
node_work_cb(void *arg)
{
    struct node_work   *w   = arg;
    struct node_server *srv = w->srv;
    int                 rv  = nng_aio_result(w->aio);

    switch (w->state) {
    case NODE_WORK_RECV:
        if (rv != 0) {
            if (rv == NNG_ECLOSED || atomic_load(&srv->closing)) {
                return;
            }
            node_work_recv(w);
            return;
        }
        /* The aio's message slot is only ever set while a send is
         * pending, so stop can tell an unsent answer from a taken one. */
        w->req = nng_aio_get_msg(w->aio);
        nng_aio_set_msg(w->aio, NULL);
        node_work_dispatch(w);
        return;
    case NODE_WORK_SEND:
        atomic_fetch_sub(&srv->sending, 1);
        if (rv != 0) {
            /* Not sent: the message is still ours (the peer went away). */
            nng_msg_free(nng_aio_get_msg(w->aio));
        }
        nng_aio_set_msg(w->aio, NULL);
        if (atomic_load(&srv->closing)) {
            return;
        }
        node_work_recv(w);
        return;
    case NODE_WORK_QUEUED:
        MRD_ASSERT(!"callback while queued");
    }
}

/* --------------------------------------------------------------- writer -- */

/* Takes a batch: at least one append, then as many as fit the limits. */
static size_t
node_writer_take(
    struct node_server *srv, struct node_work **batch, size_t batch_max)
{
    size_t   n      = 0;
    uint64_t events = 0, bytes = 0;

    while (n < batch_max) {
        struct node_work *w = srv->wq.head;
        if (w == NULL) {
            break;
        }
        const struct proto_append_req *r = &w->append.req;
        if (n > 0
            && (events + r->event_count > NODE_COMMIT_EVENTS_MAX
                || bytes + r->events_size > NODE_COMMIT_BYTES_MAX)) {
            break;
        }
        events += r->event_count;
        bytes += r->events_size;
        batch[n++] = node_queue_pop_locked(&srv->wq);
    }
    return n;
}

/* ----------------------------------------------- acknowledgement levels -- */

/* Counts the replicas of this node's region and the regions that hold
 * every event of the append (this node included), and says whether that
 * is the level asked for. Caller holds park_mu. */
static bool
node_ack_count(struct node_server *srv, struct node_append *a)
{
    const char *own    = srv->cfg->region;
    uint64_t    last   = a->rep.seq + a->rep.count - 1;
    uint32_t    copies = 1, nregions = 1;
    const char *regions[NODE_KNOWN_PEERS_MAX + 1];

    regions[0] = own;
    if (srv->ae != NULL) {
        /* Topology mode: the replicas the placement names, as far as this
         * node knows (its own pullers' PULLs and what digests relay). */
        struct ae_ack ack;
        uint32_t      self_region;
        node_ae_ack(srv->ae, a->shard, last, &ack, &self_region);
        copies   = self_region < AE_REGIONS_MAX ? ack.held[self_region] : 1;
        nregions = 0;
        for (uint32_t r = 0; r < AE_REGIONS_MAX; r++) {
            nregions += ack.held[r] > 0 ? 1u : 0u;
        }
    }
    for (uint32_t i = 0; srv->ae == NULL && i < srv->known_count; i++) {
        const struct node_known_peer *k = &srv->known[i];
        if (k->own_seq[a->shard] < last || k->region[0] == '\0') {
            continue;
        }
        if (strcmp(k->region, own) == 0) {
            copies++;
        }
        bool seen = false;
        for (uint32_t r = 0; r < nregions && !seen; r++) {
            seen = strcmp(regions[r], k->region) == 0;
        }
        if (!seen) {
            regions[nregions++] = k->region;
        }
    }
    a->rep.ack_asked    = true;
    a->rep.ack_replicas = copies;
    a->rep.ack_regions  = nregions;
    bool reached        = a->req.ack.level == MRD_ACK_REGION
               ? copies >= a->req.ack.count
               : nregions >= a->req.ack.count;
    a->rep.ack_level    = reached ? a->req.ack.level : MRD_ACK_LOCAL;
    return reached;
}

/* An append answered with success: counted by the level it asked for,
 * with its latency from arrival to answer. */
static void
node_append_observe(struct node_server *srv, const struct node_work *w)
{
    uint32_t level = w->append.req.ack.level < NODE_ACK_LEVELS
        ? w->append.req.ack.level
        : MRD_ACK_LOCAL;
    NODE_STAT_ADD(&srv->stats, appends_by_ack[level], 1);
    NODE_STAT_ADD(
        &srv->stats, append_bytes_by_ack[level], w->append.req.events_raw.len);
    node_hist_observe(&srv->stats.append_latency[level], &node_hist_latency_us,
        mrd_now_mono_us() - w->start_us);
}

static void
node_ack_answer(struct node_server *srv, struct node_work *w)
{
    node_append_observe(srv, w);
    if (w->append.rep.ack_level == w->append.req.ack.level) {
        NODE_STAT_ADD(&srv->stats, acks_reached, 1);
    } else {
        NODE_STAT_ADD(&srv->stats, acks_timed_out, 1);
    }
    proto_buf_reset(&w->small);
    proto_append_rep_encode(&w->small, &w->append.rep);
    node_work_send(w, &w->small);
}

/* Answers an append at once if its level is reached, else parks it until
 * a pull shows it is (node_ack_check) or its wait is over (the timer). */
static void
node_ack_wait(struct node_server *srv, struct node_work *w)
{
    pthread_mutex_lock(&srv->park_mu);
    if (node_ack_count(srv, &w->append) || atomic_load(&srv->stopping)) {
        pthread_mutex_unlock(&srv->park_mu);
        node_ack_answer(srv, w);
        return;
    }
    w->deadline_ms = mrd_now_mono_ms() + w->append.req.ack.wait_ms;
    w->next        = srv->acks;
    srv->acks      = w;
    pthread_cond_signal(&srv->park_cv); /* the timer takes the new deadline */
    pthread_mutex_unlock(&srv->park_mu);
}

static void node_ack_recheck_locked(struct node_server *srv, uint32_t shard);
static int  node_pull_serve(struct node_server *srv, struct node_work *w,
     struct proto_buf *buf, uint32_t *count, const char **why);

void
node_server_ack_recheck(struct node_server *srv, uint32_t shard)
{
    pthread_mutex_lock(&srv->park_mu);
    if (srv->acks == NULL) {
        pthread_mutex_unlock(&srv->park_mu);
        return;
    }
    node_ack_recheck_locked(srv, shard);
}

/* A PULL from `pull->from` says what it holds of this node's events in one
 * shard: remember it, and answer the appends of that shard it completes. */
static void
node_ack_learn(struct node_server *srv, const struct proto_pull_req *pull)
{
    uint64_t                seq = proto_vv_get(pull->vv, srv->store->node_id);
    struct node_known_peer *k   = NULL;

    if (pull->from == srv->store->node_id) {
        return; /* ourselves, by a misconfiguration: counts for nothing */
    }
    pthread_mutex_lock(&srv->park_mu);
    for (uint32_t i = 0; i < srv->known_count && k == NULL; i++) {
        if (srv->known[i].id == pull->from) {
            k = &srv->known[i];
        }
    }
    if (k == NULL && srv->known_count < NODE_KNOWN_PEERS_MAX) {
        uint64_t *own = calloc(srv->store->shard_count, sizeof(uint64_t));
        if (own != NULL) {
            k          = &srv->known[srv->known_count++];
            k->id      = pull->from;
            k->own_seq = own;
        }
    }
    if (k == NULL) {
        pthread_mutex_unlock(&srv->park_mu);
        return;
    }
    /* The region a node names in its pulls; unauthenticated until secure
     * links (issue 5), then taken from the signed topology instead. */
    size_t rlen = pull->region.len;
    memcpy(k->region, pull->region.ptr != NULL ? pull->region.ptr : "", rlen);
    k->region[rlen] = '\0';
    if (seq > k->own_seq[pull->shard]) {
        k->own_seq[pull->shard] = seq;
    }
    node_ack_recheck_locked(srv, pull->shard);
}

/* Answers the parked appends of the shard whose level is now reached.
 * Called with park_mu held; returns with it released. */
static void
node_ack_recheck_locked(struct node_server *srv, uint32_t shard)
{
    struct node_work  *done = NULL;
    struct node_work **link = &srv->acks;
    while (*link != NULL) {
        struct node_work *w = *link;
        if (w->append.shard == shard && node_ack_count(srv, &w->append)) {
            *link   = w->next;
            w->next = done;
            done    = w;
        } else {
            link = &w->next;
        }
    }
    pthread_mutex_unlock(&srv->park_mu);
    while (done != NULL) {
        struct node_work *w = done;
        done                = w->next;
        node_ack_answer(srv, w);
    }
}

/* Answers the appends whose wait is over (all of them once the node
 * stops) with the level they reached, and lowers *next_ms to the next
 * deadline. Caller holds park_mu. */
static void
node_ack_expire(struct node_server *srv, uint64_t now, uint64_t *next_ms)
{
    bool               all  = atomic_load(&srv->stopping);
    struct node_work **link = &srv->acks;

    while (*link != NULL) {
        struct node_work *w = *link;
        if (all || w->deadline_ms <= now) {
            *link = w->next;
            node_ack_count(srv, &w->append);
            node_ack_answer(srv, w);
        } else {
            if (w->deadline_ms < *next_ms) {
                *next_ms = w->deadline_ms;
            }
            link = &w->next;
        }
    }
}

static void
node_writer_answer(struct node_server *srv, struct node_work *w)
{
    struct node_append *a = &w->append;

    if (a->rv != MRD_OK) {
        node_work_error(
            w, a->rv, a->why, a->rv == MRD_EVERSION, a->current_version);
        return;
    }
    NODE_STAT_ADD(&srv->stats, appends, 1);
    if (a->rep.replayed) {
        NODE_STAT_ADD(&srv->stats, idempotent_replays, 1);
    } else {
        NODE_STAT_ADD(&srv->stats, events_appended, a->rep.count);
        NODE_STAT_ADD(&srv->stats, state_ops_applied, a->op_count);
    }
    if (a->req.ack.level != MRD_ACK_LOCAL) {
        node_ack_wait(srv, w);
        return;
    }
    node_append_observe(srv, w);
    proto_buf_reset(&w->small);
    proto_append_rep_encode(&w->small, &a->rep);
    node_work_send(w, &w->small);
}

#ifdef MRD_PLANTED_BUGS
/* Planted bug ack-before-fsync (plant.h): the store calls this with the
 * batch applied in a transaction it has not committed yet, and commits
 * NODE_PLANT_ACK_DELAY_MS after it returns. Every append is answered now,
 * with the dots and positions the transaction gave it. Once answered, a
 * work object may take its next request at any moment, so what the writer
 * needs after the commit (the shards, for hints) is kept here first. */
static void
node_plant_answer_batch(void *arg, struct node_append **appends, size_t n)
{
    struct node_server *srv = arg;

    memset(srv->plant_shards, 0, sizeof srv->plant_shards);
    for (size_t i = 0; i < n; i++) {
        const struct node_append *a = appends[i];
        if (a->rv == MRD_OK && !a->rep.replayed) {
            srv->plant_shards[a->shard / 8] |= (uint8_t) (1u << (a->shard % 8));
        }
    }
    srv->plant_answered = true;
    for (size_t i = 0; i < n; i++) {
        struct node_work *w = (struct node_work *) (void *) ((char *) appends[i]
            - offsetof(struct node_work, append));
        node_writer_answer(srv, w);
    }
}
#endif

static int
node_hash_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

/* After a commit: bump the generation and requeue parked reads of the
 * streams just written. hashes is sorted. */
static void
node_wake_parked(struct node_server *srv, const uint64_t *hashes, size_t n)
{
    pthread_mutex_lock(&srv->park_mu);
    atomic_fetch_add(&srv->commit_gen, 1);
    struct node_work **link = &srv->parked;
    while (*link != NULL) {
        struct node_work *w = *link;
        if (n > 0
            && bsearch(
                   &w->stream_hash, hashes, n, sizeof(uint64_t), node_hash_cmp)
                != NULL) {
            *link = w->next;
            srv->parked_count--;
            pthread_mutex_lock(&srv->rq.mu);
            node_queue_push_locked(&srv->rq, w);
            pthread_mutex_unlock(&srv->rq.mu);
        } else {
            link = &w->next;
        }
    }
    pthread_mutex_unlock(&srv->park_mu);
}

void
node_server_set_liveness(struct node_server *srv, struct node_liveness *lv)
{
    atomic_store(&srv->liveness, lv);
}

void
node_server_set_hints(struct node_server *srv, node_hint_in_fn in,
    node_hint_out_fn out, void *arg)
{
    pthread_rwlock_wrlock(&srv->hint_lock);
    srv->hint_arg = arg;
    srv->hint_in  = in;
    srv->hint_out = out;
    pthread_rwlock_unlock(&srv->hint_lock);
}

struct node_stats *
node_server_stats(struct node_server *srv)
{
    return &srv->stats;
}

void
node_server_wake_all(struct node_server *srv)
{
    pthread_mutex_lock(&srv->park_mu);
    atomic_fetch_add(&srv->commit_gen, 1);
    while (srv->parked != NULL) {
        struct node_work *w = srv->parked;
        srv->parked         = w->next;
        srv->parked_count--;
        pthread_mutex_lock(&srv->rq.mu);
        node_queue_push_locked(&srv->rq, w);
        pthread_mutex_unlock(&srv->rq.mu);
    }
    pthread_mutex_unlock(&srv->park_mu);
}

/* Fail-stop: after an I/O error the page cache cannot be trusted. */
static void
node_writer_fail(struct node_server *srv)
{
    if (!atomic_exchange(&srv->failed, true)) {
        node_log(NODE_LOG_ERROR,
            "storage I/O error: stopping; rebuild or repair this node", NULL);
        kill(getpid(), SIGTERM);
    }
}

/* Commits a batch; on a full map retries the appends one by one so those
 * that fit still land. Fills every append's outcome. */
static void
node_writer_commit(struct node_server *srv, struct node_work **batch,
    struct node_append **appends, size_t n, struct proto_buf *scratch)
{
    int rv = MRD_EIO;

    if (!atomic_load(&srv->failed)) {
        uint64_t start_us = mrd_now_mono_us();
        rv = node_store_commit(srv->store, appends, n, scratch, &srv->stats);
        node_log(NODE_LOG_DEBUG, "commit", "{s:i, s:I, s:i}", "appends",
            (int) n, "us", (json_int_t) (mrd_now_mono_us() - start_us), "rv",
            rv);
    }
#ifdef MRD_PLANTED_BUGS
    /* ack-before-fsync: answered already; the appends are not ours. */
    if (srv->plant_answered) {
        if (rv == MRD_OK) {
            NODE_STAT_ADD(&srv->stats, commits, 1);
        } else {
            node_writer_fail(srv);
        }
        return;
    }
#endif
    if (rv == MRD_ENOSPACE && n > 1) {
        for (size_t i = 0; i < n; i++) {
            node_writer_commit(srv, batch + i, appends + i, 1, scratch);
        }
        return;
    }
    if (rv == MRD_OK) {
        NODE_STAT_ADD(&srv->stats, commits, 1);
        node_hist_observe(&srv->stats.commit_batch, &node_hist_batch, n);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        appends[i]->rv  = rv;
        appends[i]->why = rv == MRD_ENOSPACE
            ? "storage is full: the map is at --map-size-max or the disk is "
              "full"
            : "storage I/O error";
    }
    if (rv == MRD_EIO) {
        node_writer_fail(srv);
    }
}

static void
node_writer_batch(struct node_server *srv, struct node_work **batch, size_t n,
    struct node_append **appends, uint64_t *hashes, struct proto_buf *scratch)
{
    size_t touched = 0;

    for (size_t i = 0; i < n; i++) {
        appends[i] = &batch[i]->append;
    }
    node_writer_commit(srv, batch, appends, n, scratch);
#ifdef MRD_PLANTED_BUGS
    /* ack-before-fsync: answered before the commit; now that it is
     * committed, wake every long-poll and hint the shards kept. */
    if (srv->plant_answered) {
        srv->plant_answered = false;
        node_server_wake_all(srv);
        pthread_rwlock_rdlock(&srv->hint_lock);
        if (srv->hint_out != NULL) {
            srv->hint_out(srv->hint_arg, srv->plant_shards,
                (srv->store->shard_count + 7u) / 8u);
        }
        pthread_rwlock_unlock(&srv->hint_lock);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) {
        if (appends[i]->rv == MRD_OK && !appends[i]->rep.replayed) {
            hashes[touched++] = batch[i]->stream_hash;
        }
    }
    qsort(hashes, touched, sizeof(uint64_t), node_hash_cmp);
    node_wake_parked(srv, hashes, touched);
    if (touched > 0) {
        uint8_t shards[PROTO_HINT_SHARDS_SIZE_MAX] = { 0 };
        for (size_t i = 0; i < n; i++) {
            const struct node_append *a = appends[i];
            if (a->rv == MRD_OK && !a->rep.replayed) {
                shards[a->shard / 8] |= (uint8_t) (1u << (a->shard % 8));
            }
        }
        pthread_rwlock_rdlock(&srv->hint_lock);
        if (srv->hint_out != NULL) {
            srv->hint_out(
                srv->hint_arg, shards, (srv->store->shard_count + 7u) / 8u);
        }
        pthread_rwlock_unlock(&srv->hint_lock);
    }
    for (size_t i = 0; i < n; i++) {
        node_writer_answer(srv, batch[i]);
    }
}

static void *
node_writer_main(void *arg)
{
    struct node_server  *srv     = arg;
    size_t               max     = srv->work_count;
    struct node_work   **batch   = calloc(max, sizeof(*batch));
    struct node_append **appends = calloc(max, sizeof(*appends));
    uint64_t            *hashes  = calloc(max, sizeof(*hashes));
    struct proto_buf     scratch;
    uint64_t             check_ms = mrd_now_mono_ms();

    MRD_ASSERT(batch != NULL && appends != NULL && hashes != NULL);
    proto_buf_init(&scratch, PROTO_RECORD_SIZE_MAX + 8);
    for (;;) {
        pthread_mutex_lock(&srv->wq.mu);
        while (srv->wq.head == NULL && !srv->wq.closed) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += NODE_WRITER_TICK_MS / 1000u;
            pthread_cond_timedwait(&srv->wq.cv, &srv->wq.mu, &ts);
            if (srv->wq.head == NULL) {
                break;
            }
        }
        size_t n      = node_writer_take(srv, batch, max);
        bool   closed = srv->wq.closed;
        pthread_mutex_unlock(&srv->wq.mu);
        if (n > 0) {
            node_writer_batch(srv, batch, n, appends, hashes, &scratch);
        } else if (closed) {
            break;
        }
        if (mrd_now_mono_ms() - check_ms >= NODE_READER_CHECK_MS) {
            int dead = 0;
            mdb_reader_check(srv->store->env, &dead);
            check_ms = mrd_now_mono_ms();
        }
    }
    proto_buf_fini(&scratch);
    free(hashes);
    free(appends);
    free(batch);
    return NULL;
}

/* -------------------------------------------------------------- readers -- */

/* Read replies are built up to PROTO_READ_REPLY_MAX; every client accepts
 * that much. */
enum node_park_result {
    NODE_PARKED,
    NODE_PARK_RETRY, /* a commit happened since the read: read again */
    NODE_PARK_NO, /* full, or stopping: answer now */
};

static enum node_park_result
node_park(struct node_server *srv, struct node_work *w, uint64_t gen)
{
    enum node_park_result r = NODE_PARKED;

    pthread_mutex_lock(&srv->park_mu);
    if (atomic_load(&srv->stopping)) {
        r = NODE_PARK_NO;
    } else if (atomic_load(&srv->commit_gen) != gen) {
        r = NODE_PARK_RETRY;
    } else if (srv->parked_count >= srv->parked_max) {
        r = NODE_PARK_NO; /* an empty answer; the client polls again */
    } else {
        if (!w->parked_once) {
            w->deadline_ms = mrd_now_mono_ms() + w->read.wait_ms;
            w->parked_once = true;
            NODE_STAT_ADD(&srv->stats, long_polls_parked, 1);
        }
        w->next     = srv->parked;
        srv->parked = w;
        srv->parked_count++;
        pthread_cond_signal(&srv->park_cv);
    }
    pthread_mutex_unlock(&srv->park_mu);
    return r;
}

static void
node_reader_read(
    struct node_server *srv, struct node_work *w, struct proto_buf *buf)
{
    const char *why = NULL;
    uint32_t    count;
    int         rv;

    for (;;) {
        uint64_t gen = atomic_load(&srv->commit_gen);
        uint64_t next;
        bool     at_end;
        proto_buf_reset(buf);
        rv = node_store_read_stream(srv->store, &w->read, buf, &count, &next,
            &at_end, &srv->stats, &why);
        if (rv != MRD_OK || count > 0 || w->read.wait_ms == 0 || w->final
            || w->read.direction != MRD_FORWARD) {
            break;
        }
        if (w->read.has_cursor) {
            if (!at_end) {
                break; /* the scan stopped at its bound: the client goes on */
            }
            /* Everything before `next` is covered: the wait resumes there. */
            w->read.from      = next;
            w->read.hint_node = srv->store->node_id;
        }
        enum node_park_result p = node_park(srv, w, gen);
        if (p == NODE_PARKED) {
            return;
        }
        if (p == NODE_PARK_NO) {
            break;
        }
    }
    NODE_STAT_ADD(&srv->stats, reads, 1);
    if (rv != MRD_OK) {
        node_work_error(w, rv, why, false, 0);
        return;
    }
    node_work_send(w, buf);
}

static void
node_reader_serve(
    struct node_server *srv, struct node_work *w, struct proto_buf *buf)
{
    const char     *why = NULL;
    uint32_t        count;
    mrd_stream_info info;
    int             rv;

    switch (w->type) {
    case PROTO_T_READ:
        node_reader_read(srv, w, buf);
        return;
    case PROTO_T_READ_LOG:
        proto_buf_reset(buf);
        rv = node_store_read_log(
            srv->store, &w->log, buf, &count, &srv->stats, &why);
        NODE_STAT_ADD(&srv->stats, reads, 1);
        break;
    case PROTO_T_INFO:
        rv = node_store_stream_info(srv->store, w->stream, &info);
        if (rv == MRD_OK) {
            proto_buf_reset(buf);
            proto_info_rep_encode(buf, &info);
        }
        why = "cannot read the stream's metadata";
        break;
    case PROTO_T_STATE:
        proto_buf_reset(buf);
        rv = node_store_state_read(
            srv->store, &w->state_req, buf, &srv->stats, &why);
        NODE_STAT_ADD(&srv->stats, reads, 1);
        break;
    case PROTO_T_PULL:
        rv = node_pull_serve(srv, w, buf, &count, &why);
        break;
    case PROTO_T_DIGEST: {
        struct proto_digest_rep rep;
        uint8_t                *vv = malloc((size_t) CRDT_ORIGINS_MAX * 16u);
        rv                         = vv != NULL ? node_store_digest(
                                         srv->store, &w->digest, &rep, vv, &srv->stats, &why)
                                                : MRD_ENOMEM;
        if (rv == MRD_OK) {
            proto_buf_reset(buf);
            proto_digest_rep_encode(buf, &rep);
        }
        free(vv);
        NODE_STAT_ADD(&srv->stats, reads, 1);
        break;
    }
    default:
        MRD_ASSERT(!"not a read-side type");
        return;
    }
    if (rv != MRD_OK) {
        node_work_error(w, rv, why, false, 0);
        return;
    }
    node_work_send(w, buf);
}

/* A PULL. In topology mode it also carries knowledge both ways: the
 * asker's vector and digest go into this node's, and the reply carries this
 * node's digest (replication/ae.h). */
static int
node_pull_serve(struct node_server *srv, struct node_work *w,
    struct proto_buf *buf, uint32_t *count, const char **why)
{
    const struct proto_pull_req *pull   = &w->pull;
    struct node_pull_ae          pae    = { node_ae_region_of, srv->ae, { 0 } };
    struct proto_buf             digest = { 0 };
    int                          rv;

    if (pull->shard >= srv->store->shard_count) {
        *why = "no such shard";
        return MRD_EINVAL;
    }
    if (srv->ae != NULL
        && (pull->cluster.len != 16
            || memcmp(pull->cluster.ptr, srv->store->cluster_id, 16) != 0)) {
        *why = "the asker is not of this cluster (its --cluster-id differs)";
        return MRD_EINVAL; /* learn nothing from it */
    }
    if (srv->ae != NULL) {
        const char *dwhy = NULL;
        if (node_ae_report(srv->ae, pull->shard, pull->from, pull->vv) != MRD_OK
            || node_ae_absorb(srv->ae, pull->shard, pull->digest, &dwhy)
                != MRD_OK) {
            /* Knowledge only: the pull is still served. */
            NODE_STAT_ADD(&srv->stats, rejected_digest, 1);
            node_log(NODE_LOG_WARN, "refused a pull's digest",
                "{s:I, s:i, s:s}", "peer", (json_int_t) pull->from, "shard",
                (int) pull->shard, "why", dwhy != NULL ? dwhy : "no memory");
        }
        uint8_t *own     = malloc(16u * CRDT_ORIGINS_MAX);
        uint32_t own_len = 0;
        proto_buf_init(&digest, PROTO_DIGEST_SIZE_MAX);
        if (own != NULL
            && node_store_shard_vv(srv->store, pull->shard, own, &own_len)
                == MRD_OK
            && node_ae_digest(srv->ae, pull->shard,
                   (struct proto_str) { (const char *) own, own_len }, &digest)
                == MRD_OK) {
            pae.digest = (struct proto_str) { (const char *) digest.data,
                (uint32_t) digest.len };
        }
        free(own);
    }
    proto_buf_reset(buf);
    rv = node_store_pull(srv->store, pull, srv->ae != NULL ? &pae : NULL, buf,
        count, &srv->stats, why);
    proto_buf_fini(&digest);
    NODE_STAT_ADD(&srv->stats, pulls_served, 1);
    if (rv == MRD_OK) {
        node_ack_learn(srv, pull); /* checked: our cluster */
    }
    return rv;
}

static void *
node_reader_main(void *arg)
{
    struct node_server *srv = arg;
    struct proto_buf    buf;

    proto_buf_init(&buf, PROTO_READ_REPLY_MAX);
    for (;;) {
        pthread_mutex_lock(&srv->rq.mu);
        while (srv->rq.head == NULL && !srv->rq.closed) {
            pthread_cond_wait(&srv->rq.cv, &srv->rq.mu);
        }
        struct node_work *w = node_queue_pop_locked(&srv->rq);
        pthread_mutex_unlock(&srv->rq.mu);
        if (w == NULL) {
            break; /* closed and drained */
        }
        node_reader_serve(srv, w, &buf);
    }
    proto_buf_fini(&buf);
    return NULL;
}

/* Moves parked long-polls whose wait is over (all of them once the node
 * stops) to the readers, and says when the next wait ends. Caller holds
 * park_mu. */
static void
node_timer_expire(struct node_server *srv, uint64_t now, uint64_t *next_ms)
{
    bool               all  = atomic_load(&srv->stopping);
    struct node_work **link = &srv->parked;

    *next_ms = now + NODE_WRITER_TICK_MS;
    while (*link != NULL) {
        struct node_work *w = *link;
        if (all || w->deadline_ms <= now) {
            *link = w->next;
            srv->parked_count--;
            w->final = true;
            pthread_mutex_lock(&srv->rq.mu);
            node_queue_push_locked(&srv->rq, w);
            pthread_mutex_unlock(&srv->rq.mu);
        } else {
            if (w->deadline_ms < *next_ms) {
                *next_ms = w->deadline_ms;
            }
            link = &w->next;
        }
    }
    node_ack_expire(srv, now, next_ms);
}

/* The timer thread: holds park_mu except while it waits. */
static void *
node_timer_main(void *arg)
{
    struct node_server *srv = arg;

    pthread_mutex_lock(&srv->park_mu);
    for (;;) {
        uint64_t next_ms;
        node_timer_expire(srv, mrd_now_mono_ms(), &next_ms);
        if (atomic_load(&srv->timer_stop)) {
            break;
        }
        uint64_t        wait_ms = next_ms - mrd_now_mono_ms();
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if ((int64_t) wait_ms < 1) {
            wait_ms = 1;
        }
        ts.tv_sec += (time_t) (wait_ms / 1000u);
        ts.tv_nsec += (long) (wait_ms % 1000u) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&srv->park_cv, &srv->park_mu, &ts);
    }
    pthread_mutex_unlock(&srv->park_mu);
    return NULL;
}

/* ------------------------------------------------------- start and stop -- */

/* Replaces port 0 in the configured URL by the port actually bound. */
static void
node_server_resolve_url(struct node_server *srv)
{
    nng_sockaddr sa;
    const char  *colon = strrchr(srv->cfg->listen, ':');

    snprintf(srv->url, sizeof(srv->url), "%s", srv->cfg->listen);
    if (colon == NULL
        || nng_listener_get_addr(srv->listener, NNG_OPT_LOCADDR, &sa) != 0) {
        return;
    }
    uint16_t port = 0;
    if (sa.s_family == NNG_AF_INET) {
        port = ntohs(sa.s_in.sa_port);
    } else if (sa.s_family == NNG_AF_INET6) {
        port = ntohs(sa.s_in6.sa_port);
    } else {
        return;
    }
    snprintf(srv->url, sizeof(srv->url), "%.*s:%u",
        (int) (colon - srv->cfg->listen), srv->cfg->listen, (unsigned) port);
}

static int
node_server_works_init(struct node_server *srv)
{
    srv->work_count = srv->cfg->workers;
    srv->works      = calloc(srv->work_count, sizeof(*srv->works));
    if (srv->works == NULL) {
        return MRD_ENOMEM;
    }
    for (uint32_t i = 0; i < srv->work_count; i++) {
        struct node_work *w = &srv->works[i];
        w->srv              = srv;
        proto_buf_init(&w->small, NODE_SMALL_REPLY_MAX);
        if (nng_aio_alloc(&w->aio, node_work_cb, w) != 0
            || lk_ctx_open(srv->lk, &w->ctx) != MRD_OK) {
            return MRD_ENOMEM;
        }
    }
    return MRD_OK;
}

static int
node_server_threads_start(struct node_server *srv)
{
    srv->reader_count = srv->cfg->readers;
    if (pthread_create(&srv->writer, NULL, node_writer_main, srv) != 0) {
        return MRD_ENOMEM;
    }
    if (pthread_create(&srv->timer, NULL, node_timer_main, srv) != 0) {
        return MRD_ENOMEM;
    }
    for (uint32_t i = 0; i < srv->reader_count; i++) {
        if (pthread_create(&srv->readers[i], NULL, node_reader_main, srv)
            != 0) {
            return MRD_ENOMEM;
        }
    }
    return MRD_OK;
}

int
node_server_start(const struct node_config *cfg, struct node_store *store,
    struct node_topology *topology, struct node_ae *ae,
    struct node_security *sec, struct node_server **server_out)
{
    struct node_server *srv = calloc(1, sizeof(*srv));
    int                 rv;

    *server_out = NULL;
    if (srv == NULL) {
        return MRD_ENOMEM;
    }
    srv->cfg      = cfg;
    srv->store    = store;
    srv->topology = topology;
    srv->ae       = ae;
    srv->sec      = sec;
    if (atomic_load(&store->joining)) {
        NODE_STAT_ADD(&srv->stats, joining, 1);
    }
    srv->parked_max = NODE_PARKED_MAX(cfg->workers);
    node_queue_init(&srv->wq);
    node_queue_init(&srv->rq);
    pthread_mutex_init(&srv->park_mu, NULL);
    pthread_mutex_init(&srv->fence_mu, NULL);
    pthread_cond_init(&srv->park_cv, NULL);
    pthread_rwlock_init(&srv->hint_lock, NULL);
    srv->started_wall_ms = mrd_now_real_ms();
    srv->started_mono_ms = mrd_now_mono_ms();
    /* Past the frame limit by a little, a request still gets MRD_ETOOBIG;
     * far past it NNG drops the connection without buffering it (the
     * session's frame limit sets NNG_OPT_RECVMAXSZ). */
    struct lk_config lcfg;
    node_security_lk_config(
        sec, true, (size_t) cfg->frame_size_max + NODE_FRAME_SLACK, &lcfg);
    rv = lk_open_listener(&lcfg, &srv->lk);
    sodium_memzero(&lcfg, sizeof(lcfg));
    if (rv != MRD_OK) {
        free(srv);
        return rv;
    }
    srv->sock = lk_nng(srv->lk);
    node_security_register(sec, srv->lk);
    rv = node_server_works_init(srv);
#ifdef MRD_PLANTED_BUGS
    /* ack-before-fsync: how the store answers a batch before its commit. */
    node_plant_answer_set(node_plant_answer_batch, srv);
#endif
    if (rv == MRD_OK) {
        rv = node_server_threads_start(srv);
    }
    if (rv != MRD_OK) {
        node_log(NODE_LOG_ERROR, "cannot start the server", NULL);
        abort(); /* half-started threads cannot be unwound: out of memory */
    }
    int nrv = nng_listen(srv->sock, cfg->listen, &srv->listener, 0);
    if (nrv != 0) {
        node_log(NODE_LOG_ERROR, "cannot listen", "{s:s, s:s}", "listen",
            cfg->listen, "error", nng_strerror(nrv));
        node_server_stop(srv);
        return nrv == NNG_EADDRINUSE ? MRD_EBUSY : MRD_EINVAL;
    }
    node_server_resolve_url(srv);
    for (uint32_t i = 0; i < srv->work_count; i++) {
        node_work_recv(&srv->works[i]);
    }
    *server_out = srv;
    return MRD_OK;
}

const char *
node_server_url(const struct node_server *server)
{
    return server->url;
}

bool
node_server_failed(const struct node_server *server)
{
    return atomic_load(&server->failed);
}

static void
node_queue_close(struct node_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void
node_server_stop(struct node_server *srv)
{
    /* The listener stays open until the answers are out: closing it would
     * close its connections too, and drop the answers to requests the node
     * has already committed. New requests get MRD_ECLOSED meanwhile. */
    atomic_store(&srv->stopping, true);
    /* Appends already queued are committed and answered. */
    node_queue_close(&srv->wq);
    pthread_join(srv->writer, NULL);
#ifdef MRD_PLANTED_BUGS
    node_plant_answer_set(NULL, NULL);
#endif
    /* Parked long-polls are answered by the readers, then both stop. */
    pthread_mutex_lock(&srv->park_mu);
    atomic_store(&srv->timer_stop, true);
    pthread_cond_broadcast(&srv->park_cv);
    pthread_mutex_unlock(&srv->park_mu);
    pthread_join(srv->timer, NULL);
    pthread_mutex_lock(&srv->park_mu);
    uint64_t unused;
    node_timer_expire(srv, mrd_now_mono_ms(), &unused);
    pthread_mutex_unlock(&srv->park_mu);
    node_queue_close(&srv->rq);
    for (uint32_t i = 0; i < srv->reader_count; i++) {
        pthread_join(srv->readers[i], NULL);
    }
    /* Let answers handed to NNG leave before the sockets close. */
    uint64_t deadline = mrd_now_mono_ms() + NODE_STOP_FLUSH_MS;
    while (atomic_load(&srv->sending) > 0 && mrd_now_mono_ms() < deadline) {
        nng_msleep(5);
    }
    /* NNG's order: stop every aio (waiting out its callback, which sees
     * `closing` and re-arms nothing), close the contexts, then the socket.
     * Closing the socket first can leave NNG's reaper waiting on a send to
     * a peer that no longer reads. */
    atomic_store(&srv->closing, true);
    for (uint32_t i = 0; i < srv->work_count; i++) {
        nng_aio *aio = srv->works[i].aio;
        if (aio == NULL) {
            continue;
        }
        nng_aio_stop(aio);
        /* A callback that was answering as the aio stopped had its send
         * refused without a completion: the answer is still ours. */
        nng_msg *unsent = nng_aio_get_msg(aio);
        if (unsent != NULL) {
            nng_aio_set_msg(aio, NULL);
            nng_msg_free(unsent);
        }
    }
    for (uint32_t i = 0; i < srv->work_count; i++) {
        lk_ctx_close(srv->works[i].ctx);
    }
    lk_shutdown(srv->lk);
    nng_listener_close(srv->listener);
    /* No nng_close(): NNG 1.5.2, Debian's, can hang in it for ever
     * (nanomsg/nng#1543), and the process exits right after this anyway.
     * Every aio is stopped and every context closed, so no callback of ours
     * can run again; the kernel closes the connections. */
    for (uint32_t i = 0; i < srv->work_count; i++) {
        struct node_work *w = &srv->works[i];
        nng_aio_free(w->aio);
        if (w->req != NULL) {
            nng_msg_free(w->req);
        }
        proto_buf_fini(&w->small);
    }
    free(srv->works);
    for (uint32_t i = 0; i < srv->known_count; i++) {
        free(srv->known[i].own_seq);
    }
    node_queue_fini(&srv->wq);
    node_queue_fini(&srv->rq);
    pthread_mutex_destroy(&srv->park_mu);
    pthread_mutex_destroy(&srv->fence_mu);
    pthread_cond_destroy(&srv->park_cv);
    pthread_rwlock_destroy(&srv->hint_lock);
    free(srv);
}
