/*
 * node_config_test.c: meridiand's settings from flags and a JSON file, the
 * HLC's monotonicity and its clamp on remote timestamps, and the refusals a
 * user gets for a bad config.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int
parse(struct node_config *cfg, int argc, const char **argv)
{
    FILE *saved = stderr;
    /* Keep expected complaints out of the test output. */
    stderr = fopen("/dev/null", "w");
    int rv = node_config_parse(cfg, argc, (char **) (uintptr_t) argv);
    fclose(stderr);
    stderr = saved;
    return rv;
}

static void
test_flags(void **state)
{
    (void) state;
    struct node_config cfg;
    const char        *argv[] = { "meridiand", "--node-id", "3", "--data-dir",
               "/tmp/x", "--listen", "tcp://127.0.0.1:0", "--map-size", "2M",
               "--shards", "8", "--log-level", "warn" };
    assert_int_equal(parse(&cfg, 13, argv), 0);
    assert_int_equal(cfg.node_id, 3);
    assert_string_equal(cfg.data_dir, "/tmp/x");
    assert_string_equal(cfg.listen, "tcp://127.0.0.1:0");
    assert_int_equal(cfg.map_size, 2u << 20);
    assert_int_equal(cfg.shard_count, 8);
    assert_int_equal(cfg.log_level, NODE_LOG_WARN);
    assert_int_equal(cfg.frame_size_max, NODE_FRAME_SIZE_DEFAULT);
}

static void
test_bad_flags(void **state)
{
    (void) state;
    struct node_config cfg;
    const char        *no_id[] = { "meridiand", "--data-dir", "/tmp/x" };
    const char        *zero_id[]
        = { "meridiand", "--node-id", "0", "--data-dir", "/tmp/x" };
    const char *bad_size[] = { "meridiand", "--node-id", "1", "--data-dir",
        "/tmp/x", "--map-size", "12Q" };
    const char *unknown[]  = { "meridiand", "--node-id", "1", "--data-dir",
         "/tmp/x", "--no-such-flag" };
    const char *shards[]   = { "meridiand", "--node-id", "1", "--data-dir",
          "/tmp/x", "--shards", "257" };
    const char *level[]    = { "meridiand", "--node-id", "1", "--data-dir",
           "/tmp/x", "--log-level", "loud" };
    const char *small[]    = { "meridiand", "--node-id", "1", "--data-dir",
           "/tmp/x", "--frame-size-max", "1K" };
    assert_int_equal(parse(&cfg, 3, no_id), -1);
    assert_int_equal(parse(&cfg, 5, zero_id), -1);
    assert_int_equal(parse(&cfg, 7, bad_size), -1);
    assert_int_equal(parse(&cfg, 6, unknown), -1);
    assert_int_equal(parse(&cfg, 7, shards), -1);
    assert_int_equal(parse(&cfg, 7, level), -1);
    assert_int_equal(parse(&cfg, 7, small), -1);
}

/* Replication settings: a peer list, the shared cluster id, and the
 * refusals for a list that cannot work. */
static void
test_peers(void **state)
{
    (void) state;
    struct node_config cfg;
    const char        *ok[]
        = { "meridiand", "--node-id", "1", "--data-dir", "/tmp/x", "--region",
              "eu-west", "--cluster-id", "00112233445566778899aabbccddeeff",
              "--peers", "2@tcp://127.0.0.1:7402,3@tcp://127.0.0.1:7403" };
    assert_int_equal(parse(&cfg, 11, ok), 0);
    assert_string_equal(cfg.region, "eu-west");
    assert_true(cfg.has_cluster_id);
    assert_int_equal(cfg.cluster_id[0], 0x00);
    assert_int_equal(cfg.cluster_id[15], 0xff);
    assert_int_equal(cfg.peer_count, 2);
    assert_int_equal(cfg.peers[0].id, 2);
    assert_string_equal(cfg.peers[0].url, "tcp://127.0.0.1:7402");
    assert_int_equal(cfg.peers[1].id, 3);
    assert_string_equal(cfg.peers[1].url, "tcp://127.0.0.1:7403");

    const char *no_cluster[] = { "meridiand", "--node-id", "1", "--data-dir",
        "/tmp/x", "--peers", "2@tcp://127.0.0.1:7402" };
    const char *self[]       = { "meridiand", "--node-id", "1", "--data-dir",
              "/tmp/x", "--cluster-id", "00112233445566778899aabbccddeeff", "--peers",
              "1@tcp://127.0.0.1:7402" };
    const char *twice[]      = { "meridiand", "--node-id", "1", "--data-dir",
             "/tmp/x", "--cluster-id", "00112233445566778899aabbccddeeff", "--peers",
             "2@tcp://a:1,2@tcp://b:1" };
    const char *no_at[]      = { "meridiand", "--node-id", "1", "--data-dir",
             "/tmp/x", "--cluster-id", "00112233445566778899aabbccddeeff", "--peers",
             "tcp://127.0.0.1:7402" };
    const char *bad_hex[]    = { "meridiand", "--node-id", "1", "--data-dir",
           "/tmp/x", "--cluster-id", "0011" };
    assert_int_equal(parse(&cfg, 7, no_cluster), -1);
    assert_int_equal(parse(&cfg, 9, self), -1);
    assert_int_equal(parse(&cfg, 9, twice), -1);
    assert_int_equal(parse(&cfg, 9, no_at), -1);
    assert_int_equal(parse(&cfg, 7, bad_hex), -1);
}

