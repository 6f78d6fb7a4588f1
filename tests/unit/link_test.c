/*
 * link_test.c: secure links (replication/link.h).
 *
 * The handshake succeeds both ways and both ends get crosswise keys and
 * each other's identity; every way of breaking it is refused with a reason
 * and poisons the state: another cluster, an untrusted identity on either
 * side, a signature by a key other than the one presented, every single-bit
 * flip of every message, every wrong size, a message of another step,
 * small-order ephemerals, a recorded initiator replayed against a fresh
 * responder. Frames: many in both directions; replayed, reordered,
 * dropped, truncated at every length, flipped at every bit, reflected and
 * oversized frames are refused and poison the session; the key ratchets at
 * LINK_REKEY_INTERVAL on both ends; the counter ends at LINK_COUNTER_MAX;
 * wipe zeroes every key.
 *
 * Seeds and keys are deterministic, so a handshake run twice gives the
 * same messages: a flipped message can be tested against a fresh state
 * that expects exactly the original.
 */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "link.h"

/* ------------------------------------------------------------ fixtures -- */

#define TEST_FRAME_MAX 4096u

struct test_id {
    uint8_t pk[LINK_KEY_SIZE];
    uint8_t sk[LINK_SECRET_KEY_SIZE];
};

/* A trust list: the keys a side accepts. */
struct test_trust {
    const uint8_t *keys[4];
    unsigned       count;
    unsigned       calls;
};

static bool
test_trust_fn(void *arg, const uint8_t pk[LINK_KEY_SIZE])
{
    struct test_trust *t = arg;
    t->calls++;
    for (unsigned i = 0; i < t->count; i++) {
        if (memcmp(t->keys[i], pk, LINK_KEY_SIZE) == 0) {
            return true;
        }
    }
    return false;
}

static void
test_id_make(struct test_id *id, uint8_t n)
{
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, n, sizeof(seed));
    crypto_sign_seed_keypair(id->pk, id->sk, seed);
}

static const uint8_t test_cid[LINK_CLUSTER_ID_SIZE]
    = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };

/* One initiator and one responder with their identities, trust lists and
 * deterministic ephemeral seeds. */
struct pair {
    struct test_id      ii, ri;
    struct test_trust   it, rt; /* what the initiator / responder trusts */
    struct link_config  ic, rc;
    uint8_t             iseed[LINK_SEED_SIZE], rseed[LINK_SEED_SIZE];
    struct link_hs      ih, rh;
    uint8_t             m1[LINK_MSG1_SIZE], m2[LINK_MSG2_SIZE];
    uint8_t             m3[LINK_MSG3_SIZE];
    struct link_session is, rs;
};

static void
pair_init(struct pair *p)
{
    memset(p, 0, sizeof(*p));
    test_id_make(&p->ii, 0x11);
    test_id_make(&p->ri, 0x22);
    p->it.keys[0] = p->ri.pk;
    p->it.count   = 1;
    p->rt.keys[0] = p->ii.pk;
    p->rt.count   = 1;
    memcpy(p->ic.cluster_id, test_cid, sizeof(test_cid));
    memcpy(p->rc.cluster_id, test_cid, sizeof(test_cid));
    p->ic.pk        = p->ii.pk;
    p->ic.sk        = p->ii.sk;
    p->ic.trust     = test_trust_fn;
    p->ic.trust_arg = &p->it;
    p->ic.frame_max = TEST_FRAME_MAX;
    p->rc.pk        = p->ri.pk;
    p->rc.sk        = p->ri.sk;
    p->rc.trust     = test_trust_fn;
    p->rc.trust_arg = &p->rt;
    p->rc.frame_max = TEST_FRAME_MAX;
    memset(p->iseed, 0xa1, sizeof(p->iseed));
    memset(p->rseed, 0xb2, sizeof(p->rseed));
}

/* The two states restarted with the same seeds. */
static void
pair_restart(struct pair *p)
{
    uint8_t m1[LINK_MSG1_SIZE];
    link_hs_initiate(&p->ih, &p->ic, p->iseed, m1);
    link_hs_respond(&p->rh, &p->rc, p->rseed);
    memcpy(p->m1, m1, sizeof(m1));
}

