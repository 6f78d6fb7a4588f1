/*
 * ops_test.c: the operator's tools work on a running cluster.
 *
 * One cluster for the whole test: `meridianctl cluster init` writes three
 * regions (eu, us, ap) of one node each and 4 shards; each meridiand runs
 * with its config and --metrics-listen http://127.0.0.1:0. It proves:
 *
 *   - metrics: each node serves Prometheus text at GET /metrics on the port
 *     it picked (named in its "ready" log line and by `status --json`):
 *     HTTP 200, text/plain, meridian_appends_total{ack="local"} counts at
 *     least the appends the node took, every "# TYPE" name is one
 *     deploy/metrics.txt lists (and every listed name is exported), the key
 *     metrics are there; GET /nope is 404; garbage on a connection does
 *     not stop the node from serving the next GET.
 *   - status, human and --json: 3 nodes up, in their regions, exit 0; with
 *     one node SIGSTOPped, exit 1 and that node "down" (after its 3 s); all
 *     up again once it resumes.
 *   - verify, human and --json: exit 0, "ok":true, no differences.
 *   - drills: region-outage (human once, then --json while the test watches
 *     the fenced node's meridian_fenced gauge go to 1 while node-1's, on
 *     the side that only refuses the fenced node, stays 0), node-loss and
 *     partition all PASS with nothing lost, and the fenced node counted the
 *     clients it refused (STATS rejected_fenced); usage errors exit 2.
 *   - topology drain-node / undrain-node with --push: every node runs the
 *     new version, exit 0, and status shows node-3 "drained", then "up".
 *
 * Keys: as in cluster_init_test.c, the harness's admin client is added to
 * DIR/keyring before the nodes start (for the harness's clients and STATS);
 * meridianctl runs as the cluster's own admin (DIR/admin.key, DIR/keyring).
 */
#define _GNU_SOURCE /* strcasestr; test code only */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
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
#include <sodium.h>

#include "harness.h"

#define OPS_NODES 3u
/* Appends each region's client makes before the metrics are read. */
#define OPS_APPENDS 5u
#define OPS_OUT_SIZE (256u * 1024u)
#define OPS_HTTP_SIZE (512u * 1024u)

static const char *const ops_regions[OPS_NODES] = { "eu", "us", "ap" };

/* What the test's cluster is: shared by the helpers below. */
static struct {
    struct harness_node nodes[OPS_NODES];
    char                dir[256];
    char                cdir[300];
    char                admin_key[400];
    char                keyring[400];
    char                signed_path[400];
    char                cfg[OPS_NODES][400];
    uint16_t            metrics_port[OPS_NODES];
} ops;

static char ops_out[OPS_OUT_SIZE];
static char ops_http[OPS_HTTP_SIZE];

static double
ops_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------- setup -- */

/* Appends the harness's admin key to the cluster's keyring as an admin
 * client (the syntax of net/keyring.h). */
static void
ops_keyring_admit_harness(const char *cdir)
{
    char    path[400], hex[65];
    uint8_t pk[32], sk[64];

    harness_admin_keypair(pk, sk);
    sodium_memzero(sk, sizeof sk);
    sodium_bin2hex(hex, sizeof hex, pk, sizeof pk);
    snprintf(path, sizeof path, "%s/keyring", cdir);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    assert_true(fprintf(f, "client harness-admin admin %s\n", hex) > 0);
    assert_int_equal(fclose(f), 0);
}

/* ---------------------------------------------------------- meridianctl -- */

/* Runs meridianctl as the cluster's admin with --node url and args after
 * the global options; its stdout in out. Returns its exit code. */
