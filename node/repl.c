/*
 * repl.c: the store's side of pull-based anti-entropy (DESIGN.md,
 * "Replication"; docs/ARCHITECTURE.md, "Replication").
 *
 * A replica asks a peer for a shard's events after the last position of the
 * peer's log it has read, sending its own version vector for the shard; the
 * peer skips what the vector covers (node_store_pull). The replica appends
 * what it gets in the peer's order, which is causal order, and in one
 * transaction also updates its vector, applies the events' CRDT ops and
 * stores how far it has read the peer's log (node_store_replicate): a batch
 * lands exactly once, even across crashes, because the read position and the
 * events commit together.
 *
 * Version vectors: the "vv" database holds, per shard and origin, the
 * highest seq held. Seqs of one origin increase in every log (each node
 * appends an origin's events in that origin's order), so "highest" is
 * enough. This node's own entry is kept there too, per shard (the writer
 * raises it in each commit: node_own_vv_put): the highest seq of its own
 * events in that shard, which is what knowledge of a replica's vector
 * needs (replication/ae.h, "Vectors"); the global origin seq stays in meta.
 */
#include "node.h"

#include "ae.h"
#ifdef MRD_PLANTED_BUGS
#include "plant.h"
#endif

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ version vectors -- */

struct node_vv {
    uint32_t        n;
    struct crdt_dot e[CRDT_ORIGINS_MAX];
    bool            dirty[CRDT_ORIGINS_MAX];
};

static bool
node_vv_raise(struct node_vv *vv, uint64_t origin, uint64_t seq)
{
    uint32_t i = 0;
    while (i < vv->n && vv->e[i].origin < origin) {
        i++;
    }
    if (i < vv->n && vv->e[i].origin == origin) {
        if (vv->e[i].seq < seq) {
            vv->e[i].seq = seq;
            vv->dirty[i] = true;
        }
        return true;
    }
    if (vv->n == CRDT_ORIGINS_MAX) {
        return false;
    }
    memmove(&vv->e[i + 1], &vv->e[i], (vv->n - i) * sizeof(vv->e[0]));
    memmove(&vv->dirty[i + 1], &vv->dirty[i], (vv->n - i) * sizeof(bool));
    vv->e[i]     = (struct crdt_dot) { origin, seq };
    vv->dirty[i] = true;
    vv->n++;
    return true;
}

static void
node_vv_key(uint8_t key[12], uint32_t shard, uint64_t origin)
{
    mrd_be32_put(key, shard);
    mrd_be64_put(key + 4, origin);
}

/* Loads the shard's vector, this node's own entry included. */
static int
node_vv_load(MDB_txn *txn, const struct node_store *store, uint32_t shard,
    struct node_vv *vv)
{
    MDB_cursor *cur;
    uint8_t     key[12];
    MDB_val     k = { 12, key }, v;

