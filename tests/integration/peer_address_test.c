/*
 * peer_address_test.c: --peer-address ID=URL, how one node reaches one
 * peer whatever the topology says (node/config.c; node/topology.c,
 * node_topology_peers, which the puller, its hints and SWIM dial from).
 *
 * Two nodes, ids 1 and 2, in one region of rf 2 of a signed topology the
 * test makes (both hold every shard), on ports picked ahead. Node 1 starts
 * with --peer-address 2=tcp://127.0.0.1:P, where P is a forwarder this
 * test runs in a thread: it accepts, connects to node 2's real port and
 * copies bytes both ways, counting them. Node 2 dials node 1 directly, at
 * the topology's address. So node 1 -> node 2 (node 1 pulling from node 2,
 * its hints and SWIM messages to node 2) goes through the forwarder, and
 * node 2 -> node 1 does not.
 *   1. An event appended on node 2 reaches node 1, and the forwarder has
 *      carried bytes both ways: node 1 pulled it through the forwarder.
 *      An event appended on node 1 reaches node 2.
 *   2. The forwarder stops: its listener and every connection are closed,
 *      and node 1's redials to P are refused. Events appended on node 2
 *      afterwards never reach node 1 (watched for a few seconds), while
 *      an event appended on node 1 still reaches node 2 over the direct
 *      link. That last check comes right after the cut, because a cut in
 *      one direction does not stay one-directional for long: SWIM's ack
 *      to node 2's probe is a message node 1 sends on its own link to
 *      node 2, the cut one, so after a probe period and the suspicion
 *      timeout (about 5 s) node 2 holds node 1 DEAD and its puller skips
 *      node 1 as well (node/puller.c, node_puller_usable). Node 1's
 *      events then stop reaching node 2 too, until the link is back.
 *
 * Which node answers: every check uses a client naming one node only and
 * counts a stream's events in that node's shard logs (a log read names no
 * stream, so the node named serves it). Appends are routed by the
 * topology, so each stream is named so that the node meant to take it
 * comes first in its shard's placement, and every append is checked to be
 * taken there (the dot's origin). Every wait is bounded and scaled
 * (harness_ms, harness_wait_for); every process started is killed after
 * the test, passed or not, and the forwarder thread is joined.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
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
#include <sodium.h>

#include "harness.h"
#include "proto.h"
#include "topo.h"

#define PA_NODES 2u
#define PA_SHARDS 4u
/* Polls 50 ms apart: up to 15 s (scaled) for what must happen. */
#define PA_POLL_MS 50u
#define PA_TRIES 300u
/* How long an event that must never arrive is watched for (scaled): past
 * a few of node 1's pull rounds and SWIM probe periods. */
#define PA_NEVER_MS 4000u
#define PA_NAME_SIZE 32u
/* Connections the forwarder carries at once: node 1 opens a few to node 2
 * (puller, hints, SWIM) and redials each when it drops. */
#define PA_FWD_CONNS_MAX 16u
#define PA_FWD_BUF_SIZE 16384u
/* The forwarder's poll period: how soon it sees the stop flag. */
#define PA_FWD_POLL_MS 50

/* ------------------------------------------------------- forwarder -- */

/* A TCP forwarder on 127.0.0.1: each accepted connection gets one to
 * `to_port`, and bytes are copied both ways until either side closes.
 * One thread; the test only reads the counters and sets `stop`. */
struct pa_fwd {
    int              listen_fd;
    uint16_t         port; /* where it listens */
    uint16_t         to_port;
    int              fds[PA_FWD_CONNS_MAX][2]; /* accepted, upstream; -1 */
    pthread_t        thread;
    bool             running;
    _Atomic bool     stop;
    _Atomic uint64_t bytes_up; /* node 1 -> node 2 */
    _Atomic uint64_t bytes_down; /* node 2 -> node 1 */
    _Atomic uint64_t accepted;
};

static struct pa_fwd pa_fwd;

static void
pa_fwd_close_pair(struct pa_fwd *f, uint32_t i)
{
    for (int k = 0; k < 2; k++) {
        if (f->fds[i][k] >= 0) {
            close(f->fds[i][k]);
            f->fds[i][k] = -1;
        }
    }
}

static int
pa_fwd_connect(uint16_t port)
{
    struct sockaddr_in a;
    int                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    memset(&a, 0, sizeof a);
    a.sin_family      = AF_INET;
    a.sin_port        = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *) &a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A new connection: paired with one to node 2, or closed when there is
 * no room or node 2 does not answer (node 1 redials). */
