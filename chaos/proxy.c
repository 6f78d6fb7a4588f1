/*
 * proxy.c: the fault proxy (proxy.h).
 *
 * One I/O thread per proxy runs a level-triggered poll loop over a wake
 * pipe, the listener and the two sockets of each connection (a fixed slot
 * table of CHAOS_CONNS_MAX, so the poll array never grows). Each
 * connection has two pipes, one per direction. A pipe reads its source,
 * passes the bytes through its SP framer (which holds whole messages only
 * in frames mode) and turns them into chunks in a FIFO delay queue, each
 * with a release time; corruption and blackholing happen as a chunk is
 * queued, latency is its release time, and the token bucket paces the
 * writes of due chunks. Because release times never decrease along the
 * queue, jitter cannot reorder bytes, and the close (EOF) waits behind the
 * last chunk.
 *
 * Every loop turn: poll until the earliest release time, a token refill,
 * a readable or writable socket or a wake; then take the fault set (so a
 * byte read after chaos_proxy_set() returned sees the new set), run a
 * pending reset, accept, and service every connection: finish a connect,
 * read each source once, flush due chunks, propagate closes. A read takes
 * at most CHAOS_CHUNK_SIZE_MAX bytes and a flush at most
 * CHAOS_FLUSH_CHUNKS_MAX chunks, so one busy connection cannot starve the
 * others.
 *
 * Errors on a socket (a reset, a failed write) abort the connection with
 * an RST on both sides: a broken link looks broken at both ends. An
 * allocation failure does the same, since silently losing bytes would be a
 * fault nobody asked for.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------- limits -- */

/* Accepts per loop turn: a connect storm cannot starve forwarding. */
#define CHAOS_ACCEPT_BATCH 16u
/* After accept() fails for want of descriptors or memory, the listener is
 * left out of poll this long: it stays readable, and polling it would
 * spin the thread until something frees up. */
#define CHAOS_ACCEPT_PAUSE_MS 100u
/* Chunks one pipe writes per loop turn: fairness between connections. */
#define CHAOS_FLUSH_CHUNKS_MAX 64u
/* Longest sleep with nothing due. Wakes come through the pipe; this is
 * only a safety net against a lost one. */
#define CHAOS_POLL_MS_MAX 1000u
/* SP-over-TCP: the connection header and a message's length field. */
#define CHAOS_SP_HEADER_SIZE 8u
#define CHAOS_SP_LEN_SIZE 8u
/* Pass-through bytes of one read: the read itself plus the header or
 * length bytes the framer held back from earlier reads. */
#define CHAOS_STAGE_SIZE (CHAOS_CHUNK_SIZE_MAX + CHAOS_SP_HEADER_SIZE)
/* The wake pipe, the listener, two sockets per connection. */
#define CHAOS_POLLFDS (2u + 2u * CHAOS_CONNS_MAX)
/* Listen backlog: a burst of reconnects queues rather than fails. */
#define CHAOS_BACKLOG 128

_Static_assert(CHAOS_REPLAY_SIZE_MAX >= CHAOS_SP_LEN_SIZE,
    "a kept message has its length field");
_Static_assert(CHAOS_POLLFDS <= 1024u, "poll array stays small");

/* Sides of a connection, the index of chaos_conn.fd. A direction reads
 * its own index and writes the other: up reads the client. */
#define CHAOS_CLIENT 0
#define CHAOS_UPSTREAM 1

/* Counters, in struct chaos_proxy_stats order. */
enum chaos_ctr {
    CHAOS_C_ACCEPTED,
    CHAOS_C_REFUSED,
    CHAOS_C_FULL,
    CHAOS_C_FAILED,
    CHAOS_C_RESET,
    CHAOS_C_OPEN,
    CHAOS_C_FWD_UP,
    CHAOS_C_FWD_DOWN,
    CHAOS_C_DROPPED,
    CHAOS_C_CORRUPTED,
    CHAOS_C_FR_DROPPED,
    CHAOS_C_FR_DUPLICATED,
    CHAOS_C_FR_REPLAYED,
    CHAOS_C_COUNT_
};

/* -------------------------------------------------------------- types -- */

/* splitmix64: one 64-bit word of state, good enough statistics for fault
 * decisions, and trivially seeded per stream. */
struct chaos_rng {
    uint64_t s;
};

/* Bytes on their way, released at release_us; data[off..size) is left. */
struct chaos_chunk {
    struct chaos_chunk *next;
    uint64_t            release_us;
    size_t              size;
    size_t              off;
    uint8_t             data[];
};

enum chaos_fr_state {
    CHAOS_FR_HEADER, /* the first bytes, while they match the SP header */
    CHAOS_FR_LEN, /* a message's 8-byte length field */
    CHAOS_FR_HOLD, /* a message held whole (frames mode) */
    CHAOS_FR_STREAM, /* a message passed through as it comes */
    CHAOS_FR_RAW /* not SP: everything passes, for good */
};

struct chaos_framer {
    enum chaos_fr_state state;
    uint8_t             small[CHAOS_SP_LEN_SIZE]; /* a length field */
    size_t              small_len; /* header or length bytes seen */
    size_t              small_passed; /* of those, already passed on */
    uint64_t            body_left; /* CHAOS_FR_STREAM */
    struct chaos_chunk *msg; /* CHAOS_FR_HOLD: data[0..off) filled */
    uint8_t            *keep[CHAOS_REPLAY_KEEP]; /* delivered, for replay */
    size_t              keep_size[CHAOS_REPLAY_KEEP];
    uint32_t            keep_count;
    uint32_t            keep_next;
};

/* One direction of one connection. */
struct chaos_pipe {
    struct chaos_chunk *head;
    struct chaos_chunk *tail;
    size_t              queued; /* bytes in the queue and the held msg */
    uint64_t            release_last_us; /* of the newest chunk */
    double              tokens;
    uint64_t            tokens_us;
    uint64_t            rate_bps; /* the rate the bucket was filled for */
    bool                want_write; /* the destination was full */
    bool                eof; /* the source closed */
    bool                shut; /* the close went to the destination */
    uint64_t            eof_release_us;
    struct chaos_framer fr;
    struct chaos_rng    rng_msg; /* per-message decisions */
    struct chaos_rng    rng_chunk; /* jitter, corruption */
};

struct chaos_conn {
    bool              used;
    bool              connecting; /* upstream connect in progress */
    uint32_t          slot; /* index in the table and poll array */
    int               fd[2]; /* CHAOS_CLIENT, CHAOS_UPSTREAM */
    struct chaos_pipe pipe[CHAOS_DIRS];
};