    vv->n  = 0;
    int rc = mdb_cursor_open(txn, store->dbi_vv, &cur);
    if (rc != 0) {
        return rc;
    }
    node_vv_key(key, shard, 0);
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size == 12 && mrd_be32_get(k.mv_data) == shard
        && vv->n < CRDT_ORIGINS_MAX) {
        if (v.mv_size != 8) {
            rc = MDB_CORRUPTED;
            break;
        }
        vv->e[vv->n].origin = mrd_be64_get((const uint8_t *) k.mv_data + 4);
        vv->e[vv->n].seq    = mrd_be64_get(v.mv_data);
        vv->dirty[vv->n]    = false;
        vv->n++;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* A clamped timestamp, logged at most once a second (a skewed peer sends
 * thousands): the count of the ones not logged goes with the next line,
 * and clock_clamped counts them all. Names the event in hand by its dot
 * and its correlation and causation ids, never its payload. */
#define NODE_CLAMP_LOG_MS 1000u
static void
node_clamp_log(const struct proto_record *r, uint64_t now, uint32_t max_ms)
{
    static _Atomic uint64_t last_ms;
    static _Atomic uint64_t quiet;
    uint64_t                mono = mrd_now_mono_ms();
    uint64_t                last = atomic_load(&last_ms);

    if (last != 0 && mono - last < NODE_CLAMP_LOG_MS) {
        atomic_fetch_add(&quiet, 1);
        return;
    }
    if (!atomic_compare_exchange_strong(&last_ms, &last, mono)) {
        atomic_fetch_add(&quiet, 1);
        return;
    }
    node_log(NODE_LOG_WARN, "a replicated timestamp is ahead of our clock",
        "{s:I, s:I, s:I, s:I, s:s%, s:s%, s:I}", "origin",
        (json_int_t) r->origin, "seq", (json_int_t) r->seq, "ahead_ms",
        (json_int_t) ((r->hlc >> 16) - now), "max_ms", (json_int_t) max_ms,
        "correlation_id", r->correlation.ptr != NULL ? r->correlation.ptr : "",
        (size_t) r->correlation.len, "causation_id",
        r->causation.ptr != NULL ? r->causation.ptr : "",
        (size_t) r->causation.len, "not_logged",
        (json_int_t) atomic_exchange(&quiet, 0));
}

int
node_vv_from_wire(struct proto_str bin, struct crdt_vv *out)
{
    int rv = MRD_OK;
    for (uint32_t i = 0; rv == MRD_OK && i < proto_vv_count(bin); i++) {
        uint64_t origin, seq;
        proto_vv_at(bin, i, &origin, &seq);
        rv = crdt_vv_raise(out, origin, seq);
    }
    return rv;
}

/* The vector as the wire carries it: 16-byte big-endian entries. */
static void
node_vv_bin(const struct node_vv *vv, uint8_t *out)
{
    for (uint32_t i = 0; i < vv->n; i++) {
        mrd_be64_put(out + 16 * i, vv->e[i].origin);
        mrd_be64_put(out + 16 * i + 8, vv->e[i].seq);
    }
}

int
node_store_shard_vv(
    struct node_store *store, uint32_t shard, uint8_t *out, uint32_t *len_out)
{
    struct node_vv *vv = malloc(sizeof(*vv));
    MDB_txn        *txn;

    if (vv == NULL) {
        return MRD_ENOMEM;
    }
    pthread_rwlock_rdlock(&store->resize_lock);
    int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
    if (rc == 0) {
        rc = node_vv_load(txn, store, shard, vv);
        mdb_txn_abort(txn);
    }
    pthread_rwlock_unlock(&store->resize_lock);
    if (rc == 0) {
        node_vv_bin(vv, out);
        *len_out = vv->n * 16;
    }
    free(vv);
    return rc == 0 ? MRD_OK : MRD_EIO;
}

int
node_store_progress(
    struct node_store *store, uint64_t peer, uint32_t shard, uint64_t *after)
{
    MDB_txn *txn;
    uint8_t  key[12];
    MDB_val  k = { 12, key }, v;

    *after = 0;
    mrd_be64_put(key, peer);
    mrd_be32_put(key + 8, shard);
    pthread_rwlock_rdlock(&store->resize_lock);
    int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
    if (rc == 0) {
        rc = mdb_get(txn, store->dbi_progress, &k, &v);
        if (rc == 0 && v.mv_size == 8) {
            *after = mrd_be64_get(v.mv_data);
        }
        mdb_txn_abort(txn);
    }
    pthread_rwlock_unlock(&store->resize_lock);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        node_log(NODE_LOG_ERROR, "cannot read replication progress", "{s:s}",
            "error", mdb_strerror(rc));
        return MRD_EIO;
    }
    return MRD_OK;
}

/* ---------------------------------------------------------------- pulls -- */

/* ae_serve's view of the shard's log: an LMDB cursor, each record checked
 * before it is looked at. */
struct node_pull_scan {
    struct node_store         *store;
    struct node_stats         *stats;
    const struct node_pull_ae *ae;
    uint32_t                   shard;
    MDB_cursor                *cur;
    uint64_t                   after;
    bool                       started;
    MDB_val                    k, v; /* the entry `next` returned */
    struct proto_buf          *out;
    struct proto_events_wr     w;
    const char               **why;
};

