/*
 * topo_fuzz.c: libFuzzer target for the signed topology (replication/topo.h):
 * the envelope splitter, the document decoder, signature checks, the
 * successor rules, the builders and placement. Topologies reach a node from
 * disk and from gossip, so every byte here is hostile.
 *
 * The input is read both as a signed envelope and as a bare document.
 * Whatever decodes must behave like a topology topo/ built itself:
 *
 *   - it passes topo_check, and encodes to bytes that decode to the same
 *     topology and encode to the same bytes again;
 *   - placement on it is sane: for a few shards and every region, the
 *     replicas are a prefix of the candidates, at most rf of them, all
 *     distinct ACTIVE nodes of the region, and topo_is_replica agrees;
 *   - against a fixed current topology (below), topo_successor_check never
 *     crashes; when the document names the fixture's admin key, it is
 *     signed again with that key, and then topo_open_signed gives it back
 *     and topo_accept answers exactly what topo_successor_check answered;
 *   - every builder on it either refuses and changes nothing, or makes a
 *     version that topo_successor_check accepts after it.
 * topo_open_signed and topo_accept also run on the raw input, so truncated,
 * forged and bit-flipped envelopes go through the real entry points.
 *
 * Fixture: cluster id 01..10 (16 bytes), admin key from the seed of 32
 * bytes 0xad, node keys from seeds of 32 bytes 0x10 + node id; regions
 * "eu" and "us"; nodes 1..4 ("eu-1", "eu-2", "us-1", "us-2" at
 * tcp://10.0.0.N:7400), node 4 removed; version 1. Seeds
 * (tests/fuzz/corpus/topo_fuzz, written once by a throwaway program from
 * this fixture): the fixture signed (a replay of the current version),
 * later versions signed (node added, node drained, region drained, rf
 * changed, a region added with the longest node name and address, a
 * node removed), a bare document, a document signed by another admin key,
 * and one with a flipped signature byte.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "topo.h"

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            __builtin_trap();                                                  \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ~95 KiB each: off the stack. */
static struct topo fz_current, fz_a, fz_b, fz_c;
static uint8_t     fz_admin_pk[TOPO_KEY_SIZE];
static uint8_t     fz_admin_sk[TOPO_SECRET_KEY_SIZE];
static bool        fz_ready;

static void
fz_key(uint8_t fill, uint8_t pk[TOPO_KEY_SIZE], uint8_t *sk)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    uint8_t sk_local[TOPO_SECRET_KEY_SIZE];
    memset(seed, fill, sizeof(seed));
    crypto_sign_seed_keypair(pk, sk != NULL ? sk : sk_local, seed);
}

static void
fz_setup(void)
{
    static const char *const names[] = { "eu-1", "eu-2", "us-1", "us-2" };
    static const char *const addrs[] = { "tcp://10.0.0.1:7400",
        "tcp://10.0.0.2:7400", "tcp://10.0.0.3:7400", "tcp://10.0.0.4:7400" };
    uint8_t                  cid[TOPO_CLUSTER_ID_SIZE];
    uint8_t                  pk[TOPO_KEY_SIZE];

    CHECK(sodium_init() >= 0);
    for (unsigned i = 0; i < sizeof(cid); i++) {
        cid[i] = (uint8_t) (i + 1);
    }
    fz_key(0xad, fz_admin_pk, fz_admin_sk);
    topo_init(&fz_current, cid, 16, fz_admin_pk);
    CHECK(topo_region_add(&fz_current, "eu", 2, NULL, NULL) == MRD_OK);
    CHECK(topo_region_add(&fz_current, "us", 2, NULL, NULL) == MRD_OK);
    for (uint32_t i = 0; i < 4; i++) {
        fz_key((uint8_t) (0x10 + i + 1), pk, NULL);
        CHECK(topo_node_add(
                  &fz_current, names[i], i / 2, addrs[i], pk, NULL, NULL)
            == MRD_OK);
    }
    CHECK(topo_node_remove(&fz_current, 4, NULL) == MRD_OK);
    fz_current.version = 1;
    fz_ready           = true;
}

/* Encodes t into a fresh buffer; the caller frees it. */
static void
fz_encode(const struct topo *t, struct proto_buf *b)
{
    proto_buf_init(b, TOPO_ENCODED_SIZE_MAX);
    CHECK(topo_encode(t, b) == MRD_OK);
}

static void
fz_round_trip(const struct topo *t)
{
    struct proto_buf a, b;

    CHECK(topo_check(t, NULL) == MRD_OK);
    fz_encode(t, &a);
    CHECK(topo_decode(a.data, a.len, &fz_c, NULL) == MRD_OK);
    fz_encode(&fz_c, &b);
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    proto_buf_fini(&a);
    proto_buf_fini(&b);
}

