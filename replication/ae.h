/*
 * ae.h: the decisions of pull-based anti-entropy, as a pure core
 * (docs/ARCHITECTURE.md, "Anti-entropy core").
 *
 * Nothing here does I/O, reads a clock, takes a lock or draws a random
 * number: the node's puller and server (and the whole-cluster simulation in
 * tests/unit/ae_sim_test.c) call these functions with their state, the
 * message at hand and the time, and do what they say. What is decided here:
 *
 *   - whom to pull a shard from (ae_sources) and whom to hint after an
 *     append (ae_hint_targets): every other live replica of this node's
 *     region, and, only on the region's designated puller (its first live
 *     replica in rendezvous order), the first live replica of each remote
 *     region; so each event crosses each region-to-region link once;
 *   - what to send for a pull (ae_serve): the log entries after `after`
 *     that the asker's vector does not cover, stopping (never skipping)
 *     at an event of a region the asker gets another way (its own, or one
 *     it pulls directly), so the asker's log stays in causal order and no
 *     event travels a second link;
 *   - whether a pulled batch may be applied, event by event (ae_batch_check);
 *   - what this node knows of every replica's vector (struct ae_know), fed
 *     by PULL requests and replies and by the digests they carry, and from
 *     it the shard's causally stable vector and the acknowledgement level
 *     of a dot;
 *   - when to pull again (struct ae_pace) and how many reply bytes may be in
 *     flight from one source (struct ae_budget).
 *
 * Vectors: every crdt_vv given to or returned by this module is a shard's
 * vector as the shard's log holds it: per origin, the highest seq of that
 * origin's events *in this shard*, this node's own entry included. (The
 * store keeps its own entry as its origin seq, shared by all shards; that
 * is a fine filter but not a fine report: ae_know's witness rule compares a
 * replica's entry for itself with ours, so the own entry handed here must be
 * the shard's.)
 *
 * Thread safety: none inside; each structure is used by one thread at a
 * time. Errors: MRD_* codes from meridian.h, with a static reason in *why
 * where a `why` argument exists.
 */
#ifndef MRD_AE_H
#define MRD_AE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "crdt.h"
#include "proto.h"

/* ------------------------------------------------------------- limits -- */

/* Regions of one cluster. A set of regions is a uint32_t mask on the wire
 * (a PULL's skip set), and no deployment spans more than a few dozen. */
#define AE_REGIONS_MAX 32u
/* Region index for a node the topology does not place anywhere (a removed
 * node's events): never skipped. */
#define AE_REGION_NONE UINT32_MAX
/* Replicas of one shard in one region. Writes never wait for a quorum, so
 * more copies in one region than this only cost disk and pulls. */
#define AE_RF_MAX 8u
/* Replicas of one shard in the whole cluster: rows of ae_know. */
#define AE_REPLICAS_MAX (AE_REGIONS_MAX * AE_RF_MAX)
/* Sources of one shard: the other replicas of this region, and one per
 * remote region. */
#define AE_SOURCES_MAX ((AE_RF_MAX - 1u) + (AE_REGIONS_MAX - 1u))
/* Hint targets of one append: the same shape. */
#define AE_HINTS_MAX AE_SOURCES_MAX
/* Log entries one pull may examine, sent or not: bounds the work of a pull
 * whose vector covers almost everything. */
#define AE_SERVE_SCAN_MAX 100000u
/* Events asked for per pull (node/puller.c's NODE_PULL_COUNT): one LMDB
 * transaction each, so a catching-up replica holds the write lock briefly. */
#define AE_PULL_COUNT 1000u
/* Reply bytes one pull may ask for: a full read reply, which every node
 * sends and accepts. */
#define AE_PULL_BYTES_MAX ((uint64_t) PROTO_READ_REPLY_MAX)
/* Pulls from one source that a budget always lets run at once: a grant is
 * at most a quarter of the budget, so one shard catching up never takes it
 * all while the others wait. */
#define AE_BUDGET_SHARES 4u
/* Reply bytes in flight from one source, all shards together: four full
 * replies, enough to keep a long-latency link busy; a slow or far source
 * never holds more of this node's memory. Configurable
 * (ae_budget_init); the configured value must be at least
 * AE_INFLIGHT_BYTES_MIN. */
