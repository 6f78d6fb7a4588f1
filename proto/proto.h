/*
 * proto.h: Meridian's wire protocol and event record format (see
 * docs/PROTOCOL.md, which this header must match).
 *
 * Encoding uses msgpack-c's packer into a capped buffer. Decoding uses our own
 * bounded reader (proto_rd): msgpack-c's unpacker trusts declared lengths and
 * allocates for them (msgpack-c issue 1013), while proto_rd never allocates,
 * checks every length against the bytes left before it moves, refuses nesting
 * deeper than PROTO_DEPTH_MAX, and returns strings as (pointer, length) views
 * into the frame. Every decoder here runs proto_walk() over the whole frame
 * first, so a frame that is not exactly one well-formed, bounded msgpack value
 * is refused before any field is looked at.
 *
 * Thread safety: every function is reentrant; nothing here keeps state.
 * Errors: decoders return MRD_OK, or MRD_EPROTO / MRD_ETOOBIG /
 * MRD_EPROTOVERSION / MRD_ENAME with a static reason in *why (never NULL on
 * error; `why` itself may be NULL when no reason is wanted). A body decoder
 * moves its reader past the body on success only; on error its outputs may
 * be partly filled and must not be used.
 *
 * Encoders (proto_*_encode, proto_reply_error, proto_events_reply_*) write
 * whole frames, header included, except proto_record_encode, which writes a
 * bare record. Request encoders check every limit first and write nothing
 * when they refuse (MRD_ENAME, MRD_ETOOBIG, or MRD_EINVAL where a decoder
 * would say MRD_EPROTO); every encoder then leaves errors sticky in the
 * proto_buf (MRD_ETOOBIG past cap_max, MRD_ENOMEM), so a frame whose
 * proto_buf_status() is not MRD_OK must not be sent.
 */
#ifndef MRD_PROTO_H
#define MRD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

struct msgpack_packer;

/* The protocol version in every frame. A node answers a frame of another
 * version with MRD_EPROTOVERSION and the version it speaks. */
#define PROTO_VERSION 1u
/* On-disk and on-wire event record format. Readers accept every format up to
 * this one, so later fields need no migration. Format 2 added the event's
 * ops (stream state, docs/CRDT.md); format 3 the append's idempotency key on
 * its first event, so that replicas remember it too. */
#define PROTO_RECORD_FORMAT 3u
/* One event's encoded ops (crdt_ops_encode output: deps + ops), in append
 * requests and in records. Must hold CRDT_OPS_SIZE_MAX, every op at every
 * limit plus a full deps vector (~406 KiB; checked where both headers meet,
 * in the client and the node); a round number here keeps proto free of
 * crdt.h. */
#define PROTO_OPS_SIZE_MAX (512u * 1024u)
/* The encoded state document of a STATE reply: crdt's decode limit
 * (CRDT_DOC_DECODE_MAX, checked in the client), room for replicated
 * growth past what an append may produce. */
#define PROTO_STATE_SIZE_MAX (16u * 1024u * 1024u)
/* msgpack nesting accepted anywhere: our deepest message is 4 deep. */
#define PROTO_DEPTH_MAX 16u
/* Elements in any one array or map we accept; bounds walk time. */
#define PROTO_COUNT_MAX 100000u
/* Bytes a record adds around its fields, at most: headers and fixed ints. */
#define PROTO_RECORD_OVERHEAD_MAX 128u
/* Largest record: one event at every limit. */
#define PROTO_RECORD_SIZE_MAX                                                  \
    (PROTO_RECORD_OVERHEAD_MAX + MRD_STREAM_NAME_SIZE_MAX                      \
        + MRD_EVENT_TYPE_SIZE_MAX + MRD_CONTENT_TYPE_SIZE_MAX                  \
        + 2 * MRD_ID_SIZE_MAX + MRD_EVENT_DATA_SIZE_MAX                        \
        + MRD_META_ENTRIES_MAX                                                 \
            * (MRD_META_KEY_SIZE_MAX + MRD_META_VALUE_SIZE_MAX + 10)           \
        + PROTO_OPS_SIZE_MAX + MRD_IDEMPOTENCY_KEY_SIZE_MAX)
/* Smallest frame limit a node or client may configure: one full record and
 * its envelope must fit. */
#define PROTO_FRAME_SIZE_MIN (PROTO_RECORD_SIZE_MAX + 4096u)
_Static_assert(PROTO_FRAME_SIZE_MIN <= MRD_FRAME_SIZE_MAX,
    "a full record fits the largest frame");
/* Largest read reply a node sends (it returns fewer events rather than
 * more bytes): bigger pages read no faster. Clients accept at least this
 * much, so no read reply is ever too big for its client. */
#define PROTO_READ_REPLY_MAX (4u * 1024u * 1024u)
/* Smallest frame limit a client may set: every read reply fits. */
#define PROTO_CLIENT_FRAME_SIZE_MIN (PROTO_READ_REPLY_MAX + 4096u)
_Static_assert(PROTO_FRAME_SIZE_MIN + 4096u <= PROTO_READ_REPLY_MAX,
    "one full record always fits a read reply");
_Static_assert(PROTO_CLIENT_FRAME_SIZE_MIN <= MRD_FRAME_SIZE_MAX,
    "a client can accept every read reply");
_Static_assert(MRD_READ_COUNT_MAX <= PROTO_COUNT_MAX, "read fits a walk");
_Static_assert(MRD_APPEND_EVENTS_MAX <= PROTO_COUNT_MAX, "append fits a walk");
_Static_assert(PROTO_STATE_SIZE_MAX + 4096u <= MRD_FRAME_SIZE_MAX,
    "a STATE reply at its limit fits the largest frame");

