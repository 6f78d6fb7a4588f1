/*
 * cmd_status.c: `meridianctl status` and `meridianctl verify`.
 *
 * status shows what every node says of itself and what the nodes say of
 * each other (cluster.c works out health and lag). verify compares every
 * shard's replicas by digest over the events all of them have reported, so
 * a busy cluster verifies too: what is still in flight is lag, not a
 * difference.
 */
#include "ctl.h"

#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "topo.h"

_Static_assert(TOPO_NODES_MAX <= CTL_VIEW_NODES_MAX, "a view holds them all");

static struct ctl_cluster ctl_status_view; /* big: off the stack */

static volatile sig_atomic_t ctl_status_stop;

static void
ctl_status_sigint(int sig)
{
    (void) sig;
    ctl_status_stop = 1;
}

static json_t *
ctl_status_doc(const struct ctl_cluster *c)
{
    json_t *nodes  = json_array();
    json_t *shards = json_array();

    for (uint32_t i = 0; i < c->count; i++) {
        const struct ctl_node *n    = &c->nodes[i];
        json_t                *node = json_object_get(n->status, "node");
        json_t                *st   = json_object_get(n->status, "storage");
        json_array_append_new(nodes,
            json_pack("{s:o, s:s, s:s, s:s, s:s, s:O?, s:O?, s:O?, s:O?, "
                      "s:O?, s:o?}",
                "id", ctl_json_u64(n->id), "name", n->name, "region",
                json_object_get(node, "region") != NULL
                    ? json_string_value(json_object_get(node, "region"))
                    : n->region,
                "address", n->address, "health", ctl_node_health(c, n),
                "version", json_object_get(node, "version"), "uptime_ms",
                json_object_get(node, "uptime_ms"), "log_events",
                json_object_get(st, "log_events"), "metrics_url",
                json_object_get(node, "metrics_url"), "fence",
                json_object_get(n->status, "fence"), "error",
                n->status == NULL ? json_string(
                    n->detail[0] != '\0' ? n->detail : mrd_strerror(n->err))
                                  : NULL));
    }
    for (uint32_t s = 0; s < c->shard_count; s++) {
        json_t *reps = json_array();
        for (uint32_t i = 0; i < c->count; i++) {
            const struct ctl_node *n = &c->nodes[i];
            if (!ctl_node_replica(n, s)) {
                continue;
            }
            uint64_t ev;
            double   sec;
            ctl_replica_lag(c, s, n, &ev, &sec);
            json_array_append_new(reps,
                json_pack("{s:s, s:o, s:o, s:f}", "node", n->name, "id",
                    ctl_json_u64(n->id), "lag_events", ctl_json_u64(ev),
                    "lag_seconds", sec));
        }
        json_array_append_new(shards,
            json_pack("{s:i, s:o}", "shard", (int) s, "replicas", reps));
    }
    return json_pack("{s:{s:s, s:o, s:i}, s:o, s:o}", "cluster", "id",
        c->cluster_hex, "topology_version", ctl_json_u64(c->version), "shards",
        (int) c->shard_count, "nodes", nodes, "shards", shards);
}