#define AE_INFLIGHT_BYTES_DEFAULT (AE_BUDGET_SHARES * AE_PULL_BYTES_MAX)
/* The least budget that always lets one pull through: one largest record
 * (a pull always carries at least one event) and its envelope. */
#define AE_INFLIGHT_BYTES_MIN ((uint64_t) PROTO_RECORD_SIZE_MAX + 4096u)
/* Encoded knowledge digest carried by one PULL request or reply: the size
 * of a full version vector on the wire (PROTO_VV_ENTRIES_MAX * 16). Rows
 * that do not fit wait for a later digest (they rotate). */
#define AE_DIGEST_SIZE_MAX (16u * 1024u)
/* Digest format; decoders refuse any other. */
#define AE_DIGEST_FORMAT 1u
/* Removed nodes whose events one shard holds and whose entries are frozen. */
#define AE_FROZEN_MAX 256u

_Static_assert(AE_REGIONS_MAX <= 32u, "a region set is a uint32_t mask");
_Static_assert(AE_INFLIGHT_BYTES_MIN <= AE_INFLIGHT_BYTES_DEFAULT,
    "the default budget lets a pull through");
_Static_assert(AE_PULL_BYTES_MAX <= AE_INFLIGHT_BYTES_DEFAULT,
    "one full reply fits the default budget");
_Static_assert(AE_PULL_COUNT <= MRD_READ_COUNT_MAX, "a pull count is valid");
_Static_assert(AE_REPLICAS_MAX <= CRDT_ORIGINS_MAX,
    "every replica can be an origin of one shard");

/* ---------------------------------------------------------- placement -- */

/* One region's share of a shard's placement, as the topology computes it
 * (replication/topo.*): the region's candidate nodes in rendezvous order,
 * best first; the first rf hold the shard. Candidates past rf are not
 * replicas and are never pulled from. Borrowed: cand stays the caller's. */
struct ae_region_place {
    uint32_t        region; /* the region's index, < AE_REGIONS_MAX */
    uint32_t        rf; /* replicas in this region: cand[0..rf) */
    uint32_t        count; /* entries in cand, >= rf */
    const uint64_t *cand; /* node ids, rendezvous order */
};

/* A shard's placement over all regions. Borrowed. */
struct ae_place {
    uint32_t                      shard;
    uint32_t                      region_count;
    const struct ae_region_place *regions;
};

/* MRD_OK, or MRD_EINVAL with why: no region or more than AE_REGIONS_MAX, a
 * region index out of range or repeated, rf 0 or over AE_RF_MAX, fewer
 * candidates than rf, a node id 0, a node that is a replica twice. Every
 * other function takes a placement this accepted. */
MRD_MUST_USE int ae_place_check(const struct ae_place *place, const char **why);

/* True when node holds the shard; its region's index in *region_out (may be
 * NULL). */
bool ae_place_has(
    const struct ae_place *place, uint64_t node, uint32_t *region_out);

/* Liveness as this node sees it: SWIM's view, and the node's own evidence
 * (ae_pace_failing: pulls from that node keep failing). Asked only about
 * other nodes; called several times per decision, so it must be cheap and
 * give the same answer within one call of ae_sources or ae_hint_targets. */
typedef bool (*ae_live_fn)(void *arg, uint64_t node);

/* -------------------------------------------------------- scheduling -- */

struct ae_source {
    uint64_t node;
    uint32_t region; /* the source's region index */
    bool     remote; /* in another region than this node */
    /* Remote sources only: the regions whose events this node gets another
     * way, which the source must not send (ae_serve stops before them
     * instead): its own region (local pulls) and every other remote region
     * it pulls directly. ae_pull_skip() says what to put in the PULL. */
    uint32_t skip_regions;
};

/* The sources this node (self) should pull the shard from now: every other
 * live replica of its region; and, when self is its region's designated
 * puller (the first live replica of the region in rendezvous order, self
 * counting as live), for each remote region its first live replica, none
 * when no replica there is live. Local sources come first, then remote
 * ones in placement order. Writes at most AE_SOURCES_MAX entries to out.
 * MRD_ENOTFOUND when self is not a replica of the shard (it pulls nothing),
 * else MRD_OK. Call it whenever liveness may have changed (each puller
 * round is cheap enough): the answer moves as soon as a node goes down or
 * comes back, which is the failover. */
