/*
 * linkio_test.c: secure links on NNG sockets (net/linkio.h), in one
 * process over TCP on 127.0.0.1.
 *
 * A listener answers through a pool of contexts driven by one callback (the
 * shape of NNG's demo/async server): each request comes back as 'R' and
 * its bytes reversed, so a reply proves it went through the server and
 * belongs to its request. Dialers check: one round trip, and the server
 * sees the dialer's key; many contexts on one dialer at once with sizes
 * from 0 bytes up; a 1 MiB message; every refusal (the dialer's key, the
 * listener's key, another cluster) ends the waiting request with
 * NNG_EPEERAUTH, says why in lk_refusal() and is counted once on the side
 * that refused; lk_revalidate() cuts a revoked peer and its reconnect is
 * refused; a plain NNG req0 socket sending garbage gets no answer and is
 * counted while the listener keeps serving; a request with no listener
 * times out; cancel, ctx close and shutdown end waiting requests.
 *
 * A refused dialer reconnects and is refused again (NNG's reconnect
 * back-off is random in [0, RECONNMINT), so the second try may come at
 * once): refusals are checked once the dialer is closed, as exactly one
 * per handshake the trust callback saw. Every wait is bounded, and alarm()
 * turns a hang (in nng_close, say) into a failure.
 *
 * Requests wait at most TEST_REQ_TIMEOUT_MS, less than the listener's
 * LK_HANDSHAKE_TIMEOUT_MS: a handshake that stalls (a lost msg1) fails the
 * test instead of being rescued by the sweep and a reconnect.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>
#include <sodium.h>

#include "linkio.h"
#include "meridian.h"

/* ------------------------------------------------------------ fixtures -- */

/* Every test's plaintext limit: room for the 1 MiB test and its reply. */
#define TEST_FRAME_MAX (2u * 1024u * 1024u)
/* Listener contexts in the echo pool. */
#define TEST_SERVER_CTXS 8u
/* Client threads and requests each in the concurrent test. */
#define TEST_THREADS 8u
#define TEST_REQUESTS 200u
/* Bounds on waits: a request, and a condition polled every 10 ms. */
#define TEST_REQ_TIMEOUT_MS 5000
#define TEST_WAIT_MS 5000u
/* Whole-process watchdog: a hang fails the run instead of stalling CI. */
#define TEST_ALARM_S 300u

static const uint8_t test_cid[LINK_CLUSTER_ID_SIZE]
    = { 0x6d, 0x72, 0x64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 };
static const uint8_t test_cid_other[LINK_CLUSTER_ID_SIZE]
    = { 0x6d, 0x72, 0x64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14 };

struct test_id {
    uint8_t pk[LINK_KEY_SIZE];
    uint8_t sk[LINK_SECRET_KEY_SIZE];
};

static void
test_id_make(struct test_id *id)
{
    crypto_sign_keypair(id->pk, id->sk);
}

/* A trust list the test may change while linkio asks it (on NNG's
 * threads, under linkio's locks: so it has its own lock). */
struct test_trust {
    pthread_mutex_t mtx;
    uint8_t         keys[4][LINK_KEY_SIZE];
    unsigned        count;
    atomic_uint     calls;
};

static bool
test_trust_fn(void *arg, const uint8_t pk[LINK_KEY_SIZE])
{
    struct test_trust *t  = arg;
    bool               ok = false;
    atomic_fetch_add(&t->calls, 1);
    pthread_mutex_lock(&t->mtx);
    for (unsigned i = 0; i < t->count && !ok; i++) {
        ok = memcmp(t->keys[i], pk, LINK_KEY_SIZE) == 0;
    }
    pthread_mutex_unlock(&t->mtx);
    return ok;
}

static void
test_trust_init(struct test_trust *t)
{
    pthread_mutex_init(&t->mtx, NULL);
    t->count = 0;
    atomic_init(&t->calls, 0);
}

static void
test_trust_add(struct test_trust *t, const uint8_t pk[LINK_KEY_SIZE])
{
    pthread_mutex_lock(&t->mtx);
    assert_true(t->count < 4);
    memcpy(t->keys[t->count++], pk, LINK_KEY_SIZE);
    pthread_mutex_unlock(&t->mtx);
}

static void
test_trust_clear(struct test_trust *t)
{
    pthread_mutex_lock(&t->mtx);
    t->count = 0;
    pthread_mutex_unlock(&t->mtx);
}

/* nng_msg_free, NULL or not. */
static void
test_msg_free(nng_msg *m)
{
    if (m != NULL) {
        nng_msg_free(m);
    }
}

static void
test_stats_init(struct lk_stats *st)
{
    atomic_init(&st->sessions, 0);
    for (unsigned i = 0; i < LK_R_COUNT_; i++) {
        atomic_init(&st->refused[i], 0);
    }
    atomic_init(&st->stalled, 0);
    atomic_init(&st->redials, 0);
}

static uint64_t
test_refused(struct lk_stats *st, enum lk_reason r)
{
    return (uint64_t) atomic_load(&st->refused[r]);
}

static uint64_t
test_refused_total(struct lk_stats *st)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < LK_R_COUNT_; i++) {
        n += test_refused(st, (enum lk_reason) i);
    }
    return n;
}

/* Polls cond(arg) every 10 ms for at most TEST_WAIT_MS. */
static bool
test_wait_for(bool (*cond)(void *), void *arg)
{
    nng_time end = nng_clock() + TEST_WAIT_MS;
    while (!cond(arg)) {
        if (nng_clock() > end) {
            return false;
        }
        nng_msleep(10);
    }
    return true;
}

/* ------------------------------------------------------- echo server -- */

struct test_server;

struct test_worker {
    struct test_server *srv;
    struct lk_ctx      *ctx;
    nng_aio            *aio;
    bool                sending;
};

