/*
 * run.c: meridian-chaos, the chaos runner (docs/CHAOS.md). First version:
 * link faults, and process faults with --process-faults.
 *
 * It builds a cluster of real meridiand processes, regions r1..rN of
 * nodes_per_region nodes each (rf = nodes per region, so every node holds
 * every shard), from a topology it signs itself with an admin key of its
 * own, secure links on as in production. Every directed node link A->B goes
 * through its own fault proxy (A dials B at --peer-address B=<proxy>), and
 * clients reach each node through a client proxy: the topology names that
 * proxy as the node's address, because a routing client dials the
 * addresses of the topology, so a per-client proxy would be bypassed.
 *
 * One client thread per region appends single events with unique ids to a
 * set of streams, cycling the ack levels, and records every invocation and
 * completion in history.jsonl. A nemesis thread runs a seeded schedule of
 * partitions (isolate a node, isolate a region, halves, a one-way cut,
 * flip-flop) and latency spikes on the proxies, logged to faults.jsonl.
 * At the end it heals every link, stops the workload, waits (bounded) until
 * every node holds the same number of events in every shard, reading each
 * node directly on its real port, saves every node's shard logs as
 * final.json and runs the checker (chaos/check.h): report.txt.
 *
 * Exit: 0 every check passed, 1 a check failed (or interrupted), 2 usage,
 * 3 the cluster could not be set up. Every meridiand it started is killed
 * on the way out, every proxy stopped.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "check.h"
#include "common.h"
#include "history.h"
#include "keyring.h"
#include "meridian.h"
#include "proto.h"
#include "proxy.h"
#include "timeline.h"
#include "topo.h"

#ifndef MRD_MERIDIAND_PATH
#define MRD_MERIDIAND_PATH "meridiand"
#endif
#ifndef MRD_MERIDIANCTL_PATH
#define MRD_MERIDIANCTL_PATH "meridianctl"
#endif

/* ------------------------------------------------------------- limits -- */

/* Regions and nodes of one run: every node has a proxy to every other, so
 * links grow as the square; 16 nodes is 240 proxies and threads. A node
 * takes at most 32 --peer-address entries. */
#define RUN_REGIONS_MAX 8u
#define RUN_NODES_MAX 16u
#define RUN_STREAMS 32u /* streams the workload appends to */
/* Client threads per region, each a history process with one operation
 * outstanding: a region or global ack waits for replication, so one client
 * makes a few appends a second. */
#define RUN_CLIENTS_MAX 16u
/* How long a node waits for a region or global ack before it answers
 * MRD_EDURABILITY: short, so a partition costs the workload little. */
#define RUN_ACK_WAIT_MS 1500u
#define RUN_SHARDS 8u /* shards of the topology */
#define RUN_PATH_SIZE 512u
#define RUN_URL_SIZE 64u
#define RUN_DURATION_S_MAX 86400u
/* How long a node gets to write its ready file. */
#define RUN_READY_MS 30000u
/* Process faults: a node stays down or stopped 1 to 4 s (seeded); a
 * SIGTERM gets this long to stop gracefully before a SIGKILL. */
#define RUN_PROC_DOWN_MIN_MS 1000u
#define RUN_PROC_DOWN_MAX_MS 4000u
#define RUN_TERM_MS 10000u
/* Bound on convergence after the final heal, and its poll interval. */
#define RUN_CONVERGE_MS 60000u
#define RUN_POLL_MS 200u
/* Log pages read per shard and their size: a bound on one node's log. */
#define RUN_LOG_PAGE 5000u
#define RUN_LOG_PAGES_MAX 2000u
/* Latency: within a region, between regions (seeded per pair), jitter,
 * and a spike on top. */
#define RUN_LAT_LOCAL_MS 1u
#define RUN_LAT_WAN_MIN_MS 20u
#define RUN_LAT_WAN_MAX_MS 150u
#define RUN_JITTER_MS 10u
#define RUN_SPIKE_MIN_MS 200u
#define RUN_SPIKE_MAX_MS 600u

_Static_assert(RUN_NODES_MAX <= CHAOS_NODES_MAX, "the checker takes them");
_Static_assert(RUN_NODES_MAX - 1u <= 32u, "--peer-address takes them");
_Static_assert(RUN_REGIONS_MAX <= TOPO_REGIONS_MAX, "the topology too");
_Static_assert(RUN_SHARDS <= 256u, "a node serves 256 shards at most");

/* -------------------------------------------------------------- state -- */

struct run_node {
    uint32_t            id; /* 1.. */
    uint32_t            region; /* 0.. */
    uint16_t            port; /* real listen port */
    int                 port_fd; /* holds port until the node starts */
    char                url[RUN_URL_SIZE]; /* real address */
    char                dir[RUN_PATH_SIZE];
    char                key_path[RUN_PATH_SIZE];
    uint8_t             pk[32];
    pid_t               pid;
    struct chaos_proxy *client_proxy; /* what the topology names */
    char                client_url[RUN_URL_SIZE];
};

struct run_opts {
    uint64_t    seed;
    const char *dir;
    uint32_t    regions;
    uint32_t    npr; /* nodes per region */
    uint32_t    duration_s;
    uint32_t    clients; /* per region */
    bool        failover_on_timeout; /* the client's default attempts */
    bool        client_faults; /* isolate-node cuts clients too */
    bool        process_faults; /* kill -9, SIGSTOP, SIGTERM nodes too */
    const char *meridiand;
    const char *meridianctl;
};

struct run_stats {
    atomic_uint_fast64_t acked, failed, info;
};

struct run {
    struct run_opts       o;
    char                  dir[RUN_PATH_SIZE];
    uint32_t              node_count;
    struct run_node       nodes[RUN_NODES_MAX];
    struct chaos_proxy   *link[RUN_NODES_MAX][RUN_NODES_MAX]; /* A->B */
    uint32_t              lat_ms[RUN_NODES_MAX][RUN_NODES_MAX];
    char                  admin_key[RUN_PATH_SIZE];
    char                  node_ring[RUN_PATH_SIZE];
    char                  client_ring[RUN_PATH_SIZE];
    char                  topo_path[RUN_PATH_SIZE];
    struct chaos_history *history;
    FILE                 *faults;
    uint64_t              t0_us; /* the history's clock, about */
    uint64_t              heal_us; /* the final heal, history's clock */
    atomic_bool           stop;
    struct run_stats      stats;
    uint32_t              faults_injected;
    /* Bit i: node i is down and waits for the main thread to start it
     * again (only the main thread forks nodes: PR_SET_PDEATHSIG). */
    atomic_uint_fast32_t respawn;
    /* The lag sampler (lag.jsonl), from the workload's start to the final
     * reads. */
    pthread_t   lag_thread;
    bool        lag_started;
    atomic_bool lag_stop;
};

static volatile sig_atomic_t run_interrupted;

/* ------------------------------------------------------------ helpers -- */

static uint64_t
run_rand(uint64_t *s)
{
    /* splitmix64: small, seeded, good enough for schedules. */
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z          = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z          = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint32_t
run_between(uint64_t *s, uint32_t lo, uint32_t hi)
{
    return lo + (uint32_t) (run_rand(s) % (uint64_t) (hi - lo + 1u));
}

static uint64_t
run_t_us(const struct run *r)
{
    return mrd_now_mono_us() - r->t0_us;
}

static void
run_sleep_ms(uint32_t ms)
{
    struct timespec ts
        = { .tv_sec = ms / 1000u, .tv_nsec = (long) (ms % 1000u) * 1000000L };
    nanosleep(&ts, NULL);
}

static bool
run_stopping(struct run *r)
{
    return run_interrupted || atomic_load(&r->stop);
}

/* Sleeps ms in small steps; false when the run is stopping. */
static bool
run_nap(struct run *r, uint32_t ms)
{
    for (uint32_t t = 0; t < ms; t += 50u) {
        if (run_stopping(r)) {
            return false;
        }
        run_sleep_ms(ms - t < 50u ? ms - t : 50u);
    }
    return !run_stopping(r);
}

static int
run_path(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, RUN_PATH_SIZE, "%s/%s", dir, name);
    return n > 0 && (size_t) n < RUN_PATH_SIZE ? 0 : -1;
}

/* Reserves a port for a node: a socket bound to it (not listening), so no
 * proxy takes it before the node does; the caller closes *fd_out just
 * before the node binds it. Node ports come from below the kernel's
 * ephemeral range (32768 and up by default), searched from a spot that
 * depends on our pid: outgoing connections (the nodes dial their peers the
 * moment they start) take their source ports from that range, and one of
 * them took a node's port between its release and the node's bind. 0 on
 * failure. */
