/*
 * state_test.c: per-stream CRDT state through the public API, against one
 * real meridiand.
 *
 * Every op kind on every type (counter +5 -2 = 3, LWW last write wins, a
 * multi-value register with one writer, flag enable/disable, set add and
 * remove, a counter in a nested map, DELETE), then what must not happen:
 * an op on a field of another type fails the whole append with MRD_ETYPE
 * and writes nothing (version, events and state unchanged). Reads of one
 * field against all, the state of a stream without any (empty root,
 * version -1), and state equal after a SIGKILL and restart. The client's
 * own checks of ops and state reads run without the node's help, and
 * meridianctl's --op and state --json are driven end to end.
 *
 * One node serves the group, each test on its own streams; tests that kill
 * it restart it before they end. Timeouts scale with
 * MRD_TEST_TIMEOUT_MULTIPLIER.
 */
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
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

struct st_group {
    struct harness_node node;
    mrd_client         *client;
    mrd_state          *state; /* freed after every test */
    mrd_state          *state2;
};

static struct st_group st;

static void
st_stream(char *out, size_t size, const char *what)
{
    static atomic_uint counter;
    snprintf(out, size, "%s-%d-%u", what, (int) getpid(),
        atomic_fetch_add(&counter, 1));
}

static int
st_setup(void **state)
{
    (void) state;
    if (harness_node_init(&st.node, 1) != 0
        || harness_node_start(&st.node, NULL) != 0) {
        return -1;
    }
    struct harness_node *nodes[] = { &st.node };
    return harness_client_open(nodes, 1, NULL, &st.client) == MRD_OK ? 0 : -1;
}

static int
st_teardown(void **state)
{
    mrd_client_close(st.client);
    st.client = NULL;
    harness_node_fini(&st.node);
    return harness_teardown(state);
}

static int
st_node_up(void **state)
{
    (void) state;
    if (st.node.pid == 0) {
        return harness_node_start(&st.node, NULL);
    }
    return 0;
}

static int
st_cleanup(void **state)
{
    (void) state;
    mrd_state_free(st.state);
    mrd_state_free(st.state2);
    st.state  = NULL;
    st.state2 = NULL;
    return 0;
}

/* ------------------------------------------------------------ helpers -- */

/* Appends one event carrying ops. */
static int
st_append(
    const char *stream, const mrd_op *ops, size_t count, mrd_append_result *res)
{
    mrd_event_in ev;

    memset(&ev, 0, sizeof ev);
    ev.type     = "StateChanged";
    ev.ops      = ops;
    ev.op_count = count;
    return mrd_append(st.client, stream, &ev, 1, NULL, res);
}

static mrd_op
st_op(const char *const *path, size_t len, int type, int kind)
{
    mrd_op op;

    memset(&op, 0, sizeof op);
    op.path     = path;
    op.path_len = len;
    op.type     = type;
    op.kind     = kind;
    return op;
}

static mrd_op
st_inc(const char *const *path, size_t len, int64_t delta)
{
    mrd_op op = st_op(path, len, MRD_STATE_COUNTER, MRD_OP_INC);
    op.delta  = delta;
    return op;
}

static mrd_op
st_bytes_op(const char *const *path, int type, int kind, const char *value)
{
    mrd_op op     = st_op(path, 1, type, kind);
    op.value      = value;
    op.value_size = strlen(value);
    return op;
}

/* Reads the whole state into st.state and returns the root. */
static const mrd_value *
st_read(const char *stream)
{
    mrd_state_free(st.state);
    st.state = NULL;
    assert_int_equal(mrd_state_read(st.client, stream, NULL, &st.state), 0);
    assert_non_null(st.state);
    const mrd_value *root = mrd_state_root(st.state);
    assert_non_null(root);
    assert_int_equal(mrd_value_type(root), MRD_STATE_MAP);
    return root;
}

static const mrd_value *
st_field(const mrd_value *map, const char *name, int type)
{
    const mrd_value *v = mrd_value_find(map, name, 0);
    assert_non_null(v);
    assert_int_equal(mrd_value_type(v), type);
    return v;
}

static void
st_item_equal(const mrd_value *v, size_t i, const char *want)
{
    size_t      size = 99;
    const void *p    = mrd_value_bytes(v, i, &size);
    assert_non_null(p);
    assert_int_equal(size, strlen(want));
    assert_memory_equal(p, want, size);
}

