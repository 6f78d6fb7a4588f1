/*
 * topo.h: the cluster topology: which nodes exist, where they are, who may
 * change them, and which of them hold each shard.
 *
 * A topology is one whole document with a version: the cluster id, the shard
 * count, the admin's Ed25519 public key, the regions (name, replicas per
 * region, draining) and every node that ever joined (id, name, region,
 * address, Ed25519 public key, ACTIVE / DRAINING / REMOVED). A removed node
 * stays as a tombstone, so its id is never handed out again and the other
 * nodes can freeze its version-vector entry. Every change makes a new
 * version, signed by the admin key as a whole (docs/ARCHITECTURE.md,
 * "Topology"); a node applies a signed document only through topo_accept(),
 * which checks the signature with the admin key it already trusts and that
 * the change is one an honest admin could have made (nothing older, no id
 * reused, no tombstone revived, no key swapped under a node).
 *
 * Placement is rendezvous hashing: within a region, each shard goes to the
 * rf ACTIVE nodes with the highest keyed hash of (cluster id, shard, node
 * id). Adding or removing a node moves only the shard slots that node wins
 * or held; nothing else moves.
 *
 * Sans-I/O: libc, common/, proto/ (bounded reader, capped writer),
 * msgpack-c and libsodium. No clocks, no threads, no files, no sockets.
 *
 * Memory: struct topo is fixed-size (about 95 KiB: every array at its
 * limit), so holding one allocates nothing and copying one is a memcpy.
 * Keep it off small stacks. Encoders append to a caller's proto_buf;
 * signature checks allocate one buffer of at most TOPO_SIGNED_SIZE_MAX
 * bytes for the duration of the call.
 *
 * Thread safety: none inside; every function is reentrant on distinct
 * topologies, and const functions may share one topology freely.
 *
 * Errors: MRD_* codes with a static reason in *why (never NULL on error;
 * `why` may be NULL when no reason is wanted). Each distinct refusal has its
 * own words, so a node can log and count why it refused a document:
 *   MRD_ETOOBIG        the input is larger than its limit
 *   MRD_EPROTOVERSION  a format this code does not know
 *   MRD_EPROTO         malformed bytes or a broken invariant
 *   MRD_ECORRUPT       the signature does not verify: not what the admin
 *                      signed (tampered, or signed by another key)
 *   MRD_EVERSION       a well-signed document that is not newer
 *   MRD_EINVAL         a well-signed newer document whose change breaks a
 *                      rule; or a builder argument that is not valid
 *   MRD_ENOTFOUND      a builder named a node or region that is not there
 *   MRD_EFULL          a builder hit a limit (nodes, regions, ids, version)
 *   MRD_ENOMEM         allocation failed
 * On error every *out is zeroed (version 0, which no valid topology has),
 * so a caller that ignores the code cannot use half-checked data; builders
 * leave the topology unchanged when they refuse.
 */
#ifndef MRD_TOPO_H
#define MRD_TOPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "proto.h"

/* ------------------------------------------------------------- limits -- */

/* The topology document's own format; decoders refuse any other. */
#define TOPO_FORMAT 1u
/* The signed envelope's format. */
#define TOPO_SIGNED_FORMAT 1u
/* Regions: a region is a failure domain (a cloud region). Each costs a
 * puller per shard on every node of every other region, so a handful is
 * the real-world shape; 16 leaves room. */
#define TOPO_REGIONS_MAX 16u
/* Node entries, tombstones included. A removed node keeps its entry forever
 * (ids are never reused), so this bounds every node that ever joined, and
 * so every origin a version vector can hold. */
#define TOPO_NODES_MAX 256u
/* Region and node names: [a-z0-9-], 1..63 bytes, not starting with '-' (so
 * a name on the command line is never taken for an option); 63 is a DNS
 * label, so a name can be a host name too. */
#define TOPO_NAME_SIZE_MAX 63u
/* A node's address as NNG dials it, "tcp://HOST:PORT"; 255 holds any DNS
 * name (253) and a port. tls:// comes with secure links. */
#define TOPO_ADDRESS_SIZE_MAX 255u
/* Replicas of a shard per region. Each replica pulls every shard it holds
 * from every other region, so rf multiplies cross-region traffic; more than
 * 8 copies in one region buys no availability. */
#define TOPO_RF_MAX 8u
/* Shards: fixed at cluster init. A node serves at most 256 today (one LMDB
 * database each); the topology allows 16 times that so the format need not
 * change when the node grows, and `topology show` still scans every shard's
 * placement in milliseconds (4096 shards x 256 nodes = 1M hashes). */
