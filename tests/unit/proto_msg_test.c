/*
 * proto_msg_test.c: frames and message codecs. Every message round-trips;
 * every way a message can be wrong (truncated anywhere, wrong version or
 * type, unknown, duplicate or missing keys, wrong value types, every limit
 * one past its edge, bad stream names, bad UTF-8) is refused with the right
 * code; encoders refuse what decoders would. A seeded property test
 * round-trips random appends (MRD_TEST_SEED replays a run).
 *
 * Malformed messages are built with pk(), a tiny msgpack DSL, because the
 * encoders under test refuse to produce them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "proto.h"

#define FRAME_MAX (MRD_FRAME_SIZE_MAX)

/* ---------------------------------------------------------- builders -- */

/* Packs the values fmt describes. Letters: A array header, M map header,
 * u uint, i int (each with a literal such as u12 or i-3, or else taking an
 * unsigned (A, M), uint64_t (u) or int64_t (i) argument); s str from a C
 * string; x str and b bin from (pointer, size_t); r raw bytes from
 * (pointer, size_t); T true, F false, N nil. Spaces are ignored. */
static void
pk(struct proto_buf *buf, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    for (const char *f = fmt; *f != '\0';) {
        char    c   = *f++;
        bool    lit = false;
        int64_t n   = 0;
        if (*f == '-' || (*f >= '0' && *f <= '9')) {
            char *end;
            n   = strtoll(f, &end, 10);
            f   = end;
            lit = true;
        }
        const char *p;
        size_t      len;
        switch (c) {
        case ' ':
            break;
        case 'A':
            proto_wr_array(buf, lit ? (uint32_t) n : va_arg(ap, unsigned));
            break;
        case 'M':
            proto_wr_map(buf, lit ? (uint32_t) n : va_arg(ap, unsigned));
            break;
        case 'u':
            proto_wr_uint(buf, lit ? (uint64_t) n : va_arg(ap, uint64_t));
            break;
        case 'i':
            proto_wr_int(buf, lit ? n : va_arg(ap, int64_t));
            break;
        case 's':
            p = va_arg(ap, const char *);
            proto_wr_str(buf, p, strlen(p));
            break;
        case 'x':
        case 'b':
        case 'r':
            p   = va_arg(ap, const char *);
            len = va_arg(ap, size_t);
            if (c == 'x') {
                proto_wr_str(buf, p, len);
            } else if (c == 'b') {
                proto_wr_bin(buf, p, len);
            } else {
                proto_wr_raw(buf, p, len);
            }
            break;
        case 'T':
            proto_wr_bool(buf, true);
            break;
        case 'F':
            proto_wr_bool(buf, false);
            break;
        case 'N':
            proto_wr_raw(buf, "\xc0", 1);
            break;
        default:
            fail_msg("pk: bad format letter '%c'", c);
        }
    }
    va_end(ap);
    assert_int_equal(proto_buf_status(buf), MRD_OK);
}

static void
req_begin(struct proto_buf *buf, uint32_t type)
{
    proto_buf_reset(buf);
    proto_request_begin(buf, type);
}

static void
rep_begin(struct proto_buf *buf, uint32_t type)
{
    proto_buf_reset(buf);
    proto_reply_begin(buf, type, MRD_OK);
}

/* A buffer of n copies of c, for strings at and past their limits. */
static char *
fill(size_t n, char c)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    memset(p, c, n);
    p[n] = '\0';
    return p;
}

/* ---------------------------------------------------------- decoders -- */

/* Iterates an append's events and their metadata to the end. */
static void
append_walk(const struct proto_append_req *req)
{
    struct proto_rd       rd;
    struct proto_rd       mrd;
    struct proto_event_in ev;
    struct proto_str      k;
    struct proto_str      v;
    uint32_t              n = 0;
    int                   rv;

    proto_events_begin(req, &rd);
    for (;;) {
        rv = proto_events_next(&rd, &ev);
        if (rv != MRD_OK) {
            break;
        }
        uint32_t m = 0;
        n++;
        proto_meta_begin(&ev.meta_raw, &mrd);
        while (proto_meta_next(&mrd, &k, &v) == MRD_OK) {
            m++;
        }
        assert_int_equal(m, ev.meta_count);
        assert_true(proto_rd_done(&mrd));
    }
    assert_int_equal(rv, MRD_ENOTFOUND);
    assert_int_equal(n, req->event_count);
}

/* Decodes a request body the way a node would. */
static int
req_body(uint32_t type, struct proto_rd *body, const char **why)
{
    struct proto_append_req app;
    struct proto_read_req   rr;
    struct proto_log_req    lr;
    struct proto_state_req  sr;
    struct proto_pull_req   pr;
    struct proto_hint_req   hr;
    uint64_t                have;
    struct proto_str        stream;
    int                     rv;

    switch (type) {
    case PROTO_T_APPEND:
        rv = proto_append_req_decode(body, &app, why);
        if (rv == MRD_OK) {
            append_walk(&app);
        }
        break;
    case PROTO_T_READ:
        rv = proto_read_req_decode(body, &rr, why);
        break;
    case PROTO_T_READ_LOG:
        rv = proto_log_req_decode(body, &lr, why);
        break;
    case PROTO_T_INFO:
        rv = proto_info_req_decode(body, &stream, why);
        break;
    case PROTO_T_STATE:
        rv = proto_state_req_decode(body, &sr, why);
        break;
    case PROTO_T_PULL:
        rv = proto_pull_req_decode(body, &pr, why);
        break;
    case PROTO_T_HINT:
        rv = proto_hint_req_decode(body, &hr, why);
        break;
    case PROTO_T_TOPOLOGY:
        rv = proto_topo_req_decode(body, &have, why);
        break;
    case PROTO_T_TOPOLOGY_PUSH:
        rv = proto_topo_push_decode(body, &stream, why);
        break;
    case PROTO_T_SWIM:
        rv = proto_swim_req_decode(body, &have, &stream, why);
        break;
    case PROTO_T_FENCE: {
        struct proto_fence_req fr;
        rv = proto_fence_req_decode(body, &fr, why);
        break;
    }
    case PROTO_T_DIGEST: {
        struct proto_digest_req dr;
        rv = proto_digest_req_decode(body, &dr, why);
        break;
    }
    default:
        rv = proto_empty_req_decode(body, why);
        break;
    }
    if (rv == MRD_OK) {
        assert_true(proto_rd_done(body));
    }
    return rv;
}

static int
req_decode(const void *data, size_t len, const char **why)
{
    struct proto_frame f;
    int                rv = proto_request_open(data, len, &f, why);
    if (rv != MRD_OK) {
        return rv;
    }
    return req_body(f.type, &f.body, why);
}

static int
events_walk(struct proto_rd *body, uint32_t type, const char **why)
{
    struct proto_events_rep rep;
    struct proto_rd         rd;
    struct proto_str        rec;
    uint64_t                pos;
    uint64_t                seq;
    uint32_t                n = 0;

    int rv = proto_events_rep_decode(body, type, &rep, why);
    if (rv != MRD_OK) {
        return rv;
    }
    proto_events_rep_begin(&rep, &rd);
    while (proto_events_rep_next(&rd, &pos, &seq, &rec) == MRD_OK) {
        n++;
    }
    assert_int_equal(n, rep.count);
    assert_true(proto_rd_done(&rd));
    return MRD_OK;
}

static int
pull_walk(struct proto_rd *body, const char **why)
{
    struct proto_pull_rep rep;
    struct proto_rd       rd;
    struct proto_str      rec;
    uint64_t              pos;
    uint64_t              seq;
    uint32_t              n = 0;

    int rv = proto_pull_rep_decode(body, &rep, why);
    if (rv != MRD_OK) {
        return rv;
    }
    proto_pull_rep_begin(&rep, &rd);
    while (proto_events_rep_next(&rd, &pos, &seq, &rec) == MRD_OK) {
        n++;
    }
    assert_int_equal(n, rep.count);
    assert_true(proto_rd_done(&rd));
    return MRD_OK;
}

/* Decodes a reply body the way a client would. */
static int
rep_body(
    uint32_t type, uint32_t status, struct proto_rd *body, const char **why)
{
    struct proto_append_rep ar;
    struct proto_state_rep  sr;
    mrd_stream_info         si;
    mrd_node_info           ni;
    struct proto_str        msg;
    bool                    has_version;
    int64_t                 version;
    uint64_t                v;
    int                     rv;

    if (status != MRD_OK) {
        return proto_error_decode(body, &msg, &has_version, &version, why);
    }
    switch (type) {
    case PROTO_T_APPEND:
        return proto_append_rep_decode(body, &ar, why);
    case PROTO_T_READ:
    case PROTO_T_READ_LOG:
        return events_walk(body, type, why);
    case PROTO_T_INFO:
        return proto_info_rep_decode(body, &si, why);
    case PROTO_T_NODE_INFO:
        return proto_node_rep_decode(body, &ni, why);
    case PROTO_T_STATE:
        return proto_state_rep_decode(body, &sr, why);
    case PROTO_T_PULL:
        return pull_walk(body, why);
    default:
        rv = proto_stats_rep_find(body, "x", &v);
        if (rv == MRD_EPROTO && why != NULL) {
            *why = "stats reply is not str -> uint";
        }
        return rv == MRD_ENOTFOUND ? MRD_OK : rv;
    }
}

static int
rep_decode(const void *data, size_t len, const char **why)
{
    struct proto_frame f;
    int                rv = proto_reply_open(data, len, &f, why);
    if (rv != MRD_OK) {
        return rv;
    }
    return rep_body(f.type, f.status, &f.body, why);
}

/* Decodes buf as a request (or reply) and checks the code and reason. */
static void
expect_at(
    struct proto_buf *buf, bool reply, int code, const char *reason, int line)
{
    const char *why = NULL;
    int         rv  = reply ? rep_decode(buf->data, buf->len, &why)
                            : req_decode(buf->data, buf->len, &why);

    assert_int_equal(proto_buf_status(buf), MRD_OK);
    if (rv != code
        || (reason != NULL && (why == NULL || strcmp(why, reason) != 0))) {
        fail_msg("line %d: got %s (%s), want %s (%s)", line, mrd_errname(rv),
            why != NULL ? why : "-", mrd_errname(code),
            reason != NULL ? reason : "-");
    }
    if (rv != MRD_OK && why == NULL) {
        fail_msg("line %d: no reason given", line);
    }
    proto_buf_reset(buf);
}
#define EXPECT_REQ(buf, code, reason)                                          \
    expect_at((buf), false, (code), (reason), __LINE__)
#define EXPECT_REP(buf, code, reason)                                          \
    expect_at((buf), true, (code), (reason), __LINE__)

/* ------------------------------------------------------------ frames -- */

static void
test_frame_header(void **state)
{
    struct proto_buf   b;
    struct proto_frame f;
    const char        *why = NULL;
    uint32_t           n;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    proto_empty_req_encode(&b, PROTO_T_NODE_INFO);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "\x93\x01\x05\x80", 4);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.version, PROTO_VERSION);
    assert_int_equal(f.type, PROTO_T_NODE_INFO);
    /* The body reader stands on the map header. */
    assert_int_equal(proto_rd_map(&f.body, &n), MRD_OK);
    assert_int_equal(n, 0);
    /* A request is not a reply, nor the other way round. */
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_EPROTO);
    proto_buf_reset(&b);
    proto_reply_begin(&b, PROTO_T_STATS, MRD_EBUSY);
    pk(&b, "M0");
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.status, MRD_EBUSY);
    assert_int_equal(f.type, PROTO_T_STATS);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_EPROTO);
    proto_buf_fini(&b);
}

static void
test_frame_version(void **state)
{
    struct proto_buf   b;
    struct proto_frame f;
    const char        *why = NULL;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    pk(&b, "A3 u2 u5 M0");
    assert_int_equal(
        proto_request_open(b.data, b.len, &f, &why), MRD_EPROTOVERSION);
    assert_int_equal(f.version, 2);
    assert_string_equal(why, "unsupported protocol version");
    /* Another version may have another shape: only [version, ...] counts. */
    proto_buf_reset(&b);
    pk(&b, "A1 u7");
    assert_int_equal(
        proto_request_open(b.data, b.len, &f, &why), MRD_EPROTOVERSION);
    assert_int_equal(f.version, 7);
    proto_buf_reset(&b);
    pk(&b, "A5 u0 N N N N");
    assert_int_equal(
        proto_reply_open(b.data, b.len, &f, &why), MRD_EPROTOVERSION);
    assert_int_equal(f.version, 0);
    proto_buf_reset(&b);
    pk(&b, "A3 u M0 M0", (uint64_t) 1 << 40);
    assert_int_equal(
        proto_request_open(b.data, b.len, &f, &why), MRD_EPROTOVERSION);
    assert_int_equal(f.version, UINT32_MAX);
    proto_buf_reset(&b);
    pk(&b, "A3 s u5 M0", "1");
    EXPECT_REQ(&b, MRD_EPROTO, "frame version is not a uint");
    pk(&b, "A3 i-1 u5 M0");
    EXPECT_REQ(&b, MRD_EPROTO, "frame version is not a uint");
    proto_buf_fini(&b);
}

static void
test_frame_shape(void **state)
{
    struct proto_buf b;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    pk(&b, "A0");
    EXPECT_REQ(&b, MRD_EPROTO, "frame is not an array");
    pk(&b, "M1 u1 u5");
    EXPECT_REQ(&b, MRD_EPROTO, "frame is not an array");
    pk(&b, "u1");
    EXPECT_REQ(&b, MRD_EPROTO, "frame is not an array");
    pk(&b, "A2 u1 u5");
    EXPECT_REQ(&b, MRD_EPROTO, "frame has the wrong length");
    pk(&b, "A4 u1 u5 M0 N");
    EXPECT_REQ(&b, MRD_EPROTO, "frame has the wrong length");
    pk(&b, "A3 u1 u5 M0");
    EXPECT_REP(&b, MRD_EPROTO, "frame has the wrong length");
    pk(&b, "A3 u1 u0 M0");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown message type");
    /* Type 0 (PROTO_T_NONE): only in an error reply to a request too
     * broken to have a type. */
    pk(&b, "A4 u1 u0 u0 M0");
    EXPECT_REP(&b, MRD_EPROTO, "success reply without a type");
    pk(&b, "A4 u1 u0 u3 M1 u1 s", "frame is not an array");
    EXPECT_REP(&b, MRD_OK, NULL);
    pk(&b, "A4 u1 u16 u3 M0");
    EXPECT_REP(&b, MRD_EPROTO, "unknown message type");
    pk(&b, "A3 u1 u16 M0");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown message type");
    pk(&b, "A3 u1 s M0", "5");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown message type");
    pk(&b, "A3 u1 i-5 M0");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown message type");
    pk(&b, "A3 u1 u5 A0");
    EXPECT_REQ(&b, MRD_EPROTO, "message body is not a map");
    pk(&b, "A3 u1 u5 N");
    EXPECT_REQ(&b, MRD_EPROTO, "message body is not a map");
    pk(&b, "A4 u1 u5 u M0", (uint64_t) UINT32_MAX + 1);
    EXPECT_REP(&b, MRD_EPROTO, "reply status is not a uint32");
    pk(&b, "A4 u1 u5 i-1 M0");
    EXPECT_REP(&b, MRD_EPROTO, "reply status is not a uint32");
    pk(&b, "A4 u1 u5 s M0", "0");
    EXPECT_REP(&b, MRD_EPROTO, "reply status is not a uint32");
    /* Not one value within the limits: all refused before the header. */
    const char *walk = "frame is not one well-formed msgpack value within "
                       "the limits";
    pk(&b, "A3 u1 u5 M0 N");
    EXPECT_REQ(&b, MRD_EPROTO, walk);
    pk(&b, "r", "\xdd\xff\xff\xff\xff", (size_t) 5);
    EXPECT_REQ(&b, MRD_EPROTO, walk);
    pk(&b, "A3 u1 u5 M1 u1 r", "\xd4\x00\x00", (size_t) 3);
    EXPECT_REQ(&b, MRD_EPROTO, walk);
    pk(&b, "A3 u1 u4 M1 u1 r", "\xdb\xff\xff\xff\xff", (size_t) 5);
    EXPECT_REQ(&b, MRD_EPROTO, walk);
    /* Depth: the frame is 1, the body 2, then 14 more arrays are fine. */
    pk(&b, "A3 u1 u5 M1 u1 A1A1A1A1A1A1A1A1A1A1A1A1A1A0");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    pk(&b, "A3 u1 u5 M1 u1 A1A1A1A1A1A1A1A1A1A1A1A1A1A1A0");
    EXPECT_REQ(&b, MRD_EPROTO, walk);
    proto_buf_reset(&b);
    EXPECT_REQ(&b, MRD_EPROTO, walk); /* empty */
    proto_buf_fini(&b);
}

/* ------------------------------------------------------------ append -- */

static void
test_append_golden(void **state)
{
    struct proto_buf        b;
    struct proto_frame      f;
    struct proto_append_req req;
    const char             *why = NULL;
    const mrd_event_in      ev  = { .type = "t" };
    (void) state;

    /* Optional keys are left out: [1, 1, {1: "s", 4: [{1: "t"}]}]. */
    proto_buf_init(&b, FRAME_MAX);
    assert_int_equal(proto_append_req_encode(
                         &b, "s", 1, MRD_EXPECT_ANY, NULL, 0, &ev, NULL, 1),
        MRD_OK);
    assert_int_equal(b.len, 13);
    assert_memory_equal(
        b.data, "\x93\x01\x01\x82\x01\xa1s\x04\x91\x81\x01\xa1t", 13);
    /* Absent keys decode as their defaults. */
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_append_req_decode(&f.body, &req, &why), MRD_OK);
    assert_int_equal(req.expected, MRD_EXPECT_ANY);
    assert_int_equal(req.idem_key.len, 0);
    proto_buf_fini(&b);
}

static void
check_str(struct proto_str s, const char *want)
{
    size_t len = want == NULL ? 0 : strlen(want);
    assert_int_equal(s.len, len);
    if (len > 0) {
        assert_memory_equal(s.ptr, want, len);
    }
}

