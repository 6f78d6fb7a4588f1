/*
 * cursor.c: causal cursors, the portable read position.
 *
 * A stream position is local to the node that assigned it: each node
 * appends replicated events in its own (causal) order. A cursor is what
 * survives a move to another node or region: per origin node, the highest
 * seq of the stream's events delivered. Every log keeps each origin's events
 * in that origin's order, so "seq <= cursor[origin]" is exactly "delivered"
 * on every node: a read from a cursor skips those and returns the rest, in
 * the serving node's order, with no gap and no duplicate.
 *
 * A cursor also keeps a hint, (node, position, stream): every event of that
 * stream before that position on that node is covered. The node starts its
 * scan there instead of at 0; any other node ignores it. The hint is only
 * an optimisation: dropping it costs a scan, never an event.
 */
#include "client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mrd_cursor {
    mrd_dot *e; /* sorted by origin, seq >= 1 */
    uint32_t n;
    uint32_t cap;
    uint64_t hint_node; /* 0: no hint */
    uint64_t hint_pos;
    size_t   hint_stream_len;
    char     hint_stream[MRD_STREAM_NAME_SIZE_MAX + 1];
};

int
mrd_cursor_new(mrd_cursor **cursor_out)
{
    if (cursor_out == NULL) {
        return MRD_EINVAL;
    }
    *cursor_out = calloc(1, sizeof(mrd_cursor));
    return *cursor_out != NULL ? MRD_OK : MRD_ENOMEM;
}

void
mrd_cursor_free(mrd_cursor *cursor)
{
    if (cursor != NULL) {
        free(cursor->e);
        free(cursor);
    }
}

int
mrd_cursor_copy(const mrd_cursor *cursor, mrd_cursor **copy_out)
{
    mrd_cursor *c;

    if (copy_out == NULL) {
        return MRD_EINVAL;
    }
    *copy_out = NULL;
    if (cursor == NULL) {
        return MRD_EINVAL;
    }
    c = malloc(sizeof *c);
    if (c == NULL) {
        return MRD_ENOMEM;
    }
    *c   = *cursor;
    c->e = NULL;
    if (cursor->n > 0) {
        c->e = malloc(cursor->n * sizeof(mrd_dot));
        if (c->e == NULL) {
            free(c);
            return MRD_ENOMEM;
        }
        memcpy(c->e, cursor->e, cursor->n * sizeof(mrd_dot));
    }
    c->cap    = cursor->n;
    *copy_out = c;
    return MRD_OK;
}

