/*
 * node.h: meridiand's internal interface: configuration, logging, the LMDB
 * store, the hybrid logical clock, and the server that ties them together.
 *
 * Threads: NNG callbacks decode and validate requests and queue them; one
 * writer thread owns every LMDB write transaction (group commit); a few
 * reader threads serve reads with read-only transactions; a timer thread
 * expires long-polls. Only the writer mutates struct node_store's counters.
 */
#ifndef MRD_NODE_H
#define MRD_NODE_H

#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common.h"
#include "crdt.h"
#include "proto.h"

/* ---------------------------------------------------------------- limits -- */

/* Shards are LMDB named databases; maxdbs is fixed at open. */
#define NODE_SHARDS_MAX 256u
#define NODE_SHARDS_DEFAULT 16u
_Static_assert(NODE_SHARDS_MAX <= PROTO_HINT_SHARDS_SIZE_MAX * 8u,
    "a hint's bitmap names every shard");
/* Named databases besides the shard logs (meta, streams, index, idem...). */
#define NODE_DBS_FIXED 8u
/* NNG contexts: requests the node holds at once (queued, parked or being
 * answered). Each holds at most one queued job, so the writer and reader
 * queues are bounded by this number by construction. */
#define NODE_WORKERS_DEFAULT 512u
#define NODE_WORKERS_MAX 4096u
/* Long-polls parked at once: at most half the workers, so appends always
 * find a context. */
#define NODE_PARKED_MAX(workers) ((workers) / 2u)
/* Reader threads; reads are CPU-bound on a warm map. */
#define NODE_READERS_DEFAULT 2u
#define NODE_READERS_MAX 64u
/* Group commit: at most this many events, or bytes of records, per write
 * transaction (one sync). A single append always fits: it is at most
 * MRD_APPEND_EVENTS_MAX events in one frame. */
#define NODE_COMMIT_EVENTS_MAX 16384u
#define NODE_COMMIT_BYTES_MAX (64u * 1024u * 1024u)
_Static_assert(MRD_APPEND_EVENTS_MAX <= NODE_COMMIT_EVENTS_MAX,
    "one append fits one commit");
/* Idempotency records swept per commit: bounds the writer's extra work. */
#define NODE_IDEM_SWEEP_MAX 1024u
#define NODE_IDEM_WINDOW_S_DEFAULT 86400u
/* Pulled reply bytes the puller holds before one grouped commit
 * (--repl-memory): a few full replies by default. At least one full pull
 * reply with its envelope, which every pull may bring; at most 1 GiB, past
 * which one replicated transaction would hold up local appends for
 * seconds. */
#define NODE_REPL_MEMORY_DEFAULT (16u * 1024u * 1024u)
#define NODE_REPL_MEMORY_MIN ((uint64_t) PROTO_READ_REPLY_MAX + 1024u * 1024u)
#define NODE_REPL_MEMORY_MAX (1024u * 1024u * 1024u)
/* How far ahead of our clock a replicated timestamp may pull it. LWW ties
 * only need the HLC to be roughly right; a peer with a clock an hour fast
 * must not drag every node's timestamps an hour ahead (DESIGN: 500 ms). */
#define NODE_CLOCK_AHEAD_MS_DEFAULT 500u
#define NODE_CLOCK_AHEAD_MS_MAX 3600000u
/* Peers one node pulls from: a full mesh of a few regions. */
#define NODE_PEERS_MAX 32u
/* Nodes that pull from this one and whose holdings it tracks for
 * acknowledgement levels: every peer, plus nodes this one does not pull
 * from (a new node that is catching up). Past it a node counts for nothing. */
#define NODE_KNOWN_PEERS_MAX 64u
/* LMDB map: start size and the most it may grow to (doubling). */
#define NODE_MAP_SIZE_DEFAULT (1ull << 30)
#define NODE_MAP_SIZE_MAX_DEFAULT (64ull << 30)
#define NODE_MAP_SIZE_MIN (1ull << 20)
/* Frames: the default limit, and how far past it a frame still gets an
 * MRD_ETOOBIG answer (beyond, NNG drops the connection: a peer that sends
 * that much is not a client we can help). */
#define NODE_FRAME_SIZE_DEFAULT (16u * 1024u * 1024u)
#define NODE_FRAME_SLACK (1u * 1024u * 1024u)
/* Store format on disk; bumped on incompatible change. 2: the "vv"
 * database also holds this node's own entry per shard (1 kept only the
 * global origin seq); a format-1 store is migrated at open (store.c). */
#define NODE_STORE_FORMAT 2u
#define NODE_STORE_FORMAT_OLD 1u

/* ---------------------------------------------------------------- config -- */

enum node_log_level {
    NODE_LOG_DEBUG = 0,
    NODE_LOG_INFO  = 1,
    NODE_LOG_WARN  = 2,
    NODE_LOG_ERROR = 3,
};

/* A node this one replicates with (static, from --peers, until the
 * topology milestone). */
struct node_peer {
    uint64_t id;
    char     url[256];
};

