/*
 * cluster_init_test.c: `meridianctl cluster init` writes configs that make a
 * working local cluster.
 *
 * It writes the configs of three regions into a temp dir, starts one
 * meridiand per config (the harness gives each its own data dir and the
 * port the config names), appends a counter op in one region and waits for
 * the other two to show it. It also checks that a dir that already holds a
 * cluster is refused and that bad options are usage errors.
 *
 * Keys: each node runs with the key and the keyring its config names
 * (DIR/node-N/node.key, DIR/keyring). The test adds the harness's admin
 * client to DIR/keyring before the nodes start, as an operator adds a
 * client, so that the harness's clients and STATS get in; the routed
 * append below runs as the cluster's own admin (DIR/admin.key, trusted
 * through the topology), the way cluster init tells an operator to.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "harness.h"

#define CI_NODES 3u

/* Appends the harness's admin key to the cluster's keyring as an admin
 * client (the syntax of net/keyring.h). */
static void
ci_keyring_admit_harness(const char *cdir)
{
    char    path[400], hex[65];
    uint8_t pk[32], sk[64];

    harness_admin_keypair(pk, sk);
    sodium_memzero(sk, sizeof sk);
    sodium_bin2hex(hex, sizeof hex, pk, sizeof pk);
    snprintf(path, sizeof path, "%s/keyring", cdir);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    assert_true(fprintf(f, "client harness-admin admin %s\n", hex) > 0);
    assert_int_equal(fclose(f), 0);
}

struct ci_wait {
    mrd_client *client;
    int64_t     want;
};

static bool
ci_counter_is(void *arg)
{
    struct ci_wait *w  = arg;
    mrd_state      *st = NULL;
    if (mrd_state_read(w->client, "trip", NULL, &st) != MRD_OK) {
        return false;
    }
    int64_t n = mrd_value_int(
        mrd_value_find(mrd_state_root(st), "n", MRD_STATE_COUNTER));
    mrd_state_free(st);
    return n == w->want;
}

/* True when the two files hold the same bytes. */
static bool
ci_same_file(const char *a, const char *b)
{
    static char x[1u << 20], y[1u << 20];
    FILE       *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    size_t      na = fa != NULL ? fread(x, 1, sizeof x, fa) : 0;
    size_t      nb = fb != NULL ? fread(y, 1, sizeof y, fb) : 0;
    if (fa != NULL) {
        fclose(fa);
    }
    if (fb != NULL) {
        fclose(fb);
    }
    return fa != NULL && fb != NULL && na == nb && memcmp(x, y, na) == 0;
}

struct ci_log {
    const struct harness_node *node;
    const char                *needle;
};

static bool
ci_log_has(void *arg)
{
    const struct ci_log *l = arg;
    return harness_node_log_contains(l->node, l->needle);
}

