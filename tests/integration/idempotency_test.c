/*
 * idempotency_test.c: nothing is written twice across nodes: an
 * idempotency key holds on every replica (docs/ARCHITECTURE.md,
 * "Idempotency across nodes"; docs/PROTOCOL.md, section 7, record field
 * idem), and a node whose data dir was emptied never hands out a dot again
 * (docs/ARCHITECTURE.md, "A node that comes back empty"; last test).
 *
 * Two nodes in a full mesh, both in region "a". A client that times out on
 * one node retries on another; once the first append has replicated, the
 * second node must answer the retry with the first answer, not write the
 * events again.
 *   1. An append of three events with key "order-1" on node 1, acknowledged
 *      at MRD_ACK_REGION k = 2 (so node 2 holds it when the call returns).
 *   2. The same append with the same key on node 2: MRD_OK, replayed, the
 *      first append's dots (origin 1), count 3; node 2's stream still has
 *      three events, and node 2 counted the key it learnt
 *      (idem_replicated).
 *   3. The same key on node 2 with other events, or another expected
 *      version, or on another stream: MRD_EIDEMPOTENCY, nothing written.
 *   4. Node 2 restarted: the key is still known there (it is durable with
 *      the events it came with).
 *   5. The other way round: a key first used on node 2 replays on node 1.
 *   6. A key taken on node 1 while node 2 is down, and then used on node 2
 *      for a different append before node 1's could arrive: both nodes keep
 *      their own (each answered a client with it), node 2 counts the one it
 *      kept (idem_replicated_kept), and both appends' events are on both
 *      nodes: a key is a guard against retries, not a lock.
 *   7. An append sent to a node that then stops answering (SIGSTOP) is
 *      retried on that node only: MRD_ETIMEDOUT, nothing on the other
 *      node; once the node continues, a retry with the same key on that
 *      node leaves exactly one event everywhere.
 *   8. Session order: an append is not taken by a node that lacks the
 *      client's previous event of the stream (MRD_ECAUSAL), and is taken
 *      after it once replication brought it.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common.h"
#include "harness.h"

#define IDEM_NODES 2u

struct idem_node {
    struct harness_node h;
    char                peers[512];
    const char         *args[10];
    mrd_client         *c; /* a client on this node only */
};

static struct idem_node idem_nodes[IDEM_NODES];
static const char       idem_cluster_id[] = "00112233445566778899aabbccddeeff";

static void
idem_args(struct idem_node *n, bool with_peers)
{
    size_t a     = 0;
    n->args[a++] = "--region";
    n->args[a++] = "a";
    n->args[a++] = "--cluster-id";
    n->args[a++] = idem_cluster_id;
    if (with_peers) {
        n->args[a++] = "--peers";
        n->args[a++] = n->peers;
    }
    n->args[a] = NULL;
}

static void
idem_peers(struct idem_node *n)
{
    const struct idem_node *p
        = n == &idem_nodes[0] ? &idem_nodes[1] : &idem_nodes[0];
    int w = snprintf(
        n->peers, sizeof n->peers, "%" PRIu64 "@%s", p->h.node_id, p->h.url);
    assert_true(w > 0 && (size_t) w < sizeof n->peers);
}

static uint64_t
idem_stat(const struct idem_node *n, const char *name)
{
    uint64_t value = 0;
    assert_int_equal(harness_node_stat(&n->h, name, &value), 0);
    return value;
}

static void
idem_client(struct idem_node *n)
{
    struct harness_node *one[] = { &n->h };
    if (n->c != NULL) {
        mrd_client_close(n->c);
        n->c = NULL;
    }
    assert_int_equal(harness_client_open(one, 1, NULL, &n->c), MRD_OK);
}

/* Appends `count` events "<tag>-<i>" to stream with key (NUL-terminated). */
static int
idem_append(struct idem_node *n, const char *stream, const char *key,
    const char *tag, uint32_t count, int64_t expected, int ack,
    mrd_append_result *res)
{
    mrd_event_in    ev[4];
    char            data[4][32];
    mrd_append_opts opts;

    assert_true(count <= 4);
    memset(ev, 0, sizeof ev);
    for (uint32_t i = 0; i < count; i++) {
        snprintf(data[i], sizeof data[i], "%s-%u", tag, i);
        ev[i].type      = "Ordered";
        ev[i].data      = data[i];
        ev[i].data_size = strlen(data[i]);
    }
    mrd_append_opts_init(&opts);
    opts.expected_version     = expected;
    opts.idempotency_key      = key;
    opts.idempotency_key_size = strlen(key);
    opts.ack                  = ack;
    opts.ack_count            = 2;
    opts.ack_wait_ms          = harness_ms(10000);
    memset(res, 0, sizeof *res);
    return mrd_append(n->c, stream, ev, count, &opts, res);
}

