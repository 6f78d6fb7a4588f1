/*
 * ae.c: the decisions of pull-based anti-entropy (ae.h; docs/ARCHITECTURE.md,
 * "Anti-entropy core").
 *
 * Three ideas carry everything here.
 *
 * Logs are causally ordered and each replica appends a peer's events in the
 * peer's order, skipping only what its vector already covers. A server
 * therefore never scans past an event it neither sends nor finds covered:
 * when the asker pulls some region directly (the skip set), an uncovered
 * event of that region stops the scan instead of being skipped, and the
 * asker waits until its direct source delivers it. Skipping would let an
 * event overtake its causal past, and would move the read position past an
 * event the asker lacks.
 *
 * With designated pullers, an event from another region reaches this
 * region through one link: its origin region's first live replica to ours.
 * Everything else (local sources, hints, skip sets) follows from "first
 * live replica in rendezvous order", which every node computes alike once
 * liveness views agree; while they disagree, two nodes may pull one region
 * (extra copies) or none for a while (a delay), never a loss.
 *
 * Knowledge of other replicas' vectors is a join of snapshots of durable
 * vectors, which only grow: merging is monotone, order and repetition do
 * not matter, and every number is a lower bound of the truth. Stability
 * needs more than a lower bound: see ae_know_stable().
 */
#include "ae.h"

#include <string.h>

/* ------------------------------------------------------------ placement -- */

static bool
ae_place_region_has(const struct ae_region_place *rp, uint64_t node)
{
    for (uint32_t i = 0; i < rp->rf; i++) {
        if (rp->cand[i] == node) {
            return true;
        }
    }
    return false;
}

/* Every replica id non-zero and unique across the whole placement. */
static int
ae_place_check_ids(const struct ae_place *place, const char **why)
{
    for (uint32_t r = 0; r < place->region_count; r++) {
        const struct ae_region_place *rp = &place->regions[r];
        for (uint32_t i = 0; i < rp->rf; i++) {
            if (rp->cand[i] == 0) {
                *why = "a placement names node 0";
                return MRD_EINVAL;
            }
            for (uint32_t q = 0; q <= r; q++) {
                const struct ae_region_place *o = &place->regions[q];
                uint32_t                      n = q == r ? i : o->rf;
                for (uint32_t j = 0; j < n; j++) {
                    if (o->cand[j] == rp->cand[i]) {
                        *why = "a node is a replica of one shard twice";
                        return MRD_EINVAL;
                    }
                }
            }
        }
    }
    return MRD_OK;
}

int
ae_place_check(const struct ae_place *place, const char **why)
{
    uint32_t seen = 0;

    if (place->region_count == 0 || place->region_count > AE_REGIONS_MAX
        || place->regions == NULL) {
        *why = "a placement spans 1 to 32 regions";
        return MRD_EINVAL;
    }
    for (uint32_t r = 0; r < place->region_count; r++) {
        const struct ae_region_place *rp = &place->regions[r];
        if (rp->region >= AE_REGIONS_MAX) {
            *why = "a region index is out of range";
            return MRD_EINVAL;
        }
        if ((seen & (1u << rp->region)) != 0) {
            *why = "a region appears twice in a placement";
            return MRD_EINVAL;
        }
        seen |= 1u << rp->region;
        if (rp->rf == 0 || rp->rf > AE_RF_MAX) {
            *why = "a region's replication factor is not 1 to 7";
            return MRD_EINVAL;
        }
        if (rp->count < rp->rf || rp->cand == NULL) {
            *why = "a region has fewer candidates than replicas";
            return MRD_EINVAL;
        }
    }
    return ae_place_check_ids(place, why);
}

bool
ae_place_has(const struct ae_place *place, uint64_t node, uint32_t *region_out)
{
    for (uint32_t r = 0; r < place->region_count; r++) {
        if (ae_place_region_has(&place->regions[r], node)) {
            if (region_out != NULL) {
                *region_out = place->regions[r].region;
            }
            return true;
        }
    }
    return false;
}

/* The placement entry of self's region, or NULL. */
static const struct ae_region_place *
ae_place_home(const struct ae_place *place, uint64_t self)
{
    for (uint32_t r = 0; r < place->region_count; r++) {
        if (ae_place_region_has(&place->regions[r], self)) {
            return &place->regions[r];
        }
    }
    return NULL;
}

/* The region's first live replica in rendezvous order (self is live to
 * itself), or 0 when none is. */
static uint64_t
ae_first_live(const struct ae_region_place *rp, uint64_t self, ae_live_fn live,
    void *live_arg)
{
    for (uint32_t i = 0; i < rp->rf; i++) {
        if (rp->cand[i] == self || live(live_arg, rp->cand[i])) {
            return rp->cand[i];
        }
    }
    return 0;
}

/* ----------------------------------------------------------- scheduling -- */