/* Index of origin's entry, or where it would go. */
static uint32_t
client_cursor_find(const mrd_cursor *c, uint64_t origin)
{
    uint32_t lo = 0, hi = c->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (c->e[mid].origin < origin) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int
mrd_cursor_covers(const mrd_cursor *cursor, mrd_dot dot)
{
    if (cursor == NULL || dot.origin == 0 || dot.seq == 0) {
        return 0;
    }
    uint32_t i = client_cursor_find(cursor, dot.origin);
    return i < cursor->n && cursor->e[i].origin == dot.origin
        && cursor->e[i].seq >= dot.seq;
}

int
mrd_cursor_add(mrd_cursor *cursor, mrd_dot dot)
{
    if (cursor == NULL || dot.origin == 0 || dot.seq == 0) {
        return MRD_EINVAL;
    }
    uint32_t i = client_cursor_find(cursor, dot.origin);
    if (i < cursor->n && cursor->e[i].origin == dot.origin) {
        if (cursor->e[i].seq < dot.seq) {
            cursor->e[i].seq = dot.seq;
        }
        return MRD_OK;
    }
    if (cursor->n == MRD_CURSOR_ORIGINS_MAX) {
        return MRD_EFULL;
    }
    if (cursor->n == cursor->cap) {
        uint32_t cap = cursor->cap == 0 ? 8 : cursor->cap * 2;
        if (cap > MRD_CURSOR_ORIGINS_MAX) {
            cap = MRD_CURSOR_ORIGINS_MAX;
        }
        mrd_dot *e = realloc(cursor->e, cap * sizeof(mrd_dot));
        if (e == NULL) {
            return MRD_ENOMEM;
        }
        cursor->e   = e;
        cursor->cap = cap;
    }
    memmove(
        &cursor->e[i + 1], &cursor->e[i], (cursor->n - i) * sizeof(mrd_dot));
    cursor->e[i] = dot;
    cursor->n++;
    return MRD_OK;
}

bool
client_cursor_room(const mrd_cursor *cursor, const mrd_events *events)
{
    uint32_t added = 0;
    size_t   count = mrd_events_count(events);

    for (size_t i = 0; i < count; i++) {
        const mrd_event *ev = mrd_events_at(events, i);
        uint32_t         at = client_cursor_find(cursor, ev->dot.origin);
        bool has = at < cursor->n && cursor->e[at].origin == ev->dot.origin;
        /* An origin new to the cursor, counted once per batch. */
        for (size_t j = 0; !has && j < i; j++) {
            has = mrd_events_at(events, j)->dot.origin == ev->dot.origin;
        }
        if (!has) {
            added++;
        }
    }
    return cursor->n + added <= MRD_CURSOR_ORIGINS_MAX;
}

size_t
mrd_cursor_origin_count(const mrd_cursor *cursor)
{
    return cursor != NULL ? cursor->n : 0;
}

mrd_dot
mrd_cursor_origin_at(const mrd_cursor *cursor, size_t i)
{
    if (cursor == NULL || i >= cursor->n) {
        return (mrd_dot) { 0, 0 };
    }
    return cursor->e[i];
}

/* ---------------------------------------------------------- the reads -- */

int
client_cursor_bin(const mrd_cursor *cursor, uint8_t **bin_out, size_t *len_out)
{
    *bin_out = NULL;
    *len_out = 0;
    if (cursor->n == 0) {
        return MRD_OK;
    }
    uint8_t *bin = malloc((size_t) cursor->n * PROTO_VV_ENTRY_SIZE);
    if (bin == NULL) {
        return MRD_ENOMEM;
    }
    for (uint32_t i = 0; i < cursor->n; i++) {
        mrd_be64_put(
            bin + (size_t) i * PROTO_VV_ENTRY_SIZE, cursor->e[i].origin);
        mrd_be64_put(
            bin + (size_t) i * PROTO_VV_ENTRY_SIZE + 8, cursor->e[i].seq);
    }
    *bin_out = bin;
    *len_out = (size_t) cursor->n * PROTO_VV_ENTRY_SIZE;
    return MRD_OK;
}

static bool
client_cursor_hint_is(const mrd_cursor *c, const char *stream, size_t len)
{
    return c->hint_node != 0 && c->hint_stream_len == len
        && memcmp(c->hint_stream, stream, len) == 0;
}

static void
client_cursor_hint_set(
    mrd_cursor *c, const char *stream, size_t len, uint64_t node, uint64_t pos)
{
    MRD_ASSERT(len <= MRD_STREAM_NAME_SIZE_MAX);
    c->hint_node       = node;
    c->hint_pos        = pos;
    c->hint_stream_len = len;
    memmove(c->hint_stream, stream, len); /* parse passes hint_stream */
    c->hint_stream[len] = '\0';
}

void
client_cursor_hint(const mrd_cursor *cursor, const char *stream,
    size_t stream_len, uint64_t *node_out, uint64_t *pos_out)
{
    if (client_cursor_hint_is(cursor, stream, stream_len)) {
        *node_out = cursor->hint_node;
        *pos_out  = cursor->hint_pos;
    } else {
        *node_out = 0;
        *pos_out  = 0;
    }
}

int
client_cursor_deliver(mrd_cursor *cursor, const char *stream, size_t stream_len,
    const mrd_events *events, const mrd_event *ev)
{
    int rv = mrd_cursor_add(cursor, ev->dot);
    if (rv != MRD_OK) {
        return rv;
    }
    /* Everything before ev on that node was covered already (skipped) or
     * delivered before it, so the hint may move just past it. */
    client_cursor_hint_set(cursor, stream, stream_len,
        client_events_node(events), ev->position + 1);
    return MRD_OK;
}

void
client_cursor_batch_done(mrd_cursor *cursor, const char *stream,
    size_t stream_len, const mrd_events *events)
{
    client_cursor_hint_set(cursor, stream, stream_len,
        client_events_node(events), mrd_events_next(events));
}

/* ------------------------------------------------------------ as text -- */

/* "1;O:S,O:S;N:P:HEX": format 1, the origins, then the hint (node,
 * position, the stream name in hex) or nothing. Plain ASCII without spaces
 * or quotes, so it passes through shells, URLs and JSON untouched. */

size_t
mrd_cursor_format(const mrd_cursor *cursor, char *buf, size_t size)
{
    char   tmp[48];
    size_t len = 0;

#define CURSOR_PUT(s, n)                                                       \
    do {                                                                       \
        /* Like snprintf: as much as fits before the NUL, byte by byte. */     \
        size_t n_ = (n);                                                       \
        for (size_t i_ = 0; i_ < n_; i_++) {                                   \
            if (len + i_ + 1 < size) {                                         \
                buf[len + i_] = (s)[i_];                                       \
            }                                                                  \
        }                                                                      \
        len += n_;                                                             \
    } while (0)

    if (cursor == NULL) {
        if (size > 0) {
            buf[0] = '\0';
        }
        return 0;
    }
    CURSOR_PUT("1;", 2);
    for (uint32_t i = 0; i < cursor->n; i++) {
        int n = snprintf(tmp, sizeof tmp, "%s%llu:%llu", i > 0 ? "," : "",
            (unsigned long long) cursor->e[i].origin,
            (unsigned long long) cursor->e[i].seq);
        CURSOR_PUT(tmp, (size_t) n);
    }
    CURSOR_PUT(";", 1);
    if (cursor->hint_node != 0) {
        int n = snprintf(tmp, sizeof tmp,
            "%llu:%llu:", (unsigned long long) cursor->hint_node,
            (unsigned long long) cursor->hint_pos);
        CURSOR_PUT(tmp, (size_t) n);
        for (size_t i = 0; i < cursor->hint_stream_len; i++) {
            snprintf(tmp, sizeof tmp, "%02x",
                (unsigned) (unsigned char) cursor->hint_stream[i]);
            CURSOR_PUT(tmp, 2);
        }
    }
#undef CURSOR_PUT
    if (size > 0) {
        buf[len < size ? len : size - 1] = '\0';
    }
    return len;
}

/* Reads a decimal uint64 of at most 20 digits; advances *p. */
static bool
client_cursor_num(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t    v = 0;
    size_t      n = 0;

    while (*s >= '0' && *s <= '9') {
        uint64_t d = (uint64_t) (*s - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
        s++;
        n++;
    }
    if (n == 0 || (n > 1 && **p == '0')) {
        return false; /* empty, or a leading zero: one spelling per value */
    }
    *out = v;
    *p   = s;
    return true;
}

static int
client_hex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

int
mrd_cursor_parse(const char *text, mrd_cursor **cursor_out)
{
    mrd_cursor *c    = NULL;
    const char *p    = text;
    uint64_t    prev = 0;
    int         rv;

    if (cursor_out == NULL) {
        return MRD_EINVAL;
    }
    *cursor_out = NULL;
    if (text == NULL || strncmp(p, "1;", 2) != 0) {
        return MRD_EINVAL;
    }
    p += 2;
    rv = mrd_cursor_new(&c);
    if (rv != MRD_OK) {
        return rv;
    }
    rv = MRD_EINVAL;
    while (*p != ';') {
        mrd_dot d;
        if ((c->n > 0 && *p++ != ',') || !client_cursor_num(&p, &d.origin)
            || *p++ != ':' || !client_cursor_num(&p, &d.seq) || d.origin == 0
            || d.seq == 0 || d.origin <= prev) {
            goto fail; /* origins strictly increasing: one text per cursor */
        }
        prev    = d.origin;
        int arv = mrd_cursor_add(c, d);
        if (arv != MRD_OK) {
            /* More origins than a cursor holds: not a text
             * mrd_cursor_format() made. */
            rv = arv == MRD_EFULL ? MRD_EINVAL : arv;
            goto fail;
        }
    }
    p++;
    if (*p != '\0') {
        uint64_t node, pos;
        size_t   len = 0;
        if (!client_cursor_num(&p, &node) || node == 0 || *p++ != ':'
            || !client_cursor_num(&p, &pos) || *p++ != ':') {
            goto fail;
        }
        while (p[0] != '\0') {
            int hi = client_hex(p[0]), lo = hi < 0 ? -1 : client_hex(p[1]);
            if (lo < 0 || len == MRD_STREAM_NAME_SIZE_MAX) {
                goto fail;
            }
            c->hint_stream[len++] = (char) (hi << 4 | lo);
            p += 2;
        }
        if (mrd_stream_name_check(c->hint_stream, len) != MRD_OK) {
            goto fail;
        }
        client_cursor_hint_set(c, c->hint_stream, len, node, pos);
    }
    *cursor_out = c;
    return MRD_OK;

fail:
    mrd_cursor_free(c);
    return rv;
}
