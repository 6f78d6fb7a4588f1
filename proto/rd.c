/*
 * rd.c: the bounded msgpack reader and the frame walker.
 *
 * Every byte here comes from a peer, a client or the disk, so nothing is
 * trusted: each value's header is decoded by proto_rd_peek(), which checks the
 * header itself and every declared length against the bytes left before
 * anyone moves. A container's element count is checked too, against the bytes
 * left (each element needs at least one byte), so a 5-byte frame that claims
 * four billion elements is refused at once instead of being iterated. Readers
 * work on a copy and write the cursor back only on success, so a failed read
 * leaves the reader where it was. Nothing here allocates or recurses: nested
 * values are walked with a fixed stack of PROTO_DEPTH_MAX counters.
 */
#include "proto.h"

#include <string.h>

/* What one msgpack value is, as far as its header tells. */
enum proto_kind {
    PROTO_KIND_BAD = 0, /* 0xc1, never used by msgpack */
    PROTO_KIND_NIL,
    PROTO_KIND_BOOL,
    PROTO_KIND_UINT,
    PROTO_KIND_INT, /* a signed format; the value may still be >= 0 */
    PROTO_KIND_FLOAT,
    PROTO_KIND_STR,
    PROTO_KIND_BIN,
    PROTO_KIND_EXT,
    PROTO_KIND_ARRAY,
    PROTO_KIND_MAP,
};

/* The header of one value: its kind, how many bytes the header and the
 * payload take (children of containers excluded), and its number. */
struct proto_item {
    enum proto_kind kind;
    size_t          skip; /* header + payload bytes */
    uint64_t        n; /* uint value, length, or element count */
    int64_t         i; /* value of the signed formats */
    bool            b;
};

/* Formats 0xc0..0xdf: the width of the big-endian number after the tag
 * (value, length or count), bytes after that number (the ext type), and the
 * fixed payload of floats and fixext. */
struct proto_fmt {
    uint8_t kind;
    uint8_t field;
    uint8_t extra;
    uint8_t fixed;
};

static const struct proto_fmt proto_fmts[32] = {
    [0x00] = { PROTO_KIND_NIL, 0, 0, 0 },
    [0x01] = { PROTO_KIND_BAD, 0, 0, 0 },
    [0x02] = { PROTO_KIND_BOOL, 0, 0, 0 },
    [0x03] = { PROTO_KIND_BOOL, 0, 0, 0 },
    [0x04] = { PROTO_KIND_BIN, 1, 0, 0 },
    [0x05] = { PROTO_KIND_BIN, 2, 0, 0 },
    [0x06] = { PROTO_KIND_BIN, 4, 0, 0 },
    [0x07] = { PROTO_KIND_EXT, 1, 1, 0 },
    [0x08] = { PROTO_KIND_EXT, 2, 1, 0 },
    [0x09] = { PROTO_KIND_EXT, 4, 1, 0 },
    [0x0a] = { PROTO_KIND_FLOAT, 0, 0, 4 },
    [0x0b] = { PROTO_KIND_FLOAT, 0, 0, 8 },
    [0x0c] = { PROTO_KIND_UINT, 1, 0, 0 },
    [0x0d] = { PROTO_KIND_UINT, 2, 0, 0 },
    [0x0e] = { PROTO_KIND_UINT, 4, 0, 0 },
    [0x0f] = { PROTO_KIND_UINT, 8, 0, 0 },
    [0x10] = { PROTO_KIND_INT, 1, 0, 0 },
    [0x11] = { PROTO_KIND_INT, 2, 0, 0 },
    [0x12] = { PROTO_KIND_INT, 4, 0, 0 },
    [0x13] = { PROTO_KIND_INT, 8, 0, 0 },
    [0x14] = { PROTO_KIND_EXT, 0, 1, 1 },
    [0x15] = { PROTO_KIND_EXT, 0, 1, 2 },
    [0x16] = { PROTO_KIND_EXT, 0, 1, 4 },
    [0x17] = { PROTO_KIND_EXT, 0, 1, 8 },
    [0x18] = { PROTO_KIND_EXT, 0, 1, 16 },
    [0x19] = { PROTO_KIND_STR, 1, 0, 0 },
    [0x1a] = { PROTO_KIND_STR, 2, 0, 0 },
    [0x1b] = { PROTO_KIND_STR, 4, 0, 0 },
    [0x1c] = { PROTO_KIND_ARRAY, 2, 0, 0 },
    [0x1d] = { PROTO_KIND_ARRAY, 4, 0, 0 },
    [0x1e] = { PROTO_KIND_MAP, 2, 0, 0 },
    [0x1f] = { PROTO_KIND_MAP, 4, 0, 0 },
};