static void
test_append_round_trip(void **state)
{
    static const mrd_meta_entry meta[] = { { "tenant", "acme" },
        { "k\xc3\xa9", "" }, { "trace", "00-abc-01" } };
    const mrd_event_in          evs[]  = {
                  { .type             = "OrderPlaced",
                      .data           = "{\"n\":1}",
                      .data_size      = 7,
                      .content_type   = "application/json",
                      .correlation_id = "corr-1",
                      .causation_id   = "cause-1",
                      .meta           = meta,
                      .meta_count     = 3 },
                  { .type = "\xe6\xb3\xa8", .data = "\0\1\2", .data_size = 3 },
    };
    struct proto_buf        b;
    struct proto_frame      f;
    struct proto_append_req req;
    struct proto_event_in   ev;
    struct proto_rd         rd;
    struct proto_rd         mrd;
    struct proto_str        k;
    struct proto_str        v;
    const char             *why = NULL;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    assert_int_equal(
        proto_append_req_encode(&b, "order-1", 7, 41, "idem", 4, evs, NULL, 2),
        MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_APPEND);
    assert_int_equal(proto_append_req_decode(&f.body, &req, &why), MRD_OK);
    assert_true(proto_rd_done(&f.body));
    check_str(req.stream, "order-1");
    assert_int_equal(req.expected, 41);
    check_str(req.idem_key, "idem");
    assert_int_equal(req.event_count, 2);
    assert_int_equal(req.events_size, req.events_raw.len);
    assert_true(req.events_raw.ptr > (const char *) b.data);

    proto_events_begin(&req, &rd);
    assert_int_equal(proto_events_next(&rd, &ev), MRD_OK);
    check_str(ev.type, "OrderPlaced");
    check_str(ev.data, "{\"n\":1}");
    check_str(ev.content_type, "application/json");
    check_str(ev.correlation, "corr-1");
    check_str(ev.causation, "cause-1");
    assert_int_equal(ev.meta_count, 3);
    proto_meta_begin(&ev.meta_raw, &mrd);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(proto_meta_next(&mrd, &k, &v), MRD_OK);
        check_str(k, meta[i].key);
        check_str(v, meta[i].value);
    }
    assert_int_equal(proto_meta_next(&mrd, &k, &v), MRD_ENOTFOUND);
    assert_int_equal(proto_events_next(&rd, &ev), MRD_OK);
    check_str(ev.type, "\xe6\xb3\xa8");
    assert_int_equal(ev.data.len, 3);
    assert_memory_equal(ev.data.ptr, "\0\1\2", 3);
    check_str(ev.content_type, NULL);
    assert_int_equal(ev.meta_raw.len, 0);
    assert_int_equal(ev.meta_count, 0);
    assert_int_equal(proto_events_next(&rd, &ev), MRD_ENOTFOUND);
    assert_int_equal(proto_events_next(&rd, &ev), MRD_ENOTFOUND);
    proto_buf_fini(&b);
}

static void
test_append_keys(void **state)
{
    struct proto_buf b;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M2 u1 s u4 A1 M1 u1 s", "s", "t");
    EXPECT_REQ(&b, MRD_OK, NULL);
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M1 u4 A1 M1 u1 s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "append has no stream");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M1 u1 s", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "append has no events");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M0");
    EXPECT_REQ(&b, MRD_EPROTO, NULL);
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u9 N", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    /* After (session order): [origin, seq], both >= 1. */
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u8 A2 u3 u17", "s", "t");
    EXPECT_REQ(&b, MRD_OK, NULL);
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u8 N", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "after is not [origin, seq]");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u8 A1 u3", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "after is not [origin, seq]");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u8 A3 u3 u17 u1", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "after is not [origin, seq]");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u8 A2 u0 u17", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "after has a zero origin or seq");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u8 A2 u3 u0", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "after has a zero origin or seq");
    /* Acknowledgement keys: a level of 1 or 2, a count and a wait in
     * range, and the count or wait only with a level. */
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u5 N", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "ack field is not a uint");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u5 u3", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "ack level is not 1 or 2");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u5 u0", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "ack level is not 1 or 2");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M4 u1 s u4 A1 M1 u1 s u5 u1 u6 u0", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "ack count is not 1..MRD_ACK_COUNT_MAX");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M4 u1 s u4 A1 M1 u1 s u5 u1 u6 u65", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "ack count is not 1..MRD_ACK_COUNT_MAX");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M4 u1 s u4 A1 M1 u1 s u5 u2 u7 u60001", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "ack wait is not 1..MRD_ACK_WAIT_MS_MAX");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u6 u2", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "ack count or wait without a level");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M5 u1 s u4 A1 M1 u1 s u5 u2 u6 u3 u7 u100", "s", "t");
    EXPECT_REQ(&b, MRD_OK, NULL);
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u0 N u1 s u4 A1 M1 u1 s", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u N", "s", "t", (uint64_t) 1 << 33);
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 s N u1 s u4 A1 M1 u1 s", "1", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "map key is not an unsigned int");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s i-1 N u4 A1 M1 u1 s", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "map key is not an unsigned int");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u1 s u4 A1 M1 u1 s", "s", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "duplicate key");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u4 A1 M1 u1 s u4 A1 M1 u1 s", "s", "t", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "duplicate key");
    /* A signed encoding of a key is still the key. */
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M2 r s u4 A1 M1 u1 s", "\xd0\x01", (size_t) 2, "s", "t");
    EXPECT_REQ(&b, MRD_OK, NULL);
    proto_buf_fini(&b);
}

static void
test_append_fields(void **state)
{
    struct proto_buf b;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M2 u1 b u4 A1 M1 u1 s", "s", (size_t) 1, "t");
    EXPECT_REQ(&b, MRD_EPROTO, "stream is not a string");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u2 s u4 A1 M1 u1 s", "s", "1", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "expected version is not int");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u2 u u4 A1 M1 u1 s", "s", (uint64_t) INT64_MAX + 1, "t");
    EXPECT_REQ(&b, MRD_EPROTO, "expected version is not int");
    static const int64_t bad_expected[] = { -3, -5, INT64_MIN };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(bad_expected); i++) {
        req_begin(&b, PROTO_T_APPEND);
        pk(&b, "M3 u1 s u2 i u4 A1 M1 u1 s", "s", bad_expected[i], "t");
        EXPECT_REQ(&b, MRD_EPROTO, "invalid expected version");
    }
    static const int64_t good_expected[] = { MRD_EXPECT_ANY,
        MRD_EXPECT_NO_STREAM, MRD_EXPECT_EXISTS, 0, 1, INT64_MAX };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(good_expected); i++) {
        req_begin(&b, PROTO_T_APPEND);
        pk(&b, "M3 u1 s u2 i u4 A1 M1 u1 s", "s", good_expected[i], "t");
        EXPECT_REQ(&b, MRD_OK, NULL);
    }
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u3 s u4 A1 M1 u1 s", "s", "key", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "idempotency key is not bin");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u3 b u4 A1 M1 u1 s", "s", "", (size_t) 0, "t");
    EXPECT_REQ(&b, MRD_EPROTO, "idempotency key is empty");
    char *key = fill(MRD_IDEMPOTENCY_KEY_SIZE_MAX + 1, 'k');
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u3 b u4 A1 M1 u1 s", "s", key,
        (size_t) MRD_IDEMPOTENCY_KEY_SIZE_MAX, "t");
    EXPECT_REQ(&b, MRD_OK, NULL);
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M3 u1 s u3 b u4 A1 M1 u1 s", "s", key,
        (size_t) MRD_IDEMPOTENCY_KEY_SIZE_MAX + 1, "t");
    EXPECT_REQ(&b, MRD_ETOOBIG, NULL);
    free(key);
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M2 u1 s u4 M1 u1 s", "s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "events is not an array");
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M2 u1 s u4 A0", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "append has no events");
    proto_buf_fini(&b);
}

/* An append of `count` minimal events. */
static void
append_n(struct proto_buf *b, unsigned count)
{
    req_begin(b, PROTO_T_APPEND);
    pk(b, "M2 u1 s u4 A", "s", count);
    for (unsigned i = 0; i < count; i++) {
        pk(b, "M1 u1 s", "t");
    }
}

static void
test_append_event_count(void **state)
{
    struct proto_buf b;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    append_n(&b, 1);
    EXPECT_REQ(&b, MRD_OK, NULL);
    append_n(&b, MRD_APPEND_EVENTS_MAX);
    EXPECT_REQ(&b, MRD_OK, NULL);
    append_n(&b, MRD_APPEND_EVENTS_MAX + 1);
    EXPECT_REQ(
        &b, MRD_ETOOBIG, "append has more than MRD_APPEND_EVENTS_MAX events");
    proto_buf_fini(&b);
}

/* Starts an append with one event: the caller packs the event. */
static void
append_one(struct proto_buf *b)
{
    req_begin(b, PROTO_T_APPEND);
    pk(b, "M2 u1 s u4 A1", "s");
}

