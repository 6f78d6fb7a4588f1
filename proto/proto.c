/*
 * proto.c: frames and message codecs, on top of the bounded reader (rd.c)
 * and the capped writer (wr.c).
 *
 * Decoders are strict on purpose. Every body is a map with small uint keys;
 * a key we do not know, a key given twice, a value of the wrong type or a
 * missing required key refuses the whole message (MRD_EPROTO), so a client
 * and a node that disagree on the protocol find out on the first frame
 * instead of silently dropping a field. Every string and byte field is
 * checked against the public limit of meridian.h (MRD_ETOOBIG) and every
 * string must be valid UTF-8 without NUL (MRD_EPROTO), so what a node stores
 * is exactly what its readers can hand to C code as a NUL-terminated string.
 *
 * Encoders write whole frames (header and body) and check the same limits
 * first, so a client never sends what a node would refuse; argument errors
 * there are MRD_EINVAL where a decoder would say MRD_EPROTO.
 *
 * Records are the stored form of an event: the same msgpack, closed by a
 * SipHash-2-4 checksum, because LMDB keeps no checksum of its own. Decoding
 * a record checks the checksum, then walks it, then validates every field
 * exactly like event input: a record that went bad on disk, or was written
 * by a buggy peer with a good checksum, must still never crash a reader.
 */
#include "proto.h"

#include <sodium.h>
#include <stdatomic.h>
#include <string.h>

#define PROTO_BIT(k) (1u << (k))
/* Every key of a body whose keys are 1..n. */
#define PROTO_KEYS_ALL(n) ((1u << ((n) + 1)) - 2u)

/* Error messages are for humans; a longer one is cut, and one that is not
 * UTF-8 is replaced, so an error reply itself always decodes. */
#define PROTO_ERR_MESSAGE_SIZE_MAX 1024u

/* msgpack bytes of an empty map: the meta of an event without any. */
#define PROTO_MAP_EMPTY 0x80u
/* msgpack array32 and uint64 tags: fixed-width headers we patch or hash. */
#define PROTO_ARRAY32 0xddu
#define PROTO_UINT64 0xcfu
#define PROTO_ARRAY32_SIZE 5u
#define PROTO_CHECKSUM_SIZE 9u
/* The fields of a record, checksum included: format 1 has no ops, format 2
 * no idem. */
#define PROTO_RECORD_FIELDS_V1 12u
#define PROTO_RECORD_FIELDS_V2 13u
#define PROTO_RECORD_FIELDS_V3 14u
_Static_assert(PROTO_RECORD_FORMAT == 3, "the encoder writes format 3");

/* The widest a record's fixed parts can be: array header, format, origin,
 * seq and hlc as uint64, str8 headers for stream, type, content type and
 * ids, bin32 for data, map32 for meta, bin32 for ops, idem (array header,
 * bin8 header, digest, expected and count as 64-bit ints), and the
 * checksum. Meta entries are copied verbatim and may use str32 headers: 10
 * bytes per entry, which PROTO_RECORD_SIZE_MAX allows. */
_Static_assert(
    1 + 1 + 3 * 9 + 2 + 2 + 2 + 5 + 2 + 2 + 5 + 5 + (1 + 2 + 3 * 9) + 9
        <= PROTO_RECORD_OVERHEAD_MAX,
    "record headers fit PROTO_RECORD_OVERHEAD_MAX");
/* One read reply item: array header, two uint64 and a bin32 header. */
_Static_assert(1 + 9 + 9 + 5 <= PROTO_EVENT_REPLY_OVERHEAD,
    "event reply items fit PROTO_EVENT_REPLY_OVERHEAD");

/* The SipHash key of record checksums. It is no secret: the checksum finds
 * corruption, not forgery (links and frames are authenticated elsewhere).
 * Never change it: every stored record depends on it. */
static const unsigned char proto_record_key[crypto_shorthash_KEYBYTES] = { 'm',
    'e', 'r', 'i', 'd', 'i', 'a', 'n', '-', 'r', 'e', 'c', 'o', 'r', 'd', '1' };
_Static_assert(crypto_shorthash_KEYBYTES == 16, "SipHash-2-4 key size");
_Static_assert(crypto_shorthash_BYTES == 8, "SipHash-2-4 output size");

/* ------------------------------------------------------------ helpers -- */

static int
proto_fail(const char **why, int code, const char *reason)
{
    if (why != NULL) {
        *why = reason;
    }
    return code;
}

/* How a string field is checked: its limit, whether it may be empty, and
 * what to say when it is wrong. */
struct proto_text_rule {
    uint32_t    size_max;
    bool        required;
    const char *why_type; /* not a msgpack str */
    const char *why_size; /* longer than size_max: MRD_ETOOBIG */
    const char *why_bad; /* empty when required, or not UTF-8 */
};

static const struct proto_text_rule proto_rule_type = {
    MRD_EVENT_TYPE_SIZE_MAX,
    true,
    "event type is not a string",
    "event type is longer than MRD_EVENT_TYPE_SIZE_MAX",
    "event type is empty or not valid UTF-8",
};
static const struct proto_text_rule proto_rule_content_type = {
    MRD_CONTENT_TYPE_SIZE_MAX,
    false,
    "content type is not a string",
    "content type is longer than MRD_CONTENT_TYPE_SIZE_MAX",
    "content type is not valid UTF-8",
};
static const struct proto_text_rule proto_rule_correlation = {
    MRD_ID_SIZE_MAX,
    false,
    "correlation id is not a string",
    "correlation id is longer than MRD_ID_SIZE_MAX",
    "correlation id is not valid UTF-8",
};
static const struct proto_text_rule proto_rule_causation = {
    MRD_ID_SIZE_MAX,
    false,
    "causation id is not a string",
    "causation id is longer than MRD_ID_SIZE_MAX",
    "causation id is not valid UTF-8",
};
static const struct proto_text_rule proto_rule_meta_key = {
    MRD_META_KEY_SIZE_MAX,
    true,
    "meta key is not a string",
    "meta key is longer than MRD_META_KEY_SIZE_MAX",
    "meta key is empty or not valid UTF-8",
};
static const struct proto_text_rule proto_rule_meta_value = {
    MRD_META_VALUE_SIZE_MAX,
    false,
    "meta value is not a string",
    "meta value is longer than MRD_META_VALUE_SIZE_MAX",
    "meta value is not valid UTF-8",
};
static const struct proto_text_rule proto_rule_message = {
    PROTO_ERR_MESSAGE_SIZE_MAX,
    false,
    "error message is not a string",
    "error message is too long",
    "error message is not valid UTF-8",
};
static const struct proto_text_rule proto_rule_node_version = {
    (uint32_t) sizeof(((mrd_node_info *) 0)->version) - 1,
    false,
    "node version is not a string",
    "node version is too long",
    "node version is not valid UTF-8",
};

static int
proto_text_check(
    const struct proto_text_rule *rule, struct proto_str s, const char **why)
{
    if (s.len > rule->size_max) {
        return proto_fail(why, MRD_ETOOBIG, rule->why_size);
    }
    if ((rule->required && s.len == 0) || !mrd_utf8_valid(s.ptr, s.len)) {
        return proto_fail(why, MRD_EPROTO, rule->why_bad);
    }
    return MRD_OK;
}

/* A C string from the caller of an encoder: NULL is empty. strnlen stops one
 * byte past the limit, so a huge or unterminated string is never scanned to
 * its end. Argument errors are MRD_EINVAL, not MRD_EPROTO. */
static int
proto_cstr_check(
    const struct proto_text_rule *rule, const char *s, struct proto_str *out)
{
    out->ptr = s;
    out->len = 0;
    if (s != NULL) {
        out->len = (uint32_t) strnlen(s, (size_t) rule->size_max + 1);
    }
    int rv = proto_text_check(rule, *out, NULL);
    return rv == MRD_EPROTO ? MRD_EINVAL : rv;
}

static size_t
proto_cstr_len(const char *s)
{
    return s == NULL ? 0 : strlen(s);
}

static int
proto_stream_read(struct proto_rd *rd, struct proto_str *out, const char **why)
{
    struct proto_rd cur = *rd;

    if (proto_rd_str(&cur, out) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "stream is not a string");
    }
    if (mrd_stream_name_check(out->ptr, out->len) != MRD_OK) {
        return proto_fail(why, MRD_ENAME, "invalid stream name");
    }
    *rd = cur;
    return MRD_OK;
}

/* Reads one body map key: a uint in 1..key_max, not seen before in this map
 * (`seen` is the bit set of keys read so far). */
static int
proto_key_next(struct proto_rd *rd, uint32_t key_max, uint32_t *seen,
    uint32_t *key_out, const char **why)
{
    uint64_t key;

    MRD_ASSERT(key_max < 32);
    if (proto_rd_uint(rd, &key) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "map key is not an unsigned int");
    }
    if (key == 0 || key > key_max) {
        return proto_fail(why, MRD_EPROTO, "unknown key");
    }
    if ((*seen & PROTO_BIT(key)) != 0) {
        return proto_fail(why, MRD_EPROTO, "duplicate key");
    }
    *seen |= PROTO_BIT(key);
    *key_out = (uint32_t) key;
    return MRD_OK;
}

/* Flat bodies (every value a scalar, str or bin) are decoded by one loop
 * driven by a table of value types indexed by key - 1. */
enum proto_vt {
    PROTO_VT_UINT,
    PROTO_VT_U32,
    PROTO_VT_INT,
    PROTO_VT_BOOL,
    PROTO_VT_STR,
    PROTO_VT_BIN,
};

struct proto_val {
    uint64_t         u;
    int64_t          i;
    bool             b;
    struct proto_str s;
};

static int
proto_val_read(struct proto_rd *rd, enum proto_vt vt, struct proto_val *v)
{
    struct proto_rd cur = *rd;
    int             rv  = MRD_EPROTO;

    switch (vt) {
    case PROTO_VT_UINT:
        rv = proto_rd_uint(&cur, &v->u);
        break;
    case PROTO_VT_U32:
        rv = proto_rd_uint(&cur, &v->u);
        if (rv == MRD_OK && v->u > UINT32_MAX) {
            rv = MRD_EPROTO;
        }
        break;
    case PROTO_VT_INT:
        rv = proto_rd_int(&cur, &v->i);
        break;
    case PROTO_VT_BOOL:
        rv = proto_rd_bool(&cur, &v->b);
        break;
    case PROTO_VT_STR:
        rv = proto_rd_str(&cur, &v->s);
        break;
    case PROTO_VT_BIN:
        rv = proto_rd_bin(&cur, &v->s);
        break;
    }
    if (rv == MRD_OK) {
        *rd = cur;
    }
    return rv;
}

/* Decodes a flat body whose keys are 1..key_max, value types vts[key - 1],
 * into vals[key - 1]. Keys in `required` (a PROTO_BIT set) must be there;
 * *seen_out tells which optional ones were. */
static int
proto_flat_decode(struct proto_rd *body, const enum proto_vt *vts,
    uint32_t key_max, uint32_t required, struct proto_val *vals,
    uint32_t *seen_out, const char **why)
{
    struct proto_rd rd   = *body;
    uint32_t        seen = 0;
    uint32_t        count;
    uint32_t        key;

    memset(vals, 0, key_max * sizeof *vals);
    if (proto_rd_map(&rd, &count) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "body is not a map");
    }
    for (uint32_t i = 0; i < count; i++) {
        int rv = proto_key_next(&rd, key_max, &seen, &key, why);
        if (rv != MRD_OK) {
            return rv;
        }
        if (proto_val_read(&rd, vts[key - 1], &vals[key - 1]) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "a value has the wrong type");
        }
    }
    if ((seen & required) != required) {
        return proto_fail(why, MRD_EPROTO, "a required key is missing");
    }
    *seen_out = seen;
    *body     = rd;
    return MRD_OK;
}

/* -------------------------------------------------------------- frames -- */

/* Only two things hold for every protocol version, past and future: a frame
 * is plain msgpack (so it can be walked) and an array whose first element
 * is the version. Everything after that is read only once the version is
 * known to be ours. */
static int
proto_frame_open(const void *buf, size_t len, uint32_t elems,
    struct proto_frame *out, const char **why)
{
    struct proto_rd rd;
    uint32_t        count;
    uint64_t        version;
    uint64_t        type;
    uint64_t        status = MRD_OK;

    memset(out, 0, sizeof *out);
    if (proto_walk(buf, len) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO,
            "frame is not one well-formed msgpack value within the limits");
    }
    proto_rd_init(&rd, buf, len);
    if (proto_rd_array(&rd, &count) != MRD_OK || count == 0) {
        return proto_fail(why, MRD_EPROTO, "frame is not an array");
    }
    if (proto_rd_uint(&rd, &version) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "frame version is not a uint");
    }
    out->version = version > UINT32_MAX ? UINT32_MAX : (uint32_t) version;
    if (version != PROTO_VERSION) {
        return proto_fail(
            why, MRD_EPROTOVERSION, "unsupported protocol version");
    }
    if (count != elems) {
        return proto_fail(why, MRD_EPROTO, "frame has the wrong length");
    }
    /* Type 0 is only for error replies to frames too broken to have a type
     * (PROTO_T_NONE); a request never has it. */
    if (proto_rd_uint(&rd, &type) != MRD_OK
        || (type == PROTO_T_NONE && elems != 4) || type > PROTO_T_MAX_) {
        return proto_fail(why, MRD_EPROTO, "unknown message type");
    }
    if (elems == 4
        && (proto_rd_uint(&rd, &status) != MRD_OK || status > UINT32_MAX)) {
        return proto_fail(why, MRD_EPROTO, "reply status is not a uint32");
    }
    if (type == PROTO_T_NONE && status == MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "success reply without a type");
    }
    struct proto_rd body = rd;
    if (proto_rd_map(&body, &count) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "message body is not a map");
    }
    out->type   = (uint32_t) type;
    out->status = (uint32_t) status;
    out->body   = rd; /* on the map header: body decoders read it */
    return MRD_OK;
}

