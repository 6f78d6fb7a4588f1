/*
 * swim.c: SWIM liveness as a sans-I/O state machine (see swim.h for the
 * protocol, docs/ARCHITECTURE.md "Liveness (SWIM)" for the decisions).
 *
 * The whole state is one struct swim allocated at creation: the member
 * table (sorted by id, self included, found by binary search), the probe
 * order, the one probe in flight, a fixed pool of relays for ping-reqs, and
 * a capped encode buffer grown to its cap once, at creation. So ticks and
 * receives never allocate and cannot fail for memory, and every loop is
 * bounded by SWIM_MEMBERS_MAX, SWIM_PIGGYBACK_MAX or SWIM_RELAYS_MAX.
 *
 * A member's record (state, incarnation) only ever grows in the order
 * (incarnation, rank), ALIVE < SUSPECT < DEAD: swim_apply() is the one
 * place that changes a record from outside input, and it is a max. Timers
 * (suspicion timeout, probe end) only move SUSPECT to DEAD and ALIVE to
 * SUSPECT at the same incarnation, which grows the record too. Only this
 * node's own record is special: it stays ALIVE, and news of it at an
 * incarnation it cannot ignore makes it refute with a higher one.
 *
 * Gossip: each member's current record is pending until it has been sent
 * retransmit_limit times. A message carries, first, the sender's record of
 * the recipient when that record is not ALIVE (so the recipient can refute
 * it), then the pending records sent least often so far.
 */
#include "swim.h"

#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* Elements of a message array: format, type, seq, target, incarnation,
 * topology version, updates. */
#define SWIM_MSG_FIELDS 7u
/* Elements of an update array: id, state, incarnation. */
#define SWIM_UPDATE_FIELDS 3u

struct swim_member {
    uint64_t        id;
    uint64_t        incarnation;
    uint64_t        suspect_deadline_ms; /* SUSPECT only */
    enum swim_state state;
    uint32_t        picked; /* == pick_gen: in the message being built */
    uint16_t        gossip_sent; /* sends of the current record */
    bool            gossip_pending;
};

/* The probe in flight: one at a time, one per interval. */
struct swim_probe {
    bool     active;
    bool     acked;
    bool     indirect_sent;
    uint32_t seq;
    uint64_t target;
    uint64_t target_inc; /* the incarnation this probe is about */
    uint64_t start_ms;
};

/* A ping this node sent for someone else's PING_REQ. */
struct swim_relay {
    bool     active;
    uint32_t seq; /* of our ping to the target */
    uint32_t requester_seq;
    uint64_t target;
    uint64_t requester;
    uint64_t expires_ms;
};

struct swim {
    struct swim_config cfg;
    uint64_t           now_ms;
    uint64_t           rng;
    uint32_t           seq_next;
    uint32_t           count; /* members, self included */
    uint32_t           pick_gen;
    uint32_t           gossip_cursor; /* rotates ties between equal counts */
    struct swim_member member[SWIM_MEMBERS_MAX]; /* sorted by id */
    struct swim_member scratch[SWIM_MEMBERS_MAX]; /* swim_set_members */
    uint64_t           order[SWIM_MEMBERS_MAX]; /* probe order, no self */
    uint32_t           order_count;
    uint32_t           order_pos;
    uint64_t           next_probe_ms;
    struct swim_probe  probe;
    struct swim_relay  relay[SWIM_RELAYS_MAX];
    uint64_t           topo_version; /* ours */
    uint64_t           topo_seen; /* highest heard, ours included */
    uint64_t           topo_from; /* who sent topo_seen; 0: ourselves */
    struct proto_buf   wbuf; /* grown to SWIM_MSG_SIZE_MAX at creation */
    struct swim_stats  stats;
};

/* ------------------------------------------------------------ helpers -- */

static int
swim_fail(const char **why, int code, const char *reason)
{
    if (why != NULL) {
        *why = reason;
    }
    return code;
}

/* splitmix64: small, fast, and good enough to shuffle probe orders and
 * pick relays; seeded from the config so a simulation replays exactly. */
