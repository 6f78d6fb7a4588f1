/*
 * client.c: opening and closing a client, its nodes, and the call pool.
 *
 * Each node address gets its own req0 socket, dialled with NNG_FLAG_NONBLOCK
 * so open never waits for the network and NNG keeps reconnecting in the
 * background. NNG never resends a request by itself (RESENDTIME infinite):
 * retries are ours, after a backoff and usually on another node. A pipe
 * counter per socket, fed by NNG's pipe events, tells an attempt whether a
 * node is connected at all, so a dead first address costs one short wait
 * instead of a whole attempt timeout.
 *
 * Nodes the topology names that the caller did not list get a socket of
 * their own the first time a call needs one (client_node_find_or_open()),
 * in a fixed array of CLIENT_NODES_MAX slots that never moves, because
 * NNG's pipe callbacks hold pointers into it.
 *
 * Calls come from a pool of at most MRD_CLIENT_INFLIGHT_MAX objects, made on
 * first use and kept until close: an aio cannot be freed from its own
 * callback, and an async call ends in that callback. The pool also counts the
 * calls in flight, which is what mrd_client_close() waits for. One more call
 * object, made at open and outside the pool, is reserved for topology
 * refreshes (topology.c), so that a refresh never takes a slot the caller
 * counts on.
 */
#include "client.h"

#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
mrd_client_opts_init(mrd_client_opts *opts)
{
    if (opts == NULL) {
        return;
    }
    memset(opts, 0, sizeof *opts);
    opts->timeout_ms         = CLIENT_TIMEOUT_MS_DEFAULT;
    opts->attempt_timeout_ms = CLIENT_ATTEMPT_TIMEOUT_MS_DEFAULT;
    opts->backoff_min_ms     = CLIENT_BACKOFF_MIN_MS_DEFAULT;
    opts->backoff_max_ms     = CLIENT_BACKOFF_MAX_MS_DEFAULT;
    opts->frame_size_max     = CLIENT_FRAME_SIZE_MAX_DEFAULT;
}

/* Copies opts into *out with zeros replaced by the defaults, and checks every
 * value. Addresses are checked here but copied by the caller. */
static MRD_MUST_USE int
client_opts_check(const mrd_client_opts *opts, mrd_client_opts *out)
{
    mrd_client_opts def;

    mrd_client_opts_init(&def);
    if (opts->addresses == NULL || opts->address_count == 0
        || opts->address_count > CLIENT_ADDRESS_COUNT_MAX) {
        return MRD_EINVAL;
    }
    for (size_t i = 0; i < opts->address_count; i++) {
        const char *a = opts->addresses[i];
        if (a == NULL || a[0] == '\0'
            || strnlen(a, CLIENT_ADDRESS_SIZE_MAX) >= CLIENT_ADDRESS_SIZE_MAX) {
            return MRD_EINVAL;
        }
    }
    if (opts->region != NULL && opts->region[0] != '\0'
        && !topo_name_valid(
            opts->region, strnlen(opts->region, TOPO_NAME_SIZE_MAX + 1))) {
        return MRD_EINVAL;
    }
    *out           = *opts;
    out->addresses = NULL;
    out->region    = NULL; /* copied into client->region */
    /* Zero means "the default", so a caller can set only what it cares
     * about in a zeroed struct. */
    if (out->timeout_ms == 0) {
        out->timeout_ms = def.timeout_ms;
    }
    if (out->attempt_timeout_ms == 0) {
        out->attempt_timeout_ms = def.attempt_timeout_ms;
    }
    if (out->backoff_min_ms == 0) {
        out->backoff_min_ms = def.backoff_min_ms;
    }
    if (out->backoff_max_ms == 0) {
        out->backoff_max_ms = def.backoff_max_ms;
    }
    if (out->frame_size_max == 0) {
        out->frame_size_max = def.frame_size_max;
    }
    if (out->timeout_ms > CLIENT_TIMEOUT_MS_MAX
        || out->attempt_timeout_ms > CLIENT_TIMEOUT_MS_MAX
        || out->backoff_max_ms > CLIENT_TIMEOUT_MS_MAX
        || out->backoff_min_ms > out->backoff_max_ms) {
        return MRD_EINVAL;
    }
    /* At least a whole read reply, which a node may make as big as
     * PROTO_READ_REPLY_MAX: a smaller limit would drop read replies. */
    if (out->frame_size_max < PROTO_CLIENT_FRAME_SIZE_MIN
        || out->frame_size_max > MRD_FRAME_SIZE_MAX) {
        return MRD_EINVAL;
    }
    return MRD_OK;
}

/* Link sessions coming up and going, on NNG's threads: linkio reports a
 * down only for a session it reported up, so the counter never goes below
 * zero. */
