/*
 * call.c: one request, from its first attempt to its end.
 *
 * A call is one callback that switches on the state, as in NNG's
 * demo/async server, driving one nng_aio for I/O and one for sleeps:
 *
 *   SEND     lk_ctx_send on the chosen node's link (net/linkio.h). It
 *            completes when the request is sealed and handed to the link's
 *            established session; if it times out, the request never left,
 *            so this node was simply unreachable (or, NNG_EPEERAUTH, it
 *            refused this client's key).
 *   RECV     lk_ctx_recv for the reply. A failure here (timeout, or the
 *            pipe reset by a dying node) means the node may have acted on
 *            the request: the outcome is unknown.
 *   BACKOFF  nng_sleep_aio for a capped, full-jitter backoff, then the next
 *            attempt. Sleeping on an aio keeps async calls off any thread.
 *            The sleep has its own aio (`timer`): in NNG 1.5.2 an aio that
 *            slept keeps "expiry is success" set, so a later send on it that
 *            times out reports 0 and leaves the message in the aio.
 *
 * A failed attempt (transport error, undecodable reply, MRD_EBUSY or
 * MRD_ECLOSED from the node, or MRD_ENOTREPLICA: not this node's stream)
 * moves the call to its next node (routing.c says which) and tries again
 * until the whole-call deadline. MRD_ENOTREPLICA also means the client's
 * topology may be stale: it starts a refresh, asking that node first, and
 * the call's next attempt follows the newer version if it has arrived by
 * then. Every other answer from a node is final. The request frame is encoded
 * once by the caller and the same bytes are sent on every attempt; an append
 * carries one idempotency key for all of them, so a retry never writes twice.
 *
 * Cancellation: `armed` says an operation is pending on one of the aios. An
 * operation is only started with the call's mutex held and `cancelled`
 * clear, and client_call_cancel() sets `cancelled` and aborts a pending
 * operation under that same mutex, so no operation starts after a cancel and
 * none pending survives it. Holding the mutex while starting is safe because
 * NNG 1.5 completes ctx send/recv and sleep through its task queue, never
 * inline in the starting call.
 */
#include "client.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

static void client_attempt_failed(struct client_call *call, bool node_fault);

/* The call's end: hand it to its owner. Nothing touches call after this. */
static void
client_call_finish(struct client_call *call, int err)
{
    MRD_ASSERT(!call->armed && !call->ctx_open);
    call->err   = err;
    call->state = CLIENT_CALL_IDLE;
    if (call->done_fn != NULL) {
        call->done_fn(call); /* ends with client_call_put() */
        return;
    }
    pthread_mutex_lock(&call->mtx);
    call->done = true;
    pthread_cond_signal(&call->done_cv);
    pthread_mutex_unlock(&call->mtx);
}

/* What the deadline means, given what the attempts saw. */
static MRD_MUST_USE int
client_call_deadline_err(const struct client_call *call)
{
    if (call->outcome_unknown) {
        return MRD_ETIMEDOUT; /* a node may have acted on the request */
    }
    if (call->node_err != MRD_OK) {
        return call->node_err; /* nodes answered, all busy or stopping */
    }
    if (call->auth_err != MRD_OK) {
        return call->auth_err; /* some node refused the link */
    }
    return MRD_EUNAVAIL; /* no request ever left this process */
}

/* Starts the operation for call->state unless the call was cancelled; see
 * the top of the file for why the mutex is held. */
static bool
client_call_arm(struct client_call *call)
{
    bool armed = false;

    pthread_mutex_lock(&call->mtx);
    MRD_ASSERT(!call->armed);
    if (!call->cancelled) {
        call->armed = true;
        armed       = true;
        switch (call->state) {
        case CLIENT_CALL_SEND:
            lk_ctx_send(call->ctx, call->aio);
            break;
        case CLIENT_CALL_RECV:
            lk_ctx_recv(call->ctx, call->aio);
            break;
        case CLIENT_CALL_BACKOFF:
            nng_sleep_aio((nng_duration) call->sleep_ms, call->timer);
            break;
        case CLIENT_CALL_IDLE:
            MRD_ASSERT(false);
            break;
        }
    }
    pthread_mutex_unlock(&call->mtx);
    return armed;
}