static uint16_t
run_port_reserve(uint32_t salt, int *fd_out)
{
    const uint32_t lo = 12000u, span = 20000u;
    uint32_t       start = ((uint32_t) getpid() * 7919u + salt * 131u) % span;

    *fd_out = -1;
    for (uint32_t k = 0; k < span; k++) {
        struct sockaddr_in a    = { 0 };
        uint16_t           port = (uint16_t) (lo + (start + k) % span);
        int                fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return 0;
        }
        a.sin_family      = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port        = htons(port);
        if (bind(fd, (struct sockaddr *) &a, sizeof a) == 0) {
            *fd_out = fd;
            return port;
        }
        close(fd);
    }
    return 0;
}

static void run_fault_log(struct run *r, const char *kind, uint64_t start_us,
    uint64_t end_us, const char *fmt, ...) MRD_PRINTF(5, 6);

static void
run_fault_log(struct run *r, const char *kind, uint64_t start_us,
    uint64_t end_us, const char *fmt, ...)
{
    char    detail[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    /* Details are the runner's own words; keep them valid JSON anyway. */
    for (char *c = detail; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\' || (unsigned char) *c < 0x20) {
            *c = '\'';
        }
    }
    fprintf(r->faults,
        "{\"fault\":\"%s\",\"start_t\":%" PRIu64 ",\"end_t\":%" PRIu64
        ",\"detail\":\"%s\"}\n",
        kind, start_us, end_us, detail);
    fflush(r->faults);
    printf("chaos: fault %-14s %7.3f s .. %7.3f s  %s\n", kind,
        (double) start_us / 1e6, (double) end_us / 1e6, detail);
    fflush(stdout);
}

/* ------------------------------------------------------------ options -- */

static void
run_usage(FILE *out)
{
    fprintf(out,
        "Usage: meridian-chaos [OPTIONS]\n"
        "\n"
        "Runs a Meridian cluster behind fault proxies, a recorded workload\n"
        "and a seeded nemesis of link faults, heals, waits for convergence\n"
        "and checks the history against every node's final state\n"
        "(docs/CHAOS.md). Exit 0: every check passed; 1: a check failed;\n"
        "2: usage; 3: the cluster could not be set up.\n"
        "\n"
        "  --seed N               seed of everything (default: from the "
        "clock; printed)\n"
        "  --dir DIR              keeps node logs, history.jsonl, "
        "faults.jsonl,\n"
        "                         final.json, report.txt (default: a new "
        "temp dir)\n"
        "  --regions N            regions r1..rN (default 3, max %u)\n"
        "  --nodes-per-region N   nodes per region = rf (default 2)\n"
        "  --duration-s N         seconds of workload and faults (default "
        "20)\n"
        "  --clients-per-region N client threads per region (default 16, "
        "max %u)\n"
        "  --client-faults        isolate-node cuts the node's clients too, "
        "so\n"
        "                         clients fail over (may break session "
        "order\n"
        "                         and duplicate: known gaps, docs/CHAOS.md)\n"
        "  --failover-on-timeout  clients keep their default 3 s attempts "
        "and\n"
        "                         retry a timed-out append on another node\n"
        "                         (may duplicate: a known gap)\n"
        "  --process-faults       the nemesis also kills -9, SIGSTOPs and\n"
        "                         SIGTERMs nodes, restarting them after "
        "1-4 s\n"
        "  --meridiand PATH       (default %s)\n"
        "  --meridianctl PATH     (default %s)\n"
        "  --help\n",
        RUN_REGIONS_MAX, RUN_CLIENTS_MAX, MRD_MERIDIAND_PATH,
        MRD_MERIDIANCTL_PATH);
}

static bool
run_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno     = 0;
    if (s == NULL || *s < '0' || *s > '9') {
        return false;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* 0 ok, 1 --help printed, 2 usage error. */
static int
run_opts_parse(int argc, char **argv, struct run_opts *o)
{
    uint64_t v;

    o->seed        = (uint64_t) time(NULL) ^ ((uint64_t) getpid() << 32);
    o->regions     = 3;
    o->npr         = 2;
    o->duration_s  = 20;
    o->clients     = 16;
    o->meridiand   = MRD_MERIDIAND_PATH;
    o->meridianctl = MRD_MERIDIANCTL_PATH;
    for (int i = 1; i < argc; i++) {
        const char *a   = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            run_usage(stdout);
            return 1;
        }
        bool ok = val != NULL;
        if (ok && strcmp(a, "--seed") == 0) {
            ok = run_parse_u64(val, UINT64_MAX, &o->seed);
        } else if (ok && strcmp(a, "--dir") == 0) {
            o->dir = val;
        } else if (ok && strcmp(a, "--regions") == 0) {
            ok         = run_parse_u64(val, RUN_REGIONS_MAX, &v) && v >= 1;
            o->regions = (uint32_t) v;
        } else if (ok && strcmp(a, "--nodes-per-region") == 0) {
            ok     = run_parse_u64(val, TOPO_RF_MAX, &v) && v >= 1;
            o->npr = (uint32_t) v;
        } else if (ok && strcmp(a, "--duration-s") == 0) {
            ok = run_parse_u64(val, RUN_DURATION_S_MAX, &v) && v >= 1;
            o->duration_s = (uint32_t) v;
        } else if (ok && strcmp(a, "--clients-per-region") == 0) {
            ok         = run_parse_u64(val, RUN_CLIENTS_MAX, &v) && v >= 1;
            o->clients = (uint32_t) v;
        } else if (strcmp(a, "--client-faults") == 0) {
            o->client_faults = true;
            continue;
        } else if (strcmp(a, "--failover-on-timeout") == 0) {
            o->failover_on_timeout = true;
            continue;
        } else if (strcmp(a, "--process-faults") == 0) {
            o->process_faults = true;
            continue;
        } else if (ok && strcmp(a, "--meridiand") == 0) {
            o->meridiand = val;
        } else if (ok && strcmp(a, "--meridianctl") == 0) {
            o->meridianctl = val;
        } else {
            fprintf(stderr, "meridian-chaos: bad option or value: %s\n", a);
            run_usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "meridian-chaos: bad value for %s: %s\n", a, val);
            return 2;
        }
        i++;
    }
    if (o->regions * o->npr > RUN_NODES_MAX) {
        fprintf(stderr, "meridian-chaos: at most %u nodes\n", RUN_NODES_MAX);
        return 2;
    }
    return 0;
}

/* -------------------------------------------------------------- links -- */

/* Sets a proxy's faults. A blackhole discards bytes, and TCP never
 * delivers a stream with a hole in it: when a direction's blackhole lifts,
 * its live connections are reset first (while still blackholed), so a
 * healed partition looks like connections that died in it, not like a
 * stream that resumes mid-message. */
static int
run_proxy_set(struct chaos_proxy *proxy, const struct chaos_faults *f)
{
    struct chaos_faults cur;
    chaos_proxy_get(proxy, &cur);
    for (int d = 0; d < CHAOS_DIRS; d++) {
        if (cur.dir[d].blackhole && !f->dir[d].blackhole) {
            chaos_proxy_reset(proxy);
            break;
        }
    }
    return chaos_proxy_set(proxy, f);
}

/* The fault set of proxy A->B: base latency both ways, plus a blackhole
 * on each direction whose bytes are cut (drop[x][y]: bytes from x never
 * reach y), plus spike_ms on links touching a spiked region. */
static int
run_link_apply(struct run *r, uint32_t a, uint32_t b,
    bool drop[RUN_NODES_MAX][RUN_NODES_MAX], int spike_region,
    uint32_t spike_ms)
{
    struct chaos_faults f;
    uint32_t            lat = r->lat_ms[a][b];

    memset(&f, 0, sizeof f);
    if (spike_region >= 0
        && (r->nodes[a].region == (uint32_t) spike_region
            || r->nodes[b].region == (uint32_t) spike_region)) {
        lat += spike_ms;
    }
    for (int d = 0; d < CHAOS_DIRS; d++) {
        f.dir[d].latency_ms = lat;
        f.dir[d].jitter_ms  = lat > RUN_LAT_LOCAL_MS ? RUN_JITTER_MS : 0;
    }
    f.dir[CHAOS_UP].blackhole   = drop != NULL && drop[a][b];
    f.dir[CHAOS_DOWN].blackhole = drop != NULL && drop[b][a];
    return run_proxy_set(r->link[a][b], &f);
}

/* Applies a whole cut matrix (NULL: none) and spike to every link, and
 * blackholes the client proxies of the nodes in client_cut. */
