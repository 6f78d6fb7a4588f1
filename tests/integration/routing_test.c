/*
 * routing_test.c: the client library routes by the signed topology
 * (docs/ARCHITECTURE.md, "The client library").
 *
 * A cluster made by `meridianctl cluster init` (regions a, b, c; 2 nodes
 * each; 1 replica of each shard per region), every node started with
 * --topology and the key cluster init made for it, and listening where the
 * topology says. Clients are given ONE address, a region-a node, and home
 * region "b":
 *   1. Appends to 64 streams are each taken by the stream's region-b
 *      replica (the dot's origin is the node topo_replicas() names), and
 *      reads, stream info and state reads of them work; the nodes count no
 *      MRD_ENOTREPLICA refusal (at most one, if the first call beat the
 *      first topology answer). The same from async appends, and from a
 *      client with no home region (a replica of some region takes each).
 *      A region name that cannot be one is MRD_EINVAL.
 *   2. The region-b replica X of a stream is drained: a version 2 made with
 *      the topo.h builders and signed with DIR/admin.key is pushed to every
 *      node. The client's next append of that stream meets MRD_ENOTREPLICA
 *      at X (counted there), refreshes its topology from X, and from then
 *      on the stream goes to the other region-b node, with no refusal.
 *   3. That node, now region b's only replica, is SIGKILLed: appends fail
 *      over to the stream's replica in region a or c by themselves, and
 *      after the first one they no longer try the dead node first (ten
 *      appends take less than ten connect waits). Restarted, it takes the
 *      region's appends again.
 * And a second cluster (regions a, b; 2 nodes each; 2 replicas per
 * region):
 *   4. The first region-b replica of a stream is SIGKILLed: its appends go
 *      to the region's other replica, not to region a.
 *
 * Ports: cluster init takes a base port, so each cluster looks for that
 * many consecutive free ports, from a spot that depends on the pid. Waits
 * are bounded and scale with MRD_TEST_TIMEOUT_MULTIPLIER.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>

#include "common.h"
#include "harness.h"
#include "proto.h"
#include "topo.h"

#define RT_NODES_MAX 6u
#define RT_STREAMS 64u
/* The library's connect wait for a node with no connection (client.h,
 * CLIENT_CONNECT_WAIT_MS, the dial and the link handshake): what every
 * attempt on a dead node costs. */
#define RT_CONNECT_WAIT_MS 500u

struct rt_cluster {
    char                dir[256];
    char                cdir[300];
    char                topo_path[400];
    char                admin_path[400];
    uint32_t            node_count;
    struct topo        *topo; /* the version the nodes hold */
    struct harness_node nodes[RT_NODES_MAX]; /* nodes[i] has id i + 1 */
};

static struct rt_cluster rt_main; /* tests 1-3 */
static struct rt_cluster rt_rf2; /* test 4 */

/* ---------------------------------------------------------------- ports -- */

/* -------------------------------------------------------------- cluster -- */

static void
rt_file_read(const char *path, uint8_t **data_out, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *buf = malloc(TOPO_SIGNED_SIZE_MAX);
    assert_non_null(buf);
    size_t n = fread(buf, 1, TOPO_SIGNED_SIZE_MAX, f);
    fclose(f);
    assert_true(n > 0 && n < TOPO_SIGNED_SIZE_MAX);
    *data_out = buf;
    *len_out  = n;
}

/* The admin's secret key, in the format ctl/files.c writes: 128 hex digits
 * of libsodium's 64-byte Ed25519 secret key, and a newline. */
static void
rt_admin_key(const struct rt_cluster *c, uint8_t sk[TOPO_SECRET_KEY_SIZE])
{
    char  hex[TOPO_SECRET_KEY_SIZE * 2 + 8];
    FILE *f = fopen(c->admin_path, "r");
    assert_non_null(f);
    assert_non_null(fgets(hex, sizeof hex, f));
    fclose(f);
    size_t bin_len = 0;
    assert_int_equal(sodium_hex2bin(sk, TOPO_SECRET_KEY_SIZE, hex,
                         TOPO_SECRET_KEY_SIZE * 2, NULL, &bin_len, NULL),
        0);
    assert_int_equal(bin_len, TOPO_SECRET_KEY_SIZE);
}