int
ae_sources(const struct ae_place *place, uint64_t self, ae_live_fn live,
    void *live_arg, struct ae_source *out, uint32_t *count_out)
{
    const struct ae_region_place *home = ae_place_home(place, self);
    uint32_t                      n    = 0;

    *count_out = 0;
    if (home == NULL) {
        return MRD_ENOTFOUND;
    }
    for (uint32_t i = 0; i < home->rf; i++) {
        uint64_t x = home->cand[i];
        if (x != self && live(live_arg, x)) {
            out[n++] = (struct ae_source) { x, home->region, false, 0 };
        }
    }
    /* Only the designated puller crosses regions; the others get remote
     * events from it through their local pulls. */
    if (ae_first_live(home, self, live, live_arg) == self) {
        uint32_t first  = n;
        uint32_t direct = 0;
        for (uint32_t r = 0; r < place->region_count; r++) {
            const struct ae_region_place *rp = &place->regions[r];
            if (rp == home) {
                continue;
            }
            uint64_t src = ae_first_live(rp, self, live, live_arg);
            if (src != 0) {
                out[n++] = (struct ae_source) { src, rp->region, true, 0 };
                direct |= 1u << rp->region;
            }
        }
        /* A region reached directly, and our own (local pulls), are
         * skipped everywhere else; a region with no live replica is taken
         * relayed from whoever has it. Our own region matters too: a PULL's
         * vector is a round trip old, and without it a source would send
         * back the events of ours it pulled meanwhile. */
        direct |= 1u << home->region;
        for (uint32_t i = first; i < n; i++) {
            out[i].skip_regions = direct & ~(1u << out[i].region);
        }
    }
    MRD_ASSERT(n <= AE_SOURCES_MAX);
    *count_out = n;
    return MRD_OK;
}

int
ae_hint_targets(const struct ae_place *place, uint64_t self, ae_live_fn live,
    void *live_arg, uint64_t *out, uint32_t *count_out)
{
    const struct ae_region_place *home = ae_place_home(place, self);
    uint32_t                      n    = 0;

    *count_out = 0;
    if (home == NULL) {
        return MRD_ENOTFOUND;
    }
    for (uint32_t i = 0; i < home->rf; i++) {
        uint64_t x = home->cand[i];
        if (x != self && live(live_arg, x)) {
            out[n++] = x;
        }
    }
    /* A remote designated puller's source here is our first live replica:
     * the hint is ours to send only if that is us. */
    if (ae_first_live(home, self, live, live_arg) == self) {
        for (uint32_t r = 0; r < place->region_count; r++) {
            const struct ae_region_place *rp = &place->regions[r];
            uint64_t                      t  = 0;
            if (rp != home) {
                t = ae_first_live(rp, self, live, live_arg);
            }
            if (t != 0) {
                out[n++] = t;
            }
        }
    }
    MRD_ASSERT(n <= AE_HINTS_MAX);
    *count_out = n;
    return MRD_OK;
}

/* -------------------------------------------------------------- serving -- */

/* Whether the asker wants entry e from its own source rather than from us. */
static bool
ae_serve_skipped(const struct ae_serve_req *req, const struct ae_serve_cb *cb,
    const struct ae_log_entry *e)
{
    if (req->skip_regions == 0) {
        return false;
    }
    uint32_t region = cb->region_of(cb->arg, e->dot.origin);
    return region < AE_REGIONS_MAX && (req->skip_regions & (1u << region)) != 0;
}

int
ae_serve(const struct ae_serve_req *req, const struct ae_serve_cb *cb,
    struct ae_serve_rep *out)
{
    struct ae_log_entry e;

    memset(out, 0, sizeof(*out));
    out->scanned = req->after;
    if (req->count_max == 0) {
        return MRD_EINVAL;
    }
    for (uint32_t examined = 0; examined < AE_SERVE_SCAN_MAX; examined++) {
        int rc = cb->next(cb->arg, &e);
        if (rc == MRD_ENOTFOUND) {
            out->end = true;
            break;
        }
        if (rc != MRD_OK) {
            return rc;
        }
        if (e.log_seq <= out->scanned) {
            return MRD_ECORRUPT; /* our own log, and not increasing */
        }
        /* Every stop below leaves e unscanned: the next pull starts at it. */
        if (out->count == req->count_max) {
            break;
        }
        if (crdt_vv_covers_dot(req->vv, e.dot)) {
            out->scanned = e.log_seq;
            continue;
        }
        if (ae_serve_skipped(req, cb, &e)) {
            out->blocked    = true;
            out->blocked_on = e.dot;
            break;
        }
        if (out->count > 0 && out->bytes + e.size > req->bytes_max) {
            break;
        }
        rc = cb->emit(cb->arg, &e);
        if (rc != MRD_OK) {
            return rc;
        }
        out->count++;
        out->bytes += e.size;
        out->scanned = e.log_seq;
    }
    return MRD_OK;
}

/* ------------------------------------------------------------- applying -- */

