/*
 * tail.c: following a stream, by pull (mrd_tail_next) or by callback
 * (mrd_tail_start).
 *
 * Both are loops of long-polls on the client's nodes, so a tail fails over
 * like any call. A pull tail polls on the caller's thread for as long as the
 * caller said. A callback tail owns one thread that polls for up to
 * CLIENT_TAIL_WAIT_MS at a time; mrd_tail_close() cancels the poll in flight
 * through a client_cancel (see call.c) and wakes a backoff sleep, so closing
 * is prompt however long the poll was. Errors in a callback tail are told to
 * err_cb and retried after a capped, full-jitter backoff: a tail has no
 * caller to give up to.
 */
#include "client.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct mrd_tail {
    struct mrd_client *client;
    char              *stream; /* NUL-terminated copy */
    size_t             stream_len;
    /* Read by mrd_tail_position() on any thread while the callback thread
     * moves it. */
    _Atomic uint64_t position;
    /* Cursor tails: the cursor moves with every event delivered; cursor_mu
     * lets mrd_tail_cursor() copy it from any thread. NULL: a position
     * tail. */
    mrd_cursor     *cursor;
    pthread_mutex_t cursor_mu;

    /* Callback tails only. cancel.mtx also guards the backoff sleep on
     * wake_cv. */
    mrd_tail_cb          cb;
    mrd_tail_err_cb      err_cb;
    void                *arg;
    bool                 has_thread;
    pthread_t            thread;
    struct client_cancel cancel;
    pthread_cond_t       wake_cv; /* CLOCK_MONOTONIC */
};

static void
client_tail_free(struct mrd_tail *tail)
{
    if (tail == NULL) {
        return;
    }
    pthread_cond_destroy(&tail->wake_cv);
    client_cancel_fini(&tail->cancel);
    pthread_mutex_destroy(&tail->cursor_mu);
    mrd_cursor_free(tail->cursor);
    free(tail->stream);
    free(tail);
}

static MRD_MUST_USE int
client_tail_sync_init(struct mrd_tail *tail)
{
    pthread_condattr_t attr;
    int                rv;

    rv = client_cancel_init(&tail->cancel);
    if (rv != MRD_OK) {
        return rv;
    }
    if (pthread_condattr_init(&attr) != 0) {
        goto fail;
    }
    /* Sleeps measure monotonic time, like every deadline here. */
    rv = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rv == 0) {
        rv = pthread_cond_init(&tail->wake_cv, &attr);
    }
    pthread_condattr_destroy(&attr);
    if (rv != 0) {
        goto fail;
    }
    return MRD_OK;

fail:
    client_cancel_fini(&tail->cancel);
    return MRD_ENOMEM;
}

static MRD_MUST_USE int
client_tail_new(struct mrd_client *client, const char *stream, uint64_t from,
    bool with_cursor, const mrd_cursor *cursor_from, struct mrd_tail **tail_out)
{
    struct mrd_tail *tail;
    size_t           len;
    int              rv;

    *tail_out = NULL;
    if (client == NULL || stream == NULL) {
        return MRD_EINVAL;
    }
    len = strnlen(stream, MRD_STREAM_NAME_SIZE_MAX + 1);
    rv  = mrd_stream_name_check(stream, len);
    if (rv != MRD_OK) {
        return rv;
    }
    tail = calloc(1, sizeof *tail);
    if (tail == NULL) {
        return MRD_ENOMEM;
    }
    tail->stream = malloc(len + 1);
    if (tail->stream == NULL) {
        free(tail);
        return MRD_ENOMEM;
    }
    memcpy(tail->stream, stream, len + 1);
    tail->stream_len = len;
    tail->client     = client;
    atomic_init(&tail->position, from);
    rv = with_cursor
        ? (cursor_from != NULL ? mrd_cursor_copy(cursor_from, &tail->cursor)
                               : mrd_cursor_new(&tail->cursor))
        : MRD_OK;
    if (rv == MRD_OK && pthread_mutex_init(&tail->cursor_mu, NULL) != 0) {
        rv = MRD_ENOMEM;
    } else if (rv == MRD_OK) {
        rv = client_tail_sync_init(tail);
        if (rv != MRD_OK) {
            pthread_mutex_destroy(&tail->cursor_mu);
        }
    }
    if (rv != MRD_OK) {
        mrd_cursor_free(tail->cursor);
        free(tail->stream);
        free(tail);
        return rv;
    }
    *tail_out = tail;
    return MRD_OK;
}

