/*
 * swim.h: liveness by gossip in the style of SWIM (Das, Gupta, Motivala,
 * 2002) and memberlist, as a sans-I/O state machine. docs/ARCHITECTURE.md,
 * "Liveness (SWIM)", gives the decisions and the bounds; docs/PROTOCOL.md,
 * "SWIM gossip messages", the wire format, which this header must match.
 *
 * Who is in the cluster is not decided here: the signed topology says so
 * and the caller passes its node ids in (swim_set_members). SWIM decides
 * only whether each of those members is ALIVE, SUSPECT or DEAD:
 *
 *   - Every probe interval a node pings the next member of a shuffled
 *     round-robin list. No ack within the probe timeout: it asks k other
 *     members to ping the target for it (PING_REQ). No ack, direct or
 *     relayed, by the end of the interval: the target becomes SUSPECT,
 *     unless its record took a higher incarnation meanwhile (a lost ping
 *     to an older life says nothing about the newer one).
 *   - A suspicion that nobody refutes within the suspicion timeout (scaled
 *     with log10 of the cluster size) becomes DEAD.
 *   - Every record is (state, incarnation); records are ordered by
 *     (incarnation, rank) with ALIVE < SUSPECT < DEAD, and a node keeps the
 *     largest it has heard: a max-register, so duplicated, reordered or
 *     late messages cannot make a view go backwards.
 *   - Records spread by piggybacking on every ping, ack and ping-req, each
 *     change retransmitted retransmit_mult * ceil(log10(n + 1)) times.
 *   - A node that hears itself suspected or declared dead at an incarnation
 *     >= its own takes a higher one and spreads ALIVE: the refutation.
 *   - Every message carries the sender's own incarnation (the message itself
 *     proves the sender alive) and the sender's topology version.
 *   - Every message to member m carries this node's record of m first when
 *     it is SUSPECT or DEAD, so m refutes at its next exchange with anyone
 *     who doubts it (Lifeguard's "buddy system"), and DEAD members are still
 *     pinged (directly, in the round-robin), so a healed partition or a
 *     restarted node is seen again without any coordinator.
 *
 * Sans-I/O: no clock reads (now_ms comes in, from a monotonic clock), no
 * randomness but a generator seeded from the config, no threads, no
 * sockets. Messages to send and state changes come back in a caller-owned
 * struct swim_out. swim_create() is the only call that allocates; ticks and
 * receives never allocate and so never fail for memory.
 *
 * Thread safety: none inside; one struct swim is used by one thread at a
 * time (the node's gossip loop).
 * Errors: MRD_* codes from meridian.h, with a static reason in *why where a
 * `why` argument exists (`why` itself may be NULL).
 */
#ifndef MRD_SWIM_H
#define MRD_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* ------------------------------------------------------------- limits -- */

/* Format of every SWIM message, its first element. A receiver refuses any
 * other with MRD_EPROTOVERSION: liveness must not be guessed from a message
 * it does not fully understand. */
#define SWIM_FORMAT 1u
/* Members one node tracks, itself included. Every node probes every member
 * in turn, so a member is probed by each node about once per n intervals:
 * past a few hundred nodes per cluster, detection gets slow and the
 * table scans (O(n) per message) start to show. Fixed at creation like
 * every other pool. */
#define SWIM_MEMBERS_MAX 256u
/* Membership updates piggybacked on one message, at most. A receiver
 * refuses more. With the widest encoding of every field a message stays
 * under SWIM_MSG_SIZE_MAX (checked below). */
#define SWIM_PIGGYBACK_MAX 32u
/* Members asked to relay one probe (k), at most. */
#define SWIM_INDIRECT_MAX 8u
/* Largest encoded message, sent or accepted. One message fits one UDP
 * datagram under the 1,280-byte IPv6 minimum MTU with room for the link's
 * AEAD header, so an adapter may send gossip over datagrams. */
#define SWIM_MSG_SIZE_MAX 1024u
/* Largest incarnation on the wire. Wall-clock milliseconds (what the node
 * starts from, see swim_config.incarnation) are ~2^41 today; the cap keeps
 * refutation (incarnation + 1) from ever overflowing, so a buggy peer
 * cannot pin a node at an incarnation it could not refute. */
#define SWIM_INCARNATION_MAX (UINT64_C(1) << 62)
/* Ping-reqs this node relays at once. Each member sends at most k per
 * interval and each relay lives one interval, so with k = 3 a node is asked
 * ~3 times per interval on average; 64 leaves a wide margin. When full, a
 * request is dropped and counted: its requester asked others too. */
