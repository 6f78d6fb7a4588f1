/*
 * topo_test.c: the signed cluster topology (replication/topo.h).
 *
 * Encoding round-trips to the byte; every structural defect and every
 * invariant is refused with its own words (malformed documents are written
 * by a raw encoder here, because topo_encode refuses to write them); every
 * prefix of a document is refused; any flipped byte of a signed envelope is
 * refused, and topo_accept refuses a flip inside the document as a bad
 * signature, before decoding; another key's signature, a replay, and every
 * forbidden change (other cluster, shard count, admin key, dropped,
 * moved or rekeyed node, revived tombstone, reused id, lowered
 * next_node_id, dropped or renamed region) are refused with distinct
 * reasons. topo_shard_of equals node_store_shard_of and pinned values.
 * Placement is pinned, balanced over 1024 shards, and moves only what it
 * must when a node is added, removed or drained. Every builder works, makes
 * a document its predecessor accepts, and refuses every bad argument
 * leaving the topology unchanged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "node.h"
#include "topo.h"

/* ------------------------------------------------------------ fixtures -- */

static const uint8_t test_cid[TOPO_CLUSTER_ID_SIZE]
    = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

/* The signature context, spelt out: it is part of the format, so a change
 * to it must break this test. */
#define TEST_SIGN_CONTEXT "meridian/topology/v1"

static uint8_t admin_pk[TOPO_KEY_SIZE], admin_sk[TOPO_SECRET_KEY_SIZE];

/* A deterministic Ed25519 key pair per seed number. */
static void
key_pair(uint32_t n, uint8_t pk[TOPO_KEY_SIZE], uint8_t sk[64])
{
    uint8_t seed[crypto_sign_SEEDBYTES] = { 0 };
    uint8_t sk_local[64];
    memcpy(seed, &n, sizeof(n));
    seed[31] = 0x5a;
    crypto_sign_seed_keypair(pk, sk != NULL ? sk : sk_local, seed);
}

static struct topo *
topo_new(void)
{
    struct topo *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    return t;
}

/* regions r0, r1, ... each with per_region nodes (n1, n2, ... in region
 * order, keys from seeds 100 + id) and rf; version 1. */
static struct topo *
topo_base(uint32_t regions, uint32_t per_region, uint32_t rf)
{
    struct topo *t = topo_new();
    char         name[16], addr[64];
    uint8_t      pk[TOPO_KEY_SIZE];

    topo_init(t, test_cid, 16, admin_pk);
    for (uint32_t r = 0; r < regions; r++) {
        snprintf(name, sizeof(name), "r%u", r);
        assert_int_equal(topo_region_add(t, name, rf, NULL, NULL), MRD_OK);
    }
    for (uint32_t i = 0; i < regions * per_region; i++) {
        uint32_t id;
        snprintf(name, sizeof(name), "n%u", i + 1);
        snprintf(
            addr, sizeof(addr), "tcp://10.0.%u.%u:7400", i / 200, i % 200 + 1);
        key_pair(100 + i + 1, pk, NULL);
        assert_int_equal(
            topo_node_add(t, name, i / per_region, addr, pk, &id, NULL),
            MRD_OK);
        assert_int_equal(id, i + 1);
    }
    t->version = 1;
    assert_int_equal(topo_check(t, NULL), MRD_OK);
    return t;
}

static void
topo_same(const struct topo *a, const struct topo *b)
{
    assert_memory_equal(a->cluster_id, b->cluster_id, TOPO_CLUSTER_ID_SIZE);
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->shard_count, b->shard_count);
    assert_memory_equal(a->admin_key, b->admin_key, TOPO_KEY_SIZE);
    assert_int_equal(a->next_node_id, b->next_node_id);
    assert_int_equal(a->region_count, b->region_count);
    assert_int_equal(a->node_count, b->node_count);
    for (uint32_t i = 0; i < a->region_count; i++) {
        assert_string_equal(a->regions[i].name, b->regions[i].name);
        assert_int_equal(a->regions[i].rf, b->regions[i].rf);
        assert_int_equal(a->regions[i].draining, b->regions[i].draining);
    }
    for (uint32_t i = 0; i < a->node_count; i++) {
        const struct topo_node *x = &a->nodes[i], *y = &b->nodes[i];
        assert_int_equal(x->id, y->id);
        assert_int_equal(x->region, y->region);
        assert_int_equal(x->state, y->state);
        assert_string_equal(x->name, y->name);
        assert_string_equal(x->address, y->address);
        assert_memory_equal(x->public_key, y->public_key, TOPO_KEY_SIZE);
    }
}

static void
encode(const struct topo *t, struct proto_buf *b)
{
    proto_buf_init(b, TOPO_ENCODED_SIZE_MAX);
    assert_int_equal(topo_encode(t, b), MRD_OK);
}

static void
sign(const struct topo *t, struct proto_buf *b)
{
    proto_buf_init(b, TOPO_SIGNED_SIZE_MAX);
    assert_int_equal(topo_sign(t, admin_sk, b, NULL), MRD_OK);
}

/* An envelope around any document bytes, signed by sk over the context. */
static void
sign_raw(const void *doc, size_t len, const uint8_t *sk, struct proto_buf *b)
{
    size_t   ctx = strlen(TEST_SIGN_CONTEXT);
    uint8_t *msg = malloc(ctx + len + 1);
    uint8_t  sig[TOPO_SIG_SIZE];
    assert_non_null(msg);
    memcpy(msg, TEST_SIGN_CONTEXT, ctx);
    memcpy(msg + ctx, doc, len);
    crypto_sign_detached(sig, NULL, msg, ctx + len, sk);
    free(msg);
    proto_buf_init(b, TOPO_SIGNED_SIZE_MAX * 2);
    proto_wr_array(b, 3);
    proto_wr_uint(b, TOPO_SIGNED_FORMAT);
    proto_wr_bin(b, doc, len);
    proto_wr_bin(b, sig, sizeof(sig));
    assert_int_equal(proto_buf_status(b), MRD_OK);
}

/* The first occurrence of the string s in p[0..len), or NULL. */
static uint8_t *
find(uint8_t *p, size_t len, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= len; i++) {
        if (memcmp(p + i, s, n) == 0) {
            return p + i;
        }
    }
    return NULL;
}

static bool
is_zero(const struct topo *t)
{
    static const struct topo zero;
    return memcmp(t, &zero, sizeof(zero)) == 0;
}

/* --------------------------------------------------------- raw encoder -- */

/* Writes what topo_encode would, without its checks, key by key. */
static void
raw_field(struct proto_buf *b, const struct topo *t, uint32_t key)
{
    proto_wr_uint(b, key);
    switch (key) {
    case 1:
        proto_wr_uint(b, TOPO_FORMAT);
        break;
    case 2:
        proto_wr_bin(b, t->cluster_id, TOPO_CLUSTER_ID_SIZE);
        break;
    case 3:
        proto_wr_uint(b, t->version);
        break;
    case 4:
        proto_wr_uint(b, t->shard_count);
        break;
    case 5:
        proto_wr_bin(b, t->admin_key, TOPO_KEY_SIZE);
        break;
    case 6:
        proto_wr_uint(b, t->next_node_id);
        break;
    case 7:
        proto_wr_array(b, t->region_count);
        for (uint32_t i = 0; i < t->region_count; i++) {
            proto_wr_array(b, 3);
            proto_wr_str(b, t->regions[i].name, strlen(t->regions[i].name));
            proto_wr_uint(b, t->regions[i].rf);
            proto_wr_bool(b, t->regions[i].draining);
        }
        break;
    case 8:
        proto_wr_array(b, t->node_count);
        for (uint32_t i = 0; i < t->node_count; i++) {
            const struct topo_node *n = &t->nodes[i];
            proto_wr_array(b, 6);
            proto_wr_uint(b, n->id);
            proto_wr_str(b, n->name, strlen(n->name));
            proto_wr_uint(b, n->region);
            proto_wr_str(b, n->address, strlen(n->address));
            proto_wr_bin(b, n->public_key, TOPO_KEY_SIZE);
            proto_wr_uint(b, (uint64_t) n->state);
        }
        break;
    default:
        proto_wr_nil(b);
        break;
    }
}

/* keys: the keys to write, in order (0 ends the list; 99 writes key 0). */
static void
raw_doc(struct proto_buf *b, const struct topo *t, const uint32_t *keys)
{
    uint32_t n = 0;
    while (keys[n] != 0) {
        n++;
    }
    proto_buf_init(b, TOPO_SIGNED_SIZE_MAX * 4);
    proto_wr_map(b, n);
    for (uint32_t i = 0; i < n; i++) {
        raw_field(b, t, keys[i] == 99 ? 0 : keys[i]);
    }
    assert_int_equal(proto_buf_status(b), MRD_OK);
}

static const uint32_t keys_all[] = { 1, 2, 3, 4, 5, 6, 7, 8, 0 };