static void
test_cluster_init(void **state)
{
    (void) state;
    char dir[256], cdir[300], port_text[16], out[8192];
    assert_int_equal(harness_tmpdir_make("meridian-ci-", dir, sizeof(dir)), 0);
    snprintf(cdir, sizeof(cdir), "%s/c", dir);
    uint16_t base = harness_free_ports(CI_NODES, 0);
    assert_int_not_equal(base, 0);
    snprintf(port_text, sizeof(port_text), "%u", (unsigned) base);

    const char *init[] = { "cluster", "init", "--dir", cdir, "--regions",
        "eu,us,ap", "--base-port", port_text, "--shards", "4", NULL };
    assert_int_equal(harness_run_ctl(init, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "3 node configs"));
    /* A second init into the same dir would clobber a cluster: refused. */
    assert_int_equal(harness_run_ctl(init, NULL, 0), 1);
    /* Usage errors. */
    const char *twice[]
        = { "cluster", "init", "--dir", cdir, "--regions", "eu,eu", NULL };
    const char *zero[]
        = { "cluster", "init", "--dir", cdir, "--nodes-per-region", "0", NULL };
    const char *what[] = { "cluster", "start", NULL };
    assert_int_equal(harness_run_ctl(twice, NULL, 0), 2);
    assert_int_equal(harness_run_ctl(zero, NULL, 0), 2);
    assert_int_equal(harness_run_ctl(what, NULL, 0), 2);

    /* One meridiand per config: region, cluster id, peers and shards come
     * from the file, key and keyring from the config; the harness's flags
     * give it a data dir of its own. */
    ci_keyring_admit_harness(cdir);
    struct harness_node nodes[CI_NODES];
    char                cfg[CI_NODES][400];
    for (uint32_t i = 0; i < CI_NODES; i++) {
        assert_int_equal(harness_node_init(&nodes[i], i + 1), 0);
        nodes[i].port = (uint16_t) (base + i);
        snprintf(cfg[i], sizeof(cfg[i]), "%s/node-%u.json", cdir, i + 1);
        const char *args[] = { "--config", cfg[i], NULL };
        assert_int_equal(harness_node_start(&nodes[i], args), 0);
    }
    /* New stores take appends once they have read their peers' logs: the
     * routing check below wants node 2 to take its append itself. */
    struct harness_node *all[CI_NODES];
    for (uint32_t i = 0; i < CI_NODES; i++) {
        all[i] = &nodes[i];
    }
    assert_int_equal(harness_nodes_wait_joined(all, CI_NODES), 0);
    mrd_client *clients[CI_NODES];
    for (uint32_t i = 0; i < CI_NODES; i++) {
        struct harness_node *one = &nodes[i];
        assert_int_equal(harness_client_open(&one, 1, NULL, &clients[i]), 0);
    }
    /* One increment per region, then every region must show all three. */
    const char  *path[] = { "n" };
    mrd_op       op     = { .path = path,
                  .path_len       = 1,
                  .type           = MRD_STATE_COUNTER,
                  .kind           = MRD_OP_INC,
                  .delta          = 1 };
    mrd_event_in ev     = { .type = "Visited", .ops = &op, .op_count = 1 };
    for (uint32_t i = 0; i < CI_NODES; i++) {
        assert_int_equal(
            mrd_append(clients[i], "trip", &ev, 1, NULL, NULL), MRD_OK);
    }
    for (uint32_t i = 0; i < CI_NODES; i++) {
        struct ci_wait w = { clients[i], 3 };
        if (!harness_wait_for(ci_counter_is, &w, 200, 50)) {
            fail_msg("node %u never showed n = 3", i + 1);
        }
    }

    /* The CLI routes by the topology too: given node 1 (eu) and home
     * region us, an append is taken by node 2, the us replica. It runs
     * with what cluster init wrote for the admin: its key and DIR/keyring
     * (which names the nodes' own keys). */
    char admin_key[400], keyring[400];
    snprintf(admin_key, sizeof(admin_key), "%s/admin.key", cdir);
    snprintf(keyring, sizeof(keyring), "%s/keyring", cdir);
    const char *home[] = { "--key", admin_key, "--keyring", keyring, "--node",
        nodes[0].url, "--home-region", "us", "--json", "append", "trip",
        "--type", "Routed", NULL };
    assert_int_equal(harness_run_ctl(home, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "\"origin\":2"));
    const char *bad[] = { "--node", nodes[0].url, "--home-region", "US!",
        "info", "trip", NULL };
    assert_int_equal(harness_run_ctl(bad, NULL, 0), 2);

    /* What a node runs, fetched back: the very file cluster init signed. */
    char fetched[400], signed_path[400];
    snprintf(fetched, sizeof(fetched), "%s/fetched.signed", dir);
    snprintf(signed_path, sizeof(signed_path), "%s/topology.signed", cdir);
    const char *fetch[] = { "--node", nodes[1].url, "topology", "fetch",
        "--file", fetched, NULL };
    assert_int_equal(harness_run_ctl(fetch, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "topology version 1"));
    assert_true(ci_same_file(fetched, signed_path));

    /* Liveness (SWIM over the nodes' sockets): a stopped node keeps its
     * connections but answers nothing; the others call it dead within
     * the bound SWIM gives (a probe interval, then the suspicion timeout:
     * about 5 s for 3 nodes), keep acknowledging among themselves, and see
     * it alive again once it resumes. */
    assert_int_equal(harness_node_signal(&nodes[2], SIGSTOP), 0);
    struct ci_log dead[] = { { &nodes[0], "peer is dead (SWIM)" },
        { &nodes[1], "peer is dead (SWIM)" } };
    for (uint32_t i = 0; i < 2; i++) {
        if (!harness_wait_for(ci_log_has, &dead[i], 150, 100)) {
            harness_node_signal(&nodes[2], SIGCONT);
            fail_msg("node %u never called the stopped node 3 dead", i + 1);
        }
    }
    mrd_append_opts   opts;
    mrd_append_result res;
    mrd_append_opts_init(&opts);
    opts.ack       = MRD_ACK_GLOBAL;
    opts.ack_count = 2;
    assert_int_equal(
        mrd_append(clients[0], "trip", &ev, 1, &opts, &res), MRD_OK);
    assert_int_equal(res.ack_reached, MRD_ACK_GLOBAL);
    assert_int_equal(harness_node_signal(&nodes[2], SIGCONT), 0);
    struct ci_log alive = { &nodes[0], "peer is alive (SWIM)" };
    assert_true(harness_wait_for(ci_log_has, &alive, 150, 100));

    for (uint32_t i = 0; i < CI_NODES; i++) {
        mrd_client_close(clients[i]);
        assert_int_equal(harness_node_stop(&nodes[i]), 0);
        harness_node_fini(&nodes[i]);
    }
    harness_rmrf(dir);
}