/* Runs the whole handshake; asserts it succeeds. */
static void
pair_handshake(struct pair *p)
{
    const char *why = NULL;
    pair_restart(p);
    assert_int_equal(
        MRD_OK, link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), p->m2, &why));
    assert_int_equal(MRD_OK,
        link_hs_recv_msg2(&p->ih, p->m2, sizeof(p->m2), p->m3, &p->is, &why));
    assert_int_equal(
        MRD_OK, link_hs_recv_msg3(&p->rh, p->m3, sizeof(p->m3), &p->rs, &why));
}

static bool
all_zero(const void *buf, size_t n)
{
    const uint8_t *b = buf;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != 0) {
            return false;
        }
    }
    return true;
}

/* Seals len bytes of a pattern on s; returns the frame length. */
static size_t
seal_pattern(struct link_session *s, uint8_t tag, size_t len, uint8_t *frame)
{
    uint8_t     plain[TEST_FRAME_MAX];
    size_t      n   = 0;
    const char *why = NULL;
    for (size_t i = 0; i < len; i++) {
        plain[i] = (uint8_t) (tag + i * 7u);
    }
    assert_int_equal(MRD_OK,
        link_seal(s, plain, len, frame, len + LINK_FRAME_OVERHEAD, &n, &why));
    assert_int_equal(n, len + LINK_FRAME_OVERHEAD);
    return n;
}

static void
open_pattern(struct link_session *s, uint8_t tag, size_t len,
    const uint8_t *frame, size_t frame_len)
{
    uint8_t     plain[TEST_FRAME_MAX];
    size_t      n   = 0;
    const char *why = NULL;
    assert_int_equal(
        MRD_OK, link_open(s, frame, frame_len, plain, sizeof(plain), &n, &why));
    assert_int_equal(n, len);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(plain[i], (uint8_t) (tag + i * 7u));
    }
}

/* Asserts the frame is refused with code, the session is poisoned with its
 * keys wiped, and a later frame gets MRD_ECLOSED. */
static void
open_refused(struct link_session *s, const uint8_t *frame, size_t len, int code)
{
    uint8_t     plain[TEST_FRAME_MAX];
    size_t      n   = 0;
    const char *why = NULL;
    assert_int_equal(
        code, link_open(s, frame, len, plain, sizeof(plain), &n, &why));
    assert_non_null(why);
    assert_true(s->poisoned);
    assert_true(all_zero(s->rx_key, sizeof(s->rx_key)));
    assert_true(all_zero(s->tx_key, sizeof(s->tx_key)));
    why = NULL;
    assert_int_equal(
        MRD_ECLOSED, link_open(s, frame, len, plain, sizeof(plain), &n, &why));
    assert_int_equal(MRD_ECLOSED, link_seal(s, plain, 1, plain, 64, &n, &why));
}

/* ---------------------------------------------------------- handshake -- */

static void
test_handshake_ok(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    pair_handshake(p);
    assert_true(p->is.established && p->rs.established);
    assert_memory_equal(p->is.peer_pk, p->ri.pk, LINK_KEY_SIZE);
    assert_memory_equal(p->rs.peer_pk, p->ii.pk, LINK_KEY_SIZE);
    assert_memory_equal(p->is.tx_key, p->rs.rx_key, LINK_SYM_KEY_SIZE);
    assert_memory_equal(p->is.rx_key, p->rs.tx_key, LINK_SYM_KEY_SIZE);
    assert_memory_not_equal(p->is.tx_key, p->is.rx_key, LINK_SYM_KEY_SIZE);
    assert_int_equal(p->it.calls, 1);
    assert_int_equal(p->rt.calls, 1);
    /* Every secret of the handshakes is gone. */
    assert_int_equal(p->ih.state, LINK_HS_DONE);
    assert_int_equal(p->rh.state, LINK_HS_DONE);
    assert_true(all_zero(p->ih.e_sk, sizeof(p->ih.e_sk)));
    assert_true(all_zero(p->rh.dh, sizeof(p->rh.dh)));
    assert_true(all_zero(p->rh.k, sizeof(p->rh.k)));
    /* Identities travel encrypted: neither public key is in msg2 or msg3. */
    assert_null(memmem(p->m2, sizeof(p->m2), p->ri.pk, 8));
    assert_null(memmem(p->m3, sizeof(p->m3), p->ii.pk, 8));
    /* msg1 is no smaller than msg2: no amplification. */
    assert_true(LINK_MSG1_SIZE >= LINK_MSG2_SIZE);

    /* Many frames, both directions, interleaved, every length class. */
    static uint8_t frame[TEST_FRAME_MAX + LINK_FRAME_OVERHEAD];
    for (unsigned i = 0; i < 2000; i++) {
        size_t len = (i * 37u) % TEST_FRAME_MAX;
        if (i % 500 == 0) {
            len = TEST_FRAME_MAX;
        }
        struct link_session *tx = (i % 3 == 0) ? &p->rs : &p->is;
        struct link_session *rx = (i % 3 == 0) ? &p->is : &p->rs;
        size_t               n  = seal_pattern(tx, (uint8_t) i, len, frame);
        open_pattern(rx, (uint8_t) i, len, frame, n);
    }
    assert_false(p->is.poisoned || p->rs.poisoned);
    free(p);
}

