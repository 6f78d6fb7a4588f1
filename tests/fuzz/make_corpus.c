/*
 * make_corpus.c: writes the seed corpora of the fuzz targets, one small
 * file per input, into DIR/request_fuzz, DIR/reply_fuzz and
 * DIR/record_fuzz. Run once (make_corpus tests/fuzz/corpus) and commit the
 * files; rerun when the protocol changes. Seeds are one valid message of
 * every kind, written by the real encoders, plus the malformed shapes the
 * decoders must refuse, so the fuzzer starts on both sides of every check.
 * Ops and state documents are crdt's real encodings, so seeds stay useful
 * to targets that decode them too.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crdt.h"
#include "proto.h"

static const char *out_dir;

static void
emit(const char *target, const char *name, const void *data, size_t len)
{
    char path[4096];

    snprintf(path, sizeof path, "%s/%s", out_dir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void
emit_buf(const char *target, const char *name, struct proto_buf *b)
{
    if (proto_buf_status(b) != MRD_OK) {
        fprintf(stderr, "make_corpus: %s/%s: encoding failed\n", target, name);
        exit(1);
    }
    emit(target, name, b->data, b->len);
    proto_buf_reset(b);
}

/* A frame and a few cuts of it: the cuts are the refused side. */
static void
emit_cuts(const char *target, const char *name, struct proto_buf *b)
{
    char cut_name[128];

    for (int k = 1; k <= 3; k++) {
        size_t len = b->len * (size_t) k / 4;
        snprintf(cut_name, sizeof cut_name, "%s_cut%zu", name, len);
        emit(target, cut_name, b->data, len);
    }
    emit_buf(target, name, b);
}

static void
ok(int rv)
{
    if (rv != MRD_OK) {
        fprintf(stderr, "make_corpus: encoder failed: %s\n", mrd_errname(rv));
        exit(1);
    }
}

/* A little of everything ops can do, nested maps included. */
static const struct crdt_op *
sample_ops(uint32_t *count)
{
    static struct crdt_op ops[6];
#define B(s) ((struct crdt_bytes) { (const uint8_t *) (s), sizeof(s) - 1 })
    memset(ops, 0, sizeof ops);
    ops[0] = (struct crdt_op) { .type = MRD_STATE_COUNTER,
        .kind                         = MRD_OP_INC,
        .depth                        = 1,
        .path                         = { B("visits") },
        .delta                        = 5 };
    ops[1] = (struct crdt_op) { .type = MRD_STATE_LWW,
        .kind                         = MRD_OP_SET,
        .depth                        = 1,
        .path                         = { B("name") },
        .value                        = B("alice") };
    ops[2] = (struct crdt_op) { .type = MRD_STATE_SET,
        .kind                         = MRD_OP_ADD,
        .depth                        = 1,
        .path                         = { B("tags") },
        .value                        = B("red") };
    ops[3] = (struct crdt_op) { .type = MRD_STATE_COUNTER,
        .kind                         = MRD_OP_INC,
        .depth                        = 2,
        .path                         = { B("cart"), B("apple") },
        .delta                        = -2 };
    ops[4] = (struct crdt_op) { .type = MRD_STATE_FLAG,
        .kind                         = MRD_OP_ENABLE,
        .depth                        = 1,
        .path                         = { B("vip") } };
    ops[5] = (struct crdt_op) { .type = MRD_STATE_MVREG,
        .kind                         = MRD_OP_SET,
        .depth                        = 1,
        .path                         = { B("note") },
        .value                        = B("\x00\x01") };
#undef B
    *count = 6;
    return ops;
}

/* Encoded ops into o (which must be fresh): a client's (no deps) or a
 * record's (deps {1: 3}). */
static struct proto_str
sample_ops_encode(struct proto_buf *o, bool deps)
{
    static struct crdt_dot dep[1] = { { 1, 3 } };
    struct crdt_vv         vv     = { 1, 0, dep };
    msgpack_packer         pk;
    const char            *why = NULL;
    uint32_t               n;

    const struct crdt_op *ops = sample_ops(&n);
    proto_wr_packer_init(o, &pk);
    ok(crdt_ops_encode(&pk, deps ? &vv : NULL, ops, n, &why));
    ok(proto_buf_status(o));
    return (struct proto_str) { (const char *) o->data, (uint32_t) o->len };
}

