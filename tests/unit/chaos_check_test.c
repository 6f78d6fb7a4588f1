/*
 * chaos_check_test.c: the chaos history format and the checker. A clean
 * synthetic run (history + three nodes' final state) passes every check;
 * each planted anomaly is caught by exactly the check meant for it, with
 * the count the definition in check.h gives. The reader refuses malformed
 * lines by number, a written history reads back equal, and every limit
 * holds. Pure: temp files only, no sockets, no sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "check.h"
#include "history.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ helpers -- */

/* A temp file path, removed by the caller. */
static void
tmp_path(char *path, size_t size)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, size, "%s/chaos_check_XXXXXX", dir ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
}

static void
write_file(const char *path, const char *text, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, size, f), size);
    fclose(f);
}

/* The clean history (see test_clean for what landed where). Times rise;
 * p1 appends to s1 (ok, ok, info, then one with no completion), p2 to s2
 * (ok batch of two, fail, then a state read), p3 (an info append that
 * landed, a read, a pending append that did not land), p4 an ok append to
 * s3, which is placed on nodes 1 and 2 only. */
static const char *const clean_lines[] = {
    "{\"t\":10,\"p\":1,\"type\":\"invoke\",\"f\":\"append\",\"stream\":\"s1\","
    "\"id\":\"a1\",\"ack\":\"local\",\"ops\":{\"n\":1}}",
    "{\"t\":20,\"p\":1,\"type\":\"ok\",\"f\":\"append\",\"dot\":\"1:1\","
    "\"pos\":0}",
    "{\"t\":30,\"p\":2,\"type\":\"invoke\",\"f\":\"append\",\"stream\":\"s2\","
    "\"ids\":[\"b1\",\"b2\"],\"ack\":\"region\",\"ops\":{\"n\":2}}",
    "{\"t\":40,\"p\":1,\"type\":\"invoke\",\"f\":\"append\",\"stream\":\"s1\","
    "\"id\":\"a2\",\"ack\":\"global\",\"ops\":{\"n\":3}}",
    "{\"t\":50,\"p\":2,\"type\":\"ok\",\"f\":\"append\",\"stream\":\"s2\","
    "\"ids\":[\"b1\",\"b2\"]}",
    "{\"t\":60,\"p\":1,\"type\":\"ok\",\"f\":\"append\",\"id\":\"a2\"}",
    "{\"t\":70,\"p\":3,\"type\":\"invoke\",\"f\":\"append\",\"stream\":\"s1\","
    "\"id\":\"c1\",\"ops\":{\"n\":5}}",
    "{\"t\":80,\"p\":3,\"type\":\"info\",\"f\":\"append\","
    "\"err\":\"MRD_ETIMEDOUT\"}",
    "{\"t\":90,\"p\":2,\"type\":\"invoke\",\"f\":\"append\",\"stream\":\"s2\","
    "\"id\":\"b3\",\"ops\":{\"n\":7}}",
    "{\"t\":100,\"p\":2,\"type\":\"fail\",\"f\":\"append\","
    "\"err\":\"MRD_EVERSION\"}",
    "{\"t\":110,\"p\":1,\"type\":\"invoke\",\"f\":\"append\",\"stream\":\"s1\","
    "\"id\":\"a3\"}",
    "{\"t\":120,\"p\":1,\"type\":\"info\",\"f\":\"append\"}",
    "{\"t\":130,\"p\":3,\"type\":\"invoke\",\"f\":\"read\",\"stream\":\"s1\"}",
    "{\"t\":140,\"p\":3,\"type\":\"ok\",\"f\":\"read\","
    "\"ids\":[\"a1\",\"a2\",\"c1\"]}",
    "{\"t\":150,\"p\":2,\"type\":\"invoke\",\"f\":\"state\",\"stream\":\"s2\"}",
    "{\"t\":160,\"p\":2,\"type\":\"ok\",\"f\":\"state\",\"values\":{\"n\":2}}",
    "{\"t\":170,\"p\":1,\"type\":\"invoke\",\"f\":\"append\",\"stream\":\"s1\","
    "\"id\":\"a4\"}",
    "{\"t\":180,\"p\":3,\"type\":\"invoke\",\"f\":\"append\",\"stream\":\"s2\","
    "\"id\":\"c2\",\"ops\":{\"n\":11}}",
    "{\"t\":190,\"p\":4,\"type\":\"invoke\",\"f\":\"append\",\"stream\":\"s3\","
    "\"id\":\"d1\"}",
    "{\"t\":200,\"p\":4,\"type\":\"ok\",\"f\":\"append\"}",
};

/* What landed, in every node's log order. */
struct tw_landed {
    const char *stream;
    const char *id;
    uint64_t    origin, seq;
    uint32_t    shard;
    unsigned    nodes; /* bit i: node index i */
};

static const struct tw_landed clean_landed[] = {
    { "s1", "a1", 1, 1, 0, 7 },
    { "s2", "b1", 2, 1, 1, 7 },
    { "s2", "b2", 2, 2, 1, 7 },
    { "s1", "a2", 1, 2, 0, 7 },
    { "s1", "c1", 3, 1, 0, 7 },
    { "s1", "a4", 1, 3, 0, 7 },
    { "s3", "d1", 2, 3, 2, 3 },
};

#define TW_NODES 3u
#define TW_EVENTS_MAX 16u
#define TW_STREAMS 3u

/* A world: a history and a final state the tests can bend. */
struct tw {
    struct chaos_ops         *ops;
    struct chaos_event        ev[TW_NODES][TW_EVENTS_MAX];
    struct chaos_stream_state st[TW_NODES][TW_STREAMS];
    struct chaos_counter      cnt[TW_NODES][TW_STREAMS];
    struct chaos_node_final   nodes[TW_NODES];
    uint64_t                  s3_nodes[2];
    struct chaos_placement    placement;
    struct chaos_final        f;
};