/* The same identity handshakes again: fresh ephemerals, other keys. */
static void
test_handshake_again_new_keys(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    pair_handshake(p);
    uint8_t k1[LINK_SYM_KEY_SIZE];
    memcpy(k1, p->is.tx_key, sizeof(k1));
    p->iseed[5] ^= 1; /* not byte 0: X25519 clears its low 3 bits */
    p->rseed[5] ^= 1;
    pair_handshake(p);
    assert_memory_not_equal(k1, p->is.tx_key, sizeof(k1));
    assert_memory_equal(p->is.tx_key, p->rs.rx_key, LINK_SYM_KEY_SIZE);
    free(p);
}

static void
test_wrong_cluster(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    p->rc.cluster_id[15] ^= 0x80;
    pair_restart(p);
    const char *why = NULL;
    assert_int_equal(MRD_EAUTH,
        link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), p->m2, &why));
    assert_string_equal(why, "peer of another cluster");
    assert_int_equal(p->rh.state, LINK_HS_FAILED);
    /* No second try on the same state, even with a good message. */
    p->rc.cluster_id[15] ^= 0x80;
    assert_int_equal(MRD_ECLOSED,
        link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), p->m2, &why));
    free(p);
}

static void
test_responder_untrusted(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    p->it.count = 0;
    pair_restart(p);
    const char *why = NULL;
    assert_int_equal(
        MRD_OK, link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), p->m2, &why));
    memset(p->m3, 0, sizeof(p->m3));
    assert_int_equal(MRD_EAUTH,
        link_hs_recv_msg2(&p->ih, p->m2, sizeof(p->m2), p->m3, &p->is, &why));
    assert_string_equal(why, "peer identity not trusted");
    assert_int_equal(p->it.calls, 1);
    assert_false(p->is.established);
    /* The initiator said nothing of itself to an untrusted responder. */
    assert_true(all_zero(p->m3, sizeof(p->m3)));
    assert_int_equal(p->ih.state, LINK_HS_FAILED);
    assert_true(all_zero(p->ih.e_sk, sizeof(p->ih.e_sk)));
    free(p);
}

static void
test_initiator_untrusted(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    struct test_id other;
    test_id_make(&other, 0x33);
    p->rt.keys[0] = other.pk; /* trusts someone, not this initiator */
    pair_restart(p);
    const char *why = NULL;
    assert_int_equal(
        MRD_OK, link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), p->m2, &why));
    assert_int_equal(MRD_OK,
        link_hs_recv_msg2(&p->ih, p->m2, sizeof(p->m2), p->m3, &p->is, &why));
    assert_int_equal(MRD_EAUTH,
        link_hs_recv_msg3(&p->rh, p->m3, sizeof(p->m3), &p->rs, &why));
    assert_string_equal(why, "peer identity not trusted");
    assert_false(p->rs.established);
    assert_int_equal(p->rh.state, LINK_HS_FAILED);
    free(p);
}

/* A side that presents one key and signs with another (a stolen or
 * guessed public key without its secret) is refused at the signature. */
static void
test_bad_signature(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    struct test_id impostor;
    test_id_make(&impostor, 0x44);
    const char *why = NULL;

    pair_init(p);
    p->rc.sk = impostor.sk; /* presents ri.pk, trusted, signs as impostor */
    pair_restart(p);
    assert_int_equal(
        MRD_OK, link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), p->m2, &why));
    assert_int_equal(MRD_EPROTO,
        link_hs_recv_msg2(&p->ih, p->m2, sizeof(p->m2), p->m3, &p->is, &why));
    assert_string_equal(why, "handshake signature invalid");
    assert_int_equal(p->it.calls, 0); /* never asked about an unproven key */

    pair_init(p);
    p->ic.sk = impostor.sk;
    pair_restart(p);
    assert_int_equal(
        MRD_OK, link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), p->m2, &why));
    assert_int_equal(MRD_OK,
        link_hs_recv_msg2(&p->ih, p->m2, sizeof(p->m2), p->m3, &p->is, &why));
    assert_int_equal(MRD_EPROTO,
        link_hs_recv_msg3(&p->rh, p->m3, sizeof(p->m3), &p->rs, &why));
    assert_string_equal(why, "handshake signature invalid");
    assert_int_equal(p->rt.calls, 0);
    free(p);
}

