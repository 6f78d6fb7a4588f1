/*
 * antientropy.c: the node's side of replication/ae.h.
 *
 * ae.h decides (whom to pull from and hint, what to serve, what is stable,
 * which acknowledgement level a dot reached); this file gives it what it
 * decides over: the shard's placement from the signed topology, rebuilt
 * when the topology's version moves, and one struct ae_know per shard this
 * node holds, which the server feeds from PULL requests and the puller from
 * replies, each with the digest it carries. Knowledge is volatile: after a
 * restart it is empty, which is the safe side (nothing stable, no ack
 * beyond local), and the first pulls refill it.
 */
#include "node.h"

#include <stdlib.h>
#include <string.h>

#include "ae.h"
#include "topo.h"

_Static_assert(TOPO_REGIONS_MAX <= AE_REGIONS_MAX, "every region has a bit");
_Static_assert(TOPO_RF_MAX <= AE_RF_MAX, "every replica has a row");
_Static_assert(PROTO_DIGEST_SIZE_MAX == AE_DIGEST_SIZE_MAX, "one limit");

/* One shard's placement in ae.h's shape, with the storage it points at. */
struct node_ae_place {
    struct ae_place        place;
    bool                   valid; /* ae_place_check() took it */
    struct ae_region_place region[TOPO_REGIONS_MAX];
    uint64_t               cand[TOPO_NODES_MAX];
};

struct node_ae_node {
    uint64_t id;
    uint32_t region;
};

/* Since when (monotonic ms) a replica has been seen behind this node, for
 * the lag in seconds of node_ae_lag(); 0: not behind. */
struct node_ae_behind {
    uint64_t node;
    uint64_t since_ms;
};

struct node_ae {
    struct node_topology *nt;
    struct node_store    *store;
    pthread_mutex_t       mu;
    uint64_t              version; /* of the caches below */
    uint64_t              self;
    uint32_t              self_region;
    uint32_t              shard_count;
    struct node_ae_place *place; /* [shard_count] */
    struct node_ae_node   nodes[TOPO_NODES_MAX]; /* sorted by id */
    uint32_t              node_count;
    struct ae_know      **know; /* [shard_count], made on first use */
    struct node_ae_behind (*behind)[AE_REPLICAS_MAX]; /* [shard_count] */
    uint32_t rotate; /* digest rotation (ae_digest_encode) */
};

struct node_ae_build {
    struct node_ae *ae;
};

static void
node_ae_build(const struct topo *t, uint64_t self, void *arg)
{
    struct node_ae *ae = arg;
    uint32_t        ids[TOPO_NODES_MAX];

    ae->node_count  = 0;
    ae->self_region = AE_REGION_NONE;
    for (uint32_t i = 0; i < t->node_count; i++) {
        if (t->nodes[i].state == TOPO_NODE_REMOVED) {
            continue; /* its events are never skipped (AE_REGION_NONE) */
        }
        ae->nodes[ae->node_count++]
            = (struct node_ae_node) { t->nodes[i].id, t->nodes[i].region };
        if (t->nodes[i].id == self) {
            ae->self_region = t->nodes[i].region;
        }
    }
    for (uint32_t s = 0; s < ae->shard_count; s++) {
        struct node_ae_place *p    = &ae->place[s];
        uint32_t              used = 0, nr = 0;
        for (uint32_t r = 0; s < t->shard_count && r < t->region_count; r++) {
            uint32_t n = topo_candidates(t, s, r, ids, TOPO_NODES_MAX - used);
            if (n == 0) {
                continue; /* no active node there: nothing to place */
            }
            for (uint32_t i = 0; i < n; i++) {
                p->cand[used + i] = ids[i];
            }
            uint32_t rf = t->regions[r].rf < n ? t->regions[r].rf : n;
            p->region[nr++]
                = (struct ae_region_place) { r, rf, n, &p->cand[used] };
            used += n;
        }
        p->place = (struct ae_place) { s, nr, p->region };
        const char *why;
        p->valid = nr > 0 && ae_place_check(&p->place, &why) == MRD_OK;
    }
}