static uint64_t
swim_rand(struct swim *s)
{
    uint64_t z = (s->rng += UINT64_C(0x9e3779b97f4a7c15));
    z          = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z          = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A number in [0, n); the modulo bias is below 2^-54 for n <= 2^10. */
static uint32_t
swim_rand_below(struct swim *s, uint32_t n)
{
    MRD_ASSERT(n > 0);
    return (uint32_t) (swim_rand(s) % n);
}

static uint64_t
swim_add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* ceil(log10(n)) for n >= 1: 0 for 1, 1 for 2..10, 2 for 11..100, ... */
static uint32_t
swim_ceil_log10(uint32_t n)
{
    uint32_t d = 0;
    uint64_t p = 1;
    while (p < n) {
        p *= 10;
        d++;
    }
    return d;
}

/* Is the record (inc_a, a) newer than (inc_b, b)? The order of records:
 * incarnation first, then rank (ALIVE < SUSPECT < DEAD). */
static bool
swim_newer(uint64_t inc_a, enum swim_state a, uint64_t inc_b, enum swim_state b)
{
    if (inc_a != inc_b) {
        return inc_a > inc_b;
    }
    return (int) a > (int) b;
}

static bool
swim_state_valid(uint64_t v)
{
    return v >= SWIM_ALIVE && v <= SWIM_DEAD;
}

/* The index of member id, or s->count when it is not a member. */
static uint32_t
swim_index(const struct swim *s, uint64_t id)
{
    uint32_t lo = 0;
    uint32_t hi = s->count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->member[mid].id == id) {
            return mid;
        }
        if (s->member[mid].id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return s->count;
}

static struct swim_member *
swim_find(struct swim *s, uint64_t id)
{
    uint32_t i = swim_index(s, id);
    return i < s->count ? &s->member[i] : NULL;
}

static const struct swim_member *
swim_find_const(const struct swim *s, uint64_t id)
{
    uint32_t i = swim_index(s, id);
    return i < s->count ? &s->member[i] : NULL;
}

static struct swim_member *
swim_self(struct swim *s)
{
    struct swim_member *m = swim_find(s, s->cfg.self_id);
    MRD_ASSERT(m != NULL); /* self is always a member */
    MRD_ASSERT(m->state == SWIM_ALIVE);
    return m;
}

static void
swim_out_clear(struct swim_out *out)
{
    out->msg_count   = 0;
    out->event_count = 0;
}

static void
swim_event_add(struct swim_out *out, enum swim_event_kind kind, uint64_t id,
    enum swim_state state, uint64_t incarnation, uint64_t topo_version)
{
    MRD_ASSERT(out->event_count < SWIM_OUT_EVENTS_MAX); /* sized by proof */
    struct swim_event *e = &out->event[out->event_count++];
    e->kind              = kind;
    e->id                = id;
    e->state             = state;
    e->incarnation       = incarnation;
    e->topo_version      = topo_version;
}

/* -------------------------------------------------------------- codec -- */

static int
swim_update_check(const struct swim_update *u, const char **why)
{
    if (u->id == 0) {
        return swim_fail(why, MRD_EPROTO, "update about node id 0");
    }
    if (!swim_state_valid((uint64_t) u->state)) {
        return swim_fail(why, MRD_EPROTO, "update with an unknown state");
    }
    if (u->incarnation > SWIM_INCARNATION_MAX) {
        return swim_fail(why, MRD_EPROTO, "update incarnation over the max");
    }
    return MRD_OK;
}

/* What every message must be, whoever made it: the encoder refuses to make
 * anything the decoder would refuse. */
static int
swim_msg_check(const struct swim_msg *m, const char **why)
{
    if (m->type < SWIM_T_PING || m->type > SWIM_T_PING_REQ) {
        return swim_fail(why, MRD_EPROTO, "unknown message type");
    }
    if (m->target == 0) {
        return swim_fail(why, MRD_EPROTO, "target is node id 0");
    }
    if (m->incarnation > SWIM_INCARNATION_MAX) {
        return swim_fail(why, MRD_EPROTO, "sender incarnation over the max");
    }
    if (m->update_count > SWIM_PIGGYBACK_MAX) {
        return swim_fail(why, MRD_EPROTO, "more updates than allowed");
    }
    for (uint32_t i = 0; i < m->update_count; i++) {
        int rv = swim_update_check(&m->update[i], why);
        if (rv != MRD_OK) {
            return rv;
        }
        /* Our encoder never sends a node twice; a record is one max. */
        for (uint32_t j = 0; j < i; j++) {
            if (m->update[j].id == m->update[i].id) {
                return swim_fail(why, MRD_EPROTO, "two updates about one node");
            }
        }
    }
    return MRD_OK;
}

static void
swim_msg_pack(struct proto_buf *b, const struct swim_msg *m)
{
    proto_wr_array(b, SWIM_MSG_FIELDS);
    proto_wr_uint(b, SWIM_FORMAT);
    proto_wr_uint(b, (uint64_t) m->type);
    proto_wr_uint(b, m->seq);
    proto_wr_uint(b, m->target);
    proto_wr_uint(b, m->incarnation);
    proto_wr_uint(b, m->topo_version);
    proto_wr_array(b, m->update_count);
    for (uint32_t i = 0; i < m->update_count; i++) {
        proto_wr_array(b, SWIM_UPDATE_FIELDS);
        proto_wr_uint(b, m->update[i].id);
        proto_wr_uint(b, (uint64_t) m->update[i].state);
        proto_wr_uint(b, m->update[i].incarnation);
    }
}

int
swim_msg_encode(
    const struct swim_msg *m, void *buf, size_t cap, size_t *len_out)
{
    struct proto_buf b;

    *len_out = 0;
    if (swim_msg_check(m, NULL) != MRD_OK) {
        return MRD_EINVAL;
    }
    proto_buf_init(&b, cap < SWIM_MSG_SIZE_MAX ? cap : SWIM_MSG_SIZE_MAX);
    swim_msg_pack(&b, m);
    int rv = proto_buf_status(&b);
    if (rv == MRD_OK) {
        MRD_ASSERT(b.len <= SWIM_MSG_SIZE_FOR(m->update_count));
        memcpy(buf, b.data, b.len);
        *len_out = b.len;
    }
    proto_buf_fini(&b);
    return rv;
}

/* Reads one uint no larger than max, or fails with reason. */
static int
swim_rd_uint(struct proto_rd *rd, uint64_t max, uint64_t *v, const char **why,
    const char *reason)
{
    if (proto_rd_uint(rd, v) != MRD_OK || *v > max) {
        return swim_fail(why, MRD_EPROTO, reason);
    }
    return MRD_OK;
}

static int
swim_update_read(struct proto_rd *rd, struct swim_update *u, const char **why)
{
    uint32_t n = 0;
    uint64_t state;

    if (proto_rd_array(rd, &n) != MRD_OK || n != SWIM_UPDATE_FIELDS) {
        return swim_fail(why, MRD_EPROTO, "update is not an array of 3");
    }
    int rv = swim_rd_uint(rd, UINT64_MAX, &u->id, why, "update id not a uint");
    if (rv == MRD_OK) {
        rv = swim_rd_uint(rd, SWIM_DEAD, &state, why, "update state unknown");
    }
    if (rv == MRD_OK) {
        rv = swim_rd_uint(rd, UINT64_MAX, &u->incarnation, why,
            "update incarnation not a uint");
    }
    if (rv == MRD_OK) {
        u->state = (enum swim_state) state;
    }
    return rv;
}

/* The fields after the format, in order. */
static int
swim_fields_read(struct proto_rd *rd, struct swim_msg *out, const char **why)
{
    uint64_t v[5];
    uint32_t n = 0;

    int rv = swim_rd_uint(rd, SWIM_T_PING_REQ, &v[0], why, "type not a uint");
    if (rv == MRD_OK) {
        rv = swim_rd_uint(rd, UINT32_MAX, &v[1], why, "seq not a uint32");
    }
    for (int k = 2; k < 5 && rv == MRD_OK; k++) {
        rv = swim_rd_uint(rd, UINT64_MAX, &v[k], why, "field not a uint");
    }
    if (rv != MRD_OK) {
        return rv;
    }
    out->type         = (enum swim_type) v[0];
    out->seq          = (uint32_t) v[1];
    out->target       = v[2];
    out->incarnation  = v[3];
    out->topo_version = v[4];
    if (proto_rd_array(rd, &n) != MRD_OK) {
        return swim_fail(why, MRD_EPROTO, "updates is not an array");
    }
    if (n > SWIM_PIGGYBACK_MAX) {
        return swim_fail(why, MRD_EPROTO, "more updates than allowed");
    }
    out->update_count = n;
    for (uint32_t i = 0; i < n && rv == MRD_OK; i++) {
        rv = swim_update_read(rd, &out->update[i], why);
    }
    return rv;
}

int
swim_msg_decode(
    const void *buf, size_t len, struct swim_msg *out, const char **why)
{
    struct proto_rd rd;
    uint32_t        n = 0;
    uint64_t        format;

    memset(out, 0, sizeof *out);
    /* Size first, then the format, then everything else: the two things
     * every format keeps are the size cap and [format, ...]. */
    if (len > SWIM_MSG_SIZE_MAX) {
        return swim_fail(why, MRD_ETOOBIG, "message over SWIM_MSG_SIZE_MAX");
    }
    proto_rd_init(&rd, buf, len);
    if (proto_rd_array(&rd, &n) != MRD_OK || n == 0) {
        return swim_fail(why, MRD_EPROTO, "message is not a non-empty array");
    }
    if (proto_rd_uint(&rd, &format) != MRD_OK) {
        return swim_fail(why, MRD_EPROTO, "format is not a uint");
    }
    if (format != SWIM_FORMAT) {
        return swim_fail(why, MRD_EPROTOVERSION, "unknown SWIM format");
    }
    if (proto_walk(buf, len) != MRD_OK) {
        return swim_fail(why, MRD_EPROTO, "not one well-formed msgpack value");
    }
    if (n != SWIM_MSG_FIELDS) {
        return swim_fail(why, MRD_EPROTO, "message is not an array of 7");
    }
    int rv = swim_fields_read(&rd, out, why);
    if (rv == MRD_OK) {
        rv = swim_msg_check(out, why);
    }
    MRD_ASSERT(rv != MRD_OK || proto_rd_done(&rd)); /* the walk saw 1 value */
    return rv;
}

/* ------------------------------------------------------------- gossip -- */

uint32_t
swim_retransmit_limit(const struct swim *s)
{
    return s->cfg.retransmit_mult * swim_ceil_log10(s->count + 1);
}

uint64_t
swim_suspicion_timeout_ms(const struct swim *s)
{
    uint32_t scale = swim_ceil_log10(s->count);
    if (scale < 1) {
        scale = 1;
    }
    return (uint64_t) s->cfg.suspicion_mult * scale * s->cfg.probe_interval_ms;
}

/* A member's record changed: gossip it afresh. */
static void
swim_gossip_restart(struct swim_member *m)
{
    m->gossip_pending = true;
    m->gossip_sent    = 0;
}

static void
swim_gossip_take(struct swim *s, struct swim_member *m, struct swim_update *u)
{
    m->picked      = s->pick_gen;
    u->id          = m->id;
    u->state       = m->state;
    u->incarnation = m->incarnation;
    if (m->gossip_pending) {
        m->gossip_sent++;
        if (m->gossip_sent >= swim_retransmit_limit(s)) {
            m->gossip_pending = false;
        }
    }
}

/* The pending record sent least often, not yet in this message; ties go
 * round-robin from gossip_cursor, so equal records share the slots. */
static struct swim_member *
swim_gossip_next(struct swim *s)
{
    struct swim_member *best = NULL;
    for (uint32_t k = 0; k < s->count; k++) {
        struct swim_member *c = &s->member[(s->gossip_cursor + k) % s->count];
        if (!c->gossip_pending || c->picked == s->pick_gen) {
            continue;
        }
        if (best == NULL || c->gossip_sent < best->gossip_sent) {
            best = c;
        }
    }
    return best;
}

/* Fills u with the updates for a message to `to`. */
static uint32_t
swim_gossip_pick(struct swim *s, uint64_t to, struct swim_update *u)
{
    uint32_t n = 0;

    if (++s->pick_gen == 0) { /* wrapped: clear every stamp once */
        for (uint32_t i = 0; i < s->count; i++) {
            s->member[i].picked = 0;
        }
        s->pick_gen = 1;
    }
    struct swim_member *m = swim_find(s, to);
    if (m != NULL && m->state != SWIM_ALIVE) {
        swim_gossip_take(s, m, &u[n++]); /* the recipient may refute it */
    }
    while (n < s->cfg.piggyback_max) {
        struct swim_member *c = swim_gossip_next(s);
        if (c == NULL) {
            break;
        }
        swim_gossip_take(s, c, &u[n++]);
    }
    s->gossip_cursor = s->count > 0 ? (s->gossip_cursor + 1) % s->count : 0;
    return n;
}

/* Builds a message to `to` and appends it to out. */
static void
swim_send(struct swim *s, struct swim_out *out, enum swim_type type,
    uint64_t to, uint32_t seq, uint64_t target)
{
    struct swim_msg m;

    MRD_ASSERT(to != s->cfg.self_id && to != 0);
    MRD_ASSERT(out->msg_count < SWIM_OUT_MSGS_MAX); /* sized by proof */
    m.type         = type;
    m.seq          = seq;
    m.target       = target;
    m.incarnation  = swim_self(s)->incarnation;
    m.topo_version = s->topo_version;
    m.update_count = swim_gossip_pick(s, to, m.update);
    MRD_ASSERT(swim_msg_check(&m, NULL) == MRD_OK);

    proto_buf_reset(&s->wbuf);
    swim_msg_pack(&s->wbuf, &m);
    /* The buffer was grown to its cap at creation and the cap holds the
     * widest message, so this can neither allocate nor overflow. */
    MRD_ASSERT(proto_buf_status(&s->wbuf) == MRD_OK);
    MRD_ASSERT(s->wbuf.len <= SWIM_MSG_SIZE_FOR(m.update_count));

    struct swim_out_msg *o = &out->msg[out->msg_count++];
    o->to                  = to;
    o->len                 = (uint32_t) s->wbuf.len;
    memcpy(o->bytes, s->wbuf.data, s->wbuf.len);
    s->stats.msgs_out++;
}

/* ------------------------------------------------------------ records -- */

/* Sets a member's record (never self's) and reports a state change. */
static void
swim_record_set(struct swim *s, struct swim_member *m, enum swim_state state,
    uint64_t incarnation, struct swim_out *out)
{
    enum swim_state was = m->state;

    MRD_ASSERT(m->id != s->cfg.self_id);
    MRD_ASSERT(swim_newer(incarnation, state, m->incarnation, m->state));
    m->state       = state;
    m->incarnation = incarnation;
    if (state == SWIM_SUSPECT) {
        m->suspect_deadline_ms
            = swim_add_sat(s->now_ms, swim_suspicion_timeout_ms(s));
    }
    swim_gossip_restart(m);
    if (was != state) {
        swim_event_add(out, SWIM_EV_MEMBER, m->id, state, incarnation, 0);
    }
}

/* News about this node. Anything newer than (own incarnation, ALIVE) is a
 * suspicion or death to refute, or an ALIVE from a previous life at a
 * higher incarnation, where a DEAD may be lurking: either way, take the
 * next incarnation and spread ALIVE. */
static void
swim_self_hear(struct swim *s, enum swim_state state, uint64_t incarnation,
    struct swim_out *out)
{
    struct swim_member *me = swim_self(s);

    if (!swim_newer(incarnation, state, me->incarnation, SWIM_ALIVE)) {
        return;
    }
    /* Saturates at the max: only a buggy peer gets there, and then this
     * node cannot refute and will be declared dead, loudly. */
    me->incarnation
        = incarnation < SWIM_INCARNATION_MAX ? incarnation + 1 : incarnation;
    swim_gossip_restart(me);
    s->stats.refutations++;
    swim_event_add(
        out, SWIM_EV_REFUTED, me->id, SWIM_ALIVE, me->incarnation, 0);
}

/* Merges a record heard from a peer: keeps the larger. */
static void
swim_apply(struct swim *s, struct swim_member *m, enum swim_state state,
    uint64_t incarnation, struct swim_out *out)
{
    if (m->id == s->cfg.self_id) {
        swim_self_hear(s, state, incarnation, out);
        return;
    }
    if (swim_newer(incarnation, state, m->incarnation, m->state)) {
        swim_record_set(s, m, state, incarnation, out);
    }
}

/* ------------------------------------------------------------- create -- */

void
swim_config_default(struct swim_config *cfg, uint64_t self_id,
    uint64_t incarnation, uint64_t seed)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->self_id           = self_id;
    cfg->incarnation       = incarnation;
    cfg->seed              = seed;
    cfg->probe_interval_ms = SWIM_PROBE_INTERVAL_MS_DEFAULT;
    cfg->probe_timeout_ms  = SWIM_PROBE_TIMEOUT_MS_DEFAULT;
    cfg->indirect_count    = SWIM_INDIRECT_DEFAULT;
    cfg->suspicion_mult    = SWIM_SUSPICION_MULT_DEFAULT;
    cfg->retransmit_mult   = SWIM_RETRANSMIT_MULT_DEFAULT;
    cfg->piggyback_max     = SWIM_PIGGYBACK_DEFAULT;
}