int
proto_request_open(
    const void *buf, size_t len, struct proto_frame *out, const char **why)
{
    return proto_frame_open(buf, len, 3, out, why);
}

int
proto_reply_open(
    const void *buf, size_t len, struct proto_frame *out, const char **why)
{
    return proto_frame_open(buf, len, 4, out, why);
}

void
proto_request_begin(struct proto_buf *buf, uint32_t type)
{
    MRD_ASSERT(type >= 1 && type <= PROTO_T_MAX_);
    proto_wr_array(buf, 3);
    proto_wr_uint(buf, PROTO_VERSION);
    proto_wr_uint(buf, type);
}

void
proto_reply_begin(struct proto_buf *buf, uint32_t type, uint32_t status)
{
    MRD_ASSERT(type <= PROTO_T_MAX_);
    MRD_ASSERT(type != PROTO_T_NONE || status != MRD_OK);
    proto_wr_array(buf, 4);
    proto_wr_uint(buf, PROTO_VERSION);
    proto_wr_uint(buf, type);
    proto_wr_uint(buf, status);
}

/* The message is cut to PROTO_ERR_MESSAGE_SIZE_MAX at a character boundary;
 * one that is not UTF-8 (it might quote a client's bad bytes) is replaced,
 * because a reply the client cannot decode would hide the status. */
void
proto_reply_error(struct proto_buf *buf, uint32_t type, uint32_t status,
    const char *message, bool has_version, int64_t version)
{
    size_t len = proto_cstr_len(message);

    MRD_ASSERT(status != MRD_OK); /* success has a type-specific body */
    if (len > PROTO_ERR_MESSAGE_SIZE_MAX) {
        len = PROTO_ERR_MESSAGE_SIZE_MAX;
        while (len > 0 && ((unsigned char) message[len] & 0xc0u) == 0x80u) {
            len--; /* message[len] continues a character: cut before it */
        }
    }
    if (!mrd_utf8_valid(message, len)) {
        message = "(message was not valid UTF-8)";
        len     = strlen(message);
    }
    proto_reply_begin(buf, type, status);
    proto_wr_map(buf, has_version ? 2 : 1);
    proto_wr_uint(buf, PROTO_K_ERR_MESSAGE);
    proto_wr_str(buf, message, len);
    if (has_version) {
        proto_wr_uint(buf, PROTO_K_ERR_VERSION);
        proto_wr_int(buf, version);
    }
}

int
proto_error_decode(struct proto_rd *body, struct proto_str *message,
    bool *has_version, int64_t *version, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_STR, PROTO_VT_INT };
    struct proto_val           v[2];
    struct proto_rd            rd   = *body;
    uint32_t                   seen = 0;

    message->ptr = NULL;
    message->len = 0;
    *has_version = false;
    *version     = 0;
    int rv       = proto_flat_decode(&rd, vts, 2, 0, v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    rv = proto_text_check(&proto_rule_message, v[0].s, why);
    if (rv != MRD_OK) {
        return rv;
    }
    *message     = v[0].s;
    *has_version = (seen & PROTO_BIT(PROTO_K_ERR_VERSION)) != 0;
    *version     = v[1].i;
    *body        = rd;
    return MRD_OK;
}

/* --------------------------------------------------------- event input -- */

/* Checks the fields of one event that are plain strings or bytes. The
 * metadata map is checked where it is read (proto_meta_read). */
static int
proto_event_check(const struct proto_event_in *ev, const char **why)
{
    const struct {
        const struct proto_text_rule *rule;
        struct proto_str              s;
    } texts[] = {
        { &proto_rule_type, ev->type },
        { &proto_rule_content_type, ev->content_type },
        { &proto_rule_correlation, ev->correlation },
        { &proto_rule_causation, ev->causation },
    };

    for (size_t i = 0; i < MRD_ARRAY_SIZE(texts); i++) {
        int rv = proto_text_check(texts[i].rule, texts[i].s, why);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    if (ev->data.len > MRD_EVENT_DATA_SIZE_MAX) {
        return proto_fail(why, MRD_ETOOBIG,
            "event data is larger than MRD_EVENT_DATA_SIZE_MAX");
    }
    if (ev->ops.len > PROTO_OPS_SIZE_MAX) {
        return proto_fail(
            why, MRD_ETOOBIG, "event ops are larger than PROTO_OPS_SIZE_MAX");
    }
    return MRD_OK;
}

static bool
proto_str_eq(struct proto_str a, struct proto_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Reads a user metadata map (str -> str) and gives its raw bytes, to be
 * copied verbatim into the record. With `check`, every key and value is held
 * to its limit and a key given twice is refused; without, only the shape is
 * read (for input validated before). The entry count is bounded either way:
 * keys[] is sized by it. */
static int
proto_meta_read(struct proto_rd *rd, bool check, struct proto_str *raw,
    uint32_t *count_out, const char **why)
{
    struct proto_rd  cur = *rd;
    struct proto_str keys[MRD_META_ENTRIES_MAX];
    struct proto_str value;
    uint32_t         count;

    if (proto_rd_map(&cur, &count) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "meta is not a map");
    }
    if (count > MRD_META_ENTRIES_MAX) {
        return proto_fail(why, MRD_ETOOBIG,
            "meta has more than MRD_META_ENTRIES_MAX entries");
    }
    for (uint32_t i = 0; i < count; i++) {
        if (proto_rd_str(&cur, &keys[i]) != MRD_OK
            || proto_rd_str(&cur, &value) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "meta is not str -> str");
        }
        if (!check) {
            continue;
        }
        int rv = proto_text_check(&proto_rule_meta_key, keys[i], why);
        if (rv == MRD_OK) {
            rv = proto_text_check(&proto_rule_meta_value, value, why);
        }
        if (rv != MRD_OK) {
            return rv;
        }
        for (uint32_t j = 0; j < i; j++) {
            if (proto_str_eq(keys[i], keys[j])) {
                return proto_fail(why, MRD_EPROTO, "duplicate meta key");
            }
        }
    }
    raw->ptr   = (const char *) rd->p;
    raw->len   = (uint32_t) (cur.p - rd->p);
    *count_out = count;
    *rd        = cur;
    return MRD_OK;
}

/* Reads the value of one event key. Types are always checked (the reader
 * depends on them); limits are proto_event_check's job. */
static int
proto_event_field(struct proto_rd *rd, uint32_t key, bool check,
    struct proto_event_in *ev, const char **why)
{
    struct proto_str *s;
    const char       *why_type;

    switch (key) {
    case PROTO_K_EV_TYPE:
        s        = &ev->type;
        why_type = proto_rule_type.why_type;
        break;
    case PROTO_K_EV_CONTENT_TYPE:
        s        = &ev->content_type;
        why_type = proto_rule_content_type.why_type;
        break;
    case PROTO_K_EV_CORRELATION:
        s        = &ev->correlation;
        why_type = proto_rule_correlation.why_type;
        break;
    case PROTO_K_EV_CAUSATION:
        s        = &ev->causation;
        why_type = proto_rule_causation.why_type;
        break;
    case PROTO_K_EV_DATA:
        if (proto_rd_bin(rd, &ev->data) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "event data is not bin");
        }
        return MRD_OK;
    case PROTO_K_EV_META:
        return proto_meta_read(rd, check, &ev->meta_raw, &ev->meta_count, why);
    case PROTO_K_EV_OPS:
        if (proto_rd_bin(rd, &ev->ops) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "event ops are not bin");
        }
        /* Absent means none; present and empty is a client bug. */
        if (check && ev->ops.len == 0) {
            return proto_fail(why, MRD_EPROTO, "event ops are empty");
        }
        return MRD_OK;
    default:
        MRD_ASSERT(!"proto_key_next let an unknown event key through");
        return MRD_EINTERNAL;
    }
    if (proto_rd_str(rd, s) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, why_type);
    }
    return MRD_OK;
}

/* Reads one event map. With `check`, every field is validated; without,
 * only what memory safety needs (for events_raw, validated before). */
static int
proto_event_read(struct proto_rd *rd, bool check, struct proto_event_in *ev,
    const char **why)
{
    struct proto_rd cur  = *rd;
    uint32_t        seen = 0;
    uint32_t        count;
    uint32_t        key;
    int             rv;

    memset(ev, 0, sizeof *ev);
    if (proto_rd_map(&cur, &count) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "event is not a map");
    }
    for (uint32_t i = 0; i < count; i++) {
        rv = proto_key_next(&cur, PROTO_K_EV_OPS, &seen, &key, why);
        if (rv != MRD_OK) {
            return rv;
        }
        rv = proto_event_field(&cur, key, check, ev, why);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    if ((seen & PROTO_BIT(PROTO_K_EV_TYPE)) == 0) {
        return proto_fail(why, MRD_EPROTO, "event type is missing");
    }
    if (check) {
        rv = proto_event_check(ev, why);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    *rd = cur;
    return MRD_OK;
}

static int
proto_append_events_read(
    struct proto_rd *rd, struct proto_append_req *out, const char **why)
{
    struct proto_event_in ev;
    uint32_t              count;

    if (proto_rd_array(rd, &count) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "events is not an array");
    }
    if (count == 0) {
        return proto_fail(why, MRD_EPROTO, "append has no events");
    }
    if (count > MRD_APPEND_EVENTS_MAX) {
        return proto_fail(why, MRD_ETOOBIG,
            "append has more than MRD_APPEND_EVENTS_MAX events");
    }
    const uint8_t *start = rd->p;
    for (uint32_t i = 0; i < count; i++) {
        int rv = proto_event_read(rd, true, &ev, why);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    size_t size = (size_t) (rd->p - start);
    if (size > UINT32_MAX) {
        return proto_fail(why, MRD_ETOOBIG, "events are larger than 4 GiB");
    }
    out->event_count    = count;
    out->events_raw.ptr = (const char *) start;
    out->events_raw.len = (uint32_t) size;
    out->events_size    = size;
    return MRD_OK;
}

static bool
proto_expected_ok(int64_t expected)
{
    return expected >= 0 || expected == MRD_EXPECT_ANY
        || expected == MRD_EXPECT_NO_STREAM || expected == MRD_EXPECT_EXISTS;
}

static int
proto_append_field(struct proto_rd *rd, uint32_t key,
    struct proto_append_req *out, const char **why)
{
    switch (key) {
    case PROTO_K_APPEND_STREAM:
        return proto_stream_read(rd, &out->stream, why);
    case PROTO_K_APPEND_EXPECTED:
        if (proto_rd_int(rd, &out->expected) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "expected version is not int");
        }
        if (!proto_expected_ok(out->expected)) {
            return proto_fail(why, MRD_EPROTO, "invalid expected version");
        }
        return MRD_OK;
    case PROTO_K_APPEND_IDEM:
        if (proto_rd_bin(rd, &out->idem_key) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "idempotency key is not bin");
        }
        if (out->idem_key.len == 0) {
            return proto_fail(why, MRD_EPROTO, "idempotency key is empty");
        }
        if (out->idem_key.len > MRD_IDEMPOTENCY_KEY_SIZE_MAX) {
            return proto_fail(why, MRD_ETOOBIG,
                "idempotency key is longer than MRD_IDEMPOTENCY_KEY_SIZE_MAX");
        }
        return MRD_OK;
    case PROTO_K_APPEND_EVENTS:
        return proto_append_events_read(rd, out, why);
    case PROTO_K_APPEND_ACK:
    case PROTO_K_APPEND_ACK_COUNT:
    case PROTO_K_APPEND_ACK_WAIT: {
        uint64_t v;
        if (proto_rd_uint(rd, &v) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "ack field is not a uint");
        }
        if (key == PROTO_K_APPEND_ACK
            && (v < MRD_ACK_REGION || v > MRD_ACK_GLOBAL)) {
            return proto_fail(why, MRD_EPROTO, "ack level is not 1 or 2");
        }
        if (key == PROTO_K_APPEND_ACK_COUNT
            && (v == 0 || v > MRD_ACK_COUNT_MAX)) {
            return proto_fail(
                why, MRD_EPROTO, "ack count is not 1..MRD_ACK_COUNT_MAX");
        }
        if (key == PROTO_K_APPEND_ACK_WAIT
            && (v == 0 || v > MRD_ACK_WAIT_MS_MAX)) {
            return proto_fail(
                why, MRD_EPROTO, "ack wait is not 1..MRD_ACK_WAIT_MS_MAX");
        }
        if (key == PROTO_K_APPEND_ACK) {
            out->ack.level = (uint32_t) v;
        } else if (key == PROTO_K_APPEND_ACK_COUNT) {
            out->ack.count = (uint32_t) v;
        } else {
            out->ack.wait_ms = (uint32_t) v;
        }
        return MRD_OK;
    }
    case PROTO_K_APPEND_AFTER: {
        uint32_t n;
        if (proto_rd_array(rd, &n) != MRD_OK || n != 2
            || proto_rd_uint(rd, &out->after.origin) != MRD_OK
            || proto_rd_uint(rd, &out->after.seq) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "after is not [origin, seq]");
        }
        if (out->after.origin == 0 || out->after.seq == 0) {
            return proto_fail(
                why, MRD_EPROTO, "after has a zero origin or seq");
        }
        return MRD_OK;
    }
    default:
        MRD_ASSERT(!"proto_key_next let an unknown append key through");
        return MRD_EINTERNAL;
    }
}

int
proto_append_req_decode(
    struct proto_rd *body, struct proto_append_req *out, const char **why)
{
    struct proto_rd rd   = *body;
    uint32_t        seen = 0;
    uint32_t        count;
    uint32_t        key;

