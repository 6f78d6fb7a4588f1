/*
 * swim_sim_test.c: SWIM liveness (replication/swim.h), first with small
 * hand-driven cases (codec, record order, refutation, members), then as a
 * deterministic discrete-event simulation of whole clusters.
 *
 * Each simulated case draws from its seed: 3..12 nodes with sparse ids
 * (some of them wide, to exercise every integer width), a config (k 1..3,
 * suspicion and retransmit multipliers, piggyback 1..32; interval and
 * timeouts stay at their defaults, which the bounds below are derived
 * from), a network (loss 0..10 %, duplication 0..5 %, one-way delay
 * 1..D_max ms with D_max 20..120, so messages reorder, and in chaotic
 * phases 0..2 % of messages delayed up to 2 s), and runs one timeline:
 *
 *   1. chaos, 10..30 s;
 *   2. quiet (no loss, no spike) for H; ACCURACY: every node sees every
 *      node ALIVE at the end, false suspicions refuted. A new topology
 *      version set on one node at the start of the phase must have reached
 *      every node (through SWIM_EV_TOPO and an emulated fetch) by the end;
 *   3. a cut link between two nodes, network otherwise quiet, for two
 *      probe rounds: indirect probes must keep every node ALIVE at every
 *      node throughout (no suspicion at all);
 *   4. crash one node C, chaos: COMPLETENESS (below);
 *      in a third of the cases C restarts during this phase (possibly
 *      before anyone noticed) and steps 5-6 check it instead;
 *   5. quiet for H: every live node sees every live node ALIVE;
 *   6. restart C with no memory: incarnation 0 (nothing kept), its last
 *      incarnation + 1 (a persisted counter) or a wall-clock-like number;
 *      RESTART: everyone, C included, sees everyone ALIVE within T_r;
 *   7. partition into two random groups, chaos inside each: COMPLETENESS
 *      across the cut;
 *   8. heal, quiet for H: every node sees every node ALIVE.
 *
 * Bounds (I probe interval = 1 s, S suspicion timeout, n nodes, D_q = 120
 * ms the quiet one-way delay cap, D_c = 2 s the chaotic one):
 *
 *   - COMPLETENESS, checked after every event: a node p that cannot reach
 *     q since time t (q crashed, or on the other side of a partition) has
 *     q DEAD by max(t, r) + (2n - 2) I + S, where r is the last time p's
 *     record of q took a higher incarnation. Why: every probe p starts
 *     after t fails; p probes q once per shuffled round of n - 1 slots, so
 *     two probes of q are at most 2(n-1)-1 slots apart and the first one
 *     after max(t, r) ends by max(t, r) + (2n - 2) I, leaving q SUSPECT at
 *     an incarnation only q could raise; S later it is DEAD.
 *   - Healing, H = I + D_c + (4n - 6) I + 3 D_q: after I + D_c no old
 *     message is in flight and no probe begun before the quiet can still
 *     fail; each holder of the highest non-ALIVE record about q pings q
 *     within one window of (2n - 3) I + D_q and q refutes above it; then
 *     every p pings q within one more window and q's ack (2 D_q) carries
 *     an incarnation that beats every record left.
 *   - RESTART with incarnation 0: T_r = I + (4n - 6) I + 3 D_q, the same
 *     two windows. With an incarnation above its last (persisted counter,
 *     wall clock): T_r = (n - 1) I + D_q, because C pings everyone in its
 *     first round and its incarnation alone beats every DEAD record.
 *
 *   - DISSEMINATION, over a whole run of at least 16 cases: the time from
 *     the first to the last observer finding one unreachable node DEAD,
 *     divided by (2n - 3) I (how far two own probe schedules can differ),
 *     averages under 0.25: observers hear of a suspicion or a death
 *     through gossip instead of each finding out alone (~0.12 measured,
 *     ~0.39 with piggybacking off). Statistical, hence only in aggregate;
 *     every other check holds in every case by the arguments above.
 *
 * Along the way, after every call: each message is at most
 * SWIM_MSG_SIZE_FOR(piggyback_max) <= SWIM_MSG_SIZE_MAX bytes and
 * decodes and re-encodes to the same bytes; every record a node holds only
 * grows in (incarnation, rank); events report each state change exactly
 * once (a mirror built from events alone equals swim_state()); a node's
 * own incarnation never decreases within a life; after a tick the next
 * deadline is in the future (an adapter never spins); and every message
 * the encoder made is accepted by its receiver.
 *
 * Environment: MRD_TEST_SEED=<n> replays one case (its seed is printed on
 * any failure); MRD_SWIM_CASES=<n> sets the number of cases (default 128,
 * seeds drawn from the clock and printed); MRD_SWIM_TRACE=1 prints every
 * delivery, event, crash and restart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "swim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SIM_NODES_MIN 3u
#define SIM_NODES_MAX 12u
#define SIM_D_QUIET_MS 120u /* RTT 240 < probe timeout; 4 trips < rest */
#define SIM_D_SPIKE_MS 2000u /* late messages in chaotic phases */
#define SIM_DEFAULT_CASES 128u /* ~8 s under ASan */
/* Mean of (last - first observer to find a node DEAD) / ((2n - 3) I) over
 * a run: ~0.12 measured, ~0.39 with piggybacked gossip disabled. */
#define SIM_SPREAD_MEAN_MAX 0.25
#define SIM_DETECT_CAP_MS (600u * 1000u) /* a phase that never ends */
#define SIM_I_MS ((uint64_t) SWIM_PROBE_INTERVAL_MS_DEFAULT)
#define SIM_CLOCK_INC_BASE (UINT64_C(1700000000000)) /* wall-clock-like */

_Static_assert(2u * SIM_D_QUIET_MS < SWIM_PROBE_TIMEOUT_MS_DEFAULT,
    "a quiet direct probe never times out");
_Static_assert(4u * SIM_D_QUIET_MS
        < SWIM_PROBE_INTERVAL_MS_DEFAULT - SWIM_PROBE_TIMEOUT_MS_DEFAULT,
    "a quiet indirect probe answers within the interval");

static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z          = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z          = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* ------------------------------------------------------ simulation -- */

struct sim_msg {
    uint32_t from;
    uint32_t to;
    uint32_t len;
    uint8_t  bytes[SWIM_MSG_SIZE_MAX];
};

enum sim_ev_kind { SIM_EV_TICK, SIM_EV_DELIVER, SIM_EV_TOPO_FETCH };

struct sim_ev {
    uint64_t         at;
    uint64_t         order; /* ties: first scheduled, first run */
    enum sim_ev_kind kind;
    uint32_t         node;
    uint64_t         gen; /* TICK: valid when == node's tick_gen */
    uint64_t         topo; /* TOPO_FETCH: the version fetched */
    struct sim_msg  *msg; /* DELIVER */
};

struct sim_node {
    struct swim    *swim; /* NULL while crashed */
    uint64_t        id;
    uint64_t        tick_at;
    uint64_t        tick_gen;
    uint64_t        own_inc; /* within this life */
    uint64_t        topo_event; /* highest version an event reported */
    enum swim_state view[SIM_NODES_MAX]; /* built from events only */
    enum swim_state rec_state[SIM_NODES_MAX];
    uint64_t        rec_inc[SIM_NODES_MAX];
    uint64_t        raised_at[SIM_NODES_MAX]; /* record got a higher inc */
    uint64_t        dead_at[SIM_NODES_MAX]; /* found unreachable q DEAD */
    int             group;
};

struct sim_net {
    uint32_t loss_pm; /* per mille, at send */
    uint32_t dup_pm;
    uint32_t spike_pm;
    uint32_t delay_max_ms;
    bool     partitioned; /* groups may not talk, at delivery */
    int      cut_a; /* -1, or a link that drops both ways, at delivery */
    int      cut_b;
};

/* What the whole run saw, to print and to check that cases did exercise
 * what they claim to. */
static struct {
    uint64_t cases, events, msgs, dropped, msg_size_max;
    uint64_t suspicions, deaths, refutations, indirect, stale_acks;
    uint64_t detect_max_ms, detect_bound_ms; /* worst crash detection */
    uint64_t heal_max_ms, heal_bound_ms; /* worst all-ALIVE convergence */
    uint64_t restart_max_ms, restart_bound_ms;
    uint64_t quick_restarts, incarnation_variants[3];
    double   detect_ratio_sum; /* detection time / own-probe bound */
    uint64_t detect_count;
    double   spread_ratio_sum; /* first to last observer / (2n - 3) I */
    uint64_t spread_count;
} total;

struct sim {
    uint64_t           seed;
    uint64_t           rng;
    uint64_t           now;
    uint64_t           order;
    uint32_t           n;
    struct swim_config cfg; /* shared by all nodes but ids, seeds, incs */
    struct sim_node    node[SIM_NODES_MAX];
    uint64_t           ids[SIM_NODES_MAX];
    uint64_t           down_since[SIM_NODES_MAX]; /* UINT64_MAX: up */
    uint64_t           part_since;
    struct sim_net     net;
    struct sim_ev     *heap;
    size_t             heap_len;
    size_t             heap_cap;
    const char        *phase;
    bool               must_stay_alive; /* the cut-link phase */
    uint64_t           converged_at; /* first time all live see all ALIVE */
    struct swim_out    out;
};

