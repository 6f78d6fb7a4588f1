/*
 * metrics.c: what a node tells its operators.
 *
 * Two views of the same facts: GET /metrics on NNG's HTTP server, in
 * Prometheus text format (version 0.0.4) for scrapers, and the STATUS
 * document (JSON, over the secure link, admin role) for meridianctl. Both
 * are built on demand from the server's counters, histograms and gauges;
 * nothing here keeps state but the HTTP server itself.
 *
 * The HTTP endpoint is plain: it carries counts and timings, never a key,
 * an event or a stream name, so an operator can give it to a scraper
 * without giving away data. Bind it where only the scraper reaches.
 */
#include "node.h"

#include "linkio.h"
#include "swim.h"
#include "topo.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <nng/nng.h>
#include <nng/supplemental/http/http.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const struct node_hist_bounds node_hist_latency_us = { 16,
    { 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
        500000, 1000000, 2500000, 5000000, 10000000 },
    1e-6 };
const struct node_hist_bounds node_hist_batch
    = { 13, { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096 }, 1.0 };

void
node_hist_observe(
    struct node_hist *h, const struct node_hist_bounds *b, uint64_t v)
{
    uint32_t i = 0;
    while (i < b->n && v > b->le[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}

void
node_stat_max(_Atomic uint64_t *gauge, uint64_t v)
{
    uint64_t cur = atomic_load_explicit(gauge, memory_order_relaxed);
    while (v > cur
        && !atomic_compare_exchange_weak_explicit(
            gauge, &cur, v, memory_order_relaxed, memory_order_relaxed)) { }
}

/* ------------------------------------------------------------- helpers -- */

/* The node's name, region name and state in the topology, and its peers'. */
struct node_who {
    uint64_t self;
    uint64_t version;
    char     name[TOPO_NAME_SIZE_MAX + 1];
    char     region[TOPO_NAME_SIZE_MAX + 1];
    int      state; /* enum topo_node_state, 0: static mode */
    bool     region_draining;
    uint32_t count;
    struct {
        uint64_t id;
        char     name[TOPO_NAME_SIZE_MAX + 1];
        char     region[TOPO_NAME_SIZE_MAX + 1];
        int      state;
    } nodes[TOPO_NODES_MAX];
};

static void
node_who_fill(const struct topo *t, uint64_t self, void *arg)
{
    struct node_who *who = arg;
    who->count           = 0;
    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node   *n = &t->nodes[i];
        const struct topo_region *r = &t->regions[n->region];
        if (n->id == self) {
            snprintf(who->name, sizeof who->name, "%s", n->name);
            snprintf(who->region, sizeof who->region, "%s", r->name);
            who->state           = (int) n->state;
            who->region_draining = r->draining;
            continue;
        }
        who->nodes[who->count].id    = n->id;
        who->nodes[who->count].state = (int) n->state;
        snprintf(who->nodes[who->count].name,
            sizeof who->nodes[who->count].name, "%s", n->name);
        snprintf(who->nodes[who->count].region,
            sizeof who->nodes[who->count].region, "%s", r->name);
        who->count++;
    }
}

/* NULL when allocation fails; else the caller frees it. */
static struct node_who *
node_who_get(const struct node_observe *o)
{
    struct node_who *who = calloc(1, sizeof(*who));
    if (who == NULL) {
        return NULL;
    }
    who->self = o->store->node_id;
    snprintf(who->name, sizeof who->name, "node-%llu",
        (unsigned long long) o->store->node_id);
    snprintf(who->region, sizeof who->region, "%s", o->cfg->region);
    if (o->topology != NULL) {
        who->version = node_topology_with(o->topology, node_who_fill, who);
    } else {
        /* Static mode: the peers of --peers, with no names of their own. */
        for (uint32_t i = 0; i < o->cfg->peer_count; i++) {
            who->nodes[i].id = o->cfg->peers[i].id;
            snprintf(who->nodes[i].name, sizeof who->nodes[i].name, "node-%llu",
                (unsigned long long) o->cfg->peers[i].id);
            who->count++;
        }
    }
    return who;
}

static const char *
node_swim_name(int state)
{
    switch (state) {
    case SWIM_ALIVE:
        return "alive";
    case SWIM_SUSPECT:
        return "suspect";
    case SWIM_DEAD:
        return "down";
    default:
        return "unknown";
    }
}

static const char *
node_topo_state_name(int state)
{
    switch (state) {
    case TOPO_NODE_ACTIVE:
        return "active";
    case TOPO_NODE_DRAINING:
        return "drained";
    case TOPO_NODE_REMOVED:
        return "removed";
    default:
        return "static";
    }
}

static uint64_t
node_log_events_total(struct node_store *store, uint64_t *per_shard)
{
    uint64_t n = 0;
    pthread_mutex_lock(&store->write_mu);
    for (uint32_t i = 0; i < store->shard_count; i++) {
        if (per_shard != NULL) {
            per_shard[i] = store->log_seq_last[i];
        }
        n += store->log_seq_last[i];
    }
    pthread_mutex_unlock(&store->write_mu);
    return n;
}

/* -------------------------------------------------------- Prometheus -- */

/* A growing text buffer; a failed allocation sticks. */
struct node_text {
    char  *p;
    size_t len;
    size_t cap;
    bool   failed;
};

static void MRD_PRINTF(2, 3)
    node_text_add(struct node_text *t, const char *fmt, ...)
{
    va_list ap;
    if (t->failed) {
        return;
    }
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t) n < t->cap - t->len) {
            t->len += (size_t) n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t) n + 1;
        char  *p   = realloc(t->p, cap);
        if (p == NULL) {
            t->failed = true;
            return;
        }
        t->p   = p;
        t->cap = cap;
    }
}

