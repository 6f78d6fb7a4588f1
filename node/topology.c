/*
 * topology.c: the node's signed topology (replication/topo.h), from its
 * file, its store and its peers.
 *
 * With --topology FILE the node's cluster id, shard count, region and peers
 * come from a signed topology, and the node holds only the shards that
 * rendezvous placement gives it. The newest version it has accepted is kept
 * in the store (meta key "topology"), so a restart never goes back to an
 * older file. A newer version reaches it by TOPOLOGY_PUSH (an operator's
 * meridianctl) or by gossip (the puller asks a random peer, now and then,
 * whether it has a newer one); either way it is verified with the admin key
 * of the version already held (topo_accept) before anything uses it.
 *
 * Thread safety: the current topology is swapped whole under `lock`;
 * readers take it shared for the few microseconds a placement check lasts.
 */
#include "node.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "topo.h"

_Static_assert(TOPO_SIGNED_SIZE_MAX <= PROTO_TOPOLOGY_SIZE_MAX,
    "a signed topology fits a TOPOLOGY message");

#define NODE_META_TOPOLOGY "topology"

struct node_topology {
    pthread_rwlock_t   lock;
    struct topo       *cur; /* never NULL once open */
    uint8_t           *signed_buf; /* cur's signed envelope */
    size_t             signed_len;
    uint32_t           self;
    struct node_store *store; /* NULL until attached */
    _Atomic uint64_t   version;
    /* --peer-address, fixed at open: node_topology_peers() gives these
     * URLs instead of the topology's, for every version. */
    struct node_peer overrides[NODE_PEERS_MAX];
    uint32_t         override_count;
};

static int
node_file_read(const char *path, uint8_t **out, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return MRD_ENOTFOUND;
    }
    uint8_t *buf = malloc(PROTO_TOPOLOGY_SIZE_MAX + 1);
    size_t n = buf != NULL ? fread(buf, 1, PROTO_TOPOLOGY_SIZE_MAX + 1, f) : 0;
    int    bad = ferror(f);
    fclose(f);
    if (buf == NULL) {
        return MRD_ENOMEM;
    }
    if (bad || n > PROTO_TOPOLOGY_SIZE_MAX) {
        free(buf);
        return bad ? MRD_EIO : MRD_ETOOBIG;
    }
    *out     = buf;
    *len_out = n;
    return MRD_OK;
}

/* Fills cfg from the topology: what the node is, and who its peers are. */
static int
node_topology_config(
    const struct topo *t, struct node_config *cfg, bool listen_given)
{
    const struct topo_node *self = topo_node_by_id(t, (uint32_t) cfg->node_id);

    if (cfg->node_id > TOPO_NODE_ID_MAX || self == NULL) {
        fprintf(stderr, "meridiand: node %llu is not in the topology\n",
            (unsigned long long) cfg->node_id);
        return -1;
    }
    if (self->state == TOPO_NODE_REMOVED) {
        fprintf(stderr,
            "meridiand: node %llu was removed from the cluster; ids are "
            "never reused: add this node again under a new id\n",
            (unsigned long long) cfg->node_id);
        return -1;
    }
    if (cfg->has_cluster_id
        && memcmp(cfg->cluster_id, t->cluster_id, TOPO_CLUSTER_ID_SIZE) != 0) {
        fprintf(stderr,
            "meridiand: --cluster-id differs from the topology's cluster\n");
        return -1;
    }
    if (t->shard_count > NODE_SHARDS_MAX) {
        fprintf(stderr,
            "meridiand: the topology has %u shards; this node "
            "serves at most %u\n",
            t->shard_count, NODE_SHARDS_MAX);
        return -1;
    }
    memcpy(cfg->cluster_id, t->cluster_id, TOPO_CLUSTER_ID_SIZE);
    cfg->has_cluster_id = true;
    cfg->shard_count    = t->shard_count;
    snprintf(
        cfg->region, sizeof cfg->region, "%s", t->regions[self->region].name);
    if (!listen_given) {
        snprintf(cfg->listen, sizeof cfg->listen, "%s", self->address);
    }
    cfg->peer_count = 0;
    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node *n = &t->nodes[i];
        if (n->id == self->id || n->state == TOPO_NODE_REMOVED) {
            continue;
        }
        if (cfg->peer_count == NODE_PEERS_MAX) {
            fprintf(stderr, "meridiand: more than %u peers in the topology\n",
                NODE_PEERS_MAX);
            return -1;
        }
        struct node_peer *p = &cfg->peers[cfg->peer_count++];
        p->id               = n->id;
        snprintf(p->url, sizeof p->url, "%s",
            node_peer_url(cfg->peer_addresses, cfg->peer_address_count, n->id,
                n->address));
    }
    return 0;
}