static void
run_links_apply(struct run *r, bool drop[RUN_NODES_MAX][RUN_NODES_MAX],
    int spike_region, uint32_t spike_ms, const bool *client_cut)
{
    for (uint32_t a = 0; a < r->node_count; a++) {
        for (uint32_t b = 0; b < r->node_count; b++) {
            if (a != b
                && run_link_apply(r, a, b, drop, spike_region, spike_ms)
                    != MRD_OK) {
                fprintf(stderr, "chaos: proxy %u->%u refused a fault set\n",
                    a + 1, b + 1);
            }
        }
        struct chaos_faults f;
        memset(&f, 0, sizeof f);
        f.dir[CHAOS_UP].latency_ms   = RUN_LAT_LOCAL_MS;
        f.dir[CHAOS_DOWN].latency_ms = RUN_LAT_LOCAL_MS;
        bool cut                     = client_cut != NULL && client_cut[a];
        f.dir[CHAOS_UP].blackhole    = cut;
        f.dir[CHAOS_DOWN].blackhole  = cut;
        if (run_proxy_set(r->nodes[a].client_proxy, &f) != MRD_OK) {
            fprintf(stderr, "chaos: client proxy %u refused\n", a + 1);
        }
    }
}

static void
run_heal(struct run *r)
{
    run_links_apply(r, NULL, -1, 0, NULL);
}

/* Seeded WAN latency per region pair; 1 ms within a region. */
static void
run_latency_init(struct run *r, uint64_t *rng)
{
    uint32_t pair[RUN_REGIONS_MAX][RUN_REGIONS_MAX];
    for (uint32_t i = 0; i < r->o.regions; i++) {
        for (uint32_t j = i; j < r->o.regions; j++) {
            pair[i][j] = i == j
                ? RUN_LAT_LOCAL_MS
                : run_between(rng, RUN_LAT_WAN_MIN_MS, RUN_LAT_WAN_MAX_MS);
            pair[j][i] = pair[i][j];
        }
    }
    for (uint32_t a = 0; a < r->node_count; a++) {
        for (uint32_t b = 0; b < r->node_count; b++) {
            r->lat_ms[a][b] = pair[r->nodes[a].region][r->nodes[b].region];
        }
    }
}

static int
run_proxies_start(struct run *r, uint64_t *rng)
{
    const char *why = NULL;

    for (uint32_t a = 0; a < r->node_count; a++) {
        struct chaos_proxy_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.upstream_host = "127.0.0.1";
        cfg.upstream_port = r->nodes[a].port;
        cfg.seed          = run_rand(rng);
        if (chaos_proxy_start(&cfg, &r->nodes[a].client_proxy, &why)
            != MRD_OK) {
            fprintf(stderr, "chaos: client proxy: %s\n", why);
            return -1;
        }
        snprintf(r->nodes[a].client_url, RUN_URL_SIZE, "tcp://127.0.0.1:%u",
            (unsigned) chaos_proxy_port(r->nodes[a].client_proxy));
        for (uint32_t b = 0; b < r->node_count; b++) {
            if (a == b) {
                continue;
            }
            cfg.upstream_port = r->nodes[b].port;
            cfg.seed          = run_rand(rng);
            if (chaos_proxy_start(&cfg, &r->link[a][b], &why) != MRD_OK) {
                fprintf(stderr, "chaos: proxy %u->%u: %s\n", a + 1, b + 1, why);
                return -1;
            }
        }
    }
    run_heal(r);
    return 0;
}

static void
run_proxies_stop(struct run *r)
{
    for (uint32_t a = 0; a < r->node_count; a++) {
        for (uint32_t b = 0; b < r->node_count; b++) {
            chaos_proxy_stop(r->link[a][b]);
            r->link[a][b] = NULL;
        }
        chaos_proxy_stop(r->nodes[a].client_proxy);
        r->nodes[a].client_proxy = NULL;
    }
}

/* --------------------------------------------------------------- keys -- */

/* Appends "WORD HEX\n" to buf[*len..size). */
static int
run_hex_line(char *buf, size_t size, size_t *len, const char *word,
    const uint8_t *bin, size_t bin_size)
{
    char hex[2 * 64 + 1];
    sodium_bin2hex(hex, sizeof hex, bin, bin_size);
    int n = snprintf(buf + *len, size - *len, "%s %s\n", word, hex);
    if (n < 0 || (size_t) n >= size - *len) {
        return -1;
    }
    *len += (size_t) n;
    return 0;
}

/* Node keys, the admin key, both keyrings. */
static int
run_keys_make(struct run *r, const uint8_t cluster_id[16], uint8_t admin_sk[64],
    uint8_t admin_pk[32])
{
    char    err[256], ring[8192], word[64];
    size_t  len = 0, client_len;
    uint8_t sk[64];

    if (run_hex_line(ring, sizeof ring, &len, "cluster", cluster_id, 16) != 0) {
        return -1;
    }
    for (uint32_t i = 0; i < r->node_count; i++) {
        struct run_node *n = &r->nodes[i];
        crypto_sign_keypair(n->pk, sk);
        if (run_path(n->key_path, n->dir, "node.key") != 0
            || keyring_key_write(n->key_path, sk, err, sizeof err) != MRD_OK) {
            fprintf(stderr, "chaos: node key: %s\n", err);
            return -1;
        }
        snprintf(word, sizeof word, "node %u", n->id);
        if (run_hex_line(ring, sizeof ring, &len, word, n->pk, 32) != 0) {
            return -1;
        }
    }
    sodium_memzero(sk, sizeof sk);
    client_len = len;
    crypto_sign_keypair(admin_pk, admin_sk);
    if (run_path(r->admin_key, r->dir, "admin.key") != 0
        || keyring_key_write(r->admin_key, admin_sk, err, sizeof err)
            != MRD_OK) {
        fprintf(stderr, "chaos: admin key: %s\n", err);
        return -1;
    }
    if (keyring_file_write(
            r->client_ring, ring, client_len, 0600, err, sizeof err)
        != MRD_OK) {
        fprintf(stderr, "chaos: client keyring: %s\n", err);
        return -1;
    }
    if (run_hex_line(
            ring, sizeof ring, &len, "client chaos-runner admin", admin_pk, 32)
            != 0
        || keyring_file_write(r->node_ring, ring, len, 0600, err, sizeof err)
            != MRD_OK) {
        fprintf(stderr, "chaos: node keyring: %s\n", err);
        return -1;
    }
    return 0;
}

/* Signs version 1: regions r1..rN of rf npr, nodes n1.. whose address is
 * their client proxy. */
static int
run_topology_make(struct run *r, const uint8_t cluster_id[16],
    const uint8_t admin_sk[64], const uint8_t admin_pk[32])
{
    struct topo     *t = calloc(1, sizeof *t);
    struct proto_buf buf;
    const char      *why = "";
    int              rv  = -1;
    uint32_t         index, id;
    char             name[32];

    if (t == NULL) {
        return -1;
    }
    proto_buf_init(&buf, TOPO_SIGNED_SIZE_MAX);
    topo_init(t, cluster_id, RUN_SHARDS, admin_pk);
    for (uint32_t g = 0; g < r->o.regions; g++) {
        snprintf(name, sizeof name, "r%u", g + 1);
        if (topo_region_add(t, name, r->o.npr, &index, &why) != MRD_OK) {
            goto done;
        }
    }
    for (uint32_t i = 0; i < r->node_count; i++) {
        struct run_node *n = &r->nodes[i];
        snprintf(name, sizeof name, "n%u", n->id);
        if (topo_node_add(t, name, n->region, n->client_url, n->pk, &id, &why)
                != MRD_OK
            || id != n->id) {
            goto done;
        }
    }
    t->version = 1;
    if (topo_sign(t, admin_sk, &buf, &why) != MRD_OK) {
        goto done;
    }
    char err[256];
    if (keyring_file_write(r->topo_path, (const char *) buf.data, buf.len, 0644,
            err, sizeof err)
        != MRD_OK) {
        why = "cannot write the topology";
        goto done;
    }
    rv = 0;
done:
    if (rv != 0) {
        fprintf(stderr, "chaos: topology: %s\n", why);
    }
    proto_buf_fini(&buf);
    free(t);
    return rv;
}

/* -------------------------------------------------------------- nodes -- */

/* Forks and execs meridiand for node i; stdout and stderr go to its log.
 * The child dies with the runner (PR_SET_PDEATHSIG: this is the main
 * thread, which lives as long as the runner). */
