/*
 * ack_test.c: acknowledgement levels on a real cluster (docs/ARCHITECTURE.md,
 * "Acknowledgement levels").
 *
 * Three nodes in a full mesh: 1 and 2 in region "a", 3 in region "b".
 *   1. Appends to node 1 asking for MRD_ACK_REGION k=2 and MRD_ACK_GLOBAL
 *      n=2 reach their level, and the result says what was counted; a
 *      local append says local. Hints make this prompt: each ack arrives
 *      well before the peers' idle poll would have (timings printed).
 *   2. MRD_ACK_GLOBAL n=3 cannot be reached with two regions: the call
 *      returns MRD_EDURABILITY after its wait, with the result filled in
 *      (local reached, two regions counted), and the events are written.
 *   3. With node 2 killed, MRD_ACK_REGION k=2 returns MRD_EDURABILITY with
 *      one replica counted; once node 2 is back, it is reached again.
 *   4. The node's counters say so (acks_reached, acks_timed_out, hints).
 *   5. Bad arguments are refused before anything is sent.
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

#include "harness.h"
#include "proto.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#define ACK_NODES 3u

struct ack_node {
    struct harness_node h;
    const char         *region;
    char                peers[512];
    const char         *args[10];
};

static struct ack_node ack_nodes[ACK_NODES];
static const char      ack_cluster_id[] = "0123456789abcdef0123456789abcdef";
static mrd_client     *ack_client; /* on node 1 only */

static void
ack_args(struct ack_node *n, bool with_peers)
{
    size_t a     = 0;
    n->args[a++] = "--region";
    n->args[a++] = n->region;
    n->args[a++] = "--cluster-id";
    n->args[a++] = ack_cluster_id;
    if (with_peers) {
        n->args[a++] = "--peers";
        n->args[a++] = n->peers;
    }
    n->args[a] = NULL;
}

static void
ack_peers(struct ack_node *n)
{
    size_t len  = 0;
    n->peers[0] = '\0';
    for (size_t i = 0; i < ACK_NODES; i++) {
        struct ack_node *p = &ack_nodes[i];
        if (p == n) {
            continue;
        }
        int w = snprintf(n->peers + len, sizeof(n->peers) - len,
            "%s%" PRIu64 "@%s", len > 0 ? "," : "", p->h.node_id, p->h.url);
        assert_true(w > 0 && (size_t) w < sizeof(n->peers) - len);
        len += (size_t) w;
    }
}

static uint64_t
ack_stat(const struct ack_node *n, const char *name)
{
    uint64_t value = 0;
    assert_int_equal(harness_node_stat(&n->h, name, &value), 0);
    return value;
}

static int
ack_append(const char *stream, int level, uint32_t count, uint32_t wait_ms,
    mrd_append_result *res, uint64_t *took_ms)
{
    mrd_event_in    ev = { .type = "acked", .data = "x", .data_size = 1 };
    mrd_append_opts opts;
    mrd_append_opts_init(&opts);
    opts.ack         = level;
    opts.ack_count   = count;
    opts.ack_wait_ms = wait_ms;
    memset(res, 0, sizeof *res);
    uint64_t t0 = mrd_now_mono_ms();
    int      rv = mrd_append(ack_client, stream, &ev, 1, &opts, res);
    *took_ms    = mrd_now_mono_ms() - t0;
    return rv;
}

/* Every node is in the mesh, and replication has run once (a pull from
 * each peer has told node 1 what they hold): an ack asked now is about
 * this append, not about a mesh still starting. */
static bool
ack_mesh_ready(void *arg)
{
    (void) arg;
    mrd_append_result res;
    uint64_t          took;
    return ack_append("warm-up", MRD_ACK_GLOBAL, 2, 200, &res, &took) == MRD_OK;
}

