/*
 * chaos_proxy_test.c: the fault proxy (chaos/proxy.h), in one process over
 * TCP on 127.0.0.1.
 *
 * Each test starts a proxy in front of a plain listening socket (the
 * "upstream") and holds both ends of the link itself: the client socket it
 * connected to the proxy, and the server socket it accepted from the
 * upstream listener. So every fault is observed per direction, by writing
 * on one end and reading on the other: pass-through integrity of 1 MiB
 * each way; blackhole (both ways, one way) and its lifting; refuse; reset;
 * latency with jitter (delay in bounds, byte order kept); the bandwidth
 * cap; one flipped bit per chunk; SP frames dropped, duplicated and
 * replayed on a fake SP stream that must stay well-framed; slow close; an
 * unreachable upstream; the connection limit; back-pressure when the
 * proxy's queue is full; and that one seed gives the same decisions twice.
 *
 * Timing bounds are generous (the machine is shared and noisy); waits are
 * bounded, and alarm() turns a hang into a failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common.h"
#include "proxy.h"

/* ------------------------------------------------------------ fixtures -- */

/* The whole binary: a hang fails instead of blocking CI. */
#define TEST_ALARM_S 120u
/* Bound on a wait for bytes or a close that must come. */
#define TEST_WAIT_MS 3000
/* How long "nothing arrives" is watched. */
#define TEST_QUIET_MS 300
/* The pass-through payload, each way. */
#define TEST_BIG_SIZE (1024u * 1024u)
/* Messages of the fake SP stream, and the longest body (a multiple of
 * nothing in particular, so reads split messages anywhere). */
#define TEST_FRAMES 200u
#define TEST_FRAME_BODY_MAX 53u

struct test_link {
    struct chaos_proxy *proxy;
    int                 lfd; /* the upstream listener */
    int                 cfd; /* client end, connected to the proxy */
    int                 sfd; /* server end, accepted from lfd */
};

static uint64_t
test_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z          = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z          = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void
test_sleep_ms(unsigned ms)
{
    struct timespec ts
        = { .tv_sec = ms / 1000u, .tv_nsec = (long) (ms % 1000u) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) { }
}

static int
test_listen(uint16_t *port)
{
    struct sockaddr_in sa
        = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sa;
    int       fd  = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static int
test_connect(uint16_t port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
        .sin_port                         = htons(port),
        .sin_addr.s_addr                  = htonl(INADDR_LOOPBACK) };
    int                fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof sa), 0);
    return fd;
}

/* A connection accepted on lfd within ms, or -1. */
static int
test_accept_within(int lfd, int ms)
{
    struct pollfd pfd = { .fd = lfd, .events = POLLIN };
    if (poll(&pfd, 1, ms) != 1) {
        return -1;
    }
    return accept(lfd, NULL, NULL);
}

static void
test_link_open(
    struct test_link *l, const struct chaos_faults *faults, uint64_t seed)
{
    uint16_t    up_port           = 0;
    const char *why               = NULL;
    l->lfd                        = test_listen(&up_port);
    struct chaos_proxy_config cfg = {
        .upstream_host = "127.0.0.1", .upstream_port = up_port, .seed = seed
    };
    if (faults != NULL) {
        cfg.faults = *faults;
    }
    int rv = chaos_proxy_start(&cfg, &l->proxy, &why);
    if (rv != MRD_OK) {
        fail_msg("chaos_proxy_start: %s (%s)", mrd_errname(rv), why);
    }
    assert_true(chaos_proxy_port(l->proxy) != 0);
    l->cfd = test_connect(chaos_proxy_port(l->proxy));
    l->sfd = test_accept_within(l->lfd, TEST_WAIT_MS);
    assert_true(l->sfd >= 0);
}

static void
test_link_close(struct test_link *l)
{
    chaos_proxy_stop(l->proxy);
    close(l->lfd);
    close(l->cfd);
    close(l->sfd);
    memset(l, 0, sizeof *l);
}

static void
test_set(struct test_link *l, const struct chaos_faults *f)
{
    assert_int_equal(chaos_proxy_set(l->proxy, f), MRD_OK);
}

static void
test_write_all(int fd, const void *data, size_t size)
{
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
        assert_true(n > 0);
        p += n;
        size -= (size_t) n;
    }
}

