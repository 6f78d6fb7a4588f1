/*
 * proxy.h: a userspace TCP fault proxy, the chaos harness's stand-in for
 * the network. The machine has no netem, so every fault a WAN or a broken
 * switch can cause (partitions, latency, thin pipes, bit rot, lost or
 * repeated messages, slow closes) is made here, in bytes, between two
 * sockets.
 *
 * One proxy is one directed link: it listens on 127.0.0.1 (an ephemeral
 * port unless one is asked for) and forwards every connection it accepts
 * to one upstream host:port, over a new upstream connection of its own.
 * The runner puts one proxy on every link it wants to break (node to node,
 * client to node) and points the dialing side at chaos_proxy_port().
 *
 * Directions. "up" is client to upstream (the bytes the dialer sends),
 * "down" is upstream to client. Faults that make sense per direction are
 * set per direction, so a one-way partition is a blackhole on one side.
 *
 * The faults (struct chaos_faults; a zeroed struct is "pass"):
 *   blackhole  Bytes read from the source are discarded and nothing is
 *              forwarded, not even a close; the connection stays open.
 *              Bytes already in the delay queue when it starts are held,
 *              as if on the wire, and go out when it lifts. In frames
 *              mode whole messages are discarded, so the stream is still
 *              well-framed when the blackhole lifts; otherwise the
 *              receiver sees the stream cut short and then resume.
 *   refuse     Connections accepted while it is on are closed at once
 *              with an RST (the client's connect succeeds, then its first
 *              read fails). Existing connections are not touched.
 *   latency    Each chunk read is released latency_ms + U[0, jitter_ms]
 *              later, but never before the chunk ahead of it: jitter
 *              stretches gaps, it never reorders bytes. A close travels
 *              behind the last chunk with its own sampled delay.
 *   rate       Token bucket of rate_bps bytes per second per direction,
 *              CHAOS_RATE_BURST_MS of burst; 0 means unlimited.
 *   corrupt    With probability corrupt_ppm per chunk, one random bit of
 *              the chunk is flipped. A chunk is what one read returned
 *              (in frames mode: the bytes passed through in one read, or
 *              one whole held message), so the flip rate follows the
 *              sender's write pattern.
 *   frames     The proxy follows NNG's SP-over-TCP framing in each
 *              direction (an 8-byte connection header 00 'S' 'P' 00, a
 *              16-bit protocol id, 2 reserved bytes; then messages, each
 *              an 8-byte big-endian length and that many bytes). With
 *              frames on, each message of at most CHAOS_FRAME_SIZE_MAX
 *              bytes is held until complete, then dropped (drop_ppm),
 *              otherwise sent twice (dup_ppm) and/or preceded by a copy
 *              of one of the last CHAOS_REPLAY_KEEP messages delivered on
 *              that connection and direction (replay_ppm). The stream the
 *              receiver sees stays well-framed. Larger messages, and
 *              messages in flight when frames mode is switched, pass
 *              untouched; a stream that does not start with the SP
 *              header passes untouched for good.
 *   close      When a source closes (EOF), the close reaches the other
 *              side close_delay_ms after it would have (a slow close).
 * Besides the fault set, chaos_proxy_reset() aborts every live connection
 * with an RST on both sides (SO_LINGER 0), once.
 *
 * A new fault set applies at once to existing connections: from the return
 * of chaos_proxy_set(), every byte the proxy reads is handled by it. Chunks
 * already queued keep the release time they were given.
 *
 * Replay. Each proxy has a seed. Every connection and direction draws its
 * faults from its own two PRNG streams, derived from the seed and the
 * connection's accept order (0, 1, 2, ...): one for per-message decisions
 * (frames mode), one for per-chunk decisions (jitter, corruption). So the
 * same seed and the same messages on the nth connection give the same
 * drops, duplicates and replays, whatever else runs at the same time;
 * per-chunk decisions also depend on how the kernel split the bytes.
 *
 * Bounds. At most CHAOS_CONNS_MAX connections per proxy (more are reset at
 * once and counted). Each direction of a connection holds at most about
 * CHAOS_DIR_QUEUED_MAX bytes (delayed chunks plus a message being held);
 * past that the proxy stops reading from the source, so the sender feels
 * TCP back-pressure. A held message, its duplicate and one replay may go
 * over the mark once, by at most 3 * CHAOS_FRAME_SIZE_MAX.
 *
 * Threads and ownership. Each proxy runs one I/O thread (poll over the
 * listener and its connections; timers for delayed bytes). chaos_proxy_set,
 * chaos_proxy_get, chaos_proxy_reset, chaos_proxy_stats and
 * chaos_proxy_port may be called from any thread at any time between start and
 * stop; set and reset wait until the I/O thread has taken them in (at most one
 * loop turn, a few milliseconds). chaos_proxy_stop must be called once, by the
 * owner, when no other call on that proxy can still be running. Memory: the
 * proxy is allocated once at start, sized for CHAOS_CONNS_MAX connections;
 * chunks and held messages are allocated as bytes arrive, within the bounds
 * above.
 *
 * Needs common/ (clocks, assertions): link mrd_common's objects (or
 * mrd_node) with mrd_chaos. Plain POSIX sockets and pthreads; no NNG.
 */
