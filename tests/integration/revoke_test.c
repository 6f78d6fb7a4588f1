/*
 * revoke_test.c: removing a node's key cuts its existing connections
 * (docs/ARCHITECTURE.md, "Secure links": "Identities and trust";
 * node/security.c, node_sec_poll and node_sec_revalidate).
 *
 * Three nodes, ids 1..3, replicate in a full mesh; then node 3's key stops
 * being trusted by nodes 1 and 2 while every process keeps running. Every
 * node polls its keyring and its topology version every 100 ms; on a change
 * it rebuilds its trust tables and closes every session whose key it no
 * longer trusts (STATS rejected_link_revoked), and refuses new handshakes
 * from that key (rejected_link_untrusted).
 *   1. Static mode (--peers, one --cluster-id). Each node runs with a
 *      keyring of its own, written here: the cluster line, node lines 1..3
 *      with the harness keys, and the harness admin client (STATS and the
 *      test's clients). An event appended on node 1 reaches 2 and 3. Then
 *      nodes 1's and 2's keyrings are rewritten without node 3 (temp file
 *      and rename). Bounded: rejected_link_revoked grows on nodes 1 and 2;
 *      events appended on node 1 afterwards reach node 2 and never node 3
 *      (watched for a few seconds); node 1's rejected_link_untrusted grows
 *      as node 3 keeps dialing it; node 3 still serves its own clients (an
 *      append there is taken) and that event never reaches 1 or 2.
 *   2. Topology mode. The test is the topology's admin: version 1 has one
 *      region of rf 3 and nodes 1..3 with the harness keys on free ports;
 *      the nodes start with --topology (the harness adds --key and
 *      --keyring). An event replicates to every node. Version 2, node 3
 *      removed (topo_node_remove), is pushed to node 1 only. Bounded:
 *      nodes 1 and 2 hold version 2 (gossip), rejected_link_revoked grows
 *      on node 1 or 2 (node 3 had pipes to both), and events appended on
 *      node 1 afterwards reach node 2 and never node 3, which keeps what
 *      it had; node 1's rejected_link_untrusted grows as node 3 keeps
 *      dialing. Node 3 may learn version 2 by gossip before its pipes are
 *      closed (a node rebuilds its tables up to 100 ms after it takes a
 *      version): its version is printed, not asserted.
 *
 * Which node answers: every check uses a client naming that one node only
 * and counts a stream's events in that node's shard logs (a log read names
 * no stream, so the node named serves it; a stream call would be routed by
 * the topology to another replica). Every append is checked to be taken by
 * the node meant (the dot's origin); in topology mode the streams are
 * named so that node 1 comes first in their shard's placement and the
 * clients' home region is "a", so a routing client sends them to node 1.
 * Every wait is bounded and scaled (harness_ms, harness_wait_for); every
 * process started is killed after each test, passed or not.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "harness.h"
#include "proto.h"
#include "topo.h"

#define RV_NODES 3u
#define RV_CUT 3u /* the node whose key is taken away */
#define RV_SHARDS 4u
/* Polls 50 ms apart: up to 15 s (scaled) for what must happen. */
#define RV_POLL_MS 50u
#define RV_TRIES 300u
/* How long an event that must never arrive is watched for (scaled). */
#define RV_NEVER_MS 3000u
/* Events appended on node 1 after the cut. */
#define RV_AFTER_EVENTS 3u
#define RV_RING_SIZE 4096u
#define RV_NAME_SIZE 32u

static const char rv_cluster_hex[] = "5eed0f00d5eed0f00d5eed0f00d5eed0";

struct rv_node {
    struct harness_node h;
    uint32_t            id;
    char                url[HARNESS_URL_SIZE];
    char                peers[512];
    char                ring[HARNESS_PATH_SIZE + 32]; /* static mode's own */
    mrd_client         *client; /* on this node only */
};

static struct rv_node   rv_nodes[RV_NODES];
static char             rv_dir[HARNESS_PATH_SIZE];
static struct topo     *rv_v1, *rv_v2;
static struct proto_buf rv_signed_v1, rv_signed_v2;
static bool             rv_signed_used;

