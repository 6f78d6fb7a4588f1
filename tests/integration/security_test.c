/*
 * security_test.c: secure links and roles against one real meridiand
 * (replication/link.h, net/linkio.h, node/security.c, net/keyring.h).
 *
 * The group starts node 1 with a keyring of the test's own (--keyring) that
 * trusts the harness admin (so harness_node_stat works) and four client
 * keys made here: a reader, a writer limited to "orders-", an admin and a
 * writer that test_revoked takes out again. A fifth key is in no keyring.
 * Then, each asserting what the caller sees, what was written and which
 * STATS counter moved:
 *   - an unknown key, a revoked key and a keyring of another cluster end
 *     calls with MRD_EAUTH, fast, and write nothing;
 *   - a msg1 of link version 2, sent on a raw NNG req0 socket, gets the
 *     plain five-byte refusal with reason "version";
 *   - roles: a reader cannot append, a prefix writer only in its prefix,
 *     an admin anywhere; rejected_role counts each refusal;
 *   - a tampering TCP proxy in this process, which understands NNG's
 *     SP-over-TCP framing, flips a bit in, replays, reorders or truncates
 *     the first append frame it sees (once per proxy; the library's retry
 *     on a new connection passes untouched): the node refuses the frame
 *     (rejected_link_frame +1), closes that connection, writes nothing of
 *     the tampered request (the retry writes it once) and serves on. A
 *     handshake recorded from a good session and replayed on a fresh
 *     connection is refused (rejected_link_malformed +1) and nothing
 *     after it is looked at;
 *   - capture: none of an event's distinctive strings crosses the wire in
 *     clear, either way.
 *
 * Which message is "the append": the library asks for the topology as
 * soon as a client opens, so the first frame after the handshake is that
 * small request. The proxy tampers with the first post-handshake message
 * of at least PROXY_BIG bytes instead: the appends here carry 2 KiB of data
 * and nothing else the client sends comes near that.
 *
 * Every wait is bounded and scaled (harness_ms, harness_wait_for); the
 * proxy thread polls with a short timeout and is joined after every test.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>

#include "harness.h"
#include "keyring.h"
#include "link.h"
#include "linkio.h"

#define SEC_NODE_ID 1u
/* Data of the appends the proxy tampers with: far above PROXY_BIG. */
#define SEC_TAMPER_DATA_SIZE 2048u
/* Data of the capture test's event. */
#define SEC_CAPTURE_DATA_SIZE 4096u
/* Clients a test may hold besides the group's admin client. */
#define SEC_EXTRA_MAX 4u
/* Whole-call deadline of the test's clients (scaled), and how fast a
 * refused key must be told: a refusal is one round trip, not a timeout. */
#define SEC_CALL_TIMEOUT_MS 10000u
#define SEC_REFUSAL_FAST_MS 3000u
#define SEC_WAIT_TRIES 200u /* x SEC_WAIT_STEP_MS: 10 s, scaled */
#define SEC_WAIT_STEP_MS 50u

/* ------------------------------------------------------------ the proxy -- */

/* NNG's SP-over-TCP: an 8-byte connection header each way, then messages
 * of an 8-byte big-endian length and that many bytes (SP header, body). */
#define SP_CONN_HDR_SIZE 8u
#define SP_LEN_SIZE 8u
#define SP_REQ_ID_SIZE 4u
#define SP_PROTO_REQ0 0x30u
#define SP_PROTO_REP0 0x31u
/* A client->node message this long after the handshake is an append. */
#define PROXY_BIG 1024u
/* Connections one proxy serves; more are closed as they come. */
#define PROXY_CONNS_MAX 16u
/* A message longer than this makes the proxy stop parsing the connection
 * (it never happens here: the appends are a few KiB). */
#define PROXY_MSG_MAX (1024u * 1024u)
#define PROXY_CHUNK 65536u
/* The first three client->node messages of each connection are kept
 * (msg1, msg3, the first frame), each up to this size. */
#define PROXY_SAVED 3u
#define PROXY_SAVE_MAX (64u * 1024u)
/* Bytes recorded per direction. */
#define PROXY_REC_MAX (8u * 1024u * 1024u)
/* A reordered message held longer than this goes out untampered (and the
 * test fails on it): the second request never came. */
#define PROXY_HOLD_MS 2000u
#define PROXY_POLL_MS 20
/* Send and receive timeouts of every socket the test opens. */
#define SEC_SOCK_TIMEOUT_MS 5000u

enum proxy_mode {
    PROXY_PASS = 0,
    PROXY_FLIP, /* one bit of the ciphertext */
    PROXY_REPLAY, /* the frame twice */
    PROXY_REORDER, /* the next message before this one */
    PROXY_TRUNCATE, /* five bytes off the end, length fixed */
};

struct proxy_conn {
    int      cfd, nfd; /* client side, node side; -1 once closed */
    bool     tampered;
    bool     node_closed; /* the node ended the connection */
    bool     raw; /* framing given up: bytes pass unparsed */
    bool     hdr_done;
    uint32_t msgs; /* client->node messages so far */
    uint8_t *in; /* client->node bytes not yet a whole message */
    size_t   in_len, in_cap;
    uint8_t *held; /* PROXY_REORDER: the message held back */
    size_t   held_len;
    uint64_t held_ms;
    uint8_t *saved[PROXY_SAVED]; /* whole wire units, length first */
    size_t   saved_len[PROXY_SAVED];
};

struct proxy {
    pthread_mutex_t mu; /* everything below, against the test thread */
    pthread_t       thread;
    bool            running;
    atomic_bool     stop;
    int             lfd;
    uint16_t        node_port;
    char            url[HARNESS_URL_SIZE];
    enum proxy_mode mode;
    /* Until the first tampering (or hold) the proxy looks for an append
     * on every connection; after it every connection passes. */
    bool              armed;
    size_t            tampered_conn; /* PROXY_CONNS_MAX: none yet */
    struct proxy_conn conns[PROXY_CONNS_MAX];
    size_t            nconns; /* ever accepted */
    uint8_t          *rec[2]; /* [0] client->node, [1] node->client */
    size_t            rec_len[2];
    bool              rec_over;
    bool              failed; /* out of memory: the test fails on it */
};

static struct proxy px = { .mu = PTHREAD_MUTEX_INITIALIZER, .lfd = -1 };

/* ------------------------------------------------------------ the group -- */

enum sec_key {
    SEC_K_READER = 0, /* read */
    SEC_K_ORDERS, /* write, prefix "orders-" */
    SEC_K_OPS, /* admin */
    SEC_K_REVOCABLE, /* write, until test_revoked */
    SEC_K_STRANGER, /* in no keyring */
    SEC_K_COUNT_
};

