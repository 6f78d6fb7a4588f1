/*
 * meridian_bench.c: single-node throughput and latency, beside the physical
 * baselines measured in the same run on the same disk.
 *
 * Baselines: fdatasync latency of a 4 KiB write (what one durable commit
 * costs at least) and raw LMDB appends at 1,000 events per transaction (the
 * most the storage engine gives). Workloads, 256-byte events, against a real
 * meridiand started here: single appends from one client; single appends with
 * 64 in flight (asynchronous API) on 1 stream and on 64, and 256 in flight;
 * 100-event batches with 16 and 64 in flight; a forward read scan of a
 * 1M-event stream by 1 reader and by 4 readers over disjoint ranges. Each
 * figure is the median of --runs runs, each run on a fresh node.
 *
 * Replication (--only repl): two nodes, regions r1 and r2, each the other's
 * peer, on loopback; each pulls from the other through a byte-counting TCP
 * forwarder run here, so the bytes crossing the "link" are known. Measured:
 * 100-event batches into r1 until r2 holds them all; the lag from an append
 * on r1 to its arrival at a tail on r2, at a steady 2,000 events/s and at
 * one event every 300-700 ms (the pullers' idle backoff); a fresh third node
 * catching up from r1; and link bytes per replicated event beside the
 * average stored record.
 *
 * Regions (--only regions): a signed-topology cluster, as `meridianctl
 * cluster init --regions r1,r2 --nodes-per-region 2 --replicas-per-region
 * 2 --shards 16` writes it (every node holds every shard), on loopback,
 * fresh each run. After a warm-up event from each region: a client of home
 * region r1 appends the bulk (100-event batches, 16 in flight, 64 streams)
 * until both r2 nodes and the other r1 node hold it all; from the STATS
 * counters around it, the copies per remote region per event (what r1's
 * nodes served, events_read, less what they pulled from each other,
 * pull_events_local; assumed one per event where a meridiand lacks that
 * counter) and what the r2 nodes took from r1 (pull_events_remote,
 * pull_bytes_remote) beside the average stored record. Then the lag at a
 * steady 2,000 events/s from appends on r1 to tails on a client of home
 * region r2; and every node must hold every event exactly once.
 *
 * Secure links: every connection is encrypted and authenticated
 * (docs/ARCHITECTURE.md, "Secure links"), so every figure includes the
 * seal and open of each message. The bench makes its own keys in its
 * directory: an admin client key, keys for node ids 1 to 3 and one
 * keyring naming the cluster, those nodes and the admin client; the lone
 * and the replication nodes run with --cluster-id, --key and --keyring
 * from them. The regions cluster uses what `meridianctl cluster init`
 * wrote (node keys, keyring; its admin key is the bench's client). STATS
 * and shard-log reads go through a linkio dialer as the admin client.
 * Link bytes per event include each message's 24-byte seal (counter and
 * tag). The lag tails are spread over 4 clients of 16 tails each: a
 * client's link to a node keeps at most LK_INFLIGHT_MAX (64) requests on
 * the wire and queues the rest, so 64 parked long-polls on one client
 * would make a tail wait for another's poll to end (seconds).
 *
 * The cost of encryption: bench/crypto_ab.sh builds this tree twice,
 * once with MRD_BENCH_PLAINTEXT=ON (frames copied instead of sealed; such
 * a meridiand starts only with MRD_BENCH_PLAINTEXT_OK=1 and talks only to
 * its own kind), and runs both benches alternately.
 *
 * Usage: meridian_bench [--runs N] [--quick] [--only W] [--dir DIR]
 *                       [--csv FILE]
 *
 * Environment: MRD_BENCH_MERIDIAND and MRD_BENCH_MERIDIANCTL run those
 * binaries instead of the ones built with the bench (an A/B against
 * another build of the same link version); without MRD_BENCH_MERIDIANCTL,
 * meridianctl is the one beside the meridiand run.
 */
#include "common.h"
#include "keyring.h"
#include "linkio.h"
#include "meridian.h"
#include "proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nng/nng.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_EVENT_SIZE 256u
#define BENCH_RUNS_MAX 15u
#define BENCH_BATCH 100u

struct bench_opts {
    unsigned runs;
    bool     quick;
    char     only[16]; /* one family: lone, inflight, batch, state, scan,
                          repl, regions */
    char dir[512];
    char csv[512];
};

/* Sizes of each workload; --quick shrinks them for a smoke run. */
struct bench_sizes {
    uint32_t lone_appends;
    uint32_t inflight_appends;
    uint32_t batch_events;
    uint32_t scan_events;
    uint32_t fsync_samples;
    uint32_t lmdb_events;
    uint32_t repl_events; /* bulk replication and catch-up */
    uint32_t repl_steady_events; /* at REPL_STEADY_RATE */
    uint32_t repl_sparse_events; /* one per 300-700 ms */
};

struct lat {
    uint32_t *us;
    size_t    n;
    size_t    cap;
};

struct result {
    double rate; /* events/s */
    double p50; /* ms */
    double p99; /* ms */
    double p999; /* ms */
};

static char bench_event_data[BENCH_EVENT_SIZE];

/* ------------------------------------------------------------- helpers -- */

static void
sleep_us(long us)
{
    struct timespec ts = { us / 1000000L, (us % 1000000L) * 1000L };
    nanosleep(&ts, NULL);
}

static void
lat_init(struct lat *l, size_t cap)
{
    l->us  = calloc(cap, sizeof(uint32_t));
    l->n   = 0;
    l->cap = cap;
    MRD_ASSERT(l->us != NULL);
}

static void
lat_add(struct lat *l, uint64_t us)
{
    if (l->n < l->cap) {
        l->us[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t) us;
    }
}

static int
u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return x < y ? -1 : x > y;
}

static double
lat_pct(struct lat *l, double p)
{
    if (l->n == 0) {
        return 0;
    }
    size_t i = (size_t) (p * (double) (l->n - 1));
    return l->us[i] / 1000.0;
}

static double
lat_max(const struct lat *l)
{
    uint32_t m = 0;
    for (size_t i = 0; i < l->n; i++) {
        m = l->us[i] > m ? l->us[i] : m;
    }
    return m / 1000.0;
}

static void
lat_finish(struct lat *l, struct result *r)
{
    qsort(l->us, l->n, sizeof(uint32_t), u32_cmp);
    r->p50  = lat_pct(l, 0.50);
    r->p99  = lat_pct(l, 0.99);
    r->p999 = lat_pct(l, 0.999);
    free(l->us);
    l->us = NULL;
}

/* p50, p99 and p999 into dst[0..2]: the run figures keep them in a row. */
static void
pcts_put(double *dst, const struct result *r)
{
    dst[0] = r->p50;
    dst[1] = r->p99;
    dst[2] = r->p999;
}

static int
dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static double
median(double *v, unsigned n)
{
    qsort(v, n, sizeof(double), dbl_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static struct result
result_median(struct result *runs, unsigned n)
{
    double        v[BENCH_RUNS_MAX];
    struct result m;
    for (unsigned i = 0; i < n; i++) {
        v[i] = runs[i].rate;
    }
    m.rate = median(v, n);
    for (unsigned i = 0; i < n; i++) {
        v[i] = runs[i].p50;
    }
    m.p50 = median(v, n);
    for (unsigned i = 0; i < n; i++) {
        v[i] = runs[i].p99;
    }
    m.p99 = median(v, n);
    for (unsigned i = 0; i < n; i++) {
        v[i] = runs[i].p999;
    }
    m.p999 = median(v, n);
    return m;
}

static void
die(const char *what, int err)
{
    fprintf(stderr, "meridian_bench: %s: %s (%s)\n", what, mrd_strerror(err),
        mrd_errname(err));
    exit(1);
}

/* ----------------------------------------------------------- baselines -- */

/* fdatasync after a 4 KiB write, as a commit does, on the bench's disk. */
static struct result
baseline_fdatasync(const char *dir, uint32_t samples)
{
    char          path[600];
    char          page[4096];
    struct lat    l;
    struct result r = { 0 };

    snprintf(path, sizeof(path), "%s/fsync.bin", dir);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    if (fd < 0) {
        perror("open");
        exit(1);
    }
    memset(page, 'f', sizeof(page));
    lat_init(&l, samples);
    uint64_t t0 = mrd_now_mono_us();
    for (uint32_t i = 0; i < samples; i++) {
        uint64_t s = mrd_now_mono_us();
        if (pwrite(fd, page, sizeof(page), (off_t) (i % 256) * 4096) < 0
            || fdatasync(fd) != 0) {
            perror("pwrite/fdatasync");
            exit(1);
        }
        lat_add(&l, mrd_now_mono_us() - s);
    }
    r.rate = samples * 1e6 / (double) (mrd_now_mono_us() - t0);
    lat_finish(&l, &r);
    close(fd);
    unlink(path);
    return r;
}

/* Raw LMDB: MDB_APPEND of 256-byte values, 1,000 per durable commit. */
static struct result
baseline_lmdb(const char *dir, uint32_t events)
{
    char          path[600];
    MDB_env      *env;
    MDB_txn      *txn;
    MDB_dbi       dbi;
    struct result r = { 0 };

    snprintf(path, sizeof(path), "%s/rawlmdb", dir);
    mkdir(path, 0700);
    if (mdb_env_create(&env) != 0 || mdb_env_set_mapsize(env, 8ull << 30) != 0
        || mdb_env_open(env, path, 0, 0600) != 0) {
        fprintf(stderr, "meridian_bench: cannot open raw LMDB\n");
        exit(1);
    }
    uint64_t t0 = mrd_now_mono_us();
    for (uint32_t i = 0; i < events;) {
        MRD_ASSERT(mdb_txn_begin(env, NULL, 0, &txn) == 0);
        MRD_ASSERT(mdb_dbi_open(txn, NULL, 0, &dbi) == 0);
        for (uint32_t j = 0; j < 1000 && i < events; j++, i++) {
            uint8_t key[8];
            mrd_be64_put(key, i + 1);
            MDB_val k = { 8, key }, v = { BENCH_EVENT_SIZE, bench_event_data };
            MRD_ASSERT(mdb_put(txn, dbi, &k, &v, MDB_APPEND) == 0);
        }
        MRD_ASSERT(mdb_txn_commit(txn) == 0);
    }
    r.rate = events * 1e6 / (double) (mrd_now_mono_us() - t0);
    mdb_env_close(env);
    char file[700];
    snprintf(file, sizeof(file), "%s/data.mdb", path);
    unlink(file);
    snprintf(file, sizeof(file), "%s/lock.mdb", path);
    unlink(file);
    rmdir(path);
    return r;
}

/* ---------------------------------------------------------------- keys -- */

/* Every connection is a secure link (docs/ARCHITECTURE.md, "Secure
 * links"): each node needs a key and a keyring, each client a key its
 * nodes trust and a keyring naming the cluster and the node keys. The
 * bench is the admin client of every cluster it starts (admin: STATS and
 * whole shard logs). */
struct bench_creds {
    char    key_file[600]; /* the admin client's secret key */
    char    keyring_file[600]; /* cluster line, node lines */
    uint8_t cluster_id[LINK_CLUSTER_ID_SIZE];
    uint8_t sk[LINK_SECRET_KEY_SIZE]; /* key_file's, for the STATS dialers */
    char    dir[600]; /* creds_make's: the node keys and the keyring */
};

/* The cluster id of the lone node and of the replication nodes. */
#define BENCH_CLUSTER_ID "6d6572696469616e2d62656e63682121"
/* Node ids the bench makes keys for: the lone node is 1, the replication
 * nodes 1, 2 and 3. */
#define BENCH_NODE_KEYS 3u

static void
creds_load(
    struct bench_creds *cr, const char *key_file, const char *keyring_file)
{
    struct keyring kr;
    char           err[700];

    snprintf(cr->key_file, sizeof(cr->key_file), "%s", key_file);
    snprintf(cr->keyring_file, sizeof(cr->keyring_file), "%s", keyring_file);
    if (keyring_key_read(key_file, cr->sk, err, sizeof(err)) != MRD_OK
        || keyring_load(keyring_file, &kr, err, sizeof(err)) != MRD_OK) {
        fprintf(stderr, "meridian_bench: %s\n", err);
        exit(1);
    }
    if (!kr.has_cluster) {
        fprintf(
            stderr, "meridian_bench: %s has no cluster line\n", keyring_file);
        exit(1);
    }
    memcpy(cr->cluster_id, kr.cluster_id, sizeof(cr->cluster_id));
    keyring_free(&kr);
}

/* DIR/node-ID.key: the key the bench made for node id. */
static void
creds_node_key(const char *dir, unsigned id, char *path, size_t cap)
{
    snprintf(path, cap, "%s/node-%u.key", dir, id);
}

/* Makes, in dir, an admin client key (admin.key), a key per node id
 * 1..BENCH_NODE_KEYS and one keyring for all: the cluster, every node and
 * the admin client. The nodes take it as --keyring (their peers and the
 * client), the clients as theirs (the cluster and the nodes). */
static void
creds_make(struct bench_creds *cr, const char *dir)
{
    char    text[2048], key[700], ring[700], err[700];
    char    hex[2 * LINK_KEY_SIZE + 1];
    uint8_t pk[LINK_KEY_SIZE], sk[LINK_SECRET_KEY_SIZE];
    int     len = snprintf(text, sizeof(text),
            "# meridian_bench: its nodes and its admin client\ncluster %s\n",
            BENCH_CLUSTER_ID);

    for (unsigned id = 0; id <= BENCH_NODE_KEYS; id++) { /* 0: the admin */
        if (id == 0) {
            snprintf(key, sizeof(key), "%s/admin.key", dir);
        } else {
            creds_node_key(dir, id, key, sizeof(key));
        }
        crypto_sign_keypair(pk, sk);
        if (keyring_key_write(key, sk, err, sizeof(err)) != MRD_OK) {
            fprintf(stderr, "meridian_bench: %s\n", err);
            exit(1);
        }
        sodium_bin2hex(hex, sizeof(hex), pk, sizeof(pk));
        len += id == 0 ? snprintf(text + len, sizeof(text) - (size_t) len,
                   "client bench admin %s\n", hex)
                       : snprintf(text + len, sizeof(text) - (size_t) len,
                           "node %u %s\n", id, hex);
        MRD_ASSERT(len > 0 && (size_t) len < sizeof(text));
    }
    sodium_memzero(sk, sizeof(sk));
    snprintf(ring, sizeof(ring), "%s/keyring", dir);
    if (keyring_file_write(ring, text, (size_t) len, 0644, err, sizeof(err))
        != MRD_OK) {
        fprintf(stderr, "meridian_bench: %s\n", err);
        exit(1);
    }
    snprintf(key, sizeof(key), "%s/admin.key", dir);
    creds_load(cr, key, ring);
    snprintf(cr->dir, sizeof(cr->dir), "%s", dir);
}

/* ---------------------------------------------------------------- node -- */

static void
dir_make(const char *dir)
{
    if (mkdir(dir, 0700) != 0) {
        perror(dir);
        exit(1);
    }
}

static void
rm_rf(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "meridian_bench: could not remove %s\n", dir);
    }
}

