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
 * enough. This node's own entry is its origin seq, kept in meta: every event
 * it ever made is in its logs.
 */
#include "node.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* How many log entries one pull may examine, matching or not: bounds the
 * work of a request whose vector skips almost everything. */
#define NODE_PULL_SCAN_MAX 100000u

/* ------------------------------------------------------ version vectors -- */

struct node_vv {
    uint32_t        n;
    struct crdt_dot e[CRDT_ORIGINS_MAX];
    bool            dirty[CRDT_ORIGINS_MAX];
};

static uint64_t
node_vv_get(const struct node_vv *vv, uint64_t origin)
{
    for (uint32_t i = 0; i < vv->n; i++) {
        if (vv->e[i].origin == origin) {
            return vv->e[i].seq;
        }
    }
    return 0;
}

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
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }
    /* Our own events: all of them, in whichever shard they went. */
    MDB_val mk = { strlen("origin_seq"), (void *) (uintptr_t) "origin_seq" };
    if (mdb_get(txn, store->dbi_meta, &mk, &v) == 0 && v.mv_size == 8
        && mrd_be64_get(v.mv_data) > 0) {
        if (!node_vv_raise(vv, store->node_id, mrd_be64_get(v.mv_data))) {
            return MDB_CORRUPTED;
        }
        /* Not stored in "vv": meta is its home. */
        for (uint32_t i = 0; i < vv->n; i++) {
            if (vv->e[i].origin == store->node_id) {
                vv->dirty[i] = false;
            }
        }
    }
    return 0;
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

int
node_store_pull(struct node_store *store, const struct proto_pull_req *req,
    struct proto_buf *out, uint32_t *count_out, struct node_stats *stats,
    const char **why)
{
    struct proto_events_wr w;
    MDB_txn               *txn;
    MDB_cursor            *cur;
    uint8_t                key[8];
    MDB_val                k       = { 8, key }, v;
    uint64_t               scanned = req->after;
    bool                   end     = false;
    int                    rv      = MRD_OK;

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
    pthread_rwlock_rdlock(&store->resize_lock);
    int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&store->resize_lock);
        *why = "cannot begin a read transaction";
        return rc == MDB_READERS_FULL ? MRD_EBUSY : MRD_EIO;
    }
    rc = mdb_cursor_open(txn, store->dbi_log[req->shard], &cur);
    if (rc != 0) {
        mdb_txn_abort(txn);
        pthread_rwlock_unlock(&store->resize_lock);
        return MRD_EIO;
    }
    proto_events_reply_begin(out, PROTO_T_PULL, 4, &w);
    mrd_be64_put(key, req->after + 1);
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    for (uint32_t examined = 0; rc == 0; examined++) {
        uint64_t seq = k.mv_size == 8 ? mrd_be64_get(k.mv_data) : 0;
        uint64_t origin, dot_seq;
        if (w.count == req->count || examined == NODE_PULL_SCAN_MAX) {
            break;
        }
        if (seq == 0 || v.mv_size < 8 + 10
            || proto_record_verify((const char *) v.mv_data + 8, v.mv_size - 8)
                != MRD_OK
            || !proto_record_dot((const char *) v.mv_data + 8, v.mv_size - 8,
                &origin, &dot_seq)) {
            NODE_STAT_ADD(stats, corrupt_records, 1);
            node_log(NODE_LOG_ERROR, "a stored record failed its checksum",
                "{s:i, s:I}", "shard", (int) req->shard, "log_seq",
                (json_int_t) seq);
            rv   = MRD_ECORRUPT;
            *why = "a stored event failed its checksum";
            break;
        }
        if (dot_seq > proto_vv_get(req->vv, origin)) {
            if (w.count > 0
                && out->len + v.mv_size + PROTO_EVENT_REPLY_OVERHEAD + 64
                        + 16u * CRDT_ORIGINS_MAX
                    > out->cap_max) {
                break;
            }
            proto_events_reply_add(out, &w, mrd_be64_get(v.mv_data), seq,
                (const char *) v.mv_data + 8, v.mv_size - 8);
        }
        scanned = seq;
        rc      = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        if (rc == MDB_NOTFOUND) {
            end = true;
        }
    }
    if (rc == MDB_NOTFOUND) {
        end = true; /* nothing after `after` at all */
    }
    mdb_cursor_close(cur);
    struct node_vv *vv = NULL;
    if (rv == MRD_OK && end) {
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
        proto_events_reply_end(out, &w);
        proto_pull_rep_finish(out, scanned, end, bin, len);
        free(bin);
        *count_out = w.count;
        NODE_STAT_ADD(stats, events_read, w.count);
    }
    free(vv);
    return rv;
}