/* Message types. A reply carries the request's type. Never renumbered. */
enum proto_type {
    /* Only in an error reply to a frame too broken to have a type. */
    PROTO_T_NONE      = 0,
    PROTO_T_APPEND    = 1,
    PROTO_T_READ      = 2, /* stream read, forward/backward, long-poll */
    PROTO_T_READ_LOG  = 3, /* shard log read */
    PROTO_T_INFO      = 4, /* stream info */
    PROTO_T_NODE_INFO = 5,
    PROTO_T_STATS     = 6, /* node counters, for tools and tests */
    PROTO_T_STATE     = 7, /* a stream's state document */
    PROTO_T_PULL      = 8, /* node to node: anti-entropy pull of a shard log */
    PROTO_T_HINT      = 9, /* node to node: "these shards have new events" */
    PROTO_T_TOPOLOGY  = 10, /* the node's signed topology, if newer */
    PROTO_T_TOPOLOGY_PUSH = 11, /* a newer signed topology, to verify */
    PROTO_T_SWIM          = 12, /* node to node: a SWIM liveness message */
    /* Operations (admin role; docs/OPERATIONS.md): */
    PROTO_T_STATUS = 13, /* the node's status document (JSON text) */
    PROTO_T_FENCE  = 14, /* fence the node for a failover drill, or lift it */
    PROTO_T_DIGEST = 15, /* a digest of one shard's events, for verify */
    PROTO_T_MAX_   = 15,
};

/* Map keys, per message. Keys are small unsigned integers; an unknown key in
 * a request is refused (MRD_EPROTO) so that a typo never goes unnoticed. */
enum proto_key_append_req {
    PROTO_K_APPEND_STREAM   = 1, /* str, required */
    PROTO_K_APPEND_EXPECTED = 2, /* int, default MRD_EXPECT_ANY */
    PROTO_K_APPEND_IDEM     = 3, /* bin 1..MRD_IDEMPOTENCY_KEY_SIZE_MAX */
    PROTO_K_APPEND_EVENTS   = 4, /* array 1..MRD_APPEND_EVENTS_MAX, required */
    /* Acknowledgement level (absent: MRD_ACK_LOCAL). The node answers once
     * the level is reached or the wait is over, saying what it reached. */
    PROTO_K_APPEND_ACK       = 5, /* uint MRD_ACK_REGION or MRD_ACK_GLOBAL */
    PROTO_K_APPEND_ACK_COUNT = 6, /* uint 1..MRD_ACK_COUNT_MAX: k or n */
    PROTO_K_APPEND_ACK_WAIT  = 7, /* uint 1..MRD_ACK_WAIT_MS_MAX */
    /* [origin, seq], both >= 1: the client session's last acknowledged
     * event of this stream, which the node must hold before it takes the
     * append (MRD_ECAUSAL otherwise). */
    PROTO_K_APPEND_AFTER = 8,
};
enum proto_key_event_in {
    PROTO_K_EV_TYPE         = 1, /* str, required, non-empty */
    PROTO_K_EV_DATA         = 2, /* bin */
    PROTO_K_EV_CONTENT_TYPE = 3, /* str */
    PROTO_K_EV_CORRELATION  = 4, /* str */
    PROTO_K_EV_CAUSATION    = 5, /* str */
    PROTO_K_EV_META         = 6, /* map str -> str */
    PROTO_K_EV_OPS          = 7, /* bin 1..PROTO_OPS_SIZE_MAX: encoded ops */
};
enum proto_key_append_rep {
    PROTO_K_APPENDED_ORIGIN    = 1,
    PROTO_K_APPENDED_SEQ       = 2, /* first dot's seq */
    PROTO_K_APPENDED_FIRST_POS = 3,
    PROTO_K_APPENDED_VERSION   = 4,
    PROTO_K_APPENDED_COUNT     = 5,
    PROTO_K_APPENDED_HLC       = 6,
    PROTO_K_APPENDED_REPLAYED  = 7, /* bool */
    /* Only in answers to an append that asked for more than local. */
    PROTO_K_APPENDED_ACK      = 8, /* uint: the level reached */
    PROTO_K_APPENDED_REPLICAS = 9, /* uint: region replicas holding it */
    PROTO_K_APPENDED_REGIONS  = 10, /* uint: regions holding it */
};
enum proto_key_read_req {
    PROTO_K_READ_STREAM    = 1, /* str, required */
    PROTO_K_READ_FROM      = 2, /* uint, default 0 */
    PROTO_K_READ_DIRECTION = 3, /* 0 forward, 1 backward */
    PROTO_K_READ_COUNT     = 4, /* uint 1..MRD_READ_COUNT_MAX, required */
    PROTO_K_READ_WAIT_MS   = 5, /* uint <= MRD_WAIT_MS_MAX, forward only */
    /* Causal cursor reads (forward only): the events not covered by this
     * vv bin, in the node's log order. FROM is then only a hint, valid on
     * the node named by HINT_NODE (positions are local to a node): every
     * event before it is covered. Another node scans from 0. */
    PROTO_K_READ_CURSOR    = 6, /* bin: vv (proto_vv_check) */
    PROTO_K_READ_HINT_NODE = 7, /* uint: the node whose position FROM is */
};
enum proto_key_read_rep {
    PROTO_K_READ_EVENTS  = 1, /* array of [position, log_seq, record bin] */
    PROTO_K_READ_NEXT    = 2, /* uint */
    PROTO_K_READ_VERSION = 3, /* int */
    PROTO_K_READ_NODE    = 4, /* uint: the answering node (cursor reads) */
};
enum proto_key_log_req {
    PROTO_K_LOG_SHARD = 1, /* uint, required */
    PROTO_K_LOG_AFTER = 2, /* uint, default 0 */
    PROTO_K_LOG_COUNT = 3, /* uint 1..MRD_READ_COUNT_MAX, required */
};
enum proto_key_log_rep {
    PROTO_K_LOG_EVENTS   = 1, /* array of [position, log_seq, record bin] */
    PROTO_K_LOG_LAST_SEQ = 2, /* uint: the shard log's last local seq */
};
enum proto_key_info_req {
    PROTO_K_INFO_STREAM = 1, /* str, required */
};
enum proto_key_info_rep {
    PROTO_K_INFO_EXISTS  = 1, /* bool */
    PROTO_K_INFO_VERSION = 2, /* int */
    PROTO_K_INFO_COUNT   = 3, /* uint */
    PROTO_K_INFO_SHARD   = 4, /* uint */
};
enum proto_key_node_rep {
    PROTO_K_NODE_ID        = 1, /* uint */
    PROTO_K_NODE_CLUSTER   = 2, /* bin 16 */
    PROTO_K_NODE_SHARDS    = 3, /* uint */
    PROTO_K_NODE_PROTO     = 4, /* uint */
    PROTO_K_NODE_FRAME_MAX = 5, /* uint */
    PROTO_K_NODE_VERSION   = 6, /* str */
};
enum proto_key_state_req {
    PROTO_K_STATE_STREAM = 1, /* str, required */
    PROTO_K_STATE_FIELD  = 2, /* str 1..MRD_STATE_NAME_SIZE_MAX; absent: all */
};
enum proto_key_state_rep {
    PROTO_K_STATE_VERSION = 1, /* int >= -1 */
    PROTO_K_STATE_DOC     = 2, /* bin 1..PROTO_STATE_SIZE_MAX */
};
/* PULL (node to node, replication): a replica asks a peer for the events of
 * one shard's log after a log seq, filtered by the asker's version vector. */
