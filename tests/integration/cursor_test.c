/*
 * cursor_test.c: causal cursors (include/meridian.h, "causal cursors"),
 * against real meridiand processes on 127.0.0.1.
 *
 * A position is local to a node; a cursor is, per origin node, the highest
 * seq of the stream's events delivered, plus a hint (node, position,
 * stream) that lets the same node resume without rescanning. Reading from a
 * cursor on any node must return exactly the stream's events it does not
 * cover, in that node's order: no gap, no duplicate. The tests:
 *   1. The pure API, no node: text round trips (empty, many origins, with a
 *      hint), snprintf-like truncation, refusal of every malformed text we
 *      could think of, covers/add, and MRD_CURSOR_ORIGINS_MAX.
 *   2. Three regions (nodes 1..3, regions a..c, one cluster id, full mesh,
 *      started alone once to learn their ports and restarted with --peers,
 *      like replication_test.c). Writers on all three append to one big
 *      stream (3 x 1800 events, past the node's 4096-entry scan bound) and a
 *      small one at once, then, once every node holds all of it, 3 x 100
 *      more. The big stream is read in batches of 100 on node 1 for its
 *      first 5400 events, the cursor is saved as text, read back, and the
 *      read goes on on node 2, is saved again and ends on node 3. Every node
 *      holds the first 5400 events at positions 0..5399, so nodes 2 and 3,
 *      which cannot use node 1's hint, find only covered events in their
 *      first 4096 positions: each must answer one empty batch that is not at
 *      the end (the scan bound), and the client must go on. The union of
 *      the delivered dots must be the acknowledged set, with no duplicate
 *      and each origin in seq order; a long-poll from a cursor at the end
 *      must wake for a new event that arrives by replication.
 *   3. A hint naming the serving node but another stream must be ignored:
 *      a cursor that read stream X on node 1 reads all of stream Y there.
 *      So must a hint past the end of the stream.
 *   4. A cursor read whose reply is full stops short and goes on.
 *   5. A cursor at MRD_CURSOR_ORIGINS_MAX: 1024 origins go over the wire;
 *      a read that meets a 1025th origin must not move the cursor over
 *      events it does not return (mrd_read_cursor and mrd_tail_next).
 *   6. Tail failover: a callback cursor tail on a client of [node 1,
 *      node 2] follows a stream with a head start longer than a bounded
 *      scan, while the three regions write. Nodes 2 and 3 are frozen
 *      (SIGSTOP) while the tail takes node 1's newest events from node 1;
 *      then node 1 is SIGKILLed and 2 and 3 go on: the tail must go on on
 *      node 2, whose first scan finds nothing (the bound) and which lacks
 *      events the cursor covers. Node 1 comes back (same port and args) so
 *      what it acknowledged before dying replicates; in the end the tail
 *      has delivered every acknowledged event exactly once, each origin in
 *      order, and its cursor covers them all. A pull tail on node 3 from a
 *      cursor taken from the callback tail gets exactly the events written
 *      after.
 *
 * The seed is printed; MRD_TEST_SEED replays the choices (batch sizes of
 * the tail writers, the cluster id), not the thread timing. Every wait is
 * bounded and scaled by MRD_TEST_TIMEOUT_MULTIPLIER.
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

#define CUR_NODES 3u
/* The node's NODE_CURSOR_SCAN_MAX (node/store_read.c): index entries one
 * cursor read examines. Not public, so repeated here; the read test proves
 * the client copes with it whatever it is, and checks where the first
 * bounded scan stopped against this number. */
#define CUR_SCAN_MAX 4096u
/* The read test's big stream: batches of 50, 36 per writer, so 5400 events
 * in all, more than one bounded scan. */
#define CUR_BIG_BATCH 50u
#define CUR_BIG_BATCHES 36u
#define CUR_BIG_EVENTS (CUR_NODES * CUR_BIG_BATCH * CUR_BIG_BATCHES)
/* Every 6th big batch, 1..3 events go to the small stream too. */
#define CUR_SMALL_EVERY 6u
/* Written once the first part is everywhere, so every node holds it after
 * the first CUR_BIG_EVENTS positions. */
#define CUR_LATE_BATCH 25u
#define CUR_LATE_BATCHES 4u
#define CUR_LATE_EVENTS (CUR_NODES * CUR_LATE_BATCH * CUR_LATE_BATCHES)
/* Events per cursor read in the read test. */
#define CUR_READ_BATCH 100u
/* Largest batch any writer appends. */
#define CUR_BATCH_MAX 50u
/* Events one writer may record. */
#define CUR_RECS_MAX 20000u
/* The tail test's writers: batches of 1..4 events, a pause between them,
 * at most this many events each. */
#define CUR_TAIL_BATCH_MAX 4u
#define CUR_TAIL_PAUSE_MS 3u
#define CUR_TAIL_EVENTS_MAX 6000u
/* Before them, 3 x 30 batches of CUR_BIG_BATCH: a head start. */
#define CUR_TAIL_HEAD_BATCHES 30u
#define CUR_TAIL_HEAD_EVENTS (CUR_NODES * CUR_BIG_BATCH * CUR_TAIL_HEAD_BATCHES)
/* Convergence: polls 50 ms apart, up to 20 s (scaled). */
#define CUR_POLL_MS 50u
#define CUR_CONVERGE_TRIES 400u
/* How fast a tail must be back after its node died. A tail's long-poll is
 * CLIENT_TAIL_WAIT_MS (10 s) on the node; failing over must not wait that
 * out. */
#define CUR_FAILOVER_MS 6000u

_Static_assert(CUR_BIG_EVENTS > CUR_SCAN_MAX + CUR_READ_BATCH,
    "the big stream is longer than a bounded scan");
_Static_assert(CUR_BIG_EVENTS % CUR_READ_BATCH == 0,
    "node 1 reads exactly the first part in whole batches");
_Static_assert(CUR_TAIL_HEAD_EVENTS > CUR_SCAN_MAX,
    "the tail's head start is longer than a bounded scan");
_Static_assert(CUR_LATE_EVENTS > 2u * CUR_READ_BATCH,
    "the late part is read on two nodes");
_Static_assert(CUR_BIG_BATCH <= CUR_BATCH_MAX && CUR_LATE_BATCH <= CUR_BATCH_MAX
        && CUR_TAIL_BATCH_MAX <= CUR_BATCH_MAX,
    "batch limit");

/* ------------------------------------------------------------- helpers -- */

static uint32_t cur_seed;