struct test_server {
    struct test_id     id;
    struct test_trust  trust;
    struct lk_stats    stats;
    struct lk_sock    *s;
    char               url[64];
    struct test_worker w[TEST_SERVER_CTXS];
    atomic_bool        stopping;
    atomic_bool        mute; /* swallow requests that start with 'M' */
    atomic_uint        served;
    pthread_mutex_t    mtx;
    uint8_t            last_peer[LINK_KEY_SIZE];
    bool               open;
};

/* The reply to body[0..len): 'R' and the bytes reversed. */
static nng_msg *
test_reply_make(const uint8_t *body, size_t len)
{
    nng_msg *m = NULL;
    if (nng_msg_alloc(&m, len + 1) != 0) {
        return NULL;
    }
    uint8_t *out = nng_msg_body(m);
    out[0]       = 'R';
    for (size_t i = 0; i < len; i++) {
        out[1 + i] = body[len - 1 - i];
    }
    return m;
}

static bool
test_reply_ok(const uint8_t *req, size_t len, nng_msg *reply)
{
    const uint8_t *b = nng_msg_body(reply);
    if (nng_msg_len(reply) != len + 1 || b[0] != 'R') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (b[1 + i] != req[len - 1 - i]) {
            return false;
        }
    }
    return true;
}

/* One callback for every step of a worker: recv a request, send the
 * reply, recv again. Stops on ECLOSED/ECANCELED or once stopping. */
static void
test_worker_cb(void *arg)
{
    struct test_worker *w   = arg;
    struct test_server *srv = w->srv;
    int                 rv  = nng_aio_result(w->aio);

    if (w->sending) {
        w->sending = false;
        if (rv != 0) {
            test_msg_free(nng_aio_get_msg(w->aio));
            nng_aio_set_msg(w->aio, NULL);
        }
    } else if (rv == 0) {
        nng_msg *req = nng_aio_get_msg(w->aio);
        nng_aio_set_msg(w->aio, NULL);
        /* 'M'ute: a request this server swallows, as a blackholed link
         * would. */
        if (atomic_load(&srv->mute) && nng_msg_len(req) > 0
            && ((uint8_t *) nng_msg_body(req))[0] == 'M') {
            nng_msg_free(req);
            if (!atomic_load(&srv->stopping)) {
                lk_ctx_recv(w->ctx, w->aio);
            }
            return;
        }
        pthread_mutex_lock(&srv->mtx);
        memcpy(srv->last_peer, lk_ctx_peer(w->ctx), LINK_KEY_SIZE);
        pthread_mutex_unlock(&srv->mtx);
        nng_msg *rep = test_reply_make(nng_msg_body(req), nng_msg_len(req));
        nng_msg_free(req);
        if (rep != NULL) {
            /* Counted before the reply leaves: a client that has it sees
             * the count. */
            atomic_fetch_add(&srv->served, 1);
            nng_aio_set_msg(w->aio, rep);
            w->sending = true;
            lk_ctx_send(w->ctx, w->aio);
            return;
        }
    } else if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
        return;
    }
    if (!atomic_load(&srv->stopping)) {
        lk_ctx_recv(w->ctx, w->aio);
    }
}

static void
test_server_open(
    struct test_server *srv, const uint8_t cid[LINK_CLUSTER_ID_SIZE])
{
    struct lk_config cfg;
    nng_listener     l;
    int              port = 0;

    memset(srv, 0, sizeof(*srv));
    test_id_make(&srv->id);
    test_trust_init(&srv->trust);
    test_stats_init(&srv->stats);
    atomic_init(&srv->stopping, false);
    atomic_init(&srv->mute, false);
    atomic_init(&srv->served, 0);
    pthread_mutex_init(&srv->mtx, NULL);

    memset(&cfg, 0, sizeof(cfg));
    memcpy(cfg.cluster_id, cid, LINK_CLUSTER_ID_SIZE);
    memcpy(cfg.pk, srv->id.pk, LINK_KEY_SIZE);
    memcpy(cfg.sk, srv->id.sk, LINK_SECRET_KEY_SIZE);
    cfg.trust     = test_trust_fn;
    cfg.trust_arg = &srv->trust;
    cfg.stats     = &srv->stats;
    cfg.frame_max = TEST_FRAME_MAX;
    assert_int_equal(lk_open_listener(&cfg, &srv->s), MRD_OK);
    assert_int_equal(nng_listen(lk_nng(srv->s), "tcp://127.0.0.1:0", &l, 0), 0);
    assert_int_equal(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port), 0);
    assert_true(port > 0);
    snprintf(srv->url, sizeof(srv->url), "tcp://127.0.0.1:%d", port);

    srv->open = true;
    for (unsigned i = 0; i < TEST_SERVER_CTXS; i++) {
        struct test_worker *w = &srv->w[i];
        w->srv                = srv;
        assert_int_equal(nng_aio_alloc(&w->aio, test_worker_cb, w), 0);
        assert_int_equal(lk_ctx_open(srv->s, &w->ctx), MRD_OK);
        lk_ctx_recv(w->ctx, w->aio);
    }
}

static void
test_server_close(struct test_server *srv)
{
    if (!srv->open) {
        return;
    }
    srv->open = false;
    atomic_store(&srv->stopping, true);
    for (unsigned i = 0; i < TEST_SERVER_CTXS; i++) {
        struct test_worker *w = &srv->w[i];
        nng_aio_stop(w->aio); /* cancels a waiting recv, waits its cb */
        test_msg_free(nng_aio_get_msg(w->aio)); /* a send never started */
        nng_aio_set_msg(w->aio, NULL);
        lk_ctx_close(w->ctx);
    }
    lk_shutdown(srv->s);
    nng_close(lk_nng(srv->s));
    lk_free(srv->s);
    for (unsigned i = 0; i < TEST_SERVER_CTXS; i++) {
        nng_aio_free(srv->w[i].aio);
    }
    pthread_mutex_destroy(&srv->mtx);
    pthread_mutex_destroy(&srv->trust.mtx);
}