struct node_config {
    uint64_t node_id;
    char     data_dir[4096];
    char     listen[256];
    char     ready_file[4096];
    char     metrics_listen[256]; /* empty: no metrics endpoint */
    uint32_t shard_count;
    uint64_t map_size;
    uint64_t map_size_max;
    uint32_t frame_size_max;
    uint32_t idem_window_s;
    uint64_t repl_memory; /* --repl-memory */
    uint32_t clock_ahead_max_ms;
    char     region[64];
    /* Every node of a cluster shares it: it keys the shard hash. */
    bool             has_cluster_id;
    uint8_t          cluster_id[16];
    struct node_peer peers[NODE_PEERS_MAX];
    uint32_t         peer_count;
    /* --peer-address ID=URL: the URL this node dials for node ID instead
     * of the one --peers or the topology gives (NAT, a local proxy, another
     * interface). Only this node's dialing changes; what it tells others
     * (the topology, MRD_ENOTREPLICA answers) does not. Ids are distinct
     * and never this node's; an id that is no peer yet is kept for when
     * the topology adds it. */
    struct node_peer peer_addresses[NODE_PEERS_MAX];
    uint32_t         peer_address_count;
    /* --topology: a signed topology file (replication/topo.h); then the
     * cluster id, shards, region, peers and (unless --listen) the listen
     * address come from it. Empty: static mode (--peers). */
    char topology_file[4096];
    /* --key, --keyring: empty means DATA_DIR/node.key, DATA_DIR/keyring,
     * made at first start when missing (security.c). */
    char     key_file[4096];
    char     keyring_file[4096];
    bool     listen_given;
    uint32_t workers;
    uint32_t readers;
    int      log_level;
};

/* Fills defaults, then reads --config FILE (JSON) if given, then the other
 * flags, which win. Returns 0 to run, 1 when --help/--version printed and the
 * program should exit 0, and -1 after printing an error (exit 2). */
int  node_config_parse(struct node_config *cfg, int argc, char **argv);
void node_config_usage(FILE *out);
/* The URL this node dials for node id: its --peer-address among the
 * count overrides if one names it, else url. The result lives as long as
 * the arguments. */
const char *node_peer_url(const struct node_peer *overrides, uint32_t count,
    uint64_t id, const char *url);
/* Logs, once node_log_setup() ran and cfg->peers is final, each
 * --peer-address in use, and warns of those that name no peer (a node
 * the topology may add later). */
void node_config_log_peer_addresses(const struct node_config *cfg);

/* ------------------------------------------------------------------- log -- */

/* JSON lines on stderr: {"ts":..., "level":..., "node":..., "msg":..., ...}.
 * fields_fmt is a jansson json_pack format for an object ("{s:s, s:I}") or
 * NULL. Thread-safe: each line is one write(2). */
void node_log_setup(uint64_t node_id, int level_min);
void node_log(int level, const char *msg, const char *fields_fmt, ...);

/* ------------------------------------------------------------------- HLC -- */

/* Hybrid logical clock: 48 bits of milliseconds, 16 of logical counter. Only
 * the writer thread ticks it. */
struct node_hlc {
    uint64_t last;
};
uint64_t node_hlc_tick(struct node_hlc *hlc, uint64_t wall_ms);
/* Takes in a timestamp from another node (a replicated event), so that our
 * next tick is after it: the HLC receive rule. A remote timestamp more than
 * ahead_max_ms ahead of wall_ms only advances the clock to wall_ms +
 * ahead_max_ms; returns true when it clamped, for the caller to count and
 * log. The event keeps its own timestamp either way: every replica must
 * order LWW writes by the same bytes. */
bool node_hlc_observe(struct node_hlc *hlc, uint64_t remote, uint64_t wall_ms,
    uint32_t ahead_max_ms);

/* ----------------------------------------------------------------- stats -- */

#define NODE_STATS(X)                                                          \
    X(requests)                                                                \
    X(appends)                                                                 \
    X(events_appended)                                                         \
    X(commits)                                                                 \
    X(idempotent_replays)                                                      \
    X(reads)                                                                   \
    X(events_read)                                                             \
    X(long_polls_parked)                                                       \
    X(rejected_proto)                                                          \
    X(rejected_version)                                                        \
    X(rejected_too_big)                                                        \
    X(rejected_name)                                                           \
    X(rejected_busy)                                                           \
    X(rejected_idempotency)                                                    \
    X(rejected_expected_version)                                               \
    X(rejected_no_space)                                                       \
    X(rejected_closed)                                                         \
    X(corrupt_records)                                                         \
    X(map_resizes)                                                             \
    X(idem_expired)                                                            \
    X(state_ops_applied)                                                       \
    X(rejected_state)                                                          \
    X(clock_clamped)                                                           \
    X(events_replicated)                                                       \
    X(rejected_replication)                                                    \
    X(pulls_served)                                                            \
    X(acks_reached)                                                            \
    X(acks_timed_out)                                                          \
    X(hints_sent)                                                              \
    X(hints_received)                                                          \
    X(rejected_not_replica)                                                    \
    X(rejected_topology)                                                       \
    X(topology_updates)                                                        \
    X(liveness_changes)                                                        \
    X(pulls_blocked)                                                           \
    X(pull_events_local)                                                       \
    X(pull_events_remote)                                                      \
    X(pull_bytes_local)                                                        \
    X(pull_bytes_remote)                                                       \
    X(rejected_digest)                                                         \
    X(rejected_pull_reply)                                                     \
    X(idem_replicated)                                                         \
    X(idem_replicated_kept)                                                    \
    X(rejected_joining)                                                        \
    X(rejected_role) /* MRD_EPERM, MRD_EAUTH: the key's role said no */        \
    X(rejected_causal) /* MRD_ECAUSAL: the session's last event not here */    \
    X(rejected_fenced) /* MRD_EFENCED: a drill's fence (PROTO_T_FENCE) */      \
    X(joining) /* not a counter: 1 while appends wait (store->joining) */

