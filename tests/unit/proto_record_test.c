/*
 * proto_record_test.c: event records, the stored form of an event. Round
 * trips, the exact byte layout and checksum (computed here independently
 * with libsodium), every single-bit flip caught, every truncation refused,
 * and records whose checksum is right but whose content is wrong (a buggy
 * writer, or corruption that happened before the checksum) still refused
 * field by field, never trusted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "proto.h"

static const unsigned char key[16] = { 'm', 'e', 'r', 'i', 'd', 'i', 'a', 'n',
    '-', 'r', 'e', 'c', 'o', 'r', 'd', '1' };

/* SipHash-2-4 of p[0..len) as a number, as the record format defines it. */
static uint64_t
siphash(const uint8_t *p, size_t len)
{
    unsigned char out[8];
    uint64_t      h = 0;

    assert_int_equal(crypto_shorthash(out, p, len, key), 0);
    for (int k = 7; k >= 0; k--) {
        h = (h << 8) | out[k];
    }
    return h;
}

/* Closes a hand-made record body with its checksum. */
static void
seal(struct proto_buf *b)
{
    uint8_t tail[9];

    assert_int_equal(proto_buf_status(b), MRD_OK);
    tail[0] = 0xcf;
    mrd_be64_put(tail + 1, siphash(b->data, b->len));
    proto_wr_raw(b, tail, sizeof tail);
    assert_int_equal(proto_buf_status(b), MRD_OK);
}

static struct proto_str
S(const char *s) {
    struct proto_str v = { s, s == NULL ? 0 : (uint32_t) strlen(s) };
    return v;
}

static void
check_str(struct proto_str s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.ptr, want, s.len);
}

static void
test_record_round_trip(void **state)
{
    /* {"tenant": "acme", "k": ""} as a client would send it. */
    static const char     meta[] = "\x82\xa6tenant\xa4"
                                   "acme\xa1k\xa0";
    struct proto_event_in ev     = { .type = S("OrderPlaced"),
            .data                          = { "\x00\xff\x01", 3 },
            .content_type                  = S("application/json"),
            .correlation                   = S("corr"),
            .causation                     = S("cause"),
            .meta_raw                      = { meta, sizeof meta - 1 },
            .meta_count                    = 2 };
    struct proto_buf      b;
    struct proto_record   r;
    struct proto_rd       rd;
    struct proto_str      k;
    struct proto_str      v;
    const char           *why = NULL;
    (void) state;

    proto_buf_init(&b, PROTO_RECORD_SIZE_MAX);
    assert_int_equal(proto_record_encode(&b, 7, 123456789, (uint64_t) 1 << 40,
                         S("order-\xe6\xb3\xa8"), &ev),
        MRD_OK);
    assert_int_equal(proto_record_verify(b.data, b.len), MRD_OK);
    assert_int_equal(proto_record_decode(b.data, b.len, &r, &why), MRD_OK);
    assert_int_equal(r.format, PROTO_RECORD_FORMAT);
    assert_int_equal(r.origin, 7);
    assert_int_equal(r.seq, 123456789);
    assert_int_equal(r.hlc, (uint64_t) 1 << 40);
    check_str(r.stream, "order-\xe6\xb3\xa8");
    check_str(r.type, "OrderPlaced");
    assert_int_equal(r.data.len, 3);
    assert_memory_equal(r.data.ptr, "\x00\xff\x01", 3);
    check_str(r.content_type, "application/json");
    check_str(r.correlation, "corr");
    check_str(r.causation, "cause");
    /* The meta map is stored verbatim. */
    assert_int_equal(r.meta_raw.len, sizeof meta - 1);
    assert_memory_equal(r.meta_raw.ptr, meta, sizeof meta - 1);
    assert_int_equal(r.meta_count, 2);
    proto_meta_begin(&r.meta_raw, &rd);
    assert_int_equal(proto_meta_next(&rd, &k, &v), MRD_OK);
    check_str(k, "tenant");
    check_str(v, "acme");
    assert_int_equal(proto_meta_next(&rd, &k, &v), MRD_OK);
    check_str(k, "k");
    check_str(v, "");
    assert_int_equal(proto_meta_next(&rd, &k, &v), MRD_ENOTFOUND);
    proto_buf_fini(&b);
}

/* The smallest record, byte for byte: the format is frozen. Format 3 ends
 * its fields with ops and idem, nil when there are none. */