/* The shape of the answer, before any event is looked at. */
static int
ae_batch_check_shape(const struct ae_batch_req *req,
    const struct ae_batch_item *items, uint32_t count, const char **why)
{
    uint64_t prev = req->after;

    if (count > req->count_max) {
        *why = "a pull answer has more events than were asked for";
        return MRD_EPROTO;
    }
    if (req->scanned < req->after) {
        *why = "the peer's log went backwards";
        return MRD_EPROTO;
    }
    for (uint32_t i = 0; i < count; i++) {
        if (items[i].log_seq <= prev || items[i].log_seq > req->scanned) {
            *why = "a pulled event's log seq is out of order or outside "
                   "(after, scanned]";
            return MRD_EPROTO;
        }
        prev = items[i].log_seq;
        if (items[i].dot.origin == 0 || items[i].dot.seq == 0) {
            *why = "a pulled event has no dot";
            return MRD_EPROTO;
        }
        if (items[i].shard != req->shard) {
            *why = "a pulled event is not of the shard pulled";
            return MRD_EPROTO;
        }
    }
    return MRD_OK;
}

int
ae_batch_check(const struct ae_batch_req *req,
    const struct ae_batch_item *items, uint32_t count, uint8_t *verdict,
    uint32_t *append_count, const char **why)
{
    struct crdt_vv run; /* our vector as the batch raises it */
    int            rc = ae_batch_check_shape(req, items, count, why);

    *append_count = 0;
    if (rc != MRD_OK) {
        return rc;
    }
    crdt_vv_init(&run);
    rc = crdt_vv_copy(&run, req->vv);
    for (uint32_t i = 0; rc == MRD_OK && i < count; i++) {
        struct crdt_dot d = items[i].dot;
        /* Per-origin order makes "seq <= what we hold" mean "held": every
         * log holds an origin's events in seq order, so holding a later one
         * means holding this one. */
        if (d.seq <= crdt_vv_get(req->vv, d.origin)) {
            verdict[i] = AE_SKIP;
            continue;
        }
        /* Above what we held but not above what this batch brought: the
         * peer's log repeats a dot or has an origin's events out of order.
         * Taking it would break the rule just used. */
        if (d.seq <= crdt_vv_get(&run, d.origin)) {
            *why = "the peer's log has an origin's events out of order or "
                   "twice";
            rc   = MRD_EPROTO;
            break;
        }
        rc = crdt_vv_raise(&run, d.origin, d.seq);
        if (rc == MRD_EFULL) {
            *why = "more origins in one shard than a version vector holds";
        } else if (rc == MRD_OK) {
            verdict[i] = d.origin == req->self ? AE_APPEND_OWN : AE_APPEND;
            (*append_count)++;
        }
    }
    crdt_vv_free(&run);
    if (rc != MRD_OK) {
        *append_count = 0;
    }
    return rc;
}

/* ------------------------------------------------------------ knowledge -- */

void
ae_know_init(struct ae_know *k, uint64_t self)
{
    memset(k, 0, sizeof(*k));
    k->self = self;
    crdt_vv_init(&k->own);
}

static void
ae_row_free(struct ae_row *row)
{
    crdt_vv_free(&row->latest);
    crdt_vv_free(&row->witness);
    crdt_vv_free(&row->pending);
}

void
ae_know_fini(struct ae_know *k)
{
    for (uint32_t i = 0; i < k->row_count; i++) {
        ae_row_free(&k->row[i]);
    }
    crdt_vv_free(&k->own);
    ae_know_init(k, k->self);
}

/* The index of node's row, or AE_REPLICAS_MAX when it has none. */
static uint32_t
ae_know_index(const struct ae_know *k, uint64_t node)
{
    for (uint32_t i = 0; i < k->row_count; i++) {
        if (k->row[i].node == node) {
            return i;
        }
    }
    return AE_REPLICAS_MAX;
}

static const struct ae_row *
ae_know_find(const struct ae_know *k, uint64_t node)
{
    uint32_t i = ae_know_index(k, node);
    return i < k->row_count ? &k->row[i] : NULL;
}

static const struct ae_frozen *
ae_know_frozen(const struct ae_know *k, uint64_t node)
{
    for (uint32_t i = 0; i < k->frozen_count; i++) {
        if (k->frozen[i].node == node) {
            return &k->frozen[i];
        }
    }
    return NULL;
}

static void
ae_know_drop(struct ae_know *k, uint32_t i)
{
    ae_row_free(&k->row[i]);
    k->row[i] = k->row[--k->row_count];
}

/* A row for node, made if needed. Rows of nodes that left the placement
 * make room: their knowledge no longer counts for anything. */
static struct ae_row *
ae_know_row(struct ae_know *k, const struct ae_place *place, uint64_t node)
{
    uint32_t at = ae_know_index(k, node);
    if (at < k->row_count) {
        return &k->row[at];
    }
    struct ae_row *row;
    if (k->row_count == AE_REPLICAS_MAX) {
        for (uint32_t i = k->row_count; i-- > 0;) {
            if (!ae_place_has(place, k->row[i].node, NULL)) {
                ae_know_drop(k, i);
            }
        }
    }
    /* A placement has at most AE_REPLICAS_MAX replicas, node among them. */
    MRD_ASSERT(k->row_count < AE_REPLICAS_MAX);
    row = &k->row[k->row_count++];
    memset(row, 0, sizeof(*row));
    row->node = node;
    return row;
}