/* A histogram for /metrics (metrics.c): per bucket, the observations at
 * or below its bound and above the one before (made cumulative when
 * rendered), the +Inf bucket last; count and sum as Prometheus wants them.
 * Lock-free: an observation is three relaxed adds, so a scrape may see one
 * in count but not yet in its bucket; Prometheus tolerates that. */
#define NODE_HIST_BOUNDS_MAX 16u
struct node_hist {
    _Atomic uint64_t bucket[NODE_HIST_BOUNDS_MAX + 1];
    _Atomic uint64_t count;
    _Atomic uint64_t sum; /* in the unit of the bounds */
};
struct node_hist_bounds {
    uint32_t n;
    uint64_t le[NODE_HIST_BOUNDS_MAX];
    double   scale; /* rendered le and sum = value * scale (us -> s) */
};
/* Append latency, us: 100 us to 10 s. */
extern const struct node_hist_bounds node_hist_latency_us;
/* Items per batch (appends per group commit, events per pull): 1 to 4096. */
extern const struct node_hist_bounds node_hist_batch;
void                                 node_hist_observe(
                                    struct node_hist *h, const struct node_hist_bounds *b, uint64_t v);

/* Acknowledgement levels a histogram or counter is kept by. */
#define NODE_ACK_LEVELS 3u
_Static_assert(MRD_ACK_LOCAL == 0 && MRD_ACK_REGION == 1 && MRD_ACK_GLOBAL == 2,
    "ack levels index the per-level metrics");

struct node_stats {
#define NODE_STAT_FIELD_(name) _Atomic uint64_t name;
    NODE_STATS(NODE_STAT_FIELD_)
#undef NODE_STAT_FIELD_
    /* For /metrics only (not in STATS): by the level the append asked. */
    _Atomic uint64_t appends_by_ack[NODE_ACK_LEVELS];
    _Atomic uint64_t append_bytes_by_ack[NODE_ACK_LEVELS];
    struct node_hist append_latency[NODE_ACK_LEVELS]; /* us, to the answer */
    struct node_hist commit_batch; /* appends per group commit */
    struct node_hist pull_batch; /* events per applied pull batch */
    /* The largest lead of a replicated timestamp over our clock, ms. */
    _Atomic uint64_t hlc_ahead_max_ms;
};
/* Raises a gauge kept as a maximum. */
void node_stat_max(_Atomic uint64_t *gauge, uint64_t v);
#define NODE_STAT_ADD(stats, name, n)                                          \
    atomic_fetch_add_explicit(&(stats)->name, (n), memory_order_relaxed)

/* -------------------------------------------------------------- topology -- */

/* The node's signed topology (topology.c). NULL everywhere below means
 * static mode: no topology, every node holds every shard. */
struct node_topology;
struct node_store;

/* Reads and verifies cfg->topology_file and fills cfg from it. Returns 0,
 * or -1 after printing why (exit 2). */
int node_topology_open(
    struct node_config *cfg, bool listen_given, struct node_topology **out);
/* Reconciles with the version the store holds (the newer wins; a newer
 * file must follow from the stored one) and keeps the store for later
 * versions. */
MRD_MUST_USE int node_topology_attach(
    struct node_topology *nt, struct node_store *store);
void     node_topology_close(struct node_topology *nt);
uint64_t node_topology_version(const struct node_topology *nt);
/* A signed topology from a peer or an operator: kept if topo_accept()
 * takes it after the current one. MRD_OK, or the refusal and its words. */
MRD_MUST_USE int node_topology_offer(
    struct node_topology *nt, const void *buf, size_t len, const char **why);
/* Encodes the TOPOLOGY answer for an asker at version `have`. */
MRD_MUST_USE int node_topology_reply(
    struct node_topology *nt, uint64_t have, struct proto_buf *out);
/* True when this node is one of the shard's replicas (always, static). */
bool node_topology_holds(struct node_topology *nt, uint32_t shard);
/* The same for any node. */
bool node_topology_is_replica(
    struct node_topology *nt, uint32_t shard, uint64_t node_id);
/* The shard's replicas as text, "2 (tcp://...), 5 (tcp://...)", for an
 * MRD_ENOTREPLICA answer; returns how many. */
int node_topology_replicas(
    struct node_topology *nt, uint32_t shard, char *out, size_t size);
/* Every node but this one and the removed ones, each with the URL this
 * node dials: its --peer-address if given, else the topology's. The puller
 * and liveness take their peers (and those of newer versions) from here.
 * MRD_EFULL past max. */
MRD_MUST_USE int node_topology_peers(struct node_topology *nt,
    struct node_peer *peers, uint32_t max, uint32_t *count_out);
/* Calls fn with the current topology and this node's id, under the
 * topology's read lock (fn must not call back into nt); returns the
 * version fn saw. */
