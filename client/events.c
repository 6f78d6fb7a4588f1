/*
 * events.c: stream reads, shard log reads and the mrd_events they return.
 *
 * A batch is one allocation: the mrd_events header, then the mrd_event
 * array, then every meta entry, then every string and data blob, each
 * NUL-terminated. Each record is verified and decoded once, into a scratch
 * array of views that also adds up exact sizes; then everything is copied
 * into the arena. An exact arena beats an upper bound (meta entries at
 * MRD_META_ENTRIES_MAX per event would reserve ~512 bytes per event for
 * nothing), and decoding once halves the checksum work of a scan. A record
 * whose checksum fails fails the whole read with MRD_ECORRUPT; one that does
 * not decode fails the attempt (MRD_EPROTO) and the read is retried, on the
 * next node when there is one.
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>

struct mrd_events {
    mrd_event *items;
    size_t     count;
    uint64_t   next;
    int64_t    version;
    int        end; /* see mrd_events_end() */
    uint64_t   node; /* cursor reads: the node whose positions these are */
};

/* Exact arena sizes for one reply. */
struct client_arena_size {
    size_t meta_count;
    size_t bytes;
};

/* The byte cursor of the arena's string area. */
struct client_arena {
    char *p;
    char *end;
};

static const char *
client_arena_str(struct client_arena *arena, struct proto_str s)
{
    char *out = arena->p;

    MRD_ASSERT((size_t) (arena->end - arena->p) >= (size_t) s.len + 1);
    if (s.len > 0) {
        memcpy(out, s.ptr, s.len);
    }
    out[s.len] = '\0';
    arena->p += (size_t) s.len + 1;
    return out;
}

/* Bytes one record needs in the arena, NULs included, and its meta count.
 * The record must have decoded. */
static MRD_MUST_USE int
client_record_size(const struct proto_record *r, struct client_arena_size *sz)
{
    struct proto_rd  rd;
    struct proto_str key;
    struct proto_str value;
    int              rv;

    sz->bytes += (size_t) r->stream.len + r->type.len + r->content_type.len
        + r->data.len + r->correlation.len + r->causation.len + 6;
    proto_meta_begin(&r->meta_raw, &rd);
    for (;;) {
        rv = proto_meta_next(&rd, &key, &value);
        if (rv == MRD_ENOTFOUND) {
            return MRD_OK;
        }
        if (rv != MRD_OK) {
            return MRD_EPROTO;
        }
        sz->meta_count++;
        sz->bytes += (size_t) key.len + value.len + 2;
    }
}

/* Decodes one record: MRD_ECORRUPT (checksum, final) or MRD_EPROTO. */
static MRD_MUST_USE int
client_record_decode(struct proto_str rec, struct proto_record *r)
{
    const char *why = NULL;
    int         rv  = proto_record_decode(rec.ptr, rec.len, r, &why);

    if (rv == MRD_OK || rv == MRD_ECORRUPT) {
        return rv;
    }
    return MRD_EPROTO;
}

/* One decoded reply item, kept between the two passes so each record is
 * verified and decoded once. */
struct client_item {
    struct proto_record r;
    uint64_t            position;
    uint64_t            log_seq;
};

/* Pass one: verify and decode every record, and size the arena. */
static MRD_MUST_USE int
client_events_measure(const struct proto_events_rep *rep,
    struct client_item *items, struct client_arena_size *sz)
{
    struct proto_rd  rd;
    struct proto_str rec;
    int              rv;

    proto_events_rep_begin(rep, &rd);
    for (uint32_t i = 0; i < rep->count; i++) {
        struct client_item *it = &items[i];
        rv = proto_events_rep_next(&rd, &it->position, &it->log_seq, &rec);
        if (rv != MRD_OK) {
            return MRD_EPROTO; /* fewer items than the count said */
        }
        rv = client_record_decode(rec, &it->r);
        if (rv == MRD_OK) {
            rv = client_record_size(&it->r, sz);
        }
        if (rv != MRD_OK) {
            return rv;
        }
    }
    return MRD_OK;
}

