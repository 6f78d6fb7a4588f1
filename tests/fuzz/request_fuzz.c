/*
 * request_fuzz.c: libFuzzer target for everything a node decodes from a
 * client or a peer node: proto_request_open, the body decoder of the frame's
 * type (PULL, node to node, included), and the iteration over an append's
 * events and their metadata.
 *
 * Beyond "no crash", three oracles trap on a wrong answer:
 * - differential: when proto_walk accepts a buffer, msgpack-c's unpacker
 *   must accept it too and consume exactly the same bytes (msgpack-c runs
 *   only after the walk, because on raw input it allocates what lengths
 *   declare: msgpack-c issue 1013);
 * - whatever a decoder accepts is within every limit of meridian.h;
 * - whatever a node accepts, the client encoders can send: decoded requests
 *   re-encode without error and decode back to the same fields.
 */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            __builtin_trap();                                                  \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
walk_differential(const uint8_t *data, size_t size)
{
    struct proto_rd  rd;
    msgpack_unpacked u;
    size_t           off = 0;

    if (proto_walk(data, size) != MRD_OK) {
        return;
    }
    /* The walk and the skipper agree on where the value ends. */
    proto_rd_init(&rd, data, size);
    CHECK(proto_rd_skip(&rd, PROTO_DEPTH_MAX) == MRD_OK);
    CHECK(proto_rd_done(&rd));
    msgpack_unpacked_init(&u);
    msgpack_unpack_return r
        = msgpack_unpack_next(&u, (const char *) data, size, &off);
    CHECK(r == MSGPACK_UNPACK_SUCCESS);
    CHECK(off == size);
    msgpack_unpacked_destroy(&u);
}