static void
test_server_last_peer(struct test_server *srv, uint8_t out[LINK_KEY_SIZE])
{
    pthread_mutex_lock(&srv->mtx);
    memcpy(out, srv->last_peer, LINK_KEY_SIZE);
    pthread_mutex_unlock(&srv->mtx);
}

/* ------------------------------------------------------------ dialer -- */

struct test_client {
    struct test_id    id;
    struct test_trust trust;
    struct lk_stats   stats;
    struct lk_sock   *s;
    atomic_int        ups, downs;
    bool              open;
};

static void
test_up_fn(void *arg, bool up)
{
    struct test_client *c = arg;
    atomic_fetch_add(up ? &c->ups : &c->downs, 1);
}

/* Opens a dialer that trusts nothing yet; the caller adds keys and dials
 * (test_client_dial) when it is ready. */
static void
test_client_open(struct test_client *c, const uint8_t cid[LINK_CLUSTER_ID_SIZE])
{
    struct lk_config cfg;
    memset(c, 0, sizeof(*c));
    test_id_make(&c->id);
    test_trust_init(&c->trust);
    test_stats_init(&c->stats);
    atomic_init(&c->ups, 0);
    atomic_init(&c->downs, 0);

    memset(&cfg, 0, sizeof(cfg));
    memcpy(cfg.cluster_id, cid, LINK_CLUSTER_ID_SIZE);
    memcpy(cfg.pk, c->id.pk, LINK_KEY_SIZE);
    memcpy(cfg.sk, c->id.sk, LINK_SECRET_KEY_SIZE);
    cfg.trust     = test_trust_fn;
    cfg.trust_arg = &c->trust;
    cfg.up        = test_up_fn;
    cfg.up_arg    = c;
    cfg.stats     = &c->stats;
    cfg.frame_max = TEST_FRAME_MAX;
    assert_int_equal(lk_open_dialer(&cfg, &c->s), MRD_OK);
    c->open         = true;
    nng_socket sock = lk_nng(c->s);
    assert_int_equal(nng_socket_set_ms(sock, NNG_OPT_RECONNMINT, 50), 0);
    assert_int_equal(nng_socket_set_ms(sock, NNG_OPT_RECONNMAXT, 200), 0);
}

/* Reconnects far apart, for a dialer that will be refused: few retries
 * before the test closes it, and seldom one mid-connect then (NNG 1.5.2
 * may leak a dialer closed while it connects). */
static void
test_client_slow_reconnect(struct test_client *c)
{
    nng_socket sock = lk_nng(c->s);
    assert_int_equal(nng_socket_set_ms(sock, NNG_OPT_RECONNMINT, 2000), 0);
    assert_int_equal(nng_socket_set_ms(sock, NNG_OPT_RECONNMAXT, 2000), 0);
}

static void
test_client_dial(struct test_client *c, const char *url)
{
    assert_int_equal(nng_dial(lk_nng(c->s), url, NULL, NNG_FLAG_NONBLOCK), 0);
}

static void
test_client_close(struct test_client *c)
{
    if (!c->open) {
        return;
    }
    c->open = false;
    lk_shutdown(c->s);
    nng_close(lk_nng(c->s));
    lk_free(c->s);
    pthread_mutex_destroy(&c->trust.mtx);
}

/* A server and a client that trust each other, dialed. */
static void
test_pair_open(struct test_server *srv, struct test_client *c)
{
    test_server_open(srv, test_cid);
    test_client_open(c, test_cid);
    test_trust_add(&srv->trust, c->id.pk);
    test_trust_add(&c->trust, srv->id.pk);
    test_client_dial(c, srv->url);
}

/* --------------------------------------------------------- requests -- */

/* Starts a request (body[0..len)) on c with aio; returns at once. */
static void
test_send_start(struct lk_ctx *c, nng_aio *aio, const void *body, size_t len,
    nng_duration timeout_ms)
{
    nng_msg *m = NULL;
    assert_int_equal(nng_msg_alloc(&m, len), 0);
    if (len > 0) {
        memcpy(nng_msg_body(m), body, len);
    }
    nng_aio_set_msg(aio, m);
    nng_aio_set_timeout(aio, timeout_ms);
    lk_ctx_send(c, aio);
}

/* Waits for a send started with test_send_start; frees the message when
 * the send failed (the caller still owns it then). */
static int
test_send_wait(nng_aio *aio)
{
    nng_aio_wait(aio);
    int rv = nng_aio_result(aio);
    if (rv != 0) {
        test_msg_free(nng_aio_get_msg(aio));
        nng_aio_set_msg(aio, NULL);
    } else {
        assert_null(nng_aio_get_msg(aio)); /* consumed */
    }
    return rv;
}

static int
test_recv(struct lk_ctx *c, nng_aio *aio, nng_duration timeout_ms,
    nng_msg **reply_out)
{
    *reply_out = NULL;
    nng_aio_set_timeout(aio, timeout_ms);
    lk_ctx_recv(c, aio);
    nng_aio_wait(aio);
    int rv = nng_aio_result(aio);
    if (rv == 0) {
        *reply_out = nng_aio_get_msg(aio);
        nng_aio_set_msg(aio, NULL);
    }
    return rv;
}

/* One request and its reply; the first error of either. */
static int
test_request(struct lk_ctx *c, nng_aio *aio, const void *body, size_t len,
    nng_msg **reply_out)
{
    *reply_out = NULL;
    test_send_start(c, aio, body, len, TEST_REQ_TIMEOUT_MS);
    int rv = test_send_wait(aio);
    if (rv != 0) {
        return rv;
    }
    return test_recv(c, aio, TEST_REQ_TIMEOUT_MS, reply_out);
}

/* A request that must succeed with the right reply. */
static void
test_echo_ok(struct lk_ctx *c, nng_aio *aio, const void *body, size_t len)
{
    nng_msg *reply = NULL;
    int      rv    = test_request(c, aio, body, len, &reply);
    if (rv != 0) {
        fail_msg("request of %zu bytes: %s", len, nng_strerror(rv));
    }
    assert_true(test_reply_ok(body, len, reply));
    nng_msg_free(reply);
}