/* Rebuilds the caches if the topology moved. Caller holds mu. */
static void
node_ae_refresh(struct node_ae *ae)
{
    if (node_topology_version(ae->nt) != ae->version) {
        ae->version = node_topology_with(ae->nt, node_ae_build, ae);
    }
}

int
node_ae_open(
    struct node_topology *nt, struct node_store *store, struct node_ae **out)
{
    *out = NULL;
    if (nt == NULL) {
        return MRD_OK;
    }
    struct node_ae *ae = calloc(1, sizeof(*ae));
    if (ae == NULL) {
        return MRD_ENOMEM;
    }
    ae->nt          = nt;
    ae->store       = store;
    ae->self        = store->node_id;
    ae->shard_count = store->shard_count;
    ae->place       = calloc(store->shard_count, sizeof(*ae->place));
    ae->know        = calloc(store->shard_count, sizeof(*ae->know));
    ae->behind      = calloc(store->shard_count, sizeof(*ae->behind));
    if (ae->place == NULL || ae->know == NULL || ae->behind == NULL) {
        free(ae->place);
        free(ae->know);
        free(ae->behind);
        free(ae);
        return MRD_ENOMEM;
    }
    pthread_mutex_init(&ae->mu, NULL);
    node_ae_refresh(ae);
    *out = ae;
    return MRD_OK;
}

void
node_ae_close(struct node_ae *ae)
{
    if (ae == NULL) {
        return;
    }
    for (uint32_t s = 0; s < ae->shard_count; s++) {
        if (ae->know[s] != NULL) {
            ae_know_fini(ae->know[s]);
            free(ae->know[s]);
        }
    }
    free(ae->know);
    free(ae->behind);
    free(ae->place);
    pthread_mutex_destroy(&ae->mu);
    free(ae);
}

static uint32_t
node_ae_region_of_locked(const struct node_ae *ae, uint64_t node)
{
    uint32_t lo = 0, hi = ae->node_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (ae->nodes[mid].id < node) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < ae->node_count && ae->nodes[lo].id == node
        ? ae->nodes[lo].region
        : AE_REGION_NONE;
}

uint32_t
node_ae_region_of(void *arg, uint64_t node)
{
    struct node_ae *ae = arg;
    pthread_mutex_lock(&ae->mu);
    node_ae_refresh(ae);
    uint32_t region = node_ae_region_of_locked(ae, node);
    pthread_mutex_unlock(&ae->mu);
    return region;
}

/* The shard's placement, or NULL (no such shard, or nowhere to place it).
 * Caller holds mu. */
static const struct ae_place *
node_ae_place_locked(struct node_ae *ae, uint32_t shard)
{
    node_ae_refresh(ae);
    return shard < ae->shard_count && ae->place[shard].valid
        ? &ae->place[shard].place
        : NULL;
}

/* The shard's knowledge, made on first use; NULL on ENOMEM. Caller holds
 * mu. */
static struct ae_know *
node_ae_know_locked(struct node_ae *ae, uint32_t shard)
{
    if (ae->know[shard] == NULL) {
        ae->know[shard] = malloc(sizeof(struct ae_know));
        if (ae->know[shard] != NULL) {
            ae_know_init(ae->know[shard], ae->self);
        }
    }
    return ae->know[shard];
}

int
node_ae_sources(struct node_ae *ae, uint32_t      shard,
    bool (*live)(void *arg, uint64_t node), void *live_arg,
    struct ae_source *out, uint32_t *count_out)
{
    *count_out = 0;
    pthread_mutex_lock(&ae->mu);
    const struct ae_place *place = node_ae_place_locked(ae, shard);
    int                    rv    = place != NULL
                              ? ae_sources(place, ae->self, live, live_arg, out, count_out)
                              : MRD_ENOTFOUND;
    pthread_mutex_unlock(&ae->mu);
    return rv;
}

int
node_ae_hint_targets(struct node_ae *ae, uint32_t shard,
    bool (*live)(void *arg, uint64_t node), void *live_arg, uint64_t *out,
    uint32_t *count_out)
{
    *count_out = 0;
    pthread_mutex_lock(&ae->mu);
    const struct ae_place *place = node_ae_place_locked(ae, shard);
    int                    rv    = place != NULL
                              ? ae_hint_targets(place, ae->self, live, live_arg, out, count_out)
                              : MRD_ENOTFOUND;
    pthread_mutex_unlock(&ae->mu);
    return rv;
}