int
mrd_tail_open(
    mrd_client *client, const char *stream, uint64_t from, mrd_tail **tail_out)
{
    if (tail_out == NULL) {
        return MRD_EINVAL;
    }
    return client_tail_new(client, stream, from, false, NULL, tail_out);
}

int
mrd_tail_open_cursor(mrd_client *client, const char *stream,
    const mrd_cursor *from, mrd_tail **tail_out)
{
    if (tail_out == NULL) {
        return MRD_EINVAL;
    }
    return client_tail_new(client, stream, 0, true, from, tail_out);
}

int
mrd_tail_cursor(const mrd_tail *tail, mrd_cursor **cursor_out)
{
    struct mrd_tail *t = (struct mrd_tail *) (uintptr_t) tail; /* the lock */
    int              rv;

    if (cursor_out == NULL) {
        return MRD_EINVAL;
    }
    *cursor_out = NULL;
    if (tail == NULL || tail->cursor == NULL) {
        return MRD_EINVAL;
    }
    pthread_mutex_lock(&t->cursor_mu);
    rv = mrd_cursor_copy(t->cursor, cursor_out);
    pthread_mutex_unlock(&t->cursor_mu);
    return rv;
}

/* The read a tail makes next. A cursor tail's vector goes in a malloc'd
 * bin (*bin_out) the caller frees after the call. */
static MRD_MUST_USE int
client_tail_args(struct mrd_tail *tail, uint32_t wait_ms,
    struct client_read_args *args, uint8_t **bin_out)
{
    size_t len = 0;
    int    rv  = MRD_OK;

    memset(args, 0, sizeof *args);
    *bin_out         = NULL;
    args->stream     = tail->stream;
    args->stream_len = tail->stream_len;
    args->from       = atomic_load(&tail->position);
    args->direction  = MRD_FORWARD;
    args->count_max  = CLIENT_TAIL_COUNT;
    args->wait_ms    = wait_ms;
    if (tail->cursor != NULL) {
        pthread_mutex_lock(&tail->cursor_mu);
        rv = client_cursor_bin(tail->cursor, bin_out, &len);
        client_cursor_hint(tail->cursor, tail->stream, tail->stream_len,
            &args->hint_node, &args->from);
        pthread_mutex_unlock(&tail->cursor_mu);
        args->has_cursor = true;
        args->cursor_bin = *bin_out;
        args->cursor_len = len;
    }
    return rv;
}

/* Moves a cursor tail's cursor over one event (ev != NULL) or to the end
 * of a batch (ev == NULL). */
static MRD_MUST_USE int
client_tail_cursor_move(
    struct mrd_tail *tail, const mrd_events *events, const mrd_event *ev)
{
    int rv = MRD_OK;

    if (tail->cursor == NULL) {
        return MRD_OK;
    }
    pthread_mutex_lock(&tail->cursor_mu);
    if (ev != NULL) {
        rv = client_cursor_deliver(
            tail->cursor, tail->stream, tail->stream_len, events, ev);
    } else {
        client_cursor_batch_done(
            tail->cursor, tail->stream, tail->stream_len, events);
    }
    pthread_mutex_unlock(&tail->cursor_mu);
    return rv;
}

