/*
 * store_read.c: reads on any thread, each in its own read-only transaction
 * held under the resize lock (shared), so the writer can grow the map between
 * them. Records go into replies as they are stored, after their checksum is
 * verified: the node never re-encodes an event it serves.
 */
#include "node.h"

#include <inttypes.h>
#include <jansson.h>
#include <string.h>

struct node_rtxn {
    struct node_store *store;
    MDB_txn           *txn;
};

static int
node_rtxn_begin(struct node_store *store, struct node_rtxn *r)
{
    r->store = store;
    pthread_rwlock_rdlock(&store->resize_lock);
    int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &r->txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&store->resize_lock);
        node_log(NODE_LOG_ERROR, "cannot begin a read", "{s:s}", "error",
            mdb_strerror(rc));
        return rc == MDB_READERS_FULL ? MRD_EBUSY : MRD_EIO;
    }
    return MRD_OK;
}

static void
node_rtxn_end(struct node_rtxn *r)
{
    mdb_txn_abort(r->txn);
    pthread_rwlock_unlock(&r->store->resize_lock);
}

/* Gets the log entry at seq and checks it: position prefix plus a record
 * whose checksum holds. A stream's events usually sit next to each other in
 * the log, so when seq follows the cursor's last key, one step (MDB_NEXT)
 * replaces a descent from the root. */
static int
node_log_entry(MDB_cursor *log, uint64_t seq, uint64_t *last_seq, uint64_t *pos,
    struct proto_str *record)
{
    uint8_t key[8];
    MDB_val k  = { 8, key }, v;
    int     rc = MDB_NOTFOUND;

    if (*last_seq != 0 && seq == *last_seq + 1) {
        rc = mdb_cursor_get(log, &k, &v, MDB_NEXT);
        if (rc == 0 && (k.mv_size != 8 || mrd_be64_get(k.mv_data) != seq)) {
            rc = MDB_NOTFOUND; /* a gap: look it up the long way */
        }
    }
    if (rc != 0) {
        k.mv_size = 8;
        k.mv_data = key;
        mrd_be64_put(key, seq);
        rc = mdb_cursor_get(log, &k, &v, MDB_SET_KEY);
    }
    if (rc != 0) {
        return rc == MDB_NOTFOUND ? MRD_ECORRUPT : MRD_EIO;
    }
    *last_seq = seq;
    if (v.mv_size < 8 + 10) {
        return MRD_ECORRUPT;
    }
    *pos        = mrd_be64_get(v.mv_data);
    record->ptr = (const char *) v.mv_data + 8;
    record->len = (uint32_t) (v.mv_size - 8);
    return proto_record_verify(record->ptr, record->len);
}

static void
node_corrupt_log(uint32_t shard, uint64_t seq, struct node_stats *stats)
{
    NODE_STAT_ADD(stats, corrupt_records, 1);
    node_log(NODE_LOG_ERROR, "a stored record failed its checksum",
        "{s:i, s:I}", "shard", (int) shard, "log_seq", (json_int_t) seq);
}

/* True when one more record still fits the reply frame. */
static bool
node_reply_fits(const struct proto_buf *out, size_t record_len)
{
    return out->len + record_len + PROTO_EVENT_REPLY_OVERHEAD + 64
        <= out->cap_max;
}

/* Index entries one cursor read may examine, matching or not: bounds the
 * work of a read whose cursor covers almost everything it walks over (a
 * reader that failed over from another node scans from position 0). The
 * reply says where it stopped; the client goes on from there. */
#define NODE_CURSOR_SCAN_MAX 4096u

/* Walks at most n positions from start in the given direction and adds
 * each event to the reply, until `want` are in or the reply is full. With
 * a cursor (a causal cursor read, forward), events whose dot it covers are
 * passed over. *last_pos is the last position added; *examined how many
 * positions were looked at whole. */
