/* nats_min: a minimal NATS client over one TCP socket (see nats_min.h). */
#include "nats_min.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct nats_conn {
    int      fd;
    char    *rbuf;
    size_t   rcap, rpos, rlen; /* unread bytes: rbuf[rpos, rlen) */
    char    *wbuf;
    size_t   wcap, wlen;
    char     inbox[64];
    uint64_t next_reply;
    char     err[256];
};

static void
set_err(nats_conn *c, const char *what, const char *detail)
{
    snprintf(c->err, sizeof(c->err), "%.40s%s%.200s", what, detail ? ": " : "",
        detail ? detail : "");
}

const char *
nats_error(const nats_conn *c)
{
    return c->err;
}

const char *
nats_inbox(const nats_conn *c)
{
    return c->inbox;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Grows *buf (capacity *cap) to hold at least need bytes, doubling from
 * 64 KiB; 0, or -1 with the error set. */
static int
buf_grow(nats_conn *c, char **buf, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t n = *cap ? *cap : 65536;
    while (n < need) {
        n *= 2;
    }
    char *p = realloc(*buf, n);
    if (p == NULL) {
        set_err(c, "out of memory", NULL);
        return -1;
    }
    *buf = p;
    *cap = n;
    return 0;
}

/* ---------------------------------------------------------------- write -- */

static int
wreserve(nats_conn *c, size_t more)
{
    return buf_grow(c, &c->wbuf, &c->wcap, c->wlen + more);
}

static int
wput(nats_conn *c, const void *p, size_t n)
{
    if (wreserve(c, n) != 0) {
        return -1;
    }
    memcpy(c->wbuf + c->wlen, p, n);
    c->wlen += n;
    return 0;
}

static int
wputs(nats_conn *c, const char *s)
{
    return wput(c, s, strlen(s));
}

int
nats_flush(nats_conn *c)
{
    size_t off = 0;
    while (off < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + off, c->wlen - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            set_err(c, "send", strerror(errno));
            return -1;
        }
        off += (size_t) n;
    }
    c->wlen = 0;
    return 0;
}

int
nats_sub(nats_conn *c, const char *subject, uint64_t sid)
{
    char line[512];
    int  n = snprintf(line, sizeof(line), "SUB %s %llu\r\n", subject,
         (unsigned long long) sid);
    if (n < 0 || (size_t) n >= sizeof(line)) {
        set_err(c, "subject too long", subject);
        return -1;
    }
    return wput(c, line, (size_t) n);
}

int
nats_pub(nats_conn *c, const char *subject, const char *reply, const void *data,
    size_t len)
{
    char line[512];
    int  n = snprintf(line, sizeof(line), "PUB %s%s%s %zu\r\n", subject,
        reply ? " " : "", reply ? reply : "", len);
    if (n < 0 || (size_t) n >= sizeof(line)) {
        set_err(c, "subject too long", subject);
        return -1;
    }
    if (wput(c, line, (size_t) n) != 0 || wput(c, data, len) != 0) {
        return -1;
    }
    return wputs(c, "\r\n");
}

int
nats_hpub(nats_conn *c, const char *subject, const char *reply,
    const char *hdrs, const void *data, size_t len)
{
    static const char ver[] = "NATS/1.0\r\n";
    size_t hlen = sizeof(ver) - 1 + strlen(hdrs) + 2; /* + the blank line */
    char   line[512];
    int    n = snprintf(line, sizeof(line), "HPUB %s%s%s %zu %zu\r\n", subject,
        reply ? " " : "", reply ? reply : "", hlen, hlen + len);
    if (n < 0 || (size_t) n >= sizeof(line)) {
        set_err(c, "subject too long", subject);
        return -1;
    }
    if (wput(c, line, (size_t) n) != 0 || wputs(c, ver) != 0
        || wputs(c, hdrs) != 0 || wputs(c, "\r\n") != 0
        || wput(c, data, len) != 0) {
        return -1;
    }
    return wputs(c, "\r\n");
}

/* ----------------------------------------------------------------- read -- */

/* Reads more bytes into rbuf, waiting at most until deadline (ms, monotonic;
 * < 0: forever). 1: read something; 0: timeout; -1: error or EOF. */