int
mrd_tail_next(mrd_tail *tail, uint32_t timeout_ms, mrd_events **events_out)
{
    struct client_read_args args;
    mrd_events             *events = NULL;
    uint64_t                deadline_ms;
    uint64_t                now_ms;
    int                     rv;

    if (events_out != NULL) {
        *events_out = NULL;
    }
    if (tail == NULL || events_out == NULL || tail->has_thread) {
        return MRD_EINVAL;
    }
    deadline_ms = mrd_now_mono_ms() + timeout_ms;
    /* A node may end a long-poll early and empty; poll again until the
     * caller's time is up. */
    for (;;) {
        uint64_t left;
        now_ms = mrd_now_mono_ms();
        left   = deadline_ms > now_ms ? deadline_ms - now_ms : 0;
        uint8_t *bin;
        rv = client_tail_args(tail,
            left < MRD_WAIT_MS_MAX ? (uint32_t) left : MRD_WAIT_MS_MAX, &args,
            &bin);
        if (rv == MRD_OK) {
            rv = client_read_run(tail->client, &args, NULL, &events);
        }
        free(bin);
        if (rv != MRD_OK) {
            return rv;
        }
        if (tail->cursor != NULL) {
            pthread_mutex_lock(&tail->cursor_mu);
            bool room = client_cursor_room(tail->cursor, events);
            pthread_mutex_unlock(&tail->cursor_mu);
            if (!room) {
                mrd_events_free(events);
                return MRD_EFULL; /* nothing delivered, nothing moved */
            }
        }
        atomic_store(&tail->position, mrd_events_next(events));
        /* Handed to the caller: the cursor covers the whole batch. */
        for (size_t i = 0; i < mrd_events_count(events) && rv == MRD_OK; i++) {
            rv = client_tail_cursor_move(
                tail, events, mrd_events_at(events, i));
        }
        if (rv == MRD_OK) {
            rv = client_tail_cursor_move(tail, events, NULL);
        }
        if (rv != MRD_OK) {
            mrd_events_free(events);
            return rv;
        }
        if (mrd_events_count(events) > 0) {
            *events_out = events;
            return MRD_OK;
        }
        mrd_events_free(events);
        if (mrd_now_mono_ms() >= deadline_ms) {
            return MRD_ETIMEDOUT;
        }
    }
}

uint64_t
mrd_tail_position(const mrd_tail *tail)
{
    if (tail == NULL) {
        return 0;
    }
    return atomic_load(&tail->position);
}

/* ----------------------------------------------------- callback tails -- */

/* Sleeps up to sleep_ms unless the tail is closed; true when it was. */
static bool
client_tail_sleep(struct mrd_tail *tail, uint32_t sleep_ms)
{
    struct timespec ts;
    bool            stopping;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t) (sleep_ms / 1000u);
    ts.tv_nsec += (long) (sleep_ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&tail->cancel.mtx);
    while (!tail->cancel.stopping) {
        if (pthread_cond_timedwait(&tail->wake_cv, &tail->cancel.mtx, &ts)
            == ETIMEDOUT) {
            break;
        }
    }
    stopping = tail->cancel.stopping;
    pthread_mutex_unlock(&tail->cancel.mtx);
    return stopping;
}

static bool
client_tail_stopping(struct mrd_tail *tail)
{
    bool stopping;

    pthread_mutex_lock(&tail->cancel.mtx);
    stopping = tail->cancel.stopping;
    pthread_mutex_unlock(&tail->cancel.mtx);
    return stopping;
}

/* Runs cb on each event in order; true when the tail must stop (cb said so,
 * or close was called). */
static bool
client_tail_deliver(struct mrd_tail *tail, const mrd_events *events)
{
    size_t count = mrd_events_count(events);

    for (size_t i = 0; i < count; i++) {
        const mrd_event *ev = mrd_events_at(events, i);
        if (client_tail_stopping(tail)) {
            return true;
        }
        /* Delivered means consumed: the position moves past it even when
         * cb asks to stop. */
        atomic_store(&tail->position, ev->position + 1);
        if (client_tail_cursor_move(tail, events, ev) != MRD_OK) {
            /* Only MRD_EFULL: a cursor at MRD_CURSOR_ORIGINS_MAX origins
             * cannot say it delivered this event; stop rather than
             * deliver it again later. */
            if (tail->err_cb != NULL) {
                tail->err_cb(tail->arg, MRD_EFULL);
            }
            return true;
        }
        if (tail->cb(tail->arg, ev) != 0) {
            return true;
        }
    }
    atomic_store(&tail->position, mrd_events_next(events));
    return client_tail_cursor_move(tail, events, NULL) != MRD_OK;
}

