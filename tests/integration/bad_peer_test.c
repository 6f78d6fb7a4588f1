/*
 * bad_peer_test.c: a peer that answers PULLs with bad replies gets none of
 * them into a node, and does not stop the node from pulling or from serving
 * its clients (docs/PROTOCOL.md 4.7 and 5.7; node/puller.c, node/repl.c and
 * replication/ae.h's ae_batch_check).
 *
 * Replication trusts no peer: a reply whose shape cannot be right must be
 * refused whole, in one transaction that writes nothing, and the next pull
 * must go out as if nothing happened. Real nodes never send such replies,
 * so the other tests cannot get there; here the test itself plays peer 9.
 * It listens with a secure-link listener (net/linkio.h: the cluster id
 * below, node 9's harness key, which the node's harness keyring trusts, and
 * trusting only node 1's harness key) on 127.0.0.1 (a port the kernel
 * picks) and starts one real meridiand (node 1, 4 shards, a fixed cluster
 * id, static mode: --peers 9@<that socket>). One thread answers everything
 * the node sends: HINTs with an empty map, PULLs with an empty reply that
 * ends (scanned = after, the fake's vector) unless a scenario is armed for
 * the shard pulled, other requests with an error. Each request is checked
 * (from 1, our cluster id, a shard the node has).
 *
 * Scenarios, each answering the next PULL of one shard, in this order:
 *   - log seqs that repeat (5, 5) or go back (7, 6);
 *   - an event whose stream hashes to another shard (topo_shard_of, the
 *     node's own hash); a dot with seq 0;
 *   - one event more than the request's count;
 *   - one origin's events out of order (seq 5 then 3), or one dot twice;
 *   - a log seq past `scanned`, and one not after `after` (0);
 *   - a record with one byte of its data flipped (checksum) after a good
 *     one;
 *   - a reply that is not msgpack, one cut short, one of another type;
 *   - a good batch: origin 9, seqs 1..3 on one stream, end, vector {9: 3};
 *   - then, with after = 3: `scanned` below `after` (node/puller.c checks
 *     it before any batch: "the peer's log went backwards"), and a log seq
 *     not after `after`;
 *   - a second good batch, seqs 4..5 on the same stream.
 * Bad batches use an origin of their own each (100 + scenario), so one
 * wrongly taken cannot hide the next.
 *
 * After each: the node pulled the shard again (it kept pulling); a shape
 * error counts rejected_replication +1 and logs "refused a replicated
 * batch" with its reason, a reply that does not decode logs "pull failed"
 * and counts rejected_pull_reply +1; events_replicated did not move; none of
 * the batch's streams exists on the node; the shard logs hold no event but the
 * node's own and the good batches'. The good batches: events_replicated
 * +3 then +2, and the stream reads exactly those events through a client.
 * Between scenarios a client appends to and reads a stream of its own.
 * At the end: every request the node sent was well-formed, and its log has
 * no error line but the refusals.
 *
 * Every wait is bounded (scaled by MRD_TEST_TIMEOUT_MULTIPLIER). The fake
 * peer's socket is shut down and closed at the end on a helper thread with
 * a bounded wait, and abandoned if NNG 1.5.2's nng_close() hangs
 * (docs/ARCHITECTURE.md, "Living with NNG 1.5.2").
 */
#include <inttypes.h>
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
#include <sys/types.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"
#include "linkio.h"
#include "proto.h"
#include "topo.h"

#include <nng/nng.h>

#define BPT_SHARDS 4u
#define BPT_NODE_ID 1u
#define BPT_PEER_ID 9u
#define BPT_CLUSTER_HEX "b0ba5eed0123456789abcdef0badfeed"
/* The largest plaintext frame the fake peer's link carries: its replies
 * (BPT_REPLY_MAX) and the node's requests, with room. */
#define BPT_FRAME_MAX (16u * 1024u * 1024u)
/* The fake peer's receive timeout: how often its thread looks at `stop`. */
#define BPT_POLL_MS 50
/* Largest reply the fake peer writes (the node takes 4 MiB + 64 KiB). */
#define BPT_REPLY_MAX (4u * 1024u * 1024u)
/* Waits: polls BPT_WAIT_MS apart, up to BPT_WAIT_TRIES (10 s, scaled). */
#define BPT_WAIT_MS 50u
#define BPT_WAIT_TRIES 200u
#define BPT_NAME_SIZE 64u
/* The good batches' stream is in this shard. */
#define BPT_GOOD_SHARD 2u
#define BPT_CLIENT_STREAM "bpt-client"

/* ----------------------------------------------------------- scenarios -- */

enum bpt_kind {
    BPT_SEQ_REPEAT, /* log seqs 5, 5 */
    BPT_SEQ_BACK, /* log seqs 7, 6 */
    BPT_OTHER_SHARD, /* the second event's stream is of another shard */
    BPT_NO_DOT, /* the second event's dot has seq 0 */
    BPT_TOO_MANY, /* the request's count + 1 events */
    BPT_ORIGIN_BACK, /* one origin's seq 5 then 3 */
    BPT_ORIGIN_TWICE, /* one origin's seq 4 twice */
    BPT_PAST_SCANNED, /* log seqs 1, 2 with scanned 1 */
    BPT_AT_AFTER, /* log seqs after, after + 1 */
    BPT_FLIPPED, /* a good record, then one with a data byte flipped */
    BPT_GARBAGE, /* not msgpack at all */
    BPT_TRUNCATED, /* a well-formed reply, its last bytes cut */
    BPT_WRONG_TYPE, /* an OK reply of type HINT */
    BPT_BACKWARDS, /* scanned = after - 1 */
    BPT_GOOD, /* good_count events of origin 9, the next seqs */
};

enum bpt_expect {
    BPT_REFUSED, /* rejected_replication + 1, "refused a replicated batch" */
    BPT_PULL_FAILED, /* rejected_pull_reply + 1, "pull failed" */
    BPT_APPLIED, /* events_replicated + good_count */
};

struct bpt_scenario {
    const char     *name;
    enum bpt_kind   kind;
    uint32_t        shard;
    enum bpt_expect expect;
    const char     *why; /* in the node's log line; NULL: any reason */
    uint32_t        good_count; /* BPT_GOOD */
    /* Filled when it runs. */
    uint64_t origin;
    char     stream[BPT_NAME_SIZE];
    char     other[BPT_NAME_SIZE]; /* BPT_OTHER_SHARD: of another shard */
    uint32_t other_shard;
};