/* Every single-bit flip of msg1, msg2 and msg3 makes the handshake fail:
 * at the receiver of the flipped message, or (for bits of e_i that still
 * give a valid point) at the initiator, because the transcripts differ. */
static void
test_handshake_bit_flips(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    pair_handshake(p);
    uint8_t m1[LINK_MSG1_SIZE], m2[LINK_MSG2_SIZE], m3[LINK_MSG3_SIZE];
    memcpy(m1, p->m1, sizeof(m1));
    memcpy(m2, p->m2, sizeof(m2));
    memcpy(m3, p->m3, sizeof(m3));
    const char *why           = NULL;
    unsigned    late_refusals = 0;

    for (size_t bit = 0; bit < 8 * sizeof(m1); bit++) {
        uint8_t bad[LINK_MSG1_SIZE];
        memcpy(bad, m1, sizeof(bad));
        bad[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        pair_restart(p);
        why    = NULL;
        int rv = link_hs_recv_msg1(&p->rh, bad, sizeof(bad), p->m2, &why);
        if (rv == MRD_OK) {
            /* Only a flip inside e_i gets past the responder. */
            assert_true(bit / 8 >= LINK_HDR_SIZE + LINK_CLUSTER_ID_SIZE);
            assert_true(
                bit / 8 < LINK_HDR_SIZE + LINK_CLUSTER_ID_SIZE + LINK_EPH_SIZE);
            late_refusals++;
            rv = link_hs_recv_msg2(
                &p->ih, p->m2, sizeof(p->m2), p->m3, &p->is, &why);
        }
        assert_int_not_equal(rv, MRD_OK);
        assert_non_null(why);
    }
    /* Only flips inside e_i get past the responder. */
    assert_true(late_refusals > 0 && late_refusals <= 8 * LINK_EPH_SIZE);

    for (size_t bit = 0; bit < 8 * sizeof(m2); bit++) {
        uint8_t bad[LINK_MSG2_SIZE];
        memcpy(bad, m2, sizeof(bad));
        bad[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        pair_restart(p);
        why = NULL;
        memset(&p->is, 0, sizeof(p->is));
        assert_int_not_equal(MRD_OK,
            link_hs_recv_msg2(&p->ih, bad, sizeof(bad), p->m3, &p->is, &why));
        assert_non_null(why);
        assert_int_equal(p->ih.state, LINK_HS_FAILED);
        assert_false(p->is.established);
    }

    for (size_t bit = 0; bit < 8 * sizeof(m3); bit++) {
        uint8_t bad[LINK_MSG3_SIZE];
        memcpy(bad, m3, sizeof(bad));
        bad[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        pair_restart(p);
        assert_int_equal(MRD_OK,
            link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), p->m2, &why));
        assert_memory_equal(p->m2, m2, sizeof(m2)); /* deterministic */
        why = NULL;
        memset(&p->rs, 0, sizeof(p->rs));
        assert_int_not_equal(
            MRD_OK, link_hs_recv_msg3(&p->rh, bad, sizeof(bad), &p->rs, &why));
        assert_non_null(why);
        assert_false(p->rs.established);
    }
    free(p);
}

static void
test_handshake_sizes(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    pair_handshake(p);
    uint8_t big[LINK_MSG1_SIZE + 2];
    memset(big, 0, sizeof(big));
    const char *why = NULL;
    for (size_t len = 0; len <= sizeof(big); len++) {
        uint8_t *src;
        if (len != LINK_MSG1_SIZE) {
            src = len <= sizeof(p->m1) ? p->m1 : big;
            pair_restart(p);
            assert_int_equal(
                MRD_EPROTO, link_hs_recv_msg1(&p->rh, src, len, p->m2, &why));
            assert_string_equal(why, "handshake message of wrong size");
        }
        if (len != LINK_MSG2_SIZE) {
            src = len <= sizeof(p->m2) ? p->m2 : big;
            pair_restart(p);
            assert_int_equal(MRD_EPROTO,
                link_hs_recv_msg2(&p->ih, src, len, p->m3, &p->is, &why));
        }
        if (len != LINK_MSG3_SIZE) {
            src = len <= sizeof(p->m3) ? p->m3 : big;
            pair_restart(p);
            uint8_t m2[LINK_MSG2_SIZE];
            assert_int_equal(MRD_OK,
                link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), m2, &why));
            assert_int_equal(
                MRD_EPROTO, link_hs_recv_msg3(&p->rh, src, len, &p->rs, &why));
        }
    }
    /* msg2 has the size of msg1: fed as msg1 it is refused by its number. */
    pair_handshake(p);
    pair_restart(p);
    assert_int_equal(
        MRD_EPROTO, link_hs_recv_msg1(&p->rh, p->m2, sizeof(p->m2), big, &why));
    assert_string_equal(why, "unexpected handshake message");
    /* Non-zero padding. */
    pair_restart(p);
    p->m1[LINK_MSG1_SIZE - 1] = 1;
    assert_int_equal(
        MRD_EPROTO, link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), big, &why));
    assert_string_equal(why, "msg1 padding not zero");
    /* Another version. */
    pair_restart(p);
    p->m1[2] = LINK_VERSION + 1;
    assert_int_equal(MRD_EPROTOVERSION,
        link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), big, &why));
    free(p);
}