static const char *const sec_key_names[SEC_K_COUNT_] = {
    [SEC_K_READER]    = "reader",
    [SEC_K_ORDERS]    = "orders-writer",
    [SEC_K_OPS]       = "ops",
    [SEC_K_REVOCABLE] = "revocable",
    [SEC_K_STRANGER]  = "stranger",
};

struct sec_state {
    struct harness_node node;
    char                dir[HARNESS_PATH_SIZE];
    char                ring_path[HARNESS_PATH_SIZE + 32]; /* the node's */
    char                client_ring[HARNESS_PATH_SIZE + 64];
    char                key_path[SEC_K_COUNT_][HARNESS_PATH_SIZE + 32];
    uint8_t             pk[SEC_K_COUNT_][32];
    bool                revoked; /* SEC_K_REVOCABLE left the keyring */
    mrd_client         *admin; /* direct, harness admin key */
    mrd_client         *extra[SEC_EXTRA_MAX];
};

static struct sec_state sec;

/* mrd_append_async outcomes: static, so a test ended by an assertion
 * leaves its callbacks nothing dangling (the cleanup's client close waits
 * for them). */
struct sec_async {
    atomic_int done;
    int        err;
    int        replayed;
};

static struct sec_async sec_async_res[2];

/* ------------------------------------------------------------- helpers -- */

static uint64_t
sec_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000u + (uint64_t) ts.tv_nsec / 1000000u;
}

/* A stream name no other test uses. */
static void
sec_stream(char *out, size_t size, const char *what)
{
    static atomic_uint counter;
    snprintf(out, size, "%s-%d-%u", what, (int) getpid(),
        atomic_fetch_add(&counter, 1));
}

static mrd_event_in
sec_event(const char *type, const void *data, size_t size)
{
    mrd_event_in ev;
    memset(&ev, 0, sizeof ev);
    ev.type         = type;
    ev.data         = data;
    ev.data_size    = size;
    ev.content_type = "application/octet-stream";
    return ev;
}

/* size bytes of text that say what they are for, so that a corrupted
 * event would not compare equal. */
static void
sec_fill(char *buf, size_t size, const char *label)
{
    size_t n = 0;
    for (unsigned i = 0; n < size; i++) {
        char piece[64];
        int  len = snprintf(piece, sizeof piece, "%s-%05u|", label, i);
        for (int j = 0; j < len && n < size; j++) {
            buf[n++] = piece[j];
        }
    }
}

/* True when needle occurs in hay (memmem is a GNU extension). */
static bool
sec_find(const uint8_t *hay, size_t hay_len, const void *needle, size_t len)
{
    if (len == 0 || hay_len < len) {
        return false;
    }
    for (size_t i = 0; i + len <= hay_len; i++) {
        if (hay[i] == *(const uint8_t *) needle
            && memcmp(hay + i, needle, len) == 0) {
            return true;
        }
    }
    return false;
}

static uint64_t
sec_stat(const char *name)
{
    uint64_t v = 0;
    assert_int_equal(harness_node_stat(&sec.node, name, &v), 0);
    return v;
}

struct sec_stat_wait {
    const char *name;
    uint64_t    above;
};

static bool
sec_stat_above(void *arg)
{
    struct sec_stat_wait *w = arg;
    uint64_t              v = 0;
    return harness_node_stat(&sec.node, w->name, &v) == 0 && v > w->above;
}

static void
sec_put_be64(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t) (v >> (56 - 8 * i));
    }
}

static uint64_t
sec_get_be64(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | b[i];
    }
    return v;
}

/* The node's cluster id, from its DATA_DIR/identity. */
static void
sec_cluster_id(uint8_t out[16])
{
    char   path[HARNESS_PATH_SIZE + 16], line[256], hex[33] = "";
    size_t bin_len = 0;
    snprintf(path, sizeof path, "%s/identity", sec.node.data_dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f) != NULL) {
        if (sscanf(line, "cluster %32s", hex) == 1) {
            break;
        }
    }
    fclose(f);
    assert_int_equal(strlen(hex), 32);
    assert_int_equal(sodium_hex2bin(out, 16, hex, 32, NULL, &bin_len, NULL), 0);
    assert_int_equal(bin_len, 16);
}

/* ------------------------------------------------------------ keyrings -- */

/* Writes text to path the way an operator should: a temp file, then a
 * rename over the old one, so the node never reads half a file. */
static int
sec_file_replace(const char *path, const char *text)
{
    char tmp[HARNESS_PATH_SIZE + 64];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }
    size_t len = strlen(text);
    bool   ok  = fwrite(text, 1, len, f) == len && fflush(f) == 0
        && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    return ok && rename(tmp, path) == 0 ? 0 : -1;
}

/* The node's keyring: the harness admin (STATS), then the test's clients;
 * the revocable one until sec.revoked. */
static int
sec_ring_write(void)
{
    static const char *const roles[SEC_K_STRANGER] = {
        [SEC_K_READER]    = "read",
        [SEC_K_ORDERS]    = "write",
        [SEC_K_OPS]       = "admin",
        [SEC_K_REVOCABLE] = "write",
    };
    char    text[4096], hex[65];
    uint8_t pk[32], sk[64];
    size_t  n = 0;

    harness_admin_keypair(pk, sk);
    sodium_memzero(sk, sizeof sk);
    sodium_bin2hex(hex, sizeof hex, pk, 32);
    n += (size_t) snprintf(text + n, sizeof text - n,
        "# security_test's keyring\nclient harness-admin admin %s\n", hex);
    for (int k = 0; k < SEC_K_STRANGER; k++) {
        if (k == SEC_K_REVOCABLE && sec.revoked) {
            continue;
        }
        sodium_bin2hex(hex, sizeof hex, sec.pk[k], 32);
        n += (size_t) snprintf(text + n, sizeof text - n, "client %s %s %s%s\n",
            sec_key_names[k], roles[k], hex,
            k == SEC_K_ORDERS ? " orders-" : "");
    }
    return sec_file_replace(sec.ring_path, text);
}

static int
sec_keys_make(void)
{
    char    err[256];
    uint8_t sk[64];

    for (int k = 0; k < SEC_K_COUNT_; k++) {
        snprintf(sec.key_path[k], sizeof sec.key_path[k], "%s/%s.key", sec.dir,
            sec_key_names[k]);
        crypto_sign_keypair(sec.pk[k], sk);
        int rv = keyring_key_write(sec.key_path[k], sk, err, sizeof err);
        sodium_memzero(sk, sizeof sk);
        if (rv != MRD_OK) {
            fprintf(stderr, "security_test: %s\n", err);
            return -1;
        }
    }
    return 0;
}

/* --------------------------------------------------------------- clients -- */

/* A client of url with key_file and keyring_file, kept in sec.extra for
 * the cleanup. */