#define BPT_WHY_ORDER "log seq is out of order or outside (after, scanned]"
#define BPT_WHY_ORIGIN "has an origin's events out of order or twice"

static struct bpt_scenario bpt_scenarios[] = {
    { .name     = "log seqs repeat (5, 5)",
        .kind   = BPT_SEQ_REPEAT,
        .shard  = 0,
        .expect = BPT_REFUSED,
        .why    = BPT_WHY_ORDER },
    { .name     = "log seqs go back (7, 6)",
        .kind   = BPT_SEQ_BACK,
        .shard  = 1,
        .expect = BPT_REFUSED,
        .why    = BPT_WHY_ORDER },
    { .name     = "an event of another shard",
        .kind   = BPT_OTHER_SHARD,
        .shard  = 2,
        .expect = BPT_REFUSED,
        .why    = "a pulled event is not of the shard pulled" },
    { .name     = "a dot with seq 0",
        .kind   = BPT_NO_DOT,
        .shard  = 3,
        .expect = BPT_REFUSED,
        .why    = "a pulled event has no dot" },
    { .name     = "one event more than the request's count",
        .kind   = BPT_TOO_MANY,
        .shard  = 0,
        .expect = BPT_REFUSED,
        .why    = "a pull answer has more events than were asked for" },
    { .name     = "an origin's events out of order (seq 5, then 3)",
        .kind   = BPT_ORIGIN_BACK,
        .shard  = 1,
        .expect = BPT_REFUSED,
        .why    = BPT_WHY_ORIGIN },
    { .name     = "an origin's event twice (seq 4, 4)",
        .kind   = BPT_ORIGIN_TWICE,
        .shard  = 2,
        .expect = BPT_REFUSED,
        .why    = BPT_WHY_ORIGIN },
    { .name     = "a log seq past scanned",
        .kind   = BPT_PAST_SCANNED,
        .shard  = 3,
        .expect = BPT_REFUSED,
        .why    = BPT_WHY_ORDER },
    { .name     = "a log seq not after `after` (after 0)",
        .kind   = BPT_AT_AFTER,
        .shard  = 0,
        .expect = BPT_REFUSED,
        .why    = BPT_WHY_ORDER },
    { .name     = "a record with a flipped data byte",
        .kind   = BPT_FLIPPED,
        .shard  = 1,
        .expect = BPT_REFUSED,
        .why    = "record checksum mismatch" },
    { .name     = "a reply that is not msgpack",
        .kind   = BPT_GARBAGE,
        .shard  = 2,
        .expect = BPT_PULL_FAILED,
        .why    = NULL },
    { .name     = "a reply cut short",
        .kind   = BPT_TRUNCATED,
        .shard  = 3,
        .expect = BPT_PULL_FAILED,
        .why    = NULL },
    { .name     = "an OK reply of another type (HINT)",
        .kind   = BPT_WRONG_TYPE,
        .shard  = 0,
        .expect = BPT_PULL_FAILED,
        .why    = "the peer refused the pull" },
    { .name         = "a good batch: origin 9, seqs 1..3",
        .kind       = BPT_GOOD,
        .shard      = BPT_GOOD_SHARD,
        .expect     = BPT_APPLIED,
        .good_count = 3 },
    { .name     = "scanned below after",
        .kind   = BPT_BACKWARDS,
        .shard  = BPT_GOOD_SHARD,
        .expect = BPT_PULL_FAILED,
        .why    = "the peer's log went backwards" },
    { .name     = "a log seq not after `after` (after 3)",
        .kind   = BPT_AT_AFTER,
        .shard  = BPT_GOOD_SHARD,
        .expect = BPT_REFUSED,
        .why    = BPT_WHY_ORDER },
    { .name         = "another good batch: origin 9, seqs 4..5",
        .kind       = BPT_GOOD,
        .shard      = BPT_GOOD_SHARD,
        .expect     = BPT_APPLIED,
        .good_count = 2 },
};
#define BPT_SCENARIOS (sizeof(bpt_scenarios) / sizeof(bpt_scenarios[0]))

/* ------------------------------------------------------------ fake peer -- */

struct bpt_peer {
    struct lk_sock *lk; /* a linkio listener */
    struct lk_ctx  *ctx; /* the thread's one context */
    nng_aio        *aio; /* the thread's, waited on */
    nng_listener    listener;
    bool            open;
    char            url[HARNESS_URL_SIZE];
    pthread_t       thread;
    bool            running;
    atomic_bool     stop;

    pthread_mutex_t mu; /* guards everything below */
    /* The scenario for the next PULL of its shard; NULL: none. */
    struct bpt_scenario *armed;
    bool                 served; /* the armed reply went out */
    uint64_t             served_after; /* the request it answered */
    uint32_t             served_count;
    uint32_t             served_events; /* events in the reply */
    uint64_t             pulls_at_served; /* pulls[shard] then */
    /* What it saw. */
    uint64_t pulls[BPT_SHARDS];
    uint64_t hints;
    uint64_t others;
    uint64_t bad_requests; /* malformed, or not from node 1 of our cluster */
    uint64_t send_failures;
    char     bad_why[160];
    /* Its own log per shard, as the good batches wrote it: origin 9's last
     * seq (its vector). */
    uint64_t seq9[BPT_SHARDS];
};

static struct bpt_peer     bpt_fake;
static struct harness_node bpt_node;
static mrd_client         *bpt_client;
static uint8_t             bpt_cluster[TOPO_CLUSTER_ID_SIZE];
static char                bpt_peers_arg[HARNESS_URL_SIZE + 16];
/* Events of origins other than the node's own that must be on the node. */
static uint64_t bpt_foreign_expected;
static uint32_t bpt_client_appends;
static bool     bpt_ready; /* the group setup got everything up */

static void
bpt_be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t) (v & 0xffu);
        v >>= 8;
    }
}

static uint64_t
bpt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

static uint64_t
bpt_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/* A stream name "<prefix>-<i>" of the shard, for the smallest such i. */
static void
bpt_stream_in(char *out, const char *prefix, uint32_t shard)
{
    for (uint32_t i = 0; i < 100000u; i++) {
        snprintf(out, BPT_NAME_SIZE, "%s-%u", prefix, i);
        if (topo_shard_of(bpt_cluster, BPT_SHARDS, out, strlen(out)) == shard) {
            return;
        }
    }
    fail_msg("no stream name for shard %u", shard);
}