static struct sim *g_sim; /* for failure messages */
static bool        g_trace; /* MRD_SWIM_TRACE=1: print every step */

static void MRD_PRINTF(3, 4)
    sim_fail(int line, const char *expr, const char *fmt, ...)
{
    char    detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    if (g_sim == NULL) {
        fail_msg("swim_sim_test.c:%d: %s failed: %s", line, expr, detail);
    }
    fail_msg("swim_sim_test.c:%d: %s failed: %s [phase %s, t=%llu ms, "
             "%u nodes; replay with MRD_TEST_SEED=%llu]",
        line, expr, detail, g_sim->phase, (unsigned long long) g_sim->now,
        g_sim->n, (unsigned long long) g_sim->seed);
}

#define SCHECKF(c, ...)                                                        \
    do {                                                                       \
        if (!(c)) {                                                            \
            sim_fail(__LINE__, #c, __VA_ARGS__);                               \
        }                                                                      \
    } while (0)
#define SCHECK(c) SCHECKF(c, "%s", "-")

static uint32_t
sim_rand_below(struct sim *s, uint32_t n)
{
    return (uint32_t) (splitmix64(&s->rng) % n);
}

static bool
sim_chance_pm(struct sim *s, uint32_t pm)
{
    return sim_rand_below(s, 1000) < pm;
}

static uint32_t
sim_index(const struct sim *s, uint64_t id)
{
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->ids[i] == id) {
            return i;
        }
    }
    SCHECKF(
        false, "id %llu is no node of the simulation", (unsigned long long) id);
    return 0;
}

/* --------------------------------------------------------- event heap -- */

static bool
sim_ev_before(const struct sim_ev *a, const struct sim_ev *b)
{
    return a->at < b->at || (a->at == b->at && a->order < b->order);
}

static void
sim_push(struct sim *s, struct sim_ev ev)
{
    if (s->heap_len == s->heap_cap) {
        s->heap_cap = s->heap_cap == 0 ? 1024 : s->heap_cap * 2;
        s->heap     = realloc(s->heap, s->heap_cap * sizeof *s->heap);
        assert_non_null(s->heap);
    }
    ev.order   = s->order++;
    size_t i   = s->heap_len++;
    s->heap[i] = ev;
    while (i > 0 && sim_ev_before(&s->heap[i], &s->heap[(i - 1) / 2])) {
        struct sim_ev t      = s->heap[i];
        s->heap[i]           = s->heap[(i - 1) / 2];
        s->heap[(i - 1) / 2] = t;
        i                    = (i - 1) / 2;
    }
}

static struct sim_ev
sim_pop(struct sim *s)
{
    struct sim_ev top = s->heap[0];
    s->heap[0]        = s->heap[--s->heap_len];
    size_t i          = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        size_t r = l + 1;
        size_t m = i;
        if (l < s->heap_len && sim_ev_before(&s->heap[l], &s->heap[m])) {
            m = l;
        }
        if (r < s->heap_len && sim_ev_before(&s->heap[r], &s->heap[m])) {
            m = r;
        }
        if (m == i) {
            break;
        }
        struct sim_ev t = s->heap[i];
        s->heap[i]      = s->heap[m];
        s->heap[m]      = t;
        i               = m;
    }
    return top;
}

/* ------------------------------------------------------------- network -- */

static void
sim_net_quiet(struct sim *s)
{
    s->net.loss_pm  = 0;
    s->net.spike_pm = 0;
}

static void
sim_net_chaos(struct sim *s, uint32_t loss_pm, uint32_t spike_pm)
{
    s->net.loss_pm  = loss_pm;
    s->net.spike_pm = spike_pm;
}

static void
sim_send(struct sim *s, uint32_t from, const struct swim_out_msg *o)
{
    uint32_t to = sim_index(s, o->to);

    SCHECK(to != from);
    total.msgs++;
    if (sim_chance_pm(s, s->net.loss_pm)) {
        total.dropped++;
        return;
    }
    int copies = sim_chance_pm(s, s->net.dup_pm) ? 2 : 1;
    for (int c = 0; c < copies; c++) {
        struct sim_msg *m = malloc(sizeof *m);
        assert_non_null(m);
        m->from = from;
        m->to   = to;
        m->len  = o->len;
        memcpy(m->bytes, o->bytes, o->len);
        uint64_t delay = 1 + sim_rand_below(s, s->net.delay_max_ms);
        if (sim_chance_pm(s, s->net.spike_pm)) {
            delay = 1 + sim_rand_below(s, SIM_D_SPIKE_MS);
        }
        sim_push(s,
            (struct sim_ev) { .at = s->now + delay,
                .kind             = SIM_EV_DELIVER,
                .node             = to,
                .msg              = m });
    }
}

static bool
sim_link_up(const struct sim *s, uint32_t a, uint32_t b)
{
    if (s->net.partitioned && s->node[a].group != s->node[b].group) {
        return false;
    }
    return !((int) a == s->net.cut_a && (int) b == s->net.cut_b)
        && !((int) a == s->net.cut_b && (int) b == s->net.cut_a);
}

/* ------------------------------------------------------- node checks -- */

/* Every message: within its size bound, and the codec is a bijection on
 * what the encoder makes. */
static void
sim_check_msg(struct sim *s, const struct swim_out_msg *o)
{
    struct swim_msg m;
    uint8_t         again[SWIM_MSG_SIZE_MAX];
    size_t          len = 0;
    const char     *why = NULL;

    SCHECKF(o->len <= SWIM_MSG_SIZE_FOR(s->cfg.piggyback_max),
        "message of %u bytes", o->len);
    SCHECK(o->len <= SWIM_MSG_SIZE_MAX);
    if (o->len > total.msg_size_max) {
        total.msg_size_max = o->len;
    }
    int rv = swim_msg_decode(o->bytes, o->len, &m, &why);
    SCHECKF(rv == MRD_OK, "own message refused: %s", why);
    SCHECK(m.update_count <= s->cfg.piggyback_max);
    SCHECK(swim_msg_encode(&m, again, sizeof again, &len) == MRD_OK);
    SCHECK(len == o->len && memcmp(again, o->bytes, len) == 0);
}

static uint64_t sim_unreachable_since(
    const struct sim *s, uint32_t p, uint32_t q);

/* How long p took to find an unreachable q DEAD, for the report. */
static void
sim_note_detection(struct sim *s, uint32_t p, uint32_t q, enum swim_state st)
{
    uint64_t since = sim_unreachable_since(s, p, q);
    if (st != SWIM_DEAD || since == UINT64_MAX) {
        return;
    }
    s->node[p].dead_at[q] = s->now;
    if (s->now - since > total.detect_max_ms) {
        total.detect_max_ms = s->now - since;
    }
    uint64_t own = (2 * s->n - 2) * SIM_I_MS
        + swim_suspicion_timeout_ms(s->node[p].swim);
    total.detect_ratio_sum += (double) (s->now - since) / (double) own;
    total.detect_count++;
}

static void
sim_check_events(struct sim *s, uint32_t p)
{
    struct sim_node *nd = &s->node[p];

    for (uint32_t k = 0; k < s->out.event_count; k++) {
        const struct swim_event *e = &s->out.event[k];
        if (g_trace) {
            printf("%8llu  node %u: event %d about %llu: state %d inc %llu\n",
                (unsigned long long) s->now, p, (int) e->kind,
                (unsigned long long) e->id, (int) e->state,
                (unsigned long long) e->incarnation);
        }
        switch (e->kind) {
        case SWIM_EV_MEMBER: {
            uint32_t j = sim_index(s, e->id);
            SCHECKF(j != p, "a member event about self");
            SCHECKF(e->state != nd->view[j], "event without a change");
            nd->view[j] = e->state;
            sim_note_detection(s, p, j, e->state);
            break;
        }
        case SWIM_EV_REFUTED:
            SCHECK(e->id == nd->id && e->incarnation > nd->own_inc);
            nd->own_inc = e->incarnation;
            break;
        case SWIM_EV_TOPO:
            SCHECK(e->topo_version > nd->topo_event);
            nd->topo_event = e->topo_version;
            /* The adapter fetches the signed topology from the sender;
             * here the fetch takes one quiet delay. */
            sim_push(s,
                (struct sim_ev) { .at = s->now + SIM_D_QUIET_MS,
                    .kind             = SIM_EV_TOPO_FETCH,
                    .node             = p,
                    .topo             = e->topo_version });
            break;
        }
    }
}