static void
test_event_keys(void **state)
{
    struct proto_buf b;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    append_one(&b);
    pk(&b, "M1 u2 b", "d", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "event type is missing");
    append_one(&b);
    pk(&b, "M0");
    EXPECT_REQ(&b, MRD_EPROTO, "event type is missing");
    append_one(&b);
    pk(&b, "A1 s", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "event is not a map");
    append_one(&b);
    pk(&b, "M2 u1 s u8 N", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    append_one(&b);
    pk(&b, "M2 u1 s u7 N", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "event ops are not bin");
    append_one(&b);
    pk(&b, "M2 u1 s u7 x", "t", "o", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "event ops are not bin");
    append_one(&b);
    pk(&b, "M2 u1 s u7 b", "t", "", (size_t) 0);
    EXPECT_REQ(&b, MRD_EPROTO, "event ops are empty");
    append_one(&b);
    pk(&b, "M2 u1 s u7 b", "t", "\xc0", (size_t) 1);
    EXPECT_REQ(&b, MRD_OK, NULL); /* proto does not read the ops */
    append_one(&b);
    pk(&b, "M3 u1 s u7 b u7 b", "t", "o", (size_t) 1, "o", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "duplicate key");
    append_one(&b);
    pk(&b, "M2 u1 s u0 N", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    append_one(&b);
    pk(&b, "M2 u1 s u1 s", "t", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "duplicate key");
    append_one(&b);
    pk(&b, "M3 u1 s u2 b u2 b", "t", "d", (size_t) 1, "d", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "duplicate key");
    proto_buf_fini(&b);
}

static void
test_event_types(void **state)
{
    struct proto_buf b;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    append_one(&b);
    pk(&b, "M1 u1 b", "t", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "event type is not a string");
    append_one(&b);
    pk(&b, "M2 u1 s u2 s", "t", "d");
    EXPECT_REQ(&b, MRD_EPROTO, "event data is not bin");
    append_one(&b);
    pk(&b, "M2 u1 s u3 u5", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "content type is not a string");
    append_one(&b);
    pk(&b, "M2 u1 s u4 T", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "correlation id is not a string");
    append_one(&b);
    pk(&b, "M2 u1 s u5 N", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "causation id is not a string");
    append_one(&b);
    pk(&b, "M2 u1 s u6 A0", "t");
    EXPECT_REQ(&b, MRD_EPROTO, "meta is not a map");
    append_one(&b);
    pk(&b, "M2 u1 s u6 M1 u1 s", "t", "v");
    EXPECT_REQ(&b, MRD_EPROTO, "meta is not str -> str");
    append_one(&b);
    pk(&b, "M2 u1 s u6 M1 s M0", "t", "k");
    EXPECT_REQ(&b, MRD_EPROTO, "meta is not str -> str");
    append_one(&b);
    pk(&b, "M2 u1 s u6 M1 s b", "t", "k", "v", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "meta is not str -> str");
    append_one(&b);
    pk(&b, "M2 u1 s u6 M2 s s s s", "t", "k", "a", "k", "b");
    EXPECT_REQ(&b, MRD_EPROTO, "duplicate meta key");
    append_one(&b);
    pk(&b, "M2 u1 s u6 M1 s s", "t", "", "v");
    EXPECT_REQ(&b, MRD_EPROTO, "meta key is empty or not valid UTF-8");
    append_one(&b);
    pk(&b, "M2 u1 s u6 M1 s s", "t", "k", "");
    EXPECT_REQ(&b, MRD_OK, NULL);
    append_one(&b);
    pk(&b, "M2 u1 s u6 M0", "t");
    EXPECT_REQ(&b, MRD_OK, NULL);
    append_one(&b);
    pk(&b, "M6 u1 s u2 b u3 s u4 s u5 s u6 M1 s s", "t", "", (size_t) 0, "", "",
        "", "k", "v");
    EXPECT_REQ(&b, MRD_OK, NULL);
    append_one(&b);
    pk(&b, "M1 u1 s", "");
    EXPECT_REQ(&b, MRD_EPROTO, "event type is empty or not valid UTF-8");
    /* The second event is checked as hard as the first. */
    req_begin(&b, PROTO_T_APPEND);
    pk(&b, "M2 u1 s u4 A2 M1 u1 s M1 u1 s", "s", "t", "");
    EXPECT_REQ(&b, MRD_EPROTO, "event type is empty or not valid UTF-8");
    proto_buf_fini(&b);
}

/* proto_events_next trusts the decoder's validation but stays memory-safe
 * on bytes that never went through it. */
static void
test_events_next_untrusted(void **state)
{
    struct proto_append_req req;
    struct proto_event_in   ev;
    struct proto_rd         rd;
    struct proto_buf        b;
    (void) state;

    memset(&req, 0, sizeof req);
    proto_buf_init(&b, FRAME_MAX);
    pk(&b, "M1 u2 b", "", (size_t) 0); /* no type */
    pk(&b, "M2 u1 s u6 M", "t", (unsigned) MRD_META_ENTRIES_MAX + 1);
    for (unsigned i = 0; i <= MRD_META_ENTRIES_MAX; i++) {
        pk(&b, "s s", "k", "v");
    }
    size_t second = 4;
    for (size_t cut = 0; cut <= b.len; cut++) {
        uint8_t *raw = malloc(cut + 1);
        assert_non_null(raw);
        memcpy(raw, b.data, cut);
        req.events_raw.ptr = (const char *) raw;
        req.events_raw.len = (uint32_t) cut;
        proto_events_begin(&req, &rd);
        const uint8_t *at = rd.p;
        int            rv = proto_events_next(&rd, &ev);
        assert_int_equal(rv, cut == 0 ? MRD_ENOTFOUND : MRD_EPROTO);
        assert_ptr_equal(rd.p, at);
        if (cut > second) {
            proto_rd_init(&rd, raw + second, cut - second);
            assert_int_equal(proto_events_next(&rd, &ev), MRD_EPROTO);
        }
        free(raw);
    }
    proto_buf_fini(&b);
}

/* Strings that are not valid UTF-8, or hold a NUL. */
static const struct {
    const char *s;
    size_t      len;
} bad_utf8[] = {
    { "\xc3\x28", 2 }, /* bad continuation */
    { "\xc0\xaf", 2 }, /* overlong */
    { "\xed\xa0\x80", 3 }, /* surrogate */
    { "a\0b", 3 }, /* NUL */
    { "\xff", 1 }, { "ab\xe2\x82", 4 }, /* truncated */
};

static void
test_event_limits(void **state)
{
    static const struct {
        uint64_t key;
        size_t   max;
    } texts[] = {
        { PROTO_K_EV_TYPE, MRD_EVENT_TYPE_SIZE_MAX },
        { PROTO_K_EV_CONTENT_TYPE, MRD_CONTENT_TYPE_SIZE_MAX },
        { PROTO_K_EV_CORRELATION, MRD_ID_SIZE_MAX },
        { PROTO_K_EV_CAUSATION, MRD_ID_SIZE_MAX },
    };
    struct proto_buf b;
    char            *big = fill(MRD_EVENT_DATA_SIZE_MAX + 1, 'a');
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    for (size_t i = 0; i < MRD_ARRAY_SIZE(texts); i++) {
        const char *head = texts[i].key == PROTO_K_EV_TYPE ? "M1" : "M2 u1 s";
        for (size_t extra = 0; extra <= 1; extra++) {
            append_one(&b);
            pk(&b, head, "t");
            pk(&b, "u x", texts[i].key, big, texts[i].max + extra);
            EXPECT_REQ(&b, extra == 0 ? MRD_OK : MRD_ETOOBIG, NULL);
        }
        for (size_t j = 0; j < MRD_ARRAY_SIZE(bad_utf8); j++) {
            append_one(&b);
            pk(&b, head, "t");
            pk(&b, "u x", texts[i].key, bad_utf8[j].s, bad_utf8[j].len);
            EXPECT_REQ(&b, MRD_EPROTO, NULL);
        }
    }
    append_one(&b);
    pk(&b, "M2 u1 s u2 b", "t", big, (size_t) MRD_EVENT_DATA_SIZE_MAX);
    EXPECT_REQ(&b, MRD_OK, NULL);
    append_one(&b);
    pk(&b, "M2 u1 s u2 b", "t", big, (size_t) MRD_EVENT_DATA_SIZE_MAX + 1);
    EXPECT_REQ(
        &b, MRD_ETOOBIG, "event data is larger than MRD_EVENT_DATA_SIZE_MAX");
    /* Bytes that are not UTF-8 are fine in data. */
    append_one(&b);
    pk(&b, "M2 u1 s u2 b", "t", "\xff\0", (size_t) 2);
    EXPECT_REQ(&b, MRD_OK, NULL);
    free(big);
    proto_buf_fini(&b);
}

/* An event whose meta has `count` entries k0, k1, ... of the given sizes. */
static void
append_meta(
    struct proto_buf *b, unsigned count, size_t key_len, size_t value_len)
{
    char *key   = fill(key_len, 'k');
    char *value = fill(value_len, 'v');

    append_one(b);
    pk(b, "M2 u1 s u6 M", "t", count);
    for (unsigned i = 0; i < count; i++) {
        /* Unique keys: the first bytes count up. */
        if (key_len >= 2) {
            key[0] = (char) ('a' + i / 26);
            key[1] = (char) ('a' + i % 26);
        }
        pk(b, "x x", key, key_len, value, value_len);
    }
    free(key);
    free(value);
}

static void
test_meta_limits(void **state)
{
    struct proto_buf b;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    append_meta(&b, MRD_META_ENTRIES_MAX, 2, 1);
    EXPECT_REQ(&b, MRD_OK, NULL);
    append_meta(&b, MRD_META_ENTRIES_MAX + 1, 2, 1);
    EXPECT_REQ(
        &b, MRD_ETOOBIG, "meta has more than MRD_META_ENTRIES_MAX entries");
    append_meta(&b, 1, MRD_META_KEY_SIZE_MAX, 1);
    EXPECT_REQ(&b, MRD_OK, NULL);
    append_meta(&b, 1, MRD_META_KEY_SIZE_MAX + 1, 1);
    EXPECT_REQ(
        &b, MRD_ETOOBIG, "meta key is longer than MRD_META_KEY_SIZE_MAX");
    append_meta(&b, 1, 2, MRD_META_VALUE_SIZE_MAX);
    EXPECT_REQ(&b, MRD_OK, NULL);
    append_meta(&b, 1, 2, MRD_META_VALUE_SIZE_MAX + 1);
    EXPECT_REQ(
        &b, MRD_ETOOBIG, "meta value is longer than MRD_META_VALUE_SIZE_MAX");
    append_meta(&b, MRD_META_ENTRIES_MAX, MRD_META_KEY_SIZE_MAX,
        MRD_META_VALUE_SIZE_MAX);
    EXPECT_REQ(&b, MRD_OK, NULL);
    for (size_t j = 0; j < MRD_ARRAY_SIZE(bad_utf8); j++) {
        append_one(&b);
        pk(&b, "M2 u1 s u6 M1 x s", "t", bad_utf8[j].s, bad_utf8[j].len, "v");
        EXPECT_REQ(&b, MRD_EPROTO, "meta key is empty or not valid UTF-8");
        append_one(&b);
        pk(&b, "M2 u1 s u6 M1 s x", "t", "k", bad_utf8[j].s, bad_utf8[j].len);
        EXPECT_REQ(&b, MRD_EPROTO, "meta value is not valid UTF-8");
    }
    proto_buf_fini(&b);
}

/* Invalid stream names are MRD_ENAME in every request that has one. */
static void
test_stream_names(void **state)
{
    char *name = fill(MRD_STREAM_NAME_SIZE_MAX + 1, 's');
    const struct {
        const char *s;
        size_t      len;
    } bad[] = {
        { "", 0 },
        { name, MRD_STREAM_NAME_SIZE_MAX + 1 },
        { "a\0b", 3 },
        { "\xc3\x28", 2 },
        { "\xc0\xaf", 2 },
        { "\xed\xa0\x80", 3 },
        { "\xf4\x90\x80\x80", 4 },
    };
    struct proto_buf      b;
    struct proto_read_req rr = { .count = 1 };
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    for (size_t i = 0; i < MRD_ARRAY_SIZE(bad); i++) {
        req_begin(&b, PROTO_T_APPEND);
        pk(&b, "M2 u1 x u4 A1 M1 u1 s", bad[i].s, bad[i].len, "t");
        EXPECT_REQ(&b, MRD_ENAME, "invalid stream name");
        req_begin(&b, PROTO_T_READ);
        pk(&b, "M2 u1 x u4 u1", bad[i].s, bad[i].len);
        EXPECT_REQ(&b, MRD_ENAME, "invalid stream name");
        req_begin(&b, PROTO_T_INFO);
        pk(&b, "M1 u1 x", bad[i].s, bad[i].len);
        EXPECT_REQ(&b, MRD_ENAME, "invalid stream name");
        /* The encoders refuse them too, and write nothing. */
        mrd_event_in ev = { .type = "t" };
        assert_int_equal(proto_append_req_encode(&b, bad[i].s, bad[i].len,
                             MRD_EXPECT_ANY, NULL, 0, &ev, NULL, 1),
            MRD_ENAME);
        rr.stream.ptr = bad[i].s;
        rr.stream.len = (uint32_t) bad[i].len;
        assert_int_equal(proto_read_req_encode(&b, &rr), MRD_ENAME);
        assert_int_equal(
            proto_info_req_encode(&b, bad[i].s, bad[i].len), MRD_ENAME);
        assert_int_equal(b.len, 0);
    }
    req_begin(&b, PROTO_T_INFO);
    pk(&b, "M1 u1 x", name, (size_t) MRD_STREAM_NAME_SIZE_MAX);
    EXPECT_REQ(&b, MRD_OK, NULL);
    free(name);
    proto_buf_fini(&b);
}

/* Encodes an append of one event: a refusal must write nothing, and what
 * is accepted must be accepted by a node too. */
static int
enc_one(const mrd_event_in *e)
{
    struct proto_buf b;

    proto_buf_init(&b, FRAME_MAX);
    int rv = proto_append_req_encode(&b, "s", 1, -2, NULL, 0, e, NULL, 1);
    if (rv == MRD_OK) {
        EXPECT_REQ(&b, MRD_OK, NULL);
    } else {
        assert_int_equal(b.len, 0);
    }
    proto_buf_fini(&b);
    return rv;
}

/* A string of exactly n bytes inside a long buffer of 'a's. */
static const char *
tail_of(const char *big, size_t big_len, size_t n)
{
    return big + big_len - n;
}

/* The client-side encoder refuses what a node would. */
static void
test_encode_event_checks(void **state)
{
    const size_t big_len = MRD_EVENT_DATA_SIZE_MAX + 1;
    char        *big     = fill(big_len, 'a');
    (void) state;

#define ENC1(...) enc_one(&(mrd_event_in) { __VA_ARGS__ })
    assert_int_equal(ENC1(.type = NULL), MRD_EINVAL);
    assert_int_equal(ENC1(.type = ""), MRD_EINVAL);
    assert_int_equal(ENC1(.type = "\xc3\x28"), MRD_EINVAL);
    assert_int_equal(ENC1(.type = tail_of(big, big_len, 255)), MRD_OK);
    assert_int_equal(ENC1(.type = tail_of(big, big_len, 256)), MRD_ETOOBIG);
    assert_int_equal(
        ENC1(.type = "t", .content_type = tail_of(big, big_len, 127)), MRD_OK);
    assert_int_equal(
        ENC1(.type = "t", .content_type = tail_of(big, big_len, 128)),
        MRD_ETOOBIG);
    assert_int_equal(
        ENC1(.type = "t", .correlation_id = tail_of(big, big_len, 129)),
        MRD_ETOOBIG);
    assert_int_equal(
        ENC1(.type = "t", .causation_id = tail_of(big, big_len, 129)),
        MRD_ETOOBIG);
    assert_int_equal(
        ENC1(.type = "t", .causation_id = "\xed\xa0\x80"), MRD_EINVAL);
    assert_int_equal(
        ENC1(.type = "t", .correlation_id = "\xc0\xaf"), MRD_EINVAL);
    assert_int_equal(ENC1(.type = "t", .content_type = "\xff"), MRD_EINVAL);
    assert_int_equal(
        ENC1(.type = "t", .data = big, .data_size = MRD_EVENT_DATA_SIZE_MAX),
        MRD_OK);
    assert_int_equal(ENC1(.type = "t", .data = big,
                         .data_size = MRD_EVENT_DATA_SIZE_MAX + 1),
        MRD_ETOOBIG);
    assert_int_equal(
        ENC1(.type = "t", .data = NULL, .data_size = 1), MRD_EINVAL);
    assert_int_equal(ENC1(.type = "t", .data = NULL, .data_size = 0), MRD_OK);
#undef ENC1
    free(big);
}

static void
test_encode_meta_checks(void **state)
{
    const size_t   big_len = MRD_META_VALUE_SIZE_MAX + 1;
    char          *big     = fill(big_len, 'a');
    mrd_meta_entry meta[MRD_META_ENTRIES_MAX + 1];
    char           keys[MRD_META_ENTRIES_MAX + 1][4];
    (void) state;

    for (size_t i = 0; i < MRD_ARRAY_SIZE(meta); i++) {
        snprintf(keys[i], sizeof keys[i], "k%zu", i);
        meta[i].key   = keys[i];
        meta[i].value = NULL; /* NULL is empty */
    }
#define ENCM(n)                                                                \
    enc_one(&(mrd_event_in) { .type = "t", .meta = meta, .meta_count = (n) })
    assert_int_equal(ENCM(MRD_META_ENTRIES_MAX), MRD_OK);
    assert_int_equal(ENCM(MRD_META_ENTRIES_MAX + 1), MRD_ETOOBIG);
    assert_int_equal(
        enc_one(&(mrd_event_in) { .type = "t", .meta = NULL, .meta_count = 1 }),
        MRD_EINVAL);
    meta[1].key = "k0";
    assert_int_equal(ENCM(2), MRD_EINVAL); /* duplicate meta key */
    meta[1].key = "";
    assert_int_equal(ENCM(2), MRD_EINVAL);
    meta[1].key = NULL;
    assert_int_equal(ENCM(2), MRD_EINVAL);
    meta[1].key = tail_of(big, big_len, MRD_META_KEY_SIZE_MAX);
    assert_int_equal(ENCM(2), MRD_OK);
    meta[1].key = tail_of(big, big_len, MRD_META_KEY_SIZE_MAX + 1);
    assert_int_equal(ENCM(2), MRD_ETOOBIG);
    meta[1].key   = keys[1];
    meta[1].value = tail_of(big, big_len, MRD_META_VALUE_SIZE_MAX);
    assert_int_equal(ENCM(2), MRD_OK);
    meta[1].value = big;
    assert_int_equal(ENCM(2), MRD_ETOOBIG);
    meta[1].value = "\xc0\xaf";
    assert_int_equal(ENCM(2), MRD_EINVAL);
#undef ENCM
    free(big);
}

static void
test_encode_append_checks(void **state)
{
    char              *big = fill(MRD_EVENT_DATA_SIZE_MAX + 1, 'a');
    mrd_meta_entry     meta[MRD_META_ENTRIES_MAX];
    char               keys[MRD_META_ENTRIES_MAX][4];
    mrd_event_in       evs[MRD_APPEND_EVENTS_MAX + 1];
    struct proto_buf   b;
    const mrd_event_in ok = { .type = "t" };
    (void) state;

    for (size_t i = 0; i < MRD_ARRAY_SIZE(evs); i++) {
        evs[i] = ok;
    }
    proto_buf_init(&b, FRAME_MAX);
#define ENC(ev, n)                                                             \
    proto_append_req_encode(&b, "s", 1, -2, NULL, 0, (ev), NULL, (n))
    assert_int_equal(ENC(evs, MRD_APPEND_EVENTS_MAX + 1), MRD_ETOOBIG);
    assert_int_equal(ENC(evs, 0), MRD_EINVAL);
    assert_int_equal(ENC(NULL, 1), MRD_EINVAL);
#undef ENC
    assert_int_equal(
        proto_append_req_encode(&b, "s", 1, -3, NULL, 0, &ok, NULL, 1),
        MRD_EINVAL);
    assert_int_equal(
        proto_append_req_encode(&b, "s", 1, -2, "k", 0, &ok, NULL, 1),
        MRD_EINVAL);
    assert_int_equal(
        proto_append_req_encode(&b, "s", 1, -2, NULL, 3, &ok, NULL, 1),
        MRD_EINVAL);
    assert_int_equal(
        proto_append_req_encode(&b, "s", 1, -2, big, 65, &ok, NULL, 1),
        MRD_ETOOBIG);
    assert_int_equal(b.len, 0); /* nothing written by any refusal */
    assert_int_equal(proto_append_req_encode(&b, "s", 1, -2, NULL, 0, evs, NULL,
                         MRD_APPEND_EVENTS_MAX),
        MRD_OK);
    EXPECT_REQ(&b, MRD_OK, NULL);
    /* One event at every limit at once: accepted by both sides. */
    for (size_t i = 0; i < MRD_ARRAY_SIZE(meta); i++) {
        snprintf(keys[i], sizeof keys[i], "k%zu", i);
        meta[i].key   = keys[i];
        meta[i].value = big + MRD_EVENT_DATA_SIZE_MAX + 1 - 1024;
    }
    const mrd_event_in full = { .type = big + MRD_EVENT_DATA_SIZE_MAX + 1 - 255,
        .content_type                 = big + MRD_EVENT_DATA_SIZE_MAX + 1 - 127,
        .correlation_id               = big + MRD_EVENT_DATA_SIZE_MAX + 1 - 128,
        .causation_id                 = big + MRD_EVENT_DATA_SIZE_MAX + 1 - 128,
        .data                         = big,
        .data_size                    = MRD_EVENT_DATA_SIZE_MAX,
        .meta                         = meta,
        .meta_count                   = MRD_META_ENTRIES_MAX };
    assert_int_equal(proto_append_req_encode(
                         &b, big, 255, INT64_MAX, big, 64, &full, NULL, 1),
        MRD_OK);
    EXPECT_REQ(&b, MRD_OK, NULL);
    free(big);
    proto_buf_fini(&b);
}

/* ------------------------------------------------------------- reads -- */

static void
test_read_round_trip(void **state)
{
    struct proto_buf      b;
    struct proto_frame    f;
    struct proto_read_req in = { .stream = { "s-1", 3 },
        .from                            = 12,
        .direction                       = MRD_FORWARD,
        .count                           = 100,
        .wait_ms                         = 500 };
    struct proto_read_req out;
    const char           *why = NULL;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    assert_int_equal(proto_read_req_encode(&b, &in), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_READ);
    assert_int_equal(proto_read_req_decode(&f.body, &out, &why), MRD_OK);
    check_str(out.stream, "s-1");
    assert_int_equal(out.from, 12);
    assert_int_equal(out.direction, MRD_FORWARD);
    assert_int_equal(out.count, 100);
    assert_int_equal(out.wait_ms, 500);

    /* Backward from the end; defaults are not written. */
    in = (struct proto_read_req) { .stream = { "s", 1 },
        .from                              = MRD_POSITION_END,
        .direction                         = MRD_BACKWARD,
        .count                             = MRD_READ_COUNT_MAX };
    proto_buf_reset(&b);
    assert_int_equal(proto_read_req_encode(&b, &in), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_read_req_decode(&f.body, &out, &why), MRD_OK);
    assert_true(out.from == MRD_POSITION_END);
    assert_int_equal(out.direction, MRD_BACKWARD);
    assert_int_equal(out.count, MRD_READ_COUNT_MAX);
    assert_int_equal(out.wait_ms, 0);
    in = (struct proto_read_req) { .stream = { "s", 1 }, .count = 1 };
    proto_buf_reset(&b);
    assert_int_equal(proto_read_req_encode(&b, &in), MRD_OK);
    assert_memory_equal(b.data, "\x93\x01\x02\x82\x01\xa1s\x04\x01", 9);
    assert_int_equal(b.len, 9);

    /* The encoder refuses what the decoder would. */
    proto_buf_reset(&b);
    in.count = 0;
    assert_int_equal(proto_read_req_encode(&b, &in), MRD_EINVAL);
    in.count = MRD_READ_COUNT_MAX + 1;
    assert_int_equal(proto_read_req_encode(&b, &in), MRD_ETOOBIG);
    in.count     = 1;
    in.direction = 2;
    assert_int_equal(proto_read_req_encode(&b, &in), MRD_EINVAL);
    in.direction = MRD_BACKWARD;
    in.wait_ms   = 1;
    assert_int_equal(proto_read_req_encode(&b, &in), MRD_EINVAL);
    in.direction = MRD_FORWARD;
    in.wait_ms   = MRD_WAIT_MS_MAX + 1;
    assert_int_equal(proto_read_req_encode(&b, &in), MRD_ETOOBIG);
    assert_int_equal(b.len, 0);
    proto_buf_fini(&b);
}

static void
test_read_errors(void **state)
{
    struct proto_buf b;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
#define READ(...)                                                              \
    do {                                                                       \
        req_begin(&b, PROTO_T_READ);                                           \
        pk(&b, __VA_ARGS__);                                                   \
    } while (0)
    READ("M1 u1 s", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    READ("M1 u4 u1");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    READ("M2 u1 s u4 u0", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "count is 0");
    READ("M2 u1 s u4 u10000", "s");
    EXPECT_REQ(&b, MRD_OK, NULL);
    READ("M2 u1 s u4 u10001", "s");
    EXPECT_REQ(&b, MRD_ETOOBIG, "count is larger than MRD_READ_COUNT_MAX");
    READ("M2 u1 s u4 u", "s", (uint64_t) 1 << 40);
    EXPECT_REQ(&b, MRD_ETOOBIG, NULL);
    READ("M2 u1 s u4 s", "s", "1");
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    READ("M2 u1 s u4 i-1", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    READ("M3 u1 s u4 u1 u2 i-1", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    READ("M3 u1 s u4 u1 u3 u2", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "direction is not 0 or 1");
    READ("M3 u1 s u4 u1 u3 T", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    READ("M3 u1 s u4 u1 u5 u60000", "s");
    EXPECT_REQ(&b, MRD_OK, NULL);
    READ("M3 u1 s u4 u1 u5 u60001", "s");
    EXPECT_REQ(&b, MRD_ETOOBIG, "wait_ms is larger than MRD_WAIT_MS_MAX");
    READ("M4 u1 s u4 u1 u3 u1 u5 u1", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "only forward reads can wait");
    READ("M4 u1 s u4 u1 u3 u1 u5 u0", "s");
    EXPECT_REQ(&b, MRD_OK, NULL);
    READ("M3 u1 s u4 u1 u8 u0", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    /* Cursor reads: a valid vv bin, forward only. */
    READ("M3 u1 s u4 u1 u6 u0", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    READ("M3 u1 s u4 u1 u6 b", "s", "abc", (size_t) 3);
    EXPECT_REQ(&b, MRD_EPROTO, "version vector length is not a multiple of 16");
    READ("M4 u1 s u4 u1 u3 u1 u6 b", "s", "", (size_t) 0);
    EXPECT_REQ(&b, MRD_EPROTO, "cursor reads are forward");
    READ("M4 u1 s u4 u1 u6 b u7 u3", "s", "", (size_t) 0);
    EXPECT_REQ(&b, MRD_OK, NULL);
    READ("M3 u1 s u4 u1 u4 u1", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "duplicate key");
    READ("M2 u1 b u4 u1", "s", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
#undef READ
    proto_buf_fini(&b);
}

static void
test_log_req(void **state)
{
    struct proto_buf     b;
    struct proto_frame   f;
    struct proto_log_req in = { .shard = 7, .after = 99, .count = 3 };
    struct proto_log_req out;
    const char          *why = NULL;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    assert_int_equal(proto_log_req_encode(&b, &in), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_READ_LOG);
    assert_int_equal(proto_log_req_decode(&f.body, &out, &why), MRD_OK);
    assert_int_equal(out.shard, 7);
    assert_int_equal(out.after, 99);
    assert_int_equal(out.count, 3);
    in.count = 0;
    proto_buf_reset(&b);
    assert_int_equal(proto_log_req_encode(&b, &in), MRD_EINVAL);
    in.count = MRD_READ_COUNT_MAX + 1;
    assert_int_equal(proto_log_req_encode(&b, &in), MRD_ETOOBIG);
    assert_int_equal(b.len, 0);

#define LOG(...)                                                               \
    do {                                                                       \
        req_begin(&b, PROTO_T_READ_LOG);                                       \
        pk(&b, __VA_ARGS__);                                                   \
    } while (0)
    LOG("M2 u1 u0 u3 u1");
    EXPECT_REQ(&b, MRD_OK, NULL);
    LOG("M1 u3 u1");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    LOG("M1 u1 u1");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    LOG("M2 u1 u u3 u1", (uint64_t) UINT32_MAX + 1);
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    LOG("M2 u1 u u3 u1", (uint64_t) UINT32_MAX);
    EXPECT_REQ(&b, MRD_OK, NULL);
    LOG("M2 u1 u0 u3 u0");
    EXPECT_REQ(&b, MRD_EPROTO, "count is 0");
    LOG("M2 u1 u0 u3 u10001");
    EXPECT_REQ(&b, MRD_ETOOBIG, NULL);
    LOG("M3 u1 u0 u3 u1 u4 u0");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    LOG("M3 u1 u0 u3 u1 u2 s", "x");
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    LOG("M3 u1 u0 u3 u1 u1 u0");
    EXPECT_REQ(&b, MRD_EPROTO, "duplicate key");
#undef LOG
    proto_buf_fini(&b);
}

static void
test_info_and_empty(void **state)
{
    struct proto_buf   b;
    struct proto_frame f;
    struct proto_str   stream;
    mrd_stream_info    in
        = { .exists = 1, .version = 41, .count = 42, .shard = UINT32_MAX };
    mrd_stream_info out;
    const char     *why = NULL;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    assert_int_equal(proto_info_req_encode(&b, "abc", 3), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_info_req_decode(&f.body, &stream, &why), MRD_OK);
    check_str(stream, "abc");
    proto_buf_reset(&b);
    proto_info_rep_encode(&b, &in);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_INFO);
    assert_int_equal(f.status, MRD_OK);
    assert_int_equal(proto_info_rep_decode(&f.body, &out, &why), MRD_OK);
    assert_int_equal(out.exists, 1);
    assert_int_equal(out.version, 41);
    assert_int_equal(out.count, 42);
    assert_int_equal(out.shard, UINT32_MAX);
    in = (mrd_stream_info) { .version = MRD_VERSION_NONE };
    proto_buf_reset(&b);
    proto_info_rep_encode(&b, &in);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_info_rep_decode(&f.body, &out, &why), MRD_OK);
    assert_int_equal(out.exists, 0);
    assert_int_equal(out.version, MRD_VERSION_NONE);

    req_begin(&b, PROTO_T_INFO);
    pk(&b, "M0");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    req_begin(&b, PROTO_T_INFO);
    pk(&b, "M2 u1 s u2 s", "s", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    rep_begin(&b, PROTO_T_INFO);
    pk(&b, "M4 u1 T u2 i-2 u3 u0 u4 u0");
    EXPECT_REP(&b, MRD_EPROTO, "invalid stream version");
    rep_begin(&b, PROTO_T_INFO);
    pk(&b, "M4 u1 u1 u2 i-1 u3 u0 u4 u0");
    EXPECT_REP(&b, MRD_EPROTO, "a value has the wrong type");
    rep_begin(&b, PROTO_T_INFO);
    pk(&b, "M4 u1 T u2 i-1 u3 u0 u4 u", (uint64_t) UINT32_MAX + 1);
    EXPECT_REP(&b, MRD_EPROTO, "a value has the wrong type");
    rep_begin(&b, PROTO_T_INFO);
    pk(&b, "M3 u1 T u2 i-1 u3 u0");
    EXPECT_REP(&b, MRD_EPROTO, "a required key is missing");
    rep_begin(&b, PROTO_T_INFO);
    pk(&b, "M5 u1 T u2 i-1 u3 u0 u4 u0 u5 u0");
    EXPECT_REP(&b, MRD_EPROTO, "unknown key");

    static const uint32_t empties[] = { PROTO_T_NODE_INFO, PROTO_T_STATS };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(empties); i++) {
        proto_buf_reset(&b);
        proto_empty_req_encode(&b, empties[i]);
        EXPECT_REQ(&b, MRD_OK, NULL);
        req_begin(&b, empties[i]);
        pk(&b, "M1 u1 u1");
        EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    }
    proto_buf_fini(&b);
}

/* ---------------------------------------------------------------- ops -- */

/* An event's ops bin goes through unread: whatever bytes the client gave
 * (crdt's encoding) come out of the decoder as the same view. */
static void
test_append_ops(void **state)
{
    const mrd_event_in     evs[] = { { .type = "a" }, { .type = "b" },
            { .type = "c", .data = "d", .data_size = 1 } };
    const struct proto_str ops[]
        = { { "\x92\x90\x91\x01", 4 }, { NULL, 0 }, { "\xc0", 1 } };
    struct proto_buf        b;
    struct proto_frame      f;
    struct proto_append_req req;
    struct proto_event_in   ev;
    struct proto_rd         rd;
    const char             *why = NULL;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    assert_int_equal(
        proto_append_req_encode(&b, "s", 1, -2, NULL, 0, evs, ops, 3), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_append_req_decode(&f.body, &req, &why), MRD_OK);
    proto_events_begin(&req, &rd);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(proto_events_next(&rd, &ev), MRD_OK);
        check_str(ev.type, evs[i].type);
        assert_int_equal(ev.ops.len, ops[i].len);
        if (ops[i].len > 0) {
            assert_memory_equal(ev.ops.ptr, ops[i].ptr, ops[i].len);
        }
    }
    assert_int_equal(proto_events_next(&rd, &ev), MRD_ENOTFOUND);

    /* The golden form: the ops key comes last, a bin. */
    proto_buf_reset(&b);
    assert_int_equal(
        proto_append_req_encode(&b, "s", 1, -2, NULL, 0, evs, ops, 1), MRD_OK);
    assert_int_equal(b.len, 20);
    assert_memory_equal(b.data,
        "\x93\x01\x01\x82\x01\xa1s\x04\x91\x82\x01\xa1"
        "a\x07\xc4\x04\x92\x90\x91\x01",
        20);
    proto_buf_fini(&b);
}

/* Ops at PROTO_OPS_SIZE_MAX pass both ways; one byte more is refused by
 * the encoder (nothing written) and by the decoder. */
static void
test_append_ops_limits(void **state)
{
    char              *big = fill(PROTO_OPS_SIZE_MAX + 1, 'o');
    const mrd_event_in ev  = { .type = "t" };
    struct proto_str   ops = { big, PROTO_OPS_SIZE_MAX };
    struct proto_buf   b;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    assert_int_equal(
        proto_append_req_encode(&b, "s", 1, -2, NULL, 0, &ev, &ops, 1), MRD_OK);
    EXPECT_REQ(&b, MRD_OK, NULL);
    ops.len++;
    assert_int_equal(
        proto_append_req_encode(&b, "s", 1, -2, NULL, 0, &ev, &ops, 1),
        MRD_ETOOBIG);
    assert_int_equal(b.len, 0);
    append_one(&b);
    pk(&b, "M2 u1 s u7 b", "t", big, (size_t) PROTO_OPS_SIZE_MAX + 1);
    EXPECT_REQ(&b, MRD_ETOOBIG, "event ops are larger than PROTO_OPS_SIZE_MAX");
    append_one(&b);
    pk(&b, "M2 u1 s u7 b", "t", big, (size_t) PROTO_OPS_SIZE_MAX);
    EXPECT_REQ(&b, MRD_OK, NULL);
    free(big);
    proto_buf_fini(&b);
}

/* The encoder never drops ops: an event whose op_count says it has some
 * needs its encoded ops; bytes need a pointer. */
static void
test_encode_ops_checks(void **state)
{
    static const char *const path[] = { "f" };
    const mrd_op             op     = { .path = path,
                        .path_len             = 1,
                        .type                 = MRD_STATE_COUNTER,
                        .kind                 = MRD_OP_INC,
                        .delta                = 1 };
    mrd_event_in             ev    = { .type = "t", .ops = &op, .op_count = 1 };
    struct proto_str         ops   = { "\x90", 1 };
    struct proto_str         none  = { NULL, 0 };
    struct proto_str         noptr = { NULL, 3 };
    struct proto_buf         b;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
#define ENC_OPS(o) proto_append_req_encode(&b, "s", 1, -2, NULL, 0, &ev, (o), 1)
    assert_int_equal(ENC_OPS(NULL), MRD_EINVAL);
    assert_int_equal(ENC_OPS(&none), MRD_EINVAL);
    assert_int_equal(b.len, 0);
    assert_int_equal(ENC_OPS(&ops), MRD_OK);
    EXPECT_REQ(&b, MRD_OK, NULL);
    ev.op_count = MRD_STATE_OPS_MAX + 1;
    assert_int_equal(ENC_OPS(&ops), MRD_ETOOBIG);
    ev.ops      = NULL;
    ev.op_count = 1;
    assert_int_equal(ENC_OPS(&ops), MRD_EINVAL);
    ev.op_count = 0;
    assert_int_equal(ENC_OPS(&noptr), MRD_EINVAL);
    /* Encoded ops with no mrd_op list are sent as given (re-encoding a
     * decoded request does this). */
    assert_int_equal(ENC_OPS(&ops), MRD_OK);
    EXPECT_REQ(&b, MRD_OK, NULL);
#undef ENC_OPS
    proto_buf_fini(&b);
}

/* -------------------------------------------------------------- state -- */

static void
test_state_req(void **state)
{
    struct proto_buf       b;
    struct proto_frame     f;
    struct proto_state_req in = { .stream = { "order-1", 7 } };
    struct proto_state_req out;
    const char            *why    = NULL;
    char                  *name   = fill(MRD_STATE_NAME_SIZE_MAX + 1, 'n');
    char                  *stream = fill(MRD_STREAM_NAME_SIZE_MAX + 1, 's');
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    /* Every field: the field key is left out. */
    assert_int_equal(proto_state_req_encode(&b, &in), MRD_OK);
    assert_int_equal(b.len, 13);
    assert_memory_equal(b.data, "\x93\x01\x07\x81\x01\xa7order-1", 13);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_STATE);
    assert_int_equal(proto_state_req_decode(&f.body, &out, &why), MRD_OK);
    assert_true(proto_rd_done(&f.body));
    check_str(out.stream, "order-1");
    assert_int_equal(out.field.len, 0);
    /* One field, at the size limit. */
    in.field = (struct proto_str) { name, MRD_STATE_NAME_SIZE_MAX };
    proto_buf_reset(&b);
    assert_int_equal(proto_state_req_encode(&b, &in), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_state_req_decode(&f.body, &out, &why), MRD_OK);
    assert_int_equal(out.field.len, MRD_STATE_NAME_SIZE_MAX);
    assert_memory_equal(out.field.ptr, name, MRD_STATE_NAME_SIZE_MAX);

    /* The encoder refuses what the decoder would, writing nothing. */
    proto_buf_reset(&b);
    in.field.len++;
    assert_int_equal(proto_state_req_encode(&b, &in), MRD_ETOOBIG);
    in.field = (struct proto_str) { "\xc3\x28", 2 };
    assert_int_equal(proto_state_req_encode(&b, &in), MRD_EINVAL);
    in.field = (struct proto_str) { "a\0b", 3 };
    assert_int_equal(proto_state_req_encode(&b, &in), MRD_EINVAL);
    in.field  = (struct proto_str) { NULL, 0 };
    in.stream = (struct proto_str) { stream, MRD_STREAM_NAME_SIZE_MAX + 1 };
    assert_int_equal(proto_state_req_encode(&b, &in), MRD_ENAME);
    in.stream = (struct proto_str) { "", 0 };
    assert_int_equal(proto_state_req_encode(&b, &in), MRD_ENAME);
    assert_int_equal(b.len, 0);

    /* Bad requests. */
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M0");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M1 u2 s", "f");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u1 s u3 s", "s", "f");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u1 s u1 s", "s", "s");
    EXPECT_REQ(&b, MRD_EPROTO, "duplicate key");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M1 u1 b", "s", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M1 u1 s", "");
    EXPECT_REQ(&b, MRD_ENAME, "invalid stream name");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M1 u1 x", stream, (size_t) MRD_STREAM_NAME_SIZE_MAX + 1);
    EXPECT_REQ(&b, MRD_ENAME, "invalid stream name");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u1 s u2 s", "s", "");
    EXPECT_REQ(&b, MRD_EPROTO, "state field is empty or not valid UTF-8");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u1 s u2 x", "s", "\xed\xa0\x80", (size_t) 3);
    EXPECT_REQ(&b, MRD_EPROTO, "state field is empty or not valid UTF-8");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u1 s u2 x", "s", "a\0b", (size_t) 3);
    EXPECT_REQ(&b, MRD_EPROTO, "state field is empty or not valid UTF-8");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u1 s u2 x", "s", name, (size_t) MRD_STATE_NAME_SIZE_MAX + 1);
    EXPECT_REQ(
        &b, MRD_ETOOBIG, "state field is longer than MRD_STATE_NAME_SIZE_MAX");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u1 s u2 b", "s", "f", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    req_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u2 s u1 s", "f", "s"); /* any key order */
    EXPECT_REQ(&b, MRD_OK, NULL);
    free(stream);
    free(name);
    proto_buf_fini(&b);
}

static void
test_state_rep(void **state)
{
    struct proto_buf       b;
    struct proto_frame     f;
    struct proto_state_rep in = { MRD_VERSION_NONE, { "\x93\x01\x90\x90", 4 } };
    struct proto_state_rep out;
    const char            *why = NULL;
    char                  *big = fill(PROTO_STATE_SIZE_MAX + 1, 'z');
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    proto_state_rep_encode(&b, &in);
    assert_int_equal(proto_buf_status(&b), MRD_OK);
    assert_int_equal(b.len, 14);
    assert_memory_equal(
        b.data, "\x94\x01\x07\x00\x82\x01\xff\x02\xc4\x04\x93\x01\x90\x90", 14);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_STATE);
    assert_int_equal(f.status, MRD_OK);
    assert_int_equal(proto_state_rep_decode(&f.body, &out, &why), MRD_OK);
    assert_true(proto_rd_done(&f.body));
    assert_int_equal(out.version, MRD_VERSION_NONE);
    assert_int_equal(out.state.len, 4);
    assert_memory_equal(out.state.ptr, in.state.ptr, 4);
    /* A document at the limit goes through; one byte more poisons the
     * buffer instead of building a frame no client accepts. */
    in = (struct proto_state_rep) { INT64_MAX, { big, PROTO_STATE_SIZE_MAX } };
    proto_buf_reset(&b);
    proto_state_rep_encode(&b, &in);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_state_rep_decode(&f.body, &out, &why), MRD_OK);
    assert_true(out.version == INT64_MAX);
    assert_int_equal(out.state.len, PROTO_STATE_SIZE_MAX);
    in.state.len++;
    proto_buf_reset(&b);
    proto_state_rep_encode(&b, &in);
    assert_int_equal(proto_buf_status(&b), MRD_ETOOBIG);
    assert_int_equal(b.len, 0);

    rep_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u1 i-2 u2 b", "d", (size_t) 1);
    EXPECT_REP(&b, MRD_EPROTO, "invalid stream version");
    rep_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u1 i-1 u2 b", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "state is empty");
    rep_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u1 i3 u2 b", big, (size_t) PROTO_STATE_SIZE_MAX + 1);
    EXPECT_REP(&b, MRD_ETOOBIG, "state is larger than PROTO_STATE_SIZE_MAX");
    rep_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u1 i3 u2 x", "d", (size_t) 1);
    EXPECT_REP(&b, MRD_EPROTO, "a value has the wrong type");
    rep_begin(&b, PROTO_T_STATE);
    pk(&b, "M1 u2 b", "d", (size_t) 1);
    EXPECT_REP(&b, MRD_EPROTO, "a required key is missing");
    rep_begin(&b, PROTO_T_STATE);
    pk(&b, "M1 u1 i3");
    EXPECT_REP(&b, MRD_EPROTO, "a required key is missing");
    rep_begin(&b, PROTO_T_STATE);
    pk(&b, "M3 u1 i3 u2 b u3 u0", "d", (size_t) 1);
    EXPECT_REP(&b, MRD_EPROTO, "unknown key");
    rep_begin(&b, PROTO_T_STATE);
    pk(&b, "M2 u2 b u1 u9", "d", (size_t) 1);
    EXPECT_REP(&b, MRD_OK, NULL);
    /* Errors carry the new code like any other. */
    proto_buf_reset(&b);
    proto_reply_error(&b, PROTO_T_APPEND, MRD_ETYPE,
        "field visits holds a counter", false, 0);
    EXPECT_REP(&b, MRD_OK, NULL);
    free(big);
    proto_buf_fini(&b);
}