int
node_ae_report(
    struct node_ae *ae, uint32_t shard, uint64_t node, struct proto_str vv)
{
    struct crdt_vv v;
    crdt_vv_init(&v);
    int rv = node_vv_from_wire(vv, &v);
    pthread_mutex_lock(&ae->mu);
    const struct ae_place *place = node_ae_place_locked(ae, shard);
    struct ae_know *k = place != NULL ? node_ae_know_locked(ae, shard) : NULL;
    if (rv == MRD_OK && place != NULL) {
        rv = k != NULL ? ae_know_report(k, place, node, &v) : MRD_ENOMEM;
    }
    pthread_mutex_unlock(&ae->mu);
    crdt_vv_free(&v);
    return rv;
}

int
node_ae_absorb(struct node_ae *ae, uint32_t shard, struct proto_str digest,
    const char **why)
{
    int rv = MRD_OK;
    if (digest.len == 0) {
        return MRD_OK;
    }
    pthread_mutex_lock(&ae->mu);
    const struct ae_place *place = node_ae_place_locked(ae, shard);
    struct ae_know *k = place != NULL ? node_ae_know_locked(ae, shard) : NULL;
    if (place != NULL) {
        rv = k != NULL ? ae_digest_absorb(k, place, digest.ptr, digest.len, why)
                       : MRD_ENOMEM;
    }
    pthread_mutex_unlock(&ae->mu);
    return rv;
}

/* Our vector into the shard's knowledge. Caller holds mu. */
static int
node_ae_own_locked(struct ae_know *k, struct proto_str own)
{
    struct crdt_vv v;
    crdt_vv_init(&v);
    int rv = node_vv_from_wire(own, &v);
    if (rv == MRD_OK) {
        rv = ae_know_own(k, &v);
    }
    crdt_vv_free(&v);
    return rv;
}

/* The shard's placement and knowledge with our vector (own, wire form) in
 * it: MRD_OK, MRD_ENOTFOUND (not placed), MRD_ENOMEM. Caller holds mu. */
static int
node_ae_current_locked(struct node_ae *ae, uint32_t shard, struct proto_str own,
    const struct ae_place **place_out, struct ae_know **k_out)
{
    const struct ae_place *place = node_ae_place_locked(ae, shard);
    if (place == NULL) {
        return MRD_ENOTFOUND;
    }
    struct ae_know *k = node_ae_know_locked(ae, shard);
    if (k == NULL) {
        return MRD_ENOMEM;
    }
    *place_out = place;
    *k_out     = k;
    return node_ae_own_locked(k, own);
}

int
node_ae_digest(struct node_ae *ae, uint32_t shard, struct proto_str own,
    struct proto_buf *out)
{
    const struct ae_place *place;
    struct ae_know        *k;

    pthread_mutex_lock(&ae->mu);
    int rv = node_ae_current_locked(ae, shard, own, &place, &k);
    if (rv == MRD_OK) {
        rv = ae_digest_encode(k, place, ae->rotate++, out);
    }
    pthread_mutex_unlock(&ae->mu);
    return rv;
}

int
node_ae_stable(struct node_ae *ae, uint32_t shard, struct proto_str own,
    struct crdt_vv *out)
{
    const struct ae_place *place;
    struct ae_know        *k;

    pthread_mutex_lock(&ae->mu);
    int rv = node_ae_current_locked(ae, shard, own, &place, &k);
    if (rv == MRD_OK) {
        rv = ae_know_stable(k, place, out);
    }
    pthread_mutex_unlock(&ae->mu);
    return rv;
}

void
node_ae_ack(struct node_ae *ae, uint32_t shard, uint64_t seq,
    struct ae_ack *out, uint32_t *self_region)
{
    struct crdt_dot dot = { ae->self, seq };

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ae->mu);
    const struct ae_place *place = node_ae_place_locked(ae, shard);
    struct ae_know *k = place != NULL ? node_ae_know_locked(ae, shard) : NULL;
    *self_region      = ae->self_region;
    if (k != NULL) {
        ae_ack_level(k, place, dot, out);
        /* The append is committed here, but our own vector in k may be a
         * commit behind: count ourselves by that fact, not by k. */
        if (ae->self_region < AE_REGIONS_MAX
            && ae_place_has(place, ae->self, NULL)
            && !crdt_vv_covers_dot(&k->own, dot)) {
            out->held[ae->self_region]++;
        }
    }
    pthread_mutex_unlock(&ae->mu);
}

