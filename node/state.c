/*
 * state.c: stream state documents in the store (docs/CRDT.md).
 *
 * A stream's document lives in the "state" database under the stream's id,
 * as its canonical encoding. For an append that carries ops, the writer
 * first runs node_state_check(): every event's ops are prepared and applied
 * in order, with the dot and timestamp the event will get, each event's ops
 * are encoded with their deps (what they observed) for its record, and the
 * new document is encoded and must fit MRD_STATE_SIZE_MAX. A refusal
 * (MRD_ETYPE, MRD_EINVAL, MRD_ETOOBIG) happens there, before the append has
 * written anything. Then the events are written with those ops
 * (node_state_event) and the document with them (node_state_finish).
 *
 * The document is written once per append, in the same transaction as the
 * events, so a reader never sees events without their state or the reverse.
 */
#include "node.h"
#ifdef MRD_PLANTED_BUGS
#include "plant.h"
#endif

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void
node_state_txn_reset(struct node_state_txn *s)
{
    crdt_doc_free(&s->doc);
    crdt_doc_init(&s->doc);
}

int
node_state_txn_init(struct node_state_txn *s)
{
    memset(s, 0, sizeof(*s));
    crdt_doc_init(&s->doc);
    msgpack_sbuffer_init(&s->sbuf);
    msgpack_sbuffer_init(&s->blobs);
    s->ops      = malloc(sizeof(*s->ops));
    s->hlc      = calloc(MRD_APPEND_EVENTS_MAX, sizeof(*s->hlc));
    s->blob_off = calloc(MRD_APPEND_EVENTS_MAX, sizeof(*s->blob_off));
    s->blob_len = calloc(MRD_APPEND_EVENTS_MAX, sizeof(*s->blob_len));
    return s->ops != NULL && s->hlc != NULL && s->blob_off != NULL
            && s->blob_len != NULL
        ? MRD_OK
        : MRD_ENOMEM;
}

void
node_state_txn_fini(struct node_state_txn *s)
{
    crdt_doc_free(&s->doc);
    msgpack_sbuffer_destroy(&s->sbuf);
    msgpack_sbuffer_destroy(&s->blobs);
    free(s->ops);
    free(s->hlc);
    free(s->blob_off);
    free(s->blob_len);
    s->ops = NULL;
}

/* Loads the document of stream `id` (empty when it has none). LMDB code;
 * MDB_CORRUPTED when the stored bytes do not decode. */
static int
node_state_load(MDB_txn *txn, const struct node_store *store, uint64_t id,
    struct node_state_txn *s)
{
    uint8_t key[8];
    MDB_val k = { 8, key }, v;