/* Appends one event of (origin, seq) on stream, at log_seq, to the reply;
 * flip: one byte of its data changed after the checksum was made. */
static void
bpt_add_event(struct proto_buf *out, struct proto_events_wr *w,
    uint64_t log_seq, uint64_t origin, uint64_t seq, const char *stream,
    bool flip)
{
    char                  data[48];
    struct proto_buf      rec;
    struct proto_event_in ev;

    int n = snprintf(
        data, sizeof data, "bad-peer:%" PRIu64 ":%" PRIu64, origin, seq);
    memset(&ev, 0, sizeof ev);
    ev.type = (struct proto_str) { "BadPeer", 7 };
    ev.data = (struct proto_str) { data, (uint32_t) n };
    proto_buf_init(&rec, 4096);
    int rv = proto_record_encode(&rec, origin, seq, bpt_now_ms() << 16,
        (struct proto_str) { stream, (uint32_t) strlen(stream) }, &ev);
    if (rv == MRD_OK && flip) {
        /* The data's first byte, found by its bytes: the record stays
         * well-formed msgpack, only its checksum no longer matches. */
        for (size_t i = 0; i + (size_t) n <= rec.len; i++) {
            if (memcmp(rec.data + i, data, (size_t) n) == 0) {
                rec.data[i] ^= 0x20u;
                break;
            }
        }
    }
    if (rv == MRD_OK) {
        proto_events_reply_add(out, w, w->count, log_seq, rec.data, rec.len);
    } else {
        fprintf(
            stderr, "fake peer: record did not encode: %s\n", mrd_errname(rv));
        out->overflow = true; /* not sent: the test fails on its wait */
    }
    proto_buf_fini(&rec);
}

/* The fake's vector for a shard: {9: seq9} or empty. */
static size_t
bpt_vv(uint32_t shard, uint8_t vv[PROTO_VV_ENTRY_SIZE])
{
    if (bpt_fake.seq9[shard] == 0) {
        return 0;
    }
    bpt_be64_put(vv, BPT_PEER_ID);
    bpt_be64_put(vv + 8, bpt_fake.seq9[shard]);
    return PROTO_VV_ENTRY_SIZE;
}

/* An empty reply that ends: nothing after `after` here. (fake.mu held) */
static void
bpt_reply_empty(struct proto_buf *out, const struct proto_pull_req *req)
{
    struct proto_events_wr w;
    uint8_t                vv[PROTO_VV_ENTRY_SIZE];
    size_t                 vv_len = bpt_vv(req->shard, vv);

    proto_events_reply_begin(out, PROTO_T_PULL, PROTO_PULL_REP_KEYS, &w);
    proto_events_reply_end(out, &w);
    proto_pull_rep_finish(out, req->after, true, vv, vv_len);
}

/* The armed scenario's reply to req. Returns the events it holds. (fake.mu
 * held) */
static uint32_t
bpt_reply_scenario(struct proto_buf *out, struct bpt_scenario *sc,
    const struct proto_pull_req *req)
{
    static const uint8_t garbage[] = { 0xc1, 0xc1, 0x93, 0x01, 0x08, 0xc1, 'n',
        'o', 't', ' ', 'm', 's', 'g', 'p', 'a', 'c', 'k' };
    struct proto_events_wr w;
    uint64_t               a = req->after, o = sc->origin, scanned = 0;
    uint8_t                vv[PROTO_VV_ENTRY_SIZE];
    size_t                 vv_len = 0;

    if (sc->kind == BPT_GARBAGE) {
        proto_wr_raw(out, garbage, sizeof garbage);
        return 0;
    }
    if (sc->kind == BPT_WRONG_TYPE) {
        proto_reply_begin(out, PROTO_T_HINT, MRD_OK);
        proto_wr_map(out, 0);
        return 0;
    }
    proto_events_reply_begin(out, PROTO_T_PULL, PROTO_PULL_REP_KEYS, &w);
    switch (sc->kind) {
    case BPT_SEQ_REPEAT:
        bpt_add_event(out, &w, a + 5, o, 1, sc->stream, false);
        bpt_add_event(out, &w, a + 5, o, 2, sc->stream, false);
        scanned = a + 5;
        break;
    case BPT_SEQ_BACK:
        bpt_add_event(out, &w, a + 7, o, 1, sc->stream, false);
        bpt_add_event(out, &w, a + 6, o, 2, sc->stream, false);
        scanned = a + 7;
        break;
    case BPT_OTHER_SHARD:
        bpt_add_event(out, &w, a + 1, o, 1, sc->stream, false);
        bpt_add_event(out, &w, a + 2, o, 2, sc->other, false);
        scanned = a + 2;
        break;
    case BPT_NO_DOT:
        bpt_add_event(out, &w, a + 1, o, 1, sc->stream, false);
        bpt_add_event(out, &w, a + 2, o, 0, sc->stream, false);
        scanned = a + 2;
        break;
    case BPT_TOO_MANY:
        for (uint32_t i = 1; i <= req->count + 1u; i++) {
            bpt_add_event(out, &w, a + i, o, i, sc->stream, false);
        }
        scanned = a + req->count + 1u;
        break;
    case BPT_ORIGIN_BACK:
        bpt_add_event(out, &w, a + 1, o, 5, sc->stream, false);
        bpt_add_event(out, &w, a + 2, o, 3, sc->stream, false);
        scanned = a + 2;
        break;
    case BPT_ORIGIN_TWICE:
        bpt_add_event(out, &w, a + 1, o, 4, sc->stream, false);
        bpt_add_event(out, &w, a + 2, o, 4, sc->stream, false);
        scanned = a + 2;
        break;
    case BPT_PAST_SCANNED:
        bpt_add_event(out, &w, a + 1, o, 1, sc->stream, false);
        bpt_add_event(out, &w, a + 2, o, 2, sc->stream, false);
        scanned = a + 1;
        break;
    case BPT_AT_AFTER:
        bpt_add_event(out, &w, a, o, 1, sc->stream, false);
        bpt_add_event(out, &w, a + 1, o, 2, sc->stream, false);
        scanned = a + 1;
        break;
    case BPT_FLIPPED:
    case BPT_TRUNCATED:
        bpt_add_event(out, &w, a + 1, o, 1, sc->stream, false);
        bpt_add_event(
            out, &w, a + 2, o, 2, sc->stream, sc->kind == BPT_FLIPPED);
        scanned = a + 2;
        break;
    case BPT_BACKWARDS:
        /* One event at the last log seq claimed, all before `after`. */
        bpt_add_event(out, &w, a > 1 ? a - 1 : 1, o, 1, sc->stream, false);
        scanned = a > 0 ? a - 1 : 0;
        break;
    case BPT_GOOD: {
        uint64_t seq = bpt_fake.seq9[sc->shard];
        for (uint32_t i = 1; i <= sc->good_count; i++) {
            bpt_add_event(
                out, &w, a + i, BPT_PEER_ID, seq + i, sc->stream, false);
        }
        scanned = a + sc->good_count;
        /* This is now the fake's log: its vector says so. */
        bpt_fake.seq9[sc->shard] = seq + sc->good_count;
        vv_len                   = bpt_vv(sc->shard, vv);
        break;
    }
    case BPT_GARBAGE:
    case BPT_WRONG_TYPE:
        break; /* answered above */
    }
    proto_events_reply_end(out, &w);
    proto_pull_rep_finish(out, scanned, true, vv, vv_len);
    if (sc->kind == BPT_TRUNCATED && proto_buf_status(out) == MRD_OK) {
        /* Keys 2..4 (scanned, end, an empty vector) are the last 7 bytes:
         * the body map is short of them, so not one whole value. */
        out->len -= 7;
    }
    return w.count;
}

