/*
 * antientropy_test.c: pull-based anti-entropy in topology mode
 * (replication/ae.h; docs/ARCHITECTURE.md, "Anti-entropy core"): each node
 * pulls a shard only from its sources (every other live replica of its
 * region, and, on the region's designated puller, one live replica of each
 * remote region, with a skip set), so that each event crosses each
 * region-to-region link once; sources fail over when a node goes down; and
 * the knowledge digests carried by pulls let a node count, for its
 * acknowledgement levels, replicas it never talks to.
 *
 * The cluster is what `meridianctl cluster init --regions a,b,c
 * --nodes-per-region 2 --replicas-per-region 2 --shards 8` writes: six
 * nodes (1, 2 in a; 3, 4 in b; 5, 6 in c), each holding every shard, run
 * from the written configs on free ports. The test reads the signed
 * topology back to name 16 streams, two per shard. A warm-up append in each
 * region (and a pause for the last redials) comes first, so that every
 * node sees every other as live before anything is counted; every figure
 * below is a difference of STATS counters from just before its step.
 *   1. Link economy: a client of region a (home region a) appends N events
 *      in small batches (ack local) to the 16 streams. Once all six nodes
 *      hold them, region b's two nodes together received exactly N events
 *      from other regions in pull replies (pull_events_remote), region c's
 *      exactly N, region a's none. A full mesh would bring each b node
 *      each event from both a nodes and both c nodes (about 4N per node).
 *   2. Every region writes: one client per region appends M events,
 *      concurrently (a thread each). After convergence each region's
 *      pull_events_remote grew by exactly 2M, the events written in the
 *      other two.
 *   3. Failover: one region-b node (picked by the seed) is SIGSTOPped and
 *      region a appends K more events. The other b node must get them
 *      (bounded: SWIM's suspicion timeout plus a pull timeout), from region
 *      a directly now that it is its region's designated puller; after
 *      SIGCONT the stopped node catches up too.
 *   4. Acknowledgement through relayed knowledge: an append with
 *      MRD_ACK_GLOBAL n = 3 to each of region a's nodes in turn, then one
 *      with MRD_ACK_REGION k = 2. Only one of the two is its region's
 *      designated puller for the stream's shard; the other never talks to
 *      regions b and c, and must still count them from digests: reached,
 *      3 regions (and 2 replicas for the region ack), never
 *      MRD_EDURABILITY.
 * After 2, 3 and 4, every node's shard logs are checked against every dot
 * the appends acknowledged: each node holds exactly that set, no dot twice,
 * each origin's events in seq order along each log (so every stream reads
 * the same events in the same per-origin order on all six). At the end no
 * node refused a digest (rejected_digest) or a batch (rejected_replication).
 *
 * Which node serves what: holdings are read with mrd_read_log on a client
 * naming only that node (log reads name no stream, so the client does not
 * route them). Stream calls on a client are routed by the topology to the
 * shard's first replica in the home region, so the appends of 4, which
 * must reach one given node, are raw APPEND requests on a secure link to
 * that node, and the reply's origin is checked to be that node. STATS also
 * go on each node's own link.
 *
 * Keys: the nodes run with the keys and the keyring their configs name
 * (DIR/node-N/node.key, DIR/keyring). The test adds the harness's admin
 * client to DIR/keyring before they start, as an operator adds a client,
 * so that the harness's clients, links and STATS get in.
 *
 * The seed is printed; MRD_TEST_SEED replays the choices (streams, batch
 * sizes, the stopped node), not the thread timing. Every wait is bounded
 * and scaled by MRD_TEST_TIMEOUT_MULTIPLIER.
 */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "harness.h"
#include "proto.h"
#include "topo.h"

#include <nng/nng.h>
#include <sodium.h>

#include "linkio.h"

#define AET_REGIONS 3u
#define AET_PER_REGION 2u
#define AET_NODES (AET_REGIONS * AET_PER_REGION)
#define AET_SHARDS 8u
#define AET_STREAMS 16u /* data streams: stream j in shard j % 8 */
#define AET_ACK_STREAM AET_STREAMS /* index of the stream of 4 */
#define AET_ALL_STREAMS (AET_STREAMS + 1u)
#define AET_N 600u /* 1: events written in region a */
#define AET_M 150u /* 2: events written in each region */
#define AET_K 120u /* 3: events written in region a, one b node stopped */
#define AET_BATCH_MAX 4u
#define AET_POLL_MS 100u
#define AET_NAME_SIZE 32u
/* Convergence of a step, and the failover of 3 (SWIM's suspicion timeout,
 * then a 5 s pull timeout, with room for a sanitizer build). */
#define AET_CONVERGE_MS 30000u
#define AET_FAILOVER_MS 30000u
/* After convergence, before the counters are read: a pull still in flight
 * would be counted. */
#define AET_SETTLE_MS 1000u

struct aet_node {
    struct harness_node h;
    uint32_t            id; /* 1..6 */
    uint32_t            region; /* 0 a, 1 b, 2 c */
    char                cfg[HARNESS_PATH_SIZE + 32];
    mrd_client         *solo; /* names only this node: log reads */
    struct lk_sock     *raw; /* STATS and the raw appends of 4 */
    bool                stopped; /* SIGSTOPped: ask it nothing */
};

/* A dot an append acknowledged, and its stream. */
struct aet_dot {
    mrd_dot  dot;
    uint32_t stream;
};

/* A set of acknowledged dots. */
struct aet_dots {
    struct aet_dot *d;
    size_t          count, cap;
};

/* One event of a node's shard log. */
struct aet_ev {
    mrd_dot  dot;
    uint32_t stream; /* index, AET_ALL_STREAMS when unknown */
    uint32_t shard; /* the log it is in */
};

