/*
 * client_basic_test.c: libmeridian against one real meridiand.
 *
 * Covers the whole public API on a single node: appends and reads in both
 * directions with their limits, expected versions, idempotent retries,
 * stream and node info, long-polls, both kinds of tail and many async
 * appends in flight. Then the failover paths, with real processes: a dead
 * first address, a node killed with SIGKILL and restarted on its port while
 * a call retries, and a client whose every address is dead.
 *
 * One node serves the group; tests that kill it restart it before they end,
 * so test order does not matter. Timeouts scale with
 * MRD_TEST_TIMEOUT_MULTIPLIER.
 */
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
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

struct basic_state {
    struct harness_node node;
    mrd_client         *client;
    /* What a test may leave behind when an assertion ends it early:
     * basic_cleanup closes, joins and frees them after every test. */
    mrd_client *extra;
    mrd_tail   *tail;
    pthread_t   thread;
    bool        thread_live;
};

static struct basic_state basic;

static uint64_t
basic_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/* A stream name no other test (or earlier run on a kept dir) uses. */
static void
basic_stream(char *out, size_t size, const char *what)
{
    static atomic_uint counter;
    snprintf(out, size, "%s-%d-%u", what, (int) getpid(),
        atomic_fetch_add(&counter, 1));
}

static mrd_event_in
basic_event(const char *type, const char *data)
{
    mrd_event_in ev;
    memset(&ev, 0, sizeof ev);
    ev.type         = type;
    ev.data         = data;
    ev.data_size    = strlen(data);
    ev.content_type = "text/plain";
    return ev;
}

static int
basic_setup(void **state)
{
    (void) state;
    if (harness_node_init(&basic.node, 1) != 0
        || harness_node_start(&basic.node, NULL) != 0) {
        return -1;
    }
    struct harness_node *nodes[] = { &basic.node };
    return harness_client_open(nodes, 1, NULL, &basic.client) == MRD_OK ? 0
                                                                        : -1;
}

static int
basic_teardown(void **state)
{
    mrd_client_close(basic.client);
    basic.client = NULL;
    harness_node_fini(&basic.node);
    return harness_teardown(state);
}

/* Runs fn(arg) on basic.thread; basic_thread_join() or basic_cleanup joins
 * it. */
static void
basic_thread_start(void *(*fn)(void *), void *arg)
{
    assert_false(basic.thread_live);
    assert_int_equal(pthread_create(&basic.thread, NULL, fn, arg), 0);
    basic.thread_live = true;
}

static void
basic_thread_join(void)
{
    if (basic.thread_live) {
        pthread_join(basic.thread, NULL);
        basic.thread_live = false;
    }
}

/* After every test, passed or not: nothing a test started may outlive it,
 * and nothing may outlive the group's client. Threads and callbacks only
 * write to static structs, never to a test's stack, so an early return
 * leaves them nothing dangling to write to. */
static int
basic_cleanup(void **state)
{
    (void) state;
    basic_thread_join();
    mrd_tail_close(basic.tail);
    basic.tail = NULL;
    mrd_client_close(basic.extra); /* waits for its async calls */
    basic.extra = NULL;
    return 0;
}

/* Restarts the group's node if a test left it down (after a failure). */
static int
basic_node_up(void **state)
{
    (void) state;
    if (basic.node.pid == 0) {
        return harness_node_start(&basic.node, NULL);
    }
    return 0;
}

/* ------------------------------------------------------ append & read -- */

static void
test_append_read(void **state)
{
    char              stream[64];
    mrd_event_in      evs[5];
    mrd_meta_entry    meta[] = { { "k1", "v1" }, { "k2", "" } };
    mrd_append_opts   opts   = { .expected_version = MRD_EXPECT_NO_STREAM };
    mrd_append_result res;
    mrd_events       *got = NULL;
    char              data[5][32];

    (void) state;
    basic_stream(stream, sizeof stream, "rw");
    for (int i = 0; i < 5; i++) {
        snprintf(data[i], sizeof data[i], "data-%d", i);
        evs[i] = basic_event("Thing", data[i]);
    }
    evs[1].meta           = meta;
    evs[1].meta_count     = 2;
    evs[1].correlation_id = "corr";
    evs[1].causation_id   = "cause";
    assert_int_equal(
        mrd_append(basic.client, stream, evs, 5, &opts, &res), MRD_OK);
    assert_int_equal(res.count, 5);
    assert_int_equal(res.first_position, 0);
    assert_int_equal(res.version, 4);
    assert_int_equal(res.replayed, 0);
    assert_true(res.first_dot.origin == 1);

    /* Forward, all of it. */
    assert_int_equal(
        mrd_read(basic.client, stream, 0, MRD_FORWARD, 100, &got), MRD_OK);
    assert_int_equal(mrd_events_count(got), 5);
    assert_int_equal(mrd_events_next(got), 5);
    assert_int_equal(mrd_events_version(got), 4);
    for (size_t i = 0; i < 5; i++) {
        const mrd_event *ev = mrd_events_at(got, i);
        assert_non_null(ev);
        assert_int_equal(ev->position, i);
        assert_string_equal(ev->stream, stream);
        assert_string_equal(ev->type, "Thing");
        assert_string_equal(ev->content_type, "text/plain");
        assert_int_equal(ev->data_size, strlen(data[i]));
        assert_memory_equal(ev->data, data[i], ev->data_size);
        assert_true(ev->dot.origin == res.first_dot.origin);
        assert_true(ev->dot.seq == res.first_dot.seq + i);
    }
    const mrd_event *e1 = mrd_events_at(got, 1);
    assert_int_equal(e1->meta_count, 2);
    assert_string_equal(e1->meta[0].key, "k1");
    assert_string_equal(e1->meta[0].value, "v1");
    assert_string_equal(e1->meta[1].key, "k2");
    assert_string_equal(e1->meta[1].value, "");
    assert_string_equal(e1->correlation_id, "corr");
    assert_string_equal(e1->causation_id, "cause");
    assert_null(mrd_events_at(got, 5));
    mrd_events_free(got);
}