/* Node i + 1 runs with the key cluster init made for it, which is the one
 * the topology names (the harness's keyring still lets its admin client
 * in: a node run from a topology takes only client lines from it). */
static void
rt_node_start(struct rt_cluster *c, uint32_t i)
{
    char key[400];
    snprintf(key, sizeof key, "%s/node-%u/node.key", c->cdir, i + 1);
    const char *args[] = { "--topology", c->topo_path, "--key", key, NULL };
    assert_int_equal(harness_node_start(&c->nodes[i], args), 0);
}

/* cluster init into a temp dir (regions: region_count names, "a,b,...";
 * 2 nodes each, rf replicas per region), then one meridiand per node. */
static void
rt_cluster_start(struct rt_cluster *c, const char *regions,
    uint32_t region_count, uint32_t rf, uint32_t salt)
{
    char        per_text[16], rf_text[16], port_text[16], out[8192];
    const char *why = NULL;
    uint8_t    *data;
    size_t      len;

    memset(c, 0, sizeof *c);
    c->node_count = region_count * 2;
    assert_true(c->node_count <= RT_NODES_MAX);
    assert_int_equal(
        harness_tmpdir_make("meridian-rt-", c->dir, sizeof c->dir), 0);
    snprintf(c->cdir, sizeof c->cdir, "%s/c", c->dir);
    snprintf(c->topo_path, sizeof c->topo_path, "%s/topology.signed", c->cdir);
    snprintf(c->admin_path, sizeof c->admin_path, "%s/admin.key", c->cdir);
    uint16_t base = harness_free_ports(c->node_count, salt);
    assert_int_not_equal(base, 0);
    snprintf(per_text, sizeof per_text, "%u", 2u);
    snprintf(rf_text, sizeof rf_text, "%u", rf);
    snprintf(port_text, sizeof port_text, "%u", (unsigned) base);
    const char *init[] = { "cluster", "init", "--dir", c->cdir, "--regions",
        regions, "--nodes-per-region", per_text, "--base-port", port_text,
        "--replicas-per-region", rf_text, "--shards", "16", NULL };
    assert_int_equal(harness_run_ctl(init, out, sizeof out), 0);

    c->topo = calloc(1, sizeof *c->topo);
    assert_non_null(c->topo);
    rt_file_read(c->topo_path, &data, &len);
    assert_int_equal(topo_open_signed(data, len, c->topo, &why), MRD_OK);
    free(data);
    assert_int_equal(c->topo->node_count, c->node_count);
    for (uint32_t i = 0; i < c->node_count; i++) {
        /* --listen must be the address the topology names: the harness
         * listens on node->port when it is set. */
        char want[HARNESS_URL_SIZE];
        assert_int_equal(harness_node_init(&c->nodes[i], i + 1), 0);
        c->nodes[i].port = (uint16_t) (base + i);
        snprintf(want, sizeof want, "tcp://127.0.0.1:%u", base + i);
        assert_string_equal(c->topo->nodes[i].address, want);
        rt_node_start(c, i);
    }
    struct harness_node *all[RT_NODES_MAX];
    for (uint32_t i = 0; i < c->node_count; i++) {
        all[i] = &c->nodes[i];
    }
    assert_int_equal(harness_nodes_wait_joined(all, c->node_count), 0);
}

static void
rt_cluster_stop(struct rt_cluster *c)
{
    for (uint32_t i = 0; i < c->node_count; i++) {
        harness_node_fini(&c->nodes[i]); /* SIGKILL, then the dir */
    }
    free(c->topo);
    c->topo = NULL;
    if (c->dir[0] != '\0') {
        harness_rmrf(c->dir);
        c->dir[0] = '\0';
    }
    c->node_count = 0;
}

/* The id of the stream's replica in region r under t (rf 1: the only one;
 * otherwise the first in rendezvous order). */