struct node_proc {
    pid_t pid;
    char  dir[600];
    char  url[300];
};

#define NODE_ARGS_MAX 24u
#define NODE_LIVE_MAX 8u

/* Nodes started and not yet stopped: killed at exit, so a run that fails
 * (die) leaves no meridiand behind. */
static pid_t node_live[NODE_LIVE_MAX];

static void
node_live_kill(void)
{
    for (unsigned i = 0; i < NODE_LIVE_MAX; i++) {
        if (node_live[i] > 0) {
            kill(node_live[i], SIGKILL);
            waitpid(node_live[i], NULL, 0);
            node_live[i] = 0;
        }
    }
}

static void
node_live_set(pid_t old, pid_t pid)
{
    static bool registered;
    if (!registered) {
        atexit(node_live_kill);
        registered = true;
    }
    for (unsigned i = 0; i < NODE_LIVE_MAX; i++) {
        if (node_live[i] == old) {
            node_live[i] = pid;
            return;
        }
    }
}

/* The binaries run: the environment's MRD_BENCH_MERIDIAND and
 * MRD_BENCH_MERIDIANCTL (another build's, for an A/B) win over the ones
 * built with the bench. Without MRD_BENCH_MERIDIANCTL, meridianctl is the
 * one beside the meridiand run. */
static const char *
bench_meridiand(void)
{
    const char *env = getenv("MRD_BENCH_MERIDIAND");
    return env != NULL && env[0] != '\0' ? env : MRD_MERIDIAND_PATH;
}

static const char *
bench_meridianctl(void)
{
    static char path[1024];
    const char *env = getenv("MRD_BENCH_MERIDIANCTL");
    if (env != NULL && env[0] != '\0') {
        return env;
    }
#ifdef MRD_MERIDIANCTL_PATH
    env = getenv("MRD_BENCH_MERIDIAND");
    if (env == NULL || env[0] == '\0') {
        return MRD_MERIDIANCTL_PATH;
    }
#endif
    const char *d     = bench_meridiand();
    const char *slash = strrchr(d, '/');
    int         dlen  = slash != NULL ? (int) (slash - d) : 1;
    snprintf(
        path, sizeof(path), "%.*s/meridianctl", dlen, slash != NULL ? d : ".");
    return path;
}

/* Starts meridiand with its data in n->dir, listening on `listen` (NULL:
 * no --listen, the topology's address), with `extra` (NULL-terminated, may
 * be NULL) after the common arguments, and waits until it serves. */
static void
node_spawn(struct node_proc *n, const char *node_id, const char *listen,
    const char *const *extra)
{
    char        ready[700], log[700];
    static char args[NODE_ARGS_MAX][720];
    char       *argv[NODE_ARGS_MAX + 1];
    size_t      k = 0;

    snprintf(ready, sizeof(ready), "%s.ready", n->dir);
    snprintf(log, sizeof(log), "%s.log", n->dir);
    const char *fixed[] = { "meridiand", "--node-id", node_id, "--data-dir",
        n->dir, "--ready-file", ready, "--map-size", "4G", "--log-level",
        "warn", listen != NULL ? "--listen" : NULL, listen, NULL };
    for (size_t i = 0; fixed[i] != NULL; i++, k++) {
        snprintf(args[k], sizeof(args[k]), "%s", fixed[i]);
        argv[k] = args[k];
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++, k++) {
        MRD_ASSERT(k < NODE_ARGS_MAX);
        snprintf(args[k], sizeof(args[k]), "%s", extra[i]);
        argv[k] = args[k];
    }
    argv[k] = NULL;
    unlink(ready);
    n->pid = fork();
    if (n->pid == 0) {
        int fd = open(log, O_CREAT | O_WRONLY | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
        }
        execv(bench_meridiand(), argv);
        _exit(127);
    }
    node_live_set(0, n->pid);
    for (int i = 0; i < 2000; i++) {
        FILE *f = fopen(ready, "r");
        if (f != NULL) {
            bool ok = fgets(n->url, sizeof(n->url), f) != NULL;
            fclose(f);
            if (ok) {
                n->url[strcspn(n->url, "\n")] = '\0';
                return;
            }
        }
        sleep_us(5000);
    }
    fprintf(stderr, "meridian_bench: meridiand did not start; see %s\n", log);
    kill(n->pid, SIGKILL);
    exit(1);
}

/* The lone node: id 1 of the bench's cluster, with the keys of cr
 * (creds_make). */
static void
node_start(struct node_proc *n, const char *base, unsigned run,
    const struct bench_creds *cr)
{
    char key[700];
    creds_node_key(cr->dir, 1, key, sizeof(key));
    const char *extra[] = { "--cluster-id", BENCH_CLUSTER_ID, "--key", key,
        "--keyring", cr->keyring_file, NULL };
    snprintf(n->dir, sizeof(n->dir), "%s/node-%u", base, run);
    node_spawn(n, "1", "tcp://127.0.0.1:0", extra);
}

/* Stops the node (SIGKILL after 30 s: a stop that hangs is reported, not
 * waited for) and removes its data. */
static void
node_stop(struct node_proc *n)
{
    int status = -1;
    kill(n->pid, SIGTERM);
    for (int i = 0; waitpid(n->pid, &status, WNOHANG) == 0; i++) {
        if (i == 3000) {
            fprintf(stderr,
                "meridian_bench: meridiand (%s) did not stop in 30 s; "
                "killed\n",
                n->dir);
            kill(n->pid, SIGKILL);
            waitpid(n->pid, NULL, 0);
            status = -1;
            break;
        }
        sleep_us(10000);
    }
    node_live_set(n->pid, 0);
    rm_rf(n->dir);
    char cmd[700];
    /* The log is kept when the node did not stop cleanly. */
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        snprintf(cmd, sizeof(cmd), "%s.log", n->dir);
        unlink(cmd);
        snprintf(cmd, sizeof(cmd), "%s.ready", n->dir);
        unlink(cmd);
    } else {
        fprintf(stderr,
            "meridian_bench: meridiand (%s) did not stop "
            "cleanly; its log is %s.log\n",
            n->dir, n->dir);
    }
}

/* A client of the nodes at urls, with home region `region` (NULL: none),
 * as the admin client of cr. */
static mrd_client *
client_open_region(const struct bench_creds *cr, const char *const *urls,
    size_t count, const char *region)
{
    mrd_client_opts opts;
    mrd_client     *c;

    mrd_client_opts_init(&opts);
    opts.addresses          = urls;
    opts.address_count      = count;
    opts.timeout_ms         = 60000;
    opts.attempt_timeout_ms = 30000;
    opts.region             = region;
    opts.key_file           = cr->key_file;
    opts.keyring_file       = cr->keyring_file;
    int rv                  = mrd_client_open(&opts, &c);
    if (rv != MRD_OK) {
        die("mrd_client_open", rv);
    }
    return c;
}

static mrd_client *
client_open(const struct bench_creds *cr, const char *url)
{
    return client_open_region(cr, &url, 1, NULL);
}

/* ------------------------------------------------------------ workloads -- */

static mrd_event_in
bench_event(void)
{
    mrd_event_in ev = { 0 };
    ev.type         = "BenchEvent";
    ev.data         = bench_event_data;
    ev.data_size    = BENCH_EVENT_SIZE;
    ev.content_type = "application/octet-stream";
    return ev;
}

static struct result
run_lone(mrd_client *c, uint32_t n)
{
    mrd_event_in  ev = bench_event();
    struct lat    l;
    struct result r = { 0 };

    for (uint32_t i = 0; i < 100; i++) { /* warm up */
        int rv = mrd_append(c, "bench-lone", &ev, 1, NULL, NULL);
        if (rv != MRD_OK) {
            die("append", rv);
        }
    }
    lat_init(&l, n);
    uint64_t t0 = mrd_now_mono_us();
    for (uint32_t i = 0; i < n; i++) {
        uint64_t s  = mrd_now_mono_us();
        int      rv = mrd_append(c, "bench-lone", &ev, 1, NULL, NULL);
        if (rv != MRD_OK) {
            die("append", rv);
        }
        lat_add(&l, mrd_now_mono_us() - s);
    }
    r.rate = n * 1e6 / (double) (mrd_now_mono_us() - t0);
    lat_finish(&l, &r);
    return r;
}

/* Asynchronous appends: `slots` in flight, each completion issues the next
 * until `total` calls are issued. */
struct async_run {
    mrd_client      *c;
    uint32_t         streams; /* slots spread over this many streams */
    uint32_t         batch;
    uint32_t         total;
    _Atomic uint32_t issued;
    _Atomic uint32_t done;
    _Atomic int      failed;
    pthread_mutex_t  mu;
    struct lat       lat;
    mrd_event_in     events[BENCH_BATCH];
};

struct async_slot {
    struct async_run *run;
    uint64_t          start_us;
    unsigned          index;
};

static void async_issue(struct async_slot *slot);

static void
async_done_cb(void *arg, int err, const mrd_append_result *result)
{
    struct async_slot *slot = arg;
    struct async_run  *run  = slot->run;
    (void) result;

    if (err != MRD_OK) {
        atomic_store(&run->failed, err);
    }
    pthread_mutex_lock(&run->mu);
    lat_add(&run->lat, mrd_now_mono_us() - slot->start_us);
    pthread_mutex_unlock(&run->mu);
    atomic_fetch_add(&run->done, 1);
    async_issue(slot);
}