/* The all-zero point, other small-order points and their non-canonical
 * encodings give an all-zero DH: refused on both sides. */
static void
test_invalid_ephemeral(void **state)
{
    (void) state;
    static const uint8_t bad_points[][LINK_EPH_SIZE] = {
        { 0 }, /* 0 */
        { 1 }, /* 1 */
        { 0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3,
            0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32,
            0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00 },
        { 0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1,
            0x55, 0x9c, 0x83, 0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c,
            0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f, 0x11, 0x57 },
        { 0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x7f }, /* p-1 */
        { 0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x7f }, /* p */
        { 0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0x7f }, /* p+1 */
    };
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    pair_handshake(p);
    const char *why = NULL;
    for (size_t i = 0; i < MRD_ARRAY_SIZE(bad_points); i++) {
        uint8_t m1[LINK_MSG1_SIZE], m2[LINK_MSG2_SIZE];
        memcpy(m1, p->m1, sizeof(m1));
        memcpy(m2, p->m2, sizeof(m2));
        memcpy(m1 + LINK_HDR_SIZE + LINK_CLUSTER_ID_SIZE, bad_points[i],
            LINK_EPH_SIZE);
        memcpy(m2 + LINK_HDR_SIZE, bad_points[i], LINK_EPH_SIZE);
        pair_restart(p);
        why = NULL;
        assert_int_equal(
            MRD_EPROTO, link_hs_recv_msg1(&p->rh, m1, sizeof(m1), m2, &why));
        assert_string_equal(why, "invalid peer ephemeral");
        memcpy(m2 + LINK_HDR_SIZE, bad_points[i], LINK_EPH_SIZE);
        assert_int_equal(MRD_EPROTO,
            link_hs_recv_msg2(&p->ih, m2, sizeof(m2), p->m3, &p->is, &why));
        assert_string_equal(why, "invalid peer ephemeral");
    }
    free(p);
}

/* A recorded initiator (msg1 and msg3 of a past handshake) replayed to a
 * fresh responder: its new ephemeral changes the transcript and the keys,
 * so the recorded msg3 is refused and no recorded frame could be used. */
static void
test_replayed_handshake(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    pair_handshake(p);
    uint8_t m2_old[LINK_MSG2_SIZE], m3_old[LINK_MSG3_SIZE];
    memcpy(m2_old, p->m2, sizeof(m2_old));
    memcpy(m3_old, p->m3, sizeof(m3_old));
    struct link_session old = p->rs;
    const char         *why = NULL;

    p->rseed[5] ^= 0x40; /* the fresh responder's own randomness */
    link_hs_respond(&p->rh, &p->rc, p->rseed);
    assert_int_equal(
        MRD_OK, link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), p->m2, &why));
    assert_memory_not_equal(p->m2, m2_old, sizeof(m2_old));
    struct link_session rs;
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(MRD_EPROTO,
        link_hs_recv_msg3(&p->rh, m3_old, sizeof(m3_old), &rs, &why));
    assert_false(rs.established);
    /* And were it accepted, the keys would differ: the honest initiator
     * answering this msg2 agrees on keys unlike the old ones. */
    link_hs_initiate(&p->ih, &p->ic, p->iseed, p->m1);
    assert_int_equal(MRD_OK,
        link_hs_recv_msg2(&p->ih, p->m2, sizeof(p->m2), p->m3, &p->is, &why));
    assert_memory_not_equal(p->is.tx_key, old.rx_key, LINK_SYM_KEY_SIZE);
    free(p);
}