/* Marks a request the node should not have sent. (fake.mu held) */
static void
bpt_bad_request(const char *why)
{
    bpt_fake.bad_requests++;
    snprintf(bpt_fake.bad_why, sizeof bpt_fake.bad_why, "%s", why);
}

/* One request in, its reply into out. *armed_out: the scenario answered. */
static void
bpt_answer(struct proto_buf *out, const void *buf, size_t len,
    struct bpt_scenario **armed_out, uint32_t *events_out,
    struct proto_pull_req *req_out)
{
    struct proto_frame    frame;
    struct proto_pull_req req;
    struct proto_hint_req hint;
    const char           *why = "?";

    *armed_out  = NULL;
    *events_out = 0;
    int rv      = proto_request_open(buf, len, &frame, &why);
    pthread_mutex_lock(&bpt_fake.mu);
    if (rv != MRD_OK) {
        bpt_bad_request(why);
        proto_reply_error(out, PROTO_T_NONE, (uint32_t) rv, why,
            rv == MRD_EPROTOVERSION, PROTO_VERSION);
        pthread_mutex_unlock(&bpt_fake.mu);
        return;
    }
    if (frame.type == PROTO_T_HINT) {
        rv = proto_hint_req_decode(&frame.body, &hint, &why);
        if (rv != MRD_OK || hint.from != BPT_NODE_ID) {
            bpt_bad_request(rv != MRD_OK ? why : "a HINT not from node 1");
        }
        bpt_fake.hints++;
        proto_reply_begin(out, PROTO_T_HINT, MRD_OK);
        proto_wr_map(out, 0);
        pthread_mutex_unlock(&bpt_fake.mu);
        return;
    }
    if (frame.type != PROTO_T_PULL) {
        bpt_fake.others++;
        proto_reply_error(out, frame.type, MRD_EINVAL,
            "fake peer: only PULL and HINT are served", false, 0);
        pthread_mutex_unlock(&bpt_fake.mu);
        return;
    }
    rv = proto_pull_req_decode(&frame.body, &req, &why);
    if (rv == MRD_OK
        && (req.shard >= BPT_SHARDS || req.from != BPT_NODE_ID
            || req.cluster.len != TOPO_CLUSTER_ID_SIZE
            || memcmp(req.cluster.ptr, bpt_cluster, TOPO_CLUSTER_ID_SIZE)
                != 0)) {
        rv  = MRD_EINVAL;
        why = "a PULL not from node 1 of our cluster, or of no shard";
    }
    if (rv != MRD_OK) {
        bpt_bad_request(why);
        proto_reply_error(out, PROTO_T_PULL, (uint32_t) rv, why, false, 0);
        pthread_mutex_unlock(&bpt_fake.mu);
        return;
    }
    bpt_fake.pulls[req.shard]++;
    *req_out = req;
    if (bpt_fake.armed != NULL && bpt_fake.armed->shard == req.shard) {
        *armed_out  = bpt_fake.armed;
        *events_out = bpt_reply_scenario(out, bpt_fake.armed, &req);
    } else {
        bpt_reply_empty(out, &req);
    }
    pthread_mutex_unlock(&bpt_fake.mu);
}

static void *
bpt_fake_main(void *arg)
{
    struct proto_buf out;
    nng_aio         *aio = bpt_fake.aio;

    (void) arg;
    proto_buf_init(&out, BPT_REPLY_MAX);
    while (!atomic_load(&bpt_fake.stop)) {
        struct bpt_scenario  *armed  = NULL;
        uint32_t              events = 0;
        struct proto_pull_req req;
        nng_msg              *msg = NULL;
        /* The next authenticated request, or a look at `stop`. */
        nng_aio_set_timeout(aio, BPT_POLL_MS);
        lk_ctx_recv(bpt_fake.ctx, aio);
        nng_aio_wait(aio);
        int rv = nng_aio_result(aio);
        if (rv == NNG_ETIMEDOUT) {
            continue;
        }
        if (rv != 0) {
            break; /* closed */
        }
        msg = nng_aio_get_msg(aio);
        nng_aio_set_msg(aio, NULL);
        memset(&req, 0, sizeof req);
        proto_buf_reset(&out);
        bpt_answer(
            &out, nng_msg_body(msg), nng_msg_len(msg), &armed, &events, &req);
        nng_msg_free(msg);
        if (proto_buf_status(&out) != MRD_OK) {
            fprintf(stderr, "fake peer: reply did not encode\n");
            continue; /* the node times out: a test failure, not a hang */
        }
        if (nng_msg_alloc(&msg, out.len) != 0) {
            continue;
        }
        memcpy(nng_msg_body(msg), out.data, out.len);
        /* Sealed and handed to NNG; a reply to a pipe that is gone is
         * dropped, as with rep0. */
        nng_aio_set_msg(aio, msg);
        nng_aio_set_timeout(aio, (nng_duration) harness_ms(2000));
        lk_ctx_send(bpt_fake.ctx, aio);
        nng_aio_wait(aio);
        rv = nng_aio_result(aio);
        if (rv != 0) {
            nng_msg_free(nng_aio_get_msg(aio)); /* a failed send keeps it */
            nng_aio_set_msg(aio, NULL);
        }
        pthread_mutex_lock(&bpt_fake.mu);
        if (rv != 0) {
            bpt_fake.send_failures++;
        } else if (armed != NULL && bpt_fake.armed == armed) {
            /* Served: the next PULL of the shard gets the empty reply. */
            bpt_fake.armed           = NULL;
            bpt_fake.served          = true;
            bpt_fake.served_after    = req.after;
            bpt_fake.served_count    = req.count;
            bpt_fake.served_events   = events;
            bpt_fake.pulls_at_served = bpt_fake.pulls[req.shard];
        }
        pthread_mutex_unlock(&bpt_fake.mu);
    }
    proto_buf_fini(&out);
    return NULL;
}

