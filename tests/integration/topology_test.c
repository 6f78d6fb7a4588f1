/*
 * topology_test.c: a cluster run from a signed topology, 3 regions x 2
 * nodes, one replica of each shard per region (docs/ARCHITECTURE.md,
 * "Replication", "Topology"; docs/OPERATIONS.md, "Keys and the signed
 * topology").
 *
 * The test is its own admin: it makes the admin key with libsodium and
 * puts the harness's key of each node id in the topology (the key the
 * harness starts that node with), reserves a port per node from the kernel,
 * builds version 1 with the topo.h builders (regions a, b, c with rf 1;
 * nodes 1..6, two per region) and signs it. The cluster id is drawn from the
 * seed until every node holds a shard under version 1 and the late node 7 wins
 * one under version 2; the 12 shared streams are named so that every shard has
 * one. Then:
 *   1. One writer thread per region, each with a client listing its
 *      region's nodes first and then the other four (and that region as
 *      its home region, for a client that routes), appends batches of
 *      1..3 events to the shared streams, each event with state ops
 *      (counter "n" += 1; on some a set add to "m" and an LWW set of
 *      "last"), and records every acknowledged dot. Then, bounded: every
 *      shard's replicas (topo_replicas, one per region) hold the same event
 *      set in their shard logs (read on a client of that node only), no
 *      dot twice, each origin's seqs increasing along each log, every
 *      acknowledged dot there and nothing that was not written; every
 *      stream reads the same on its replicas, in causal order, and its
 *      state is the same (n = events, the set of every member added, the
 *      LWW value of the highest (hlc, origin), the same causal context);
 *      every other node refuses the stream's INFO, READ and STATE with
 *      MRD_ENOTREPLICA (raw requests); a client on one of them only either
 *      reads the stream whole (routed by the topology) or gets
 *      MRD_ENOTREPLICA naming the replicas.
 *   2. A node that is a replica of some shards is SIGKILLed while the
 *      writers run, restarted with the same arguments while they run, and
 *      the checks of 1 pass again.
 *   3. Node 7 is added to region a (topo_node_add, a new key), version 2 is
 *      signed, node 7 starts with it, and it is pushed to one node only
 *      while the writers run. Bounded: every node has version 2 (TOPOLOGY
 *      and STATS topology_updates), and the checks of 1 pass under the
 *      version 2 placement: node 7 holds the shards it won with every
 *      event, and the node that held them before refuses their streams.
 *   4. Refused pushes: a valid newer version with a flipped byte (in the
 *      document, and in the signature) and one signed by another key are
 *      MRD_ECORRUPT; version 1 and version 2 again are MRD_EVERSION. Each
 *      is counted in rejected_topology, and nothing changes: every node
 *      keeps version 2, byte for byte, and the checks of 1 still pass.
 *   5. An append with MRD_ACK_GLOBAL n = 3 on a shard's region-a replica
 *      returns with 3 regions, and the event is on the other two replicas
 *      at once; MRD_ACK_REGION k = 2 with rf = 1 cannot be reached and is
 *      MRD_EDURABILITY with 1 replica (never a false success).
 *   6. A reader reads part of a stream written in all three regions with
 *      mrd_read_cursor on its region-a replica and goes on with the same
 *      cursor on its region-c replica, after more writes: every event once,
 *      no gap, each origin's events in order.
 *
 * Which node serves a check: the checker has one client per node, naming
 * only that node and its region as home. Log reads name no stream, so that
 * node serves them. Stream calls a routing client sends to the shard's
 * replica in the home region, which with rf 1 is that node when it is a
 * replica; every stream and cursor read is also checked to come from it
 * (each event's log seq must be the one in that node's own shard log), so
 * a check can never compare a node with itself. Appends in 5 and 6 are
 * checked to be taken by the node meant (the dot's origin).
 *
 * An idempotency key reaches another node only with its append
 * (docs/ARCHITECTURE.md, "Idempotency across nodes"): an append in flight
 * on the node killed in 2 may have been committed there and, before it
 * replicated, written again on the next node. Such a twin (same writer and
 * index, the killed node's dot, never acknowledged) is allowed and counted;
 * anything else unacknowledged fails the test.
 *
 * The seed is printed; MRD_TEST_SEED replays the choices (not the thread
 * timing). Waits and run times scale with MRD_TEST_TIMEOUT_MULTIPLIER.
 */
#include <inttypes.h>
#include <pthread.h>
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
#include <time.h>

#include <cmocka.h>
#include <sodium.h>

#include "harness.h"
#include "proto.h"
#include "topo.h"

#include <nng/nng.h>

#include "linkio.h"

#define TT_REGIONS 3u
#define TT_BASE_NODES 6u /* two per region, ids 1..6 */
#define TT_NODES 7u /* and node 7, added in 3 */
#define TT_LATE_REGION 0u /* node 7 joins region a */
#define TT_KILLED 3u /* the node killed in 2 (region b) */
#define TT_PUSHED 1u /* the node version 2 is pushed to */
#define TT_SHARDS 8u
#define TT_STREAMS 12u /* shared streams, stream j in shard j % 8 */
#define TT_WRITERS TT_REGIONS
#define TT_BATCH_MAX 3u
/* Events one writer may record; it stops early when full. */
#define TT_EVENTS_MAX 50000u
#define TT_F_MEMBER 1u /* added "w<writer>-<k>" to set "m" */
#define TT_F_LWW 2u /* set "last" to "w<writer>-<k>" */
/* Convergence: polls 50 ms apart, up to 30 s (scaled). */
#define TT_POLL_MS 50u
#define TT_CONVERGE_TRIES 600u
#define TT_NAME_SIZE 32u

/* One acknowledged event of a writer; its index is the writer's k. */
struct tt_rec {
    mrd_dot  dot;
    uint32_t stream;
    uint32_t flags;
};

struct tt_writer {
    unsigned       id; /* region index + 1 */
    mrd_client    *client; /* its region's nodes first, then the others */
    uint32_t       rng;
    _Atomic bool   stop;
    pthread_t      thread;
    bool           running;
    struct tt_rec *recs;
    uint32_t       count; /* acknowledged events */
    uint32_t       appends, retries;
    int            fatal;
    char           fatal_why[320];
};

struct tt_node {
    struct harness_node h;
    uint32_t            id;
    uint32_t            region;
    char                url[HARNESS_URL_SIZE];
    uint8_t             pk[TOPO_KEY_SIZE];
    const char         *topo_path; /* its --topology */
    mrd_client         *client; /* the checker's, on this node only */
    struct lk_sock     *raw; /* refusals, on this node only */
    bool                up;
};

/* One event as a shard log or a stream holds it. */
struct tt_ev {
    mrd_dot  dot;
    uint64_t hlc;
    uint64_t log_seq; /* in the shard log of the node that served it */
    uint32_t stream;
    uint32_t w, k, flags;
    bool     extra; /* an unacknowledged twin (see the top) */
};

struct tt_shard_log {
    struct tt_ev *ev; /* sorted by dot */
    size_t        count;
};

static struct tt_node   tt_nodes[TT_NODES];
static struct tt_writer tt_writers[TT_WRITERS];
static char             tt_streams[TT_STREAMS][TT_NAME_SIZE];
static uint32_t         tt_stream_shard[TT_STREAMS];
static const char      *tt_region_names[TT_REGIONS] = { "a", "b", "c" };
static uint8_t          tt_admin_pk[TOPO_KEY_SIZE];
static uint8_t          tt_admin_sk[TOPO_SECRET_KEY_SIZE];
static struct topo     *tt_v1, *tt_v2;
static struct proto_buf tt_signed_v1, tt_signed_v2;
static char             tt_dir[HARNESS_PATH_SIZE];
static char             tt_v1_path[HARNESS_PATH_SIZE + 32];
static char             tt_v2_path[HARNESS_PATH_SIZE + 32];
/* The node whose in-flight appends may have twins (0: none yet). */
static uint32_t tt_extra_origin;

static long
tt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long) ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void
tt_run_for(uint32_t ms)
{
    harness_sleep_ms(harness_ms(ms));
}

static struct tt_node *
tt_node(uint32_t id)
{
    assert_true(id >= 1 && id <= TT_NODES);
    return &tt_nodes[id - 1];
}

static int
tt_dot_cmp(const void *a, const void *b)
{
    const struct tt_ev *x = a, *y = b;
    if (x->dot.origin != y->dot.origin) {
        return x->dot.origin < y->dot.origin ? -1 : 1;
    }
    if (x->dot.seq != y->dot.seq) {
        return x->dot.seq < y->dot.seq ? -1 : 1;
    }
    return 0;
}

static int
tt_strcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static bool
tt_transient(int rv)
{
    /* MRD_ENOTREPLICA: every address refused within the deadline, which a
     * topology change in flight may cause; nothing was written. */
    return rv == MRD_ETIMEDOUT || rv == MRD_EUNAVAIL || rv == MRD_ECLOSED
        || rv == MRD_EBUSY || rv == MRD_ENOTREPLICA;
}

/* region: the client's home region (NULL: none). A client that routes by
 * the topology sends a stream call to the shard's replica there first;
 * with rf 1 that is the one replica of the region. */
static void
tt_client_opts(mrd_client_opts *opts, const char *region)
{
    mrd_client_opts_init(opts);
    opts->timeout_ms         = harness_ms(10000);
    opts->attempt_timeout_ms = harness_ms(4000);
    opts->region             = region;
}

/* ------------------------------------------------------------ topology -- */

/* Names the shared streams so that stream j hashes to shard j % shards. */
static bool
tt_streams_pick(const uint8_t cluster_id[TOPO_CLUSTER_ID_SIZE])
{
    uint32_t i = 0;
    for (uint32_t j = 0; j < TT_STREAMS; j++) {
        for (;; i++) {
            char name[TT_NAME_SIZE];
            if (i > 100000u) {
                return false;
            }
            snprintf(name, sizeof(name), "tt-%u", i);
            if (topo_shard_of(cluster_id, TT_SHARDS, name, strlen(name))
                == j % TT_SHARDS) {
                memcpy(tt_streams[j], name, sizeof(name));
                tt_stream_shard[j] = j % TT_SHARDS;
                i++;
                break;
            }
        }
    }
    return true;
}