static int
node_pull_next(void *arg, struct ae_log_entry *e)
{
    struct node_pull_scan *sc = arg;
    uint8_t                key[8];
    int                    rc;
    uint64_t               origin, seq;

    if (!sc->started) {
        sc->started = true;
        mrd_be64_put(key, sc->after + 1);
        sc->k = (MDB_val) { 8, key };
        rc    = mdb_cursor_get(sc->cur, &sc->k, &sc->v, MDB_SET_RANGE);
    } else {
        rc = mdb_cursor_get(sc->cur, &sc->k, &sc->v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND) {
        return MRD_ENOTFOUND;
    }
    if (rc != 0) {
        *sc->why = "cannot read the shard's log";
        return MRD_EIO;
    }
    uint64_t log_seq = sc->k.mv_size == 8 ? mrd_be64_get(sc->k.mv_data) : 0;
    if (log_seq == 0 || sc->v.mv_size < 8 + 10
        || proto_record_verify(
               (const char *) sc->v.mv_data + 8, sc->v.mv_size - 8)
            != MRD_OK
        || !proto_record_dot((const char *) sc->v.mv_data + 8,
            sc->v.mv_size - 8, &origin, &seq)) {
        NODE_STAT_ADD(sc->stats, corrupt_records, 1);
        node_log(NODE_LOG_ERROR, "a stored record failed its checksum",
            "{s:i, s:I}", "shard", (int) sc->shard, "log_seq",
            (json_int_t) log_seq);
        *sc->why = "a stored event failed its checksum";
        return MRD_ECORRUPT;
    }
    *e = (struct ae_log_entry) { log_seq, { origin, seq },
        (uint32_t) (sc->v.mv_size + PROTO_EVENT_REPLY_OVERHEAD) };
    return MRD_OK;
}

static uint32_t
node_pull_region_of(void *arg, uint64_t node)
{
    struct node_pull_scan *sc = arg;
    return sc->ae->region_of(sc->ae->arg, node);
}

static int
node_pull_emit(void *arg, const struct ae_log_entry *e)
{
    struct node_pull_scan *sc = arg;
    proto_events_reply_add(sc->out, &sc->w, mrd_be64_get(sc->v.mv_data),
        e->log_seq, (const char *) sc->v.mv_data + 8, sc->v.mv_size - 8);
    return proto_buf_status(sc->out);
}

int
node_store_pull(struct node_store *store, const struct proto_pull_req *req,
    const struct node_pull_ae *ae, struct proto_buf *out, uint32_t *count_out,
    struct node_stats *stats, const char **why)
{
    MDB_txn *txn;

    if (req->shard >= store->shard_count) {
        *why = "no such shard";
        return MRD_EINVAL;
    }
    /* A node of another cluster hashes streams to other shards: what it
     * would take from us would land in the wrong logs. */
    if (req->cluster.len != 16
        || memcmp(req->cluster.ptr, store->cluster_id, 16) != 0) {
        *why = "the asker is not of this cluster (its --cluster-id differs)";
        return MRD_EINVAL;
    }
    struct crdt_vv asker;
    crdt_vv_init(&asker);
    int rv = node_vv_from_wire(req->vv, &asker);
    if (rv != MRD_OK) {
        crdt_vv_free(&asker);
        return rv;
    }
    pthread_rwlock_rdlock(&store->resize_lock);
    int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&store->resize_lock);
        crdt_vv_free(&asker);
        *why = "cannot begin a read transaction";
        return rc == MDB_READERS_FULL ? MRD_EBUSY : MRD_EIO;
    }
    struct node_pull_scan sc = { .store = store,
        .stats                          = stats,
        .ae                             = ae,
        .shard                          = req->shard,
        .after                          = req->after,
        .out                            = out,
        .why                            = why };
    rc = mdb_cursor_open(txn, store->dbi_log[req->shard], &sc.cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        pthread_rwlock_unlock(&store->resize_lock);
        crdt_vv_free(&asker);
        return MRD_EIO;
    }
    proto_events_reply_begin(out, PROTO_T_PULL,
        ae != NULL ? PROTO_PULL_REP_KEYS_AE : PROTO_PULL_REP_KEYS, &sc.w);
    /* Room for the rest of the reply: keys, a full vector, a digest. */
    uint64_t reserve = 256u + 16u * CRDT_ORIGINS_MAX
        + (ae != NULL ? PROTO_DIGEST_SIZE_MAX : 0u);
    MRD_ASSERT(out->cap_max > out->len + reserve);
    struct ae_serve_req sreq = { .after = req->after,
        .count_max                      = req->count,
        .bytes_max                      = out->cap_max - out->len - reserve,
        .skip_regions                   = ae != NULL ? req->skip : 0,
        .vv                             = &asker };
    struct ae_serve_cb  cb
        = { node_pull_next, node_pull_region_of, node_pull_emit, &sc };
    struct ae_serve_rep srep;
    if (req->bytes != 0 && req->bytes < sreq.bytes_max) {
        sreq.bytes_max = req->bytes; /* the asker's grant */
    }
    rv = ae_serve(&sreq, &cb, &srep);
    if (rv == MRD_ECORRUPT && *why == NULL) {
        *why = "the shard's log seqs are not increasing";
    }
    mdb_cursor_close(sc.cur);
    crdt_vv_free(&asker);
    struct node_vv *vv = NULL;
    if (rv == MRD_OK && srep.end) {
        vv = malloc(sizeof(*vv));
        if (vv == NULL || node_vv_load(txn, store, req->shard, vv) != 0) {
            rv   = MRD_EIO;
            *why = "cannot read the shard's version vector";
        }
    }
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&store->resize_lock);
    if (rv == MRD_OK) {
        uint8_t *bin = NULL;
        size_t   len = 0;
        if (vv != NULL && vv->n > 0) {
            bin = malloc(vv->n * 16u);
            if (bin == NULL) {
                free(vv);
                return MRD_ENOMEM;
            }
            node_vv_bin(vv, bin);
            len = vv->n * 16u;
        }
        proto_events_reply_end(out, &sc.w);
        proto_pull_rep_finish(out, srep.scanned, srep.end, bin, len);
        if (ae != NULL) {
            proto_pull_rep_finish_ae(out, srep.blocked, srep.blocked_on.origin,
                srep.blocked_on.seq, ae->digest.ptr, ae->digest.len);
            if (srep.blocked) {
                NODE_STAT_ADD(stats, pulls_blocked, 1);
            }
        }
        free(bin);
        *count_out = srep.count;
        NODE_STAT_ADD(stats, events_read, srep.count);
    }
    free(vv);
    return rv;
}

