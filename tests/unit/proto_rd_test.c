/*
 * proto_rd_test.c: the bounded msgpack reader, the walker, the capped buffer
 * and writer, and the UTF-8 and stream name checks of common/ they rely on.
 *
 * Byte strings are written out by hand here on purpose: the reader must be
 * checked against the msgpack spec, not against our own writer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "proto.h"

/* The allocation-failure test asks for more memory than exists; ASan must
 * answer NULL as malloc does, instead of aborting. */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

#define B(s) ((const uint8_t *) (s)), (sizeof(s) - 1)

/* Reads one uint from the bytes; asserts the whole buffer was used. */
static int
rd_uint_all(const uint8_t *p, size_t len, uint64_t *v)
{
    struct proto_rd rd;
    proto_rd_init(&rd, p, len);
    int rv = proto_rd_uint(&rd, v);
    if (rv == MRD_OK) {
        assert_true(proto_rd_done(&rd));
    } else {
        assert_ptr_equal(rd.p, p); /* a failed read does not move */
    }
    return rv;
}

static int
rd_int_all(const uint8_t *p, size_t len, int64_t *v)
{
    struct proto_rd rd;
    proto_rd_init(&rd, p, len);
    int rv = proto_rd_int(&rd, v);
    if (rv == MRD_OK) {
        assert_true(proto_rd_done(&rd));
    } else {
        assert_ptr_equal(rd.p, p);
    }
    return rv;
}

static void
test_rd_uint_formats(void **state)
{
    uint64_t v = 99;
    (void) state;

    assert_int_equal(rd_uint_all(B("\x00"), &v), MRD_OK);
    assert_int_equal(v, 0);
    assert_int_equal(rd_uint_all(B("\x7f"), &v), MRD_OK);
    assert_int_equal(v, 127);
    assert_int_equal(rd_uint_all(B("\xcc\xff"), &v), MRD_OK);
    assert_int_equal(v, 255);
    assert_int_equal(rd_uint_all(B("\xcd\x12\x34"), &v), MRD_OK);
    assert_int_equal(v, 0x1234);
    assert_int_equal(rd_uint_all(B("\xce\x12\x34\x56\x78"), &v), MRD_OK);
    assert_int_equal(v, 0x12345678);
    assert_int_equal(
        rd_uint_all(B("\xcf\xff\xff\xff\xff\xff\xff\xff\xff"), &v), MRD_OK);
    assert_true(v == UINT64_MAX);
    /* Non-negative numbers in signed formats are accepted. */
    assert_int_equal(rd_uint_all(B("\xd0\x05"), &v), MRD_OK);
    assert_int_equal(v, 5);
    assert_int_equal(
        rd_uint_all(B("\xd3\x7f\xff\xff\xff\xff\xff\xff\xff"), &v), MRD_OK);
    assert_true(v == (uint64_t) INT64_MAX);
    /* Negative numbers and other types are not uints. */
    assert_int_equal(rd_uint_all(B("\xff"), &v), MRD_EPROTO);
    assert_int_equal(rd_uint_all(B("\xd0\xff"), &v), MRD_EPROTO);
    assert_int_equal(
        rd_uint_all(B("\xd3\x80\x00\x00\x00\x00\x00\x00\x00"), &v), MRD_EPROTO);
    assert_int_equal(rd_uint_all(B("\xc0"), &v), MRD_EPROTO);
    assert_int_equal(rd_uint_all(B("\xc3"), &v), MRD_EPROTO);
    assert_int_equal(rd_uint_all(B("\xa1x"), &v), MRD_EPROTO);
    assert_int_equal(rd_uint_all(B("\xca\x00\x00\x00\x00"), &v), MRD_EPROTO);
    assert_int_equal(v, (uint64_t) INT64_MAX); /* untouched on failure */
}