static struct chaos_ops *
ops_from_lines(const char *const *lines, size_t count)
{
    struct chaos_ops  *ops = NULL;
    struct chaos_error err;
    assert_int_equal(chaos_ops_new(NULL, &ops), MRD_OK);
    for (size_t i = 0; i < count; i++) {
        int rv = chaos_ops_add_line(ops, lines[i], strlen(lines[i]), &err);
        if (rv != MRD_OK) {
            fail_msg("line %zu: %s", i + 1, err.text);
        }
    }
    return ops;
}

static void
tw_add(struct tw *w, uint32_t n, const struct tw_landed *l)
{
    struct chaos_node_final *node = &w->nodes[n];
    uint64_t                 pos = 0, log_seq = 1;
    for (size_t i = 0; i < node->event_count; i++) {
        pos += strcmp(w->ev[n][i].stream, l->stream) == 0;
        log_seq += w->ev[n][i].shard == l->shard;
    }
    assert_true(node->event_count < TW_EVENTS_MAX);
    w->ev[n][node->event_count++] = (struct chaos_event) {
        .stream   = l->stream,
        .position = pos,
        .id       = l->id,
        .dot      = { l->origin, l->seq },
        .shard    = l->shard,
        .log_seq  = log_seq,
    };
}

static struct tw *
tw_new(void)
{
    static const char *const streams[TW_STREAMS] = { "s1", "s2", "s3" };
    static const int64_t     values[TW_STREAMS]  = { 9, 2, 0 };
    struct tw               *w                   = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->ops = ops_from_lines(clean_lines, MRD_ARRAY_SIZE(clean_lines));
    for (uint32_t n = 0; n < TW_NODES; n++) {
        w->nodes[n] = (struct chaos_node_final) {
            .node_id       = n + 1,
            .has_caught_up = true,
            .caught_up_us  = 1000 + 100 * n,
            .events        = w->ev[n],
            .streams       = w->st[n],
            .stream_count  = n < 2 ? 3 : 2,
        };
        for (size_t i = 0; i < MRD_ARRAY_SIZE(clean_landed); i++) {
            if ((clean_landed[i].nodes >> n & 1) != 0) {
                tw_add(w, n, &clean_landed[i]);
            }
        }
        for (size_t s = 0; s < TW_STREAMS; s++) {
            w->cnt[n][s] = (struct chaos_counter) { "n", values[s] };
            w->st[n][s]  = (struct chaos_stream_state) {
                 .stream        = streams[s],
                 .doc           = (const uint8_t *) streams[s],
                 .doc_size      = 2,
                 .counters      = &w->cnt[n][s],
                 .counter_count = s < 2 ? 1 : 0,
            };
        }
    }
    w->s3_nodes[0] = 1;
    w->s3_nodes[1] = 2;
    w->placement   = (struct chaos_placement) { "s3", w->s3_nodes, 2 };
    w->f           = (struct chaos_final) {
                  .heal_us         = 900,
                  .nodes           = w->nodes,
                  .node_count      = TW_NODES,
                  .placements      = &w->placement,
                  .placement_count = 1,
    };
    return w;
}

static void
tw_free(struct tw *w)
{
    chaos_ops_free(w->ops);
    free(w);
}

/* The event of id on node index n. */
static struct chaos_event *
tw_find(struct tw *w, uint32_t n, const char *id)
{
    for (size_t i = 0; i < w->nodes[n].event_count; i++) {
        if (w->ev[n][i].id != NULL && strcmp(w->ev[n][i].id, id) == 0) {
            return &w->ev[n][i];
        }
    }
    fail_msg("no %s on node index %u", id, n);
    return NULL;
}

static void
tw_remove(struct tw *w, uint32_t n, const char *id)
{
    struct chaos_event *e = tw_find(w, n, id);
    size_t rest = (size_t) (&w->ev[n][w->nodes[n].event_count] - e) - 1;
    memmove(e, e + 1, rest * sizeof(*e));
    w->nodes[n].event_count--;
}

/* Runs every check; asserts that exactly `kind` found `count` (or that all
 * pass when count is 0) and that its first example mentions `words`. */
static void
tw_expect(
    struct tw *w, enum chaos_check_kind kind, uint64_t count, const char *words)
{
    struct chaos_report r;
    struct chaos_error  err = { 0 };
    int                 rv  = chaos_check_all(w->ops, &w->f, &err, &r);
    if (rv != MRD_OK) {
        fail_msg("chaos_check_all: %s", err.text);
    }
    for (size_t k = 0; k < CHAOS_CHECK_COUNT; k++) {
        uint64_t want = k == (size_t) kind ? count : 0;
        if (r.checks[k].count != want) {
            chaos_check_report(stderr, &r);
            fail_msg("%s: %" PRIu64 ", want %" PRIu64,
                chaos_check_name((enum chaos_check_kind) k), r.checks[k].count,
                want);
        }
    }
    assert_int_equal(chaos_report_passed(&r), count == 0);
    if (words != NULL) {
        const struct chaos_finding *c = &r.checks[kind];
        assert_true(c->example_count > 0);
        if (strstr(c->examples[0], words) == NULL) {
            fail_msg("example \"%s\" lacks \"%s\"", c->examples[0], words);
        }
    }
}

/* ------------------------------------------------------ clean and bent -- */

static void
test_clean(void **state)
{
    (void) state;
    struct tw *w = tw_new();
    tw_expect(w, CHAOS_CHECK_LOST, 0, NULL);
    tw_free(w);
}