/* ------------------------------------------------------ replicated batch -- */

/* Appends one replicated record to its stream, in the peer's order. */
static int
node_replicate_one(MDB_txn *txn, struct node_store *store, uint32_t shard,
    const void *rec, size_t len, const struct proto_record *r,
    struct node_stats *stats, const char **why)
{
    struct node_stream st     = { 0 };
    int                rc     = node_stream_lookup(txn, store, r->stream, &st);
    bool               exists = rc == 0;

    if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }
    if (!exists) {
        st.id    = ++store->stream_id_last;
        st.count = 0;
        st.shard = shard;
    }
    uint64_t pos     = st.count;
    uint64_t log_seq = ++store->log_seq_last[shard];
    uint8_t  seq_be[8], index_key[16];
    MDB_val  v;

    /* The record is stored as it came: its checksum was made at its origin
     * and is checked again by every reader. */
    mrd_be64_put(seq_be, log_seq);
    MDB_val k = { 8, seq_be };
    v.mv_size = 8 + len;
    rc = mdb_put(txn, store->dbi_log[shard], &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc != 0) {
        return rc;
    }
    mrd_be64_put(v.mv_data, pos);
    memcpy((uint8_t *) v.mv_data + 8, rec, len);
    mrd_be64_put(index_key, st.id);
    mrd_be64_put(index_key + 8, pos);
    MDB_val ik = { 16, index_key };
    MDB_val iv = { 8, seq_be };
    rc         = mdb_put(txn, store->dbi_index, &ik, &iv, MDB_NOOVERWRITE);
    if (rc == 0 && r->ops.len > 0) {
        rc = node_state_apply_remote(txn, store, shard, st.id, exists,
            (struct crdt_dot) { r->origin, r->seq }, r->hlc, r->ops, why);
    }
    if (rc == 0 && r->idem.key.len > 0) {
        rc = node_replicate_idem(
            txn, store, r, st.id, pos, mrd_now_real_ms(), stats);
    }
    if (rc == 0) {
        st.count = pos + 1;
        rc       = node_stream_put(txn, store, r->stream, &st);
    }
    return rc;
}