static void
fz_placement(const struct topo *t, uint32_t salt)
{
    uint32_t cand[TOPO_NODES_MAX], reps[TOPO_NODES_MAX];
    uint32_t shards[3] = { 0, t->shard_count - 1, salt % t->shard_count };

    for (unsigned s = 0; s < 3; s++) {
        for (uint32_t r = 0; r < t->region_count; r++) {
            uint32_t nc
                = topo_candidates(t, shards[s], r, cand, TOPO_NODES_MAX);
            uint32_t nr = topo_replicas(t, shards[s], r, reps, TOPO_NODES_MAX);
            CHECK(nr <= t->regions[r].rf && nr <= nc);
            CHECK(nr == nc || nr == t->regions[r].rf);
            CHECK(memcmp(cand, reps, nr * sizeof(uint32_t)) == 0);
            for (uint32_t i = 0; i < nc; i++) {
                const struct topo_node *n = topo_node_by_id(t, cand[i]);
                CHECK(n != NULL && n->region == r);
                CHECK(n->state == TOPO_NODE_ACTIVE);
                CHECK(topo_is_replica(t, shards[s], cand[i]) == (i < nr));
                for (uint32_t j = 0; j < i; j++) {
                    CHECK(cand[i] != cand[j]);
                }
            }
        }
    }
}

/* One builder on a copy of t: refused and unchanged, or a valid successor
 * one version up. */
static void
fz_builder(const struct topo *t, unsigned which, uint32_t arg)
{
    uint8_t     pk[TOPO_KEY_SIZE];
    const char *why = NULL;
    int         rv;

    memcpy(&fz_b, t, sizeof(fz_b));
    uint32_t id     = t->node_count > 0 ? t->nodes[arg % t->node_count].id : 1;
    uint32_t region = arg % (t->region_count + 1); /* sometimes missing */
    switch (which % 8) {
    case 0:
        fz_key((uint8_t) (0x80 + arg % 64), pk, NULL);
        rv = topo_node_add(
            &fz_b, "fz-new", region, "tcp://fz:1", pk, NULL, &why);
        break;
    case 1:
        rv = topo_node_remove(&fz_b, id, &why);
        break;
    case 2:
        rv = topo_node_drain(&fz_b, id, &why);
        break;
    case 3:
        rv = topo_node_undrain(&fz_b, id, &why);
        break;
    case 4:
        rv = topo_region_drain(&fz_b, region, &why);
        break;
    case 5:
        rv = topo_region_undrain(&fz_b, region, &why);
        break;
    case 6:
        rv = topo_region_set_rf(&fz_b, region, arg % 10, &why);
        break;
    default:
        rv = topo_region_add(&fz_b, "fz-region", 1 + arg % 8, NULL, &why);
        break;
    }
    if (rv != MRD_OK) {
        CHECK(why != NULL);
        CHECK(memcmp(&fz_b, t, sizeof(fz_b)) == 0);
        return;
    }
    CHECK(fz_b.version == t->version + 1);
    CHECK(topo_successor_check(t, &fz_b, NULL) == MRD_OK);
    fz_round_trip(&fz_b);
}

/* t against the fixture; re-signed when it names the fixture's key. */
static void
fz_successor(const struct topo *t)
{
    const char *why_check = NULL, *why_accept = NULL;
    int         want = topo_successor_check(&fz_current, t, &why_check);

    CHECK(want == MRD_OK || why_check != NULL);
    if (memcmp(t->admin_key, fz_admin_pk, TOPO_KEY_SIZE) != 0) {
        return;
    }
    struct proto_buf b;
    proto_buf_init(&b, TOPO_SIGNED_SIZE_MAX);
    CHECK(topo_sign(t, fz_admin_sk, &b, NULL) == MRD_OK);
    CHECK(topo_open_signed(b.data, b.len, &fz_b, NULL) == MRD_OK);
    CHECK(fz_b.version == t->version && fz_b.node_count == t->node_count);
    int got = topo_accept(&fz_current, b.data, b.len, &fz_b, &why_accept);
    CHECK(got == want);
    CHECK(got != MRD_OK || fz_b.version == t->version);
    CHECK(got == MRD_OK || strcmp(why_accept, why_check) == 0);
    proto_buf_fini(&b);
}

/* Everything a decoded topology must survive. */
static void
fz_decoded(const struct topo *t, const uint8_t *data, size_t size)
{
    uint32_t salt = 0;
    for (size_t i = 0; i < size && i < 4; i++) {
        salt = salt << 8 | data[size - 1 - i];
    }
    fz_round_trip(t);
    fz_placement(t, salt);
    fz_successor(t);
    fz_builder(t, salt, salt >> 3);
    fz_builder(t, salt >> 8, salt >> 11);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct topo_envelope env;
    const char          *why;

    if (!fz_ready) {
        fz_setup();
    }
    /* The real entry points, on the raw bytes. */
    why = NULL;
    if (topo_open_signed(data, size, &fz_a, &why) == MRD_OK) {
        fz_decoded(&fz_a, data, size);
    } else {
        CHECK(why != NULL && fz_a.version == 0);
    }
    why = NULL;
    if (topo_accept(&fz_current, data, size, &fz_a, &why) == MRD_OK) {
        CHECK(fz_a.version > fz_current.version);
    } else {
        CHECK(why != NULL && fz_a.version == 0);
    }
    /* The document inside, signed or not, so the decoder sees mutations
     * that a signature check would stop. */
    if (topo_envelope_open(data, size, &env, NULL) == MRD_OK) {
        CHECK(env.signature.len == TOPO_SIG_SIZE);
        if (topo_decode(env.topology.ptr, env.topology.len, &fz_a, NULL)
            == MRD_OK) {
            fz_decoded(&fz_a, data, size);
        }
    }
    /* A bare document. */
    if (topo_decode(data, size, &fz_a, NULL) == MRD_OK) {
        fz_decoded(&fz_a, data, size);
    }
    return 0;
}
