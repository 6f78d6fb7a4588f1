/*
 * link.h: secure links, the authenticated and encrypted layer under every
 * NNG pipe between nodes and between clients and nodes, as a pure sans-I/O
 * core. It decides who is at the other end of a pipe and whether a frame
 * came from them unchanged, in order and exactly once.
 *
 * Identities are long-term Ed25519 key pairs (the node keys of the
 * topology, replication/topo.h; client keys from the cluster's client
 * list). Each pipe runs one handshake in the style of Noise XX, with
 * signatures in place of static DH because the identities are signing
 * keys:
 *
 *   msg1  I -> R  hdr | cluster id | e_i | zero padding
 *   msg2  R -> I  hdr | e_r | AEAD_k(n=0)(S_r | sig_r)
 *   msg3  I -> R  hdr | AEAD_k(n=1)(S_i | sig_i)
 *
 * e_i, e_r are fresh X25519 ephemerals; k is derived from DH(e_i, e_r) and
 * the transcript hash, so both identities travel encrypted and a passive
 * observer learns neither. As in Noise XX, the responder shows its identity
 * to whoever opens a pipe (node keys are in the topology anyway); the
 * initiator shows its own only to a responder it trusts. The transcript hash h
 * is a BLAKE2b chain over the protocol label, the version, the cluster id and
 * every byte of every message; each side signs "meridian-link-v1 <role>" || h
 * (the responder over h up to its identity, the initiator over h up to its
 * own), so a signature binds both ephemerals, both identities, the cluster and
 * the version: nothing can be relayed to another pipe or downgraded. Session
 * keys are BLAKE2b keyed with DH(e_i, e_r) over the final h, split into one
 * key per direction. Ephemeral secrets are wiped as soon as the handshake
 * ends (forward secrecy).
 *
 * Trust: each side hands the peer's long-term public key to the caller's
 * trust callback (struct link_config) before anything else: the initiator
 * before it sends msg3, so it never reveals its identity to an untrusted
 * responder; the responder before the session exists. An untrusted key is
 * refused. No plaintext mode exists: a pipe has no session until the
 * handshake completed, and link_seal/link_open need one.
 *
 * Frames: counter (8 bytes, big-endian) | ChaCha20-Poly1305-IETF
 * ciphertext | tag (16). The nonce is the counter, per direction, starting
 * at 0; the counter is the associated data. A receiver accepts exactly the
 * next counter, so replayed, reordered, dropped, truncated, modified or
 * reflected frames are refused. Every LINK_REKEY_INTERVAL frames each
 * direction's key is ratcheted by both ends at the same counter (no
 * message): old keys are gone from memory.
 *
 * Cost to a responder per pipe: msg1 is padded to the size of msg2 (no
 * amplification) and costs one X25519, one Ed25519 signature and a few
 * hashes; nothing allocates, every message has a fixed size and nothing
 * but its fixed-size header fields is read before it is authenticated.
 *
 * Refusals: any refusal of a peer's bytes poisons the handshake or the
 * session (keys wiped, later calls get MRD_ECLOSED); the caller counts it
 * and closes the pipe. A reconnected pipe starts a new handshake.
 *
 * Randomness: none inside. Each handshake takes a 32-byte seed that the
 * caller draws with randombytes_buf() and never reuses: it is the
 * ephemeral secret.
 *
 * Thread safety: none inside; each struct is used by one thread at a time.
 * Errors: MRD_* codes from meridian.h, with a static reason in *why (`why`
 * itself may be NULL):
 *   MRD_EPROTO         malformed, wrong size, invalid ephemeral, bad
 *                      signature or tag, a frame out of order
 *   MRD_EAUTH          an identity the trust callback refused (msg2,
 *                      msg3), or msg1 of another cluster
 *   MRD_EPROTOVERSION  a handshake version this code does not speak
 *   MRD_ETOOBIG        a frame over the session's frame_max
 *   MRD_EFULL          the send counter is exhausted: handshake again
 *   MRD_ECLOSED        the handshake or session was poisoned before
 *   MRD_EINVAL         caller errors (output too small, no session)
 */
#ifndef MRD_LINK_H
#define MRD_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"

/* ------------------------------------------------------------- limits -- */

/* Handshake version, byte 2 of each handshake message. A receiver refuses
 * any other with MRD_EPROTOVERSION: there is no negotiation to downgrade,
 * and the version is also hashed into the transcript.
 *
 * MRD_BENCH_PLAINTEXT (CMake option of the same name, for bench/ only):
 * frames are copied instead of sealed, to measure what encryption costs.
 * Such a build speaks version 0xB0, so it can never talk to a real one,
 * and its meridiand refuses to start unless MRD_BENCH_PLAINTEXT_OK=1 is
 * in its environment. */