struct aet_log {
    struct aet_ev *ev; /* log order, shard after shard */
    size_t         count, cap;
};

/* One region's writer: a client naming the region's nodes, home region
 * set. Runs on a thread in 2, on the test's thread otherwise. */
struct aet_writer {
    uint32_t        region;
    mrd_client     *client;
    uint32_t        rng;
    uint32_t        want; /* events this step */
    struct aet_dots dots; /* acknowledged this step */
    uint32_t        appends;
    int             fatal; /* MRD_* of a failed append, or 0 */
    char            why[320];
    pthread_t       thread;
};

/* Counters of every node at one moment. */
struct aet_snap {
    uint64_t remote[AET_NODES];
    uint64_t local[AET_NODES];
    uint64_t blocked[AET_NODES];
    uint64_t replicated[AET_NODES];
};

static struct aet_node   aet_nodes[AET_NODES];
static struct aet_writer aet_writers[AET_REGIONS];
static const char       *aet_region_names[AET_REGIONS] = { "a", "b", "c" };
static char              aet_streams[AET_ALL_STREAMS][AET_NAME_SIZE];
static uint32_t          aet_stream_shard[AET_ALL_STREAMS];
static struct topo      *aet_topo;
static struct aet_dots   aet_written; /* every acknowledged dot */
static char              aet_dir[HARNESS_PATH_SIZE];

static long
aet_now_ms(void)
{
    return (long) mrd_now_mono_ms();
}

static int
aet_dot_cmp(const mrd_dot *x, const mrd_dot *y)
{
    if (x->origin != y->origin) {
        return x->origin < y->origin ? -1 : 1;
    }
    if (x->seq != y->seq) {
        return x->seq < y->seq ? -1 : 1;
    }
    return 0;
}

static int
aet_dots_cmp(const void *a, const void *b)
{
    return aet_dot_cmp(
        &((const struct aet_dot *) a)->dot, &((const struct aet_dot *) b)->dot);
}

static int
aet_ev_cmp(const void *a, const void *b)
{
    return aet_dot_cmp(
        &((const struct aet_ev *) a)->dot, &((const struct aet_ev *) b)->dot);
}

/* False when out of memory (a writer thread reports it). */
static bool
aet_dots_add(struct aet_dots *s, mrd_dot dot, uint32_t stream)
{
    if (s->count == s->cap) {
        size_t          cap = s->cap == 0 ? 1024 : s->cap * 2;
        struct aet_dot *d   = realloc(s->d, cap * sizeof(*d));
        if (d == NULL) {
            return false;
        }
        s->d   = d;
        s->cap = cap;
    }
    s->d[s->count++] = (struct aet_dot) { dot, stream };
    return true;
}

static void
aet_dots_merge(struct aet_dots *into, struct aet_dots *from)
{
    for (size_t i = 0; i < from->count; i++) {
        assert_true(aet_dots_add(into, from->d[i].dot, from->d[i].stream));
    }
    free(from->d);
    memset(from, 0, sizeof(*from));
}

static uint32_t
aet_region_of(uint64_t node_id)
{
    return node_id >= 1 && node_id <= AET_NODES
        ? (uint32_t) (node_id - 1) / AET_PER_REGION
        : AET_REGIONS;
}

static uint32_t
aet_stream_index(const char *name)
{
    for (uint32_t i = 0; i < AET_ALL_STREAMS; i++) {
        if (strcmp(aet_streams[i], name) == 0) {
            return i;
        }
    }
    return AET_ALL_STREAMS;
}

/* ------------------------------------------------------------- cluster -- */

/* The signed topology cluster init wrote, opened (it is the bootstrap
 * file, trusted as the nodes trust it). */