static void
test_record_layout(void **state)
{
    static const uint8_t  want[] = { 0x9e, 0x03, 0x01, 0x02, 0x03, 0xa1, 's',
         0xa1, 't', 0xa0, 0xc4, 0x00, 0xa0, 0xa0, 0x80, 0xc0, 0xc0 };
    struct proto_event_in ev     = { .type = S("t") };
    struct proto_buf      b;
    struct proto_record   r;
    const char           *why = NULL;
    (void) state;

    proto_buf_init(&b, 1024);
    proto_wr_raw(&b, "pre", 3); /* records may follow other bytes */
    assert_int_equal(proto_record_encode(&b, 1, 2, 3, S("s"), &ev), MRD_OK);
    assert_int_equal(b.len, 3 + sizeof want + 9);
    const uint8_t *rec = b.data + 3;
    assert_memory_equal(rec, want, sizeof want);
    assert_int_equal(rec[sizeof want], 0xcf);
    assert_true(
        mrd_be64_get(rec + sizeof want + 1) == siphash(rec, sizeof want));
    /* A golden value: changing the key or the hash breaks every stored
     * record, so it is written down here (and in docs/PROTOCOL.md). */
    assert_true(mrd_be64_get(rec + sizeof want + 1) == 0xe2af825b5edd9fafu);
    assert_int_equal(
        proto_record_decode(rec, sizeof want + 9, &r, &why), MRD_OK);
    assert_int_equal(r.format, 3);
    check_str(r.meta_raw, "\x80");
    assert_int_equal(r.meta_count, 0);
    assert_int_equal(r.data.len, 0);
    assert_int_equal(r.ops.len, 0);
    assert_null(r.ops.ptr);
    assert_int_equal(r.idem.key.len, 0);
    assert_int_equal(proto_record_verify(b.data + 1, 9), MRD_ECORRUPT);
    proto_buf_fini(&b);
}

/* Format 2, as every record written before idempotency travelled: 13
 * elements, ops last. Stored data must keep reading (this golden record and
 * checksum are format 2's, frozen). */
static void
test_record_format2(void **state)
{
    static const uint8_t rec[] = { 0x9d, 0x02, 0x01, 0x02, 0x03, 0xa1, 's',
        0xa1, 't', 0xa0, 0xc4, 0x00, 0xa0, 0xa0, 0x80, 0xc0, 0xcf, 0x15, 0xfe,
        0x5d, 0x4a, 0xd7, 0xbe, 0x9c, 0x32 };
    struct proto_record  r;
    const char          *why = NULL;
    (void) state;

    assert_int_equal(proto_record_verify(rec, sizeof rec), MRD_OK);
    assert_int_equal(proto_record_decode(rec, sizeof rec, &r, &why), MRD_OK);
    assert_int_equal(r.format, 2);
    assert_int_equal(r.seq, 2);
    check_str(r.stream, "s");
    assert_int_equal(r.ops.len, 0);
    assert_int_equal(r.idem.key.len, 0);
}

/* An append's idempotency rides on its first event's record. */
static void
test_record_idem(void **state)
{
    struct proto_event_in    ev = { .type = S("t") };
    struct proto_record_idem idem
        = { S("order-42"), 0x1234567890abcdefu, MRD_EXPECT_NO_STREAM, 3 };
    struct proto_buf    b;
    struct proto_record r;
    const char         *why = NULL;
    (void) state;

    proto_buf_init(&b, 1024);
    assert_int_equal(
        proto_record_encode_idem(&b, 1, 2, 3, S("s"), &ev, &idem), MRD_OK);
    assert_int_equal(proto_record_decode(b.data, b.len, &r, &why), MRD_OK);
    check_str(r.idem.key, "order-42");
    assert_true(r.idem.digest == 0x1234567890abcdefu);
    assert_int_equal(r.idem.expected, MRD_EXPECT_NO_STREAM);
    assert_int_equal(r.idem.count, 3);
    /* No key: written as nil, like proto_record_encode. */
    struct proto_buf plain;
    proto_buf_init(&plain, 1024);
    assert_int_equal(proto_record_encode(&plain, 1, 2, 3, S("s"), &ev), MRD_OK);
    idem.key = (struct proto_str) { NULL, 0 };
    proto_buf_reset(&b);
    assert_int_equal(
        proto_record_encode_idem(&b, 1, 2, 3, S("s"), &ev, &idem), MRD_OK);
    assert_int_equal(b.len, plain.len);
    assert_memory_equal(b.data, plain.data, b.len);
    /* The encoder refuses what a decoder would, and writes nothing. */
    char big[MRD_IDEMPOTENCY_KEY_SIZE_MAX + 1];
    memset(big, 'k', sizeof big);
    const struct proto_record_idem bad[] = {
        { { big, sizeof big }, 1, MRD_EXPECT_ANY, 1 },
        { S("k"), 1, MRD_EXPECT_ANY, 0 },
        { S("k"), 1, MRD_EXPECT_ANY, MRD_APPEND_EVENTS_MAX + 1 },
        { { NULL, 1 }, 1, MRD_EXPECT_ANY, 1 },
    };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(bad); i++) {
        proto_buf_reset(&b);
        assert_int_equal(
            proto_record_encode_idem(&b, 1, 2, 3, S("s"), &ev, &bad[i]),
            MRD_EINVAL);
        assert_int_equal(b.len, 0);
    }
    proto_buf_fini(&plain);
    proto_buf_fini(&b);
}