static void
client_up_cb(void *arg, bool up)
{
    struct client_node *node = arg;

    if (up) {
        if (atomic_fetch_add(&node->pipe_count, 1) == 0) {
            atomic_store(&node->up_since_ms, mrd_now_mono_ms());
        }
    } else if (atomic_fetch_sub(&node->pipe_count, 1) == 1) {
        atomic_store(&node->down_since_ms, mrd_now_mono_ms());
    }
}

/* Which node keys a client accepts: its keyring's, and those of the
 * verified topology's nodes (learned nodes). On NNG's threads. */
static bool
client_trust(void *arg, const uint8_t pk[LINK_KEY_SIZE])
{
    struct mrd_client *client = arg;

    if (keyring_has_node(&client->keyring, pk)) {
        return true;
    }
    bool ok = false;
    pthread_rwlock_rdlock(&client->topo.lock);
    const struct topo *t = client->topo.topo;
    for (uint32_t i = 0; t != NULL && i < t->node_count && !ok; i++) {
        ok = t->nodes[i].state != TOPO_NODE_REMOVED
            && sodium_memcmp(t->nodes[i].public_key, pk, TOPO_KEY_SIZE) == 0;
    }
    pthread_rwlock_unlock(&client->topo.lock);
    return ok;
}

/* Reads the client's key and keyring (opts, else the environment). On
 * failure mrd_errdetail() says what is wrong. */
static MRD_MUST_USE int
client_keys_load(struct mrd_client *client, const mrd_client_opts *opts)
{
    char        err[CLIENT_DETAIL_SIZE];
    const char *key
        = opts->key_file != NULL ? opts->key_file : getenv("MERIDIAN_KEY");
    const char *ring = opts->keyring_file != NULL ? opts->keyring_file
                                                  : getenv("MERIDIAN_KEYRING");

    if (key == NULL || key[0] == '\0') {
        snprintf(err, sizeof err,
            "no client key: set mrd_client_opts.key_file or MERIDIAN_KEY "
            "(meridianctl keygen makes one)");
        client_detail_set(err, strlen(err));
        return MRD_EINVAL;
    }
    if (ring == NULL || ring[0] == '\0') {
        snprintf(err, sizeof err,
            "no keyring: set mrd_client_opts.keyring_file or "
            "MERIDIAN_KEYRING (the nodes' DATA_DIR/identity files put "
            "together)");
        client_detail_set(err, strlen(err));
        return MRD_EINVAL;
    }
    int rv = keyring_key_read(key, client->sk, err, sizeof err);
    if (rv == MRD_OK) {
        memcpy(client->pk, client->sk + 32, KEYRING_KEY_SIZE);
        rv = keyring_load(ring, &client->keyring, err, sizeof err);
    }
    if (rv == MRD_OK && !client->keyring.has_cluster) {
        snprintf(err, sizeof err,
            "%s has no 'cluster' line: a client needs the cluster id", ring);
        rv = MRD_EINVAL;
    }
    if (rv != MRD_OK) {
        client_detail_set(err, strlen(err));
        return MRD_EINVAL;
    }
    memcpy(client->cluster_id, client->keyring.cluster_id,
        KEYRING_CLUSTER_ID_SIZE);
    return MRD_OK;
}

void
client_node_redial(struct client_node *node, uint64_t now_ms)
{
    uint64_t dialed = atomic_load(&node->dialed_ms);

    if (atomic_load(&node->pipe_count) > 0
        || now_ms < atomic_load(&node->down_since_ms) + CLIENT_REDIAL_AFTER_MS
        || now_ms < dialed + CLIENT_REDIAL_AFTER_MS
        || atomic_load(&node->dialers_extra) >= CLIENT_DIALERS_EXTRA_MAX) {
        return;
    }
    /* One thread wins the right to dial; the others see the new time. */
    if (!atomic_compare_exchange_strong(&node->dialed_ms, &dialed, now_ms)) {
        return;
    }
    if (nng_dial(node->sock, node->url, NULL, NNG_FLAG_NONBLOCK) == 0) {
        atomic_fetch_add(&node->dialers_extra, 1);
    }
}

/* Maps an NNG error from socket setup to ours. */
static MRD_MUST_USE int
client_nng_err(int rv)
{
    switch (rv) {
    case 0:
        return MRD_OK;
    case NNG_ENOMEM:
        return MRD_ENOMEM;
    case NNG_EADDRINVAL:
    case NNG_ENOTSUP:
    case NNG_EINVAL:
        return MRD_EINVAL; /* a malformed or unsupported address */
    default:
        return MRD_EINTERNAL;
    }
}

static MRD_MUST_USE int
client_node_open(
    struct mrd_client *client, struct client_node *node, const char *address)
{
    int rv;