static mrd_client *
sec_client(const char *url, const char *key_file, const char *keyring_file)
{
    mrd_client_opts opts;
    mrd_client     *c = NULL;
    size_t          slot;

    for (slot = 0; slot < SEC_EXTRA_MAX && sec.extra[slot] != NULL; slot++) { }
    assert_true(slot < SEC_EXTRA_MAX);
    mrd_client_opts_init(&opts);
    opts.addresses          = &url;
    opts.address_count      = 1;
    opts.timeout_ms         = harness_ms(SEC_CALL_TIMEOUT_MS);
    opts.attempt_timeout_ms = harness_ms(opts.attempt_timeout_ms);
    opts.key_file           = key_file;
    opts.keyring_file       = keyring_file;
    assert_int_equal(mrd_client_open(&opts, &c), MRD_OK);
    sec.extra[slot] = c;
    return c;
}

static void
sec_clients_close(void)
{
    for (size_t i = 0; i < SEC_EXTRA_MAX; i++) {
        mrd_client_close(sec.extra[i]); /* waits for its async calls */
        sec.extra[i] = NULL;
    }
}

/* The events of stream, read directly with the harness admin. */
static mrd_events *
sec_read(const char *stream)
{
    mrd_events *got = NULL;
    assert_int_equal(
        mrd_read(sec.admin, stream, 0, MRD_FORWARD, 100, &got), MRD_OK);
    return got;
}

static size_t
sec_count(const char *stream)
{
    mrd_events *got = sec_read(stream);
    size_t      n   = mrd_events_count(got);
    mrd_events_free(got);
    return n;
}

/* stream holds exactly one event, of this type and data. */
static void
sec_expect_one(
    const char *stream, const char *type, const void *data, size_t size)
{
    mrd_events *got = sec_read(stream);
    assert_int_equal(mrd_events_count(got), 1);
    const mrd_event *ev = mrd_events_at(got, 0);
    assert_string_equal(ev->type, type);
    assert_int_equal(ev->data_size, size);
    assert_memory_equal(ev->data, data, size);
    mrd_events_free(got);
}

/* The node still serves: a direct append right after. */
static void
sec_direct_append_works(void)
{
    char         stream[64];
    mrd_event_in ev = sec_event("StillServing", "ok", 2);
    sec_stream(stream, sizeof stream, "after");
    assert_int_equal(mrd_append(sec.admin, stream, &ev, 1, NULL, NULL), MRD_OK);
    sec_expect_one(stream, "StillServing", "ok", 2);
}

/* ------------------------------------------------------------- sockets -- */

static void
sec_sock_timeouts(int fd)
{
    uint32_t       ms = harness_ms(SEC_SOCK_TIMEOUT_MS);
    struct timeval tv = { .tv_sec = (time_t) (ms / 1000u),
        .tv_usec                  = (suseconds_t) (ms % 1000u) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* A TCP connection to 127.0.0.1:port, or -1. */
static int
sec_tcp_connect(uint16_t port)
{
    struct sockaddr_in sa;
    int                fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sin_family      = AF_INET;
    sa.sin_port        = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *) &sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    sec_sock_timeouts(fd);
    return fd;
}

static int
sec_send_all(int fd, const uint8_t *b, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        b += w;
        n -= (size_t) w;
    }
    return 0;
}

/* Reads exactly n bytes: 1, 0 at end of stream or reset, -1 on a timeout
 * or another error. */
static int
sec_recv_all(int fd, uint8_t *b, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, b, n, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r == 0 || (r < 0 && errno == ECONNRESET)) {
            return 0;
        }
        if (r < 0) {
            return -1;
        }
        b += r;
        n -= (size_t) r;
    }
    return 1;
}

/* ------------------------------------------------------ proxy internals -- */

static void
proxy_record(int dir, const uint8_t *b, size_t n)
{
    if (px.rec_len[dir] + n > PROXY_REC_MAX) {
        px.rec_over = true;
        return;
    }
    memcpy(px.rec[dir] + px.rec_len[dir], b, n);
    px.rec_len[dir] += n;
}

static void
proxy_conn_close(struct proxy_conn *c)
{
    if (c->cfd >= 0) {
        close(c->cfd);
    }
    if (c->nfd >= 0) {
        close(c->nfd);
    }
    c->cfd = c->nfd = -1;
    free(c->in);
    free(c->held);
    c->in   = NULL;
    c->held = NULL;
}

/* Client to node, recorded. */
static int
proxy_fwd(struct proxy_conn *c, const uint8_t *b, size_t n)
{
    proxy_record(0, b, n);
    return sec_send_all(c->nfd, b, n);
}

/* Keeps a copy of the first client->node messages (msg1, msg3, a frame). */
static void
proxy_save(struct proxy_conn *c, uint32_t k, const uint8_t *unit, size_t len)
{
    if (k >= PROXY_SAVED || len > PROXY_SAVE_MAX) {
        return;
    }
    c->saved[k] = malloc(len);
    if (c->saved[k] == NULL) {
        px.failed = true;
        return;
    }
    memcpy(c->saved[k], unit, len);
    c->saved_len[k] = len;
}

/* Applies the connection's mode to its append frame (see the top). */
static int
proxy_tamper(struct proxy_conn *c, uint8_t *unit, size_t len)
{
    size_t plen = len - SP_LEN_SIZE; /* request id, then the frame */
    size_t ct   = plen - SP_REQ_ID_SIZE - LINK_FRAME_OVERHEAD;
    int    rv   = 0;

    px.armed         = false; /* once per proxy */
    px.tampered_conn = (size_t) (c - px.conns);
    switch (px.mode) {
    case PROXY_FLIP:
        unit[SP_LEN_SIZE + SP_REQ_ID_SIZE + LINK_CTR_SIZE + ct / 2] ^= 0x10u;
        rv = proxy_fwd(c, unit, len);
        break;
    case PROXY_REPLAY:
        rv = proxy_fwd(c, unit, len);
        rv = rv != 0 ? rv : proxy_fwd(c, unit, len);
        break;
    case PROXY_TRUNCATE:
        sec_put_be64(unit, plen - 5u);
        rv = proxy_fwd(c, unit, len - 5u);
        break;
    case PROXY_REORDER:
        c->held = malloc(len);
        if (c->held == NULL) {
            px.failed = true;
            return proxy_fwd(c, unit, len);
        }
        memcpy(c->held, unit, len);
        c->held_len = len;
        c->held_ms  = sec_now_ms();
        return 0; /* tampered once the next message overtakes it */
    case PROXY_PASS:
        return proxy_fwd(c, unit, len);
    }
    c->tampered = true;
    return rv;
}