static bool
swim_config_valid(const struct swim_config *c)
{
    return c->self_id != 0 && c->incarnation <= SWIM_INCARNATION_MAX
        && c->probe_interval_ms >= SWIM_PROBE_INTERVAL_MS_MIN
        && c->probe_interval_ms <= SWIM_PROBE_INTERVAL_MS_MAX
        && c->probe_timeout_ms >= 1
        && c->probe_timeout_ms < c->probe_interval_ms
        && c->indirect_count <= SWIM_INDIRECT_MAX && c->suspicion_mult >= 1
        && c->suspicion_mult <= SWIM_MULT_MAX && c->retransmit_mult >= 1
        && c->retransmit_mult <= SWIM_MULT_MAX && c->piggyback_max >= 1
        && c->piggyback_max <= SWIM_PIGGYBACK_MAX;
}

int
swim_create(const struct swim_config *cfg, uint64_t now_ms, struct swim **out)
{
    static const uint8_t zero[SWIM_MSG_SIZE_MAX];

    *out = NULL;
    if (!swim_config_valid(cfg)) {
        return MRD_EINVAL;
    }
    struct swim *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return MRD_ENOMEM;
    }
    s->cfg    = *cfg;
    s->now_ms = now_ms;
    s->rng    = cfg->seed;
    /* A random first seq, so acks still in flight for a previous life of
     * this node rarely match a probe of this one. */
    s->seq_next              = (uint32_t) swim_rand(s);
    s->count                 = 1;
    s->member[0].id          = cfg->self_id;
    s->member[0].state       = SWIM_ALIVE;
    s->member[0].incarnation = cfg->incarnation;
    swim_gossip_restart(&s->member[0]); /* announce this life */
    s->next_probe_ms = now_ms + swim_rand_below(s, cfg->probe_interval_ms);
    proto_buf_init(&s->wbuf, SWIM_MSG_SIZE_MAX);
    if (proto_buf_append(&s->wbuf, zero, sizeof zero) != MRD_OK) {
        proto_buf_fini(&s->wbuf);
        free(s);
        return MRD_ENOMEM;
    }
    proto_buf_reset(&s->wbuf);
    *out = s;
    return MRD_OK;
}

