/*
 * link.c: the secure link handshake and frames (link.h says what and why).
 *
 * The transcript, with H = BLAKE2b-256 and || concatenation:
 *
 *   h0  = H("meridian-link-v1" || version || cluster id)
 *   h1  = H(h0 || msg1)
 *   h2a = H(h1 || msg2[0..36))            msg2's header and e_r
 *   dh  = X25519(e, e_peer)
 *   k   = BLAKE2b-256(key dh, "meridian-link-v1 handshake" || h2a)
 *   sig_r over "meridian-link-v1 responder" || H(h2a || S_r)
 *   ct2 = AEAD(k, nonce 0, ad h2a, S_r || sig_r)
 *   h2  = H(h2a || ct2)
 *   h3a = H(h2 || msg3 header)
 *   sig_i over "meridian-link-v1 initiator" || H(h3a || S_i)
 *   ct3 = AEAD(k, nonce 1, ad h3a, S_i || sig_i)
 *   h3  = H(h3a || ct3)
 *   keys = BLAKE2b-512(key dh, "meridian-link-v1 session" || h3):
 *          [0..32) initiator->responder, [32..64) responder->initiator
 *
 * Rekey: key' = BLAKE2b-256(key key, "meridian-link-v1 rekey"), applied by
 * both ends before the frame whose counter is a non-zero multiple of
 * LINK_REKEY_INTERVAL.
 */
#include "link.h"

#include <string.h>

#include <sodium.h>

_Static_assert(LINK_KEY_SIZE == crypto_sign_PUBLICKEYBYTES, "Ed25519 pk");
_Static_assert(LINK_SECRET_KEY_SIZE == crypto_sign_SECRETKEYBYTES, "Ed25519");
_Static_assert(LINK_SIG_SIZE == crypto_sign_BYTES, "Ed25519 signature");
_Static_assert(LINK_EPH_SIZE == crypto_scalarmult_BYTES, "X25519 point");
_Static_assert(LINK_SEED_SIZE == crypto_scalarmult_SCALARBYTES, "X25519");
_Static_assert(LINK_SYM_KEY_SIZE == crypto_aead_chacha20poly1305_ietf_KEYBYTES,
    "AEAD key");
_Static_assert(
    LINK_TAG_SIZE == crypto_aead_chacha20poly1305_ietf_ABYTES, "AEAD tag");
_Static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == 12u, "nonce");

#define LINK_LABEL "meridian-link-v1"
#define LINK_LABEL_HS LINK_LABEL " handshake"
#define LINK_LABEL_SESSION LINK_LABEL " session"
#define LINK_LABEL_REKEY LINK_LABEL " rekey"
#define LINK_LABEL_RESP LINK_LABEL " responder"
#define LINK_LABEL_INIT LINK_LABEL " initiator"
/* Longest signed message: a role label and a hash. */
#define LINK_SIGNED_MAX (sizeof(LINK_LABEL_RESP) + LINK_SYM_KEY_SIZE)

enum {
    LINK_MSG_1 = 1,
    LINK_MSG_2 = 2,
    LINK_MSG_3 = 3,
};

static int
link_fail(const char **why, int code, const char *reason)
{
    if (why != NULL) {
        *why = reason;
    }
    return code;
}

/* ------------------------------------------------------------ hashing -- */

/* *out = H(a || b); out may be a. */
static void
link_hash2(uint8_t out[LINK_SYM_KEY_SIZE], const uint8_t *a, size_t a_len,
    const uint8_t *b, size_t b_len)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, LINK_SYM_KEY_SIZE);
    crypto_generichash_update(&st, a, a_len);
    crypto_generichash_update(&st, b, b_len);
    crypto_generichash_final(&st, out, LINK_SYM_KEY_SIZE);
    sodium_memzero(&st, sizeof(st));
}

/* out[0..out_len) = BLAKE2b(key, label || h): the only way keys are made. */
static void
link_kdf(uint8_t *out, size_t out_len, const uint8_t key[LINK_SYM_KEY_SIZE],
    const char *label, const uint8_t *h, size_t h_len)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, LINK_SYM_KEY_SIZE, out_len);
    crypto_generichash_update(&st, (const uint8_t *) label, strlen(label));
    crypto_generichash_update(&st, h, h_len);
    crypto_generichash_final(&st, out, out_len);
    sodium_memzero(&st, sizeof(st));
}