struct chaos_proxy {
    /* Set at start, then read-only. */
    struct sockaddr_storage up_addr;
    socklen_t               up_addr_len;
    uint16_t                port;
    uint64_t                seed;
    int                     listen_fd;
    int                     wake[2];
    pthread_t               thread;
    /* Shared with the callers, under mu. */
    pthread_mutex_t      mu;
    pthread_cond_t       cv;
    struct chaos_faults  faults;
    uint64_t             faults_gen;
    uint64_t             faults_gen_applied;
    uint64_t             reset_gen;
    uint64_t             reset_gen_done;
    bool                 stopping;
    atomic_uint_fast64_t ctr[CHAOS_C_COUNT_];
    /* The I/O thread's own. */
    struct chaos_faults cur; /* the set of this loop turn */
    uint64_t            conn_index_next; /* accept order, seeds the PRNGs */
    uint64_t            accept_pause_until_us;
    struct chaos_conn   conns[CHAOS_CONNS_MAX];
    struct pollfd       pfd[CHAOS_POLLFDS];
    uint8_t             rbuf[CHAOS_CHUNK_SIZE_MAX];
    uint8_t             stage[CHAOS_STAGE_SIZE];
    size_t              stage_len;
};

/* ---------------------------------------------------------- utilities -- */

static void
chaos_ctr_add(struct chaos_proxy *p, enum chaos_ctr c, uint64_t n)
{
    atomic_fetch_add_explicit(&p->ctr[c], n, memory_order_relaxed);
}

static uint64_t
chaos_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t
chaos_rng_next(struct chaos_rng *r)
{
    r->s += 0x9e3779b97f4a7c15u;
    return chaos_mix64(r->s);
}

/* Uniform in [0, n); every n here is below 2^27, so the modulo bias is
 * below 2^-37. */
static uint64_t
chaos_rng_below(struct chaos_rng *r, uint64_t n)
{
    MRD_ASSERT(n > 0);
    return chaos_rng_next(r) % n;
}

/* True with probability ppm / CHAOS_PPM. One draw even for 0, so a caller
 * can keep its stream independent of which faults are on. */
static bool
chaos_rng_ppm(struct chaos_rng *r, uint32_t ppm)
{
    return chaos_rng_below(r, CHAOS_PPM) < ppm;
}

/* Stream `which` of direction d of the conn_index-th connection. */
static void
chaos_rng_seed(
    struct chaos_rng *r, uint64_t seed, uint64_t conn_index, int d, int which)
{
    uint64_t tag = conn_index * 4u + (uint64_t) d * 2u + (uint64_t) which;
    r->s         = chaos_mix64(seed ^ chaos_mix64(tag + 1u));
}

static uint64_t
chaos_min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static int
chaos_fd_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) {
        return -1;
    }
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* Non-blocking, and no Nagle: the proxy decides when bytes leave, and a
 * 40 ms delayed-ACK stall would swamp the latencies it is asked for. */
static int
chaos_fd_setup(int fd)
{
    int one = 1;
    if (chaos_fd_nonblock(fd) != 0) {
        return -1;
    }
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Closes with an RST: SO_LINGER on with a zero timeout discards the send
 * buffer and aborts, so the peer sees ECONNRESET, not a clean EOF. */
static void
chaos_fd_abort(int fd)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    if (fd < 0) {
        return;
    }
    (void) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    (void) close(fd);
}

static void
chaos_wake(struct chaos_proxy *p)
{
    uint8_t b = 1;
    /* A full pipe already holds a wake: EAGAIN is success. */
    ssize_t n = write(p->wake[1], &b, 1);
    (void) n;
}

static int
chaos_errno_code(int e)
{
    switch (e) {
    case ENOMEM:
    case ENOBUFS:
        return MRD_ENOMEM;
    case EMFILE:
    case ENFILE:
        return MRD_EFULL;
    case EADDRINUSE:
    case EADDRNOTAVAIL:
    case EACCES:
        return MRD_EINVAL;
    default:
        return MRD_EINTERNAL;
    }
}

int
chaos_faults_check(const struct chaos_faults *f, const char **why)
{
    const char *reason = NULL;
    if (f == NULL) {
        reason = "no fault set";
    } else if (f->close_delay_ms > CHAOS_DELAY_MS_MAX) {
        reason = "close_delay_ms above CHAOS_DELAY_MS_MAX";
    }
    for (int d = 0; reason == NULL && d < CHAOS_DIRS; d++) {
        const struct chaos_dir_faults *df = &f->dir[d];
        if (df->latency_ms > CHAOS_DELAY_MS_MAX
            || df->jitter_ms > CHAOS_DELAY_MS_MAX) {
            reason = "latency_ms or jitter_ms above CHAOS_DELAY_MS_MAX";
        } else if (df->corrupt_ppm > CHAOS_PPM || df->drop_ppm > CHAOS_PPM
            || df->dup_ppm > CHAOS_PPM || df->replay_ppm > CHAOS_PPM) {
            reason = "a probability above CHAOS_PPM (one million)";
        }
    }
    if (why != NULL) {
        *why = reason;
    }
    return reason == NULL ? MRD_OK : MRD_EINVAL;
}

/* ------------------------------------------------------------- chunks -- */

static struct chaos_chunk *
chaos_chunk_new(size_t size)
{
    struct chaos_chunk *ch = malloc(sizeof *ch + size);
    if (ch == NULL) {
        return NULL;
    }
    ch->next       = NULL;
    ch->release_us = 0;
    ch->size       = size;
    ch->off        = 0;
    return ch;
}

static struct chaos_chunk *
chaos_chunk_copy(const uint8_t *data, size_t size)
{
    struct chaos_chunk *ch = chaos_chunk_new(size);
    if (ch != NULL) {
        memcpy(ch->data, data, size);
    }
    return ch;
}

/* One-way delay, jitter included, for the next chunk of direction d. */
static uint64_t
chaos_pipe_delay_us(struct chaos_proxy *p, struct chaos_pipe *pp, int d)
{
    const struct chaos_dir_faults *f     = &p->cur.dir[d];
    uint64_t                       delay = (uint64_t) f->latency_ms * 1000u;
    if (f->jitter_ms > 0) {
        delay += chaos_rng_below(
            &pp->rng_chunk, (uint64_t) f->jitter_ms * 1000u + 1u);
    }
    return delay;
}

/*
 * Queues ch in direction d, or drops it under a blackhole; takes ch.
 * Corruption happens here, once per chunk, so a duplicate of a message
 * gets its own flip. The release time never goes backwards: that is what
 * keeps jittered bytes in order.
 */
