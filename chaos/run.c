/*
 * run.c: meridian-chaos, the chaos runner (docs/CHAOS.md).
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
 * Client threads in every region append single events with unique ids to a
 * set of streams (every ack level, some with a CRDT counter increment),
 * read whole streams and follow them with cursor tails, and record every
 * invocation and completion in history.jsonl. A nemesis thread runs a
 * seeded schedule of faults of the families --faults names (links,
 * processes, clocks, disks, clients), logged to faults.jsonl; a sampler
 * writes every node's log_events gauge to lag.jsonl. At the end it heals
 * everything, stops the workload, waits (bounded) until every node holds
 * the same number of events in every shard, reading each node directly on
 * its real port, saves every node's shard logs and stream states as
 * final.json and its counters as stats.json, runs the checker
 * (chaos/check.h): report.txt, and draws timeline.html.
 *
 * Exit: 0 every check passed, 1 a check failed (or interrupted), 2 usage,
 * 3 the cluster could not be set up. Every meridiand it started is killed
 * on the way out, every proxy stopped.
 */
/* setns(), unshare() and pipe2() for disk faults: Linux, like the rest of
 * the harness (network namespaces, prctl). */
#define _GNU_SOURCE 1
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
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
#define RUN_CLIENTS_MAX 64u
/* How long a node waits for a region or global ack before it answers
 * MRD_EDURABILITY: short, so a partition costs the workload little. */
#define RUN_ACK_WAIT_MS 1500u
/* A client call's deadline and one attempt's: a timed-out attempt is sent
 * again to the same node (the library pins an append whose outcome is
 * unknown), which is what makes idempotency matter. */
#define RUN_CALL_MS 8000u
#define RUN_ATTEMPT_MS 2000u
/* Workload mix, in percent: appends that also increment the stream's
 * counter "n", and operations that are reads of a whole stream. */
#define RUN_OPS_PCT 33u
/* Acknowledgement levels of appends: local, region, and global for the
 * rest. */
#define RUN_ACK_LOCAL_PCT 60u
#define RUN_ACK_REGION_PCT 25u
#define RUN_READ_PCT 10u
/* Operations that follow a stream with a cursor tail from its start for
 * RUN_TAIL_MS (recorded as a read: what it delivered, in order), and the
 * wait of each poll. A cursor tail resumes on another node after a
 * failover with no gap and no duplicate: the checker sees duplicates. */
#define RUN_TAIL_PCT 4u
#define RUN_TAIL_MS 1000u
#define RUN_TAIL_POLL_MS 200u
/* Events a workload read asks for: every event of a run's stream. */
#define RUN_READ_COUNT 1000u
/* Clock faults: a node's wall clock moves by 5 to 60 s, either way. */
#define RUN_SKEW_MIN_S 5u
#define RUN_SKEW_MAX_S 60u
/* Disk faults: each node's data dir is a tmpfs of this size in a private
 * mount namespace, and a full disk is a ballast file filling it. A run's
 * store stays far below: a few MB. */
#define RUN_DISK_MB 256u
/* Tampering: each of bit flips (per chunk), frame drops, duplicates and
 * replays at this rate; every one costs the link its connection. */
#define RUN_TAMPER_PPM 5000u
/* A capped region: its links carry this many bytes a second each way, and
 * close slowly. */
#define RUN_BANDWIDTH_BPS (64u * 1024u)
#define RUN_SLOW_CLOSE_MS 500u
/* Wipes recorded in one run: one fault every 2.5 s of a day-long soak. */
#define RUN_WIPES_MAX 40000u
_Static_assert(RUN_WIPES_MAX <= CHAOS_WIPES_MAX, "the checker takes them");
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

/* Fault families (--faults), and the kinds of fault of each. */
enum run_family {
    RUN_FAM_LINKS   = 1u << 0,
    RUN_FAM_PROCESS = 1u << 1,
    RUN_FAM_CLOCK   = 1u << 2,
    RUN_FAM_DISK    = 1u << 3,
    RUN_FAM_CLIENT  = 1u << 4,
    RUN_FAM_ALL     = (1u << 5) - 1u,
};

enum run_fault {
    /* links */
    RUN_F_ISOLATE_NODE,
    RUN_F_ISOLATE_REGION,
    RUN_F_HALVES,
    RUN_F_ONE_WAY,
    RUN_F_FLIP_FLOP,
    RUN_F_LATENCY,
    RUN_F_RING, /* each node reaches its two ring neighbours only */
    RUN_F_BRIDGE, /* two halves, one node in both */
    RUN_F_TAMPER, /* a node's links flip bits, drop, repeat, replay frames */
    RUN_F_REFUSE, /* a node's links reset and refuse connections */
    RUN_F_BANDWIDTH, /* a region's links capped, with slow closes */
    /* processes */
    RUN_F_KILL, /* kill -9, restart after 1-4 s */
    RUN_F_PAUSE, /* SIGSTOP, SIGCONT after 1-4 s */
    RUN_F_TERM, /* SIGTERM, restart after 1-4 s */
    RUN_F_WIPE, /* kill -9, empty the data dir, restart: it rejoins */
    /* clocks, disks, clients */
    RUN_F_CLOCK, /* a node's wall clock jumps by 5-60 s, and back */
    RUN_F_DISK, /* a node's disk is full */
    RUN_F_CLIENT_REPLY, /* a node's answers to clients are lost */
    RUN_F_KINDS
};