static void
test_rd_int_formats(void **state)
{
    int64_t v = 99;
    (void) state;

    assert_int_equal(rd_int_all(B("\xff"), &v), MRD_OK);
    assert_int_equal(v, -1);
    assert_int_equal(rd_int_all(B("\xe0"), &v), MRD_OK);
    assert_int_equal(v, -32);
    assert_int_equal(rd_int_all(B("\x7f"), &v), MRD_OK);
    assert_int_equal(v, 127);
    assert_int_equal(rd_int_all(B("\xd0\x80"), &v), MRD_OK);
    assert_int_equal(v, -128);
    assert_int_equal(rd_int_all(B("\xd0\x7f"), &v), MRD_OK);
    assert_int_equal(v, 127);
    assert_int_equal(rd_int_all(B("\xd1\x80\x00"), &v), MRD_OK);
    assert_int_equal(v, -32768);
    assert_int_equal(rd_int_all(B("\xd2\x80\x00\x00\x00"), &v), MRD_OK);
    assert_true(v == INT32_MIN);
    assert_int_equal(rd_int_all(B("\xd2\xff\xff\xff\xfe"), &v), MRD_OK);
    assert_int_equal(v, -2);
    assert_int_equal(
        rd_int_all(B("\xd3\x80\x00\x00\x00\x00\x00\x00\x00"), &v), MRD_OK);
    assert_true(v == INT64_MIN);
    assert_int_equal(
        rd_int_all(B("\xd3\xff\xff\xff\xff\xff\xff\xff\xfc"), &v), MRD_OK);
    assert_int_equal(v, -4);
    assert_int_equal(rd_int_all(B("\xcc\xff"), &v), MRD_OK);
    assert_int_equal(v, 255);
    assert_int_equal(
        rd_int_all(B("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff"), &v), MRD_OK);
    assert_true(v == INT64_MAX);
    /* A uint64 above INT64_MAX does not fit. */
    assert_int_equal(
        rd_int_all(B("\xcf\x80\x00\x00\x00\x00\x00\x00\x00"), &v), MRD_EPROTO);
    assert_int_equal(rd_int_all(B("\xc2"), &v), MRD_EPROTO);
    assert_true(v == INT64_MAX);
}

/* Every multi-byte header cut short must fail without moving. */
static void
test_rd_truncated_headers(void **state)
{
    static const struct {
        const char *bytes;
        size_t      len;
    } full[] = {
        { "\xcc\x01", 2 },
        { "\xcd\x01\x02", 3 },
        { "\xce\x01\x02\x03\x04", 5 },
        { "\xcf\x01\x02\x03\x04\x05\x06\x07\x08", 9 },
        { "\xd0\x01", 2 },
        { "\xd1\x01\x02", 3 },
        { "\xd2\x01\x02\x03\x04", 5 },
        { "\xd3\x01\x02\x03\x04\x05\x06\x07\x08", 9 },
        { "\xd9\x01x", 3 },
        { "\xda\x00\x01x", 4 },
        { "\xdb\x00\x00\x00\x01x", 6 },
        { "\xc4\x01x", 3 },
        { "\xc5\x00\x01x", 4 },
        { "\xc6\x00\x00\x00\x01x", 6 },
        { "\xdc\x00\x01\xc0", 4 },
        { "\xdd\x00\x00\x00\x01\xc0", 6 },
        { "\xde\x00\x01\xc0\xc0", 5 },
        { "\xdf\x00\x00\x00\x01\xc0\xc0", 7 },
        { "\xa3xyz", 4 },
        { "\x91\xc0", 2 },
        { "\x81\xc0\xc0", 3 },
        { "\xca\x00\x00\x00\x00", 5 },
        { "\xcb\x00\x00\x00\x00\x00\x00\x00\x00", 9 },
    };
    (void) state;

    for (size_t i = 0; i < MRD_ARRAY_SIZE(full); i++) {
        const uint8_t *p = (const uint8_t *) full[i].bytes;
        assert_int_equal(proto_walk(p, full[i].len), MRD_OK);
        for (size_t len = 0; len < full[i].len; len++) {
            struct proto_rd  rd;
            struct proto_str s;
            uint64_t         u;
            int64_t          n;
            uint32_t         c;
            bool             b;

            proto_rd_init(&rd, p, len);
            assert_int_equal(proto_walk(p, len), MRD_EPROTO);
            assert_int_equal(proto_rd_skip(&rd, PROTO_DEPTH_MAX), MRD_EPROTO);
            assert_int_equal(proto_rd_uint(&rd, &u), MRD_EPROTO);
            assert_int_equal(proto_rd_int(&rd, &n), MRD_EPROTO);
            assert_int_equal(proto_rd_str(&rd, &s), MRD_EPROTO);
            assert_int_equal(proto_rd_bin(&rd, &s), MRD_EPROTO);
            assert_int_equal(proto_rd_bool(&rd, &b), MRD_EPROTO);
            /* Whole headers whose elements are missing fail too: the
             * count is checked against the bytes left. */
            assert_int_equal(proto_rd_array(&rd, &c), MRD_EPROTO);
            assert_int_equal(proto_rd_map(&rd, &c), MRD_EPROTO);
            assert_ptr_equal(rd.p, p);
        }
    }
}