/* Structural equality of two values, recursively. */
static bool
st_value_equal(const mrd_value *a, const mrd_value *b)
{
    const char *na;
    const char *nb;
    size_t      sa;
    size_t      sb;

    if (mrd_value_type(a) != mrd_value_type(b)
        || mrd_value_int(a) != mrd_value_int(b)
        || mrd_value_bool(a) != mrd_value_bool(b)
        || mrd_value_count(a) != mrd_value_count(b)) {
        return false;
    }
    for (size_t i = 0; i < mrd_value_count(a); i++) {
        if (mrd_value_type(a) == MRD_STATE_MAP) {
            const mrd_value *ca = mrd_value_entry(a, i, &na);
            const mrd_value *cb = mrd_value_entry(b, i, &nb);
            if (strcmp(na, nb) != 0 || !st_value_equal(ca, cb)) {
                return false;
            }
            continue;
        }
        const void *pa = mrd_value_bytes(a, i, &sa);
        const void *pb = mrd_value_bytes(b, i, &sb);
        if (sa != sb || memcmp(pa, pb, sa) != 0) {
            return false;
        }
    }
    return true;
}

/* -------------------------------------------------------- every type -- */

static void
test_counter(void **state)
{
    static const char *const visits[] = { "visits" };
    char                     stream[64];
    mrd_append_result        res;
    mrd_op                   op;

    (void) state;
    st_stream(stream, sizeof stream, "counter");
    op = st_inc(visits, 1, 5);
    assert_int_equal(st_append(stream, &op, 1, &res), MRD_OK);
    op = st_inc(visits, 1, -2);
    assert_int_equal(st_append(stream, &op, 1, &res), MRD_OK);
    const mrd_value *root = st_read(stream);
    assert_int_equal(mrd_value_count(root), 1);
    const mrd_value *v = st_field(root, "visits", MRD_STATE_COUNTER);
    assert_int_equal(mrd_value_int(v), 3);
    assert_int_equal(mrd_value_count(v), 0);
    assert_null(mrd_value_bytes(v, 0, NULL));
    assert_int_equal(mrd_state_version(st.state), 1);
    /* Both events are in the causal context: one origin, this node. */
    assert_int_equal(mrd_state_context_count(st.state), 1);
    mrd_dot dot = mrd_state_context_at(st.state, 0);
    assert_int_equal(dot.origin, res.first_dot.origin);
    assert_true(dot.seq == res.first_dot.seq);
    dot = mrd_state_context_at(st.state, 1);
    assert_true(dot.origin == 0 && dot.seq == 0);
}

static void
test_registers(void **state)
{
    static const char *const name[] = { "name" };
    static const char *const note[] = { "note" };
    char                     stream[64];
    mrd_op                   op;

    (void) state;
    st_stream(stream, sizeof stream, "registers");
    op = st_bytes_op(name, MRD_STATE_LWW, MRD_OP_SET, "alice");
    assert_int_equal(st_append(stream, &op, 1, NULL), MRD_OK);
    op = st_bytes_op(name, MRD_STATE_LWW, MRD_OP_SET, "bob");
    assert_int_equal(st_append(stream, &op, 1, NULL), MRD_OK);
    op = st_bytes_op(note, MRD_STATE_MVREG, MRD_OP_SET, "x");
    assert_int_equal(st_append(stream, &op, 1, NULL), MRD_OK);
    const mrd_value *root = st_read(stream);
    const mrd_value *lww  = st_field(root, "name", MRD_STATE_LWW);
    assert_int_equal(mrd_value_count(lww), 1);
    st_item_equal(lww, 0, "bob");
    assert_null(mrd_value_bytes(lww, 1, NULL));
    /* One writer: one value, the last (the write replaced its past). */
    const mrd_value *mv = st_field(root, "note", MRD_STATE_MVREG);
    assert_int_equal(mrd_value_count(mv), 1);
    st_item_equal(mv, 0, "x");
    /* Wrong-type accessors answer 0. */
    assert_int_equal(mrd_value_int(lww), 0);
    assert_int_equal(mrd_value_bool(mv), 0);
    assert_null(mrd_value_entry(lww, 0, NULL));
}