/* Big-endian number of width 0, 1, 2, 4 or 8 bytes. */
static uint64_t
proto_be_get(const uint8_t *p, unsigned width)
{
    uint64_t v = 0;
    for (unsigned k = 0; k < width; k++) {
        v = (v << 8) | p[k];
    }
    return v;
}

/* Signed value of the int8..int64 formats: the two's complement of v in
 * `width` bytes. Done arithmetically so no implementation-defined
 * conversion is involved. */
static int64_t
proto_int_get(uint64_t v, unsigned width)
{
    if (width == 8) {
        if (v <= (uint64_t) INT64_MAX) {
            return (int64_t) v;
        }
        return -(int64_t) (~v) - 1;
    }
    uint64_t half = (uint64_t) 1 << (width * 8 - 1);
    if (v < half) {
        return (int64_t) v;
    }
    return (int64_t) v - (int64_t) (half * 2);
}

/* Decodes the header of the value at rd->p for the short formats whose
 * whole meaning is in the first byte. Returns false for 0xc0..0xdf. */
static bool
proto_peek_fix(uint8_t c, struct proto_item *it)
{
    it->skip = 1;
    if (c <= 0x7f) {
        it->kind = PROTO_KIND_UINT;
        it->n    = c;
    } else if (c <= 0x8f) {
        it->kind = PROTO_KIND_MAP;
        it->n    = c & 0x0fu;
    } else if (c <= 0x9f) {
        it->kind = PROTO_KIND_ARRAY;
        it->n    = c & 0x0fu;
    } else if (c <= 0xbf) {
        it->kind = PROTO_KIND_STR;
        it->n    = c & 0x1fu;
    } else if (c >= 0xe0) {
        it->kind = PROTO_KIND_INT;
        it->i    = (int64_t) c - 256;
    } else {
        return false;
    }
    return true;
}

/* Decodes the header of the next value and checks that its payload, or for
 * a container its element count, fits in the bytes left. Moves nothing. */
static int
proto_rd_peek(const struct proto_rd *rd, struct proto_item *it)
{
    MRD_ASSERT(rd->p <= rd->end);
    size_t left = (size_t) (rd->end - rd->p);

    memset(it, 0, sizeof *it);
    if (left == 0) {
        return MRD_EPROTO;
    }
    uint8_t c = rd->p[0];
    if (!proto_peek_fix(c, it)) {
        const struct proto_fmt *f    = &proto_fmts[c - 0xc0];
        size_t                  head = 1u + f->field + f->extra;

        if (f->kind == PROTO_KIND_BAD || left < head) {
            return MRD_EPROTO;
        }
        it->kind = (enum proto_kind) f->kind;
        it->skip = head;
        it->n    = proto_be_get(rd->p + 1, f->field) + f->fixed;
        it->b    = c == 0xc3;
        if (it->kind == PROTO_KIND_INT) {
            it->i = proto_int_get(it->n, f->field);
        }
    }
    left -= it->skip;
    switch (it->kind) {
    case PROTO_KIND_STR:
    case PROTO_KIND_BIN:
    case PROTO_KIND_EXT:
    case PROTO_KIND_FLOAT:
        if (it->n > left) {
            return MRD_EPROTO;
        }
        it->skip += (size_t) it->n;
        break;
    case PROTO_KIND_ARRAY:
        /* Every element takes at least one byte. */
        return it->n <= left ? MRD_OK : MRD_EPROTO;
    case PROTO_KIND_MAP:
        return it->n * 2 <= left ? MRD_OK : MRD_EPROTO;
    case PROTO_KIND_BAD:
    case PROTO_KIND_NIL:
    case PROTO_KIND_BOOL:
    case PROTO_KIND_UINT:
    case PROTO_KIND_INT:
        break;
    }
    return MRD_OK;
}

void
proto_rd_init(struct proto_rd *rd, const void *buf, size_t len)
{
    rd->p = buf;
    /* NULL + 0 is undefined behaviour, even though it moves nothing. */
    rd->end = len == 0 ? rd->p : rd->p + len;
}

bool
proto_rd_done(const struct proto_rd *rd)
{
    return rd->p == rd->end;
}

/* Reads the header of a value of the given kind and moves past it. */
static int
proto_rd_kind(struct proto_rd *rd, enum proto_kind kind, struct proto_item *it)
{
    if (proto_rd_peek(rd, it) != MRD_OK || it->kind != kind) {
        return MRD_EPROTO;
    }
    rd->p += it->skip;
    return MRD_OK;
}

int
proto_rd_array(struct proto_rd *rd, uint32_t *count_out)
{
    struct proto_item it;
    int               rv = proto_rd_kind(rd, PROTO_KIND_ARRAY, &it);
    if (rv == MRD_OK) {
        *count_out = (uint32_t) it.n;
    }
    return rv;
}

