/*
 * cluster.c: the whole cluster as the operations commands (status, verify,
 * drill, topology --push) see it.
 *
 * The nodes come from the signed topology that a --node sends (verified
 * like any other: topo_open_signed), or, for nodes run with --peers and no
 * topology, from the --node list itself. Each node gets a client of its
 * own, opened on its address only, so every call goes to that node and no
 * other; a poll asks every node for its STATUS document at once, one
 * thread per node, so a node that does not answer costs one timeout, not
 * one per node.
 *
 * Lag is worked out here from what the nodes say, not taken from any one
 * of them: for each shard, the join of every answering replica's vector is
 * what the cluster holds, and a replica's lag is what it lacks of that.
 * The seconds come from the nodes' own view (how long a peer has looked
 * behind to them), the largest any node reports for that replica.
 */
#include "ctl.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "topo.h"

static struct topo ctl_cluster_topo; /* big: off the stack */

int
ctl_client_open_on(const struct ctl_args *args, const char *const *addrs,
    size_t count, const char *region, uint32_t timeout_ms, mrd_client **out)
{
    mrd_client_opts opts;

    mrd_client_opts_init(&opts);
    opts.addresses     = addrs;
    opts.address_count = count;
    opts.key_file      = args->key_file;
    opts.keyring_file  = args->keyring_file;
    opts.region        = region != NULL && region[0] != '\0' ? region : NULL;
    opts.timeout_ms    = timeout_ms;
    if (opts.attempt_timeout_ms > timeout_ms) {
        opts.attempt_timeout_ms = timeout_ms;
    }
    return mrd_client_open(&opts, out);
}

static int
ctl_node_client(
    const struct ctl_args *args, struct ctl_node *n, uint32_t timeout_ms)
{
    const char *addr[1] = { n->address };
    int rv = ctl_client_open_on(args, addr, 1, NULL, timeout_ms, &n->client);
    if (rv != MRD_OK) {
        return ctl_fail_mrd(
            rv, "open a client for %s (%s)", n->name, n->address);
    }
    return CTL_EXIT_OK;
}

int
ctl_cluster_open(const struct ctl_args *args, mrd_client *client,
    uint32_t timeout_ms, struct ctl_cluster *c)
{
    void       *data    = NULL;
    size_t      len     = 0;
    uint64_t    version = 0;
    const char *why     = NULL;

    memset(c, 0, sizeof(*c));
    int err = mrd_topology_get(client, 0, &version, &data, &len);
    if (err == MRD_OK) {
        err = topo_open_signed(data, len, &ctl_cluster_topo, &why);
        mrd_free(data);
        if (err != MRD_OK) {
            return ctl_fail_why(
                err, why, "the topology %s sent", args->nodes[0]);
        }
        const struct topo *t = &ctl_cluster_topo;
        c->has_topology      = true;
        c->version           = t->version;
        c->shard_count       = t->shard_count;
        for (size_t i = 0; i < sizeof t->cluster_id; i++) {
            snprintf(c->cluster_hex + 2 * i, 3, "%02x", t->cluster_id[i]);
        }
        for (uint32_t i = 0; i < t->node_count; i++) {
            const struct topo_node *tn = &t->nodes[i];
            if (tn->state == TOPO_NODE_REMOVED) {
                continue;
            }
            struct ctl_node *n = &c->nodes[c->count++];
            n->id              = tn->id;
            n->draining        = tn->state == TOPO_NODE_DRAINING;
            n->region_draining = t->regions[tn->region].draining;
            snprintf(n->name, sizeof n->name, "%s", tn->name);
            snprintf(
                n->region, sizeof n->region, "%s", t->regions[tn->region].name);
            snprintf(n->address, sizeof n->address, "%s", tn->address);
        }
    } else if (err == MRD_ENOTFOUND) {
        /* Nodes run with --peers: the ones named on the command line. */
        for (size_t i = 0; i < args->node_count && i < CTL_NODES_MAX; i++) {
            struct ctl_node *n = &c->nodes[c->count++];
            snprintf(n->name, sizeof n->name, "%s", args->nodes[i]);
            snprintf(n->address, sizeof n->address, "%s", args->nodes[i]);
        }
    } else {
        return ctl_fail_mrd(err, "topology from %s", args->nodes[0]);
    }
    for (uint32_t i = 0; i < c->count; i++) {
        int rv = ctl_node_client(args, &c->nodes[i], timeout_ms);
        if (rv != CTL_EXIT_OK) {
            ctl_cluster_close(c);
            return rv;
        }
    }
    return CTL_EXIT_OK;
}

