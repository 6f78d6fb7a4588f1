/*
 * history.h: the chaos harness's record of what clients did, as JSON lines.
 *
 * A history is the workload's account of every operation it started and how
 * each one ended. The checker (check.h) judges the cluster's final state
 * against it, so the history must be exact: a record is written before the
 * request leaves (invoke) and after its answer arrives (ok, fail, info), and
 * the writer stamps the time under its lock, so the file is in time order
 * and every real operation happened inside [invoke t, completion t].
 *
 * The format: one JSON object per line, UTF-8, no blank lines. Keys:
 *
 *   "t"      integer, required: microseconds of CLOCK_MONOTONIC since the
 *            run started. Never decreases from one line to the next.
 *   "p"      integer, required: the process (client) id, 0..processes_max-1.
 *            A process has at most one operation outstanding (Jepsen's
 *            rule): its completion is the next record of the same "p".
 *   "type"   "invoke" | "ok" | "fail" | "info", required. "fail" means the
 *            operation certainly had no effect (e.g. MRD_EVERSION); "info"
 *            means the outcome is unknown (timed out, connection lost,
 *            MRD_EDURABILITY). An invoke with no completion by the end of
 *            the file counts as "info".
 *   "f"      "append" | "read" | "state", required.
 *   "stream" string, required on invoke; a completion may repeat it (it must
 *            then be the invoke's).
 *   "id"     string: the id of the one event of an append, which the
 *            workload also puts in the event's data so the final state can
 *            be matched to the history. Ids are 1..CHAOS_ID_SIZE_MAX bytes
 *            of printable ASCII (0x21..0x7e), unique per event.
 *   "ids"    array of id strings: the events of an append of several events
 *            (on invoke; a completion may repeat them, equal), or the ids a
 *            read returned, in stream order (on a read's ok). "id" and "ids"
 *            are never both present.
 *   "ack"    "local" | "region" | "global": an append's acknowledgement
 *            level, on invoke (default "local").
 *   "dot"    "origin:seq" (decimal): the dot of an append's first event,
 *            on ok; optional.
 *   "pos"    integer: the stream position of an append's first event on the
 *            node that took it, on ok; optional.
 *   "ops"    object of counter increments, field name -> integer delta, e.g.
 *            {"n": 1}: the CRDT counter ops an append carries (on invoke).
 *   "values" object of counter values, field name -> integer: what a state
 *            read returned (on its ok).
 *   "err"    string: an error name (e.g. "MRD_ETIMEDOUT") on fail or info.
 *
 * Unknown keys, duplicate keys, keys on the wrong kind of record and broken
 * pairing (a completion with no outstanding invoke, an invoke while one is
 * outstanding, a completion of another "f") are refused with the line
 * number: a history the checker cannot trust is worth nothing.
 *
 * Two handles: struct chaos_history writes a file (thread-safe), and
 * struct chaos_ops holds a validated, paired history in memory, read from a
 * file or built record by record, with bounded memory (struct
 * chaos_limits).
 */
#ifndef CHAOS_HISTORY_H
#define CHAOS_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* ----------------------------------------------------------- limits -- */

/* An event id: a uuid or "p12-345678" fits with room; short enough that an
 * example line in a report stays readable. */
#define CHAOS_ID_SIZE_MAX 64u
/* Ids on one record: a read returns at most MRD_READ_COUNT_MAX events, an
 * append carries at most MRD_APPEND_EVENTS_MAX. */
#define CHAOS_OP_IDS_MAX MRD_READ_COUNT_MAX
/* Counter increments on one append, or values on one state read: an event
 * carries at most MRD_STATE_OPS_MAX ops. */
#define CHAOS_OP_COUNTERS_MAX MRD_STATE_OPS_MAX
/* An error name such as "MRD_EDURABILITY", with room for a detail. */
#define CHAOS_ERR_SIZE_MAX 128u
/* One increment's magnitude. With at most CHAOS_RECORDS_HARD_MAX records
 * and CHAOS_OP_COUNTERS_MAX increments each, every sum fits in an int64, so
 * the counter check never overflows. */
#define CHAOS_COUNTER_DELTA_MAX (INT64_C(1) << 32)
/* Hard caps of the run-time limits (struct chaos_limits). A 10-minute run
 * at 3,000 operations a second is 3.6 M records; 8 M leaves room, and the
 * checker's tables (a few words per record and id) stay under 1 GiB. */
#define CHAOS_RECORDS_HARD_MAX (1u << 23)
/* Clients of one run: threads of one runner process. */
#define CHAOS_PROCESSES_HARD_MAX 4096u
/* One line: a read of CHAOS_OP_IDS_MAX ids of CHAOS_ID_SIZE_MAX bytes,
 * quoted and separated, plus the other keys. */