/* ------------------------------------------------------------- frames -- */

static void
test_frame_replay_reorder_gap(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    uint8_t f0[64], f1[64], f2[64];
    size_t  n0, n1, n2;

    /* Replay. */
    pair_init(p);
    pair_handshake(p);
    n0 = seal_pattern(&p->is, 0, 20, f0);
    open_pattern(&p->rs, 0, 20, f0, n0);
    open_refused(&p->rs, f0, n0, MRD_EPROTO);

    /* Reorder: the second frame first. */
    pair_handshake(p);
    n0 = seal_pattern(&p->is, 0, 20, f0);
    n1 = seal_pattern(&p->is, 1, 21, f1);
    open_refused(&p->rs, f1, n1, MRD_EPROTO);

    /* Reorder after a delivered frame: 0, 2, then 1. */
    pair_handshake(p);
    n0 = seal_pattern(&p->is, 0, 20, f0);
    n1 = seal_pattern(&p->is, 1, 21, f1);
    n2 = seal_pattern(&p->is, 2, 22, f2);
    open_pattern(&p->rs, 0, 20, f0, n0);
    open_refused(&p->rs, f2, n2, MRD_EPROTO);

    /* A gap with the counter rewritten to the expected one: the tag. */
    pair_handshake(p);
    n0    = seal_pattern(&p->is, 0, 20, f0);
    n1    = seal_pattern(&p->is, 1, 21, f1);
    f1[7] = 0;
    open_refused(&p->rs, f1, n1, MRD_EPROTO);

    /* Reflection: a frame sent back to its sender, both ways. */
    pair_handshake(p);
    n0 = seal_pattern(&p->is, 0, 20, f0);
    open_refused(&p->is, f0, n0, MRD_EPROTO);
    n0 = seal_pattern(&p->rs, 0, 20, f0);
    open_refused(&p->rs, f0, n0, MRD_EPROTO);
    free(p);
}

/* Opened in place (out = frame + LINK_CTR_SIZE), as linkio does: the
 * plaintext is right, and a frame refused for its tag yields no plaintext
 * (the tag is checked first; libsodium wipes the output on a refusal). */
static void
test_frame_open_in_place(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    uint8_t     f[TEST_FRAME_MAX + LINK_FRAME_OVERHEAD];
    size_t      n, plen = 0;
    const char *why = NULL;

    pair_init(p);
    pair_handshake(p);
    for (size_t len = 0; len <= 1000; len += 333) {
        n = seal_pattern(&p->is, (uint8_t) len, len, f);
        assert_int_equal(MRD_OK,
            link_open(&p->rs, f, n, f + LINK_CTR_SIZE, n - LINK_CTR_SIZE, &plen,
                &why));
        assert_int_equal(plen, len);
        for (size_t i = 0; i < len; i++) {
            assert_int_equal(f[LINK_CTR_SIZE + i], (uint8_t) (len + i * 7u));
        }
    }
    n = seal_pattern(&p->is, 9, 100, f);
    f[n - 1] ^= 0x01;
    assert_int_equal(MRD_EPROTO,
        link_open(
            &p->rs, f, n, f + LINK_CTR_SIZE, n - LINK_CTR_SIZE, &plen, &why));
    assert_true(p->rs.poisoned);
    size_t same = 0;
    for (size_t i = 0; i < 100; i++) {
        same += f[LINK_CTR_SIZE + i] == (uint8_t) (9 + i * 7u);
    }
    assert_true(same < 100);
    free(p);
}