/* Records only grow; the event mirror equals the state; self is ALIVE. */
static void
sim_check_records(struct sim *s, uint32_t p)
{
    struct sim_node *nd = &s->node[p];

    SCHECK(swim_incarnation(nd->swim) == nd->own_inc);
    for (uint32_t j = 0; j < s->n; j++) {
        enum swim_state st;
        uint64_t        inc;
        SCHECK(swim_member_get(nd->swim, s->ids[j], &st, &inc) == MRD_OK);
        SCHECK(swim_state(nd->swim, s->ids[j]) == st);
        if (j == p) {
            SCHECK(st == SWIM_ALIVE && inc == nd->own_inc);
            continue;
        }
        SCHECKF(st == nd->view[j], "node %u: events say %d, state %d of %u", p,
            (int) nd->view[j], (int) st, j);
        SCHECKF(inc > nd->rec_inc[j]
                || (inc == nd->rec_inc[j] && st >= nd->rec_state[j]),
            "node %u's record of %u went back: (%llu,%d) -> (%llu,%d)", p, j,
            (unsigned long long) nd->rec_inc[j], (int) nd->rec_state[j],
            (unsigned long long) inc, (int) st);
        if (inc > nd->rec_inc[j]) {
            nd->raised_at[j] = s->now;
        }
        nd->rec_inc[j]   = inc;
        nd->rec_state[j] = st;
    }
}

/* After a call on node p: check its outputs, send, and reschedule. */
static void
sim_after_call(struct sim *s, uint32_t p, bool ticked)
{
    struct sim_node *nd = &s->node[p];

    for (uint32_t k = 0; k < s->out.msg_count; k++) {
        sim_check_msg(s, &s->out.msg[k]);
    }
    sim_check_events(s, p);
    sim_check_records(s, p);
    for (uint32_t k = 0; k < s->out.msg_count; k++) {
        sim_send(s, p, &s->out.msg[k]);
    }
    /* After a tick every due timer ran, so an adapter sleeping until the
     * next deadline never spins; a receive runs no timer, and one due at
     * this very millisecond may still wait for its tick. */
    uint64_t d = swim_next_deadline(nd->swim);
    SCHECKF(d > s->now || (!ticked && d == s->now),
        "next deadline %llu is before now", (unsigned long long) d);
    if (d != nd->tick_at) {
        nd->tick_at = d;
        nd->tick_gen++;
        sim_push(s,
            (struct sim_ev) { .at = d > s->now ? d : s->now,
                .kind             = SIM_EV_TICK,
                .node             = p,
                .gen              = nd->tick_gen });
    }
}

/* ------------------------------------------------------ node lifecycle -- */

static void
sim_node_start(struct sim *s, uint32_t p, uint64_t incarnation)
{
    struct sim_node   *nd  = &s->node[p];
    struct swim_config cfg = s->cfg;

    cfg.self_id     = nd->id;
    cfg.incarnation = incarnation;
    cfg.seed        = splitmix64(&s->rng);
    SCHECK(swim_create(&cfg, s->now, &nd->swim) == MRD_OK);
    SCHECK(swim_set_members(nd->swim, s->ids, s->n) == MRD_OK);
    SCHECK(swim_member_count(nd->swim) == s->n);
    nd->own_inc    = incarnation;
    nd->topo_event = 0;
    for (uint32_t j = 0; j < s->n; j++) {
        nd->view[j]      = SWIM_ALIVE; /* members start presumed ALIVE */
        nd->rec_state[j] = SWIM_ALIVE;
        nd->rec_inc[j]   = j == p ? incarnation : 0;
        nd->raised_at[j] = s->now;
    }
    sim_check_records(s, p);
    nd->tick_at      = UINT64_MAX;
    s->down_since[p] = UINT64_MAX;
    swim_set_topo_version(nd->swim, 1);
    s->out.msg_count   = 0;
    s->out.event_count = 0;
    sim_after_call(s, p, false);
}

static void
sim_stats_add(const struct swim *sw)
{
    const struct swim_stats *st = swim_stats_get(sw);
    total.suspicions += st->suspicions;
    total.deaths += st->deaths;
    total.refutations += st->refutations;
    total.indirect += st->probes_indirect;
    total.stale_acks += st->stale_acks;
}

static void
sim_node_crash(struct sim *s, uint32_t p)
{
    sim_stats_add(s->node[p].swim);
    swim_destroy(s->node[p].swim);
    s->node[p].swim  = NULL;
    s->down_since[p] = s->now;
}

/* ----------------------------------------------------------- checking -- */

/* Since when p cannot reach q (crashed, or across a partition), or
 * UINT64_MAX. */
static uint64_t
sim_unreachable_since(const struct sim *s, uint32_t p, uint32_t q)
{
    uint64_t since = s->down_since[q];
    if (s->net.partitioned && s->node[p].group != s->node[q].group
        && s->part_since < since) {
        since = s->part_since;
    }
    return since;
}

/* When p's view of q must be DEAD by, or UINT64_MAX when q is reachable. */
static uint64_t
sim_dead_deadline(const struct sim *s, uint32_t p, uint32_t q)
{
    uint64_t since = sim_unreachable_since(s, p, q);
    if (since == UINT64_MAX) {
        return UINT64_MAX;
    }
    uint64_t r = s->node[p].raised_at[q];
    uint64_t t = since > r ? since : r;
    return t + (2 * s->n - 2) * SIM_I_MS
        + swim_suspicion_timeout_ms(s->node[p].swim);
}

static bool
sim_all_alive(const struct sim *s)
{
    for (uint32_t p = 0; p < s->n; p++) {
        for (uint32_t q = 0; q < s->n && s->node[p].swim != NULL; q++) {
            if (s->node[q].swim != NULL
                && swim_state(s->node[p].swim, s->ids[q]) != SWIM_ALIVE) {
                return false;
            }
        }
    }
    return true;
}

/* After every event: completeness, the cut-link rule, convergence. */
static void
sim_check_continuous(struct sim *s)
{
    for (uint32_t p = 0; p < s->n; p++) {
        if (s->node[p].swim == NULL) {
            continue;
        }
        for (uint32_t q = 0; q < s->n; q++) {
            if (q == p) {
                continue;
            }
            enum swim_state st = swim_state(s->node[p].swim, s->ids[q]);
            uint64_t        dl = sim_dead_deadline(s, p, q);
            SCHECKF(st == SWIM_DEAD || s->now <= dl,
                "COMPLETENESS: node %u still sees unreachable node %u as %d "
                "at %llu, bound %llu",
                p, q, (int) st, (unsigned long long) s->now,
                (unsigned long long) dl);
            SCHECKF(!s->must_stay_alive || st == SWIM_ALIVE,
                "a cut link (%d-%d) made node %u see node %u as %d",
                s->net.cut_a, s->net.cut_b, p, q, (int) st);
        }
    }
    bool all = sim_all_alive(s);
    if (!all) {
        s->converged_at = UINT64_MAX;
    } else if (s->converged_at == UINT64_MAX) {
        s->converged_at = s->now;
    }
}

static void
sim_step(struct sim *s, struct sim_ev ev)
{
    struct sim_node *nd  = &s->node[ev.node];
    const char      *why = NULL;

    s->now = ev.at;
    total.events++;
    switch (ev.kind) {
    case SIM_EV_TICK:
        if (nd->swim == NULL || ev.gen != nd->tick_gen) {
            return; /* stale */
        }
        swim_tick(nd->swim, s->now, &s->out);
        sim_after_call(s, ev.node, true);
        break;
    case SIM_EV_DELIVER:
        if (g_trace) {
            struct swim_msg m;
            SCHECK(swim_msg_decode(ev.msg->bytes, ev.msg->len, &m, NULL)
                == MRD_OK);
            printf("%8llu  %u -> %u%s: type %d seq %u target %llu inc %llu "
                   "updates %u:",
                (unsigned long long) s->now, ev.msg->from, ev.node,
                nd->swim != NULL && sim_link_up(s, ev.msg->from, ev.node)
                    ? ""
                    : " (dropped)",
                (int) m.type, m.seq, (unsigned long long) m.target,
                (unsigned long long) m.incarnation, m.update_count);
            for (uint32_t i = 0; i < m.update_count; i++) {
                printf(" %llu:%d@%llu", (unsigned long long) m.update[i].id,
                    (int) m.update[i].state,
                    (unsigned long long) m.update[i].incarnation);
            }
            printf("\n");
        }
        if (nd->swim != NULL && sim_link_up(s, ev.msg->from, ev.node)) {
            int rv = swim_recv(nd->swim, s->now, s->ids[ev.msg->from],
                ev.msg->bytes, ev.msg->len, &s->out, &why);
            SCHECKF(rv == MRD_OK, "recv refused a real message: %s", why);
            sim_after_call(s, ev.node, false);
        }
        free(ev.msg);
        break;
    case SIM_EV_TOPO_FETCH:
        if (nd->swim != NULL) {
            swim_set_topo_version(nd->swim, ev.topo);
        }
        return;
    }
    sim_check_continuous(s);
}

static void
sim_run_until(struct sim *s, uint64_t t)
{
    while (s->heap_len > 0 && s->heap[0].at <= t) {
        sim_step(s, sim_pop(s));
    }
    s->now = t;
    sim_check_continuous(s); /* even if no event came */
}

/* For each unreachable node, the time from the first observer finding it
 * DEAD to the last, against the most two own probe schedules can differ:
 * gossip makes the others hear of it rather than each find out alone. */