void
swim_destroy(struct swim *s)
{
    if (s == NULL) {
        return;
    }
    proto_buf_fini(&s->wbuf);
    free(s);
}

/* ------------------------------------------------------------ members -- */

static int
swim_id_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a;
    uint64_t y = *(const uint64_t *) b;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Fisher-Yates over the probe order. A fresh random order each round
 * keeps the worst gap between two probes of one member at 2(n-1)-1
 * intervals (SWIM paper, 4.3) while no two nodes probe in lockstep. */
static void
swim_order_shuffle(struct swim *s)
{
    for (uint32_t i = s->order_count; i > 1; i--) {
        uint32_t j      = swim_rand_below(s, i);
        uint64_t t      = s->order[i - 1];
        s->order[i - 1] = s->order[j];
        s->order[j]     = t;
    }
    s->order_pos = 0;
}

static void
swim_order_rebuild(struct swim *s)
{
    s->order_count = 0;
    for (uint32_t i = 0; i < s->count; i++) {
        if (s->member[i].id != s->cfg.self_id) {
            s->order[s->order_count++] = s->member[i].id;
        }
    }
    swim_order_shuffle(s);
}

/* Sorted, deduplicated and checked ids into ids_out; self added. */
static int
swim_members_prepare(struct swim *s, const uint64_t *ids, size_t count,
    uint64_t *ids_out, uint32_t *count_out)
{
    if (count > SWIM_MEMBERS_MAX) {
        return MRD_EFULL;
    }
    bool self_listed = false;
    for (size_t i = 0; i < count; i++) {
        if (ids[i] == 0) {
            return MRD_EINVAL;
        }
        self_listed = self_listed || ids[i] == s->cfg.self_id;
        ids_out[i]  = ids[i];
    }
    uint32_t n = (uint32_t) count;
    if (!self_listed) {
        if (n == SWIM_MEMBERS_MAX) {
            return MRD_EFULL;
        }
        ids_out[n++] = s->cfg.self_id;
    }
    qsort(ids_out, n, sizeof *ids_out, swim_id_cmp);
    for (uint32_t i = 1; i < n; i++) {
        if (ids_out[i] == ids_out[i - 1]) {
            return MRD_EINVAL;
        }
    }
    *count_out = n;
    return MRD_OK;
}