/* Reads until size bytes, EOF, an error or ms elapsed; the count read. */
static size_t
test_read_within(int fd, uint8_t *buf, size_t size, int ms)
{
    uint64_t end  = mrd_now_mono_ms() + (uint64_t) ms;
    size_t   have = 0;
    while (have < size) {
        uint64_t      now = mrd_now_mono_ms();
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (now >= end || poll(&pfd, 1, (int) (end - now)) != 1) {
            break;
        }
        ssize_t n = read(fd, buf + have, size - have);
        if (n <= 0) {
            break;
        }
        have += (size_t) n;
    }
    return have;
}

/* How fd ends within ms, discarding data: 0 for EOF, else an errno
 * (ECONNRESET; ETIMEDOUT when it stays open). */
static int
test_wait_close(int fd, int ms)
{
    uint64_t end = mrd_now_mono_ms() + (uint64_t) ms;
    uint8_t  buf[4096];
    for (;;) {
        uint64_t      now = mrd_now_mono_ms();
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (now >= end || poll(&pfd, 1, (int) (end - now)) != 1) {
            return ETIMEDOUT;
        }
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0) {
            return 0;
        }
        if (n < 0) {
            return errno;
        }
    }
}

/* Writes src on wfd while reading as much on rfd, so neither side's
 * buffers need to hold it all; returns the bytes read within ms. */
static size_t
test_xfer(
    int wfd, int rfd, const uint8_t *src, uint8_t *dst, size_t size, int ms)
{
    uint64_t end  = mrd_now_mono_ms() + (uint64_t) ms;
    size_t   sent = 0, got = 0;
    int      fl = fcntl(wfd, F_GETFL);
    assert_int_equal(fcntl(wfd, F_SETFL, fl | O_NONBLOCK), 0);
    while (got < size && mrd_now_mono_ms() < end) {
        struct pollfd pfd[2] = { { .fd = rfd, .events = POLLIN },
            { .fd = sent < size ? wfd : -1, .events = POLLOUT } };
        if (poll(pfd, 2, 100) <= 0) {
            continue;
        }
        if (pfd[1].revents & POLLOUT) {
            ssize_t n = send(wfd, src + sent, size - sent, MSG_NOSIGNAL);
            assert_true(n > 0 || errno == EAGAIN);
            sent += n > 0 ? (size_t) n : 0;
        }
        if (pfd[0].revents != 0) {
            ssize_t n = read(rfd, dst + got, size - got);
            assert_true(n > 0);
            got += (size_t) n;
        }
    }
    assert_int_equal(fcntl(wfd, F_SETFL, fl), 0);
    return got;
}

/* True when fd is open with nothing to read: no EOF, no error. */
static bool
test_still_open(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    return poll(&pfd, 1, 0) == 0;
}

static struct chaos_proxy_stats
test_stats(const struct test_link *l)
{
    struct chaos_proxy_stats st;
    chaos_proxy_stats(l->proxy, &st);
    return st;
}

/* Counters move just after the bytes or closes they count: polls st until
 * cond holds, for at most TEST_WAIT_MS. */
#define TEST_WAIT_STATS(proxy, st, cond)                                       \
    do {                                                                       \
        for (int i_ = 0; i_ < TEST_WAIT_MS / 10; i_++) {                       \
            chaos_proxy_stats((proxy), &(st));                                 \
            if (cond) {                                                        \
                break;                                                         \
            }                                                                  \
            test_sleep_ms(10);                                                 \
        }                                                                      \
    } while (0)

/* ------------------------------------------------------- pass, errors -- */