static void
test_frame_truncated_and_flipped(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    pair_handshake(p);
    uint8_t frame[40 + LINK_FRAME_OVERHEAD];
    size_t  n = seal_pattern(&p->is, 9, 40, frame);

    for (size_t len = 0; len < n; len++) {
        pair_handshake(p);
        open_refused(&p->rs, frame, len, MRD_EPROTO);
    }
    /* Longer by one (garbage appended) is refused too. */
    uint8_t longer[sizeof(frame) + 1];
    memcpy(longer, frame, n);
    longer[n] = 0;
    pair_handshake(p);
    open_refused(&p->rs, longer, n + 1, MRD_EPROTO);

    for (size_t bit = 0; bit < 8 * n; bit++) {
        uint8_t bad[sizeof(frame)];
        memcpy(bad, frame, n);
        bad[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        pair_handshake(p);
        open_refused(&p->rs, bad, n, MRD_EPROTO);
    }
    /* The original still opens on a fresh, identical session. */
    pair_handshake(p);
    open_pattern(&p->rs, 9, 40, frame, n);
    free(p);
}

static void
test_frame_limits(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    static uint8_t plain[TEST_FRAME_MAX + 1];
    static uint8_t frame[TEST_FRAME_MAX + 1 + LINK_FRAME_OVERHEAD];
    size_t         n   = 0;
    const char    *why = NULL;

    /* No session, no frames: there is no plaintext mode. */
    struct link_session none;
    memset(&none, 0, sizeof(none));
    assert_int_equal(
        MRD_EINVAL, link_seal(&none, plain, 1, frame, sizeof(frame), &n, &why));
    assert_int_equal(MRD_EINVAL,
        link_open(&none, frame, 40, plain, sizeof(plain), &n, &why));

    pair_handshake(p);
    /* Over frame_max or too little room: refused, session still good. */
    assert_int_equal(MRD_EINVAL,
        link_seal(
            &p->is, plain, TEST_FRAME_MAX + 1, frame, sizeof(frame), &n, &why));
    assert_int_equal(
        MRD_EINVAL, link_seal(&p->is, plain, 10, frame, 10 + 23, &n, &why));
    n = seal_pattern(&p->is, 3, 10, frame);
    assert_int_equal(
        MRD_EINVAL, link_open(&p->rs, frame, n, plain, 9, &n, &why));
    open_pattern(&p->rs, 3, 10, frame, n);

    /* A peer whose frame_max is larger: an oversized frame poisons. */
    p->ic.frame_max = TEST_FRAME_MAX + 1;
    pair_handshake(p);
    assert_int_equal(MRD_OK,
        link_seal(
            &p->is, plain, TEST_FRAME_MAX + 1, frame, sizeof(frame), &n, &why));
    open_refused(&p->rs, frame, n, MRD_ETOOBIG);
    free(p);
}

/* Both ends ratchet at LINK_REKEY_INTERVAL; frames keep flowing. */
static void
test_rekey_and_exhaustion(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    pair_handshake(p);
    uint8_t frame[64];
    size_t  n;
    link_session_test_skip(&p->is, LINK_REKEY_INTERVAL - 2, 0);
    link_session_test_skip(&p->rs, 0, LINK_REKEY_INTERVAL - 2);
    uint8_t k_before[LINK_SYM_KEY_SIZE];
    memcpy(k_before, p->is.tx_key, sizeof(k_before));
    for (unsigned i = 0; i < 4; i++) {
        n = seal_pattern(&p->is, (uint8_t) i, 30, frame);
        open_pattern(&p->rs, (uint8_t) i, 30, frame, n);
        if (i < 2) {
            assert_memory_equal(k_before, p->is.tx_key, sizeof(k_before));
        } else {
            assert_memory_not_equal(k_before, p->is.tx_key, sizeof(k_before));
        }
        assert_memory_equal(p->is.tx_key, p->rs.rx_key, LINK_SYM_KEY_SIZE);
    }
    /* The other direction did not move. */
    assert_memory_equal(p->rs.tx_key, p->is.rx_key, LINK_SYM_KEY_SIZE);
    n = seal_pattern(&p->rs, 7, 30, frame);
    open_pattern(&p->is, 7, 30, frame, n);

    /* A receiver that skipped the ratchet point keeps the old key and
     * refuses the next frame: the ratchet really changes the key. */
    pair_handshake(p);
    link_session_test_skip(&p->is, LINK_REKEY_INTERVAL, 0);
    link_session_test_skip(&p->rs, 0, LINK_REKEY_INTERVAL);
    struct link_session stale = p->rs;
    link_session_test_skip(&stale, 0, LINK_REKEY_INTERVAL + 1);
    n = seal_pattern(&p->is, 1, 30, frame); /* both ratchet at the point */
    open_pattern(&p->rs, 1, 30, frame, n);
    n = seal_pattern(&p->is, 2, 30, frame);
    open_refused(&stale, frame, n, MRD_EPROTO);
    open_pattern(&p->rs, 2, 30, frame, n);

    /* The end of the counter. */
    pair_handshake(p);
    link_session_test_skip(&p->is, LINK_COUNTER_MAX, 0);
    link_session_test_skip(&p->rs, 0, LINK_COUNTER_MAX);
    n = seal_pattern(&p->is, 2, 30, frame);
    open_pattern(&p->rs, 2, 30, frame, n);
    const char *why       = NULL;
    uint8_t     plain[30] = { 0 };
    assert_int_equal(MRD_EFULL,
        link_seal(
            &p->is, plain, sizeof(plain), frame, sizeof(frame), &n, &why));
    assert_non_null(strstr(why, "handshake again"));
    free(p);
}

static void
test_wipe(void **state)
{
    (void) state;
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    pair_init(p);
    pair_handshake(p);
    assert_false(all_zero(p->is.tx_key, LINK_SYM_KEY_SIZE));
    assert_false(all_zero(p->is.rx_key, LINK_SYM_KEY_SIZE));
    link_session_wipe(&p->is);
    assert_true(all_zero(&p->is, sizeof(p->is)));
    uint8_t     frame[64];
    size_t      n   = 0;
    const char *why = NULL;
    assert_int_equal(
        MRD_EINVAL, link_seal(&p->is, frame, 1, frame + 8, 40, &n, &why));

    /* A handshake wiped midway keeps no secret. */
    pair_restart(p);
    assert_int_equal(
        MRD_OK, link_hs_recv_msg1(&p->rh, p->m1, sizeof(p->m1), p->m2, &why));
    assert_false(all_zero(p->rh.dh, sizeof(p->rh.dh)));
    link_hs_wipe(&p->rh);
    assert_true(all_zero(&p->rh, sizeof(p->rh)));
    free(p);
}

/* ------------------------------------------------------ corpus writer -- */

static void
corpus_file(const char *dir, const char *name, uint8_t mode,
    const uint8_t *body, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(&mode, 1, 1, f) != 1
        || fwrite(body, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "link_test: cannot write %s\n", path);
        exit(1);
    }
}