    node->client = client;
    atomic_init(&node->pipe_count, 0);
    atomic_init(&node->down_since_ms, 0);
    atomic_init(&node->dialed_ms, 0);
    atomic_init(&node->dialers_extra, 0);
    atomic_init(&node->failed_ms, 0);
    atomic_init(&node->up_since_ms, 0);
    atomic_init(&node->rtt_us, 0);
    node->url = strdup(address);
    if (node->url == NULL) {
        return MRD_ENOMEM;
    }
    struct lk_config lcfg = { .trust = client_trust,
        .trust_arg                   = client,
        .up                          = client_up_cb,
        .up_arg                      = node,
        .stats                       = &client->link_stats,
        .frame_max                   = client->opts.frame_size_max };
    memcpy(lcfg.cluster_id, client->cluster_id, sizeof lcfg.cluster_id);
    memcpy(lcfg.pk, client->pk, sizeof lcfg.pk);
    memcpy(lcfg.sk, client->sk, sizeof lcfg.sk);
    int lrv = lk_open_dialer(&lcfg, &node->lk);
    if (lrv == MRD_OK) {
        node->sock      = lk_nng(node->lk);
        node->sock_open = true;
        lcfg.up         = NULL; /* the poll link says nothing of health */
        lrv             = lk_open_dialer(&lcfg, &node->lk_poll);
        node->poll_open = lrv == MRD_OK;
    }
    sodium_memzero(&lcfg, sizeof lcfg);
    if (lrv != MRD_OK) {
        return lrv;
    }
    rv = nng_socket_set_ms(
        lk_nng(node->lk_poll), NNG_OPT_RECONNMINT, CLIENT_RECONNECT_MIN_MS);
    if (rv == 0) {
        rv = nng_socket_set_ms(
            lk_nng(node->lk_poll), NNG_OPT_RECONNMAXT, CLIENT_RECONNECT_MAX_MS);
    }
    if (rv == 0) {
        rv = nng_dial(
            lk_nng(node->lk_poll), node->url, NULL, NNG_FLAG_NONBLOCK);
    }
    if (rv != 0) {
        goto fail;
    }
    /* Options before the dial: the dialer copies them when it is made. */
    rv = nng_socket_set_ms(
        node->sock, NNG_OPT_RECONNMINT, CLIENT_RECONNECT_MIN_MS);
    if (rv == 0) {
        rv = nng_socket_set_ms(
            node->sock, NNG_OPT_RECONNMAXT, CLIENT_RECONNECT_MAX_MS);
    }
    if (rv == 0) {
        atomic_store(&node->down_since_ms, mrd_now_mono_ms());
        atomic_store(&node->dialed_ms, mrd_now_mono_ms());
        rv = nng_dial(node->sock, node->url, &node->dialer, NNG_FLAG_NONBLOCK);
    }
    if (rv != 0) {
        goto fail;
    }
    return MRD_OK;

fail:
    return client_nng_err(rv); /* client_free() closes what was opened */
}

/* How long mrd_client_close() waits for NNG to close one socket. */
#define CLIENT_CLOSE_WAIT_MS 3000u

struct client_closer {
    nng_socket      sock;
    pthread_mutex_t mtx;
    pthread_cond_t  cv;
    bool            done;
    bool            abandoned; /* the waiter gave up: the thread frees */
};

static void *
client_closer_main(void *arg)
{
    struct client_closer *c = arg;

    nng_close(c->sock);
    pthread_mutex_lock(&c->mtx);
    c->done        = true;
    bool abandoned = c->abandoned;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mtx);
    if (abandoned) {
        pthread_mutex_destroy(&c->mtx);
        pthread_cond_destroy(&c->cv);
        free(c);
    }
    return NULL;
}

/* Starts closing sock on a helper thread (or inline when no thread can be
 * made); NULL when there was no memory for the guard and it was closed
 * inline. */