static struct rv_node *
rv_node(uint32_t id)
{
    assert_true(id >= 1 && id <= RV_NODES);
    return &rv_nodes[id - 1];
}

/* ------------------------------------------------------------- files -- */

/* Writes text to path the way an operator should: a temp file, then a
 * rename over the old one, so the node never reads half a file. */
static void
rv_file_replace(const char *path, const void *data, size_t len)
{
    char tmp[HARNESS_PATH_SIZE + 64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    assert_non_null(f);
    bool ok = fwrite(data, 1, len, f) == len && fflush(f) == 0
        && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    assert_true(ok);
    assert_int_equal(rename(tmp, path), 0);
}

/* A static node's keyring: the cluster, the harness keys of nodes 1..3
 * (without RV_CUT unless with_cut), and the harness admin client. */
static void
rv_ring_write(const char *path, bool with_cut)
{
    char    text[RV_RING_SIZE], hex[65];
    uint8_t pk[32], sk[64];
    size_t  n = 0;

    harness_admin_keypair(pk, sk);
    sodium_bin2hex(hex, sizeof hex, pk, 32);
    n += (size_t) snprintf(text + n, sizeof text - n,
        "# revoke_test's keyring\ncluster %s\nclient harness-admin admin %s\n",
        rv_cluster_hex, hex);
    for (uint32_t id = 1; id <= RV_NODES; id++) {
        if (id == RV_CUT && !with_cut) {
            continue;
        }
        harness_node_keypair(id, pk, sk);
        sodium_bin2hex(hex, sizeof hex, pk, 32);
        n += (size_t) snprintf(
            text + n, sizeof text - n, "node %u %s\n", id, hex);
    }
    sodium_memzero(sk, sizeof sk);
    assert_true(n < sizeof text);
    rv_file_replace(path, text, n);
}

/* ------------------------------------------------------------- nodes -- */

/* Ids, ports picked ahead (the peers and the topology name them before
 * the nodes listen), the URLs, and each static node's peers. */
static void
rv_nodes_init(uint32_t salt)
{
    assert_true(sodium_init() >= 0);
    assert_int_equal(
        harness_tmpdir_make("meridian-revoke-", rv_dir, sizeof rv_dir), 0);
    uint16_t base = harness_free_ports(RV_NODES, salt);
    assert_int_not_equal(base, 0);
    for (uint32_t i = 0; i < RV_NODES; i++) {
        struct rv_node *n = &rv_nodes[i];
        assert_int_equal(harness_node_init(&n->h, i + 1), 0);
        n->id     = i + 1;
        n->h.port = (uint16_t) (base + i);
        snprintf(
            n->url, sizeof n->url, "tcp://127.0.0.1:%u", (unsigned) n->h.port);
        snprintf(n->ring, sizeof n->ring, "%s/node-%u.keyring", rv_dir, n->id);
    }
    for (uint32_t i = 0; i < RV_NODES; i++) {
        struct rv_node *n   = &rv_nodes[i];
        size_t          len = 0;
        for (uint32_t j = 0; j < RV_NODES; j++) {
            if (j == i) {
                continue;
            }
            /* From the port, not rv_nodes[j].url: the same array. */
            int w = snprintf(n->peers + len, sizeof n->peers - len,
                "%s%u@tcp://127.0.0.1:%u", len > 0 ? "," : "", j + 1,
                (unsigned) (base + j));
            assert_true(w > 0 && (size_t) w < sizeof n->peers - len);
            len += (size_t) w;
        }
    }
}

/* Starts node n with args and checks it listens where it was told (the
 * port its peers and the topology name). */
static void
rv_node_start(struct rv_node *n, const char *const *args)
{
    if (harness_node_start(&n->h, args) != 0) {
        fail_msg("node %u did not start (log %s)", n->id, n->h.log_path);
    }
    assert_string_equal(n->h.url, n->url);
}

/* Waits until no node is joining, then opens each node's client; region
 * is the clients' home region (NULL: none). */
static void
rv_clients_open(const char *region)
{
    struct harness_node *all[RV_NODES];
    for (uint32_t i = 0; i < RV_NODES; i++) {
        all[i] = &rv_nodes[i].h;
    }
    assert_int_equal(harness_nodes_wait_joined(all, RV_NODES), 0);
    for (uint32_t i = 0; i < RV_NODES; i++) {
        struct harness_node *one[] = { &rv_nodes[i].h };
        mrd_client_opts      opts;
        mrd_client_opts_init(&opts);
        opts.timeout_ms         = harness_ms(opts.timeout_ms);
        opts.attempt_timeout_ms = harness_ms(opts.attempt_timeout_ms);
        opts.region             = region;
        assert_int_equal(
            harness_client_open(one, 1, &opts, &rv_nodes[i].client), MRD_OK);
    }
}

static uint64_t
rv_stat(const struct rv_node *n, const char *name)
{
    uint64_t value = 0;
    if (harness_node_stat(&n->h, name, &value) != 0) {
        fail_msg("STATS %s of node %u failed", name, n->id);
    }
    return value;
}

/* ----------------------------------------------------------- events -- */

/* Appends one event to stream on n, which must take it itself. */
static void
rv_append(struct rv_node *n, const char *stream)
{
    assert_int_equal(harness_append_on(n->client, n->id, stream, "revoke"), 0);
}

/* The events of stream that n itself holds, counted in its shard logs: a
 * log read names no stream, so the node named serves it, where a stream
 * call would be routed by the topology to another replica. */
static uint64_t
rv_count(struct rv_node *n, const char *stream)
{
    uint64_t count = 0;
    if (harness_log_count(n->client, n->id, stream, &count) != 0) {
        fail_msg("counting %s on node %u", stream, n->id);
    }
    return count;
}

struct rv_want {
    struct rv_node *n;
    const char     *stream; /* a stream count, or */
    const char     *stat; /* a counter that must pass `value` */
    uint64_t        value;
    struct rv_node *n2; /* stat: or this node's (may be NULL) */
    uint64_t        value2;
};

static bool
rv_has(void *arg)
{
    struct rv_want *w = arg;
    if (w->stream != NULL) {
        return rv_count(w->n, w->stream) >= w->value;
    }
    return rv_stat(w->n, w->stat) > w->value
        || (w->n2 != NULL && rv_stat(w->n2, w->stat) > w->value2);
}

static void
rv_wait_count(struct rv_node *n, const char *stream, uint64_t count)
{
    struct rv_want w = { .n = n, .stream = stream, .value = count };
    if (!harness_wait_for(rv_has, &w, RV_TRIES, RV_POLL_MS)) {
        fail_msg("node %u holds %" PRIu64 " events of %s, want %" PRIu64, n->id,
            rv_count(n, stream), stream, count);
    }
}

/* Waits until counter `stat` of n passes before (or of n2 passes before2,
 * when n2 is not NULL). */
static void
rv_wait_stat(struct rv_node *n, uint64_t before, struct rv_node *n2,
    uint64_t before2, const char *stat)
{
    struct rv_want w = {
        .n = n, .stat = stat, .value = before, .n2 = n2, .value2 = before2
    };
    if (!harness_wait_for(rv_has, &w, RV_TRIES, RV_POLL_MS)) {
        fail_msg("%s of node %u stayed at %" PRIu64 "%s", stat, n->id,
            rv_stat(n, stat), n2 != NULL ? " (and of the other node)" : "");
    }
    printf("revoke_test: %s of node %u: %" PRIu64 " -> %" PRIu64 "\n", stat,
        n->id, before, rv_stat(n, stat));
}

/* stream never shows up on any of the nodes, however long we watch. */
static void
rv_never(struct rv_node *const *nodes, size_t count, const char *stream)
{
    uint32_t tries = harness_ms(RV_NEVER_MS) / RV_POLL_MS;
    for (uint32_t t = 0; t <= tries; t++) {
        for (size_t i = 0; i < count; i++) {
            uint64_t got = rv_count(nodes[i], stream);
            if (got != 0) {
                fail_msg("node %u got %" PRIu64 " events of %s after its "
                         "key was cut",
                    nodes[i]->id, got, stream);
            }
        }
        harness_sleep_ms(RV_POLL_MS);
    }
}

/* ---------------------------------------------------------- cleanup -- */

static int
rv_cleanup(void **state)
{
    for (uint32_t i = 0; i < RV_NODES; i++) {
        struct rv_node *n = &rv_nodes[i];
        mrd_client_close(n->client);
        n->client = NULL;
        harness_node_fini(&n->h);
    }
    if (rv_signed_used) {
        proto_buf_fini(&rv_signed_v1);
        proto_buf_fini(&rv_signed_v2);
        rv_signed_used = false;
    }
    free(rv_v1);
    free(rv_v2);
    rv_v1 = rv_v2    = NULL;
    const char *keep = getenv("MRD_TEST_KEEP");
    if (rv_dir[0] != '\0' && (keep == NULL || strcmp(keep, "1") != 0)) {
        harness_rmrf(rv_dir);
    }
    rv_dir[0] = '\0';
    memset(rv_nodes, 0, sizeof rv_nodes);
    return harness_teardown(state);
}

/* ------------------------------------------------------- 1. static -- */

static void
test_static_keyring_revoke(void **state)
{
    (void) state;
    rv_nodes_init(11);
    for (uint32_t i = 0; i < RV_NODES; i++) {
        struct rv_node *n = &rv_nodes[i];
        rv_ring_write(n->ring, true);
        const char *args[] = { "--cluster-id", rv_cluster_hex, "--peers",
            n->peers, "--keyring", n->ring, NULL };
        rv_node_start(n, args);
    }
    rv_clients_open(NULL);
    struct rv_node *one = rv_node(1), *two = rv_node(2), *cut = rv_node(RV_CUT);

    /* Replication works, both ways round the mesh. */
    rv_append(one, "s-before");
    rv_wait_count(two, "s-before", 1);
    rv_wait_count(cut, "s-before", 1);

    /* Node 3 leaves nodes 1's and 2's keyrings. */
    uint64_t revoked1   = rv_stat(one, "rejected_link_revoked");
    uint64_t revoked2   = rv_stat(two, "rejected_link_revoked");
    uint64_t untrusted1 = rv_stat(one, "rejected_link_untrusted");
    rv_ring_write(one->ring, false);
    rv_ring_write(two->ring, false);
    rv_wait_stat(one, revoked1, NULL, 0, "rejected_link_revoked");
    rv_wait_stat(two, revoked2, NULL, 0, "rejected_link_revoked");

    /* What node 1 takes now reaches node 2 and never node 3. */
    for (uint32_t k = 0; k < RV_AFTER_EVENTS; k++) {
        rv_append(one, "s-after");
    }
    rv_wait_count(two, "s-after", RV_AFTER_EVENTS);
    struct rv_node *only_cut[] = { cut };
    rv_never(only_cut, 1, "s-after");
    /* Node 3 still trusts node 1 and keeps dialing it: refused at the
     * handshake now. */
    rv_wait_stat(one, untrusted1, NULL, 0, "rejected_link_untrusted");

    /* Node 3 still serves its own clients; what it takes stays there. */
    rv_append(cut, "s-from-cut");
    assert_int_equal(rv_count(cut, "s-from-cut"), 1);
    struct rv_node *others[] = { one, two };
    rv_never(others, 2, "s-from-cut");
    assert_int_equal(rv_count(cut, "s-after"), 0);
    assert_int_equal(rv_count(one, "s-after"), RV_AFTER_EVENTS);
}

/* ----------------------------------------------------- 2. topology -- */

static void
rv_topo_sign(const struct topo *t, const uint8_t *sk, struct proto_buf *buf)
{
    const char *why = NULL;
    proto_buf_init(buf, TOPO_SIGNED_SIZE_MAX);
    int rv = topo_sign(t, sk, buf, &why);
    if (rv != MRD_OK) {
        fail_msg("topo_sign: %s (%s)", mrd_errname(rv), why);
    }
}

/* Version 1 of cluster_id into rv_v1: nodes 1..3 in one region of rf 3. */
static void
rv_topo_build(const uint8_t *cluster_id, const uint8_t *admin_pk)
{
    const char *why = NULL;
    uint32_t    index, id;

    topo_init(rv_v1, cluster_id, RV_SHARDS, admin_pk);
    assert_int_equal(topo_region_add(rv_v1, "a", 3, &index, &why), MRD_OK);
    for (uint32_t i = 0; i < RV_NODES; i++) {
        struct rv_node *n = &rv_nodes[i];
        uint8_t         pk[TOPO_KEY_SIZE], sk[TOPO_SECRET_KEY_SIZE];
        char            name[32];
        /* The key harness_node_start() gives node n->id (--key). */
        harness_node_keypair(n->id, pk, sk);
        sodium_memzero(sk, sizeof sk);
        snprintf(name, sizeof name, "node-%u", n->id);
        int rv = topo_node_add(rv_v1, name, index, n->url, pk, &id, &why);
        if (rv != MRD_OK) {
            fail_msg("topo_node_add %s: %s (%s)", name, mrd_errname(rv), why);
        }
        assert_int_equal(id, n->id);
    }
    rv_v1->version = 1; /* nobody saw the drafts */
}

/* Whether node 1 comes first in the region's placement of the shard: a
 * client whose home region is "a" then sends that shard's appends to node
 * 1, under version 1 and version 2 alike (a removal moves nothing else). */
static bool
rv_one_first(const struct topo *t, uint32_t shard)
{
    uint32_t ids[TOPO_RF_MAX];
    return topo_candidates(t, shard, 0, ids, TOPO_RF_MAX) > 0 && ids[0] == 1;
}

/* A stream name "<base>-<i>" whose shard node 1 comes first in. */
static void
rv_stream_pick(const char *base, char *out, size_t size)
{
    for (uint32_t i = 0; i < 100000u; i++) {
        snprintf(out, size, "%s-%u", base, i);
        uint32_t shard = topo_shard_of(
            rv_v1->cluster_id, rv_v1->shard_count, out, strlen(out));
        if (rv_one_first(rv_v1, shard) && rv_one_first(rv_v2, shard)) {
            return;
        }
    }
    fail_msg("no stream name for %s", base);
}

/* Version 1 (nodes 1..3, one region of rf 3) and version 2 (node 3
 * removed), signed with a new admin key; version 1 goes to path. The
 * cluster id is drawn until node 1 comes first in some shard. */
static void
rv_topo_make(const char *path)
{
    uint8_t     admin_pk[TOPO_KEY_SIZE], admin_sk[TOPO_SECRET_KEY_SIZE];
    uint8_t     cluster_id[TOPO_CLUSTER_ID_SIZE];
    const char *why   = NULL;
    bool        found = false;

    assert_int_equal(crypto_sign_keypair(admin_pk, admin_sk), 0);
    rv_v1 = malloc(sizeof *rv_v1);
    rv_v2 = malloc(sizeof *rv_v2);
    assert_non_null(rv_v1);
    assert_non_null(rv_v2);
    for (int attempt = 0; attempt < 1000 && !found; attempt++) {
        randombytes_buf(cluster_id, sizeof cluster_id);
        rv_topo_build(cluster_id, admin_pk);
        for (uint32_t s = 0; s < RV_SHARDS && !found; s++) {
            found = rv_one_first(rv_v1, s);
        }
    }
    assert_true(found);
    memcpy(rv_v2, rv_v1, sizeof *rv_v2);
    int rv = topo_node_remove(rv_v2, RV_CUT, &why);
    if (rv != MRD_OK) {
        fail_msg("topo_node_remove: %s (%s)", mrd_errname(rv), why);
    }
    assert_int_equal(rv_v2->version, 2);
    assert_int_equal(topo_node_by_id(rv_v2, RV_CUT)->state, TOPO_NODE_REMOVED);
    rv_signed_used = true;
    rv_topo_sign(rv_v1, admin_sk, &rv_signed_v1);
    rv_topo_sign(rv_v2, admin_sk, &rv_signed_v2);
    sodium_memzero(admin_sk, sizeof admin_sk);
    rv_file_replace(path, rv_signed_v1.data, rv_signed_v1.len);
}

/* The topology version n holds. */
static uint64_t
rv_topo_version(struct rv_node *n)
{
    uint64_t version = 0;
    void    *doc     = NULL;
    size_t   len     = 0;
    int      rv      = mrd_topology_get(n->client, 0, &version, &doc, &len);
    mrd_free(doc);
    if (rv != MRD_OK) {
        fail_msg("topology of node %u: %s (%s)", n->id, mrd_errname(rv),
            mrd_errdetail());
    }
    return version;
}

static bool
rv_has_v2(void *arg)
{
    return rv_topo_version(arg) >= 2;
}

static void
test_topology_remove_revoke(void **state)
{
    char path[HARNESS_PATH_SIZE + 32];
    char before[RV_NAME_SIZE], after[RV_NAME_SIZE];
    (void) state;
    rv_nodes_init(23);
    snprintf(path, sizeof path, "%s/topology-v1.signed", rv_dir);
    rv_topo_make(path);
    rv_stream_pick("t-before", before, sizeof before);
    rv_stream_pick("t-after", after, sizeof after);
    for (uint32_t i = 0; i < RV_NODES; i++) {
        const char *args[] = { "--topology", path, NULL };
        rv_node_start(&rv_nodes[i], args);
    }
    rv_clients_open("a");
    struct rv_node *one = rv_node(1), *two = rv_node(2), *cut = rv_node(RV_CUT);
    for (uint32_t i = 0; i < RV_NODES; i++) {
        assert_int_equal(rv_topo_version(&rv_nodes[i]), 1);
    }

    rv_append(one, before);
    rv_wait_count(two, before, 1);
    rv_wait_count(cut, before, 1);

    /* Version 2 without node 3, to node 1 only. */
    uint64_t revoked1   = rv_stat(one, "rejected_link_revoked");
    uint64_t revoked2   = rv_stat(two, "rejected_link_revoked");
    uint64_t untrusted1 = rv_stat(one, "rejected_link_untrusted");
    uint64_t version    = 0;
    int      rv         = mrd_topology_push(
                     one->client, rv_signed_v2.data, rv_signed_v2.len, &version);
    if (rv != MRD_OK) {
        fail_msg("push of version 2 to node 1: %s (%s)", mrd_errname(rv),
            mrd_errdetail());
    }
    assert_int_equal(version, 2);
    if (!harness_wait_for(rv_has_v2, two, RV_TRIES, RV_POLL_MS)) {
        fail_msg("node 2 never got version 2 (it holds %" PRIu64 ")",
            rv_topo_version(two));
    }
    assert_int_equal(rv_topo_version(one), 2);
    rv_wait_stat(one, revoked1, two, revoked2, "rejected_link_revoked");

    /* What node 1 takes now reaches node 2 and never node 3. */
    for (uint32_t k = 0; k < RV_AFTER_EVENTS; k++) {
        rv_append(one, after);
    }
    rv_wait_count(two, after, RV_AFTER_EVENTS);
    struct rv_node *only_cut[] = { cut };
    rv_never(only_cut, 1, after);
    assert_int_equal(rv_count(one, after), RV_AFTER_EVENTS);
    assert_int_equal(rv_count(cut, before), 1); /* what it had, it keeps */
    /* Node 3 may have learned version 2 by gossip before its pipes were
     * closed (each node rebuilds its tables up to 500 ms after it takes a
     * version) and then knows it is removed; with either version it keeps
     * dialing its peers, and node 1 refuses each handshake. */
    printf("revoke_test: node 3 holds topology version %" PRIu64 "\n",
        rv_topo_version(cut));
    rv_wait_stat(one, untrusted1, NULL, 0, "rejected_link_untrusted");
}

/* -------------------------------------------------------------- main -- */

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_static_keyring_revoke, rv_cleanup),
        cmocka_unit_test_teardown(test_topology_remove_revoke, rv_cleanup),
    };
    return cmocka_run_group_tests_name("revoke", tests, NULL, harness_teardown);
}