static void
async_issue(struct async_slot *slot)
{
    struct async_run *run = slot->run;
    char              stream[32];

    if (atomic_fetch_add(&run->issued, 1) >= run->total) {
        return;
    }
    snprintf(
        stream, sizeof(stream), "bench-async-%u", slot->index % run->streams);
    slot->start_us = mrd_now_mono_us();
    int rv         = mrd_append_async(
                run->c, stream, run->events, run->batch, NULL, async_done_cb, slot);
    if (rv != MRD_OK) {
        atomic_store(&run->failed, rv);
        atomic_fetch_add(&run->done, 1);
    }
}

/* One counter op per event, for the state workloads. */
static const char *const bench_counter_path[] = { "count" };
static const mrd_op      bench_counter_op     = {
             .path     = bench_counter_path,
             .path_len = 1,
             .type     = MRD_STATE_COUNTER,
             .kind     = MRD_OP_INC,
             .delta    = 1,
};

static struct result
run_async_ops(mrd_client *c, uint32_t slots, uint32_t streams, uint32_t batch,
    uint32_t calls, bool with_ops)
{
    struct async_run  *run = calloc(1, sizeof(*run));
    struct async_slot *s   = calloc(slots, sizeof(*s));
    struct result      r   = { 0 };

    MRD_ASSERT(run != NULL && s != NULL && batch <= BENCH_BATCH);
    run->c       = c;
    run->streams = streams;
    run->batch   = batch;
    run->total   = calls;
    pthread_mutex_init(&run->mu, NULL);
    lat_init(&run->lat, calls);
    for (uint32_t i = 0; i < batch; i++) {
        run->events[i] = bench_event();
        if (with_ops) {
            run->events[i].ops      = &bench_counter_op;
            run->events[i].op_count = 1;
        }
    }
    uint64_t t0 = mrd_now_mono_us();
    for (uint32_t i = 0; i < slots; i++) {
        s[i].run   = run;
        s[i].index = i;
        async_issue(&s[i]);
    }
    while (atomic_load(&run->done) < calls) {
        sleep_us(1000);
    }
    uint64_t elapsed = mrd_now_mono_us() - t0;
    if (atomic_load(&run->failed) != MRD_OK) {
        die("async append", atomic_load(&run->failed));
    }
    r.rate = (double) calls * batch * 1e6 / (double) elapsed;
    lat_finish(&run->lat, &r);
    pthread_mutex_destroy(&run->mu);
    free(s);
    free(run);
    return r;
}

static struct result
run_async(mrd_client *c, uint32_t slots, uint32_t streams, uint32_t batch,
    uint32_t calls)
{
    return run_async_ops(c, slots, streams, batch, calls, false);
}

/* Fills the scan stream with n events (once per node). */
static void
scan_fill(mrd_client *c, uint32_t n)
{
    mrd_event_in events[1000];

    for (uint32_t i = 0; i < 1000; i++) {
        events[i] = bench_event();
    }
    for (uint32_t i = 0; i < n; i += 1000) {
        int rv = mrd_append(c, "bench-scan", events, 1000, NULL, NULL);
        if (rv != MRD_OK) {
            die("append (scan fill)", rv);
        }
    }
}

struct scan_part {
    mrd_client *c;
    uint64_t    from;
    uint64_t    to; /* exclusive */
    uint64_t    got;
};

/* Reads [from, to) forward, page after page, as a reader resuming from a
 * position does. */
static void *
scan_part_main(void *arg)
{
    struct scan_part *p   = arg;
    uint64_t          pos = p->from;

    while (pos < p->to) {
        mrd_events *batch;
        uint64_t    want = p->to - pos;
        int         rv   = mrd_read(p->c, "bench-scan", pos, MRD_FORWARD,
            want < MRD_READ_COUNT_MAX ? (uint32_t) want : MRD_READ_COUNT_MAX,
                      &batch);
        if (rv != MRD_OK) {
            die("read", rv);
        }
        size_t k = mrd_events_count(batch);
        MRD_ASSERT(k > 0);
        p->got += k;
        pos = mrd_events_next(batch);
        mrd_events_free(batch);
    }
    return NULL;
}

/* A full forward scan by `readers` readers, each over its own range. */
static struct result
run_scan(mrd_client *c, uint32_t n, uint32_t readers)
{
    struct scan_part parts[8];
    pthread_t        threads[8];
    struct result    r = { 0 };

    MRD_ASSERT(readers >= 1 && readers <= 8);
    uint64_t t0 = mrd_now_mono_us();
    for (uint32_t i = 0; i < readers; i++) {
        parts[i] = (struct scan_part) { c, (uint64_t) n * i / readers,
            (uint64_t) n * (i + 1) / readers, 0 };
        MRD_ASSERT(
            pthread_create(&threads[i], NULL, scan_part_main, &parts[i]) == 0);
    }
    uint64_t got = 0;
    for (uint32_t i = 0; i < readers; i++) {
        pthread_join(threads[i], NULL);
        got += parts[i].got;
    }
    MRD_ASSERT(got == n);
    r.rate = (double) got * 1e6 / (double) (mrd_now_mono_us() - t0);
    return r;
}

/* --------------------------------------------------------- replication -- */

#define REPL_STREAMS 64u
#define REPL_SHARDS 16u /* meridiand's default --shards */
#define REPL_STEADY_RATE 2000u /* events/s */
#define REPL_SPARSE_GAP_MIN_US 300000u
#define REPL_SPARSE_GAP_MAX_US 700000u
/* A node that makes no progress for this long has failed the run. */
#define REPL_STALL_US (60u * 1000000u)

/* Per-run figures, each reported as its median over the runs. */
enum {
    R_BULK_RATE, /* events/s: first write on r1 until r2 holds all */
    R_BULK_APPEND, /* events/s acked by r1 meanwhile */
    R_BULK_BEHIND, /* % not yet on r2 when r1 acked its last */
    R_BULK_AFTER_MS, /* from r1's last ack until r2 held all */
    R_CATCHUP_RATE, /* events/s: r3 started until it holds all */
    R_CATCHUP_S,
    R_STEADY_RATE, /* achieved write rate */
    R_STEADY_ACK_P50, /* r1's append ack, ms */
    R_STEADY_ACK_P99,
    R_STEADY_ACK_P999,
    R_LAG_P50, /* append sent on r1 to tail callback on r2, ms */
    R_LAG_P99,
    R_LAG_P999,
    R_SPARSE_P50,
    R_SPARSE_MAX,
    R_LOST, /* lag events that never reached r2 */
    R_RECORD, /* average stored record, bytes */
    R_BYTES_BULK, /* link bytes per replicated event, everything */
    R_BYTES_BULK_DATA, /* of which r1's pull replies to r2 */
    R_BYTES_STEADY,
    R_IDLE_BPS, /* link bytes/s with nothing to replicate */
    R_BULK_EV_PULL, /* events per pull r1 served r2 during the bulk */
    R_STEADY_ROUND_MS, /* r2's puller: one round of every shard, steady */
    R_MISMATCH, /* |events replicated - events written|, r2 and r3 */
    R_COUNT
};

/* A link dialer for what the client library has no call for (STATS,
 * record sizes), as the admin client of cr. It trusts whichever node
 * answers: the bench measures nodes, it does not check who they are. */
#define RAW_TIMEOUT_MS 30000
#define RAW_FRAME_MAX (MRD_FRAME_SIZE_MAX - LINK_FRAME_OVERHEAD)

static bool
raw_trust_any(void *arg, const uint8_t pk[LINK_KEY_SIZE])
{
    (void) arg;
    (void) pk;
    return true;
}

static struct lk_sock *
raw_open(const struct bench_creds *cr, const char *url)
{
    struct lk_config cfg
        = { .trust = raw_trust_any, .frame_max = RAW_FRAME_MAX };
    struct lk_sock *s;

    memcpy(cfg.cluster_id, cr->cluster_id, sizeof(cfg.cluster_id));
    memcpy(cfg.sk, cr->sk, sizeof(cfg.sk));
    memcpy(
        cfg.pk, cr->sk + LINK_SECRET_KEY_SIZE - LINK_KEY_SIZE, sizeof(cfg.pk));
    int rv = lk_open_dialer(&cfg, &s);
    sodium_memzero(&cfg, sizeof(cfg));
    if (rv != MRD_OK) {
        die("lk_open_dialer", rv);
    }
    nng_socket_set_ms(lk_nng(s), NNG_OPT_RECONNMINT, 100);
    nng_socket_set_ms(lk_nng(s), NNG_OPT_RECONNMAXT, 1000);
    nng_socket_set_size(
        lk_nng(s), NNG_OPT_RECVMAXSZ, LK_RECV_MAX(RAW_FRAME_MAX));
    if (nng_dial(lk_nng(s), url, NULL, 0) != 0) {
        fprintf(stderr, "meridian_bench: cannot dial %s\n", url);
        exit(1);
    }
    return s;
}

static void *
raw_close_main(void *arg)
{
    struct lk_sock *s = arg;
    nng_close(lk_nng(s));
    lk_free(s);
    return NULL;
}

/* Closes s before its node stops. NNG 1.5.2's nng_close() can hang after a
 * dropped connection, so it runs on a thread of its own, left to finish
 * (or not) by itself. */
static void
raw_close(struct lk_sock *s)
{
    pthread_t thread;
    lk_shutdown(s); /* nothing pending, no more callbacks */
    if (pthread_create(&thread, NULL, raw_close_main, s) == 0) {
        pthread_detach(thread);
    }
}

/* Sends req, returns the reply (the caller frees it) with *frame opened on
 * it; exits when the node does not answer MRD_OK. */
static nng_msg *
raw_call(struct lk_sock *s, struct proto_buf *req, struct proto_frame *frame)
{
    struct lk_ctx *ctx;
    nng_aio       *aio;
    nng_msg       *msg = NULL;
    const char    *why = NULL;
    char           refusal[256];

    MRD_ASSERT(proto_buf_status(req) == MRD_OK);
    MRD_ASSERT(lk_ctx_open(s, &ctx) == MRD_OK);
    MRD_ASSERT(nng_aio_alloc(&aio, NULL, NULL) == 0);
    MRD_ASSERT(nng_msg_alloc(&msg, req->len) == 0);
    memcpy(nng_msg_body(msg), req->data, req->len);
    nng_aio_set_msg(aio, msg);
    nng_aio_set_timeout(aio, RAW_TIMEOUT_MS);
    lk_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    int rv = nng_aio_result(aio);
    if (rv != 0) {
        nng_msg_free(nng_aio_get_msg(aio)); /* a failed send keeps it */
        msg = NULL;
    } else {
        nng_aio_set_timeout(aio, RAW_TIMEOUT_MS);
        lk_ctx_recv(ctx, aio);
        nng_aio_wait(aio);
        rv  = nng_aio_result(aio);
        msg = rv == 0 ? nng_aio_get_msg(aio) : NULL;
    }
    nng_aio_free(aio);
    lk_ctx_close(ctx);
    if (msg == NULL
        || proto_reply_open(nng_msg_body(msg), nng_msg_len(msg), frame, &why)
            != MRD_OK
        || frame->status != MRD_OK) {
        lk_refusal(s, refusal, sizeof(refusal));
        fprintf(stderr, "meridian_bench: raw request failed (%s%s%s%s)\n",
            rv != 0 ? nng_strerror(rv) : (why != NULL ? why : "an error reply"),
            refusal[0] != '\0' ? "; " : "", refusal,
            rv == NNG_EPEERAUTH ? "; check the keys" : "");
        exit(1);
    }
    return msg;
}

/* A counter the node does not have (an older build): not available. */
#define STAT_NA UINT64_MAX

/* count node counters from one STATS reply (PROTO_T_STATS), each STAT_NA
 * when the node has no such counter. */
static void
stats_read(
    struct lk_sock *s, const char *const *names, size_t count, uint64_t *values)
{
    struct proto_buf   req;
    struct proto_frame frame;

    proto_buf_init(&req, 256);
    proto_empty_req_encode(&req, PROTO_T_STATS);
    nng_msg *msg = raw_call(s, &req, &frame);
    for (size_t i = 0; i < count; i++) {
        if (proto_stats_rep_find(&frame.body, names[i], &values[i]) != MRD_OK) {
            values[i] = STAT_NA;
        }
    }
    nng_msg_free(msg);
    proto_buf_fini(&req);
}