#define TOPO_SHARDS_MAX 4096u
/* Node ids are uint32, >= 1. next_node_id must fit too, so the last id is
 * one below UINT32_MAX. */
#define TOPO_NODE_ID_MAX (UINT32_MAX - 1u)
#define TOPO_CLUSTER_ID_SIZE 16u
/* Ed25519 (libsodium crypto_sign): public key, secret key (seed and public
 * key), detached signature. Checked against libsodium in topo.c. */
#define TOPO_KEY_SIZE 32u
#define TOPO_SECRET_KEY_SIZE 64u
#define TOPO_SIG_SIZE 64u
/* Encoded size of one region and one node entry at their limits: array
 * header, str/bin headers, fixed ints; 16 and 32 bytes of slack. */
#define TOPO_REGION_ENCODED_MAX (TOPO_NAME_SIZE_MAX + 16u)
#define TOPO_NODE_ENCODED_MAX                                                  \
    (TOPO_NAME_SIZE_MAX + TOPO_ADDRESS_SIZE_MAX + TOPO_KEY_SIZE + 32u)
/* The largest topology document: its fixed fields (map, ids, keys, counts)
 * in 128 bytes, then every region and node at its limit (about 100 KiB). */
#define TOPO_ENCODED_SIZE_MAX                                                  \
    (128u + TOPO_REGIONS_MAX * TOPO_REGION_ENCODED_MAX                         \
        + TOPO_NODES_MAX * TOPO_NODE_ENCODED_MAX)
/* The largest signed envelope: the document plus format, headers and the
 * signature. Gossip frames carrying a topology must allow this much. */
#define TOPO_SIGNED_SIZE_MAX (TOPO_ENCODED_SIZE_MAX + TOPO_SIG_SIZE + 32u)

_Static_assert(TOPO_NODES_MAX <= PROTO_VV_ENTRIES_MAX,
    "every node that ever existed fits one version vector on the wire");
_Static_assert(TOPO_RF_MAX <= TOPO_NODES_MAX, "rf fits the nodes");
_Static_assert(TOPO_SIGNED_SIZE_MAX <= MRD_FRAME_SIZE_MAX,
    "a signed topology fits a frame");

/* -------------------------------------------------------------- types -- */

/* Numbers are in the encoded document: never renumbered. */
enum topo_node_state {
    TOPO_NODE_ACTIVE   = 1, /* holds and is placed shards */
    TOPO_NODE_DRAINING = 2, /* gets no placement; still a cluster member */
    TOPO_NODE_REMOVED  = 3, /* a tombstone, forever */
};

struct topo_region {
    char     name[TOPO_NAME_SIZE_MAX + 1]; /* NUL-terminated */
    uint32_t rf; /* replicas of each shard here: 1..TOPO_RF_MAX */
    /* A draining region takes no client traffic but keeps replicating and
     * keeps its placement, so it can come back without catching up. */
    bool draining;
};

struct topo_node {
    uint32_t             id; /* >= 1, never reused */
    uint32_t             region; /* index into topo.regions */
    enum topo_node_state state;
    char                 name[TOPO_NAME_SIZE_MAX + 1]; /* NUL-terminated */
    char                 address[TOPO_ADDRESS_SIZE_MAX + 1]; /* likewise */
    uint8_t              public_key[TOPO_KEY_SIZE]; /* Ed25519 */
};

/* Invariants (topo_check): version >= 1; 1 <= shard_count <=
 * TOPO_SHARDS_MAX; 1..TOPO_REGIONS_MAX regions with valid, distinct names
 * and rf in 1..TOPO_RF_MAX; nodes sorted by id, strictly; every id in
 * 1..next_node_id - 1; region indexes in range; valid names and addresses;
 * names and addresses distinct among nodes not REMOVED; public keys
 * distinct among all nodes (a key names one node id, ever). */
struct topo {
    uint8_t            cluster_id[TOPO_CLUSTER_ID_SIZE];
    uint64_t           version;
    uint32_t           shard_count;
    uint8_t            admin_key[TOPO_KEY_SIZE]; /* Ed25519 public key */
    uint32_t           next_node_id; /* the id the next added node gets */
    uint32_t           region_count;
    uint32_t           node_count; /* entries, tombstones included */
    struct topo_region regions[TOPO_REGIONS_MAX];
    struct topo_node   nodes[TOPO_NODES_MAX]; /* sorted by id */
};