enum proto_key_pull_req {
    PROTO_K_PULL_SHARD   = 1, /* uint32, required */
    PROTO_K_PULL_AFTER   = 2, /* uint: peer's log seq already read, default 0 */
    PROTO_K_PULL_COUNT   = 3, /* uint 1..MRD_READ_COUNT_MAX, required */
    PROTO_K_PULL_VV      = 4, /* bin: asker's shard vv, default empty */
    PROTO_K_PULL_FROM    = 5, /* uint: the asker's node id, required, >= 1 */
    PROTO_K_PULL_CLUSTER = 6, /* bin 16: the asker's cluster id (optional
                                 on the wire; nodes refuse a PULL without
                                 theirs) */
    PROTO_K_PULL_REGION = 7, /* str 1..PROTO_REGION_SIZE_MAX: the asker's
                                region, for acknowledgement levels */
    PROTO_K_PULL_SKIP = 8, /* uint32, default 0: regions (bit i = the
                              topology's region i) whose events the asker
                              gets another way: the peer stops before such
                              an event instead of sending it (anti-entropy,
                              replication/ae.h ae_serve) */
    PROTO_K_PULL_DIGEST = 9, /* bin 1..PROTO_DIGEST_SIZE_MAX: what the asker
                                knows of the shard's replicas (opaque here:
                                replication/ae.h ae_digest_encode) */
    PROTO_K_PULL_BYTES = 10, /* uint >= 1, default: the peer's own limit:
                                the most record bytes the asker wants in
                                the reply (one event always comes, whatever
                                its size), so that several pulls in flight
                                stay within its memory */
};
/* A knowledge digest on the wire: a full version vector's worth. */
#define PROTO_DIGEST_SIZE_MAX (16u * 1024u)

/* A region name on the wire (the node's --region). */
#define PROTO_REGION_SIZE_MAX 63u

/* HINT: sent by a node after it commits new events, so that the peers that
 * pull from it do so now instead of at their next idle poll. Only a hint:
 * a lost one costs latency, never data. The reply is an empty map. */
enum proto_key_hint {
    PROTO_K_HINT_FROM   = 1, /* uint >= 1: the sender's node id, required */
    PROTO_K_HINT_SHARDS = 2, /* bin 1..PROTO_HINT_SHARDS_SIZE_MAX: a bitmap,
                                bit s (byte s / 8, bit s % 8) = shard s */
};
#define PROTO_HINT_SHARDS_SIZE_MAX 32u /* 256 shards */

/* TOPOLOGY: "send me your topology if it is newer than mine"; the answer
 * carries the node's version, and its signed topology (replication/topo.h
 * envelope, opaque here) when that is newer than `have`. TOPOLOGY_PUSH
 * hands a node a signed topology, which it verifies against its own
 * (topo_accept) before it keeps it; the answer is the node's version
 * after. Clients use TOPOLOGY to route; nodes gossip with both. */
enum proto_key_topology {
    PROTO_K_TOPO_HAVE    = 1, /* req: uint, default 0: the asker's version */
    PROTO_K_TOPO_VERSION = 1, /* rep: uint >= 1, required */
    PROTO_K_TOPO_SIGNED  = 2, /* rep and PUSH req: bin
                                 1..PROTO_TOPOLOGY_SIZE_MAX */
};
/* SWIM: one liveness message (replication/swim.h's format, opaque here)
 * from a node; the reply is an empty map, and SWIM's own acks are messages
 * of their own. */
enum proto_key_swim {
    PROTO_K_SWIM_FROM = 1, /* uint >= 1, required: the sender's node id */
    PROTO_K_SWIM_MSG  = 2, /* bin 1..PROTO_SWIM_MSG_SIZE_MAX, required */
};
#define PROTO_SWIM_MSG_SIZE_MAX 1024u

/* A signed topology on the wire: 256 nodes and 16 regions at every limit
 * are about 100 KiB (replication/topo.h checks it fits). */
#define PROTO_TOPOLOGY_SIZE_MAX (256u * 1024u)
/* The reply's key 4 is PROTO_K_PULL_VV too (an enumerator cannot be
 * declared twice): the peer's shard version vector as of the end of the
 * scan, empty unless END. */
enum proto_key_pull_rep {
    PROTO_K_PULL_EVENTS  = 1, /* array of [position, log_seq, record bin] */
    PROTO_K_PULL_SCANNED = 2, /* uint: last log seq examined (>= after) */
    PROTO_K_PULL_END     = 3, /* bool: the scan reached the end of the log */
    /* Optional, written together by proto_pull_rep_finish_ae(): */
    PROTO_K_PULL_BLOCKED = 5, /* bool: stopped before an event of a skipped
                                 region the asker lacks (never with END) */
    PROTO_K_PULL_BLOCKED_ON = 6, /* bin 16 (origin BE64, seq BE64) when
                                    BLOCKED, else empty: that event */
    PROTO_K_PULL_DIGEST_REP = 7, /* bin 0..PROTO_DIGEST_SIZE_MAX: what the
                                    peer knows of the shard's replicas */
};
/* Map entries of a PULL reply with and without the anti-entropy keys. */
#define PROTO_PULL_REP_KEYS 4u
#define PROTO_PULL_REP_KEYS_AE 7u
/* The body of a reply whose status is not MRD_OK. */
enum proto_key_error_rep {
    PROTO_K_ERR_MESSAGE = 1, /* str: what was wrong, for humans */
    PROTO_K_ERR_VERSION = 2, /* int: the stream's version (MRD_EVERSION) or
                                the node's protocol version */
};

