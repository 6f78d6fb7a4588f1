/*
 * store_write.c: group commit. The writer thread hands a batch of appends to
 * node_store_commit(), which applies all of them in one LMDB write
 * transaction and commits it with one sync, so a hundred appends cost one
 * fdatasync pair instead of a hundred.
 *
 * Each append is checked (idempotency, expected version) before it writes
 * anything, so a refused append leaves no trace and does not disturb the
 * others in its batch. A put that fails (map full, disk full, I/O) aborts the
 * whole transaction; the in-memory counters are rolled back with it, so
 * nothing that was not committed is ever answered as written.
 */
#include "node.h"
#ifdef MRD_PLANTED_BUGS
#include "plant.h"
#endif

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* The idempotency record: the first answer plus what identifies the request
 * (stream, expected version, digest of its events). */
struct node_idem {
    uint64_t created_ms;
    uint64_t digest;
    int64_t  expected;
    uint64_t stream_id;
    uint64_t origin;
    uint64_t seq;
    uint64_t first_pos;
    uint64_t version;
    uint64_t count;
    uint64_t hlc;
};
#define NODE_IDEM_FIELDS 10u
_Static_assert(sizeof(struct node_idem) == NODE_IDEM_FIELDS * 8, "no padding");

static void
node_idem_encode(const struct node_idem *idem, uint8_t *b)
{
    uint64_t f[NODE_IDEM_FIELDS];
    memcpy(f, idem, sizeof(f));
    for (size_t i = 0; i < NODE_IDEM_FIELDS; i++) {
        mrd_be64_put(b + 8 * i, f[i]);
    }
}

static void
node_idem_decode(const uint8_t *b, struct node_idem *idem)
{
    uint64_t f[NODE_IDEM_FIELDS];
    for (size_t i = 0; i < NODE_IDEM_FIELDS; i++) {
        f[i] = mrd_be64_get(b + 8 * i);
    }
    memcpy(idem, f, sizeof(f));
}

void
node_counters_save(const struct node_store *store, struct node_counters *c)
{
    c->origin_seq_last = store->origin_seq_last;
    c->stream_id_last  = store->stream_id_last;
    c->hlc             = store->hlc;
    memcpy(c->log_seq_last, store->log_seq_last,
        sizeof(uint64_t) * store->shard_count);
}

void
node_counters_restore(struct node_store *store, const struct node_counters *c)
{
    store->origin_seq_last = c->origin_seq_last;
    store->stream_id_last  = c->stream_id_last;
    store->hlc             = c->hlc;
    memcpy(store->log_seq_last, c->log_seq_last,
        sizeof(uint64_t) * store->shard_count);
}

/* The stream's version against the expected one; MRD_OK or MRD_EVERSION. */
static int
node_expect_check(int64_t expected, int64_t version)
{
    switch (expected) {
    case MRD_EXPECT_ANY:
        return MRD_OK;
    case MRD_EXPECT_NO_STREAM:
        return version == MRD_VERSION_NONE ? MRD_OK : MRD_EVERSION;
    case MRD_EXPECT_EXISTS:
        return version >= 0 ? MRD_OK : MRD_EVERSION;
    default:
        return version == expected ? MRD_OK : MRD_EVERSION;
    }
}

/* Looks the idempotency key up. Returns 1 when the append is answered (a
 * replay, or a conflict), 0 to go on, or -rc on an LMDB error. */
static int
node_idem_lookup(MDB_txn *txn, struct node_store *store, struct node_append *a,
    const struct node_stream *st, bool exists)
{
    MDB_val k
        = { a->req.idem_key.len, (void *) (uintptr_t) a->req.idem_key.ptr };
    MDB_val v;
    int     rc = mdb_get(txn, store->dbi_idem, &k, &v);

    if (rc == MDB_NOTFOUND) {
        return 0;
    }
    if (rc != 0) {
        return -rc;
    }
    if (v.mv_size != sizeof(struct node_idem)) {
        return -MDB_CORRUPTED;
    }
    struct node_idem idem;
    node_idem_decode(v.mv_data, &idem);
    if (!exists || idem.stream_id != st->id || idem.digest != a->digest
        || idem.expected != a->req.expected) {
        a->rv  = MRD_EIDEMPOTENCY;
        a->why = "this idempotency key was used for a different append";
        return 1;
    }
    a->rv            = MRD_OK;
    a->rep.origin    = idem.origin;
    a->rep.seq       = idem.seq;
    a->rep.first_pos = idem.first_pos;
    a->rep.version   = idem.version;
    a->rep.count     = (uint32_t) idem.count;
    a->rep.hlc       = idem.hlc;
    a->rep.replayed  = true;
    return 1;
}