/* Version 1 (nodes 1..6) and version 2 (and node 7) for this cluster id. */
static void
tt_topo_build(const uint8_t cluster_id[TOPO_CLUSTER_ID_SIZE])
{
    const char *why = NULL;
    uint32_t    index, id;

    topo_init(tt_v1, cluster_id, TT_SHARDS, tt_admin_pk);
    for (uint32_t r = 0; r < TT_REGIONS; r++) {
        assert_int_equal(
            topo_region_add(tt_v1, tt_region_names[r], 1, &index, &why),
            MRD_OK);
        assert_int_equal(index, r);
    }
    for (uint32_t i = 0; i < TT_BASE_NODES; i++) {
        char name[TT_NAME_SIZE];
        snprintf(name, sizeof(name), "node-%u", i + 1);
        int rv = topo_node_add(tt_v1, name, tt_nodes[i].region, tt_nodes[i].url,
            tt_nodes[i].pk, &id, &why);
        if (rv != MRD_OK) {
            fail_msg("topo_node_add %s: %s (%s)", name, mrd_errname(rv), why);
        }
        assert_int_equal(id, i + 1);
    }
    tt_v1->version = 1; /* nobody saw the drafts */
    memcpy(tt_v2, tt_v1, sizeof(*tt_v2));
    const struct tt_node *late = &tt_nodes[TT_NODES - 1];
    assert_int_equal(topo_node_add(tt_v2, "node-7", late->region, late->url,
                         late->pk, &id, &why),
        MRD_OK);
    assert_int_equal(id, TT_NODES);
    assert_int_equal(tt_v2->version, 2);
}

/* True when every node of t holds at least one shard. */
static bool
tt_topo_every_node_holds(const struct topo *t)
{
    for (uint32_t i = 0; i < t->node_count; i++) {
        bool holds = false;
        for (uint32_t s = 0; s < TT_SHARDS && !holds; s++) {
            holds = topo_is_replica(t, s, t->nodes[i].id);
        }
        if (!holds) {
            return false;
        }
    }
    return true;
}

static void
tt_topo_sign(const struct topo *t, const uint8_t *sk, struct proto_buf *buf)
{
    const char *why = NULL;
    proto_buf_init(buf, TOPO_SIGNED_SIZE_MAX);
    int rv = topo_sign(t, sk, buf, &why);
    if (rv != MRD_OK) {
        fail_msg("topo_sign: %s (%s)", mrd_errname(rv), why);
    }
}

static void
tt_file_write(const char *path, const struct proto_buf *buf)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf->data, 1, buf->len, f), buf->len);
    assert_int_equal(fclose(f), 0);
}

/* Keys, ports, a cluster id that places a shard on every node, and the two
 * signed versions on disk. */
static void
tt_cluster_make(uint32_t *rng)
{
    assert_true(sodium_init() >= 0);
    assert_int_equal(crypto_sign_keypair(tt_admin_pk, tt_admin_sk), 0);
    for (uint32_t i = 0; i < TT_NODES; i++) {
        struct tt_node *n = &tt_nodes[i];
        uint8_t         sk[TOPO_SECRET_KEY_SIZE];
        assert_int_equal(harness_node_init(&n->h, i + 1), 0);
        n->id     = i + 1;
        n->region = i < TT_BASE_NODES ? i / 2 : TT_LATE_REGION;
        /* A port the kernel gave out: the topology names it before the
         * node listens on it. */
        bool distinct = false;
        while (!distinct) {
            assert_int_equal(harness_dead_url(n->url, sizeof(n->url)), 0);
            distinct = true;
            for (uint32_t j = 0; j < i; j++) {
                distinct = distinct && strcmp(tt_nodes[j].url, n->url) != 0;
            }
        }
        const char *colon = strrchr(n->url, ':');
        assert_non_null(colon);
        n->h.port = (uint16_t) strtoul(colon + 1, NULL, 10);
        assert_true(n->h.port > 0);
        /* The node's identity: the key harness_node_start() gives node
         * n->id (--key); a node whose key is not its topology entry's
         * refuses to start. */
        harness_node_keypair(n->id, n->pk, sk);
        sodium_memzero(sk, sizeof(sk));
    }
    tt_v1 = malloc(sizeof(*tt_v1));
    tt_v2 = malloc(sizeof(*tt_v2));
    assert_non_null(tt_v1);
    assert_non_null(tt_v2);
    uint8_t cluster_id[TOPO_CLUSTER_ID_SIZE];
    bool    found = false;
    for (int attempt = 0; attempt < 1000 && !found; attempt++) {
        for (uint32_t b = 0; b < TOPO_CLUSTER_ID_SIZE; b++) {
            cluster_id[b] = (uint8_t) harness_rand32(rng);
        }
        if (!tt_streams_pick(cluster_id)) {
            continue;
        }
        tt_topo_build(cluster_id);
        found = tt_topo_every_node_holds(tt_v1)
            && tt_topo_every_node_holds(tt_v2);
    }
    assert_true(found);
    tt_topo_sign(tt_v1, tt_admin_sk, &tt_signed_v1);
    tt_topo_sign(tt_v2, tt_admin_sk, &tt_signed_v2);
    assert_int_equal(
        harness_tmpdir_make("meridian-topotest-", tt_dir, sizeof(tt_dir)), 0);
    snprintf(tt_v1_path, sizeof(tt_v1_path), "%s/topology-v1.signed", tt_dir);
    snprintf(tt_v2_path, sizeof(tt_v2_path), "%s/topology-v2.signed", tt_dir);
    tt_file_write(tt_v1_path, &tt_signed_v1);
    tt_file_write(tt_v2_path, &tt_signed_v2);
    for (uint32_t s = 0; s < TT_SHARDS; s++) {
        printf("topology_test: shard %u:", s);
        for (uint32_t r = 0; r < TT_REGIONS; r++) {
            uint32_t a[TOPO_RF_MAX], b[TOPO_RF_MAX];
            assert_int_equal(topo_replicas(tt_v1, s, r, a, TOPO_RF_MAX), 1);
            assert_int_equal(topo_replicas(tt_v2, s, r, b, TOPO_RF_MAX), 1);
            printf(" %s: node %u", tt_region_names[r], a[0]);
            if (b[0] != a[0]) {
                printf(" (node %u from version 2)", b[0]);
            }
        }
        printf("\n");
    }
}

/* The shard's replicas in every region, in region order. */
static uint32_t
tt_replicas(const struct topo *t, uint32_t shard, uint32_t *ids)
{
    uint32_t count = 0;
    for (uint32_t r = 0; r < t->region_count; r++) {
        count += topo_replicas(t, shard, r, ids + count, TOPO_RF_MAX);
    }
    return count;
}

static bool
tt_is_one_of(uint32_t id, const uint32_t *ids, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        if (ids[i] == id) {
            return true;
        }
    }
    return false;
}

/* --------------------------------------------------------------- nodes -- */

static void
tt_node_start(struct tt_node *n, const char *topo_path)
{
    const char *args[] = { "--topology", topo_path, NULL };
    n->topo_path       = topo_path;
    if (harness_node_start(&n->h, args) != 0) {
        fail_msg("node %u did not start (log %s)", n->id, n->h.log_path);
    }
    assert_string_equal(n->h.url, n->url);
    n->up = true;
    if (n->client == NULL) {
        struct harness_node *one[] = { &n->h };
        mrd_client_opts      opts;
        tt_client_opts(&opts, tt_region_names[n->region]);
        assert_int_equal(harness_client_open(one, 1, &opts, &n->client), 0);
    }
}

/* One raw request on the node's own secure dialer (as the harness's
 * admin); returns the reply status and copies the node's words into
 * detail. The reply is freed unless msg_out takes it. The dialer is left
 * to process exit: NNG 1.5.2's nng_close() can hang after a dropped
 * connection. */
static uint32_t
tt_raw(struct tt_node *n, struct proto_buf *req, char *detail,
    size_t detail_size, nng_msg **msg_out)
{
    struct proto_frame frame;
    const char        *why = NULL;
    nng_msg           *msg = NULL;

    if (n->raw == NULL) {
        assert_int_equal(harness_lk_dial(n->url, &n->raw), 0);
    }
    assert_int_equal(proto_buf_status(req), MRD_OK);
    int rv
        = harness_lk_call(n->raw, req->data, req->len, &msg, harness_ms(10000));
    proto_buf_fini(req);
    if (rv != 0) {
        char refusal[256];
        lk_refusal(n->raw, refusal, sizeof(refusal));
        fail_msg("node %u: no reply on the secure link (%s)", n->id, refusal);
    }
    assert_int_equal(
        proto_reply_open(nng_msg_body(msg), nng_msg_len(msg), &frame, &why),
        MRD_OK);
    if (detail != NULL) {
        detail[0] = '\0';
    }
    if (frame.status != MRD_OK && detail != NULL) {
        struct proto_str text        = { NULL, 0 };
        bool             has_version = false;
        int64_t          version     = 0;
        struct proto_rd  body        = frame.body;
        if (proto_error_decode(&body, &text, &has_version, &version, &why)
            == MRD_OK) {
            snprintf(detail, detail_size, "%.*s", (int) text.len, text.ptr);
        }
    }
    if (msg_out != NULL && frame.status == MRD_OK) {
        *msg_out = msg;
    } else {
        if (msg_out != NULL) {
            *msg_out = NULL;
        }
        nng_msg_free(msg);
    }
    return frame.status;
}