/* A request whose result is the test's to check; a reply is dropped. */
static int
test_request_rv(struct lk_ctx *c, nng_aio *aio, const void *body, size_t len)
{
    nng_msg *reply = NULL;
    int      rv    = test_request(c, aio, body, len, &reply);
    test_msg_free(reply);
    return rv;
}

static bool
test_client_is_up(void *arg)
{
    struct test_client *c = arg;
    return lk_is_up(c->s);
}

static bool
test_client_is_down(void *arg)
{
    struct test_client *c = arg;
    return !lk_is_up(c->s);
}

/* ---------------------------------------------------------- teardown -- */

/* The fixtures live here, not on a test's stack: a failed assertion
 * leaves the test at once, and the sockets (whose trust and up callbacks
 * point at them) must stay valid until test_teardown() closes them. The
 * contexts and aios a test opens on this thread are listed for it too. */
static struct test_server test_srv;
static struct test_client test_cli;
/* The stall test fills a pipe: LK_INFLIGHT_MAX contexts and one more. */
#define TEST_HANDLES_MAX (LK_INFLIGHT_MAX + 8u)
static struct lk_ctx *test_ctxs[TEST_HANDLES_MAX];
static nng_aio       *test_aios[TEST_HANDLES_MAX];

static struct lk_ctx *
test_ctx_open(struct test_client *cli)
{
    struct lk_ctx *c = NULL;
    assert_int_equal(lk_ctx_open(cli->s, &c), MRD_OK);
    for (unsigned i = 0; i < TEST_HANDLES_MAX; i++) {
        if (test_ctxs[i] == NULL) {
            test_ctxs[i] = c;
            return c;
        }
    }
    fail_msg("more than %u contexts", TEST_HANDLES_MAX);
    return NULL;
}

static void
test_ctx_close(struct lk_ctx *c)
{
    for (unsigned i = 0; i < TEST_HANDLES_MAX; i++) {
        if (test_ctxs[i] == c) {
            test_ctxs[i] = NULL;
        }
    }
    lk_ctx_close(c);
}

static nng_aio *
test_aio_alloc(void)
{
    nng_aio *aio = NULL;
    assert_int_equal(nng_aio_alloc(&aio, NULL, NULL), 0);
    for (unsigned i = 0; i < TEST_HANDLES_MAX; i++) {
        if (test_aios[i] == NULL) {
            test_aios[i] = aio;
            return aio;
        }
    }
    fail_msg("more than %u aios", TEST_HANDLES_MAX);
    return NULL;
}

static void
test_aio_free(nng_aio *aio)
{
    for (unsigned i = 0; i < TEST_HANDLES_MAX; i++) {
        if (test_aios[i] == aio) {
            test_aios[i] = NULL;
        }
    }
    nng_aio_free(aio);
}

/* Whatever the test left open, in order: operations stopped, contexts
 * closed, then the sockets, then the aios. */
static int
test_teardown(void **state)
{
    (void) state;
    for (unsigned i = 0; i < TEST_HANDLES_MAX; i++) {
        if (test_aios[i] != NULL) {
            nng_aio_stop(test_aios[i]);
            test_msg_free(nng_aio_get_msg(test_aios[i]));
            nng_aio_set_msg(test_aios[i], NULL);
        }
    }
    for (unsigned i = 0; i < TEST_HANDLES_MAX; i++) {
        if (test_ctxs[i] != NULL) {
            lk_ctx_close(test_ctxs[i]);
            test_ctxs[i] = NULL;
        }
    }
    test_client_close(&test_cli);
    test_server_close(&test_srv);
    for (unsigned i = 0; i < TEST_HANDLES_MAX; i++) {
        nng_aio_free(test_aios[i]);
        test_aios[i] = NULL;
    }
    return 0;
}

/* ------------------------------------------------------------ tests -- */

static void
test_config_refused(void **state)
{
    struct lk_config cfg;
    struct lk_sock  *s = (struct lk_sock *) 1;
    (void) state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.trust     = test_trust_fn;
    cfg.frame_max = 0;
    assert_int_equal(lk_open_dialer(&cfg, &s), MRD_EINVAL);
    assert_null(s);
    cfg.frame_max = LINK_FRAME_PLAIN_MAX + 1;
    assert_int_equal(lk_open_listener(&cfg, &s), MRD_EINVAL);
    cfg.frame_max = 16;
    cfg.trust     = NULL;
    assert_int_equal(lk_open_listener(&cfg, &s), MRD_EINVAL);
    assert_int_equal(lk_open_dialer(NULL, &s), MRD_EINVAL);
    assert_string_equal(lk_reason_name(LK_R_UNTRUSTED), "untrusted");
    assert_string_equal(lk_reason_name(LK_R_REVOKED), "revoked");
    assert_string_equal(lk_reason_name(LK_R_OVERFLOW), "overflow");
    assert_string_equal(lk_reason_name(LK_R_COUNT_), "unknown");
}