/* ----------------------------------------------------------- replies -- */

static void
test_append_rep(void **state)
{
    struct proto_buf        b;
    struct proto_frame      f;
    struct proto_append_rep in = { .origin = 3,
        .seq                               = UINT64_MAX,
        .first_pos                         = 0,
        .version                           = 9,
        .count                             = MRD_APPEND_EVENTS_MAX,
        .hlc                               = (uint64_t) 1 << 50,
        .replayed                          = true };
    struct proto_append_rep out;
    const char             *why = NULL;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    proto_append_rep_encode(&b, &in);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_APPEND);
    assert_int_equal(proto_append_rep_decode(&f.body, &out, &why), MRD_OK);
    assert_int_equal(out.origin, in.origin);
    assert_true(out.seq == in.seq);
    assert_int_equal(out.first_pos, in.first_pos);
    assert_int_equal(out.version, in.version);
    assert_int_equal(out.count, in.count);
    assert_int_equal(out.hlc, in.hlc);
    assert_true(out.replayed);
    assert_true(proto_rd_done(&f.body));

#define AREP(...)                                                              \
    do {                                                                       \
        rep_begin(&b, PROTO_T_APPEND);                                         \
        pk(&b, __VA_ARGS__);                                                   \
    } while (0)
    AREP("M7 u1 u1 u2 u1 u3 u0 u4 u0 u5 u1 u6 u0 u7 F");
    EXPECT_REP(&b, MRD_OK, NULL);
    AREP("M6 u1 u1 u2 u1 u3 u0 u4 u0 u5 u1 u6 u0");
    EXPECT_REP(&b, MRD_EPROTO, "a required key is missing");
    AREP("M8 u1 u1 u2 u1 u3 u0 u4 u0 u5 u1 u6 u0 u7 F u11 u0");
    EXPECT_REP(&b, MRD_EPROTO, "unknown key");
    /* The acknowledgement: all three keys or none, a level <= 2, counts
     * of at least 1 (the node itself). */
    AREP("M10 u1 u1 u2 u1 u3 u0 u4 u0 u5 u1 u6 u0 u7 F u8 u1 u9 u2 u10 u1");
    EXPECT_REP(&b, MRD_OK, NULL);
    AREP("M8 u1 u1 u2 u1 u3 u0 u4 u0 u5 u1 u6 u0 u7 F u8 u0");
    EXPECT_REP(&b, MRD_EPROTO, "invalid acknowledgement");
    AREP("M10 u1 u1 u2 u1 u3 u0 u4 u0 u5 u1 u6 u0 u7 F u8 u3 u9 u2 u10 u1");
    EXPECT_REP(&b, MRD_EPROTO, "invalid acknowledgement");
    AREP("M10 u1 u1 u2 u1 u3 u0 u4 u0 u5 u1 u6 u0 u7 F u8 u1 u9 u0 u10 u1");
    EXPECT_REP(&b, MRD_EPROTO, "invalid acknowledgement");
    AREP("M7 u1 u1 u2 u1 u3 u0 u4 u0 u5 u1 u6 u0 u7 u0");
    EXPECT_REP(&b, MRD_EPROTO, "a value has the wrong type");
    AREP("M7 u1 u1 u2 u1 u3 u0 u4 u0 u5 u0 u6 u0 u7 F");
    EXPECT_REP(&b, MRD_EPROTO, "appended count out of range");
    AREP("M7 u1 u1 u2 u1 u3 u0 u4 u0 u5 u1001 u6 u0 u7 F");
    EXPECT_REP(&b, MRD_EPROTO, "appended count out of range");
    AREP("M7 u1 u1 u2 u1 u3 u0 u4 i-1 u5 u1 u6 u0 u7 F");
    EXPECT_REP(&b, MRD_EPROTO, "a value has the wrong type");
    AREP("M7 u1 u1 u1 u1 u3 u0 u4 u0 u5 u1 u6 u0 u7 F");
    EXPECT_REP(&b, MRD_EPROTO, "duplicate key");