/* Ops go into the record byte for byte and come out as a view. */
static void
test_record_ops_round_trip(void **state)
{
    static const char     ops[] = "\x92\x91\x92\x01\x07\x91\x93\x01\x01\x05";
    struct proto_event_in ev    = { .type = S("CartChanged"),
           .data                          = { "{}", 2 },
           .ops                           = { ops, sizeof ops - 1 } };
    struct proto_buf      b;
    struct proto_record   r;
    const char           *why = NULL;
    (void) state;

    proto_buf_init(&b, PROTO_RECORD_SIZE_MAX);
    assert_int_equal(
        proto_record_encode(&b, 3, 4, 5, S("cart-1"), &ev), MRD_OK);
    assert_int_equal(proto_record_decode(b.data, b.len, &r, &why), MRD_OK);
    assert_int_equal(r.format, PROTO_RECORD_FORMAT);
    check_str(r.type, "CartChanged");
    check_str(r.data, "{}");
    assert_int_equal(r.ops.len, sizeof ops - 1);
    assert_memory_equal(r.ops.ptr, ops, sizeof ops - 1);
    /* The view points into the record, right before idem (nil) and the
     * checksum. */
    assert_ptr_equal(
        r.ops.ptr, (const char *) b.data + b.len - 9 - 1 - r.ops.len);
    proto_buf_fini(&b);
}