/* Moves what may now serve as the row's witness there: a report whose entry
 * for the replica itself is <= ours. Reports of one replica are ordered, so
 * a join of two witnesses is the newer one. */
static int
ae_row_settle(struct ae_row *row, const struct crdt_vv *own)
{
    uint64_t mine = crdt_vv_get(own, row->node);
    int      rc   = MRD_OK;

    if (crdt_vv_get(&row->latest, row->node) <= mine) {
        rc = crdt_vv_copy(&row->witness, &row->latest);
        crdt_vv_free(&row->pending);
    } else if (row->pending.n > 0
        && crdt_vv_get(&row->pending, row->node) <= mine) {
        rc = crdt_vv_join(&row->witness, &row->pending);
        crdt_vv_free(&row->pending);
    }
    return rc;
}

int
ae_know_own(struct ae_know *k, const struct crdt_vv *own)
{
    int rc = crdt_vv_copy(&k->own, own);
    for (uint32_t i = 0; rc == MRD_OK && i < k->row_count; i++) {
        rc = ae_row_settle(&k->row[i], &k->own);
    }
    return rc;
}

int
ae_know_report(struct ae_know *k, const struct ae_place *place, uint64_t node,
    const struct crdt_vv *vv)
{
    if (node == 0 || node == k->self || ae_know_frozen(k, node) != NULL
        || !ae_place_has(place, node, NULL)) {
        return MRD_OK;
    }
    struct ae_row *row  = ae_know_row(k, place, node);
    uint64_t       self = crdt_vv_get(vv, node);
    uint64_t       pend = crdt_vv_get(&row->pending, node);
    int            rc   = crdt_vv_join(&row->latest, vv);

    if (rc == MRD_OK && self <= crdt_vv_get(&k->own, node)) {
        rc = crdt_vv_join(&row->witness, vv);
    } else if (rc == MRD_OK) {
        /* Keep the oldest report that is not a witness yet: it becomes one
         * first. Under steady writes the newest would stay ahead of us for
         * ever, and stability would never move. */
        if (row->pending.n == 0 || self < pend) {
            rc = crdt_vv_copy(&row->pending, vv);
        } else if (self == pend) {
            rc = crdt_vv_join(&row->pending, vv);
        }
    }
    return rc == MRD_OK ? ae_row_settle(row, &k->own) : rc;
}

int
ae_know_freeze(struct ae_know *k, uint64_t node, uint64_t seq_last)
{
    for (uint32_t i = 0; i < k->frozen_count; i++) {
        if (k->frozen[i].node == node) {
            if (k->frozen[i].seq_last < seq_last) {
                k->frozen[i].seq_last = seq_last;
            }
            return MRD_OK;
        }
    }
    if (k->frozen_count == AE_FROZEN_MAX) {
        return MRD_EFULL;
    }
    k->frozen[k->frozen_count++] = (struct ae_frozen) { node, seq_last };
    for (uint32_t i = 0; i < k->row_count; i++) {
        if (k->row[i].node == node) {
            ae_know_drop(k, i);
            break;
        }
    }
    return MRD_OK;
}

/* Whether events of origin o may still reach us without having observed
 * what is stable: o is a replica (its witness covers that), or a frozen
 * node all of whose events we hold. Anything else blocks stability. */
static bool
ae_know_origin_ok(
    const struct ae_know *k, const struct ae_place *place, uint64_t o)
{
    if (ae_place_has(place, o, NULL)) {
        return true;
    }
    const struct ae_frozen *f = ae_know_frozen(k, o);
    return f != NULL && crdt_vv_get(&k->own, o) >= f->seq_last;
}

static bool
ae_know_origins_ok(const struct ae_know *k, const struct ae_place *place)
{
    for (uint32_t i = 0; i < k->own.n; i++) {
        if (!ae_know_origin_ok(k, place, k->own.e[i].origin)) {
            return false;
        }
    }
    for (uint32_t r = 0; r < k->row_count; r++) {
        const struct crdt_vv *w = &k->row[r].witness;
        for (uint32_t i = 0; i < w->n; i++) {
            if (!ae_know_origin_ok(k, place, w->e[i].origin)) {
                return false;
            }
        }
    }
    return true;
}

/*
 * Why witnesses and not the latest reports. crdt_doc_compact() needs every
 * event applied from now on to have the stable dots in its deps. An event
 * of origin o that we lack has seq > own[o]. If o's witness W covers dot d
 * and W[o] <= own[o], that event was written after o's snapshot W, when o
 * already held d (and, holding it, had applied it to the stream's
 * document), so its deps cover d. With a report R where R[o] > own[o],
 * events of o with seqs in (own[o], R[o]] may predate d at o and lack it:
 * a minimum over latest reports can fold a dot that a delete still on its
 * way did not observe (ae_sim_test checks exactly this on every apply).
 */