/* A view of bytes inside a frame or record; not NUL-terminated. */
struct proto_str {
    const char *ptr;
    uint32_t    len;
};

/* ------------------------------------------------------ bounded reader -- */

struct proto_rd {
    const uint8_t *p;
    const uint8_t *end;
};

void proto_rd_init(struct proto_rd *rd, const void *buf, size_t len);
/* Each reader call checks the next value's type and bounds, moves past it and
 * returns MRD_OK, or returns MRD_EPROTO and leaves rd where it was. */
MRD_MUST_USE int proto_rd_array(struct proto_rd *rd, uint32_t *count_out);
MRD_MUST_USE int proto_rd_map(struct proto_rd *rd, uint32_t *count_out);
MRD_MUST_USE int proto_rd_str(struct proto_rd *rd, struct proto_str *out);
MRD_MUST_USE int proto_rd_bin(struct proto_rd *rd, struct proto_str *out);
MRD_MUST_USE int proto_rd_uint(struct proto_rd *rd, uint64_t *out);
/* Accepts any msgpack integer that fits int64_t. */
MRD_MUST_USE int proto_rd_int(struct proto_rd *rd, int64_t *out);
MRD_MUST_USE int proto_rd_bool(struct proto_rd *rd, bool *out);
MRD_MUST_USE int proto_rd_nil(struct proto_rd *rd);
/* Skips one whole value of any type, nesting at most depth_max (clamped to
 * PROTO_DEPTH_MAX). */
MRD_MUST_USE int proto_rd_skip(struct proto_rd *rd, uint32_t depth_max);
bool             proto_rd_done(const struct proto_rd *rd);

/* MRD_OK when buf[0..len) is exactly one msgpack value, every declared length
 * fits in what is left, nesting <= PROTO_DEPTH_MAX and every array or map has
 * <= PROTO_COUNT_MAX elements. Extension types are refused. */
MRD_MUST_USE int proto_walk(const void *buf, size_t len);

/* ------------------------------------------------------- capped writer -- */

/* A growable byte buffer with a hard cap; a write past the cap fails and
 * sets `overflow`, and every later write fails too. Owns data. */
struct proto_buf {
    uint8_t *data;
    size_t   len;
    size_t   cap;
    size_t   cap_max;
    bool     overflow;
    bool     nomem;
};

void proto_buf_init(struct proto_buf *buf, size_t cap_max);
void proto_buf_reset(struct proto_buf *buf); /* len = 0, flags cleared */
void proto_buf_fini(struct proto_buf *buf); /* frees data */
/* MRD_OK, MRD_ETOOBIG (cap) or MRD_ENOMEM. */
MRD_MUST_USE int proto_buf_append(
    struct proto_buf *buf, const void *data, size_t len);
/* MRD_OK, or the first error any append hit. */
MRD_MUST_USE int proto_buf_status(const struct proto_buf *buf);

/* The msgpack writer: msgpack-c's packer aimed at a proto_buf. Errors are
 * sticky in the buf, so callers pack a whole message and then check
 * proto_buf_status() once. */
void proto_wr_array(struct proto_buf *buf, uint32_t n);
void proto_wr_map(struct proto_buf *buf, uint32_t n);
void proto_wr_uint(struct proto_buf *buf, uint64_t v);
void proto_wr_int(struct proto_buf *buf, int64_t v);
void proto_wr_bool(struct proto_buf *buf, bool v);
void proto_wr_str(struct proto_buf *buf, const char *s, size_t len);
void proto_wr_bin(struct proto_buf *buf, const void *p, size_t len);
void proto_wr_nil(struct proto_buf *buf);
/* Raw, already-encoded msgpack bytes. */
void proto_wr_raw(struct proto_buf *buf, const void *p, size_t len);
/* Aims a msgpack-c packer at buf, for encoders outside proto/ (crdt's):
 * errors are sticky in buf as with every proto_wr_*. pk is the caller's
 * and needs no cleanup; buf must outlive its use. */
void proto_wr_packer_init(struct proto_buf *buf, struct msgpack_packer *pk);

/* ------------------------------------------------------------- frames -- */

/* Request: [version, type, body map]. Reply: [version, type, status, body]. */
struct proto_frame {
    uint32_t        version;
    uint32_t        type;
    uint32_t        status; /* replies only */
    struct proto_rd body; /* positioned on the body map */
};

/* Walks the frame (proto_walk) and reads its header. On a version other than
 * PROTO_VERSION it fills `version` and returns MRD_EPROTOVERSION; an unknown
 * type is MRD_EPROTO. */
MRD_MUST_USE int proto_request_open(
    const void *buf, size_t len, struct proto_frame *out, const char **why);
MRD_MUST_USE int proto_reply_open(
    const void *buf, size_t len, struct proto_frame *out, const char **why);

/* Starts a request or reply frame; the caller then writes the body map.
 * Every *_encode() below writes a whole frame, header included: these two
 * are for frames written by hand (tests, and the events replies). */
void proto_request_begin(struct proto_buf *buf, uint32_t type);
void proto_reply_begin(struct proto_buf *buf, uint32_t type, uint32_t status);
/* A whole error reply: status != MRD_OK, a message, and optionally a version
 * (pass has_version false to leave it out). */
void proto_reply_error(struct proto_buf *buf, uint32_t type, uint32_t status,
    const char *message, bool has_version, int64_t version);
/* Reads an error reply's body. Missing fields are left zero/NULL. */
MRD_MUST_USE int proto_error_decode(struct proto_rd *body,
    struct proto_str *message, bool *has_version, int64_t *version,
    const char **why);

/* --------------------------------------------------------- event input -- */

/* One event of an append, as views into the request frame. meta_raw is the
 * msgpack map exactly as sent (already validated: str keys and values within
 * the limits), copied verbatim into the record. ops is the request's ops bin
 * as sent: proto checks only that it is a bin within PROTO_OPS_SIZE_MAX; its
 * content is crdt_ops_decode's to check. The node may point ops elsewhere
 * (the ops rewritten with their deps) before proto_record_encode. */