int
node_topology_open(
    struct node_config *cfg, bool listen_given, struct node_topology **out)
{
    uint8_t    *buf = NULL;
    size_t      len = 0;
    const char *why = NULL;

    *out   = NULL;
    int rv = node_file_read(cfg->topology_file, &buf, &len);
    if (rv != MRD_OK) {
        fprintf(stderr, "meridiand: cannot read --topology %s: %s\n",
            cfg->topology_file,
            rv == MRD_ENOTFOUND ? strerror(errno) : mrd_strerror(rv));
        return -1;
    }
    struct node_topology *nt = calloc(1, sizeof *nt);
    struct topo          *t  = malloc(sizeof *t);
    if (nt == NULL || t == NULL) {
        free(nt);
        free(t);
        free(buf);
        return -1;
    }
    rv = topo_open_signed(buf, len, t, &why);
    if (rv != MRD_OK) {
        fprintf(stderr, "meridiand: --topology %s refused: %s (%s)\n",
            cfg->topology_file, why, mrd_errname(rv));
        free(nt);
        free(t);
        free(buf);
        return -1;
    }
    if (node_topology_config(t, cfg, listen_given) != 0) {
        free(nt);
        free(t);
        free(buf);
        return -1;
    }
    pthread_rwlock_init(&nt->lock, NULL);
    nt->cur        = t;
    nt->signed_buf = buf;
    nt->signed_len = len;
    nt->self       = (uint32_t) cfg->node_id;
    MRD_ASSERT(cfg->peer_address_count <= NODE_PEERS_MAX);
    memcpy(nt->overrides, cfg->peer_addresses,
        cfg->peer_address_count * sizeof(nt->overrides[0]));
    nt->override_count = cfg->peer_address_count;
    atomic_init(&nt->version, t->version);
    *out = nt;
    return 0;
}

/* Swaps in a verified newer topology and its envelope (taking both). */
static void
node_topology_swap(
    struct node_topology *nt, struct topo *t, uint8_t *buf, size_t len)
{
    pthread_rwlock_wrlock(&nt->lock);
    struct topo *old_t   = nt->cur;
    uint8_t     *old_buf = nt->signed_buf;
    nt->cur              = t;
    nt->signed_buf       = buf;
    nt->signed_len       = len;
    atomic_store(&nt->version, t->version);
    pthread_rwlock_unlock(&nt->lock);
    free(old_t);
    free(old_buf);
}