/* A version vector of two entries: {1: 5, 7: 9}. */
#define PULL_VV2                                                               \
    "\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x05"                                     \
    "\0\0\0\0\0\0\0\x07\0\0\0\0\0\0\0\x09"

static void
requests(struct proto_buf *b)
{
    static const mrd_meta_entry meta[]
        = { { "tenant", "acme" }, { "trace", "" } };
    const mrd_event_in    full  = { .type = "OrderPlaced",
            .data                         = "{\"id\":1}",
            .data_size                    = 8,
            .content_type                 = "application/json",
            .correlation_id               = "corr",
            .causation_id                 = "cause",
            .meta                         = meta,
            .meta_count                   = 2 };
    const mrd_event_in    evs[] = { full, { .type = "T" },
           { .type = "\xe6\xb3\xa8", .data = "\0\1", .data_size = 2 } };
    struct proto_read_req rr    = { .stream = { "orders", 6 }, .count = 10 };
    struct proto_log_req  lr    = { .shard = 3, .after = 100, .count = 50 };
    const char           *t     = "request_fuzz";

    ok(proto_append_req_encode(b, "s", 1, -2, NULL, 0, evs + 1, NULL, 1));
    emit_cuts(t, "append_min", b);
    ok(proto_append_req_encode(
        b, "order-1", 7, 4, "idem-key", 8, &full, NULL, 1));
    emit_cuts(t, "append_full", b);
    ok(proto_append_req_encode(b, "order-2", 7, -1, NULL, 0, evs, NULL, 3));
    emit_buf(t, "append_three", b);

    struct proto_buf       o;
    struct proto_str       ops[3] = { { NULL, 0 } };
    struct proto_state_req sr     = { .stream = { "order-1", 7 } };
    proto_buf_init(&o, PROTO_OPS_SIZE_MAX);
    ops[0] = sample_ops_encode(&o, false);
    ops[2] = ops[0];
    ok(proto_append_req_encode(b, "order-3", 7, -2, NULL, 0, evs, ops, 3));
    emit_cuts(t, "append_ops", b);
    proto_buf_fini(&o);
    ok(proto_state_req_encode(b, &sr));
    emit_cuts(t, "state", b);
    sr.field = (struct proto_str) { "cart", 4 };
    ok(proto_state_req_encode(b, &sr));
    emit_buf(t, "state_field", b);
    ok(proto_read_req_encode(b, &rr));
    emit_cuts(t, "read_forward", b);
    rr.from      = MRD_POSITION_END;
    rr.direction = MRD_BACKWARD;
    ok(proto_read_req_encode(b, &rr));
    emit_buf(t, "read_backward", b);
    rr = (struct proto_read_req) {
        .stream = { "s", 1 }, .from = 9, .count = 1, .wait_ms = 30000
    };
    ok(proto_read_req_encode(b, &rr));
    emit_buf(t, "read_wait", b);
    ok(proto_log_req_encode(b, &lr));
    emit_buf(t, "read_log", b);
    ok(proto_info_req_encode(b, "orders", 6));
    emit_buf(t, "info", b);
    proto_empty_req_encode(b, PROTO_T_NODE_INFO);
    emit_buf(t, "node_info", b);
    proto_empty_req_encode(b, PROTO_T_STATS);
    emit_buf(t, "stats", b);

    /* Node to node: PULL, with and without a version vector. */
    struct proto_pull_req pr = {
        .shard = 2, .after = 40, .count = 500, .vv = { PULL_VV2, 32 }, .from = 3
    };
    ok(proto_pull_req_encode(b, &pr));
    emit_cuts(t, "pull", b);
    pr = (struct proto_pull_req) { .shard = 0, .count = 1, .from = 1 };
    ok(proto_pull_req_encode(b, &pr));
    emit_buf(t, "pull_min", b);
    pr.region = (struct proto_str) { "eu-west", 7 };
    ok(proto_pull_req_encode(b, &pr));
    emit_buf(t, "pull_region", b);
    /* Topology mode: a skip set and a knowledge digest (opaque here). */
    pr.skip   = 0x6u;
    pr.digest = (struct proto_str) { "\x93\x01\x90\x90", 4 };
    ok(proto_pull_req_encode(b, &pr));
    emit_cuts(t, "pull_ae", b);

    /* HINT, an append with an acknowledgement level, a cursor read. */
    struct proto_hint_req hr = { .from = 2, .shards = { "\x05\x80", 2 } };
    ok(proto_hint_req_encode(b, &hr));
    emit_cuts(t, "hint", b);
    struct proto_ack ack   = { MRD_ACK_GLOBAL, 2, 5000 };
    mrd_dot          after = { 3, 17 };
    ok(proto_append_req_encode_ack(
        b, "order-4", 7, -2, "k", 1, evs + 1, NULL, 1, &ack, &after));
    emit_cuts(t, "append_ack", b);
    rr = (struct proto_read_req) { .stream = { "s", 1 },
        .from                              = 4,
        .count                             = 10,
        .wait_ms                           = 100,
        .has_cursor                        = true,
        .cursor                            = { PULL_VV2, 32 },
        .hint_node                         = 3 };
    ok(proto_read_req_encode(b, &rr));
    emit_cuts(t, "read_cursor", b);
    ok(proto_topo_req_encode(b, 3));
    emit_buf(t, "topology", b);
    ok(proto_topo_push_encode(b, (struct proto_str) { "signed-doc", 10 }));
    emit_cuts(t, "topology_push", b);
    ok(proto_swim_req_encode(b, 3, (struct proto_str) { "\x97\x01\x01", 3 }));
    emit_cuts(t, "swim", b);
    /* Operations: a fence with peers and a label, a digest under a cut. */
    struct proto_fence_req fr = { .ms = 60000,
        .clients                      = true,
        .peers = { "\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0\x03", 16 },
        .label = { "drill region-outage", 19 } };
    ok(proto_fence_req_encode(b, &fr));
    emit_cuts(t, "fence", b);
    struct proto_digest_req dr
        = { .shard = 3, .has_cut = true, .cut = { PULL_VV2, 32 } };
    ok(proto_digest_req_encode(b, &dr));
    emit_cuts(t, "digest", b);
    proto_empty_req_encode(b, PROTO_T_STATUS);
    emit_buf(t, "status", b);
}

