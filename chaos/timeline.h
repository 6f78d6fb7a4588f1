/*
 * timeline.h: one chaos run on one page. chaos_timeline_write() reads the
 * files meridian-chaos leaves in its run directory and draws them on a
 * shared time axis (seconds since the run started, the history's clock) as
 * one self-contained HTML file, dir/timeline.html: inline SVG and CSS, no
 * scripts, no fonts, no network, so it opens anywhere and can be attached
 * to a bug report as is.
 *
 * What it reads (a missing optional file gives an empty section):
 *
 *   history.jsonl  required: the client operations (history.h), loaded
 *                  with chaos_ops_load() under chaos_limits_default().
 *   faults.jsonl   optional: one fault a line,
 *                  {"fault":"pause","start_t":1703297,"end_t":4502427,
 *                   "detail":"node 1 ..."}; the kind is an opaque string,
 *                  "detail" is optional, other keys are ignored.
 *   final.json     optional: only its top-level "heal_t" (us) is used.
 *   lag.jsonl      optional: {"t":<us>,"node":<1..64>,"events":<n>} lines.
 *   report.txt     optional: a "seed: N" line, shown in the header.
 *
 * What it draws: a header (run dir name, seed, totals), fault bands (one
 * row per kind, one bar per fault with its detail as a tooltip, and a
 * "final heal" line), throughput per second (appends ok / info / fail by
 * completion time, stacked; reads and state reads as lines), append latency
 * per second (ok only, invoke to ok, p50 and max per ack level, by invoke
 * time, log scale) and replication lag per node (max "events" over nodes
 * sampled in the last TIMELINE_LAG_WINDOW_US, minus the node's own).
 */
#ifndef CHAOS_TIMELINE_H
#define CHAOS_TIMELINE_H

#include <stddef.h>

#include "common.h"

/* Reads the run directory dir and writes dir/timeline.html (through a
 * temporary file renamed into place, so a failed call leaves no partial
 * page). MRD_OK on success. Otherwise an MRD_* code and one sentence in why
 * naming the file and, for input, the line: "history.jsonl line 12: ...",
 * "faults.jsonl line 3: \"end_t\" is before \"start_t\"", "cannot write
 * timeline.html: No space left on device". Codes: MRD_EIO (a file cannot be
 * opened, read or written; a missing history.jsonl), MRD_EPROTO or
 * MRD_EINVAL (a malformed line or file), MRD_EFULL (a limit below or in
 * struct chaos_limits), MRD_ENOMEM. why is always NUL-terminated when
 * why_size > 0 (cut to fit); it may be NULL when why_size is 0. Memory is
 * bounded by the limits in timeline.c and history.h. Allocates nothing that
 * outlives the call; two calls on one dir at once race on timeline.html. */
MRD_MUST_USE int chaos_timeline_write(
    const char *dir, char *why, size_t why_size);

#endif /* CHAOS_TIMELINE_H */
