/*
 * client_route_test.c: the order in which the client library tries the
 * nodes of a stream's shard (client/route.c, client_route_order()).
 *
 * Topologies are built with the topo.h builders (regions a, b, c, d, three
 * nodes each, rf 2 unless a test changes it), and the expected order is
 * derived from topo_replicas(), so the test pins the routing rules, not the
 * hash: home replicas first in rendezvous order; then the other regions,
 * known round trips first (fastest first), unknown ones by index; draining
 * regions last (a draining home region first among them); suspect nodes
 * after every healthy one, each group in that order; no preference when
 * home is -1; truncation at ids_max; draining and removed nodes never.
 * Every shard of the topology is checked, with the same health inputs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "client.h"
#include "topo.h"

#define RT_REGIONS 4u
#define RT_PER_REGION 3u
#define RT_SHARDS 64u

static const uint8_t rt_cid[TOPO_CLUSTER_ID_SIZE]
    = { 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6 };

/* A deterministic Ed25519 public key per node number. */
static void
rt_key(uint32_t n, uint8_t pk[TOPO_KEY_SIZE])
{
    uint8_t seed[crypto_sign_SEEDBYTES] = { 0 };
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
    memcpy(seed, &n, sizeof n);
    seed[31] = 0x33;
    crypto_sign_seed_keypair(pk, sk, seed);
}

/* Regions a..d with rf, RT_PER_REGION nodes each (ids 1..12, region by
 * id). */
static struct topo *
rt_topo(uint32_t rf)
{
    static const char *names[RT_REGIONS] = { "a", "b", "c", "d" };
    struct topo       *t                 = calloc(1, sizeof *t);
    uint8_t            admin[TOPO_KEY_SIZE];
    const char        *why = NULL;

    assert_non_null(t);
    rt_key(1000, admin);
    topo_init(t, rt_cid, RT_SHARDS, admin);
    for (uint32_t r = 0; r < RT_REGIONS; r++) {
        assert_int_equal(topo_region_add(t, names[r], rf, NULL, &why), MRD_OK);
    }
    for (uint32_t i = 0; i < RT_REGIONS * RT_PER_REGION; i++) {
        char     name[32], address[64];
        uint8_t  pk[TOPO_KEY_SIZE];
        uint32_t id;
        snprintf(name, sizeof name, "n%u", i + 1);
        snprintf(address, sizeof address, "tcp://10.0.0.%u:7400", i + 1);
        rt_key(i + 1, pk);
        assert_int_equal(
            topo_node_add(t, name, i / RT_PER_REGION, address, pk, &id, &why),
            MRD_OK);
        assert_int_equal(id, i + 1);
    }
    t->version = 1;
    return t;
}

/* Health the test controls: per node id, suspect and round trip. */
struct rt_health {
    bool     suspect[TOPO_NODES_MAX + 1];
    uint32_t rtt_us[TOPO_NODES_MAX + 1];
};

static bool
rt_suspect_cb(void *arg, uint32_t id)
{
    const struct rt_health *h = arg;
    assert_true(id >= 1 && id <= TOPO_NODES_MAX);
    return h->suspect[id];
}

static uint32_t
rt_rtt_cb(void *arg, uint32_t id)
{
    const struct rt_health *h = arg;
    assert_true(id >= 1 && id <= TOPO_NODES_MAX);
    return h->rtt_us[id];
}

/* Appends the shard's replicas of region r to want. */
static void
rt_want_region(const struct topo *t, uint32_t shard, uint32_t r, uint32_t *want,
    uint32_t *count)
{
    uint32_t ids[TOPO_RF_MAX];
    uint32_t n = topo_replicas(t, shard, r, ids, TOPO_RF_MAX);
    for (uint32_t i = 0; i < n; i++) {
        want[(*count)++] = ids[i];
    }
}

/* The order the rules give for `regions` (region indexes, in the order
 * the test expects), then the suspects moved last. */
static uint32_t
rt_want(const struct topo *t, uint32_t shard, const uint32_t *regions,
    uint32_t region_count, const struct rt_health *h, uint32_t *want)
{
    uint32_t all[CLIENT_ROUTE_IDS_MAX];
    uint32_t n = 0;
    uint32_t k = 0;

    for (uint32_t i = 0; i < region_count; i++) {
        rt_want_region(t, shard, regions[i], all, &n);
    }
    for (uint32_t i = 0; i < n; i++) {
        if (h == NULL || !h->suspect[all[i]]) {
            want[k++] = all[i];
        }
    }
    for (uint32_t i = 0; i < n && h != NULL; i++) {
        if (h->suspect[all[i]]) {
            want[k++] = all[i];
        }
    }
    assert_int_equal(k, n);
    return n;
}