static const char *const run_fault_names[RUN_F_KINDS] = {
    [RUN_F_ISOLATE_NODE]   = "isolate-node",
    [RUN_F_ISOLATE_REGION] = "isolate-region",
    [RUN_F_HALVES]         = "halves",
    [RUN_F_ONE_WAY]        = "one-way",
    [RUN_F_FLIP_FLOP]      = "flip-flop",
    [RUN_F_LATENCY]        = "latency",
    [RUN_F_RING]           = "ring",
    [RUN_F_BRIDGE]         = "bridge",
    [RUN_F_TAMPER]         = "tamper",
    [RUN_F_REFUSE]         = "refuse",
    [RUN_F_BANDWIDTH]      = "bandwidth",
    [RUN_F_KILL]           = "kill-9",
    [RUN_F_PAUSE]          = "pause",
    [RUN_F_TERM]           = "term",
    [RUN_F_WIPE]           = "wipe",
    [RUN_F_CLOCK]          = "clock",
    [RUN_F_DISK]           = "disk-full",
    [RUN_F_CLIENT_REPLY]   = "client-reply-loss",
};

static enum run_family
run_fault_family(enum run_fault k)
{
    return k <= RUN_F_BANDWIDTH ? RUN_FAM_LINKS
        : k <= RUN_F_WIPE       ? RUN_FAM_PROCESS
        : k == RUN_F_CLOCK      ? RUN_FAM_CLOCK
        : k == RUN_F_DISK       ? RUN_FAM_DISK
                                : RUN_FAM_CLIENT;
}

/* Where Debian's libfaketime is (package libfaketime). */
#define RUN_FAKETIME_DEFAULT                                                   \
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"

struct run_opts {
    uint64_t    seed;
    const char *dir;
    const char *check_dir; /* --check: check a saved run, run nothing */
    uint32_t    converge_s; /* bound on convergence after the final heal */
    uint32_t    regions;
    uint32_t    npr; /* nodes per region */
    uint32_t    duration_s;
    uint32_t    clients; /* per region */
    bool        client_faults; /* isolate-node cuts clients too */
    uint32_t    families; /* RUN_FAM_* bits the nemesis draws from */
    const char *faketime; /* libfaketime, for clock faults */
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
    /* Wipes so far (nemesis thread; read by the main thread after it
     * ended), for the checker: a local ack on a wiped node may be gone. */
    struct chaos_wipe wipes[RUN_WIPES_MAX];
    uint32_t          wipe_count;
    /* Disk faults: the process holding the mount namespace in which every
     * node's data dir is a tmpfs (0: none), and an fd of that namespace. */
    pid_t disk_holder;
    int   disk_ns_fd;
    /* The environment nodes start with: the runner's, plus libfaketime's
     * for clock faults. */
    char **node_env;
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
        "and a seeded nemesis of faults, heals, waits for convergence\n"
        "and checks the history against every node's final state\n"
        "(docs/CHAOS.md). Exit 0: every check passed; 1: a check failed;\n"
        "2: usage; 3: the cluster could not be set up.\n"
        "\n"
        "  --seed N               seed of everything (default: from the "
        "clock; printed)\n"
        "  --dir DIR              keeps node logs, history.jsonl, "
        "faults.jsonl,\n"
        "                         lag.jsonl, final.json, stats.json, "
        "report.txt,\n"
        "                         timeline.html (default: a new temp dir)\n"
        "  --regions N            regions r1..rN (default 3, max %u)\n"
        "  --nodes-per-region N   nodes per region = rf (default 2)\n"
        "  --duration-s N         seconds of workload and faults (default "
        "20)\n"
        "  --clients-per-region N client threads per region (default 32, "
        "max %u)\n"
        "  --faults LIST          fault families the nemesis draws from, "
        "comma-\n"
        "                         separated (default links):\n"
        "                         links    isolate a node or a region, "
        "halves,\n"
        "                                  one-way, flip-flop, latency, "
        "ring,\n"
        "                                  bridge, tamper (bit flips, frame\n"
        "                                  drops, repeats, replays), refuse,\n"
        "                                  bandwidth cap with slow closes\n"
        "                         process  kill -9, SIGSTOP, SIGTERM, "
        "wipe a\n"
        "                                  node's data (it rejoins)\n"
        "                         clock    a node's wall clock jumps 5-60 "
        "s and\n"
        "                                  back (libfaketime)\n"
        "                         disk     a node's disk fills up (root: a "
        "tmpfs\n"
        "                                  per node in a mount namespace)\n"
        "                         client   a node's answers to clients are "
        "lost\n"
        "                         all      every family\n"
        "  --process-faults       the same as adding process to --faults\n"
        "  --client-faults        isolate-node cuts the node's clients too, "
        "so\n"
        "                         clients fail over to other nodes\n"
        "  --faketime PATH        libfaketime for clock faults (default\n"
        "                         %s)\n"
        "  --converge-s N         how long the cluster gets to converge "
        "after the\n"
        "                         final heal (default %u)\n"
        "  --check DIR            run nothing: check a saved run again "
        "(its\n"
        "                         history.jsonl and final.json) and print "
        "the\n"
        "                         report; exit 0 passed, 1 failed\n"
        "  --meridiand PATH       (default %s)\n"
        "  --meridianctl PATH     (default %s)\n"
        "  --help\n",
        RUN_REGIONS_MAX, RUN_CLIENTS_MAX, RUN_FAKETIME_DEFAULT,
        RUN_CONVERGE_MS / 1000u, MRD_MERIDIAND_PATH, MRD_MERIDIANCTL_PATH);
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

/* "links,process,...": the families named; false for an unknown name. */
static bool
run_parse_families(const char *list, uint32_t *out)
{
    static const struct {
        const char *name;
        uint32_t    bits;
    } names[] = { { "links", RUN_FAM_LINKS }, { "process", RUN_FAM_PROCESS },
        { "clock", RUN_FAM_CLOCK }, { "disk", RUN_FAM_DISK },
        { "client", RUN_FAM_CLIENT }, { "all", RUN_FAM_ALL } };
    uint32_t    bits = 0;
    const char *p    = list;

    while (*p != '\0') {
        size_t len   = strcspn(p, ",");
        bool   found = false;
        for (size_t i = 0; i < MRD_ARRAY_SIZE(names); i++) {
            if (strlen(names[i].name) == len
                && strncmp(p, names[i].name, len) == 0) {
                bits |= names[i].bits;
                found = true;
            }
        }
        if (!found) {
            return false;
        }
        p += len;
        p += *p == ',' ? 1 : 0;
    }
    *out = bits;
    return bits != 0;
}