struct topo;
uint64_t node_topology_with(struct node_topology *nt,
    void (*fn)(const struct topo *t, uint64_t self, void *arg), void *arg);

/* --------------------------------------------------------- anti-entropy -- */

/* The node's side of replication/ae.h (antientropy.c): placement per shard
 * as ae.h wants it, cached per topology version, and per shard what this
 * node knows of every replica's vector (struct ae_know), fed by PULL
 * requests (server) and replies (puller) and their digests. Topology mode
 * only: NULL in static mode, where every node pulls from every node.
 * Thread safe (one mutex: every call is short). */
struct node_ae;
struct ae_source;
struct ae_ack;
MRD_MUST_USE int node_ae_open(
    struct node_topology *nt, struct node_store *store, struct node_ae **out);
void node_ae_close(struct node_ae *ae);
/* ae_region_of_fn: a node's region index, AE_REGION_NONE if unplaced. */
uint32_t node_ae_region_of(void *ae, uint64_t node);
/* ae_sources / ae_hint_targets for this node and the shard, with the
 * placement of the current topology. */
MRD_MUST_USE int node_ae_sources(struct node_ae *ae, uint32_t shard,
    bool (*live)(void *arg, uint64_t node), void             *live_arg,
    struct ae_source *out, uint32_t *count_out);
MRD_MUST_USE int node_ae_hint_targets(struct node_ae *ae, uint32_t shard,
    bool (*live)(void *arg, uint64_t node), void *live_arg, uint64_t *out,
    uint32_t *count_out);
/* A replica's vector for the shard (a PULL's, or a reply's at its end). */
MRD_MUST_USE int node_ae_report(
    struct node_ae *ae, uint32_t shard, uint64_t node, struct proto_str vv);
/* Replication lag per replica of every shard this node holds: for each
 * other replica it has heard of, the events this node holds that the
 * replica has not reported (a lower bound of the replica's knowledge, so
 * an upper bound of its lag), and since when (monotonic ms, 0: not behind)
 * this node has seen it behind. Calls fn under the module's lock: fn must
 * not call back. */
typedef void (*node_ae_lag_fn)(void *arg, uint32_t shard, uint64_t node,
    uint64_t events, uint64_t behind_since_ms);
void node_ae_lag(
    struct node_ae *ae, uint64_t now_ms, node_ae_lag_fn fn, void *arg);
/* A digest from a PULL or its reply; MRD_EPROTO with why when malformed. */
MRD_MUST_USE int node_ae_absorb(struct node_ae *ae, uint32_t shard,
    struct proto_str digest, const char **why);
/* Takes our vector for the shard (own, wire form) and appends our digest to
 * out. */
MRD_MUST_USE int node_ae_digest(struct node_ae *ae, uint32_t shard,
    struct proto_str own, struct proto_buf *out);
/* Takes our vector and computes the shard's causally stable vector into
 * *out (init it once). MRD_ENOTFOUND when not a replica. */
MRD_MUST_USE int node_ae_stable(struct node_ae *ae, uint32_t shard,
    struct proto_str own, struct crdt_vv *out);
/* Replicas per region holding this node's own event `seq` of the shard,
 * which this node committed (it counts itself). *self_region is its
 * region's index. */
void node_ae_ack(struct node_ae *ae, uint32_t shard, uint64_t seq,
    struct ae_ack *out, uint32_t *self_region);

/* ----------------------------------------------------------------- store -- */

/* The writer's working set for one stream's state document. */
struct node_state_txn {
    struct crdt_doc  doc;
    struct crdt_ops *ops; /* decode scratch: ~28 KiB, so on the heap */
    msgpack_sbuffer  sbuf; /* the new document, encoded */
    msgpack_sbuffer  blobs; /* every event's ops with deps, for the records */
    /* Per event of the append (MRD_APPEND_EVENTS_MAX): its timestamp and
     * its ops in blobs (len 0: none). */
    uint64_t *hlc;
    uint32_t *blob_off;
    uint32_t *blob_len;
    /* Replicated batches: the stream whose document doc holds (0: none),
     * and whether it changed since it was loaded. */
    uint64_t remote_id;
    uint32_t remote_shard;
    bool     remote_dirty;
};

/* Per-stream metadata, kept in the "streams" database. */
struct node_stream {
    uint64_t id; /* local, never reused; prefixes index keys */
    uint64_t count; /* events; version = count - 1 */
    uint32_t shard;
};