static struct client_closer *
client_close_start(struct lk_sock *lk)
{
    nng_socket sock = lk_nng(lk);
    lk_shutdown(lk); /* pending calls end, no more callbacks */
    struct client_closer *c = calloc(1, sizeof *c);
    pthread_t             thread;

    if (c == NULL) {
        nng_close(sock); /* no memory for the guard: close inline */
        return NULL;
    }
    c->sock = sock;
    pthread_mutex_init(&c->mtx, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (pthread_create(&thread, NULL, client_closer_main, c) != 0) {
        nng_close(sock);
        c->done = true;
    } else {
        pthread_detach(thread);
    }
    return c;
}

/* The deadline of closes started now. */
static struct timespec
client_close_deadline(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += CLIENT_CLOSE_WAIT_MS / 1000u;
    return ts;
}

/* Waits for a close client_close_start() began, until ts. True when it
 * ended (lk is freed); false when NNG did not finish in time (the closing
 * thread is left to finish on its own, lk stays). */
static bool
client_close_wait(
    struct client_closer *c, struct lk_sock *lk, const struct timespec *ts)
{
    if (c == NULL) {
        lk_free(lk);
        return true;
    }
    pthread_mutex_lock(&c->mtx);
    while (!c->done) {
        if (pthread_cond_timedwait(&c->cv, &c->mtx, ts) != 0) {
            break;
        }
    }
    bool done    = c->done;
    c->abandoned = !done;
    pthread_mutex_unlock(&c->mtx);
    if (done) {
        pthread_mutex_destroy(&c->mtx);
        pthread_cond_destroy(&c->cv);
        free(c);
        lk_free(lk);
    }
    return done;
}

/* Closes sock, waiting at most CLIENT_CLOSE_WAIT_MS. */
static bool
client_sock_close_bounded(struct lk_sock *lk)
{
    struct client_closer *c  = client_close_start(lk);
    struct timespec       ts = client_close_deadline();
    return client_close_wait(c, lk, &ts);
}

/* Undoes a client_node_open() that failed on a learned node's slot, so the
 * slot can be used again. */
static void
client_node_discard(struct client_node *node)
{
    if (node->sock_open) {
        (void) client_sock_close_bounded(node->lk); /* no pipe, no call */
    }
    if (node->poll_open) {
        (void) client_sock_close_bounded(node->lk_poll);
    }
    free(node->url);
    memset(node, 0, sizeof *node);
}

/* Frees a call object whose aios are stopped. */
static void
client_call_free(struct client_call *call)
{
    MRD_ASSERT(!call->armed && !call->ctx_open);
    nng_aio_free(call->timer);
    nng_aio_free(call->aio);
    proto_buf_fini(&call->req);
    pthread_cond_destroy(&call->done_cv);
    pthread_mutex_destroy(&call->mtx);
    free(call);
}

/* Frees a client whose calls have all ended: stops every aio first (so no
 * callback is still running), then closes the sockets, then frees. */
static void
client_free(struct mrd_client *client)
{
    size_t node_count = atomic_load(&client->node_count);

    for (uint32_t i = 0; i < client->call_count; i++) {
        nng_aio_stop(client->calls[i]->aio);
        nng_aio_stop(client->calls[i]->timer);
    }
    if (client->refresh_call != NULL) {
        nng_aio_stop(client->refresh_call->aio);
        nng_aio_stop(client->refresh_call->timer);
    }
    /* NNG 1.5.2, the version Debian ships, can hang for ever in nng_close()
     * (nanomsg/nng#1543: its reaper waits for a task that was prepared but
     * never started). A client must not hang its application on close, so
     * sockets are closed on a helper thread with a bounded wait; a socket
     * NNG cannot close in time is abandoned, and with it the whole client's
     * memory, which NNG's threads may still reach: a leak, never a hang or a
     * use after free. Every socket's close starts at once and all share one
     * deadline: closed one after another, a client of a 16-node cluster
     * could wait 32 times CLIENT_CLOSE_WAIT_MS (a benchmark's 64 clients of
     * 4 nodes took minutes to close). */
    bool                   abandoned = false;
    struct client_closer **closers
        = calloc(node_count > 0 ? node_count * 2 : 1, sizeof *closers);
    if (closers == NULL) {
        /* No memory to start them all at once: one after another. */
        for (size_t i = 0; i < node_count; i++) {
            if (client->nodes[i].sock_open
                && !client_sock_close_bounded(client->nodes[i].lk)) {
                abandoned = true;
            }
            if (client->nodes[i].poll_open
                && !client_sock_close_bounded(client->nodes[i].lk_poll)) {
                abandoned = true;
            }
        }
    } else {
        for (size_t i = 0; i < node_count; i++) {
            if (client->nodes[i].sock_open) {
                closers[2 * i] = client_close_start(client->nodes[i].lk);
            }
            if (client->nodes[i].poll_open) {
                closers[2 * i + 1]
                    = client_close_start(client->nodes[i].lk_poll);
            }
        }
        struct timespec ts = client_close_deadline();
        for (size_t i = 0; i < node_count; i++) {
            if (client->nodes[i].sock_open
                && !client_close_wait(
                    closers[2 * i], client->nodes[i].lk, &ts)) {
                abandoned = true;
            }
            if (client->nodes[i].poll_open
                && !client_close_wait(
                    closers[2 * i + 1], client->nodes[i].lk_poll, &ts)) {
                abandoned = true;
            }
        }
        free(closers);
    }
    if (abandoned) {
        return;
    }
    for (size_t i = 0; i < node_count; i++) {
        free(client->nodes[i].url);
    }
    for (uint32_t i = 0; i < client->call_count; i++) {
        client_call_free(client->calls[i]);
    }
    if (client->refresh_call != NULL) {
        client_call_free(client->refresh_call);
    }
    client_topo_fini(&client->topo);
    keyring_free(&client->keyring);
    sodium_memzero(client->sk, sizeof client->sk);
    pthread_mutex_destroy(&client->nodes_mtx);
    pthread_cond_destroy(&client->idle_cv);
    pthread_mutex_destroy(&client->mtx);
    free(client->calls);
    free(client->nodes);
    free(client);
}

static MRD_MUST_USE int client_call_new(
    struct mrd_client *client, struct client_call **call_out);

/* The client's locks, its topology cache and its reserved call. On error
 * nothing is left to undo. */
static MRD_MUST_USE int
client_alloc_sync(struct mrd_client *client)
{
    if (pthread_mutex_init(&client->mtx, NULL) != 0) {
        return MRD_ENOMEM;
    }
    if (pthread_mutex_init(&client->nodes_mtx, NULL) != 0) {
        goto fail_mtx;
    }
    if (pthread_cond_init(&client->idle_cv, NULL) != 0) {
        goto fail_nodes_mtx;
    }
    if (client_topo_init(&client->topo) != MRD_OK) {
        goto fail_cv;
    }
    if (client_call_new(client, &client->refresh_call) != MRD_OK) {
        goto fail_topo;
    }
    client->refresh_call->reserved = true;
    return MRD_OK;

fail_topo:
    client_topo_fini(&client->topo);
fail_cv:
    pthread_cond_destroy(&client->idle_cv);
fail_nodes_mtx:
    pthread_mutex_destroy(&client->nodes_mtx);
fail_mtx:
    pthread_mutex_destroy(&client->mtx);
    return MRD_ENOMEM;
}

static MRD_MUST_USE int
client_alloc(const mrd_client_opts *opts, struct mrd_client **client_out)
{
    struct mrd_client *client = calloc(1, sizeof *client);

    *client_out = NULL;
    if (client == NULL) {
        return MRD_ENOMEM;
    }
    client->opts = *opts;
    atomic_init(&client->node_current, 0);
    atomic_init(&client->node_count, 0);
    client->nodes = calloc(CLIENT_NODES_MAX, sizeof *client->nodes);
    client->calls = calloc(MRD_CLIENT_INFLIGHT_MAX, sizeof *client->calls);
    if (client->nodes == NULL || client->calls == NULL) {
        goto fail;
    }
    if (client_alloc_sync(client) != MRD_OK) {
        goto fail;
    }
    *client_out = client;
    return MRD_OK;

fail:
    free(client->calls);
    free(client->nodes);
    free(client);
    return MRD_ENOMEM;
}

int
mrd_client_open(const mrd_client_opts *opts, mrd_client **client_out)
{
    struct mrd_client *client = NULL;
    mrd_client_opts    checked;
    int                rv;

    if (client_out == NULL) {
        return MRD_EINVAL;
    }
    *client_out = NULL;
    if (opts == NULL) {
        return MRD_EINVAL;
    }
    rv = client_opts_check(opts, &checked);
    if (rv != MRD_OK) {
        return rv;
    }
    /* libsodium's random generator needs it; safe to call many times. */
    if (sodium_init() < 0) {
        return MRD_EINTERNAL;
    }
    rv = client_alloc(&checked, &client);
    if (rv != MRD_OK) {
        return rv;
    }
    if (opts->region != NULL) {
        snprintf(client->region, sizeof client->region, "%s", opts->region);
    }
    rv = client_keys_load(client, opts);
    if (rv != MRD_OK) {
        goto fail;
    }
    client->addr_count = opts->address_count;
    for (size_t i = 0; i < opts->address_count; i++) {
        atomic_store(&client->node_count, i + 1); /* client_free closes it */
        rv = client_node_open(client, &client->nodes[i], opts->addresses[i]);
        if (rv != MRD_OK) {
            goto fail;
        }
    }
    /* Learn the topology in the background, so that the first stream
     * call is routed; a static cluster answers that it has none. */
    client_topo_refresh(client, false, -1);
    *client_out = client;
    return MRD_OK;

fail:
    client_free(client);
    return rv;
}

void
mrd_client_close(mrd_client *client)
{
    if (client == NULL) {
        return;
    }
    /* New calls now fail with MRD_ECLOSED; calls in flight run to their
     * end (each has a deadline), as meridian.h promises. */
    pthread_mutex_lock(&client->mtx);
    client->closing = true;
    pthread_mutex_unlock(&client->mtx);
    /* A refresh would otherwise run to its deadline. */
    client_topo_cancel(client);
    pthread_mutex_lock(&client->mtx);
    while (client->inflight > 0) {
        pthread_cond_wait(&client->idle_cv, &client->mtx);
    }
    pthread_mutex_unlock(&client->mtx);
    client_free(client);
}

/* --------------------------------------------------------------- pool -- */

static MRD_MUST_USE int
client_call_new(struct mrd_client *client, struct client_call **call_out)
{
    struct client_call *call   = calloc(1, sizeof *call);
    bool                mtx_ok = false;
    bool                cv_ok  = false;

    *call_out = NULL;
    if (call == NULL) {
        return MRD_ENOMEM;
    }
    call->client = client;
    proto_buf_init(&call->req, client->opts.frame_size_max);
    if (pthread_mutex_init(&call->mtx, NULL) != 0) {
        goto fail;
    }
    mtx_ok = true;
    if (pthread_cond_init(&call->done_cv, NULL) != 0) {
        goto fail;
    }
    cv_ok = true;
    if (nng_aio_alloc(&call->aio, client_call_cb, call) != 0) {
        goto fail;
    }
    if (nng_aio_alloc(&call->timer, client_call_cb, call) != 0) {
        goto fail;
    }
    *call_out = call;
    return MRD_OK;

fail:
    if (call->aio != NULL) {
        nng_aio_free(call->aio);
    }
    if (cv_ok) {
        pthread_cond_destroy(&call->done_cv);
    }
    if (mtx_ok) {
        pthread_mutex_destroy(&call->mtx);
    }
    free(call);
    return MRD_ENOMEM;
}

/* Clears everything a previous use left, keeping the aio, locks and
 * request buffer. */
static void
client_call_reset(struct client_call *call)
{
    call->free_next       = NULL;
    call->armed           = false;
    call->cancelled       = false;
    call->done            = false;
    call->type            = 0;
    call->wait_ms         = 0;
    call->decode          = NULL;
    call->done_fn         = NULL;
    call->event_count     = 0;
    call->count_max       = 0;
    call->from            = 0;
    call->cursor_read     = false;
    call->ack_level       = MRD_ACK_LOCAL;
    call->append_cb       = NULL;
    call->append_arg      = NULL;
    call->route           = CLIENT_ROUTE_ADDRESSES;
    call->stream_len      = 0;
    call->cand_version    = 0;
    call->cand_count      = 0;
    call->cand_pos        = 0;
    call->first_until_ms  = 0;
    call->state           = CLIENT_CALL_IDLE;
    call->outcome_unknown = false;
    call->pinned          = false;
    call->node_err        = MRD_OK;
    call->auth_fails      = 0;
    call->auth_err        = MRD_OK;
    call->err             = MRD_OK;
    call->events          = NULL;
    call->doc_state       = NULL;
    call->blob            = NULL;
    call->blob_len        = 0;
    call->topo_version    = 0;
    call->detail[0]       = '\0';
    memset(&call->out, 0, sizeof call->out);
    proto_buf_reset(&call->req);
}

/* Per thread, like errno: a blocking call's reason is read on the thread
 * that made the call. */
static _Thread_local char client_detail[CLIENT_DETAIL_SIZE];

void
client_detail_set(const char *s, size_t len)
{
    if (s == NULL || len == 0) {
        client_detail[0] = '\0';
        return;
    }
    if (len >= sizeof client_detail) {
        len = sizeof client_detail - 1;
    }
    memcpy(client_detail, s, len);
    client_detail[len] = '\0';
}

const char *
mrd_errdetail(void)
{
    return client_detail;
}

int
client_call_get(struct mrd_client *client, struct client_call **call_out)
{
    client_detail_set(NULL, 0);
    struct client_call *call = NULL;
    int                 rv   = MRD_OK;

    *call_out = NULL;
    pthread_mutex_lock(&client->mtx);
    if (client->closing) {
        rv = MRD_ECLOSED;
        goto out;
    }
    if (client->call_free != NULL) {
        call              = client->call_free;
        client->call_free = call->free_next;
    } else if (client->call_count < MRD_CLIENT_INFLIGHT_MAX) {
        rv = client_call_new(client, &call);
        if (rv != MRD_OK) {
            goto out;
        }
        client->calls[client->call_count++] = call;
    } else {
        rv = MRD_EFULL; /* backpressure: every call object is in flight */
        goto out;
    }
    client->inflight++;
    /* The reserved call may be in flight too. */
    MRD_ASSERT(client->inflight <= client->call_count + 1);

out:
    pthread_mutex_unlock(&client->mtx);
    if (call != NULL) {
        client_call_reset(call);
        *call_out = call;
    }
    return rv;
}

int
client_call_get_reserved(
    struct mrd_client *client, struct client_call **call_out)
{
    int rv = MRD_OK;

    *call_out = NULL;
    pthread_mutex_lock(&client->mtx);
    if (client->closing) {
        rv = MRD_ECLOSED;
    } else if (client->refresh_busy) {
        rv = MRD_EBUSY;
    } else {
        client->refresh_busy = true;
        client->inflight++;
    }
    pthread_mutex_unlock(&client->mtx);
    if (rv == MRD_OK) {
        client_call_reset(client->refresh_call);
        *call_out = client->refresh_call;
    }
    return rv;
}

void
client_call_put(struct client_call *call)
{
    struct mrd_client *client = call->client;

    MRD_ASSERT(!call->armed && !call->ctx_open);
    mrd_events_free(call->events);
    call->events = NULL;
    mrd_state_free(call->doc_state);
    call->doc_state = NULL;
    mrd_stats_free(call->stats);
    call->stats = NULL;
    free(call->blob);
    call->blob = NULL;
    if (call->req.cap > CLIENT_BUF_KEEP_SIZE) {
        proto_buf_fini(&call->req);
        proto_buf_init(&call->req, client->opts.frame_size_max);
    }
    pthread_mutex_lock(&client->mtx);
    MRD_ASSERT(client->inflight > 0);
    if (call->reserved) {
        MRD_ASSERT(client->refresh_busy && call == client->refresh_call);
        client->refresh_busy = false;
    } else {
        call->free_next   = client->call_free;
        client->call_free = call;
    }
    client->inflight--;
    if (client->inflight == 0 && client->closing) {
        pthread_cond_broadcast(&client->idle_cv);
    }
    pthread_mutex_unlock(&client->mtx);
}

/* -------------------------------------------------------------- nodes -- */

size_t
client_node_pick(struct mrd_client *client)
{
    size_t current = atomic_load(&client->node_current);
    size_t n       = client->addr_count;

    MRD_ASSERT(current < n);
    for (size_t i = 0; i < n; i++) {
        size_t idx = (current + i) % n;
        if (atomic_load(&client->nodes[idx].pipe_count) > 0) {
            if (idx != current) {
                /* Only if nobody moved it meanwhile; either way is fine. */
                atomic_compare_exchange_strong(
                    &client->node_current, &current, idx);
            }
            return idx;
        }
    }
    /* Nothing is connected: try the current node, whose dial may finish
     * during the attempt. */
    return current;
}

void
client_node_failed(struct mrd_client *client, size_t index)
{
    size_t expected = index;

    MRD_ASSERT(index < client->addr_count);
    /* Many calls fail on the same node at once; only the first moves on,
     * so the others do not skip the next node. */
    atomic_compare_exchange_strong(
        &client->node_current, &expected, (index + 1) % client->addr_count);
}

int
client_node_find(struct mrd_client *client, const char *url)
{
    size_t n = atomic_load(&client->node_count);

    /* A node's url never changes once its index is published. */
    for (size_t i = 0; i < n; i++) {
        if (strcmp(client->nodes[i].url, url) == 0) {
            return (int) i;
        }
    }
    return -1;
}

int
client_node_find_or_open(struct mrd_client *client, const char *url)
{
    int idx = client_node_find(client, url);

    if (idx >= 0) {
        return idx;
    }
    pthread_mutex_lock(&client->nodes_mtx);
    idx      = client_node_find(client, url); /* opened meanwhile? */
    size_t n = atomic_load(&client->node_count);
    if (idx < 0 && n < CLIENT_NODES_MAX) {
        struct client_node *node = &client->nodes[n];
        /* A nonblocking dial: the socket and its dialer are made here, the
         * connection in the background. */
        if (client_node_open(client, node, url) == MRD_OK) {
            atomic_store(&client->node_count, n + 1); /* publish */
            idx = (int) n;
        } else {
            client_node_discard(node);
        }
    }
    pthread_mutex_unlock(&client->nodes_mtx);
    return idx;
}

/* --------------------------------------------------------------- info -- */

static MRD_MUST_USE int
client_info_decode(struct client_call *call, struct proto_rd *body)
{
    const char *why = NULL;
    int         rv  = proto_info_rep_decode(body, &call->out.info, &why);

    return rv == MRD_OK ? MRD_OK : MRD_EPROTO;
}

int
mrd_stream_info_get(
    mrd_client *client, const char *stream, mrd_stream_info *info_out)
{
    struct client_call *call = NULL;
    size_t              stream_len;
    int                 rv;

    if (client == NULL || stream == NULL || info_out == NULL) {
        return MRD_EINVAL;
    }
    stream_len = strnlen(stream, MRD_STREAM_NAME_SIZE_MAX + 1);
    rv         = mrd_stream_name_check(stream, stream_len);
    if (rv != MRD_OK) {
        return rv;
    }
    rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    call->type   = PROTO_T_INFO;
    call->decode = client_info_decode;
    client_route_stream(call, stream, stream_len);
    rv = client_call_exec(
        call, proto_info_req_encode(&call->req, stream, stream_len), NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    *info_out = call->out.info;
    client_call_put(call);
    return MRD_OK;
}

static MRD_MUST_USE int
client_node_info_decode(struct client_call *call, struct proto_rd *body)
{
    const char *why = NULL;
    int         rv  = proto_node_rep_decode(body, &call->out.node, &why);

    if (rv != MRD_OK) {
        return MRD_EPROTO;
    }
    /* The node's string is copied in by the decoder; terminate it here
     * too so a decoder bug never reaches a printf. */
    call->out.node.version[sizeof call->out.node.version - 1] = '\0';
    return MRD_OK;
}

uint64_t
client_session_hash(const char *stream, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t) stream[i];
        h *= 0x100000001b3ull;
    }
    return h != 0 ? h : 1;
}

