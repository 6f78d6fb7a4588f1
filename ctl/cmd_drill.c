/*
 * cmd_drill.c: `meridianctl drill region-outage | node-loss | partition`.
 *
 * A drill is a real failure made safe: every node is told whom to refuse
 * (PROTO_T_FENCE), with a time limit, so that the failure ends even if
 * this process dies. Between the fence and its lifting, the drill's own
 * workload keeps appending from every region through the client library,
 * exactly as an application would, so the recovery time it reports is the
 * library's real failover, and every acknowledged append is recorded and
 * checked at the end on a replica of every region.
 *
 * Sides. region-outage and node-loss fence a side F (a region's nodes, or
 * one node) from everyone else, both ways, and F refuses clients.
 * partition fences region A from region B both ways and serves clients on
 * both sides; a third region, if any, still talks to both.
 */
#include "ctl.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "topo.h"

/* The workload's pace per client: a drill shows failover, not throughput,
 * and must not starve the cluster it rehearses on. */
#define CTL_DRILL_APPEND_MS 20u
/* Each workload call's deadline: long enough to ride out a failover. */
#define CTL_DRILL_CALL_MS 8000u
/* Progress and lag are sampled this often while fenced. */
#define CTL_DRILL_TICK_MS 1000u
/* Convergence is checked this often after the fence lifts. */
#define CTL_DRILL_CONVERGE_POLL_MS 250u
/* A fence outlives --for by this much, in case the lift is lost. */
#define CTL_DRILL_FENCE_SLACK_MS 60000u
/* Recovery-point events listed in the JSON report (all are counted), and
 * in the human one. */
#define CTL_DRILL_RPO_LIST_MAX 100u
#define CTL_DRILL_RPO_SHOW_MAX 10u
/* A drill starts on a healthy cluster: right after another drill SWIM may
 * still doubt a node for a few seconds, and a new node joins for a while,
 * so it waits this long for that. */
#define CTL_DRILL_HEALTHY_WAIT_MS 60000u
/* And on a workload that flows: every client has had an append
 * acknowledged, or this long has passed, before the fence goes up. */
#define CTL_DRILL_WARMUP_MS 20000u
/* Workload clients in all: regions times --clients. */
#define CTL_DRILL_WORKERS_MAX (TOPO_REGIONS_MAX * CTL_DRILL_CLIENTS_MAX)

enum ctl_drill_kind {
    CTL_DRILL_REGION,
    CTL_DRILL_NODE,
    CTL_DRILL_PARTITION,
};

struct ctl_ack {
    mrd_dot  dot;
    uint64_t at_ms; /* monotonic, when acknowledged */
};

struct ctl_drill;

struct ctl_worker {
    struct ctl_drill *d;
    pthread_t         th;
    bool              started;
    char              region[64];
    char              stream[128];
    mrd_client       *client;
    bool              affected; /* its region is on the fenced side */
    /* Written by the worker, read by the main thread after the join, and
     * the counters also while it runs. */
    struct ctl_ack  *acks;
    size_t           ack_count;
    size_t           ack_cap;
    _Atomic uint64_t ok;
    _Atomic uint64_t failed;
    _Atomic uint64_t unknown; /* timed out: may or may not be written */
};

struct ctl_drill {
    enum ctl_drill_kind kind;
    const char         *kind_name;
    struct ctl_cluster *c;
    bool                side_f[CTL_VIEW_NODES_MAX]; /* fenced, or A */
    bool                side_b[CTL_VIEW_NODES_MAX]; /* partition: B */
    struct ctl_worker  *workers;
    uint32_t            worker_count;
    _Atomic bool        stop;
    _Atomic uint64_t    fence_ms; /* monotonic: when the fence went up */
    char                run_id[32];
};

static struct ctl_cluster ctl_drill_view;