/* decode(bytes) is refused with code and a reason containing `words`. */
static void
refused_bytes(const void *p, size_t len, int code, const char *words)
{
    struct topo *out = topo_new();
    const char  *why = NULL;
    int          rv  = topo_decode(p, len, out, &why);
    if (rv != code || why == NULL || strstr(why, words) == NULL) {
        fail_msg("want %s '%s', got %s '%s'", mrd_errname(code), words,
            mrd_errname(rv), why != NULL ? why : "(null)");
    }
    assert_true(is_zero(out));
    free(out);
}

/* t, written raw, is refused by the decoder with these words, and
 * topo_check refuses t too. */
static void
refused(const struct topo *t, const char *words)
{
    struct proto_buf b;
    const char      *why = NULL;

    raw_doc(&b, t, keys_all);
    refused_bytes(b.data, b.len, MRD_EPROTO, words);
    proto_buf_fini(&b);
    assert_int_not_equal(topo_check(t, &why), MRD_OK);
    assert_non_null(why);
}

/* ---------------------------------------------------------- round trip -- */

static void
test_round_trip(void **state)
{
    (void) state;
    struct topo     *t = topo_base(3, 3, 2), *u = topo_new();
    struct proto_buf a, b;

    assert_int_equal(topo_node_drain(t, 2, NULL), MRD_OK);
    assert_int_equal(topo_node_remove(t, 5, NULL), MRD_OK);
    assert_int_equal(topo_region_drain(t, 2, NULL), MRD_OK);
    encode(t, &a);
    assert_int_equal(topo_decode(a.data, a.len, u, NULL), MRD_OK);
    topo_same(t, u);
    encode(u, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    proto_buf_fini(&b);

    /* Signed, opened, the same again. */
    sign(t, &b);
    memset(u, 0x55, sizeof(*u));
    assert_int_equal(topo_open_signed(b.data, b.len, u, NULL), MRD_OK);
    topo_same(t, u);
    struct topo_envelope env;
    assert_int_equal(topo_envelope_open(b.data, b.len, &env, NULL), MRD_OK);
    assert_int_equal(env.topology.len, a.len);
    assert_memory_equal(env.topology.ptr, a.data, a.len);
    assert_int_equal(env.signature.len, TOPO_SIG_SIZE);
    proto_buf_fini(&a);
    proto_buf_fini(&b);
    free(t);
    free(u);
}

/* A topology at every limit encodes within TOPO_ENCODED_SIZE_MAX and signs
 * within TOPO_SIGNED_SIZE_MAX. */
static void
test_limits_fit(void **state)
{
    (void) state;
    struct topo     *t = topo_new(), *u = topo_new();
    struct proto_buf b;
    char             name[TOPO_NAME_SIZE_MAX + 1];
    char             addr[TOPO_ADDRESS_SIZE_MAX + 1];
    uint8_t          pk[TOPO_KEY_SIZE];

    topo_init(t, test_cid, TOPO_SHARDS_MAX, admin_pk);
    for (uint32_t r = 0; r < TOPO_REGIONS_MAX; r++) {
        memset(name, 'a' + (int) r, TOPO_NAME_SIZE_MAX);
        name[TOPO_NAME_SIZE_MAX] = '\0';
        assert_int_equal(
            topo_region_add(t, name, TOPO_RF_MAX, NULL, NULL), MRD_OK);
    }
    for (uint32_t i = 0; i < TOPO_NODES_MAX; i++) {
        snprintf(name, sizeof(name), "%063u", i);
        memset(addr, 'h', sizeof(addr));
        memcpy(addr, "tcp://", 6);
        snprintf(addr + TOPO_ADDRESS_SIZE_MAX - 10, 11, "%04u:65535", i);
        key_pair(1000 + i, pk, NULL);
        assert_int_equal(
            topo_node_add(t, name, i % TOPO_REGIONS_MAX, addr, pk, NULL, NULL),
            MRD_OK);
    }
    /* Large numbers take their widest encodings. */
    t->version                      = UINT64_MAX - 1;
    t->next_node_id                 = UINT32_MAX;
    t->nodes[TOPO_NODES_MAX - 1].id = UINT32_MAX - 1;
    assert_int_equal(topo_check(t, NULL), MRD_OK);
    encode(t, &b);
    assert_true(b.len <= TOPO_ENCODED_SIZE_MAX);
    proto_buf_fini(&b);
    sign(t, &b);
    assert_true(b.len <= TOPO_SIGNED_SIZE_MAX);
    assert_int_equal(topo_open_signed(b.data, b.len, u, NULL), MRD_OK);
    topo_same(t, u);
    proto_buf_fini(&b);

    /* Full: no more node, no more region, no more version. */
    const char *why = NULL;
    key_pair(5000, pk, NULL);
    assert_int_equal(
        topo_node_add(t, "x", 0, "tcp://x:1", pk, NULL, &why), MRD_EFULL);
    assert_non_null(strstr(why, "256 nodes"));
    assert_int_equal(topo_region_add(t, "zz", 1, NULL, &why), MRD_EFULL);
    t->version = UINT64_MAX;
    assert_int_equal(topo_node_drain(t, 1, &why), MRD_EFULL);
    assert_non_null(strstr(why, "overflow"));
    free(t);
    free(u);
}

/* ------------------------------------------------------------ refusals -- */

static void
test_refuse_structure(void **state)
{
    (void) state;
    struct topo     *t = topo_base(2, 2, 1);
    struct proto_buf b;

    /* Missing keys, each with its own words. */
    static const char *missing[]
        = { NULL, "no format", "no cluster id", "no version", "no shard count",
              "no admin key", "no next node id", "no regions", "no nodes" };
    for (uint32_t k = 2; k <= 8; k++) {
        uint32_t keys[9], n = 0;
        for (uint32_t j = 1; j <= 8; j++) {
            if (j != k) {
                keys[n++] = j;
            }
        }
        keys[n] = 0;
        raw_doc(&b, t, keys);
        refused_bytes(b.data, b.len, MRD_EPROTO, missing[k]);
        proto_buf_fini(&b);
    }
    const uint32_t not_first[] = { 2, 1, 3, 4, 5, 6, 7, 8, 0 };
    const uint32_t skip[]      = { 1, 3, 2, 4, 5, 6, 7, 8, 0 };
    const uint32_t back[]      = { 1, 2, 1, 3, 4, 5, 6, 7, 8, 0 };
    const uint32_t twice[]     = { 1, 2, 2, 3, 4, 5, 6, 7, 8, 0 };
    const uint32_t unknown[]   = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 0 };
    const uint32_t zero[]      = { 1, 99, 2, 3, 4, 5, 6, 7, 8, 0 };
    struct {
        const uint32_t *keys;
        const char     *words;
    } cases[] = {
        { not_first, "does not start with its format" },
        { skip, "no cluster id" }, /* a gap is a missing key */
        { back, "out of order" },
        { twice, "repeat" },
        { unknown, "unknown key" },
        { zero, "unknown key" },
    };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(cases); i++) {
        raw_doc(&b, t, cases[i].keys);
        refused_bytes(b.data, b.len, MRD_EPROTO, cases[i].words);
        proto_buf_fini(&b);
    }

    /* Another format: refused as a version, whatever keys follow. */
    proto_buf_init(&b, 64);
    proto_wr_map(&b, 2);
    proto_wr_uint(&b, 1);
    proto_wr_uint(&b, TOPO_FORMAT + 1);
    proto_wr_uint(&b, 42);
    proto_wr_nil(&b);
    refused_bytes(b.data, b.len, MRD_EPROTOVERSION, "unknown format");
    proto_buf_reset(&b);
    proto_wr_map(&b, 1);
    proto_wr_uint(&b, 1);
    proto_wr_uint(&b, TOPO_FORMAT + 1);
    refused_bytes(b.data, b.len, MRD_EPROTOVERSION, "unknown format");
    proto_buf_reset(&b);
    proto_wr_array(&b, 0);
    refused_bytes(b.data, b.len, MRD_EPROTO, "not a msgpack map");
    proto_buf_reset(&b);
    proto_wr_map(&b, 1);
    proto_wr_str(&b, "format", 6);
    proto_wr_uint(&b, 1);
    refused_bytes(b.data, b.len, MRD_EPROTO, "key is not a uint");
    proto_buf_fini(&b);

    /* Trailing bytes, and every prefix of a good document. */
    encode(t, &b);
    assert_int_equal(proto_buf_append(&b, "\xc0", 1), MRD_OK);
    refused_bytes(b.data, b.len, MRD_EPROTO, "well-formed");
    for (size_t len = 0; len < b.len - 1; len++) {
        refused_bytes(b.data, len, MRD_EPROTO, "");
    }
    proto_buf_fini(&b);
    /* Larger than the limit: refused before it is walked. */
    uint8_t *big = calloc(1, TOPO_ENCODED_SIZE_MAX + 1);
    assert_non_null(big);
    refused_bytes(big, TOPO_ENCODED_SIZE_MAX + 1, MRD_ETOOBIG, "limit");
    free(big);
    free(t);
}

/* Writes a document whose keys 1..6 come from t and whose key 7 and 8
 * values the caller writes next. */