/* (a) One round trip; the listener names the dialer's key. */
static void
test_roundtrip(void **state)
{
    struct test_server *srv = &test_srv;
    struct test_client *cli = &test_cli;
    struct lk_ctx      *c   = NULL;
    nng_aio            *aio = NULL;
    uint8_t             peer[LINK_KEY_SIZE];
    char                why[200];
    (void) state;

    test_pair_open(srv, cli);
    aio = test_aio_alloc();
    c   = test_ctx_open(cli);

    /* recv before any send: nothing to wait for. */
    nng_msg *reply = NULL;
    assert_int_equal(test_recv(c, aio, 1000, &reply), NNG_ESTATE);
    /* send without a message. */
    nng_aio_set_msg(aio, NULL);
    lk_ctx_send(c, aio);
    nng_aio_wait(aio);
    assert_int_equal(nng_aio_result(aio), NNG_EINVAL);

    static const char hello[] = "hello, link";
    test_echo_ok(c, aio, hello, sizeof(hello) - 1);
    assert_true(lk_is_up(cli->s));
    test_server_last_peer(srv, peer);
    assert_memory_equal(peer, cli->id.pk, LINK_KEY_SIZE);
    /* Again on the same ctx and session. */
    test_echo_ok(c, aio, "x", 1);
    assert_int_equal(atomic_load(&srv->served), 2);
    assert_int_equal(atomic_load(&cli->stats.sessions), 1);
    assert_int_equal(atomic_load(&srv->stats.sessions), 1);
    assert_int_equal(atomic_load(&cli->ups), 1);
    assert_int_equal(atomic_load(&cli->downs), 0);
    assert_int_equal(test_refused_total(&cli->stats), 0);
    assert_int_equal(test_refused_total(&srv->stats), 0);
    lk_refusal(cli->s, why, sizeof(why));
    assert_string_equal(why, "");
    lk_refusal(srv->s, why, sizeof(why));
    assert_string_equal(why, "");
    /* A reply received is gone: a second recv has nothing to wait for. */
    assert_int_equal(test_recv(c, aio, 1000, &reply), NNG_ESTATE);

    test_ctx_close(c);
    test_client_close(cli);
    test_server_close(srv);
    test_aio_free(aio);
}

/* (b) Many contexts of one dialer at once, sizes from 0 bytes up. */
struct test_thread {
    struct test_client *cli;
    unsigned            n;
    unsigned            ok;
    int                 err;
};

static size_t
test_size(unsigned t, unsigned i)
{
    if (i == 0) {
        return 0;
    }
    static const size_t sizes[]
        = { 1, 3, 16, 100, 1000, 4095, 4096, 4097, 20000, 65536, 100000 };
    return sizes[(t * 7u + i) % (sizeof(sizes) / sizeof(sizes[0]))];
}

static void *
test_thread_main(void *arg)
{
    struct test_thread *th  = arg;
    struct lk_ctx      *c   = NULL;
    nng_aio            *aio = NULL;
    uint8_t            *buf = malloc(100000);
    if (buf == NULL || nng_aio_alloc(&aio, NULL, NULL) != 0
        || lk_ctx_open(th->cli->s, &c) != MRD_OK) {
        th->err = NNG_ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < TEST_REQUESTS; i++) {
        size_t   len   = test_size(th->n, i);
        nng_msg *reply = NULL;
        for (size_t j = 0; j < len; j++) {
            buf[j] = (uint8_t) (th->n * 31u + i * 7u + j);
        }
        int rv = test_request(c, aio, buf, len, &reply);
        if (rv != 0) {
            th->err = rv;
            break;
        }
        if (test_reply_ok(buf, len, reply)) {
            th->ok++;
        }
        nng_msg_free(reply);
    }
out:
    lk_ctx_close(c);
    nng_aio_free(aio);
    free(buf);
    return NULL;
}

static void
test_concurrent(void **state)
{
    struct test_server *srv = &test_srv;
    struct test_client *cli = &test_cli;
    pthread_t           tid[TEST_THREADS];
    struct test_thread  th[TEST_THREADS];
    (void) state;

    test_pair_open(srv, cli);
    for (unsigned i = 0; i < TEST_THREADS; i++) {
        th[i] = (struct test_thread) { .cli = cli, .n = i };
        assert_int_equal(
            pthread_create(&tid[i], NULL, test_thread_main, &th[i]), 0);
    }
    for (unsigned i = 0; i < TEST_THREADS; i++) {
        pthread_join(tid[i], NULL);
    }
    for (unsigned i = 0; i < TEST_THREADS; i++) {
        if (th[i].err != 0) {
            fail_msg("thread %u: %s after %u replies", i,
                nng_strerror(th[i].err), th[i].ok);
        }
        assert_int_equal(th[i].ok, TEST_REQUESTS);
    }
    assert_int_equal(atomic_load(&srv->served), TEST_THREADS * TEST_REQUESTS);
    assert_int_equal(atomic_load(&srv->stats.sessions), 1);
    assert_int_equal(test_refused_total(&srv->stats), 0);
    assert_int_equal(test_refused_total(&cli->stats), 0);
    test_client_close(cli);
    test_server_close(srv);
}

/* (c) A 1 MiB message, and its 1 MiB + 1 reply. */
static void
test_large(void **state)
{
    struct test_server *srv = &test_srv;
    struct test_client *cli = &test_cli;
    struct lk_ctx      *c   = NULL;
    nng_aio            *aio = NULL;
    size_t              len = 1024u * 1024u;
    uint8_t            *buf = malloc(len);
    (void) state;

    assert_non_null(buf);
    randombytes_buf(buf, len);
    test_pair_open(srv, cli);
    aio = test_aio_alloc();
    c   = test_ctx_open(cli);
    test_echo_ok(c, aio, buf, len);
    test_echo_ok(c, aio, buf, 10); /* the session goes on */
    test_ctx_close(c);
    test_client_close(cli);
    test_server_close(srv);
    test_aio_free(aio);
    free(buf);
}

/* A request started before dialing (so it waits for the session whatever
 * the timing) that must end with want. */
static void
test_refused_request(struct test_server *srv, struct test_client *cli, int want)
{
    struct lk_ctx *c   = NULL;
    nng_aio       *aio = NULL;
    aio                = test_aio_alloc();
    c                  = test_ctx_open(cli);
    test_client_slow_reconnect(cli);
    test_send_start(c, aio, "req", 3, TEST_REQ_TIMEOUT_MS);
    test_client_dial(cli, srv->url);
    int rv = test_send_wait(aio);
    if (rv != want) {
        fail_msg("send ended with '%s', want '%s'", nng_strerror(rv),
            nng_strerror(want));
    }
    assert_false(lk_is_up(cli->s));
    assert_int_equal(atomic_load(&cli->ups), 0);
    test_ctx_close(c);
    test_aio_free(aio);
}