int
node_topology_attach(struct node_topology *nt, struct node_store *store)
{
    uint8_t    *buf = NULL;
    size_t      len = 0;
    const char *why = NULL;

    if (nt == NULL) {
        return MRD_OK;
    }
    nt->store = store;
    if (memcmp(store->cluster_id, nt->cur->cluster_id, TOPO_CLUSTER_ID_SIZE)
        != 0) {
        node_log(NODE_LOG_ERROR,
            "the data dir belongs to another cluster than the topology", NULL);
        return MRD_EINVAL;
    }
    int rv = node_store_meta_get(store, NODE_META_TOPOLOGY, &buf, &len);
    if (rv == MRD_ENOTFOUND) {
        return node_store_meta_put(
            store, NODE_META_TOPOLOGY, nt->signed_buf, nt->signed_len);
    }
    if (rv != MRD_OK) {
        return rv;
    }
    /* The one already accepted is trusted as the file is: it was checked
     * when it came. Keep whichever is newer; the file may be older (an
     * operator's first file) or newer (installed by hand, and then it must
     * follow from the stored one). */
    struct topo *stored = malloc(sizeof *stored);
    struct topo *next   = malloc(sizeof *next);
    rv                  = stored != NULL && next != NULL
                         ? topo_open_signed(buf, len, stored, &why)
                         : MRD_ENOMEM;
    if (rv != MRD_OK) {
        node_log(NODE_LOG_ERROR, "the stored topology is unreadable", "{s:s}",
            "why", why != NULL ? why : mrd_strerror(rv));
    } else if (stored->version > nt->cur->version) {
        node_log(NODE_LOG_INFO,
            "using the stored topology: newer than the file", "{s:I, s:I}",
            "stored", (json_int_t) stored->version, "file",
            (json_int_t) nt->cur->version);
        node_topology_swap(nt, stored, buf, len);
        stored = NULL;
        buf    = NULL;
    } else if (stored->version < nt->cur->version) {
        rv = topo_accept(stored, nt->signed_buf, nt->signed_len, next, &why);
        if (rv == MRD_OK) {
            rv = node_store_meta_put(
                store, NODE_META_TOPOLOGY, nt->signed_buf, nt->signed_len);
        } else {
            node_log(NODE_LOG_ERROR,
                "the topology file does not follow from the stored one",
                "{s:s, s:s}", "why", why, "error", mrd_errname(rv));
        }
    }
    free(stored);
    free(next);
    free(buf);
    return rv;
}

void
node_topology_close(struct node_topology *nt)
{
    if (nt == NULL) {
        return;
    }
    pthread_rwlock_destroy(&nt->lock);
    free(nt->cur);
    free(nt->signed_buf);
    free(nt);
}

uint64_t
node_topology_version(const struct node_topology *nt)
{
    return nt != NULL ? atomic_load(&nt->version) : 0;
}

int
node_topology_offer(
    struct node_topology *nt, const void *buf, size_t len, const char **why)
{
    if (nt == NULL) {
        *why = "this node runs without a topology (--peers)";
        return MRD_EINVAL;
    }
    struct topo *next = malloc(sizeof *next);
    uint8_t     *copy = malloc(len > 0 ? len : 1);
    if (next == NULL || copy == NULL) {
        free(next);
        free(copy);
        *why = "out of memory";
        return MRD_ENOMEM;
    }
    memcpy(copy, buf, len);
    pthread_rwlock_rdlock(&nt->lock);
    int rv = topo_accept(nt->cur, buf, len, next, why);
    pthread_rwlock_unlock(&nt->lock);
    if (rv == MRD_OK) {
        const struct topo_node *self = topo_node_by_id(next, nt->self);
        if (self == NULL || self->state == TOPO_NODE_REMOVED) {
            /* Valid, but this node cannot live under it: keep serving what
             * it has until an operator stops it. */
            node_log(NODE_LOG_WARN,
                "a newer topology removes this node; keep it until stopped",
                "{s:I}", "version", (json_int_t) next->version);
        }
        rv = nt->store != NULL
            ? node_store_meta_put(nt->store, NODE_META_TOPOLOGY, buf, len)
            : MRD_OK;
        if (rv != MRD_OK) {
            *why = "cannot store the topology";
        }
    }
    if (rv != MRD_OK) {
        free(next);
        free(copy);
        return rv;
    }
    node_log(NODE_LOG_INFO, "accepted a newer topology", "{s:I, s:i}",
        "version", (json_int_t) next->version, "nodes", (int) next->node_count);
    /* Two offers of the same version may race: the loser's accept fails
     * on the winner's (MRD_EVERSION) the next time, harmlessly; here the
     * swap just installs an equal document. */
    node_topology_swap(nt, next, copy, len);
    return MRD_OK;
}