static uint64_t
tt_stat(struct tt_node *n, const char *name)
{
    uint64_t value = 0;
    assert_int_equal(harness_node_stat(&n->h, name, &value), 0);
    return value;
}

/* A node that is not a replica of the stream's shard refuses INFO, READ
 * and STATE with MRD_ENOTREPLICA, saying who the replicas are. */
static void
tt_check_refuses(struct tt_node *n, const char *stream)
{
    struct proto_buf req;
    char             detail[512];
    struct proto_str name = { stream, (uint32_t) strlen(stream) };
    uint32_t         st;

    proto_buf_init(&req, 4096);
    assert_int_equal(proto_info_req_encode(&req, name.ptr, name.len), MRD_OK);
    st = tt_raw(n, &req, detail, sizeof(detail), NULL);
    if (st != MRD_ENOTREPLICA || strstr(detail, "replica") == NULL) {
        fail_msg("node %u is not a replica of %s's shard but answered INFO "
                 "with %s ('%s')",
            n->id, stream, mrd_errname((int) st), detail);
    }
    proto_buf_init(&req, 4096);
    struct proto_read_req read
        = { .stream = name, .from = 0, .direction = MRD_FORWARD, .count = 10 };
    assert_int_equal(proto_read_req_encode(&req, &read), MRD_OK);
    st = tt_raw(n, &req, detail, sizeof(detail), NULL);
    if (st != MRD_ENOTREPLICA) {
        fail_msg("node %u is not a replica of %s's shard but answered READ "
                 "with %s ('%s')",
            n->id, stream, mrd_errname((int) st), detail);
    }
    proto_buf_init(&req, 4096);
    struct proto_state_req state = { .stream = name };
    assert_int_equal(proto_state_req_encode(&req, &state), MRD_OK);
    st = tt_raw(n, &req, detail, sizeof(detail), NULL);
    if (st != MRD_ENOTREPLICA) {
        fail_msg("node %u is not a replica of %s's shard but answered STATE "
                 "with %s ('%s')",
            n->id, stream, mrd_errname((int) st), detail);
    }
}

/* ------------------------------------------------------------- writers -- */

static void
tt_writer_fail(struct tt_writer *w, int rv, const char *what)
{
    w->fatal = rv != MRD_OK ? rv : MRD_EINTERNAL;
    snprintf(w->fatal_why, sizeof(w->fatal_why), "writer %u: %s: %s (%s)",
        w->id, what, mrd_errname(rv), mrd_errdetail());
}

/* Appends with one idempotency key until acknowledged or out of time. */
static int
tt_append_retry(struct tt_writer *w, const char *stream,
    const mrd_event_in *events, size_t n, const mrd_append_opts *opts,
    mrd_append_result *res)
{
    long start = tt_now_ms();
    int  rv;

    for (;;) {
        rv = mrd_append(w->client, stream, events, n, opts, res);
        if (!tt_transient(rv)
            || tt_now_ms() - start > (long) harness_ms(20000)) {
            return rv;
        }
        w->retries++;
        harness_sleep_ms(10);
    }
}

static void *
tt_writer_main(void *arg)
{
    struct tt_writer *w = arg;
    char              data[TT_BATCH_MAX][48];
    char              member[TT_BATCH_MAX][24];
    mrd_event_in      events[TT_BATCH_MAX];
    mrd_op            ops[TT_BATCH_MAX][3];
    const char       *count_path[] = { "n" };
    const char       *set_path[]   = { "m" };
    const char       *lww_path[]   = { "last" };
    char              key[48];

    while (!atomic_load(&w->stop) && w->count + TT_BATCH_MAX <= TT_EVENTS_MAX) {
        uint32_t stream = harness_rand32(&w->rng) % TT_STREAMS;
        uint32_t n      = 1 + harness_rand32(&w->rng) % TT_BATCH_MAX;
        uint32_t flags[TT_BATCH_MAX];
        for (uint32_t i = 0; i < n; i++) {
            uint32_t k = w->count + i, r = harness_rand32(&w->rng);
            size_t   nops = 0;
            flags[i]      = (r % 3 == 0 ? TT_F_MEMBER : 0)
                | ((r / 3) % 4 == 0 ? TT_F_LWW : 0);
            snprintf(data[i], sizeof(data[i]), "w%u k%u f%u", w->id, k,
                (unsigned) flags[i]);
            snprintf(member[i], sizeof(member[i]), "w%u-%u", w->id, k);
            ops[i][nops++] = (mrd_op) { .path = count_path,
                .path_len                     = 1,
                .type                         = MRD_STATE_COUNTER,
                .kind                         = MRD_OP_INC,
                .delta                        = 1 };
            if (flags[i] & TT_F_MEMBER) {
                ops[i][nops++] = (mrd_op) { .path = set_path,
                    .path_len                     = 1,
                    .type                         = MRD_STATE_SET,
                    .kind                         = MRD_OP_ADD,
                    .value                        = member[i],
                    .value_size                   = strlen(member[i]) };
            }
            if (flags[i] & TT_F_LWW) {
                ops[i][nops++] = (mrd_op) { .path = lww_path,
                    .path_len                     = 1,
                    .type                         = MRD_STATE_LWW,
                    .kind                         = MRD_OP_SET,
                    .value                        = member[i],
                    .value_size                   = strlen(member[i]) };
            }
            events[i] = (mrd_event_in) { .type = "TopoTested",
                .data                          = data[i],
                .data_size                     = strlen(data[i]),
                .ops                           = ops[i],
                .op_count                      = nops };
        }
        snprintf(key, sizeof(key), "tt-%u-%u", w->id, w->count);
        mrd_append_opts opts;
        mrd_append_opts_init(&opts);
        opts.idempotency_key      = key;
        opts.idempotency_key_size = strlen(key);
        mrd_append_result res;
        int rv = tt_append_retry(w, tt_streams[stream], events, n, &opts, &res);
        if (rv != MRD_OK) {
            tt_writer_fail(w, rv, "an append");
            return NULL;
        }
        if (res.count != n || res.first_dot.origin < 1
            || res.first_dot.origin > TT_NODES || res.first_dot.seq == 0) {
            tt_writer_fail(w, MRD_EINTERNAL, "unexpected append result");
            return NULL;
        }
        for (uint32_t i = 0; i < n; i++) {
            w->recs[w->count + i] = (struct tt_rec) {
                .dot    = { res.first_dot.origin, res.first_dot.seq + i },
                .stream = stream,
                .flags  = flags[i],
            };
        }
        w->count += n;
        w->appends++;
    }
    return NULL;
}

static void
tt_writers_start(void)
{
    for (unsigned i = 0; i < TT_WRITERS; i++) {
        struct tt_writer *w = &tt_writers[i];
        atomic_store(&w->stop, false);
        assert_int_equal(
            pthread_create(&w->thread, NULL, tt_writer_main, w), 0);
        w->running = true;
    }
}

/* Stops and joins every running writer, then fails on any writer's error
 * (after joining all, so none outlives a failure). */
static void
tt_writers_join(const char *what)
{
    for (unsigned i = 0; i < TT_WRITERS; i++) {
        atomic_store(&tt_writers[i].stop, true);
    }
    for (unsigned i = 0; i < TT_WRITERS; i++) {
        struct tt_writer *w = &tt_writers[i];
        if (w->running) {
            pthread_join(w->thread, NULL);
            w->running = false;
        }
    }
    for (unsigned i = 0; i < TT_WRITERS; i++) {
        struct tt_writer *w = &tt_writers[i];
        printf("topology_test: %s: writer %u (region %s): %u events in %u "
               "appends, %u retries\n",
            what, w->id, tt_region_names[w->id - 1], w->count, w->appends,
            w->retries);
        if (w->fatal != MRD_OK) {
            fail_msg("%s: %s", what, w->fatal_why);
        }
        assert_true(w->count > 0);
    }
}

static void
tt_writers_open(uint32_t seed)
{
    for (unsigned i = 0; i < TT_WRITERS; i++) {
        struct tt_writer *w = &tt_writers[i];
        const char       *urls[TT_BASE_NODES];
        size_t            count = 0;
        memset(w, 0, sizeof(*w));
        w->id   = i + 1;
        w->rng  = (seed + (i + 1) * 7919u) | 1u;
        w->recs = calloc(TT_EVENTS_MAX, sizeof(struct tt_rec));
        assert_non_null(w->recs);
        for (unsigned pass = 0; pass < 2; pass++) {
            for (unsigned j = 0; j < TT_BASE_NODES; j++) {
                if ((tt_nodes[j].region == i) == (pass == 0)) {
                    urls[count++] = tt_nodes[j].url;
                }
            }
        }
        mrd_client_opts opts;
        tt_client_opts(&opts, tt_region_names[i]);
        assert_int_equal(
            harness_client_open_urls(urls, count, &opts, &w->client), MRD_OK);
    }
}

/* -------------------------------------------------------- convergence -- */

struct tt_wait {
    const struct topo *t;
    uint64_t           expected[TT_STREAMS]; /* acknowledged events */
};

static void
tt_expected(struct tt_wait *wait, const struct topo *t)
{
    memset(wait, 0, sizeof(*wait));
    wait->t = t;
    for (unsigned w = 0; w < TT_WRITERS; w++) {
        for (uint32_t k = 0; k < tt_writers[w].count; k++) {
            wait->expected[tt_writers[w].recs[k].stream]++;
        }
    }
}

/* Cheap: every replica of every stream holds at least its acknowledged
 * count, and its replicas agree on the count. */
static bool
tt_counts_converged(void *arg)
{
    const struct tt_wait *wait = arg;
    for (uint32_t s = 0; s < TT_STREAMS; s++) {
        uint32_t ids[TT_REGIONS * TOPO_RF_MAX];
        uint32_t n     = tt_replicas(wait->t, tt_stream_shard[s], ids);
        uint64_t first = 0;
        for (uint32_t i = 0; i < n; i++) {
            mrd_stream_info info;
            if (mrd_stream_info_get(
                    tt_node(ids[i])->client, tt_streams[s], &info)
                    != MRD_OK
                || info.count < wait->expected[s]
                || (i > 0 && info.count != first)) {
                return false;
            }
            first = info.count;
        }
    }
    return true;
}

