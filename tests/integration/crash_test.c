/*
 * crash_test.c: acknowledged appends survive kill -9.
 *
 * Several writer threads, each with its own client, append concurrently to
 * their own streams: appends of 1..5 events whose data says (writer, append
 * number, event index). Meanwhile the main thread SIGKILLs the node at random
 * moments, at least CRASH_KILLS times, and restarts it on the same port. A
 * writer whose call fails retries the same append with the same idempotency
 * key until it is acknowledged, exactly as an application would.
 *
 * Afterwards every stream is read back and must hold every acknowledged
 * append exactly once, whole, in order, with nothing else; dots must be
 * unique and, per node, increasing in log order. Every event also carries
 * state ops (a counter +1, and on an append's last event an LWW register
 * set to the append's number): the state must match the events exactly,
 * since both commit in one transaction. The seed is printed and
 * taken from MRD_TEST_SEED when set.
 */
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"

#define CRASH_WRITERS 4u
#define CRASH_KILLS 22u
#define CRASH_APPENDS_MAX 100000u
#define CRASH_BATCH_MAX 5u

struct crash_writer {
    unsigned      index;
    char          stream[64];
    mrd_client   *client;
    uint32_t      rng;
    _Atomic bool *stop;
    /* Events per acknowledged append, in order: the writer's own record. */
    uint8_t         *sizes;
    _Atomic uint32_t acked;
    uint32_t         retries;
    int              fatal; /* an error that is not about the crash */
};

static struct harness_node crash_node;