static void
test_record_bit_flips(void **state)
{
    static const char     meta[] = "\x81\xa1k\xa1v";
    struct proto_event_in ev     = { .type = S("T"),
            .data                          = { "data", 4 },
            .correlation                   = S("c"),
            .meta_raw                      = { meta, sizeof meta - 1 },
            .meta_count                    = 1 };
    struct proto_buf      b;
    struct proto_record   r;
    const char           *why;
    (void) state;

    proto_buf_init(&b, 4096);
    assert_int_equal(
        proto_record_encode(&b, 1, 99, 12345, S("stream"), &ev), MRD_OK);
    for (size_t bit = 0; bit < b.len * 8; bit++) {
        b.data[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        assert_int_equal(proto_record_verify(b.data, b.len), MRD_ECORRUPT);
        why = NULL;
        assert_int_equal(
            proto_record_decode(b.data, b.len, &r, &why), MRD_ECORRUPT);
        assert_string_equal(why, "record checksum mismatch");
        b.data[bit / 8] ^= (uint8_t) (1u << (bit % 8));
    }
    assert_int_equal(proto_record_verify(b.data, b.len), MRD_OK);
    /* Every truncation, each in an allocation of its own size. */
    for (size_t len = 0; len < b.len; len++) {
        uint8_t *cut = malloc(len + 1);
        assert_non_null(cut);
        memcpy(cut, b.data, len);
        assert_int_equal(proto_record_verify(cut, len), MRD_ECORRUPT);
        assert_int_not_equal(proto_record_decode(cut, len, &r, &why), MRD_OK);
        free(cut);
    }
    /* Verify looks at the checksum only: a good one over junk passes it,
     * and decode still refuses the junk. */
    proto_buf_reset(&b);
    proto_wr_raw(&b, "\xc1", 1);
    seal(&b);
    assert_int_equal(b.len, 10);
    assert_int_equal(proto_record_verify(b.data, b.len), MRD_OK);
    assert_int_equal(proto_record_decode(b.data, b.len, &r, &why), MRD_EPROTO);
    assert_int_equal(proto_record_verify(b.data + 1, 9), MRD_ECORRUPT);
    proto_buf_fini(&b);
}

/* Hand-made record bodies: pk-like helpers over the writer. */
struct fields {
    uint64_t         format;
    unsigned         count; /* array length */
    bool             stream_bin;
    bool             ints_as_str;
    struct proto_str stream, type, content_type, data, correlation, causation;
    struct proto_str meta_raw; /* written verbatim */
    const char      *extra; /* raw bytes appended after meta, if any */
    size_t           extra_len;
};

static void
fields_write(struct proto_buf *b, const struct fields *f)
{
    proto_buf_reset(b);
    proto_wr_array(b, f->count);
    proto_wr_uint(b, f->format);
    for (int i = 0; i < 3; i++) {
        if (f->ints_as_str) {
            proto_wr_str(b, "1", 1);
        } else {
            proto_wr_uint(b, 1);
        }
    }
    if (f->stream_bin) {
        proto_wr_bin(b, f->stream.ptr, f->stream.len);
    } else {
        proto_wr_str(b, f->stream.ptr, f->stream.len);
    }
    proto_wr_str(b, f->type.ptr, f->type.len);
    proto_wr_str(b, f->content_type.ptr, f->content_type.len);
    proto_wr_bin(b, f->data.ptr, f->data.len);
    proto_wr_str(b, f->correlation.ptr, f->correlation.len);
    proto_wr_str(b, f->causation.ptr, f->causation.len);
    proto_wr_raw(b, f->meta_raw.ptr, f->meta_raw.len);
    proto_wr_raw(b, f->extra, f->extra_len);
    seal(b);
}

static struct fields
fields_ok(void)
{
    struct fields f = { .format = 1,
        .count                  = 12,
        .stream                 = S("s"),
        .type                   = S("t"),
        .meta_raw               = { "\x80", 1 } };
    return f;
}

static void
expect_record(struct proto_buf *b, int code, const char *reason, int line)
{
    struct proto_record r;
    const char         *why = NULL;
    int                 rv  = proto_record_decode(b->data, b->len, &r, &why);

    if (rv != code
        || (reason != NULL && (why == NULL || strcmp(why, reason) != 0))) {
        fail_msg("line %d: got %s (%s), want %s (%s)", line, mrd_errname(rv),
            why != NULL ? why : "-", mrd_errname(code),
            reason != NULL ? reason : "-");
    }
    if (rv != MRD_OK) {
        assert_non_null(why);
    }
}
#define EXPECT(b, code, reason) expect_record((b), (code), (reason), __LINE__)

/* Format 1, as every record written before ops existed: 12 elements, no
 * ops. Stored data must keep reading, byte for byte as it was written
 * (this golden record and checksum are format 1's, frozen). */
static void
test_record_format1(void **state)
{
    static const uint8_t rec[]  = { 0x9c, 0x01, 0x01, 0x02, 0x03, 0xa1, 's',
         0xa1, 't', 0xa0, 0xc4, 0x00, 0xa0, 0xa0, 0x80, 0xcf, 0x70, 0xdb, 0x19,
         0xe1, 0x75, 0x55, 0x82, 0xaa };
    static const char    meta[] = "\x81\xa1k\xa1v";
    struct proto_record  r;
    struct proto_buf     b;
    struct fields        f;
    const char          *why = NULL;
    (void) state;

    assert_int_equal(proto_record_verify(rec, sizeof rec), MRD_OK);
    assert_int_equal(proto_record_decode(rec, sizeof rec, &r, &why), MRD_OK);
    assert_int_equal(r.format, 1);
    assert_int_equal(r.origin, 1);
    assert_int_equal(r.seq, 2);
    assert_int_equal(r.hlc, 3);
    check_str(r.stream, "s");
    check_str(r.type, "t");
    assert_int_equal(r.ops.len, 0);
    assert_null(r.ops.ptr);
    /* A fuller format-1 record, sealed here. */
    proto_buf_init(&b, 4096);
    f          = fields_ok();
    f.data     = (struct proto_str) { "\x00\x01", 2 };
    f.meta_raw = (struct proto_str) { meta, sizeof meta - 1 };
    fields_write(&b, &f);
    assert_int_equal(proto_record_decode(b.data, b.len, &r, &why), MRD_OK);
    assert_int_equal(r.format, 1);
    assert_int_equal(r.meta_count, 1);
    assert_int_equal(r.data.len, 2);
    assert_int_equal(r.ops.len, 0);
    /* Re-encoding a format-1 event writes format 3 with no ops, no idem. */
    struct proto_event_in ev = { .type = r.type,
        .data                          = r.data,
        .meta_raw                      = r.meta_raw,
        .meta_count                    = r.meta_count };
    struct proto_buf      again;
    proto_buf_init(&again, 4096);
    assert_int_equal(
        proto_record_encode(&again, 1, 1, 1, r.stream, &ev), MRD_OK);
    assert_int_equal(again.data[0], 0x9e);
    assert_int_equal(again.data[1], 0x03);
    assert_int_equal(again.len, b.len + 2); /* 2 more elements: nil, nil */
    proto_buf_fini(&again);
    proto_buf_fini(&b);
}

static void
test_record_checksummed_junk(void **state)
{
    struct proto_buf b;
    struct fields    f;
    char            *big = malloc(MRD_EVENT_DATA_SIZE_MAX + 2);
    (void) state;

    assert_non_null(big);
    memset(big, 'x', MRD_EVENT_DATA_SIZE_MAX + 2);
    proto_buf_init(&b, 4 * PROTO_RECORD_SIZE_MAX);
    f = fields_ok();
    fields_write(&b, &f);
    EXPECT(&b, MRD_OK, NULL);
    f.format = 0;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "unknown record format");
    f.format = PROTO_RECORD_FORMAT + 1;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "unknown record format");
    f.count     = 13; /* a later format may be longer, but not format 1 */
    f.extra     = "\xc0";
    f.extra_len = 1;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "unknown record format");
    f.format = 1;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "record has the wrong length");
    f              = fields_ok();
    f.count        = 11;
    f.meta_raw.len = 0;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "record has the wrong length");
    f             = fields_ok();
    f.ints_as_str = true;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "record dot or hlc is not a uint");
    free(big);
    proto_buf_fini(&b);
}

/* Format 2's ops field: nil or a bin of 1..PROTO_OPS_SIZE_MAX bytes, and
 * the record's length must match its format. */