static void
test_lost(void **state)
{
    (void) state;
    struct tw *w = tw_new();
    for (uint32_t n = 0; n < TW_NODES; n++) {
        tw_remove(w, n, "a2"); /* acked, gone everywhere */
    }
    tw_expect(w, CHAOS_CHECK_LOST, 3, "id a2 (stream s1");
    tw_free(w);

    /* Missing from a node outside its placement is not lost; missing from
     * one that must hold it is (and the replicas then differ). */
    w = tw_new();
    tw_remove(w, 1, "d1");
    struct chaos_report r;
    assert_int_equal(chaos_check_all(w->ops, &w->f, NULL, &r), MRD_OK);
    assert_int_equal(r.checks[CHAOS_CHECK_LOST].count, 1);
    assert_int_equal(r.checks[CHAOS_CHECK_CONVERGENCE].count, 1);
    tw_free(w);

    /* A local ack (a1: dot 1:1, invoked at t=10) whose node was wiped
     * after the invoke is excused; a wipe before it, a wipe of another
     * node, or a higher level (a2, global) is not. */
    struct {
        const char *id;
        uint64_t    node, t, lost;
    } wipe_cases[] = { { "a1", 1, 15, 0 }, { "a1", 1, 5, 3 },
        { "a1", 2, 15, 3 }, { "a2", 1, 50, 3 } };
    for (size_t c = 0; c < MRD_ARRAY_SIZE(wipe_cases); c++) {
        w                      = tw_new();
        struct chaos_wipe wipe = { wipe_cases[c].node, wipe_cases[c].t };
        w->f.wipes             = &wipe;
        w->f.wipe_count        = 1;
        for (uint32_t n = 0; n < TW_NODES; n++) {
            tw_remove(w, n, wipe_cases[c].id);
        }
        tw_expect(w, CHAOS_CHECK_LOST, wipe_cases[c].lost, NULL);
        tw_free(w);
    }

    /* Its counter increment (a1 adds 1 to s1's n) is excused with it: s1
     * may then read 3 (a2's 3 alone; c1's 5 is indeterminate), which is
     * below the acked sum of 4 without the wipe. */
    w                      = tw_new();
    struct chaos_wipe wipe = { 1, 15 };
    w->f.wipes             = &wipe;
    w->f.wipe_count        = 1;
    for (uint32_t n = 0; n < TW_NODES; n++) {
        tw_remove(w, n, "a1");
        w->cnt[n][0].value = 3;
    }
    tw_expect(w, CHAOS_CHECK_LOST, 0, NULL);
    w->f.wipe_count = 0; /* no wipe: both lost and below the acked sum */
    struct chaos_report r2;
    assert_int_equal(chaos_check_all(w->ops, &w->f, NULL, &r2), MRD_OK);
    assert_int_equal(r2.checks[CHAOS_CHECK_LOST].count, 3);
    assert_int_equal(r2.checks[CHAOS_CHECK_COUNTER_BOUNDS].count, 3);
    tw_free(w);
}

static void
test_unwritten(void **state)
{
    (void) state;
    struct tw             *w     = tw_new();
    const struct tw_landed ghost = { "s1", "zz9", 2, 9, 0, 7 };
    for (uint32_t n = 0; n < TW_NODES; n++) {
        tw_add(w, n, &ghost);
    }
    tw_expect(w, CHAOS_CHECK_UNWRITTEN, 3, "no append named its id");
    tw_free(w);

    /* A failed append that shows up anyway. */
    w                         = tw_new();
    const struct tw_landed b3 = { "s2", "b3", 2, 4, 1, 7 };
    for (uint32_t n = 0; n < TW_NODES; n++) {
        tw_add(w, n, &b3);
    }
    tw_expect(w, CHAOS_CHECK_UNWRITTEN, 3, "failed");
    tw_free(w);

    /* An event with no id in its data. */
    w                           = tw_new();
    const struct tw_landed anon = { "s2", NULL, 2, 4, 1, 7 };
    for (uint32_t n = 0; n < TW_NODES; n++) {
        tw_add(w, n, &anon);
    }
    tw_expect(w, CHAOS_CHECK_UNWRITTEN, 3, "no id in its data");
    tw_free(w);
}

static void
test_duplicate(void **state)
{
    (void) state;
    struct tw *w = tw_new();
    /* A retried append written twice (a second dot), replicated everywhere:
     * two copies on each node, one id, counted once. */
    const struct tw_landed again = { "s2", "b1", 2, 5, 1, 7 };
    for (uint32_t n = 0; n < TW_NODES; n++) {
        tw_add(w, n, &again);
    }
    tw_expect(w, CHAOS_CHECK_DUPLICATE, 1, "id b1 twice on node 1");
    tw_free(w);
}

static void
test_origin_order(void **state)
{
    (void) state;
    struct tw          *w  = tw_new();
    struct chaos_event *a1 = tw_find(w, 1, "a1");
    struct chaos_event *a2 = tw_find(w, 1, "a2");
    uint64_t            ls = a1->log_seq;
    a1->log_seq            = a2->log_seq;
    a2->log_seq            = ls;
    tw_expect(w, CHAOS_CHECK_ORIGIN_ORDER, 1,
        "node 2 shard 0: origin 1 seq 1 at log seq 2 comes after its seq 2");
    tw_free(w);
}

static void
test_session_order(void **state)
{
    (void) state;
    struct tw *w = tw_new();
    /* p1's a2 was invoked after a1's ok, yet every node put it first. */
    for (uint32_t n = 0; n < TW_NODES; n++) {
        struct chaos_event *a1  = tw_find(w, n, "a1");
        struct chaos_event *a2  = tw_find(w, n, "a2");
        uint64_t            pos = a1->position;
        a1->position            = a2->position;
        a2->position            = pos;
    }
    tw_expect(w, CHAOS_CHECK_SESSION_ORDER, 3,
        "p1 stream s1 node 1: id a2 (invoked at t=40us) at position 0 is not "
        "after id a1");
    tw_free(w);
}