int
proto_rd_map(struct proto_rd *rd, uint32_t *count_out)
{
    struct proto_item it;
    int               rv = proto_rd_kind(rd, PROTO_KIND_MAP, &it);
    if (rv == MRD_OK) {
        *count_out = (uint32_t) it.n;
    }
    return rv;
}

/* The payload of a str or bin sits at the end of what skip covers. */
static int
proto_rd_bytes(struct proto_rd *rd, enum proto_kind kind, struct proto_str *out)
{
    struct proto_item it;
    const uint8_t    *start = rd->p;
    int               rv    = proto_rd_kind(rd, kind, &it);
    if (rv == MRD_OK) {
        out->len = (uint32_t) it.n;
        out->ptr = (const char *) (start + it.skip - it.n);
    }
    return rv;
}

int
proto_rd_str(struct proto_rd *rd, struct proto_str *out)
{
    return proto_rd_bytes(rd, PROTO_KIND_STR, out);
}

int
proto_rd_bin(struct proto_rd *rd, struct proto_str *out)
{
    return proto_rd_bytes(rd, PROTO_KIND_BIN, out);
}

int
proto_rd_uint(struct proto_rd *rd, uint64_t *out)
{
    struct proto_item it;

    if (proto_rd_peek(rd, &it) != MRD_OK) {
        return MRD_EPROTO;
    }
    /* Other writers may put a non-negative number in a signed format. */
    if (it.kind == PROTO_KIND_INT && it.i >= 0) {
        *out = (uint64_t) it.i;
    } else if (it.kind == PROTO_KIND_UINT) {
        *out = it.n;
    } else {
        return MRD_EPROTO;
    }
    rd->p += it.skip;
    return MRD_OK;
}

int
proto_rd_int(struct proto_rd *rd, int64_t *out)
{
    struct proto_item it;

    if (proto_rd_peek(rd, &it) != MRD_OK) {
        return MRD_EPROTO;
    }
    if (it.kind == PROTO_KIND_UINT && it.n <= (uint64_t) INT64_MAX) {
        *out = (int64_t) it.n;
    } else if (it.kind == PROTO_KIND_INT) {
        *out = it.i;
    } else {
        return MRD_EPROTO;
    }
    rd->p += it.skip;
    return MRD_OK;
}

int
proto_rd_bool(struct proto_rd *rd, bool *out)
{
    struct proto_item it;
    int               rv = proto_rd_kind(rd, PROTO_KIND_BOOL, &it);
    if (rv == MRD_OK) {
        *out = it.b;
    }
    return rv;
}

int
proto_rd_nil(struct proto_rd *rd)
{
    struct proto_item it;
    return proto_rd_kind(rd, PROTO_KIND_NIL, &it);
}

/* Moves past exactly one value and everything nested in it. Iterative:
 * left[d] counts the values still to read at nesting level d, and each pass
 * reads one header, so the loop runs at most once per byte. */
static int
proto_rd_values(struct proto_rd *rd, uint32_t depth_max, bool walk)
{
    uint64_t        left[PROTO_DEPTH_MAX + 1];
    uint32_t        depth = 0;
    struct proto_rd cur   = *rd;

    MRD_ASSERT(depth_max <= PROTO_DEPTH_MAX);
    left[0] = 1;
    for (;;) {
        while (depth > 0 && left[depth] == 0) {
            depth--;
        }
        if (left[depth] == 0) {
            break;
        }
        left[depth]--;

        struct proto_item it;
        if (proto_rd_peek(&cur, &it) != MRD_OK) {
            return MRD_EPROTO;
        }
        if (walk && it.kind == PROTO_KIND_EXT) {
            return MRD_EPROTO; /* no message uses them: refuse the surface */
        }
        cur.p += it.skip;
        if (it.kind != PROTO_KIND_ARRAY && it.kind != PROTO_KIND_MAP) {
            continue;
        }
        if (depth >= depth_max || (walk && it.n > PROTO_COUNT_MAX)) {
            return MRD_EPROTO;
        }
        depth++;
        left[depth] = it.kind == PROTO_KIND_MAP ? it.n * 2 : it.n;
    }
    *rd = cur;
    return MRD_OK;
}

int
proto_rd_skip(struct proto_rd *rd, uint32_t depth_max)
{
    /* The counter stack is fixed; nothing we read nests deeper anyway. */
    if (depth_max > PROTO_DEPTH_MAX) {
        depth_max = PROTO_DEPTH_MAX;
    }
    return proto_rd_values(rd, depth_max, false);
}

int
proto_walk(const void *buf, size_t len)
{
    struct proto_rd rd;

    proto_rd_init(&rd, buf, len);
    if (proto_rd_values(&rd, PROTO_DEPTH_MAX, true) != MRD_OK) {
        return MRD_EPROTO;
    }
    /* Trailing bytes would be a second message smuggled behind the first. */
    return proto_rd_done(&rd) ? MRD_OK : MRD_EPROTO;
}