/* Appends n small events to stream in one append. */
static void
basic_append_n(const char *stream, size_t n)
{
    mrd_event_in evs[16];

    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        evs[i] = basic_event("Thing", "x");
    }
    assert_int_equal(
        mrd_append(basic.client, stream, evs, n, NULL, NULL), MRD_OK);
}

static void
test_read_pages(void **state)
{
    char        stream[64];
    mrd_events *got = NULL;

    (void) state;
    basic_stream(stream, sizeof stream, "pages");
    basic_append_n(stream, 5);
    /* Forward, a page in the middle. */
    assert_int_equal(
        mrd_read(basic.client, stream, 2, MRD_FORWARD, 2, &got), MRD_OK);
    assert_int_equal(mrd_events_count(got), 2);
    assert_int_equal(mrd_events_at(got, 0)->position, 2);
    assert_int_equal(mrd_events_at(got, 1)->position, 3);
    assert_int_equal(mrd_events_next(got), 4);
    assert_false(mrd_events_end(got)); /* position 4 is still to come */
    mrd_events_free(got);
    assert_int_equal(
        mrd_read(basic.client, stream, 3, MRD_FORWARD, 10, &got), MRD_OK);
    assert_int_equal(mrd_events_count(got), 2);
    assert_true(mrd_events_end(got));
    mrd_events_free(got);

    /* Backward from the end, then from position 1 to the start. */
    assert_int_equal(
        mrd_read(basic.client, stream, MRD_POSITION_END, MRD_BACKWARD, 2, &got),
        MRD_OK);
    assert_int_equal(mrd_events_count(got), 2);
    assert_int_equal(mrd_events_at(got, 0)->position, 4);
    assert_int_equal(mrd_events_at(got, 1)->position, 3);
    assert_int_equal(mrd_events_next(got), 2);
    assert_false(mrd_events_end(got));
    mrd_events_free(got);
    assert_int_equal(
        mrd_read(basic.client, stream, 1, MRD_BACKWARD, 10, &got), MRD_OK);
    assert_int_equal(mrd_events_count(got), 2);
    assert_int_equal(mrd_events_at(got, 0)->position, 1);
    assert_int_equal(mrd_events_at(got, 1)->position, 0);
    assert_int_equal(mrd_events_next(got), 0);
    assert_true(mrd_events_end(got)); /* position 0 reached */
    mrd_events_free(got);

    /* Past the end, and a stream that does not exist: empty. */
    assert_int_equal(
        mrd_read(basic.client, stream, 5, MRD_FORWARD, 10, &got), MRD_OK);
    assert_int_equal(mrd_events_count(got), 0);
    assert_int_equal(mrd_events_next(got), 5);
    assert_true(mrd_events_end(got));
    mrd_events_free(got);
    assert_int_equal(
        mrd_read(basic.client, "no-such-stream-ever", 0, MRD_FORWARD, 10, &got),
        MRD_OK);
    assert_int_equal(mrd_events_count(got), 0);
    assert_int_equal(mrd_events_version(got), MRD_VERSION_NONE);
    mrd_events_free(got);
}

/* The shard log holds the stream's events in order, with their positions;
 * paging by mrd_events_next() continues after the last item. */
static void
test_read_log(void **state)
{
    char            stream[64];
    mrd_stream_info info;
    mrd_events     *got      = NULL;
    uint64_t        after    = 0;
    uint64_t        seen     = 0;
    uint64_t        last_seq = 0;

    (void) state;
    basic_stream(stream, sizeof stream, "log");
    basic_append_n(stream, 3);
    assert_int_equal(mrd_stream_info_get(basic.client, stream, &info), MRD_OK);
    /* Page through the whole shard two events at a time. */
    for (int pages = 0; pages < 100000; pages++) {
        assert_int_equal(
            mrd_read_log(basic.client, info.shard, after, 2, &got), MRD_OK);
        size_t n = mrd_events_count(got);
        assert_int_equal(mrd_events_version(got), MRD_VERSION_NONE);
        for (size_t i = 0; i < n; i++) {
            const mrd_event *ev = mrd_events_at(got, i);
            assert_true(ev->log_seq > last_seq);
            last_seq = ev->log_seq;
            if (strcmp(ev->stream, stream) == 0) {
                assert_int_equal(ev->position, seen);
                seen++;
            }
        }
        after = mrd_events_next(got);
        mrd_events_free(got);
        if (n == 0) {
            break;
        }
        assert_int_equal(after, last_seq);
    }
    assert_int_equal(seen, 3);
    assert_int_equal(
        mrd_read_log(basic.client, info.shard, 0, 0, &got), MRD_EINVAL);
}