int
swim_set_members(struct swim *s, const uint64_t *ids, size_t count)
{
    uint64_t sorted[SWIM_MEMBERS_MAX];
    uint32_t n = 0;

    int rv = swim_members_prepare(s, ids, count, sorted, &n);
    if (rv != MRD_OK) {
        return rv;
    }
    for (uint32_t i = 0; i < n; i++) {
        const struct swim_member *old = swim_find(s, sorted[i]);
        if (old != NULL) {
            s->scratch[i] = *old;
        } else {
            memset(&s->scratch[i], 0, sizeof s->scratch[i]);
            s->scratch[i].id    = sorted[i];
            s->scratch[i].state = SWIM_ALIVE; /* presumed: see swim.h */
        }
    }
    memcpy(s->member, s->scratch, n * sizeof s->member[0]);
    s->count = n;
    if (s->probe.active && swim_find(s, s->probe.target) == NULL) {
        s->probe.active = false;
    }
    swim_order_rebuild(s);
    return MRD_OK;
}

void
swim_set_topo_version(struct swim *s, uint64_t version)
{
    s->topo_version = version;
    if (version >= s->topo_seen) {
        s->topo_seen = version;
        s->topo_from = 0;
    }
}

void
swim_topo_seen(const struct swim *s, uint64_t *version_out, uint64_t *from_out)
{
    *version_out = s->topo_seen;
    *from_out    = s->topo_from;
}