    memset(out, 0, sizeof *out);
    out->expected = MRD_EXPECT_ANY;
    if (proto_rd_map(&rd, &count) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "body is not a map");
    }
    for (uint32_t i = 0; i < count; i++) {
        int rv = proto_key_next(&rd, PROTO_K_APPEND_AFTER, &seen, &key, why);
        if (rv != MRD_OK) {
            return rv;
        }
        rv = proto_append_field(&rd, key, out, why);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    if ((seen & PROTO_BIT(PROTO_K_APPEND_STREAM)) == 0) {
        return proto_fail(why, MRD_EPROTO, "append has no stream");
    }
    if ((seen & PROTO_BIT(PROTO_K_APPEND_EVENTS)) == 0) {
        return proto_fail(why, MRD_EPROTO, "append has no events");
    }
    uint32_t ack_keys = PROTO_BIT(PROTO_K_APPEND_ACK_COUNT)
        | PROTO_BIT(PROTO_K_APPEND_ACK_WAIT);
    if ((seen & ack_keys) != 0 && (seen & PROTO_BIT(PROTO_K_APPEND_ACK)) == 0) {
        return proto_fail(why, MRD_EPROTO, "ack count or wait without a level");
    }
    if (out->ack.level != MRD_ACK_LOCAL) {
        out->ack.count   = out->ack.count != 0 ? out->ack.count : 2;
        out->ack.wait_ms = out->ack.wait_ms != 0 ? out->ack.wait_ms
                                                 : MRD_ACK_WAIT_MS_DEFAULT;
    }
    *body = rd;
    return MRD_OK;
}

void
proto_events_begin(const struct proto_append_req *req, struct proto_rd *rd)
{
    proto_rd_init(rd, req->events_raw.ptr, req->events_raw.len);
}

int
proto_events_next(struct proto_rd *rd, struct proto_event_in *ev)
{
    if (proto_rd_done(rd)) {
        return MRD_ENOTFOUND;
    }
    /* Validated by proto_append_req_decode: read the shape only. */
    int rv = proto_event_read(rd, false, ev, NULL);
    return rv == MRD_OK ? MRD_OK : MRD_EPROTO;
}

/* Checks one event given to an encoder, exactly as a node will. */
static int
proto_event_arg_check(const mrd_event_in *e)
{
    struct proto_event_in ev;
    struct proto_str      value;
    struct proto_str      keys[MRD_META_ENTRIES_MAX];
    int                   rv;

    memset(&ev, 0, sizeof ev);
    if ((e->data == NULL && e->data_size > 0)
        || (e->meta == NULL && e->meta_count > 0)
        || (e->ops == NULL && e->op_count > 0)) {
        return MRD_EINVAL;
    }
    if (e->data_size > MRD_EVENT_DATA_SIZE_MAX
        || e->meta_count > MRD_META_ENTRIES_MAX
        || e->op_count > MRD_STATE_OPS_MAX) {
        return MRD_ETOOBIG;
    }
    rv = proto_cstr_check(&proto_rule_type, e->type, &ev.type);
    if (rv == MRD_OK) {
        rv = proto_cstr_check(
            &proto_rule_content_type, e->content_type, &ev.content_type);
    }
    if (rv == MRD_OK) {
        rv = proto_cstr_check(
            &proto_rule_correlation, e->correlation_id, &ev.correlation);
    }
    if (rv == MRD_OK) {
        rv = proto_cstr_check(
            &proto_rule_causation, e->causation_id, &ev.causation);
    }
    for (size_t i = 0; rv == MRD_OK && i < e->meta_count; i++) {
        rv = proto_cstr_check(&proto_rule_meta_key, e->meta[i].key, &keys[i]);
        if (rv == MRD_OK) {
            rv = proto_cstr_check(
                &proto_rule_meta_value, e->meta[i].value, &value);
        }
        for (size_t j = 0; rv == MRD_OK && j < i; j++) {
            rv = proto_str_eq(keys[i], keys[j]) ? MRD_EINVAL : MRD_OK;
        }
    }
    return rv;
}

/* One event's encoded ops, as given to the encoder: the bytes crdt wrote
 * for events[i].ops, which proto cannot write itself. */
static int
proto_ops_arg_check(const mrd_event_in *e, const struct proto_str *ops)
{
    uint32_t len = ops != NULL ? ops->len : 0;

    if (len > 0 && ops->ptr == NULL) {
        return MRD_EINVAL;
    }
    if (e->op_count > 0 && len == 0) {
        return MRD_EINVAL; /* the ops would be dropped */
    }
    return len > PROTO_OPS_SIZE_MAX ? MRD_ETOOBIG : MRD_OK;
}

static int
proto_append_arg_check(const char *stream, size_t stream_len, int64_t expected,
    const void *idem_key, size_t idem_key_len, const mrd_event_in *events,
    const struct proto_str *ops, size_t event_count)
{
    if (mrd_stream_name_check(stream, stream_len) != MRD_OK) {
        return MRD_ENAME;
    }
    if (!proto_expected_ok(expected)) {
        return MRD_EINVAL;
    }
    if ((idem_key == NULL) != (idem_key_len == 0)) {
        return MRD_EINVAL; /* a key must have bytes; bytes need a key */
    }
    if (idem_key_len > MRD_IDEMPOTENCY_KEY_SIZE_MAX) {
        return MRD_ETOOBIG;
    }
    if (events == NULL || event_count == 0) {
        return MRD_EINVAL;
    }
    if (event_count > MRD_APPEND_EVENTS_MAX) {
        return MRD_ETOOBIG;
    }
    for (size_t i = 0; i < event_count; i++) {
        int rv = proto_event_arg_check(&events[i]);
        if (rv == MRD_OK) {
            rv = proto_ops_arg_check(&events[i], ops != NULL ? &ops[i] : NULL);
        }
        if (rv != MRD_OK) {
            return rv;
        }
    }
    return MRD_OK;
}

/* Writes one checked event; optional keys only when they say something. ops
 * may be NULL (none). */
static void
proto_event_arg_write(
    struct proto_buf *buf, const mrd_event_in *e, const struct proto_str *ops)
{
    size_t   ct_len   = proto_cstr_len(e->content_type);
    size_t   corr_len = proto_cstr_len(e->correlation_id);
    size_t   caus_len = proto_cstr_len(e->causation_id);
    uint32_t ops_len  = ops != NULL ? ops->len : 0;
    uint32_t keys     = 1 + (e->data_size > 0) + (ct_len > 0) + (corr_len > 0)
        + (caus_len > 0) + (e->meta_count > 0) + (ops_len > 0);

    proto_wr_map(buf, keys);
    proto_wr_uint(buf, PROTO_K_EV_TYPE);
    proto_wr_str(buf, e->type, strlen(e->type));
    if (e->data_size > 0) {
        proto_wr_uint(buf, PROTO_K_EV_DATA);
        proto_wr_bin(buf, e->data, e->data_size);
    }
    if (ct_len > 0) {
        proto_wr_uint(buf, PROTO_K_EV_CONTENT_TYPE);
        proto_wr_str(buf, e->content_type, ct_len);
    }
    if (corr_len > 0) {
        proto_wr_uint(buf, PROTO_K_EV_CORRELATION);
        proto_wr_str(buf, e->correlation_id, corr_len);
    }
    if (caus_len > 0) {
        proto_wr_uint(buf, PROTO_K_EV_CAUSATION);
        proto_wr_str(buf, e->causation_id, caus_len);
    }
    if (e->meta_count > 0) {
        proto_wr_uint(buf, PROTO_K_EV_META);
        proto_wr_map(buf, (uint32_t) e->meta_count);
        for (size_t i = 0; i < e->meta_count; i++) {
            const char *value = e->meta[i].value;
            proto_wr_str(buf, e->meta[i].key, strlen(e->meta[i].key));
            proto_wr_str(buf, value, proto_cstr_len(value));
        }
    }
    if (ops_len > 0) {
        proto_wr_uint(buf, PROTO_K_EV_OPS);
        proto_wr_bin(buf, ops->ptr, ops_len);
    }
}

int
proto_append_req_encode(struct proto_buf *buf, const char *stream,
    size_t stream_len, int64_t expected, const void *idem_key,
    size_t idem_key_len, const mrd_event_in *events,
    const struct proto_str *ops, size_t event_count)
{
    return proto_append_req_encode_ack(buf, stream, stream_len, expected,
        idem_key, idem_key_len, events, ops, event_count, NULL, NULL);
}

int
proto_append_req_encode_ack(struct proto_buf *buf, const char *stream,
    size_t stream_len, int64_t expected, const void *idem_key,
    size_t idem_key_len, const mrd_event_in *events,
    const struct proto_str *ops, size_t event_count,
    const struct proto_ack *ack, const mrd_dot *after)
{
    int rv = proto_append_arg_check(stream, stream_len, expected, idem_key,
        idem_key_len, events, ops, event_count);
    if (rv != MRD_OK) {
        return rv; /* nothing written */
    }
    bool with_ack = ack != NULL && ack->level != MRD_ACK_LOCAL;
    if (with_ack
        && (ack->level > MRD_ACK_GLOBAL || ack->count == 0
            || ack->count > MRD_ACK_COUNT_MAX || ack->wait_ms == 0
            || ack->wait_ms > MRD_ACK_WAIT_MS_MAX)) {
        return MRD_EINVAL;
    }
    bool with_after = after != NULL && after->seq != 0;
    if (with_after && after->origin == 0) {
        return MRD_EINVAL;
    }
    uint32_t keys = 2 + (expected != MRD_EXPECT_ANY) + (idem_key_len > 0)
        + (with_ack ? 3u : 0u) + (with_after ? 1u : 0u);

    proto_request_begin(buf, PROTO_T_APPEND);
    proto_wr_map(buf, keys);
    proto_wr_uint(buf, PROTO_K_APPEND_STREAM);
    proto_wr_str(buf, stream, stream_len);
    if (expected != MRD_EXPECT_ANY) {
        proto_wr_uint(buf, PROTO_K_APPEND_EXPECTED);
        proto_wr_int(buf, expected);
    }
    if (idem_key_len > 0) {
        proto_wr_uint(buf, PROTO_K_APPEND_IDEM);
        proto_wr_bin(buf, idem_key, idem_key_len);
    }
    proto_wr_uint(buf, PROTO_K_APPEND_EVENTS);
    proto_wr_array(buf, (uint32_t) event_count);
    for (size_t i = 0; i < event_count; i++) {
        proto_event_arg_write(buf, &events[i], ops != NULL ? &ops[i] : NULL);
    }
    if (with_ack) {
        proto_wr_uint(buf, PROTO_K_APPEND_ACK);
        proto_wr_uint(buf, ack->level);
        proto_wr_uint(buf, PROTO_K_APPEND_ACK_COUNT);
        proto_wr_uint(buf, ack->count);
        proto_wr_uint(buf, PROTO_K_APPEND_ACK_WAIT);
        proto_wr_uint(buf, ack->wait_ms);
    }
    if (with_after) {
        proto_wr_uint(buf, PROTO_K_APPEND_AFTER);
        proto_wr_array(buf, 2);
        proto_wr_uint(buf, after->origin);
        proto_wr_uint(buf, after->seq);
    }
    return proto_buf_status(buf);
}

/* ------------------------------------------------------- append reply -- */

void
proto_append_rep_encode(
    struct proto_buf *buf, const struct proto_append_rep *rep)
{
    proto_reply_begin(buf, PROTO_T_APPEND, MRD_OK);
    proto_wr_map(buf, rep->ack_asked ? 10 : 7);
    proto_wr_uint(buf, PROTO_K_APPENDED_ORIGIN);
    proto_wr_uint(buf, rep->origin);
    proto_wr_uint(buf, PROTO_K_APPENDED_SEQ);
    proto_wr_uint(buf, rep->seq);
    proto_wr_uint(buf, PROTO_K_APPENDED_FIRST_POS);
    proto_wr_uint(buf, rep->first_pos);
    proto_wr_uint(buf, PROTO_K_APPENDED_VERSION);
    proto_wr_uint(buf, rep->version);
    proto_wr_uint(buf, PROTO_K_APPENDED_COUNT);
    proto_wr_uint(buf, rep->count);
    proto_wr_uint(buf, PROTO_K_APPENDED_HLC);
    proto_wr_uint(buf, rep->hlc);
    proto_wr_uint(buf, PROTO_K_APPENDED_REPLAYED);
    proto_wr_bool(buf, rep->replayed);
    if (rep->ack_asked) {
        proto_wr_uint(buf, PROTO_K_APPENDED_ACK);
        proto_wr_uint(buf, rep->ack_level);
        proto_wr_uint(buf, PROTO_K_APPENDED_REPLICAS);
        proto_wr_uint(buf, rep->ack_replicas);
        proto_wr_uint(buf, PROTO_K_APPENDED_REGIONS);
        proto_wr_uint(buf, rep->ack_regions);
    }
}