static uint32_t
rt_replica(const struct topo *t, const char *stream, uint32_t r, uint32_t k)
{
    uint32_t ids[TOPO_RF_MAX];
    uint32_t shard
        = topo_shard_of(t->cluster_id, t->shard_count, stream, strlen(stream));
    uint32_t n = topo_replicas(t, shard, r, ids, TOPO_RF_MAX);
    assert_true(k < n);
    return ids[k];
}

static uint32_t
rt_region_of(const struct topo *t, uint64_t id)
{
    const struct topo_node *n = topo_node_by_id(t, (uint32_t) id);
    assert_non_null(n);
    return n->region;
}

static uint64_t
rt_stat(const struct harness_node *n, const char *name)
{
    uint64_t value = 0;
    assert_int_equal(harness_node_stat(n, name, &value), 0);
    return value;
}

/* MRD_ENOTREPLICA refusals of every running node. */
static uint64_t
rt_refusals(const struct rt_cluster *c)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < c->node_count; i++) {
        if (c->nodes[i].pid != 0) {
            sum += rt_stat(&c->nodes[i], "rejected_not_replica");
        }
    }
    return sum;
}

/* A client that knows ONE node (index `addr`) and its home region. */
static mrd_client *
rt_client(struct rt_cluster *c, uint32_t addr, const char *region)
{
    mrd_client_opts opts;
    mrd_client     *client = NULL;
    const char     *url    = c->nodes[addr].url;

    mrd_client_opts_init(&opts);
    opts.timeout_ms         = harness_ms(opts.timeout_ms);
    opts.attempt_timeout_ms = harness_ms(opts.attempt_timeout_ms);
    opts.region             = region;
    /* These tests are about where calls go. Session order (on by default)
     * may rightly send an append elsewhere, or hold it, until a failover
     * target holds the client's last event of the stream; that is
     * idempotency_test's subject, not routing's. */
    opts.no_session_order = 1;
    assert_int_equal(harness_client_open_urls(&url, 1, &opts, &client), MRD_OK);
    return client;
}

static uint64_t
rt_append(mrd_client *client, const char *stream)
{
    mrd_event_in      ev = { .type = "Routed", .data = "r", .data_size = 1 };
    mrd_append_result res;

    memset(&res, 0, sizeof res);
    int rv = mrd_append(client, stream, &ev, 1, NULL, &res);
    if (rv != MRD_OK) {
        fail_msg(
            "append to %s: %s (%s)", stream, mrd_errname(rv), mrd_errdetail());
    }
    return res.first_dot.origin;
}

/* ----------------------------------------------------------- 1: routed -- */

static void
rt_check_reads(mrd_client *client, const char *stream, uint64_t origin)
{
    mrd_events     *got = NULL;
    mrd_stream_info info;
    mrd_state      *st = NULL;

    assert_int_equal(
        mrd_read(client, stream, 0, MRD_FORWARD, 10, &got), MRD_OK);
    assert_true(mrd_events_count(got) >= 1);
    assert_int_equal(mrd_events_at(got, 0)->dot.origin, origin);
    mrd_events_free(got);
    assert_int_equal(mrd_stream_info_get(client, stream, &info), MRD_OK);
    assert_true(info.exists);
    assert_int_equal(mrd_state_read(client, stream, NULL, &st), MRD_OK);
    mrd_state_free(st);
}

struct rt_async {
    atomic_uint done;
    atomic_uint ok;
    uint64_t    origin[RT_STREAMS];
};

static struct rt_async rt_async_arg;

static void
rt_async_cb(void *arg, int err, const mrd_append_result *result)
{
    uint64_t *slot = arg;
    if (err == MRD_OK) {
        *slot = result->first_dot.origin;
        atomic_fetch_add(&rt_async_arg.ok, 1);
    }
    atomic_fetch_add(&rt_async_arg.done, 1);
}

static bool
rt_async_all_done(void *arg)
{
    (void) arg;
    return atomic_load(&rt_async_arg.done) == RT_STREAMS;
}

