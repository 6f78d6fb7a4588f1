/*
 * topology.c: the cluster's signed topology in the client: the cache that
 * routes stream calls, its refresh, and the calls that read and push it.
 *
 * The cache holds the newest verified version. The first one is opened with
 * topo_open_signed(): it proves the document whole and signed by the admin
 * key inside it, and the key is trusted because a node the caller named
 * sent it (as a node trusts its bootstrap file because an operator put it
 * there). Every later one must come through topo_accept() against the
 * cached one: signed by the same admin key, a strictly newer version, and
 * a change an admin could make. So a node cannot move the client to
 * another cluster or another admin, or back to an old version.
 *
 * A refresh is a TOPOLOGY call of its own on the client's reserved call
 * object (client.c), so it never takes a slot of the caller's pool and
 * never blocks anyone: it asks with `have` = the cached version, so the
 * answer is a few bytes when nothing changed; it is verified and swapped in
 * by its done function on an NNG thread (a signature check and a decode:
 * CPU only). Refreshes start when a client opens, lazily when a stream call
 * starts an attempt and CLIENT_TOPO_REFRESH_MS has passed, and out of turn
 * when a node answers MRD_ENOTREPLICA (then the refusing node is asked
 * first: it holds a version at least as new as the one it refused by).
 * One runs at a time.
 *
 * Locks: the cache's rwlock guards the document and what is derived from
 * it (home region, node map); the cache's mutex guards the refresh state.
 * Neither is held across a call start or a socket open: the order
 * client->mtx -> call->mtx (close cancelling) and cache->mtx -> call->mtx
 * are the only nestings.
 */
#include "client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------- cache -- */

int
client_topo_init(struct client_topo *cache)
{
    pthread_condattr_t attr;
    bool               lock_ok = false;
    bool               mtx_ok  = false;

    cache->topo       = NULL;
    cache->home       = -1;
    cache->refreshing = false;
    cache->call       = NULL;
    cache->stale_ms   = 0;
    cache->prefer     = -1;
    cache->again      = false;
    atomic_init(&cache->answered, false);
    atomic_init(&cache->version, 0);
    atomic_init(&cache->next_ms, 0);
    for (size_t i = 0; i < TOPO_NODES_MAX; i++) {
        atomic_init(&cache->node_map[i], -1);
    }
    if (pthread_rwlock_init(&cache->lock, NULL) != 0) {
        goto fail;
    }
    lock_ok = true;
    if (pthread_mutex_init(&cache->mtx, NULL) != 0) {
        goto fail;
    }
    mtx_ok = true;
    /* Waits are bounded by monotonic deadlines, like every other wait in
     * the library. */
    if (pthread_condattr_init(&attr) != 0) {
        goto fail;
    }
    int rv = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rv == 0) {
        rv = pthread_cond_init(&cache->cv, &attr);
    }
    pthread_condattr_destroy(&attr);
    if (rv != 0) {
        goto fail;
    }
    return MRD_OK;

fail:
    if (mtx_ok) {
        pthread_mutex_destroy(&cache->mtx);
    }
    if (lock_ok) {
        pthread_rwlock_destroy(&cache->lock);
    }
    return MRD_ENOMEM;
}

void
client_topo_fini(struct client_topo *cache)
{
    MRD_ASSERT(cache->call == NULL);
    pthread_cond_destroy(&cache->cv);
    pthread_mutex_destroy(&cache->mtx);
    pthread_rwlock_destroy(&cache->lock);
    free(cache->topo);
    cache->topo = NULL;
}

/* Verifies a signed topology a node sent and, when it is a valid successor
 * of the cached one (or the first one), swaps it in. MRD_OK, or the code
 * topo_open_signed()/topo_accept() gave (nothing changes). Runs in the
 * refresh's done function: only it writes cache->topo, and one refresh
 * runs at a time, so reading cache->topo here needs no lock. */
