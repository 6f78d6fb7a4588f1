/* peers_bench: Meridian and the peers of issue 8 (Redis Streams, NATS
 * JetStream, PostgreSQL) driven the same way, one system and one workload
 * per invocation, one JSON line on stdout per run. scripts/bench starts
 * the servers, runs this, and makes the table.
 *
 *   peers_bench --peer meridian|redis|nats|postgres|none
 *               --addr URL[,URL...]|HOST:PORT|CONNINFO
 *               --workload single1|single64|batch100|read1m|expected8|loopback
 *               [--events N] [--seconds S] [--clients N] [--mode LABEL]
 *               [--server-pid PID] [--ack local|region|global]
 *               [--ack-count N] [--region NAME]
 *
 * Meridian goes through libmeridian's blocking calls (mrd_append,
 * mrd_read), one mrd_client per client thread, with the key and keyring of
 * MERIDIAN_KEY and MERIDIAN_KEYRING; --addr is the node URLs, --region the
 * clients' home region, --ack and --ack-count each append's level.
 *
 * Workloads (256-byte events; each client is a thread with its own
 * connection; an append workload stops after N events or S seconds):
 *   single1    one event per append, 1 client, each client its own stream
 *   single64   the same, 64 clients
 *   batch100   100-event appends, 16 clients (--clients): Redis MULTI +
 *              100 XADD + EXEC in one pipeline; PostgreSQL one INSERT of
 *              100 rows (one transaction); NATS 100 PUBs with replies, one
 *              flush, then the 100 JetStream acks
 *   read1m     loads N events (default 1M) into one stream, untimed (only
 *              when it does not hold them yet), then times one client
 *              reading them all: Redis XRANGE pages of 10,000; PostgreSQL
 *              keyset pages of 10,000 rows (binary); NATS an ordered push
 *              consumer (ephemeral, ack none, flow control)
 *   expected8  8 clients append to ONE stream with an expected version;
 *              a conflict refreshes the version and counts: Redis a Lua
 *              script (last entry id = version, XADD only when it matches),
 *              PostgreSQL INSERT (stream, expected + 1) under PRIMARY KEY
 *              (stream, version), a unique violation is the conflict; NATS
 *              Nats-Expected-Last-Subject-Sequence on HPUB
 *   loopback   (--peer none) 127.0.0.1 TCP: 256-byte ping-pongs (p50/p99)
 *              and 256-byte messages streamed in 64 KiB writes (events/s)
 * Latencies are per call: an append, a 100-event batch, a read page, one
 * conditional append (conflicted or not), one ping-pong.
 *
 * --server-pid: the server's CPU seconds (utime + stime of the process and
 * its descendants, reaped children included, over the timed phase) and its
 * peak memory (the larger of the process's VmHWM and the peak, sampled
 * every 100 ms, of the Pss summed over the process tree: PostgreSQL is
 * many processes sharing memory). */
#include "meridian.h"
#include "nats_min.h"

#include <hiredis.h>
#include <libpq-fe.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EVENT_SIZE 256
#define BATCH 100
#define READ_PAGE 10000
#define PB_MAX_CLIENTS 256

/* ------------------------------------------------------------ options -- */

struct opts {
    const char *peer;
    const char *addr;
    const char *workload;
    const char *mode;
    long        events;
    double      seconds;
    int         clients;
    long        server_pid;
    int         ack; /* Meridian: MRD_ACK_* */
    uint32_t    ack_count;
    const char *region;
    char        host[256];
    char        port[16];
};

static struct opts O;
static char        payload[EVENT_SIZE];

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
die(const char *what, const char *detail)
{
    fprintf(stderr, "peers_bench: %s%s%s\n", what, detail ? ": " : "",
        detail ? detail : "");
    exit(1);
}

/* ---------------------------------------------------------- latencies -- */

struct lat {
    double *v;
    size_t  n, cap;
};

static void
lat_add(struct lat *l, double ms)
{
    if (l->n == l->cap) {
        size_t  cap = l->cap ? l->cap * 2 : 4096;
        double *p   = realloc(l->v, cap * sizeof(*p));
        if (p == NULL) {
            die("out of memory", NULL);
        }
        l->v   = p;
        l->cap = cap;
    }
    l->v[l->n++] = ms;
}

static void
lat_merge(struct lat *into, const struct lat *from)
{
    for (size_t i = 0; i < from->n; i++) {
        lat_add(into, from->v[i]);
    }
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return (x > y) - (x < y);
}

static double
lat_pct(struct lat *l, double p)
{
    if (l->n == 0) {
        return 0;
    }
    qsort(l->v, l->n, sizeof(double), cmp_double);
    size_t i = (size_t) (p * (double) (l->n - 1) + 0.5);
    return l->v[i];
}

/* ------------------------------------------------- server CPU, memory -- */

struct procinfo {
    long pid, ppid;
    long ticks; /* utime + stime + cutime + cstime */
};

/* Every process's pid, ppid and CPU ticks; the count or -1. */
static int
proc_scan(struct procinfo *out, int max)
{
    DIR *d = opendir("/proc");
    if (d == NULL) {
        return -1;
    }
    int            n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        if (!isdigit((unsigned char) e->d_name[0])) {
            continue;
        }
        char path[300], buf[1024];
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }
        size_t k = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[k]  = '\0';
        char *p = strrchr(buf, ')'); /* the name may hold spaces */
        if (p == NULL) {
            continue;
        }
        /* After ")": state ppid pgrp session tty tpgid flags minflt cminflt
         * majflt cmajflt utime stime cutime cstime */
        char state;
        long ppid, skip, ut, st, cut, cst;
        if (sscanf(p + 1,
                " %c %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld",
                &state, &ppid, &skip, &skip, &skip, &skip, &skip, &skip, &skip,
                &skip, &skip, &ut, &st, &cut, &cst)
            != 15) {
            continue;
        }
        out[n].pid   = atol(e->d_name);
        out[n].ppid  = ppid;
        out[n].ticks = ut + st + cut + cst;
        n++;
    }
    closedir(d);
    return n;
}

#define PROC_MAX 8192
static struct procinfo procs[PROC_MAX];

/* Marks the tree under root in procs (by setting ppid to -2); its size. */
static int
proc_tree(int n, long root)
{
    int  count = 0;
    bool grew  = true;
    for (int i = 0; i < n; i++) {
        if (procs[i].pid == root) {
            procs[i].ppid = -2;
            count++;
        }
    }
    while (grew) {
        grew = false;
        for (int i = 0; i < n; i++) {
            if (procs[i].ppid < 0) {
                continue;
            }
            for (int j = 0; j < n; j++) {
                if (procs[j].ppid == -2 && procs[j].pid == procs[i].ppid) {
                    procs[i].ppid = -2;
                    count++;
                    grew = true;
                    break;
                }
            }
        }
    }
    return count;
}