static bool
str_eq(struct proto_str a, struct proto_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void
check_text(struct proto_str s, uint32_t max, bool required)
{
    CHECK(s.len <= max);
    CHECK(!required || s.len > 0);
    CHECK(mrd_utf8_valid(s.ptr, s.len));
}

/* Every field of an accepted event is within its limit. */
static void
check_event(const struct proto_event_in *ev)
{
    struct proto_rd  rd;
    struct proto_str k;
    struct proto_str v;
    uint32_t         n = 0;

    check_text(ev->type, MRD_EVENT_TYPE_SIZE_MAX, true);
    check_text(ev->content_type, MRD_CONTENT_TYPE_SIZE_MAX, false);
    check_text(ev->correlation, MRD_ID_SIZE_MAX, false);
    check_text(ev->causation, MRD_ID_SIZE_MAX, false);
    CHECK(ev->data.len <= MRD_EVENT_DATA_SIZE_MAX);
    CHECK(ev->ops.len <= PROTO_OPS_SIZE_MAX);
    CHECK(ev->meta_count <= MRD_META_ENTRIES_MAX);
    proto_meta_begin(&ev->meta_raw, &rd);
    while (proto_meta_next(&rd, &k, &v) == MRD_OK) {
        check_text(k, MRD_META_KEY_SIZE_MAX, true);
        check_text(v, MRD_META_VALUE_SIZE_MAX, false);
        n++;
    }
    CHECK(proto_rd_done(&rd));
    CHECK(n == ev->meta_count);
}

/* A NUL-terminated copy of a view, from a bump arena sized by the frame:
 * every non-empty string in the frame has a header byte, so the copies
 * always fit. Empty (or absent) strings need no copy. */
struct arena {
    char  *p;
    size_t left;
};

static const char *
arena_cstr(struct arena *a, struct proto_str s)
{
    if (s.len == 0) {
        return "";
    }
    CHECK(a->left > s.len);
    char *out = a->p;
    memcpy(out, s.ptr, s.len);
    out[s.len] = '\0';
    a->p += s.len + 1;
    a->left -= s.len + 1;
    return out;
}

/* Rebuilds a decoded event as the public type a client would pass. */
static void
event_to_client(struct arena *a, const struct proto_event_in *ev,
    mrd_event_in *out, mrd_meta_entry *meta)
{
    struct proto_rd  rd;
    struct proto_str k;
    struct proto_str v;
    size_t           n = 0;

    memset(out, 0, sizeof *out);
    out->type           = arena_cstr(a, ev->type);
    out->data           = ev->data.ptr;
    out->data_size      = ev->data.len;
    out->content_type   = arena_cstr(a, ev->content_type);
    out->correlation_id = arena_cstr(a, ev->correlation);
    out->causation_id   = arena_cstr(a, ev->causation);
    proto_meta_begin(&ev->meta_raw, &rd);
    while (proto_meta_next(&rd, &k, &v) == MRD_OK) {
        CHECK(n < MRD_META_ENTRIES_MAX);
        meta[n].key   = arena_cstr(a, k);
        meta[n].value = arena_cstr(a, v);
        n++;
    }
    out->meta       = meta;
    out->meta_count = n;
}

static void
meta_same(const struct proto_event_in *x, const struct proto_event_in *y)
{
    struct proto_rd  rx;
    struct proto_rd  ry;
    struct proto_str kx, vx, ky, vy;

    CHECK(x->meta_count == y->meta_count);
    proto_meta_begin(&x->meta_raw, &rx);
    proto_meta_begin(&y->meta_raw, &ry);
    while (proto_meta_next(&rx, &kx, &vx) == MRD_OK) {
        CHECK(proto_meta_next(&ry, &ky, &vy) == MRD_OK);
        CHECK(str_eq(kx, ky) && str_eq(vx, vy));
    }
    CHECK(proto_meta_next(&ry, &ky, &vy) == MRD_ENOTFOUND);
}

static void
append_reencode(const struct proto_append_req *req, size_t size)
{
    struct arena    a;
    mrd_event_in   *evs  = calloc(req->event_count, sizeof *evs);
    mrd_meta_entry *meta = calloc(
        (size_t) req->event_count * MRD_META_ENTRIES_MAX, sizeof *meta);
    char                 *mem = malloc(size + 1);
    struct proto_str     *ops = calloc(req->event_count, sizeof *ops);
    struct proto_rd       rd;
    struct proto_event_in ev;
    struct proto_buf      b;

    CHECK(evs != NULL && meta != NULL && mem != NULL && ops != NULL);
    a.p    = mem;
    a.left = size + 1;
    proto_events_begin(req, &rd);
    for (uint32_t i = 0; i < req->event_count; i++) {
        CHECK(proto_events_next(&rd, &ev) == MRD_OK);
        event_to_client(&a, &ev, &evs[i], meta + i * MRD_META_ENTRIES_MAX);
        ops[i] = ev.ops; /* sent as they came: proto never reads them */
    }
    proto_buf_init(&b, MRD_FRAME_SIZE_MAX);
    CHECK(req->ack.level <= MRD_ACK_GLOBAL);
    CHECK(req->ack.level == MRD_ACK_LOCAL
        || (req->ack.count >= 1 && req->ack.count <= MRD_ACK_COUNT_MAX
            && req->ack.wait_ms >= 1
            && req->ack.wait_ms <= MRD_ACK_WAIT_MS_MAX));
    CHECK(proto_append_req_encode_ack(&b, req->stream.ptr, req->stream.len,
              req->expected, req->idem_key.len > 0 ? req->idem_key.ptr : NULL,
              req->idem_key.len, evs, ops, req->event_count, &req->ack,
              &req->after)
        == MRD_OK);

    struct proto_frame      f;
    struct proto_append_req again;
    struct proto_rd         rd2;
    struct proto_event_in   ev2;
    const char             *why;
    CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
    CHECK(proto_append_req_decode(&f.body, &again, &why) == MRD_OK);
    CHECK(str_eq(again.stream, req->stream));
    CHECK(again.expected == req->expected);
    CHECK(str_eq(again.idem_key, req->idem_key));
    CHECK(again.event_count == req->event_count);
    CHECK(again.ack.level == req->ack.level);
    CHECK(again.after.origin == req->after.origin
        && again.after.seq == req->after.seq);
    CHECK(req->ack.level == MRD_ACK_LOCAL
        || (again.ack.count == req->ack.count
            && again.ack.wait_ms == req->ack.wait_ms));
    proto_events_begin(req, &rd);
    proto_events_begin(&again, &rd2);
    for (uint32_t i = 0; i < req->event_count; i++) {
        CHECK(proto_events_next(&rd, &ev) == MRD_OK);
        CHECK(proto_events_next(&rd2, &ev2) == MRD_OK);
        CHECK(str_eq(ev.type, ev2.type) && str_eq(ev.data, ev2.data));
        CHECK(str_eq(ev.content_type, ev2.content_type));
        CHECK(str_eq(ev.correlation, ev2.correlation));
        CHECK(str_eq(ev.causation, ev2.causation));
        CHECK(str_eq(ev.ops, ev2.ops));
        meta_same(&ev, &ev2);
    }
    proto_buf_fini(&b);
    free(ops);
    free(mem);
    free(meta);
    free(evs);
}

static void
fuzz_append(struct proto_rd *body, size_t size)
{
    struct proto_append_req req;
    struct proto_event_in   ev;
    struct proto_rd         rd;
    const char             *why = NULL;
    uint32_t                n   = 0;
    int                     rv;

    if (proto_append_req_decode(body, &req, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(mrd_stream_name_check(req.stream.ptr, req.stream.len) == MRD_OK);
    CHECK(req.expected >= 0 || req.expected == MRD_EXPECT_ANY
        || req.expected == MRD_EXPECT_NO_STREAM
        || req.expected == MRD_EXPECT_EXISTS);
    CHECK(req.idem_key.len <= MRD_IDEMPOTENCY_KEY_SIZE_MAX);
    CHECK(req.event_count >= 1 && req.event_count <= MRD_APPEND_EVENTS_MAX);
    CHECK(req.events_size == req.events_raw.len);
    proto_events_begin(&req, &rd);
    for (;;) {
        rv = proto_events_next(&rd, &ev);
        if (rv != MRD_OK) {
            break;
        }
        check_event(&ev);
        n++;
    }
    CHECK(rv == MRD_ENOTFOUND);
    CHECK(n == req.event_count);
    if (req.event_count <= 64) {
        append_reencode(&req, size);
    }
}

static void
fuzz_read(struct proto_rd *body)
{
    struct proto_read_req req;
    struct proto_read_req again;
    struct proto_buf      b;
    struct proto_frame    f;
    const char           *why = NULL;

    if (proto_read_req_decode(body, &req, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(mrd_stream_name_check(req.stream.ptr, req.stream.len) == MRD_OK);
    CHECK(req.count >= 1 && req.count <= MRD_READ_COUNT_MAX);
    CHECK(req.direction <= 1 && req.wait_ms <= MRD_WAIT_MS_MAX);
    CHECK(req.wait_ms == 0 || req.direction == MRD_FORWARD);
    proto_buf_init(&b, 4096);
    CHECK(proto_read_req_encode(&b, &req) == MRD_OK);
    CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
    CHECK(proto_read_req_decode(&f.body, &again, &why) == MRD_OK);
    CHECK(str_eq(req.stream, again.stream) && req.from == again.from);
    CHECK(req.direction == again.direction && req.count == again.count);
    CHECK(req.wait_ms == again.wait_ms);
    CHECK(
        req.has_cursor == again.has_cursor && str_eq(req.cursor, again.cursor));
    CHECK(req.hint_node == again.hint_node);
    CHECK(!req.has_cursor || req.direction == MRD_FORWARD);
    CHECK(!req.has_cursor || proto_vv_check(req.cursor, NULL) == MRD_OK);
    proto_buf_fini(&b);
}

static void
fuzz_log(struct proto_rd *body)
{
    struct proto_log_req req;
    struct proto_log_req again;
    struct proto_buf     b;
    struct proto_frame   f;
    const char          *why = NULL;

    if (proto_log_req_decode(body, &req, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(req.count >= 1 && req.count <= MRD_READ_COUNT_MAX);
    proto_buf_init(&b, 4096);
    CHECK(proto_log_req_encode(&b, &req) == MRD_OK);
    CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
    CHECK(proto_log_req_decode(&f.body, &again, &why) == MRD_OK);
    CHECK(req.shard == again.shard && req.after == again.after);
    CHECK(req.count == again.count);
    proto_buf_fini(&b);
}

static void
fuzz_info(struct proto_rd *body)
{
    struct proto_str   stream;
    struct proto_str   again;
    struct proto_buf   b;
    struct proto_frame f;
    const char        *why = NULL;

    if (proto_info_req_decode(body, &stream, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(mrd_stream_name_check(stream.ptr, stream.len) == MRD_OK);
    proto_buf_init(&b, 4096);
    CHECK(proto_info_req_encode(&b, stream.ptr, stream.len) == MRD_OK);
    CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
    CHECK(proto_info_req_decode(&f.body, &again, &why) == MRD_OK);
    CHECK(str_eq(stream, again));
    proto_buf_fini(&b);
}

static void
fuzz_state(struct proto_rd *body)
{
    struct proto_state_req req;
    struct proto_state_req again;
    struct proto_buf       b;
    struct proto_frame     f;
    const char            *why = NULL;

    if (proto_state_req_decode(body, &req, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(mrd_stream_name_check(req.stream.ptr, req.stream.len) == MRD_OK);
    CHECK(req.field.len <= MRD_STATE_NAME_SIZE_MAX);
    CHECK(mrd_utf8_valid(req.field.ptr, req.field.len));
    proto_buf_init(&b, 4096);
    CHECK(proto_state_req_encode(&b, &req) == MRD_OK);
    CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
    CHECK(proto_state_req_decode(&f.body, &again, &why) == MRD_OK);
    CHECK(str_eq(req.stream, again.stream) && str_eq(req.field, again.field));
    proto_buf_fini(&b);
}

static void
fuzz_pull(struct proto_rd *body)
{
    struct proto_pull_req req;
    struct proto_pull_req again;
    struct proto_buf      b;
    struct proto_frame    f;
    const char           *why = NULL;
    uint64_t              origin;
    uint64_t              seq;
    uint64_t              prev = 0;

    if (proto_pull_req_decode(body, &req, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(req.count >= 1 && req.count <= MRD_READ_COUNT_MAX);
    CHECK(req.from >= 1);
    CHECK(req.vv.len % PROTO_VV_ENTRY_SIZE == 0);
    CHECK(proto_vv_count(req.vv) <= PROTO_VV_ENTRIES_MAX);
    for (uint32_t i = 0; i < proto_vv_count(req.vv); i++) {
        proto_vv_at(req.vv, i, &origin, &seq);
        CHECK(origin > prev && seq >= 1);
        prev = origin;
    }
    proto_buf_init(&b, MRD_FRAME_SIZE_MAX);
    CHECK(proto_pull_req_encode(&b, &req) == MRD_OK);
    CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
    CHECK(proto_pull_req_decode(&f.body, &again, &why) == MRD_OK);
    CHECK(req.shard == again.shard && req.after == again.after);
    CHECK(req.count == again.count && req.from == again.from);
    CHECK(str_eq(req.vv, again.vv));
    CHECK(str_eq(req.region, again.region));
    CHECK(req.region.len <= PROTO_REGION_SIZE_MAX);
    CHECK(req.skip == again.skip && str_eq(req.digest, again.digest));
    CHECK(req.bytes == again.bytes);
    CHECK(req.digest.len <= PROTO_DIGEST_SIZE_MAX);
    proto_buf_fini(&b);
}

static void
fuzz_topology(struct proto_rd *body, uint32_t type)
{
    struct proto_buf   b;
    struct proto_frame f;
    struct proto_str   sig, sig2;
    uint64_t           have, have2;
    const char        *why = NULL;

    proto_buf_init(&b, PROTO_TOPOLOGY_SIZE_MAX + 4096);
    if (type == PROTO_T_TOPOLOGY) {
        if (proto_topo_req_decode(body, &have, &why) != MRD_OK) {
            CHECK(why != NULL);
        } else {
            CHECK(proto_topo_req_encode(&b, have) == MRD_OK);
            CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
            CHECK(proto_topo_req_decode(&f.body, &have2, &why) == MRD_OK);
            CHECK(have == have2);
        }
    } else if (proto_topo_push_decode(body, &sig, &why) != MRD_OK) {
        CHECK(why != NULL);
    } else {
        CHECK(sig.len >= 1 && sig.len <= PROTO_TOPOLOGY_SIZE_MAX);
        CHECK(proto_topo_push_encode(&b, sig) == MRD_OK);
        CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
        CHECK(proto_topo_push_decode(&f.body, &sig2, &why) == MRD_OK);
        CHECK(str_eq(sig, sig2));
    }
    proto_buf_fini(&b);
}

static void
fuzz_swim(struct proto_rd *body)
{
    struct proto_buf   b;
    struct proto_frame f;
    struct proto_str   msg, msg2;
    uint64_t           from, from2;
    const char        *why = NULL;

    if (proto_swim_req_decode(body, &from, &msg, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(from >= 1 && msg.len >= 1 && msg.len <= PROTO_SWIM_MSG_SIZE_MAX);
    proto_buf_init(&b, PROTO_SWIM_MSG_SIZE_MAX + 64);
    CHECK(proto_swim_req_encode(&b, from, msg) == MRD_OK);
    CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
    CHECK(proto_swim_req_decode(&f.body, &from2, &msg2, &why) == MRD_OK);
    CHECK(from == from2 && str_eq(msg, msg2));
    proto_buf_fini(&b);
}

/* FENCE and DIGEST: what decodes re-encodes to the same request. */
static void
fuzz_fence(struct proto_rd *body)
{
    struct proto_buf       b;
    struct proto_frame     f;
    struct proto_fence_req req, again;
    const char            *why = NULL;

    if (proto_fence_req_decode(body, &req, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(req.ms <= PROTO_FENCE_MS_MAX && req.peers.len % 8 == 0);
    CHECK(req.peers.len / 8 <= PROTO_FENCE_PEERS_MAX);
    CHECK(req.label.len <= PROTO_FENCE_LABEL_SIZE_MAX);
    proto_buf_init(&b, 8192);
    CHECK(proto_fence_req_encode(&b, &req) == MRD_OK);
    CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
    CHECK(proto_fence_req_decode(&f.body, &again, &why) == MRD_OK);
    CHECK(again.ms == req.ms && again.clients == req.clients);
    CHECK(str_eq(again.peers, req.peers) && str_eq(again.label, req.label));
    proto_buf_fini(&b);
}

static void
fuzz_digest(struct proto_rd *body)
{
    struct proto_buf        b;
    struct proto_frame      f;
    struct proto_digest_req req, again;
    const char             *why = NULL;

    if (proto_digest_req_decode(body, &req, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(!req.has_cut || proto_vv_check(req.cut, NULL) == MRD_OK);
    proto_buf_init(&b, PROTO_VV_ENTRIES_MAX * 16 + 64);
    CHECK(proto_digest_req_encode(&b, &req) == MRD_OK);
    CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
    CHECK(proto_digest_req_decode(&f.body, &again, &why) == MRD_OK);
    CHECK(again.shard == req.shard && again.has_cut == req.has_cut);
    CHECK(!req.has_cut || str_eq(again.cut, req.cut));
    proto_buf_fini(&b);
}

static void
fuzz_hint(struct proto_rd *body)
{
    struct proto_hint_req req;
    struct proto_hint_req again;
    struct proto_buf      b;
    struct proto_frame    f;
    const char           *why = NULL;

    if (proto_hint_req_decode(body, &req, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(req.from >= 1);
    CHECK(req.shards.len >= 1 && req.shards.len <= PROTO_HINT_SHARDS_SIZE_MAX);
    proto_buf_init(&b, 256);
    CHECK(proto_hint_req_encode(&b, &req) == MRD_OK);
    CHECK(proto_request_open(b.data, b.len, &f, &why) == MRD_OK);
    CHECK(proto_hint_req_decode(&f.body, &again, &why) == MRD_OK);
    CHECK(req.from == again.from && str_eq(req.shards, again.shards));
    proto_buf_fini(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_frame f;
    const char        *why = NULL;

    walk_differential(data, size);
    int rv = proto_request_open(data, size, &f, &why);
    if (rv != MRD_OK) {
        CHECK(why != NULL);
        CHECK(rv == MRD_EPROTO || rv == MRD_EPROTOVERSION);
        return 0;
    }
    CHECK(f.version == PROTO_VERSION);
    CHECK(f.type >= 1 && f.type <= PROTO_T_MAX_);
    switch (f.type) {
    case PROTO_T_APPEND:
        fuzz_append(&f.body, size);
        break;
    case PROTO_T_READ:
        fuzz_read(&f.body);
        break;
    case PROTO_T_READ_LOG:
        fuzz_log(&f.body);
        break;
    case PROTO_T_INFO:
        fuzz_info(&f.body);
        break;
    case PROTO_T_STATE:
        fuzz_state(&f.body);
        break;
    case PROTO_T_PULL:
        fuzz_pull(&f.body);
        break;
    case PROTO_T_HINT:
        fuzz_hint(&f.body);
        break;
    case PROTO_T_TOPOLOGY:
    case PROTO_T_TOPOLOGY_PUSH:
        fuzz_topology(&f.body, f.type);
        break;
    case PROTO_T_SWIM:
        fuzz_swim(&f.body);
        break;
    case PROTO_T_FENCE:
        fuzz_fence(&f.body);
        break;
    case PROTO_T_DIGEST:
        fuzz_digest(&f.body);
        break;
    default:
        if (proto_empty_req_decode(&f.body, &why) == MRD_OK) {
            CHECK(proto_rd_done(&f.body));
        }
        break;
    }
    return 0;
}