static uint32_t
cur_rand(uint32_t *state)
{
    /* xorshift32: the seed makes the choices replayable. */
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

static uint64_t
cur_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/* A growable list of dots; not thread-safe (callers lock). */
struct cur_dots {
    mrd_dot *v;
    size_t   n;
    size_t   cap;
};

static void
cur_dots_push(struct cur_dots *d, mrd_dot dot)
{
    if (d->n == d->cap) {
        size_t   cap = d->cap == 0 ? 1024 : d->cap * 2;
        mrd_dot *v   = realloc(d->v, cap * sizeof(mrd_dot));
        if (v == NULL) {
            abort(); /* may run on a library thread: no cmocka here */
        }
        d->v   = v;
        d->cap = cap;
    }
    d->v[d->n++] = dot;
}

static void
cur_dots_free(struct cur_dots *d)
{
    free(d->v);
    memset(d, 0, sizeof *d);
}

static int
cur_dot_cmp(const void *a, const void *b)
{
    const mrd_dot *x = a, *y = b;
    if (x->origin != y->origin) {
        return x->origin < y->origin ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The exactly-once check: delivered (in delivery order) must be a
 * permutation of acked, and each origin's seqs must increase along it. */
static void
cur_verify(const struct cur_dots *acked, const struct cur_dots *delivered,
    const char *what)
{
    mrd_dot *sorted              = malloc((acked->n + 1) * sizeof(mrd_dot));
    bool    *seen                = calloc(acked->n + 1, sizeof(bool));
    uint64_t last[CUR_NODES + 1] = { 0 };

    assert_non_null(sorted);
    assert_non_null(seen);
    if (acked->n > 0) {
        memcpy(sorted, acked->v, acked->n * sizeof(mrd_dot));
    }
    qsort(sorted, acked->n, sizeof(mrd_dot), cur_dot_cmp);
    for (size_t i = 1; i < acked->n; i++) {
        if (cur_dot_cmp(&sorted[i - 1], &sorted[i]) == 0) {
            fail_msg("%s: dot %" PRIu64 ":%" PRIu64 " acknowledged twice", what,
                sorted[i].origin, sorted[i].seq);
        }
    }
    for (size_t i = 0; i < delivered->n; i++) {
        mrd_dot        d = delivered->v[i];
        const mrd_dot *hit
            = bsearch(&d, sorted, acked->n, sizeof(mrd_dot), cur_dot_cmp);
        if (hit == NULL || d.origin > CUR_NODES) {
            fail_msg("%s: delivery %zu is %" PRIu64 ":%" PRIu64
                     ", never acknowledged on this stream",
                what, i, d.origin, d.seq);
        }
        size_t k = (size_t) (hit - sorted);
        if (seen[k]) {
            fail_msg("%s: delivery %zu is %" PRIu64 ":%" PRIu64
                     " again (a duplicate)",
                what, i, d.origin, d.seq);
        }
        if (d.seq <= last[d.origin]) {
            fail_msg("%s: delivery %zu is %" PRIu64 ":%" PRIu64
                     " after seq %" PRIu64 " of the same origin",
                what, i, d.origin, d.seq, last[d.origin]);
        }
        seen[k]        = true;
        last[d.origin] = d.seq;
    }
    size_t missing = 0;
    for (size_t k = 0; k < acked->n; k++) {
        if (!seen[k]) {
            if (missing == 0) {
                fprintf(stderr,
                    "cursor_test: %s: first missing %" PRIu64 ":%" PRIu64 "\n",
                    what, sorted[k].origin, sorted[k].seq);
            }
            missing++;
        }
    }
    free(sorted);
    free(seen);
    if (missing > 0) {
        fail_msg("%s: %zu of %zu acknowledged events never delivered (a gap)",
            what, missing, acked->n);
    }
    assert_int_equal(delivered->n, acked->n);
}

/* -------------------------------------------------------------- 1. API -- */

static char *
cur_format(const mrd_cursor *c)
{
    size_t len = mrd_cursor_format(c, NULL, 0);
    char  *buf = malloc(len + 1);

    assert_non_null(buf);
    assert_int_equal(mrd_cursor_format(c, buf, len + 1), len);
    assert_int_equal(strlen(buf), len);
    for (size_t i = 0; i < len; i++) {
        /* "ASCII without spaces or quotes". */
        assert_true(buf[i] > ' ' && buf[i] < 0x7f);
        assert_true(buf[i] != '"' && buf[i] != '\'');
    }
    return buf;
}

/* Parses text, formats it again: the same text and the same origins. */
static mrd_cursor *
cur_round_trip(const mrd_cursor *c, const char *text)
{
    mrd_cursor *back = NULL;

    assert_int_equal(mrd_cursor_parse(text, &back), MRD_OK);
    assert_non_null(back);
    char *again = cur_format(back);
    assert_string_equal(again, text);
    free(again);
    if (c != NULL) {
        assert_int_equal(
            mrd_cursor_origin_count(back), mrd_cursor_origin_count(c));
        for (size_t i = 0; i < mrd_cursor_origin_count(c); i++) {
            mrd_dot a = mrd_cursor_origin_at(c, i);
            mrd_dot b = mrd_cursor_origin_at(back, i);
            assert_int_equal(a.origin, b.origin);
            assert_int_equal(a.seq, b.seq);
        }
    }
    return back;
}

/* Formats c into buffers of every size up to the text's length + 1 and
 * checks each against snprintf's rule: the return value is the whole
 * length, and the buffer holds the text's first size - 1 bytes and a NUL,
 * nothing past it touched. Returns how many sizes broke the rule and
 * describes the first in why (no cmocka here, so the caller frees before
 * it fails). */
static size_t
cur_format_truncated(const mrd_cursor *c, char *why, size_t why_size)
{
    char  *full = cur_format(c);
    size_t len  = strlen(full);
    char  *buf  = malloc(len + 2);
    size_t bad  = 0;

    assert_non_null(buf);
    for (size_t size = 0; size <= len + 1; size++) {
        memset(buf, 'X', len + 2);
        size_t ret  = mrd_cursor_format(c, buf, size);
        size_t kept = size == 0 ? 0 : (size - 1 < len ? size - 1 : len);
        bool   ok   = ret == len && buf[size] == 'X'
            && (size == 0
                || (buf[kept] == '\0' && memcmp(buf, full, kept) == 0));
        if (!ok && bad++ == 0) {
            buf[len + 1] = '\0';
            snprintf(why, why_size,
                "mrd_cursor_format(\"%s\", size %zu) returned %zu and wrote "
                "\"%s\" (X: bytes it never wrote); snprintf would give "
                "\"%.*s\"",
                full, size, ret, buf, (int) kept, full);
        }
    }
    free(buf);
    free(full);
    return bad;
}

static void
cur_hex(const char *s, char *out)
{
    for (; *s != '\0'; s++, out += 2) {
        snprintf(out, 3, "%02x", (unsigned) (unsigned char) *s);
    }
    *out = '\0';
}

static void
test_api_round_trip(void **state)
{
    (void) state;
    mrd_cursor *c = NULL;
    char       *text;

    /* The empty cursor: the start of the stream. */
    assert_int_equal(mrd_cursor_new(&c), MRD_OK);
    assert_int_equal(mrd_cursor_origin_count(c), 0);
    text = cur_format(c);
    assert_string_equal(text, "1;;");
    mrd_cursor_free(cur_round_trip(c, text));
    free(text);

    /* Many origins, added out of order, with extreme values. */
    uint32_t rng = cur_seed | 1u;
    for (uint64_t k = 0; k < 200; k++) {
        uint64_t origin = 1 + (k * 7919u) % 200u; /* a permutation */
        uint64_t seq    = 1 + cur_rand(&rng) % 100000u;
        assert_int_equal(mrd_cursor_add(c, (mrd_dot) { origin, seq }), MRD_OK);
    }
    assert_int_equal(
        mrd_cursor_add(c, (mrd_dot) { UINT64_MAX, UINT64_MAX }), MRD_OK);
    assert_int_equal(mrd_cursor_origin_count(c), 201);
    for (size_t i = 1; i < mrd_cursor_origin_count(c); i++) {
        assert_true(mrd_cursor_origin_at(c, i - 1).origin
            < mrd_cursor_origin_at(c, i).origin);
    }
    text = cur_format(c);
    assert_non_null(strstr(text, "18446744073709551615:18446744073709551615"));
    mrd_cursor *back = cur_round_trip(c, text);
    for (size_t i = 0; i < mrd_cursor_origin_count(c); i++) {
        mrd_dot d = mrd_cursor_origin_at(c, i);
        assert_true(mrd_cursor_covers(back, d));
        if (d.seq < UINT64_MAX) {
            assert_false(
                mrd_cursor_covers(back, (mrd_dot) { d.origin, d.seq + 1 }));
        }
    }
    mrd_cursor_free(back);

    /* A copy is the same cursor. */
    mrd_cursor *copy = NULL;
    assert_int_equal(mrd_cursor_copy(c, &copy), MRD_OK);
    char *copy_text = cur_format(copy);
    assert_string_equal(copy_text, text);
    free(copy_text);
    mrd_cursor_free(copy);
    free(text);
    mrd_cursor_free(c);

    /* With a hint (only reads set one; the text carries it). Position 0
     * and an origin-less cursor are both legal. */
    const char *hinted[] = { "1;1:5,3:7;2:10:", "1;;1:0:",
        "1;18446744073709551615:1;18446744073709551615:18446744073709551615:" };
    const char *names[]  = { "cur-hint", "a", "str\xc3\xa9\xe2\x82\xac" };
    for (size_t i = 0; i < sizeof hinted / sizeof hinted[0]; i++) {
        char buf[600];
        char hex[520];
        cur_hex(names[i], hex);
        snprintf(buf, sizeof buf, "%s%s", hinted[i], hex);
        mrd_cursor *h = cur_round_trip(NULL, buf);
        assert_int_equal(mrd_cursor_copy(h, &copy), MRD_OK);
        mrd_cursor_free(h);
        char *t = cur_format(copy); /* the copy keeps the hint */
        assert_string_equal(t, buf);
        free(t);
        mrd_cursor_free(copy);
    }
    /* The longest stream name fits in a hint. */
    {
        char name[MRD_STREAM_NAME_SIZE_MAX + 1];
        char buf[2 * MRD_STREAM_NAME_SIZE_MAX + 32];
        memset(name, 'n', MRD_STREAM_NAME_SIZE_MAX);
        name[MRD_STREAM_NAME_SIZE_MAX] = '\0';
        int n = snprintf(buf, sizeof buf, "1;4:4;4:4:");
        cur_hex(name, buf + n);
        mrd_cursor_free(cur_round_trip(NULL, buf));
    }

    /* NULL handling. buf starts full of a sentinel, so the check below
     * proves the call wrote its empty string. */
    char buf[8] = "XXXXXXX";
    assert_int_equal(mrd_cursor_format(NULL, buf, sizeof buf), 0);
    assert_string_equal(buf, "");
    mrd_cursor_free(NULL);
    assert_int_equal(mrd_cursor_new(NULL), MRD_EINVAL);
    assert_int_equal(mrd_cursor_parse("1;;", NULL), MRD_EINVAL);
    copy = (mrd_cursor *) (uintptr_t) 1;
    assert_int_equal(mrd_cursor_copy(NULL, &copy), MRD_EINVAL);
    assert_null(copy);
    assert_int_equal(mrd_cursor_origin_count(NULL), 0);
    assert_int_equal(mrd_cursor_origin_at(NULL, 0).origin, 0);
}

/* "Writes at most size bytes with a NUL, like snprintf": a short buffer
 * gets the text's prefix, never bytes the call did not write. */
static void
test_api_format_truncated(void **state)
{
    (void) state;
    char        why[1024] = "";
    size_t      bad       = 0;
    mrd_cursor *c         = NULL;

    assert_int_equal(mrd_cursor_new(&c), MRD_OK);
    bad += cur_format_truncated(c, why, sizeof why);
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 1, 4 }), MRD_OK);
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 2, 9 }), MRD_OK);
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 300, 123456 }), MRD_OK);
    bad += cur_format_truncated(
        c, bad > 0 ? NULL : why, bad > 0 ? 0 : sizeof why);
    mrd_cursor_free(c);
    char text[64];
    char hex[32];
    cur_hex("cur-hint", hex);
    snprintf(text, sizeof text, "1;1:5,3:7;2:10:%s", hex);
    assert_int_equal(mrd_cursor_parse(text, &c), MRD_OK);
    bad += cur_format_truncated(
        c, bad > 0 ? NULL : why, bad > 0 ? 0 : sizeof why);
    mrd_cursor_free(c);
    if (bad > 0) {
        fail_msg("%zu truncated formats are not snprintf's prefix; first: %s",
            bad, why);
    }
}