void
ctl_cluster_close(struct ctl_cluster *c)
{
    for (uint32_t i = 0; i < c->count; i++) {
        mrd_client_close(c->nodes[i].client);
        json_decref(c->nodes[i].status);
        c->nodes[i].client = NULL;
        c->nodes[i].status = NULL;
    }
    c->count = 0;
}

struct ctl_node *
ctl_cluster_find(struct ctl_cluster *c, const char *name)
{
    for (uint32_t i = 0; i < c->count; i++) {
        if (strcmp(c->nodes[i].name, name) == 0) {
            return &c->nodes[i];
        }
    }
    return NULL;
}

static void *
ctl_poll_one(void *arg)
{
    struct ctl_node *n    = arg;
    char            *text = NULL;

    n->err = mrd_node_status_get(n->client, &text);
    json_decref(n->status);
    n->status    = NULL;
    n->detail[0] = '\0';
    if (n->err != MRD_OK) {
        snprintf(n->detail, sizeof n->detail, "%s", mrd_errdetail());
        return NULL;
    }
    json_error_t jerr;
    n->status = json_loads(text, 0, &jerr);
    mrd_free(text);
    if (n->status == NULL || !json_is_object(n->status)) {
        json_decref(n->status);
        n->status = NULL;
        n->err    = MRD_EPROTO;
        snprintf(n->detail, sizeof n->detail, "status is not a JSON object");
        return NULL;
    }
    if (n->id == 0) { /* static mode: learn who answered */
        n->id = (uint64_t) json_integer_value(
            json_object_get(json_object_get(n->status, "node"), "id"));
    }
    return NULL;
}

void
ctl_cluster_poll(struct ctl_cluster *c)
{
    pthread_t th[TOPO_NODES_MAX];
    bool      started[TOPO_NODES_MAX];

    for (uint32_t i = 0; i < c->count; i++) {
        started[i]
            = pthread_create(&th[i], NULL, ctl_poll_one, &c->nodes[i]) == 0;
        if (!started[i]) {
            ctl_poll_one(&c->nodes[i]);
        }
    }
    for (uint32_t i = 0; i < c->count; i++) {
        if (started[i]) {
            pthread_join(th[i], NULL);
        }
    }
    if (c->shard_count == 0) {
        for (uint32_t i = 0; i < c->count; i++) {
            json_t *s = json_object_get(c->nodes[i].status, "shards");
            if (json_is_array(s)) {
                c->shard_count = (uint32_t) json_array_size(s);
                break;
            }
        }
    }
}

/* --------------------------------------------------------------- views -- */

json_t *
ctl_node_shard(const struct ctl_node *n, uint32_t shard)
{
    json_t *s = json_object_get(n->status, "shards");
    json_t *e = json_array_get(s, shard);
    return json_is_object(e) ? e : NULL;
}

bool
ctl_node_replica(const struct ctl_node *n, uint32_t shard)
{
    return json_is_true(json_object_get(ctl_node_shard(n, shard), "replica"));
}

uint64_t
ctl_vv_get(const json_t *vv, uint64_t origin)
{
    size_t  i;
    json_t *e;
    json_array_foreach(vv, i, e)
    {
        if ((uint64_t) json_integer_value(json_array_get(e, 0)) == origin) {
            return (uint64_t) json_integer_value(json_array_get(e, 1));
        }
    }
    return 0;
}