struct node_store {
    MDB_env *env;
    int      lock_fd; /* write-locked: one meridiand per data dir */
    MDB_dbi  dbi_meta;
    MDB_dbi  dbi_streams;
    MDB_dbi  dbi_index;
    MDB_dbi  dbi_idem;
    MDB_dbi  dbi_idem_exp;
    MDB_dbi  dbi_state; /* stream id -> state document */
    MDB_dbi  dbi_vv; /* shard BE32, origin BE64 -> highest seq held */
    MDB_dbi  dbi_progress; /* peer BE64, shard BE32 -> peer log seq read */
    MDB_dbi  dbi_log[NODE_SHARDS_MAX];
    uint32_t shard_count;
    uint64_t node_id;
    uint8_t  cluster_id[16];
    uint64_t map_size;
    uint64_t map_size_max;
    uint32_t idem_window_s;
    /* Readers hold it shared around each read transaction; the writer holds
     * it exclusively to grow the map (mdb_env_set_mapsize needs no live
     * transaction in the process). */
    pthread_rwlock_t resize_lock;
    /* The first origin seq of this life of the node's data dir (0: none
     * recorded); read-only after open. */
    uint64_t life_seq;
    /* Writer-owned counters, loaded at open and persisted in every commit. */
    uint64_t        origin_seq_last;
    uint64_t        stream_id_last;
    struct node_hlc hlc;
    uint64_t        log_seq_last[NODE_SHARDS_MAX];
    /* Shards whose own-events entry in "vv" the write transaction in hand
     * must raise (node_event_put marks, node_own_vv_put writes): the
     * highest seq of this node's events in a shard, which anti-entropy's
     * knowledge needs per shard (replication/ae.h, "Vectors"). */
    uint64_t own_touched[NODE_SHARDS_MAX];
    uint8_t  own_touched_any[(NODE_SHARDS_MAX + 7u) / 8u];
    /* Writer-owned scratch for state documents (state.c). */
    struct node_state_txn *state;
    /* Two threads write: the writer (appends) and the puller (replicated
     * batches). LMDB serialises write transactions anyway; this mutex also
     * guards the counters above and the state scratch they share. */
    pthread_mutex_t write_mu;
    uint32_t        clock_ahead_max_ms;
    uint32_t        peer_count; /* 0: this node is every shard's only replica */
    /* Per shard, the causally stable vector counters fold at (write_mu). */
    struct crdt_vv *stable;
    /* Created empty with peers, and not yet caught up (store.c, "joining"):
     * appends are refused meanwhile, so that a node whose data dir was
     * emptied never hands out a dot it wrote in its previous life. */
    _Atomic bool joining;
    /* A replicated event of this node's own origin came back: the data
     * dir had an earlier life (node_puller_joined waits for every replica
     * then). */
    _Atomic bool own_seen;
};

/* Opens (creating on first start) the store in cfg->data_dir. Checks node id,
 * format version and shard count against what is stored. Runs
 * mdb_reader_check. Logs and returns an MRD_ error on failure. */
MRD_MUST_USE int node_store_open(
    struct node_store *store, const struct node_config *cfg);
void node_store_close(struct node_store *store);
/* A document kept in the meta database under key (the signed topology):
 * *out is malloc'd. MRD_ENOTFOUND when there is none, MRD_EIO. */
MRD_MUST_USE int node_store_meta_get(
    struct node_store *store, const char *key, uint8_t **out, size_t *len_out);
/* Writes it in a transaction of its own. MRD_ENOSPACE, MRD_EIO. */
MRD_MUST_USE int node_store_meta_put(
    struct node_store *store, const char *key, const void *buf, size_t len);
uint32_t node_store_shard_of(
    const struct node_store *store, const char *stream, size_t len);

/* One append, as the writer sees it. Filled by the request decoder; the
 * writer fills the outcome. */
struct node_append {
    struct proto_append_req req;
    uint64_t                digest; /* of the events, for idempotency */
    uint32_t                shard;
    /* Outcome. */
    int                     rv;
    struct proto_append_rep rep;
    int64_t                 current_version; /* for MRD_EVERSION */
    const char             *why;
    char                    why_buf[192]; /* why, when it is not static */
    bool                    has_ops; /* some event carries state ops */
    uint32_t                op_count; /* ops over all its events */
};

/* Commits appends in one write transaction (one sync). Each append gets its
 * own outcome in ->rv; a refused one (version, idempotency) writes nothing
 * and does not affect the others. Returns MRD_OK when the transaction
 * committed (even if every append was refused), MRD_ENOSPACE when the map
 * is full at its maximum or the disk is full (nothing committed; callers
 * retry appends one at a time to find the ones that fit), MRD_EIO on an I/O
 * error (fail-stop). Writer thread only. scratch is reused for records. */
MRD_MUST_USE int node_store_commit(struct node_store *store,
    struct node_append **appends, size_t count, struct proto_buf *scratch,
    struct node_stats *stats);

/* Store internals shared by store*.c. Each returns an LMDB code: 0,
 * MDB_NOTFOUND, or MDB_CORRUPTED for a value of the wrong shape. */
int node_stream_lookup(MDB_txn *txn, const struct node_store *store,
    struct proto_str name, struct node_stream *out);
int node_stream_put(MDB_txn *txn, const struct node_store *store,
    struct proto_str name, const struct node_stream *st);
/* Counters saved before a write transaction, restored if it aborts. */
struct node_counters {
    uint64_t        origin_seq_last;
    uint64_t        stream_id_last;
    struct node_hlc hlc;
    uint64_t        log_seq_last[NODE_SHARDS_MAX];
};
void node_counters_save(
    const struct node_store *store, struct node_counters *c);
void node_counters_restore(
    struct node_store *store, const struct node_counters *c);
int node_counters_put(MDB_txn *txn, struct node_store *store);
/* Writes the own-events entries node_event_put marked (see own_touched);
 * forgets the marks whatever happens, so an aborted transaction leaves
 * none behind. An LMDB code. */