/* Raw byte strings: the malformed shapes, written out by hand. */
struct raw {
    const char *name;
    const char *bytes;
    size_t      len;
};

#define RAW(name, s)                                                           \
    {                                                                          \
        name, s, sizeof(s) - 1                                                 \
    }

static const struct raw bad_requests[] = {
    RAW("empty", ""),
    RAW("version2", "\x93\x02\x01\x80"),
    RAW("version_only", "\x91\x07"),
    RAW("type0", "\x93\x01\x00\x80"),
    RAW("type7", "\x93\x01\x07\x80"),
    RAW("type8", "\x93\x01\x08\x80"),
    RAW("type9", "\x93\x01\x09\x80"),
    RAW("pull_from0", "\x93\x01\x08\x83\x01\x00\x03\x01\x05\x00"),
    RAW("pull_no_from", "\x93\x01\x08\x82\x01\x00\x03\x01"),
    RAW("pull_vv_short",
        "\x93\x01\x08\x84\x01\x00\x03\x01\x05\x01\x04\xc4\x0f"
        "\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0"),
    RAW("pull_vv_unsorted",
        "\x93\x01\x08\x84\x01\x00\x03\x01\x05\x01\x04\xc4\x20"
        "\0\0\0\0\0\0\0\x02\0\0\0\0\0\0\0\x01"
        "\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x01"),
    RAW("pull_vv_seq0",
        "\x93\x01\x08\x84\x01\x00\x03\x01\x05\x01\x04\xc4\x10"
        "\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\0"),
    RAW("state_no_stream", "\x93\x01\x07\x81\x02\xa1\x66"),
    RAW("state_unknown_key", "\x93\x01\x07\x82\x01\xa1s\x03\xa1\x66"),
    RAW("state_field_empty", "\x93\x01\x07\x82\x01\xa1s\x02\xa0"),
    RAW("state_field_bin", "\x93\x01\x07\x82\x01\xa1s\x02\xc4\x01\x66"),
    RAW("append_ops_empty",
        "\x93\x01\x01\x82\x01\xa1s\x04\x91\x82\x01\xa1t"
        "\x07\xc4\x00"),
    RAW("append_ops_nil",
        "\x93\x01\x01\x82\x01\xa1s\x04\x91\x82\x01\xa1t"
        "\x07\xc0"),
    RAW("short", "\x92\x01\x05"),
    RAW("long", "\x94\x01\x05\x80\xc0"),
    RAW("body_array", "\x93\x01\x05\x90"),
    RAW("trailing", "\x93\x01\x05\x80\x00"),
    RAW("array32_lie", "\xdd\xff\xff\xff\xff"),
    RAW("map32_lie", "\xdf\xff\xff\xff\xff"),
    RAW("str32_lie",
        "\x93\x01\x04\x81\x01\xdb\xff\xff\xff\xff"
        "abc"),
    RAW("bin32_lie", "\x93\x01\x01\x81\x03\xc6\xff\xff\xff\xff"),
    RAW("never_used", "\x93\x01\x05\xc1"),
    RAW("ext_body", "\x93\x01\x05\x81\x01\xd4\x01\x01"),
    RAW("deep17",
        "\x93\x01\x05\x81\x01\x91\x91\x91\x91\x91\x91\x91\x91\x91"
        "\x91\x91\x91\x91\x91\x90"),
    RAW("unknown_key", "\x93\x01\x04\x82\x01\xa1s\x02\xa1s"),
    RAW("dup_key", "\x93\x01\x04\x82\x01\xa1s\x01\xa1s"),
    RAW("key_str", "\x93\x01\x04\x81\xa1\x01\xa1s"),
    RAW("info_bad_utf8", "\x93\x01\x04\x81\x01\xa2\xc3\x28"),
    RAW("info_overlong", "\x93\x01\x04\x81\x01\xa2\xc0\xaf"),
    RAW("info_nul",
        "\x93\x01\x04\x81\x01\xa3"
        "a\0b"),
    RAW("append_no_events", "\x93\x01\x01\x82\x01\xa1s\x04\x90"),
    RAW("append_event_no_type",
        "\x93\x01\x01\x82\x01\xa1s\x04\x91\x81\x02"
        "\xc4\x01x"),
    RAW("append_meta_dup",
        "\x93\x01\x01\x82\x01\xa1s\x04\x91\x82\x01\xa1t"
        "\x06\x82\xa1k\xa0\xa1k\xa0"),
    RAW("append_expected_bad",
        "\x93\x01\x01\x83\x01\xa1s\x02\xfd\x04\x91"
        "\x81\x01\xa1t"),
    RAW("read_count0", "\x93\x01\x02\x82\x01\xa1s\x04\x00"),
    RAW("read_wait_backward",
        "\x93\x01\x02\x84\x01\xa1s\x04\x01\x03\x01"
        "\x05\x01"),
    RAW("read_count_big", "\x93\x01\x02\x82\x01\xa1s\x04\xcd\x27\x11"),
};