static void
test_api_malformed(void **state)
{
    (void) state;
    char long_name[2 * (MRD_STREAM_NAME_SIZE_MAX + 1) + 16];
    int  n = snprintf(long_name, sizeof long_name, "1;;1:2:");
    for (unsigned i = 0; i <= MRD_STREAM_NAME_SIZE_MAX; i++) {
        memcpy(long_name + n + 2 * i, "6e", 2); /* 256 bytes: one too many */
    }
    long_name[n + 2 * (MRD_STREAM_NAME_SIZE_MAX + 1)] = '\0';

    const char *bad[] = {
        /* the prefix */
        "",
        "1",
        "2;;",
        "0;;",
        "x;;",
        " 1;;",
        "11;;",
        "1,;;",
        "1:;;",
        /* truncated */
        "1;",
        "1;1",
        "1;1:",
        "1;1:5",
        "1;1:5,",
        "1;1:5,2",
        "1;1:5,2:",
        "1;1:5;1",
        "1;1:5;1:",
        "1;1:5;1:2",
        "1;;1:2:6",
        /* origins must increase strictly */
        "1;2:5,1:3;",
        "1;2:5,2:6;",
        "1;1:1,3:1,2:1;",
        /* zero origin, seq or hint node */
        "1;0:5;",
        "1;1:0;",
        "1;1:5,0:5;",
        "1;;0:2:61",
        /* leading zeros: one spelling per value */
        "1;01:5;",
        "1;1:05;",
        "1;00:5;",
        "1;1:00;",
        "1;;01:2:61",
        "1;;1:02:61",
        "1;;1:00:61",
        /* numbers too long for 64 bits */
        "1;18446744073709551616:1;",
        "1;1:18446744073709551616;",
        "1;1:99999999999999999999;",
        "1;1:123456789012345678901;",
        "1;;18446744073709551616:1:61",
        "1;;1:18446744073709551616:61",
        /* bad hex or a bad name in the hint */
        "1;;1:2:6g",
        "1;;1:2:g6",
        "1;;1:2:4A",
        "1;;1:2:",
        "1;;1:2:00",
        "1;;1:2:6100",
        "1;;1:2:ff",
        "1;;1:2:c3",
        "1;;1:2:-1",
        long_name,
        /* signs, spaces and other strays */
        "1;+1:5;",
        "1;-1:5;",
        "1; 1:5;",
        "1;1:5 ;",
        "1;1 :5;",
        "1;1:5,,2:3;",
        "1;,1:5;",
        "1;1:5;;",
        "1;1:5;1:2:61;",
        "1;1:5;1:2:61\n",
        "1;;;",
        "1;1:5:6;",
        "1;1;",
        "1;:5;",
        "1;1:;",
        "1;;:2:61",
        "1;;1::61",
        "1;;1:2",
        "1;;1",
        "1;1:5;\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mrd_cursor *c  = (mrd_cursor *) (uintptr_t) 1;
        int         rv = mrd_cursor_parse(bad[i], &c);
        if (rv != MRD_EINVAL || c != NULL) {
            mrd_cursor_free(rv == MRD_OK ? c : NULL);
            fail_msg("mrd_cursor_parse(\"%s\") = %s, want MRD_EINVAL and NULL",
                bad[i], mrd_errname(rv));
        }
    }
    mrd_cursor *c = (mrd_cursor *) (uintptr_t) 1;
    assert_int_equal(mrd_cursor_parse(NULL, &c), MRD_EINVAL);
    assert_null(c);
}

static void
test_api_covers_add(void **state)
{
    (void) state;
    mrd_cursor *c = NULL;

    assert_int_equal(mrd_cursor_new(&c), MRD_OK);
    assert_false(mrd_cursor_covers(c, (mrd_dot) { 1, 1 }));
    assert_false(mrd_cursor_covers(NULL, (mrd_dot) { 1, 1 }));
    /* Zero is no origin and no seq. */
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 0, 1 }), MRD_EINVAL);
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 1, 0 }), MRD_EINVAL);
    assert_int_equal(mrd_cursor_add(NULL, (mrd_dot) { 1, 1 }), MRD_EINVAL);
    assert_int_equal(mrd_cursor_origin_count(c), 0);
    assert_false(mrd_cursor_covers(c, (mrd_dot) { 0, 0 }));

    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 2, 5 }), MRD_OK);
    assert_true(mrd_cursor_covers(c, (mrd_dot) { 2, 5 }));
    assert_true(mrd_cursor_covers(c, (mrd_dot) { 2, 1 }));
    assert_false(mrd_cursor_covers(c, (mrd_dot) { 2, 6 }));
    assert_false(mrd_cursor_covers(c, (mrd_dot) { 1, 1 }));
    assert_false(mrd_cursor_covers(c, (mrd_dot) { 3, 1 }));
    assert_false(mrd_cursor_covers(c, (mrd_dot) { 2, 0 }));
    /* Adding an older dot never moves an origin back. */
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 2, 3 }), MRD_OK);
    assert_true(mrd_cursor_covers(c, (mrd_dot) { 2, 5 }));
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 2, 9 }), MRD_OK);
    assert_true(mrd_cursor_covers(c, (mrd_dot) { 2, 9 }));
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 1, 4 }), MRD_OK);
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 3, 1 }), MRD_OK);
    assert_int_equal(mrd_cursor_origin_count(c), 3);
    const mrd_dot want[] = { { 1, 4 }, { 2, 9 }, { 3, 1 } };
    for (size_t i = 0; i < 3; i++) {
        mrd_dot d = mrd_cursor_origin_at(c, i);
        assert_int_equal(d.origin, want[i].origin);
        assert_int_equal(d.seq, want[i].seq);
    }
    assert_int_equal(mrd_cursor_origin_at(c, 3).origin, 0);
    assert_int_equal(mrd_cursor_origin_at(c, 3).seq, 0);
    char *text = cur_format(c);
    assert_string_equal(text, "1;1:4,2:9,3:1;");
    free(text);
    mrd_cursor_free(c);

    /* MRD_CURSOR_ORIGINS_MAX origins fit; one more is MRD_EFULL and
     * changes nothing; the ones there still move. */
    assert_int_equal(mrd_cursor_new(&c), MRD_OK);
    for (uint64_t o = MRD_CURSOR_ORIGINS_MAX; o >= 1; o--) {
        assert_int_equal(mrd_cursor_add(c, (mrd_dot) { o * 3, o }), MRD_OK);
    }
    assert_int_equal(mrd_cursor_origin_count(c), MRD_CURSOR_ORIGINS_MAX);
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 1, 1 }), MRD_EFULL);
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 1u << 20, 1 }), MRD_EFULL);
    assert_int_equal(mrd_cursor_origin_count(c), MRD_CURSOR_ORIGINS_MAX);
    assert_false(mrd_cursor_covers(c, (mrd_dot) { 1, 1 }));
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { 3, 77 }), MRD_OK);
    assert_true(mrd_cursor_covers(c, (mrd_dot) { 3, 77 }));
    text             = cur_format(c);
    mrd_cursor *back = cur_round_trip(c, text);
    mrd_cursor_free(back);
    /* A text with one origin too many: not something format makes. */
    size_t len  = strlen(text);
    char  *more = malloc(len + 32);
    assert_non_null(more);
    memcpy(more, text, len - 1); /* without the final ';' */
    snprintf(more + len - 1, 32, ",%u:1;", 3u * MRD_CURSOR_ORIGINS_MAX + 1u);
    back   = (mrd_cursor *) (uintptr_t) 1;
    int rv = mrd_cursor_parse(more, &back);
    if (rv != MRD_EINVAL) {
        printf("cursor_test: note: parse of %u origins gives %s, and the "
               "header says MRD_EINVAL for text format did not make\n",
            MRD_CURSOR_ORIGINS_MAX + 1u, mrd_errname(rv));
    }
    assert_true(rv == MRD_EINVAL || rv == MRD_EFULL);
    assert_null(back);
    free(more);
    free(text);
    mrd_cursor_free(c);
}

/* ------------------------------------------------------------ the mesh -- */

struct cur_node {
    struct harness_node h;
    char                region[8];
    char                peers[512];
    const char         *args[8];
    mrd_client         *client; /* on this node only */
};

static struct cur_node cur_nodes[CUR_NODES];
static char            cur_cluster_id[33];
static bool            cur_cluster_running;

static void
cur_client_opts(mrd_client_opts *opts)
{
    mrd_client_opts_init(opts);
    opts->timeout_ms         = harness_ms(5000);
    opts->attempt_timeout_ms = harness_ms(2000);
}

static void
cur_node_args(struct cur_node *n, bool with_peers)
{
    size_t a     = 0;
    n->args[a++] = "--region";
    n->args[a++] = n->region;
    n->args[a++] = "--cluster-id";
    n->args[a++] = cur_cluster_id;
    if (with_peers) {
        n->args[a++] = "--peers";
        n->args[a++] = n->peers;
    }
    n->args[a] = NULL;
}

static void
cur_node_peers(struct cur_node *n)
{
    size_t len  = 0;
    n->peers[0] = '\0';
    for (size_t i = 0; i < CUR_NODES; i++) {
        struct cur_node *p = &cur_nodes[i];
        if (p == n) {
            continue;
        }
        int w = snprintf(n->peers + len, sizeof n->peers - len,
            "%s%" PRIu64 "@%s", len > 0 ? "," : "", p->h.node_id, p->h.url);
        assert_true(w > 0 && (size_t) w < sizeof n->peers - len);
        len += (size_t) w;
    }
}

/* Starts the three regions once, for every test that needs them: alone
 * first to learn the ports, then again on the same ports as a full mesh. */
static void
cur_cluster_up(void)
{
    if (cur_cluster_running) {
        return;
    }
    uint32_t rng = cur_seed | 1u;
    for (int i = 0; i < 4; i++) {
        snprintf(cur_cluster_id + 8 * i, 9, "%08x", cur_rand(&rng));
    }
    for (unsigned i = 0; i < CUR_NODES; i++) {
        struct cur_node *n = &cur_nodes[i];
        assert_int_equal(harness_node_init(&n->h, i + 1), 0);
        snprintf(n->region, sizeof n->region, "%c", 'a' + i);
        cur_node_args(n, false);
        assert_int_equal(harness_node_start(&n->h, n->args), 0);
    }
    for (unsigned i = 0; i < CUR_NODES; i++) {
        struct cur_node *n = &cur_nodes[i];
        assert_int_equal(harness_node_stop(&n->h), 0);
    }
    for (unsigned i = 0; i < CUR_NODES; i++) {
        struct cur_node *n = &cur_nodes[i];
        cur_node_peers(n);
        cur_node_args(n, true);
        assert_int_equal(harness_node_start(&n->h, n->args), 0);
        struct harness_node *one[] = { &n->h };
        mrd_client_opts      opts;
        cur_client_opts(&opts);
        assert_int_equal(harness_client_open(one, 1, &opts, &n->client), 0);
    }
    cur_cluster_running = true;
}

static void cur_teardown_tail(void);
static void cur_teardown_writers(void);

/* Starts a stopped node again on its port, with its args. Another
 * process may hold the port for a moment (an outgoing connection can be
 * given a port nothing listens on), so a failed start is retried a few
 * times. */
static void
cur_node_restart(struct cur_node *n)
{
    for (unsigned attempt = 1;; attempt++) {
        if (harness_node_start(&n->h, n->args) == 0) {
            return;
        }
        if (attempt == 5) {
            fail_msg("node %" PRIu64 " did not start again on %s", n->h.node_id,
                n->h.url);
        }
        fprintf(stderr,
            "cursor_test: node %" PRIu64 " restart %u failed; "
            "retrying\n",
            n->h.node_id, attempt);
        harness_sleep_ms(harness_ms(300));
    }
}