/* --peer-address: how this node reaches a peer. In static mode it takes
 * the place of the --peers URL; an id that is no peer is kept (topology
 * mode may add that node later). */
static void
test_peer_address(void **state)
{
    (void) state;
    struct node_config cfg;
    const char *ok[] = { "meridiand", "--node-id", "1", "--data-dir", "/tmp/x",
        "--cluster-id", "00112233445566778899aabbccddeeff", "--peers",
        "2@tcp://127.0.0.1:7402,3@tcp://127.0.0.1:7403", "--peer-address",
        "3=tcp://127.0.0.1:9003", "--peer-address",
        "7=tcp://10.0.0.7:7400,8=tls+tcp://h:1" };
    assert_int_equal(parse(&cfg, 13, ok), 0);
    assert_int_equal(cfg.peer_address_count, 3);
    assert_int_equal(cfg.peer_addresses[0].id, 3);
    assert_string_equal(cfg.peer_addresses[0].url, "tcp://127.0.0.1:9003");
    assert_int_equal(cfg.peer_addresses[1].id, 7);
    assert_string_equal(cfg.peer_addresses[1].url, "tcp://10.0.0.7:7400");
    assert_int_equal(cfg.peer_addresses[2].id, 8);
    assert_string_equal(cfg.peer_addresses[2].url, "tls+tcp://h:1");
    /* Static mode: the override is the URL dialed; the others stay. */
    assert_int_equal(cfg.peer_count, 2);
    assert_string_equal(cfg.peers[0].url, "tcp://127.0.0.1:7402");
    assert_string_equal(cfg.peers[1].url, "tcp://127.0.0.1:9003");
    assert_string_equal(node_peer_url(cfg.peer_addresses,
                            cfg.peer_address_count, 7, "tcp://x:1"),
        "tcp://10.0.0.7:7400");
    assert_string_equal(node_peer_url(cfg.peer_addresses,
                            cfg.peer_address_count, 9, "tcp://x:1"),
        "tcp://x:1");

    /* Topology mode: accepted here, applied by the topology. */
    const char *topo[]
        = { "meridiand", "--node-id", "1", "--data-dir", "/tmp/x", "--topology",
              "/tmp/t.signed", "--peer-address", "2=tcp://127.0.0.1:9002" };
    assert_int_equal(parse(&cfg, 9, topo), 0);
    assert_int_equal(cfg.peer_count, 0);
    assert_int_equal(cfg.peer_address_count, 1);

    /* Exactly NODE_PEERS_MAX fit; one more is refused. */
    char   list[NODE_PEERS_MAX * 32 + 64];
    size_t len = 0;
    for (uint32_t i = 0; i <= NODE_PEERS_MAX; i++) {
        len += (size_t) snprintf(list + len, sizeof list - len,
            "%s%u=tcp://h:%u", i > 0 ? "," : "", i + 2, i + 2);
    }
    assert_true(len < sizeof list);
    const char *many[] = { "meridiand", "--node-id", "1", "--data-dir",
        "/tmp/x", "--peer-address", list };
    assert_int_equal(parse(&cfg, 7, many), -1);
    *strrchr(list, ',') = '\0';
    assert_int_equal(parse(&cfg, 7, many), 0);
    assert_int_equal(cfg.peer_address_count, NODE_PEERS_MAX);

    /* The URL fits a peer's url field, and no more. */
    char url[sizeof(cfg.peers[0].url) + 8];
    memset(url, 'a', sizeof url);
    memcpy(url, "9=tcp://", 8);
    url[2 + sizeof(cfg.peers[0].url) - 1] = '\0'; /* 255 characters */
    const char *longest[] = { "meridiand", "--node-id", "1", "--data-dir",
        "/tmp/x", "--peer-address", url };
    assert_int_equal(parse(&cfg, 7, longest), 0);
    assert_int_equal(strlen(cfg.peer_addresses[0].url), 255);
    url[2 + sizeof(cfg.peers[0].url) - 1] = 'a';
    url[2 + sizeof(cfg.peers[0].url)]     = '\0'; /* 256 */
    assert_int_equal(parse(&cfg, 7, longest), -1);

    /* Refusals: this node, an id twice, and malformed entries. */
    const char *bad[] = { "1=tcp://127.0.0.1:7401", /* this node */
        "2=tcp://a:1,2=tcp://b:1", /* twice */
        "2tcp://a:1", "=tcp://a:1", "2=", "0=tcp://a:1", "x=tcp://a:1",
        "-2=tcp://a:1", "2=a:1", "2=tcp://a :1", "2=tcp://a:1,",
        "2=tcp://a:1,,3=tcp://b:1", "", "99999999999999999999=tcp://a:1" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *argv[] = { "meridiand", "--node-id", "1", "--data-dir",
            "/tmp/x", "--peer-address", bad[i] };
        if (parse(&cfg, 7, argv) != -1) {
            fail_msg("--peer-address '%s' was taken", bad[i]);
        }
    }
    const char *twice[] = { "meridiand", "--node-id", "1", "--data-dir",
        "/tmp/x", "--peer-address", "2=tcp://a:1", "--peer-address",
        "2=tcp://b:1" };
    assert_int_equal(parse(&cfg, 9, twice), -1);
}