static int
node_read_walk(struct node_rtxn *r, const struct node_stream *st,
    uint64_t start, uint32_t n, int direction, const struct proto_str *cursor,
    uint32_t want, struct proto_buf *out, struct proto_events_wr *w,
    uint64_t *last_pos, uint32_t *examined, struct node_stats *stats)
{
    MDB_cursor   *log, *index;
    MDB_cursor_op step     = direction == MRD_FORWARD ? MDB_NEXT : MDB_PREV;
    uint64_t      last_seq = 0;
    uint32_t      i        = 0;
    int rc = mdb_cursor_open(r->txn, r->store->dbi_log[st->shard], &log);
    int rv = MRD_OK;

    *examined = 0;
    if (rc != 0) {
        return MRD_EIO;
    }
    rc = mdb_cursor_open(r->txn, r->store->dbi_index, &index);
    if (rc != 0) {
        mdb_cursor_close(log);
        return MRD_EIO;
    }
    for (; i < n && w->count < want; i++) {
        uint64_t pos = direction == MRD_FORWARD ? start + i : start - i;
        uint8_t  key[16];
        mrd_be64_put(key, st->id);
        mrd_be64_put(key + 8, pos);
        MDB_val k = { 16, key }, v;
        /* The first position is looked up; the rest are one step away. */
        rc = mdb_cursor_get(index, &k, &v, i == 0 ? MDB_SET_KEY : step);
        if (rc != 0 || k.mv_size != 16 || memcmp(k.mv_data, key, 16) != 0
            || v.mv_size != 8) {
            rv = rc == MDB_NOTFOUND || rc == 0 ? MRD_ECORRUPT : MRD_EIO;
            break;
        }
        uint64_t         seq    = mrd_be64_get(v.mv_data), stored_pos;
        uint64_t         origin = 0, dot_seq = 0;
        struct proto_str record;
        rv = node_log_entry(log, seq, &last_seq, &stored_pos, &record);
        if (rv == MRD_OK
            && (stored_pos != pos
                || (cursor != NULL
                    && !proto_record_dot(
                        record.ptr, record.len, &origin, &dot_seq)))) {
            rv = MRD_ECORRUPT;
        }
        if (rv != MRD_OK) {
            if (rv == MRD_ECORRUPT) {
                node_corrupt_log(st->shard, seq, stats);
            }
            break;
        }
        if (cursor != NULL && dot_seq <= proto_vv_get(*cursor, origin)) {
            continue; /* the reader has it, from here or another node */
        }
        if (w->count > 0 && !node_reply_fits(out, record.len)) {
            break;
        }
        proto_events_reply_add(out, w, pos, seq, record.ptr, record.len);
        *last_pos = pos;
    }
    *examined = i;
    mdb_cursor_close(index);
    mdb_cursor_close(log);
    return rv;
}

int
node_store_read_stream(struct node_store *store,
    const struct proto_read_req *req, struct proto_buf *out,
    uint32_t *count_out, uint64_t *next_out, bool *end_out,
    struct node_stats *stats, const char **why)
{
    struct node_rtxn       r;
    struct node_stream     st;
    struct proto_events_wr w;
    int                    rv = node_rtxn_begin(store, &r);

    if (rv != MRD_OK) {
        *why = "cannot begin a read transaction";
        return rv;
    }
    int rc = node_stream_lookup(r.txn, store, req->stream, &st);
    if (rc == MDB_NOTFOUND) {
        st.count = 0;
    } else if (rc != 0) {
        node_rtxn_end(&r);
        *why = "stream metadata unreadable";
        return MRD_ECORRUPT;
    }
    uint64_t start = 0, next = req->from, last_pos = 0;
    uint32_t n = 0, examined = 0;
    if (req->has_cursor) {
        /* Positions are this node's: a hint from another node means
         * nothing here, so the walk starts at the beginning. */
        start = req->hint_node == store->node_id && req->from <= st.count
            ? req->from
            : 0;
        n     = (uint32_t) (st.count - start < NODE_CURSOR_SCAN_MAX
                    ? st.count - start
                    : NODE_CURSOR_SCAN_MAX);
    } else if (req->direction == MRD_FORWARD && req->from < st.count) {
        start = req->from;
        n     = (uint32_t) (st.count - start < req->count ? st.count - start
                                                          : req->count);
    } else if (req->direction == MRD_BACKWARD && st.count > 0) {
        start = req->from >= st.count ? st.count - 1 : req->from;
        n     = (uint32_t) (start + 1 < req->count ? start + 1 : req->count);
    }
    proto_events_reply_begin(out, PROTO_T_READ, req->has_cursor ? 4 : 3, &w);
    if (n > 0) {
        rv = node_read_walk(&r, &st, start, n, req->direction,
            req->has_cursor ? &req->cursor : NULL, req->count, out, &w,
            &last_pos, &examined, stats);
    }
    node_rtxn_end(&r);
    if (rv != MRD_OK) {
        *why = "a stored event failed its checksum";
        return rv;
    }
    proto_events_reply_end(out, &w);
    if (req->has_cursor) {
        /* The first position not examined: everything before it the
         * cursor covers now or the reply carries. */
        next = start + examined;
    } else if (w.count > 0) {
        next = req->direction == MRD_FORWARD ? last_pos + 1
            : last_pos > 0                   ? last_pos - 1
                                             : 0;
    } else if (req->direction == MRD_BACKWARD) {
        next = 0;
    }
    proto_wr_uint(out, PROTO_K_READ_NEXT);
    proto_wr_uint(out, next);
    proto_wr_uint(out, PROTO_K_READ_VERSION);
    proto_wr_int(out, (int64_t) st.count - 1);
    if (req->has_cursor) {
        proto_wr_uint(out, PROTO_K_READ_NODE);
        proto_wr_uint(out, store->node_id);
    }
    *count_out = w.count;
    *next_out  = next;
    *end_out   = req->direction == MRD_FORWARD ? next >= st.count : next == 0;
    NODE_STAT_ADD(stats, events_read, w.count);
    return proto_buf_status(out);
}