    node_state_txn_reset(s);
    mrd_be64_put(key, id);
    int rc = mdb_get(txn, store->dbi_state, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    const char *why = NULL;
    rc              = crdt_doc_decode(&s->doc, v.mv_data, v.mv_size, &why);
    if (rc == MRD_ENOMEM) {
        return ENOMEM;
    }
    if (rc != MRD_OK) {
        node_log(NODE_LOG_ERROR, "stored state does not decode", "{s:I, s:s}",
            "stream_id", (json_int_t) id, "why", why);
        return MDB_CORRUPTED;
    }
    return 0;
}

/* Decodes an event's ops, which the request decoder already checked. */
static int
node_state_ops(struct node_state_txn *s, const struct proto_event_in *ev)
{
    const char *why = NULL;
    int         rc  = crdt_ops_decode(s->ops, ev->ops.ptr, ev->ops.len, &why);
    MRD_ASSERT(rc != MRD_OK || s->ops->deps.n == 0);
    return rc;
}

/* The stable point for folding counters. A node with no peers is every
 * shard's only replica, so everything it has applied is stable. With peers
 * it is the shard's stable vector the puller keeps (node_store_set_stable):
 * empty until every peer has reported, so nothing is folded too early. */
static const struct crdt_vv *
node_state_stable(const struct node_store *store, uint32_t shard,
    const struct node_state_txn *s)
{
    return store->peer_count == 0 ? &s->doc.ctx : &store->stable[shard];
}

/* Applies one event's ops to s->doc as event `index` with dot and hlc, and
 * appends the ops with their deps to s->blobs. MRD_OK, or a refusal with a
 * reason in a->why. */
static int
node_state_apply_event(struct node_state_txn *s, struct node_append *a,
    const struct proto_event_in *ev, uint32_t index, struct crdt_dot dot,
    uint64_t hlc)
{
    const char        *why = NULL;
    struct crdt_vv     deps;
    enum crdt_delivery d  = CRDT_APPLY;
    int                rc = node_state_ops(s, ev);

    crdt_vv_init(&deps);
    if (rc == MRD_OK) {
        rc = crdt_doc_prepare(&s->doc, s->ops->op, s->ops->count, &why);
    }
    if (rc == MRD_OK) {
        rc = crdt_vv_copy(&deps, &s->doc.ctx);
    }
    if (rc == MRD_OK) {
        rc = crdt_doc_apply(
            &s->doc, dot, hlc, &deps, s->ops->op, s->ops->count, &d);
        MRD_ASSERT(rc != MRD_OK || d == CRDT_APPLY);
    }
    if (rc == MRD_OK) {
        /* The record carries the ops with what they observed: exactly what
         * every other replica needs to apply them. */
        msgpack_packer pk;
        size_t         at = s->blobs.size;
        msgpack_packer_init(&pk, &s->blobs, msgpack_sbuffer_write);
        rc = crdt_ops_encode(&pk, &deps, s->ops->op, s->ops->count, &why);
        s->blob_off[index] = (uint32_t) at;
        s->blob_len[index] = (uint32_t) (s->blobs.size - at);
    }
    crdt_vv_free(&deps);
    if (rc != MRD_OK) {
        a->rv = rc;
        snprintf(a->why_buf, sizeof(a->why_buf), "%s",
            why != NULL ? why : mrd_strerror(rc));
        a->why = a->why_buf;
    }
    return rc;
}

int
node_state_check(MDB_txn *txn, struct node_store *store, struct node_append *a,
    uint64_t stream_id, bool exists, struct node_state_txn *s)
{
    int rc = exists ? node_state_load(txn, store, stream_id, s) : 0;
    if (rc != 0) {
        return rc;
    }
    if (!exists) {
        node_state_txn_reset(s);
    }
    msgpack_sbuffer_clear(&s->blobs);
    struct proto_rd       rd;
    struct proto_event_in ev;
    uint64_t              seq   = store->origin_seq_last;
    uint32_t              index = 0;
    uint64_t              now   = mrd_now_real_ms();

    proto_events_begin(&a->req, &rd);
    while (proto_events_next(&rd, &ev) == MRD_OK) {
        MRD_ASSERT(index < MRD_APPEND_EVENTS_MAX);
        /* The dots and timestamps the events will get when they are
         * written: node_event_put() takes these instead of ticking. A
         * refused append leaves the HLC ticked, which costs nothing. */
        s->hlc[index]      = node_hlc_tick(&store->hlc, now);
        s->blob_len[index] = 0;
        seq++;
        if (ev.ops.len > 0
            && node_state_apply_event(s, a, &ev, index,
                   (struct crdt_dot) { store->node_id, seq }, s->hlc[index])
                != MRD_OK) {
            return 0;
        }
        index++;
    }
    rc = crdt_doc_compact(&s->doc, node_state_stable(store, a->shard, s));
    if (rc == MRD_OK) {
        msgpack_packer pk;
        msgpack_sbuffer_clear(&s->sbuf);
        msgpack_packer_init(&pk, &s->sbuf, msgpack_sbuffer_write);
        rc = crdt_doc_encode(&s->doc, &pk);
    }
    if (rc == MRD_OK && s->sbuf.size > MRD_STATE_SIZE_MAX) {
        a->rv  = MRD_ETOOBIG;
        a->why = "the stream's state would grow past its 1 MiB limit";
        return 0;
    }
    if (rc != MRD_OK) {
        a->rv  = rc;
        a->why = "cannot apply the state ops";
        return 0;
    }
    a->rv = MRD_OK;
    return 0;
}

void
node_state_event(
    const struct node_state_txn *s, uint32_t index, struct proto_event_in *ev)
{
    MRD_ASSERT(index < MRD_APPEND_EVENTS_MAX);
    ev->ops.ptr
        = s->blob_len[index] > 0 ? s->blobs.data + s->blob_off[index] : NULL;
    ev->ops.len = s->blob_len[index];
}

int
node_state_finish(MDB_txn *txn, struct node_store *store, uint64_t stream_id,
    const struct node_state_txn *s)
{
    uint8_t key[8];

    mrd_be64_put(key, stream_id);
    MDB_val k = { 8, key };
    MDB_val v = { s->sbuf.size, s->sbuf.data };
    return mdb_put(txn, store->dbi_state, &k, &v, 0);
}

int
node_state_remote_flush(MDB_txn *txn, struct node_store *store)
{
    struct node_state_txn *s  = store->state;
    int                    rc = MRD_OK;

    if (s->remote_id != 0 && s->remote_dirty) {
        rc = crdt_doc_compact(
            &s->doc, node_state_stable(store, s->remote_shard, s));
        if (rc == MRD_OK) {
            msgpack_packer pk;
            msgpack_sbuffer_clear(&s->sbuf);
            msgpack_packer_init(&pk, &s->sbuf, msgpack_sbuffer_write);
            rc = crdt_doc_encode(&s->doc, &pk);
        }
        rc = rc == MRD_OK ? node_state_finish(txn, store, s->remote_id, s)
                          : ENOMEM;
    }
    s->remote_id    = 0;
    s->remote_dirty = false;
    return rc;
}

void
node_state_remote_forget(struct node_store *store)
{
    store->state->remote_id    = 0;
    store->state->remote_dirty = false;
}

#ifdef MRD_PLANTED_BUGS
/* Planted bug lww-merge (plant.h): a replicated counter increment does not
 * add to the counter, it overwrites it with the value it had at the origin
 * (last writer wins): what the event observed (its deps) plus its delta.
 * Increments made concurrently elsewhere (this replica's own included) are
 * lost, so the counter ends below the sum of acknowledged increments. Done
 * by rewriting the decoded event: before each `inc` a `delete` of the
 * counter that observes everything this replica holds (deps := our
 * context), and the `inc` carries the origin's value instead of its delta.
 * Events that would not apply now (duplicates, held) or have too many ops
 * to double are left alone. */
static bool
node_state_plant_same_path(const struct crdt_op *a, const struct crdt_op *b)
{
    if (a->depth != b->depth) {
        return false;
    }
    for (uint32_t i = 0; i < a->depth; i++) {
        if (a->path[i].len != b->path[i].len
            || memcmp(a->path[i].ptr, b->path[i].ptr, a->path[i].len) != 0) {
            return false;
        }
    }
    return true;
}

/* The counter at op's path as the event observed it (base and the
 * increments its deps cover), in two's complement like the counter. */
static uint64_t
node_state_plant_observed(const struct crdt_doc *doc, const struct crdt_op *op,
    const struct crdt_vv *deps)
{
    const struct crdt_val *v = &doc->root;
    for (uint32_t i = 0; v != NULL && i < op->depth; i++) {
        v = crdt_map_find(v, op->path[i].ptr, op->path[i].len,
            i + 1 < op->depth ? MRD_STATE_MAP : MRD_STATE_COUNTER);
    }
    if (v == NULL) {
        return 0;
    }
    uint64_t sum = v->has_base ? (uint64_t) v->base : 0;
    for (uint32_t i = 0; i < v->n; i++) {
        if (crdt_vv_covers_dot(deps, v->u.incs[i].dot)) {
            sum += (uint64_t) v->u.incs[i].delta;
        }
    }
    return sum;
}

static void
node_state_plant_lww(struct node_state_txn *s, struct crdt_dot dot)
{
    struct crdt_ops *o    = s->ops;
    uint32_t         incs = 0;

    for (uint32_t i = 0; i < o->count; i++) {
        incs += o->op[i].kind == MRD_OP_INC ? 1u : 0u;
    }
    if (incs == 0 || o->count + incs > CRDT_OPS_MAX
        || crdt_doc_delivery(&s->doc, dot, &o->deps) != CRDT_APPLY
        || s->doc.ctx.n > CRDT_ORIGINS_MAX) {
        return;
    }
    struct crdt_op ops[CRDT_OPS_MAX];
    uint32_t       n = 0;
    for (uint32_t i = 0; i < o->count; i++) {
        struct crdt_op op = o->op[i];
        if (op.kind == MRD_OP_INC) {
            uint64_t value = node_state_plant_observed(&s->doc, &op, &o->deps);
            for (uint32_t j = 0; j <= i; j++) {
                if (o->op[j].kind == MRD_OP_INC
                    && node_state_plant_same_path(&o->op[j], &op)) {
                    value += (uint64_t) o->op[j].delta;
                }
            }
            struct crdt_op del = op;
            del.type           = 0;
            del.kind           = MRD_OP_DELETE;
            del.delta          = 0;
            ops[n++]           = del;
            op.delta           = (int64_t) value;
        }
        ops[n++] = op;
    }
    memcpy(o->op, ops, n * sizeof ops[0]);
    o->count = n;
    /* Delivery was APPLY: our context covers the deps, so it is their
     * join with everything here. */
    memcpy(o->dep, s->doc.ctx.e, s->doc.ctx.n * sizeof o->dep[0]);
    o->deps.e = o->dep;
    o->deps.n = s->doc.ctx.n;
}
#endif

int
node_state_apply_remote(MDB_txn *txn, struct node_store *store, uint32_t shard,
    uint64_t stream_id, bool exists, struct crdt_dot dot, uint64_t hlc,
    struct proto_str ops, const char **why)
{
    struct node_state_txn *s  = store->state;
    int                    rc = 0;

