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
 */
#include "client.h"

#include <sodium.h>
#include <string.h>

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
    return MRD_OK;
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
    if (opts != NULL) {
        expected = opts->expected_version;
        key      = opts->idempotency_key;
        key_size = opts->idempotency_key_size;
        if (key == NULL && key_size > 0) {
            return MRD_EINVAL;
        }
    }
    rv = client_call_get(client, &call);
    if (rv != MRD_OK) {
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
    call->type        = PROTO_T_APPEND;
    call->decode      = client_append_decode;
    call->event_count = (uint32_t) event_count;
    /* Checks every field against its limit: MRD_ETOOBIG, MRD_EINVAL. */
    rv = proto_append_req_encode(&call->req, stream, stream_len, expected, key,
        key_size, events, event_count);
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
    client_call_put(call);
    cb(arg, err, err == MRD_OK ? &result : NULL);
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