/* Writes one event: its log entry (MDB_APPEND) and its index entry. */
static int
node_event_put(MDB_txn *txn, struct node_store *store, struct node_append *a,
    const struct node_stream *st, uint64_t pos, struct proto_event_in *ev,
    struct proto_buf *scratch)
{
    uint64_t log_seq = ++store->log_seq_last[st->shard];
    uint64_t seq     = ++store->origin_seq_last;
    uint64_t hlc;

    store->own_touched[st->shard] = seq;
    store->own_touched_any[st->shard / 8] |= (uint8_t) (1u << (st->shard % 8));
    uint8_t pos_be[8], seq_be[8], index_key[16];
    int     rv;

    if (a->has_ops) {
        /* node_state_check() ticked the clock for every event, applied the
         * ops with these dots and timestamps, and kept the ops with their
         * deps for the records. */
        uint32_t index = (uint32_t) (pos - a->rep.first_pos);
        hlc            = store->state->hlc[index];
        node_state_event(store->state, index, ev);
    } else {
        hlc = node_hlc_tick(&store->hlc, mrd_now_real_ms());
    }

    if (pos == st->count) {
        a->rep.seq = seq;
        a->rep.hlc = hlc;
    }
    proto_buf_reset(scratch);
    mrd_be64_put(pos_be, pos);
    rv = proto_buf_append(scratch, pos_be, 8);
    /* The first event carries the append's idempotency key, so that every
     * replica remembers it (node_replicate_idem). */
    struct proto_record_idem idem = { { NULL, 0 }, 0, 0, 0 };
    if (pos == st->count && a->req.idem_key.len > 0) {
        idem = (struct proto_record_idem) { a->req.idem_key, a->digest,
            a->req.expected, a->req.event_count };
    }
    if (rv == MRD_OK) {
        rv = proto_record_encode_idem(
            scratch, store->node_id, seq, hlc, a->req.stream, ev, &idem);
    }
    /* The decoder bounded every field, so a record always fits. */
    MRD_ASSERT(rv == MRD_OK);
    mrd_be64_put(seq_be, log_seq);
    MDB_val k  = { 8, seq_be };
    MDB_val v  = { scratch->len, scratch->data };
    int     rc = mdb_put(txn, store->dbi_log[st->shard], &k, &v, MDB_APPEND);
    if (rc != 0) {
        return rc;
    }
    mrd_be64_put(index_key, st->id);
    mrd_be64_put(index_key + 8, pos);
    MDB_val ik = { 16, index_key };
    MDB_val iv = { 8, seq_be };
    return mdb_put(txn, store->dbi_index, &ik, &iv, MDB_NOOVERWRITE);
}

/* Records an answer under an idempotency key, and when it expires. flags:
 * 0, or MDB_NOOVERWRITE to keep a key already there (MDB_KEYEXIST then). */
static int
node_idem_write(MDB_txn *txn, struct node_store *store, struct proto_str key,
    const struct node_idem *idem, unsigned flags)
{
    uint8_t value[sizeof(*idem)];
    uint8_t exp_key[8 + MRD_IDEMPOTENCY_KEY_SIZE_MAX];

    MRD_ASSERT(key.len > 0 && key.len <= MRD_IDEMPOTENCY_KEY_SIZE_MAX);
    node_idem_encode(idem, value);
    MDB_val k  = { key.len, (void *) (uintptr_t) key.ptr };
    MDB_val v  = { sizeof(value), value };
    int     rc = mdb_put(txn, store->dbi_idem, &k, &v, flags);
    if (rc != 0) {
        return rc;
    }
    mrd_be64_put(exp_key, idem->created_ms);
    memcpy(exp_key + 8, key.ptr, key.len);
    MDB_val ek = { 8 + key.len, exp_key };
    MDB_val ev = { 0, NULL };
    return mdb_put(txn, store->dbi_idem_exp, &ek, &ev, 0);
}