int
proto_append_rep_decode(
    struct proto_rd *body, struct proto_append_rep *out, const char **why)
{
    static const enum proto_vt vts[]    = { PROTO_VT_UINT, PROTO_VT_UINT,
           PROTO_VT_UINT, PROTO_VT_UINT, PROTO_VT_U32, PROTO_VT_UINT,
           PROTO_VT_BOOL, PROTO_VT_U32, PROTO_VT_U32, PROTO_VT_U32 };
    static const uint32_t      ack_keys = PROTO_BIT(PROTO_K_APPENDED_ACK)
        | PROTO_BIT(PROTO_K_APPENDED_REPLICAS)
        | PROTO_BIT(PROTO_K_APPENDED_REGIONS);
    struct proto_val v[10];
    struct proto_rd  rd = *body;
    uint32_t         seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(&rd, vts, 10, PROTO_KEYS_ALL(7), v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (v[4].u == 0 || v[4].u > MRD_APPEND_EVENTS_MAX) {
        return proto_fail(why, MRD_EPROTO, "appended count out of range");
    }
    if ((seen & ack_keys) != 0) {
        if ((seen & ack_keys) != ack_keys || v[7].u > MRD_ACK_GLOBAL
            || v[8].u == 0 || v[9].u == 0) {
            return proto_fail(why, MRD_EPROTO, "invalid acknowledgement");
        }
        out->ack_asked    = true;
        out->ack_level    = (uint32_t) v[7].u;
        out->ack_replicas = (uint32_t) v[8].u;
        out->ack_regions  = (uint32_t) v[9].u;
    }
    out->origin    = v[0].u;
    out->seq       = v[1].u;
    out->first_pos = v[2].u;
    out->version   = v[3].u;
    out->count     = (uint32_t) v[4].u;
    out->hlc       = v[5].u;
    out->replayed  = v[6].b;
    *body          = rd;
    return MRD_OK;
}

/* ------------------------------------------------------------- records -- */

/* libsodium asks for sodium_init() before use. SipHash needs none of what it
 * sets up, so its result does not matter; it is idempotent and thread-safe,
 * and the flag only saves its lock on later calls. */
static void
proto_sodium_init(void)
{
    static atomic_bool done;

    if (!atomic_load_explicit(&done, memory_order_acquire)) {
        /* -1 means no usable random source, which SipHash never uses. */
        int rv = sodium_init();
        (void) rv;
        atomic_store_explicit(&done, true, memory_order_release);
    }
}

/* The checksum as a number: libsodium's 8 output bytes are the SipHash
 * value in little-endian order. It is stored as a msgpack uint64, so the
 * record stays plain msgpack. */
static uint64_t
proto_record_hash(const uint8_t *p, size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t      h = 0;

    proto_sodium_init();
    int rv = crypto_shorthash(out, p, len, proto_record_key);
    MRD_ASSERT(rv == 0); /* SipHash cannot fail */
    for (int k = crypto_shorthash_BYTES - 1; k >= 0; k--) {
        h = (h << 8) | out[k];
    }
    return h;
}

bool
proto_record_dot(const void *buf, size_t len, uint64_t *origin, uint64_t *seq)
{
    struct proto_rd rd;
    uint32_t        n;
    uint64_t        format;

    proto_rd_init(&rd, buf, len);
    return proto_rd_array(&rd, &n) == MRD_OK && n >= 3
        && proto_rd_uint(&rd, &format) == MRD_OK
        && proto_rd_uint(&rd, origin) == MRD_OK
        && proto_rd_uint(&rd, seq) == MRD_OK;
}

int
proto_record_verify(const void *buf, size_t len)
{
    const uint8_t *p = buf;

    if (len < PROTO_CHECKSUM_SIZE + 1) {
        return MRD_ECORRUPT;
    }
    size_t body = len - PROTO_CHECKSUM_SIZE;
    if (p[body] != PROTO_UINT64) {
        return MRD_ECORRUPT;
    }
    uint64_t h = proto_record_hash(p, body);
    return h == mrd_be64_get(p + body + 1) ? MRD_OK : MRD_ECORRUPT;
}

/* Checks a meta map given as raw bytes: exactly one valid map. */
static int
proto_meta_raw_check(struct proto_str meta_raw, const char **why)
{
    struct proto_rd  rd;
    struct proto_str raw;
    uint32_t         count;

    proto_rd_init(&rd, meta_raw.ptr, meta_raw.len);
    int rv = proto_meta_read(&rd, true, &raw, &count, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (!proto_rd_done(&rd)) {
        return proto_fail(why, MRD_EPROTO, "bytes after the meta map");
    }
    return MRD_OK;
}

int
proto_record_encode(struct proto_buf *buf, uint64_t origin, uint64_t seq,
    uint64_t hlc, struct proto_str stream, const struct proto_event_in *ev)
{
    return proto_record_encode_idem(buf, origin, seq, hlc, stream, ev, NULL);
}

int
proto_record_encode_idem(struct proto_buf *buf, uint64_t origin, uint64_t seq,
    uint64_t hlc, struct proto_str stream, const struct proto_event_in *ev,
    const struct proto_record_idem *idem)
{
    static const uint8_t meta_empty = PROTO_MAP_EMPTY;
    uint8_t              tail[PROTO_CHECKSUM_SIZE];

    /* Checked again, although the node decoded ev itself: this is the last
     * look before the bytes become a durable record. */
    if (mrd_stream_name_check(stream.ptr, stream.len) != MRD_OK) {
        return MRD_ENAME;
    }
    int rv = proto_event_check(ev, NULL);
    if (rv == MRD_OK && ev->meta_raw.len > 0) {
        rv = proto_meta_raw_check(ev->meta_raw, NULL);
    }
    if (rv == MRD_OK && ev->ops.len > 0 && ev->ops.ptr == NULL) {
        rv = MRD_EPROTO;
    }
    if (idem != NULL && idem->key.len == 0) {
        idem = NULL;
    }
    if (rv == MRD_OK && idem != NULL
        && (idem->key.len > MRD_IDEMPOTENCY_KEY_SIZE_MAX
            || idem->key.ptr == NULL || idem->count == 0
            || idem->count > MRD_APPEND_EVENTS_MAX)) {
        rv = MRD_EINVAL;
    }
    if (rv == MRD_OK) {
        rv = proto_buf_status(buf);
    }
    if (rv != MRD_OK) {
        return rv;
    }
    size_t start = buf->len;
    proto_wr_array(buf, PROTO_RECORD_FIELDS_V3);
    proto_wr_uint(buf, PROTO_RECORD_FORMAT);
    proto_wr_uint(buf, origin);
    proto_wr_uint(buf, seq);
    proto_wr_uint(buf, hlc);
    proto_wr_str(buf, stream.ptr, stream.len);
    proto_wr_str(buf, ev->type.ptr, ev->type.len);
    proto_wr_str(buf, ev->content_type.ptr, ev->content_type.len);
    proto_wr_bin(buf, ev->data.ptr, ev->data.len);
    proto_wr_str(buf, ev->correlation.ptr, ev->correlation.len);
    proto_wr_str(buf, ev->causation.ptr, ev->causation.len);
    if (ev->meta_raw.len > 0) {
        proto_wr_raw(buf, ev->meta_raw.ptr, ev->meta_raw.len);
    } else {
        proto_wr_raw(buf, &meta_empty, 1);
    }
    if (ev->ops.len > 0) {
        proto_wr_bin(buf, ev->ops.ptr, ev->ops.len);
    } else {
        proto_wr_nil(buf);
    }
    if (idem != NULL) {
        proto_wr_array(buf, 4);
        proto_wr_bin(buf, idem->key.ptr, idem->key.len);
        proto_wr_uint(buf, idem->digest);
        proto_wr_int(buf, idem->expected);
        proto_wr_uint(buf, idem->count);
    } else {
        proto_wr_nil(buf);
    }
    rv = proto_buf_status(buf);
    if (rv != MRD_OK) {
        return rv;
    }
    tail[0] = PROTO_UINT64;
    mrd_be64_put(
        tail + 1, proto_record_hash(buf->data + start, buf->len - start));
    proto_wr_raw(buf, tail, sizeof tail);
    return proto_buf_status(buf);
}

/* A format-2 record's ops: nil (none) or a bin of 1..PROTO_OPS_SIZE_MAX
 * bytes (the size is proto_event_check's). Not decoded: that is crdt's. */
static int
proto_record_ops_read(
    struct proto_rd *rd, struct proto_str *ops, const char **why)
{
    if (proto_rd_nil(rd) == MRD_OK) {
        ops->ptr = NULL;
        ops->len = 0;
        return MRD_OK;
    }
    if (proto_rd_bin(rd, ops) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "record ops are not nil or bin");
    }
    if (ops->len == 0) {
        return proto_fail(why, MRD_EPROTO, "record ops are empty");
    }
    return MRD_OK;
}

/* A format-3 record's idem: nil, or [key bin 1..64, digest uint, expected
 * int, count uint 1..MRD_APPEND_EVENTS_MAX]. */
static int
proto_record_idem_read(
    struct proto_rd *rd, struct proto_record_idem *idem, const char **why)
{
    uint32_t n;
    uint64_t count;

    memset(idem, 0, sizeof *idem);
    if (proto_rd_nil(rd) == MRD_OK) {
        return MRD_OK;
    }
    if (proto_rd_array(rd, &n) != MRD_OK || n != 4
        || proto_rd_bin(rd, &idem->key) != MRD_OK
        || proto_rd_uint(rd, &idem->digest) != MRD_OK
        || proto_rd_int(rd, &idem->expected) != MRD_OK
        || proto_rd_uint(rd, &count) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO,
            "record idem is not nil or [key, digest, expected, count]");
    }
    if (idem->key.len == 0 || idem->key.len > MRD_IDEMPOTENCY_KEY_SIZE_MAX) {
        return proto_fail(why, MRD_EPROTO,
            "record idempotency key is not 1..MRD_IDEMPOTENCY_KEY_SIZE_MAX "
            "bytes");
    }
    if (count == 0 || count > MRD_APPEND_EVENTS_MAX) {
        return proto_fail(why, MRD_EPROTO,
            "record idem count is not 1..MRD_APPEND_EVENTS_MAX");
    }
    idem->count = (uint32_t) count;
    return MRD_OK;
}

/* Reads the fields after the format, in record order, each with the same
 * checks as event input. */
static int
proto_record_fields(struct proto_rd *rd, uint64_t format,
    struct proto_record *out, const char **why)
{
    struct proto_event_in ev;
    uint64_t              checksum;

    memset(&ev, 0, sizeof ev);
    if (proto_rd_uint(rd, &out->origin) != MRD_OK
        || proto_rd_uint(rd, &out->seq) != MRD_OK
        || proto_rd_uint(rd, &out->hlc) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "record dot or hlc is not a uint");
    }
    int rv = proto_stream_read(rd, &out->stream, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (proto_rd_str(rd, &ev.type) != MRD_OK
        || proto_rd_str(rd, &ev.content_type) != MRD_OK
        || proto_rd_bin(rd, &ev.data) != MRD_OK
        || proto_rd_str(rd, &ev.correlation) != MRD_OK
        || proto_rd_str(rd, &ev.causation) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "record field has the wrong type");
    }
    rv = proto_meta_read(rd, true, &ev.meta_raw, &ev.meta_count, why);
    if (rv == MRD_OK && format >= 2) {
        rv = proto_record_ops_read(rd, &ev.ops, why);
    }
    if (rv == MRD_OK && format >= 3) {
        rv = proto_record_idem_read(rd, &out->idem, why);
    }
    if (rv == MRD_OK) {
        rv = proto_event_check(&ev, why);
    }
    if (rv != MRD_OK) {
        return rv;
    }
    /* The checksum verified was the last 9 bytes: they must also be the
     * last field, or a field could hide what the checksum covers. */
    if ((size_t) (rd->end - rd->p) != PROTO_CHECKSUM_SIZE
        || proto_rd_uint(rd, &checksum) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "record checksum is not a uint64");
    }
    out->type         = ev.type;
    out->content_type = ev.content_type;
    out->data         = ev.data;
    out->correlation  = ev.correlation;
    out->causation    = ev.causation;
    out->meta_raw     = ev.meta_raw;
    out->meta_count   = ev.meta_count;
    out->ops          = ev.ops;
    return MRD_OK;
}

int
proto_record_decode(
    const void *buf, size_t len, struct proto_record *out, const char **why)
{
    struct proto_rd rd;
    uint32_t        count;
    uint64_t        format;

    memset(out, 0, sizeof *out);
    if (proto_record_verify(buf, len) != MRD_OK) {
        return proto_fail(why, MRD_ECORRUPT, "record checksum mismatch");
    }
    if (proto_walk(buf, len) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO,
            "record is not one well-formed msgpack value within the limits");
    }
    proto_rd_init(&rd, buf, len);
    if (proto_rd_array(&rd, &count) != MRD_OK || count == 0
        || proto_rd_uint(&rd, &format) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "record is not [format, ...]");
    }
    if (format == 0 || format > PROTO_RECORD_FORMAT) {
        return proto_fail(why, MRD_EPROTO, "unknown record format");
    }
    if (count
        != (format == 1       ? PROTO_RECORD_FIELDS_V1
                : format == 2 ? PROTO_RECORD_FIELDS_V2
                              : PROTO_RECORD_FIELDS_V3)) {
        return proto_fail(why, MRD_EPROTO, "record has the wrong length");
    }
    out->format = (uint32_t) format;
    int rv      = proto_record_fields(&rd, format, out, why);
    if (rv != MRD_OK) {
        return rv;
    }
    /* The walk proved the array is the whole buffer. */
    MRD_ASSERT(proto_rd_done(&rd));
    return MRD_OK;
}

void
proto_meta_begin(const struct proto_str *meta_raw, struct proto_rd *rd)
{
    uint32_t count;

    proto_rd_init(rd, meta_raw->ptr, meta_raw->len);
    if (meta_raw->len > 0 && proto_rd_map(rd, &count) != MRD_OK) {
        rd->p = rd->end; /* not a map: nothing to iterate */
    }
}

int
proto_meta_next(
    struct proto_rd *rd, struct proto_str *key, struct proto_str *value)
{
    struct proto_rd cur = *rd;

    if (proto_rd_done(rd)) {
        return MRD_ENOTFOUND;
    }
    if (proto_rd_str(&cur, key) != MRD_OK
        || proto_rd_str(&cur, value) != MRD_OK) {
        return MRD_EPROTO;
    }
    *rd = cur;
    return MRD_OK;
}

/* --------------------------------------------------------------- reads -- */

/* The limits on a read's count and wait, shared by both sides. An encoder
 * maps MRD_EPROTO to MRD_EINVAL. */
static int
proto_count_check(uint64_t count, const char **why)
{
    if (count == 0) {
        return proto_fail(why, MRD_EPROTO, "count is 0");
    }
    if (count > MRD_READ_COUNT_MAX) {
        return proto_fail(
            why, MRD_ETOOBIG, "count is larger than MRD_READ_COUNT_MAX");
    }
    return MRD_OK;
}