/* Parses an event of ours: "w<writer> k<k> f<flags>" in a shared stream. */
static void
tt_ev_parse(uint32_t node, const mrd_event *e, struct tt_ev *out)
{
    char     buf[64];
    unsigned w, k, flags;

    if (e->data_size >= sizeof(buf)) {
        fail_msg("node %u: event %" PRIu64 ":%" PRIu64 " has %zu bytes", node,
            e->dot.origin, e->dot.seq, e->data_size);
    }
    memcpy(buf, e->data, e->data_size);
    buf[e->data_size] = '\0';
    if (sscanf(buf, "w%u k%u f%u", &w, &k, &flags) != 3 || w < 1
        || w > TT_WRITERS) {
        fail_msg("node %u: event %" PRIu64 ":%" PRIu64 " has data '%s'", node,
            e->dot.origin, e->dot.seq, buf);
    }
    uint32_t stream = TT_STREAMS;
    for (uint32_t s = 0; s < TT_STREAMS; s++) {
        if (strcmp(e->stream, tt_streams[s]) == 0) {
            stream = s;
        }
    }
    if (stream == TT_STREAMS) {
        fail_msg("node %u: event '%s' of an unknown stream '%s'", node, buf,
            e->stream);
    }
    *out = (struct tt_ev) { .dot = e->dot,
        .hlc                     = e->hlc,
        .log_seq                 = e->log_seq,
        .stream                  = stream,
        .w                       = w,
        .k                       = k,
        .flags                   = flags };
}

/* Reads a whole shard log of a node, on its own client: each origin's seqs
 * increase along it, log seqs increase, every event is of a stream of this
 * shard. Returns the events sorted by dot, no dot twice. */
static struct tt_shard_log
tt_read_log(struct tt_node *n, uint32_t shard)
{
    struct tt_shard_log log   = { NULL, 0 };
    size_t              cap   = 0;
    uint64_t            after = 0, last_log_seq = 0;
    uint64_t            last_seq[TT_NODES + 1] = { 0 };

    for (;;) {
        mrd_events *batch;
        int         rv = mrd_read_log(n->client, shard, after, 1000, &batch);
        if (rv != MRD_OK) {
            fail_msg("node %u: read_log shard %u after %" PRIu64 ": %s (%s)",
                n->id, shard, after, mrd_errname(rv), mrd_errdetail());
        }
        size_t count = mrd_events_count(batch);
        for (size_t j = 0; j < count; j++) {
            const mrd_event *e = mrd_events_at(batch, j);
            if (log.count == cap) {
                cap    = cap == 0 ? 1024 : cap * 2;
                log.ev = realloc(log.ev, cap * sizeof(*log.ev));
                assert_non_null(log.ev);
            }
            struct tt_ev *ev = &log.ev[log.count++];
            tt_ev_parse(n->id, e, ev);
            if (e->log_seq <= last_log_seq) {
                fail_msg("node %u shard %u: log seq %" PRIu64 " after %" PRIu64,
                    n->id, shard, e->log_seq, last_log_seq);
            }
            last_log_seq = e->log_seq;
            if (e->dot.origin < 1 || e->dot.origin > TT_NODES) {
                fail_msg("node %u shard %u: origin %" PRIu64, n->id, shard,
                    e->dot.origin);
            }
            if (e->dot.seq <= last_seq[e->dot.origin]) {
                fail_msg("node %u shard %u: origin %" PRIu64 " seq %" PRIu64
                         " after seq %" PRIu64 " in the log",
                    n->id, shard, e->dot.origin, e->dot.seq,
                    last_seq[e->dot.origin]);
            }
            last_seq[e->dot.origin] = e->dot.seq;
            if (tt_stream_shard[ev->stream] != shard) {
                fail_msg("node %u: %s (shard %u) in shard %u's log", n->id,
                    e->stream, tt_stream_shard[ev->stream], shard);
            }
        }
        if (count > 0) {
            after = mrd_events_next(batch);
        }
        mrd_events_free(batch);
        if (count == 0) {
            break;
        }
    }
    if (log.count > 0) {
        qsort(log.ev, log.count, sizeof(*log.ev), tt_dot_cmp);
    }
    for (size_t i = 1; i < log.count; i++) {
        if (tt_dot_cmp(&log.ev[i - 1], &log.ev[i]) == 0) {
            fail_msg("node %u shard %u: dot %" PRIu64 ":%" PRIu64 " twice",
                n->id, shard, log.ev[i].dot.origin, log.ev[i].dot.seq);
        }
    }
    return log;
}

static struct tt_ev *
tt_log_find(const struct tt_shard_log *log, mrd_dot dot)
{
    struct tt_ev key = { .dot = dot };
    return log->count > 0
        ? bsearch(&key, log->ev, log->count, sizeof(*log->ev), tt_dot_cmp)
        : NULL;
}

/* The reference log of a shard against the writers' records: every event
 * acknowledged (or an allowed twin, see the top), every acknowledged event
 * of the shard there. Returns the twins. */
static size_t
tt_log_vs_records(struct tt_shard_log *log, uint32_t node, uint32_t shard)
{
    size_t extras = 0;
    for (size_t i = 0; i < log->count; i++) {
        struct tt_ev           *e = &log->ev[i];
        const struct tt_writer *w = &tt_writers[e->w - 1];
        const struct tt_rec    *r = e->k < w->count ? &w->recs[e->k] : NULL;
        if (r == NULL || r->stream != e->stream || r->flags != e->flags) {
            fail_msg("node %u shard %u: event w%u k%u (dot %" PRIu64 ":%" PRIu64
                     ") was never written",
                node, shard, e->w, e->k, e->dot.origin, e->dot.seq);
        }
        if (r->dot.origin == e->dot.origin && r->dot.seq == e->dot.seq) {
            continue;
        }
        if (e->dot.origin != tt_extra_origin) {
            fail_msg("node %u shard %u: event w%u k%u has dot %" PRIu64
                     ":%" PRIu64 " but was acknowledged as %" PRIu64 ":%" PRIu64
                     " (written twice, and not by a killed node)",
                node, shard, e->w, e->k, e->dot.origin, e->dot.seq,
                r->dot.origin, r->dot.seq);
        }
        e->extra = true;
        extras++;
        printf("topology_test: shard %u: w%u k%u on %s written twice: dot "
               "%" PRIu64 ":%" PRIu64 " (killed node, unacknowledged) and "
               "%" PRIu64 ":%" PRIu64 " (acknowledged)\n",
            shard, e->w, e->k, tt_streams[e->stream], e->dot.origin, e->dot.seq,
            r->dot.origin, r->dot.seq);
    }
    for (unsigned wi = 0; wi < TT_WRITERS; wi++) {
        const struct tt_writer *w = &tt_writers[wi];
        for (uint32_t k = 0; k < w->count; k++) {
            const struct tt_rec *r = &w->recs[k];
            if (tt_stream_shard[r->stream] == shard
                && tt_log_find(log, r->dot) == NULL) {
                fail_msg("node %u shard %u: acknowledged event w%u k%u (dot "
                         "%" PRIu64 ":%" PRIu64 " on %s) missing",
                    node, shard, w->id, k, r->dot.origin, r->dot.seq,
                    tt_streams[r->stream]);
            }
        }
    }
    return extras;
}

/* What one stream's state must be, from a read of the stream. */
struct tt_want {
    uint64_t count;
    uint64_t ctx[TT_NODES + 1]; /* highest seq per origin */
    char   **members; /* sorted, distinct */
    size_t   member_count;
    uint64_t lww_hlc;
    uint64_t lww_origin;
    char     lww[24];
};

static void
tt_want_free(struct tt_want *want)
{
    for (size_t i = 0; i < want->member_count; i++) {
        free(want->members[i]);
    }
    free(want->members);
    memset(want, 0, sizeof(*want));
}

/* Reads stream s on node n: positions 0..count-1, each event once, each
 * origin's in seq order, exactly the events of s in n's own shard log
 * (read with mrd_read_log on n only; the same set as every replica's), each
 * with the log seq it has there: so n itself served the read, whatever
 * the client's routing. Fills want. */
static void
tt_read_stream(struct tt_node *n, uint32_t s, const struct tt_shard_log *ref,
    struct tt_want *want)
{
    uint64_t pos                    = 0;
    uint64_t last_seq[TT_NODES + 1] = { 0 };
    size_t   cap                    = 0;