/* One whole client->node message (length prefix included). */
static int
proxy_message(struct proxy_conn *c, uint8_t *unit, size_t len)
{
    uint32_t k = c->msgs++;
    proxy_save(c, k, unit, len);
    if (c->held != NULL) {
        /* PROXY_REORDER: this one overtakes the held one. */
        int rv = proxy_fwd(c, unit, len);
        rv     = rv != 0 ? rv : proxy_fwd(c, c->held, c->held_len);
        free(c->held);
        c->held     = NULL;
        c->tampered = true;
        return rv;
    }
    /* Messages 0 and 1 are the handshake (msg1, msg3). */
    if (k >= 2 && len - SP_LEN_SIZE >= PROXY_BIG && px.armed) {
        return proxy_tamper(c, unit, len);
    }
    return proxy_fwd(c, unit, len);
}

static bool
proxy_in_reserve(struct proxy_conn *c, size_t more)
{
    if (c->in_len + more <= c->in_cap) {
        return true;
    }
    size_t   cap = c->in_len + more + PROXY_CHUNK;
    uint8_t *p   = realloc(c->in, cap);
    if (p == NULL) {
        px.failed = true;
        return false;
    }
    c->in     = p;
    c->in_cap = cap;
    return true;
}

/* Client->node bytes: the connection header passes, then whole messages
 * go through proxy_message. */
static int
proxy_c2n(struct proxy_conn *c, const uint8_t *b, size_t n)
{
    size_t off = 0;
    int    rv  = 0;

    if (c->raw) {
        return proxy_fwd(c, b, n);
    }
    if (!proxy_in_reserve(c, n)) {
        return -1;
    }
    memcpy(c->in + c->in_len, b, n);
    c->in_len += n;
    while (rv == 0) {
        size_t avail = c->in_len - off;
        if (!c->hdr_done) {
            if (avail < SP_CONN_HDR_SIZE) {
                break;
            }
            rv = proxy_fwd(c, c->in + off, SP_CONN_HDR_SIZE);
            off += SP_CONN_HDR_SIZE;
            c->hdr_done = true;
            continue;
        }
        if (avail < SP_LEN_SIZE) {
            break;
        }
        uint64_t plen = sec_get_be64(c->in + off);
        if (plen > PROXY_MSG_MAX || plen < SP_REQ_ID_SIZE) {
            c->raw = true; /* not a message we can take apart */
            rv     = proxy_fwd(c, c->in + off, avail);
            off    = c->in_len;
            break;
        }
        if (avail < SP_LEN_SIZE + plen) {
            break;
        }
        rv = proxy_message(c, c->in + off, SP_LEN_SIZE + (size_t) plen);
        off += SP_LEN_SIZE + (size_t) plen;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return rv;
}

static void
proxy_accept(void)
{
    int cfd = accept(px.lfd, NULL, NULL);
    if (cfd < 0) {
        return;
    }
    int nfd = px.nconns < PROXY_CONNS_MAX ? sec_tcp_connect(px.node_port) : -1;
    if (nfd < 0) {
        close(cfd);
        return;
    }
    sec_sock_timeouts(cfd);
    struct proxy_conn *c = &px.conns[px.nconns];
    memset(c, 0, sizeof *c);
    c->cfd = cfd;
    c->nfd = nfd;
    px.nconns++;
}

/* One side of c is readable (or hung up). Proxy mutex held. */
static void
proxy_readable(struct proxy_conn *c, bool node_side)
{
    static uint8_t buf[PROXY_CHUNK];
    if (c->cfd < 0) {
        return; /* closed earlier in this round */
    }
    ssize_t got = recv(node_side ? c->nfd : c->cfd, buf, sizeof buf, 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
        return;
    }
    if (got <= 0) {
        c->node_closed = node_side;
        proxy_conn_close(c);
        return;
    }
    int rv;
    if (node_side) {
        proxy_record(1, buf, (size_t) got);
        rv = sec_send_all(c->cfd, buf, (size_t) got);
    } else {
        rv = proxy_c2n(c, buf, (size_t) got);
    }
    if (rv != 0) {
        proxy_conn_close(c);
    }
}

/* A held message whose successor never came goes out as it was. */
static void
proxy_hold_check(void)
{
    uint64_t now = sec_now_ms();
    for (size_t i = 0; i < px.nconns; i++) {
        struct proxy_conn *c = &px.conns[i];
        if (c->held != NULL && now - c->held_ms > harness_ms(PROXY_HOLD_MS)) {
            int rv = proxy_fwd(c, c->held, c->held_len);
            free(c->held);
            c->held = NULL;
            if (rv != 0) {
                proxy_conn_close(c);
            }
        }
    }
}

static void *
proxy_main(void *arg)
{
    struct pollfd fds[1 + 2 * PROXY_CONNS_MAX];
    size_t        who[1 + 2 * PROXY_CONNS_MAX];
    (void) arg;

    while (!atomic_load(&px.stop)) {
        size_t n = 0;
        fds[n++] = (struct pollfd) { .fd = px.lfd, .events = POLLIN };
        pthread_mutex_lock(&px.mu);
        for (size_t i = 0; i < px.nconns; i++) {
            if (px.conns[i].cfd >= 0) {
                who[n]   = 2 * i;
                fds[n++] = (struct pollfd) { .fd = px.conns[i].cfd,
                    .events                      = POLLIN };
                who[n]   = 2 * i + 1;
                fds[n++] = (struct pollfd) { .fd = px.conns[i].nfd,
                    .events                      = POLLIN };
            }
        }
        pthread_mutex_unlock(&px.mu);
        int ready = poll(fds, (nfds_t) n, PROXY_POLL_MS);
        pthread_mutex_lock(&px.mu);
        if (ready > 0 && (fds[0].revents & POLLIN) != 0) {
            proxy_accept();
        }
        for (size_t k = 1; ready > 0 && k < n; k++) {
            if (fds[k].revents != 0) {
                proxy_readable(&px.conns[who[k] / 2], who[k] % 2 == 1);
            }
        }
        proxy_hold_check();
        pthread_mutex_unlock(&px.mu);
    }
    return NULL;
}

/* ------------------------------------------------------ proxy, the API -- */

/* A proxy in front of the group's node; the first connection gets mode. */
static void
proxy_start(enum proxy_mode mode)
{
    struct sockaddr_in sa;
    socklen_t          sa_len = sizeof sa;
    int                one    = 1;

    assert_false(px.running);
    pthread_mutex_lock(&px.mu);
    px.mode          = mode;
    px.armed         = mode != PROXY_PASS;
    px.tampered_conn = PROXY_CONNS_MAX;
    px.node_port     = sec.node.port;
    px.nconns        = 0;
    px.rec_len[0] = px.rec_len[1] = 0;
    px.rec_over = px.failed = false;
    px.rec[0]               = malloc(PROXY_REC_MAX);
    px.rec[1]               = malloc(PROXY_REC_MAX);
    pthread_mutex_unlock(&px.mu);
    assert_non_null(px.rec[0]);
    assert_non_null(px.rec[1]);
    px.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(px.lfd >= 0);
    setsockopt(px.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&sa, 0, sizeof sa);
    sa.sin_family      = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(px.lfd, (struct sockaddr *) &sa, sizeof sa), 0);
    assert_int_equal(listen(px.lfd, 16), 0);
    assert_int_equal(getsockname(px.lfd, (struct sockaddr *) &sa, &sa_len), 0);
    snprintf(px.url, sizeof px.url, "tcp://127.0.0.1:%u",
        (unsigned) ntohs(sa.sin_port));
    atomic_store(&px.stop, false);
    assert_int_equal(pthread_create(&px.thread, NULL, proxy_main, NULL), 0);
    px.running = true;
}