static int
cur_teardown(void **state)
{
    (void) state;
    cur_teardown_tail();
    cur_teardown_writers();
    for (unsigned i = 0; i < CUR_NODES; i++) {
        mrd_client_close(cur_nodes[i].client);
        cur_nodes[i].client = NULL;
        if (cur_nodes[i].h.dir[0] != '\0') {
            harness_node_fini(&cur_nodes[i].h);
        }
    }
    cur_cluster_running = false;
    harness_kill_all();
    return 0;
}

/* ------------------------------------------------------------- writers -- */

struct cur_rec {
    const char *stream;
    uint64_t    seq;
};

/* One writer thread on one node's own client. It appends `batches` batches
 * of batch_min..batch_max events to `stream` (0: until told to stop or
 * full), and after every side_every-th one 1..3 events to `side`. Every
 * acknowledged event is recorded. */
struct cur_writer {
    unsigned     id; /* its node's id: the origin of its events */
    mrd_client  *client;
    const char  *stream;
    const char  *side;
    uint32_t     side_every;
    uint32_t     batch_min, batch_max;
    uint32_t     batches;
    uint32_t     events_max;
    uint32_t     pause_ms;
    char         tag[8]; /* in idempotency keys: unique per phase */
    uint32_t     rng;
    _Atomic bool stop;
    pthread_t    thread;
    bool         running;
    /* results */
    struct cur_rec  *recs;
    uint32_t         count;
    _Atomic uint64_t last_seq;
    uint32_t         appends, retries;
    int              fatal;
    char             fatal_why[256];
};

/* Every test's writers: static, so that a writer still running when a
 * test fails never writes into a dead stack frame; the teardown stops
 * them. */
static struct cur_writer cur_ws[CUR_NODES];
/* Set by the teardown only: writers give up their retries. */
static _Atomic bool cur_abandon;

static bool
cur_transient(int rv)
{
    return rv == MRD_ETIMEDOUT || rv == MRD_EUNAVAIL || rv == MRD_ECLOSED
        || rv == MRD_EBUSY;
}

/* Appends with one idempotency key until acknowledged or out of time (a
 * node being restarted answers again within that). */
static int
cur_append_retry(struct cur_writer *w, const char *stream,
    const mrd_event_in *events, size_t n, const char *key,
    mrd_append_result *res)
{
    uint64_t        start = cur_now_ms();
    mrd_append_opts opts;
    int             rv;

    mrd_append_opts_init(&opts);
    opts.idempotency_key      = key;
    opts.idempotency_key_size = strlen(key);
    for (;;) {
        rv = mrd_append(w->client, stream, events, n, &opts, res);
        if (!cur_transient(rv) || cur_now_ms() - start > harness_ms(25000)
            || atomic_load(&cur_abandon)) {
            return rv;
        }
        w->retries++;
        harness_sleep_ms(10);
    }
}

static bool
cur_writer_append(struct cur_writer *w, const char *stream, uint32_t n)
{
    char              data[CUR_BATCH_MAX][40];
    mrd_event_in      events[CUR_BATCH_MAX];
    char              key[48];
    mrd_append_result res;

    for (uint32_t i = 0; i < n; i++) {
        snprintf(
            data[i], sizeof data[i], "w%u %s %u", w->id, w->tag, w->count + i);
        events[i] = (mrd_event_in) { .type = "CursorTested",
            .data                          = data[i],
            .data_size                     = strlen(data[i]) };
    }
    snprintf(key, sizeof key, "cur-%s-%u-%u", w->tag, w->id, w->appends);
    int rv = cur_append_retry(w, stream, events, n, key, &res);
    if (rv != MRD_OK) {
        w->fatal = rv;
        snprintf(w->fatal_why, sizeof w->fatal_why,
            "writer %u: append to %s: %s (%s)", w->id, stream, mrd_errname(rv),
            mrd_errdetail());
        return false;
    }
    if (res.count != n || res.first_dot.origin != w->id
        || res.first_dot.seq <= atomic_load(&w->last_seq)) {
        w->fatal = MRD_EINTERNAL;
        snprintf(w->fatal_why, sizeof w->fatal_why,
            "writer %u: append result %u events from %" PRIu64 ":%" PRIu64,
            w->id, res.count, res.first_dot.origin, res.first_dot.seq);
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        w->recs[w->count + i] = (struct cur_rec) { .stream = stream,
            .seq = res.first_dot.seq + i };
    }
    w->count += n;
    w->appends++;
    atomic_store(&w->last_seq, res.first_dot.seq + n - 1);
    return true;
}

static void *
cur_writer_main(void *arg)
{
    struct cur_writer *w = arg;

    for (uint32_t b = 0; w->batches == 0 || b < w->batches; b++) {
        uint32_t n = w->batch_min
            + cur_rand(&w->rng) % (w->batch_max - w->batch_min + 1);
        if (atomic_load(&w->stop) || w->count + n + 3 > w->events_max) {
            break;
        }
        if (!cur_writer_append(w, w->stream, n)) {
            return NULL;
        }
        if (w->side != NULL && b % w->side_every == w->side_every - 1
            && !cur_writer_append(w, w->side, 1 + cur_rand(&w->rng) % 3)) {
            return NULL;
        }
        if (w->pause_ms > 0) {
            harness_sleep_ms(w->pause_ms);
        }
    }
    return NULL;
}

/* Sets up writer i on node i + 1 for one phase. */
static void
cur_writer_init(struct cur_writer *w, unsigned i, const char *tag,
    const char *stream, uint32_t batch_min, uint32_t batch_max,
    uint32_t batches)
{
    memset(w, 0, sizeof *w);
    w->id         = i + 1;
    w->client     = cur_nodes[i].client;
    w->stream     = stream;
    w->batch_min  = batch_min;
    w->batch_max  = batch_max;
    w->batches    = batches;
    w->events_max = CUR_RECS_MAX;
    w->rng        = (cur_seed + (i + 1) * 7919u + (uint32_t) tag[0]) | 1u;
    snprintf(w->tag, sizeof w->tag, "%s", tag);
    w->recs = calloc(CUR_RECS_MAX, sizeof(struct cur_rec));
    assert_non_null(w->recs);
}

static void
cur_writers_start(struct cur_writer *ws, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        atomic_store(&ws[i].stop, false);
        assert_int_equal(
            pthread_create(&ws[i].thread, NULL, cur_writer_main, &ws[i]), 0);
        ws[i].running = true;
    }
}

/* Joins every writer (telling them to stop first when stop is set), then
 * fails on any writer's error, after joining all so none outlives it. */
static void
cur_writers_join(struct cur_writer *ws, size_t n, bool stop)
{
    for (size_t i = 0; stop && i < n; i++) {
        atomic_store(&ws[i].stop, true);
    }
    for (size_t i = 0; i < n; i++) {
        if (ws[i].running) {
            pthread_join(ws[i].thread, NULL);
            ws[i].running = false;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (ws[i].fatal != MRD_OK) {
            fail_msg("%s", ws[i].fatal_why);
        }
    }
}

/* Adds the writers' acknowledged dots on stream to out. */
static void
cur_writers_collect(const struct cur_writer *ws, size_t n, const char *stream,
    struct cur_dots *out)
{
    for (size_t i = 0; i < n; i++) {
        for (uint32_t k = 0; k < ws[i].count; k++) {
            if (ws[i].recs[k].stream == stream) {
                cur_dots_push(out, (mrd_dot) { ws[i].id, ws[i].recs[k].seq });
            }
        }
    }
}

static void
cur_writers_free(struct cur_writer *ws, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ws[i].recs);
        ws[i].recs = NULL;
    }
}

/* --------------------------------------------------------- convergence -- */

struct cur_expect {
    const char *streams[2];
    uint64_t    counts[2];
    size_t      n;
};

static bool
cur_converged(void *arg)
{
    const struct cur_expect *e = arg;
    for (size_t i = 0; i < CUR_NODES; i++) {
        for (size_t s = 0; s < e->n; s++) {
            mrd_stream_info info;
            if (mrd_stream_info_get(cur_nodes[i].client, e->streams[s], &info)
                    != MRD_OK
                || info.count != e->counts[s]) {
                return false;
            }
        }
    }
    return true;
}

/* Waits (bounded) until every node holds every acknowledged event. */
static void
cur_converge(const struct cur_expect *e, const char *what)
{
    uint64_t t0 = cur_now_ms();
    bool     ok = harness_wait_for(
            cur_converged, (void *) (uintptr_t) e, CUR_CONVERGE_TRIES, CUR_POLL_MS);
    if (!ok) {
        for (size_t i = 0; i < CUR_NODES; i++) {
            for (size_t s = 0; s < e->n; s++) {
                mrd_stream_info info = { 0 };
                int             rv   = mrd_stream_info_get(
                                  cur_nodes[i].client, e->streams[s], &info);
                fprintf(stderr,
                    "cursor_test: node %zu %s: %s count %" PRIu64
                    " want %" PRIu64 "\n",
                    i + 1, e->streams[s], mrd_errname(rv), info.count,
                    e->counts[s]);
            }
        }
        fail_msg(
            "%s: no convergence in %" PRIu64 " ms", what, cur_now_ms() - t0);
    }
    printf("cursor_test: %s: converged in %" PRIu64 " ms\n", what,
        cur_now_ms() - t0);
}

/* ------------------------------------------------------------- reading -- */

static mrd_events *
cur_read(mrd_client *client, const char *stream, mrd_cursor *cursor,
    uint32_t count, uint32_t wait_ms, const char *what)
{
    mrd_events *ev = NULL;
    int rv = mrd_read_cursor(client, stream, cursor, count, wait_ms, &ev);
    if (rv != MRD_OK) {
        fail_msg("%s: mrd_read_cursor(%s): %s (%s)", what, stream,
            mrd_errname(rv), mrd_errdetail());
    }
    assert_non_null(ev);
    assert_true(mrd_events_count(ev) <= count);
    return ev;
}

/* Takes a batch's dots; on one node, positions must increase along the
 * reads, and the cursor must cover what it returned. */
static void
cur_take(const mrd_events *ev, const char *stream, const mrd_cursor *cursor,
    struct cur_dots *delivered, int64_t *last_pos)
{
    for (size_t i = 0; i < mrd_events_count(ev); i++) {
        const mrd_event *e = mrd_events_at(ev, i);
        assert_string_equal(e->stream, stream);
        if ((int64_t) e->position <= *last_pos) {
            fail_msg("%s: position %" PRIu64 " after %" PRId64, stream,
                e->position, *last_pos);
        }
        *last_pos = (int64_t) e->position;
        assert_true(mrd_cursor_covers(cursor, e->dot));
        cur_dots_push(delivered, e->dot);
    }
}