static MRD_MUST_USE int
client_topo_apply(struct mrd_client *client, const void *buf, size_t len)
{
    struct client_topo *cache = &client->topo;
    struct topo        *cur   = cache->topo;
    struct topo        *next  = malloc(sizeof *next);
    const char         *why   = NULL;
    int                 map[TOPO_NODES_MAX];
    int32_t             home = -1;
    uint32_t            region;
    int                 rv;

    if (next == NULL) {
        return MRD_ENOMEM;
    }
    rv = cur == NULL ? topo_open_signed(buf, len, next, &why)
                     : topo_accept(cur, buf, len, next, &why);
    if (rv != MRD_OK) {
        free(next);
        return rv;
    }
    if (client->region[0] != '\0'
        && topo_region_by_name(next, client->region, &region) == MRD_OK) {
        home = (int32_t) region;
    }
    /* Which of its nodes the client has a socket for already: by address,
     * the caller's included. */
    for (uint32_t i = 0; i < TOPO_NODES_MAX; i++) {
        map[i]
            = i < next->node_count && next->nodes[i].state != TOPO_NODE_REMOVED
            ? client_node_find(client, next->nodes[i].address)
            : -1;
    }
    pthread_rwlock_wrlock(&cache->lock);
    cache->topo = next;
    cache->home = home;
    for (uint32_t i = 0; i < TOPO_NODES_MAX; i++) {
        atomic_store(&cache->node_map[i], map[i]);
    }
    atomic_store(&cache->version, next->version);
    pthread_rwlock_unlock(&cache->lock);
    free(cur); /* no reader holds it: they read it under the lock */
    return MRD_OK;
}

/* -------------------------------------------------------------- refresh -- */

static MRD_MUST_USE int
client_topo_decode(struct client_call *call, struct proto_rd *body)
{
    struct proto_str signed_topo;
    const char      *why = NULL;

    if (proto_topo_rep_decode(body, &call->topo_version, &signed_topo, &why)
        != MRD_OK) {
        return MRD_EPROTO;
    }
    if (signed_topo.len > 0) {
        call->blob = malloc(signed_topo.len);
        if (call->blob == NULL) {
            return MRD_ENOMEM;
        }
        memcpy(call->blob, signed_topo.ptr, signed_topo.len);
        call->blob_len = signed_topo.len;
    }
    return MRD_OK;
}

/* When the next lazy refresh may start, given how this one ended. */
static uint64_t
client_topo_next_ms(struct mrd_client *client, int err, int applied)
{
    uint64_t now_ms = mrd_now_mono_ms();
    bool     have   = atomic_load(&client->topo.version) != 0;

    switch (err) {
    case MRD_OK:
        /* A document that did not verify may be a node's bad copy: ask
         * again soon, maybe another node. */
        return now_ms
            + (applied == MRD_OK ? CLIENT_TOPO_REFRESH_MS
                                 : CLIENT_TOPO_RETRY_MS);
    case MRD_EUNAVAIL:
    case MRD_ETIMEDOUT:
    case MRD_EBUSY:
    case MRD_ECLOSED:
    case MRD_ENOMEM:
        return now_ms + CLIENT_TOPO_RETRY_MS; /* nobody answered */
    default:
        /* A node answered that it has no topology (MRD_ENOTFOUND: started
         * with --peers) or does not know the request (an older node): a
         * static cluster, which only a restart changes. */
        return now_ms + (have ? CLIENT_TOPO_REFRESH_MS : CLIENT_TOPO_ABSENT_MS);
    }
}

/* The end of a refresh, on an NNG thread. */
static void
client_topo_refresh_done(struct client_call *call)
{
    struct mrd_client  *client  = call->client;
    struct client_topo *cache   = &client->topo;
    int                 applied = MRD_OK;

    if (call->err == MRD_OK && call->blob != NULL) {
        applied = client_topo_apply(client, call->blob, call->blob_len);
    }
    uint64_t next_ms = client_topo_next_ms(client, call->err, applied);
    /* A document that does not verify is dropped (the cached one stays)
     * and asked for again after CLIENT_TOPO_RETRY_MS: client_topo_next_ms(). */
    pthread_mutex_lock(&cache->mtx);
    cache->refreshing = false;
    cache->call       = NULL;
    atomic_store(&cache->answered, true);
    /* A node refused a request while this refresh was in flight: the next
     * stream attempt starts another at once, asking that node first. */
    atomic_store(&cache->next_ms, cache->again ? 0 : next_ms);
    cache->again = false;
    pthread_cond_broadcast(&cache->cv);
    pthread_mutex_unlock(&cache->mtx);
    client_call_put(call); /* nothing touches client after this */
}