/* Joins the thread and frees everything; safe when not running. */
static void
proxy_stop(void)
{
    if (px.running) {
        atomic_store(&px.stop, true);
        pthread_join(px.thread, NULL);
        px.running = false;
    }
    for (size_t i = 0; i < px.nconns; i++) {
        proxy_conn_close(&px.conns[i]);
        for (size_t k = 0; k < PROXY_SAVED; k++) {
            free(px.conns[i].saved[k]);
            px.conns[i].saved[k] = NULL;
        }
    }
    px.nconns = 0;
    if (px.lfd >= 0) {
        close(px.lfd);
        px.lfd = -1;
    }
    for (int d = 0; d < 2; d++) {
        free(px.rec[d]);
        px.rec[d]     = NULL;
        px.rec_len[d] = 0;
    }
}

/* A copy of connection i's state (buffers not included). */
static struct proxy_conn
proxy_conn_peek(size_t i)
{
    struct proxy_conn c;
    memset(&c, 0, sizeof c);
    c.cfd = c.nfd = -1;
    pthread_mutex_lock(&px.mu);
    if (i < px.nconns) {
        c = px.conns[i];
    }
    pthread_mutex_unlock(&px.mu);
    c.in = c.held = NULL;
    for (size_t k = 0; k < PROXY_SAVED; k++) {
        c.saved[k] = NULL;
    }
    return c;
}

static size_t
proxy_nconns(void)
{
    pthread_mutex_lock(&px.mu);
    size_t n = px.nconns;
    pthread_mutex_unlock(&px.mu);
    return n;
}

/* The connection the proxy tampered with; PROXY_CONNS_MAX when none. */
static size_t
proxy_tampered_conn(void)
{
    pthread_mutex_lock(&px.mu);
    size_t i = px.tampered_conn;
    pthread_mutex_unlock(&px.mu);
    return i;
}

static bool
proxy_node_closed(void *arg)
{
    return proxy_conn_peek(*(const size_t *) arg).node_closed;
}

/* ---------------------------------------------------------- the group -- */

static int
sec_setup(void **state)
{
    (void) state;
    if (sodium_init() < 0
        || harness_tmpdir_make("meridian-sec-", sec.dir, sizeof sec.dir) != 0
        || sec_keys_make() != 0) {
        return -1;
    }
    snprintf(sec.ring_path, sizeof sec.ring_path, "%s/node.keyring", sec.dir);
    const char *args[] = { "--keyring", sec.ring_path, NULL };
    if (sec_ring_write() != 0 || harness_node_init(&sec.node, SEC_NODE_ID) != 0
        || harness_node_start(&sec.node, args) != 0
        || harness_client_keyring(
               sec.node.url, sec.client_ring, sizeof sec.client_ring)
            != 0) {
        return -1;
    }
    struct harness_node *nodes[] = { &sec.node };
    return harness_client_open(nodes, 1, NULL, &sec.admin) == MRD_OK ? 0 : -1;
}

static int
sec_teardown(void **state)
{
    sec_clients_close();
    proxy_stop();
    mrd_client_close(sec.admin);
    sec.admin = NULL;
    harness_node_fini(&sec.node);
    const char *keep = getenv("MRD_TEST_KEEP");
    if (sec.dir[0] != '\0' && (keep == NULL || strcmp(keep, "1") != 0)) {
        harness_rmrf(sec.dir);
    }
    return harness_teardown(state);
}

/* After every test, passed or not: its clients, then its proxy. */
static int
sec_cleanup(void **state)
{
    (void) state;
    sec_clients_close();
    proxy_stop();
    return 0;
}

/* ------------------------------------------------- refused identities -- */

/* An append by a client the node must refuse: MRD_EAUTH, quickly, with
 * detail naming the reason, and nothing written. */
static void
sec_append_refused(mrd_client *c, const char *stream, const char *reason)
{
    mrd_event_in ev       = sec_event("Refused", "nope", 4);
    uint64_t     timeouts = sec_stat("rejected_link_timeout");
    uint64_t     t0       = sec_now_ms();
    int          rv       = mrd_append(c, stream, &ev, 1, NULL, NULL);
    uint64_t     ms       = sec_now_ms() - t0;

    assert_int_equal(rv, MRD_EAUTH);
    if (reason != NULL && strstr(mrd_errdetail(), reason) == NULL) {
        fail_msg("detail '%s' does not say '%s'", mrd_errdetail(), reason);
    }
    /* A refusal is a round trip or two. A handshake the node timed out
     * meanwhile (LK_HANDSHAKE_TIMEOUT_MS) is how a lost msg1 shows. */
    if (ms >= harness_ms(SEC_REFUSAL_FAST_MS)) {
        fail_msg("the refusal took %llu ms (timeout %u); handshakes the "
                 "node timed out meanwhile: %llu",
            (unsigned long long) ms, harness_ms(SEC_CALL_TIMEOUT_MS),
            (unsigned long long) (sec_stat("rejected_link_timeout")
                - timeouts));
    }
    sec_clients_close(); /* no more handshakes while we count */
    assert_int_equal(sec_count(stream), 0);
}

static void
test_unknown_key(void **state)
{
    char stream[64];
    (void) state;
    sec_stream(stream, sizeof stream, "unknown");
    uint64_t    before = sec_stat("rejected_link_untrusted");
    mrd_client *c      = sec_client(
             sec.node.url, sec.key_path[SEC_K_STRANGER], sec.client_ring);
    sec_append_refused(c, stream, "untrusted");
    assert_true(sec_stat("rejected_link_untrusted") > before);
}