static void
test_route_home_region(void **state)
{
    struct rt_cluster *c = &rt_main;
    char               stream[64];
    uint32_t           on_node[RT_NODES_MAX + 1] = { 0 };
    uint32_t           b                         = 1; /* regions a, b, c */

    (void) state;
    uint64_t    before = rt_refusals(c);
    mrd_client *client = rt_client(c, 0, "b");
    for (uint32_t i = 0; i < RT_STREAMS; i++) {
        snprintf(stream, sizeof stream, "route-%u", i);
        uint64_t origin = rt_append(client, stream);
        assert_int_equal(origin, rt_replica(c->topo, stream, b, 0));
        on_node[origin]++;
        rt_check_reads(client, stream, origin);
    }
    uint64_t refused = rt_refusals(c) - before;
    printf("# 64 streams: node 3 took %u, node 4 took %u; %" PRIu64
           " refusal(s)\n",
        on_node[3], on_node[4], refused);
    assert_int_equal(on_node[3] + on_node[4], RT_STREAMS);
    assert_true(refused <= 1);
    mrd_client_close(client);

    /* Async appends from a fresh client: they do not wait for the first
     * topology, so an early one may be refused once and retried; every
     * one still ends on its region-b replica. */
    before = rt_refusals(c);
    client = rt_client(c, 0, "b");
    memset(&rt_async_arg, 0, sizeof rt_async_arg);
    mrd_event_in ev = { .type = "Async", .data = "a", .data_size = 1 };
    for (uint32_t i = 0; i < RT_STREAMS; i++) {
        snprintf(stream, sizeof stream, "route-async-%u", i);
        assert_int_equal(mrd_append_async(client, stream, &ev, 1, NULL,
                             rt_async_cb, &rt_async_arg.origin[i]),
            MRD_OK);
    }
    assert_true(harness_wait_for(rt_async_all_done, NULL, 500, 20));
    assert_int_equal(atomic_load(&rt_async_arg.ok), RT_STREAMS);
    for (uint32_t i = 0; i < RT_STREAMS; i++) {
        snprintf(stream, sizeof stream, "route-async-%u", i);
        assert_int_equal(
            rt_async_arg.origin[i], rt_replica(c->topo, stream, b, 0));
    }
    printf("# async: %" PRIu64 " refusal(s)\n", rt_refusals(c) - before);
    mrd_client_close(client);

    /* No home region: some region's replica takes each, unrefused; a
     * region the topology lacks is no preference either. */
    const char *regions[] = { NULL, "nowhere" };
    for (size_t k = 0; k < MRD_ARRAY_SIZE(regions); k++) {
        before = rt_refusals(c);
        client = rt_client(c, 0, regions[k]);
        for (uint32_t i = 0; i < 16; i++) {
            snprintf(stream, sizeof stream, "route-any-%zu-%u", k, i);
            uint64_t origin = rt_append(client, stream);
            uint32_t r      = rt_region_of(c->topo, origin);
            assert_int_equal(origin, rt_replica(c->topo, stream, r, 0));
        }
        assert_true(rt_refusals(c) - before <= 1);
        mrd_client_close(client);
    }

    /* Not a region name at all. */
    mrd_client_opts opts;
    const char     *url = c->nodes[0].url;
    mrd_client_opts_init(&opts);
    opts.addresses     = &url;
    opts.address_count = 1;
    opts.region        = "Not A Region";
    client             = NULL;
    assert_int_equal(mrd_client_open(&opts, &client), MRD_EINVAL);
    assert_null(client);
}

/* ------------------------------------------------------------ 2: drain -- */

/* A stream whose region-b replica is node `id`. */
static void
rt_stream_on(const struct rt_cluster *c, const char *prefix, uint32_t region,
    uint32_t id, char *out, size_t size)
{
    for (uint32_t i = 0; i < 10000; i++) {
        snprintf(out, size, "%s-%u", prefix, i);
        if (rt_replica(c->topo, out, region, 0) == id) {
            return;
        }
    }
    fail_msg("no stream of %s on node %u", prefix, id);
}

/* Signs the next version (t, already changed) and pushes it to every
 * running node; c->topo becomes t. */