static int
node_idem_put(MDB_txn *txn, struct node_store *store,
    const struct node_append *a, const struct node_stream *st, uint64_t now_ms)
{
    struct node_idem idem = {
        .created_ms = now_ms,
        .digest     = a->digest,
        .expected   = a->req.expected,
        .stream_id  = st->id,
        .origin     = a->rep.origin,
        .seq        = a->rep.seq,
        .first_pos  = a->rep.first_pos,
        .version    = a->rep.version,
        .count      = a->rep.count,
        .hlc        = a->rep.hlc,
    };
    return node_idem_write(txn, store, a->req.idem_key, &idem, 0);
}

int
node_replicate_idem(MDB_txn *txn, struct node_store *store,
    const struct proto_record *r, uint64_t stream_id, uint64_t first_pos,
    uint64_t now_ms, struct node_stats *stats)
{
    struct node_idem idem = {
        .created_ms = now_ms,
        .digest     = r->idem.digest,
        .expected   = r->idem.expected,
        .stream_id  = stream_id,
        .origin     = r->origin,
        .seq        = r->seq,
        .first_pos  = first_pos,
        .version    = first_pos + r->idem.count - 1,
        .count      = r->idem.count,
        .hlc        = r->hlc,
    };
    int rc = node_idem_write(txn, store, r->idem.key, &idem, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        /* Two nodes took the key before either heard of the other (or
         * this is our own append coming back): the one here stays, as a
         * retry here was already answered by it. */
        NODE_STAT_ADD(stats, idem_replicated_kept, 1);
        return 0;
    }
    if (rc == 0) {
        NODE_STAT_ADD(stats, idem_replicated, 1);
    }
    return rc;
}

/* The highest seq of origin's events in shard this node holds (0: none).
 * An LMDB code. */
static int
node_vv_held(MDB_txn *txn, const struct node_store *store, uint32_t shard,
    uint64_t origin, uint64_t *held)
{
    uint8_t key[12];
    mrd_be32_put(key, shard);
    mrd_be64_put(key + 4, origin);
    MDB_val k  = { sizeof key, key }, v;
    int     rc = mdb_get(txn, store->dbi_vv, &k, &v);
    *held      = 0;
    if (rc == MDB_NOTFOUND) {
        return 0;
    }
    if (rc == 0) {
        if (v.mv_size != 8) {
            return MDB_CORRUPTED;
        }
        *held = mrd_be64_get(v.mv_data);
    }
    return rc;
}

/* Applies one append in txn. Returns an LMDB error code (the transaction is
 * then lost) or 0; a refusal is 0 with a->rv set. */
static int
node_append_apply(MDB_txn *txn, struct node_store *store, struct node_append *a,
    uint64_t now_ms, struct proto_buf *scratch)
{
    struct node_stream st = { 0 };
    bool               exists;
    int                rc = node_stream_lookup(txn, store, a->req.stream, &st);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }
    exists    = rc == 0;
    bool idem = a->req.idem_key.len > 0;
#ifdef MRD_PLANTED_BUGS
    /* Planted bug dedup-off (plant.h): the client's key is not looked up,
     * so a retried append is written again under a new dot. The key is
     * still recorded below, as if it were new. */
    if (node_plant_active() == NODE_PLANT_DEDUP_OFF) {
        idem = false;
    }