#undef AREP
    proto_buf_fini(&b);
}

static void
test_node_rep(void **state)
{
    struct proto_buf   b;
    struct proto_frame f;
    mrd_node_info      in = { .node_id = 77,
             .shard_count              = 64,
             .protocol_version         = PROTO_VERSION,
             .frame_size_max           = 16u << 20 };
    mrd_node_info      out;
    const char        *why = NULL;
    char              *v32 = fill(32, 'v');
    (void) state;

    for (int i = 0; i < 16; i++) {
        in.cluster_id[i] = (uint8_t) (0xf0 + i);
    }
    memcpy(in.version, v32, 31); /* longest version, NUL last */
    proto_buf_init(&b, FRAME_MAX);
    proto_node_rep_encode(&b, &in);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_node_rep_decode(&f.body, &out, &why), MRD_OK);
    assert_int_equal(out.node_id, in.node_id);
    assert_memory_equal(out.cluster_id, in.cluster_id, 16);
    assert_int_equal(out.shard_count, in.shard_count);
    assert_int_equal(out.protocol_version, in.protocol_version);
    assert_int_equal(out.frame_size_max, in.frame_size_max);
    assert_string_equal(out.version, in.version);
    strcpy(in.version, "0.1.0");
    proto_buf_reset(&b);
    proto_node_rep_encode(&b, &in);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    memset(&out, 0x55, sizeof out);
    assert_int_equal(proto_node_rep_decode(&f.body, &out, &why), MRD_OK);
    assert_string_equal(out.version, "0.1.0");

#define NREP(...)                                                              \
    do {                                                                       \
        rep_begin(&b, PROTO_T_NODE_INFO);                                      \
        pk(&b, __VA_ARGS__);                                                   \
    } while (0)
    const char *c16 = "0123456789abcdef";
    NREP("M6 u1 u1 u2 b u3 u1 u4 u1 u5 u1 u6 s", c16, (size_t) 16, "");
    EXPECT_REP(&b, MRD_OK, NULL);
    NREP("M6 u1 u1 u2 b u3 u1 u4 u1 u5 u1 u6 s", c16, (size_t) 15, "");
    EXPECT_REP(&b, MRD_EPROTO, "cluster id is not 16 bytes");
    NREP("M6 u1 u1 u2 b u3 u1 u4 u1 u5 u1 u6 s", c16, (size_t) 17, "");
    EXPECT_REP(&b, MRD_EPROTO, "cluster id is not 16 bytes");
    NREP("M6 u1 u1 u2 x u3 u1 u4 u1 u5 u1 u6 s", c16, (size_t) 16, "");
    EXPECT_REP(&b, MRD_EPROTO, "a value has the wrong type");
    NREP("M6 u1 u1 u2 b u3 u1 u4 u1 u5 u1 u6 s", c16, (size_t) 16, v32);
    EXPECT_REP(&b, MRD_ETOOBIG, "node version is too long");
    NREP("M6 u1 u1 u2 b u3 u1 u4 u1 u5 u1 u6 s", c16, (size_t) 16, "\xc0\xaf");
    EXPECT_REP(&b, MRD_EPROTO, "node version is not valid UTF-8");
    NREP("M6 u1 u1 u2 b u3 u u4 u1 u5 u1 u6 s", c16, (size_t) 16,
        (uint64_t) UINT32_MAX + 1, "");
    EXPECT_REP(&b, MRD_EPROTO, "a value has the wrong type");
    NREP("M5 u1 u1 u2 b u3 u1 u4 u1 u5 u1", c16, (size_t) 16);
    EXPECT_REP(&b, MRD_EPROTO, "a required key is missing");
    NREP("M7 u1 u1 u2 b u3 u1 u4 u1 u5 u1 u6 s u7 N", c16, (size_t) 16, "");
    EXPECT_REP(&b, MRD_EPROTO, "unknown key");
#undef NREP
    free(v32);
    proto_buf_fini(&b);
}

static void
test_stats(void **state)
{
    static const struct proto_stat stats[] = { { "frames_in", 10 },
        { "frames_bad", 0 }, { "", 5 }, { "frames", UINT64_MAX } };
    struct proto_buf               b;
    struct proto_frame             f;
    struct proto_rd                body;
    const char                    *why = NULL;
    uint64_t                       v   = 1;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    proto_stats_rep_encode(&b, stats, MRD_ARRAY_SIZE(stats));
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_STATS);
    body = f.body;
    for (size_t i = 0; i < MRD_ARRAY_SIZE(stats); i++) {
        assert_int_equal(
            proto_stats_rep_find(&f.body, stats[i].name, &v), MRD_OK);
        assert_true(v == stats[i].value);
    }
    /* The caller's reader never moves. */
    assert_ptr_equal(f.body.p, body.p);
    assert_int_equal(
        proto_stats_rep_find(&f.body, "frames_i", &v), MRD_ENOTFOUND);
    assert_int_equal(
        proto_stats_rep_find(&f.body, "frames_inx", &v), MRD_ENOTFOUND);
    proto_buf_reset(&b);
    proto_stats_rep_encode(&b, NULL, 0);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_stats_rep_find(&f.body, "x", &v), MRD_ENOTFOUND);
    rep_begin(&b, PROTO_T_STATS);
    pk(&b, "M2 s u1 s s", "a", "x", "1");
    EXPECT_REP(&b, MRD_EPROTO, NULL);
    rep_begin(&b, PROTO_T_STATS);
    pk(&b, "M1 u1 u1");
    EXPECT_REP(&b, MRD_EPROTO, NULL);
    rep_begin(&b, PROTO_T_STATS);
    pk(&b, "M1 s i-1", "a");
    EXPECT_REP(&b, MRD_EPROTO, NULL);
    proto_buf_fini(&b);
}

static void
test_error_reply(void **state)
{
    struct proto_buf   b;
    struct proto_frame f;
    struct proto_str   msg;
    bool               has_version = true;
    int64_t            version     = 5;
    const char        *why         = NULL;
    char              *long_msg    = fill(2000, 'm');
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    proto_reply_error(&b, PROTO_T_APPEND, MRD_EVERSION, "wrong version", true,
        MRD_VERSION_NONE);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.status, MRD_EVERSION);
    assert_int_equal(f.type, PROTO_T_APPEND);
    assert_int_equal(
        proto_error_decode(&f.body, &msg, &has_version, &version, &why),
        MRD_OK);
    check_str(msg, "wrong version");
    assert_true(has_version);
    assert_int_equal(version, MRD_VERSION_NONE);
    assert_true(proto_rd_done(&f.body));

    proto_buf_reset(&b);
    proto_reply_error(&b, PROTO_T_READ, MRD_ENAME, NULL, false, 0);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(
        proto_error_decode(&f.body, &msg, &has_version, &version, &why),
        MRD_OK);
    assert_int_equal(msg.len, 0);
    assert_false(has_version);

    /* Long messages are cut at a character boundary. */
    memcpy(long_msg + 1022, "\xe6\xb3\xa8", 3);
    proto_buf_reset(&b);
    proto_reply_error(&b, PROTO_T_READ, MRD_EPROTO, long_msg, false, 0);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(
        proto_error_decode(&f.body, &msg, &has_version, &version, &why),
        MRD_OK);
    assert_int_equal(msg.len, 1022);
    /* Bytes that are not UTF-8 never reach the wire. */
    proto_buf_reset(&b);
    proto_reply_error(&b, PROTO_T_READ, MRD_EPROTO, "bad \xc3\x28", false, 0);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(
        proto_error_decode(&f.body, &msg, &has_version, &version, &why),
        MRD_OK);
    check_str(msg, "(message was not valid UTF-8)");

    free(long_msg);
    proto_buf_fini(&b);
}

static void
test_error_reply_special(void **state)
{
    struct proto_buf   b;
    struct proto_frame f;
    struct proto_str   msg;
    bool               has_version = false;
    int64_t            version     = 0;
    const char        *why         = NULL;
    (void) state;

    /* A node that could not read the request's type answers type 0. */
    proto_buf_init(&b, FRAME_MAX);
    proto_reply_error(
        &b, PROTO_T_NONE, MRD_EPROTO, "frame is not an array", false, 0);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_NONE);
    assert_int_equal(f.status, MRD_EPROTO);
    assert_int_equal(
        proto_error_decode(&f.body, &msg, &has_version, &version, &why),
        MRD_OK);
    check_str(msg, "frame is not an array");

    /* A node sending protocol version 3 tells us so. */
    proto_buf_reset(&b);
    proto_reply_error(&b, PROTO_T_STATS, MRD_EPROTOVERSION,
        "unsupported protocol version", true, 3);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.status, MRD_EPROTOVERSION);
    assert_int_equal(
        proto_error_decode(&f.body, &msg, &has_version, &version, &why),
        MRD_OK);
    assert_int_equal(version, 3);
    proto_buf_fini(&b);
}

static void
test_error_reply_errors(void **state)
{
    struct proto_buf b;
    char            *long_msg = fill(2000, 'm');
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    proto_reply_begin(&b, PROTO_T_READ, MRD_EIO);
    pk(&b, "M0");
    EXPECT_REP(&b, MRD_OK, NULL); /* every field is optional */
    proto_reply_begin(&b, PROTO_T_READ, MRD_EIO);
    pk(&b, "M1 u1 u1");
    EXPECT_REP(&b, MRD_EPROTO, "a value has the wrong type");
    proto_reply_begin(&b, PROTO_T_READ, MRD_EIO);
    pk(&b, "M1 u2 s", "1");
    EXPECT_REP(&b, MRD_EPROTO, "a value has the wrong type");
    proto_reply_begin(&b, PROTO_T_READ, MRD_EIO);
    pk(&b, "M1 u3 s", "1");
    EXPECT_REP(&b, MRD_EPROTO, "unknown key");
    proto_reply_begin(&b, PROTO_T_READ, MRD_EIO);
    pk(&b, "M1 u1 x", long_msg, (size_t) 1025);
    EXPECT_REP(&b, MRD_ETOOBIG, "error message is too long");
    proto_reply_begin(&b, PROTO_T_READ, MRD_EIO);
    pk(&b, "M1 u1 x", "a\0", (size_t) 2);
    EXPECT_REP(&b, MRD_EPROTO, "error message is not valid UTF-8");
    free(long_msg);
    proto_buf_fini(&b);
}

/* A READ (3 keys) or READ_LOG (2 keys) reply of n events, as a node
 * writes it. */
static void
events_reply(struct proto_buf *b, uint32_t type, uint32_t n)
{
    struct proto_events_wr w;
    char                   rec[16];

    proto_buf_reset(b);
    proto_events_reply_begin(b, type, type == PROTO_T_READ ? 3 : 2, &w);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(rec, sizeof rec, "r%u", i);
        proto_events_reply_add(b, &w, 100 + i, 1000 + i, rec, strlen(rec));
    }
    proto_events_reply_end(b, &w);
    assert_int_equal(w.count, n);
    /* The fixed array32 header, patched. */
    assert_int_equal(b->data[w.header_at], 0xdd);
    assert_int_equal(mrd_be32_get(b->data + w.header_at + 1), n);
    proto_wr_uint(b, PROTO_K_READ_NEXT);
    proto_wr_uint(b, 100 + n);
    if (type == PROTO_T_READ) {
        proto_wr_uint(b, PROTO_K_READ_VERSION);
        proto_wr_int(b, (int64_t) n - 1);
    }
    assert_int_equal(proto_buf_status(b), MRD_OK);
}

static void
test_events_reply(void **state)
{
    struct proto_buf        b;
    struct proto_frame      f;
    struct proto_events_rep rep;
    struct proto_rd         rd;
    struct proto_str        rec;
    uint64_t                pos;
    uint64_t                seq;
    const char             *why = NULL;
    char                    want[16];
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
    events_reply(&b, PROTO_T_READ, 3);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(
        proto_events_rep_decode(&f.body, PROTO_T_READ, &rep, &why), MRD_OK);
    assert_int_equal(rep.count, 3);
    assert_int_equal(rep.next, 103);
    assert_int_equal(rep.version, 2);
    proto_events_rep_begin(&rep, &rd);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(proto_events_rep_next(&rd, &pos, &seq, &rec), MRD_OK);
        assert_int_equal(pos, 100 + i);
        assert_int_equal(seq, 1000 + i);
        snprintf(want, sizeof want, "r%u", i);
        check_str(rec, want);
    }
    assert_int_equal(
        proto_events_rep_next(&rd, &pos, &seq, &rec), MRD_ENOTFOUND);
    /* A log reply, empty; and a read reply is not a log reply. */
    events_reply(&b, PROTO_T_READ_LOG, 0);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_READ_LOG);
    assert_int_equal(
        proto_events_rep_decode(&f.body, PROTO_T_READ_LOG, &rep, &why), MRD_OK);
    assert_int_equal(rep.count, 0);
    assert_int_equal(rep.next, 100);
    events_reply(&b, PROTO_T_READ, 1);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(
        proto_events_rep_decode(&f.body, PROTO_T_READ_LOG, &rep, &why),
        MRD_EPROTO);
    assert_int_equal(
        proto_events_rep_decode(&f.body, PROTO_T_INFO, &rep, &why), MRD_EPROTO);
    events_reply(&b, PROTO_T_READ, MRD_READ_COUNT_MAX);
    EXPECT_REP(&b, MRD_OK, NULL);
    proto_buf_fini(&b);
}

static void
test_events_reply_errors(void **state)
{
    struct proto_buf b;
    (void) state;

    proto_buf_init(&b, FRAME_MAX);
#define RREP(type, ...)                                                        \
    do {                                                                       \
        rep_begin(&b, (type));                                                 \
        pk(&b, __VA_ARGS__);                                                   \
    } while (0)
    RREP(PROTO_T_READ, "M3 u1 A1 A3 u0 u0 b u2 u1 u3 i-1", "r", (size_t) 1);
    EXPECT_REP(&b, MRD_OK, NULL);
    RREP(PROTO_T_READ, "M2 u1 A0 u2 u1");
    EXPECT_REP(&b, MRD_EPROTO, "a required key is missing");
    RREP(PROTO_T_READ, "M2 u2 u1 u3 i-1");
    EXPECT_REP(&b, MRD_EPROTO, "a required key is missing");
    RREP(PROTO_T_READ_LOG, "M3 u1 A0 u2 u1 u3 i-1");
    EXPECT_REP(&b, MRD_EPROTO, "unknown key");
    RREP(PROTO_T_READ, "M4 u1 A0 u2 u1 u3 i-1 u5 u0");
    EXPECT_REP(&b, MRD_EPROTO, "unknown key");
    /* Key 4, the answering node, comes with cursor reads: >= 1. */
    RREP(PROTO_T_READ, "M4 u1 A0 u2 u1 u3 i-1 u4 u0");
    EXPECT_REP(&b, MRD_EPROTO, "node is not a uint >= 1");
    RREP(PROTO_T_READ, "M4 u1 A0 u2 u1 u3 i-1 u4 u3");
    EXPECT_REP(&b, MRD_OK, NULL);
    RREP(PROTO_T_READ, "M3 u1 A0 u2 u1 u3 i-2");
    EXPECT_REP(&b, MRD_EPROTO, "invalid stream version");
    RREP(PROTO_T_READ, "M3 u1 A0 u2 i-1 u3 i-1");
    EXPECT_REP(&b, MRD_EPROTO, "next is not a uint");
    RREP(PROTO_T_READ, "M3 u1 M0 u2 u1 u3 i-1");
    EXPECT_REP(&b, MRD_EPROTO, "events is not an array");
    static const char *bad_items[]
        = { "A1 A2 u0 u0", "A1 A4 u0 u0 b N", "A1 A3 u0 u0 x", "A1 A3 i-1 u0 b",
              "A1 A3 u0 x b", "A1 u0", "A1 M1 u0 u0" };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(bad_items); i++) {
        rep_begin(&b, PROTO_T_READ_LOG);
        pk(&b, "M2 u1");
        pk(&b, bad_items[i], "r", (size_t) 1, "r", (size_t) 1);
        pk(&b, "u2 u0");
        EXPECT_REP(&b, MRD_EPROTO, "event is not [position, log_seq, record]");
    }
    /* More events than any read may return. */
    rep_begin(&b, PROTO_T_READ_LOG);
    pk(&b, "M2 u1 A", (unsigned) MRD_READ_COUNT_MAX + 1);
    for (unsigned i = 0; i <= MRD_READ_COUNT_MAX; i++) {
        pk(&b, "A3 u0 u0 b", "", (size_t) 0);
    }
    pk(&b, "u2 u0");
    EXPECT_REP(&b, MRD_EPROTO, "more events than a read allows");
    /* A record larger than any record can be. */
    char *big = fill(PROTO_RECORD_SIZE_MAX + 1, 'r');
    RREP(PROTO_T_READ_LOG, "M2 u1 A1 A3 u0 u0 b u2 u0", big,
        (size_t) PROTO_RECORD_SIZE_MAX + 1);
    EXPECT_REP(&b, MRD_EPROTO, "record is too large");
    free(big);