static void
write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void
test_config_file(void **state)
{
    (void) state;
    struct node_config cfg;
    char               path[] = "/tmp/mrd-config-XXXXXX";
    int                fd     = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path,
        "{\"node_id\": 9, \"data_dir\": \"/tmp/y\", "
        "\"map_size\": \"4M\", \"readers\": 3}");
    const char *argv[] = { "meridiand", "--config", path, "--readers", "5" };
    assert_int_equal(parse(&cfg, 5, argv), 0);
    assert_int_equal(cfg.node_id, 9);
    assert_string_equal(cfg.data_dir, "/tmp/y");
    assert_int_equal(cfg.map_size, 4u << 20);
    assert_int_equal(cfg.readers, 5); /* the flag wins */
    /* No key or keyring given: empty, the data dir's are used. */
    assert_string_equal(cfg.key_file, "");
    assert_string_equal(cfg.keyring_file, "");

    /* The keys of a `meridianctl cluster init` node config. */
    write_file(path,
        "{\"node_id\": 2, \"data_dir\": \"/tmp/y\", \"key\": "
        "\"/tmp/c/node-2/node.key\", \"keyring\": \"/tmp/c/keyring\"}");
    const char *argv_keys[] = { "meridiand", "--config", path };
    assert_int_equal(parse(&cfg, 3, argv_keys), 0);
    assert_string_equal(cfg.key_file, "/tmp/c/node-2/node.key");
    assert_string_equal(cfg.keyring_file, "/tmp/c/keyring");

    /* peer_address: a list of "ID=URL" strings or one string of them; a
     * --peer-address flag replaces the file's list whole. */
    write_file(path,
        "{\"node_id\": 2, \"data_dir\": \"/tmp/y\", \"peer_address\": "
        "[\"1=tcp://127.0.0.1:9001\", \"3=tcp://127.0.0.1:9003\"]}");
    const char *argv_pa[] = { "meridiand", "--config", path };
    assert_int_equal(parse(&cfg, 3, argv_pa), 0);
    assert_int_equal(cfg.peer_address_count, 2);
    assert_int_equal(cfg.peer_addresses[0].id, 1);
    assert_string_equal(cfg.peer_addresses[0].url, "tcp://127.0.0.1:9001");
    assert_int_equal(cfg.peer_addresses[1].id, 3);
    assert_string_equal(cfg.peer_addresses[1].url, "tcp://127.0.0.1:9003");
    const char *argv_pa_flag[] = { "meridiand", "--config", path,
        "--peer-address", "3=tcp://10.0.0.3:7400", "--peer-address",
        "4=tcp://10.0.0.4:7400" };
    assert_int_equal(parse(&cfg, 7, argv_pa_flag), 0);
    assert_int_equal(cfg.peer_address_count, 2);
    assert_int_equal(cfg.peer_addresses[0].id, 3);
    assert_string_equal(cfg.peer_addresses[0].url, "tcp://10.0.0.3:7400");
    assert_int_equal(cfg.peer_addresses[1].id, 4);
    write_file(path,
        "{\"node_id\": 2, \"data_dir\": \"/tmp/y\", \"peer_address\": "
        "\"1=tcp://127.0.0.1:9001,3=tcp://127.0.0.1:9003\"}");
    assert_int_equal(parse(&cfg, 3, argv_pa), 0);
    assert_int_equal(cfg.peer_address_count, 2);
    assert_string_equal(cfg.peer_addresses[1].url, "tcp://127.0.0.1:9003");
    write_file(path,
        "{\"node_id\": 2, \"data_dir\": \"/tmp/y\", \"peer_address\": []}");
    assert_int_equal(parse(&cfg, 3, argv_pa), 0);
    assert_int_equal(cfg.peer_address_count, 0);
    static const char *const bad_pa[] = {
        "[\"1=tcp://a:1\", 3]", /* not a string */
        "7", /* a number */
        "{\"1\": \"tcp://a:1\"}", /* an object */
        "[\"1=tcp://a:1\", \"1=tcp://b:1\"]", /* twice */
        "[\"2=tcp://a:1\"]", /* this node */
        "[\"1tcp://a:1\"]", /* malformed */
    };
    for (size_t i = 0; i < sizeof bad_pa / sizeof bad_pa[0]; i++) {
        char text[256];
        snprintf(text, sizeof text,
            "{\"node_id\": 2, \"data_dir\": \"/tmp/y\", \"peer_address\": "
            "%s}",
            bad_pa[i]);
        write_file(path, text);
        if (parse(&cfg, 3, argv_pa) != -1) {
            fail_msg("peer_address %s was taken", bad_pa[i]);
        }
    }

    write_file(path, "{\"node_id\": 9, \"data_dri\": \"/tmp/y\"}");
    assert_int_equal(parse(&cfg, 3, argv), -1); /* a typo is an error */
    write_file(path, "{\"node_id\": -4}");
    assert_int_equal(parse(&cfg, 3, argv), -1);
    write_file(path, "[1, 2]");
    assert_int_equal(parse(&cfg, 3, argv), -1);
    write_file(path, "{not json");
    assert_int_equal(parse(&cfg, 3, argv), -1);
    unlink(path);
}