static int
proto_read_check(
    uint64_t direction, uint64_t count, uint64_t wait_ms, const char **why)
{
    if (direction != MRD_FORWARD && direction != MRD_BACKWARD) {
        return proto_fail(why, MRD_EPROTO, "direction is not 0 or 1");
    }
    int rv = proto_count_check(count, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (wait_ms > MRD_WAIT_MS_MAX) {
        return proto_fail(
            why, MRD_ETOOBIG, "wait_ms is larger than MRD_WAIT_MS_MAX");
    }
    if (wait_ms > 0 && direction == MRD_BACKWARD) {
        return proto_fail(why, MRD_EPROTO, "only forward reads can wait");
    }
    return MRD_OK;
}

static int
proto_arg_code(int rv)
{
    return rv == MRD_EPROTO ? MRD_EINVAL : rv;
}

int
proto_read_req_encode(struct proto_buf *buf, const struct proto_read_req *req)
{
    if (mrd_stream_name_check(req->stream.ptr, req->stream.len) != MRD_OK) {
        return MRD_ENAME;
    }
    int rv = proto_read_check(req->direction, req->count, req->wait_ms, NULL);
    if (rv != MRD_OK) {
        return proto_arg_code(rv);
    }
    if (req->has_cursor
        && (req->direction != MRD_FORWARD
            || proto_vv_check(req->cursor, NULL) != MRD_OK
            || (req->cursor.len > 0 && req->cursor.ptr == NULL))) {
        return MRD_EINVAL;
    }
    uint32_t keys = 2 + (req->from != 0) + (req->direction != MRD_FORWARD)
        + (req->wait_ms != 0) + (req->has_cursor ? 1u : 0u)
        + (req->hint_node != 0);

    proto_request_begin(buf, PROTO_T_READ);
    proto_wr_map(buf, keys);
    proto_wr_uint(buf, PROTO_K_READ_STREAM);
    proto_wr_str(buf, req->stream.ptr, req->stream.len);
    if (req->from != 0) {
        proto_wr_uint(buf, PROTO_K_READ_FROM);
        proto_wr_uint(buf, req->from);
    }
    if (req->direction != MRD_FORWARD) {
        proto_wr_uint(buf, PROTO_K_READ_DIRECTION);
        proto_wr_uint(buf, req->direction);
    }
    proto_wr_uint(buf, PROTO_K_READ_COUNT);
    proto_wr_uint(buf, req->count);
    if (req->wait_ms != 0) {
        proto_wr_uint(buf, PROTO_K_READ_WAIT_MS);
        proto_wr_uint(buf, req->wait_ms);
    }
    if (req->has_cursor) {
        proto_wr_uint(buf, PROTO_K_READ_CURSOR);
        proto_wr_bin(buf, req->cursor.ptr, req->cursor.len);
    }
    if (req->hint_node != 0) {
        proto_wr_uint(buf, PROTO_K_READ_HINT_NODE);
        proto_wr_uint(buf, req->hint_node);
    }
    return proto_buf_status(buf);
}

int
proto_read_req_decode(
    struct proto_rd *body, struct proto_read_req *out, const char **why)
{
    static const enum proto_vt vts[]
        = { PROTO_VT_STR, PROTO_VT_UINT, PROTO_VT_UINT, PROTO_VT_UINT,
              PROTO_VT_UINT, PROTO_VT_BIN, PROTO_VT_UINT };
    static const uint32_t required
        = PROTO_BIT(PROTO_K_READ_STREAM) | PROTO_BIT(PROTO_K_READ_COUNT);
    struct proto_val v[7];
    struct proto_rd  rd = *body;
    uint32_t         seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(&rd, vts, 7, required, v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (mrd_stream_name_check(v[0].s.ptr, v[0].s.len) != MRD_OK) {
        return proto_fail(why, MRD_ENAME, "invalid stream name");
    }
    rv = proto_read_check(v[2].u, v[3].u, v[4].u, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if ((seen & PROTO_BIT(PROTO_K_READ_CURSOR)) != 0) {
        if (v[2].u != MRD_FORWARD) {
            return proto_fail(why, MRD_EPROTO, "cursor reads are forward");
        }
        rv = proto_vv_check(v[5].s, why);
        if (rv != MRD_OK) {
            return rv;
        }
        out->has_cursor = true;
        out->cursor     = v[5].s;
    }
    out->hint_node = v[6].u;
    out->stream    = v[0].s;
    out->from      = v[1].u;
    out->direction = (uint32_t) v[2].u;
    out->count     = (uint32_t) v[3].u;
    out->wait_ms   = (uint32_t) v[4].u;
    *body          = rd;
    return MRD_OK;
}

int
proto_log_req_encode(struct proto_buf *buf, const struct proto_log_req *req)
{
    int rv = proto_count_check(req->count, NULL);
    if (rv != MRD_OK) {
        return proto_arg_code(rv);
    }
    proto_request_begin(buf, PROTO_T_READ_LOG);
    proto_wr_map(buf, 2 + (req->after != 0));
    proto_wr_uint(buf, PROTO_K_LOG_SHARD);
    proto_wr_uint(buf, req->shard);
    if (req->after != 0) {
        proto_wr_uint(buf, PROTO_K_LOG_AFTER);
        proto_wr_uint(buf, req->after);
    }
    proto_wr_uint(buf, PROTO_K_LOG_COUNT);
    proto_wr_uint(buf, req->count);
    return proto_buf_status(buf);
}

int
proto_log_req_decode(
    struct proto_rd *body, struct proto_log_req *out, const char **why)
{
    static const enum proto_vt vts[]
        = { PROTO_VT_U32, PROTO_VT_UINT, PROTO_VT_UINT };
    static const uint32_t required
        = PROTO_BIT(PROTO_K_LOG_SHARD) | PROTO_BIT(PROTO_K_LOG_COUNT);
    struct proto_val v[3];
    struct proto_rd  rd = *body;
    uint32_t         seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(&rd, vts, 3, required, v, &seen, why);
    if (rv == MRD_OK) {
        rv = proto_count_check(v[2].u, why);
    }
    if (rv != MRD_OK) {
        return rv;
    }
    out->shard = (uint32_t) v[0].u;
    out->after = v[1].u;
    out->count = (uint32_t) v[2].u;
    *body      = rd;
    return MRD_OK;
}

/* -------------------------------------------------------- read replies -- */

void
proto_events_reply_begin(struct proto_buf *buf, uint32_t type,
    uint32_t key_count, struct proto_events_wr *w)
{
    static const uint8_t array32[PROTO_ARRAY32_SIZE] = { PROTO_ARRAY32 };

    /* The decoder insists on exactly these keys (a cursor read's answer
     * adds READ_NODE). */
    MRD_ASSERT((type == PROTO_T_READ && (key_count == 3 || key_count == 4))
        || (type == PROTO_T_READ_LOG && key_count == 2)
        || (type == PROTO_T_PULL
            && (key_count == PROTO_PULL_REP_KEYS
                || key_count == PROTO_PULL_REP_KEYS_AE)));
    proto_reply_begin(buf, type, MRD_OK);
    proto_wr_map(buf, key_count);
    proto_wr_uint(buf, PROTO_K_READ_EVENTS);
    w->header_at = buf->len;
    w->count     = 0;
    /* The count is not known yet: a fixed-width header can be patched. */
    proto_wr_raw(buf, array32, sizeof array32);
}

void
proto_events_reply_add(struct proto_buf *buf, struct proto_events_wr *w,
    uint64_t position, uint64_t log_seq, const void *record, size_t len)
{
    proto_wr_array(buf, 3);
    proto_wr_uint(buf, position);
    proto_wr_uint(buf, log_seq);
    proto_wr_bin(buf, record, len);
    w->count++;
}

void
proto_events_reply_end(struct proto_buf *buf, struct proto_events_wr *w)
{
    if (proto_buf_status(buf) != MRD_OK) {
        return; /* the frame is dead: its status says so */
    }
    MRD_ASSERT(w->count <= MRD_READ_COUNT_MAX);
    MRD_ASSERT(w->header_at + PROTO_ARRAY32_SIZE <= buf->len);
    MRD_ASSERT(buf->data[w->header_at] == PROTO_ARRAY32);
    mrd_be32_put(buf->data + w->header_at + 1, w->count);
}

/* Reads one [position, log_seq, record] item. */
static int
proto_event_item_read(struct proto_rd *rd, uint64_t *position,
    uint64_t *log_seq, struct proto_str *record)
{
    struct proto_rd cur = *rd;
    uint32_t        count;

    if (proto_rd_array(&cur, &count) != MRD_OK || count != 3
        || proto_rd_uint(&cur, position) != MRD_OK
        || proto_rd_uint(&cur, log_seq) != MRD_OK
        || proto_rd_bin(&cur, record) != MRD_OK) {
        return MRD_EPROTO;
    }
    *rd = cur;
    return MRD_OK;
}

static int
proto_event_items_read(
    struct proto_rd *rd, struct proto_events_rep *out, const char **why)
{
    struct proto_str record;
    uint64_t         position;
    uint64_t         log_seq;
    uint32_t         count;

    if (proto_rd_array(rd, &count) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "events is not an array");
    }
    if (count > MRD_READ_COUNT_MAX) {
        return proto_fail(why, MRD_EPROTO, "more events than a read allows");
    }
    const uint8_t *start = rd->p;
    for (uint32_t i = 0; i < count; i++) {
        if (proto_event_item_read(rd, &position, &log_seq, &record) != MRD_OK) {
            return proto_fail(
                why, MRD_EPROTO, "event is not [position, log_seq, record]");
        }
        if (record.len > PROTO_RECORD_SIZE_MAX) {
            return proto_fail(why, MRD_EPROTO, "record is too large");
        }
    }
    size_t size = (size_t) (rd->p - start);
    if (size > UINT32_MAX) {
        return proto_fail(why, MRD_EPROTO, "events are larger than 4 GiB");
    }
    out->count          = count;
    out->events_raw.ptr = (const char *) start;
    out->events_raw.len = (uint32_t) size;
    return MRD_OK;
}

static int
proto_events_rep_field(struct proto_rd *rd, uint32_t key,
    struct proto_events_rep *out, const char **why)
{
    switch (key) {
    case PROTO_K_READ_EVENTS:
        return proto_event_items_read(rd, out, why);
    case PROTO_K_READ_NEXT: /* = PROTO_K_LOG_LAST_SEQ */
        if (proto_rd_uint(rd, &out->next) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "next is not a uint");
        }
        return MRD_OK;
    case PROTO_K_READ_VERSION:
        if (proto_rd_int(rd, &out->version) != MRD_OK
            || out->version < MRD_VERSION_NONE) {
            return proto_fail(why, MRD_EPROTO, "invalid stream version");
        }
        return MRD_OK;
    case PROTO_K_READ_NODE:
        if (proto_rd_uint(rd, &out->node) != MRD_OK || out->node == 0) {
            return proto_fail(why, MRD_EPROTO, "node is not a uint >= 1");
        }
        return MRD_OK;
    default:
        MRD_ASSERT(!"proto_key_next let an unknown read key through");
        return MRD_EINTERNAL;
    }
}

int
proto_events_rep_decode(struct proto_rd *body, uint32_t type,
    struct proto_events_rep *out, const char **why)
{
    _Static_assert((int) PROTO_K_LOG_EVENTS == (int) PROTO_K_READ_EVENTS
            && (int) PROTO_K_LOG_LAST_SEQ == (int) PROTO_K_READ_NEXT,
        "read and log replies share their first keys");
    struct proto_rd rd   = *body;
    uint32_t        seen = 0;
    uint32_t        count;
    uint32_t        key;

    memset(out, 0, sizeof *out);
    if (type != PROTO_T_READ && type != PROTO_T_READ_LOG) {
        return proto_fail(why, MRD_EPROTO, "not a read or log reply");
    }
    /* READ_NODE (4) comes with cursor reads only, so it is optional. */
    uint32_t key_max  = type == PROTO_T_READ ? 4 : 2;
    uint32_t required = type == PROTO_T_READ ? 3 : 2;
    if (proto_rd_map(&rd, &count) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "body is not a map");
    }
    for (uint32_t i = 0; i < count; i++) {
        int rv = proto_key_next(&rd, key_max, &seen, &key, why);
        if (rv == MRD_OK) {
            rv = proto_events_rep_field(&rd, key, out, why);
        }
        if (rv != MRD_OK) {
            return rv;
        }
    }
    if ((seen & PROTO_KEYS_ALL(required)) != PROTO_KEYS_ALL(required)) {
        return proto_fail(why, MRD_EPROTO, "a required key is missing");
    }
    *body = rd;
    return MRD_OK;
}

void
proto_events_rep_begin(const struct proto_events_rep *rep, struct proto_rd *rd)
{
    proto_rd_init(rd, rep->events_raw.ptr, rep->events_raw.len);
}

int
proto_events_rep_next(struct proto_rd *rd, uint64_t *position,
    uint64_t *log_seq, struct proto_str *record)
{
    if (proto_rd_done(rd)) {
        return MRD_ENOTFOUND;
    }
    return proto_event_item_read(rd, position, log_seq, record);
}

/* ---------------------------------------------------------------- pull -- */

int
proto_vv_check(struct proto_str vv, const char **why)
{
    uint64_t prev = 0;
    uint64_t origin;
    uint64_t seq;

    if (vv.len % PROTO_VV_ENTRY_SIZE != 0) {
        return proto_fail(
            why, MRD_EPROTO, "version vector length is not a multiple of 16");
    }
    if (vv.len / PROTO_VV_ENTRY_SIZE > PROTO_VV_ENTRIES_MAX) {
        return proto_fail(why, MRD_EPROTO,
            "version vector has more than PROTO_VV_ENTRIES_MAX entries");
    }
    for (uint32_t i = 0; i < vv.len / PROTO_VV_ENTRY_SIZE; i++) {
        proto_vv_at(vv, i, &origin, &seq);
        if (origin == 0 || seq == 0) {
            return proto_fail(
                why, MRD_EPROTO, "version vector has a zero origin or seq");
        }
        if (origin <= prev) {
            return proto_fail(why, MRD_EPROTO,
                "version vector origins are not strictly increasing");
        }
        prev = origin;
    }
    return MRD_OK;
}