    memset(want, 0, sizeof(*want));
    for (;;) {
        mrd_events *batch;
        int         rv = mrd_read(
                    n->client, tt_streams[s], pos, MRD_FORWARD, 1000, &batch);
        if (rv != MRD_OK) {
            fail_msg("node %u: read %s: %s (%s)", n->id, tt_streams[s],
                mrd_errname(rv), mrd_errdetail());
        }
        size_t count = mrd_events_count(batch);
        for (size_t j = 0; j < count; j++) {
            const mrd_event *e = mrd_events_at(batch, j);
            struct tt_ev     ev;
            tt_ev_parse(n->id, e, &ev);
            assert_int_equal(e->position, pos);
            const struct tt_ev *r = tt_log_find(ref, e->dot);
            if (ev.stream != s || r == NULL || r->stream != s
                || r->hlc != e->hlc) {
                fail_msg("node %u: %s position %" PRIu64 " holds dot %" PRIu64
                         ":%" PRIu64 " of %s, not that of its shard log",
                    n->id, tt_streams[s], pos, e->dot.origin, e->dot.seq,
                    e->stream);
            }
            if (r->log_seq != e->log_seq) {
                fail_msg("a read of %s on a client of node %u returned dot "
                         "%" PRIu64 ":%" PRIu64 " at log seq %" PRIu64
                         ", which is %" PRIu64 " in node %u's shard log: "
                         "another node served the read",
                    tt_streams[s], n->id, e->dot.origin, e->dot.seq, e->log_seq,
                    r->log_seq, n->id);
            }
            if (e->dot.seq <= last_seq[e->dot.origin]) {
                fail_msg("node %u stream %s: origin %" PRIu64 " seq %" PRIu64
                         " after %" PRIu64 " (causal order)",
                    n->id, tt_streams[s], e->dot.origin, e->dot.seq,
                    last_seq[e->dot.origin]);
            }
            last_seq[e->dot.origin]  = e->dot.seq;
            want->ctx[e->dot.origin] = e->dot.seq;
            if (ev.flags & TT_F_MEMBER) {
                if (want->member_count == cap) {
                    cap = cap == 0 ? 64 : cap * 2;
                    want->members
                        = realloc(want->members, cap * sizeof(*want->members));
                    assert_non_null(want->members);
                }
                want->members[want->member_count] = malloc(24);
                assert_non_null(want->members[want->member_count]);
                snprintf(want->members[want->member_count], 24, "w%u-%u", ev.w,
                    ev.k);
                want->member_count++;
            }
            if ((ev.flags & TT_F_LWW)
                && (e->hlc > want->lww_hlc
                    || (e->hlc == want->lww_hlc
                        && e->dot.origin > want->lww_origin))) {
                want->lww_hlc    = e->hlc;
                want->lww_origin = e->dot.origin;
                snprintf(want->lww, sizeof(want->lww), "w%u-%u", ev.w, ev.k);
            }
            pos++;
        }
        mrd_events_free(batch);
        if (count == 0) {
            break;
        }
    }
    want->count   = pos;
    size_t in_log = 0;
    for (size_t i = 0; i < ref->count; i++) {
        in_log += ref->ev[i].stream == s;
    }
    if (in_log != want->count) {
        fail_msg("node %u: %s reads %" PRIu64 " events, its shard log holds "
                 "%zu",
            n->id, tt_streams[s], want->count, in_log);
    }
    /* A twin adds the same member as its original: the set has it once. */
    if (want->member_count > 0) {
        qsort(want->members, want->member_count, sizeof(char *), tt_strcmp);
    }
    size_t distinct = 0;
    for (size_t i = 0; i < want->member_count; i++) {
        if (distinct > 0
            && strcmp(want->members[distinct - 1], want->members[i]) == 0) {
            free(want->members[i]);
            continue;
        }
        want->members[distinct++] = want->members[i];
    }
    want->member_count = distinct;
}

/* The state of stream s on node n is what its events say. */
static void
tt_check_state(struct tt_node *n, uint32_t s, const struct tt_want *want)
{
    mrd_state  *st;
    const char *name = tt_streams[s];
    int         rv   = mrd_state_read(n->client, name, NULL, &st);

    if (rv != MRD_OK) {
        fail_msg("node %u: state of %s: %s (%s)", n->id, name, mrd_errname(rv),
            mrd_errdetail());
    }
    const mrd_value *root = mrd_state_root(st);
    if (mrd_state_version(st) != (int64_t) want->count - 1) {
        fail_msg("node %u: state of %s at version %" PRId64 ", want %" PRIu64,
            n->id, name, mrd_state_version(st), want->count - 1);
    }
    int64_t got_n = mrd_value_int(mrd_value_find(root, "n", MRD_STATE_COUNTER));
    if (got_n != (int64_t) want->count) {
        fail_msg("node %u: %s n = %" PRId64 ", want %" PRIu64, n->id, name,
            got_n, want->count);
    }
    size_t origins = 0;
    for (unsigned o = 1; o <= TT_NODES; o++) {
        origins += want->ctx[o] > 0;
    }
    if (mrd_state_context_count(st) != origins) {
        fail_msg("node %u: %s has a context of %zu origins, want %zu", n->id,
            name, mrd_state_context_count(st), origins);
    }
    for (size_t i = 0; i < origins; i++) {
        mrd_dot d = mrd_state_context_at(st, i);
        if (d.origin < 1 || d.origin > TT_NODES
            || d.seq != want->ctx[d.origin]) {
            fail_msg("node %u: %s context %" PRIu64 ":%" PRIu64 ", want seq "
                     "%" PRIu64,
                n->id, name, d.origin, d.seq,
                d.origin >= 1 && d.origin <= TT_NODES ? want->ctx[d.origin]
                                                      : 0);
        }
    }
    const mrd_value *set = mrd_value_find(root, "m", MRD_STATE_SET);
    size_t           nm  = set != NULL ? mrd_value_count(set) : 0;
    if (nm != want->member_count) {
        fail_msg("node %u: %s has %zu members, want %zu", n->id, name, nm,
            want->member_count);
    }
    if (nm > 0) {
        char **got = calloc(nm, sizeof(char *));
        assert_non_null(got);
        for (size_t i = 0; i < nm; i++) {
            size_t      size;
            const void *b = mrd_value_bytes(set, i, &size);
            assert_non_null(b);
            got[i] = calloc(size + 1, 1);
            assert_non_null(got[i]);
            memcpy(got[i], b, size);
        }
        qsort(got, nm, sizeof(char *), tt_strcmp);
        for (size_t i = 0; i < nm; i++) {
            if (strcmp(got[i], want->members[i]) != 0) {
                fail_msg("node %u: %s member %s, want %s", n->id, name, got[i],
                    want->members[i]);
            }
            free(got[i]);
        }
        free(got);
    }
    const mrd_value *lww = mrd_value_find(root, "last", MRD_STATE_LWW);
    if (want->lww[0] == '\0') {
        assert_null(lww);
    } else {
        size_t      size = 0;
        const void *b    = lww != NULL ? mrd_value_bytes(lww, 0, &size) : NULL;
        if (b == NULL || size != strlen(want->lww)
            || memcmp(b, want->lww, size) != 0) {
            fail_msg("node %u: %s last = '%.*s', want '%s'", n->id, name,
                b != NULL ? (int) size : 6,
                b != NULL ? (const char *) b : "(none)", want->lww);
        }
    }
    mrd_state_free(st);
}

static void
tt_want_same(const struct tt_want *a, const struct tt_want *b, uint32_t s,
    uint32_t node_a, uint32_t node_b)
{
    bool same = a->count == b->count && a->member_count == b->member_count
        && memcmp(a->ctx, b->ctx, sizeof(a->ctx)) == 0
        && strcmp(a->lww, b->lww) == 0;
    for (size_t i = 0; same && i < a->member_count; i++) {
        same = strcmp(a->members[i], b->members[i]) == 0;
    }
    if (!same) {
        fail_msg("%s differs on nodes %u and %u: %" PRIu64 " and %" PRIu64
                 " events, %zu and %zu members, last '%s' and '%s'",
            tt_streams[s], node_a, node_b, a->count, b->count, a->member_count,
            b->member_count, a->lww, b->lww);
    }
}

/* Every check of 1 under topology t, on every node that runs. */
static void
tt_check_all(const struct topo *t, const char *what)
{
    struct tt_shard_log logs[TT_SHARDS][TT_REGIONS];
    size_t              extras = 0, events = 0;

    for (uint32_t i = 0; i < TT_NODES; i++) {
        struct tt_node *n = &tt_nodes[i];
        if (!n->up) {
            continue;
        }
        mrd_node_info info;
        assert_int_equal(mrd_node_info_get(n->client, &info), MRD_OK);
        assert_int_equal(info.node_id, n->id);
        assert_int_equal(info.shard_count, TT_SHARDS);
        assert_memory_equal(info.cluster_id, t->cluster_id, 16);
        assert_int_equal(tt_stat(n, "rejected_replication"), 0);
    }
    /* Shard logs: the same set on every replica. */
    for (uint32_t shard = 0; shard < TT_SHARDS; shard++) {
        uint32_t ids[TT_REGIONS * TOPO_RF_MAX];
        uint32_t n = tt_replicas(t, shard, ids);
        assert_int_equal(n, TT_REGIONS);
        for (uint32_t i = 0; i < n; i++) {
            logs[shard][i] = tt_read_log(tt_node(ids[i]), shard);
        }
        struct tt_shard_log *ref = &logs[shard][0];
        extras += tt_log_vs_records(ref, ids[0], shard);
        events += ref->count;
        for (uint32_t i = 1; i < n; i++) {
            const struct tt_shard_log *other = &logs[shard][i];
            bool                       same  = other->count == ref->count;
            for (size_t j = 0; same && j < other->count; j++) {
                same = tt_dot_cmp(&other->ev[j], &ref->ev[j]) == 0
                    && other->ev[j].hlc == ref->ev[j].hlc;
            }
            if (!same) {
                fail_msg("%s: shard %u: node %u holds %zu events, node %u "
                         "%zu, not the same set",
                    what, shard, ids[0], ref->count, ids[i], other->count);
            }
        }
    }
    /* Streams and their state: the same on every replica; refused
     * elsewhere. */
    for (uint32_t s = 0; s < TT_STREAMS; s++) {
        uint32_t       ids[TT_REGIONS * TOPO_RF_MAX];
        uint32_t       shard = tt_stream_shard[s];
        uint32_t       n     = tt_replicas(t, shard, ids);
        struct tt_want first;
        memset(&first, 0, sizeof(first));
        for (uint32_t i = 0; i < n; i++) {
            struct tt_want want;
            tt_read_stream(tt_node(ids[i]), s, &logs[shard][i], &want);
            tt_check_state(tt_node(ids[i]), s, &want);
            if (i == 0) {
                first = want;
            } else {
                tt_want_same(&first, &want, s, ids[0], ids[i]);
                tt_want_free(&want);
            }
        }
        tt_want_free(&first);
        for (uint32_t i = 0; i < TT_NODES; i++) {
            if (tt_nodes[i].up && !tt_is_one_of(tt_nodes[i].id, ids, n)) {
                tt_check_refuses(&tt_nodes[i], tt_streams[s]);
            }
        }
    }
    for (uint32_t shard = 0; shard < TT_SHARDS; shard++) {
        for (uint32_t i = 0; i < TT_REGIONS; i++) {
            free(logs[shard][i].ev);
        }
    }
    /* One append in flight per writer when the node died. */
    if (extras > TT_WRITERS * TT_BATCH_MAX) {
        fail_msg("%s: %zu events written twice: more than the appends in "
                 "flight when node %u was killed",
            what, extras, tt_extra_origin);
    }
    printf("topology_test: %s: checked %zu events (%zu written twice by "
           "killed node %u)\n",
        what, events, extras, tt_extra_origin);
}