static uint64_t
idem_count(struct idem_node *n, const char *stream)
{
    mrd_stream_info info = { 0 };
    int             rv   = mrd_stream_info_get(n->c, stream, &info);
    return rv == MRD_OK ? info.count : 0;
}

struct idem_want {
    struct idem_node *n;
    const char       *stream;
    uint64_t          count;
};

static bool
idem_has(void *arg)
{
    struct idem_want *w = arg;
    return idem_count(w->n, w->stream) >= w->count;
}

/* Both nodes end with exactly count events in stream (waited for,
 * bounded), and a moment later still do. */
static void
idem_expect_both(const char *stream, uint64_t count)
{
    for (uint32_t i = 0; i < IDEM_NODES; i++) {
        struct idem_want want = { &idem_nodes[i], stream, count };
        assert_true(harness_wait_for(idem_has, &want, 200, 100));
    }
    harness_sleep_ms(300);
    for (uint32_t i = 0; i < IDEM_NODES; i++) {
        assert_int_equal(idem_count(&idem_nodes[i], stream), count);
    }
}

static void
idem_start(struct idem_node *n)
{
    idem_peers(n);
    idem_args(n, true);
    assert_int_equal(harness_node_start(&n->h, n->args), 0);
    idem_client(n);
}

/* Ports first (each node names the other), then start both. */
static void
idem_cluster_start(void)
{
    for (uint32_t i = 0; i < IDEM_NODES; i++) {
        assert_int_equal(harness_node_init(&idem_nodes[i].h, i + 1), 0);
        idem_args(&idem_nodes[i], false);
        assert_int_equal(
            harness_node_start(&idem_nodes[i].h, idem_nodes[i].args), 0);
    }
    for (uint32_t i = 0; i < IDEM_NODES; i++) {
        assert_int_equal(harness_node_stop(&idem_nodes[i].h), 0);
    }
    for (uint32_t i = 0; i < IDEM_NODES; i++) {
        idem_start(&idem_nodes[i]);
    }
}