#endif
    if (idem) {
        rc = node_idem_lookup(txn, store, a, &st, exists);
        if (rc != 0) {
            return rc < 0 ? -rc : 0;
        }
    }
    /* The session's last acknowledged event of this stream must be here
     * first, or this append would come before it in the stream (a retry
     * above was answered already). The shard's vector holds the highest
     * seq of each origin, and an origin's events reach a shard in order. */
    if (a->req.after.seq != 0 && a->req.after.origin != store->node_id) {
        uint64_t held = 0;
        rc = node_vv_held(txn, store, a->shard, a->req.after.origin, &held);
        if (rc != 0) {
            return rc;
        }
        if (held < a->req.after.seq) {
            a->rv = MRD_ECAUSAL;
            snprintf(a->why_buf, sizeof a->why_buf,
                "this node holds events of origin %" PRIu64 " up to %" PRIu64
                " in the stream's shard; the session saw %" PRIu64 ":%" PRIu64,
                a->req.after.origin, held, a->req.after.origin,
                a->req.after.seq);
            a->why = a->why_buf;
            return 0;
        }
    }
    int64_t version = exists ? (int64_t) st.count - 1 : MRD_VERSION_NONE;
    if (node_expect_check(a->req.expected, version) != MRD_OK) {
        a->rv              = MRD_EVERSION;
        a->current_version = version;
        a->why             = "the stream is not at the expected version";
        return 0;
    }
    if (!exists) {
        st.id    = ++store->stream_id_last;
        st.count = 0;
        st.shard = a->shard;
    }
    if (a->has_ops) {
        /* Refusals (wrong type, overflow, too big) happen here, before this
         * append writes anything. */
        rc = node_state_check(txn, store, a, st.id, exists, store->state);
        if (rc != 0 || a->rv != MRD_OK) {
            if (!exists) {
                store->stream_id_last--; /* nothing was written under it */
            }
            return rc;
        }
    }
    struct proto_rd       rd;
    struct proto_event_in ev;
    uint64_t              pos = st.count;
    a->rep.origin             = store->node_id;
    a->rep.first_pos          = st.count;
    proto_events_begin(&a->req, &rd);
    while (proto_events_next(&rd, &ev) == MRD_OK) {
        rc = node_event_put(txn, store, a, &st, pos, &ev, scratch);
        if (rc != 0) {
            return rc;
        }
        pos++;
    }
    MRD_ASSERT(pos - st.count == a->req.event_count);
    a->rep.count    = a->req.event_count;
    a->rep.version  = pos - 1;
    a->rep.replayed = false;
    st.count        = pos;
    rc              = node_stream_put(txn, store, a->req.stream, &st);
    if (rc == 0 && a->has_ops) {
        rc = node_state_finish(txn, store, st.id, store->state);
    }
    if (rc == 0 && a->req.idem_key.len > 0) {
        rc = node_idem_put(txn, store, a, &st, now_ms);
    }
    a->rv = MRD_OK;
    return rc;
}

/* Forgets idempotency keys older than the window, a bounded number per
 * commit, oldest first. */
static int
node_idem_sweep(MDB_txn *txn, struct node_store *store, uint64_t now_ms,
    struct node_stats *stats)
{
    uint64_t    window_ms = (uint64_t) store->idem_window_s * 1000u;
    MDB_cursor *cur;
    MDB_val     k, v;
    int         rc = mdb_cursor_open(txn, store->dbi_idem_exp, &cur);