static void
pa_fwd_accept(struct pa_fwd *f)
{
    int fd = accept(f->listen_fd, NULL, NULL);
    if (fd < 0) {
        return;
    }
    atomic_fetch_add(&f->accepted, 1);
    for (uint32_t i = 0; i < PA_FWD_CONNS_MAX; i++) {
        if (f->fds[i][0] < 0) {
            int up = pa_fwd_connect(f->to_port);
            if (up < 0) {
                break;
            }
            f->fds[i][0] = fd;
            f->fds[i][1] = up;
            return;
        }
    }
    close(fd);
}

/* Copies what one side of pair i has to the other; false when the pair
 * is done (a side closed or failed). */
static bool
pa_fwd_copy(struct pa_fwd *f, uint32_t i, int from)
{
    uint8_t buf[PA_FWD_BUF_SIZE];
    ssize_t n = read(f->fds[i][from], buf, sizeof buf);
    if (n <= 0) {
        return n < 0 && (errno == EINTR || errno == EAGAIN);
    }
    for (ssize_t off = 0; off < n;) {
        ssize_t w = write(f->fds[i][1 - from], buf + off, (size_t) (n - off));
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return false;
        }
        off += w;
    }
    atomic_fetch_add(from == 0 ? &f->bytes_up : &f->bytes_down, (uint64_t) n);
    return true;
}

static void *
pa_fwd_main(void *arg)
{
    struct pa_fwd *f = arg;
    struct pollfd  pfd[1 + 2 * PA_FWD_CONNS_MAX];

    while (!atomic_load(&f->stop)) {
        nfds_t n = 0;
        pfd[n++] = (struct pollfd) { .fd = f->listen_fd, .events = POLLIN };
        for (uint32_t i = 0; i < PA_FWD_CONNS_MAX; i++) {
            for (int k = 0; k < 2; k++) {
                /* A negative fd is ignored by poll: slots stay aligned. */
                pfd[1 + 2 * i + (uint32_t) k]
                    = (struct pollfd) { .fd = f->fds[i][k], .events = POLLIN };
            }
        }
        n = 1 + 2 * PA_FWD_CONNS_MAX;
        if (poll(pfd, n, PA_FWD_POLL_MS) <= 0) {
            continue;
        }
        for (uint32_t i = 0; i < PA_FWD_CONNS_MAX; i++) {
            for (int k = 0; k < 2 && f->fds[i][0] >= 0; k++) {
                short ev = pfd[1 + 2 * i + (uint32_t) k].revents;
                if (ev != 0 && !pa_fwd_copy(f, i, k)) {
                    pa_fwd_close_pair(f, i);
                }
            }
        }
        if (pfd[0].revents & POLLIN) {
            pa_fwd_accept(f);
        }
    }
    /* Stopped: the listener and every connection go, so node 1's pipes to
     * node 2 drop and its redials are refused. */
    close(f->listen_fd);
    f->listen_fd = -1;
    for (uint32_t i = 0; i < PA_FWD_CONNS_MAX; i++) {
        pa_fwd_close_pair(f, i);
    }
    return NULL;
}

/* Listens on a port the kernel picks and starts forwarding to to_port. */
static void
pa_fwd_start(struct pa_fwd *f, uint16_t to_port)
{
    struct sockaddr_in a;
    socklen_t          alen = sizeof a;
    int                one  = 1;

    memset(f, 0, sizeof *f);
    for (uint32_t i = 0; i < PA_FWD_CONNS_MAX; i++) {
        f->fds[i][0] = f->fds[i][1] = -1;
    }
    f->to_port   = to_port;
    f->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->listen_fd >= 0);
    assert_int_equal(
        setsockopt(f->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one),
        0);
    memset(&a, 0, sizeof a);
    a.sin_family      = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *) &a, sizeof a), 0);
    assert_int_equal(listen(f->listen_fd, 16), 0);
    assert_int_equal(
        getsockname(f->listen_fd, (struct sockaddr *) &a, &alen), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, pa_fwd_main, f), 0);
    f->running = true;
}

/* Stops forwarding: closes the listener and its connections, joined. */
static void
pa_fwd_stop(struct pa_fwd *f)
{
    if (!f->running) {
        return;
    }
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    f->running = false;
}

