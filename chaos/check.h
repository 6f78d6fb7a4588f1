/*
 * check.h: the chaos checker. Given a history (history.h) and every node's
 * final state after the last heal, it counts what the cluster got wrong.
 * A pure library: no sockets, no processes, no clocks.
 *
 * The final state is what the runner reads from each node once the cluster
 * has healed and caught up: every event of every shard log it holds
 * (mrd_read_log), with the id the workload put in the event's data, and,
 * per stream, the encoded CRDT state document and its counter values. The
 * runner fills struct chaos_final with its own memory; chaos_final_save()
 * and chaos_final_load() keep it as a JSON file so a run can be checked
 * again offline:
 *
 *   {"heal_t": 123456,                      final heal, history's clock (us)
 *    "placement": [{"stream": "s1", "nodes": [1, 2]}],     optional, below
 *    "wipes": [{"node": 5, "t": 120000}],                  optional, below
 *    "nodes": [
 *     {"node": 1,                                          node id, unique
 *      "caught_up_t": 130000,            optional: when it had caught up
 *      "events": [{"stream": "s1", "pos": 0, "id": "p1-1", "dot": "1:5",
 *                  "shard": 3, "log_seq": 17}, ...],    "id" optional
 *      "streams": [{"stream": "s1", "doc": "<hex>", "counters": {"n": 5}}]}
 *    ]}
 *
 * Placement: the nodes that must hold a stream (its replicas). A stream
 * not listed must be on every node. Wipes: when the nemesis emptied a
 * node's data dir (history's clock). Only replicas count in the lost,
 * session, convergence and counter checks.
 *
 * The checks, each a count (in the unit named) and the first
 * CHAOS_EXAMPLES_MAX examples in words. A run passes when all are zero.
 * An append's status is that of its completion: ok, fail, or indeterminate
 * (info, or no completion at all). An id's status is the best over every
 * append that names it (ok > indeterminate > fail), so a retried append
 * counts once.
 *
 *  lost        (id, node) pairs: an id with an ok append is not on a
 *              replica of its stream. Not counted: an append acknowledged
 *              at level local (one node's disk) by a node whose data dir
 *              was wiped after the append was invoked: the level promised
 *              that disk and no more.
 *  unwritten   events on nodes, and ids in ok reads, that nobody wrote: no
 *              id in the data; an id no append named; an id whose every
 *              append failed; or an id appended to another stream.
 *  duplicate   ids: twice on one node, under two dots anywhere, or twice
 *              in one ok read.
 *  origin order events: on a node, in a shard, an event whose dot seq is
 *              not above that of the same origin's previous event in log
 *              seq order.
 *  session order (append, node) pairs: for a process p and a stream, an
 *              ok or indeterminate append X that sits, on a node, at a
 *              position not after every event of p's earlier ok appends to
 *              that stream held by that node. (An earlier append that is
 *              missing is "lost", not this.)
 *  convergence (stream, dot) pairs held by some but not all replicas, or
 *              under different ids on different replicas; plus streams
 *              whose state documents are not byte-equal on every replica
 *              (a replica with no document counts as an empty one).
 *  counter bounds (stream, field, node) values outside [ok sum +
 *              indeterminate decrements, ok sum + indeterminate
 *              increments], plus (stream, field) pairs whose value is not
 *              the same on every replica. A field absent on a replica is 0.
 *
 * Convergence time is measured, not checked: per node, caught_up_t -
 * heal_t (0 if earlier); the lower median and the maximum.
 */
#ifndef CHAOS_CHECK_H
#define CHAOS_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "history.h"

/* ----------------------------------------------------------- limits -- */

/* Nodes of one run: a stream's replicas are a bit mask of 64. The harness
 * runs 3 regions of 2. */
#define CHAOS_NODES_MAX 64u
/* Events read from one node: every event of one run, with room (a run's
 * history holds at most CHAOS_RECORDS_HARD_MAX records). */
#define CHAOS_NODE_EVENTS_MAX (1u << 23)
/* Streams of one node, and placements. */
#define CHAOS_STREAMS_MAX (1u << 20)
/* Counter fields in one stream's state: a state holds small facts. */
#define CHAOS_STREAM_COUNTERS_MAX 1024u
/* A final-state file: events of every node as JSON, about 120 bytes each. */
#define CHAOS_FINAL_FILE_SIZE_MAX ((size_t) 2 << 30)
/* Wipes of one run: one nemesis fault every second of a day-long soak. */
#define CHAOS_WIPES_MAX 86400u
/* Examples kept per check: enough to see a pattern, few enough to read. */
#define CHAOS_EXAMPLES_MAX 5u
/* One example: ids, stream names are cut to fit. */
#define CHAOS_EXAMPLE_SIZE_MAX 320u

_Static_assert(CHAOS_NODE_EVENTS_MAX < UINT32_MAX, "event indexes are u32");
_Static_assert((uint64_t) CHAOS_NODES_MAX *CHAOS_NODE_EVENTS_MAX < UINT32_MAX,
    "every event of a run has a u32 index");

/* ------------------------------------------------------ final state -- */

/* One event as a node holds it. */
struct chaos_event {
    const char *stream;
    uint64_t    position; /* in the stream, on this node */
    const char *id; /* from the event's data; NULL when it had none */
    mrd_dot     dot;
    uint32_t    shard;
    uint64_t    log_seq; /* in the shard's log, on this node */
};