static void
node_text_help(
    struct node_text *t, const char *name, const char *type, const char *help)
{
    node_text_add(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
node_text_metric(struct node_text *t, const char *name, const char *type,
    const char *help, uint64_t v)
{
    node_text_help(t, name, type, help);
    node_text_add(t, "%s %llu\n", name, (unsigned long long) v);
}

/* One histogram's series, labels (may be "") before le. */
static void
node_text_hist(struct node_text *t, const char *name, const char *labels,
    const struct node_hist *h, const struct node_hist_bounds *b)
{
    uint64_t cum = 0;
    for (uint32_t i = 0; i <= b->n; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < b->n) {
            node_text_add(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels,
                labels[0] != '\0' ? "," : "", (double) b->le[i] * b->scale,
                (unsigned long long) cum);
        } else {
            node_text_add(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels,
                labels[0] != '\0' ? "," : "", (unsigned long long) cum);
        }
    }
    const char *open = labels[0] != '\0' ? "{" : "";
    const char *end  = labels[0] != '\0' ? "}" : "";
    node_text_add(t, "%s_sum%s%s%s %.6f\n", name, open, labels, end,
        (double) atomic_load(&h->sum) * b->scale);
    node_text_add(t, "%s_count%s%s%s %llu\n", name, open, labels, end,
        (unsigned long long) atomic_load(&h->count));
}

static const char *const node_ack_names[NODE_ACK_LEVELS]
    = { "local", "region", "global" };

struct node_lag_text {
    struct node_text *t;
    uint64_t          now_ms;
    bool              seconds;
};

static void
node_lag_text_cb(void *arg, uint32_t shard, uint64_t node, uint64_t events,
    uint64_t since_ms)
{
    struct node_lag_text *l = arg;
    if (l->seconds) {
        double s = since_ms != 0 && l->now_ms > since_ms
            ? (double) (l->now_ms - since_ms) / 1000.0
            : 0.0;
        node_text_add(l->t,
            "meridian_replication_lag_seconds{peer=\"%llu\",shard=\"%u\"} "
            "%.3f\n",
            (unsigned long long) node, shard, s);
    } else {
        node_text_add(l->t,
            "meridian_replication_lag_events{peer=\"%llu\",shard=\"%u\"} "
            "%llu\n",
            (unsigned long long) node, shard, (unsigned long long) events);
    }
}

/* Request refusals by reason: the STATS counters named rejected_*, minus
 * the prefix. Link refusals are split between handshakes and frames. */
static void
node_text_rejections(struct node_text *t, const struct node_observe *o)
{
    const struct node_stats *s = o->stats;
    node_text_help(t, "meridian_rejected_requests_total", "counter",
        "Requests refused, by reason (each also got an error reply).");
#define NODE_REJECT_ROW_(name)                                                 \
    if (strncmp(#name, "rejected_", 9) == 0) {                                 \
        node_text_add(t,                                                       \
            "meridian_rejected_requests_total{reason=\"%s\"} %llu\n",          \
            &(#name)[9], (unsigned long long) atomic_load(&s->name));          \
    }
    NODE_STATS(NODE_REJECT_ROW_)
#undef NODE_REJECT_ROW_
    static const struct {
        int         reason;
        const char *name;
        bool        frame; /* after the handshake: a frame, not a session */
    } link[] = {
        { LK_R_MALFORMED, "malformed", false },
        { LK_R_VERSION, "version", false },
        { LK_R_CLUSTER, "cluster", false },
        { LK_R_UNTRUSTED, "untrusted", false },
        { LK_R_EARLY, "early", false },
        { LK_R_TIMEOUT, "timeout", false },
        { LK_R_REVOKED, "revoked", false },
        { LK_R_FRAME, "tampered_or_replayed", true },
        { LK_R_OVERFLOW, "oversized", true },
    };
    _Static_assert(LK_R_COUNT_ == 9, "a metric row per link refusal");
    node_text_help(t, "meridian_handshake_failures_total", "counter",
        "Secure-link handshakes refused, by reason.");
    for (size_t i = 0; i < MRD_ARRAY_SIZE(link); i++) {
        if (!link[i].frame) {
            node_text_add(t,
                "meridian_handshake_failures_total{reason=\"%s\"} %llu\n",
                link[i].name,
                (unsigned long long) atomic_load(
                    &o->link->refused[link[i].reason]));
        }
    }
    node_text_help(t, "meridian_rejected_frames_total", "counter",
        "Frames of established secure links refused, by reason.");
    for (size_t i = 0; i < MRD_ARRAY_SIZE(link); i++) {
        if (link[i].frame) {
            node_text_add(t,
                "meridian_rejected_frames_total{reason=\"%s\"} %llu\n",
                link[i].name,
                (unsigned long long) atomic_load(
                    &o->link->refused[link[i].reason]));
        }
    }
}

int
node_metrics_text(struct node_server *srv, char **out, size_t *len)
{
    struct node_observe    o;
    struct node_text       t = { 0 };
    struct node_fence_view fence;
    uint64_t               map_size, map_used;
    char                   labels[32];

    *out = NULL;
    *len = 0;
    node_server_observe(srv, &o);
    node_server_fence_view(srv, &fence);
    struct node_who *who = node_who_get(&o);
    t.cap                = 16384;
    t.p                  = malloc(t.cap);
    if (who == NULL || t.p == NULL) {
        free(who);
        free(t.p);
        return MRD_ENOMEM;
    }
    t.p[0]                          = '\0';
    const struct node_stats *s      = o.stats;
    uint64_t                 now_ms = mrd_now_mono_ms();

    node_text_help(&t, "meridian_build_info", "gauge",
        "Always 1: the node's version, region and name as labels.");
    node_text_add(&t,
        "meridian_build_info{version=\"%s\",region=\"%s\",node=\"%s\"} 1\n",
        MRD_VERSION_STRING, who->region, who->name);
    node_text_metric(&t, "meridian_uptime_seconds", "gauge",
        "Seconds since the node started serving.",
        (now_ms - o.started_mono_ms) / 1000u);
    node_text_metric(&t, "meridian_topology_version", "gauge",
        "Version of the signed topology the node runs (0: none).",
        who->version);
    /* Fenced: refusing clients, as the dashboard and the alert read it.
     * The far side of a fence (refusing some peers only) is 0 here and
     * shows as cut-off in meridianctl status. */
    node_text_metric(&t, "meridian_fenced", "gauge",
        "1 while a failover drill fences the node: it refuses clients.",
        fence.active && fence.clients ? 1 : 0);
    node_text_metric(&t, "meridian_joining", "gauge",
        "1 while the node rebuilds from its peers and refuses appends.",
        atomic_load(&o.store->joining) ? 1 : 0);
    node_text_help(&t, "meridian_peer_up", "gauge",
        "1 when SWIM holds the peer alive, 0 when suspect or down.");
    for (uint32_t i = 0; i < who->count; i++) {
        if (who->nodes[i].state == TOPO_NODE_REMOVED) {
            continue;
        }
        int st = node_liveness_state(o.liveness, who->nodes[i].id);
        node_text_add(&t, "meridian_peer_up{peer=\"%llu\"} %d\n",
            (unsigned long long) who->nodes[i].id, st == SWIM_ALIVE ? 1 : 0);
    }
    node_text_metric(&t, "meridian_requests_total", "counter",
        "Requests received, every kind.", atomic_load(&s->requests));
    node_text_help(&t, "meridian_appends_total", "counter",
        "Appends answered with success, by the acknowledgement level asked.");
    for (uint32_t a = 0; a < NODE_ACK_LEVELS; a++) {
        node_text_add(&t, "meridian_appends_total{ack=\"%s\"} %llu\n",
            node_ack_names[a],
            (unsigned long long) atomic_load(&s->appends_by_ack[a]));
    }
    node_text_help(&t, "meridian_append_bytes_total", "counter",
        "Encoded event bytes of successful appends, by acknowledgement level.");
    for (uint32_t a = 0; a < NODE_ACK_LEVELS; a++) {
        node_text_add(&t, "meridian_append_bytes_total{ack=\"%s\"} %llu\n",
            node_ack_names[a],
            (unsigned long long) atomic_load(&s->append_bytes_by_ack[a]));
    }
    node_text_metric(&t, "meridian_events_appended_total", "counter",
        "Events written by appends to this node (replays excluded).",
        atomic_load(&s->events_appended));
    node_text_help(&t, "meridian_append_latency_seconds", "histogram",
        "From an append's arrival to its answer, by acknowledgement level.");
    for (uint32_t a = 0; a < NODE_ACK_LEVELS; a++) {
        snprintf(labels, sizeof labels, "ack=\"%s\"", node_ack_names[a]);
        node_text_hist(&t, "meridian_append_latency_seconds", labels,
            &s->append_latency[a], &node_hist_latency_us);
    }
    node_text_metric(&t, "meridian_commits_total", "counter",
        "Group commits of appends (one transaction and one sync each).",
        atomic_load(&s->commits));
    node_text_help(&t, "meridian_commit_batch_appends", "histogram",
        "Appends per group commit.");
    node_text_hist(&t, "meridian_commit_batch_appends", "", &s->commit_batch,
        &node_hist_batch);
    node_text_metric(&t, "meridian_reads_total", "counter",
        "Read requests served.", atomic_load(&s->reads));
    node_text_metric(&t, "meridian_events_read_total", "counter",
        "Events returned by reads.", atomic_load(&s->events_read));
    node_text_metric(&t, "meridian_events_replicated_total", "counter",
        "Events taken from peers by replication.",
        atomic_load(&s->events_replicated));
    node_text_help(&t, "meridian_pull_batch_events", "histogram",
        "Events applied per pulled batch.");
    node_text_hist(
        &t, "meridian_pull_batch_events", "", &s->pull_batch, &node_hist_batch);
    if (o.ae != NULL) {
        struct node_lag_text l = { &t, now_ms, false };
        node_text_help(&t, "meridian_replication_lag_events", "gauge",
            "Events this node holds that the peer replica has not reported, "
            "per shard.");
        node_ae_lag(o.ae, now_ms, node_lag_text_cb, &l);
        l.seconds = true;
        node_text_help(&t, "meridian_replication_lag_seconds", "gauge",
            "How long this node has seen the peer replica behind, per shard "
            "(0: caught up).");
        node_ae_lag(o.ae, now_ms, node_lag_text_cb, &l);
    }
    node_text_help(&t, "meridian_queue_depth", "gauge",
        "Requests waiting: appends for the writer, reads for the readers, "
        "long-polls and acknowledgement waits parked.");
    node_text_add(
        &t, "meridian_queue_depth{queue=\"writer\"} %u\n", o.queue_writer);
    node_text_add(
        &t, "meridian_queue_depth{queue=\"requests\"} %u\n", o.queue_reads);
    node_text_add(
        &t, "meridian_queue_depth{queue=\"long_polls\"} %u\n", o.parked);
    node_text_rejections(&t, &o);
    node_store_map_use(o.store, &map_size, &map_used);
    node_text_metric(&t, "meridian_lmdb_map_size_bytes", "gauge",
        "The LMDB map's size now (it doubles up to --map-size-max).", map_size);
    node_text_metric(&t, "meridian_lmdb_map_used_bytes", "gauge",
        "Bytes of the LMDB map in use (up to its last page).", map_used);
    node_text_metric(&t, "meridian_hlc_skew_max_ms", "gauge",
        "The largest lead of a replicated timestamp over this node's clock.",
        atomic_load(&s->hlc_ahead_max_ms));
    node_text_metric(&t, "meridian_clock_clamped_total", "counter",
        "Replicated timestamps clamped for being too far ahead.",
        atomic_load(&s->clock_clamped));
    node_text_metric(&t, "meridian_idempotency_hits_total", "counter",
        "Appends answered from an idempotency key (a retry, not written "
        "again).",
        atomic_load(&s->idempotent_replays));
    node_text_metric(&t, "meridian_log_events", "gauge",
        "Events held, every shard.", node_log_events_total(o.store, NULL));
    node_text_metric(&t, "meridian_acks_reached_total", "counter",
        "Region or global appends answered at the level asked.",
        atomic_load(&s->acks_reached));
    node_text_metric(&t, "meridian_acks_timed_out_total", "counter",
        "Region or global appends whose wait ended below the level asked.",
        atomic_load(&s->acks_timed_out));
    free(who);
    if (t.failed) {
        free(t.p);
        return MRD_ENOMEM;
    }
    *out = t.p;
    *len = t.len;
    return MRD_OK;
}

/* ------------------------------------------------------------- STATUS -- */

struct node_lag_json {
    json_t  *lag;
    uint64_t now_ms;
};

static void
node_lag_json_cb(void *arg, uint32_t shard, uint64_t node, uint64_t events,
    uint64_t since_ms)
{
    struct node_lag_json *l = arg;
    double                s = since_ms != 0 && l->now_ms > since_ms
                       ? (double) (l->now_ms - since_ms) / 1000.0
                       : 0.0;
    json_array_append_new(l->lag,
        json_pack("{s:i, s:I, s:I, s:f}", "shard", (int) shard, "peer",
            (json_int_t) node, "events", (json_int_t) events, "seconds", s));
}

/* The STATUS document: docs/PROTOCOL.md lists its fields. */
int
node_status_json(
    struct node_server *srv, const char *metrics_url, char **out, size_t *len)
{
    struct node_observe    o;
    struct node_fence_view fence;
    uint64_t               map_size, map_used;
    uint64_t               held[NODE_SHARDS_MAX];
    json_t                *doc = NULL;

    *out = NULL;
    *len = 0;
    node_server_observe(srv, &o);
    node_server_fence_view(srv, &fence);
    struct node_who *who    = node_who_get(&o);
    uint8_t         *vv     = malloc((size_t) CRDT_ORIGINS_MAX * 16u);
    json_t          *fpeers = json_array();
    json_t          *peers  = json_array();
    json_t          *shards = json_array();
    json_t          *lag    = json_array();
    json_t          *stats  = json_object();
    if (who == NULL || vv == NULL || fpeers == NULL || peers == NULL
        || shards == NULL || lag == NULL || stats == NULL) {
        goto fail;
    }
    uint64_t now_ms = mrd_now_mono_ms();
    uint64_t total  = node_log_events_total(o.store, held);
    node_store_map_use(o.store, &map_size, &map_used);
    for (uint32_t i = 0; i < fence.peer_count; i++) {
        json_array_append_new(
            fpeers, json_integer((json_int_t) fence.peers[i]));
    }
    for (uint32_t i = 0; i < who->count; i++) {
        int st = node_liveness_state(o.liveness, who->nodes[i].id);
        json_array_append_new(peers,
            json_pack("{s:I, s:s, s:s, s:s, s:s}", "id",
                (json_int_t) who->nodes[i].id, "name", who->nodes[i].name,
                "region", who->nodes[i].region, "state",
                node_topo_state_name(who->nodes[i].state), "liveness",
                o.liveness != NULL ? node_swim_name(st) : "unknown"));
    }
    for (uint32_t s = 0; s < o.store->shard_count; s++) {
        uint32_t vlen = 0;
        bool replica = o.topology == NULL || node_topology_holds(o.topology, s);
        json_t *v    = json_array();
        if (v == NULL || node_store_shard_vv(o.store, s, vv, &vlen) != MRD_OK) {
            json_decref(v);
            goto fail;
        }
        for (uint32_t e = 0; e < vlen / 16; e++) {
            json_array_append_new(v,
                json_pack("[I, I]", (json_int_t) mrd_be64_get(vv + 16 * e),
                    (json_int_t) mrd_be64_get(vv + 16 * e + 8)));
        }
        json_array_append_new(shards,
            json_pack("{s:i, s:b, s:I, s:o}", "shard", (int) s, "replica",
                replica, "log_events", (json_int_t) held[s], "vv", v));
    }
    if (o.ae != NULL) {
        struct node_lag_json l = { lag, now_ms };
        node_ae_lag(o.ae, now_ms, node_lag_json_cb, &l);
    }
#define NODE_STATUS_STAT_(name)                                                \
    json_object_set_new(                                                       \
        stats, #name, json_integer((json_int_t) atomic_load(&o.stats->name)));
    NODE_STATS(NODE_STATUS_STAT_)
#undef NODE_STATUS_STAT_
    doc = json_pack(
        "{s:{s:I, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:b, s:b, s:I},"
        " s:{s:b, s:b, s:I, s:o, s:s},"
        " s:{s:I, s:I, s:I, s:I, s:I, s:I},"
        " s:o, s:o, s:o, s:o}",
        "node", "id", (json_int_t) o.store->node_id, "name", who->name,
        "region", who->region, "state", node_topo_state_name(who->state),
        "address", o.url, "version", MRD_VERSION_STRING, "started_ms",
        (json_int_t) o.started_wall_ms, "uptime_ms",
        (json_int_t) (now_ms - o.started_mono_ms), "topology_version",
        (json_int_t) who->version, "metrics_url", metrics_url, "joining",
        (int) atomic_load(&o.store->joining), "region_draining",
        who->region_draining, "life_seq", (json_int_t) o.store->life_seq,
        "fence", "active", fence.active, "clients", fence.clients, "left_ms",
        (json_int_t) fence.left_ms, "peers", fpeers, "label", fence.label,
        "storage", "log_events", (json_int_t) total, "map_size",
        (json_int_t) map_size, "map_used", (json_int_t) map_used,
        "queue_writer", (json_int_t) o.queue_writer, "queue_reads",
        (json_int_t) o.queue_reads, "parked", (json_int_t) o.parked, "peers",
        peers, "shards", shards, "lag", lag, "counters", stats);
    fpeers = peers = shards = lag = stats = NULL; /* doc owns them now */
    if (doc == NULL) {
        goto fail;
    }
    *out = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(doc);
    free(who);
    free(vv);
    if (*out == NULL) {
        return MRD_ENOMEM;
    }
    *len = strlen(*out);
    return *len <= PROTO_DOC_SIZE_MAX ? MRD_OK : MRD_ETOOBIG;

fail:
    json_decref(fpeers);
    json_decref(peers);
    json_decref(shards);
    json_decref(lag);
    json_decref(stats);
    free(who);
    free(vv);
    return MRD_ENOMEM;
}

/* --------------------------------------------------------------- HTTP -- */

struct node_metrics {
    nng_http_server    *server;
    nng_http_handler   *handler;
    struct node_server *srv;
    char                url[300];
};

static void
node_metrics_handle(nng_aio *aio)
{
    nng_http_handler    *h = nng_aio_get_input(aio, 1);
    struct node_metrics *m = nng_http_handler_get_data(h);
    nng_http_res        *res;
    char                *text = NULL;
    size_t               len  = 0;

    if (node_metrics_text(m->srv, &text, &len) != MRD_OK) {
        if (nng_http_res_alloc_error(
                &res, NNG_HTTP_STATUS_INTERNAL_SERVER_ERROR)
            != 0) {
            nng_aio_finish(aio, NNG_ENOMEM);
            return;
        }
    } else if (nng_http_res_alloc(&res) != 0
        || nng_http_res_set_header(
               res, "Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            != 0
        || nng_http_res_copy_data(res, text, len) != 0) {
        free(text);
        nng_aio_finish(aio, NNG_ENOMEM);
        return;
    }
    free(text);
    nng_aio_set_output(aio, 0, res);
    nng_aio_finish(aio, 0);
}

int
node_metrics_start(
    const char *url, struct node_server *srv, struct node_metrics **out)
{
    struct node_metrics *m = calloc(1, sizeof(*m));
    nng_url             *u = NULL;
    nng_sockaddr         sa;
    int                  rv;

    *out = NULL;
    if (m == NULL) {
        return MRD_ENOMEM;
    }
    m->srv = srv;
    rv     = nng_url_parse(&u, url);
    if (rv == 0) {
        rv = nng_http_server_hold(&m->server, u);
    }
    if (rv == 0) {
        rv = nng_http_handler_alloc(
            &m->handler, "/metrics", node_metrics_handle);
    }
    if (rv == 0) {
        rv = nng_http_handler_set_method(m->handler, "GET");
    }
    if (rv == 0) {
        rv = nng_http_handler_set_data(m->handler, m, NULL);
    }
    if (rv == 0) {
        rv = nng_http_server_add_handler(m->server, m->handler);
        if (rv != 0) {
            nng_http_handler_free(m->handler);
        }
        m->handler = NULL; /* the server owns it now, or it is freed */
    }
    if (rv == 0) {
        rv = nng_http_server_start(m->server);
    }
    if (rv == 0) {
        rv = nng_http_server_get_addr(m->server, &sa);
    }
    if (rv != 0) {
        node_log(NODE_LOG_ERROR, "cannot serve metrics", "{s:s, s:s}", "url",
            url, "error", nng_strerror(rv));
        if (m->handler != NULL) {
            nng_http_handler_free(m->handler);
        }
        if (m->server != NULL) {
            nng_http_server_release(m->server);
        }
        nng_url_free(u);
        free(m);
        return MRD_EINVAL;
    }
    /* Port 0 resolved: the URL as a scraper must use it. */
    snprintf(m->url, sizeof m->url, "http://%s:%u/metrics", u->u_hostname,
        (unsigned) ntohs(sa.s_in.sa_port));
    nng_url_free(u);
    *out = m;
    return MRD_OK;
}

const char *
node_metrics_url(const struct node_metrics *m)
{
    return m != NULL ? m->url : "";
}

void
node_metrics_stop(struct node_metrics *m)
{
    if (m == NULL) {
        return;
    }
    nng_http_server_stop(m->server);
    nng_http_server_release(m->server);
    free(m);
}