static void
test_hlc_monotonic(void **state)
{
    (void) state;
    struct node_hlc hlc = { 0 };
    uint64_t        a   = node_hlc_tick(&hlc, 1000);
    uint64_t        b   = node_hlc_tick(&hlc, 1000);
    uint64_t        c   = node_hlc_tick(&hlc, 900); /* the clock stepped back */
    uint64_t        d   = node_hlc_tick(&hlc, 2000);
    assert_int_equal(a, 1000ull << 16);
    assert_int_equal(b, a + 1);
    assert_int_equal(c, b + 1);
    assert_int_equal(d, 2000ull << 16);
}

/* A replicated timestamp moves our clock past it, unless it is further
 * ahead than the bound: then the clock moves only to the bound. */
static void
test_hlc_observe_clamps(void **state)
{
    (void) state;
    struct node_hlc hlc  = { 0 };
    uint64_t        wall = 1000000;

    assert_false(node_hlc_observe(&hlc, (wall + 100) << 16, wall, 500));
    assert_true(node_hlc_tick(&hlc, wall) > ((wall + 100) << 16));
    /* An hour ahead: clamped to wall + 500 ms, and said so. */
    assert_true(node_hlc_observe(&hlc, (wall + 3600000) << 16, wall, 500));
    assert_int_equal(hlc.last, (wall + 500) << 16);
    uint64_t next = node_hlc_tick(&hlc, wall);
    assert_true(next > ((wall + 500) << 16));
    assert_true(next < ((wall + 501) << 16));
    /* Behind us: nothing moves. */
    assert_false(node_hlc_observe(&hlc, 5, wall, 500));
    assert_true(node_hlc_tick(&hlc, wall) > next);
}

int
main(void)
{
    node_log_setup(0, NODE_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_bad_flags),
        cmocka_unit_test(test_peers),
        cmocka_unit_test(test_peer_address),
        cmocka_unit_test(test_config_file),
        cmocka_unit_test(test_hlc_monotonic),
        cmocka_unit_test(test_hlc_observe_clamps),
    };
    return cmocka_run_group_tests_name("node_config", tests, NULL, NULL);
}