int
ae_know_stable(
    const struct ae_know *k, const struct ae_place *place, struct crdt_vv *out)
{
    static const struct crdt_vv   empty = { 0, 0, NULL };
    const struct ae_region_place *home  = ae_place_home(place, k->self);

    crdt_vv_free(out);
    if (home == NULL) {
        return MRD_ENOTFOUND;
    }
    if (!ae_know_origins_ok(k, place)) {
        return MRD_OK;
    }
    int rc = crdt_vv_copy(out, &k->own);
    for (uint32_t r = 0; rc == MRD_OK && r < place->region_count; r++) {
        const struct ae_region_place *rp = &place->regions[r];
        for (uint32_t i = 0; rc == MRD_OK && i < rp->rf; i++) {
            if (rp->cand[i] == k->self) {
                continue;
            }
            const struct ae_row *row = ae_know_find(k, rp->cand[i]);
            rc = crdt_vv_meet(out, out, row != NULL ? &row->witness : &empty);
        }
    }
    if (rc != MRD_OK) {
        crdt_vv_free(out);
    }
    return rc;
}

/* ----------------------------------------------------------- ack levels -- */

void
ae_ack_level(const struct ae_know *k, const struct ae_place *place,
    struct crdt_dot dot, struct ae_ack *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t r = 0; r < place->region_count; r++) {
        const struct ae_region_place *rp = &place->regions[r];
        MRD_ASSERT(rp->region < AE_REGIONS_MAX); /* ae_place_check() */
        out->replicas[rp->region] = (uint8_t) rp->rf;
        for (uint32_t i = 0; i < rp->rf; i++) {
            const struct crdt_vv *vv = NULL;
            if (rp->cand[i] == k->self) {
                vv = &k->own;
            } else {
                const struct ae_row *row = ae_know_find(k, rp->cand[i]);
                vv                       = row != NULL ? &row->latest : NULL;
            }
            if (vv != NULL && crdt_vv_covers_dot(vv, dot)) {
                out->held[rp->region]++;
            }
        }
    }
}

enum ae_level
ae_ack_decide(const struct ae_ack *ack, uint32_t self_region, uint32_t region_k,
    uint32_t global_n)
{
    uint32_t regions = 0;

    MRD_ASSERT(self_region < AE_REGIONS_MAX);
    if (ack->held[self_region] == 0) {
        return AE_ACK_NONE;
    }
    if (ack->held[self_region] < region_k) {
        return AE_ACK_LOCAL;
    }
    for (uint32_t r = 0; r < AE_REGIONS_MAX; r++) {
        regions += ack->held[r] > 0 ? 1u : 0u;
    }
    return regions >= global_n ? AE_ACK_GLOBAL : AE_ACK_REGION;
}

/* -------------------------------------------------------------- digests -- */

/* Bytes msgpack-c's packer uses for an unsigned integer and an array
 * header: it always picks the shortest form. */
static size_t
ae_mp_uint_size(uint64_t v)
{
    return v < 128u        ? 1u
        : v <= 0xffu       ? 2u
        : v <= 0xffffu     ? 3u
        : v <= 0xffffffffu ? 5u
                           : 9u;
}

static size_t
ae_mp_array_size(uint32_t n)
{
    return n <= 15u ? 1u : n <= 0xffffu ? 3u : 5u;
}

/* Entries of row above floor: how many, and their encoded size. */
static size_t
ae_digest_row_size(
    const struct crdt_vv *row, const struct crdt_vv *floor, uint32_t *n_out)
{
    size_t   size = 0;
    uint32_t n    = 0;
    for (uint32_t i = 0; i < row->n; i++) {
        uint64_t f = crdt_vv_get(floor, row->e[i].origin);
        if (row->e[i].seq > f) {
            size += ae_mp_uint_size(row->e[i].origin)
                + ae_mp_uint_size(row->e[i].seq - f);
            n++;
        }
    }
    *n_out = n;
    return size + ae_mp_array_size(2u * n);
}

/* The rows a digest may carry: our own vector, then every other replica's
 * latest, starting at `rotate`. Returns how many; vv[i] and node[i] are
 * borrowed from k. */
static uint32_t
ae_digest_rows(const struct ae_know *k, const struct ae_place *place,
    uint32_t rotate, const struct crdt_vv **vv, uint64_t *node)
{
    uint32_t n = 0;
    vv[n]      = &k->own;
    node[n++]  = k->self;
    for (uint32_t j = 0; j < k->row_count; j++) {
        const struct ae_row *row = &k->row[(rotate + j) % k->row_count];
        if (row->latest.n > 0 && ae_place_has(place, row->node, NULL)) {
            vv[n]     = &row->latest;
            node[n++] = row->node;
        }
    }
    return n;
}

/* Sorts the chosen rows by node id (insertion sort: at most
 * AE_REPLICAS_MAX + 1 of them, once per digest). */