MRD_MUST_USE int ae_sources(const struct ae_place *place, uint64_t self,
    ae_live_fn live, void *live_arg, struct ae_source *out,
    uint32_t *count_out);

/* Whom to hint after this node appended to the shard (its own writes and
 * replicated batches alike): the nodes that pull the shard from self, as
 * self sees them: every other live replica of its region and, when self is
 * its region's designated puller, each remote region's designated puller
 * (its first live replica), since that node's source for this region is
 * self. At most AE_HINTS_MAX ids in out. MRD_ENOTFOUND when self is not a
 * replica, else MRD_OK. A hint is only a nudge: a lost or misdirected one
 * costs one idle interval, never an event. */
MRD_MUST_USE int ae_hint_targets(const struct ae_place *place, uint64_t self,
    ae_live_fn live, void *live_arg, uint64_t *out, uint32_t *count_out);

/* ------------------------------------------------------------ serving -- */

/* One entry of a shard's log as the server scans it. */
struct ae_log_entry {
    uint64_t        log_seq; /* the server's local log seq, increasing */
    struct crdt_dot dot;
    uint32_t        size; /* bytes the entry adds to the reply */
};

/* The next entry of the log (the first call gives the first entry after the
 * request's `after`): MRD_OK with *out filled, MRD_ENOTFOUND at the end of
 * the log, or another error, which ends the scan and is returned. */
typedef int (*ae_log_next_fn)(void *arg, struct ae_log_entry *out);
/* The region index of a node (an event's origin), or AE_REGION_NONE. */
typedef uint32_t (*ae_region_of_fn)(void *arg, uint64_t node);
/* Adds the entry that the last ae_log_next_fn call returned to the reply.
 * MRD_OK, or an error, which ends the scan and is returned. */
typedef int (*ae_emit_fn)(void *arg, const struct ae_log_entry *entry);

struct ae_serve_cb {
    ae_log_next_fn  next;
    ae_region_of_fn region_of;
    ae_emit_fn      emit;
    void           *arg; /* given to all three */
};

struct ae_serve_req {
    uint64_t after; /* the asker's read position of our log */
    uint32_t count_max; /* events at most, >= 1 */
    uint64_t bytes_max; /* reply bytes at most (one event always
                           goes, whatever its size) */
    uint32_t              skip_regions; /* from the PULL */
    const struct crdt_vv *vv; /* the asker's vector: borrowed */
};

struct ae_serve_rep {
    uint64_t scanned; /* last log seq examined: the asker's next `after` */
    uint32_t count; /* events emitted */
    uint64_t bytes;
    bool     end; /* the scan reached the end of the log */
    /* Stopped before an event of a skipped region that the asker lacks: it
     * must get that event from its own source first. */
    bool            blocked;
    struct crdt_dot blocked_on; /* that event, when blocked */
};

/* Serves one PULL: scans the log from after+1, skips (and scans past) the
 * entries the asker's vector covers, emits the others in log order, and
 * stops at count_max, bytes_max (after at least one event),
 * AE_SERVE_SCAN_MAX entries examined, the end of the log, or an uncovered
 * entry whose origin is in skip_regions. It never scans past an entry it
 * neither sent nor found covered, so the asker's position never passes an
 * event it lacks, and the asker, appending in this order, keeps causal
 * order. MRD_EINVAL (count_max 0), MRD_ECORRUPT (log seqs not increasing),
 * or what a callback returned; on error *out must not be sent. */
MRD_MUST_USE int ae_serve(const struct ae_serve_req *req,
    const struct ae_serve_cb *cb, struct ae_serve_rep *out);

/* ----------------------------------------------------------- applying -- */

/* One event of a pulled batch, in the reply's order. */
struct ae_batch_item {
    uint64_t        log_seq; /* the server's log seq */
    struct crdt_dot dot;
    uint32_t        shard; /* the shard its stream hashes to, here */
};

