/*
 * plant.h: planted bugs, for testing the chaos checker (docs/CHAOS.md,
 * "Planted bugs"). Only a build configured with -DMRD_PLANTED_BUGS=ON has
 * any of this; a normal build compiles none of it.
 *
 * A planted build refuses to start unless MRD_PLANTED_BUGS_OK=1 is set, and
 * then reads MRD_PLANT once at start: unset or empty, the node behaves like
 * a normal one; otherwise it names the one bug this node has, and the node
 * loses or corrupts data on purpose in exactly that way. Each bug is a small
 * hook, `#ifdef MRD_PLANTED_BUGS ... if (node_plant_active() == ...)`, at
 * the place it breaks:
 *
 *   ack-before-fsync  store_write.c node_commit_once, server.c
 *                     node_plant_answer_early: a batch of appends is
 *                     answered before its transaction commits, and the
 *                     commit waits NODE_PLANT_ACK_DELAY_MS after the answer.
 *   dedup-off         store_write.c node_append_apply: a client's
 *                     idempotency key is never looked up.
 *   lww-merge         state.c node_state_apply_remote: a replicated counter
 *                     increment overwrites the counter with the value it
 *                     had at the origin, losing concurrent increments.
 *   drop-batch        repl.c node_replicate_batch: every
 *                     NODE_PLANT_DROP_EVERY-th pulled batch is dropped while
 *                     the read position of the peer's log still moves on.
 */
#ifndef MRD_NODE_PLANT_H
#define MRD_NODE_PLANT_H

#ifdef MRD_PLANTED_BUGS

#include <stdbool.h>
#include <stddef.h>

enum node_plant {
    NODE_PLANT_NONE = 0,
    NODE_PLANT_ACK_BEFORE_FSYNC,
    NODE_PLANT_DEDUP_OFF,
    NODE_PLANT_LWW_MERGE,
    NODE_PLANT_DROP_BATCH,
};

/* ack-before-fsync: how long the commit waits after the early answer; a
 * kill -9 in that window loses acknowledged events. */
#define NODE_PLANT_ACK_DELAY_MS 200u
/* drop-batch: one pulled batch in this many (those that would append
 * events and carry no state ops) is dropped. */
#define NODE_PLANT_DROP_EVERY 20u

/* Reads MRD_PLANTED_BUGS_OK and MRD_PLANT (main, before any thread starts).
 * 0, or -1 after printing why the node must not start. */
int node_plant_setup(void);
/* Logs the loud warning of a planted build (after node_log_setup). */
void node_plant_log(void);
/* The bug this node has; NODE_PLANT_NONE when MRD_PLANT is unset or empty.
 * Set once before any thread starts, so any thread may read it. */
enum node_plant node_plant_active(void);
/* "ack-before-fsync", ...; "none". */
const char *node_plant_name(enum node_plant plant);

/* ack-before-fsync. The server registers how it answers a batch of
 * appends (node_server_start; NULL again in node_server_stop). */
struct node_append;
typedef void (*node_plant_answer_fn)(
    void *arg, struct node_append **appends, size_t count);
void node_plant_answer_set(node_plant_answer_fn fn, void *arg);
/* The store, with a batch applied and its transaction not yet committed:
 * when ack-before-fsync is active and a server registered, answers every
 * append of the batch, then sleeps NODE_PLANT_ACK_DELAY_MS and returns
 * true. From then on the appends belong to their requests again: the
 * caller must not touch them. Writer thread only. */
bool node_plant_answer_early(struct node_append **appends, size_t count);

/* drop-batch: whether to drop this pulled batch (one that would append
 * events). Counts the calls; any thread. */
bool node_plant_drop_batch(void);

#endif /* MRD_PLANTED_BUGS */
#endif /* MRD_NODE_PLANT_H */