/* One node counter that every build has: exits when it is missing. */
static uint64_t
stat_get(struct lk_sock *s, const char *name)
{
    uint64_t value;
    stats_read(s, &name, 1, &value);
    if (value == STAT_NA) {
        fprintf(stderr, "meridian_bench: no counter %s\n", name);
        exit(1);
    }
    return value;
}

/* The average size of the records in the first 1,000 log entries of each
 * shard, as stored and as a pull carries them. */
static double
record_size_avg(struct lk_sock *s, uint32_t shards)
{
    struct proto_buf req;
    uint64_t         bytes = 0, count = 0;

    proto_buf_init(&req, 256);
    for (uint32_t shard = 0; shard < shards; shard++) {
        struct proto_log_req    lr = { shard, 0, 1000 };
        struct proto_frame      frame;
        struct proto_events_rep rep;
        struct proto_rd         rd;
        struct proto_str        record;
        uint64_t                position, log_seq;
        const char             *why = NULL;

        proto_buf_reset(&req);
        MRD_ASSERT(proto_log_req_encode(&req, &lr) == MRD_OK);
        nng_msg *msg = raw_call(s, &req, &frame);
        MRD_ASSERT(
            proto_events_rep_decode(&frame.body, PROTO_T_READ_LOG, &rep, &why)
            == MRD_OK);
        proto_events_rep_begin(&rep, &rd);
        while (proto_events_rep_next(&rd, &position, &log_seq, &record)
            == MRD_OK) {
            bytes += record.len;
            count++;
        }
        nng_msg_free(msg);
    }
    proto_buf_fini(&req);
    return count > 0 ? (double) bytes / (double) count : 0;
}

/* The events a node holds: those it replicated, and with `own` those its
 * clients appended on it too. */
static uint64_t
stat_held(struct lk_sock *s, bool own)
{
    const char *names[2] = { "events_replicated", "events_appended" };
    uint64_t    v[2];
    stats_read(s, names, own ? 2 : 1, v);
    if (v[0] == STAT_NA || (own && v[1] == STAT_NA)) {
        fprintf(stderr,
            "meridian_bench: no counter events_replicated or "
            "events_appended\n");
        exit(1);
    }
    return v[0] + (own ? v[1] : 0);
}

/* Waits until the node's events_replicated (plus, with `own`, its
 * events_appended) reaches `want`; exits when it stops moving for
 * REPL_STALL_US. Returns the time it got there. */
static uint64_t
repl_wait(struct lk_sock *s, uint64_t want, const char *who, bool own)
{
    uint64_t last = 0, moved = mrd_now_mono_us();
    for (;;) {
        uint64_t have = stat_held(s, own);
        uint64_t now  = mrd_now_mono_us();
        if (have >= want) {
            return now;
        }
        if (have != last) {
            last  = have;
            moved = now;
        } else if (now - moved > REPL_STALL_US) {
            fprintf(stderr,
                "meridian_bench: replication to %s stalled at %" PRIu64
                " of %" PRIu64 " events\n",
                who, have, want);
            exit(1);
        }
        sleep_us(2000);
    }
}

/* A TCP forwarder that counts bytes: one thread, a few connection pairs.
 * A pulling node dials `port`; each connection is relayed to the node at
 * `target` (0: refused until set). */
#define FWD_PAIRS_MAX 8u
#define FWD_BUF_SIZE (256u * 1024u)

struct fwd {
    int              lfd;
    unsigned         port;
    _Atomic unsigned target;
    _Atomic uint64_t up; /* puller to node: pull requests */
    _Atomic uint64_t down; /* node to puller: pull replies */
    _Atomic bool     stop;
    pthread_t        thread;
    int              fds[FWD_PAIRS_MAX][2]; /* [0] accepted, [1] to node */
    unsigned         pairs;
    char            *buf;
};

static void
fwd_fd_setup(int fd)
{
    int one = 1;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    /* As NNG does: each pull is one small write that must not wait. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* 127.0.0.1:port (0: any free port, for a bind). */
static struct sockaddr_in
loopback_addr(unsigned port)
{
    struct sockaddr_in a = { 0 };
    a.sin_family         = AF_INET;
    a.sin_port           = htons((uint16_t) port);
    a.sin_addr.s_addr    = htonl(INADDR_LOOPBACK);
    return a;
}

static int
fwd_connect(unsigned port)
{
    struct sockaddr_in a  = loopback_addr(port);
    int                fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *) &a, sizeof(a)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static bool
fwd_send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t k = send(fd, p, len, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k <= 0) {
            return false;
        }
        p += k;
        len -= (size_t) k;
    }
    return true;
}

static void
fwd_drop(struct fwd *f, unsigned i)
{
    close(f->fds[i][0]);
    close(f->fds[i][1]);
    f->pairs--;
    f->fds[i][0] = f->fds[f->pairs][0];
    f->fds[i][1] = f->fds[f->pairs][1];
}

/* Relays whatever one side of pair i has; false when the pair is done. */
static bool
fwd_relay(struct fwd *f, unsigned i, int side)
{
    ssize_t k = recv(f->fds[i][side], f->buf, FWD_BUF_SIZE, 0);
    if (k < 0 && errno == EINTR) {
        return true;
    }
    if (k <= 0 || !fwd_send_all(f->fds[i][1 - side], f->buf, (size_t) k)) {
        return false;
    }
    atomic_fetch_add(side == 0 ? &f->up : &f->down, (uint64_t) k);
    return true;
}

static void *
fwd_main(void *arg)
{
    struct fwd   *f = arg;
    struct pollfd pfd[1 + 2 * FWD_PAIRS_MAX];

    while (!atomic_load(&f->stop)) {
        nfds_t n = 0;
        pfd[n++] = (struct pollfd) { f->lfd, POLLIN, 0 };
        for (unsigned i = 0; i < f->pairs; i++) {
            pfd[n++] = (struct pollfd) { f->fds[i][0], POLLIN, 0 };
            pfd[n++] = (struct pollfd) { f->fds[i][1], POLLIN, 0 };
        }
        if (poll(pfd, n, 50) <= 0) {
            continue;
        }
        /* Backwards: dropping pair i moves the last, already served, pair
         * into its place. */
        for (unsigned i = f->pairs; i-- > 0;) {
            for (int side = 0; side < 2; side++) {
                if (pfd[1 + 2 * i + (unsigned) side].revents != 0
                    && !fwd_relay(f, i, side)) {
                    fwd_drop(f, i);
                    break;
                }
            }
        }
        if (pfd[0].revents & POLLIN) {
            int a = accept(f->lfd, NULL, NULL);
            if (a < 0) {
                continue;
            }
            unsigned t = atomic_load(&f->target);
            int b = t != 0 && f->pairs < FWD_PAIRS_MAX ? fwd_connect(t) : -1;
            if (b < 0) {
                close(a);
                continue;
            }
            fwd_fd_setup(a);
            fwd_fd_setup(b);
            f->fds[f->pairs][0] = a;
            f->fds[f->pairs][1] = b;
            f->pairs++;
        }
    }
    while (f->pairs > 0) {
        fwd_drop(f, f->pairs - 1);
    }
    return NULL;
}

static void
fwd_start(struct fwd *f)
{
    struct sockaddr_in a   = loopback_addr(0);
    socklen_t          len = sizeof(a);
    int                one = 1;

    memset(f, 0, sizeof(*f));
    f->buf = malloc(FWD_BUF_SIZE);
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (f->buf == NULL || f->lfd < 0
        || setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0
        || bind(f->lfd, (struct sockaddr *) &a, sizeof(a)) != 0
        || listen(f->lfd, 16) != 0
        || getsockname(f->lfd, (struct sockaddr *) &a, &len) != 0) {
        perror("meridian_bench: forwarder");
        exit(1);
    }
    fcntl(f->lfd, F_SETFD, FD_CLOEXEC);
    f->port = ntohs(a.sin_port);
    MRD_ASSERT(pthread_create(&f->thread, NULL, fwd_main, f) == 0);
}

static void
fwd_stop(struct fwd *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->lfd);
    free(f->buf);
}

static uint64_t
fwd_bytes(struct fwd *a, struct fwd *b)
{
    return atomic_load(&a->up) + atomic_load(&a->down) + atomic_load(&b->up)
        + atomic_load(&b->down);
}

static unsigned
url_port(const char *url)
{
    const char *colon = strrchr(url, ':');
    MRD_ASSERT(colon != NULL);
    return (unsigned) atoi(colon + 1);
}

/* Starts a replicating node: id, region, and its peers list, with the
 * keys of cr (creds_make: its keyring names every peer's key). */
static void
repl_node_start(struct node_proc *n, const char *base,
    const struct bench_creds *cr, unsigned id, const char *region,
    const char *peers)
{
    char key[700], id_text[16];
    creds_node_key(cr->dir, id, key, sizeof(key));
    snprintf(id_text, sizeof(id_text), "%u", id);
    const char *extra[]
        = { "--region", region, "--cluster-id", BENCH_CLUSTER_ID, "--peers",
              peers, "--key", key, "--keyring", cr->keyring_file, NULL };
    snprintf(n->dir, sizeof(n->dir), "%s/%s", base, region);
    node_spawn(n, id_text, "tcp://127.0.0.1:0", extra);
}

/* The lag workloads: events carry their send time (monotonic us; sender
 * and tails are both in this process) and a phase byte in their data;
 * tails on r2 take them. */
enum { LAG_STEADY = 1, LAG_SPARSE = 2, LAG_PHASES = 3 };

/* The tails' clients, each with REPL_STREAMS / REPL_TAIL_CLIENTS tails. A
 * client's link to a node has at most LK_INFLIGHT_MAX requests on the
 * wire and queues the rest behind them: with more parked long-polls than
 * that on one client, a tail's next poll waits for another tail's poll to
 * end (up to its 10 s wait), and the lag measured would be that queue's. */
#define REPL_TAIL_CLIENTS 4u
_Static_assert(REPL_STREAMS % REPL_TAIL_CLIENTS == 0
        && REPL_STREAMS / REPL_TAIL_CLIENTS < LK_INFLIGHT_MAX,
    "every tail of a client has a request slot on its link");

struct repl_lag {
    mrd_client      *clients[REPL_TAIL_CLIENTS];
    pthread_mutex_t  mu;
    struct lat       lag[LAG_PHASES];
    struct lat       ack;
    _Atomic uint32_t arrived[LAG_PHASES];
    _Atomic uint32_t acked;
    _Atomic int      failed;
};

struct repl_send {
    struct repl_lag *rl;
    uint64_t         sent_us;
};

static int
repl_tail_cb(void *arg, const mrd_event *ev)
{
    struct repl_lag *rl  = arg;
    uint64_t         now = mrd_now_mono_us();

    if (ev->data_size >= 9) {
        const uint8_t *d     = ev->data;
        uint64_t       sent  = mrd_be64_get(d);
        unsigned       phase = d[8] < LAG_PHASES ? d[8] : 0;
        pthread_mutex_lock(&rl->mu);
        lat_add(&rl->lag[phase], now > sent ? now - sent : 0);
        pthread_mutex_unlock(&rl->mu);
        atomic_fetch_add(&rl->arrived[phase], 1);
    }
    return 0;
}

static void
repl_ack_cb(void *arg, int err, const mrd_append_result *result)
{
    struct repl_send *s = arg;
    (void) result;
    if (err != MRD_OK) {
        atomic_store(&s->rl->failed, err);
    }
    pthread_mutex_lock(&s->rl->mu);
    lat_add(&s->rl->ack, mrd_now_mono_us() - s->sent_us);
    pthread_mutex_unlock(&s->rl->mu);
    atomic_fetch_add(&s->rl->acked, 1);
}

/* Appends n single events to r1 over REPL_STREAMS streams, the next one
 * gap_min..gap_max us after the previous was due (never skipped: a late
 * one goes at once). Returns the achieved rate. */