/* Decides every event of a pulled batch before anything is written
 * (replication/ae.h's ae_batch_check): the whole batch is refused when the
 * peer's answer cannot be right. Fills recs[] (views into the reply) and
 * verdict[]. An LMDB code; MDB_CORRUPTED with *why for a refusal. */
static int
node_replicate_check(struct node_store *store, const struct node_repl_batch *b,
    const struct node_vv *vv, struct proto_record *recs, uint8_t *verdict,
    const char **why)
{
    const struct proto_pull_rep *rep   = b->rep;
    struct ae_batch_item        *items = NULL;
    struct crdt_vv               have;
    struct proto_rd              rd;
    uint64_t                     position, log_seq;
    struct proto_str             record;
    uint32_t                     n = 0, appends = 0;
    int                          rv = MRD_OK;

    crdt_vv_init(&have);
    if (rep->count > 0) {
        items = malloc(rep->count * sizeof(*items));
        if (items == NULL) {
            return ENOMEM;
        }
    }
    for (uint32_t i = 0; rv == MRD_OK && i < vv->n; i++) {
        rv = crdt_vv_raise(&have, vv->e[i].origin, vv->e[i].seq);
    }
    proto_pull_rep_begin(rep, &rd);
    while (rv == MRD_OK && n < rep->count
        && proto_events_rep_next(&rd, &position, &log_seq, &record) == MRD_OK) {
        rv = proto_record_decode(record.ptr, record.len, &recs[n], why);
        if (rv != MRD_OK) {
            break;
        }
        items[n] = (struct ae_batch_item) {
            log_seq, { recs[n].origin, recs[n].seq },
            node_store_shard_of(store, recs[n].stream.ptr, recs[n].stream.len)
        };
        n++;
    }
    if (rv == MRD_OK && n != rep->count) {
        *why = "a pull answer holds fewer events than it says";
        rv   = MRD_EPROTO;
    }
    if (rv == MRD_OK) {
        struct ae_batch_req req = { .self = store->node_id,
            .shard                        = b->shard,
            .after                        = b->after,
            .scanned                      = rep->scanned,
            .count_max                    = b->count_max,
            .vv                           = &have };
        rv = ae_batch_check(&req, items, n, verdict, &appends, why);
    }
    free(items);
    crdt_vv_free(&have);
    if (rv == MRD_ENOMEM) {
        return ENOMEM;
    }
    if (rv != MRD_OK) {
        *why = *why != NULL ? *why : "a replicated event is malformed";
        return MDB_CORRUPTED;
    }
    return 0;
}

/* Applies one pulled batch of one shard inside txn: events, vector, state
 * and the read position of the peer's log. An LMDB code. */
