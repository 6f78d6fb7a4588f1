/*
 * cmd_tail.c: `meridianctl tail STREAM [--from N|end] [--limit N]
 * [--timeout-ms T]`.
 *
 * Follows a stream with mrd_tail_open/mrd_tail_next and prints each event on
 * one line as it arrives (a table row, or a JSON object with --json), flushed
 * at once so a pipe sees it live. "end" (the default) is resolved to the
 * stream's version + 1 with one info call, so only events appended from now
 * on are shown and the library is never asked for a position it may not
 * know. The wait is cut into CTL_TAIL_SLICE_MS slices: between two slices we
 * look at the SIGINT/SIGTERM flag and at the --timeout-ms deadline, so either
 * ends the tail promptly and cleanly (tail closed, output flushed, exit 0).
 */
#include "ctl.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t ctl_tail_stop;

static void
ctl_tail_signal(int sig)
{
    (void) sig;
    ctl_tail_stop = 1;
}

static void
ctl_tail_signals_catch(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = ctl_tail_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* The position to start from: --from N, else the end of the stream now. */
static int
ctl_tail_from(const struct ctl_args *args, mrd_client *client, uint64_t *out)
{
    mrd_stream_info info;

    if (args->from_set && args->from != MRD_POSITION_END) {
        *out = args->from;
        return CTL_EXIT_OK;
    }
    int err = mrd_stream_info_get(client, args->positional[0], &info);
    if (err != MRD_OK) {
        return ctl_fail_mrd(err, "find the end of %s", args->positional[0]);
    }
    *out = info.exists && info.version >= 0 ? (uint64_t) info.version + 1 : 0;
    return CTL_EXIT_OK;
}

/* Prints a batch, up to the events *left (0: no limit); a ctl_exit code. */
static int
ctl_tail_print(
    const struct ctl_args *args, const mrd_events *events, uint64_t *left)
{
    size_t n = mrd_events_count(events);

    for (size_t i = 0; i < n; i++) {
        const mrd_event *ev = mrd_events_at(events, i);
        if (args->json) {
            int rv = ctl_json_print(ctl_event_json(ev));
            if (rv != CTL_EXIT_OK) {
                return rv;
            }
        } else {
            ctl_event_table_row(ev);
        }
        if (*left > 0) {
            *left -= 1;
            if (*left == 0) {
                break; /* --limit reached: the rest stays unprinted */
            }
        }
    }
    return ctl_stdout_flush();
}

/* How long the next wait may last: a slice, or less before the deadline;
 * 0 when the deadline has passed. */
static uint32_t
ctl_tail_wait_ms(uint64_t deadline_ms)
{
    if (deadline_ms == 0) {
        return CTL_TAIL_SLICE_MS;
    }
    uint64_t now_ms = mrd_now_mono_ms();
    if (now_ms >= deadline_ms) {
        return 0;
    }
    uint64_t left_ms = deadline_ms - now_ms;
    return left_ms < CTL_TAIL_SLICE_MS ? (uint32_t) left_ms : CTL_TAIL_SLICE_MS;
}

static int
ctl_tail_loop(const struct ctl_args *args, mrd_tail *tail)
{
    uint64_t left = args->limit; /* 0: no limit */
    uint64_t deadline
        = args->timeout_ms != 0 ? mrd_now_mono_ms() + args->timeout_ms : 0;

    while (ctl_tail_stop == 0) {
        uint32_t    wait_ms = ctl_tail_wait_ms(deadline);
        mrd_events *events  = NULL;
        if (wait_ms == 0) {
            break; /* --timeout-ms is up */
        }
        int err = mrd_tail_next(tail, wait_ms, &events);
        if (err == MRD_ETIMEDOUT) {
            continue; /* nothing new in this slice */
        }
        if (err != MRD_OK) {
            return ctl_fail_mrd(err, "tail %s", args->positional[0]);
        }
        int rv = ctl_tail_print(args, events, &left);
        mrd_events_free(events);
        if (rv != CTL_EXIT_OK) {
            return rv;
        }
        if (args->limit > 0 && left == 0) {
            break;
        }
    }
    return CTL_EXIT_OK;
}

int
ctl_cmd_tail(const struct ctl_args *args, mrd_client *client)
{
    const char *stream = args->positional[0];
    uint64_t    from   = 0;
    mrd_tail   *tail   = NULL;

    ctl_tail_signals_catch();
    int rv = ctl_tail_from(args, client, &from);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    int err = mrd_tail_open(client, stream, from, &tail);
    if (err != MRD_OK) {
        return ctl_fail_mrd(err, "tail %s", stream);
    }
    rv = ctl_tail_loop(args, tail);
    mrd_tail_close(tail);
    return rv;
}