int
node_topology_reply(
    struct node_topology *nt, uint64_t have, struct proto_buf *out)
{
    if (nt == NULL) {
        return MRD_ENOTFOUND;
    }
    pthread_rwlock_rdlock(&nt->lock);
    uint64_t         version = nt->cur->version;
    struct proto_str s       = { NULL, 0 };
    if (have < version) {
        s = (struct proto_str) { (const char *) nt->signed_buf,
            (uint32_t) nt->signed_len };
    }
    proto_topo_rep_encode(out, version, s);
    pthread_rwlock_unlock(&nt->lock);
    return proto_buf_status(out);
}

bool
node_topology_is_replica(
    struct node_topology *nt, uint32_t shard, uint64_t node_id)
{
    if (nt == NULL) {
        return true;
    }
    pthread_rwlock_rdlock(&nt->lock);
    bool is = shard < nt->cur->shard_count && node_id <= TOPO_NODE_ID_MAX
        && topo_is_replica(nt->cur, shard, (uint32_t) node_id);
    pthread_rwlock_unlock(&nt->lock);
    return is;
}

bool
node_topology_holds(struct node_topology *nt, uint32_t shard)
{
    if (nt == NULL) {
        return true; /* static mode: every node holds every shard */
    }
    pthread_rwlock_rdlock(&nt->lock);
    bool holds = shard < nt->cur->shard_count
        && topo_is_replica(nt->cur, shard, nt->self);
    pthread_rwlock_unlock(&nt->lock);
    return holds;
}

int
node_topology_replicas(
    struct node_topology *nt, uint32_t shard, char *out, size_t size)
{
    size_t len = 0;

    out[0] = '\0';
    if (nt == NULL) {
        return 0;
    }
    pthread_rwlock_rdlock(&nt->lock);
    const struct topo *t     = nt->cur;
    int                count = 0;
    for (uint32_t r = 0; r < t->region_count && shard < t->shard_count; r++) {
        uint32_t ids[TOPO_RF_MAX];
        uint32_t n = topo_replicas(t, shard, r, ids, TOPO_RF_MAX);
        for (uint32_t i = 0; i < n; i++) {
            const struct topo_node *node = topo_node_by_id(t, ids[i]);
            int w = snprintf(out + len, size - len, "%s%u (%s)",
                count > 0 ? ", " : "", ids[i], node->address);
            if (w < 0 || (size_t) w >= size - len) {
                break;
            }
            len += (size_t) w;
            count++;
        }
    }
    pthread_rwlock_unlock(&nt->lock);
    return count;
}

int
node_topology_peers(struct node_topology *nt, struct node_peer *peers,
    uint32_t max, uint32_t *count_out)
{
    *count_out = 0;
    if (nt == NULL) {
        return MRD_OK;
    }
    pthread_rwlock_rdlock(&nt->lock);
    const struct topo *t  = nt->cur;
    int                rv = MRD_OK;
    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node *n = &t->nodes[i];
        if (n->id == nt->self || n->state == TOPO_NODE_REMOVED) {
            continue;
        }
        if (*count_out == max) {
            rv = MRD_EFULL;
            break;
        }
        /* The URL this node dials: its --peer-address for n, if any. */
        peers[*count_out].id = n->id;
        snprintf(peers[*count_out].url, sizeof peers[0].url, "%s",
            node_peer_url(
                nt->overrides, nt->override_count, n->id, n->address));
        (*count_out)++;
    }
    pthread_rwlock_unlock(&nt->lock);
    return rv;
}

uint64_t
node_topology_with(struct node_topology *nt,
    void (*fn)(const struct topo *t, uint64_t self, void *arg), void *arg)
{
    pthread_rwlock_rdlock(&nt->lock);
    uint64_t version = nt->cur->version;
    fn(nt->cur, nt->self, arg);
    pthread_rwlock_unlock(&nt->lock);
    return version;
}