/* ----------------------------------------------------------- validity -- */

/* MRD_OK when t holds every invariant above, else MRD_EPROTO and why. */
MRD_MUST_USE int topo_check(const struct topo *t, const char **why);
/* True for a valid region or node name (see TOPO_NAME_SIZE_MAX). */
bool topo_name_valid(const char *name, size_t len);
/* MRD_OK for a valid node address ("tcp://HOST:PORT", PORT 1..65535,
 * printable ASCII, at most TOPO_ADDRESS_SIZE_MAX bytes), else MRD_EINVAL
 * and why. */
MRD_MUST_USE int topo_address_check(
    const char *address, size_t len, const char **why);
/* "active", "draining" or "removed" (static; "?" for anything else). */
const char *topo_node_state_name(enum topo_node_state state);

/* ----------------------------------------------------------- encoding -- */

/* Appends the canonical encoding of t (a msgpack map, docs/ARCHITECTURE.md,
 * "Topology", "Encoding") to buf. t must be valid (asserted: we never write a
 * topology we would refuse to read). MRD_OK or buf's sticky error. */
MRD_MUST_USE int topo_encode(const struct topo *t, struct proto_buf *buf);
/* Decodes one topology document (exactly buf[0..len)) into *out and checks
 * every invariant. Does not check any signature. */
MRD_MUST_USE int topo_decode(
    const void *buf, size_t len, struct topo *out, const char **why);

/* ------------------------------------------------------------ signing -- */

/* The signed envelope, split but not verified: views into the input. */
struct topo_envelope {
    struct proto_str topology; /* the signed document's bytes */
    struct proto_str signature; /* TOPO_SIG_SIZE bytes */
};
/* Splits a signed envelope [format, topology bin, signature bin] without
 * checking the signature or decoding the document. For tools and fuzzing:
 * nodes use topo_open_signed() or topo_accept(). */
MRD_MUST_USE int topo_envelope_open(
    const void *buf, size_t len, struct topo_envelope *out, const char **why);

/* Appends the signed envelope of t to buf: Ed25519 over a domain-separation
 * context and the canonical encoding of t. secret_key is libsodium's
 * 64-byte Ed25519 secret key; its public half must be t->admin_key
 * (MRD_EINVAL otherwise: a document signed by any other key could never
 * be opened). t must pass topo_check (MRD_EINVAL and why otherwise).
 * MRD_OK, or buf's sticky error. */
MRD_MUST_USE int topo_sign(const struct topo *t,
    const uint8_t secret_key[TOPO_SECRET_KEY_SIZE], struct proto_buf *buf,
    const char **why);

/* Opens a signed topology that needs no predecessor: the bootstrap file an
 * operator installs, which is trusted because the operator put it there.
 * Decodes it and verifies its signature with the admin key inside it, which
 * proves it whole and signed by that key, not that the key is the right
 * one. Every later document must come through topo_accept(). */
MRD_MUST_USE int topo_open_signed(
    const void *buf, size_t len, struct topo *out, const char **why);

/* Accepts a newer signed topology after `current`: the signature must
 * verify with current's admin key (checked before the document is decoded),
 * and then: same cluster id, shard count and admin key; version strictly
 * greater (MRD_EVERSION otherwise, with words that tell "the same version"
 * from "an older one"); every region of current still there at the same
 * index with the same name; every node of current still there with the
 * same id, region and public key; a REMOVED node still REMOVED; every new
 * id >= current's next_node_id; next_node_id not smaller. current and out
 * may not be the same object. */
MRD_MUST_USE int topo_accept(const struct topo *current, const void *buf,
    size_t len, struct topo *out, const char **why);
/* The rules of topo_accept() after its signature check, on two decoded
 * topologies: MRD_OK, or the code and words topo_accept() would give. */
MRD_MUST_USE int topo_successor_check(
    const struct topo *current, const struct topo *next, const char **why);

/* ----------------------------------------------------------- builders -- */

/* An empty draft: no regions, no nodes, version 1, next_node_id 1. It is
 * not valid (no region) until topo_region_add(). cluster_id and admin_key
 * are copied. shard_count in 1..TOPO_SHARDS_MAX (asserted). The builders
 * below bump the version as they go; a new cluster's first document is
 * version 1 however many steps built it (nobody saw the drafts), so set
 * version = 1 before signing it. */
void topo_init(struct topo *t, const uint8_t cluster_id[TOPO_CLUSTER_ID_SIZE],
    uint32_t shard_count, const uint8_t admin_key[TOPO_KEY_SIZE]);