static void
chaos_pipe_push(struct chaos_proxy *p, struct chaos_conn *c, int d,
    struct chaos_chunk *ch, uint64_t now_us)
{
    struct chaos_pipe             *pp = &c->pipe[d];
    const struct chaos_dir_faults *f  = &p->cur.dir[d];
    MRD_ASSERT(ch->off == 0 && ch->next == NULL);
    if (f->blackhole || ch->size == 0) {
        chaos_ctr_add(p, CHAOS_C_DROPPED, ch->size);
        free(ch);
        return;
    }
    if (f->corrupt_ppm > 0 && chaos_rng_ppm(&pp->rng_chunk, f->corrupt_ppm)) {
        uint64_t bit = chaos_rng_below(&pp->rng_chunk, ch->size * 8u);
        ch->data[bit / 8u] ^= (uint8_t) (1u << (bit % 8u));
        chaos_ctr_add(p, CHAOS_C_CORRUPTED, 1);
    }
    uint64_t release = now_us + chaos_pipe_delay_us(p, pp, d);
    if (release < pp->release_last_us) {
        release = pp->release_last_us;
    }
    ch->release_us      = release;
    pp->release_last_us = release;
    if (pp->tail == NULL) {
        pp->head = ch;
    } else {
        pp->tail->next = ch;
    }
    pp->tail = ch;
    pp->queued += ch->size;
}

/* Queues the staged pass-through bytes as one chunk. */
static MRD_MUST_USE int
chaos_stage_flush(
    struct chaos_proxy *p, struct chaos_conn *c, int d, uint64_t now_us)
{
    if (p->stage_len == 0) {
        return MRD_OK;
    }
    struct chaos_chunk *ch = chaos_chunk_copy(p->stage, p->stage_len);
    p->stage_len           = 0;
    if (ch == NULL) {
        return MRD_ENOMEM;
    }
    chaos_pipe_push(p, c, d, ch, now_us);
    return MRD_OK;
}

static void
chaos_stage_add(struct chaos_proxy *p, const uint8_t *data, size_t size)
{
    MRD_ASSERT(p->stage_len + size <= sizeof p->stage);
    memcpy(p->stage + p->stage_len, data, size);
    p->stage_len += size;
}

/* ------------------------------------------------------------ framing -- */

/* Keeps a copy of a delivered message for later replays; best effort (an
 * allocation failure only means one fewer candidate). */
static void
chaos_framer_keep(struct chaos_framer *fr, const uint8_t *msg, size_t size)
{
    if (size > CHAOS_REPLAY_SIZE_MAX) {
        return;
    }
    uint8_t *copy = malloc(size);
    if (copy == NULL) {
        return;
    }
    memcpy(copy, msg, size);
    uint32_t k = fr->keep_next;
    free(fr->keep[k]);
    fr->keep[k]      = copy;
    fr->keep_size[k] = size;
    fr->keep_next    = (k + 1u) % CHAOS_REPLAY_KEEP;
    if (fr->keep_count < CHAOS_REPLAY_KEEP) {
        fr->keep_count++;
    }
}

/*
 * A held message is complete: decide its fate. Four draws per message,
 * always, so the nth message of a connection meets the same decisions on
 * every run with the same seed. Order on the wire: a replayed old message,
 * the message, its duplicate.
 */
static MRD_MUST_USE int
chaos_framer_done(
    struct chaos_proxy *p, struct chaos_conn *c, int d, uint64_t now_us)
{
    struct chaos_pipe             *pp  = &c->pipe[d];
    struct chaos_framer           *fr  = &pp->fr;
    const struct chaos_dir_faults *f   = &p->cur.dir[d];
    struct chaos_chunk            *msg = fr->msg;
    bool drop     = chaos_rng_ppm(&pp->rng_msg, f->drop_ppm) && p->cur.frames;
    bool dup      = chaos_rng_ppm(&pp->rng_msg, f->dup_ppm) && p->cur.frames;
    bool replay   = chaos_rng_ppm(&pp->rng_msg, f->replay_ppm) && p->cur.frames;
    uint64_t pick = chaos_rng_next(&pp->rng_msg);

    MRD_ASSERT(msg != NULL && msg->off == msg->size);
    fr->msg   = NULL;
    fr->state = CHAOS_FR_LEN;
    pp->queued -= msg->size; /* counted again when queued */
    msg->off = 0;
    if (drop) {
        chaos_ctr_add(p, CHAOS_C_FR_DROPPED, 1);
        chaos_ctr_add(p, CHAOS_C_DROPPED, msg->size);
        free(msg);
        return MRD_OK;
    }
    if (replay && fr->keep_count > 0) {
        uint32_t            k = (uint32_t) (pick % fr->keep_count);
        struct chaos_chunk *old
            = chaos_chunk_copy(fr->keep[k], fr->keep_size[k]);
        if (old == NULL) {
            free(msg);
            return MRD_ENOMEM;
        }
        chaos_pipe_push(p, c, d, old, now_us);
        chaos_ctr_add(p, CHAOS_C_FR_REPLAYED, 1);
    }
    struct chaos_chunk *twin = NULL;
    if (dup) {
        twin = chaos_chunk_copy(msg->data, msg->size);
        if (twin == NULL) {
            free(msg);
            return MRD_ENOMEM;
        }
    }
    chaos_framer_keep(fr, msg->data, msg->size); /* before any bit flips */
    chaos_pipe_push(p, c, d, msg, now_us);
    if (twin != NULL) {
        chaos_pipe_push(p, c, d, twin, now_us);
        chaos_ctr_add(p, CHAOS_C_FR_DUPLICATED, 1);
    }
    return MRD_OK;
}

/* CHAOS_FR_HEADER: the first bytes pass at once (the header is never
 * faulted, and a non-SP peer may be waiting for an answer to one byte)
 * while the framer checks they are an SP header. A mismatch turns framing
 * off for good. */
static size_t
chaos_framer_header(struct chaos_proxy *p, struct chaos_framer *fr,
    const uint8_t *data, size_t size)
{
    static const uint8_t magic[4] = { 0x00, 'S', 'P', 0x00 };
    size_t               k        = 0;
    for (; k < size && fr->small_len < CHAOS_SP_HEADER_SIZE; k++) {
        if (fr->small_len < sizeof magic && data[k] != magic[fr->small_len]) {
            fr->state = CHAOS_FR_RAW;
            break;
        }
        fr->small_len++;
    }
    chaos_stage_add(p, data, k);
    if (fr->small_len == CHAOS_SP_HEADER_SIZE) {
        fr->state = CHAOS_FR_LEN;
    }
    fr->small_len    = fr->state == CHAOS_FR_HEADER ? fr->small_len : 0;
    fr->small_passed = fr->small_len;
    return k;
}