static void *
client_tail_main(void *arg)
{
    struct mrd_tail        *tail       = arg;
    const mrd_client_opts  *opts       = &tail->client->opts;
    uint32_t                backoff_ms = opts->backoff_min_ms;
    struct client_read_args args;
    mrd_events             *events = NULL;
    int                     rv;

    for (;;) {
        uint8_t *bin;
        rv = client_tail_args(tail, CLIENT_TAIL_WAIT_MS, &args, &bin);
        if (rv == MRD_OK) {
            rv = client_read_run(tail->client, &args, &tail->cancel, &events);
        }
        free(bin);
        if (client_tail_stopping(tail)) {
            mrd_events_free(events);
            break;
        }
        if (rv != MRD_OK) {
            if (tail->err_cb != NULL) {
                tail->err_cb(tail->arg, rv);
            }
            if (client_tail_sleep(tail, randombytes_uniform(backoff_ms + 1))) {
                break;
            }
            backoff_ms = backoff_ms <= opts->backoff_max_ms / 2
                ? backoff_ms * 2
                : opts->backoff_max_ms;
            continue;
        }
        backoff_ms = opts->backoff_min_ms;
        bool stop  = client_tail_deliver(tail, events);
        mrd_events_free(events);
        events = NULL;
        if (stop) {
            break;
        }
    }
    return NULL;
}

static int
client_tail_start(mrd_client *client, const char *stream, uint64_t from,
    bool with_cursor, const mrd_cursor *cursor_from, mrd_tail_cb cb,
    mrd_tail_err_cb err_cb, void *arg, mrd_tail **tail_out)
{
    struct mrd_tail *tail = NULL;
    int              rv;

    if (tail_out == NULL) {
        return MRD_EINVAL;
    }
    *tail_out = NULL;
    if (cb == NULL) {
        return MRD_EINVAL;
    }
    rv = client_tail_new(client, stream, from, with_cursor, cursor_from, &tail);
    if (rv != MRD_OK) {
        return rv;
    }
    tail->cb     = cb;
    tail->err_cb = err_cb;
    tail->arg    = arg;
    if (pthread_create(&tail->thread, NULL, client_tail_main, tail) != 0) {
        rv = MRD_ENOMEM;
        goto fail;
    }
    tail->has_thread = true;
    *tail_out        = tail;
    return MRD_OK;

fail:
    client_tail_free(tail);
    return rv;
}

int
mrd_tail_start(mrd_client *client, const char *stream, uint64_t from,
    mrd_tail_cb cb, mrd_tail_err_cb err_cb, void *arg, mrd_tail **tail_out)
{
    return client_tail_start(
        client, stream, from, false, NULL, cb, err_cb, arg, tail_out);
}

int
mrd_tail_start_cursor(mrd_client *client, const char *stream,
    const mrd_cursor *from, mrd_tail_cb cb, mrd_tail_err_cb err_cb, void *arg,
    mrd_tail **tail_out)
{
    return client_tail_start(
        client, stream, 0, true, from, cb, err_cb, arg, tail_out);
}

void
mrd_tail_close(mrd_tail *tail)
{
    if (tail == NULL) {
        return;
    }
    if (tail->has_thread) {
        client_cancel_fire(&tail->cancel);
        pthread_mutex_lock(&tail->cancel.mtx);
        pthread_cond_broadcast(&tail->wake_cv);
        pthread_mutex_unlock(&tail->cancel.mtx);
        pthread_join(tail->thread, NULL);
    }
    client_tail_free(tail);
}