/* One counter of a STATS reply; names are the node's, copied. */
struct mrd_stat {
    char     name[MRD_STATS_NAME_SIZE_MAX + 1];
    uint64_t value;
};

struct mrd_stats {
    size_t          count;
    struct mrd_stat rows[]; /* count of them, in the node's order */
};

static int
client_stats_decode(struct client_call *call, struct proto_rd *body)
{
    struct proto_rd  rd = *body;
    struct proto_str key;
    uint64_t         v;
    uint32_t         count;

    if (proto_rd_map(&rd, &count) != MRD_OK || count > MRD_STATS_MAX) {
        return MRD_EPROTO;
    }
    mrd_stats *st
        = calloc(1, sizeof(*st) + (size_t) count * sizeof(struct mrd_stat));
    if (st == NULL) {
        return MRD_ENOMEM;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (proto_rd_str(&rd, &key) != MRD_OK
            || proto_rd_uint(&rd, &v) != MRD_OK || key.len == 0
            || key.len > MRD_STATS_NAME_SIZE_MAX
            || memchr(key.ptr, '\0', key.len) != NULL) {
            free(st);
            return MRD_EPROTO;
        }
        memcpy(st->rows[i].name, key.ptr, key.len);
        st->rows[i].name[key.len] = '\0';
        st->rows[i].value         = v;
    }
    st->count   = count;
    call->stats = st;
    return MRD_OK;
}