int  node_own_vv_put(MDB_txn *txn, struct node_store *store);
void node_own_vv_forget(struct node_store *store);
bool node_store_grow(struct node_store *store, struct node_stats *stats);
/* A replicated record that carries its append's idempotency key (the
 * append's first event, now at first_pos of the local stream stream_id):
 * remembers the key here too, unless a key of that name is here already.
 * An LMDB code. */
int node_replicate_idem(MDB_txn *txn, struct node_store *store,
    const struct proto_record *r, uint64_t stream_id, uint64_t first_pos,
    uint64_t now_ms, struct node_stats *stats);

/* Maps an LMDB or errno code from a write path to an MRD_ code. */
int node_store_err(int rc);
/* A commit's LMDB code, with LMDB's EIO for a short write on a full file
 * system (less than NODE_SHORT_WRITE_ROOM free under the data dir) turned
 * into ENOSPC: logged. Other codes unchanged. */
#define NODE_SHORT_WRITE_ROOM ((uint64_t) 1 << 20)
/* A store created with peers starts its origin seq at its creation time in
 * ms shifted by this (node_store_init_meta). */
#define NODE_LIFE_SEQ_SHIFT 20u
int node_store_commit_rc(const struct node_store *store, int rc);

/* State documents (state.c), writer side, for an append with ops: check
 * applies every event's ops (refusing the append through a->rv, 0
 * returned), ticking the HLC for each event; then node_event_put() takes
 * each event's timestamp from s->hlc and its ops from node_state_event(),
 * and node_state_finish() writes the document. LMDB or errno codes. */
MRD_MUST_USE int node_state_txn_init(struct node_state_txn *s);
void             node_state_txn_fini(struct node_state_txn *s);
int              node_state_check(MDB_txn *txn, struct node_store *store,
                 struct node_append *a, uint64_t stream_id, bool exists,
                 struct node_state_txn *s);
/* Points ev->ops at event index's ops as its record stores them. */
void node_state_event(
    const struct node_state_txn *s, uint32_t index, struct proto_event_in *ev);
int node_state_finish(MDB_txn *txn, struct node_store *store,
    uint64_t stream_id, const struct node_state_txn *s);
/* Applies a replicated event's ops (its record's ops: deps included) to its
 * stream's document, kept in memory across consecutive events of one
 * stream until node_state_remote_flush(). MDB_CORRUPTED when they do not decode
 * or their deps are missing (*why says which). Caller holds write_mu. */
int node_state_apply_remote(MDB_txn *txn, struct node_store *store,
    uint32_t shard, uint64_t stream_id, bool exists, struct crdt_dot dot,
    uint64_t hlc, struct proto_str ops, const char **why);
/* Writes the document node_state_apply_remote() kept in memory, if it
 * changed; every replicated transaction calls it before it commits. */
int node_state_remote_flush(MDB_txn *txn, struct node_store *store);
/* Drops that document without writing it (the transaction aborts). */
void node_state_remote_forget(struct node_store *store);
/* Sets a shard's stable vector (the puller: the minimum of this node's and
 * every peer's vector as of a point this node has read their logs up to). */
/* The node has read every live replica's log of every shard it holds to
 * the end: it may take appends (clears "joining" for good). MRD_OK or
 * MRD_EIO. */
MRD_MUST_USE int node_store_joined(struct node_store *store);
MRD_MUST_USE int node_store_set_stable(
    struct node_store *store, uint32_t shard, const struct crdt_vv *stable);
/* Reads a stream's state into a whole reply frame (any thread). */
MRD_MUST_USE int node_store_state_read(struct node_store *store,
    const struct proto_state_req *req, struct proto_buf *out,
    struct node_stats *stats, const char **why);

/* Replication, store side (repl.c). */
/* Raises *out by every entry of a wire vector (validated by its decoder:
 * proto_vv_check). MRD_OK or MRD_ENOMEM / MRD_EFULL. */
MRD_MUST_USE int node_vv_from_wire(struct proto_str bin, struct crdt_vv *out);
/* This node's version vector for a shard as wire bytes (16 per entry,
 * room for CRDT_ORIGINS_MAX); any thread. */
MRD_MUST_USE int node_store_shard_vv(
    struct node_store *store, uint32_t shard, uint8_t *out, uint32_t *len_out);
/* How far this node has read peer's log of shard (0: not at all). */
MRD_MUST_USE int node_store_progress(
    struct node_store *store, uint64_t peer, uint32_t shard, uint64_t *after);
/* Topology mode's part of serving a PULL: where each origin is (for the
 * request's skip set) and the digest to send back. */
struct node_pull_ae {
    uint32_t (*region_of)(void *arg, uint64_t node);
    void            *arg;
    struct proto_str digest; /* len 0: none */
};
/* Serves a PULL (replication/ae.h's ae_serve over the shard's log): a
 * whole reply frame into out; any thread. ae NULL: static mode, no skip
 * set, the reply without the anti-entropy keys. */
MRD_MUST_USE int node_store_pull(struct node_store *store,
    const struct proto_pull_req *req, const struct node_pull_ae *ae,
    struct proto_buf *out, uint32_t *count_out, struct node_stats *stats,
    const char **why);
/* Appends a pulled batch in one transaction with the shard's vector, the
 * events' state ops and the new read position of peer's log. MRD_OK,
 * MRD_ECORRUPT (a batch that breaks an invariant: refused, counted,
 * logged), MRD_ENOSPACE, MRD_EIO. */