static int
ops_ctl_on(const char *url, const char *const *args, char *out, size_t size)
{
    const char *argv[HARNESS_ARGS_MAX];
    size_t      n = 0;
    argv[n++]     = "--key";
    argv[n++]     = ops.admin_key;
    argv[n++]     = "--keyring";
    argv[n++]     = ops.keyring;
    argv[n++]     = "--node";
    argv[n++]     = url;
    for (size_t i = 0; args[i] != NULL; i++) {
        assert_true(n + 1 < HARNESS_ARGS_MAX);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    return harness_run_ctl(argv, out, size);
}

static int
ops_ctl(const char *const *args, char *out, size_t size)
{
    return ops_ctl_on(ops.nodes[0].url, args, out, size);
}

/* ----------------------------------------------------- JSON substrings --
 * The test does not link jansson: it reads meridianctl's JSON by stable
 * substrings. A node's object in `status --json` starts at its
 * "name":"node-N" and ends at its "error" member. */

/* The node's object in a status document, copied into obj; false when it
 * is not there. */
static bool
ops_status_node(const char *json, const char *name, char *obj, size_t size)
{
    char needle[64];
    snprintf(needle, sizeof needle, "\"name\":\"%s\",", name);
    const char *start = strstr(json, needle);
    if (start == NULL) {
        return false;
    }
    const char *end = strstr(start, "\"error\":");
    if (end == NULL) {
        return false;
    }
    size_t len = (size_t) (end - start);
    if (len >= size) {
        len = size - 1;
    }
    memcpy(obj, start, len);
    obj[len] = '\0';
    return true;
}

/* The string value of "key" in json, copied into val. */
static bool
ops_json_str(const char *json, const char *key, char *val, size_t size)
{
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":\"", key);
    const char *p = strstr(json, needle);
    if (p == NULL) {
        return false;
    }
    p += strlen(needle);
    const char *q = strchr(p, '"');
    if (q == NULL || (size_t) (q - p) >= size) {
        return false;
    }
    memcpy(val, p, (size_t) (q - p));
    val[q - p] = '\0';
    return true;
}

/* The unsigned number value of the first "key" in json; fails the test
 * when there is none. */
static uint64_t
ops_json_u64(const char *json, const char *key)
{
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":", key);
    const char *p = strstr(json, needle);
    if (p == NULL) {
        fail_msg("no \"%s\" in %s", key, json);
    }
    p += strlen(needle);
    char              *end;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p) {
        fail_msg("\"%s\" is no number in %s", key, json);
    }
    return (uint64_t) v;
}

static size_t
ops_count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL;
         p             = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* The health status --json gives node `name`, in health. */
static void
ops_health(const char *json, const char *name, char *health, size_t size)
{
    static char obj[8192];
    if (!ops_status_node(json, name, obj, sizeof obj)) {
        fail_msg("status --json has no node %s: %s", name, json);
    }
    if (!ops_json_str(obj, "health", health, size)) {
        fail_msg("status --json: node %s has no health: %s", name, obj);
    }
}

/* ----------------------------------------------------------------- HTTP -- */

/* A TCP connection to 127.0.0.1:port with receive and send timeouts. */
static int
ops_tcp(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    uint32_t       ms = harness_ms(10000);
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family      = AF_INET;
    sa.sin_port        = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *) &sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool
ops_send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        buf += n;
        len -= (size_t) n;
    }
    return true;
}

/* An HTTP/1.0 GET of path from 127.0.0.1:port. The whole response (head
 * and body, NUL-terminated) goes to resp; returns the status code, or -1.
 * Reads until the server closes or Content-Length bytes of body came. */
static int
ops_http_get(uint16_t port, const char *path, char *resp, size_t size)
{
    char req[256];
    int  len = snprintf(req, sizeof req,
         "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%u\r\n"
          "User-Agent: ops_test\r\n\r\n",
         path, (unsigned) port);
    int  fd  = ops_tcp(port);
    if (fd < 0) {
        return -1;
    }
    if (!ops_send_all(fd, req, (size_t) len)) {
        close(fd);
        return -1;
    }
    size_t got = 0;
    resp[0]    = '\0';
    for (;;) {
        if (got + 1 >= size) {
            break;
        }
        ssize_t n = recv(fd, resp + got, size - 1 - got, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t) n;
        resp[got]        = '\0';
        const char *body = strstr(resp, "\r\n\r\n");
        const char *cl   = strcasestr(resp, "\r\nContent-Length:");
        if (body != NULL && cl != NULL && cl < body) {
            unsigned long want = strtoul(cl + 17, NULL, 10);
            if ((size_t) (resp + got - (body + 4)) >= want) {
                break;
            }
        }
    }
    close(fd);
    int code = -1;
    if (strncmp(resp, "HTTP/1.", 7) == 0 && strlen(resp) > 12) {
        code = atoi(resp + 9);
    }
    return code;
}

/* The port of "http://127.0.0.1:PORT/metrics". */
static uint16_t
ops_url_port(const char *url)
{
    const char *prefix = "http://127.0.0.1:";
    if (strncmp(url, prefix, strlen(prefix)) != 0) {
        fail_msg("metrics URL %s is not on 127.0.0.1", url);
    }
    char         *end;
    unsigned long p = strtoul(url + strlen(prefix), &end, 10);
    if (p == 0 || p > 65535 || strcmp(end, "/metrics") != 0) {
        fail_msg("metrics URL %s is no http://127.0.0.1:PORT/metrics", url);
    }
    return (uint16_t) p;
}

/* The value of the sample line that starts with `series ` (a metric name
 * with its labels, exactly as exported). */
