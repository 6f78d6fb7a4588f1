/*
 * routing.c: which node each attempt of a call goes to, and what the
 * client remembers about its nodes' health.
 *
 * Three modes (enum client_route_mode):
 *   ADDRESSES  the caller's addresses in turn, as the library always did:
 *              calls that name no stream, and every call without a topology.
 *   STREAM     a call that names a stream. Its candidate list is made from
 *              the cached topology when the call starts (topology.c,
 *              client_topo_route_build(): the shard's replicas in route.c's
 *              order, then the caller's addresses), and made again whenever
 *              a newer version is cached, so a call that met MRD_ENOTREPLICA
 *              goes where the refreshed topology says on its next attempt.
 *   LIST       a fixed list the starter made: topology refreshes.
 * A failed attempt moves the call to its next candidate, wrapping round
 * until the call's deadline; call.c keeps the backoff between attempts.
 *
 * Health: a node whose attempt failed is "suspect" for
 * CLIENT_NODE_SUSPECT_MS, or until it reconnects, and so is a node that
 * has had no connection for longer than a healthy dial takes. Suspect
 * nodes go to the end of later calls' lists, so after one call paid for a
 * dead replica the next ones start at a live one. Answers also feed a
 * smoothed round trip per node, which orders the other regions.
 *
 * Threads: any, including NNG's (a call's later attempts start in its
 * callback). The per-call state is the call's own; node health is atomics.
 * Opening a learned node's socket never touches the network (the dial runs
 * in the background), so it may happen in a callback.
 */
#include "client.h"

#include <string.h>

void
client_route_stream(struct client_call *call, const char *stream, size_t len)
{
    MRD_ASSERT(len > 0 && len <= sizeof call->stream);
    memcpy(call->stream, stream, len);
    call->stream_len   = len;
    call->route        = CLIENT_ROUTE_STREAM;
    call->cand_version = 0;
    call->cand_count   = 0;
    call->cand_pos     = 0;
}

bool
client_node_suspect(const struct client_node *node, uint64_t now_ms)
{
    uint64_t failed = atomic_load(&node->failed_ms);

    if (failed != 0 && now_ms < failed + CLIENT_NODE_SUSPECT_MS
        && atomic_load(&node->up_since_ms) <= failed) {
        return true; /* failed, and has not reconnected since */
    }
    /* No connection for longer than a dial takes while NNG keeps
     * retrying: the node is down (a fresh socket is not). */
    return atomic_load(&node->pipe_count) <= 0
        && now_ms > atomic_load(&node->down_since_ms) + CLIENT_REDIAL_AFTER_MS;
}

/* The candidate the call is at: its node index, opening the node when it
 * has no socket yet. -1 when the list must be made again (a newer topology,
 * or none any more). */
static int
client_route_cand_node(struct client_call *call)
{
    for (uint32_t tries = 0; tries < call->cand_count; tries++) {
        struct client_cand *c = &call->cands[call->cand_pos % call->cand_count];
        if (c->node == CLIENT_CAND_UNOPENED) {
            MRD_ASSERT(call->route == CLIENT_ROUTE_STREAM);
            int idx = client_topo_node_open(
                call->client, call->cand_version, c->topo_id);
            if (idx == CLIENT_CAND_UNOPENED) {
                return -1; /* the topology changed under us */
            }
            c->node = (int16_t) idx;
        }
        if (c->node >= 0) {
            return c->node;
        }
        call->cand_pos++; /* CLIENT_CAND_SKIP: no socket to be had */
    }
    return -1;
}

size_t
client_route_pick(struct client_call *call)
{
    struct mrd_client *client = call->client;

    if (call->route == CLIENT_ROUTE_ADDRESSES) {
        return client_node_pick(client);
    }
    /* Twice at most: a list made again from a version that changes again
     * at once falls back to the caller's addresses for this attempt. */
    for (int round = 0; round < 2; round++) {
        if (call->route == CLIENT_ROUTE_STREAM
            && call->cand_version != atomic_load(&client->topo.version)) {
            if (!client_topo_route_build(call)) {
                break; /* no topology */
            }
        }
        if (call->cand_count > 0) {
            int idx = client_route_cand_node(call);
            if (idx >= 0) {
                return (size_t) idx;
            }
        }
        if (call->route == CLIENT_ROUTE_LIST) {
            break;
        }
        call->cand_version = 0; /* make it again */
    }
    return client_node_pick(client);
}

void
client_route_failed(struct client_call *call, bool node_fault)
{
    struct mrd_client  *client = call->client;
    struct client_node *node   = &client->nodes[call->node];

    MRD_ASSERT(call->node < atomic_load(&client->node_count));
    if (node_fault) {
        uint64_t now_ms = mrd_now_mono_ms();
        atomic_store(&node->failed_ms, now_ms != 0 ? now_ms : 1);
    }
    /* A stream call walks its list while it has one made from the
     * topology; without one it uses the caller's addresses in turn. */
    if (call->route == CLIENT_ROUTE_LIST
        || (call->route == CLIENT_ROUTE_STREAM && call->cand_version != 0)) {
        call->cand_pos++;
        return;
    }
    if (call->node < client->addr_count) {
        client_node_failed(client, call->node);
    }
}

void
client_route_answered(struct client_call *call, uint64_t rtt_us)
{
    struct client_node *node = &call->client->nodes[call->node];

    atomic_store(&node->failed_ms, 0);
    if (rtt_us == 0) {
        return;
    }
    if (rtt_us > UINT32_MAX / 8u) {
        rtt_us = UINT32_MAX / 8u; /* keeps the average's sum in range */
    }
    /* An exponential average with weight 1/8 (TCP's SRTT): racing updates
     * may lose a sample, which an average does not mind. */
    uint32_t old = atomic_load(&node->rtt_us);
    uint32_t avg = old == 0 ? (uint32_t) rtt_us
                            : (uint32_t) ((7u * (uint64_t) old + rtt_us) / 8u);
    atomic_store(&node->rtt_us, avg != 0 ? avg : 1);
}