static double
repl_write_paced(mrd_client *c, struct repl_lag *rl, uint32_t n, uint8_t phase,
    uint32_t gap_min_us, uint32_t gap_max_us)
{
    struct repl_send *sends = calloc(n, sizeof(*sends));
    uint8_t           data[BENCH_EVENT_SIZE];
    unsigned          seed = 42;

    MRD_ASSERT(sends != NULL);
    atomic_store(&rl->acked, 0);
    uint64_t t0 = mrd_now_mono_us(), due = t0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t now = mrd_now_mono_us();
        if (due > now) {
            sleep_us((long) (due - now));
            now = mrd_now_mono_us();
        }
        char stream[32];
        snprintf(stream, sizeof(stream), "repl-lag-%u", i % REPL_STREAMS);
        memcpy(data, bench_event_data, sizeof(data));
        mrd_be64_put(data, now);
        data[8]          = phase;
        mrd_event_in ev  = bench_event();
        ev.data          = data;
        sends[i].rl      = rl;
        sends[i].sent_us = now;
        int rv;
        /* A slow r1 can hold MRD_CLIENT_INFLIGHT_MAX appends: wait for
         * room, the wait counting as lag. */
        while ((rv = mrd_append_async(
                    c, stream, &ev, 1, NULL, repl_ack_cb, &sends[i]))
            == MRD_EFULL) {
            sleep_us(1000);
        }
        if (rv != MRD_OK) {
            die("append (lag)", rv);
        }
        due += gap_min_us
            + (gap_max_us > gap_min_us
                    ? (uint32_t) rand_r(&seed) % (gap_max_us - gap_min_us)
                    : 0);
    }
    double rate
        = n > 1 ? (n - 1) * 1e6 / (double) (sends[n - 1].sent_us - t0) : 0;
    while (atomic_load(&rl->acked) < n) {
        sleep_us(1000);
    }
    if (atomic_load(&rl->failed) != MRD_OK) {
        die("append (lag)", atomic_load(&rl->failed));
    }
    free(sends);
    return rate;
}

/* Waits until the tails saw n events of the phase, or saw nothing new for
 * 30 s; returns how many never came. */
static uint32_t
repl_lag_wait(struct repl_lag *rl, uint8_t phase, uint32_t n)
{
    uint32_t last  = 0;
    uint64_t moved = mrd_now_mono_us();
    for (;;) {
        uint32_t got = atomic_load(&rl->arrived[phase]);
        if (got >= n) {
            return 0;
        }
        if (got != last) {
            last  = got;
            moved = mrd_now_mono_us();
        } else if (mrd_now_mono_us() - moved > 30000000u) {
            fprintf(stderr,
                "meridian_bench: WARNING: %u of %u lag events never reached "
                "r2\n",
                n - got, n);
            return n - got;
        }
        sleep_us(2000);
    }
}

/* Tails on clients of the nodes at urls (home region `region`, NULL:
 * none), one per lag stream, parked before this returns; room for
 * `steady` and `sparse` lags and their acks. */
static struct repl_lag *
repl_lag_start(const struct bench_creds *cr, const char *const *urls,
    size_t count, const char *region, uint32_t steady, uint32_t sparse,
    mrd_tail **tails)
{
    struct repl_lag *rl = calloc(1, sizeof(*rl));
    MRD_ASSERT(rl != NULL);
    for (unsigned i = 0; i < REPL_TAIL_CLIENTS; i++) {
        rl->clients[i] = client_open_region(cr, urls, count, region);
    }
    pthread_mutex_init(&rl->mu, NULL);
    lat_init(&rl->lag[0], 1);
    lat_init(&rl->lag[LAG_STEADY], steady);
    lat_init(&rl->lag[LAG_SPARSE], sparse > 0 ? sparse : 1);
    lat_init(&rl->ack, steady + sparse);
    for (unsigned i = 0; i < REPL_STREAMS; i++) {
        char stream[32];
        snprintf(stream, sizeof(stream), "repl-lag-%u", i);
        int rv = mrd_tail_start(rl->clients[i % REPL_TAIL_CLIENTS], stream, 0,
            repl_tail_cb, NULL, rl, &tails[i]);
        if (rv != MRD_OK) {
            die("mrd_tail_start", rv);
        }
    }
    sleep_us(500000); /* every tail parked */
    return rl;
}

/* n single appends on c at REPL_STEADY_RATE, until the tails saw them or
 * gave up (*lost: how many never came). Returns the achieved rate. */
static double
repl_lag_steady(mrd_client *c, struct repl_lag *rl, uint32_t n, uint32_t *lost)
{
    double rate = repl_write_paced(c, rl, n, LAG_STEADY,
        1000000u / REPL_STEADY_RATE, 1000000u / REPL_STEADY_RATE);
    *lost       = repl_lag_wait(rl, LAG_STEADY, n);
    return rate;
}

/* The acks so far into *ack; room for `next` more. */
static void
repl_lag_acks(struct repl_lag *rl, struct result *ack, uint32_t next)
{
    pthread_mutex_lock(&rl->mu);
    lat_finish(&rl->ack, ack);
    lat_init(&rl->ack, next > 0 ? next : 1);
    pthread_mutex_unlock(&rl->mu);
}

/* Closes the tails and frees rl: the steady lags into *steady, the sparse
 * ones into *sparse and *sparse_max. */
static void
repl_lag_end(struct repl_lag *rl, mrd_tail **tails, struct result *steady,
    struct result *sparse, double *sparse_max)
{
    struct result rest;
    for (unsigned i = 0; i < REPL_STREAMS; i++) {
        mrd_tail_close(tails[i]);
    }
    for (unsigned i = 0; i < REPL_TAIL_CLIENTS; i++) {
        mrd_client_close(rl->clients[i]);
    }
    lat_finish(&rl->lag[LAG_STEADY], steady);
    *sparse_max = lat_max(&rl->lag[LAG_SPARSE]);
    lat_finish(&rl->lag[LAG_SPARSE], sparse);
    lat_finish(&rl->lag[0], &rest);
    lat_finish(&rl->ack, &rest);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

/* One replication run: r1 and r2 each pull from the other through a
 * counting forwarder; r3 comes and goes for the catch-up. */
static void
repl_run(const char *base, const struct bench_creds *cr, unsigned run,
    const struct bench_sizes *z, double *out)
{
    char             dir[560], peers[400];
    struct fwd       to1, to2; /* r2 pulls r1 through to1, r1 pulls r2 */
    struct node_proc n1, n2, n3;
    double           idle_s = z->repl_events >= 100000 ? 3 : 2;

    snprintf(dir, sizeof(dir), "%s/repl-%u", base, run);
    dir_make(dir);
    fwd_start(&to1);
    fwd_start(&to2);
    snprintf(peers, sizeof(peers), "2@tcp://127.0.0.1:%u", to2.port);
    repl_node_start(&n1, dir, cr, 1, "r1", peers);
    atomic_store(&to1.target, url_port(n1.url));
    snprintf(peers, sizeof(peers), "1@tcp://127.0.0.1:%u", to1.port);
    repl_node_start(&n2, dir, cr, 2, "r2", peers);
    atomic_store(&to2.target, url_port(n2.url));
    struct lk_sock *s1 = raw_open(cr, n1.url), *s2 = raw_open(cr, n2.url);
    mrd_client     *c1 = client_open(cr, n1.url);

    /* Idle: both pullers backed off to their longest sleep. */
    sleep_us(1500000);
    uint64_t b0 = fwd_bytes(&to1, &to2), t0 = mrd_now_mono_us();
    sleep_us((long) (idle_s * 1e6));
    out[R_IDLE_BPS] = (double) (fwd_bytes(&to1, &to2) - b0) * 1e6
        / (double) (mrd_now_mono_us() - t0);

    /* Bulk: 100-event batches, 16 in flight, 64 streams, into r1. */
    uint32_t n     = z->repl_events;
    uint64_t data0 = atomic_load(&to1.down);
    uint64_t p0    = stat_get(s1, "pulls_served");
    b0             = fwd_bytes(&to1, &to2);
    t0             = mrd_now_mono_us();
    run_async(c1, 16, 64, BENCH_BATCH, n / BENCH_BATCH);
    uint64_t t_ack         = mrd_now_mono_us();
    uint64_t at_ack        = stat_get(s2, "events_replicated");
    uint64_t t_all         = repl_wait(s2, n, "r2", false);
    out[R_BULK_RATE]       = n * 1e6 / (double) (t_all - t0);
    out[R_BULK_APPEND]     = n * 1e6 / (double) (t_ack - t0);
    out[R_BULK_BEHIND]     = 100.0 * (double) (n - at_ack) / n;
    out[R_BULK_AFTER_MS]   = (double) (t_all - t_ack) / 1000.0;
    out[R_BYTES_BULK]      = (double) (fwd_bytes(&to1, &to2) - b0) / n;
    out[R_BYTES_BULK_DATA] = (double) (atomic_load(&to1.down) - data0) / n;
    out[R_BULK_EV_PULL]    = n / (double) (stat_get(s1, "pulls_served") - p0);
    out[R_RECORD]          = record_size_avg(s1, REPL_SHARDS);

    /* Catch-up: a fresh r3 pulls everything from r1. */
    snprintf(peers, sizeof(peers), "1@%s", n1.url);
    t0 = mrd_now_mono_us();
    repl_node_start(&n3, dir, cr, 3, "r3", peers);
    struct lk_sock *s3  = raw_open(cr, n3.url);
    uint64_t        t3  = repl_wait(s3, n, "r3", false);
    out[R_CATCHUP_RATE] = n * 1e6 / (double) (t3 - t0);
    out[R_CATCHUP_S]    = (double) (t3 - t0) / 1e6;
    uint64_t held       = stat_get(s3, "events_replicated");
    out[R_MISMATCH]     = held > n ? (double) (held - n) : 0;
    if (held != n) {
        fprintf(stderr,
            "meridian_bench: WARNING: r3 replicated %" PRIu64 " events of %u\n",
            held, n);
    }
    raw_close(s3);
    node_stop(&n3);

    /* Lag: tails on clients of r2 (one per stream), single appends on r1. */
    mrd_tail        *tails[REPL_STREAMS];
    const char      *u2 = n2.url;
    struct repl_lag *rl = repl_lag_start(
        cr, &u2, 1, NULL, z->repl_steady_events, z->repl_sparse_events, tails);
    uint32_t lost;
    b0                 = fwd_bytes(&to1, &to2);
    p0                 = stat_get(s1, "pulls_served");
    t0                 = mrd_now_mono_us();
    out[R_STEADY_RATE] = repl_lag_steady(c1, rl, z->repl_steady_events, &lost);
    /* r3 is gone: r1 serves r2's pulls only. */
    out[R_STEADY_ROUND_MS] = (double) (mrd_now_mono_us() - t0) / 1000.0
        * REPL_SHARDS / (double) (stat_get(s1, "pulls_served") - p0);
    out[R_BYTES_STEADY] = lost < z->repl_steady_events
        ? (double) (fwd_bytes(&to1, &to2) - b0) / (z->repl_steady_events - lost)
        : 0;
    struct result r     = { 0 }, sparse;
    repl_lag_acks(rl, &r, z->repl_sparse_events);
    pcts_put(&out[R_STEADY_ACK_P50], &r);
    /* Sparse: the pullers back off between events. */
    sleep_us(1000000);
    repl_write_paced(c1, rl, z->repl_sparse_events, LAG_SPARSE,
        REPL_SPARSE_GAP_MIN_US, REPL_SPARSE_GAP_MAX_US);
    lost += repl_lag_wait(rl, LAG_SPARSE, z->repl_sparse_events);
    repl_lag_end(rl, tails, &r, &sparse, &out[R_SPARSE_MAX]);
    pcts_put(&out[R_LAG_P50], &r);
    out[R_SPARSE_P50] = sparse.p50;
    out[R_LOST]       = lost;

    /* Exactly once: r2 holds every event r1 took, no more (its tails may
     * have seen fewer when lag events were lost). */
    uint64_t want
        = (uint64_t) n + z->repl_steady_events + z->repl_sparse_events;
    held = stat_get(s2, "events_replicated");
    out[R_MISMATCH]
        += held > want ? (double) (held - want) : (double) (want - held);
    if (held != want) {
        fprintf(stderr,
            "meridian_bench: WARNING: r2 replicated %" PRIu64
            " events of %" PRIu64 " written\n",
            held, want);
    }
    mrd_client_close(c1);
    raw_close(s1);
    raw_close(s2);
    node_stop(&n2);
    node_stop(&n1);
    fwd_stop(&to1);
    fwd_stop(&to2);
    rm_rf(dir);
}

/* ------------------------------------------------------------- regions -- */

/* The topology cluster: nodes 1, 2 in r1 and 3, 4 in r2, each holding every
 * shard, at the addresses `meridianctl cluster init` gave them. */
#define REG_NODES 4u
#define REG_PER_REGION 2u
/* After a warm-up, before anything is counted: every node sees every other
 * as live and the designated pullers are settled (as antientropy_test). */
#define REG_WARM_SETTLE_US 1500000u
/* After the bulk converged, before the counters are read: pulls still in
 * flight land. */
#define REG_BULK_SETTLE_US 1000000u

/* Per-run figures, each reported as its median over the runs; -1: not
 * available (an older meridiand without the pull_* counters). */
enum {
    G_BULK_RATE, /* events/s: first write on r1 until both r2 nodes hold all */
    G_BULK_APPEND, /* events/s acked by r1 meanwhile */
    G_BULK_AFTER_MS, /* from r1's last ack until both r2 nodes held all */
    G_R1_SERVED, /* events r1's nodes served (events_read), per event */
    G_R1_LOCAL, /* of which to each other (r1's pull_events_local) */
    G_COPIES, /* copies per remote region per event: the difference */
    G_ALL_SERVED, /* events all four nodes served, per event */
    G_R2_EVENTS, /* r2's pull_events_remote per event */
    G_R2_BYTES, /* r2's pull_bytes_remote per event */
    G_RECORD, /* average stored record, bytes */
    G_STEADY_RATE,
    G_STEADY_ACK_P50,
    G_STEADY_ACK_P99,
    G_STEADY_ACK_P999,
    G_LAG_P50, /* append sent on r1 to tail callback on r2, ms */
    G_LAG_P99,
    G_LAG_P999,
    G_LOST, /* lag events that never reached r2 */
    G_MISMATCH, /* |events held - events written|, over the four nodes */
    G_COUNT
};

/* The counters read around the bulk, in one STATS request per node. */
enum {
    K_READ,
    K_REPLICATED,
    K_APPENDED,
    K_PULL_EV_LOCAL,
    K_PULL_EV_REMOTE,
    K_PULL_B_REMOTE,
    K_COUNT
};
static const char *const reg_counters[K_COUNT]
    = { "events_read", "events_replicated", "events_appended",
          "pull_events_local", "pull_events_remote", "pull_bytes_remote" };

struct reg_cluster {
    char               dir[560];
    struct node_proc   n[REG_NODES];
    struct lk_sock    *s[REG_NODES];
    struct bench_creds creds; /* cluster init's admin.key and keyring */
    char               who[REG_NODES][32];
    uint64_t           snap[2][REG_NODES][K_COUNT]; /* before, after */
};

static bool
port_free(unsigned port)
{
    struct sockaddr_in a  = loopback_addr(port);
    int                fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

/* The first of `count` consecutive free loopback ports (a new range each
 * call: the last cluster's ports may still be in TIME_WAIT). */
static unsigned
ports_free(unsigned count)
{
    static unsigned salt;
    for (unsigned t = 0; t < 400; t++, salt++) {
        unsigned base = 20000 + ((unsigned) getpid() * 11 + salt * 37) % 30000;
        bool     ok   = true;
        for (unsigned i = 0; i < count && ok; i++) {
            ok = port_free(base + i);
        }
        if (ok) {
            salt++;
            return base;
        }
    }
    fprintf(stderr, "meridian_bench: no %u free loopback ports\n", count);
    exit(1);
}

/* Runs meridianctl with args (NULL-terminated), its output in `log`, which
 * is kept only when it fails (and then the bench exits). */
static void
ctl_run(const char *const *args, const char *log)
{
    const char *argv[NODE_ARGS_MAX + 2];
    size_t      k      = 0;
    int         status = -1;

    argv[k++] = "meridianctl";
    for (size_t i = 0; args[i] != NULL; i++) {
        MRD_ASSERT(k <= NODE_ARGS_MAX);
        argv[k++] = args[i];
    }
    argv[k]   = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_CREAT | O_WRONLY | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        /* execv takes char *const[]; it does not write to the strings. */
        execv(bench_meridianctl(), (char *const *) (uintptr_t) argv);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)
        || WEXITSTATUS(status) != 0) {
        fprintf(stderr,
            "meridian_bench: %s %s %s did not succeed (exit %d; 127: not "
            "run); see %s\n",
            bench_meridianctl(), args[0], args[1],
            pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1, log);
        exit(1);
    }
    unlink(log);
}

