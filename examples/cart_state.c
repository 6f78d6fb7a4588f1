/*
 * cart_state.c: a stream's state document. Each event carries ops on its
 * own stream's CRDT fields; the node applies them with the append, and a
 * read returns typed values without replaying the stream.
 *
 *   example_cart_state [NODE_URL]   (default tcp://127.0.0.1:7400)
 *
 * The client's key and keyring come from MERIDIAN_KEY and MERIDIAN_KEYRING
 * (see append_read.c).
 */
#include <inttypes.h>
#include <stdio.h>

#include <meridian.h>

static int
fail(const char *what, int rv)
{
    /* mrd_errdetail() has the node's own words, e.g. which field clashed. */
    fprintf(stderr, "%s: %s (%s)\n", what,
        mrd_errdetail()[0] != '\0' ? mrd_errdetail() : mrd_strerror(rv),
        mrd_errname(rv));
    return 1;
}

int
main(int argc, char **argv)
{
    const char     *nodes[] = { argc > 1 ? argv[1] : "tcp://127.0.0.1:7400" };
    mrd_client_opts opts;
    mrd_client     *client = NULL;

    mrd_client_opts_init(&opts);
    opts.addresses     = nodes;
    opts.address_count = 1;
    int rv             = mrd_client_open(&opts, &client);
    if (rv != MRD_OK) {
        return fail("open", rv);
    }

    /* One event, three ops: a counter, a counter in a nested map, a set. */
    const char *items[] = { "items" };
    const char *apple[] = { "lines", "apple" };
    const char *tags[]  = { "tags" };
    mrd_op      ops[]   = {
               { .path       = items,
                   .path_len = 1,
                   .type     = MRD_STATE_COUNTER,
                   .kind     = MRD_OP_INC,
                   .delta    = 2 },
               { .path       = apple,
                   .path_len = 2,
                   .type     = MRD_STATE_COUNTER,
                   .kind     = MRD_OP_INC,
                   .delta    = 2 },
               { .path         = tags,
                   .path_len   = 1,
                   .type       = MRD_STATE_SET,
                   .kind       = MRD_OP_ADD,
                   .value      = "fruit",
                   .value_size = 5 },
    };
    mrd_event_in ev = { .type = "ItemAdded", .ops = ops, .op_count = 3 };
    rv              = mrd_append(client, "cart-example", &ev, 1, NULL, NULL);
    if (rv != MRD_OK) {
        mrd_client_close(client);
        return fail("append", rv);
    }

    mrd_state *st = NULL;
    rv            = mrd_state_read(client, "cart-example", NULL, &st);
    if (rv != MRD_OK) {
        mrd_client_close(client);
        return fail("state", rv);
    }
    const mrd_value *root = mrd_state_root(st);
    printf("version %" PRId64 "\n", mrd_state_version(st));
    printf("items = %" PRId64 "\n",
        mrd_value_int(mrd_value_find(root, "items", MRD_STATE_COUNTER)));
    const mrd_value *lines = mrd_value_find(root, "lines", MRD_STATE_MAP);
    printf("lines.apple = %" PRId64 "\n",
        mrd_value_int(mrd_value_find(lines, "apple", 0)));
    const mrd_value *set = mrd_value_find(root, "tags", MRD_STATE_SET);
    for (size_t i = 0; i < mrd_value_count(set); i++) {
        size_t      n;
        const char *m = mrd_value_bytes(set, i, &n);
        printf("tag %.*s\n", (int) n, m);
    }
    mrd_state_free(st);
    mrd_client_close(client);
    return 0;
}
