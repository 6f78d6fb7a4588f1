/*
 * append.c: mrd_append() and mrd_append_async().
 *
 * Both encode the whole request before anything is sent (so the caller's
 * buffers are free once the function returns, and every attempt sends the
 * same bytes) and both run the same call; the blocking one waits for it.
 * Every append carries an idempotency key: the caller's, or 16 random bytes
 * made once per call. That is what makes retrying an append safe: if an
 * attempt's answer is lost, the next attempt either writes (the first never
 * arrived) or gets the stored answer back with replayed set.
 *
 * Ops on the stream's state travel as crdt's encoding of each event's op
 * list (crdt_ops_encode, no deps: the node adds what they observed). The
 * public mrd_op is checked here field by field, so a bad op is MRD_EINVAL
 * or MRD_ETOOBIG before anything is sent, then converted to crdt_op views
 * of the caller's memory and encoded into one scratch buffer, which the
 * request copies. Whether an op fits the field's current type only the
 * node can tell (MRD_ETYPE).
 */
#include "client.h"

#include <msgpack.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "crdt.h"

_Static_assert(CRDT_OPS_SIZE_MAX <= PROTO_OPS_SIZE_MAX,
    "every op list crdt may encode fits the protocol's ops bin");
_Static_assert(
    CRDT_OPS_MAX == MRD_STATE_OPS_MAX && CRDT_PATH_MAX == MRD_STATE_PATH_MAX,
    "crdt and the public API agree on op limits");

/* Every event's encoded ops, back to back in buf; views[i] is event i's
 * (len 0: none). views is NULL when no event has ops. */
struct client_ops {
    struct proto_buf  buf;
    struct proto_str *views;
    struct crdt_op   *scratch; /* MRD_STATE_OPS_MAX converted ops */
};

/* ------------------------------------------------------------------ ops -- */

/* A path name: UTF-8 (so no NUL), 1..MRD_STATE_NAME_SIZE_MAX bytes. */
static MRD_MUST_USE int
client_op_name(const char *name, struct crdt_bytes *out)
{
    if (name == NULL) {
        return MRD_EINVAL;
    }
    size_t len = strnlen(name, (size_t) MRD_STATE_NAME_SIZE_MAX + 1);
    if (len > MRD_STATE_NAME_SIZE_MAX) {
        return MRD_ETOOBIG;
    }
    if (len == 0 || !mrd_utf8_valid(name, len)) {
        return MRD_EINVAL;
    }
    out->ptr = (const uint8_t *) name;
    out->len = (uint32_t) len;
    return MRD_OK;
}

/* The kinds each type has (meridian.h): a map has no op of its own, and
 * DELETE goes with type 0. */
static bool
client_op_kind_fits(int type, int kind)
{
    switch (kind) {
    case MRD_OP_INC:
        return type == MRD_STATE_COUNTER;
    case MRD_OP_SET:
        return type == MRD_STATE_LWW || type == MRD_STATE_MVREG;
    case MRD_OP_ENABLE:
    case MRD_OP_DISABLE:
        return type == MRD_STATE_FLAG;
    case MRD_OP_ADD:
    case MRD_OP_REMOVE:
        return type == MRD_STATE_SET;
    case MRD_OP_DELETE:
        return type == 0;
    default:
        return false;
    }
}

/* Checks one public op and converts it to views of the caller's memory.
 * Fields the kind does not use (delta, value) are ignored. */