static int
run_node_spawn(struct run *r, uint32_t i)
{
    struct run_node *n = &r->nodes[i];
    char             id[16], listen[RUN_URL_SIZE], data[RUN_PATH_SIZE],
        ready[RUN_PATH_SIZE], log[RUN_PATH_SIZE];
    char        peer[RUN_NODES_MAX][RUN_URL_SIZE + 16];
    const char *argv[40 + 2 * RUN_NODES_MAX];
    size_t      c = 0;

    snprintf(id, sizeof id, "%u", n->id);
    snprintf(listen, sizeof listen, "%s", n->url);
    if (run_path(data, n->dir, "data") != 0
        || run_path(ready, n->dir, "ready") != 0
        || run_path(log, n->dir, "log") != 0) {
        return -1;
    }
    argv[c++] = r->o.meridiand;
    argv[c++] = "--node-id";
    argv[c++] = id;
    argv[c++] = "--data-dir";
    argv[c++] = data;
    argv[c++] = "--listen";
    argv[c++] = listen;
    argv[c++] = "--ready-file";
    argv[c++] = ready;
    argv[c++] = "--topology";
    argv[c++] = r->topo_path;
    argv[c++] = "--key";
    argv[c++] = n->key_path;
    argv[c++] = "--keyring";
    argv[c++] = r->node_ring;
    for (uint32_t b = 0; b < r->node_count; b++) {
        if (b == i) {
            continue;
        }
        snprintf(peer[b], sizeof peer[b], "%u=tcp://127.0.0.1:%u", b + 1,
            (unsigned) chaos_proxy_port(r->link[i][b]));
        argv[c++] = "--peer-address";
        argv[c++] = peer[b];
    }
    argv[c] = NULL;
    if (n->port_fd >= 0) {
        close(n->port_fd); /* the node binds it now */
        n->port_fd = -1;
    }
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid    = fork();
    if (pid == 0) {
        sigset_t none;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execv(argv[0], (char *const *) (uintptr_t) argv);
        _exit(127);
    }
    close(fd);
    if (pid < 0) {
        return -1;
    }
    n->pid = pid;
    return 0;
}

/* Whether node i wrote a whole line to its ready file. */
static bool
run_node_ready(const struct run *r, uint32_t i)
{
    char        path[RUN_PATH_SIZE], line[RUN_URL_SIZE];
    struct stat st;
    bool        ready = false;

    if (run_path(path, r->nodes[i].dir, "ready") != 0) {
        return false;
    }
    FILE *f = stat(path, &st) == 0 ? fopen(path, "r") : NULL;
    if (f != NULL) {
        ready
            = fgets(line, sizeof line, f) != NULL && strchr(line, '\n') != NULL;
        fclose(f);
    }
    return ready;
}

/* Waits (bounded) until every node wrote its ready file. */
static int
run_nodes_wait_ready(struct run *r)
{
    for (uint32_t t = 0; t < RUN_READY_MS; t += 100u) {
        uint32_t ready = 0;
        for (uint32_t i = 0; i < r->node_count; i++) {
            int status;
            ready += run_node_ready(r, i);
            if (r->nodes[i].pid > 0
                && waitpid(r->nodes[i].pid, &status, WNOHANG)
                    == r->nodes[i].pid) {
                fprintf(stderr, "chaos: node %u exited before ready (see %s)\n",
                    i + 1, r->nodes[i].dir);
                r->nodes[i].pid = 0;
                return -1;
            }
        }
        if (ready == r->node_count) {
            return 0;
        }
        if (run_interrupted) {
            return -1;
        }
        run_sleep_ms(100);
    }
    fprintf(stderr, "chaos: nodes not ready in %u ms\n", RUN_READY_MS);
    return -1;
}

/* Whether a node log holds needle on some line (lines longer than the
 * buffer are read in pieces; the messages looked for start their line). */
static bool
run_file_contains(const char *path, const char *needle)
{
    char  line[4096];
    bool  found = false;
    FILE *f     = fopen(path, "r");

    if (f == NULL) {
        return false;
    }
    while (!found && fgets(line, sizeof line, f) != NULL) {
        found = strstr(line, needle) != NULL;
    }
    fclose(f);
    return found;
}

/* A node that starts on an empty data dir with peers refuses appends until
 * it has read every live replica's log to the end (node/store.c,
 * "joining"); the workload starts once every node takes appends. */
static int
run_nodes_wait_joined(struct run *r)
{
    for (uint32_t t = 0; t < RUN_CONVERGE_MS; t += 100u) {
        uint32_t joined = 0;
        for (uint32_t i = 0; i < r->node_count; i++) {
            char path[RUN_PATH_SIZE];
            if (run_path(path, r->nodes[i].dir, "log") != 0) {
                return -1;
            }
            joined += run_file_contains(path, "caught up after starting");
        }
        if (joined == r->node_count) {
            printf("chaos: %u nodes take appends after %.1f s\n", joined,
                (double) t / 1e3);
            return 0;
        }
        if (run_interrupted) {
            return -1;
        }
        run_sleep_ms(100);
    }
    fprintf(
        stderr, "chaos: nodes still joining after %u ms\n", RUN_CONVERGE_MS);
    return -1;
}

static void
run_nodes_kill(struct run *r)
{
    for (uint32_t i = 0; i < r->node_count; i++) {
        if (r->nodes[i].pid > 0) {
            kill(r->nodes[i].pid, SIGKILL);
            waitpid(r->nodes[i].pid, NULL, 0);
            r->nodes[i].pid = 0;
        }
    }
}

/* Reaps node i after a signal, waiting at most bound_ms before a SIGKILL
 * (a graceful stop that hangs is cut short, and says so). */
static void
run_node_reap(struct run *r, uint32_t i, uint32_t bound_ms)
{
    pid_t pid = r->nodes[i].pid;

    for (uint32_t t = 0; pid > 0 && t < bound_ms; t += 50u) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            r->nodes[i].pid = 0;
            return;
        }
        run_sleep_ms(50u);
    }
    if (pid > 0) {
        if (bound_ms > 0) {
            fprintf(stderr, "chaos: node %u still up after %u ms; SIGKILL\n",
                i + 1, bound_ms);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        r->nodes[i].pid = 0;
    }
}

/* Main thread only: starts again, with the same arguments and data dir,
 * every node whose bit is set in r->respawn. Its ready file goes first, so
 * that waiting for it waits for the new process. */
static void
run_nodes_respawn(struct run *r)
{
    uint32_t want = (uint32_t) atomic_load(&r->respawn);

    for (uint32_t i = 0; i < r->node_count && want != 0; i++) {
        char path[RUN_PATH_SIZE];
        if ((want & (1u << i)) == 0) {
            continue;
        }
        if (run_path(path, r->nodes[i].dir, "ready") == 0) {
            unlink(path);
        }
        if (r->nodes[i].pid == 0 && run_node_spawn(r, i) != 0) {
            fprintf(stderr, "chaos: cannot restart node %u\n", i + 1);
        }
        atomic_fetch_and(&r->respawn, ~(uint_fast32_t) (1u << i));
    }
}

/* Main thread, for ms: restarts the nodes the nemesis took down. */
static void
run_serve(struct run *r, uint32_t ms)
{
    for (uint32_t t = 0; t < ms && !run_stopping(r); t += 50u) {
        run_nodes_respawn(r);
        run_sleep_ms(50u);
    }
}

/* The process part of the final heal: every stopped node continues, every
 * node still down starts again. */
static void
run_nodes_heal(struct run *r)
{
    for (uint32_t i = 0; i < r->node_count; i++) {
        if (r->nodes[i].pid > 0) {
            kill(r->nodes[i].pid, SIGCONT);
        } else {
            atomic_fetch_or(&r->respawn, (uint_fast32_t) (1u << i));
        }
    }
    run_nodes_respawn(r);
}