static void
test_pass(void **state)
{
    (void) state;
    struct test_link l;
    uint8_t         *src = malloc(TEST_BIG_SIZE);
    uint8_t         *dst = malloc(TEST_BIG_SIZE);
    uint64_t         s   = 7;
    assert_non_null(src);
    assert_non_null(dst);
    for (size_t i = 0; i < TEST_BIG_SIZE; i++) {
        src[i] = (uint8_t) test_rand(&s);
    }
    test_link_open(&l, NULL, 1);
    assert_int_equal(
        test_xfer(l.cfd, l.sfd, src, dst, TEST_BIG_SIZE, 10000), TEST_BIG_SIZE);
    assert_memory_equal(src, dst, TEST_BIG_SIZE);
    src[0] ^= 0xffu; /* the other way, not the same bytes */
    assert_int_equal(
        test_xfer(l.sfd, l.cfd, src, dst, TEST_BIG_SIZE, 10000), TEST_BIG_SIZE);
    assert_memory_equal(src, dst, TEST_BIG_SIZE);
    struct chaos_proxy_stats st;
    TEST_WAIT_STATS(l.proxy, st, st.bytes_fwd[CHAOS_DOWN] == TEST_BIG_SIZE);
    assert_int_equal(st.conns_accepted, 1);
    assert_int_equal(st.conns_open, 1);
    assert_int_equal(st.bytes_fwd[CHAOS_UP], TEST_BIG_SIZE);
    assert_int_equal(st.bytes_fwd[CHAOS_DOWN], TEST_BIG_SIZE);
    assert_int_equal(st.bytes_dropped + st.chunks_corrupted, 0);
    /* A clean close each way goes through, and the proxy lets go. */
    shutdown(l.cfd, SHUT_WR);
    assert_int_equal(test_wait_close(l.sfd, TEST_WAIT_MS), 0);
    shutdown(l.sfd, SHUT_WR);
    assert_int_equal(test_wait_close(l.cfd, TEST_WAIT_MS), 0);
    TEST_WAIT_STATS(l.proxy, st, st.conns_open == 0);
    assert_int_equal(st.conns_open, 0);
    test_link_close(&l);
    free(src);
    free(dst);
}

static void
test_bad_args(void **state)
{
    (void) state;
    struct chaos_proxy       *p   = (struct chaos_proxy *) &p;
    const char               *why = NULL;
    struct chaos_proxy_config cfg
        = { .upstream_host = "localhost", .upstream_port = 9 };
    /* Names are not resolved: the harness deals in addresses. */
    assert_int_equal(chaos_proxy_start(&cfg, &p, &why), MRD_EINVAL);
    assert_null(p);
    assert_non_null(why);
    cfg.upstream_host                 = "127.0.0.1";
    cfg.faults.dir[CHAOS_UP].drop_ppm = CHAOS_PPM + 1u;
    assert_int_equal(chaos_proxy_start(&cfg, &p, &why), MRD_EINVAL);
    cfg.faults = (struct chaos_faults) { 0 };
    assert_int_equal(chaos_proxy_start(&cfg, &p, &why), MRD_OK);
    struct chaos_faults f = { .close_delay_ms = CHAOS_DELAY_MS_MAX + 1u };
    assert_int_equal(chaos_proxy_set(p, &f), MRD_EINVAL);
    f = (struct chaos_faults) { .dir[CHAOS_DOWN].latency_ms = 5 };
    assert_int_equal(chaos_proxy_set(p, &f), MRD_OK);
    struct chaos_faults g;
    chaos_proxy_get(p, &g);
    assert_int_equal(g.dir[CHAOS_DOWN].latency_ms, 5);
    chaos_proxy_stop(p);
    chaos_proxy_stop(NULL);
}

/* An upstream that is not there: the client's connection is reset. */
static void
test_upstream_down(void **state)
{
    (void) state;
    uint16_t port = 0;
    int      lfd  = test_listen(&port);
    close(lfd); /* now nothing listens on port */
    struct chaos_proxy       *p = NULL;
    struct chaos_proxy_config cfg
        = { .upstream_host = "127.0.0.1", .upstream_port = port };
    assert_int_equal(chaos_proxy_start(&cfg, &p, NULL), MRD_OK);
    int cfd = test_connect(chaos_proxy_port(p));
    assert_int_equal(test_wait_close(cfd, TEST_WAIT_MS), ECONNRESET);
    struct chaos_proxy_stats st;
    TEST_WAIT_STATS(p, st, st.conns_failed == 1);
    assert_int_equal(st.conns_failed, 1);
    close(cfd);
    chaos_proxy_stop(p);
}

/* ---------------------------------------------------------- partitions -- */

/* Sends on `from` and expects nothing on `to` for TEST_QUIET_MS, the
 * connection still open. */
static void
test_expect_quiet(int from, int to)
{
    uint8_t buf[1000];
    memset(buf, 'q', sizeof buf);
    test_write_all(from, buf, sizeof buf);
    assert_int_equal(test_read_within(to, buf, sizeof buf, TEST_QUIET_MS), 0);
    assert_true(test_still_open(to));
}

