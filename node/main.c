/*
 * main.c: meridiand. Parses the configuration, opens the store, serves until
 * SIGTERM or SIGINT, then stops gracefully. Signals are taken synchronously
 * with sigwait() on the main thread, so no handler runs inside a library.
 *
 * Exit codes: 0 after a clean stop, 1 when the node cannot start, 2 for a
 * bad command line or config, 3 after a fail-stop storage error.
 */
#include "node.h"
#ifdef MRD_PLANTED_BUGS
#include "plant.h"
#endif

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes the bound URL to path atomically (temp file, then rename), so a
 * reader never sees half a line. */
static int
node_ready_file_write(const char *path, const char *url)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return -1;
    }
    int rv = fprintf(f, "%s\n", url) < 0 ? -1 : 0;
    if (fclose(f) != 0) {
        rv = -1;
    }
    if (rv == 0 && rename(tmp, path) != 0) {
        rv = -1;
    }
    return rv;
}

int
main(int argc, char **argv)
{
    struct node_config    cfg;
    struct node_store     store;
    struct node_server   *srv      = NULL;
    struct node_puller   *puller   = NULL;
    struct node_topology *topology = NULL;
    struct node_liveness *liveness = NULL;
    struct node_ae       *ae       = NULL;
    struct node_security *sec      = NULL;
    struct node_metrics  *metrics  = NULL;
    sigset_t              set;
    int                   sig = 0;

    int rv = node_config_parse(&cfg, argc, argv);
    if (rv != 0) {
#ifdef MRD_PLANTED_BUGS
        /* node_config_parse printed the version line; say what this is. */
        for (int i = 1; rv > 0 && i < argc; i++) {
            if (strcmp(argv[i], "--version") == 0) {
                printf("planted-bugs build (MRD_PLANTED_BUGS): loses or "
                       "corrupts data on purpose when MRD_PLANT names a bug; "
                       "for testing the chaos checker only\n");
                break;
            }
        }
#endif
        return rv > 0 ? 0 : 2;
    }
#ifdef MRD_BENCH_PLAINTEXT
    const char *bench_ok = getenv("MRD_BENCH_PLAINTEXT_OK");
    if (bench_ok == NULL || strcmp(bench_ok, "1") != 0) {
        fprintf(stderr,
            "meridiand: this build does not encrypt its links "
            "(MRD_BENCH_PLAINTEXT, for benchmarks only): refused\n");
        return 2;
    }
#endif
#ifdef MRD_PLANTED_BUGS
    /* Refuses to start unless MRD_PLANTED_BUGS_OK=1, or when MRD_PLANT
     * names no bug (plant.h). */
    if (node_plant_setup() != 0) {
        return 2;
    }
#endif
    if (cfg.topology_file[0] != '\0'
        && node_topology_open(&cfg, cfg.listen_given, &topology) != 0) {
        return 2;
    }
    node_log_setup(cfg.node_id, cfg.log_level);
#ifdef MRD_PLANTED_BUGS
    node_plant_log();
#endif
    /* Block the stop signals in every thread; the main thread waits for them
     * below. A peer closing a socket must not kill the node. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (node_store_open(&store, &cfg) != MRD_OK) {
        node_log(NODE_LOG_ERROR, "cannot open the store; not starting", NULL);
        node_topology_close(topology);
        return 1;
    }
    /* The store may hold a newer topology than the file: its peers win. */
    if (node_topology_attach(topology, &store) != MRD_OK
        || (topology != NULL
            && node_topology_peers(
                   topology, cfg.peers, NODE_PEERS_MAX, &cfg.peer_count)
                != MRD_OK)) {
        node_log(NODE_LOG_ERROR, "cannot use the topology; not starting", NULL);
        node_store_close(&store);
        node_topology_close(topology);
        return 1;
    }
    node_config_log_peer_addresses(&cfg);
    /* From here, a failure to start unwinds what was started, in the
     * reverse order of the shutdown below: a thread left running would
     * read what main() frees (the security thread polls the topology). */
    if (node_ae_open(topology, &store, &ae) != MRD_OK) {
        node_log(NODE_LOG_ERROR, "out of memory for anti-entropy", NULL);
        goto out_store;
    }
    if (node_security_open(&cfg, &store, topology, &sec) != MRD_OK) {
        node_log(
            NODE_LOG_ERROR, "cannot set up secure links; not starting", NULL);
        goto out_ae;
    }
    rv = node_server_start(&cfg, &store, topology, ae, sec, &srv);
    if (rv != MRD_OK) {
        goto out_sec;
    }
    if (cfg.metrics_listen[0] != '\0'
        && node_metrics_start(cfg.metrics_listen, srv, &metrics) != MRD_OK) {
        goto out_srv;
    }
    node_server_set_metrics_url(srv, node_metrics_url(metrics));
    if (cfg.ready_file[0] != '\0'
        && node_ready_file_write(cfg.ready_file, node_server_url(srv)) != 0) {
        node_log(NODE_LOG_ERROR, "cannot write the ready file", "{s:s, s:s}",
            "path", cfg.ready_file, "error", strerror(errno));
        goto out_metrics;
    }
    if (node_liveness_start(
            &cfg, topology, node_server_stats(srv), sec, &liveness)
        != MRD_OK) {
        node_log(NODE_LOG_ERROR, "cannot start liveness (SWIM)", NULL);
        goto out_metrics;
    }
    node_server_set_liveness(srv, liveness);
    if (node_puller_start(&cfg, &store, srv, node_server_stats(srv), topology,
            liveness, ae, sec, &puller)
        != MRD_OK) {
        node_log(NODE_LOG_ERROR, "cannot start replication", NULL);
        goto out_liveness;
    }
    node_log(NODE_LOG_INFO, "ready", "{s:s, s:s, s:s, s:i}", "listen",
        node_server_url(srv), "metrics", node_metrics_url(metrics), "version",
        MRD_VERSION_STRING, "pid", (int) getpid());
    while (sigwait(&set, &sig) != 0) { }
    bool failed = node_server_failed(srv);
    node_log(NODE_LOG_INFO, "stopping", "{s:s}", "signal",
        sig == SIGINT ? "SIGINT" : "SIGTERM");
    /* First, so that no scrape reads a server being taken down. */
    node_metrics_stop(metrics);
    node_puller_stop(puller);
    /* The server may still hand SWIM messages over until it stops. */
    node_server_set_liveness(srv, NULL);
    node_liveness_stop(liveness);
    node_server_stop(srv);
    node_security_close(sec);
    node_ae_close(ae);
    node_store_close(&store);
    node_topology_close(topology);
    node_log(failed ? NODE_LOG_ERROR : NODE_LOG_INFO, "stopped", "{s:b}",
        "failed", failed);
    return failed ? 3 : 0;

out_liveness:
    node_server_set_liveness(srv, NULL);
    node_liveness_stop(liveness);
out_metrics:
    node_metrics_stop(metrics);
out_srv:
    node_server_stop(srv);
out_sec:
    node_security_close(sec);
out_ae:
    node_ae_close(ae);
out_store:
    node_store_close(&store);
    node_topology_close(topology);
    return 1;
}