/* -------------------------------------------------------------- probes -- */

static void
swim_probe_start(struct swim *s, struct swim_out *out)
{
    s->next_probe_ms = swim_add_sat(s->now_ms, s->cfg.probe_interval_ms);
    if (s->order_count == 0) {
        return; /* alone: nobody to probe */
    }
    if (s->order_pos >= s->order_count) {
        swim_order_shuffle(s);
    }
    uint64_t                  target = s->order[s->order_pos++];
    const struct swim_member *t      = swim_find(s, target);
    MRD_ASSERT(t != NULL); /* the order follows the members */
    s->probe.target_inc    = t->incarnation;
    s->probe.active        = true;
    s->probe.acked         = false;
    s->probe.indirect_sent = false;
    s->probe.seq           = s->seq_next++;
    s->probe.target        = target;
    s->probe.start_ms      = s->now_ms;
    s->stats.probes++;
    /* DEAD members are pinged too: that is how a healed partition or a
     * restarted node is found again. The ping carries our DEAD record, so
     * the target refutes it in its ack. */
    swim_send(s, out, SWIM_T_PING, target, s->probe.seq, target);
}

/* No direct ack in time: ask up to k random ALIVE members to ping the
 * target for us. Only an ALIVE target's probe can change anything. */
static void
swim_probe_indirect(struct swim *s, struct swim_out *out)
{
    uint64_t pool[SWIM_MEMBERS_MAX];
    uint32_t n = 0;

    s->probe.indirect_sent      = true;
    const struct swim_member *t = swim_find(s, s->probe.target);
    if (t == NULL || t->state != SWIM_ALIVE) {
        return;
    }
    for (uint32_t i = 0; i < s->count; i++) {
        const struct swim_member *m = &s->member[i];
        if (m->id != s->cfg.self_id && m->id != t->id
            && m->state == SWIM_ALIVE) {
            pool[n++] = m->id;
        }
    }
    uint32_t k = s->cfg.indirect_count < n ? s->cfg.indirect_count : n;
    if (k == 0) {
        return;
    }
    s->stats.probes_indirect++;
    for (uint32_t i = 0; i < k; i++) { /* partial Fisher-Yates */
        uint32_t j = i + swim_rand_below(s, n - i);
        uint64_t c = pool[j];
        pool[j]    = pool[i];
        pool[i]    = c;
        swim_send(s, out, SWIM_T_PING_REQ, c, s->probe.seq, s->probe.target);
    }
}