static void
test_expect_through(int from, int to, uint8_t mark)
{
    uint8_t out[100], in[100];
    memset(out, mark, sizeof out);
    test_write_all(from, out, sizeof out);
    assert_int_equal(
        test_read_within(to, in, sizeof in, TEST_WAIT_MS), sizeof in);
    assert_memory_equal(out, in, sizeof out);
}

static void
test_blackhole(void **state)
{
    (void) state;
    struct test_link    l;
    struct chaos_faults f = { 0 };
    test_link_open(&l, NULL, 2);
    f.dir[CHAOS_UP].blackhole = f.dir[CHAOS_DOWN].blackhole = true;
    test_set(&l, &f);
    test_expect_quiet(l.cfd, l.sfd);
    test_expect_quiet(l.sfd, l.cfd);
    assert_true(test_still_open(l.cfd));
    assert_int_equal(test_stats(&l).bytes_dropped, 2000);
    /* Lifted: new bytes flow, the discarded ones never come. */
    test_set(&l, &(struct chaos_faults) { 0 });
    test_expect_through(l.cfd, l.sfd, 'a');
    test_expect_through(l.sfd, l.cfd, 'b');
    test_link_close(&l);
}

static void
test_one_way(void **state)
{
    (void) state;
    struct test_link    l;
    struct chaos_faults f = { .dir[CHAOS_UP].blackhole = true };
    test_link_open(&l, &f, 3);
    test_expect_quiet(l.cfd, l.sfd);
    test_expect_through(l.sfd, l.cfd, 'd');
    f = (struct chaos_faults) { .dir[CHAOS_DOWN].blackhole = true };
    test_set(&l, &f);
    test_expect_quiet(l.sfd, l.cfd);
    test_expect_through(l.cfd, l.sfd, 'u');
    test_link_close(&l);
}

static void
test_refuse(void **state)
{
    (void) state;
    struct test_link l;
    test_link_open(&l, NULL, 4);
    test_set(&l, &(struct chaos_faults) { .refuse = true });
    int fd = test_connect(chaos_proxy_port(l.proxy));
    int rv = test_wait_close(fd, TEST_WAIT_MS);
    assert_true(rv == ECONNRESET || rv == 0);
    assert_int_equal(test_accept_within(l.lfd, 200), -1);
    struct chaos_proxy_stats st;
    TEST_WAIT_STATS(l.proxy, st, st.conns_refused == 1);
    assert_int_equal(st.conns_refused, 1);
    close(fd);
    /* The connection from before refuse is untouched. */
    test_expect_through(l.cfd, l.sfd, 'r');
    test_link_close(&l);
}

static void
test_reset(void **state)
{
    (void) state;
    struct test_link l;
    test_link_open(&l, NULL, 5);
    test_expect_through(l.cfd, l.sfd, 'x');
    chaos_proxy_reset(l.proxy);
    assert_int_equal(test_wait_close(l.cfd, TEST_WAIT_MS), ECONNRESET);
    assert_int_equal(test_wait_close(l.sfd, TEST_WAIT_MS), ECONNRESET);
    struct chaos_proxy_stats st = test_stats(&l);
    assert_int_equal(st.conns_reset, 1);
    assert_int_equal(st.conns_open, 0);
    /* Later connections are served. */
    int cfd = test_connect(chaos_proxy_port(l.proxy));
    int sfd = test_accept_within(l.lfd, TEST_WAIT_MS);
    assert_true(sfd >= 0);
    test_expect_through(cfd, sfd, 'y');
    close(cfd);
    close(sfd);
    test_link_close(&l);
}