static MRD_MUST_USE int
client_op_convert(const mrd_op *op, struct crdt_op *out)
{
    const char *why       = NULL;
    bool        has_value = op->kind == MRD_OP_SET || op->kind == MRD_OP_ADD
        || op->kind == MRD_OP_REMOVE;
    int rv;

    memset(out, 0, sizeof *out);
    if (op->path == NULL || op->path_len == 0) {
        return MRD_EINVAL;
    }
    if (op->path_len > MRD_STATE_PATH_MAX) {
        return MRD_ETOOBIG;
    }
    if (!client_op_kind_fits(op->type, op->kind)) {
        return MRD_EINVAL;
    }
    for (size_t i = 0; i < op->path_len; i++) {
        rv = client_op_name(op->path[i], &out->path[i]);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    if (has_value) {
        if (op->value_size > MRD_STATE_VALUE_SIZE_MAX) {
            return MRD_ETOOBIG;
        }
        if (op->value == NULL && op->value_size > 0) {
            return MRD_EINVAL;
        }
        out->value.ptr = op->value;
        out->value.len = (uint32_t) op->value_size;
    }
    out->type  = (uint8_t) op->type;
    out->kind  = (uint8_t) op->kind;
    out->depth = (uint8_t) op->path_len;
    out->delta = op->kind == MRD_OP_INC ? op->delta : 0;
    /* The same shape checks the node makes: never send what it refuses. */
    rv = crdt_op_check(out, &why);
    if (rv != MRD_OK) {
        client_detail_set(why, strlen(why));
        return rv == MRD_ETOOBIG ? MRD_ETOOBIG : MRD_EINVAL;
    }
    return MRD_OK;
}

/* Appends one event's encoded ops to o->buf. */
static MRD_MUST_USE int
client_event_ops_encode(struct client_ops *o, const mrd_event_in *ev)
{
    msgpack_packer pk;
    const char    *why   = NULL;
    size_t         start = o->buf.len;
    int            rv;

    if (ev->ops == NULL) {
        return MRD_EINVAL;
    }
    if (ev->op_count > MRD_STATE_OPS_MAX) {
        return MRD_ETOOBIG;
    }
    for (size_t i = 0; i < ev->op_count; i++) {
        rv = client_op_convert(&ev->ops[i], &o->scratch[i]);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    proto_wr_packer_init(&o->buf, &pk);
    rv = crdt_ops_encode(&pk, NULL, o->scratch, (uint32_t) ev->op_count, &why);
    if (proto_buf_status(&o->buf) != MRD_OK) {
        return proto_buf_status(&o->buf); /* MRD_ETOOBIG past the cap */
    }
    if (rv != MRD_OK) {
        return rv == MRD_ENOMEM ? MRD_ENOMEM : MRD_EINVAL;
    }
    /* crdt's own bound; a longer list would be refused by the node. */
    if (o->buf.len - start > CRDT_OPS_SIZE_MAX) {
        return MRD_ETOOBIG;
    }
    return MRD_OK;
}

static void
client_ops_fini(struct client_ops *o)
{
    proto_buf_fini(&o->buf);
    free(o->views);
    free(o->scratch);
    o->views   = NULL;
    o->scratch = NULL;
}

/* Encodes the ops of every event that has some. The buffer is capped at
 * the frame limit: the request must carry all of it anyway. On error
 * o holds nothing to free. */
static MRD_MUST_USE int
client_ops_encode(struct mrd_client *client, const mrd_event_in *events,
    size_t event_count, struct client_ops *o)
{
    size_t off = 0;
    int    rv  = MRD_OK;

    client_detail_set(NULL, 0);
    memset(o, 0, sizeof *o);
    proto_buf_init(&o->buf, client->opts.frame_size_max);
    for (size_t i = 0; i < event_count && o->scratch == NULL; i++) {
        if (events[i].op_count > 0) {
            o->scratch = calloc(MRD_STATE_OPS_MAX, sizeof *o->scratch);
            o->views   = calloc(event_count, sizeof *o->views);
            if (o->scratch == NULL || o->views == NULL) {
                rv = MRD_ENOMEM;
                goto fail;
            }
        }
    }
    for (size_t i = 0; o->views != NULL && i < event_count; i++) {
        size_t start = o->buf.len;
        if (events[i].op_count > 0) {
            rv = client_event_ops_encode(o, &events[i]);
            if (rv != MRD_OK) {
                goto fail;
            }
        }
        o->views[i].len = (uint32_t) (o->buf.len - start);
    }
    /* Pointers only now: the buffer may have moved while it grew. */
    for (size_t i = 0; o->views != NULL && i < event_count; i++) {
        o->views[i].ptr
            = o->views[i].len > 0 ? (const char *) o->buf.data + off : NULL;
        off += o->views[i].len;
    }
    MRD_ASSERT(off == o->buf.len);
    return MRD_OK;

fail:
    client_ops_fini(o);
    return rv;
}

/* --------------------------------------------------------------- append -- */

static MRD_MUST_USE int
client_append_decode(struct client_call *call, struct proto_rd *body)
{
    struct proto_append_rep rep;
    const char             *why = NULL;
    mrd_append_result      *out = &call->out.append;

    if (proto_append_rep_decode(body, &rep, &why) != MRD_OK) {
        return MRD_EPROTO;
    }
    /* All or nothing: a node that reports another count broke the
     * protocol, and the caller must not be told it succeeded. */
    if (rep.count != call->event_count) {
        return MRD_EPROTO;
    }
    out->first_dot.origin = rep.origin;
    out->first_dot.seq    = rep.seq;
    out->first_position   = rep.first_pos;
    out->version          = rep.version;
    out->count            = rep.count;
    out->hlc              = rep.hlc;
    out->replayed         = rep.replayed ? 1 : 0;
    out->ack_reached      = MRD_ACK_LOCAL;
    out->ack_replicas     = 1;
    out->ack_regions      = 1;
    if (call->session_hash != 0 && rep.count > 0) {
        /* Written (MRD_EDURABILITY too): later appends to the stream come
         * after its last event on every node. */
        struct mrd_client          *client = call->client;
        struct client_session_slot *slot
            = &client->session[call->session_hash % CLIENT_SESSION_SLOTS];
        pthread_mutex_lock(&client->mtx);
        slot->hash        = call->session_hash;
        slot->last.origin = rep.origin;
        slot->last.seq    = rep.seq + rep.count - 1u;
        pthread_mutex_unlock(&client->mtx);
    }
    if (call->ack_level != MRD_ACK_LOCAL) {
        /* A node that asked for a level must say what it reached. */
        if (!rep.ack_asked
            || (rep.ack_level != MRD_ACK_LOCAL
                && rep.ack_level != (uint32_t) call->ack_level)) {
            return MRD_EPROTO;
        }
        out->ack_reached  = (int) rep.ack_level;
        out->ack_replicas = rep.ack_replicas;
        out->ack_regions  = rep.ack_regions;
    }
    return MRD_OK;
}

/* MRD_EDURABILITY for an append that is written but did not reach the
 * level it asked for: never a false success. */
static int
client_append_outcome(const struct client_call *call, int rv)
{
    if (rv == MRD_OK && call->out.append.ack_reached != call->ack_level) {
        return MRD_EDURABILITY;
    }
    return rv;
}

/* Checks the arguments, takes a call and encodes the request into it. On
 * MRD_OK the caller owns *call_out; on error there is none. */
static MRD_MUST_USE int
client_append_prepare(struct mrd_client *client, const char *stream,
    const mrd_event_in *events, size_t event_count, const mrd_append_opts *opts,
    struct client_call **call_out)
{
    struct client_call *call     = NULL;
    int64_t             expected = MRD_EXPECT_ANY;
    const void         *key      = NULL;
    size_t              key_size = 0;
    struct client_ops   ops;
    size_t              stream_len;
    int                 rv;

    *call_out = NULL;
    if (client == NULL || stream == NULL || events == NULL) {
        return MRD_EINVAL;
    }
    if (event_count == 0) {
        return MRD_EINVAL;
    }
    if (event_count > MRD_APPEND_EVENTS_MAX) {
        return MRD_ETOOBIG;
    }
    stream_len = strnlen(stream, MRD_STREAM_NAME_SIZE_MAX + 1);
    rv         = mrd_stream_name_check(stream, stream_len);
    if (rv != MRD_OK) {
        return rv;
    }
    struct proto_ack ack = { MRD_ACK_LOCAL, 0, 0 };
    if (opts != NULL) {
        expected = opts->expected_version;
        key      = opts->idempotency_key;
        key_size = opts->idempotency_key_size;
        if (key == NULL && key_size > 0) {
            return MRD_EINVAL;
        }
        if (opts->ack < MRD_ACK_LOCAL || opts->ack > MRD_ACK_GLOBAL
            || opts->ack_count > MRD_ACK_COUNT_MAX
            || opts->ack_wait_ms > MRD_ACK_WAIT_MS_MAX) {
            return MRD_EINVAL;
        }
        ack.level   = (uint32_t) opts->ack;
        ack.count   = opts->ack_count != 0 ? opts->ack_count : 2;
        ack.wait_ms = opts->ack_wait_ms != 0 ? opts->ack_wait_ms
                                             : MRD_ACK_WAIT_MS_DEFAULT;
    }
    rv = client_ops_encode(client, events, event_count, &ops);
    if (rv != MRD_OK) {
        return rv;
    }
    rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
        client_ops_fini(&ops);
        return rv;
    }
    if (key == NULL) {
        /* Time first, then randomness (like UUIDv7): keys made one after the
         * other sort together, so the node inserts them at the right edge of
         * its idempotency B-tree, touching one leaf per commit instead of
         * one random leaf per append. 8 random bytes keep them unique. */
        mrd_be64_put(call->idem_key, mrd_now_real_ms());
        randombytes_buf(call->idem_key + 8, sizeof call->idem_key - 8);
        key      = call->idem_key;
        key_size = sizeof call->idem_key;
    }
    /* Session order: the stream's last acknowledged event, if known. */
    mrd_dot after      = { 0, 0 };
    call->session_hash = 0;
    if (!client->opts.no_session_order) {
        uint64_t h = client_session_hash(stream, stream_len);
        pthread_mutex_lock(&client->mtx);
        struct client_session_slot *slot
            = &client->session[h % CLIENT_SESSION_SLOTS];
        if (slot->hash == h) {
            after = slot->last;
        }
        pthread_mutex_unlock(&client->mtx);
        call->session_hash = h;
    }
    call->type   = PROTO_T_APPEND;
    call->decode = client_append_decode;
    client_route_stream(call, stream, stream_len);
    call->event_count = (uint32_t) event_count;
    call->ack_level   = (int) ack.level;
    /* The node holds the answer while it waits for the level: every
     * attempt's deadline grows by that wait, like a long-poll's. */
    call->wait_ms = ack.level != MRD_ACK_LOCAL ? ack.wait_ms : 0;
    /* Checks every field against its limit: MRD_ETOOBIG, MRD_EINVAL. */
    rv = proto_append_req_encode_ack(&call->req, stream, stream_len, expected,
        key, key_size, events, ops.views, event_count, &ack, &after);
    client_ops_fini(&ops); /* the request has its copy */
    if (rv != MRD_OK) {
        goto fail;
    }
    *call_out = call;
    return MRD_OK;

fail:
    client_call_put(call);
    return rv;
}

int
mrd_append(mrd_client *client, const char *stream, const mrd_event_in *events,
    size_t event_count, const mrd_append_opts *opts,
    mrd_append_result *result_out)
{
    struct client_call *call = NULL;
    int                 rv;

    rv = client_append_prepare(
        client, stream, events, event_count, opts, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    rv = client_call_run(call, NULL);
    if (rv == MRD_OK && result_out != NULL) {
        *result_out = call->out.append;
    }
    rv = client_append_outcome(call, rv);
    client_call_put(call);
    return rv;
}

/* The end of an async append, on an NNG thread. */
static void
client_append_done(struct client_call *call)
{
    mrd_append_cb     cb  = call->append_cb;
    void             *arg = call->append_arg;
    mrd_append_result result;
    int               err = call->err;

    /* Copy first and put the call back before the user's callback runs:
     * the callback may start another append, and with every call object
     * in use that append would otherwise fail with MRD_EFULL. */
    result = call->out.append;
    err    = client_append_outcome(call, err);
    client_call_put(call);
    cb(arg, err, err == MRD_OK || err == MRD_EDURABILITY ? &result : NULL);
}

int
mrd_append_async(mrd_client *client, const char *stream,
    const mrd_event_in *events, size_t event_count, const mrd_append_opts *opts,
    mrd_append_cb cb, void *arg)
{
    struct client_call *call = NULL;
    int                 rv;

    if (cb == NULL) {
        return MRD_EINVAL;
    }
    rv = client_append_prepare(
        client, stream, events, event_count, opts, &call);
    if (rv != MRD_OK) {
        return rv;
    }
    call->done_fn    = client_append_done;
    call->append_cb  = cb;
    call->append_arg = arg;
    rv               = client_call_start(call);
    if (rv != MRD_OK) {
        client_call_put(call); /* nothing started: cb never runs */
    }
    return rv;
}

void
mrd_append_opts_init(mrd_append_opts *opts)
{
    if (opts == NULL) {
        return;
    }
    memset(opts, 0, sizeof *opts);
    opts->expected_version = MRD_EXPECT_ANY;
}