static void
ctl_sleep_ms(uint32_t ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------- workload -- */

static void *
ctl_worker_main(void *arg)
{
    struct ctl_worker *w  = arg;
    mrd_event_in       ev = { .type = "drill", .data = "x", .data_size = 1 };
    mrd_append_result  res;

    while (!atomic_load(&w->d->stop)) {
        int err = mrd_append(w->client, w->stream, &ev, 1, NULL, &res);
        if (err == MRD_OK) {
            if (w->ack_count == w->ack_cap) {
                size_t          cap = w->ack_cap * 2 + 256;
                struct ctl_ack *p   = realloc(w->acks, cap * sizeof(*p));
                if (p == NULL) {
                    atomic_fetch_add(&w->failed, 1);
                    break;
                }
                w->acks    = p;
                w->ack_cap = cap;
            }
            w->acks[w->ack_count++]
                = (struct ctl_ack) { res.first_dot, mrd_now_mono_ms() };
            atomic_fetch_add(&w->ok, 1);
        } else if (err == MRD_ETIMEDOUT) {
            atomic_fetch_add(&w->unknown, 1);
        } else {
            atomic_fetch_add(&w->failed, 1);
        }
        ctl_sleep_ms(CTL_DRILL_APPEND_MS);
    }
    return NULL;
}

/* One client per worker, on every node's address, at home in its region:
 * the library routes and fails over as it would for an application. */
static int
ctl_workers_start(
    const struct ctl_args *args, struct ctl_drill *d, int per_region)
{
    struct ctl_cluster *c = d->c;
    const char         *addrs[CTL_VIEW_NODES_MAX];
    char                regions[TOPO_REGIONS_MAX][64];
    uint32_t            nregions = 0;

    for (uint32_t i = 0; i < c->count; i++) {
        addrs[i]  = c->nodes[i].address;
        bool seen = false;
        for (uint32_t r = 0; r < nregions && !seen; r++) {
            seen = strcmp(regions[r], c->nodes[i].region) == 0;
        }
        if (!seen && nregions < TOPO_REGIONS_MAX) {
            snprintf(regions[nregions++], 64, "%s", c->nodes[i].region);
        }
    }
    d->workers = calloc(
        (size_t) nregions * (size_t) per_region + 1, sizeof(*d->workers));
    if (d->workers == NULL) {
        return ctl_fail_mrd(MRD_ENOMEM, "drill workload");
    }
    for (uint32_t r = 0; r < nregions; r++) {
        for (int k = 0; k < per_region; k++) {
            struct ctl_worker *w = &d->workers[d->worker_count];
            mrd_client_opts    opts;
            w->d = d;
            /* Precisions bound what gcc cannot see: a region name is at
             * most TOPO_NAME_SIZE_MAX (63), a run id 16 hex digits. */
            snprintf(w->region, sizeof w->region, "%.63s", regions[r]);
            snprintf(w->stream, sizeof w->stream, "drill-%.24s-%.63s-%d",
                d->run_id, regions[r], k);
            for (uint32_t i = 0; i < c->count; i++) {
                if (strcmp(c->nodes[i].region, regions[r]) == 0 && d->side_f[i]
                    && d->kind != CTL_DRILL_PARTITION) {
                    w->affected = true; /* its home has a fenced node */
                }
            }
            mrd_client_opts_init(&opts);
            opts.addresses     = addrs;
            opts.address_count = c->count;
            opts.key_file      = args->key_file;
            opts.keyring_file  = args->keyring_file;
            opts.region        = w->region;
            opts.timeout_ms    = CTL_DRILL_CALL_MS;
            /* The drill measures how soon the other regions take the
             * fenced side's writes. With session order, a stream whose
             * last acknowledged event had not left the region (the
             * recovery point) waits for the region to come back, by
             * design: that wait is the recovery point's cost, reported
             * there, not a failover time. */
            opts.no_session_order = 1;
            int rv                = mrd_client_open(&opts, &w->client);
            if (rv != MRD_OK) {
                return ctl_fail_mrd(rv, "drill workload client");
            }
            d->worker_count++;
            w->started = pthread_create(&w->th, NULL, ctl_worker_main, w) == 0;
            if (!w->started) {
                return ctl_fail_mrd(MRD_ENOMEM, "drill workload thread");
            }
        }
    }
    return CTL_EXIT_OK;
}

static void
ctl_workers_stop(struct ctl_drill *d)
{
    atomic_store(&d->stop, true);
    for (uint32_t i = 0; i < d->worker_count; i++) {
        if (d->workers[i].started) {
            pthread_join(d->workers[i].th, NULL);
            d->workers[i].started = false;
        }
    }
}

static void
ctl_workers_free(struct ctl_drill *d)
{
    ctl_workers_stop(d);
    for (uint32_t i = 0; i < d->worker_count; i++) {
        mrd_client_close(d->workers[i].client);
        free(d->workers[i].acks);
    }
    free(d->workers);
    d->workers      = NULL;
    d->worker_count = 0;
}

/* --------------------------------------------------------------- fences -- */

/* Sets (ms > 0) or lifts (ms 0) the drill's fence on every node it names.
 * Returns how many nodes refused or did not answer (each reported). */
static uint32_t
ctl_drill_fence(struct ctl_drill *d, uint64_t ms)
{
    struct ctl_cluster *c      = d->c;
    uint32_t            failed = 0;
    uint64_t            ids[CTL_VIEW_NODES_MAX];
    char                label[MRD_FENCE_LABEL_SIZE_MAX + 1];

    snprintf(label, sizeof label, "drill %s %s", d->kind_name, d->run_id);
    for (uint32_t i = 0; i < c->count; i++) {
        size_t n       = 0;
        bool   clients = false;
        for (uint32_t j = 0; j < c->count; j++) {
            bool cut;
            if (d->kind == CTL_DRILL_PARTITION) {
                cut = (d->side_f[i] && d->side_b[j])
                    || (d->side_b[i] && d->side_f[j]);
            } else {
                cut = d->side_f[i] != d->side_f[j];
            }
            if (cut && j != i) {
                ids[n++] = c->nodes[j].id;
            }
        }
        clients = d->kind != CTL_DRILL_PARTITION && d->side_f[i];
        if (n == 0 && !clients) {
            continue; /* a bystander: nothing to tell it */
        }
        mrd_fence f   = { (uint32_t) ms, clients, ids, ms > 0 ? n : 0, label };
        int       err = mrd_node_fence(c->nodes[i].client, &f, NULL);
        if (err != MRD_OK) {
            failed++;
            fprintf(stderr, "meridianctl: drill: %s the fence on %s: %s (%s)\n",
                ms > 0 ? "set" : "lift", c->nodes[i].name, mrd_strerror(err),
                mrd_errname(err));
        }
    }
    return failed;
}

/* --------------------------------------------------------------- report -- */

struct ctl_peak {
    uint64_t events;
    double   seconds;
};

static void
ctl_drill_sample(struct ctl_drill *d, struct ctl_peak *peak)
{
    struct ctl_lag lag;
    ctl_cluster_poll(d->c);
    ctl_cluster_lag(d->c, &lag);
    peak->events
        = lag.events_max > peak->events ? lag.events_max : peak->events;
    peak->seconds
        = lag.seconds_max > peak->seconds ? lag.seconds_max : peak->seconds;
}

/* The recovery point: per shard, the events the fenced side held that no
 * node outside it had, read from the fenced nodes' logs. */
static json_t *
ctl_drill_rpo(struct ctl_drill *d, uint64_t *count_out)
{
    static uint64_t     outside[2 * 1024];
    struct ctl_cluster *c    = d->c;
    json_t             *list = json_array();

    bool other[CTL_VIEW_NODES_MAX];
    *count_out = 0;
    for (uint32_t i = 0; i < c->count; i++) {
        other[i]
            = d->kind == CTL_DRILL_PARTITION ? d->side_b[i] : !d->side_f[i];
    }
    for (uint32_t s = 0; s < c->shard_count; s++) {
        /* What the other side holds: the join of its vectors. */
        uint64_t held;
        size_t   on = ctl_shard_join(c, s, other, outside, 1024, &held);
        for (uint32_t i = 0; i < c->count; i++) {
            if (!d->side_f[i] || ctl_node_shard(&c->nodes[i], s) == NULL) {
                continue;
            }
            uint64_t after = 0;
            for (;;) {
                mrd_events *evs = NULL;
                if (mrd_read_log(
                        c->nodes[i].client, s, after, MRD_READ_COUNT_MAX, &evs)
                    != MRD_OK) {
                    break;
                }
                for (size_t k = 0; k < mrd_events_count(evs); k++) {
                    const mrd_event *e    = mrd_events_at(evs, k);
                    uint64_t         have = 0;
                    for (size_t j = 0; j < on; j++) {
                        if (outside[2 * j] == e->dot.origin) {
                            have = outside[2 * j + 1];
                        }
                    }
                    if (e->dot.seq <= have) {
                        continue;
                    }
                    /* Counted once even when several fenced nodes hold it. */
                    bool    dup = false;
                    size_t  x;
                    json_t *prev;
                    json_array_foreach(list, x, prev)
                    {
                        json_t *dot = json_object_get(prev, "dot");
                        dup         = dup
                            || ((uint64_t) json_integer_value(
                                    json_array_get(dot, 0))
                                    == e->dot.origin
                                && (uint64_t) json_integer_value(
                                       json_array_get(dot, 1))
                                    == e->dot.seq);
                    }
                    if (dup) {
                        continue;
                    }
                    (*count_out)++;
                    if (json_array_size(list) < CTL_DRILL_RPO_LIST_MAX) {
                        json_array_append_new(list,
                            json_pack("{s:i, s:[o, o], s:s, s:s, s:s}", "shard",
                                (int) s, "dot", ctl_json_u64(e->dot.origin),
                                ctl_json_u64(e->dot.seq), "stream", e->stream,
                                "type", e->type, "held_by", c->nodes[i].name));
                    }
                }
                bool end = mrd_events_end(evs) || mrd_events_count(evs) == 0;
                after    = mrd_events_next(evs);
                mrd_events_free(evs);
                if (end) {
                    break;
                }
            }
        }
    }
    return list;
}

/* True when every replica of every shard now holds what any node held
 * for that shard in the snapshot taken when the fence lifted: the events
 * written before the lift have reached everywhere, whatever the workload
 * writes since. */
static bool
ctl_drill_caught_up(struct ctl_drill *d, json_t *const *snap)
{
    struct ctl_cluster *c = d->c;
    for (uint32_t s = 0; s < c->shard_count; s++) {
        for (uint32_t r = 0; r < c->count; r++) {
            if (!ctl_node_replica(&c->nodes[r], s)) {
                continue;
            }
            json_t *now
                = json_object_get(ctl_node_shard(&c->nodes[r], s), "vv");
            if (now == NULL) {
                return false; /* it did not answer */
            }
            for (uint32_t n = 0; n < c->count; n++) {
                json_t *sh
                    = json_array_get(json_object_get(snap[n], "shards"), s);
                if (!json_is_true(json_object_get(sh, "replica"))) {
                    continue;
                }
                size_t  k;
                json_t *e;
                json_array_foreach(json_object_get(sh, "vv"), k, e)
                {
                    uint64_t o, q;
                    ctl_vv_entry(e, &o, &q);
                    if (ctl_vv_get(now, o) < q) {
                        return false;
                    }
                }
            }
        }
    }
    return true;
}

static int
ctl_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return x < y ? -1 : x > y;
}