/* Waits (bounded) for the counts under t, then checks everything. */
static void
tt_converge(const struct topo *t, const char *what)
{
    struct tt_wait wait;
    tt_expected(&wait, t);
    long t0 = tt_now_ms();
    bool ok = harness_wait_for(
        tt_counts_converged, &wait, TT_CONVERGE_TRIES, TT_POLL_MS);
    long ms = tt_now_ms() - t0;
    if (!ok) {
        for (uint32_t s = 0; s < TT_STREAMS; s++) {
            uint32_t ids[TT_REGIONS * TOPO_RF_MAX];
            uint32_t n = tt_replicas(t, tt_stream_shard[s], ids);
            for (uint32_t i = 0; i < n; i++) {
                mrd_stream_info info = { 0 };
                int             rv   = mrd_stream_info_get(
                                  tt_node(ids[i])->client, tt_streams[s], &info);
                fprintf(stderr,
                    "topology_test: %s (shard %u) on node %u: %s count "
                    "%" PRIu64 ", acknowledged %" PRIu64 "\n",
                    tt_streams[s], tt_stream_shard[s], ids[i], mrd_errname(rv),
                    info.count, wait.expected[s]);
            }
        }
    }
    /* The full check says precisely what is wrong, converged or not. */
    tt_check_all(t, what);
    if (!ok) {
        fail_msg("%s: no convergence within %ld ms", what, ms);
    }
    printf("topology_test: %s: converged in %ld ms\n", what, ms);
}

/* ------------------------------------------------------------ topology -- */

struct tt_version_wait {
    uint64_t version;
};

static bool
tt_all_at_version(void *arg)
{
    const struct tt_version_wait *wait = arg;
    for (uint32_t i = 0; i < TT_NODES; i++) {
        struct tt_node *n       = &tt_nodes[i];
        uint64_t        version = 0;
        void           *doc     = NULL;
        size_t          len     = 0;
        if (!n->up) {
            continue;
        }
        int rv
            = mrd_topology_get(n->client, wait->version, &version, &doc, &len);
        mrd_free(doc);
        if (rv != MRD_OK || version != wait->version) {
            return false;
        }
    }
    return true;
}

/* Every running node holds exactly this signed document. */
static void
tt_check_topology(const struct proto_buf *want, uint64_t version)
{
    for (uint32_t i = 0; i < TT_NODES; i++) {
        struct tt_node *n   = &tt_nodes[i];
        uint64_t        got = 0;
        void           *doc = NULL;
        size_t          len = 0;
        if (!n->up) {
            continue;
        }
        int rv = mrd_topology_get(n->client, 0, &got, &doc, &len);
        if (rv != MRD_OK || got != version || len != want->len
            || memcmp(doc, want->data, len) != 0) {
            fail_msg("node %u holds topology version %" PRIu64 " (%zu bytes, "
                     "%s), want version %" PRIu64 " (%zu bytes)",
                n->id, got, len, mrd_errname(rv), version, want->len);
        }
        mrd_free(doc);
    }
}

/* A push that must be refused with `want`, counted, changing nothing. */
static void
tt_push_refused(mrd_client *client, struct tt_node *n, const void *doc,
    size_t len, int want, const char *what)
{
    uint64_t before  = tt_stat(n, "rejected_topology");
    uint64_t updates = tt_stat(n, "topology_updates");
    uint64_t version = 0;
    int      rv      = mrd_topology_push(client, doc, len, &version);
    if (rv != want) {
        fail_msg("push of %s to node %u: %s (%s), want %s", what, n->id,
            mrd_errname(rv), mrd_errdetail(), mrd_errname(want));
    }
    const char *detail = mrd_errdetail();
    printf("topology_test: push of %s refused: %s: %s\n", what, mrd_errname(rv),
        detail);
    if (detail[0] == '\0') {
        fail_msg("push of %s: refused with no words", what);
    }
    assert_int_equal(tt_stat(n, "rejected_topology"), before + 1);
    assert_int_equal(tt_stat(n, "topology_updates"), updates);
}

/* ------------------------------------------------------------ phases -- */

/* 1 (the client's view): a client that names only a non-replica either
 * routes the read to a replica by the topology (a client that routes) and
 * reads the whole stream, or ends with MRD_ENOTREPLICA in the node's words
 * naming the replicas (a client that only retries its own addresses). */
static void
tt_check_client_refusal(void)
{
    uint32_t ids[TT_REGIONS * TOPO_RF_MAX];
    uint32_t n = tt_replicas(tt_v1, tt_stream_shard[0], ids);
    for (uint32_t i = 0; i < TT_BASE_NODES; i++) {
        struct tt_node *node = &tt_nodes[i];
        if (tt_is_one_of(node->id, ids, n)) {
            continue;
        }
        struct harness_node *one[] = { &node->h };
        mrd_client_opts      opts;
        mrd_client          *client;
        mrd_events          *ev = NULL;
        mrd_stream_info      info;
        tt_client_opts(&opts, NULL);
        opts.timeout_ms = harness_ms(2000);
        assert_int_equal(harness_client_open(one, 1, &opts, &client), MRD_OK);
        int rv = mrd_read(
            client, tt_streams[0], 0, MRD_FORWARD, MRD_READ_COUNT_MAX, &ev);
        char detail[512];
        snprintf(detail, sizeof(detail), "%s", mrd_errdetail());
        size_t count = ev != NULL ? mrd_events_count(ev) : 0;
        mrd_events_free(ev);
        mrd_client_close(client);
        assert_int_equal(
            mrd_stream_info_get(tt_node(ids[0])->client, tt_streams[0], &info),
            MRD_OK);
        if (rv == MRD_OK && count == info.count) {
            printf("topology_test: a client on non-replica node %u only "
                   "read all %zu events of %s (routed by the topology)\n",
                node->id, count, tt_streams[0]);
        } else if (rv == MRD_ENOTREPLICA && strstr(detail, "replica") != NULL) {
            printf("topology_test: a client on node %u only: %s\n", node->id,
                detail);
        } else {
            fail_msg("a client on non-replica node %u only read %s: %s ('%s'), "
                     "%zu events of %" PRIu64 ": want them all (routed) or "
                     "MRD_ENOTREPLICA naming the replicas",
                node->id, tt_streams[0], mrd_errname(rv), detail, count,
                info.count);
        }
        return;
    }
    fail_msg("no non-replica of shard %u", tt_stream_shard[0]);
}

/* 4: refused pushes to node `to`; nothing changes anywhere. */
static void
tt_phase_refused_pushes(struct tt_node *to)
{
    const char *why = NULL;
    uint32_t    id;
    char        ghost_url[HARNESS_URL_SIZE];
    uint8_t     ghost_pk[TOPO_KEY_SIZE], ghost_sk[TOPO_SECRET_KEY_SIZE];

    /* A valid version 3: a node that never runs. */
    struct topo *v3 = malloc(sizeof(*v3));
    assert_non_null(v3);
    memcpy(v3, tt_v2, sizeof(*v3));
    assert_int_equal(harness_dead_url(ghost_url, sizeof(ghost_url)), 0);
    assert_int_equal(crypto_sign_keypair(ghost_pk, ghost_sk), 0);
    assert_int_equal(topo_node_add(v3, "ghost", TT_REGIONS - 1, ghost_url,
                         ghost_pk, &id, &why),
        MRD_OK);
    assert_int_equal(v3->version, 3);
    struct proto_buf good;
    tt_topo_sign(v3, tt_admin_sk, &good);
    /* It would be accepted: the refusals below are for their flaw alone. */
    struct topo *check = malloc(sizeof(*check));
    assert_non_null(check);
    assert_int_equal(
        topo_accept(tt_v2, good.data, good.len, check, &why), MRD_OK);

    struct topo_envelope env;
    assert_int_equal(
        topo_envelope_open(good.data, good.len, &env, &why), MRD_OK);
    size_t doc_at = (size_t) ((const uint8_t *) env.topology.ptr - good.data);
    size_t sig_at = (size_t) ((const uint8_t *) env.signature.ptr - good.data);
    uint8_t *bad  = malloc(good.len);
    assert_non_null(bad);

    struct harness_node *one[] = { &to->h };
    mrd_client_opts      opts;
    mrd_client          *client;
    tt_client_opts(&opts, NULL);
    assert_int_equal(harness_client_open(one, 1, &opts, &client), MRD_OK);
    uint64_t rejected_before = tt_stat(to, "rejected_topology");

    memcpy(bad, good.data, good.len);
    bad[doc_at + env.topology.len / 2] ^= 0x01;
    tt_push_refused(client, to, bad, good.len, MRD_ECORRUPT,
        "version 3 with a flipped byte in the document");
    memcpy(bad, good.data, good.len);
    bad[sig_at + TOPO_SIG_SIZE / 2] ^= 0x80;
    tt_push_refused(client, to, bad, good.len, MRD_ECORRUPT,
        "version 3 with a flipped byte in the signature");

    /* The same change, signed by another key (as its admin key). */
    uint8_t other_pk[TOPO_KEY_SIZE], other_sk[TOPO_SECRET_KEY_SIZE];
    assert_int_equal(crypto_sign_keypair(other_pk, other_sk), 0);
    memcpy(check, v3, sizeof(*check));
    memcpy(check->admin_key, other_pk, TOPO_KEY_SIZE);
    struct proto_buf forged;
    tt_topo_sign(check, other_sk, &forged);
    tt_push_refused(client, to, forged.data, forged.len, MRD_ECORRUPT,
        "version 3 signed by another key");

    tt_push_refused(client, to, tt_signed_v1.data, tt_signed_v1.len,
        MRD_EVERSION, "version 1 (older)");
    tt_push_refused(client, to, tt_signed_v2.data, tt_signed_v2.len,
        MRD_EVERSION, "version 2 again");
    assert_int_equal(tt_stat(to, "rejected_topology"), rejected_before + 5);
    if (!harness_node_log_contains(&to->h, "refused a topology")) {
        fail_msg("node %u did not log its refusals", to->id);
    }
    mrd_client_close(client);

    /* Nothing changed, here or (after a few gossip rounds) anywhere. */
    tt_check_topology(&tt_signed_v2, 2);
    tt_run_for(1500);
    tt_check_topology(&tt_signed_v2, 2);
    for (uint32_t i = 0; i < TT_NODES; i++) {
        if (&tt_nodes[i] != to) {
            assert_int_equal(tt_stat(&tt_nodes[i], "rejected_topology"), 0);
        }
    }
    proto_buf_fini(&good);
    proto_buf_fini(&forged);
    free(bad);
    free(check);
    free(v3);
    sodium_memzero(ghost_sk, sizeof(ghost_sk));
    sodium_memzero(other_sk, sizeof(other_sk));
}