#define SWIM_RELAYS_MAX 64u
/* Outputs of one call. A tick sends one ping or k ping-reqs; a receive
 * sends at most one message (ack, relayed ping, forwarded ack). Events: a
 * tick can time out every suspicion at once; a receive changes at most the
 * sender and one member per update, plus a refutation and a topology
 * version. */
#define SWIM_OUT_MSGS_MAX (SWIM_INDIRECT_MAX + 1u)
#define SWIM_OUT_EVENTS_MAX (SWIM_MEMBERS_MAX + 2u)
/* Bytes of the fixed part of a message at its widest: array header,
 * format, type, seq (uint32), target, incarnation, topology version
 * (uint64 each), updates array header. */
#define SWIM_MSG_HEADER_SIZE_MAX (1u + 1u + 1u + 5u + 9u + 9u + 9u + 3u)
/* One update at its widest: [id uint64, state, incarnation uint64]. */
#define SWIM_UPDATE_SIZE_MAX (1u + 9u + 1u + 9u)
/* Largest message a sender with piggyback_max = p can produce. */
#define SWIM_MSG_SIZE_FOR(p)                                                   \
    (SWIM_MSG_HEADER_SIZE_MAX + (p) *SWIM_UPDATE_SIZE_MAX)
_Static_assert(SWIM_MSG_SIZE_FOR(SWIM_PIGGYBACK_MAX) <= SWIM_MSG_SIZE_MAX,
    "a message with every update at its widest fits");
_Static_assert(SWIM_PIGGYBACK_MAX + 2u <= SWIM_OUT_EVENTS_MAX,
    "events of one receive fit");
_Static_assert(SWIM_MEMBERS_MAX <= 65535u, "gossip counters fit uint16");

/* Defaults, each with its reason. Meridian's links span regions, so the
 * timeouts are sized for a WAN round trip (~300 ms between continents),
 * not a LAN's. */
/* One probe per second per node: memberlist's LAN default. 500 ms leaves
 * too little room for an indirect probe (four one-way trips) across
 * continents once the direct timeout has passed. */
#define SWIM_PROBE_INTERVAL_MS_DEFAULT 1000u
/* Wait for a direct ack: above an intercontinental round trip (~300 ms),
 * leaving 600 ms of the interval for the indirect probe (four one-way
 * trips of up to 150 ms). */
#define SWIM_PROBE_TIMEOUT_MS_DEFAULT 400u
/* k: three relays make a false suspicion from one bad link (the prober's
 * or the target's) need every relay path to fail too (SWIM paper, 4.2). */
#define SWIM_INDIRECT_DEFAULT 3u
/* Suspicion timeout = mult * max(1, ceil(log10 n)) * probe interval
 * (memberlist's formula, log rounded up so it stays integer): time for a
 * suspicion to reach the suspect through gossip and its refutation to come
 * back, which grows with the log of the cluster size. 4 s up to 10 nodes,
 * 8 s up to 100, 12 s up to 256. */
#define SWIM_SUSPICION_MULT_DEFAULT 4u
/* Retransmissions of each change = mult * ceil(log10(n + 1)) (memberlist):
 * epidemic spread reaches everyone with high probability after O(log n)
 * rounds. 4 up to 9 nodes, 8 up to 99, 12 up to 256. */
#define SWIM_RETRANSMIT_MULT_DEFAULT 4u
/* Updates per message: in clusters of up to 16 nodes every pending change
 * rides every message, and a message stays under ~360 bytes. */
#define SWIM_PIGGYBACK_DEFAULT 16u

/* Bounds on the config, checked by swim_create (MRD_EINVAL). */
#define SWIM_PROBE_INTERVAL_MS_MIN                                             \
    10u /* below this, ticks cost more than                                    \
           they tell */
#define SWIM_PROBE_INTERVAL_MS_MAX                                             \
    60000u /* a minute: slower is not liveness                                 \
            */
#define SWIM_MULT_MAX 32u /* suspicion and retransmit multipliers */
_Static_assert(SWIM_PROBE_TIMEOUT_MS_DEFAULT < SWIM_PROBE_INTERVAL_MS_DEFAULT,
    "the indirect probe gets part of the interval");
_Static_assert(SWIM_INDIRECT_DEFAULT <= SWIM_INDIRECT_MAX, "k within max");
_Static_assert(SWIM_PIGGYBACK_DEFAULT <= SWIM_PIGGYBACK_MAX, "default fits");

/* -------------------------------------------------------------- types -- */

/* A member's state. The numbers are on the wire: never renumbered. Their
 * order is the rank used to break ties at one incarnation. */
enum swim_state {
    SWIM_UNKNOWN = 0, /* not a member (swim_state() only; never on wire) */
    SWIM_ALIVE   = 1,
    SWIM_SUSPECT = 2,
    SWIM_DEAD    = 3,
};