    if (rc != 0 || now_ms < window_ms) {
        return rc;
    }
    uint32_t n = 0;
    rc         = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0 && n < NODE_IDEM_SWEEP_MAX && k.mv_size > 8
        && mrd_be64_get(k.mv_data) < now_ms - window_ms) {
        MDB_val key = { k.mv_size - 8, (uint8_t *) k.mv_data + 8 };
        rc          = mdb_del(txn, store->dbi_idem, &key, NULL);
        if (rc == 0 || rc == MDB_NOTFOUND) {
            rc = mdb_cursor_del(cur, 0);
        }
        if (rc == 0) {
            n++;
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
    }
    mdb_cursor_close(cur);
    NODE_STAT_ADD(stats, idem_expired, n);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

void
node_own_vv_forget(struct node_store *store)
{
    memset(store->own_touched_any, 0, sizeof store->own_touched_any);
}

int
node_own_vv_put(MDB_txn *txn, struct node_store *store)
{
    int rc = 0;

    for (uint32_t s = 0; s < store->shard_count && rc == 0; s++) {
        if ((store->own_touched_any[s / 8] & (1u << (s % 8))) == 0) {
            continue;
        }
        uint8_t key[12], val[8];
        mrd_be32_put(key, s);
        mrd_be64_put(key + 4, store->node_id);
        mrd_be64_put(val, store->own_touched[s]);
        MDB_val k = { sizeof key, key }, v = { sizeof val, val };
        rc = mdb_put(txn, store->dbi_vv, &k, &v, 0);
    }
    node_own_vv_forget(store);
    return rc;
}

int
node_counters_put(MDB_txn *txn, struct node_store *store)
{
    uint8_t     b[8];
    const char *keys[] = { "origin_seq", "stream_id", "hlc" };
    uint64_t    values[]
        = { store->origin_seq_last, store->stream_id_last, store->hlc.last };
    int rc = 0;

    for (size_t i = 0; i < 3 && rc == 0; i++) {
        mrd_be64_put(b, values[i]);
        MDB_val k = { strlen(keys[i]), (void *) (uintptr_t) keys[i] };
        MDB_val v = { 8, b };
        rc        = mdb_put(txn, store->dbi_meta, &k, &v, 0);
    }
    return rc;
}

/* One attempt: 0 on commit, else the LMDB/errno code, all rolled back. */
static int
node_commit_once(struct node_store *store, struct node_append **appends,
    size_t count, struct proto_buf *scratch, struct node_stats *stats)
{
    struct node_counters saved;
    MDB_txn             *txn    = NULL;
    uint64_t             now_ms = mrd_now_real_ms();
    int                  rc;

    node_counters_save(store, &saved);
    rc = mdb_txn_begin(store->env, NULL, 0, &txn);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < count && rc == 0; i++) {
        appends[i]->rv = MRD_EINTERNAL;
        rc = node_append_apply(txn, store, appends[i], now_ms, scratch);
    }
    if (rc == 0) {
        rc = node_idem_sweep(txn, store, now_ms, stats);
    }
    if (rc == 0) {
        rc = node_own_vv_put(txn, store);
    }
    if (rc == 0) {
        rc = node_counters_put(txn, store);
    }
    node_own_vv_forget(store);
#ifdef MRD_PLANTED_BUGS
    /* Planted bug ack-before-fsync (plant.h): every append of the batch is
     * answered now, with the dots and positions it was given, and the
     * commit (the fsync) comes NODE_PLANT_ACK_DELAY_MS later; a kill -9
     * meanwhile loses acknowledged events. The appends are no longer ours
     * after the answer: a failed commit must not be retried with them
     * (node_store_commit would after MDB_MAP_FULL), so it is an I/O error,
     * fail-stop. */
    bool answered = rc == 0 && node_plant_answer_early(appends, count);
#endif
    if (rc == 0) {
        rc = mdb_txn_commit(txn); /* frees txn whatever happens */
    } else {
        mdb_txn_abort(txn);
    }
    if (rc != 0) {
        node_counters_restore(store, &saved);
    }
#ifdef MRD_PLANTED_BUGS
    if (answered && rc != 0) {
        rc = EIO;
    }
#endif
    return rc;
}

/* Doubles the map, up to its maximum. False when it is already there.
 * Caller holds write_mu. */
bool
node_store_grow(struct node_store *store, struct node_stats *stats)
{
    if (store->map_size >= store->map_size_max) {
        return false;
    }
    uint64_t size = store->map_size * 2;
    if (size > store->map_size_max) {
        size = store->map_size_max;
    }
    pthread_rwlock_wrlock(&store->resize_lock);
    int rc = mdb_env_set_mapsize(store->env, size);
    pthread_rwlock_unlock(&store->resize_lock);
    if (rc != 0) {
        node_log(NODE_LOG_ERROR, "cannot grow the map", "{s:I, s:s}", "size",
            (json_int_t) size, "error", mdb_strerror(rc));
        return false;
    }
    node_log(NODE_LOG_INFO, "grew the LMDB map", "{s:I, s:I}", "from",
        (json_int_t) store->map_size, "to", (json_int_t) size);
    store->map_size = size;
    NODE_STAT_ADD(stats, map_resizes, 1);
    return true;
}

int
node_store_commit(struct node_store *store, struct node_append **appends,
    size_t count, struct proto_buf *scratch, struct node_stats *stats)
{
    int rc;

    MRD_ASSERT(count > 0);
    pthread_mutex_lock(&store->write_mu);
    for (;;) {
        rc = node_commit_once(store, appends, count, scratch, stats);
        if (rc != MDB_MAP_FULL || !node_store_grow(store, stats)) {
            break;
        }
    }
    pthread_mutex_unlock(&store->write_mu);
    rc = node_store_commit_rc(store, rc);
    if (rc != 0 && rc != MDB_MAP_FULL) {
        node_log(NODE_LOG_ERROR, "commit failed", "{s:s, s:i}", "error",
            mdb_strerror(rc), "code", rc);
    }
    return node_store_err(rc);
}