static void
client_call_ctx_close(struct client_call *call)
{
    if (call->ctx_open) {
        lk_ctx_close(call->ctx);
        call->ctx_open = false;
    }
}

/* Milliseconds left until `deadline`, at least 1: NNG reads a zero timeout
 * as "fail at once". */
static nng_duration
client_ms_until(uint64_t deadline_ms, uint64_t now_ms)
{
    if (deadline_ms <= now_ms) {
        return 1;
    }
    return (nng_duration) (deadline_ms - now_ms);
}

/* Sets up and sends one attempt. MRD_OK, or an error with nothing pending
 * (MRD_ENOMEM, MRD_ECLOSED when cancelled, MRD_EINTERNAL). */
static MRD_MUST_USE int
client_attempt_start(struct client_call *call)
{
    struct mrd_client  *client = call->client;
    struct client_node *node;
    nng_msg            *msg    = NULL;
    uint64_t            now_ms = mrd_now_mono_ms();
    uint64_t            attempt_ms;
    uint64_t            send_ms;
    int                 rv;

    MRD_ASSERT(!call->ctx_open && call->req.len > 0);
    if (call->route == CLIENT_ROUTE_STREAM) {
        client_topo_refresh(client, false, -1); /* when one is due */
    }
    if (!call->pinned) {
        call->node = client_route_pick(call);
    }
    MRD_ASSERT(call->node < atomic_load(&client->node_count));
    node                   = &client->nodes[call->node];
    call->attempt_start_us = mrd_now_mono_us();
    /* A long-poll legitimately holds the reply for wait_ms. */
    attempt_ms = (uint64_t) client->opts.attempt_timeout_ms + call->wait_ms;
    if (now_ms + attempt_ms > call->deadline_ms) {
        attempt_ms = client_ms_until(call->deadline_ms, now_ms);
    }
    call->attempt_deadline_ms = now_ms + attempt_ms;
    send_ms                   = attempt_ms;
    if (atomic_load(&node->pipe_count) <= 0
        && send_ms > CLIENT_CONNECT_WAIT_MS) {
        send_ms = CLIENT_CONNECT_WAIT_MS;
        client_node_redial(node, now_ms);
    }
    rv = nng_msg_alloc(&msg, call->req.len);
    if (rv != 0) {
        rv = MRD_ENOMEM;
        goto fail;
    }
    memcpy(nng_msg_body(msg), call->req.data, call->req.len);
    rv = lk_ctx_open(call->wait_ms > 0 ? node->lk_poll : node->lk, &call->ctx);
    if (rv != MRD_OK) {
        goto fail;
    }
    call->ctx_open = true;
    call->state    = CLIENT_CALL_SEND;
    nng_aio_set_msg(call->aio, msg);
    nng_aio_set_timeout(call->aio, (nng_duration) send_ms);
    if (!client_call_arm(call)) {
        nng_aio_set_msg(call->aio, NULL);
        rv = MRD_ECLOSED;
        goto fail;
    }
    return MRD_OK;

fail:
    client_call_ctx_close(call);
    if (msg != NULL) {
        nng_msg_free(msg);
    }
    return rv;
}

/* ----------------------------------------------------------- replies -- */

static bool
client_err_known(uint32_t status)
{
    switch (status) {
#define CLIENT_ERR_CASE_(name, code, text) case code:
        MRD_ERRORS(CLIENT_ERR_CASE_)
#undef CLIENT_ERR_CASE_
        return true;
    default:
        return false;
    }
}

/* Reads a reply. Returns the call's result, with *retry set when the attempt
 * failed and another one should be made. */
static MRD_MUST_USE int
client_reply_handle(
    struct client_call *call, const void *buf, size_t len, bool *retry)
{
    struct proto_frame frame;
    struct proto_str   message;
    bool               has_version = false;
    int64_t            version     = 0;
    const char        *why         = NULL;
    int                rv;