/* A document after one event with sample_ops, and an empty one. */
static void
state_replies(struct proto_buf *b)
{
    struct crdt_doc        doc;
    struct crdt_vv         deps;
    struct proto_buf       d;
    msgpack_packer         pk;
    enum crdt_delivery     delivery;
    struct proto_state_rep rep;
    uint32_t               n;
    const char            *t = "reply_fuzz";

    const struct crdt_op *ops = sample_ops(&n);
    crdt_doc_init(&doc);
    crdt_vv_init(&deps);
    proto_buf_init(&d, PROTO_STATE_SIZE_MAX);
    proto_wr_packer_init(&d, &pk);
    ok(crdt_doc_encode(&doc, &pk));
    ok(proto_buf_status(&d));
    rep = (struct proto_state_rep) { MRD_VERSION_NONE,
        { (const char *) d.data, (uint32_t) d.len } };
    proto_state_rep_encode(b, &rep);
    emit_buf(t, "state_empty_doc", b);
    ok(crdt_doc_apply(
        &doc, (struct crdt_dot) { 1, 1 }, 1u << 20, &deps, ops, n, &delivery));
    if (delivery != CRDT_APPLY) {
        fprintf(stderr, "make_corpus: sample ops were not applied\n");
        exit(1);
    }
    proto_buf_reset(&d);
    ok(crdt_doc_encode(&doc, &pk));
    ok(proto_buf_status(&d));
    rep = (struct proto_state_rep) { 4,
        { (const char *) d.data, (uint32_t) d.len } };
    proto_state_rep_encode(b, &rep);
    emit_cuts(t, "state", b);
    proto_buf_fini(&d);
    crdt_vv_free(&deps);
    crdt_doc_free(&doc);
}