/* Several pulled batches of one peer (distinct shards) in ONE transaction:
 * one commit for a whole round of hinted shards. Each batch says how many
 * events it applied and, in rv, MRD_OK or MRD_ECORRUPT (refused alone: the
 * others still commit). Returns MRD_OK, or a storage error (MRD_ENOSPACE,
 * MRD_EIO) for which nothing was applied. */
struct node_repl_batch {
    uint32_t                     shard;
    uint64_t                     after; /* the request's */
    uint32_t                     count_max; /* the request's count */
    const struct proto_pull_rep *rep;
    uint32_t                     applied; /* out */
    int                          rv; /* out */
};
MRD_MUST_USE int node_store_replicate_many(struct node_store *store,
    uint64_t peer, struct node_repl_batch *batches, size_t n,
    struct node_stats *stats);
MRD_MUST_USE int node_store_replicate(struct node_store *store, uint64_t peer,
    struct node_repl_batch *batch, struct node_stats *stats);

/* Reads, on any thread. Each takes its own read-only transaction. The stream
 * and log reads write a whole reply frame, header included, into out (which
 * the caller resets first). */
/* Stream reads also say where the next forward read starts (*next_out)
 * and whether this one examined the stream up to its end (*end_out): a
 * cursor read may stop early at its scan bound. */
MRD_MUST_USE int node_store_read_stream(struct node_store *store,
    const struct proto_read_req *req, struct proto_buf *out,
    uint32_t *count_out, uint64_t *next_out, bool *end_out,
    struct node_stats *stats, const char **why);
MRD_MUST_USE int node_store_read_log(struct node_store *store,
    const struct proto_log_req *req, struct proto_buf *out, uint32_t *count_out,
    struct node_stats *stats, const char **why);
MRD_MUST_USE int node_store_stream_info(
    struct node_store *store, struct proto_str stream, mrd_stream_info *info);
/* DIGEST (proto.h): the shard's events under req's cut, counted and summed,
 * and the shard's vector in the same snapshot (vv: room for
 * CRDT_ORIGINS_MAX entries of 16 bytes). MRD_EINVAL (no such shard),
 * MRD_ECORRUPT (a record failed its checksum: counted, logged), MRD_EIO. */
MRD_MUST_USE int node_store_digest(struct node_store *store,
    const struct proto_digest_req *req, struct proto_digest_rep *rep,
    uint8_t *vv, struct node_stats *stats, const char **why);
/* LMDB map size and bytes in use (last page), for metrics. */
void node_store_map_use(
    struct node_store *store, uint64_t *size, uint64_t *used);

/* -------------------------------------------------------------- security -- */

/* The node's identity and whom it trusts (security.c): its key pair, the
 * cluster id its handshakes carry, the keyring (client keys and roles;
 * peers without a topology) and the topology's node keys and admin key.
 * A thread re-reads the keyring when the file changes and rebuilds the
 * tables when the topology moves on, then has every registered socket
 * drop the sessions of keys no longer trusted. Thread safe. */
struct node_security;
struct lk_config;
struct lk_sock;
struct lk_stats;
/* Reads (or at first start makes) the key, the keyring and the identity
 * file; logs why and returns an MRD_ error when the node must not start. */
MRD_MUST_USE int node_security_open(const struct node_config *cfg,
    const struct node_store *store, struct node_topology *nt,
    struct node_security **out);
void             node_security_close(struct node_security *sec);
/* A link config for the node's listener (trusts nodes and clients) or for
 * its dialers to peers (trusts nodes only). */
void node_security_lk_config(struct node_security *sec, bool listener,
    size_t frame_max, struct lk_config *out);
/* Sockets whose sessions are re-checked when trust changes. */
void node_security_register(struct node_security *sec, struct lk_sock *s);
struct lk_stats *node_security_stats(struct node_security *sec);
/* May the holder of pk make a request of this type (on this stream, when
 * stream is not NULL)? MRD_OK, MRD_EPERM (the role or the prefixes do not
 * allow it) or MRD_EAUTH (the key is not trusted any more), with words. */
MRD_MUST_USE int node_security_check(struct node_security *sec,
    const uint8_t *pk, uint32_t type, const char *stream, size_t stream_len,
    const char **why);
/* True when pk is the key of node id (a PULL, HINT or SWIM names its
 * sender: a node may only speak for itself). */
bool node_security_is_node(
    struct node_security *sec, const uint8_t *pk, uint64_t id);

/* ---------------------------------------------------------------- server -- */

struct node_server;

/* Starts listening and serving; cfg and store must outlive the server. */
MRD_MUST_USE int node_server_start(const struct node_config *cfg,
    struct node_store *store, struct node_topology *topology,
    struct node_ae *ae, struct node_security *sec,
    struct node_server **server_out);
/* Knowledge of the shard's replicas grew (the puller absorbed a reply's
 * digest): answers the appends of the shard whose level it completes. */
void node_server_ack_recheck(struct node_server *srv, uint32_t shard);
/* The URL actually bound (port 0 resolved). */
const char *node_server_url(const struct node_server *server);
/* Graceful stop: queued appends are committed and answered, new requests
 * get MRD_ECLOSED, parked long-polls are answered; then everything is
 * closed and freed. */