static void
aet_topo_load(const char *cdir)
{
    char path[HARNESS_PATH_SIZE + 32];
    snprintf(path, sizeof(path), "%s/topology.signed", cdir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t *buf = malloc(TOPO_SIGNED_SIZE_MAX);
    assert_non_null(buf);
    size_t len = fread(buf, 1, TOPO_SIGNED_SIZE_MAX, f);
    fclose(f);
    aet_topo = malloc(sizeof(*aet_topo));
    assert_non_null(aet_topo);
    const char *why = NULL;
    int         rv  = topo_open_signed(buf, len, aet_topo, &why);
    free(buf);
    if (rv != MRD_OK) {
        fail_msg("topology %s: %s (%s)", path, mrd_errname(rv), why);
    }
    assert_int_equal(aet_topo->shard_count, AET_SHARDS);
    assert_int_equal(aet_topo->region_count, AET_REGIONS);
    assert_int_equal(aet_topo->node_count, AET_NODES);
    for (uint32_t r = 0; r < AET_REGIONS; r++) {
        assert_string_equal(aet_topo->regions[r].name, aet_region_names[r]);
        assert_int_equal(aet_topo->regions[r].rf, AET_PER_REGION);
    }
    for (uint32_t i = 0; i < AET_NODES; i++) {
        assert_int_equal(aet_topo->nodes[i].id, i + 1);
        assert_int_equal(aet_topo->nodes[i].region, aet_region_of(i + 1));
    }
}

/* Stream j in shard j % 8, from names drawn by the seed; and the stream of
 * 4, in any shard. */
static void
aet_streams_pick(uint32_t *rng)
{
    uint32_t base = harness_rand32(rng) % 100000u;
    uint32_t i    = 0;
    for (uint32_t j = 0; j < AET_STREAMS; j++) {
        for (;; i++) {
            char name[AET_NAME_SIZE];
            assert_true(i < 1000000u);
            snprintf(name, sizeof(name), "aet-%u", base + i);
            uint32_t s = topo_shard_of(
                aet_topo->cluster_id, AET_SHARDS, name, strlen(name));
            if (s == j % AET_SHARDS) {
                memcpy(aet_streams[j], name, sizeof(name));
                aet_stream_shard[j] = s;
                i++;
                break;
            }
        }
    }
    snprintf(aet_streams[AET_ACK_STREAM], AET_NAME_SIZE, "aet-ack-%u", base);
    aet_stream_shard[AET_ACK_STREAM]
        = topo_shard_of(aet_topo->cluster_id, AET_SHARDS,
            aet_streams[AET_ACK_STREAM], strlen(aet_streams[AET_ACK_STREAM]));
}

/* Appends the harness's admin key to the cluster's keyring as an admin
 * client (the syntax of net/keyring.h). */
static void
aet_keyring_admit_harness(const char *cdir)
{
    char    path[HARNESS_PATH_SIZE + 32], hex[65];
    uint8_t pk[32], sk[64];

    harness_admin_keypair(pk, sk);
    sodium_memzero(sk, sizeof(sk));
    sodium_bin2hex(hex, sizeof(hex), pk, sizeof(pk));
    snprintf(path, sizeof(path), "%s/keyring", cdir);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    assert_true(fprintf(f, "client harness-admin admin %s\n", hex) > 0);
    assert_int_equal(fclose(f), 0);
}

static void
aet_client_opts(mrd_client_opts *opts, const char *region)
{
    mrd_client_opts_init(opts);
    /* Generous per attempt: a retry on another node after a slow first
     * attempt could write an append twice (its idempotency key reaches
     * that node only with the append), which the dot checks would then
     * report. */
    opts->timeout_ms         = harness_ms(20000);
    opts->attempt_timeout_ms = harness_ms(8000);
    opts->region             = region;
}

static void
aet_cluster_start(void)
{
    char cdir[HARNESS_PATH_SIZE + 8], port_text[16], out[8192];
    assert_int_equal(
        harness_tmpdir_make("meridian-aetest-", aet_dir, sizeof(aet_dir)), 0);
    snprintf(cdir, sizeof(cdir), "%s/c", aet_dir);
    uint16_t base = harness_free_ports(AET_NODES, 1);
    assert_int_not_equal(base, 0);
    snprintf(port_text, sizeof(port_text), "%u", (unsigned) base);
    const char *init[] = { "cluster", "init", "--dir", cdir, "--regions",
        "a,b,c", "--nodes-per-region", "2", "--replicas-per-region", "2",
        "--shards", "8", "--base-port", port_text, NULL };
    int         rv     = harness_run_ctl(init, out, sizeof(out));
    if (rv != 0) {
        fail_msg("meridianctl cluster init exited %d: %s", rv, out);
    }
    assert_non_null(strstr(out, "6 node configs"));
    aet_topo_load(cdir);
    aet_keyring_admit_harness(cdir);

    for (uint32_t i = 0; i < AET_NODES; i++) {
        struct aet_node *n = &aet_nodes[i];
        assert_int_equal(harness_node_init(&n->h, i + 1), 0);
        n->id     = i + 1;
        n->region = aet_region_of(n->id);
        n->h.port = (uint16_t) (base + i);
        snprintf(n->cfg, sizeof(n->cfg), "%s/node-%u.json", cdir, n->id);
        const char *args[] = { "--config", n->cfg, NULL };
        assert_int_equal(harness_node_start(&n->h, args), 0);
    }
    struct harness_node *all[AET_NODES];
    for (uint32_t i = 0; i < AET_NODES; i++) {
        all[i] = &aet_nodes[i].h;
    }
    assert_int_equal(harness_nodes_wait_joined(all, AET_NODES), 0);
    for (uint32_t i = 0; i < AET_NODES; i++) {
        struct aet_node     *n   = &aet_nodes[i];
        struct harness_node *one = &n->h;
        mrd_client_opts      opts;
        aet_client_opts(&opts, NULL);
        assert_int_equal(harness_client_open(&one, 1, &opts, &n->solo), MRD_OK);
    }
    for (uint32_t r = 0; r < AET_REGIONS; r++) {
        struct aet_writer   *w     = &aet_writers[r];
        struct harness_node *two[] = { &aet_nodes[r * AET_PER_REGION].h,
            &aet_nodes[r * AET_PER_REGION + 1].h };
        mrd_client_opts      opts;
        aet_client_opts(&opts, aet_region_names[r]);
        w->region = r;
        assert_int_equal(
            harness_client_open(two, AET_PER_REGION, &opts, &w->client),
            MRD_OK);
    }
}

/* ------------------------------------------------------------ raw I/O -- */

/* One raw request on the node's own secure dialer (as the harness's
 * admin); the reply's frame is opened into *frame and the message goes to
 * the caller (nng_msg_free). The dialer is left to process exit: NNG
 * 1.5.2's nng_close() can hang after a dropped connection. */
static nng_msg *
aet_raw(struct aet_node *n, struct proto_buf *req, struct proto_frame *frame)
{
    const char *why = NULL;
    nng_msg    *msg = NULL;

    assert_false(n->stopped);
    if (n->raw == NULL) {
        assert_int_equal(harness_lk_dial(n->h.url, &n->raw), 0);
    }
    assert_int_equal(proto_buf_status(req), MRD_OK);
    /* The longest answer: an append waiting for its ack level. */
    int rv
        = harness_lk_call(n->raw, req->data, req->len, &msg, harness_ms(40000));
    proto_buf_fini(req);
    if (rv != 0) {
        char refusal[256];
        lk_refusal(n->raw, refusal, sizeof(refusal));
        fail_msg("node %u: no reply on the secure link (%s)", n->id, refusal);
    }
    rv = proto_reply_open(nng_msg_body(msg), nng_msg_len(msg), frame, &why);
    if (rv != MRD_OK) {
        nng_msg_free(msg);
        fail_msg("node %u: bad reply: %s (%s)", n->id, mrd_errname(rv), why);
    }
    return msg;
}

/* Every counter the test reads, of every running node, from one STATS
 * each. */
static void
aet_snapshot(struct aet_snap *s)
{
    memset(s, 0, sizeof(*s));
    for (uint32_t i = 0; i < AET_NODES; i++) {
        struct aet_node   *n = &aet_nodes[i];
        struct proto_buf   req;
        struct proto_frame frame;
        if (n->stopped) {
            continue;
        }
        proto_buf_init(&req, 256);
        proto_empty_req_encode(&req, PROTO_T_STATS);
        nng_msg *msg = aet_raw(n, &req, &frame);
        assert_int_equal(frame.status, MRD_OK);
        struct {
            const char *name;
            uint64_t   *value;
        } want[] = { { "pull_events_remote", &s->remote[i] },
            { "pull_events_local", &s->local[i] },
            { "pulls_blocked", &s->blocked[i] },
            { "events_replicated", &s->replicated[i] } };
        for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
            if (proto_stats_rep_find(&frame.body, want[k].name, want[k].value)
                != MRD_OK) {
                nng_msg_free(msg);
                fail_msg("node %u has no counter %s", n->id, want[k].name);
            }
        }
        nng_msg_free(msg);
    }
}