void
ctl_vv_entry(const json_t *e, uint64_t *origin, uint64_t *seq)
{
    *origin = (uint64_t) json_integer_value(json_array_get(e, 0));
    *seq    = (uint64_t) json_integer_value(json_array_get(e, 1));
}

size_t
ctl_shard_join(const struct ctl_cluster *c, uint32_t shard, const bool *pick,
    uint64_t *pairs, size_t max, uint64_t *held_max)
{
    size_t n  = 0;
    *held_max = 0;
    for (uint32_t i = 0; i < c->count; i++) {
        json_t *sh = ctl_node_shard(&c->nodes[i], shard);
        if (sh == NULL
            || (pick != NULL ? !pick[i]
                             : !ctl_node_replica(&c->nodes[i], shard))) {
            continue;
        }
        uint64_t held
            = (uint64_t) json_integer_value(json_object_get(sh, "log_events"));
        if (held > *held_max) {
            *held_max = held;
        }
        size_t  k;
        json_t *e;
        json_array_foreach(json_object_get(sh, "vv"), k, e)
        {
            uint64_t o, s;
            size_t   j = 0;
            ctl_vv_entry(e, &o, &s);
            while (j < n && pairs[2 * j] != o) {
                j++;
            }
            if (j == n && n < max) {
                pairs[2 * n]     = o;
                pairs[2 * n + 1] = 0;
                n++;
            }
            if (j < n && s > pairs[2 * j + 1]) {
                pairs[2 * j + 1] = s;
            }
        }
    }
    return n;
}

/* The first seq of the current life of node id, as it says (0: unknown). */
static uint64_t
ctl_life_seq(const struct ctl_cluster *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->count; i++) {
        if (c->nodes[i].id == id) {
            return (uint64_t) json_integer_value(json_object_get(
                json_object_get(c->nodes[i].status, "node"), "life_seq"));
        }
    }
    return 0;
}

void
ctl_replica_lag(const struct ctl_cluster *c, uint32_t shard,
    const struct ctl_node *r, uint64_t *events, double *seconds)
{
    static uint64_t pairs[2 * 1024];
    uint64_t        held_max;
    size_t          n  = ctl_shard_join(c, shard, NULL, pairs, 1024, &held_max);
    json_t         *vv = json_object_get(ctl_node_shard(r, shard), "vv");

    *events = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t have = ctl_vv_get(vv, pairs[2 * i]);
        if (pairs[2 * i + 1] > have) {
            /* Seqs are dense within a life of the origin; a new life starts
             * far above the last (NODE_LIFE_SEQ_SHIFT): count from its
             * start when the replica has nothing of it yet. */
            uint64_t base = ctl_life_seq(c, pairs[2 * i]);
            uint64_t from = have > base ? have : base;
            uint64_t d = pairs[2 * i + 1] > from ? pairs[2 * i + 1] - from : 0;
            *events += d < held_max ? d : held_max;
        }
    }
    if (*events > held_max) {
        *events = held_max;
    }
    *seconds = 0;
    for (uint32_t i = 0; i < c->count; i++) {
        size_t  k;
        json_t *e;
        json_array_foreach(json_object_get(c->nodes[i].status, "lag"), k, e)
        {
            if ((uint32_t) json_integer_value(json_object_get(e, "shard"))
                    == shard
                && (uint64_t) json_integer_value(json_object_get(e, "peer"))
                    == r->id) {
                double s = json_number_value(json_object_get(e, "seconds"));
                if (s > *seconds) {
                    *seconds = s;
                }
            }
        }
    }
    if (*events == 0) {
        *seconds = 0; /* the nodes' view may be a poll behind */
    }
}

