/*
 * ae_sim_test.c: the anti-entropy core (replication/ae.h), first decision by
 * decision, then as a whole cluster simulated deterministically from one
 * seed (DESIGN.md, "Sans-I/O core, so a whole cluster can be simulated").
 *
 * Each simulated case draws 2 to 4 regions of 1 to 3 nodes, 2 or 3 shards
 * with 1 to 3 replicas per region (rendezvous order from the seed), and
 * runs them in simulated milliseconds. A node here is what meridiand will
 * be around the core: durable state per shard it holds (a log of records,
 * each with its dot, stream, HLC, causal past and CRDT ops with deps; the
 * shard's vector; its read position of every peer's log; each stream's
 * CRDT document), committed whole or not at all, and volatile state (pacing,
 * budgets, knowledge, liveness view) lost on a crash. Clients append events
 * with real CRDT ops (counter increments and deletes, LWW sets, set adds and
 * removes, flags) at random replicas: prepared and applied with
 * crdt_doc_prepare/crdt_doc_apply against the node's document, deps from
 * its context, then compacted at the stable vector, as node/state.c does.
 * Pulls, replies and hints travel as messages the network delays (links
 * between regions slower than inside one), and in three cases out of four
 * also drops, duplicates, reorders (delay spikes), partitions (both ways or
 * one way) for a while; nodes crash and restart, crash inside a commit
 * (the transaction is lost), and see some peers wrongly (two nodes may pull
 * one region, or none for a while). Then faults and writes stop, and the
 * cluster must converge within a bound. Checked:
 *
 *   - every replica of a shard holds every event of it written anywhere
 *     (all of them were acknowledged at their origin), once each;
 *   - per-origin order and causal order in every log: each event's causal
 *     past (the origin's vector when it wrote it) and its ops' deps come
 *     before it;
 *   - identical CRDT document bytes for each stream on all its replicas
 *     (after a final compaction at the stable vector);
 *   - stability, continuously: every stable vector a node computes is below
 *     every replica's real durable vector, and every event a node applies
 *     observed all its document has folded (what crdt_doc_compact needs);
 *     after quiescence every node's stable vector is the full vector;
 *   - ack levels: whenever ae_ack_level/ae_ack_decide claim region or global
 *     durability, the real durable state agrees, computed here separately;
 *     after quiescence every event is known held everywhere;
 *   - memory: no reply exceeds the grant its pull took;
 *   - link economy: in fault-free cases, events sent across region links
 *     per event per remote region, which must be 1 (reported).
 *
 * Environment: MRD_AE_CASES=<n> runs n cases (default 48), seeds
 * MRD_TEST_SEED, MRD_TEST_SEED + 1, ... (MRD_TEST_SEED otherwise comes
 * from the clock and is printed); a failure names its case's seed, and
 * MRD_TEST_SEED=<that> MRD_AE_CASES=1 replays it alone. MRD_AE_VERBOSE=1
 * prints each case.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "ae.h"
#include "crdt.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SIM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIM_SANITIZED 1
#endif
#endif
#ifdef SIM_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

/* ------------------------------------------------- direct tests: helpers -- */

static void
vv_set(struct crdt_vv *vv, const uint64_t *pairs, uint32_t n)
{
    crdt_vv_free(vv);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(
            crdt_vv_raise(vv, pairs[2 * i], pairs[2 * i + 1]), MRD_OK);
    }
}

/* Liveness for direct tests: a bitmap of down node ids. */
static bool
bits_live_cb(void *arg, uint64_t node)
{
    const uint64_t *down = arg;
    return (*down & (1ull << node)) == 0;
}

/* Three regions: r0 = {1, 2 | 3} (rf 2, 3 a candidate only), r1 = {4, 5},
 * r2 = {6}. */
static const uint64_t               t_r0[]      = { 1, 2, 3 };
static const uint64_t               t_r1[]      = { 4, 5 };
static const uint64_t               t_r2[]      = { 6 };
static const struct ae_region_place t_regions[] = {
    { 0, 2, 3, t_r0 },
    { 1, 2, 2, t_r1 },
    { 2, 1, 1, t_r2 },
};
static const struct ae_place t_place = { 0, 3, t_regions };

static void
test_place_check(void **state)
{
    (void) state;
    const char *why = NULL;
    assert_int_equal(ae_place_check(&t_place, &why), MRD_OK);
    uint32_t region = 99;
    assert_true(ae_place_has(&t_place, 5, &region));
    assert_int_equal(region, 1);
    assert_false(ae_place_has(&t_place, 3, NULL)); /* candidate only */

    static const uint64_t               dup[] = { 7, 1 };
    static const struct ae_region_place bad1[]
        = { { 0, 2, 3, t_r0 }, { 1, 2, 2, dup } };
    struct ae_place p = { 0, 2, bad1 };
    assert_int_equal(ae_place_check(&p, &why), MRD_EINVAL);
    assert_non_null(strstr(why, "twice"));
    static const struct ae_region_place bad2[]
        = { { 0, 2, 3, t_r0 }, { 0, 1, 1, t_r2 } };
    p.regions = bad2;
    assert_int_equal(ae_place_check(&p, &why), MRD_EINVAL);
    static const struct ae_region_place bad3[] = { { 0, 0, 3, t_r0 } };
    p = (struct ae_place) { 0, 1, bad3 };
    assert_int_equal(ae_place_check(&p, &why), MRD_EINVAL);
    static const struct ae_region_place bad4[] = { { 0, 3, 2, t_r0 } };
    p.regions                                  = bad4;
    assert_int_equal(ae_place_check(&p, &why), MRD_EINVAL);
    static const struct ae_region_place bad5[] = { { 32, 1, 1, t_r2 } };
    p.regions                                  = bad5;
    assert_int_equal(ae_place_check(&p, &why), MRD_EINVAL);
    p.region_count = 0;
    assert_int_equal(ae_place_check(&p, &why), MRD_EINVAL);
}