struct proto_event_in {
    struct proto_str type;
    struct proto_str data;
    struct proto_str content_type;
    struct proto_str correlation;
    struct proto_str causation;
    struct proto_str meta_raw; /* msgpack map bytes; len 0 when absent */
    uint32_t         meta_count;
    struct proto_str ops; /* encoded ops; len 0 when absent */
};

/* An append's acknowledgement request (MRD_ACK_*; count is k replicas of
 * the region for MRD_ACK_REGION, n regions for MRD_ACK_GLOBAL). */
struct proto_ack {
    uint32_t level;
    uint32_t count;
    uint32_t wait_ms;
};

struct proto_append_req {
    struct proto_str stream;
    int64_t          expected;
    struct proto_str idem_key; /* len 0 when absent */
    uint32_t         event_count;
    /* The events array's msgpack bytes, fully validated by the decoder; walk
     * it with proto_events_next(). */
    struct proto_str events_raw;
    /* Sum of the events' encoded sizes, so the writer can size its work. */
    uint64_t         events_size;
    struct proto_ack ack; /* level 0 (local) when absent */
    mrd_dot          after; /* seq 0 when absent */
};

/* Encodes a whole APPEND request. events are the public type; the caller
 * checked nothing: limits are checked here (MRD_ETOOBIG, MRD_ENAME,
 * MRD_EINVAL). ops is NULL (no event has ops) or an array of event_count
 * encoded op lists (crdt_ops_encode output), ops[i] for events[i], len 0
 * for none; each is copied as the event's ops bin, unread. proto cannot
 * encode events[i].ops itself (that is crdt's format): an event whose
 * op_count is not 0 but has no ops[i] is MRD_EINVAL, so ops are never
 * dropped silently. An ops[i] over PROTO_OPS_SIZE_MAX is MRD_ETOOBIG. */
MRD_MUST_USE int proto_append_req_encode(struct proto_buf *buf,
    const char *stream, size_t stream_len, int64_t expected,
    const void *idem_key, size_t idem_key_len, const mrd_event_in *events,
    const struct proto_str *ops, size_t event_count);
/* The same with an acknowledgement level (ack NULL or level MRD_ACK_LOCAL:
 * none sent) and a session's causal context (after NULL or seq 0: none
 * sent). MRD_EINVAL for a level, count or wait out of range, or an after
 * dot with origin 0. */
MRD_MUST_USE int proto_append_req_encode_ack(struct proto_buf *buf,
    const char *stream, size_t stream_len, int64_t expected,
    const void *idem_key, size_t idem_key_len, const mrd_event_in *events,
    const struct proto_str *ops, size_t event_count,
    const struct proto_ack *ack, const mrd_dot *after);
/* Decodes and validates an APPEND body: stream name, expected version, every
 * event against every limit. On success the views point into the frame. */
MRD_MUST_USE int proto_append_req_decode(
    struct proto_rd *body, struct proto_append_req *out, const char **why);
/* Iterates events_raw; returns MRD_OK and fills *ev for each event, or
 * MRD_ENOTFOUND at the end. rd starts as proto_rd_init over events_raw after
 * its array header was read: use proto_events_begin(). Events are not
 * validated again (the decoder did it); bytes that did not come from
 * proto_append_req_decode may give MRD_EPROTO, never a bad read. */
void proto_events_begin(
    const struct proto_append_req *req, struct proto_rd *rd);
MRD_MUST_USE int proto_events_next(
    struct proto_rd *rd, struct proto_event_in *ev);

struct proto_append_rep {
    uint64_t origin;
    uint64_t seq;
    uint64_t first_pos;
    uint64_t version;
    uint32_t count;
    uint64_t hlc;
    bool     replayed;
    /* Acknowledgement: sent when ack_asked (the append asked for more than
     * MRD_ACK_LOCAL); decoded as ack_asked when the keys are there. */
    bool     ack_asked;
    uint32_t ack_level; /* reached */
    uint32_t ack_replicas;
    uint32_t ack_regions;
};
void proto_append_rep_encode(
    struct proto_buf *buf, const struct proto_append_rep *rep);
MRD_MUST_USE int proto_append_rep_decode(
    struct proto_rd *body, struct proto_append_rep *out, const char **why);

/* -------------------------------------------------------------- records -- */

/* A stored event. Format 3: [format, origin, seq, hlc, stream, type,
 * content_type, data, correlation, causation, meta, ops, idem, checksum],
 * where ops is nil or a bin of 1..PROTO_OPS_SIZE_MAX bytes, and idem is nil
 * or, on the first event of an append that had an idempotency key,
 * [key bin 1..MRD_IDEMPOTENCY_KEY_SIZE_MAX, digest uint, expected int,
 * count uint 1..MRD_APPEND_EVENTS_MAX]: what a replica needs to answer a
 * retry of that append as its first node would. Formats 2 (no idem: 13
 * elements) and 1 (no ops either: 12) are still read, never written. The
 * checksum is the last 9 bytes (0xcf + big-endian u64): SipHash-2-4
 * (libsodium crypto_shorthash, fixed key) of every byte before it. */
struct proto_record_idem {
    struct proto_str key; /* len 0: none */
    uint64_t         digest; /* of the append's events (node/server.c) */
    int64_t          expected; /* the append's expected version */
    uint32_t         count; /* events in the append */
};

struct proto_record {
    uint32_t                 format;
    uint64_t                 origin;
    uint64_t                 seq;
    uint64_t                 hlc;
    struct proto_str         stream;
    struct proto_str         type;
    struct proto_str         content_type;
    struct proto_str         data;
    struct proto_str         correlation;
    struct proto_str         causation;
    struct proto_str         meta_raw; /* msgpack map bytes */
    uint32_t                 meta_count;
    struct proto_str         ops; /* encoded ops; len 0, ptr NULL when none */
    struct proto_record_idem idem; /* key.len 0 when none */
};

/* Appends one record for ev to buf (not a frame: raw record bytes), always
 * in format PROTO_RECORD_FORMAT, with ev->ops as its ops (nil when len 0;
 * wherever ev->ops points). Checks ev as the decoders do (MRD_ENAME,
 * MRD_ETOOBIG, MRD_EPROTO) before writing; then MRD_OK or the buf's sticky
 * error. */
MRD_MUST_USE int proto_record_encode(struct proto_buf *buf, uint64_t origin,
    uint64_t seq, uint64_t hlc, struct proto_str stream,
    const struct proto_event_in *ev);