static void
replies(struct proto_buf *b)
{
    static const struct proto_stat stats[]
        = { { "frames_in", 12 }, { "frames_bad", 1 } };
    struct proto_append_rep ar
        = { .origin = 1, .seq = 10, .version = 2, .count = 3, .hlc = 1u << 20 };
    mrd_stream_info        si = { 1, 2, 3, 4 };
    mrd_node_info          ni = { .node_id = 1,
                 .shard_count              = 16,
                 .protocol_version         = PROTO_VERSION,
                 .frame_size_max           = 1u << 24,
                 .version                  = "0.1.0" };
    struct proto_event_in  ev = { .type = { "T", 1 } };
    struct proto_buf       rec;
    struct proto_events_wr w;
    const char            *t = "reply_fuzz";

    proto_append_rep_encode(b, &ar);
    emit_cuts(t, "append", b);
    struct proto_append_rep ack = ar;
    ack.ack_asked               = true;
    ack.ack_level               = MRD_ACK_REGION;
    ack.ack_replicas            = 2;
    ack.ack_regions             = 1;
    proto_append_rep_encode(b, &ack);
    emit_buf(t, "append_ack", b);
    proto_topo_rep_encode(b, 5, (struct proto_str) { "signed-doc", 10 });
    emit_buf(t, "topology", b);
    proto_topo_push_rep_encode(b, 5);
    emit_buf(t, "topology_push", b);
    proto_info_rep_encode(b, &si);
    emit_buf(t, "info", b);
    proto_node_rep_encode(b, &ni);
    emit_buf(t, "node_info", b);
    proto_stats_rep_encode(b, stats, 2);
    emit_buf(t, "stats", b);
    static const char doc[] = "{\"node\":{\"id\":1},\"shards\":[]}";
    proto_doc_rep_encode(b, PROTO_T_STATUS, doc, sizeof doc - 1);
    emit_buf(t, "status", b);
    proto_doc_rep_encode(b, PROTO_T_FENCE, "{}", 2);
    emit_buf(t, "fence", b);
    struct proto_digest_rep dg = { .events = 12, .vv = { PULL_VV2, 32 } };
    memset(dg.sum, 0xab, sizeof dg.sum);
    proto_digest_rep_encode(b, &dg);
    emit_cuts(t, "digest", b);
    proto_reply_error(
        b, PROTO_T_APPEND, MRD_EVERSION, "wrong version", true, 7);
    emit_buf(t, "error_version", b);
    proto_reply_error(
        b, PROTO_T_READ, MRD_ENAME, "invalid stream name", false, 0);
    emit_buf(t, "error", b);
    proto_reply_error(
        b, PROTO_T_NONE, MRD_EPROTO, "frame is not an array", false, 0);
    emit_buf(t, "error_no_type", b);
    proto_reply_error(b, PROTO_T_STATS, MRD_EPROTOVERSION,
        "unsupported protocol version", true, PROTO_VERSION);
    emit_buf(t, "error_protoversion", b);
    proto_reply_error(
        b, PROTO_T_APPEND, MRD_ETYPE, "field visits holds a counter", false, 0);
    emit_buf(t, "error_type", b);
    state_replies(b);

    /* Read replies carry real records. */
    proto_buf_init(&rec, PROTO_RECORD_SIZE_MAX);
    ok(proto_record_encode(&rec, 1, 1, 1, (struct proto_str) { "s", 1 }, &ev));
    proto_events_reply_begin(b, PROTO_T_READ, 3, &w);
    proto_events_reply_add(b, &w, 0, 1, rec.data, rec.len);
    proto_events_reply_add(b, &w, 1, 2, rec.data, rec.len);
    proto_events_reply_end(b, &w);
    proto_wr_uint(b, PROTO_K_READ_NEXT);
    proto_wr_uint(b, 2);
    proto_wr_uint(b, PROTO_K_READ_VERSION);
    proto_wr_int(b, 1);
    emit_cuts(t, "read", b);
    proto_events_reply_begin(b, PROTO_T_READ_LOG, 2, &w);
    proto_events_reply_add(b, &w, 0, 7, rec.data, rec.len);
    proto_events_reply_end(b, &w);
    proto_wr_uint(b, PROTO_K_LOG_LAST_SEQ);
    proto_wr_uint(b, 7);
    emit_buf(t, "read_log", b);
    proto_events_reply_begin(b, PROTO_T_READ, 3, &w);
    proto_events_reply_end(b, &w);
    proto_wr_uint(b, PROTO_K_READ_NEXT);
    proto_wr_uint(b, 0);
    proto_wr_uint(b, PROTO_K_READ_VERSION);
    proto_wr_int(b, MRD_VERSION_NONE);
    emit_buf(t, "read_empty", b);
    proto_events_reply_begin(b, PROTO_T_READ, 4, &w);
    proto_events_reply_add(b, &w, 3, 9, rec.data, rec.len);
    proto_events_reply_end(b, &w);
    proto_wr_uint(b, PROTO_K_READ_NEXT);
    proto_wr_uint(b, 4);
    proto_wr_uint(b, PROTO_K_READ_VERSION);
    proto_wr_int(b, 7);
    proto_wr_uint(b, PROTO_K_READ_NODE);
    proto_wr_uint(b, 2);
    emit_buf(t, "read_cursor", b);
    /* PULL: events and the end with the peer's vv; a page mid-log. */
    proto_events_reply_begin(b, PROTO_T_PULL, 4, &w);
    proto_events_reply_add(b, &w, 0, 41, rec.data, rec.len);
    proto_events_reply_add(b, &w, 1, 43, rec.data, rec.len);
    proto_events_reply_end(b, &w);
    proto_pull_rep_finish(b, 43, true, PULL_VV2, 32);
    emit_cuts(t, "pull_end", b);
    proto_events_reply_begin(b, PROTO_T_PULL, 4, &w);
    proto_events_reply_add(b, &w, 0, 41, rec.data, rec.len);
    proto_events_reply_end(b, &w);
    proto_pull_rep_finish(b, 500, false, NULL, 0);
    emit_buf(t, "pull_page", b);
    /* Topology mode: blocked on an event of a skipped region, a digest. */
    proto_events_reply_begin(b, PROTO_T_PULL, PROTO_PULL_REP_KEYS_AE, &w);
    proto_events_reply_add(b, &w, 0, 41, rec.data, rec.len);
    proto_events_reply_end(b, &w);
    proto_pull_rep_finish(b, 41, false, NULL, 0);
    proto_pull_rep_finish_ae(b, true, 5, 9, "\x93\x01\x90\x90", 4);
    emit_cuts(t, "pull_blocked", b);
    proto_buf_fini(&rec);
}