static uint32_t
crash_rand(uint32_t *state)
{
    /* xorshift32: enough for schedules; the seed makes runs replayable. */
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

/* Errors a kill -9 can cause; anything else fails the test. */
static bool
crash_transient(int rv)
{
    return rv == MRD_ETIMEDOUT || rv == MRD_EUNAVAIL || rv == MRD_ECLOSED
        || rv == MRD_EBUSY;
}

static void *
crash_writer_main(void *arg)
{
    struct crash_writer *w = arg;
    char                 data[CRASH_BATCH_MAX][48];
    mrd_event_in         events[CRASH_BATCH_MAX];
    char                 key[48];
    char                 last[16];
    const char          *count_path[] = { "events" };
    const char          *last_path[]  = { "last" };
    mrd_op               ops[2]       = {
                            { .path       = count_path,
                                .path_len = 1,
                                .type     = MRD_STATE_COUNTER,
                                .kind     = MRD_OP_INC,
                                .delta    = 1 },
                            { .path       = last_path,
                                .path_len = 1,
                                .type     = MRD_STATE_LWW,
                                .kind     = MRD_OP_SET,
                                .value    = last },
    };

    while (!atomic_load(w->stop) && w->acked < CRASH_APPENDS_MAX) {
        uint32_t n = 1 + crash_rand(&w->rng) % CRASH_BATCH_MAX;
        uint32_t k = w->acked;
        for (uint32_t i = 0; i < n; i++) {
            snprintf(
                data[i], sizeof(data[i]), "w%u a%u e%u/%u", w->index, k, i, n);
            memset(&events[i], 0, sizeof(events[i]));
            events[i].type      = "CrashTested";
            events[i].data      = data[i];
            events[i].data_size = strlen(data[i]);
            events[i].ops       = ops;
            events[i].op_count  = i + 1 == n ? 2 : 1;
        }
        snprintf(last, sizeof(last), "a%u", k);
        ops[1].value_size = strlen(last);
        snprintf(key, sizeof(key), "crash-%u-%u", w->index, k);
        mrd_append_opts opts = { .expected_version = MRD_EXPECT_ANY,
            .idempotency_key                       = key,
            .idempotency_key_size                  = strlen(key) };
        int             rv;
        /* Retry the same append, same key, until it is acknowledged. */
        for (;;) {
            rv = mrd_append(w->client, w->stream, events, n, &opts, NULL);
            if (rv == MRD_OK || !crash_transient(rv)) {
                break;
            }
            w->retries++;
        }
        if (rv != MRD_OK) {
            w->fatal = rv;
            return NULL;
        }
        w->sizes[k] = (uint8_t) n;
        atomic_store(&w->acked, k + 1);
    }
    return NULL;
}

/* Reads the whole stream and checks it against the writer's record. Returns
 * the number of events checked. */
static uint64_t
crash_check_stream(struct crash_writer *w, mrd_client *client,
    uint64_t *dots_seen, uint64_t dots_cap, uint64_t *dot_count)
{
    uint64_t pos = 0, total = 0;
    uint32_t k = 0, i = 0;

    for (;;) {
        mrd_events *batch;
        assert_int_equal(
            mrd_read(client, w->stream, pos, MRD_FORWARD, 1000, &batch),
            MRD_OK);
        size_t n = mrd_events_count(batch);
        for (size_t j = 0; j < n; j++) {
            const mrd_event *e = mrd_events_at(batch, j);
            char             want[48];
            assert_true(k < w->acked); /* nothing beyond what was acked */
            snprintf(want, sizeof(want), "w%u a%u e%u/%u", w->index, k, i,
                (unsigned) w->sizes[k]);
            if (e->data_size != strlen(want)
                || memcmp(e->data, want, e->data_size) != 0) {
                fail_msg("stream %s position %" PRIu64 ": got '%.*s', want "
                         "'%s'",
                    w->stream, e->position, (int) e->data_size,
                    (const char *) e->data, want);
            }
            assert_int_equal(e->position, total);
            assert_true(*dot_count < dots_cap);
            dots_seen[(*dot_count)++] = e->dot.seq;
            total++;
            if (++i == w->sizes[k]) {
                i = 0;
                k++;
            }
        }
        pos = mrd_events_next(batch);
        mrd_events_free(batch);
        if (n == 0) {
            break;
        }
    }
    assert_int_equal(i, 0); /* every append whole */
    assert_int_equal(k, w->acked); /* every acknowledged append there */

    /* The state saw exactly these events. */
    mrd_state *st;
    assert_int_equal(mrd_state_read(client, w->stream, NULL, &st), MRD_OK);
    const mrd_value *root = mrd_state_root(st);
    assert_int_equal(mrd_state_version(st), (int64_t) total - 1);
    assert_int_equal(
        mrd_value_int(mrd_value_find(root, "events", MRD_STATE_COUNTER)),
        (int64_t) total);
    if (w->acked > 0) {
        char        want[16];
        size_t      n;
        const void *got = mrd_value_bytes(
            mrd_value_find(root, "last", MRD_STATE_LWW), 0, &n);
        snprintf(want, sizeof(want), "a%u", w->acked - 1);
        assert_non_null(got);
        assert_int_equal(n, strlen(want));
        assert_memory_equal(got, want, n);
    }
    mrd_state_free(st);
    return total;
}

static int
crash_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static void
crash_kill_loop(uint32_t *rng)
{
    for (unsigned kill = 0; kill < CRASH_KILLS; kill++) {
        /* Let the writers run 20..220 ms, then pull the plug. */
        harness_sleep_ms(20 + crash_rand(rng) % 200);
        assert_int_equal(harness_node_kill(&crash_node, SIGKILL), 0);
        harness_sleep_ms(crash_rand(rng) % 50);
        assert_int_equal(harness_node_start(&crash_node, NULL), 0);
    }
    harness_sleep_ms(200);
}

static void
test_crash_recovery(void **state)
{
    (void) state;
    struct crash_writer writers[CRASH_WRITERS];
    pthread_t           threads[CRASH_WRITERS];
    _Atomic bool        stop = false;
    uint32_t            seed = (uint32_t) time(NULL);
    const char         *env  = getenv("MRD_TEST_SEED");

    if (env != NULL) {
        seed = (uint32_t) strtoul(env, NULL, 10);
    }
    printf("crash_test: seed %u (replay with MRD_TEST_SEED=%u)\n", seed, seed);
    uint32_t rng = seed | 1u;
    assert_int_equal(harness_node_init(&crash_node, 1), 0);
    assert_int_equal(harness_node_start(&crash_node, NULL), 0);
    struct harness_node *nodes[] = { &crash_node };
    mrd_client_opts      opts;
    mrd_client_opts_init(&opts);
    opts.timeout_ms         = harness_ms(2000);
    opts.attempt_timeout_ms = harness_ms(500);
    for (unsigned i = 0; i < CRASH_WRITERS; i++) {
        memset(&writers[i], 0, sizeof(writers[i]));
        writers[i].index = i;
        writers[i].rng   = (seed + i * 7919u) | 1u;
        writers[i].stop  = &stop;
        writers[i].sizes = calloc(CRASH_APPENDS_MAX, 1);
        assert_non_null(writers[i].sizes);
        snprintf(writers[i].stream, sizeof(writers[i].stream), "crash-%u", i);
        assert_int_equal(
            harness_client_open(nodes, 1, &opts, &writers[i].client), MRD_OK);
        assert_int_equal(
            pthread_create(&threads[i], NULL, crash_writer_main, &writers[i]),
            0);
    }
    crash_kill_loop(&rng);
    atomic_store(&stop, true);
    uint32_t acked = 0, retries = 0;
    for (unsigned i = 0; i < CRASH_WRITERS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(writers[i].fatal, MRD_OK);
        acked += writers[i].acked;
        retries += writers[i].retries;
    }
    /* One more kill after the last acknowledgement: still all there. */
    assert_int_equal(harness_node_kill(&crash_node, SIGKILL), 0);
    assert_int_equal(harness_node_start(&crash_node, NULL), 0);

    uint64_t  cap   = (uint64_t) acked * CRASH_BATCH_MAX + 1;
    uint64_t *dots  = calloc(cap, sizeof(uint64_t));
    uint64_t  ndots = 0, events = 0;
    assert_non_null(dots);
    for (unsigned i = 0; i < CRASH_WRITERS; i++) {
        events += crash_check_stream(
            &writers[i], writers[0].client, dots, cap, &ndots);
    }
    /* Every dot unique. */
    qsort(dots, ndots, sizeof(uint64_t), crash_u64_cmp);
    for (uint64_t i = 1; i < ndots; i++) {
        assert_true(dots[i] > dots[i - 1]);
    }
    printf("crash_test: %u kills, %u appends acknowledged (%" PRIu64
           " events), %u retried calls, all present exactly once\n",
        CRASH_KILLS + 1, acked, events, retries);
    assert_true(acked >= CRASH_KILLS); /* the writers made progress */
    free(dots);
    for (unsigned i = 0; i < CRASH_WRITERS; i++) {
        mrd_client_close(writers[i].client);
        free(writers[i].sizes);
    }
    harness_node_fini(&crash_node);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_recovery),
    };
    return cmocka_run_group_tests_name("crash", tests, NULL, harness_teardown);
}