static void
test_flag_and_set(void **state)
{
    static const char *const vip[]  = { "vip" };
    static const char *const tags[] = { "tags" };
    char                     stream[64];
    mrd_op                   op;

    (void) state;
    st_stream(stream, sizeof stream, "flagset");
    op = st_op(vip, 1, MRD_STATE_FLAG, MRD_OP_ENABLE);
    assert_int_equal(st_append(stream, &op, 1, NULL), MRD_OK);
    assert_int_equal(
        mrd_value_bool(st_field(st_read(stream), "vip", MRD_STATE_FLAG)), 1);
    op = st_op(vip, 1, MRD_STATE_FLAG, MRD_OP_DISABLE);
    assert_int_equal(st_append(stream, &op, 1, NULL), MRD_OK);
    /* A flag with no live enable is an empty value, and map entries are
     * never empty (crdt.h): it reads as absent, which mrd_value_bool()
     * answers as 0 all the same. */
    const mrd_value *flag = mrd_value_find(st_read(stream), "vip", 0);
    assert_true(flag == NULL || mrd_value_bool(flag) == 0);
    assert_int_equal(mrd_value_bool(flag), 0);

    mrd_op ops[3] = {
        st_bytes_op(tags, MRD_STATE_SET, MRD_OP_ADD, "red"),
        st_bytes_op(tags, MRD_STATE_SET, MRD_OP_ADD, "blue"),
        st_bytes_op(tags, MRD_STATE_SET, MRD_OP_ADD, "green"),
    };
    assert_int_equal(st_append(stream, ops, 3, NULL), MRD_OK);
    op = st_bytes_op(tags, MRD_STATE_SET, MRD_OP_REMOVE, "red");
    assert_int_equal(st_append(stream, &op, 1, NULL), MRD_OK);
    const mrd_value *set = st_field(st_read(stream), "tags", MRD_STATE_SET);
    assert_int_equal(mrd_value_count(set), 2);
    st_item_equal(set, 0, "blue"); /* sorted by bytes */
    st_item_equal(set, 1, "green");
}

static void
test_nested_and_delete(void **state)
{
    static const char *const apple[] = { "cart", "apple" };
    static const char *const pear[]  = { "cart", "pear" };
    static const char *const cart[]  = { "cart" };
    static const char *const gone[]  = { "gone" };
    char                     stream[64];
    mrd_op                   ops[3];

    (void) state;
    st_stream(stream, sizeof stream, "nested");
    ops[0] = st_inc(apple, 2, 2);
    ops[1] = st_inc(pear, 2, 1);
    ops[2] = st_bytes_op(gone, MRD_STATE_LWW, MRD_OP_SET, "soon");
    assert_int_equal(st_append(stream, ops, 3, NULL), MRD_OK);
    const mrd_value *root = st_read(stream);
    const mrd_value *map  = st_field(root, "cart", MRD_STATE_MAP);
    const char      *name = NULL;
    assert_int_equal(mrd_value_count(map), 2);
    const mrd_value *v = mrd_value_entry(map, 0, &name);
    assert_string_equal(name, "apple");
    assert_int_equal(mrd_value_int(v), 2);
    assert_ptr_equal(mrd_value_find(map, "apple", MRD_STATE_COUNTER), v);
    assert_null(mrd_value_find(map, "apple", MRD_STATE_SET));
    assert_null(mrd_value_entry(map, 2, &name));
    assert_null(name);
    st_field(root, "gone", MRD_STATE_LWW);

    /* DELETE takes type 0 and removes the key whatever its type: a leaf,
     * and a whole nested map. */
    ops[0] = st_op(gone, 1, 0, MRD_OP_DELETE);
    ops[1] = st_op(pear, 2, 0, MRD_OP_DELETE);
    assert_int_equal(st_append(stream, ops, 2, NULL), MRD_OK);
    root = st_read(stream);
    assert_null(mrd_value_find(root, "gone", 0));
    map = st_field(root, "cart", MRD_STATE_MAP);
    assert_int_equal(mrd_value_count(map), 1);
    assert_null(mrd_value_find(map, "pear", 0));
    ops[0] = st_op(cart, 1, 0, MRD_OP_DELETE);
    assert_int_equal(st_append(stream, ops, 1, NULL), MRD_OK);
    assert_int_equal(mrd_value_count(st_read(stream)), 0);
}