/* Formats the cursor, frees it, and returns the one parsed from the text:
 * what a reader that stores its cursor does between two runs. */
static mrd_cursor *
cur_persist(mrd_cursor *cursor)
{
    char       *text = cur_format(cursor);
    mrd_cursor *back = NULL;

    mrd_cursor_free(cursor);
    assert_int_equal(mrd_cursor_parse(text, &back), MRD_OK);
    char *again = cur_format(back);
    assert_string_equal(again, text);
    free(again);
    free(text);
    return back;
}

struct cur_late_append {
    mrd_client *client;
    const char *stream;
    uint32_t    delay_ms;
    int         rv;
    mrd_dot     dot;
};

static void *
cur_late_append_main(void *arg)
{
    struct cur_late_append *a = arg;
    mrd_event_in ev = { .type = "CursorLate", .data = "late", .data_size = 4 };
    mrd_append_result res;

    harness_sleep_ms(a->delay_ms);
    a->rv  = mrd_append(a->client, a->stream, &ev, 1, NULL, &res);
    a->dot = a->rv == MRD_OK ? res.first_dot : (mrd_dot) { 0, 0 };
    return NULL;
}

/* ----------------------------------------------- 2. read and fail over -- */

static const char cur_big[]   = "cur-big";
static const char cur_small[] = "cur-small";

static void
test_read_failover(void **state)
{
    (void) state;
    struct cur_writer *ws        = cur_ws;
    struct cur_dots    acked_big = { 0 }, acked_small = { 0 };
    struct cur_dots    delivered = { 0 };

    cur_cluster_up();

    /* The first part: every region writes both streams at once. */
    for (unsigned i = 0; i < CUR_NODES; i++) {
        cur_writer_init(&ws[i], i, "a", cur_big, CUR_BIG_BATCH, CUR_BIG_BATCH,
            CUR_BIG_BATCHES);
        ws[i].side       = cur_small;
        ws[i].side_every = CUR_SMALL_EVERY;
    }
    uint64_t t0 = cur_now_ms();
    cur_writers_start(ws, CUR_NODES);
    cur_writers_join(ws, CUR_NODES, false);
    printf("cursor_test: %u + small events written in %" PRIu64 " ms\n",
        CUR_BIG_EVENTS, cur_now_ms() - t0);
    cur_writers_collect(ws, CUR_NODES, cur_big, &acked_big);
    cur_writers_collect(ws, CUR_NODES, cur_small, &acked_small);
    cur_writers_free(ws, CUR_NODES);
    assert_int_equal(acked_big.n, CUR_BIG_EVENTS);
    struct cur_expect e
        = { { cur_big, cur_small }, { acked_big.n, acked_small.n }, 2 };
    cur_converge(&e, "first part");

    /* The second part, once the first is everywhere: on every node it
     * comes after the first CUR_BIG_EVENTS positions. */
    for (unsigned i = 0; i < CUR_NODES; i++) {
        cur_writer_init(&ws[i], i, "b", cur_big, CUR_LATE_BATCH, CUR_LATE_BATCH,
            CUR_LATE_BATCHES);
    }
    cur_writers_start(ws, CUR_NODES);
    cur_writers_join(ws, CUR_NODES, false);
    cur_writers_collect(ws, CUR_NODES, cur_big, &acked_big);
    cur_writers_free(ws, CUR_NODES);
    assert_int_equal(acked_big.n, CUR_BIG_EVENTS + CUR_LATE_EVENTS);
    e.counts[0] = acked_big.n;
    cur_converge(&e, "second part");

    /* Arguments. */
    mrd_cursor *cursor = NULL;
    mrd_events *ev     = (mrd_events *) (uintptr_t) 1;
    assert_int_equal(mrd_cursor_new(&cursor), MRD_OK);
    assert_int_equal(
        mrd_read_cursor(cur_nodes[0].client, cur_big, NULL, 10, 0, &ev),
        MRD_EINVAL);
    assert_null(ev);
    assert_int_equal(
        mrd_read_cursor(cur_nodes[0].client, cur_big, cursor, 0, 0, &ev),
        MRD_EINVAL);
    assert_int_equal(mrd_read_cursor(cur_nodes[0].client, cur_big, cursor, 10,
                         MRD_WAIT_MS_MAX + 1, &ev),
        MRD_EINVAL);
    assert_int_equal(
        mrd_read_cursor(cur_nodes[0].client, "", cursor, 10, 0, &ev),
        MRD_ENAME);
    assert_int_equal(mrd_cursor_origin_count(cursor), 0);

    /* Node 1, the first part, in batches of 100: the hint lets every read
     * start where the last one stopped, so none comes back short. */
    int64_t last_pos = -1;
    while (delivered.n < CUR_BIG_EVENTS) {
        ev = cur_read(
            cur_nodes[0].client, cur_big, cursor, CUR_READ_BATCH, 0, "node 1");
        if (mrd_events_count(ev) != CUR_READ_BATCH) {
            fail_msg("node 1: read %zu events after %zu, want %u: the hint "
                     "was not used",
                mrd_events_count(ev), delivered.n, CUR_READ_BATCH);
        }
        assert_false(mrd_events_end(ev));
        cur_take(ev, cur_big, cursor, &delivered, &last_pos);
        assert_int_equal(mrd_events_next(ev), (uint64_t) last_pos + 1);
        mrd_events_free(ev);
    }
    assert_int_equal(last_pos, (int64_t) CUR_BIG_EVENTS - 1);
    /* Every origin's events of the first part, and nothing later. */
    assert_int_equal(mrd_cursor_origin_count(cursor), CUR_NODES);
    cursor = cur_persist(cursor);

    /* Node 2 (a client that knows only node 2): node 1's hint means
     * nothing there, so it scans from 0, and its first CUR_SCAN_MAX
     * positions are all covered. */
    unsigned empty2 = 0, reads2 = 0;
    size_t   on2 = delivered.n;
    last_pos     = -1;
    while (delivered.n < on2 + CUR_READ_BATCH) {
        ev = cur_read(
            cur_nodes[1].client, cur_big, cursor, CUR_READ_BATCH, 0, "node 2");
        reads2++;
        if (mrd_events_count(ev) == 0) {
            /* Not the end: the client must read again. */
            assert_false(mrd_events_end(ev));
            if (empty2 == 0) {
                assert_int_equal(mrd_events_next(ev), CUR_SCAN_MAX);
            }
            empty2++;
        }
        cur_take(ev, cur_big, cursor, &delivered, &last_pos);
        mrd_events_free(ev);
        assert_true(reads2 < 50);
    }
    printf("cursor_test: node 2: %u reads, %u empty and not at the end\n",
        reads2, empty2);
    if (empty2 == 0) {
        fail_msg("node 2: no empty batch short of the end: the scan bound "
                 "was not hit with %u events covered",
            CUR_BIG_EVENTS);
    }
    assert_true(last_pos >= (int64_t) CUR_BIG_EVENTS);
    cursor = cur_persist(cursor);

    /* Node 3, to the end: again one bounded scan finds nothing. */
    unsigned empty3 = 0, reads3 = 0;
    bool     end = false;
    last_pos     = -1;
    while (!end) {
        ev = cur_read(
            cur_nodes[2].client, cur_big, cursor, CUR_READ_BATCH, 0, "node 3");
        reads3++;
        end = mrd_events_end(ev);
        if (mrd_events_count(ev) == 0 && !end) {
            empty3++;
        }
        cur_take(ev, cur_big, cursor, &delivered, &last_pos);
        mrd_events_free(ev);
        assert_true(reads3 < 100);
    }
    printf("cursor_test: node 3: %u reads, %u empty and not at the end\n",
        reads3, empty3);
    if (empty3 == 0) {
        fail_msg("node 3: no empty batch short of the end");
    }
    cur_verify(&acked_big, &delivered, "read on nodes 1, 2, 3");

    /* At the end, on each node: nothing more, however many reads it
     * takes (nodes 1 and 2 scan from 0 again, so the first read may stop
     * at the bound), and the last one at the end; node 1 waits 200 ms
     * there first. The cursor does not move. */
    char *before = cur_format(cursor);
    for (unsigned i = 0; i < CUR_NODES; i++) {
        uint64_t w0 = 0;
        unsigned reads;
        for (reads = 0, end = false; !end; reads++) {
            assert_true(reads < 10);
            w0 = cur_now_ms();
            ev = cur_read(cur_nodes[i].client, cur_big, cursor, 10,
                i == 0 ? 200 : 0, "at the end");
            assert_int_equal(mrd_events_count(ev), 0);
            end = mrd_events_end(ev);
            mrd_events_free(ev);
        }
        if (i == 0) {
            assert_true(cur_now_ms() - w0 >= 150);
        }
    }
    mrd_cursor *same = NULL;
    assert_int_equal(mrd_cursor_parse(before, &same), MRD_OK);
    for (size_t i = 0; i < CUR_NODES; i++) {
        assert_int_equal(mrd_cursor_origin_at(cursor, i).seq,
            mrd_cursor_origin_at(same, i).seq);
    }
    mrd_cursor_free(same);
    free(before);

    /* A long-poll from the cursor on node 3 wakes for an event written on
     * node 1 that reaches node 3 by replication. */
    struct cur_late_append late
        = { .client = cur_nodes[0].client, .stream = cur_big, .delay_ms = 300 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cur_late_append_main, &late), 0);
    uint64_t w0 = cur_now_ms();
    ev = cur_read(cur_nodes[2].client, cur_big, cursor, 10, harness_ms(8000),
        "long-poll");
    uint64_t waited = cur_now_ms() - w0;
    pthread_join(th, NULL);
    assert_int_equal(late.rv, MRD_OK);
    if (mrd_events_count(ev) != 1) {
        fail_msg("long-poll: %zu events after %" PRIu64
                 " ms, want the late one",
            mrd_events_count(ev), waited);
    }
    assert_int_equal(mrd_events_at(ev, 0)->dot.origin, late.dot.origin);
    assert_int_equal(mrd_events_at(ev, 0)->dot.seq, late.dot.seq);
    assert_true(mrd_events_end(ev));
    mrd_events_free(ev);
    printf("cursor_test: long-poll woke after %" PRIu64 " ms\n", waited);

    /* The small stream, from the start, on node 2: all of it. */
    mrd_cursor_free(cursor);
    assert_int_equal(mrd_cursor_new(&cursor), MRD_OK);
    cur_dots_free(&delivered);
    last_pos = -1;
    for (end = false; !end;) {
        ev  = cur_read(cur_nodes[1].client, cur_small, cursor, 7, 0, "small");
        end = mrd_events_end(ev);
        cur_take(ev, cur_small, cursor, &delivered, &last_pos);
        mrd_events_free(ev);
    }
    cur_verify(&acked_small, &delivered, "small stream on node 2");

    mrd_cursor_free(cursor);
    cur_dots_free(&delivered);
    cur_dots_free(&acked_big);
    cur_dots_free(&acked_small);
}