/* A stream name of no shared stream's, with its replicas under t. */
static void
tt_stream_named(const char *prefix, const struct topo *t, char *name,
    size_t size, uint32_t *ids)
{
    snprintf(name, size, "%s", prefix);
    assert_int_equal(
        tt_replicas(t,
            topo_shard_of(t->cluster_id, t->shard_count, name, strlen(name)),
            ids),
        TT_REGIONS);
}

/* Every (dot, log seq) of a shard's log on node n, read on n only (a log
 * read names no stream: no routing), sorted by dot. For the streams of 5
 * and 6, whose events are not a writer's. */
static struct tt_shard_log
tt_read_log_dots(struct tt_node *n, uint32_t shard)
{
    struct tt_shard_log log   = { NULL, 0 };
    size_t              cap   = 0;
    uint64_t            after = 0;

    for (;;) {
        mrd_events *batch;
        int         rv = mrd_read_log(n->client, shard, after, 1000, &batch);
        if (rv != MRD_OK) {
            fail_msg("node %u: read_log shard %u: %s (%s)", n->id, shard,
                mrd_errname(rv), mrd_errdetail());
        }
        size_t count = mrd_events_count(batch);
        for (size_t j = 0; j < count; j++) {
            const mrd_event *e = mrd_events_at(batch, j);
            if (log.count == cap) {
                cap    = cap == 0 ? 1024 : cap * 2;
                log.ev = realloc(log.ev, cap * sizeof(*log.ev));
                assert_non_null(log.ev);
            }
            log.ev[log.count++] = (struct tt_ev) { .dot = e->dot,
                .hlc                                    = e->hlc,
                .log_seq                                = e->log_seq,
                .stream                                 = TT_STREAMS };
        }
        if (count > 0) {
            after = mrd_events_next(batch);
        }
        mrd_events_free(batch);
        if (count == 0) {
            break;
        }
    }
    if (log.count > 0) {
        qsort(log.ev, log.count, sizeof(*log.ev), tt_dot_cmp);
    }
    return log;
}

/* Appends one event on node n's client (home region n's) and checks that
 * n took it: its dot is n's. */
static void
tt_append_on(struct tt_node *n, const char *stream, const char *data,
    const mrd_append_opts *opts, int want_rv, mrd_append_result *res)
{
    mrd_event_in ev
        = { .type = "TopoTested", .data = data, .data_size = strlen(data) };
    memset(res, 0, sizeof(*res));
    int rv = mrd_append(n->client, stream, &ev, 1, opts, res);
    if (rv != want_rv) {
        fail_msg("append to %s on node %u: %s (%s), want %s", stream, n->id,
            mrd_errname(rv), mrd_errdetail(), mrd_errname(want_rv));
    }
    if (res->first_dot.origin != n->id) {
        fail_msg("an append to %s on a client of node %u (home region %s) "
                 "was taken by node %" PRIu64,
            stream, n->id, tt_region_names[n->region], res->first_dot.origin);
    }
}

/* 5: acknowledgement levels under placement (rf 1 per region). */
static void
tt_phase_acks(void)
{
    char     stream[TT_NAME_SIZE];
    uint32_t ids[TT_REGIONS * TOPO_RF_MAX];
    tt_stream_named("tt-ack", tt_v2, stream, sizeof(stream), ids);
    uint32_t shard
        = topo_shard_of(tt_v2->cluster_id, TT_SHARDS, stream, strlen(stream));
    struct tt_node *a = tt_node(ids[0]);

    mrd_append_opts   opts;
    mrd_append_result res;
    mrd_append_opts_init(&opts);
    opts.ack         = MRD_ACK_GLOBAL;
    opts.ack_count   = 3;
    opts.ack_wait_ms = harness_ms(10000);
    long t0          = tt_now_ms();
    tt_append_on(a, stream, "global", &opts, MRD_OK, &res);
    long ms = tt_now_ms() - t0;
    if (res.ack_reached != MRD_ACK_GLOBAL || res.ack_regions != 3) {
        fail_msg("MRD_ACK_GLOBAL n=3 on node %u (%s): reached %d, %u regions, "
                 "%u replicas, after %ld ms",
            a->id, stream, res.ack_reached, res.ack_regions, res.ack_replicas,
            ms);
    }
    printf("topology_test: MRD_ACK_GLOBAL n=3 on node %u: %u regions in %ld "
           "ms\n",
        a->id, res.ack_regions, ms);
    /* Acknowledged means held: the other regions' replicas have it in
     * their shard logs now, without waiting. */
    for (uint32_t i = 1; i < TT_REGIONS; i++) {
        struct tt_shard_log log  = tt_read_log_dots(tt_node(ids[i]), shard);
        struct tt_ev        key  = { .dot = res.first_dot };
        bool                held = log.count > 0
            && bsearch(&key, log.ev, log.count, sizeof(key), tt_dot_cmp)
                != NULL;
        free(log.ev);
        if (!held) {
            fail_msg("MRD_ACK_GLOBAL acknowledged dot %" PRIu64 ":%" PRIu64
                     " but replica %u (region %s) does not hold it",
                res.first_dot.origin, res.first_dot.seq, ids[i],
                tt_region_names[tt_node(ids[i])->region]);
        }
    }

    /* rf = 1: two replicas in one region never exist, so k = 2 is never
     * reached, and the node must say so. */
    mrd_append_opts_init(&opts);
    opts.ack         = MRD_ACK_REGION;
    opts.ack_count   = 2;
    opts.ack_wait_ms = 300;
    tt_append_on(a, stream, "region", &opts, MRD_EDURABILITY, &res);
    if (res.ack_replicas != 1) {
        fail_msg("MRD_ACK_REGION k=2 with rf=1 on node %u: %u replicas "
                 "counted, want 1",
            a->id, res.ack_replicas);
    }
}

/* Waits (bounded) until node n holds `count` events of stream. */
static void
tt_wait_count(struct tt_node *n, const char *stream, uint64_t count)
{
    long t0 = tt_now_ms();
    for (;;) {
        mrd_stream_info info;
        assert_int_equal(mrd_stream_info_get(n->client, stream, &info), MRD_OK);
        if (info.count == count) {
            return;
        }
        if (tt_now_ms() - t0 > (long) harness_ms(20000)) {
            fail_msg("node %u holds %" PRIu64 " of %" PRIu64 " events of %s",
                n->id, info.count, count, stream);
        }
        harness_sleep_ms(TT_POLL_MS);
    }
}

/* Reads stream with the cursor on node n's client until the end or until
 * `reads` batches of count_max; appends the events to got. */
static void
tt_cursor_read(struct tt_node *n, const char *stream, mrd_cursor *cursor,
    uint32_t count_max, int reads, struct tt_ev *got, size_t *got_count,
    size_t got_max)
{
    for (int r = 0; r < reads; r++) {
        mrd_events *ev;
        int rv = mrd_read_cursor(n->client, stream, cursor, count_max, 0, &ev);
        if (rv != MRD_OK) {
            fail_msg("cursor read of %s on node %u: %s (%s)", stream, n->id,
                mrd_errname(rv), mrd_errdetail());
        }
        size_t count = mrd_events_count(ev);
        for (size_t j = 0; j < count; j++) {
            const mrd_event *e = mrd_events_at(ev, j);
            if (*got_count == got_max) {
                fail_msg("cursor reads of %s returned more than %zu events",
                    stream, got_max);
            }
            got[(*got_count)++] = (struct tt_ev) {
                .dot = e->dot, .log_seq = e->log_seq, .w = n->id
            };
        }
        int end = mrd_events_end(ev);
        mrd_events_free(ev);
        if (count == 0 && end) {
            return;
        }
    }
}

/* 6: a cursor read begun on the region-a replica goes on on the region-c
 * replica. */