static int
node_replicate_batch(MDB_txn *txn, struct node_store *store, uint64_t peer,
    struct node_repl_batch *b, struct node_vv *vv, struct node_stats *stats,
    const char **why)
{
    const struct proto_pull_rep *rep     = b->rep;
    uint32_t                     shard   = b->shard;
    uint64_t                     now     = mrd_now_real_ms();
    struct proto_record         *recs    = NULL;
    uint8_t                     *verdict = NULL;
    struct proto_rd              rd;
    uint64_t                     position, log_seq;
    struct proto_str             record;

    b->applied = 0;
    node_state_remote_forget(store);
    int rc = node_vv_load(txn, store, shard, vv);
    if (rc == 0 && rep->count > 0) {
        recs    = malloc(rep->count * sizeof(*recs));
        verdict = malloc(rep->count);
        rc      = recs == NULL || verdict == NULL ? ENOMEM : 0;
    }
    if (rc == 0) {
        rc = node_replicate_check(store, b, vv, recs, verdict, why);
    }
#ifdef MRD_PLANTED_BUGS
    /* Planted bug drop-batch (plant.h): one batch in NODE_PLANT_DROP_EVERY
     * of those that would append events is dropped, silently: nothing of
     * it is written, the vector does not move, but the read position of
     * the peer's log below still does, so this peer never sends these
     * events again. Only batches without state ops: a later event's ops
     * would find their deps missing and the shard would stop replicating
     * (loudly) instead of losing events. */
    if (rc == 0 && node_plant_active() == NODE_PLANT_DROP_BATCH) {
        bool takes = false, ops = false;
        for (uint32_t i = 0; i < rep->count; i++) {
            if (verdict[i] != AE_SKIP) {
                takes = true;
                ops   = ops || recs[i].ops.len > 0;
            }
        }
        if (takes && !ops && node_plant_drop_batch()) {
            node_log(NODE_LOG_DEBUG, "planted drop-batch: dropped a batch",
                "{s:I, s:i, s:i}", "peer", (json_int_t) peer, "shard",
                (int) shard, "events", (int) rep->count);
            memset(verdict, AE_SKIP, rep->count);
        }
    }
#endif
    proto_pull_rep_begin(rep, &rd);
    for (uint32_t i = 0; rc == 0 && i < rep->count; i++) {
        const struct proto_record *r = &recs[i];
        /* Checked by node_replicate_check: same items, same order. */
        rc = proto_events_rep_next(&rd, &position, &log_seq, &record) == MRD_OK
            ? 0
            : MDB_CORRUPTED;
        if (rc != 0 || verdict[i] == AE_SKIP) {
            continue; /* already here (from another peer, or our own) */
        }
        if (verdict[i] == AE_APPEND_OWN) {
            /* Our own event that we no longer have (a restored data dir):
             * take it back, and never hand out its seq again; and while
             * joining, wait for every replica (node_puller_joined). */
            atomic_store(&store->own_seen, true);
            if (r->seq > store->origin_seq_last) {
                store->origin_seq_last = r->seq;
            }
        }
        rc = node_replicate_one(
            txn, store, shard, record.ptr, record.len, r, stats, why);
        if (rc == 0 && !node_vv_raise(vv, r->origin, r->seq)) {
            *why = "too many origins in one shard";
            rc   = MDB_CORRUPTED;
        }
        if (rc == 0 && (r->hlc >> 16) > now) {
            node_stat_max(&stats->hlc_ahead_max_ms, (r->hlc >> 16) - now);
        }
        if (rc == 0
            && node_hlc_observe(
                &store->hlc, r->hlc, now, store->clock_ahead_max_ms)) {
            NODE_STAT_ADD(stats, clock_clamped, 1);
            node_clamp_log(r, now, store->clock_ahead_max_ms);
        }
        if (rc == 0) {
            b->applied++;
        }
    }
    free(recs);
    free(verdict);
    if (rc == 0) {
        rc = node_state_remote_flush(txn, store);
    } else {
        node_state_remote_forget(store);
    }
    for (uint32_t i = 0; rc == 0 && i < vv->n; i++) {
        if (vv->dirty[i]) {
            uint8_t key[12], val[8];
            node_vv_key(key, shard, vv->e[i].origin);
            mrd_be64_put(val, vv->e[i].seq);
            MDB_val k = { 12, key }, v = { 8, val };
            rc = mdb_put(txn, store->dbi_vv, &k, &v, 0);
        }
    }
    if (rc == 0) {
        uint8_t key[12], val[8];
        mrd_be64_put(key, peer);
        mrd_be32_put(key + 8, shard);
        mrd_be64_put(val, rep->scanned);
        MDB_val k = { 12, key }, v = { 8, val };
        rc = mdb_put(txn, store->dbi_progress, &k, &v, 0);
    }
    return rc;
}

/* Applies batches [0, n) in one write transaction: one commit (two syncs)
 * for all of them. On failure nothing is applied and every applied count
 * is 0; *bad is the batch that broke an invariant (MDB_CORRUPTED). */
static int
node_replicate_once(struct node_store *store, uint64_t peer,
    struct node_repl_batch *b, size_t n, struct node_vv *vv,
    struct node_stats *stats, size_t *bad, const char **why)
{
    struct node_counters saved;
    MDB_txn             *txn;