/* ---------------------------------------- 3. a hint for another stream -- */

/* Reads stream to the end from cursor on client; returns the dots. */
static void
cur_read_all(mrd_client *client, const char *stream, mrd_cursor *cursor,
    struct cur_dots *out, const char *what)
{
    int64_t last_pos = -1;
    for (unsigned reads = 0;; reads++) {
        assert_true(reads < 1000);
        mrd_events *ev  = cur_read(client, stream, cursor, 16, 0, what);
        bool        end = mrd_events_end(ev);
        cur_take(ev, stream, cursor, out, &last_pos);
        mrd_events_free(ev);
        if (end) {
            return;
        }
    }
}

static void
test_hint_other_stream(void **state)
{
    (void) state;
    /* Y's name starts with X's: a prefix must not pass for the stream. */
    static const char  x[]     = "cur-hint";
    static const char  y[]     = "cur-hint-y";
    struct cur_writer *ws      = cur_ws;
    struct cur_dots    acked_x = { 0 }, acked_y = { 0 }, got = { 0 };

    cur_cluster_up();
    /* X: 50 events from node 1. Then Y: 80 from node 1 (later seqs than
     * X's, so X's cursor does not cover them) and 20 from each other node. */
    cur_writer_init(&ws[0], 0, "x", x, 25, 25, 2);
    cur_writers_start(ws, 1);
    cur_writers_join(ws, 1, false);
    cur_writers_collect(ws, 1, x, &acked_x);
    cur_writers_free(ws, 1);
    for (unsigned i = 0; i < CUR_NODES; i++) {
        cur_writer_init(
            &ws[i], i, "y", y, i == 0 ? 40 : 10, i == 0 ? 40 : 10, 2);
    }
    cur_writers_start(ws, CUR_NODES);
    cur_writers_join(ws, CUR_NODES, false);
    cur_writers_collect(ws, CUR_NODES, y, &acked_y);
    cur_writers_free(ws, CUR_NODES);
    assert_int_equal(acked_y.n, 120);
    struct cur_expect e = { { x, y }, { acked_x.n, acked_y.n }, 2 };
    cur_converge(&e, "hint streams");

    /* X on node 1: the hint is now (node 1, 50, X). */
    mrd_cursor *cx = NULL;
    assert_int_equal(mrd_cursor_new(&cx), MRD_OK);
    cur_read_all(cur_nodes[0].client, x, cx, &got, "X");
    cur_verify(&acked_x, &got, "X on node 1");
    cur_dots_free(&got);
    char *text = cur_format(cx);
    char  hex[64];
    cur_hex(x, hex);
    assert_non_null(strstr(text, hex)); /* the hint is X's */
    printf("cursor_test: X's cursor: %s\n", text);

    /* That cursor on Y, on node 1 itself: X's hint must not apply. Once
     * as it is, once as read back from its text. */
    for (int pass = 0; pass < 2; pass++) {
        mrd_cursor *c = NULL;
        if (pass == 0) {
            assert_int_equal(mrd_cursor_copy(cx, &c), MRD_OK);
        } else {
            assert_int_equal(mrd_cursor_parse(text, &c), MRD_OK);
        }
        cur_read_all(cur_nodes[0].client, y, c, &got, "Y with X's hint");
        cur_verify(&acked_y, &got,
            pass == 0 ? "Y with X's cursor" : "Y with X's cursor, parsed");
        cur_dots_free(&got);
        mrd_cursor_free(c);
    }

    /* A hint for Y on node 1 at a position Y does not have (a cursor
     * from before a restore, say) must not skip anything either. */
    char crafted[128];
    char yhex[64];
    cur_hex(y, yhex);
    snprintf(crafted, sizeof crafted, "1;;1:1000000:%s", yhex);
    mrd_cursor *c = NULL;
    assert_int_equal(mrd_cursor_parse(crafted, &c), MRD_OK);
    cur_read_all(cur_nodes[0].client, y, c, &got, "Y with a far hint");
    cur_verify(&acked_y, &got, "Y with a hint past its end");
    cur_dots_free(&got);
    mrd_cursor_free(c);

    free(text);
    mrd_cursor_free(cx);
    cur_dots_free(&acked_x);
    cur_dots_free(&acked_y);
}

/* --------------------------------------------- 4. a reply that is full -- */

#define CUR_LARGE_EVENTS 12u
#define CUR_LARGE_SIZE (400u * 1024u) /* 10 fill a 4 MiB read reply */

/* A cursor read also stops when its reply is full, before the scan bound
 * and short of count_max; the next read goes on from there. */
static void
test_reply_bound(void **state)
{
    (void) state;
    static const char l[]   = "cur-large";
    struct cur_dots   acked = { 0 }, got = { 0 };
    char             *data = malloc(CUR_LARGE_SIZE);

    assert_non_null(data);
    cur_cluster_up();
    for (unsigned k = 0; k < CUR_LARGE_EVENTS; k++) {
        mrd_append_result res;
        memset(data, 'a' + (int) k, CUR_LARGE_SIZE);
        mrd_event_in ev = {
            .type = "CursorLarge", .data = data, .data_size = CUR_LARGE_SIZE
        };
        int rv = mrd_append(cur_nodes[2].client, l, &ev, 1, NULL, &res);
        if (rv != MRD_OK) {
            fail_msg("large append %u: %s (%s)", k, mrd_errname(rv),
                mrd_errdetail());
        }
        cur_dots_push(&acked, res.first_dot);
    }
    free(data);
    struct cur_expect e = { { l }, { acked.n }, 1 };
    cur_converge(&e, "large events");

    mrd_cursor *c = NULL;
    assert_int_equal(mrd_cursor_new(&c), MRD_OK);
    int64_t  last_pos = -1;
    unsigned reads    = 0;
    for (bool end = false; !end; reads++) {
        assert_true(reads < 20);
        mrd_events *ev = cur_read(cur_nodes[0].client, l, c, 100, 0, "large");
        end            = mrd_events_end(ev);
        if (reads == 0
            && (mrd_events_count(ev) == 0
                || mrd_events_count(ev) >= CUR_LARGE_EVENTS || end)) {
            fail_msg("large: the first read returned %zu events (end %d), "
                     "want a full reply short of the end",
                mrd_events_count(ev), end);
        }
        for (size_t i = 0; i < mrd_events_count(ev); i++) {
            const mrd_event *x = mrd_events_at(ev, i);
            size_t           k = got.n + i;
            assert_int_equal(x->data_size, CUR_LARGE_SIZE);
            assert_int_equal(((const char *) x->data)[0], 'a' + (int) k);
            assert_int_equal(
                ((const char *) x->data)[CUR_LARGE_SIZE - 1], 'a' + (int) k);
        }
        cur_take(ev, l, c, &got, &last_pos);
        mrd_events_free(ev);
    }
    printf(
        "cursor_test: %u large events in %u reads\n", CUR_LARGE_EVENTS, reads);
    cur_verify(&acked, &got, "large events");
    mrd_cursor_free(c);
    cur_dots_free(&acked);
    cur_dots_free(&got);
}

/* -------------------------------------------- 5. a cursor with no room -- */

/* A cursor of 1024 origins, origin_a and origin_b among them at seq 1 and
 * the rest made up (ids 100..): it covers nothing real but those two. */
static mrd_cursor *
cur_full_cursor(uint64_t origin_a, uint64_t origin_b)
{
    mrd_cursor *c = NULL;
    assert_int_equal(mrd_cursor_new(&c), MRD_OK);
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { origin_a, 1 }), MRD_OK);
    assert_int_equal(mrd_cursor_add(c, (mrd_dot) { origin_b, 1 }), MRD_OK);
    for (uint64_t o = 100; mrd_cursor_origin_count(c) < MRD_CURSOR_ORIGINS_MAX;
         o++) {
        assert_int_equal(mrd_cursor_add(c, (mrd_dot) { o, 1 }), MRD_OK);
    }
    return c;
}

/* The cursor after a read is the one before plus the events the caller
 * got, nothing else: a failed read returns nothing, so it moves nothing.
 * Returns false with why filled in otherwise. */
static bool
cur_moved_ok(const char *before_text, const mrd_cursor *after,
    const mrd_events *got, const char *what, char *why, size_t why_size)
{
    mrd_cursor *want = NULL;
    assert_int_equal(mrd_cursor_parse(before_text, &want), MRD_OK);
    for (size_t i = 0; i < mrd_events_count(got); i++) {
        assert_int_equal(
            mrd_cursor_add(want, mrd_events_at(got, i)->dot), MRD_OK);
    }
    bool ok = mrd_cursor_origin_count(want) == mrd_cursor_origin_count(after);
    for (size_t i = 0; ok && i < mrd_cursor_origin_count(want); i++) {
        mrd_dot a = mrd_cursor_origin_at(want, i);
        mrd_dot b = mrd_cursor_origin_at(after, i);
        if (a.origin != b.origin || a.seq != b.seq) {
            snprintf(why, why_size,
                "%s: the cursor moved over events the caller never got: "
                "origin %" PRIu64 " is at seq %" PRIu64 ", want %" PRIu64
                " (%zu events returned)",
                what, b.origin, b.seq, a.seq, mrd_events_count(got));
            ok = false;
        }
    }
    mrd_cursor_free(want);
    return ok;
}