static void
test_record_bad_ops(void **state)
{
    struct proto_buf b;
    struct fields    f;
    char            *big = malloc(PROTO_OPS_SIZE_MAX + 1);
    uint8_t          hdr[5];
    (void) state;

    assert_non_null(big);
    memset(big, 'o', PROTO_OPS_SIZE_MAX + 1);
    proto_buf_init(&b, 4 * PROTO_RECORD_SIZE_MAX);
    f           = fields_ok();
    f.format    = 2;
    f.count     = 13;
    f.extra     = "\xc0";
    f.extra_len = 1;
    fields_write(&b, &f);
    EXPECT(&b, MRD_OK, NULL);
    f.extra     = "\xc4\x01\x90";
    f.extra_len = 3;
    fields_write(&b, &f);
    EXPECT(&b, MRD_OK, NULL);
    f.extra     = "\xc4\x00";
    f.extra_len = 2;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "record ops are empty");
    f.extra     = "\xa1o";
    f.extra_len = 2;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "record ops are not nil or bin");
    f.extra     = "\x90";
    f.extra_len = 1;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "record ops are not nil or bin");
    /* Format 3: ops, then idem (nil or [key, digest, expected, count]). */
    f.format    = 3;
    f.count     = 14;
    f.extra     = "\xc0\xc0";
    f.extra_len = 2;
    fields_write(&b, &f);
    EXPECT(&b, MRD_OK, NULL);
    f.extra     = "\xc0\x94\xc4\x01k\x05\xff\x01";
    f.extra_len = 8;
    fields_write(&b, &f);
    EXPECT(&b, MRD_OK, NULL);
    f.extra     = "\xc0\x94\xc4\x00\x05\xff\x01";
    f.extra_len = 7;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO,
        "record idempotency key is not 1..MRD_IDEMPOTENCY_KEY_SIZE_MAX bytes");
    f.extra     = "\xc0\x94\xc4\x01k\x05\xff\x00";
    f.extra_len = 8;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "record idem count is not 1..MRD_APPEND_EVENTS_MAX");
    f.extra     = "\xc0\x93\xc4\x01k\x05\xff";
    f.extra_len = 7;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO,
        "record idem is not nil or [key, digest, expected, count]");
    f.extra     = "\xc0\xa1k";
    f.extra_len = 3;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO,
        "record idem is not nil or [key, digest, expected, count]");
    f.count     = 13; /* format 3 without its idem */
    f.extra     = "\xc0";
    f.extra_len = 1;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "record has the wrong length");
    f.format = 2;
    /* A format-2 record without its ops, and one with a field too many. */
    f.count     = 12;
    f.extra     = NULL;
    f.extra_len = 0;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "record has the wrong length");
    f.count     = 14;
    f.extra     = "\xc0\xc0";
    f.extra_len = 2;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "record has the wrong length");
    /* Ops at the limit, then one byte over it (bin32 headers by hand). */
    for (uint32_t len = PROTO_OPS_SIZE_MAX; len <= PROTO_OPS_SIZE_MAX + 1;
         len++) {
        hdr[0] = 0xc6;
        mrd_be32_put(hdr + 1, len);
        proto_buf_reset(&b);
        proto_wr_array(&b, 13);
        proto_wr_uint(&b, 2);
        proto_wr_uint(&b, 1);
        proto_wr_uint(&b, 1);
        proto_wr_uint(&b, 1);
        proto_wr_str(&b, "s", 1);
        proto_wr_str(&b, "t", 1);
        proto_wr_str(&b, "", 0);
        proto_wr_bin(&b, "", 0);
        proto_wr_str(&b, "", 0);
        proto_wr_str(&b, "", 0);
        proto_wr_raw(&b, "\x80", 1);
        proto_wr_raw(&b, hdr, sizeof hdr);
        proto_wr_raw(&b, big, len);
        seal(&b);
        if (len == PROTO_OPS_SIZE_MAX) {
            EXPECT(&b, MRD_OK, NULL);
        } else {
            EXPECT(&b, MRD_ETOOBIG,
                "event ops are larger than PROTO_OPS_SIZE_MAX");
        }
    }
    free(big);
    proto_buf_fini(&b);
}

static void
test_record_checksummed_bad_fields(void **state)
{
    struct proto_buf b;
    struct fields    f;
    char            *big = malloc(MRD_EVENT_DATA_SIZE_MAX + 2);
    (void) state;

    assert_non_null(big);
    memset(big, 'x', MRD_EVENT_DATA_SIZE_MAX + 2);
    proto_buf_init(&b, 4 * PROTO_RECORD_SIZE_MAX);
    f            = fields_ok();
    f.stream_bin = true;
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "stream is not a string");
    static const char *bad_streams[]
        = { "", "a\0b", "\xc3\x28", "\xed\xa0\x80" };
    static const size_t bad_lens[] = { 0, 3, 2, 3 };
    for (size_t i = 0; i < 4; i++) {
        f            = fields_ok();
        f.stream.ptr = bad_streams[i];
        f.stream.len = (uint32_t) bad_lens[i];
        fields_write(&b, &f);
        EXPECT(&b, MRD_ENAME, "invalid stream name");
    }
    f        = fields_ok();
    f.stream = (struct proto_str) { big, MRD_STREAM_NAME_SIZE_MAX + 1 };
    fields_write(&b, &f);
    EXPECT(&b, MRD_ENAME, "invalid stream name");
    f      = fields_ok();
    f.type = S("");
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "event type is empty or not valid UTF-8");
    f.type = (struct proto_str) { big, MRD_EVENT_TYPE_SIZE_MAX + 1 };
    fields_write(&b, &f);
    EXPECT(&b, MRD_ETOOBIG, NULL);
    f              = fields_ok();
    f.content_type = (struct proto_str) { "\xc0\xaf", 2 };
    fields_write(&b, &f);
    EXPECT(&b, MRD_EPROTO, "content type is not valid UTF-8");
    f           = fields_ok();
    f.causation = (struct proto_str) { big, MRD_ID_SIZE_MAX + 1 };
    fields_write(&b, &f);
    EXPECT(&b, MRD_ETOOBIG, NULL);
    f      = fields_ok();
    f.data = (struct proto_str) { big, MRD_EVENT_DATA_SIZE_MAX + 1 };
    fields_write(&b, &f);
    EXPECT(&b, MRD_ETOOBIG, NULL);
    f.data.len = MRD_EVENT_DATA_SIZE_MAX;
    fields_write(&b, &f);
    EXPECT(&b, MRD_OK, NULL);
    free(big);
    proto_buf_fini(&b);
}