/* --------------------------------------------------- what must not be -- */

/* An op on a field of another type fails the whole append: no event, no
 * version, and not even the ops of the same event that did fit. */
static void
test_type_mismatch(void **state)
{
    static const char *const visits[] = { "visits" };
    static const char *const other[]  = { "other" };
    static const char *const deep[]   = { "visits", "x" };
    char                     stream[64];
    mrd_stream_info          before;
    mrd_stream_info          after;
    mrd_op                   ops[2];

    (void) state;
    st_stream(stream, sizeof stream, "etype");
    ops[0] = st_inc(visits, 1, 1);
    assert_int_equal(st_append(stream, ops, 1, NULL), MRD_OK);
    assert_int_equal(mrd_stream_info_get(st.client, stream, &before), MRD_OK);

    ops[0] = st_inc(other, 1, 7);
    ops[1] = st_bytes_op(visits, MRD_STATE_LWW, MRD_OP_SET, "x");
    assert_int_equal(st_append(stream, ops, 2, NULL), MRD_ETYPE);
    ops[0] = st_bytes_op(visits, MRD_STATE_SET, MRD_OP_ADD, "x");
    assert_int_equal(st_append(stream, ops, 1, NULL), MRD_ETYPE);
    /* A path through a counter as if it were a map. */
    ops[0] = st_inc(deep, 2, 1);
    assert_int_equal(st_append(stream, ops, 1, NULL), MRD_ETYPE);

    assert_int_equal(mrd_stream_info_get(st.client, stream, &after), MRD_OK);
    assert_int_equal(after.version, before.version);
    assert_true(after.count == before.count);
    const mrd_value *root = st_read(stream);
    assert_int_equal(mrd_value_count(root), 1);
    assert_null(mrd_value_find(root, "other", 0));
    assert_int_equal(
        mrd_value_int(st_field(root, "visits", MRD_STATE_COUNTER)), 1);
    assert_int_equal(mrd_state_version(st.state), before.version);
}

/* ------------------------------------------------------------- reads -- */

static void
test_read_field(void **state)
{
    static const char *const a[] = { "a" };
    static const char *const b[] = { "b" };
    char                     stream[64];
    mrd_op                   ops[2];

    (void) state;
    st_stream(stream, sizeof stream, "field");
    ops[0] = st_inc(a, 1, 1);
    ops[1] = st_bytes_op(b, MRD_STATE_LWW, MRD_OP_SET, "bee");
    assert_int_equal(st_append(stream, ops, 2, NULL), MRD_OK);
    assert_int_equal(mrd_value_count(st_read(stream)), 2);
    assert_int_equal(mrd_state_read(st.client, stream, "b", &st.state2), 0);
    const mrd_value *root = mrd_state_root(st.state2);
    assert_int_equal(mrd_value_count(root), 1);
    assert_null(mrd_value_find(root, "a", 0));
    st_item_equal(st_field(root, "b", MRD_STATE_LWW), 0, "bee");
    assert_int_equal(mrd_state_version(st.state2), 0);
    mrd_state_free(st.state2);
    st.state2 = NULL;
    /* A field that does not exist reads as nothing, not as an error. */
    assert_int_equal(mrd_state_read(st.client, stream, "zz", &st.state2), 0);
    assert_int_equal(mrd_value_count(mrd_state_root(st.state2)), 0);
}

static void
test_no_state(void **state)
{
    char         stream[64];
    mrd_event_in ev;

    (void) state;
    st_stream(stream, sizeof stream, "nostate");
    const mrd_value *root = st_read(stream);
    assert_int_equal(mrd_value_count(root), 0);
    assert_int_equal(mrd_state_version(st.state), MRD_VERSION_NONE);
    assert_int_equal(mrd_state_context_count(st.state), 0);
    /* Events without ops make no state either. */
    memset(&ev, 0, sizeof ev);
    ev.type = "Plain";
    assert_int_equal(mrd_append(st.client, stream, &ev, 1, NULL, NULL), 0);
    assert_int_equal(mrd_value_count(st_read(stream)), 0);
    assert_int_equal(mrd_state_context_count(st.state), 0);
}