#undef RREP
    proto_buf_fini(&b);
}

/* ---------------------------------------------------------------- pull -- */

/* A vv of two entries: {1: 5, 7: 0x0102030405060708}. */
#define PULL_VV2                                                               \
    "\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x05"                                     \
    "\0\0\0\0\0\0\0\x07\x01\x02\x03\x04\x05\x06\x07\x08"

/* A vv of n entries into out (16 * n bytes): origin i + 1, seq 2 * i + 1. */
static void
vv_make(uint8_t *out, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        mrd_be64_put(out + 16 * i, i + 1);
        mrd_be64_put(out + 16 * i + 8, 2 * i + 1);
    }
}

static void
test_vv(void **state)
{
    uint8_t         *vv = malloc(16 * (PROTO_VV_ENTRIES_MAX + 1));
    const char      *why;
    uint64_t         origin;
    uint64_t         seq;
    struct proto_str s = { PULL_VV2, 32 };
    (void) state;

    assert_non_null(vv);
    assert_int_equal(proto_vv_check(s, &why), MRD_OK);
    assert_int_equal(proto_vv_count(s), 2);
    proto_vv_at(s, 0, &origin, &seq);
    assert_int_equal(origin, 1);
    assert_int_equal(seq, 5);
    proto_vv_at(s, 1, &origin, &seq);
    assert_int_equal(origin, 7);
    assert_true(seq == 0x0102030405060708u);
    s = (struct proto_str) { NULL, 0 };
    assert_int_equal(proto_vv_check(s, &why), MRD_OK);
    assert_int_equal(proto_vv_count(s), 0);
    /* Lengths that are not whole entries. */
    for (uint32_t len = 1; len < 48; len++) {
        s = (struct proto_str) {
            PULL_VV2 "\0\0\0\0\0\0\0\x08\0\0\0\0\0\0\0\x01", len
        };
        why = NULL;
        assert_int_equal(
            proto_vv_check(s, &why), len % 16 == 0 ? MRD_OK : MRD_EPROTO);
        if (len % 16 != 0) {
            assert_string_equal(
                why, "version vector length is not a multiple of 16");
        }
    }
    /* Exactly the limit, and one past it. */
    vv_make(vv, PROTO_VV_ENTRIES_MAX + 1);
    s = (struct proto_str) { (const char *) vv, 16 * PROTO_VV_ENTRIES_MAX };
    assert_int_equal(proto_vv_check(s, &why), MRD_OK);
    assert_int_equal(proto_vv_count(s), PROTO_VV_ENTRIES_MAX);
    s.len += 16;
    assert_int_equal(proto_vv_check(s, &why), MRD_EPROTO);
    assert_string_equal(
        why, "version vector has more than PROTO_VV_ENTRIES_MAX entries");
    /* Unsorted, duplicate, zero origin, zero seq. */
    s = (struct proto_str) { (const char *) vv, 48 };
    mrd_be64_put(vv + 16, 3);
    assert_int_equal(proto_vv_check(s, &why), MRD_EPROTO);
    assert_string_equal(
        why, "version vector origins are not strictly increasing");
    mrd_be64_put(vv + 16, 1);
    assert_int_equal(proto_vv_check(s, &why), MRD_EPROTO);
    assert_string_equal(
        why, "version vector origins are not strictly increasing");
    vv_make(vv, 3);
    mrd_be64_put(vv, 0);
    assert_int_equal(proto_vv_check(s, &why), MRD_EPROTO);
    assert_string_equal(why, "version vector has a zero origin or seq");
    vv_make(vv, 3);
    mrd_be64_put(vv + 40, 0);
    assert_int_equal(proto_vv_check(s, &why), MRD_EPROTO);
    assert_string_equal(why, "version vector has a zero origin or seq");
    vv_make(vv, 3);
    assert_int_equal(proto_vv_check(s, &why), MRD_OK);
    free(vv);
}

static void
test_topology_msgs(void **state)
{
    struct proto_buf   b;
    struct proto_frame f;
    struct proto_str   sig;
    uint64_t           have, version;
    const char        *why = NULL;
    (void) state;

    proto_buf_init(&b, PROTO_TOPOLOGY_SIZE_MAX + 4096);
    assert_int_equal(proto_topo_req_encode(&b, 7), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_TOPOLOGY);
    assert_int_equal(proto_topo_req_decode(&f.body, &have, &why), MRD_OK);
    assert_int_equal(have, 7);
    proto_buf_reset(&b);
    assert_int_equal(proto_topo_req_encode(&b, 0), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_topo_req_decode(&f.body, &have, &why), MRD_OK);
    assert_int_equal(have, 0);
    /* The answer carries the document only when it is newer. */
    proto_buf_reset(&b);
    proto_topo_rep_encode(&b, 9, (struct proto_str) { "doc", 3 });
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(
        proto_topo_rep_decode(&f.body, &version, &sig, &why), MRD_OK);
    assert_int_equal(version, 9);
    assert_int_equal(sig.len, 3);
    proto_buf_reset(&b);
    proto_topo_rep_encode(&b, 9, (struct proto_str) { NULL, 0 });
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(
        proto_topo_rep_decode(&f.body, &version, &sig, &why), MRD_OK);
    assert_int_equal(sig.len, 0);
    /* A push, and what a push's encoder refuses. */
    proto_buf_reset(&b);
    assert_int_equal(
        proto_topo_push_encode(&b, (struct proto_str) { "doc", 3 }), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_topo_push_decode(&f.body, &sig, &why), MRD_OK);
    assert_memory_equal(sig.ptr, "doc", 3);
    assert_int_equal(
        proto_topo_push_encode(&b, (struct proto_str) { NULL, 0 }), MRD_EINVAL);
    assert_int_equal(
        proto_topo_push_encode(
            &b, (struct proto_str) { "x", PROTO_TOPOLOGY_SIZE_MAX + 1 }),
        MRD_ETOOBIG);
    proto_buf_reset(&b);
    proto_topo_push_rep_encode(&b, 4);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(
        proto_topo_push_rep_decode(&f.body, &version, &why), MRD_OK);
    assert_int_equal(version, 4);
#define TREQ(type, ...)                                                        \
    do {                                                                       \
        req_begin(&b, (type));                                                 \
        pk(&b, __VA_ARGS__);                                                   \
    } while (0)
    TREQ(PROTO_T_TOPOLOGY, "M1 u1 s", "x");
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    TREQ(PROTO_T_TOPOLOGY, "M1 u2 u1");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    TREQ(PROTO_T_TOPOLOGY_PUSH, "M0");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    TREQ(PROTO_T_TOPOLOGY_PUSH, "M1 u2 b", "", (size_t) 0);
    EXPECT_REQ(&b, MRD_EPROTO, "signed topology is empty");
    TREQ(PROTO_T_TOPOLOGY_PUSH, "M2 u1 u1 u2 b", "d", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    TREQ(PROTO_T_TOPOLOGY_PUSH, "M1 u2 b", "d", (size_t) 1);
    EXPECT_REQ(&b, MRD_OK, NULL);
    /* SWIM: a sender and 1..1024 bytes of message. */
    TREQ(PROTO_T_SWIM, "M2 u1 u3 u2 b", "m", (size_t) 1);
    EXPECT_REQ(&b, MRD_OK, NULL);
    TREQ(PROTO_T_SWIM, "M2 u1 u0 u2 b", "m", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "swim message from node 0");
    TREQ(PROTO_T_SWIM, "M2 u1 u3 u2 b", "", (size_t) 0);
    EXPECT_REQ(
        &b, MRD_EPROTO, "swim message is not 1..PROTO_SWIM_MSG_SIZE_MAX bytes");
    TREQ(PROTO_T_SWIM, "M1 u1 u3");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    /* FENCE: a duration (0 lifts), whole 8-byte peer ids, none 0. */
    TREQ(PROTO_T_FENCE, "M1 u1 u1000");
    EXPECT_REQ(&b, MRD_OK, NULL);
    TREQ(PROTO_T_FENCE, "M3 u1 u0 u2 T u3 b", "\0\0\0\0\0\0\0\x02", (size_t) 8);
    EXPECT_REQ(&b, MRD_OK, NULL);
    TREQ(PROTO_T_FENCE, "M0");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    TREQ(PROTO_T_FENCE, "M1 u1 u86400001");
    EXPECT_REQ(&b, MRD_EPROTO, "fence lasts longer than PROTO_FENCE_MS_MAX");
    TREQ(PROTO_T_FENCE, "M2 u1 u5 u3 b", "\0\0\0\0\0\0\x02", (size_t) 7);
    EXPECT_REQ(&b, MRD_EPROTO,
        "fence peers are not 0..PROTO_FENCE_PEERS_MAX 8-byte ids");
    TREQ(PROTO_T_FENCE, "M2 u1 u5 u3 b", "\0\0\0\0\0\0\0\0", (size_t) 8);
    EXPECT_REQ(&b, MRD_EPROTO, "fence names node 0");
    TREQ(PROTO_T_FENCE, "M2 u1 u5 u9 u1");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    /* DIGEST: a shard, and a cut that is a valid vector. */
    TREQ(PROTO_T_DIGEST, "M1 u1 u3");
    EXPECT_REQ(&b, MRD_OK, NULL);
    TREQ(PROTO_T_DIGEST, "M2 u1 u3 u2 b", "", (size_t) 0);
    EXPECT_REQ(&b, MRD_OK, NULL);
    TREQ(PROTO_T_DIGEST, "M2 u1 u3 u2 b", "0123456789abcde", (size_t) 15);
    EXPECT_REQ(&b, MRD_EPROTO, "version vector length is not a multiple of 16");
    TREQ(PROTO_T_DIGEST, "M0");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
#undef TREQ
    proto_buf_fini(&b);
}

static void
test_hint_req(void **state)
{
    struct proto_buf      b;
    struct proto_frame    f;
    struct proto_hint_req in = { .from = 4, .shards = { "\x01\x80", 2 } };
    struct proto_hint_req out;
    const char           *why = NULL;
    (void) state;

    proto_buf_init(&b, 4096);
    assert_int_equal(proto_hint_req_encode(&b, &in), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_HINT);
    assert_int_equal(proto_hint_req_decode(&f.body, &out, &why), MRD_OK);
    assert_int_equal(out.from, 4);
    assert_int_equal(out.shards.len, 2);
    assert_memory_equal(out.shards.ptr, "\x01\x80", 2);
    /* Refused by the encoder: node 0, no bitmap, one too long. */
    struct proto_hint_req bad = in;
    bad.from                  = 0;
    assert_int_equal(proto_hint_req_encode(&b, &bad), MRD_EINVAL);
    bad            = in;
    bad.shards.len = 0;
    assert_int_equal(proto_hint_req_encode(&b, &bad), MRD_EINVAL);
    bad.shards
        = (struct proto_str) { PULL_VV2, PROTO_HINT_SHARDS_SIZE_MAX + 1 };
    assert_int_equal(proto_hint_req_encode(&b, &bad), MRD_EINVAL);
#define HINT(...)                                                              \
    do {                                                                       \
        req_begin(&b, PROTO_T_HINT);                                           \
        pk(&b, __VA_ARGS__);                                                   \
    } while (0)
    HINT("M2 u1 u3 u2 b", "\x01", (size_t) 1);
    EXPECT_REQ(&b, MRD_OK, NULL);
    HINT("M1 u1 u3");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    HINT("M2 u1 u0 u2 b", "\x01", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "hint from node 0");
    HINT("M2 u1 u3 u2 b", "", (size_t) 0);
    EXPECT_REQ(&b, MRD_EPROTO,
        "hint shard bitmap is not 1..PROTO_HINT_SHARDS_SIZE_MAX bytes");
    HINT("M2 u1 u3 u2 b", PULL_VV2, (size_t) 33);
    EXPECT_REQ(&b, MRD_EPROTO,
        "hint shard bitmap is not 1..PROTO_HINT_SHARDS_SIZE_MAX bytes");
    HINT("M3 u1 u3 u2 b u3 u0", "\x01", (size_t) 1);
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
#undef HINT
    proto_buf_fini(&b);
}

static void
test_pull_req(void **state)
{
    struct proto_buf      b;
    struct proto_frame    f;
    struct proto_pull_req in = {
        .shard = 7, .after = 99, .count = 3, .vv = { PULL_VV2, 32 }, .from = 2
    };
    struct proto_pull_req out;
    const char           *why = NULL;
    uint8_t              *vv  = malloc(16 * (PROTO_VV_ENTRIES_MAX + 1));
    (void) state;

    assert_non_null(vv);
    proto_buf_init(&b, FRAME_MAX);
    assert_int_equal(proto_pull_req_encode(&b, &in), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_PULL);
    assert_int_equal(proto_pull_req_decode(&f.body, &out, &why), MRD_OK);
    assert_true(proto_rd_done(&f.body));
    assert_int_equal(out.shard, 7);
    assert_int_equal(out.after, 99);
    assert_int_equal(out.count, 3);
    assert_int_equal(out.from, 2);
    assert_int_equal(out.vv.len, 32);
    assert_memory_equal(out.vv.ptr, PULL_VV2, 32);
    /* Defaults left out: the smallest request. */
    in = (struct proto_pull_req) { .shard = 0, .count = 1, .from = 1 };
    proto_buf_reset(&b);
    assert_int_equal(proto_pull_req_encode(&b, &in), MRD_OK);
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, "\x93\x01\x08\x83\x01\x00\x03\x01\x05\x01", 10);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_pull_req_decode(&f.body, &out, &why), MRD_OK);
    assert_int_equal(out.after, 0);
    assert_int_equal(out.vv.len, 0);
    /* Anti-entropy keys: the skip set and a digest, opaque here. */
    in.skip   = 0x5u;
    in.bytes  = 12345;
    in.digest = (struct proto_str) { "\x93\x01\x90\x90", 4 };
    proto_buf_reset(&b);
    assert_int_equal(proto_pull_req_encode(&b, &in), MRD_OK);
    assert_int_equal(proto_request_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_pull_req_decode(&f.body, &out, &why), MRD_OK);
    assert_int_equal(out.skip, 0x5u);
    assert_int_equal(out.bytes, 12345);
    check_str(out.digest, "\x93\x01\x90\x90");
    in.skip   = 0;
    in.bytes  = 0;
    in.digest = (struct proto_str) { NULL, 0 };
    /* A vv at its limit fits. */
    vv_make(vv, PROTO_VV_ENTRIES_MAX + 1);
    in.vv = (struct proto_str) { (const char *) vv, 16 * PROTO_VV_ENTRIES_MAX };
    proto_buf_reset(&b);
    assert_int_equal(proto_pull_req_encode(&b, &in), MRD_OK);
    EXPECT_REQ(&b, MRD_OK, NULL);
    /* The encoder refuses what a peer would, and writes nothing. */
    const struct {
        struct proto_pull_req req;
        int                   rv;
    } bad[] = {
        { { .count = 0, .from = 1 }, MRD_EINVAL },
        { { .count = MRD_READ_COUNT_MAX + 1, .from = 1 }, MRD_ETOOBIG },
        { { .count = 1, .from = 0 }, MRD_EINVAL },
        { { .count = 1, .from = 1, .vv = { PULL_VV2, 31 } }, MRD_EINVAL },
        { { .count = 1, .from = 1, .vv = { NULL, 16 } }, MRD_EINVAL },
        { { .count  = 1,
              .from = 1,
              .vv   = { (const char *) vv, 16 * PROTO_VV_ENTRIES_MAX + 16 } },
            MRD_EINVAL },
        { { .count = 1, .from = 1, .vv = { PULL_VV2 PULL_VV2, 64 } },
            MRD_EINVAL },
        { { .count = 1, .from = 1, .digest = { NULL, 3 } }, MRD_EINVAL },
        { { .count    = 1,
              .from   = 1,
              .digest = { (const char *) vv, PROTO_DIGEST_SIZE_MAX + 1 } },
            MRD_EINVAL },
    };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(bad); i++) {
        proto_buf_reset(&b);
        assert_int_equal(proto_pull_req_encode(&b, &bad[i].req), bad[i].rv);
        assert_int_equal(b.len, 0);
    }