static uint64_t
aet_stat(struct aet_node *n, const char *name)
{
    struct proto_buf   req;
    struct proto_frame frame;
    uint64_t           value = 0;

    proto_buf_init(&req, 256);
    proto_empty_req_encode(&req, PROTO_T_STATS);
    nng_msg *msg = aet_raw(n, &req, &frame);
    assert_int_equal(frame.status, MRD_OK);
    int rv = proto_stats_rep_find(&frame.body, name, &value);
    nng_msg_free(msg);
    if (rv != MRD_OK) {
        fail_msg("node %u has no counter %s", n->id, name);
    }
    return value;
}

/* Prints the counters' growth from `before` to `after`, per node. */
static void
aet_snap_print(const char *what, const struct aet_snap *before,
    const struct aet_snap *after)
{
    printf("antientropy_test: %s: per node (region) pull_events_remote / "
           "pull_events_local / pulls_blocked / events_replicated:\n",
        what);
    for (uint32_t i = 0; i < AET_NODES; i++) {
        printf("  node %u (%s): %" PRIu64 " / %" PRIu64 " / %" PRIu64
               " / %" PRIu64 "\n",
            i + 1, aet_region_names[aet_nodes[i].region],
            after->remote[i] - before->remote[i],
            after->local[i] - before->local[i],
            after->blocked[i] - before->blocked[i],
            after->replicated[i] - before->replicated[i]);
    }
}

/* Sum over a region's nodes of pull_events_remote's growth. */
static uint64_t
aet_region_remote(
    const struct aet_snap *before, const struct aet_snap *after, uint32_t r)
{
    uint64_t sum = 0;
    for (uint32_t i = r * AET_PER_REGION; i < (r + 1) * AET_PER_REGION; i++) {
        sum += after->remote[i] - before->remote[i];
    }
    return sum;
}

/* ---------------------------------------------------------------- logs -- */

/* Reads every shard log of node n (on its own client) into *out. Returns
 * MRD_OK or the read's error. */
static int
aet_log_read(struct aet_node *n, struct aet_log *out)
{
    out->count = 0;
    for (uint32_t s = 0; s < AET_SHARDS; s++) {
        uint64_t after = 0;
        for (;;) {
            mrd_events *batch = NULL;
            int         rv    = mrd_read_log(n->solo, s, after, 1000, &batch);
            if (rv != MRD_OK) {
                return rv;
            }
            size_t count = mrd_events_count(batch);
            for (size_t j = 0; j < count; j++) {
                const mrd_event *e = mrd_events_at(batch, j);
                if (out->count == out->cap) {
                    out->cap = out->cap == 0 ? 4096 : out->cap * 2;
                    out->ev  = realloc(out->ev, out->cap * sizeof(*out->ev));
                    assert_non_null(out->ev);
                }
                out->ev[out->count++] = (struct aet_ev) { .dot = e->dot,
                    .stream = aet_stream_index(e->stream),
                    .shard  = s };
            }
            if (count > 0) {
                after = mrd_events_next(batch);
            }
            mrd_events_free(batch);
            if (count == 0) {
                break;
            }
        }
    }
    return MRD_OK;
}

/* Waits (bounded: ms, scaled) until every node in mask holds as many
 * events as were acknowledged. Returns how long it took. */
static long
aet_wait_held(uint32_t mask, uint32_t ms, const char *what)
{
    struct aet_log log = { 0 };
    size_t         held[AET_NODES];
    uint32_t       done  = 0;
    long           t0    = aet_now_ms();
    long           limit = (long) harness_ms(ms);

    for (uint32_t i = 0; i < AET_NODES; i++) {
        held[i] = 0;
    }
    for (;;) {
        for (uint32_t i = 0; i < AET_NODES; i++) {
            if ((mask & (1u << i)) == 0 || (done & (1u << i)) != 0) {
                continue;
            }
            if (aet_log_read(&aet_nodes[i], &log) == MRD_OK) {
                held[i] = log.count;
                if (log.count >= aet_written.count) {
                    done |= 1u << i;
                }
            }
        }
        if (done == mask) {
            break;
        }
        if (aet_now_ms() - t0 > limit) {
            char   text[512];
            size_t len = 0;
            for (uint32_t i = 0; i < AET_NODES; i++) {
                if ((mask & (1u << i)) != 0) {
                    len += (size_t) snprintf(text + len, sizeof(text) - len,
                        " node %u: %zu;", i + 1, held[i]);
                }
            }
            free(log.ev);
            fail_msg("%s: after %ld ms, not every node holds the %zu events "
                     "acknowledged:%s",
                what, aet_now_ms() - t0, aet_written.count, text);
        }
        harness_sleep_ms(AET_POLL_MS);
    }
    free(log.ev);
    return aet_now_ms() - t0;
}