static void
ae_digest_sort(const struct crdt_vv **vv, uint64_t *node, uint32_t n)
{
    for (uint32_t i = 1; i < n; i++) {
        const struct crdt_vv *v = vv[i];
        uint64_t              x = node[i];
        uint32_t              j = i;
        for (; j > 0 && node[j - 1] > x; j--) {
            vv[j]   = vv[j - 1];
            node[j] = node[j - 1];
        }
        vv[j]   = v;
        node[j] = x;
    }
}

static void
ae_digest_write(struct proto_buf *out, const struct crdt_vv *floor,
    const struct crdt_vv **vv, const uint64_t *node, const uint32_t *extra,
    uint32_t n)
{
    proto_wr_array(out, 3);
    proto_wr_uint(out, AE_DIGEST_FORMAT);
    proto_wr_array(out, 2u * floor->n);
    for (uint32_t i = 0; i < floor->n; i++) {
        proto_wr_uint(out, floor->e[i].origin);
        proto_wr_uint(out, floor->e[i].seq);
    }
    proto_wr_array(out, 2u * n);
    for (uint32_t r = 0; r < n; r++) {
        proto_wr_uint(out, node[r]);
        proto_wr_array(out, 2u * extra[r]);
        for (uint32_t i = 0; i < vv[r]->n; i++) {
            uint64_t f = crdt_vv_get(floor, vv[r]->e[i].origin);
            if (vv[r]->e[i].seq > f) {
                proto_wr_uint(out, vv[r]->e[i].origin);
                proto_wr_uint(out, vv[r]->e[i].seq - f);
            }
        }
    }
}

/* Scratch of one encode, off the stack: rows chosen and their sizes. */
struct ae_digest_plan {
    const struct crdt_vv *vv[AE_REPLICAS_MAX + 1];
    uint64_t              node[AE_REPLICAS_MAX + 1];
    uint32_t              extra[AE_REPLICAS_MAX + 1];
};

int
ae_digest_encode(const struct ae_know *k, const struct ae_place *place,
    uint32_t rotate, struct proto_buf *out)
{
    struct ae_digest_plan plan; /* ~4.5 KiB */
    struct crdt_vv        floor;

    if (ae_place_home(place, k->self) == NULL) {
        return MRD_ENOTFOUND;
    }
    uint32_t all = ae_digest_rows(k, place, rotate, plan.vv, plan.node);
    crdt_vv_init(&floor);
    int rc = crdt_vv_copy(&floor, plan.vv[0]);
    for (uint32_t i = 1; rc == MRD_OK && i < all; i++) {
        rc = crdt_vv_meet(&floor, &floor, plan.vv[i]);
    }
    size_t budget = out->cap_max - out->len;
    budget        = budget < AE_DIGEST_SIZE_MAX ? budget : AE_DIGEST_SIZE_MAX;
    /* Header, floor and the rows array header at its largest. */
    size_t size = 1 + 1 + ae_mp_array_size(2u * floor.n) + 5;
    for (uint32_t i = 0; i < floor.n; i++) {
        size += ae_mp_uint_size(floor.e[i].origin)
            + ae_mp_uint_size(floor.e[i].seq);
    }
    uint32_t n = 0;
    for (uint32_t i = 0; rc == MRD_OK && i < all; i++) {
        uint32_t extra;
        size_t   row = ae_mp_uint_size(plan.node[i])
            + ae_digest_row_size(plan.vv[i], &floor, &extra);
        if (size + row <= budget) {
            size += row;
            plan.vv[n]      = plan.vv[i];
            plan.node[n]    = plan.node[i];
            plan.extra[n++] = extra;
        } else if (i == 0) {
            rc = MRD_ETOOBIG; /* not even our own vector: say so */
        }
    }
    if (rc == MRD_OK) {
        /* Sorting moves extra counts with their rows: recompute them. */
        ae_digest_sort(plan.vv, plan.node, n);
        for (uint32_t i = 0; i < n; i++) {
            (void) ae_digest_row_size(plan.vv[i], &floor, &plan.extra[i]);
        }
        size_t at = out->len;
        ae_digest_write(out, &floor, plan.vv, plan.node, plan.extra, n);
        rc = proto_buf_status(out);
        MRD_ASSERT(rc != MRD_OK || out->len - at <= size);
    }
    crdt_vv_free(&floor);
    return rc;
}

/* Reads `[origin, seq, ...]` pairs (count already read: 2 * pairs) with
 * strictly increasing origins and non-zero numbers; when vv is not NULL,
 * raises vv[origin] to base[origin] + seq. */
static int
ae_digest_pairs(struct proto_rd *rd, uint32_t count, const struct crdt_vv *base,
    struct crdt_vv *vv, const char **why)
{
    uint64_t prev = 0;