static void
raw_head(struct proto_buf *b, const struct topo *t)
{
    proto_buf_init(b, TOPO_SIGNED_SIZE_MAX * 4);
    proto_wr_map(b, 8);
    for (uint32_t k = 1; k <= 6; k++) {
        raw_field(b, t, k);
    }
}

static void
test_refuse_fields(void **state)
{
    (void) state;
    struct topo     *t = topo_base(1, 1, 1);
    struct proto_buf b;
    uint8_t          key[TOPO_KEY_SIZE] = { 0 };

    /* Wrong types and sizes of the fixed fields. */
    struct {
        uint32_t    key;
        int         kind; /* 0 str, 1 bin of 15, 2 bin of 31, 3 huge uint */
        const char *words;
    } cases[] = {
        { 2, 1, "cluster id is not a bin of 16" },
        { 3, 0, "version is not a uint" },
        { 4, 3, "shard count is not a uint of at most 4096" },
        { 5, 2, "admin key is not a bin of 32" },
        { 6, 3, "next_node_id is not a uint32" },
        { 7, 0, "regions are not an array" },
        { 8, 0, "nodes are not an array" },
    };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(cases); i++) {
        proto_buf_init(&b, 4096);
        proto_wr_map(&b, 8);
        for (uint32_t k = 1; k <= 8; k++) {
            if (k != cases[i].key) {
                raw_field(&b, t, k);
                continue;
            }
            proto_wr_uint(&b, k);
            if (cases[i].kind == 0) {
                proto_wr_str(&b, "x", 1);
            } else if (cases[i].kind == 1) {
                proto_wr_bin(&b, key, 15);
            } else if (cases[i].kind == 2) {
                proto_wr_bin(&b, key, 31);
            } else {
                proto_wr_uint(&b, (uint64_t) UINT32_MAX + 1);
            }
        }
        refused_bytes(b.data, b.len, MRD_EPROTO, cases[i].words);
        proto_buf_fini(&b);
    }

    /* Regions: not [name, rf, draining], too many, long name, NUL. */
    raw_head(&b, t);
    proto_wr_uint(&b, 7);
    proto_wr_array(&b, 1);
    proto_wr_array(&b, 2);
    proto_wr_str(&b, "r", 1);
    proto_wr_uint(&b, 1);
    raw_field(&b, t, 8);
    refused_bytes(b.data, b.len, MRD_EPROTO, "not [name, rf, draining]");
    proto_buf_fini(&b);
    raw_head(&b, t);
    proto_wr_uint(&b, 7);
    proto_wr_array(&b, TOPO_REGIONS_MAX + 1);
    for (uint32_t i = 0; i <= TOPO_REGIONS_MAX; i++) {
        char name[8];
        snprintf(name, sizeof(name), "r%u", i);
        proto_wr_array(&b, 3);
        proto_wr_str(&b, name, strlen(name));
        proto_wr_uint(&b, 1);
        proto_wr_bool(&b, false);
    }
    raw_field(&b, t, 8);
    refused_bytes(b.data, b.len, MRD_EPROTO, "more than 16 regions");
    proto_buf_fini(&b);
    char long_name[TOPO_NAME_SIZE_MAX + 2];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    const char  nul_name[]           = "a\0b";
    const char *names[]              = { long_name, nul_name };
    size_t      lens[]  = { strlen(long_name), sizeof(nul_name) - 1 };
    const char *words[] = { "region name is longer than 63", "holds a NUL" };
    for (size_t i = 0; i < 2; i++) {
        raw_head(&b, t);
        proto_wr_uint(&b, 7);
        proto_wr_array(&b, 1);
        proto_wr_array(&b, 3);
        proto_wr_str(&b, names[i], lens[i]);
        proto_wr_uint(&b, 1);
        proto_wr_bool(&b, false);
        raw_field(&b, t, 8);
        refused_bytes(b.data, b.len, MRD_EPROTO, words[i]);
        proto_buf_fini(&b);
    }
    raw_head(&b, t);
    proto_wr_uint(&b, 7);
    proto_wr_array(&b, 1);
    proto_wr_array(&b, 3);
    proto_wr_str(&b, "r", 1);
    proto_wr_uint(&b, 1);
    proto_wr_uint(&b, 0);
    raw_field(&b, t, 8);
    refused_bytes(b.data, b.len, MRD_EPROTO, "draining flag is not a bool");
    proto_buf_fini(&b);
    free(t);
}

/* Nodes whose entries are malformed (not invariants: shapes). */
static void
test_refuse_node_shapes(void **state)
{
    (void) state;
    struct topo     *t = topo_base(1, 1, 1);
    struct proto_buf b;
    uint8_t          pk[TOPO_KEY_SIZE];
    char             long_addr[TOPO_ADDRESS_SIZE_MAX + 2];

    key_pair(7, pk, NULL);
    memset(long_addr, 'a', sizeof(long_addr) - 1);
    long_addr[sizeof(long_addr) - 1] = '\0';
    memcpy(long_addr, "tcp://", 6);
    /* field: which of the 6 to spoil; how. */
    for (uint32_t field = 0; field <= 6; field++) {
        raw_head(&b, t);
        raw_field(&b, t, 7);
        proto_wr_uint(&b, 8);
        proto_wr_array(&b, 1);
        proto_wr_array(&b, field == 6 ? 5 : 6);
        const char *words = "not [id, name, region, address, key, state]";
        if (field == 0) {
            proto_wr_uint(&b, (uint64_t) UINT32_MAX);
            words = "node id is not a uint32";
        } else if (field != 6) {
            proto_wr_uint(&b, 1);
        }
        if (field == 1) {
            proto_wr_uint(&b, 1);
            words = "not a msgpack str";
        } else if (field != 6) {
            proto_wr_str(&b, "n", 1);
        }
        if (field == 2) {
            proto_wr_uint(&b, TOPO_REGIONS_MAX + 1);
            words = "region is not a region index";
        } else if (field != 6) {
            proto_wr_uint(&b, 0);
        }
        if (field == 3) {
            proto_wr_str(&b, long_addr, strlen(long_addr));
            words = "address is longer than 255";
        } else if (field != 6) {
            proto_wr_str(&b, "tcp://h:1", 9);
        }
        if (field == 4) {
            uint8_t wide[TOPO_KEY_SIZE + 1] = { 0 };
            proto_wr_bin(&b, wide, sizeof(wide));
            words = "public key is not a bin of 32";
        } else if (field != 6) {
            proto_wr_bin(&b, pk, 32);
        }
        if (field == 5) {
            proto_wr_uint(&b, 4);
            words = "state is not active, draining or removed";
        } else if (field != 6) {
            proto_wr_uint(&b, 1);
        }
        if (field == 6) {
            proto_wr_uint(&b, 1);
            proto_wr_str(&b, "n", 1);
            proto_wr_uint(&b, 0);
            proto_wr_str(&b, "tcp://h:1", 9);
            proto_wr_bin(&b, pk, 32);
        }
        refused_bytes(b.data, b.len, MRD_EPROTO, words);
        proto_buf_fini(&b);
    }
    /* More nodes than the limit. */
    raw_head(&b, t);
    raw_field(&b, t, 7);
    proto_wr_uint(&b, 8);
    proto_wr_array(&b, TOPO_NODES_MAX + 1);
    for (uint32_t i = 0; i <= TOPO_NODES_MAX; i++) {
        proto_wr_nil(&b);
    }
    refused_bytes(b.data, b.len, MRD_EPROTO, "more than 256 nodes");
    proto_buf_fini(&b);
    free(t);
}