int
node_store_read_log(struct node_store *store, const struct proto_log_req *req,
    struct proto_buf *out, uint32_t *count_out, struct node_stats *stats,
    const char **why)
{
    struct node_rtxn       r;
    struct proto_events_wr w;
    MDB_cursor            *cur;
    uint8_t                key[8];
    MDB_val                k        = { 8, key }, v;
    uint64_t               last_seq = 0;
    int                    rv;

    if (req->shard >= store->shard_count) {
        *why = "no such shard";
        return MRD_EINVAL;
    }
    rv = node_rtxn_begin(store, &r);
    if (rv != MRD_OK) {
        *why = "cannot begin a read transaction";
        return rv;
    }
    if (mdb_cursor_open(r.txn, store->dbi_log[req->shard], &cur) != 0) {
        node_rtxn_end(&r);
        return MRD_EIO;
    }
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && k.mv_size == 8) {
        last_seq = mrd_be64_get(k.mv_data);
    }
    proto_events_reply_begin(out, PROTO_T_READ_LOG, 2, &w);
    mrd_be64_put(key, req->after + 1);
    k.mv_size = 8;
    k.mv_data = key;
    int rc = req->after < last_seq ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                                   : MDB_NOTFOUND;
    while (rc == 0 && w.count < req->count) {
        uint64_t seq = k.mv_size == 8 ? mrd_be64_get(k.mv_data) : 0;
        if (seq == 0 || v.mv_size < 8 + 10
            || proto_record_verify((const char *) v.mv_data + 8, v.mv_size - 8)
                != MRD_OK) {
            node_corrupt_log(req->shard, seq, stats);
            rv   = MRD_ECORRUPT;
            *why = "a stored event failed its checksum";
            break;
        }
        if (w.count > 0 && !node_reply_fits(out, v.mv_size)) {
            break;
        }
        proto_events_reply_add(out, &w, mrd_be64_get(v.mv_data), seq,
            (const char *) v.mv_data + 8, v.mv_size - 8);
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    node_rtxn_end(&r);
    if (rv != MRD_OK) {
        return rv;
    }
    proto_events_reply_end(out, &w);
    proto_wr_uint(out, PROTO_K_LOG_LAST_SEQ);
    proto_wr_uint(out, last_seq);
    *count_out = w.count;
    NODE_STAT_ADD(stats, events_read, w.count);
    return proto_buf_status(out);
}

int
node_store_stream_info(
    struct node_store *store, struct proto_str stream, mrd_stream_info *info)
{
    struct node_rtxn   r;
    struct node_stream st;
    int                rv = node_rtxn_begin(store, &r);

    if (rv != MRD_OK) {
        return rv;
    }
    int rc = node_stream_lookup(r.txn, store, stream, &st);
    node_rtxn_end(&r);
    memset(info, 0, sizeof(*info));
    info->shard   = node_store_shard_of(store, stream.ptr, stream.len);
    info->version = MRD_VERSION_NONE;
    if (rc == MDB_NOTFOUND) {
        return MRD_OK;
    }
    if (rc != 0) {
        return MRD_ECORRUPT;
    }
    info->exists  = 1;
    info->count   = st.count;
    info->version = (int64_t) st.count - 1;
    return MRD_OK;
}