/* Refusals for reason r equal the trust callback's calls less `before`:
 * exactly one count per refused handshake (once the other side stopped,
 * the last handshake may still be between the two). */
struct test_settle {
    struct lk_stats   *stats;
    enum lk_reason     r;
    struct test_trust *trust;
    unsigned           before;
};

static bool
test_settled(void *arg)
{
    struct test_settle *st = arg;
    return test_refused(st->stats, st->r)
        == atomic_load(&st->trust->calls) - st->before;
}

/* (d) The listener does not trust the dialer's key. */
static void
test_dialer_untrusted(void **state)
{
    struct test_server *srv = &test_srv;
    struct test_client *cli = &test_cli;
    struct test_id      other;
    char                why[200];
    (void) state;

    test_server_open(srv, test_cid);
    test_client_open(cli, test_cid);
    test_id_make(&other);
    test_trust_add(&srv->trust, other.pk); /* not the client's */
    test_trust_add(&cli->trust, srv->id.pk);
    test_refused_request(srv, cli, NNG_EPEERAUTH);

    lk_refusal(cli->s, why, sizeof(why));
    assert_non_null(strstr(why, "untrusted"));
    assert_non_null(strstr(why, "127.0.0.1"));
    assert_true(test_refused(&srv->stats, LK_R_UNTRUSTED) >= 1);
    test_client_close(cli);

    struct test_settle st = { &srv->stats, LK_R_UNTRUSTED, &srv->trust, 0 };
    assert_true(test_wait_for(test_settled, &st));
    assert_int_equal(test_refused_total(&srv->stats),
        test_refused(&srv->stats, LK_R_UNTRUSTED));
    assert_int_equal(atomic_load(&srv->stats.sessions), 0);
    assert_int_equal(atomic_load(&cli->stats.sessions), 0);
    assert_int_equal(test_refused_total(&cli->stats), 0);
    test_server_close(srv);
}

/* (e) The dialer does not trust the listener's key. */
static void
test_listener_untrusted(void **state)
{
    struct test_server *srv = &test_srv;
    struct test_client *cli = &test_cli;
    struct test_id      other;
    char                why[200];
    (void) state;

    test_server_open(srv, test_cid);
    test_client_open(cli, test_cid);
    test_id_make(&other);
    test_trust_add(&srv->trust, cli->id.pk);
    test_trust_add(&cli->trust, other.pk); /* not the server's */
    test_refused_request(srv, cli, NNG_EPEERAUTH);

    lk_refusal(cli->s, why, sizeof(why));
    assert_non_null(strstr(why, "untrusted"));
    assert_true(test_refused(&cli->stats, LK_R_UNTRUSTED) >= 1);
    test_client_close(cli);

    /* Counted by the dialer, once per handshake; the listener never saw
     * the dialer's identity and refused nothing. */
    struct test_settle st = { &cli->stats, LK_R_UNTRUSTED, &cli->trust, 0 };
    assert_true(test_settled(&st));
    assert_int_equal(test_refused_total(&cli->stats),
        test_refused(&cli->stats, LK_R_UNTRUSTED));
    assert_int_equal(atomic_load(&srv->trust.calls), 0);
    assert_int_equal(test_refused_total(&srv->stats), 0);
    assert_int_equal(atomic_load(&srv->stats.sessions), 0);
    test_server_close(srv);
}

/* (f) A dialer of another cluster. */
static void
test_wrong_cluster(void **state)
{
    struct test_server *srv = &test_srv;
    struct test_client *cli = &test_cli;
    char                why[200];
    (void) state;

    test_server_open(srv, test_cid);
    test_client_open(cli, test_cid_other);
    test_trust_add(&srv->trust, cli->id.pk);
    test_trust_add(&cli->trust, srv->id.pk);
    test_refused_request(srv, cli, NNG_EPEERAUTH);

    lk_refusal(cli->s, why, sizeof(why));
    assert_non_null(strstr(why, "cluster"));
    assert_true(test_refused(&srv->stats, LK_R_CLUSTER) >= 1);
    test_client_close(cli);
    /* Refused at msg1: no identity went either way. */
    assert_int_equal(test_refused_total(&srv->stats),
        test_refused(&srv->stats, LK_R_CLUSTER));
    assert_int_equal(atomic_load(&srv->trust.calls), 0);
    assert_int_equal(atomic_load(&cli->trust.calls), 0);
    assert_int_equal(test_refused_total(&cli->stats), 0);
    test_server_close(srv);
}

/* (g) lk_revalidate() after the listener stopped trusting the dialer. */
static void
test_revalidate(void **state)
{
    struct test_server *srv = &test_srv;
    struct test_client *cli = &test_cli;
    struct lk_ctx      *c   = NULL;
    nng_aio            *aio = NULL;
    (void) state;

    test_pair_open(srv, cli);
    aio = test_aio_alloc();
    c   = test_ctx_open(cli);
    test_echo_ok(c, aio, "before", 6);
    assert_int_equal(atomic_load(&srv->trust.calls), 1);

    /* Still trusted: revalidation changes nothing. */
    lk_revalidate(srv->s);
    assert_int_equal(atomic_load(&srv->trust.calls), 2);
    test_echo_ok(c, aio, "still", 5);
    assert_int_equal(test_refused(&srv->stats, LK_R_REVOKED), 0);

    test_trust_clear(&srv->trust);
    lk_revalidate(srv->s);
    assert_int_equal(atomic_load(&srv->trust.calls), 3);
    assert_int_equal(test_refused(&srv->stats, LK_R_REVOKED), 1);
    assert_true(test_wait_for(test_client_is_down, cli));
    assert_int_equal(atomic_load(&cli->downs), 1);

    /* The next request waits for a session: the reconnects are refused. */
    int rv = test_request_rv(c, aio, "after", 5);
    if (rv != NNG_EPEERAUTH) {
        fail_msg("request after revocation: %s", nng_strerror(rv));
    }
    assert_true(test_refused(&srv->stats, LK_R_UNTRUSTED) >= 1);
    test_ctx_close(c);
    test_client_close(cli);

    struct test_settle st = { &srv->stats, LK_R_UNTRUSTED, &srv->trust, 3 };
    assert_true(test_wait_for(test_settled, &st));
    assert_int_equal(test_refused(&srv->stats, LK_R_REVOKED), 1);
    assert_int_equal(test_refused_total(&srv->stats),
        test_refused(&srv->stats, LK_R_UNTRUSTED) + 1);
    assert_int_equal(atomic_load(&srv->stats.sessions), 1);
    assert_int_equal(atomic_load(&cli->ups), 1);
    test_server_close(srv);
    test_aio_free(aio);
}