static void
test_diverged(void **state)
{
    (void) state;
    /* An indeterminate append that reached two replicas of three. */
    struct tw *w = tw_new();
    tw_remove(w, 2, "c1");
    tw_expect(w, CHAOS_CHECK_CONVERGENCE, 1,
        "stream s1 dot 3:1 (id c1) is missing on node 3");
    tw_free(w);

    /* Same events, different state document bytes. */
    w               = tw_new();
    w->st[1][0].doc = (const uint8_t *) "sX";
    tw_expect(
        w, CHAOS_CHECK_CONVERGENCE, 1, "stream s1: state document on node 2");
    tw_free(w);

    /* One dot under two ids. */
    w                       = tw_new();
    tw_find(w, 0, "b2")->id = "b1";
    struct chaos_report r;
    assert_int_equal(chaos_check_all(w->ops, &w->f, NULL, &r), MRD_OK);
    assert_true(r.checks[CHAOS_CHECK_CONVERGENCE].count >= 1);
    tw_free(w);
}

static void
test_counter_bounds(void **state)
{
    (void) state;
    /* s1.n: acked 1 + 3, indeterminate + 5: [4, 9]. A merge done as LWW
     * keeps one writer's value: below the acked sum. */
    struct tw *w = tw_new();
    for (uint32_t n = 0; n < TW_NODES; n++) {
        w->cnt[n][0].value = 3;
    }
    tw_expect(w, CHAOS_CHECK_COUNTER_BOUNDS, 3,
        "stream s1 counter n on node 1 is 3, outside [4, 9] (acked sum 4)");
    tw_free(w);

    /* Above what every attempt could add (an op applied twice). */
    w = tw_new();
    for (uint32_t n = 0; n < TW_NODES; n++) {
        w->cnt[n][0].value = 10;
    }
    tw_expect(w, CHAOS_CHECK_COUNTER_BOUNDS, 3, "is 10, outside [4, 9]");
    tw_free(w);

    /* In bounds but not the same everywhere. */
    w                  = tw_new();
    w->cnt[2][0].value = 5;
    tw_expect(w, CHAOS_CHECK_COUNTER_BOUNDS, 1,
        "stream s1 counter n is 9 on node 1 but 5 on node 3");
    tw_free(w);

    /* The failed b3 (+7) never counts; the pending c2 (+11) may. */
    w = tw_new();
    for (uint32_t n = 0; n < TW_NODES; n++) {
        w->cnt[n][1].value = 13;
    }
    tw_expect(w, CHAOS_CHECK_LOST, 0, NULL);
    tw_free(w);
}

static void
test_convergence_time(void **state)
{
    (void) state;
    struct tw                    *w = tw_new();
    struct chaos_convergence_time t;
    w->f.heal_us              = 1000;
    w->nodes[0].caught_up_us  = 1500;
    w->nodes[1].caught_up_us  = 3000;
    w->nodes[2].has_caught_up = false;
    chaos_check_convergence_time(&w->f, &t);
    assert_int_equal(t.node_count, 2);
    assert_int_equal(t.unknown_count, 1);
    assert_int_equal(t.p50_us, 500);
    assert_int_equal(t.max_us, 2000);
    w->nodes[0].caught_up_us = 10; /* before the heal: 0 */
    chaos_check_convergence_time(&w->f, &t);
    assert_int_equal(t.p50_us, 0);
    tw_free(w);
}

static void
test_report(void **state)
{
    (void) state;
    struct tw *w = tw_new();
    for (uint32_t n = 0; n < TW_NODES; n++) {
        tw_remove(w, n, "a1");
    }
    struct chaos_report r;
    assert_int_equal(chaos_check_all(w->ops, &w->f, NULL, &r), MRD_OK);
    char  *text = NULL;
    size_t size = 0;
    FILE  *out  = open_memstream(&text, &size);
    assert_non_null(out);
    chaos_check_report(out, &r);
    fclose(out);
    assert_non_null(strstr(text, "chaos check: FAIL (1 of 7 checks failed)"));
    assert_non_null(strstr(text, "\nlost             3\n    id a1"));
    assert_non_null(strstr(text, "\nunwritten        0\n"));
    assert_non_null(strstr(text, "convergence time p50 "));
    free(text);
    tw_free(w);
}

/* The final state's own errors are input errors, never assertions. */
static void
test_bad_final(void **state)
{
    (void) state;
    struct tw          *w = tw_new();
    struct chaos_error  err;
    struct chaos_report r;
    w->nodes[1].node_id = 1; /* twice */
    assert_int_equal(chaos_check_all(w->ops, &w->f, &err, &r), MRD_EINVAL);
    assert_non_null(strstr(err.text, "node 1 twice"));
    w->nodes[1].node_id = 2;
    w->s3_nodes[1]      = 9;
    assert_int_equal(chaos_check_all(w->ops, &w->f, &err, &r), MRD_EINVAL);
    assert_non_null(strstr(err.text, "unknown node 9"));
    w->s3_nodes[1] = 2;
    w->ev[0][0].id = "bad id";
    assert_int_equal(chaos_check_all(w->ops, &w->f, &err, &r), MRD_EINVAL);
    w->ev[0][0].id  = "a1";
    w->f.node_count = 0;
    assert_int_equal(chaos_check_all(w->ops, &w->f, &err, &r), MRD_EINVAL);
    tw_free(w);

    /* One id appended to two streams: the history contradicts itself. */
    const char *lines[] = {
        "{\"t\":1,\"p\":0,\"type\":\"invoke\",\"f\":\"append\","
        "\"stream\":\"x\",\"id\":\"i\"}",
        "{\"t\":2,\"p\":0,\"type\":\"ok\",\"f\":\"append\"}",
        "{\"t\":3,\"p\":0,\"type\":\"invoke\",\"f\":\"append\","
        "\"stream\":\"y\",\"id\":\"i\"}",
    };
    struct chaos_ops       *ops  = ops_from_lines(lines, 3);
    struct chaos_node_final node = { .node_id = 1 };
    struct chaos_final      f    = { .nodes = &node, .node_count = 1 };
    assert_int_equal(chaos_check_all(ops, &f, &err, &r), MRD_EINVAL);
    assert_int_equal(err.line, 3);
    chaos_ops_free(ops);
}