static void
sim_note_spread(struct sim *s, uint64_t start)
{
    for (uint32_t q = 0; q < s->n; q++) {
        uint64_t first = UINT64_MAX;
        uint64_t last  = 0;
        for (uint32_t p = 0; p < s->n; p++) {
            if (p == q || s->node[p].swim == NULL
                || sim_dead_deadline(s, p, q) == UINT64_MAX) {
                continue;
            }
            /* Earlier than start: it already held q DEAD (a false death
             * not yet refuted) when q became unreachable. */
            uint64_t t = s->node[p].dead_at[q];
            t          = t < start ? start : t;
            SCHECK(t <= s->now);
            first = t < first ? t : first;
            last  = t > last ? t : last;
        }
        if (first != UINT64_MAX) {
            total.spread_ratio_sum += (double) (last - first)
                / (double) ((2 * s->n - 3) * SIM_I_MS);
            total.spread_count++;
        }
    }
}

/* Runs until every node that cannot reach someone has it DEAD (the bound
 * itself is checked after every event) and old messages have drained. */
static void
sim_run_until_detected(struct sim *s)
{
    uint64_t start = s->now;
    for (;;) {
        bool done = s->now >= start + SIM_D_SPIKE_MS;
        for (uint32_t p = 0; p < s->n && done; p++) {
            for (uint32_t q = 0; q < s->n && s->node[p].swim != NULL; q++) {
                if (q != p && sim_dead_deadline(s, p, q) != UINT64_MAX
                    && swim_state(s->node[p].swim, s->ids[q]) != SWIM_DEAD) {
                    done = false;
                }
            }
        }
        if (done) {
            sim_note_spread(s, start);
            return;
        }
        SCHECKF(s->now < start + SIM_DETECT_CAP_MS, "never detected");
        sim_run_until(s, s->now + 100);
    }
}

static uint64_t
sim_heal_bound(const struct sim *s)
{
    return SIM_I_MS + SIM_D_SPIKE_MS + (4 * s->n - 6) * SIM_I_MS
        + 3 * SIM_D_QUIET_MS;
}

/* Quiet for `bound` ms, then everyone live must see everyone live ALIVE. */
static void
sim_quiet_until_alive(struct sim *s, uint64_t bound, uint64_t *max_ms)
{
    uint64_t start = s->now;

    sim_net_quiet(s);
    s->converged_at = sim_all_alive(s) ? start : UINT64_MAX;
    sim_run_until(s, start + bound);
    for (uint32_t p = 0; p < s->n; p++) {
        for (uint32_t q = 0; q < s->n && s->node[p].swim != NULL; q++) {
            enum swim_state st = s->node[q].swim == NULL
                ? SWIM_ALIVE
                : swim_state(s->node[p].swim, s->ids[q]);
            SCHECKF(st == SWIM_ALIVE,
                "node %u sees live node %u as %d %llu ms after the network "
                "went quiet (bound %llu)",
                p, q, (int) st, (unsigned long long) (s->now - start),
                (unsigned long long) bound);
        }
    }
    SCHECK(s->converged_at != UINT64_MAX);
    if (s->converged_at - start > *max_ms) {
        *max_ms = s->converged_at - start;
    }
}

/* ------------------------------------------------------------ phases -- */

static void
sim_setup(struct sim *s, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->seed       = seed;
    s->rng        = seed;
    s->n          = SIM_NODES_MIN + sim_rand_below(s, SIM_NODES_MAX - 2);
    s->part_since = UINT64_MAX;
    s->net.cut_a  = -1;
    s->net.cut_b  = -1;
    s->phase      = "setup";
    static const uint32_t piggy[] = { 1, 2, 4, 16, 32 };
    swim_config_default(&s->cfg, 1, 0, 0);
    s->cfg.indirect_count  = 1 + sim_rand_below(s, 3);
    s->cfg.suspicion_mult  = 1 + sim_rand_below(s, 4);
    s->cfg.retransmit_mult = 1 + sim_rand_below(s, 4);
    s->cfg.piggyback_max   = piggy[sim_rand_below(s, 5)];
    s->net.dup_pm          = sim_rand_below(s, 51);
    s->net.delay_max_ms    = 20 + sim_rand_below(s, SIM_D_QUIET_MS - 19);
    for (uint32_t i = 0; i < s->n; i++) {
        uint64_t id;
        bool     fresh;
        do { /* sparse ids, a few of them wide */
            id = 1 + sim_rand_below(s, 1000);
            if (sim_chance_pm(s, 200)) {
                id += UINT64_C(1) << 40;
            }
            fresh = true;
            for (uint32_t j = 0; j < i; j++) {
                fresh = fresh && s->ids[j] != id;
            }
        } while (!fresh);
        s->ids[i]        = id;
        s->node[i].id    = id;
        s->down_since[i] = UINT64_MAX;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        /* Some nodes start at high incarnations, as after a restart. */
        uint64_t inc = sim_chance_pm(s, 300) ? sim_rand_below(s, 100) : 0;
        sim_node_start(s, i, inc);
    }
}

static void
sim_phase_accuracy(struct sim *s, uint32_t loss_pm, uint32_t spike_pm)
{
    s->phase = "1 chaos";
    sim_net_chaos(s, loss_pm, spike_pm);
    sim_run_until(s, s->now + 10000 + sim_rand_below(s, 20000));

    /* A new topology appears on one node; the others must learn of it. */
    s->phase       = "2 quiet (accuracy)";
    uint32_t first = sim_rand_below(s, s->n);
    swim_set_topo_version(s->node[first].swim, 2);
    total.heal_bound_ms = sim_heal_bound(s) > total.heal_bound_ms
        ? sim_heal_bound(s)
        : total.heal_bound_ms;
    sim_quiet_until_alive(s, sim_heal_bound(s), &total.heal_max_ms);
    for (uint32_t p = 0; p < s->n; p++) {
        uint64_t v;
        uint64_t from;
        swim_topo_seen(s->node[p].swim, &v, &from);
        SCHECKF(v == 2, "node %u saw topology %llu", p, (unsigned long long) v);
        SCHECK(from == 0); /* it fetched it: its own is the highest */
    }
}

static void
sim_phase_cut(struct sim *s)
{
    s->phase     = "3 cut link";
    s->net.cut_a = (int) sim_rand_below(s, s->n);
    s->net.cut_b
        = (int) ((s->net.cut_a + 1 + sim_rand_below(s, s->n - 1)) % s->n);
    SCHECK(sim_all_alive(s));
    s->must_stay_alive = true;
    sim_run_until(s, s->now + 2 * (2 * s->n - 2) * SIM_I_MS);
    s->must_stay_alive = false;
    s->net.cut_a       = -1;
    s->net.cut_b       = -1;
}

/* Restart C with one of the three incarnation choices; check T_r. A quick
 * restart comes straight out of chaos (late messages, probes that lost
 * their ack) and gets the healing bound H instead. */
static void
sim_restart(struct sim *s, uint32_t c, uint64_t last_inc, bool quick)
{
    uint32_t variant = sim_rand_below(s, 3);
    uint64_t inc     = variant == 0 ? 0
            : variant == 1          ? last_inc + 1
                                    : SIM_CLOCK_INC_BASE + s->now;
    uint64_t bound   = variant == 0
          ? SIM_I_MS + (4 * s->n - 6) * SIM_I_MS + 3 * SIM_D_QUIET_MS
          : (s->n - 1) * SIM_I_MS + SIM_D_QUIET_MS;

    if (quick) {
        bound = sim_heal_bound(s);
    }
    total.incarnation_variants[variant]++;
    if (g_trace) {
        printf("%8llu  restart node %u (id %llu) at incarnation %llu\n",
            (unsigned long long) s->now, c, (unsigned long long) s->ids[c],
            (unsigned long long) inc);
    }
    s->phase = variant == 0 ? "6 restart, incarnation 0"
        : variant == 1      ? "6 restart, persisted incarnation"
                            : "6 restart, clock incarnation";
    sim_net_quiet(s);
    sim_node_start(s, c, inc);
    if (!quick && bound > total.restart_bound_ms) {
        total.restart_bound_ms = bound;
    }
    sim_quiet_until_alive(
        s, bound, quick ? &total.heal_max_ms : &total.restart_max_ms);
}

static void
sim_phase_crash(struct sim *s, uint32_t loss_pm, uint32_t spike_pm)
{
    uint32_t c = sim_rand_below(s, s->n);

    s->phase = "4 crash (completeness)";
    sim_net_chaos(s, loss_pm, spike_pm);
    sim_run_until(s, s->now + sim_rand_below(s, 5000));
    uint64_t last_inc = swim_incarnation(s->node[c].swim);
    sim_node_crash(s, c);
    if (g_trace) {
        printf("%8llu  crash node %u\n", (unsigned long long) s->now, c);
    }
    if (sim_chance_pm(s, 333)) { /* back before, or just after, detection */
        total.quick_restarts++;
        sim_run_until(s, s->now + sim_rand_below(s, 2 * s->n * SIM_I_MS));
        sim_restart(s, c, last_inc, true);
        return;
    }
    sim_run_until_detected(s);
    uint64_t bound = (2 * s->n - 2) * SIM_I_MS
        + swim_suspicion_timeout_ms(s->node[(c + 1) % s->n].swim);
    if (bound > total.detect_bound_ms) {
        total.detect_bound_ms = bound;
    }
    s->phase = "5 quiet after crash";
    sim_quiet_until_alive(s, sim_heal_bound(s), &total.heal_max_ms);
    sim_restart(s, c, last_inc, false);
}