static void
ctl_status_print(const struct ctl_cluster *c)
{
    char up[32];

    if (c->has_topology) {
        printf("cluster %s, topology version %" PRIu64 ", %" PRIu32
               " shards, %" PRIu32 " nodes\n\n",
            c->cluster_hex, c->version, c->shard_count, c->count);
    } else {
        printf("%" PRIu32 " nodes without a topology (--peers), %" PRIu32
               " shards\n\n",
            c->count, c->shard_count);
    }
    printf("%-12s %-12s %4s %-8s %-26s %-8s %-9s %10s  %s\n", "REGION", "NODE",
        "ID", "HEALTH", "ADDRESS", "VERSION", "UPTIME", "EVENTS", "METRICS");
    for (uint32_t i = 0; i < c->count; i++) {
        const struct ctl_node *n    = &c->nodes[i];
        json_t                *node = json_object_get(n->status, "node");
        const char *region = json_string_value(json_object_get(node, "region"));
        const char *metrics
            = json_string_value(json_object_get(node, "metrics_url"));
        const char *version
            = json_string_value(json_object_get(node, "version"));
        ctl_duration_format(
            (uint64_t) json_integer_value(json_object_get(node, "uptime_ms")),
            up, sizeof up);
        printf("%-12s %-12s %4" PRIu64 " %-8s %-26s %-8s %-9s %10" PRIu64
               "  %s\n",
            region != NULL ? region : n->region, n->name, n->id,
            ctl_node_health(c, n), n->address, version != NULL ? version : "-",
            n->status != NULL ? up : "-",
            (uint64_t) json_integer_value(json_object_get(
                json_object_get(n->status, "storage"), "log_events")),
            metrics != NULL && metrics[0] != '\0' ? metrics : "-");
        if (n->status == NULL) {
            printf("    %s: %s\n", n->name,
                n->detail[0] != '\0' ? n->detail : mrd_strerror(n->err));
        }
    }
    printf("\n%-6s %s\n", "SHARD", "REPLICAS: lag in events / seconds");
    for (uint32_t s = 0; s < c->shard_count; s++) {
        printf("%-6" PRIu32, s);
        for (uint32_t i = 0; i < c->count; i++) {
            const struct ctl_node *n = &c->nodes[i];
            if (!ctl_node_replica(n, s)) {
                continue;
            }
            uint64_t ev;
            double   sec;
            ctl_replica_lag(c, s, n, &ev, &sec);
            printf(" %s %" PRIu64 "/%.1fs", n->name, ev, sec);
        }
        printf("\n");
    }
}