/* CPU seconds of the tree under root (reaped children included). */
static double
tree_cpu(long root)
{
    int n = proc_scan(procs, PROC_MAX);
    if (n <= 0) {
        return 0;
    }
    proc_tree(n, root);
    long ticks = 0;
    for (int i = 0; i < n; i++) {
        if (procs[i].ppid == -2) {
            ticks += procs[i].ticks;
        }
    }
    return (double) ticks / (double) sysconf(_SC_CLK_TCK);
}

/* A "Key:   N kB" field of a /proc file, in kB; 0 when absent. */
static long
proc_kb(long pid, const char *file, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%ld/%s", pid, file);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    long   v  = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = atol(line + kl + 1);
            break;
        }
    }
    fclose(f);
    return v;
}

static struct procinfo mon_procs[PROC_MAX];
static atomic_bool     mon_stop;
static long            mon_peak_kb;

static void *
mon_main(void *arg)
{
    (void) arg;
    while (!atomic_load(&mon_stop)) {
        /* Its own array: proc_scan() on procs is the main thread's. */
        int  n   = proc_scan(mon_procs, PROC_MAX);
        long sum = 0;
        if (n > 0) {
            /* The tree, marked in mon_procs. */
            bool grew = true;
            for (int i = 0; i < n; i++) {
                if (mon_procs[i].pid == O.server_pid) {
                    mon_procs[i].ppid = -2;
                }
            }
            while (grew) {
                grew = false;
                for (int i = 0; i < n; i++) {
                    if (mon_procs[i].ppid < 0) {
                        continue;
                    }
                    for (int j = 0; j < n; j++) {
                        if (mon_procs[j].ppid == -2
                            && mon_procs[j].pid == mon_procs[i].ppid) {
                            mon_procs[i].ppid = -2;
                            grew              = true;
                            break;
                        }
                    }
                }
            }
            for (int i = 0; i < n; i++) {
                if (mon_procs[i].ppid == -2) {
                    sum += proc_kb(mon_procs[i].pid, "smaps_rollup", "Pss");
                }
            }
        }
        if (sum > mon_peak_kb) {
            mon_peak_kb = sum;
        }
        struct timespec ts = { 0, 100 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static pthread_t mon_thread;
static bool      mon_on;
static double    mon_cpu0, mon_cpu, mon_peak_mb;

/* Around the timed phase: the server's CPU and peak memory. */
static void
mon_begin(void)
{
    if (O.server_pid <= 0) {
        return;
    }
    mon_cpu0 = tree_cpu(O.server_pid);
    mon_on   = pthread_create(&mon_thread, NULL, mon_main, NULL) == 0;
}

static void
mon_end(void)
{
    if (O.server_pid <= 0) {
        return;
    }
    mon_cpu = tree_cpu(O.server_pid) - mon_cpu0;
    if (mon_on) {
        atomic_store(&mon_stop, true);
        pthread_join(mon_thread, NULL);
    }
    long hwm    = proc_kb(O.server_pid, "status", "VmHWM");
    mon_peak_mb = (double) (hwm > mon_peak_kb ? hwm : mon_peak_kb) / 1024.0;
}

/* --------------------------------------------------------------- peers -- */

/* One client connection of a peer. */
struct conn {
    redisContext *r;
    PGconn       *pg;
    nats_conn    *n;
    mrd_client   *m;
    char          stream[32];
    uint64_t      next_version; /* PostgreSQL: the stream's next version */
    bool          version_known;
    char          sha[48]; /* Redis: the expected-version script */
};

static const char redis_script[]
    = "local t = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
      "local last = 0\n"
      "if #t > 0 then last = tonumber(string.match(t[1][1], '^(%d+)')) end\n"
      "if last ~= tonumber(ARGV[1]) then return {0, last} end\n"
      "redis.call('XADD', KEYS[1], (last + 1) .. '-0', 'd', ARGV[2])\n"
      "return {1, last + 1}\n";

static mrd_client *meridian_open(void);

static bool
is_peer(const char *p)
{
    return strcmp(O.peer, p) == 0;
}

static struct conn *
conn_open(void)
{
    struct conn *c = calloc(1, sizeof(*c));
    char         err[512];
    if (c == NULL) {
        die("out of memory", NULL);
    }
    if (is_peer("redis")) {
        struct timeval tv = { 10, 0 };
        c->r              = redisConnectWithTimeout(O.host, atoi(O.port), tv);
        if (c->r == NULL || c->r->err) {
            die("redis connect", c->r ? c->r->errstr : "no memory");
        }
        redisReply *rep = redisCommand(c->r, "SCRIPT LOAD %s", redis_script);
        if (rep == NULL || rep->type != REDIS_REPLY_STRING) {
            die("redis SCRIPT LOAD", rep && rep->str ? rep->str : c->r->errstr);
        }
        snprintf(c->sha, sizeof(c->sha), "%s", rep->str);
        freeReplyObject(rep);
    } else if (is_peer("postgres")) {
        c->pg = PQconnectdb(O.addr);
        if (PQstatus(c->pg) != CONNECTION_OK) {
            die("postgres connect", PQerrorMessage(c->pg));
        }
    } else if (is_peer("nats")) {
        c->n = nats_connect(O.host, O.port, err, sizeof(err));
        if (c->n == NULL) {
            die("nats connect", err);
        }
    } else if (is_peer("meridian")) {
        c->m = meridian_open();
    }
    return c;
}

static void
conn_close(struct conn *c)
{
    mrd_client_close(c->m);
    if (c->r != NULL) {
        redisFree(c->r);
    }
    if (c->pg != NULL) {
        PQfinish(c->pg);
    }
    nats_close(c->n);
    free(c);
}

/* ---------------------------------------------------------- Meridian -- */

#define MERIDIAN_ADDRS_MAX 16

/* A client of the nodes in --addr (comma-separated URLs). Calls wait up to
 * 30 s: a bench that stalls should fail, not hang, and not give up while
 * a busy node drains its queue. */
static mrd_client *
meridian_open(void)
{
    char        buf[4096];
    const char *addrs[MERIDIAN_ADDRS_MAX];
    size_t      n = 0;
    snprintf(buf, sizeof(buf), "%s", O.addr);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save);
         t != NULL && n < MERIDIAN_ADDRS_MAX; t = strtok_r(NULL, ",", &save)) {
        addrs[n++] = t;
    }
    mrd_client_opts opts;
    mrd_client_opts_init(&opts);
    opts.addresses     = addrs;
    opts.address_count = n;
    opts.timeout_ms    = 30000;
    opts.region        = O.region;
    mrd_client *m      = NULL;
    int         err    = mrd_client_open(&opts, &m);
    if (err != MRD_OK) {
        char what[512];
        snprintf(
            what, sizeof(what), "%s: %s", mrd_errname(err), mrd_errdetail());
        die("mrd_client_open", what);
    }
    return m;
}

static mrd_event_in meridian_events[MRD_APPEND_EVENTS_MAX];

/* n events to stream with the run's ack level and expected version exp;
 * the error code, *version_out the stream's version after it. */
static int
meridian_append(
    mrd_client *m, const char *stream, int n, int64_t exp, int64_t *version_out)
{
    mrd_append_opts ao;
    mrd_append_opts_init(&ao);
    ao.expected_version = exp;
    ao.ack              = O.ack;
    ao.ack_count        = O.ack_count;
    mrd_append_result r;
    int err = mrd_append(m, stream, meridian_events, (size_t) n, &ao, &r);
    if (err == MRD_OK && version_out != NULL) {
        *version_out = (int64_t) r.version;
    }
    if (err != MRD_OK && err != MRD_EVERSION) {
        fprintf(stderr, "peers_bench: mrd_append: %s (%s)\n", mrd_errname(err),
            mrd_errdetail());
    }
    return err;
}

/* The stream's event count (its version + 1: positions start at 0). */
static uint64_t
meridian_count(mrd_client *m, const char *stream)
{
    mrd_stream_info info;
    int             err = mrd_stream_info_get(m, stream, &info);
    if (err != MRD_OK) {
        die("mrd_stream_info_get", mrd_errname(err));
    }
    return info.exists ? (uint64_t) (info.version + 1) : 0;
}

/* ------------------------------------------------------------- NATS ---- */

/* A JetStream API request; dies on a transport error. The reply in out. */
static void
js_api(struct conn *c, const char *subject, const char *body, char *out,
    size_t cap)
{
    if (nats_request(c->n, subject, body, strlen(body), out, cap, 30000) < 0) {
        die(subject, nats_error(c->n));
    }
}

/* The value of "key":<number> in a JSON text, or -1. */
static long long
json_num(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (p == NULL) {
        return -1;
    }
    p += strlen(pat);
    while (*p == ' ') {
        p++;
    }
    return strtoll(p, NULL, 10);
}

static void
nats_stream(struct conn *c, const char *name, const char *subjects)
{
    char subj[128], body[512], out[4096];
    snprintf(subj, sizeof(subj), "$JS.API.STREAM.CREATE.%s", name);
    snprintf(body, sizeof(body),
        "{\"name\":\"%s\",\"subjects\":[\"%s\"],\"storage\":\"file\","
        "\"retention\":\"limits\",\"num_replicas\":1,\"discard\":\"old\"}",
        name, subjects);
    js_api(c, subj, body, out, sizeof(out));
    /* 10058: the stream exists already (an earlier run on this server). */
    if (strstr(out, "\"error\"") != NULL
        && json_num(out, "err_code") != 10058) {
        die("JetStream stream create", out);
    }
}

/* Checks one JetStream publish ack; the sequence, or 0 and *conflict set
 * to the stream's current last sequence for the subject (-1: other error). */
static long long
nats_ack(const nats_msg *m, long long *conflict)
{
    char   buf[512];
    size_t k = m->data_len < sizeof(buf) - 1 ? m->data_len : sizeof(buf) - 1;
    memcpy(buf, m->data, k);
    buf[k]    = '\0';
    *conflict = -1;
    if (strstr(buf, "\"error\"") != NULL) {
        const char *p = strstr(buf, "wrong last sequence: ");
        if (p != NULL) {
            *conflict = strtoll(p + strlen("wrong last sequence: "), NULL, 10);
        } else {
            fprintf(stderr, "peers_bench: JetStream: %s\n", buf);
        }
        return 0;
    }
    if (m->hdr != NULL && m->data_len == 0) {
        fprintf(stderr, "peers_bench: JetStream: no ack (%.*s)\n",
            (int) m->hdr_len, m->hdr);
        return 0;
    }
    return json_num(buf, "seq");
}

/* The next JetStream ack (a message on the reply subscription, sid 1):
 * 1, or -1 with the reason printed. */
static int
nats_next_ack(struct conn *c, nats_msg *m)
{
    for (;;) {
        int r = nats_next(c->n, m, 30000);
        if (r <= 0) {
            fprintf(stderr, "peers_bench: nats: %s\n",
                r == 0 ? "ack timeout" : nats_error(c->n));
            return -1;
        }
        if (m->sid == 1) {
            return 1;
        }
    }
}

/* Publishes n events to subject and waits for the n acks. */
static int
nats_append(struct conn *c, const char *subject, int n)
{
    char reply[96];
    snprintf(reply, sizeof(reply), "%s.a", nats_inbox(c->n));
    for (int i = 0; i < n; i++) {
        if (nats_pub(c->n, subject, reply, payload, EVENT_SIZE) != 0) {
            return -1;
        }
    }
    if (nats_flush(c->n) != 0) {
        return -1;
    }
    int bad = 0;
    for (int got = 0; got < n; got++) {
        nats_msg  m;
        long long conflict;
        if (nats_next_ack(c, &m) < 0) {
            return -1;
        }
        if (nats_ack(&m, &conflict) <= 0) {
            bad++;
        }
    }
    return bad ? -1 : 0;
}

/* ------------------------------------------------------------- appends -- */

static void
pg_check(PGresult *res, struct conn *c, const char *what)
{
    ExecStatusType s = PQresultStatus(res);
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        die(what, PQerrorMessage(c->pg));
    }
}