static void
sim_phase_partition(struct sim *s, uint32_t loss_pm, uint32_t spike_pm)
{
    s->phase = "7 partition (completeness)";
    /* Two non-empty groups of any sizes. */
    uint32_t lone = sim_rand_below(s, s->n);
    for (uint32_t i = 0; i < s->n; i++) {
        s->node[i].group = i == lone ? 1 : (int) sim_rand_below(s, 2);
    }
    s->node[(lone + 1) % s->n].group = 0;
    sim_net_chaos(s, loss_pm, spike_pm);
    s->net.partitioned = true;
    s->part_since      = s->now;
    sim_run_until_detected(s);
    sim_run_until(s, s->now + sim_rand_below(s, 5000));

    s->phase           = "8 heal";
    s->net.partitioned = false;
    s->part_since      = UINT64_MAX;
    sim_quiet_until_alive(s, sim_heal_bound(s), &total.heal_max_ms);
}

static void
sim_teardown(struct sim *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->node[i].swim != NULL) {
            sim_stats_add(s->node[i].swim);
            swim_destroy(s->node[i].swim);
        }
    }
    while (s->heap_len > 0) {
        struct sim_ev ev = sim_pop(s);
        free(ev.msg);
    }
    free(s->heap);
}

static void
sim_case(uint64_t seed)
{
    static struct sim s; /* ~250 KiB: off the stack */

    g_sim = &s;
    sim_setup(&s, seed);
    uint32_t loss_pm  = sim_rand_below(&s, 101);
    uint32_t spike_pm = sim_rand_below(&s, 21);
    sim_phase_accuracy(&s, loss_pm, spike_pm);
    sim_phase_cut(&s);
    sim_phase_crash(&s, loss_pm, spike_pm);
    sim_phase_partition(&s, loss_pm, spike_pm);
    sim_teardown(&s);
    g_sim = NULL;
    total.cases++;
}

/* -------------------------------------------------------- hand cases -- */

/* Builds and sends a crafted message from `from` to sw; returns swim_recv's
 * result. */
static int
hand_recv(struct swim *sw, uint64_t now, uint64_t from, struct swim_msg *m,
    struct swim_out *out)
{
    uint8_t     buf[SWIM_MSG_SIZE_MAX];
    size_t      len = 0;
    const char *why = NULL;

    assert_int_equal(swim_msg_encode(m, buf, sizeof buf, &len), MRD_OK);
    return swim_recv(sw, now, from, buf, len, out, &why);
}

static struct swim *
hand_node(uint64_t self, uint64_t inc, const uint64_t *ids, size_t n)
{
    struct swim_config cfg;
    struct swim       *sw = NULL;
    swim_config_default(&cfg, self, inc, 42);
    assert_int_equal(swim_create(&cfg, 0, &sw), MRD_OK);
    assert_int_equal(swim_set_members(sw, ids, n), MRD_OK);
    return sw;
}

static struct swim_msg
hand_msg(enum swim_type type, uint64_t target, uint64_t inc)
{
    struct swim_msg m;
    memset(&m, 0, sizeof m);
    m.type        = type;
    m.seq         = 7;
    m.target      = target;
    m.incarnation = inc;
    return m;
}

static void
hand_update(struct swim_msg *m, uint64_t id, enum swim_state st, uint64_t inc)
{
    m->update[m->update_count].id          = id;
    m->update[m->update_count].state       = st;
    m->update[m->update_count].incarnation = inc;
    m->update_count++;
}

static void
assert_msg_equal(const struct swim_msg *a, const struct swim_msg *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->seq, b->seq);
    assert_true(a->target == b->target);
    assert_true(a->incarnation == b->incarnation);
    assert_true(a->topo_version == b->topo_version);
    assert_int_equal(a->update_count, b->update_count);
    for (uint32_t i = 0; i < a->update_count; i++) {
        assert_true(a->update[i].id == b->update[i].id);
        assert_int_equal(a->update[i].state, b->update[i].state);
        assert_true(a->update[i].incarnation == b->update[i].incarnation);
    }
}

static void
test_codec_round_trip(void **state)
{
    struct swim_msg m = hand_msg(SWIM_T_PING_REQ, UINT64_MAX, 5);
    struct swim_msg d;
    uint8_t         buf[SWIM_MSG_SIZE_MAX];
    size_t          len = 0;
    (void) state;

    m.seq          = UINT32_MAX;
    m.topo_version = UINT64_MAX;
    m.incarnation  = SWIM_INCARNATION_MAX;
    for (uint32_t i = 0; i < SWIM_PIGGYBACK_MAX; i++) {
        hand_update(&m, UINT64_MAX - i, (enum swim_state)(1 + i % 3),
            SWIM_INCARNATION_MAX - i);
    }
    assert_int_equal(swim_msg_encode(&m, buf, sizeof buf, &len), MRD_OK);
    /* The widest message, every field in its widest encoding, is exactly
     * the bound: the bound is tight. */
    assert_int_equal(len, SWIM_MSG_SIZE_FOR(SWIM_PIGGYBACK_MAX));
    assert_int_equal(swim_msg_decode(buf, len, &d, NULL), MRD_OK);
    assert_msg_equal(&m, &d);
    /* Too small a buffer is refused, not overrun. */
    assert_int_equal(swim_msg_encode(&m, buf, len - 1, &len), MRD_ETOOBIG);
    /* The smallest: a ping with no updates is 8 bytes. */
    m = hand_msg(SWIM_T_PING, 1, 0);
    assert_int_equal(swim_msg_encode(&m, buf, sizeof buf, &len), MRD_OK);
    assert_int_equal(len, 8);
    assert_memory_equal(buf, "\x97\x01\x01\x07\x01\x00\x00\x90", 8);
    /* What the decoder refuses, the encoder refuses too. */
    m.target = 0;
    assert_int_equal(swim_msg_encode(&m, buf, sizeof buf, &len), MRD_EINVAL);
    m = hand_msg(SWIM_T_PING, 1, SWIM_INCARNATION_MAX + 1);
    assert_int_equal(swim_msg_encode(&m, buf, sizeof buf, &len), MRD_EINVAL);
    m = hand_msg(SWIM_T_PING, 1, 0);
    hand_update(&m, 3, SWIM_ALIVE, 1);
    hand_update(&m, 3, SWIM_DEAD, 1);
    assert_int_equal(swim_msg_encode(&m, buf, sizeof buf, &len), MRD_EINVAL);
}

struct bad_case {
    const char *bytes;
    size_t      len;
    int         rv;
};
#define BAD(s, rv)                                                             \
    {                                                                          \
        s, sizeof(s) - 1, rv                                                   \
    }