    *retry = false;
    if (len > call->client->opts.frame_size_max) {
        goto garbled;
    }
    rv = proto_reply_open(buf, len, &frame, &why);
    if (rv == MRD_EPROTOVERSION) {
        return MRD_EPROTOVERSION; /* a node that speaks another protocol */
    }
    if (rv != MRD_OK || frame.type != call->type) {
        goto garbled;
    }
    if (frame.status != MRD_OK) {
        if (!client_err_known(frame.status)) {
            goto garbled;
        }
        /* The message is for humans: mrd_errdetail() hands it over. */
        rv = proto_error_decode(
            &frame.body, &message, &has_version, &version, &why);
        if (rv != MRD_OK) {
            goto garbled;
        }
        size_t n = message.len < sizeof call->detail - 1
            ? message.len
            : sizeof call->detail - 1;
        if (n > 0) {
            memcpy(call->detail, message.ptr, n);
        }
        call->detail[n] = '\0';
        if (frame.status == MRD_EBUSY || frame.status == MRD_ECLOSED
            || frame.status == MRD_ENOTREPLICA || frame.status == MRD_ECAUSAL
            || frame.status == MRD_EFENCED) {
            /* The node refused without acting: another node may serve (a
             * replica of the stream's shard, for MRD_ENOTREPLICA; one that
             * holds the session's last event, for MRD_ECAUSAL, or this one
             * once replication brings it; any other, for MRD_EFENCED). */
            call->node_err = (int) frame.status;
            *retry         = true;
        }
        if (frame.status == MRD_ENOTREPLICA) {
            /* Our topology says otherwise, or we have none: ask for a
             * newer one, from this node first. Its own call: nothing here
             * waits for it. */
            client_topo_refresh(call->client, true, (int) call->node);
        }
        return (int) frame.status;
    }
    rv = call->decode(call, &frame.body);
    if (rv == MRD_OK || rv == MRD_ECORRUPT || rv == MRD_ENOMEM) {
        return rv;
    }

garbled:
    /* Whatever the node did, we cannot tell what it was. If the deadline
     * comes first, mrd_errdetail() says why. */
    snprintf(call->detail, sizeof call->detail,
        "no usable reply: a node's reply did not decode (%s)",
        why != NULL ? why : "bad body");
    call->outcome_unknown = true;
    call->pinned          = call->type == PROTO_T_APPEND;
    *retry                = true;
    return MRD_EPROTO;
}

/* -------------------------------------------------------- the states -- */

static void
client_call_sent(struct client_call *call, int rv, bool cancelled)
{
    if (rv != 0) {
        /* A failed send leaves the message with us. */
        nng_msg *msg = nng_aio_get_msg(call->aio);
        nng_aio_set_msg(call->aio, NULL);
        if (msg != NULL) {
            nng_msg_free(msg);
        }
        client_call_ctx_close(call);
        if (cancelled) {
            client_call_finish(call, MRD_ECLOSED); /* not the node's fault */
            return;
        }
        if (rv == NNG_EPEERAUTH || rv == NNG_ENOTSUP) {
            /* The link handshake was refused, by the node or by us: the
             * request never left. Other nodes may still take it (one with
             * a stale keyring should not fail the call), but when every
             * candidate refused, waiting for the deadline helps nobody. */
            struct client_node *node = &call->client->nodes[call->node];
            lk_refusal(call->wait_ms > 0 ? node->lk_poll : node->lk,
                call->detail, sizeof call->detail);
            call->auth_err = rv == NNG_ENOTSUP ? MRD_EPROTOVERSION : MRD_EAUTH;
            uint32_t cands = call->route == CLIENT_ROUTE_ADDRESSES
                ? (uint32_t) call->client->addr_count
                : call->cand_count;
            if (++call->auth_fails >= (cands > 0 ? cands : 1)) {
                client_call_finish(call, call->auth_err);
                return;
            }
        }
        client_attempt_failed(call, true); /* the request never left */
        return;
    }
    call->state = CLIENT_CALL_RECV;
    nng_aio_set_timeout(call->aio,
        client_ms_until(call->attempt_deadline_ms, mrd_now_mono_ms()));
    if (!client_call_arm(call)) {
        client_call_ctx_close(call);
        client_call_finish(call, MRD_ECLOSED);
    }
}