/* (h) A plain NNG req0 socket: no answer to garbage, counted; a
 * malformed msg1 gets the plain refusal; the listener serves on. */
static bool
test_server_counted_early(void *arg)
{
    struct test_server *srv = arg;
    return test_refused(&srv->stats, LK_R_EARLY)
        + test_refused(&srv->stats, LK_R_MALFORMED)
        > 0;
}

static void
test_plain_req(void **state)
{
    struct test_server *srv = &test_srv;
    struct test_client *cli = &test_cli;
    nng_socket          rs;
    char               *buf = NULL;
    size_t              sz  = 0;
    (void) state;

    test_server_open(srv, test_cid);
    assert_int_equal(nng_req0_open(&rs), 0);
    assert_int_equal(nng_socket_set_ms(rs, NNG_OPT_RECVTIMEO, 500), 0);
    assert_int_equal(nng_dial(rs, srv->url, NULL, 0), 0);
    char garbage[] = "GET / HTTP/1.0\r\n\r\n";
    assert_int_equal(nng_send(rs, garbage, sizeof(garbage) - 1, 0), 0);
    nng_time t0 = nng_clock();
    assert_int_equal(nng_recv(rs, &buf, &sz, NNG_FLAG_ALLOC), NNG_ETIMEDOUT);
    nng_time waited = nng_clock() - t0;
    assert_true(waited >= 400 && waited < 3000);
    assert_true(test_wait_for(test_server_counted_early, srv));
    assert_int_equal(test_refused(&srv->stats, LK_R_EARLY), 1);

    /* Looks like a handshake ("ML", version, msg 1) but is not one: the
     * plain refusal comes back, reason malformed. */
    uint8_t bad[LINK_HDR_SIZE + 10]
        = { LINK_MAGIC0, LINK_MAGIC1, (uint8_t) LINK_VERSION, 1 };
    assert_int_equal(nng_send(rs, bad, sizeof(bad), 0), 0);
    assert_int_equal(nng_recv(rs, &buf, &sz, NNG_FLAG_ALLOC), 0);
    assert_int_equal(sz, LK_REFUSAL_SIZE);
    assert_int_equal((uint8_t) buf[0], LINK_MAGIC0);
    assert_int_equal((uint8_t) buf[1], LINK_MAGIC1);
    assert_int_equal((uint8_t) buf[3], LK_REFUSAL_TYPE);
    assert_int_equal((uint8_t) buf[4], LK_R_MALFORMED);
    nng_free(buf, sz);
    assert_int_equal(test_refused(&srv->stats, LK_R_MALFORMED), 1);
    nng_close(rs);

    /* A good dialer is served as ever. */
    test_client_open(cli, test_cid);
    test_trust_add(&srv->trust, cli->id.pk);
    test_trust_add(&cli->trust, srv->id.pk);
    test_client_dial(cli, srv->url);
    if (!test_wait_for(test_client_is_up, cli)) {
        fail_msg("no session in %u ms: early %u, malformed %u, timeout %u",
            TEST_WAIT_MS, (unsigned) test_refused(&srv->stats, LK_R_EARLY),
            (unsigned) test_refused(&srv->stats, LK_R_MALFORMED),
            (unsigned) test_refused(&srv->stats, LK_R_TIMEOUT));
    }
    struct lk_ctx *c   = NULL;
    nng_aio       *aio = NULL;
    aio                = test_aio_alloc();
    c                  = test_ctx_open(cli);
    test_echo_ok(c, aio, "good", 4);
    assert_int_equal(atomic_load(&srv->stats.sessions), 1);
    test_ctx_close(c);
    test_client_close(cli);
    test_server_close(srv);
    test_aio_free(aio);
}

/* (i) No listener: the request's own timeout ends it. Then cancel, ctx
 * close and shutdown end waiting requests. */
static void
test_no_listener(void **state)
{
    struct test_client *cli = &test_cli;
    struct lk_ctx      *c   = NULL;
    nng_aio            *aio = NULL;
    nng_socket          tmp;
    nng_listener        l;
    int                 port = 0;
    char                url[64];
    (void) state;

    /* A port nobody listens on: bound once, then released. */
    assert_int_equal(nng_rep0_open(&tmp), 0);
    assert_int_equal(nng_listen(tmp, "tcp://127.0.0.1:0", &l, 0), 0);
    assert_int_equal(nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port), 0);
    nng_close(tmp);
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);

    test_client_open(cli, test_cid);
    test_client_dial(cli, url);
    aio = test_aio_alloc();
    c   = test_ctx_open(cli);

    nng_time t0 = nng_clock();
    test_send_start(c, aio, "anyone?", 7, 300);
    assert_int_equal(test_send_wait(aio), NNG_ETIMEDOUT);
    nng_time waited = nng_clock() - t0;
    assert_true(waited >= 250 && waited < 3000);

    /* Cancelled by the caller. */
    test_send_start(c, aio, "x", 1, TEST_REQ_TIMEOUT_MS);
    nng_msleep(20);
    nng_aio_cancel(aio);
    assert_int_equal(test_send_wait(aio), NNG_ECANCELED);

    /* The ctx closed under a waiting request. */
    test_send_start(c, aio, "y", 1, TEST_REQ_TIMEOUT_MS);
    nng_msleep(20);
    test_ctx_close(c);
    assert_int_equal(test_send_wait(aio), NNG_ECLOSED);

    /* The socket shut down under a waiting request, then later calls. */
    c = test_ctx_open(cli);
    test_send_start(c, aio, "z", 1, TEST_REQ_TIMEOUT_MS);
    nng_msleep(20);
    lk_shutdown(cli->s);
    assert_int_equal(test_send_wait(aio), NNG_ECLOSED);
    test_send_start(c, aio, "z", 1, TEST_REQ_TIMEOUT_MS);
    assert_int_equal(test_send_wait(aio), NNG_ECLOSED);
    assert_int_equal(atomic_load(&cli->stats.sessions), 0);
    test_ctx_close(c);
    test_client_close(cli); /* lk_shutdown twice is fine */
    test_aio_free(aio);
}