/* 0 ok, 1 --help printed, 2 usage error. */
static int
run_opts_parse(int argc, char **argv, struct run_opts *o)
{
    uint64_t v;

    o->seed          = (uint64_t) time(NULL) ^ ((uint64_t) getpid() << 32);
    o->regions       = 3;
    o->npr           = 2;
    o->duration_s    = 20;
    o->clients       = 32;
    o->meridiand     = MRD_MERIDIAND_PATH;
    o->meridianctl   = MRD_MERIDIANCTL_PATH;
    o->families      = RUN_FAM_LINKS;
    o->converge_s    = RUN_CONVERGE_MS / 1000u;
    o->faketime      = RUN_FAKETIME_DEFAULT;
    bool add_process = false;
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
        } else if (strcmp(a, "--process-faults") == 0) {
            add_process = true;
            continue;
        } else if (ok && strcmp(a, "--faults") == 0) {
            ok = run_parse_families(val, &o->families);
        } else if (ok && strcmp(a, "--converge-s") == 0) {
            ok = run_parse_u64(val, RUN_DURATION_S_MAX, &v) && v >= 1;
            o->converge_s = (uint32_t) v;
        } else if (ok && strcmp(a, "--check") == 0) {
            o->check_dir = val;
        } else if (ok && strcmp(a, "--faketime") == 0) {
            o->faketime = val;
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
    if (add_process) {
        o->families |= RUN_FAM_PROCESS;
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

static void run_node_env(struct run *r, uint32_t i);

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
    run_node_env(r, i);
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
        /* With disk faults the data dir is a tmpfs of the holder's mount
         * namespace. */
        if (r->disk_ns_fd >= 0 && setns(r->disk_ns_fd, CLONE_NEWNS) != 0) {
            _exit(126);
        }
        execve(argv[0], (char *const *) (uintptr_t) argv, r->node_env);
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
    /* A timed-out attempt is sent again, to the same node for an append
     * whose outcome is unknown (docs/ARCHITECTURE.md, "Idempotency across
     * nodes"): the idempotency key must answer it. */
    opts.timeout_ms         = RUN_CALL_MS;
    opts.attempt_timeout_ms = RUN_ATTEMPT_MS;
    int rv                  = mrd_client_open(&opts, out);
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
    /* Every level, most of them local: a region or global ack waits for
     * replication (hundreds of ms), a local one for one fsync. */
    uint32_t       mix = (uint32_t) (run_rand(rng) % 100u);
    enum chaos_ack ack = mix < RUN_ACK_LOCAL_PCT       ? CHAOS_ACK_LOCAL
        : mix < RUN_ACK_LOCAL_PCT + RUN_ACK_REGION_PCT ? CHAOS_ACK_REGION
                                                       : CHAOS_ACK_GLOBAL;
    /* Some appends also move the stream's counter "n", by -2..+4. */
    static const char *const field[1] = { "n" };
    bool                     with_op  = run_rand(rng) % 100u < RUN_OPS_PCT;
    int64_t                  delta    = (int64_t) (run_rand(rng) % 7u) - 2;
    delta                             = delta != 0 ? delta : 1;
    struct chaos_counter inc          = { .field = field[0], .value = delta };
    struct chaos_op      op           = { .process = w->process,
                       .type                       = CHAOS_TYPE_INVOKE,
                       .f                          = CHAOS_F_APPEND,
                       .stream                     = stream,
                       .ids                        = ids,
                       .id_count                   = 1,
                       .ack                        = ack,
                       .counters                   = with_op ? &inc : NULL,
                       .counter_count              = with_op ? 1u : 0u };
    run_record(r, &op);

    mrd_op            op_inc = { .path = field,
                   .path_len           = 1,
                   .type               = MRD_STATE_COUNTER,
                   .kind               = MRD_OP_INC,
                   .delta              = delta };
    mrd_event_in      ev     = { .type = "chaos",
                 .data                 = id,
                 .data_size            = strlen(id),
                 .ops                  = with_op ? &op_inc : NULL,
                 .op_count             = with_op ? 1u : 0u };
    mrd_append_opts   ao;
    mrd_append_result res;
    mrd_append_opts_init(&ao);
    ao.ack                  = acks[ack];
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

static char *run_event_id(const mrd_event *e);

/* A read or a tail as the history records it: the invoke on a seeded
 * stream, then the ids delivered in order, then the completion. */
struct run_read {
    struct run_worker *w;
    char               stream[32];
    const char        *ids[RUN_READ_COUNT];
    char              *own[RUN_READ_COUNT];
    size_t             n;
};

static void
run_read_begin(struct run_read *rd, struct run_worker *w, uint64_t *rng)
{
    rd->w = w;
    rd->n = 0;
    snprintf(rd->stream, sizeof rd->stream, "s%u",
        (unsigned) (run_rand(rng) % RUN_STREAMS));
    struct chaos_op op = { .process = w->process,
        .type                       = CHAOS_TYPE_INVOKE,
        .f                          = CHAOS_F_READ,
        .stream                     = rd->stream };
    run_record(w->r, &op);
}

/* Keeps the ids of evs (events without one are not the workload's). */
static void
run_read_add(struct run_read *rd, const mrd_events *evs)
{
    for (size_t i = 0; i < mrd_events_count(evs) && rd->n < RUN_READ_COUNT;
         i++) {
        rd->own[rd->n] = run_event_id(mrd_events_at(evs, i));
        if (rd->own[rd->n] != NULL) {
            rd->ids[rd->n] = rd->own[rd->n];
            rd->n++;
        }
    }
}

/* The completion: ok with the ids, or fail / info for rv. */
static void
run_read_end(struct run_read *rd, int rv)
{
    struct chaos_op done = { .process = rd->w->process, .f = CHAOS_F_READ };
    if (rv == MRD_OK) {
        done.type     = CHAOS_TYPE_OK;
        done.ids      = rd->ids;
        done.id_count = rd->n;
    } else {
        done.type = run_err_is_fail(rv) ? CHAOS_TYPE_FAIL : CHAOS_TYPE_INFO;
        done.err  = mrd_errname(rv);
    }
    run_record(rd->w->r, &done);
    for (size_t i = 0; i < rd->n; i++) {
        free(rd->own[i]);
    }
    rd->n = 0;
}

/* One read of a whole stream (the checker: nothing unwritten, no
 * duplicate). */
static void
run_worker_read(struct run_worker *w, mrd_client *c, uint64_t *rng)
{
    struct run_read rd;
    mrd_events     *evs = NULL;
    run_read_begin(&rd, w, rng);
    int rv = mrd_read(c, rd.stream, 0, MRD_FORWARD, RUN_READ_COUNT, &evs);
    if (rv == MRD_OK) {
        run_read_add(&rd, evs);
    }
    run_read_end(&rd, rv);
    mrd_events_free(evs);
}

/* One cursor tail of a stream from its start, for RUN_TAIL_MS, recorded
 * as a read of every id it delivered, in order. */
static void
run_worker_tail(struct run_worker *w, mrd_client *c, uint64_t *rng)
{
    struct run_read rd;
    mrd_tail       *tail = NULL;
    run_read_begin(&rd, w, rng);
    int      rv    = mrd_tail_open_cursor(c, rd.stream, NULL, &tail);
    uint64_t until = mrd_now_mono_ms() + RUN_TAIL_MS;
    while (rv == MRD_OK && mrd_now_mono_ms() < until && rd.n < RUN_READ_COUNT) {
        mrd_events *evs = NULL;
        int         got = mrd_tail_next(tail, RUN_TAIL_POLL_MS, &evs);
        if (got == MRD_ETIMEDOUT) {
            continue; /* nothing new: the tail stays usable */
        }
        if (got != MRD_OK) {
            rv = got;
            break;
        }
        run_read_add(&rd, evs);
        mrd_events_free(evs);
    }
    mrd_tail_close(tail);
    run_read_end(&rd, rv);
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
        uint32_t pick = (uint32_t) (run_rand(&rng) % 100u);
        if (pick < RUN_READ_PCT) {
            run_worker_read(w, c, &rng);
        } else if (pick < RUN_READ_PCT + RUN_TAIL_PCT) {
            run_worker_tail(w, c, &rng);
        } else {
            run_worker_append(w, c, n, &rng);
        }
    }
    mrd_client_close(c);
    return NULL;
}

/* ------------------------------------------------------------ nemesis -- */

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
    case RUN_F_RING: {
        /* A seeded ring order; every link but those to a node's two
         * neighbours is cut: each node sees a different group, and with
         * five nodes each group is a majority (Jepsen's majorities ring). */
        uint32_t order[RUN_NODES_MAX], pos[RUN_NODES_MAX];
        uint32_t n = r->node_count;
        for (uint32_t i = 0; i < n; i++) {
            order[i] = i;
        }
        for (uint32_t i = n - 1; i > 0; i--) {
            uint32_t j = (uint32_t) (run_rand(rng) % (i + 1u)), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        size_t len = (size_t) snprintf(detail, sizeof detail, "ring");
        for (uint32_t i = 0; i < n; i++) {
            pos[order[i]] = i;
            if (len < sizeof detail) {
                len += (size_t) snprintf(
                    detail + len, sizeof detail - len, " %u", order[i] + 1);
            }
        }
        memset(drop, 0, sizeof drop);
        for (uint32_t a = 0; a < n; a++) {
            for (uint32_t b = 0; b < n; b++) {
                uint32_t d = (pos[a] + n - pos[b]) % n;
                drop[a][b] = a != b && d != 1u && d != n - 1u;
            }
        }
        run_links_apply(r, drop, -1, 0, NULL);
        run_nap(r, dur_ms);
        break;
    }
    case RUN_F_BRIDGE: {
        /* Seeded halves without x; x, the bridge, stays linked to both. */
        size_t len
            = (size_t) snprintf(detail, sizeof detail, "bridge %u,", x + 1);
        for (uint32_t i = 0; i < r->node_count; i++) {
            side[i] = i != x && (run_rand(rng) & 1u) != 0;
            if (side[i] && len < sizeof detail) {
                len += (size_t) snprintf(
                    detail + len, sizeof detail - len, " %u", i + 1);
            }
        }
        if (len < sizeof detail) {
            snprintf(detail + len, sizeof detail - len, " | the rest");
        }
        run_drop_sides(r, side, false, drop);
        for (uint32_t i = 0; i < r->node_count; i++) {
            drop[x][i] = false;
            drop[i][x] = false;
        }
        run_links_apply(r, drop, -1, 0, NULL);
        run_nap(r, dur_ms);
        break;
    }
    case RUN_F_TAMPER:
    case RUN_F_REFUSE:
    case RUN_F_BANDWIDTH: {
        for (uint32_t a = 0; a < r->node_count; a++) {
            for (uint32_t b = 0; b < r->node_count; b++) {
                bool touch = kind == RUN_F_BANDWIDTH
                    ? r->nodes[a].region == g || r->nodes[b].region == g
                    : a == x || b == x;
                if (a == b || !touch) {
                    continue;
                }
                struct chaos_faults f;
                memset(&f, 0, sizeof f);
                for (int d = 0; d < CHAOS_DIRS; d++) {
                    f.dir[d].latency_ms = r->lat_ms[a][b];
                    f.dir[d].jitter_ms  = r->lat_ms[a][b] > RUN_LAT_LOCAL_MS
                         ? RUN_JITTER_MS
                         : 0;
                    if (kind == RUN_F_TAMPER) {
                        f.dir[d].corrupt_ppm = RUN_TAMPER_PPM;
                        f.dir[d].drop_ppm    = RUN_TAMPER_PPM;
                        f.dir[d].dup_ppm     = RUN_TAMPER_PPM;
                        f.dir[d].replay_ppm  = RUN_TAMPER_PPM;
                    } else if (kind == RUN_F_BANDWIDTH) {
                        f.dir[d].rate_bps = RUN_BANDWIDTH_BPS;
                    }
                }
                f.frames = kind == RUN_F_TAMPER;
                f.refuse = kind == RUN_F_REFUSE;
                f.close_delay_ms
                    = kind == RUN_F_BANDWIDTH ? RUN_SLOW_CLOSE_MS : 0;
                if (run_proxy_set(r->link[a][b], &f) != MRD_OK) {
                    fprintf(stderr, "chaos: proxy %u->%u refused a fault set\n",
                        a + 1, b + 1);
                }
                if (kind == RUN_F_REFUSE) {
                    chaos_proxy_reset(r->link[a][b]);
                }
            }
        }
        if (kind == RUN_F_BANDWIDTH) {
            snprintf(detail, sizeof detail, "links of r%u at %u B/s", g + 1,
                RUN_BANDWIDTH_BPS);
        } else {
            snprintf(detail, sizeof detail, "links of node %u", x + 1);
        }
        run_nap(r, dur_ms);
        if (kind == RUN_F_TAMPER) {
            /* Back to whole bytes: connections that were mid-message in
             * frames mode start over. */
            for (uint32_t a = 0; a < r->node_count; a++) {
                for (uint32_t b = 0; b < r->node_count; b++) {
                    if (a != b && (a == x || b == x)) {
                        (void) run_link_apply(r, a, b, NULL, -1, 0);
                        chaos_proxy_reset(r->link[a][b]);
                    }
                }
            }
        }
        break;
    }
    case RUN_F_LATENCY:
    case RUN_F_KILL: /* other families: not here */
    case RUN_F_PAUSE:
    case RUN_F_TERM:
    case RUN_F_WIPE:
    case RUN_F_CLOCK:
    case RUN_F_DISK:
    case RUN_F_CLIENT_REPLY:
    case RUN_F_KINDS:
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
    r->faults_injected++;
    run_fault_log(r, run_fault_names[kind], start, run_t_us(r), "%s", detail);
}

/* ----------------------------------------------- clocks, disks, wipes -- */

/* Node i's libfaketime offset file (FAKETIME_TIMESTAMP_FILE). */
static int
run_clock_path(const struct run *r, uint32_t i, char *out)
{
    return run_path(out, r->nodes[i].dir, "faketime");
}

/* Sets node i's wall clock offset, seconds (libfaketime rereads the file
 * every second): written to a temp file and renamed, so a node never reads
 * half of it. */
static int
run_clock_set(const struct run *r, uint32_t i, int64_t offset_s)
{
    char path[RUN_PATH_SIZE], tmp[RUN_PATH_SIZE + 8];
    if (run_clock_path(r, i, path) != 0) {
        return -1;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }
    int w  = fprintf(f, "%+" PRId64 "\n", offset_s);
    int rc = fclose(f);
    return w > 0 && rc == 0 && rename(tmp, path) == 0 ? 0 : -1;
}

/* The environment of every node: the runner's own, plus, for clock
 * faults, libfaketime preloaded with a per-node offset file (the path
 * holds %s for the node's dir, filled per spawn: see run_node_env). */
static int
run_env_init(struct run *r)
{
    extern char **environ;
    size_t        n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    r->node_env = calloc(n + 8u, sizeof *r->node_env);
    if (r->node_env == NULL) {
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "LD_PRELOAD=", 11) != 0
            && strncmp(environ[i], "FAKETIME", 8) != 0) {
            r->node_env[k++] = environ[i];
        }
    }
    if ((r->o.families & RUN_FAM_CLOCK) != 0) {
        static char preload[RUN_PATH_SIZE + 16];
        if (access(r->o.faketime, R_OK) != 0) {
            fprintf(stderr,
                "chaos: clock faults need libfaketime (Debian package "
                "libfaketime; scripts/deps installs it): %s: %s\n",
                r->o.faketime, strerror(errno));
            return -1;
        }
        snprintf(preload, sizeof preload, "LD_PRELOAD=%s", r->o.faketime);
        r->node_env[k++] = preload;
        /* Only the wall clock: NNG's timers and the node's timeouts run on
         * the monotonic clock, as on a real machine whose NTP jumps. */
        r->node_env[k++] = "FAKETIME_DONT_FAKE_MONOTONIC=1";
        r->node_env[k++] = "FAKETIME_CACHE_DURATION=1";
        /* An ASan meridiand would refuse a preload that comes first. */
        r->node_env[k++] = "ASAN_OPTIONS=verify_asan_link_order=0";
        /* FAKETIME_TIMESTAMP_FILE differs per node: run_node_spawn. */
        r->node_env[k++] = NULL; /* slot for it */
    }
    r->node_env[k] = NULL;
    return 0;
}