enum ae_verdict {
    AE_APPEND     = 0, /* new: append it, raise the vector, apply its ops */
    AE_APPEND_OWN = 1, /* our own event that we no longer hold (a restored
                          data dir): append it and raise our origin seq past
                          it, so its dot is never handed out again */
    AE_SKIP = 2, /* already held */
};

struct ae_batch_req {
    uint64_t              self; /* this node's id */
    uint32_t              shard; /* the shard pulled */
    uint64_t              after; /* the request's `after` */
    uint64_t              scanned; /* the reply's `scanned` */
    uint32_t              count_max; /* the request's count */
    const struct crdt_vv *vv; /* our vector for the shard, as of the
                                 transaction that will apply the batch */
};

/* Decides every event of a batch before anything is written: verdict[i]
 * for items[i] (count entries), and *append_count. Refuses the whole batch
 * with MRD_EPROTO and why when the peer's answer cannot be right: more
 * events than asked, scanned before after, log seqs not strictly
 * increasing inside (after, scanned], a dot with origin or seq 0, an event
 * of another shard, or an origin's events out of order or twice (a seq above
 * what we held before the batch but not above one this batch already
 * brings: per-origin order is what lets a vector's highest seq stand for
 * every lower one). MRD_ENOMEM, MRD_EFULL (more origins than a vector
 * holds). Then the caller applies the verdicts in order, in one
 * transaction with the new read position (scanned); crdt_doc_apply() still
 * checks each event's deps, and a CRDT_HOLD means the peer's log or ours is
 * damaged: refuse the batch then too. */
MRD_MUST_USE int ae_batch_check(const struct ae_batch_req *req,
    const struct ae_batch_item *items, uint32_t count, uint8_t *verdict,
    uint32_t *append_count, const char **why);

/* ---------------------------------------------------------- knowledge -- */

/* What this node knows of one other replica's vector for the shard. Each
 * report is a snapshot of that replica's durable vector, which only grows,
 * so all reports of one replica are ordered and joining them keeps the
 * newest. */
struct ae_row {
    uint64_t node;
    /* The join of every report: a lower bound of the replica's vector now.
     * What ack levels count and what digests relay. */
    struct crdt_vv latest;
    /* The newest report whose entry for the replica itself was <= ours when
     * we took it: every event of that replica that we lack was written after
     * that snapshot, so it observed all the snapshot holds. The stable
     * vector is a minimum of these, never of `latest` (see ae_know_stable). */
    struct crdt_vv witness;
    /* A report waiting for our entry of the replica to reach its own; the
     * oldest such, since it becomes a witness first. Empty when none. */
    struct crdt_vv pending;
};

struct ae_frozen {
    uint64_t node;
    uint64_t seq_last; /* its last seq in this shard */
};

/* One shard's knowledge at one node. Volatile: rebuilt from reports after a
 * restart (empty knowledge is the safe side: nothing stable, no ack beyond
 * local). About 16 KiB; keep it off small stacks. Every crdt_vv inside is
 * owned; ae_know_fini() frees them. */
struct ae_know {
    uint64_t         self;
    struct crdt_vv   own; /* this node's vector: ae_know_own() */
    uint32_t         row_count;
    struct ae_row    row[AE_REPLICAS_MAX];
    uint32_t         frozen_count;
    struct ae_frozen frozen[AE_FROZEN_MAX];
};

void ae_know_init(struct ae_know *k, uint64_t self);
void ae_know_fini(struct ae_know *k);

/* This node's vector after a commit (its own appends and replicated
 * batches): call it after every commit that changed the shard, before the
 * next stability or ack question. MRD_ENOMEM or MRD_OK. */
MRD_MUST_USE int ae_know_own(struct ae_know *k, const struct crdt_vv *own);

/* A report that `node` held `vv` (the shard's vector, durable): from a PULL
 * request (the asker's vector), from a reply, or relayed in a digest
 * (ae_digest_absorb does it). Reports of self, of nodes that are not
 * replicas of the shard, and of frozen nodes are ignored. Merged
 * monotonically, so old or repeated reports change nothing. MRD_ENOMEM or
 * MRD_OK. */
MRD_MUST_USE int ae_know_report(struct ae_know *k, const struct ae_place *place,
    uint64_t node, const struct crdt_vv *vv);