/* `meridianctl cluster init` for 2 regions x 2 nodes, rf 2, then the four
 * nodes on the topology's addresses. */
static void
reg_start(struct reg_cluster *cl, const char *base, unsigned run)
{
    char cdir[600], topo[640], ring[640], admin[640], log[600], port[16];
    char shards[16];

    snprintf(cl->dir, sizeof(cl->dir), "%s/regions-%u", base, run);
    dir_make(cl->dir);
    unsigned p0 = ports_free(REG_NODES);
    snprintf(port, sizeof(port), "%u", p0);
    snprintf(cdir, sizeof(cdir), "%s/c", cl->dir);
    snprintf(log, sizeof(log), "%s/ctl.log", cl->dir);
    snprintf(shards, sizeof(shards), "%u", REPL_SHARDS);
    const char *init[] = { "cluster", "init", "--dir", cdir, "--regions",
        "r1,r2", "--nodes-per-region", "2", "--replicas-per-region", "2",
        "--shards", shards, "--base-port", port, NULL };
    ctl_run(init, log);
    snprintf(topo, sizeof(topo), "%s/topology.signed", cdir);
    snprintf(ring, sizeof(ring), "%s/keyring", cdir);
    snprintf(admin, sizeof(admin), "%s/admin.key", cdir);
    /* The topology's admin key is an admin client of every node. */
    creds_load(&cl->creds, admin, ring);
    for (unsigned i = 0; i < REG_NODES; i++) {
        char id[16], key[700];
        snprintf(id, sizeof(id), "%u", i + 1);
        snprintf(key, sizeof(key), "%s/node-%u/node.key", cdir, i + 1);
        const char *extra[]
            = { "--topology", topo, "--key", key, "--keyring", ring, NULL };
        snprintf(
            cl->n[i].dir, sizeof(cl->n[i].dir), "%s/node-%u", cl->dir, i + 1);
        snprintf(cl->who[i], sizeof(cl->who[i]), "node %u (r%u)", i + 1,
            1 + i / REG_PER_REGION);
        node_spawn(&cl->n[i], id, NULL, extra);
        if (url_port(cl->n[i].url) != p0 + i) {
            fprintf(stderr,
                "meridian_bench: node %u serves %s, not the topology's port "
                "%u\n",
                i + 1, cl->n[i].url, p0 + i);
            exit(1);
        }
        cl->s[i] = raw_open(&cl->creds, cl->n[i].url);
    }
}

static void
reg_snap(struct reg_cluster *cl, unsigned which)
{
    for (unsigned i = 0; i < REG_NODES; i++) {
        stats_read(cl->s[i], reg_counters, K_COUNT, cl->snap[which][i]);
    }
}

/* The growth of counter k, summed over nodes [from, to), from snapshot 0 to
 * snapshot 1; -1 when a node has no such counter. */
static double
reg_delta(const struct reg_cluster *cl, unsigned from, unsigned to, unsigned k)
{
    double sum = 0;
    for (unsigned i = from; i < to; i++) {
        if (cl->snap[0][i][k] == STAT_NA || cl->snap[1][i][k] == STAT_NA) {
            return -1;
        }
        sum += (double) (cl->snap[1][i][k] - cl->snap[0][i][k]);
    }
    return sum;
}

/* Waits until each node holds `add` more events than at snapshot 0; the
 * time the r2 nodes (the last of them) got there. */
static uint64_t
reg_wait(struct reg_cluster *cl, uint64_t add)
{
    uint64_t t_r2 = 0;
    for (unsigned i = REG_NODES; i-- > 0;) {
        uint64_t t = repl_wait(cl->s[i],
            cl->snap[0][i][K_REPLICATED] + cl->snap[0][i][K_APPENDED] + add,
            cl->who[i], true);
        t_r2       = i >= REG_PER_REGION && t > t_r2 ? t : t_r2;
    }
    return t_r2;
}

/* One regions run: bulk from r1 with the copies it took, then the steady
 * lag from r1 to a tail on r2. */
static void
regions_run(
    const char *base, unsigned run, const struct bench_sizes *z, double *out)
{
    struct reg_cluster *cl = calloc(1, sizeof(*cl));
    MRD_ASSERT(cl != NULL);
    reg_start(cl, base, run);
    const char *r1[] = { cl->n[0].url, cl->n[1].url };
    const char *r2[] = { cl->n[2].url, cl->n[3].url };
    mrd_client *c1   = client_open_region(&cl->creds, r1, REG_PER_REGION, "r1");
    mrd_client *c2   = client_open_region(&cl->creds, r2, REG_PER_REGION, "r2");

    /* Warm-up: an event from each region on every node. */
    mrd_event_in ev      = bench_event();
    mrd_client  *warm[2] = { c1, c2 };
    reg_snap(cl, 0);
    for (unsigned i = 0; i < 2; i++) {
        int rv = mrd_append(warm[i], "regions-warm-up", &ev, 1, NULL, NULL);
        if (rv != MRD_OK) {
            die("append (warm-up)", rv);
        }
    }
    reg_wait(cl, 2);
    sleep_us(REG_WARM_SETTLE_US);

    /* Bulk: 100-event batches, 16 in flight, 64 streams, into r1. */
    uint32_t n = z->repl_events;
    reg_snap(cl, 0);
    uint64_t t0 = mrd_now_mono_us();
    run_async(c1, 16, 64, BENCH_BATCH, n / BENCH_BATCH);
    uint64_t t_ack = mrd_now_mono_us();
    uint64_t t_r2  = reg_wait(cl, n);
    sleep_us(REG_BULK_SETTLE_US);
    reg_snap(cl, 1);
    out[G_BULK_RATE]     = n * 1e6 / (double) (t_r2 - t0);
    out[G_BULK_APPEND]   = n * 1e6 / (double) (t_ack - t0);
    out[G_BULK_AFTER_MS] = t_r2 > t_ack ? (double) (t_r2 - t_ack) / 1000.0 : 0;
    /* Nothing reads but the pullers: what r1 served, less what r1's nodes
     * pulled from each other, went to r2. */
    double served     = reg_delta(cl, 0, REG_PER_REGION, K_READ);
    double local      = reg_delta(cl, 0, REG_PER_REGION, K_PULL_EV_LOCAL);
    out[G_R1_SERVED]  = served / n;
    out[G_R1_LOCAL]   = local < 0 ? -1 : local / n;
    out[G_COPIES]     = (served - (local < 0 ? n : local)) / n;
    out[G_ALL_SERVED] = reg_delta(cl, 0, REG_NODES, K_READ) / n;
    double r2_events
        = reg_delta(cl, REG_PER_REGION, REG_NODES, K_PULL_EV_REMOTE);
    double r2_bytes = reg_delta(cl, REG_PER_REGION, REG_NODES, K_PULL_B_REMOTE);
    out[G_R2_EVENTS] = r2_events < 0 ? -1 : r2_events / n;
    out[G_R2_BYTES]  = r2_bytes < 0 ? -1 : r2_bytes / n;
    out[G_RECORD]    = record_size_avg(cl->s[0], REPL_SHARDS);

    /* Steady lag: tails on clients of r2, single appends on r1's. */
    mrd_tail        *tails[REPL_STREAMS];
    struct repl_lag *rl = repl_lag_start(
        &cl->creds, r2, REG_PER_REGION, "r2", z->repl_steady_events, 0, tails);
    struct result r, unused;
    double        unused_max;
    uint32_t      lost;
    out[G_STEADY_RATE] = repl_lag_steady(c1, rl, z->repl_steady_events, &lost);
    repl_lag_acks(rl, &r, 0);
    pcts_put(&out[G_STEADY_ACK_P50], &r);
    repl_lag_end(rl, tails, &r, &unused, &unused_max);
    pcts_put(&out[G_LAG_P50], &r);
    out[G_LOST] = lost;

    /* Exactly once: every node holds every event r1 took since the warm-up,
     * no more. */
    if (lost == 0) {
        reg_wait(cl, (uint64_t) n + z->repl_steady_events);
    }
    for (unsigned i = 0; i < REG_NODES; i++) {
        uint64_t want = cl->snap[0][i][K_REPLICATED]
            + cl->snap[0][i][K_APPENDED] + n + z->repl_steady_events;
        uint64_t held = stat_held(cl->s[i], true);
        if (held != want) {
            fprintf(stderr,
                "meridian_bench: WARNING: %s holds %" PRIu64
                " events of %" PRIu64 "\n",
                cl->who[i], held, want);
            out[G_MISMATCH] += held > want ? (double) (held - want)
                                           : (double) (want - held);
        }
    }
    mrd_client_close(c1);
    mrd_client_close(c2);
    for (unsigned i = REG_NODES; i-- > 0;) {
        raw_close(cl->s[i]);
        node_stop(&cl->n[i]);
    }
    sodium_memzero(&cl->creds, sizeof(cl->creds));
    rm_rf(cl->dir);
    free(cl);
}