#define CHAOS_LINE_SIZE_HARD_MAX (1024u * 1024u)
/* Bytes of strings and arrays a loaded history or final state may hold. */
#define CHAOS_BYTES_HARD_MAX ((size_t) 4 << 30)

_Static_assert(CHAOS_OP_IDS_MAX *(CHAOS_ID_SIZE_MAX + 3u)
            + CHAOS_OP_COUNTERS_MAX * (6u * MRD_STATE_NAME_SIZE_MAX + 32u)
            + 6u * (MRD_STREAM_NAME_SIZE_MAX + CHAOS_ERR_SIZE_MAX) + 1024u
        <= CHAOS_LINE_SIZE_HARD_MAX,
    "the largest record the writer can make fits one line, even with every "
    "name escaped as \\u00XX");
_Static_assert(MRD_APPEND_EVENTS_MAX <= CHAOS_OP_IDS_MAX,
    "an append's ids fit one record");
_Static_assert((uint64_t) CHAOS_RECORDS_HARD_MAX *CHAOS_OP_COUNTERS_MAX
        <= (uint64_t) (INT64_MAX / CHAOS_COUNTER_DELTA_MAX),
    "counter sums fit in an int64");

/* Limits of one load, fixed before it starts (as LMDB's are before open).
 * chaos_limits_default() gives the hard caps; tests use small ones. */
struct chaos_limits {
    size_t records_max; /* lines of a history; <= CHAOS_RECORDS_HARD_MAX */
    size_t processes_max; /* "p" < this; <= CHAOS_PROCESSES_HARD_MAX */
    size_t line_size_max; /* bytes; <= CHAOS_LINE_SIZE_HARD_MAX */
    size_t bytes_max; /* arena bytes; <= CHAOS_BYTES_HARD_MAX */
};

struct chaos_limits chaos_limits_default(void);
/* MRD_EINVAL when a limit is 0 or above its hard cap. */
MRD_MUST_USE int chaos_limits_check(const struct chaos_limits *limits);

/* What went wrong in input, in words: "line 12: \"t\" goes backwards". line
 * is 0 when the problem is not on one line. */
#define CHAOS_ERROR_TEXT_SIZE 256u
struct chaos_error {
    uint64_t line;
    char     text[CHAOS_ERROR_TEXT_SIZE];
};
/* Fills err (may be NULL) and returns code, so callers can write
 * `return chaos_error_set(err, MRD_EPROTO, line, "...", ...)`. */
int chaos_error_set(struct chaos_error *err, int code, uint64_t line,
    const char *fmt, ...) MRD_PRINTF(4, 5);

/* ------------------------------------------------------------ records -- */

enum chaos_type {
    CHAOS_TYPE_INVOKE = 1,
    CHAOS_TYPE_OK     = 2,
    CHAOS_TYPE_FAIL   = 3,
    CHAOS_TYPE_INFO   = 4,
};

enum chaos_f {
    CHAOS_F_APPEND = 1,
    CHAOS_F_READ   = 2,
    CHAOS_F_STATE  = 3,
};

enum chaos_ack {
    CHAOS_ACK_LOCAL  = 0, /* the default, as MRD_ACK_LOCAL */
    CHAOS_ACK_REGION = 1,
    CHAOS_ACK_GLOBAL = 2,
};

/* A counter increment ("ops") or a counter value ("values"). */
struct chaos_counter {
    const char *field; /* UTF-8, 1..MRD_STATE_NAME_SIZE_MAX bytes */
    int64_t     value; /* |value| <= CHAOS_COUNTER_DELTA_MAX in "ops" */
};

/* One record. Every pointer is borrowed: the writer copies nothing it keeps,
 * and records from chaos_ops_at() live as long as their chaos_ops. */
struct chaos_op {
    uint64_t                    t_us; /* "t" */
    uint32_t                    process; /* "p" */
    enum chaos_type             type;
    enum chaos_f                f;
    const char                 *stream; /* NULL: not given (completions) */
    const char *const          *ids; /* "id" (one, on appends) or "ids" */
    size_t                      id_count;
    enum chaos_ack              ack;
    bool                        has_dot;
    mrd_dot                     dot;
    bool                        has_pos;
    uint64_t                    pos;
    const struct chaos_counter *counters; /* "ops" or "values" */
    size_t                      counter_count;
    const char                 *err; /* NULL: not given */
};

/* The checks on one record that need no context: types, sizes, which keys
 * fit which record. MRD_EINVAL with words in err (line 0). */
MRD_MUST_USE int chaos_op_validate(
    const struct chaos_op *op, struct chaos_error *err);

/* ------------------------------------------------------------- writer -- */

struct chaos_history;