/* Message types, on the wire: never renumbered. */
enum swim_type {
    SWIM_T_PING     = 1, /* are you there? target = the recipient */
    SWIM_T_ACK      = 2, /* yes: target = the member the ack is for */
    SWIM_T_PING_REQ = 3, /* please ping target for me, ack back with seq */
};

struct swim_config {
    uint64_t self_id; /* >= 1: the node's id in the topology */
    /* Where this node's incarnation starts, <= SWIM_INCARNATION_MAX. A
     * node restarted with no memory should start above anything its
     * previous life said, so its first ALIVE overrides what the others
     * remember; meridiand passes wall-clock milliseconds (see
     * docs/ARCHITECTURE.md). Correctness does not depend on it: a node
     * told it is suspected or dead at a higher incarnation climbs over it
     * (refutation), so 0 works too, one exchange slower. */
    uint64_t incarnation;
    uint64_t seed; /* the only source of randomness */
    uint32_t probe_interval_ms;
    uint32_t probe_timeout_ms; /* 1 .. probe_interval_ms - 1 */
    uint32_t indirect_count; /* k, 0 .. SWIM_INDIRECT_MAX */
    uint32_t suspicion_mult; /* 1 .. SWIM_MULT_MAX */
    uint32_t retransmit_mult; /* 1 .. SWIM_MULT_MAX */
    uint32_t piggyback_max; /* 1 .. SWIM_PIGGYBACK_MAX */
};

/* One membership update as carried on the wire. */
struct swim_update {
    uint64_t        id;
    enum swim_state state; /* ALIVE, SUSPECT or DEAD */
    uint64_t        incarnation;
};

/* A decoded message. `incarnation` and `topo_version` are the sender's
 * own; seq matches an ack to its ping. */
struct swim_msg {
    enum swim_type     type;
    uint32_t           seq;
    uint64_t           target;
    uint64_t           incarnation;
    uint64_t           topo_version;
    uint32_t           update_count;
    struct swim_update update[SWIM_PIGGYBACK_MAX];
};

enum swim_event_kind {
    /* A member's state changed (never reported for an incarnation change
     * alone): id, state, incarnation. */
    SWIM_EV_MEMBER = 1,
    /* This node heard itself suspected or dead and took a new incarnation
     * to refute it: id (self), incarnation (the new one). */
    SWIM_EV_REFUTED = 2,
    /* A peer runs a newer topology than any seen so far: id (the peer),
     * topo_version. The adapter fetches the signed topology from it. */
    SWIM_EV_TOPO = 3,
};

struct swim_event {
    enum swim_event_kind kind;
    enum swim_state      state;
    uint64_t             id;
    uint64_t             incarnation;
    uint64_t             topo_version;
};

struct swim_out_msg {
    uint64_t to; /* a member id, never self */
    uint32_t len; /* <= SWIM_MSG_SIZE_MAX */
    uint8_t  bytes[SWIM_MSG_SIZE_MAX];
};

/* What one call asks the caller to do, in order. Caller-owned and ~20 KiB,
 * so keep it off small stacks; every swim_tick/swim_recv empties it first,
 * so its contents are valid until the next call with it. */
struct swim_out {
    uint32_t            msg_count;
    uint32_t            event_count;
    struct swim_out_msg msg[SWIM_OUT_MSGS_MAX];
    struct swim_event   event[SWIM_OUT_EVENTS_MAX];
};

/* Counters for /metrics and tests; never reset. */
struct swim_stats {
    uint64_t msgs_in; /* accepted by the decoder */
    uint64_t msgs_out;
    uint64_t refused; /* malformed, too big, wrong format: MRD_E* returned */
    uint64_t unknown_sender; /* from a node not in the member set: ignored */
    uint64_t unknown_updates; /* updates about non-members: skipped */
    uint64_t misdelivered; /* a ping for another target: ignored */
    uint64_t stale_acks; /* acks for no probe or relay in flight */
    uint64_t relay_full; /* ping-reqs dropped: SWIM_RELAYS_MAX in use */
    uint64_t probes;
    uint64_t probes_indirect; /* probes that needed ping-reqs */
    uint64_t probes_failed; /* no ack at all by the end of the interval */
    uint64_t suspicions; /* members this node itself started suspecting */
    uint64_t deaths; /* suspicions this node timed out into DEAD */
    uint64_t refutations;
};

struct swim; /* opaque */

/* ------------------------------------------------------------- life -- */

/* Fills cfg with the defaults above. */
void swim_config_default(struct swim_config *cfg, uint64_t self_id,
    uint64_t incarnation, uint64_t seed);