/* ---------------------------------------------------------------- main -- */

static void
parse_args(int argc, char **argv, struct bench_opts *o)
{
    o->runs = 3;
    snprintf(o->dir, sizeof(o->dir), "%s",
        getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
            o->runs = (unsigned) atoi(argv[++i]);
        } else if (strcmp(argv[i], "--quick") == 0) {
            o->quick = true;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            snprintf(o->dir, sizeof(o->dir), "%s", argv[++i]);
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
            snprintf(o->only, sizeof(o->only), "%s", argv[++i]);
        } else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc) {
            snprintf(o->csv, sizeof(o->csv), "%s", argv[++i]);
        } else {
            printf("Usage: meridian_bench [--runs N (1..%u, default 3)] "
                   "[--quick] [--only "
                   "lone|inflight|batch|state|scan|repl|regions] "
                   "[--dir DIR (default $TMPDIR or /tmp)] [--csv FILE]\n",
                BENCH_RUNS_MAX);
            exit(strcmp(argv[i], "--help") == 0 ? 0 : 2);
        }
    }
    if (o->runs < 1 || o->runs > BENCH_RUNS_MAX) {
        fprintf(
            stderr, "meridian_bench: --runs must be 1..%u\n", BENCH_RUNS_MAX);
        exit(2);
    }
}

static bool
bench_wants(const struct bench_opts *o, const char *name)
{
    return o->only[0] == '\0' || strcmp(o->only, name) == 0;
}

enum {
    W_FSYNC,
    W_LMDB,
    W_LONE,
    W_INFLIGHT_1,
    W_INFLIGHT_64,
    W_INFLIGHT_256,
    W_BATCH_16,
    W_BATCH_64,
    W_SCAN_1,
    W_SCAN_4,
    W_STATE_PLAIN,
    W_STATE_OPS,
    W_STATE_BATCH_PLAIN,
    W_STATE_BATCH_OPS,
    W_COUNT
};
static const char *w_names[W_COUNT] = {
    "baseline: fdatasync 4 KiB",
    "baseline: raw LMDB, 1000 ev/txn",
    "append 1 ev, 1 client",
    "append 1 ev, 64 in flight, 1 stream",
    "append 1 ev, 64 in flight, 64 streams",
    "append 1 ev, 256 in flight, 64 str.",
    "100-ev batches, 16 in flight",
    "100-ev batches, 64 in flight",
    "read scan 1M events, 1 reader",
    "read scan 1M events, 4 readers",
    "state: 1 ev, 64 in flight, no ops",
    "state: 1 ev, 64 in flight, 1 counter op",
    "state: 100-ev batches, no ops",
    "state: 100-ev batches, 1 counter op/ev",
};

static double
best(const struct result *m, int a, int b)
{
    return m[a].rate > m[b].rate ? m[a].rate : m[b].rate;
}

static void
report(
    const struct bench_opts *o, struct result *m, const struct bench_sizes *z)
{
    printf("\n%-40s %12s %9s %9s %9s\n", "workload (256-byte events)",
        "events/s", "p50 ms", "p99 ms", "p999 ms");
    for (int w = 0; w < W_COUNT; w++) {
        printf("%-40s %12.0f %9.3f %9.3f %9.3f\n", w_names[w], m[w].rate,
            m[w].p50, m[w].p99, m[w].p999);
    }
    double sync2 = 2 * m[W_FSYNC].p50;
    double batch = best(m, W_BATCH_16, W_BATCH_64);
    double scan  = best(m, W_SCAN_1, W_SCAN_4);
    printf("\ntargets (medians of %u runs%s):\n", o->runs,
        o->quick ? ", --quick sizes" : "");
    printf("  64 in flight >= 50000 ev/s:   %.0f (1 stream), %.0f (64 "
           "streams): %s\n",
        m[W_INFLIGHT_1].rate, m[W_INFLIGHT_64].rate,
        m[W_INFLIGHT_64].rate >= 50000 ? "met" : "MISSED");
    printf("  100-ev batches >= 500000:      %.0f = %.2f x raw LMDB: %s\n",
        batch, batch / m[W_LMDB].rate, batch >= 500000 ? "met" : "MISSED");
    printf("  lone p99 <= 2 fdatasync + 1ms: %.3f <= %.3f ms: %s (p50 = %.2f "
           "fdatasyncs)\n",
        m[W_LONE].p99, sync2 + 1, m[W_LONE].p99 <= sync2 + 1 ? "met" : "MISSED",
        m[W_LONE].p50 / m[W_FSYNC].p50);
    printf("  read scan >= 2000000:          %.0f: %s\n", scan,
        scan >= 2000000 ? "met" : "MISSED");
    if (m[W_STATE_PLAIN].rate > 0) {
        double one = 1 - m[W_STATE_OPS].rate / m[W_STATE_PLAIN].rate;
        double bat
            = 1 - m[W_STATE_BATCH_OPS].rate / m[W_STATE_BATCH_PLAIN].rate;
        printf("  state costs <= 20%% of appends: %.1f%% (1 ev, 64 in "
               "flight), %.1f%% (100-ev batches): %s\n",
            100 * one, 100 * bat, one <= 0.2 && bat <= 0.2 ? "met" : "MISSED");
    }
    printf("sizes: lone %u, in flight %u, batches %u events, scan %u "
           "events\n",
        z->lone_appends, z->inflight_appends, z->batch_events, z->scan_events);
    if (o->csv[0] != '\0') {
        FILE *f = fopen(o->csv, "w");
        if (f == NULL) {
            perror(o->csv);
            exit(1);
        }
        fprintf(f, "workload,events_per_s,p50_ms,p99_ms,p999_ms\n");
        for (int w = 0; w < W_COUNT; w++) {
            fprintf(f, "\"%s\",%.0f,%.3f,%.3f,%.3f\n", w_names[w], m[w].rate,
                m[w].p50, m[w].p99, m[w].p999);
        }
        fclose(f);
    }
}

/* The head of a replication table and its first rows: the bulk rate and
 * r1's appends meanwhile. */
static void
report_bulk_rows(
    const char *title, const char *bulk, double rate, double appended)
{
    printf("\n%-40s %12s %9s %9s %9s\n", title, "events/s", "p50 ms", "p99 ms",
        "p999 ms");
    printf("%-40s %12.0f\n", bulk, rate);
    printf("%-40s %12.0f\n", "  r1 appends acked meanwhile", appended);
}

/* v: the run figures from the steady rate on, the same in both families. */
_Static_assert(R_STEADY_ACK_P50 == R_STEADY_RATE + 1
        && R_LAG_P50 == R_STEADY_RATE + 4
        && G_STEADY_ACK_P50 == G_STEADY_RATE + 1
        && G_LAG_P50 == G_STEADY_RATE + 4,
    "steady figures: rate, ack p50..p999, lag p50..p999");

/* The steady lag row, and r1's acks at that rate. */
static void
report_steady_rows(const char *steady, const double *v)
{
    printf("%-40s %12.0f %9.3f %9.3f %9.3f\n", steady, v[0], v[4], v[5], v[6]);
    printf("%-40s %12s %9.3f %9.3f %9.3f\n", "  r1 append ack at that rate", "",
        v[1], v[2], v[3]);
}

/* The CSV file a family appends its rows to; NULL without --csv. */
static FILE *
csv_append(const struct bench_opts *o)
{
    if (o->csv[0] == '\0') {
        return NULL;
    }
    FILE *f = fopen(o->csv, "a");
    if (f == NULL) {
        perror(o->csv);
        exit(1);
    }
    return f;
}

static void
csv_steady(FILE *f, const char *steady, const double *v)
{
    fprintf(f, "\"%s\",%.0f,%.3f,%.3f,%.3f\n", steady, v[0], v[4], v[5], v[6]);
}

/* The replication figures: a table like the single-node one, then the link
 * and the target. */
static void
report_repl(
    const struct bench_opts *o, const double *r, const struct bench_sizes *z)
{
    char bulk[64], steady[64], sparse[64];
    snprintf(bulk, sizeof(bulk), "repl r1->r2: %u-ev batches, 16 in fl.",
        BENCH_BATCH);
    snprintf(steady, sizeof(steady), "repl lag r1->r2: %u ev/s steady",
        REPL_STEADY_RATE);
    snprintf(sparse, sizeof(sparse), "repl lag r1->r2: 1 ev per %u-%u ms",
        REPL_SPARSE_GAP_MIN_US / 1000, REPL_SPARSE_GAP_MAX_US / 1000);
    report_bulk_rows("replication (2 nodes, loopback)", bulk, r[R_BULK_RATE],
        r[R_BULK_APPEND]);
    printf("%-40s %12.0f\n", "repl catch-up of a fresh node r3",
        r[R_CATCHUP_RATE]);
    report_steady_rows(steady, &r[R_STEADY_RATE]);
    printf("%-40s %12s %9.3f %9.3f (max)\n", sparse, "", r[R_SPARSE_P50],
        r[R_SPARSE_MAX]);
    printf("bulk: %.1f%% of the events not yet on r2 when r1 acked its last; "
           "r2 had all %.0f ms later\n",
        r[R_BULK_BEHIND], r[R_BULK_AFTER_MS]);
    printf("pulls: %.0f events per pull r1 served during the bulk; at %u "
           "ev/s a round of r2's puller over the %u shards took %.1f ms\n",
        r[R_BULK_EV_PULL], REPL_STEADY_RATE, REPL_SHARDS, r[R_STEADY_ROUND_MS]);
    printf("catch-up: %u events in %.2f s, from r3's process start\n",
        z->repl_events, r[R_CATCHUP_S]);
    printf("exactly once: r2 and r3 hold %s the events r1 took\n",
        r[R_MISMATCH] == 0 ? "exactly" : "NOT exactly");
    if (r[R_LOST] > 0) {
        printf(
            "LOST: %.0f lag events never reached r2 (worst run)\n", r[R_LOST]);
    }
    printf("link r1<->r2 (TCP payload, both pullers, idle polls included):\n"
           "  record %.0f B; bulk %.0f B/event (r1's replies alone %.0f); "
           "steady %.0f B/event; idle %.0f B/s\n",
        r[R_RECORD], r[R_BYTES_BULK], r[R_BYTES_BULK_DATA], r[R_BYTES_STEADY],
        r[R_IDLE_BPS]);
    printf("target (medians of %u runs%s):\n", o->runs,
        o->quick ? ", --quick sizes" : "");
    double worst = r[R_BYTES_BULK] > r[R_BYTES_STEADY] ? r[R_BYTES_BULK]
                                                       : r[R_BYTES_STEADY];
    printf("  about one copy per remote region (link bytes/event <= 1.25 x "
           "record): %.2f x (bulk), %.2f x (steady): %s\n",
        r[R_BYTES_BULK] / r[R_RECORD], r[R_BYTES_STEADY] / r[R_RECORD],
        worst <= 1.25 * r[R_RECORD] ? "met" : "MISSED");
    printf("sizes: bulk and catch-up %u events, steady %u events, sparse %u "
           "events\n",
        z->repl_events, z->repl_steady_events, z->repl_sparse_events);
    FILE *f = csv_append(o);
    if (f != NULL) {
        fprintf(f, "\"%s\",%.0f,,,\n", bulk, r[R_BULK_RATE]);
        fprintf(
            f, "\"repl r1 appends during bulk\",%.0f,,,\n", r[R_BULK_APPEND]);
        fprintf(f, "\"repl catch-up of a fresh node\",%.0f,,,\n",
            r[R_CATCHUP_RATE]);
        csv_steady(f, steady, &r[R_STEADY_RATE]);
        fprintf(f, "\"%s\",,%.3f,%.3f,\n", sparse, r[R_SPARSE_P50],
            r[R_SPARSE_MAX]);
        fprintf(f, "\"repl link bytes/event bulk (record %.0f)\",%.0f,,,\n",
            r[R_RECORD], r[R_BYTES_BULK]);
        fprintf(
            f, "\"repl link bytes/event steady\",%.0f,,,\n", r[R_BYTES_STEADY]);
        fprintf(f, "\"repl link bytes/s idle\",%.0f,,,\n", r[R_IDLE_BPS]);
        fclose(f);
    }
}