/* Directory, ports, paths of every node. */
static int
run_nodes_init(struct run *r)
{
    r->node_count = r->o.regions * r->o.npr;
    for (uint32_t i = 0; i < r->node_count; i++) {
        struct run_node *n = &r->nodes[i];
        char             name[32];
        n->id     = i + 1;
        n->region = i / r->o.npr;
        n->port   = run_port_reserve(i, &n->port_fd);
        if (n->port == 0) {
            return -1;
        }
        snprintf(n->url, sizeof n->url, "tcp://127.0.0.1:%u", n->port);
        snprintf(name, sizeof name, "n%u", n->id);
        if (run_path(n->dir, r->dir, name) != 0
            || (mkdir(n->dir, 0700) != 0 && errno != EEXIST)) {
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ clients -- */

static int
run_client_open(const struct run *r, const char *const *urls, size_t count,
    const char *region, mrd_client **out)
{
    mrd_client_opts opts;
    mrd_client_opts_init(&opts);
    opts.addresses     = urls;
    opts.address_count = count;
    opts.region        = region;
    opts.key_file      = r->admin_key;
    opts.keyring_file  = r->client_ring;
    /* One attempt per call unless a node refuses or a connection fails:
     * an idempotency key reaches other replicas only with its append, so a
     * retry on another node after a timeout may write the append twice
     * (docs/ARCHITECTURE.md, "Idempotency across nodes"). A known gap the
     * checker counts as "duplicate"; --failover-on-timeout lets it show. */
    if (!r->o.failover_on_timeout) {
        opts.attempt_timeout_ms = opts.timeout_ms;
    }
    int rv = mrd_client_open(&opts, out);
    if (rv != MRD_OK) {
        fprintf(stderr, "chaos: client open: %s (%s)\n", mrd_errname(rv),
            mrd_errdetail());
    }
    return rv;
}

/* ----------------------------------------------------------- workload -- */

struct run_worker {
    struct run *r;
    uint32_t    process;
    uint64_t    seed;
    pthread_t   thread;
    bool        started;
};

/* A refusal that certainly wrote nothing. */
static bool
run_err_is_fail(int rv)
{
    switch (rv) {
    case MRD_EINVAL:
    case MRD_EVERSION:
    case MRD_EIDEMPOTENCY:
    case MRD_ENAME:
    case MRD_ETOOBIG:
    case MRD_EPERM:
    case MRD_ETYPE:
        return true;
    default:
        return false;
    }
}

static void
run_record(struct run *r, const struct chaos_op *op)
{
    if (chaos_history_append(r->history, op, NULL) != MRD_OK) {
        fprintf(stderr, "chaos: history append failed; stopping\n");
        atomic_store(&r->stop, true);
    }
}

/* One append: invoke, call, completion. */
static void
run_worker_append(
    struct run_worker *w, mrd_client *c, uint64_t n, uint64_t *rng)
{
    struct run      *r = w->r;
    char             stream[32], id[CHAOS_ID_SIZE_MAX];
    const char      *ids[1] = { id };
    static const int acks[3]
        = { MRD_ACK_LOCAL, MRD_ACK_REGION, MRD_ACK_GLOBAL };

    snprintf(
        stream, sizeof stream, "s%u", (unsigned) (run_rand(rng) % RUN_STREAMS));
    snprintf(id, sizeof id, "p%u-%" PRIu64, w->process, n);
    struct chaos_op op = { .process = w->process,
        .type                       = CHAOS_TYPE_INVOKE,
        .f                          = CHAOS_F_APPEND,
        .stream                     = stream,
        .ids                        = ids,
        .id_count                   = 1,
        .ack                        = (enum chaos_ack)(n % 3u) };
    run_record(r, &op);

    mrd_event_in ev = { .type = "chaos", .data = id, .data_size = strlen(id) };
    mrd_append_opts   ao;
    mrd_append_result res;
    mrd_append_opts_init(&ao);
    ao.ack                  = acks[n % 3u];
    ao.ack_wait_ms          = RUN_ACK_WAIT_MS;
    ao.idempotency_key      = id;
    ao.idempotency_key_size = strlen(id);
    memset(&res, 0, sizeof res);
    int rv = mrd_append(c, stream, &ev, 1, &ao, &res);

    struct chaos_op done = {
        .process = w->process, .f = CHAOS_F_APPEND, .ids = ids, .id_count = 1
    };
    if (rv == MRD_OK) {
        done.type    = CHAOS_TYPE_OK;
        done.has_dot = true;
        done.dot     = res.first_dot;
        done.has_pos = true;
        done.pos     = res.first_position;
        atomic_fetch_add(&r->stats.acked, 1);
    } else {
        done.type = run_err_is_fail(rv) ? CHAOS_TYPE_FAIL : CHAOS_TYPE_INFO;
        done.err  = mrd_errname(rv);
        atomic_fetch_add(
            done.type == CHAOS_TYPE_FAIL ? &r->stats.failed : &r->stats.info,
            1);
    }
    run_record(r, &done);
}

static void *
run_worker_main(void *arg)
{
    struct run_worker *w = arg;
    struct run        *r = w->r;
    const char        *urls[RUN_NODES_MAX];
    size_t             count = 0;
    char               region[16];
    mrd_client        *c   = NULL;
    uint64_t           rng = w->seed;

    for (uint32_t i = 0; i < r->node_count; i++) {
        if (r->nodes[i].region == w->process / r->o.clients) {
            urls[count++] = r->nodes[i].client_url;
        }
    }
    snprintf(region, sizeof region, "r%u", w->process / r->o.clients + 1u);
    if (run_client_open(r, urls, count, region, &c) != MRD_OK) {
        atomic_store(&r->stop, true);
        return NULL;
    }
    for (uint64_t n = 1; !run_stopping(r); n++) {
        run_worker_append(w, c, n, &rng);
    }
    mrd_client_close(c);
    return NULL;
}

/* ------------------------------------------------------------ nemesis -- */

enum run_fault {
    RUN_F_ISOLATE_NODE   = 0,
    RUN_F_ISOLATE_REGION = 1,
    RUN_F_HALVES         = 2,
    RUN_F_ONE_WAY        = 3,
    RUN_F_FLIP_FLOP      = 4,
    RUN_F_LATENCY        = 5,
    RUN_F_COUNT          = 6, /* link faults; process faults follow */
    RUN_F_KILL           = 6, /* kill -9, restart after 1-4 s */
    RUN_F_PAUSE          = 7, /* SIGSTOP, SIGCONT after 1-4 s */
    RUN_F_TERM           = 8, /* SIGTERM, restart after 1-4 s */
    RUN_F_ALL            = 9,
};

typedef bool run_drop[RUN_NODES_MAX][RUN_NODES_MAX];

/* Cuts every link between `side` and the rest; both ways unless one_way
 * (then only bytes from side to the rest). */
static void
run_drop_sides(
    const struct run *r, const bool *side, bool one_way, run_drop drop)
{
    memset(drop, 0, sizeof(run_drop));
    for (uint32_t a = 0; a < r->node_count; a++) {
        for (uint32_t b = 0; b < r->node_count; b++) {
            if (side[a] && !side[b]) {
                drop[a][b] = true;
                drop[b][a] = drop[b][a] || !one_way;
            }
        }
    }
}

static void
run_side_region(const struct run *r, uint32_t region, bool *side)
{
    for (uint32_t i = 0; i < r->node_count; i++) {
        side[i] = r->nodes[i].region == region;
    }
}

/* Flip-flop: region g1 and g2 isolated in turn, every 700 ms. */
static void
run_flip_flop(struct run *r, uint32_t g1, uint32_t g2, uint32_t dur_ms)
{
    bool     side[RUN_NODES_MAX];
    run_drop drop;
    for (uint32_t t = 0, k = 0; t < dur_ms && !run_stopping(r);
         t += 700u, k++) {
        run_side_region(r, k % 2u == 0 ? g1 : g2, side);
        run_drop_sides(r, side, false, drop);
        run_links_apply(r, drop, -1, 0, NULL);
        run_nap(r, 700u);
    }
}

/* Applies one fault for dur_ms, then heals; logs it. */
static void
run_fault_one(
    struct run *r, uint64_t *rng, enum run_fault kind, uint32_t dur_ms)
{
    bool     side[RUN_NODES_MAX] = { false };
    run_drop drop;
    uint64_t start = run_t_us(r);
    uint32_t x     = (uint32_t) (run_rand(rng) % r->node_count);
    uint32_t g     = (uint32_t) (run_rand(rng) % r->o.regions);
    uint32_t g2    = (g + 1u) % r->o.regions;
    char     detail[128];

    switch (kind) {
    case RUN_F_ISOLATE_NODE:
        side[x] = true;
        run_drop_sides(r, side, false, drop);
        /* Clients only with --client-faults: a client that fails over
         * to another replica meets the open question of session order
         * across failover and the cross-node idempotency gap
         * (docs/CHAOS.md, docs/ARCHITECTURE.md), which the checker counts;
         * by default the node is cut from its peers only. */
        run_links_apply(r, drop, -1, 0, r->o.client_faults ? side : NULL);
        snprintf(detail, sizeof detail, "node %u%s", x + 1,
            r->o.client_faults ? " (clients too)" : "");
        run_nap(r, dur_ms);
        break;
    case RUN_F_ISOLATE_REGION:
    case RUN_F_ONE_WAY:
        run_side_region(r, g, side);
        run_drop_sides(r, side, kind == RUN_F_ONE_WAY, drop);
        run_links_apply(r, drop, -1, 0, NULL);
        snprintf(detail, sizeof detail, "region r%u%s", g + 1,
            kind == RUN_F_ONE_WAY ? " -> rest cut" : "");
        run_nap(r, dur_ms);
        break;
    case RUN_F_HALVES: {
        size_t len = (size_t) snprintf(detail, sizeof detail, "nodes");
        for (uint32_t i = 0, k = 0; i < r->node_count; i++) {
            /* A seeded half, never empty nor everything. */
            side[i] = k < r->node_count / 2u && (run_rand(rng) & 1u) != 0;
            k += side[i];
        }
        side[x] = true;
        for (uint32_t i = 0; i < r->node_count && len < sizeof detail; i++) {
            if (side[i]) {
                len += (size_t) snprintf(
                    detail + len, sizeof detail - len, " %u", i + 1);
            }
        }
        run_drop_sides(r, side, false, drop);
        run_links_apply(r, drop, -1, 0, NULL);
        run_nap(r, dur_ms);
        break;
    }
    case RUN_F_FLIP_FLOP:
        snprintf(detail, sizeof detail, "regions r%u / r%u", g + 1, g2 + 1);
        run_flip_flop(r, g, g2, dur_ms);
        break;
    case RUN_F_LATENCY:
    case RUN_F_PAUSE: /* process faults: not here (run_fault_process) */
    case RUN_F_TERM:
    case RUN_F_ALL:
    case RUN_F_COUNT:
    default: {
        uint32_t spike = run_between(rng, RUN_SPIKE_MIN_MS, RUN_SPIKE_MAX_MS);
        run_links_apply(r, NULL, (int) g, spike, NULL);
        snprintf(detail, sizeof detail, "+%u ms on links of r%u", spike, g + 1);
        run_nap(r, dur_ms);
        kind = RUN_F_LATENCY;
        break;
    }
    }
    run_heal(r);
    static const char *const names[RUN_F_COUNT] = { "isolate-node",
        "isolate-region", "halves", "one-way", "flip-flop", "latency" };
    r->faults_injected++;
    run_fault_log(r, names[kind], start, run_t_us(r), "%s", detail);
}

/* Nemesis thread: asks the main thread to start node x again and waits
 * (bounded) for its ready file; false if the run stopped first (the
 * final heal starts it then) or it never became ready. */
static bool
run_restart_wait(struct run *r, uint32_t x)
{
    atomic_fetch_or(&r->respawn, (uint_fast32_t) (1u << x));
    while ((atomic_load(&r->respawn) & (1u << x)) != 0) {
        if (!run_nap(r, 50u)) {
            return false;
        }
    }
    for (uint32_t t = 0; t < RUN_READY_MS; t += 50u) {
        if (run_node_ready(r, x)) {
            return true;
        }
        if (!run_nap(r, 50u)) {
            return false;
        }
    }
    return false;
}

/* One process fault on a seeded node: kill -9 or SIGTERM then a restart
 * with the same arguments and data dir, or SIGSTOP then SIGCONT, after a
 * seeded 1-4 s; logged from the signal until the node is ready again. */
static void
run_fault_process(struct run *r, uint64_t *rng, enum run_fault kind)
{
    static const char *const names[] = { "kill-9", "pause", "term" };
    uint32_t                 x = (uint32_t) (run_rand(rng) % r->node_count);
    uint32_t                 down
        = run_between(rng, RUN_PROC_DOWN_MIN_MS, RUN_PROC_DOWN_MAX_MS);
    uint64_t start = run_t_us(r);
    pid_t    pid   = r->nodes[x].pid;
    bool     ready = true;

    if (pid <= 0) {
        return; /* down already: nothing to do */
    }
    if (kind == RUN_F_PAUSE) {
        kill(pid, SIGSTOP);
        run_nap(r, down);
        kill(pid, SIGCONT); /* even when stopping: heal */
    } else {
        kill(pid, kind == RUN_F_KILL ? SIGKILL : SIGTERM);
        run_node_reap(r, x, kind == RUN_F_KILL ? 0u : RUN_TERM_MS);
        ready = run_nap(r, down) && run_restart_wait(r, x);
    }
    r->faults_injected++;
    run_fault_log(r, names[kind - RUN_F_KILL], start, run_t_us(r),
        "node %u (pid %d), %s after %.1f s%s", x + 1, (int) pid,
        kind == RUN_F_PAUSE ? "continued" : "restarted", (double) down / 1e3,
        ready ? "" : "; not ready before the end (final heal)");
}

struct run_nemesis {
    struct run *r;
    uint64_t    seed;
    pthread_t   thread;
};

static void *
run_nemesis_main(void *arg)
{
    struct run_nemesis *nm  = arg;
    struct run         *r   = nm->r;
    uint64_t            rng = nm->seed;
    uint64_t end_us = run_t_us(r) + (uint64_t) r->o.duration_s * 1000000u;

    while (!run_stopping(r)) {
        uint32_t gap = run_between(&rng, 1000u, 2500u);
        uint32_t dur = run_between(&rng, 1500u, 4000u);
        if (run_t_us(r) + (uint64_t) (gap + dur) * 1000u > end_us
            || !run_nap(r, gap)) {
            break;
        }
        /* Without process faults the schedule is what it always was. */
        uint32_t       kinds = r->o.process_faults ? RUN_F_ALL : RUN_F_COUNT;
        enum run_fault kind  = (enum run_fault)(run_rand(&rng) % kinds);
        if (kind >= RUN_F_KILL) {
            run_fault_process(r, &rng, kind);
        } else {
            run_fault_one(r, &rng, kind, dur);
        }
    }
    run_heal(r);
    return NULL;
}

/* -------------------------------------------------------- final state -- */

/* One node's events as read from its shard logs. */
struct run_log {
    struct chaos_event *events; /* owned, strings strdup'ed */
    size_t              count, cap;
    uint64_t            shard_count[RUN_SHARDS];
};

static void
run_log_fini(struct run_log *l)
{
    for (size_t i = 0; i < l->count; i++) {
        free((void *) (uintptr_t) l->events[i].stream);
        free((void *) (uintptr_t) l->events[i].id);
    }
    free(l->events);
    memset(l, 0, sizeof *l);
}

/* The id the workload put in an event's data, or NULL. */
static char *
run_event_id(const mrd_event *e)
{
    if (e->data_size == 0 || e->data_size > CHAOS_ID_SIZE_MAX) {
        return NULL;
    }
    char *id = malloc(e->data_size + 1);
    if (id != NULL) {
        memcpy(id, e->data, e->data_size);
        id[e->data_size] = '\0';
        if (!chaos_id_valid(id)) {
            free(id);
            id = NULL;
        }
    }
    return id;
}

static int
run_log_add(struct run_log *l, const mrd_event *e, uint32_t shard)
{
    if (l->count == l->cap) {
        size_t cap  = l->cap == 0 ? 1024u : l->cap * 2u;
        void  *more = realloc(l->events, cap * sizeof *l->events);
        if (more == NULL || cap > CHAOS_NODE_EVENTS_MAX) {
            free(more == l->events ? NULL : more);
            return -1;
        }
        l->events = more;
        l->cap    = cap;
    }
    struct chaos_event *ce = &l->events[l->count];
    ce->stream             = strdup(e->stream);
    ce->position           = e->position;
    ce->id                 = run_event_id(e);
    ce->dot                = e->dot;
    ce->shard              = shard;
    ce->log_seq            = e->log_seq;
    if (ce->stream == NULL) {
        free((void *) (uintptr_t) ce->id);
        return -1;
    }
    l->count++;
    return 0;
}

/* Reads every shard log of the node c talks to; keep: store the events,
 * else only count them. */
static int
run_log_read(mrd_client *c, bool keep, struct run_log *l)
{
    memset(l->shard_count, 0, sizeof l->shard_count);
    for (uint32_t shard = 0; shard < RUN_SHARDS; shard++) {
        uint64_t after = 0;
        bool     end   = false;
        for (uint32_t p = 0; p < RUN_LOG_PAGES_MAX && !end; p++) {
            mrd_events *ev = NULL;
            int         rv = mrd_read_log(c, shard, after, RUN_LOG_PAGE, &ev);
            if (rv != MRD_OK) {
                return rv;
            }
            for (size_t i = 0; i < mrd_events_count(ev); i++) {
                if (keep && run_log_add(l, mrd_events_at(ev, i), shard) != 0) {
                    mrd_events_free(ev);
                    return MRD_ENOMEM;
                }
            }
            l->shard_count[shard] += mrd_events_count(ev);
            end   = mrd_events_end(ev) != 0 || mrd_events_count(ev) == 0;
            after = mrd_events_next(ev);
            mrd_events_free(ev);
        }
        if (!end) {
            return MRD_EFULL;
        }
    }
    return MRD_OK;
}

/* Polls every node directly until all hold the same count in every shard
 * (bounded). caught_us[i] gets when node i first held its final counts;
 * returns whether they converged. */
static bool
run_converge(struct run *r, mrd_client **direct, uint64_t *caught_us)
{
    uint64_t counts[RUN_NODES_MAX][RUN_SHARDS];
    uint64_t changed_us[RUN_NODES_MAX];
    uint64_t start = mrd_now_mono_ms();

    memset(counts, 0xff, sizeof counts);
    memset(changed_us, 0, sizeof changed_us);
    while (mrd_now_mono_ms() - start < RUN_CONVERGE_MS && !run_interrupted) {
        bool all_read = true;
        for (uint32_t i = 0; i < r->node_count; i++) {
            struct run_log l;
            memset(&l, 0, sizeof l);
            uint64_t now = run_t_us(r);
            if (run_log_read(direct[i], false, &l) != MRD_OK) {
                all_read = false;
                continue;
            }
            if (memcmp(counts[i], l.shard_count, sizeof l.shard_count) != 0) {
                memcpy(counts[i], l.shard_count, sizeof l.shard_count);
                changed_us[i] = now;
            }
        }
        bool same = all_read;
        for (uint32_t i = 1; i < r->node_count && same; i++) {
            same = memcmp(counts[i], counts[0], sizeof counts[0]) == 0;
        }
        if (same) {
            memcpy(caught_us, changed_us, r->node_count * sizeof *caught_us);
            return true;
        }
        run_sleep_ms(RUN_POLL_MS);
    }
    return false;
}

/* Reads every node's logs into logs[] and fills nodes[] for the checker. */
static int
run_final_read(struct run *r, mrd_client **direct, const uint64_t *caught_us,
    bool converged, struct run_log *logs, struct chaos_node_final *nodes)
{
    for (uint32_t i = 0; i < r->node_count; i++) {
        int rv = run_log_read(direct[i], true, &logs[i]);
        if (rv != MRD_OK) {
            fprintf(stderr, "chaos: final read of node %u: %s\n", i + 1,
                mrd_errname(rv));
            return -1;
        }
        nodes[i].node_id       = r->nodes[i].id;
        nodes[i].has_caught_up = converged;
        nodes[i].caught_up_us  = caught_us[i];
        nodes[i].events        = logs[i].events;
        nodes[i].event_count   = logs[i].count;
    }
    return 0;
}

/* The fault schedule as it ran, from faults.jsonl (flushed line by
 * line), one fault a line. */
static void
run_faults_print(const struct run *r, FILE *out)
{
    char  path[RUN_PATH_SIZE], line[512];
    FILE *f
        = run_path(path, r->dir, "faults.jsonl") == 0 ? fopen(path, "r") : NULL;
    fprintf(out, "faults (history clock, us):\n");
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        fprintf(out, "    %s", line);
    }
    if (f != NULL) {
        fclose(f);
    }
}

/* Loads the history, checks, prints the report to stdout and report.txt.
 * 0 passed, 1 failed, -1 the checker could not run. */
static int
run_check(struct run *r, const struct chaos_final *f, bool converged)
{
    char                path[RUN_PATH_SIZE];
    struct chaos_error  err;
    struct chaos_ops   *ops = NULL;
    struct chaos_report rep;
    int                 rv;

    memset(&err, 0, sizeof err);
    if (run_path(path, r->dir, "history.jsonl") != 0) {
        return -1;
    }
    rv = chaos_ops_load(path, NULL, &err, &ops);
    if (rv != MRD_OK) {
        fprintf(stderr, "chaos: history: %s (line %" PRIu64 ": %s)\n",
            mrd_errname(rv), err.line, err.text);
        return -1;
    }
    rv = chaos_check_all(ops, f, &err, &rep);
    chaos_ops_free(ops);
    if (rv != MRD_OK) {
        fprintf(stderr, "chaos: checker: %s (%s)\n", mrd_errname(rv), err.text);
        return -1;
    }
    bool     passed    = chaos_report_passed(&rep) && converged;
    uint64_t anomalies = 0;
    for (int k = 0; k < CHAOS_CHECK_COUNT; k++) {
        anomalies += rep.checks[k].count;
    }
    if (run_path(path, r->dir, "report.txt") != 0) {
        return -1;
    }
    FILE *out    = fopen(path, "w");
    FILE *dst[2] = { stdout, out };
    for (int d = 0; d < 2; d++) {
        if (dst[d] == NULL) {
            continue;
        }
        chaos_check_report(dst[d], &rep);
        run_faults_print(r, dst[d]);
        fprintf(dst[d],
            "seed: %" PRIu64 "\n"
            "nodes: %u in %u regions, clients: %u, duration %u s\n"
            "faults injected: %u\n"
            "appends acked: %" PRIu64 "\n"
            "appends failed: %" PRIu64 "\n"
            "appends info: %" PRIu64 "\n"
            "anomalies: %" PRIu64 "\n"
            "converged: %s\n"
            "convergence p50: %.3f s, max: %.3f s\n"
            "result: %s\n",
            r->o.seed, r->node_count, r->o.regions, r->o.regions * r->o.clients,
            r->o.duration_s, r->faults_injected,
            (uint64_t) atomic_load(&r->stats.acked),
            (uint64_t) atomic_load(&r->stats.failed),
            (uint64_t) atomic_load(&r->stats.info), anomalies,
            converged ? "yes" : "NO (timed out)",
            (double) rep.convergence_time.p50_us / 1e6,
            (double) rep.convergence_time.max_us / 1e6,
            passed ? "PASS" : "FAIL");
    }
    if (out != NULL) {
        fclose(out);
    }
    return passed ? 0 : 1;
}

/* Every RUN_LAG_SAMPLE_MS, each node's log_events gauge (events held in
 * its shard logs) into lag.jsonl, for the timeline's lag lines. The runner
 * dials nodes directly, past the proxies; a node that is down or paused
 * has no sample for that second. */
#define RUN_LAG_SAMPLE_MS 1000u

static void *
run_lag_main(void *arg)
{
    struct run *r                     = arg;
    mrd_client *direct[RUN_NODES_MAX] = { NULL };
    char        path[RUN_PATH_SIZE];
    FILE       *out
        = run_path(path, r->dir, "lag.jsonl") == 0 ? fopen(path, "w") : NULL;

    if (out == NULL) {
        fprintf(stderr, "chaos: cannot write lag.jsonl\n");
        return NULL;
    }
    while (!atomic_load(&r->lag_stop) && !run_interrupted) {
        for (uint32_t i = 0; i < r->node_count; i++) {
            mrd_stats *st = NULL;
            uint64_t   n  = 0;
            if (direct[i] == NULL) {
                const char *url[1] = { r->nodes[i].url };
                if (run_client_open(r, url, 1, NULL, &direct[i]) != MRD_OK) {
                    continue;
                }
            }
            if (mrd_node_stats_get(direct[i], &st) == MRD_OK
                && mrd_stats_find(st, "log_events", &n) == MRD_OK) {
                fprintf(out,
                    "{\"t\":%" PRIu64 ",\"node\":%" PRIu64
                    ",\"events\":%" PRIu64 "}\n",
                    run_t_us(r), (uint64_t) r->nodes[i].id, n);
            }
            mrd_stats_free(st);
        }
        fflush(out);
        for (uint32_t w = 0;
             w < RUN_LAG_SAMPLE_MS / RUN_POLL_MS && !atomic_load(&r->lag_stop);
             w++) {
            run_sleep_ms(RUN_POLL_MS);
        }
    }
    fclose(out);
    for (uint32_t i = 0; i < r->node_count; i++) {
        mrd_client_close(direct[i]);
    }
    return NULL;
}

static void
run_lag_stop(struct run *r)
{
    if (r->lag_started) {
        atomic_store(&r->lag_stop, true);
        pthread_join(r->lag_thread, NULL);
        r->lag_started = false;
    }
}

/* Every node's counters at the end, into stats.json: what a failed run's
 * reader looks at first (link_stalls, link_redials, rejected_*). */
static void
run_stats_save(struct run *r, mrd_client **direct)
{
    char  path[RUN_PATH_SIZE];
    FILE *out
        = run_path(path, r->dir, "stats.json") == 0 ? fopen(path, "w") : NULL;
    if (out == NULL) {
        fprintf(stderr, "chaos: cannot write stats.json\n");
        return;
    }
    fprintf(out, "{");
    for (uint32_t i = 0; i < r->node_count; i++) {
        mrd_stats *st = NULL;
        fprintf(out, "%s\n\"%" PRIu64 "\":{", i > 0 ? "," : "",
            (uint64_t) r->nodes[i].id);
        if (mrd_node_stats_get(direct[i], &st) == MRD_OK) {
            for (size_t k = 0; k < mrd_stats_count(st); k++) {
                /* Counter names are [a-z_0-9]: no escaping needed. */
                fprintf(out, "%s\"%s\":%" PRIu64, k > 0 ? "," : "",
                    mrd_stats_name(st, k), mrd_stats_value(st, k));
            }
        }
        mrd_stats_free(st);
        fprintf(out, "}");
    }
    fprintf(out, "\n}\n");
    fclose(out);
}

/* After the workload: convergence, final state, checks. */
static int
run_finish(struct run *r)
{
    mrd_client             *direct[RUN_NODES_MAX]    = { NULL };
    uint64_t                caught_us[RUN_NODES_MAX] = { 0 };
    struct run_log          logs[RUN_NODES_MAX];
    struct chaos_node_final nodes[RUN_NODES_MAX];
    struct chaos_final      f;
    char                    path[RUN_PATH_SIZE];
    int                     rv = -1;

    memset(logs, 0, sizeof logs);
    memset(nodes, 0, sizeof nodes);
    memset(&f, 0, sizeof f);
    f.heal_us = r->heal_us;
    /* Restarted nodes first serve, then catch up (run_converge). */
    if (run_nodes_wait_ready(r) != 0) {
        goto done;
    }
    for (uint32_t i = 0; i < r->node_count; i++) {
        const char *url[1] = { r->nodes[i].url };
        if (run_client_open(r, url, 1, NULL, &direct[i]) != MRD_OK) {
            goto done;
        }
    }
    bool converged = run_converge(r, direct, caught_us);
    printf("chaos: %s %.3f s after the heal\n",
        converged ? "converged" : "NOT converged",
        (double) (run_t_us(r) - f.heal_us) / 1e6);
    run_lag_stop(r);
    run_stats_save(r, direct);
    if (run_final_read(r, direct, caught_us, converged, logs, nodes) != 0) {
        goto done;
    }
    f.nodes      = nodes;
    f.node_count = r->node_count;
    if (run_path(path, r->dir, "final.json") != 0
        || chaos_final_save(path, &f) != MRD_OK) {
        fprintf(stderr, "chaos: cannot save %s\n", path);
        goto done;
    }
    rv = run_check(r, &f, converged);
    char why[256];
    if (rv >= 0 && chaos_timeline_write(r->dir, why, sizeof why) != MRD_OK) {
        fprintf(stderr, "chaos: timeline: %s\n", why);
    }
done:
    run_lag_stop(r);
    for (uint32_t i = 0; i < r->node_count; i++) {
        mrd_client_close(direct[i]);
        run_log_fini(&logs[i]);
    }
    return rv;
}

/* --------------------------------------------------------------- main -- */

static void
run_on_signal(int sig)
{
    (void) sig;
    run_interrupted = 1;
}

/* Everything up to running nodes. 0, or -1 (setup failed). */
static int
run_setup(struct run *r, uint64_t *rng)
{
    uint8_t cluster_id[16], admin_sk[64], admin_pk[32];
    char    path[RUN_PATH_SIZE];

    if (r->o.dir != NULL) {
        snprintf(r->dir, sizeof r->dir, "%s", r->o.dir);
        if (mkdir(r->dir, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "chaos: mkdir %s: %s\n", r->dir, strerror(errno));
            return -1;
        }
        /* Node stores keep their cluster id: an earlier run's data dirs
         * would refuse this run's topology. */
        struct stat st;
        if (run_path(path, r->dir, "topology") == 0 && stat(path, &st) == 0) {
            fprintf(stderr,
                "chaos: %s holds an earlier run; give a new --dir\n", r->dir);
            return -1;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(r->dir, sizeof r->dir, "%s/meridian-chaos-XXXXXX",
            tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
        if (mkdtemp(r->dir) == NULL) {
            fprintf(stderr, "chaos: mkdtemp: %s\n", strerror(errno));
            return -1;
        }
    }
    printf("chaos: seed %" PRIu64 ", dir %s\n", r->o.seed, r->dir);
    fflush(stdout);
    if (run_path(r->node_ring, r->dir, "nodes.keyring") != 0
        || run_path(r->client_ring, r->dir, "client.keyring") != 0
        || run_path(r->topo_path, r->dir, "topology") != 0
        || run_path(path, r->dir, "faults.jsonl") != 0
        || run_nodes_init(r) != 0) {
        fprintf(stderr, "chaos: cannot lay out %s\n", r->dir);
        return -1;
    }
    r->faults = fopen(path, "w");
    /* Key files refuse to overwrite: a run that stopped before writing
     * its topology may have left some. */
    for (uint32_t i = 0; i < r->node_count; i++) {
        char key[RUN_PATH_SIZE];
        if (run_path(key, r->nodes[i].dir, "node.key") == 0) {
            unlink(key);
        }
    }
    if (run_path(path, r->dir, "admin.key") == 0) {
        unlink(path);
    }
    for (size_t i = 0; i < sizeof cluster_id; i++) {
        cluster_id[i] = (uint8_t) run_rand(rng);
    }
    run_latency_init(r, rng);
    if (r->faults == NULL || run_proxies_start(r, rng) != 0
        || run_keys_make(r, cluster_id, admin_sk, admin_pk) != 0
        || run_topology_make(r, cluster_id, admin_sk, admin_pk) != 0) {
        sodium_memzero(admin_sk, sizeof admin_sk);
        return -1;
    }
    sodium_memzero(admin_sk, sizeof admin_sk);
    for (uint32_t i = 0; i < r->node_count; i++) {
        if (run_node_spawn(r, i) != 0) {
            fprintf(stderr, "chaos: cannot start node %u\n", i + 1);
            return -1;
        }
    }
    if (run_nodes_wait_ready(r) != 0) {
        return -1;
    }
    return run_nodes_wait_joined(r);
}

/* Workload and nemesis for the duration, then the heal. */
static int
run_chaos(struct run *r, uint64_t *rng)
{
    struct run_worker  workers[RUN_REGIONS_MAX * RUN_CLIENTS_MAX];
    uint32_t           worker_count = r->o.regions * r->o.clients;
    struct run_nemesis nemesis      = { .r = r, .seed = run_rand(rng) };
    char               path[RUN_PATH_SIZE];
    int                rv = 0;

    memset(workers, 0, sizeof workers);
    if (run_path(path, r->dir, "history.jsonl") != 0) {
        return -1;
    }
    r->t0_us = mrd_now_mono_us();
    if (chaos_history_open(path, &r->history) != MRD_OK) {
        fprintf(stderr, "chaos: cannot create %s\n", path);
        return -1;
    }
    for (uint32_t g = 0; g < worker_count; g++) {
        workers[g] = (struct run_worker) {
            .r = r, .process = g, .seed = run_rand(rng)
        };
        workers[g].started = pthread_create(&workers[g].thread, NULL,
                                 run_worker_main, &workers[g])
            == 0;
        rv = workers[g].started ? rv : -1;
    }
    bool nemesis_started
        = pthread_create(&nemesis.thread, NULL, run_nemesis_main, &nemesis)
        == 0;
    r->lag_started = pthread_create(&r->lag_thread, NULL, run_lag_main, r) == 0;
    run_serve(r, r->o.duration_s * 1000u);
    atomic_store(&r->stop, true);
    if (nemesis_started) {
        pthread_join(nemesis.thread, NULL);
    }
    run_heal(r);
    run_nodes_heal(r);
    r->heal_us = run_t_us(r);
    printf("chaos: healed at %.3f s; stopping the workload\n",
        (double) run_t_us(r) / 1e6);
    for (uint32_t g = 0; g < worker_count; g++) {
        if (workers[g].started) {
            pthread_join(workers[g].thread, NULL);
        }
    }
    if (chaos_history_close(r->history) != MRD_OK) {
        rv = -1;
    }
    r->history = NULL;
    return nemesis_started ? rv : -1;
}

int
main(int argc, char **argv)
{
    static struct run r; /* large: keep it off the stack */
    struct sigaction  sa;
    int               code;

    code = run_opts_parse(argc, argv, &r.o);
    if (code != 0) {
        return code == 1 ? 0 : 2;
    }
    if (sodium_init() < 0) {
        return 3;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = run_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    uint64_t rng = r.o.seed;

    if (run_setup(&r, &rng) != 0) {
        code = 3;
    } else if (run_chaos(&r, &rng) != 0) {
        code = run_interrupted ? 1 : 3;
    } else {
        int rv = run_finish(&r);
        code   = rv == 0 ? 0 : 1;
    }
    if (run_interrupted) {
        fprintf(stderr, "chaos: interrupted\n");
        code = 1;
    }
    run_lag_stop(&r);
    run_nodes_kill(&r);
    run_proxies_stop(&r);
    if (r.faults != NULL) {
        fclose(r.faults);
    }
    printf(
        "chaos: exit %d (seed %" PRIu64 ", dir %s)\n", code, r.o.seed, r.dir);
    return code;
}