/* client_route_order() for every shard equals rt_want() with `regions`. */
static void
rt_check(const struct topo *t, int32_t home, struct rt_health *h,
    const uint32_t *regions, uint32_t region_count)
{
    struct client_route_health health = { rt_suspect_cb, rt_rtt_cb, h };

    for (uint32_t shard = 0; shard < t->shard_count; shard++) {
        uint32_t got[CLIENT_ROUTE_IDS_MAX], want[CLIENT_ROUTE_IDS_MAX];
        uint32_t n = client_route_order(t, shard, home,
            h != NULL ? &health : NULL, got, CLIENT_ROUTE_IDS_MAX);
        uint32_t m = rt_want(t, shard, regions, region_count, h, want);
        assert_int_equal(n, m);
        for (uint32_t i = 0; i < n; i++) {
            if (got[i] != want[i]) {
                fail_msg("shard %u, position %u: node %u, want %u", shard, i,
                    got[i], want[i]);
            }
        }
    }
}

/* -------------------------------------------------------------- tests -- */

/* Home first, then the others by index when no round trip is known. */
static void
test_home_first(void **state)
{
    struct topo     *t = rt_topo(2);
    struct rt_health h;

    (void) state;
    memset(&h, 0, sizeof h);
    rt_check(t, 1, NULL, (uint32_t[]) { 1, 0, 2, 3 }, 4);
    rt_check(t, 1, &h, (uint32_t[]) { 1, 0, 2, 3 }, 4);
    rt_check(t, 3, &h, (uint32_t[]) { 3, 0, 1, 2 }, 4);
    rt_check(t, 0, &h, (uint32_t[]) { 0, 1, 2, 3 }, 4);
    /* The home replicas are exactly topo_replicas(), in its order: the
     * first rf of the rendezvous order. */
    for (uint32_t shard = 0; shard < RT_SHARDS; shard++) {
        uint32_t got[CLIENT_ROUTE_IDS_MAX], cand[TOPO_NODES_MAX];
        uint32_t n = client_route_order(t, shard, 2, NULL, got, 2);
        assert_int_equal(n, 2);
        assert_int_equal(topo_candidates(t, shard, 2, cand, TOPO_NODES_MAX), 3);
        assert_int_equal(got[0], cand[0]);
        assert_int_equal(got[1], cand[1]);
    }
    free(t);
}

/* No preference: every region is "other". */
static void
test_no_home(void **state)
{
    struct topo     *t = rt_topo(1);
    struct rt_health h;

    (void) state;
    memset(&h, 0, sizeof h);
    rt_check(t, -1, &h, (uint32_t[]) { 0, 1, 2, 3 }, 4);
    /* Known round trips first, fastest first. */
    for (uint32_t id = 1; id <= 3; id++) {
        h.rtt_us[id] = 900; /* region a */
    }
    for (uint32_t id = 7; id <= 9; id++) {
        h.rtt_us[id] = 100; /* region c */
    }
    rt_check(t, -1, &h, (uint32_t[]) { 2, 0, 1, 3 }, 4);
    free(t);
}

/* Other regions by the lowest known round trip of their replicas of the
 * shard; regions with none known after, by index. */
static void
test_remote_by_rtt(void **state)
{
    struct topo     *t = rt_topo(3); /* every node holds every shard */
    struct rt_health h;

    (void) state;
    memset(&h, 0, sizeof h);
    h.rtt_us[12] = 50000; /* region d, slow */
    h.rtt_us[8]  = 900; /* region c, fast */
    h.rtt_us[7]  = 90000; /* region c's slow node does not count: min */
    rt_check(t, 0, &h, (uint32_t[]) { 0, 2, 3, 1 }, 4);
    /* The home region's own round trip never moves it. */
    h.rtt_us[1] = 1000000;
    rt_check(t, 0, &h, (uint32_t[]) { 0, 2, 3, 1 }, 4);
    /* A tie goes to the lower index. */
    h.rtt_us[5] = 900; /* region b */
    rt_check(t, 0, &h, (uint32_t[]) { 0, 1, 2, 3 }, 4);
    free(t);
}

/* A draining region comes after every other, and the home region, when it
 * drains, first among the draining ones. */