static void
link_nonce(uint8_t nonce[12], uint64_t ctr)
{
    memset(nonce, 0, 4);
    for (unsigned i = 0; i < 8; i++) {
        nonce[4 + i] = (uint8_t) (ctr >> (56 - 8 * i));
    }
}

/* The message an identity signs: role label || H(h || pk). */
static size_t
link_signed_msg(uint8_t out[LINK_SIGNED_MAX], const char *label,
    const uint8_t h[LINK_SYM_KEY_SIZE], const uint8_t pk[LINK_KEY_SIZE])
{
    size_t n = strlen(label);
    MRD_ASSERT(n + LINK_SYM_KEY_SIZE <= LINK_SIGNED_MAX);
    memcpy(out, label, n);
    link_hash2(out + n, h, LINK_SYM_KEY_SIZE, pk, LINK_KEY_SIZE);
    return n + LINK_SYM_KEY_SIZE;
}

/* ---------------------------------------------------------- handshake -- */

static void
link_hs_start(struct link_hs *hs, const struct link_config *cfg,
    const uint8_t seed[LINK_SEED_SIZE])
{
    MRD_ASSERT(sodium_init() >= 0);
    MRD_ASSERT(cfg != NULL && cfg->pk != NULL && cfg->sk != NULL);
    MRD_ASSERT(cfg->trust != NULL);
    MRD_ASSERT(cfg->frame_max >= 1 && cfg->frame_max <= LINK_FRAME_PLAIN_MAX);
    memset(hs, 0, sizeof(*hs));
    hs->cfg = cfg;
    memcpy(hs->e_sk, seed, LINK_SEED_SIZE);
    MRD_ASSERT(crypto_scalarmult_base(hs->e_pk, hs->e_sk) == 0);
    uint8_t prologue[1 + LINK_CLUSTER_ID_SIZE];
    prologue[0] = (uint8_t) LINK_VERSION;
    memcpy(prologue + 1, cfg->cluster_id, LINK_CLUSTER_ID_SIZE);
    link_hash2(hs->h, (const uint8_t *) LINK_LABEL, strlen(LINK_LABEL),
        prologue, sizeof(prologue));
}

/* Poisons the handshake: every secret is wiped, later calls refused. */
static int
link_hs_fail(struct link_hs *hs, const char **why, int code, const char *r)
{
    link_hs_wipe(hs);
    hs->state = LINK_HS_FAILED;
    return link_fail(why, code, r);
}

/* Checks a handshake header and the size; MRD_OK or a refusal (not yet
 * poisoning). */
static int
link_hdr_check(const uint8_t *msg, size_t len, size_t want, unsigned type,
    const char **why)
{
    if (msg == NULL || len != want) {
        return link_fail(why, MRD_EPROTO, "handshake message of wrong size");
    }
    if (msg[0] != LINK_MAGIC0 || msg[1] != LINK_MAGIC1) {
        return link_fail(why, MRD_EPROTO, "not a link handshake (magic)");
    }
    if (msg[2] != LINK_VERSION) {
        return link_fail(
            why, MRD_EPROTOVERSION, "unsupported link handshake version");
    }
    if (msg[3] != type) {
        return link_fail(why, MRD_EPROTO, "unexpected handshake message");
    }
    return MRD_OK;
}

static void
link_hdr_write(uint8_t *out, unsigned type)
{
    out[0] = LINK_MAGIC0;
    out[1] = LINK_MAGIC1;
    out[2] = (uint8_t) LINK_VERSION;
    out[3] = (uint8_t) type;
}

/* dh from our ephemeral and the peer's; -1 for a small-order point. */
static int
link_hs_dh(struct link_hs *hs, const uint8_t peer_e[LINK_EPH_SIZE])
{
    return crypto_scalarmult(hs->dh, hs->e_sk, peer_e);
}

/* Writes hdr-less identity box: S || sig over label || H(h || S),
 * encrypted with k at nonce n, ad h. */
