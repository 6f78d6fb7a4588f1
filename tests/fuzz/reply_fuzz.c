/*
 * reply_fuzz.c: libFuzzer target for everything a client decodes from a
 * node: proto_reply_open, then the error body or the reply decoder of the
 * frame's type, including the iteration over read, log and PULL replies
 * (and the records inside them, through proto_record_decode).
 *
 * Oracles: an accepted reply is within the protocol's limits, and it
 * re-encodes with the node-side encoders and decodes back to the same
 * values, so the two sides agree on every message.
 */
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

static bool
str_eq(struct proto_str a, struct proto_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Re-opens what an encoder wrote; returns the body. */
static struct proto_rd
reopen(struct proto_buf *b, uint32_t type, uint32_t status)
{
    struct proto_frame f;
    const char        *why;

    CHECK(proto_buf_status(b) == MRD_OK);
    CHECK(proto_reply_open(b->data, b->len, &f, &why) == MRD_OK);
    CHECK(f.type == type && f.status == status);
    return f.body;
}

static void
fuzz_error(struct proto_rd *body, uint32_t type, uint32_t status)
{
    struct proto_str msg;
    struct proto_str msg2;
    bool             has_version;
    bool             has_version2;
    int64_t          version;
    int64_t          version2;
    const char      *why = NULL;
    struct proto_buf b;
    char             text[1025];

    if (proto_error_decode(body, &msg, &has_version, &version, &why)
        != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(msg.len < sizeof text && mrd_utf8_valid(msg.ptr, msg.len));
    if (msg.len > 0) {
        memcpy(text, msg.ptr, msg.len);
    }
    text[msg.len] = '\0';
    proto_buf_init(&b, 4096);
    proto_reply_error(&b, type, status, text, has_version, version);
    struct proto_rd rd = reopen(&b, type, status);
    CHECK(proto_error_decode(&rd, &msg2, &has_version2, &version2, &why)
        == MRD_OK);
    CHECK(str_eq(msg, msg2) && has_version == has_version2);
    CHECK(!has_version || version == version2);
    proto_buf_fini(&b);
}

static void
fuzz_append(struct proto_rd *body)
{
    struct proto_append_rep rep;
    struct proto_append_rep again;
    const char             *why = NULL;
    struct proto_buf        b;

    if (proto_append_rep_decode(body, &rep, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(rep.count >= 1 && rep.count <= MRD_APPEND_EVENTS_MAX);
    proto_buf_init(&b, 4096);
    proto_append_rep_encode(&b, &rep);
    struct proto_rd rd = reopen(&b, PROTO_T_APPEND, MRD_OK);
    CHECK(proto_append_rep_decode(&rd, &again, &why) == MRD_OK);
    CHECK(rep.origin == again.origin && rep.seq == again.seq);
    CHECK(rep.first_pos == again.first_pos && rep.version == again.version);
    CHECK(rep.count == again.count && rep.hlc == again.hlc);
    CHECK(rep.replayed == again.replayed);
    CHECK(rep.ack_asked == again.ack_asked);
    CHECK(!rep.ack_asked
        || (rep.ack_level == again.ack_level && rep.ack_level <= MRD_ACK_GLOBAL
            && rep.ack_replicas == again.ack_replicas
            && rep.ack_regions == again.ack_regions && rep.ack_replicas >= 1
            && rep.ack_regions >= 1));
    proto_buf_fini(&b);
}

/* Decodes every record of a read reply; they are untrusted too. */
static void
records_decode(const struct proto_events_rep *rep)
{
    struct proto_rd     rd;
    struct proto_str    rec;
    struct proto_record r;
    uint64_t            pos;
    uint64_t            seq;
    uint32_t            n = 0;
    const char         *why;

    proto_events_rep_begin(rep, &rd);
    while (proto_events_rep_next(&rd, &pos, &seq, &rec) == MRD_OK) {
        if (proto_record_decode(rec.ptr, rec.len, &r, &why) != MRD_OK) {
            CHECK(why != NULL);
        }
        n++;
    }
    CHECK(proto_rd_done(&rd));
    CHECK(n == rep->count);
}

static void
fuzz_events(struct proto_rd *body, uint32_t type)
{
    struct proto_events_rep rep;
    struct proto_events_rep again;
    struct proto_events_wr  w;
    struct proto_rd         rd;
    struct proto_rd         rd2;
    struct proto_str        rec;
    struct proto_str        rec2;
    uint64_t                pos, pos2, seq, seq2;
    const char             *why = NULL;
    struct proto_buf        b;

    if (proto_events_rep_decode(body, type, &rep, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(rep.count <= MRD_READ_COUNT_MAX);
    CHECK(type == PROTO_T_READ_LOG || rep.version >= MRD_VERSION_NONE);
    records_decode(&rep);
    /* Written again the way a node writes it. */
    proto_buf_init(&b, MRD_FRAME_SIZE_MAX);
    uint32_t keys = type == PROTO_T_READ ? 3u + (rep.node != 0) : 2u;
    proto_events_reply_begin(&b, type, keys, &w);
    proto_events_rep_begin(&rep, &rd);
    while (proto_events_rep_next(&rd, &pos, &seq, &rec) == MRD_OK) {
        proto_events_reply_add(&b, &w, pos, seq, rec.ptr, rec.len);
    }
    proto_events_reply_end(&b, &w);
    proto_wr_uint(&b, PROTO_K_READ_NEXT);
    proto_wr_uint(&b, rep.next);
    if (type == PROTO_T_READ) {
        proto_wr_uint(&b, PROTO_K_READ_VERSION);
        proto_wr_int(&b, rep.version);
    }
    if (rep.node != 0) {
        CHECK(type == PROTO_T_READ);
        proto_wr_uint(&b, PROTO_K_READ_NODE);
        proto_wr_uint(&b, rep.node);
    }
    rd = reopen(&b, type, MRD_OK);
    CHECK(proto_events_rep_decode(&rd, type, &again, &why) == MRD_OK);
    CHECK(again.count == rep.count && again.next == rep.next);
    CHECK(again.node == rep.node);
    CHECK(type == PROTO_T_READ_LOG || again.version == rep.version);
    proto_events_rep_begin(&rep, &rd);
    proto_events_rep_begin(&again, &rd2);
    while (proto_events_rep_next(&rd, &pos, &seq, &rec) == MRD_OK) {
        CHECK(proto_events_rep_next(&rd2, &pos2, &seq2, &rec2) == MRD_OK);
        CHECK(pos == pos2 && seq == seq2 && str_eq(rec, rec2));
    }
    CHECK(proto_events_rep_next(&rd2, &pos2, &seq2, &rec2) == MRD_ENOTFOUND);
    proto_buf_fini(&b);
}

static void
fuzz_pull(struct proto_rd *body)
{
    struct proto_pull_rep   rep;
    struct proto_pull_rep   again;
    struct proto_events_rep items = { 0 };
    struct proto_events_wr  w;
    struct proto_rd         rd;
    struct proto_rd         rd2;
    struct proto_str        rec;
    struct proto_str        rec2;
    uint64_t                pos, pos2, seq, seq2;
    const char             *why = NULL;
    struct proto_buf        b;

    if (proto_pull_rep_decode(body, &rep, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(rep.count <= MRD_READ_COUNT_MAX);
    CHECK(rep.end || rep.vv.len == 0);
    CHECK(proto_vv_check(rep.vv, NULL) == MRD_OK);
    CHECK(!(rep.blocked && rep.end));
    CHECK(rep.blocked == (rep.blocked_origin != 0));
    CHECK(rep.digest.len <= PROTO_DIGEST_SIZE_MAX);
    items.count      = rep.count;
    items.events_raw = rep.events_raw;
    records_decode(&items);
    /* Written again the way a node writes it. */
    proto_buf_init(&b, MRD_FRAME_SIZE_MAX);
    proto_events_reply_begin(&b, PROTO_T_PULL, PROTO_PULL_REP_KEYS_AE, &w);
    proto_pull_rep_begin(&rep, &rd);
    while (proto_events_rep_next(&rd, &pos, &seq, &rec) == MRD_OK) {
        proto_events_reply_add(&b, &w, pos, seq, rec.ptr, rec.len);
    }
    proto_events_reply_end(&b, &w);
    proto_pull_rep_finish(&b, rep.scanned, rep.end, rep.vv.ptr, rep.vv.len);
    proto_pull_rep_finish_ae(&b, rep.blocked, rep.blocked_origin,
        rep.blocked_seq, rep.digest.ptr, rep.digest.len);
    rd = reopen(&b, PROTO_T_PULL, MRD_OK);
    CHECK(proto_pull_rep_decode(&rd, &again, &why) == MRD_OK);
    CHECK(again.count == rep.count && again.scanned == rep.scanned);
    CHECK(again.end == rep.end && str_eq(again.vv, rep.vv));
    CHECK(again.blocked == rep.blocked && again.blocked_seq == rep.blocked_seq);
    CHECK(again.blocked_origin == rep.blocked_origin);
    CHECK(str_eq(again.digest, rep.digest));
    proto_pull_rep_begin(&rep, &rd);
    proto_pull_rep_begin(&again, &rd2);
    while (proto_events_rep_next(&rd, &pos, &seq, &rec) == MRD_OK) {
        CHECK(proto_events_rep_next(&rd2, &pos2, &seq2, &rec2) == MRD_OK);
        CHECK(pos == pos2 && seq == seq2 && str_eq(rec, rec2));
    }
    CHECK(proto_events_rep_next(&rd2, &pos2, &seq2, &rec2) == MRD_ENOTFOUND);
    proto_buf_fini(&b);
}

static void
fuzz_info(struct proto_rd *body)
{
    mrd_stream_info  info;
    mrd_stream_info  again;
    const char      *why = NULL;
    struct proto_buf b;

    if (proto_info_rep_decode(body, &info, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(info.version >= MRD_VERSION_NONE);
    proto_buf_init(&b, 4096);
    proto_info_rep_encode(&b, &info);
    struct proto_rd rd = reopen(&b, PROTO_T_INFO, MRD_OK);
    CHECK(proto_info_rep_decode(&rd, &again, &why) == MRD_OK);
    CHECK(info.exists == again.exists && info.version == again.version);
    CHECK(info.count == again.count && info.shard == again.shard);
    proto_buf_fini(&b);
}

static void
fuzz_node(struct proto_rd *body)
{
    mrd_node_info    info;
    mrd_node_info    again;
    const char      *why = NULL;
    struct proto_buf b;

    if (proto_node_rep_decode(body, &info, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(memchr(info.version, '\0', sizeof info.version) != NULL);
    CHECK(mrd_utf8_valid(info.version, strlen(info.version)));
    proto_buf_init(&b, 4096);
    proto_node_rep_encode(&b, &info);
    struct proto_rd rd = reopen(&b, PROTO_T_NODE_INFO, MRD_OK);
    CHECK(proto_node_rep_decode(&rd, &again, &why) == MRD_OK);
    CHECK(info.node_id == again.node_id);
    CHECK(memcmp(info.cluster_id, again.cluster_id, 16) == 0);
    CHECK(info.shard_count == again.shard_count);
    CHECK(info.protocol_version == again.protocol_version);
    CHECK(info.frame_size_max == again.frame_size_max);
    CHECK(strcmp(info.version, again.version) == 0);
    proto_buf_fini(&b);
}

static void
fuzz_state(struct proto_rd *body)
{
    struct proto_state_rep rep;
    struct proto_state_rep again;
    const char            *why = NULL;
    struct proto_buf       b;

    if (proto_state_rep_decode(body, &rep, &why) != MRD_OK) {
        CHECK(why != NULL);
        return;
    }
    CHECK(rep.version >= MRD_VERSION_NONE);
    CHECK(rep.state.len >= 1 && rep.state.len <= PROTO_STATE_SIZE_MAX);
    proto_buf_init(&b, MRD_FRAME_SIZE_MAX);
    proto_state_rep_encode(&b, &rep);
    struct proto_rd rd = reopen(&b, PROTO_T_STATE, MRD_OK);
    CHECK(proto_state_rep_decode(&rd, &again, &why) == MRD_OK);
    CHECK(rep.version == again.version && str_eq(rep.state, again.state));
    proto_buf_fini(&b);
}

static void
fuzz_stats(const struct proto_rd *body)
{
    static const char *names[] = { "", "a", "frames_in", "x" };
    struct proto_rd    copy    = *body;
    uint64_t           v;

    for (size_t i = 0; i < MRD_ARRAY_SIZE(names); i++) {
        int rv = proto_stats_rep_find(body, names[i], &v);
        CHECK(rv == MRD_OK || rv == MRD_ENOTFOUND || rv == MRD_EPROTO);
    }
    CHECK(copy.p == body->p && copy.end == body->end);
}

static void
fuzz_topology_rep(struct proto_rd *body, uint32_t type)
{
    struct proto_buf b;
    struct proto_str sig, sig2;
    uint64_t         version, version2;
    const char      *why = NULL;

    proto_buf_init(&b, PROTO_TOPOLOGY_SIZE_MAX + 4096);
    if (type == PROTO_T_TOPOLOGY) {
        if (proto_topo_rep_decode(body, &version, &sig, &why) != MRD_OK) {
            CHECK(why != NULL);
        } else {
            CHECK(version >= 1 && sig.len <= PROTO_TOPOLOGY_SIZE_MAX);
            proto_topo_rep_encode(&b, version, sig);
            struct proto_rd rd = reopen(&b, type, MRD_OK);
            CHECK(proto_topo_rep_decode(&rd, &version2, &sig2, &why) == MRD_OK);
            CHECK(version == version2 && str_eq(sig, sig2));
        }
    } else if (proto_topo_push_rep_decode(body, &version, &why) != MRD_OK) {
        CHECK(why != NULL);
    } else {
        CHECK(version >= 1);
        proto_topo_push_rep_encode(&b, version);
        struct proto_rd rd = reopen(&b, type, MRD_OK);
        CHECK(proto_topo_push_rep_decode(&rd, &version2, &why) == MRD_OK);
        CHECK(version == version2);
    }
    proto_buf_fini(&b);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proto_frame f;
    const char        *why = NULL;

    int rv = proto_reply_open(data, size, &f, &why);
    if (rv != MRD_OK) {
        CHECK(why != NULL);
        CHECK(rv == MRD_EPROTO || rv == MRD_EPROTOVERSION);
        return 0;
    }
    /* PROTO_T_NONE only ever comes with an error status. */
    CHECK(f.type <= PROTO_T_MAX_);
    CHECK(f.type != PROTO_T_NONE || f.status != MRD_OK);
    if (f.status != MRD_OK) {
        fuzz_error(&f.body, f.type, f.status);
        return 0;
    }
    switch (f.type) {
    case PROTO_T_APPEND:
        fuzz_append(&f.body);
        break;
    case PROTO_T_READ:
    case PROTO_T_READ_LOG:
        fuzz_events(&f.body, f.type);
        break;
    case PROTO_T_INFO:
        fuzz_info(&f.body);
        break;
    case PROTO_T_NODE_INFO:
        fuzz_node(&f.body);
        break;
    case PROTO_T_STATE:
        fuzz_state(&f.body);
        break;
    case PROTO_T_TOPOLOGY:
    case PROTO_T_TOPOLOGY_PUSH:
        fuzz_topology_rep(&f.body, f.type);
        break;
    case PROTO_T_PULL:
        fuzz_pull(&f.body);
        break;
    case PROTO_T_STATUS:
    case PROTO_T_FENCE: {
        /* A document is a bounded UTF-8 string that starts like an
         * object; what is inside is the JSON parser's to refuse. */
        struct proto_str json;
        const char      *doc_why = NULL;
        if (proto_doc_rep_decode(&f.body, &json, &doc_why) == MRD_OK) {
            CHECK(json.len >= 2 && json.len <= PROTO_DOC_SIZE_MAX);
            CHECK(json.ptr[0] == '{' && proto_rd_done(&f.body));
        } else {
            CHECK(doc_why != NULL);
        }
        break;
    }
    case PROTO_T_DIGEST: {
        struct proto_digest_rep rep;
        const char             *dig_why = NULL;
        if (proto_digest_rep_decode(&f.body, &rep, &dig_why) == MRD_OK) {
            CHECK(proto_vv_check(rep.vv, NULL) == MRD_OK);
            CHECK(proto_rd_done(&f.body));
        } else {
            CHECK(dig_why != NULL);
        }
        break;
    }
    default:
        fuzz_stats(&f.body);
        break;
    }
    return 0;
}