/* Every invariant topo_check holds, broken one at a time. */
static void
test_refuse_invariants(void **state)
{
    (void) state;
    struct topo *base = topo_base(2, 3, 2), *t = topo_new();

#define BROKEN(change, words)                                                  \
    do {                                                                       \
        memcpy(t, base, sizeof(*t));                                           \
        change;                                                                \
        refused(t, words);                                                     \
    } while (0)

    BROKEN(t->version = 0, "version is 0");
    BROKEN(t->shard_count = 0, "shard count is not 1..4096");
    BROKEN(t->shard_count = TOPO_SHARDS_MAX + 1, "shard count is not a uint");
    BROKEN(t->next_node_id = 0, "next_node_id is 0");
    BROKEN(t->region_count = 0, "has no region");
    BROKEN(strcpy(t->regions[1].name, "EU"), "region name is not");
    BROKEN(strcpy(t->regions[1].name, "-eu"), "region name is not");
    BROKEN(strcpy(t->regions[1].name, "e_u"), "region name is not");
    BROKEN(t->regions[1].name[0] = '\0', "region name is not");
    BROKEN(strcpy(t->regions[1].name, "r0"), "two regions have the same name");
    BROKEN(t->regions[0].rf = 0, "replicas per region is not 1..8");
    BROKEN(t->regions[0].rf = TOPO_RF_MAX + 1, "rf is not a uint of at most");
    BROKEN(t->nodes[0].id = 0, "node id is 0 or not below next_node_id");
    BROKEN(t->nodes[5].id = t->next_node_id,
        "node id is 0 or not below next_node_id");
    BROKEN(t->nodes[2].id = 2, "not sorted by id, or an id repeats");
    BROKEN((t->nodes[2].id = 1, t->nodes[1].id = 3), "not sorted by id");
    BROKEN(t->nodes[3].region = 2, "region index is out of range");
    BROKEN(t->nodes[3].state = (enum topo_node_state) 0,
        "state is not active, draining or removed");
    BROKEN(strcpy(t->nodes[3].name, "Node"), "node name is not");
    BROKEN(strcpy(t->nodes[3].name, "n1"),
        "two nodes not removed have the same name");
    BROKEN(strcpy(t->nodes[3].address, t->nodes[0].address),
        "two nodes not removed have the same address");
    BROKEN(
        memcpy(t->nodes[3].public_key, t->nodes[1].public_key, TOPO_KEY_SIZE),
        "two nodes have the same public key");
    BROKEN(
        (memcpy(t->nodes[3].public_key, t->nodes[1].public_key, TOPO_KEY_SIZE),
            t->nodes[1].state = TOPO_NODE_REMOVED),
        "two nodes have the same public key");
    BROKEN(memcpy(t->nodes[4].public_key, t->admin_key, TOPO_KEY_SIZE),
        "public key is the admin key");
    static const char *bad_addr[]
        = { "udp://h:1", "tcp://h", "tcp://:7", "tcp://h:0", "tcp://h:65536",
              "tcp://h:007", "tcp://h:1x", "tcp://h :1", "tcp://h:", "" };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(bad_addr); i++) {
        BROKEN(strcpy(t->nodes[1].address, bad_addr[i]),
            "address is not a valid tcp://HOST:PORT");
    }
#undef BROKEN

    /* A tombstone's name and address may be taken again. */
    memcpy(t, base, sizeof(*t));
    t->nodes[0].state = TOPO_NODE_REMOVED;
    strcpy(t->nodes[3].name, t->nodes[0].name);
    strcpy(t->nodes[3].address, t->nodes[0].address);
    assert_int_equal(topo_check(t, NULL), MRD_OK);
    memcpy(t, base, sizeof(*t)); /* the tombstone after the live node */
    t->nodes[3].state = TOPO_NODE_REMOVED;
    strcpy(t->nodes[3].name, t->nodes[0].name);
    strcpy(t->nodes[3].address, t->nodes[0].address);
    assert_int_equal(topo_check(t, NULL), MRD_OK);
    /* Addresses: what is fine. */
    static const char *good_addr[] = { "tcp://127.0.0.1:7401",
        "tcp://[::1]:65535", "tcp://db-1.example.com:1" };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(good_addr); i++) {
        assert_int_equal(
            topo_address_check(good_addr[i], strlen(good_addr[i]), NULL),
            MRD_OK);
    }
    free(base);
    free(t);
}

/* ----------------------------------------------------------- signatures -- */

static void
test_tamper_every_byte(void **state)
{
    (void) state;
    struct topo     *cur = topo_base(2, 2, 1), *next = topo_new();
    struct topo     *out = topo_new();
    struct proto_buf b;
    uint8_t          pk[TOPO_KEY_SIZE];

    memcpy(next, cur, sizeof(*next));
    key_pair(900, pk, NULL);
    assert_int_equal(
        topo_node_add(next, "new", 1, "tcp://n:1", pk, NULL, NULL), MRD_OK);
    sign(next, &b);
    assert_int_equal(topo_accept(cur, b.data, b.len, out, NULL), MRD_OK);
    struct topo_envelope env;
    assert_int_equal(topo_envelope_open(b.data, b.len, &env, NULL), MRD_OK);
    size_t doc_at = (size_t) ((const uint8_t *) env.topology.ptr - b.data);
    size_t sig_at = (size_t) ((const uint8_t *) env.signature.ptr - b.data);

    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            const char *why = NULL;
            b.data[i] ^= (uint8_t) (1u << bit);
            int rv = topo_open_signed(b.data, b.len, out, &why);
            assert_int_not_equal(rv, MRD_OK);
            assert_non_null(why);
            assert_true(is_zero(out));
            rv = topo_accept(cur, b.data, b.len, out, &why);
            assert_int_not_equal(rv, MRD_OK);
            assert_true(is_zero(out));
            /* Inside the document or the signature: the signature check
             * refuses it, before the document is decoded. */
            bool in_doc = i >= doc_at && i < doc_at + env.topology.len;
            bool in_sig = i >= sig_at && i < sig_at + TOPO_SIG_SIZE;
            if (in_doc || in_sig) {
                assert_int_equal(rv, MRD_ECORRUPT);
                assert_non_null(strstr(why, "current admin key"));
            }
            b.data[i] ^= (uint8_t) (1u << bit);
        }
    }
    /* A flip inside a string keeps the shape: topo_open_signed checks the
     * signature before the invariants and says so. */
    const char *addr = "tcp://n:1";
    uint8_t    *at   = find(b.data, b.len, addr);
    assert_non_null(at);
    at[6]           = ' ';
    const char *why = NULL;
    assert_int_equal(topo_open_signed(b.data, b.len, out, &why), MRD_ECORRUPT);
    assert_non_null(strstr(why, "its own admin key"));
    at[6] = 'n';
    assert_int_equal(topo_open_signed(b.data, b.len, out, NULL), MRD_OK);
    /* Truncated anywhere. */
    for (size_t len = 0; len < b.len; len++) {
        assert_int_not_equal(topo_open_signed(b.data, len, out, NULL), MRD_OK);
        assert_int_not_equal(topo_accept(cur, b.data, len, out, NULL), MRD_OK);
    }
    proto_buf_fini(&b);
    free(cur);
    free(next);
    free(out);
}

static void
test_envelope_shapes(void **state)
{
    (void) state;
    struct topo         *t = topo_base(1, 1, 1), *out = topo_new();
    struct proto_buf     doc, b;
    struct topo_envelope env;
    const char          *why                = NULL;
    uint8_t              sig[TOPO_SIG_SIZE] = { 0 };

    encode(t, &doc);
    proto_buf_init(&b, TOPO_SIGNED_SIZE_MAX * 2);
    /* Another envelope format. */
    proto_wr_array(&b, 4);
    proto_wr_uint(&b, TOPO_SIGNED_FORMAT + 1);
    proto_wr_nil(&b);
    proto_wr_nil(&b);
    proto_wr_nil(&b);
    assert_int_equal(
        topo_envelope_open(b.data, b.len, &env, &why), MRD_EPROTOVERSION);
    assert_non_null(strstr(why, "unknown format"));
    assert_int_equal(
        topo_open_signed(b.data, b.len, out, &why), MRD_EPROTOVERSION);
    /* Not [format, bin, bin]. */
    proto_buf_reset(&b);
    proto_wr_array(&b, 2);
    proto_wr_uint(&b, TOPO_SIGNED_FORMAT);
    proto_wr_bin(&b, doc.data, doc.len);
    assert_int_equal(topo_envelope_open(b.data, b.len, &env, &why), MRD_EPROTO);
    assert_non_null(strstr(why, "[format, topology bin, signature bin]"));
    proto_buf_reset(&b);
    proto_wr_map(&b, 0);
    assert_int_equal(topo_envelope_open(b.data, b.len, &env, &why), MRD_EPROTO);
    assert_non_null(strstr(why, "not [format, ...]"));
    /* A short signature. */
    proto_buf_reset(&b);
    proto_wr_array(&b, 3);
    proto_wr_uint(&b, TOPO_SIGNED_FORMAT);
    proto_wr_bin(&b, doc.data, doc.len);
    proto_wr_bin(&b, sig, TOPO_SIG_SIZE - 1);
    assert_int_equal(topo_envelope_open(b.data, b.len, &env, &why), MRD_EPROTO);
    assert_non_null(strstr(why, "signature is not 64 bytes"));
    /* A document over its limit inside an envelope within its own. */
    proto_buf_reset(&b);
    uint8_t *big = calloc(1, TOPO_ENCODED_SIZE_MAX + 1);
    assert_non_null(big);
    proto_wr_array(&b, 3);
    proto_wr_uint(&b, TOPO_SIGNED_FORMAT);
    proto_wr_bin(&b, big, TOPO_ENCODED_SIZE_MAX + 1);
    proto_wr_bin(&b, sig, TOPO_SIG_SIZE);
    assert_true(b.len <= TOPO_SIGNED_SIZE_MAX);
    assert_int_equal(
        topo_envelope_open(b.data, b.len, &env, &why), MRD_ETOOBIG);
    assert_non_null(strstr(why, "inside the envelope"));
    assert_int_equal(topo_accept(t, b.data, b.len, out, &why), MRD_ETOOBIG);
    free(big);
    /* The whole envelope over its limit. */
    big = calloc(1, TOPO_SIGNED_SIZE_MAX + 1);
    assert_non_null(big);
    assert_int_equal(
        topo_envelope_open(big, TOPO_SIGNED_SIZE_MAX + 1, &env, &why),
        MRD_ETOOBIG);
    free(big);
    /* A signature of zeros. */
    proto_buf_reset(&b);
    proto_wr_array(&b, 3);
    proto_wr_uint(&b, TOPO_SIGNED_FORMAT);
    proto_wr_bin(&b, doc.data, doc.len);
    proto_wr_bin(&b, sig, TOPO_SIG_SIZE);
    assert_int_equal(topo_open_signed(b.data, b.len, out, &why), MRD_ECORRUPT);
    assert_non_null(strstr(why, "its own admin key"));
    proto_buf_fini(&b);
    /* Signed without the context: refused. */
    uint8_t raw_sig[TOPO_SIG_SIZE];
    crypto_sign_detached(raw_sig, NULL, doc.data, doc.len, admin_sk);
    proto_buf_init(&b, TOPO_SIGNED_SIZE_MAX);
    proto_wr_array(&b, 3);
    proto_wr_uint(&b, TOPO_SIGNED_FORMAT);
    proto_wr_bin(&b, doc.data, doc.len);
    proto_wr_bin(&b, raw_sig, TOPO_SIG_SIZE);
    assert_int_equal(topo_open_signed(b.data, b.len, out, &why), MRD_ECORRUPT);
    proto_buf_fini(&b);
    /* With the context (spelt out here): accepted. */
    sign_raw(doc.data, doc.len, admin_sk, &b);
    assert_int_equal(topo_open_signed(b.data, b.len, out, &why), MRD_OK);
    proto_buf_fini(&b);
    proto_buf_fini(&doc);
    free(t);
    free(out);
}