/* ----------------------------------------------------------- nodes -- */

struct pa_node {
    struct harness_node h;
    uint32_t            id;
    char                url[HARNESS_URL_SIZE];
    mrd_client         *client; /* on this node only */
};

static struct pa_node   pa_nodes[PA_NODES];
static char             pa_dir[HARNESS_PATH_SIZE];
static struct topo     *pa_topo;
static struct proto_buf pa_signed;
static bool             pa_signed_used;

static struct pa_node *
pa_node(uint32_t id)
{
    assert_true(id >= 1 && id <= PA_NODES);
    return &pa_nodes[id - 1];
}

static void
pa_nodes_init(uint32_t salt)
{
    assert_true(sodium_init() >= 0);
    assert_int_equal(
        harness_tmpdir_make("meridian-peeraddr-", pa_dir, sizeof pa_dir), 0);
    uint16_t base = harness_free_ports(PA_NODES, salt);
    assert_int_not_equal(base, 0);
    for (uint32_t i = 0; i < PA_NODES; i++) {
        struct pa_node *n = &pa_nodes[i];
        assert_int_equal(harness_node_init(&n->h, i + 1), 0);
        n->id     = i + 1;
        n->h.port = (uint16_t) (base + i);
        snprintf(
            n->url, sizeof n->url, "tcp://127.0.0.1:%u", (unsigned) n->h.port);
    }
}

static void
pa_node_start(struct pa_node *n, const char *const *args)
{
    if (harness_node_start(&n->h, args) != 0) {
        fail_msg("node %u did not start (log %s)", n->id, n->h.log_path);
    }
    assert_string_equal(n->h.url, n->url);
}

/* Waits until no node is joining, then opens each node's client with
 * home region "a". */
static void
pa_clients_open(void)
{
    struct harness_node *all[PA_NODES];
    for (uint32_t i = 0; i < PA_NODES; i++) {
        all[i] = &pa_nodes[i].h;
    }
    assert_int_equal(harness_nodes_wait_joined(all, PA_NODES), 0);
    for (uint32_t i = 0; i < PA_NODES; i++) {
        struct harness_node *one[] = { &pa_nodes[i].h };
        mrd_client_opts      opts;
        mrd_client_opts_init(&opts);
        opts.timeout_ms         = harness_ms(opts.timeout_ms);
        opts.attempt_timeout_ms = harness_ms(opts.attempt_timeout_ms);
        opts.region             = "a";
        assert_int_equal(
            harness_client_open(one, 1, &opts, &pa_nodes[i].client), MRD_OK);
    }
}

static uint64_t
pa_stat(const struct pa_node *n, const char *name)
{
    uint64_t value = 0;
    if (harness_node_stat(&n->h, name, &value) != 0) {
        fail_msg("STATS %s of node %u failed", name, n->id);
    }
    return value;
}

/* -------------------------------------------------------- topology -- */

/* Version 1 of cluster_id into pa_topo: nodes 1 and 2 with the harness
 * keys at their real ports, one region "a" of rf 2. */
static void
pa_topo_build(const uint8_t *cluster_id, const uint8_t *admin_pk)
{
    const char *why = NULL;
    uint32_t    index, id;

    topo_init(pa_topo, cluster_id, PA_SHARDS, admin_pk);
    assert_int_equal(
        topo_region_add(pa_topo, "a", PA_NODES, &index, &why), MRD_OK);
    for (uint32_t i = 0; i < PA_NODES; i++) {
        struct pa_node *n = &pa_nodes[i];
        uint8_t         pk[TOPO_KEY_SIZE], sk[TOPO_SECRET_KEY_SIZE];
        char            name[32];
        /* The key harness_node_start() gives node n->id (--key). */
        harness_node_keypair(n->id, pk, sk);
        sodium_memzero(sk, sizeof sk);
        snprintf(name, sizeof name, "node-%u", n->id);
        int rv = topo_node_add(pa_topo, name, index, n->url, pk, &id, &why);
        if (rv != MRD_OK) {
            fail_msg("topo_node_add %s: %s (%s)", name, mrd_errname(rv), why);
        }
        assert_int_equal(id, n->id);
    }
    pa_topo->version = 1; /* nobody saw the drafts */
}

/* Whether node `first` comes first in the region's placement of shard:
 * a client whose home region is "a" then sends its appends there. */