/* A node removed for good (DESIGN.md: its entry is frozen, it leaves the
 * stability computation): its row is dropped and later reports of it are
 * ignored. seq_last is its last seq in this shard (the highest any replica
 * holds, as the removal recorded it); until our own vector reaches it,
 * events of it may still arrive, so nothing is stable meanwhile. Raising a
 * frozen node's seq_last keeps the higher. MRD_EFULL past AE_FROZEN_MAX. */
MRD_MUST_USE int ae_know_freeze(
    struct ae_know *k, uint64_t node, uint64_t seq_last);

/* The shard's causally stable vector at this node: the pointwise minimum
 * of our own vector and every other replica's witness (empty for a replica
 * never heard from), over all replicas of all regions. A dot under it is
 * held by every replica, and every event we will apply from now on observed
 * it, so crdt_doc_compact() may fold it. Empty while an origin of an event
 * we hold, or of a witness, is neither a replica nor a frozen node whose
 * last seq we hold. *out is replaced (init it once). MRD_ENOTFOUND when self
 * is not a replica, MRD_ENOMEM, MRD_OK. */
MRD_MUST_USE int ae_know_stable(
    const struct ae_know *k, const struct ae_place *place, struct crdt_vv *out);

/* ------------------------------------------------------- ack levels -- */

/* How many replicas of each region are known to hold a dot durably. Indexed
 * by region index; regions absent from the placement have 0 of 0. */
struct ae_ack {
    uint8_t held[AE_REGIONS_MAX];
    uint8_t replicas[AE_REGIONS_MAX];
};

/* Counts, from this node's own vector and every replica's `latest`, the
 * replicas of each region that hold dot. Every count is a lower bound of
 * the truth at the time of the call: a report is a snapshot of a durable
 * vector, which never shrinks. */
void ae_ack_level(const struct ae_know *k, const struct ae_place *place,
    struct crdt_dot dot, struct ae_ack *out);

enum ae_level {
    AE_ACK_NONE   = 0, /* not even here */
    AE_ACK_LOCAL  = 1, /* durable on this node */
    AE_ACK_REGION = 2, /* and on region_k replicas of its region (itself
                          included) */
    AE_ACK_GLOBAL = 3, /* and in at least global_n regions (its own
                          included; a region counts when one replica holds
                          it) */
};

/* The highest level whose condition holds together with every lower one's.
 * A region_k above the region's rf, or a global_n above the number of
 * regions, is never reached: the node refuses such a request up front
 * rather than letting it wait for ever. */
enum ae_level ae_ack_decide(const struct ae_ack *ack, uint32_t self_region,
    uint32_t region_k, uint32_t global_n);

/* ------------------------------------------------------------ digests -- */

/* A digest relays knowledge so that it travels along the pull graph to
 * every replica, although with designated pullers most pairs of replicas
 * never talk: every PULL request and reply carries one. It is msgpack:
 *
 *   [1, floor, rows]
 *   floor = [origin, seq, ...]                  ; pointwise min of the rows
 *   rows  = [node, [origin, seq - floor, ...], ...]  ; entries above floor
 *
 * origins strictly increasing, nodes strictly increasing, every number
 * >= 1. Rows are our own vector and every replica's `latest`; at
 * quiescence every row equals the floor and the digest is one vector long.
 * At most AE_DIGEST_SIZE_MAX bytes: rows that do not fit are left out,
 * starting at a row that `rotate` moves, so each travels in turn (pass a
 * counter). Appends to out (its cap_max also bounds it). MRD_ENOTFOUND when
 * self is not a replica, MRD_ENOMEM, MRD_ETOOBIG (not even our own row
 * fits), MRD_OK. */
MRD_MUST_USE int ae_digest_encode(const struct ae_know *k,
    const struct ae_place *place, uint32_t rotate, struct proto_buf *out);

/* Decodes a digest from a peer and reports every row (ae_know_report).
 * The whole digest is checked before any row is used: MRD_ETOOBIG over
 * AE_DIGEST_SIZE_MAX, MRD_EPROTO with why for anything malformed (then
 * nothing is learnt), MRD_ENOMEM. */