/* CPU ticks (utime + stime) the process has used so far, or -1. */
static long
ci_cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n]         = '\0';
    const char *p  = strrchr(buf, ')');
    long        ut = 0, st = 0;
    /* After ")": state and 10 more fields, then utime and stime. */
    if (p == NULL
        || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld",
               &ut, &st)
            != 2) {
        return -1;
    }
    return ut + st;
}

/* A cluster of one node (one region, nothing to replicate with) idles:
 * its puller once woke for a gossip round that never came, and spun on a
 * core. Over CI_IDLE_MS it must use well under a quarter of one core (a
 * spinning thread takes most of one even on a busy machine; an idle node
 * a few percent, under ASan too). */
#define CI_IDLE_MS 3000u
static void
test_lone_node_idles(void **state)
{
    (void) state;
    char dir[256], cdir[300], port_text[16], cfg[400];
    assert_int_equal(harness_tmpdir_make("meridian-ci1-", dir, sizeof(dir)), 0);
    snprintf(cdir, sizeof(cdir), "%s/c", dir);
    uint16_t base = harness_free_ports(1, 7);
    assert_int_not_equal(base, 0);
    snprintf(port_text, sizeof(port_text), "%u", (unsigned) base);
    const char *init[] = { "cluster", "init", "--dir", cdir, "--regions",
        "solo", "--nodes-per-region", "1", "--base-port", port_text, NULL };
    assert_int_equal(harness_run_ctl(init, NULL, 0), 0);
    struct harness_node node;
    assert_int_equal(harness_node_init(&node, 1), 0);
    node.port = base;
    snprintf(cfg, sizeof(cfg), "%s/node-1.json", cdir);
    const char *args[] = { "--config", cfg, NULL };
    assert_int_equal(harness_node_start(&node, args), 0);
    harness_sleep_ms(500); /* past start-up work */
    long t0 = ci_cpu_ticks(node.pid);
    harness_sleep_ms(CI_IDLE_MS);
    long t1 = ci_cpu_ticks(node.pid);
    assert_true(t0 >= 0 && t1 >= t0);
    long hz = sysconf(_SC_CLK_TCK), used_ms = (t1 - t0) * 1000 / hz;
    if (used_ms * 4 >= (long) CI_IDLE_MS) {
        fail_msg("an idle one-node cluster used %ld ms of CPU in %u ms",
            used_ms, CI_IDLE_MS);
    }
    /* A second node on the same port cannot listen: it undoes what it had
     * started and exits 1. It used to leave its security thread running
     * on a freed topology (a use after free under ASan, seen once) and
     * leak the rest; LeakSanitizer would make the exit status 23. */
    struct harness_node twin;
    assert_int_equal(harness_node_init(&twin, 1), 0);
    twin.port = base;
    assert_int_not_equal(harness_node_start(&twin, args), 0);
    assert_true(WIFEXITED(twin.exit_status));
    assert_int_equal(WEXITSTATUS(twin.exit_status), 1);
    assert_true(harness_node_log_contains(&twin, "cannot listen"));
    harness_node_fini(&twin);
    assert_int_equal(harness_node_stop(&node), 0);
    harness_node_fini(&node);
    harness_rmrf(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_cluster_init, harness_teardown),
        cmocka_unit_test_teardown(test_lone_node_idles, harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, harness_teardown);
}