/* Creates a node's SWIM state with only itself as a member; the first probe
 * starts at a random point of the first interval after now_ms, so nodes
 * started together do not probe in lockstep. MRD_EINVAL (a config field out
 * of its bounds) or MRD_ENOMEM. On success *out goes to swim_destroy()
 * once; on error *out is NULL. */
MRD_MUST_USE int swim_create(
    const struct swim_config *cfg, uint64_t now_ms, struct swim **out);
/* Frees s; NULL is a no-op. */
void swim_destroy(struct swim *s);

/* Replaces the member set with ids[0..count) (the topology's nodes; self
 * may be listed or not, it is always a member). Members kept keep their
 * records; new ones start ALIVE at incarnation 0 (presumed up until a
 * probe says otherwise, so a new node is used at once); removed ones are
 * forgotten with their pending gossip, and a probe of one is dropped. The
 * probe order is reshuffled. Reports no events. MRD_EINVAL (an id of 0 or
 * listed twice), MRD_EFULL (more than SWIM_MEMBERS_MAX with self); on
 * error nothing changed. */
MRD_MUST_USE int swim_set_members(
    struct swim *s, const uint64_t *ids, size_t count);

/* The topology version this node runs; sent in every message. */
void swim_set_topo_version(struct swim *s, uint64_t version);
/* The highest topology version heard from anyone and the member that sent
 * it (*from_out is 0 when this node's own is the highest). */
void swim_topo_seen(
    const struct swim *s, uint64_t *version_out, uint64_t *from_out);

/* ------------------------------------------------------------ driving -- */

/* Runs the timers due at now_ms: suspicions timed out become DEAD, a probe
 * without a direct ack sends its ping-reqs, a probe without any ack makes
 * its target SUSPECT, and the next probe starts. now_ms never goes back
 * (asserted: it comes from our own monotonic clock). Call it again at
 * swim_next_deadline(). Empties *out, then fills it. */
void swim_tick(struct swim *s, uint64_t now_ms, struct swim_out *out);

/* When swim_tick() has work next: the earliest timer, in ms. */
uint64_t swim_next_deadline(const struct swim *s);

/* Handles one message that from_id (authenticated by the link) sent:
 * decodes it whole first, so a refused message changes nothing but a
 * counter. Updates about non-members are skipped and counted (topologies
 * change at different times on different nodes, so a peer may know a node
 * this one does not yet). A message from a non-member only has its topology
 * version noted (a newly added node is the first to know a new topology).
 * Errors: MRD_ETOOBIG (over SWIM_MSG_SIZE_MAX), MRD_EPROTOVERSION (another
 * format), MRD_EPROTO (anything else malformed, or from_id 0 or self), each
 * with a reason in *why. Empties *out, then fills it. */
MRD_MUST_USE int swim_recv(struct swim *s, uint64_t now_ms, uint64_t from_id,
    const void *bytes, size_t len, struct swim_out *out, const char **why);

/* ------------------------------------------------------------- reading -- */

/* A member's state, SWIM_UNKNOWN for a non-member. Self is always ALIVE. */
enum swim_state swim_state(const struct swim *s, uint64_t id);
/* A member's state and incarnation: MRD_OK or MRD_ENOTFOUND. */
MRD_MUST_USE int swim_member_get(const struct swim *s, uint64_t id,
    enum swim_state *state_out, uint64_t *incarnation_out);
/* Members, self included. */
uint32_t swim_member_count(const struct swim *s);
/* This node's current incarnation. */
uint64_t swim_incarnation(const struct swim *s);
/* The suspicion timeout and retransmit limit for the current member count
 * (the formulas above), for tests and /metrics. */
uint64_t                 swim_suspicion_timeout_ms(const struct swim *s);
uint32_t                 swim_retransmit_limit(const struct swim *s);
const struct swim_stats *swim_stats_get(const struct swim *s);

/* ------------------------------------------------------------- codec -- */

/* Encodes m into buf[0..cap): MRD_OK and *len_out, MRD_EINVAL (a field a
 * decoder would refuse: type, target 0, incarnation over the max, more than
 * SWIM_PIGGYBACK_MAX updates, a bad update, an id twice), MRD_ETOOBIG
 * (cap too small) or MRD_ENOMEM (it encodes through a proto_buf; the state
 * machine itself uses one allocated at creation). Smallest integer encodings,
 * so equal messages encode to equal bytes. */
MRD_MUST_USE int swim_msg_encode(
    const struct swim_msg *m, void *buf, size_t cap, size_t *len_out);
/* Decodes buf[0..len) into *out with every bound checked; never trusts a
 * length. Errors as swim_recv's. */
MRD_MUST_USE int swim_msg_decode(
    const void *buf, size_t len, struct swim_msg *out, const char **why);

#endif /* MRD_SWIM_H */