MRD_MUST_USE int ae_digest_absorb(struct ae_know *k,
    const struct ae_place *place, const void *buf, size_t len,
    const char **why);

/* ------------------------------------------------------------- pacing -- */

/* Idle backoff: after a pull that reached the end of the source's log, wait
 * 10 ms, doubling while pulls stay empty, up to 1 s. Hints carry the
 * latency of new events, so the timer only covers lost hints and keeps
 * knowledge (stability, acks) moving; node/puller.c's cap of 160 ms was
 * chosen before hints existed, and at 1 s an idle node with 256 shards and
 * four sources sends ~1,000 small pulls a second instead of ~6,400. */
#define AE_PULL_IDLE_MS_MIN 10u
#define AE_PULL_IDLE_MS_MAX 1000u
/* Retry after a failed pull (no answer in time, or a refused one), doubling
 * up to 5 s: a dead source costs little, and a source that is back is used
 * again within the cap. */
#define AE_PULL_RETRY_MS_MIN 100u
#define AE_PULL_RETRY_MS_MAX 5000u
/* One pull's deadline (node/puller.c's NODE_PULL_TIMEOUT_MS). */
#define AE_PULL_TIMEOUT_MS 5000u
/* Consecutive failed pulls after which the source counts as down for
 * scheduling (ae_pace_failing), whatever SWIM says: SWIM may see a node
 * through an indirect ping while our own link to it is cut. */
#define AE_PULL_FAILURES_MAX 3u
/* A remote pull that stays blocked this long without bringing anything (the
 * region it waits for does not deliver) is sent without its skip set
 * (ae_pull_skip): the source then relays those events itself, at the price
 * of extra copies on the link. */
#define AE_PULL_STALL_MS 2000u

_Static_assert(AE_PULL_IDLE_MS_MIN <= AE_PULL_IDLE_MS_MAX, "idle range");
_Static_assert(AE_PULL_RETRY_MS_MIN <= AE_PULL_RETRY_MS_MAX, "retry range");
_Static_assert(AE_PULL_FAILURES_MAX >= 1u, "one failure is not proof");

struct ae_pace_cfg {
    uint32_t idle_ms_min;
    uint32_t idle_ms_max;
    uint32_t retry_ms_min;
    uint32_t retry_ms_max;
    uint32_t timeout_ms;
    uint32_t failures_max;
    uint32_t stall_ms;
};

#define AE_PACE_CFG_DEFAULT                                                    \
    {                                                                          \
        AE_PULL_IDLE_MS_MIN, AE_PULL_IDLE_MS_MAX, AE_PULL_RETRY_MS_MIN,        \
            AE_PULL_RETRY_MS_MAX, AE_PULL_TIMEOUT_MS, AE_PULL_FAILURES_MAX,    \
            AE_PULL_STALL_MS                                                   \
    }

/* How one pull ended, as the puller tells ae_pace_done(). */
enum ae_pull_result {
    AE_PULLED_MORE    = 0, /* committed; the source has more: pull again */
    AE_PULLED_END     = 1, /* committed (or empty); reached its log's end */
    AE_PULLED_BLOCKED = 2, /* committed what came; stopped before an event of
                              a region we pull directly (ae_serve) */
    AE_PULL_FAILED = 3, /* timed out, unreachable, or refused */
};

/* How a committed reply ended for pacing: END when the source's log ended,
 * MORE when it has more, BLOCKED when it stopped at an event we still lack
 * after this commit. A reply blocked on an event we got meanwhile (our
 * vector was one round trip old when we asked) is MORE: ask again now. vv is
 * our vector after committing the reply. */
enum ae_pull_result ae_pull_outcome(bool end, bool blocked,
    struct crdt_dot blocked_on, const struct crdt_vv *vv);

/* One (shard, source) puller: at most one pull in flight. Volatile. */
struct ae_pace {
    uint64_t due_ms; /* next pull not before */
    uint64_t sent_ms; /* the pull in flight left then */
    uint64_t blocked_ms; /* blocked since (when `blocked`) */
    uint32_t idle_ms; /* next idle wait */
    uint32_t retry_ms; /* next wait after a failure */
    uint32_t failures; /* consecutive */
    bool     in_flight;
    bool     hinted; /* a hint came while a pull was in flight */
    bool     blocked;
};