static void
test_rd_str_bin(void **state)
{
    struct proto_rd  rd;
    struct proto_str s;
    uint8_t          big[70000];
    (void) state;

    proto_rd_init(&rd,
        B("\xa0\xa3"
          "abc\xd9\x02xy\xc4\x01z\xc4\x00"));
    assert_int_equal(proto_rd_str(&rd, &s), MRD_OK);
    assert_int_equal(s.len, 0);
    assert_int_equal(proto_rd_str(&rd, &s), MRD_OK);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.ptr, "abc", 3);
    assert_int_equal(proto_rd_bin(&rd, &s), MRD_EPROTO); /* str8, not bin */
    assert_int_equal(proto_rd_str(&rd, &s), MRD_OK);
    assert_memory_equal(s.ptr, "xy", 2);
    assert_int_equal(proto_rd_str(&rd, &s), MRD_EPROTO); /* bin, not str */
    assert_int_equal(proto_rd_bin(&rd, &s), MRD_OK);
    assert_memory_equal(s.ptr, "z", 1);
    assert_int_equal(proto_rd_bin(&rd, &s), MRD_OK);
    assert_int_equal(s.len, 0);
    assert_true(proto_rd_done(&rd));

    /* str16 and str32, bin16 and bin32 of real size. */
    memset(big, 'q', sizeof big);
    big[0] = 0xdb;
    mrd_be32_put(big + 1, 65536);
    proto_rd_init(&rd, big, 5 + 65536);
    assert_int_equal(proto_rd_str(&rd, &s), MRD_OK);
    assert_int_equal(s.len, 65536);
    assert_ptr_equal(s.ptr, big + 5);
    big[0] = 0xc5;
    big[1] = 0x01;
    big[2] = 0x00;
    proto_rd_init(&rd, big, 3 + 256);
    assert_int_equal(proto_rd_bin(&rd, &s), MRD_OK);
    assert_int_equal(s.len, 256);
    big[0] = 0xc6;
    mrd_be32_put(big + 1, 65536);
    proto_rd_init(&rd, big, 5 + 65535); /* one byte short */
    assert_int_equal(proto_rd_bin(&rd, &s), MRD_EPROTO);
    assert_ptr_equal(rd.p, big);
}

/* Declared lengths far beyond the buffer: the msgpack-c issue 1013 shapes. */
static void
test_rd_lying_lengths(void **state)
{
    struct proto_rd  rd;
    struct proto_str s;
    uint32_t         c;
    (void) state;

    proto_rd_init(&rd, B("\xdd\xff\xff\xff\xff"));
    assert_int_equal(proto_rd_array(&rd, &c), MRD_EPROTO);
    assert_int_equal(proto_walk(B("\xdd\xff\xff\xff\xff")), MRD_EPROTO);
    proto_rd_init(&rd, B("\xdf\xff\xff\xff\xff"));
    assert_int_equal(proto_rd_map(&rd, &c), MRD_EPROTO);
    assert_int_equal(proto_walk(B("\xdf\xff\xff\xff\xff")), MRD_EPROTO);
    proto_rd_init(&rd,
        B("\xdb\xff\xff\xff\xff"
          "abc"));
    assert_int_equal(proto_rd_str(&rd, &s), MRD_EPROTO);
    assert_int_equal(proto_walk(B("\xdb\xff\xff\xff\xff"
                                  "abc")),
        MRD_EPROTO);
    proto_rd_init(&rd,
        B("\xc6\xff\xff\xff\xff"
          "abc"));
    assert_int_equal(proto_rd_bin(&rd, &s), MRD_EPROTO);
    assert_int_equal(proto_walk(B("\xc9\xff\xff\xff\xff\x01")), MRD_EPROTO);
    /* A count equal to the bytes left is possible; one more is not. */
    proto_rd_init(&rd, B("\x93\xc0\xc0\xc0"));
    assert_int_equal(proto_rd_array(&rd, &c), MRD_OK);
    assert_int_equal(c, 3);
    proto_rd_init(&rd, B("\x94\xc0\xc0\xc0"));
    assert_int_equal(proto_rd_array(&rd, &c), MRD_EPROTO);
    proto_rd_init(&rd, B("\x82\xc0\xc0\xc0"));
    assert_int_equal(proto_rd_map(&rd, &c), MRD_EPROTO);
    proto_rd_init(&rd, B("\x82\xc0\xc0\xc0\xc0"));
    assert_int_equal(proto_rd_map(&rd, &c), MRD_OK);
    assert_int_equal(c, 2);
}