#define PULL(...)                                                              \
    do {                                                                       \
        req_begin(&b, PROTO_T_PULL);                                           \
        pk(&b, __VA_ARGS__);                                                   \
    } while (0)
    PULL("M3 u1 u0 u3 u1 u5 u1");
    EXPECT_REQ(&b, MRD_OK, NULL);
    PULL("M5 u5 u9 u4 b u3 u1 u2 u0 u1 u", PULL_VV2, (size_t) 32,
        (uint64_t) UINT32_MAX);
    EXPECT_REQ(&b, MRD_OK, NULL);
    PULL("M4 u1 u0 u3 u1 u5 u1 u4 b", "", (size_t) 0);
    EXPECT_REQ(&b, MRD_OK, NULL);
    PULL("M2 u3 u1 u5 u1");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    PULL("M2 u1 u1 u5 u1");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    PULL("M2 u1 u1 u3 u1");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    PULL("M0");
    EXPECT_REQ(&b, MRD_EPROTO, "a required key is missing");
    PULL("M3 u1 u u3 u1 u5 u1", (uint64_t) UINT32_MAX + 1);
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    PULL("M3 u1 u0 u3 u0 u5 u1");
    EXPECT_REQ(&b, MRD_EPROTO, "count is 0");
    PULL("M3 u1 u0 u3 u10001 u5 u1");
    EXPECT_REQ(&b, MRD_ETOOBIG, NULL);
    PULL("M3 u1 u0 u3 u1 u5 u0");
    EXPECT_REQ(&b, MRD_EPROTO, "from is 0");
    PULL("M3 u1 u0 u3 u1 u5 i-1");
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    PULL("M4 u1 u0 u3 u1 u5 u1 u11 u0");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    /* Key 10, the asker's byte grant: >= 1. */
    PULL("M4 u1 u0 u3 u1 u5 u1 u10 u0");
    EXPECT_REQ(&b, MRD_EPROTO, "bytes is 0");
    PULL("M4 u1 u0 u3 u1 u5 u1 u10 u", (uint64_t) 1 << 20);
    EXPECT_REQ(&b, MRD_OK, NULL);
    /* Key 8, the skip set: a uint32; key 9, the digest: 1..16 KiB. */
    PULL("M4 u1 u0 u3 u1 u5 u1 u8 u", (uint64_t) UINT32_MAX);
    EXPECT_REQ(&b, MRD_OK, NULL);
    PULL("M4 u1 u0 u3 u1 u5 u1 u8 u", (uint64_t) UINT32_MAX + 1);
    EXPECT_REQ(&b, MRD_EPROTO, NULL);
    PULL("M4 u1 u0 u3 u1 u5 u1 u9 b", "", (size_t) 0);
    EXPECT_REQ(&b, MRD_EPROTO, "digest is not 1..PROTO_DIGEST_SIZE_MAX bytes");
    PULL("M4 u1 u0 u3 u1 u5 u1 u9 b", "x", (size_t) 1);
    EXPECT_REQ(&b, MRD_OK, NULL);
    /* Key 7, the asker's region: 1..PROTO_REGION_SIZE_MAX bytes. */
    PULL("M4 u1 u0 u3 u1 u5 u1 u7 s", "");
    EXPECT_REQ(&b, MRD_EPROTO, "region is not 1..PROTO_REGION_SIZE_MAX bytes");
    PULL("M4 u1 u0 u3 u1 u5 u1 u7 s", "eu-west");
    EXPECT_REQ(&b, MRD_OK, NULL);
    /* Key 6, the cluster id: a bin of exactly 16 bytes. */
    PULL("M4 u1 u0 u3 u1 u5 u1 u6 u0");
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    PULL("M4 u1 u0 u3 u1 u5 u1 u6 b", "short", (size_t) 5);
    EXPECT_REQ(&b, MRD_EPROTO, "cluster id is not 16 bytes");
    PULL("M4 u1 u0 u3 u1 u5 u1 u0 u0");
    EXPECT_REQ(&b, MRD_EPROTO, "unknown key");
    PULL("M4 u1 u0 u3 u1 u5 u1 u1 u0");
    EXPECT_REQ(&b, MRD_EPROTO, "duplicate key");
    PULL("M4 u1 u0 u3 u1 u5 u1 u2 s", "x");
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    PULL("M4 u1 u0 u3 u1 u5 u1 u4 x", PULL_VV2, (size_t) 32);
    EXPECT_REQ(&b, MRD_EPROTO, "a value has the wrong type");
    PULL("M4 u1 u0 u3 u1 u5 u1 u4 b", PULL_VV2, (size_t) 17);
    EXPECT_REQ(&b, MRD_EPROTO, "version vector length is not a multiple of 16");
    PULL("M4 u1 u0 u3 u1 u5 u1 u4 b", PULL_VV2 PULL_VV2, (size_t) 64);
    EXPECT_REQ(
        &b, MRD_EPROTO, "version vector origins are not strictly increasing");
    vv_make(vv, 2);
    mrd_be64_put(vv + 24, 0);
    PULL("M4 u1 u0 u3 u1 u5 u1 u4 b", vv, (size_t) 32);
    EXPECT_REQ(&b, MRD_EPROTO, "version vector has a zero origin or seq");
    vv_make(vv, PROTO_VV_ENTRIES_MAX + 1);
    PULL("M4 u1 u0 u3 u1 u5 u1 u4 b", vv,
        (size_t) 16 * (PROTO_VV_ENTRIES_MAX + 1));
    EXPECT_REQ(&b, MRD_EPROTO,
        "version vector has more than PROTO_VV_ENTRIES_MAX entries");
#undef PULL
    free(vv);
    proto_buf_fini(&b);
}

/* A PULL reply of n events, as a node writes it. */
static void
pull_reply(struct proto_buf *b, uint32_t n, uint64_t scanned, bool end,
    const void *vv, size_t vv_len)
{
    struct proto_events_wr w;
    char                   rec[16];

    proto_buf_reset(b);
    proto_events_reply_begin(b, PROTO_T_PULL, 4, &w);
    for (uint32_t i = 0; i < n; i++) {
        snprintf(rec, sizeof rec, "r%u", i);
        proto_events_reply_add(b, &w, 100 + i, 1000 + i, rec, strlen(rec));
    }
    proto_events_reply_end(b, &w);
    proto_pull_rep_finish(b, scanned, end, vv, vv_len);
}

static void
test_pull_rep(void **state)
{
    struct proto_buf        b;
    struct proto_frame      f;
    struct proto_pull_rep   rep;
    struct proto_events_rep log;
    struct proto_rd         rd;
    struct proto_str        rec;
    uint64_t                pos;
    uint64_t                seq;
    const char             *why = NULL;
    char                    want[16];
    uint8_t                *vv = malloc(16 * (PROTO_VV_ENTRIES_MAX + 1));
    (void) state;

    assert_non_null(vv);
    proto_buf_init(&b, FRAME_MAX);
    /* Events, the end and the peer's vv. */
    pull_reply(&b, 3, 1010, true, PULL_VV2, 32);
    assert_int_equal(proto_buf_status(&b), MRD_OK);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(f.type, PROTO_T_PULL);
    assert_int_equal(proto_pull_rep_decode(&f.body, &rep, &why), MRD_OK);
    assert_true(proto_rd_done(&f.body));
    assert_int_equal(rep.count, 3);
    assert_int_equal(rep.scanned, 1010);
    assert_true(rep.end);
    assert_int_equal(rep.vv.len, 32);
    assert_memory_equal(rep.vv.ptr, PULL_VV2, 32);
    proto_pull_rep_begin(&rep, &rd);
    for (uint32_t i = 0; i < 3; i++) {
        assert_int_equal(proto_events_rep_next(&rd, &pos, &seq, &rec), MRD_OK);
        assert_int_equal(pos, 100 + i);
        assert_int_equal(seq, 1000 + i);
        snprintf(want, sizeof want, "r%u", i);
        check_str(rec, want);
    }
    assert_int_equal(
        proto_events_rep_next(&rd, &pos, &seq, &rec), MRD_ENOTFOUND);
    /* Not the end: no vv. Empty and at the end: an empty vv. */
    pull_reply(&b, 2, 5000, false, NULL, 0);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_pull_rep_decode(&f.body, &rep, &why), MRD_OK);
    assert_int_equal(rep.count, 2);
    assert_int_equal(rep.scanned, 5000);
    assert_false(rep.end);
    assert_int_equal(rep.vv.len, 0);
    pull_reply(&b, 0, 0, true, NULL, 0);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(proto_pull_rep_decode(&f.body, &rep, &why), MRD_OK);
    assert_int_equal(rep.count, 0);
    assert_true(rep.end);
    proto_pull_rep_begin(&rep, &rd);
    assert_int_equal(
        proto_events_rep_next(&rd, &pos, &seq, &rec), MRD_ENOTFOUND);
    /* Every entry a vv may have; one more poisons the frame. */
    vv_make(vv, PROTO_VV_ENTRIES_MAX + 1);
    pull_reply(
        &b, MRD_READ_COUNT_MAX, 1u << 20, true, vv, 16 * PROTO_VV_ENTRIES_MAX);
    EXPECT_REP(&b, MRD_OK, NULL);
    pull_reply(&b, 1, 1, true, vv, 16 * (PROTO_VV_ENTRIES_MAX + 1));
    assert_int_equal(proto_buf_status(&b), MRD_ETOOBIG);
    /* The anti-entropy keys: blocked on an event, and a digest. */
    {
        struct proto_events_wr w;
        proto_buf_reset(&b);
        proto_events_reply_begin(&b, PROTO_T_PULL, PROTO_PULL_REP_KEYS_AE, &w);
        proto_events_reply_add(&b, &w, 1, 7, "r", 1);
        proto_events_reply_end(&b, &w);
        proto_pull_rep_finish(&b, 9, false, NULL, 0);
        proto_pull_rep_finish_ae(&b, true, 3, 44, "dg", 2);
        assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
        assert_int_equal(proto_pull_rep_decode(&f.body, &rep, &why), MRD_OK);
        assert_true(rep.blocked);
        assert_int_equal(rep.blocked_origin, 3);
        assert_int_equal(rep.blocked_seq, 44);
        check_str(rep.digest, "dg");
        /* Not blocked, no digest. */
        proto_buf_reset(&b);
        proto_events_reply_begin(&b, PROTO_T_PULL, PROTO_PULL_REP_KEYS_AE, &w);
        proto_events_reply_end(&b, &w);
        proto_pull_rep_finish(&b, 9, true, NULL, 0);
        proto_pull_rep_finish_ae(&b, false, 0, 0, NULL, 0);
        assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
        assert_int_equal(proto_pull_rep_decode(&f.body, &rep, &why), MRD_OK);
        assert_false(rep.blocked);
        assert_int_equal(rep.blocked_origin, 0);
        assert_int_equal(rep.digest.len, 0);
        /* A digest over the limit poisons the frame. */
        proto_buf_reset(&b);
        proto_events_reply_begin(&b, PROTO_T_PULL, PROTO_PULL_REP_KEYS_AE, &w);
        proto_events_reply_end(&b, &w);
        proto_pull_rep_finish(&b, 9, true, NULL, 0);
        proto_pull_rep_finish_ae(
            &b, false, 0, 0, vv, PROTO_DIGEST_SIZE_MAX + 1);
        assert_int_equal(proto_buf_status(&b), MRD_ETOOBIG);
    }
    /* A PULL reply is not a log reply. */
    pull_reply(&b, 1, 1, true, NULL, 0);
    assert_int_equal(proto_reply_open(b.data, b.len, &f, &why), MRD_OK);
    assert_int_equal(
        proto_events_rep_decode(&f.body, PROTO_T_READ_LOG, &log, &why),
        MRD_EPROTO);

#define PREP(...)                                                              \
    do {                                                                       \
        rep_begin(&b, PROTO_T_PULL);                                           \
        pk(&b, __VA_ARGS__);                                                   \
    } while (0)
    PREP(
        "M4 u1 A1 A3 u0 u0 b u2 u1 u3 F u4 b", "r", (size_t) 1, "", (size_t) 0);
    EXPECT_REP(&b, MRD_OK, NULL);
    PREP("M4 u4 b u3 T u2 u1 u1 A0", PULL_VV2, (size_t) 32);
    EXPECT_REP(&b, MRD_OK, NULL);
    PREP("M3 u2 u1 u3 T u4 b", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "a required key is missing");
    PREP("M3 u1 A0 u3 T u4 b", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "a required key is missing");
    PREP("M3 u1 A0 u2 u1 u4 b", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "a required key is missing");
    PREP("M3 u1 A0 u2 u1 u3 T");
    EXPECT_REP(&b, MRD_EPROTO, "a required key is missing");
    PREP("M5 u1 A0 u2 u1 u3 T u4 b u8 u0", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "unknown key");
    /* Blocked: never with end, always on an event, which has no 0. */
    PREP("M6 u1 A0 u2 u1 u3 F u4 b u5 T u6 b", "", (size_t) 0,
        "\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\2", (size_t) 16);
    EXPECT_REP(&b, MRD_OK, NULL);
    PREP("M6 u1 A0 u2 u1 u3 T u4 b u5 T u6 b", "", (size_t) 0,
        "\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\2", (size_t) 16);
    EXPECT_REP(&b, MRD_EPROTO,
        "blocked with end, or without the event it is blocked on");
    PREP("M5 u1 A0 u2 u1 u3 F u4 b u5 T", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO,
        "blocked with end, or without the event it is blocked on");
    PREP("M6 u1 A0 u2 u1 u3 F u4 b u5 F u6 b", "", (size_t) 0,
        "\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\2", (size_t) 16);
    EXPECT_REP(&b, MRD_EPROTO, "blocked_on without blocked");
    PREP("M6 u1 A0 u2 u1 u3 F u4 b u5 T u6 b", "", (size_t) 0,
        "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\2", (size_t) 16);
    EXPECT_REP(&b, MRD_EPROTO, "blocked_on has a 0");
    PREP("M6 u1 A0 u2 u1 u3 F u4 b u5 T u6 b", "", (size_t) 0, "abc",
        (size_t) 3);
    EXPECT_REP(&b, MRD_EPROTO, "blocked_on is not an empty or 16-byte bin");
    PREP("M5 u1 A0 u2 u1 u3 T u4 b u5 u1", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "blocked is not a bool");
    PREP("M5 u1 A0 u2 u1 u3 T u4 b u7 u1", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "digest is not a bin");
    PREP("M4 u1 A0 u2 u1 u3 T u3 F");
    EXPECT_REP(&b, MRD_EPROTO, "duplicate key");
    PREP("M4 u1 A0 u2 i-1 u3 T u4 b", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "scanned is not a uint");
    PREP("M4 u1 A0 u2 u1 u3 u1 u4 b", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "end is not a bool");
    PREP("M4 u1 A0 u2 u1 u3 T u4 x", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "version vector is not a bin");
    PREP("M4 u1 A0 u2 u1 u3 T u4 N");
    EXPECT_REP(&b, MRD_EPROTO, "version vector is not a bin");
    PREP("M4 u1 M0 u2 u1 u3 T u4 b", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "events is not an array");
    PREP("M4 u1 A1 A2 u0 u0 u2 u1 u3 T u4 b", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "event is not [position, log_seq, record]");
    PREP("M4 u1 A0 u2 u1 u3 F u4 b", PULL_VV2, (size_t) 32);
    EXPECT_REP(&b, MRD_EPROTO, "version vector in a reply that did not end");
    PREP("M4 u1 A0 u2 u1 u3 T u4 b", PULL_VV2, (size_t) 20);
    EXPECT_REP(&b, MRD_EPROTO, "version vector length is not a multiple of 16");
    PREP("M4 u1 A0 u2 u1 u3 T u4 b", PULL_VV2 PULL_VV2, (size_t) 64);
    EXPECT_REP(
        &b, MRD_EPROTO, "version vector origins are not strictly increasing");
    vv_make(vv, 1);
    mrd_be64_put(vv + 8, 0);
    PREP("M4 u1 A0 u2 u1 u3 T u4 b", vv, (size_t) 16);
    EXPECT_REP(&b, MRD_EPROTO, "version vector has a zero origin or seq");
    vv_make(vv, PROTO_VV_ENTRIES_MAX + 1);
    PREP("M4 u1 A0 u2 u1 u3 T u4 b", vv,
        (size_t) 16 * (PROTO_VV_ENTRIES_MAX + 1));
    EXPECT_REP(&b, MRD_EPROTO,
        "version vector has more than PROTO_VV_ENTRIES_MAX entries");
    /* The item limits of READ_LOG hold too. */
    rep_begin(&b, PROTO_T_PULL);
    pk(&b, "M4 u1 A", (unsigned) MRD_READ_COUNT_MAX + 1);
    for (unsigned i = 0; i <= MRD_READ_COUNT_MAX; i++) {
        pk(&b, "A3 u0 u0 b", "", (size_t) 0);
    }
    pk(&b, "u2 u0 u3 T u4 b", "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "more events than a read allows");
    char *big = fill(PROTO_RECORD_SIZE_MAX + 1, 'r');
    PREP("M4 u1 A1 A3 u0 u0 b u2 u0 u3 T u4 b", big,
        (size_t) PROTO_RECORD_SIZE_MAX + 1, "", (size_t) 0);
    EXPECT_REP(&b, MRD_EPROTO, "record is too large");
    free(big);
#undef PREP
    free(vv);
    proto_buf_fini(&b);
}

/* ------------------------------------------- one of every valid frame -- */

#define SAMPLES_MAX 20

struct sample {
    uint8_t *data;
    size_t   len;
    bool     reply;
};

static int sample_encode_reply(int k, struct proto_buf *b);

/* Encodes valid frame number k with its own encoder; MRD_ENOTFOUND past
 * the last kind. Frames SAMPLE_REPLY_FIRST and on are replies. */
#define SAMPLE_REPLY_FIRST 8
static int
sample_encode(int k, struct proto_buf *b)
{
    static const mrd_meta_entry meta[] = { { "a", "1" }, { "bb", "" } };
    static const mrd_event_in   evs[]  = { { .type             = "T1",
                                               .data           = "xyz",
                                               .data_size      = 3,
                                               .content_type   = "c/t",
                                               .correlation_id = "co",
                                               .causation_id   = "ca",
                                               .meta           = meta,
                                               .meta_count     = 2 },
           { .type = "T2" } };
    const struct proto_read_req rr
        = { .stream = { "s", 1 }, .from = 5, .count = 10, .wait_ms = 100 };
    const struct proto_log_req   lr = { .shard = 2, .after = 7, .count = 9 };
    const struct proto_state_req sr
        = { .stream = { "st", 2 }, .field = { "visits", 6 } };
    const struct proto_str      ops[] = { { "\x92\x90\x90", 3 }, { NULL, 0 } };
    const struct proto_pull_req pr    = {
           .shard = 1, .after = 4, .count = 100, .vv = { PULL_VV2, 32 }, .from = 3
    };

    switch (k) {
    case 0:
        return proto_append_req_encode(b, "st", 2, 3, "id", 2, evs, ops, 2);
    case 1:
        return proto_read_req_encode(b, &rr);
    case 2:
        return proto_log_req_encode(b, &lr);
    case 3:
        return proto_info_req_encode(b, "st", 2);
    case 4:
        proto_empty_req_encode(b, PROTO_T_NODE_INFO);
        break;
    case 5:
        proto_empty_req_encode(b, PROTO_T_STATS);
        break;
    case 6:
        return proto_state_req_encode(b, &sr);
    case 7:
        return proto_pull_req_encode(b, &pr);
    default:
        return sample_encode_reply(k, b);
    }
    return proto_buf_status(b);
}