/* Events of `own` that `theirs` lacks. Seqs of one origin are dense except
 * across a node's lives (a wiped node starts at its creation time << 20:
 * NODE_LIFE_SEQ_SHIFT), so a difference is capped by what the shard's log
 * holds: the figure is an upper bound, exact in the normal case. */
static uint64_t
node_ae_missing(const struct crdt_vv *own, const struct crdt_vv *theirs,
    uint64_t held, uint64_t self, uint64_t life_seq)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < own->n; i++) {
        uint64_t have = crdt_vv_get(theirs, own->e[i].origin);
        if (own->e[i].origin == self && have < life_seq) {
            have = life_seq; /* our own life: dense from its start */
        }
        if (own->e[i].seq > have) {
            uint64_t d = own->e[i].seq - have;
            sum += d < held ? d : held;
        }
    }
    return sum < held ? sum : held;
}

/* Updates the shard's behind-since marks from k and calls fn (if any) per
 * row. Caller holds mu. */
static void
node_ae_lag_shard_locked(struct node_ae *ae, uint32_t shard, uint64_t held,
    uint64_t now_ms, node_ae_lag_fn fn, void *arg)
{
    struct ae_know        *k      = ae->know[shard];
    struct node_ae_behind *behind = ae->behind[shard];
    struct node_ae_behind  next[AE_REPLICAS_MAX];

    for (uint32_t r = 0; r < k->row_count && r < AE_REPLICAS_MAX; r++) {
        uint64_t node   = k->row[r].node;
        uint64_t events = node_ae_missing(
            &k->own, &k->row[r].latest, held, ae->self, ae->store->life_seq);
        uint64_t since = 0;
        for (uint32_t j = 0; j < AE_REPLICAS_MAX && behind[j].node != 0; j++) {
            if (behind[j].node == node) {
                since = behind[j].since_ms;
                break;
            }
        }
        if (events == 0) {
            since = 0;
        } else if (since == 0) {
            since = now_ms;
        }
        next[r] = (struct node_ae_behind) { node, since };
        if (fn != NULL) {
            fn(arg, shard, node, events, since);
        }
    }
    uint32_t n
        = k->row_count < AE_REPLICAS_MAX ? k->row_count : AE_REPLICAS_MAX;
    memcpy(behind, next, n * sizeof(next[0]));
    if (n < AE_REPLICAS_MAX) {
        behind[n].node = 0;
    }
}

void
node_ae_lag(struct node_ae *ae, uint64_t now_ms, node_ae_lag_fn fn, void *arg)
{
    uint8_t *own = malloc((size_t) CRDT_ORIGINS_MAX * 16u);
    if (ae == NULL || own == NULL) {
        free(own);
        return;
    }
    for (uint32_t s = 0; s < ae->shard_count; s++) {
        uint32_t len  = 0;
        uint64_t held = 0;
        /* Our vector from the store: the knowledge's copy is only as new
         * as the last pull, and a fenced node is pulled by nobody. */
        pthread_mutex_lock(&ae->mu);
        bool known = ae->know[s] != NULL;
        pthread_mutex_unlock(&ae->mu);
        if (!known || node_store_shard_vv(ae->store, s, own, &len) != MRD_OK) {
            continue;
        }
        pthread_mutex_lock(&ae->store->write_mu);
        held = ae->store->log_seq_last[s];
        pthread_mutex_unlock(&ae->store->write_mu);
        pthread_mutex_lock(&ae->mu);
        if (node_ae_own_locked(
                ae->know[s], (struct proto_str) { (const char *) own, len })
            == MRD_OK) {
            node_ae_lag_shard_locked(ae, s, held, now_ms, fn, arg);
        }
        pthread_mutex_unlock(&ae->mu);
    }
    free(own);
}