static void
test_limits(void **state)
{
    char              stream[64];
    mrd_event_in      ev  = basic_event("T", "x");
    mrd_events       *got = NULL;
    mrd_event_in     *many;
    mrd_append_result res;

    (void) state;
    basic_stream(stream, sizeof stream, "limits");
    /* Reads: count 0, bad direction, bad names, too long a wait. */
    assert_int_equal(
        mrd_read(basic.client, stream, 0, MRD_FORWARD, 0, &got), MRD_EINVAL);
    assert_null(got);
    assert_int_equal(mrd_read(basic.client, stream, 0, 7, 1, &got), MRD_EINVAL);
    assert_int_equal(
        mrd_read(basic.client, "", 0, MRD_FORWARD, 1, &got), MRD_ENAME);
    assert_int_equal(
        mrd_read(basic.client, "bad\xff", 0, MRD_FORWARD, 1, &got), MRD_ENAME);
    assert_int_equal(
        mrd_read_wait(basic.client, stream, 0, 1, MRD_WAIT_MS_MAX + 1, &got),
        MRD_EINVAL);
    assert_int_equal(
        mrd_read(NULL, stream, 0, MRD_FORWARD, 1, &got), MRD_EINVAL);
    /* A count above the maximum is served as the maximum. */
    assert_int_equal(mrd_read(basic.client, stream, 0, MRD_FORWARD,
                         MRD_READ_COUNT_MAX + 1, &got),
        MRD_OK);
    mrd_events_free(got);

    /* Appends: no events, too many, bad fields. */
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 0, NULL, NULL), MRD_EINVAL);
    many = calloc(MRD_APPEND_EVENTS_MAX + 1, sizeof *many);
    assert_non_null(many);
    for (size_t i = 0; i <= MRD_APPEND_EVENTS_MAX; i++) {
        many[i] = ev;
    }
    assert_int_equal(mrd_append(basic.client, stream, many,
                         MRD_APPEND_EVENTS_MAX + 1, NULL, NULL),
        MRD_ETOOBIG);
    /* Exactly the maximum is fine. */
    assert_int_equal(mrd_append(basic.client, stream, many,
                         MRD_APPEND_EVENTS_MAX, NULL, &res),
        MRD_OK);
    assert_int_equal(res.count, MRD_APPEND_EVENTS_MAX);
    free(many);
    mrd_event_in bad = basic_event("", "x");
    assert_int_equal(
        mrd_append(basic.client, stream, &bad, 1, NULL, NULL), MRD_EINVAL);
    bad           = basic_event("T", "x");
    bad.data_size = MRD_EVENT_DATA_SIZE_MAX + 1;
    assert_int_equal(
        mrd_append(basic.client, stream, &bad, 1, NULL, NULL), MRD_ETOOBIG);
    assert_int_equal(
        mrd_append(basic.client, "", &ev, 1, NULL, NULL), MRD_ENAME);
    mrd_append_opts opts = { .expected_version = -3 };
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &opts, NULL), MRD_EINVAL);
}

static void
test_expected_version(void **state)
{
    char              stream[64];
    mrd_event_in      ev = basic_event("T", "v");
    mrd_append_opts   opts;
    mrd_append_result res;

    (void) state;
    basic_stream(stream, sizeof stream, "expect");
    memset(&opts, 0, sizeof opts);
    opts.expected_version = MRD_EXPECT_EXISTS;
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &opts, &res), MRD_EVERSION);
    opts.expected_version = 0; /* no event yet, so not at version 0 */
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &opts, &res), MRD_EVERSION);
    opts.expected_version = MRD_EXPECT_NO_STREAM;
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &opts, &res), MRD_OK);
    assert_int_equal(res.version, 0);
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &opts, &res), MRD_EVERSION);
    opts.expected_version = MRD_EXPECT_EXISTS;
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &opts, &res), MRD_OK);
    assert_int_equal(res.version, 1);
    opts.expected_version = 1;
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &opts, &res), MRD_OK);
    assert_int_equal(res.version, 2);
    opts.expected_version = 1; /* stale now */
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &opts, &res), MRD_EVERSION);
    opts.expected_version = MRD_EXPECT_ANY;
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &opts, &res), MRD_OK);
    assert_int_equal(res.version, 3);
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, NULL, &res), MRD_OK);
    assert_int_equal(res.version, 4);
}