#ifndef MRD_CHAOS_PROXY_H
#define MRD_CHAOS_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

/* ------------------------------------------------------------- limits -- */

/* Connections one proxy forwards at once. One link between two nodes
 * carries a few NNG pipes (requests, pulls, gossip) and a client a few
 * more; 64 leaves room for reconnect churn. Sizes the poll array. */
#define CHAOS_CONNS_MAX 64u
/* Bytes taken from a source in one read: one chunk of the delay queue. */
#define CHAOS_CHUNK_SIZE_MAX (64u * 1024u)
/* Largest SP message (length field included) frames mode holds whole:
 * one event at MRD_EVENT_DATA_SIZE_MAX plus its envelope and seal. */
#define CHAOS_FRAME_SIZE_MAX (MRD_EVENT_DATA_SIZE_MAX + 64u * 1024u)
/* Bytes a direction of a connection holds before the proxy stops reading
 * it: 4 MiB is 150 ms (the slowest WAN pair) at about 27 MB/s. */
#define CHAOS_DIR_QUEUED_MAX (4u * 1024u * 1024u)
/* Earlier messages kept per connection and direction for replays, and the
 * largest one kept: replays are about small control messages, and the
 * copies must stay cheap. */
#define CHAOS_REPLAY_KEEP 4u
#define CHAOS_REPLAY_SIZE_MAX (64u * 1024u)
/* Latency, jitter and slow close above a minute are not a WAN anymore:
 * a caller asking for them has made a mistake. */
#define CHAOS_DELAY_MS_MAX 60000u
/* Depth of the token bucket, as time at the configured rate: small enough
 * that a 1 s measurement sees the rate, large enough to write in pieces
 * rather than bytes. */
#define CHAOS_RATE_BURST_MS 20u
/* Probabilities are in parts per million, so decisions are integers and
 * replay bit for bit. */
#define CHAOS_PPM 1000000u

_Static_assert(CHAOS_DIR_QUEUED_MAX >= 3u * CHAOS_FRAME_SIZE_MAX,
    "a held message, its duplicate and a replay fit one direction");
_Static_assert(CHAOS_REPLAY_SIZE_MAX <= CHAOS_FRAME_SIZE_MAX,
    "only held messages are kept for replay");
_Static_assert(
    CHAOS_CHUNK_SIZE_MAX <= CHAOS_DIR_QUEUED_MAX, "one read fits a direction");

/* -------------------------------------------------------------- types -- */

/* Directions, also the index of struct chaos_faults.dir. */
enum chaos_dir {
    CHAOS_UP   = 0, /* client -> upstream */
    CHAOS_DOWN = 1, /* upstream -> client */
    CHAOS_DIRS = 2
};