static void
test_record_bad_meta(void **state)
{
    static const struct {
        const char *raw;
        size_t      len;
        int         code;
    } metas[] = {
        { "\x90", 1, MRD_EPROTO }, /* not a map */
        { "\xc0", 1, MRD_EPROTO }, /* nil */
        { "\x81\x01\xa1v", 4, MRD_EPROTO }, /* int key */
        { "\x81\xa1k\xc4\x01v", 6, MRD_EPROTO }, /* bin value */
        { "\x82\xa1k\xa0\xa1k\xa0", 7, MRD_EPROTO }, /* duplicate key */
        { "\x81\xa0\xa1v", 4, MRD_EPROTO }, /* empty key */
        { "\x81\xa2\xc3\x28\xa0", 5, MRD_EPROTO }, /* bad UTF-8 */
        { "\x81\xa1k\x81\xa0\xa0", 6, MRD_EPROTO }, /* nested map */
        { "\x81\xa1k\xa1v", 5, MRD_OK },
    };
    struct proto_buf b;
    struct fields    f;
    (void) state;

    proto_buf_init(&b, 1 << 20);
    for (size_t i = 0; i < MRD_ARRAY_SIZE(metas); i++) {
        f = fields_ok();
        f.meta_raw
            = (struct proto_str) { metas[i].raw, (uint32_t) metas[i].len };
        fields_write(&b, &f);
        EXPECT(&b, metas[i].code, NULL);
    }
    /* 33 entries. */
    proto_buf_reset(&b);
    f              = fields_ok();
    f.meta_raw.len = 0;
    fields_write(&b, &f); /* meta missing: 11 fields */
    EXPECT(&b, MRD_EPROTO, NULL);
    proto_buf_reset(&b);
    uint8_t many[3 + 33 * 4];
    size_t  n = 0;
    many[n++] = 0xde;
    many[n++] = 0;
    many[n++] = 33;
    for (int i = 0; i < 33; i++) {
        many[n++] = 0xa2;
        many[n++] = (uint8_t) ('a' + i / 26);
        many[n++] = (uint8_t) ('a' + i % 26);
        many[n++] = 0xa0;
    }
    f          = fields_ok();
    f.meta_raw = (struct proto_str) { (const char *) many, (uint32_t) n };
    fields_write(&b, &f);
    EXPECT(&b, MRD_ETOOBIG, "meta has more than MRD_META_ENTRIES_MAX entries");
    many[2]        = 32;
    f.meta_raw.len = (uint32_t) (n - 4);
    fields_write(&b, &f);
    EXPECT(&b, MRD_OK, NULL);
    proto_buf_fini(&b);
}

/* The checksum must be the last field, in its fixed 9-byte form. Here the
 * last field is a one-byte int and the 9 bytes the checksum covers end
 * inside the meta value before it: every byte is valid and the checksum
 * matches, so only that rule refuses it. Found by trying nonces until the
 * hash bytes happen to be valid UTF-8 and the last one a positive fixint. */