static void
link_hs_id_seal(struct link_hs *hs, const char *label, uint64_t n,
    uint8_t out[LINK_ID_BOX_SIZE])
{
    uint8_t plain[LINK_KEY_SIZE + LINK_SIG_SIZE];
    uint8_t signed_msg[LINK_SIGNED_MAX];
    uint8_t nonce[12];
    memcpy(plain, hs->cfg->pk, LINK_KEY_SIZE);
    size_t m_len = link_signed_msg(signed_msg, label, hs->h, hs->cfg->pk);
    MRD_ASSERT(crypto_sign_detached(
                   plain + LINK_KEY_SIZE, NULL, signed_msg, m_len, hs->cfg->sk)
        == 0);
    link_nonce(nonce, n);
    unsigned long long c_len = 0;
    MRD_ASSERT(crypto_aead_chacha20poly1305_ietf_encrypt(out, &c_len, plain,
                   sizeof(plain), hs->h, LINK_SYM_KEY_SIZE, NULL, nonce, hs->k)
        == 0);
    MRD_ASSERT(c_len == LINK_ID_BOX_SIZE);
    sodium_memzero(plain, sizeof(plain));
}

/* Opens the peer's identity box, checks the signature and asks the trust
 * callback. MRD_OK with the peer's key in pk_out, or a reason. */
static int
link_hs_id_open(struct link_hs *hs, const char *label, uint64_t n,
    const uint8_t box[LINK_ID_BOX_SIZE], uint8_t pk_out[LINK_KEY_SIZE],
    const char **why)
{
    uint8_t plain[LINK_KEY_SIZE + LINK_SIG_SIZE];
    uint8_t signed_msg[LINK_SIGNED_MAX];
    uint8_t nonce[12];
    link_nonce(nonce, n);
    unsigned long long p_len = 0;
    if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, &p_len, NULL, box,
            LINK_ID_BOX_SIZE, hs->h, LINK_SYM_KEY_SIZE, nonce, hs->k)
        != 0) {
        return link_fail(why, MRD_EPROTO, "handshake identity failed its tag");
    }
    MRD_ASSERT(p_len == sizeof(plain));
    size_t m_len = link_signed_msg(signed_msg, label, hs->h, plain);
    if (crypto_sign_verify_detached(
            plain + LINK_KEY_SIZE, signed_msg, m_len, plain)
        != 0) {
        return link_fail(why, MRD_EPROTO, "handshake signature invalid");
    }
    if (!hs->cfg->trust(hs->cfg->trust_arg, plain)) {
        return link_fail(why, MRD_EAUTH, "peer identity not trusted");
    }
    memcpy(pk_out, plain, LINK_KEY_SIZE);
    return MRD_OK;
}

/* Fills the session from dh and the final transcript; wipes the
 * handshake. */
static void
link_hs_finish(struct link_hs *hs, bool initiator,
    const uint8_t peer_pk[LINK_KEY_SIZE], struct link_session *s)
{
    uint8_t keys[2 * LINK_SYM_KEY_SIZE];
    link_kdf(keys, sizeof(keys), hs->dh, LINK_LABEL_SESSION, hs->h,
        LINK_SYM_KEY_SIZE);
    memset(s, 0, sizeof(*s));
    memcpy(s->tx_key, keys + (initiator ? 0 : LINK_SYM_KEY_SIZE),
        LINK_SYM_KEY_SIZE);
    memcpy(s->rx_key, keys + (initiator ? LINK_SYM_KEY_SIZE : 0),
        LINK_SYM_KEY_SIZE);
    sodium_memzero(keys, sizeof(keys));
    memcpy(s->peer_pk, peer_pk, LINK_KEY_SIZE);
    s->frame_max   = hs->cfg->frame_max;
    s->established = true;
    link_hs_wipe(hs);
    hs->state = LINK_HS_DONE;
}