/* A saved final state loads back and checks the same. */
static void
test_final_file(void **state)
{
    (void) state;
    struct tw          *w = tw_new();
    char                path[256];
    struct chaos_final  f;
    struct chaos_error  err;
    struct chaos_report r;
    tmp_path(path, sizeof(path));
    w->nodes[2].has_caught_up  = false;
    struct chaos_wipe wipes[2] = { { 2, 300 }, { 3, 400 } };
    w->f.wipes                 = wipes;
    w->f.wipe_count            = 2;
    assert_int_equal(chaos_final_save(path, &w->f), MRD_OK);
    int rv = chaos_final_load(path, NULL, &err, &f);
    if (rv != MRD_OK) {
        fail_msg("%s", err.text);
    }
    assert_int_equal(f.node_count, 3);
    assert_int_equal(f.heal_us, 900);
    assert_int_equal(f.placement_count, 1);
    assert_int_equal(f.placements[0].node_ids[1], 2);
    assert_int_equal(f.wipe_count, 2);
    assert_true(f.wipes[1].node_id == 3 && f.wipes[1].t_us == 400);
    for (size_t n = 0; n < 3; n++) {
        assert_int_equal(f.nodes[n].event_count, w->nodes[n].event_count);
        assert_int_equal(f.nodes[n].has_caught_up, n < 2);
        for (size_t i = 0; i < f.nodes[n].event_count; i++) {
            const struct chaos_event *a = &f.nodes[n].events[i];
            const struct chaos_event *b = &w->ev[n][i];
            assert_string_equal(a->id, b->id);
            assert_string_equal(a->stream, b->stream);
            assert_true(a->position == b->position && a->log_seq == b->log_seq
                && a->shard == b->shard && a->dot.origin == b->dot.origin
                && a->dot.seq == b->dot.seq);
        }
        assert_int_equal(f.nodes[n].streams[0].doc_size, 2);
        assert_memory_equal(f.nodes[n].streams[0].doc, "s1", 2);
        assert_int_equal(f.nodes[n].streams[0].counters[0].value, 9);
    }
    assert_int_equal(chaos_check_all(w->ops, &f, &err, &r), MRD_OK);
    assert_true(chaos_report_passed(&r));
    chaos_final_free(&f);

    /* Refusals: unknown key, bad hex, a limit. */
    const char *bad_key = "{\"heal_t\":1,\"nodes\":[{\"node\":1,\"x\":2}]}";
    write_file(path, bad_key, strlen(bad_key));
    assert_int_equal(chaos_final_load(path, NULL, &err, &f), MRD_EPROTO);
    assert_non_null(strstr(err.text, "node #0: unknown key \"x\""));
    const char *bad_hex = "{\"heal_t\":1,\"nodes\":[{\"node\":1,\"streams\":"
                          "[{\"stream\":\"s\",\"doc\":\"abc\"}]}]}";
    write_file(path, bad_hex, strlen(bad_hex));
    assert_int_equal(chaos_final_load(path, NULL, &err, &f), MRD_EPROTO);
    assert_non_null(strstr(err.text, "\"doc\" is not hex"));
    const char *bad_wipe = "{\"heal_t\":1,\"nodes\":[],\"wipes\":"
                           "[{\"node\":1,\"t\":2,\"why\":3}]}";
    write_file(path, bad_wipe, strlen(bad_wipe));
    assert_int_equal(chaos_final_load(path, NULL, &err, &f), MRD_EPROTO);
    assert_non_null(strstr(err.text, "wipe #0: unknown key \"why\""));
    struct chaos_limits small = chaos_limits_default();
    small.bytes_max           = 64;
    assert_int_equal(chaos_final_save(path, &w->f), MRD_OK);
    assert_int_equal(chaos_final_load(path, &small, &err, &f), MRD_EFULL);
    assert_null(f.nodes);
    unlink(path);
    tw_free(w);
}

/* ------------------------------------------------------------ history -- */

/* Loads the clean history's first two lines then `bad` from line 3 on;
 * the load must fail with `code` on line `line` and say `words`. */
static void
expect_bad_line(const char *bad, size_t bad_size, uint64_t line, int code,
    const char *words)
{
    char               prefix[32];
    char               path[256];
    char               text[4096];
    struct chaos_error err = { 0 };
    struct chaos_ops  *ops = NULL;
    tmp_path(path, sizeof(path));
    int len = snprintf(
        text, sizeof(text), "%s\n%s\n", clean_lines[0], clean_lines[1]);
    assert_true(len > 0 && (size_t) len + bad_size < sizeof(text));
    memcpy(text + len, bad, bad_size);
    write_file(path, text, (size_t) len + bad_size);
    int rv = chaos_ops_load(path, NULL, &err, &ops);
    unlink(path);
    snprintf(prefix, sizeof(prefix), "line %" PRIu64 ": ", line);
    if (rv != code || err.line != line || strstr(err.text, words) == NULL
        || strncmp(err.text, prefix, strlen(prefix)) != 0) {
        fail_msg("%s: got %s, line %" PRIu64 ": \"%s\"; want %s, \"%s\"", bad,
            mrd_errname(rv), err.line, err.text, mrd_errname(code), words);
    }
    assert_null(ops);
}