static void
test_sources(void **state)
{
    (void) state;
    struct ae_source src[AE_SOURCES_MAX];
    uint32_t         n;
    uint64_t         down = 0;

    /* Node 1 is r0's designated puller: node 2 locally, then 4 and 6, each
     * told to skip the other remote region and r0 (local pulls bring
     * those). */
    assert_int_equal(
        ae_sources(&t_place, 1, bits_live_cb, &down, src, &n), MRD_OK);
    assert_int_equal(n, 3);
    assert_true(src[0].node == 2 && !src[0].remote && src[0].skip_regions == 0);
    assert_true(src[1].node == 4 && src[1].remote && src[1].region == 1);
    assert_int_equal(src[1].skip_regions, (1u << 2) | 1u);
    assert_true(src[2].node == 6 && src[2].skip_regions == ((1u << 1) | 1u));
    /* Node 2 is not: only its local peer. */
    assert_int_equal(
        ae_sources(&t_place, 2, bits_live_cb, &down, src, &n), MRD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(src[0].node, 1);
    /* 1 down: 2 takes over the remote pulls. */
    down = 1ull << 1;
    assert_int_equal(
        ae_sources(&t_place, 2, bits_live_cb, &down, src, &n), MRD_OK);
    assert_int_equal(n, 2);
    assert_true(src[0].node == 4 && src[1].node == 6);
    /* 4 down: failover to 5 in r1. */
    down = 1ull << 4;
    assert_int_equal(
        ae_sources(&t_place, 1, bits_live_cb, &down, src, &n), MRD_OK);
    assert_int_equal(n, 3);
    assert_int_equal(src[1].node, 5);
    /* r2 has nobody live: its events come relayed through r1. */
    down = 1ull << 6;
    assert_int_equal(
        ae_sources(&t_place, 1, bits_live_cb, &down, src, &n), MRD_OK);
    assert_int_equal(n, 2);
    assert_int_equal(src[1].node, 4);
    assert_int_equal(src[1].skip_regions, 1u);
    /* A candidate that is not a replica pulls nothing. */
    assert_int_equal(
        ae_sources(&t_place, 3, bits_live_cb, &down, src, &n), MRD_ENOTFOUND);
    assert_int_equal(n, 0);
}

static void
test_hint_targets(void **state)
{
    (void) state;
    uint64_t t[AE_HINTS_MAX];
    uint32_t n;
    uint64_t down = 0;

    assert_int_equal(
        ae_hint_targets(&t_place, 1, bits_live_cb, &down, t, &n), MRD_OK);
    assert_int_equal(n, 3);
    assert_true(t[0] == 2 && t[1] == 4 && t[2] == 6);
    assert_int_equal(
        ae_hint_targets(&t_place, 2, bits_live_cb, &down, t, &n), MRD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(t[0], 1);
    /* 5 is not r1's designated puller: it hints 4 only. */
    assert_int_equal(
        ae_hint_targets(&t_place, 5, bits_live_cb, &down, t, &n), MRD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(t[0], 4);
    down = (1ull << 4) | (1ull << 1);
    assert_int_equal(
        ae_hint_targets(&t_place, 5, bits_live_cb, &down, t, &n), MRD_OK);
    assert_int_equal(n, 2);
    assert_true(t[0] == 2 && t[1] == 6);
}

/* A log for ae_serve: dots at log seqs 1..n. */
struct t_log {
    const struct crdt_dot *dot;
    uint32_t               n;
    uint32_t               pos;
    uint32_t               emitted[16];
    uint32_t               nemit;
    bool                   endless; /* covered entries for ever */
    uint32_t               fail_at; /* emit refuses this log seq */
};

static int
t_log_next_cb(void *arg, struct ae_log_entry *out)
{
    struct t_log *l = arg;
    if (l->endless) {
        l->pos++;
        *out = (struct ae_log_entry) { l->pos, { 1, l->pos }, 10 };
        return MRD_OK;
    }
    if (l->pos >= l->n) {
        return MRD_ENOTFOUND;
    }
    *out = (struct ae_log_entry) { l->pos + 1, l->dot[l->pos], 100 };
    l->pos++;
    return MRD_OK;
}

static uint32_t
t_region_of_cb(void *arg, uint64_t node)
{
    (void) arg;
    return node >= 10 ? AE_REGION_NONE : (uint32_t) (node / 3);
}

static int
t_emit_cb(void *arg, const struct ae_log_entry *e)
{
    struct t_log *l = arg;
    if (e->log_seq == l->fail_at) {
        return MRD_ENOMEM;
    }
    l->emitted[l->nemit++] = (uint32_t) e->log_seq;
    return MRD_OK;
}

static void
t_serve(struct t_log *l, uint64_t after, uint32_t count, uint64_t bytes,
    uint32_t skip, const struct crdt_vv *vv, struct ae_serve_rep *rep,
    int rc_want)
{
    struct ae_serve_req req = { after, count, bytes, skip, vv };
    struct ae_serve_cb  cb  = { t_log_next_cb, t_region_of_cb, t_emit_cb, l };
    l->pos                  = (uint32_t) after;
    l->nemit                = 0;
    assert_int_equal(ae_serve(&req, &cb, rep), rc_want);
}

static void
test_serve(void **state)
{
    (void) state;
    /* Origins 1, 2 in region 0, 4 in region 1, 7 in region 2, 11 nowhere. */
    static const struct crdt_dot dots[] = { { 1, 1 }, { 4, 1 }, { 1, 2 },
        { 7, 1 }, { 2, 1 }, { 11, 1 }, { 4, 2 } };
    struct t_log                 l      = { dots, 7, 0, { 0 }, 0, false, 0 };
    struct ae_serve_rep          rep;
    struct crdt_vv               vv;
    crdt_vv_init(&vv);

    /* Everything, in log order. */
    t_serve(&l, 0, 100, 1u << 20, 0, &vv, &rep, MRD_OK);
    assert_true(rep.end && !rep.blocked && rep.count == 7 && rep.scanned == 7);
    assert_int_equal(rep.bytes, 700);
    /* The vector filters; covered entries are scanned past. */
    vv_set(&vv, (const uint64_t[]) { 1, 2, 4, 1 }, 2);
    t_serve(&l, 0, 100, 1u << 20, 0, &vv, &rep, MRD_OK);
    assert_int_equal(rep.count, 4);
    assert_true(l.emitted[0] == 4 && l.emitted[1] == 5 && l.emitted[3] == 7);
    /* Count: stops with the next entry unscanned. */
    t_serve(&l, 0, 2, 1u << 20, 0, &vv, &rep, MRD_OK);
    assert_true(rep.count == 2 && rep.scanned == 5 && !rep.end);
    /* Bytes: one event always goes, the second would pass the limit. */
    t_serve(&l, 0, 100, 150, 0, &vv, &rep, MRD_OK);
    assert_true(rep.count == 1 && rep.scanned == 4 && !rep.end);
    t_serve(&l, 0, 100, 1, 0, &vv, &rep, MRD_OK);
    assert_int_equal(rep.count, 1);
    /* Skipping region 2 (origin 7): stop before it, never past it. */
    t_serve(&l, 0, 100, 1u << 20, 1u << 2, &vv, &rep, MRD_OK);
    assert_true(rep.blocked && !rep.end && rep.count == 0);
    assert_int_equal(rep.scanned, 3);
    assert_true(rep.blocked_on.origin == 7 && rep.blocked_on.seq == 1);
    /* Blocked on what we still lack: wait; on what we got meanwhile (our
     * vector was a round trip old): again at once. */
    assert_int_equal(
        ae_pull_outcome(false, true, rep.blocked_on, &vv), AE_PULLED_BLOCKED);
    assert_int_equal(
        ae_pull_outcome(true, false, rep.blocked_on, &vv), AE_PULLED_END);
    assert_int_equal(
        ae_pull_outcome(false, false, rep.blocked_on, &vv), AE_PULLED_MORE);
    /* Once the asker holds it, the scan goes on; an origin of no region is
     * never skipped. */
    vv_set(&vv, (const uint64_t[]) { 1, 2, 4, 1, 7, 1 }, 3);
    assert_int_equal(
        ae_pull_outcome(false, true, rep.blocked_on, &vv), AE_PULLED_MORE);
    t_serve(&l, 0, 100, 1u << 20, (1u << 2) | (1u << 3), &vv, &rep, MRD_OK);
    assert_true(rep.end && !rep.blocked && rep.count == 3);
    /* Skipping region 1 with (4, 2) uncovered: blocked at the last entry. */
    t_serve(&l, 3, 100, 1u << 20, 1u << 1, &vv, &rep, MRD_OK);
    assert_true(rep.blocked && rep.count == 2 && rep.scanned == 6);
    /* After the end: nothing, end. */
    t_serve(&l, 7, 100, 1u << 20, 0, &vv, &rep, MRD_OK);
    assert_true(rep.end && rep.count == 0 && rep.scanned == 7);
    /* Errors. */
    t_serve(&l, 0, 0, 1u << 20, 0, &vv, &rep, MRD_EINVAL);
    l.fail_at = 5;
    t_serve(&l, 0, 100, 1u << 20, 0, &vv, &rep, MRD_ENOMEM);
    l.fail_at = 0;
    /* A log that covers everything for ever: the scan limit ends it. */
    l.endless = true;
    vv_set(&vv, (const uint64_t[]) { 1, UINT64_MAX }, 1);
    t_serve(&l, 0, 100, 1u << 20, 0, &vv, &rep, MRD_OK);
    assert_true(!rep.end && rep.count == 0 && rep.scanned == AE_SERVE_SCAN_MAX);
    crdt_vv_free(&vv);
}

static int
t_batch(const struct crdt_vv *vv, uint64_t after, uint64_t scanned,
    const struct ae_batch_item *it, uint32_t n, uint8_t *verdict,
    uint32_t *appends, const char **why)
{
    struct ae_batch_req req = { 9, 1, after, scanned, 10, vv };
    return ae_batch_check(&req, it, n, verdict, appends, why);
}

static void
test_batch_check(void **state)
{
    (void) state;
    struct crdt_vv vv;
    uint8_t        v[8];
    uint32_t       appends;
    const char    *why = NULL;
    crdt_vv_init(&vv);
    vv_set(&vv, (const uint64_t[]) { 1, 5, 9, 3 }, 2);

    /* Held ones skipped, new ones appended, our own lost one flagged. */
    struct ae_batch_item ok[]
        = { { 11, { 1, 4 }, 1 }, { 12, { 1, 7 }, 1 }, { 14, { 2, 1 }, 1 },
              { 15, { 9, 3 }, 1 }, { 16, { 9, 4 }, 1 }, { 20, { 1, 9 }, 1 } };
    assert_int_equal(t_batch(&vv, 10, 20, ok, 6, v, &appends, &why), MRD_OK);
    assert_int_equal(appends, 4);
    assert_true(v[0] == AE_SKIP && v[1] == AE_APPEND && v[2] == AE_APPEND);
    assert_true(v[3] == AE_SKIP && v[4] == AE_APPEND_OWN && v[5] == AE_APPEND);
    /* An origin's events out of order: 7 then 6, both new. */
    struct ae_batch_item order[] = { { 11, { 1, 7 }, 1 }, { 12, { 1, 6 }, 1 } };
    assert_int_equal(
        t_batch(&vv, 10, 20, order, 2, v, &appends, &why), MRD_EPROTO);
    assert_non_null(strstr(why, "out of order"));
    assert_int_equal(appends, 0);
    /* The same new dot twice. */
    struct ae_batch_item twice[] = { { 11, { 2, 7 }, 1 }, { 12, { 2, 7 }, 1 } };
    assert_int_equal(
        t_batch(&vv, 10, 20, twice, 2, v, &appends, &why), MRD_EPROTO);
    /* But an old one twice is only two skips. */
    struct ae_batch_item old[] = { { 11, { 1, 3 }, 1 }, { 12, { 1, 3 }, 1 } };
    assert_int_equal(t_batch(&vv, 10, 20, old, 2, v, &appends, &why), MRD_OK);
    assert_int_equal(appends, 0);
    /* Shape. */
    struct ae_batch_item shard[] = { { 11, { 2, 7 }, 0 } };
    assert_int_equal(
        t_batch(&vv, 10, 20, shard, 1, v, &appends, &why), MRD_EPROTO);
    assert_non_null(strstr(why, "shard"));
    struct ae_batch_item nodot[] = { { 11, { 0, 7 }, 1 } };
    assert_int_equal(
        t_batch(&vv, 10, 20, nodot, 1, v, &appends, &why), MRD_EPROTO);
    struct ae_batch_item seqs[] = { { 12, { 2, 7 }, 1 }, { 12, { 2, 8 }, 1 } };
    assert_int_equal(
        t_batch(&vv, 10, 20, seqs, 2, v, &appends, &why), MRD_EPROTO);
    assert_int_equal(
        t_batch(&vv, 12, 20, seqs, 1, v, &appends, &why), MRD_EPROTO);
    assert_int_equal(
        t_batch(&vv, 10, 11, seqs, 1, v, &appends, &why), MRD_EPROTO);
    assert_int_equal(
        t_batch(&vv, 10, 9, seqs, 0, v, &appends, &why), MRD_EPROTO);
    assert_non_null(strstr(why, "backwards"));
    assert_int_equal(
        t_batch(&vv, 10, 20, ok, 11, v, &appends, &why), MRD_EPROTO);
    crdt_vv_free(&vv);
}

/* Two regions: r0 = {1}, r1 = {2, 3}. */
static const uint64_t               k_r0[] = { 1 };
static const uint64_t               k_r1[] = { 2, 3 };
static const struct ae_region_place k_regions[]
    = { { 0, 1, 1, k_r0 }, { 1, 2, 2, k_r1 } };
static const struct ae_place k_place = { 0, 2, k_regions };

static void
t_know(struct ae_know *k, const uint64_t *pairs, uint32_t n, uint64_t node)
{
    struct crdt_vv vv;
    crdt_vv_init(&vv);
    vv_set(&vv, pairs, n);
    if (node == 0) {
        assert_int_equal(ae_know_own(k, &vv), MRD_OK);
    } else {
        assert_int_equal(ae_know_report(k, &k_place, node, &vv), MRD_OK);
    }
    crdt_vv_free(&vv);
}

static void
t_stable_is(const struct ae_know *k, const uint64_t *pairs, uint32_t n)
{
    struct crdt_vv st, want;
    crdt_vv_init(&st);
    crdt_vv_init(&want);
    vv_set(&want, pairs, n);
    assert_int_equal(ae_know_stable(k, &k_place, &st), MRD_OK);
    assert_true(crdt_vv_equal(&st, &want));
    crdt_vv_free(&st);
    crdt_vv_free(&want);
}

static void
test_know_stable(void **state)
{
    (void) state;
    static struct ae_know k;
    ae_know_init(&k, 3);

    /* Nobody heard from: nothing is stable. */
    t_know(&k, (const uint64_t[]) { 1, 1, 2, 1 }, 2, 0);
    t_stable_is(&k, NULL, 0);
    /* Node 1 holds (2, 1), but also its own seq 2, which we lack: events of
     * node 1 up to 2 may predate (2, 1) there, so its report is no witness
     * yet. Minimum over latest reports would say {1: 1, 2: 1}. */
    t_know(&k, (const uint64_t[]) { 1, 2, 2, 1 }, 2, 1);
    t_know(&k, (const uint64_t[]) { 1, 1, 2, 1 }, 2, 2);
    t_stable_is(&k, NULL, 0);
    /* An older report of node 1 arrives late (relayed): it is a witness. */
    t_know(&k, (const uint64_t[]) { 1, 1 }, 1, 1);
    t_stable_is(&k, (const uint64_t[]) { 1, 1 }, 1);
    /* We get (1, 2): the pending report becomes the witness. */
    t_know(&k, (const uint64_t[]) { 1, 2, 2, 1 }, 2, 0);
    t_stable_is(&k, (const uint64_t[]) { 1, 1, 2, 1 }, 2);
    t_know(&k, (const uint64_t[]) { 1, 2, 2, 1 }, 2, 2);
    t_stable_is(&k, (const uint64_t[]) { 1, 2, 2, 1 }, 2);
    /* Under steady writes each report of node 1 is ahead of us: the oldest
     * waits in `pending` and becomes the witness as soon as we catch up
     * with it, although a newer one has come meanwhile. */
    t_know(&k, (const uint64_t[]) { 1, 3, 2, 1 }, 2, 1);
    t_know(&k, (const uint64_t[]) { 1, 4, 2, 2 }, 2, 1);
    t_know(&k, (const uint64_t[]) { 1, 3, 2, 1 }, 2, 0);
    t_stable_is(&k, (const uint64_t[]) { 1, 2, 2, 1 }, 2);
    t_know(&k, (const uint64_t[]) { 1, 3, 2, 1 }, 2, 2);
    t_stable_is(&k, (const uint64_t[]) { 1, 3, 2, 1 }, 2); /* w1 = {1: 3} */
    t_know(&k, (const uint64_t[]) { 1, 4, 2, 2 }, 2, 0);
    t_stable_is(&k, (const uint64_t[]) { 1, 3, 2, 1 }, 2);
    /* Reports about ourselves or non-replicas change nothing; old reports
     * do not lower anything. */
    t_know(&k, (const uint64_t[]) { 1, 9 }, 1, 3);
    t_know(&k, (const uint64_t[]) { 1, 9 }, 1, 7);
    t_know(&k, (const uint64_t[]) { 1, 1 }, 1, 2);
    t_stable_is(&k, (const uint64_t[]) { 1, 3, 2, 1 }, 2);

    /* An origin that is no replica (9) blocks stability until frozen with
     * all its events here. */
    t_know(&k, (const uint64_t[]) { 1, 2, 2, 1, 9, 4 }, 3, 0);
    t_stable_is(&k, NULL, 0);
    assert_int_equal(ae_know_freeze(&k, 9, 5), MRD_OK);
    t_stable_is(&k, NULL, 0);
    t_know(&k, (const uint64_t[]) { 1, 2, 2, 1, 9, 5 }, 3, 0);
    t_stable_is(&k, (const uint64_t[]) { 1, 2, 2, 1 }, 2);
    /* Freezing a replica drops its row; a placement that lost it leaves
     * it out. */
    static const uint64_t               r1b[] = { 3 };
    static const struct ae_region_place rb[]
        = { { 0, 1, 1, k_r0 }, { 1, 1, 1, r1b } };
    struct ae_place pb = { 0, 2, rb };
    assert_int_equal(ae_know_freeze(&k, 2, 1), MRD_OK);
    struct crdt_vv st;
    crdt_vv_init(&st);
    assert_int_equal(ae_know_stable(&k, &pb, &st), MRD_OK);
    assert_int_equal(crdt_vv_get(&st, 2), 1);
    assert_int_equal(ae_know_stable(&k, &t_place, &st), MRD_ENOTFOUND);
    crdt_vv_free(&st);
    ae_know_fini(&k);
}

static void
test_ack(void **state)
{
    (void) state;
    static struct ae_know k;
    struct ae_ack         ack;
    ae_know_init(&k, 3);

    t_know(&k, (const uint64_t[]) { 3, 4 }, 1, 0);
    ae_ack_level(&k, &k_place, (struct crdt_dot) { 3, 4 }, &ack);
    assert_true(ack.held[1] == 1 && ack.held[0] == 0 && ack.replicas[1] == 2);
    assert_int_equal(ae_ack_decide(&ack, 1, 1, 2), AE_ACK_REGION);
    assert_int_equal(ae_ack_decide(&ack, 1, 2, 1), AE_ACK_LOCAL);
    assert_int_equal(ae_ack_decide(&ack, 1, 1, 1), AE_ACK_GLOBAL);
    t_know(&k, (const uint64_t[]) { 3, 4 }, 1, 1);
    ae_ack_level(&k, &k_place, (struct crdt_dot) { 3, 4 }, &ack);
    assert_int_equal(ae_ack_decide(&ack, 1, 1, 2), AE_ACK_GLOBAL);
    /* Global needs region first: levels are ordered. */
    assert_int_equal(ae_ack_decide(&ack, 1, 2, 2), AE_ACK_LOCAL);
    t_know(&k, (const uint64_t[]) { 3, 5 }, 1, 2);
    ae_ack_level(&k, &k_place, (struct crdt_dot) { 3, 4 }, &ack);
    assert_int_equal(ack.held[1], 2);
    assert_int_equal(ae_ack_decide(&ack, 1, 2, 2), AE_ACK_GLOBAL);
    assert_int_equal(ae_ack_decide(&ack, 1, 3, 1), AE_ACK_LOCAL);
    assert_int_equal(ae_ack_decide(&ack, 1, 2, 3), AE_ACK_REGION);
    ae_ack_level(&k, &k_place, (struct crdt_dot) { 3, 6 }, &ack);
    assert_int_equal(ae_ack_decide(&ack, 1, 1, 1), AE_ACK_NONE);
    ae_know_fini(&k);
}

static void
test_digest(void **state)
{
    (void) state;
    static struct ae_know a, b;
    struct proto_buf      buf;
    const char           *why = NULL;
    ae_know_init(&a, 3);
    ae_know_init(&b, 1);
    proto_buf_init(&buf, 1u << 20);

    t_know(&a, (const uint64_t[]) { 1, 7, 2, 3, 3, 9 }, 3, 0);
    t_know(&a, (const uint64_t[]) { 1, 9, 2, 3, 3, 5 }, 3, 1);
    t_know(&a, (const uint64_t[]) { 1, 7, 2, 4, 3, 200 }, 3, 2);
    assert_int_equal(ae_digest_encode(&a, &k_place, 0, &buf), MRD_OK);
    assert_int_equal(
        ae_digest_absorb(&b, &k_place, buf.data, buf.len, &why), MRD_OK);
    /* b (node 1) learnt 2's and 3's vectors, ignored its own row. */
    struct ae_ack ack;
    ae_ack_level(&b, &k_place, (struct crdt_dot) { 3, 200 }, &ack);
    assert_int_equal(ack.held[1], 1);
    ae_ack_level(&b, &k_place, (struct crdt_dot) { 3, 9 }, &ack);
    assert_int_equal(ack.held[1], 2);
    ae_ack_level(&b, &k_place, (struct crdt_dot) { 1, 8 }, &ack);
    assert_int_equal(ack.held[1], 0);

    /* Every truncation and a few corruptions are refused, and teach
     * nothing. */
    static struct ae_know c;
    ae_know_init(&c, 1);
    for (size_t len = 0; len < buf.len; len++) {
        assert_int_not_equal(
            ae_digest_absorb(&c, &k_place, buf.data, len, &why), MRD_OK);
        assert_int_equal(c.row_count, 0);
    }
    uint8_t bad[64];
    memcpy(bad, buf.data, buf.len);
    bad[1] = 2; /* format */
    assert_int_equal(
        ae_digest_absorb(&c, &k_place, bad, buf.len, &why), MRD_EPROTO);
    static const uint8_t unsorted[]
        = { 0x93, 0x01, 0x94, 0x02, 0x01, 0x01, 0x01, 0x90 };
    assert_int_equal(
        ae_digest_absorb(&c, &k_place, unsorted, sizeof(unsorted), &why),
        MRD_EPROTO);
    static const uint8_t zero[] = { 0x93, 0x01, 0x92, 0x01, 0x00, 0x90 };
    assert_int_equal(
        ae_digest_absorb(&c, &k_place, zero, sizeof(zero), &why), MRD_EPROTO);
    static const uint8_t rows_dup[]
        = { 0x93, 0x01, 0x90, 0x94, 0x02, 0x90, 0x02, 0x90 };
    assert_int_equal(
        ae_digest_absorb(&c, &k_place, rows_dup, sizeof(rows_dup), &why),
        MRD_EPROTO);
    static const uint8_t empty[] = { 0x93, 0x01, 0x90, 0x90 };
    assert_int_equal(
        ae_digest_absorb(&c, &k_place, empty, sizeof(empty), &why), MRD_OK);
    assert_int_equal(c.row_count, 0);
    proto_buf_fini(&buf);
    ae_know_fini(&a);
    ae_know_fini(&b);
    ae_know_fini(&c);
}

/* The largest placement, every row different: a digest stays within its
 * bound, always carries the sender's row, and rotation carries every row
 * in turn. */
static void
test_digest_bound(void **state)
{
    (void) state;
    static uint64_t               ids[AE_REGIONS_MAX][AE_RF_MAX];
    static struct ae_region_place rp[AE_REGIONS_MAX];
    static struct ae_know         a, b;
    struct ae_place               place = { 0, AE_REGIONS_MAX, rp };
    struct crdt_vv                vv;
    struct proto_buf              buf;
    const char                   *why = NULL;

    for (uint32_t r = 0; r < AE_REGIONS_MAX; r++) {
        for (uint32_t i = 0; i < AE_RF_MAX; i++) {
            ids[r][i] = 1 + r * AE_RF_MAX + i;
        }
        rp[r] = (struct ae_region_place) { r, AE_RF_MAX, AE_RF_MAX, ids[r] };
    }
    assert_int_equal(ae_place_check(&place, &why), MRD_OK);
    ae_know_init(&a, 1);
    ae_know_init(&b, 2);
    crdt_vv_init(&vv);
    for (uint64_t node = 1; node <= AE_REPLICAS_MAX; node++) {
        crdt_vv_free(&vv);
        for (uint64_t o = 1; o <= AE_REPLICAS_MAX; o++) {
            assert_int_equal(
                crdt_vv_raise(&vv, o, 1000000 + node * 977 + o * 131), MRD_OK);
        }
        if (node == 1) {
            assert_int_equal(ae_know_own(&a, &vv), MRD_OK);
        } else {
            assert_int_equal(ae_know_report(&a, &place, node, &vv), MRD_OK);
        }
    }
    proto_buf_init(&buf, 1u << 20);
    for (uint32_t round = 0; round < 64 && b.row_count < AE_REPLICAS_MAX - 1;
         round++) {
        proto_buf_reset(&buf);
        assert_int_equal(ae_digest_encode(&a, &place, round * 7, &buf), MRD_OK);
        assert_true(buf.len <= AE_DIGEST_SIZE_MAX);
        assert_int_equal(
            ae_digest_absorb(&b, &place, buf.data, buf.len, &why), MRD_OK);
        assert_true(b.row_count > 0 && b.row_count < AE_REPLICAS_MAX);
    }
    /* Every row of a (a's own as node 1) reached b, exactly: b's own row
     * (2) is ignored, so b has a row for everyone else. */
    assert_int_equal(b.row_count, AE_REPLICAS_MAX - 1);
    struct ae_ack ack;
    for (uint64_t node = 1; node <= AE_REPLICAS_MAX; node += 37) {
        uint64_t seq = 1000000 + node * 977 + 5 * 131;
        ae_ack_level(&b, &place, (struct crdt_dot) { 5, seq }, &ack);
        uint32_t held = 0;
        for (uint32_t r = 0; r < AE_REGIONS_MAX; r++) {
            held += ack.held[r];
        }
        /* Nodes node..224 hold it, minus b itself (node 2) which does not. */
        assert_int_equal(held, AE_REPLICAS_MAX - node + 1 - (node <= 2));
    }
    proto_buf_fini(&buf);
    crdt_vv_free(&vv);
    ae_know_fini(&a);
    ae_know_fini(&b);
}

static void
test_pace(void **state)
{
    (void) state;
    const struct ae_pace_cfg cfg = AE_PACE_CFG_DEFAULT;
    struct ae_pace           p;
    struct ae_source         remote = { 4, 1, true, 1u << 2 };
    struct ae_source         local  = { 2, 0, false, 0 };

    ae_pace_init(&p, &cfg, 1000);
    assert_true(ae_pace_due(&p, 1000));
    ae_pace_sent(&p, 1000);
    assert_false(ae_pace_due(&p, 1000));
    assert_int_equal(ae_pace_wake_ms(&p, &cfg), 1000 + AE_PULL_TIMEOUT_MS);
    /* Idle: 10, 20, 40 ... up to 1000 ms. */
    ae_pace_done(&p, &cfg, 1005, AE_PULLED_END, false);
    assert_int_equal(p.due_ms, 1015);
    ae_pace_sent(&p, 1015);
    ae_pace_done(&p, &cfg, 1015, AE_PULLED_END, false);
    assert_int_equal(p.due_ms, 1035);
    for (int i = 0; i < 10; i++) {
        ae_pace_sent(&p, p.due_ms);
        ae_pace_done(&p, &cfg, p.due_ms, AE_PULLED_END, false);
    }
    uint64_t last = p.due_ms;
    ae_pace_sent(&p, last);
    ae_pace_done(&p, &cfg, last, AE_PULLED_END, false);
    assert_int_equal(p.due_ms - last, AE_PULL_IDLE_MS_MAX);
    /* A hint makes it due at once, and resets the idle wait. */
    ae_pace_hint(&p, &cfg, last + 1);
    assert_true(ae_pace_due(&p, last + 1));
    /* A hint during a pull: due as soon as it ends. */
    ae_pace_sent(&p, last + 1);
    ae_pace_hint(&p, &cfg, last + 2);
    ae_pace_done(&p, &cfg, last + 3, AE_PULLED_END, false);
    assert_true(ae_pace_due(&p, last + 3));
    /* More: at once. */
    ae_pace_sent(&p, last + 3);
    ae_pace_done(&p, &cfg, last + 4, AE_PULLED_MORE, true);
    assert_true(ae_pace_due(&p, last + 4));
    /* Failures: 100, 200, 400 ms; failing after three until the retry. */
    uint64_t t = 5000;
    for (uint32_t i = 0; i < AE_PULL_FAILURES_MAX; i++) {
        assert_false(ae_pace_failing(&p, &cfg, t));
        ae_pace_sent(&p, t);
        assert_false(ae_pace_timed_out(&p, &cfg, t + AE_PULL_TIMEOUT_MS - 1));
        assert_true(ae_pace_timed_out(&p, &cfg, t + AE_PULL_TIMEOUT_MS));
        t += AE_PULL_TIMEOUT_MS;
        ae_pace_done(&p, &cfg, t, AE_PULL_FAILED, false);
        assert_int_equal(p.due_ms, t + (AE_PULL_RETRY_MS_MIN << i));
    }
    assert_true(ae_pace_failing(&p, &cfg, t));
    assert_false(ae_pace_failing(&p, &cfg, p.due_ms)); /* probe time */
    /* A hint from the source cuts the backoff short; an answer resets. */
    ae_pace_hint(&p, &cfg, t + 1);
    assert_true(ae_pace_due(&p, t + 1));
    ae_pace_sent(&p, t + 1);
    ae_pace_done(&p, &cfg, t + 2, AE_PULLED_BLOCKED, false);
    assert_int_equal(p.failures, 0);
    assert_false(ae_pace_failing(&p, &cfg, t + 2));
    /* Blocked: the skip set holds until the stall; progress retries. */
    assert_int_equal(ae_pull_skip(&remote, &p, &cfg, t + 2), 1u << 2);
    assert_int_equal(ae_pull_skip(&local, &p, &cfg, t + 2), 0);
    assert_false(ae_pace_due(&p, t + 3));
    ae_pace_progress(&p, t + 3);
    assert_true(ae_pace_due(&p, t + 3));
    ae_pace_sent(&p, t + 3);
    ae_pace_done(&p, &cfg, t + 4, AE_PULLED_BLOCKED, false);
    assert_false(ae_pace_stalled(&p, &cfg, t + 2 + AE_PULL_STALL_MS - 1));
    assert_true(ae_pace_stalled(&p, &cfg, t + 2 + AE_PULL_STALL_MS));
    /* Progress while blocked restarts the stall clock. */
    ae_pace_sent(&p, t + 10);
    ae_pace_done(&p, &cfg, t + 11, AE_PULLED_BLOCKED, true);
    assert_false(ae_pace_stalled(&p, &cfg, t + 2 + AE_PULL_STALL_MS));
    assert_true(ae_pace_stalled(&p, &cfg, t + 11 + AE_PULL_STALL_MS));
    assert_int_equal(
        ae_pull_skip(&remote, &p, &cfg, t + 2 + AE_PULL_STALL_MS), 1u << 2);
    assert_int_equal(
        ae_pull_skip(&remote, &p, &cfg, t + 11 + AE_PULL_STALL_MS), 0);
    ae_pace_sent(&p, t + 5000);
    ae_pace_done(&p, &cfg, t + 5001, AE_PULLED_END, false);
    assert_false(ae_pace_stalled(&p, &cfg, t + 9999));
    ae_pace_progress(&p, t + 5002); /* not blocked: no effect */
    assert_false(ae_pace_due(&p, t + 5002));
}

static void
test_budget(void **state)
{
    (void) state;
    struct ae_budget b;
    uint64_t         g1, g2, g3;

    ae_budget_init(&b, AE_INFLIGHT_BYTES_DEFAULT, AE_INFLIGHT_BYTES_MIN);
    for (int i = 0; i < 4; i++) {
        assert_true(ae_budget_take(&b, &g1));
        assert_int_equal(g1, AE_PULL_BYTES_MAX);
    }
    assert_false(ae_budget_take(&b, &g1));
    ae_budget_give(&b, AE_PULL_BYTES_MAX);
    /* A quarter each, or grant_min when that is more; never more than
     * what is free. */
    ae_budget_init(&b, 1000, 300);
    assert_true(ae_budget_take(&b, &g1));
    assert_int_equal(g1, 300);
    assert_true(ae_budget_take(&b, &g2));
    assert_true(ae_budget_take(&b, &g3));
    assert_int_equal(b.used, 900);
    assert_false(ae_budget_take(&b, &g3));
    ae_budget_give(&b, g1);
    b.used = 650;
    assert_true(ae_budget_take(&b, &g2));
    assert_int_equal(g2, 300);
    assert_false(ae_budget_take(&b, &g3));
    ae_budget_give(&b, g2);
    assert_int_equal(b.used, 650);
    ae_budget_init(&b, 4000, 300);
    assert_true(ae_budget_take(&b, &g1));
    assert_int_equal(g1, 1000);
    b.used = 3500;
    assert_true(ae_budget_take(&b, &g1));
    assert_int_equal(g1, 500);
}

/* ==================================================== the simulation === */

#define SIM_REGIONS_MAX 4u
#define SIM_PER_REGION_MAX 3u
#define SIM_NODES_MAX (SIM_REGIONS_MAX * SIM_PER_REGION_MAX)
#define SIM_SHARDS_MAX 3u
#define SIM_STREAMS 6u /* stream i lives in shard i % shards */
#define SIM_RECS_MAX 400u /* events written in one case */
#define SIM_ACKS_MAX 32u /* own events a node follows until global */
#define SIM_OPS_MAX 3u /* ops on one generated event */
/* Every record is smaller: it is the budgets' grant_min, so no reply can
 * exceed its grant. */
#define SIM_REC_SIZE_MAX 1024u
/* Simulated time allowed after healing before convergence is a failure:
 * with idle pulls backing off to 1 s and failure retries to 2 s, a few
 * rounds of knowledge exchange fit many times over. */
#define SIM_CONVERGE_MS 60000u
#define SIM_DEFAULT_CASES 48u
/* Fault-free seeds: the slowest an event may take to reach every replica.
 * Measured up to ~710 ms over ~600 such seeds (p99 350-490 ms) with 15-75
 * ms links; a canary for broken hints or pacing, with room for unlucky
 * seeds. */
#define SIM_LAG_MS_MAX 2000u

struct sim_rec {
    struct crdt_dot dot;
    uint32_t        shard;
    uint32_t        stream;
    uint32_t        region; /* the origin's */
    uint64_t        hlc;
    uint32_t        size;
    uint8_t        *ops; /* crdt_ops_encode output, or NULL */
    uint32_t        ops_len;
    struct crdt_vv  deps; /* what its ops observed */
    struct crdt_vv  past; /* the origin's shard vector when it wrote it */
    uint32_t        copies[SIM_REGIONS_MAX]; /* sent into each region */
    uint64_t        commit_ms; /* at its origin */
    uint64_t        everywhere_ms; /* when its last replica got it */
    uint32_t        held; /* replicas holding it */
};

/* One node's durable copy of one shard. */
struct sim_replica {
    uint32_t       *log; /* record indices; log seq = index + 1 */
    uint32_t        n;
    uint32_t        cap;
    struct crdt_vv  vv;
    uint64_t        after[SIM_NODES_MAX + 1]; /* read position per peer */
    struct crdt_doc doc[SIM_STREAMS];
};

struct sim_node {
    uint64_t id;
    uint32_t region;
    bool     up;
    uint64_t restart_ms;
    /* Durable. */
    uint64_t           origin_seq;
    uint64_t           hlc;
    bool               holds[SIM_SHARDS_MAX];
    struct sim_replica rep[SIM_SHARDS_MAX];
    /* Volatile: lost on a crash. */
    struct ae_know   know[SIM_SHARDS_MAX];
    struct ae_pace   pace[SIM_SHARDS_MAX][SIM_NODES_MAX + 1];
    bool             pace_on[SIM_SHARDS_MAX][SIM_NODES_MAX + 1];
    uint64_t         nonce[SIM_SHARDS_MAX][SIM_NODES_MAX + 1];
    uint64_t         grant[SIM_SHARDS_MAX][SIM_NODES_MAX + 1];
    struct ae_budget budget[SIM_NODES_MAX + 1];
    uint32_t         rotate;
    uint32_t         round;
    uint32_t         acks[SIM_ACKS_MAX];
    uint32_t         nacks;
    bool             learnt; /* knowledge changed since acks were checked */
    uint64_t         wake_ms;
    /* The fault model's, not the node's: its view of a peer is wrong until
     * then. */
    uint64_t flip_until[SIM_NODES_MAX + 1];
};

enum sim_msg_type { SIM_PULL = 0, SIM_REPLY = 1, SIM_HINT = 2 };

struct sim_msg {
    uint64_t at;
    uint64_t seq; /* ties: send order */
    uint8_t  type;
    uint64_t from;
    uint64_t to;
    uint32_t shard;
    uint64_t nonce;
    /* PULL */
    uint64_t       after;
    uint32_t       count_max;
    uint64_t       bytes_max;
    uint32_t       skip;
    struct crdt_vv vv;
    /* REPLY */
    uint32_t        n;
    uint32_t       *recs;
    uint64_t       *seqs;
    uint64_t        scanned;
    uint64_t        bytes;
    bool            end;
    bool            blocked;
    struct crdt_dot blocked_on;
    /* both */
    uint8_t *digest;
    size_t   digest_len;
};

struct sim_stats {
    unsigned long cases, faulty, events, pulls, replies, hints, stale, drops;
    unsigned long dups, skipped, applied, blocked, blocked_waits, relayed;
    unsigned long crashes;
    unsigned long commit_crashes, write_refused, acks_region, acks_global;
    unsigned long ack_checks, stable_checks, compactions, folded;
    unsigned long converge_ms_sum, converge_ms_max, clean_events;
    unsigned long clean_copies, clean_cases, digest_bytes, digests;
    unsigned long digest_bytes_max, misdirected_hints;
    unsigned long unstable_old;
    /* Fault-free seeds: time for an event to reach every replica. */
    uint64_t *lag_ms;
    uint32_t  nlag, caplag;
};

struct sim {
    uint64_t        rng;
    uint64_t        seed; /* this case's */
    uint64_t        now;
    uint32_t        nregions, nshards, nnodes;
    uint32_t        per_region[SIM_REGIONS_MAX];
    uint32_t        rf[SIM_REGIONS_MAX];
    struct sim_node node[SIM_NODES_MAX + 1]; /* by id, 1..nnodes */
    uint64_t        order[SIM_SHARDS_MAX][SIM_REGIONS_MAX][SIM_PER_REGION_MAX];
    struct ae_region_place rp[SIM_SHARDS_MAX][SIM_REGIONS_MAX];
    struct ae_place        place[SIM_SHARDS_MAX];
    struct sim_rec         rec[SIM_RECS_MAX];
    uint32_t               nrec;
    struct sim_msg       **heap;
    uint32_t               nheap, capheap;
    uint64_t               msg_seq;
    uint64_t               nonce_next;
    /* Faults. */
    bool     faults; /* this case has them */
    bool     healed;
    uint64_t heal_ms;
    uint32_t drop_pm, dup_pm, spike_pm, commit_crash_pm; /* per mille */
    uint64_t cut_until[SIM_REGIONS_MAX][SIM_REGIONS_MAX];
    uint64_t next_write_ms, next_fault_ms, next_check_ms;
    /* Fault-free measurements of this seed. */
    unsigned long misdirected_hints, unstable_old;
    /* Node configuration. */
    struct ae_pace_cfg cfg;
    uint32_t           region_k, global_n, count_max;
    uint64_t           budget_cap;
    struct crdt_ops   *ops; /* decode scratch, ~28 KiB */
    msgpack_sbuffer    sbuf;
};

static struct sim       S;
static struct sim_stats st;
static uint64_t         run_seed;
static unsigned         run_cases;
static bool             verbose;
static char             crash_note[256];

static void
print_crash_note(void)
{
    size_t n = strlen(crash_note);
    if (n > 0) {
        ssize_t w = write(2, crash_note, n);
        (void) w;
    }
}

static void
on_abort(int sig)
{
    print_crash_note();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void MRD_PRINTF(2, 3) sim_fail(int line, const char *fmt, ...)
{
    char    detail[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    crash_note[0] = '\0';
    fail_msg("ae_sim_test.c:%d: %s [t=%llu ms; replay with MRD_TEST_SEED=%llu "
             "MRD_AE_CASES=1]",
        line, detail, (unsigned long long) S.now, (unsigned long long) S.seed);
}

#define SIM_CHECK(c, ...)                                                      \
    do {                                                                       \
        if (!(c)) {                                                            \
            sim_fail(__LINE__, __VA_ARGS__);                                   \
        }                                                                      \
    } while (0)
#define SIM_OK(e) SIM_CHECK((e) == MRD_OK, "%s failed", #e)

static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z          = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z          = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t
rnd(uint32_t n)
{
    return n == 0 ? 0 : (uint32_t) (splitmix64(&S.rng) % n);
}

static bool
chance_pm(uint32_t pm)
{
    return rnd(1000) < pm;
}

static uint32_t
sim_region_of(uint64_t node)
{
    return node >= 1 && node <= S.nnodes ? S.node[node].region : AE_REGION_NONE;
}

/* -------------------------------------------------------- the network -- */

static bool
sim_heap_less(const struct sim_msg *a, const struct sim_msg *b)
{
    return a->at != b->at ? a->at < b->at : a->seq < b->seq;
}

static void
sim_heap_push(struct sim_msg *m)
{
    if (S.nheap == S.capheap) {
        S.capheap = S.capheap ? 2 * S.capheap : 256;
        S.heap    = realloc(S.heap, S.capheap * sizeof(*S.heap));
        SIM_CHECK(S.heap != NULL, "out of memory");
    }
    uint32_t i = S.nheap++;
    while (i > 0 && sim_heap_less(m, S.heap[(i - 1) / 2])) {
        S.heap[i] = S.heap[(i - 1) / 2];
        i         = (i - 1) / 2;
    }
    S.heap[i] = m;
}

static struct sim_msg *
sim_heap_pop(void)
{
    struct sim_msg *top  = S.heap[0];
    struct sim_msg *last = S.heap[--S.nheap];
    uint32_t        i    = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= S.nheap) {
            break;
        }
        if (c + 1 < S.nheap && sim_heap_less(S.heap[c + 1], S.heap[c])) {
            c++;
        }
        if (!sim_heap_less(S.heap[c], last)) {
            break;
        }
        S.heap[i] = S.heap[c];
        i         = c;
    }
    if (S.nheap > 0) {
        S.heap[i] = last;
    }
    return top;
}

static void
sim_msg_free(struct sim_msg *m)
{
    crdt_vv_free(&m->vv);
    free(m->recs);
    free(m->seqs);
    free(m->digest);
    free(m);
}

static struct sim_msg *
sim_msg_copy(const struct sim_msg *m)
{
    struct sim_msg *c = malloc(sizeof(*c));
    SIM_CHECK(c != NULL, "out of memory");
    *c = *m;
    crdt_vv_init(&c->vv);
    SIM_OK(crdt_vv_copy(&c->vv, &m->vv));
    c->recs   = m->n ? malloc(m->n * sizeof(*c->recs)) : NULL;
    c->seqs   = m->n ? malloc(m->n * sizeof(*c->seqs)) : NULL;
    c->digest = m->digest_len ? malloc(m->digest_len) : NULL;
    if (m->n) {
        memcpy(c->recs, m->recs, m->n * sizeof(*c->recs));
        memcpy(c->seqs, m->seqs, m->n * sizeof(*c->seqs));
    }
    if (m->digest_len) {
        memcpy(c->digest, m->digest, m->digest_len);
    }
    return c;
}

static uint64_t
sim_delay(uint64_t from, uint64_t to)
{
    uint64_t d
        = sim_region_of(from) == sim_region_of(to) ? 1 + rnd(5) : 15 + rnd(60);
    if (S.faults && !S.healed && chance_pm(S.spike_pm)) {
        d += rnd(400); /* a spike: reorders against later messages */
    }
    return d;
}

/* Sends m (taking it): partitions and drops eat it, duplication copies it,
 * each copy with its own delay. */
static void
sim_send(struct sim_msg *m)
{
    bool faulty = S.faults && !S.healed;
    if (faulty
        && (S.cut_until[sim_region_of(m->from)][sim_region_of(m->to)] > S.now
            || chance_pm(S.drop_pm))) {
        st.drops++;
        sim_msg_free(m);
        return;
    }
    if (faulty && chance_pm(S.dup_pm)) {
        struct sim_msg *c = sim_msg_copy(m);
        c->at             = S.now + sim_delay(m->from, m->to);
        c->seq            = ++S.msg_seq;
        sim_heap_push(c);
    }
    m->at  = S.now + sim_delay(m->from, m->to);
    m->seq = ++S.msg_seq;
    sim_heap_push(m);
}

static struct sim_msg *
sim_msg_new(uint8_t type, uint64_t from, uint64_t to, uint32_t shard)
{
    struct sim_msg *m = calloc(1, sizeof(*m));
    SIM_CHECK(m != NULL, "out of memory");
    m->type  = type;
    m->from  = from;
    m->to    = to;
    m->shard = shard;
    crdt_vv_init(&m->vv);
    return m;
}

/* ------------------------------------------------- a node around ae.h -- */

struct sim_view {
    struct sim_node *n;
    uint32_t         shard;
};

/* The node's liveness view: the truth, wrong while the fault model says
 * so, and a source whose pulls keep failing is down whatever it says. */
static bool
sim_live_cb(void *arg, uint64_t x)
{
    const struct sim_view *v  = arg;
    bool                   up = S.node[x].up;
    if (v->n->flip_until[x] > S.now) {
        up = !up;
    }
    if (v->n->pace_on[v->shard][x]
        && ae_pace_failing(&v->n->pace[v->shard][x], &S.cfg, S.now)) {
        return false;
    }
    return up;
}

/* The stable vector, checked against every replica's real durable vector
 * each time it is used. */
static void
sim_stable(struct sim_node *n, uint32_t s, struct crdt_vv *out)
{
    int rc = ae_know_stable(&n->know[s], &S.place[s], out);
    SIM_CHECK(rc == MRD_OK, "ae_know_stable: %s", mrd_errname(rc));
    st.stable_checks++;
    for (uint64_t x = 1; x <= S.nnodes; x++) {
        SIM_CHECK(
            !S.node[x].holds[s] || crdt_vv_covers(&S.node[x].rep[s].vv, out),
            "node %llu's stable vector of shard %u is above replica %llu's "
            "vector",
            (unsigned long long) n->id, s, (unsigned long long) x);
    }
}

/* An ack level claimed at node n for dot, against the durable truth
 * counted here, independently of ae_ack_decide. */
static void
sim_check_ack(struct sim_node *n, uint32_t s, struct crdt_dot dot, bool own)
{
    struct ae_ack ack;
    uint32_t      real[SIM_REGIONS_MAX] = { 0 };
    uint32_t      regions               = 0;

    ae_ack_level(&n->know[s], &S.place[s], dot, &ack);
    st.ack_checks++;
    for (uint64_t x = 1; x <= S.nnodes; x++) {
        if (S.node[x].holds[s]
            && crdt_vv_covers_dot(&S.node[x].rep[s].vv, dot)) {
            real[S.node[x].region]++;
        }
    }
    for (uint32_t r = 0; r < S.nregions; r++) {
        SIM_CHECK(ack.held[r] <= real[r],
            "node %llu says (%llu, %llu) is on %u replicas of region %u; it "
            "is on %u",
            (unsigned long long) n->id, (unsigned long long) dot.origin,
            (unsigned long long) dot.seq, ack.held[r], r, real[r]);
        regions += real[r] > 0;
    }
    enum ae_level lv = ae_ack_decide(&ack, n->region, S.region_k, S.global_n);
    bool          region_ok = real[n->region] >= S.region_k;
    SIM_CHECK(lv < AE_ACK_REGION || region_ok,
        "node %llu acks (%llu, %llu) at region level; %u replicas hold it",
        (unsigned long long) n->id, (unsigned long long) dot.origin,
        (unsigned long long) dot.seq, real[n->region]);
    SIM_CHECK(lv < AE_ACK_GLOBAL || (region_ok && regions >= S.global_n),
        "node %llu acks (%llu, %llu) at global level; %u regions hold it",
        (unsigned long long) n->id, (unsigned long long) dot.origin,
        (unsigned long long) dot.seq, regions);
    if (own) {
        st.acks_region += lv == AE_ACK_REGION;
        st.acks_global += lv == AE_ACK_GLOBAL;
    }
}

/* Hints the shard's targets as n sees them. */
static void
sim_hint(struct sim_node *n, uint32_t s)
{
    uint64_t        t[AE_HINTS_MAX];
    uint32_t        nt;
    struct sim_view v = { n, s };
    SIM_OK(ae_hint_targets(&S.place[s], n->id, sim_live_cb, &v, t, &nt));
    for (uint32_t i = 0; i < nt; i++) {
        sim_send(sim_msg_new(SIM_HINT, n->id, t[i], s));
        st.hints++;
    }
}

static void
sim_digest(struct sim_node *n, uint32_t s, struct sim_msg *m)
{
    struct proto_buf buf;
    proto_buf_init(&buf, AE_DIGEST_SIZE_MAX);
    SIM_OK(ae_digest_encode(&n->know[s], &S.place[s], n->rotate++, &buf));
    m->digest     = buf.data; /* taken */
    m->digest_len = buf.len;
    st.digests++;
    st.digest_bytes += buf.len;
    if (buf.len > st.digest_bytes_max) {
        st.digest_bytes_max = buf.len;
    }
}

static void
sim_absorb(struct sim_node *n, const struct sim_msg *m)
{
    const char *why = NULL;
    int         rc  = ae_digest_absorb(
                 &n->know[m->shard], &S.place[m->shard], m->digest, m->digest_len, &why);
    SIM_CHECK(rc == MRD_OK, "a digest was refused: %s", why);
    n->learnt = true;
}

static void
sim_pull_send(
    struct sim_node *n, uint32_t s, const struct ae_source *src, uint64_t grant)
{
    struct sim_msg *m = sim_msg_new(SIM_PULL, n->id, src->node, s);
    m->nonce          = ++S.nonce_next;
    m->after          = n->rep[s].after[src->node];
    m->count_max      = S.count_max;
    m->bytes_max      = grant;
    m->skip = ae_pull_skip(src, &n->pace[s][src->node], &S.cfg, S.now);
    SIM_OK(crdt_vv_copy(&m->vv, &n->rep[s].vv));
    sim_digest(n, s, m);
    st.relayed += src->remote && m->skip != src->skip_regions;
    n->nonce[s][src->node] = m->nonce;
    n->grant[s][src->node] = grant;
    ae_pace_sent(&n->pace[s][src->node], S.now);
    st.pulls++;
    sim_send(m);
}

/* A pull in flight past its deadline: forgotten, its grant returned. */
static void
sim_timeouts(struct sim_node *n, uint32_t s)
{
    for (uint64_t x = 1; x <= S.nnodes; x++) {
        struct ae_pace *p = &n->pace[s][x];
        if (n->pace_on[s][x] && ae_pace_timed_out(p, &S.cfg, S.now)) {
            ae_budget_give(&n->budget[x], n->grant[s][x]);
            n->grant[s][x] = 0;
            n->nonce[s][x] = 0; /* a late answer is dropped */
            ae_pace_done(p, &S.cfg, S.now, AE_PULL_FAILED, false);
        }
    }
}

/* One puller round of one shard: what ae_sources says, when due. */
static void
sim_poll_shard(struct sim_node *n, uint32_t s)
{
    struct ae_source src[AE_SOURCES_MAX];
    uint32_t         ns;
    struct sim_view  v = { n, s };

    sim_timeouts(n, s);
    SIM_OK(ae_sources(&S.place[s], n->id, sim_live_cb, &v, src, &ns));
    for (uint32_t i = 0; i < ns; i++) {
        uint64_t        x = src[i].node;
        struct ae_pace *p = &n->pace[s][x];
        uint64_t        grant;
        if (!n->pace_on[s][x]) {
            ae_pace_init(p, &S.cfg, S.now);
            n->pace_on[s][x] = true;
        }
        if (ae_pace_due(p, S.now) && ae_budget_take(&n->budget[x], &grant)) {
            sim_pull_send(n, s, &src[i], grant);
        }
    }
    for (uint64_t x = 1; x <= S.nnodes; x++) {
        if (n->pace_on[s][x]) {
            uint64_t w = ae_pace_wake_ms(&n->pace[s][x], &S.cfg);
            n->wake_ms = w < n->wake_ms ? w : n->wake_ms;
        }
    }
}

static void
sim_poll(struct sim_node *n)
{
    /* Shards in a rotating order: budget grants are first come, first
     * served (ae_budget). */
    uint32_t first = n->round++ % S.nshards;
    n->wake_ms     = UINT64_MAX;
    for (uint32_t i = 0; i < S.nshards; i++) {
        uint32_t s = (first + i) % S.nshards;
        if (n->holds[s]) {
            sim_poll_shard(n, s);
        }
    }
    /* Acks of its own recent events, as the node would answer them, each
     * time what it knows changed. */
    for (uint32_t i = 0; n->learnt && i < n->nacks;) {
        const struct sim_rec *r = &S.rec[n->acks[i]];
        struct ae_ack         ack;
        sim_check_ack(n, r->shard, r->dot, true);
        ae_ack_level(&n->know[r->shard], &S.place[r->shard], r->dot, &ack);
        bool everywhere = true;
        for (uint32_t g = 0; g < S.nregions; g++) {
            everywhere = everywhere && ack.held[g] == ack.replicas[g];
        }
        if (everywhere) {
            n->acks[i] = n->acks[--n->nacks];
        } else {
            i++;
        }
    }
    n->learnt = false;
    /* And a random dot now and then. */
    if (S.nrec > 0 && chance_pm(50)) {
        const struct sim_rec *r = &S.rec[rnd(S.nrec)];
        if (n->holds[r->shard]) {
            sim_check_ack(n, r->shard, r->dot, false);
        }
    }
    if (n->wake_ms <= S.now) {
        n->wake_ms = S.now + 1; /* due but waiting for a budget grant */
    }
}

/* --------------------------------------------------------- crashes -- */

static void
sim_volatile_init(struct sim_node *n)
{
    memset(n->pace_on, 0, sizeof(n->pace_on));
    memset(n->nonce, 0, sizeof(n->nonce));
    memset(n->grant, 0, sizeof(n->grant));
    n->nacks = 0;
    for (uint64_t x = 1; x <= S.nnodes; x++) {
        ae_budget_init(&n->budget[x], S.budget_cap, SIM_REC_SIZE_MAX);
    }
    for (uint32_t s = 0; s < S.nshards; s++) {
        ae_know_init(&n->know[s], n->id);
        if (n->holds[s]) {
            SIM_OK(ae_know_own(&n->know[s], &n->rep[s].vv));
        }
    }
}

static void
sim_crash(struct sim_node *n)
{
    n->up         = false;
    n->restart_ms = S.now + 50 + rnd(600);
    for (uint32_t s = 0; s < S.nshards; s++) {
        ae_know_fini(&n->know[s]);
    }
    st.crashes++;
}

static void
sim_restart(struct sim_node *n)
{
    n->up = true;
    sim_volatile_init(n);
}

/* -------------------------------------------------------- local writes -- */

struct sim_opgen {
    struct crdt_op op[SIM_OPS_MAX];
    uint32_t       n;
    char           val[SIM_OPS_MAX][8];
};

static void
sim_gen_ops(struct sim_opgen *g)
{
    static const char *const names[] = { "c", "r", "s", "f" };
    g->n                             = rnd(SIM_OPS_MAX + 1);
    for (uint32_t i = 0; i < g->n; i++) {
        struct crdt_op *op = &g->op[i];
        uint32_t        k  = rnd(10);
        uint32_t        f  = k <= 4 ? 0 : k == 5 ? 1 : k <= 7 ? 2 : 3;
        memset(op, 0, sizeof(*op));
        op->depth   = 1;
        op->path[0] = (struct crdt_bytes) { (const uint8_t *) names[f], 1 };
        snprintf(g->val[i], sizeof(g->val[i]), "%c%u", k == 5 ? 'v' : 'm',
            rnd(k == 5 ? 100 : 4));
        op->value = (struct crdt_bytes) { (const uint8_t *) g->val[i],
            (uint32_t) strlen(g->val[i]) };
        if (k <= 3) {
            op->type  = MRD_STATE_COUNTER;
            op->kind  = MRD_OP_INC;
            op->delta = (int64_t) rnd(9) - 3;
            op->delta = op->delta == 0 ? 1 : op->delta;
        } else if (k == 4) {
            op->type = 0; /* a delete that may not observe every inc */
            op->kind = MRD_OP_DELETE;
        } else if (k == 5) {
            op->type = MRD_STATE_LWW;
            op->kind = MRD_OP_SET;
        } else if (k <= 7) {
            op->type = MRD_STATE_SET;
            op->kind = k == 6 ? MRD_OP_ADD : MRD_OP_REMOVE;
        } else {
            op->type = MRD_STATE_FLAG;
            op->kind = k == 8 ? MRD_OP_ENABLE : MRD_OP_DISABLE;
        }
    }
}

static void
sim_log_append(struct sim_replica *rep, uint32_t idx)
{
    if (rep->n == rep->cap) {
        rep->cap = rep->cap ? 2 * rep->cap : 64;
        rep->log = realloc(rep->log, rep->cap * sizeof(*rep->log));
        SIM_CHECK(rep->log != NULL, "out of memory");
    }
    rep->log[rep->n++] = idx;
}

/* Compacts doc at n's stable vector, as node_state_check() does after
 * every apply. */
static void
sim_compact(struct sim_node *n, uint32_t s, struct crdt_doc *doc)
{
    struct crdt_vv stable;
    crdt_vv_init(&stable);
    sim_stable(n, s, &stable);
    size_t before = crdt_doc_meta_count(doc);
    SIM_OK(crdt_doc_compact(doc, &stable));
    st.compactions++;
    st.folded += before - crdt_doc_meta_count(doc);
    crdt_vv_free(&stable);
}

/* Encodes the ops of a new event with their deps into the record. */
static void
sim_rec_ops(struct sim_rec *r, const struct sim_opgen *g)
{
    const char    *why = NULL;
    msgpack_packer pk;
    msgpack_sbuffer_clear(&S.sbuf);
    msgpack_packer_init(&pk, &S.sbuf, msgpack_sbuffer_write);
    SIM_OK(crdt_ops_encode(&pk, &r->deps, g->op, g->n, &why));
    r->ops_len = (uint32_t) S.sbuf.size;
    r->ops     = malloc(r->ops_len);
    SIM_CHECK(r->ops != NULL, "out of memory");
    memcpy(r->ops, S.sbuf.data, r->ops_len);
}

/* A client's append at node n: prepared, applied and committed whole, or
 * lost whole to a crash inside the commit (then never acknowledged). */
static void
sim_write_at(struct sim_node *n, uint32_t stream)
{
    uint32_t            s   = stream % S.nshards;
    struct sim_replica *rep = &n->rep[s];
    struct sim_opgen    g;
    const char         *why = NULL;
    struct crdt_doc     doc;
    enum crdt_delivery  d = CRDT_HOLD;

    sim_gen_ops(&g);
    if (g.n > 0
        && crdt_doc_prepare(&rep->doc[stream], g.op, g.n, &why) != MRD_OK) {
        st.write_refused++;
        return;
    }
    if (S.faults && !S.healed && chance_pm(S.commit_crash_pm)) {
        st.commit_crashes++;
        sim_crash(n);
        return;
    }
    struct sim_rec *r = &S.rec[S.nrec];
    memset(r, 0, sizeof(*r));
    r->dot    = (struct crdt_dot) { n->id, n->origin_seq + 1 };
    r->shard  = s;
    r->stream = stream;
    r->region = n->region;
    n->hlc    = n->hlc + 1 > (S.now << 16) ? n->hlc + 1 : S.now << 16;
    r->hlc    = n->hlc;
    crdt_vv_init(&r->deps);
    crdt_vv_init(&r->past);
    SIM_OK(crdt_vv_copy(&r->past, &rep->vv));
    crdt_doc_init(&doc);
    if (g.n > 0) {
        SIM_OK(crdt_doc_copy(&doc, &rep->doc[stream]));
        SIM_OK(crdt_vv_copy(&r->deps, &doc.ctx));
        SIM_OK(crdt_doc_apply(&doc, r->dot, r->hlc, &r->deps, g.op, g.n, &d));
        SIM_CHECK(d == CRDT_APPLY, "a local write was not applied");
        sim_rec_ops(r, &g);
        sim_compact(n, s, &doc);
    }
    r->size      = 48 + r->ops_len;
    r->commit_ms = S.now;
    r->held      = 1;
    SIM_CHECK(r->size <= SIM_REC_SIZE_MAX, "record of %u bytes", r->size);
    /* Commit. */
    S.nrec++;
    n->origin_seq = r->dot.seq;
    sim_log_append(rep, S.nrec - 1);
    SIM_OK(crdt_vv_raise(&rep->vv, n->id, r->dot.seq));
    if (g.n > 0) {
        crdt_doc_free(&rep->doc[stream]);
        rep->doc[stream] = doc;
    }
    SIM_OK(ae_know_own(&n->know[s], &rep->vv));
    n->learnt = true;
    st.events++;
    if (n->nacks < SIM_ACKS_MAX) {
        n->acks[n->nacks++] = S.nrec - 1;
    }
    sim_hint(n, s);
}

static void
sim_write(void)
{
    uint32_t stream = rnd(SIM_STREAMS);
    uint32_t s      = stream % S.nshards;
    uint32_t r0     = rnd(S.nregions);
    /* A client in region r0 goes to a live replica there, else fails over
     * to another region. */
    for (uint32_t k = 0; k < S.nregions; k++) {
        const struct ae_region_place *rp = &S.rp[s][(r0 + k) % S.nregions];
        uint32_t                      i0 = rnd(rp->rf);
        for (uint32_t i = 0; i < rp->rf; i++) {
            struct sim_node *n = &S.node[rp->cand[(i0 + i) % rp->rf]];
            if (n->up) {
                sim_write_at(n, stream);
                return;
            }
        }
    }
}

/* ------------------------------------------------------- serving pulls -- */

struct sim_serve {
    const struct sim_replica *rep;
    uint64_t                  pos;
    struct sim_msg           *reply;
};

static int
sim_log_next_cb(void *arg, struct ae_log_entry *out)
{
    struct sim_serve *sv = arg;
    if (sv->pos >= sv->rep->n) {
        return MRD_ENOTFOUND;
    }
    const struct sim_rec *r = &S.rec[sv->rep->log[sv->pos]];
    *out = (struct ae_log_entry) { sv->pos + 1, r->dot, r->size };
    sv->pos++;
    return MRD_OK;
}

static uint32_t
sim_region_of_cb(void *arg, uint64_t node)
{
    (void) arg;
    return sim_region_of(node);
}

static int
sim_emit_cb(void *arg, const struct ae_log_entry *e)
{
    struct sim_serve *sv = arg;
    struct sim_msg   *m  = sv->reply;
    MRD_ASSERT(e->log_seq == sv->pos); /* the entry just read */
    m->recs       = realloc(m->recs, (m->n + 1) * sizeof(*m->recs));
    m->seqs       = realloc(m->seqs, (m->n + 1) * sizeof(*m->seqs));
    m->recs[m->n] = sv->rep->log[e->log_seq - 1];
    m->seqs[m->n] = e->log_seq;
    m->n++;
    return MRD_OK;
}

static void
sim_on_pull(struct sim_node *n, const struct sim_msg *m)
{
    uint32_t s = m->shard;
    SIM_CHECK(n->holds[s], "a pull reached a node without the shard");
    SIM_OK(ae_know_report(&n->know[s], &S.place[s], m->from, &m->vv));
    sim_absorb(n, m);

    struct sim_msg     *reply = sim_msg_new(SIM_REPLY, n->id, m->from, s);
    struct sim_serve    sv    = { &n->rep[s], m->after, reply };
    struct ae_serve_req req
        = { m->after, m->count_max, m->bytes_max, m->skip, &m->vv };
    struct ae_serve_cb cb
        = { sim_log_next_cb, sim_region_of_cb, sim_emit_cb, &sv };
    struct ae_serve_rep out;
    SIM_OK(ae_serve(&req, &cb, &out));
    reply->nonce      = m->nonce;
    reply->scanned    = out.scanned;
    reply->end        = out.end;
    reply->blocked    = out.blocked;
    reply->blocked_on = out.blocked_on;
    reply->bytes      = out.bytes;
    sim_digest(n, s, reply);
    uint32_t to = sim_region_of(m->from);
    if (to != n->region) {
        for (uint32_t i = 0; i < reply->n; i++) {
            S.rec[reply->recs[i]].copies[to]++;
        }
    }
    st.replies++;
    sim_send(reply);
}

/* --------------------------------------------------- applying batches -- */

static uint32_t
sim_replicas(uint32_t s)
{
    uint32_t n = 0;
    for (uint32_t r = 0; r < S.nregions; r++) {
        n += S.rp[s][r].rf;
    }
    return n;
}

/* A replicated batch, applied to scratch copies and committed whole:
 * events, vector, documents and read position together. */
struct sim_txn {
    struct crdt_vv  vv;
    struct crdt_doc doc[SIM_STREAMS];
    bool            touched[SIM_STREAMS];
    uint32_t        add[SIM_RECS_MAX];
    uint32_t        nadd;
};

static void
sim_txn_free(struct sim_txn *t)
{
    crdt_vv_free(&t->vv);
    for (uint32_t i = 0; i < SIM_STREAMS; i++) {
        if (t->touched[i]) {
            crdt_doc_free(&t->doc[i]);
        }
    }
}

/* What crdt_doc_compact() relies on: every event applied after a
 * compaction observed every event of its stream that the document folded.
 * Checked dot by dot: a vector entry of `stable` may stand for an origin's
 * events of other streams, which deps need not reach. */
static void
sim_check_observed(const struct sim_node *n, const struct crdt_doc *doc,
    const struct sim_rec *r)
{
    for (uint32_t i = 0; i < S.nrec; i++) {
        const struct sim_rec *f = &S.rec[i];
        if (f->stream != r->stream || f->ops == NULL
            || !crdt_vv_covers_dot(&doc->stable, f->dot)) {
            continue;
        }
        SIM_CHECK(crdt_vv_covers_dot(&S.ops->deps, f->dot),
            "node %llu folded (%llu, %llu), which (%llu, %llu) did not "
            "observe: a stable vector was not stable",
            (unsigned long long) n->id, (unsigned long long) f->dot.origin,
            (unsigned long long) f->dot.seq, (unsigned long long) r->dot.origin,
            (unsigned long long) r->dot.seq);
    }
}

/* Applies one record's ops to the transaction's copy of its document. */
static void
sim_txn_ops(struct sim_node *n, struct sim_txn *t, const struct sim_rec *r)
{
    const char        *why = NULL;
    enum crdt_delivery d   = CRDT_HOLD;
    struct crdt_doc   *doc = &t->doc[r->stream];

    if (!t->touched[r->stream]) {
        crdt_doc_init(doc);
        SIM_OK(crdt_doc_copy(doc, &n->rep[r->shard].doc[r->stream]));
        t->touched[r->stream] = true;
    }
    SIM_OK(crdt_ops_decode(S.ops, r->ops, r->ops_len, &why));
    sim_check_observed(n, doc, r);
    SIM_OK(crdt_doc_apply(
        doc, r->dot, r->hlc, &S.ops->deps, S.ops->op, S.ops->count, &d));
    SIM_CHECK(d == CRDT_APPLY, "node %llu could not apply (%llu, %llu): %s",
        (unsigned long long) n->id, (unsigned long long) r->dot.origin,
        (unsigned long long) r->dot.seq,
        d == CRDT_HOLD ? "its deps are missing (causal order broken)"
                       : "a duplicate the vector did not know");
}

static void
sim_commit(struct sim_node *n, uint32_t s, uint64_t from, uint64_t scanned,
    struct sim_txn *t)
{
    struct sim_replica *rep = &n->rep[s];
    for (uint32_t i = 0; i < SIM_STREAMS; i++) {
        if (t->touched[i]) {
            sim_compact(n, s, &t->doc[i]);
            crdt_doc_free(&rep->doc[i]);
            rep->doc[i]   = t->doc[i];
            t->touched[i] = false;
        }
    }
    for (uint32_t i = 0; i < t->nadd; i++) {
        struct sim_rec *r = &S.rec[t->add[i]];
        sim_log_append(rep, t->add[i]);
        n->hlc = r->hlc > n->hlc ? r->hlc : n->hlc;
        if (++r->held == sim_replicas(s)) {
            r->everywhere_ms = S.now;
        }
    }
    crdt_vv_free(&rep->vv);
    rep->vv = t->vv;
    crdt_vv_init(&t->vv);
    rep->after[from] = scanned;
}

/* Decides and applies a reply's batch; returns how many events it added,
 * or -1 when the node crashed inside the commit. */
static int
sim_replicate(struct sim_node *n, const struct sim_msg *m)
{
    static struct ae_batch_item items[SIM_RECS_MAX];
    static uint8_t              verdict[SIM_RECS_MAX];
    static struct sim_txn       t;
    uint32_t                    s   = m->shard, appends;
    const char                 *why = NULL;

    for (uint32_t i = 0; i < m->n; i++) {
        const struct sim_rec *r = &S.rec[m->recs[i]];
        items[i]                = (struct ae_batch_item) { m->seqs[i], r->dot,
                           r->stream % S.nshards };
    }
    struct ae_batch_req req = { n->id, s, n->rep[s].after[m->from], m->scanned,
        S.count_max, &n->rep[s].vv };
    int rc = ae_batch_check(&req, items, m->n, verdict, &appends, &why);
    SIM_CHECK(rc == MRD_OK, "node %llu refused a batch from %llu: %s",
        (unsigned long long) n->id, (unsigned long long) m->from, why);
    if (S.faults && !S.healed && chance_pm(S.commit_crash_pm)) {
        st.commit_crashes++;
        sim_crash(n); /* the transaction dies with the process */
        return -1;
    }
    memset(&t, 0, sizeof(t));
    crdt_vv_init(&t.vv);
    SIM_OK(crdt_vv_copy(&t.vv, &n->rep[s].vv));
    for (uint32_t i = 0; i < m->n; i++) {
        const struct sim_rec *r = &S.rec[m->recs[i]];
        SIM_CHECK(verdict[i] != AE_APPEND_OWN,
            "node %llu was handed back its own lost event",
            (unsigned long long) n->id);
        if (verdict[i] == AE_SKIP) {
            st.skipped++;
            continue;
        }
        if (r->ops != NULL) {
            sim_txn_ops(n, &t, r);
        }
        SIM_OK(crdt_vv_raise(&t.vv, r->dot.origin, r->dot.seq));
        t.add[t.nadd++] = m->recs[i];
    }
    SIM_CHECK(t.nadd == appends, "verdicts and append count disagree");
    sim_commit(n, s, m->from, m->scanned, &t);
    sim_txn_free(&t);
    return (int) appends;
}

static void
sim_on_reply(struct sim_node *n, const struct sim_msg *m)
{
    uint32_t        s = m->shard;
    struct ae_pace *p = &n->pace[s][m->from];

    if (!n->pace_on[s][m->from] || !p->in_flight
        || n->nonce[s][m->from] != m->nonce) {
        st.stale++; /* a duplicate, or the answer to a timed-out pull */
        return;
    }
    SIM_CHECK(m->bytes <= n->grant[s][m->from],
        "a reply of %llu bytes exceeded its grant of %llu",
        (unsigned long long) m->bytes,
        (unsigned long long) n->grant[s][m->from]);
    ae_budget_give(&n->budget[m->from], n->grant[s][m->from]);
    n->grant[s][m->from] = 0;
    n->nonce[s][m->from] = 0;
    sim_absorb(n, m);
    int applied = sim_replicate(n, m);
    if (applied < 0) {
        return;
    }
    SIM_OK(ae_know_own(&n->know[s], &n->rep[s].vv));
    st.applied += (unsigned long) applied;
    enum ae_pull_result res
        = ae_pull_outcome(m->end, m->blocked, m->blocked_on, &n->rep[s].vv);
    st.blocked += m->blocked;
    st.blocked_waits += res == AE_PULLED_BLOCKED;
    ae_pace_done(p, &S.cfg, S.now, res, applied > 0);
    if (applied > 0) {
        for (uint64_t x = 1; x <= S.nnodes; x++) {
            if (n->pace_on[s][x]) {
                ae_pace_progress(&n->pace[s][x], S.now);
            }
        }
        sim_hint(n, s);
    }
}

/* With every view right, a hint must reach a node that pulls the shard from
 * its sender: ae_hint_targets and ae_sources must agree, or hints are
 * wasted and new events wait for idle timers. */
static void
sim_check_hint(struct sim_node *n, const struct sim_msg *m)
{
    struct ae_source src[AE_SOURCES_MAX];
    uint32_t         ns;
    struct sim_view  v     = { n, m->shard };
    bool             found = false;
    if (S.faults) {
        return;
    }
    SIM_OK(ae_sources(&S.place[m->shard], n->id, sim_live_cb, &v, src, &ns));
    for (uint32_t i = 0; i < ns; i++) {
        found = found || src[i].node == m->from;
    }
    S.misdirected_hints += !found;
}

static void
sim_deliver(struct sim_msg *m)
{
    struct sim_node *n = &S.node[m->to];
    if (!n->up) {
        sim_msg_free(m);
        return;
    }
    switch ((enum sim_msg_type) m->type) {
    case SIM_PULL:
        sim_on_pull(n, m);
        break;
    case SIM_REPLY:
        sim_on_reply(n, m);
        break;
    case SIM_HINT:
        sim_check_hint(n, m);
        if (n->pace_on[m->shard][m->from]) {
            ae_pace_hint(&n->pace[m->shard][m->from], &S.cfg, S.now);
        }
        break;
    }
    sim_msg_free(m);
}

/* --------------------------------------------------------------- faults -- */

static void
sim_fault(void)
{
    uint32_t k = rnd(100);
    uint64_t a = 1 + rnd(S.nnodes);
    if (k < 30) {
        if (S.node[a].up) {
            sim_crash(&S.node[a]);
        }
    } else if (k < 65) {
        /* A wrong view: a peer seen down while up, or up while down. */
        uint64_t b = 1 + rnd(S.nnodes);
        if (b != a) {
            S.node[a].flip_until[b] = S.now + 100 + rnd(1500);
        }
    } else if (k < 90) {
        uint32_t x = rnd(S.nregions), y = rnd(S.nregions);
        if (x != y) {
            uint64_t until    = S.now + 200 + rnd(2000);
            S.cut_until[x][y] = until;
            if (chance_pm(700)) {
                S.cut_until[y][x] = until; /* else one way only */
            }
        }
    }
}

/* How far stability lags behind steady writes, at the moment writes stop:
 * events committed over a second before that are not yet stable at some
 * replica. Knowledge rides on pulls that run all the time under writes, so
 * there should be none. */
static void
sim_measure_stability(void)
{
    struct crdt_vv stable;
    crdt_vv_init(&stable);
    for (uint64_t x = 1; x <= S.nnodes; x++) {
        for (uint32_t s = 0; s < S.nshards; s++) {
            if (!S.node[x].holds[s]) {
                continue;
            }
            sim_stable(&S.node[x], s, &stable);
            for (uint32_t i = 0; i < S.nrec; i++) {
                const struct sim_rec *r = &S.rec[i];
                S.unstable_old += r->shard == s && r->commit_ms + 1000 < S.now
                    && !crdt_vv_covers_dot(&stable, r->dot);
            }
        }
    }
    crdt_vv_free(&stable);
}

static void
sim_heal(void)
{
    if (!S.faults) {
        sim_measure_stability();
    }
    S.healed = true;
    memset(S.cut_until, 0, sizeof(S.cut_until));
    for (uint64_t x = 1; x <= S.nnodes; x++) {
        memset(S.node[x].flip_until, 0, sizeof(S.node[x].flip_until));
        if (!S.node[x].up && S.node[x].restart_ms > S.now) {
            S.node[x].restart_ms = S.now;
        }
    }
}

/* --------------------------------------------------------------- setup -- */

static void
sim_place(uint64_t salt)
{
    for (uint32_t s = 0; s < S.nshards; s++) {
        for (uint32_t r = 0; r < S.nregions; r++) {
            uint64_t *o = S.order[s][r];
            uint64_t  w[SIM_PER_REGION_MAX];
            uint32_t  n = 0;
            for (uint64_t x = 1; x <= S.nnodes; x++) {
                if (S.node[x].region != r) {
                    continue;
                }
                /* Rendezvous: highest weight first. */
                uint64_t h  = salt ^ (s * 0x51ed270b27u) ^ (x * 0x2545f491u);
                uint64_t wx = splitmix64(&h);
                uint32_t j  = n++;
                for (; j > 0 && w[j - 1] < wx; j--) {
                    w[j] = w[j - 1];
                    o[j] = o[j - 1];
                }
                w[j] = wx;
                o[j] = x;
            }
            S.rp[s][r] = (struct ae_region_place) { r, S.rf[r], n, o };
        }
        S.place[s]      = (struct ae_place) { s, S.nregions, S.rp[s] };
        const char *why = NULL;
        SIM_CHECK(ae_place_check(&S.place[s], &why) == MRD_OK, "%s", why);
    }
}

static void
sim_setup(uint64_t seed)
{
    struct crdt_ops *ops  = S.ops;
    msgpack_sbuffer  sbuf = S.sbuf;
    memset(&S, 0, sizeof(S));
    S.ops  = ops;
    S.sbuf = sbuf;
    S.seed = seed;
    S.rng  = seed;
    (void) splitmix64(&S.rng);
    S.nregions = 2 + rnd(3);
    S.nshards  = 2 + rnd(2);
    for (uint32_t r = 0; r < S.nregions; r++) {
        S.per_region[r] = 1 + rnd(SIM_PER_REGION_MAX);
        S.rf[r]         = 1 + rnd(S.per_region[r]);
        for (uint32_t i = 0; i < S.per_region[r]; i++) {
            struct sim_node *n = &S.node[++S.nnodes];
            n->id              = S.nnodes;
            n->region          = r;
            n->up              = true;
        }
    }
    sim_place(splitmix64(&S.rng));
    /* One seed in four without faults: it measures link economy. */
    S.faults          = seed % 4 != 0;
    S.drop_pm         = (uint32_t[]) { 0, 10, 50, 150 }[rnd(4)];
    S.dup_pm          = (uint32_t[]) { 0, 20, 50 }[rnd(3)];
    S.spike_pm        = (uint32_t[]) { 0, 50, 150 }[rnd(3)];
    S.commit_crash_pm = (uint32_t[]) { 0, 10, 30 }[rnd(3)];
    S.heal_ms         = 2000 + rnd(4000);
    S.next_write_ms   = rnd(10);
    S.next_fault_ms   = 100 + rnd(300);
    /* The defaults, with a deadline and retries at the simulated network's
     * scale (the default 5 s deadline would only make runs longer). */
    S.cfg              = (struct ae_pace_cfg) AE_PACE_CFG_DEFAULT;
    S.cfg.timeout_ms   = 500;
    S.cfg.retry_ms_max = 2000;
    /* Faulty seeds squeeze pulls (down to one event, one pull in flight
     * per source) to test backpressure; fault-free ones measure lag, so
     * they get room. */
    S.count_max  = S.faults ? 1 + rnd(12) : 64;
    S.budget_cap = SIM_REC_SIZE_MAX * (S.faults ? 1 + rnd(6) : 8);
    for (uint32_t s = 0; s < S.nshards; s++) {
        for (uint32_t r = 0; r < S.nregions; r++) {
            for (uint32_t i = 0; i < S.rf[r]; i++) {
                S.node[S.rp[s][r].cand[i]].holds[s] = true;
            }
        }
    }
    uint32_t home = rnd(S.nregions);
    S.region_k    = 1 + rnd(S.rf[home]);
    S.global_n    = 1 + rnd(S.nregions);
    for (uint64_t x = 1; x <= S.nnodes; x++) {
        struct sim_node *n = &S.node[x];
        for (uint32_t s = 0; s < S.nshards; s++) {
            crdt_vv_init(&n->rep[s].vv);
            for (uint32_t i = 0; i < SIM_STREAMS; i++) {
                crdt_doc_init(&n->rep[s].doc[i]);
            }
        }
        sim_volatile_init(n);
    }
}

static void
sim_teardown(void)
{
    while (S.nheap > 0) {
        sim_msg_free(sim_heap_pop());
    }
    free(S.heap);
    S.heap = NULL;
    for (uint64_t x = 1; x <= S.nnodes; x++) {
        struct sim_node *n = &S.node[x];
        for (uint32_t s = 0; s < S.nshards; s++) {
            if (n->up) {
                ae_know_fini(&n->know[s]);
            }
            crdt_vv_free(&n->rep[s].vv);
            free(n->rep[s].log);
            for (uint32_t i = 0; i < SIM_STREAMS; i++) {
                crdt_doc_free(&n->rep[s].doc[i]);
            }
        }
    }
    for (uint32_t i = 0; i < S.nrec; i++) {
        free(S.rec[i].ops);
        crdt_vv_free(&S.rec[i].deps);
        crdt_vv_free(&S.rec[i].past);
    }
}

/* ---------------------------------------------------------- the checks -- */

/* The vector of every event of shard s written anywhere. */
static void
sim_target(uint32_t s, struct crdt_vv *out, uint32_t *count)
{
    crdt_vv_free(out);
    *count = 0;
    for (uint32_t i = 0; i < S.nrec; i++) {
        if (S.rec[i].shard == s) {
            SIM_OK(crdt_vv_raise(out, S.rec[i].dot.origin, S.rec[i].dot.seq));
            (*count)++;
        }
    }
}

/* Quiescent: every replica holds everything, every up node knows it is
 * stable and knows its own events are everywhere. */
static bool
sim_converged(void)
{
    struct crdt_vv target, stable;
    uint32_t       count;
    bool           ok = true;
    crdt_vv_init(&target);
    crdt_vv_init(&stable);
    for (uint32_t s = 0; ok && s < S.nshards; s++) {
        sim_target(s, &target, &count);
        for (uint64_t x = 1; ok && x <= S.nnodes; x++) {
            struct sim_node *n = &S.node[x];
            if (!n->holds[s]) {
                continue;
            }
            ok = n->up && n->nacks == 0 && n->rep[s].n == count
                && crdt_vv_equal(&n->rep[s].vv, &target);
            if (ok) {
                sim_stable(n, s, &stable);
                ok = crdt_vv_equal(&stable, &target);
            }
        }
    }
    crdt_vv_free(&target);
    crdt_vv_free(&stable);
    return ok;
}

/* One log: each event of the shard exactly once, per-origin order, and
 * each event after its causal past and its deps. */
static void
sim_check_log(const struct sim_node *n, uint32_t s)
{
    static uint8_t            seen[SIM_RECS_MAX];
    const struct sim_replica *rep = &n->rep[s];
    struct crdt_vv            prefix;
    crdt_vv_init(&prefix);
    memset(seen, 0, sizeof(seen));
    for (uint32_t i = 0; i < rep->n; i++) {
        const struct sim_rec *r = &S.rec[rep->log[i]];
        SIM_CHECK(
            r->shard == s, "event of shard %u in shard %u's log", r->shard, s);
        SIM_CHECK(!seen[rep->log[i]], "node %llu holds (%llu, %llu) twice",
            (unsigned long long) n->id, (unsigned long long) r->dot.origin,
            (unsigned long long) r->dot.seq);
        seen[rep->log[i]] = 1;
        SIM_CHECK(crdt_vv_get(&prefix, r->dot.origin) < r->dot.seq,
            "node %llu's log breaks per-origin order at (%llu, %llu)",
            (unsigned long long) n->id, (unsigned long long) r->dot.origin,
            (unsigned long long) r->dot.seq);
        SIM_CHECK(crdt_vv_covers(&prefix, &r->past)
                && crdt_vv_covers(&prefix, &r->deps),
            "node %llu's log has (%llu, %llu) before part of its causal past",
            (unsigned long long) n->id, (unsigned long long) r->dot.origin,
            (unsigned long long) r->dot.seq);
        SIM_OK(crdt_vv_raise(&prefix, r->dot.origin, r->dot.seq));
    }
    for (uint32_t i = 0; i < S.nrec; i++) {
        SIM_CHECK(S.rec[i].shard != s || seen[i],
            "node %llu lacks (%llu, %llu), committed at its origin",
            (unsigned long long) n->id,
            (unsigned long long) S.rec[i].dot.origin,
            (unsigned long long) S.rec[i].dot.seq);
    }
    SIM_CHECK(crdt_vv_equal(&prefix, &rep->vv),
        "node %llu's vector does not match its log",
        (unsigned long long) n->id);
    crdt_vv_free(&prefix);
}

/* Every replica's document of every stream, compacted at its stable vector
 * (the full one by now), encodes to the same bytes. */
static void
sim_check_docs(uint32_t s)
{
    msgpack_sbuffer ref;
    msgpack_sbuffer_init(&ref);
    for (uint32_t i = s; i < SIM_STREAMS; i += S.nshards) {
        bool first = true;
        for (uint64_t x = 1; x <= S.nnodes; x++) {
            struct sim_node *n = &S.node[x];
            if (!n->holds[s]) {
                continue;
            }
            sim_compact(n, s, &n->rep[s].doc[i]);
            msgpack_packer pk;
            msgpack_sbuffer_clear(&S.sbuf);
            msgpack_packer_init(&pk, &S.sbuf, msgpack_sbuffer_write);
            SIM_OK(crdt_doc_encode(&n->rep[s].doc[i], &pk));
            if (first) {
                msgpack_sbuffer_clear(&ref);
                msgpack_sbuffer_write(&ref, S.sbuf.data, S.sbuf.size);
                first = false;
            } else {
                SIM_CHECK(ref.size == S.sbuf.size
                        && memcmp(ref.data, S.sbuf.data, ref.size) == 0,
                    "stream %u's document differs on node %llu", i,
                    (unsigned long long) x);
            }
        }
    }
    msgpack_sbuffer_destroy(&ref);
}

static void
sim_check_final(void)
{
    for (uint32_t s = 0; s < S.nshards; s++) {
        for (uint64_t x = 1; x <= S.nnodes; x++) {
            if (S.node[x].holds[s]) {
                sim_check_log(&S.node[x], s);
                /* And the knowledge behind every ack is complete. */
                for (uint32_t i = 0; i < S.nrec; i++) {
                    struct ae_ack ack;
                    if (S.rec[i].shard != s) {
                        continue;
                    }
                    ae_ack_level(
                        &S.node[x].know[s], &S.place[s], S.rec[i].dot, &ack);
                    for (uint32_t r = 0; r < S.nregions; r++) {
                        SIM_CHECK(ack.held[r] == ack.replicas[r],
                            "node %llu does not know every replica holds "
                            "(%llu, %llu)",
                            (unsigned long long) x,
                            (unsigned long long) S.rec[i].dot.origin,
                            (unsigned long long) S.rec[i].dot.seq);
                    }
                }
            }
        }
        sim_check_docs(s);
    }
    if (!S.faults) {
        /* Link economy: copies of each event sent into each region other
         * than its origin's. */
        unsigned long copies = 0, want = 0;
        for (uint32_t i = 0; i < S.nrec; i++) {
            for (uint32_t r = 0; r < S.nregions; r++) {
                copies += S.rec[i].copies[r];
                want += r != S.rec[i].region;
            }
        }
        SIM_CHECK(copies == want,
            "fault-free links carried %lu copies for %lu event-regions", copies,
            want);
        SIM_CHECK(S.misdirected_hints == 0,
            "fault-free: %lu hints reached nodes that do not pull from their "
            "sender (ae_hint_targets and ae_sources disagree)",
            S.misdirected_hints);
        SIM_CHECK(S.unstable_old == 0,
            "fault-free: %lu (event, replica) pairs not stable 1 s after "
            "their commit",
            S.unstable_old);
        st.clean_cases++;
        st.clean_events += want;
        st.clean_copies += copies;
        st.misdirected_hints += S.misdirected_hints;
        st.unstable_old += S.unstable_old;
        for (uint32_t i = 0; i < S.nrec; i++) {
            if (st.nlag == st.caplag) {
                st.caplag = st.caplag ? 2 * st.caplag : 1024;
                st.lag_ms = realloc(st.lag_ms, st.caplag * sizeof(*st.lag_ms));
                SIM_CHECK(st.lag_ms != NULL, "out of memory");
            }
            uint64_t lag = S.rec[i].everywhere_ms - S.rec[i].commit_ms;
            SIM_CHECK(lag <= SIM_LAG_MS_MAX,
                "fault-free: (%llu, %llu) took %llu ms to reach every replica",
                (unsigned long long) S.rec[i].dot.origin,
                (unsigned long long) S.rec[i].dot.seq,
                (unsigned long long) lag);
            st.lag_ms[st.nlag++] = lag;
        }
    }
}

/* ------------------------------------------------------------ the loop -- */

static uint64_t
sim_next_time(void)
{
    uint64_t t = UINT64_MAX;
#define SIM_MIN(v) t = (v) < t ? (v) : t
    if (S.nheap > 0) {
        SIM_MIN(S.heap[0]->at);
    }
    if (!S.healed) {
        SIM_MIN(S.heal_ms);
        SIM_MIN(S.next_write_ms);
        if (S.faults) {
            SIM_MIN(S.next_fault_ms);
        }
    } else {
        SIM_MIN(S.next_check_ms);
    }
    for (uint64_t x = 1; x <= S.nnodes; x++) {
        SIM_MIN(S.node[x].up ? S.node[x].wake_ms : S.node[x].restart_ms);
    }
#undef SIM_MIN
    return t;
}

static void
sim_step(void)
{
    while (S.nheap > 0 && S.heap[0]->at <= S.now) {
        sim_deliver(sim_heap_pop());
    }
    if (!S.healed && S.now >= S.next_write_ms) {
        if (S.nrec < SIM_RECS_MAX) {
            sim_write();
        }
        S.next_write_ms = S.now + 1 + rnd(30);
    }
    if (!S.healed && S.faults && S.now >= S.next_fault_ms) {
        sim_fault();
        S.next_fault_ms = S.now + 50 + rnd(400);
    }
    if (!S.healed && S.now >= S.heal_ms) {
        sim_heal();
        S.next_check_ms = S.now;
    }
    for (uint64_t x = 1; x <= S.nnodes; x++) {
        struct sim_node *n = &S.node[x];
        if (!n->up && n->restart_ms <= S.now) {
            sim_restart(n);
        }
        if (n->up) {
            sim_poll(n);
        }
    }
}

static void
sim_case(uint64_t seed)
{
    snprintf(crash_note, sizeof(crash_note),
        "ae_sim_test: died in the case of seed %llu; replay it alone with "
        "MRD_TEST_SEED=%llu MRD_AE_CASES=1\n",
        (unsigned long long) seed, (unsigned long long) seed);
    sim_setup(seed);
    for (;;) {
        S.now = sim_next_time();
        SIM_CHECK(!S.healed || S.now <= S.heal_ms + SIM_CONVERGE_MS,
            "no convergence %u ms after healing", SIM_CONVERGE_MS);
        sim_step();
        if (S.healed && S.now >= S.next_check_ms) {
            if (sim_converged()) {
                break;
            }
            S.next_check_ms = S.now + 20;
        }
    }
    uint64_t took = S.now - S.heal_ms;
    sim_check_final();
    st.cases++;
    st.faulty += S.faults;
    st.converge_ms_sum += took;
    st.converge_ms_max = took > st.converge_ms_max ? took : st.converge_ms_max;
    if (verbose) {
        printf("seed %llu: %u regions, %u nodes, %u shards, faults %d, %u "
               "events, converged %llu ms after healing\n",
            (unsigned long long) seed, S.nregions, S.nnodes, S.nshards,
            S.faults, S.nrec, (unsigned long long) took);
    }
    sim_teardown();
    crash_note[0] = '\0';
}

static int
sim_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static void
test_sim(void **state)
{
    (void) state;
    memset(&st, 0, sizeof(st));
    for (unsigned c = 0; c < run_cases; c++) {
        sim_case(run_seed + c);
    }
    print_message(
        "ae_sim: %lu cases (%lu with faults), %lu events; %lu pulls, %lu "
        "replies, %lu hints; %lu events applied, %lu skipped as held, %lu "
        "blocked replies (%lu waited), %lu relayed pulls; %lu stale answers, "
        "%lu messages "
        "lost; %lu crashes (%lu inside a commit); %lu acks checked (%lu at "
        "region, %lu at global level), %lu stable vectors checked, %lu "
        "compactions folded %lu entries; digests %.0f bytes on average, %lu "
        "at most; convergence after healing %.0f ms on average, %lu ms at "
        "most\n",
        st.cases, st.faulty, st.events, st.pulls, st.replies, st.hints,
        st.applied, st.skipped, st.blocked, st.blocked_waits, st.relayed,
        st.stale, st.drops, st.crashes, st.commit_crashes, st.ack_checks,
        st.acks_region, st.acks_global, st.stable_checks, st.compactions,
        st.folded,
        st.digests ? (double) st.digest_bytes / (double) st.digests : 0.0,
        st.digest_bytes_max,
        st.cases ? (double) st.converge_ms_sum / (double) st.cases : 0.0,
        st.converge_ms_max);
    if (st.clean_cases > 0) {
        print_message("ae_sim: link economy in %lu fault-free cases: %lu "
                      "copies for %lu (event, remote region) pairs: %.3f "
                      "copies per event per remote region\n",
            st.clean_cases, st.clean_copies, st.clean_events,
            st.clean_events
                ? (double) st.clean_copies / (double) st.clean_events
                : 0.0);
        qsort(st.lag_ms, st.nlag, sizeof(*st.lag_ms), sim_u64_cmp);
        print_message("ae_sim: fault-free seeds: an event reaches every "
                      "replica in %llu ms (p50), %llu ms (p99), %llu ms "
                      "(max); %lu misdirected hints; %lu (event, replica) "
                      "pairs not stable 1 s after commit when writes "
                      "stopped\n",
            (unsigned long long) st.lag_ms[st.nlag / 2],
            (unsigned long long) st.lag_ms[st.nlag * 99 / 100],
            (unsigned long long) st.lag_ms[st.nlag - 1], st.misdirected_hints,
            st.unstable_old);
    }
    free(st.lag_ms);
    if (run_cases >= 8) {
        /* The faults must have bitten, or the run proved little. */
        if (st.crashes == 0 || st.commit_crashes == 0 || st.drops == 0
            || st.relayed == 0 || st.blocked == 0 || st.folded == 0
            || st.acks_global == 0) {
            fail_msg("the simulation did not exercise what it checks "
                     "[MRD_TEST_SEED=%llu]",
                (unsigned long long) run_seed);
        }
    }
}

static uint64_t
env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        return dflt;
    }
    char              *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end != '\0') {
        fprintf(stderr, "ae_sim_test: %s must be a number\n", name);
        exit(2);
    }
    return n;
}