/* Holds a complete length field's message whole. */
static MRD_MUST_USE int
chaos_framer_hold_start(struct chaos_proxy *p, struct chaos_conn *c, int d,
    uint64_t len, uint64_t now_us)
{
    struct chaos_framer *fr  = &c->pipe[d].fr;
    struct chaos_chunk  *msg = chaos_chunk_new(CHAOS_SP_LEN_SIZE + len);
    if (msg == NULL) {
        return MRD_ENOMEM;
    }
    memcpy(msg->data, fr->small, CHAOS_SP_LEN_SIZE);
    msg->off  = CHAOS_SP_LEN_SIZE;
    fr->msg   = msg;
    fr->state = CHAOS_FR_HOLD;
    c->pipe[d].queued += msg->size;
    if (len > 0) {
        return MRD_OK;
    }
    int rv = chaos_stage_flush(p, c, d, now_us); /* keep order */
    return rv != MRD_OK ? rv : chaos_framer_done(p, c, d, now_us);
}

/*
 * CHAOS_FR_LEN: collects a length field. With frames mode off its bytes
 * pass as they come (small_passed counts them). Once complete, the message
 * is held whole if frames mode is on, none of the field has passed yet and
 * it fits CHAOS_FRAME_SIZE_MAX; otherwise it streams through untouched.
 */
static MRD_MUST_USE int
chaos_framer_len(struct chaos_proxy *p, struct chaos_conn *c, int d,
    const uint8_t *data, size_t size, size_t *used, uint64_t now_us)
{
    struct chaos_framer *fr   = &c->pipe[d].fr;
    size_t               take = CHAOS_SP_LEN_SIZE - fr->small_len;
    take                      = (size_t) chaos_min64(take, size);
    memcpy(fr->small + fr->small_len, data, take);
    fr->small_len += take;
    *used = take;
    if (!p->cur.frames) {
        chaos_stage_add(
            p, fr->small + fr->small_passed, fr->small_len - fr->small_passed);
        fr->small_passed = fr->small_len;
    }
    if (fr->small_len < CHAOS_SP_LEN_SIZE) {
        return MRD_OK;
    }
    uint64_t len     = mrd_be64_get(fr->small);
    size_t   passed  = fr->small_passed;
    fr->small_len    = 0;
    fr->small_passed = 0;
    if (p->cur.frames && passed == 0
        && len <= CHAOS_FRAME_SIZE_MAX - CHAOS_SP_LEN_SIZE) {
        return chaos_framer_hold_start(p, c, d, len, now_us);
    }
    chaos_stage_add(p, fr->small + passed, CHAOS_SP_LEN_SIZE - passed);
    fr->body_left = len;
    fr->state     = len == 0 ? CHAOS_FR_LEN : CHAOS_FR_STREAM;
    return MRD_OK;
}

/* CHAOS_FR_HOLD: fills the held message; a complete one goes out after
 * the pass-through bytes staged before it. */
static MRD_MUST_USE int
chaos_framer_hold(struct chaos_proxy *p, struct chaos_conn *c, int d,
    const uint8_t *data, size_t size, size_t *used, uint64_t now_us)
{
    struct chaos_chunk *msg  = c->pipe[d].fr.msg;
    size_t              take = (size_t) chaos_min64(msg->size - msg->off, size);
    memcpy(msg->data + msg->off, data, take);
    msg->off += take;
    *used = take;
    if (msg->off < msg->size) {
        return MRD_OK;
    }
    int rv = chaos_stage_flush(p, c, d, now_us);
    if (rv != MRD_OK) {
        return rv;
    }
    return chaos_framer_done(p, c, d, now_us);
}

/* Runs one read's bytes through the framer of direction d. Every step
 * consumes at least one byte or ends framing for good (RAW), so the loop
 * runs at most size + 1 times. */
static MRD_MUST_USE int
chaos_pipe_feed(struct chaos_proxy *p, struct chaos_conn *c, int d,
    const uint8_t *data, size_t size, uint64_t now_us)
{
    struct chaos_framer *fr = &c->pipe[d].fr;
    size_t               i  = 0;
    int                  rv = MRD_OK;
    MRD_ASSERT(p->stage_len == 0 && size <= CHAOS_CHUNK_SIZE_MAX);
    while (i < size && rv == MRD_OK) {
        size_t used = 0;
        switch (fr->state) {
        case CHAOS_FR_HEADER:
            used = chaos_framer_header(p, fr, data + i, size - i);
            break;
        case CHAOS_FR_LEN:
            rv = chaos_framer_len(p, c, d, data + i, size - i, &used, now_us);
            break;
        case CHAOS_FR_HOLD:
            rv = chaos_framer_hold(p, c, d, data + i, size - i, &used, now_us);
            break;
        case CHAOS_FR_STREAM:
            used = (size_t) chaos_min64(fr->body_left, size - i);
            chaos_stage_add(p, data + i, used);
            fr->body_left -= used;
            fr->state = fr->body_left == 0 ? CHAOS_FR_LEN : CHAOS_FR_STREAM;
            break;
        case CHAOS_FR_RAW:
            used = size - i;
            chaos_stage_add(p, data + i, used);
            break;
        }
        MRD_ASSERT(used > 0 || fr->state == CHAOS_FR_RAW || rv != MRD_OK);
        i += used;
    }
    int rv2 = chaos_stage_flush(p, c, d, now_us);
    return rv != MRD_OK ? rv : rv2;
}

/* The source closed: whatever the framer holds (part of a length field or
 * of a message) goes on as it is, so the receiver sees the same
 * truncation, and the close is scheduled behind it. */
static MRD_MUST_USE int
chaos_pipe_eof(
    struct chaos_proxy *p, struct chaos_conn *c, int d, uint64_t now_us)
{
    struct chaos_pipe   *pp = &c->pipe[d];
    struct chaos_framer *fr = &pp->fr;
    MRD_ASSERT(p->stage_len == 0);
    if (fr->state == CHAOS_FR_LEN) {
        chaos_stage_add(
            p, fr->small + fr->small_passed, fr->small_len - fr->small_passed);
    }
    fr->small_len = fr->small_passed = 0;
    int rv                           = chaos_stage_flush(p, c, d, now_us);
    if (fr->msg != NULL) {
        struct chaos_chunk *msg = fr->msg;
        fr->msg                 = NULL;
        pp->queued -= msg->size;
        msg->size = msg->off;
        msg->off  = 0;
        chaos_pipe_push(p, c, d, msg, now_us);
    }
    fr->state   = CHAOS_FR_RAW;
    pp->eof     = true;
    uint64_t at = now_us + chaos_pipe_delay_us(p, pp, d);
    if (at < pp->release_last_us) {
        at = pp->release_last_us;
    }
    pp->eof_release_us = at + (uint64_t) p->cur.close_delay_ms * 1000u;
    return rv;
}