/* One stream's state on a node. */
struct chaos_stream_state {
    const char                 *stream;
    const uint8_t              *doc; /* encoded state document, opaque */
    size_t                      doc_size; /* <= MRD_STATE_SIZE_MAX */
    const struct chaos_counter *counters; /* counter values by field */
    size_t                      counter_count;
};

struct chaos_node_final {
    uint64_t                         node_id;
    bool                             has_caught_up;
    uint64_t                         caught_up_us; /* history's clock */
    const struct chaos_event        *events;
    size_t                           event_count;
    const struct chaos_stream_state *streams;
    size_t                           stream_count;
};

struct chaos_placement {
    const char     *stream;
    const uint64_t *node_ids;
    size_t          node_count;
};

/* A node's data dir emptied by the nemesis, at t_us (history's clock). */
struct chaos_wipe {
    uint64_t node_id;
    uint64_t t_us;
};

struct chaos_final {
    uint64_t                       heal_us; /* the last heal; history clock */
    const struct chaos_wipe       *wipes;
    size_t                         wipe_count;
    const struct chaos_node_final *nodes;
    size_t                         node_count;
    const struct chaos_placement  *placements; /* streams not listed: all */
    size_t                         placement_count;
    /* Set by chaos_final_load(); NULL when the caller owns the arrays. */
    struct chaos_arena *arena;
};

/* Writes f as the JSON form above. MRD_EIO, MRD_ENOMEM, MRD_EINVAL (a
 * value JSON cannot hold: above INT64_MAX). */
MRD_MUST_USE int chaos_final_save(
    const char *path, const struct chaos_final *f);
/* Reads a file chaos_final_save() wrote. On success *out holds arrays owned
 * by out->arena, freed by chaos_final_free(out). MRD_EIO, MRD_EPROTO
 * (malformed: err says where), MRD_EFULL (a limit), MRD_ENOMEM; on error
 * *out is zeroed. limits NULL means chaos_limits_default() (bytes_max). */
MRD_MUST_USE int chaos_final_load(const char *path,
    const struct chaos_limits *limits, struct chaos_error *err,
    struct chaos_final *out);
/* Frees what chaos_final_load() allocated and zeroes f; a no-op when
 * f->arena is NULL. */
void chaos_final_free(struct chaos_final *f);

/* ----------------------------------------------------------- checks -- */

enum chaos_check_kind {
    CHAOS_CHECK_LOST           = 0,
    CHAOS_CHECK_UNWRITTEN      = 1,
    CHAOS_CHECK_DUPLICATE      = 2,
    CHAOS_CHECK_ORIGIN_ORDER   = 3,
    CHAOS_CHECK_SESSION_ORDER  = 4,
    CHAOS_CHECK_CONVERGENCE    = 5,
    CHAOS_CHECK_COUNTER_BOUNDS = 6,
    CHAOS_CHECK_COUNT          = 7,
};

/* "lost", "origin order", ...; "?" outside the enum. */
const char *chaos_check_name(enum chaos_check_kind kind);

struct chaos_finding {
    uint64_t count;
    size_t   example_count; /* <= CHAOS_EXAMPLES_MAX */
    char     examples[CHAOS_EXAMPLES_MAX][CHAOS_EXAMPLE_SIZE_MAX];
};

struct chaos_convergence_time {
    size_t   node_count; /* nodes with a caught_up time */
    size_t   unknown_count; /* nodes without one */
    uint64_t p50_us; /* lower median of caught_up - heal */
    uint64_t max_us;
};

struct chaos_report {
    struct chaos_finding          checks[CHAOS_CHECK_COUNT];
    struct chaos_convergence_time convergence_time;
};

/* The indexes every check reads, built once: ids and streams interned, each
 * node's events by id, events sorted by log, by dot and by id. Borrows ops
 * and f, which must outlive it. MRD_EINVAL when the final state is not
 * well-formed or contradicts the history (err says how), MRD_ENOMEM. On
 * success *out goes to chaos_model_free() once. */
struct chaos_model;
MRD_MUST_USE int chaos_model_build(const struct chaos_ops *ops,
    const struct chaos_final *f, struct chaos_error *err,
    struct chaos_model **out);
void             chaos_model_free(struct chaos_model *m);

/* Each check overwrites *out. They use the model's scratch space, so run
 * one at a time on one model; they allocate nothing and cannot fail. */
void chaos_check_lost(struct chaos_model *m, struct chaos_finding *out);
void chaos_check_unwritten(struct chaos_model *m, struct chaos_finding *out);
void chaos_check_duplicate(struct chaos_model *m, struct chaos_finding *out);
void chaos_check_origin_order(struct chaos_model *m, struct chaos_finding *out);
void chaos_check_session_order(
    struct chaos_model *m, struct chaos_finding *out);
void chaos_check_convergence(struct chaos_model *m, struct chaos_finding *out);
void chaos_check_counter_bounds(
    struct chaos_model *m, struct chaos_finding *out);
void chaos_check_convergence_time(
    const struct chaos_final *f, struct chaos_convergence_time *out);

/* Builds the model, runs every check, frees the model. Errors as
 * chaos_model_build(). */
MRD_MUST_USE int chaos_check_all(const struct chaos_ops *ops,
    const struct chaos_final *f, struct chaos_error *err,
    struct chaos_report *out);
bool             chaos_report_passed(const struct chaos_report *r);
/* Plain text: a PASS/FAIL line, one line per check with its count, each
 * followed by its examples indented, then the convergence time. */
void chaos_check_report(FILE *out, const struct chaos_report *r);

#endif /* CHAOS_CHECK_H */