static uint64_t
pg_max_version(struct conn *c, const char *stream)
{
    const char *params[1] = { stream };
    PGresult   *res       = PQexecParams(c->pg,
                "SELECT coalesce(max(version), 0) FROM events WHERE stream = $1", 1,
                NULL, params, NULL, NULL, 0);
    pg_check(res, c, "SELECT max(version)");
    uint64_t v = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return v;
}

/* Prepares the append statements of a PostgreSQL connection. */
static void
pg_prepare(struct conn *c)
{
    PGresult *res = PQprepare(c->pg, "ins1",
        "INSERT INTO events (stream, version, data) VALUES ($1, $2, $3)", 3,
        NULL);
    pg_check(res, c, "PREPARE ins1");
    PQclear(res);
    char   sql[8192];
    size_t off = (size_t) snprintf(
        sql, sizeof(sql), "INSERT INTO events (stream, version, data) VALUES ");
    for (int i = 0; i < BATCH; i++) {
        off += (size_t) snprintf(sql + off, sizeof(sql) - off,
            "%s($1, $%d, $%d)", i ? ", " : "", 2 + 2 * i, 3 + 2 * i);
    }
    res = PQprepare(c->pg, "ins100", sql, 1 + 2 * BATCH, NULL);
    pg_check(res, c, "PREPARE ins100");
    PQclear(res);
}