/* Node n's shard logs hold exactly the acknowledged dots, each once, in its
 * stream's shard, each origin's in seq order along each log. */
static void
aet_verify_node(
    struct aet_node *n, const struct aet_dots *sorted, const char *what)
{
    struct aet_log log = { 0 };
    int            rv  = aet_log_read(n, &log);
    if (rv != MRD_OK) {
        fail_msg("%s: reading node %u's logs: %s (%s)", what, n->id,
            mrd_errname(rv), mrd_errdetail());
    }
    /* Per-origin order along each log. */
    for (uint32_t s = 0; s < AET_SHARDS; s++) {
        uint64_t last[AET_NODES + 1] = { 0 };
        for (size_t i = 0; i < log.count; i++) {
            const struct aet_ev *e = &log.ev[i];
            if (e->shard != s) {
                continue;
            }
            if (e->dot.origin < 1 || e->dot.origin > AET_NODES) {
                fail_msg("%s: node %u shard %u holds a dot of unknown origin "
                         "%" PRIu64,
                    what, n->id, s, e->dot.origin);
            }
            if (e->dot.seq <= last[e->dot.origin]) {
                fail_msg("%s: node %u shard %u: origin %" PRIu64 " seq %" PRIu64
                         " after seq %" PRIu64 " (out of order or twice)",
                    what, n->id, s, e->dot.origin, e->dot.seq,
                    last[e->dot.origin]);
            }
            last[e->dot.origin] = e->dot.seq;
            if (e->stream >= AET_ALL_STREAMS
                || aet_stream_shard[e->stream] != s) {
                fail_msg("%s: node %u shard %u holds dot %" PRIu64 ":%" PRIu64
                         " of a stream not written or not of this shard",
                    what, n->id, s, e->dot.origin, e->dot.seq);
            }
        }
    }
    /* The same set as acknowledged: no duplicate, nothing missing, nothing
     * extra, each in its stream. */
    if (log.count > 0) {
        qsort(log.ev, log.count, sizeof(*log.ev), aet_ev_cmp);
    }
    for (size_t i = 1; i < log.count; i++) {
        if (aet_dot_cmp(&log.ev[i - 1].dot, &log.ev[i].dot) == 0) {
            fail_msg("%s: node %u holds dot %" PRIu64 ":%" PRIu64 " twice",
                what, n->id, log.ev[i].dot.origin, log.ev[i].dot.seq);
        }
    }
    size_t i = 0, j = 0;
    while (i < log.count || j < sorted->count) {
        int c = i == log.count ? 1
            : j == sorted->count
            ? -1
            : aet_dot_cmp(&log.ev[i].dot, &sorted->d[j].dot);
        if (c < 0) {
            fail_msg("%s: node %u holds dot %" PRIu64 ":%" PRIu64
                     " that no append acknowledged",
                what, n->id, log.ev[i].dot.origin, log.ev[i].dot.seq);
        }
        if (c > 0) {
            fail_msg("%s: node %u lacks acknowledged dot %" PRIu64 ":%" PRIu64
                     " (stream %s; it holds %zu of %zu events)",
                what, n->id, sorted->d[j].dot.origin, sorted->d[j].dot.seq,
                aet_streams[sorted->d[j].stream], log.count, sorted->count);
        }
        if (log.ev[i].stream != sorted->d[j].stream) {
            fail_msg("%s: node %u holds dot %" PRIu64 ":%" PRIu64
                     " in another stream than it was written to",
                what, n->id, log.ev[i].dot.origin, log.ev[i].dot.seq);
        }
        i++;
        j++;
    }
    free(log.ev);
}

/* Every node (but a stopped one) against every acknowledged dot. */
static void
aet_verify_all(const char *what)
{
    struct aet_dots sorted = { 0 };
    for (size_t i = 0; i < aet_written.count; i++) {
        assert_true(aet_dots_add(
            &sorted, aet_written.d[i].dot, aet_written.d[i].stream));
    }
    if (sorted.count > 0) {
        qsort(sorted.d, sorted.count, sizeof(*sorted.d), aet_dots_cmp);
    }
    for (size_t i = 1; i < sorted.count; i++) {
        if (aet_dot_cmp(&sorted.d[i - 1].dot, &sorted.d[i].dot) == 0) {
            fail_msg("%s: two appends acknowledged dot %" PRIu64 ":%" PRIu64,
                what, sorted.d[i].dot.origin, sorted.d[i].dot.seq);
        }
    }
    for (uint32_t i = 0; i < AET_NODES; i++) {
        if (!aet_nodes[i].stopped) {
            aet_verify_node(&aet_nodes[i], &sorted, what);
        }
    }
    free(sorted.d);
}

/* ------------------------------------------------------------- writers -- */

/* Appends w->want events in batches of 1..AET_BATCH_MAX to random
 * streams, ack local, recording every acknowledged dot. Stops at the first
 * failure, which it records (this may run on a thread: no cmocka here). */