/* -------------------------------------------------------- connections -- */

static void
chaos_pipe_free(struct chaos_pipe *pp)
{
    struct chaos_chunk *ch = pp->head;
    while (ch != NULL) {
        struct chaos_chunk *next = ch->next;
        free(ch);
        ch = next;
    }
    free(pp->fr.msg);
    for (uint32_t k = 0; k < CHAOS_REPLAY_KEEP; k++) {
        free(pp->fr.keep[k]);
    }
}

/* Closes both sockets (with an RST when abort is set), frees what the
 * connection holds and frees its slot. The slot's poll results are
 * cleared, so a connection accepted into it in the same loop turn does not
 * inherit them. */
static void
chaos_conn_close(struct chaos_proxy *p, struct chaos_conn *c, bool abort)
{
    MRD_ASSERT(c->used && c->slot < CHAOS_CONNS_MAX);
    for (int s = 0; s < 2; s++) {
        if (abort) {
            chaos_fd_abort(c->fd[s]);
        } else if (c->fd[s] >= 0) {
            (void) close(c->fd[s]);
        }
    }
    for (int d = 0; d < CHAOS_DIRS; d++) {
        chaos_pipe_free(&c->pipe[d]);
    }
    uint32_t slot                  = c->slot;
    p->pfd[2u + 2u * slot].revents = 0;
    p->pfd[3u + 2u * slot].revents = 0;
    memset(c, 0, sizeof *c);
    c->fd[0] = c->fd[1] = -1;
    atomic_fetch_sub_explicit(&p->ctr[CHAOS_C_OPEN], 1, memory_order_relaxed);
}

static void
chaos_conn_init(struct chaos_proxy *p, struct chaos_conn *c, uint32_t slot,
    int client_fd, int up_fd)
{
    uint64_t index = p->conn_index_next++;
    memset(c, 0, sizeof *c);
    c->used               = true;
    c->slot               = slot;
    c->fd[CHAOS_CLIENT]   = client_fd;
    c->fd[CHAOS_UPSTREAM] = up_fd;
    for (int d = 0; d < CHAOS_DIRS; d++) {
        struct chaos_pipe *pp = &c->pipe[d];
        pp->fr.state          = CHAOS_FR_HEADER;
        chaos_rng_seed(&pp->rng_msg, p->seed, index, d, 0);
        chaos_rng_seed(&pp->rng_chunk, p->seed, index, d, 1);
    }
    chaos_ctr_add(p, CHAOS_C_ACCEPTED, 1);
    chaos_ctr_add(p, CHAOS_C_OPEN, 1);
}

/* Takes an accepted client socket into a free slot, with a non-blocking
 * connect to the upstream. An upstream that refuses at once resets the
 * client: the dialer sees its link die, as it would with a dead node. */
static void
chaos_conn_open(struct chaos_proxy *p, int client_fd)
{
    struct chaos_conn *c = NULL;
    for (uint32_t i = 0; i < CHAOS_CONNS_MAX && c == NULL; i++) {
        c = p->conns[i].used ? NULL : &p->conns[i];
    }
    if (c == NULL) {
        chaos_ctr_add(p, CHAOS_C_FULL, 1);
        chaos_fd_abort(client_fd);
        return;
    }
    int up_fd = socket(p->up_addr.ss_family, SOCK_STREAM, 0);
    if (up_fd < 0 || chaos_fd_setup(up_fd) != 0) {
        goto fail;
    }
    int rv
        = connect(up_fd, (const struct sockaddr *) &p->up_addr, p->up_addr_len);
    if (rv != 0 && errno != EINPROGRESS) {
        goto fail;
    }
    chaos_conn_init(p, c, (uint32_t) (c - p->conns), client_fd, up_fd);
    c->connecting = rv != 0;
    return;
fail:
    chaos_ctr_add(p, CHAOS_C_ACCEPTED, 1);
    chaos_ctr_add(p, CHAOS_C_FAILED, 1);
    chaos_fd_abort(up_fd);
    chaos_fd_abort(client_fd);
}

static void
chaos_accept_some(struct chaos_proxy *p, uint64_t now_us)
{
    for (uint32_t k = 0; k < CHAOS_ACCEPT_BATCH; k++) {
        int fd = accept(p->listen_fd, NULL, NULL);
        if (fd < 0
            && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS
                || errno == ENOMEM)) {
            p->accept_pause_until_us
                = now_us + (uint64_t) CHAOS_ACCEPT_PAUSE_MS * 1000u;
        }
        if (fd < 0) {
            return; /* EAGAIN: none left; ECONNABORTED and such: next turn */
        }
        /* Counted before the close, so whoever sees the close sees the
         * count. */
        if (chaos_fd_setup(fd) != 0) {
            chaos_ctr_add(p, CHAOS_C_ACCEPTED, 1);
            chaos_ctr_add(p, CHAOS_C_FAILED, 1);
            chaos_fd_abort(fd);
        } else if (p->cur.refuse) {
            chaos_ctr_add(p, CHAOS_C_REFUSED, 1);
            chaos_fd_abort(fd);
        } else {
            chaos_conn_open(p, fd);
        }
    }
}

/* ------------------------------------------------------------ pipes -- */

/* Tops up the token bucket of direction d. A changed rate starts with a
 * full bucket; rate 0 turns the bucket off. */
static void
chaos_pipe_refill(
    struct chaos_proxy *p, struct chaos_pipe *pp, int d, uint64_t now_us)
{
    uint64_t rate  = p->cur.dir[d].rate_bps;
    double   burst = (double) rate * (double) CHAOS_RATE_BURST_MS / 1000.0;
    if (burst < 1.0) {
        burst = 1.0;
    }
    if (rate != pp->rate_bps) {
        pp->rate_bps  = rate;
        pp->tokens    = burst;
        pp->tokens_us = now_us;
        return;
    }
    if (now_us > pp->tokens_us) {
        pp->tokens += (double) (now_us - pp->tokens_us) * (double) rate / 1e6;
        pp->tokens_us = now_us;
    }
    if (pp->tokens > burst) {
        pp->tokens = burst;
    }
}