/* One connection past CHAOS_CONNS_MAX is reset at once; the others stay. */
static void
test_conns_max(void **state)
{
    (void) state;
    struct test_link l;
    static int       cfd[CHAOS_CONNS_MAX], sfd[CHAOS_CONNS_MAX];
    test_link_open(&l, NULL, 14);
    for (uint32_t i = 1; i < CHAOS_CONNS_MAX; i++) {
        cfd[i] = test_connect(chaos_proxy_port(l.proxy));
        sfd[i] = test_accept_within(l.lfd, TEST_WAIT_MS);
        assert_true(sfd[i] >= 0);
    }
    int extra = test_connect(chaos_proxy_port(l.proxy));
    assert_int_equal(test_wait_close(extra, TEST_WAIT_MS), ECONNRESET);
    struct chaos_proxy_stats st;
    TEST_WAIT_STATS(l.proxy, st, st.conns_full == 1);
    assert_int_equal(st.conns_full, 1);
    assert_int_equal(st.conns_open, CHAOS_CONNS_MAX);
    test_expect_through(
        cfd[CHAOS_CONNS_MAX - 1], sfd[CHAOS_CONNS_MAX - 1], 'm');
    close(extra);
    for (uint32_t i = 1; i < CHAOS_CONNS_MAX; i++) {
        close(cfd[i]);
        close(sfd[i]);
    }
    test_link_close(&l);
}

/*
 * Back-pressure: with a long latency the proxy holds everything it reads,
 * so a client that writes without pause must be stopped by TCP once the
 * proxy's queue for that direction is full. Every byte still arrives, in
 * order, once the queue drains.
 */
static void
test_backpressure(void **state)
{
    (void) state;
    enum { BLOCK = 64 * 1024, LIMIT = 64 * 1024 * 1024 };
    struct test_link    l;
    struct chaos_faults f     = { .dir[CHAOS_UP].latency_ms = 1500 };
    uint8_t            *block = malloc(BLOCK);
    uint8_t            *in    = malloc(BLOCK);
    size_t              sent  = 0;
    assert_non_null(block);
    assert_non_null(in);
    test_link_open(&l, &f, 15);
    assert_int_equal(fcntl(l.cfd, F_SETFL, O_NONBLOCK), 0);
    for (uint64_t quiet_since = mrd_now_mono_ms(); sent < LIMIT;) {
        for (size_t i = 0; i < BLOCK; i++) {
            block[i] = (uint8_t) ((sent + i) * 7u);
        }
        ssize_t n = send(l.cfd, block, BLOCK, MSG_NOSIGNAL);
        if (n > 0) {
            sent += (size_t) n;
            quiet_since = mrd_now_mono_ms();
        } else if (mrd_now_mono_ms() - quiet_since > 300u) {
            break; /* stopped for good */
        } else {
            test_sleep_ms(5);
        }
    }
    print_message("back-pressure after %zu bytes\n", sent);
    assert_true(sent < LIMIT);
    assert_true(sent >= CHAOS_DIR_QUEUED_MAX);
    for (size_t got = 0; got < sent;) {
        size_t want = sent - got < BLOCK ? sent - got : BLOCK;
        size_t n    = test_read_within(l.sfd, in, want, TEST_WAIT_MS);
        assert_true(n > 0);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(in[i], (uint8_t) ((got + i) * 7u));
        }
        got += n;
    }
    test_link_close(&l);
    free(block);
    free(in);
}

/* ------------------------------------------------- latency, bandwidth -- */

static void
test_latency(void **state)
{
    (void) state;
    struct test_link    l;
    struct chaos_faults f = { 0 };
    f.dir[CHAOS_UP]
        = (struct chaos_dir_faults) { .latency_ms = 100, .jitter_ms = 20 };
    f.dir[CHAOS_DOWN] = f.dir[CHAOS_UP];
    test_link_open(&l, &f, 6);
    for (int round = 0; round < 5; round++) {
        uint8_t  b     = (uint8_t) round;
        uint64_t start = mrd_now_mono_us();
        test_write_all(l.cfd, &b, 1);
        assert_int_equal(test_read_within(l.sfd, &b, 1, TEST_WAIT_MS), 1);
        uint64_t one_way = mrd_now_mono_us() - start;
        test_write_all(l.sfd, &b, 1);
        assert_int_equal(test_read_within(l.cfd, &b, 1, TEST_WAIT_MS), 1);
        uint64_t rtt_ms = (mrd_now_mono_us() - start) / 1000u;
        print_message("latency: one way %llu us, round trip %llu ms\n",
            (unsigned long long) one_way, (unsigned long long) rtt_ms);
        assert_in_range(one_way, 100000u, 120000u + 80000u);
        assert_in_range(rtt_ms, 200u, 240u + 160u);
    }
    /* Order under heavy jitter: 4-byte counters written 1 ms apart, so
     * each lands in its own chunk with its own delay. */
    f.dir[CHAOS_UP]
        = (struct chaos_dir_faults) { .latency_ms = 10, .jitter_ms = 60 };
    test_set(&l, &f);
    enum { N = 150 };
    for (uint32_t i = 0; i < N; i++) {
        uint8_t be[4];
        mrd_be32_put(be, i);
        test_write_all(l.cfd, be, sizeof be);
        test_sleep_ms(1);
    }
    uint8_t in[N * 4];
    assert_int_equal(
        test_read_within(l.sfd, in, sizeof in, TEST_WAIT_MS), sizeof in);
    for (uint32_t i = 0; i < N; i++) {
        assert_int_equal(mrd_be32_get(in + 4u * i), i);
    }
    test_link_close(&l);
}

