/*
 * plant.c: which planted bug this node has (plant.h). Nothing here is
 * compiled unless the build was configured with -DMRD_PLANTED_BUGS=ON.
 */
#ifdef MRD_PLANTED_BUGS

#include "plant.h"

#include "node.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const node_plant_names[] = {
    [NODE_PLANT_NONE]             = "none",
    [NODE_PLANT_ACK_BEFORE_FSYNC] = "ack-before-fsync",
    [NODE_PLANT_DEDUP_OFF]        = "dedup-off",
    [NODE_PLANT_LWW_MERGE]        = "lww-merge",
    [NODE_PLANT_DROP_BATCH]       = "drop-batch",
};
#define NODE_PLANT_COUNT (sizeof node_plant_names / sizeof node_plant_names[0])

/* Written once by node_plant_setup() before any thread starts. */
static _Atomic int node_plant_current = NODE_PLANT_NONE;

/* ack-before-fsync: the server's answering function (node_server_start). */
static _Atomic(node_plant_answer_fn) node_plant_answer_fn_;
static void *_Atomic                 node_plant_answer_arg;

/* drop-batch: pulled batches seen that would append events. */
static _Atomic unsigned long node_plant_batches;

const char *
node_plant_name(enum node_plant plant)
{
    return (size_t) plant < NODE_PLANT_COUNT ? node_plant_names[plant] : "?";
}

int
node_plant_setup(void)
{
    const char *ok = getenv("MRD_PLANTED_BUGS_OK");
    if (ok == NULL || strcmp(ok, "1") != 0) {
        fprintf(stderr,
            "meridiand: this is a planted-bugs build (MRD_PLANTED_BUGS, for "
            "testing the chaos checker only): it loses or corrupts data on "
            "purpose; refused (set MRD_PLANTED_BUGS_OK=1 to run it)\n");
        return -1;
    }
    const char *name = getenv("MRD_PLANT");
    if (name == NULL || name[0] == '\0') {
        atomic_store(&node_plant_current, NODE_PLANT_NONE);
        return 0;
    }
    for (size_t i = 1; i < NODE_PLANT_COUNT; i++) {
        if (strcmp(name, node_plant_names[i]) == 0) {
            atomic_store(&node_plant_current, (int) i);
            return 0;
        }
    }
    fprintf(stderr,
        "meridiand: MRD_PLANT=%s names no planted bug (ack-before-fsync, "
        "dedup-off, lww-merge, drop-batch, or unset for none): refused\n",
        name);
    return -1;
}

void
node_plant_log(void)
{
    enum node_plant p = node_plant_active();
    if (p == NODE_PLANT_NONE) {
        node_log(NODE_LOG_WARN,
            "planted-bugs build, no bug active (MRD_PLANT unset)", NULL);
        return;
    }
    char msg[160];
    snprintf(msg, sizeof msg,
        "planted bug active: %s; this node loses or corrupts data on purpose",
        node_plant_name(p));
    node_log(NODE_LOG_WARN, msg, "{s:s}", "plant", node_plant_name(p));
}

enum node_plant
node_plant_active(void)
{
    return (enum node_plant) atomic_load_explicit(
        &node_plant_current, memory_order_relaxed);
}

void
node_plant_answer_set(node_plant_answer_fn fn, void *arg)
{
    atomic_store(&node_plant_answer_arg, arg);
    atomic_store(&node_plant_answer_fn_, fn);
}

bool
node_plant_answer_early(struct node_append **appends, size_t count)
{
    node_plant_answer_fn fn = atomic_load(&node_plant_answer_fn_);
    if (node_plant_active() != NODE_PLANT_ACK_BEFORE_FSYNC || fn == NULL) {
        return false;
    }
    fn(atomic_load(&node_plant_answer_arg), appends, count);
    struct timespec ts = { 0, (long) NODE_PLANT_ACK_DELAY_MS * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) { }
    return true;
}

bool
node_plant_drop_batch(void)
{
    if (node_plant_active() != NODE_PLANT_DROP_BATCH) {
        return false;
    }
    unsigned long n = atomic_fetch_add(&node_plant_batches, 1) + 1;
    return n % NODE_PLANT_DROP_EVERY == 0;
}

#else
/* ISO C wants a translation unit to declare something. */
typedef int node_plant_unused;
#endif /* MRD_PLANTED_BUGS */