static void
test_full_cursor(void **state)
{
    (void) state;
    static const char  z[]   = "cur-full";
    struct cur_writer *ws    = cur_ws;
    struct cur_dots    acked = { 0 }, got = { 0 };

    cur_cluster_up();
    /* Five events from node 1, then five from node 2: on node 1, Z's
     * first five positions are origin 1's. */
    for (unsigned i = 0; i < 2; i++) {
        cur_writer_init(&ws[i], i, "z", z, 5, 5, 1);
        cur_writers_start(&ws[i], 1);
        cur_writers_join(&ws[i], 1, false);
    }
    cur_writers_collect(ws, 2, z, &acked);
    cur_writers_free(ws, 2);
    struct cur_expect e = { { z }, { acked.n }, 1 };
    cur_converge(&e, "full cursor stream");

    /* 1024 origins go over the wire: the read works when every event's
     * origin is in the cursor already. */
    mrd_cursor *c = cur_full_cursor(1, 2);
    cur_read_all(cur_nodes[1].client, z, c, &got, "1024 origins");
    cur_verify(&acked, &got, "a cursor of 1024 origins");
    cur_dots_free(&got);
    mrd_cursor_free(c);

    /* Origin 2 has no room. A read that meets it may return what comes
     * before it or fail, but must not move the cursor over events it did
     * not return. */
    c                = cur_full_cursor(1, 3);
    char       *text = cur_format(c);
    mrd_events *ev   = NULL;
    int         rv   = mrd_read_cursor(cur_nodes[0].client, z, c, 100, 0, &ev);
    printf("cursor_test: full cursor read: %s, %zu events\n", mrd_errname(rv),
        mrd_events_count(ev));
    assert_true(rv == MRD_OK || rv == MRD_EFULL);
    if (rv == MRD_OK) {
        for (size_t i = 0; i < mrd_events_count(ev); i++) {
            assert_int_equal(mrd_events_at(ev, i)->dot.origin, 1);
        }
    } else {
        assert_null(ev);
    }
    char why[512] = "";
    bool ok = cur_moved_ok(text, c, ev, "mrd_read_cursor", why, sizeof why);
    mrd_events_free(ev);
    mrd_cursor_free(c);

    /* The same through a pull tail. */
    c = NULL;
    assert_int_equal(mrd_cursor_parse(text, &c), MRD_OK);
    mrd_tail *pull = NULL;
    assert_int_equal(
        mrd_tail_open_cursor(cur_nodes[0].client, z, c, &pull), MRD_OK);
    mrd_cursor_free(c);
    rv = mrd_tail_next(pull, 500, &ev);
    printf("cursor_test: full cursor pull tail: %s, %zu events\n",
        mrd_errname(rv), mrd_events_count(ev));
    assert_int_equal(mrd_tail_cursor(pull, &c), MRD_OK);
    mrd_tail_close(pull);
    if (ok) {
        ok = cur_moved_ok(text, c, ev, "mrd_tail_next", why, sizeof why);
    } else {
        char why2[512];
        if (!cur_moved_ok(text, c, ev, "mrd_tail_next", why2, sizeof why2)) {
            /* Both reasons, the second cut to what is left of the first's
             * buffer (a diagnostic, not data). */
            size_t n    = strlen(why);
            size_t room = sizeof why - n;
            if (room > 8) {
                memcpy(why + n, "; and ", 6);
                size_t m = strnlen(why2, room - 7);
                memcpy(why + n + 6, why2, m);
                why[n + 6 + m] = '\0';
            }
        }
    }
    mrd_events_free(ev);
    mrd_cursor_free(c);
    free(text);
    cur_dots_free(&acked);
    if (!ok) {
        fail_msg("%s", why);
    }
}

/* ---------------------------------------------------- 6. tail failover -- */

static const char cur_tail_stream[] = "cur-tail";

struct cur_tail_sink {
    pthread_mutex_t  mu;
    struct cur_dots  dots; /* mu */
    _Atomic size_t   count;
    _Atomic uint64_t max_seq[CUR_NODES + 1];
    _Atomic uint32_t errors;
    _Atomic int      last_err;
    _Atomic bool     wrong_stream;
};

/* The callback tail, its client and what it delivered: static, so a tail
 * still running when its test fails writes nowhere it should not; the
 * teardown closes it. */
static struct cur_tail_sink cur_sink = { .mu = PTHREAD_MUTEX_INITIALIZER };
static mrd_client          *cur_both;
static mrd_tail            *cur_tail;

static int
cur_tail_cb(void *arg, const mrd_event *ev)
{
    struct cur_tail_sink *s = arg;

    if (strcmp(ev->stream, cur_tail_stream) != 0) {
        atomic_store(&s->wrong_stream, true);
    }
    pthread_mutex_lock(&s->mu);
    cur_dots_push(&s->dots, ev->dot);
    pthread_mutex_unlock(&s->mu);
    if (ev->dot.origin >= 1 && ev->dot.origin <= CUR_NODES
        && ev->dot.seq > atomic_load(&s->max_seq[ev->dot.origin])) {
        atomic_store(&s->max_seq[ev->dot.origin], ev->dot.seq);
    }
    atomic_fetch_add(&s->count, 1);
    return 0;
}

static void
cur_tail_err_cb(void *arg, int err)
{
    struct cur_tail_sink *s = arg;
    atomic_fetch_add(&s->errors, 1);
    atomic_store(&s->last_err, err);
}

struct cur_tail_wait {
    struct cur_tail_sink *sink;
    size_t                count; /* at least this many delivered */
    uint64_t              after[CUR_NODES + 1]; /* or a seq past these */
};

static bool
cur_tail_count_reached(void *arg)
{
    const struct cur_tail_wait *w = arg;
    return atomic_load(&w->sink->count) >= w->count;
}

/* Delivered an event of origin 1 past after[1]. */
static bool
cur_tail_origin_past(void *arg)
{
    const struct cur_tail_wait *w = arg;
    return atomic_load(&w->sink->max_seq[1]) > w->after[1];
}

/* Delivered an event of origin 2 or 3 written after node 1 died. */
static bool
cur_tail_past_kill(void *arg)
{
    const struct cur_tail_wait *w = arg;
    for (unsigned o = 2; o <= CUR_NODES; o++) {
        if (atomic_load(&w->sink->max_seq[o]) > w->after[o]) {
            return true;
        }
    }
    return false;
}

static void
cur_tail_snapshot(struct cur_tail_sink *s, struct cur_dots *out)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->dots.n; i++) {
        cur_dots_push(out, s->dots.v[i]);
    }
    pthread_mutex_unlock(&s->mu);
}

/* Opens a client on urls[0], urls[1] that is served by urls[0]: its first
 * call goes to the first address only if that connection is up already
 * (else to the next, which then keeps serving), so wait for both dials
 * and check. */
static void
cur_client_on_first(
    const char *const *urls, const mrd_client_opts *opts, mrd_client **out)
{
    for (unsigned attempt = 1; attempt <= 10; attempt++) {
        mrd_node_info info;
        assert_int_equal(harness_client_open_urls(urls, 2, opts, out), MRD_OK);
        harness_sleep_ms(harness_ms(50 * attempt));
        int rv = mrd_node_info_get(*out, &info);
        if (rv == MRD_OK && info.node_id == 1) {
            return;
        }
        mrd_client_close(*out);
        *out = NULL;
    }
    fail_msg("no client served by node 1 first");
}

/* The node a cursor tail's hint names (0: none), from the cursor's text:
 * "1;origins;node:position:stream". */
static uint64_t
cur_tail_hint_node(const mrd_tail *tail)
{
    mrd_cursor *c = NULL;
    assert_int_equal(mrd_tail_cursor(tail, &c), MRD_OK);
    char *text = cur_format(c);
    mrd_cursor_free(c);
    const char *hint = strrchr(text, ';');
    assert_non_null(hint);
    uint64_t node = strtoull(hint + 1, NULL, 10);
    free(text);
    return node;
}