static void
tt_phase_cursor(void)
{
    enum { TT_CURSOR_MAX = 64 };
    char         stream[TT_NAME_SIZE];
    uint32_t     ids[TT_REGIONS * TOPO_RF_MAX];
    mrd_dot      written[TT_CURSOR_MAX];
    struct tt_ev got[TT_CURSOR_MAX];
    size_t       count = 0, got_count = 0;
    char         data[32];
    tt_stream_named("tt-cursor", tt_v2, stream, sizeof(stream), ids);
    uint32_t shard
        = topo_shard_of(tt_v2->cluster_id, TT_SHARDS, stream, strlen(stream));
    struct tt_node *ra = tt_node(ids[0]), *rb = tt_node(ids[1]),
                   *rc = tt_node(ids[2]);

    /* Written in every region, interleaved, so the logs' orders differ. */
    for (int round = 0; round < 4; round++) {
        struct tt_node *order[3] = { ra, rc, rb };
        for (int i = 0; i < 3; i++) {
            for (int j = 0; j < 3; j++) {
                mrd_append_result res;
                snprintf(data, sizeof(data), "c%zu", count);
                tt_append_on(order[i], stream, data, NULL, MRD_OK, &res);
                written[count++] = res.first_dot;
            }
        }
    }
    tt_wait_count(ra, stream, count);
    tt_wait_count(rc, stream, count);

    mrd_cursor *cursor;
    assert_int_equal(mrd_cursor_new(&cursor), MRD_OK);
    /* Part of it on region a. */
    tt_cursor_read(ra, stream, cursor, 5, 3, got, &got_count, TT_CURSOR_MAX);
    size_t on_a = got_count;
    if (on_a != 15) {
        fail_msg("three cursor reads of 5 on node %u returned %zu events of "
                 "%zu",
            ra->id, on_a, count);
    }
    /* More writes, on c and b, while the reader moves. */
    for (int j = 0; j < 4; j++) {
        mrd_append_result res;
        snprintf(data, sizeof(data), "c%zu", count);
        tt_append_on(j % 2 == 0 ? rc : rb, stream, data, NULL, MRD_OK, &res);
        written[count++] = res.first_dot;
    }
    tt_wait_count(rc, stream, count);
    /* The rest on region c, with the same cursor. */
    tt_cursor_read(rc, stream, cursor, 7, 100, got, &got_count, TT_CURSOR_MAX);
    mrd_cursor_free(cursor);

    /* Each batch came from the node asked: its log seqs are that node's. */
    struct tt_shard_log log_a = tt_read_log_dots(ra, shard);
    struct tt_shard_log log_c = tt_read_log_dots(rc, shard);
    for (size_t i = 0; i < got_count; i++) {
        const struct tt_shard_log *log = i < on_a ? &log_a : &log_c;
        const struct tt_ev        *at  = log->count > 0
                    ? bsearch(&got[i], log->ev, log->count, sizeof(got[i]), tt_dot_cmp)
                    : NULL;
        if (at == NULL || at->log_seq != got[i].log_seq) {
            fail_msg("cursor read on a client of node %u returned dot %" PRIu64
                     ":%" PRIu64 " at log seq %" PRIu64
                     ", not as node %u's log has it: another node served it",
                got[i].w, got[i].dot.origin, got[i].dot.seq, got[i].log_seq,
                got[i].w);
        }
    }
    free(log_a.ev);
    free(log_c.ev);
    /* Every event once; each origin's in seq order. */
    uint64_t last_seq[TT_NODES + 1] = { 0 };
    for (size_t i = 0; i < got_count; i++) {
        for (size_t j = 0; j < i; j++) {
            if (tt_dot_cmp(&got[j], &got[i]) == 0) {
                fail_msg("cursor: dot %" PRIu64 ":%" PRIu64 " delivered twice "
                         "(%zu read on node %u, then node %u)",
                    got[i].dot.origin, got[i].dot.seq, on_a, ra->id, rc->id);
            }
        }
        assert_true(got[i].dot.origin >= 1 && got[i].dot.origin <= TT_NODES);
        if (got[i].dot.seq <= last_seq[got[i].dot.origin]) {
            fail_msg("cursor: origin %" PRIu64 " seq %" PRIu64
                     " after %" PRIu64,
                got[i].dot.origin, got[i].dot.seq, last_seq[got[i].dot.origin]);
        }
        last_seq[got[i].dot.origin] = got[i].dot.seq;
    }
    for (size_t i = 0; i < count; i++) {
        bool found = false;
        for (size_t j = 0; j < got_count && !found; j++) {
            found = got[j].dot.origin == written[i].origin
                && got[j].dot.seq == written[i].seq;
        }
        if (!found) {
            fail_msg("cursor: dot %" PRIu64 ":%" PRIu64 " never delivered "
                     "(%zu read on node %u, %zu on node %u)",
                written[i].origin, written[i].seq, on_a, ra->id,
                got_count - on_a, rc->id);
        }
    }
    assert_int_equal(got_count, count);
    printf("topology_test: cursor: %zu events on node %u, then %zu on node "
           "%u\n",
        on_a, ra->id, got_count - on_a, rc->id);
}

/* ---------------------------------------------------------------- test -- */

static void
test_topology(void **state)
{
    (void) state;
    long        t_start = tt_now_ms();
    uint32_t    seed    = (uint32_t) time(NULL);
    const char *env     = getenv("MRD_TEST_SEED");

    if (env != NULL) {
        seed = (uint32_t) strtoul(env, NULL, 10);
    }
    printf(
        "topology_test: seed %u (replay with MRD_TEST_SEED=%u)\n", seed, seed);
    uint32_t rng = seed | 1u;
    tt_cluster_make(&rng);

    struct harness_node *base[TT_BASE_NODES];
    for (uint32_t i = 0; i < TT_BASE_NODES; i++) {
        tt_node_start(&tt_nodes[i], tt_v1_path);
        base[i] = &tt_nodes[i].h;
    }
    /* New stores take appends once they have read their peers' logs. */
    assert_int_equal(harness_nodes_wait_joined(base, TT_BASE_NODES), 0);
    tt_check_topology(&tt_signed_v1, 1);
    tt_writers_open(seed);

    /* 1: every region writes at once; the replicas converge. */
    tt_writers_start();
    tt_run_for(2000);
    tt_writers_join("concurrent writers");
    tt_converge(tt_v1, "concurrent writers");
    tt_check_client_refusal();

    /* 2: a replica dies while the writers run, and comes back. */
    struct tt_node *killed = tt_node(TT_KILLED);
    tt_writers_start();
    tt_run_for(300);
    tt_extra_origin = killed->id;
    assert_int_equal(harness_node_kill(&killed->h, SIGKILL), 0);
    killed->up = false;
    tt_run_for(1000);
    tt_node_start(killed, killed->topo_path);
    tt_run_for(700);
    tt_writers_join("node 3 killed");
    tt_converge(tt_v1, "node 3 killed and restarted");

    /* 3: node 7 joins region a while the writers run. */
    struct tt_node *late = tt_node(TT_NODES);
    tt_node_start(late, tt_v2_path);
    tt_writers_start();
    tt_run_for(300);
    struct tt_node *pushed  = tt_node(TT_PUSHED);
    uint64_t        version = 0;
    int             rv      = mrd_topology_push(
                         pushed->client, tt_signed_v2.data, tt_signed_v2.len, &version);
    if (rv != MRD_OK || version != 2) {
        fail_msg("push of version 2 to node %u: %s (%s), version %" PRIu64,
            pushed->id, mrd_errname(rv), mrd_errdetail(), version);
    }
    long                   t0 = tt_now_ms();
    struct tt_version_wait vw = { 2 };
    bool seen      = harness_wait_for(tt_all_at_version, &vw, 200, TT_POLL_MS);
    long gossip_ms = tt_now_ms() - t0;
    tt_run_for(1000);
    tt_writers_join("node 7 added");
    if (!seen) {
        tt_check_topology(&tt_signed_v2, 2); /* says which node lags */
        fail_msg("version 2 did not reach every node in %ld ms", gossip_ms);
    }
    printf(
        "topology_test: version 2 reached every node in %ld ms\n", gossip_ms);
    tt_check_topology(&tt_signed_v2, 2);
    for (uint32_t i = 0; i < TT_BASE_NODES; i++) {
        /* Each took it once: by push (node 1) or by gossip. */
        assert_int_equal(tt_stat(&tt_nodes[i], "topology_updates"), 1);
        assert_int_equal(tt_stat(&tt_nodes[i], "rejected_topology"), 0);
    }
    tt_converge(tt_v2, "node 7 added");
    for (uint32_t s = 0; s < TT_SHARDS; s++) {
        uint32_t before[TOPO_RF_MAX], after[TOPO_RF_MAX];
        assert_int_equal(
            topo_replicas(tt_v1, s, TT_LATE_REGION, before, TOPO_RF_MAX), 1);
        assert_int_equal(
            topo_replicas(tt_v2, s, TT_LATE_REGION, after, TOPO_RF_MAX), 1);
        if (after[0] == late->id) {
            printf("topology_test: shard %u moved from node %u to node %u\n", s,
                before[0], after[0]);
        }
    }

    /* 4: refused pushes change nothing. */
    tt_phase_refused_pushes(tt_node(2));
    tt_check_all(tt_v2, "after refused pushes");

    /* 5 and 6 write to streams of their own, after the last full check. */
    tt_phase_acks();
    tt_phase_cursor();

    for (uint32_t w = 0; w < TT_WRITERS; w++) {
        mrd_client_close(tt_writers[w].client);
        free(tt_writers[w].recs);
    }
    for (uint32_t i = 0; i < TT_NODES; i++) {
        mrd_client_close(tt_nodes[i].client);
        harness_node_fini(&tt_nodes[i].h);
    }
    proto_buf_fini(&tt_signed_v1);
    proto_buf_fini(&tt_signed_v2);
    free(tt_v1);
    free(tt_v2);
    sodium_memzero(tt_admin_sk, sizeof(tt_admin_sk));
    harness_rmrf(tt_dir);
    printf("topology_test: done in %ld ms\n", tt_now_ms() - t_start);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topology),
    };
    return cmocka_run_group_tests_name(
        "topology", tests, NULL, harness_teardown);
}