static void
aet_write(struct aet_writer *w)
{
    mrd_event_in evs[AET_BATCH_MAX];
    char         data[AET_BATCH_MAX][48];
    uint32_t     done = 0;

    w->fatal   = 0;
    w->appends = 0;
    while (done < w->want) {
        uint32_t batch = 1 + harness_rand32(&w->rng) % AET_BATCH_MAX;
        if (batch > w->want - done) {
            batch = w->want - done;
        }
        uint32_t stream = harness_rand32(&w->rng) % AET_STREAMS;
        for (uint32_t k = 0; k < batch; k++) {
            snprintf(data[k], sizeof(data[k]), "{\"region\":\"%s\",\"k\":%u}",
                aet_region_names[w->region], done + k);
            evs[k] = (mrd_event_in) { .type = "AeTested",
                .data                       = data[k],
                .data_size                  = strlen(data[k]),
                .content_type               = "application/json" };
        }
        mrd_append_result res;
        memset(&res, 0, sizeof(res));
        int rv = mrd_append(
            w->client, aet_streams[stream], evs, batch, NULL, &res);
        w->appends++;
        if (rv != MRD_OK) {
            w->fatal = rv;
            snprintf(w->why, sizeof(w->why),
                "region %s: append %u to %s: %s (%s)",
                aet_region_names[w->region], w->appends, aet_streams[stream],
                mrd_errname(rv), mrd_errdetail());
            return;
        }
        if (res.count != batch) {
            w->fatal = MRD_EPROTO;
            snprintf(w->why, sizeof(w->why),
                "region %s: append of %u events acknowledged %u",
                aet_region_names[w->region], batch, res.count);
            return;
        }
        for (uint32_t k = 0; k < batch; k++) {
            mrd_dot d = { res.first_dot.origin, res.first_dot.seq + k };
            if (!aet_dots_add(&w->dots, d, stream)) {
                w->fatal = MRD_ENOMEM;
                snprintf(w->why, sizeof(w->why), "out of memory");
                return;
            }
        }
        if (aet_region_of(res.first_dot.origin) != w->region) {
            /* The link figures assume each region's events were written
             * there: a failover to another region would skew them. */
            w->fatal = MRD_EUNAVAIL;
            snprintf(w->why, sizeof(w->why),
                "region %s: an append to %s was taken by node %" PRIu64
                ", of another region",
                aet_region_names[w->region], aet_streams[stream],
                res.first_dot.origin);
            return;
        }
        done += batch;
    }
}

static void *
aet_write_thread(void *arg)
{
    aet_write(arg);
    return NULL;
}

/* Records what the writer wrote; fails the test on its error. */
static void
aet_writer_done(struct aet_writer *w, const char *what)
{
    if (w->fatal != 0) {
        fail_msg("%s: %s", what, w->why);
    }
    aet_dots_merge(&aet_written, &w->dots);
}

/* Region r writes `events` on the test's thread. */
static void
aet_write_region(uint32_t r, uint32_t events, const char *what)
{
    struct aet_writer *w = &aet_writers[r];
    w->want              = events;
    aet_write(w);
    aet_writer_done(w, what);
}

/* ---------------------------------------------------------- raw appends -- */

/* Appends one event to the ack stream on node n itself (a raw APPEND on
 * its socket: a client would route the stream to the shard's first replica
 * of the region), asking for `level` with `count`. Checks that n took it
 * and records its dot. */
static void
aet_ack_append(struct aet_node *n, int level, uint32_t count, uint32_t wait_ms,
    struct proto_append_rep *rep, long *took_ms)
{
    struct proto_buf   req;
    struct proto_frame frame;
    const char        *why    = NULL;
    const char        *stream = aet_streams[AET_ACK_STREAM];
    char               data[64];
    snprintf(data, sizeof(data), "ack %d on node %u", level, n->id);
    mrd_event_in ev
        = { .type = "AeAcked", .data = data, .data_size = strlen(data) };
    struct proto_ack ack = { (uint32_t) level, count, wait_ms };

    proto_buf_init(&req, 4096);
    assert_int_equal(proto_append_req_encode_ack(&req, stream, strlen(stream),
                         MRD_EXPECT_ANY, NULL, 0, &ev, NULL, 1, &ack, NULL),
        MRD_OK);
    long     t0  = aet_now_ms();
    nng_msg *msg = aet_raw(n, &req, &frame);
    *took_ms     = aet_now_ms() - t0;
    if (frame.type != PROTO_T_APPEND || frame.status != MRD_OK) {
        struct proto_str text = { NULL, 0 };
        bool             has_version;
        int64_t          version;
        struct proto_rd  body = frame.body;
        if (proto_error_decode(&body, &text, &has_version, &version, &why)
            != MRD_OK) {
            text = (struct proto_str) { "", 0 };
        }
        fail_msg("append to %s on node %u (ack %d, count %u): type %u, %s "
                 "'%.*s'",
            stream, n->id, level, count, frame.type,
            mrd_errname((int) frame.status), (int) text.len, text.ptr);
    }
    memset(rep, 0, sizeof(*rep));
    int rv = proto_append_rep_decode(&frame.body, rep, &why);
    nng_msg_free(msg);
    if (rv != MRD_OK) {
        fail_msg(
            "append reply from node %u: %s (%s)", n->id, mrd_errname(rv), why);
    }
    if (rep->origin != n->id || rep->count != 1) {
        fail_msg("a raw append on node %u was taken as %u events by node "
                 "%" PRIu64,
            n->id, rep->count, rep->origin);
    }
    assert_true(aet_dots_add(
        &aet_written, (mrd_dot) { rep->origin, rep->seq }, AET_ACK_STREAM));
    if (!rep->ack_asked) {
        fail_msg("node %u answered an append that asked for ack %d without "
                 "saying what it reached",
            n->id, level);
    }
}

/* ---------------------------------------------------------------- steps -- */

/* Before anything is counted: an event from each region reaches every
 * node, and the last redials (at most 1 s apart) are done, so every node
 * sees every other as live and the designated pullers are settled. */
static void
aet_warm_up(void)
{
    for (uint32_t r = 0; r < AET_REGIONS; r++) {
        aet_write_region(r, 1, "warm-up");
    }
    long ms = aet_wait_held((1u << AET_NODES) - 1u, AET_CONVERGE_MS, "warm-up");
    harness_sleep_ms(harness_ms(1500));
    printf("antientropy_test: warm-up: every node held the first events in "
           "%ld ms\n",
        ms);
}