static void
test_tail_failover(void **state)
{
    (void) state;
    struct cur_writer    *ws    = cur_ws;
    struct cur_dots       acked = { 0 }, got = { 0 };
    struct cur_tail_sink *sink = &cur_sink;

    cur_cluster_up();
    pthread_mutex_lock(&sink->mu);
    cur_dots_free(&sink->dots);
    pthread_mutex_unlock(&sink->mu);

    /* A position tail has no cursor. */
    assert_int_equal(
        mrd_tail_open(cur_nodes[0].client, cur_tail_stream, 0, &cur_tail),
        MRD_OK);
    mrd_cursor *none = (mrd_cursor *) (uintptr_t) 1;
    assert_int_equal(mrd_tail_cursor(cur_tail, &none), MRD_EINVAL);
    assert_null(none);
    mrd_tail_close(cur_tail);
    cur_tail = NULL;

    /* A head start longer than one bounded scan, on every node before
     * anything else: when node 1 dies the cursor covers all of it, so the
     * tail's first read on node 2 stops at the scan bound with nothing. */
    for (unsigned i = 0; i < CUR_NODES; i++) {
        cur_writer_init(&ws[i], i, "p", cur_tail_stream, CUR_BIG_BATCH,
            CUR_BIG_BATCH, CUR_TAIL_HEAD_BATCHES);
    }
    cur_writers_start(ws, CUR_NODES);
    cur_writers_join(ws, CUR_NODES, false);
    cur_writers_collect(ws, CUR_NODES, cur_tail_stream, &acked);
    cur_writers_free(ws, CUR_NODES);
    size_t head = acked.n;
    assert_int_equal(head, CUR_TAIL_HEAD_EVENTS);
    struct cur_expect e = { { cur_tail_stream }, { head }, 1 };
    cur_converge(&e, "tail head start");

    for (unsigned i = 0; i < CUR_NODES; i++) {
        cur_writer_init(
            &ws[i], i, "t", cur_tail_stream, 1, CUR_TAIL_BATCH_MAX, 0);
        ws[i].pause_ms   = CUR_TAIL_PAUSE_MS;
        ws[i].events_max = CUR_TAIL_EVENTS_MAX;
    }
    cur_writers_start(ws, CUR_NODES);
    harness_sleep_ms(harness_ms(200));

    /* The tail, on [node 1, node 2], from the start, while all write. */
    const char     *urls[] = { cur_nodes[0].h.url, cur_nodes[1].h.url };
    mrd_client_opts opts;
    cur_client_opts(&opts);
    cur_client_on_first(urls, &opts, &cur_both);
    assert_int_equal(mrd_tail_start_cursor(cur_both, cur_tail_stream, NULL,
                         cur_tail_cb, cur_tail_err_cb, sink, &cur_tail),
        MRD_OK);
    struct cur_tail_wait tw = { .sink = sink, .count = head + 200 };
    if (!harness_wait_for(cur_tail_count_reached, &tw, 200, CUR_POLL_MS)) {
        cur_writers_join(ws, CUR_NODES, true);
        fail_msg(
            "the tail delivered %zu events in 10 s", atomic_load(&sink->count));
    }

    /* The hint of the tail's cursor names the node that served it last. */
    assert_int_equal(cur_tail_hint_node(cur_tail), 1);

    /* Nodes 2 and 3 freeze (SIGSTOP), so what node 1 takes from now on
     * reaches neither; the tail, on node 1, delivers some of it. Its
     * cursor then covers events node 2 does not have when the tail moves
     * there: they come to node 2 later, after events the tail has not
     * seen, and must be skipped then, not delivered twice. */
    uint64_t s1 = atomic_load(&ws[0].last_seq) + CUR_TAIL_BATCH_MAX;
    assert_int_equal(kill(cur_nodes[1].h.pid, SIGSTOP), 0);
    assert_int_equal(kill(cur_nodes[2].h.pid, SIGSTOP), 0);
    tw.after[1] = s1 + 40;
    if (!harness_wait_for(cur_tail_origin_past, &tw, 200, 10)) {
        kill(cur_nodes[1].h.pid, SIGCONT);
        kill(cur_nodes[2].h.pid, SIGCONT);
        cur_writers_join(ws, CUR_NODES, true);
        fail_msg("the tail did not get node 1's events while 2 and 3 were "
                 "stopped");
    }

    /* Node 1 dies, 2 and 3 go on. An event of node 2 or 3 more than a
     * batch past what they had when it died cannot have been on node 1:
     * delivering one means the tail went on on node 2. */
    assert_int_equal(harness_node_kill(&cur_nodes[0].h, SIGKILL), 0);
    assert_int_equal(kill(cur_nodes[1].h.pid, SIGCONT), 0);
    assert_int_equal(kill(cur_nodes[2].h.pid, SIGCONT), 0);
    uint64_t only1   = atomic_load(&sink->max_seq[1]) - s1;
    uint64_t t_kill  = cur_now_ms();
    size_t   at_kill = atomic_load(&sink->count);
    for (unsigned o = 2; o <= CUR_NODES; o++) {
        tw.after[o] = atomic_load(&ws[o - 1].last_seq) + CUR_TAIL_BATCH_MAX;
    }
    bool failed_over = harness_wait_for(
        cur_tail_past_kill, &tw, (CUR_FAILOVER_MS + 9000u) / 20u, 20);
    uint64_t failover_ms = cur_now_ms() - t_kill;
    printf("cursor_test: node 1 killed after %zu events (about %" PRIu64
           " only node 1 had); the tail went on after %" PRIu64
           " ms (%u errors told, last %s)\n",
        at_kill, only1, failover_ms, atomic_load(&sink->errors),
        mrd_errname(atomic_load(&sink->last_err)));
    if (!failed_over) {
        cur_writers_join(ws, CUR_NODES, true);
        fail_msg("the tail did not go on on node 2 within %u ms of node 1's "
                 "death",
            harness_ms(CUR_FAILOVER_MS + 9000u));
    }
    harness_sleep_ms(harness_ms(300));

    /* Node 1 comes back on its port, with its args: what it acknowledged
     * before dying replicates to node 2, and the tail gets it there. */
    cur_node_restart(&cur_nodes[0]);
    harness_sleep_ms(harness_ms(500));
    cur_writers_join(ws, CUR_NODES, true);
    cur_writers_collect(ws, CUR_NODES, cur_tail_stream, &acked);
    for (unsigned i = 0; i < CUR_NODES; i++) {
        printf("cursor_test: tail writer %u: %u events, %u retries\n", ws[i].id,
            ws[i].count, ws[i].retries);
        assert_true(ws[i].count > 0);
    }
    e.counts[0] = acked.n;
    cur_converge(&e, "tail stream");
    tw.count = acked.n;
    if (!harness_wait_for(cur_tail_count_reached, &tw, 400, CUR_POLL_MS)) {
        fprintf(stderr, "cursor_test: the tail has %zu of %zu events\n",
            atomic_load(&sink->count), acked.n);
    }
    /* Nothing more may come: give a duplicate the time to show. */
    harness_sleep_ms(harness_ms(300));
    assert_false(atomic_load(&sink->wrong_stream));
    cur_tail_snapshot(sink, &got);
    cur_verify(&acked, &got, "callback tail across node 1's death");
    if (failover_ms > harness_ms(CUR_FAILOVER_MS)) {
        fail_msg("the tail took %" PRIu64 " ms to go on after node 1 died "
                 "(bound %u ms): a long-poll on a dead node is waited out",
            failover_ms, harness_ms(CUR_FAILOVER_MS));
    }

    /* Its cursor: each origin at its highest acknowledged seq. */
    mrd_cursor *c = NULL;
    assert_int_equal(mrd_tail_cursor(cur_tail, &c), MRD_OK);
    for (size_t i = 0; i < acked.n; i++) {
        assert_true(mrd_cursor_covers(c, acked.v[i]));
    }
    assert_int_equal(mrd_cursor_origin_count(c), CUR_NODES);
    for (size_t i = 0; i < CUR_NODES; i++) {
        mrd_dot d = mrd_cursor_origin_at(c, i);
        assert_int_equal(d.origin, i + 1);
        assert_int_equal(d.seq, atomic_load(&ws[i].last_seq));
    }
    cur_writers_free(ws, CUR_NODES);
    cur_dots_free(&got);

    /* Written after the cursor was taken: a pull tail from that cursor on
     * node 3 gets exactly these. */
    struct cur_dots acked_after = { 0 };
    for (unsigned i = 0; i < CUR_NODES; i++) {
        cur_writer_init(&ws[i], i, "u", cur_tail_stream, 10, 10, 2);
    }
    cur_writers_start(ws, CUR_NODES);
    cur_writers_join(ws, CUR_NODES, false);
    cur_writers_collect(ws, CUR_NODES, cur_tail_stream, &acked_after);
    cur_writers_collect(ws, CUR_NODES, cur_tail_stream, &acked);
    cur_writers_free(ws, CUR_NODES);
    mrd_cursor *text_c = cur_persist(c);
    mrd_tail   *pull   = NULL;
    assert_int_equal(mrd_tail_open_cursor(
                         cur_nodes[2].client, cur_tail_stream, text_c, &pull),
        MRD_OK);
    mrd_cursor_free(text_c); /* the tail copied it */
    uint64_t deadline = cur_now_ms() + harness_ms(20000);
    while (got.n < acked_after.n && cur_now_ms() < deadline) {
        mrd_events *ev = NULL;
        int         rv = mrd_tail_next(pull, harness_ms(2000), &ev);
        if (rv == MRD_ETIMEDOUT) {
            continue;
        }
        if (rv != MRD_OK) {
            fail_msg("pull tail: %s (%s)", mrd_errname(rv), mrd_errdetail());
        }
        assert_true(mrd_events_count(ev) > 0);
        for (size_t i = 0; i < mrd_events_count(ev); i++) {
            cur_dots_push(&got, mrd_events_at(ev, i)->dot);
        }
        mrd_events_free(ev);
    }
    /* And then nothing. */
    mrd_events *ev = (mrd_events *) (uintptr_t) 1;
    assert_int_equal(mrd_tail_next(pull, 300, &ev), MRD_ETIMEDOUT);
    assert_null(ev);
    cur_verify(&acked_after, &got, "pull tail on node 3 from the cursor");
    mrd_cursor *pc = NULL;
    assert_int_equal(mrd_tail_cursor(pull, &pc), MRD_OK);
    for (size_t i = 0; i < acked.n; i++) {
        assert_true(mrd_cursor_covers(pc, acked.v[i]));
    }
    mrd_cursor_free(pc);
    mrd_tail_close(pull);
    cur_dots_free(&got);

    /* The callback tail gets them too, once. */
    tw.count = acked.n;
    harness_wait_for(cur_tail_count_reached, &tw, 200, CUR_POLL_MS);
    harness_sleep_ms(harness_ms(200));
    mrd_tail_close(cur_tail);
    cur_tail = NULL;
    cur_tail_snapshot(sink, &got);
    cur_verify(&acked, &got, "callback tail, to the end");

    mrd_client_close(cur_both);
    cur_both = NULL;
    pthread_mutex_lock(&sink->mu);
    cur_dots_free(&sink->dots);
    pthread_mutex_unlock(&sink->mu);
    cur_dots_free(&got);
    cur_dots_free(&acked);
    cur_dots_free(&acked_after);
}

/* After a failed test: the tail first (it uses its client), then the
 * writers (their nodes may be stopped or dead: they give up). */
static void
cur_teardown_tail(void)
{
    mrd_tail_close(cur_tail);
    cur_tail = NULL;
    mrd_client_close(cur_both);
    cur_both = NULL;
}

static void
cur_teardown_writers(void)
{
    atomic_store(&cur_abandon, true);
    for (unsigned i = 0; i < CUR_NODES; i++) {
        if (cur_nodes[i].h.pid != 0) {
            kill(cur_nodes[i].h.pid, SIGCONT); /* frozen by a failed test */
        }
    }
    for (unsigned i = 0; i < CUR_NODES; i++) {
        atomic_store(&cur_ws[i].stop, true);
    }
    for (unsigned i = 0; i < CUR_NODES; i++) {
        if (cur_ws[i].running) {
            pthread_join(cur_ws[i].thread, NULL);
            cur_ws[i].running = false;
        }
        free(cur_ws[i].recs);
        cur_ws[i].recs = NULL;
    }
}

int
main(void)
{
    const char *env = getenv("MRD_TEST_SEED");

    cur_seed = env != NULL ? (uint32_t) strtoul(env, NULL, 10)
                           : (uint32_t) time(NULL);
    printf("cursor_test: seed %u (replay with MRD_TEST_SEED=%u)\n", cur_seed,
        cur_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_round_trip),
        cmocka_unit_test(test_api_format_truncated),
        cmocka_unit_test(test_api_malformed),
        cmocka_unit_test(test_api_covers_add),
        cmocka_unit_test(test_read_failover),
        cmocka_unit_test(test_hint_other_stream),
        cmocka_unit_test(test_reply_bound),
        cmocka_unit_test(test_full_cursor),
        cmocka_unit_test(test_tail_failover),
    };
    return cmocka_run_group_tests_name("cursor", tests, NULL, cur_teardown);
}