static void
test_draining_regions(void **state)
{
    struct topo     *t = rt_topo(2);
    struct rt_health h;
    const char      *why = NULL;

    (void) state;
    memset(&h, 0, sizeof h);
    assert_int_equal(topo_region_drain(t, 2, &why), MRD_OK);
    rt_check(t, 1, &h, (uint32_t[]) { 1, 0, 3, 2 }, 4);
    assert_int_equal(topo_region_drain(t, 1, &why), MRD_OK);
    rt_check(t, 1, &h, (uint32_t[]) { 0, 3, 1, 2 }, 4);
    /* Round trips order the draining ones too, after the home region
     * (every node of a region, so every shard's replicas have one). */
    for (uint32_t id = 7; id <= 9; id++) {
        h.rtt_us[id] = 10; /* region c */
    }
    for (uint32_t id = 1; id <= 3; id++) {
        h.rtt_us[id] = 500; /* region a */
    }
    rt_check(t, 1, &h, (uint32_t[]) { 0, 3, 1, 2 }, 4);
    rt_check(t, 3, &h, (uint32_t[]) { 3, 0, 2, 1 }, 4);
    /* Everything draining: still an order, home first. */
    assert_int_equal(topo_region_drain(t, 0, &why), MRD_OK);
    assert_int_equal(topo_region_drain(t, 3, &why), MRD_OK);
    rt_check(t, 3, &h, (uint32_t[]) { 3, 2, 0, 1 }, 4);
    free(t);
}

/* Suspect nodes go after every healthy one, each group in order. */
static void
test_suspects_last(void **state)
{
    struct topo     *t = rt_topo(2);
    struct rt_health h;

    (void) state;
    memset(&h, 0, sizeof h);
    for (uint32_t id = 4; id <= 6; id++) {
        h.suspect[id] = true; /* the whole home region b */
    }
    h.suspect[1] = true;
    rt_check(t, 1, &h, (uint32_t[]) { 1, 0, 2, 3 }, 4);
    /* Every node suspect: the preferred order stands. */
    for (uint32_t id = 1; id <= 12; id++) {
        h.suspect[id] = true;
    }
    rt_check(t, 1, &h, (uint32_t[]) { 1, 0, 2, 3 }, 4);
    /* Only the shard's first home replica: the second takes its place. */
    memset(&h, 0, sizeof h);
    for (uint32_t shard = 0; shard < RT_SHARDS; shard++) {
        struct client_route_health health = { rt_suspect_cb, rt_rtt_cb, &h };
        uint32_t                   reps[TOPO_RF_MAX], got[CLIENT_ROUTE_IDS_MAX];
        assert_int_equal(topo_replicas(t, shard, 1, reps, TOPO_RF_MAX), 2);
        h.suspect[reps[0]] = true;
        uint32_t n         = client_route_order(
                    t, shard, 1, &health, got, CLIENT_ROUTE_IDS_MAX);
        assert_int_equal(n, 8);
        assert_int_equal(got[0], reps[1]);
        assert_int_equal(got[n - 1], reps[0]);
        h.suspect[reps[0]] = false;
    }
    free(t);
}

/* Draining and removed nodes are never candidates; their successors are. */
static void
test_draining_nodes(void **state)
{
    struct topo     *t = rt_topo(1);
    struct rt_health h;
    const char      *why = NULL;

    (void) state;
    memset(&h, 0, sizeof h);
    assert_int_equal(topo_node_drain(t, 4, &why), MRD_OK);
    assert_int_equal(topo_node_remove(t, 5, &why), MRD_OK);
    rt_check(t, 1, &h, (uint32_t[]) { 1, 0, 2, 3 }, 4);
    for (uint32_t shard = 0; shard < RT_SHARDS; shard++) {
        uint32_t got[CLIENT_ROUTE_IDS_MAX];
        uint32_t n = client_route_order(t, shard, 1,
            &(struct client_route_health) { rt_suspect_cb, rt_rtt_cb, &h }, got,
            CLIENT_ROUTE_IDS_MAX);
        assert_int_equal(n, 4);
        assert_int_equal(got[0], 6); /* region b's only active node */
        for (uint32_t i = 0; i < n; i++) {
            assert_true(got[i] != 4 && got[i] != 5);
        }
    }
    free(t);
}

/* ids_max truncates after the order is made; home still first. */
static void
test_truncation(void **state)
{
    struct topo *t = rt_topo(3);

    (void) state;
    for (uint32_t shard = 0; shard < RT_SHARDS; shard++) {
        uint32_t full[CLIENT_ROUTE_IDS_MAX], got[CLIENT_ROUTE_IDS_MAX];
        uint32_t n
            = client_route_order(t, shard, 2, NULL, full, CLIENT_ROUTE_IDS_MAX);
        assert_int_equal(n, RT_REGIONS * 3);
        for (uint32_t max = 0; max <= n; max++) {
            uint32_t m = client_route_order(t, shard, 2, NULL, got, max);
            assert_int_equal(m, max);
            assert_memory_equal(got, full, m * sizeof got[0]);
        }
        for (uint32_t i = 0; i < 3; i++) {
            assert_int_equal(topo_node_by_id(t, full[i])->region, 2);
        }
    }
    free(t);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_home_first),
        cmocka_unit_test(test_no_home),
        cmocka_unit_test(test_remote_by_rtt),
        cmocka_unit_test(test_draining_regions),
        cmocka_unit_test(test_suspects_last),
        cmocka_unit_test(test_draining_nodes),
        cmocka_unit_test(test_truncation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