static void
client_call_received(struct client_call *call, int rv, bool cancelled)
{
    nng_msg *msg;
    bool     retry = false;
    int      err;

    if (rv != 0) {
        client_call_ctx_close(call);
        if (cancelled) {
            client_call_finish(call, MRD_ECLOSED);
            return;
        }
        call->outcome_unknown = true; /* sent, but no answer */
        call->pinned          = call->type == PROTO_T_APPEND;
        client_attempt_failed(call, true);
        return;
    }
    msg = nng_aio_get_msg(call->aio);
    nng_aio_set_msg(call->aio, NULL);
    client_call_ctx_close(call);
    err = client_reply_handle(
        call, nng_msg_body(msg), nng_msg_len(msg), &retry);
    nng_msg_free(msg);
    if (retry) {
        /* A refusal for not being a replica says nothing bad about the
         * node: it stays healthy for the streams it holds. */
        client_attempt_failed(call, err != MRD_ENOTREPLICA);
        return;
    }
    /* A final answer: the node works. Its round trip counts unless the
     * node held the request on purpose (a long-poll, an ack wait). */
    client_route_answered(call,
        call->wait_ms == 0 ? mrd_now_mono_us() - call->attempt_start_us : 0);
    client_call_finish(call, err);
}

/* An async stream call made before the client's first topology answer
 * sleeps a step instead of starting an attempt that would not be routed,
 * until the answer comes or call->first_until_ms. True when it armed the
 * sleep; false when it should go on (or was cancelled: *cancelled). */
static bool
client_call_defer(struct client_call *call, bool *cancelled)
{
    uint64_t now_ms = mrd_now_mono_ms();

    *cancelled = false;
    if (call->first_until_ms == 0 || now_ms >= call->first_until_ms
        || !client_topo_first_pending(call->client)) {
        call->first_until_ms = 0; /* never again for this call */
        return false;
    }
    call->sleep_ms = CLIENT_TOPO_FIRST_POLL_MS;
    call->state    = CLIENT_CALL_BACKOFF;
    if (!client_call_arm(call)) {
        *cancelled = true;
        return false;
    }
    return true;
}

static void
client_call_slept(struct client_call *call)
{
    bool cancelled;
    int  rv;

    if (mrd_now_mono_ms() >= call->deadline_ms) {
        client_call_finish(call, client_call_deadline_err(call));
        return;
    }
    if (client_call_defer(call, &cancelled)) {
        return;
    }
    if (cancelled) {
        client_call_finish(call, MRD_ECLOSED);
        return;
    }
    rv = client_attempt_start(call);
    if (rv != MRD_OK) {
        client_call_finish(call, rv);
    }
}

/* Moves to the next node and sleeps a full-jitter backoff: a random time in
 * [0, cap], the cap doubling per failure up to backoff_max_ms, so clients
 * that failed together do not come back together. */
static void
client_attempt_failed(struct client_call *call, bool node_fault)
{
    const mrd_client_opts *opts   = &call->client->opts;
    uint64_t               now_ms = mrd_now_mono_ms();
    uint32_t               sleep_ms;

    client_route_failed(call, node_fault);
    if (now_ms >= call->deadline_ms) {
        client_call_finish(call, client_call_deadline_err(call));
        return;
    }
    sleep_ms = randombytes_uniform(call->backoff_ms + 1);
    if (call->backoff_ms <= opts->backoff_max_ms / 2) {
        call->backoff_ms *= 2;
    } else {
        call->backoff_ms = opts->backoff_max_ms;
    }
    if (now_ms + sleep_ms > call->deadline_ms) {
        sleep_ms = (uint32_t) (call->deadline_ms - now_ms);
    }
    call->sleep_ms = sleep_ms;
    call->state    = CLIENT_CALL_BACKOFF;
    if (!client_call_arm(call)) {
        client_call_finish(call, MRD_ECLOSED);
    }
}

void
client_call_cb(void *arg)
{
    struct client_call *call = arg;
    bool                cancelled;
    int                 rv;

    pthread_mutex_lock(&call->mtx);
    MRD_ASSERT(call->armed);
    call->armed = false;
    cancelled   = call->cancelled;
    pthread_mutex_unlock(&call->mtx);
    rv = nng_aio_result(
        call->state == CLIENT_CALL_BACKOFF ? call->timer : call->aio);

    switch (call->state) {
    case CLIENT_CALL_SEND:
        client_call_sent(call, rv, cancelled);
        break;
    case CLIENT_CALL_RECV:
        client_call_received(call, rv, cancelled);
        break;
    case CLIENT_CALL_BACKOFF:
        /* The sleep's own result says nothing: it ended or was cut short
         * by a cancel, which the flag already tells. */
        if (cancelled) {
            client_call_finish(call, MRD_ECLOSED);
        } else {
            client_call_slept(call);
        }
        break;
    case CLIENT_CALL_IDLE:
        MRD_ASSERT(false);
        break;
    }
}