static void
test_codec_refuses(void **state)
{
    static const struct bad_case bad[] = {
        BAD("", MRD_EPROTO), /* empty */
        BAD("\x90", MRD_EPROTO), /* empty array */
        BAD("\x80", MRD_EPROTO), /* a map */
        BAD("\x97\x02\x01\x07\x01\x00\x00\x90", MRD_EPROTOVERSION),
        BAD("\x91\x02", MRD_EPROTOVERSION), /* version read first */
        BAD("\x97\xc0\x01\x07\x01\x00\x00\x90", MRD_EPROTO), /* nil format */
        BAD("\x96\x01\x01\x07\x01\x00\x00", MRD_EPROTO), /* 6 elements */
        BAD("\x98\x01\x01\x07\x01\x00\x00\x90\x00", MRD_EPROTO), /* 8 */
        BAD("\x97\x01\x04\x07\x01\x00\x00\x90", MRD_EPROTO), /* type 4 */
        BAD("\x97\x01\x00\x07\x01\x00\x00\x90", MRD_EPROTO), /* type 0 */
        BAD("\x97\x01\x01\xcf\x00\x00\x00\x01\x00\x00\x00\x00\x01\x00\x00"
            "\x90",
            MRD_EPROTO), /* seq over uint32 */
        BAD("\x97\x01\x01\x07\x00\x00\x00\x90", MRD_EPROTO), /* target 0 */
        BAD("\x97\x01\x01\x07\x01\xcf\x40\x00\x00\x00\x00\x00\x00\x01\x00"
            "\x90",
            MRD_EPROTO), /* incarnation over the max */
        BAD("\x97\x01\x01\x07\x01\xff\x00\x90", MRD_EPROTO), /* negative */
        BAD("\x97\x01\x01\x07\x01\x00\x00\x91\x93\x00\x01\x01",
            MRD_EPROTO), /* update id 0 */
        BAD("\x97\x01\x01\x07\x01\x00\x00\x91\x93\x02\x00\x01",
            MRD_EPROTO), /* state 0 */
        BAD("\x97\x01\x01\x07\x01\x00\x00\x91\x93\x02\x04\x01",
            MRD_EPROTO), /* state 4 */
        BAD("\x97\x01\x01\x07\x01\x00\x00\x91\x92\x02\x01",
            MRD_EPROTO), /* update of 2 */
        BAD("\x97\x01\x01\x07\x01\x00\x00\x92\x93\x02\x01\x01\x93\x02\x03"
            "\x01",
            MRD_EPROTO), /* one node twice */
        BAD("\x97\x01\x01\x07\x01\x00\x00\x90\x00", MRD_EPROTO), /* trailer */
        BAD("\x97\x01\x01\x07\x01\x00\x00", MRD_EPROTO), /* truncated */
        BAD("\x97\x01\x01\x07\x01\x00\x00\xdd\xff\xff\xff\xff",
            MRD_EPROTO), /* a length it never trusts */
        BAD("\x97\x01\x01\x07\x01\x00\x00\xd4\x01\x00", MRD_EPROTO), /* ext */
        BAD("\x97\x01\x01\x07\x01\x00\xa1\x78\x90", MRD_EPROTO), /* str */
    };
    struct swim_msg m;
    uint8_t         big[SWIM_MSG_SIZE_MAX + 1];
    (void) state;

    for (size_t i = 0; i < MRD_ARRAY_SIZE(bad); i++) {
        const char *why = NULL;
        int         rv  = swim_msg_decode(bad[i].bytes, bad[i].len, &m, &why);
        if (rv != bad[i].rv) {
            fail_msg("bad case %zu: got %d, want %d", i, rv, bad[i].rv);
        }
        assert_non_null(why);
    }
    /* 33 updates: one more than any sender may put in. */
    uint8_t many[8 + 3 + 33 * 4];
    size_t  len = 0;
    memcpy(many, "\x97\x01\x01\x07\x01\x00\x00\xdc\x00\x21", 10);
    len = 10;
    for (uint32_t i = 0; i < 33; i++) {
        memcpy(many + len, "\x93\x01\x01\x01", 4);
        many[len + 1] = (uint8_t) (1 + i);
        len += 4;
    }
    assert_int_equal(swim_msg_decode(many, len, &m, NULL), MRD_EPROTO);
    memset(big, 0, sizeof big);
    assert_int_equal(swim_msg_decode(big, sizeof big, &m, NULL), MRD_ETOOBIG);
}

/* Records are ordered by (incarnation, rank): an ALIVE at the same
 * incarnation never lifts a suspicion or a death, a higher one does; a
 * SUSPECT at the same incarnation overrides ALIVE, a DEAD overrides both. */
static void
test_record_order(void **state)
{
    static const uint64_t ids[] = { 1, 2, 3 };
    struct swim_out      *out   = calloc(1, sizeof *out);
    struct swim          *a     = hand_node(1, 0, ids, 3);
    enum swim_state       st;
    uint64_t              inc;
    (void) state;

    struct swim_msg m = hand_msg(SWIM_T_ACK, 3, 0);
    hand_update(&m, 2, SWIM_SUSPECT, 5);
    assert_int_equal(hand_recv(a, 10, 3, &m, out), MRD_OK);
    assert_int_equal(swim_state(a, 2), SWIM_SUSPECT);
    assert_int_equal(out->event_count, 1);
    assert_int_equal(out->event[0].kind, SWIM_EV_MEMBER);
    assert_int_equal(out->event[0].state, SWIM_SUSPECT);

    m = hand_msg(SWIM_T_ACK, 3, 0);
    hand_update(&m, 2, SWIM_ALIVE, 5); /* same incarnation: no */
    assert_int_equal(hand_recv(a, 20, 3, &m, out), MRD_OK);
    assert_int_equal(swim_state(a, 2), SWIM_SUSPECT);
    assert_int_equal(out->event_count, 0);
    /* The sender's own incarnation counts as ALIVE: same rule. */
    m = hand_msg(SWIM_T_ACK, 2, 5);
    assert_int_equal(hand_recv(a, 30, 2, &m, out), MRD_OK);
    assert_int_equal(swim_state(a, 2), SWIM_SUSPECT);
    m = hand_msg(SWIM_T_ACK, 2, 6); /* a refutation */
    assert_int_equal(hand_recv(a, 40, 2, &m, out), MRD_OK);
    assert_int_equal(swim_state(a, 2), SWIM_ALIVE);
    assert_int_equal(swim_member_get(a, 2, &st, &inc), MRD_OK);
    assert_int_equal(inc, 6);

    m = hand_msg(SWIM_T_ACK, 3, 0);
    hand_update(&m, 2, SWIM_DEAD, 6); /* DEAD beats ALIVE at one inc */
    assert_int_equal(hand_recv(a, 50, 3, &m, out), MRD_OK);
    assert_int_equal(swim_state(a, 2), SWIM_DEAD);
    m = hand_msg(SWIM_T_ACK, 3, 0);
    hand_update(&m, 2, SWIM_SUSPECT, 6); /* and SUSPECT at one inc */
    hand_update(&m, 3, SWIM_ALIVE, 0);
    assert_int_equal(hand_recv(a, 60, 3, &m, out), MRD_OK);
    assert_int_equal(swim_state(a, 2), SWIM_DEAD);
    m = hand_msg(SWIM_T_ACK, 3, 0);
    hand_update(&m, 2, SWIM_SUSPECT, 7); /* a later life, suspected */
    assert_int_equal(hand_recv(a, 70, 3, &m, out), MRD_OK);
    assert_int_equal(swim_state(a, 2), SWIM_SUSPECT);
    /* Nobody refutes: it is DEAD once the suspicion timeout ran out. */
    uint64_t t = 70 + swim_suspicion_timeout_ms(a);
    swim_tick(a, t - 1, out);
    assert_int_equal(swim_state(a, 2), SWIM_SUSPECT);
    swim_tick(a, t, out);
    assert_int_equal(swim_state(a, 2), SWIM_DEAD);
    assert_int_equal(swim_stats_get(a)->deaths, 1);
    swim_destroy(a);
    free(out);
}

/* A node told it is suspected refutes with a higher incarnation, says so
 * once, and its next message to the accuser carries the new incarnation.
 * The accuser's own messages to the suspect carry the suspicion first. */
static void
test_refute(void **state)
{
    static const uint64_t ids[] = { 1, 2, 3 };
    struct swim_out      *out   = calloc(1, sizeof *out);
    struct swim          *b     = hand_node(2, 4, ids, 3);
    struct swim_msg       d;
    (void) state;

    struct swim_msg m = hand_msg(SWIM_T_PING, 2, 0);
    hand_update(&m, 2, SWIM_SUSPECT, 9);
    assert_int_equal(hand_recv(b, 10, 1, &m, out), MRD_OK);
    assert_int_equal(swim_incarnation(b), 10);
    assert_int_equal(swim_stats_get(b)->refutations, 1);
    assert_int_equal(out->event_count, 1);
    assert_int_equal(out->event[0].kind, SWIM_EV_REFUTED);
    assert_int_equal(out->event[0].incarnation, 10);
    assert_int_equal(out->msg_count, 1); /* the ack */
    assert_int_equal(out->msg[0].to, 1);
    assert_int_equal(
        swim_msg_decode(out->msg[0].bytes, out->msg[0].len, &d, NULL), MRD_OK);
    assert_int_equal(d.type, SWIM_T_ACK);
    assert_int_equal(d.seq, 7);
    assert_int_equal(d.target, 2);
    assert_int_equal(d.incarnation, 10);
    /* A stale suspicion (below) changes nothing; an old DEAD neither. */
    m = hand_msg(SWIM_T_PING, 2, 0);
    hand_update(&m, 2, SWIM_DEAD, 9);
    assert_int_equal(hand_recv(b, 20, 1, &m, out), MRD_OK);
    assert_int_equal(swim_incarnation(b), 10);
    assert_int_equal(out->event_count, 0);
    /* ALIVE at a higher incarnation (a previous life): climb over it. */
    m = hand_msg(SWIM_T_PING, 2, 0);
    hand_update(&m, 2, SWIM_ALIVE, 30);
    assert_int_equal(hand_recv(b, 30, 1, &m, out), MRD_OK);
    assert_int_equal(swim_incarnation(b), 31);

    /* b suspects 3 (crafted), then pings it: the ping says so first. */
    m = hand_msg(SWIM_T_ACK, 1, 0);
    hand_update(&m, 3, SWIM_SUSPECT, 0);
    assert_int_equal(hand_recv(b, 40, 1, &m, out), MRD_OK);
    for (uint64_t t = 40; t < 40 + 4 * SIM_I_MS; t += 10) {
        swim_tick(b, t, out);
        for (uint32_t k = 0; k < out->msg_count; k++) {
            if (out->msg[k].to != 3) {
                continue;
            }
            assert_int_equal(
                swim_msg_decode(out->msg[k].bytes, out->msg[k].len, &d, NULL),
                MRD_OK);
            assert_true(d.update_count >= 1);
            assert_int_equal(d.update[0].id, 3);
            assert_int_equal(d.update[0].state, SWIM_SUSPECT);
            swim_destroy(b);
            free(out);
            return;
        }
    }
    fail_msg("b never pinged 3 in four intervals of a 3-node cluster");
}