/* The interval is over: no ack at all makes an ALIVE target SUSPECT, but
 * only at the incarnation it was probed at. If its record took a higher
 * incarnation meanwhile, the target showed a newer life (a restart, a
 * refutation) after the ping left, and a lost ping to the older one says
 * nothing about it. */
static void
swim_probe_conclude(struct swim *s, struct swim_out *out)
{
    s->probe.active = false;
    if (s->probe.acked) {
        return;
    }
    struct swim_member *t = swim_find(s, s->probe.target);
    MRD_ASSERT(t != NULL); /* swim_set_members drops a probe it removes */
    s->stats.probes_failed++;
    if (t->state == SWIM_ALIVE && t->incarnation == s->probe.target_inc) {
        s->stats.suspicions++;
        swim_record_set(s, t, SWIM_SUSPECT, t->incarnation, out);
    }
}

static void
swim_suspicions_expire(struct swim *s, struct swim_out *out)
{
    for (uint32_t i = 0; i < s->count; i++) {
        struct swim_member *m = &s->member[i];
        if (m->state == SWIM_SUSPECT && m->suspect_deadline_ms <= s->now_ms) {
            s->stats.deaths++;
            swim_record_set(s, m, SWIM_DEAD, m->incarnation, out);
        }
    }
}

static void
swim_relays_expire(struct swim *s)
{
    for (uint32_t i = 0; i < SWIM_RELAYS_MAX; i++) {
        if (s->relay[i].active && s->relay[i].expires_ms <= s->now_ms) {
            s->relay[i].active = false;
        }
    }
}

void
swim_tick(struct swim *s, uint64_t now_ms, struct swim_out *out)
{
    swim_out_clear(out);
    MRD_ASSERT(now_ms >= s->now_ms); /* our own monotonic clock */
    s->now_ms = now_ms;

    swim_suspicions_expire(s, out);
    if (s->probe.active) {
        uint64_t end
            = swim_add_sat(s->probe.start_ms, s->cfg.probe_interval_ms);
        uint64_t direct_end
            = swim_add_sat(s->probe.start_ms, s->cfg.probe_timeout_ms);
        if (now_ms >= end) {
            swim_probe_conclude(s, out); /* too late for relays to help */
        } else if (!s->probe.acked && !s->probe.indirect_sent
            && now_ms >= direct_end) {
            swim_probe_indirect(s, out);
        }
    }
    if (!s->probe.active && now_ms >= s->next_probe_ms) {
        swim_probe_start(s, out);
    }
    swim_relays_expire(s);
}

uint64_t
swim_next_deadline(const struct swim *s)
{
    uint64_t t = s->next_probe_ms;

    if (s->probe.active) {
        uint64_t end
            = swim_add_sat(s->probe.start_ms, s->cfg.probe_interval_ms);
        t = end < t ? end : t;
        if (!s->probe.acked && !s->probe.indirect_sent) {
            uint64_t d
                = swim_add_sat(s->probe.start_ms, s->cfg.probe_timeout_ms);
            t = d < t ? d : t;
        }
    }
    for (uint32_t i = 0; i < s->count; i++) {
        const struct swim_member *m = &s->member[i];
        if (m->state == SWIM_SUSPECT && m->suspect_deadline_ms < t) {
            t = m->suspect_deadline_ms;
        }
    }
    return t;
}

/* ------------------------------------------------------------ receive -- */

static void
swim_on_ping(struct swim *s, uint64_t from, const struct swim_msg *m,
    struct swim_out *out)
{
    if (m->target != s->cfg.self_id) {
        s->stats.misdelivered++; /* meant for a node that had our address */
        return;
    }
    swim_send(s, out, SWIM_T_ACK, from, m->seq, s->cfg.self_id);
}