static void
test_record_checksum_shape(void **state)
{
    struct proto_buf    b;
    struct proto_record r;
    const char         *why = NULL;
    uint64_t            nonce;
    (void) state;

    proto_buf_init(&b, 1024);
    for (nonce = 0; nonce < 10000000; nonce++) {
        char n[24];
        int  nlen = snprintf(n, sizeof n, "%llu", (unsigned long long) nonce);
        proto_buf_reset(&b);
        proto_wr_array(&b, 12);
        proto_wr_uint(&b, 1);
        proto_wr_uint(&b, 1);
        proto_wr_uint(&b, 1);
        proto_wr_uint(&b, 1);
        proto_wr_str(&b, "s", 1);
        proto_wr_str(&b, "t", 1);
        proto_wr_str(&b, "", 0);
        proto_wr_bin(&b, "", 0);
        proto_wr_str(&b, "", 0);
        proto_wr_str(&b, n, (size_t) nlen);
        proto_wr_map(&b, 1);
        proto_wr_str(&b, "k", 1);
        proto_wr_raw(&b, "\xa9v", 2); /* a 9-byte str: "v" + 8 more */
        uint8_t be[8];
        mrd_be64_put(be, siphash(b.data, b.len));
        proto_wr_raw(&b, "\xcf", 1);
        proto_wr_raw(&b, be, 8); /* 7 bytes of the str, then the int */
        if (be[7] < 0x80
            && mrd_utf8_valid((const char *) b.data + b.len - 9, 8)) {
            break;
        }
    }
    assert_int_equal(proto_buf_status(&b), MRD_OK);
    assert_int_equal(proto_record_verify(b.data, b.len), MRD_OK);
    assert_int_equal(proto_walk(b.data, b.len), MRD_OK);
    assert_int_equal(proto_record_decode(b.data, b.len, &r, &why), MRD_EPROTO);
    assert_string_equal(why, "record checksum is not a uint64");

    /* Trailing bytes after a sealed record are not part of it. */
    proto_buf_reset(&b);
    struct proto_event_in ev = { .type = S("t") };
    assert_int_equal(proto_record_encode(&b, 1, 1, 1, S("s"), &ev), MRD_OK);
    proto_wr_raw(&b, "\xc0", 1);
    assert_int_equal(proto_record_verify(b.data, b.len), MRD_ECORRUPT);
    proto_buf_fini(&b);
}

/* The largest record fits PROTO_RECORD_SIZE_MAX, even when its meta came
 * with the widest msgpack headers a client may use. */
static void
test_record_at_limits(void **state)
{
    size_t   per  = 5 + MRD_META_KEY_SIZE_MAX + 5 + MRD_META_VALUE_SIZE_MAX;
    size_t   mlen = 5 + MRD_META_ENTRIES_MAX * per;
    uint8_t *meta = malloc(mlen);
    char    *big  = malloc(MRD_EVENT_DATA_SIZE_MAX);
    uint8_t *p    = meta;
    struct proto_buf    b;
    struct proto_record r;
    const char         *why = NULL;
    (void) state;

    assert_non_null(meta);
    assert_non_null(big);
    memset(big, 'z', MRD_EVENT_DATA_SIZE_MAX);
    *p++ = 0xdf;
    mrd_be32_put(p, MRD_META_ENTRIES_MAX);
    p += 4;
    for (unsigned i = 0; i < MRD_META_ENTRIES_MAX; i++) {
        *p++ = 0xdb;
        mrd_be32_put(p, MRD_META_KEY_SIZE_MAX);
        p += 4;
        memset(p, 'k', MRD_META_KEY_SIZE_MAX);
        p[0] = (uint8_t) ('a' + i % 26);
        p[1] = (uint8_t) ('a' + i / 26);
        p += MRD_META_KEY_SIZE_MAX;
        *p++ = 0xdb;
        mrd_be32_put(p, MRD_META_VALUE_SIZE_MAX);
        p += 4;
        memset(p, 'v', MRD_META_VALUE_SIZE_MAX);
        p += MRD_META_VALUE_SIZE_MAX;
    }
    assert_int_equal((size_t) (p - meta), mlen);
    struct proto_event_in ev = {
        .type         = { big, MRD_EVENT_TYPE_SIZE_MAX },
        .data         = { big, MRD_EVENT_DATA_SIZE_MAX },
        .content_type = { big, MRD_CONTENT_TYPE_SIZE_MAX },
        .correlation  = { big, MRD_ID_SIZE_MAX },
        .causation    = { big, MRD_ID_SIZE_MAX },
        .meta_raw     = { (const char *) meta, (uint32_t) mlen },
        .meta_count   = MRD_META_ENTRIES_MAX,
        .ops          = { big, PROTO_OPS_SIZE_MAX },
    };
    struct proto_str stream = { big, MRD_STREAM_NAME_SIZE_MAX };
    proto_buf_init(&b, PROTO_RECORD_SIZE_MAX);
    assert_int_equal(proto_record_encode(
                         &b, UINT64_MAX, UINT64_MAX, UINT64_MAX, stream, &ev),
        MRD_OK);
    assert_true(b.len <= PROTO_RECORD_SIZE_MAX);
    assert_int_equal(proto_record_decode(b.data, b.len, &r, &why), MRD_OK);
    assert_int_equal(r.meta_count, MRD_META_ENTRIES_MAX);
    assert_int_equal(r.ops.len, PROTO_OPS_SIZE_MAX);
    assert_true(r.origin == UINT64_MAX);

    proto_buf_fini(&b);
    free(big);
    free(meta);
}