static bool
chaos_pipe_held(const struct chaos_proxy *p, const struct chaos_conn *c, int d)
{
    return c->connecting || p->cur.dir[d].blackhole;
}

/* Writes the due chunks of direction d, within the token bucket. Returns
 * MRD_ECLOSED when the destination failed (the caller aborts). */
static MRD_MUST_USE int
chaos_pipe_flush(
    struct chaos_proxy *p, struct chaos_conn *c, int d, uint64_t now_us)
{
    struct chaos_pipe *pp = &c->pipe[d];
    int                fd = c->fd[1 - d];
    pp->want_write        = false;
    if (chaos_pipe_held(p, c, d)) {
        return MRD_OK; /* a blackhole holds what is already on the wire */
    }
    chaos_pipe_refill(p, pp, d, now_us);
    for (uint32_t k = 0; k < CHAOS_FLUSH_CHUNKS_MAX; k++) {
        struct chaos_chunk *ch = pp->head;
        if (ch == NULL || ch->release_us > now_us) {
            break;
        }
        size_t len = ch->size - ch->off;
        if (pp->rate_bps > 0) {
            len = (size_t) chaos_min64(len, (uint64_t) pp->tokens);
        }
        if (len == 0) {
            break; /* out of tokens */
        }
        ssize_t n = send(fd, ch->data + ch->off, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pp->want_write = true;
            break;
        }
        if (n < 0) {
            return MRD_ECLOSED;
        }
        ch->off += (size_t) n;
        pp->queued -= (size_t) n;
        pp->tokens -= pp->rate_bps > 0 ? (double) n : 0.0;
        chaos_ctr_add(p, (enum chaos_ctr)(CHAOS_C_FWD_UP + d), (uint64_t) n);
        if (ch->off < ch->size) {
            pp->want_write = (size_t) n < len; /* the socket is full */
            break;
        }
        pp->head = ch->next;
        pp->tail = pp->head == NULL ? NULL : pp->tail;
        free(ch);
    }
    return MRD_OK;
}

/* Sends the close of direction d once everything before it is out and
 * its time has come. */
static void
chaos_pipe_close_check(
    struct chaos_proxy *p, struct chaos_conn *c, int d, uint64_t now_us)
{
    struct chaos_pipe *pp = &c->pipe[d];
    if (!pp->eof || pp->shut || pp->head != NULL || chaos_pipe_held(p, c, d)
        || now_us < pp->eof_release_us) {
        return;
    }
    /* ENOTCONN when the far side is already gone: the next read or write
     * tells, so the result is not needed here. */
    (void) shutdown(c->fd[1 - d], SHUT_WR);
    pp->shut = true;
}

static bool
chaos_pipe_wants_read(const struct chaos_conn *c, int d)
{
    const struct chaos_pipe *pp = &c->pipe[d];
    if (pp->eof || (d == CHAOS_DOWN && c->connecting)) {
        return false;
    }
    return pp->queued < CHAOS_DIR_QUEUED_MAX; /* else back-pressure */
}

/* Reads source d once. MRD_ECLOSED when the source failed. */
static MRD_MUST_USE int
chaos_pipe_read(
    struct chaos_proxy *p, struct chaos_conn *c, int d, uint64_t now_us)
{
    struct chaos_pipe *pp   = &c->pipe[d];
    size_t             room = CHAOS_DIR_QUEUED_MAX - pp->queued;
    ssize_t            n
        = read(c->fd[d], p->rbuf, (size_t) chaos_min64(room, sizeof p->rbuf));
    if (n > 0) {
        return chaos_pipe_feed(p, c, d, p->rbuf, (size_t) n, now_us);
    }
    if (n == 0) {
        return chaos_pipe_eof(p, c, d, now_us);
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return MRD_OK;
    }
    return MRD_ECLOSED;
}

/* When direction d next needs the loop, UINT64_MAX for "only on a socket
 * event". */
static uint64_t
chaos_pipe_deadline(const struct chaos_proxy *p, const struct chaos_conn *c,
    int d, uint64_t now_us)
{
    const struct chaos_pipe  *pp = &c->pipe[d];
    const struct chaos_chunk *ch = pp->head;
    if (chaos_pipe_held(p, c, d)) {
        return UINT64_MAX;
    }
    if (ch == NULL) {
        return pp->eof && !pp->shut ? pp->eof_release_us : UINT64_MAX;
    }
    if (ch->release_us > now_us) {
        return ch->release_us;
    }
    if (pp->want_write) {
        return UINT64_MAX;
    }
    uint64_t rate = p->cur.dir[d].rate_bps;
    if (rate == 0 || pp->tokens >= 1.0) {
        return now_us;
    }
    /* Enough tokens for the chunk, or a whole burst: not byte by byte. */
    double need = (double) (ch->size - ch->off);
    double full = (double) rate * (double) CHAOS_RATE_BURST_MS / 1000.0;
    need        = need < full ? need : full;
    need        = need < 1.0 ? 1.0 : need;
    return now_us + (uint64_t) ((need - pp->tokens) * 1e6 / (double) rate) + 1u;
}

/* Finishes a non-blocking upstream connect; false when it failed. */
static bool
chaos_conn_connected(struct chaos_conn *c)
{
    int       err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd[CHAOS_UPSTREAM], SOL_SOCKET, SO_ERROR, &err, &len) != 0
        || err != 0) {
        return false;
    }
    c->connecting = false;
    return true;
}

/* One loop turn of one connection: connect, read, flush, close. */
static void
chaos_conn_service(struct chaos_proxy *p, struct chaos_conn *c,
    const short rev[2], uint64_t now_us)
{
    if (c->connecting && rev[CHAOS_UPSTREAM] != 0 && !chaos_conn_connected(c)) {
        chaos_ctr_add(p, CHAOS_C_FAILED, 1);
        chaos_conn_close(p, c, true);
        return;
    }
    int rv = MRD_OK;
    for (int d = 0; d < CHAOS_DIRS && rv == MRD_OK; d++) {
        if ((rev[d] & (POLLIN | POLLHUP | POLLERR)) != 0
            && chaos_pipe_wants_read(c, d)) {
            rv = chaos_pipe_read(p, c, d, now_us);
        }
    }
    for (int d = 0; d < CHAOS_DIRS && rv == MRD_OK; d++) {
        rv = chaos_pipe_flush(p, c, d, now_us);
        chaos_pipe_close_check(p, c, d, now_us);
    }
    if (rv != MRD_OK) {
        chaos_conn_close(p, c, true);
    } else if (c->pipe[CHAOS_UP].shut && c->pipe[CHAOS_DOWN].shut) {
        chaos_conn_close(p, c, false);
    }
}