#ifdef MRD_BENCH_PLAINTEXT
#define LINK_VERSION 0xb0u
#else
#define LINK_VERSION 1u
#endif
/* Magic, bytes 0 and 1: "ML". Catches a peer that speaks something else. */
#define LINK_MAGIC0 0x4du
#define LINK_MAGIC1 0x4cu
/* Header of each handshake message: magic (2), version, message number. */
#define LINK_HDR_SIZE 4u
/* Cluster id: the topology's (TOPO_CLUSTER_ID_SIZE, checked in link.c). */
#define LINK_CLUSTER_ID_SIZE 16u
/* Ed25519 public key, secret key (seed | public) and signature. */
#define LINK_KEY_SIZE 32u
#define LINK_SECRET_KEY_SIZE 64u
#define LINK_SIG_SIZE 64u
/* X25519 public key, and the seed that is the ephemeral secret. */
#define LINK_EPH_SIZE 32u
#define LINK_SEED_SIZE 32u
/* Symmetric keys and the transcript hash: 256 bits. */
#define LINK_SYM_KEY_SIZE 32u
/* AEAD tag (Poly1305). */
#define LINK_TAG_SIZE 16u
/* An encrypted identity: public key and signature, then the tag. */
#define LINK_ID_BOX_SIZE (LINK_KEY_SIZE + LINK_SIG_SIZE + LINK_TAG_SIZE)

#define LINK_MSG2_SIZE (LINK_HDR_SIZE + LINK_EPH_SIZE + LINK_ID_BOX_SIZE)
/* msg1 is padded with zeros to the size of msg2: whoever opens a pipe
 * sends at least as many bytes as the responder answers with. */
#define LINK_MSG1_SIZE LINK_MSG2_SIZE
#define LINK_MSG1_PAD_SIZE                                                     \
    (LINK_MSG1_SIZE - LINK_HDR_SIZE - LINK_CLUSTER_ID_SIZE - LINK_EPH_SIZE)
#define LINK_MSG3_SIZE (LINK_HDR_SIZE + LINK_ID_BOX_SIZE)

/* Frames: the counter, then ciphertext as long as the plaintext, then the
 * tag. */
#define LINK_CTR_SIZE 8u
#define LINK_FRAME_OVERHEAD (LINK_CTR_SIZE + LINK_TAG_SIZE)
/* Largest plaintext a session may be configured for: a sealed frame still
 * fits the protocol's largest frame. */
#define LINK_FRAME_PLAIN_MAX ((size_t) MRD_FRAME_SIZE_MAX - LINK_FRAME_OVERHEAD)
/* Frames per direction between two key ratchets: about a million, so a key
 * taken from memory opens at most the last million frames, and the ratchet
 * (one BLAKE2b) costs nothing measurable. A protocol constant: both ends
 * must use the same one. */
#define LINK_REKEY_INTERVAL (UINT64_C(1) << 20)
/* Last counter a sender uses; past it link_seal refuses with MRD_EFULL and
 * the pipe must handshake again. At ten million frames a second this is
 * 14,000 years, and it keeps every counter sum far from wrapping. */
#define LINK_COUNTER_MAX (UINT64_C(1) << 62)

_Static_assert(
    LINK_MSG1_SIZE >= LINK_HDR_SIZE + LINK_CLUSTER_ID_SIZE + LINK_EPH_SIZE,
    "msg1 fields fit its padded size");
_Static_assert(LINK_MSG3_SIZE <= LINK_MSG2_SIZE, "no message outgrows msg1");
_Static_assert(LINK_REKEY_INTERVAL < LINK_COUNTER_MAX, "rekey before the end");
_Static_assert(
    LINK_FRAME_PLAIN_MAX + LINK_FRAME_OVERHEAD == (size_t) MRD_FRAME_SIZE_MAX,
    "a sealed largest frame is the protocol's largest");

/* ------------------------------------------------------------- config -- */

/* True when the caller trusts this long-term public key: a node key in the
 * current topology, a client key in the cluster's client list. Called once
 * per handshake, after the peer proved it holds the key. */
typedef bool (*link_trust_fn)(void *arg, const uint8_t pk[LINK_KEY_SIZE]);

/* Borrowed by each handshake that uses it: it must outlive the handshake
 * (not the session). */
struct link_config {
    uint8_t        cluster_id[LINK_CLUSTER_ID_SIZE];
    const uint8_t *pk; /* this side's Ed25519 public key, LINK_KEY_SIZE */
    const uint8_t *sk; /* its secret key, LINK_SECRET_KEY_SIZE */
    link_trust_fn  trust; /* never NULL: there is no "trust anyone" */
    void          *trust_arg;
    size_t         frame_max; /* plaintext per frame, 1..LINK_FRAME_PLAIN_MAX */
};

/* ------------------------------------------------------------ session -- */

/* The result of a handshake. Plain data with no pointers; owns its keys:
 * link_session_wipe() when the pipe closes. */
struct link_session {
    uint8_t  tx_key[LINK_SYM_KEY_SIZE];
    uint8_t  rx_key[LINK_SYM_KEY_SIZE];
    uint64_t tx_next; /* counter of the next frame sealed */
    uint64_t rx_next; /* counter the next frame opened must carry */
    size_t   frame_max;
    uint8_t  peer_pk[LINK_KEY_SIZE]; /* the identity the caller trusted */
    bool     established; /* set by a completed handshake only */
    bool     poisoned; /* a refusal happened: keys wiped, pipe to close */
};