/* n events (1 or BATCH) appended to the connection's own stream. */
static int
append_n(struct conn *c, int n)
{
    if (c->m != NULL) {
        return meridian_append(c->m, c->stream, n, MRD_EXPECT_ANY, NULL)
                == MRD_OK
            ? 0
            : -1;
    }
    if (c->r != NULL) {
        const char *argv[5] = { "XADD", c->stream, "*", "d", payload };
        size_t      len[5]  = { 4, strlen(c->stream), 1, 1, EVENT_SIZE };
        if (n == 1) {
            redisReply *rep = redisCommandArgv(c->r, 5, argv, len);
            if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
                fprintf(stderr, "peers_bench: XADD: %s\n",
                    rep ? rep->str : c->r->errstr);
                freeReplyObject(rep);
                return -1;
            }
            freeReplyObject(rep);
            return 0;
        }
        redisAppendCommand(c->r, "MULTI");
        for (int i = 0; i < n; i++) {
            redisAppendCommandArgv(c->r, 5, argv, len);
        }
        redisAppendCommand(c->r, "EXEC");
        int bad = 0;
        for (int i = 0; i < n + 2; i++) {
            redisReply *rep = NULL;
            if (redisGetReply(c->r, (void **) &rep) != REDIS_OK) {
                fprintf(stderr, "peers_bench: redis: %s\n", c->r->errstr);
                return -1;
            }
            if (rep->type == REDIS_REPLY_ERROR) {
                bad++;
            }
            if (i == n + 1
                && (rep->type != REDIS_REPLY_ARRAY
                    || rep->elements != (size_t) n)) {
                bad++;
            }
            freeReplyObject(rep);
        }
        return bad ? -1 : 0;
    }
    if (c->pg != NULL) {
        if (!c->version_known) {
            c->next_version  = pg_max_version(c, c->stream) + 1;
            c->version_known = true;
        }
        const char *params[1 + 2 * BATCH];
        int         lens[1 + 2 * BATCH], fmts[1 + 2 * BATCH];
        char        vers[BATCH][24];
        params[0] = c->stream;
        lens[0]   = 0;
        fmts[0]   = 0;
        for (int i = 0; i < n; i++) {
            snprintf(vers[i], sizeof(vers[i]), "%" PRIu64,
                c->next_version + (uint64_t) i);
            params[1 + 2 * i] = vers[i];
            lens[1 + 2 * i]   = 0;
            fmts[1 + 2 * i]   = 0;
            params[2 + 2 * i] = payload;
            lens[2 + 2 * i]   = EVENT_SIZE;
            fmts[2 + 2 * i]   = 1;
        }
        PGresult *res = PQexecPrepared(c->pg, n == 1 ? "ins1" : "ins100",
            1 + 2 * n, params, lens, fmts, 0);
        int       ok  = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok) {
            fprintf(stderr, "peers_bench: INSERT: %s", PQerrorMessage(c->pg));
        }
        PQclear(res);
        if (ok) {
            c->next_version += (uint64_t) n;
        }
        return ok ? 0 : -1;
    }
    char subject[64];
    snprintf(subject, sizeof(subject), "ev.%s", c->stream);
    return nats_append(c, subject, n);
}

/* One conditional append to the hot stream. 1: appended, *version is the
 * new version; 0: conflict, *version is the stream's current one; -1:
 * error. */
static int
append_expected(struct conn *c, uint64_t *version)
{
    if (c->m != NULL) {
        /* *version counts events: 0 is no stream, k the last position
         * k - 1. A conflict reads the stream's version afresh. */
        int64_t v   = 0;
        int     err = meridian_append(c->m, "hot", 1,
            *version == 0 ? MRD_EXPECT_NO_STREAM : (int64_t) *version - 1, &v);
        if (err == MRD_OK) {
            *version = (uint64_t) v + 1;
            return 1;
        }
        if (err == MRD_EVERSION) {
            *version = meridian_count(c->m, "hot");
            return 0;
        }
        return -1;
    }
    char exp[24];
    snprintf(exp, sizeof(exp), "%" PRIu64, *version);
    if (c->r != NULL) {
        const char *argv[6] = { "EVALSHA", c->sha, "1", "hot", exp, payload };
        size_t len[6]   = { 7, strlen(c->sha), 1, 3, strlen(exp), EVENT_SIZE };
        redisReply *rep = redisCommandArgv(c->r, 6, argv, len);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY
            || rep->elements != 2) {
            fprintf(stderr, "peers_bench: EVALSHA: %s\n",
                rep && rep->str ? rep->str : c->r->errstr);
            freeReplyObject(rep);
            return -1;
        }
        int ok   = rep->element[0]->integer == 1;
        *version = (uint64_t) rep->element[1]->integer;
        freeReplyObject(rep);
        return ok;
    }
    if (c->pg != NULL) {
        char next[24];
        snprintf(next, sizeof(next), "%" PRIu64, *version + 1);
        const char *params[3] = { "hot", next, payload };
        int         lens[3]   = { 0, 0, EVENT_SIZE };
        int         fmts[3]   = { 0, 0, 1 };
        PGresult *res = PQexecPrepared(c->pg, "ins1", 3, params, lens, fmts, 0);
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            PQclear(res);
            *version += 1;
            return 1;
        }
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        bool        dup   = state != NULL && strcmp(state, "23505") == 0;
        if (!dup) {
            fprintf(stderr, "peers_bench: INSERT: %s", PQerrorMessage(c->pg));
        }
        PQclear(res);
        if (!dup) {
            return -1;
        }
        *version = pg_max_version(c, "hot");
        return 0;
    }
    char hdr[96], reply[96];
    snprintf(
        hdr, sizeof(hdr), "Nats-Expected-Last-Subject-Sequence: %s\r\n", exp);
    snprintf(reply, sizeof(reply), "%s.x", nats_inbox(c->n));
    if (nats_hpub(c->n, "ev.hot", reply, hdr, payload, EVENT_SIZE) != 0
        || nats_flush(c->n) != 0) {
        return -1;
    }
    nats_msg  m;
    long long conflict;
    if (nats_next_ack(c, &m) < 0) {
        return -1;
    }
    long long seq = nats_ack(&m, &conflict);
    if (seq > 0) {
        *version = (uint64_t) seq;
        return 1;
    }
    if (conflict >= 0) {
        *version = (uint64_t) conflict;
        return 0;
    }
    return -1;
}