/* ------------------------------------------------------ replicated batch -- */

/* Appends one replicated record to its stream, in the peer's order. */
static int
node_replicate_one(MDB_txn *txn, struct node_store *store, uint32_t shard,
    const void *rec, size_t len, const struct proto_record *r, const char **why)
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
    if (rc == 0) {
        st.count = pos + 1;
        rc       = node_stream_put(txn, store, r->stream, &st);
    }
    return rc;
}

/* Applies one pulled batch of one shard inside txn: events, vector, state
 * and the read position of the peer's log. An LMDB code. */
static int
node_replicate_batch(MDB_txn *txn, struct node_store *store, uint64_t peer,
    uint32_t shard, const struct proto_pull_rep *rep, struct node_vv *vv,
    struct node_stats *stats, uint32_t *applied, const char **why)
{
    struct proto_rd  rd;
    uint64_t         position, log_seq;
    struct proto_str record;
    uint64_t         now = mrd_now_real_ms();

    *applied = 0;
    node_state_remote_forget(store);
    int rc = node_vv_load(txn, store, shard, vv);
    proto_pull_rep_begin(rep, &rd);
    while (rc == 0
        && proto_events_rep_next(&rd, &position, &log_seq, &record) == MRD_OK) {
        struct proto_record r;
        if (proto_record_decode(record.ptr, record.len, &r, why) != MRD_OK
            || node_store_shard_of(store, r.stream.ptr, r.stream.len)
                != shard) {
            *why = *why != NULL ? *why
                                : "a replicated event is not of its shard";
            rc   = MDB_CORRUPTED;
            break;
        }
        if (r.seq <= node_vv_get(vv, r.origin)) {
            continue; /* already here (from another peer, or our own) */
        }
        if (r.origin == store->node_id) {
            /* Our own event that we no longer have (a restored data dir):
             * take it back, and never hand out its seq again. */
            if (r.seq > store->origin_seq_last) {
                store->origin_seq_last = r.seq;
            }
        }
        rc = node_replicate_one(
            txn, store, shard, record.ptr, record.len, &r, why);
        if (rc == 0 && !node_vv_raise(vv, r.origin, r.seq)) {
            *why = "too many origins in one shard";
            rc   = MDB_CORRUPTED;
        }
        if (rc == 0
            && node_hlc_observe(
                &store->hlc, r.hlc, now, store->clock_ahead_max_ms)) {
            NODE_STAT_ADD(stats, clock_clamped, 1);
            node_log(NODE_LOG_WARN,
                "a replicated timestamp is ahead of our clock",
                "{s:I, s:I, s:I}", "origin", (json_int_t) r.origin, "ahead_ms",
                (json_int_t) ((r.hlc >> 16) - now), "max_ms",
                (json_int_t) store->clock_ahead_max_ms);
        }
        if (rc == 0) {
            (*applied)++;
        }
    }
    if (rc == 0) {
        rc = node_state_remote_flush(txn, store);
    } else {
        node_state_remote_forget(store);
    }
    for (uint32_t i = 0; rc == 0 && i < vv->n; i++) {
        if (vv->dirty[i] && vv->e[i].origin != store->node_id) {
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
        rc = node_replicate_batch(txn, store, peer, b[i].shard, b[i].rep, vv,
            stats, &b[i].applied, why);
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
    rc = node_replicate_locked(store, peer, b, n, vv, stats, &bad, &why);
    if (rc == MDB_CORRUPTED && n > 1) {
        /* One batch is refused, not its neighbours: each alone. */
        rc = 0;
        for (size_t i = 0; i < n; i++) {
            why     = NULL;
            int one = node_replicate_locked(
                store, peer, &b[i], 1, vv, stats, &bad, &why);
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
node_store_replicate(struct node_store *store, uint64_t peer, uint32_t shard,
    const struct proto_pull_rep *rep, struct node_stats *stats,
    uint32_t *applied)
{
    struct node_repl_batch b = { .shard = shard, .rep = rep };
    int rv   = node_store_replicate_many(store, peer, &b, 1, stats);
    *applied = b.applied;
    return rv != MRD_OK ? rv : b.rv;
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