/* `link_test --corpus DIR` writes the seeds of tests/fuzz/link_fuzz.c,
 * whose fixture is this file's pair: the real messages and frames. */
static int
corpus_write(const char *dir)
{
    struct pair *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return 1;
    }
    pair_init(p);
    pair_handshake(p);
    corpus_file(dir, "msg1", 0, p->m1, sizeof(p->m1));
    corpus_file(dir, "msg2", 1, p->m2, sizeof(p->m2));
    corpus_file(dir, "msg3", 2, p->m3, sizeof(p->m3));
    /* Four frames from the initiator, each as [length byte, frame]; the
     * second file replays the first frame after them. */
    uint8_t seq[5 * (1 + 64)];
    size_t  n = 0, first = 0;
    for (unsigned i = 0; i < 4; i++) {
        uint8_t frame[64];
        size_t  len = seal_pattern(&p->is, (uint8_t) i, 16 + i, frame);
        seq[n++]    = (uint8_t) len;
        memcpy(seq + n, frame, len);
        n += len;
        if (i == 0) {
            first = n;
        }
    }
    corpus_file(dir, "frames", 3, seq, n);
    memcpy(seq + n, seq, first);
    corpus_file(dir, "frames_replay", 3, seq, n + first);
    free(p);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--corpus") == 0) {
        return corpus_write(argv[2]);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_ok),
        cmocka_unit_test(test_handshake_again_new_keys),
        cmocka_unit_test(test_wrong_cluster),
        cmocka_unit_test(test_responder_untrusted),
        cmocka_unit_test(test_initiator_untrusted),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_handshake_bit_flips),
        cmocka_unit_test(test_handshake_sizes),
        cmocka_unit_test(test_invalid_ephemeral),
        cmocka_unit_test(test_replayed_handshake),
        cmocka_unit_test(test_frame_replay_reorder_gap),
        cmocka_unit_test(test_frame_open_in_place),
        cmocka_unit_test(test_frame_truncated_and_flipped),
        cmocka_unit_test(test_frame_limits),
        cmocka_unit_test(test_rekey_and_exhaustion),
        cmocka_unit_test(test_wipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