/* Copies one decoded record into ev, strings and meta into the arena. */
static void
client_event_fill(mrd_event *ev, const struct proto_record *r,
    mrd_meta_entry **meta, struct client_arena *arena)
{
    struct proto_rd  rd;
    struct proto_str key;
    struct proto_str value;

    ev->dot.origin     = r->origin;
    ev->dot.seq        = r->seq;
    ev->hlc            = r->hlc;
    ev->stream         = client_arena_str(arena, r->stream);
    ev->type           = client_arena_str(arena, r->type);
    ev->content_type   = client_arena_str(arena, r->content_type);
    ev->data           = client_arena_str(arena, r->data);
    ev->data_size      = r->data.len;
    ev->correlation_id = client_arena_str(arena, r->correlation);
    ev->causation_id   = client_arena_str(arena, r->causation);
    ev->meta           = NULL;
    ev->meta_count     = 0;
    proto_meta_begin(&r->meta_raw, &rd);
    /* Pass one proved every entry decodes. */
    while (proto_meta_next(&rd, &key, &value) == MRD_OK) {
        mrd_meta_entry *m = &(*meta)[ev->meta_count];
        m->key            = client_arena_str(arena, key);
        m->value          = client_arena_str(arena, value);
        ev->meta_count++;
    }
    if (ev->meta_count > 0) {
        ev->meta = *meta;
        *meta += ev->meta_count;
    }
}

/* Pass two: copy the decoded records into the batch. */
static void
client_events_fill(const struct client_item *items, uint32_t count,
    mrd_events *events, mrd_meta_entry *meta, struct client_arena *arena)
{
    for (uint32_t i = 0; i < count; i++) {
        mrd_event *ev = &events->items[i];
        ev->position  = items[i].position;
        ev->log_seq   = items[i].log_seq;
        client_event_fill(ev, &items[i].r, &meta, arena);
    }
    events->count = count;
}

/* Allocates a batch for sz and rep, with items, meta and arena laid out.
 * Alignment holds because each area's element size is a multiple of the
 * next one's alignment (8, 8, then bytes). */
static mrd_events *
client_events_alloc(const struct proto_events_rep *rep,
    const struct client_arena_size *sz, mrd_meta_entry **meta,
    struct client_arena *arena)
{
    size_t      items_size = (size_t) rep->count * sizeof(mrd_event);
    size_t      meta_size  = sz->meta_count * sizeof(mrd_meta_entry);
    size_t      total = sizeof(mrd_events) + items_size + meta_size + sz->bytes;
    char       *base  = malloc(total);
    mrd_events *events;

    if (base == NULL) {
        return NULL;
    }
    events        = (mrd_events *) (void *) base;
    events->items = (mrd_event *) (void *) (base + sizeof(mrd_events));
    events->count = 0;
    *meta
        = (mrd_meta_entry *) (void *) (base + sizeof(mrd_events) + items_size);
    arena->p   = base + sizeof(mrd_events) + items_size + meta_size;
    arena->end = base + total;
    return events;
}

/* True when a stream read got to the end of the stream in its direction:
 * forward, its last event is the stream's last (or it got none); backward,
 * it reached position 0 (or got none). */
static int
client_events_at_end(const mrd_events *events, int direction)
{
    if (events->count == 0) {
        return 1;
    }
    uint64_t last = events->items[events->count - 1].position;
    if (direction == MRD_BACKWARD) {
        return last == 0;
    }
    return events->version >= 0 && last >= (uint64_t) events->version;
}