static bool
pa_first(uint32_t shard, uint32_t first)
{
    uint32_t ids[TOPO_RF_MAX];
    return topo_candidates(pa_topo, shard, 0, ids, TOPO_RF_MAX) > 0
        && ids[0] == first;
}

/* Version 1, signed with a new admin key and written to path. The
 * cluster id is drawn until each node comes first in some shard (with 4
 * shards, one draw in 8 fails that). */
static void
pa_topo_make(const char *path)
{
    uint8_t     admin_pk[TOPO_KEY_SIZE], admin_sk[TOPO_SECRET_KEY_SIZE];
    uint8_t     cluster_id[TOPO_CLUSTER_ID_SIZE];
    const char *why   = NULL;
    bool        found = false;

    assert_int_equal(crypto_sign_keypair(admin_pk, admin_sk), 0);
    pa_topo = malloc(sizeof *pa_topo);
    assert_non_null(pa_topo);
    for (int attempt = 0; attempt < 1000 && !found; attempt++) {
        bool one = false, two = false;
        randombytes_buf(cluster_id, sizeof cluster_id);
        pa_topo_build(cluster_id, admin_pk);
        for (uint32_t s = 0; s < PA_SHARDS; s++) {
            one = one || pa_first(s, 1);
            two = two || pa_first(s, 2);
        }
        found = one && two;
    }
    assert_true(found);
    proto_buf_init(&pa_signed, TOPO_SIGNED_SIZE_MAX);
    pa_signed_used = true;
    int rv         = topo_sign(pa_topo, admin_sk, &pa_signed, &why);
    sodium_memzero(admin_sk, sizeof admin_sk);
    if (rv != MRD_OK) {
        fail_msg("topo_sign: %s (%s)", mrd_errname(rv), why);
    }
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    bool ok = fwrite(pa_signed.data, 1, pa_signed.len, f) == pa_signed.len;
    ok      = fclose(f) == 0 && ok;
    assert_true(ok);
}

/* A stream name "<base>-<i>" whose shard node `first` comes first in, so
 * that a routing client sends its appends there. */
static void
pa_stream_pick(const char *base, uint32_t first, char *out, size_t size)
{
    for (uint32_t i = 0; i < 100000u; i++) {
        snprintf(out, size, "%s-%u", base, i);
        uint32_t shard = topo_shard_of(
            pa_topo->cluster_id, pa_topo->shard_count, out, strlen(out));
        if (pa_first(shard, first)) {
            return;
        }
    }
    fail_msg("no stream name for %s", base);
}

/* ---------------------------------------------------------- events -- */

/* Appends one event to stream on n, which must take it itself. */
static void
pa_append(struct pa_node *n, const char *stream)
{
    assert_int_equal(
        harness_append_on(n->client, n->id, stream, "peer-address"), 0);
}

/* The events of stream that n itself holds, counted in its shard logs. */
static uint64_t
pa_count(struct pa_node *n, const char *stream)
{
    uint64_t count = 0;
    if (harness_log_count(n->client, n->id, stream, &count) != 0) {
        fail_msg("counting %s on node %u", stream, n->id);
    }
    return count;
}

struct pa_want {
    struct pa_node *n;
    const char     *stream;
    uint64_t        count;
};

static bool
pa_has(void *arg)
{
    struct pa_want *w = arg;
    return pa_count(w->n, w->stream) >= w->count;
}

static void
pa_wait_count(struct pa_node *n, const char *stream, uint64_t count)
{
    struct pa_want w = { .n = n, .stream = stream, .count = count };
    if (!harness_wait_for(pa_has, &w, PA_TRIES, PA_POLL_MS)) {
        fail_msg("node %u holds %" PRIu64 " events of %s, want %" PRIu64, n->id,
            pa_count(n, stream), stream, count);
    }
}

/* stream never shows up on n, however long we watch. */
static void
pa_never(struct pa_node *n, const char *stream)
{
    uint32_t tries = harness_ms(PA_NEVER_MS) / PA_POLL_MS;
    for (uint32_t t = 0; t <= tries; t++) {
        uint64_t got = pa_count(n, stream);
        if (got != 0) {
            fail_msg("node %u got %" PRIu64 " events of %s with its link to "
                     "node 2 cut",
                n->id, got, stream);
        }
        harness_sleep_ms(PA_POLL_MS);
    }
}

/* --------------------------------------------------------- cleanup -- */