uint64_t
proto_vv_get(struct proto_str vv, uint64_t origin)
{
    uint32_t lo = 0, hi = proto_vv_count(vv);
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        uint64_t o, s;
        proto_vv_at(vv, mid, &o, &s);
        if (o == origin) {
            return s;
        }
        if (o < origin) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return 0;
}

uint32_t
proto_vv_count(struct proto_str vv)
{
    return vv.len / PROTO_VV_ENTRY_SIZE;
}

void
proto_vv_at(struct proto_str vv, uint32_t i, uint64_t *origin, uint64_t *seq)
{
    MRD_ASSERT(i < vv.len / PROTO_VV_ENTRY_SIZE);
    const uint8_t *p
        = (const uint8_t *) vv.ptr + (size_t) i * PROTO_VV_ENTRY_SIZE;
    *origin = mrd_be64_get(p);
    *seq    = mrd_be64_get(p + 8);
}

/* The limits of a PULL request, shared by both sides. */
static int
proto_pull_check(
    uint64_t count, struct proto_str vv, uint64_t from, const char **why)
{
    int rv = proto_count_check(count, why);
    if (rv != MRD_OK) {
        return rv;
    }
    rv = proto_vv_check(vv, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (from == 0) {
        return proto_fail(why, MRD_EPROTO, "from is 0");
    }
    return MRD_OK;
}

int
proto_pull_req_encode(struct proto_buf *buf, const struct proto_pull_req *req)
{
    if ((req->vv.len > 0 && req->vv.ptr == NULL)
        || (req->cluster.len != 0 && req->cluster.len != 16)
        || (req->cluster.len == 16 && req->cluster.ptr == NULL)) {
        return MRD_EINVAL;
    }
    int rv = proto_pull_check(req->count, req->vv, req->from, NULL);
    if (rv != MRD_OK) {
        return proto_arg_code(rv);
    }
    if (req->region.len > PROTO_REGION_SIZE_MAX
        || (req->region.len > 0
            && (req->region.ptr == NULL
                || !mrd_utf8_valid(req->region.ptr, req->region.len)))) {
        return MRD_EINVAL;
    }
    if (req->digest.len > PROTO_DIGEST_SIZE_MAX
        || (req->digest.len > 0 && req->digest.ptr == NULL)) {
        return MRD_EINVAL;
    }
    proto_request_begin(buf, PROTO_T_PULL);
    proto_wr_map(buf,
        3 + (req->after != 0) + (req->vv.len > 0) + (req->cluster.len > 0)
            + (req->region.len > 0) + (req->skip != 0) + (req->digest.len > 0)
            + (req->bytes != 0));
    proto_wr_uint(buf, PROTO_K_PULL_SHARD);
    proto_wr_uint(buf, req->shard);
    if (req->after != 0) {
        proto_wr_uint(buf, PROTO_K_PULL_AFTER);
        proto_wr_uint(buf, req->after);
    }
    proto_wr_uint(buf, PROTO_K_PULL_COUNT);
    proto_wr_uint(buf, req->count);
    if (req->vv.len > 0) {
        proto_wr_uint(buf, PROTO_K_PULL_VV);
        proto_wr_bin(buf, req->vv.ptr, req->vv.len);
    }
    proto_wr_uint(buf, PROTO_K_PULL_FROM);
    proto_wr_uint(buf, req->from);
    if (req->cluster.len > 0) {
        proto_wr_uint(buf, PROTO_K_PULL_CLUSTER);
        proto_wr_bin(buf, req->cluster.ptr, req->cluster.len);
    }
    if (req->region.len > 0) {
        proto_wr_uint(buf, PROTO_K_PULL_REGION);
        proto_wr_str(buf, req->region.ptr, req->region.len);
    }
    if (req->skip != 0) {
        proto_wr_uint(buf, PROTO_K_PULL_SKIP);
        proto_wr_uint(buf, req->skip);
    }
    if (req->digest.len > 0) {
        proto_wr_uint(buf, PROTO_K_PULL_DIGEST);
        proto_wr_bin(buf, req->digest.ptr, req->digest.len);
    }
    if (req->bytes != 0) {
        proto_wr_uint(buf, PROTO_K_PULL_BYTES);
        proto_wr_uint(buf, req->bytes);
    }
    return proto_buf_status(buf);
}

int
proto_pull_req_decode(
    struct proto_rd *body, struct proto_pull_req *out, const char **why)
{
    static const enum proto_vt vts[]    = { PROTO_VT_U32, PROTO_VT_UINT,
           PROTO_VT_UINT, PROTO_VT_BIN, PROTO_VT_UINT, PROTO_VT_BIN, PROTO_VT_STR,
           PROTO_VT_U32, PROTO_VT_BIN, PROTO_VT_UINT };
    static const uint32_t      required = PROTO_BIT(PROTO_K_PULL_SHARD)
        | PROTO_BIT(PROTO_K_PULL_COUNT) | PROTO_BIT(PROTO_K_PULL_FROM);
    struct proto_val v[MRD_ARRAY_SIZE(vts)];
    struct proto_rd  rd = *body;
    uint32_t         seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(
        &rd, vts, MRD_ARRAY_SIZE(vts), required, v, &seen, why);
    if (rv == MRD_OK) {
        rv = proto_pull_check(v[2].u, v[3].s, v[4].u, why);
    }
    if (rv == MRD_OK && (seen & PROTO_BIT(PROTO_K_PULL_CLUSTER)) != 0
        && v[5].s.len != 16) {
        rv = proto_fail(why, MRD_EPROTO, "cluster id is not 16 bytes");
    }
    if (rv != MRD_OK) {
        return rv;
    }
    out->shard = (uint32_t) v[0].u;
    out->after = v[1].u;
    out->count = (uint32_t) v[2].u;
    out->vv    = v[3].s;
    out->from  = v[4].u;
    if ((seen & PROTO_BIT(PROTO_K_PULL_CLUSTER)) != 0) {
        out->cluster = v[5].s;
    }
    if ((seen & PROTO_BIT(PROTO_K_PULL_REGION)) != 0) {
        if (v[6].s.len == 0 || v[6].s.len > PROTO_REGION_SIZE_MAX) {
            return proto_fail(why, MRD_EPROTO,
                "region is not 1..PROTO_REGION_SIZE_MAX bytes");
        }
        if (!mrd_utf8_valid(v[6].s.ptr, v[6].s.len)) {
            return proto_fail(why, MRD_EPROTO, "region is not UTF-8");
        }
        out->region = v[6].s;
    }
    out->skip = (uint32_t) v[7].u;
    if ((seen & PROTO_BIT(PROTO_K_PULL_DIGEST)) != 0) {
        if (v[8].s.len == 0 || v[8].s.len > PROTO_DIGEST_SIZE_MAX) {
            return proto_fail(why, MRD_EPROTO,
                "digest is not 1..PROTO_DIGEST_SIZE_MAX bytes");
        }
        out->digest = v[8].s;
    }
    if ((seen & PROTO_BIT(PROTO_K_PULL_BYTES)) != 0) {
        if (v[9].u == 0) {
            return proto_fail(why, MRD_EPROTO, "bytes is 0");
        }
        out->bytes = v[9].u;
    }
    *body = rd;
    return MRD_OK;
}

void
proto_pull_rep_finish(struct proto_buf *buf, uint64_t scanned, bool end,
    const void *vv, size_t vv_len)
{
    MRD_ASSERT(end || vv_len == 0);
    MRD_ASSERT(vv != NULL || vv_len == 0);
    if (vv_len > (size_t) PROTO_VV_ENTRIES_MAX * PROTO_VV_ENTRY_SIZE) {
        if (proto_buf_status(buf) == MRD_OK) {
            buf->overflow = true; /* no peer would accept it */
        }
        return;
    }
    struct proto_str s = { (const char *) vv, (uint32_t) vv_len };
    MRD_ASSERT(proto_vv_check(s, NULL) == MRD_OK);
    proto_wr_uint(buf, PROTO_K_PULL_SCANNED);
    proto_wr_uint(buf, scanned);
    proto_wr_uint(buf, PROTO_K_PULL_END);
    proto_wr_bool(buf, end);
    proto_wr_uint(buf, PROTO_K_PULL_VV);
    proto_wr_bin(buf, vv, vv_len);
}

void
proto_pull_rep_finish_ae(struct proto_buf *buf, bool blocked,
    uint64_t blocked_origin, uint64_t blocked_seq, const void *digest,
    size_t digest_len)
{
    uint8_t on[16];

    MRD_ASSERT(!blocked || (blocked_origin != 0 && blocked_seq != 0));
    MRD_ASSERT(digest != NULL || digest_len == 0);
    if (digest_len > PROTO_DIGEST_SIZE_MAX) {
        if (proto_buf_status(buf) == MRD_OK) {
            buf->overflow = true; /* no peer would accept it */
        }
        return;
    }
    mrd_be64_put(on, blocked_origin);
    mrd_be64_put(on + 8, blocked_seq);
    proto_wr_uint(buf, PROTO_K_PULL_BLOCKED);
    proto_wr_bool(buf, blocked);
    proto_wr_uint(buf, PROTO_K_PULL_BLOCKED_ON);
    proto_wr_bin(buf, on, blocked ? sizeof on : 0);
    proto_wr_uint(buf, PROTO_K_PULL_DIGEST_REP);
    proto_wr_bin(buf, digest, digest_len);
}

static int
proto_pull_rep_field(struct proto_rd *rd, uint32_t key,
    struct proto_pull_rep *out, const char **why)
{
    struct proto_events_rep items;

    switch (key) {
    case PROTO_K_PULL_EVENTS: {
        int rv = proto_event_items_read(rd, &items, why);
        if (rv == MRD_OK) {
            out->count      = items.count;
            out->events_raw = items.events_raw;
        }
        return rv;
    }
    case PROTO_K_PULL_SCANNED:
        if (proto_rd_uint(rd, &out->scanned) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "scanned is not a uint");
        }
        return MRD_OK;
    case PROTO_K_PULL_END:
        if (proto_rd_bool(rd, &out->end) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "end is not a bool");
        }
        return MRD_OK;
    case PROTO_K_PULL_VV:
        if (proto_rd_bin(rd, &out->vv) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "version vector is not a bin");
        }
        return proto_vv_check(out->vv, why);
    case PROTO_K_PULL_BLOCKED:
        if (proto_rd_bool(rd, &out->blocked) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "blocked is not a bool");
        }
        return MRD_OK;
    case PROTO_K_PULL_BLOCKED_ON: {
        struct proto_str on;
        if (proto_rd_bin(rd, &on) != MRD_OK || (on.len != 0 && on.len != 16)) {
            return proto_fail(
                why, MRD_EPROTO, "blocked_on is not an empty or 16-byte bin");
        }
        if (on.len == 16) {
            out->blocked_origin = mrd_be64_get((const uint8_t *) on.ptr);
            out->blocked_seq    = mrd_be64_get((const uint8_t *) on.ptr + 8);
            if (out->blocked_origin == 0 || out->blocked_seq == 0) {
                return proto_fail(why, MRD_EPROTO, "blocked_on has a 0");
            }
        }
        return MRD_OK;
    }
    case PROTO_K_PULL_DIGEST_REP:
        if (proto_rd_bin(rd, &out->digest) != MRD_OK) {
            return proto_fail(why, MRD_EPROTO, "digest is not a bin");
        }
        if (out->digest.len > PROTO_DIGEST_SIZE_MAX) {
            return proto_fail(
                why, MRD_EPROTO, "digest over PROTO_DIGEST_SIZE_MAX bytes");
        }
        return MRD_OK;
    default:
        MRD_ASSERT(!"proto_key_next let an unknown pull key through");
        return MRD_EINTERNAL;
    }
}

int
proto_pull_rep_decode(
    struct proto_rd *body, struct proto_pull_rep *out, const char **why)
{
    _Static_assert((int) PROTO_K_PULL_EVENTS == (int) PROTO_K_READ_EVENTS,
        "proto_events_reply_begin writes key 1");
    struct proto_rd rd   = *body;
    uint32_t        seen = 0;
    uint32_t        count;
    uint32_t        key;

    memset(out, 0, sizeof *out);
    if (proto_rd_map(&rd, &count) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "body is not a map");
    }
    for (uint32_t i = 0; i < count; i++) {
        int rv = proto_key_next(&rd, PROTO_K_PULL_DIGEST_REP, &seen, &key, why);
        if (rv == MRD_OK) {
            rv = proto_pull_rep_field(&rd, key, out, why);
        }
        if (rv != MRD_OK) {
            return rv;
        }
    }
    if ((seen & PROTO_KEYS_ALL(4)) != PROTO_KEYS_ALL(4)) {
        return proto_fail(why, MRD_EPROTO, "a required key is missing");
    }
    if (!out->end && out->vv.len != 0) {
        return proto_fail(
            why, MRD_EPROTO, "version vector in a reply that did not end");
    }
    if (out->blocked && (out->end || out->blocked_origin == 0)) {
        return proto_fail(why, MRD_EPROTO,
            "blocked with end, or without the event it is blocked on");
    }
    if (!out->blocked && out->blocked_origin != 0) {
        return proto_fail(why, MRD_EPROTO, "blocked_on without blocked");
    }
    *body = rd;
    return MRD_OK;
}

void
proto_pull_rep_begin(const struct proto_pull_rep *rep, struct proto_rd *rd)
{
    proto_rd_init(rd, rep->events_raw.ptr, rep->events_raw.len);
}

/* ---------------------------------------------------------------- info -- */

