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
 * Usage: meridian_bench [--runs N] [--quick] [--dir DIR] [--csv FILE]
 */
#include "common.h"
#include "meridian.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    char     only[16]; /* one workload: lone, inflight, batch, state or scan */
    char     dir[512];
    char     csv[512];
};

/* Sizes of each workload; --quick shrinks them for a smoke run. */
struct bench_sizes {
    uint32_t lone_appends;
    uint32_t inflight_appends;
    uint32_t batch_events;
    uint32_t scan_events;
    uint32_t fsync_samples;
    uint32_t lmdb_events;
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

/* ---------------------------------------------------------------- node -- */

struct node_proc {
    pid_t pid;
    char  dir[600];
    char  url[300];
};

static void
node_start(struct node_proc *n, const char *base, unsigned run)
{
    char ready[700], log[700];

    snprintf(n->dir, sizeof(n->dir), "%s/node-%u", base, run);
    snprintf(ready, sizeof(ready), "%s.ready", n->dir);
    snprintf(log, sizeof(log), "%s.log", n->dir);
    unlink(ready);
    n->pid = fork();
    if (n->pid == 0) {
        int fd = open(log, O_CREAT | O_WRONLY | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
        }
        execl(MRD_MERIDIAND_PATH, "meridiand", "--node-id", "1", "--data-dir",
            n->dir, "--listen", "tcp://127.0.0.1:0", "--ready-file", ready,
            "--map-size", "4G", "--log-level", "warn", (char *) NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(ready, "r");
        if (f != NULL) {
            bool ok = fgets(n->url, sizeof(n->url), f) != NULL;
            fclose(f);
            if (ok) {
                n->url[strcspn(n->url, "\n")] = '\0';
                return;
            }
        }
        sleep_us(50000);
    }
    fprintf(stderr, "meridian_bench: meridiand did not start; see %s\n", log);
    kill(n->pid, SIGKILL);
    exit(1);
}

static void
node_stop(struct node_proc *n)
{
    kill(n->pid, SIGTERM);
    waitpid(n->pid, NULL, 0);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", n->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "meridian_bench: could not remove %s\n", n->dir);
    }
}

static mrd_client *
client_open(const char *url)
{
    const char     *addrs[1] = { url };
    mrd_client_opts opts;
    mrd_client     *c;

    mrd_client_opts_init(&opts);
    opts.addresses          = addrs;
    opts.address_count      = 1;
    opts.timeout_ms         = 60000;
    opts.attempt_timeout_ms = 30000;
    int rv                  = mrd_client_open(&opts, &c);
    if (rv != MRD_OK) {
        die("mrd_client_open", rv);
    }
    return c;
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
                   "[--quick] [--only lone|inflight|batch|state|scan] "
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

int
main(int argc, char **argv)
{
    struct bench_opts  o = { 0 };
    struct bench_sizes z = { 5000, 100000, 1000000, 1000000, 2000, 1000000 };
    struct result      runs[W_COUNT][BENCH_RUNS_MAX] = { { { 0 } } };
    struct result      m[W_COUNT];

    parse_args(argc, argv, &o);
    if (o.quick) {
        z = (struct bench_sizes) { 500, 5000, 50000, 20000, 200, 50000 };
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
    for (unsigned run = 0; run < o.runs; run++) {
        struct node_proc n;
        fprintf(stderr, "run %u/%u: baselines...\n", run + 1, o.runs);
        runs[W_FSYNC][run] = baseline_fdatasync(o.dir, z.fsync_samples);
        runs[W_LMDB][run]  = baseline_lmdb(o.dir, z.lmdb_events);
        node_start(&n, o.dir, run);
        mrd_client *c = client_open(n.url);
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
    }
    rmdir(o.dir);
    for (int w = 0; w < W_COUNT; w++) {
        m[w] = result_median(runs[w], o.runs);
    }
    report(&o, m, &z);
    return 0;
}