static void
test_idempotency_across_nodes(void **state)
{
    struct idem_node *one = &idem_nodes[0], *two = &idem_nodes[1];
    mrd_append_result first, again;
    (void) state;

    idem_cluster_start();

    /* 1. */
    int rv = idem_append(one, "orders", "order-1", "first", 3,
        MRD_EXPECT_NO_STREAM, MRD_ACK_REGION, &first);
    assert_int_equal(rv, MRD_OK);
    assert_int_equal(first.count, 3);
    assert_int_equal(first.first_dot.origin, 1);
    assert_false(first.replayed);
    assert_int_equal(idem_count(two, "orders"), 3);

    /* 2. */
    rv = idem_append(two, "orders", "order-1", "first", 3, MRD_EXPECT_NO_STREAM,
        MRD_ACK_LOCAL, &again);
    assert_int_equal(rv, MRD_OK);
    assert_true(again.replayed);
    assert_int_equal(again.first_dot.origin, first.first_dot.origin);
    assert_int_equal(again.first_dot.seq, first.first_dot.seq);
    assert_int_equal(again.count, 3);
    assert_int_equal(again.first_position, 0);
    assert_int_equal(again.version, 2);
    assert_int_equal(again.hlc, first.hlc);
    assert_int_equal(idem_count(two, "orders"), 3);
    assert_true(idem_stat(two, "idem_replicated") >= 1);
    assert_true(idem_stat(two, "idempotent_replays") >= 1);
    printf("idempotency_test: the retry on node 2 replayed node 1's answer "
           "(dot 1:%" PRIu64 ")\n",
        again.first_dot.seq);

    /* 3. */
    rv = idem_append(two, "orders", "order-1", "other", 3, MRD_EXPECT_ANY,
        MRD_ACK_LOCAL, &again);
    assert_int_equal(rv, MRD_EIDEMPOTENCY);
    rv = idem_append(two, "orders", "order-1", "first", 3, MRD_EXPECT_ANY,
        MRD_ACK_LOCAL, &again);
    assert_int_equal(rv, MRD_EIDEMPOTENCY); /* another expected version */
    rv = idem_append(two, "invoices", "order-1", "first", 3,
        MRD_EXPECT_NO_STREAM, MRD_ACK_LOCAL, &again);
    assert_int_equal(rv, MRD_EIDEMPOTENCY); /* another stream */
    assert_int_equal(idem_count(two, "orders"), 3);
    assert_int_equal(idem_count(two, "invoices"), 0);

    /* 4. */
    mrd_client_close(two->c);
    two->c = NULL;
    assert_int_equal(harness_node_stop(&two->h), 0);
    idem_start(two);
    rv = idem_append(two, "orders", "order-1", "first", 3, MRD_EXPECT_NO_STREAM,
        MRD_ACK_LOCAL, &again);
    assert_int_equal(rv, MRD_OK);
    assert_true(again.replayed);
    assert_int_equal(again.first_dot.seq, first.first_dot.seq);
    assert_int_equal(idem_count(two, "orders"), 3);

    /* 5. */
    rv = idem_append(
        two, "carts", "cart-9", "c", 2, MRD_EXPECT_ANY, MRD_ACK_REGION, &first);
    assert_int_equal(rv, MRD_OK);
    assert_int_equal(first.first_dot.origin, 2);
    rv = idem_append(
        one, "carts", "cart-9", "c", 2, MRD_EXPECT_ANY, MRD_ACK_LOCAL, &again);
    assert_int_equal(rv, MRD_OK);
    assert_true(again.replayed);
    assert_int_equal(again.first_dot.origin, 2);
    assert_int_equal(again.first_dot.seq, first.first_dot.seq);
    assert_int_equal(idem_count(one, "carts"), 2);

    /* 6. Node 2 down: node 1 takes "dup" on stream "x"; node 2, back but
     * cut off from node 1's events for a moment, takes "dup" on "y". */
    mrd_client_close(two->c);
    two->c = NULL;
    assert_int_equal(harness_node_stop(&two->h), 0);
    rv = idem_append(
        one, "x", "dup", "x", 1, MRD_EXPECT_ANY, MRD_ACK_LOCAL, &first);
    assert_int_equal(rv, MRD_OK);
    assert_int_equal(harness_node_signal(&one->h, SIGSTOP), 0);
    idem_start(two);
    uint64_t kept0 = idem_stat(two, "idem_replicated_kept");
    rv             = idem_append(
                    two, "y", "dup", "y", 1, MRD_EXPECT_ANY, MRD_ACK_LOCAL, &again);
    assert_int_equal(rv, MRD_OK);
    assert_false(again.replayed);
    assert_int_equal(harness_node_signal(&one->h, SIGCONT), 0);
    struct idem_want on_two = { two, "x", 1 }, on_one = { one, "y", 1 };
    assert_true(harness_wait_for(idem_has, &on_two, 200, 100));
    assert_true(harness_wait_for(idem_has, &on_one, 200, 100));
    assert_true(idem_stat(two, "idem_replicated_kept") > kept0);
    /* Each node answers a retry with the append it took itself. */
    rv = idem_append(
        two, "y", "dup", "y", 1, MRD_EXPECT_ANY, MRD_ACK_LOCAL, &again);
    assert_int_equal(rv, MRD_OK);
    assert_true(again.replayed);
    assert_int_equal(again.first_dot.origin, 2);
    rv = idem_append(
        one, "x", "dup", "x", 1, MRD_EXPECT_ANY, MRD_ACK_LOCAL, &again);
    assert_int_equal(rv, MRD_OK);
    assert_true(again.replayed);
    assert_int_equal(again.first_dot.origin, 1);
    assert_int_equal(idem_stat(one, "rejected_replication"), 0);
    assert_int_equal(idem_stat(two, "rejected_replication"), 0);
}

/* Node 2 wrote events, then its data dir is emptied and it starts again
 * under the same id. It must not take an append before its own earlier
 * events are back: a new event under a dot it handed out before would be
 * skipped as held by every replica that has the old one. */