    /* Consecutive events of one stream (the common case in a batch) share
     * one load and one store of its document. */
    if (s->remote_id != stream_id) {
        rc = node_state_remote_flush(txn, store);
        if (rc == 0) {
            rc = exists ? node_state_load(txn, store, stream_id, s) : 0;
        }
        if (rc != 0) {
            return rc;
        }
        if (!exists) {
            node_state_txn_reset(s);
        }
        s->remote_id    = stream_id;
        s->remote_shard = shard;
    }
    enum crdt_delivery d = CRDT_HOLD;
    rc                   = crdt_ops_decode(s->ops, ops.ptr, ops.len, why);
#ifdef MRD_PLANTED_BUGS
    if (rc == MRD_OK && node_plant_active() == NODE_PLANT_LWW_MERGE) {
        node_state_plant_lww(s, dot);
    }
#endif
    if (rc == MRD_OK) {
        rc = crdt_doc_apply(
            &s->doc, dot, hlc, &s->ops->deps, s->ops->op, s->ops->count, &d);
    }
    if (rc == MRD_OK && d == CRDT_HOLD) {
        /* A peer's log is in causal order and we take it in that order:
         * a missing dependency means that log, or ours, is damaged. */
        *why = "a replicated event's dependencies are missing";
        return MDB_CORRUPTED;
    }
    if (rc == MRD_ENOMEM) {
        return ENOMEM;
    }
    if (rc != MRD_OK) {
        return MDB_CORRUPTED;
    }
    if (d == CRDT_APPLY) {
        s->remote_dirty = true;
    }
    return 0;
}

/* ---------------------------------------------------------------- reads -- */

int
node_store_state_read(struct node_store *store,
    const struct proto_state_req *req, struct proto_buf *out,
    struct node_stats *stats, const char **why)
{
    struct node_stream st;
    MDB_txn           *txn;
    uint8_t            key[8];
    MDB_val            k = { 8, key }, v = { 0, NULL };