#define BAD(text, code, words)                                                 \
    expect_bad_line(text, strlen(text), 3, code, words)
#define BAD4(text, code, words)                                                \
    expect_bad_line(text, strlen(text), 4, code, words)

static void
test_malformed(void **state)
{
    (void) state;
    BAD("not json\n", MRD_EPROTO, "not a JSON object");
    BAD("[1,2]\n", MRD_EPROTO, "not a JSON object");
    BAD("\n", MRD_EPROTO, "empty line");
    BAD("{\"t\":30,\"t\":31,\"p\":1,\"type\":\"invoke\",\"f\":\"read\"}",
        MRD_EPROTO, "duplicate");
    BAD("{\"t\":30,\"p\":1,\"type\":\"invoke\"}", MRD_EPROTO, "required");
    BAD("{\"t\":30,\"p\":1,\"type\":\"invoke\",\"f\":\"read\",\"stream\":\"s\","
        "\"foo\":1}",
        MRD_EPROTO, "unknown key \"foo\"");
    BAD("{\"t\":30,\"p\":1,\"type\":\"maybe\",\"f\":\"read\"}", MRD_EPROTO,
        "\"type\" has an unknown value");
    BAD("{\"t\":-1,\"p\":1,\"type\":\"invoke\",\"f\":\"read\"}", MRD_EPROTO,
        "\"t\" is not an integer >= 0");
    BAD("{\"t\":5,\"p\":1,\"type\":\"invoke\",\"f\":\"read\",\"stream\":\"s\"}",
        MRD_EINVAL, "\"t\" goes backwards");
    BAD("{\"t\":30,\"p\":1,\"type\":\"ok\",\"f\":\"read\"}", MRD_EINVAL,
        "nothing open");
    BAD4(
        "{\"t\":30,\"p\":2,\"type\":\"invoke\",\"f\":\"read\",\"stream\":\"s\"}"
        "\n{\"t\":31,\"p\":2,\"type\":\"invoke\",\"f\":\"read\","
        "\"stream\":\"s\"}",
        MRD_EINVAL, "process 2 invokes while record 3 is open");
    BAD("{\"t\":30,\"p\":2,\"type\":\"invoke\",\"f\":\"append\","
        "\"stream\":\"s\",\"id\":\"x\",\"dot\":\"1-2\"}",
        MRD_EPROTO, "\"dot\" is not \"origin:seq\"");
    BAD("{\"t\":30,\"p\":2,\"type\":\"invoke\",\"f\":\"append\","
        "\"stream\":\"s\",\"id\":\"a b\"}",
        MRD_EINVAL, "printable ASCII");
    BAD("{\"t\":30,\"p\":2,\"type\":\"invoke\",\"f\":\"append\","
        "\"stream\":\"s\",\"ids\":[\"x\",\"x\"]}",
        MRD_EINVAL, "twice in one append");
    BAD("{\"t\":30,\"p\":2,\"type\":\"invoke\",\"f\":\"read\",\"stream\":\"s\","
        "\"ack\":\"local\"}",
        MRD_EPROTO, "\"ack\" only on an append's invoke");
    BAD("{\"t\":30,\"p\":2,\"type\":\"invoke\",\"f\":\"append\","
        "\"stream\":\"s\",\"id\":\"x\",\"values\":{\"n\":1}}",
        MRD_EPROTO, "\"values\" on a append record");
    BAD("{\"t\":30,\"p\":2,\"type\":\"invoke\",\"f\":\"append\","
        "\"stream\":\"s\",\"id\":\"x\",\"ops\":{\"n\":1099511627776}}",
        MRD_EINVAL, "CHAOS_COUNTER_DELTA_MAX");
    BAD("{\"t\":30,\"p\":2,\"type\":\"invoke\",\"f\":\"append\","
        "\"stream\":\"s\"}",
        MRD_EINVAL, "an append names 1..");
    BAD("{\"t\":30,\"p\":2,\"type\":\"invoke\",\"f\":\"read\"}", MRD_EINVAL,
        "an invoke needs a stream");
    BAD4("{\"t\":30,\"p\":1,\"type\":\"invoke\",\"f\":\"append\","
         "\"stream\":\"s\",\"id\":\"x\"}\n"
         "{\"t\":31,\"p\":1,\"type\":\"ok\",\"f\":\"append\",\"id\":\"y\"}",
        MRD_EINVAL, "ids differ from those of record 3");
    BAD4("{\"t\":30,\"p\":1,\"type\":\"invoke\",\"f\":\"append\","
         "\"stream\":\"s\",\"id\":\"x\"}\n"
         "{\"t\":31,\"p\":1,\"type\":\"ok\",\"f\":\"read\"}",
        MRD_EINVAL, "another \"f\"");
    BAD("{\"t\":30,\"p\":1,\"type\":\"invoke\",\"f\":\"state\","
        "\"stream\":\"s\",\"err\":\"E\"}",
        MRD_EINVAL, "\"err\" only on fail or info");
    expect_bad_line("{\"t\":30,\0}", 11, 3, MRD_EPROTO, "NUL byte");
}