/* The same with the append's idempotency (NULL or key.len 0: none); a key
 * over MRD_IDEMPOTENCY_KEY_SIZE_MAX or a count outside
 * 1..MRD_APPEND_EVENTS_MAX is MRD_EINVAL. */
MRD_MUST_USE int proto_record_encode_idem(struct proto_buf *buf,
    uint64_t origin, uint64_t seq, uint64_t hlc, struct proto_str stream,
    const struct proto_event_in *ev, const struct proto_record_idem *idem);
/* Verifies the checksum (MRD_ECORRUPT) and decodes; views point into buf. */
MRD_MUST_USE int proto_record_decode(
    const void *buf, size_t len, struct proto_record *out, const char **why);
/* Checksum only: MRD_OK or MRD_ECORRUPT. Cheap; used on every read. */
MRD_MUST_USE int proto_record_verify(const void *buf, size_t len);
/* Reads a record's dot without decoding the rest; false when the record
 * does not start like one. For filters that look at many records. */
bool proto_record_dot(
    const void *buf, size_t len, uint64_t *origin, uint64_t *seq);

/* Iterates a record's or an event's user metadata: returns MRD_OK per entry
 * and MRD_ENOTFOUND at the end (at once when meta_raw is empty); MRD_EPROTO
 * only for bytes no decoder accepted. */
void proto_meta_begin(const struct proto_str *meta_raw, struct proto_rd *rd);
MRD_MUST_USE int proto_meta_next(
    struct proto_rd *rd, struct proto_str *key, struct proto_str *value);

/* ---------------------------------------------------------------- reads -- */

struct proto_read_req {
    struct proto_str stream;
    uint64_t         from;
    uint32_t         direction; /* MRD_FORWARD or MRD_BACKWARD */
    uint32_t         count;
    uint32_t         wait_ms;
    bool             has_cursor; /* a causal cursor read */
    struct proto_str cursor; /* vv bin, validated; may be empty */
    uint64_t         hint_node; /* the node `from` is a position of */
};
MRD_MUST_USE int proto_read_req_encode(
    struct proto_buf *buf, const struct proto_read_req *req);
MRD_MUST_USE int proto_read_req_decode(
    struct proto_rd *body, struct proto_read_req *out, const char **why);

struct proto_log_req {
    uint32_t shard;
    uint64_t after;
    uint32_t count;
};
MRD_MUST_USE int proto_log_req_encode(
    struct proto_buf *buf, const struct proto_log_req *req);
MRD_MUST_USE int proto_log_req_decode(
    struct proto_rd *body, struct proto_log_req *out, const char **why);

/* Read and log replies are written in pieces by the node, which does not know
 * the count in advance: it reserves the array header with a fixed 5-byte
 * array32, then patches it. */
struct proto_events_wr {
    size_t   header_at; /* offset of the array32 header in buf */
    uint32_t count;
};
/* Starts the whole reply frame (header with MRD_OK, body map of exactly 3
 * keys for READ (4 for a cursor read), 2 for READ_LOG, 4 for PULL) and the
 * events array. */
void proto_events_reply_begin(struct proto_buf *buf, uint32_t type,
    uint32_t key_count, struct proto_events_wr *w);
void proto_events_reply_add(struct proto_buf *buf, struct proto_events_wr *w,
    uint64_t position, uint64_t log_seq, const void *record, size_t len);
/* Patches the array count. The caller then writes the remaining keys. */
void proto_events_reply_end(struct proto_buf *buf, struct proto_events_wr *w);
/* Bytes one more event adds to a reply, at most. */
#define PROTO_EVENT_REPLY_OVERHEAD 32u

/* A decoded read/log reply: the events array is walked lazily. */
struct proto_events_rep {
    uint32_t         count;
    struct proto_str events_raw; /* array body bytes, validated */
    uint64_t         next; /* READ: NEXT; READ_LOG: LAST_SEQ */
    int64_t          version; /* READ only */
    uint64_t         node; /* READ_NODE: cursor reads only, else 0 */
};
/* type is PROTO_T_READ or PROTO_T_READ_LOG. Validates every item's shape
 * ([uint, uint, bin]) but not the records inside (proto_record_decode). */
MRD_MUST_USE int proto_events_rep_decode(struct proto_rd *body, uint32_t type,
    struct proto_events_rep *out, const char **why);
void             proto_events_rep_begin(
                const struct proto_events_rep *rep, struct proto_rd *rd);
/* MRD_OK per item, MRD_ENOTFOUND at the end (MRD_EPROTO only for bytes no
 * decoder accepted). */
MRD_MUST_USE int proto_events_rep_next(struct proto_rd *rd, uint64_t *position,
    uint64_t *log_seq, struct proto_str *record);

/* ---------------------------------------------------------------- pull -- */

/* A version vector on the wire: a bin of 16-byte entries, origin BE64 then
 * seq BE64, origins strictly increasing, origin >= 1, seq >= 1; at most
 * PROTO_VV_ENTRIES_MAX entries. Empty: nothing seen. */
#define PROTO_VV_ENTRY_SIZE 16u
#define PROTO_VV_ENTRIES_MAX 1024u

/* Validates a vv bin: MRD_OK, or MRD_EPROTO with why (a length that is not
 * a multiple of 16, more than PROTO_VV_ENTRIES_MAX entries, an origin or a
 * seq of 0, origins not strictly increasing). */
MRD_MUST_USE int proto_vv_check(struct proto_str vv, const char **why);
/* seq of origin in a validated vv bin (sorted by origin), 0 if absent. */
uint64_t proto_vv_get(struct proto_str vv, uint64_t origin);
/* Entries in a validated vv bin. */
uint32_t proto_vv_count(struct proto_str vv);
/* Reads entry i (< proto_vv_count) of a validated vv bin. */
void proto_vv_at(
    struct proto_str vv, uint32_t i, uint64_t *origin, uint64_t *seq);