static void
test_wrong_keys(void **state)
{
    (void) state;
    struct topo     *cur = topo_base(1, 2, 1), *next = topo_new();
    struct topo     *out = topo_new();
    struct proto_buf b;
    const char      *why = NULL;
    uint8_t          pk[TOPO_KEY_SIZE], sk[TOPO_SECRET_KEY_SIZE];

    /* topo_sign refuses a key that is not the topology's admin key, and a
     * damaged one. */
    key_pair(2, pk, sk);
    proto_buf_init(&b, TOPO_SIGNED_SIZE_MAX);
    assert_int_equal(topo_sign(cur, sk, &b, &why), MRD_EINVAL);
    assert_non_null(strstr(why, "not this topology's admin key"));
    uint8_t damaged[TOPO_SECRET_KEY_SIZE];
    memcpy(damaged, admin_sk, sizeof(damaged));
    damaged[40] ^= 1;
    assert_int_equal(topo_sign(cur, damaged, &b, &why), MRD_EINVAL);
    assert_non_null(strstr(why, "damaged"));
    assert_int_equal(b.len, 0);
    /* An invalid topology is not signed. */
    memcpy(next, cur, sizeof(*next));
    next->version = 0;
    assert_int_equal(topo_sign(next, admin_sk, &b, &why), MRD_EINVAL);
    assert_non_null(strstr(why, "version is 0"));
    proto_buf_fini(&b);

    /* A newer document under another admin key: whole on its own, but not
     * signed by the key the node trusts. */
    memcpy(next, cur, sizeof(*next));
    memcpy(next->admin_key, pk, TOPO_KEY_SIZE);
    next->version = 2;
    proto_buf_init(&b, TOPO_SIGNED_SIZE_MAX);
    assert_int_equal(topo_sign(next, sk, &b, NULL), MRD_OK);
    assert_int_equal(topo_open_signed(b.data, b.len, out, NULL), MRD_OK);
    assert_int_equal(topo_accept(cur, b.data, b.len, out, &why), MRD_ECORRUPT);
    assert_non_null(strstr(why, "current admin key"));
    proto_buf_fini(&b);

    /* The current key signing a document that names another admin key. */
    struct proto_buf doc;
    raw_doc(&doc, next, keys_all);
    sign_raw(doc.data, doc.len, admin_sk, &b);
    assert_int_equal(topo_accept(cur, b.data, b.len, out, &why), MRD_EINVAL);
    assert_non_null(strstr(why, "changes the admin key"));
    /* ...which its own key does not verify. */
    assert_int_equal(topo_open_signed(b.data, b.len, out, &why), MRD_ECORRUPT);
    proto_buf_fini(&b);
    proto_buf_fini(&doc);
    free(cur);
    free(next);
    free(out);
}

/* ----------------------------------------------------------- successors -- */

/* next, signed raw by the admin key, is refused after cur with code and
 * words, both by topo_accept and by topo_successor_check. */
static void
succ_refused(const struct topo *cur, const struct topo *next, int code,
    const char *words)
{
    struct proto_buf doc, b;
    struct topo     *out = topo_new();
    const char      *why = NULL;

    assert_int_equal(topo_check(next, NULL), MRD_OK);
    raw_doc(&doc, next, keys_all);
    sign_raw(doc.data, doc.len, admin_sk, &b);
    int rv = topo_accept(cur, b.data, b.len, out, &why);
    if (rv != code || strstr(why, words) == NULL) {
        fail_msg("want %s '%s', got %s '%s'", mrd_errname(code), words,
            mrd_errname(rv), why != NULL ? why : "(null)");
    }
    assert_true(is_zero(out));
    why = NULL;
    assert_int_equal(topo_successor_check(cur, next, &why), code);
    assert_non_null(strstr(why, words));
    proto_buf_fini(&b);
    proto_buf_fini(&doc);
    free(out);
}

static void
test_accept_rules(void **state)
{
    (void) state;
    struct topo *cur = topo_base(2, 3, 2), *next = topo_new();
    struct topo *out = topo_new();
    uint8_t      pk[TOPO_KEY_SIZE];

    assert_int_equal(topo_node_remove(cur, 6, NULL), MRD_OK);
    cur->version = 10;
    key_pair(555, pk, NULL);

#define NEXT(change)                                                           \
    do {                                                                       \
        memcpy(next, cur, sizeof(*next));                                      \
        next->version = cur->version + 1;                                      \
        change;                                                                \
    } while (0)

    NEXT((void) 0);
    struct proto_buf b;
    sign(next, &b);
    assert_int_equal(topo_accept(cur, b.data, b.len, out, NULL), MRD_OK);
    topo_same(next, out);
    proto_buf_fini(&b);

    NEXT(next->cluster_id[3] ^= 1);
    succ_refused(cur, next, MRD_EINVAL, "another cluster");
    NEXT(next->shard_count = 32);
    succ_refused(cur, next, MRD_EINVAL, "changes the shard count");
    NEXT(next->version = cur->version);
    succ_refused(cur, next, MRD_EVERSION, "already applied");
    NEXT(next->version = cur->version - 1);
    succ_refused(cur, next, MRD_EVERSION, "older than the current one");
    NEXT(next->version = 1);
    succ_refused(cur, next, MRD_EVERSION, "older than the current one");
    NEXT(next->region_count = 1; next->node_count = 3);
    succ_refused(cur, next, MRD_EINVAL, "drops a region");
    NEXT(strcpy(next->regions[1].name, "zz"));
    succ_refused(cur, next, MRD_EINVAL, "renames or reorders a region");
    NEXT((memmove(&next->nodes[2], &next->nodes[3], sizeof(next->nodes[0]) * 3),
        next->node_count--));
    succ_refused(cur, next, MRD_EINVAL, "drops a node");
    NEXT(next->node_count--); /* the tombstone, last */
    succ_refused(cur, next, MRD_EINVAL, "drops a node");
    NEXT(next->nodes[1].region = 1);
    succ_refused(cur, next, MRD_EINVAL, "moves a node to another region");
    NEXT(memcpy(next->nodes[1].public_key, pk, TOPO_KEY_SIZE));
    succ_refused(cur, next, MRD_EINVAL, "changes a node's public key");
    NEXT(next->nodes[5].state = TOPO_NODE_ACTIVE);
    succ_refused(cur, next, MRD_EINVAL, "brings a removed node back");
    NEXT(next->nodes[5].state = TOPO_NODE_DRAINING);
    succ_refused(cur, next, MRD_EINVAL, "brings a removed node back");
    /* Raising next_node_id alone is fine; lowering it is not. */
    NEXT(next->next_node_id += 5);
    assert_int_equal(topo_successor_check(cur, next, NULL), MRD_OK);
    memcpy(cur, next, sizeof(*cur)); /* next_node_id 12, ids 1..6 */
    NEXT(next->next_node_id = 8);
    succ_refused(cur, next, MRD_EINVAL, "lowers next_node_id");
    /* A new node under an id below next_node_id (never handed out, but
     * reserved), after and between the old ones. */
    NEXT((next->nodes[6] = next->nodes[5], next->nodes[6].id = 9,
        next->nodes[6].state = TOPO_NODE_ACTIVE,
        next->nodes[6].public_key[0] ^= 1, strcpy(next->nodes[6].name, "late"),
        strcpy(next->nodes[6].address, "tcp://late:1"), next->node_count++));
    succ_refused(cur, next, MRD_EINVAL, "adds a node under an old id");
    /* Ids 1..6 with a gap at 3. */
    memmove(&cur->nodes[2], &cur->nodes[3], sizeof(cur->nodes[0]) * 3);
    cur->node_count--;
    assert_int_equal(topo_check(cur, NULL), MRD_OK);
    NEXT((memmove(&next->nodes[3], &next->nodes[2], sizeof(next->nodes[0]) * 3),
        next->nodes[2] = cur->nodes[1], next->nodes[2].id = 3,
        next->nodes[2].public_key[0] ^= 1, strcpy(next->nodes[2].name, "reuse"),
        strcpy(next->nodes[2].address, "tcp://reuse:1"), next->node_count++));
    succ_refused(cur, next, MRD_EINVAL, "adds a node under an old id");
#undef NEXT
    free(cur);
    free(next);
    free(out);
}