/* The regions figures: a table like report_repl's, then the copies, the
 * link and the target. */
static void
report_regions(
    const struct bench_opts *o, const double *g, const struct bench_sizes *z)
{
    char bulk[64], steady[64], local[64];
    snprintf(bulk, sizeof(bulk), "regions r1->r2: %u-ev batches, 16 in fl.",
        BENCH_BATCH);
    snprintf(steady, sizeof(steady), "regions lag r1->r2: %u ev/s steady",
        REPL_STEADY_RATE);
    if (g[G_R1_LOCAL] >= 0) {
        snprintf(local, sizeof(local), "%.2f", g[G_R1_LOCAL]);
    } else {
        snprintf(local, sizeof(local), "1 (assumed)");
    }
    report_bulk_rows(
        "regions (2 x 2 nodes, rf 2)", bulk, g[G_BULK_RATE], g[G_BULK_APPEND]);
    report_steady_rows(steady, &g[G_STEADY_RATE]);
    printf("bulk: both r2 nodes had all %.0f ms after r1 acked its last\n",
        g[G_BULK_AFTER_MS]);
    printf("copies per event (events_read during the bulk): r1's nodes served "
           "%.2f, %s of them to each other, so %.2f per remote region; the "
           "four nodes served %.2f (3 without duplicates)\n",
        g[G_R1_SERVED], local, g[G_COPIES], g[G_ALL_SERVED]);
    if (g[G_R1_LOCAL] < 0) {
        /* With nothing served twice, r1's nodes took from r2's at most
         * what r2's served: r1's copies to r2 were that many more. */
        printf("  (no pull_events_local: older meridiand; assumed: each event "
               "written on one r1 node is pulled once by the other; r2's "
               "nodes served %.2f per event, so with nothing served twice "
               "(the four served 3) the copies are %.2f..%.2f)\n",
            g[G_ALL_SERVED] - g[G_R1_SERVED], g[G_COPIES],
            g[G_COPIES] + g[G_ALL_SERVED] - g[G_R1_SERVED]);
    }
    if (g[G_R2_EVENTS] >= 0) {
        printf("link r1->r2 (r2's pull replies from r1): %.2f events and %.0f "
               "B per event; record %.0f B (%.2f x)\n",
            g[G_R2_EVENTS], g[G_R2_BYTES], g[G_RECORD],
            g[G_R2_BYTES] / g[G_RECORD]);
    } else {
        printf("link r1->r2: not counted (no pull_*_remote counters: older "
               "meridiand); record %.0f B\n",
            g[G_RECORD]);
    }
    printf("exactly once: every node holds %s the events r1 took\n",
        g[G_MISMATCH] == 0 ? "exactly" : "NOT exactly");
    if (g[G_LOST] > 0) {
        printf(
            "LOST: %.0f lag events never reached r2 (worst run)\n", g[G_LOST]);
    }
    printf("target (medians of %u runs%s):\n", o->runs,
        o->quick ? ", --quick sizes" : "");
    bool bytes_ok = g[G_R2_BYTES] < 0 || g[G_R2_BYTES] <= 1.25 * g[G_RECORD];
    printf("  one copy per remote region (<= 1.25 copies/event, link "
           "bytes/event <= 1.25 x record where counted): %.2f: %s\n",
        g[G_COPIES], g[G_COPIES] <= 1.25 && bytes_ok ? "met" : "MISSED");
    printf("sizes: bulk %u events, steady %u events; meridiand %s\n",
        z->repl_events, z->repl_steady_events, bench_meridiand());
    FILE *f = csv_append(o);
    if (f != NULL) {
        fprintf(f, "\"%s\",%.0f,,,\n", bulk, g[G_BULK_RATE]);
        fprintf(f, "\"regions r1 appends during bulk\",%.0f,,,\n",
            g[G_BULK_APPEND]);
        csv_steady(f, steady, &g[G_STEADY_RATE]);
        fprintf(f, "\"regions copies per remote region per event\",%.2f,,,\n",
            g[G_COPIES]);
        if (g[G_R2_BYTES] >= 0) {
            fprintf(f,
                "\"regions link bytes/event r1->r2 (record %.0f)\",%.0f,,,\n",
                g[G_RECORD], g[G_R2_BYTES]);
        }
        fclose(f);
    }
}

/* The worst of n runs' values (losses and duplicates are not medians). */
static double
worst(const double *v, unsigned n)
{
    double w = 0;
    for (unsigned i = 0; i < n; i++) {
        w = v[i] > w ? v[i] : w;
    }
    return w;
}

int
main(int argc, char **argv)
{
    struct bench_opts  o = { 0 };
    struct bench_sizes z = { 5000, 100000, 1000000, 1000000, 2000, 1000000,
        200000, 5 * REPL_STEADY_RATE, 20 };
    struct result      runs[W_COUNT][BENCH_RUNS_MAX] = { { { 0 } } };
    struct result      m[W_COUNT];
    static double      repl[R_COUNT][BENCH_RUNS_MAX];
    double             rm[R_COUNT];
    static double      regions[G_COUNT][BENCH_RUNS_MAX];
    double             gm[G_COUNT];

    parse_args(argc, argv, &o);
    if (o.quick) {
        z = (struct bench_sizes) { 500, 5000, 50000, 20000, 200, 50000, 20000,
            2 * REPL_STEADY_RATE, 6 };
    }
    memset(bench_event_data, 'e', sizeof(bench_event_data));
    /* A fresh directory per bench: nothing of an earlier, interrupted run
     * can be in the way. */
    char base[sizeof(o.dir)];
    if (snprintf(base, sizeof(base), "%s/meridian-bench-XXXXXX", o.dir)
        >= (int) sizeof(base)) {
        fprintf(stderr, "meridian_bench: --dir is too long\n");
        return 2;
    }
    if (mkdtemp(base) == NULL) {
        perror(base);
        return 1;
    }
    snprintf(o.dir, sizeof(o.dir), "%s", base);
    /* The keys of the lone and the replication nodes, and the bench's
     * admin client of theirs, for every run. */
    struct bench_creds creds;
    char               keys_dir[sizeof(o.dir) + 8];
    snprintf(keys_dir, sizeof(keys_dir), "%s/keys", o.dir);
    dir_make(keys_dir);
    creds_make(&creds, keys_dir);
    for (unsigned run = 0; run < o.runs; run++) {
        struct node_proc n;
        fprintf(stderr, "run %u/%u: baselines...\n", run + 1, o.runs);
        runs[W_FSYNC][run] = baseline_fdatasync(o.dir, z.fsync_samples);
        runs[W_LMDB][run]  = baseline_lmdb(o.dir, z.lmdb_events);
        node_start(&n, o.dir, run, &creds);
        mrd_client *c = client_open(&creds, n.url);
        fprintf(stderr, "run %u/%u: workloads...\n", run + 1, o.runs);
        if (bench_wants(&o, "lone")) {
            runs[W_LONE][run] = run_lone(c, z.lone_appends);
        }
        if (bench_wants(&o, "inflight")) {
            runs[W_INFLIGHT_1][run]
                = run_async(c, 64, 1, 1, z.inflight_appends);
            runs[W_INFLIGHT_64][run]
                = run_async(c, 64, 64, 1, z.inflight_appends);
            runs[W_INFLIGHT_256][run]
                = run_async(c, 256, 64, 1, z.inflight_appends);
        }
        if (bench_wants(&o, "batch")) {
            runs[W_BATCH_16][run] = run_async(
                c, 16, 64, BENCH_BATCH, z.batch_events / BENCH_BATCH);
            runs[W_BATCH_64][run] = run_async(
                c, 64, 64, BENCH_BATCH, z.batch_events / BENCH_BATCH);
        }
        if (bench_wants(&o, "state")) {
            /* Interleaved so both see the same machine. */
            runs[W_STATE_PLAIN][run]
                = run_async_ops(c, 64, 64, 1, z.inflight_appends, false);
            runs[W_STATE_OPS][run]
                = run_async_ops(c, 64, 64, 1, z.inflight_appends, true);
            runs[W_STATE_BATCH_PLAIN][run] = run_async_ops(
                c, 16, 64, BENCH_BATCH, z.batch_events / BENCH_BATCH, false);
            runs[W_STATE_BATCH_OPS][run] = run_async_ops(
                c, 16, 64, BENCH_BATCH, z.batch_events / BENCH_BATCH, true);
        }
        if (bench_wants(&o, "scan")) {
            scan_fill(c, z.scan_events);
            runs[W_SCAN_1][run] = run_scan(c, z.scan_events, 1);
            runs[W_SCAN_4][run] = run_scan(c, z.scan_events, 4);
        }
        mrd_client_close(c);
        node_stop(&n);
        if (bench_wants(&o, "repl")) {
            double out[R_COUNT] = { 0 };
            fprintf(stderr, "run %u/%u: replication...\n", run + 1, o.runs);
            repl_run(o.dir, &creds, run, &z, out);
            fprintf(stderr,
                "run %u/%u: repl %.0f ev/s (r1 appends %.0f), catch-up "
                "%.0f ev/s, lag p50 %.1f p99 %.1f ms, sparse p50 %.1f max "
                "%.1f ms, %.0f B/event bulk\n",
                run + 1, o.runs, out[R_BULK_RATE], out[R_BULK_APPEND],
                out[R_CATCHUP_RATE], out[R_LAG_P50], out[R_LAG_P99],
                out[R_SPARSE_P50], out[R_SPARSE_MAX], out[R_BYTES_BULK]);
            for (int i = 0; i < R_COUNT; i++) {
                repl[i][run] = out[i];
            }
        }
        if (bench_wants(&o, "regions")) {
            double out[G_COUNT] = { 0 };
            fprintf(stderr, "run %u/%u: regions...\n", run + 1, o.runs);
            regions_run(o.dir, run, &z, out);
            fprintf(stderr,
                "run %u/%u: regions %.0f ev/s (r1 appends %.0f), %.2f copies "
                "per remote region (r1 served %.2f, local %.2f), all served "
                "%.2f; r2 pulled %.2f ev %.0f B per event, record %.0f B; lag "
                "p50 %.1f p99 %.1f ms\n",
                run + 1, o.runs, out[G_BULK_RATE], out[G_BULK_APPEND],
                out[G_COPIES], out[G_R1_SERVED], out[G_R1_LOCAL],
                out[G_ALL_SERVED], out[G_R2_EVENTS], out[G_R2_BYTES],
                out[G_RECORD], out[G_LAG_P50], out[G_LAG_P99]);
            for (int i = 0; i < G_COUNT; i++) {
                regions[i][run] = out[i];
            }
        }
    }
    sodium_memzero(&creds, sizeof(creds));
    rm_rf(keys_dir);
    rmdir(o.dir);
    for (int w = 0; w < W_COUNT; w++) {
        m[w] = result_median(runs[w], o.runs);
    }
    /* The single-node table only when one of its workloads ran. */
    if (strcmp(o.only, "repl") != 0 && strcmp(o.only, "regions") != 0) {
        report(&o, m, &z);
    }
    if (bench_wants(&o, "repl")) {
        for (int i = 0; i < R_COUNT; i++) {
            rm[i] = median(repl[i], o.runs);
        }
        /* Losses and duplicates: the worst run, not the median. */
        rm[R_LOST]     = worst(repl[R_LOST], o.runs);
        rm[R_MISMATCH] = worst(repl[R_MISMATCH], o.runs);
        report_repl(&o, rm, &z);
    }
    if (bench_wants(&o, "regions")) {
        for (int i = 0; i < G_COUNT; i++) {
            gm[i] = median(regions[i], o.runs);
        }
        gm[G_LOST]     = worst(regions[G_LOST], o.runs);
        gm[G_MISMATCH] = worst(regions[G_MISMATCH], o.runs);
        report_regions(&o, gm, &z);
    }
    return 0;
}