    node_counters_save(store, &saved);
    int rc = mdb_txn_begin(store->env, NULL, 0, &txn);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = node_replicate_batch(txn, store, peer, &b[i], vv, stats, why);
        if (rc == MDB_CORRUPTED) {
            *bad = i;
        }
    }
    if (rc == 0) {
        rc = node_counters_put(txn, store);
    }
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
    } else {
        mdb_txn_abort(txn);
    }
    if (rc != 0) {
        node_counters_restore(store, &saved);
        for (size_t i = 0; i < n; i++) {
            b[i].applied = 0;
        }
    }
    return rc;
}

/* One transaction for batches [0, n), growing the map when it is full. */
static int
node_replicate_locked(struct node_store *store, uint64_t peer,
    struct node_repl_batch *b, size_t n, struct node_vv *vv,
    struct node_stats *stats, size_t *bad, const char **why)
{
    int rc;
    for (;;) {
        rc = node_replicate_once(store, peer, b, n, vv, stats, bad, why);
        if (rc != MDB_MAP_FULL || !node_store_grow(store, stats)) {
            return rc;
        }
    }
}

int
node_store_replicate_many(struct node_store *store, uint64_t peer,
    struct node_repl_batch *b, size_t n, struct node_stats *stats)
{
    const char     *why = NULL;
    struct node_vv *vv  = malloc(sizeof(*vv));
    size_t          bad = 0;
    int             rc;

    for (size_t i = 0; i < n; i++) {
        b[i].applied = 0;
        b[i].rv      = MRD_OK;
    }
    if (vv == NULL) {
        return MRD_ENOMEM;
    }
    pthread_mutex_lock(&store->write_mu);
    rc = node_store_commit_rc(
        store, node_replicate_locked(store, peer, b, n, vv, stats, &bad, &why));
    if (rc == MDB_CORRUPTED && n > 1) {
        /* One batch is refused, not its neighbours: each alone. */
        rc = 0;
        for (size_t i = 0; i < n; i++) {
            why     = NULL;
            int one = node_store_commit_rc(store,
                node_replicate_locked(
                    store, peer, &b[i], 1, vv, stats, &bad, &why));
            b[i].rv = one == 0 ? MRD_OK : node_store_err(one);
            if (one == MDB_CORRUPTED) {
                b[i].rv = MRD_ECORRUPT;
                NODE_STAT_ADD(stats, rejected_replication, 1);
                node_log(NODE_LOG_ERROR, "refused a replicated batch",
                    "{s:I, s:i, s:s}", "peer", (json_int_t) peer, "shard",
                    (int) b[i].shard, "why", why != NULL ? why : "corrupt");
            } else if (one != 0) {
                rc = one; /* storage: fail-stop below */
                break;
            }
        }
    } else if (rc == MDB_CORRUPTED) {
        b[0].rv = MRD_ECORRUPT;
        NODE_STAT_ADD(stats, rejected_replication, 1);
        node_log(NODE_LOG_ERROR, "refused a replicated batch",
            "{s:I, s:i, s:s}", "peer", (json_int_t) peer, "shard",
            (int) b[0].shard, "why", why != NULL ? why : "corrupt");
        rc = 0;
    } else if (rc != 0) {
        for (size_t i = 0; i < n; i++) {
            b[i].rv = node_store_err(rc);
        }
    }
    pthread_mutex_unlock(&store->write_mu);
    free(vv);
    if (rc != 0) {
        node_log(NODE_LOG_ERROR, "replicated commit failed", "{s:s, s:i}",
            "error", mdb_strerror(rc), "code", rc);
    }
    for (size_t i = 0; i < n; i++) {
        NODE_STAT_ADD(stats, events_replicated, b[i].applied);
    }
    return node_store_err(rc);
}

int
node_store_replicate(struct node_store *store, uint64_t peer,
    struct node_repl_batch *batch, struct node_stats *stats)
{
    int rv = node_store_replicate_many(store, peer, batch, 1, stats);
    return rv != MRD_OK ? rv : batch->rv;
}

int
node_store_set_stable(
    struct node_store *store, uint32_t shard, const struct crdt_vv *stable)
{
    MRD_ASSERT(shard < store->shard_count);
    pthread_mutex_lock(&store->write_mu);
    int rv = crdt_vv_copy(&store->stable[shard], stable);
    pthread_mutex_unlock(&store->write_mu);
    return rv;
}