    if (count % 2 != 0 || count / 2 > CRDT_ORIGINS_MAX) {
        *why = "a digest vector has an odd or too large count";
        return MRD_EPROTO;
    }
    for (uint32_t i = 0; i < count / 2; i++) {
        uint64_t origin, seq;
        if (proto_rd_uint(rd, &origin) != MRD_OK
            || proto_rd_uint(rd, &seq) != MRD_OK) {
            *why = "a digest vector entry is not two integers";
            return MRD_EPROTO;
        }
        if (origin <= prev || seq == 0) {
            *why = "a digest vector is not sorted or holds a zero";
            return MRD_EPROTO;
        }
        prev       = origin;
        uint64_t b = base != NULL ? crdt_vv_get(base, origin) : 0;
        if (seq > UINT64_MAX - b) {
            *why = "a digest row overflows";
            return MRD_EPROTO;
        }
        int rc = vv != NULL ? crdt_vv_raise(vv, origin, b + seq) : MRD_OK;
        if (rc != MRD_OK) {
            *why = "a digest vector does not fit in memory";
            return rc;
        }
    }
    return MRD_OK;
}

/* One pass over the rows: checks them and, when k is not NULL, reports each
 * one. */
static int
ae_digest_rows_walk(struct proto_rd *rd, struct ae_know *k,
    const struct ae_place *place, const struct crdt_vv *floor, const char **why)
{
    uint32_t       count, n;
    uint64_t       prev = 0;
    struct crdt_vv row;
    int            rc = MRD_OK;

    if (proto_rd_array(rd, &count) != MRD_OK || count % 2 != 0
        || count / 2 > AE_REPLICAS_MAX + 1u) {
        *why = "a digest's rows are not an even array of at most 225 rows";
        return MRD_EPROTO;
    }
    crdt_vv_init(&row);
    for (uint32_t r = 0; rc == MRD_OK && r < count / 2; r++) {
        uint64_t node;
        if (proto_rd_uint(rd, &node) != MRD_OK || node <= prev
            || proto_rd_array(rd, &n) != MRD_OK) {
            *why = "a digest row is not a node id above the previous one "
                   "and an array";
            rc   = MRD_EPROTO;
            break;
        }
        prev = node;
        rc   = k != NULL ? crdt_vv_copy(&row, floor) : MRD_OK;
        if (rc == MRD_OK) {
            rc = ae_digest_pairs(rd, n, floor, k != NULL ? &row : NULL, why);
        }
        if (rc == MRD_OK && k != NULL) {
            rc = ae_know_report(k, place, node, &row);
        }
    }
    crdt_vv_free(&row);
    return rc;
}

/* Checks the whole digest (k NULL) or learns from it. */
static int
ae_digest_walk(const void *buf, size_t len, struct ae_know *k,
    const struct ae_place *place, const char **why)
{
    struct proto_rd rd;
    uint32_t        n;
    uint64_t        format;
    struct crdt_vv  floor;

    proto_rd_init(&rd, buf, len);
    if (proto_rd_array(&rd, &n) != MRD_OK || n != 3
        || proto_rd_uint(&rd, &format) != MRD_OK) {
        *why = "a digest is not [format, floor, rows]";
        return MRD_EPROTO;
    }
    if (format != AE_DIGEST_FORMAT) {
        *why = "unknown digest format";
        return MRD_EPROTO;
    }
    if (proto_rd_array(&rd, &n) != MRD_OK) {
        *why = "a digest's floor is not an array";
        return MRD_EPROTO;
    }
    crdt_vv_init(&floor);
    int rc = ae_digest_pairs(&rd, n, NULL, &floor, why);
    if (rc == MRD_OK) {
        rc = ae_digest_rows_walk(&rd, k, place, &floor, why);
    }
    if (rc == MRD_OK && !proto_rd_done(&rd)) {
        *why = "bytes after a digest";
        rc   = MRD_EPROTO;
    }
    crdt_vv_free(&floor);
    return rc;
}

int
ae_digest_absorb(struct ae_know *k, const struct ae_place *place,
    const void *buf, size_t len, const char **why)
{
    if (len > AE_DIGEST_SIZE_MAX) {
        *why = "a digest is larger than 16 KiB";
        return MRD_ETOOBIG;
    }
    if (proto_walk(buf, len) != MRD_OK) {
        *why = "a digest is not one bounded msgpack value";
        return MRD_EPROTO;
    }
    /* Nothing is learnt from a digest that is wrong anywhere. */
    int rc = ae_digest_walk(buf, len, NULL, place, why);
    return rc == MRD_OK ? ae_digest_walk(buf, len, k, place, why) : rc;
}

/* --------------------------------------------------------------- pacing -- */

enum ae_pull_result
ae_pull_outcome(bool end, bool blocked, struct crdt_dot blocked_on,
    const struct crdt_vv *vv)
{
    if (end) {
        return AE_PULLED_END;
    }
    if (blocked && !crdt_vv_covers_dot(vv, blocked_on)) {
        return AE_PULLED_BLOCKED;
    }
    return AE_PULLED_MORE;
}

static uint32_t
ae_double(uint32_t ms, uint32_t max)
{
    return ms > max / 2 ? max : ms * 2;
}

void
ae_pace_init(struct ae_pace *p, const struct ae_pace_cfg *cfg, uint64_t now_ms)
{
    memset(p, 0, sizeof(*p));
    p->due_ms   = now_ms;
    p->idle_ms  = cfg->idle_ms_min;
    p->retry_ms = cfg->retry_ms_min;
}