/* PULL request. vv is the raw bin (len 0: empty, ptr may be NULL then). */
struct proto_pull_req {
    uint32_t         shard;
    uint64_t         after;
    uint32_t         count;
    struct proto_str vv; /* validated: proto_vv_check */
    uint64_t         from;
    struct proto_str cluster; /* 16 bytes, or len 0 when absent */
    struct proto_str region; /* len 0 when absent */
    uint32_t         skip; /* region mask, 0 when absent */
    struct proto_str digest; /* len 0 when absent */
    uint64_t         bytes; /* 0 when absent */
};
/* MRD_EINVAL (count 0, from 0, a vv proto_vv_check refuses, or vv.len > 0
 * with a NULL ptr), MRD_ETOOBIG (count over MRD_READ_COUNT_MAX), else the
 * buf's status. Writes nothing when it refuses. */
MRD_MUST_USE int proto_pull_req_encode(
    struct proto_buf *buf, const struct proto_pull_req *req);

/* TOPOLOGY request: have (0: none). */
MRD_MUST_USE int proto_topo_req_encode(struct proto_buf *buf, uint64_t have);
MRD_MUST_USE int proto_topo_req_decode(
    struct proto_rd *body, uint64_t *have, const char **why);
/* TOPOLOGY reply: version, and signed (len 0: not sent). */
void proto_topo_rep_encode(
    struct proto_buf *buf, uint64_t version, struct proto_str signed_topo);
MRD_MUST_USE int proto_topo_rep_decode(struct proto_rd *body, uint64_t *version,
    struct proto_str *signed_topo, const char **why);
/* TOPOLOGY_PUSH request (signed required) and reply (version). */
MRD_MUST_USE int proto_topo_push_encode(
    struct proto_buf *buf, struct proto_str signed_topo);
MRD_MUST_USE int proto_topo_push_decode(
    struct proto_rd *body, struct proto_str *signed_topo, const char **why);
void proto_topo_push_rep_encode(struct proto_buf *buf, uint64_t version);
MRD_MUST_USE int proto_topo_push_rep_decode(
    struct proto_rd *body, uint64_t *version, const char **why);

/* SWIM request: from and the message bytes. */
MRD_MUST_USE int proto_swim_req_encode(
    struct proto_buf *buf, uint64_t from, struct proto_str msg);
MRD_MUST_USE int proto_swim_req_decode(struct proto_rd *body, uint64_t *from,
    struct proto_str *msg, const char **why);

/* HINT request (see enum proto_key_hint). */
struct proto_hint_req {
    uint64_t         from;
    struct proto_str shards;
};
MRD_MUST_USE int proto_hint_req_encode(
    struct proto_buf *buf, const struct proto_hint_req *req);
MRD_MUST_USE int proto_hint_req_decode(
    struct proto_rd *body, struct proto_hint_req *out, const char **why);
MRD_MUST_USE int proto_pull_req_decode(
    struct proto_rd *body, struct proto_pull_req *out, const char **why);

/* PULL reply: written in pieces like a READ_LOG reply:
 * proto_events_reply_begin(buf, PROTO_T_PULL, 4, &w), proto_events_reply_add
 * per event, proto_events_reply_end, then proto_pull_rep_finish, which writes
 * keys 2..4. vv (vv_len bytes) must be empty unless end, and valid
 * (asserted), except that one of more than PROTO_VV_ENTRIES_MAX entries
 * poisons buf with MRD_ETOOBIG (no peer would accept it). */
void proto_pull_rep_finish(struct proto_buf *buf, uint64_t scanned, bool end,
    const void *vv, size_t vv_len);
/* Then, for a reply begun with PROTO_PULL_REP_KEYS_AE entries, keys 5..7:
 * blocked (never with end: asserted) on the event (origin, seq), and the
 * digest (len 0: none; over PROTO_DIGEST_SIZE_MAX poisons buf). */
void proto_pull_rep_finish_ae(struct proto_buf *buf, bool blocked,
    uint64_t blocked_origin, uint64_t blocked_seq, const void *digest,
    size_t digest_len);

struct proto_pull_rep {
    uint32_t         count;
    struct proto_str events_raw; /* array body bytes, validated shapes */
    uint64_t         scanned;
    bool             end;
    struct proto_str vv; /* validated; len 0 unless end */
    bool             blocked; /* never with end */
    uint64_t         blocked_origin; /* >= 1 when blocked, else 0 */
    uint64_t         blocked_seq; /* >= 1 when blocked, else 0 */
    struct proto_str digest; /* len 0 when absent */
};
/* Validates every item's shape ([uint, uint, bin], as READ_LOG) but not the
 * records inside (proto_record_decode), the vv (proto_vv_check), and that
 * a vv comes only with end. Whether scanned >= the request's after, and
 * items' log seqs are within (after, scanned], is the asker's to check. */
MRD_MUST_USE int proto_pull_rep_decode(
    struct proto_rd *body, struct proto_pull_rep *out, const char **why);
/* Starts iterating the events; then proto_events_rep_next(rd, &position,
 * &log_seq, &record) per item, MRD_ENOTFOUND at the end. */
void proto_pull_rep_begin(
    const struct proto_pull_rep *rep, struct proto_rd *rd);

/* ----------------------------------------------------------- operations -- */

/* STATUS: an empty request; the reply is one JSON text, the node's status
 * document (docs/PROTOCOL.md lists its fields). JSON rather than msgpack
 * keys because its readers are tools and people, its shape grows with
 * every release, and a tool that meets a field it does not know must keep
 * working: the frame around it is still bounded and authenticated. The
 * FENCE reply is a JSON text too: the fence now in force. */
enum proto_key_doc_rep {
    PROTO_K_DOC_JSON = 1, /* str 2..PROTO_DOC_SIZE_MAX, a JSON object */
};
/* A status document: 256 shards with 256 origins each are ~3 MiB of
 * vector text, which no real cluster comes near; past this the STATUS
 * call fails with MRD_ETOOBIG rather than send a partial document. */
#define PROTO_DOC_SIZE_MAX (4u * 1024u * 1024u)
void proto_doc_rep_encode(
    struct proto_buf *buf, uint32_t type, const char *json, size_t len);
MRD_MUST_USE int proto_doc_rep_decode(
    struct proto_rd *body, struct proto_str *json, const char **why);

/* FENCE: a failover drill's fence (meridianctl drill). While it holds, the
 * node refuses every request from the listed peers (node to node: pulls,
 * hints, SWIM), and, with clients, every client request but the
 * operations ones, with MRD_EFENCED, so clients fail over. ms 0 lifts the
 * fence. A fence always ends by itself after ms, so a drill whose tool
 * dies never leaves a region cut off. */