static bool
test_client_back_up(void *arg)
{
    struct test_client *c = arg;
    return atomic_load(&c->downs) >= 1 && lk_is_up(c->s);
}

/* A pipe that owes replies and answers nothing for a request's whole
 * timeout is closed and dialed again; one that answers other requests is
 * kept. Without this, a blackholed connection that stays open holds its
 * requests' slots for good, and once LK_INFLIGHT_MAX of them timed out no
 * request leaves the socket again, healed network or not. */
static void
test_stalled_pipe(void **state)
{
    (void) state;
    struct test_server *srv = &test_srv;
    struct test_client *cli = &test_cli;
    test_pair_open(srv, cli);
    assert_true(test_wait_for(test_client_is_up, cli));
    struct lk_ctx *c   = test_ctx_open(cli);
    nng_aio       *aio = test_aio_alloc();
    test_echo_ok(c, aio, "before", 6);
    atomic_store(&srv->mute, true);

    /* Nothing comes back for the request's whole timeout: the pipe is
     * closed, counted, and the socket dials again. */
    nng_msg *reply = NULL;
    test_send_start(c, aio, "Mute", 4, TEST_REQ_TIMEOUT_MS);
    assert_int_equal(test_send_wait(aio), 0);
    assert_int_equal(test_recv(c, aio, 300, &reply), NNG_ETIMEDOUT);
    assert_int_equal(atomic_load(&cli->stats.stalled), 1);
    assert_true(test_wait_for(test_client_back_up, cli));
    int ups = atomic_load(&cli->ups);
    assert_true(ups >= 2);
    test_echo_ok(c, aio, "after", 5);

    /* A request that is never answered while others are: slow, not
     * stalled; the pipe stays. */
    struct lk_ctx *c2   = test_ctx_open(cli);
    nng_aio       *aio2 = test_aio_alloc();
    test_send_start(c2, aio2, "Mslow", 5, TEST_REQ_TIMEOUT_MS);
    assert_int_equal(test_send_wait(aio2), 0);
    nng_aio_set_timeout(aio2, 600);
    lk_ctx_recv(c2, aio2);
    for (int i = 0; i < 12; i++) {
        nng_msleep(80);
        test_echo_ok(c, aio, "alive", 5);
    }
    nng_aio_wait(aio2);
    assert_int_equal(nng_aio_result(aio2), NNG_ETIMEDOUT);
    assert_int_equal(atomic_load(&cli->stats.stalled), 1);
    assert_int_equal(atomic_load(&cli->ups), ups);

    /* A full pipe: LK_INFLIGHT_MAX requests out, none answered (the
     * "Mslow" above still holds its slot; the others' senders do not wait
     * for replies), and the next request waits for a slot until its
     * timeout: stalled too. */
    const unsigned fill = LK_INFLIGHT_MAX - 1;
    struct lk_ctx *full[LK_INFLIGHT_MAX];
    nng_aio       *full_aio[LK_INFLIGHT_MAX];
    for (unsigned i = 0; i < fill; i++) {
        full[i]     = test_ctx_open(cli);
        full_aio[i] = test_aio_alloc();
        test_send_start(full[i], full_aio[i], "Mfill", 5, TEST_REQ_TIMEOUT_MS);
        assert_int_equal(test_send_wait(full_aio[i]), 0);
    }
    test_send_start(c2, aio2, "next", 4, 300);
    assert_int_equal(test_send_wait(aio2), NNG_ETIMEDOUT);
    assert_int_equal(atomic_load(&cli->stats.stalled), 2);
    for (unsigned i = 0; i < fill; i++) {
        /* Failed by the pipe's removal: the link, not the peer. */
        assert_int_equal(
            test_recv(full[i], full_aio[i], 3000, &reply), NNG_ECONNRESET);
    }
    assert_true(test_wait_for(test_client_is_up, cli));
    test_echo_ok(c2, aio2, "healed", 6);
    assert_int_equal(atomic_load(&srv->stats.refused[LK_R_FRAME]), 0);
}

int
main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        return 1;
    }
    if (argc == 2) {
        cmocka_set_test_filter(argv[1]); /* e.g. "test_revalidate" */
    }
    alarm(TEST_ALARM_S);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_config_refused, test_teardown),
        cmocka_unit_test_teardown(test_roundtrip, test_teardown),
        cmocka_unit_test_teardown(test_concurrent, test_teardown),
        cmocka_unit_test_teardown(test_large, test_teardown),
        cmocka_unit_test_teardown(test_dialer_untrusted, test_teardown),
        cmocka_unit_test_teardown(test_listener_untrusted, test_teardown),
        cmocka_unit_test_teardown(test_wrong_cluster, test_teardown),
        cmocka_unit_test_teardown(test_revalidate, test_teardown),
        cmocka_unit_test_teardown(test_plain_req, test_teardown),
        cmocka_unit_test_teardown(test_no_listener, test_teardown),
        cmocka_unit_test_teardown(test_stalled_pipe, test_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