/* The decoder of READ and READ_LOG replies. */
static MRD_MUST_USE int
client_events_decode(struct client_call *call, struct proto_rd *body)
{
    struct proto_events_rep  rep;
    struct client_arena_size sz = { 0, 0 };
    struct client_arena      arena;
    mrd_meta_entry          *meta = NULL;
    mrd_events              *events;
    const char              *why = NULL;
    int                      rv;

    if (proto_events_rep_decode(body, call->type, &rep, &why) != MRD_OK) {
        return MRD_EPROTO;
    }
    if (rep.count > call->count_max) {
        return MRD_EPROTO; /* more than we asked for */
    }
    /* count <= MRD_READ_COUNT_MAX: the scratch array is bounded. */
    struct client_item *items
        = malloc((rep.count > 0 ? rep.count : 1) * sizeof(struct client_item));
    if (items == NULL) {
        return MRD_ENOMEM;
    }
    rv = client_events_measure(&rep, items, &sz);
    if (rv != MRD_OK) {
        free(items);
        return rv;
    }
    events = client_events_alloc(&rep, &sz, &meta, &arena);
    if (events == NULL) {
        free(items);
        return MRD_ENOMEM;
    }
    client_events_fill(items, rep.count, events, meta, &arena);
    free(items);
    MRD_ASSERT(arena.p == arena.end);
    if (call->type == PROTO_T_READ && call->cursor_read) {
        if (rep.node == 0) {
            mrd_events_free(events);
            return MRD_EPROTO; /* positions of an unknown node */
        }
        /* A cursor read skips covered events: it is at the end when the
         * node examined the stream up to its last event. */
        events->next    = rep.next;
        events->version = rep.version;
        events->node    = rep.node;
        events->end     = rep.version < 0 || rep.next > (uint64_t) rep.version;
    } else if (call->type == PROTO_T_READ) {
        events->next    = rep.next; /* the node knows where its reads end */
        events->version = rep.version;
        events->end     = client_events_at_end(events, call->direction);
    } else {
        /* LAST_SEQ is the end of the whole log, not of this page: the
         * next page starts after the last item returned. */
        events->next    = events->count > 0
               ? events->items[events->count - 1].log_seq
               : call->from;
        events->version = MRD_VERSION_NONE;
        events->end     = events->count < call->count_max;
    }
    call->events = events;
    return MRD_OK;
}

/* ------------------------------------------------------------- reads -- */

int
client_read_run(struct mrd_client *client, const struct client_read_args *args,
    struct client_cancel *cancel, mrd_events **events_out)
{
    struct client_call   *call = NULL;
    struct proto_read_req req;
    int                   rv;