static void
test_idempotency(void **state)
{
    char              stream[64];
    mrd_event_in      ev    = basic_event("T", "once");
    mrd_event_in      other = basic_event("T", "other");
    static const char key[] = "idem-key-1";
    mrd_append_opts   opts  = { .expected_version = MRD_EXPECT_ANY,
           .idempotency_key                       = key,
           .idempotency_key_size                  = sizeof key - 1 };
    mrd_append_result first;
    mrd_append_result again;
    mrd_stream_info   info;

    (void) state;
    basic_stream(stream, sizeof stream, "idem");
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &opts, &first), MRD_OK);
    assert_int_equal(first.replayed, 0);
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &opts, &again), MRD_OK);
    assert_int_equal(again.replayed, 1);
    assert_true(again.first_dot.origin == first.first_dot.origin);
    assert_true(again.first_dot.seq == first.first_dot.seq);
    assert_int_equal(again.first_position, first.first_position);
    assert_int_equal(again.version, first.version);
    assert_int_equal(again.count, first.count);
    assert_int_equal(mrd_stream_info_get(basic.client, stream, &info), MRD_OK);
    assert_int_equal(info.count, 1); /* written once */
    assert_int_equal(mrd_append(basic.client, stream, &other, 1, &opts, NULL),
        MRD_EIDEMPOTENCY);
    /* A key with no bytes is an error, not "no key". */
    mrd_append_opts empty
        = { .expected_version = MRD_EXPECT_ANY, .idempotency_key_size = 4 };
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, &empty, NULL), MRD_EINVAL);
}

static void
test_info(void **state)
{
    char            stream[64];
    mrd_event_in    evs[3];
    mrd_stream_info info;
    mrd_node_info   node;

    (void) state;
    basic_stream(stream, sizeof stream, "info");
    assert_int_equal(mrd_stream_info_get(basic.client, stream, &info), MRD_OK);
    assert_int_equal(info.exists, 0);
    assert_int_equal(info.version, MRD_VERSION_NONE);
    assert_int_equal(info.count, 0);
    for (int i = 0; i < 3; i++) {
        evs[i] = basic_event("T", "i");
    }
    assert_int_equal(
        mrd_append(basic.client, stream, evs, 3, NULL, NULL), MRD_OK);
    assert_int_equal(mrd_stream_info_get(basic.client, stream, &info), MRD_OK);
    assert_int_equal(info.exists, 1);
    assert_int_equal(info.version, 2);
    assert_int_equal(info.count, 3);

    assert_int_equal(mrd_node_info_get(basic.client, &node), MRD_OK);
    assert_true(node.node_id == 1);
    assert_int_equal(node.protocol_version, 1);
    assert_true(node.shard_count > 0);
    assert_true(info.shard < node.shard_count);
    assert_true(node.frame_size_max > 0);
    assert_string_equal(node.version, MRD_VERSION_STRING);
    assert_int_equal(mrd_node_info_get(basic.client, NULL), MRD_EINVAL);

    /* The node's counters: the log_events gauge moves by exactly what was
     * appended, and names are the node's. */
    mrd_stats *st     = NULL;
    uint64_t   before = 0, after = 0, appends = 0;
    assert_int_equal(mrd_node_stats_get(basic.client, &st), MRD_OK);
    assert_true(mrd_stats_count(st) > 40);
    assert_int_equal(mrd_stats_find(st, "log_events", &before), MRD_OK);
    assert_int_equal(
        mrd_stats_find(st, "no_such_counter", NULL), MRD_ENOTFOUND);
    assert_non_null(mrd_stats_name(st, 0));
    assert_null(mrd_stats_name(st, mrd_stats_count(st)));
    mrd_stats_free(st);
    assert_int_equal(
        mrd_append(basic.client, stream, evs, 3, NULL, NULL), MRD_OK);
    assert_int_equal(mrd_node_stats_get(basic.client, &st), MRD_OK);
    assert_int_equal(mrd_stats_find(st, "log_events", &after), MRD_OK);
    assert_int_equal(mrd_stats_find(st, "appends", &appends), MRD_OK);
    assert_int_equal(after, before + 3);
    assert_true(appends >= 2);
    bool seen = false;
    for (size_t i = 0; i < mrd_stats_count(st); i++) {
        if (strcmp(mrd_stats_name(st, i), "appends") == 0) {
            seen = mrd_stats_value(st, i) == appends;
        }
    }
    assert_true(seen);
    mrd_stats_free(st);
    assert_int_equal(mrd_node_stats_get(basic.client, NULL), MRD_EINVAL);
}