/* The fake peer talks to the node under test and nobody else: the real
 * node 1's harness key. (Runs on NNG's threads with linkio's locks held.) */
static bool
bpt_fake_trust(void *arg, const uint8_t pk[LINK_KEY_SIZE])
{
    const uint8_t *node_pk = arg;
    return memcmp(pk, node_pk, LINK_KEY_SIZE) == 0;
}

static int
bpt_fake_start(void)
{
    static uint8_t   node_pk[LINK_KEY_SIZE];
    uint8_t          node_sk[LINK_SECRET_KEY_SIZE];
    struct lk_config cfg  = { .trust = bpt_fake_trust,
         .trust_arg                  = node_pk,
         .frame_max                  = BPT_FRAME_MAX };
    int              port = 0;

    pthread_mutex_init(&bpt_fake.mu, NULL);
    atomic_store(&bpt_fake.stop, false);
    /* Peer 9 of the node's cluster, with the key the node's keyring holds
     * for node 9. */
    memcpy(cfg.cluster_id, bpt_cluster, sizeof cfg.cluster_id);
    harness_node_keypair(BPT_PEER_ID, cfg.pk, cfg.sk);
    harness_node_keypair(BPT_NODE_ID, node_pk, node_sk);
    if (lk_open_listener(&cfg, &bpt_fake.lk) != MRD_OK) {
        return -1;
    }
    bpt_fake.open = true;
    if (lk_ctx_open(bpt_fake.lk, &bpt_fake.ctx) != MRD_OK
        || nng_aio_alloc(&bpt_fake.aio, NULL, NULL) != 0) {
        return -1;
    }
    if (nng_listen(
            lk_nng(bpt_fake.lk), "tcp://127.0.0.1:0", &bpt_fake.listener, 0)
            != 0
        || nng_listener_get_int(
               bpt_fake.listener, NNG_OPT_TCP_BOUND_PORT, &port)
            != 0
        || port <= 0) {
        return -1;
    }
    snprintf(bpt_fake.url, sizeof bpt_fake.url, "tcp://127.0.0.1:%d", port);
    if (pthread_create(&bpt_fake.thread, NULL, bpt_fake_main, NULL) != 0) {
        return -1;
    }
    bpt_fake.running = true;
    return 0;
}

/* nng_close on a helper thread, so a hang in NNG 1.5.2 cannot hang us. */
static pthread_mutex_t bpt_close_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t  bpt_close_cv = PTHREAD_COND_INITIALIZER;
static bool            bpt_closed;

static void *
bpt_close_main(void *arg)
{
    (void) arg;
    nng_close(lk_nng(bpt_fake.lk));
    pthread_mutex_lock(&bpt_close_mu);
    bpt_closed = true;
    pthread_cond_signal(&bpt_close_cv);
    pthread_mutex_unlock(&bpt_close_mu);
    return NULL;
}

static void
bpt_fake_stop(void)
{
    pthread_t       closer;
    struct timespec until;
    bool            closed;

    if (bpt_fake.running) {
        /* The thread sees `stop` within one receive timeout. */
        atomic_store(&bpt_fake.stop, true);
        pthread_join(bpt_fake.thread, NULL);
        bpt_fake.running = false;
    }
    /* Its context and aio go first: lk_free() wants every context closed. */
    lk_ctx_close(bpt_fake.ctx);
    bpt_fake.ctx = NULL;
    if (bpt_fake.aio != NULL) {
        nng_aio_free(bpt_fake.aio);
        bpt_fake.aio = NULL;
    }
    if (!bpt_fake.open) {
        return;
    }
    bpt_fake.open = false;
    lk_shutdown(bpt_fake.lk); /* no callback of linkio's runs after this */
    if (pthread_create(&closer, NULL, bpt_close_main, NULL) != 0) {
        return; /* the socket is left to process exit */
    }
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t) (harness_ms(3000) / 1000u + 1u);
    pthread_mutex_lock(&bpt_close_mu);
    while (!bpt_closed) {
        if (pthread_cond_timedwait(&bpt_close_cv, &bpt_close_mu, &until) != 0) {
            break;
        }
    }
    closed = bpt_closed;
    pthread_mutex_unlock(&bpt_close_mu);
    if (closed) {
        pthread_join(closer, NULL);
        lk_free(bpt_fake.lk);
        bpt_fake.lk = NULL;
    } else {
        fprintf(stderr, "fake peer: nng_close hung; socket abandoned\n");
        pthread_detach(closer);
    }
}

/* -------------------------------------------------------------- checks -- */

/* False once meridiand has exited (a zombie not reaped yet counts). */
static bool
bpt_node_alive(void)
{
    char  path[64], buf[512];
    FILE *f;

    if (bpt_node.pid <= 0) {
        return false;
    }
    snprintf(path, sizeof path, "/proc/%d/stat", (int) bpt_node.pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n]            = '\0';
    const char *paren = strrchr(buf, ')');
    return paren != NULL && paren[1] == ' ' && paren[2] != 'Z'
        && paren[2] != 'X';
}