/* ------------------------------------------------------------ the API -- */

/* Sets the call's deadline and first backoff. */
static void
client_call_begin(struct client_call *call)
{
    const mrd_client_opts *opts = &call->client->opts;

    MRD_ASSERT(call->state == CLIENT_CALL_IDLE && call->decode != NULL);
    MRD_ASSERT(call->type >= PROTO_T_APPEND && call->type <= PROTO_T_MAX_);
    call->deadline_ms = mrd_now_mono_ms() + opts->timeout_ms + call->wait_ms;
    call->backoff_ms  = opts->backoff_min_ms;
}

int
client_call_start(struct client_call *call)
{
    bool cancelled;

    client_call_begin(call);
    if (call->route == CLIENT_ROUTE_STREAM && call->done_fn != NULL) {
        /* Async: see client_call_defer(). Blocking calls wait in
         * client_call_run() instead. */
        uint64_t until = mrd_now_mono_ms() + CLIENT_TOPO_FIRST_WAIT_MS;
        call->first_until_ms
            = until < call->deadline_ms ? until : call->deadline_ms;
        if (client_call_defer(call, &cancelled)) {
            return MRD_OK;
        }
        if (cancelled) {
            return MRD_ECLOSED;
        }
    }
    return client_attempt_start(call);
}

int
client_call_run(struct client_call *call, struct client_cancel *cancel)
{
    int rv;

    MRD_ASSERT(call->done_fn == NULL);
    if (cancel != NULL) {
        pthread_mutex_lock(&cancel->mtx);
        if (cancel->stopping) {
            pthread_mutex_unlock(&cancel->mtx);
            return MRD_ECLOSED;
        }
        cancel->call = call;
        pthread_mutex_unlock(&cancel->mtx);
    }
    client_call_begin(call);
    if (call->route == CLIENT_ROUTE_STREAM) {
        /* The first stream call of a client may come before its first
         * topology answer: a short wait, inside the call's own deadline,
         * routes it instead of sending it where it may be refused. */
        client_topo_first_wait(call->client, call->deadline_ms);
    }
    rv = client_attempt_start(call);
    if (rv == MRD_OK) {
        pthread_mutex_lock(&call->mtx);
        while (!call->done) {
            pthread_cond_wait(&call->done_cv, &call->mtx);
        }
        pthread_mutex_unlock(&call->mtx);
        rv = call->err;
        if (rv != MRD_OK) {
            client_detail_set(call->detail, strlen(call->detail));
        }
    }
    if (cancel != NULL) {
        pthread_mutex_lock(&cancel->mtx);
        cancel->call = NULL;
        pthread_mutex_unlock(&cancel->mtx);
    }
    return rv;
}

int
client_call_exec(
    struct client_call *call, int encode_rv, struct client_cancel *cancel)
{
    int rv = encode_rv;

    if (rv == MRD_OK) {
        rv = client_call_run(call, cancel);
    }
    if (rv != MRD_OK) {
        client_call_put(call);
    }
    return rv;
}

void
client_call_cancel(struct client_call *call)
{
    pthread_mutex_lock(&call->mtx);
    call->cancelled = true;
    if (call->armed) {
        /* Whichever is pending completes through the task queue; the
         * other is idle and ignores the cancel. */
        nng_aio_cancel(call->aio);
        nng_aio_cancel(call->timer);
    }
    pthread_mutex_unlock(&call->mtx);
}

int
client_cancel_init(struct client_cancel *cancel)
{
    cancel->stopping = false;
    cancel->call     = NULL;
    return pthread_mutex_init(&cancel->mtx, NULL) == 0 ? MRD_OK : MRD_ENOMEM;
}

void
client_cancel_fini(struct client_cancel *cancel)
{
    MRD_ASSERT(cancel->call == NULL);
    pthread_mutex_destroy(&cancel->mtx);
}

void
client_cancel_fire(struct client_cancel *cancel)
{
    pthread_mutex_lock(&cancel->mtx);
    cancel->stopping = true;
    /* The call cannot be put while published here: its runner clears
     * cancel->call under this mutex first. */
    if (cancel->call != NULL) {
        client_call_cancel(cancel->call);
    }
    pthread_mutex_unlock(&cancel->mtx);
}