/* Points the FAKETIME_TIMESTAMP_FILE slot at node i's file (main thread,
 * before fork). */
static void
run_node_env(struct run *r, uint32_t i)
{
    static char file[RUN_PATH_SIZE + 32];
    char        path[RUN_PATH_SIZE];
    if ((r->o.families & RUN_FAM_CLOCK) == 0
        || run_clock_path(r, i, path) != 0) {
        return;
    }
    size_t k = 0;
    while (r->node_env[k] != NULL
        && strncmp(r->node_env[k], "FAKETIME_TIMESTAMP_FILE=", 24) != 0) {
        k++;
    }
    snprintf(file, sizeof file, "FAKETIME_TIMESTAMP_FILE=%s", path);
    r->node_env[k] = file;
}

/* Runs fn(arg) in a child inside the disk holder's mount namespace (or in
 * this one without disk faults) and waits for it: 0 when it exited 0.
 * glibc keeps malloc usable in a forked child of a threaded process. */
static int
run_in_node_ns(struct run *r, int (*fn)(const char *), const char *arg)
{
    if (r->disk_ns_fd < 0) {
        return fn(arg);
    }
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (setns(r->disk_ns_fd, CLONE_NEWNS) != 0) {
            _exit(126);
        }
        _exit(fn(arg) == 0 ? 0 : 1);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) {
        return -1;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Removes every file in dir (a node's data dir holds no subdirectory). */
static int
run_dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return errno == ENOENT ? 0 : -1;
    }
    int            rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[RUN_PATH_SIZE + 256];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) {
            rc = -1;
        }
    }
    closedir(d);
    return rc;
}

