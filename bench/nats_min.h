/* nats_min: a minimal NATS client over one TCP socket, for peers_bench.
 *
 * Just enough of the NATS protocol to drive JetStream the way an event
 * store client would: INFO, CONNECT (headers on), PING/PONG, PUB and HPUB
 * with a reply subject, SUB, and MSG/HMSG parsing. No reconnects, no TLS,
 * no auth: the server is a fresh one on 127.0.0.1 started by scripts/bench.
 * One connection per thread; nothing here is thread-safe. */
#ifndef MRD_BENCH_NATS_MIN_H
#define MRD_BENCH_NATS_MIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct nats_conn nats_conn;

/* One message received. The pointers point into the connection's read
 * buffer and stay valid until the next nats_next() call. */
typedef struct nats_msg {
    const char *subject;
    size_t      subject_len;
    const char *reply; /* NULL when the message has no reply subject */
    size_t      reply_len;
    const char *hdr; /* NULL for MSG; "NATS/1.0 ..." headers for HMSG */
    size_t      hdr_len;
    const char *data;
    size_t      data_len;
    uint64_t    sid;
} nats_msg;

/* Connects to host:port, reads INFO, sends CONNECT and waits for the PONG
 * of a PING (so a refused CONNECT is seen here). NULL on error, with a
 * message in err. */
nats_conn *nats_connect(
    const char *host, const char *port, char *err, size_t err_len);
void nats_close(nats_conn *c);

/* The connection's inbox prefix ("_INBOX.<random>"), subscribed with sid 1
 * by nats_connect: replies to <prefix>.<anything> arrive with sid 1. */
const char *nats_inbox(const nats_conn *c);

/* Buffered writes; nats_flush() sends them. Each returns 0 or -1. */
int nats_sub(nats_conn *c, const char *subject, uint64_t sid);
int nats_pub(nats_conn *c, const char *subject, const char *reply,
    const void *data, size_t len);
/* hdrs: header lines after "NATS/1.0\r\n", each ending in "\r\n"
 * ("Nats-Expected-Last-Subject-Sequence: 12\r\n"). */
int nats_hpub(nats_conn *c, const char *subject, const char *reply,
    const char *hdrs, const void *data, size_t len);
int nats_flush(nats_conn *c);

/* Waits for the next MSG or HMSG, answering the server's PINGs meanwhile.
 * 1: a message in *m; 0: timeout_ms passed; -1: error or -ERR (in err). */
int nats_next(nats_conn *c, nats_msg *m, int timeout_ms);

/* A request: publishes data to subject with a fresh reply subject under
 * the inbox, flushes, and copies the reply's payload (NUL-terminated,
 * truncated to cap - 1) into out. Messages for other subjects that arrive
 * meanwhile are dropped. Returns the reply's length or -1. */
long nats_request(nats_conn *c, const char *subject, const void *data,
    size_t len, char *out, size_t cap, int timeout_ms);

/* The last error (a -ERR line or a socket error). */
const char *nats_error(const nats_conn *c);

#endif