int
ctl_cmd_status(const struct ctl_args *args, mrd_client *client)
{
    struct ctl_cluster *c = &ctl_status_view;
    int      rv = ctl_cluster_open(args, client, CTL_NODE_TIMEOUT_MS, c);
    uint32_t interval
        = args->interval_ms != 0 ? args->interval_ms : CTL_WATCH_MS_DEFAULT;

    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    if (args->watch) {
        signal(SIGINT, ctl_status_sigint);
    }
    do {
        uint64_t start = mrd_now_mono_ms();
        ctl_cluster_poll(c);
        rv = CTL_EXIT_OK;
        for (uint32_t i = 0; i < c->count; i++) {
            if (c->nodes[i].status == NULL) {
                rv = CTL_EXIT_FAIL;
            }
        }
        if (args->json) {
            int prv = ctl_json_print(ctl_status_doc(c));
            if (prv != CTL_EXIT_OK) {
                rv = prv;
                break;
            }
        } else {
            if (args->watch) {
                printf("\033[H\033[2J"); /* a fresh screen per refresh */
            }
            ctl_status_print(c);
        }
        if (ctl_stdout_flush() != CTL_EXIT_OK) {
            rv = CTL_EXIT_FAIL;
            break;
        }
        while (args->watch && !ctl_status_stop
            && mrd_now_mono_ms() - start < interval) {
            struct timespec ts = { 0, 50 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
    } while (args->watch && !ctl_status_stop);
    ctl_cluster_close(c);
    return rv;
}

/* --------------------------------------------------------------- verify -- */

/* One event of a shard log, as verify lists it. */
struct ctl_vev {
    mrd_dot  dot;
    uint64_t log_seq;
    char     stream[MRD_STREAM_NAME_SIZE_MAX + 1];
    char     type[64];
};

static int
ctl_dot_cmp(const void *a, const void *b)
{
    const struct ctl_vev *x = a, *y = b;
    if (x->dot.origin != y->dot.origin) {
        return x->dot.origin < y->dot.origin ? -1 : 1;
    }
    return x->dot.seq < y->dot.seq ? -1 : x->dot.seq > y->dot.seq;
}

/* Every event of the shard's log on n that the cut covers, in log order. */
static int
ctl_verify_read(struct ctl_node *n, uint32_t shard, const uint64_t *cut,
    size_t cut_n, struct ctl_vev **out, size_t *count)
{
    uint64_t after = 0;
    size_t   cap   = 0;

    *out   = NULL;
    *count = 0;
    for (;;) {
        mrd_events *evs = NULL;
        int         err
            = mrd_read_log(n->client, shard, after, MRD_READ_COUNT_MAX, &evs);
        if (err != MRD_OK) {
            return err;
        }
        for (size_t i = 0; i < mrd_events_count(evs); i++) {
            const mrd_event *e       = mrd_events_at(evs, i);
            bool             covered = false;
            for (size_t j = 0; j < cut_n && !covered; j++) {
                covered = cut[2 * j] == e->dot.origin
                    && e->dot.seq <= cut[2 * j + 1];
            }
            if (!covered) {
                continue;
            }
            if (*count == cap) {
                cap               = cap * 2 + 1024;
                struct ctl_vev *p = realloc(*out, cap * sizeof(**out));
                if (p == NULL) {
                    mrd_events_free(evs);
                    return MRD_ENOMEM;
                }
                *out = p;
            }
            struct ctl_vev *v = &(*out)[(*count)++];
            v->dot            = e->dot;
            v->log_seq        = e->log_seq;
            snprintf(v->stream, sizeof v->stream, "%s", e->stream);
            snprintf(v->type, sizeof v->type, "%s", e->type);
        }
        bool end = mrd_events_end(evs) || mrd_events_count(evs) == 0;
        after    = mrd_events_next(evs);
        mrd_events_free(evs);
        if (end) {
            return MRD_OK;
        }
    }
}

/* The first event in a's log order that b lacks (or holds twice), into
 * what; false when there is none. */
static bool
ctl_verify_first(const struct ctl_vev *a, size_t an, const struct ctl_vev *b,
    size_t bn, struct ctl_vev *what)
{
    struct ctl_vev *sb    = malloc((bn + 1) * sizeof(*sb));
    bool            found = false;
    if (sb == NULL) {
        return false;
    }
    memcpy(sb, b, bn * sizeof(*sb));
    qsort(sb, bn, sizeof(*sb), ctl_dot_cmp);
    for (size_t i = 0; i < an && !found; i++) {
        if (bsearch(&a[i], sb, bn, sizeof(*sb), ctl_dot_cmp) == NULL) {
            *what = a[i];
            found = true;
        }
    }
    free(sb);
    return found;
}

/* Finds and describes where replica n differs from the reference ref. */
static json_t *
ctl_verify_diff(struct ctl_node *ref, struct ctl_node *n, uint32_t shard,
    const uint64_t *cut, size_t cut_n)
{
    struct ctl_vev *a = NULL, *b = NULL, what;
    size_t          an = 0, bn = 0;
    json_t         *d = NULL;

    int err = ctl_verify_read(ref, shard, cut, cut_n, &a, &an);
    if (err == MRD_OK) {
        err = ctl_verify_read(n, shard, cut, cut_n, &b, &bn);
    }
    if (err != MRD_OK) {
        d = json_pack("{s:s}", "error", mrd_strerror(err));
    } else if (ctl_verify_first(a, an, b, bn, &what)) {
        d = json_pack("{s:s, s:s, s:[o, o], s:s, s:s, s:o}", "kind", "missing",
            "node", n->name, "dot", ctl_json_u64(what.dot.origin),
            ctl_json_u64(what.dot.seq), "stream", what.stream, "type",
            what.type, "held_by", json_string(ref->name));
    } else if (ctl_verify_first(b, bn, a, an, &what)) {
        d = json_pack("{s:s, s:s, s:[o, o], s:s, s:s, s:o}", "kind", "extra",
            "node", n->name, "dot", ctl_json_u64(what.dot.origin),
            ctl_json_u64(what.dot.seq), "stream", what.stream, "type",
            what.type, "not_held_by", json_string(ref->name));
    } else {
        /* The same dots: a duplicate, or a record whose bytes differ. */
        d = json_pack("{s:s, s:s, s:I, s:I}", "kind",
            an != bn ? "duplicate" : "content", "node", n->name, "events",
            (json_int_t) bn, "reference_events", (json_int_t) an);
    }
    free(a);
    free(b);
    return d;
}

int
ctl_cmd_verify(const struct ctl_args *args, mrd_client *client)
{
    static uint64_t     cut[2 * 1024];
    struct ctl_cluster *c = &ctl_status_view;
    int      rv        = ctl_cluster_open(args, client, CTL_NODE_TIMEOUT_MS, c);
    uint32_t shards_ok = 0;
    uint64_t events    = 0;

    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    ctl_cluster_poll(c);
    json_t *diffs = json_array();
    for (uint32_t i = 0; i < c->count; i++) {
        if (c->nodes[i].status == NULL) {
            json_array_append_new(diffs,
                json_pack("{s:s, s:s, s:s}", "kind", "unreachable", "node",
                    c->nodes[i].name, "error", mrd_strerror(c->nodes[i].err)));
        }
    }
    for (uint32_t s = 0; s < c->shard_count; s++) {
        struct ctl_node *reps[CTL_VIEW_NODES_MAX];
        uint32_t         nr = 0;
        for (uint32_t i = 0; i < c->count; i++) {
            if (ctl_node_replica(&c->nodes[i], s)) {
                reps[nr++] = &c->nodes[i];
            }
        }
        if (nr == 0) {
            continue;
        }
        /* The meet of the replicas' vectors: what every one has reported. */
        size_t  cn = 0;
        size_t  k;
        json_t *e;
        json_array_foreach(
            json_object_get(ctl_node_shard(reps[0], s), "vv"), k, e)
        {
            uint64_t o   = (uint64_t) json_integer_value(json_array_get(e, 0));
            uint64_t min = (uint64_t) json_integer_value(json_array_get(e, 1));
            for (uint32_t r = 1; r < nr; r++) {
                uint64_t v = ctl_vv_get(
                    json_object_get(ctl_node_shard(reps[r], s), "vv"), o);
                min = v < min ? v : min;
            }
            if (min > 0 && cn < 1024) {
                cut[2 * cn]     = o;
                cut[2 * cn + 1] = min;
                cn++;
            }
        }
        mrd_shard_digest ref, d;
        uint32_t         ref_i = nr;
        bool             same  = true;
        for (uint32_t r = 0; r < nr; r++) {
            int err = mrd_shard_digest_get(reps[r]->client, s, cut, cn, &d);
            if (err != MRD_OK) {
                same = false;
                json_array_append_new(diffs,
                    json_pack("{s:s, s:i, s:s, s:s}", "kind", "unreachable",
                        "shard", (int) s, "node", reps[r]->name, "error",
                        mrd_strerror(err)));
                continue;
            }
            if (ref_i == nr) {
                ref   = d;
                ref_i = r;
                continue;
            }
            if (d.events != ref.events
                || memcmp(d.sum, ref.sum, sizeof d.sum) != 0) {
                same      = false;
                json_t *x = ctl_verify_diff(reps[ref_i], reps[r], s, cut, cn);
                json_object_set_new(x, "shard", json_integer(s));
                json_array_append_new(diffs, x);
            }
        }
        if (same) {
            shards_ok++;
            events += ref_i < nr ? ref.events : 0;
        }
    }
    ctl_cluster_close(c);
    bool ok = json_array_size(diffs) == 0;
    if (args->json) {
        rv = ctl_json_print(json_pack("{s:b, s:i, s:i, s:o, s:o}", "ok", ok,
            "shards", (int) c->shard_count, "shards_agreeing", (int) shards_ok,
            "events_compared", ctl_json_u64(events), "differences", diffs));
        return rv != CTL_EXIT_OK ? rv : ok ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    }
    size_t  i;
    json_t *x;
    json_array_foreach(diffs, i, x)
    {
        const char *kind = json_string_value(json_object_get(x, "kind"));
        char       *line = json_dumps(x, JSON_COMPACT);
        printf("DIFFERS %s: %s\n", kind != NULL ? kind : "?", line);
        free(line);
    }
    json_decref(diffs);
    printf("%s: %" PRIu32 " of %" PRIu32 " shards agree on every replica "
           "(%" PRIu64 " event%s compared)\n",
        ok ? "OK" : "FAILED", shards_ok, c->shard_count, events,
        events == 1 ? "" : "s");
    rv = ctl_stdout_flush();
    return rv != CTL_EXIT_OK ? rv : ok ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}