/* Lines of the node's log holding every needle given (NULL ends them). */
static uint32_t
bpt_log_count(const char *a, const char *b, const char *c)
{
    char     line[8192];
    uint32_t n = 0;
    FILE    *f = fopen(bpt_node.log_path, "r");

    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL)
            && (c == NULL || strstr(line, c) != NULL)) {
            n++;
        }
    }
    fclose(f);
    return n;
}

/* Prints the node's log lines about replication that holds needle. */
static void
bpt_log_print(const char *needle)
{
    char  line[8192];
    FILE *f = fopen(bpt_node.log_path, "r");

    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        if (strstr(line, needle) != NULL) {
            fprintf(stderr, "  meridiand.log: %s", line);
        }
    }
    fclose(f);
}

static uint64_t
bpt_stat(const char *name)
{
    uint64_t value = 0;
    if (harness_node_stat(&bpt_node, name, &value) != 0) {
        fail_msg("no STATS counter %s from the node (alive: %d)", name,
            (int) bpt_node_alive());
    }
    return value;
}

/* Waits (bounded) until every shard was pulled at least min times. */
static bool
bpt_pulled_all(void *arg)
{
    const uint64_t *min = arg;
    bool            ok  = true;

    pthread_mutex_lock(&bpt_fake.mu);
    for (uint32_t s = 0; s < BPT_SHARDS; s++) {
        ok = ok && bpt_fake.pulls[s] >= *min;
    }
    pthread_mutex_unlock(&bpt_fake.mu);
    return ok || !bpt_node_alive();
}

/* The armed reply went out and the node has pulled its shard again since:
 * it has dealt with the reply (one puller thread: the reply is applied or
 * refused before the next PULL goes out). */
static bool
bpt_served_and_pulled_again(void *arg)
{
    const struct bpt_scenario *sc = arg;
    bool                       done;

    pthread_mutex_lock(&bpt_fake.mu);
    done = bpt_fake.served
        && bpt_fake.pulls[sc->shard] > bpt_fake.pulls_at_served;
    pthread_mutex_unlock(&bpt_fake.mu);
    return done || !bpt_node_alive();
}

/* Events in the node's shard logs whose origin is not the node itself. */
static uint64_t
bpt_foreign_events(void)
{
    uint64_t n = 0;

    for (uint32_t s = 0; s < BPT_SHARDS; s++) {
        uint64_t after = 0;
        for (;;) {
            mrd_events *evs = NULL;
            int         rv  = mrd_read_log(bpt_client, s, after, 1000, &evs);
            if (rv != MRD_OK) {
                fail_msg("read of shard log %u: %s", s, mrd_errname(rv));
            }
            size_t count = mrd_events_count(evs);
            for (size_t i = 0; i < count; i++) {
                const mrd_event *e = mrd_events_at(evs, i);
                if (e->dot.origin != BPT_NODE_ID) {
                    n++;
                }
            }
            after   = mrd_events_next(evs);
            int end = mrd_events_end(evs);
            mrd_events_free(evs);
            if (count == 0 || end) {
                break;
            }
        }
    }
    return n;
}

/* The stream does not exist on the node and reads empty. */
static void
bpt_check_absent(const char *stream)
{
    mrd_stream_info info;
    mrd_events     *evs = NULL;

    assert_int_equal(mrd_stream_info_get(bpt_client, stream, &info), MRD_OK);
    if (info.exists) {
        fail_msg("stream %s of a refused batch exists on the node (%" PRIu64
                 " events)",
            stream, info.count);
    }
    assert_int_equal(
        mrd_read(bpt_client, stream, 0, MRD_FORWARD, 100, &evs), MRD_OK);
    size_t count = mrd_events_count(evs);
    mrd_events_free(evs);
    if (count != 0) {
        fail_msg(
            "stream %s of a refused batch reads %zu events", stream, count);
    }
}

/* The good batches' stream holds origin 9's seqs 1..seq9, in order. */
static void
bpt_check_good(const char *stream, uint64_t seq9)
{
    mrd_events *evs = NULL;

    assert_int_equal(
        mrd_read(bpt_client, stream, 0, MRD_FORWARD, 100, &evs), MRD_OK);
    size_t count = mrd_events_count(evs);
    if (count != seq9) {
        mrd_events_free(evs);
        fail_msg(
            "stream %s reads %zu events, not %" PRIu64, stream, count, seq9);
    }
    for (size_t i = 0; i < count; i++) {
        const mrd_event *e = mrd_events_at(evs, i);
        char             want[48];
        int              n = snprintf(
                         want, sizeof want, "bad-peer:%u:%zu", BPT_PEER_ID, i + 1);
        if (e->dot.origin != BPT_PEER_ID || e->dot.seq != i + 1
            || e->position != i || strcmp(e->type, "BadPeer") != 0
            || e->data_size != (size_t) n
            || memcmp(e->data, want, (size_t) n) != 0) {
            uint64_t origin = e->dot.origin, seq = e->dot.seq;
            mrd_events_free(evs);
            fail_msg("stream %s event %zu is (%" PRIu64 ", %" PRIu64
                     "), not (9, %zu) with its data",
                stream, i, origin, seq, i + 1);
        }
    }
    mrd_events_free(evs);
}

/* The node still serves its clients: one append, and the stream reads all
 * the client's events. */
static void
bpt_client_round(void)
{
    mrd_event_in      ev = { .type = "ClientOp", .data = "x", .data_size = 1 };
    mrd_append_result res;
    mrd_events       *evs = NULL;

    int rv = mrd_append(bpt_client, BPT_CLIENT_STREAM, &ev, 1, NULL, &res);
    if (rv != MRD_OK) {
        fail_msg("client append: %s", mrd_errname(rv));
    }
    bpt_client_appends++;
    assert_int_equal(res.version, bpt_client_appends - 1);
    assert_int_equal(res.first_dot.origin, BPT_NODE_ID);
    assert_int_equal(
        mrd_read(bpt_client, BPT_CLIENT_STREAM, 0, MRD_FORWARD, 1000, &evs),
        MRD_OK);
    size_t count = mrd_events_count(evs);
    mrd_events_free(evs);
    assert_int_equal(count, bpt_client_appends);
}

/* ------------------------------------------------------------- the test -- */