/* Every field of a record survives write then read. */
static void
test_round_trip(void **state)
{
    (void) state;
    struct chaos_ops *clean
        = ops_from_lines(clean_lines, MRD_ARRAY_SIZE(clean_lines));
    struct chaos_history *h    = NULL;
    struct chaos_ops     *back = NULL;
    struct chaos_error    err;
    char                  path[256];
    uint64_t              t_prev = 0, t = 0;
    tmp_path(path, sizeof(path));
    assert_int_equal(chaos_history_open(path, &h), MRD_OK);
    for (size_t i = 0; i < chaos_ops_count(clean); i++) {
        assert_int_equal(
            chaos_history_append(h, chaos_ops_at(clean, i), &t), MRD_OK);
        assert_true(t >= t_prev);
        t_prev = t;
    }
    /* An invalid record writes nothing. */
    struct chaos_op bad = *chaos_ops_at(clean, 0);
    bad.id_count        = 0;
    assert_int_equal(chaos_history_append(h, &bad, NULL), MRD_EINVAL);
    assert_int_equal(chaos_history_close(h), MRD_OK);
    if (chaos_ops_load(path, NULL, &err, &back) != MRD_OK) {
        fail_msg("%s", err.text);
    }
    assert_int_equal(chaos_ops_count(back), chaos_ops_count(clean));
    for (size_t i = 0; i < chaos_ops_count(clean); i++) {
        const struct chaos_op *a = chaos_ops_at(clean, i);
        const struct chaos_op *b = chaos_ops_at(back, i);
        assert_true(a->process == b->process && a->type == b->type
            && a->f == b->f && a->ack == b->ack && a->has_dot == b->has_dot
            && a->dot.origin == b->dot.origin && a->dot.seq == b->dot.seq
            && a->has_pos == b->has_pos && a->pos == b->pos);
        assert_int_equal(a->stream == NULL, b->stream == NULL);
        assert_true(a->stream == NULL || strcmp(a->stream, b->stream) == 0);
        assert_int_equal(a->err == NULL, b->err == NULL);
        assert_int_equal(a->id_count, b->id_count);
        for (size_t k = 0; k < a->id_count; k++) {
            assert_string_equal(a->ids[k], b->ids[k]);
        }
        assert_int_equal(a->counter_count, b->counter_count);
        for (size_t k = 0; k < a->counter_count; k++) {
            assert_string_equal(a->counters[k].field, b->counters[k].field);
            assert_int_equal(a->counters[k].value, b->counters[k].value);
        }
        assert_int_equal(
            chaos_ops_completion(clean, i), chaos_ops_completion(back, i));
    }
    /* Names JSON must escape come back as they were. */
    char           *line   = NULL;
    const char     *ids[]  = { "q\"\\" };
    struct chaos_op quoted = { .type = CHAOS_TYPE_INVOKE,
        .f                           = CHAOS_F_APPEND,
        .stream                      = "tab\there \xc3\xa9",
        .ids                         = ids,
        .id_count                    = 1 };
    assert_int_equal(chaos_op_format(&quoted, &line), MRD_OK);
    assert_non_null(strstr(line, "\"tab\\there \xc3\xa9\""));
    assert_int_equal(chaos_ops_add_line(back, line, strlen(line), &err),
        MRD_EINVAL); /* t 0 goes backwards: parsed fine, refused in order */
    free(line);
    chaos_ops_free(back);
    chaos_ops_free(clean);
    unlink(path);
}

#define RT_THREADS 4
#define RT_PAIRS 50

struct rt_arg {
    struct chaos_history *h;
    uint32_t              p;
};

static void *
rt_thread(void *arg)
{
    struct rt_arg *a = arg;
    for (int i = 0; i < RT_PAIRS; i++) {
        char            id[32];
        const char     *ids[] = { id };
        struct chaos_op op    = { .process = a->p,
               .type                       = CHAOS_TYPE_INVOKE,
               .f                          = CHAOS_F_APPEND,
               .stream                     = "s",
               .ids                        = ids,
               .id_count                   = 1 };
        snprintf(id, sizeof(id), "p%u-%d", a->p, i);
        if (chaos_history_append(a->h, &op, NULL) != MRD_OK) {
            return arg;
        }
        op.type     = CHAOS_TYPE_OK;
        op.stream   = NULL;
        op.id_count = 0;
        if (chaos_history_append(a->h, &op, NULL) != MRD_OK) {
            return arg;
        }
    }
    return NULL;
}

/* Appends from several threads: whole lines, time order, valid pairing. */
static void
test_writer_threads(void **state)
{
    (void) state;
    struct chaos_history *h   = NULL;
    struct chaos_ops     *ops = NULL;
    struct chaos_error    err;
    pthread_t             th[RT_THREADS];
    struct rt_arg         args[RT_THREADS];
    char                  path[256];
    tmp_path(path, sizeof(path));
    assert_int_equal(chaos_history_open(path, &h), MRD_OK);
    for (uint32_t i = 0; i < RT_THREADS; i++) {
        args[i] = (struct rt_arg) { h, i };
        assert_int_equal(pthread_create(&th[i], NULL, rt_thread, &args[i]), 0);
    }
    for (uint32_t i = 0; i < RT_THREADS; i++) {
        void *rv = &err;
        pthread_join(th[i], &rv);
        assert_null(rv);
    }
    assert_int_equal(chaos_history_close(h), MRD_OK);
    if (chaos_ops_load(path, NULL, &err, &ops) != MRD_OK) {
        fail_msg("%s", err.text);
    }
    assert_int_equal(chaos_ops_count(ops), RT_THREADS * RT_PAIRS * 2);
    chaos_ops_free(ops);
    unlink(path);
    assert_int_equal(chaos_history_open("/nonexistent/dir/h", &h), MRD_EIO);
    assert_null(h);
}