static void
test_emptied_node_rejoins(void **state)
{
    struct idem_node *one = &idem_nodes[0], *two = &idem_nodes[1];
    mrd_append_result res;
    (void) state;

    idem_cluster_start();
    int rv = idem_append(two, "ledger", "before-1", "old", 4, MRD_EXPECT_ANY,
        MRD_ACK_REGION, &res);
    assert_int_equal(rv, MRD_OK);
    assert_int_equal(res.first_dot.origin, 2);
    uint64_t old_last = res.first_dot.seq + res.count - 1;

    mrd_client_close(two->c);
    two->c = NULL;
    assert_int_equal(harness_node_stop(&two->h), 0);
    assert_int_equal(harness_rmrf(two->h.data_dir), 0);
    idem_start(two);
    /* At once: refused (MRD_EBUSY) until node 2 has read node 1's log,
     * then taken, under a new dot. The client does not retry on another
     * node here: it knows only node 2. */
    uint64_t t0 = mrd_now_mono_ms();
    do {
        rv = idem_append(two, "ledger", "after-1", "new", 1, MRD_EXPECT_ANY,
            MRD_ACK_LOCAL, &res);
    } while (rv != MRD_OK && mrd_now_mono_ms() - t0 < harness_ms(20000));
    if (rv != MRD_OK || res.first_dot.seq <= old_last) {
        fail_msg("the emptied node answered %s, dot 2:%" PRIu64
                 " (it wrote up to 2:%" PRIu64 " before)",
            mrd_errname(rv), res.first_dot.seq, old_last);
    }
    assert_int_equal(res.first_dot.origin, 2);
    printf("idempotency_test: the emptied node took its first append after "
           "%" PRIu64 " ms, as dot 2:%" PRIu64 " (it wrote up to 2:%" PRIu64
           " before)\n",
        mrd_now_mono_ms() - t0, res.first_dot.seq, old_last);
    assert_true(harness_node_log_contains(
        &two->h, "caught up after starting on an empty data dir"));
    /* Both nodes end with the five events, each once. */
    idem_expect_both("ledger", 5);
    assert_int_equal(idem_stat(one, "rejected_replication"), 0);
    assert_int_equal(idem_stat(two, "rejected_replication"), 0);
}

/* An append whose request reached a node and got no answer stays on that
 * node: the client retries it there only, where the idempotency record
 * answers, and gives MRD_ETIMEDOUT when the node stays away; it never
 * writes the append on another node meanwhile, where it could land twice.
 * The node is paused (SIGSTOP) with the request in its socket buffer. */
static mrd_client *idem_both;

static void
test_unknown_outcome_stays_on_node(void **state)
{
    struct idem_node *one = &idem_nodes[0], *two = &idem_nodes[1];
    mrd_append_result res;
    (void) state;

    idem_cluster_start();
    const char     *urls[2] = { one->h.url, two->h.url };
    mrd_client_opts opts;
    mrd_client_opts_init(&opts);
    opts.timeout_ms         = 2000;
    opts.attempt_timeout_ms = 300;
    assert_int_equal(harness_client_open_urls(urls, 2, &opts, &idem_both), 0);
    mrd_event_in ev = { .type = "T", .data = "warm", .data_size = 4 };
    assert_int_equal(mrd_append(idem_both, "warm", &ev, 1, NULL, &res), MRD_OK);
    struct idem_node *took  = res.first_dot.origin == 1 ? one : two;
    struct idem_node *other = took == one ? two : one;

    assert_int_equal(harness_node_signal(&took->h, SIGSTOP), 0);
    mrd_append_opts ao;
    mrd_append_opts_init(&ao);
    ao.idempotency_key      = "pinned-1";
    ao.idempotency_key_size = 8;
    ev.data                 = "pinned";
    int rv = mrd_append(idem_both, "pinned", &ev, 1, &ao, &res);
    /* Before the fix, the retry went to the other node and succeeded. */
    assert_int_equal(rv, MRD_ETIMEDOUT);
    assert_int_equal(idem_count(other, "pinned"), 0);
    assert_int_equal(harness_node_signal(&took->h, SIGCONT), 0);
    /* The outcome was unknown: the paused node may or may not take the
     * request it had buffered (the client closed that connection as
     * stalled, and a reset discards unread bytes). A retry with the same
     * key on that node settles it: one event, on both nodes. (A retry on
     * the other node could store it twice before node 1's copy arrives:
     * docs/ARCHITECTURE.md, "Idempotency across nodes".) */
    rv = MRD_ETIMEDOUT;
    for (int i = 0; i < 10 && rv != MRD_OK; i++) {
        rv = mrd_append(took->c, "pinned", &ev, 1, &ao, &res);
    }
    assert_int_equal(rv, MRD_OK);
    idem_expect_both("pinned", 1);
}

/* Session order: a client's append to a stream is never taken by a node
 * that does not yet hold the client's previous acknowledged event of that
 * stream (docs/ARCHITECTURE.md, "Session order"). Node 2 is paused while
 * node 1 takes the first append, then node 1 stops: the next append can
 * only go to node 2, which must refuse it (MRD_ECAUSAL) until node 1 is
 * back and node 2 has pulled the first. A client with no_session_order
 * gets its append taken at once. */