/* The nodes a refresh asks, in order: `prefer`, then every node with a
 * connection (answers come fastest there), then the caller's addresses. */
static void
client_topo_refresh_list(
    struct mrd_client *client, struct client_call *call, int prefer)
{
    size_t   node_count = atomic_load(&client->node_count);
    uint32_t n          = 0;

    call->route = CLIENT_ROUTE_LIST;
    if (prefer >= 0 && (size_t) prefer < node_count) {
        call->cands[n++] = (struct client_cand) { 0, (int16_t) prefer };
    }
    for (int pass = 0; pass < 2; pass++) {
        size_t end = pass == 0 ? node_count : client->addr_count;
        for (size_t i = 0; i < end && n < CLIENT_CANDS_MAX; i++) {
            bool seen = false;
            if (pass == 0 && atomic_load(&client->nodes[i].pipe_count) <= 0) {
                continue;
            }
            for (uint32_t j = 0; j < n && !seen; j++) {
                seen = call->cands[j].node == (int16_t) i;
            }
            if (!seen) {
                call->cands[n++] = (struct client_cand) { 0, (int16_t) i };
            }
        }
    }
    MRD_ASSERT(n > 0); /* the caller gave at least one address */
    call->cand_count = n;
    call->cand_pos   = 0;
}

/* Starts a refresh on the reserved call. MRD_OK: it will end through
 * client_topo_refresh_done(). Otherwise nothing runs. */