/* mrd_client_open checks its options before it dials anything. */
static void
test_open_options(void **state)
{
    const char     *urls[65];
    mrd_client_opts opts;
    mrd_client     *client = (mrd_client *) &opts; /* must become NULL */

    (void) state;
    for (size_t i = 0; i < 65; i++) {
        urls[i] = basic.node.url;
    }
    mrd_client_opts_init(&opts);
    assert_int_equal(opts.timeout_ms, 10000);
    assert_int_equal(opts.attempt_timeout_ms, 3000);
    assert_int_equal(opts.backoff_min_ms, 20);
    assert_int_equal(opts.backoff_max_ms, 1000);
    assert_int_equal(opts.frame_size_max, 16u * 1024u * 1024u);
    mrd_append_opts aopts;
    memset(&aopts, 0xff, sizeof aopts);
    mrd_append_opts_init(&aopts);
    assert_int_equal(aopts.expected_version, MRD_EXPECT_ANY);
    assert_null(aopts.idempotency_key);
    assert_int_equal(aopts.idempotency_key_size, 0);
    opts.addresses = urls;
    assert_int_equal(mrd_client_open(&opts, &client), MRD_EINVAL);
    assert_null(client); /* no addresses */
    opts.address_count = 65;
    assert_int_equal(mrd_client_open(&opts, &client), MRD_EINVAL);
    opts.address_count  = 1;
    opts.frame_size_max = 1024;
    assert_int_equal(mrd_client_open(&opts, &client), MRD_EINVAL);
    /* Below a whole read reply: refused, since replies could be dropped. */
    opts.frame_size_max = 4u * 1024u * 1024u;
    assert_int_equal(mrd_client_open(&opts, &client), MRD_EINVAL);
    opts.frame_size_max = MRD_FRAME_SIZE_MAX + 1;
    assert_int_equal(mrd_client_open(&opts, &client), MRD_EINVAL);
    opts.frame_size_max = 0; /* zero: the default */
    opts.backoff_min_ms = 2000;
    assert_int_equal(mrd_client_open(&opts, &client), MRD_EINVAL);
    opts.backoff_min_ms = 0;
    urls[0]             = "not a url";
    assert_int_equal(mrd_client_open(&opts, &client), MRD_EINVAL);
    urls[0] = basic.node.url;
    assert_int_equal(mrd_client_open(NULL, &client), MRD_EINVAL);
    assert_int_equal(mrd_client_open(&opts, NULL), MRD_EINVAL);
    /* 64 addresses is fine, and all zero timeouts mean the defaults. */
    memset(&opts, 0, sizeof opts);
    opts.addresses     = urls;
    opts.address_count = 64;
    assert_int_equal(mrd_client_open(&opts, &basic.extra), MRD_OK);
    assert_int_equal(
        mrd_node_info_get(basic.extra, &(mrd_node_info) { 0 }), MRD_OK);
    mrd_client_close(basic.extra);
    basic.extra = NULL;
    mrd_client_close(NULL);
}

/* ---------------------------------------------------------- long-poll -- */

struct basic_delayed {
    char     stream[64];
    uint32_t delay_ms;
    int      rv;
};

static struct basic_delayed basic_delayed_arg;

static void *
basic_delayed_append(void *arg)
{
    struct basic_delayed *d  = arg;
    mrd_event_in          ev = basic_event("Late", "late");

    harness_sleep_ms(d->delay_ms);
    d->rv = mrd_append(basic.client, d->stream, &ev, 1, NULL, NULL);
    return NULL;
}

/* Appends one event to stream from basic.thread after delay_ms. */
static void
basic_append_later(const char *stream, uint32_t delay_ms)
{
    struct basic_delayed *d = &basic_delayed_arg;

    snprintf(d->stream, sizeof d->stream, "%s", stream);
    d->delay_ms = delay_ms;
    d->rv       = -1;
    basic_thread_start(basic_delayed_append, d);
}

static void
test_long_poll(void **state)
{
    char        stream[64];
    mrd_events *got = NULL;
    uint64_t    t0;
    uint64_t    took;

    (void) state;
    basic_stream(stream, sizeof stream, "poll");
    /* Nothing comes: an empty batch after about the wait. */
    t0 = basic_now_ms();
    assert_int_equal(
        mrd_read_wait(basic.client, stream, 0, 10, 300, &got), MRD_OK);
    assert_int_equal(mrd_events_count(got), 0);
    assert_true(basic_now_ms() - t0 >= 250);
    mrd_events_free(got);

    /* An append from another thread wakes the poll long before its wait. */
    basic_append_later(stream, 200);
    t0 = basic_now_ms();
    assert_int_equal(
        mrd_read_wait(basic.client, stream, 0, 10, 20000, &got), MRD_OK);
    took = basic_now_ms() - t0;
    basic_thread_join();
    assert_int_equal(basic_delayed_arg.rv, MRD_OK);
    assert_int_equal(mrd_events_count(got), 1);
    assert_string_equal(mrd_events_at(got, 0)->type, "Late");
    assert_true(took < harness_ms(10000));
    mrd_events_free(got);
}

/* --------------------------------------------------------------- tails -- */

static void
test_tail_next(void **state)
{
    char         stream[64];
    mrd_event_in evs[2] = { basic_event("A", "1"), basic_event("B", "2") };
    mrd_events  *got    = NULL;

    (void) state;
    basic_stream(stream, sizeof stream, "tailnext");
    assert_int_equal(
        mrd_append(basic.client, stream, evs, 2, NULL, NULL), MRD_OK);
    assert_int_equal(
        mrd_tail_open(basic.client, stream, 0, &basic.tail), MRD_OK);
    assert_int_equal(mrd_tail_next(basic.tail, 5000, &got), MRD_OK);
    assert_int_equal(mrd_events_count(got), 2);
    assert_int_equal(mrd_tail_position(basic.tail), 2);
    mrd_events_free(got);
    assert_int_equal(mrd_tail_next(basic.tail, 200, &got), MRD_ETIMEDOUT);
    assert_null(got);
    assert_int_equal(mrd_tail_position(basic.tail), 2);

    basic_append_later(stream, 100);
    assert_int_equal(
        mrd_tail_next(basic.tail, harness_ms(10000), &got), MRD_OK);
    basic_thread_join();
    assert_int_equal(mrd_events_count(got), 1);
    assert_int_equal(mrd_events_at(got, 0)->position, 2);
    assert_int_equal(mrd_tail_position(basic.tail), 3);
    mrd_events_free(got);
    mrd_tail_close(basic.tail);
    basic.tail = NULL;
}