static const struct raw bad_replies[] = {
    RAW("request_shape", "\x93\x01\x05\x80"),
    RAW("version2", "\x94\x02\x05\x00\x80"),
    RAW("status_big", "\x94\x01\x05\xcf\x00\x00\x00\x01\x00\x00\x00\x00\x80"),
    RAW("append_missing", "\x94\x01\x01\x00\x81\x01\x01"),
    RAW("info_version_bad",
        "\x94\x01\x04\x00\x84\x01\xc3\x02\xfe\x03\x00"
        "\x04\x00"),
    RAW("node_cluster_short",
        "\x94\x01\x05\x00\x86\x01\x01\x02\xc4\x01x\x03"
        "\x01\x04\x01\x05\x01\x06\xa0"),
    RAW("read_item_short",
        "\x94\x01\x02\x00\x83\x01\x91\x92\x00\x00\x02"
        "\x00\x03\xff"),
    RAW("read_items_lie", "\x94\x01\x02\x00\x83\x01\xdd\xff\xff\xff\xff"),
    RAW("log_with_version", "\x94\x01\x03\x00\x83\x01\x90\x02\x00\x03\xff"),
    RAW("error_unknown_key", "\x94\x01\x01\x03\x81\x03\xa0"),
    RAW("stats_not_uint", "\x94\x01\x06\x00\x81\xa1x\xa1y"),
    RAW("state_bin_empty", "\x94\x01\x07\x00\x82\x01\xff\x02\xc4\x00"),
    RAW("state_version_bad", "\x94\x01\x07\x00\x82\x01\xfe\x02\xc4\x01\x90"),
    RAW("state_missing", "\x94\x01\x07\x00\x81\x01\x00"),
    RAW("pull_vv_not_end",
        "\x94\x01\x08\x00\x84\x01\x90\x02\x01\x03\xc2\x04\xc4\x10"
        "\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x01"),
    RAW("pull_missing_vv", "\x94\x01\x08\x00\x83\x01\x90\x02\x01\x03\xc3"),
    RAW("pull_vv_zero_origin",
        "\x94\x01\x08\x00\x84\x01\x90\x02\x01\x03\xc3\x04\xc4\x10"
        "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01"),
};