    MRD_ASSERT(args->count_max > 0 && args->count_max <= MRD_READ_COUNT_MAX);
    MRD_ASSERT(args->wait_ms <= MRD_WAIT_MS_MAX);
    *events_out = NULL;
    rv          = client_call_get(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    memset(&req, 0, sizeof req);
    req.stream.ptr = args->stream;
    req.stream.len = (uint32_t) args->stream_len;
    req.from       = args->from;
    req.direction  = (uint32_t) args->direction;
    req.count      = args->count_max;
    req.wait_ms    = args->wait_ms;
    if (args->has_cursor) {
        req.has_cursor = true;
        req.cursor.ptr = args->cursor_bin;
        req.cursor.len = (uint32_t) args->cursor_len;
        req.hint_node  = args->hint_node;
    }
    client_route_stream(call, args->stream, args->stream_len);
    call->cursor_read = args->has_cursor;
    call->type        = PROTO_T_READ;
    call->decode      = client_events_decode;
    call->wait_ms     = args->wait_ms;
    call->count_max   = args->count_max;
    call->from        = args->from;
    call->direction   = args->direction;
    rv                = client_call_exec(
                       call, proto_read_req_encode(&call->req, &req), cancel);
    if (rv != MRD_OK) {
        return rv;
    }
    *events_out  = call->events;
    call->events = NULL;
    client_call_put(call);
    return MRD_OK;
}

/* Checks what mrd_read() and mrd_read_wait() share. */
static MRD_MUST_USE int
client_read_check(mrd_client *client, const char *stream, uint32_t count_max,
    mrd_events **events_out, struct client_read_args *args)
{
    if (events_out != NULL) {
        *events_out = NULL;
    }
    if (client == NULL || stream == NULL || events_out == NULL
        || count_max == 0) {
        return MRD_EINVAL;
    }
    memset(args, 0, sizeof *args);
    args->stream     = stream;
    args->stream_len = strnlen(stream, MRD_STREAM_NAME_SIZE_MAX + 1);
    /* "Up to count_max": a larger ask is served as the largest read. */
    args->count_max
        = count_max < MRD_READ_COUNT_MAX ? count_max : MRD_READ_COUNT_MAX;
    return mrd_stream_name_check(stream, args->stream_len);
}

int
mrd_read(mrd_client *client, const char *stream, uint64_t from, int direction,
    uint32_t count_max, mrd_events **events_out)
{
    struct client_read_args args;
    int rv = client_read_check(client, stream, count_max, events_out, &args);

    if (rv != MRD_OK) {
        return rv;
    }
    if (direction != MRD_FORWARD && direction != MRD_BACKWARD) {
        return MRD_EINVAL;
    }
    args.from      = from;
    args.direction = direction;
    return client_read_run(client, &args, NULL, events_out);
}

int
mrd_read_wait(mrd_client *client, const char *stream, uint64_t from,
    uint32_t count_max, uint32_t wait_ms, mrd_events **events_out)
{
    struct client_read_args args;
    int rv = client_read_check(client, stream, count_max, events_out, &args);

    if (rv != MRD_OK) {
        return rv;
    }
    if (wait_ms > MRD_WAIT_MS_MAX) {
        return MRD_EINVAL;
    }
    args.from      = from;
    args.direction = MRD_FORWARD;
    args.wait_ms   = wait_ms;
    return client_read_run(client, &args, NULL, events_out);
}

int
mrd_read_cursor(mrd_client *client, const char *stream, mrd_cursor *cursor,
    uint32_t count_max, uint32_t wait_ms, mrd_events **events_out)
{
    struct client_read_args args;
    uint8_t                *bin = NULL;
    size_t                  len = 0;
    mrd_events             *events;
    int rv = client_read_check(client, stream, count_max, events_out, &args);

    if (rv != MRD_OK) {
        return rv;
    }
    if (cursor == NULL || wait_ms > MRD_WAIT_MS_MAX) {
        return MRD_EINVAL;
    }
    rv = client_cursor_bin(cursor, &bin, &len);
    if (rv != MRD_OK) {
        return rv;
    }
    client_cursor_hint(
        cursor, stream, args.stream_len, &args.hint_node, &args.from);
    args.direction  = MRD_FORWARD;
    args.wait_ms    = wait_ms;
    args.has_cursor = true;
    args.cursor_bin = bin;
    args.cursor_len = len;
    rv              = client_read_run(client, &args, NULL, &events);
    free(bin);
    if (rv != MRD_OK) {
        return rv;
    }
    if (!client_cursor_room(cursor, events)) {
        mrd_events_free(events);
        return MRD_EFULL; /* nothing delivered, the cursor unchanged */
    }
    /* The batch is the caller's now: the cursor moves over all of it. */
    for (size_t i = 0; i < events->count; i++) {
        rv = client_cursor_deliver(
            cursor, stream, args.stream_len, events, &events->items[i]);
        if (rv != MRD_OK) {
            mrd_events_free(events);
            return rv;
        }
    }
    client_cursor_batch_done(cursor, stream, args.stream_len, events);
    *events_out = events;
    return MRD_OK;
}

uint64_t
client_events_node(const mrd_events *events)
{
    return events->node;
}

int
mrd_read_log(mrd_client *client, uint32_t shard, uint64_t after_seq,
    uint32_t count_max, mrd_events **events_out)
{
    struct client_call  *call = NULL;
    struct proto_log_req req;
    int                  rv;

    if (events_out != NULL) {
        *events_out = NULL;
    }
    if (client == NULL || events_out == NULL || count_max == 0) {
        return MRD_EINVAL;
    }
    rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    req.shard = shard;
    req.after = after_seq;
    req.count = count_max < MRD_READ_COUNT_MAX ? count_max : MRD_READ_COUNT_MAX;
    call->type      = PROTO_T_READ_LOG;
    call->decode    = client_events_decode;
    call->count_max = req.count;
    call->from      = after_seq;
    rv = client_call_exec(call, proto_log_req_encode(&call->req, &req), NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    *events_out  = call->events;
    call->events = NULL;
    client_call_put(call);
    return MRD_OK;
}

/* --------------------------------------------------------- accessors -- */

size_t
mrd_events_count(const mrd_events *events)
{
    return events == NULL ? 0 : events->count;
}

const mrd_event *
mrd_events_at(const mrd_events *events, size_t index)
{
    if (events == NULL || index >= events->count) {
        return NULL;
    }
    return &events->items[index];
}

uint64_t
mrd_events_next(const mrd_events *events)
{
    return events == NULL ? 0 : events->next;
}

int
mrd_events_end(const mrd_events *events)
{
    return events == NULL ? 1 : events->end;
}

int64_t
mrd_events_version(const mrd_events *events)
{
    return events == NULL ? MRD_VERSION_NONE : events->version;
}

void
mrd_events_free(mrd_events *events)
{
    free(events); /* one allocation holds everything */
}