static void
test_revoked(void **state)
{
    char         stream[64], stream2[64];
    mrd_event_in ev = sec_event("BeforeRevoke", "fine", 4);
    (void) state;
    assert_false(sec.revoked);
    sec_stream(stream, sizeof stream, "revoke");
    sec_stream(stream2, sizeof stream2, "revoke-after");
    mrd_client *c = sec_client(
        sec.node.url, sec.key_path[SEC_K_REVOCABLE], sec.client_ring);
    assert_int_equal(mrd_append(c, stream, &ev, 1, NULL, NULL), MRD_OK);
    sec_expect_one(stream, "BeforeRevoke", "fine", 4);

    struct sec_stat_wait w
        = { "rejected_link_revoked", sec_stat("rejected_link_revoked") };
    sec.revoked = true;
    assert_int_equal(sec_ring_write(), 0);
    assert_true(
        harness_wait_for(sec_stat_above, &w, SEC_WAIT_TRIES, SEC_WAIT_STEP_MS));
    /* The client holds two links to the node (one for long-polls): both
     * are cut, and nothing else. */
    assert_int_equal(sec_stat("rejected_link_revoked"), w.above + 2);
    sec_append_refused(c, stream2, NULL);
    sec_expect_one(stream, "BeforeRevoke", "fine", 4);
}

static void
test_wrong_cluster(void **state)
{
    char    stream[64], ring[HARNESS_PATH_SIZE + 32], text[512];
    char    cid_hex[33], pk_hex[65];
    uint8_t cid[16], pk[32], sk[64];
    (void) state;
    sec_cluster_id(cid);
    cid[0] ^= 0xffu; /* another cluster */
    harness_node_keypair(SEC_NODE_ID, pk, sk);
    sodium_memzero(sk, sizeof sk);
    sodium_bin2hex(cid_hex, sizeof cid_hex, cid, 16);
    sodium_bin2hex(pk_hex, sizeof pk_hex, pk, 32);
    snprintf(text, sizeof text, "cluster %s\nnode %u %s\n", cid_hex,
        SEC_NODE_ID, pk_hex);
    snprintf(ring, sizeof ring, "%s/other-cluster.keyring", sec.dir);
    assert_int_equal(sec_file_replace(ring, text), 0);

    sec_stream(stream, sizeof stream, "cluster");
    uint64_t    before = sec_stat("rejected_link_cluster");
    mrd_client *c = sec_client(sec.node.url, harness_admin_key_file(), ring);
    sec_append_refused(c, stream, "cluster");
    assert_true(sec_stat("rejected_link_cluster") > before);
}

static bool
sec_trust_none(void *arg, const uint8_t pk[LINK_KEY_SIZE])
{
    (void) arg;
    (void) pk;
    return false;
}

static void
test_wrong_version(void **state)
{
    static const uint8_t want[LK_REFUSAL_SIZE] = { LINK_MAGIC0, LINK_MAGIC1,
        LINK_VERSION, LK_REFUSAL_TYPE, LK_R_VERSION };
    uint8_t              pk[32], sk[64], seed[LINK_SEED_SIZE];
    uint8_t              msg1[LINK_MSG1_SIZE];
    struct link_config   cfg
        = { .pk = pk, .sk = sk, .trust = sec_trust_none, .frame_max = 1024 };
    struct link_hs hs;
    nng_socket     s;
    nng_msg       *m = NULL, *rep = NULL;
    uint32_t       id = 0;
    (void) state;

    sec_cluster_id(cfg.cluster_id); /* only the version is wrong */
    crypto_sign_keypair(pk, sk);
    randombytes_buf(seed, sizeof seed);
    link_hs_initiate(&hs, &cfg, seed, msg1);
    link_hs_wipe(&hs);
    msg1[2]         = 2; /* the version byte */
    uint64_t before = sec_stat("rejected_link_version");

    /* Raw req0: the request id is ours to put in the header. The socket
     * is left to process exit, as the harness's are: NNG 1.5.2's
     * nng_close() can hang after a dropped connection. */
    assert_int_equal(nng_req0_open_raw(&s), 0);
    nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, (nng_duration) harness_ms(5000));
    nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, (nng_duration) harness_ms(5000));
    assert_int_equal(nng_dial(s, sec.node.url, NULL, 0), 0);
    assert_int_equal(nng_msg_alloc(&m, 0), 0);
    assert_int_equal(nng_msg_append(m, msg1, sizeof msg1), 0);
    assert_int_equal(nng_msg_header_append_u32(m, 0x80000001u), 0);
    assert_int_equal(nng_sendmsg(s, m, 0), 0);
    assert_int_equal(nng_recvmsg(s, &rep, 0), 0);
    assert_int_equal(nng_msg_header_len(rep), 4);
    assert_int_equal(nng_msg_header_trim_u32(rep, &id), 0);
    assert_int_equal(id, 0x80000001u);
    assert_int_equal(nng_msg_len(rep), LK_REFUSAL_SIZE);
    assert_memory_equal(nng_msg_body(rep), want, LK_REFUSAL_SIZE);
    nng_msg_free(rep);
    assert_int_equal(sec_stat("rejected_link_version"), before + 1);
}

/* ---------------------------------------------------------------- roles -- */

static void
test_roles(void **state)
{
    char         stream[64];
    mrd_events  *got  = NULL;
    mrd_event_in seed = sec_event("Seed", "s", 1);
    mrd_event_in ev   = sec_event("RoleTest", "r", 1);
    (void) state;
    uint64_t    before = sec_stat("rejected_role");
    mrd_client *reader
        = sec_client(sec.node.url, sec.key_path[SEC_K_READER], sec.client_ring);
    mrd_client *orders
        = sec_client(sec.node.url, sec.key_path[SEC_K_ORDERS], sec.client_ring);
    mrd_client *ops
        = sec_client(sec.node.url, sec.key_path[SEC_K_OPS], sec.client_ring);

    /* A reader reads, and cannot append. */
    sec_stream(stream, sizeof stream, "roles");
    assert_int_equal(mrd_append(sec.admin, stream, &seed, 1, NULL, NULL), 0);
    assert_int_equal(mrd_append(reader, stream, &ev, 1, NULL, NULL), MRD_EPERM);
    assert_non_null(strstr(mrd_errdetail(), "write role"));
    sec_expect_one(stream, "Seed", "s", 1);
    assert_int_equal(mrd_read(reader, stream, 0, MRD_FORWARD, 10, &got), 0);
    assert_int_equal(mrd_events_count(got), 1);
    assert_string_equal(mrd_events_at(got, 0)->type, "Seed");
    mrd_events_free(got);

    /* A writer limited to "orders-" appends there only. */
    assert_int_equal(mrd_append(orders, "orders-1", &ev, 1, NULL, NULL), 0);
    sec_expect_one("orders-1", "RoleTest", "r", 1);
    assert_int_equal(
        mrd_append(orders, "carts-1", &ev, 1, NULL, NULL), MRD_EPERM);
    assert_non_null(strstr(mrd_errdetail(), "prefixes"));
    assert_int_equal(sec_count("carts-1"), 0);

    /* An admin appends anywhere. */
    assert_int_equal(mrd_append(ops, "carts-1", &ev, 1, NULL, NULL), 0);
    sec_expect_one("carts-1", "RoleTest", "r", 1);
    assert_int_equal(sec_stat("rejected_role"), before + 2);
}