void
ctl_cluster_lag(const struct ctl_cluster *c, struct ctl_lag *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t s = 0; s < c->shard_count; s++) {
        for (uint32_t i = 0; i < c->count; i++) {
            if (!ctl_node_replica(&c->nodes[i], s)) {
                continue;
            }
            uint64_t ev;
            double   sec;
            ctl_replica_lag(c, s, &c->nodes[i], &ev, &sec);
            out->events_sum += ev;
            out->events_max  = ev > out->events_max ? ev : out->events_max;
            out->seconds_max = sec > out->seconds_max ? sec : out->seconds_max;
        }
    }
}

bool
ctl_cluster_converged(const struct ctl_cluster *c, uint64_t *lagging)
{
    struct ctl_lag lag;
    *lagging = 0;
    for (uint32_t i = 0; i < c->count; i++) {
        if (c->nodes[i].status == NULL) {
            return false;
        }
    }
    ctl_cluster_lag(c, &lag);
    *lagging = lag.events_sum;
    return *lagging == 0;
}

const char *
ctl_node_health(const struct ctl_cluster *c, const struct ctl_node *n)
{
    if (n->status == NULL) {
        return "down";
    }
    json_t *fence = json_object_get(n->status, "fence");
    if (json_is_true(json_object_get(fence, "active"))) {
        /* Refusing clients: fenced; only cut off from some peers: a
         * drill's partition (or the far side of a fence). */
        return json_is_true(json_object_get(fence, "clients")) ? "fenced"
                                                               : "cut-off";
    }
    if (json_is_true(
            json_object_get(json_object_get(n->status, "node"), "joining"))) {
        return "joining"; /* rebuilding from its peers: no appends yet */
    }
    if (n->draining || n->region_draining) {
        return "drained";
    }
    /* Suspect when most of the nodes that answered see it so. */
    uint32_t seen = 0, suspect = 0;
    for (uint32_t i = 0; i < c->count; i++) {
        size_t  k;
        json_t *p;
        json_array_foreach(json_object_get(c->nodes[i].status, "peers"), k, p)
        {
            if ((uint64_t) json_integer_value(json_object_get(p, "id"))
                != n->id) {
                continue;
            }
            const char *l = json_string_value(json_object_get(p, "liveness"));
            if (l != NULL && strcmp(l, "unknown") != 0) {
                seen++;
                suspect += strcmp(l, "alive") != 0;
            }
        }
    }
    return seen > 0 && 2 * suspect > seen ? "suspect" : "up";
}

/* ------------------------------------------------------------ durations -- */

bool
ctl_parse_duration_ms(const char *s, uint64_t max_ms, uint64_t *out)
{
    char              *end = NULL;
    unsigned long long v;

    if (s == NULL || s[0] < '0' || s[0] > '9') {
        return false;
    }
    v             = strtoull(s, &end, 10);
    uint64_t mult = 1000; /* bare numbers are seconds */
    if (strcmp(end, "ms") == 0) {
        mult = 1;
    } else if (strcmp(end, "s") == 0 || *end == '\0') {
        mult = 1000;
    } else if (strcmp(end, "m") == 0) {
        mult = 60000;
    } else if (strcmp(end, "h") == 0) {
        mult = 3600000;
    } else {
        return false;
    }
    if (v > max_ms / mult) {
        return false;
    }
    *out = (uint64_t) v * mult;
    return *out <= max_ms;
}

void
ctl_duration_format(uint64_t ms, char *buf, size_t size)
{
    if (ms < 1000) {
        snprintf(buf, size, "%" PRIu64 "ms", ms);
    } else if (ms < 60000) {
        snprintf(buf, size, "%.1fs", (double) ms / 1000.0);
    } else if (ms < 3600000) {
        snprintf(buf, size, "%" PRIu64 "m%02" PRIu64 "s", ms / 60000,
            (ms / 1000) % 60);
    } else {
        snprintf(buf, size, "%" PRIu64 "h%02" PRIu64 "m", ms / 3600000,
            (ms / 60000) % 60);
    }
}