static void
rt_push(struct rt_cluster *c, struct topo *t)
{
    uint8_t          sk[TOPO_SECRET_KEY_SIZE];
    struct proto_buf buf;
    const char      *why = NULL;

    rt_admin_key(c, sk);
    proto_buf_init(&buf, TOPO_SIGNED_SIZE_MAX);
    assert_int_equal(topo_sign(t, sk, &buf, &why), MRD_OK);
    sodium_memzero(sk, sizeof sk);
    for (uint32_t i = 0; i < c->node_count; i++) {
        if (c->nodes[i].pid == 0) {
            continue;
        }
        mrd_client *one     = rt_client(c, i, NULL);
        uint64_t    version = 0;
        int         rv = mrd_topology_push(one, buf.data, buf.len, &version);
        /* Gossip may have brought it there first. */
        assert_true(rv == MRD_OK || rv == MRD_EVERSION);
        mrd_client_close(one);
    }
    proto_buf_fini(&buf);
    memcpy(c->topo, t, sizeof *t);
}

static void
test_route_drain(void **state)
{
    struct rt_cluster *c = &rt_main;
    char               stream[64];
    char               other[64];
    const char        *why = NULL;

    (void) state;
    /* X: the region-b replica of `stream`; Y: region b's other node. */
    uint32_t x = 3, y = 4;
    rt_stream_on(c, "drain", 1, x, stream, sizeof stream);
    rt_stream_on(c, "stay", 1, y, other, sizeof other);
    mrd_client *client = rt_client(c, 0, "b");
    assert_int_equal(rt_append(client, stream), x);
    assert_int_equal(rt_append(client, other), y);
    /* Let any refresh the client started end before the push, so that
     * only a refusal can tell it about version 2. */
    harness_sleep_ms(harness_ms(300));

    struct topo *t = malloc(sizeof *t);
    assert_non_null(t);
    memcpy(t, c->topo, sizeof *t);
    assert_int_equal(topo_node_drain(t, x, &why), MRD_OK);
    assert_int_equal(t->version, 2);
    assert_int_equal(rt_replica(t, stream, 1, 0), y);
    uint64_t refused_x = rt_stat(&c->nodes[x - 1], "rejected_not_replica");
    rt_push(c, t);
    free(t);

    /* The first append meets X's refusal and goes on by itself; where it
     * lands depends on whether the refreshed topology was in by its next
     * attempt (then Y) or not (then the stream's replica in a or c). */
    uint64_t origin = rt_append(client, stream);
    assert_true(origin == y || origin == rt_replica(c->topo, stream, 0, 0)
        || origin == rt_replica(c->topo, stream, 2, 0));
    uint64_t refused_now
        = rt_stat(&c->nodes[x - 1], "rejected_not_replica") - refused_x;
    printf("# drain: first append on node %" PRIu64 ", %" PRIu64
           " refusal(s) at node %u\n",
        origin, refused_now, x);
    assert_true(refused_now >= 1);

    /* The refresh runs on its own, so wait (bounded) for the stream to
     * reach Y; from then on region b is Y alone, and nobody is refused. */
    for (uint32_t i = 0; i < 50 && origin != y; i++) {
        harness_sleep_ms(20);
        origin = rt_append(client, stream);
    }
    assert_int_equal(origin, y);
    uint64_t before = rt_refusals(c);
    for (uint32_t i = 0; i < 20; i++) {
        assert_int_equal(rt_append(client, i % 2 == 0 ? stream : other), y);
    }
    assert_int_equal(rt_refusals(c) - before, 0);
    mrd_client_close(client);
}

/* ---------------------------------------------------- 3: failover, rf 1 -- */

/* After a SIGKILL, gives the client's NNG a moment to see the connection
 * drop. A request handed to a pipe in the very moment NNG 1.5.2 tears it
 * down is never freed (nni_aio_begin() on a stopped aio returns without
 * its callback): a leak inside NNG that ASan reported once in 13 runs here
 * when the next append went out within a millisecond of the kill. The node
 * is still tried first afterwards (it is not suspect yet: it failed no
 * attempt and has been down for less than the library's redial time), so
 * the failover below is the real one. */