/* A replayed older document after a newer one, through real builders. */
static void
test_replay(void **state)
{
    (void) state;
    struct topo     *v1 = topo_base(1, 2, 1), *v2 = topo_new();
    struct topo     *v3 = topo_new(), *out = topo_new();
    struct proto_buf s2, s3;
    const char      *why = NULL;

    memcpy(v2, v1, sizeof(*v2));
    assert_int_equal(topo_node_drain(v2, 1, NULL), MRD_OK);
    memcpy(v3, v2, sizeof(*v3));
    assert_int_equal(topo_node_undrain(v3, 1, NULL), MRD_OK);
    sign(v2, &s2);
    sign(v3, &s3);
    assert_int_equal(topo_accept(v1, s2.data, s2.len, out, NULL), MRD_OK);
    assert_int_equal(topo_accept(v2, s3.data, s3.len, out, NULL), MRD_OK);
    /* Skipping a version is fine: documents are whole. */
    assert_int_equal(topo_accept(v1, s3.data, s3.len, out, NULL), MRD_OK);
    assert_int_equal(topo_accept(v3, s2.data, s2.len, out, &why), MRD_EVERSION);
    assert_non_null(strstr(why, "older"));
    assert_int_equal(topo_accept(v3, s3.data, s3.len, out, &why), MRD_EVERSION);
    assert_non_null(strstr(why, "already applied"));
    proto_buf_fini(&s2);
    proto_buf_fini(&s3);
    free(v1);
    free(v2);
    free(v3);
    free(out);
}

/* ------------------------------------------------------------ shard_of -- */

static void
test_shard_of_pinned(void **state)
{
    (void) state;
    static const struct {
        const char *stream;
        uint32_t    of16, of256, of4096, of7;
    } pins[] = {
        { "order-123", 8, 8, 1800, 4 },
        { "cart-7", 5, 229, 2533, 6 },
        { "", 11, 235, 1515, 1 },
        { "a", 6, 86, 2390, 2 },
        { "stream-with-a-longer-name-0001", 13, 141, 653, 6 },
        { "\xc3\xa9t\xc3\xa9", 3, 51, 307, 6 },
    };
    for (size_t i = 0; i < MRD_ARRAY_SIZE(pins); i++) {
        const char *s = pins[i].stream;
        size_t      n = strlen(s);
        assert_int_equal(topo_shard_of(test_cid, 16, s, n), pins[i].of16);
        assert_int_equal(topo_shard_of(test_cid, 256, s, n), pins[i].of256);
        assert_int_equal(topo_shard_of(test_cid, 4096, s, n), pins[i].of4096);
        assert_int_equal(topo_shard_of(test_cid, 7, s, n), pins[i].of7);
        assert_int_equal(topo_shard_of(test_cid, 1, s, n), 0);
    }
    /* And exactly what the node computes, over many streams and counts. */
    static struct node_store store; /* only the two fields below are used */
    memcpy(store.cluster_id, test_cid, sizeof(store.cluster_id));
    for (uint32_t i = 0; i < 5000; i++) {
        char s[32];
        int  n            = snprintf(s, sizeof(s), "stream-%u", i * 7919u);
        store.shard_count = 1 + i % NODE_SHARDS_MAX;
        assert_int_equal(
            topo_shard_of(test_cid, store.shard_count, s, (size_t) n),
            node_store_shard_of(&store, s, (size_t) n));
    }
}

/* ----------------------------------------------------------- placement -- */

static void
test_placement_pinned(void **state)
{
    (void) state;
    struct topo *t = topo_base(2, 5, 3);
    uint32_t     ids[TOPO_NODES_MAX];

    /* Rendezvous order of region 0 (nodes 1..5) and region 1 (6..10) for
     * a few shards: pinned, since a change would move every shard of every
     * running cluster. */
    static const uint32_t want[][2][5] = {
        { { 5, 3, 1, 4, 2 }, { 7, 10, 8, 6, 9 } },
        { { 5, 4, 3, 1, 2 }, { 6, 9, 8, 7, 10 } },
        { { 2, 5, 4, 1, 3 }, { 6, 9, 8, 10, 7 } },
    };
    static const uint32_t shards[] = { 0, 7, 15 };
    for (size_t s = 0; s < MRD_ARRAY_SIZE(shards); s++) {
        for (uint32_t r = 0; r < 2; r++) {
            assert_int_equal(topo_candidates(t, shards[s], r, ids, 5), 5);
            assert_memory_equal(ids, want[s][r], sizeof(want[s][r]));
            assert_int_equal(
                topo_replicas(t, shards[s], r, ids, TOPO_NODES_MAX), 3);
            assert_memory_equal(ids, want[s][r], 3 * sizeof(uint32_t));
        }
    }
    free(t);
}

/* The per-node shard-slot counts of one region over shards [0, count). */
static void
slots(const struct topo *t, uint32_t region, uint32_t *per_node)
{
    uint32_t ids[TOPO_RF_MAX];
    memset(per_node, 0, sizeof(uint32_t) * (TOPO_NODES_MAX + 1));
    for (uint32_t s = 0; s < t->shard_count; s++) {
        uint32_t n = topo_replicas(t, s, region, ids, TOPO_RF_MAX);
        assert_int_equal(n, t->regions[region].rf);
        for (uint32_t i = 0; i < n; i++) {
            per_node[ids[i]]++;
        }
    }
}

static void
test_placement_basics(void **state)
{
    (void) state;
    struct topo *t = topo_base(3, 4, 2);
    uint32_t     ids[TOPO_NODES_MAX], cand[TOPO_NODES_MAX];

    assert_int_equal(topo_node_drain(t, 2, NULL), MRD_OK);
    assert_int_equal(topo_node_remove(t, 3, NULL), MRD_OK);
    for (uint32_t s = 0; s < t->shard_count; s++) {
        for (uint32_t r = 0; r < 3; r++) {
            uint32_t nc = topo_candidates(t, s, r, cand, TOPO_NODES_MAX);
            uint32_t nr = topo_replicas(t, s, r, ids, TOPO_NODES_MAX);
            assert_int_equal(nc, r == 0 ? 2 : 4);
            assert_int_equal(nr, 2);
            assert_memory_equal(ids, cand, nr * sizeof(uint32_t));
            for (uint32_t i = 0; i < nc; i++) {
                const struct topo_node *n = topo_node_by_id(t, cand[i]);
                assert_non_null(n);
                assert_int_equal(n->region, r);
                assert_int_equal(n->state, TOPO_NODE_ACTIVE);
                for (uint32_t j = 0; j < i; j++) {
                    assert_int_not_equal(cand[i], cand[j]);
                }
                assert_int_equal(topo_is_replica(t, s, cand[i]), i < nr);
            }
            /* ids_max caps both. */
            assert_int_equal(topo_candidates(t, s, r, ids, 1), 1);
            assert_int_equal(ids[0], cand[0]);
            assert_int_equal(topo_replicas(t, s, r, ids, 0), 0);
        }
        assert_false(topo_is_replica(t, s, 2)); /* draining */
        assert_false(topo_is_replica(t, s, 3)); /* removed */
        assert_false(topo_is_replica(t, s, 99)); /* unknown */
    }
    /* rf above the active nodes: every active node holds every shard. */
    assert_int_equal(topo_region_set_rf(t, 0, 5, NULL), MRD_OK);
    for (uint32_t s = 0; s < t->shard_count; s++) {
        assert_int_equal(topo_replicas(t, s, 0, ids, TOPO_NODES_MAX), 2);
        assert_true(topo_is_replica(t, s, 1));
        assert_true(topo_is_replica(t, s, 4));
    }
    /* No active node: nothing placed. */
    assert_int_equal(topo_node_drain(t, 1, NULL), MRD_OK);
    assert_int_equal(topo_node_drain(t, 4, NULL), MRD_OK);
    assert_int_equal(topo_replicas(t, 0, 0, ids, TOPO_NODES_MAX), 0);
    free(t);
}