int
node_store_digest(struct node_store *store, const struct proto_digest_req *req,
    struct proto_digest_rep *rep, uint8_t *vv_out, struct node_stats *stats,
    const char **why)
{
    struct node_vv *vv = malloc(sizeof(*vv));
    struct crdt_vv  cut;
    MDB_txn        *txn                             = NULL;
    MDB_cursor     *cur                             = NULL;
    uint64_t        lane[PROTO_DIGEST_SUM_SIZE / 8] = { 0 };
    int             rv                              = MRD_OK;

    memset(rep, 0, sizeof(*rep));
    crdt_vv_init(&cut);
    if (req->shard >= store->shard_count) {
        free(vv);
        *why = "no such shard";
        return MRD_EINVAL;
    }
    if (vv == NULL
        || (req->has_cut && node_vv_from_wire(req->cut, &cut) != MRD_OK)) {
        free(vv);
        crdt_vv_free(&cut);
        return MRD_ENOMEM;
    }
    /* One snapshot for the vector and the log: readers never block the
     * writer, and a long scan holds only old pages. */
    pthread_rwlock_rdlock(&store->resize_lock);
    int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
    if (rc == 0) {
        rc = node_vv_load(txn, store, req->shard, vv);
    }
    if (rc == 0) {
        rc = mdb_cursor_open(txn, store->dbi_log[req->shard], &cur);
    }
    MDB_val k, v;
    int     c = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : rc;
    while (c == 0) {
        struct proto_record r;
        const char         *rec = (const char *) v.mv_data + 8;
        size_t              len = v.mv_size > 8 ? v.mv_size - 8 : 0;
        if (v.mv_size <= 8
            || proto_record_decode(rec, len, &r, NULL) != MRD_OK) {
            uint64_t seq = k.mv_size == 8 ? mrd_be64_get(k.mv_data) : 0;
            NODE_STAT_ADD(stats, corrupt_records, 1);
            node_log(NODE_LOG_ERROR, "a stored record failed its checksum",
                "{s:i, s:I}", "shard", (int) req->shard, "log_seq",
                (json_int_t) seq);
            rv   = MRD_ECORRUPT;
            *why = "a stored event failed its checksum";
            break;
        }
        if (!req->has_cut
            || crdt_vv_covers_dot(
                &cut, (struct crdt_dot) { r.origin, r.seq })) {
            uint8_t h[PROTO_DIGEST_SUM_SIZE];
            crypto_generichash(
                h, sizeof h, (const unsigned char *) rec, len, NULL, 0);
            for (uint32_t i = 0; i < PROTO_DIGEST_SUM_SIZE / 8; i++) {
                lane[i] += mrd_be64_get(h + 8 * i); /* mod 2^64 */
            }
            rep->events++;
        }
        c = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rv == MRD_OK && c != MDB_NOTFOUND) {
        rv   = MRD_EIO;
        *why = "cannot read the shard's log";
    }
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    if (txn != NULL) {
        mdb_txn_abort(txn);
    }
    pthread_rwlock_unlock(&store->resize_lock);
    if (rv == MRD_OK) {
        for (uint32_t i = 0; i < PROTO_DIGEST_SUM_SIZE / 8; i++) {
            mrd_be64_put(rep->sum + 8 * i, lane[i]);
        }
        node_vv_bin(vv, vv_out);
        rep->vv = (struct proto_str) { (const char *) vv_out, vv->n * 16 };
    }
    free(vv);
    crdt_vv_free(&cut);
    return rv;
}

void
node_store_map_use(struct node_store *store, uint64_t *size, uint64_t *used)
{
    MDB_envinfo info;
    MDB_stat    st;

    *size = *used = 0;
    pthread_rwlock_rdlock(&store->resize_lock);
    if (mdb_env_info(store->env, &info) == 0
        && mdb_env_stat(store->env, &st) == 0) {
        *size = info.me_mapsize;
        *used = ((uint64_t) info.me_last_pgno + 1) * st.ms_psize;
    }
    pthread_rwlock_unlock(&store->resize_lock);
}