static int
fill(nats_conn *c, int64_t deadline)
{
    if (c->rpos > 0 && c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
    }
    if (c->rlen == c->rcap) {
        if (c->rpos > 0) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        } else if (buf_grow(c, &c->rbuf, &c->rcap, c->rcap + 1) != 0) {
            return -1;
        }
    }
    for (;;) {
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0) {
                return 0;
            }
            wait = (int) left;
        }
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        int           r   = poll(&pfd, 1, wait);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            set_err(c, "poll", strerror(errno));
            return -1;
        }
        if (r == 0) {
            return 0;
        }
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            set_err(c, "recv", strerror(errno));
            return -1;
        }
        if (n == 0) {
            set_err(c, "connection closed by the server", NULL);
            return -1;
        }
        c->rlen += (size_t) n;
        return 1;
    }
}

/* Splits a protocol line into at most max space-separated fields. */
static int
split(char *line, char **f, int max)
{
    int n = 0;
    for (char *p = line; *p != '\0' && n < max;) {
        while (*p == ' ' || *p == '\t') {
            *p++ = '\0';
        }
        if (*p == '\0') {
            break;
        }
        f[n++] = p;
        while (*p != '\0' && *p != ' ' && *p != '\t') {
            p++;
        }
    }
    return n;
}

int
nats_next(nats_conn *c, nats_msg *m, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        char *start = c->rbuf + c->rpos;
        char *eol   = NULL;
        if (c->rlen > c->rpos) {
            /* memmem is not POSIX: look for \n and check the \r. */
            eol = memchr(start, '\n', c->rlen - c->rpos);
        }
        if (eol == NULL) {
            int r = fill(c, deadline);
            if (r <= 0) {
                return r;
            }
            continue;
        }
        size_t line_len = (size_t) (eol - start) + 1;
        if (line_len < 2 || eol[-1] != '\r') {
            set_err(c, "protocol line without CRLF", NULL);
            return -1;
        }
        if ((start[0] == 'M' || start[0] == 'H') && line_len > 4) {
            /* MSG <subject> <sid> [reply] <#bytes>
             * HMSG <subject> <sid> [reply] <#hdr> <#total> */
            int  hmsg = start[0] == 'H';
            char line[1024];
            if (line_len - 2 >= sizeof(line)) {
                set_err(c, "MSG line too long", NULL);
                return -1;
            }
            memcpy(line, start, line_len - 2);
            line[line_len - 2] = '\0';
            char *f[6];
            int   n        = split(line, f, 6);
            int   want_min = hmsg ? 5 : 4;
            if (n < want_min || n > want_min + 1) {
                set_err(c, "bad MSG line", line);
                return -1;
            }
            size_t hdr_len = 0, total;
            total          = strtoull(f[n - 1], NULL, 10);
            if (hmsg) {
                hdr_len = strtoull(f[n - 2], NULL, 10);
            }
            int has_reply = n == want_min + 1;
            if (c->rlen - c->rpos < line_len + total + 2) {
                /* Not all of the payload is here yet: grow and read. */
                size_t need = line_len + total + 2;
                if (buf_grow(c, &c->rbuf, &c->rcap, need) != 0) {
                    return -1;
                }
                if (c->rpos > 0 && c->rpos + need > c->rcap) {
                    memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
                    c->rlen -= c->rpos;
                    c->rpos = 0;
                }
                int r = fill(c, deadline);
                if (r <= 0) {
                    return r;
                }
                continue;
            }
            /* The fields point into the local copy: map them back to the
             * read buffer, whose bytes are the same. */
            start          = c->rbuf + c->rpos;
            m->subject     = start + (f[1] - line);
            m->subject_len = strlen(f[1]);
            m->sid         = strtoull(f[2], NULL, 10);
            m->reply       = has_reply ? start + (f[3] - line) : NULL;
            m->reply_len   = has_reply ? strlen(f[3]) : 0;
            m->hdr         = hmsg ? start + line_len : NULL;
            m->hdr_len     = hdr_len;
            m->data        = start + line_len + hdr_len;
            m->data_len    = total - hdr_len;
            c->rpos += line_len + total + 2;
            return 1;
        }
        c->rpos += line_len;
        if (line_len >= 6 && strncmp(start, "PING", 4) == 0) {
            if (wputs(c, "PONG\r\n") != 0 || nats_flush(c) != 0) {
                return -1;
            }
        } else if (strncmp(start, "-ERR", 4) == 0) {
            char   msg[200];
            size_t k = line_len - 2 < sizeof(msg) - 1 ? line_len - 2
                                                      : sizeof(msg) - 1;
            memcpy(msg, start, k);
            msg[k] = '\0';
            set_err(c, "server", msg);
            return -1;
        }
        /* PONG, +OK, INFO: nothing to do. */
    }
}