/* 1: region a writes; each remote region receives each event once. */
static void
aet_step_link_economy(void)
{
    struct aet_snap before, after;
    aet_snapshot(&before);
    long t0 = aet_now_ms();
    aet_write_region(0, AET_N, "1 (region a writes)");
    long wrote = aet_now_ms() - t0;
    long ms    = aet_wait_held(
           (1u << AET_NODES) - 1u, AET_CONVERGE_MS, "1 (link economy)");
    harness_sleep_ms(harness_ms(AET_SETTLE_MS));
    aet_snapshot(&after);
    printf("antientropy_test: 1: %u events written in region a in %ld ms "
           "(%u appends), on every node %ld ms later\n",
        AET_N, wrote, aet_writers[0].appends, ms);
    aet_snap_print("1", &before, &after);
    uint64_t got[AET_REGIONS];
    for (uint32_t r = 0; r < AET_REGIONS; r++) {
        got[r] = aet_region_remote(&before, &after, r);
    }
    printf("antientropy_test: 1: events received from other regions: "
           "a %" PRIu64 ", b %" PRIu64 ", c %" PRIu64 " (want 0, %u, %u; a "
           "full mesh would give about %u per b or c node)\n",
        got[0], got[1], got[2], AET_N, AET_N, 4 * AET_N);
    for (uint32_t i = 0; i < AET_NODES; i++) {
        uint64_t replicated = after.replicated[i] - before.replicated[i];
        if (aet_nodes[i].region != 0 && replicated != AET_N) {
            fail_msg("1: node %u applied %" PRIu64 " replicated events, want "
                     "%u",
                i + 1, replicated, AET_N);
        }
    }
    if (got[0] != 0 || got[1] != AET_N || got[2] != AET_N) {
        fail_msg("1: link economy: regions a, b, c received %" PRIu64
                 ", %" PRIu64 ", %" PRIu64 " events in pull replies from "
                 "other regions; want 0, %u, %u",
            got[0], got[1], got[2], AET_N, AET_N);
    }
}

/* 2: every region writes at once; each region receives the other two's
 * events once. */
static void
aet_step_all_regions(void)
{
    struct aet_snap before, after;
    aet_snapshot(&before);
    long t0 = aet_now_ms();
    for (uint32_t r = 0; r < AET_REGIONS; r++) {
        aet_writers[r].want = AET_M;
        assert_int_equal(pthread_create(&aet_writers[r].thread, NULL,
                             aet_write_thread, &aet_writers[r]),
            0);
    }
    for (uint32_t r = 0; r < AET_REGIONS; r++) {
        assert_int_equal(pthread_join(aet_writers[r].thread, NULL), 0);
    }
    long wrote = aet_now_ms() - t0;
    for (uint32_t r = 0; r < AET_REGIONS; r++) {
        aet_writer_done(&aet_writers[r], "2 (every region writes)");
    }
    long ms = aet_wait_held(
        (1u << AET_NODES) - 1u, AET_CONVERGE_MS, "2 (every region writes)");
    harness_sleep_ms(harness_ms(AET_SETTLE_MS));
    aet_snapshot(&after);
    printf("antientropy_test: 2: %u events written in each region in %ld "
           "ms, on every node %ld ms later (%zu events in all)\n",
        AET_M, wrote, ms, aet_written.count);
    aet_snap_print("2", &before, &after);
    aet_verify_all("2 (every region writes)");
    uint64_t got[AET_REGIONS];
    for (uint32_t r = 0; r < AET_REGIONS; r++) {
        got[r] = aet_region_remote(&before, &after, r);
    }
    printf("antientropy_test: 2: events received from other regions: "
           "a %" PRIu64 ", b %" PRIu64 ", c %" PRIu64 " (want %u each)\n",
        got[0], got[1], got[2], 2 * AET_M);
    for (uint32_t r = 0; r < AET_REGIONS; r++) {
        if (got[r] != 2 * AET_M) {
            fail_msg("2: region %s received %" PRIu64 " events in pull "
                     "replies from other regions; want exactly %u (the "
                     "events written in the other two)",
                aet_region_names[r], got[r], 2 * AET_M);
        }
    }
}

/* 3: a region-b node stops; the other takes over its links. */
static void
aet_step_failover(uint32_t *rng)
{
    uint32_t         bi = AET_PER_REGION + harness_rand32(rng) % AET_PER_REGION;
    struct aet_node *stopped = &aet_nodes[bi];
    struct aet_node *other = &aet_nodes[bi == AET_PER_REGION ? bi + 1 : bi - 1];
    printf("antientropy_test: 3: stopping node %u (region b); node %u must "
           "take over\n",
        stopped->id, other->id);
    assert_int_equal(harness_node_signal(&stopped->h, SIGSTOP), 0);
    stopped->stopped = true;
    struct aet_snap before, after;
    aet_snapshot(&before);
    long t0 = aet_now_ms();
    aet_write_region(0, AET_K, "3 (region a writes, a b node stopped)");
    uint32_t running = ((1u << AET_NODES) - 1u) & ~(1u << bi);
    aet_wait_held(running, AET_FAILOVER_MS, "3 (failover to the other b node)");
    printf("antientropy_test: 3: %u events written in region a; every "
           "running node (node %u too) held them %ld ms after the first "
           "append\n",
        AET_K, other->id, aet_now_ms() - t0);
    harness_sleep_ms(harness_ms(AET_SETTLE_MS));
    aet_snapshot(&after);
    aet_snap_print("3 (one b node stopped)", &before, &after);
    aet_verify_all("3 (one b node stopped)");

    assert_int_equal(harness_node_signal(&stopped->h, SIGCONT), 0);
    stopped->stopped = false;
    long ms
        = aet_wait_held(1u << bi, AET_CONVERGE_MS, "3 (the stopped node back)");
    printf("antientropy_test: 3: node %u, resumed, caught up in %ld ms\n",
        stopped->id, ms);
    aet_verify_all("3 (the stopped node back)");
}