static mrd_client *idem_loose;

static void
test_session_order_across_failover(void **state)
{
    struct idem_node *one = &idem_nodes[0], *two = &idem_nodes[1];
    mrd_append_result res;
    (void) state;

    idem_cluster_start();
    const char     *urls[2] = { one->h.url, two->h.url };
    mrd_client_opts opts;
    mrd_client_opts_init(&opts);
    opts.timeout_ms         = 1500;
    opts.attempt_timeout_ms = 500;
    assert_int_equal(harness_client_open_urls(urls, 2, &opts, &idem_both), 0);
    opts.no_session_order = 1;
    assert_int_equal(harness_client_open_urls(urls, 2, &opts, &idem_loose), 0);

    assert_int_equal(harness_node_signal(&two->h, SIGSTOP), 0);
    mrd_event_in ev = { .type = "T", .data = "first", .data_size = 5 };
    assert_int_equal(mrd_append(idem_both, "seq", &ev, 1, NULL, &res), MRD_OK);
    assert_int_equal(res.first_dot.origin, 1);
    assert_int_equal(
        mrd_append(idem_loose, "loose", &ev, 1, NULL, &res), MRD_OK);
    assert_int_equal(res.first_dot.origin, 1);
    mrd_client_close(one->c);
    one->c = NULL;
    assert_int_equal(harness_node_stop(&one->h), 0);
    assert_int_equal(harness_node_signal(&two->h, SIGCONT), 0);

    uint64_t refused0 = idem_stat(two, "rejected_causal");
    ev.data           = "second";
    ev.data_size      = 6;
    /* Before session order, node 2 took it at once, ahead of "first". */
    assert_int_equal(
        mrd_append(idem_both, "seq", &ev, 1, NULL, &res), MRD_ECAUSAL);
    assert_int_equal(idem_count(two, "seq"), 0);
    assert_true(idem_stat(two, "rejected_causal") > refused0);
    /* Without a session context it is taken, out of the session's order. */
    assert_int_equal(
        mrd_append(idem_loose, "loose", &ev, 1, NULL, &res), MRD_OK);
    assert_int_equal(res.first_dot.origin, 2);

    /* Node 1 back: node 2 pulls "first", then takes "second" after it. */
    idem_start(one);
    struct idem_want on_two = { two, "seq", 1 };
    assert_true(harness_wait_for(idem_has, &on_two, 200, 100));
    int rv = MRD_ECAUSAL;
    for (int i = 0; i < 20 && rv != MRD_OK; i++) {
        rv = mrd_append(idem_both, "seq", &ev, 1, NULL, &res);
    }
    assert_int_equal(rv, MRD_OK);
    for (uint32_t n = 0; n < IDEM_NODES; n++) {
        struct idem_want want = { &idem_nodes[n], "seq", 2 };
        assert_true(harness_wait_for(idem_has, &want, 200, 100));
        mrd_events *evs = NULL;
        assert_int_equal(
            mrd_read(idem_nodes[n].c, "seq", 0, MRD_FORWARD, 10, &evs), MRD_OK);
        assert_int_equal(mrd_events_count(evs), 2);
        const mrd_event *e0 = mrd_events_at(evs, 0),
                        *e1 = mrd_events_at(evs, 1);
        assert_memory_equal(e0->data, "first", 5);
        assert_memory_equal(e1->data, "second", 6);
        mrd_events_free(evs);
    }
}

static int
idem_teardown(void **state)
{
    if (idem_loose != NULL) {
        mrd_client_close(idem_loose);
        idem_loose = NULL;
    }
    if (idem_both != NULL) {
        mrd_client_close(idem_both);
        idem_both = NULL;
    }
    for (uint32_t i = 0; i < IDEM_NODES; i++) {
        if (idem_nodes[i].c != NULL) {
            mrd_client_close(idem_nodes[i].c);
            idem_nodes[i].c = NULL;
        }
    }
    return harness_teardown(state);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_idempotency_across_nodes, idem_teardown),
        cmocka_unit_test_teardown(test_emptied_node_rejoins, idem_teardown),
        cmocka_unit_test_teardown(
            test_unknown_outcome_stays_on_node, idem_teardown),
        cmocka_unit_test_teardown(
            test_session_order_across_failover, idem_teardown),
    };
    return cmocka_run_group_tests_name("idempotency", tests, NULL, NULL);
}