/* Due at once. */
void ae_pace_init(
    struct ae_pace *p, const struct ae_pace_cfg *cfg, uint64_t now_ms);
/* True when a pull should leave now: none in flight and its time has come.
 * The caller then takes a budget grant (ae_budget_take) and, if it gets
 * one, sends and calls ae_pace_sent(). */
bool ae_pace_due(const struct ae_pace *p, uint64_t now_ms);
void ae_pace_sent(struct ae_pace *p, uint64_t now_ms);
/* True when the pull in flight is past its deadline: the caller forgets it
 * (a late answer is dropped), returns its grant and calls ae_pace_done()
 * with AE_PULL_FAILED. */
bool ae_pace_timed_out(
    const struct ae_pace *p, const struct ae_pace_cfg *cfg, uint64_t now_ms);
/* The pull in flight ended; `applied` when it brought events we lacked. */
void ae_pace_done(struct ae_pace *p, const struct ae_pace_cfg *cfg,
    uint64_t now_ms, enum ae_pull_result result, bool applied);
/* The source hinted that it has new events: pull now (or as soon as the
 * pull in flight ends). A hint is evidence the source is up, so it also
 * cuts a failure backoff short. */
void ae_pace_hint(
    struct ae_pace *p, const struct ae_pace_cfg *cfg, uint64_t now_ms);
/* Our vector grew (any commit that applied events): a pull blocked on an
 * event we lacked may pass now. */
void ae_pace_progress(struct ae_pace *p, uint64_t now_ms);
/* The source failed AE_PULL_FAILURES_MAX pulls in a row and its retry time
 * has not come: treat it as down in ae_live_fn, so scheduling fails over.
 * When the retry time comes it counts as up again for one probe pull. */
bool ae_pace_failing(
    const struct ae_pace *p, const struct ae_pace_cfg *cfg, uint64_t now_ms);
/* Blocked for stall_ms or more with no event applied meanwhile. */
bool ae_pace_stalled(
    const struct ae_pace *p, const struct ae_pace_cfg *cfg, uint64_t now_ms);
/* When this pace next needs the caller: its due time, or the deadline of
 * the pull in flight. */
uint64_t ae_pace_wake_ms(
    const struct ae_pace *p, const struct ae_pace_cfg *cfg);

/* The skip set to put in a PULL to src: src->skip_regions, or none for a
 * local source or a stalled one (see AE_PULL_STALL_MS). */
uint32_t ae_pull_skip(const struct ae_source *src, const struct ae_pace *p,
    const struct ae_pace_cfg *cfg, uint64_t now_ms);

/* ------------------------------------------------------------- budget -- */

/* Reply bytes in flight from one source (all shards): each pull reserves a
 * grant, asks the source for at most that many bytes, and returns the grant
 * when its reply has been applied or it failed. Reserved bytes never exceed
 * cap, and no reply exceeds its grant as long as grant_min is at least the
 * largest record (ae_serve sends one event whatever bytes_max says).
 * Grants go first come, first served: a puller must visit its shards in a
 * rotating order (start each round one shard further), or the shard it
 * visits first takes every grant that comes back and a later one starves
 * (ae_sim_test found exactly that). */
struct ae_budget {
    uint64_t cap;
    uint64_t used;
    uint64_t grant_min;
};

/* cap >= grant_min >= 1 (asserted: the node's config checks its
 * --repl-inflight-bytes against AE_INFLIGHT_BYTES_MIN and passes
 * AE_INFLIGHT_BYTES_MIN as grant_min). */
void ae_budget_init(struct ae_budget *b, uint64_t cap, uint64_t grant_min);
/* Reserves min(free, AE_PULL_BYTES_MAX, max(grant_min, cap /
 * AE_BUDGET_SHARES)) bytes into *grant_out and returns true, or returns
 * false (pull later) when less than grant_min is free. */
bool ae_budget_take(struct ae_budget *b, uint64_t *grant_out);
/* Returns a grant. */
void ae_budget_give(struct ae_budget *b, uint64_t grant);

#endif /* MRD_AE_H */