struct basic_seen {
    pthread_mutex_t mtx;
    uint64_t        positions[16];
    size_t          count;
    size_t          stop_after; /* cb returns 1 on this many; 0: never */
    atomic_int      errors;
};

static struct basic_seen basic_seen_arg = { .mtx = PTHREAD_MUTEX_INITIALIZER };

static int
basic_tail_cb(void *arg, const mrd_event *ev)
{
    struct basic_seen *s = arg;
    int                stop;

    pthread_mutex_lock(&s->mtx);
    if (s->count < sizeof s->positions / sizeof s->positions[0]) {
        s->positions[s->count] = ev->position;
    }
    s->count++;
    stop = s->stop_after != 0 && s->count >= s->stop_after;
    pthread_mutex_unlock(&s->mtx);
    return stop;
}

static void
basic_tail_err_cb(void *arg, int err)
{
    struct basic_seen *s = arg;
    (void) err;
    atomic_fetch_add(&s->errors, 1);
}

static size_t
basic_seen_count(void)
{
    size_t count;
    pthread_mutex_lock(&basic_seen_arg.mtx);
    count = basic_seen_arg.count;
    pthread_mutex_unlock(&basic_seen_arg.mtx);
    return count;
}

static void
basic_seen_reset(size_t stop_after)
{
    pthread_mutex_lock(&basic_seen_arg.mtx);
    memset(basic_seen_arg.positions, 0, sizeof basic_seen_arg.positions);
    basic_seen_arg.count      = 0;
    basic_seen_arg.stop_after = stop_after;
    atomic_store(&basic_seen_arg.errors, 0);
    pthread_mutex_unlock(&basic_seen_arg.mtx);
}

static bool
basic_seen_three(void *arg)
{
    (void) arg;
    return basic_seen_count() >= 3;
}

static void
test_tail_start(void **state)
{
    char         stream[64];
    mrd_event_in evs[3] = { basic_event("A", "1"), basic_event("B", "2"),
        basic_event("C", "3") };
    uint64_t     t0;

    (void) state;
    basic_stream(stream, sizeof stream, "tailcb");
    basic_seen_reset(0);
    assert_int_equal(mrd_tail_start(basic.client, stream, 0, basic_tail_cb,
                         basic_tail_err_cb, &basic_seen_arg, &basic.tail),
        MRD_OK);
    /* Appended while the tail's long-poll waits. */
    harness_sleep_ms(100);
    assert_int_equal(
        mrd_append(basic.client, stream, evs, 1, NULL, NULL), MRD_OK);
    assert_int_equal(
        mrd_append(basic.client, stream, evs + 1, 2, NULL, NULL), MRD_OK);
    assert_true(harness_wait_for(basic_seen_three, NULL, 250, 20));
    assert_int_equal(basic_seen_count(), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(basic_seen_arg.positions[i], i);
    }
    assert_int_equal(atomic_load(&basic_seen_arg.errors), 0);
    /* Close cancels the long-poll in flight: prompt. */
    t0 = basic_now_ms();
    mrd_tail_close(basic.tail);
    basic.tail = NULL;
    assert_true(basic_now_ms() - t0 < 1000);

    /* A callback that says stop ends the thread; position is past it. */
    basic_seen_reset(2);
    assert_int_equal(mrd_tail_start(basic.client, stream, 0, basic_tail_cb,
                         NULL, &basic_seen_arg, &basic.tail),
        MRD_OK);
    harness_sleep_ms(300);
    assert_int_equal(basic_seen_count(), 2);
    assert_int_equal(mrd_tail_position(basic.tail), 2);
    mrd_tail_close(basic.tail);
    basic.tail     = NULL;
    mrd_tail *none = NULL;
    assert_int_equal(
        mrd_tail_start(basic.client, stream, 0, NULL, NULL, NULL, &none),
        MRD_EINVAL);
    assert_null(none);
}

/* --------------------------------------------------------------- async -- */

struct basic_async {
    atomic_int done;
    atomic_int ok;
    atomic_int failed_with; /* last error seen */
};

static struct basic_async basic_async_arg;

static void
basic_async_cb(void *arg, int err, const mrd_append_result *result)
{
    struct basic_async *a = arg;

    if (err == MRD_OK && result != NULL && result->count == 1) {
        atomic_fetch_add(&a->ok, 1);
    } else {
        atomic_store(&a->failed_with, err);
    }
    atomic_fetch_add(&a->done, 1);
}

static void
basic_async_reset(void)
{
    atomic_store(&basic_async_arg.done, 0);
    atomic_store(&basic_async_arg.ok, 0);
    atomic_store(&basic_async_arg.failed_with, MRD_OK);
}

static int basic_async_want;

static bool
basic_async_all_done(void *arg)
{
    (void) arg;
    return atomic_load(&basic_async_arg.done) >= basic_async_want;
}