void
link_hs_initiate(struct link_hs *hs, const struct link_config *cfg,
    const uint8_t seed[LINK_SEED_SIZE], uint8_t msg1_out[LINK_MSG1_SIZE])
{
    link_hs_start(hs, cfg, seed);
    memset(msg1_out, 0, LINK_MSG1_SIZE);
    link_hdr_write(msg1_out, LINK_MSG_1);
    memcpy(msg1_out + LINK_HDR_SIZE, cfg->cluster_id, LINK_CLUSTER_ID_SIZE);
    memcpy(msg1_out + LINK_HDR_SIZE + LINK_CLUSTER_ID_SIZE, hs->e_pk,
        LINK_EPH_SIZE);
    link_hash2(hs->h, hs->h, LINK_SYM_KEY_SIZE, msg1_out, LINK_MSG1_SIZE);
    hs->state = LINK_HS_SENT1;
}

void
link_hs_respond(struct link_hs *hs, const struct link_config *cfg,
    const uint8_t seed[LINK_SEED_SIZE])
{
    link_hs_start(hs, cfg, seed);
    hs->state = LINK_HS_WAIT1;
}

int
link_hs_recv_msg1(struct link_hs *hs, const uint8_t *msg, size_t len,
    uint8_t msg2_out[LINK_MSG2_SIZE], const char **why)
{
    static const uint8_t zeros[LINK_MSG1_PAD_SIZE];
    if (hs->state == LINK_HS_FAILED) {
        return link_fail(why, MRD_ECLOSED, "handshake already refused");
    }
    MRD_ASSERT(hs->state == LINK_HS_WAIT1);
    int rv = link_hdr_check(msg, len, LINK_MSG1_SIZE, LINK_MSG_1, why);
    if (rv != MRD_OK) {
        return link_hs_fail(hs, NULL, rv, NULL);
    }
    const uint8_t *cid = msg + LINK_HDR_SIZE;
    const uint8_t *e_i = cid + LINK_CLUSTER_ID_SIZE;
    const uint8_t *pad = e_i + LINK_EPH_SIZE;
    if (sodium_memcmp(cid, hs->cfg->cluster_id, LINK_CLUSTER_ID_SIZE) != 0) {
        return link_hs_fail(hs, why, MRD_EAUTH, "peer of another cluster");
    }
    if (memcmp(pad, zeros, LINK_MSG1_PAD_SIZE) != 0) {
        return link_hs_fail(hs, why, MRD_EPROTO, "msg1 padding not zero");
    }
    if (link_hs_dh(hs, e_i) != 0) {
        return link_hs_fail(hs, why, MRD_EPROTO, "invalid peer ephemeral");
    }
    link_hash2(hs->h, hs->h, LINK_SYM_KEY_SIZE, msg, len);
    link_hdr_write(msg2_out, LINK_MSG_2);
    memcpy(msg2_out + LINK_HDR_SIZE, hs->e_pk, LINK_EPH_SIZE);
    link_hash2(hs->h, hs->h, LINK_SYM_KEY_SIZE, msg2_out,
        LINK_HDR_SIZE + LINK_EPH_SIZE);
    link_kdf(hs->k, LINK_SYM_KEY_SIZE, hs->dh, LINK_LABEL_HS, hs->h,
        LINK_SYM_KEY_SIZE);
    uint8_t *box = msg2_out + LINK_HDR_SIZE + LINK_EPH_SIZE;
    link_hs_id_seal(hs, LINK_LABEL_RESP, 0, box);
    link_hash2(hs->h, hs->h, LINK_SYM_KEY_SIZE, box, LINK_ID_BOX_SIZE);
    sodium_memzero(hs->e_sk, sizeof(hs->e_sk)); /* dh is all we need now */
    hs->state = LINK_HS_SENT2;
    return MRD_OK;
}