static void
bpt_run(size_t idx)
{
    struct bpt_scenario *sc = &bpt_scenarios[idx];
    char                 shard_field[32];

    if (!bpt_ready) {
        fail_msg("the setup failed");
    }
    if (!bpt_node_alive()) {
        fail_msg("meridiand is not running (it died earlier)");
    }
    /* What this scenario's batch names. */
    sc->origin = 100u + (uint64_t) idx;
    if (sc->kind == BPT_GOOD) {
        bpt_stream_in(sc->stream, "bpt-good", sc->shard);
    } else {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "bpt-bad%zu", idx);
        bpt_stream_in(sc->stream, prefix, sc->shard);
        sc->other_shard = (sc->shard + 1u) % BPT_SHARDS;
        snprintf(prefix, sizeof prefix, "bpt-bad%zu-other", idx);
        bpt_stream_in(sc->other, prefix, sc->other_shard);
    }
    snprintf(shard_field, sizeof shard_field, "\"shard\":%u,", sc->shard);

    uint64_t rejected0   = bpt_stat("rejected_replication");
    uint64_t unread0     = bpt_stat("rejected_pull_reply");
    uint64_t replicated0 = bpt_stat("events_replicated");
    uint32_t refused0    = bpt_log_count(
           "\"msg\":\"refused a replicated batch\"", shard_field, NULL);
    uint32_t failed0
        = bpt_log_count("\"msg\":\"pull failed\"", shard_field, NULL);
    uint32_t refused_why0 = bpt_log_count(
        "\"msg\":\"refused a replicated batch\"", shard_field, sc->why);
    uint32_t failed_why0
        = bpt_log_count("\"msg\":\"pull failed\"", shard_field, sc->why);

    uint64_t t0 = bpt_mono_ms();
    pthread_mutex_lock(&bpt_fake.mu);
    bpt_fake.served = false;
    bpt_fake.armed  = sc;
    pthread_mutex_unlock(&bpt_fake.mu);
    bool done = harness_wait_for(
        bpt_served_and_pulled_again, sc, BPT_WAIT_TRIES, BPT_WAIT_MS);
    pthread_mutex_lock(&bpt_fake.mu);
    bool     served = bpt_fake.served;
    uint64_t after  = bpt_fake.served_after;
    uint32_t asked  = bpt_fake.served_count;
    uint32_t sent   = bpt_fake.served_events;
    bpt_fake.armed  = NULL;
    pthread_mutex_unlock(&bpt_fake.mu);
    uint64_t elapsed = bpt_mono_ms() - t0;
    if (!bpt_node_alive()) {
        bpt_log_print("\"level\":\"error\"");
        fail_msg(
            "[%zu] %s: meridiand died (see its log above)", idx + 1, sc->name);
    }
    if (!done) {
        fail_msg("[%zu] %s: %s within %" PRIu64 " ms", idx + 1, sc->name,
            served ? "the node did not pull the shard again"
                   : "the node never pulled the shard",
            elapsed);
    }

    uint64_t rejected   = bpt_stat("rejected_replication");
    uint64_t unread     = bpt_stat("rejected_pull_reply");
    uint64_t replicated = bpt_stat("events_replicated");
    uint32_t refused    = bpt_log_count(
           "\"msg\":\"refused a replicated batch\"", shard_field, NULL);
    uint32_t failed
        = bpt_log_count("\"msg\":\"pull failed\"", shard_field, NULL);
    uint32_t refused_why = bpt_log_count(
        "\"msg\":\"refused a replicated batch\"", shard_field, sc->why);
    uint32_t failed_why
        = bpt_log_count("\"msg\":\"pull failed\"", shard_field, sc->why);
    printf("bad_peer_test: [%zu] %s: shard %u, PULL after %" PRIu64
           " count %u, %u events sent; dealt with and pulled again in %" PRIu64
           " ms; rejected_replication %" PRIu64 " -> %" PRIu64
           ", events_replicated %" PRIu64 " -> %" PRIu64
           "; log lines: refused +%u, pull failed +%u\n",
        idx + 1, sc->name, sc->shard, after, asked, sent, elapsed, rejected0,
        rejected, replicated0, replicated, refused - refused0,
        failed - failed0);
    fflush(stdout);

    switch (sc->expect) {
    case BPT_REFUSED:
        if (rejected != rejected0 + 1 || refused != refused0 + 1
            || refused_why != refused_why0 + 1 || failed != failed0
            || unread != unread0) {
            bpt_log_print("\"peer\":9");
            fail_msg("[%zu] %s: want rejected_replication +1 and one "
                     "'refused a replicated batch' line saying '%s'",
                idx + 1, sc->name, sc->why);
        }
        break;
    case BPT_PULL_FAILED:
        if (rejected != rejected0 || failed != failed0 + 1
            || failed_why != failed_why0 + 1 || refused != refused0
            || unread != unread0 + 1) {
            bpt_log_print("\"peer\":9");
            fail_msg("[%zu] %s: want one 'pull failed' line%s%s and "
                     "rejected_pull_reply +1 (%" PRIu64 " -> %" PRIu64 ")",
                idx + 1, sc->name, sc->why != NULL ? " saying " : "",
                sc->why != NULL ? sc->why : "", unread0, unread);
        }
        break;
    case BPT_APPLIED:
        if (rejected != rejected0 || refused != refused0 || failed != failed0
            || unread != unread0
            || replicated != replicated0 + sc->good_count) {
            bpt_log_print("\"peer\":9");
            fail_msg("[%zu] %s: want events_replicated +%u and nothing "
                     "refused",
                idx + 1, sc->name, sc->good_count);
        }
        break;
    }
    if (sc->expect != BPT_APPLIED) {
        if (replicated != replicated0) {
            fail_msg("[%zu] %s: events_replicated moved %" PRIu64
                     " -> %" PRIu64,
                idx + 1, sc->name, replicated0, replicated);
        }
        bpt_check_absent(sc->stream);
        bpt_check_absent(sc->other);
    } else {
        bpt_foreign_expected += sc->good_count;
        pthread_mutex_lock(&bpt_fake.mu);
        uint64_t seq9 = bpt_fake.seq9[sc->shard];
        pthread_mutex_unlock(&bpt_fake.mu);
        bpt_check_good(sc->stream, seq9);
    }
    uint64_t foreign = bpt_foreign_events();
    if (foreign != bpt_foreign_expected) {
        fail_msg("[%zu] %s: the shard logs hold %" PRIu64
                 " events of other origins, not %" PRIu64,
            idx + 1, sc->name, foreign, bpt_foreign_expected);
    }
    bpt_client_round();
}