static bool
ops_sample(const char *text, const char *series, double *value)
{
    size_t      n = strlen(series);
    const char *p = text;
    while ((p = strstr(p, series)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ') {
            *value = strtod(p + n + 1, NULL);
            return true;
        }
        p += n;
    }
    return false;
}

/* The metric names deploy/metrics.txt lists, found from this file's path
 * (CMake compiles it by its absolute path); a copy of the list when the
 * source tree is not there. */
static size_t
ops_metric_names(char names[][64], size_t max)
{
    static const char *const fallback[] = { "meridian_build_info",
        "meridian_uptime_seconds", "meridian_topology_version",
        "meridian_fenced", "meridian_joining", "meridian_peer_up",
        "meridian_requests_total", "meridian_appends_total",
        "meridian_append_bytes_total", "meridian_events_appended_total",
        "meridian_append_latency_seconds", "meridian_commits_total",
        "meridian_commit_batch_appends", "meridian_reads_total",
        "meridian_events_read_total", "meridian_events_replicated_total",
        "meridian_pull_batch_events", "meridian_replication_lag_events",
        "meridian_replication_lag_seconds", "meridian_queue_depth",
        "meridian_handshake_failures_total", "meridian_rejected_frames_total",
        "meridian_rejected_requests_total", "meridian_lmdb_map_size_bytes",
        "meridian_lmdb_map_used_bytes", "meridian_hlc_skew_max_ms",
        "meridian_clock_clamped_total", "meridian_idempotency_hits_total",
        "meridian_log_events", "meridian_acks_reached_total",
        "meridian_acks_timed_out_total" };
    char                     path[1024];
    const char              *me     = __FILE__;
    const char              *suffix = "tests/integration/ops_test.c";
    size_t                   n      = 0;
    size_t                   mlen = strlen(me), slen = strlen(suffix);
    FILE                    *f = NULL;
    if (me[0] == '/' && mlen > slen && strcmp(me + mlen - slen, suffix) == 0) {
        snprintf(path, sizeof path, "%.*sdeploy/metrics.txt",
            (int) (mlen - slen), me);
        f = fopen(path, "r");
    }
    if (f != NULL) {
        char line[512];
        while (n < max && fgets(line, sizeof line, f) != NULL) {
            char name[64];
            if (line[0] == '#' || sscanf(line, "%63s", name) != 1) {
                continue;
            }
            snprintf(names[n++], 64, "%s", name);
        }
        fclose(f);
        print_message("metric names: %zu from %s\n", n, path);
        return n;
    }
    for (size_t i = 0; i < sizeof fallback / sizeof fallback[0] && n < max;
         i++) {
        snprintf(names[n++], 64, "%s", fallback[i]);
    }
    print_message("metric names: %zu (built-in copy)\n", n);
    return n;
}