/* The encoder checks what it stores, like the decoder. */
static void
test_record_encode_checks(void **state)
{
    char            *big = malloc(MRD_EVENT_DATA_SIZE_MAX + 1);
    struct proto_buf b;
    (void) state;

    assert_non_null(big);
    memset(big, 'z', MRD_EVENT_DATA_SIZE_MAX + 1);
    struct proto_event_in ev = {
        .type     = { big, MRD_EVENT_TYPE_SIZE_MAX },
        .data     = { big, MRD_EVENT_DATA_SIZE_MAX },
        .meta_raw = { "\x81\xa1k\xa1v", 5 },
    };
    struct proto_str stream = { big, MRD_STREAM_NAME_SIZE_MAX };
    proto_buf_init(&b, PROTO_RECORD_SIZE_MAX);
    assert_int_equal(proto_record_encode(&b, 1, 1, 1, stream, &ev), MRD_OK);
    proto_buf_reset(&b);
    ev.data.len++;
    assert_int_equal(
        proto_record_encode(&b, 1, 1, 1, stream, &ev), MRD_ETOOBIG);
    ev.data.len--;
    stream.len++;
    assert_int_equal(proto_record_encode(&b, 1, 1, 1, stream, &ev), MRD_ENAME);
    stream.len--;
    ev.meta_raw.len--; /* cut inside the map */
    assert_int_equal(proto_record_encode(&b, 1, 1, 1, stream, &ev), MRD_EPROTO);
    ev.meta_raw = (struct proto_str) { "\x81\xa1k\xc4\x00", 5 };
    assert_int_equal(proto_record_encode(&b, 1, 1, 1, stream, &ev), MRD_EPROTO);
    ev.meta_raw = (struct proto_str) { "\x80\xc0", 2 }; /* trailing byte */
    assert_int_equal(proto_record_encode(&b, 1, 1, 1, stream, &ev), MRD_EPROTO);
    ev.meta_raw = (struct proto_str) { "\x80", 1 };
    ev.type.len = 0;
    assert_int_equal(proto_record_encode(&b, 1, 1, 1, stream, &ev), MRD_EPROTO);
    assert_int_equal(b.len, 0);
    ev.type.len = 1;
    /* Ops: at most PROTO_OPS_SIZE_MAX, and bytes need a pointer. */
    char *ops = malloc(PROTO_OPS_SIZE_MAX + 1);
    assert_non_null(ops);
    memset(ops, 'o', PROTO_OPS_SIZE_MAX + 1);
    ev.data.len = 0;
    ev.ops      = (struct proto_str) { ops, PROTO_OPS_SIZE_MAX + 1 };
    assert_int_equal(
        proto_record_encode(&b, 1, 1, 1, stream, &ev), MRD_ETOOBIG);
    ev.ops = (struct proto_str) { NULL, 1 };
    assert_int_equal(proto_record_encode(&b, 1, 1, 1, stream, &ev), MRD_EPROTO);
    assert_int_equal(b.len, 0);
    ev.ops = (struct proto_str) { ops, PROTO_OPS_SIZE_MAX };
    assert_int_equal(proto_record_encode(&b, 1, 1, 1, stream, &ev), MRD_OK);
    proto_buf_reset(&b);
    ev.ops = (struct proto_str) { NULL, 0 };
    free(ops);
    /* A buffer one byte short fails; so does a poisoned one. */
    stream.len = 1;
    ev         = (struct proto_event_in) { .type = { big, 1 } };
    proto_buf_reset(&b);
    assert_int_equal(proto_record_encode(&b, 9, 9, 9, stream, &ev), MRD_OK);
    size_t need = b.len;
    proto_buf_fini(&b);
    proto_buf_init(&b, need - 1);
    assert_int_equal(
        proto_record_encode(&b, 9, 9, 9, stream, &ev), MRD_ETOOBIG);
    assert_int_equal(
        proto_record_encode(&b, 1, 1, 1, stream, &ev), MRD_ETOOBIG);
    proto_buf_fini(&b);
    free(big);
}

static void
test_meta_iteration_edges(void **state)
{
    struct proto_str empty     = { NULL, 0 };
    struct proto_str not_a_map = { "\x91\xa0", 2 };
    struct proto_str junk      = { "\x81\xa1k", 3 };
    struct proto_rd  rd;
    struct proto_str k;
    struct proto_str v;
    (void) state;

    proto_meta_begin(&empty, &rd);
    assert_int_equal(proto_meta_next(&rd, &k, &v), MRD_ENOTFOUND);
    proto_meta_begin(&not_a_map, &rd);
    assert_int_equal(proto_meta_next(&rd, &k, &v), MRD_ENOTFOUND);
    proto_meta_begin(&junk, &rd);
    const uint8_t *at = rd.p;
    assert_int_equal(proto_meta_next(&rd, &k, &v), MRD_EPROTO);
    assert_ptr_equal(rd.p, at);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_record_layout),
        cmocka_unit_test(test_record_format1),
        cmocka_unit_test(test_record_format2),
        cmocka_unit_test(test_record_idem),
        cmocka_unit_test(test_record_ops_round_trip),
        cmocka_unit_test(test_record_bad_ops),
        cmocka_unit_test(test_record_bit_flips),
        cmocka_unit_test(test_record_checksummed_junk),
        cmocka_unit_test(test_record_checksummed_bad_fields),
        cmocka_unit_test(test_record_bad_meta),
        cmocka_unit_test(test_record_checksum_shape),
        cmocka_unit_test(test_record_at_limits),
        cmocka_unit_test(test_record_encode_checks),
        cmocka_unit_test(test_meta_iteration_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