/* After every scenario: the requests were all well-formed, and the node
 * logged no error but the refusals. */
static void
bpt_final(void **state)
{
    (void) state;
    if (!bpt_ready) {
        fail_msg("the setup failed");
    }
    pthread_mutex_lock(&bpt_fake.mu);
    uint64_t bad = bpt_fake.bad_requests, hints = bpt_fake.hints;
    uint64_t others = bpt_fake.others, send_failures = bpt_fake.send_failures;
    uint64_t pulls[BPT_SHARDS];
    memcpy(pulls, bpt_fake.pulls, sizeof pulls);
    char bad_why[sizeof bpt_fake.bad_why];
    memcpy(bad_why, bpt_fake.bad_why, sizeof bad_why);
    pthread_mutex_unlock(&bpt_fake.mu);
    printf("bad_peer_test: the fake peer saw PULLs %" PRIu64 "/%" PRIu64
           "/%" PRIu64 "/%" PRIu64 " (shards 0..3), %" PRIu64 " HINTs, %" PRIu64
           " other requests, %" PRIu64 " bad requests; %" PRIu64
           " replies not delivered\n",
        pulls[0], pulls[1], pulls[2], pulls[3], hints, others, bad,
        send_failures);
    fflush(stdout);
    if (bad != 0) {
        fail_msg(
            "the node sent %" PRIu64 " bad requests, last: %s", bad, bad_why);
    }
    uint32_t errors = bpt_log_count("\"level\":\"error\"", NULL, NULL);
    uint32_t refusals
        = bpt_log_count("\"msg\":\"refused a replicated batch\"", NULL, NULL);
    if (errors != refusals) {
        bpt_log_print("\"level\":\"error\"");
        fail_msg(
            "the node logged %u errors, %u of them refusals", errors, refusals);
    }
    assert_true(bpt_node_alive());
    assert_int_equal(bpt_stat("clock_clamped"), 0);
}

static int
bpt_setup(void **state)
{
    (void) state;
    const char *hex = BPT_CLUSTER_HEX;
    for (size_t i = 0; i < TOPO_CLUSTER_ID_SIZE; i++) {
        unsigned byte = 0;
        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) {
            return -1;
        }
        bpt_cluster[i] = (uint8_t) byte;
    }
    if (bpt_fake_start() != 0) {
        fprintf(stderr, "bad_peer_test: the fake peer did not start\n");
        return -1;
    }
    snprintf(bpt_peers_arg, sizeof bpt_peers_arg, "%u@%s", BPT_PEER_ID,
        bpt_fake.url);
    if (harness_node_init(&bpt_node, BPT_NODE_ID) != 0) {
        return -1;
    }
    const char *args[] = { "--shards", "4", "--cluster-id", BPT_CLUSTER_HEX,
        "--peers", bpt_peers_arg, NULL };
    uint64_t    t0     = bpt_mono_ms();
    if (harness_node_start(&bpt_node, args) != 0) {
        return -1;
    }
    if (harness_client_open(
            (struct harness_node *const[]) { &bpt_node }, 1, NULL, &bpt_client)
        != MRD_OK) {
        return -1;
    }
    /* The node pulls every shard from us before any scenario. */
    uint64_t once = 1;
    if (!harness_wait_for(bpt_pulled_all, &once, BPT_WAIT_TRIES, BPT_WAIT_MS)
        || !bpt_node_alive()) {
        fprintf(stderr, "bad_peer_test: the node never pulled every shard\n");
        return -1;
    }
    printf("bad_peer_test: node 1 on %s pulls from fake peer 9 on %s; "
           "first pull of every shard %" PRIu64 " ms after its start\n",
        bpt_node.url, bpt_fake.url, bpt_mono_ms() - t0);
    fflush(stdout);
    bpt_ready = true;
    return 0;
}

static int
bpt_teardown(void **state)
{
    if (bpt_client != NULL) {
        mrd_client_close(bpt_client);
        bpt_client = NULL;
    }
    harness_node_fini(&bpt_node);
    bpt_fake_stop();
    return harness_teardown(state);
}

/* One cmocka test per scenario, run in this order on the one node. */
#define BPT_CASE(n)                                                            \
    static void bpt_case_##n(void **state)                                     \
    {                                                                          \
        (void) state;                                                          \
        bpt_run((n) -1);                                                       \
    }
BPT_CASE(1)
BPT_CASE(2)
BPT_CASE(3)
BPT_CASE(4)
BPT_CASE(5)
BPT_CASE(6)
BPT_CASE(7)
BPT_CASE(8)
BPT_CASE(9)
BPT_CASE(10)
BPT_CASE(11)
BPT_CASE(12)
BPT_CASE(13)
BPT_CASE(14)
BPT_CASE(15)
BPT_CASE(16)
BPT_CASE(17)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bpt_case_1),
        cmocka_unit_test(bpt_case_2),
        cmocka_unit_test(bpt_case_3),
        cmocka_unit_test(bpt_case_4),
        cmocka_unit_test(bpt_case_5),
        cmocka_unit_test(bpt_case_6),
        cmocka_unit_test(bpt_case_7),
        cmocka_unit_test(bpt_case_8),
        cmocka_unit_test(bpt_case_9),
        cmocka_unit_test(bpt_case_10),
        cmocka_unit_test(bpt_case_11),
        cmocka_unit_test(bpt_case_12),
        cmocka_unit_test(bpt_case_13),
        cmocka_unit_test(bpt_case_14),
        cmocka_unit_test(bpt_case_15),
        cmocka_unit_test(bpt_case_16),
        cmocka_unit_test(bpt_case_17),
        cmocka_unit_test(bpt_final),
    };
    _Static_assert(sizeof(tests) / sizeof(tests[0]) == BPT_SCENARIOS + 1,
        "one test per scenario, then the final checks");
    uint64_t t0 = bpt_mono_ms();
    int      rv = cmocka_run_group_tests(tests, bpt_setup, bpt_teardown);
    printf("bad_peer_test: %" PRIu64 " ms in all\n", bpt_mono_ms() - t0);
    fflush(stdout);
    return rv;
}