/* Each builder below makes the next version of t in place: it checks its
 * arguments against t, applies the change, adds 1 to the version, and
 * leaves t valid (asserted). On error t is unchanged. t must be valid,
 * except that topo_region_add() also takes a topo_init() draft. A change
 * that would change nothing (draining a draining node) is MRD_EINVAL: a
 * new version must mean something. */

/* Appends a region (regions are never removed: nodes point at them by
 * index). MRD_EINVAL (bad name or rf, name taken), MRD_EFULL. */
MRD_MUST_USE int topo_region_add(struct topo *t, const char *name, uint32_t rf,
    uint32_t *index_out, const char **why);
/* Adds an ACTIVE node with id next_node_id (then next_node_id + 1).
 * public_key must be a valid Ed25519 point, not used by any node ever;
 * name and address not used by a node that is not REMOVED. MRD_EINVAL,
 * MRD_ENOTFOUND (region index), MRD_EFULL (entries or ids). */
MRD_MUST_USE int topo_node_add(struct topo *t, const char *name,
    uint32_t region, const char *address,
    const uint8_t public_key[TOPO_KEY_SIZE], uint32_t *id_out,
    const char **why);
/* ACTIVE or DRAINING -> REMOVED, forever. */
MRD_MUST_USE int topo_node_remove(
    struct topo *t, uint32_t id, const char **why);
/* ACTIVE -> DRAINING: the node gets no new placement. */
MRD_MUST_USE int topo_node_drain(struct topo *t, uint32_t id, const char **why);
/* DRAINING -> ACTIVE. */
MRD_MUST_USE int topo_node_undrain(
    struct topo *t, uint32_t id, const char **why);
MRD_MUST_USE int topo_region_drain(
    struct topo *t, uint32_t region, const char **why);
MRD_MUST_USE int topo_region_undrain(
    struct topo *t, uint32_t region, const char **why);
/* rf in 1..TOPO_RF_MAX. It may exceed the region's ACTIVE nodes (a region
 * being built up); placement then holds every ACTIVE node. */
MRD_MUST_USE int topo_region_set_rf(
    struct topo *t, uint32_t region, uint32_t rf, const char **why);

/* ------------------------------------------------------------ lookups -- */

/* The node with this id, or NULL. O(log n). */
const struct topo_node *topo_node_by_id(const struct topo *t, uint32_t id);
/* The node not REMOVED with this name; else the newest tombstone with it
 * (a name may be reused after its node was removed); else NULL. */
const struct topo_node *topo_node_by_name(
    const struct topo *t, const char *name);
/* MRD_OK and the region's index, or MRD_ENOTFOUND. */
MRD_MUST_USE int topo_region_by_name(
    const struct topo *t, const char *name, uint32_t *index_out);

/* ---------------------------------------------------------- placement -- */

/* The shard of a stream: SipHash-2-4 (crypto_shorthash) of the stream name
 * keyed by the cluster id, its 8 bytes read as a uint64 in host order (a
 * memcpy), mod shard_count. Exactly node_store_shard_of(); pinned by
 * topo_test so it can never drift. shard_count >= 1 (asserted). */
uint32_t topo_shard_of(const uint8_t cluster_id[TOPO_CLUSTER_ID_SIZE],
    uint32_t shard_count, const void *stream, size_t len);

/* Every ACTIVE node of `region`, in the shard's rendezvous order: highest
 * score first, score = SipHash-2-4 keyed by the cluster id of (shard LE32,
 * node id LE32) read little-endian, ties by lower id. The first rf are the
 * shard's replicas there; the rest are where to fail over to (they do not
 * hold the shard, but can forward). Writes at most ids_max ids and returns
 * how many it wrote. shard < shard_count and region < region_count
 * (asserted: callers check input from the wire). */
uint32_t topo_candidates(const struct topo *t, uint32_t shard, uint32_t region,
    uint32_t *ids_out, uint32_t ids_max);
/* The shard's replicas in `region`: the first min(rf, ACTIVE nodes, ids_max)
 * of topo_candidates(). Returns how many it wrote. */
uint32_t topo_replicas(const struct topo *t, uint32_t shard, uint32_t region,
    uint32_t *ids_out, uint32_t ids_max);
/* True when node_id is one of the shard's replicas in its own region (a
 * DRAINING, REMOVED or unknown node never is). shard < shard_count
 * (asserted). */
bool topo_is_replica(const struct topo *t, uint32_t shard, uint32_t node_id);

#endif /* MRD_TOPO_H */
