/*
 * topo.c: the signed cluster topology and rendezvous placement.
 *
 * A topology is a whole document, never a delta: a node that missed ten
 * changes applies the latest one and is current, a new node needs one file,
 * and "which version are you on" has one answer. Each document is signed as
 * a whole by the admin key (Ed25519 over a context string and the canonical
 * bytes), and a node moves from its current document to a newer one only
 * through topo_accept(), which verifies the signature with the admin key it
 * already trusts *before* it decodes anything, then checks that the change
 * is one an honest admin makes: nothing older replayed, no node dropped or
 * moved or rekeyed, no tombstone revived, no id reused. A stolen admin key
 * defeats this, of course; a replayed, truncated, bit-flipped or forged
 * document does not.
 *
 * Decoding follows proto/: proto_walk() first (one bounded msgpack value),
 * then the bounded reader field by field, every string length checked
 * before it is copied into the fixed arrays of struct topo, and finally
 * topo_check(), the one place every invariant lives (the encoder asserts it
 * too, so we never write what we would refuse to read).
 *
 * Placement is rendezvous (highest random weight) hashing per region: each
 * shard ranks the region's ACTIVE nodes by a keyed hash of (shard, node id)
 * and takes the first rf. A node's score for a shard never depends on the
 * other nodes, so adding a node moves only the slots it now wins (about
 * 1/(n+1) of them) and removing or draining one moves only the slots it
 * held; consistent hashing needs virtual nodes to get that close and a ring
 * to keep, rendezvous needs neither, and n <= 256 makes its O(n) per lookup
 * cheap.
 */
#include "topo.h"

#include <sodium.h>
#include <string.h>

_Static_assert(TOPO_KEY_SIZE == crypto_sign_PUBLICKEYBYTES, "Ed25519 pk");
_Static_assert(TOPO_SECRET_KEY_SIZE == crypto_sign_SECRETKEYBYTES, "sk");
_Static_assert(TOPO_SIG_SIZE == crypto_sign_BYTES, "Ed25519 signature");
_Static_assert(TOPO_CLUSTER_ID_SIZE == crypto_shorthash_KEYBYTES,
    "the cluster id keys SipHash");
_Static_assert(TOPO_NODES_MAX <= 0xffffu, "node counts fit a map16/array16");
_Static_assert(TOPO_SHARDS_MAX <= UINT32_MAX, "shards are uint32");

/* Signed message = context || document. The context keeps a signature made
 * by the admin key for anything else (later: client roles) from ever
 * passing as a topology, and says which format signed it. */
static const char topo_sign_context[] = "meridian/topology/v1";
#define TOPO_SIGN_CONTEXT_SIZE (sizeof(topo_sign_context) - 1)

/* Keys of the document map, in the order the encoder writes them and the
 * decoder requires (so each key appears once and the format comes first).
 * Never renumbered. */
enum topo_key {
    TOPO_K_FORMAT    = 1, /* uint: TOPO_FORMAT */
    TOPO_K_CLUSTER   = 2, /* bin 16 */
    TOPO_K_VERSION   = 3, /* uint >= 1 */
    TOPO_K_SHARDS    = 4, /* uint 1..TOPO_SHARDS_MAX */
    TOPO_K_ADMIN_KEY = 5, /* bin 32 */
    TOPO_K_NEXT_ID   = 6, /* uint */
    TOPO_K_REGIONS   = 7, /* array of [name str, rf uint, draining bool] */
    TOPO_K_NODES     = 8, /* array of [id, name, region, address, key bin,
                             state] */
    TOPO_K_MAX_ = 8,
};
#define TOPO_REGION_FIELDS 3u
#define TOPO_NODE_FIELDS 6u

/* Missing-key reasons, by key. */
static const char *const topo_key_missing[TOPO_K_MAX_ + 1] = {
    [TOPO_K_FORMAT]    = "topology has no format",
    [TOPO_K_CLUSTER]   = "topology has no cluster id",
    [TOPO_K_VERSION]   = "topology has no version",
    [TOPO_K_SHARDS]    = "topology has no shard count",
    [TOPO_K_ADMIN_KEY] = "topology has no admin key",
    [TOPO_K_NEXT_ID]   = "topology has no next node id",
    [TOPO_K_REGIONS]   = "topology has no regions",
    [TOPO_K_NODES]     = "topology has no nodes",
};

static int
topo_fail(const char **why, const char *reason, int code)
{
    if (why != NULL) {
        *why = reason;
    }
    return code;
}

/* ---------------------------------------------------------- validity -- */

bool
topo_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > TOPO_NAME_SIZE_MAX || name[0] == '-') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}