/* ---------------------------------------------------------- I/O loop -- */

/* Fills the poll array for this turn; returns the poll timeout (ms). */
static int
chaos_poll_prepare(struct chaos_proxy *p, uint64_t now_us)
{
    uint64_t next = now_us + (uint64_t) CHAOS_POLL_MS_MAX * 1000u;
    p->pfd[0]     = (struct pollfd) { .fd = p->wake[0], .events = POLLIN };
    bool paused   = now_us < p->accept_pause_until_us;
    p->pfd[1]     = (struct pollfd) { .fd = paused ? -1 : p->listen_fd,
            .events                       = POLLIN };
    if (paused) {
        next = chaos_min64(next, p->accept_pause_until_us);
    }
    for (uint32_t i = 0; i < CHAOS_CONNS_MAX; i++) {
        const struct chaos_conn *c     = &p->conns[i];
        short                    ev[2] = { 0, 0 };
        for (int d = 0; c->used && d < CHAOS_DIRS; d++) {
            const struct chaos_pipe *pp = &c->pipe[d];
            if (chaos_pipe_wants_read(c, d)) {
                ev[d] |= POLLIN;
            }
            if (pp->want_write && !chaos_pipe_held(p, c, d)) {
                ev[1 - d] |= POLLOUT;
            }
            next = chaos_min64(next, chaos_pipe_deadline(p, c, d, now_us));
        }
        if (c->used && c->connecting) {
            ev[CHAOS_UPSTREAM] |= POLLOUT;
        }
        for (int s = 0; s < 2; s++) {
            struct pollfd *pf = &p->pfd[2u + 2u * i + (uint32_t) s];
            /* No events wanted: leave it out, or a hung-up socket would
             * make poll return at once, every turn. */
            *pf = (struct pollfd) { .fd = ev[s] != 0 ? c->fd[s] : -1,
                .events                 = ev[s] };
        }
    }
    return next <= now_us ? 0 : (int) ((next - now_us + 999u) / 1000u);
}

/* Takes the fault set and runs a pending reset. False when stopping. */
static bool
chaos_take_config(struct chaos_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    bool     stopping     = p->stopping;
    uint64_t reset        = p->reset_gen;
    bool     reset_due    = reset != p->reset_gen_done;
    p->cur                = p->faults;
    p->faults_gen_applied = p->faults_gen;
    pthread_mutex_unlock(&p->mu);
    if (reset_due) {
        for (uint32_t i = 0; i < CHAOS_CONNS_MAX; i++) {
            if (p->conns[i].used) {
                chaos_conn_close(p, &p->conns[i], true);
                chaos_ctr_add(p, CHAOS_C_RESET, 1);
            }
        }
    }
    pthread_mutex_lock(&p->mu);
    p->reset_gen_done = reset;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return !stopping;
}

static void
chaos_wake_drain(struct chaos_proxy *p)
{
    uint8_t buf[64];
    while (read(p->wake[0], buf, sizeof buf) > 0) { }
}