int
mrd_node_stats_get(mrd_client *client, mrd_stats **stats_out)
{
    struct client_call *call = NULL;
    int                 rv;

    if (client == NULL || stats_out == NULL) {
        return MRD_EINVAL;
    }
    *stats_out = NULL;
    rv         = client_call_get(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    call->type   = PROTO_T_STATS;
    call->decode = client_stats_decode;
    proto_empty_req_encode(&call->req, PROTO_T_STATS);
    rv = client_call_exec(call, proto_buf_status(&call->req), NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    *stats_out  = call->stats;
    call->stats = NULL;
    client_call_put(call);
    return MRD_OK;
}

size_t
mrd_stats_count(const mrd_stats *stats)
{
    return stats != NULL ? stats->count : 0;
}

const char *
mrd_stats_name(const mrd_stats *stats, size_t index)
{
    return stats != NULL && index < stats->count ? stats->rows[index].name
                                                 : NULL;
}

uint64_t
mrd_stats_value(const mrd_stats *stats, size_t index)
{
    return stats != NULL && index < stats->count ? stats->rows[index].value : 0;
}

int
mrd_stats_find(const mrd_stats *stats, const char *name, uint64_t *value_out)
{
    if (stats == NULL || name == NULL) {
        return MRD_EINVAL;
    }
    for (size_t i = 0; i < stats->count; i++) {
        if (strcmp(stats->rows[i].name, name) == 0) {
            if (value_out != NULL) {
                *value_out = stats->rows[i].value;
            }
            return MRD_OK;
        }
    }
    return MRD_ENOTFOUND;
}

void
mrd_stats_free(mrd_stats *stats)
{
    free(stats);
}

int
mrd_node_info_get(mrd_client *client, mrd_node_info *info_out)
{
    struct client_call *call = NULL;
    int                 rv;

    if (client == NULL || info_out == NULL) {
        return MRD_EINVAL;
    }
    rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    call->type   = PROTO_T_NODE_INFO;
    call->decode = client_node_info_decode;
    proto_empty_req_encode(&call->req, PROTO_T_NODE_INFO);
    rv = client_call_exec(call, proto_buf_status(&call->req), NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    *info_out = call->out.node;
    client_call_put(call);
    return MRD_OK;
}