static void
test_async_inflight(void **state)
{
    char            stream[64];
    mrd_event_in    ev = basic_event("Async", "a");
    mrd_stream_info info;

    (void) state;
    basic_stream(stream, sizeof stream, "async");
    basic_async_reset();
    basic_async_want = 64;
    for (int i = 0; i < 64; i++) {
        assert_int_equal(mrd_append_async(basic.client, stream, &ev, 1, NULL,
                             basic_async_cb, &basic_async_arg),
            MRD_OK);
    }
    assert_true(harness_wait_for(basic_async_all_done, NULL, 750, 20));
    assert_int_equal(atomic_load(&basic_async_arg.ok), 64);
    assert_int_equal(mrd_stream_info_get(basic.client, stream, &info), MRD_OK);
    assert_int_equal(info.count, 64);
    assert_int_equal(
        mrd_append_async(basic.client, stream, &ev, 1, NULL, NULL, NULL),
        MRD_EINVAL);
}

/* Every call object in flight (on a dead address, so they stay in flight):
 * the next async append is refused with MRD_EFULL, and every callback
 * still runs, once, with MRD_EUNAVAIL. */
static void
test_async_full(void **state)
{
    char            dead[HARNESS_URL_SIZE];
    const char     *urls[1] = { dead };
    mrd_client_opts opts;
    mrd_event_in    ev = basic_event("Full", "f");

    (void) state;
    basic_async_reset();
    basic_async_want = MRD_CLIENT_INFLIGHT_MAX;
    assert_int_equal(harness_dead_url(dead, sizeof dead), 0);
    mrd_client_opts_init(&opts);
    opts.timeout_ms = 1500;
    assert_int_equal(
        harness_client_open_urls(urls, 1, &opts, &basic.extra), MRD_OK);
    for (unsigned i = 0; i < MRD_CLIENT_INFLIGHT_MAX; i++) {
        assert_int_equal(mrd_append_async(basic.extra, "full", &ev, 1, NULL,
                             basic_async_cb, &basic_async_arg),
            MRD_OK);
    }
    assert_int_equal(mrd_append_async(basic.extra, "full", &ev, 1, NULL,
                         basic_async_cb, &basic_async_arg),
        MRD_EFULL);
    assert_true(harness_wait_for(basic_async_all_done, NULL, 500, 20));
    assert_int_equal(atomic_load(&basic_async_arg.ok), 0);
    assert_int_equal(atomic_load(&basic_async_arg.failed_with), MRD_EUNAVAIL);
    assert_int_equal(
        atomic_load(&basic_async_arg.done), MRD_CLIENT_INFLIGHT_MAX);
    mrd_client_close(basic.extra);
    basic.extra = NULL;
}

/* ------------------------------------------------------------ failover -- */

static void
test_failover_dead_first(void **state)
{
    char              dead[HARNESS_URL_SIZE];
    const char       *urls[2] = { dead, basic.node.url };
    mrd_event_in      ev      = basic_event("F", "over");
    mrd_append_result res;
    mrd_events       *got = NULL;
    char              stream[64];
    uint64_t          t0;

    (void) state;
    basic_stream(stream, sizeof stream, "dead-first");
    assert_int_equal(harness_dead_url(dead, sizeof dead), 0);
    assert_int_equal(
        harness_client_open_urls(urls, 2, NULL, &basic.extra), MRD_OK);
    t0 = basic_now_ms();
    assert_int_equal(
        mrd_append(basic.extra, stream, &ev, 1, NULL, &res), MRD_OK);
    /* Well under one attempt timeout: a node with no connection is skipped
     * after a short wait, not after attempt_timeout_ms. */
    assert_true(basic_now_ms() - t0 < harness_ms(2500));
    assert_int_equal(
        mrd_read(basic.extra, stream, 0, MRD_FORWARD, 10, &got), MRD_OK);
    assert_int_equal(mrd_events_count(got), 1);
    mrd_events_free(got);
    mrd_client_close(basic.extra);
    basic.extra = NULL;
}

struct basic_retry {
    char              stream[64];
    int               rv;
    mrd_append_result res;
};

static struct basic_retry basic_retry_arg;

static void *
basic_retry_append(void *arg)
{
    struct basic_retry *r  = arg;
    mrd_event_in        ev = basic_event("Retried", "r");

    r->rv = mrd_append(basic.extra, r->stream, &ev, 1, NULL, &r->res);
    return NULL;
}

/* The node dies under a call; the call keeps retrying until the node is
 * back on the same port, and the event is written exactly once. */
static void
test_failover_restart(void **state)
{
    struct harness_node *nodes[] = { &basic.node };
    struct basic_retry  *r       = &basic_retry_arg;
    mrd_client_opts      opts;
    mrd_node_info        info;
    mrd_events          *got = NULL;

    (void) state;
    basic_stream(r->stream, sizeof r->stream, "restart");
    r->rv = -1;
    mrd_client_opts_init(&opts);
    opts.timeout_ms         = harness_ms(20000);
    opts.attempt_timeout_ms = harness_ms(2000);
    assert_int_equal(
        harness_client_open(nodes, 1, &opts, &basic.extra), MRD_OK);
    assert_int_equal(mrd_node_info_get(basic.extra, &info), MRD_OK);

    assert_int_equal(harness_node_kill(&basic.node, SIGKILL), 0);
    basic_thread_start(basic_retry_append, r);
    harness_sleep_ms(700); /* the call fails and backs off meanwhile */
    /* From the main thread, so the node gets PR_SET_PDEATHSIG. */
    assert_int_equal(harness_node_start(&basic.node, NULL), 0);
    basic_thread_join();
    assert_int_equal(r->rv, MRD_OK);
    assert_int_equal(r->res.count, 1);
    assert_int_equal(
        mrd_read(basic.extra, r->stream, 0, MRD_FORWARD, 10, &got), MRD_OK);
    assert_int_equal(mrd_events_count(got), 1);
    mrd_events_free(got);
    mrd_client_close(basic.extra);
    basic.extra = NULL;
}

