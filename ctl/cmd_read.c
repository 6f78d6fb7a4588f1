/*
 * cmd_read.c: `meridianctl read STREAM [--from N|end] [--backward]
 * [--count N]`.
 *
 * One read returns at most MRD_READ_COUNT_MAX events, and the node may return
 * fewer to keep its reply under its frame limit, so read loops: each round
 * asks for what is still wanted, from the position after the last event it
 * got (before it, backward). It works that position out from the events
 * themselves rather than trusting a cursor, and stops when a round returns
 * nothing, when it reaches the stream's version (forward) or position 0
 * (backward), or when --count events are shown. Every round shows at least
 * one event or ends the loop, so the number of rounds is bounded by --count.
 */
#include "ctl.h"

#include <inttypes.h>
#include <stdlib.h>

struct ctl_read {
    const struct ctl_args *args;
    int                    direction; /* MRD_FORWARD or MRD_BACKWARD */
    uint64_t               from; /* the next round starts here */
    uint64_t               want; /* events still to show */
    uint64_t               shown;
    int64_t                version; /* from the last reply */
    bool                   done;
};

/* Shows one event; a ctl_exit code. */
static int
ctl_read_show(const struct ctl_read *rd, const mrd_event *ev)
{
    if (rd->args->json) {
        return ctl_json_print(ctl_event_json(ev));
    }
    if (rd->shown == 0) {
        ctl_event_table_header();
    }
    ctl_event_table_row(ev);
    return CTL_EXIT_OK;
}

/* Shows a reply's events and moves rd to where the next round starts. */
static int
ctl_read_batch(struct ctl_read *rd, const mrd_events *events)
{
    size_t           n    = mrd_events_count(events);
    const mrd_event *last = NULL;

    rd->version = mrd_events_version(events);
    for (size_t i = 0; i < n && rd->want > 0; i++) {
        last   = mrd_events_at(events, i);
        int rv = ctl_read_show(rd, last);
        if (rv != CTL_EXIT_OK) {
            return rv;
        }
        rd->shown++;
        rd->want--;
    }
    if (last == NULL) {
        rd->done = true; /* nothing more there */
    } else if (rd->direction == MRD_BACKWARD) {
        rd->done = last->position == 0;
        rd->from = last->position - (rd->done ? 0 : 1);
    } else {
        rd->done
            = (rd->version >= 0 && last->position >= (uint64_t) rd->version)
            || last->position >= MRD_POSITION_END - 1;
        rd->from = last->position + 1;
    }
    return CTL_EXIT_OK;
}

static void
ctl_read_footer(const struct ctl_read *rd)
{
    if (rd->shown > 0) {
        printf("(%" PRIu64 " event%s, stream version %" PRId64 ")\n", rd->shown,
            rd->shown == 1 ? "" : "s", rd->version);
    } else if (rd->version < 0) {
        printf("(no events: the stream does not exist)\n");
    } else {
        printf("(no events there; stream version %" PRId64 ")\n", rd->version);
    }
}

/* --cursor: the events the cursor has not seen, on whichever node serves,
 * then the cursor to pass next time. A batch may be empty and not at the
 * end (the node stopped at its scan bound): read on. */
static int
ctl_read_cursor(const struct ctl_args *args, mrd_client *client)
{
    const char     *stream = args->positional[0];
    mrd_cursor     *cursor = NULL;
    struct ctl_read rd     = { .args = args,
            .direction               = MRD_FORWARD,
            .want    = args->count_set ? args->count : CTL_READ_COUNT_DEFAULT,
            .version = MRD_VERSION_NONE };
    int             rv     = CTL_EXIT_OK;

    if (args->from_set || args->backward) {
        return ctl_fail_usage("--cursor takes no --from or --backward");
    }
    if (mrd_cursor_parse(args->cursor, &cursor) != MRD_OK) {
        return ctl_fail_usage("--cursor: '%s' is not a cursor (the start of "
                              "a stream is '1;;')",
            args->cursor);
    }
    while (rd.want > 0 && rv == CTL_EXIT_OK) {
        uint32_t    batch  = rd.want < MRD_READ_COUNT_MAX ? (uint32_t) rd.want
                                                          : MRD_READ_COUNT_MAX;
        mrd_events *events = NULL;
        int err = mrd_read_cursor(client, stream, cursor, batch, 0, &events);
        if (err != MRD_OK) {
            rv = ctl_fail_mrd(err, "read %s from a cursor", stream);
            break;
        }
        size_t n   = mrd_events_count(events);
        rd.version = mrd_events_version(events);
        for (size_t i = 0; i < n && rv == CTL_EXIT_OK; i++) {
            rv = ctl_read_show(&rd, mrd_events_at(events, i));
            rd.shown++;
            rd.want = rd.want > 0 ? rd.want - 1 : 0;
        }
        bool end = mrd_events_end(events);
        mrd_events_free(events);
        if (end) {
            break;
        }
    }
    size_t need = mrd_cursor_format(cursor, NULL, 0);
    char  *text = malloc(need + 1);
    if (text != NULL) {
        mrd_cursor_format(cursor, text, need + 1);
    }
    mrd_cursor_free(cursor);
    if (rv == CTL_EXIT_OK && text != NULL) {
        if (args->json) {
            rv = ctl_json_print(json_pack("{s:s}", "cursor", text));
        } else {
            printf("(%" PRIu64 " event%s, stream version %" PRId64 " on the "
                   "serving node)\ncursor %s\n",
                rd.shown, rd.shown == 1 ? "" : "s", rd.version, text);
        }
    }
    bool oom = text == NULL;
    free(text);
    return oom && rv == CTL_EXIT_OK ? ctl_fail_mrd(MRD_ENOMEM, "cursor") : rv;
}

int
ctl_cmd_read(const struct ctl_args *args, mrd_client *client)
{
    const char     *stream = args->positional[0];
    struct ctl_read rd     = {
            .args      = args,
            .direction = args->backward ? MRD_BACKWARD : MRD_FORWARD,
            .from      = args->backward ? MRD_POSITION_END : 0,
            .want      = args->count_set ? args->count : CTL_READ_COUNT_DEFAULT,
            .version   = MRD_VERSION_NONE,
    };

    if (args->cursor != NULL) {
        return ctl_read_cursor(args, client);
    }
    if (args->from_set) {
        rd.from = args->from;
    }
    while (rd.want > 0 && !rd.done) {
        uint32_t    batch  = rd.want < MRD_READ_COUNT_MAX ? (uint32_t) rd.want
                                                          : MRD_READ_COUNT_MAX;
        mrd_events *events = NULL;
        int         err
            = mrd_read(client, stream, rd.from, rd.direction, batch, &events);
        if (err != MRD_OK) {
            return ctl_fail_mrd(err, "read %s", stream);
        }
        int rv = ctl_read_batch(&rd, events);
        mrd_events_free(events);
        if (rv != CTL_EXIT_OK) {
            return rv;
        }
    }
    if (!args->json) {
        ctl_read_footer(&rd);
    }
    return CTL_EXIT_OK;
}
