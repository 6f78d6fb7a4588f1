/*
 * append_read.c: the smallest useful Meridian program.
 *
 *   example_append_read tcp://127.0.0.1:7400 [more node addresses...]
 *
 * It opens a client on the given nodes, appends three events to the stream
 * "example-orders" in one atomic append (checking that nobody else wrote to
 * the stream between our look at its version and our write), reads them
 * back, prints them and prints the stream's info. It exits 0 on success and
 * 1 on any error, after printing which call failed and why.
 *
 * Links are encrypted and authenticated: the client's key and keyring come
 * from MERIDIAN_KEY and MERIDIAN_KEYRING (mrd_client_opts.key_file and
 * keyring_file left NULL), e.g. for a lone node's first start:
 *   MERIDIAN_KEY=DATA_DIR/admin.key MERIDIAN_KEYRING=DATA_DIR/keyring
 *
 * Everything here is the public API of include/meridian.h; build against the
 * installed library with `cc append_read.c $(pkg-config --cflags --libs
 * meridian)`.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "meridian.h"

#define EXAMPLE_STREAM "example-orders"
#define EXAMPLE_EVENT_COUNT 3

/* Prints what failed and why; returns 1 for main's exit status. */
static int
example_fail(const char *what, int err)
{
    fprintf(stderr, "append_read: %s: %s (%s)\n", what, mrd_strerror(err),
        mrd_errname(err));
    return 1;
}

/* Appends three events, expecting the stream at the version it has now, so
 * a concurrent writer makes this fail with MRD_EVERSION instead of
 * interleaving with us. */
static int
example_append(mrd_client *client, mrd_append_result *result)
{
    static const char *const data[EXAMPLE_EVENT_COUNT] = {
        "{\"order\":1,\"item\":\"tea\"}",
        "{\"order\":1,\"item\":\"milk\"}",
        "{\"order\":1,\"total\":7}",
    };
    static const char *const types[EXAMPLE_EVENT_COUNT] = {
        "ItemAdded",
        "ItemAdded",
        "OrderPlaced",
    };
    const mrd_meta_entry meta[] = { { "source", "example" } };
    mrd_event_in         events[EXAMPLE_EVENT_COUNT];
    mrd_stream_info      info;
    mrd_append_opts      opts;
    int                  rv;

    rv = mrd_stream_info_get(client, EXAMPLE_STREAM, &info);
    if (rv != MRD_OK) {
        return example_fail("mrd_stream_info_get", rv);
    }
    memset(events, 0, sizeof events);
    for (size_t i = 0; i < EXAMPLE_EVENT_COUNT; i++) {
        events[i].type           = types[i];
        events[i].data           = data[i];
        events[i].data_size      = strlen(data[i]);
        events[i].content_type   = "application/json";
        events[i].correlation_id = "example-order-1";
        events[i].meta           = meta;
        events[i].meta_count     = 1;
    }
    /* Leaving idempotency_key NULL makes the library pick a random key, so
     * its own retries after a lost reply never write twice. */
    memset(&opts, 0, sizeof opts);
    opts.expected_version = info.exists ? info.version : MRD_EXPECT_NO_STREAM;
    rv                    = mrd_append(
                           client, EXAMPLE_STREAM, events, EXAMPLE_EVENT_COUNT, &opts, result);
    if (rv != MRD_OK) {
        return example_fail("mrd_append", rv);
    }
    printf("appended %" PRIu32 " events at positions %" PRIu64 "..%" PRIu64
           ", first dot (%" PRIu64 ", %" PRIu64 ")\n",
        result->count, result->first_position, result->version,
        result->first_dot.origin, result->first_dot.seq);
    return 0;
}

static void
example_print(const mrd_event *ev)
{
    printf("  #%" PRIu64 " %s (%s) dot=(%" PRIu64 ",%" PRIu64 ") data=%.*s",
        ev->position, ev->type, ev->content_type, ev->dot.origin, ev->dot.seq,
        (int) ev->data_size, (const char *) ev->data);
    for (size_t m = 0; m < ev->meta_count; m++) {
        printf(" %s=%s", ev->meta[m].key, ev->meta[m].value);
    }
    printf("\n");
}

/* Reads our three events back, forward from the first one. */
static int
example_read(mrd_client *client, const mrd_append_result *result)
{
    mrd_events *events = NULL;
    int         rv;

    rv = mrd_read(client, EXAMPLE_STREAM, result->first_position, MRD_FORWARD,
        EXAMPLE_EVENT_COUNT, &events);
    if (rv != MRD_OK) {
        return example_fail("mrd_read", rv);
    }
    printf("read %zu events (stream version %" PRId64 ", next %" PRIu64 "):\n",
        mrd_events_count(events), mrd_events_version(events),
        mrd_events_next(events));
    for (size_t i = 0; i < mrd_events_count(events); i++) {
        example_print(mrd_events_at(events, i));
    }
    rv = mrd_events_count(events) == EXAMPLE_EVENT_COUNT ? 0 : 1;
    mrd_events_free(events); /* every string above lived in the batch */
    if (rv != 0) {
        fprintf(stderr, "append_read: expected %d events back\n",
            EXAMPLE_EVENT_COUNT);
    }
    return rv;
}

int
main(int argc, char **argv)
{
    mrd_client_opts   opts;
    mrd_client       *client = NULL;
    mrd_append_result result;
    mrd_stream_info   info;
    int               rv;

    if (argc < 2) {
        fprintf(stderr,
            "usage: %s NODE_ADDRESS...\n"
            "  e.g. %s tcp://127.0.0.1:7400\n",
            argv[0], argv[0]);
        return 2;
    }
    mrd_client_opts_init(&opts); /* defaults: 10 s per call, retries */
    opts.addresses     = (const char *const *) (argv + 1);
    opts.address_count = (size_t) (argc - 1);
    rv                 = mrd_client_open(&opts, &client);
    if (rv != MRD_OK) {
        return example_fail("mrd_client_open", rv);
    }
    rv = example_append(client, &result);
    if (rv == 0) {
        rv = example_read(client, &result);
    }
    if (rv == 0) {
        int err = mrd_stream_info_get(client, EXAMPLE_STREAM, &info);
        if (err != MRD_OK) {
            rv = example_fail("mrd_stream_info_get", err);
        } else {
            printf("stream %s: exists=%d version=%" PRId64 " count=%" PRIu64
                   " shard=%" PRIu32 "\n",
                EXAMPLE_STREAM, info.exists, info.version, info.count,
                info.shard);
        }
    }
    mrd_client_close(client);
    return rv;
}
