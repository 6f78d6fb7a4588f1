/*
 * shutdown_test.c: SIGTERM while appends are in flight. The node must exit
 * 0 after answering what it had; every append the client saw acknowledged
 * must be there after a restart, exactly once; every other append must have
 * failed with an error that says the node went away (never a false
 * success), and a long-poll parked at the time must be answered, not
 * dropped.
 */
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

#define SD_APPENDS 400u

struct sd_call {
    unsigned          index;
    char              data[32];
    _Atomic int       err;
    _Atomic bool      done;
    mrd_append_result result;
};

static struct sd_call   sd_calls[SD_APPENDS];
static _Atomic unsigned sd_done;

static void
sd_append_cb(void *arg, int err, const mrd_append_result *result)
{
    struct sd_call *c = arg;
    if (err == MRD_OK) {
        c->result = *result;
    }
    atomic_store(&c->err, err);
    atomic_store(&c->done, true);
    atomic_fetch_add(&sd_done, 1);
}

static bool
sd_all_done(void *arg)
{
    (void) arg;
    return atomic_load(&sd_done) == SD_APPENDS;
}

static bool
sd_some_done(void *arg)
{
    (void) arg;
    return atomic_load(&sd_done) >= 10;
}

struct sd_poll {
    mrd_client *client;
    int         rv;
    size_t      count;
    uint64_t    took_ms;
};

static void *
sd_poll_main(void *arg)
{
    struct sd_poll *p      = arg;
    mrd_events     *events = NULL;
    uint64_t        start  = 0;
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    start = (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
    p->rv = mrd_read_wait(p->client, "sd-quiet", 0, 10, 30000, &events);
    clock_gettime(CLOCK_MONOTONIC, &ts);
    p->took_ms = (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u
        - start;
    if (p->rv == MRD_OK) {
        p->count = mrd_events_count(events);
        mrd_events_free(events);
    }
    return NULL;
}

static void
test_sigterm_in_flight(void **state)
{
    (void) state;
    struct harness_node node;
    mrd_client         *client, *poller;
    mrd_client_opts     opts;
    pthread_t           poll_thread;
    struct sd_poll      poll = { 0 };

    assert_int_equal(harness_node_init(&node, 1), 0);
    assert_int_equal(harness_node_start(&node, NULL), 0);
    struct harness_node *nodes[] = { &node };
    mrd_client_opts_init(&opts);
    opts.timeout_ms         = harness_ms(3000);
    opts.attempt_timeout_ms = harness_ms(1000);
    assert_int_equal(harness_client_open(nodes, 1, &opts, &client), MRD_OK);
    /* The poller's deadline is long: its answer must come from the node's
     * shutdown, well before the 30 s wait would end. */
    opts.timeout_ms = harness_ms(60000);
    assert_int_equal(harness_client_open(nodes, 1, &opts, &poller), MRD_OK);
    poll.client = poller;
    assert_int_equal(
        pthread_create(&poll_thread, NULL, sd_poll_main, &poll), 0);
    harness_sleep_ms(200); /* the long-poll is parked by now */

    for (unsigned i = 0; i < SD_APPENDS; i++) {
        struct sd_call *c = &sd_calls[i];
        c->index          = i;
        snprintf(c->data, sizeof(c->data), "sd-%u", i);
        mrd_event_in ev = {
            .type = "Shutdown", .data = c->data, .data_size = strlen(c->data)
        };
        int rv;
        do {
            rv = mrd_append_async(client, "sd", &ev, 1, NULL, sd_append_cb, c);
        } while (rv == MRD_EFULL);
        assert_int_equal(rv, MRD_OK);
        if (i == SD_APPENDS / 4) {
            /* Once some are answered, SIGTERM with most of the appends still
             * in flight or to come. */
            assert_true(harness_wait_for(sd_some_done, NULL, 200, 10));
            kill(node.pid, SIGTERM);
        }
    }
    assert_int_equal(harness_node_stop(&node), 0); /* a clean exit */
    assert_true(harness_wait_for(sd_all_done, NULL, 200, 50));
    pthread_join(poll_thread, NULL);
    /* The parked long-poll was answered (empty) by the stopping node, or
     * failed over to nothing; it never waited out its 30 s. */
    printf("shutdown_test: long-poll answered in %llu ms: %s\n",
        (unsigned long long) poll.took_ms, mrd_errname(poll.rv));
    assert_true(poll.took_ms < harness_ms(20000));
    assert_true(harness_node_log_contains(&node, "\"msg\":\"stopped\""));

    unsigned acked = 0, failed = 0;
    for (unsigned i = 0; i < SD_APPENDS; i++) {
        int err = atomic_load(&sd_calls[i].err);
        if (err == MRD_OK) {
            acked++;
        } else {
            /* The only acceptable failures say the node went away. */
            assert_true(err == MRD_ETIMEDOUT || err == MRD_EUNAVAIL
                || err == MRD_ECLOSED);
            failed++;
        }
    }
    printf(
        "shutdown_test: %u acknowledged, %u failed cleanly\n", acked, failed);
    assert_true(acked > 0);

    assert_int_equal(harness_node_start(&node, NULL), 0);
    /* The same client reads back: it must find the node again although
     * its last 300 calls failed against a node that went away. */
    mrd_client *reader = client;
    mrd_events *events;
    assert_int_equal(
        mrd_read(reader, "sd", 0, MRD_FORWARD, MRD_READ_COUNT_MAX, &events),
        MRD_OK);
    bool *seen = calloc(SD_APPENDS, sizeof(bool));
    assert_non_null(seen);
    for (size_t i = 0; i < mrd_events_count(events); i++) {
        const mrd_event *e = mrd_events_at(events, i);
        unsigned         k;
        assert_int_equal(sscanf((const char *) e->data, "sd-%u", &k), 1);
        assert_true(k < SD_APPENDS);
        assert_false(seen[k]); /* never twice */
        seen[k] = true;
    }
    for (unsigned i = 0; i < SD_APPENDS; i++) {
        if (atomic_load(&sd_calls[i].err) == MRD_OK) {
            assert_true(seen[i]); /* every acknowledged append is there */
        }
    }
    free(seen);
    mrd_events_free(events);
    mrd_client_close(poller);
    mrd_client_close(client);
    harness_node_fini(&node);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_in_flight),
    };
    return cmocka_run_group_tests_name(
        "shutdown", tests, NULL, harness_teardown);
}
