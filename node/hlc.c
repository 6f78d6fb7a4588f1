/*
 * hlc.c: the hybrid logical clock. A timestamp is wall milliseconds in the
 * top 48 bits and a counter in the low 16, so it is as readable as a clock
 * and still strictly increases when the wall clock stalls or steps back. The
 * store persists the last value in every commit, so a restart never goes
 * backwards either.
 */
#include "node.h"

#define NODE_HLC_LOGICAL_BITS 16u

uint64_t
node_hlc_tick(struct node_hlc *hlc, uint64_t wall_ms)
{
    uint64_t wall = wall_ms << NODE_HLC_LOGICAL_BITS;
    uint64_t next = hlc->last + 1;

    if (wall > next) {
        next = wall;
    }
    MRD_ASSERT(next > hlc->last);
    hlc->last = next;
    return next;
}

bool
node_hlc_observe(struct node_hlc *hlc, uint64_t remote, uint64_t wall_ms,
    uint32_t ahead_max_ms)
{
    uint64_t limit   = (wall_ms + ahead_max_ms) << NODE_HLC_LOGICAL_BITS;
    bool     clamped = remote > limit;

    if (clamped) {
        remote = limit;
    }
    if (remote > hlc->last) {
        hlc->last = remote;
    }
    return clamped;
}
