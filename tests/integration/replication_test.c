/*
 * replication_test.c: three regions, one node each, writing the same streams
 * at once, must converge (docs/ARCHITECTURE.md, "Replication").
 *
 * The nodes (ids 1, 2, 3, regions r1..r3, one cluster id) are started once
 * alone to learn their ports, then restarted on the same ports with
 * --peers naming each other: a static full mesh. Then:
 *   1. One writer thread per node, each with a client on its own node only,
 *      appends batches of 1..3 events to 8 shared streams (seeded random
 *      choice) and, with expected versions, to a stream of its own. Every
 *      event carries state ops: counter "n" += 1, and on some events a set
 *      add of "r<node>-<k>" to "m" and an LWW set of "last". Every
 *      acknowledged event is recorded with its dot.
 *   2. Convergence, bounded: every node holds every stream's acknowledged
 *      count; then every node's shard logs hold exactly the acknowledged
 *      dots, each once, in the right shard, each origin's seqs increasing
 *      along every log; every stream holds exactly its own acknowledged
 *      events, each origin's in seq order (causal order), with the record's
 *      timestamp identical on every node; every state document has n =
 *      events, the set of every member added, the LWW value of the highest
 *      (hlc, origin) write, and the same causal context everywhere.
 *      Counters: nothing refused, no clock clamped, and every node that
 *      has run since the mesh started replicated exactly the events it did
 *      not write (exactly once).
 *   3. Node 3 is SIGKILLed while nodes 1 and 2 write and replicate, stays
 *      down while they write on and converge between themselves (bounded:
 *      a dead peer must not stop the live ones), then comes back on the
 *      same port and args while they write, and its writer resumes on its
 *      own stream with the expected version it had: the cluster converges
 *      again, node 3 having caught up by pulling.
 *   4. A node 4 with a fresh data dir, peers 1..3 (they do not know it),
 *      catches up with everything.
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

#include "harness.h"
#include "proto.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#define REPL_NODES 4u /* 3 writing regions and the late joiner */
#define REPL_WRITERS 3u
#define REPL_SHARED 8u /* streams every region writes */
#define REPL_STREAMS (REPL_SHARED + REPL_WRITERS) /* + one local each */
#define REPL_BATCH_MAX 3u
/* Events one writer may record; it stops early when full. */
#define REPL_EVENTS_MAX 200000u
/* Event flags, in the event's data and the writer's record. */
#define REPL_F_MEMBER 1u /* added "r<origin>-<k>" to set "m" */
#define REPL_F_LWW 2u /* set "last" to "r<origin>-<k>" */
/* Convergence: polls 50 ms apart, up to 20 s (scaled). */
#define REPL_POLL_MS 50u
#define REPL_CONVERGE_TRIES 400u

/* One acknowledged event of a writer; its index is the writer's k. */
struct repl_rec {
    uint64_t seq; /* its dot is (writer id, seq) */
    uint64_t hlc; /* 0 until a check read it */
    uint32_t stream;
    uint32_t flags;
};

struct repl_writer {
    unsigned         id; /* its node's id */
    mrd_client      *client; /* on its node only */
    uint32_t         rng;
    _Atomic bool     stop;
    pthread_t        thread;
    bool             running;
    struct repl_rec *recs;
    uint32_t         count; /* acknowledged events */
    uint32_t         appends, local_appends, retries;
    int64_t          local_version; /* of its own stream, on its node */
    uint64_t         last_seq;
    int              fatal;
    char             fatal_why[256];
};

struct repl_node {
    struct harness_node h;
    char                region[8];
    char                peers[512];
    const char         *args[8];
    mrd_client         *client; /* the checker's */
};

static struct repl_node   repl_nodes[REPL_NODES];
static struct repl_writer repl_writers[REPL_WRITERS];
static char               repl_stream_names[REPL_STREAMS][32];
static char               repl_cluster_id[33];