static void
swim_on_ack(struct swim *s, uint64_t from, const struct swim_msg *m,
    struct swim_out *out)
{
    /* Ours, direct or relayed: the relay forwards our seq and names the
     * target, so both kinds match the same way. */
    if (s->probe.active && m->seq == s->probe.seq
        && m->target == s->probe.target) {
        s->probe.acked = true;
        return;
    }
    for (uint32_t i = 0; i < SWIM_RELAYS_MAX; i++) {
        struct swim_relay *r = &s->relay[i];
        if (r->active && r->seq == m->seq && r->target == m->target
            && from == r->target) {
            r->active = false;
            swim_send(
                s, out, SWIM_T_ACK, r->requester, r->requester_seq, r->target);
            return;
        }
    }
    s->stats.stale_acks++; /* late, duplicated, or for a previous life */
}

static void
swim_on_ping_req(struct swim *s, uint64_t from, const struct swim_msg *m,
    struct swim_out *out)
{
    if (m->target == s->cfg.self_id || m->target == from
        || swim_find(s, m->target) == NULL) {
        s->stats.misdelivered++;
        return;
    }
    swim_relays_expire(s);
    for (uint32_t i = 0; i < SWIM_RELAYS_MAX; i++) {
        struct swim_relay *r = &s->relay[i];
        if (!r->active) {
            r->active        = true;
            r->seq           = s->seq_next++;
            r->requester_seq = m->seq;
            r->target        = m->target;
            r->requester     = from;
            /* The requester gives up at the end of its interval. */
            r->expires_ms = swim_add_sat(s->now_ms, s->cfg.probe_interval_ms);
            swim_send(s, out, SWIM_T_PING, r->target, r->seq, r->target);
            return;
        }
    }
    s->stats.relay_full++;
}

static void
swim_topo_note(
    struct swim *s, uint64_t from, uint64_t version, struct swim_out *out)
{
    if (version > s->topo_seen) {
        s->topo_seen = version;
        s->topo_from = from;
        swim_event_add(out, SWIM_EV_TOPO, from, SWIM_UNKNOWN, 0, version);
    }
}

int
swim_recv(struct swim *s, uint64_t now_ms, uint64_t from_id, const void *bytes,
    size_t len, struct swim_out *out, const char **why)
{
    struct swim_msg m;

    swim_out_clear(out);
    MRD_ASSERT(now_ms >= s->now_ms); /* our own monotonic clock */
    s->now_ms = now_ms;
    int rv    = swim_msg_decode(bytes, len, &m, why);
    if (rv == MRD_OK && (from_id == 0 || from_id == s->cfg.self_id)) {
        rv = swim_fail(why, MRD_EPROTO, "message from node 0 or from self");
    }
    if (rv != MRD_OK) {
        s->stats.refused++;
        return rv;
    }
    s->stats.msgs_in++;
    swim_topo_note(s, from_id, m.topo_version, out);
    struct swim_member *sender = swim_find(s, from_id);
    if (sender == NULL) {
        s->stats.unknown_sender++;
        return MRD_OK;
    }
    /* The message itself proves its sender alive at its incarnation. */
    swim_apply(s, sender, SWIM_ALIVE, m.incarnation, out);
    for (uint32_t i = 0; i < m.update_count; i++) {
        struct swim_member *u = swim_find(s, m.update[i].id);
        if (u == NULL) {
            s->stats.unknown_updates++;
            continue;
        }
        swim_apply(s, u, m.update[i].state, m.update[i].incarnation, out);
    }
    switch (m.type) {
    case SWIM_T_PING:
        swim_on_ping(s, from_id, &m, out);
        break;
    case SWIM_T_ACK:
        swim_on_ack(s, from_id, &m, out);
        break;
    case SWIM_T_PING_REQ:
        swim_on_ping_req(s, from_id, &m, out);
        break;
    }
    return MRD_OK;
}

/* ------------------------------------------------------------- reading -- */

enum swim_state
swim_state(const struct swim *s, uint64_t id)
{
    const struct swim_member *m = swim_find_const(s, id);
    return m == NULL ? SWIM_UNKNOWN : m->state;
}

int
swim_member_get(const struct swim *s, uint64_t id, enum swim_state *state_out,
    uint64_t *incarnation_out)
{
    const struct swim_member *m = swim_find_const(s, id);
    if (m == NULL) {
        return MRD_ENOTFOUND;
    }
    *state_out       = m->state;
    *incarnation_out = m->incarnation;
    return MRD_OK;
}

uint32_t
swim_member_count(const struct swim *s)
{
    return s->count;
}

uint64_t
swim_incarnation(const struct swim *s)
{
    const struct swim_member *me = swim_find_const(s, s->cfg.self_id);
    MRD_ASSERT(me != NULL); /* self is always a member */
    return me->incarnation;
}

const struct swim_stats *
swim_stats_get(const struct swim *s)
{
    return &s->stats;
}