static void
test_rd_bool_and_type_errors(void **state)
{
    struct proto_rd  rd;
    struct proto_str s;
    bool             b = false;
    uint32_t         c;
    (void) state;

    proto_rd_init(&rd, B("\xc3\xc2\xc1"));
    assert_int_equal(proto_rd_bool(&rd, &b), MRD_OK);
    assert_true(b);
    assert_int_equal(proto_rd_bool(&rd, &b), MRD_OK);
    assert_false(b);
    /* 0xc1 is never valid, whatever is asked for. */
    const uint8_t *at = rd.p;
    assert_int_equal(proto_rd_bool(&rd, &b), MRD_EPROTO);
    assert_int_equal(proto_rd_skip(&rd, 4), MRD_EPROTO);
    assert_int_equal(proto_rd_array(&rd, &c), MRD_EPROTO);
    assert_ptr_equal(rd.p, at);
    assert_false(proto_rd_done(&rd));

    proto_rd_init(&rd, B("\x90"));
    assert_int_equal(proto_rd_map(&rd, &c), MRD_EPROTO);
    assert_int_equal(proto_rd_str(&rd, &s), MRD_EPROTO);
    assert_int_equal(proto_rd_bool(&rd, &b), MRD_EPROTO);
    assert_int_equal(proto_rd_array(&rd, &c), MRD_OK);
    assert_int_equal(c, 0);

    /* An empty reader, also from a NULL buffer. */
    proto_rd_init(&rd, NULL, 0);
    assert_true(proto_rd_done(&rd));
    assert_int_equal(proto_rd_bool(&rd, &b), MRD_EPROTO);
    assert_int_equal(proto_rd_skip(&rd, 1), MRD_EPROTO);
    assert_int_equal(proto_walk(NULL, 0), MRD_EPROTO);
}

static void
test_rd_skip(void **state)
{
    struct proto_rd rd;
    (void) state;

    /* [1, {"a": [nil, 1.5]}, ext] then a trailing 7. */
    static const char v[] = "\x93\x01\x81\xa1"
                            "a\x92\xc0\xca\x3f\xc0\x00\x00\xd4\x01\x02\x07";
    proto_rd_init(&rd, v, sizeof v - 1);
    assert_int_equal(proto_rd_skip(&rd, 2), MRD_EPROTO); /* 3 deep */
    assert_ptr_equal(rd.p, (const uint8_t *) v);
    assert_int_equal(proto_rd_skip(&rd, 3), MRD_OK);
    assert_int_equal(rd.end - rd.p, 1);
    assert_int_equal(rd.p[0], 0x07);
    assert_int_equal(proto_rd_skip(&rd, 0), MRD_OK); /* a scalar */
    assert_true(proto_rd_done(&rd));

    /* An empty container still counts as one level. */
    proto_rd_init(&rd, B("\x90"));
    assert_int_equal(proto_rd_skip(&rd, 0), MRD_EPROTO);
    assert_int_equal(proto_rd_skip(&rd, 1), MRD_OK);

    /* Huge depth limits are clamped, not trusted. */
    uint8_t deep[40];
    memset(deep, 0x91, sizeof deep);
    deep[sizeof deep - 1] = 0xc0;
    proto_rd_init(&rd, deep, sizeof deep);
    assert_int_equal(proto_rd_skip(&rd, UINT32_MAX), MRD_EPROTO);
    proto_rd_init(&rd, deep + sizeof deep - 1 - 16, 17);
    assert_int_equal(proto_rd_skip(&rd, UINT32_MAX), MRD_OK);
}

/* Nested arrays, `levels` deep, innermost empty. */
static size_t
nest(uint8_t *out, unsigned levels)
{
    for (unsigned i = 0; i + 1 < levels; i++) {
        out[i] = 0x91;
    }
    out[levels - 1] = 0x90;
    return levels;
}

static void
test_walk_depth(void **state)
{
    uint8_t buf[64];
    (void) state;

    assert_int_equal(proto_walk(buf, nest(buf, 1)), MRD_OK);
    assert_int_equal(proto_walk(buf, nest(buf, PROTO_DEPTH_MAX)), MRD_OK);
    assert_int_equal(
        proto_walk(buf, nest(buf, PROTO_DEPTH_MAX + 1)), MRD_EPROTO);
    assert_int_equal(proto_walk(buf, nest(buf, 60)), MRD_EPROTO);
    /* Maps count as levels too: {nil: {nil: ...}}. */
    size_t n = 0;
    for (unsigned i = 0; i < PROTO_DEPTH_MAX + 1; i++) {
        buf[n++] = 0x81;
        buf[n++] = 0xc0;
    }
    buf[n++] = 0xc0;
    assert_int_equal(proto_walk(buf, n), MRD_EPROTO);
    assert_int_equal(proto_walk(buf + 2, n - 2), MRD_OK);
}