static void
test_placement_balance(void **state)
{
    (void) state;
    static uint32_t per_node[TOPO_NODES_MAX + 1];
    uint8_t         cid[TOPO_CLUSTER_ID_SIZE];

    /* Several clusters, so the bound is not one lucky key. */
    for (uint32_t c = 0; c < 4; c++) {
        struct topo *t = topo_base(1, 5, 2);
        memset(cid, (int) (c * 37 + 1), sizeof(cid));
        memcpy(t->cluster_id, cid, sizeof(cid));
        t->shard_count = 1024;
        slots(t, 0, per_node);
        /* 2048 slots over 5 nodes: 409.6 each; sd ~ 15.7 (binomial). */
        for (uint32_t id = 1; id <= 5; id++) {
            if (per_node[id] < 350 || per_node[id] > 470) {
                fail_msg("cluster %u: node %u holds %u of 2048 slots", c, id,
                    per_node[id]);
            }
        }
        free(t);
    }
}

/* Adding a node to a region of n moves about 1/(n+1) of the replica slots,
 * every one of them to the new node; nothing else moves. */
static void
test_placement_add_moves_little(void **state)
{
    (void) state;
    struct topo *t = topo_base(2, 4, 2), *u = topo_new();
    uint32_t     a[TOPO_RF_MAX], b[TOPO_RF_MAX];
    uint8_t      pk[TOPO_KEY_SIZE];
    uint32_t     id;

    t->shard_count = 1024;
    memcpy(u, t, sizeof(*u));
    key_pair(777, pk, NULL);
    assert_int_equal(
        topo_node_add(u, "extra", 0, "tcp://extra:1", pk, &id, NULL), MRD_OK);
    uint32_t moved = 0, total = 0;
    for (uint32_t s = 0; s < t->shard_count; s++) {
        uint32_t na = topo_replicas(t, s, 0, a, TOPO_RF_MAX);
        uint32_t nb = topo_replicas(u, s, 0, b, TOPO_RF_MAX);
        assert_int_equal(na, 2);
        assert_int_equal(nb, 2);
        total += na;
        for (uint32_t i = 0; i < nb; i++) {
            bool held = false;
            for (uint32_t j = 0; j < na; j++) {
                held = held || a[j] == b[i];
            }
            if (!held) {
                assert_int_equal(b[i], id); /* only the new node gains */
                moved++;
            }
        }
        /* The other region does not notice. */
        uint32_t oa = topo_replicas(t, s, 1, a, TOPO_RF_MAX);
        uint32_t ob = topo_replicas(u, s, 1, b, TOPO_RF_MAX);
        assert_int_equal(oa, ob);
        assert_memory_equal(a, b, oa * sizeof(uint32_t));
    }
    /* Expected 1/5 of 2048 = 409.6. */
    double frac = (double) moved / total;
    print_message(
        "add: %u of %u slots moved (%.3f, ideal 0.200)\n", moved, total, frac);
    assert_true(frac > 0.15 && frac < 0.25);
    free(t);
    free(u);
}

/* Removing or draining a node moves only the slots it held; undraining
 * restores the placement exactly. */
static void
test_placement_remove_moves_little(void **state)
{
    (void) state;
    struct topo *t = topo_base(1, 6, 3), *u = topo_new(), *d = topo_new();
    uint32_t     a[TOPO_RF_MAX], b[TOPO_RF_MAX], c[TOPO_RF_MAX];

    t->shard_count = 1024;
    memcpy(u, t, sizeof(*u));
    memcpy(d, t, sizeof(*d));
    assert_int_equal(topo_node_remove(u, 4, NULL), MRD_OK);
    assert_int_equal(topo_node_drain(d, 4, NULL), MRD_OK);
    uint32_t held_by_4 = 0;
    for (uint32_t s = 0; s < t->shard_count; s++) {
        uint32_t na = topo_replicas(t, s, 0, a, TOPO_RF_MAX);
        uint32_t nb = topo_replicas(u, s, 0, b, TOPO_RF_MAX);
        assert_int_equal(topo_replicas(d, s, 0, c, TOPO_RF_MAX), nb);
        assert_memory_equal(b, c, nb * sizeof(uint32_t));
        assert_int_equal(na, 3);
        assert_int_equal(nb, 3);
        bool had = a[0] == 4 || a[1] == 4 || a[2] == 4;
        if (!had) {
            assert_memory_equal(a, b, sizeof(a[0]) * 3); /* same order */
            continue;
        }
        held_by_4++;
        /* Lost 4, kept the other two in order, gained one. */
        uint32_t k = 0;
        for (uint32_t i = 0; i < na; i++) {
            if (a[i] != 4) {
                assert_int_equal(b[k++], a[i]);
            }
        }
        assert_int_equal(k, 2);
        assert_int_not_equal(b[2], 4);
    }
    assert_true(held_by_4 > 400 && held_by_4 < 620); /* ~ 1024 / 2 */
    assert_int_equal(topo_node_undrain(d, 4, NULL), MRD_OK);
    for (uint32_t s = 0; s < t->shard_count; s++) {
        assert_int_equal(topo_replicas(t, s, 0, a, TOPO_RF_MAX), 3);
        assert_int_equal(topo_replicas(d, s, 0, c, TOPO_RF_MAX), 3);
        assert_memory_equal(a, c, sizeof(a[0]) * 3);
    }
    /* A draining region keeps its placement (it keeps replicating). */
    assert_int_equal(topo_region_drain(d, 0, NULL), MRD_OK);
    for (uint32_t s = 0; s < t->shard_count; s++) {
        assert_int_equal(topo_replicas(d, s, 0, c, TOPO_RF_MAX), 3);
        assert_int_equal(topo_replicas(t, s, 0, a, TOPO_RF_MAX), 3);
        assert_memory_equal(a, c, sizeof(a[0]) * 3);
    }
    free(t);
    free(u);
    free(d);
}

/* ------------------------------------------------------------ builders -- */

/* Builder output is accepted after its input, signed. */
static void
accepted_after(const struct topo *before, const struct topo *after)
{
    struct proto_buf b;
    struct topo     *out = topo_new();
    const char      *why = NULL;

    assert_int_equal(after->version, before->version + 1);
    sign(after, &b);
    int rv = topo_accept(before, b.data, b.len, out, &why);
    if (rv != MRD_OK) {
        fail_msg("builder output refused: %s", why);
    }
    topo_same(after, out);
    proto_buf_fini(&b);
    free(out);
}

/* A builder call that must fail with code and words, changing nothing. */
#define REFUSE(t, call, code, words)                                           \
    do {                                                                       \
        struct topo *copy_ = topo_new();                                       \
        const char  *why_  = NULL;                                             \
        memcpy(copy_, (t), sizeof(*copy_));                                    \
        int rv_ = (call);                                                      \
        if (rv_ != (code) || why_ == NULL || strstr(why_, words) == NULL) {    \
            fail_msg("%s: want %s '%s', got %s '%s'", #call,                   \
                mrd_errname(code), words, mrd_errname(rv_),                    \
                why_ != NULL ? why_ : "(null)");                               \
        }                                                                      \
        assert_memory_equal(copy_, (t), sizeof(*copy_));                       \
        free(copy_);                                                           \
    } while (0)

static void
test_builder_node_add(void **state)
{
    (void) state;
    struct topo *t = topo_base(2, 2, 1), *before = topo_new();
    uint8_t      pk[TOPO_KEY_SIZE], bad[TOPO_KEY_SIZE];
    uint32_t     id = 0;

    key_pair(42, pk, NULL);
    memcpy(before, t, sizeof(*before));
    assert_int_equal(
        topo_node_add(t, "n5", 1, "tcp://h5:7400", pk, &id, NULL), MRD_OK);
    assert_int_equal(id, 5);
    assert_int_equal(t->next_node_id, 6);
    const struct topo_node *n = topo_node_by_id(t, 5);
    assert_non_null(n);
    assert_string_equal(n->name, "n5");
    assert_int_equal(n->region, 1);
    assert_int_equal(n->state, TOPO_NODE_ACTIVE);
    assert_string_equal(n->address, "tcp://h5:7400");
    assert_memory_equal(n->public_key, pk, TOPO_KEY_SIZE);
    accepted_after(before, t);

    key_pair(43, pk, NULL);
    REFUSE(t, topo_node_add(t, "N6", 0, "tcp://h6:1", pk, NULL, &why_),
        MRD_EINVAL, "node name is not");
    REFUSE(t, topo_node_add(t, "", 0, "tcp://h6:1", pk, NULL, &why_),
        MRD_EINVAL, "node name is not");
    REFUSE(t, topo_node_add(t, "n5", 0, "tcp://h6:1", pk, NULL, &why_),
        MRD_EINVAL, "has this name already");
    REFUSE(t, topo_node_add(t, "n6", 0, "tcp://h5:7400", pk, NULL, &why_),
        MRD_EINVAL, "has this address already");
    REFUSE(t, topo_node_add(t, "n6", 0, "tls://h6:1", pk, NULL, &why_),
        MRD_EINVAL, "does not start with tcp://");
    REFUSE(t, topo_node_add(t, "n6", 2, "tcp://h6:1", pk, NULL, &why_),
        MRD_ENOTFOUND, "no region");
    REFUSE(t,
        topo_node_add(
            t, "n6", 0, "tcp://h6:1", t->nodes[0].public_key, NULL, &why_),
        MRD_EINVAL, "has this public key already");
    REFUSE(t, topo_node_add(t, "n6", 0, "tcp://h6:1", admin_pk, NULL, &why_),
        MRD_EINVAL, "is the admin key");
    memset(bad, 0, sizeof(bad));
    REFUSE(t, topo_node_add(t, "n6", 0, "tcp://h6:1", bad, NULL, &why_),
        MRD_EINVAL, "not a valid Ed25519");
    memset(bad, 0xff, sizeof(bad));
    REFUSE(t, topo_node_add(t, "n6", 0, "tcp://h6:1", bad, NULL, &why_),
        MRD_EINVAL, "not a valid Ed25519");

    /* A removed node's key stays taken; its name and address do not. */
    assert_int_equal(topo_node_remove(t, 5, NULL), MRD_OK);
    key_pair(42, pk, NULL);
    REFUSE(t, topo_node_add(t, "n6", 0, "tcp://h6:1", pk, NULL, &why_),
        MRD_EINVAL, "maybe removed");
    key_pair(44, pk, NULL);
    memcpy(before, t, sizeof(*before));
    assert_int_equal(
        topo_node_add(t, "n5", 1, "tcp://h5:7400", pk, &id, NULL), MRD_OK);
    assert_int_equal(id, 6); /* never 5 again */
    accepted_after(before, t);
    assert_int_equal(topo_node_by_name(t, "n5")->id, 6);
    assert_int_equal(topo_node_remove(t, 6, NULL), MRD_OK);
    assert_int_equal(topo_node_by_name(t, "n5")->id, 6); /* newest tomb */

    /* Ids used up. */
    t->next_node_id = UINT32_MAX;
    key_pair(45, pk, NULL);
    REFUSE(t, topo_node_add(t, "n7", 0, "tcp://h7:1", pk, NULL, &why_),
        MRD_EFULL, "ids are used up");
    free(t);
    free(before);
}