/* State is durable: the same tree, version and context after SIGKILL. */
static void
test_restart(void **state)
{
    static const char *const n[]    = { "n" };
    static const char *const s[]    = { "s" };
    static const char *const deep[] = { "m", "k", "f" };
    char                     stream[64];
    mrd_op                   ops[3];

    (void) state;
    st_stream(stream, sizeof stream, "restart");
    ops[0] = st_inc(n, 1, 40);
    ops[1] = st_bytes_op(s, MRD_STATE_SET, MRD_OP_ADD, "\x01\x02");
    ops[2] = st_op(deep, 3, MRD_STATE_FLAG, MRD_OP_ENABLE);
    assert_int_equal(st_append(stream, ops, 3, NULL), MRD_OK);
    ops[0] = st_inc(n, 1, 2);
    assert_int_equal(st_append(stream, ops, 1, NULL), MRD_OK);
    assert_int_equal(mrd_state_read(st.client, stream, NULL, &st.state2), 0);

    assert_int_equal(harness_node_kill(&st.node, SIGKILL), 0);
    assert_int_equal(harness_node_start(&st.node, NULL), 0);
    const mrd_value *root = st_read(stream);
    assert_true(st_value_equal(root, mrd_state_root(st.state2)));
    assert_int_equal(mrd_value_int(st_field(root, "n", MRD_STATE_COUNTER)), 42);
    assert_int_equal(mrd_state_version(st.state), mrd_state_version(st.state2));
    assert_int_equal(
        mrd_state_context_count(st.state), mrd_state_context_count(st.state2));
    for (size_t i = 0; i < mrd_state_context_count(st.state); i++) {
        mrd_dot x = mrd_state_context_at(st.state, i);
        mrd_dot y = mrd_state_context_at(st.state2, i);
        assert_true(x.origin == y.origin && x.seq == y.seq);
    }
}

/* ------------------------------------------------------ client checks -- */

static atomic_int st_async_err = -1;

static void
st_async_done(void *arg, int err, const mrd_append_result *result)
{
    (void) arg;
    (void) result;
    atomic_store(&st_async_err, err);
}

static bool
st_async_ended(void *arg)
{
    (void) arg;
    return atomic_load(&st_async_err) != -1;
}

/* What the library refuses before anything is sent; these hold whatever
 * the node does. */