static void
test_limits(void **state)
{
    (void) state;
    struct chaos_limits lim = chaos_limits_default();
    struct chaos_ops   *ops = NULL;
    struct chaos_error  err;
    char                path[256];
    tmp_path(path, sizeof(path));

    /* records_max */
    lim.records_max = 3;
    FILE *f         = fopen(path, "w");
    for (size_t i = 0; i < 4; i++) {
        fprintf(f, "%s\n", clean_lines[i]);
    }
    fclose(f);
    assert_int_equal(chaos_ops_load(path, &lim, &err, &ops), MRD_EFULL);
    assert_int_equal(err.line, 4);
    assert_non_null(strstr(err.text, "records_max"));
    lim.records_max = 4;
    assert_int_equal(chaos_ops_load(path, &lim, &err, &ops), MRD_OK);
    chaos_ops_free(ops);

    /* line_size_max: the first line is 89 bytes. */
    lim               = chaos_limits_default();
    lim.line_size_max = 64;
    assert_int_equal(chaos_ops_load(path, &lim, &err, &ops), MRD_EFULL);
    assert_int_equal(err.line, 1);
    assert_non_null(strstr(err.text, "line_size_max"));

    /* processes_max: p4 appears on line 19. */
    lim               = chaos_limits_default();
    lim.processes_max = 4;
    f                 = fopen(path, "w");
    for (size_t i = 0; i < MRD_ARRAY_SIZE(clean_lines); i++) {
        fprintf(f, "%s\n", clean_lines[i]);
    }
    fclose(f);
    assert_int_equal(chaos_ops_load(path, &lim, &err, &ops), MRD_EFULL);
    assert_int_equal(err.line, 19);
    assert_non_null(strstr(err.text, "processes_max"));

    /* bytes_max */
    lim           = chaos_limits_default();
    lim.bytes_max = 256;
    assert_int_equal(chaos_ops_load(path, &lim, &err, &ops), MRD_EFULL);
    assert_non_null(strstr(err.text, "bytes_max"));

    /* Limits outside their hard caps are refused up front. */
    lim             = chaos_limits_default();
    lim.records_max = CHAOS_RECORDS_HARD_MAX + 1;
    assert_int_equal(chaos_ops_new(&lim, &ops), MRD_EINVAL);
    lim.records_max = 0;
    assert_int_equal(chaos_limits_check(&lim), MRD_EINVAL);

    /* A read of more than CHAOS_OP_IDS_MAX ids. */
    size_t cap  = 16 * (CHAOS_OP_IDS_MAX + 2);
    char  *line = malloc(cap);
    size_t used = (size_t) snprintf(
        line, cap, "{\"t\":1,\"p\":0,\"type\":\"ok\",\"f\":\"read\",\"ids\":[");
    for (size_t i = 0; i <= CHAOS_OP_IDS_MAX; i++) {
        used += (size_t) snprintf(
            line + used, cap - used, "%s\"i%zu\"", i ? "," : "", i);
    }
    used += (size_t) snprintf(line + used, cap - used, "]}");
    assert_int_equal(chaos_ops_new(NULL, &ops), MRD_OK);
    assert_int_equal(chaos_ops_add_line(ops, line, used, &err), MRD_EPROTO);
    assert_non_null(strstr(err.text, "at most 10000 ids"));
    chaos_ops_free(ops);
    free(line);

    /* An id one byte too long. */
    char id[CHAOS_ID_SIZE_MAX + 2];
    memset(id, 'x', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    assert_false(chaos_id_valid(id));
    id[CHAOS_ID_SIZE_MAX] = '\0';
    assert_true(chaos_id_valid(id));

    /* More nodes than a replica mask holds. */
    struct chaos_node_final nodes[CHAOS_NODES_MAX + 1];
    memset(nodes, 0, sizeof(nodes));
    for (size_t i = 0; i < MRD_ARRAY_SIZE(nodes); i++) {
        nodes[i].node_id = i + 1;
    }
    struct chaos_final  fin = { .nodes = nodes, .node_count = CHAOS_NODES_MAX };
    struct chaos_report r;
    assert_int_equal(chaos_ops_new(NULL, &ops), MRD_OK);
    assert_int_equal(chaos_check_all(ops, &fin, &err, &r), MRD_OK);
    assert_true(chaos_report_passed(&r));
    fin.node_count = CHAOS_NODES_MAX + 1;
    assert_int_equal(chaos_check_all(ops, &fin, &err, &r), MRD_EINVAL);
    chaos_ops_free(ops);
    unlink(path);
}

static void
test_dot_parse(void **state)
{
    (void) state;
    mrd_dot dot;
    assert_true(chaos_dot_parse("18446744073709551615:0", &dot));
    assert_true(dot.origin == UINT64_MAX && dot.seq == 0);
    assert_false(chaos_dot_parse("18446744073709551616:0", &dot));
    assert_false(chaos_dot_parse(":1", &dot));
    assert_false(chaos_dot_parse("1:", &dot));
    assert_false(chaos_dot_parse("1:2:3", &dot));
    assert_false(chaos_dot_parse("-1:2", &dot));
    assert_false(chaos_dot_parse(" 1:2", &dot));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean),
        cmocka_unit_test(test_lost),
        cmocka_unit_test(test_unwritten),
        cmocka_unit_test(test_duplicate),
        cmocka_unit_test(test_origin_order),
        cmocka_unit_test(test_session_order),
        cmocka_unit_test(test_diverged),
        cmocka_unit_test(test_counter_bounds),
        cmocka_unit_test(test_convergence_time),
        cmocka_unit_test(test_report),
        cmocka_unit_test(test_bad_final),
        cmocka_unit_test(test_final_file),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_writer_threads),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_dot_parse),
    };
    return cmocka_run_group_tests_name("chaos_check", tests, NULL, NULL);
}