static void *
chaos_io_main(void *arg)
{
    struct chaos_proxy *p = arg;
    for (;;) {
        int timeout_ms = chaos_poll_prepare(p, mrd_now_mono_us());
        int n          = poll(p->pfd, CHAOS_POLLFDS, timeout_ms);
        if (n < 0) {
            /* EINTR, or the kernel short of memory: a turn with no events.
             * Anything else is a bad poll array, our bug. */
            MRD_ASSERT(errno == EINTR || errno == ENOMEM || errno == EAGAIN);
            n = 0;
        }
        if (!chaos_take_config(p)) {
            break;
        }
        uint64_t now_us = mrd_now_mono_us();
        if (n > 0 && p->pfd[0].revents != 0) {
            chaos_wake_drain(p);
        }
        if (n > 0 && (p->pfd[1].revents & POLLIN) != 0) {
            chaos_accept_some(p, now_us);
        }
        for (uint32_t i = 0; i < CHAOS_CONNS_MAX; i++) {
            if (!p->conns[i].used) {
                continue;
            }
            short rev[2]
                = { p->pfd[2u + 2u * i].revents, p->pfd[3u + 2u * i].revents };
            chaos_conn_service(p, &p->conns[i], rev, now_us);
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------- API -- */

static MRD_MUST_USE int
chaos_resolve(struct chaos_proxy *p, const struct chaos_proxy_config *cfg)
{
    char             port[8];
    struct addrinfo  hints = { .ai_family = AF_UNSPEC,
         .ai_socktype                     = SOCK_STREAM,
         .ai_flags                        = AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *res   = NULL;
    (void) snprintf(port, sizeof port, "%u", (unsigned) cfg->upstream_port);
    if (getaddrinfo(cfg->upstream_host, port, &hints, &res) != 0) {
        return MRD_EINVAL;
    }
    MRD_ASSERT(res != NULL && res->ai_addrlen <= sizeof p->up_addr);
    memcpy(&p->up_addr, res->ai_addr, res->ai_addrlen);
    p->up_addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return MRD_OK;
}

/* Binds and listens on 127.0.0.1; sets p->port. */
static MRD_MUST_USE int
chaos_listen(struct chaos_proxy *p, uint16_t port, const char **why)
{
    struct sockaddr_in sa  = { .sin_family = AF_INET,
         .sin_port                         = htons(port),
         .sin_addr.s_addr                  = htonl(INADDR_LOOPBACK) };
    socklen_t          len = sizeof sa;
    int                one = 1;
    p->listen_fd           = socket(AF_INET, SOCK_STREAM, 0);
    if (p->listen_fd < 0) {
        *why = "socket() for the listener failed";
        return chaos_errno_code(errno);
    }
    (void) setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(p->listen_fd, (struct sockaddr *) &sa, sizeof sa) != 0
        || listen(p->listen_fd, CHAOS_BACKLOG) != 0
        || getsockname(p->listen_fd, (struct sockaddr *) &sa, &len) != 0
        || chaos_fd_nonblock(p->listen_fd) != 0) {
        *why = "cannot bind or listen on 127.0.0.1 at the listen port";
        return chaos_errno_code(errno);
    }
    p->port = ntohs(sa.sin_port);
    return MRD_OK;
}

/* Frees a proxy whose thread is not running (or was joined). */
static void
chaos_proxy_free(struct chaos_proxy *p)
{
    int saved = errno; /* start's caller reads the failure's errno */
    for (uint32_t i = 0; i < CHAOS_CONNS_MAX; i++) {
        if (p->conns[i].used) {
            chaos_conn_close(p, &p->conns[i], true);
        }
    }
    chaos_fd_abort(p->listen_fd);
    for (int k = 0; k < 2; k++) {
        if (p->wake[k] >= 0) {
            (void) close(p->wake[k]);
        }
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    errno = saved;
}

/* Everything but the thread. */
static MRD_MUST_USE int
chaos_proxy_setup(struct chaos_proxy *p, const struct chaos_proxy_config *cfg,
    const char **why)
{
    if (chaos_resolve(p, cfg) != MRD_OK) {
        *why = "upstream_host is not a numeric address";
        return MRD_EINVAL;
    }
    int rv = chaos_listen(p, cfg->listen_port, why);
    if (rv != MRD_OK) {
        return rv;
    }
    if (pipe(p->wake) != 0) {
        p->wake[0] = p->wake[1] = -1;
        *why                    = "pipe() for the wake pipe failed";
        return chaos_errno_code(errno);
    }
    if (chaos_fd_nonblock(p->wake[0]) != 0
        || chaos_fd_nonblock(p->wake[1]) != 0) {
        *why = "cannot make the wake pipe non-blocking";
        return chaos_errno_code(errno);
    }
    p->seed   = cfg->seed;
    p->faults = cfg->faults;
    p->cur    = cfg->faults;
    return MRD_OK;
}

int
chaos_proxy_start(const struct chaos_proxy_config *cfg,
    struct chaos_proxy **out, const char **why)
{
    const char *reason = NULL;
    int         rv     = MRD_EINVAL;
    if (out != NULL) {
        *out = NULL;
    }
    if (cfg == NULL || out == NULL || cfg->upstream_host == NULL
        || cfg->upstream_port == 0) {
        reason = "no config, no out, or no upstream host and port";
        goto done;
    }
    if (chaos_faults_check(&cfg->faults, &reason) != MRD_OK) {
        goto done;
    }
    struct chaos_proxy *p = calloc(1, sizeof *p);
    if (p == NULL) {
        rv     = MRD_ENOMEM;
        reason = "out of memory for the proxy";
        goto done;
    }
    p->listen_fd = p->wake[0] = p->wake[1] = -1;
    for (uint32_t i = 0; i < CHAOS_CONNS_MAX; i++) {
        p->conns[i].fd[0] = p->conns[i].fd[1] = -1;
    }
    /* Default attributes: glibc cannot fail these. */
    int e_mu = pthread_mutex_init(&p->mu, NULL);
    int e_cv = pthread_cond_init(&p->cv, NULL);
    MRD_ASSERT(e_mu == 0 && e_cv == 0);
    rv = chaos_proxy_setup(p, cfg, &reason);
    if (rv == MRD_OK) {
        int e = pthread_create(&p->thread, NULL, chaos_io_main, p);
        errno = e;
        if (e != 0) {
            /* EAGAIN: the thread limit, a limit like running out of fds. */
            rv     = e == EAGAIN ? MRD_EFULL : MRD_EINTERNAL;
            reason = "pthread_create failed";
        }
    }
    if (rv != MRD_OK) {
        chaos_proxy_free(p);
        goto done;
    }
    *out = p;
done:
    if (why != NULL) {
        *why = reason;
    }
    return rv;
}

uint16_t
chaos_proxy_port(const struct chaos_proxy *p)
{
    MRD_ASSERT(p != NULL);
    return p->port;
}

int
chaos_proxy_set(struct chaos_proxy *p, const struct chaos_faults *faults)
{
    MRD_ASSERT(p != NULL);
    int rv = chaos_faults_check(faults, NULL);
    if (rv != MRD_OK) {
        return rv;
    }
    pthread_mutex_lock(&p->mu);
    MRD_ASSERT(!p->stopping); /* set after stop: a use after free */
    p->faults    = *faults;
    uint64_t gen = ++p->faults_gen;
    pthread_mutex_unlock(&p->mu);
    chaos_wake(p);
    pthread_mutex_lock(&p->mu);
    while (p->faults_gen_applied < gen) {
        pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return MRD_OK;
}

void
chaos_proxy_get(struct chaos_proxy *p, struct chaos_faults *out)
{
    MRD_ASSERT(p != NULL && out != NULL);
    pthread_mutex_lock(&p->mu);
    *out = p->faults;
    pthread_mutex_unlock(&p->mu);
}

void
chaos_proxy_reset(struct chaos_proxy *p)
{
    MRD_ASSERT(p != NULL);
    pthread_mutex_lock(&p->mu);
    MRD_ASSERT(!p->stopping);
    uint64_t gen = ++p->reset_gen;
    pthread_mutex_unlock(&p->mu);
    chaos_wake(p);
    pthread_mutex_lock(&p->mu);
    while (p->reset_gen_done < gen) {
        pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
}

void
chaos_proxy_stats(const struct chaos_proxy *p, struct chaos_proxy_stats *out)
{
    MRD_ASSERT(p != NULL && out != NULL);
    uint64_t v[CHAOS_C_COUNT_];
    for (int i = 0; i < CHAOS_C_COUNT_; i++) {
        v[i] = atomic_load_explicit(&p->ctr[i], memory_order_relaxed);
    }
    *out = (struct chaos_proxy_stats) {
        .conns_accepted    = v[CHAOS_C_ACCEPTED],
        .conns_refused     = v[CHAOS_C_REFUSED],
        .conns_full        = v[CHAOS_C_FULL],
        .conns_failed      = v[CHAOS_C_FAILED],
        .conns_reset       = v[CHAOS_C_RESET],
        .conns_open        = v[CHAOS_C_OPEN],
        .bytes_fwd         = { v[CHAOS_C_FWD_UP], v[CHAOS_C_FWD_DOWN] },
        .bytes_dropped     = v[CHAOS_C_DROPPED],
        .chunks_corrupted  = v[CHAOS_C_CORRUPTED],
        .frames_dropped    = v[CHAOS_C_FR_DROPPED],
        .frames_duplicated = v[CHAOS_C_FR_DUPLICATED],
        .frames_replayed   = v[CHAOS_C_FR_REPLAYED],
    };
}

void
chaos_proxy_stop(struct chaos_proxy *p)
{
    if (p == NULL) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_mutex_unlock(&p->mu);
    chaos_wake(p);
    int rv = pthread_join(p->thread, NULL);
    MRD_ASSERT(rv == 0); /* only fails for a bad or already joined thread */
    chaos_proxy_free(p);
}