/* Checks one node's /metrics: status, content type, names, appends. */
static void
ops_check_metrics(uint32_t i, uint64_t appends_min)
{
    uint16_t port = ops.metrics_port[i];
    int      code = ops_http_get(port, "/metrics", ops_http, sizeof ops_http);
    if (code != 200) {
        fail_msg(
            "node %u: GET /metrics gave %d: %.300s", i + 1, code, ops_http);
    }
    char *body = strstr(ops_http, "\r\n\r\n");
    assert_non_null(body);
    *body          = '\0'; /* the head alone, for the header checks */
    const char *ct = strcasestr(ops_http, "\r\nContent-Type:");
    if (ct == NULL
        || strncmp(ct + 15 + strspn(ct + 15, " "), "text/plain", 10) != 0) {
        fail_msg("node %u: /metrics is not text/plain: %s", i + 1, ops_http);
    }
    body += 4;

    /* Every family it declares is one the list names, and every listed
     * one is declared. */
    static char names[128][64];
    size_t      count = ops_metric_names(names, 128);
    assert_true(count >= 6);
    size_t types = 0;
    for (const char *p = strstr(body, "# TYPE "); p != NULL;
         p             = strstr(p + 1, "# TYPE ")) {
        char name[128], kind[32];
        assert_int_equal(sscanf(p + 7, "%127s %31s", name, kind), 2);
        bool listed = false;
        for (size_t k = 0; k < count && !listed; k++) {
            listed = strcmp(names[k], name) == 0;
        }
        if (!listed) {
            fail_msg("node %u exports %s, which deploy/metrics.txt does not "
                     "list",
                i + 1, name);
        }
        types++;
    }
    for (size_t k = 0; k < count; k++) {
        char decl[100];
        snprintf(decl, sizeof decl, "# TYPE %s ", names[k]);
        if (strstr(body, decl) == NULL) {
            fail_msg("node %u does not export %s (deploy/metrics.txt)", i + 1,
                names[k]);
        }
    }
    assert_true(types >= count);

    /* The key metrics, with their samples. */
    char build[128];
    snprintf(build, sizeof build,
        "meridian_build_info{version=\"%s\",region=\"%s\",node=\"node-%u\"} 1",
        MRD_VERSION_STRING, ops_regions[i], i + 1);
    if (strstr(body, build) == NULL) {
        fail_msg("node %u: no %s in /metrics", i + 1, build);
    }
    static const char *const key[] = { "meridian_build_info",
        "meridian_append_latency_seconds_bucket{ack=\"local\",le=\"+Inf\"}",
        "meridian_replication_lag_events{",
        "meridian_peer_up{peer=", "meridian_lmdb_map_used_bytes ",
        "meridian_fenced 0", "meridian_topology_version 1" };
    for (size_t k = 0; k < sizeof key / sizeof key[0]; k++) {
        if (strstr(body, key[k]) == NULL) {
            fail_msg("node %u: no %s in /metrics", i + 1, key[k]);
        }
    }
    double v = 0;
    assert_true(ops_sample(body, "meridian_appends_total{ack=\"local\"}", &v));
    if (v < (double) appends_min) {
        fail_msg(
            "node %u: meridian_appends_total{ack=\"local\"} %g, took %" PRIu64,
            i + 1, v, appends_min);
    }
    double inf = 0;
    assert_true(ops_sample(
        body, "meridian_append_latency_seconds_count{ack=\"local\"}", &inf));
    assert_true(inf >= (double) appends_min);
    double used = 0;
    assert_true(ops_sample(body, "meridian_lmdb_map_used_bytes", &used));
    assert_true(used > 0);
    /* Both peers alive by SWIM. */
    for (uint32_t p = 0; p < OPS_NODES; p++) {
        if (p == i) {
            continue;
        }
        char series[64];
        snprintf(series, sizeof series, "meridian_peer_up{peer=\"%u\"}", p + 1);
        double up = -1;
        if (!ops_sample(body, series, &up) || up != 1) {
            fail_msg("node %u: %s is %g", i + 1, series, up);
        }
    }
}

/* ------------------------------------------------------------- status -- */

/* The metrics URLs from status --json, checked against the nodes' logs. */
static void
ops_read_metrics_urls(const char *json)
{
    static char obj[8192];
    for (uint32_t i = 0; i < OPS_NODES; i++) {
        char name[32], url[128], logged[160];
        snprintf(name, sizeof name, "node-%u", i + 1);
        assert_true(ops_status_node(json, name, obj, sizeof obj));
        if (!ops_json_str(obj, "metrics_url", url, sizeof url)) {
            fail_msg(
                "status --json: node %s has no metrics_url: %s", name, obj);
        }
        ops.metrics_port[i] = ops_url_port(url);
        snprintf(logged, sizeof logged, "\"metrics\":\"%s\"", url);
        if (!harness_node_log_contains(&ops.nodes[i], logged)) {
            fail_msg("node %u's log does not name %s", i + 1, logged);
        }
    }
}

/* Whether status says every node is up (exit 0, three "up"). */
static bool
ops_all_up(void *arg)
{
    (void) arg;
    const char *st[] = { "status", "--json", NULL };
    return ops_ctl(st, ops_out, sizeof ops_out) == 0
        && ops_count(ops_out, "\"health\":\"up\"") == OPS_NODES;
}

/* ------------------------------------------------------------- drills -- */

struct ops_bg_ctl {
    const char *args[24];
    char       *out;
    size_t      size;
    int         rc;
};

static void *
ops_bg_ctl_run(void *arg)
{
    struct ops_bg_ctl *b = arg;
    b->rc                = harness_run_ctl(b->args, b->out, b->size);
    return NULL;
}

static void
ops_expect_pass(const char *what, const char *json)
{
    print_message("drill %s: %s\n", what, json);
    if (strstr(json, "\"verdict\":\"PASS\"") == NULL
        || ops_json_u64(json, "lost") != 0
        || ops_json_u64(json, "duplicates") != 0
        || strstr(json, "\"converged\":true") == NULL) {
        fail_msg("drill %s did not pass: %s", what, json);
    }
    assert_true(ops_json_u64(json, "acknowledged") > 0);
    assert_int_equal(
        ops_json_u64(json, "acknowledged"), ops_json_u64(json, "checked"));
}

/* --------------------------------------------------------------- test -- */