static void
test_bandwidth(void **state)
{
    (void) state;
    enum { SIZE = 200000 };
    struct test_link    l;
    struct chaos_faults f   = { .dir[CHAOS_UP].rate_bps = 200000 };
    uint8_t            *src = calloc(1, SIZE);
    uint8_t            *dst = calloc(1, SIZE);
    assert_non_null(src);
    assert_non_null(dst);
    test_link_open(&l, &f, 8);
    uint64_t start = mrd_now_mono_ms();
    assert_int_equal(test_xfer(l.cfd, l.sfd, src, dst, SIZE, 5000), SIZE);
    uint64_t took_ms = mrd_now_mono_ms() - start;
    print_message("bandwidth: 200 KB at 200 KB/s took %llu ms\n",
        (unsigned long long) took_ms);
    assert_in_range(took_ms, 700u, 2500u);
    /* Down is not capped: the same bytes come back at once. */
    start = mrd_now_mono_ms();
    assert_int_equal(test_xfer(l.sfd, l.cfd, src, dst, SIZE, 5000), SIZE);
    assert_true(mrd_now_mono_ms() - start < 500u);
    test_link_close(&l);
    free(src);
    free(dst);
}

/* ---------------------------------------------------------- corruption -- */

static unsigned
test_bits_differ(const uint8_t *a, const uint8_t *b, size_t size)
{
    unsigned bits = 0;
    for (size_t i = 0; i < size; i++) {
        for (unsigned x = (unsigned) (a[i] ^ b[i]); x != 0; x &= x - 1u) {
            bits++;
        }
    }
    return bits;
}

static void
test_corrupt(void **state)
{
    (void) state;
    struct test_link    l;
    struct chaos_faults f = { .dir[CHAOS_UP].corrupt_ppm = CHAOS_PPM };
    uint64_t            s = 9;
    test_link_open(&l, &f, 9);
    for (int round = 0; round < 20; round++) {
        uint8_t out[100], in[100];
        for (size_t i = 0; i < sizeof out; i++) {
            out[i] = (uint8_t) test_rand(&s);
        }
        uint64_t before = test_stats(&l).chunks_corrupted;
        test_write_all(l.cfd, out, sizeof out);
        assert_int_equal(
            test_read_within(l.sfd, in, sizeof in, TEST_WAIT_MS), sizeof in);
        uint64_t chunks = test_stats(&l).chunks_corrupted - before;
        /* One write is one chunk unless the kernel split it; either way,
         * exactly one bit per chunk. */
        assert_true(chunks >= 1);
        assert_int_equal(test_bits_differ(out, in, sizeof out), chunks);
    }
    /* Down is clean. */
    test_expect_through(l.sfd, l.cfd, 'c');
    test_link_close(&l);
}

/* ---------------------------------------------------------- SP frames -- */

static const uint8_t test_sp_header[8]
    = { 0x00, 'S', 'P', 0x00, 0x00, 0x10, 0x00, 0x00 };

static size_t
test_frame_body_size(uint32_t seq)
{
    return 4u + seq % (TEST_FRAME_BODY_MAX - 3u);
}

static uint8_t
test_frame_byte(uint32_t seq, size_t i)
{
    return (uint8_t) (seq * 31u + i);
}

/* The fake SP stream: the header, then TEST_FRAMES messages whose bodies
 * say their sequence number and are derived from it, then a close. */