static void
test_walk_shapes(void **state)
{
    (void) state;

    assert_int_equal(proto_walk(B("\xc0")), MRD_OK);
    assert_int_equal(proto_walk(B("\x80")), MRD_OK);
    assert_int_equal(
        proto_walk(B("\xcb\x00\x00\x00\x00\x00\x00\x00\x00")), MRD_OK);
    /* Trailing bytes: two values are not one. */
    assert_int_equal(proto_walk(B("\xc0\xc0")), MRD_EPROTO);
    assert_int_equal(proto_walk(B("\x90\x00")), MRD_EPROTO);
    /* Extension types, fixed and sized, anywhere. */
    assert_int_equal(proto_walk(B("\xd4\x01\x02")), MRD_EPROTO);
    assert_int_equal(proto_walk(B("\xd8\x01"
                                  "0123456789abcdef")),
        MRD_EPROTO);
    assert_int_equal(proto_walk(B("\xc7\x01\x05x")), MRD_EPROTO);
    assert_int_equal(proto_walk(B("\xc8\x00\x01\x05x")), MRD_EPROTO);
    assert_int_equal(proto_walk(B("\x91\xd6\xff\x00\x00\x00\x00")), MRD_EPROTO);
    assert_int_equal(proto_walk(B("\xc1")), MRD_EPROTO);
    assert_int_equal(proto_walk(B("\x92\x01\xc1")), MRD_EPROTO);
}

/* A container of exactly PROTO_COUNT_MAX elements is walked; one more is
 * refused although the bytes are there. */
static void
test_walk_counts(void **state)
{
    size_t   len = 5 + 2 * (PROTO_COUNT_MAX + 1);
    uint8_t *buf = malloc(len);
    (void) state;

    assert_non_null(buf);
    memset(buf, 0xc0, len);
    buf[0] = 0xdd;
    mrd_be32_put(buf + 1, PROTO_COUNT_MAX);
    assert_int_equal(proto_walk(buf, 5 + PROTO_COUNT_MAX), MRD_OK);
    mrd_be32_put(buf + 1, PROTO_COUNT_MAX + 1);
    assert_int_equal(proto_walk(buf, 5 + PROTO_COUNT_MAX + 1), MRD_EPROTO);
    buf[0] = 0xdf;
    mrd_be32_put(buf + 1, PROTO_COUNT_MAX);
    assert_int_equal(proto_walk(buf, 5 + 2 * PROTO_COUNT_MAX), MRD_OK);
    mrd_be32_put(buf + 1, PROTO_COUNT_MAX + 1);
    assert_int_equal(
        proto_walk(buf, 5 + 2 * (PROTO_COUNT_MAX + 1)), MRD_EPROTO);
    free(buf);
}

/* proto_walk and msgpack-c's unpacker agree on what one value is. */
static void
test_walk_agrees_with_msgpack_c(void **state)
{
    static const struct {
        const char *bytes;
        size_t      len;
    } ok[] = {
        { "\x93\x01\x02\x81\x01\xa3"
          "abc",
            9 },
        { "\xdc\x00\x02\xc2\xc3", 5 },
        { "\xde\x00\x01\xd9\x01z\xc4\x02xy", 10 },
        { "\xcf\x00\x00\x00\x00\x00\x00\x00\x01", 9 },
        { "\xd3\xff\xff\xff\xff\xff\xff\xff\xff", 9 },
        { "\xa5\xff\xfe\x00\x01\x02", 6 }, /* str bytes are not checked */
    };
    (void) state;

    for (size_t i = 0; i < MRD_ARRAY_SIZE(ok); i++) {
        msgpack_unpacked u;
        size_t           off = 0;

        assert_int_equal(proto_walk(ok[i].bytes, ok[i].len), MRD_OK);
        msgpack_unpacked_init(&u);
        msgpack_unpack_return r
            = msgpack_unpack_next(&u, ok[i].bytes, ok[i].len, &off);
        assert_int_equal(r, MSGPACK_UNPACK_SUCCESS);
        assert_int_equal(off, ok[i].len);
        msgpack_unpacked_destroy(&u);
    }
}

/* ------------------------------------------------------------ buffer -- */