static void
test_op_checks(void **state)
{
    static const char *const ok[]    = { "f" };
    static const char *const empty[] = { "" };
    static const char *const nul[]   = { NULL };
    static const char *const bad[]   = { "\xc3\x28" };
    static const char *const nine[]
        = { "a", "b", "c", "d", "e", "f", "g", "h", "i" };
    char  *longname = malloc(MRD_STATE_NAME_SIZE_MAX + 2);
    char  *value    = malloc(MRD_STATE_VALUE_SIZE_MAX + 1);
    mrd_op ops[MRD_STATE_OPS_MAX + 1];
    mrd_op op;
    char   stream[64];

    (void) state;
    assert_non_null(longname);
    assert_non_null(value);
    memset(longname, 'n', MRD_STATE_NAME_SIZE_MAX + 1);
    longname[MRD_STATE_NAME_SIZE_MAX + 1] = '\0';
    memset(value, 'v', MRD_STATE_VALUE_SIZE_MAX + 1);
    const char *const lpath[] = { longname };
    st_stream(stream, sizeof stream, "checks");

#define APPEND(o, n) st_append(stream, (o), (n), NULL)
    op = st_inc(ok, 0, 1);
    assert_int_equal(APPEND(&op, 1), MRD_EINVAL); /* empty path */
    op = st_inc(NULL, 1, 1);
    assert_int_equal(APPEND(&op, 1), MRD_EINVAL);
    op = st_inc(nine, 9, 1);
    assert_int_equal(APPEND(&op, 1), MRD_ETOOBIG);
    op = st_inc(empty, 1, 1);
    assert_int_equal(APPEND(&op, 1), MRD_EINVAL);
    op = st_inc(nul, 1, 1);
    assert_int_equal(APPEND(&op, 1), MRD_EINVAL);
    op = st_inc(bad, 1, 1);
    assert_int_equal(APPEND(&op, 1), MRD_EINVAL);
    op = st_inc(lpath, 1, 1);
    assert_int_equal(APPEND(&op, 1), MRD_ETOOBIG);
    /* Kinds that do not fit their type; maps have no op of their own. */
    op = st_op(ok, 1, MRD_STATE_COUNTER, MRD_OP_SET);
    assert_int_equal(APPEND(&op, 1), MRD_EINVAL);
    op = st_op(ok, 1, MRD_STATE_MAP, MRD_OP_ADD);
    assert_int_equal(APPEND(&op, 1), MRD_EINVAL);
    op = st_op(ok, 1, MRD_STATE_COUNTER, MRD_OP_DELETE);
    assert_int_equal(APPEND(&op, 1), MRD_EINVAL);
    op = st_op(ok, 1, 0, MRD_OP_INC);
    assert_int_equal(APPEND(&op, 1), MRD_EINVAL);
    op = st_op(ok, 1, MRD_STATE_SET, 99);
    assert_int_equal(APPEND(&op, 1), MRD_EINVAL);
    /* Values. */
    op            = st_op(ok, 1, MRD_STATE_SET, MRD_OP_ADD);
    op.value      = value;
    op.value_size = MRD_STATE_VALUE_SIZE_MAX + 1;
    assert_int_equal(APPEND(&op, 1), MRD_ETOOBIG);
    op.value      = NULL;
    op.value_size = 1;
    assert_int_equal(APPEND(&op, 1), MRD_EINVAL);
    /* Counts. */
    for (size_t i = 0; i <= MRD_STATE_OPS_MAX; i++) {
        ops[i] = st_inc(ok, 1, 1);
    }
    assert_int_equal(APPEND(ops, MRD_STATE_OPS_MAX + 1), MRD_ETOOBIG);
    assert_int_equal(APPEND(NULL, 1), MRD_EINVAL);
    assert_int_equal(
        mrd_append_async(st.client, stream,
            &(mrd_event_in) { .type = "T", .ops = &op, .op_count = 1 }, 1, NULL,
            st_async_done, NULL),
        MRD_EINVAL);
#undef APPEND
    /* Nothing of that reached the node. */
    assert_int_equal(mrd_value_count(st_read(stream)), 0);
    assert_int_equal(mrd_state_version(st.state), MRD_VERSION_NONE);

    /* At the limits, asynchronously: the async path encodes ops too. */
    op = st_op(lpath, 1, MRD_STATE_SET, MRD_OP_ADD);
    longname[MRD_STATE_NAME_SIZE_MAX] = '\0';
    op.value                          = value;
    op.value_size                     = MRD_STATE_VALUE_SIZE_MAX;
    atomic_store(&st_async_err, -1);
    assert_int_equal(
        mrd_append_async(st.client, stream,
            &(mrd_event_in) { .type = "T", .ops = &op, .op_count = 1 }, 1, NULL,
            st_async_done, NULL),
        MRD_OK);
    assert_true(harness_wait_for(st_async_ended, NULL, 500, 20));
    assert_int_equal(atomic_load(&st_async_err), MRD_OK);
    const mrd_value *set = st_field(st_read(stream), longname, MRD_STATE_SET);
    assert_int_equal(mrd_value_count(set), 1);
    free(value);
    free(longname);
}

static void
test_read_checks(void **state)
{
    char      *longname = malloc(MRD_STATE_NAME_SIZE_MAX + 2);
    mrd_state *out      = (mrd_state *) &out; /* must be cleared */

    (void) state;
    assert_non_null(longname);
    memset(longname, 'n', MRD_STATE_NAME_SIZE_MAX + 1);
    longname[MRD_STATE_NAME_SIZE_MAX + 1] = '\0';
    assert_int_equal(mrd_state_read(NULL, "s", NULL, &out), MRD_EINVAL);
    assert_null(out);
    assert_int_equal(mrd_state_read(st.client, NULL, NULL, &out), MRD_EINVAL);
    assert_int_equal(mrd_state_read(st.client, "s", NULL, NULL), MRD_EINVAL);
    assert_int_equal(mrd_state_read(st.client, "", NULL, &out), MRD_ENAME);
    assert_int_equal(mrd_state_read(st.client, "s", "", &out), MRD_EINVAL);
    assert_int_equal(
        mrd_state_read(st.client, "s", "\xc3\x28", &out), MRD_EINVAL);
    assert_int_equal(
        mrd_state_read(st.client, "s", longname, &out), MRD_ETOOBIG);
    assert_null(out);
    /* Every accessor takes NULL. */
    mrd_state_free(NULL);
    assert_int_equal(mrd_state_version(NULL), MRD_VERSION_NONE);
    assert_int_equal(mrd_state_context_count(NULL), 0);
    assert_true(mrd_state_context_at(NULL, 0).origin == 0);
    assert_null(mrd_state_root(NULL));
    assert_int_equal(mrd_value_type(NULL), 0);
    assert_int_equal(mrd_value_int(NULL), 0);
    assert_int_equal(mrd_value_bool(NULL), 0);
    assert_int_equal(mrd_value_count(NULL), 0);
    assert_null(mrd_value_bytes(NULL, 0, NULL));
    assert_null(mrd_value_entry(NULL, 0, NULL));
    assert_null(mrd_value_find(NULL, "x", 0));
    assert_string_equal(mrd_state_type_name(MRD_STATE_MVREG), "mvreg");
    assert_string_equal(mrd_state_type_name(0), "?");
    assert_string_equal(mrd_errname(MRD_ETYPE), "MRD_ETYPE");
    free(longname);
}