/* The hot stream's current version. */
static uint64_t
head_version(struct conn *c)
{
    if (c->m != NULL) {
        return meridian_count(c->m, "hot");
    }
    if (c->r != NULL) {
        uint64_t    v       = (uint64_t) -1; /* never matches: a read */
        const char *argv[6] = { "EVALSHA", c->sha, "1", "hot", "-1", payload };
        size_t      len[6]  = { 7, strlen(c->sha), 1, 3, 2, EVENT_SIZE };
        redisReply *rep     = redisCommandArgv(c->r, 6, argv, len);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY
            || rep->elements != 2) {
            die("EVALSHA", rep && rep->str ? rep->str : c->r->errstr);
        }
        v = (uint64_t) rep->element[1]->integer;
        freeReplyObject(rep);
        return v;
    }
    if (c->pg != NULL) {
        return pg_max_version(c, "hot");
    }
    char out[8192];
    js_api(c, "$JS.API.STREAM.MSG.GET.BENCH", "{\"last_by_subj\":\"ev.hot\"}",
        out, sizeof(out));
    long long   seq = -1;
    const char *msg = strstr(out, "\"message\"");
    if (msg != NULL) {
        seq = json_num(msg, "seq");
    }
    return seq > 0 ? (uint64_t) seq : 0;
}

/* ---------------------------------------------------------------- setup -- */

static void
setup(struct conn *c)
{
    if (c->pg != NULL) {
        PGresult *res = PQexec(c->pg,
            "SET client_min_messages = warning;"
            "CREATE TABLE IF NOT EXISTS events (stream text NOT NULL, "
            "version bigint NOT NULL, data bytea NOT NULL, "
            "PRIMARY KEY (stream, version))");
        pg_check(res, c, "CREATE TABLE");
        PQclear(res);
    } else if (c->n != NULL) {
        if (strcmp(O.workload, "read1m") == 0) {
            nats_stream(c, "READ", "rd");
        } else {
            nats_stream(c, "BENCH", "ev.>");
        }
    }
}

/* ------------------------------------------------------- append clients -- */

struct client {
    pthread_t    th;
    int          idx;
    struct conn *c;
    struct lat   lat;
    long         events, conflicts, errors;
};

static pthread_barrier_t start_barrier;
static atomic_long       claimed;
static double            t_start, t_deadline;
static bool              is_expected;
static int               per_op;

static void *
client_main(void *arg)
{
    struct client *cl      = arg;
    uint64_t       version = 0;
    if (is_expected) {
        version = head_version(cl->c);
    }
    pthread_barrier_wait(&start_barrier);
    for (;;) {
        if (!is_expected
            && atomic_fetch_add(&claimed, per_op) + per_op > O.events) {
            break;
        }
        if (is_expected && atomic_load(&claimed) >= O.events) {
            break;
        }
        double t0 = now_s();
        if (t0 >= t_deadline) {
            break;
        }
        int r;
        if (is_expected) {
            r = append_expected(cl->c, &version);
            if (r == 1) {
                atomic_fetch_add(&claimed, 1);
                cl->events++;
            } else if (r == 0) {
                cl->conflicts++;
            } else {
                cl->errors++;
            }
        } else {
            r = append_n(cl->c, per_op);
            if (r == 0) {
                cl->events += per_op;
            } else {
                cl->errors++;
            }
        }
        lat_add(&cl->lat, (now_s() - t0) * 1000);
        if (cl->errors > 100) {
            break;
        }
    }
    return NULL;
}

struct result {
    long   events, conflicts, errors;
    double seconds, p50, p99;
};

static void *
conn_close_main(void *arg)
{
    conn_close(arg);
    return NULL;
}

/* Closes the clients' connections at once, each on a thread of its own: a
 * Meridian client can take seconds to close (client/client.c,
 * CLIENT_CLOSE_WAIT_MS, when NNG 1.5.2 hangs in nng_close), and 64 of them
 * one after another took minutes. */
static void
conns_close(struct client *cls, int n)
{
    pthread_t *th = calloc((size_t) n, sizeof(*th));
    bool      *ok = calloc((size_t) n, sizeof(*ok));
    if (th == NULL || ok == NULL) {
        die("out of memory", NULL);
    }
    for (int i = 0; i < n; i++) {
        ok[i] = pthread_create(&th[i], NULL, conn_close_main, cls[i].c) == 0;
        if (!ok[i]) {
            conn_close(cls[i].c);
        }
    }
    for (int i = 0; i < n; i++) {
        if (ok[i]) {
            pthread_join(th[i], NULL);
        }
    }
    free(ok);
    free(th);
}

static void
run_appends(struct result *res)
{
    int            n   = O.clients;
    struct client *cls = calloc((size_t) n, sizeof(*cls));
    if (cls == NULL) {
        die("out of memory", NULL);
    }
    for (int i = 0; i < n; i++) {
        cls[i].idx = i;
        cls[i].c   = conn_open();
        snprintf(cls[i].c->stream, sizeof(cls[i].c->stream), "s%d", i);
        if (cls[i].c->pg != NULL) {
            pg_prepare(cls[i].c);
        }
    }
    pthread_barrier_init(&start_barrier, NULL, (unsigned) n + 1);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&cls[i].th, NULL, client_main, &cls[i]) != 0) {
            die("pthread_create", strerror(errno));
        }
    }
    /* The clock starts when every client is connected and ready. */
    t_start    = now_s();
    t_deadline = t_start + O.seconds;
    mon_begin();
    pthread_barrier_wait(&start_barrier);
    struct lat all = { 0 };
    for (int i = 0; i < n; i++) {
        pthread_join(cls[i].th, NULL);
    }
    res->seconds = now_s() - t_start;
    mon_end();
    for (int i = 0; i < n; i++) {
        res->events += cls[i].events;
        res->conflicts += cls[i].conflicts;
        res->errors += cls[i].errors;
        lat_merge(&all, &cls[i].lat);
        free(cls[i].lat.v);
    }
    conns_close(cls, n);
    res->p50 = lat_pct(&all, 0.50);
    res->p99 = lat_pct(&all, 0.99);
    free(all.v);
    pthread_barrier_destroy(&start_barrier);
    free(cls);
}