static void
test_ops(void **state)
{
    (void) state;
    double t0 = ops_now_s();
    char   port_text[16];

    assert_int_equal(
        harness_tmpdir_make("meridian-ops-", ops.dir, sizeof ops.dir), 0);
    snprintf(ops.cdir, sizeof ops.cdir, "%s/c", ops.dir);
    snprintf(ops.admin_key, sizeof ops.admin_key, "%s/admin.key", ops.cdir);
    snprintf(ops.keyring, sizeof ops.keyring, "%s/keyring", ops.cdir);
    snprintf(ops.signed_path, sizeof ops.signed_path, "%s/topology.signed",
        ops.cdir);
    uint16_t base = harness_free_ports(OPS_NODES, 7);
    assert_int_not_equal(base, 0);
    snprintf(port_text, sizeof port_text, "%u", (unsigned) base);
    const char *init[] = { "cluster", "init", "--dir", ops.cdir, "--regions",
        "eu,us,ap", "--base-port", port_text, "--shards", "4", NULL };
    assert_int_equal(harness_run_ctl(init, ops_out, sizeof ops_out), 0);
    ops_keyring_admit_harness(ops.cdir);

    struct harness_node *all[OPS_NODES];
    for (uint32_t i = 0; i < OPS_NODES; i++) {
        struct harness_node *n = &ops.nodes[i];
        all[i]                 = n;
        assert_int_equal(harness_node_init(n, i + 1), 0);
        n->port = (uint16_t) (base + i);
        snprintf(
            ops.cfg[i], sizeof ops.cfg[i], "%s/node-%u.json", ops.cdir, i + 1);
        const char *args[] = { "--config", ops.cfg[i], "--metrics-listen",
            "http://127.0.0.1:0", NULL };
        assert_int_equal(harness_node_start(n, args), 0);
    }
    assert_int_equal(harness_nodes_wait_joined(all, OPS_NODES), 0);
    print_message("cluster up after %.1fs\n", ops_now_s() - t0);

    /* Appends: a client per region, whose streams go to that region's
     * node first; harness_append_on checks the node took each itself. */
    for (uint32_t i = 0; i < OPS_NODES; i++) {
        mrd_client_opts opts;
        mrd_client     *client = NULL;
        mrd_client_opts_init(&opts);
        opts.timeout_ms          = harness_ms(opts.timeout_ms);
        opts.attempt_timeout_ms  = harness_ms(opts.attempt_timeout_ms);
        opts.region              = ops_regions[i];
        struct harness_node *one = &ops.nodes[i];
        assert_int_equal(harness_client_open(&one, 1, &opts, &client), MRD_OK);
        for (uint32_t k = 0; k < OPS_APPENDS; k++) {
            char stream[32];
            snprintf(stream, sizeof stream, "ops-%s-%u", ops_regions[i], k);
            assert_int_equal(
                harness_append_on(client, i + 1, stream, "Checked"), 0);
        }
        mrd_client_close(client);
    }

    /* ---- status --json: the cluster, three nodes up, metrics URLs. */
    const char *st_json[] = { "status", "--json", NULL };
    assert_int_equal(ops_ctl(st_json, ops_out, sizeof ops_out), 0);
    assert_non_null(strstr(ops_out, "{\"cluster\":{\"id\":\""));
    assert_non_null(strstr(ops_out, "\"topology_version\":1,\"shards\":4}"));
    assert_int_equal(ops_count(ops_out, "\"health\":\"up\""), OPS_NODES);
    assert_int_equal(ops_count(ops_out, "{\"shard\":"), 4);
    for (uint32_t i = 0; i < OPS_NODES; i++) {
        static char obj[8192];
        char        name[32], region[32], version[32];
        snprintf(name, sizeof name, "node-%u", i + 1);
        assert_true(ops_status_node(ops_out, name, obj, sizeof obj));
        assert_true(ops_json_str(obj, "region", region, sizeof region));
        assert_string_equal(region, ops_regions[i]);
        assert_true(ops_json_str(obj, "version", version, sizeof version));
        assert_string_equal(version, MRD_VERSION_STRING);
        char address[64];
        assert_true(ops_json_str(obj, "address", address, sizeof address));
        assert_string_equal(address, ops.nodes[i].url);
        assert_true(ops_json_u64(obj, "uptime_ms") > 0);
        assert_true(ops_json_u64(obj, "log_events") >= OPS_APPENDS);
        assert_non_null(strstr(obj, "\"fence\":{\"active\":false"));
    }
    ops_read_metrics_urls(ops_out);

    /* ---- status, for people. */
    const char *st[] = { "status", NULL };
    assert_int_equal(ops_ctl(st, ops_out, sizeof ops_out), 0);
    assert_non_null(strstr(ops_out, "topology version 1, 4 shards, 3 nodes"));
    for (uint32_t i = 0; i < OPS_NODES; i++) {
        char name[32];
        snprintf(name, sizeof name, "node-%u", i + 1);
        assert_non_null(strstr(ops_out, name));
        assert_non_null(strstr(ops_out, ops_regions[i]));
        assert_non_null(strstr(ops_out, ops.nodes[i].url));
    }
    assert_int_equal(ops_count(ops_out, " up "), OPS_NODES);

    /* ---- metrics. */
    for (uint32_t i = 0; i < OPS_NODES; i++) {
        ops_check_metrics(i, OPS_APPENDS);
    }
    int code
        = ops_http_get(ops.metrics_port[0], "/nope", ops_http, sizeof ops_http);
    if (code != 404) {
        fail_msg("GET /nope gave %d: %.300s", code, ops_http);
    }
    /* Garbage: a connection that says nothing HTTP and stays open, one
     * that sends a broken request line and goes, one with a huge header;
     * the node keeps serving GETs meanwhile and afterwards. */
    int junk = ops_tcp(ops.metrics_port[0]);
    assert_true(junk >= 0);
    assert_true(ops_send_all(junk, "\x01\x02\xff garbage\r\n\r\n", 16));
    int junk2 = ops_tcp(ops.metrics_port[0]);
    assert_true(junk2 >= 0);
    assert_true(ops_send_all(junk2, "GET\r\n\r\n", 7));
    close(junk2);
    int junk3 = ops_tcp(ops.metrics_port[0]);
    assert_true(junk3 >= 0);
    {
        static char big[70000];
        memset(big, 'a', sizeof big);
        memcpy(big, "GET /metrics HTTP/1.0\r\nX: ", 26);
        (void) ops_send_all(junk3, big, sizeof big); /* may be cut off */
        close(junk3);
    }
    code = ops_http_get(
        ops.metrics_port[0], "/metrics", ops_http, sizeof ops_http);
    assert_int_equal(code, 200);
    close(junk);
    code = ops_http_get(
        ops.metrics_port[0], "/metrics", ops_http, sizeof ops_http);
    assert_int_equal(code, 200);
    assert_non_null(strstr(ops_http, "# TYPE meridian_build_info gauge"));
    print_message("metrics checked after %.1fs\n", ops_now_s() - t0);

    /* ---- verify. */
    const char *ver[]      = { "verify", NULL };
    const char *ver_json[] = { "verify", "--json", NULL };
    assert_int_equal(ops_ctl(ver, ops_out, sizeof ops_out), 0);
    assert_non_null(strstr(ops_out, "OK: 4 of 4 shards agree"));
    assert_int_equal(ops_ctl(ver_json, ops_out, sizeof ops_out), 0);
    assert_non_null(strstr(ops_out, "\"ok\":true"));
    assert_non_null(strstr(ops_out, "\"differences\":[]"));
    assert_true(
        ops_json_u64(ops_out, "events_compared") >= OPS_NODES * OPS_APPENDS);

    /* ---- status with a node that answers nothing: exit 1, "down". */
    assert_int_equal(harness_node_signal(&ops.nodes[1], SIGSTOP), 0);
    double      stop_t = ops_now_s();
    int         rc     = ops_ctl(st_json, ops_out, sizeof ops_out);
    double      took   = ops_now_s() - stop_t;
    static char human[OPS_OUT_SIZE];
    int         rc_h = ops_ctl(st, human, sizeof human);
    assert_int_equal(harness_node_signal(&ops.nodes[1], SIGCONT), 0);
    if (rc != 1) {
        fail_msg("status with node-2 stopped exited %d: %s", rc, ops_out);
    }
    if (rc_h != 1 || strstr(human, " down ") == NULL) {
        fail_msg(
            "status (human) with node-2 stopped exited %d: %s", rc_h, human);
    }
    char health[32];
    ops_health(ops_out, "node-2", health, sizeof health);
    assert_string_equal(health, "down");
    ops_health(ops_out, "node-1", health, sizeof health);
    assert_true(strcmp(health, "up") == 0 || strcmp(health, "suspect") == 0);
    print_message("status with node-2 stopped took %.1fs\n", took);
    assert_true(took >= 2.5);
    if (!harness_wait_for(ops_all_up, NULL, 60, 500)) {
        fail_msg("status never showed every node up again: %s", ops_out);
    }

    /* ---- drill usage errors. */
    const char *u1[] = { "drill", "region-outage", "--region", "ap", NULL };
    const char *u2[] = { "drill", "region-outage", "--for", "2s", NULL };
    const char *u3[] = { "drill", "bogus", "--for", "1s", NULL };
    const char *u4[] = { "drill", "region-outage", "--region", "nowhere",
        "--for", "1s", NULL };
    const char *u5[] = { "drill", "node-loss", "--for", "1s", NULL };
    const char *u6[] = { "drill", "region-outage", "--region", "ap", "--for",
        "2fortnights", NULL };
    const char *const *usage[] = { u1, u2, u3, u4, u5, u6 };
    for (size_t k = 0; k < sizeof usage / sizeof usage[0]; k++) {
        rc = ops_ctl(usage[k], ops_out, sizeof ops_out);
        if (rc != 2) {
            fail_msg(
                "drill usage error %zu exited %d, not 2: %s", k, rc, ops_out);
        }
    }

    /* ---- region-outage, for people. */
    uint64_t fenced_before = 0;
    assert_int_equal(
        harness_node_stat(&ops.nodes[2], "rejected_fenced", &fenced_before), 0);
    assert_int_equal(fenced_before, 0);
    const char *ro[]
        = { "drill", "region-outage", "--region", "ap", "--for", "3s", NULL };
    rc = ops_ctl(ro, ops_out, sizeof ops_out);
    if (rc != 0 || strstr(ops_out, "verdict: PASS") == NULL) {
        fail_msg("drill region-outage exited %d: %s", rc, ops_out);
    }
    assert_non_null(strstr(ops_out, "drill region-outage"));
    assert_non_null(strstr(ops_out, "recovery time"));
    assert_non_null(strstr(ops_out, " 0 lost"));
    print_message("region-outage (human) done after %.1fs\n", ops_now_s() - t0);

    /* ---- region-outage --json, watching the fenced node's gauge. */
    struct ops_bg_ctl bg = { .out = ops_out, .size = sizeof ops_out, .rc = -1 };
    const char *ro_json[] = { "--key", ops.admin_key, "--keyring", ops.keyring,
        "--node", ops.nodes[0].url, "drill", "region-outage", "--region", "ap",
        "--for", "3s", "--json", NULL };
    memcpy(bg.args, ro_json, sizeof ro_json);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, ops_bg_ctl_run, &bg), 0);
    bool     saw_fenced = false;
    double   eu_fenced  = -1;
    uint32_t polls      = harness_ms(15000) / 100;
    for (uint32_t k = 0; k < polls && !saw_fenced; k++) {
        static char resp[OPS_HTTP_SIZE];
        double      v = 0;
        if (ops_http_get(ops.metrics_port[2], "/metrics", resp, sizeof resp)
                == 200
            && ops_sample(resp, "meridian_fenced", &v) && v == 1) {
            saw_fenced = true;
            /* eu keeps serving its clients: its fence toward ap refuses
             * ap's node only, and the gauge says "refusing clients". */
            if (ops_http_get(ops.metrics_port[0], "/metrics", resp, sizeof resp)
                == 200) {
                (void) ops_sample(resp, "meridian_fenced", &eu_fenced);
            }
            break;
        }
        harness_sleep_ms(100);
    }
    assert_int_equal(pthread_join(thread, NULL), 0);
    if (bg.rc != 0) {
        fail_msg("drill region-outage --json exited %d: %s", bg.rc, ops_out);
    }
    ops_expect_pass("region-outage", ops_out);
    assert_non_null(strstr(ops_out, "\"drill\":\"region-outage\""));
    uint64_t affected  = ops_json_u64(ops_out, "clients_affected");
    uint64_t recovered = ops_json_u64(ops_out, "clients_recovered");
    assert_true(affected > 0);
    assert_int_equal(recovered, affected);
    assert_int_equal(ops_json_u64(ops_out, "fence_failures"), 0);
    assert_true(saw_fenced);
    print_message("during the ap outage: meridian_fenced 1 on node-3 (ap), "
                  "%g on node-1 (eu)\n",
        eu_fenced);
    assert_true(eu_fenced == 0);
    uint64_t fenced_after = 0;
    assert_int_equal(
        harness_node_stat(&ops.nodes[2], "rejected_fenced", &fenced_after), 0);
    print_message(
        "node-3 refused %" PRIu64 " requests while fenced\n", fenced_after);
    assert_true(fenced_after > 0);
    print_message("region-outage (json) done after %.1fs\n", ops_now_s() - t0);

    /* ---- node-loss and partition. */
    const char *nl[] = { "drill", "node-loss", "--target", "node-2", "--for",
        "2s", "--json", NULL };
    rc               = ops_ctl(nl, ops_out, sizeof ops_out);
    if (rc != 0) {
        fail_msg("drill node-loss exited %d: %s", rc, ops_out);
    }
    ops_expect_pass("node-loss", ops_out);
    assert_non_null(strstr(ops_out, "\"drill\":\"node-loss\""));
    assert_int_equal(ops_json_u64(ops_out, "clients_recovered"),
        ops_json_u64(ops_out, "clients_affected"));
    const char *pt[] = { "drill", "partition", "--regions", "eu,us", "--for",
        "2s", "--json", NULL };
    rc               = ops_ctl(pt, ops_out, sizeof ops_out);
    if (rc != 0) {
        fail_msg("drill partition exited %d: %s", rc, ops_out);
    }
    ops_expect_pass("partition", ops_out);
    assert_non_null(strstr(ops_out, "\"drill\":\"partition\""));
    print_message("drills done after %.1fs\n", ops_now_s() - t0);

    /* After the drills: no fence left, the replicas agree. */
    for (uint32_t i = 0; i < OPS_NODES; i++) {
        double v = -1;
        assert_int_equal(ops_http_get(ops.metrics_port[i], "/metrics", ops_http,
                             sizeof ops_http),
            200);
        assert_true(ops_sample(ops_http, "meridian_fenced", &v));
        assert_true(v == 0);
    }
    assert_int_equal(ops_ctl(st_json, ops_out, sizeof ops_out), 0);
    assert_int_equal(
        ops_count(ops_out, "\"fence\":{\"active\":false"), OPS_NODES);
    assert_int_equal(ops_ctl(ver_json, ops_out, sizeof ops_out), 0);
    assert_non_null(strstr(ops_out, "\"ok\":true"));
    assert_non_null(strstr(ops_out, "\"differences\":[]"));

    /* ---- drain node-3 and back, pushed and waited for. */
    const char *drain[] = { "topology", "drain-node", "node-3", "--file",
        ops.signed_path, "--admin-key", ops.admin_key, "--push", NULL };
    rc                  = ops_ctl(drain, ops_out, sizeof ops_out);
    if (rc != 0) {
        fail_msg("topology drain-node --push exited %d: %s", rc, ops_out);
    }
    assert_non_null(strstr(ops_out, "version 2"));
    assert_non_null(strstr(ops_out, "reached every node (3)"));
    assert_int_equal(ops_ctl(st_json, ops_out, sizeof ops_out), 0);
    assert_non_null(strstr(ops_out, "\"topology_version\":2,"));
    ops_health(ops_out, "node-3", health, sizeof health);
    assert_string_equal(health, "drained");
    ops_health(ops_out, "node-1", health, sizeof health);
    assert_string_equal(health, "up");
    /* node-3 holds no shard now. */
    assert_null(strstr(ops_out, "{\"node\":\"node-3\""));
    for (uint32_t i = 0; i < 2; i++) {
        double v = 0;
        assert_int_equal(ops_http_get(ops.metrics_port[i], "/metrics", ops_http,
                             sizeof ops_http),
            200);
        assert_true(ops_sample(ops_http, "meridian_topology_version", &v));
        assert_true(v == 2);
    }
    const char *undrain[] = { "topology", "undrain-node", "node-3", "--file",
        ops.signed_path, "--admin-key", ops.admin_key, "--push", NULL };
    rc                    = ops_ctl(undrain, ops_out, sizeof ops_out);
    if (rc != 0) {
        fail_msg("topology undrain-node --push exited %d: %s", rc, ops_out);
    }
    assert_non_null(strstr(ops_out, "version 3"));
    assert_non_null(strstr(ops_out, "reached every node (3)"));
    assert_int_equal(ops_ctl(st_json, ops_out, sizeof ops_out), 0);
    assert_non_null(strstr(ops_out, "\"topology_version\":3,"));
    assert_int_equal(ops_count(ops_out, "\"health\":\"up\""), OPS_NODES);
    assert_non_null(strstr(ops_out, "{\"node\":\"node-3\""));
    assert_int_equal(ops_ctl(ver_json, ops_out, sizeof ops_out), 0);
    assert_non_null(strstr(ops_out, "\"ok\":true"));

    for (uint32_t i = 0; i < OPS_NODES; i++) {
        assert_int_equal(harness_node_stop(&ops.nodes[i]), 0);
        harness_node_fini(&ops.nodes[i]);
    }
    harness_rmrf(ops.dir);
    print_message("ops test took %.1fs\n", ops_now_s() - t0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ops, harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, harness_teardown);
}