/* --------------------------------------------------------- meridianctl -- */

static void
test_ctl(void **state)
{
    char out[4096];
    char stream[64];

    (void) state;
    st_stream(stream, sizeof stream, "ctl");
    const char *append[] = { "--node", st.node.url, "append", stream, "--type",
        "Visit", "--op", "visits:counter:+5", "--op",
        "cart.apple:counter:inc:2", "--op", "name:lww:set:al:ice", "--op",
        "tags:set:add:red", "--op", "vip:flag:enable", NULL };
    assert_int_equal(harness_run_ctl(append, out, sizeof out), 0);
    const mrd_value *root = st_read(stream);
    assert_int_equal(
        mrd_value_int(st_field(root, "visits", MRD_STATE_COUNTER)), 5);
    st_item_equal(st_field(root, "name", MRD_STATE_LWW), 0, "al:ice");

    const char *show[] = { "--node", st.node.url, "state", stream, NULL };
    assert_int_equal(harness_run_ctl(show, out, sizeof out), 0);
    assert_non_null(strstr(out, "version 0"));
    assert_non_null(strstr(out, "visits    counter  5\n"));
    assert_non_null(strstr(out, "name      lww      \"al:ice\"\n"));
    assert_non_null(strstr(out, "cart      map\n  apple   counter  2\n"));
    assert_non_null(strstr(out, "tags      set      {\"red\"}\n"));

    const char *json[]
        = { "--node", st.node.url, "--json", "state", stream, "visits", NULL };
    assert_int_equal(harness_run_ctl(json, out, sizeof out), 0);
    assert_non_null(strstr(
        out, "\"fields\":{\"visits\":{\"type\":\"counter\",\"value\":5}}"));
    assert_non_null(strstr(out, "\"context\":[{\"origin\":1,\"seq\":"));

    /* A field of another type: the append fails (exit 1), naming it. */
    const char *clash[] = { "--node", st.node.url, "append", stream, "--type",
        "X", "--op", "visits:set:add:v", NULL };
    assert_int_equal(harness_run_ctl(clash, out, sizeof out), 1);
    /* A malformed SPEC is a usage error: exit 2, nothing sent. */
    const char *bad[] = { "--node", st.node.url, "append", stream, "--type",
        "X", "--op", "visits:counter:7", NULL };
    assert_int_equal(harness_run_ctl(bad, out, sizeof out), 2);
    st_read(stream);
    assert_int_equal(mrd_state_version(st.state), 0);
}

#define ST_TEST(f) cmocka_unit_test_setup_teardown(f, st_node_up, st_cleanup)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        ST_TEST(test_counter),
        ST_TEST(test_registers),
        ST_TEST(test_flag_and_set),
        ST_TEST(test_nested_and_delete),
        ST_TEST(test_type_mismatch),
        ST_TEST(test_read_field),
        ST_TEST(test_no_state),
        ST_TEST(test_restart),
        ST_TEST(test_op_checks),
        ST_TEST(test_read_checks),
        ST_TEST(test_ctl),
    };
    return cmocka_run_group_tests_name("state", tests, st_setup, st_teardown);
}