static void
test_frames_send(int fd)
{
    uint8_t msg[8 + TEST_FRAME_BODY_MAX];
    test_write_all(fd, test_sp_header, sizeof test_sp_header);
    for (uint32_t seq = 0; seq < TEST_FRAMES; seq++) {
        size_t body = test_frame_body_size(seq);
        mrd_be64_put(msg, body);
        mrd_be32_put(msg + 8, seq);
        for (size_t i = 4; i < body; i++) {
            msg[8 + i] = test_frame_byte(seq, i);
        }
        test_write_all(fd, msg, 8 + body);
    }
    shutdown(fd, SHUT_WR);
}

/* Reads the stream until EOF and checks it is well-framed: the header,
 * then whole messages, each exactly as some seq was sent. Fills seqs;
 * returns how many messages came. */
static size_t
test_frames_recv(int fd, uint32_t *seqs, size_t seqs_max)
{
    size_t   cap = 64u * 1024u, have = 0, n = 0, off = 8;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) { /* until EOF, which comes after everything */
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        assert_int_equal(poll(&pfd, 1, TEST_WAIT_MS), 1);
        ssize_t got = read(fd, buf + have, cap - have);
        assert_true(got >= 0);
        if (got == 0) {
            break;
        }
        have += (size_t) got;
        assert_true(have < cap);
    }
    assert_true(have >= 8);
    assert_memory_equal(buf, test_sp_header, 8);
    while (off < have) {
        assert_true(have - off >= 12);
        uint64_t body = mrd_be64_get(buf + off);
        uint32_t seq  = mrd_be32_get(buf + off + 8);
        assert_true(seq < TEST_FRAMES);
        assert_int_equal(body, test_frame_body_size(seq));
        assert_true(have - off >= 8 + body);
        for (size_t i = 4; i < body; i++) {
            assert_int_equal(buf[off + 8 + i], test_frame_byte(seq, i));
        }
        assert_true(n < seqs_max);
        seqs[n++] = seq;
        off += 8 + body;
    }
    free(buf);
    return n;
}

/* Runs the stream in direction d through a fresh proxy with faults f;
 * returns the sequence numbers received, in order. */
static size_t
test_frames_run(const struct chaos_faults *f, int d, uint64_t seed,
    uint32_t *seqs, size_t seqs_max, struct chaos_proxy_stats *st)
{
    struct test_link l;
    test_link_open(&l, f, seed);
    int from = d == CHAOS_UP ? l.cfd : l.sfd;
    int to   = d == CHAOS_UP ? l.sfd : l.cfd;
    test_frames_send(from);
    size_t n = test_frames_recv(to, seqs, seqs_max);
    *st      = test_stats(&l);
    test_link_close(&l);
    return n;
}

static void
test_frames_drop(void **state)
{
    (void) state;
    struct chaos_faults      f = { .frames = true };
    struct chaos_proxy_stats st;
    uint32_t                 seqs[TEST_FRAMES];
    f.dir[CHAOS_UP].drop_ppm = CHAOS_PPM / 3u;
    size_t n = test_frames_run(&f, CHAOS_UP, 10, seqs, TEST_FRAMES, &st);
    print_message("frames: %zu of %u through, %llu dropped\n", n, TEST_FRAMES,
        (unsigned long long) st.frames_dropped);
    assert_true(st.frames_dropped > 0 && n > 0);
    assert_int_equal(n + st.frames_dropped, TEST_FRAMES);
    for (size_t i = 1; i < n; i++) {
        assert_true(seqs[i] > seqs[i - 1]);
    }
}

static void
test_frames_dup(void **state)
{
    (void) state;
    struct chaos_faults      f = { .frames = true };
    struct chaos_proxy_stats st;
    uint32_t                 seqs[2 * TEST_FRAMES];
    f.dir[CHAOS_DOWN].dup_ppm = CHAOS_PPM / 4u;
    size_t n = test_frames_run(&f, CHAOS_DOWN, 11, seqs, 2 * TEST_FRAMES, &st);
    print_message("frames: %zu received, %llu duplicated\n", n,
        (unsigned long long) st.frames_duplicated);
    assert_true(st.frames_duplicated > 0);
    assert_int_equal(n, TEST_FRAMES + st.frames_duplicated);
    uint32_t next = 0;
    for (size_t i = 0; i < n; i++) {
        if (seqs[i] == next) {
            next++;
        } else {
            /* A duplicate comes right after its original. */
            assert_true(i > 0 && seqs[i] == seqs[i - 1]);
            assert_true(i < 2 || seqs[i - 2] != seqs[i]);
        }
    }
    assert_int_equal(next, TEST_FRAMES);
}