static uint32_t
repl_rand(uint32_t *state)
{
    /* xorshift32: the seed makes the choices replayable. */
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

/* Errors a busy or restarting node may give; the same idempotency key is
 * then retried. */
static bool
repl_transient(int rv)
{
    return rv == MRD_ETIMEDOUT || rv == MRD_EUNAVAIL || rv == MRD_ECLOSED
        || rv == MRD_EBUSY;
}

static void
repl_client_opts(mrd_client_opts *opts)
{
    mrd_client_opts_init(opts);
    opts->timeout_ms         = harness_ms(5000);
    opts->attempt_timeout_ms = harness_ms(2000);
}

/* ------------------------------------------------------------- writers -- */

static void
repl_writer_fail(struct repl_writer *w, int rv, const char *what)
{
    w->fatal = rv != MRD_OK ? rv : MRD_EINTERNAL;
    snprintf(w->fatal_why, sizeof(w->fatal_why), "writer %u: %s: %s (%s)",
        w->id, what, mrd_errname(rv), mrd_errdetail());
}

/* Appends with one idempotency key until acknowledged or out of time. */
static int
repl_append_retry(struct repl_writer *w, const char *stream,
    const mrd_event_in *events, size_t n, const mrd_append_opts *opts,
    mrd_append_result *res)
{
    struct timespec start, now;
    int             rv;

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        rv = mrd_append(w->client, stream, events, n, opts, res);
        if (!repl_transient(rv)) {
            return rv;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (long) (now.tv_sec - start.tv_sec) * 1000L
            + (now.tv_nsec - start.tv_nsec) / 1000000L;
        if (ms > (long) harness_ms(20000)) {
            return rv;
        }
        w->retries++;
        harness_sleep_ms(10);
    }
}

/* A wrong expected version on the writer's own stream is refused and
 * writes nothing. */
static bool
repl_writer_negative(struct repl_writer *w)
{
    const char     *count_path[] = { "n" };
    mrd_op          op           = { .path = count_path,
                           .path_len       = 1,
                           .type           = MRD_STATE_COUNTER,
                           .kind           = MRD_OP_INC,
                           .delta          = 1 };
    mrd_event_in    ev = { .type = "ReplNegative", .ops = &op, .op_count = 1 };
    mrd_append_opts opts;
    mrd_append_opts_init(&opts);
    opts.expected_version = w->local_version + 5;
    int rv                = repl_append_retry(
                       w, repl_stream_names[REPL_SHARED + w->id - 1], &ev, 1, &opts, NULL);
    if (rv != MRD_EVERSION) {
        repl_writer_fail(w, rv, "a wrong expected version was not refused");
        return false;
    }
    return true;
}

static void *
repl_writer_main(void *arg)
{
    struct repl_writer *w = arg;
    char                data[REPL_BATCH_MAX][48];
    char                member[REPL_BATCH_MAX][24];
    mrd_event_in        events[REPL_BATCH_MAX];
    mrd_op              ops[REPL_BATCH_MAX][3];
    const char         *count_path[] = { "n" };
    const char         *set_path[]   = { "m" };
    const char         *lww_path[]   = { "last" };
    char                key[48];

    if (!repl_writer_negative(w)) {
        return NULL;
    }
    while (!atomic_load(&w->stop)
        && w->count + REPL_BATCH_MAX <= REPL_EVENTS_MAX) {
        bool     local  = repl_rand(&w->rng) % 8 == 0;
        uint32_t stream = local ? REPL_SHARED + w->id - 1
                                : repl_rand(&w->rng) % REPL_SHARED;
        uint32_t n      = 1 + repl_rand(&w->rng) % REPL_BATCH_MAX;
        uint32_t flags[REPL_BATCH_MAX];
        for (uint32_t i = 0; i < n; i++) {
            uint32_t k = w->count + i, r = repl_rand(&w->rng);
            size_t   nops = 0;
            flags[i]      = (r % 3 == 0 ? REPL_F_MEMBER : 0)
                | ((r / 3) % 4 == 0 ? REPL_F_LWW : 0);
            snprintf(data[i], sizeof(data[i]), "o%u k%u f%u", w->id, k,
                (unsigned) flags[i]);
            snprintf(member[i], sizeof(member[i]), "r%u-%u", w->id, k);
            ops[i][nops++] = (mrd_op) { .path = count_path,
                .path_len                     = 1,
                .type                         = MRD_STATE_COUNTER,
                .kind                         = MRD_OP_INC,
                .delta                        = 1 };
            if (flags[i] & REPL_F_MEMBER) {
                ops[i][nops++] = (mrd_op) { .path = set_path,
                    .path_len                     = 1,
                    .type                         = MRD_STATE_SET,
                    .kind                         = MRD_OP_ADD,
                    .value                        = member[i],
                    .value_size                   = strlen(member[i]) };
            }
            if (flags[i] & REPL_F_LWW) {
                ops[i][nops++] = (mrd_op) { .path = lww_path,
                    .path_len                     = 1,
                    .type                         = MRD_STATE_LWW,
                    .kind                         = MRD_OP_SET,
                    .value                        = member[i],
                    .value_size                   = strlen(member[i]) };
            }
            events[i] = (mrd_event_in) { .type = "ReplTested",
                .data                          = data[i],
                .data_size                     = strlen(data[i]),
                .ops                           = ops[i],
                .op_count                      = nops };
        }
        snprintf(key, sizeof(key), "repl-%u-%u", w->id, w->count);
        mrd_append_opts opts;
        mrd_append_opts_init(&opts);
        opts.idempotency_key      = key;
        opts.idempotency_key_size = strlen(key);
        if (local) {
            opts.expected_version = w->local_version;
        }
        mrd_append_result res;
        int               rv = repl_append_retry(
                          w, repl_stream_names[stream], events, n, &opts, &res);
        if (rv != MRD_OK) {
            repl_writer_fail(w, rv, local ? "a local append" : "an append");
            return NULL;
        }
        if (res.count != n || res.first_dot.origin != w->id
            || res.first_dot.seq <= w->last_seq
            || (local
                && res.first_position != (uint64_t) (w->local_version + 1))) {
            repl_writer_fail(w, MRD_EINTERNAL, "unexpected append result");
            return NULL;
        }
        for (uint32_t i = 0; i < n; i++) {
            w->recs[w->count + i] = (struct repl_rec) {
                .seq    = res.first_dot.seq + i,
                .stream = stream,
                .flags  = flags[i],
            };
        }
        w->last_seq = res.first_dot.seq + n - 1;
        w->count += n;
        w->appends++;
        if (local) {
            w->local_appends++;
            w->local_version = (int64_t) res.version;
        }
    }
    return NULL;
}

static void
repl_writer_start(struct repl_writer *w)
{
    atomic_store(&w->stop, false);
    assert_int_equal(pthread_create(&w->thread, NULL, repl_writer_main, w), 0);
    w->running = true;
}

/* Stops and joins every running writer, then fails on any writer's error
 * (after joining all, so none outlives a failure). */
static void
repl_writers_join(void)
{
    for (unsigned i = 0; i < REPL_WRITERS; i++) {
        atomic_store(&repl_writers[i].stop, true);
    }
    for (unsigned i = 0; i < REPL_WRITERS; i++) {
        struct repl_writer *w = &repl_writers[i];
        if (w->running) {
            pthread_join(w->thread, NULL);
            w->running = false;
        }
    }
    for (unsigned i = 0; i < REPL_WRITERS; i++) {
        if (repl_writers[i].fatal != MRD_OK) {
            fail_msg("%s", repl_writers[i].fatal_why);
        }
    }
}

/* --------------------------------------------------------------- nodes -- */

static void
repl_node_args(struct repl_node *n, bool with_peers)
{
    size_t a     = 0;
    n->args[a++] = "--region";
    n->args[a++] = n->region;
    n->args[a++] = "--cluster-id";
    n->args[a++] = repl_cluster_id;
    if (with_peers) {
        n->args[a++] = "--peers";
        n->args[a++] = n->peers;
    }
    n->args[a] = NULL;
}

/* Sets n's peers to every started node among the first `count` but n. */
static void
repl_node_peers(struct repl_node *n, size_t count)
{
    size_t len  = 0;
    n->peers[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        struct repl_node *p = &repl_nodes[i];
        if (p == n) {
            continue;
        }
        int w = snprintf(n->peers + len, sizeof(n->peers) - len,
            "%s%" PRIu64 "@%s", len > 0 ? "," : "", p->h.node_id, p->h.url);
        assert_true(w > 0 && (size_t) w < sizeof(n->peers) - len);
        len += (size_t) w;
    }
}

static void
repl_node_client(struct repl_node *n)
{
    struct harness_node *one[] = { &n->h };
    mrd_client_opts      opts;
    repl_client_opts(&opts);
    assert_int_equal(harness_client_open(one, 1, &opts, &n->client), MRD_OK);
}

static uint64_t
repl_stat(const struct repl_node *n, const char *name)
{
    uint64_t value = 0;
    assert_int_equal(harness_node_stat(&n->h, name, &value), 0);
    return value;
}

/* -------------------------------------------------------- convergence -- */

struct repl_wait {
    size_t   nodes; /* the first `nodes` of repl_nodes */
    uint64_t expected[REPL_STREAMS];
};

/* Every stream's acknowledged count, from the writers' records. */
static void
repl_expected(struct repl_wait *wait, size_t nodes)
{
    memset(wait, 0, sizeof(*wait));
    wait->nodes = nodes;
    for (unsigned w = 0; w < REPL_WRITERS; w++) {
        for (uint32_t k = 0; k < repl_writers[w].count; k++) {
            wait->expected[repl_writers[w].recs[k].stream]++;
        }
    }
}

/* Cheap: every node holds every stream's acknowledged count. */
static bool
repl_counts_equal(void *arg)
{
    const struct repl_wait *wait = arg;
    for (size_t i = 0; i < wait->nodes; i++) {
        for (uint32_t s = 0; s < REPL_STREAMS; s++) {
            mrd_stream_info info;
            if (mrd_stream_info_get(
                    repl_nodes[i].client, repl_stream_names[s], &info)
                    != MRD_OK
                || info.count != wait->expected[s]) {
                return false;
            }
        }
    }
    return true;
}

/* The record an event claims to be, from its data; fails the test when it
 * is none of ours. */
static struct repl_rec *
repl_event_rec(const mrd_event *e, uint32_t *origin_out, uint32_t *k_out)
{
    char     buf[64];
    unsigned origin, k, flags;

    if (e->data_size >= sizeof(buf)) {
        fail_msg("event %" PRIu64 ":%" PRIu64 " has %zu bytes of data",
            e->dot.origin, e->dot.seq, e->data_size);
    }
    memcpy(buf, e->data, e->data_size);
    buf[e->data_size] = '\0';
    if (sscanf(buf, "o%u k%u f%u", &origin, &k, &flags) != 3 || origin < 1
        || origin > REPL_WRITERS) {
        fail_msg("event %" PRIu64 ":%" PRIu64 " has data '%s'", e->dot.origin,
            e->dot.seq, buf);
    }
    struct repl_writer *w = &repl_writers[origin - 1];
    if (k >= w->count) {
        fail_msg("event '%s' (dot %" PRIu64 ":%" PRIu64
                 ") was never acknowledged",
            buf, e->dot.origin, e->dot.seq);
    }
    struct repl_rec *r = &w->recs[k];
    if (e->dot.origin != origin || e->dot.seq != r->seq || flags != r->flags) {
        fail_msg("event '%s' has dot %" PRIu64 ":%" PRIu64 ", want %u:%" PRIu64,
            buf, e->dot.origin, e->dot.seq, origin, r->seq);
    }
    if (r->hlc == 0) {
        r->hlc = e->hlc;
    } else if (r->hlc != e->hlc) {
        fail_msg("event '%s': hlc %" PRIu64 " here, %" PRIu64 " elsewhere", buf,
            e->hlc, r->hlc);
    }
    *origin_out = origin;
    *k_out      = k;
    return r;
}

static int
repl_strcmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* One node's shard logs: exactly the acknowledged dots, once each, in the
 * shards their streams hash to, each origin's seqs increasing. */
static void
repl_check_logs(size_t ni, uint32_t shards, const uint32_t *stream_shard)
{
    struct repl_node *n = &repl_nodes[ni];
    uint8_t          *seen[REPL_WRITERS];

    for (unsigned w = 0; w < REPL_WRITERS; w++) {
        seen[w] = calloc(repl_writers[w].count + 1, 1);
        assert_non_null(seen[w]);
    }
    for (uint32_t shard = 0; shard < shards; shard++) {
        uint64_t after = 0, last_log_seq = 0;
        uint64_t last_seq[REPL_WRITERS + 1] = { 0 };
        for (;;) {
            mrd_events *batch;
            int rv = mrd_read_log(n->client, shard, after, 1000, &batch);
            if (rv != MRD_OK) {
                fail_msg("node %" PRIu64 ": read_log shard %u after %" PRIu64
                         ": %s",
                    n->h.node_id, shard, after, mrd_errname(rv));
            }
            size_t count = mrd_events_count(batch);
            for (size_t j = 0; j < count; j++) {
                const mrd_event *e = mrd_events_at(batch, j);
                uint32_t         origin, k;
                struct repl_rec *r = repl_event_rec(e, &origin, &k);
                assert_true(e->log_seq > last_log_seq);
                last_log_seq = e->log_seq;
                if (e->dot.seq <= last_seq[origin]) {
                    fail_msg("node %" PRIu64 " shard %u: origin %u seq %" PRIu64
                             " after seq %" PRIu64 " in the log",
                        n->h.node_id, shard, origin, e->dot.seq,
                        last_seq[origin]);
                }
                last_seq[origin] = e->dot.seq;
                if (seen[origin - 1][k]) {
                    fail_msg("node %" PRIu64 ": dot %u:%" PRIu64 " twice",
                        n->h.node_id, origin, e->dot.seq);
                }
                seen[origin - 1][k] = 1;
                if (stream_shard[r->stream] != shard
                    || strcmp(e->stream, repl_stream_names[r->stream]) != 0) {
                    fail_msg("node %" PRIu64 ": dot %u:%" PRIu64
                             " of %s in shard %u",
                        n->h.node_id, origin, e->dot.seq, e->stream, shard);
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
    }
    for (unsigned w = 0; w < REPL_WRITERS; w++) {
        for (uint32_t k = 0; k < repl_writers[w].count; k++) {
            if (!seen[w][k]) {
                fail_msg("node %" PRIu64 ": dot %u:%" PRIu64 " missing",
                    n->h.node_id, w + 1, repl_writers[w].recs[k].seq);
            }
        }
        free(seen[w]);
    }
}

/* What one stream's state must be, from the records and a read of the
 * stream. */
struct repl_want {
    uint64_t count;
    uint64_t ctx[REPL_WRITERS + 1]; /* highest seq per origin */
    char   **members; /* sorted */
    size_t   member_count;
    uint64_t lww_hlc;
    uint32_t lww_origin;
    char     lww[24];
};

/* One node's stream s: exactly its acknowledged events, positions 0..n-1,
 * each origin's in seq order; fills the LWW winner into want. */
static void
repl_check_stream(size_t ni, uint32_t s, struct repl_want *want)
{
    struct repl_node *n                          = &repl_nodes[ni];
    uint64_t          pos                        = 0;
    uint64_t          last_seq[REPL_WRITERS + 1] = { 0 };

    want->lww_hlc    = 0;
    want->lww_origin = 0;
    want->lww[0]     = '\0';
    for (;;) {
        mrd_events *batch;
        assert_int_equal(mrd_read(n->client, repl_stream_names[s], pos,
                             MRD_FORWARD, 1000, &batch),
            MRD_OK);
        size_t count = mrd_events_count(batch);
        for (size_t j = 0; j < count; j++) {
            const mrd_event *e = mrd_events_at(batch, j);
            uint32_t         origin, k;
            struct repl_rec *r = repl_event_rec(e, &origin, &k);
            assert_int_equal(e->position, pos);
            if (r->stream != s) {
                fail_msg("node %" PRIu64 ": %s holds an event of %s",
                    n->h.node_id, repl_stream_names[s],
                    repl_stream_names[r->stream]);
            }
            if (e->dot.seq <= last_seq[origin]) {
                fail_msg("node %" PRIu64 " stream %s: origin %u seq %" PRIu64
                         " after %" PRIu64 " (causal order)",
                    n->h.node_id, repl_stream_names[s], origin, e->dot.seq,
                    last_seq[origin]);
            }
            last_seq[origin] = e->dot.seq;
            if ((r->flags & REPL_F_LWW)
                && (e->hlc > want->lww_hlc
                    || (e->hlc == want->lww_hlc
                        && origin > want->lww_origin))) {
                want->lww_hlc    = e->hlc;
                want->lww_origin = origin;
                snprintf(want->lww, sizeof(want->lww), "r%u-%u", origin, k);
            }
            pos++;
        }
        mrd_events_free(batch);
        if (count == 0) {
            break;
        }
    }
    if (pos != want->count) {
        fail_msg("node %" PRIu64 ": %s has %" PRIu64 " events, want %" PRIu64,
            n->h.node_id, repl_stream_names[s], pos, want->count);
    }
}

static void
repl_check_state(size_t ni, uint32_t s, const struct repl_want *want)
{
    struct repl_node *n = &repl_nodes[ni];
    mrd_state        *st;
    const char       *name = repl_stream_names[s];

    assert_int_equal(mrd_state_read(n->client, name, NULL, &st), MRD_OK);
    const mrd_value *root = mrd_state_root(st);
    assert_int_equal(mrd_state_version(st), (int64_t) want->count - 1);
    int64_t got_n = mrd_value_int(mrd_value_find(root, "n", MRD_STATE_COUNTER));
    if (got_n != (int64_t) want->count) {
        fail_msg("node %" PRIu64 ": %s n = %" PRId64 ", want %" PRIu64,
            n->h.node_id, name, got_n, want->count);
    }
    /* The causal context: the highest seq of each origin. */
    size_t origins = 0;
    for (unsigned o = 1; o <= REPL_WRITERS; o++) {
        origins += want->ctx[o] > 0;
    }
    assert_int_equal(mrd_state_context_count(st), origins);
    for (size_t i = 0; i < origins; i++) {
        mrd_dot d = mrd_state_context_at(st, i);
        if (d.origin < 1 || d.origin > REPL_WRITERS
            || d.seq != want->ctx[d.origin]) {
            fail_msg("node %" PRIu64 ": %s context %" PRIu64 ":%" PRIu64,
                n->h.node_id, name, d.origin, d.seq);
        }
    }
    /* The set: every member added, nothing else. */
    const mrd_value *set = mrd_value_find(root, "m", MRD_STATE_SET);
    size_t           nm  = set != NULL ? mrd_value_count(set) : 0;
    if (nm != want->member_count) {
        fail_msg("node %" PRIu64 ": %s has %zu members, want %zu", n->h.node_id,
            name, nm, want->member_count);
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
        qsort(got, nm, sizeof(char *), repl_strcmp);
        for (size_t i = 0; i < nm; i++) {
            if (strcmp(got[i], want->members[i]) != 0) {
                fail_msg("node %" PRIu64 ": %s member %s, want %s",
                    n->h.node_id, name, got[i], want->members[i]);
            }
            free(got[i]);
        }
        free(got);
    }
    /* LWW: the write with the highest (hlc, origin). */
    const mrd_value *lww = mrd_value_find(root, "last", MRD_STATE_LWW);
    if (want->lww[0] == '\0') {
        assert_null(lww);
    } else {
        size_t      size = 0;
        const void *b    = lww != NULL ? mrd_value_bytes(lww, 0, &size) : NULL;
        if (b == NULL || size != strlen(want->lww)
            || memcmp(b, want->lww, size) != 0) {
            fail_msg("node %" PRIu64 ": %s last = '%.*s', want '%s'",
                n->h.node_id, name, b != NULL ? (int) size : 6,
                b != NULL ? (const char *) b : "(none)", want->lww);
        }
        assert_int_equal(mrd_value_count(lww), 1);
    }
    mrd_state_free(st);
}

static void
repl_want_build(uint32_t s, struct repl_want *want)
{
    memset(want, 0, sizeof(*want));
    for (unsigned w = 0; w < REPL_WRITERS; w++) {
        const struct repl_writer *wr = &repl_writers[w];
        for (uint32_t k = 0; k < wr->count; k++) {
            if (wr->recs[k].stream != s) {
                continue;
            }
            want->count++;
            want->ctx[w + 1] = wr->recs[k].seq; /* increasing with k */
            want->member_count += (wr->recs[k].flags & REPL_F_MEMBER) != 0;
        }
    }
    want->members = calloc(want->member_count + 1, sizeof(char *));
    assert_non_null(want->members);
    size_t m = 0;
    for (unsigned w = 0; w < REPL_WRITERS; w++) {
        const struct repl_writer *wr = &repl_writers[w];
        for (uint32_t k = 0; k < wr->count; k++) {
            if (wr->recs[k].stream == s
                && (wr->recs[k].flags & REPL_F_MEMBER)) {
                want->members[m] = malloc(24);
                assert_non_null(want->members[m]);
                snprintf(want->members[m], 24, "r%u-%u", wr->id, k);
                m++;
            }
        }
    }
    qsort(want->members, want->member_count, sizeof(char *), repl_strcmp);
}

static void
repl_want_free(struct repl_want *want)
{
    for (size_t i = 0; i < want->member_count; i++) {
        free(want->members[i]);
    }
    free(want->members);
}

/* Everything the first `nodes` nodes must agree on, with assertions. */
static void
repl_check_all(size_t nodes)
{
    uint32_t shards = 0;
    uint32_t stream_shard[REPL_STREAMS];
    uint8_t  cluster[16];

    for (size_t i = 0; i < nodes; i++) {
        mrd_node_info info;
        assert_int_equal(
            mrd_node_info_get(repl_nodes[i].client, &info), MRD_OK);
        assert_int_equal(info.node_id, repl_nodes[i].h.node_id);
        if (i == 0) {
            shards = info.shard_count;
            memcpy(cluster, info.cluster_id, 16);
        }
        assert_int_equal(info.shard_count, shards);
        assert_memory_equal(info.cluster_id, cluster, 16);
        for (uint32_t s = 0; s < REPL_STREAMS; s++) {
            mrd_stream_info si;
            assert_int_equal(mrd_stream_info_get(repl_nodes[i].client,
                                 repl_stream_names[s], &si),
                MRD_OK);
            if (i == 0) {
                stream_shard[s] = si.shard;
            }
            assert_int_equal(si.shard, stream_shard[s]);
        }
    }
    for (size_t i = 0; i < nodes; i++) {
        repl_check_logs(i, shards, stream_shard);
    }
    for (uint32_t s = 0; s < REPL_STREAMS; s++) {
        struct repl_want want;
        repl_want_build(s, &want);
        char lww_first[24] = "";
        for (size_t i = 0; i < nodes; i++) {
            repl_check_stream(i, s, &want);
            if (i == 0) {
                memcpy(lww_first, want.lww, sizeof(lww_first));
            }
            assert_string_equal(want.lww, lww_first);
            repl_check_state(i, s, &want);
        }
        repl_want_free(&want);
    }
}

/* Waits (bounded) for the counts, then checks everything. Returns how long
 * convergence took, in ms. */
static long
repl_converge(size_t nodes, const char *what)
{
    struct repl_wait wait;
    struct timespec  t0, t1;

    repl_expected(&wait, nodes);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool ok = harness_wait_for(
        repl_counts_equal, &wait, REPL_CONVERGE_TRIES, REPL_POLL_MS);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (long) (t1.tv_sec - t0.tv_sec) * 1000L
        + (t1.tv_nsec - t0.tv_nsec) / 1000000L;
    if (!ok) {
        for (size_t i = 0; i < nodes; i++) {
            for (uint32_t s = 0; s < REPL_STREAMS; s++) {
                mrd_stream_info info = { 0 };
                int             rv   = mrd_stream_info_get(
                                  repl_nodes[i].client, repl_stream_names[s], &info);
                fprintf(stderr,
                    "replication_test: node %zu %s: %s count %" PRIu64
                    " want %" PRIu64 "\n",
                    i + 1, repl_stream_names[s], mrd_errname(rv), info.count,
                    wait.expected[s]);
            }
        }
    }
    /* The full check says precisely what is wrong, converged or not. */
    repl_check_all(nodes);
    if (!ok) {
        fail_msg("%s: no convergence within %ld ms", what, ms);
    }
    printf("replication_test: %s: converged in %ld ms\n", what, ms);
    return ms;
}

/* Counters every node must show; own = events it wrote, exact = whether it
 * has run since the mesh started (so it replicated every other event
 * exactly once). */
static void
repl_check_stats(size_t nodes, const bool *exact)
{
    uint64_t total = 0;
    for (unsigned w = 0; w < REPL_WRITERS; w++) {
        total += repl_writers[w].count;
    }
    for (size_t i = 0; i < nodes; i++) {
        uint64_t own        = i < REPL_WRITERS ? repl_writers[i].count : 0;
        uint64_t replicated = repl_stat(&repl_nodes[i], "events_replicated");
        uint64_t rejected   = repl_stat(&repl_nodes[i], "rejected_replication");
        uint64_t clamped    = repl_stat(&repl_nodes[i], "clock_clamped");
        uint64_t served     = repl_stat(&repl_nodes[i], "pulls_served");
        printf("replication_test: node %zu: events_replicated %" PRIu64
               " rejected_replication %" PRIu64 " clock_clamped %" PRIu64
               " pulls_served %" PRIu64 "\n",
            i + 1, replicated, rejected, clamped, served);
        assert_int_equal(rejected, 0);
        assert_int_equal(clamped, 0);
        if (exact[i]) {
            assert_int_equal(replicated, total - own);
        } else {
            assert_true(replicated > 0);
            assert_true(replicated <= total - own);
        }
    }
}

static void
repl_run_for(uint32_t ms)
{
    harness_sleep_ms(harness_ms(ms));
}

static void
repl_print_writers(const char *what)
{
    for (unsigned w = 0; w < REPL_WRITERS; w++) {
        printf("replication_test: %s: writer %u: %u events in %u appends "
               "(%u local), %u retries\n",
            what, repl_writers[w].id, repl_writers[w].count,
            repl_writers[w].appends, repl_writers[w].local_appends,
            repl_writers[w].retries);
    }
}

/* ---------------------------------------------------------------- test -- */

static void
test_replication(void **state)
{
    (void) state;
    uint32_t    seed = (uint32_t) time(NULL);
    const char *env  = getenv("MRD_TEST_SEED");

    if (env != NULL) {
        seed = (uint32_t) strtoul(env, NULL, 10);
    }
    printf("replication_test: seed %u (replay with MRD_TEST_SEED=%u)\n", seed,
        seed);
    uint32_t rng = seed | 1u;
    for (int i = 0; i < 4; i++) {
        snprintf(repl_cluster_id + 8 * i, 9, "%08x", repl_rand(&rng));
    }
    for (uint32_t s = 0; s < REPL_SHARED; s++) {
        snprintf(
            repl_stream_names[s], sizeof(repl_stream_names[s]), "repl-s%u", s);
    }
    for (uint32_t w = 0; w < REPL_WRITERS; w++) {
        snprintf(repl_stream_names[REPL_SHARED + w],
            sizeof(repl_stream_names[0]), "local-%u", w + 1);
    }

    /* Learn the ports, then restart every node on its port in the mesh. */
    for (unsigned i = 0; i < REPL_WRITERS; i++) {
        struct repl_node *n = &repl_nodes[i];
        assert_int_equal(harness_node_init(&n->h, i + 1), 0);
        snprintf(n->region, sizeof(n->region), "r%u", i + 1);
        repl_node_args(n, false);
        assert_int_equal(harness_node_start(&n->h, n->args), 0);
    }
    for (unsigned i = 0; i < REPL_WRITERS; i++) {
        struct repl_node *n = &repl_nodes[i];
        assert_int_equal(harness_node_stop(&n->h), 0);
        repl_node_peers(n, REPL_WRITERS);
        repl_node_args(n, true);
    }
    for (unsigned i = 0; i < REPL_WRITERS; i++) {
        struct repl_node *n = &repl_nodes[i];
        assert_int_equal(harness_node_start(&n->h, n->args), 0);
        repl_node_client(n);
    }
    for (unsigned w = 0; w < REPL_WRITERS; w++) {
        struct repl_writer *wr = &repl_writers[w];
        memset(wr, 0, sizeof(*wr));
        wr->id            = w + 1;
        wr->rng           = (seed + (w + 1) * 7919u) | 1u;
        wr->local_version = MRD_VERSION_NONE;
        wr->recs          = calloc(REPL_EVENTS_MAX, sizeof(struct repl_rec));
        assert_non_null(wr->recs);
        struct harness_node *one[] = { &repl_nodes[w].h };
        mrd_client_opts      opts;
        repl_client_opts(&opts);
        assert_int_equal(
            harness_client_open(one, 1, &opts, &wr->client), MRD_OK);
    }

    /* 1 and 2: every region writes at once, then all converge. */
    for (unsigned w = 0; w < REPL_WRITERS; w++) {
        repl_writer_start(&repl_writers[w]);
    }
    repl_run_for(2000);
    repl_writers_join();
    repl_print_writers("concurrent writers");
    for (unsigned w = 0; w < REPL_WRITERS; w++) {
        assert_true(repl_writers[w].count > 0);
    }
    repl_converge(REPL_WRITERS, "concurrent writers");
    const bool exact_all[REPL_NODES] = { true, true, true, true };
    repl_check_stats(REPL_WRITERS, exact_all);

    /* 3: node 3 dies while 1 and 2 write, comes back, catches up. */
    repl_writer_start(&repl_writers[0]);
    repl_writer_start(&repl_writers[1]);
    repl_run_for(300);
    assert_int_equal(harness_node_kill(&repl_nodes[2].h, SIGKILL), 0);
    repl_run_for(1000);
    /* Nodes 1 and 2 converge without node 3. (Today this takes up to
     * NODE_PULL_TIMEOUT_MS, 5 s: each puller round waits that long on the
     * dead peer before it asks the live one again.) */
    repl_writers_join();
    /* A dead peer must not slow the live ones: the puller skips a peer it
     * has no connection to instead of waiting out a pull timeout. */
    long down_ms = repl_converge(2, "nodes 1 and 2 with node 3 down");
    if (down_ms > (long) harness_ms(3000)) {
        fail_msg(
            "nodes 1 and 2 took %ld ms to converge with node 3 down", down_ms);
    }
    repl_writer_start(&repl_writers[0]);
    repl_writer_start(&repl_writers[1]);
    repl_run_for(200);
    assert_int_equal(
        harness_node_start(&repl_nodes[2].h, repl_nodes[2].args), 0);
    repl_writer_start(&repl_writers[2]);
    repl_run_for(500);
    repl_writers_join();
    repl_print_writers("node 3 killed");
    repl_converge(REPL_WRITERS, "node 3 killed and restarted");
    const bool exact_12[REPL_NODES] = { true, true, false, true };
    repl_check_stats(REPL_WRITERS, exact_12);

    /* 4: a node that joins late, with a fresh data dir, catches up. */
    struct repl_node *late = &repl_nodes[3];
    assert_int_equal(harness_node_init(&late->h, 4), 0);
    snprintf(late->region, sizeof(late->region), "r4");
    repl_node_peers(late, REPL_WRITERS);
    repl_node_args(late, true);
    assert_int_equal(harness_node_start(&late->h, late->args), 0);
    repl_node_client(late);
    repl_converge(REPL_NODES, "late node 4");
    repl_check_stats(REPL_NODES, exact_12);

    for (unsigned w = 0; w < REPL_WRITERS; w++) {
        mrd_client_close(repl_writers[w].client);
        free(repl_writers[w].recs);
    }
    for (unsigned i = 0; i < REPL_NODES; i++) {
        mrd_client_close(repl_nodes[i].client);
        harness_node_fini(&repl_nodes[i].h);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replication),
    };
    return cmocka_run_group_tests_name(
        "replication", tests, NULL, harness_teardown);
}