/* Faults of one direction. Zero is "pass". */
struct chaos_dir_faults {
    bool     blackhole; /* read and discard; forward nothing */
    uint32_t latency_ms; /* base one-way delay, <= CHAOS_DELAY_MS_MAX */
    uint32_t jitter_ms; /* plus U[0, jitter_ms], <= CHAOS_DELAY_MS_MAX */
    uint64_t rate_bps; /* bytes per second; 0 = unlimited */
    uint32_t corrupt_ppm; /* per chunk: flip one random bit */
    uint32_t drop_ppm; /* frames mode, per message: drop it */
    uint32_t dup_ppm; /* frames mode, per message: send it twice */
    uint32_t replay_ppm; /* frames mode, per message: resend an old one */
};

/* A whole fault set. Zero is "pass". */
struct chaos_faults {
    bool                    refuse; /* reset new connections at once */
    bool                    frames; /* follow SP framing (see above) */
    uint32_t                close_delay_ms; /* slow close, both directions */
    struct chaos_dir_faults dir[CHAOS_DIRS];
};

struct chaos_proxy_config {
    /* Numeric IPv4 or IPv6 address of the upstream, e.g. "127.0.0.1";
     * copied at start. */
    const char         *upstream_host;
    uint16_t            upstream_port; /* not 0 */
    uint16_t            listen_port; /* on 127.0.0.1; 0 picks a free port */
    uint64_t            seed; /* of every fault decision */
    struct chaos_faults faults; /* the initial fault set */
};

/* Counters since start; each is read atomically, the set is not a
 * snapshot. */
struct chaos_proxy_stats {
    uint64_t conns_accepted; /* taken in, failed ones included */
    uint64_t conns_refused; /* reset at once: refuse was on */
    uint64_t conns_full; /* reset at once: CHAOS_CONNS_MAX live */
    uint64_t conns_failed; /* upstream unreachable: client reset */
    uint64_t conns_reset; /* aborted by chaos_proxy_reset() */
    uint64_t conns_open; /* live now */
    uint64_t bytes_fwd[CHAOS_DIRS]; /* written to the far side */
    uint64_t bytes_dropped; /* read and discarded (any fault) */
    uint64_t chunks_corrupted;
    uint64_t frames_dropped;
    uint64_t frames_duplicated;
    uint64_t frames_replayed;
};

struct chaos_proxy; /* opaque */

/* ---------------------------------------------------------------- API -- */

/* Checks a fault set against the limits: MRD_OK, or MRD_EINVAL with a
 * static reason in *why (why may be NULL). */
MRD_MUST_USE int chaos_faults_check(
    const struct chaos_faults *faults, const char **why);

/*
 * Binds the listener, resolves the upstream and starts the I/O thread.
 * On success *out goes to chaos_proxy_stop() once; on error *out is NULL,
 * *why (if why is not NULL) holds a static reason and nothing is left
 * running. Errors: MRD_EINVAL (a bad config or fault set, an upstream that
 * is not a numeric address, a listen port that cannot be bound),
 * MRD_ENOMEM, MRD_EFULL (out of descriptors), MRD_EINTERNAL (another OS
 * failure; errno holds its code).
 */
MRD_MUST_USE int chaos_proxy_start(const struct chaos_proxy_config *cfg,
    struct chaos_proxy **out, const char **why);

/* The port the proxy listens on (on 127.0.0.1). */
uint16_t chaos_proxy_port(const struct chaos_proxy *proxy);

/* Replaces the whole fault set; returns once the I/O thread uses it.
 * MRD_EINVAL (and the old set stays) when chaos_faults_check refuses. */
MRD_MUST_USE int chaos_proxy_set(
    struct chaos_proxy *proxy, const struct chaos_faults *faults);

/* The fault set in force. */
void chaos_proxy_get(struct chaos_proxy *proxy, struct chaos_faults *out);

/* Aborts every live connection with an RST on both sides; returns once
 * done. Later connections are not affected. */
void chaos_proxy_reset(struct chaos_proxy *proxy);

void chaos_proxy_stats(
    const struct chaos_proxy *proxy, struct chaos_proxy_stats *out);

/* Stops the I/O thread, resets every live connection (a dead link, not a
 * graceful one), closes the listener and frees the proxy. NULL is a
 * no-op. */
void chaos_proxy_stop(struct chaos_proxy *proxy);

#endif /* MRD_CHAOS_PROXY_H */