/* Records whose fields cross the msgpack size classes (fixstr, str8,
 * str16; fixmap, map16; fixint to uint64), as bodies to be sealed. */
static void
record_variants(struct proto_buf *b)
{
    static char           big[1500];
    static char           meta[4096];
    struct proto_buf      m;
    struct proto_event_in ev;
    char                  name[32];

    memset(big, 'a', sizeof big);
    proto_buf_init(&m, sizeof meta);
    for (unsigned i = 0; i < 8; i++) {
        uint32_t entries = i == 7 ? MRD_META_ENTRIES_MAX : i * 2;
        proto_buf_reset(&m);
        proto_wr_map(&m, entries);
        for (uint32_t k = 0; k < entries; k++) {
            char key[3] = { (char) ('a' + k % 26), (char) ('a' + k / 26), 0 };
            proto_wr_str(&m, key, 2);
            proto_wr_str(&m, big, i * 5);
        }
        ok(proto_buf_status(&m));
        memset(&ev, 0, sizeof ev);
        ev.type         = (struct proto_str) { big, 1u + i * 30 };
        ev.data         = (struct proto_str) { big, i * 180 };
        ev.content_type = (struct proto_str) { big, i * 15 };
        ev.correlation  = (struct proto_str) { "\xe6\xb3\xa8", i % 2 ? 3 : 0 };
        ev.meta_raw
            = (struct proto_str) { (const char *) m.data, (uint32_t) m.len };
        ev.meta_count = entries;
        uint64_t n    = (uint64_t) 1 << (i * 9);
        ok(proto_record_encode(
            b, n, n + 1, n * 3, (struct proto_str) { big, 1u + i * 36 }, &ev));
        snprintf(name, sizeof name, "variant%u_body", i);
        emit("record_fuzz", name, b->data, b->len - 9);
        proto_buf_reset(b);
    }
    proto_buf_fini(&m);
}