static void
test_frames_replay(void **state)
{
    (void) state;
    struct chaos_faults      f = { .frames = true };
    struct chaos_proxy_stats st;
    uint32_t                 seqs[2 * TEST_FRAMES];
    f.dir[CHAOS_UP].replay_ppm = CHAOS_PPM / 4u;
    size_t n = test_frames_run(&f, CHAOS_UP, 12, seqs, 2 * TEST_FRAMES, &st);
    print_message("frames: %zu received, %llu replayed\n", n,
        (unsigned long long) st.frames_replayed);
    assert_true(st.frames_replayed > 0);
    assert_int_equal(n, TEST_FRAMES + st.frames_replayed);
    uint32_t next = 0;
    for (size_t i = 0; i < n; i++) {
        if (seqs[i] == next) {
            next++;
        } else {
            /* An old message: one of the last few delivered. */
            assert_true(seqs[i] < next);
            assert_true(seqs[i] + CHAOS_REPLAY_KEEP >= next);
        }
    }
    assert_int_equal(next, TEST_FRAMES);
}

/* The same seed, the same decisions; another seed, others. */
static void
test_seed_replays(void **state)
{
    (void) state;
    struct chaos_faults      f = { .frames = true };
    struct chaos_proxy_stats st;
    static uint32_t a[3 * TEST_FRAMES], b[3 * TEST_FRAMES], c[3 * TEST_FRAMES];
    f.dir[CHAOS_UP] = (struct chaos_dir_faults) {
        .drop_ppm = 200000, .dup_ppm = 200000, .replay_ppm = 200000
    };
    size_t na = test_frames_run(&f, CHAOS_UP, 42, a, MRD_ARRAY_SIZE(a), &st);
    size_t nb = test_frames_run(&f, CHAOS_UP, 42, b, MRD_ARRAY_SIZE(b), &st);
    size_t nc = test_frames_run(&f, CHAOS_UP, 43, c, MRD_ARRAY_SIZE(c), &st);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof a[0]);
    assert_true(na != nc || memcmp(a, c, na * sizeof a[0]) != 0);
}

/* ---------------------------------------------------------- slow close -- */

static void
test_slow_close(void **state)
{
    (void) state;
    struct test_link l;
    test_link_open(&l, NULL, 13);
    /* Control: a plain close goes through at once. */
    shutdown(l.cfd, SHUT_WR);
    uint64_t start = mrd_now_mono_ms();
    assert_int_equal(test_wait_close(l.sfd, TEST_WAIT_MS), 0);
    assert_true(mrd_now_mono_ms() - start < 200u);
    /* Slow: data first, then the close 300 ms late. */
    test_set(&l, &(struct chaos_faults) { .close_delay_ms = 300 });
    uint8_t out[10] = "last words", in[10];
    test_write_all(l.sfd, out, sizeof out);
    shutdown(l.sfd, SHUT_WR);
    start = mrd_now_mono_ms();
    assert_int_equal(
        test_read_within(l.cfd, in, sizeof in, TEST_WAIT_MS), sizeof in);
    assert_memory_equal(in, out, sizeof in);
    assert_true(test_still_open(l.cfd) || mrd_now_mono_ms() - start >= 280u);
    assert_int_equal(test_wait_close(l.cfd, TEST_WAIT_MS), 0);
    uint64_t took_ms = mrd_now_mono_ms() - start;
    print_message(
        "slow close: EOF after %llu ms\n", (unsigned long long) took_ms);
    assert_in_range(took_ms, 280u, 2000u);
    test_link_close(&l);
}

int
main(void)
{
    alarm(TEST_ALARM_S);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pass),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_upstream_down),
        cmocka_unit_test(test_blackhole),
        cmocka_unit_test(test_one_way),
        cmocka_unit_test(test_refuse),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_conns_max),
        cmocka_unit_test(test_backpressure),
        cmocka_unit_test(test_latency),
        cmocka_unit_test(test_bandwidth),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_frames_drop),
        cmocka_unit_test(test_frames_dup),
        cmocka_unit_test(test_frames_replay),
        cmocka_unit_test(test_seed_replays),
        cmocka_unit_test(test_slow_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