/* --------------------------------------------------------------- reads -- */

static long
read_count(struct conn *c)
{
    if (c->m != NULL) {
        return (long) meridian_count(c->m, "read");
    }
    if (c->r != NULL) {
        redisReply *rep = redisCommand(c->r, "XLEN read");
        long        v
            = rep && rep->type == REDIS_REPLY_INTEGER ? (long) rep->integer : 0;
        freeReplyObject(rep);
        return v;
    }
    if (c->pg != NULL) {
        PGresult *res = PQexec(
            c->pg, "SELECT count(*) FROM events WHERE stream = 'read'");
        pg_check(res, c, "SELECT count(*)");
        long v = atol(PQgetvalue(res, 0, 0));
        PQclear(res);
        return v;
    }
    char out[8192];
    js_api(c, "$JS.API.STREAM.INFO.READ", "", out, sizeof(out));
    const char *st = strstr(out, "\"state\"");
    long long   v  = st ? json_num(st, "messages") : 0;
    return v > 0 ? (long) v : 0;
}

static void
read_load(struct conn *c, long n)
{
    if (c->m != NULL) {
        for (long done = 0; done < n;) {
            int k = n - done < (long) MRD_APPEND_EVENTS_MAX
                ? (int) (n - done)
                : (int) MRD_APPEND_EVENTS_MAX;
            if (meridian_append(c->m, "read", k, MRD_EXPECT_ANY, NULL)
                != MRD_OK) {
                die("meridian load", NULL);
            }
            done += k;
        }
        return;
    }
    if (c->r != NULL) {
        const char *argv[5] = { "XADD", "read", "*", "d", payload };
        size_t      len[5]  = { 4, 4, 1, 1, EVENT_SIZE };
        for (long done = 0; done < n;) {
            long k = n - done < 1000 ? n - done : 1000;
            for (long i = 0; i < k; i++) {
                redisAppendCommandArgv(c->r, 5, argv, len);
            }
            for (long i = 0; i < k; i++) {
                redisReply *rep = NULL;
                if (redisGetReply(c->r, (void **) &rep) != REDIS_OK) {
                    die("redis load", c->r->errstr);
                }
                if (rep->type == REDIS_REPLY_ERROR) {
                    die("redis load", rep->str);
                }
                freeReplyObject(rep);
            }
            done += k;
        }
        return;
    }
    if (c->pg != NULL) {
        char sql[512];
        snprintf(sql, sizeof(sql),
            "INSERT INTO events (stream, version, data) SELECT 'read', g, "
            "decode(repeat('ab', %d), 'hex') FROM generate_series(1, %ld) g",
            EVENT_SIZE, n);
        PGresult *res = PQexec(c->pg, sql);
        pg_check(res, c, "load");
        PQclear(res);
        res = PQexec(c->pg, "VACUUM ANALYZE events");
        pg_check(res, c, "VACUUM");
        PQclear(res);
        return;
    }
    /* NATS: windows of 1,000 publishes, then their acks. */
    for (long done = 0; done < n;) {
        int k = n - done < 1000 ? (int) (n - done) : 1000;
        if (nats_append(c, "rd", k) != 0) {
            die("nats load", nats_error(c->n));
        }
        done += k;
    }
}

/* Reads the whole read stream; the events read, latencies per page. */
static long
read_all(struct conn *c, long n, struct lat *lat, long *bytes)
{
    long got = 0;
    if (c->m != NULL) {
        /* Forward reads of READ_PAGE events (MRD_READ_COUNT_MAX). */
        uint64_t from = 0;
        for (;;) {
            mrd_events *evs = NULL;
            double      t0  = now_s();
            int         err
                = mrd_read(c->m, "read", from, MRD_FORWARD, READ_PAGE, &evs);
            if (err != MRD_OK) {
                die("mrd_read", mrd_errname(err));
            }
            size_t k = mrd_events_count(evs);
            for (size_t i = 0; i < k; i++) {
                *bytes += (long) mrd_events_at(evs, i)->data_size;
            }
            from    = mrd_events_next(evs);
            int end = mrd_events_end(evs);
            mrd_events_free(evs);
            lat_add(lat, (now_s() - t0) * 1000);
            got += (long) k;
            if (end || k == 0) {
                break;
            }
        }
        return got;
    }
    if (c->r != NULL) {
        char last[64] = "-";
        for (;;) {
            double      t0  = now_s();
            redisReply *rep = redisCommand(
                c->r, "XRANGE read %s + COUNT %d", last, READ_PAGE);
            if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
                die("XRANGE", rep && rep->str ? rep->str : c->r->errstr);
            }
            size_t k = rep->elements;
            for (size_t i = 0; i < k; i++) {
                redisReply *e = rep->element[i];
                *bytes += (long) e->element[1]->element[1]->len;
            }
            if (k > 0) {
                snprintf(last, sizeof(last), "(%s",
                    rep->element[k - 1]->element[0]->str);
            }
            freeReplyObject(rep);
            lat_add(lat, (now_s() - t0) * 1000);
            got += (long) k;
            if (k < READ_PAGE) {
                break;
            }
        }
        return got;
    }
    if (c->pg != NULL) {
        PGresult *res = PQprepare(c->pg, "page",
            "SELECT version, data FROM events WHERE stream = 'read' AND "
            "version > $1 ORDER BY version LIMIT 10000",
            1, NULL);
        pg_check(res, c, "PREPARE page");
        PQclear(res);
        uint64_t after = 0;
        for (;;) {
            char v[24];
            snprintf(v, sizeof(v), "%" PRIu64, after);
            const char *params[1] = { v };
            double      t0        = now_s();
            res = PQexecPrepared(c->pg, "page", 1, params, NULL, NULL, 1);
            pg_check(res, c, "page");
            int k = PQntuples(res);
            for (int i = 0; i < k; i++) {
                *bytes += PQgetlength(res, i, 1);
            }
            if (k > 0) {
                const unsigned char *b
                    = (const unsigned char *) PQgetvalue(res, k - 1, 0);
                after = 0;
                for (int j = 0; j < 8; j++) {
                    after = after << 8 | b[j];
                }
            }
            PQclear(res);
            lat_add(lat, (now_s() - t0) * 1000);
            got += k;
            if (k < READ_PAGE) {
                break;
            }
        }
        return got;
    }
    /* NATS: an ordered push consumer, as the NATS clients make one: an
     * ephemeral consumer delivering to our inbox, ack none, flow control
     * and heartbeats. Latency: per 10,000 messages. */
    char deliver[96], body[512], out[4096];
    snprintf(deliver, sizeof(deliver), "%s.rd", nats_inbox(c->n));
    if (nats_sub(c->n, deliver, 2) != 0 || nats_flush(c->n) != 0) {
        die("nats sub", nats_error(c->n));
    }
    snprintf(body, sizeof(body),
        "{\"stream_name\":\"READ\",\"config\":{\"deliver_subject\":\"%s\","
        "\"deliver_policy\":\"all\",\"ack_policy\":\"none\","
        "\"replay_policy\":\"instant\",\"flow_control\":true,"
        "\"idle_heartbeat\":5000000000,\"mem_storage\":true,"
        "\"num_replicas\":1,\"inactive_threshold\":300000000000}}",
        deliver);
    double t0   = now_s();
    double page = t0;
    js_api(c, "$JS.API.CONSUMER.CREATE.READ", body, out, sizeof(out));
    if (strstr(out, "\"error\"") != NULL) {
        die("JetStream consumer create", out);
    }
    while (got < n) {
        nats_msg m;
        int      r = nats_next(c->n, &m, 30000);
        if (r <= 0) {
            die("nats read", r == 0 ? "timeout" : nats_error(c->n));
        }
        if (m.sid != 2) {
            continue;
        }
        if (m.hdr != NULL && m.hdr_len >= 12
            && memcmp(m.hdr + 9, "100", 3) == 0) {
            /* A flow control request (answered on its reply subject) or
             * a heartbeat (which may name a stalled flow control reply). */
            if (m.reply != NULL) {
                char rs[256];
                snprintf(rs, sizeof(rs), "%.*s", (int) m.reply_len, m.reply);
                nats_pub(c->n, rs, NULL, "", 0);
                nats_flush(c->n);
            } else {
                const char *s = NULL;
                for (size_t i = 0; i + 20 < m.hdr_len; i++) {
                    if (memcmp(m.hdr + i, "Nats-Consumer-Stalled", 21) == 0) {
                        s = m.hdr + i + 21;
                        break;
                    }
                }
                if (s != NULL) {
                    while (*s == ':' || *s == ' ') {
                        s++;
                    }
                    char   rs[256];
                    size_t k = 0;
                    while (k < sizeof(rs) - 1 && s[k] != '\r') {
                        rs[k] = s[k];
                        k++;
                    }
                    rs[k] = '\0';
                    nats_pub(c->n, rs, NULL, "", 0);
                    nats_flush(c->n);
                }
            }
            continue;
        }
        *bytes += (long) m.data_len;
        got++;
        if (got % READ_PAGE == 0 || got == n) {
            double t = now_s();
            lat_add(lat, (t - page) * 1000);
            page = t;
        }
    }
    return got;
}

