/*
 * record_fuzz.c: libFuzzer target for proto_record_decode, the reader of
 * every event record that comes off the disk or from a peer.
 *
 * Random bytes almost never carry a valid checksum, which would leave the
 * decoder behind it unexplored. So each input is used twice: as is, and as
 * a record body that this target seals with the right checksum (computed
 * here, independently, with libsodium). Sealed inputs must never be refused
 * as corrupt. Whatever is accepted must be within every limit, and must
 * re-encode with proto_record_encode into a record that decodes to the same
 * fields.
 */
#include <sodium.h>
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

static const unsigned char record_key[16] = { 'm', 'e', 'r', 'i', 'd', 'i', 'a',
    'n', '-', 'r', 'e', 'c', 'o', 'r', 'd', '1' };

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

static void
check_record(const struct proto_record *r)
{
    struct proto_rd  rd;
    struct proto_str k;
    struct proto_str v;
    uint32_t         n = 0;

    CHECK(r->format >= 1 && r->format <= PROTO_RECORD_FORMAT);
    CHECK(mrd_stream_name_check(r->stream.ptr, r->stream.len) == MRD_OK);
    check_text(r->type, MRD_EVENT_TYPE_SIZE_MAX, true);
    check_text(r->content_type, MRD_CONTENT_TYPE_SIZE_MAX, false);
    check_text(r->correlation, MRD_ID_SIZE_MAX, false);
    check_text(r->causation, MRD_ID_SIZE_MAX, false);
    CHECK(r->data.len <= MRD_EVENT_DATA_SIZE_MAX);
    CHECK(r->ops.len <= PROTO_OPS_SIZE_MAX);
    CHECK(r->format >= 2 || r->ops.len == 0);
    CHECK((r->ops.len == 0) == (r->ops.ptr == NULL));
    CHECK(r->format >= 3 || r->idem.key.len == 0);
    CHECK(r->idem.key.len <= MRD_IDEMPOTENCY_KEY_SIZE_MAX);
    CHECK(r->idem.key.len == 0
        || (r->idem.count >= 1 && r->idem.count <= MRD_APPEND_EVENTS_MAX));
    CHECK(r->meta_count <= MRD_META_ENTRIES_MAX);
    proto_meta_begin(&r->meta_raw, &rd);
    while (proto_meta_next(&rd, &k, &v) == MRD_OK) {
        check_text(k, MRD_META_KEY_SIZE_MAX, true);
        check_text(v, MRD_META_VALUE_SIZE_MAX, false);
        n++;
    }
    CHECK(proto_rd_done(&rd));
    CHECK(n == r->meta_count);
}

/* Stores the decoded event again, as a node would, and reads it back: a
 * format-1 or format-2 record comes back as format 3 with the same
 * fields. */
static void
reencode(const struct proto_record *r)
{
    struct proto_event_in ev = { .type = r->type,
        .data                          = r->data,
        .content_type                  = r->content_type,
        .correlation                   = r->correlation,
        .causation                     = r->causation,
        .meta_raw                      = r->meta_raw,
        .meta_count                    = r->meta_count,
        .ops                           = r->ops };
    struct proto_record   again;
    struct proto_buf      b;
    const char           *why;

    proto_buf_init(&b, PROTO_RECORD_SIZE_MAX);
    CHECK(proto_record_encode_idem(
              &b, r->origin, r->seq, r->hlc, r->stream, &ev, &r->idem)
        == MRD_OK);
    CHECK(b.len <= PROTO_RECORD_SIZE_MAX);
    CHECK(proto_record_verify(b.data, b.len) == MRD_OK);
    CHECK(proto_record_decode(b.data, b.len, &again, &why) == MRD_OK);
    CHECK(again.origin == r->origin && again.seq == r->seq);
    CHECK(again.hlc == r->hlc && str_eq(again.stream, r->stream));
    CHECK(str_eq(again.type, r->type) && str_eq(again.data, r->data));
    CHECK(str_eq(again.content_type, r->content_type));
    CHECK(str_eq(again.correlation, r->correlation));
    CHECK(str_eq(again.causation, r->causation));
    CHECK(str_eq(again.meta_raw, r->meta_raw));
    CHECK(again.meta_count == r->meta_count);
    CHECK(str_eq(again.ops, r->ops));
    CHECK(str_eq(again.idem.key, r->idem.key));
    CHECK(again.idem.digest == r->idem.digest);
    CHECK(again.idem.expected == r->idem.expected);
    CHECK(again.idem.count == r->idem.count);
    CHECK(again.format == PROTO_RECORD_FORMAT); /* 1 and 2 are read only */
    proto_buf_fini(&b);
}

static int
decode(const uint8_t *p, size_t len)
{
    struct proto_record r;
    const char         *why = NULL;

    int rv = proto_record_decode(p, len, &r, &why);
    if (rv != MRD_OK) {
        CHECK(why != NULL);
        CHECK(rv == MRD_ECORRUPT || rv == MRD_EPROTO || rv == MRD_ETOOBIG
            || rv == MRD_ENAME);
        return rv;
    }
    CHECK(proto_record_verify(p, len) == MRD_OK);
    check_record(&r);
    reencode(&r);
    return rv;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char h[crypto_shorthash_BYTES];

    (void) decode(data, size);
    /* A record has at least one byte before its checksum. */
    if (size == 0 || size > PROTO_RECORD_SIZE_MAX) {
        return 0;
    }
    uint8_t *sealed = malloc(size + 9);
    CHECK(sealed != NULL);
    memcpy(sealed, data, size);
    CHECK(crypto_shorthash(h, sealed, size, record_key) == 0);
    sealed[size] = 0xcf;
    for (int k = 0; k < 8; k++) {
        sealed[size + 1 + k] = h[7 - k]; /* the u64, big-endian */
    }
    CHECK(proto_record_verify(sealed, size + 9) == MRD_OK);
    CHECK(decode(sealed, size + 9) != MRD_ECORRUPT);
    free(sealed);
    return 0;
}