/* Stream "c" has its two CLI appends on node 3 (region b). */
static bool
ack_stream_has_two(void *arg)
{
    struct harness_node *three[] = { &ack_nodes[2].h };
    mrd_client          *c       = NULL;
    mrd_stream_info      info    = { 0 };
    (void) arg;
    if (harness_client_open(three, 1, NULL, &c) != MRD_OK) {
        return false;
    }
    int rv = mrd_stream_info_get(c, "c", &info);
    mrd_client_close(c);
    return rv == MRD_OK && info.count >= 2;
}

static void
test_ack_levels(void **state)
{
    (void) state;
    mrd_append_result res;
    uint64_t          took;

    ack_nodes[0].region = "a";
    ack_nodes[1].region = "a";
    ack_nodes[2].region = "b";
    for (unsigned i = 0; i < ACK_NODES; i++) {
        struct ack_node *n = &ack_nodes[i];
        assert_int_equal(harness_node_init(&n->h, i + 1), 0);
        ack_args(n, false);
        assert_int_equal(harness_node_start(&n->h, n->args), 0);
    }
    for (unsigned i = 0; i < ACK_NODES; i++) {
        struct ack_node *n = &ack_nodes[i];
        assert_int_equal(harness_node_stop(&n->h), 0);
        ack_peers(n);
        ack_args(n, true);
    }
    for (unsigned i = 0; i < ACK_NODES; i++) {
        assert_int_equal(
            harness_node_start(&ack_nodes[i].h, ack_nodes[i].args), 0);
    }
    struct harness_node *one[] = { &ack_nodes[0].h };
    assert_int_equal(harness_client_open(one, 1, NULL, &ack_client), MRD_OK);
    assert_true(harness_wait_for(ack_mesh_ready, NULL, 100, 100));

    /* 1. Levels that can be reached are. */
    assert_int_equal(ack_append("s", MRD_ACK_LOCAL, 0, 0, &res, &took), MRD_OK);
    assert_int_equal(res.ack_reached, MRD_ACK_LOCAL);
    assert_int_equal(res.ack_replicas, 1);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(
            ack_append("s", MRD_ACK_REGION, 2, 5000, &res, &took), MRD_OK);
        assert_int_equal(res.ack_reached, MRD_ACK_REGION);
        assert_true(res.ack_replicas >= 2);
        printf("region ack k=2: %" PRIu64 " ms (replicas %u, regions %u)\n",
            took, res.ack_replicas, res.ack_regions);
        assert_int_equal(
            ack_append("s", MRD_ACK_GLOBAL, 2, 5000, &res, &took), MRD_OK);
        assert_int_equal(res.ack_reached, MRD_ACK_GLOBAL);
        assert_int_equal(res.ack_regions, 2);
        printf("global ack n=2: %" PRIu64 " ms\n", took);
    }

    /* 2. A level no cluster of this shape reaches: written, but said so. */
    assert_int_equal(
        ack_append("t", MRD_ACK_GLOBAL, 3, 300, &res, &took), MRD_EDURABILITY);
    assert_true(took >= 300);
    assert_int_equal(res.ack_reached, MRD_ACK_LOCAL);
    assert_int_equal(res.count, 1);
    assert_int_equal(res.first_dot.origin, 1);
    mrd_stream_info info;
    assert_int_equal(mrd_stream_info_get(ack_client, "t", &info), MRD_OK);
    assert_int_equal(info.count, 1); /* the events are there */
    assert_string_equal(mrd_errname(MRD_EDURABILITY), "MRD_EDURABILITY");

    /* 3. The region's other replica is down, then back. */
    assert_int_equal(harness_node_kill(&ack_nodes[1].h, SIGKILL), 0);
    assert_int_equal(
        ack_append("s", MRD_ACK_REGION, 2, 300, &res, &took), MRD_EDURABILITY);
    assert_int_equal(res.ack_reached, MRD_ACK_LOCAL);
    assert_int_equal(res.ack_replicas, 1);
    /* Region b still answers for a global ack. */
    assert_int_equal(
        ack_append("s", MRD_ACK_GLOBAL, 2, 5000, &res, &took), MRD_OK);
    assert_int_equal(harness_node_start(&ack_nodes[1].h, ack_nodes[1].args), 0);
    assert_int_equal(
        ack_append("s", MRD_ACK_REGION, 2, 10000, &res, &took), MRD_OK);
    assert_int_equal(res.ack_reached, MRD_ACK_REGION);

    /* The CLI says the same. */
    char        out[4096];
    const char *ctl_ok[] = { "--node", ack_nodes[0].h.url, "--json", "append",
        "c", "--type", "T", "--ack", "global", NULL };
    assert_int_equal(harness_run_ctl(ctl_ok, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"ack\":\"global\""));
    assert_non_null(strstr(out, "\"ack_regions\":2"));
    const char *ctl_short[] = { "--node", ack_nodes[0].h.url, "--json",
        "append", "c", "--type", "T", "--ack", "global", "--ack-count", "3",
        "--ack-wait", "200", NULL };
    assert_int_equal(harness_run_ctl(ctl_short, out, sizeof out), 1);
    assert_non_null(strstr(out, "\"ack\":\"local\"")); /* and written */
    const char *ctl_bad[] = { "--node", ack_nodes[0].h.url, "append", "c",
        "--type", "T", "--ack", "everywhere", NULL };
    assert_int_equal(harness_run_ctl(ctl_bad, out, sizeof out), 2);
    /* A cursor read on the other region sees both appends, and says the
     * cursor to go on with. */
    const char *ctl_cur[] = { "--node", ack_nodes[2].h.url, "--json", "read",
        "c", "--cursor", "1;;", NULL };
    assert_true(harness_wait_for(ack_stream_has_two, NULL, 100, 50));
    assert_int_equal(harness_run_ctl(ctl_cur, out, sizeof out), 0);
    assert_non_null(strstr(out, "\"cursor\":\"1;1:"));

    /* 4. Counted. */
    assert_true(ack_stat(&ack_nodes[0], "acks_reached") >= 12);
    assert_true(ack_stat(&ack_nodes[0], "acks_timed_out") >= 2);
    assert_true(ack_stat(&ack_nodes[0], "hints_sent") > 0);
    assert_true(ack_stat(&ack_nodes[2], "hints_received") > 0);

    /* 5. Refused before anything is sent. */
    mrd_event_in    ev = { .type = "x" };
    mrd_append_opts opts;
    mrd_append_opts_init(&opts);
    opts.ack = 3;
    assert_int_equal(
        mrd_append(ack_client, "s", &ev, 1, &opts, &res), MRD_EINVAL);
    opts.ack       = MRD_ACK_REGION;
    opts.ack_count = MRD_ACK_COUNT_MAX + 1;
    assert_int_equal(
        mrd_append(ack_client, "s", &ev, 1, &opts, &res), MRD_EINVAL);
    opts.ack_count   = 1;
    opts.ack_wait_ms = MRD_ACK_WAIT_MS_MAX + 1;
    assert_int_equal(
        mrd_append(ack_client, "s", &ev, 1, &opts, &res), MRD_EINVAL);
    /* k = 1 is this node alone: reached at once. */
    opts.ack_wait_ms = 0;
    assert_int_equal(mrd_append(ack_client, "s", &ev, 1, &opts, &res), MRD_OK);
    assert_int_equal(res.ack_reached, MRD_ACK_REGION);
    assert_int_equal(res.ack_replicas >= 1, 1);

    mrd_client_close(ack_client);
    ack_client = NULL;
    for (unsigned i = 0; i < ACK_NODES; i++) {
        assert_int_equal(harness_node_stop(&ack_nodes[i].h), 0);
        harness_node_fini(&ack_nodes[i].h);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ack_levels),
    };
    return cmocka_run_group_tests_name("ack", tests, NULL, harness_teardown);
}