/* Seals plain[0..len) into out (room for len + LINK_FRAME_OVERHEAD bytes,
 * out_cap says how many); *out_len_out is the frame's length. out must not
 * overlap plain. MRD_EINVAL when there is no session, len > frame_max or
 * out is too small (nothing changes); MRD_EFULL past LINK_COUNTER_MAX;
 * MRD_ECLOSED when poisoned. */
MRD_MUST_USE int link_seal(struct link_session *s, const uint8_t *plain,
    size_t len, uint8_t *out, size_t out_cap, size_t *out_len_out,
    const char **why);

/* Opens frame[0..len) into out (room for len - LINK_FRAME_OVERHEAD bytes);
 * *out_len_out is the plaintext's length. The frame must carry exactly the
 * next counter and a valid tag; any refusal of the frame poisons the
 * session (MRD_EPROTO, MRD_ETOOBIG). MRD_EINVAL when there is no session
 * or out is too small for a frame that is not otherwise refused (nothing
 * changes); MRD_ECLOSED when poisoned. out may be frame +
 * LINK_CTR_SIZE (opened in place: the tag is checked first, then the
 * cipher reads each byte before it writes it); no other overlap is
 * allowed. */
MRD_MUST_USE int link_open(struct link_session *s, const uint8_t *frame,
    size_t len, uint8_t *out, size_t out_cap, size_t *out_len_out,
    const char **why);

/* Zeroes every key and counter; the session is then neither established
 * nor usable. Safe on a zeroed or already wiped session. */
void link_session_wipe(struct link_session *s);

/* Tests only: jump both counters (to cross a rekey point or reach
 * LINK_COUNTER_MAX without sealing 2^20 frames). Both ends must jump to
 * the same values, as they would have reached them together. */
void link_session_test_skip(struct link_session *s, uint64_t tx, uint64_t rx);

/* ---------------------------------------------------------- handshake -- */

enum link_hs_state {
    LINK_HS_NONE = 0, /* zeroed, or wiped */
    LINK_HS_SENT1, /* initiator: msg1 written, waiting for msg2 */
    LINK_HS_WAIT1, /* responder: waiting for msg1 */
    LINK_HS_SENT2, /* responder: msg2 written, waiting for msg3 */
    LINK_HS_DONE, /* the session was handed out; secrets wiped */
    LINK_HS_FAILED, /* refused a message; secrets wiped */
};

/* One side of one handshake. No allocation; wiped on completion or
 * failure, and by link_hs_wipe() when the pipe closes midway. */
struct link_hs {
    const struct link_config *cfg; /* borrowed */
    enum link_hs_state        state;
    uint8_t                   e_sk[LINK_SEED_SIZE];
    uint8_t                   e_pk[LINK_EPH_SIZE];
    uint8_t                   dh[LINK_SYM_KEY_SIZE];
    uint8_t                   k[LINK_SYM_KEY_SIZE];
    uint8_t                   h[LINK_SYM_KEY_SIZE];
};

/* Initiator: starts a handshake with ephemeral secret seed and writes
 * msg1. cfg must be valid (asserted). */
void link_hs_initiate(struct link_hs *hs, const struct link_config *cfg,
    const uint8_t seed[LINK_SEED_SIZE], uint8_t msg1_out[LINK_MSG1_SIZE]);

/* Responder: prepares to receive msg1 with ephemeral secret seed. */
void link_hs_respond(struct link_hs *hs, const struct link_config *cfg,
    const uint8_t seed[LINK_SEED_SIZE]);

/* Responder: takes msg1, writes msg2. MRD_EPROTO (wrong size, magic,
 * message number, cluster id, non-zero padding, invalid ephemeral),
 * MRD_EPROTOVERSION, MRD_ECLOSED when already failed. */
MRD_MUST_USE int link_hs_recv_msg1(struct link_hs *hs, const uint8_t *msg,
    size_t len, uint8_t msg2_out[LINK_MSG2_SIZE], const char **why);

/* Initiator: takes msg2, checks the responder's identity (tag, signature,
 * trust callback), writes msg3 and fills *session_out: the session may be
 * used at once (frames sent before msg3 arrives are refused by the
 * responder, so the caller sends msg3 first). Refusals as above. */
MRD_MUST_USE int link_hs_recv_msg2(struct link_hs *hs, const uint8_t *msg,
    size_t len, uint8_t msg3_out[LINK_MSG3_SIZE],
    struct link_session *session_out, const char **why);

/* Responder: takes msg3, checks the initiator's identity (tag, signature,
 * trust callback) and fills *session_out. Refusals as above. */
MRD_MUST_USE int link_hs_recv_msg3(struct link_hs *hs, const uint8_t *msg,
    size_t len, struct link_session *session_out, const char **why);

/* Zeroes every secret; the state becomes LINK_HS_NONE. */
void link_hs_wipe(struct link_hs *hs);

#endif