/* Fills the file system of path (a ballast file) until it is full. */
static int
run_ballast_fill(const char *path)
{
    static const char zeros[1u << 20];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -1;
    }
    for (uint32_t mb = 0; mb <= RUN_DISK_MB; mb++) {
        if (write(fd, zeros, sizeof zeros) < 0) {
            break; /* ENOSPC: full, as wanted */
        }
    }
    /* The last partial pages too, a byte at a time at most 4 KiB. */
    for (int b = 0; b < 4096 && write(fd, zeros, 1) == 1; b++) { }
    close(fd);
    return 0;
}

static int
run_ballast_drop(const char *path)
{
    return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Node i's data dir, and its ballast. */
static int
run_data_path(const struct run *r, uint32_t i, const char *name, char *out)
{
    char data[RUN_PATH_SIZE];
    if (run_path(data, r->nodes[i].dir, "data") != 0) {
        return -1;
    }
    return name == NULL ? run_path(out, r->nodes[i].dir, "data")
                        : run_path(out, data, name);
}

/* Empties node i's data dir (it is down): it rejoins from its peers. */
static int
run_node_wipe(struct run *r, uint32_t i)
{
    char dir[RUN_PATH_SIZE];
    return run_data_path(r, i, NULL, dir) == 0
        ? run_in_node_ns(r, run_dir_empty, dir)
        : -1;
}

/* Disk faults: a child that unshares a mount namespace, mounts a tmpfs of
 * RUN_DISK_MB on every node's data dir, says so on a pipe, and sleeps
 * until the runner dies. Nodes enter its namespace before exec. Root
 * only (CAP_SYS_ADMIN); the host's mounts are untouched. */
static int
run_disk_setup(struct run *r)
{
    char dirs[RUN_NODES_MAX][RUN_PATH_SIZE];
    char opts[32];
    int  p[2];

    for (uint32_t i = 0; i < r->node_count; i++) {
        if (run_data_path(r, i, NULL, dirs[i]) != 0
            || (mkdir(dirs[i], 0700) != 0 && errno != EEXIST)) {
            return -1;
        }
    }
    snprintf(opts, sizeof opts, "size=%um,mode=0700", RUN_DISK_MB);
    if (pipe2(p, O_CLOEXEC) != 0) {
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid    = fork();
    if (pid == 0) {
        char why = 'u';
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        /* It must hold nothing of the runner's: the sockets that reserve
         * the nodes' ports above all. */
        for (int fd = 3; fd < 4096; fd++) {
            if (fd != p[1]) {
                close(fd);
            }
        }
        if (unshare(CLONE_NEWNS) == 0) {
            why = 'p';
            if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0) {
                why = 'k';
                for (uint32_t i = 0; i < r->node_count && why == 'k'; i++) {
                    if (mount("tmpfs", dirs[i], "tmpfs", 0, opts) != 0) {
                        why = 'm';
                    }
                }
            }
        }
        int err = errno;
        if (write(p[1], &why, 1) != 1 || why != 'k') {
            _exit(err & 0x7f);
        }
        for (;;) {
            pause();
        }
    }
    close(p[1]);
    char got = 0;
    if (pid < 0 || read(p[0], &got, 1) != 1 || got != 'k') {
        int status = 0;
        if (pid > 0) {
            waitpid(pid, &status, 0);
        }
        fprintf(stderr,
            "chaos: disk faults need root and a mount namespace: %s failed "
            "(%s)\n",
            got == 'u'       ? "unshare(CLONE_NEWNS)"
                : got == 'p' ? "mount --make-rprivate /"
                             : "mount tmpfs",
            WIFEXITED(status) ? strerror(WEXITSTATUS(status)) : "killed");
        close(p[0]);
        return -1;
    }
    close(p[0]);
    char ns[64];
    snprintf(ns, sizeof ns, "/proc/%d/ns/mnt", (int) pid);
    r->disk_holder = pid;
    r->disk_ns_fd  = open(ns, O_RDONLY | O_CLOEXEC);
    return r->disk_ns_fd >= 0 ? 0 : -1;
}

/* A node's wall clock jumps by a seeded 5-60 s, forward or back, for
 * dur_ms, then jumps back: skew and both kinds of jump in one fault. */
static void
run_fault_clock(struct run *r, uint64_t *rng, uint32_t dur_ms)
{
    uint32_t x     = (uint32_t) (run_rand(rng) % r->node_count);
    int64_t  skew  = run_between(rng, RUN_SKEW_MIN_S, RUN_SKEW_MAX_S);
    skew           = (run_rand(rng) & 1u) != 0 ? skew : -skew;
    uint64_t start = run_t_us(r);
    int      rc    = run_clock_set(r, x, skew);
    run_nap(r, dur_ms);
    rc |= run_clock_set(r, x, 0);
    r->faults_injected++;
    run_fault_log(r, run_fault_names[RUN_F_CLOCK], start, run_t_us(r),
        "node %u wall clock %+" PRId64 " s%s", x + 1, skew,
        rc == 0 ? "" : " (could not write its offset file)");
}

/* A node's disk fills up (a ballast file) for dur_ms, then is freed. */
static void
run_fault_disk(struct run *r, uint64_t *rng, uint32_t dur_ms)
{
    uint32_t x = (uint32_t) (run_rand(rng) % r->node_count);
    char     path[RUN_PATH_SIZE];
    uint64_t start = run_t_us(r);
    int      rc    = run_data_path(r, x, "ballast", path) == 0
                ? run_in_node_ns(r, run_ballast_fill, path)
                : -1;
    run_nap(r, dur_ms);
    rc |= run_in_node_ns(r, run_ballast_drop, path);
    r->faults_injected++;
    run_fault_log(r, run_fault_names[RUN_F_DISK], start, run_t_us(r),
        "node %u%s", x + 1, rc == 0 ? "" : " (ballast failed)");
}

/* Every byte a node sends its clients is lost for dur_ms: requests arrive
 * and are acted on, answers never come, and the clients retry on that
 * node (the library pins an append whose outcome is unknown), where the
 * idempotency key must answer. */
static void
run_fault_client(struct run *r, uint64_t *rng, uint32_t dur_ms)
{
    uint32_t            x     = (uint32_t) (run_rand(rng) % r->node_count);
    uint64_t            start = run_t_us(r);
    struct chaos_faults f;
    memset(&f, 0, sizeof f);
    f.dir[CHAOS_UP].latency_ms   = RUN_LAT_LOCAL_MS;
    f.dir[CHAOS_DOWN].latency_ms = RUN_LAT_LOCAL_MS;
    f.dir[CHAOS_DOWN].blackhole  = true;
    int rc                       = run_proxy_set(r->nodes[x].client_proxy, &f);
    run_nap(r, dur_ms);
    run_heal(r);
    r->faults_injected++;
    run_fault_log(r, run_fault_names[RUN_F_CLIENT_REPLY], start, run_t_us(r),
        "node %u's answers to clients%s", x + 1,
        rc == MRD_OK ? "" : " (proxy refused)");
}

/* The final heal of what the link heal does not cover: every clock back
 * to true time, every ballast gone. */
static void
run_heal_extra(struct run *r)
{
    for (uint32_t i = 0; i < r->node_count; i++) {
        char path[RUN_PATH_SIZE];
        if ((r->o.families & RUN_FAM_CLOCK) != 0) {
            (void) run_clock_set(r, i, 0);
        }
        if (r->disk_ns_fd >= 0 && run_data_path(r, i, "ballast", path) == 0) {
            (void) run_in_node_ns(r, run_ballast_drop, path);
        }
    }
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
    uint32_t x = (uint32_t) (run_rand(rng) % r->node_count);
    uint32_t down
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
        kill(pid, kind == RUN_F_TERM ? SIGTERM : SIGKILL);
        run_node_reap(r, x, kind == RUN_F_TERM ? RUN_TERM_MS : 0u);
        if (kind == RUN_F_WIPE) {
            if (r->wipe_count < RUN_WIPES_MAX) {
                r->wipes[r->wipe_count++]
                    = (struct chaos_wipe) { .node_id = r->nodes[x].id,
                          .t_us                      = run_t_us(r) };
            }
            if (run_node_wipe(r, x) != 0) {
                fprintf(stderr, "chaos: cannot wipe node %u's data\n", x + 1);
            }
        }
        ready = run_nap(r, down) && run_restart_wait(r, x);
    }
    r->faults_injected++;
    run_fault_log(r, run_fault_names[kind], start, run_t_us(r),
        "node %u (pid %d), %s after %.1f s%s", x + 1, (int) pid,
        kind == RUN_F_PAUSE      ? "continued"
            : kind == RUN_F_WIPE ? "data wiped, restarted"
                                 : "restarted",
        (double) down / 1e3,
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
        /* A seeded kind among those of the families asked for. */
        enum run_fault kinds[RUN_F_KINDS];
        uint32_t       n = 0;
        for (int k = 0; k < RUN_F_KINDS; k++) {
            if ((r->o.families & run_fault_family((enum run_fault) k)) != 0) {
                kinds[n++] = (enum run_fault) k;
            }
        }
        enum run_fault kind = kinds[run_rand(&rng) % n];
        switch (run_fault_family(kind)) {
        case RUN_FAM_PROCESS:
            run_fault_process(r, &rng, kind);
            break;
        case RUN_FAM_CLOCK:
            run_fault_clock(r, &rng, dur);
            break;
        case RUN_FAM_DISK:
            run_fault_disk(r, &rng, dur);
            break;
        case RUN_FAM_CLIENT:
            run_fault_client(r, &rng, dur);
            break;
        case RUN_FAM_LINKS:
        case RUN_FAM_ALL:
        default:
            run_fault_one(r, &rng, kind, dur);
            break;
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
    while (mrd_now_mono_ms() - start < (uint64_t) r->o.converge_s * 1000u
        && !run_interrupted) {
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

/* One node's stream states, as the checker takes them: the counter "n",
 * and for "doc" a canonical text of what the state read gave (its causal
 * context, sorted, and the counter), equal on replicas that converged. The
 * library hands out no encoded document, and positions (the state's
 * version) are local, so they are not part of it. */
#define RUN_DOC_SIZE 1024u
struct run_states {
    char                      name[RUN_STREAMS][16];
    char                      doc[RUN_STREAMS][RUN_DOC_SIZE];
    struct chaos_counter      counter[RUN_STREAMS];
    struct chaos_stream_state st[RUN_STREAMS];
};

static int
run_dot_cmp(const void *a, const void *b)
{
    const mrd_dot *x = a, *y = b;
    return x->origin < y->origin ? -1 : x->origin > y->origin ? 1 : 0;
}

static int
run_states_read(mrd_client *c, struct run_states *out, size_t *count)
{
    *count = 0;
    for (uint32_t k = 0; k < RUN_STREAMS; k++) {
        mrd_state *st = NULL;
        snprintf(out->name[k], sizeof out->name[k], "s%u", k);
        int rv = mrd_state_read(c, out->name[k], NULL, &st);
        if (rv != MRD_OK) {
            fprintf(stderr, "chaos: state of %s: %s\n", out->name[k],
                mrd_errname(rv));
            return -1;
        }
        mrd_dot ctx[CHAOS_NODES_MAX];
        size_t  n = mrd_state_context_count(st);
        n         = n < CHAOS_NODES_MAX ? n : CHAOS_NODES_MAX;
        for (size_t i = 0; i < n; i++) {
            ctx[i] = mrd_state_context_at(st, i);
        }
        qsort(ctx, n, sizeof ctx[0], run_dot_cmp);
        const mrd_value *v
            = mrd_value_find(mrd_state_root(st), "n", MRD_STATE_COUNTER);
        int64_t value = v != NULL ? mrd_value_int(v) : 0;
        size_t  len   = (size_t) snprintf(out->doc[k], RUN_DOC_SIZE, "ctx");
        for (size_t i = 0; i < n && len < RUN_DOC_SIZE; i++) {
            len += (size_t) snprintf(out->doc[k] + len, RUN_DOC_SIZE - len,
                " %" PRIu64 ":%" PRIu64, ctx[i].origin, ctx[i].seq);
        }
        if (len < RUN_DOC_SIZE) {
            snprintf(
                out->doc[k] + len, RUN_DOC_SIZE - len, " n=%" PRId64, value);
        }
        mrd_state_free(st);
        out->counter[k]
            = (struct chaos_counter) { .field = "n", .value = value };
        out->st[k] = (struct chaos_stream_state) { .stream = out->name[k],
            .doc           = (const uint8_t *) out->doc[k],
            .doc_size      = strlen(out->doc[k]),
            .counters      = &out->counter[k],
            .counter_count = v != NULL ? 1u : 0u };
        (*count)++;
    }
    return 0;
}

/* Reads every node's logs into logs[] and fills nodes[] for the checker. */
static int
run_final_read(struct run *r, mrd_client **direct, const uint64_t *caught_us,
    bool converged, struct run_log *logs, struct run_states *states,
    struct chaos_node_final *nodes)
{
    for (uint32_t i = 0; i < r->node_count; i++) {
        int rv = run_log_read(direct[i], true, &logs[i]);
        if (rv != MRD_OK) {
            fprintf(stderr, "chaos: final read of node %u: %s\n", i + 1,
                mrd_errname(rv));
            return -1;
        }
        size_t stream_count = 0;
        if (run_states_read(direct[i], &states[i], &stream_count) != 0) {
            return -1;
        }
        nodes[i].streams       = states[i].st;
        nodes[i].stream_count  = stream_count;
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
    struct run_states      *states = NULL;
    int                     rv     = -1;

    memset(logs, 0, sizeof logs);
    memset(nodes, 0, sizeof nodes);
    memset(&f, 0, sizeof f);
    f.heal_us    = r->heal_us;
    f.wipes      = r->wipes;
    f.wipe_count = r->wipe_count;
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
    states = calloc(r->node_count, sizeof *states);
    if (states == NULL
        || run_final_read(r, direct, caught_us, converged, logs, states, nodes)
            != 0) {
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
    free(states);
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
    if (run_env_init(r) != 0) {
        return -1;
    }
    for (uint32_t i = 0; i < r->node_count; i++) {
        if ((r->o.families & RUN_FAM_CLOCK) != 0
            && run_clock_set(r, i, 0) != 0) {
            fprintf(
                stderr, "chaos: cannot write node %u's clock file\n", i + 1);
            return -1;
        }
    }
    if ((r->o.families & RUN_FAM_DISK) != 0 && run_disk_setup(r) != 0) {
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
    run_heal_extra(r);
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

/* --check DIR: the checker over a saved run. 0 passed, 1 failed, 3 the
 * files could not be read. */
static int
run_check_saved(const char *dir)
{
    char                path[RUN_PATH_SIZE];
    struct chaos_error  err;
    struct chaos_ops   *ops = NULL;
    struct chaos_final  f;
    struct chaos_report rep;

    memset(&err, 0, sizeof err);
    memset(&f, 0, sizeof f);
    if (run_path(path, dir, "history.jsonl") != 0
        || chaos_ops_load(path, NULL, &err, &ops) != MRD_OK) {
        fprintf(stderr, "chaos: %s: line %" PRIu64 ": %s\n", path, err.line,
            err.text);
        return 3;
    }
    if (run_path(path, dir, "final.json") != 0
        || chaos_final_load(path, NULL, &err, &f) != MRD_OK) {
        fprintf(stderr, "chaos: %s: %s\n", path, err.text);
        chaos_ops_free(ops);
        return 3;
    }
    int rv = chaos_check_all(ops, &f, &err, &rep);
    if (rv == MRD_OK) {
        chaos_check_report(stdout, &rep);
        printf("result: %s\n", chaos_report_passed(&rep) ? "PASS" : "FAIL");
    } else {
        fprintf(stderr, "chaos: checker: %s (%s)\n", mrd_errname(rv), err.text);
    }
    chaos_final_free(&f);
    chaos_ops_free(ops);
    return rv != MRD_OK ? 3 : chaos_report_passed(&rep) ? 0 : 1;
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
    if (r.o.check_dir != NULL) {
        return run_check_saved(r.o.check_dir);
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = run_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    uint64_t rng = r.o.seed;
    r.disk_ns_fd = -1;

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
    if (r.disk_holder > 0) {
        kill(r.disk_holder, SIGKILL); /* its tmpfs mounts go with it */
        waitpid(r.disk_holder, NULL, 0);
    }
    free(r.node_env);
    run_proxies_stop(&r);
    if (r.faults != NULL) {
        fclose(r.faults);
    }
    printf(
        "chaos: exit %d (seed %" PRIu64 ", dir %s)\n", code, r.o.seed, r.dir);
    return code;
}