static int
pa_cleanup(void **state)
{
    pa_fwd_stop(&pa_fwd);
    for (uint32_t i = 0; i < PA_NODES; i++) {
        struct pa_node *n = &pa_nodes[i];
        mrd_client_close(n->client);
        n->client = NULL;
        harness_node_fini(&n->h);
    }
    if (pa_signed_used) {
        proto_buf_fini(&pa_signed);
        pa_signed_used = false;
    }
    free(pa_topo);
    pa_topo          = NULL;
    const char *keep = getenv("MRD_TEST_KEEP");
    if (pa_dir[0] != '\0' && (keep == NULL || strcmp(keep, "1") != 0)) {
        harness_rmrf(pa_dir);
    }
    pa_dir[0] = '\0';
    memset(pa_nodes, 0, sizeof pa_nodes);
    return harness_teardown(state);
}

/* ------------------------------------------------------------ test -- */

static void
test_peer_address_through_forwarder(void **state)
{
    char path[HARNESS_PATH_SIZE + 32], override[64];
    char from2[PA_NAME_SIZE], from1[PA_NAME_SIZE];
    char from2_cut[PA_NAME_SIZE], from1_cut[PA_NAME_SIZE];
    (void) state;

    pa_nodes_init(37);
    snprintf(path, sizeof path, "%s/topology-v1.signed", pa_dir);
    pa_topo_make(path);
    pa_stream_pick("from2", 2, from2, sizeof from2);
    pa_stream_pick("from1", 1, from1, sizeof from1);
    pa_stream_pick("from2-cut", 2, from2_cut, sizeof from2_cut);
    pa_stream_pick("from1-cut", 1, from1_cut, sizeof from1_cut);
    struct pa_node *one = pa_node(1), *two = pa_node(2);

    pa_fwd_start(&pa_fwd, two->h.port);
    snprintf(override, sizeof override, "2=tcp://127.0.0.1:%u",
        (unsigned) pa_fwd.port);
    printf("peer_address_test: node 1 reaches node 2 at %s (node 2 is at "
           "%s)\n",
        override + 2, two->url);
    const char *args2[] = { "--topology", path, NULL };
    const char *args1[]
        = { "--topology", path, "--peer-address", override, NULL };
    pa_node_start(two, args2);
    pa_node_start(one, args1);
    pa_clients_open();
    assert_true(harness_node_log_contains(
        &one->h, "a peer is dialed at its --peer-address"));
    assert_false(harness_node_log_contains(&two->h, "--peer-address"));

    /* 1. Node 1 pulls node 2's event through the forwarder; node 2 pulls
     * node 1's directly. */
    pa_append(two, from2);
    pa_wait_count(one, from2, 1);
    pa_append(one, from1);
    pa_wait_count(two, from1, 1);
    uint64_t up   = atomic_load(&pa_fwd.bytes_up);
    uint64_t down = atomic_load(&pa_fwd.bytes_down);
    printf("peer_address_test: forwarded %" PRIu64 " bytes to node 2, %" PRIu64
           " back, %" PRIu64 " connections\n",
        up, down, atomic_load(&pa_fwd.accepted));
    assert_true(up > 0);
    assert_true(down > 0);

    /* 2. The forwarder stops: node 1 no longer reaches node 2, node 2
     * still reaches node 1. The direct link is checked first: SWIM's acks
     * from node 1 to node 2 travel the cut link, so a few seconds on node
     * 2 marks node 1 DEAD and stops pulling from it too (see the top). */
    pa_fwd_stop(&pa_fwd);
    pa_append(one, from1_cut);
    pa_wait_count(two, from1_cut, 1);
    pa_append(two, from2_cut);
    assert_int_equal(pa_count(two, from2_cut), 1);
    pa_never(one, from2_cut);
    printf("peer_address_test: liveness changes: node 1 %" PRIu64
           ", node 2 %" PRIu64 "\n",
        pa_stat(one, "liveness_changes"), pa_stat(two, "liveness_changes"));
    assert_int_equal(pa_count(one, from2), 1); /* what it had, it keeps */
    assert_int_equal(pa_count(one, from1_cut), 1);
}

/* ------------------------------------------------------------ main -- */

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(
            test_peer_address_through_forwarder, pa_cleanup),
    };
    return cmocka_run_group_tests_name(
        "peer_address", tests, NULL, harness_teardown);
}