int
link_hs_recv_msg2(struct link_hs *hs, const uint8_t *msg, size_t len,
    uint8_t msg3_out[LINK_MSG3_SIZE], struct link_session *session_out,
    const char **why)
{
    uint8_t peer_pk[LINK_KEY_SIZE];
    if (hs->state == LINK_HS_FAILED) {
        return link_fail(why, MRD_ECLOSED, "handshake already refused");
    }
    MRD_ASSERT(hs->state == LINK_HS_SENT1);
    int rv = link_hdr_check(msg, len, LINK_MSG2_SIZE, LINK_MSG_2, why);
    if (rv != MRD_OK) {
        return link_hs_fail(hs, NULL, rv, NULL);
    }
    const uint8_t *e_r = msg + LINK_HDR_SIZE;
    const uint8_t *box = e_r + LINK_EPH_SIZE;
    if (link_hs_dh(hs, e_r) != 0) {
        return link_hs_fail(hs, why, MRD_EPROTO, "invalid peer ephemeral");
    }
    link_hash2(
        hs->h, hs->h, LINK_SYM_KEY_SIZE, msg, LINK_HDR_SIZE + LINK_EPH_SIZE);
    link_kdf(hs->k, LINK_SYM_KEY_SIZE, hs->dh, LINK_LABEL_HS, hs->h,
        LINK_SYM_KEY_SIZE);
    rv = link_hs_id_open(hs, LINK_LABEL_RESP, 0, box, peer_pk, why);
    if (rv != MRD_OK) {
        return link_hs_fail(hs, NULL, rv, NULL);
    }
    link_hash2(hs->h, hs->h, LINK_SYM_KEY_SIZE, box, LINK_ID_BOX_SIZE);
    link_hdr_write(msg3_out, LINK_MSG_3);
    link_hash2(hs->h, hs->h, LINK_SYM_KEY_SIZE, msg3_out, LINK_HDR_SIZE);
    uint8_t *box3 = msg3_out + LINK_HDR_SIZE;
    link_hs_id_seal(hs, LINK_LABEL_INIT, 1, box3);
    link_hash2(hs->h, hs->h, LINK_SYM_KEY_SIZE, box3, LINK_ID_BOX_SIZE);
    link_hs_finish(hs, true, peer_pk, session_out);
    return MRD_OK;
}

int
link_hs_recv_msg3(struct link_hs *hs, const uint8_t *msg, size_t len,
    struct link_session *session_out, const char **why)
{
    uint8_t peer_pk[LINK_KEY_SIZE];
    if (hs->state == LINK_HS_FAILED) {
        return link_fail(why, MRD_ECLOSED, "handshake already refused");
    }
    MRD_ASSERT(hs->state == LINK_HS_SENT2);
    int rv = link_hdr_check(msg, len, LINK_MSG3_SIZE, LINK_MSG_3, why);
    if (rv != MRD_OK) {
        return link_hs_fail(hs, NULL, rv, NULL);
    }
    link_hash2(hs->h, hs->h, LINK_SYM_KEY_SIZE, msg, LINK_HDR_SIZE);
    const uint8_t *box = msg + LINK_HDR_SIZE;
    rv = link_hs_id_open(hs, LINK_LABEL_INIT, 1, box, peer_pk, why);
    if (rv != MRD_OK) {
        return link_hs_fail(hs, NULL, rv, NULL);
    }
    link_hash2(hs->h, hs->h, LINK_SYM_KEY_SIZE, box, LINK_ID_BOX_SIZE);
    link_hs_finish(hs, false, peer_pk, session_out);
    return MRD_OK;
}

void
link_hs_wipe(struct link_hs *hs)
{
    sodium_memzero(hs, sizeof(*hs));
    hs->state = LINK_HS_NONE;
    hs->cfg   = NULL;
}

/* ------------------------------------------------------------- frames -- */

static void
link_ratchet(uint8_t key[LINK_SYM_KEY_SIZE])
{
    uint8_t next[LINK_SYM_KEY_SIZE];
    link_kdf(next, sizeof(next), key, LINK_LABEL_REKEY, NULL, 0);
    memcpy(key, next, sizeof(next));
    sodium_memzero(next, sizeof(next));
}

static bool
link_rekey_due(uint64_t ctr)
{
    return ctr != 0 && ctr % LINK_REKEY_INTERVAL == 0;
}

static int
link_session_fail(
    struct link_session *s, const char **why, int code, const char *reason)
{
    link_session_wipe(s);
    s->poisoned = true;
    return link_fail(why, code, reason);
}