static void
run_read(struct result *res)
{
    struct conn *c    = conn_open();
    long         have = read_count(c);
    if (have < O.events) {
        fprintf(stderr, "peers_bench: loading %ld events (untimed)...\n",
            O.events - have);
        read_load(c, O.events - have);
    }
    have = read_count(c);
    conn_close(c);
    /* A fresh connection for the read, as a new reader would have. */
    c                = conn_open();
    struct lat lat   = { 0 };
    long       bytes = 0;
    mon_begin();
    double t0    = now_s();
    res->events  = read_all(c, have, &lat, &bytes);
    res->seconds = now_s() - t0;
    mon_end();
    if (res->events != have || bytes != have * EVENT_SIZE) {
        fprintf(stderr, "peers_bench: read %ld events, %ld bytes, of %ld\n",
            res->events, bytes, have);
        res->errors = 1;
    }
    res->p50 = lat_pct(&lat, 0.50);
    res->p99 = lat_pct(&lat, 0.99);
    free(lat.v);
    conn_close(c);
}

/* ------------------------------------------------------------ loopback -- */

static int lb_listen_fd;

static int
full_io(int fd, char *buf, size_t n, bool wr)
{
    size_t off = 0;
    while (off < n) {
        ssize_t k = wr ? send(fd, buf + off, n - off, MSG_NOSIGNAL)
                       : recv(fd, buf + off, n - off, 0);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return -1;
        }
        off += (size_t) k;
    }
    return 0;
}

static void *
lb_server(void *arg)
{
    (void) arg;
    int fd = accept(lb_listen_fd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char buf[65536];
    /* Phase 1: echo 256-byte messages until a zero first byte. */
    for (;;) {
        if (full_io(fd, buf, EVENT_SIZE, false) != 0) {
            break;
        }
        if (buf[0] == 0) {
            break;
        }
        if (full_io(fd, buf, EVENT_SIZE, true) != 0) {
            break;
        }
    }
    /* Phase 2: drain until EOF, then answer with one byte. */
    for (;;) {
        ssize_t k = recv(fd, buf, sizeof(buf), 0);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            break;
        }
    }
    close(fd);
    return NULL;
}