    pthread_rwlock_rdlock(&store->resize_lock);
    int rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&store->resize_lock);
        *why = "cannot begin a read";
        return rc == MDB_READERS_FULL ? MRD_EBUSY : MRD_EIO;
    }
    struct proto_state_rep rep = { MRD_VERSION_NONE, { NULL, 0 } };
    rc = node_stream_lookup(txn, store, req->stream, &st);
    if (rc == 0) {
        rep.version = (int64_t) st.count - 1;
        mrd_be64_put(key, st.id);
        rc = mdb_get(txn, store->dbi_state, &k, &v);
    }
    int             rv = MRD_OK;
    struct crdt_doc doc;
    crdt_doc_init(&doc);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rv   = MRD_ECORRUPT;
        *why = "cannot read the stream's state";
    } else if (rc == 0 && req->field.len == 0) {
        rep.state.ptr = v.mv_data; /* stored canonical bytes, as they are */
        rep.state.len = (uint32_t) v.mv_size;
    } else {
        if (rc == 0) {
            rv = crdt_doc_decode(&doc, v.mv_data, v.mv_size, why);
            if (rv != MRD_OK) {
                NODE_STAT_ADD(stats, corrupt_records, 1);
                rv = MRD_ECORRUPT;
            }
        }
        if (rv == MRD_OK && req->field.len > 0) {
            crdt_doc_keep_field(
                &doc, (const uint8_t *) req->field.ptr, req->field.len);
        }
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
        if (rv == MRD_OK) {
            rv = crdt_doc_encode(&doc, &pk);
        }
        rep.state.ptr = sbuf.data;
        rep.state.len = (uint32_t) sbuf.size;
    }
    if (rv == MRD_OK) {
        proto_state_rep_encode(out, &rep);
        rv = proto_buf_status(out);
        if (rv != MRD_OK) {
            *why = "the state is larger than a reply may be";
        }
    }
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&store->resize_lock);
    crdt_doc_free(&doc);
    msgpack_sbuffer_destroy(&sbuf);
    return rv;
}