int
proto_info_req_encode(
    struct proto_buf *buf, const char *stream, size_t stream_len)
{
    if (mrd_stream_name_check(stream, stream_len) != MRD_OK) {
        return MRD_ENAME;
    }
    proto_request_begin(buf, PROTO_T_INFO);
    proto_wr_map(buf, 1);
    proto_wr_uint(buf, PROTO_K_INFO_STREAM);
    proto_wr_str(buf, stream, stream_len);
    return proto_buf_status(buf);
}

int
proto_info_req_decode(
    struct proto_rd *body, struct proto_str *stream, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_STR };
    struct proto_val           v[1];
    struct proto_rd            rd = *body;
    uint32_t                   seen;

    stream->ptr = NULL;
    stream->len = 0;
    int rv = proto_flat_decode(&rd, vts, 1, PROTO_KEYS_ALL(1), v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (mrd_stream_name_check(v[0].s.ptr, v[0].s.len) != MRD_OK) {
        return proto_fail(why, MRD_ENAME, "invalid stream name");
    }
    *stream = v[0].s;
    *body   = rd;
    return MRD_OK;
}

void
proto_info_rep_encode(struct proto_buf *buf, const mrd_stream_info *info)
{
    proto_reply_begin(buf, PROTO_T_INFO, MRD_OK);
    proto_wr_map(buf, 4);
    proto_wr_uint(buf, PROTO_K_INFO_EXISTS);
    proto_wr_bool(buf, info->exists != 0);
    proto_wr_uint(buf, PROTO_K_INFO_VERSION);
    proto_wr_int(buf, info->version);
    proto_wr_uint(buf, PROTO_K_INFO_COUNT);
    proto_wr_uint(buf, info->count);
    proto_wr_uint(buf, PROTO_K_INFO_SHARD);
    proto_wr_uint(buf, info->shard);
}

int
proto_info_rep_decode(
    struct proto_rd *body, mrd_stream_info *out, const char **why)
{
    static const enum proto_vt vts[]
        = { PROTO_VT_BOOL, PROTO_VT_INT, PROTO_VT_UINT, PROTO_VT_U32 };
    struct proto_val v[4];
    struct proto_rd  rd = *body;
    uint32_t         seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(&rd, vts, 4, PROTO_KEYS_ALL(4), v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (v[1].i < MRD_VERSION_NONE) {
        return proto_fail(why, MRD_EPROTO, "invalid stream version");
    }
    out->exists  = v[0].b ? 1 : 0;
    out->version = v[1].i;
    out->count   = v[2].u;
    out->shard   = (uint32_t) v[3].u;
    *body        = rd;
    return MRD_OK;
}

/* --------------------------------------------------------------- state -- */

static const struct proto_text_rule proto_rule_field = {
    MRD_STATE_NAME_SIZE_MAX,
    true,
    "state field is not a string",
    "state field is longer than MRD_STATE_NAME_SIZE_MAX",
    "state field is empty or not valid UTF-8",
};

int
proto_state_req_encode(struct proto_buf *buf, const struct proto_state_req *req)
{
    if (mrd_stream_name_check(req->stream.ptr, req->stream.len) != MRD_OK) {
        return MRD_ENAME;
    }
    if (req->field.len > 0) {
        int rv = proto_text_check(&proto_rule_field, req->field, NULL);
        if (rv != MRD_OK) {
            return proto_arg_code(rv);
        }
    }
    proto_request_begin(buf, PROTO_T_STATE);
    proto_wr_map(buf, 1 + (req->field.len > 0));
    proto_wr_uint(buf, PROTO_K_STATE_STREAM);
    proto_wr_str(buf, req->stream.ptr, req->stream.len);
    if (req->field.len > 0) {
        proto_wr_uint(buf, PROTO_K_STATE_FIELD);
        proto_wr_str(buf, req->field.ptr, req->field.len);
    }
    return proto_buf_status(buf);
}

int
proto_state_req_decode(
    struct proto_rd *body, struct proto_state_req *out, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_STR, PROTO_VT_STR };
    struct proto_val           v[2];
    struct proto_rd            rd = *body;
    uint32_t                   seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(
        &rd, vts, 2, PROTO_BIT(PROTO_K_STATE_STREAM), v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (mrd_stream_name_check(v[0].s.ptr, v[0].s.len) != MRD_OK) {
        return proto_fail(why, MRD_ENAME, "invalid stream name");
    }
    /* Unlike most optional keys, a field given must name one: an empty
     * one is a client bug, not "every field". */
    if ((seen & PROTO_BIT(PROTO_K_STATE_FIELD)) != 0) {
        rv = proto_text_check(&proto_rule_field, v[1].s, why);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    out->stream = v[0].s;
    out->field  = v[1].s;
    *body       = rd;
    return MRD_OK;
}

void
proto_state_rep_encode(struct proto_buf *buf, const struct proto_state_rep *rep)
{
    MRD_ASSERT(rep->version >= MRD_VERSION_NONE);
    MRD_ASSERT(rep->state.len > 0 && rep->state.ptr != NULL);
    if (rep->state.len > PROTO_STATE_SIZE_MAX
        && proto_buf_status(buf) == MRD_OK) {
        buf->overflow = true; /* no client would accept it */
        return;
    }
    proto_reply_begin(buf, PROTO_T_STATE, MRD_OK);
    proto_wr_map(buf, 2);
    proto_wr_uint(buf, PROTO_K_STATE_VERSION);
    proto_wr_int(buf, rep->version);
    proto_wr_uint(buf, PROTO_K_STATE_DOC);
    proto_wr_bin(buf, rep->state.ptr, rep->state.len);
}

int
proto_state_rep_decode(
    struct proto_rd *body, struct proto_state_rep *out, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_INT, PROTO_VT_BIN };
    struct proto_val           v[2];
    struct proto_rd            rd = *body;
    uint32_t                   seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(&rd, vts, 2, PROTO_KEYS_ALL(2), v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (v[0].i < MRD_VERSION_NONE) {
        return proto_fail(why, MRD_EPROTO, "invalid stream version");
    }
    if (v[1].s.len == 0) {
        return proto_fail(why, MRD_EPROTO, "state is empty");
    }
    if (v[1].s.len > PROTO_STATE_SIZE_MAX) {
        return proto_fail(
            why, MRD_ETOOBIG, "state is larger than PROTO_STATE_SIZE_MAX");
    }
    out->version = v[0].i;
    out->state   = v[1].s;
    *body        = rd;
    return MRD_OK;
}

/* ---------------------------------------------------------------- hint -- */

int
proto_hint_req_encode(struct proto_buf *buf, const struct proto_hint_req *req)
{
    if (req->from == 0 || req->shards.len == 0
        || req->shards.len > PROTO_HINT_SHARDS_SIZE_MAX
        || req->shards.ptr == NULL) {
        return MRD_EINVAL;
    }
    proto_request_begin(buf, PROTO_T_HINT);
    proto_wr_map(buf, 2);
    proto_wr_uint(buf, PROTO_K_HINT_FROM);
    proto_wr_uint(buf, req->from);
    proto_wr_uint(buf, PROTO_K_HINT_SHARDS);
    proto_wr_bin(buf, req->shards.ptr, req->shards.len);
    return proto_buf_status(buf);
}

int
proto_hint_req_decode(
    struct proto_rd *body, struct proto_hint_req *out, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_UINT, PROTO_VT_BIN };
    static const uint32_t      required
        = PROTO_BIT(PROTO_K_HINT_FROM) | PROTO_BIT(PROTO_K_HINT_SHARDS);
    struct proto_val v[2];
    struct proto_rd  rd = *body;
    uint32_t         seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(&rd, vts, 2, required, v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (v[0].u == 0) {
        return proto_fail(why, MRD_EPROTO, "hint from node 0");
    }
    if (v[1].s.len == 0 || v[1].s.len > PROTO_HINT_SHARDS_SIZE_MAX) {
        return proto_fail(why, MRD_EPROTO,
            "hint shard bitmap is not 1..PROTO_HINT_SHARDS_SIZE_MAX bytes");
    }
    out->from   = v[0].u;
    out->shards = v[1].s;
    *body       = rd;
    return MRD_OK;
}

/* ---------------------------------------------------------------- swim -- */

int
proto_swim_req_encode(
    struct proto_buf *buf, uint64_t from, struct proto_str msg)
{
    if (from == 0 || msg.len == 0 || msg.len > PROTO_SWIM_MSG_SIZE_MAX
        || msg.ptr == NULL) {
        return MRD_EINVAL;
    }
    proto_request_begin(buf, PROTO_T_SWIM);
    proto_wr_map(buf, 2);
    proto_wr_uint(buf, PROTO_K_SWIM_FROM);
    proto_wr_uint(buf, from);
    proto_wr_uint(buf, PROTO_K_SWIM_MSG);
    proto_wr_bin(buf, msg.ptr, msg.len);
    return proto_buf_status(buf);
}

int
proto_swim_req_decode(struct proto_rd *body, uint64_t *from,
    struct proto_str *msg, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_UINT, PROTO_VT_BIN };
    static const uint32_t      required
        = PROTO_BIT(PROTO_K_SWIM_FROM) | PROTO_BIT(PROTO_K_SWIM_MSG);
    struct proto_val v[2];
    struct proto_rd  rd = *body;
    uint32_t         seen;

    int rv = proto_flat_decode(&rd, vts, 2, required, v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (v[0].u == 0) {
        return proto_fail(why, MRD_EPROTO, "swim message from node 0");
    }
    if (v[1].s.len == 0 || v[1].s.len > PROTO_SWIM_MSG_SIZE_MAX) {
        return proto_fail(why, MRD_EPROTO,
            "swim message is not 1..PROTO_SWIM_MSG_SIZE_MAX bytes");
    }
    *from = v[0].u;
    *msg  = v[1].s;
    *body = rd;
    return MRD_OK;
}

/* ------------------------------------------------------------ topology -- */

int
proto_topo_req_encode(struct proto_buf *buf, uint64_t have)
{
    proto_request_begin(buf, PROTO_T_TOPOLOGY);
    proto_wr_map(buf, have != 0 ? 1 : 0);
    if (have != 0) {
        proto_wr_uint(buf, PROTO_K_TOPO_HAVE);
        proto_wr_uint(buf, have);
    }
    return proto_buf_status(buf);
}

int
proto_topo_req_decode(struct proto_rd *body, uint64_t *have, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_UINT };
    struct proto_val           v[1];
    struct proto_rd            rd = *body;
    uint32_t                   seen;

    *have  = 0;
    int rv = proto_flat_decode(&rd, vts, 1, 0, v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    *have = v[0].u;
    *body = rd;
    return MRD_OK;
}

static int
proto_topo_signed_check(struct proto_str s, const char **why)
{
    if (s.len == 0) {
        return proto_fail(why, MRD_EPROTO, "signed topology is empty");
    }
    if (s.len > PROTO_TOPOLOGY_SIZE_MAX) {
        return proto_fail(why, MRD_ETOOBIG,
            "signed topology is larger than PROTO_TOPOLOGY_SIZE_MAX");
    }
    return MRD_OK;
}

void
proto_topo_rep_encode(
    struct proto_buf *buf, uint64_t version, struct proto_str signed_topo)
{
    MRD_ASSERT(version >= 1 && signed_topo.len <= PROTO_TOPOLOGY_SIZE_MAX);
    proto_reply_begin(buf, PROTO_T_TOPOLOGY, MRD_OK);
    proto_wr_map(buf, signed_topo.len > 0 ? 2 : 1);
    proto_wr_uint(buf, PROTO_K_TOPO_VERSION);
    proto_wr_uint(buf, version);
    if (signed_topo.len > 0) {
        proto_wr_uint(buf, PROTO_K_TOPO_SIGNED);
        proto_wr_bin(buf, signed_topo.ptr, signed_topo.len);
    }
}

int
proto_topo_rep_decode(struct proto_rd *body, uint64_t *version,
    struct proto_str *signed_topo, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_UINT, PROTO_VT_BIN };
    struct proto_val           v[2];
    struct proto_rd            rd = *body;
    uint32_t                   seen;

    *version     = 0;
    *signed_topo = (struct proto_str) { NULL, 0 };
    int rv       = proto_flat_decode(
              &rd, vts, 2, PROTO_BIT(PROTO_K_TOPO_VERSION), v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (v[0].u == 0) {
        return proto_fail(why, MRD_EPROTO, "topology version 0");
    }
    if ((seen & PROTO_BIT(PROTO_K_TOPO_SIGNED)) != 0) {
        rv = proto_topo_signed_check(v[1].s, why);
        if (rv != MRD_OK) {
            return rv;
        }
        *signed_topo = v[1].s;
    }
    *version = v[0].u;
    *body    = rd;
    return MRD_OK;
}

int
proto_topo_push_encode(struct proto_buf *buf, struct proto_str signed_topo)
{
    if (signed_topo.ptr == NULL
        || proto_topo_signed_check(signed_topo, NULL) != MRD_OK) {
        return signed_topo.len > PROTO_TOPOLOGY_SIZE_MAX ? MRD_ETOOBIG
                                                         : MRD_EINVAL;
    }
    proto_request_begin(buf, PROTO_T_TOPOLOGY_PUSH);
    proto_wr_map(buf, 1);
    proto_wr_uint(buf, PROTO_K_TOPO_SIGNED);
    proto_wr_bin(buf, signed_topo.ptr, signed_topo.len);
    return proto_buf_status(buf);
}

int
proto_topo_push_decode(
    struct proto_rd *body, struct proto_str *signed_topo, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_UINT, PROTO_VT_BIN };
    struct proto_val           v[2];
    struct proto_rd            rd = *body;
    uint32_t                   seen;

    *signed_topo = (struct proto_str) { NULL, 0 };
    /* Key 1 is not used in a push: only the signed document, key 2. */
    int rv = proto_flat_decode(
        &rd, vts, 2, PROTO_BIT(PROTO_K_TOPO_SIGNED), v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if ((seen & PROTO_BIT(1)) != 0) {
        return proto_fail(why, MRD_EPROTO, "unknown key");
    }
    rv = proto_topo_signed_check(v[1].s, why);
    if (rv != MRD_OK) {
        return rv;
    }
    *signed_topo = v[1].s;
    *body        = rd;
    return MRD_OK;
}

void
proto_topo_push_rep_encode(struct proto_buf *buf, uint64_t version)
{
    proto_reply_begin(buf, PROTO_T_TOPOLOGY_PUSH, MRD_OK);
    proto_wr_map(buf, 1);
    proto_wr_uint(buf, PROTO_K_TOPO_VERSION);
    proto_wr_uint(buf, version);
}

int
proto_topo_push_rep_decode(
    struct proto_rd *body, uint64_t *version, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_UINT };
    struct proto_val           v[1];
    struct proto_rd            rd = *body;
    uint32_t                   seen;

    *version = 0;
    int rv   = proto_flat_decode(
          &rd, vts, 1, PROTO_BIT(PROTO_K_TOPO_VERSION), v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (v[0].u == 0) {
        return proto_fail(why, MRD_EPROTO, "topology version 0");
    }
    *version = v[0].u;
    *body    = rd;
    return MRD_OK;
}

/* ------------------------------------------------- node info and stats -- */

void
proto_empty_req_encode(struct proto_buf *buf, uint32_t type)
{
    proto_request_begin(buf, type);
    proto_wr_map(buf, 0);
}

int
proto_empty_req_decode(struct proto_rd *body, const char **why)
{
    struct proto_rd rd = *body;
    uint32_t        count;

    if (proto_rd_map(&rd, &count) != MRD_OK) {
        return proto_fail(why, MRD_EPROTO, "body is not a map");
    }
    if (count != 0) {
        return proto_fail(why, MRD_EPROTO, "unknown key");
    }
    *body = rd;
    return MRD_OK;
}

void
proto_node_rep_encode(struct proto_buf *buf, const mrd_node_info *info)
{
    size_t version_len = strnlen(info->version, sizeof info->version - 1);

    proto_reply_begin(buf, PROTO_T_NODE_INFO, MRD_OK);
    proto_wr_map(buf, 6);
    proto_wr_uint(buf, PROTO_K_NODE_ID);
    proto_wr_uint(buf, info->node_id);
    proto_wr_uint(buf, PROTO_K_NODE_CLUSTER);
    proto_wr_bin(buf, info->cluster_id, sizeof info->cluster_id);
    proto_wr_uint(buf, PROTO_K_NODE_SHARDS);
    proto_wr_uint(buf, info->shard_count);
    proto_wr_uint(buf, PROTO_K_NODE_PROTO);
    proto_wr_uint(buf, info->protocol_version);
    proto_wr_uint(buf, PROTO_K_NODE_FRAME_MAX);
    proto_wr_uint(buf, info->frame_size_max);
    proto_wr_uint(buf, PROTO_K_NODE_VERSION);
    proto_wr_str(buf, info->version, version_len);
}

int
proto_node_rep_decode(
    struct proto_rd *body, mrd_node_info *out, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_UINT, PROTO_VT_BIN,
        PROTO_VT_U32, PROTO_VT_U32, PROTO_VT_U32, PROTO_VT_STR };
    struct proto_val           v[6];
    struct proto_rd            rd = *body;
    uint32_t                   seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(&rd, vts, 6, PROTO_KEYS_ALL(6), v, &seen, why);
    if (rv == MRD_OK) {
        rv = proto_text_check(&proto_rule_node_version, v[5].s, why);
    }
    if (rv != MRD_OK) {
        return rv;
    }
    if (v[1].s.len != sizeof out->cluster_id) {
        return proto_fail(why, MRD_EPROTO, "cluster id is not 16 bytes");
    }
    out->node_id = v[0].u;
    memcpy(out->cluster_id, v[1].s.ptr, sizeof out->cluster_id);
    out->shard_count      = (uint32_t) v[2].u;
    out->protocol_version = (uint32_t) v[3].u;
    out->frame_size_max   = (uint32_t) v[4].u;
    if (v[5].s.len > 0) {
        memcpy(out->version, v[5].s.ptr, v[5].s.len);
    }
    out->version[v[5].s.len] = '\0';
    *body                    = rd;
    return MRD_OK;
}

void
proto_stats_rep_encode(
    struct proto_buf *buf, const struct proto_stat *stats, size_t count)
{
    MRD_ASSERT(count <= PROTO_COUNT_MAX); /* or no reader would accept it */
    proto_reply_begin(buf, PROTO_T_STATS, MRD_OK);
    proto_wr_map(buf, (uint32_t) count);
    for (size_t i = 0; i < count; i++) {
        proto_wr_str(buf, stats[i].name, strlen(stats[i].name));
        proto_wr_uint(buf, stats[i].value);
    }
}

int
proto_stats_rep_find(
    const struct proto_rd *body, const char *name, uint64_t *value)
{
    struct proto_rd  rd       = *body; /* the caller's stays where it is */
    size_t           name_len = strlen(name);
    struct proto_str key;
    uint64_t         v;
    uint32_t         count;

    if (proto_rd_map(&rd, &count) != MRD_OK) {
        return MRD_EPROTO;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (proto_rd_str(&rd, &key) != MRD_OK
            || proto_rd_uint(&rd, &v) != MRD_OK) {
            return MRD_EPROTO;
        }
        if (key.len == name_len && memcmp(key.ptr, name, name_len) == 0) {
            *value = v;
            return MRD_OK;
        }
    }
    return MRD_ENOTFOUND;
}

/* ---------------------------------------------------------- operations -- */

static const struct proto_text_rule proto_rule_doc = {
    PROTO_DOC_SIZE_MAX,
    true,
    "document is not a string",
    "document is larger than PROTO_DOC_SIZE_MAX",
    "document is empty or not valid UTF-8",
};
static const struct proto_text_rule proto_rule_fence_label = {
    PROTO_FENCE_LABEL_SIZE_MAX,
    false,
    "fence label is not a string",
    "fence label is longer than PROTO_FENCE_LABEL_SIZE_MAX",
    "fence label is not valid UTF-8",
};

void
proto_doc_rep_encode(
    struct proto_buf *buf, uint32_t type, const char *json, size_t len)
{
    MRD_ASSERT(len >= 2 && len <= PROTO_DOC_SIZE_MAX);
    proto_reply_begin(buf, type, MRD_OK);
    proto_wr_map(buf, 1);
    proto_wr_uint(buf, PROTO_K_DOC_JSON);
    proto_wr_str(buf, json, len);
}

int
proto_doc_rep_decode(
    struct proto_rd *body, struct proto_str *json, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_STR };
    struct proto_val           v[1];
    struct proto_rd            rd = *body;
    uint32_t                   seen;