static void
records(struct proto_buf *b)
{
    static const char     meta[] = "\x82\xa6tenant\xa4"
                                   "acme\xa1k\xa0";
    struct proto_event_in full   = { .type = { "OrderPlaced", 11 },
          .data                            = { "{\"id\":1}", 8 },
          .content_type                    = { "application/json", 16 },
          .correlation                     = { "corr", 4 },
          .causation                       = { "cause", 5 },
          .meta_raw                        = { meta, sizeof meta - 1 },
          .meta_count                      = 2 };
    struct proto_event_in min    = { .type = { "T", 1 } };
    const char           *t      = "record_fuzz";

    /* Sealed records, and their bodies for the fuzzer to seal itself. */
    ok(proto_record_encode(
        b, 7, 42, 1u << 30, (struct proto_str) { "s", 1 }, &full));
    emit(t, "full_body", b->data, b->len - 9);
    emit_buf(t, "full", b);
    ok(proto_record_encode(b, 1, 1, 1, (struct proto_str) { "x", 1 }, &min));
    emit(t, "min_body", b->data, b->len - 9);
    emit_cuts(t, "min", b);
    /* Format 2 with ops, as a node stores them: with their deps. */
    struct proto_buf o;
    proto_buf_init(&o, PROTO_OPS_SIZE_MAX);
    full.ops = sample_ops_encode(&o, true);
    ok(proto_record_encode(
        b, 1, 4, 1u << 30, (struct proto_str) { "cart-1", 6 }, &full));
    emit(t, "ops_body", b->data, b->len - 9);
    emit_cuts(t, "ops", b);
    proto_buf_fini(&o);
    /* Format 3: the first event of an append with an idempotency key. */
    struct proto_record_idem idem
        = { { "order-42", 8 }, 0x1234567890abcdefu, -1, 3 };
    ok(proto_record_encode_idem(
        b, 2, 9, 1u << 30, (struct proto_str) { "s", 1 }, &min, &idem));
    emit(t, "idem_body", b->data, b->len - 9);
    emit_cuts(t, "idem", b);
    record_variants(b);
}

static const struct raw bad_records[] = {
    RAW("format0", "\x9c\x00\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x80"),
    RAW("format1_body",
        "\x9c\x01\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x80"),
    RAW("format2", "\x9c\x02\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x80"),
    RAW("format2_nil_body",
        "\x9d\x02\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x80\xc0"),
    RAW("format3_short",
        "\x9d\x03\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x80\xc0"),
    RAW("format4",
        "\x9e\x04\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x80\xc0\xc0"),
    RAW("idem_short",
        "\x9e\x03\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x80\xc0"
        "\x93\xc4\x01k\x01\x01"),
    RAW("idem_count0",
        "\x9e\x03\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x80\xc0"
        "\x94\xc4\x01k\x01\x01\x00"),
    RAW("ops_empty",
        "\x9d\x02\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x80"
        "\xc4\x00"),
    RAW("ops_str",
        "\x9d\x02\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x80"
        "\xa1o"),
    RAW("format1_with_ops",
        "\x9d\x01\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x80"
        "\xc4\x01\x90"),
    RAW("eleven", "\x9b\x01\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0"),
    RAW("stream_empty",
        "\x9c\x01\x01\x01\x01\xa0\xa1t\xa0\xc4\x00\xa0\xa0\x80"),
    RAW("type_empty", "\x9c\x01\x01\x01\x01\xa1s\xa0\xa0\xc4\x00\xa0\xa0\x80"),
    RAW("meta_dup",
        "\x9c\x01\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x82"
        "\xa1k\xa0\xa1k\xa0"),
    RAW("meta_nested",
        "\x9c\x01\x01\x01\x01\xa1s\xa1t\xa0\xc4\x00\xa0\xa0\x81"
        "\xa1k\x80"),
    RAW("data_lie", "\x9c\x01\x01\x01\x01\xa1s\xa1t\xa0\xc6\xff\xff\xff\xff"),
    RAW("short", "\xcf\x00"),
};

static void
emit_raws(const char *target, const struct raw *raws, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        emit(target, raws[i].name, raws[i].bytes, raws[i].len);
    }
}

int
main(int argc, char **argv)
{
    struct proto_buf b;

    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    out_dir = argv[1];
    proto_buf_init(&b, MRD_FRAME_SIZE_MAX);
    requests(&b);
    emit_raws("request_fuzz", bad_requests, MRD_ARRAY_SIZE(bad_requests));
    replies(&b);
    emit_raws("reply_fuzz", bad_replies, MRD_ARRAY_SIZE(bad_replies));
    records(&b);
    emit_raws("record_fuzz", bad_records, MRD_ARRAY_SIZE(bad_records));
    proto_buf_fini(&b);
    return 0;
}
