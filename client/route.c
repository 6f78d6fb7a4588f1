/*
 * route.c: the order in which a stream call tries the nodes of the
 * topology, as a pure function of the topology, the shard, the client's
 * home region and what the client has seen of each node.
 *
 * The home region's replicas come first because that is where the client
 * means to write and read: the nearest copy, and the one its other calls
 * of the same stream use, so positions stay those of one node. When none of
 * them answers, the call goes to another region's replicas, the region that
 * answered fastest first, because a replica anywhere takes the write and
 * replication carries it home. Draining regions come last: the operator
 * asked clients to leave them, but they are current and better than no
 * answer. Last of all come the nodes that failed recently: a healthy
 * replica of another region answers sooner than a node that is likely
 * down, and if every node is suspect the order is still the preferred one.
 *
 * Nothing here locks, reads a clock or does I/O: routing.c gives the health
 * through callbacks, and tests/unit/client_route_test.c checks the order.
 */
#include "client.h"

#include <string.h>

/* Ranks of regions: smaller is tried first. */
enum client_route_class {
    CLIENT_ROUTE_HOME      = 0,
    CLIENT_ROUTE_REMOTE    = 1,
    CLIENT_ROUTE_DRAINING  = 2, /* the home region when it drains */
    CLIENT_ROUTE_DRAINING_ = 3, /* any other draining region */
};

struct client_route_region {
    uint32_t index;
    uint32_t class_rank; /* enum client_route_class */
    uint32_t rtt_us; /* lowest known among its replicas; UINT32_MAX: none */
    uint32_t count;
    uint32_t ids[TOPO_RF_MAX];
};

static bool
client_route_before(
    const struct client_route_region *a, const struct client_route_region *b)
{
    if (a->class_rank != b->class_rank) {
        return a->class_rank < b->class_rank;
    }
    if (a->rtt_us != b->rtt_us) {
        return a->rtt_us < b->rtt_us;
    }
    return a->index < b->index;
}

/* Fills one region's entry: its replicas of the shard, its rank. */
static void
client_route_region_fill(const struct topo *t, uint32_t shard, int32_t home,
    const struct client_route_health *health, uint32_t r,
    struct client_route_region *out)
{
    const struct topo_region *region  = &t->regions[r];
    bool                      is_home = home >= 0 && (uint32_t) home == r;

    out->index = r;
    if (region->draining) {
        out->class_rank
            = is_home ? CLIENT_ROUTE_DRAINING : CLIENT_ROUTE_DRAINING_;
    } else {
        out->class_rank = is_home ? CLIENT_ROUTE_HOME : CLIENT_ROUTE_REMOTE;
    }
    out->count  = topo_replicas(t, shard, r, out->ids, TOPO_RF_MAX);
    out->rtt_us = UINT32_MAX;
    for (uint32_t i = 0; i < out->count && health != NULL; i++) {
        uint32_t rtt = health->rtt_us != NULL
            ? health->rtt_us(health->arg, out->ids[i])
            : 0;
        if (rtt != 0 && rtt < out->rtt_us) {
            out->rtt_us = rtt;
        }
    }
}

/* Moves the suspect ids after the healthy ones, keeping each group's
 * order (a stable partition, in place, with a small scratch copy). */
static void
client_route_demote(
    const struct client_route_health *health, uint32_t *ids, uint32_t count)
{
    uint32_t suspect[CLIENT_ROUTE_IDS_MAX];
    uint32_t healthy_count = 0;
    uint32_t suspect_count = 0;

    MRD_ASSERT(count <= CLIENT_ROUTE_IDS_MAX);
    if (health == NULL || health->suspect == NULL) {
        return;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (health->suspect(health->arg, ids[i])) {
            suspect[suspect_count++] = ids[i];
        } else {
            ids[healthy_count++] = ids[i];
        }
    }
    MRD_ASSERT(healthy_count + suspect_count == count);
    memcpy(ids + healthy_count, suspect, suspect_count * sizeof *ids);
}

uint32_t
client_route_order(const struct topo *t, uint32_t shard, int32_t home,
    const struct client_route_health *health, uint32_t *ids_out,
    uint32_t ids_max)
{
    struct client_route_region regions[TOPO_REGIONS_MAX];
    uint32_t                   count = 0;

    MRD_ASSERT(shard < t->shard_count);
    MRD_ASSERT(home < 0 || (uint32_t) home < t->region_count);
    MRD_ASSERT(t->region_count <= TOPO_REGIONS_MAX);
    if (ids_max > CLIENT_ROUTE_IDS_MAX) {
        ids_max = CLIENT_ROUTE_IDS_MAX; /* the demotion's scratch size */
    }
    /* At most 16 regions: an insertion sort is the simplest stable one. */
    for (uint32_t r = 0; r < t->region_count; r++) {
        struct client_route_region cur;
        uint32_t                   j = r;

        client_route_region_fill(t, shard, home, health, r, &cur);
        while (j > 0 && client_route_before(&cur, &regions[j - 1])) {
            regions[j] = regions[j - 1];
            j--;
        }
        regions[j] = cur;
    }
    for (uint32_t r = 0; r < t->region_count; r++) {
        for (uint32_t i = 0; i < regions[r].count && count < ids_max; i++) {
            ids_out[count++] = regions[r].ids[i];
        }
    }
    client_route_demote(health, ids_out, count);
    return count;
}