/* The replies among the sample frames: SAMPLE_REPLY_FIRST and on. */
static int
sample_encode_reply(int k, struct proto_buf *b)
{
    static const struct proto_stat stats[] = { { "a", 1 }, { "bb", 300 } };
    const struct proto_append_rep  ar      = { .origin = 1,
              .seq                                     = 2,
              .first_pos                               = 3,
              .version                                 = 4,
              .count                                   = 2,
              .hlc                                     = 5 };
    const mrd_stream_info          si      = { 1, 6, 7, 3 };
    const struct proto_state_rep   st      = { 4, { "\x93\x01\x90\x90", 4 } };
    const mrd_node_info            ni      = { .node_id = 1,
                        .shard_count                    = 2,
                        .protocol_version               = 1,
                        .frame_size_max                 = 4096,
                        .version                        = "0.1.0" };

    switch (k) {
    case 8:
        proto_append_rep_encode(b, &ar);
        break;
    case 9: {
        struct proto_events_wr w;
        proto_events_reply_begin(b, PROTO_T_READ, 3, &w);
        proto_events_reply_add(b, &w, 1, 2, "rec", 3);
        proto_events_reply_add(b, &w, 2, 3, "", 0);
        proto_events_reply_end(b, &w); /* no patch once the frame is dead */
        proto_wr_uint(b, PROTO_K_READ_NEXT);
        proto_wr_uint(b, 3);
        proto_wr_uint(b, PROTO_K_READ_VERSION);
        proto_wr_int(b, 1);
        break;
    }
    case 10: {
        struct proto_events_wr w;
        proto_events_reply_begin(b, PROTO_T_READ_LOG, 2, &w);
        proto_events_reply_end(b, &w);
        proto_wr_uint(b, PROTO_K_LOG_LAST_SEQ);
        proto_wr_uint(b, 0);
        break;
    }
    case 11:
        proto_info_rep_encode(b, &si);
        break;
    case 12:
        proto_node_rep_encode(b, &ni);
        break;
    case 13:
        proto_stats_rep_encode(b, stats, 2);
        break;
    case 14:
        proto_reply_error(b, PROTO_T_APPEND, MRD_EVERSION, "no", true, 4);
        break;
    case 15:
        proto_state_rep_encode(b, &st);
        break;
    case 16: {
        struct proto_events_wr w;
        proto_events_reply_begin(b, PROTO_T_PULL, 4, &w);
        proto_events_reply_add(b, &w, 5, 6, "rec", 3);
        proto_events_reply_end(b, &w);
        proto_pull_rep_finish(b, 9, true, PULL_VV2, 32);
        break;
    }
    case 17: {
        struct proto_events_wr w;
        proto_events_reply_begin(b, PROTO_T_PULL, 4, &w);
        proto_events_reply_end(b, &w);
        proto_pull_rep_finish(b, 4, false, NULL, 0);
        break;
    }
    default:
        return MRD_ENOTFOUND;
    }
    return proto_buf_status(b);
}

/* Builds one valid frame of every kind, each in its own allocation so that
 * ASan sees any read past its end. */
static size_t
samples_make(struct sample *out)
{
    struct proto_buf b;
    size_t           n = 0;

    proto_buf_init(&b, FRAME_MAX);
    for (int k = 0;; k++) {
        proto_buf_reset(&b);
        int rv = sample_encode(k, &b);
        if (rv == MRD_ENOTFOUND) {
            break;
        }
        assert_int_equal(rv, MRD_OK);
        assert_true(n < SAMPLES_MAX);
        out[n].data = malloc(b.len);
        assert_non_null(out[n].data);
        memcpy(out[n].data, b.data, b.len);
        out[n].len   = b.len;
        out[n].reply = k >= SAMPLE_REPLY_FIRST;
        n++;
    }
    proto_buf_fini(&b);
    return n;
}

static void
samples_free(struct sample *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].data);
    }
}

static int
sample_decode(const uint8_t *p, size_t len, bool reply, const char **why)
{
    return reply ? rep_decode(p, len, why) : req_decode(p, len, why);
}

/* Cut anywhere, a frame is refused by the walk; a body cut anywhere (with
 * no walk to protect it) is refused by its decoder. Each cut is copied to
 * an allocation of its own size so ASan catches a read past the end. */
static void
test_truncated_everywhere(void **state)
{
    struct sample s[SAMPLES_MAX];
    size_t        n = samples_make(s);
    (void) state;

    for (size_t i = 0; i < n; i++) {
        const char        *why = NULL;
        struct proto_frame f;

        assert_int_equal(
            sample_decode(s[i].data, s[i].len, s[i].reply, &why), MRD_OK);
        for (size_t len = 0; len < s[i].len; len++) {
            uint8_t *cut = malloc(len + 1);
            assert_non_null(cut);
            memcpy(cut, s[i].data, len);
            why = NULL;
            assert_int_equal(
                sample_decode(cut, len, s[i].reply, &why), MRD_EPROTO);
            assert_non_null(why);
            free(cut);
        }
        int rv = s[i].reply ? proto_reply_open(s[i].data, s[i].len, &f, &why)
                            : proto_request_open(s[i].data, s[i].len, &f, &why);
        assert_int_equal(rv, MRD_OK);
        size_t body_len = (size_t) (f.body.end - f.body.p);
        for (size_t len = 0; len < body_len; len++) {
            uint8_t        *cut = malloc(len + 1);
            struct proto_rd rd;
            assert_non_null(cut);
            memcpy(cut, f.body.p, len);
            proto_rd_init(&rd, cut, len);
            rv = s[i].reply ? rep_body(f.type, f.status, &rd, &why)
                            : req_body(f.type, &rd, &why);
            assert_int_not_equal(rv, MRD_OK);
            free(cut);
        }
    }
    samples_free(s, n);
}

/* Every byte of every frame replaced by values that matter to msgpack:
 * whatever the outcome, no crash, and a refusal always says why. */
static void
test_mutated_everywhere(void **state)
{
    static const uint8_t values[] = { 0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f,
        0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc4, 0xc6, 0xc7, 0xcc, 0xcf, 0xd0, 0xd3,
        0xd4, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff };
    struct sample        s[SAMPLES_MAX];
    size_t               n = samples_make(s);
    (void) state;

    for (size_t i = 0; i < n; i++) {
        for (size_t at = 0; at < s[i].len; at++) {
            uint8_t keep = s[i].data[at];
            for (size_t v = 0; v <= MRD_ARRAY_SIZE(values); v++) {
                const char *why = NULL;
                s[i].data[at]
                    = v < MRD_ARRAY_SIZE(values) ? values[v] : keep ^ 0x01;
                int rv = sample_decode(s[i].data, s[i].len, s[i].reply, &why);
                if (rv != MRD_OK) {
                    assert_non_null(why);
                }
            }
            s[i].data[at] = keep;
        }
    }
    samples_free(s, n);
}

/* Every encoder, given a buffer too small by any number of bytes, fails
 * with MRD_ETOOBIG and stays within its cap; with exactly enough, it writes
 * the same frame. This is also the module's failure loop: the cap is hit at
 * every write of every encoder in turn. */
static void
test_encoders_respect_cap(void **state)
{
    struct sample s[SAMPLES_MAX];
    size_t        n = samples_make(s);
    (void) state;

    for (size_t i = 0; i < n; i++) {
        for (size_t cap = 0; cap <= s[i].len; cap++) {
            struct proto_buf b;
            proto_buf_init(&b, cap);
            int rv = sample_encode((int) i, &b);
            assert_true(b.len <= cap);
            if (cap < s[i].len) {
                assert_int_equal(rv, MRD_ETOOBIG);
                assert_int_equal(proto_buf_status(&b), MRD_ETOOBIG);
            } else {
                assert_int_equal(rv, MRD_OK);
                assert_int_equal(b.len, s[i].len);
                assert_memory_equal(b.data, s[i].data, b.len);
            }
            proto_buf_fini(&b);
        }
    }
    samples_free(s, n);
}

/* ------------------------------------------------- property: appends -- */

static uint64_t rng_state;

/* splitmix64: small, fast, and the same everywhere, so seeds replay. */
static uint64_t
rng(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z          = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z          = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static size_t
rng_below(size_t n)
{
    return n == 0 ? 0 : (size_t) (rng() % n);
}

/* Random valid UTF-8 of up to max bytes (at least 1 when required), often
 * exactly max, written NUL-terminated into out. */
static size_t
rand_text(char *out, size_t max, bool required)
{
    static const char *const chars[] = { "a", "Z", "0", "-", " ", "~", "\x7f",
        "\xc3\xa9", "\xdf\xbf", "\xe6\xb3\xa8", "\xef\xbf\xbf",
        "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf" };
    size_t                   target;
    size_t                   len = 0;

    if (rng_below(8) == 0) {
        target = max;
    } else {
        target = rng_below((max < 24 ? max : 24) + 1);
    }
    if (required && target == 0) {
        target = 1;
    }
    while (len < target) {
        const char *c  = chars[rng_below(MRD_ARRAY_SIZE(chars))];
        size_t      cl = strlen(c);
        if (len + cl > target) {
            c  = "a";
            cl = 1;
        }
        memcpy(out + len, c, cl);
        len += cl;
    }
    out[len] = '\0';
    return len;
}

#define TEMPLATES 6

struct tmpl {
    char           type[MRD_EVENT_TYPE_SIZE_MAX + 1];
    char           ct[MRD_CONTENT_TYPE_SIZE_MAX + 1];
    char           corr[MRD_ID_SIZE_MAX + 1];
    char           caus[MRD_ID_SIZE_MAX + 1];
    char           keys[MRD_META_ENTRIES_MAX][MRD_META_KEY_SIZE_MAX + 1];
    char           values[MRD_META_ENTRIES_MAX][MRD_META_VALUE_SIZE_MAX + 1];
    mrd_meta_entry meta[MRD_META_ENTRIES_MAX];
    mrd_event_in   ev;
};

static void
tmpl_make(struct tmpl *t, const uint8_t *data)
{
    memset(&t->ev, 0, sizeof t->ev);
    rand_text(t->type, MRD_EVENT_TYPE_SIZE_MAX, true);
    t->ev.type = t->type;
    if (rng_below(2) == 0) {
        rand_text(t->ct, MRD_CONTENT_TYPE_SIZE_MAX, false);
        t->ev.content_type = t->ct;
    }
    if (rng_below(2) == 0) {
        rand_text(t->corr, MRD_ID_SIZE_MAX, false);
        t->ev.correlation_id = t->corr;
    }
    if (rng_below(2) == 0) {
        rand_text(t->caus, MRD_ID_SIZE_MAX, false);
        t->ev.causation_id = t->caus;
    }
    size_t r = rng_below(50);
    t->ev.data_size
        = r == 0 ? MRD_EVENT_DATA_SIZE_MAX : (r < 10 ? 0 : rng_below(300));
    t->ev.data       = t->ev.data_size > 0
              ? data + rng_below(MRD_EVENT_DATA_SIZE_MAX - t->ev.data_size + 1)
              : NULL;
    t->ev.meta_count = rng_below(4) == 0 ? rng_below(MRD_META_ENTRIES_MAX + 1)
                                         : rng_below(3);
    for (size_t i = 0; i < t->ev.meta_count; i++) {
        /* Unique keys: a distinct two-byte prefix, then random text. */
        t->keys[i][0] = (char) ('A' + i / 26);
        t->keys[i][1] = (char) ('a' + i % 26);
        rand_text(t->keys[i] + 2, MRD_META_KEY_SIZE_MAX - 2, false);
        rand_text(t->values[i], MRD_META_VALUE_SIZE_MAX, false);
        t->meta[i].key   = t->keys[i];
        t->meta[i].value = rng_below(6) == 0 ? NULL : t->values[i];
    }
    t->ev.meta = t->ev.meta_count > 0 ? t->meta : NULL;
}

static void
check_event(const struct proto_event_in *got, const mrd_event_in *want)
{
    struct proto_rd  rd;
    struct proto_str k;
    struct proto_str v;

    check_str(got->type, want->type);
    assert_int_equal(got->data.len, want->data_size);
    if (want->data_size > 0) {
        assert_memory_equal(got->data.ptr, want->data, want->data_size);
    }
    check_str(got->content_type, want->content_type);
    check_str(got->correlation, want->correlation_id);
    check_str(got->causation, want->causation_id);
    assert_int_equal(got->meta_count, want->meta_count);
    proto_meta_begin(&got->meta_raw, &rd);
    for (size_t i = 0; i < want->meta_count; i++) {
        assert_int_equal(proto_meta_next(&rd, &k, &v), MRD_OK);
        check_str(k, want->meta[i].key);
        check_str(v, want->meta[i].value);
    }
    assert_int_equal(proto_meta_next(&rd, &k, &v), MRD_ENOTFOUND);
}

/* Random encoded ops for some events: proto copies them unread, so any
 * bytes do. Big ones only in small appends, to stay within a frame. */
static const struct proto_str *
property_ops(struct proto_str *ops, size_t count, const uint8_t *data)
{
    if (rng_below(3) == 0) {
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        size_t r   = rng_below(40);
        size_t len = r < 20 ? 0 : 1 + rng_below(300);
        if (r == 0 && count <= 16) {
            len = PROTO_OPS_SIZE_MAX;
        }
        ops[i].len = (uint32_t) len;
        ops[i].ptr = len > 0
            ? (const char *) data + rng_below(MRD_EVENT_DATA_SIZE_MAX - len + 1)
            : NULL;
    }
    return ops;
}

static void
property_one(
    struct proto_buf *b, struct tmpl *t, mrd_event_in *evs, const uint8_t *data)
{
    static struct proto_str ops_all[MRD_APPEND_EVENTS_MAX];
    static const int64_t    expects[] = { MRD_EXPECT_ANY, MRD_EXPECT_NO_STREAM,
           MRD_EXPECT_EXISTS, 0, 7, INT64_MAX };
    char                    stream[MRD_STREAM_NAME_SIZE_MAX + 1];
    uint8_t                 idem[MRD_IDEMPOTENCY_KEY_SIZE_MAX];
    struct proto_frame      f;
    struct proto_append_req req;
    struct proto_event_in   ev;
    struct proto_rd         rd;
    const char             *why = NULL;

    for (size_t i = 0; i < TEMPLATES; i++) {
        tmpl_make(&t[i], data);
    }
    size_t  stream_len = rand_text(stream, MRD_STREAM_NAME_SIZE_MAX, true);
    int64_t expected   = expects[rng_below(MRD_ARRAY_SIZE(expects))];
    size_t  idem_len
        = rng_below(2) == 0 ? 0 : 1 + rng_below(MRD_IDEMPOTENCY_KEY_SIZE_MAX);
    for (size_t i = 0; i < idem_len; i++) {
        idem[i] = (uint8_t) rng();
    }
    size_t count = rng_below(20) == 0 ? MRD_APPEND_EVENTS_MAX
                                      : 1 + rng_below(TEMPLATES * 2);
    for (size_t i = 0; i < count; i++) {
        evs[i] = t[rng_below(TEMPLATES)].ev;
        /* Many events of 1 MiB would not fit one frame: keep big ones for
         * small appends. */
        if (count > 16 && evs[i].data_size > 4096) {
            evs[i].data_size = 4096;
        }
    }
    const struct proto_str *ops = property_ops(ops_all, count, data);
    proto_buf_reset(b);
    assert_int_equal(proto_append_req_encode(b, stream, stream_len, expected,
                         idem_len > 0 ? idem : NULL, idem_len, evs, ops, count),
        MRD_OK);
    assert_int_equal(proto_request_open(b->data, b->len, &f, &why), MRD_OK);
    assert_int_equal(proto_append_req_decode(&f.body, &req, &why), MRD_OK);
    assert_int_equal(req.stream.len, stream_len);
    assert_memory_equal(req.stream.ptr, stream, stream_len);
    assert_true(req.expected == expected);
    assert_int_equal(req.idem_key.len, idem_len);
    if (idem_len > 0) {
        assert_memory_equal(req.idem_key.ptr, idem, idem_len);
    }
    assert_int_equal(req.event_count, count);
    proto_events_begin(&req, &rd);
    for (size_t i = 0; i < count; i++) {
        assert_int_equal(proto_events_next(&rd, &ev), MRD_OK);
        check_event(&ev, &evs[i]);
        uint32_t ops_len = ops != NULL ? ops[i].len : 0;
        assert_int_equal(ev.ops.len, ops_len);
        if (ops_len > 0) {
            assert_memory_equal(ev.ops.ptr, ops[i].ptr, ops_len);
        }
    }
    assert_int_equal(proto_events_next(&rd, &ev), MRD_ENOTFOUND);
    /* A random cut of the frame is always refused. */
    size_t cut = rng_below(b->len);
    assert_int_equal(proto_request_open(b->data, cut, &f, &why), MRD_EPROTO);
}

static void
test_property_append(void **state)
{
    const char      *env  = getenv("MRD_TEST_SEED");
    uint64_t         seed = env != NULL
                ? strtoull(env, NULL, 0)
                : ((uint64_t) time(NULL) << 20) ^ (uint64_t) getpid();
    struct tmpl     *t    = calloc(TEMPLATES, sizeof *t);
    mrd_event_in    *evs  = calloc(MRD_APPEND_EVENTS_MAX, sizeof *evs);
    uint8_t         *data = malloc(MRD_EVENT_DATA_SIZE_MAX);
    struct proto_buf b;
    (void) state;

    printf("proto_msg_test: seed %llu (set MRD_TEST_SEED to replay)\n",
        (unsigned long long) seed);
    fflush(stdout);
    assert_non_null(t);
    assert_non_null(evs);
    assert_non_null(data);
    rng_state = seed;
    for (size_t i = 0; i < MRD_EVENT_DATA_SIZE_MAX; i++) {
        data[i] = (uint8_t) rng();
    }
    proto_buf_init(&b, FRAME_MAX);
    for (int iter = 0; iter < 200; iter++) {
        property_one(&b, t, evs, data);
    }
    proto_buf_fini(&b);
    free(data);
    free(evs);
    free(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_frame_version),
        cmocka_unit_test(test_frame_shape),
        cmocka_unit_test(test_append_golden),
        cmocka_unit_test(test_append_round_trip),
        cmocka_unit_test(test_append_keys),
        cmocka_unit_test(test_append_fields),
        cmocka_unit_test(test_append_event_count),
        cmocka_unit_test(test_event_keys),
        cmocka_unit_test(test_event_types),
        cmocka_unit_test(test_event_limits),
        cmocka_unit_test(test_events_next_untrusted),
        cmocka_unit_test(test_meta_limits),
        cmocka_unit_test(test_stream_names),
        cmocka_unit_test(test_encode_event_checks),
        cmocka_unit_test(test_encode_meta_checks),
        cmocka_unit_test(test_encode_append_checks),
        cmocka_unit_test(test_read_round_trip),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_log_req),
        cmocka_unit_test(test_vv),
        cmocka_unit_test(test_pull_req),
        cmocka_unit_test(test_hint_req),
        cmocka_unit_test(test_topology_msgs),
        cmocka_unit_test(test_pull_rep),
        cmocka_unit_test(test_info_and_empty),
        cmocka_unit_test(test_append_ops),
        cmocka_unit_test(test_append_ops_limits),
        cmocka_unit_test(test_encode_ops_checks),
        cmocka_unit_test(test_state_req),
        cmocka_unit_test(test_state_rep),
        cmocka_unit_test(test_append_rep),
        cmocka_unit_test(test_node_rep),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_error_reply_special),
        cmocka_unit_test(test_error_reply_errors),
        cmocka_unit_test(test_events_reply),
        cmocka_unit_test(test_events_reply_errors),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_mutated_everywhere),
        cmocka_unit_test(test_encoders_respect_cap),
        cmocka_unit_test(test_property_append),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