/* Waits for a PONG (after CONNECT + PING). */
static int
await_pong(nats_conn *c, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        char *start = c->rbuf + c->rpos;
        char *eol
            = c->rlen > c->rpos ? memchr(start, '\n', c->rlen - c->rpos) : NULL;
        if (eol == NULL) {
            int r = fill(c, deadline);
            if (r == 0) {
                set_err(c, "no PONG from the server", NULL);
            }
            if (r <= 0) {
                return -1;
            }
            continue;
        }
        size_t line_len = (size_t) (eol - start) + 1;
        c->rpos += line_len;
        if (strncmp(start, "PONG", 4) == 0) {
            return 0;
        }
        if (strncmp(start, "-ERR", 4) == 0) {
            set_err(c, "server refused CONNECT", NULL);
            return -1;
        }
        if (strncmp(start, "PING", 4) == 0) {
            if (wputs(c, "PONG\r\n") != 0 || nats_flush(c) != 0) {
                return -1;
            }
        }
    }
}

nats_conn *
nats_connect(const char *host, const char *port, char *err, size_t err_len)
{
    struct addrinfo hints
        = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM },
        *res = NULL;
    int rc   = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "%s:%s: %s", host, port, gai_strerror(rc));
        return NULL;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(
            err, err_len, "connect %s:%s: %s", host, port, strerror(errno));
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    nats_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    c->fd   = fd;
    c->rcap = 1 << 20;
    c->rbuf = malloc(c->rcap);
    if (c->rbuf == NULL) {
        nats_close(c);
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long r = (unsigned long long) ts.tv_nsec * 2654435761u
        ^ (unsigned long long) getpid() << 20
        ^ (unsigned long long) (uintptr_t) c;
    snprintf(c->inbox, sizeof(c->inbox), "_INBOX.%llx", r);
    /* The server speaks first (INFO); CONNECT, the inbox and a PING, whose
     * PONG proves the server took them. */
    char sub[96];
    snprintf(sub, sizeof(sub), "%s.*", c->inbox);
    if (wputs(c,
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,"
            "\"no_responders\":true,\"protocol\":1,\"lang\":\"C\","
            "\"version\":\"nats_min\",\"name\":\"peers_bench\"}\r\n")
            != 0
        || nats_sub(c, sub, 1) != 0 || wputs(c, "PING\r\n") != 0
        || nats_flush(c) != 0 || await_pong(c, 5000) != 0) {
        snprintf(err, err_len, "%s", c->err);
        nats_close(c);
        return NULL;
    }
    return c;
}

void
nats_close(nats_conn *c)
{
    if (c == NULL) {
        return;
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c->rbuf);
    free(c->wbuf);
    free(c);
}

long
nats_request(nats_conn *c, const char *subject, const void *data, size_t len,
    char *out, size_t cap, int timeout_ms)
{
    char reply[96];
    snprintf(reply, sizeof(reply), "%s.r%llu", c->inbox,
        (unsigned long long) ++c->next_reply);
    if (nats_pub(c, subject, reply, data, len) != 0 || nats_flush(c) != 0) {
        return -1;
    }
    int64_t deadline = now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            set_err(c, "request timed out", subject);
            return -1;
        }
        nats_msg m;
        int      r = nats_next(c, &m, (int) left);
        if (r < 0) {
            return -1;
        }
        if (r == 0) {
            continue;
        }
        if (m.subject_len != strlen(reply)
            || memcmp(m.subject, reply, m.subject_len) != 0) {
            continue;
        }
        if (m.hdr != NULL && m.data_len == 0 && m.hdr_len > 12
            && memcmp(m.hdr + 9, "503", 3) == 0) {
            set_err(c, "no responders", subject);
            return -1;
        }
        size_t k = m.data_len < cap - 1 ? m.data_len : cap - 1;
        memcpy(out, m.data, k);
        out[k] = '\0';
        return (long) m.data_len;
    }
}