/* ------------------------------------------------------------ tampering -- */

/* The node refused the tampered frame and closed that connection: the
 * counter moved by one, and (retried) the library's retry went over a new
 * connection. */
static void
sec_tamper_refused(uint64_t frame_before, bool retried)
{
    size_t t = proxy_tampered_conn();
    assert_true(t < PROXY_CONNS_MAX);
    assert_true(proxy_conn_peek(t).tampered);
    assert_true(harness_wait_for(
        proxy_node_closed, &t, SEC_WAIT_TRIES, SEC_WAIT_STEP_MS));
    assert_int_equal(sec_stat("rejected_link_frame"), frame_before + 1);
    if (retried) {
        assert_true(proxy_nconns() > t + 1);
    }
    pthread_mutex_lock(&px.mu);
    bool failed = px.failed;
    pthread_mutex_unlock(&px.mu);
    assert_false(failed);
}

/* One append through a proxy in mode: it ends well, the stream holds it
 * once and intact, the node counted one bad frame, closed the connection
 * and serves on. fresh: the node never acted on the tampered frame, so the
 * call needed a retry on a new connection and that retry was the first
 * write (not the stored answer to one). */
static void
sec_tamper_one(enum proxy_mode mode, const char *what, bool fresh)
{
    static char       data[SEC_TAMPER_DATA_SIZE];
    char              stream[64];
    mrd_append_result res;

    sec_stream(stream, sizeof stream, what);
    sec_fill(data, sizeof data, stream);
    mrd_event_in ev = sec_event("Tampered", data, sizeof data);
    proxy_start(mode);
    uint64_t    frame_before = sec_stat("rejected_link_frame");
    mrd_client *c
        = sec_client(px.url, harness_admin_key_file(), sec.client_ring);

    memset(&res, 0, sizeof res);
    assert_int_equal(mrd_append(c, stream, &ev, 1, NULL, &res), MRD_OK);
    assert_int_equal(res.count, 1);
    if (fresh) {
        assert_int_equal(res.replayed, 0);
    }
    sec_tamper_refused(frame_before, fresh);
    sec_expect_one(stream, "Tampered", data, sizeof data);
    sec_direct_append_works();
}

static void
test_tamper_flip(void **state)
{
    (void) state;
    sec_tamper_one(PROXY_FLIP, "flip", true);
}

static void
test_tamper_replay(void **state)
{
    (void) state;
    /* The first copy is good and is written. On loopback the node may
     * answer it before the second copy arrives and closes the pipe (no
     * retry needed), or the retry gets the stored answer: either way one
     * event, not two. */
    sec_tamper_one(PROXY_REPLAY, "replay", false);
}

static void
test_tamper_truncate(void **state)
{
    (void) state;
    sec_tamper_one(PROXY_TRUNCATE, "truncate", true);
}

static void
sec_append_cb(void *arg, int err, const mrd_append_result *result)
{
    struct sec_async *a = arg;
    a->err              = err;
    a->replayed         = result != NULL ? result->replayed : -1;
    atomic_store(&a->done, 1);
}

static bool
sec_async_both_done(void *arg)
{
    (void) arg;
    return atomic_load(&sec_async_res[0].done) != 0
        && atomic_load(&sec_async_res[1].done) != 0;
}

static void
test_tamper_reorder(void **state)
{
    static char data[2][SEC_TAMPER_DATA_SIZE];
    char        stream[2][64];
    (void) state;

    proxy_start(PROXY_REORDER);
    uint64_t    frame_before = sec_stat("rejected_link_frame");
    mrd_client *c
        = sec_client(px.url, harness_admin_key_file(), sec.client_ring);
    for (int i = 0; i < 2; i++) {
        sec_stream(stream[i], sizeof stream[i], "reorder");
        sec_fill(data[i], sizeof data[i], stream[i]);
        atomic_store(&sec_async_res[i].done, 0);
    }
    /* Two requests in flight on the one connection. */
    for (int i = 0; i < 2; i++) {
        mrd_event_in ev = sec_event("Reordered", data[i], sizeof data[i]);
        assert_int_equal(mrd_append_async(c, stream[i], &ev, 1, NULL,
                             sec_append_cb, &sec_async_res[i]),
            MRD_OK);
    }
    assert_true(harness_wait_for(
        sec_async_both_done, NULL, SEC_WAIT_TRIES * 2, SEC_WAIT_STEP_MS));
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sec_async_res[i].err, MRD_OK);
        assert_int_equal(sec_async_res[i].replayed, 0); /* never acted on */
    }
    sec_tamper_refused(frame_before, true);
    for (int i = 0; i < 2; i++) {
        sec_expect_one(stream[i], "Reordered", data[i], sizeof data[i]);
    }
    sec_direct_append_works();
}

/* Sends a recorded handshake (msg1, msg3) and the session's first frame on
 * a fresh connection: the node answers msg1 with a new msg2, and must
 * refuse the old msg3 (a refusal or a close) and look at nothing after. */
static void
sec_replay_handshake(const struct proxy_conn *rec)
{
    static const uint8_t hdr[SP_CONN_HDR_SIZE]
        = { 0, 'S', 'P', 0, 0, SP_PROTO_REQ0, 0, 0 };
    static const uint8_t want_hdr[SP_CONN_HDR_SIZE]
        = { 0, 'S', 'P', 0, 0, SP_PROTO_REP0, 0, 0 };
    static const uint8_t refusal[LK_REFUSAL_SIZE] = { LINK_MAGIC0, LINK_MAGIC1,
        LINK_VERSION, LK_REFUSAL_TYPE, LK_R_MALFORMED };
    uint8_t              buf[SP_LEN_SIZE + SP_REQ_ID_SIZE + LINK_MSG2_SIZE];
    bool                 refused = false, closed = false;

    int fd = sec_tcp_connect(sec.node.port);
    assert_true(fd >= 0);
    assert_int_equal(sec_send_all(fd, hdr, sizeof hdr), 0);
    assert_int_equal(sec_recv_all(fd, buf, SP_CONN_HDR_SIZE), 1);
    assert_memory_equal(buf, want_hdr, SP_CONN_HDR_SIZE);
    assert_int_equal(sec_send_all(fd, rec->saved[0], rec->saved_len[0]), 0);
    if (sec_recv_all(fd, buf, sizeof buf) != 1) {
        fail_msg("no msg2 for a well-formed msg1 (handshakes the node timed "
                 "out: %llu)",
            (unsigned long long) sec_stat("rejected_link_timeout"));
    }
    assert_int_equal(
        sec_get_be64(buf), SP_REQ_ID_SIZE + (uint64_t) LINK_MSG2_SIZE);
    assert_int_equal(buf[SP_LEN_SIZE + SP_REQ_ID_SIZE], LINK_MAGIC0);
    assert_int_equal(buf[SP_LEN_SIZE + SP_REQ_ID_SIZE + 3], 2); /* msg2 */
    assert_int_equal(sec_send_all(fd, rec->saved[1], rec->saved_len[1]), 0);
    /* May fail: the node may have closed already. */
    (void) sec_send_all(fd, rec->saved[2], rec->saved_len[2]);
    for (int i = 0; i < 3 && !closed; i++) {
        int r = sec_recv_all(fd, buf, SP_LEN_SIZE);
        assert_true(r >= 0); /* not a timeout */
        if (r == 0) {
            closed = true;
            break;
        }
        /* The only message allowed is the refusal, once. */
        assert_false(refused);
        assert_int_equal(
            sec_get_be64(buf), SP_REQ_ID_SIZE + (uint64_t) LK_REFUSAL_SIZE);
        assert_int_equal(
            sec_recv_all(fd, buf, SP_REQ_ID_SIZE + LK_REFUSAL_SIZE), 1);
        assert_memory_equal(buf + SP_REQ_ID_SIZE, refusal, LK_REFUSAL_SIZE);
        refused = true;
    }
    assert_true(closed);
    close(fd);
}