static void
rt_after_kill(void)
{
    harness_sleep_ms(300);
}

static void
test_route_failover_rf1(void **state)
{
    struct rt_cluster *c = &rt_main;
    char               stream[64];
    uint32_t           y = 4; /* region b's only active node after 2 */

    (void) state;
    assert_int_equal(c->topo->version, 2);
    mrd_client *client = rt_client(c, 0, "b");
    snprintf(stream, sizeof stream, "failover-rf1");
    assert_int_equal(rt_append(client, stream), y);

    assert_int_equal(harness_node_kill(&c->nodes[y - 1], SIGKILL), 0);
    rt_after_kill();
    uint64_t a_rep  = rt_replica(c->topo, stream, 0, 0);
    uint64_t c_rep  = rt_replica(c->topo, stream, 2, 0);
    uint64_t origin = rt_append(client, stream);
    assert_true(origin == a_rep || origin == c_rep);

    /* The dead node is remembered: later appends start at a live replica
     * instead of paying a connect wait on it each time. */
    uint64_t t0 = mrd_now_mono_ms();
    for (uint32_t i = 0; i < 10; i++) {
        char s[64];
        snprintf(s, sizeof s, "failover-rf1-%u", i);
        origin     = rt_append(client, s);
        uint32_t r = rt_region_of(c->topo, origin);
        assert_true(r == 0 || r == 2);
        assert_int_equal(origin, rt_replica(c->topo, s, r, 0));
    }
    uint64_t took = mrd_now_mono_ms() - t0;
    printf("# rf 1: 10 appends with region b down took %" PRIu64 " ms\n", took);
    assert_true(took < harness_ms(10 * RT_CONNECT_WAIT_MS / 2));

    /* Back on its port: once it reconnects, region b takes the stream
     * again (bounded: NNG redials at most a second apart). */
    rt_node_start(c, y - 1);
    bool back = false;
    for (uint32_t i = 0; i < harness_ms(10000) / 100 && !back; i++) {
        back = rt_append(client, stream) == y;
        if (!back) {
            harness_sleep_ms(100);
        }
    }
    assert_true(back);
    mrd_client_close(client);
}

/* ---------------------------------------------------- 4: failover, rf 2 -- */

static void
test_route_failover_rf2(void **state)
{
    struct rt_cluster *c = &rt_rf2;
    char               stream[64];

    (void) state;
    rt_cluster_start(c, "a,b", 2, 2, 2);
    snprintf(stream, sizeof stream, "failover-rf2");
    uint32_t first  = rt_replica(c->topo, stream, 1, 0);
    uint32_t second = rt_replica(c->topo, stream, 1, 1);
    assert_int_not_equal(first, second);
    assert_int_equal(rt_region_of(c->topo, first), 1);
    assert_int_equal(rt_region_of(c->topo, second), 1);

    mrd_client *client = rt_client(c, 0, "b");
    assert_int_equal(rt_append(client, stream), first);
    assert_int_equal(harness_node_kill(&c->nodes[first - 1], SIGKILL), 0);
    rt_after_kill();
    for (uint32_t i = 0; i < 10; i++) {
        assert_int_equal(rt_append(client, stream), second);
    }
    mrd_client_close(client);
    rt_cluster_stop(c);
}

/* ---------------------------------------------------------------- main -- */

static int
rt_setup(void **state)
{
    (void) state;
    rt_cluster_start(&rt_main, "a,b,c", 3, 1, 1);
    return 0;
}

static int
rt_teardown(void **state)
{
    rt_cluster_stop(&rt_main);
    rt_cluster_stop(&rt_rf2);
    return harness_teardown(state);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_home_region),
        cmocka_unit_test(test_route_drain),
        cmocka_unit_test(test_route_failover_rf1),
        cmocka_unit_test(test_route_failover_rf2),
    };
    return cmocka_run_group_tests(tests, rt_setup, rt_teardown);
}