/* 4: ack levels counted from relayed knowledge, on each region-a node. */
static void
aet_step_acks(void)
{
    uint32_t shard = aet_stream_shard[AET_ACK_STREAM];
    uint32_t cand[TOPO_NODES_MAX];
    uint32_t cand_count = topo_candidates(aet_topo, shard, 0, cand, 8);
    assert_int_equal(cand_count, AET_PER_REGION);
    printf("antientropy_test: 4: stream %s, shard %u: node %u is region a's "
           "designated puller, node %u pulls only from it\n",
        aet_streams[AET_ACK_STREAM], shard, cand[0], cand[1]);
    uint32_t wait_ms = harness_ms(10000);
    if (wait_ms > MRD_ACK_WAIT_MS_MAX) {
        wait_ms = MRD_ACK_WAIT_MS_MAX;
    }
    /* The one that never talks to regions b and c first: nothing it learnt
     * from the other's append can help it. */
    for (int k = 1; k >= 0; k--) {
        struct aet_node        *n = &aet_nodes[cand[k] - 1];
        struct proto_append_rep rep;
        long                    ms;
        aet_ack_append(n, MRD_ACK_GLOBAL, 3, wait_ms, &rep, &ms);
        printf("antientropy_test: 4: MRD_ACK_GLOBAL n=3 on node %u (%s): "
               "reached %u, %u regions, %u replicas, in %ld ms\n",
            n->id, k == 0 ? "designated" : "not designated", rep.ack_level,
            rep.ack_regions, rep.ack_replicas, ms);
        if (rep.ack_level != MRD_ACK_GLOBAL || rep.ack_regions != 3) {
            fail_msg("4: MRD_ACK_GLOBAL n=3 on node %u (%s puller of shard "
                     "%u): reached level %u with %u regions and %u replicas "
                     "after %ld ms (MRD_EDURABILITY to a client); want "
                     "global with 3 regions",
                n->id, k == 0 ? "the designated" : "not the designated", shard,
                rep.ack_level, rep.ack_regions, rep.ack_replicas, ms);
        }
        aet_ack_append(n, MRD_ACK_REGION, 2, wait_ms, &rep, &ms);
        printf("antientropy_test: 4: MRD_ACK_REGION k=2 on node %u: reached "
               "%u, %u replicas, in %ld ms\n",
            n->id, rep.ack_level, rep.ack_replicas, ms);
        if (rep.ack_level != MRD_ACK_REGION || rep.ack_replicas != 2) {
            fail_msg("4: MRD_ACK_REGION k=2 on node %u: reached level %u with "
                     "%u replicas after %ld ms; want region with 2",
                n->id, rep.ack_level, rep.ack_replicas, ms);
        }
    }
}

/* ---------------------------------------------------------------- test -- */

static void
test_antientropy(void **state)
{
    (void) state;
    long        t_start = aet_now_ms();
    uint32_t    seed    = (uint32_t) time(NULL);
    const char *env     = getenv("MRD_TEST_SEED");

    if (env != NULL) {
        seed = (uint32_t) strtoul(env, NULL, 10);
    }
    printf("antientropy_test: seed %u (replay with MRD_TEST_SEED=%u)\n", seed,
        seed);
    uint32_t rng = seed | 1u;
    for (uint32_t r = 0; r < AET_REGIONS; r++) {
        aet_writers[r].rng = (seed ^ (0x9e3779b9u * (r + 1))) | 1u;
    }

    aet_cluster_start();
    aet_streams_pick(&rng);
    aet_warm_up();

    aet_step_link_economy();
    aet_step_all_regions();
    aet_step_failover(&rng);
    aet_step_acks();

    /* The ack appends reach every node too, and nothing was refused. */
    aet_wait_held((1u << AET_NODES) - 1u, AET_CONVERGE_MS, "the end");
    aet_verify_all("the end");
    for (uint32_t i = 0; i < AET_NODES; i++) {
        uint64_t digests = aet_stat(&aet_nodes[i], "rejected_digest");
        uint64_t batches = aet_stat(&aet_nodes[i], "rejected_replication");
        if (digests != 0 || batches != 0) {
            fail_msg("node %u refused %" PRIu64 " digests and %" PRIu64
                     " replicated batches",
                i + 1, digests, batches);
        }
    }

    for (uint32_t r = 0; r < AET_REGIONS; r++) {
        mrd_client_close(aet_writers[r].client);
        aet_writers[r].client = NULL;
    }
    for (uint32_t i = 0; i < AET_NODES; i++) {
        mrd_client_close(aet_nodes[i].solo);
        aet_nodes[i].solo = NULL;
    }
    for (uint32_t i = 0; i < AET_NODES; i++) {
        assert_int_equal(harness_node_stop(&aet_nodes[i].h), 0);
        harness_node_fini(&aet_nodes[i].h);
    }
    free(aet_written.d);
    memset(&aet_written, 0, sizeof(aet_written));
    free(aet_topo);
    aet_topo = NULL;
    if (getenv("MRD_TEST_KEEP") == NULL
        || strcmp(getenv("MRD_TEST_KEEP"), "1") != 0) {
        harness_rmrf(aet_dir);
    }
    printf("antientropy_test: done in %ld ms\n", aet_now_ms() - t_start);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_antientropy, harness_teardown),
    };
    return cmocka_run_group_tests_name(
        "antientropy", tests, NULL, harness_teardown);
}
