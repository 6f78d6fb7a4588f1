/*
 * wr.c: the capped output buffer and the msgpack writer on top of it.
 *
 * Encoding is msgpack-c's packer; all we add is where the bytes go. A
 * proto_buf grows by doubling but never past cap_max, the frame size limit
 * of whoever sends the frame, so an encoder can never build a frame the
 * other side would refuse for its size, nor eat memory without bound. Errors
 * are sticky (like a poisoned LMDB transaction): once an append fails, every
 * later one fails too, so an encoder writes a whole message without checking
 * each call and looks at proto_buf_status() once at the end. A frame that
 * failed half-way is never sent, because its status says so.
 */
#include "proto.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

/* First allocation: most frames (requests, small replies) fit. */
#define PROTO_BUF_CAP_MIN 256u

void
proto_buf_init(struct proto_buf *buf, size_t cap_max)
{
    memset(buf, 0, sizeof *buf);
    buf->cap_max = cap_max;
}

void
proto_buf_reset(struct proto_buf *buf)
{
    buf->len      = 0;
    buf->overflow = false;
    buf->nomem    = false;
}

void
proto_buf_fini(struct proto_buf *buf)
{
    free(buf->data);
    memset(buf, 0, sizeof *buf);
}

int
proto_buf_status(const struct proto_buf *buf)
{
    if (buf->overflow) {
        return MRD_ETOOBIG;
    }
    return buf->nomem ? MRD_ENOMEM : MRD_OK;
}

/* Grows the allocation to hold `need` bytes: doubling, so a message costs
 * O(log n) reallocs, but clamped to cap_max. need <= cap_max here. */
static int
proto_buf_grow(struct proto_buf *buf, size_t need)
{
    size_t cap = buf->cap > 0 ? buf->cap : PROTO_BUF_CAP_MIN;

    while (cap < need) {
        cap = cap > buf->cap_max / 2 ? buf->cap_max : cap * 2;
    }
    if (cap > buf->cap_max) {
        cap = buf->cap_max;
    }
    uint8_t *data = realloc(buf->data, cap);
    if (data == NULL) {
        buf->nomem = true;
        return MRD_ENOMEM;
    }
    buf->data = data;
    buf->cap  = cap;
    return MRD_OK;
}

int
proto_buf_append(struct proto_buf *buf, const void *data, size_t len)
{
    int rv = proto_buf_status(buf);
    if (rv != MRD_OK) {
        return rv;
    }
    MRD_ASSERT(buf->len <= buf->cap_max);
    if (len > buf->cap_max - buf->len) {
        buf->overflow = true;
        return MRD_ETOOBIG;
    }
    if (len > buf->cap - buf->len) {
        rv = proto_buf_grow(buf, buf->len + len);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    if (len > 0) {
        memcpy(buf->data + buf->len, data, len);
        buf->len += len;
    }
    return MRD_OK;
}

/* msgpack-c's write callback: 0 on success, as it expects. */
static int
proto_buf_write_cb(void *data, const char *p, size_t len)
{
    return proto_buf_append(data, p, len) == MRD_OK ? 0 : -1;
}

static void
proto_wr_packer(struct proto_buf *buf, msgpack_packer *pk)
{
    msgpack_packer_init(pk, buf, proto_buf_write_cb);
}

/* The packer's own return values are ignored on purpose throughout: the
 * first failure is recorded in buf and poisons it. */

void
proto_wr_array(struct proto_buf *buf, uint32_t n)
{
    msgpack_packer pk;
    proto_wr_packer(buf, &pk);
    (void) msgpack_pack_array(&pk, n);
}

void
proto_wr_map(struct proto_buf *buf, uint32_t n)
{
    msgpack_packer pk;
    proto_wr_packer(buf, &pk);
    (void) msgpack_pack_map(&pk, n);
}

void
proto_wr_uint(struct proto_buf *buf, uint64_t v)
{
    msgpack_packer pk;
    proto_wr_packer(buf, &pk);
    (void) msgpack_pack_uint64(&pk, v);
}

void
proto_wr_int(struct proto_buf *buf, int64_t v)
{
    msgpack_packer pk;
    proto_wr_packer(buf, &pk);
    (void) msgpack_pack_int64(&pk, v);
}

void
proto_wr_bool(struct proto_buf *buf, bool v)
{
    msgpack_packer pk;
    proto_wr_packer(buf, &pk);
    if (v) {
        (void) msgpack_pack_true(&pk);
    } else {
        (void) msgpack_pack_false(&pk);
    }
}

/* msgpack lengths are 32-bit: a longer string cannot be written at all, so
 * it counts as going over the cap. */
static bool
proto_wr_len_ok(struct proto_buf *buf, size_t len)
{
    if (len > UINT32_MAX) {
        if (proto_buf_status(buf) == MRD_OK) {
            buf->overflow = true;
        }
        return false;
    }
    return true;
}

void
proto_wr_str(struct proto_buf *buf, const char *s, size_t len)
{
    msgpack_packer pk;
    if (!proto_wr_len_ok(buf, len)) {
        return;
    }
    proto_wr_packer(buf, &pk);
    (void) msgpack_pack_str(&pk, len);
    (void) msgpack_pack_str_body(&pk, s, len);
}

void
proto_wr_bin(struct proto_buf *buf, const void *p, size_t len)
{
    msgpack_packer pk;
    if (!proto_wr_len_ok(buf, len)) {
        return;
    }
    proto_wr_packer(buf, &pk);
    (void) msgpack_pack_bin(&pk, len);
    (void) msgpack_pack_bin_body(&pk, p, len);
}

void
proto_wr_nil(struct proto_buf *buf)
{
    msgpack_packer pk;
    proto_wr_packer(buf, &pk);
    (void) msgpack_pack_nil(&pk);
}

void
proto_wr_packer_init(struct proto_buf *buf, struct msgpack_packer *pk)
{
    proto_wr_packer(buf, pk);
}

void
proto_wr_raw(struct proto_buf *buf, const void *p, size_t len)
{
    int rv = proto_buf_append(buf, p, len);
    (void) rv; /* sticky in buf, like every write */
}