static void
test_buf_cap(void **state)
{
    struct proto_buf buf;
    (void) state;

    proto_buf_init(&buf, 10);
    assert_int_equal(proto_buf_status(&buf), MRD_OK);
    assert_int_equal(proto_buf_append(&buf, "0123456789", 10), MRD_OK);
    assert_int_equal(buf.len, 10);
    assert_true(buf.cap <= 10);
    assert_int_equal(proto_buf_append(&buf, "", 0), MRD_OK);
    assert_int_equal(proto_buf_append(&buf, "x", 1), MRD_ETOOBIG);
    assert_true(buf.overflow);
    /* Sticky: even an empty or fitting write fails now. */
    assert_int_equal(proto_buf_append(&buf, "", 0), MRD_ETOOBIG);
    proto_wr_uint(&buf, 1);
    assert_int_equal(buf.len, 10);
    assert_int_equal(proto_buf_status(&buf), MRD_ETOOBIG);
    proto_buf_reset(&buf);
    assert_int_equal(proto_buf_status(&buf), MRD_OK);
    assert_int_equal(buf.len, 0);
    assert_int_equal(proto_buf_append(&buf, "abc", 3), MRD_OK);
    assert_memory_equal(buf.data, "abc", 3);
    proto_buf_fini(&buf);
    assert_null(buf.data);

    /* A zero cap takes nothing but empty writes. */
    proto_buf_init(&buf, 0);
    assert_int_equal(proto_buf_append(&buf, NULL, 0), MRD_OK);
    proto_wr_map(&buf, 0);
    assert_int_equal(proto_buf_status(&buf), MRD_ETOOBIG);
    proto_buf_fini(&buf);
    proto_buf_fini(&buf); /* fini twice is harmless */
}

static void
test_buf_growth(void **state)
{
    struct proto_buf buf;
    uint8_t          chunk[100];
    size_t           cap_last = 0;
    (void) state;

    memset(chunk, 7, sizeof chunk);
    proto_buf_init(&buf, 5000);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(proto_buf_append(&buf, chunk, sizeof chunk), MRD_OK);
        assert_true(buf.cap >= buf.len && buf.cap <= buf.cap_max);
        if (buf.cap != cap_last) {
            /* Doubling from 256, then clamped to the cap. */
            assert_true(buf.cap == 256 || buf.cap == cap_last * 2
                || buf.cap == buf.cap_max);
            cap_last = buf.cap;
        }
    }
    assert_int_equal(buf.len, 5000);
    assert_int_equal(buf.cap, 5000);
    assert_int_equal(proto_buf_append(&buf, chunk, 1), MRD_ETOOBIG);
    for (size_t i = 0; i < buf.len; i++) {
        assert_int_equal(buf.data[i], 7);
    }
    proto_buf_fini(&buf);
}

/* The one allocation of the module failing: realloc of more than exists. */
static void
test_buf_nomem(void **state)
{
    struct proto_buf buf;
    (void) state;

    proto_buf_init(&buf, SIZE_MAX);
    assert_int_equal(proto_buf_append(&buf, "ab", 2), MRD_OK);
    /* The length is a lie, but the buffer fails before it reads a byte. */
    assert_int_equal(proto_buf_append(&buf, "x", SIZE_MAX / 4), MRD_ENOMEM);
    assert_true(buf.nomem);
    assert_int_equal(proto_buf_status(&buf), MRD_ENOMEM);
    assert_int_equal(proto_buf_append(&buf, "c", 1), MRD_ENOMEM);
    assert_int_equal(buf.len, 2);
    assert_memory_equal(buf.data, "ab", 2); /* the old data survived */
    proto_buf_reset(&buf);
    assert_int_equal(proto_buf_append(&buf, "c", 1), MRD_OK);
    proto_buf_fini(&buf);
}

/* What the writer produces, byte for byte: the smallest encodings. */
static void
expect_bytes(struct proto_buf *buf, const char *bytes, size_t len)
{
    assert_int_equal(proto_buf_status(buf), MRD_OK);
    assert_int_equal(buf->len, len);
    assert_memory_equal(buf->data, bytes, len);
    proto_buf_reset(buf);
}