static void
test_builder_states(void **state)
{
    (void) state;
    struct topo *t = topo_base(2, 2, 1), *before = topo_new();

    memcpy(before, t, sizeof(*before));
    assert_int_equal(topo_node_drain(t, 1, NULL), MRD_OK);
    assert_int_equal(topo_node_by_id(t, 1)->state, TOPO_NODE_DRAINING);
    accepted_after(before, t);
    REFUSE(t, topo_node_drain(t, 1, &why_), MRD_EINVAL, "draining already");
    REFUSE(t, topo_node_undrain(t, 2, &why_), MRD_EINVAL, "not draining");
    REFUSE(t, topo_node_drain(t, 9, &why_), MRD_ENOTFOUND, "no node");
    REFUSE(t, topo_node_undrain(t, 0, &why_), MRD_ENOTFOUND, "no node");
    REFUSE(t, topo_node_remove(t, 9, &why_), MRD_ENOTFOUND, "no node");

    memcpy(before, t, sizeof(*before));
    assert_int_equal(topo_node_undrain(t, 1, NULL), MRD_OK);
    assert_int_equal(topo_node_by_id(t, 1)->state, TOPO_NODE_ACTIVE);
    accepted_after(before, t);

    /* Remove from active and from draining. */
    memcpy(before, t, sizeof(*before));
    assert_int_equal(topo_node_remove(t, 1, NULL), MRD_OK);
    accepted_after(before, t);
    assert_int_equal(topo_node_drain(t, 2, NULL), MRD_OK);
    memcpy(before, t, sizeof(*before));
    assert_int_equal(topo_node_remove(t, 2, NULL), MRD_OK);
    assert_int_equal(topo_node_by_id(t, 2)->state, TOPO_NODE_REMOVED);
    accepted_after(before, t);
    REFUSE(t, topo_node_remove(t, 2, &why_), MRD_EINVAL, "removed already");
    REFUSE(t, topo_node_drain(t, 2, &why_), MRD_EINVAL, "never come back");
    REFUSE(t, topo_node_undrain(t, 2, &why_), MRD_EINVAL, "never come back");
    assert_int_equal(t->node_count, 4); /* tombstones stay */
    free(t);
    free(before);
}

static void
test_builder_regions(void **state)
{
    (void) state;
    struct topo *t = topo_base(2, 2, 1), *before = topo_new();
    uint32_t     index;

    memcpy(before, t, sizeof(*before));
    assert_int_equal(topo_region_drain(t, 1, NULL), MRD_OK);
    assert_true(t->regions[1].draining);
    accepted_after(before, t);
    REFUSE(t, topo_region_drain(t, 1, &why_), MRD_EINVAL, "draining already");
    REFUSE(t, topo_region_undrain(t, 0, &why_), MRD_EINVAL, "not draining");
    REFUSE(t, topo_region_drain(t, 2, &why_), MRD_ENOTFOUND, "no region");
    memcpy(before, t, sizeof(*before));
    assert_int_equal(topo_region_undrain(t, 1, NULL), MRD_OK);
    assert_false(t->regions[1].draining);
    accepted_after(before, t);

    memcpy(before, t, sizeof(*before));
    assert_int_equal(topo_region_set_rf(t, 0, 2, NULL), MRD_OK);
    assert_int_equal(t->regions[0].rf, 2);
    accepted_after(before, t);
    REFUSE(t, topo_region_set_rf(t, 0, 2, &why_), MRD_EINVAL,
        "this many replicas already");
    REFUSE(t, topo_region_set_rf(t, 0, 0, &why_), MRD_EINVAL, "1..8");
    REFUSE(t, topo_region_set_rf(t, 0, TOPO_RF_MAX + 1, &why_), MRD_EINVAL,
        "1..8");
    REFUSE(t, topo_region_set_rf(t, 5, 1, &why_), MRD_ENOTFOUND, "no region");

    memcpy(before, t, sizeof(*before));
    assert_int_equal(topo_region_add(t, "ap-south", 3, &index, NULL), MRD_OK);
    assert_int_equal(index, 2);
    assert_int_equal(topo_region_by_name(t, "ap-south", &index), MRD_OK);
    assert_int_equal(index, 2);
    assert_int_equal(topo_region_by_name(t, "nope", &index), MRD_ENOTFOUND);
    accepted_after(before, t);
    REFUSE(t, topo_region_add(t, "r0", 1, NULL, &why_), MRD_EINVAL,
        "has this name already");
    REFUSE(t, topo_region_add(t, "Bad", 1, NULL, &why_), MRD_EINVAL,
        "region name is not");
    REFUSE(t, topo_region_add(t, "ok", 0, NULL, &why_), MRD_EINVAL, "1..8");
    REFUSE(t, topo_region_add(t, "ok", 9, NULL, &why_), MRD_EINVAL, "1..8");
    free(t);
    free(before);
}

static void
test_lookups(void **state)
{
    (void) state;
    struct topo *t = topo_base(3, 2, 1);

    for (uint32_t id = 1; id <= 6; id++) {
        const struct topo_node *n = topo_node_by_id(t, id);
        assert_non_null(n);
        assert_int_equal(n->id, id);
        assert_ptr_equal(topo_node_by_name(t, n->name), n);
    }
    assert_null(topo_node_by_id(t, 0));
    assert_null(topo_node_by_id(t, 7));
    assert_null(topo_node_by_name(t, "n9"));
    assert_string_equal(topo_node_state_name(TOPO_NODE_ACTIVE), "active");
    assert_string_equal(topo_node_state_name(TOPO_NODE_DRAINING), "draining");
    assert_string_equal(topo_node_state_name(TOPO_NODE_REMOVED), "removed");
    assert_true(topo_name_valid("eu-west-1", 9));
    assert_false(topo_name_valid("-x", 2));
    assert_false(topo_name_valid("a.b", 3));
    free(t);
}

static int
setup(void **state)
{
    (void) state;
    if (sodium_init() < 0) {
        return -1;
    }
    key_pair(1, admin_pk, admin_sk);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_limits_fit),
        cmocka_unit_test(test_refuse_structure),
        cmocka_unit_test(test_refuse_fields),
        cmocka_unit_test(test_refuse_node_shapes),
        cmocka_unit_test(test_refuse_invariants),
        cmocka_unit_test(test_tamper_every_byte),
        cmocka_unit_test(test_envelope_shapes),
        cmocka_unit_test(test_wrong_keys),
        cmocka_unit_test(test_accept_rules),
        cmocka_unit_test(test_replay),
        cmocka_unit_test(test_shard_of_pinned),
        cmocka_unit_test(test_placement_pinned),
        cmocka_unit_test(test_placement_basics),
        cmocka_unit_test(test_placement_balance),
        cmocka_unit_test(test_placement_add_moves_little),
        cmocka_unit_test(test_placement_remove_moves_little),
        cmocka_unit_test(test_builder_node_add),
        cmocka_unit_test(test_builder_states),
        cmocka_unit_test(test_builder_regions),
        cmocka_unit_test(test_lookups),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