/* Indirect probing, one step at a time: no direct ack -> ping-reqs to the
 * others; a relay pings the target and forwards its ack; the probe then
 * succeeds and nobody is suspected. Without any ack: SUSPECT. */
static void
test_indirect(void **state)
{
    static const uint64_t ids[] = { 1, 2, 3, 4 };
    struct swim_out      *out   = calloc(1, sizeof *out);
    struct swim          *a     = hand_node(1, 0, ids, 4);
    struct swim          *r     = NULL;
    struct swim_msg       ping;
    struct swim_msg       d;
    const char           *why = NULL;
    (void) state;

    /* a's first probe. */
    uint64_t t = swim_next_deadline(a);
    swim_tick(a, t, out);
    assert_int_equal(out->msg_count, 1);
    assert_int_equal(
        swim_msg_decode(out->msg[0].bytes, out->msg[0].len, &ping, NULL),
        MRD_OK);
    uint64_t target = ping.target;
    assert_int_equal(swim_next_deadline(a), t + SWIM_PROBE_TIMEOUT_MS_DEFAULT);
    swim_tick(a, t + SWIM_PROBE_TIMEOUT_MS_DEFAULT, out);
    assert_int_equal(out->msg_count, 2); /* k = 3, but only 2 others */
    struct swim_out_msg req = out->msg[0];
    assert_true(req.to != target && out->msg[1].to != target);
    r = hand_node(req.to, 0, ids, 4); /* the relay */
    assert_int_equal(
        swim_recv(r, 500, 1, req.bytes, req.len, out, &why), MRD_OK);
    assert_int_equal(out->msg_count, 1); /* r pings the target */
    assert_int_equal(out->msg[0].to, target);
    assert_int_equal(
        swim_msg_decode(out->msg[0].bytes, out->msg[0].len, &d, NULL), MRD_OK);
    assert_int_equal(d.type, SWIM_T_PING);
    /* The target acks r; r forwards to a with a's seq. */
    struct swim_msg ack = hand_msg(SWIM_T_ACK, target, 0);
    ack.seq             = d.seq;
    assert_int_equal(hand_recv(r, 600, target, &ack, out), MRD_OK);
    assert_int_equal(out->msg_count, 1);
    assert_int_equal(out->msg[0].to, 1);
    struct swim_out_msg fwd = out->msg[0];
    assert_int_equal(
        swim_recv(a, 700, req.to, fwd.bytes, fwd.len, out, &why), MRD_OK);
    swim_tick(a, t + SIM_I_MS, out);
    assert_int_equal(swim_state(a, target), SWIM_ALIVE);
    assert_int_equal(swim_stats_get(a)->probes_failed, 0);
    /* A second ack from the target is stale now, and a forwarded ack from
     * a relay that never asked is too. */
    assert_int_equal(hand_recv(r, 800, target, &ack, out), MRD_OK);
    assert_int_equal(out->msg_count, 0);
    assert_int_equal(swim_stats_get(r)->stale_acks, 1);

    /* Next probe: nothing answers at all. */
    uint64_t t2 = swim_next_deadline(a);
    swim_tick(a, t2, out);
    assert_int_equal(
        swim_msg_decode(out->msg[0].bytes, out->msg[0].len, &ping, NULL),
        MRD_OK);
    swim_tick(a, t2 + SWIM_PROBE_TIMEOUT_MS_DEFAULT, out);
    swim_tick(a, t2 + SIM_I_MS, out);
    assert_int_equal(swim_state(a, ping.target), SWIM_SUSPECT);
    assert_int_equal(swim_stats_get(a)->suspicions, 1);
    swim_destroy(a);
    swim_destroy(r);
    free(out);
}

static void
test_members(void **state)
{
    static const uint64_t ids[]  = { 5, 1, 9 };
    static const uint64_t zero[] = { 5, 0 };
    static const uint64_t dup[]  = { 5, 9, 5 };
    uint64_t              many[SWIM_MEMBERS_MAX + 1];
    struct swim_out      *out = calloc(1, sizeof *out);
    struct swim          *a   = hand_node(1, 0, ids, 3);
    enum swim_state       st;
    uint64_t              inc;
    uint64_t              v;
    uint64_t              from;
    (void) state;

    assert_int_equal(swim_member_count(a), 3);
    assert_int_equal(swim_set_members(a, zero, 2), MRD_EINVAL);
    assert_int_equal(swim_set_members(a, dup, 3), MRD_EINVAL);
    for (uint64_t i = 0; i <= SWIM_MEMBERS_MAX; i++) {
        many[i] = 100 + i;
    }
    assert_int_equal(
        swim_set_members(a, many, SWIM_MEMBERS_MAX + 1), MRD_EFULL);
    assert_int_equal(swim_set_members(a, many, SWIM_MEMBERS_MAX), MRD_EFULL);
    assert_int_equal(swim_member_count(a), 3); /* errors changed nothing */
    assert_int_equal(swim_set_members(a, many, SWIM_MEMBERS_MAX - 1), MRD_OK);
    assert_int_equal(swim_member_count(a), SWIM_MEMBERS_MAX);
    assert_int_equal(swim_set_members(a, ids, 3), MRD_OK);

    /* 9 becomes SUSPECT; records survive a new member set that keeps 9. */
    struct swim_msg m = hand_msg(SWIM_T_ACK, 5, 0);
    hand_update(&m, 9, SWIM_SUSPECT, 3);
    hand_update(&m, 77, SWIM_DEAD, 3); /* not a member: skipped */
    m.topo_version = 4;
    assert_int_equal(hand_recv(a, 10, 5, &m, out), MRD_OK);
    assert_int_equal(swim_stats_get(a)->unknown_updates, 1);
    assert_int_equal(out->event_count, 2); /* topology, then 9 */
    assert_int_equal(out->event[0].kind, SWIM_EV_TOPO);
    assert_int_equal(out->event[0].id, 5);
    assert_int_equal(out->event[0].topo_version, 4);
    static const uint64_t more[] = { 9, 5, 12 };
    assert_int_equal(swim_set_members(a, more, 3), MRD_OK);
    assert_int_equal(swim_member_get(a, 9, &st, &inc), MRD_OK);
    assert_true(st == SWIM_SUSPECT && inc == 3);
    assert_int_equal(swim_state(a, 12), SWIM_ALIVE);
    assert_int_equal(swim_state(a, 1), SWIM_ALIVE); /* self, not listed */
    assert_int_equal(swim_state(a, 77), SWIM_UNKNOWN);
    assert_int_equal(swim_member_get(a, 77, &st, &inc), MRD_ENOTFOUND);

    /* A non-member: only its topology version counts. */
    m = hand_msg(SWIM_T_PING, 1, 0);
    hand_update(&m, 9, SWIM_DEAD, 3);
    m.topo_version = 6;
    assert_int_equal(hand_recv(a, 20, 300, &m, out), MRD_OK);
    assert_int_equal(swim_state(a, 9), SWIM_SUSPECT);
    assert_int_equal(out->msg_count, 0);
    assert_int_equal(swim_stats_get(a)->unknown_sender, 1);
    swim_topo_seen(a, &v, &from);
    assert_true(v == 6 && from == 300);
    swim_set_topo_version(a, 6);
    swim_topo_seen(a, &v, &from);
    assert_true(v == 6 && from == 0);
    /* From self, from 0, a ping for someone else. */
    const char *why = NULL;
    m               = hand_msg(SWIM_T_PING, 1, 0);
    assert_int_equal(hand_recv(a, 30, 1, &m, out), MRD_EPROTO);
    assert_int_equal(hand_recv(a, 30, 0, &m, out), MRD_EPROTO);
    assert_int_equal(swim_stats_get(a)->refused, 2);
    m = hand_msg(SWIM_T_PING, 12, 0);
    assert_int_equal(hand_recv(a, 40, 5, &m, out), MRD_OK);
    assert_int_equal(out->msg_count, 0);
    assert_int_equal(swim_stats_get(a)->misdelivered, 1);
    assert_int_equal(swim_recv(a, 50, 5, "\xc1", 1, out, &why), MRD_EPROTO);
    assert_non_null(why);
    swim_destroy(a);
    swim_destroy(NULL);
    free(out);
}