static void
test_wr_encodings(void **state)
{
    struct proto_buf buf;
    char             s[40];
    (void) state;

    memset(s, 'a', sizeof s);
    proto_buf_init(&buf, 1 << 20);
    proto_wr_uint(&buf, 0);
    proto_wr_uint(&buf, 127);
    proto_wr_uint(&buf, 128);
    proto_wr_uint(&buf, 256);
    proto_wr_uint(&buf, 65536);
    proto_wr_uint(&buf, (uint64_t) 1 << 32);
    expect_bytes(&buf,
        "\x00\x7f\xcc\x80\xcd\x01\x00\xce\x00\x01\x00\x00"
        "\xcf\x00\x00\x00\x01\x00\x00\x00\x00",
        21);
    proto_wr_int(&buf, -1);
    proto_wr_int(&buf, -32);
    proto_wr_int(&buf, -33);
    proto_wr_int(&buf, 5);
    proto_wr_int(&buf, INT64_MIN);
    expect_bytes(
        &buf, "\xff\xe0\xd0\xdf\x05\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 14);
    proto_wr_bool(&buf, true);
    proto_wr_bool(&buf, false);
    proto_wr_array(&buf, 15);
    proto_wr_array(&buf, 16);
    proto_wr_map(&buf, 1);
    proto_wr_map(&buf, 70000);
    expect_bytes(&buf, "\xc3\xc2\x9f\xdc\x00\x10\x81\xdf\x00\x01\x11\x70", 12);
    proto_wr_str(&buf, s, 31);
    assert_int_equal(buf.data[0], 0xbf);
    assert_int_equal(buf.len, 32);
    proto_buf_reset(&buf);
    proto_wr_str(&buf, s, 32);
    assert_int_equal(buf.data[0], 0xd9);
    assert_int_equal(buf.data[1], 32);
    proto_buf_reset(&buf);
    proto_wr_str(&buf, NULL, 0);
    proto_wr_bin(&buf, NULL, 0);
    proto_wr_bin(&buf, "xy", 2);
    proto_wr_raw(&buf, "\xc0", 1);
    expect_bytes(&buf, "\xa0\xc4\x00\xc4\x02xy\xc0", 8);
    /* Longer than msgpack can say: refused before anything is read. */
    proto_wr_str(&buf, s, (size_t) UINT32_MAX + 1);
    assert_int_equal(proto_buf_status(&buf), MRD_ETOOBIG);
    assert_int_equal(buf.len, 0);
    proto_buf_reset(&buf);
    proto_wr_bin(&buf, s, (size_t) UINT32_MAX + 1);
    assert_int_equal(proto_buf_status(&buf), MRD_ETOOBIG);
    proto_buf_fini(&buf);
}

/* Whatever the writer emits, the reader reads back. */
static void
test_wr_rd_round_trip(void **state)
{
    static const int64_t ints[]
        = { 0, 1, -1, 127, 128, -32, -33, -128, -129, 255, 256, -32768, -32769,
              65535, 65536, INT32_MIN, INT32_MAX, (int64_t) INT32_MIN - 1,
              (int64_t) UINT32_MAX + 1, INT64_MIN, INT64_MAX };
    struct proto_buf buf;
    struct proto_rd  rd;
    (void) state;

    proto_buf_init(&buf, 4096);
    for (size_t i = 0; i < MRD_ARRAY_SIZE(ints); i++) {
        proto_wr_int(&buf, ints[i]);
        proto_wr_uint(&buf, (uint64_t) ints[i]);
    }
    assert_int_equal(proto_buf_status(&buf), MRD_OK);
    proto_rd_init(&rd, buf.data, buf.len);
    for (size_t i = 0; i < MRD_ARRAY_SIZE(ints); i++) {
        int64_t  v;
        uint64_t u;
        assert_int_equal(proto_rd_int(&rd, &v), MRD_OK);
        assert_true(v == ints[i]);
        assert_int_equal(proto_rd_uint(&rd, &u), MRD_OK);
        assert_true(u == (uint64_t) ints[i]);
    }
    assert_true(proto_rd_done(&rd));
    proto_buf_fini(&buf);
}

/* ---------------------------------------------------- common: UTF-8 -- */

static void
test_utf8_valid(void **state)
{
    static const struct {
        const char *s;
        size_t      len;
        bool        ok;
    } cases[] = {
        { "", 0, true }, { "abc", 3, true }, { "\x7f", 1, true },
        { "\xc2\x80", 2, true }, /* U+0080 */
        { "\xdf\xbf", 2, true }, /* U+07FF */
        { "\xe0\xa0\x80", 3, true }, /* U+0800 */
        { "\xed\x9f\xbf", 3, true }, /* U+D7FF */
        { "\xee\x80\x80", 3, true }, /* U+E000 */
        { "\xef\xbf\xbf", 3, true }, /* U+FFFF */
        { "\xf0\x90\x80\x80", 4, true }, /* U+10000 */
        { "\xf4\x8f\xbf\xbf", 4, true }, /* U+10FFFF */
        { "caf\xc3\xa9", 5, true }, { "a\0b", 3, false }, /* embedded NUL */
        { "\0", 1, false }, { "\x80", 1, false }, /* lone continuation */
        { "\xbf", 1, false }, { "\xc3\x28", 2, false }, /* bad continuation */
        { "\xc3", 1, false }, /* truncated */
        { "\xe2\x82", 2, false }, { "\xf0\x9f\x98", 3, false },
        { "\xc0\xaf", 2, false }, /* overlong '/' */
        { "\xc1\xbf", 2, false }, { "\xe0\x80\xaf", 3, false }, /* overlong */
        { "\xe0\x9f\xbf", 3, false }, { "\xf0\x80\x80\xaf", 4, false },
        { "\xf0\x8f\xbf\xbf", 4, false },
        { "\xed\xa0\x80", 3, false }, /* surrogate U+D800 */
        { "\xed\xbf\xbf", 3, false }, /* surrogate U+DFFF */
        { "\xf4\x90\x80\x80", 4, false }, /* U+110000 */
        { "\xf5\x80\x80\x80", 4, false }, { "\xf8\x88\x80\x80\x80", 5, false },
        { "\xfe", 1, false }, { "\xff", 1, false },
        { "\xe2\x28\xa1", 3, false }, { "\xf0\x90\x28\xbc", 4, false },
        { "ok\xc3\xa9\xc3", 5, false }, /* valid then truncated */
    };
    (void) state;

    for (size_t i = 0; i < MRD_ARRAY_SIZE(cases); i++) {
        if (mrd_utf8_valid(cases[i].s, cases[i].len) != cases[i].ok) {
            fail_msg("case %zu", i);
        }
    }
}

/* A length shorter than the string is what is checked, never more. */
static void
test_utf8_bounds(void **state)
{
    (void) state;
    assert_true(mrd_utf8_valid("\xc3\xa9", 2));
    assert_false(mrd_utf8_valid("\xc3\xa9", 1));
    assert_true(mrd_utf8_valid("a\xc3", 1));
    assert_true(mrd_utf8_valid(NULL, 0));
}

static void
test_stream_name_check(void **state)
{
    char name[300];
    (void) state;

    memset(name, 's', sizeof name);
    assert_int_equal(mrd_stream_name_check("order-123", 9), MRD_OK);
    assert_int_equal(mrd_stream_name_check("x", 1), MRD_OK);
    assert_int_equal(mrd_stream_name_check(name, 255), MRD_OK);
    assert_int_equal(mrd_stream_name_check(name, 256), MRD_ENAME);
    assert_int_equal(mrd_stream_name_check(name, 0), MRD_ENAME);
    assert_int_equal(mrd_stream_name_check(NULL, 0), MRD_ENAME);
    assert_int_equal(mrd_stream_name_check(NULL, 5), MRD_ENAME);
    assert_int_equal(mrd_stream_name_check("a\0b", 3), MRD_ENAME);
    assert_int_equal(mrd_stream_name_check("\xc3\x28", 2), MRD_ENAME);
    assert_int_equal(mrd_stream_name_check("\xc0\xaf", 2), MRD_ENAME);
    assert_int_equal(mrd_stream_name_check("\xed\xa0\x80", 3), MRD_ENAME);
    assert_int_equal(mrd_stream_name_check("\xf4\x90\x80\x80", 4), MRD_ENAME);
    assert_int_equal(mrd_stream_name_check("\xe6\xb3\xa8", 3), MRD_OK);
    /* 255 bytes of multi-byte characters: the limit is bytes. */
    for (int i = 0; i < 85; i++) {
        memcpy(name + 3 * i, "\xe6\xb3\xa8", 3);
    }
    assert_int_equal(mrd_stream_name_check(name, 255), MRD_OK);
    memcpy(name + 255, "\xc3\xa9", 2);
    assert_int_equal(mrd_stream_name_check(name, 257), MRD_ENAME);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rd_uint_formats),
        cmocka_unit_test(test_rd_int_formats),
        cmocka_unit_test(test_rd_truncated_headers),
        cmocka_unit_test(test_rd_str_bin),
        cmocka_unit_test(test_rd_lying_lengths),
        cmocka_unit_test(test_rd_bool_and_type_errors),
        cmocka_unit_test(test_rd_skip),
        cmocka_unit_test(test_walk_depth),
        cmocka_unit_test(test_walk_shapes),
        cmocka_unit_test(test_walk_counts),
        cmocka_unit_test(test_walk_agrees_with_msgpack_c),
        cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_buf_growth),
        cmocka_unit_test(test_buf_nomem),
        cmocka_unit_test(test_wr_encodings),
        cmocka_unit_test(test_wr_rd_round_trip),
        cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_bounds),
        cmocka_unit_test(test_stream_name_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