static void
test_tamper_handshake_replay(void **state)
{
    static char data[SEC_TAMPER_DATA_SIZE];
    char        stream[64];
    (void) state;

    /* A good session through a recording proxy. */
    sec_stream(stream, sizeof stream, "hs-replay");
    sec_fill(data, sizeof data, stream);
    mrd_event_in ev = sec_event("Recorded", data, sizeof data);
    proxy_start(PROXY_PASS);
    mrd_client *c
        = sec_client(px.url, harness_admin_key_file(), sec.client_ring);
    assert_int_equal(mrd_append(c, stream, &ev, 1, NULL, NULL), MRD_OK);
    sec_clients_close();
    sec_expect_one(stream, "Recorded", data, sizeof data);
    /* The first connection that carried a handshake and a frame; its
     * saved buffers stay put until proxy_stop(). */
    struct proxy_conn rec;
    memset(&rec, 0, sizeof rec);
    pthread_mutex_lock(&px.mu);
    for (size_t i = 0; i < px.nconns && rec.saved[2] == NULL; i++) {
        rec = px.conns[i];
    }
    pthread_mutex_unlock(&px.mu);
    assert_true(rec.msgs >= 3);
    assert_int_equal(rec.saved_len[0],
        SP_LEN_SIZE + SP_REQ_ID_SIZE + (size_t) LINK_MSG1_SIZE);
    assert_int_equal(rec.saved_len[1],
        SP_LEN_SIZE + SP_REQ_ID_SIZE + (size_t) LINK_MSG3_SIZE);
    assert_non_null(rec.saved[2]);

    uint64_t malformed = sec_stat("rejected_link_malformed");
    uint64_t frame     = sec_stat("rejected_link_frame");
    uint64_t sessions  = sec_stat("link_sessions");
    sec_replay_handshake(&rec);
    struct sec_stat_wait w = { "rejected_link_malformed", malformed };
    assert_true(
        harness_wait_for(sec_stat_above, &w, SEC_WAIT_TRIES, SEC_WAIT_STEP_MS));
    assert_int_equal(sec_stat("rejected_link_malformed"), malformed + 1);
    assert_int_equal(sec_stat("rejected_link_frame"), frame);
    assert_int_equal(sec_stat("link_sessions"), sessions);
    sec_expect_one(stream, "Recorded", data, sizeof data);
    sec_direct_append_works();
}

/* -------------------------------------------------------------- capture -- */

static void
test_capture(void **state)
{
    static char        data[SEC_CAPTURE_DATA_SIZE];
    static const char *stream = "capture-stream-7f3a";
    static const char *type   = "CaptureType";
    mrd_events        *got    = NULL;
    (void) state;

    sec_fill(data, sizeof data, "TOPSECRET-PAYLOAD");
    mrd_event_in ev = sec_event(type, data, sizeof data);
    proxy_start(PROXY_PASS);
    mrd_client *c
        = sec_client(px.url, harness_admin_key_file(), sec.client_ring);
    assert_int_equal(mrd_append(c, stream, &ev, 1, NULL, NULL), MRD_OK);
    assert_int_equal(mrd_read(c, stream, 0, MRD_FORWARD, 10, &got), MRD_OK);
    sec_clients_close();

    /* What the client got back has every string... */
    assert_int_equal(mrd_events_count(got), 1);
    const mrd_event *e = mrd_events_at(got, 0);
    assert_string_equal(e->stream, stream);
    assert_string_equal(e->type, type);
    assert_int_equal(e->data_size, sizeof data);
    assert_memory_equal(e->data, data, sizeof data);
    mrd_events_free(got);

    /* ...and the wire none, either way. */
    const char *needles[] = { stream, type, "TOPSECRET-PAYLOAD", "TOPSECRET" };
    pthread_mutex_lock(&px.mu);
    bool   over   = px.rec_over;
    bool   hdr    = sec_find(px.rec[0], px.rec_len[0], "\0SP\0", 4);
    size_t len[2] = { px.rec_len[0], px.rec_len[1] };
    bool   seen   = false;
    for (int d = 0; d < 2; d++) {
        for (size_t i = 0; i < sizeof needles / sizeof needles[0]; i++) {
            seen = seen
                || sec_find(
                    px.rec[d], px.rec_len[d], needles[i], strlen(needles[i]));
        }
        seen = seen || sec_find(px.rec[d], px.rec_len[d], data, 16);
    }
    pthread_mutex_unlock(&px.mu);
    assert_false(over);
    assert_true(hdr); /* the search does find what is there */
    assert_true(len[0] > sizeof data && len[1] > sizeof data);
    assert_false(seen);
}

/* ----------------------------------------------------------------- main -- */

#define SEC_TEST(f) cmocka_unit_test_teardown(f, sec_cleanup)

int
main(void)
{
    const struct CMUnitTest tests[] = {
        SEC_TEST(test_unknown_key),
        SEC_TEST(test_revoked),
        SEC_TEST(test_wrong_cluster),
        SEC_TEST(test_wrong_version),
        SEC_TEST(test_roles),
        SEC_TEST(test_tamper_flip),
        SEC_TEST(test_tamper_replay),
        SEC_TEST(test_tamper_reorder),
        SEC_TEST(test_tamper_truncate),
        SEC_TEST(test_tamper_handshake_replay),
        SEC_TEST(test_capture),
    };
    return cmocka_run_group_tests_name(
        "security", tests, sec_setup, sec_teardown);
}