    *json  = (struct proto_str) { NULL, 0 };
    int rv = proto_flat_decode(&rd, vts, 1, PROTO_KEYS_ALL(1), v, &seen, why);
    if (rv == MRD_OK) {
        rv = proto_text_check(&proto_rule_doc, v[0].s, why);
    }
    if (rv == MRD_OK && (v[0].s.len < 2 || v[0].s.ptr[0] != '{')) {
        rv = proto_fail(why, MRD_EPROTO, "document is not a JSON object");
    }
    if (rv != MRD_OK) {
        return rv;
    }
    *json = v[0].s;
    *body = rd;
    return MRD_OK;
}

/* Fence peers: whole 8-byte ids, none 0, at most PROTO_FENCE_PEERS_MAX. */
static int
proto_fence_peers_check(struct proto_str peers, const char **why)
{
    if (peers.len % 8 != 0 || peers.len / 8 > PROTO_FENCE_PEERS_MAX) {
        return proto_fail(why, MRD_EPROTO,
            "fence peers are not 0..PROTO_FENCE_PEERS_MAX 8-byte ids");
    }
    for (uint32_t i = 0; i < peers.len; i += 8) {
        if (mrd_be64_get((const uint8_t *) peers.ptr + i) == 0) {
            return proto_fail(why, MRD_EPROTO, "fence names node 0");
        }
    }
    return MRD_OK;
}

int
proto_fence_req_encode(struct proto_buf *buf, const struct proto_fence_req *req)
{
    if (req->ms > PROTO_FENCE_MS_MAX
        || (req->peers.len > 0 && req->peers.ptr == NULL)
        || proto_fence_peers_check(req->peers, NULL) != MRD_OK
        || (req->label.len > 0 && req->label.ptr == NULL)
        || proto_text_check(&proto_rule_fence_label, req->label, NULL)
            != MRD_OK) {
        return MRD_EINVAL;
    }
    uint32_t keys = 1 + (req->clients ? 1u : 0u) + (req->peers.len > 0)
        + (req->label.len > 0);
    proto_request_begin(buf, PROTO_T_FENCE);
    proto_wr_map(buf, keys);
    proto_wr_uint(buf, PROTO_K_FENCE_MS);
    proto_wr_uint(buf, req->ms);
    if (req->clients) {
        proto_wr_uint(buf, PROTO_K_FENCE_CLIENTS);
        proto_wr_bool(buf, true);
    }
    if (req->peers.len > 0) {
        proto_wr_uint(buf, PROTO_K_FENCE_PEERS);
        proto_wr_bin(buf, req->peers.ptr, req->peers.len);
    }
    if (req->label.len > 0) {
        proto_wr_uint(buf, PROTO_K_FENCE_LABEL);
        proto_wr_str(buf, req->label.ptr, req->label.len);
    }
    return proto_buf_status(buf);
}

int
proto_fence_req_decode(
    struct proto_rd *body, struct proto_fence_req *out, const char **why)
{
    static const enum proto_vt vts[]
        = { PROTO_VT_UINT, PROTO_VT_BOOL, PROTO_VT_BIN, PROTO_VT_STR };
    struct proto_val v[4];
    struct proto_rd  rd = *body;
    uint32_t         seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(
        &rd, vts, 4, PROTO_BIT(PROTO_K_FENCE_MS), v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (v[0].u > PROTO_FENCE_MS_MAX) {
        return proto_fail(
            why, MRD_EPROTO, "fence lasts longer than PROTO_FENCE_MS_MAX");
    }
    rv = proto_fence_peers_check(v[2].s, why);
    if (rv == MRD_OK) {
        rv = proto_text_check(&proto_rule_fence_label, v[3].s, why);
    }
    if (rv != MRD_OK) {
        return rv;
    }
    out->ms      = v[0].u;
    out->clients = v[1].b;
    out->peers   = v[2].s;
    out->label   = v[3].s;
    *body        = rd;
    return MRD_OK;
}

int
proto_digest_req_encode(
    struct proto_buf *buf, const struct proto_digest_req *req)
{
    if (req->has_cut
        && ((req->cut.len > 0 && req->cut.ptr == NULL)
            || proto_vv_check(req->cut, NULL) != MRD_OK)) {
        return MRD_EINVAL;
    }
    proto_request_begin(buf, PROTO_T_DIGEST);
    proto_wr_map(buf, req->has_cut ? 2 : 1);
    proto_wr_uint(buf, PROTO_K_DIGEST_SHARD);
    proto_wr_uint(buf, req->shard);
    if (req->has_cut) {
        proto_wr_uint(buf, PROTO_K_DIGEST_CUT);
        proto_wr_bin(buf, req->cut.ptr, req->cut.len);
    }
    return proto_buf_status(buf);
}

int
proto_digest_req_decode(
    struct proto_rd *body, struct proto_digest_req *out, const char **why)
{
    static const enum proto_vt vts[] = { PROTO_VT_U32, PROTO_VT_BIN };
    struct proto_val           v[2];
    struct proto_rd            rd = *body;
    uint32_t                   seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(
        &rd, vts, 2, PROTO_BIT(PROTO_K_DIGEST_SHARD), v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if ((seen & PROTO_BIT(PROTO_K_DIGEST_CUT)) != 0) {
        rv = proto_vv_check(v[1].s, why);
        if (rv != MRD_OK) {
            return rv;
        }
        out->has_cut = true;
        out->cut     = v[1].s;
    }
    out->shard = (uint32_t) v[0].u;
    *body      = rd;
    return MRD_OK;
}

void
proto_digest_rep_encode(
    struct proto_buf *buf, const struct proto_digest_rep *rep)
{
    MRD_ASSERT(proto_vv_check(rep->vv, NULL) == MRD_OK);
    proto_reply_begin(buf, PROTO_T_DIGEST, MRD_OK);
    proto_wr_map(buf, 3);
    proto_wr_uint(buf, PROTO_K_DIGEST_EVENTS);
    proto_wr_uint(buf, rep->events);
    proto_wr_uint(buf, PROTO_K_DIGEST_SUM);
    proto_wr_bin(buf, rep->sum, sizeof rep->sum);
    proto_wr_uint(buf, PROTO_K_DIGEST_VV);
    proto_wr_bin(buf, rep->vv.ptr, rep->vv.len);
}

int
proto_digest_rep_decode(
    struct proto_rd *body, struct proto_digest_rep *out, const char **why)
{
    static const enum proto_vt vts[]
        = { PROTO_VT_UINT, PROTO_VT_BIN, PROTO_VT_BIN };
    struct proto_val v[3];
    struct proto_rd  rd = *body;
    uint32_t         seen;

    memset(out, 0, sizeof *out);
    int rv = proto_flat_decode(&rd, vts, 3, PROTO_KEYS_ALL(3), v, &seen, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (v[1].s.len != PROTO_DIGEST_SUM_SIZE) {
        return proto_fail(
            why, MRD_EPROTO, "digest is not PROTO_DIGEST_SUM_SIZE bytes");
    }
    rv = proto_vv_check(v[2].s, why);
    if (rv != MRD_OK) {
        return rv;
    }
    out->events = v[0].u;
    memcpy(out->sum, v[1].s.ptr, PROTO_DIGEST_SUM_SIZE);
    out->vv = v[2].s;
    *body   = rd;
    return MRD_OK;
}