/* Creates (truncates) path. On success *out goes to chaos_history_close()
 * once; on error *out is NULL. MRD_EIO when the file cannot be created. The
 * run's clock starts now: "t" counts from this call. */
MRD_MUST_USE int chaos_history_open(
    const char *path, struct chaos_history **out);
/* Writes op as one line and flushes it, so a crashed runner leaves a
 * history up to its last record. Safe from any thread; lines never
 * interleave. op->t_us is ignored: the writer stamps the time under its
 * lock, so the file is in time order; *t_us_out (may be NULL) gets it.
 * MRD_EINVAL for an invalid op (nothing written), MRD_EIO when the write
 * failed (the history is then broken: later appends fail too). */
MRD_MUST_USE int chaos_history_append(
    struct chaos_history *h, const struct chaos_op *op, uint64_t *t_us_out);
/* Flushes and closes; NULL is a no-op. MRD_EIO when the last flush or the
 * close failed. */
int chaos_history_close(struct chaos_history *h);

/* Formats op as one JSON line (without its newline) into a string the
 * caller frees with free(). MRD_EINVAL for an invalid op, MRD_ENOMEM. */
MRD_MUST_USE int chaos_op_format(const struct chaos_op *op, char **line_out);

/* ------------------------------------------------- history in memory -- */

struct chaos_ops;

#define CHAOS_NONE SIZE_MAX /* no such record */

/* An empty history. limits NULL means chaos_limits_default(); they are
 * copied. On success *out goes to chaos_ops_free() once. */
MRD_MUST_USE int chaos_ops_new(
    const struct chaos_limits *limits, struct chaos_ops **out);
/* Validates op against the records so far (time order, pairing) and copies
 * it. MRD_EINVAL (bad record, words in err) or MRD_EFULL (a limit) leave
 * ops unchanged; MRD_ENOMEM. err->line is the record's number (1-based). */
MRD_MUST_USE int chaos_ops_add(
    struct chaos_ops *ops, const struct chaos_op *op, struct chaos_error *err);
/* Parses one line (no newline) as a record and adds it. MRD_EPROTO for a
 * malformed line, otherwise as chaos_ops_add(). */
MRD_MUST_USE int chaos_ops_add_line(struct chaos_ops *ops, const char *line,
    size_t line_size, struct chaos_error *err);
/* Reads a whole history file. MRD_EIO (cannot open or read), MRD_EPROTO or
 * MRD_EINVAL (a bad line: err->line is its number), MRD_EFULL (a limit:
 * err says which), MRD_ENOMEM. On error *out is NULL. */
MRD_MUST_USE int chaos_ops_load(const char *path,
    const struct chaos_limits *limits, struct chaos_error *err,
    struct chaos_ops **out);
void             chaos_ops_free(struct chaos_ops *ops);

size_t chaos_ops_count(const struct chaos_ops *ops);
/* NULL when index >= count. Valid until chaos_ops_free(). */
const struct chaos_op *chaos_ops_at(const struct chaos_ops *ops, size_t index);
/* The index of an invoke's completion, or CHAOS_NONE when it has none yet
 * (counts as "info"); CHAOS_NONE for a completion. */
size_t chaos_ops_completion(const struct chaos_ops *ops, size_t index);

/* -------------------------------------------------------------- arena -- */

/* A bump allocator with a byte cap, shared by the loaders of chaos/: a
 * loaded history or final state is freed in one call, and its size is
 * bounded by its limits. Not thread-safe. */
struct chaos_arena;

MRD_MUST_USE int chaos_arena_new(size_t bytes_max, struct chaos_arena **out);
void             chaos_arena_free(struct chaos_arena *arena);
/* Zeroed, aligned for any type; NULL when over the cap or out of memory
 * (chaos_arena_full() tells which). size 0 gives a valid pointer. */
void *chaos_arena_alloc(struct chaos_arena *arena, size_t size);
/* A NUL-terminated copy of s[0..size). */
char *chaos_arena_strndup(
    struct chaos_arena *arena, const char *s, size_t size);
bool chaos_arena_full(const struct chaos_arena *arena);

/* ------------------------------------------------------------ helpers -- */

/* True for 1..CHAOS_ID_SIZE_MAX bytes of printable ASCII. */
bool chaos_id_valid(const char *id);
/* "append", "ok", "local", ...; "?" for a value outside the enum. */
const char *chaos_type_name(enum chaos_type type);
const char *chaos_f_name(enum chaos_f f);
const char *chaos_ack_name(enum chaos_ack ack);
/* Strict decimal "origin:seq". */
MRD_MUST_USE bool chaos_dot_parse(const char *s, mrd_dot *dot_out);

#endif /* CHAOS_HISTORY_H */