void               node_server_stop(struct node_server *server);
struct node_stats *node_server_stats(struct node_server *srv);
/* Requeues every parked long-poll: events arrived by another path than
 * the writer (replication). */
void node_server_wake_all(struct node_server *srv);
/* True once the writer hit a fail-stop error; main exits non-zero. */
bool node_server_failed(const struct node_server *server);
/* A failover drill's fence (PROTO_T_FENCE): while until_ms (monotonic) is
 * ahead, requests from the listed peers are refused, and with clients
 * every client request but the operations ones. */
#define NODE_FENCE_PEERS_MAX PROTO_FENCE_PEERS_MAX
struct node_fence_view {
    bool     active;
    bool     clients;
    uint64_t left_ms; /* until it lifts by itself */
    uint64_t since_ms; /* wall clock, when it was set */
    uint32_t peer_count;
    uint64_t peers[NODE_FENCE_PEERS_MAX];
    char     label[PROTO_FENCE_LABEL_SIZE_MAX + 1];
};
void node_server_fence_view(
    struct node_server *srv, struct node_fence_view *out);

/* What /metrics and STATUS report (metrics.c), gathered by the server. */
struct node_observe {
    const struct node_config *cfg;
    struct node_store        *store;
    struct node_topology     *topology; /* NULL: static mode */
    struct node_ae           *ae; /* NULL: static mode */
    struct node_liveness     *liveness; /* NULL: no SWIM */
    struct node_stats        *stats;
    struct lk_stats          *link;
    const char               *url;
    uint64_t                  started_wall_ms;
    uint64_t                  started_mono_ms;
    uint32_t                  queue_writer; /* appends waiting */
    uint32_t                  queue_reads; /* reads waiting */
    uint32_t                  parked; /* long-polls and ack waits */
};
void node_server_observe(struct node_server *srv, struct node_observe *out);

/* The metrics endpoint (metrics.c): NNG's HTTP server at cfg's
 * --metrics-listen, GET /metrics in Prometheus text format. */
struct node_metrics;
MRD_MUST_USE int node_metrics_start(
    const char *url, struct node_server *srv, struct node_metrics **out);
/* The URL bound (port 0 resolved), "" when not serving. */
const char *node_metrics_url(const struct node_metrics *m);
void        node_metrics_stop(struct node_metrics *m);
/* Where the server's STATUS finds the metrics URL (set once after start). */
void node_server_set_metrics_url(struct node_server *srv, const char *url);
/* The Prometheus text and the STATUS document, malloc'd, NUL-ended. */
MRD_MUST_USE int node_metrics_text(
    struct node_server *srv, char **out, size_t *len);
MRD_MUST_USE int node_status_json(
    struct node_server *srv, const char *metrics_url, char **out, size_t *len);

/* Hints: the server tells the puller about HINTs received (hint_in) and
 * about shards its writer committed new events to (hint_out, called by the
 * writer thread after each commit). Either may be NULL. */
typedef void (*node_hint_in_fn)(
    void *arg, uint64_t from, const uint8_t *shards, size_t len);
typedef void (*node_hint_out_fn)(void *arg, const uint8_t *shards, size_t len);
void node_server_set_hints(struct node_server *srv, node_hint_in_fn in,
    node_hint_out_fn out, void *arg);

/* -------------------------------------------------------------- liveness -- */

/* SWIM over the node's sockets (liveness.c); only with a topology (else
 * start leaves *out NULL and every call below is a no-op). */
struct node_liveness;
MRD_MUST_USE int node_liveness_start(const struct node_config *cfg,
    struct node_topology *topology, struct node_stats *stats,
    struct node_security *sec, struct node_liveness **out);
void             node_liveness_stop(struct node_liveness *lv);
/* A SWIM message from a peer (the server's NNG thread): queued. */
void node_liveness_recv(
    struct node_liveness *lv, uint64_t from, const void *bytes, size_t len);
/* SWIM's view of a node (enum swim_state: 0 unknown, 1 alive, 2 suspect,
 * 3 dead); 0 without SWIM. */
int node_liveness_state(struct node_liveness *lv, uint64_t id);
/* True when SWIM holds the node DEAD: the puller skips it. */
bool node_liveness_dead(struct node_liveness *lv, uint64_t id);
/* A peer that gossip says runs a newer topology (then forgotten), or 0. */
uint64_t node_liveness_topo_from(struct node_liveness *lv);
/* Where the server hands SWIM messages (set once, before peers talk). */
void node_server_set_liveness(
    struct node_server *srv, struct node_liveness *lv);

/* ---------------------------------------------------------------- puller -- */

struct node_puller;

/* Starts pulling every shard from every peer of cfg (nothing when there are
 * none: *out stays NULL). */
MRD_MUST_USE int node_puller_start(const struct node_config *cfg,
    struct node_store *store, struct node_server *srv, struct node_stats *stats,
    struct node_topology *topology, struct node_liveness *liveness,
    struct node_ae *ae, struct node_security *sec, struct node_puller **out);
/* Stops and frees it (NULL is fine); waits for a pull in flight. */
void node_puller_stop(struct node_puller *p);

#endif /* MRD_NODE_H */