static int
ctl_dot_cmp(const void *a, const void *b)
{
    const mrd_dot *x = a, *y = b;
    if (x->origin != y->origin) {
        return x->origin < y->origin ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Acknowledged appends missing from a replica of some region, read the
 * way an application would, and dots read twice. */
static void
ctl_drill_check(const struct ctl_args *args, struct ctl_drill *d,
    uint64_t *acked, uint64_t *lost, uint64_t *dups, uint32_t *regions)
{
    struct ctl_cluster *c = d->c;
    const char         *addrs[CTL_VIEW_NODES_MAX];
    char                seen_regions[TOPO_REGIONS_MAX][64];
    uint32_t            nr = 0;

    *acked = *lost = *dups = 0;
    *regions               = 0;
    for (uint32_t i = 0; i < c->count; i++) {
        addrs[i] = c->nodes[i].address;
    }
    for (uint32_t w = 0; w < d->worker_count; w++) {
        *acked += d->workers[w].ack_count;
    }
    for (uint32_t i = 0; i < c->count; i++) {
        bool seen = false;
        for (uint32_t r = 0; r < nr && !seen; r++) {
            seen = strcmp(seen_regions[r], c->nodes[i].region) == 0;
        }
        if (seen || nr == TOPO_REGIONS_MAX) {
            continue;
        }
        snprintf(seen_regions[nr++], 64, "%s", c->nodes[i].region);
        mrd_client *rc = NULL;
        if (ctl_client_open_on(args, addrs, c->count, c->nodes[i].region,
                CTL_DRILL_CALL_MS, &rc)
            != MRD_OK) {
            continue;
        }
        (*regions)++;
        for (uint32_t w = 0; w < d->worker_count; w++) {
            struct ctl_worker *wk   = &d->workers[w];
            mrd_dot           *dots = NULL;
            size_t             n = 0, cap = 0;
            uint64_t           from = 0;
            bool               ok   = true;
            for (;;) {
                mrd_events *evs = NULL;
                if (mrd_read(rc, wk->stream, from, MRD_FORWARD,
                        MRD_READ_COUNT_MAX, &evs)
                    != MRD_OK) {
                    ok = false;
                    break;
                }
                for (size_t k = 0; k < mrd_events_count(evs); k++) {
                    if (n == cap) {
                        cap        = cap * 2 + 1024;
                        mrd_dot *p = realloc(dots, cap * sizeof(*p));
                        if (p == NULL) {
                            ok = false;
                            break;
                        }
                        dots = p;
                    }
                    dots[n++] = mrd_events_at(evs, k)->dot;
                }
                bool end = mrd_events_end(evs) || mrd_events_count(evs) == 0;
                from     = mrd_events_next(evs);
                mrd_events_free(evs);
                if (end || !ok) {
                    break;
                }
            }
            if (!ok) {
                *lost += wk->ack_count; /* unreadable: nothing is proven */
                free(dots);
                continue;
            }
            qsort(dots, n, sizeof(*dots), ctl_dot_cmp);
            for (size_t k = 1; k < n; k++) {
                *dups += ctl_dot_cmp(&dots[k], &dots[k - 1]) == 0;
            }
            for (size_t a = 0; a < wk->ack_count; a++) {
                if (bsearch(
                        &wk->acks[a].dot, dots, n, sizeof(*dots), ctl_dot_cmp)
                    == NULL) {
                    (*lost)++;
                }
            }
            free(dots);
        }
        mrd_client_close(rc);
    }
}

/* ----------------------------------------------------------------- main -- */

/* Marks the sides from the command line; a ctl_exit code. */
static int
ctl_drill_sides(const struct ctl_args *args, struct ctl_drill *d)
{
    struct ctl_cluster *c  = d->c;
    uint32_t            nf = 0, nb = 0;

    if (d->kind == CTL_DRILL_REGION) {
        if (args->region == NULL) {
            return ctl_fail_usage("drill region-outage needs --region R");
        }
        for (uint32_t i = 0; i < c->count; i++) {
            d->side_f[i] = strcmp(c->nodes[i].region, args->region) == 0;
            nf += d->side_f[i];
        }
        if (nf == 0) {
            return ctl_fail_usage(
                "drill: no node of the topology is in region '%s'",
                args->region);
        }
        nb = c->count - nf;
    } else if (d->kind == CTL_DRILL_NODE) {
        if (args->target == NULL) {
            return ctl_fail_usage("drill node-loss needs --target NODE-NAME");
        }
        struct ctl_node *t = ctl_cluster_find(c, args->target);
        if (t == NULL) {
            return ctl_fail_usage(
                "drill: no node of the topology is named '%s'", args->target);
        }
        d->side_f[t - c->nodes] = true;
        nf                      = 1;
        nb                      = c->count - 1;
    } else {
        char        a[64] = "", b[64] = "";
        const char *comma
            = args->regions != NULL ? strchr(args->regions, ',') : NULL;
        if (comma == NULL || (size_t) (comma - args->regions) >= sizeof a
            || strlen(comma + 1) >= sizeof b) {
            return ctl_fail_usage("drill partition needs --regions A,B");
        }
        memcpy(a, args->regions, (size_t) (comma - args->regions));
        snprintf(b, sizeof b, "%s", comma + 1);
        if (strcmp(a, b) == 0) {
            return ctl_fail_usage("drill partition: A and B must differ");
        }
        for (uint32_t i = 0; i < c->count; i++) {
            d->side_f[i] = strcmp(c->nodes[i].region, a) == 0;
            d->side_b[i] = strcmp(c->nodes[i].region, b) == 0;
            nf += d->side_f[i];
            nb += d->side_b[i];
        }
        if (nf == 0 || nb == 0) {
            return ctl_fail_usage(
                "drill: region '%s' has no node", nf == 0 ? a : b);
        }
    }
    if (nb == 0) {
        return ctl_fail_usage("drill: nothing would be left outside the fence");
    }
    return CTL_EXIT_OK;
}

/* Recovery time of each affected client: from the fence to its first
 * append acknowledged by a node outside the fenced side. */
static void
ctl_drill_rto(struct ctl_drill *d, uint64_t *p50, uint64_t *max,
    uint32_t *affected, uint32_t *recovered)
{
    uint64_t times[CTL_DRILL_WORKERS_MAX];
    uint64_t fence = atomic_load(&d->fence_ms);
    uint32_t n     = 0;

    *affected = *recovered = 0;
    *p50 = *max = 0;
    for (uint32_t w = 0; w < d->worker_count; w++) {
        struct ctl_worker *wk = &d->workers[w];
        if (!wk->affected) {
            continue;
        }
        (*affected)++;
        for (size_t a = 0; a < wk->ack_count; a++) {
            if (wk->acks[a].at_ms < fence) {
                continue;
            }
            bool fenced_origin = false;
            for (uint32_t i = 0; i < d->c->count; i++) {
                fenced_origin = fenced_origin
                    || (d->side_f[i]
                        && d->c->nodes[i].id == wk->acks[a].dot.origin);
            }
            if (!fenced_origin) {
                times[n++] = wk->acks[a].at_ms - fence;
                (*recovered)++;
                break;
            }
        }
    }
    if (n > 0) {
        qsort(times, n, sizeof(times[0]), ctl_u64_cmp);
        *p50 = times[n / 2];
        *max = times[n - 1];
    }
}

int
ctl_cmd_drill(const struct ctl_args *args, mrd_client *client)
{
    static struct ctl_drill drill;
    struct ctl_drill       *d                        = &drill;
    struct ctl_peak         peak                     = { 0, 0 };
    json_t                 *snap[CTL_VIEW_NODES_MAX] = { 0 };
    char                    reason[256]              = "";
    char                    buf[32];
    int                     rv;

    memset(d, 0, sizeof(*d));
    d->kind_name = args->positional[0];
    if (strcmp(d->kind_name, "region-outage") == 0) {
        d->kind = CTL_DRILL_REGION;
    } else if (strcmp(d->kind_name, "node-loss") == 0) {
        d->kind = CTL_DRILL_NODE;
    } else if (strcmp(d->kind_name, "partition") == 0) {
        d->kind = CTL_DRILL_PARTITION;
    } else {
        return ctl_fail_usage("drill: '%s' is not region-outage, node-loss "
                              "or partition",
            d->kind_name);
    }
    if (args->for_ms == 0) {
        return ctl_fail_usage("drill needs --for DURATION (e.g. --for 30s)");
    }
    uint64_t converge_max = args->converge_ms != 0
        ? args->converge_ms
        : CTL_DRILL_CONVERGE_MS_DEFAULT;
    int      per_region
        = args->clients >= 0 ? args->clients : CTL_DRILL_CLIENTS_DEFAULT;
    d->c = &ctl_drill_view;
    rv   = ctl_cluster_open(args, client, CTL_NODE_TIMEOUT_MS, d->c);
    if (rv != CTL_EXIT_OK) {
        return rv;
    }
    struct ctl_cluster *c = d->c;
    if (!c->has_topology) {
        ctl_cluster_close(c);
        return ctl_fail_usage("drill needs nodes run from a signed topology");
    }
    rv = ctl_drill_sides(args, d);
    if (rv != CTL_EXIT_OK) {
        ctl_cluster_close(c);
        return rv;
    }
    /* Only a healthy cluster is drilled: a drill on top of a real failure
     * measures neither. */
    uint64_t wait_start = mrd_now_mono_ms();
    for (;;) {
        const struct ctl_node *sick = NULL;
        const char            *h    = NULL;
        ctl_cluster_poll(c);
        for (uint32_t i = 0; i < c->count && sick == NULL; i++) {
            h = ctl_node_health(c, &c->nodes[i]);
            if (strcmp(h, "up") != 0 && strcmp(h, "drained") != 0) {
                sick = &c->nodes[i];
            }
        }
        if (sick == NULL) {
            break;
        }
        if (mrd_now_mono_ms() - wait_start >= CTL_DRILL_HEALTHY_WAIT_MS) {
            ctl_cluster_close(c);
            return ctl_fail_why(MRD_EUNAVAIL, h,
                "drill refused: %s is not up (waited %u s)", sick->name,
                CTL_DRILL_HEALTHY_WAIT_MS / 1000);
        }
        ctl_sleep_ms(500);
    }
    snprintf(d->run_id, sizeof d->run_id, "%" PRIx64, mrd_now_real_ms());
    if (!args->json) {
        fprintf(stderr, "drill %s %s: %u workload clients, fence for %s\n",
            d->kind_name, d->run_id, (unsigned) per_region,
            (ctl_duration_format(args->for_ms, buf, sizeof buf), buf));
    }
    rv = ctl_workers_start(args, d, per_region);
    if (rv != CTL_EXIT_OK) {
        ctl_workers_free(d);
        ctl_cluster_close(c);
        return rv;
    }
    /* Traffic flowing first: a recovery time means something only for a
     * client that was writing when the fence went up. */
    uint64_t warm_start = mrd_now_mono_ms();
    while (per_region > 0
        && mrd_now_mono_ms() - warm_start < CTL_DRILL_WARMUP_MS) {
        bool all = true;
        for (uint32_t w = 0; w < d->worker_count && all; w++) {
            all = atomic_load(&d->workers[w].ok) >= 3;
        }
        if (all) {
            break;
        }
        ctl_sleep_ms(100);
    }

    /* The failure. */
    atomic_store(&d->fence_ms, mrd_now_mono_ms());
    uint32_t fence_failed
        = ctl_drill_fence(d, args->for_ms + CTL_DRILL_FENCE_SLACK_MS);
    uint64_t fenced_at = mrd_now_mono_ms();
    /* In-flight pulls settle; then what the other side holds is fixed. */
    ctl_sleep_ms(500);
    ctl_drill_sample(d, &peak);
    /* A partition's sides both keep writing: what one lacks of the other
     * is lag, shown as such, and there is no recovery point. */
    uint64_t rpo_count = 0;
    json_t  *rpo = d->kind != CTL_DRILL_PARTITION ? ctl_drill_rpo(d, &rpo_count)
                                                  : json_array();
    while (fence_failed == 0 && mrd_now_mono_ms() - fenced_at < args->for_ms) {
        uint64_t tick = mrd_now_mono_ms();
        ctl_drill_sample(d, &peak);
        if (!args->json) {
            uint64_t ok = 0, failed = 0;
            for (uint32_t w = 0; w < d->worker_count; w++) {
                ok += atomic_load(&d->workers[w].ok);
                failed += atomic_load(&d->workers[w].failed)
                    + atomic_load(&d->workers[w].unknown);
            }
            fprintf(stderr,
                "  fenced %5.1fs | appends ok %" PRIu64 ", failed %" PRIu64
                " | peak lag %" PRIu64 " events, %.1fs\n",
                (double) (mrd_now_mono_ms() - fenced_at) / 1000.0, ok, failed,
                peak.events, peak.seconds);
        }
        uint64_t spent = mrd_now_mono_ms() - tick;
        uint64_t left  = args->for_ms - (mrd_now_mono_ms() - fenced_at);
        if (mrd_now_mono_ms() - fenced_at < args->for_ms
            && spent < CTL_DRILL_TICK_MS) {
            uint64_t nap = CTL_DRILL_TICK_MS - spent;
            ctl_sleep_ms((uint32_t) (nap < left ? nap : left));
        }
    }

    /* The recovery. */
    uint32_t lift_failed = ctl_drill_fence(d, 0);
    uint64_t lifted_at   = mrd_now_mono_ms();
    uint64_t fenced_for  = lifted_at - fenced_at;
    ctl_cluster_poll(c);
    for (uint32_t i = 0; i < c->count; i++) {
        snap[i] = json_deep_copy(c->nodes[i].status);
    }
    bool     converged    = false;
    uint64_t converged_ms = 0;
    while (mrd_now_mono_ms() - lifted_at < converge_max) {
        ctl_cluster_poll(c);
        if (ctl_drill_caught_up(d, snap)) {
            converged    = true;
            converged_ms = mrd_now_mono_ms() - lifted_at;
            break;
        }
        ctl_sleep_ms(CTL_DRILL_CONVERGE_POLL_MS);
    }
    ctl_workers_stop(d);
    /* Everything the workload wrote, everywhere, before reading it back. */
    uint64_t lagging = 0;
    while (converged && mrd_now_mono_ms() - lifted_at < converge_max) {
        ctl_cluster_poll(c);
        if (ctl_cluster_converged(c, &lagging)) {
            break;
        }
        ctl_sleep_ms(CTL_DRILL_CONVERGE_POLL_MS);
    }
    uint64_t acked, lost, dups, ok = 0, failed = 0, unknown = 0;
    uint32_t regions;
    ctl_drill_check(args, d, &acked, &lost, &dups, &regions);
    for (uint32_t w = 0; w < d->worker_count; w++) {
        ok += atomic_load(&d->workers[w].ok);
        failed += atomic_load(&d->workers[w].failed);
        unknown += atomic_load(&d->workers[w].unknown);
    }
    uint64_t rto_p50, rto_max;
    uint32_t affected, recovered;
    ctl_drill_rto(d, &rto_p50, &rto_max, &affected, &recovered);

    /* The verdict: the first reason to fail, in order of gravity. */
    if (lost > 0) {
        snprintf(reason, sizeof reason,
            "%" PRIu64 " acknowledged appends are missing", lost);
    } else if (dups > 0) {
        snprintf(reason, sizeof reason, "%" PRIu64 " events read twice", dups);
    } else if (fence_failed > 0 || lift_failed > 0) {
        snprintf(reason, sizeof reason,
            "%u nodes did not take the fence, %u did not lift it", fence_failed,
            lift_failed);
    } else if (!converged) {
        snprintf(reason, sizeof reason,
            "the cluster did not converge within %" PRIu64 " s of the lift",
            converge_max / 1000);
    } else if (affected > 0 && recovered < affected) {
        snprintf(reason, sizeof reason,
            "%u of %u clients of the fenced side never got an append through "
            "elsewhere",
            affected - recovered, affected);
    } else if (per_region > 0 && acked == 0) {
        snprintf(reason, sizeof reason,
            "the workload got no append acknowledged at all");
    } else if (per_region > 0 && regions == 0) {
        snprintf(reason, sizeof reason,
            "the workload's appends could not be read back");
    }
    bool pass = reason[0] == '\0';

    if (args->json) {
        json_t *doc = json_pack(
            "{s:s, s:s, s:s, s:o, s:o,"
            " s:{s:o, s:o},"
            " s:{s:o, s:o, s:i, s:i},"
            " s:{s:o, s:f},"
            " s:{s:b, s:o},"
            " s:{s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:i}, s:s?}",
            "drill", d->kind_name, "run", d->run_id, "verdict",
            pass ? "PASS" : "FAIL", "fenced_ms", ctl_json_u64(fenced_for),
            "fence_failures", ctl_json_u64(fence_failed + lift_failed),
            "recovery_point", "events", ctl_json_u64(rpo_count), "list", rpo,
            "recovery_time", "p50_ms", ctl_json_u64(rto_p50), "max_ms",
            ctl_json_u64(rto_max), "clients_affected", (int) affected,
            "clients_recovered", (int) recovered, "peak_lag", "events",
            ctl_json_u64(peak.events), "seconds", peak.seconds, "convergence",
            "converged", converged, "ms", ctl_json_u64(converged_ms),
            "workload", "clients", (int) d->worker_count, "acknowledged",
            ctl_json_u64(ok), "failed", ctl_json_u64(failed), "unknown",
            ctl_json_u64(unknown), "checked", ctl_json_u64(acked), "lost",
            ctl_json_u64(lost), "duplicates", ctl_json_u64(dups),
            "regions_read", (int) regions, "reason", pass ? NULL : reason);
        rv = ctl_json_print(doc);
    } else {
        char a[32], b[32];
        ctl_duration_format(fenced_for, buf, sizeof buf);
        printf(
            "drill %s (run %s): fenced for %s\n", d->kind_name, d->run_id, buf);
        if (d->kind == CTL_DRILL_PARTITION) {
            printf("  recovery point  none: both sides kept serving\n");
        } else {
            printf("  recovery point  %" PRIu64 " event%s had not left the "
                   "fenced side when the fence went up\n",
                rpo_count, rpo_count == 1 ? "" : "s");
        }
        size_t  i;
        json_t *e;
        json_array_foreach(rpo, i, e)
        {
            json_t *dot = json_object_get(e, "dot");
            if (i == CTL_DRILL_RPO_SHOW_MAX) {
                break;
            }
            printf("                  (%" PRIu64 ", %" PRIu64 ") shard %d "
                   "%s %s, held by %s\n",
                (uint64_t) json_integer_value(json_array_get(dot, 0)),
                (uint64_t) json_integer_value(json_array_get(dot, 1)),
                (int) json_integer_value(json_object_get(e, "shard")),
                json_string_value(json_object_get(e, "stream")),
                json_string_value(json_object_get(e, "type")),
                json_string_value(json_object_get(e, "held_by")));
        }
        if (rpo_count > CTL_DRILL_RPO_SHOW_MAX) {
            printf("                  ... and %" PRIu64 " more (--json lists "
                   "%u)\n",
                rpo_count - CTL_DRILL_RPO_SHOW_MAX, CTL_DRILL_RPO_LIST_MAX);
        }
        json_decref(rpo);
        if (affected > 0) {
            ctl_duration_format(rto_p50, a, sizeof a);
            ctl_duration_format(rto_max, b, sizeof b);
            printf("  recovery time   median %s, worst %s (%u of %u clients "
                   "of the fenced side failed over)\n",
                a, b, recovered, affected);
        } else {
            printf("  recovery time   none needed (%s)\n",
                d->kind == CTL_DRILL_PARTITION ? "clients stay served on both "
                                                 "sides of a partition"
                                               : "no workload client was on "
                                                 "the fenced side");
        }
        printf("  peak lag        %" PRIu64 " events, %.1f s\n", peak.events,
            peak.seconds);
        if (converged) {
            ctl_duration_format(converged_ms, buf, sizeof buf);
            printf("  convergence     %s after the fence lifted\n", buf);
        } else {
            printf("  convergence     NOT within %" PRIu64 " s\n",
                converge_max / 1000);
        }
        printf("  workload        %" PRIu64 " appends acknowledged, %" PRIu64
               " failed, %" PRIu64 " unknown (timed out), %u clients\n",
            ok, failed, unknown, d->worker_count);
        printf("  checked         %" PRIu64 " acknowledged appends read back "
               "in %u regions: %" PRIu64 " lost, %" PRIu64 " duplicated\n",
            acked, regions, lost, dups);
        printf("verdict: %s%s%s\n", pass ? "PASS" : "FAIL", pass ? "" : ": ",
            reason);
        rv = ctl_stdout_flush();
    }
    for (uint32_t i = 0; i < c->count; i++) {
        json_decref(snap[i]);
    }
    ctl_workers_free(d);
    ctl_cluster_close(c);
    return rv != CTL_EXIT_OK ? rv : pass ? CTL_EXIT_OK : CTL_EXIT_FAIL;
}