/* SIGTERM stops the node cleanly (exit 0), and what it acknowledged is
 * there after a restart on the same port; the group's client reconnects
 * by itself. */
static void
test_stop_restart(void **state)
{
    char              stream[64];
    mrd_event_in      ev = basic_event("Durable", "d");
    mrd_append_result res;
    mrd_events       *got = NULL;

    (void) state;
    basic_stream(stream, sizeof stream, "durable");
    assert_int_equal(
        mrd_append(basic.client, stream, &ev, 1, NULL, &res), MRD_OK);
    assert_int_equal(harness_node_stop(&basic.node), 0);
    assert_true(harness_node_log_contains(&basic.node, "\"stopped\""));
    assert_int_equal(harness_node_start(&basic.node, NULL), 0);
    assert_int_equal(
        mrd_read(basic.client, stream, 0, MRD_FORWARD, 10, &got), MRD_OK);
    assert_int_equal(mrd_events_count(got), 1);
    assert_true(mrd_events_at(got, 0)->dot.seq == res.first_dot.seq);
    mrd_events_free(got);
}

static void
test_unavailable(void **state)
{
    char            dead1[HARNESS_URL_SIZE];
    char            dead2[HARNESS_URL_SIZE];
    const char     *urls[2] = { dead1, dead2 };
    mrd_client_opts opts;
    mrd_event_in    ev  = basic_event("U", "u");
    mrd_events     *got = NULL;
    uint64_t        t0;
    uint64_t        took;

    (void) state;
    assert_int_equal(harness_dead_url(dead1, sizeof dead1), 0);
    assert_int_equal(harness_dead_url(dead2, sizeof dead2), 0);
    mrd_client_opts_init(&opts);
    opts.timeout_ms = 1500;
    assert_int_equal(
        harness_client_open_urls(urls, 2, &opts, &basic.extra), MRD_OK);
    t0 = basic_now_ms();
    assert_int_equal(
        mrd_append(basic.extra, "unavail", &ev, 1, NULL, NULL), MRD_EUNAVAIL);
    took = basic_now_ms() - t0;
    assert_true(took >= 1400);
    assert_true(took < 1500 + harness_ms(1500));
    assert_int_equal(mrd_read(basic.extra, "unavail", 0, MRD_FORWARD, 1, &got),
        MRD_EUNAVAIL);
    assert_null(got);
    mrd_client_close(basic.extra);
    basic.extra = NULL;
}

/* --------------------------------------------------------- meridianctl -- */

static void
test_ctl(void **state)
{
    char        out[256];
    char        stream[64];
    mrd_events *got = NULL;

    (void) state;
    const char *version[] = { "--version", NULL };
    assert_int_equal(harness_run_ctl(version, out, sizeof out), 0);
    assert_non_null(strstr(out, MRD_VERSION_STRING));

    basic_stream(stream, sizeof stream, "ctl");
    const char *append[] = { "--node", basic.node.url, "append", stream,
        "--type", "FromCtl", "--data", "hello", NULL };
    assert_int_equal(harness_run_ctl(append, out, sizeof out), 0);
    assert_int_equal(
        mrd_read(basic.client, stream, 0, MRD_FORWARD, 10, &got), MRD_OK);
    assert_int_equal(mrd_events_count(got), 1);
    assert_string_equal(mrd_events_at(got, 0)->type, "FromCtl");
    mrd_events_free(got);
}

#define BASIC_TEST(f)                                                          \
    cmocka_unit_test_setup_teardown(f, basic_node_up, basic_cleanup)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        BASIC_TEST(test_append_read),
        BASIC_TEST(test_read_pages),
        BASIC_TEST(test_read_log),
        BASIC_TEST(test_limits),
        BASIC_TEST(test_expected_version),
        BASIC_TEST(test_idempotency),
        BASIC_TEST(test_info),
        BASIC_TEST(test_open_options),
        BASIC_TEST(test_long_poll),
        BASIC_TEST(test_tail_next),
        BASIC_TEST(test_tail_start),
        BASIC_TEST(test_async_inflight),
        BASIC_TEST(test_async_full),
        BASIC_TEST(test_failover_dead_first),
        BASIC_TEST(test_failover_restart),
        BASIC_TEST(test_stop_restart),
        BASIC_TEST(test_unavailable),
        BASIC_TEST(test_ctl),
    };
    return cmocka_run_group_tests_name(
        "client_basic", tests, basic_setup, basic_teardown);
}