/* The port after the last ':' of an address: 1..5 digits, 1..65535. */
static bool
topo_port_valid(const char *p, size_t len)
{
    uint32_t port = 0;

    if (len == 0 || len > 5 || p[0] == '0') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return false;
        }
        port = port * 10 + (uint32_t) (p[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

int
topo_address_check(const char *address, size_t len, const char **why)
{
    static const char scheme[]   = "tcp://";
    const size_t      scheme_len = sizeof(scheme) - 1;

    if (len == 0 || len > TOPO_ADDRESS_SIZE_MAX) {
        return topo_fail(
            why, "address is empty or longer than 255 bytes", MRD_EINVAL);
    }
    /* Printable ASCII, no space: an address is shown in tables and logs,
     * and NNG takes nothing else in a URL anyway. */
    for (size_t i = 0; i < len; i++) {
        if (address[i] < 0x21 || address[i] > 0x7e) {
            return topo_fail(why,
                "address holds a space, a control character or non-ASCII",
                MRD_EINVAL);
        }
    }
    if (len < scheme_len || memcmp(address, scheme, scheme_len) != 0) {
        return topo_fail(why, "address does not start with tcp://", MRD_EINVAL);
    }
    size_t colon = len;
    while (colon > scheme_len && address[colon - 1] != ':') {
        colon--;
    }
    if (colon == scheme_len || colon - 1 == scheme_len) {
        return topo_fail(why, "address is not tcp://HOST:PORT", MRD_EINVAL);
    }
    if (!topo_port_valid(address + colon, len - colon)) {
        return topo_fail(
            why, "address port is not a number from 1 to 65535", MRD_EINVAL);
    }
    return MRD_OK;
}

const char *
topo_node_state_name(enum topo_node_state state)
{
    switch (state) {
    case TOPO_NODE_ACTIVE:
        return "active";
    case TOPO_NODE_DRAINING:
        return "draining";
    case TOPO_NODE_REMOVED:
        return "removed";
    }
    return "?";
}

/* A fixed-size string field holds a NUL-terminated valid name. */
static bool
topo_name_field_valid(const char *name)
{
    size_t len = strnlen(name, TOPO_NAME_SIZE_MAX + 1);
    return len <= TOPO_NAME_SIZE_MAX && topo_name_valid(name, len);
}

static int
topo_check_regions(const struct topo *t, const char **why)
{
    if (t->region_count == 0) {
        return topo_fail(why, "topology has no region", MRD_EPROTO);
    }
    if (t->region_count > TOPO_REGIONS_MAX) {
        return topo_fail(why, "topology has more than 16 regions", MRD_EPROTO);
    }
    for (uint32_t i = 0; i < t->region_count; i++) {
        const struct topo_region *r = &t->regions[i];
        if (!topo_name_field_valid(r->name)) {
            return topo_fail(why,
                "a region name is not 1..63 of [a-z0-9-] (no leading '-')",
                MRD_EPROTO);
        }
        if (r->rf < 1 || r->rf > TOPO_RF_MAX) {
            return topo_fail(
                why, "a region's replicas per region is not 1..8", MRD_EPROTO);
        }
        for (uint32_t j = 0; j < i; j++) {
            if (strcmp(t->regions[j].name, r->name) == 0) {
                return topo_fail(
                    why, "two regions have the same name", MRD_EPROTO);
            }
        }
    }
    return MRD_OK;
}

/* One node on its own: id, region, state, name, address. */
static int
topo_check_node(const struct topo *t, uint32_t i, const char **why)
{
    const struct topo_node *n = &t->nodes[i];

    if (n->id == 0 || n->id >= t->next_node_id) {
        return topo_fail(
            why, "a node id is 0 or not below next_node_id", MRD_EPROTO);
    }
    if (i > 0 && n->id <= t->nodes[i - 1].id) {
        return topo_fail(
            why, "nodes are not sorted by id, or an id repeats", MRD_EPROTO);
    }
    if (n->region >= t->region_count) {
        return topo_fail(
            why, "a node's region index is out of range", MRD_EPROTO);
    }
    if (n->state != TOPO_NODE_ACTIVE && n->state != TOPO_NODE_DRAINING
        && n->state != TOPO_NODE_REMOVED) {
        return topo_fail(why,
            "a node's state is not active, draining or "
            "removed",
            MRD_EPROTO);
    }
    if (!topo_name_field_valid(n->name)) {
        return topo_fail(why,
            "a node name is not 1..63 of [a-z0-9-] (no leading '-')",
            MRD_EPROTO);
    }
    size_t alen = strnlen(n->address, TOPO_ADDRESS_SIZE_MAX + 1);
    if (alen > TOPO_ADDRESS_SIZE_MAX
        || topo_address_check(n->address, alen, NULL) != MRD_OK) {
        return topo_fail(
            why, "a node address is not a valid tcp://HOST:PORT", MRD_EPROTO);
    }
    if (memcmp(n->public_key, t->admin_key, TOPO_KEY_SIZE) == 0) {
        return topo_fail(
            why, "a node's public key is the admin key", MRD_EPROTO);
    }
    return MRD_OK;
}

/* Node i against every node before it: what must be distinct. */
static int
topo_check_node_unique(const struct topo *t, uint32_t i, const char **why)
{
    const struct topo_node *n = &t->nodes[i];

    for (uint32_t j = 0; j < i; j++) {
        const struct topo_node *m = &t->nodes[j];
        if (memcmp(m->public_key, n->public_key, TOPO_KEY_SIZE) == 0) {
            return topo_fail(
                why, "two nodes have the same public key", MRD_EPROTO);
        }
        /* A tombstone's name and address may be taken again: a machine
         * rebuilt after its node was removed keeps its host name. */
        if (m->state == TOPO_NODE_REMOVED || n->state == TOPO_NODE_REMOVED) {
            continue;
        }
        if (strcmp(m->name, n->name) == 0) {
            return topo_fail(
                why, "two nodes not removed have the same name", MRD_EPROTO);
        }
        if (strcmp(m->address, n->address) == 0) {
            return topo_fail(
                why, "two nodes not removed have the same address", MRD_EPROTO);
        }
    }
    return MRD_OK;
}

int
topo_check(const struct topo *t, const char **why)
{
    if (t->version == 0) {
        return topo_fail(why, "topology version is 0", MRD_EPROTO);
    }
    if (t->shard_count == 0 || t->shard_count > TOPO_SHARDS_MAX) {
        return topo_fail(
            why, "topology shard count is not 1..4096", MRD_EPROTO);
    }
    /* next_node_id <= TOPO_NODE_ID_MAX + 1 == UINT32_MAX by its type. */
    if (t->next_node_id == 0) {
        return topo_fail(why, "topology next_node_id is 0", MRD_EPROTO);
    }
    if (t->node_count > TOPO_NODES_MAX) {
        return topo_fail(why, "topology has more than 256 nodes", MRD_EPROTO);
    }
    int rv = topo_check_regions(t, why);
    for (uint32_t i = 0; i < t->node_count && rv == MRD_OK; i++) {
        rv = topo_check_node(t, i, why);
        if (rv == MRD_OK) {
            rv = topo_check_node_unique(t, i, why);
        }
    }
    return rv;
}

/* ---------------------------------------------------------- encoding -- */

int
topo_encode(const struct topo *t, struct proto_buf *buf)
{
    MRD_ASSERT(topo_check(t, NULL) == MRD_OK);

    proto_wr_map(buf, TOPO_K_MAX_);
    proto_wr_uint(buf, TOPO_K_FORMAT);
    proto_wr_uint(buf, TOPO_FORMAT);
    proto_wr_uint(buf, TOPO_K_CLUSTER);
    proto_wr_bin(buf, t->cluster_id, TOPO_CLUSTER_ID_SIZE);
    proto_wr_uint(buf, TOPO_K_VERSION);
    proto_wr_uint(buf, t->version);
    proto_wr_uint(buf, TOPO_K_SHARDS);
    proto_wr_uint(buf, t->shard_count);
    proto_wr_uint(buf, TOPO_K_ADMIN_KEY);
    proto_wr_bin(buf, t->admin_key, TOPO_KEY_SIZE);
    proto_wr_uint(buf, TOPO_K_NEXT_ID);
    proto_wr_uint(buf, t->next_node_id);
    proto_wr_uint(buf, TOPO_K_REGIONS);
    proto_wr_array(buf, t->region_count);
    for (uint32_t i = 0; i < t->region_count; i++) {
        const struct topo_region *r = &t->regions[i];
        proto_wr_array(buf, TOPO_REGION_FIELDS);
        proto_wr_str(buf, r->name, strlen(r->name));
        proto_wr_uint(buf, r->rf);
        proto_wr_bool(buf, r->draining);
    }
    proto_wr_uint(buf, TOPO_K_NODES);
    proto_wr_array(buf, t->node_count);
    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node *n = &t->nodes[i];
        proto_wr_array(buf, TOPO_NODE_FIELDS);
        proto_wr_uint(buf, n->id);
        proto_wr_str(buf, n->name, strlen(n->name));
        proto_wr_uint(buf, n->region);
        proto_wr_str(buf, n->address, strlen(n->address));
        proto_wr_bin(buf, n->public_key, TOPO_KEY_SIZE);
        proto_wr_uint(buf, (uint64_t) n->state);
    }
    return proto_buf_status(buf);
}

/* Copies a str into a fixed field of size max + 1, NUL-terminated; the
 * content is topo_check()'s to judge, the length is ours. */
static int
topo_rd_name(struct proto_rd *rd, char *dst, size_t max, const char *too_long,
    const char **why)
{
    struct proto_str s;

    if (proto_rd_str(rd, &s) != MRD_OK) {
        return topo_fail(
            why, "a name or address is not a msgpack str", MRD_EPROTO);
    }
    if (s.len > max) {
        return topo_fail(why, too_long, MRD_EPROTO);
    }
    memcpy(dst, s.ptr, s.len);
    dst[s.len] = '\0';
    if (memchr(dst, '\0', s.len) != NULL) {
        return topo_fail(why, "a name or address holds a NUL", MRD_EPROTO);
    }
    return MRD_OK;
}

static int
topo_rd_u32(struct proto_rd *rd, uint64_t max, uint32_t *out, const char *what,
    const char **why)
{
    uint64_t v;

    if (proto_rd_uint(rd, &v) != MRD_OK || v > max) {
        return topo_fail(why, what, MRD_EPROTO);
    }
    *out = (uint32_t) v;
    return MRD_OK;
}

static int
topo_rd_key(struct proto_rd *rd, uint8_t *dst, size_t size, const char *what,
    const char **why)
{
    struct proto_str s;

    if (proto_rd_bin(rd, &s) != MRD_OK || s.len != size) {
        return topo_fail(why, what, MRD_EPROTO);
    }
    memcpy(dst, s.ptr, size);
    return MRD_OK;
}

static int
topo_decode_regions(struct proto_rd *rd, struct topo *t, const char **why)
{
    uint32_t count, fields;

    if (proto_rd_array(rd, &count) != MRD_OK) {
        return topo_fail(why, "topology regions are not an array", MRD_EPROTO);
    }
    if (count > TOPO_REGIONS_MAX) {
        return topo_fail(why, "topology has more than 16 regions", MRD_EPROTO);
    }
    for (uint32_t i = 0; i < count; i++) {
        struct topo_region *r = &t->regions[i];
        if (proto_rd_array(rd, &fields) != MRD_OK
            || fields != TOPO_REGION_FIELDS) {
            return topo_fail(
                why, "a region is not [name, rf, draining]", MRD_EPROTO);
        }
        int rv = topo_rd_name(rd, r->name, TOPO_NAME_SIZE_MAX,
            "a region name is longer than 63 bytes", why);
        if (rv == MRD_OK) {
            rv = topo_rd_u32(rd, TOPO_RF_MAX, &r->rf,
                "a region's rf is not a uint of at most 8", why);
        }
        if (rv == MRD_OK && proto_rd_bool(rd, &r->draining) != MRD_OK) {
            rv = topo_fail(
                why, "a region's draining flag is not a bool", MRD_EPROTO);
        }
        if (rv != MRD_OK) {
            return rv;
        }
    }
    t->region_count = count;
    return MRD_OK;
}

static int
topo_decode_node(struct proto_rd *rd, struct topo_node *n, const char **why)
{
    uint32_t fields, state;

    if (proto_rd_array(rd, &fields) != MRD_OK || fields != TOPO_NODE_FIELDS) {
        return topo_fail(why,
            "a node is not [id, name, region, address, key, state]",
            MRD_EPROTO);
    }
    int rv = topo_rd_u32(rd, TOPO_NODE_ID_MAX, &n->id,
        "a node id is not a uint32 below 4294967295", why);
    if (rv == MRD_OK) {
        rv = topo_rd_name(rd, n->name, TOPO_NAME_SIZE_MAX,
            "a node name is longer than 63 bytes", why);
    }
    if (rv == MRD_OK) {
        rv = topo_rd_u32(rd, TOPO_REGIONS_MAX, &n->region,
            "a node's region is not a region index", why);
    }
    if (rv == MRD_OK) {
        rv = topo_rd_name(rd, n->address, TOPO_ADDRESS_SIZE_MAX,
            "a node address is longer than 255 bytes", why);
    }
    if (rv == MRD_OK) {
        rv = topo_rd_key(rd, n->public_key, TOPO_KEY_SIZE,
            "a node's public key is not a bin of 32 bytes", why);
    }
    if (rv == MRD_OK) {
        rv = topo_rd_u32(rd, TOPO_NODE_REMOVED, &state,
            "a node's state is not active, draining or removed", why);
    }
    if (rv == MRD_OK) {
        n->state = (enum topo_node_state) state;
    }
    return rv;
}

static int
topo_decode_nodes(struct proto_rd *rd, struct topo *t, const char **why)
{
    uint32_t count;

    if (proto_rd_array(rd, &count) != MRD_OK) {
        return topo_fail(why, "topology nodes are not an array", MRD_EPROTO);
    }
    if (count > TOPO_NODES_MAX) {
        return topo_fail(why, "topology has more than 256 nodes", MRD_EPROTO);
    }
    for (uint32_t i = 0; i < count; i++) {
        int rv = topo_decode_node(rd, &t->nodes[i], why);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    t->node_count = count;
    return MRD_OK;
}

/* One value of the document map, by key. */
static int
topo_decode_field(
    struct proto_rd *rd, uint64_t key, struct topo *t, const char **why)
{
    uint64_t v;

    switch (key) {
    case TOPO_K_FORMAT:
        if (proto_rd_uint(rd, &v) != MRD_OK) {
            return topo_fail(why, "topology format is not a uint", MRD_EPROTO);
        }
        return v == TOPO_FORMAT ? MRD_OK
                                : topo_fail(why,
                                    "topology of an unknown format (newer "
                                    "software wrote it?)",
                                    MRD_EPROTOVERSION);
    case TOPO_K_CLUSTER:
        return topo_rd_key(rd, t->cluster_id, TOPO_CLUSTER_ID_SIZE,
            "topology cluster id is not a bin of 16 bytes", why);
    case TOPO_K_VERSION:
        if (proto_rd_uint(rd, &t->version) != MRD_OK) {
            return topo_fail(why, "topology version is not a uint", MRD_EPROTO);
        }
        return MRD_OK;
    case TOPO_K_SHARDS:
        return topo_rd_u32(rd, TOPO_SHARDS_MAX, &t->shard_count,
            "topology shard count is not a uint of at most 4096", why);
    case TOPO_K_ADMIN_KEY:
        return topo_rd_key(rd, t->admin_key, TOPO_KEY_SIZE,
            "topology admin key is not a bin of 32 bytes", why);
    case TOPO_K_NEXT_ID:
        return topo_rd_u32(rd, UINT32_MAX, &t->next_node_id,
            "topology next_node_id is not a uint32", why);
    case TOPO_K_REGIONS:
        return topo_decode_regions(rd, t, why);
    default:
        MRD_ASSERT(key == TOPO_K_NODES);
        return topo_decode_nodes(rd, t, why);
    }
}

static int
topo_decode_map(struct proto_rd *rd, struct topo *t, const char **why)
{
    uint32_t count;
    uint64_t key, last = 0;

    if (proto_rd_map(rd, &count) != MRD_OK) {
        return topo_fail(why, "topology is not a msgpack map", MRD_EPROTO);
    }
    for (uint32_t i = 0; i < count; i++) {
        if (proto_rd_uint(rd, &key) != MRD_OK) {
            return topo_fail(why, "a topology key is not a uint", MRD_EPROTO);
        }
        /* The format comes first, so a newer document is refused as newer
         * rather than for the keys this code does not know. */
        if (i == 0 && key != TOPO_K_FORMAT) {
            return topo_fail(
                why, "topology does not start with its format", MRD_EPROTO);
        }
        if (key == 0 || key > TOPO_K_MAX_) {
            return topo_fail(why, "unknown key in topology", MRD_EPROTO);
        }
        if (key <= last) {
            return topo_fail(
                why, "topology keys repeat or are out of order", MRD_EPROTO);
        }
        if (key != last + 1) {
            return topo_fail(why, topo_key_missing[last + 1], MRD_EPROTO);
        }
        int rv = topo_decode_field(rd, key, t, why);
        if (rv != MRD_OK) {
            return rv;
        }
        last = key;
    }
    if (last != TOPO_K_MAX_) {
        return topo_fail(why, topo_key_missing[last + 1], MRD_EPROTO);
    }
    return MRD_OK;
}

/* The shape of a document into *out: bounded, every field typed and every
 * string within its array, but no invariant checked (topo_check's job). */
static int
topo_parse(const void *buf, size_t len, struct topo *out, const char **why)
{
    struct proto_rd rd;

    memset(out, 0, sizeof(*out));
    if (len > TOPO_ENCODED_SIZE_MAX) {
        return topo_fail(why, "topology is larger than its limit", MRD_ETOOBIG);
    }
    if (proto_walk(buf, len) != MRD_OK) {
        return topo_fail(
            why, "topology is not one well-formed msgpack value", MRD_EPROTO);
    }
    proto_rd_init(&rd, buf, len);
    int rv = topo_decode_map(&rd, out, why);
    MRD_ASSERT(rv != MRD_OK || proto_rd_done(&rd)); /* walk saw one value */
    return rv;
}

int
topo_decode(const void *buf, size_t len, struct topo *out, const char **why)
{
    int rv = topo_parse(buf, len, out, why);
    if (rv == MRD_OK) {
        rv = topo_check(out, why);
    }
    if (rv != MRD_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rv;
}

/* ----------------------------------------------------------- signing -- */

int
topo_envelope_open(
    const void *buf, size_t len, struct topo_envelope *out, const char **why)
{
    struct proto_rd rd;
    uint32_t        count;
    uint64_t        format;

    memset(out, 0, sizeof(*out));
    if (len > TOPO_SIGNED_SIZE_MAX) {
        return topo_fail(
            why, "signed topology is larger than its limit", MRD_ETOOBIG);
    }
    if (proto_walk(buf, len) != MRD_OK) {
        return topo_fail(why,
            "signed topology is not one well-formed msgpack value", MRD_EPROTO);
    }
    proto_rd_init(&rd, buf, len);
    if (proto_rd_array(&rd, &count) != MRD_OK || count == 0
        || proto_rd_uint(&rd, &format) != MRD_OK) {
        return topo_fail(
            why, "signed topology is not [format, ...]", MRD_EPROTO);
    }
    if (format != TOPO_SIGNED_FORMAT) {
        return topo_fail(why,
            "signed topology of an unknown format (newer software wrote it?)",
            MRD_EPROTOVERSION);
    }
    if (count != 3 || proto_rd_bin(&rd, &out->topology) != MRD_OK
        || proto_rd_bin(&rd, &out->signature) != MRD_OK) {
        memset(out, 0, sizeof(*out));
        return topo_fail(why,
            "signed topology is not [format, topology bin, signature bin]",
            MRD_EPROTO);
    }
    if (out->signature.len != TOPO_SIG_SIZE) {
        memset(out, 0, sizeof(*out));
        return topo_fail(why, "topology signature is not 64 bytes", MRD_EPROTO);
    }
    /* The envelope's own limit leaves a little room past the document's:
     * refuse here, before anything copies the document to verify it. */
    if (out->topology.len > TOPO_ENCODED_SIZE_MAX) {
        memset(out, 0, sizeof(*out));
        return topo_fail(why,
            "the topology inside the envelope is larger "
            "than its limit",
            MRD_ETOOBIG);
    }
    return MRD_OK;
}

/* msg = context || document, in msg (capped at the largest document). */
static int
topo_signed_message(const void *doc, size_t len, struct proto_buf *msg)
{
    proto_buf_init(msg, TOPO_SIGN_CONTEXT_SIZE + TOPO_ENCODED_SIZE_MAX);
    int rv = proto_buf_append(msg, topo_sign_context, TOPO_SIGN_CONTEXT_SIZE);
    if (rv == MRD_OK) {
        rv = proto_buf_append(msg, doc, len);
    }
    return rv;
}

/* MRD_OK when sig is key's signature of context || doc; MRD_ECORRUPT (with
 * `bad` as the reason) when it is not; MRD_ENOMEM. */
static int
topo_verify(const struct topo_envelope *env, const uint8_t key[TOPO_KEY_SIZE],
    const char *bad, const char **why)
{
    struct proto_buf msg;

    MRD_ASSERT(env->signature.len == TOPO_SIG_SIZE);
    int rv = topo_signed_message(env->topology.ptr, env->topology.len, &msg);
    if (rv != MRD_OK) {
        /* The envelope limit keeps the document within the cap. */
        MRD_ASSERT(rv == MRD_ENOMEM);
        rv = topo_fail(why, "out of memory verifying a topology", rv);
    } else if (crypto_sign_verify_detached(
                   (const unsigned char *) env->signature.ptr, msg.data,
                   msg.len, key)
        != 0) {
        rv = topo_fail(why, bad, MRD_ECORRUPT);
    }
    proto_buf_fini(&msg);
    return rv;
}

/* The secret key's public half, derived from its seed (a damaged key file
 * whose halves disagree would sign what nobody can verify). */
static int
topo_secret_check(const struct topo *t,
    const uint8_t secret_key[TOPO_SECRET_KEY_SIZE], const char **why)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    uint8_t pk[TOPO_KEY_SIZE];
    uint8_t sk[TOPO_SECRET_KEY_SIZE];
    int     rv = MRD_OK;

    crypto_sign_ed25519_sk_to_seed(seed, secret_key);
    crypto_sign_seed_keypair(pk, sk, seed);
    if (sodium_memcmp(sk, secret_key, TOPO_SECRET_KEY_SIZE) != 0) {
        rv = topo_fail(why,
            "the secret key is damaged: its public half does not match its "
            "seed",
            MRD_EINVAL);
    } else if (memcmp(pk, t->admin_key, TOPO_KEY_SIZE) != 0) {
        rv = topo_fail(
            why, "the secret key is not this topology's admin key", MRD_EINVAL);
    }
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(sk, sizeof(sk));
    return rv;
}

int
topo_sign(const struct topo *t, const uint8_t secret_key[TOPO_SECRET_KEY_SIZE],
    struct proto_buf *buf, const char **why)
{
    struct proto_buf msg;
    uint8_t          sig[TOPO_SIG_SIZE];
    const char      *bad;

    if (topo_check(t, &bad) != MRD_OK) {
        return topo_fail(why, bad, MRD_EINVAL);
    }
    int rv = topo_secret_check(t, secret_key, why);
    if (rv != MRD_OK) {
        return rv;
    }
    proto_buf_init(&msg, TOPO_SIGN_CONTEXT_SIZE + TOPO_ENCODED_SIZE_MAX);
    rv = proto_buf_append(&msg, topo_sign_context, TOPO_SIGN_CONTEXT_SIZE);
    if (rv == MRD_OK) {
        rv = topo_encode(t, &msg);
    }
    if (rv != MRD_OK) {
        MRD_ASSERT(rv == MRD_ENOMEM); /* TOPO_ENCODED_SIZE_MAX holds any */
        proto_buf_fini(&msg);
        return topo_fail(why, "out of memory signing a topology", rv);
    }
    crypto_sign_detached(sig, NULL, msg.data, msg.len, secret_key);
    proto_wr_array(buf, 3);
    proto_wr_uint(buf, TOPO_SIGNED_FORMAT);
    proto_wr_bin(buf, msg.data + TOPO_SIGN_CONTEXT_SIZE,
        msg.len - TOPO_SIGN_CONTEXT_SIZE);
    proto_wr_bin(buf, sig, sizeof(sig));
    proto_buf_fini(&msg);
    rv = proto_buf_status(buf);
    if (rv != MRD_OK) {
        return topo_fail(
            why, "the signed topology does not fit its buffer", rv);
    }
    return MRD_OK;
}

int
topo_open_signed(
    const void *buf, size_t len, struct topo *out, const char **why)
{
    struct topo_envelope env;

    /* The key is the document's own: this proves the bytes whole and
     * signed by it; trust in the key comes from whoever installed them. It
     * is checked as soon as the key can be read, before the invariants, so
     * a flipped byte reads as what it is: not what the admin signed. */
    int rv = topo_envelope_open(buf, len, &env, why);
    if (rv == MRD_OK) {
        rv = topo_parse(env.topology.ptr, env.topology.len, out, why);
    }
    if (rv == MRD_OK) {
        rv = topo_verify(&env, out->admin_key,
            "topology signature does not verify with its own admin key "
            "(tampered or damaged)",
            why);
    }
    if (rv == MRD_OK) {
        rv = topo_check(out, why);
    }
    if (rv != MRD_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rv;
}

/* --------------------------------------------------------- successors -- */

static int
topo_successor_header(
    const struct topo *cur, const struct topo *next, const char **why)
{
    if (memcmp(cur->cluster_id, next->cluster_id, TOPO_CLUSTER_ID_SIZE) != 0) {
        return topo_fail(
            why, "the new topology is of another cluster", MRD_EINVAL);
    }
    if (cur->shard_count != next->shard_count) {
        return topo_fail(
            why, "the new topology changes the shard count", MRD_EINVAL);
    }
    if (memcmp(cur->admin_key, next->admin_key, TOPO_KEY_SIZE) != 0) {
        return topo_fail(
            why, "the new topology changes the admin key", MRD_EINVAL);
    }
    if (next->version == cur->version) {
        return topo_fail(why,
            "the new topology has the current version (already applied)",
            MRD_EVERSION);
    }
    if (next->version < cur->version) {
        return topo_fail(why,
            "the new topology is older than the current one (a replay?)",
            MRD_EVERSION);
    }
    if (next->next_node_id < cur->next_node_id) {
        return topo_fail(why,
            "the new topology lowers next_node_id (ids would be reused)",
            MRD_EINVAL);
    }
    if (next->region_count < cur->region_count) {
        return topo_fail(why, "the new topology drops a region", MRD_EINVAL);
    }
    for (uint32_t i = 0; i < cur->region_count; i++) {
        if (strcmp(cur->regions[i].name, next->regions[i].name) != 0) {
            return topo_fail(why,
                "the new topology renames or reorders a region", MRD_EINVAL);
        }
    }
    return MRD_OK;
}

/* An old node as the new topology has it. */
static int
topo_successor_node(
    const struct topo_node *old, const struct topo_node *now, const char **why)
{
    if (old->region != now->region) {
        return topo_fail(
            why, "the new topology moves a node to another region", MRD_EINVAL);
    }
    if (memcmp(old->public_key, now->public_key, TOPO_KEY_SIZE) != 0) {
        return topo_fail(
            why, "the new topology changes a node's public key", MRD_EINVAL);
    }
    if (old->state == TOPO_NODE_REMOVED && now->state != TOPO_NODE_REMOVED) {
        return topo_fail(
            why, "the new topology brings a removed node back", MRD_EINVAL);
    }
    return MRD_OK;
}

int
topo_successor_check(
    const struct topo *cur, const struct topo *next, const char **why)
{
    int rv = topo_successor_header(cur, next, why);
    if (rv != MRD_OK) {
        return rv;
    }
    /* Both lists are sorted by id: walk them together. */
    uint32_t j = 0;
    for (uint32_t i = 0; i < cur->node_count; i++) {
        const struct topo_node *old = &cur->nodes[i];
        if (j < next->node_count && next->nodes[j].id < old->id) {
            /* In next, not in cur, and below an id cur already had. */
            return topo_fail(why,
                "the new topology adds a node under an old id", MRD_EINVAL);
        }
        if (j == next->node_count || next->nodes[j].id != old->id) {
            return topo_fail(why,
                "the new topology drops a node (removed nodes stay as "
                "tombstones)",
                MRD_EINVAL);
        }
        rv = topo_successor_node(old, &next->nodes[j++], why);
        if (rv != MRD_OK) {
            return rv;
        }
    }
    for (; j < next->node_count; j++) {
        if (next->nodes[j].id < cur->next_node_id) {
            return topo_fail(why,
                "the new topology adds a node under an old id", MRD_EINVAL);
        }
    }
    return MRD_OK;
}

int
topo_accept(const struct topo *current, const void *buf, size_t len,
    struct topo *out, const char **why)
{
    struct topo_envelope env;

    MRD_ASSERT(current != out);
    MRD_DEBUG_ASSERT(topo_check(current, NULL) == MRD_OK);
    memset(out, 0, sizeof(*out));
    /* Authenticate before decoding: the bytes of the document are only
     * read once the key we already trust has signed them. */
    int rv = topo_envelope_open(buf, len, &env, why);
    if (rv == MRD_OK) {
        rv = topo_verify(&env, current->admin_key,
            "topology signature does not verify with the current admin key "
            "(forged, tampered or damaged)",
            why);
    }
    if (rv == MRD_OK) {
        rv = topo_decode(env.topology.ptr, env.topology.len, out, why);
    }
    if (rv == MRD_OK) {
        rv = topo_successor_check(current, out, why);
    }
    if (rv != MRD_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rv;
}

/* ----------------------------------------------------------- builders -- */

void
topo_init(struct topo *t, const uint8_t cluster_id[TOPO_CLUSTER_ID_SIZE],
    uint32_t shard_count, const uint8_t admin_key[TOPO_KEY_SIZE])
{
    MRD_ASSERT(shard_count >= 1 && shard_count <= TOPO_SHARDS_MAX);
    memset(t, 0, sizeof(*t));
    memcpy(t->cluster_id, cluster_id, TOPO_CLUSTER_ID_SIZE);
    memcpy(t->admin_key, admin_key, TOPO_KEY_SIZE);
    t->version      = 1;
    t->shard_count  = shard_count;
    t->next_node_id = 1;
}

/* Every builder ends here: one more version, still valid. */
static int
topo_bump(struct topo *t)
{
    t->version++;
    MRD_ASSERT(topo_check(t, NULL) == MRD_OK);
    return MRD_OK;
}

static int
topo_version_room(const struct topo *t, const char **why)
{
    if (t->version == UINT64_MAX) {
        return topo_fail(why, "topology version would overflow", MRD_EFULL);
    }
    return MRD_OK;
}

int
topo_region_add(struct topo *t, const char *name, uint32_t rf,
    uint32_t *index_out, const char **why)
{
    uint32_t index;

    MRD_ASSERT(t->region_count == 0 || topo_check(t, NULL) == MRD_OK);
    if (t->region_count == TOPO_REGIONS_MAX) {
        return topo_fail(why, "the topology has 16 regions already", MRD_EFULL);
    }
    if (!topo_name_valid(name, strlen(name))) {
        return topo_fail(why,
            "region name is not 1..63 of [a-z0-9-] (no leading '-')",
            MRD_EINVAL);
    }
    if (topo_region_by_name(t, name, &index) == MRD_OK) {
        return topo_fail(why, "a region has this name already", MRD_EINVAL);
    }
    if (rf < 1 || rf > TOPO_RF_MAX) {
        return topo_fail(why, "replicas per region must be 1..8", MRD_EINVAL);
    }
    int rv = topo_version_room(t, why);
    if (rv != MRD_OK) {
        return rv;
    }
    struct topo_region *r = &t->regions[t->region_count];
    memset(r, 0, sizeof(*r));
    strcpy(r->name, name);
    r->rf = rf;
    if (index_out != NULL) {
        *index_out = t->region_count;
    }
    t->region_count++;
    return topo_bump(t);
}

/* The checks of topo_node_add() on name, address and key against t. */
static int
topo_node_add_check(const struct topo *t, const char *name, const char *address,
    const uint8_t public_key[TOPO_KEY_SIZE], const char **why)
{
    uint8_t x25519[crypto_scalarmult_curve25519_BYTES];

    if (!topo_name_valid(name, strlen(name))) {
        return topo_fail(why,
            "node name is not 1..63 of [a-z0-9-] (no leading '-')", MRD_EINVAL);
    }
    int rv = topo_address_check(address, strlen(address), why);
    if (rv != MRD_OK) {
        return rv;
    }
    /* Secure links use the key as X25519 too: it must convert. */
    if (crypto_sign_ed25519_pk_to_curve25519(x25519, public_key) != 0) {
        return topo_fail(
            why, "public key is not a valid Ed25519 public key", MRD_EINVAL);
    }
    if (memcmp(public_key, t->admin_key, TOPO_KEY_SIZE) == 0) {
        return topo_fail(why,
            "public key is the admin key: a node needs a key of its own",
            MRD_EINVAL);
    }
    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node *n = &t->nodes[i];
        if (memcmp(n->public_key, public_key, TOPO_KEY_SIZE) == 0) {
            return topo_fail(why,
                "a node (maybe removed) has this public key already: make a "
                "new key",
                MRD_EINVAL);
        }
        if (n->state != TOPO_NODE_REMOVED && strcmp(n->name, name) == 0) {
            return topo_fail(why, "a node has this name already", MRD_EINVAL);
        }
        if (n->state != TOPO_NODE_REMOVED && strcmp(n->address, address) == 0) {
            return topo_fail(
                why, "a node has this address already", MRD_EINVAL);
        }
    }
    return MRD_OK;
}

int
topo_node_add(struct topo *t, const char *name, uint32_t region,
    const char *address, const uint8_t public_key[TOPO_KEY_SIZE],
    uint32_t *id_out, const char **why)
{
    MRD_ASSERT(topo_check(t, NULL) == MRD_OK);
    if (t->node_count == TOPO_NODES_MAX) {
        return topo_fail(why,
            "the topology holds 256 nodes, tombstones included", MRD_EFULL);
    }
    if (t->next_node_id > TOPO_NODE_ID_MAX) {
        return topo_fail(why, "node ids are used up", MRD_EFULL);
    }
    if (region >= t->region_count) {
        return topo_fail(why, "no region has this index", MRD_ENOTFOUND);
    }
    int rv = topo_node_add_check(t, name, address, public_key, why);
    if (rv == MRD_OK) {
        rv = topo_version_room(t, why);
    }
    if (rv != MRD_OK) {
        return rv;
    }
    /* Every id is below next_node_id, so the new one sorts last. */
    struct topo_node *n = &t->nodes[t->node_count++];
    memset(n, 0, sizeof(*n));
    n->id     = t->next_node_id++;
    n->region = region;
    n->state  = TOPO_NODE_ACTIVE;
    strcpy(n->name, name);
    strcpy(n->address, address);
    memcpy(n->public_key, public_key, TOPO_KEY_SIZE);
    if (id_out != NULL) {
        *id_out = n->id;
    }
    return topo_bump(t);
}

/* Moves node `id` from one of the states in `from` (a bit per state) to
 * `to`; `wrong` says why when it is in another state. */
static int
topo_node_move(struct topo *t, uint32_t id, uint32_t from,
    enum topo_node_state to, const char *wrong, const char **why)
{
    MRD_ASSERT(topo_check(t, NULL) == MRD_OK);
    const struct topo_node *found = topo_node_by_id(t, id);
    if (found == NULL) {
        return topo_fail(why, "no node has this id", MRD_ENOTFOUND);
    }
    struct topo_node *n = &t->nodes[found - t->nodes];
    if ((from & (1u << n->state)) == 0) {
        return topo_fail(why, wrong, MRD_EINVAL);
    }
    int rv = topo_version_room(t, why);
    if (rv != MRD_OK) {
        return rv;
    }
    n->state = to;
    return topo_bump(t);
}

int
topo_node_remove(struct topo *t, uint32_t id, const char **why)
{
    return topo_node_move(t, id,
        (1u << TOPO_NODE_ACTIVE) | (1u << TOPO_NODE_DRAINING),
        TOPO_NODE_REMOVED, "the node is removed already", why);
}

int
topo_node_drain(struct topo *t, uint32_t id, const char **why)
{
    const struct topo_node *n = topo_node_by_id(t, id);
    return topo_node_move(t, id, 1u << TOPO_NODE_ACTIVE, TOPO_NODE_DRAINING,
        n != NULL && n->state == TOPO_NODE_DRAINING
            ? "the node is draining already"
            : "the node is removed: removed nodes never come back",
        why);
}

int
topo_node_undrain(struct topo *t, uint32_t id, const char **why)
{
    const struct topo_node *n = topo_node_by_id(t, id);
    return topo_node_move(t, id, 1u << TOPO_NODE_DRAINING, TOPO_NODE_ACTIVE,
        n != NULL && n->state == TOPO_NODE_ACTIVE
            ? "the node is not draining"
            : "the node is removed: removed nodes never come back",
        why);
}

static int
topo_region_drain_set(
    struct topo *t, uint32_t region, bool draining, const char **why)
{
    MRD_ASSERT(topo_check(t, NULL) == MRD_OK);
    if (region >= t->region_count) {
        return topo_fail(why, "no region has this index", MRD_ENOTFOUND);
    }
    if (t->regions[region].draining == draining) {
        return topo_fail(why,
            draining ? "the region is draining already"
                     : "the region is not draining",
            MRD_EINVAL);
    }
    int rv = topo_version_room(t, why);
    if (rv != MRD_OK) {
        return rv;
    }
    t->regions[region].draining = draining;
    return topo_bump(t);
}

int
topo_region_drain(struct topo *t, uint32_t region, const char **why)
{
    return topo_region_drain_set(t, region, true, why);
}

int
topo_region_undrain(struct topo *t, uint32_t region, const char **why)
{
    return topo_region_drain_set(t, region, false, why);
}

int
topo_region_set_rf(
    struct topo *t, uint32_t region, uint32_t rf, const char **why)
{
    MRD_ASSERT(topo_check(t, NULL) == MRD_OK);
    if (region >= t->region_count) {
        return topo_fail(why, "no region has this index", MRD_ENOTFOUND);
    }
    if (rf < 1 || rf > TOPO_RF_MAX) {
        return topo_fail(why, "replicas per region must be 1..8", MRD_EINVAL);
    }
    if (rf == t->regions[region].rf) {
        return topo_fail(
            why, "the region has this many replicas already", MRD_EINVAL);
    }
    int rv = topo_version_room(t, why);
    if (rv != MRD_OK) {
        return rv;
    }
    t->regions[region].rf = rf;
    return topo_bump(t);
}

/* ------------------------------------------------------------ lookups -- */

const struct topo_node *
topo_node_by_id(const struct topo *t, uint32_t id)
{
    uint32_t lo = 0, hi = t->node_count;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->nodes[mid].id < id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < t->node_count && t->nodes[lo].id == id ? &t->nodes[lo] : NULL;
}

const struct topo_node *
topo_node_by_name(const struct topo *t, const char *name)
{
    const struct topo_node *tomb = NULL;

    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node *n = &t->nodes[i];
        if (strcmp(n->name, name) != 0) {
            continue;
        }
        if (n->state != TOPO_NODE_REMOVED) {
            return n;
        }
        tomb = n; /* sorted by id: the last one is the newest */
    }
    return tomb;
}

int
topo_region_by_name(const struct topo *t, const char *name, uint32_t *index_out)
{
    for (uint32_t i = 0; i < t->region_count; i++) {
        if (strcmp(t->regions[i].name, name) == 0) {
            *index_out = i;
            return MRD_OK;
        }
    }
    return MRD_ENOTFOUND;
}

/* ---------------------------------------------------------- placement -- */

uint32_t
topo_shard_of(const uint8_t cluster_id[TOPO_CLUSTER_ID_SIZE],
    uint32_t shard_count, const void *stream, size_t len)
{
    uint8_t  h[crypto_shorthash_BYTES];
    uint64_t v;

    MRD_ASSERT(shard_count >= 1);
    crypto_shorthash(h, stream, len, cluster_id);
    /* Host order, as node_store_shard_of has always done; every platform we
     * build on is little-endian, and topo_test's pinned values fail on one
     * that is not before a mixed cluster could disagree. */
    memcpy(&v, h, sizeof(v));
    return (uint32_t) (v % shard_count);
}

/* A node's rendezvous score for a shard: independent of every other node,
 * which is what makes movement minimal. */
static uint64_t
topo_score(const struct topo *t, uint32_t shard, uint32_t id)
{
    uint8_t  msg[8], h[crypto_shorthash_BYTES];
    uint64_t v = 0;

    for (unsigned k = 0; k < 4; k++) {
        msg[k]     = (uint8_t) (shard >> (8 * k));
        msg[4 + k] = (uint8_t) (id >> (8 * k));
    }
    crypto_shorthash(h, msg, sizeof(msg), t->cluster_id);
    for (unsigned k = 0; k < 8; k++) {
        v |= (uint64_t) h[k] << (8 * k);
    }
    return v;
}

struct topo_cand {
    uint64_t score;
    uint32_t id;
};

static bool
topo_cand_before(const struct topo_cand *a, const struct topo_cand *b)
{
    return a->score > b->score || (a->score == b->score && a->id < b->id);
}

uint32_t
topo_candidates(const struct topo *t, uint32_t shard, uint32_t region,
    uint32_t *ids_out, uint32_t ids_max)
{
    struct topo_cand c[TOPO_NODES_MAX];
    uint32_t         n = 0;

    MRD_ASSERT(shard < t->shard_count);
    MRD_ASSERT(region < t->region_count);
    MRD_ASSERT(t->node_count <= TOPO_NODES_MAX);
    for (uint32_t i = 0; i < t->node_count; i++) {
        const struct topo_node *node = &t->nodes[i];
        if (node->region == region && node->state == TOPO_NODE_ACTIVE) {
            c[n].score = topo_score(t, shard, node->id);
            c[n].id    = node->id;
            n++;
        }
    }
    /* Insertion sort: n <= 256 and usually a handful. */
    for (uint32_t i = 1; i < n; i++) {
        struct topo_cand x = c[i];
        uint32_t         j = i;
        while (j > 0 && topo_cand_before(&x, &c[j - 1])) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = x;
    }
    uint32_t out = n < ids_max ? n : ids_max;
    for (uint32_t i = 0; i < out; i++) {
        ids_out[i] = c[i].id;
    }
    return out;
}

uint32_t
topo_replicas(const struct topo *t, uint32_t shard, uint32_t region,
    uint32_t *ids_out, uint32_t ids_max)
{
    MRD_ASSERT(region < t->region_count);
    uint32_t rf = t->regions[region].rf;
    return topo_candidates(
        t, shard, region, ids_out, rf < ids_max ? rf : ids_max);
}

bool
topo_is_replica(const struct topo *t, uint32_t shard, uint32_t node_id)
{
    uint32_t ids[TOPO_RF_MAX];

    MRD_ASSERT(shard < t->shard_count);
    const struct topo_node *n = topo_node_by_id(t, node_id);
    if (n == NULL || n->state != TOPO_NODE_ACTIVE) {
        return false;
    }
    uint32_t count = topo_replicas(t, shard, n->region, ids, TOPO_RF_MAX);
    for (uint32_t i = 0; i < count; i++) {
        if (ids[i] == node_id) {
            return true;
        }
    }
    return false;
}