bool
ae_pace_due(const struct ae_pace *p, uint64_t now_ms)
{
    return !p->in_flight && now_ms >= p->due_ms;
}

void
ae_pace_sent(struct ae_pace *p, uint64_t now_ms)
{
    MRD_ASSERT(!p->in_flight); /* one pull per (shard, source) */
    p->in_flight = true;
    p->hinted    = false;
    p->sent_ms   = now_ms;
}

bool
ae_pace_timed_out(
    const struct ae_pace *p, const struct ae_pace_cfg *cfg, uint64_t now_ms)
{
    return p->in_flight && now_ms >= p->sent_ms + cfg->timeout_ms;
}

/* A pull that got an answer: the source works. */
static void
ae_pace_answered(struct ae_pace *p, const struct ae_pace_cfg *cfg)
{
    p->failures = 0;
    p->retry_ms = cfg->retry_ms_min;
}

void
ae_pace_done(struct ae_pace *p, const struct ae_pace_cfg *cfg, uint64_t now_ms,
    enum ae_pull_result result, bool applied)
{
    MRD_ASSERT(p->in_flight);
    p->in_flight = false;
    if (applied) {
        p->idle_ms = cfg->idle_ms_min; /* busy: poll eagerly again */
    }
    switch (result) {
    case AE_PULLED_MORE:
        ae_pace_answered(p, cfg);
        p->blocked = false;
        p->due_ms  = now_ms;
        break;
    case AE_PULLED_END:
    case AE_PULLED_BLOCKED:
        ae_pace_answered(p, cfg);
        if (result == AE_PULLED_END) {
            p->blocked = false;
        } else if (!p->blocked || applied) {
            /* A stall is waiting without progress: a blocked pull that
             * brought events restarts the clock. */
            p->blocked    = true;
            p->blocked_ms = now_ms;
        }
        p->due_ms  = now_ms + p->idle_ms;
        p->idle_ms = ae_double(p->idle_ms, cfg->idle_ms_max);
        break;
    case AE_PULL_FAILED:
        p->failures++;
        p->due_ms   = now_ms + p->retry_ms;
        p->retry_ms = ae_double(p->retry_ms, cfg->retry_ms_max);
        p->hinted   = false; /* a failing source waits out its backoff */
        break;
    }
    if (p->hinted) {
        p->due_ms = now_ms;
        p->hinted = false;
    }
}

void
ae_pace_hint(struct ae_pace *p, const struct ae_pace_cfg *cfg, uint64_t now_ms)
{
    p->idle_ms = cfg->idle_ms_min;
    if (p->in_flight) {
        p->hinted = true;
    } else if (p->due_ms > now_ms) {
        p->due_ms = now_ms;
    }
}

void
ae_pace_progress(struct ae_pace *p, uint64_t now_ms)
{
    if (p->blocked && !p->in_flight && p->due_ms > now_ms) {
        p->due_ms = now_ms;
    }
}

bool
ae_pace_failing(
    const struct ae_pace *p, const struct ae_pace_cfg *cfg, uint64_t now_ms)
{
    return p->failures >= cfg->failures_max && !p->in_flight
        && now_ms < p->due_ms;
}

bool
ae_pace_stalled(
    const struct ae_pace *p, const struct ae_pace_cfg *cfg, uint64_t now_ms)
{
    return p->blocked && now_ms >= p->blocked_ms + cfg->stall_ms;
}

uint64_t
ae_pace_wake_ms(const struct ae_pace *p, const struct ae_pace_cfg *cfg)
{
    return p->in_flight ? p->sent_ms + cfg->timeout_ms : p->due_ms;
}

uint32_t
ae_pull_skip(const struct ae_source *src, const struct ae_pace *p,
    const struct ae_pace_cfg *cfg, uint64_t now_ms)
{
    if (!src->remote || ae_pace_stalled(p, cfg, now_ms)) {
        return 0;
    }
    return src->skip_regions;
}

/* --------------------------------------------------------------- budget -- */

void
ae_budget_init(struct ae_budget *b, uint64_t cap, uint64_t grant_min)
{
    MRD_ASSERT(grant_min >= 1 && cap >= grant_min);
    b->cap       = cap;
    b->used      = 0;
    b->grant_min = grant_min;
}

bool
ae_budget_take(struct ae_budget *b, uint64_t *grant_out)
{
    uint64_t free  = b->cap - b->used;
    uint64_t share = b->cap / AE_BUDGET_SHARES;
    uint64_t grant = share > b->grant_min ? share : b->grant_min;
    if (free < b->grant_min) {
        return false;
    }
    grant      = grant < free ? grant : free;
    *grant_out = grant < AE_PULL_BYTES_MAX ? grant : AE_PULL_BYTES_MAX;
    b->used += *grant_out;
    return true;
}

void
ae_budget_give(struct ae_budget *b, uint64_t grant)
{
    MRD_ASSERT(grant <= b->used); /* only what was taken comes back */
    b->used -= grant;
}