int
link_seal(struct link_session *s, const uint8_t *plain, size_t len,
    uint8_t *out, size_t out_cap, size_t *out_len_out, const char **why)
{
    uint8_t nonce[12];
    if (s->poisoned) {
        return link_fail(why, MRD_ECLOSED, "link session poisoned");
    }
    if (!s->established) {
        return link_fail(why, MRD_EINVAL, "no link session: handshake first");
    }
    if (len > s->frame_max || out_cap < len + LINK_FRAME_OVERHEAD) {
        return link_fail(why, MRD_EINVAL, "frame too big for limit or out");
    }
    if (s->tx_next > LINK_COUNTER_MAX) {
        return link_fail(
            why, MRD_EFULL, "link send counter exhausted: handshake again");
    }
    uint64_t ctr = s->tx_next;
    if (link_rekey_due(ctr)) {
        link_ratchet(s->tx_key);
    }
    for (unsigned i = 0; i < LINK_CTR_SIZE; i++) {
        out[i] = (uint8_t) (ctr >> (56 - 8 * i));
    }
    link_nonce(nonce, ctr);
    unsigned long long c_len = 0;
#ifdef MRD_BENCH_PLAINTEXT
    /* Benchmark builds only (link.h, "MRD_BENCH_PLAINTEXT"): the frame
     * keeps its shape, with no cipher and a zero tag. */
    memcpy(out + LINK_CTR_SIZE, plain, len);
    memset(out + LINK_CTR_SIZE + len, 0, LINK_TAG_SIZE);
    c_len = len + LINK_TAG_SIZE;
#else
    MRD_ASSERT(
        crypto_aead_chacha20poly1305_ietf_encrypt(out + LINK_CTR_SIZE, &c_len,
            plain, len, out, LINK_CTR_SIZE, NULL, nonce, s->tx_key)
        == 0);
#endif
    MRD_ASSERT(c_len == len + LINK_TAG_SIZE);
    s->tx_next   = ctr + 1;
    *out_len_out = len + LINK_FRAME_OVERHEAD;
    return MRD_OK;
}

int
link_open(struct link_session *s, const uint8_t *frame, size_t len,
    uint8_t *out, size_t out_cap, size_t *out_len_out, const char **why)
{
    uint8_t nonce[12];
    if (s->poisoned) {
        return link_fail(why, MRD_ECLOSED, "link session poisoned");
    }
    if (!s->established) {
        return link_fail(why, MRD_EINVAL, "no link session: handshake first");
    }
    if (frame == NULL || len < LINK_FRAME_OVERHEAD) {
        return link_session_fail(s, why, MRD_EPROTO, "link frame truncated");
    }
    size_t plain_len = len - LINK_FRAME_OVERHEAD;
    if (plain_len > s->frame_max) {
        return link_session_fail(s, why, MRD_ETOOBIG, "link frame too big");
    }
    if (out_cap < plain_len) {
        return link_fail(why, MRD_EINVAL, "output too small for the frame");
    }
    uint64_t ctr = 0;
    for (unsigned i = 0; i < LINK_CTR_SIZE; i++) {
        ctr = (ctr << 8) | frame[i];
    }
    if (ctr < s->rx_next) {
        return link_session_fail(
            s, why, MRD_EPROTO, "link frame replayed or reordered");
    }
    if (ctr > s->rx_next) {
        return link_session_fail(
            s, why, MRD_EPROTO, "link frame missing before this one");
    }
    if (link_rekey_due(ctr)) {
        link_ratchet(s->rx_key); /* a refusal below wipes it anyway */
    }
    link_nonce(nonce, ctr);
    unsigned long long p_len = 0;
#ifdef MRD_BENCH_PLAINTEXT
    memmove(out, frame + LINK_CTR_SIZE, plain_len); /* may be in place */
    p_len = plain_len;
    if (false) {
#else
    if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &p_len, NULL,
            frame + LINK_CTR_SIZE, len - LINK_CTR_SIZE, frame, LINK_CTR_SIZE,
            nonce, s->rx_key)
        != 0) {
#endif
        return link_session_fail(
            s, why, MRD_EPROTO, "link frame failed authentication");
    }
    MRD_ASSERT(p_len == plain_len);
    s->rx_next   = ctr + 1;
    *out_len_out = plain_len;
    return MRD_OK;
}

void
link_session_wipe(struct link_session *s)
{
    sodium_memzero(s, sizeof(*s));
}

void
link_session_test_skip(struct link_session *s, uint64_t tx, uint64_t rx)
{
    MRD_ASSERT(s->established && !s->poisoned);
    s->tx_next = tx;
    s->rx_next = rx;
}