static void
test_config(void **state)
{
    struct swim_config cfg;
    struct swim       *sw = (struct swim *) &cfg; /* must become NULL */
    (void) state;

    swim_config_default(&cfg, 0, 0, 1);
    assert_int_equal(swim_create(&cfg, 0, &sw), MRD_EINVAL);
    assert_null(sw);
    swim_config_default(&cfg, 1, SWIM_INCARNATION_MAX + 1, 1);
    assert_int_equal(swim_create(&cfg, 0, &sw), MRD_EINVAL);
    swim_config_default(&cfg, 1, 0, 1);
    cfg.probe_timeout_ms = cfg.probe_interval_ms;
    assert_int_equal(swim_create(&cfg, 0, &sw), MRD_EINVAL);
    swim_config_default(&cfg, 1, 0, 1);
    cfg.piggyback_max = SWIM_PIGGYBACK_MAX + 1;
    assert_int_equal(swim_create(&cfg, 0, &sw), MRD_EINVAL);
    swim_config_default(&cfg, 1, 0, 1);
    cfg.indirect_count = SWIM_INDIRECT_MAX + 1;
    assert_int_equal(swim_create(&cfg, 0, &sw), MRD_EINVAL);
    swim_config_default(&cfg, 1, 0, 1);
    assert_int_equal(swim_create(&cfg, 0, &sw), MRD_OK);
    /* The formulas of swim.h at 1, 10, 11 and 256 members. */
    assert_int_equal(swim_suspicion_timeout_ms(sw), 4000);
    assert_int_equal(swim_retransmit_limit(sw), 4);
    uint64_t ids[SWIM_MEMBERS_MAX];
    for (uint64_t i = 0; i < SWIM_MEMBERS_MAX; i++) {
        ids[i] = i + 1;
    }
    assert_int_equal(swim_set_members(sw, ids, 10), MRD_OK);
    assert_int_equal(swim_suspicion_timeout_ms(sw), 4000);
    assert_int_equal(swim_retransmit_limit(sw), 8);
    assert_int_equal(swim_set_members(sw, ids, 11), MRD_OK);
    assert_int_equal(swim_suspicion_timeout_ms(sw), 8000);
    assert_int_equal(swim_set_members(sw, ids, SWIM_MEMBERS_MAX), MRD_OK);
    assert_int_equal(swim_suspicion_timeout_ms(sw), 12000);
    assert_int_equal(swim_retransmit_limit(sw), 12);
    swim_destroy(sw);
}

/* The widest message the state machine makes: 256 members all with
 * pending records at huge ids and incarnations, piggyback at its max. */
static void
test_widest(void **state)
{
    struct swim_config cfg;
    struct swim       *sw  = NULL;
    struct swim_out   *out = calloc(1, sizeof *out);
    uint64_t           ids[SWIM_MEMBERS_MAX];
    uint32_t           len_max = 0;
    (void) state;

    swim_config_default(&cfg, UINT64_MAX, SWIM_INCARNATION_MAX - 1, 3);
    cfg.piggyback_max = SWIM_PIGGYBACK_MAX;
    assert_int_equal(swim_create(&cfg, 0, &sw), MRD_OK);
    for (uint64_t i = 0; i < SWIM_MEMBERS_MAX; i++) {
        ids[i] = UINT64_MAX - i;
    }
    assert_int_equal(swim_set_members(sw, ids, SWIM_MEMBERS_MAX), MRD_OK);
    struct swim_msg m = hand_msg(SWIM_T_ACK, UINT64_MAX - 1, 0);
    m.topo_version    = UINT64_MAX;
    for (uint32_t i = 0; i < SWIM_PIGGYBACK_MAX; i++) {
        hand_update(
            &m, UINT64_MAX - 1 - i, SWIM_DEAD, SWIM_INCARNATION_MAX - 1);
    }
    assert_int_equal(hand_recv(sw, 1, UINT64_MAX - 1, &m, out), MRD_OK);
    /* A topology version, then one state change per update. */
    assert_int_equal(out->event_count, SWIM_PIGGYBACK_MAX + 1);
    assert_int_equal(out->event[0].kind, SWIM_EV_TOPO);
    swim_set_topo_version(sw, UINT64_MAX);
    for (uint64_t t = 1; t < 20 * SIM_I_MS; t += 100) {
        swim_tick(sw, t, out);
        for (uint32_t k = 0; k < out->msg_count; k++) {
            len_max = out->msg[k].len > len_max ? out->msg[k].len : len_max;
        }
    }
    assert_true(len_max > SWIM_MSG_SIZE_FOR(SWIM_PIGGYBACK_MAX) - 40);
    assert_true(len_max <= SWIM_MSG_SIZE_FOR(SWIM_PIGGYBACK_MAX));
    swim_destroy(sw);
    free(out);
}

/* ---------------------------------------------------------- the sim -- */

static uint64_t run_seed; /* MRD_TEST_SEED: one case */
static bool     run_one;
static unsigned run_cases;

static void
test_sim(void **state)
{
    (void) state;
    uint64_t t0 = (uint64_t) clock();
    for (unsigned k = 0; k < run_cases; k++) {
        uint64_t x    = run_seed + k;
        uint64_t seed = run_one ? run_seed : splitmix64(&x);
        sim_case(seed);
    }
    double secs = (double) ((uint64_t) clock() - t0) / CLOCKS_PER_SEC;
    printf("swim_sim_test: %llu cases in %.1f s: %llu events, %llu messages "
           "(%llu lost), largest %llu bytes\n"
           "  suspicions %llu, deaths %llu, refutations %llu, indirect "
           "probes %llu, stale acks %llu\n"
           "  worst crash detection %llu ms (bound at most %llu + raises); "
           "worst healing %llu ms (bound %llu); worst restart %llu ms "
           "(bound %llu); quick restarts %llu; incarnation 0/persisted/"
           "clock %llu/%llu/%llu\n"
           "  mean detection %.2f of the own-probe bound over %llu "
           "detections; mean spread %.2f over %llu\n",
        (unsigned long long) total.cases, secs,
        (unsigned long long) total.events, (unsigned long long) total.msgs,
        (unsigned long long) total.dropped,
        (unsigned long long) total.msg_size_max,
        (unsigned long long) total.suspicions,
        (unsigned long long) total.deaths,
        (unsigned long long) total.refutations,
        (unsigned long long) total.indirect,
        (unsigned long long) total.stale_acks,
        (unsigned long long) total.detect_max_ms,
        (unsigned long long) total.detect_bound_ms,
        (unsigned long long) total.heal_max_ms,
        (unsigned long long) total.heal_bound_ms,
        (unsigned long long) total.restart_max_ms,
        (unsigned long long) total.restart_bound_ms,
        (unsigned long long) total.quick_restarts,
        (unsigned long long) total.incarnation_variants[0],
        (unsigned long long) total.incarnation_variants[1],
        (unsigned long long) total.incarnation_variants[2],
        total.detect_count > 0 ? total.detect_ratio_sum / total.detect_count
                               : 0.0,
        (unsigned long long) total.detect_count,
        total.spread_count > 0 ? total.spread_ratio_sum / total.spread_count
                               : 0.0,
        (unsigned long long) total.spread_count);
    /* The run exercised what it claims: false suspicions were raised and
     * refuted, deaths declared, indirect probes sent. */
    if (!run_one && run_cases >= 16) {
        assert_true(total.suspicions > 0 && total.refutations > 0);
        assert_true(total.deaths > 0 && total.indirect > 0);
        assert_true(total.incarnation_variants[0] > 0);
        /* DISSEMINATION: observers hear of a death rather than each
         * finding out alone (measured ~0.12; ~0.39 with gossip off). */
        assert_true(total.spread_count > 0);
        double spread = total.spread_ratio_sum / total.spread_count;
        if (spread >= SIM_SPREAD_MEAN_MAX) {
            fail_msg("mean spread %.2f >= %.2f: deaths are not spread by "
                     "gossip [base MRD_TEST_SEED=%llu MRD_SWIM_CASES=%u]",
                spread, SIM_SPREAD_MEAN_MAX, (unsigned long long) run_seed,
                run_cases);
        }
    }
}

static uint64_t
env_u64(const char *name, uint64_t dflt, bool *set)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0') {
        return dflt;
    }
    char              *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end != '\0') {
        fprintf(stderr, "swim_sim_test: %s must be a number\n", name);
        exit(2);
    }
    if (set != NULL) {
        *set = true;
    }
    return n;
}

int
main(void)
{
    uint64_t t = (uint64_t) time(NULL) * 1000003u ^ (uint64_t) getpid();
    run_seed   = env_u64("MRD_TEST_SEED", splitmix64(&t), &run_one);
    run_cases  = (unsigned) env_u64("MRD_SWIM_CASES", SIM_DEFAULT_CASES, NULL);
    g_trace    = env_u64("MRD_SWIM_TRACE", 0, NULL) != 0;
    if (run_one) {
        run_cases = 1;
        printf("swim_sim_test: one case, MRD_TEST_SEED=%llu\n",
            (unsigned long long) run_seed);
    } else {
        printf("swim_sim_test: %u cases from base seed %llu (each failure "
               "prints its own MRD_TEST_SEED)\n",
            run_cases, (unsigned long long) run_seed);
    }
    fflush(stdout);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_refuses),
        cmocka_unit_test(test_record_order),
        cmocka_unit_test(test_refute),
        cmocka_unit_test(test_indirect),
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_widest),
        cmocka_unit_test(test_sim),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