static MRD_MUST_USE int
client_topo_refresh_start(struct mrd_client *client, int prefer)
{
    struct client_topo *cache = &client->topo;
    struct client_call *call  = NULL;
    bool                closing;
    int                 rv;

    rv = client_call_get_reserved(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    call->type    = PROTO_T_TOPOLOGY;
    call->decode  = client_topo_decode;
    call->done_fn = client_topo_refresh_done;
    client_topo_refresh_list(client, call, prefer);
    rv = proto_topo_req_encode(&call->req, atomic_load(&cache->version));
    if (rv != MRD_OK) {
        client_call_put(call);
        return rv;
    }
    /* Publish it for close to cancel, then look at closing: either close
     * sees the call, or we see close. */
    pthread_mutex_lock(&cache->mtx);
    cache->call = call;
    pthread_mutex_unlock(&cache->mtx);
    pthread_mutex_lock(&client->mtx);
    closing = client->closing;
    pthread_mutex_unlock(&client->mtx);
    rv = closing ? MRD_ECLOSED : client_call_start(call);
    if (rv != MRD_OK) {
        pthread_mutex_lock(&cache->mtx);
        cache->call = NULL;
        pthread_mutex_unlock(&cache->mtx);
        client_call_put(call);
    }
    return rv;
}

void
client_topo_refresh(struct mrd_client *client, bool stale, int prefer)
{
    struct client_topo *cache  = &client->topo;
    uint64_t            now_ms = mrd_now_mono_ms();

    if (!stale && now_ms < atomic_load(&cache->next_ms)) {
        return; /* the common case, without a lock */
    }
    pthread_mutex_lock(&cache->mtx);
    if (stale
        && (cache->refreshing
            || now_ms < cache->stale_ms + CLIENT_TOPO_STALE_MIN_MS)) {
        /* Remembered: the refresh in flight (or the next lazy one) asks
         * this node first. */
        cache->again  = cache->refreshing;
        cache->prefer = prefer;
        if (!cache->refreshing
            && atomic_load(&cache->next_ms)
                > cache->stale_ms + CLIENT_TOPO_STALE_MIN_MS) {
            atomic_store(
                &cache->next_ms, cache->stale_ms + CLIENT_TOPO_STALE_MIN_MS);
        }
        pthread_mutex_unlock(&cache->mtx);
        return;
    }
    if (cache->refreshing
        || (!stale && now_ms < atomic_load(&cache->next_ms))) {
        pthread_mutex_unlock(&cache->mtx);
        return;
    }
    if (!stale) {
        prefer = cache->prefer;
    } else {
        cache->stale_ms = now_ms;
    }
    cache->prefer     = -1;
    cache->refreshing = true;
    pthread_mutex_unlock(&cache->mtx);

    int rv = client_topo_refresh_start(client, prefer);
    if (rv != MRD_OK) {
        pthread_mutex_lock(&cache->mtx);
        cache->refreshing = false;
        atomic_store(&cache->next_ms, now_ms + CLIENT_TOPO_RETRY_MS);
        pthread_cond_broadcast(&cache->cv);
        pthread_mutex_unlock(&cache->mtx);
    }
}

void
client_topo_first_wait(struct mrd_client *client, uint64_t deadline_ms)
{
    struct client_topo *cache = &client->topo;
    uint64_t        until_ms  = mrd_now_mono_ms() + CLIENT_TOPO_FIRST_WAIT_MS;
    struct timespec ts;

    if (until_ms > deadline_ms) {
        until_ms = deadline_ms;
    }
    ts.tv_sec  = (time_t) (until_ms / 1000u);
    ts.tv_nsec = (long) (until_ms % 1000u) * 1000000L;
    if (atomic_load(&cache->answered)) {
        return;
    }
    pthread_mutex_lock(&cache->mtx);
    while (!atomic_load(&cache->answered) && cache->refreshing) {
        if (pthread_cond_timedwait(&cache->cv, &cache->mtx, &ts) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&cache->mtx);
}

bool
client_topo_first_pending(struct mrd_client *client)
{
    struct client_topo *cache = &client->topo;
    bool                pending;

    if (atomic_load(&cache->answered)) {
        return false;
    }
    pthread_mutex_lock(&cache->mtx);
    pending = !atomic_load(&cache->answered) && cache->refreshing;
    pthread_mutex_unlock(&cache->mtx);
    return pending;
}

void
client_topo_cancel(struct mrd_client *client)
{
    struct client_topo *cache = &client->topo;

    /* The refresh's done function clears cache->call under this mutex
     * before it puts the call, so a call seen here has not been put. */
    pthread_mutex_lock(&cache->mtx);
    if (cache->call != NULL) {
        client_call_cancel(cache->call);
    }
    pthread_mutex_unlock(&cache->mtx);
}

/* -------------------------------------------------------------- routing -- */

struct client_topo_health {
    struct mrd_client *client;
    const struct topo *t;
    uint64_t           now_ms;
};

/* The client node of a topology node, or -1. Under the cache's lock. */
static int
client_topo_node_index(const struct client_topo_health *h, uint32_t id)
{
    const struct topo_node *n = topo_node_by_id(h->t, id);

    if (n == NULL) {
        return -1;
    }
    return atomic_load(&h->client->topo.node_map[n - h->t->nodes]);
}

static bool
client_topo_suspect_cb(void *arg, uint32_t id)
{
    const struct client_topo_health *h   = arg;
    int                              idx = client_topo_node_index(h, id);

    /* A node without a socket yet is unknown, and unknown is healthy. */
    return idx >= 0 && client_node_suspect(&h->client->nodes[idx], h->now_ms);
}

static uint32_t
client_topo_rtt_cb(void *arg, uint32_t id)
{
    const struct client_topo_health *h   = arg;
    int                              idx = client_topo_node_index(h, id);

    return idx >= 0 ? atomic_load(&h->client->nodes[idx].rtt_us) : 0;
}

bool
client_topo_route_build(struct client_call *call)
{
    struct mrd_client         *client = call->client;
    struct client_topo        *cache  = &client->topo;
    uint32_t                   ids[CLIENT_ROUTE_IDS_MAX];
    struct client_topo_health  h = { client, NULL, mrd_now_mono_ms() };
    struct client_route_health health
        = { client_topo_suspect_cb, client_topo_rtt_cb, &h };
    uint32_t n;
    uint64_t version;

    MRD_ASSERT(call->route == CLIENT_ROUTE_STREAM && call->stream_len > 0);
    pthread_rwlock_rdlock(&cache->lock);
    h.t = cache->topo;
    if (h.t == NULL) {
        pthread_rwlock_unlock(&cache->lock);
        return false;
    }
    version        = h.t->version;
    uint32_t shard = topo_shard_of(
        h.t->cluster_id, h.t->shard_count, call->stream, call->stream_len);
    n = client_route_order(
        h.t, shard, cache->home, &health, ids, CLIENT_ROUTE_IDS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        int idx        = client_topo_node_index(&h, ids[i]);
        call->cands[i] = (struct client_cand) { ids[i],
            (int16_t) (idx >= 0 ? idx : CLIENT_CAND_UNOPENED) };
    }
    pthread_rwlock_unlock(&cache->lock);
    /* Then the caller's addresses the list does not hold yet: the last
     * resort, as the caller named them. */
    for (size_t a = 0; a < client->addr_count; a++) {
        bool seen = false;
        for (uint32_t j = 0; j < n && !seen; j++) {
            seen = call->cands[j].node == (int16_t) a;
        }
        if (!seen) {
            MRD_ASSERT(n < CLIENT_CANDS_MAX);
            call->cands[n++] = (struct client_cand) { 0, (int16_t) a };
        }
    }
    call->cand_count   = n;
    call->cand_pos     = 0;
    call->cand_version = version;
    return true;
}

int
client_topo_node_open(
    struct mrd_client *client, uint64_t version, uint32_t topo_id)
{
    struct client_topo     *cache = &client->topo;
    char                    url[TOPO_ADDRESS_SIZE_MAX + 1];
    const struct topo_node *n;
    size_t                  pos;
    int                     idx;

    pthread_rwlock_rdlock(&cache->lock);
    if (cache->topo == NULL || cache->topo->version != version) {
        pthread_rwlock_unlock(&cache->lock);
        return CLIENT_CAND_UNOPENED;
    }
    n = topo_node_by_id(cache->topo, topo_id);
    if (n == NULL || n->state == TOPO_NODE_REMOVED) {
        pthread_rwlock_unlock(&cache->lock);
        return CLIENT_CAND_SKIP;
    }
    pos = (size_t) (n - cache->topo->nodes);
    idx = atomic_load(&cache->node_map[pos]);
    memcpy(url, n->address, sizeof url);
    pthread_rwlock_unlock(&cache->lock);
    if (idx >= 0) {
        return idx; /* another call opened it meanwhile */
    }
    /* Outside the cache's lock: opening a socket takes NNG's locks. */
    idx = client_node_find_or_open(client, url);
    if (idx < 0) {
        return CLIENT_CAND_SKIP;
    }
    pthread_rwlock_rdlock(&cache->lock);
    if (cache->topo != NULL && cache->topo->version == version) {
        atomic_store(&cache->node_map[pos], idx);
    }
    pthread_rwlock_unlock(&cache->lock);
    return idx;
}

/* ------------------------------------------------------- topology calls -- */

void
mrd_free(void *p)
{
    free(p);
}

int
mrd_topology_get(mrd_client *client, uint64_t have, uint64_t *version_out,
    void **signed_out, size_t *len_out)
{
    struct client_call *call = NULL;
    int                 rv;

    if (signed_out != NULL) {
        *signed_out = NULL;
    }
    if (len_out != NULL) {
        *len_out = 0;
    }
    if (client == NULL || signed_out == NULL || len_out == NULL) {
        return MRD_EINVAL;
    }
    rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    call->type   = PROTO_T_TOPOLOGY;
    call->decode = client_topo_decode;
    rv = client_call_exec(call, proto_topo_req_encode(&call->req, have), NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    if (version_out != NULL) {
        *version_out = call->topo_version;
    }
    *signed_out = call->blob;
    *len_out    = call->blob_len;
    call->blob  = NULL;
    client_call_put(call);
    return MRD_OK;
}

static MRD_MUST_USE int
client_topo_push_decode(struct client_call *call, struct proto_rd *body)
{
    const char *why = NULL;

    return proto_topo_push_rep_decode(body, &call->topo_version, &why) == MRD_OK
        ? MRD_OK
        : MRD_EPROTO;
}

int
mrd_topology_push(mrd_client *client, const void *signed_topo, size_t len,
    uint64_t *version_out)
{
    struct client_call *call = NULL;
    int                 rv;

    if (client == NULL || signed_topo == NULL || len == 0) {
        return MRD_EINVAL;
    }
    if (len > PROTO_TOPOLOGY_SIZE_MAX) {
        return MRD_ETOOBIG;
    }
    rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    call->type   = PROTO_T_TOPOLOGY_PUSH;
    call->decode = client_topo_push_decode;
    rv           = client_call_exec(call,
                  proto_topo_push_encode(
                      &call->req, (struct proto_str) { signed_topo, (uint32_t) len }),
                  NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    if (version_out != NULL) {
        *version_out = call->topo_version;
    }
    client_call_put(call);
    return MRD_OK;
}