enum proto_key_fence_req {
    PROTO_K_FENCE_MS      = 1, /* uint 0..PROTO_FENCE_MS_MAX, required */
    PROTO_K_FENCE_CLIENTS = 2, /* bool, default false */
    PROTO_K_FENCE_PEERS   = 3, /* bin: node ids, 8 bytes BE each */
    PROTO_K_FENCE_LABEL   = 4, /* str 1..PROTO_FENCE_LABEL_SIZE_MAX, logged */
};
/* A day: a drill, not a ban. */
#define PROTO_FENCE_MS_MAX (24u * 3600u * 1000u)
#define PROTO_FENCE_PEERS_MAX 256u /* TOPO_NODES_MAX */
#define PROTO_FENCE_LABEL_SIZE_MAX 64u
struct proto_fence_req {
    uint64_t         ms;
    bool             clients;
    struct proto_str peers; /* len a multiple of 8, ids >= 1 */
    struct proto_str label; /* len 0: none */
};
/* MRD_EINVAL when a field is out of its bounds; writes nothing then. */
MRD_MUST_USE int proto_fence_req_encode(
    struct proto_buf *buf, const struct proto_fence_req *req);
MRD_MUST_USE int proto_fence_req_decode(
    struct proto_rd *body, struct proto_fence_req *out, const char **why);

/* DIGEST: the shard's events, those a cut vector covers when one is given
 * (every event otherwise), as a count and a digest that does not depend
 * on log order: the lane-wise sum mod 2^64 of each record's BLAKE2b-256.
 * Two replicas holding the same events under the cut give the same pair
 * whatever order they hold them in; a missing, extra, duplicate or altered
 * record changes it. The reply also has the shard's vector at the scan. */
enum proto_key_digest_req {
    PROTO_K_DIGEST_SHARD = 1, /* u32, required */
    PROTO_K_DIGEST_CUT   = 2, /* bin: vv (proto_vv_check) */
};
enum proto_key_digest_rep {
    PROTO_K_DIGEST_EVENTS = 1, /* uint */
    PROTO_K_DIGEST_SUM    = 2, /* bin PROTO_DIGEST_SUM_SIZE */
    PROTO_K_DIGEST_VV     = 3, /* bin: vv */
};
#define PROTO_DIGEST_SUM_SIZE 32u
struct proto_digest_req {
    uint32_t         shard;
    bool             has_cut;
    struct proto_str cut;
};
struct proto_digest_rep {
    uint64_t         events;
    uint8_t          sum[PROTO_DIGEST_SUM_SIZE];
    struct proto_str vv;
};
MRD_MUST_USE int proto_digest_req_encode(
    struct proto_buf *buf, const struct proto_digest_req *req);
MRD_MUST_USE int proto_digest_req_decode(
    struct proto_rd *body, struct proto_digest_req *out, const char **why);
void proto_digest_rep_encode(
    struct proto_buf *buf, const struct proto_digest_rep *rep);
MRD_MUST_USE int proto_digest_rep_decode(
    struct proto_rd *body, struct proto_digest_rep *out, const char **why);

/* ----------------------------------------------------------------- info -- */

MRD_MUST_USE int proto_info_req_encode(
    struct proto_buf *buf, const char *stream, size_t stream_len);
MRD_MUST_USE int proto_info_req_decode(
    struct proto_rd *body, struct proto_str *stream, const char **why);
void proto_info_rep_encode(struct proto_buf *buf, const mrd_stream_info *info);
MRD_MUST_USE int proto_info_rep_decode(
    struct proto_rd *body, mrd_stream_info *out, const char **why);

/* NODE_INFO and STATS requests have an empty body map. */
void             proto_empty_req_encode(struct proto_buf *buf, uint32_t type);
MRD_MUST_USE int proto_empty_req_decode(
    struct proto_rd *body, const char **why);
void proto_node_rep_encode(struct proto_buf *buf, const mrd_node_info *info);
MRD_MUST_USE int proto_node_rep_decode(
    struct proto_rd *body, mrd_node_info *out, const char **why);

/* ---------------------------------------------------------------- state -- */

/* STATE request: a stream's state document, whole or one field. */
struct proto_state_req {
    struct proto_str stream;
    struct proto_str field; /* len 0: every field */
};
/* MRD_ENAME (stream), MRD_ETOOBIG (field over MRD_STATE_NAME_SIZE_MAX),
 * MRD_EINVAL (field not UTF-8 or holding a NUL), else the buf's status. */
MRD_MUST_USE int proto_state_req_encode(
    struct proto_buf *buf, const struct proto_state_req *req);
MRD_MUST_USE int proto_state_req_decode(
    struct proto_rd *body, struct proto_state_req *out, const char **why);

/* STATE reply: the version of the stream the state reflects (-1: no event)
 * and the canonical document encoding (crdt_doc_encode), decoded by the
 * client with crdt_doc_decode; proto checks only that it is a bin of
 * 1..PROTO_STATE_SIZE_MAX bytes. */
struct proto_state_rep {
    int64_t          version;
    struct proto_str state;
};
/* The whole reply frame, status MRD_OK. A state over PROTO_STATE_SIZE_MAX
 * poisons buf with MRD_ETOOBIG (a document can outgrow it by replication;
 * that is no bug here), like any write past the cap. */
void proto_state_rep_encode(
    struct proto_buf *buf, const struct proto_state_rep *rep);
MRD_MUST_USE int proto_state_rep_decode(
    struct proto_rd *body, struct proto_state_rep *out, const char **why);

/* STATS reply: a map of counter name (str) -> uint. */
struct proto_stat {
    const char *name;
    uint64_t    value;
};
void proto_stats_rep_encode(
    struct proto_buf *buf, const struct proto_stat *stats, size_t count);
/* Looks one counter up in a STATS reply body: MRD_OK, or MRD_ENOTFOUND
 * (MRD_EPROTO when the body is not a map of str -> uint). body is not
 * moved. */
MRD_MUST_USE int proto_stats_rep_find(
    const struct proto_rd *body, const char *name, uint64_t *value);

#endif /* MRD_PROTO_H */