int
main(void)
{
    uint64_t t = (uint64_t) time(NULL) * 1000003u ^ (uint64_t) getpid();
    run_seed   = env_u64("MRD_TEST_SEED", splitmix64(&t));
    run_cases  = (unsigned) env_u64("MRD_AE_CASES", SIM_DEFAULT_CASES);
    verbose    = env_u64("MRD_AE_VERBOSE", 0) != 0;
    signal(SIGABRT, on_abort);
#ifdef SIM_SANITIZED
    __sanitizer_set_death_callback(print_crash_note);
#endif
    printf("ae_sim_test: MRD_TEST_SEED=%llu MRD_AE_CASES=%u\n",
        (unsigned long long) run_seed, run_cases);
    fflush(stdout);
    S.ops = malloc(sizeof(*S.ops));
    msgpack_sbuffer_init(&S.sbuf);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_place_check),
        cmocka_unit_test(test_sources),
        cmocka_unit_test(test_hint_targets),
        cmocka_unit_test(test_serve),
        cmocka_unit_test(test_batch_check),
        cmocka_unit_test(test_know_stable),
        cmocka_unit_test(test_ack),
        cmocka_unit_test(test_digest),
        cmocka_unit_test(test_digest_bound),
        cmocka_unit_test(test_pace),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_sim),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    msgpack_sbuffer_destroy(&S.sbuf);
    free(S.ops);
    return failed;
}