static void
run_loopback(struct result *res, double *mb_per_s)
{
    lb_listen_fd          = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr    = htonl(INADDR_LOOPBACK);
    socklen_t sl          = sizeof(sa);
    if (lb_listen_fd < 0
        || bind(lb_listen_fd, (struct sockaddr *) &sa, sizeof(sa)) != 0
        || listen(lb_listen_fd, 1) != 0
        || getsockname(lb_listen_fd, (struct sockaddr *) &sa, &sl) != 0) {
        die("loopback listen", strerror(errno));
    }
    pthread_t th;
    pthread_create(&th, NULL, lb_server, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) != 0) {
        die("loopback connect", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    char msg[EVENT_SIZE];
    memset(msg, 'x', sizeof(msg));
    struct lat lat = { 0 };
    double     end = now_s() + O.seconds / 2;
    for (long i = 0; i < O.events && now_s() < end; i++) {
        double t0 = now_s();
        if (full_io(fd, msg, EVENT_SIZE, true) != 0
            || full_io(fd, msg, EVENT_SIZE, false) != 0) {
            die("loopback ping-pong", strerror(errno));
        }
        lat_add(&lat, (now_s() - t0) * 1000);
    }
    msg[0] = 0;
    full_io(fd, msg, EVENT_SIZE, true);
    static char chunk[65536];
    memset(chunk, 'y', sizeof(chunk));
    long   sent = 0;
    double t0   = now_s();
    end         = t0 + O.seconds / 2;
    while (now_s() < end) {
        if (full_io(fd, chunk, sizeof(chunk), true) != 0) {
            die("loopback stream", strerror(errno));
        }
        sent += (long) sizeof(chunk);
    }
    shutdown(fd, SHUT_WR);
    pthread_join(th, NULL);
    res->seconds = now_s() - t0;
    close(fd);
    close(lb_listen_fd);
    res->events = sent / EVENT_SIZE;
    *mb_per_s   = (double) sent / res->seconds / 1e6;
    res->p50    = lat_pct(&lat, 0.50);
    res->p99    = lat_pct(&lat, 0.99);
    free(lat.v);
}

/* ----------------------------------------------------------------- main -- */

static void
usage(void)
{
    fprintf(stderr,
        "usage: peers_bench --peer meridian|redis|nats|postgres|none --addr "
        "URL[,URL...]|HOST:PORT|CONNINFO\n"
        "         --workload single1|single64|batch100|read1m|expected8|"
        "loopback\n"
        "         [--events N] [--seconds S] [--clients N] [--mode LABEL] "
        "[--server-pid PID]\n"
        "         [--ack local|region|global] [--ack-count N] "
        "[--region NAME]\n");
    exit(2);
}

static void
json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') {
            putchar('\\');
        }
        if ((unsigned char) *s >= 0x20) {
            putchar(*s);
        }
    }
    putchar('"');
}

int
main(int argc, char **argv)
{
    O.peer     = "";
    O.addr     = "";
    O.workload = "";
    O.mode     = "";
    O.events   = -1;
    O.seconds  = -1;
    O.clients  = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) {
            usage();
        }
        const char *v = argv[++i];
        if (strcmp(a, "--peer") == 0) {
            O.peer = v;
        } else if (strcmp(a, "--addr") == 0) {
            O.addr = v;
        } else if (strcmp(a, "--workload") == 0) {
            O.workload = v;
        } else if (strcmp(a, "--mode") == 0) {
            O.mode = v;
        } else if (strcmp(a, "--events") == 0) {
            O.events = atol(v);
        } else if (strcmp(a, "--seconds") == 0) {
            O.seconds = atof(v);
        } else if (strcmp(a, "--clients") == 0) {
            O.clients = atoi(v);
        } else if (strcmp(a, "--server-pid") == 0) {
            O.server_pid = atol(v);
        } else if (strcmp(a, "--ack") == 0) {
            O.ack = strcmp(v, "region") == 0 ? MRD_ACK_REGION
                : strcmp(v, "global") == 0   ? MRD_ACK_GLOBAL
                : strcmp(v, "local") == 0    ? MRD_ACK_LOCAL
                                             : -1;
            if (O.ack < 0) {
                usage();
            }
        } else if (strcmp(a, "--ack-count") == 0) {
            O.ack_count = (uint32_t) atoi(v);
        } else if (strcmp(a, "--region") == 0) {
            O.region = v;
        } else {
            usage();
        }
    }
    struct {
        const char *name;
        int         clients, per_op;
        long        events;
        double      seconds;
    } const w[] = {
        { "single1", 1, 1, 5000, 10 },
        { "single64", 64, 1, 50000, 10 },
        { "batch100", 16, BATCH, 1000000, 10 },
        { "read1m", 1, 1, 1000000, 0 },
        { "expected8", 8, 1, 20000, 10 },
        { "loopback", 1, 1, 100000, 4 },
    };
    int wi = -1;
    for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
        if (strcmp(O.workload, w[i].name) == 0) {
            wi = (int) i;
        }
    }
    bool loopback = wi == 5;
    if (wi < 0
        || (!loopback && !is_peer("redis") && !is_peer("nats")
            && !is_peer("postgres") && !is_peer("meridian"))) {
        usage();
    }
    if (O.clients <= 0) {
        O.clients = w[wi].clients;
    }
    if (O.clients > PB_MAX_CLIENTS) {
        O.clients = PB_MAX_CLIENTS;
    }
    if (O.events <= 0) {
        O.events = w[wi].events;
    }
    if (O.seconds <= 0) {
        O.seconds = w[wi].seconds;
    }
    per_op      = w[wi].per_op;
    is_expected = strcmp(O.workload, "expected8") == 0;
    if (!loopback && !is_peer("postgres") && !is_peer("meridian")) {
        const char *colon = strrchr(O.addr, ':');
        if (colon == NULL || colon == O.addr
            || (size_t) (colon - O.addr) >= sizeof(O.host)) {
            die("--addr wants HOST:PORT", O.addr);
        }
        snprintf(
            O.host, sizeof(O.host), "%.*s", (int) (colon - O.addr), O.addr);
        snprintf(O.port, sizeof(O.port), "%s", colon + 1);
    }
    for (int i = 0; i < EVENT_SIZE; i++) {
        payload[i] = (char) ('a' + i % 26);
    }
    for (size_t i = 0; i < MRD_APPEND_EVENTS_MAX; i++) {
        meridian_events[i].type      = "bench";
        meridian_events[i].data      = payload;
        meridian_events[i].data_size = EVENT_SIZE;
    }
    if (!loopback) {
        struct conn *c = conn_open();
        setup(c);
        conn_close(c);
    }

    if (loopback) {
        O.server_pid = 0;
    }
    struct result res      = { 0 };
    double        mb_per_s = 0;
    if (loopback) {
        run_loopback(&res, &mb_per_s);
    } else if (strcmp(O.workload, "read1m") == 0) {
        run_read(&res);
    } else {
        run_appends(&res);
    }
    double cpu = mon_cpu, peak_mb = mon_peak_mb;
    printf("{\"peer\":");
    json_str(loopback ? "loopback" : O.peer);
    printf(",\"mode\":");
    json_str(O.mode);
    printf(",\"workload\":");
    json_str(O.workload);
    printf(",\"clients\":%d,\"events\":%ld,\"seconds\":%.3f,"
           "\"events_per_s\":%.0f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
           "\"conflicts\":%ld,\"errors\":%ld,\"server_cpu_s\":%.2f,"
           "\"server_peak_mb\":%.1f",
        O.clients, res.events, res.seconds,
        res.seconds > 0 ? (double) res.events / res.seconds : 0, res.p50,
        res.p99, res.conflicts, res.errors, cpu, peak_mb);
    if (loopback) {
        printf(",\"mb_per_s\":%.0f", mb_per_s);
    }
    printf("}\n");
    return res.errors > 0 ? 1 : 0;
}
